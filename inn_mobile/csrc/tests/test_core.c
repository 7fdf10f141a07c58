/* C-side tests: the shared vectors (bit-exact against the Python reference) and bad input.
 *   test_core tests/vectors/vectors.innb tests/vectors/expected.bin tests/vectors/expected_graphs.bin
 * Built plain and with -fsanitize=address,undefined by tests/test_csrc.py. */
#include <math.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__aarch64__) && defined(__linux__) && !defined(INN_PORTABLE)
#include <sys/auxv.h>
#endif

#include "bundle_edit.h"
#include "check.h"
#include "inn.h"
#include "inn_internal.h"

static int vectors(const unsigned char *bundle, size_t bsize, const unsigned char *exp, size_t esize) {
    inn_bundle b;
    inn_status st = inn_bundle_open(&b, bundle, bsize);
    CHECK(st == INN_OK, "open vectors: %s", inn_status_str(st));
    if (st) return 0;
    size_t pos = 0;
    int records = 0;
    while (pos + 24 <= esize) {
        uint32_t bucket = get32(exp + pos), layer = get32(exp + pos + 4), layout = get32(exp + pos + 8),
                 dtype = get32(exp + pos + 12);
        pos += 16;
        const unsigned char *arr[3];
        uint64_t len[3];
        for (int k = 0; k < 3; k++) {
            len[k] = get64(exp + pos);
            arr[k] = exp + pos + 8;
            pos += 8 + (size_t)len[k];
        }
        size_t scratch_size = 0;
        inn_bundle_scratch_size(&b, bucket, &scratch_size);
        void *scratch = malloc(scratch_size);
        void *w = malloc(len[0] ? len[0] : 1);
        float *scales = malloc(len[1] ? len[1] : 4), *bias = malloc(len[2] ? len[2] : 4);
        st = inn_materialize(&b, bucket, layer, (inn_layout)layout, (inn_dtype)dtype, w, len[0], len[1] ? scales : NULL,
                             len[1], len[2] ? bias : NULL, len[2], scratch, scratch_size);
        CHECK(st == INN_OK, "materialize b%u l%u layout %u dtype %u: %s", bucket, layer, layout, dtype, inn_status_str(st));
        if (st == INN_OK) {
            if (dtype == INN_I8) {
                CHECK(memcmp(w, arr[0], len[0]) == 0, "int8 weights differ b%u l%u layout %u", bucket, layer, layout);
            } else {
                size_t bad = 0;
                for (size_t i = 0; i < len[0] / 4; i++) {
                    float e;
                    memcpy(&e, arr[0] + 4 * i, 4);
                    bad += ((float *)w)[i] != e;
                }
                CHECK(bad == 0, "%zu float weights differ b%u l%u layout %u", bad, bucket, layer, layout);
            }
            CHECK(len[1] == 0 || memcmp(scales, arr[1], len[1]) == 0, "scales differ b%u l%u", bucket, layer);
            CHECK(len[2] == 0 || memcmp(bias, arr[2], len[2]) == 0, "bias differs b%u l%u", bucket, layer);
        }
        free(scratch);
        free(w);
        free(scales);
        free(bias);
        records++;
    }
    return records;
}

typedef struct {
    const inn_bundle *b;
    const inn_graph *g;
    void *const *outs;
    const size_t *sizes;
    uint32_t part, parts;
    void *scratch;
    size_t scratch_size;
    inn_status st;
} part_job;

static void *run_part(void *arg) {
    part_job *j = (part_job *)arg;
    j->st = inn_graph_fill_part(j->b, j->g, j->outs, j->sizes, j->part, j->parts, j->scratch, j->scratch_size);
    return NULL;
}

/* The graph filled in `parts` parts, all on their own threads at once (ThreadSanitizer builds check the parts
 * share nothing), is byte-equal to inn_graph_fill's images `want`. */
static void parts_match(const inn_bundle *b, const inn_graph *g, void *const *want, const size_t *sizes, uint32_t parts,
                        size_t scratch_size) {
    void *outs[8];
    part_job jobs[16];
    pthread_t threads[16];
    for (uint32_t k = 0; k < g->image_count; k++) outs[k] = malloc(sizes[k] + 1);
    inn_status st = inn_graph_fill_spans(b, g, outs, sizes);
    CHECK(st == INN_OK, "fill spans: %s", inn_status_str(st));
    for (uint32_t p = 0; p < parts; p++) {
        jobs[p] = (part_job){b, g, outs, sizes, p, parts, malloc(scratch_size), scratch_size, INN_ERR_ARG};
        CHECK(pthread_create(&threads[p], NULL, run_part, &jobs[p]) == 0, "thread %u", p);
    }
    for (uint32_t p = 0; p < parts; p++) {
        pthread_join(threads[p], NULL);
        CHECK(jobs[p].st == INN_OK, "part %u of %u: %s", p, parts, inn_status_str(jobs[p].st));
        free(jobs[p].scratch);
    }
    for (uint32_t k = 0; k < g->image_count; k++) {
        CHECK(memcmp(outs[k], want[k], sizes[k]) == 0, "image %u filled in %u parts differs from one fill", k, parts);
        free(outs[k]);
    }
}

/* inn_graph_part_nodes: the parts' ranges tile the NODE section in order, and each part reads no node outside
 * its own range: filled from a copy of the bundle whose every other node byte is scrambled (after opening, so
 * validation cannot object), each part writes exactly what it writes from the real bundle. */
static void part_nodes_suffice(const inn_bundle *b, const inn_graph *g, const size_t *sizes, uint32_t parts,
                               size_t scratch_size) {
    CHECK(inn_graph_part_nodes(b, g, parts, parts, &(size_t){0}, &(size_t){0}) == INN_ERR_ARG, "part past the parts");
    CHECK(inn_graph_part_nodes(b, g, 0, 0, &(size_t){0}, &(size_t){0}) == INN_ERR_ARG, "zero parts");
    size_t node_start = (size_t)(b->nodes - b->data), next = node_start;
    uint8_t *copy = malloc(b->size);
    void *real[8], *scrambled[8], *scratch = malloc(scratch_size);
    for (uint32_t k = 0; k < g->image_count; k++) {
        real[k] = malloc(sizes[k] + 1);
        scrambled[k] = malloc(sizes[k] + 1);
    }
    for (uint32_t p = 0; p < parts; p++) {
        size_t first = 1, end = 1;
        inn_status st = inn_graph_part_nodes(b, g, p, parts, &first, &end);
        CHECK(st == INN_OK, "part %u of %u nodes: %s", p, parts, inn_status_str(st));
        if (first == end) continue; /* a part without layers */
        CHECK(first == next && end > first && end <= node_start + b->nodes_size,
              "part %u of %u reads nodes [%zu, %zu), expected from %zu", p, parts, first, end, next);
        next = end;
        inn_bundle c;
        memcpy(copy, b->data, b->size);
        CHECK(inn_bundle_open(&c, copy, b->size) == INN_OK, "copy opens");
        for (size_t i = node_start; i < node_start + b->nodes_size; i++)
            if (i < first || i >= end) copy[i] ^= 0x5A;
        inn_graph gc;
        CHECK(inn_graph_find(&c, g->bucket, "vectors", &gc) == INN_OK, "graph of the copy");
        for (uint32_t k = 0; k < g->image_count; k++) { /* other parts' holes: written by neither fill */
            memset(real[k], 0, sizes[k]);
            memset(scrambled[k], 0, sizes[k]);
        }
        inn_graph_fill_spans(b, g, real, sizes);
        inn_graph_fill_spans(&c, &gc, scrambled, sizes);
        st = inn_graph_fill_part(b, g, real, sizes, p, parts, scratch, scratch_size);
        inn_status sc = inn_graph_fill_part(&c, &gc, scrambled, sizes, p, parts, scratch, scratch_size);
        CHECK(st == INN_OK && sc == INN_OK, "part %u of %u: %s / %s", p, parts, inn_status_str(st), inn_status_str(sc));
        for (uint32_t k = 0; k < g->image_count; k++)
            CHECK(memcmp(real[k], scrambled[k], sizes[k]) == 0, "part %u of %u read a node outside its range", p, parts);
    }
    CHECK(next == node_start + b->nodes_size, "the %u parts read nodes up to %zu of %zu", parts, next,
          node_start + b->nodes_size);
    for (uint32_t k = 0; k < g->image_count; k++) {
        free(real[k]);
        free(scrambled[k]);
    }
    free(scratch);
    free(copy);
}

/* Buffers of each image's size for graph g (at most 8 images), in `outs` and `sizes`. */
static void image_buffers(const inn_graph *g, void **outs, size_t *sizes) {
    for (uint32_t k = 0; k < g->image_count; k++) {
        inn_image_info info;
        inn_graph_image(g, k, &info);
        sizes[k] = (size_t)info.size;
        outs[k] = malloc(sizes[k] + 4);
    }
}

/* Fill one bucket's "vectors" graph and compare image `index` with the Python reference's bytes. */
static int graph_matches(const inn_bundle *b, uint32_t bucket, uint32_t index, const unsigned char *want, size_t n) {
    inn_graph g;
    inn_status st = inn_graph_find(b, bucket, "vectors", &g);
    CHECK(st == INN_OK, "graph of bucket %u: %s", bucket, inn_status_str(st));
    if (st || index >= g.image_count || g.image_count > 8) return 0;
    void *outs[8];
    size_t sizes[8], scratch_size = 0;
    image_buffers(&g, outs, sizes);
    inn_graph_scratch_size(b, &g, &scratch_size);
    void *scratch = malloc(scratch_size);
    CHECK(inn_graph_fill(b, &g, outs, sizes, scratch, scratch_size - 1) == INN_ERR_BUFFER, "small graph scratch");
    st = inn_graph_fill(b, &g, outs, sizes, scratch, scratch_size);
    CHECK(st == INN_OK, "fill bucket %u: %s", bucket, inn_status_str(st));
    int ok = st == INN_OK && sizes[index] == n && memcmp(outs[index], want, n) == 0;
    CHECK(ok, "image %u of bucket %u differs from the Python reference", index, bucket);
    void *scratch8 = malloc(scratch_size);
    CHECK(inn_graph_fill_part(b, &g, outs, sizes, 1, 1, scratch8, scratch_size) == INN_ERR_ARG, "part past the parts");
    CHECK(inn_graph_fill_part(b, &g, outs, sizes, 0, 0, scratch8, scratch_size) == INN_ERR_ARG, "zero parts");
    CHECK(inn_graph_fill_part(b, &g, outs, sizes, 0, 2, scratch8, scratch_size - 1) == INN_ERR_BUFFER, "small part scratch");
    free(scratch8);
    for (uint32_t parts = 1; st == INN_OK && parts <= b->layer_count + 2 && parts <= 16; parts += 1 + parts / 2) {
        parts_match(b, &g, outs, sizes, parts, scratch_size);
        part_nodes_suffice(b, &g, sizes, parts, scratch_size);
    }
    for (uint32_t k = 0; k < g.image_count; k++) free(outs[k]);
    free(scratch);
    return ok;
}

static int graphs(const unsigned char *bundle, size_t bsize, const unsigned char *exp, size_t esize) {
    inn_bundle b;
    if (inn_bundle_open(&b, bundle, bsize) != INN_OK) return 0;
    int records = 0;
    for (size_t pos = 0; pos + 16 <= esize;) {
        uint32_t bucket = get32(exp + pos), index = get32(exp + pos + 4);
        size_t n = (size_t)get64(exp + pos + 8);
        records += graph_matches(&b, bucket, index, exp + pos + 16, n);
        pos += 16 + n;
    }
    uint32_t count = 0, bucket, listed = 0;
    char runtime[INN_RUNTIME_NAME + 1];
    CHECK(inn_graph_count(&b, &count) == INN_OK && count > 0, "graph count");
    while (inn_graph_list(&b, listed, &bucket, runtime) == INN_OK) listed++;
    CHECK(listed == count, "inn_graph_count %u, inn_graph_list finds %u", count, listed);
    inn_graph g;
    CHECK(inn_graph_find(&b, 0, "litert", &g) == INN_ERR_MISSING, "missing runtime");
    CHECK(inn_graph_find(&b, 99, "vectors", &g) == INN_ERR_MISSING, "missing bucket graph");
    CHECK(inn_graph_find(&b, 0, "a-runtime-name-too-long", &g) == INN_ERR_ARG, "long runtime name");
    return records;
}

/* Width cache stamps (inn_cache.c): a stamp checks its own files; every damaged byte, file size or stamp byte
 * reads CHECKSUM, and a whole stamp of another bucket, runtime or bundle header reads STALE. */
static void cache_stamps(const unsigned char *bundle, size_t bsize) {
    unsigned char *copy = malloc(bsize);
    memcpy(copy, bundle, bsize);
    inn_bundle b, other;
    inn_graph g, g1;
    if (inn_bundle_open(&b, copy, bsize) != INN_OK || inn_graph_find(&b, 0, "vectors", &g) != INN_OK ||
        inn_graph_find(&b, 1, "vectors", &g1) != INN_OK || g.image_count > 8 || g1.image_count > 8) {
        CHECK(0, "cache stamps: the vectors' graphs of buckets 0 and 1 do not open");
        free(copy);
        return;
    }
    void *outs[8], *outs1[8];
    size_t sizes[8], sizes1[8], scratch_size = 0;
    image_buffers(&g, outs, sizes);
    image_buffers(&g1, outs1, sizes1);
    inn_graph_scratch_size(&b, &g, &scratch_size);
    void *scratch = malloc(scratch_size);
    CHECK(inn_graph_fill(&b, &g, outs, sizes, scratch, scratch_size) == INN_OK, "cache stamps: fill");
    size_t n = inn_cache_stamp_size(&g), n1 = inn_cache_stamp_size(&g1);
    CHECK(n == 104 + 16 * (size_t)g.image_count + 4 && inn_cache_stamp_size(NULL) == 0, "stamp size %zu", n);
    uint8_t *stamp = malloc(n + 1), *stamp1 = malloc(n1);
    const void *const *imgs = (const void *const *)outs;
    CHECK(inn_cache_stamp(&b, &g, "vectors", imgs, sizes, stamp, n - 1) == INN_ERR_BUFFER, "small stamp buffer");
    CHECK(inn_cache_stamp(&b, NULL, "vectors", imgs, sizes, stamp, n) == INN_ERR_ARG, "stamp of no graph");
    CHECK(inn_cache_stamp(&b, &g, "", imgs, sizes, stamp, n) == INN_ERR_ARG, "stamp of no runtime");
    sizes[0]--;
    CHECK(inn_cache_stamp(&b, &g, "vectors", imgs, sizes, stamp, n) == INN_ERR_ARG, "stamp of a short file");
    sizes[0]++;
    CHECK(inn_cache_stamp(&b, &g, "vectors", imgs, sizes, stamp, n) == INN_OK, "stamp");
    CHECK(inn_cache_check(&b, &g, "vectors", stamp, n, imgs, sizes) == INN_OK, "a stamp checks its own files");
    for (uint32_t k = 0; k < g.image_count; k++) { /* a flipped bit anywhere in a file */
        for (size_t at = 0; at < sizes[k]; at += 1 + sizes[k] / 7) {
            ((uint8_t *)outs[k])[at] ^= 0x10;
            CHECK(inn_cache_check(&b, &g, "vectors", stamp, n, imgs, sizes) == INN_ERR_CHECKSUM, "file %u byte %zu", k, at);
            ((uint8_t *)outs[k])[at] ^= 0x10;
        }
        sizes[k]--;
        CHECK(inn_cache_check(&b, &g, "vectors", stamp, n, imgs, sizes) == INN_ERR_CHECKSUM, "file %u cut short", k);
        sizes[k]++;
    }
    for (size_t at = 0; at < n; at++) { /* a flipped bit anywhere in the stamp */
        stamp[at] ^= 0x01;
        inn_status st = inn_cache_check(&b, &g, "vectors", stamp, n, imgs, sizes);
        CHECK(st == (at < 4 ? INN_ERR_MAGIC : INN_ERR_CHECKSUM) || (at >= 100 && at < 104 && st == INN_ERR_TRUNCATED) ||
              (at >= 100 && at < 104 && st == INN_ERR_FORMAT), "stamp byte %zu: %s", at, inn_status_name(st));
        stamp[at] ^= 0x01;
    }
    CHECK(inn_cache_check(&b, &g, "vectors", stamp, n - 1, imgs, sizes) == INN_ERR_TRUNCATED, "stamp cut short");
    CHECK(inn_cache_check(&b, &g, "vectors", stamp, 50, imgs, sizes) == INN_ERR_TRUNCATED, "stamp cut to 50 bytes");
    CHECK(inn_cache_check(&b, &g, "vectors", stamp, 3, imgs, sizes) == INN_ERR_MAGIC, "stamp cut to 3 bytes");
    stamp[n] = 0;
    CHECK(inn_cache_check(&b, &g, "vectors", stamp, n + 1, imgs, sizes) == INN_ERR_FORMAT, "stamp with a byte more");
    /* whole stamps of other files */
    CHECK(inn_cache_check(&b, &g, "vector", stamp, n, imgs, sizes) == INN_ERR_STALE, "another runtime");
    inn_graph_fill(&b, &g1, outs1, sizes1, scratch, scratch_size);
    CHECK(inn_cache_stamp(&b, &g1, "vectors", (const void *const *)outs1, sizes1, stamp1, n1) == INN_OK, "stamp 1");
    CHECK(n1 != n || inn_cache_check(&b, &g, "vectors", stamp1, n1, imgs, sizes) == INN_ERR_STALE, "another bucket");
    memcpy(&other, &b, sizeof b);
    unsigned char header[64];
    memcpy(header, copy, 64);
    header[36] ^= 1; /* another section table checksum: another bundle */
    other.data = header;
    other.size = 64;
    CHECK(inn_cache_check(&other, &g, "vectors", stamp, n, imgs, sizes) == INN_ERR_STALE, "another bundle");
    /* the entry's name, and graphs whose files are not named as plain files may be */
    char name[INN_CACHE_NAME], want[INN_CACHE_NAME];
    snprintf(want, sizeof want, "%08x-%llx-b0-vectors", (unsigned)get32(copy + 36), (unsigned long long)get64(copy + 24));
    CHECK(inn_cache_entry(&b, &g, "vectors", name) == INN_OK && strcmp(name, want) == 0, "entry name %s", name);
    CHECK(inn_cache_entry(&b, &g, "../up", name) == INN_ERR_ARG, "a runtime name that is a path");
    static const char *bad[] = {"/.bin", ".abin", "a/bin", "a bin"};
    size_t at = 0;
    while (at + 5 <= bsize && memcmp(bundle + at, "a.bin", 5) != 0) at++;
    CHECK(at + 5 <= bsize, "the vectors' graph names a.bin");
    for (int k = 0; k < 4 && at + 5 <= bsize; k++) {
        memcpy(copy, bundle, bsize);
        memcpy(copy + at, bad[k], 5);
        reseal(copy, bsize);
        inn_bundle e;
        inn_graph eg;
        CHECK(inn_bundle_open(&e, copy, bsize) == INN_OK && inn_graph_find(&e, 0, "vectors", &eg) == INN_OK &&
                  inn_cache_entry(&e, &eg, "vectors", name) == INN_ERR_FORMAT,
              "a graph file named %s is not kept", bad[k]);
    }
    for (uint32_t k = 0; k < g.image_count; k++) free(outs[k]);
    for (uint32_t k = 0; k < g1.image_count; k++) free(outs1[k]);
    free(stamp);
    free(stamp1);
    free(scratch);
    free(copy);
}

/* Bucket names, ratios and costs as tools/make_test_vectors.py wrote them (BKIN, COST). */
static void bucket_tables(const unsigned char *bundle, size_t bsize) {
    inn_bundle b;
    if (inn_bundle_open(&b, bundle, bsize) != INN_OK) return;
    static const char *names[] = {"r1.0", "r0.75", "r0.5"};
    static const double ratios[] = {1.0, 0.75, 0.5};
    for (uint32_t k = 0; k < 3; k++) {
        inn_bucket_info bi;
        CHECK(inn_bucket_info_get(&b, k, &bi) == INN_OK, "bucket info %u", k);
        CHECK(bi.name_len == strlen(names[k]) && memcmp(bi.name, names[k], bi.name_len) == 0, "bucket %u name", k);
        CHECK(bi.has_ratio && bi.ratio == ratios[k], "bucket %u ratio %g", k, bi.ratio);
    }
    inn_bucket_info bi;
    CHECK(inn_bucket_info_get(&b, 3, &bi) == INN_ERR_MISSING, "bucket info past the end");
    uint32_t count = 0;
    CHECK(inn_cost_count(&b, &count) == INN_OK && count == 4, "cost rows: %u", count);
    inn_bucket_cost c;
    CHECK(inn_cost_find(&b, 0, "vectors", &c) == INN_OK && c.bucket == 0 && c.known == 15 && c.weights_bytes == 5000 &&
              c.file_bytes == 7000 && c.arena_bytes == 900 && c.accuracy == 97.25 && strcmp(c.runtime, "vectors") == 0,
          "cost of bucket 0");
    CHECK(inn_cost_find(&b, 1, "vectors", &c) == INN_OK &&
              c.known == (INN_COST_WEIGHTS_BYTES | INN_COST_ACCURACY) && c.weights_bytes == 3000 && c.file_bytes == 0 &&
              c.accuracy == 91.125, "cost of bucket 1");
    CHECK(inn_cost_find(&b, 2, "sixteen-chars-rt", &c) == INN_OK && c.weights_bytes == (1ull << 40) + 3 &&
              c.known == (INN_COST_WEIGHTS_BYTES | INN_COST_ARENA_BYTES) && strlen(c.runtime) == 16, "16-byte runtime");
    CHECK(inn_cost_find(&b, 2, "vectors", &c) == INN_OK && c.known == 0, "a row with nothing measured");
    CHECK(inn_cost_find(&b, 1, "litert", &c) == INN_ERR_MISSING, "no row");
    CHECK(inn_cost_find(&b, 9, "vectors", &c) == INN_ERR_MISSING, "no bucket");
    CHECK(inn_cost_find(&b, 0, "", &c) == INN_ERR_ARG, "empty runtime");
    CHECK(inn_cost_list(&b, 3, &c) == INN_OK && c.bucket == 2 && strcmp(c.runtime, "vectors") == 0, "last row");
    CHECK(inn_cost_list(&b, 4, &c) == INN_ERR_MISSING, "past the last row");
    CHECK(inn_bundle_sizeof() == sizeof(inn_bundle), "inn_bundle_sizeof");
}

/* The first hole of bucket 0's graph, behind valid checksums: each edit gives a specific error. */
static void bad_graphs(const unsigned char *good, size_t size) {
    size_t len, gidx = section_offset(good, size, "GIDX", &len), blob = section_offset(good, size, "BLOB", &len);
    CHECK(gidx && blob, "vectors carry graphs");
    if (!gidx || !blob) return;
    size_t rec = blob + (size_t)get64(good + gidx + 8 + 24); /* row 0: bucket 0 */
    size_t image = rec + 8, spans = get32(good + image + 4);
    size_t hole = image + 24 + ((get32(good + image) + 7u) & ~7u) + spans * 16;
    struct { size_t at; uint32_t value; inn_status want; const char *what; } edits[] = {
        {rec, 0x31524749u ^ 1u, INN_ERR_FORMAT, "record magic"},
        {hole + 8, 3, INN_ERR_FORMAT, "hole size not the tensor's"},
        {hole, 0xFFFFFFF0u, INN_ERR_FORMAT, "hole past the image"},
        {hole + 16, 9999, INN_ERR_RANGE, "hole names a missing layer"},
        {hole + 20, 77, INN_ERR_FORMAT, "unknown tensor code"},
        {image + 4, 0x7FFFFFFFu, INN_ERR_RANGE, "huge span count"},
        {image + 4, 100000, INN_ERR_TRUNCATED, "spans past the record"},
    };
    unsigned char *d = malloc(size);
    for (size_t e = 0; e < sizeof edits / sizeof edits[0]; e++) {
        memcpy(d, good, size);
        put32(d + edits[e].at, edits[e].value);
        reseal(d, size);
        inn_bundle b;
        inn_graph g;
        inn_status st = inn_bundle_open(&b, d, size);
        if (st == INN_OK) st = inn_graph_find(&b, 0, "vectors", &g);
        CHECK(st == edits[e].want, "%s: got %s", edits[e].what, inn_status_str(st));
    }
    free(d);
}

static inn_status open_copy(const unsigned char *d, size_t n) {
    inn_bundle b;
    return inn_bundle_open(&b, d, n);
}

static int covered(const unsigned char *d, size_t size, size_t at) {
    uint64_t table = get64(d + 16);
    uint32_t count = get32(d + 12);
    if (at < 64 || (at >= table && at < table + (uint64_t)count * 32)) return 1;
    for (uint32_t i = 0; i < count; i++) {
        uint64_t off = get64(d + table + 32 * i + 8), len = get64(d + table + 32 * i + 16);
        if (at >= off && at < off + len && off + len <= size) return 1;
    }
    return 0;
}

static void bad_input(const unsigned char *good, size_t size) {
    unsigned char *d = malloc(size);
    inn_bundle b;
    CHECK(inn_bundle_open(NULL, good, size) == INN_ERR_ARG, "null bundle");
    CHECK(inn_bundle_open(&b, NULL, size) == INN_ERR_ARG, "null data");
    /* truncated anywhere: a specific error, never a crash */
    for (size_t n = 0; n < size; n += (n < 256 ? 1 : 61)) {
        inn_status st = open_copy(good, n);
        CHECK(st == INN_ERR_TRUNCATED, "truncated to %zu: got %s", n, inn_status_str(st));
    }
    /* bit flips anywhere in the header, table or a section: caught by a checksum (or the magic);
     * alignment padding between sections is not covered and not read */
    for (size_t i = 0; i < size; i += 7) {
        if (!covered(good, size, i)) continue;
        memcpy(d, good, size);
        d[i] ^= (unsigned char)(1u << (i % 8));
        inn_status st = open_copy(d, size);
        CHECK(st == INN_ERR_CHECKSUM || st == INN_ERR_MAGIC,
              "bit flip at %zu: got %s", i, inn_status_str(st));
    }
    /* wrong magic / version */
    memcpy(d, good, size);
    d[0] = 'X';
    CHECK(open_copy(d, size) == INN_ERR_MAGIC, "magic");
    memcpy(d, good, size);
    d[4] = 2;
    reseal(d, size);
    CHECK(open_copy(d, size) == INN_ERR_VERSION, "version");
    /* oversized dimension: a group with 2^25 nodes */
    size_t len = 0, grps = section_offset(good, size, "GRPS", &len);
    memcpy(d, good, size);
    put32(d + grps + 8, 1u << 25);
    reseal(d, size);
    CHECK(open_copy(d, size) == INN_ERR_RANGE, "oversized group: %s", inn_status_str(open_copy(d, size)));
    /* overflowing sizes: a table count whose byte size wraps */
    memcpy(d, good, size);
    size_t layr = section_offset(good, size, "LAYR", &len);
    put32(d + layr, 0xFFFFFFFFu);
    reseal(d, size);
    inn_status st = open_copy(d, size);
    CHECK(st == INN_ERR_TRUNCATED || st == INN_ERR_OVERFLOW, "huge layer count: %s", inn_status_str(st));
    /* a layer whose taps make weight sizes overflow or run past the nodes */
    memcpy(d, good, size);
    put32(d + layr + 8 + 8, INN_MAX_DIM);
    reseal(d, size);
    st = open_copy(d, size);
    CHECK(st == INN_ERR_RANGE || st == INN_ERR_OVERFLOW, "huge taps: %s", inn_status_str(st));
    /* a piece naming a group that does not exist */
    memcpy(d, good, size);
    size_t piec = section_offset(good, size, "PIEC", &len);
    put32(d + piec + 8, 999);
    reseal(d, size);
    CHECK(open_copy(d, size) == INN_ERR_RANGE, "bad group id");
    /* a broken partition (not sorted) behind valid checksums */
    memcpy(d, good, size);
    size_t part = section_offset(good, size, "PART", &len);
    if (len >= 12) {
        float bad = 2.0f;
        memcpy(d + part + 4, &bad, 4);
        reseal(d, size);
        CHECK(open_copy(d, size) == INN_ERR_PARTITION, "bad partition: %s", inn_status_str(open_copy(d, size)));
    }
    /* API misuse on a good bundle */
    CHECK(inn_bundle_open(&b, good, size) == INN_OK, "reopen");
    inn_layer_info li;
    CHECK(inn_layer_info_get(&b, 99, 0, &li) == INN_ERR_MISSING, "missing bucket");
    CHECK(inn_layer_info_get(&b, 0, 999, &li) == INN_ERR_MISSING, "missing layer");
    float tiny[1];
    unsigned char scratch[16];
    CHECK(inn_materialize(&b, 0, 0, INN_LAYOUT_OIT, INN_F32, tiny, sizeof tiny, NULL, 0, NULL, 0, scratch, sizeof scratch) ==
              INN_ERR_BUFFER, "small buffers");
    free(d);
}

typedef struct {
    size_t calls, covered, end; /* stretches reported, their bytes, the end of the last */
    int within;                 /* every stretch inside the bundle and after the one before */
    size_t size;
} done_log;

static void log_done(void *ctx, size_t first, size_t end) {
    done_log *log = (done_log *)ctx;
    log->within = log->within && first <= end && end <= log->size && first >= log->end;
    log->calls++;
    log->covered += end - first;
    log->end = end;
}

/* inn_bundle_open_ex opens the same bundle as inn_bundle_open, reporting every section's bytes once, in order,
 * and fails like it: a flipped node byte is CHECKSUM for both. */
static void open_with_done(const unsigned char *good, size_t size) {
    inn_bundle a, b;
    done_log log = {0, 0, 0, 1, size};
    CHECK(inn_bundle_open(&a, good, size) == INN_OK, "open");
    CHECK(inn_bundle_open_ex(&b, good, size, log_done, &log) == INN_OK, "open_ex");
    CHECK(memcmp(&a, &b, sizeof a) == 0, "open_ex opens the same bundle as open");
    size_t sections = 0, count = get32(good + 12), table = (size_t)get64(good + 16);
    for (size_t i = 0; i < count; i++) sections += (size_t)get64(good + table + i * 32 + 16);
    CHECK(log.within && log.covered == sections && log.calls >= count, "done() told of %zu bytes in %zu calls, "
          "the sections hold %zu", log.covered, log.calls, sections);
    unsigned char *d = malloc(size);
    memcpy(d, good, size);
    d[(size_t)(a.nodes - a.data)] ^= 1;
    log = (done_log){0, 0, 0, 1, size};
    CHECK(inn_bundle_open(&a, d, size) == INN_ERR_CHECKSUM && inn_bundle_open_ex(&b, d, size, log_done, &log) ==
          INN_ERR_CHECKSUM, "a flipped node byte");
    free(d);
}

/* inn_crc_shift(state, n) is the state advanced over n zero bytes, for both polynomials, at lengths around
 * every power of two it composes from. */
static void crc_shift(void) {
    static const size_t lens[] = {0, 1, 3, 8, 63, 64, 1000, 8192, 70001};
    unsigned char *zeros = calloc(70001, 1);
    for (int castagnoli = 0; castagnoli < 2; castagnoli++)
        for (size_t i = 0; i < sizeof lens / sizeof *lens; i++) {
            uint32_t s = 0x12345678u ^ (uint32_t)lens[i];
            CHECK(inn_crc_shift(castagnoli, s, lens[i]) == inn_crc_update(castagnoli, s, zeros, lens[i]),
                  "crc shift over %zu zero bytes (castagnoli %d)", lens[i], castagnoli);
        }
    free(zeros);
}

/* The node chunks' states of a `parts`-way split, joined on a copy of b (b itself stays pending). */
static inn_status join_split(const inn_bundle *b, uint32_t parts) {
    uint32_t *states = calloc(parts, sizeof *states);
    inn_status st = INN_OK;
    for (uint32_t p = 0; p < parts && !st; p++) st = inn_bundle_check_nodes(b, p, parts, &states[p]);
    inn_bundle c = *b;
    if (!st) st = inn_bundle_nodes_verified(&c, states, parts);
    CHECK(st != INN_OK || c.nodes_pending == 0, "a join that succeeds clears nodes_pending");
    free(states);
    return st;
}

/* One layer's float weights and bias, or the status that refused them. */
static inn_status layer0(const inn_bundle *b, float *w, size_t wbytes, float *bias, size_t bbytes) {
    size_t need = 0;
    inn_bundle_scratch_size(b, 0, &need);
    void *scratch = malloc(need + 8);
    inn_status st = inn_materialize(b, 0, 0, INN_LAYOUT_OIT, INN_F32, w, wbytes, NULL, 0, bias, bbytes, scratch, need);
    free(scratch);
    return st;
}

/* inn_bundle_open_deferred opens the same bundle as inn_bundle_open but for the node check it leaves pending:
 * until a split's checksums join to the stored one, node-derived output is refused (UNVERIFIED); every split
 * joins (one part, parts past the 64-byte chunks); the verified fill in parts writes what the eager fill does;
 * a flipped node byte opens, then fails every join (CHECKSUM); a NaN node (re-sealed) fails its chunk (FORMAT). */
static void deferred_nodes(const unsigned char *good, size_t size) {
    inn_bundle a, b;
    CHECK(inn_bundle_open(&a, good, size) == INN_OK, "open");
    CHECK(inn_bundle_open_deferred(&b, good, size, NULL, NULL) == INN_OK && b.nodes_pending == 1, "deferred open");
    CHECK(memcmp(&a, &b, offsetof(inn_bundle, nodes_crc)) == 0, "the deferred open reads the same tables");
    inn_layer_info li;
    CHECK(inn_layer_info_get(&b, 0, 0, &li) == INN_OK, "layer info while pending");
    size_t wbytes = (size_t)li.weight_count * 4, bbytes = (size_t)li.n_out * 4;
    float *wa = malloc(wbytes), *wb = malloc(wbytes), *ba = calloc(li.n_out, 4), *bb = calloc(li.n_out, 4);
    CHECK(layer0(&b, wb, wbytes, bb, bbytes) == INN_ERR_UNVERIFIED, "materialize while pending");
    const uint8_t *p;
    size_t n;
    CHECK(inn_bundle_section(&b, "NODE", &p, &n) == INN_ERR_UNVERIFIED, "NODE while pending");
    CHECK(inn_bundle_section(&b, "INFO", &p, &n) == INN_OK, "other sections while pending");
    inn_graph g;
    CHECK(inn_graph_find(&b, 0, "vectors", &g) == INN_OK && g.image_count <= 8, "graph while pending");
    void *want[8], *got[8];
    size_t sizes[8], same[8], need = 0;
    image_buffers(&g, want, sizes);
    image_buffers(&g, got, same);
    inn_graph_scratch_size(&b, &g, &need);
    void *scratch = malloc(need + 8);
    CHECK(inn_graph_fill(&b, &g, got, sizes, scratch, need) == INN_ERR_UNVERIFIED, "fill while pending");
    CHECK(inn_graph_fill_part(&b, &g, got, sizes, 0, 1, scratch, need) == INN_ERR_UNVERIFIED, "fill part while pending");
    uint32_t splits[] = {1, 2, 3, 5, 8, (uint32_t)(b.nodes_size / 64 + 3)};
    for (size_t i = 0; i < sizeof splits / sizeof *splits; i++)
        CHECK(join_split(&b, splits[i]) == INN_OK, "%u parts join to the stored checksum", splits[i]);
    CHECK(inn_bundle_check_nodes(&b, 3, 3, &(uint32_t){0}) == INN_ERR_ARG, "chunk past the parts");
    CHECK(inn_bundle_nodes_verified(&b, &(uint32_t){0}, 0) == INN_ERR_ARG, "zero parts");
    /* the fill in verified parts, then the join: what the eager bundle fills */
    CHECK(inn_graph_fill(&a, &g, want, sizes, scratch, need) == INN_OK, "eager fill");
    CHECK(inn_graph_fill_spans(&b, &g, got, sizes) == INN_OK, "spans while pending");
    uint32_t states[3];
    for (uint32_t q = 0; q < 3; q++)
        CHECK(inn_graph_fill_part_verify(&b, &g, got, sizes, q, 3, scratch, need, &states[q]) == INN_OK, "part %u", q);
    CHECK(b.nodes_pending == 1 && inn_bundle_nodes_verified(&b, states, 3) == INN_OK && b.nodes_pending == 0, "join");
    for (uint32_t k = 0; k < g.image_count; k++)
        CHECK(memcmp(want[k], got[k], sizes[k]) == 0, "image %u of the verified fill differs from the eager fill", k);
    CHECK(layer0(&a, wa, wbytes, ba, bbytes) == layer0(&b, wb, wbytes, bb, bbytes) && memcmp(wa, wb, wbytes) == 0 &&
          memcmp(ba, bb, bbytes) == 0, "materialize once verified");
    /* a flipped node byte: the open does not see it, every join does */
    unsigned char *d = malloc(size);
    memcpy(d, good, size);
    d[(size_t)(a.nodes - a.data) + a.nodes_size / 2] ^= 0x10;
    CHECK(inn_bundle_open_deferred(&b, d, size, NULL, NULL) == INN_OK, "a flipped node byte opens deferred");
    for (size_t i = 0; i < sizeof splits / sizeof *splits; i++)
        CHECK(join_split(&b, splits[i]) == INN_ERR_CHECKSUM, "%u parts: a flipped node byte", splits[i]);
    CHECK(b.nodes_pending == 1 && layer0(&b, wb, wbytes, bb, bbytes) == INN_ERR_UNVERIFIED, "still refused");
    /* a NaN node, re-sealed: the eager open and the chunk holding it say FORMAT */
    memcpy(d, good, size);
    size_t at = (size_t)(a.nodes - a.data) + (a.nodes_size / 2 & ~(size_t)3);
    if (a.node_dtype == INN_NODES_F32) {
        float nan = NAN;
        memcpy(d + at, &nan, 4);
        reseal(d, size);
        CHECK(inn_bundle_open(&a, d, size) == INN_ERR_FORMAT, "a NaN node, eager");
        CHECK(inn_bundle_open_deferred(&b, d, size, NULL, NULL) == INN_OK, "a NaN node opens deferred");
        CHECK(join_split(&b, 1) == INN_ERR_FORMAT && join_split(&b, 4) == INN_ERR_FORMAT, "a NaN node, deferred");
    }
    free(d);
    for (uint32_t k = 0; k < g.image_count; k++) {
        free(want[k]);
        free(got[k]);
    }
    free(scratch);
    free(wa);
    free(wb);
    free(ba);
    free(bb);
}

/* inn_cpu_features: the same bits on every call (the first asks the CPU, later ones read the kept word), and
 * the CPU's own answer (libgcc's on x86-64, the kernel's hwcaps on Linux aarch64), so a detection that found
 * nothing, which would leave every CPU on the slow paths that the bit-exact checks cannot tell apart, fails
 * here. Portable builds have no optional paths, hence no bits. */
static void cpu_features(void) {
    const unsigned first = inn_cpu_features();
    CHECK(inn_cpu_features() == first, "CPU features %u, then %u", first, inn_cpu_features());
#if defined(INN_PORTABLE)
    CHECK(first == 0, "a portable build found CPU features %u", first);
#elif defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    CHECK(!(first & INN_CPU_CRC32C) == !__builtin_cpu_supports("sse4.2"), "SSE4.2: CPU features %u", first);
#if !defined(__clang__) /* clang 14's __builtin_cpu_supports does not know "f16c" */
    CHECK(!(first & INN_CPU_F16C) == !(__builtin_cpu_supports("f16c") && __builtin_cpu_supports("avx")),
          "F16C: CPU features %u", first);
#endif
#elif defined(__aarch64__) && defined(__linux__)
    CHECK(!(first & INN_CPU_CRC32C) == !(getauxval(AT_HWCAP) & (1ul << 7)), "HWCAP_CRC32: CPU features %u", first);
#endif
}

/* CRC-32C: known answers (the check value of "123456789" and RFC 3720's iSCSI vectors), the CPU's CRC
 * instructions (where this CPU has them) equal to the tables at every length and alignment around the
 * three-lane blocks, and a bundle of 1.4 or later checked by CRC-32C (the writer always sets the flag), which
 * a reader that took the flag for CRC-32 would reject. */
static void checksums(const unsigned char *good, size_t size) {
    unsigned char v[32], zeros[32] = {0}, ones[32];
    for (int i = 0; i < 32; i++) v[i] = (unsigned char)i, ones[i] = 0xFF;
    const uint8_t *nine = (const uint8_t *)"123456789";
    CHECK(inn_crc32(nine, 9) == 0xCBF43926u, "CRC-32 check value");
    CHECK(inn_crc32c(nine, 9) == 0xE3069283u && inn_crc32c_portable(nine, 9) == 0xE3069283u, "CRC-32C check value");
    CHECK(inn_crc32c(NULL, 0) == 0 && inn_crc32c(zeros, 32) == 0x8A9136AAu && inn_crc32c(ones, 32) == 0x62A8AB43u &&
              inn_crc32c(v, 32) == 0x46DD794Eu,
          "CRC-32C iSCSI vectors");
    size_t n = 3 * 3 * 8192 + 64;
    unsigned char *r = malloc(n);
    uint32_t x = 12345;
    for (size_t i = 0; i < n; i++) r[i] = (unsigned char)((x = x * 1103515245u + 12345u) >> 16);
    static const size_t lens[] = {0, 1, 7, 8, 9, 63, 4096, 24575, 24576, 24577, 3 * 3 * 8192 + 1, 3 * 3 * 8192 + 56};
    for (size_t l = 0; l < sizeof lens / sizeof lens[0]; l++)
        for (size_t off = 0; off < 8; off++)
            CHECK(inn_crc32c(r + off, lens[l]) == inn_crc32c_portable(r + off, lens[l]), "CRC-32C length %zu at +%zu",
                  lens[l], off);
    for (size_t cut = 0; cut < n; cut += 9000) /* in two pieces: the open's stretches */
        CHECK(~inn_crc_update(1, inn_crc_update(1, 0xFFFFFFFFu, r, cut), r + cut, n - cut) == inn_crc32c(r, n) &&
                  ~inn_crc_update(0, inn_crc_update(0, 0xFFFFFFFFu, r, cut), r + cut, n - cut) == inn_crc32(r, n),
              "CRC in pieces cut at %zu", cut);
    free(r);
    if (size < 64 || (good[6] | good[7] << 8) < 4) return; /* a bundle written before 1.4: CRC-32 throughout */
    CHECK(get32(good + 32) & INN_FLAG_CRC32C, "a 1.4 bundle without the CRC-32C flag");
    unsigned char *d = malloc(size);
    memcpy(d, good, size);
    put32(d + 32, get32(d + 32) & ~INN_FLAG_CRC32C);
    put32(d + 60, inn_crc32(d, 60)); /* a header that says CRC-32 over CRC-32C checksums */
    CHECK(open_copy(d, size) == INN_ERR_CHECKSUM, "CRC-32C checksums read as CRC-32: %s", inn_status_str(open_copy(d, size)));
    free(d);
}

/* int8 quantisation (inn_quantize_row) against its definition, written the plain way: scale = max(max|x|,
 * 1e-9) / 127, q = clamp(nearbyintf(x / scale), +-127), NaN to 0; rows with exact ties (x / scale = k + 0.5,
 * which round to even), values past the clamp, -0.0, tiny and non-finite values, contiguous (whole vectors,
 * a tail, a short row) and strided. */
static void quantiser(void) {
    enum { N = 64 };
    float x[3 * N], scale = 0.0f, want_scale;
    int8_t q[3 * N], want[3 * N];
    uint32_t r = 7;
    int bad = 0;
    for (int row = 0; row < 6; row++) {
        for (int k = 0; k < 3 * N; k++) {
            r = r * 1103515245u + 12345u;
            x[k] = row < 2 ? (float)((int)(r >> 16) % 255 - 127) + 0.5f : ((float)(r >> 8) / 16777216.0f - 0.5f) * 300.0f;
        }
        x[0] = 127.0f; /* rows 0-1: amax 127, scale exactly 1, every other value an exact tie */
        x[1] = row == 3 ? NAN : -0.0f;
        x[2] = row == 4 ? INFINITY : 1e-30f;
        x[3] = row == 5 ? 0.0f : -126.5f;
        /* contiguous rows in whole vectors of 32, with a tail, and shorter than one (a 3x3 depthwise row) */
        static const size_t cases[4][2] = {{1, 3 * N}, {1, 3 * N - 5}, {1, 9}, {3, N}};
        for (int c = 0; c < 4; c++) {
            const size_t stride = cases[c][0], len = cases[c][1];
            float amax = 0.0f;
            for (size_t k = 0; k < len; k++)
                if (fabsf(x[k * stride]) > amax) amax = fabsf(x[k * stride]);
            want_scale = (amax > 1e-9f ? amax : 1e-9f) / 127.0f;
            for (size_t k = 0; k < len; k++) {
                float v = nearbyintf(x[k * stride] / want_scale);
                want[k * stride] = (int8_t)(v > 127.0f ? 127 : (v < -127.0f ? -127 : (v == v ? v : 0.0f)));
            }
            memset(q, 0, sizeof q);
            inn_quantize_row(x, len, stride, q, &scale);
            bad += memcmp(&scale, &want_scale, sizeof scale) != 0;
            for (size_t k = 0; k < len; k++) bad += q[k * stride] != want[k * stride];
        }
    }
    CHECK(bad == 0, "int8 quantisation differs from its definition in %d places", bad);
}

/* inn_quantize_lanes (INN_QUANT_LANES interleaved rows, the depthwise blocks of a full-width fill) against the
 * same definition row by row: a row of exact ties (amax 127, scale 1), one with NaN, one with an infinity, one
 * of zeros and -0.0, one of values under the 1e-9 floor, the rest random, for 9, 25 and 64 taps. */
static void quantiser_lanes(void) {
    enum { L = INN_QUANT_LANES, MAX = 64 };
    float x[MAX * L], scales[L], row[MAX];
    int8_t q[MAX * L];
    uint32_t r = 5;
    int bad = 0;
    static const size_t lens[3] = {9, 25, MAX};
    for (int c = 0; c < 3; c++) {
        const size_t len = lens[c];
        for (size_t k = 0; k < len; k++)
            for (int l = 0; l < L; l++) {
                r = r * 1103515245u + 12345u;
                float v = ((float)(r >> 8) / 16777216.0f - 0.5f) * 3.0f;
                if (l == 0) v = k == 0 ? 127.0f : (float)((int)(r >> 16) % 255 - 127) + 0.5f;
                if (l == 1 && k == 1) v = NAN;
                if (l == 2 && k == 2) v = -INFINITY;
                if (l == 3) v = k % 2 ? -0.0f : 0.0f;
                if (l == 4) v *= 1e-10f;
                x[k * L + l] = v;
            }
        inn_quantize_lanes(x, len, q, scales);
        for (int l = 0; l < L; l++) {
            float amax = 0.0f, want_scale;
            for (size_t k = 0; k < len; k++) {
                row[k] = x[k * L + l];
                if (fabsf(row[k]) > amax) amax = fabsf(row[k]);
            }
            want_scale = (amax > 1e-9f ? amax : 1e-9f) / 127.0f;
            bad += memcmp(&scales[l], &want_scale, sizeof want_scale) != 0;
            for (size_t k = 0; k < len; k++) {
                float v = nearbyintf(row[k] / want_scale);
                bad += q[k * L + l] != (int8_t)(v > 127.0f ? 127 : (v < -127.0f ? -127 : (v == v ? v : 0.0f)));
            }
        }
    }
    CHECK(bad == 0, "int8 quantisation of interleaved rows differs from its definition in %d places", bad);
}

/* Full-width rows written transposed (OTI: the vector transposes where the CPU has them, x86 AVX2 and aarch64
 * NEON, straight from float32, float16 and int8 nodes) against the same rows written in their own order (OIT:
 * no transposes), element for element, into float32 and int8 sinks. Kernels of 9, 4, 25, 2 and 3 taps (tails of
 * 1, none, 1, 2 and 3 past the blocks of 4 and 8: the last taps are read with the next rows' first values) and
 * 16, 12 and 5 input rows (whole blocks of 8 and 4, of 4 only, none). The nodes are copied into memory of their
 * exact size, so that a read past their end is one past an allocation (which ASan reports). */
static void transposed_rows(void) {
    enum { M_OUT = 6, MAX_IN = 16, MAX_TAPS = 25, MAX_LEN = MAX_IN * MAX_TAPS, TAPS_CASES = 5 };
    static const uint32_t taps_cases[TAPS_CASES] = {9, 4, 25, 2, 3}, in_cases[3] = {16, 12, 5};
    static const inn_node_dtype dtypes[3] = {INN_NODES_F32, INN_NODES_F16, INN_NODES_I8};
    static float f32[M_OUT * MAX_LEN], a[M_OUT * MAX_LEN], b[M_OUT * MAX_LEN];
    static uint16_t f16[M_OUT * MAX_LEN];
    static int8_t i8[M_OUT * MAX_LEN], qa[M_OUT * MAX_LEN], qb[M_OUT * MAX_LEN];
    float node_scales[M_OUT], sa[M_OUT], sb[M_OUT];
    int32_t oidx[M_OUT * INN_TAPS], iidx[MAX_IN * INN_TAPS];
    double ow[M_OUT * INN_TAPS], iw[MAX_IN * INN_TAPS], iq[MAX_IN];
    uint32_t r = 99;
    int bad = 0, cases = 0;
    for (int o = 0; o < M_OUT; o++) node_scales[o] = 0.013f * (float)(o + 1);
    for (size_t k = 0; k < M_OUT * MAX_LEN; k++) {
        r = r * 1103515245u + 12345u;
        f32[k] = ((float)(r >> 8) / 16777216.0f - 0.5f) * 4.0f;
        f16[k] = (uint16_t)((r >> 16 & 0x8000u) | (1u + (r >> 8) % 29u) << 10 | (r & 0x3FFu)); /* finite halves */
        i8[k] = (int8_t)((int)(r >> 16) % 255 - 127);
    }
    CHECK(inn_taps(NULL, M_OUT, M_OUT, oidx, ow) == INN_OK, "output taps");
    const inn_axis out = {oidx, ow, NULL, M_OUT};
    for (int tc = 0; tc < TAPS_CASES; tc++)
        for (int ic = 0; ic < 3; ic++)
            for (int dc = 0; dc < 3; dc++) {
                const uint32_t taps = taps_cases[tc], m_in = in_cases[ic];
                const size_t len = (size_t)m_in * taps, total = M_OUT * len;
                const size_t size = inn_node_size(dtypes[dc]);
                void *data = malloc(total * size);
                memcpy(data, dtypes[dc] == INN_NODES_F32 ? (const void *)f32
                             : dtypes[dc] == INN_NODES_F16 ? (const void *)f16 : (const void *)i8, total * size);
                const inn_nodes nd = {data, dtypes[dc], dtypes[dc] == INN_NODES_I8 ? node_scales : NULL, 0};
                CHECK(inn_taps(NULL, m_in, m_in, iidx, iw) == INN_OK, "input taps");
                CHECK(inn_quadrature_weights(NULL, m_in, INN_QUAD_TRAPEZOID, iq) == INN_OK, "quadrature");
                const inn_axis in = {iidx, iw, iq, m_in};
                const size_t need = inn_dense_scratch(m_in, m_in, taps);
                float *scratch = malloc(need * sizeof(float));
                for (int quantised = 0; quantised < 2; quantised++) {
                    const inn_dtype dt = quantised ? INN_I8 : INN_F32;
                    void *da = quantised ? (void *)qa : (void *)a, *db = quantised ? (void *)qb : (void *)b;
                    const inn_sink own = {INN_LAYOUT_OIT, dt, da, total, sa, M_OUT, M_OUT, NULL, NULL};
                    const inn_sink turned = {INN_LAYOUT_OTI, dt, db, total, sb, M_OUT, M_OUT, NULL, NULL};
                    CHECK(inn_dense_to_sink(&nd, M_OUT, m_in, taps, 1, &out, &in, &own, scratch, need) == INN_OK,
                          "rows in their own order");
                    CHECK(inn_dense_to_sink(&nd, M_OUT, m_in, taps, 1, &out, &in, &turned, scratch, need) == INN_OK,
                          "rows transposed");
                    for (size_t o = 0; o < M_OUT; o++)
                        for (size_t i = 0; i < m_in; i++)
                            for (size_t t = 0; t < taps; t++) {
                                const size_t ka = o * len + i * taps + t, kb = (o * taps + t) * m_in + i;
                                bad += quantised ? qa[ka] != qb[kb] : memcmp(&a[ka], &b[kb], sizeof(float)) != 0;
                            }
                    if (quantised) bad += memcmp(sa, sb, sizeof sa) != 0;
                    cases++;
                }
                free(scratch);
                free(data);
            }
    CHECK(bad == 0 && cases == 2 * 3 * 3 * TAPS_CASES,
          "transposed rows differ from rows in their own order in %d places", bad);
}

/* The portable float16 widening (every CPU without F16C, and row tails) against ldexp, all 65536 halves. */
static void halves(void) {
    int bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        uint32_t e = (h >> 10) & 31, m = h & 1023;
        double mag = e == 0 ? ldexp((double)m, -24) : e == 31 ? (m ? NAN : INFINITY) : ldexp(1024.0 + m, (int)e - 25);
        float want = (float)((h & 0x8000) ? -mag : mag), got = inn_half_to_float((uint16_t)h);
        if (isnan(want) ? !isnan(got) : memcmp(&want, &got, sizeof want) != 0) bad++;
    }
    CHECK(bad == 0, "%d float16 values widened wrongly", bad);
}

static void math(void) {
    CHECK(inn_cubic(0.0) == 1.0 && inn_cubic(1.0) == 0.0 && inn_cubic(2.0) == 0.0 && inn_cubic(-1.0) == 0.0, "kernel nodes");
    CHECK(fabs(inn_cubic(0.5) - 0.5625) < 1e-15 && fabs(inn_cubic(1.5) + 0.0625) < 1e-15, "kernel values");
    int32_t idx[40];
    double w[40], q[10];
    CHECK(inn_taps(NULL, 10, 7, idx, w) == INN_OK, "taps");
    for (int k = 0; k < 10; k++) {
        double s = w[4 * k] + w[4 * k + 1] + w[4 * k + 2] + w[4 * k + 3];
        CHECK(fabs(s - 1.0) < 1e-12, "partition of unity row %d: %g", k, s);
    }
    for (int rule = 0; rule < 3; rule++) {
        CHECK(inn_quadrature_weights(NULL, 9, (inn_quadrature)rule, q) == INN_OK, "quadrature %d", rule);
        double s = 0;
        for (int k = 0; k < 9; k++) s += q[k];
        CHECK(fabs(s - 1.0) < 1e-12, "quadrature %d sums to %g", rule, s);
    }
    float bad[3] = {0.0f, 0.7f, 0.5f};
    CHECK(inn_check_partition(bad, 3) == INN_ERR_PARTITION, "unsorted partition");
    float w8[6] = {0.5f, -1.0f, 0.25f, 0.0f, 0.0f, 0.0f};
    int8_t q8[6];
    float sc[2];
    CHECK(inn_quantize(w8, 2, 3, INN_LAYOUT_OIT, q8, sc) == INN_OK, "quantize");
    /* an all-zero row gets ai-edge-quantizer's floor: scale 1e-9f / 127 */
    CHECK(q8[1] == -127 && q8[0] == 64 && sc[1] == 1e-9f / 127.0f && q8[3] == 0, "quantize values %d %d %g", q8[0], q8[1],
          sc[1]);
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s vectors.innb expected.bin expected_graphs.bin\n", argv[0]);
        return 2;
    }
    size_t gsize;
    unsigned char *gexp = read_file(argv[3], &gsize);
    size_t bsize, esize;
    unsigned char *bundle = read_file(argv[1], &bsize), *exp = read_file(argv[2], &esize);
    if (!bundle || !exp) {
        fprintf(stderr, "cannot read %s or %s\n", argv[1], argv[2]);
        return 2;
    }
    math();
    halves();
    quantiser();
    quantiser_lanes();
    transposed_rows();
    int records = vectors(bundle, bsize, exp, esize);
    int graph_records = gexp ? graphs(bundle, bsize, gexp, gsize) : 0;
    CHECK(graph_records == 9, "graph images checked: %d of 9", graph_records);
    bucket_tables(bundle, bsize);
    bad_input(bundle, bsize);
    cpu_features();
    checksums(bundle, bsize);
    open_with_done(bundle, bsize);
    crc_shift();
    deferred_nodes(bundle, bsize);
    bad_graphs(bundle, bsize);
    cache_stamps(bundle, bsize);
    free(gexp);
    free(bundle);
    free(exp);
    printf("%d passed, %d failed\n", records > 0 && failures == 0 ? records : 0, failures);
    return failures ? 1 : 0;
}
