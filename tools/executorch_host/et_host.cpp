/* What an app does to start a bundle's ExecuTorch graph in C++, for tools/bench_executorch_loader.py,
 * tools/bench_real.py and tests/test_executorch_loader.py: prints the startup's milliseconds and peak memory
 * (VmHWM) and writes the outputs of one inference.
 *
 *   et_host bundle BUNDLE BUCKET RUNTIME release|buffer THREADS INPUT OUTPUT
 *   et_host cached BUNDLE BUCKET RUNTIME CACHE_DIR THREADS INPUT OUTPUT
 *   et_host plain PTE INPUT OUTPUT
 *   et_host fresh BYTES
 *   et_host selftest
 *
 * bundle: the C core opens the mapped bundle, fills the graph's model.pte and weights.ptd into anonymous
 * memory on THREADS threads, and ExecuTorch loads them from there: the .ptd through inn::ReleasingDataLoader
 * ("release") or a plain BufferDataLoader ("buffer", what the Python bindings do). plain: a plain .pte loaded
 * from its path (mapped), the reference. cached: "bundle" through a width cache in CACHE_DIR, as the Python and
 * Java loaders keep one (their entries): when the core's stamp checks the kept files, ExecuTorch maps them from
 * their paths (fill_ms is then the check's, and files=0); else the core fills them straight into a new entry's
 * files (memory maps of them), which ExecuTorch then maps from their paths alike.
 * INPUT: raw float32 of the method's input shape; OUTPUT: raw float32
 * of output 0. Prints one line: "hwm_kib=<peak> base_kib=<peak before loading> files=<bytes filled>
 * open_ms=<map, open, find the graph> fill_ms=<write the files> load_ms=<ExecuTorch's program and method,
 * weights packed> hit=<1 when loaded from the cache>" (plain: open and fill 0).
 * The libraries are loaded before the clock starts, as in an app.
 * fresh: new anonymous memory of BYTES written once, nothing else ("fresh_ms=<ms>"): what the memory of a
 * fill's files alone costs in this process. selftest: which pages inn::ReleasingDataLoader gives back
 * (overlapping and repeated ranges, the loader gone first); prints "selftest ok", or each wrong page. */
#include <executorch/extension/data_loader/buffer_data_loader.h>
#include <executorch/extension/module/module.h>
#include <executorch/extension/tensor/tensor.h>
#include <dirent.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fstream>
#include <functional>
#include <iterator>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "../../inn_mobile/csrc/executorch/inn_releasing_loader.h"
#include "../../inn_mobile/csrc/inn.h"

using executorch::extension::BufferDataLoader;
using executorch::extension::module::Module;
using executorch::runtime::DataLoader;
using executorch::runtime::Error;

static long hwm_kib() {
    std::ifstream f("/proc/self/status");
    std::string line;
    while (std::getline(f, line))
        if (line.rfind("VmHWM:", 0) == 0) return std::stol(line.substr(6));
    return -1;
}

[[noreturn]] static void fail(const std::string &what) {
    std::fprintf(stderr, "et_host: %s\n", what.c_str());
    std::exit(1);
}

static std::vector<float> read_floats(const char *path) {
    std::ifstream f(path, std::ios::binary | std::ios::ate);
    if (!f) fail(std::string("cannot read ") + path);
    std::vector<float> v((size_t)f.tellg() / sizeof(float));
    f.seekg(0);
    f.read(reinterpret_cast<char *>(v.data()), (std::streamsize)(v.size() * sizeof(float)));
    return v;
}

static void *anonymous(size_t size) {
    void *p = mmap(nullptr, size ? size : 1, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) fail("out of memory");
    return p;
}

/* Drop the mapped bundle's pages wholly inside [first, end): the page cache keeps the file. */
static void drop(void *ctx, size_t first, size_t end) {
    const size_t page = (size_t)sysconf(_SC_PAGESIZE), a = (first + page - 1) / page * page, b = end / page * page;
    if (b > a) madvise((uint8_t *)ctx + a, b - a, MADV_DONTNEED);
}

static double now_ms() {
    timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

static const uint32_t PARTS_PER_THREAD = 8; /* as native.py's _PARTS_PER_THREAD and InnBundle.PARTS_PER_THREAD */

static void check(inn_status s, const std::string &what) {
    if (s != INN_OK) fail(what + ": " + inn_status_str(s));
}

/* A bundle mapped from its file and opened by the core (inn_bundle_open_deferred: the nodes' checks are left to
 * the fill, and each stretch the open verifies leaves memory at once), and its graph of (bucket, runtime). */
struct Opened {
    void *map = nullptr;
    size_t size = 0;
    inn_bundle b;
    inn_graph g;
    ~Opened() { close(); }
    void close() { /* nothing reads the nodes again: the page cache keeps the file */
        if (map) munmap(map, size);
        map = nullptr;
    }
};

static void open_graph(Opened *o, const char *path, uint32_t bucket, const char *runtime) {
    int fd = open(path, O_RDONLY);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) fail(std::string("cannot open ") + path);
    o->size = (size_t)st.st_size;
    o->map = mmap(nullptr, o->size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (o->map == MAP_FAILED) o->map = nullptr, fail("cannot map the bundle");
    check(inn_bundle_open_deferred(&o->b, o->map, o->size, drop, o->map), "bundle");
    check(inn_graph_find(&o->b, bucket, runtime, &o->g), "bundle");
}

/* The opened graph filled by the core: its images in `memory(name, size)` (`outs`, `sizes`, in image order), written
 * on `threads` threads as the Python and Java loaders write them (NativeBundle.fill, InnBundle.fillGraph): the
 * layers in PARTS_PER_THREAD parts per thread, each part checking its share of the nodes first and dropping its
 * nodes' pages once written, and the parts' checksums joined before the files are used. Sets model.pte's and
 * weights.ptd's buffers; returns the bytes filled. */
static size_t fill(Opened *o, uint32_t threads, std::vector<void *> *outs, std::vector<size_t> *sizes, uint8_t **pte,
                   size_t *pte_size, uint8_t **ptd, size_t *ptd_size,
                   const std::function<void *(const std::string &, size_t)> &memory) {
    inn_bundle &b = o->b;
    inn_graph &g = o->g;
    outs->assign(g.image_count, nullptr);
    sizes->assign(g.image_count, 0);
    size_t total = 0;
    for (uint32_t i = 0; i < g.image_count; i++) {
        inn_image_info info;
        check(inn_graph_image(&g, i, &info), "graph");
        (*sizes)[i] = (size_t)info.size;
        (*outs)[i] = memory(std::string(info.name, info.name_len), (*sizes)[i]);
        total += (*sizes)[i];
        std::string name(info.name, info.name_len);
        if (name == "model.pte") *pte = (uint8_t *)(*outs)[i], *pte_size = (*sizes)[i];
        if (name == "weights.ptd") *ptd = (uint8_t *)(*outs)[i], *ptd_size = (*sizes)[i];
    }
    if (!*pte || !*ptd) fail("the graph has no model.pte and weights.ptd");
    size_t scratch_size;
    check(inn_graph_scratch_size(&b, &g, &scratch_size), "graph");
    check(inn_graph_fill_spans(&b, &g, outs->data(), sizes->data()), "fill");
    threads = std::max(1u, std::min(threads, b.layer_count));
    const uint32_t parts = std::max(threads, std::min(b.layer_count, threads * PARTS_PER_THREAD));
    std::vector<uint32_t> states(parts);
    std::vector<inn_status> status(parts, INN_ERR_ARG); /* a part that never ran fails the fill */
    auto run = [&](uint32_t t) {
        std::vector<uint8_t> scratch(scratch_size ? scratch_size : 1);
        for (uint32_t p = t * parts / threads; p < (t + 1) * parts / threads; p++) {
            status[p] = inn_graph_fill_part_verify(&b, &g, outs->data(), sizes->data(), p, parts, scratch.data(),
                                                   scratch.size(), &states[p]);
            if (status[p] != INN_OK) return;
            size_t first, end;
            if (inn_graph_part_nodes(&b, &g, p, parts, &first, &end) == INN_OK) drop(o->map, first, end);
        }
    };
    std::vector<std::thread> workers;
    for (uint32_t t = 1; t < threads; t++) workers.emplace_back(run, t);
    run(0);
    for (auto &w : workers) w.join();
    for (uint32_t p = 0; p < parts; p++) check(status[p], "fill part " + std::to_string(p));
    check(inn_bundle_nodes_verified(&b, states.data(), parts), "fill");
    return total;
}

/* ---- a width cache, as an app keeps one in C++: the Python and Java loaders' entries (width_cache.py) ---- */

static std::string image_name(const inn_graph &g, uint32_t i) {
    inn_image_info info;
    check(inn_graph_image(&g, i, &info), "graph");
    return std::string(info.name, info.name_len);
}

/* The kept files of the opened graph in `entry` when the core's stamp checks every byte of them (each mapped for
 * the check, then unmapped: ExecuTorch maps them again from their paths). */
static bool cache_hit(const Opened &o, const char *runtime, const std::string &entry) {
    std::ifstream f(entry + "/" INN_CACHE_STAMP_FILE, std::ios::binary);
    std::vector<uint8_t> stamp((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    if (!f.good() && !f.eof()) return false;
    std::vector<const void *> maps(o.g.image_count, nullptr);
    std::vector<size_t> sizes(o.g.image_count, 0);
    bool ok = !stamp.empty();
    for (uint32_t i = 0; ok && i < o.g.image_count; i++) {
        int fd = open((entry + "/" + image_name(o.g, i)).c_str(), O_RDONLY);
        struct stat st;
        ok = fd >= 0 && fstat(fd, &st) == 0 && st.st_size > 0;
        if (ok) {
            sizes[i] = (size_t)st.st_size;
            void *m = mmap(nullptr, sizes[i], PROT_READ, MAP_SHARED, fd, 0);
            ok = m != MAP_FAILED;
            maps[i] = ok ? m : nullptr;
        }
        if (fd >= 0) close(fd);
    }
    ok = ok && inn_cache_check(&o.b, &o.g, runtime, stamp.data(), stamp.size(), maps.data(), sizes.data()) == INN_OK;
    for (uint32_t i = 0; i < o.g.image_count; i++)
        if (maps[i]) munmap(const_cast<void *>(maps[i]), sizes[i]);
    return ok;
}

/* Removes an entry directory and the files in it (an entry holds files only). */
static void remove_entry(const std::string &entry) {
    if (DIR *d = opendir(entry.c_str())) {
        while (dirent *e = readdir(d))
            if (std::strcmp(e->d_name, ".") != 0 && std::strcmp(e->d_name, "..") != 0)
                unlink((entry + "/" + e->d_name).c_str());
        closedir(d);
    }
    rmdir(entry.c_str());
}

/* A width's first start with a cache: the core fills the graph straight into the files of a new entry of `dir`
 * (shared memory maps of them, their blocks reserved first: a mapped page the disk has no room for would be a
 * fault, not an error), the stamp is written beside them, and the entry is renamed into place (a damaged or
 * outdated one, which cache_hit refused, removed first). Returns the bytes filled. */
static size_t cache_fill(Opened *o, const char *runtime, uint32_t threads, const std::string &dir,
                         const std::string &entry) {
    mkdir(dir.c_str(), 0700);
    const std::string tmp = dir + "/.tmp-" + std::to_string(getpid());
    if (mkdir(tmp.c_str(), 0700) != 0) fail("cannot write in " + dir);
    std::vector<void *> outs;
    std::vector<size_t> sizes;
    uint8_t *pte = nullptr, *ptd = nullptr;
    size_t pte_size = 0, ptd_size = 0;
    auto file_memory = [&](const std::string &name, size_t size) -> void * {
        int fd = open((tmp + "/" + name).c_str(), O_RDWR | O_CREAT | O_TRUNC, 0600);
        if (fd < 0 || posix_fallocate(fd, 0, (off_t)size) != 0) fail("no room for " + name + " in " + dir);
        void *m = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        close(fd);
        if (m == MAP_FAILED) fail("cannot map " + name);
        return m;
    };
    const size_t total = fill(o, threads, &outs, &sizes, &pte, &pte_size, &ptd, &ptd_size, file_memory);
    std::vector<uint8_t> stamp(inn_cache_stamp_size(&o->g));
    check(inn_cache_stamp(&o->b, &o->g, runtime, outs.data(), sizes.data(), stamp.data(), stamp.size()), "stamp");
    for (size_t i = 0; i < outs.size(); i++) munmap(outs[i], sizes[i]);
    std::FILE *f = std::fopen((tmp + "/" INN_CACHE_STAMP_FILE).c_str(), "wb");
    if (!f || std::fwrite(stamp.data(), 1, stamp.size(), f) != stamp.size() || std::fclose(f) != 0)
        fail("cannot write the stamp");
    remove_entry(entry);
    if (rename(tmp.c_str(), entry.c_str()) != 0) fail("cannot rename " + tmp + " to " + entry);
    return total;
}

/* Buffers of the loader over 8 pages of 0x5A: freeing one zeroes exactly the pages no live buffer touches. */
static int selftest() {
    const size_t page = (size_t)sysconf(_SC_PAGESIZE);
    uint8_t *buf = (uint8_t *)anonymous(8 * page);
    std::memset(buf, 0x5A, 8 * page);
    const DataLoader::SegmentInfo info(DataLoader::SegmentInfo::Type::External);
    auto loader = std::make_unique<inn::ReleasingDataLoader>(buf, 8 * page);
    auto a = loader->load(0, 3 * page, info), b = loader->load(2 * page + 10, 2 * page, info);
    auto c = loader->load(6 * page, page, info), c2 = loader->load(6 * page, page, info);
    auto d = loader->load(7 * page, page, info);
    if (!a.ok() || !b.ok() || !c.ok() || !c2.ok() || !d.ok() || loader->load(8 * page, 1, info).ok()) fail("loads");
    int bad = 0;
    auto expect = [&](const char *step, std::initializer_list<int> zero_pages) {
        for (size_t p = 0; p < 8; p++) {
            bool zero = false;
            for (int z : zero_pages) zero |= (size_t)z == p;
            if ((buf[p * page] == 0) != zero || (buf[p * page + page - 1] == 0) != zero) {
                std::fprintf(stderr, "after %s: page %zu is %s\n", step, p, zero ? "kept" : "zeroed");
                bad++;
            }
        }
    };
    a->Free(); /* pages 0-1 go; page 2 is b's too */
    expect("a", {0, 1});
    c->Free(); /* c2 is the same range, still alive */
    expect("c", {0, 1});
    c2->Free();
    expect("c2", {0, 1, 6});
    b->Free(); /* [2p + 10, 4p + 10): only page 3 is wholly inside */
    expect("b", {0, 1, 3, 6});
    loader.reset(); /* a buffer outliving its loader still gives its pages back */
    d->Free();
    expect("d", {0, 1, 3, 6, 7});
    if (bad) return 1;
    std::printf("selftest ok\n");
    return 0;
}

int main(int argc, char **argv) {
    const std::string mode = argc > 1 ? argv[1] : "";
    if (mode == "selftest" && argc == 2) return selftest();
    if (mode == "fresh" && argc == 3) {
        const size_t size = (size_t)std::strtoull(argv[2], nullptr, 10);
        const double t = now_ms();
        std::memset(anonymous(size), 1, size);
        std::printf("fresh_ms=%.3f\n", now_ms() - t);
        return 0;
    }
    if (!((mode == "bundle" && argc == 9) || (mode == "cached" && argc == 9) || (mode == "plain" && argc == 5))) {
        std::fprintf(stderr, "usage: et_host bundle BUNDLE BUCKET RUNTIME release|buffer THREADS INPUT OUTPUT\n"
                             "       et_host cached BUNDLE BUCKET RUNTIME CACHE_DIR THREADS INPUT OUTPUT\n"
                             "       et_host plain PTE INPUT OUTPUT\n"
                             "       et_host fresh BYTES\n"
                             "       et_host selftest\n");
        return 2;
    }
    std::vector<float> x = read_floats(argv[argc - 2]);
    const long base = hwm_kib();
    std::unique_ptr<Module> module;
    Opened opened;
    size_t filled = 0;
    double open_ms = 0, fill_ms = 0, t0 = now_ms();
    const char *cache = "none";
    if (mode == "plain") {
        module = std::make_unique<Module>(argv[2], Module::LoadMode::Mmap);
    } else {
        const char *runtime = argv[4];
        open_graph(&opened, argv[2], (uint32_t)std::strtoul(argv[3], nullptr, 10), runtime);
        std::string dir, entry;
        if (mode == "cached") {
            char name[INN_CACHE_NAME];
            check(inn_cache_entry(&opened.b, &opened.g, runtime, name), "cache entry");
            dir = argv[5];
            entry = dir + "/" + name;
        }
        const double t1 = now_ms();
        open_ms = t1 - t0;
        const long threads = std::strtol(argv[6], nullptr, 10);
        if (threads < 1 || threads > 64) fail(std::string("THREADS must be 1..64, got ") + argv[6]);
        if (mode == "cached") {
            if (cache_hit(opened, runtime, entry)) {
                cache = "hit";
            } else {
                filled = cache_fill(&opened, runtime, (uint32_t)threads, dir, entry);
                cache = "stored";
            }
            fill_ms = now_ms() - t1; /* the check, or the fill into the entry's files */
            t0 = now_ms();
            module = std::make_unique<Module>(entry + "/model.pte", entry + "/weights.ptd", Module::LoadMode::Mmap);
        } else {
            uint8_t *pte = nullptr, *ptd = nullptr;
            size_t pte_size = 0, ptd_size = 0;
            std::vector<void *> outs;
            std::vector<size_t> sizes;
            filled = fill(&opened, (uint32_t)threads, &outs, &sizes, &pte, &pte_size, &ptd, &ptd_size,
                          [](const std::string &, size_t size) { return anonymous(size); });
            fill_ms = now_ms() - t1;
            t0 = now_ms();
            std::unique_ptr<DataLoader> data;
            if (std::string(argv[5]) == "release") data = std::make_unique<inn::ReleasingDataLoader>(ptd, ptd_size);
            else data = std::make_unique<BufferDataLoader>(ptd, ptd_size);
            module = std::make_unique<Module>(std::make_unique<BufferDataLoader>(pte, pte_size), nullptr, nullptr,
                                              nullptr, std::move(data));
        }
        opened.close();
    }
    /* load_method reads the program and has XNNPACK pack every weight, from a path or from memory alike */
    if (module->load_method("forward") != Error::Ok) fail("the program does not load");
    const double load_ms = now_ms() - t0;
    auto meta = module->method_meta("forward");
    if (!meta.ok()) fail("no forward method");
    auto in_meta = meta->input_tensor_meta(0);
    std::vector<executorch::aten::SizesType> shape(in_meta->sizes().begin(), in_meta->sizes().end());
    size_t count = 1;
    for (auto d : shape) count *= (size_t)d;
    if (x.size() != count) fail("the input has " + std::to_string(x.size()) + " floats, the method takes " +
                                std::to_string(count));
    auto out = module->forward(executorch::extension::from_blob(x.data(), shape));
    if (!out.ok()) fail("the program does not run");
    const auto &y = out.get()[0].toTensor();
    std::FILE *f = std::fopen(argv[argc - 1], "wb");
    if (!f || std::fwrite(y.const_data_ptr<float>(), sizeof(float), (size_t)y.numel(), f) != (size_t)y.numel())
        fail("cannot write the output");
    std::fclose(f);
    std::printf("hwm_kib=%ld base_kib=%ld files=%zu open_ms=%.3f fill_ms=%.3f load_ms=%.3f hit=%d\n", hwm_kib(),
                base, filled, open_ms, fill_ms, load_ms, std::strcmp(cache, "hit") == 0);
    return 0;
}
