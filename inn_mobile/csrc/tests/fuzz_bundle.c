/* Mutation fuzzer for the bundle reader and materialiser (no dependencies; run it under ASan+UBSan).
 *   fuzz_bundle seed.innb SECONDS [RNG_SEED]
 * Each round mutates the seed bundle (bit flips, interesting u32 values at aligned offsets, byte
 * runs, truncation) and, half the time, re-seals the CRCs so the mutation reaches the semantic
 * checks. Whatever opens is then materialised fully in every layout and dtype, and every graph record
 * that validates is filled. Any memory error or
 * undefined behaviour aborts the process under the sanitizers.
 *
 * libFuzzer (coverage-guided; tools/fuzz.sh builds and runs it):
 *   clang -DINN_LIBFUZZER -fsanitize=fuzzer,address,undefined ... fuzz_bundle.c
 *   fuzz_bundle -dict=fuzz_bundle.dict CORPUS_DIR tests/vectors
 * Every input is copied to an aligned buffer and its CRCs re-sealed first (a mutation would almost
 * never get past the checksums otherwise), unless its first header byte after the magic says not to
 * (the `version minor` high bit: reseal off, so the checksum paths stay covered too). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bundle_edit.h"
#include "inn.h"

/* Buffers for every image of g (at most 8; sizes[k] 0 past a failure): whether all images are readable and at
 * most 16 MiB (to keep rounds fast). */
static int image_buffers(const inn_graph *g, void **outs, size_t *sizes) {
    int ok = 1;
    for (uint32_t k = 0; k < g->image_count; k++) {
        inn_image_info info;
        ok = ok && inn_graph_image(g, k, &info) == INN_OK && info.size <= (16u << 20);
        sizes[k] = ok ? (size_t)info.size : 0;
        outs[k] = malloc(sizes[k] + 4);
    }
    return ok;
}

/* Every graph record that validates is rebuilt, whole and in parts, which must then succeed too (images
 * capped at 16 MiB to keep rounds fast). */
static void exercise_graphs(const inn_bundle *b) {
    uint32_t bucket;
    char runtime[INN_RUNTIME_NAME + 1];
    for (uint32_t i = 0; inn_graph_list(b, i, &bucket, runtime) == INN_OK; i++) {
        inn_graph g;
        size_t scratch_size;
        if (inn_graph_find(b, bucket, runtime, &g) != INN_OK || g.image_count > 8) continue;
        if (inn_graph_scratch_size(b, &g, &scratch_size) != INN_OK || scratch_size > (64u << 20)) continue;
        void *outs[8] = {0};
        size_t sizes[8] = {0};
        int ok = image_buffers(&g, outs, sizes);
        void *scratch = malloc(scratch_size + 8);
        if (ok && inn_graph_fill(b, &g, outs, sizes, scratch, scratch_size) == INN_OK) {
            /* the same graph in 3 parts (one after another here; test_core runs parts on threads) */
            if (inn_graph_fill_spans(b, &g, outs, sizes) != INN_OK) abort();
            for (uint32_t p = 0; p < 3; p++) {
                size_t first, end; /* the part's node bytes: inside the bundle, whatever the layers' offsets */
                if (inn_graph_fill_part(b, &g, outs, sizes, p, 3, scratch, scratch_size) != INN_OK) abort();
                if (inn_graph_part_nodes(b, &g, p, 3, &first, &end) != INN_OK || first > end || end > b->size) abort();
            }
            /* a width cache's entry name (any graph: bad file names are refused, never overrun), and a stamp of
             * the filled files, which must check them */
            char name[INN_CACHE_NAME];
            inn_status st = inn_cache_entry(b, &g, runtime, name);
            if (st == INN_OK && !memchr(name, 0, INN_CACHE_NAME)) abort();
            size_t n = inn_cache_stamp_size(&g);
            uint8_t *stamp = malloc(n);
            if (inn_cache_stamp(b, &g, runtime, (const void *const *)outs, sizes, stamp, n) != INN_OK ||
                inn_cache_check(b, &g, runtime, stamp, n, (const void *const *)outs, sizes) != INN_OK)
                abort();
            free(stamp);
        }
        for (uint32_t k = 0; k < g.image_count; k++) free(outs[k]);
        free(scratch);
    }
}

/* The deferred open (inn_bundle_open_deferred): every graph filled in 3 verified parts, each part going on
 * after another's failure (so parts fill from nodes only another part checks: corrupt and non-finite values
 * go through the fill); then the parts' join, which must succeed exactly when the eager open does, and a
 * verified fill must equal the eager fill byte for byte. */
static void exercise_deferred(const unsigned char *data, size_t size) {
    inn_bundle b, e;
    if (inn_bundle_open_deferred(&b, data, size, NULL, NULL) != INN_OK) return;
    int eager = inn_bundle_open(&e, data, size) == INN_OK;
    uint32_t bucket, states[3];
    char runtime[INN_RUNTIME_NAME + 1];
    int joined = -1; /* whether the nodes verified (-1: no graph got that far) */
    for (uint32_t i = 0; inn_graph_list(&b, i, &bucket, runtime) == INN_OK; i++) {
        inn_graph g;
        size_t scratch_size;
        if (inn_graph_find(&b, bucket, runtime, &g) != INN_OK || g.image_count > 8) continue;
        if (inn_graph_scratch_size(&b, &g, &scratch_size) != INN_OK || scratch_size > (64u << 20)) continue;
        void *outs[8] = {0}, *want[8] = {0};
        size_t sizes[8] = {0}, same[8] = {0};
        int ok = image_buffers(&g, outs, sizes) && image_buffers(&g, want, same);
        void *scratch = malloc(scratch_size + 8);
        if (ok && inn_graph_fill_spans(&b, &g, outs, sizes) == INN_OK) {
            int parts_ok = 1;
            for (uint32_t p = 0; p < 3; p++)
                parts_ok &= inn_graph_fill_part_verify(&b, &g, outs, sizes, p, 3, scratch, scratch_size, &states[p]) ==
                            INN_OK;
            int pending = b.nodes_pending;
            if (parts_ok && pending) joined = inn_bundle_nodes_verified(&b, states, 3) == INN_OK;
            if (parts_ok && !b.nodes_pending && eager && inn_graph_fill(&e, &g, want, sizes, scratch, scratch_size) == INN_OK)
                for (uint32_t k = 0; k < g.image_count; k++)
                    if (memcmp(outs[k], want[k], sizes[k]) != 0) abort();
        }
        for (uint32_t k = 0; k < g.image_count; k++) {
            free(outs[k]);
            free(want[k]);
        }
        free(scratch);
    }
    if (b.nodes_pending && joined < 0) { /* no graph checked the nodes: check them alone */
        int all = 1;
        for (uint32_t p = 0; p < 3; p++) all &= inn_bundle_check_nodes(&b, p, 3, &states[p]) == INN_OK;
        joined = all && inn_bundle_nodes_verified(&b, states, 3) == INN_OK;
    }
    if (joined >= 0 && joined != eager) abort(); /* deferred and eager checks disagree */
}

static void exercise(const unsigned char *data, size_t size) {
    exercise_deferred(data, size);
    inn_bundle b;
    if (inn_bundle_open(&b, data, size) != INN_OK) return;
    uint32_t graph_count, cost_count = 0;
    if (inn_graph_count(&b, &graph_count) == INN_OK) exercise_graphs(&b);
    /* the reader promises names inside the bundle and cost rows it can find again */
    for (uint32_t k = 0; k < b.bucket_count; k++) {
        inn_bucket_info bi;
        if (inn_bucket_info_get(&b, k, &bi) != INN_OK || (bi.name_len && !bi.name)) abort();
        if (bi.name_len && ((const unsigned char *)bi.name < data || (const unsigned char *)bi.name + bi.name_len > data + size))
            abort();
    }
    inn_cost_count(&b, &cost_count);
    for (uint32_t i = 0; i < cost_count; i++) {
        inn_bucket_cost c, again;
        if (inn_cost_list(&b, i, &c) != INN_OK || inn_cost_find(&b, c.bucket, c.runtime, &again) != INN_OK ||
            memcmp(&c, &again, sizeof c) != 0)
            abort();
    }
    /* ... and cascades whose names lie inside the bundle and whose steps name buckets with thresholds in [0, 1] */
    uint32_t cascade_count = 0;
    inn_cascade_count(&b, &cascade_count);
    for (uint32_t i = 0; i < cascade_count; i++) {
        inn_cascade c;
        if (inn_cascade_get(&b, i, &c) != INN_OK || !c.name_len || !c.step_count ||
            (const unsigned char *)c.name < data || (const unsigned char *)c.name + c.name_len > data + size)
            abort();
        for (uint32_t j = 0; j < c.step_count; j++) {
            uint32_t bucket;
            float t;
            if (inn_cascade_step(&b, i, j, &bucket, &t) != INN_OK || bucket >= b.bucket_count || !(t >= 0.0f && t <= 1.0f))
                abort();
        }
    }
    for (uint32_t k = 0; k < b.bucket_count; k++) {
        uint64_t macs;
        inn_status ms = inn_bucket_macs(&b, k, &macs);
        if (ms != INN_OK ? ms != INN_ERR_MISSING : macs == 0) abort();
    }
    for (uint32_t k = 0; k < b.bucket_count; k++) {
        size_t scratch_size;
        if (inn_bundle_scratch_size(&b, k, &scratch_size) != INN_OK || scratch_size > (64u << 20)) continue;
        void *scratch = malloc(scratch_size ? scratch_size : 1);
        for (uint32_t l = 0; l < b.layer_count; l++) {
            inn_layer_info li;
            const float *na, *nc;
            uint32_t nn;
            /* the reader promises finite normalisation values: a broken promise is a crash */
            if (inn_layer_norm(&b, k, l, &na, &nc, &nn) == INN_OK && nn && !(isfinite(na[0]) && isfinite(nc[nn - 1]))) abort();
            if (inn_layer_info_get(&b, k, l, &li) != INN_OK || li.weight_count > (16u << 20)) continue;
            float *w = malloc(li.weight_count * 4 + 4), *s = malloc((size_t)li.n_out * 4 + 4);
            float *bias = malloc((size_t)li.n_out * 4 + 4);
            for (int layout = 0; layout < 3; layout++)
                for (int dtype = 0; dtype < 2; dtype++)
                    inn_materialize(&b, k, l, (inn_layout)layout, (inn_dtype)dtype, w, li.weight_count * 4, s,
                                    (size_t)li.n_out * 4, bias, (size_t)li.n_out * 4, scratch, scratch_size);
            free(w);
            free(s);
            free(bias);
        }
        free(scratch);
    }
}

#ifdef INN_LIBFUZZER
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* a private, 8-aligned, writable copy (malloc) so the CRCs can be re-sealed */
    unsigned char *d = malloc(size ? size : 1);
    if (!d) return 0;
    if (size) memcpy(d, data, size);
    if (!(size > 7 && (d[7] & 0x80u))) reseal(d, size);
    else d[7] &= 0x7Fu; /* keep the version minor as it was, checksums as the input has them */
    exercise(d, size);
    free(d);
    return 0;
}
#else
static uint64_t rng_state;
static uint32_t rnd(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 16);
}

static const uint32_t interesting[] = {0, 1, 2, 3, 4, 7, 8, 63, 64, 255, 0x7FFF, 0xFFFF, 0x10000, 0x7FFFFFFF,
                                       0x80000000u, 0xFFFFFFFEu, 0xFFFFFFFFu, 1u << 24, (1u << 24) + 1};

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s seed.innb SECONDS [RNG_SEED]\n", argv[0]);
        return 2;
    }
    size_t size;
    unsigned char *seed = read_file(argv[1], &size);
    if (!seed) {
        fprintf(stderr, "cannot read %s\n", argv[1]);
        return 2;
    }
    double seconds = atof(argv[2]);
    rng_state = argc > 3 ? strtoull(argv[3], NULL, 10) : 88172645463325252ull;
    if (!rng_state) rng_state = 1;
    unsigned char *d = malloc(size);
    clock_t start = clock();
    long rounds = 0, opened = 0;
    while ((double)(clock() - start) / CLOCKS_PER_SEC < seconds) {
        memcpy(d, seed, size);
        size_t n = size;
        int edits = 1 + (int)(rnd() % 4);
        for (int e = 0; e < edits; e++) {
            size_t at = rnd() % size;
            switch (rnd() % 5) {
                case 0: d[at] ^= (unsigned char)(1u << (rnd() % 8)); break;
                case 1: put32(d + (at & ~(size_t)3) - ((at & ~(size_t)3) + 4 > size ? 4 : 0),
                              interesting[rnd() % (sizeof interesting / sizeof *interesting)]); break;
                case 2: d[at] = (unsigned char)rnd(); break;
                case 3: memset(d + at, rnd() & 1 ? 0xFF : 0, (size - at) < 16 ? size - at : 16); break;
                default: n = rnd() % (size + 1); break;
            }
        }
        if (rnd() & 1) reseal(d, n);
        inn_bundle b;
        opened += inn_bundle_open(&b, d, n) == INN_OK;
        exercise(d, n);
        rounds++;
    }
    printf("fuzz: %ld rounds, %ld opened, no crash\n", rounds, opened);
    free(d);
    free(seed);
    return 0;
}
#endif
