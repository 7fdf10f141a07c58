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

/* Static, for clang's target_clones (which it applies to internal functions only). */
INN_AVX2_CLONE INN_VECTOR_COMPARES static void quantize_row(const float *x, size_t len, size_t stride, int8_t *q,
                                                           float *scale_out) {
    /* max |x| over the non-NaN values, on the bits: magnitudes order as their bit patterns without the sign,
     * and NaN (bits past the infinity's) counts as 0, as a float comparison would skip it */
    int32_t top = 0;
    for (size_t k = 0; k < len; k++) {
        int32_t bits;
        memcpy(&bits, &x[k * stride], sizeof bits);
        bits &= 0x7FFFFFFF;
        bits = bits > 0x7F800000 ? 0 : bits;
        top = bits > top ? bits : top;
    }
    float amax;
    memcpy(&amax, &top, sizeof amax);
    float scale = (amax > 1e-9f ? amax : 1e-9f) / 127.0f;
    *scale_out = scale;
    if (stride == 1) { /* rows of OIT/OTI layouts and of the resampler: contiguous */
        for (size_t k = 0; k < len; k++) q[k] = quantize_one(x[k], scale);
        return;
    }
    for (size_t k = 0; k < len; k++) q[k * stride] = quantize_one(x[k * stride], scale);
}

void inn_quantize_row(const float *x, size_t len, size_t stride, int8_t *q, float *scale_out) {
    quantize_row(x, len, stride, q, scale_out);
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
