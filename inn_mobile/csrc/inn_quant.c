/* Symmetric int8 per-output-channel quantisation, applied after discretisation.
 * scale = max(max|w|, 1e-9f) / 127 (float32), q = clamp(rint(w / scale), -127, 127) with
 * round-half-to-even (IEEE default; what torch.round and XNNPACK's reference quantiser use). The 1e-9
 * floor is ai-edge-quantizer's: a dead (all-zero or tiny) channel gets the scale the LiteRT quantizer
 * writes, so the converter's own int8 graph and the core agree on it. */
#include <math.h>
#include <string.h>

#include "inn.h"
#include "inn_internal.h"

/* One value: the round-half-even of x / scale clamped to +-127. Clamping first and then rounding gives the
 * same integer (127 for everything at or past 127), and within +-127 adding and subtracting 1.5 * 2^23 rounds
 * to an integer half-to-even in the default rounding mode, as nearbyintf does, without a libm call, so the
 * loops below vectorise. NaN (inf / inf from overflowing sums: bundles hold finite nodes only) passes the
 * comparisons and becomes 0, never a float-to-int conversion of NaN (undefined behaviour). */
INN_VECTOR_COMPARES static inline int8_t quantize_one(float x, float scale) {
    float y = x / scale;
    y = y > 127.0f ? 127.0f : y;
    y = y < -127.0f ? -127.0f : y;
    float r = (y + 12582912.0f) - 12582912.0f;
    return (int8_t)(r == r ? r : 0.0f);
}

#ifdef INN_HAS_CLONES
#include <immintrin.h>

/* quantize_one over a contiguous row, 32 values per step in AVX2 registers: the same quotient, NaN to +0,
 * the same clamp, then vcvtps2dq, which rounds half to even in the default rounding mode as the loop's
 * 1.5 * 2^23 trick does (the core never changes the mode), and two saturating packs that cannot saturate
 * (|q| <= 127). The compiler's vectorisation of the scalar loop spends most of its time on the narrowing
 * to int8, the int8 fill's largest cost before this. */
__attribute__((target("avx2"))) static void quantize_avx2(const float *restrict x, size_t len, float scale,
                                                          int8_t *restrict q) {
    const __m256 s = _mm256_set1_ps(scale), hi = _mm256_set1_ps(127.0f), lo = _mm256_set1_ps(-127.0f);
    /* after the packs, each 128-bit lane holds 4 values of each input vector: put them back in order */
    const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    float tail[32];
    int8_t tail_q[32];
    for (size_t k = 0; k < len; k += 32) {
        const float *src = x + k;
        int8_t *dst = q + k;
        const size_t left = len - k;
        if (left < 32) { /* the last values (a depthwise row: all of them), padded with zeros */
            memcpy(tail, src, left * sizeof(float));
            memset(tail + left, 0, (32 - left) * sizeof(float));
            src = tail;
            dst = tail_q;
        }
        __m256i v[4];
        for (int j = 0; j < 4; j++) {
            __m256 y = _mm256_div_ps(_mm256_loadu_ps(src + 8 * j), s);
            y = _mm256_and_ps(y, _mm256_cmp_ps(y, y, _CMP_ORD_Q));
            v[j] = _mm256_cvtps_epi32(_mm256_max_ps(_mm256_min_ps(y, hi), lo));
        }
        __m256i bytes = _mm256_packs_epi16(_mm256_packs_epi32(v[0], v[1]), _mm256_packs_epi32(v[2], v[3]));
        _mm256_storeu_si256((__m256i *)dst, _mm256_permutevar8x32_epi32(bytes, order));
        if (left < 32) memcpy(q + k, tail_q, left);
    }
}
#endif

#if defined(__aarch64__) && !defined(INN_PORTABLE)
#define INN_NEON_QUANT 1
#include <arm_neon.h>

/* quantize_one over a contiguous row, 16 values per step in NEON registers (aarch64: no run-time test): the
 * same quotient (a vector division), NaN to +0, the same clamp, then FCVTNS, which rounds to nearest with
 * ties to even as the loop's 1.5 * 2^23 trick does, and narrowing moves that cannot saturate (|q| <= 127).
 * The last len % 16 values by quantize_one. */
static void quantize_neon(const float *restrict x, size_t len, float scale, int8_t *restrict q) {
    const float32x4_t s = vdupq_n_f32(scale), hi = vdupq_n_f32(127.0f), lo = vdupq_n_f32(-127.0f);
    size_t k = 0;
    for (; k + 16 <= len; k += 16) {
        int32x4_t v[4];
        for (int j = 0; j < 4; j++) {
            const float32x4_t y = vdivq_f32(vld1q_f32(x + k + 4 * j), s);
            const float32x4_t z = vreinterpretq_f32_u32(vandq_u32(vreinterpretq_u32_f32(y), vceqq_f32(y, y)));
            v[j] = vcvtnq_s32_f32(vmaxq_f32(vminq_f32(z, hi), lo));
        }
        const int16x8_t a = vcombine_s16(vmovn_s32(v[0]), vmovn_s32(v[1]));
        const int16x8_t b = vcombine_s16(vmovn_s32(v[2]), vmovn_s32(v[3]));
        vst1q_s8(q + k, vcombine_s8(vmovn_s16(a), vmovn_s16(b)));
    }
    for (; k < len; k++) q[k] = quantize_one(x[k], scale);
}
#endif

/* The largest inn_magnitude of x[k * stride]. Static, for clang's target_clones (which it applies to internal
 * functions only). */
INN_AVX2_CLONE INN_VECTOR_COMPARES static int32_t row_top(const float *x, size_t len, size_t stride) {
    int32_t top = 0;
    for (size_t k = 0; k < len; k++) {
        const int32_t m = inn_magnitude(x[k * stride]);
        top = m > top ? m : top;
    }
    return top;
}

/* The scale of a row whose largest inn_magnitude is `top`. */
static float scale_of(int32_t top) {
    float amax;
    memcpy(&amax, &top, sizeof amax);
    return (amax > 1e-9f ? amax : 1e-9f) / 127.0f;
}

INN_AVX2_CLONE INN_VECTOR_COMPARES static void quantize_top(const float *x, size_t len, size_t stride, int32_t top,
                                                           int8_t *q, float *scale_out) {
    const float scale = scale_of(top);
    *scale_out = scale;
    if (stride == 1) { /* rows of OIT/OTI layouts and of the resampler: contiguous */
#ifdef INN_HAS_CLONES
        if (__builtin_cpu_supports("avx2")) {
            quantize_avx2(x, len, scale, q);
            return;
        }
#elif defined(INN_NEON_QUANT)
        quantize_neon(x, len, scale, q);
        return;
#endif
        for (size_t k = 0; k < len; k++) q[k] = quantize_one(x[k], scale);
        return;
    }
    for (size_t k = 0; k < len; k++) q[k * stride] = quantize_one(x[k * stride], scale);
}

void inn_quantize_row(const float *x, size_t len, size_t stride, int8_t *q, float *scale_out) {
    quantize_top(x, len, stride, row_top(x, len, stride), q, scale_out);
}

/* Static, for clang's target_clones, as row_top. */
INN_AVX2_CLONE INN_VECTOR_COMPARES static void quantize_lanes(const float *x, size_t len, int8_t *q, float *scales) {
    int32_t top[INN_QUANT_LANES] = {0};
    float scale[INN_QUANT_LANES];
    for (size_t k = 0; k < len; k++)
        for (int r = 0; r < INN_QUANT_LANES; r++) {
            const int32_t m = inn_magnitude(x[k * INN_QUANT_LANES + r]);
            top[r] = m > top[r] ? m : top[r];
        }
    for (int r = 0; r < INN_QUANT_LANES; r++) scales[r] = scale[r] = scale_of(top[r]);
    for (size_t k = 0; k < len; k++)
        for (int r = 0; r < INN_QUANT_LANES; r++)
            q[k * INN_QUANT_LANES + r] = quantize_one(x[k * INN_QUANT_LANES + r], scale[r]);
}

void inn_quantize_lanes(const float *x, size_t len, int8_t *q, float *scales) { quantize_lanes(x, len, q, scales); }

void inn_quantize_row_top(const float *x, size_t len, int32_t top, int8_t *q, float *scale_out) {
    quantize_top(x, len, 1, top, q, scale_out);
}

inn_status inn_quantize(const float *w, uint32_t n_out, uint32_t per_row, inn_layout layout, int8_t *q, float *scales) {
    if (!w || !q || !scales || n_out == 0 || per_row == 0) return INN_ERR_ARG;
    size_t total;
    if (!inn_mul(n_out, per_row, &total)) return INN_ERR_OVERFLOW;
    for (size_t k = 0; k < total; k++)
        if (!isfinite(w[k])) return INN_ERR_RANGE;
    for (uint32_t o = 0; o < n_out; o++) {
        /* OIT/OTI: row o is contiguous; ITO ([k][o]): column o, stride n_out */
        size_t first = layout == INN_LAYOUT_ITO ? o : (size_t)o * per_row;
        size_t stride = layout == INN_LAYOUT_ITO ? n_out : 1;
        inn_quantize_row(w + first, per_row, stride, q + first, &scales[o]);
    }
    return INN_OK;
}
