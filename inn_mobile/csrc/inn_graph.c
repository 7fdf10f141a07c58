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

/* Layers whose holes are cross-checked at once (a bitmap on the stack; see check_weight_holes). */
#define LAYER_CHUNK 4096u

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

/* Parse the image starting at *pos (record bytes [0, size), *pos <= size); advances *pos past it. Writes
 * *out and *pos only on success: a header that fails half-way is never seen by a caller. */
static inn_status parse_image(const uint8_t *rec, size_t size, size_t *pos, image *out) {
    size_t p = *pos, tables;
    uint64_t data_len = 0;
    image parsed, *im = &parsed;
    if (p > size || size - p < IMAGE_HEAD) return INN_ERR_TRUNCATED;
    im->name_len = rd32(rec + p);
    im->span_count = rd32(rec + p + 4);
    im->hole_count = rd32(rec + p + 8);
    im->packed = rd32(rec + p + 12);
    im->size = rd64(rec + p + 16);
    p += IMAGE_HEAD;
    if ((uint64_t)(size_t)im->size != im->size) return INN_ERR_OVERFLOW; /* must fit this CPU's memory */
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
    *pos = p + align8((size_t)stored);
    *out = parsed;
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

static int scale_family(uint32_t t) { return t == INN_HOLE_SCALE || t == INN_HOLE_BIAS_I32 || t == INN_HOLE_BIAS_SCALE; }

/* Every vector hole (bias, scale, ...) names a layer that has a weight hole in the record, an int8 one for
 * the scale family (their values come from it). LAYER_CHUNK layers at a time, flags in a stack bitmap:
 * one pass over the holes per chunk that vector holes name (a single pass below 4096 layers). Every
 * image has been parsed successfully before (check_record). */
static inn_status check_weight_holes(const inn_graph *g, uint32_t max_layer) {
    uint8_t flags[LAYER_CHUNK]; /* bit 0: weight hole, 1: int8 weight hole, 2: needs 0, 3: needs 1 */
    for (uint64_t base = 0; base <= max_layer; base += LAYER_CHUNK) {
        memset(flags, 0, sizeof flags);
        size_t pos = 8;
        for (uint32_t i = 0; i < g->image_count; i++) {
            image im;
            inn_status st = parse_image(g->record, g->size, &pos, &im);
            if (st) return st;
            for (uint32_t k = 0; k < im.hole_count; k++) {
                hole h = hole_at(&im, k);
                if (h.layer < base || h.layer - base >= LAYER_CHUNK) continue;
                uint8_t *f = &flags[h.layer - base];
                if (h.tensor == INN_HOLE_WEIGHT) *f |= (uint8_t)(1u | (h.dtype == INN_HOLE_I8 ? 2u : 0u));
                else *f |= scale_family(h.tensor) ? 8u : 4u;
            }
        }
        for (uint32_t l = 0; l < LAYER_CHUNK; l++)
            if (((flags[l] & 4u) && !(flags[l] & 1u)) || ((flags[l] & 8u) && !(flags[l] & 2u))) return INN_ERR_FORMAT;
    }
    return INN_OK;
}

/* A hole's codes, alignment and size must match the layer it names at the graph's bucket. */
static inn_status check_hole(const inn_bundle *b, const inn_graph *g, const hole *h) {
    inn_layer_info li;
    size_t need, elem;
    if (h->layer >= b->layer_count) return INN_ERR_RANGE;
    inn_status st = inn_layer_info_get(b, g->bucket, h->layer, &li);
    if (st) return st;
    if (h->tensor < INN_HOLE_WEIGHT || h->tensor > INN_HOLE_BIAS_SCALE || h->layout > INN_LAYOUT_ITO || h->dtype > INN_HOLE_I32)
        return INN_ERR_FORMAT;
    if (h->tensor == INN_HOLE_WEIGHT) {
        if (h->dtype == INN_HOLE_I32 || (li.kind == INN_KIND_AFFINE && h->dtype != INN_HOLE_F32)) return INN_ERR_FORMAT;
        elem = h->dtype == INN_HOLE_I8 ? 1 : 4;
        if (!inn_mul(li.weight_count, elem, &need)) return INN_ERR_OVERFLOW;
    } else {
        if (h->dtype != (h->tensor == INN_HOLE_BIAS_I32 ? INN_HOLE_I32 : INN_HOLE_F32)) return INN_ERR_FORMAT;
        if (scale_family(h->tensor) && li.kind == INN_KIND_AFFINE) return INN_ERR_FORMAT;
        if ((h->tensor == INN_HOLE_BIAS_I32 || h->tensor == INN_HOLE_BIAS_SCALE) && !(isfinite(h->param) && h->param > 0.0f))
            return INN_ERR_FORMAT;
        elem = 4;
        need = (size_t)li.n_out * 4;
    }
    if (h->size != need || (elem == 4 && h->offset % 4)) return INN_ERR_FORMAT;
    return INN_OK;
}

/* Bytes of every tensor a hole can name at the bucket: each layer's float32 weight and four vectors. */
static inn_status bucket_tensor_bytes(const inn_bundle *b, uint32_t bucket, uint64_t *bytes) {
    *bytes = 0;
    for (uint32_t l = 0; l < b->layer_count; l++) {
        inn_layer_info li;
        inn_status st = inn_layer_info_get(b, bucket, l, &li);
        if (st) return st;
        uint64_t layer = (uint64_t)li.weight_count * 4u + (uint64_t)li.n_out * 16u; /* both < 2^62 */
        if (layer > UINT64_MAX - *bytes) return INN_ERR_OVERFLOW;
        *bytes += layer;
    }
    return INN_OK;
}

static int add64(uint64_t *acc, uint64_t v) {
    if (v > UINT64_MAX - *acc) return 0;
    *acc += v;
    return 1;
}

static inn_status check_record(const inn_bundle *b, inn_graph *g) {
    if (g->size < 8 || memcmp(g->record, "IGR1", 4) != 0) return INN_ERR_FORMAT;
    g->image_count = rd32(g->record + 4);
    if (g->image_count > INN_MAX_DIM) return INN_ERR_RANGE;
    /* every image header parses before anything reads one (each is at least 24 bytes of the record) */
    size_t pos = 8;
    for (uint32_t i = 0; i < g->image_count; i++) {
        image im;
        inn_status st = parse_image(g->record, g->size, &pos, &im);
        if (st) return st;
    }
    uint64_t stored = 0, holes = 0, gaps = 0, model;
    uint32_t max_layer = 0;
    int vectors = 0;
    inn_status st = bucket_tensor_bytes(b, g->bucket, &model);
    if (st) return st;
    pos = 8;
    for (uint32_t i = 0; i < g->image_count; i++) {
        image im;
        uint64_t image_holes = 0;
        if ((st = parse_image(g->record, g->size, &pos, &im))) return st;
        if ((st = check_ranges(&im))) return st;
        for (uint32_t k = 0; k < im.hole_count; k++) {
            hole h = hole_at(&im, k);
            if ((st = check_hole(b, g, &h))) return st;
            image_holes += h.size; /* disjoint ranges inside the image: no overflow */
            if (h.tensor != INN_HOLE_WEIGHT) {
                vectors = 1;
                if (h.layer > max_layer) max_layer = h.layer;
            }
        }
        /* spans and holes are disjoint inside the image, so the rest (zeros) is what is left */
        if (!add64(&stored, im.data_len) || !add64(&holes, image_holes) ||
            !add64(&gaps, im.size - im.data_len - image_holes))
            return INN_ERR_OVERFLOW;
    }
    /* reader limits: holes repeat the bucket's tensors at most INN_HOLE_REUSE times, zeros are bounded by
     * the bytes stored and written (checked before the LZ streams are decoded: no unbounded work) */
    if (model > UINT64_MAX / INN_HOLE_REUSE || holes > model * INN_HOLE_REUSE) return INN_ERR_RANGE;
    if (stored + holes > (UINT64_MAX - INN_GAP_FLOOR) / INN_GAP_RATIO || gaps > (stored + holes) * INN_GAP_RATIO + INN_GAP_FLOOR)
        return INN_ERR_RANGE;
    pos = 8;
    for (uint32_t i = 0; i < g->image_count; i++) {
        image im;
        if ((st = parse_image(g->record, g->size, &pos, &im))) return st;
        if (im.packed && (st = inn_lz_decode(im.data, im.packed, NULL, (size_t)im.data_len))) return st;
    }
    return vectors ? check_weight_holes(g, max_layer) : INN_OK;
}

/* The GIDX rows (count of them) and the BLOB they point into. */
static inn_status graph_table(const inn_bundle *b, const uint8_t **rows, uint32_t *count, const uint8_t **blob,
                              size_t *blob_size) {
    const uint8_t *gi;
    size_t gi_size;
    inn_status st = inn_bundle_section(b, "GIDX", &gi, &gi_size);
    if (!st) st = inn_bundle_section(b, "BLOB", blob, blob_size);
    if (st) return st;
    if (gi_size < 8) return INN_ERR_TRUNCATED;
    *count = rd32(gi);
    if ((size_t)*count > (gi_size - 8) / GRAPH_ROW) return INN_ERR_TRUNCATED;
    *rows = gi + 8;
    return INN_OK;
}

/* A GIDX row (FORMAT.md "Sections"), decoded in this one place. */
typedef struct {
    uint32_t bucket;
    const char *runtime; /* INN_RUNTIME_NAME bytes, NUL-padded */
    uint64_t offset, size; /* of the record in BLOB */
} graph_row_t;

static inn_status graph_row(const inn_bundle *b, uint32_t index, graph_row_t *row, const uint8_t **blob,
                            size_t *blob_size) {
    const uint8_t *rows;
    uint32_t count;
    inn_status st = graph_table(b, &rows, &count, blob, blob_size);
    if (st) return st;
    if (index >= count) return INN_ERR_MISSING;
    const uint8_t *r = rows + (size_t)index * GRAPH_ROW;
    row->bucket = rd32(r);
    row->runtime = (const char *)r + 8;
    row->offset = rd64(r + 24);
    row->size = rd64(r + 32);
    return INN_OK;
}

inn_status inn_graph_count(const inn_bundle *b, uint32_t *count) {
    if (!b || !b->data || !count) return INN_ERR_ARG;
    const uint8_t *rows, *blob;
    size_t blob_size;
    inn_status st = graph_table(b, &rows, count, &blob, &blob_size);
    if (st == INN_ERR_MISSING) { /* no GIDX or no BLOB: inn_graph_list finds nothing either */
        *count = 0;
        return INN_OK;
    }
    return st;
}

inn_status inn_graph_list(const inn_bundle *b, uint32_t index, uint32_t *bucket, char runtime[INN_RUNTIME_NAME + 1]) {
    if (!b || !b->data || !bucket || !runtime) return INN_ERR_ARG;
    graph_row_t row;
    const uint8_t *blob;
    size_t blob_size;
    inn_status st = graph_row(b, index, &row, &blob, &blob_size);
    if (st) return st;
    *bucket = row.bucket;
    memcpy(runtime, row.runtime, INN_RUNTIME_NAME);
    runtime[INN_RUNTIME_NAME] = '\0';
    return INN_OK;
}

inn_status inn_graph_find(const inn_bundle *b, uint32_t bucket, const char *runtime, inn_graph *g) {
    if (!b || !b->data || !runtime || !g) return INN_ERR_ARG;
    size_t len = strlen(runtime);
    if (len == 0 || len > INN_RUNTIME_NAME) return INN_ERR_ARG;
    if (bucket >= b->bucket_count) return INN_ERR_MISSING;
    for (uint32_t i = 0;; i++) {
        graph_row_t row;
        const uint8_t *blob;
        size_t blob_size;
        inn_status st = graph_row(b, i, &row, &blob, &blob_size);
        if (st) return st; /* INN_ERR_MISSING once the rows run out */
        if (row.bucket != bucket || memcmp(row.runtime, runtime, len) != 0 ||
            (len < INN_RUNTIME_NAME && row.runtime[len] != '\0'))
            continue;
        if (row.offset > blob_size || row.size > blob_size - row.offset) return INN_ERR_TRUNCATED;
        g->record = blob + row.offset;
        g->size = (size_t)row.size;
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
    *vec_floats = align8(n_out); /* n_out <= INN_MAX_DIM: the vectors' bytes cannot overflow */
    if (!inn_add(*vec_floats * 2 * sizeof(float), mat, bytes)) return INN_ERR_OVERFLOW;
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
            case INN_HOLE_BIAS: put_f32(dst + 4 * (size_t)c, bias[c]); break;
            case INN_HOLE_SCALE: put_f32(dst + 4 * (size_t)c, scales[c]); break;
            case INN_HOLE_BIAS_SCALE: put_f32(dst + 4 * (size_t)c, bs); break;
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
                if (h.layer != layer || (h.tensor == INN_HOLE_WEIGHT) != (pass == 0)) continue;
                if (pass == 1) {
                    write_vector(&h, out + h.offset, scales, bias, li.n_out);
                    continue;
                }
                memset(bias, 0, li.n_out * sizeof(float)); /* layers without a bias get zeros */
                st = inn_materialize_any(b, g->bucket, layer, (inn_layout)h.layout, h.dtype == INN_HOLE_I8 ? INN_I8 : INN_F32,
                                     out + h.offset, (size_t)h.size, scales, li.n_out * sizeof(float), bias,
                                     li.n_out * sizeof(float), mat, mat_bytes);
                if (st) return st;
            }
        }
    }
    return INN_OK;
}

/* Checks the caller's buffers against every image (before anything is written). */
static inn_status check_outs(const inn_graph *g, void *const *outs, const size_t *out_sizes) {
    size_t pos = 8;
    for (uint32_t i = 0; i < g->image_count; i++) {
        image im;
        inn_status st = parse_image(g->record, g->size, &pos, &im);
        if (st) return st;
        if (!outs[i] || (uintptr_t)outs[i] % 4) return INN_ERR_ARG;
        if (out_sizes[i] < im.size) return INN_ERR_BUFFER;
    }
    return INN_OK;
}

inn_status inn_graph_fill_spans(const inn_bundle *b, const inn_graph *g, void *const *outs, const size_t *out_sizes) {
    if (!b || !b->data || !g || !g->record || !outs || !out_sizes) return INN_ERR_ARG;
    inn_status st = check_outs(g, outs, out_sizes);
    if (st) return st;
    size_t pos = 8;
    for (uint32_t i = 0; i < g->image_count; i++) {
        image im;
        if ((st = parse_image(g->record, g->size, &pos, &im))) return st;
        copy_spans(&im, (uint8_t *)outs[i]);
    }
    return INN_OK;
}

static inn_status fill_part(const inn_bundle *b, const inn_graph *g, void *const *outs, const size_t *out_sizes,
                            uint32_t part, uint32_t parts, void *scratch, size_t scratch_bytes);

/* Part p of `parts` takes the layers whose weights' midpoint, in the running total of weight elements over
 * the layers in order, falls in its p-th equal share: contiguous runs of about equal work, computed the
 * same way by every part without any shared state (a layer larger than a share leaves a part short). */
static inn_status part_layers(const inn_bundle *b, uint32_t bucket, uint32_t part, uint32_t parts, uint32_t *first,
                              uint32_t *end) {
    double total = 0.0, before = 0.0;
    for (uint32_t l = 0; l < b->layer_count; l++) {
        inn_layer_info li;
        inn_status st = inn_layer_info_get(b, bucket, l, &li);
        if (st) return st;
        total += (double)li.weight_count;
    }
    *first = *end = 0;
    for (uint32_t l = 0; l < b->layer_count; l++) {
        inn_layer_info li;
        inn_status st = inn_layer_info_get(b, bucket, l, &li);
        if (st) return st;
        double mid = before + 0.5 * (double)li.weight_count;
        before += (double)li.weight_count;
        uint32_t owner = total > 0.0 ? (uint32_t)(mid / total * (double)parts) : 0;
        if (owner >= parts) owner = parts - 1;
        if (owner != part) continue;
        if (*end == 0) *first = l;
        *end = l + 1;
    }
    return INN_OK;
}

inn_status inn_graph_fill_part(const inn_bundle *b, const inn_graph *g, void *const *outs, const size_t *out_sizes,
                               uint32_t part, uint32_t parts, void *scratch, size_t scratch_bytes) {
    if (b && b->data && b->nodes_pending) return INN_ERR_UNVERIFIED;
    return fill_part(b, g, outs, out_sizes, part, parts, scratch, scratch_bytes);
}

inn_status inn_graph_fill_part_verify(const inn_bundle *b, const inn_graph *g, void *const *outs,
                                      const size_t *out_sizes, uint32_t part, uint32_t parts, void *scratch,
                                      size_t scratch_bytes, uint32_t *node_state) {
    inn_status st = inn_bundle_check_nodes(b, part, parts, node_state);
    return st ? st : fill_part(b, g, outs, out_sizes, part, parts, scratch, scratch_bytes);
}

static inn_status fill_part(const inn_bundle *b, const inn_graph *g, void *const *outs, const size_t *out_sizes,
                            uint32_t part, uint32_t parts, void *scratch, size_t scratch_bytes) {
    if (!b || !b->data || !g || !g->record || !outs || !out_sizes || !scratch || parts == 0 || part >= parts)
        return INN_ERR_ARG;
    if ((uintptr_t)scratch % 8) return INN_ERR_ARG;
    size_t vec, need;
    uint32_t first, end;
    inn_status st = fill_scratch(b, g->bucket, &vec, &need);
    if (!st) st = check_outs(g, outs, out_sizes);
    if (!st) st = part_layers(b, g->bucket, part, parts, &first, &end);
    if (st) return st;
    if (scratch_bytes < need) return INN_ERR_BUFFER;
    float *scales = (float *)scratch, *bias = scales + vec;
    uint8_t *mat = (uint8_t *)(bias + vec);
    for (uint32_t l = first; l < end; l++) {
        st = fill_layer(b, g, l, outs, scales, bias, mat, scratch_bytes - (size_t)(mat - (uint8_t *)scratch));
        if (st) return st;
    }
    return INN_OK;
}

inn_status inn_graph_part_nodes(const inn_bundle *b, const inn_graph *g, uint32_t part, uint32_t parts, size_t *first,
                                size_t *end) {
    if (!b || !b->data || !g || !g->record || !first || !end || parts == 0 || part >= parts) return INN_ERR_ARG;
    uint32_t lo, hi;
    inn_status st = part_layers(b, g->bucket, part, parts, &lo, &hi);
    if (st) return st;
    *first = *end = 0;
    for (uint32_t l = lo; l < hi; l++) {
        size_t a, z;
        if ((st = inn_layer_node_bytes(b, g->bucket, l, &a, &z))) return st;
        if (*end == 0 || a < *first) *first = a;
        if (z > *end) *end = z;
    }
    return INN_OK;
}

inn_status inn_graph_fill(const inn_bundle *b, const inn_graph *g, void *const *outs, const size_t *out_sizes,
                          void *scratch, size_t scratch_bytes) {
    if (!b || !b->data || !g || !g->record || !outs || !out_sizes || !scratch) return INN_ERR_ARG;
    if ((uintptr_t)scratch % 8) return INN_ERR_ARG;
    if (b->nodes_pending) return INN_ERR_UNVERIFIED;
    size_t vec, need;
    inn_status st = fill_scratch(b, g->bucket, &vec, &need);
    if (st) return st;
    if (scratch_bytes < need) return INN_ERR_BUFFER;
    if ((st = inn_graph_fill_spans(b, g, outs, out_sizes))) return st;
    return fill_part(b, g, outs, out_sizes, 0, 1, scratch, scratch_bytes);
}
