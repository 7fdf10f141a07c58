/* Runtime graphs with holes (FORMAT.md "Graph records"): validate a bucket's record once, then
 * rebuild its files by copying the stored bytes and writing every hole straight from the nodes. */
#include <math.h>
#include <string.h>

#include "inn.h"
#include "inn_internal.h"

#define GRAPH_ROW 40
#define IMAGE_HEAD 24
#define SPAN_SIZE 16
#define HOLE_SIZE 32

enum { T_WEIGHT = 1, T_BIAS = 2, T_SCALE = 3, T_BIAS_I32 = 4, T_BIAS_SCALE = 5 };
enum { D_F32 = 0, D_I8 = 1, D_I32 = 2 };

typedef struct {
    const uint8_t *name, *spans, *holes, *data;
    uint32_t name_len, span_count, hole_count, packed; /* packed: bytes of the LZ stream, 0 if raw */
    uint64_t size, data_len;                           /* data_len: the spans' bytes, unpacked */
} image;

typedef struct {
    uint64_t offset, size;
    uint32_t layer, tensor, layout, dtype;
    float param;
} hole;

static hole hole_at(const image *im, uint32_t k) {
    const uint8_t *h = im->holes + (size_t)k * HOLE_SIZE;
    hole r = {rd64(h), rd64(h + 8), rd32(h + 16), h[20], h[21], h[22], 0.0f};
    uint32_t bits = rd32(h + 24);
    memcpy(&r.param, &bits, sizeof r.param);
    return r;
}

/* Parse the image starting at *pos (record bytes [0, size)); advances *pos past it. */
static inn_status parse_image(const uint8_t *rec, size_t size, size_t *pos, image *im) {
    size_t p = *pos, tables;
    uint64_t data_len = 0;
    if (size - p < IMAGE_HEAD) return INN_ERR_TRUNCATED;
    im->name_len = rd32(rec + p);
    im->span_count = rd32(rec + p + 4);
    im->hole_count = rd32(rec + p + 8);
    im->packed = rd32(rec + p + 12);
    im->size = rd64(rec + p + 16);
    p += IMAGE_HEAD;
    if (im->name_len > INN_MAX_DIM || size - p < align8(im->name_len)) return INN_ERR_TRUNCATED;
    im->name = rec + p;
    p += align8(im->name_len);
    if (im->span_count > INN_MAX_DIM || im->hole_count > INN_MAX_DIM) return INN_ERR_RANGE;
    tables = (size_t)im->span_count * SPAN_SIZE + (size_t)im->hole_count * HOLE_SIZE;
    if (size - p < tables) return INN_ERR_TRUNCATED;
    im->spans = rec + p;
    im->holes = im->spans + (size_t)im->span_count * SPAN_SIZE;
    p += tables;
    for (uint32_t k = 0; k < im->span_count; k++) { /* spans lie inside the image (check_ranges) */
        uint64_t len = rd64(im->spans + (size_t)k * SPAN_SIZE + 8);
        if (len > im->size || data_len > im->size - len) return INN_ERR_FORMAT;
        data_len += len;
    }
    uint64_t stored = im->packed ? im->packed : data_len;
    if (stored > size - p || align8((size_t)stored) > size - p) return INN_ERR_TRUNCATED;
    im->data = rec + p;
    im->data_len = data_len;
    *pos = p + align8(stored);
    return INN_OK;
}

/* Spans and holes, each sorted, inside the image and not overlapping one another. */
static inn_status check_ranges(const image *im) {
    uint32_t s = 0, h = 0;
    uint64_t end = 0;
    while (s < im->span_count || h < im->hole_count) {
        uint64_t so = s < im->span_count ? rd64(im->spans + (size_t)s * SPAN_SIZE) : UINT64_MAX;
        uint64_t ho = h < im->hole_count ? rd64(im->holes + (size_t)h * HOLE_SIZE) : UINT64_MAX;
        const uint8_t *r = so <= ho ? im->spans + (size_t)s++ * SPAN_SIZE : im->holes + (size_t)h++ * HOLE_SIZE;
        uint64_t off = rd64(r), len = rd64(r + 8);
        if (off < end || off > im->size || len > im->size - off) return INN_ERR_FORMAT;
        end = off + len;
    }
    return INN_OK;
}

static int scale_family(uint32_t t) { return t == T_SCALE || t == T_BIAS_I32 || t == T_BIAS_SCALE; }

/* Does some image of the graph hold a weight hole of `layer` (int8 when `want_i8`)? */
static int has_weight_hole(const inn_graph *g, uint32_t layer, int want_i8) {
    size_t pos = 8;
    for (uint32_t i = 0; i < g->image_count; i++) {
        image im;
        parse_image(g->record, g->size, &pos, &im);
        for (uint32_t k = 0; k < im.hole_count; k++) {
            hole h = hole_at(&im, k);
            if (h.layer == layer && h.tensor == T_WEIGHT && (!want_i8 || h.dtype == D_I8)) return 1;
        }
    }
    return 0;
}

/* A hole's codes, alignment and size must match the layer it names at the graph's bucket. */
static inn_status check_hole(const inn_bundle *b, const inn_graph *g, const hole *h) {
    inn_layer_info li;
    size_t need, elem;
    if (h->layer >= b->layer_count) return INN_ERR_RANGE;
    inn_status st = inn_layer_info_get(b, g->bucket, h->layer, &li);
    if (st) return st;
    if (h->tensor < T_WEIGHT || h->tensor > T_BIAS_SCALE || h->layout > INN_LAYOUT_ITO || h->dtype > D_I32)
        return INN_ERR_FORMAT;
    if (h->tensor == T_WEIGHT) {
        if (h->dtype == D_I32 || (li.kind == INN_KIND_AFFINE && h->dtype != D_F32)) return INN_ERR_FORMAT;
        elem = h->dtype == D_I8 ? 1 : 4;
        if (!inn_mul(li.weight_count, elem, &need)) return INN_ERR_OVERFLOW;
    } else {
        if (h->dtype != (h->tensor == T_BIAS_I32 ? D_I32 : D_F32)) return INN_ERR_FORMAT;
        if (scale_family(h->tensor) && li.kind == INN_KIND_AFFINE) return INN_ERR_FORMAT;
        if ((h->tensor == T_BIAS_I32 || h->tensor == T_BIAS_SCALE) && !(isfinite(h->param) && h->param > 0.0f))
            return INN_ERR_FORMAT;
        elem = 4;
        need = (size_t)li.n_out * 4;
    }
    if (h->size != need || (elem == 4 && h->offset % 4)) return INN_ERR_FORMAT;
    if (h->tensor != T_WEIGHT && !has_weight_hole(g, h->layer, scale_family(h->tensor))) return INN_ERR_FORMAT;
    return INN_OK;
}

static inn_status check_record(const inn_bundle *b, inn_graph *g) {
    if (g->size < 8 || memcmp(g->record, "IGR1", 4) != 0) return INN_ERR_FORMAT;
    g->image_count = rd32(g->record + 4);
    if (g->image_count > INN_MAX_DIM) return INN_ERR_RANGE;
    size_t pos = 8;
    for (uint32_t i = 0; i < g->image_count; i++) {
        image im;
        inn_status st = parse_image(g->record, g->size, &pos, &im);
        if (!st) st = check_ranges(&im);
        if (!st && im.packed) st = inn_lz_decode(im.data, im.packed, NULL, (size_t)im.data_len);
        for (uint32_t k = 0; !st && k < im.hole_count; k++) {
            hole h = hole_at(&im, k);
            st = check_hole(b, g, &h);
        }
        if (st) return st;
    }
    return INN_OK;
}

static inn_status graph_row(const inn_bundle *b, uint32_t index, const uint8_t **row, const uint8_t **blob,
                            size_t *blob_size) {
    const uint8_t *gi;
    size_t gi_size;
    inn_status st = inn_bundle_section(b, "GIDX", &gi, &gi_size);
    if (!st) st = inn_bundle_section(b, "BLOB", blob, blob_size);
    if (st) return st;
    if (gi_size < 8) return INN_ERR_TRUNCATED;
    uint32_t count = rd32(gi);
    if ((size_t)count > (gi_size - 8) / GRAPH_ROW) return INN_ERR_TRUNCATED;
    if (index >= count) return INN_ERR_MISSING;
    *row = gi + 8 + (size_t)index * GRAPH_ROW;
    return INN_OK;
}

inn_status inn_graph_list(const inn_bundle *b, uint32_t index, uint32_t *bucket, char runtime[INN_RUNTIME_NAME + 1]) {
    if (!b || !b->data || !bucket || !runtime) return INN_ERR_ARG;
    const uint8_t *row, *blob;
    size_t blob_size;
    inn_status st = graph_row(b, index, &row, &blob, &blob_size);
    if (st) return st;
    *bucket = rd32(row);
    memcpy(runtime, row + 8, INN_RUNTIME_NAME);
    runtime[INN_RUNTIME_NAME] = '\0';
    return INN_OK;
}

inn_status inn_graph_find(const inn_bundle *b, uint32_t bucket, const char *runtime, inn_graph *g) {
    if (!b || !b->data || !runtime || !g) return INN_ERR_ARG;
    size_t len = strlen(runtime);
    if (len == 0 || len > INN_RUNTIME_NAME) return INN_ERR_ARG;
    if (bucket >= b->bucket_count) return INN_ERR_MISSING;
    for (uint32_t i = 0;; i++) {
        const uint8_t *row, *blob;
        size_t blob_size;
        inn_status st = graph_row(b, i, &row, &blob, &blob_size);
        if (st) return st; /* INN_ERR_MISSING once the rows run out */
        const char *name = (const char *)row + 8;
        if (rd32(row) != bucket || memcmp(name, runtime, len) != 0 || (len < INN_RUNTIME_NAME && name[len] != '\0'))
            continue;
        uint64_t off = rd64(row + 24), size = rd64(row + 32);
        if (off > blob_size || size > blob_size - off) return INN_ERR_TRUNCATED;
        g->record = blob + off;
        g->size = (size_t)size;
        g->bucket = bucket;
        return check_record(b, g);
    }
}

inn_status inn_graph_image(const inn_graph *g, uint32_t index, inn_image_info *info) {
    if (!g || !g->record || !info) return INN_ERR_ARG;
    if (index >= g->image_count) return INN_ERR_MISSING;
    size_t pos = 8;
    image im;
    for (uint32_t i = 0; i <= index; i++) {
        inn_status st = parse_image(g->record, g->size, &pos, &im);
        if (st) return st;
    }
    info->name = (const char *)im.name;
    info->name_len = im.name_len;
    info->span_count = im.span_count;
    info->hole_count = im.hole_count;
    info->size = im.size;
    return INN_OK;
}

/* Scratch: scales and bias vectors (largest n_out), then inn_materialize's scratch. */
static inn_status fill_scratch(const inn_bundle *b, uint32_t bucket, size_t *vec_floats, size_t *bytes) {
    size_t mat;
    uint32_t n_out = 0;
    inn_status st = inn_bundle_scratch_size(b, bucket, &mat);
    for (uint32_t l = 0; !st && l < b->layer_count; l++) {
        inn_layer_info li;
        st = inn_layer_info_get(b, bucket, l, &li);
        if (!st && li.n_out > n_out) n_out = li.n_out;
    }
    if (st) return st;
    *vec_floats = align8(n_out);
    *bytes = *vec_floats * 2 * sizeof(float) + mat;
    return INN_OK;
}

inn_status inn_graph_scratch_size(const inn_bundle *b, const inn_graph *g, size_t *bytes) {
    if (!b || !b->data || !g || !g->record || !bytes) return INN_ERR_ARG;
    size_t vec;
    return fill_scratch(b, g->bucket, &vec, bytes);
}

/* Stored bytes in place, zeros in the gaps; holes are left for the layer pass. Packed spans are first
 * unpacked into the end of the image, then moved down in order: span k lands at or below where it was
 * unpacked and above nothing still waiting to move, so neither the moves nor the gap zeroing touch
 * bytes not yet moved (the record was validated by inn_graph_find, so unpacking cannot fail). */
static void copy_spans(const image *im, uint8_t *out) {
    uint32_t s = 0, h = 0;
    uint64_t end = 0, data = 0;
    const uint8_t *src = im->data;
    if (im->packed) {
        uint8_t *tail = out + (im->size - im->data_len);
        inn_lz_decode(im->data, im->packed, tail, (size_t)im->data_len);
        src = tail;
    }
    while (s < im->span_count || h < im->hole_count) {
        uint64_t so = s < im->span_count ? rd64(im->spans + (size_t)s * SPAN_SIZE) : UINT64_MAX;
        uint64_t ho = h < im->hole_count ? rd64(im->holes + (size_t)h * HOLE_SIZE) : UINT64_MAX;
        int is_span = so <= ho;
        const uint8_t *r = is_span ? im->spans + (size_t)s++ * SPAN_SIZE : im->holes + (size_t)h++ * HOLE_SIZE;
        uint64_t off = rd64(r), len = rd64(r + 8);
        memset(out + end, 0, (size_t)(off - end));
        if (is_span) {
            memmove(out + off, src + data, (size_t)len);
            data += len;
        }
        end = off + len;
    }
    memset(out + end, 0, (size_t)(im->size - end));
}

static void put_f32(uint8_t *dst, float v) { memcpy(dst, &v, sizeof v); }

/* The int32 bias of a quantised layer: round_half_even(bias / (param * scale)) in float32, clamped. */
static int32_t bias_i32(float bias, float bias_scale) {
    double r = (double)nearbyintf(bias / bias_scale);
    if (r != r) return 0; /* NaN: 0/0 from an underflowed scale */
    if (r >= 2147483647.0) return INT32_MAX;
    if (r <= -2147483648.0) return INT32_MIN;
    return (int32_t)r;
}

static void write_vector(const hole *h, uint8_t *dst, const float *scales, const float *bias, uint32_t n) {
    for (uint32_t c = 0; c < n; c++) {
        float bs = h->param * scales[c];
        switch (h->tensor) {
            case T_BIAS: put_f32(dst + 4 * (size_t)c, bias[c]); break;
            case T_SCALE: put_f32(dst + 4 * (size_t)c, scales[c]); break;
            case T_BIAS_SCALE: put_f32(dst + 4 * (size_t)c, bs); break;
            default: {
                int32_t q = bias_i32(bias[c], bs);
                memcpy(dst + 4 * (size_t)c, &q, sizeof q);
            }
        }
    }
}

/* All holes of one layer: weights first (each computes the scales and bias), then the vectors. */
static inn_status fill_layer(const inn_bundle *b, const inn_graph *g, uint32_t layer, void *const *outs,
                             float *scales, float *bias, void *mat, size_t mat_bytes) {
    inn_layer_info li;
    inn_status st = inn_layer_info_get(b, g->bucket, layer, &li);
    if (st) return st;
    for (int pass = 0; pass < 2; pass++) {
        size_t pos = 8;
        for (uint32_t i = 0; i < g->image_count; i++) {
            image im;
            if ((st = parse_image(g->record, g->size, &pos, &im))) return st;
            uint8_t *out = (uint8_t *)outs[i];
            for (uint32_t k = 0; k < im.hole_count; k++) {
                hole h = hole_at(&im, k);
                if (h.layer != layer || (h.tensor == T_WEIGHT) != (pass == 0)) continue;
                if (pass == 1) {
                    write_vector(&h, out + h.offset, scales, bias, li.n_out);
                    continue;
                }
                memset(bias, 0, li.n_out * sizeof(float)); /* layers without a bias get zeros */
                st = inn_materialize(b, g->bucket, layer, (inn_layout)h.layout, h.dtype == D_I8 ? INN_I8 : INN_F32,
                                     out + h.offset, (size_t)h.size, scales, li.n_out, bias, li.n_out, mat, mat_bytes);
                if (st) return st;
            }
        }
    }
    return INN_OK;
}

inn_status inn_graph_fill(const inn_bundle *b, const inn_graph *g, void *const *outs, const size_t *out_sizes,
                          void *scratch, size_t scratch_bytes) {
    if (!b || !b->data || !g || !g->record || !outs || !out_sizes || !scratch) return INN_ERR_ARG;
    if ((uintptr_t)scratch % 8) return INN_ERR_ARG;
    size_t vec, need, pos = 8;
    inn_status st = fill_scratch(b, g->bucket, &vec, &need);
    if (st) return st;
    if (scratch_bytes < need) return INN_ERR_BUFFER;
    for (uint32_t i = 0; i < g->image_count; i++) {
        image im;
        if ((st = parse_image(g->record, g->size, &pos, &im))) return st;
        if (!outs[i] || (uintptr_t)outs[i] % 4) return INN_ERR_ARG;
        if (out_sizes[i] < im.size) return INN_ERR_BUFFER;
    }
    pos = 8;
    for (uint32_t i = 0; i < g->image_count; i++) {
        image im;
        parse_image(g->record, g->size, &pos, &im);
        copy_spans(&im, (uint8_t *)outs[i]);
    }
    float *scales = (float *)scratch, *bias = scales + vec;
    uint8_t *mat = (uint8_t *)(bias + vec);
    for (uint32_t l = 0; l < b->layer_count; l++) {
        st = fill_layer(b, g, l, outs, scales, bias, mat, scratch_bytes - (size_t)(mat - (uint8_t *)scratch));
        if (st) return st;
    }
    return INN_OK;
}
