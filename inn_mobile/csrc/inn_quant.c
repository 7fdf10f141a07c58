/* Symmetric int8 per-output-channel quantisation, applied after discretisation.
 * scale = max(max|w|, 1e-9f) / 127 (float32), q = clamp(rint(w / scale), -127, 127) with
 * round-half-to-even (IEEE default; what torch.round and XNNPACK's reference quantiser use). The 1e-9
 * floor is ai-edge-quantizer's: a dead (all-zero or tiny) channel gets the scale the LiteRT quantizer
 * writes, so the converter's own int8 graph and the core agree on it. */
#include <math.h>

#include "inn.h"
#include "inn_internal.h"

void inn_quantize_row(const float *x, size_t len, size_t stride, int8_t *q, float *scale_out) {
    float amax = 0.0f;
    for (size_t k = 0; k < len; k++) {
        float a = fabsf(x[k * stride]);
        if (a > amax) amax = a;
    }
    float scale = (amax > 1e-9f ? amax : 1e-9f) / 127.0f;
    *scale_out = scale;
    for (size_t k = 0; k < len; k++) {
        float v = nearbyintf(x[k * stride] / scale);
        /* NaN (inf / inf from overflowing sums: bundles hold finite nodes only) becomes 0, never a
         * float-to-int conversion of NaN (undefined behaviour) */
        q[k * stride] = (int8_t)(v > 127.0f ? 127 : (v < -127.0f ? -127 : (v == v ? v : 0.0f)));
    }
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
