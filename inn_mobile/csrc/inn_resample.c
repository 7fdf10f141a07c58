/* Sampling layer nodes on both channel axes, streaming one output row at a time.
 *
 * W[o, i, t] = q_i * sum_a w_out[o, a] * (sum_b w_in[i, b] * nodes[idx_out[o, a], idx_in[i, b], t])
 * Inner sums (one row per node row) are cached in 4 slots: consecutive output rows share node rows,
 * so each is computed about once. Zero-weight taps are skipped (same values). Each finished output
 * row goes to a sink that writes float32, or int8 + scale (quantised per row, so int8 needs no
 * layer-sized buffer). Scratch: 5 rows of n_in_per_block * taps doubles plus one float row.
 */
#include <string.h>

#include "inn.h"
#include "inn_internal.h"

size_t inn_dense_scratch(uint32_t n_in_per_block, uint32_t taps) {
    size_t row;
    if (!inn_mul(n_in_per_block, taps, &row) || !inn_mul(row, INN_TAPS + 2, &row)) return 0;
    return row;
}

size_t inn_layout_index(inn_layout layout, size_t o, size_t i, size_t t, size_t n_out, size_t n_in, size_t taps) {
    switch (layout) {
        case INN_LAYOUT_OTI: return (o * taps + t) * n_in + i;
        case INN_LAYOUT_ITO: return (i * taps + t) * n_out + o;
        default: return (o * n_in + i) * taps + t;
    }
}

static inline double node_at(const inn_nodes *nd, size_t k) {
    return nd->f16 ? (double)inn_half_to_float(((const uint16_t *)nd->data)[k]) : (double)((const float *)nd->data)[k];
}

inn_status inn_check_axis(const inn_axis *ax, uint32_t blocks, uint32_t nodes_per_block) {
    if (!ax || !ax->idx || !ax->w || ax->n == 0 || blocks == 0 || ax->n % blocks) return INN_ERR_ARG;
    uint32_t per = ax->n / blocks;
    for (uint32_t k = 0; k < ax->n; k++) {
        int64_t lo = (int64_t)(k / per) * nodes_per_block, hi = lo + nodes_per_block;
        for (int b = 0; b < INN_TAPS; b++) {
            int32_t v = ax->idx[(size_t)k * INN_TAPS + b];
            if (v < lo || v >= hi) return INN_ERR_RANGE;
        }
    }
    return INN_OK;
}

/* Write one finished row (row_len floats = n_in * taps, ordered [i][t]) for output channel o. */
static void sink_row(const inn_sink *s, uint32_t o, const float *row, uint32_t n_in, uint32_t taps, int8_t *qrow) {
    const float *src = row;
    if (s->dtype == INN_I8) {
        inn_quantize_row(row, (size_t)n_in * taps, 1, qrow, &s->scales[o]);
    }
    if (s->layout == INN_LAYOUT_OIT) {
        size_t at = (size_t)o * n_in * taps, len = (size_t)n_in * taps;
        if (s->dtype == INN_I8) memcpy((int8_t *)s->dst + at, qrow, len);
        else memcpy((float *)s->dst + at, src, len * sizeof(float));
        return;
    }
    for (uint32_t i = 0; i < n_in; i++)
        for (uint32_t t = 0; t < taps; t++) {
            size_t at = inn_layout_index(s->layout, o, i, t, s->n_out, n_in, taps), k = (size_t)i * taps + t;
            if (s->dtype == INN_I8) ((int8_t *)s->dst)[at] = qrow[k];
            else ((float *)s->dst)[at] = src[k];
        }
}

static void node_row(const inn_nodes *nd, uint32_t m_in, uint32_t taps, uint32_t node, const inn_axis *in,
                     uint32_t first, uint32_t count, uint32_t col0, double *row) {
    size_t base = (size_t)node * m_in * taps;
    for (uint32_t i = 0; i < count; i++) {
        const int32_t *idx = in->idx + (size_t)(first + i) * INN_TAPS;
        const double *w = in->w + (size_t)(first + i) * INN_TAPS;
        double *r = row + (size_t)i * taps;
        int started = 0;
        for (int b = 0; b < INN_TAPS; b++) {
            if (w[b] == 0.0) continue;
            size_t x = base + (size_t)(idx[b] - (int32_t)col0) * taps;
            if (!started) {
                for (uint32_t t = 0; t < taps; t++) r[t] = node_at(nd, x + t) * w[b];
                started = 1;
            } else {
                for (uint32_t t = 0; t < taps; t++) r[t] += node_at(nd, x + t) * w[b];
            }
        }
        if (!started) memset(r, 0, sizeof(double) * taps);
    }
}

inn_status inn_dense_to_sink(const inn_nodes *nd, uint32_t m_out, uint32_t m_in, uint32_t taps, uint32_t blocks,
                             const inn_axis *out, const inn_axis *in, const inn_sink *sink, double *scratch,
                             size_t scratch_count) {
    if (!nd || !nd->data || !sink || !sink->dst || !scratch || taps == 0 || m_in == 0 || m_out == 0 || blocks == 0)
        return INN_ERR_ARG;
    if (m_out % blocks) return INN_ERR_ARG;
    inn_status st = inn_check_axis(out, blocks, m_out / blocks);
    if (st == INN_OK) st = inn_check_axis(in, blocks, m_in);
    if (st != INN_OK) return st;
    uint32_t n_ob = out->n / blocks, n_ib = in->n / blocks;
    size_t row_len, total;
    if (!inn_mul(n_ib, taps, &row_len) || !inn_mul(row_len, out->n, &total)) return INN_ERR_OVERFLOW;
    if (sink->count < total || (sink->dtype == INN_I8 && (!sink->scales || sink->scales_count < out->n)))
        return INN_ERR_BUFFER;
    if (scratch_count < inn_dense_scratch(n_ib, taps)) return INN_ERR_BUFFER;
    double *acc = scratch, *slots = scratch + row_len;
    float *rowf = (float *)(slots + (size_t)INN_TAPS * row_len);
    int8_t *qrow = (int8_t *)(rowf + row_len);
    int64_t key[INN_TAPS];
    for (uint32_t j = 0; j < blocks; j++) {
        for (int s = 0; s < INN_TAPS; s++) key[s] = -1;
        for (uint32_t ol = 0; ol < n_ob; ol++) {
            uint32_t o = j * n_ob + ol;
            const int32_t *oi = out->idx + (size_t)o * INN_TAPS;
            const double *ow = out->w + (size_t)o * INN_TAPS;
            int started = 0;
            for (int a = 0; a < INN_TAPS; a++) {
                if (ow[a] == 0.0) continue;
                int s = -1;
                for (int c = 0; c < INN_TAPS; c++)
                    if (key[c] == oi[a]) s = c;
                if (s < 0) { /* evict a slot this row does not need */
                    for (int c = 0; c < INN_TAPS && s < 0; c++) {
                        int needed = 0;
                        for (int e = 0; e < INN_TAPS; e++) needed |= (key[c] == oi[e] && ow[e] != 0.0);
                        if (!needed) s = c;
                    }
                    key[s] = oi[a];
                    node_row(nd, m_in, taps, (uint32_t)oi[a], in, j * n_ib, n_ib, j * m_in, slots + (size_t)s * row_len);
                }
                const double *src = slots + (size_t)s * row_len;
                if (!started) {
                    for (size_t k = 0; k < row_len; k++) acc[k] = src[k] * ow[a];
                    started = 1;
                } else {
                    for (size_t k = 0; k < row_len; k++) acc[k] += src[k] * ow[a];
                }
            }
            if (!started) memset(acc, 0, sizeof(double) * row_len);
            for (uint32_t i = 0; i < n_ib; i++) {
                double q = in->q ? in->q[j * n_ib + i] : 1.0;
                for (uint32_t t = 0; t < taps; t++) rowf[(size_t)i * taps + t] = (float)(acc[(size_t)i * taps + t] * q);
            }
            sink_row(sink, o, rowf, n_ib, taps, qrow);
        }
    }
    return INN_OK;
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
    for (uint32_t o = 0; o < out->n; o++) {
        const int32_t *oi = out->idx + (size_t)o * INN_TAPS;
        const double *ow = out->w + (size_t)o * INN_TAPS;
        for (uint32_t t = 0; t < taps; t++) {
            double v = 0.0;
            int started = 0;
            for (int a = 0; a < INN_TAPS; a++) {
                if (ow[a] == 0.0) continue;
                double term = node_at(nd, (size_t)oi[a] * taps + t) * ow[a];
                v = started ? v + term : term;
                started = 1;
            }
            rowf[t] = (float)v;
        }
        sink_row(sink, o, rowf, 1, taps, qrow);
    }
    return INN_OK;
}

inn_status inn_resample_dense(const float *nodes, uint32_t m_out, uint32_t m_in, uint32_t taps, uint32_t blocks,
                              const inn_axis *out, const inn_axis *in, inn_layout layout, float *dst,
                              size_t dst_count, double *scratch, size_t scratch_count) {
    if (!out) return INN_ERR_ARG;
    inn_nodes nd = {nodes, 0};
    inn_sink sink = {layout, INN_F32, dst, dst_count, NULL, 0, out->n};
    return inn_dense_to_sink(&nd, m_out, m_in, taps, blocks, out, in, &sink, scratch, scratch_count);
}

inn_status inn_resample_rows(const float *nodes, uint32_t m, uint32_t taps, const inn_axis *out, inn_layout layout,
                             float *dst, size_t dst_count) {
    if (!out || taps > INN_MAX_DIM) return INN_ERR_ARG;
    float row[256];
    if (taps > 256) return INN_ERR_ARG;
    inn_nodes nd = {nodes, 0};
    inn_sink sink = {layout, INN_F32, dst, dst_count, NULL, 0, out->n};
    return inn_rows_to_sink(&nd, m, taps, out, &sink, row, NULL);
}
