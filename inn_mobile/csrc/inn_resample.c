/* Sampling layer nodes on both channel axes, streaming a few output rows at a time.
 *
 * W[o, i, t] = (sum_b w_in[i, b] * (sum_a w_out[o, a] * nodes[idx_out[o, a], idx_in[i, b], t])) * q_i
 * Tap positions and weights are computed in double (inn_kernel.c), then the sums run in float32 in
 * this exact order, as kernel.resample does in torch: bit-identical results, SIMD-friendly loops.
 * Output axis first: per output row, the (at most 4) node rows it reads are combined over whole
 * contiguous rows (the cheap, fully vectorised pass), then that one row is sampled along the input
 * axis (the gather-like pass), so the latter runs on n_out rows rather than on all m_out node rows
 * (half the work at 50% width). Zero-weight taps are skipped (same values). The loads, not the
 * arithmetic, bound both passes, so rows go in small groups that share them: pairs of output rows
 * combined in one pass (more node rows in flight from memory) and sampled in one (each input tap
 * loaded once), and in 1x1 layers eight rows sampled together, transposed so that each input tap is
 * one vector load for all eight. Each finished output row goes to a sink that writes float32, or int8
 * + scale (quantised per row, so int8 needs no layer-sized buffer). Scratch: the combined rows, eight
 * node rows widened to float32 (float16 and int8 nodes; consecutive output rows share node rows, so
 * each is widened about once), the output rows and the compacted input taps, never a whole layer.
 */
#include <string.h>

#include "inn.h"
#include "inn_internal.h"

/* x86 only, and only moves and shuffles (no arithmetic): 4x4 transposes in SSE registers (1x1 layers).
 * -DINN_PORTABLE builds the plain C loops alone, as every other CPU runs them (the tests run both). */
#if defined(__SSE__) && !defined(INN_PORTABLE)
#define INN_SSE_TRANSPOSE 1
#include <xmmintrin.h>
#endif

/* float16 nodes widened by the F16C instruction where the CPU has it (with the AVX2 clones of inn_internal.h) */
#ifdef INN_HAS_CLONES
#define INN_F16C 1
#include <immintrin.h>
#endif

/* aarch64 (phones): NEON is part of the architecture, so its loops need no run-time test. Moves, shuffles and
 * the products the plain loops compute, one rounding each (no fused multiply-add): the same bits. */
#if defined(__aarch64__) && !defined(INN_PORTABLE)
#define INN_NEON 1
#include <arm_neon.h>
#endif

/* Output rows sampled together in 1x1 layers (see sample_rows1); widened node rows cached (row_cache). */
enum { ROWS1 = 8, SLOTS = 2 * INN_TAPS };

/* Rows of m_in * taps floats combined at once, at most: ROWS1 for 1x1 layers, else a pair. */
static uint32_t combined_rows(uint32_t taps) { return taps == 1 ? ROWS1 : 2; }

/* Lanes of the transposed rows sample_rows1 works on: ROWS1 for 1x1 layers, none otherwise. */
static uint32_t transposed_lanes(uint32_t taps) { return taps == 1 ? ROWS1 : 0; }

size_t inn_dense_scratch(uint32_t n_in_per_block, uint32_t m_in, uint32_t taps) {
    size_t node, rows, out, tapsz, k = combined_rows(taps), t = transposed_lanes(taps);
    /* k combined + SLOTS widened node rows (m_in * taps floats each; 1x1: + the ROWS1 transposed);
     * k output rows, one int8 row and the quadrature per element ((k + 2) * n_in * taps; 1x1: + the ROWS1
     * transposed); per input row 4 offsets + 4 weights + quadrature + 1 count (10 floats) */
    if (!inn_mul(m_in, taps, &node) || !inn_mul(node, k + SLOTS + t, &rows)) return 0;
    if (!inn_mul(n_in_per_block, taps, &out) || !inn_mul(out, k + 2 + t, &out)) return 0;
    if (!inn_mul(n_in_per_block, 2 * INN_TAPS + 2, &tapsz) || rows > SIZE_MAX - out || rows + out > SIZE_MAX - tapsz)
        return 0;
    return rows + out + tapsz;
}

inn_status inn_check_axis(const inn_axis *ax, uint32_t blocks, uint32_t nodes_per_block) {
    if (!ax || !ax->idx || !ax->w || ax->n == 0 || blocks == 0 || ax->n % blocks) return INN_ERR_ARG;
    if ((uint64_t)blocks * nodes_per_block > INT32_MAX) return INN_ERR_RANGE; /* not indexable by int32 taps */
    const size_t per = (size_t)(ax->n / blocks) * INN_TAPS;
    for (uint32_t j = 0; j < blocks; j++) {
        /* lo <= idx < lo + count as one unsigned compare (lo + count <= 2^31: a negative idx wraps past it),
         * or-ed over the block so that the loop vectorises */
        const uint32_t lo = j * nodes_per_block;
        const int32_t *restrict idx = ax->idx + j * per;
        uint32_t bad = 0;
        for (size_t k = 0; k < per; k++) bad |= (uint32_t)idx[k] - lo >= nodes_per_block;
        if (bad) return INN_ERR_RANGE;
    }
    return INN_OK;
}

/* Per-width normalisation of one output channel's row, in place: x * a (+ c), two float32 roundings. */
static void normalize_row(float *restrict row, size_t len, float a, const float *c) {
    for (size_t k = 0; k < len; k++) row[k] = row[k] * a;
    if (!c) return;
    const float shift = *c;
    for (size_t k = 0; k < len; k++) row[k] = row[k] + shift;
}

/* Does a finished row (ordered [i][t], or [t][i] if `ordered`) lie in the sink's layout as one run of memory
 * (OIT; OTI when taps is 1 or the row is `ordered`)? Then it is written in place, not transposed. */
static int contiguous(inn_layout layout, uint32_t taps, int ordered) {
    return layout == INN_LAYOUT_OIT || (layout == INN_LAYOUT_OTI && (taps == 1 || ordered));
}

/* Row o of a layer (len = n_in * taps elements of `src`, ordered [i][t], or [t][i] if `ordered`) into `dst` in
 * the sink's layout: OIT one copy; OTI the row's [i][t] transposed into [t][i] (a copy when taps is 1 or the
 * row is `ordered`); ITO a column of stride n_out, element k = i * taps + t at k * n_out + o. Element type T:
 * float or int8_t. */
#define PLACE_ROW(T, dst, src)                                                                        \
    do {                                                                                             \
        T *restrict d = (T *)(dst);                                                                  \
        const T *restrict r = (src);                                                                 \
        if (contiguous(s->layout, taps, ordered)) {                                                  \
            memcpy(d + (size_t)o * len, r, len * sizeof(T));                                         \
        } else if (s->layout == INN_LAYOUT_OTI) {                                                    \
            for (uint32_t t = 0; t < taps; t++) {                                                    \
                T *restrict dt = d + ((size_t)o * taps + t) * n_in;                                  \
                for (uint32_t i = 0; i < n_in; i++) dt[i] = r[(size_t)i * taps + t];                 \
            }                                                                                        \
        } else {                                                                                     \
            for (size_t k = 0; k < len; k++) d[k * s->n_out + o] = r[k];                             \
        }                                                                                            \
    } while (0)

/* Write one finished row (row_len floats = n_in * taps, ordered [i][t]; [t][i] if `ordered`, for an OTI sink)
 * for output channel o, after the per-width normalisation (in place) if the sink has one; int8 sinks quantise
 * it once, in place when the row is contiguous in the output, else into qrow. `top`: the row's largest
 * inn_magnitude if its writer computed it (before any normalisation), else -1. Normalisation and quantisation
 * are per element with one row scale: order-blind. */
static void sink_row(const inn_sink *s, uint32_t o, float *row, uint32_t n_in, uint32_t taps, int8_t *qrow,
                     int ordered, int32_t top) {
    const size_t len = (size_t)n_in * taps;
    if (s->norm_a) {
        normalize_row(row, len, s->norm_a[o], s->norm_c ? &s->norm_c[o] : NULL);
        top = -1;
    }
    if (s->dtype == INN_I8) {
        const int in_place = contiguous(s->layout, taps, ordered);
        int8_t *q = in_place ? (int8_t *)s->dst + (size_t)o * len : qrow;
        if (top >= 0) inn_quantize_row_top(row, len, top, q, &s->scales[o]);
        else inn_quantize_row(row, len, 1, q, &s->scales[o]);
        if (!in_place) PLACE_ROW(int8_t, s->dst, qrow);
    } else {
        PLACE_ROW(float, s->dst, row);
    }
}

/* The input-axis taps of one block, compacted once per layer: per row, the non-zero taps only, as
 * element offsets into a node row, float weights and the row's quadrature. */
typedef struct {
    uint32_t *off; /* [count * 4] (idx - col0) * stride (a node's floats in the row sampled) */
    float *w;      /* [count * 4] */
    float *q;      /* [count] */
    uint8_t *nnz;  /* [count] */
    int identity;  /* row i reads node i alone, with weight 1 (every axis at full width): see scale_identity */
} compact_taps;

static void compact(const inn_axis *in, uint32_t first, uint32_t count, uint32_t col0, uint32_t stride,
                    compact_taps *c) {
    c->identity = 1;
    for (uint32_t i = 0; i < count; i++) {
        const int32_t *idx = in->idx + (size_t)(first + i) * INN_TAPS;
        const double *wd = in->w + (size_t)(first + i) * INN_TAPS;
        uint8_t k = 0;
        for (int b = 0; b < INN_TAPS; b++) {
            if (wd[b] == 0.0) continue;
            c->off[(size_t)i * INN_TAPS + k] = (uint32_t)(idx[b] - (int32_t)col0) * stride;
            c->w[(size_t)i * INN_TAPS + k] = (float)wd[b];
            k++;
        }
        c->nnz[i] = k;
        c->q[i] = in->q ? (float)in->q[first + i] : 1.0f;
        c->identity &= k == 1 && c->off[(size_t)i * INN_TAPS] == i * stride && c->w[(size_t)i * INN_TAPS] == 1.0f;
    }
}

/* The identity pass's writers below return the largest inn_magnitude of what they wrote (sink_row's `top`)
 * when asked (`want`: an int8 sink without normalisation), else -1 without computing it. */
static int32_t top_of(int32_t top, float v) {
    const int32_t m = inn_magnitude(v);
    return m > top ? m : top;
}

/* x * f, element by element (the identity pass of a row with its quadrature expanded per element). */
INN_AVX2_CLONE INN_VECTOR_COMPARES static int32_t scale_row(const float *restrict x, const float *restrict f, size_t len,
                                                           float *restrict row, int want) {
    if (!want) {
        for (size_t k = 0; k < len; k++) row[k] = x[k] * f[k];
        return -1;
    }
    int32_t top = 0;
    for (size_t k = 0; k < len; k++) {
        row[k] = x[k] * f[k];
        top = top_of(top, row[k]);
    }
    return top;
}

/* scale_row of int8 nodes, widened on the way: ((float)q * scale) * f, the products node_row and scale_row
 * compute, in one pass. */
INN_AVX2_CLONE INN_VECTOR_COMPARES static int32_t scale_row_i8(const int8_t *restrict x, float scale,
                                                              const float *restrict f, size_t len,
                                                              float *restrict row, int want) {
    if (!want) {
        for (size_t k = 0; k < len; k++) row[k] = ((float)x[k] * scale) * f[k];
        return -1;
    }
    int32_t top = 0;
    for (size_t k = 0; k < len; k++) {
        row[k] = ((float)x[k] * scale) * f[k];
        top = top_of(top, row[k]);
    }
    return top;
}

/* row[t * count + i] = x[i * taps + t] * q_i for input rows i0.. : a row scaled and written in its [t][i] order
 * (OTI). Plain loops (stride-taps loads, which do not vectorise); x86 with AVX2 transposes 8 input rows x 8
 * taps at a time first. */
static int32_t scale_transposed(const float *restrict x, uint32_t count, uint32_t taps, const float *restrict q,
                                float *restrict row, uint32_t i0, int32_t top) {
    for (uint32_t t = 0; t < taps; t++)
        for (uint32_t i = i0; i < count; i++) {
            row[(size_t)t * count + i] = x[(size_t)i * taps + t] * q[i];
            if (top >= 0) top = top_of(top, row[(size_t)t * count + i]);
        }
    return top;
}

#if defined(INN_HAS_CLONES) || defined(INN_NEON)
/* Values k..k+n-1 of a row stored as `dtype`, widened one at a time as node_row widens them, into v: a row's last
 * values, which the vector loads below (load_last, load_last4) must not read past. */
static void widen_values(const void *x, inn_node_dtype dtype, float scale, size_t k, size_t n, float *v) {
    for (size_t e = 0; e < n; e++)
        v[e] = dtype == INN_NODES_F16 ? inn_half_to_float(((const uint16_t *)x)[k + e])
               : dtype == INN_NODES_I8 ? (float)((const int8_t *)x)[k + e] * scale
                                       : ((const float *)x)[k + e];
}
#endif

#ifdef INN_HAS_CLONES
/* r[t][c] = r[c][t] for 8 vectors of 8 floats: unpacks, shuffles and lane swaps, the products unchanged. */
__attribute__((target("avx2"))) static inline void transpose8(__m256 r[8]) {
    __m256 a[8], b[8];
    for (int k = 0; k < 8; k += 2) {
        a[k] = _mm256_unpacklo_ps(r[k], r[k + 1]);
        a[k + 1] = _mm256_unpackhi_ps(r[k], r[k + 1]);
    }
    for (int k = 0; k < 8; k += 4) {
        b[k] = _mm256_shuffle_ps(a[k], a[k + 2], 0x44);
        b[k + 1] = _mm256_shuffle_ps(a[k], a[k + 2], 0xEE);
        b[k + 2] = _mm256_shuffle_ps(a[k + 1], a[k + 3], 0x44);
        b[k + 3] = _mm256_shuffle_ps(a[k + 1], a[k + 3], 0xEE);
    }
    for (int k = 0; k < 4; k++) {
        r[k] = _mm256_permute2f128_ps(b[k], b[k + 4], 0x20);
        r[k + 4] = _mm256_permute2f128_ps(b[k], b[k + 4], 0x31);
    }
}

/* Eight consecutive values of a row stored as `dtype`, from element k, in float32 exactly as node_row widens
 * them: float16 by F16C, int8 as (float)q * scale. */
__attribute__((target("avx2,f16c"))) static inline __m256 load8(const void *x, inn_node_dtype dtype, float scale,
                                                               size_t k) {
    switch (dtype) {
        case INN_NODES_F16: return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const uint16_t *)x + k)));
        case INN_NODES_I8: {
            const __m128i q = _mm_loadl_epi64((const __m128i *)((const int8_t *)x + k));
            return _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q)), _mm256_set1_ps(scale));
        }
        default: return _mm256_loadu_ps((const float *)x + k);
    }
}

/* load8 of the last n (< 8) values of a row, padded with zeros: nothing past them is read. */
__attribute__((target("avx2,f16c"))) static __m256 load_last(const void *x, inn_node_dtype dtype, float scale,
                                                            size_t k, size_t n) {
    float v[8] = {0};
    widen_values(x, dtype, scale, k, n, v);
    return _mm256_loadu_ps(v);
}

/* scale_transposed for whole blocks of 8 input rows, 8 taps at a time, from a row x stored as `dtype` (float32;
 * float16 and int8 nodes widened in registers, with no widened row written and read back: float16 only where
 * the CPU has F16C); the last taps (taps % 8: the ninth of a 3x3 kernel) read as 8 values too (the next input
 * rows' first ones after them, unused) but near the row's end, where nothing past it is read (`end`), and
 * transposed alike, for only taps % 8 tap rows out. The rows past the last whole block are left to
 * scale_transposed. Returns the rows done and, if `top` is not NULL, their largest magnitude (inn_magnitude, 8
 * lanes at a time) in *top. Inlined into one copy per dtype (scale_transposed_avx2): a constant dtype keeps
 * the 8 x 8 block in registers. */
__attribute__((target("avx2,f16c"), always_inline)) static inline uint32_t transposed_rows(
    const void *restrict x, inn_node_dtype dtype, float scale, uint32_t count, uint32_t taps,
    const float *restrict q, float *restrict row, int32_t *top) {
    const __m256i sign_off = _mm256_set1_epi32(0x7FFFFFFF), inf = _mm256_set1_epi32(0x7F800000);
    const size_t end = (size_t)count * taps;
    const uint32_t tail = taps % 8;
    __m256i most = _mm256_setzero_si256();
    uint32_t i0 = 0;
    for (; i0 + 8 <= count; i0 += 8) {
        const __m256 qv = _mm256_loadu_ps(q + i0);
        for (uint32_t t0 = 0; t0 < taps; t0 += 8) {
            const int whole = t0 + 8 <= taps;
            /* the block's last tail read ends past the row: its reads checked one by one (the last block or two) */
            const int near_end = !whole && (size_t)(i0 + 8) * taps + 8 - tail > end;
            __m256 r[8];
            if (!near_end)
                for (int c = 0; c < 8; c++) r[c] = load8(x, dtype, scale, (size_t)(i0 + c) * taps + t0);
            else
                for (int c = 0; c < 8; c++) {
                    const size_t at = (size_t)(i0 + c) * taps + t0;
                    r[c] = at + 8 <= end ? load8(x, dtype, scale, at) : load_last(x, dtype, scale, at, end - at);
                }
            transpose8(r);
            for (uint32_t t = 0; t < (whole ? 8 : tail); t++) {
                const __m256 v = _mm256_mul_ps(r[t], qv);
                _mm256_storeu_ps(row + (size_t)(t0 + t) * count + i0, v);
                if (!top) continue;
                __m256i m = _mm256_and_si256(_mm256_castps_si256(v), sign_off);
                m = _mm256_andnot_si256(_mm256_cmpgt_epi32(m, inf), m); /* NaN: 0 */
                most = _mm256_max_epi32(most, m);
            }
        }
    }
    if (!top) return i0;
    int32_t lanes[8], rest = 0;
    _mm256_storeu_si256((__m256i *)lanes, most);
    for (int k = 0; k < 8; k++) rest = lanes[k] > rest ? lanes[k] : rest;
    *top = rest;
    return i0;
}

__attribute__((target("avx2,f16c"))) static uint32_t scale_transposed_avx2(const void *restrict x, inn_node_dtype dtype,
                                                                          float scale, uint32_t count, uint32_t taps,
                                                                          const float *restrict q,
                                                                          float *restrict row, int32_t *top) {
    switch (dtype) {
        case INN_NODES_F16: return transposed_rows(x, INN_NODES_F16, scale, count, taps, q, row, top);
        case INN_NODES_I8: return transposed_rows(x, INN_NODES_I8, scale, count, taps, q, row, top);
        default: return transposed_rows(x, INN_NODES_F32, scale, count, taps, q, row, top);
    }
}
#endif

#ifdef INN_NEON
/* Four consecutive values of a row stored as `dtype`, from element k, in float32 exactly as node_row widens
 * them: float16 by FCVTL (exact), int8 as (float)q * scale. */
static inline float32x4_t load4(const void *x, inn_node_dtype dtype, float scale, size_t k) {
    switch (dtype) {
        case INN_NODES_F16: return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16((const uint16_t *)x + k)));
        case INN_NODES_I8: {
            int32_t four;
            memcpy(&four, (const int8_t *)x + k, sizeof four);
            const int16x8_t wide = vmovl_s8(vreinterpret_s8_s32(vdup_n_s32(four)));
            return vmulq_n_f32(vcvtq_f32_s32(vmovl_s16(vget_low_s16(wide))), scale);
        }
        default: return vld1q_f32((const float *)x + k);
    }
}

/* load4 of the last n (< 4) values of a row, padded with zeros: nothing past them is read. */
static float32x4_t load_last4(const void *x, inn_node_dtype dtype, float scale, size_t k, size_t n) {
    float v[4] = {0};
    widen_values(x, dtype, scale, k, n, v);
    return vld1q_f32(v);
}

/* r[t][c] = r[c][t] for 4 vectors of 4 floats. */
static inline void transpose4(float32x4_t r[4]) {
    const float32x4_t a0 = vtrn1q_f32(r[0], r[1]), a1 = vtrn2q_f32(r[0], r[1]);
    const float32x4_t a2 = vtrn1q_f32(r[2], r[3]), a3 = vtrn2q_f32(r[2], r[3]);
    r[0] = vreinterpretq_f32_f64(vtrn1q_f64(vreinterpretq_f64_f32(a0), vreinterpretq_f64_f32(a2)));
    r[1] = vreinterpretq_f32_f64(vtrn1q_f64(vreinterpretq_f64_f32(a1), vreinterpretq_f64_f32(a3)));
    r[2] = vreinterpretq_f32_f64(vtrn2q_f64(vreinterpretq_f64_f32(a0), vreinterpretq_f64_f32(a2)));
    r[3] = vreinterpretq_f32_f64(vtrn2q_f64(vreinterpretq_f64_f32(a1), vreinterpretq_f64_f32(a3)));
}

/* scale_transposed_avx2 in NEON registers: whole blocks of 4 input rows, 4 taps at a time, the same reads
 * (the last taps of a row as 4 values but near the row's end) and the same products. Inlined into one
 * copy per dtype (scale_transposed_neon). */
__attribute__((always_inline)) static inline uint32_t transposed_rows4(const void *restrict x, inn_node_dtype dtype,
                                                                      float scale, uint32_t count, uint32_t taps,
                                                                      const float *restrict q,
                                                                      float *restrict row, int32_t *top) {
    const uint32x4_t sign_off = vdupq_n_u32(0x7FFFFFFFu), inf = vdupq_n_u32(0x7F800000u);
    const size_t end = (size_t)count * taps;
    const uint32_t tail = taps % 4;
    uint32x4_t most = vdupq_n_u32(0);
    uint32_t i0 = 0;
    for (; i0 + 4 <= count; i0 += 4) {
        const float32x4_t qv = vld1q_f32(q + i0);
        for (uint32_t t0 = 0; t0 < taps; t0 += 4) {
            const int whole = t0 + 4 <= taps;
            const int near_end = !whole && (size_t)(i0 + 4) * taps + 4 - tail > end; /* as in transposed_rows */
            float32x4_t r[4];
            if (!near_end)
                for (int c = 0; c < 4; c++) r[c] = load4(x, dtype, scale, (size_t)(i0 + c) * taps + t0);
            else
                for (int c = 0; c < 4; c++) {
                    const size_t at = (size_t)(i0 + c) * taps + t0;
                    r[c] = at + 4 <= end ? load4(x, dtype, scale, at) : load_last4(x, dtype, scale, at, end - at);
                }
            transpose4(r);
            for (uint32_t t = 0; t < (whole ? 4 : tail); t++) {
                const float32x4_t v = vmulq_f32(r[t], qv);
                vst1q_f32(row + (size_t)(t0 + t) * count + i0, v);
                if (!top) continue;
                uint32x4_t m = vandq_u32(vreinterpretq_u32_f32(v), sign_off);
                m = vbicq_u32(m, vcgtq_u32(m, inf)); /* NaN: 0 */
                most = vmaxq_u32(most, m);
            }
        }
    }
    if (top) *top = (int32_t)vmaxvq_u32(most);
    return i0;
}

static uint32_t scale_transposed_neon(const void *restrict x, inn_node_dtype dtype, float scale, uint32_t count,
                                      uint32_t taps, const float *restrict q, float *restrict row, int32_t *top) {
    switch (dtype) {
        case INN_NODES_F16: return transposed_rows4(x, INN_NODES_F16, scale, count, taps, q, row, top);
        case INN_NODES_I8: return transposed_rows4(x, INN_NODES_I8, scale, count, taps, q, row, top);
        default: return transposed_rows4(x, INN_NODES_F32, scale, count, taps, q, row, top);
    }
}
#endif

/* Input rows per block of the vector transposes (scale_transposed_avx2 / _neon); 0 where there are none. */
#if defined(INN_HAS_CLONES)
#define TRANSPOSED_BLOCK 8u
#elif defined(INN_NEON)
#define TRANSPOSED_BLOCK 4u
#else
#define TRANSPOSED_BLOCK 0u
#endif

/* The whole blocks of TRANSPOSED_BLOCK input rows of scale_transposed, from a row stored as `dtype`, by the
 * CPU's vector unit (float16 on x86 only with F16C: `f16c`); returns the rows done, 0 where there is none. */
static uint32_t transposed_blocks(const void *x, inn_node_dtype dtype, float scale, int f16c, uint32_t count,
                                  uint32_t taps, const float *q, float *row, int32_t *top) {
#if defined(INN_HAS_CLONES)
    if (__builtin_cpu_supports("avx2") && (dtype != INN_NODES_F16 || f16c))
        return scale_transposed_avx2(x, dtype, scale, count, taps, q, row, top);
#elif defined(INN_NEON)
    (void)f16c;
    return scale_transposed_neon(x, dtype, scale, count, taps, q, row, top);
#else
    (void)x, (void)dtype, (void)scale, (void)f16c, (void)count, (void)taps, (void)q, (void)row, (void)top;
#endif
    return 0;
}

/* The input-axis pass when it is the identity (compact_taps.identity): row[i, t] = (x[i, t] * 1) * q_i is
 * x[i, t] * q_i exactly, with no gather, written [i][t] (qx: q_i per element, for taps > 1), or [t][i] if
 * `ordered` (an OTI sink's order, so that the row needs no transposition after: int8 quantised straight into
 * place, float32 written into the output itself). Returns the row's largest magnitude if `want` (sink_row's `top`),
 * else -1. */
static int32_t scale_identity(const float *x, uint32_t count, uint32_t taps, const float *q, const float *qx,
                              int ordered, float *row, int want) {
    if (taps == 1 || !ordered) return scale_row(x, taps == 1 ? q : qx, (size_t)count * taps, row, want);
    int32_t top = want ? 0 : -1;
    const uint32_t done = transposed_blocks(x, INN_NODES_F32, 1.0f, 1, count, taps, q, row, want ? &top : NULL);
    return scale_transposed(x, count, taps, q, row, done, top);
}

/* Input row i of a combined row with two, three or no non-zero taps (partition ends): the same sums,
 * kept out of line so that the one- and four-tap loops stay small. */
static void sample_sparse(const float *restrict x, uint32_t taps, const compact_taps *restrict c, uint32_t i,
                          float *restrict r) {
    const uint32_t *off = c->off + (size_t)i * INN_TAPS;
    const float *w = c->w + (size_t)i * INN_TAPS;
    uint8_t k = c->nnz[i];
    if (k == 0) {
        for (uint32_t t = 0; t < taps; t++) r[t] = 0.0f;
        return;
    }
    for (uint32_t t = 0; t < taps; t++) r[t] = x[off[0] + t] * w[0];
    for (uint8_t b = 1; b < k; b++)
        for (uint32_t t = 0; t < taps; t++) r[t] += x[off[b] + t] * w[b];
    for (uint32_t t = 0; t < taps; t++) r[t] *= c->q[i];
}

/* One combined row x sampled along the input axis, times the quadrature, into row; with PAIR, a second
 * row y into row_y in the same pass, sharing each input row's taps (loaded once):
 * row[i, t] = (sum_b w_in[i, b] * x[idx_in[i, b], t]) * q_i. A copy per common tap count (3x3) lets the
 * compiler unroll and vectorise the inner loops. */
#define SAMPLE_ONE(X, D, T)                                                                                           \
    do {                                                                                                             \
        const float *restrict x0 = (X) + o0, *restrict x1 = (X) + o1, *restrict x2 = (X) + o2,                      \
                              *restrict x3 = (X) + o3;                                                               \
        float *restrict d = (D) + (size_t)i * (T);                                                                   \
        for (uint32_t t = 0; t < (T); t++) d[t] = (((x0[t] * w0 + x1[t] * w1) + x2[t] * w2) + x3[t] * w3) * q;       \
    } while (0)
#define SAMPLE_BODY(T, PAIR)                                                                                          \
    for (uint32_t i = 0; i < count; i++) {                                                                           \
        const uint32_t *restrict off = c->off + (size_t)i * INN_TAPS;                                                \
        const float *restrict w = c->w + (size_t)i * INN_TAPS;                                                       \
        const float q = c->q[i];                                                                                     \
        if (c->nnz[i] == 1) { /* every row at full width: a node, scaled */                                          \
            const float w0 = w[0];                                                                                   \
            const float *restrict x0 = x + off[0];                                                                   \
            float *restrict d = row + (size_t)i * (T);                                                               \
            for (uint32_t t = 0; t < (T); t++) d[t] = (x0[t] * w0) * q;                                              \
            if (PAIR) {                                                                                              \
                const float *restrict y0 = y + off[0];                                                               \
                float *restrict e = row_y + (size_t)i * (T);                                                         \
                for (uint32_t t = 0; t < (T); t++) e[t] = (y0[t] * w0) * q;                                          \
            }                                                                                                        \
        } else if (c->nnz[i] != INN_TAPS) {                                                                          \
            sample_sparse(x, (T), c, i, row + (size_t)i * (T));                                                      \
            if (PAIR) sample_sparse(y, (T), c, i, row_y + (size_t)i * (T));                                          \
        } else {                                                                                                     \
            const float w0 = w[0], w1 = w[1], w2 = w[2], w3 = w[3];                                                  \
            const uint32_t o0 = off[0], o1 = off[1], o2 = off[2], o3 = off[3];                                       \
            SAMPLE_ONE(x, row, T);                                                                                   \
            if (PAIR) SAMPLE_ONE(y, row_y, T);                                                                       \
        }                                                                                                            \
    }

/* y, row_y: the second row of a pair, or NULL. */
INN_AVX2_CLONE static void sample_row(const float *restrict x, const float *restrict y, uint32_t taps,
                                      const compact_taps *restrict c, uint32_t count, float *restrict row,
                                      float *restrict row_y) {
    if (taps == 9 && y) {
        SAMPLE_BODY(9, 1)
    } else if (taps == 9) {
        SAMPLE_BODY(9, 0)
    } else if (taps == ROWS1 && !y) { /* the transposed 1x1 rows of sample_rows1 */
        SAMPLE_BODY(ROWS1, 0)
    } else if (y) {
        SAMPLE_BODY(taps, 1)
    } else {
        SAMPLE_BODY(taps, 0)
    }
}

/* xt[j][r] = x[r][j] for ROWS1 rows of m values; 4x4 blocks in SSE registers on x86, element by
 * element elsewhere and for the last m % 4. */
static void transpose_in(const float *const x[ROWS1], uint32_t m, float *restrict xt) {
    uint32_t j0 = 0;
#ifdef INN_SSE_TRANSPOSE
    for (; j0 + 4 <= m; j0 += 4)
        for (uint32_t r = 0; r < ROWS1; r += 4) {
            __m128 a = _mm_loadu_ps(x[r] + j0), b = _mm_loadu_ps(x[r + 1] + j0), c = _mm_loadu_ps(x[r + 2] + j0),
                   d = _mm_loadu_ps(x[r + 3] + j0);
            _MM_TRANSPOSE4_PS(a, b, c, d);
            float *t = xt + (size_t)j0 * ROWS1 + r;
            _mm_storeu_ps(t, a);
            _mm_storeu_ps(t + ROWS1, b);
            _mm_storeu_ps(t + 2 * ROWS1, c);
            _mm_storeu_ps(t + 3 * ROWS1, d);
        }
#endif
    for (uint32_t j = j0; j < m; j++)
        for (uint32_t r = 0; r < ROWS1; r++) xt[(size_t)j * ROWS1 + r] = x[r][j];
}

/* out[r][i] = rt[i][r] for the first `rows` of ROWS1 lanes, count values each (as transpose_in). */
static void transpose_out(const float *restrict rt, uint32_t count, uint32_t rows, float *const out[ROWS1]) {
    uint32_t i0 = 0;
#ifdef INN_SSE_TRANSPOSE
    for (; i0 + 4 <= count; i0 += 4)
        for (uint32_t r = 0; r < rows; r += 4) {
            const float *t = rt + (size_t)i0 * ROWS1 + r;
            __m128 v[4] = {_mm_loadu_ps(t), _mm_loadu_ps(t + ROWS1), _mm_loadu_ps(t + 2 * ROWS1),
                           _mm_loadu_ps(t + 3 * ROWS1)};
            _MM_TRANSPOSE4_PS(v[0], v[1], v[2], v[3]);
            for (uint32_t k = 0; k < 4 && r + k < rows; k++) _mm_storeu_ps(out[r + k] + i0, v[k]);
        }
#endif
    for (uint32_t r = 0; r < rows; r++)
        for (uint32_t i = i0; i < count; i++) out[r][i] = rt[(size_t)i * ROWS1 + r];
}

/* 1x1 convs and linears: the input-axis pass gathers single values, one at a time per row. Sampling
 * ROWS1 combined rows together, transposed so that the rows are the inner axis (xt[j][r]), makes them
 * one row of ROWS1 "taps" per input node, sampled by sample_row (c's offsets count in ROWS1 lanes):
 * out[r][i] = (sum_b w[i, b] * x[r][idx_b]) * q_i, the same sums in the same order, per row.
 * xt: m_in * ROWS1 floats, rt: count * ROWS1 floats. */
static void sample_rows1(const float *const x[ROWS1], uint32_t rows, uint32_t m_in, const compact_taps *restrict c,
                         uint32_t count, float *restrict xt, float *restrict rt, float *const out[ROWS1]) {
    const float *src[ROWS1]; /* lanes past `rows` repeat row 0, computed and dropped */
    for (uint32_t r = 0; r < ROWS1; r++) src[r] = x[r < rows ? r : 0];
    transpose_in(src, m_in, xt);
    sample_row(xt, NULL, ROWS1, c, count, rt, NULL);
    transpose_out(rt, count, rows, out);
}

#ifdef INN_F16C
/* float16 -> float32 by vcvtph2ps, 8 at a time: exact, the same values as inn_half_to_float. */
__attribute__((target("avx,f16c"))) static void widen_f16c(const uint16_t *restrict h, size_t len,
                                                          float *restrict out) {
    size_t k = 0;
    for (; k + 8 <= len; k += 8) _mm256_storeu_ps(out + k, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(h + k))));
    for (; k < len; k++) out[k] = inn_half_to_float(h[k]);
}
#endif

static void widen_f16(const uint16_t *restrict h, size_t len, float *restrict out, int f16c) {
#ifdef INN_F16C
    if (f16c) {
        widen_f16c(h, len, out);
        return;
    }
#else
    (void)f16c;
#endif
    for (size_t k = 0; k < len; k++) out[k] = inn_half_to_float(h[k]);
}

/* The nodes as this CPU widens them: float16 by F16C where it has it (the same values as the plain loop). */
static inn_nodes on_this_cpu(const inn_nodes *nd) {
    inn_nodes nodes = *nd;
    nodes.f16c = nd->dtype == INN_NODES_F16 && (inn_cpu_features() & INN_CPU_F16C);
    return nodes;
}

/* Node row `node` (len = m_in * taps values) in float32: in place for float32 nodes, else widened
 * into `wide` (float16 exactly; int8 as (float)q * scale). */
INN_AVX2_CLONE static const float *node_row(const inn_nodes *nd, uint32_t node, size_t len, float *restrict wide) {
    size_t at = (size_t)node * len;
    switch (nd->dtype) {
        case INN_NODES_F16: {
            widen_f16((const uint16_t *)nd->data + at, len, wide, nd->f16c);
            return wide;
        }
        case INN_NODES_I8: {
            const int8_t *restrict q = (const int8_t *)nd->data + at;
            const float scale = nd->scales[node];
            for (size_t k = 0; k < len; k++) wide[k] = (float)q[k] * scale;
            return wide;
        }
        default: return (const float *)nd->data + at;
    }
}

/* Node row `node` (m_in * taps values) as an output row at full width: the products node_row's widening and
 * scale_identity make (int8 nodes in rows written in their own order: both in one pass, scale_row_i8), without
 * the combined row of the passes below. Returns the row's largest magnitude if `want` (sink_row's `top`), else -1. */
static int32_t identity_row(const inn_nodes *nd, uint32_t node, size_t node_len, uint32_t count, uint32_t taps,
                            const float *q, const float *qx, int ordered, float *wide, float *row, int want) {
    const size_t at = (size_t)node * node_len;
    if (nd->dtype == INN_NODES_I8 && (taps == 1 || !ordered))
        return scale_row_i8((const int8_t *)nd->data + at, nd->scales[node], taps == 1 ? q : qx, (size_t)count * taps,
                            row, want);
#if TRANSPOSED_BLOCK
    /* rows written transposed in whole blocks of input rows: straight from the stored row, where the CPU can */
    if (ordered && taps > 1 && count % TRANSPOSED_BLOCK == 0) {
        int32_t top = want ? 0 : -1;
        if (transposed_blocks((const uint8_t *)nd->data + at * inn_node_size(nd->dtype), nd->dtype,
                              nd->dtype == INN_NODES_I8 ? nd->scales[node] : 1.0f, nd->f16c, count, taps, q, row,
                              want ? &top : NULL) == count)
            return top;
    }
#endif
    return scale_identity(node_row(nd, node, node_len, wide), count, taps, q, qx, ordered, row, want);
}

/* The node output row o reads alone with weight 1, or -1 if it reads several (or none): every row of a
 * resizable axis at full width, and every row of a fixed one. The same test as out_row.in_place. */
static int64_t single_node(const inn_axis *out, uint32_t o) {
    const int32_t *oi = out->idx + (size_t)o * INN_TAPS;
    const double *ow = out->w + (size_t)o * INN_TAPS;
    int64_t node = -1;
    for (int a = 0; a < INN_TAPS; a++) {
        if (ow[a] == 0.0) continue;
        if (node >= 0 || (float)ow[a] != 1.0f) return -1;
        node = oi[a];
    }
    return node;
}

/* Widened node rows kept for the next output rows (which read overlapping node windows): room for the
 * (at most eight) node rows of a pair of output rows. */
typedef struct {
    int64_t key[SLOTS]; /* node index held by each slot, -1 if none */
    float *slot;        /* [SLOTS * len] */
} row_cache;

/* Node row `node` in float32, from the cache or widened into a slot that none of the `n` taps
 * (oi, ow) still to be combined needs (`node` is one of them, so such a slot exists). */
static const float *cached_row(const inn_nodes *nd, row_cache *rc, uint32_t node, const int32_t *oi, const double *ow,
                               int n, size_t len) {
    if (nd->dtype == INN_NODES_F32) return node_row(nd, node, len, NULL);
    int s = -1;
    for (int c = 0; c < SLOTS; c++)
        if (rc->key[c] == node) return rc->slot + (size_t)c * len;
    for (int c = 0; c < SLOTS && s < 0; c++) {
        int needed = 0;
        for (int e = 0; e < n; e++) needed |= (rc->key[c] == oi[e] && ow[e] != 0.0);
        if (!needed) s = c;
    }
    rc->key[s] = node;
    return node_row(nd, node, len, rc->slot + (size_t)s * len);
}

/* dst = sum_u w_u * src_u over a whole row, in tap order (the output-axis pass). */
INN_AVX2_CLONE static void combine(float *restrict dst, const float *const src[INN_TAPS], const float wt[INN_TAPS],
                                   int used, size_t n) {
    if (used == INN_TAPS) { /* the common case below full width: four taps in one pass, same order */
        const float *restrict s0 = src[0], *restrict s1 = src[1], *restrict s2 = src[2], *restrict s3 = src[3];
        const float w0 = wt[0], w1 = wt[1], w2 = wt[2], w3 = wt[3];
        for (size_t k = 0; k < n; k++) dst[k] = ((s0[k] * w0 + s1[k] * w1) + s2[k] * w2) + s3[k] * w3;
        return;
    }
    if (used == 0) {
        memset(dst, 0, n * sizeof(float));
        return;
    }
    const float *restrict s0 = src[0];
    const float w0 = wt[0];
    for (size_t k = 0; k < n; k++) dst[k] = s0[k] * w0;
    for (int u = 1; u < used; u++) {
        const float *restrict su = src[u];
        const float wu = wt[u];
        for (size_t k = 0; k < n; k++) dst[k] += su[k] * wu;
    }
}

/* The node rows one output row combines: at most four, with their weights; in_place when it is one
 * node row as it is (x * 1.0f == x: every row at full width). */
typedef struct {
    const float *src[INN_TAPS];
    float wt[INN_TAPS];
    int used, in_place;
} out_row;

/* Output row o's node rows; rows first..o-1 of the same pass are still to be combined (their widened
 * node rows stay cached). */
static void sources(const inn_nodes *nd, row_cache *rc, const inn_axis *out, uint32_t first, uint32_t o,
                    size_t node_len, out_row *r) {
    const int32_t *oi = out->idx + (size_t)o * INN_TAPS;
    const double *ow = out->w + (size_t)o * INN_TAPS;
    const int keep = (int)(o - first + 1) * INN_TAPS;
    r->used = 0;
    for (int a = 0; a < INN_TAPS; a++) {
        if (ow[a] == 0.0) continue;
        r->src[r->used] = cached_row(nd, rc, (uint32_t)oi[a], out->idx + (size_t)first * INN_TAPS,
                                     out->w + (size_t)first * INN_TAPS, keep, node_len);
        r->wt[r->used++] = (float)ow[a];
    }
    r->in_place = r->used == 1 && r->wt[0] == 1.0f;
}

/* Two four-tap output rows in one pass: the node rows both read stream from memory together (more
 * misses in flight than one row's two new rows), each sum in tap order as combine() does. */
INN_AVX2_CLONE static void combine2(float *restrict d0, const float *const a[INN_TAPS], const float wa[INN_TAPS],
                                    float *restrict d1, const float *const b[INN_TAPS], const float wb[INN_TAPS],
                                    size_t n) {
    const float *restrict a0 = a[0], *restrict a1 = a[1], *restrict a2 = a[2], *restrict a3 = a[3];
    const float *restrict b0 = b[0], *restrict b1 = b[1], *restrict b2 = b[2], *restrict b3 = b[3];
    const float u0 = wa[0], u1 = wa[1], u2 = wa[2], u3 = wa[3], v0 = wb[0], v1 = wb[1], v2 = wb[2], v3 = wb[3];
    for (size_t k = 0; k < n; k++) {
        d0[k] = ((a0[k] * u0 + a1[k] * u1) + a2[k] * u2) + a3[k] * u3;
        d1[k] = ((b0[k] * v0 + b1[k] * v1) + b2[k] * v2) + b3[k] * v3;
    }
}

/* Elements at .. at + len - 1 of the tensor, which lie in node row `row`, in float32 (float16 exactly; int8 as
 * (float)q * scale, the row's scale). */
INN_AVX2_CLONE static void node_span(const inn_nodes *nd, size_t row, size_t at, size_t len, float *restrict out) {
    switch (nd->dtype) {
        case INN_NODES_F16: widen_f16((const uint16_t *)nd->data + at, len, out, nd->f16c); return;
        case INN_NODES_I8: {
            const int8_t *restrict q = (const int8_t *)nd->data + at;
            const float scale = nd->scales[row];
            for (size_t k = 0; k < len; k++) out[k] = (float)q[k] * scale;
            return;
        }
        default: memcpy(out, (const float *)nd->data + at, len * sizeof(float));
    }
}

inn_status inn_dense_to_sink(const inn_nodes *nd, uint32_t m_out, uint32_t m_in, uint32_t taps, uint32_t blocks,
                             const inn_axis *out, const inn_axis *in, const inn_sink *sink, float *scratch,
                             size_t scratch_count) {
    if (!nd || !nd->data || !sink || !sink->dst || !scratch || taps == 0 || m_in == 0 || m_out == 0 || blocks == 0)
        return INN_ERR_ARG;
    if (m_out % blocks) return INN_ERR_ARG;
    const inn_nodes nodes = on_this_cpu(nd);
    nd = &nodes;
    inn_status st = inn_check_axis(out, blocks, m_out / blocks);
    if (st == INN_OK) st = inn_check_axis(in, blocks, m_in);
    if (st != INN_OK) return st;
    uint32_t n_ob = out->n / blocks, n_ib = in->n / blocks;
    size_t row_len, total;
    if (!inn_mul(n_ib, taps, &row_len) || !inn_mul(row_len, out->n, &total)) return INN_ERR_OVERFLOW;
    if (sink->count < total || (sink->dtype == INN_I8 && (!sink->scales || sink->scales_count < out->n)))
        return INN_ERR_BUFFER;
    size_t need = inn_dense_scratch(n_ib, m_in, taps), node_len = (size_t)m_in * taps;
    if (need == 0) return INN_ERR_OVERFLOW;
    if (scratch_count < need) return INN_ERR_BUFFER;
    /* compact tap offsets (32-bit) step by a node's floats: its taps, or the ROWS1 lanes of the 1x1 rows */
    const uint32_t stride = taps == 1 ? ROWS1 : taps;
    if ((uint64_t)m_in * stride > UINT32_MAX) return INN_ERR_RANGE;
    /* output rows per pass: ROWS1 for 1x1 layers, else pairs (combine2).
     * scratch: k combined rows, SLOTS widened node rows, k output rows, one int8 row, (1x1) the
     * transposed rows and results, compact input taps */
    const uint32_t k = combined_rows(taps);
    /* ROWS1 rows' node rows do not fit the cache: widened ones are combined one output row at a time */
    const int one_by_one = taps == 1 && nd->dtype != INN_NODES_F32;
    float *comb = scratch;
    row_cache rc;
    for (int c = 0; c < SLOTS; c++) rc.key[c] = -1;
    rc.slot = comb + k * node_len;
    float *rowf = rc.slot + (size_t)SLOTS * node_len;
    int8_t *qrow = (int8_t *)(rowf + k * row_len);
    const size_t t1 = transposed_lanes(taps);
    float *xt = rowf + (k + 1) * row_len, *rt = xt + t1 * node_len; /* 1x1 only: sample_rows1 */
    float *qx = rt + t1 * row_len;                                       /* q_i per element: scale_identity */
    compact_taps ct;
    ct.off = (uint32_t *)(qx + row_len);
    ct.w = (float *)(ct.off + (size_t)n_ib * INN_TAPS);
    ct.q = ct.w + (size_t)n_ib * INN_TAPS;
    ct.nnz = (uint8_t *)(ct.q + n_ib);
    for (uint32_t j = 0; j < blocks; j++) {
        compact(in, j * n_ib, n_ib, j * m_in, stride, &ct);
        if (ct.identity && taps > 1)
            for (uint32_t i = 0; i < n_ib; i++)
                for (uint32_t t = 0; t < taps; t++) qx[(size_t)i * taps + t] = ct.q[i];
        /* the identity pass writes OTI rows in their own order (scale_identity); float32 rows in the output's
         * order go straight to it unless they are normalised first (in sink_row) */
        const int ordered = ct.identity && sink->layout == INN_LAYOUT_OTI && taps > 1;
        const int direct = sink->dtype == INN_F32 && !sink->norm_a && contiguous(sink->layout, taps, ordered);
        const int want_top = sink->dtype == INN_I8 && !sink->norm_a; /* the identity rows' largest magnitudes */
        uint32_t first = j * n_ob; /* the block's first row for the passes below */
        if (ct.identity) {
            /* full width: the output rows on a node (all of them, but for a fixed input axis beside a resized
             * output axis) are their node rows, scaled, in one pass each; the rows after the first that is
             * not go through the passes below (rows are independent: the same values either way) */
            for (int64_t node; first < (j + 1) * n_ob && (node = single_node(out, first)) >= 0; first++) {
                float *row = direct ? (float *)sink->dst + (size_t)first * row_len : rowf;
                const int32_t top = identity_row(nd, (uint32_t)node, node_len, n_ib, taps, ct.q, qx, ordered, rc.slot,
                                                 row, want_top);
                if (!direct) sink_row(sink, first, row, n_ib, taps, qrow, ordered, top);
            }
            for (int c = 0; c < SLOTS; c++) rc.key[c] = -1; /* float16 rows were widened into the first slot */
        }
        for (uint32_t o0 = first; o0 < (j + 1) * n_ob; o0 += k) {
            uint32_t rows = (j + 1) * n_ob - o0 < k ? (j + 1) * n_ob - o0 : k;
            const float *x[ROWS1];
            float *dst[ROWS1];
            out_row pr[ROWS1];
            int todo[ROWS1]; /* rows still to combine into comb */
            for (uint32_t r = 0; r < rows; r++) {
                sources(nd, &rc, out, one_by_one ? o0 + r : o0, o0 + r, node_len, &pr[r]);
                dst[r] = direct ? (float *)sink->dst + (size_t)(o0 + r) * row_len : rowf + r * row_len;
                /* a row on a node is read in place, unless it is a widened row that the next rows'
                 * sources may evict from the cache: those are combined before that can happen */
                todo[r] = !pr[r].in_place || one_by_one;
                x[r] = todo[r] ? comb + r * node_len : pr[r].src[0];
                if (todo[r] && one_by_one) {
                    combine(comb + r * node_len, pr[r].src, pr[r].wt, pr[r].used, node_len);
                    todo[r] = 0;
                }
            }
            if (rows == 2 && todo[0] && todo[1] && pr[0].used == INN_TAPS && pr[1].used == INN_TAPS) {
                combine2(comb, pr[0].src, pr[0].wt, comb + node_len, pr[1].src, pr[1].wt, node_len);
                todo[0] = todo[1] = 0;
            }
            for (uint32_t r = 0; r < rows; r++)
                if (todo[r]) combine(comb + r * node_len, pr[r].src, pr[r].wt, pr[r].used, node_len);
            if (ct.identity)
                for (uint32_t r = 0; r < rows; r++) scale_identity(x[r], n_ib, taps, ct.q, qx, ordered, dst[r], 0);
            else if (taps == 1) sample_rows1(x, rows, m_in, &ct, n_ib, xt, rt, dst);
            else sample_row(x[0], rows == 2 ? x[1] : NULL, taps, &ct, n_ib, dst[0], rows == 2 ? dst[1] : NULL);
            if (!direct)
                for (uint32_t r = 0; r < rows; r++) sink_row(sink, o0 + r, dst[r], n_ib, taps, qrow, ordered, -1);
        }
    }
    return INN_OK;
}

/* Rows o, o + 1, ... of a float32 vector (one value per row: a bias, a scale) that read nodes node, node + 1, ...
 * alone (full width), at most `max` of them: widened (int8: each value with its own row's scale, as node_span
 * widens a row), normalised (normalize_row's products) and written at once, where sink_row would take one row
 * at a time. One value per row lies at element o in every layout. Returns the rows written (at least 1). */
INN_AVX2_CLONE static uint32_t vector_run(const inn_nodes *nd, const inn_axis *out, const inn_sink *s, uint32_t o,
                                          size_t node, float *restrict v, uint32_t max) {
    uint32_t len = 1;
    while (len < max && o + len < out->n && single_node(out, o + len) == (int64_t)(node + len)) len++;
    if (nd->dtype == INN_NODES_I8) {
        const int8_t *restrict q = (const int8_t *)nd->data + node;
        const float *restrict scale = nd->scales + node;
        for (uint32_t k = 0; k < len; k++) v[k] = (float)q[k] * scale[k];
    } else {
        node_span(nd, node, node, len, v);
    }
    if (s->norm_a) {
        const float *restrict a = s->norm_a + o;
        for (uint32_t k = 0; k < len; k++) v[k] = v[k] * a[k];
        if (s->norm_c) {
            const float *restrict c = s->norm_c + o;
            for (uint32_t k = 0; k < len; k++) v[k] = v[k] + c[k];
        }
    }
    memcpy((float *)s->dst + o, v, len * sizeof(float));
    return len;
}

/* Rows of a row layer (depthwise) finished together at full width: the quantiser's lanes, kernels of up to
 * BLOCK_TAPS taps (7x7 and smaller) in a block on the stack. Float32 rows that lie whole in the output (OIT)
 * gain nothing from it: they are copied one by one. */
enum { LANES = INN_QUANT_LANES, BLOCK_TAPS = 64 };

/* Do rows o .. o + LANES - 1 each read one node alone (full width)? */
static int block_on_nodes(const inn_axis *out, uint32_t o) {
    for (uint32_t r = 0; r < LANES; r++)
        if (single_node(out, o + r) < 0) return 0;
    return 1;
}

/* A block of LANES rows (element type T, ordered [tap][row]) into `dst` in the sink's layout, rows o..: ITO a
 * tap's LANES values at once (consecutive channels); OIT, and OTI of a row layer (one input), row o at o * taps. */
#define PLACE_BLOCK(T, dst, src)                                                                      \
    do {                                                                                             \
        T *restrict d = (T *)(dst);                                                                  \
        const T *restrict b = (src);                                                                 \
        if (s->layout == INN_LAYOUT_ITO)                                                             \
            for (uint32_t t = 0; t < taps; t++)                                                      \
                memcpy(d + (size_t)t * s->n_out + o, b + t * LANES, LANES * sizeof(T));              \
        else                                                                                         \
            for (uint32_t r = 0; r < LANES; r++)                                                     \
                for (uint32_t t = 0; t < taps; t++) d[(size_t)(o + r) * taps + t] = b[t * LANES + r]; \
    } while (0)

/* LANES rows of taps values, ordered [tap][row] in v: normalised, then (int8 sinks) quantised, each row with its
 * own scale: sink_row's operations on every value, but one vector op for all LANES rows where sink_row takes one
 * short row at a time, and in an ITO layout a tap's LANES values (consecutive channels) written together. */
INN_AVX2_CLONE static void finish_block(const inn_sink *s, uint32_t o, uint32_t taps, float *restrict v) {
    if (s->norm_a) {
        for (uint32_t t = 0; t < taps; t++)
            for (uint32_t r = 0; r < LANES; r++) v[t * LANES + r] = v[t * LANES + r] * s->norm_a[o + r];
        if (s->norm_c)
            for (uint32_t t = 0; t < taps; t++)
                for (uint32_t r = 0; r < LANES; r++) v[t * LANES + r] = v[t * LANES + r] + s->norm_c[o + r];
    }
    if (s->dtype == INN_I8) {
        int8_t q[BLOCK_TAPS * LANES];
        inn_quantize_lanes(v, taps, q, s->scales + o);
        PLACE_BLOCK(int8_t, s->dst, q);
    } else {
        PLACE_BLOCK(float, s->dst, v);
    }
}

/* Rows o .. o + LANES - 1 of a row layer at full width, each its node row (block_on_nodes), 1 < taps <=
 * BLOCK_TAPS: widened one row at a time into rowf (node_span), gathered into a [tap][row] block, finished
 * together (finish_block). */
static void rows_block(const inn_nodes *nd, const inn_axis *out, const inn_sink *s, uint32_t o, uint32_t taps,
                       float *rowf) {
    float v[BLOCK_TAPS * LANES];
    for (uint32_t r = 0; r < LANES; r++) {
        const size_t node = (size_t)single_node(out, o + r);
        node_span(nd, node, node * taps, taps, rowf);
        for (uint32_t t = 0; t < taps; t++) v[t * LANES + r] = rowf[t];
    }
    finish_block(s, o, taps, v);
}

inn_status inn_rows_to_sink(const inn_nodes *nd, uint32_t m, uint32_t taps, const inn_axis *out, const inn_sink *sink,
                            float *rowf, int8_t *qrow) {
    if (!nd || !nd->data || !sink || !sink->dst || !rowf || taps == 0 || m == 0) return INN_ERR_ARG;
    inn_status st = inn_check_axis(out, 1, m);
    if (st != INN_OK) return st;
    size_t total;
    if (!inn_mul(out->n, taps, &total)) return INN_ERR_OVERFLOW;
    if (sink->count < total || (sink->dtype == INN_I8 && (!sink->scales || sink->scales_count < out->n || !qrow)))
        return INN_ERR_BUFFER;
    const inn_nodes nodes = on_this_cpu(nd);
    nd = &nodes;
    enum { SPAN = 64 }; /* node values widened at a time */
    float span[SPAN];
    for (uint32_t o = 0; o < out->n; o++) {
        const int64_t node = single_node(out, o);
        if (node >= 0 && taps == 1 && sink->dtype == INN_F32) {
            o += vector_run(nd, out, sink, o, (size_t)node, span, SPAN) - 1;
            continue;
        }
        if (node >= 0 && taps > 1 && taps <= BLOCK_TAPS && (sink->dtype == INN_I8 || sink->layout == INN_LAYOUT_ITO) &&
            out->n - o >= LANES && block_on_nodes(out, o)) {
            rows_block(nd, out, sink, o, taps, rowf);
            o += LANES - 1;
            continue;
        }
        if (node >= 0) { /* full width: the node row itself (x * 1.0f is x), widened in one pass */
            node_span(nd, (size_t)node, (size_t)node * taps, taps, rowf);
            sink_row(sink, o, rowf, 1, taps, qrow, 0, -1);
            continue;
        }
        const int32_t *oi = out->idx + (size_t)o * INN_TAPS;
        const double *ow = out->w + (size_t)o * INN_TAPS;
        /* per element: the non-zero taps' terms summed in tap order from the first (none: +0.0) */
        for (uint32_t t0 = 0; t0 < taps; t0 += SPAN) {
            const uint32_t len = taps - t0 < SPAN ? taps - t0 : SPAN;
            float *restrict v = rowf + t0;
            int started = 0;
            for (int a = 0; a < INN_TAPS; a++) {
                if (ow[a] == 0.0) continue;
                const float w = (float)ow[a];
                node_span(nd, (size_t)oi[a], (size_t)oi[a] * taps + t0, len, span);
                if (started)
                    for (uint32_t t = 0; t < len; t++) v[t] = v[t] + span[t] * w;
                else
                    for (uint32_t t = 0; t < len; t++) v[t] = span[t] * w;
                started = 1;
            }
            if (!started)
                for (uint32_t t = 0; t < len; t++) v[t] = 0.0f;
        }
        sink_row(sink, o, rowf, 1, taps, qrow, 0, -1);
    }
    return INN_OK;
}

inn_status inn_resample_dense(const float *nodes, uint32_t m_out, uint32_t m_in, uint32_t taps, uint32_t blocks,
                              const inn_axis *out, const inn_axis *in, inn_layout layout, float *dst,
                              size_t dst_count, float *scratch, size_t scratch_count) {
    if (!out) return INN_ERR_ARG;
    inn_nodes nd = {nodes, INN_NODES_F32, NULL, 0};
    inn_sink sink = {layout, INN_F32, dst, dst_count, NULL, 0, out->n, NULL, NULL};
    return inn_dense_to_sink(&nd, m_out, m_in, taps, blocks, out, in, &sink, scratch, scratch_count);
}

inn_status inn_resample_rows(const float *nodes, uint32_t m, uint32_t taps, const inn_axis *out, inn_layout layout,
                             float *dst, size_t dst_count) {
    if (!out || taps > INN_MAX_DIM) return INN_ERR_ARG;
    float row[256];
    if (taps > 256) return INN_ERR_ARG;
    inn_nodes nd = {nodes, INN_NODES_F32, NULL, 0};
    inn_sink sink = {layout, INN_F32, dst, dst_count, NULL, 0, out->n, NULL, NULL};
    return inn_rows_to_sink(&nd, m, taps, out, &sink, row, NULL);
}
