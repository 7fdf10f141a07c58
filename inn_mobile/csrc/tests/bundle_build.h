/* Test helpers: write small .innb bundles and graph records from scratch in C (FORMAT.md), so that
 * hostile files are made by code in the tests rather than committed as blobs. */
#ifndef INN_BUNDLE_BUILD_H
#define INN_BUNDLE_BUILD_H
#include <stdlib.h>
#include <string.h>

#include "bundle_edit.h"
#include "inn.h"

/* A growable byte buffer (malloc'd, so 8-aligned as inn_bundle_open wants). */
typedef struct {
    unsigned char *p;
    size_t n, cap;
} bb_buf;

static inline void bb_reserve(bb_buf *b, size_t more) {
    if (b->n + more <= b->cap) return;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->n + more) cap *= 2;
    b->p = (unsigned char *)realloc(b->p, cap);
    if (!b->p) abort();
    b->cap = cap;
}
static inline void bb_bytes(bb_buf *b, const void *data, size_t n) {
    bb_reserve(b, n);
    if (data) memcpy(b->p + b->n, data, n);
    else memset(b->p + b->n, 0, n);
    b->n += n;
}
static inline void bb_u32(bb_buf *b, uint32_t v) {
    bb_reserve(b, 4);
    put32(b->p + b->n, v);
    b->n += 4;
}
static inline void bb_u64(bb_buf *b, uint64_t v) {
    bb_u32(b, (uint32_t)v);
    bb_u32(b, (uint32_t)(v >> 32));
}
static inline void bb_f32(bb_buf *b, float v) {
    uint32_t u;
    memcpy(&u, &v, 4);
    bb_u32(b, u);
}
static inline void bb_pad(bb_buf *b, size_t align) {
    while (b->n % align) bb_bytes(b, "", 1);
}

typedef struct {
    char tag[4];
    const void *data;
    size_t size;
    uint32_t elem; /* 0 bytes, 1 float32, 2 float16, 3 int8 */
} bb_section;

/* A complete bundle: header, the sections (64-aligned), the table, all CRCs sealed. */
static inline unsigned char *bb_bundle(const bb_section *s, uint32_t count, uint32_t flags, size_t *size) {
    bb_buf b = {0};
    bb_bytes(&b, NULL, 64);
    uint64_t *offs = (uint64_t *)calloc(count ? count : 1, sizeof *offs);
    for (uint32_t i = 0; i < count; i++) {
        offs[i] = b.n;
        bb_bytes(&b, s[i].data, s[i].size);
        bb_pad(&b, 64);
    }
    uint64_t table = b.n;
    for (uint32_t i = 0; i < count; i++) {
        bb_bytes(&b, s[i].tag, 4);
        bb_u32(&b, 0);
        bb_u64(&b, offs[i]);
        bb_u64(&b, s[i].size);
        bb_u32(&b, s[i].elem);
        bb_u32(&b, 0);
    }
    free(offs);
    memcpy(b.p, "INNB", 4);
    b.p[4] = INN_VERSION_MAJOR;
    b.p[6] = INN_VERSION_MINOR;
    put32(b.p + 8, 64);
    put32(b.p + 12, count);
    put32(b.p + 16, (uint32_t)table);
    put32(b.p + 20, (uint32_t)(table >> 32));
    put32(b.p + 24, (uint32_t)b.n);
    put32(b.p + 28, (uint32_t)((uint64_t)b.n >> 32));
    put32(b.p + 32, flags);
    reseal(b.p, b.n);
    *size = b.n;
    return b.p;
}

/* Table section: u32 count, u32 extra, then the records (given as one block). */
static inline bb_buf bb_table(uint32_t count, uint32_t extra, const void *records, size_t bytes) {
    bb_buf b = {0};
    bb_u32(&b, count);
    bb_u32(&b, extra);
    bb_bytes(&b, records, bytes);
    return b;
}

/* One 64-byte layer record. */
typedef struct {
    uint32_t kind, blocks, taps, flags, out_first, out_count, in_first, in_count;
    uint64_t weight_off, bias_off;
    uint32_t name_off, name_len, weight_scale, bias_scale;
} bb_layer;

static inline void bb_layer_rec(bb_buf *b, const bb_layer *l) {
    bb_u32(b, l->kind);
    bb_u32(b, l->blocks);
    bb_u32(b, l->taps);
    bb_u32(b, l->flags);
    bb_u32(b, l->out_first);
    bb_u32(b, l->out_count);
    bb_u32(b, l->in_first);
    bb_u32(b, l->in_count);
    bb_u64(b, l->weight_off);
    bb_u64(b, l->bias_off);
    bb_u32(b, l->name_off);
    bb_u32(b, l->name_len);
    bb_u32(b, l->weight_scale);
    bb_u32(b, l->bias_scale);
}

/* Graph record pieces: an image header, spans, holes (FORMAT.md "Graph records"). */
static inline void bb_image_head(bb_buf *r, const char *name, uint32_t spans, uint32_t holes, uint32_t packed,
                                 uint64_t size) {
    uint32_t len = (uint32_t)strlen(name);
    bb_u32(r, len);
    bb_u32(r, spans);
    bb_u32(r, holes);
    bb_u32(r, packed);
    bb_u64(r, size);
    bb_bytes(r, name, len);
    bb_pad(r, 8);
}
static inline void bb_span(bb_buf *r, uint64_t offset, uint64_t length) {
    bb_u64(r, offset);
    bb_u64(r, length);
}
static inline void bb_hole(bb_buf *r, uint64_t offset, uint64_t size, uint32_t layer, inn_hole_tensor tensor,
                           inn_layout layout, inn_hole_dtype dtype, float param) {
    bb_u64(r, offset);
    bb_u64(r, size);
    bb_u32(r, layer);
    unsigned char codes[4] = {(unsigned char)tensor, (unsigned char)layout, (unsigned char)dtype, 0};
    bb_bytes(r, codes, 4);
    bb_f32(r, param);
    bb_u32(r, 0);
}
/* GIDX with one row: (bucket, runtime) -> record at BLOB offset 0. */
static inline bb_buf bb_gidx(uint32_t bucket, const char *runtime, uint64_t record_size) {
    bb_buf b = {0};
    bb_u32(&b, 1);
    bb_u32(&b, 0);
    bb_u32(&b, bucket);
    bb_u32(&b, 0);
    char name[INN_RUNTIME_NAME] = {0};
    memcpy(name, runtime, strlen(runtime) < INN_RUNTIME_NAME ? strlen(runtime) : INN_RUNTIME_NAME);
    bb_bytes(&b, name, INN_RUNTIME_NAME);
    bb_u64(&b, 0);
    bb_u64(&b, record_size);
    return b;
}
#endif
