/* Test helpers: read files, poke little-endian fields, and re-seal CRCs after an edit so that a
 * corrupted bundle gets past the checksums and exercises the semantic checks behind them. */
#ifndef INN_BUNDLE_EDIT_H
#define INN_BUNDLE_EDIT_H
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "inn.h"

static inline unsigned char *read_file(const char *path, size_t *size) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *buf = malloc(n > 0 ? (size_t)n : 1);
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    *size = (size_t)n;
    return buf;
}

static inline uint32_t get32(const unsigned char *p) { return p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24; }
static inline uint64_t get64(const unsigned char *p) { return get32(p) | (uint64_t)get32(p + 4) << 32; }
static inline void put32(unsigned char *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i));
}

/* Offset of a section's payload (or 0 if absent / table unreadable). */
static inline size_t section_offset(const unsigned char *d, size_t size, const char *tag, size_t *len) {
    if (size < 64) return 0;
    uint64_t table = get64(d + 16);
    uint32_t count = get32(d + 12);
    for (uint32_t i = 0; i < count && i < 64; i++) {
        size_t e = (size_t)table + (size_t)i * 32;
        if (e + 32 > size) return 0;
        if (memcmp(d + e, tag, 4) == 0) {
            if (len) *len = (size_t)get64(d + e + 16);
            return (size_t)get64(d + e + 8);
        }
    }
    return 0;
}

/* Recompute every section CRC, the table CRC and the header CRC (within bounds only), with the checksum the
 * header's flags name (CRC-32C for the table and sections with INN_FLAG_CRC32C; the header always CRC-32). */
static inline void reseal(unsigned char *d, size_t size) {
    if (size < 64) return;
    uint64_t table = get64(d + 16);
    uint32_t count = get32(d + 12);
    uint32_t (*crc)(const uint8_t *, size_t) = (get32(d + 32) & INN_FLAG_CRC32C) ? inn_crc32c : inn_crc32;
    if (count <= 64 && table <= size && (uint64_t)count * 32 <= size - table) {
        for (uint32_t i = 0; i < count; i++) {
            unsigned char *e = d + table + (size_t)i * 32;
            uint64_t off = get64(e + 8), len = get64(e + 16);
            if (off <= size && len <= size - off) put32(e + 4, crc(d + off, (size_t)len));
        }
        put32(d + 36, crc(d + table, (size_t)count * 32));
    }
    put32(d + 60, inn_crc32(d, 60));
}
#endif
