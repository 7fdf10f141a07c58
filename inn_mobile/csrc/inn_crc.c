/* The bundle's checksums (FORMAT.md "Checksums"): CRC-32 (zlib's; every header, and everything in bundles
 * before 1.4) and CRC-32C (Castagnoli; the section table and the sections from 1.4 on).
 *
 * CRC-32C runs on the CPU's CRC instructions where it has them (x86-64 SSE4.2 `crc32`, ARMv8 `crc32c*`),
 * asked at run time once per process (CPUID, the Linux/Android hwcaps: inn_cpu.c), so one binary serves CPUs
 * with and without them; elsewhere, and in -DINN_PORTABLE builds, by the same table method as CRC-32: the
 * same values everywhere (tests compare both paths). The instruction has a latency of about three cycles and
 * a throughput of one, so long inputs run as three interleaved lanes joined by a "skip LANE zero bytes" map:
 * several times faster than one lane, which is itself several times faster than tables. No state of its
 * own: tables are built on the stack for each call that needs them (microseconds). */
#include <string.h>

#include "inn.h"
#include "inn_internal.h"

#define POLY_CRC32 0xEDB88320u  /* IEEE 802.3, reflected */
#define POLY_CRC32C 0x82F63B78u /* Castagnoli, reflected */

/* Slicing-by-8: the CRC state `crc` (not inverted: callers do that) advanced over `size` bytes, eight at a
 * time, from tables of the (reflected) polynomial built on the stack. */
static uint32_t crc_tables(uint32_t poly, uint32_t crc, const uint8_t *data, size_t size) {
    uint32_t t[8][256];
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = (c >> 1) ^ (poly & (0u - (c & 1u)));
        t[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; i++)
        for (int s = 1; s < 8; s++) t[s][i] = (t[s - 1][i] >> 8) ^ t[0][t[s - 1][i] & 0xFFu];
    size_t i = 0;
    for (; i + 8 <= size; i += 8) {
        uint32_t lo = crc ^ rd32(data + i), hi = rd32(data + i + 4);
        crc = t[7][lo & 0xFFu] ^ t[6][(lo >> 8) & 0xFFu] ^ t[5][(lo >> 16) & 0xFFu] ^ t[4][lo >> 24] ^
              t[3][hi & 0xFFu] ^ t[2][(hi >> 8) & 0xFFu] ^ t[1][(hi >> 16) & 0xFFu] ^ t[0][hi >> 24];
    }
    for (; i < size; i++) crc = (crc >> 8) ^ t[0][(crc ^ data[i]) & 0xFFu];
    return crc;
}

uint32_t inn_crc32(const uint8_t *data, size_t size) { return ~crc_tables(POLY_CRC32, 0xFFFFFFFFu, data, size); }

uint32_t inn_crc32c_portable(const uint8_t *data, size_t size) {
    return ~crc_tables(POLY_CRC32C, 0xFFFFFFFFu, data, size);
}

/* ---------------------------------------------------------------- CRC instructions
 * CRC_HW: the attribute that lets a function use them; HW8 / HW1: one step over 8 bytes (a little-endian
 * load) / one byte; inn_cpu_features() says whether this CPU has them. The instructions read the 8 bytes in
 * memory order only on little-endian CPUs, hence the byte-order test. */
#if !defined(INN_PORTABLE) && (defined(__GNUC__) || defined(__clang__)) && defined(__BYTE_ORDER__) && \
    __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#if defined(__x86_64__)
#include <nmmintrin.h>
#define INN_CRC_HW 1
#define CRC_HW __attribute__((target("sse4.2")))
#define HW8(c, v) ((uint32_t)_mm_crc32_u64((c), (v)))
#define HW1(c, v) _mm_crc32_u8((c), (v))
#elif defined(__aarch64__) && (defined(__ARM_FEATURE_CRC32) || defined(__linux__))
#define INN_CRC_HW 1
#if defined(__ARM_FEATURE_CRC32) /* built for CPUs that all have them (e.g. -march=armv8.1-a, Apple) */
#define CRC_HW
#elif defined(__clang__) /* Linux and Android: the kernel's hwcaps say (inn_cpu.c) */
#define CRC_HW __attribute__((target("crc")))
#else
#define CRC_HW __attribute__((target("+crc")))
#endif
#if defined(__clang__) /* clang's arm_acle.h declares the intrinsics only under __ARM_FEATURE_CRC32 */
#define HW8(c, v) __builtin_arm_crc32cd((c), (v))
#define HW1(c, v) __builtin_arm_crc32cb((c), (v))
#else
#include <arm_acle.h>
#define HW8(c, v) __crc32cd((c), (v))
#define HW1(c, v) __crc32cb((c), (v))
#endif
#endif
#endif

#ifdef INN_CRC_HW
/* Bytes per lane of the three-lane loop (a multiple of 8): inputs of 3 * LANE bytes or more use it. */
#define LANE 8192u

static inline uint64_t load64(const uint8_t *p) {
    uint64_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* The linear map "state advanced over LANE zero bytes" as four byte tables: z(c) = t[0][c & 0xFF] ^ ... The
 * images of the 32 unit states are computed with the instruction itself, all 32 in step (one pass). */
CRC_HW static void skip_tables(uint32_t t[4][256]) {
    uint32_t unit[32];
    for (int i = 0; i < 32; i++) unit[i] = 1u << i;
    for (uint32_t k = 0; k < LANE / 8; k++)
        for (int i = 0; i < 32; i++) unit[i] = HW8(unit[i], 0);
    for (int b = 0; b < 4; b++) {
        t[b][0] = 0;
        for (int j = 0; j < 8; j++) /* entries [2^j, 2^(j+1)) add bit j to the entries below them */
            for (uint32_t v = 1u << j; v < 2u << j; v++) t[b][v] = t[b][v - (1u << j)] ^ unit[8 * b + j];
    }
}

static inline uint32_t skip(const uint32_t t[4][256], uint32_t c) {
    return t[0][c & 0xFFu] ^ t[1][(c >> 8) & 0xFFu] ^ t[2][(c >> 16) & 0xFFu] ^ t[3][c >> 24];
}

/* The state c advanced over `size` bytes. Three lanes of LANE bytes at a time: the first continues c, the
 * other two start from 0, and as the state is linear in (state, data), c over A|B|C is
 * skip(skip(c over A) ^ (0 over B)) ^ (0 over C). */
CRC_HW static uint32_t crc32c_hw(uint32_t c, const uint8_t *p, size_t size) {
    for (; size && ((uintptr_t)p & 7u); size--) c = HW1(c, *p++);
    if (size >= 3 * LANE) {
        uint32_t t[4][256];
        skip_tables(t);
        for (; size >= 3 * LANE; size -= 3 * LANE, p += 3 * LANE) {
            uint32_t c1 = 0, c2 = 0;
            for (uint32_t k = 0; k < LANE; k += 8) {
                c = HW8(c, load64(p + k));
                c1 = HW8(c1, load64(p + LANE + k));
                c2 = HW8(c2, load64(p + 2 * LANE + k));
            }
            c = skip(t, c) ^ c1;
            c = skip(t, c) ^ c2;
        }
    }
    for (; size >= 8; size -= 8, p += 8) c = HW8(c, load64(p));
    for (; size; size--) c = HW1(c, *p++);
    return c;
}
#endif

uint32_t inn_crc_update(int castagnoli, uint32_t state, const uint8_t *data, size_t size) {
    if (!castagnoli) return crc_tables(POLY_CRC32, state, data, size);
#ifdef INN_CRC_HW
    if (inn_cpu_features() & INN_CPU_CRC32C) return crc32c_hw(state, data, size);
#endif
    return crc_tables(POLY_CRC32C, state, data, size);
}

/* a * b modulo the (reflected) polynomial: bit 31 is x^0, bit 0 is x^31. */
static uint32_t mul_mod(uint32_t a, uint32_t b, uint32_t poly) {
    uint32_t product = 0;
    for (uint32_t bit = 1u << 31; bit; bit >>= 1) {
        if (a & bit) product ^= b;
        b = (b >> 1) ^ (poly & (0u - (b & 1u))); /* b * x */
    }
    return product;
}

uint32_t inn_crc_shift(int castagnoli, uint32_t state, uint64_t bytes) {
    uint32_t poly = castagnoli ? POLY_CRC32C : POLY_CRC32;
    /* x^(8 * bytes) by squaring: power holds x^(8 * 2^k) at step k */
    uint32_t power = 1u << 23, factor = 1u << 31; /* x^8, x^0 */
    for (; bytes; bytes >>= 1) {
        if (bytes & 1) factor = mul_mod(factor, power, poly);
        power = mul_mod(power, power, poly);
    }
    return mul_mod(factor, state, poly);
}

uint32_t inn_crc32c(const uint8_t *data, size_t size) { return ~inn_crc_update(1, 0xFFFFFFFFu, data, size); }
