/* Packed stored bytes of graph records (FORMAT.md "Packed spans"): an LZ77 stream of sequences
 * token (literal count << 4 | match length - 4), extension bytes, literals, u16 distance, extension
 * bytes. Every read and write is bounds-checked; a stream that does not produce exactly `size` bytes
 * is INN_ERR_FORMAT. With dst == NULL nothing is written (validation before any output exists). */
#include "inn_internal.h"

#include <string.h>

/* A count whose nibble is 15 continues with bytes added until one is < 255. */
static int read_count(const uint8_t *src, size_t n, size_t *p, size_t *value) {
    if (*value < 15) return 1;
    for (;;) {
        if (*p >= n) return 0;
        uint8_t b = src[(*p)++];
        if (*value > SIZE_MAX - b) return 0;
        *value += b;
        if (b < 255) return 1;
    }
}

inn_status inn_lz_decode(const uint8_t *src, size_t n, uint8_t *dst, size_t size) {
    size_t p = 0, out = 0;
    for (;;) {
        if (p >= n) return INN_ERR_FORMAT;
        uint8_t token = src[p++];
        size_t lit = token >> 4, len = token & 15u;
        if (!read_count(src, n, &p, &lit) || lit > n - p || lit > size - out) return INN_ERR_FORMAT;
        if (dst) memcpy(dst + out, src + p, lit);
        p += lit;
        out += lit;
        if (p == n) break;
        if (n - p < 2) return INN_ERR_FORMAT;
        size_t dist = (size_t)src[p] | (size_t)src[p + 1] << 8;
        p += 2;
        if (!read_count(src, n, &p, &len) || size - out < 4 || len > size - out - 4) return INN_ERR_FORMAT;
        len += 4;
        if (dist == 0 || dist > out) return INN_ERR_FORMAT;
        if (dst)
            for (size_t k = 0; k < len; k++) dst[out + k] = dst[out + k - dist]; /* may overlap: repeats */
        out += len;
    }
    return out == size ? INN_OK : INN_ERR_FORMAT;
}
