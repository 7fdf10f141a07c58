/* Width cache stamps: what proves a width's filled files, kept on disk by the app, current and whole (inn.h,
 * FORMAT.md "Width cache stamps"). The core writes and checks the stamp in memory; the platform does the I/O. */
#include <inttypes.h>
#include <stdio.h>

#include "inn_internal.h"

#define STAMP_MAGIC "INNC"
#define STAMP_VERSION 1u
#define HEADER_BYTES 64u  /* the bundle's header, copied whole: it holds the section table's checksum */
#define FIXED_BYTES 104u  /* magic .. image count */
#define IMAGE_BYTES 16u   /* u64 size, u32 CRC-32C, u32 zero */

static void wr32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static void wr64(uint8_t *p, uint64_t v) {
    wr32(p, (uint32_t)v);
    wr32(p + 4, (uint32_t)(v >> 32));
}

/* A name a file may have in a cache entry, on every platform: no path, no dot file, not the stamp's. */
static int plain_name(const char *name, uint32_t len) {
    static const char stamp[] = INN_CACHE_STAMP_FILE;
    if (len == 0 || len > 100 || name[0] == '.') return 0;
    if (len == sizeof stamp - 1 && memcmp(name, stamp, len) == 0) return 0;
    for (uint32_t i = 0; i < len; i++) {
        char c = name[i];
        int ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' ||
                 c == '.' || c == '-';
        if (!ok) return 0;
    }
    return 1;
}

inn_status inn_cache_entry(const inn_bundle *b, const inn_graph *g, const char *runtime, char name[INN_CACHE_NAME]) {
    if (!b || !b->data || b->size < HEADER_BYTES || !g || !g->record || !runtime || !name) return INN_ERR_ARG;
    size_t len = strlen(runtime);
    if (len == 0 || len > INN_RUNTIME_NAME || !plain_name(runtime, (uint32_t)len)) return INN_ERR_ARG;
    for (uint32_t i = 0; i < g->image_count; i++) {
        inn_image_info info;
        inn_status st = inn_graph_image(g, i, &info);
        if (st) return st;
        if (!plain_name(info.name, info.name_len)) return INN_ERR_FORMAT;
    }
    /* 8 + 1 + 16 + 2 + 10 + 1 + 16 + NUL = 55 bytes at most */
    snprintf(name, INN_CACHE_NAME, "%08" PRIx32 "-%" PRIx64 "-b%" PRIu32 "-%s", rd32(b->data + 36),
             rd64(b->data + 24), g->bucket, runtime);
    return INN_OK;
}

size_t inn_cache_stamp_size(const inn_graph *g) {
    return g && g->record ? FIXED_BYTES + (size_t)g->image_count * IMAGE_BYTES + 4u : 0;
}

/* The stamp's fixed part for (b, g, runtime) into `fixed` (FIXED_BYTES); INN_ERR_ARG for a bad argument. */
static inn_status identity(const inn_bundle *b, const inn_graph *g, const char *runtime, uint8_t *fixed) {
    if (!b || !b->data || b->size < HEADER_BYTES || !g || !g->record || !runtime) return INN_ERR_ARG;
    size_t len = strlen(runtime);
    if (len == 0 || len > INN_RUNTIME_NAME) return INN_ERR_ARG;
    memset(fixed, 0, FIXED_BYTES);
    memcpy(fixed, STAMP_MAGIC, 4);
    wr32(fixed + 4, STAMP_VERSION);
    wr32(fixed + 8, INN_FILL_VERSION);
    wr32(fixed + 12, g->bucket);
    memcpy(fixed + 16, runtime, len);
    memcpy(fixed + 32, b->data, HEADER_BYTES);
    wr32(fixed + 96, inn_crc32c(g->record, g->size));
    wr32(fixed + 100, g->image_count);
    return INN_OK;
}

inn_status inn_cache_stamp(const inn_bundle *b, const inn_graph *g, const char *runtime, const void *const *images,
                           const size_t *sizes, uint8_t *stamp, size_t stamp_size) {
    if (!stamp) return INN_ERR_ARG;
    if (stamp_size < inn_cache_stamp_size(g)) return INN_ERR_BUFFER;
    inn_status st = identity(b, g, runtime, stamp); /* checks g before writing: a NULL g has size 0 */
    if (st) return st;
    if (g->image_count && (!images || !sizes)) return INN_ERR_ARG;
    uint8_t *row = stamp + FIXED_BYTES;
    for (uint32_t i = 0; i < g->image_count; i++, row += IMAGE_BYTES) {
        inn_image_info info;
        if ((st = inn_graph_image(g, i, &info))) return st;
        if (!images[i] || (uint64_t)sizes[i] != info.size) return INN_ERR_ARG;
        wr64(row, (uint64_t)sizes[i]);
        wr32(row + 8, inn_crc32c((const uint8_t *)images[i], sizes[i]));
        wr32(row + 12, 0);
    }
    wr32(row, inn_crc32c(stamp, (size_t)(row - stamp)));
    return INN_OK;
}

inn_status inn_cache_check(const inn_bundle *b, const inn_graph *g, const char *runtime, const uint8_t *stamp,
                           size_t stamp_size, const void *const *images, const size_t *sizes) {
    uint8_t want[FIXED_BYTES];
    inn_status st = identity(b, g, runtime, want);
    if (st) return st;
    if (!stamp || (g->image_count && (!images || !sizes))) return INN_ERR_ARG;
    if (stamp_size < 4 || memcmp(stamp, STAMP_MAGIC, 4) != 0) return INN_ERR_MAGIC;
    if (stamp_size < FIXED_BYTES + 4u) return INN_ERR_TRUNCATED;
    uint32_t count = rd32(stamp + 100);
    if (count > (stamp_size - FIXED_BYTES - 4u) / IMAGE_BYTES) return INN_ERR_TRUNCATED;
    size_t body = FIXED_BYTES + (size_t)count * IMAGE_BYTES;
    if (stamp_size != body + 4u) return INN_ERR_FORMAT;
    if (rd32(stamp + body) != inn_crc32c(stamp, body)) return INN_ERR_CHECKSUM;
    /* a whole stamp, but of other files: the app's bundle, width, runtime or core changed since */
    if (memcmp(stamp, want, FIXED_BYTES) != 0) return INN_ERR_STALE;
    for (uint32_t i = 0; i < g->image_count; i++) {
        const uint8_t *row = stamp + FIXED_BYTES + (size_t)i * IMAGE_BYTES;
        inn_image_info info;
        if ((st = inn_graph_image(g, i, &info))) return st;
        if (!images[i]) return INN_ERR_ARG;
        /* a file cut short, grown or changed: damaged since the stamp was written */
        if ((uint64_t)sizes[i] != info.size || rd64(row) != info.size ||
            rd32(row + 8) != inn_crc32c((const uint8_t *)images[i], sizes[i]))
            return INN_ERR_CHECKSUM;
    }
    return INN_OK;
}
