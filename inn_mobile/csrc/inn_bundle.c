/* Reading .innb bundles (FORMAT.md): validate everything once, then serve layers zero-copy. */
#include <string.h>

#include "inn.h"
#include "inn_internal.h"

#define HEADER_SIZE 64
#define ENTRY_SIZE 32
#define MAX_SECTIONS 64
#define LAYER_SIZE 64


const char *inn_status_str(inn_status s) {
    switch (s) {
        case INN_OK: return "ok";
        case INN_ERR_ARG: return "invalid argument";
        case INN_ERR_TRUNCATED: return "bundle truncated: data shorter than its declared sizes";
        case INN_ERR_MAGIC: return "not an .innb bundle (bad magic)";
        case INN_ERR_VERSION: return "unsupported bundle version";
        case INN_ERR_CHECKSUM: return "checksum mismatch: the bundle is corrupted";
        case INN_ERR_FORMAT: return "inconsistent bundle tables";
        case INN_ERR_RANGE: return "index or dimension out of range";
        case INN_ERR_OVERFLOW: return "size overflow: dimensions too large";
        case INN_ERR_BUFFER: return "output or scratch buffer too small";
        case INN_ERR_MISSING: return "missing section, bucket or layer";
        case INN_ERR_PARTITION: return "invalid partition (must be sorted within [0, 1] from 0 to 1)";
        case INN_ERR_UNVERIFIED: return "the bundle's nodes are not verified yet (inn_bundle_open_deferred)";
        case INN_ERR_STALE: return "a width-cache stamp of other files (bundle, width, runtime or fill version)";
    }
    return "unknown status";
}

const char *inn_status_name(inn_status s) {
    switch (s) {
        case INN_OK: return "OK";
        case INN_ERR_ARG: return "ARG";
        case INN_ERR_TRUNCATED: return "TRUNCATED";
        case INN_ERR_MAGIC: return "MAGIC";
        case INN_ERR_VERSION: return "VERSION";
        case INN_ERR_CHECKSUM: return "CHECKSUM";
        case INN_ERR_FORMAT: return "FORMAT";
        case INN_ERR_RANGE: return "RANGE";
        case INN_ERR_OVERFLOW: return "OVERFLOW";
        case INN_ERR_BUFFER: return "BUFFER";
        case INN_ERR_MISSING: return "MISSING";
        case INN_ERR_PARTITION: return "PARTITION";
        case INN_ERR_UNVERIFIED: return "UNVERIFIED";
        case INN_ERR_STALE: return "STALE";
    }
    return "UNKNOWN";
}

typedef struct {
    const uint8_t *p;
    size_t size;
    uint32_t elem;
} section;

static inn_status find(const inn_bundle *b, const char tag[4], section *out) {
    uint64_t table = rd64(b->data + 16);
    uint32_t count = rd32(b->data + 12);
    for (uint32_t i = 0; i < count; i++) {
        const uint8_t *e = b->data + table + (size_t)i * ENTRY_SIZE;
        if (memcmp(e, tag, 4) == 0) {
            out->p = b->data + rd64(e + 8);
            out->size = (size_t)rd64(e + 16);
            out->elem = rd32(e + 24);
            return INN_OK;
        }
    }
    return INN_ERR_MISSING;
}

inn_status inn_bundle_section(const inn_bundle *b, const char tag[4], const uint8_t **data, size_t *size) {
    if (!b || !b->data || !tag || !data || !size) return INN_ERR_ARG;
    section s;
    inn_status st = find(b, tag, &s);
    if (st != INN_OK) return st;
    if (b->nodes_pending && memcmp(tag, "NODE", 4) == 0) return INN_ERR_UNVERIFIED;
    *data = s.p;
    *size = s.size;
    return INN_OK;
}

/* A table section: u32 count, u32 extra, then count records of rec bytes. */
static inn_status table(const section *s, size_t rec, uint32_t *count, uint32_t *extra, const uint8_t **rows) {
    if (s->size < 8) return INN_ERR_TRUNCATED;
    *count = rd32(s->p);
    *extra = rd32(s->p + 4);
    size_t need;
    if (!inn_mul(*count, rec, &need)) return INN_ERR_OVERFLOW;
    if (need > s->size - 8) return INN_ERR_TRUNCATED;
    *rows = s->p + 8;
    return INN_OK;
}

static uint32_t group_nodes(const inn_bundle *b, uint32_t g) { return rd32(b->groups + (size_t)g * 8); }
static uint32_t group_resizable(const inn_bundle *b, uint32_t g) { return rd32(b->groups + (size_t)g * 8 + 4) & 1u; }

/* A layer record (FORMAT.md "Layer record"), decoded in this one place. */
typedef struct {
    uint32_t kind, blocks, taps, flags;
    uint32_t out_first, out_count, in_first, in_count; /* runs of PIEC */
    uint64_t weight_off, bias_off;                     /* in NODE elements */
    uint32_t name_off, name_len;                       /* in NAME */
    uint32_t weight_scale, bias_scale;                 /* first NSCL scale (int8 nodes) */
} layer_rec;

static layer_rec layer_at(const inn_bundle *b, uint32_t l) {
    const uint8_t *r = b->layers + (size_t)l * LAYER_SIZE;
    layer_rec x = {rd32(r),      rd32(r + 4),  rd32(r + 8),  rd32(r + 12), rd32(r + 16), rd32(r + 20),
                   rd32(r + 24), rd32(r + 28), rd64(r + 32), rd64(r + 40), rd32(r + 48), rd32(r + 52),
                   rd32(r + 56), rd32(r + 60)};
    return x;
}
static uint32_t piece(const inn_bundle *b, uint32_t k) { return rd32(b->pieces + (size_t)k * 4); }
/* Points of group g at bucket k (both in range: callers check). */
static uint32_t bucket_size(const inn_bundle *b, uint32_t k, uint32_t g) {
    return rd32(b->buckets + ((size_t)k * b->group_count + g) * 4);
}

/* No inf or NaN among `count` float32 values (any alignment, host byte order: as the core reads them);
 * float16 when `half`. Only an all-ones exponent carries into the top bit when one is added to it, so the
 * test is an and, an add and an or per value, loops compilers vectorise (opening reads every node here,
 * besides the CRC). */
INN_NOINLINE static int all_finite(const uint8_t *p, size_t count, int half) {
    if (half) {
        uint16_t carry = 0;
        for (size_t k = 0; k < count; k++) {
            uint16_t v;
            memcpy(&v, p + 2 * k, sizeof v);
            carry |= (uint16_t)((v & 0x7C00u) + 0x0400u);
        }
        return !(carry & 0x8000u);
    }
    uint32_t carry = 0;
    for (size_t k = 0; k < count; k++) {
        uint32_t v;
        memcpy(&v, p + 4 * k, sizeof v);
        carry |= (v & 0x7F800000u) + 0x00800000u;
    }
    return !(carry & 0x80000000u);
}

/* int8 nodes: the layer's [m_out] scales at NSCL offset `first` must exist. */
static int scales_fit(const inn_bundle *b, uint32_t first, uint64_t m_out) {
    return b->node_dtype != INN_NODES_I8 || (uint64_t)first + m_out <= b->node_scales_count;
}

/* Strict UTF-8 (what Python's bytes.decode accepts): no overlong forms, surrogates or values past U+10FFFF.
 * Names a reader turns into strings must be valid, or the readers would disagree about the same file. */
static int utf8_valid(const uint8_t *p, size_t n) {
    size_t i = 0;
    while (i < n) {
        uint8_t c = p[i];
        size_t len = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 0;
        if (len == 0 || len > n - i) return 0;
        uint32_t cp = len == 1 ? c : len == 2 ? c & 0x1Fu : len == 3 ? c & 0x0Fu : c & 0x07u;
        for (size_t k = 1; k < len; k++) {
            if ((p[i + k] & 0xC0) != 0x80) return 0;
            cp = cp << 6 | (p[i + k] & 0x3Fu);
        }
        static const uint32_t least[5] = {0, 0, 0x80, 0x800, 0x10000};
        if (cp < least[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
        i += len;
    }
    return 1;
}

/* A name in NAME: inside the section and valid UTF-8. */
static inn_status check_name(const inn_bundle *b, uint32_t off, uint32_t len) {
    if ((uint64_t)off + len > b->names_size) return INN_ERR_RANGE;
    return len == 0 || utf8_valid(b->names + off, len) ? INN_OK : INN_ERR_FORMAT;
}

/* A layer's weight nodes: m_out x (m_in per block) x taps for a dense layer, m_out x taps for the others. 0 if the
 * count overflows size_t (the callers keep m_out and m_in within INN_MAX_DIM, so the casts are exact). */
static int weight_node_count(uint32_t kind, uint64_t m_out, uint64_t m_in_per_block, uint32_t taps, size_t *count) {
    size_t rows;
    return inn_mul((size_t)m_out, kind == INN_KIND_DENSE ? (size_t)m_in_per_block : 1u, &rows) &&
           inn_mul(rows, taps, count);
}

/* Whether a layer stores bias nodes (an affine layer always does: its shift). */
static int has_bias_nodes(layer_rec r) { return (r.flags & 1u) || r.kind == INN_KIND_AFFINE; }

static inn_status check_layers(const inn_bundle *b) {
    size_t node_count = b->nodes_size / inn_node_size((inn_node_dtype)b->node_dtype);
    for (uint32_t l = 0; l < b->layer_count; l++) {
        layer_rec r = layer_at(b, l);
        uint32_t kind = r.kind, blocks = r.blocks, taps = r.taps;
        uint32_t of = r.out_first, oc = r.out_count, inf = r.in_first, ic = r.in_count;
        uint64_t woff = r.weight_off, boff = r.bias_off;
        inn_status st;
        if (kind < INN_KIND_DENSE || kind > INN_KIND_AFFINE) return INN_ERR_FORMAT;
        if (blocks == 0 || taps == 0 || taps > INN_MAX_DIM || blocks > INN_MAX_DIM) return INN_ERR_RANGE;
        if (oc == 0 || (uint64_t)of + oc > b->piece_count || (uint64_t)inf + ic > b->piece_count) return INN_ERR_RANGE;
        if ((st = check_name(b, r.name_off, r.name_len))) return st;
        uint64_t m_out = 0, m_in = 0;
        for (uint32_t k = 0; k < oc; k++) {
            if (piece(b, of + k) >= b->group_count) return INN_ERR_RANGE;
            m_out += group_nodes(b, piece(b, of + k));
        }
        for (uint32_t k = 0; k < ic; k++) {
            if (piece(b, inf + k) >= b->group_count) return INN_ERR_RANGE;
            m_in += group_nodes(b, piece(b, inf + k));
        }
        if (m_out > INN_MAX_DIM || m_in > INN_MAX_DIM) return INN_ERR_RANGE;
        size_t wcount;
        if (kind == INN_KIND_DENSE) {
            if (ic == 0 || m_out % blocks || m_in % blocks) return INN_ERR_FORMAT;
        } else if (ic != 0 || blocks != 1 || (kind == INN_KIND_AFFINE && taps != 1)) {
            return INN_ERR_FORMAT;
        }
        if (!weight_node_count(kind, m_out, m_in / blocks, taps, &wcount)) return INN_ERR_OVERFLOW;
        if (woff > node_count || wcount > node_count - woff || !scales_fit(b, r.weight_scale, m_out)) return INN_ERR_RANGE;
        if (has_bias_nodes(r)) {
            if (boff > node_count || m_out > node_count - boff || !scales_fit(b, r.bias_scale, m_out))
                return INN_ERR_RANGE;
        }
    }
    return INN_OK;
}

static inn_status check_buckets(const inn_bundle *b) {
    for (uint32_t k = 0; k < b->bucket_count; k++) {
        for (uint32_t g = 0; g < b->group_count; g++) {
            size_t at = (size_t)k * b->group_count + g;
            uint32_t n = rd32(b->buckets + at * 4);
            uint32_t ref = rd32(b->buckets + ((size_t)b->bucket_count * b->group_count + at) * 4);
            uint32_t m = group_nodes(b, g);
            if (!group_resizable(b, g)) {
                if (n != m || ref != INN_UNIFORM) return INN_ERR_FORMAT;
                continue;
            }
            /* at most INN_MAX_UPSAMPLE points per node: weights bounded by the nodes they come from */
            if (n < 2 || n > INN_MAX_DIM || (uint64_t)n > (uint64_t)m * INN_MAX_UPSAMPLE) return INN_ERR_RANGE;
            if (ref == INN_UNIFORM) {
                if (b->quadrature == INN_QUAD_SIMPSON && n < 3) return INN_ERR_RANGE;
                continue;
            }
            if (b->quadrature == INN_QUAD_SIMPSON) return INN_ERR_PARTITION;
            if ((uint64_t)ref + n > b->partitions_count) return INN_ERR_RANGE;
            inn_status st = inn_check_partition((const float *)b->partitions + ref, n);
            if (st != INN_OK) return st;
        }
    }
    return INN_OK;
}

/* Per-width normalisation (1.2): NORM, a table of {u32 bucket, u32 layer, u32 first, u32 reserved}
 * sorted by (bucket, layer), each naming a dense or depthwise layer with a bias and the float32
 * a[n_out], c[n_out] at NRMV[first]. Present exactly when the header flag says so. */
static inn_status open_norms(inn_bundle *b, int flagged) {
    section norm, vals;
    int has_norm = find(b, "NORM", &norm) == INN_OK, has_vals = find(b, "NRMV", &vals) == INN_OK;
    if (!flagged) return has_norm || has_vals ? INN_ERR_FORMAT : INN_OK;
    if (!has_norm || !has_vals) return INN_ERR_MISSING;
    if (vals.elem != INN_NODES_F32 || vals.size % 4 || !all_finite(vals.p, vals.size / 4, 0)) return INN_ERR_FORMAT;
    uint32_t extra;
    inn_status st = table(&norm, 16, &b->norm_count, &extra, &b->norms);
    if (st) return st;
    b->norm_values = vals.p;
    b->norm_values_count = vals.size / 4;
    uint64_t prev = 0;
    for (uint32_t k = 0; k < b->norm_count; k++) {
        const uint8_t *r = b->norms + (size_t)k * 16;
        uint32_t bucket = rd32(r), layer = rd32(r + 4), first = rd32(r + 8);
        if (bucket >= b->bucket_count || layer >= b->layer_count) return INN_ERR_RANGE;
        uint64_t key = (uint64_t)bucket << 32 | layer;
        if (rd32(r + 12) != 0 || (k > 0 && key <= prev)) return INN_ERR_FORMAT;
        prev = key;
        layer_rec lr = layer_at(b, layer);
        if (lr.kind == INN_KIND_AFFINE || !(lr.flags & 1u)) return INN_ERR_FORMAT;
        inn_layer_info li;
        if ((st = inn_layer_info_get(b, bucket, layer, &li))) return st;
        if ((uint64_t)first + 2u * (uint64_t)li.n_out > b->norm_values_count) return INN_ERR_RANGE;
    }
    return INN_OK;
}

static double rd_f64(const uint8_t *p) {
    uint64_t bits = rd64(p);
    double v;
    memcpy(&v, &bits, sizeof v);
    return v;
}
static int finite_f64(const uint8_t *p) { return (rd64(p) >> 52 & 0x7FFu) != 0x7FFu; }

/* Bucket records (1.3): BKIN, a table of one 24-byte record per bucket, {u32 name offset, u32 name length
 * (in NAME), u32 flags (INN_BUCKET_RATIO), u32 reserved, f64 ratio}. Optional: bundles before 1.3 lack it. */
#define BKIN_SIZE 24
static inn_status open_bucket_infos(inn_bundle *b) {
    section bkin;
    uint32_t count, extra;
    const uint8_t *rows;
    if (find(b, "BKIN", &bkin)) return INN_OK;
    inn_status st = table(&bkin, BKIN_SIZE, &count, &extra, &rows);
    if (st) return st;
    if (count != b->bucket_count || extra != 0) return INN_ERR_FORMAT;
    for (uint32_t k = 0; k < count; k++) {
        const uint8_t *r = rows + (size_t)k * BKIN_SIZE;
        uint32_t flags = rd32(r + 8);
        if ((st = check_name(b, rd32(r), rd32(r + 4)))) return st;
        if ((flags & ~INN_BUCKET_RATIO) || rd32(r + 12) != 0) return INN_ERR_FORMAT;
        if ((flags & INN_BUCKET_RATIO) ? !finite_f64(r + 16) : rd64(r + 16) != 0) return INN_ERR_FORMAT;
    }
    b->bucket_infos = rows;
    return INN_OK;
}

/* Costs (1.3): COST, a table of 56-byte rows {u32 bucket, u32 flags (INN_COST_*), char runtime[16] (NUL-padded),
 * u64 weights_bytes, u64 file_bytes, u64 arena_bytes, f64 accuracy}, sorted by (bucket, runtime bytes) and
 * unique; fields without their flag are zero, accuracy is finite. Optional. */
#define COST_SIZE 56
#define COST_KNOWN (INN_COST_WEIGHTS_BYTES | INN_COST_FILE_BYTES | INN_COST_ARENA_BYTES | INN_COST_ACCURACY)

/* A runtime name field: 1..16 bytes of UTF-8, NUL-padded (nothing after the first NUL). */
static int runtime_name_valid(const uint8_t *name) {
    size_t len = 0;
    while (len < INN_RUNTIME_NAME && name[len]) len++;
    for (size_t k = len; k < INN_RUNTIME_NAME; k++)
        if (name[k]) return 0;
    return len > 0 && utf8_valid(name, len);
}

static inn_status open_costs(inn_bundle *b) {
    section cost;
    uint32_t extra;
    const uint8_t *rows;
    if (find(b, "COST", &cost)) return INN_OK;
    inn_status st = table(&cost, COST_SIZE, &b->cost_count, &extra, &rows);
    if (st) return st;
    if (extra != 0) return INN_ERR_FORMAT;
    for (uint32_t k = 0; k < b->cost_count; k++) {
        const uint8_t *r = rows + (size_t)k * COST_SIZE;
        uint32_t flags = rd32(r + 4);
        if (rd32(r) >= b->bucket_count) return INN_ERR_RANGE;
        if ((flags & ~COST_KNOWN) || !runtime_name_valid(r + 8)) return INN_ERR_FORMAT;
        static const uint32_t bits[4] = {INN_COST_WEIGHTS_BYTES, INN_COST_FILE_BYTES, INN_COST_ARENA_BYTES,
                                         INN_COST_ACCURACY};
        for (int f = 0; f < 4; f++)
            if (!(flags & bits[f]) && rd64(r + 24 + 8 * f) != 0) return INN_ERR_FORMAT;
        if ((flags & INN_COST_ACCURACY) && !finite_f64(r + 48)) return INN_ERR_FORMAT;
        if (k > 0) { /* sorted and unique */
            const uint8_t *prev = r - COST_SIZE;
            if (rd32(prev) > rd32(r) || (rd32(prev) == rd32(r) && memcmp(prev + 8, r + 8, INN_RUNTIME_NAME) >= 0))
                return INN_ERR_FORMAT;
        }
    }
    b->costs = rows;
    return INN_OK;
}

/* MACs (1.4): MACS, a table of one non-zero u64 per bucket (extra zero). Optional. */
static inn_status open_macs(inn_bundle *b) {
    section macs;
    uint32_t count, extra;
    const uint8_t *rows;
    if (find(b, "MACS", &macs)) return INN_OK;
    inn_status st = table(&macs, 8, &count, &extra, &rows);
    if (st) return st;
    if (count != b->bucket_count || extra != 0) return INN_ERR_FORMAT;
    for (uint32_t k = 0; k < count; k++)
        if (rd64(rows + 8 * (size_t)k) == 0) return INN_ERR_FORMAT;
    b->macs = rows;
    return INN_OK;
}

/* Cascades (1.4): CSCD, {u32 cascade count, u32 step count}, then 56-byte records {u32 name offset, u32 name
 * length (NAME), u32 score, u32 target, u32 first step, u32 step count, u32 flags (INN_CASCADE_*), u32 reserved,
 * f64 target value, f64 accuracy, f64 mean MACs}, then 8-byte steps {u32 bucket, f32 threshold}. Each record's
 * steps follow the previous record's; together they are all the steps. Optional. */
#define CASCADE_SIZE 56
#define STEP_SIZE 8
static float rd_f32(const uint8_t *p) {
    uint32_t bits = rd32(p);
    float v;
    memcpy(&v, &bits, sizeof v);
    return v;
}
static int number_ok(const uint8_t *p) { return finite_f64(p) && rd_f64(p) >= 0.0; }

static inn_status check_cascade(const inn_bundle *b, const uint8_t *r, const uint8_t *steps, uint32_t first_free,
                                uint32_t step_total) {
    uint32_t len = rd32(r + 4), score = rd32(r + 8), target = rd32(r + 12), first = rd32(r + 16), n = rd32(r + 20);
    uint32_t flags = rd32(r + 24);
    inn_status st = check_name(b, rd32(r), len);
    if (st) return st;
    if (first != first_free || n > step_total - first) return INN_ERR_FORMAT;
    if (score < INN_SCORE_MAX_PROB || score > INN_SCORE_MARGIN || target > INN_TARGET_MEAN_MACS) return INN_ERR_FORMAT;
    if ((flags & ~(INN_CASCADE_ACCURACY | INN_CASCADE_MACS)) || rd32(r + 28) != 0) return INN_ERR_FORMAT;
    if (!(flags & INN_CASCADE_ACCURACY) && rd_f64(r + 40) != 0.0) return INN_ERR_FORMAT;
    if (!(flags & INN_CASCADE_MACS) && rd_f64(r + 48) != 0.0) return INN_ERR_FORMAT;
    for (uint32_t j = 0; j < n; j++)
        if (rd32(steps + (size_t)(first + j) * STEP_SIZE) >= b->bucket_count) return INN_ERR_RANGE;
    if (len == 0 || len > INN_CASCADE_NAME || n == 0) return INN_ERR_FORMAT;
    for (uint32_t j = 0; j < n; j++) { /* distinct buckets; thresholds in [0, 1], the last one 0 */
        const uint8_t *s = steps + (size_t)(first + j) * STEP_SIZE;
        float t = rd_f32(s + 4);
        if (!(t >= 0.0f && t <= 1.0f) || (j == n - 1 && t != 0.0f)) return INN_ERR_FORMAT;
        for (uint32_t i = 0; i < j; i++)
            if (rd32(steps + (size_t)(first + i) * STEP_SIZE) == rd32(s)) return INN_ERR_FORMAT;
    }
    if (!number_ok(r + 32) || ((flags & INN_CASCADE_ACCURACY) && !number_ok(r + 40)) ||
        ((flags & INN_CASCADE_MACS) && !number_ok(r + 48)))
        return INN_ERR_FORMAT;
    return INN_OK;
}

static inn_status open_cascades(inn_bundle *b) {
    section cscd;
    if (find(b, "CSCD", &cscd)) return INN_OK;
    if (cscd.size < 8) return INN_ERR_TRUNCATED;
    uint32_t count = rd32(cscd.p), step_total = rd32(cscd.p + 4);
    if (8 + (uint64_t)count * CASCADE_SIZE + (uint64_t)step_total * STEP_SIZE > cscd.size) return INN_ERR_TRUNCATED;
    const uint8_t *steps = cscd.p + 8 + (size_t)count * CASCADE_SIZE;
    uint32_t first_free = 0;
    for (uint32_t i = 0; i < count; i++) {
        const uint8_t *r = cscd.p + 8 + (size_t)i * CASCADE_SIZE;
        inn_status st = check_cascade(b, r, steps, first_free, step_total);
        if (st) return st;
        first_free += rd32(r + 20);
    }
    if (first_free != step_total) return INN_ERR_FORMAT;
    for (uint32_t i = 0; i < count; i++) /* distinct names */
        for (uint32_t j = 0; j < i; j++) {
            const uint8_t *ri = cscd.p + 8 + (size_t)i * CASCADE_SIZE, *rj = cscd.p + 8 + (size_t)j * CASCADE_SIZE;
            if (rd32(ri + 4) == rd32(rj + 4) && !memcmp(b->names + rd32(ri), b->names + rd32(rj), rd32(ri + 4)))
                return INN_ERR_FORMAT;
        }
    b->cascades = cscd.p + 8;
    b->cascade_count = count;
    b->cascade_step_count = step_total;
    return INN_OK;
}

inn_status inn_bucket_macs(const inn_bundle *b, uint32_t bucket, uint64_t *macs) {
    if (!b || !b->data || !macs) return INN_ERR_ARG;
    if (!b->macs || bucket >= b->bucket_count) return INN_ERR_MISSING;
    *macs = rd64(b->macs + 8 * (size_t)bucket);
    return INN_OK;
}

inn_status inn_cascade_count(const inn_bundle *b, uint32_t *count) {
    if (!b || !b->data || !count) return INN_ERR_ARG;
    *count = b->cascade_count;
    return INN_OK;
}

inn_status inn_cascade_get(const inn_bundle *b, uint32_t index, inn_cascade *c) {
    if (!b || !b->data || !c) return INN_ERR_ARG;
    if (index >= b->cascade_count) return INN_ERR_MISSING;
    const uint8_t *r = b->cascades + (size_t)index * CASCADE_SIZE;
    memset(c, 0, sizeof *c);
    c->name = (const char *)b->names + rd32(r);
    c->name_len = rd32(r + 4);
    c->score = rd32(r + 8);
    c->target = rd32(r + 12);
    c->step_count = rd32(r + 20);
    c->known = rd32(r + 24);
    c->target_value = rd_f64(r + 32);
    c->accuracy = rd_f64(r + 40);
    c->mean_macs = rd_f64(r + 48);
    return INN_OK;
}

inn_status inn_cascade_step(const inn_bundle *b, uint32_t cascade, uint32_t step, uint32_t *bucket, float *threshold) {
    if (!b || !b->data || !bucket || !threshold) return INN_ERR_ARG;
    if (cascade >= b->cascade_count) return INN_ERR_MISSING;
    const uint8_t *r = b->cascades + (size_t)cascade * CASCADE_SIZE;
    if (step >= rd32(r + 20)) return INN_ERR_MISSING;
    const uint8_t *s = b->cascades + (size_t)b->cascade_count * CASCADE_SIZE + (size_t)(rd32(r + 16) + step) * STEP_SIZE;
    *bucket = rd32(s);
    *threshold = rd_f32(s + 4);
    return INN_OK;
}

size_t inn_bundle_sizeof(void) { return sizeof(inn_bundle); }

inn_status inn_bucket_info_get(const inn_bundle *b, uint32_t bucket, inn_bucket_info *info) {
    if (!b || !b->data || !info) return INN_ERR_ARG;
    if (bucket >= b->bucket_count) return INN_ERR_MISSING;
    memset(info, 0, sizeof *info);
    if (!b->bucket_infos) return INN_OK; /* before 1.3: nothing known */
    const uint8_t *r = b->bucket_infos + (size_t)bucket * BKIN_SIZE;
    info->name_len = rd32(r + 4);
    info->name = info->name_len ? (const char *)b->names + rd32(r) : NULL;
    info->has_ratio = rd32(r + 8) & INN_BUCKET_RATIO;
    info->ratio = rd_f64(r + 16);
    return INN_OK;
}

inn_status inn_cost_count(const inn_bundle *b, uint32_t *count) {
    if (!b || !b->data || !count) return INN_ERR_ARG;
    *count = b->cost_count;
    return INN_OK;
}

static void cost_at(const inn_bundle *b, uint32_t index, inn_bucket_cost *c) {
    const uint8_t *r = b->costs + (size_t)index * COST_SIZE;
    memset(c, 0, sizeof *c);
    c->bucket = rd32(r);
    c->known = rd32(r + 4);
    memcpy(c->runtime, r + 8, INN_RUNTIME_NAME);
    c->weights_bytes = rd64(r + 24);
    c->file_bytes = rd64(r + 32);
    c->arena_bytes = rd64(r + 40);
    c->accuracy = rd_f64(r + 48);
}

inn_status inn_cost_list(const inn_bundle *b, uint32_t index, inn_bucket_cost *cost) {
    if (!b || !b->data || !cost) return INN_ERR_ARG;
    if (index >= b->cost_count) return INN_ERR_MISSING;
    cost_at(b, index, cost);
    return INN_OK;
}

inn_status inn_cost_find(const inn_bundle *b, uint32_t bucket, const char *runtime, inn_bucket_cost *cost) {
    if (!b || !b->data || !runtime || !cost) return INN_ERR_ARG;
    size_t len = strlen(runtime);
    if (len == 0 || len > INN_RUNTIME_NAME) return INN_ERR_ARG;
    uint8_t key[INN_RUNTIME_NAME] = {0};
    memcpy(key, runtime, len);
    uint32_t lo = 0, hi = b->cost_count; /* binary search of the sorted rows */
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        const uint8_t *r = b->costs + (size_t)mid * COST_SIZE;
        int c = rd32(r) < bucket ? -1 : rd32(r) > bucket ? 1 : memcmp(r + 8, key, INN_RUNTIME_NAME);
        if (c == 0) {
            cost_at(b, mid, cost);
            return INN_OK;
        }
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return INN_ERR_MISSING;
}

/* a[n_out] of (bucket, layer) (c follows it), or NULL: binary search of the sorted records. */
static const float *find_norm(const inn_bundle *b, uint32_t bucket, uint32_t layer) {
    uint64_t key = (uint64_t)bucket << 32 | layer;
    uint32_t lo = 0, hi = b->norm_count;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        const uint8_t *r = b->norms + (size_t)mid * 16;
        uint64_t at = (uint64_t)rd32(r) << 32 | rd32(r + 4);
        if (at == key) return (const float *)b->norm_values + rd32(r + 8);
        if (at < key) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

inn_status inn_layer_norm(const inn_bundle *b, uint32_t bucket, uint32_t layer, const float **a, const float **c,
                          uint32_t *n_out) {
    if (!b || !b->data || !a || !c || !n_out) return INN_ERR_ARG;
    inn_layer_info li;
    inn_status st = inn_layer_info_get(b, bucket, layer, &li);
    if (st) return st;
    const float *v = find_norm(b, bucket, layer);
    if (!v) return INN_ERR_MISSING;
    *a = v;
    *c = v + li.n_out;
    *n_out = li.n_out;
    return INN_OK;
}

/* Bytes the open checks between two done() calls: small enough that a caller dropping pages behind it never
 * holds much of a large section, large enough that the calls cost nothing (a multiple of every node size). */
#define OPEN_STRETCH ((size_t)1 << 20)

/* CRC state (CRC-32C when `castagnoli`, not inverted) `state` advanced over bytes [off, off + len) of d, read in
 * stretches, each reported to `done` once read; `finite` (or NULL) is cleared when the bytes hold an inf or NaN
 * of `elem` (float32 / float16 nodes: the same pass, so no second read of the nodes). A whole section's
 * checksum is ~section_state(..., 0xFFFFFFFF, ...); a share of NODE continues from its own start state. */
static uint32_t section_state(const uint8_t *d, size_t off, size_t len, int castagnoli, uint32_t state, uint32_t elem,
                              int *finite, inn_read_done done, void *ctx) {
    const size_t esize = inn_node_size((inn_node_dtype)elem);
    size_t at = 0;
    do { /* an empty section too: its CRC is that of nothing */
        size_t n = len - at < OPEN_STRETCH ? len - at : OPEN_STRETCH;
        state = inn_crc_update(castagnoli, state, d + off + at, n);
        if (finite && *finite) *finite = all_finite(d + off + at, n / esize, elem == INN_NODES_F16);
        if (done) done(ctx, off + at, off + at + n);
        at += n;
    } while (at < len);
    return state;
}

inn_status inn_bundle_open(inn_bundle *b, const void *data, size_t size) {
    return inn_bundle_open_ex(b, data, size, NULL, NULL);
}

static inn_status open_bundle(inn_bundle *b, const void *data, size_t size, inn_read_done done, void *ctx,
                              int defer_nodes);

inn_status inn_bundle_open_ex(inn_bundle *b, const void *data, size_t size, inn_read_done done, void *ctx) {
    return open_bundle(b, data, size, done, ctx, 0);
}

inn_status inn_bundle_open_deferred(inn_bundle *b, const void *data, size_t size, inn_read_done done, void *ctx) {
    return open_bundle(b, data, size, done, ctx, 1);
}

/* Whether the section checksums are CRC-32C (header flag bit 1), for a bundle that opened. */
static int castagnoli_of(const inn_bundle *b) { return (rd32(b->data + 32) & INN_FLAG_CRC32C) != 0; }

/* Where chunk k of `parts` of NODE starts (k == parts: the section's end): floor(size * k / parts) without
 * overflow, down to a multiple of 64 bytes (so of every node size). Non-decreasing in k. */
static size_t chunk_start(const inn_bundle *b, uint32_t k, uint32_t parts) {
    uint64_t n = b->nodes_size;
    return k == parts ? (size_t)n : (size_t)(n / parts * k + n % parts * k / parts) & ~(size_t)63;
}

/* Chunk `part` of `parts` of NODE: [*lo, *hi) in section bytes. */
static void node_chunk(const inn_bundle *b, uint32_t part, uint32_t parts, size_t *lo, size_t *hi) {
    *lo = chunk_start(b, part, parts);
    *hi = chunk_start(b, part + 1, parts);
}

inn_status inn_bundle_check_nodes(const inn_bundle *b, uint32_t part, uint32_t parts, uint32_t *state) {
    if (!b || !b->data || !state || parts == 0 || part >= parts) return INN_ERR_ARG;
    size_t lo, hi;
    node_chunk(b, part, parts, &lo, &hi);
    int finite = 1, float_nodes = b->node_dtype == INN_NODES_F32 || b->node_dtype == INN_NODES_F16;
    *state = section_state(b->data, (size_t)(b->nodes - b->data) + lo, hi - lo, castagnoli_of(b),
                           part == 0 ? 0xFFFFFFFFu : 0u, b->node_dtype, float_nodes ? &finite : NULL, NULL, NULL);
    return finite ? INN_OK : INN_ERR_FORMAT;
}

inn_status inn_bundle_nodes_verified(inn_bundle *b, const uint32_t *states, uint32_t parts) {
    if (!b || !b->data || !states || parts == 0) return INN_ERR_ARG;
    int castagnoli = castagnoli_of(b);
    uint32_t state = states[0];
    for (uint32_t p = 1; p < parts; p++) {
        size_t lo, hi;
        node_chunk(b, p, parts, &lo, &hi);
        state = inn_crc_shift(castagnoli, state, hi - lo) ^ states[p];
    }
    if (~state != b->nodes_crc) return INN_ERR_CHECKSUM;
    b->nodes_pending = 0;
    return INN_OK;
}

static inn_status open_bundle(inn_bundle *b, const void *data, size_t size, inn_read_done done, void *ctx,
                              int defer_nodes) {
    if (!b) return INN_ERR_ARG;
    memset(b, 0, sizeof *b);
    if (!data || (uintptr_t)data % INN_DATA_ALIGN) return INN_ERR_ARG; /* float32 values are read in place */
    const uint8_t *d = (const uint8_t *)data;
    if (size < HEADER_SIZE) return size >= 4 && memcmp(d, "INNB", 4) ? INN_ERR_MAGIC : INN_ERR_TRUNCATED;
    if (memcmp(d, "INNB", 4) != 0) return INN_ERR_MAGIC;
    if (inn_crc32(d, 60) != rd32(d + 60)) return INN_ERR_CHECKSUM;
    if ((d[4] | d[5] << 8) != INN_VERSION_MAJOR) return INN_ERR_VERSION;
    if (rd32(d + 8) != HEADER_SIZE) return INN_ERR_FORMAT;
    uint32_t count = rd32(d + 12), flags = rd32(d + 32);
    uint64_t table_off = rd64(d + 16), file_size = rd64(d + 24);
    if (flags & ~(INN_FLAG_NORM | INN_FLAG_CRC32C)) return INN_ERR_VERSION; /* a feature this reader does not know */
    /* the header (checked above) is always CRC-32, so that a reader that does not know CRC-32C reads the flag
     * and reports VERSION; the table and the sections are CRC-32C from 1.4 on */
    int castagnoli = (flags & INN_FLAG_CRC32C) != 0;
    if (file_size > size) return INN_ERR_TRUNCATED;
    if (count == 0 || count > MAX_SECTIONS || table_off % 64 || table_off < HEADER_SIZE) return INN_ERR_FORMAT;
    if (table_off > file_size || (uint64_t)count * ENTRY_SIZE > file_size - table_off) return INN_ERR_TRUNCATED;
    if (~inn_crc_update(castagnoli, 0xFFFFFFFFu, d + table_off, (size_t)count * ENTRY_SIZE) != rd32(d + 36))
        return INN_ERR_CHECKSUM;
    int nodes_finite = 1; /* float nodes: no inf or NaN (reported below, after the structure's own checks) */
    uint32_t nodes_crc = 0, pending = 0; /* a deferred NODE check: its stored checksum */
    for (uint32_t i = 0; i < count; i++) {
        const uint8_t *e = d + table_off + (size_t)i * ENTRY_SIZE;
        uint64_t off = rd64(e + 8), len = rd64(e + 16);
        uint32_t elem = rd32(e + 24);
        if (off % 64 || off < HEADER_SIZE) return INN_ERR_FORMAT;
        if (off > file_size || len > file_size - off) return INN_ERR_TRUNCATED;
        int is_node = memcmp(e, "NODE", 4) == 0;
        int float_nodes = is_node && (elem == INN_NODES_F32 || elem == INN_NODES_F16);
        if (is_node && defer_nodes) { /* inn_bundle_check_nodes and inn_bundle_nodes_verified check it */
            nodes_crc = rd32(e + 4);
            pending = 1;
        } else if (~section_state(d, (size_t)off, (size_t)len, castagnoli, 0xFFFFFFFFu, elem,
                                  float_nodes ? &nodes_finite : NULL, done, ctx) != rd32(e + 4))
            return INN_ERR_CHECKSUM;
        for (uint32_t j = 0; j < i; j++)
            if (memcmp(e, d + table_off + (size_t)j * ENTRY_SIZE, 4) == 0) return INN_ERR_FORMAT;
    }
    b->data = d;
    b->size = (size_t)file_size;
    b->nodes_crc = nodes_crc;
    b->nodes_pending = pending;
    section info, grps, layr, piec, node, buck, part, name;
    if (find(b, "INFO", &info) || find(b, "GRPS", &grps) || find(b, "LAYR", &layr) || find(b, "PIEC", &piec) ||
        find(b, "NODE", &node) || find(b, "BUCK", &buck)) {
        b->data = NULL;
        return INN_ERR_MISSING;
    }
    inn_status st = INN_OK;
    uint32_t extra;
    if (info.size < 16) st = INN_ERR_TRUNCATED;
    else if ((b->quadrature = rd32(info.p)) > INN_QUAD_RECTANGLE) st = INN_ERR_FORMAT;
    if (!st) st = table(&grps, 8, &b->group_count, &extra, &b->groups);
    if (!st) st = table(&layr, LAYER_SIZE, &b->layer_count, &extra, &b->layers);
    if (!st) st = table(&piec, 4, &b->piece_count, &extra, &b->pieces);
    if (!st && (b->group_count == 0 || b->layer_count == 0)) st = INN_ERR_FORMAT;
    if (!st && (node.elem < INN_NODES_F32 || node.elem > INN_NODES_I8)) st = INN_ERR_FORMAT;
    if (!st && node.elem == INN_NODES_I8) { /* int8 nodes need their scales */
        section nscl;
        if (find(b, "NSCL", &nscl)) st = INN_ERR_MISSING;
        else if (nscl.elem != INN_NODES_F32) st = INN_ERR_FORMAT; /* float32 scales */
        else if (!all_finite(nscl.p, nscl.size / 4, 0)) st = INN_ERR_FORMAT;
        else {
            b->node_scales = nscl.p;
            b->node_scales_count = nscl.size / 4;
        }
    }
    /* finite nodes only: an inf or NaN would reach the int8 conversion */
    if (!st && !nodes_finite) st = INN_ERR_FORMAT;
    if (!st) {
        b->node_dtype = node.elem;
        b->nodes = node.p;
        b->nodes_size = node.size;
        if (!find(b, "PART", &part)) {
            b->partitions = part.p;
            b->partitions_count = part.size / 4;
        }
        if (!find(b, "NAME", &name)) {
            b->names = name.p;
            b->names_size = name.size;
        }
        for (uint32_t g = 0; g < b->group_count && !st; g++) {
            uint32_t m = group_nodes(b, g);
            if (m == 0 || m > INN_MAX_DIM) st = INN_ERR_RANGE;
        }
    }
    if (!st) { /* BUCK: u32 count, u32 groups, sizes[count][groups], partition refs[count][groups] */
        uint32_t groups_in_buckets;
        const uint8_t *rows;
        size_t rec;
        if (buck.size < 8) st = INN_ERR_TRUNCATED;
        else if ((groups_in_buckets = rd32(buck.p + 4)) != b->group_count) st = INN_ERR_FORMAT;
        else if (!inn_mul(b->group_count, 8, &rec)) st = INN_ERR_OVERFLOW;
        else st = table(&buck, rec, &b->bucket_count, &extra, &rows);
        if (!st) b->buckets = rows;
        if (!st && b->bucket_count == 0) st = INN_ERR_MISSING;
    }
    if (!st) st = check_layers(b);
    if (!st) st = check_buckets(b);
    if (!st) st = open_norms(b, (flags & INN_FLAG_NORM) != 0);
    if (!st) st = open_bucket_infos(b);
    if (!st) st = open_costs(b);
    if (!st) st = open_macs(b);
    if (!st) st = open_cascades(b);
    if (st) memset(b, 0, sizeof *b);
    return st;
}

inn_status inn_bundle_group_size(const inn_bundle *b, uint32_t bucket, uint32_t group, uint32_t *n) {
    if (!b || !b->data || !n) return INN_ERR_ARG;
    if (bucket >= b->bucket_count || group >= b->group_count) return INN_ERR_MISSING;
    *n = bucket_size(b, bucket, group);
    return INN_OK;
}

static const float *partition_of(const inn_bundle *b, uint32_t bucket, uint32_t g) {
    uint32_t ref = rd32(b->buckets + ((size_t)b->bucket_count * b->group_count + (size_t)bucket * b->group_count + g) * 4);
    return ref == INN_UNIFORM ? NULL : (const float *)b->partitions + ref;
}

/* Sum of bucket sizes over an axis's pieces. For grouped layers every block boundary in node space
 * must fall on the matching boundary in sample space, or blocks would read each other's nodes. */
static inn_status axis_size(const inn_bundle *b, uint32_t bucket, uint32_t first, uint32_t count, uint32_t blocks,
                            uint32_t *n_out) {
    uint64_t m_total = 0, n_total = 0, m = 0, n = 0;
    for (uint32_t k = 0; k < count; k++) {
        uint32_t g = piece(b, first + k);
        m_total += group_nodes(b, g);
        n_total += bucket_size(b, bucket, g);
    }
    if (n_total > INN_MAX_DIM) return INN_ERR_RANGE;
    if (n_total % blocks) return INN_ERR_FORMAT;
    for (uint32_t k = 0; k < count; k++) {
        uint32_t g = piece(b, first + k);
        m += group_nodes(b, g);
        n += bucket_size(b, bucket, g);
        if ((m * blocks) % m_total == 0 && n * blocks != (m * blocks / m_total) * n_total) return INN_ERR_FORMAT;
    }
    *n_out = (uint32_t)n_total;
    return INN_OK;
}

inn_status inn_layer_info_get(const inn_bundle *b, uint32_t bucket, uint32_t layer, inn_layer_info *info) {
    if (!b || !b->data || !info) return INN_ERR_ARG;
    if (bucket >= b->bucket_count || layer >= b->layer_count) return INN_ERR_MISSING;
    layer_rec r = layer_at(b, layer);
    memset(info, 0, sizeof *info);
    info->kind = r.kind;
    info->blocks = r.blocks;
    info->taps = r.taps;
    info->has_bias = r.flags & 1u;
    uint32_t of = r.out_first, oc = r.out_count, inf = r.in_first, ic = r.in_count;
    for (uint32_t k = 0; k < oc; k++) info->m_out += group_nodes(b, piece(b, of + k));
    for (uint32_t k = 0; k < ic; k++) info->m_in += group_nodes(b, piece(b, inf + k));
    info->m_in /= info->blocks;
    inn_status st = axis_size(b, bucket, of, oc, info->blocks, &info->n_out);
    if (!st && ic) st = axis_size(b, bucket, inf, ic, info->blocks, &info->n_in);
    if (st) return st;
    size_t count = info->n_out, tmp;
    if (info->kind == INN_KIND_DENSE) {
        if (!inn_mul(count, info->n_in / info->blocks, &tmp) || !inn_mul(tmp, info->taps, &count)) return INN_ERR_OVERFLOW;
    } else if (!inn_mul(count, info->taps, &count)) {
        return INN_ERR_OVERFLOW;
    }
    info->weight_count = count;
    info->name = b->names ? (const char *)b->names + r.name_off : NULL;
    info->name_len = b->names ? r.name_len : 0;
    return INN_OK;
}

/* The bytes of b->data holding a layer's nodes (weight and bias, which the writer stores together): [*first,
 * *end). Opening checked that every range lies inside NODE, so nothing here can overflow. `bucket` is any bucket
 * whose layer info is valid (the counts read here are the same at every bucket). */
inn_status inn_layer_node_bytes(const inn_bundle *b, uint32_t bucket, uint32_t layer, size_t *first, size_t *end) {
    inn_layer_info li;
    inn_status st = inn_layer_info_get(b, bucket, layer, &li);
    if (st) return st;
    layer_rec r = layer_at(b, layer);
    size_t elem = inn_node_size((inn_node_dtype)b->node_dtype), base = (size_t)(b->nodes - b->data), count;
    if (!weight_node_count(li.kind, li.m_out, li.m_in, li.taps, &count)) return INN_ERR_OVERFLOW;
    size_t lo = (size_t)r.weight_off, hi = lo + count;
    if (has_bias_nodes(r)) {
        if ((size_t)r.bias_off < lo) lo = (size_t)r.bias_off;
        if ((size_t)r.bias_off + li.m_out > hi) hi = (size_t)r.bias_off + li.m_out;
    }
    *first = base + lo * elem;
    *end = base + hi * elem;
    return INN_OK;
}

/* Scratch (from an 8-aligned start): out taps and in taps (idx), their weights (w, 8-aligned), the in
 * quadrature (q), then the resampler's rows; 64 bytes of slack (8 of them to align an unaligned
 * scratch). Every sum checked: with a 32-bit size_t a large layer would otherwise wrap to a small size. */
typedef struct {
    size_t w, q, rest, total; /* byte offsets of w, q and the rows; total bytes */
} scratch_plan;

static inn_status layer_scratch_plan(const inn_layer_info *li, scratch_plan *p) {
    size_t n_rows = (size_t)li->n_out + li->n_in, idx_b, w_b, q_b, rows, tmp;
    if (!inn_mul(n_rows, INN_TAPS * sizeof(int32_t), &idx_b) || !inn_mul(n_rows, INN_TAPS * sizeof(double), &w_b) ||
        !inn_mul(li->n_in, sizeof(double), &q_b) || !inn_align8(idx_b, &p->w) || !inn_add(p->w, w_b, &p->q) ||
        !inn_add(p->q, q_b, &tmp) || !inn_align8(tmp, &p->rest))
        return INN_ERR_OVERFLOW;
    if (li->kind == INN_KIND_DENSE) {
        rows = inn_dense_scratch(li->n_in / li->blocks, li->m_in, li->taps);
        if (!rows || !inn_mul(rows, sizeof(float), &rows)) return INN_ERR_OVERFLOW;
    } else { /* one float row and one int8 row of taps (taps <= INN_MAX_DIM: no overflow) */
        rows = align8((size_t)li->taps * sizeof(float)) + li->taps;
    }
    if (!inn_add(p->rest, rows, &tmp) || !inn_add(tmp, 64, &p->total)) return INN_ERR_OVERFLOW;
    return INN_OK;
}

static inn_status layer_scratch(const inn_layer_info *li, size_t *bytes) {
    scratch_plan p;
    inn_status st = layer_scratch_plan(li, &p);
    if (!st) *bytes = p.total;
    return st;
}

inn_status inn_bundle_scratch_size(const inn_bundle *b, uint32_t bucket, size_t *bytes) {
    if (!b || !b->data || !bytes) return INN_ERR_ARG;
    if (bucket >= b->bucket_count) return INN_ERR_MISSING;
    *bytes = 0;
    for (uint32_t l = 0; l < b->layer_count; l++) {
        inn_layer_info li;
        size_t need;
        inn_status st = inn_layer_info_get(b, bucket, l, &li);
        if (!st) st = layer_scratch(&li, &need);
        if (st) return st;
        if (need > *bytes) *bytes = need;
    }
    return INN_OK;
}

/* Fill one axis (the layer's pieces) into idx/w/q tables; node indices offset per piece. */
static inn_status build_axis(const inn_bundle *b, uint32_t bucket, uint32_t first, uint32_t count, int32_t *idx,
                             double *w, double *q) {
    uint32_t row = 0, node0 = 0;
    for (uint32_t k = 0; k < count; k++) {
        uint32_t g = piece(b, first + k), m = group_nodes(b, g), n = bucket_size(b, bucket, g);
        int32_t *pi = idx + (size_t)row * INN_TAPS;
        double *pw = w + (size_t)row * INN_TAPS;
        if (group_resizable(b, g)) {
            const float *pts = partition_of(b, bucket, g);
            inn_status st = inn_taps(pts, n, m, pi, pw);
            if (!st && q) st = inn_quadrature_weights(pts, n, (inn_quadrature)b->quadrature, q + row);
            if (st) return st;
        } else {
            for (uint32_t r = 0; r < n; r++) {
                for (int t = 0; t < INN_TAPS; t++) {
                    pi[(size_t)r * INN_TAPS + t] = (int32_t)r;
                    pw[(size_t)r * INN_TAPS + t] = t == 0 ? 1.0 : 0.0;
                }
                if (q) q[row + r] = 1.0;
            }
        }
        for (size_t r = 0; r < (size_t)n * INN_TAPS; r++) pi[r] += (int32_t)node0;
        row += n;
        node0 += m;
    }
    return INN_OK;
}

/* One node tensor of a layer: `offset` in node elements, `scale_first` its first NSCL scale (int8 only). */
static inn_nodes layer_nodes(const inn_bundle *b, uint64_t offset, uint32_t scale_first) {
    const inn_node_dtype dtype = (inn_node_dtype)b->node_dtype;
    inn_nodes n = {b->nodes + (size_t)offset * inn_node_size(dtype), dtype, NULL, 0};
    if (b->node_dtype == INN_NODES_I8) n.scales = (const float *)b->node_scales + scale_first;
    return n;
}

inn_status inn_materialize(const inn_bundle *b, uint32_t bucket, uint32_t layer, inn_layout layout, inn_dtype dtype,
                           void *weight_out, size_t weight_bytes, float *scales_out, size_t scales_bytes,
                           float *bias_out, size_t bias_bytes, void *scratch, size_t scratch_bytes) {
    if (b && b->data && b->nodes_pending) return INN_ERR_UNVERIFIED;
    return inn_materialize_any(b, bucket, layer, layout, dtype, weight_out, weight_bytes, scales_out, scales_bytes,
                               bias_out, bias_bytes, scratch, scratch_bytes);
}

inn_status inn_materialize_any(const inn_bundle *b, uint32_t bucket, uint32_t layer, inn_layout layout,
                               inn_dtype dtype, void *weight_out, size_t weight_bytes, float *scales_out,
                               size_t scales_bytes, float *bias_out, size_t bias_bytes, void *scratch,
                               size_t scratch_bytes) {
    if (!b || !b->data || !weight_out || !scratch || layout > INN_LAYOUT_ITO || dtype > INN_I8) return INN_ERR_ARG;
    inn_layer_info li;
    inn_status st = inn_layer_info_get(b, bucket, layer, &li);
    if (st) return st;
    if (li.kind == INN_KIND_AFFINE && dtype != INN_F32) return INN_ERR_ARG;
    size_t wbytes;
    scratch_plan plan;
    if ((st = layer_scratch_plan(&li, &plan))) return st;
    if (scratch_bytes < plan.total) return INN_ERR_BUFFER;
    if (!inn_mul(li.weight_count, dtype == INN_I8 ? 1 : 4, &wbytes)) return INN_ERR_OVERFLOW;
    if (weight_bytes < wbytes) return INN_ERR_BUFFER;
    /* the channel vectors: n_out floats each (n_out <= INN_MAX_DIM, so their bytes cannot overflow) */
    size_t vec_bytes = (size_t)li.n_out * sizeof(float);
    if (dtype == INN_I8 && (!scales_out || scales_bytes < vec_bytes)) return INN_ERR_BUFFER;
    if (bias_out && (li.has_bias || li.kind == INN_KIND_AFFINE) && bias_bytes < vec_bytes) return INN_ERR_BUFFER;

    layer_rec r = layer_at(b, layer);
    /* from the first 8-aligned byte (the plan's slack covers the up to 7 skipped) */
    size_t skip = (size_t)(align8((uintptr_t)scratch) - (uintptr_t)scratch);
    uint8_t *s = (uint8_t *)scratch + skip;
    int32_t *idx = (int32_t *)s;
    double *w = (double *)(s + plan.w);
    double *q = (double *)(s + plan.q);
    uint8_t *rest = s + plan.rest;
    if ((st = build_axis(b, bucket, r.out_first, r.out_count, idx, w, NULL))) return st;
    inn_axis out = {idx, w, NULL, li.n_out};
    inn_nodes nodes = layer_nodes(b, r.weight_off, r.weight_scale);
    const float *norm = find_norm(b, bucket, layer);
    inn_sink sink = {layout, dtype, weight_out, li.weight_count, scales_out, li.n_out, li.n_out, norm, NULL};
    float *rowf = (float *)rest;
    int8_t *qrow = (int8_t *)(rest + align8((size_t)li.taps * 4));
    if (li.kind == INN_KIND_DENSE) {
        size_t tail = scratch_bytes - skip - plan.rest; /* >= the rows: scratch_bytes >= plan.total */
        if ((st = build_axis(b, bucket, r.in_first, r.in_count, idx + (size_t)li.n_out * INN_TAPS,
                             w + (size_t)li.n_out * INN_TAPS, q)))
            return st;
        inn_axis in = {idx + (size_t)li.n_out * INN_TAPS, w + (size_t)li.n_out * INN_TAPS, q, li.n_in};
        st = inn_dense_to_sink(&nodes, li.m_out, li.m_in, li.taps, li.blocks, &out, &in, &sink, (float *)rest, tail / 4);
    } else {
        st = inn_rows_to_sink(&nodes, li.m_out, li.taps, &out, &sink, rowf, qrow);
    }
    if (st || !bias_out || !(li.has_bias || li.kind == INN_KIND_AFFINE)) return st;
    inn_nodes bias_nodes = layer_nodes(b, r.bias_off, r.bias_scale);
    inn_sink bias_sink = {INN_LAYOUT_OIT, INN_F32, bias_out, li.n_out, NULL, 0, li.n_out, norm,
                          norm ? norm + li.n_out : NULL};
    return inn_rows_to_sink(&bias_nodes, li.m_out, 1, &out, &bias_sink, rowf, qrow);
}
