/* Helpers shared by the core's translation units (not part of the public API). */
#ifndef INN_INTERNAL_H
#define INN_INTERNAL_H
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "inn.h"

/* Little-endian reads at any alignment (bundles are untrusted bytes). */
static inline uint32_t rd32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static inline uint64_t rd64(const uint8_t *p) { return (uint64_t)rd32(p) | (uint64_t)rd32(p + 4) << 32; }

/* A hot loop kept in a function of its own: GCC 12 leaves some loops scalar once they are inlined into a
 * large caller (inn_bundle_open's finiteness scan). */
#if defined(__GNUC__) || defined(__clang__)
#define INN_NOINLINE __attribute__((noinline))
#else
#define INN_NOINLINE
#endif

/* Loops with float comparisons, which GCC vectorises only when it may disregard floating-point exception
 * flags (the core never reads them, and no value changes); clang disregards them by default. */
#if defined(__GNUC__) && !defined(__clang__)
#define INN_VECTOR_COMPARES __attribute__((optimize("no-trapping-math")))
#else
#define INN_VECTOR_COMPARES
#endif

/* ThreadSanitizer builds: no ifunc clones (their resolvers run before the sanitizer runtime is up). */
#if defined(__SANITIZE_THREAD__)
#define INN_NO_CLONES 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define INN_NO_CLONES 1
#endif
#endif

/* x86-64 Linux: an AVX2 copy of each hot loop beside the baseline one, chosen once at load time by the
 * CPU (GNU ifunc). AVX2 has no fused multiply-add (and -ffp-contract=off forbids contraction), so each
 * copy rounds every product, quotient and sum alike: the same bits on every CPU. */
#if defined(__x86_64__) && defined(__linux__) && !defined(__ANDROID__) && !defined(INN_PORTABLE) && \
    !defined(INN_NO_CLONES) && defined(__has_attribute)
#if __has_attribute(target_clones)
#define INN_AVX2_CLONE __attribute__((target_clones("avx2", "default")))
#define INN_HAS_CLONES 1
#endif
#endif
#ifndef INN_AVX2_CLONE
#define INN_AVX2_CLONE
#endif

static inline size_t align8(size_t x) { return (x + 7u) & ~(size_t)7u; }

/* a + b without overflow; returns 0 when it would overflow. */
static inline int inn_add(size_t a, size_t b, size_t *out) {
    if (b > SIZE_MAX - a) return 0;
    *out = a + b;
    return 1;
}

/* align8(x) without overflow; returns 0 when it would overflow. */
static inline int inn_align8(size_t x, size_t *out) {
    if (x > SIZE_MAX - 7u) return 0;
    *out = align8(x);
    return 1;
}

/* a * b without overflow; returns 0 when it would overflow. */
static inline int inn_mul(size_t a, size_t b, size_t *out) {
    if (a != 0 && b > SIZE_MAX / a) return 0;
    *out = a * b;
    return 1;
}

/* float16 -> float32, exactly, without branches (so loops over it vectorise): normal numbers rebias the
 * exponent, inf/NaN keep their payload under an all-ones exponent, and subnormals (and zero) are the
 * integer mantissa times 2^-24, exact in float32. */
static inline float inn_half_to_float(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, em = h & 0x7FFFu;
    uint32_t is_sub = 0u - (uint32_t)(em < 0x400u), is_special = 0u - (uint32_t)(em >= 0x7C00u);
    /* exponent + 112 (rebias), or + 224 for inf/NaN (31 -> 255) */
    uint32_t normal = (em << 13) + (112u << 23) + (is_special & (112u << 23));
    float sub = (float)(int32_t)em * 0x1p-24f;
    uint32_t sub_bits;
    memcpy(&sub_bits, &sub, sizeof sub_bits);
    uint32_t bits = sign | (is_sub & sub_bits) | (~is_sub & normal);
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

/* Node storage, widened on the fly: float32, float16 (exactly), or int8 times a float32 scale per node
 * row (the tensor's first axis), as the one product (float)q * scale. */
typedef enum { INN_NODES_F32 = 1, INN_NODES_F16 = 2, INN_NODES_I8 = 3 } inn_node_dtype;

/* Bytes per stored node value. */
static inline size_t inn_node_size(inn_node_dtype dtype) {
    return dtype == INN_NODES_I8 ? 1 : dtype == INN_NODES_F16 ? 2 : 4;
}

typedef struct {
    const void *data;
    inn_node_dtype dtype;
    const float *scales; /* int8: one per row of this tensor */
    int f16c;            /* float16: widen with the F16C instruction (set by inn_dense_to_sink, inn_rows_to_sink) */
} inn_nodes;

/* Resizable groups are sampled at no more than this many points per node (FORMAT.md "Reader limits"):
 * a bucket's weights are then at most INN_MAX_UPSAMPLE^2 times the nodes they come from. */
#define INN_MAX_UPSAMPLE 16u
/* A graph record's images may hold at most INN_HOLE_REUSE times the bytes of the bucket's tensors in
 * holes, and zero gaps of at most INN_GAP_RATIO times the bytes stored and written plus INN_GAP_FLOOR
 * bytes (FORMAT.md "Reader limits"), so a small file cannot ask for huge images. */
#define INN_HOLE_REUSE 8u
#define INN_GAP_RATIO 4u
#define INN_GAP_FLOOR ((uint64_t)1 << 20)

/* Where finished rows go: float32 or int8 (+ per-row scales), in a layout. With per-width
 * normalisation, row o is first multiplied by norm_a[o] and then (biases only) norm_c[o] is added,
 * in float32, before any quantisation. */
typedef struct {
    inn_layout layout;
    inn_dtype dtype;
    void *dst;
    size_t count; /* elements */
    float *scales;
    size_t scales_count;
    size_t n_out;
    const float *norm_a; /* [n_out] or NULL */
    const float *norm_c; /* [n_out] or NULL */
} inn_sink;

inn_status inn_check_axis(const inn_axis *ax, uint32_t blocks, uint32_t nodes_per_block);

/* |v| as its bits, for the largest magnitude of a row: magnitudes order as their bit patterns without the
 * sign, and NaN (bits past the infinity's) counts as 0, as a float comparison would skip it. */
static inline int32_t inn_magnitude(float v) {
    int32_t bits;
    memcpy(&bits, &v, sizeof bits);
    bits &= 0x7FFFFFFF;
    return bits > 0x7F800000 ? 0 : bits;
}

/* Quantise len values x[k * stride] (one output channel) to q[k * stride] with one scale. */
void inn_quantize_row(const float *x, size_t len, size_t stride, int8_t *q, float *scale_out);
/* inn_quantize_row of INN_QUANT_LANES rows of len values at once, interleaved (value k of row r at
 * x[k * INN_QUANT_LANES + r], and so in q); scales[r]: row r's scale. The same values, a vector op for all rows
 * where short rows (a depthwise kernel) would each take their own. */
enum { INN_QUANT_LANES = 8 };
void inn_quantize_lanes(const float *x, size_t len, int8_t *q, float *scales);
/* inn_quantize_row of a contiguous row whose largest inn_magnitude, `top`, the caller computed as it wrote it. */
void inn_quantize_row_top(const float *x, size_t len, int32_t top, int8_t *q, float *scale_out);
inn_status inn_dense_to_sink(const inn_nodes *nd, uint32_t m_out, uint32_t m_in, uint32_t taps, uint32_t blocks,
                             const inn_axis *out, const inn_axis *in, const inn_sink *sink, float *scratch,
                             size_t scratch_count);
/* rowf: taps floats; qrow: taps bytes (int8 sinks only). */
inn_status inn_rows_to_sink(const inn_nodes *nd, uint32_t m, uint32_t taps, const inn_axis *out, const inn_sink *sink,
                            float *rowf, int8_t *qrow);

/* The bytes of the bundle's data that hold layer `layer`'s nodes: [*first, *end) (inn_graph_part_nodes). */
inn_status inn_layer_node_bytes(const inn_bundle *b, uint32_t bucket, uint32_t layer, size_t *first, size_t *end);

/* The optional instructions this CPU runs (inn_cpu.c), asked once per process (CPUID is slow in virtual
 * machines). */
enum { INN_CPU_CRC32C = 1u << 0, /* x86 SSE4.2 crc32, ARMv8 crc32c* */
       INN_CPU_F16C = 1u << 1 }; /* x86 F16C with the OS saving the YMM registers */
unsigned inn_cpu_features(void);

/* A CRC state (not inverted: start from 0xFFFFFFFF, invert the end) advanced over `size` bytes: CRC-32C when
 * `castagnoli`, else CRC-32. inn_crc32 / inn_crc32c over pieces, for the open's stretches. */
uint32_t inn_crc_update(int castagnoli, uint32_t state, const uint8_t *data, size_t size);

/* A CRC state (either polynomial) advanced over `bytes` zero bytes, in O(log bytes) steps: joins the states
 * of consecutive pieces, state(A|B) = inn_crc_shift(state(A), |B|) ^ (B's state from 0). */
uint32_t inn_crc_shift(int castagnoli, uint32_t state, uint64_t bytes);

/* inn_materialize without the b->nodes_pending refusal: for the fill's parts (inn_graph_fill_part_verify). */
inn_status inn_materialize_any(const inn_bundle *b, uint32_t bucket, uint32_t layer, inn_layout layout,
                               inn_dtype dtype, void *weight_out, size_t weight_bytes, float *scales_out,
                               size_t scales_bytes, float *bias_out, size_t bias_bytes, void *scratch,
                               size_t scratch_bytes);

/* CRC-32C by tables alone: what inn_crc32c computes on CPUs without CRC instructions (tests compare them). */
uint32_t inn_crc32c_portable(const uint8_t *data, size_t size);

/* Unpack an LZ stream (FORMAT.md "Packed spans") into exactly `size` bytes at dst (NULL: validate only). */
inn_status inn_lz_decode(const uint8_t *src, size_t n, uint8_t *dst, size_t size);

#endif
