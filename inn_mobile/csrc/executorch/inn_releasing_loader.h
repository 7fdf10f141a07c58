/* An ExecuTorch DataLoader over the filled weights.ptd that gives each weight's pages back as soon as
 * ExecuTorch frees it: for apps that load a bundle's ExecuTorch graph in C++ (Android JNI, iOS).
 *
 * Why: ExecuTorch's XNNPACK delegate reads every weight through the program's data map, packs them all, and
 * then frees what it read. A .ptd given as a plain buffer (BufferDataLoader, or the Python bindings'
 * data_map_buffer) frees nothing, so the filled file stays resident for the program's life and the first
 * inference's workspace comes on top: peak memory is about one weights' copy above loading a plain .pte
 * from its path, whose loader unmaps each weight when freed. This loader does what the path loader does,
 * for memory the app filled: each FreeableBuffer it returns, when freed, drops the whole pages inside its
 * range that no buffer still alive touches (madvise MADV_DONTNEED: anonymous memory then reads back as zeros). ExecuTorch frees a buffer when
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
#include <memory>
#include <mutex>
#include <set>
#include <utility>

namespace inn {

class ReleasingDataLoader final : public executorch::runtime::DataLoader {
   public:
    /* `data` (size bytes) must outlive every module loaded from it; the loader itself may go first (each
     * buffer it handed out keeps what its release needs). */
    ReleasingDataLoader(uint8_t *data, size_t size) : state_(std::make_shared<State>()) {
        state_->data = data;
        state_->size = size;
    }

    executorch::runtime::Result<executorch::runtime::FreeableBuffer> load(
        size_t offset, size_t size, const SegmentInfo &) const override {
        if (offset > state_->size || size > state_->size - offset) return executorch::runtime::Error::InvalidArgument;
        auto ticket = std::make_unique<Ticket>(Ticket{state_, offset, offset + size});
        {
            std::lock_guard<std::mutex> lock(state_->mu);
            state_->live.emplace(offset, offset + size);
        }
        return executorch::runtime::FreeableBuffer(state_->data + offset, size, &release, ticket.release());
    }

    executorch::runtime::Result<size_t> size() const override { return state_->size; }

   private:
    struct State {
        uint8_t *data = nullptr;
        size_t size = 0;
        std::mutex mu;
        std::multiset<std::pair<size_t, size_t>> live; /* [offset, end) of every buffer not freed yet */
    };
    struct Ticket {
        std::shared_ptr<State> state;
        size_t offset, end;
    };

    /* The pages wholly inside the freed range that no buffer still alive touches (the same weight may be
     * handed out twice, or two weights share a page). */
    static void release(void *context, void *, size_t) {
        std::unique_ptr<Ticket> t(static_cast<Ticket *>(context));
        State &s = *t->state;
        const uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE), base = (uintptr_t)s.data;
        uintptr_t from = (base + t->offset + page - 1) / page * page;
        const uintptr_t to = (base + t->end) / page * page;
        std::lock_guard<std::mutex> lock(s.mu);
        s.live.erase(s.live.find({t->offset, t->end}));
        for (const auto &r : s.live) { /* sorted by start: sweep the kept pages out of [from, to) */
            const uintptr_t keep_from = (base + r.first) / page * page;
            const uintptr_t keep_to = (base + r.second + page - 1) / page * page;
            if (keep_from >= to) break;
            if (keep_to <= from) continue;
            if (keep_from > from) madvise((void *)from, keep_from - from, MADV_DONTNEED);
            from = keep_to > from ? keep_to : from;
        }
        if (to > from) madvise((void *)from, to - from, MADV_DONTNEED);
    }

    std::shared_ptr<State> state_;
};

}  // namespace inn
