/* Hostile bundles made in C (no files needed): each one a regression test of a reader bug or limit.
 *   test_hostile            (exit 0 when every check passes; run it under ASan + UBSan, on 32-bit too)
 * Built by tests/test_csrc.py (gcc and clang) and tools/cross_test.sh (aarch64, armhf under qemu). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bundle_build.h"
#include "check.h"
#include "inn.h"
#include "inn_internal.h"

#define EXPECT(st, want, what) \
    CHECK((st) == (want), "%s: got %s, want %s", what, inn_status_name(st), inn_status_name(want))

/* ------------------------------------------------------------------ a small valid model
 * One dense 1x1 layer with a bias: input group 0 fixed at 2 nodes, output group 1 resizable with
 * `out_nodes` nodes sampled at `out_width` points in the one bucket. Nodes: weight [m_out][2], then
 * bias [m_out]. Optional: int8 or float16 nodes, per-width normalisation, a graph record. */
typedef struct {
    uint32_t out_nodes, out_width;
    uint32_t node_elem;    /* 1 f32, 2 f16, 3 i8 */
    float poison;          /* stored as node 0 when non-zero (f32: as is; f16: its half) */
    float scale_poison;    /* int8: NSCL value 0 when non-zero */
    int norm;              /* NORM + NRMV for the layer */
    float norm_a, norm_c;  /* their values (norm_a also poisons when non-finite) */
    const bb_buf *record;  /* graph record for ("t", bucket 0), or NULL */
    const bb_buf *names, *bkin, *cost; /* NAME, BKIN and COST payloads, or NULL (as before 1.3) */
    const bb_buf *macs, *cscd;         /* MACS and CSCD payloads, or NULL (as before 1.4) */
} spec;

static spec base_spec(void) {
    spec s = {4, 3, 1, 0.0f, 0.0f, 0, 1.0f, 0.0f, NULL, NULL, NULL, NULL, NULL, NULL};
    return s;
}

static uint16_t to_half(float v) { /* enough for the values used here: 0, +-inf, small integers */
    if (isinf(v)) return v > 0 ? 0x7C00 : 0xFC00;
    if (v != v) return 0x7E00;
    if (v == 0.0f) return 0;
    int e;
    float m = frexpf(fabsf(v), &e); /* v = m * 2^e, m in [0.5, 1) */
    uint16_t bits = (uint16_t)(((e - 1 + 15) << 10) | ((uint32_t)((m * 2.0f - 1.0f) * 1024.0f) & 0x3FF));
    return v < 0 ? (uint16_t)(bits | 0x8000) : bits;
}

static unsigned char *small_bundle(const spec *p, size_t *size) {
    uint32_t m = p->out_nodes, n_nodes = 3 * m;
    bb_buf info = {0}, grps_rec = {0}, layr_rec = {0}, piec_rec = {0}, node = {0}, nscl = {0}, buck = {0};
    bb_buf norm_rec = {0}, nrmv = {0};
    bb_bytes(&info, NULL, 16);
    bb_u32(&grps_rec, 2); bb_u32(&grps_rec, 0); /* group 0: 2 nodes, fixed */
    bb_u32(&grps_rec, m); bb_u32(&grps_rec, 1); /* group 1: m nodes, resizable */
    bb_layer l = {INN_KIND_DENSE, 1, 1, 1, 0, 1, 1, 1, 0, 2u * m, 0, 0, 0, m};
    bb_layer_rec(&layr_rec, &l);
    bb_u32(&piec_rec, 1);
    bb_u32(&piec_rec, 0);
    for (uint32_t k = 0; k < n_nodes; k++) {
        float v = (float)((int)(k % 7) - 3) * 0.25f;
        if (k == 0 && p->poison != 0.0f) v = p->poison;
        if (p->node_elem == 1) bb_f32(&node, v);
        else if (p->node_elem == 2) {
            uint16_t h = to_half(v);
            bb_bytes(&node, &h, 2); /* little-endian hosts and targets only */
        } else {
            signed char q = (signed char)((int)(k % 7) - 3);
            bb_bytes(&node, &q, 1);
        }
    }
    for (uint32_t r = 0; r < 2 * m; r++) bb_f32(&nscl, r == 0 && p->scale_poison != 0.0f ? p->scale_poison : 0.5f);
    bb_u32(&buck, 1);
    bb_u32(&buck, 2);
    bb_u32(&buck, 2);
    bb_u32(&buck, p->out_width);
    bb_u32(&buck, INN_UNIFORM);
    bb_u32(&buck, INN_UNIFORM);
    bb_buf grps = bb_table(2, 0, grps_rec.p, grps_rec.n), layr = bb_table(1, 0, layr_rec.p, layr_rec.n),
           piec = bb_table(2, 0, piec_rec.p, piec_rec.n);
    bb_section s[16] = {{{'I', 'N', 'F', 'O'}, info.p, info.n, 0}, {{'G', 'R', 'P', 'S'}, grps.p, grps.n, 0},
                        {{'L', 'A', 'Y', 'R'}, layr.p, layr.n, 0}, {{'P', 'I', 'E', 'C'}, piec.p, piec.n, 0},
                        {{'N', 'O', 'D', 'E'}, node.p, node.n, p->node_elem},
                        {{'B', 'U', 'C', 'K'}, buck.p, buck.n, 0}};
    uint32_t count = 6, flags = 0;
    if (p->node_elem == 3) s[count++] = (bb_section){{'N', 'S', 'C', 'L'}, nscl.p, nscl.n, 1};
    bb_buf norm = {0}, gidx = {0};
    if (p->norm) {
        bb_u32(&norm_rec, 0); bb_u32(&norm_rec, 0); bb_u32(&norm_rec, 0); bb_u32(&norm_rec, 0);
        for (uint32_t k = 0; k < p->out_width; k++) bb_f32(&nrmv, p->norm_a);
        for (uint32_t k = 0; k < p->out_width; k++) bb_f32(&nrmv, p->norm_c);
        norm = bb_table(1, 0, norm_rec.p, norm_rec.n);
        s[count++] = (bb_section){{'N', 'O', 'R', 'M'}, norm.p, norm.n, 0};
        s[count++] = (bb_section){{'N', 'R', 'M', 'V'}, nrmv.p, nrmv.n, 1};
        flags |= INN_FLAG_NORM;
    }
    if (p->record) {
        gidx = bb_gidx(0, "t", p->record->n);
        s[count++] = (bb_section){{'G', 'I', 'D', 'X'}, gidx.p, gidx.n, 0};
        s[count++] = (bb_section){{'B', 'L', 'O', 'B'}, p->record->p, p->record->n, 0};
    }
    if (p->names) s[count++] = (bb_section){{'N', 'A', 'M', 'E'}, p->names->p, p->names->n, 0};
    if (p->bkin) s[count++] = (bb_section){{'B', 'K', 'I', 'N'}, p->bkin->p, p->bkin->n, 0};
    if (p->cost) s[count++] = (bb_section){{'C', 'O', 'S', 'T'}, p->cost->p, p->cost->n, 0};
    if (p->macs) s[count++] = (bb_section){{'M', 'A', 'C', 'S'}, p->macs->p, p->macs->n, 0};
    if (p->cscd) s[count++] = (bb_section){{'C', 'S', 'C', 'D'}, p->cscd->p, p->cscd->n, 0};
    unsigned char *out = bb_bundle(s, count, flags, size);
    bb_buf all[] = {info, grps_rec, layr_rec, piec_rec, node, nscl, buck, norm_rec, nrmv, grps, layr, piec, norm, gidx};
    for (size_t k = 0; k < sizeof all / sizeof *all; k++) free(all[k].p);
    return out;
}

static inn_status open_spec(const spec *p, inn_bundle *b, unsigned char **data) {
    size_t size;
    *data = small_bundle(p, &size);
    return inn_bundle_open(b, *data, size);
}

/* Materialise layer 0 at bucket 0 as `dtype` (OIT): the status. */
static inn_status materialize(const inn_bundle *b, inn_dtype dtype, float *w, int8_t *q, float *scales, float *bias) {
    size_t need = 0;
    inn_status st = inn_bundle_scratch_size(b, 0, &need);
    if (st) return st;
    void *scratch = malloc(need);
    inn_layer_info li;
    inn_layer_info_get(b, 0, 0, &li);
    st = inn_materialize(b, 0, 0, INN_LAYOUT_OIT, dtype, dtype == INN_I8 ? (void *)q : (void *)w,
                         li.weight_count * (dtype == INN_I8 ? 1 : 4), scales, li.n_out * 4, bias, li.n_out * 4, scratch,
                         need);
    free(scratch);
    return st;
}

/* ------------------------------------------------------------------ the checks */

static void status_names(void) {
    static const char *want[] = {"OK", "ARG", "TRUNCATED", "MAGIC", "VERSION", "CHECKSUM", "FORMAT",
                                 "RANGE", "OVERFLOW", "BUFFER", "MISSING", "PARTITION", "UNVERIFIED", "STALE"};
    for (int s = 0; s < (int)(sizeof want / sizeof *want); s++)
        CHECK(strcmp(inn_status_name((inn_status)s), want[s]) == 0, "name of %d: %s", s, inn_status_name((inn_status)s));
    CHECK(strcmp(inn_status_name((inn_status)99), "UNKNOWN") == 0, "unknown status name");
    CHECK(strcmp(inn_status_str(INN_ERR_TRUNCATED), inn_status_name(INN_ERR_TRUNCATED)) != 0, "str kept");
    CHECK(INN_HOLE_WEIGHT == 1 && INN_HOLE_BIAS == 2 && INN_HOLE_SCALE == 3 && INN_HOLE_BIAS_I32 == 4 &&
              INN_HOLE_BIAS_SCALE == 5 && INN_HOLE_F32 == 0 && INN_HOLE_I8 == 1 && INN_HOLE_I32 == 2,
          "hole codes as FORMAT.md");
}

/* The small model opens, materialises, and (with a record) fills its graph; no graphs: count 0. */
static void valid_small(void) {
    spec p = base_spec();
    inn_bundle b;
    unsigned char *d;
    EXPECT(open_spec(&p, &b, &d), INN_OK, "small bundle");
    float w[6], scales[3], bias[3];
    int8_t q[6];
    EXPECT(materialize(&b, INN_F32, w, q, scales, bias), INN_OK, "small f32");
    EXPECT(materialize(&b, INN_I8, w, q, scales, bias), INN_OK, "small i8");
    uint32_t count = 7;
    EXPECT(inn_graph_count(&b, &count), INN_OK, "graph count without graphs");
    CHECK(count == 0, "graph count without graphs: %u", count);
    EXPECT(inn_graph_count(NULL, &count), INN_ERR_ARG, "graph count of NULL");
    /* an unaligned scratch gives the same bits (the core aligns inside the slack it asks for) */
    size_t need;
    inn_bundle_scratch_size(&b, 0, &need);
    unsigned char *scratch = malloc(need + 8);
    float w2[6];
    EXPECT(inn_materialize(&b, 0, 0, INN_LAYOUT_OIT, INN_F32, w2, sizeof w2, NULL, 0, NULL, 0, scratch + 3, need),
           INN_OK, "unaligned scratch");
    CHECK(memcmp(w, w2, sizeof w) == 0, "unaligned scratch: same weights");
    free(scratch);
    free(d);
    p.node_elem = 2;
    EXPECT(open_spec(&p, &b, &d), INN_OK, "small bundle, float16 nodes");
    free(d);
    p.node_elem = 3;
    EXPECT(open_spec(&p, &b, &d), INN_OK, "small bundle, int8 nodes");
    free(d);
}

/* Item 3: data not 8-byte aligned is refused (float32 values are read in place). */
static void misaligned(void) {
    spec p = base_spec();
    size_t size;
    unsigned char *d = small_bundle(&p, &size), *buf = malloc(size + 16);
    inn_bundle b;
    for (int shift = 0; shift <= 8; shift++) {
        memcpy(buf + shift, d, size);
        inn_status st = inn_bundle_open(&b, buf + shift, size);
        EXPECT(st, shift % 8 ? INN_ERR_ARG : INN_OK, "open at an offset");
    }
    free(buf);
    free(d);
}

/* Items 1 and 4: graph records. The record has image "a" (a weight and a bias hole of layer 0, a span)
 * and maybe a second image. The model at bucket 0: weight 3x2 f32 (24 bytes), bias 3 floats. */
static void graph_record(bb_buf *r, uint32_t images) {
    bb_bytes(r, "IGR1", 4);
    bb_u32(r, images);
    bb_image_head(r, "a", 1, 2, 0, 64);
    bb_span(r, 0, 8);
    bb_hole(r, 8, 24, 0, INN_HOLE_WEIGHT, INN_LAYOUT_OIT, INN_HOLE_F32, 0.0f);
    bb_hole(r, 32, 12, 0, INN_HOLE_BIAS, INN_LAYOUT_OIT, INN_HOLE_F32, 0.0f);
    bb_bytes(r, "HEADER!!", 8);
}

static inn_status find_graph(const bb_buf *rec, inn_graph *g, unsigned char **d, inn_bundle *b) {
    spec p = base_spec();
    p.record = rec;
    inn_status st = open_spec(&p, b, d);
    if (!st) st = inn_graph_find(b, 0, "t", g);
    return st;
}

static void graphs(void) {
    inn_bundle b;
    inn_graph g;
    unsigned char *d;
    /* a valid record: found, counted and filled */
    bb_buf r = {0};
    graph_record(&r, 1);
    EXPECT(find_graph(&r, &g, &d, &b), INN_OK, "valid record");
    uint32_t count = 0;
    EXPECT(inn_graph_count(&b, &count), INN_OK, "graph count");
    CHECK(count == 1, "graph count %u", count);
    size_t need = 0;
    inn_graph_scratch_size(&b, &g, &need);
    void *scratch = malloc(need), *out = malloc(64);
    size_t out_size = 64;
    EXPECT(inn_graph_fill(&b, &g, &out, &out_size, scratch, need), INN_OK, "fill");
    CHECK(memcmp(out, "HEADER!!", 8) == 0, "stored bytes copied");
    free(out);
    free(scratch);
    free(d);
    free(r.p);

    /* Item 1: the second image's header fails half-way (1000 holes, no room): it must fail as a whole,
     * never lend its hole count to the first image's holes while the bias hole looks for its weight */
    r = (bb_buf){0};
    graph_record(&r, 2);
    bb_image_head(&r, "b", 0, 1000, 0, 64);
    EXPECT(find_graph(&r, &g, &d, &b), INN_ERR_TRUNCATED, "second image header cut short");
    free(d);
    free(r.p);
    /* the same with the vector hole first and the weight hole in a later, broken image */
    r = (bb_buf){0};
    bb_bytes(&r, "IGR1", 4);
    bb_u32(&r, 2);
    bb_image_head(&r, "a", 0, 1, 0, 64);
    bb_hole(&r, 0, 12, 0, INN_HOLE_BIAS, INN_LAYOUT_OIT, INN_HOLE_F32, 0.0f);
    bb_image_head(&r, "b", 0, 100000, 0, 1u << 30); /* the old reader read 100000 holes from image a's */
    EXPECT(find_graph(&r, &g, &d, &b), INN_ERR_TRUNCATED, "weight image cut short");
    free(d);
    free(r.p);
    /* a vector hole without any weight hole */
    r = (bb_buf){0};
    bb_bytes(&r, "IGR1", 4);
    bb_u32(&r, 1);
    bb_image_head(&r, "a", 0, 1, 0, 64);
    bb_hole(&r, 0, 12, 0, INN_HOLE_BIAS, INN_LAYOUT_OIT, INN_HOLE_F32, 0.0f);
    EXPECT(find_graph(&r, &g, &d, &b), INN_ERR_FORMAT, "bias hole without a weight hole");
    free(d);
    free(r.p);
    /* a scale hole needs an int8 weight hole */
    r = (bb_buf){0};
    bb_bytes(&r, "IGR1", 4);
    bb_u32(&r, 1);
    bb_image_head(&r, "a", 0, 2, 0, 64);
    bb_hole(&r, 0, 24, 0, INN_HOLE_WEIGHT, INN_LAYOUT_OIT, INN_HOLE_F32, 0.0f);
    bb_hole(&r, 24, 12, 0, INN_HOLE_SCALE, INN_LAYOUT_OIT, INN_HOLE_F32, 0.0f);
    EXPECT(find_graph(&r, &g, &d, &b), INN_ERR_FORMAT, "scale hole with a float weight hole only");
    free(d);
    free(r.p);

    /* Item 4: an image of 2^40 zero bytes from a 40-byte record */
    r = (bb_buf){0};
    bb_bytes(&r, "IGR1", 4);
    bb_u32(&r, 1);
    bb_image_head(&r, "z", 0, 0, 0, (uint64_t)1 << 40);
    inn_status st = find_graph(&r, &g, &d, &b);
    CHECK(st == INN_ERR_RANGE || (SIZE_MAX <= 0xFFFFFFFFu && st == INN_ERR_OVERFLOW), "2^40 zero bytes: %s",
          inn_status_name(st));
    free(d);
    free(r.p);
    /* ... while a modest run of zeros (1 MiB) is fine */
    r = (bb_buf){0};
    bb_bytes(&r, "IGR1", 4);
    bb_u32(&r, 1);
    bb_image_head(&r, "z", 0, 0, 0, (uint64_t)1 << 20);
    EXPECT(find_graph(&r, &g, &d, &b), INN_OK, "1 MiB of zeros");
    free(d);
    free(r.p);
    /* the same weight hole repeated: at most 8x the bucket's tensors (3x2 + 4 vectors of 3: 72 bytes) */
    for (uint32_t holes = 24; holes <= 25; holes++) {
        r = (bb_buf){0};
        bb_bytes(&r, "IGR1", 4);
        bb_u32(&r, 1);
        bb_image_head(&r, "w", 0, holes, 0, 24u * holes);
        for (uint32_t k = 0; k < holes; k++)
            bb_hole(&r, 24u * k, 24, 0, INN_HOLE_WEIGHT, INN_LAYOUT_OIT, INN_HOLE_F32, 0.0f);
        EXPECT(find_graph(&r, &g, &d, &b), holes * 24u <= 8u * 72u ? INN_OK : INN_ERR_RANGE, "repeated weight holes");
        free(d);
        free(r.p);
    }
}

/* Item 4: resizable groups sampled at no more than 16 points per node. */
static void bucket_widths(void) {
    spec p = base_spec();
    inn_bundle b;
    unsigned char *d;
    p.out_nodes = 2;
    p.out_width = 32;
    EXPECT(open_spec(&p, &b, &d), INN_OK, "16 points per node");
    free(d);
    p.out_width = 33;
    EXPECT(open_spec(&p, &b, &d), INN_ERR_RANGE, "more than 16 points per node");
    free(d);
    p.out_width = 1u << 24;
    EXPECT(open_spec(&p, &b, &d), INN_ERR_RANGE, "2 nodes sampled at 2^24 points");
    free(d);
}

/* Item 5: non-finite node, scale and normalisation values are refused at open; and NaN never reaches
 * the int8 conversion (overflowing finite values give inf, inf / inf is NaN). */
static void non_finite(void) {
    inn_bundle b;
    unsigned char *d;
    const float bad[] = {NAN, INFINITY, -INFINITY};
    for (int k = 0; k < 3; k++) {
        spec p = base_spec();
        p.poison = bad[k];
        EXPECT(open_spec(&p, &b, &d), INN_ERR_FORMAT, "non-finite f32 node");
        free(d);
        p.node_elem = 2;
        EXPECT(open_spec(&p, &b, &d), INN_ERR_FORMAT, "non-finite f16 node");
        free(d);
        p = base_spec();
        p.node_elem = 3;
        p.scale_poison = bad[k];
        EXPECT(open_spec(&p, &b, &d), INN_ERR_FORMAT, "non-finite NSCL scale");
        free(d);
        p = base_spec();
        p.norm = 1;
        p.norm_a = bad[k];
        EXPECT(open_spec(&p, &b, &d), INN_ERR_FORMAT, "non-finite NRMV value");
        free(d);
    }
    /* finite but overflowing: a = 3e38 turns weights of 0.75 into inf (and zero ones into 0) */
    spec p = base_spec();
    p.norm = 1;
    p.norm_a = 3e38f;
    EXPECT(open_spec(&p, &b, &d), INN_OK, "huge finite normalisation");
    float w[6], scales[3], bias[3];
    int8_t q[6];
    EXPECT(materialize(&b, INN_I8, w, q, scales, bias), INN_OK, "int8 of overflowing weights");
    for (int k = 0; k < 6; k++) CHECK(q[k] >= -127 && q[k] <= 127, "int8 value %d", q[k]);
    free(d);
    /* the row quantiser itself: inf / inf = NaN becomes 0 */
    float row[4] = {INFINITY, -INFINITY, 1.0f, 0.0f}, scale = 0.0f;
    int8_t qr[4] = {9, 9, 9, 9};
    inn_quantize_row(row, 4, 1, qr, &scale);
    CHECK(qr[0] == 0 && qr[1] == 0 && qr[2] == 0 && qr[3] == 0 && isinf(scale), "NaN to int8: %d %d %d %d", qr[0],
          qr[1], qr[2], qr[3]);
    /* public inn_taps with a NaN or far-away point: an error or clamped, never an undefined conversion */
    float pts[3] = {0.0f, NAN, 1.0f};
    int32_t idx[12];
    double tw[12];
    EXPECT(inn_taps(pts, 3, 5, idx, tw), INN_ERR_PARTITION, "NaN point");
    pts[1] = 1e30f;
    EXPECT(inn_taps(pts, 3, 5, idx, tw), INN_OK, "far point");
    CHECK(idx[4] == 3 && idx[5] == 4 && idx[7] == 4, "far point clamps to the last node");
    pts[1] = -1e30f;
    EXPECT(inn_taps(pts, 3, 5, idx, tw), INN_OK, "far negative point");
    CHECK(idx[4] == 0 && idx[5] == 0 && idx[7] == 2, "far negative point clamps to the first node");
}

/* Items 2 and 10: one 1x1 layer of 2^24 inputs (int8 nodes, 16 MiB). Its scratch is about 4.43e9 bytes,
 * which wraps to about 134 MB with a 32-bit size_t; inn_materialize then trusted that scratch and
 * wrote far past it. Now: INN_ERR_OVERFLOW on 32-bit, the true size on 64-bit. */
static void scratch_overflow(void) {
    const uint32_t m_in = 1u << 24;
    bb_buf info = {0}, grps_rec = {0}, layr_rec = {0}, piec_rec = {0}, nscl = {0}, buck = {0};
    bb_bytes(&info, NULL, 16);
    bb_u32(&grps_rec, 1); bb_u32(&grps_rec, 0);    /* group 0: 1 node (the output), fixed */
    bb_u32(&grps_rec, m_in); bb_u32(&grps_rec, 0); /* group 1: 2^24 nodes (the input), fixed */
    bb_layer l = {INN_KIND_DENSE, 1, 1, 0, 0, 1, 1, 1, 0, 0, 0, 0, 0, 0};
    bb_layer_rec(&layr_rec, &l);
    bb_u32(&piec_rec, 0);
    bb_u32(&piec_rec, 1);
    unsigned char *node = calloc(m_in, 1);
    bb_f32(&nscl, 1.0f);
    bb_u32(&buck, 1); bb_u32(&buck, 2);
    bb_u32(&buck, 1); bb_u32(&buck, m_in);
    bb_u32(&buck, INN_UNIFORM); bb_u32(&buck, INN_UNIFORM);
    bb_buf grps = bb_table(2, 0, grps_rec.p, grps_rec.n), layr = bb_table(1, 0, layr_rec.p, layr_rec.n),
           piec = bb_table(2, 0, piec_rec.p, piec_rec.n);
    bb_section s[] = {{{'I', 'N', 'F', 'O'}, info.p, info.n, 0}, {{'G', 'R', 'P', 'S'}, grps.p, grps.n, 0},
                      {{'L', 'A', 'Y', 'R'}, layr.p, layr.n, 0}, {{'P', 'I', 'E', 'C'}, piec.p, piec.n, 0},
                      {{'N', 'O', 'D', 'E'}, node, m_in, 3}, {{'N', 'S', 'C', 'L'}, nscl.p, nscl.n, 1},
                      {{'B', 'U', 'C', 'K'}, buck.p, buck.n, 0}};
    size_t size;
    unsigned char *d = bb_bundle(s, 7, 0, &size);
    inn_bundle b;
    EXPECT(inn_bundle_open(&b, d, size), INN_OK, "2^24-input layer opens (its nodes are all there)");
    size_t need = 0;
    inn_status st = inn_bundle_scratch_size(&b, 0, &need);
    /* the wrapped size the old arithmetic gave on 32-bit: what a loader would have allocated */
#if SIZE_MAX <= 0xFFFFFFFFu
    const size_t wrapped = (size_t)(4429185136ull & 0xFFFFFFFFull);
    {
        EXPECT(st, INN_ERR_OVERFLOW, "32-bit: scratch size overflows");
        /* what a loader did with that size: buffers that pass every other check (the old reader then
         * built 2^24 input taps, 400 MB, into the 134 MB scratch) */
        void *scratch = malloc(wrapped + 64), *w = malloc(m_in);
        float sc[1];
        if (scratch && w) {
            st = inn_materialize(&b, 0, 0, INN_LAYOUT_OIT, INN_I8, w, m_in, sc, sizeof sc, NULL, 0, scratch,
                                 wrapped + 64);
            EXPECT(st, INN_ERR_OVERFLOW, "32-bit: materialise with the wrapped scratch");
        }
        free(scratch);
        free(w);
        printf("32-bit size_t: scratch size of the 2^24-input layer is INN_ERR_OVERFLOW (was %zu bytes)\n", wrapped);
    }
#else
    {
        EXPECT(st, INN_OK, "64-bit: scratch size");
        CHECK((uint64_t)need == 4429185136ull, "64-bit: scratch size %zu (the 32-bit sum wrapped)", need);
        unsigned char small[256];
        int8_t w[4];
        float sc[1];
        EXPECT(inn_materialize(&b, 0, 0, INN_LAYOUT_OIT, INN_I8, w, sizeof w, sc, sizeof sc, NULL, 0, small,
                               sizeof small),
               INN_ERR_BUFFER, "64-bit: small scratch");
    }
#endif
    bb_buf all[] = {info, grps_rec, layr_rec, piec_rec, nscl, buck, grps, layr, piec};
    for (size_t k = 0; k < sizeof all / sizeof *all; k++) free(all[k].p);
    free(node);
    free(d);
}

/* ------------------------------------------------------------------ 1.3: BKIN and COST */

static void bb_f64(bb_buf *b, double v) {
    uint64_t u;
    memcpy(&u, &v, 8);
    bb_u64(b, u);
}

/* BKIN with `count` records, each naming NAME[0, name_len) with `flags` and `ratio`. */
static bb_buf bkin_table(uint32_t count, uint32_t name_len, uint32_t flags, double ratio) {
    bb_buf b = {0};
    bb_u32(&b, count);
    bb_u32(&b, 0);
    for (uint32_t k = 0; k < count; k++) {
        bb_u32(&b, 0);
        bb_u32(&b, name_len);
        bb_u32(&b, flags);
        bb_u32(&b, 0);
        bb_f64(&b, ratio);
    }
    return b;
}

typedef struct {
    uint32_t bucket, flags;
    char runtime[INN_RUNTIME_NAME]; /* as stored: NUL-padded, or not */
    uint64_t weights, file, arena;
    double accuracy;
} cost_row;

static bb_buf cost_table(const cost_row *rows, uint32_t n, uint32_t declared) {
    bb_buf b = {0};
    bb_u32(&b, declared);
    bb_u32(&b, 0);
    for (uint32_t k = 0; k < n; k++) {
        bb_u32(&b, rows[k].bucket);
        bb_u32(&b, rows[k].flags);
        bb_bytes(&b, rows[k].runtime, INN_RUNTIME_NAME);
        bb_u64(&b, rows[k].weights);
        bb_u64(&b, rows[k].file);
        bb_u64(&b, rows[k].arena);
        bb_f64(&b, rows[k].accuracy);
    }
    return b;
}

/* The small bundle with NAME = `name`, BKIN naming it, and COST `rows`: the open status. */
static inn_status open_tables(const char *name, size_t name_len, const bb_buf *bkin, const cost_row *rows, uint32_t n,
                              uint32_t declared, inn_bundle *b, unsigned char **d) {
    bb_buf names = {0}, cost = cost_table(rows, n, declared);
    bb_bytes(&names, name, name_len);
    spec p = base_spec();
    p.names = &names;
    p.bkin = bkin;
    p.cost = &cost;
    inn_status st = open_spec(&p, b, d);
    free(names.p);
    free(cost.p);
    return st;
}

static void bucket_tables(void) {
    inn_bundle b;
    unsigned char *d;
    inn_bucket_info bi;
    inn_bucket_cost c;
    uint32_t count = 9;
    /* before 1.3: no BKIN or COST, nothing known, nothing found */
    spec p = base_spec();
    EXPECT(open_spec(&p, &b, &d), INN_OK, "no BKIN, no COST");
    EXPECT(inn_bucket_info_get(&b, 0, &bi), INN_OK, "bucket info without BKIN");
    CHECK(bi.name == NULL && bi.name_len == 0 && !bi.has_ratio, "without BKIN nothing is known");
    EXPECT(inn_cost_count(&b, &count), INN_OK, "cost count without COST");
    CHECK(count == 0, "cost count without COST: %u", count);
    EXPECT(inn_cost_find(&b, 0, "t", &c), INN_ERR_MISSING, "cost without COST");
    EXPECT(inn_bucket_info_get(&b, 1, &bi), INN_ERR_MISSING, "bucket info past the buckets");
    EXPECT(inn_bucket_info_get(NULL, 0, &bi), INN_ERR_ARG, "bucket info of NULL");
    free(d);

    /* valid: a 4-byte UTF-8 name, a ratio, two sorted rows */
    const char smile[] = "w\xF0\x9F\x98\x80";
    bb_buf bk = bkin_table(1, 5, INN_BUCKET_RATIO, 0.75);
    cost_row ok[2] = {{0, INN_COST_WEIGHTS_BYTES | INN_COST_ACCURACY, "litert", 4096, 0, 0, 88.5},
                      {0, INN_COST_ARENA_BYTES, "xnnpack-sixteen!", 0, 0, 1u << 20, 0.0}};
    EXPECT(open_tables(smile, 5, &bk, ok, 2, 2, &b, &d), INN_OK, "valid BKIN and COST");
    EXPECT(inn_bucket_info_get(&b, 0, &bi), INN_OK, "bucket info");
    CHECK(bi.name_len == 5 && memcmp(bi.name, smile, 5) == 0 && bi.has_ratio && bi.ratio == 0.75, "bucket info values");
    EXPECT(inn_cost_find(&b, 0, "litert", &c), INN_OK, "cost found");
    CHECK(c.weights_bytes == 4096 && c.accuracy == 88.5 && c.arena_bytes == 0, "cost values");
    EXPECT(inn_cost_find(&b, 0, "xnnpack-sixteen!", &c), INN_OK, "16-byte runtime name found");
    EXPECT(inn_cost_find(&b, 0, "lite", &c), INN_ERR_MISSING, "a prefix is not a runtime");
    free(d);
    free(bk.p);

    /* bad names: overlong, surrogate, past U+10FFFF, cut short, stray continuation byte; past NAME */
    static const char *bad_utf8[] = {"\xC0\x80", "\xED\xA0\x80", "\xF4\x90\x80\x80", "\xE2\x82", "\x80"};
    for (size_t k = 0; k < sizeof bad_utf8 / sizeof *bad_utf8; k++) {
        size_t n = strlen(bad_utf8[k]);
        bk = bkin_table(1, (uint32_t)n, 0, 0.0);
        EXPECT(open_tables(bad_utf8[k], n, &bk, ok, 2, 2, &b, &d), INN_ERR_FORMAT, "bucket name not UTF-8");
        free(d);
        free(bk.p);
    }
    bk = bkin_table(1, 6, 0, 0.0);
    EXPECT(open_tables(smile, 5, &bk, ok, 2, 2, &b, &d), INN_ERR_RANGE, "bucket name past NAME");
    free(d);
    free(bk.p);
    /* bad BKIN records */
    struct { uint32_t count, flags; double ratio; inn_status want; const char *what; } bkins[] = {
        {2, 0, 0.0, INN_ERR_FORMAT, "two records for one bucket"},
        {1, 2, 0.0, INN_ERR_FORMAT, "unknown bucket flag"},
        {1, INN_BUCKET_RATIO, INFINITY, INN_ERR_FORMAT, "infinite ratio"},
        {1, 0, 0.5, INN_ERR_FORMAT, "a ratio without its flag"},
    };
    for (size_t k = 0; k < sizeof bkins / sizeof *bkins; k++) {
        bk = bkin_table(bkins[k].count, 1, bkins[k].flags, bkins[k].ratio);
        EXPECT(open_tables("w", 1, &bk, ok, 2, 2, &b, &d), bkins[k].want, bkins[k].what);
        free(d);
        free(bk.p);
    }
    /* bad COST rows (one row each, or the two valid ones swapped or repeated) */
    struct { cost_row row; inn_status want; const char *what; } rows[] = {
        {{1, 0, "litert", 0, 0, 0, 0.0}, INN_ERR_RANGE, "cost of a missing bucket"},
        {{0, 16, "litert", 0, 0, 0, 0.0}, INN_ERR_FORMAT, "unknown cost flag"},
        {{0, INN_COST_ACCURACY, "litert", 0, 0, 0, NAN}, INN_ERR_FORMAT, "NaN accuracy"},
        {{0, INN_COST_WEIGHTS_BYTES, "litert", 1, 2, 0, 0.0}, INN_ERR_FORMAT, "unmeasured file bytes not zero"},
        {{0, 0, "", 0, 0, 0, 0.0}, INN_ERR_FORMAT, "empty runtime name"},
        {{0, 0, "lite\0rt", 0, 0, 0, 0.0}, INN_ERR_FORMAT, "runtime name not NUL-padded"},
        {{0, 0, "\xFFlitert", 0, 0, 0, 0.0}, INN_ERR_FORMAT, "runtime name not UTF-8"},
    };
    for (size_t k = 0; k < sizeof rows / sizeof *rows; k++) {
        EXPECT(open_tables("w", 1, NULL, &rows[k].row, 1, 1, &b, &d), rows[k].want, rows[k].what);
        free(d);
    }
    cost_row swapped[2] = {ok[1], ok[0]}, twice[2] = {ok[0], ok[0]};
    EXPECT(open_tables("w", 1, NULL, swapped, 2, 2, &b, &d), INN_ERR_FORMAT, "cost rows out of order");
    free(d);
    EXPECT(open_tables("w", 1, NULL, twice, 2, 2, &b, &d), INN_ERR_FORMAT, "cost rows repeated");
    free(d);
    inn_status st = open_tables("w", 1, NULL, ok, 2, 0xFFFFFFFFu, &b, &d);
    CHECK(st == INN_ERR_TRUNCATED || st == INN_ERR_OVERFLOW, "2^32-1 cost rows: %s", inn_status_name(st));
    free(d);
}

/* ------------------------------------------------------------------ 1.4: MACS and CSCD */

typedef struct {
    uint32_t name_off, name_len, score, target, first, steps, flags, reserved;
    double value, accuracy, macs;
} cascade_rec;

/* CSCD with `n` records and `n_steps` steps {bucket, threshold}; `declared` cascades in its header. */
static bb_buf cscd_table(const cascade_rec *recs, uint32_t n, uint32_t declared, const uint32_t *buckets,
                         const float *thresholds, uint32_t n_steps) {
    bb_buf b = {0};
    bb_u32(&b, declared);
    bb_u32(&b, n_steps);
    for (uint32_t k = 0; k < n; k++) {
        const cascade_rec *r = recs + k;
        uint32_t f[8] = {r->name_off, r->name_len, r->score, r->target, r->first, r->steps, r->flags, r->reserved};
        for (int j = 0; j < 8; j++) bb_u32(&b, f[j]);
        bb_f64(&b, r->value);
        bb_f64(&b, r->accuracy);
        bb_f64(&b, r->macs);
    }
    for (uint32_t k = 0; k < n_steps; k++) {
        bb_u32(&b, buckets[k]);
        bb_f32(&b, thresholds[k]);
    }
    return b;
}

/* The small bundle (one bucket) with NAME "fastslow", MACS `macs` (or none) and CSCD `cscd` (or none). */
static inn_status open_cascade_tables(const bb_buf *macs, const bb_buf *cscd, inn_bundle *b, unsigned char **d) {
    bb_buf names = {0};
    bb_bytes(&names, "fastslow", 8);
    spec p = base_spec();
    p.names = &names;
    p.macs = macs;
    p.cscd = cscd;
    inn_status st = open_spec(&p, b, d);
    free(names.p);
    return st;
}

static void cascade_tables(void) {
    inn_bundle b;
    unsigned char *d;
    inn_cascade c;
    uint32_t count = 9, bucket;
    uint64_t macs;
    float t;
    /* before 1.4: nothing known */
    EXPECT(open_cascade_tables(NULL, NULL, &b, &d), INN_OK, "no MACS, no CSCD");
    EXPECT(inn_bucket_macs(&b, 0, &macs), INN_ERR_MISSING, "MACs without MACS");
    EXPECT(inn_cascade_count(&b, &count), INN_OK, "cascade count without CSCD");
    CHECK(count == 0, "cascade count without CSCD: %u", count);
    EXPECT(inn_cascade_get(&b, 0, &c), INN_ERR_MISSING, "cascade without CSCD");
    free(d);

    /* valid: MACs of the one bucket, two one-step cascades */
    bb_buf m = {0};
    bb_u32(&m, 1);
    bb_u32(&m, 0);
    bb_u64(&m, 24);
    cascade_rec ok[2] = {{0, 4, INN_SCORE_MAX_PROB, INN_TARGET_ACCURACY_DROP, 0, 1, INN_CASCADE_ACCURACY, 0, 0.3, 91.5, 0},
                         {4, 4, INN_SCORE_MARGIN, INN_TARGET_NONE, 1, 1, 0, 0, 0.0, 0.0, 0.0}};
    uint32_t steps[2] = {0, 0};
    float zero[2] = {0.0f, 0.0f};
    bb_buf cs = cscd_table(ok, 2, 2, steps, zero, 2);
    EXPECT(open_cascade_tables(&m, &cs, &b, &d), INN_OK, "valid MACS and CSCD");
    EXPECT(inn_bucket_macs(&b, 0, &macs), INN_OK, "MACs");
    CHECK(macs == 24, "MACs value %llu", (unsigned long long)macs);
    EXPECT(inn_bucket_macs(&b, 1, &macs), INN_ERR_MISSING, "MACs past the buckets");
    EXPECT(inn_cascade_count(&b, &count), INN_OK, "cascade count");
    CHECK(count == 2, "cascade count %u", count);
    EXPECT(inn_cascade_get(&b, 1, &c), INN_OK, "cascade 1");
    CHECK(c.name_len == 4 && !memcmp(c.name, "slow", 4) && c.score == INN_SCORE_MARGIN && c.step_count == 1 &&
              c.known == 0, "cascade 1 values");
    EXPECT(inn_cascade_get(&b, 0, &c), INN_OK, "cascade 0");
    CHECK(c.known == INN_CASCADE_ACCURACY && c.accuracy == 91.5 && c.target_value == 0.3, "cascade 0 values");
    EXPECT(inn_cascade_step(&b, 1, 0, &bucket, &t), INN_OK, "step");
    CHECK(bucket == 0 && t == 0.0f, "step values");
    EXPECT(inn_cascade_step(&b, 1, 1, &bucket, &t), INN_ERR_MISSING, "step past the last");
    EXPECT(inn_cascade_get(&b, 2, &c), INN_ERR_MISSING, "cascade past the last");
    EXPECT(inn_cascade_step(NULL, 0, 0, &bucket, &t), INN_ERR_ARG, "step of NULL");
    free(d);
    free(cs.p);

    /* bad MACS */
    bb_buf two = {0}, none = {0};
    bb_u32(&two, 2); bb_u32(&two, 0); bb_u64(&two, 1); bb_u64(&two, 2);
    bb_u32(&none, 1); bb_u32(&none, 0); bb_u64(&none, 0);
    EXPECT(open_cascade_tables(&two, NULL, &b, &d), INN_ERR_FORMAT, "MACS for two buckets");
    free(d);
    EXPECT(open_cascade_tables(&none, NULL, &b, &d), INN_ERR_FORMAT, "zero MACs");
    free(d);
    free(two.p);
    free(none.p);
    free(m.p);

    /* bad cascades: one record with one step (bucket 0, threshold 0) but for the field named */
    struct { cascade_rec rec; uint32_t bucket; float threshold; inn_status want; const char *what; } bad[] = {
        {{0, 4, INN_SCORE_MAX_PROB, 0, 0, 1, 0, 0, 0, 0, 0}, 1, 0.0f, INN_ERR_RANGE, "step of a missing bucket"},
        {{0, 4, INN_SCORE_MAX_PROB, 0, 0, 1, 0, 0, 0, 0, 0}, 0, 0.5f, INN_ERR_FORMAT, "last threshold not 0"},
        {{0, 4, INN_SCORE_MAX_PROB, 0, 0, 1, 0, 0, 0, 0, 0}, 0, NAN, INN_ERR_FORMAT, "NaN threshold"},
        {{0, 4, INN_SCORE_MAX_PROB, 0, 0, 1, 0, 0, 0, 0, 0}, 0, -0.5f, INN_ERR_FORMAT, "negative threshold"},
        {{0, 4, 3, 0, 0, 1, 0, 0, 0, 0, 0}, 0, 0.0f, INN_ERR_FORMAT, "unknown score"},
        {{0, 4, INN_SCORE_MAX_PROB, 3, 0, 1, 0, 0, 0, 0, 0}, 0, 0.0f, INN_ERR_FORMAT, "unknown target"},
        {{0, 4, INN_SCORE_MAX_PROB, 0, 0, 1, 4, 0, 0, 0, 0}, 0, 0.0f, INN_ERR_FORMAT, "unknown cascade flag"},
        {{0, 4, INN_SCORE_MAX_PROB, 0, 0, 1, 0, 1, 0, 0, 0}, 0, 0.0f, INN_ERR_FORMAT, "cascade reserved"},
        {{0, 4, INN_SCORE_MAX_PROB, 0, 0, 1, 0, 0, 0, 5.0, 0}, 0, 0.0f, INN_ERR_FORMAT, "unmeasured accuracy set"},
        {{0, 4, INN_SCORE_MAX_PROB, 0, 0, 1, 0, 0, NAN, 0, 0}, 0, 0.0f, INN_ERR_FORMAT, "NaN target"},
        {{0, 4, INN_SCORE_MAX_PROB, 0, 0, 1, INN_CASCADE_MACS, 0, 0, 0, -1.0}, 0, 0.0f, INN_ERR_FORMAT,
         "negative mean MACs"},
        {{0, 4, INN_SCORE_MAX_PROB, 0, 1, 1, 0, 0, 0, 0, 0}, 0, 0.0f, INN_ERR_FORMAT, "steps not from the first"},
        {{0, 4, INN_SCORE_MAX_PROB, 0, 0, 2, 0, 0, 0, 0, 0}, 0, 0.0f, INN_ERR_FORMAT, "more steps than the table"},
        {{0, 4, INN_SCORE_MAX_PROB, 0, 0, 0, 0, 0, 0, 0, 0}, 0, 0.0f, INN_ERR_FORMAT, "no steps"},
        {{0, 0, INN_SCORE_MAX_PROB, 0, 0, 1, 0, 0, 0, 0, 0}, 0, 0.0f, INN_ERR_FORMAT, "empty name"},
        {{6, 4, INN_SCORE_MAX_PROB, 0, 0, 1, 0, 0, 0, 0, 0}, 0, 0.0f, INN_ERR_RANGE, "name past NAME"},
    };
    for (size_t k = 0; k < sizeof bad / sizeof *bad; k++) {
        cs = cscd_table(&bad[k].rec, 1, 1, &bad[k].bucket, &bad[k].threshold, 1);
        EXPECT(open_cascade_tables(NULL, &cs, &b, &d), bad[k].want, bad[k].what);
        free(d);
        free(cs.p);
    }
    cascade_rec same[2] = {ok[0], ok[1]};
    same[1].name_off = 0; /* both "fast" */
    cs = cscd_table(same, 2, 2, steps, zero, 2);
    EXPECT(open_cascade_tables(NULL, &cs, &b, &d), INN_ERR_FORMAT, "two cascades named alike");
    free(d);
    free(cs.p);
    cascade_rec twice = {0, 4, INN_SCORE_MAX_PROB, 0, 0, 2, 0, 0, 0, 0, 0};
    float half_zero[2] = {0.5f, 0.0f};
    cs = cscd_table(&twice, 1, 1, steps, half_zero, 2);
    EXPECT(open_cascade_tables(NULL, &cs, &b, &d), INN_ERR_FORMAT, "a bucket twice in a cascade");
    free(d);
    free(cs.p);
    cs = cscd_table(ok, 1, 1, steps, zero, 2);
    EXPECT(open_cascade_tables(NULL, &cs, &b, &d), INN_ERR_FORMAT, "a step no cascade uses");
    free(d);
    free(cs.p);
    cs = cscd_table(ok, 2, 0xFFFFFFFFu, steps, zero, 2);
    EXPECT(open_cascade_tables(NULL, &cs, &b, &d), INN_ERR_TRUNCATED, "2^32-1 cascades");
    free(d);
    free(cs.p);
}

int main(void) {
    status_names();
    valid_small();
    misaligned();
    graphs();
    bucket_widths();
    non_finite();
    scratch_overflow();
    bucket_tables();
    cascade_tables();
    printf("%d checks, %d failed\n", checks, failures);
    return failures ? 1 : 0;
}
