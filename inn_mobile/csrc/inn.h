/*
 * inn-mobile native core: materialise Integral Neural Network weights at load time.
 *
 * Dependency-free C99 (libc + libm). No globals, no aborts, no hidden allocations: every entry
 * point returns an inn_status and writes into caller-provided memory. A bundle (.innb, see
 * FORMAT.md) is validated once by inn_bundle_open and then read zero-copy (mmap-friendly). It is
 * only read after that, so a loader may materialise several layers at once from its own threads,
 * each with a scratch buffer of its own (tools/bench_resample.py --threads times this).
 *
 * The math is the one in inn_mobile/kernel.py (Keys cubic convolution a=-0.5, clamped edges,
 * trapezoid/Simpson/rectangle quadrature), evaluated in double in the same order, so results
 * match the Python reference bit for bit when built with -ffp-contract=off.
 */
#ifndef INN_H
#define INN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define INN_VERSION_MAJOR 1
#define INN_VERSION_MINOR 4
#define INN_FLAG_NORM 1u      /* header flag: the bundle has per-width normalisation (NORM + NRMV) */
#define INN_FLAG_CRC32C 2u    /* header flag (1.4): the table and section checksums are CRC-32C */
#define INN_TAPS 4
#define INN_UNIFORM 0xFFFFFFFFu /* partition reference: uniform points */
#define INN_MAX_DIM (1u << 24)  /* largest channel count / node count accepted */
#define INN_RUNTIME_NAME 16     /* bytes of a runtime name in GIDX and COST rows (NUL-padded) */
#define INN_BUCKET_RATIO 1u     /* BKIN record flag: the bucket's global width ratio is set */
/* COST row flags (inn_bucket_cost.known): which measurements the row holds; the others read 0. */
#define INN_COST_WEIGHTS_BYTES 1u
#define INN_COST_FILE_BYTES 2u
#define INN_COST_ARENA_BYTES 4u
#define INN_COST_ACCURACY 8u
/* Cascade record flags (inn_cascade.known, 1.4): which calibration results the record holds. */
#define INN_CASCADE_ACCURACY 1u
#define INN_CASCADE_MACS 2u
#define INN_CASCADE_NAME 255 /* bytes of a cascade's name, at most */

typedef enum {
    INN_OK = 0,
    INN_ERR_ARG = 1,        /* null pointer or invalid argument */
    INN_ERR_TRUNCATED = 2,  /* data shorter than the sizes it declares */
    INN_ERR_MAGIC = 3,      /* not an .innb bundle */
    INN_ERR_VERSION = 4,    /* unsupported major version */
    INN_ERR_CHECKSUM = 5,   /* CRC mismatch (header, table or a section) */
    INN_ERR_FORMAT = 6,     /* inconsistent tables (shapes, counts, alignment) */
    INN_ERR_RANGE = 7,      /* index or dimension out of range */
    INN_ERR_OVERFLOW = 8,   /* size arithmetic would overflow */
    INN_ERR_BUFFER = 9,     /* caller buffer too small */
    INN_ERR_MISSING = 10,   /* required section, bucket or layer absent */
    INN_ERR_PARTITION = 11, /* partition not sorted / not within [0, 1] / ends not 0 and 1 */
    INN_ERR_UNVERIFIED = 12, /* nodes of a bundle opened by inn_bundle_open_deferred, not verified yet */
    INN_ERR_STALE = 13       /* a width-cache stamp of other files: another bundle, width, runtime or fill */
} inn_status;

typedef enum { INN_QUAD_TRAPEZOID = 0, INN_QUAD_SIMPSON = 1, INN_QUAD_RECTANGLE = 2 } inn_quadrature;
typedef enum { INN_KIND_DENSE = 1, INN_KIND_DEPTHWISE = 2, INN_KIND_AFFINE = 3 } inn_kind;

/* Output layouts. T = spatial taps (kh*kw for conv, H*W for a linear after flatten, 1 otherwise).
 *  OIT: [O][I][T]  PyTorch OIHW, Linear [O, I]
 *  OTI: [O][T][I]  OHWI (LiteRT conv, XNNPACK NHWC)
 *  ITO: [I][T][O]  LiteRT depthwise [1, H, W, O]; transposed linear [I, O] */
/* A cascade step's confidence (FORMAT.md "Cascade table"): the top softmax probability, or the top minus the
 * second; and what the thresholds were calibrated to (NONE: set by hand). */
typedef enum { INN_SCORE_MAX_PROB = 1, INN_SCORE_MARGIN = 2 } inn_score;
typedef enum { INN_TARGET_NONE = 0, INN_TARGET_ACCURACY_DROP = 1, INN_TARGET_MEAN_MACS = 2 } inn_target;

typedef enum { INN_LAYOUT_OIT = 0, INN_LAYOUT_OTI = 1, INN_LAYOUT_ITO = 2 } inn_layout;
typedef enum { INN_F32 = 0, INN_I8 = 1 } inn_dtype;

const char *inn_status_str(inn_status s);
/* The enum's short name without the prefix ("OK", "ARG", "TRUNCATED", ...; "UNKNOWN" for other values),
 * so bindings need not list the names again. Static storage, never NULL. */
const char *inn_status_name(inn_status s);

/* ---------------------------------------------------------------- the math (low level) */

/* One sampled axis: n rows of 4 taps (node index, weight) and a quadrature weight per row. */
typedef struct {
    const int32_t *idx; /* [n * 4] */
    const double *w;    /* [n * 4] */
    const double *q;    /* [n] or NULL (no quadrature: all 1) */
    uint32_t n;
} inn_axis;

double inn_cubic(double s);
/* Taps sampling an m-node axis at n points: points (float, length n) or NULL for uniform; a position within
 * 2^-20 of a node reads that node alone (FORMAT.md "Semantics"). */
inn_status inn_taps(const float *points, uint32_t n, uint32_t m, int32_t *idx, double *w);
inn_status inn_quadrature_weights(const float *points, uint32_t n, inn_quadrature rule, double *q);
inn_status inn_check_partition(const float *points, uint32_t n);

/* Dense layer: nodes [m_out][m_in][taps] (m_in per block), axes cover all blocks
 * (out->n and in->n divisible by blocks; tap indices global, block j reads its own nodes).
 * dst: n_out * (n_in / blocks) * taps floats in `layout`. scratch: inn_dense_scratch() floats.
 * Sums run in float32 with the tap weights and quadrature rounded to float (see kernel.resample). */
size_t inn_dense_scratch(uint32_t n_in_per_block, uint32_t m_in, uint32_t taps);
inn_status inn_resample_dense(const float *nodes, uint32_t m_out, uint32_t m_in, uint32_t taps, uint32_t blocks,
                              const inn_axis *out, const inn_axis *in, inn_layout layout, float *dst,
                              size_t dst_count, float *scratch, size_t scratch_count);
/* Per-channel function: nodes [m][taps] sampled along the channel axis (depthwise weights: taps
 * = kh*kw; biases and affine vectors: taps = 1). No quadrature. */
inn_status inn_resample_rows(const float *nodes, uint32_t m, uint32_t taps, const inn_axis *out, inn_layout layout,
                             float *dst, size_t dst_count);

/* Symmetric int8 per output channel: scale[o] = max|w[o,:]| / 127 (1 if the row is all zero),
 * q = clamp(round_half_even(w / scale), -127, 127). Rows are located through `layout` with
 * o in [0, n_out) and k in [0, per_row) the flat (i, t) index. */
inn_status inn_quantize(const float *w, uint32_t n_out, uint32_t per_row, inn_layout layout, int8_t *q, float *scales);

/* ---------------------------------------------------------------- bundles */

typedef struct {
    const uint8_t *data;
    size_t size;
    uint32_t quadrature;
    uint32_t group_count, layer_count, bucket_count, piece_count, node_dtype;
    const uint8_t *groups, *layers, *pieces, *nodes, *buckets, *partitions, *names;
    size_t nodes_size, partitions_count, names_size;
    const uint8_t *node_scales; /* int8 nodes only: NSCL, float32 per node row */
    size_t node_scales_count;
    const uint8_t *norms;       /* NORM records (16 bytes each, sorted by bucket, layer), or NULL */
    uint32_t norm_count;
    const uint8_t *norm_values; /* NRMV: float32 a[n_out] then c[n_out] per record */
    size_t norm_values_count;
    const uint8_t *bucket_infos; /* BKIN records (1.3), or NULL */
    const uint8_t *costs;        /* COST rows (1.3), or NULL */
    uint32_t cost_count;
    const uint8_t *macs;         /* MACS (1.4): u64 per bucket, or NULL */
    const uint8_t *cascades;     /* CSCD records (1.4), 56 bytes each, then the steps; or NULL */
    uint32_t cascade_count, cascade_step_count;
    uint32_t nodes_crc;     /* NODE's stored checksum (inn_bundle_nodes_verified compares with it) */
    uint32_t nodes_pending; /* 1 from inn_bundle_open_deferred until inn_bundle_nodes_verified succeeds */
} inn_bundle;

typedef struct {
    uint32_t kind, blocks, taps, has_bias;
    uint32_t n_out, n_in;       /* channels at this bucket (n_in: total over blocks; 0 for non-dense) */
    uint32_t m_out, m_in;       /* node counts (m_in per block) */
    size_t weight_count;        /* elements of the weight (affine: scale count) */
    const char *name;           /* not NUL-terminated: use name_len */
    uint32_t name_len;
} inn_layer_info;

/* What a bucket is (BKIN, 1.3). Bundles written before 1.3 have no BKIN: name NULL, no ratio. */
typedef struct {
    const char *name;   /* UTF-8 inside the bundle, not NUL-terminated: use name_len */
    uint32_t name_len;
    uint32_t has_ratio; /* 1 when ratio is set */
    double ratio;       /* the global width the bucket was made for (0.5: half the channels) */
} inn_bucket_info;

/* What one bucket costs and gives on one runtime, measured when the bundle was packed (COST, 1.3): what a
 * device needs to choose a width. Fields whose INN_COST_* bit is not in `known` were not measured (0). */
typedef struct {
    uint32_t bucket;
    uint32_t known;                     /* INN_COST_* bits */
    char runtime[INN_RUNTIME_NAME + 1]; /* NUL-terminated */
    uint64_t weights_bytes;             /* bytes of the weights the core writes into the runtime's files */
    uint64_t file_bytes;                /* bytes of the runtime's files without their weights */
    uint64_t arena_bytes;               /* the runtime's activation memory */
    double accuracy;                    /* percent, on the packer's validation data */
} inn_bucket_cost;

/* A confidence cascade (CSCD, 1.4): run step 0's bucket; keep its answer when the input's score reaches
 * the step's threshold, else run the next step (inn_cascade_step). The last step's threshold is 0. */
typedef struct {
    const char *name;      /* UTF-8 inside the bundle, not NUL-terminated: use name_len (1..INN_CASCADE_NAME) */
    uint32_t name_len;
    uint32_t score;        /* inn_score */
    uint32_t target;       /* inn_target */
    uint32_t step_count;   /* 1..bucket count */
    uint32_t known;        /* INN_CASCADE_* bits: accuracy / mean_macs measured on the calibration data */
    double target_value;   /* accuracy points below the widest bucket, or mean MACs per input */
    double accuracy;       /* percent on the calibration data */
    double mean_macs;      /* multiply-accumulates per input on the calibration data */
} inn_cascade;

/* sizeof(inn_bundle) in this build: a binding that mirrors the struct (ctypes, JNA) checks its own
 * size against it, so a layout change fails loudly instead of writing past the binding's memory. */
size_t inn_bundle_sizeof(void);

/* `data` must be 8-byte aligned (malloc, mmap and ctypes/numpy buffers are): the core reads float32
 * values in place, which faults on strict-alignment CPUs (armhf) otherwise. INN_ERR_ARG when it is not;
 * copy the bytes to an aligned buffer first. Readers also bound every size a file can ask for by what
 * its sections justify (FORMAT.md "Reader limits"), and reject non-finite node, scale and
 * normalisation values (INN_ERR_FORMAT). */
#define INN_DATA_ALIGN 8
inn_status inn_bundle_open(inn_bundle *b, const void *data, size_t size);
/* inn_bundle_open, telling the caller as it verifies: done(ctx, first, end) once each stretch [first, end) of
 * data (a section, or about a MiB of one) has been checked and will not be read again by the open. A caller
 * that mapped the bundle from a file may drop those pages (madvise MADV_DONTNEED), so that verifying the whole
 * file never holds it all in memory; a dropped page that is read later (the fill) comes back unchanged from
 * the page cache. The same checks and the same result as inn_bundle_open, which is this with done NULL. */
typedef void (*inn_read_done)(void *ctx, size_t first, size_t end);
inn_status inn_bundle_open_ex(inn_bundle *b, const void *data, size_t size, inn_read_done done, void *ctx);
/* inn_bundle_open_ex without reading the nodes: every check but the NODE section's checksum and its
 * finite-values check, which move to the fill, where the nodes are read anyway (once, and on the fill's
 * threads, instead of once to verify and again to fill). Until inn_bundle_nodes_verified succeeds,
 * b->nodes_pending is 1 and everything that would hand out node-derived values refuses with
 * INN_ERR_UNVERIFIED (inn_materialize, inn_graph_fill, inn_graph_fill_part, the NODE section), except
 * inn_graph_fill_part_verify, whose output the caller must discard unless inn_bundle_nodes_verified then
 * succeeds. The guarantee is the same as the eager open's: no weight from a corrupt or non-finite node is
 * ever accepted; only the moment of the report moves, from the open to the end of the fill. */
inn_status inn_bundle_open_deferred(inn_bundle *b, const void *data, size_t size, inn_read_done done, void *ctx);
/* Chunk `part` of `parts` of the NODE section (equal shares, 64-byte aligned boundaries; parts may run at the
 * same time): its CRC state in *state (chunk 0 from the initial state, the others from 0, for
 * inn_bundle_nodes_verified to join), INN_ERR_FORMAT when it holds an inf or NaN (float nodes). */
inn_status inn_bundle_check_nodes(const inn_bundle *b, uint32_t part, uint32_t parts, uint32_t *state);
/* Joins the `parts` chunk states of inn_bundle_check_nodes (the same `parts`) into the section's checksum:
 * INN_ERR_CHECKSUM when it is not the stored one; INN_OK clears b->nodes_pending. */
inn_status inn_bundle_nodes_verified(inn_bundle *b, const uint32_t *states, uint32_t parts);
inn_status inn_bundle_section(const inn_bundle *b, const char tag[4], const uint8_t **data, size_t *size);
inn_status inn_bundle_group_size(const inn_bundle *b, uint32_t bucket, uint32_t group, uint32_t *n);
inn_status inn_layer_info_get(const inn_bundle *b, uint32_t bucket, uint32_t layer, inn_layer_info *info);
/* Bytes of scratch inn_materialize needs for any layer of `bucket`. */
inn_status inn_bundle_scratch_size(const inn_bundle *b, uint32_t bucket, size_t *bytes);
/* Weights of one layer at one bucket: weight_out gets weight_count elements (f32 or i8 + scales),
 * bias_out (optional) n_out floats. Affine layers: weight_out = scale, bias_out = shift (f32).
 * Every buffer size is in bytes (scales and bias: at least 4 * n_out).
 * A layer with per-width normalisation at this bucket (FORMAT.md "NORM") gets it applied after
 * resampling and before int8 quantisation: W[o, ...] * a[o], bias b[o] * a[o] + c[o]. */
inn_status inn_materialize(const inn_bundle *b, uint32_t bucket, uint32_t layer, inn_layout layout, inn_dtype dtype,
                           void *weight_out, size_t weight_bytes, float *scales_out, size_t scales_bytes,
                           float *bias_out, size_t bias_bytes, void *scratch, size_t scratch_bytes);
/* The per-width normalisation of one layer at one bucket: *a and *c point at n_out floats each
 * inside the bundle. INN_ERR_MISSING when the layer has none there (its weights are the resampled ones). */
inn_status inn_layer_norm(const inn_bundle *b, uint32_t bucket, uint32_t layer, const float **a, const float **c,
                          uint32_t *n_out);

/* Name and ratio of a bucket (INN_ERR_MISSING past the last bucket). */
inn_status inn_bucket_info_get(const inn_bundle *b, uint32_t bucket, inn_bucket_info *info);
/* The COST rows, sorted by (bucket, runtime): their count (0 without COST), row `index` (INN_ERR_MISSING
 * past the end), and the row of (bucket, runtime) (INN_ERR_MISSING when it was not measured). */
inn_status inn_cost_count(const inn_bundle *b, uint32_t *count);
inn_status inn_cost_list(const inn_bundle *b, uint32_t index, inn_bucket_cost *cost);
inn_status inn_cost_find(const inn_bundle *b, uint32_t bucket, const char *runtime, inn_bucket_cost *cost);

/* Multiply-accumulates of one input at a bucket (MACS, 1.4; INN_ERR_MISSING without MACS or past the last bucket). */
inn_status inn_bucket_macs(const inn_bundle *b, uint32_t bucket, uint64_t *macs);
/* The cascades (0 without CSCD), cascade `index` (INN_ERR_MISSING past the end), and its step `step`:
 * the bucket to run and the threshold its score must reach for the answer to stand. */
inn_status inn_cascade_count(const inn_bundle *b, uint32_t *count);
inn_status inn_cascade_get(const inn_bundle *b, uint32_t index, inn_cascade *cascade);
inn_status inn_cascade_step(const inn_bundle *b, uint32_t cascade, uint32_t step, uint32_t *bucket, float *threshold);

/* The format's checksums (FORMAT.md "Checksums"): CRC-32 as zlib.crc32 (headers; everything before 1.4)
 * and CRC-32C (Castagnoli; tables and sections with INN_FLAG_CRC32C), on the CPU's CRC instructions where
 * it has them, the same values on every CPU. */
uint32_t inn_crc32(const uint8_t *data, size_t size);
uint32_t inn_crc32c(const uint8_t *data, size_t size);

/* ---------------------------------------------------------------- runtime graphs with holes
 * A bundle may carry, per (bucket, runtime), the runtime's files (ExecuTorch .pte + .ptd, LiteRT
 * .tflite) without their weights: a graph record (FORMAT.md "Graph records"). inn_graph_find
 * validates the record completely (bounds, overlaps, hole sizes against the bucket's layer shapes),
 * so inn_graph_fill never writes anything partial because of a bad record. Weights are written in
 * host byte order (little-endian on every phone). */
/* Codes of a hole's tensor and dtype in a graph record (FORMAT.md "Graph records"). */
typedef enum {
    INN_HOLE_WEIGHT = 1,    /* the weight in the hole's layout and dtype (affine layers: the scale vector) */
    INN_HOLE_BIAS = 2,      /* f32 [O] (zeros without a bias; affine layers: the shift) */
    INN_HOLE_SCALE = 3,     /* f32 [O] int8 weight scales */
    INN_HOLE_BIAS_I32 = 4,  /* i32 [O] round_half_even(bias / (param * scale)) */
    INN_HOLE_BIAS_SCALE = 5 /* f32 [O] param * scale */
} inn_hole_tensor;
typedef enum { INN_HOLE_F32 = 0, INN_HOLE_I8 = 1, INN_HOLE_I32 = 2 } inn_hole_dtype;
typedef struct {
    const uint8_t *record; /* inside the bundle's BLOB */
    size_t size;
    uint32_t bucket, image_count;
} inn_graph;

typedef struct {
    const char *name; /* not NUL-terminated: use name_len */
    uint32_t name_len;
    uint32_t span_count, hole_count;
    uint64_t size; /* bytes of the complete file */
} inn_image_info;

/* Number of graphs (GIDX rows) of the bundle: 0 when it has none. */
inn_status inn_graph_count(const inn_bundle *b, uint32_t *count);
/* Graph `index` of the bundle: its bucket and runtime name (NUL-terminated). INN_ERR_MISSING past the end. */
inn_status inn_graph_list(const inn_bundle *b, uint32_t index, uint32_t *bucket, char runtime[INN_RUNTIME_NAME + 1]);
inn_status inn_graph_find(const inn_bundle *b, uint32_t bucket, const char *runtime, inn_graph *g);
inn_status inn_graph_image(const inn_graph *g, uint32_t index, inn_image_info *info);
/* Bytes of scratch inn_graph_fill needs (one layer's resampling state plus two channel vectors). */
inn_status inn_graph_scratch_size(const inn_bundle *b, const inn_graph *g, size_t *bytes);
/* Rebuild every image of the graph: outs[i] (4-byte aligned, out_sizes[i] >= the image's size) gets the
 * stored bytes, zeros elsewhere, and each hole written from the nodes at the graph's bucket. */
inn_status inn_graph_fill(const inn_bundle *b, const inn_graph *g, void *const *outs, const size_t *out_sizes,
                          void *scratch, size_t scratch_bytes);
/* inn_graph_fill in parts, for callers with threads (the core starts none): first inn_graph_fill_spans (the
 * stored bytes and zero gaps of every image), then parts 0 .. parts-1 of inn_graph_fill_part, which may run at
 * the same time, each on its own scratch of inn_graph_scratch_size bytes. Part p writes the holes of its own
 * run of layers (contiguous, about 1/parts of the weights each; a part may have none), so together the parts
 * write exactly what inn_graph_fill writes, whatever their number or order. */
inn_status inn_graph_fill_spans(const inn_bundle *b, const inn_graph *g, void *const *outs, const size_t *out_sizes);
inn_status inn_graph_fill_part(const inn_bundle *b, const inn_graph *g, void *const *outs, const size_t *out_sizes,
                               uint32_t part, uint32_t parts, void *scratch, size_t scratch_bytes);

/* inn_graph_fill_part that also checks chunk `part` of the nodes first (inn_bundle_check_nodes, the same
 * part and parts), *node_state its CRC state: the fill of a bundle opened by inn_bundle_open_deferred. After
 * every part, inn_bundle_nodes_verified must succeed, or the images must be discarded. */
inn_status inn_graph_fill_part_verify(const inn_bundle *b, const inn_graph *g, void *const *outs,
                                      const size_t *out_sizes, uint32_t part, uint32_t parts, void *scratch,
                                      size_t scratch_bytes, uint32_t *node_state);

/* The bytes of the bundle that part p of inn_graph_fill_part reads nodes from: [*first, *end), offsets into the
 * data given to inn_bundle_open (first == end == 0 for a part without layers). A caller that mapped the bundle
 * from a file may drop those pages once the part is done (madvise MADV_DONTNEED: a later read faults them back
 * in unchanged), so that memory never holds every node and every filled weight at once. Other parts' ranges
 * may share a page at either end, and dropping a page another part still reads costs a re-read, never a
 * wrong byte. */
inn_status inn_graph_part_nodes(const inn_bundle *b, const inn_graph *g, uint32_t part, uint32_t parts, size_t *first,
                                size_t *end);

/* ---------------------------------------------------------------- width cache stamps
 * An app that starts the same width again may keep the files a fill wrote (in its cache directory) and load
 * them as plain runtime files: every start after the first is then a plain file's, fill and fresh memory
 * included. What proves such files current and whole is a stamp the core writes and checks (the file I/O is
 * the platform's; the core does none). It names the bundle (its header, which holds the section table's
 * checksum, and the graph record's CRC-32C), the bucket, the runtime and the fill's version, and each file's
 * size and CRC-32C (FORMAT.md "Width cache stamps"). Write the files, then the stamp, each atomically; on a
 * later start, map the files and check them with the stamp before the runtime sees them. */
#define INN_FILL_VERSION 1u /* bumped whenever the bytes a fill writes change (tests/test_width_cache.py) */
#define INN_CACHE_STAMP_FILE "stamp.innc" /* the stamp's file name, beside the files of its entry */
#define INN_CACHE_NAME 64                 /* bytes of an entry's name, its NUL included */
/* The name of graph g's entry (a directory of the cache, holding the graph's files under their own names and
 * the stamp): "<section table checksum>-<bundle size>-b<bucket>-<runtime>", hexadecimal. INN_ERR_FORMAT when
 * a file of the graph is not named as a plain file may be (1-100 of [A-Za-z0-9_.-], not starting with a dot,
 * not the stamp's name): such a graph is not kept. */
inn_status inn_cache_entry(const inn_bundle *b, const inn_graph *g, const char *runtime, char name[INN_CACHE_NAME]);
/* Bytes of the stamp of graph g. */
size_t inn_cache_stamp_size(const inn_graph *g);
/* The stamp of graph g of bundle b (found for `runtime`), whose filled files are images[i] of sizes[i] bytes,
 * in g's image order: stamp_size (>= inn_cache_stamp_size) bytes at stamp. */
inn_status inn_cache_stamp(const inn_bundle *b, const inn_graph *g, const char *runtime, const void *const *images,
                           const size_t *sizes, uint8_t *stamp, size_t stamp_size);
/* INN_OK when `stamp` is graph g's (same bundle header, graph record, bucket, runtime, INN_FILL_VERSION) and
 * the files match it byte for byte (sizes and CRC-32C); INN_ERR_STALE for a whole stamp of other files;
 * INN_ERR_CHECKSUM when a file (or the stamp) is damaged; MAGIC / TRUNCATED / FORMAT for a malformed stamp. */
inn_status inn_cache_check(const inn_bundle *b, const inn_graph *g, const char *runtime, const uint8_t *stamp,
                           size_t stamp_size, const void *const *images, const size_t *sizes);

#ifdef __cplusplus
}
#endif
#endif /* INN_H */
