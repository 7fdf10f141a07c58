/* An ExecuTorch DataLoader over the filled weights.ptd that gives each weight's pages back as soon as
 * ExecuTorch frees it: for apps that load a bundle's ExecuTorch graph in C++ (Android JNI, iOS).
 *
 * Why: ExecuTorch's XNNPACK delegate reads every weight through the program's data map, packs them all, and
 * then frees what it read. A .ptd given as a plain buffer (BufferDataLoader, or the Python bindings'
 * data_map_buffer) frees nothing, so the filled file stays resident for the program's life and the first
 * inference's workspace comes on top: peak memory is about one weights' copy above loading a plain .pte
 * from its path, whose loader unmaps each weight when freed. This loader does what the path loader does,
 * for memory the app filled: each FreeableBuffer it returns, when freed, drops the whole pages inside its
 * range (madvise MADV_DONTNEED: anonymous memory then reads back as zeros). ExecuTorch frees a buffer when
 * nothing reads it any more: the delegate's once it has packed them, the method's own constants when the
 * method is destroyed. tools/bench_executorch_loader.py measures it.
 *
 * Use: fill the graph (inn_graph_fill) into page-aligned anonymous memory (mmap), then
 *   Module m(std::make_unique<BufferDataLoader>(pte, pte_size), nullptr, nullptr, nullptr,
 *            std::make_unique<inn::ReleasingDataLoader>(ptd, ptd_size));
 *   m.load_method("forward");  // packs the weights; the .ptd's weight pages are given back here
 * and keep the .ptd mapping alive (not its contents) while the module lives: its header stays in use.
 * Header-only; needs ExecuTorch's headers (not part of the C core, which has no dependencies). */
#pragma once

#include <executorch/runtime/core/data_loader.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>

namespace inn {

class ReleasingDataLoader final : public executorch::runtime::DataLoader {
   public:
    /* `data` (size bytes) must outlive the loader and every module loaded from it. */
    ReleasingDataLoader(uint8_t *data, size_t size) : data_(data), size_(size) {}

    executorch::runtime::Result<executorch::runtime::FreeableBuffer> load(
        size_t offset, size_t size, const SegmentInfo &) const override {
        if (offset > size_ || size > size_ - offset) return executorch::runtime::Error::InvalidArgument;
        return executorch::runtime::FreeableBuffer(data_ + offset, size, &release, nullptr);
    }

    executorch::runtime::Result<size_t> size() const override { return size_; }

   private:
    /* Pages wholly inside [data, data + size): a page shared with a neighbouring range stays. */
    static void release(void *, void *data, size_t size) {
        const uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE), at = (uintptr_t)data;
        const uintptr_t first = (at + page - 1) / page * page, end = (at + size) / page * page;
        if (end > first) madvise((void *)first, end - first, MADV_DONTNEED);
    }

    uint8_t *data_;
    size_t size_;
};

}  // namespace inn
