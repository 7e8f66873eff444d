/* test_dist: the pieces of data parallelism that one process can check — the even split of a buffer into
 * ranks' slices, the one-rank stand-ins of the collectives, and ZeRO-1's optimizer shards: N shards of AdamW
 * stepping their slices give the parameters one unsharded AdamW gives (tests/cli/dist.sh runs the real thing
 * under mpirun). */
#include "testlib.h"
#include "dist/dist.h"
#include "optim/optim.h"
#include "model/model.h"
#include "kern/kern.h"
#include "core/core.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static void test_shard_covers_evenly(void) {
    size_t ns[] = {0, 1, 5, 7, 1000, 1001};
    for (size_t i = 0; i < sizeof ns / sizeof ns[0]; i++)
        for (int size = 1; size <= 5; size++) {
            size_t next = 0, mn = (size_t)-1, mx = 0;
            for (int r = 0; r < size; r++) {
                size_t lo, hi;
                dist_shard(ns[i], r, size, &lo, &hi);
                CHECK(lo == next && hi >= lo, "n %zu size %d rank %d: [%zu, %zu) after %zu", ns[i], size, r, lo, hi, next);
                next = hi;
                if (hi - lo < mn) mn = hi - lo;
                if (hi - lo > mx) mx = hi - lo;
            }
            CHECK(next == ns[i], "n %zu size %d: slices end at %zu", ns[i], size, next);
            CHECK(mx - mn <= 1, "n %zu size %d: slice sizes %zu..%zu", ns[i], size, mn, mx);
        }
}

static void test_one_rank_stand_ins(void) {
    CHECK(dist_rank() == 0 && dist_size() == 1, "outside mpirun: rank %d of %d", dist_rank(), dist_size());
    float a[5] = {1, 2, 3, 4, 5}, full[5] = {0};
    dist_allreduce_sum_f32(a, 5);
    dist_reduce_scatter_sum_f32(a, 5);
    dist_allgather_f32(a, 5);
    CHECK(a[0] == 1 && a[4] == 5, "one rank: collectives leave the buffer as it is");
    dist_gather_f32(a, full, 5);
    CHECK(!memcmp(a, full, sizeof a), "one rank: gather copies");
    size_t tot;
    int *g = dist_allgatherv(a, sizeof a, &tot);
    CHECK(tot == sizeof a && !memcmp(g, a, sizeof a), "one rank: allgatherv copies");
    free(g);
    CHECK(dist_any(0) == 0 && dist_any(3) == 1, "dist_any of one rank");
}

static gpt_model *tiny_model(void) {
    gpt_config c;
    gpt_config_default(&c);
    c.n_layer = 1; c.n_head = 2; c.n_embd = 16; c.vocab_size = 32; c.n_ctx = 8;
    gpt_model *m = gpt_create(&c);
    gpt_init_random(m, 5);
    gpt_alloc_grads(m);
    return m;
}

/* Three AdamW steps with random gradients: unsharded, and as `parts` shards each updating its slice with the
 * norm of all slices' sums of squares (what stage.c does across ranks). */
static void zero_vs_full(int parts, float clip, double tol) {
    gpt_model *a = tiny_model(), *b = tiny_model();
    size_t n = a->num_params;
    adamw_config oc;
    adamw_config_default(&oc);
    oc.grad_clip = clip;
    adamw *full = adamw_create(a, &oc), *sh[4];
    for (int r = 0; r < parts; r++) {
        size_t lo, hi;
        dist_shard(n, r, parts, &lo, &hi);
        sh[r] = adamw_create_shard(b, &oc, lo, hi);
    }
    float *g = gk_malloc(n * sizeof(float));
    gk_rng rng;
    gk_rng_seed(&rng, 42);
    double na = 0, nb = 0;
    for (int step = 0; step < 3; step++) {
        for (size_t i = 0; i < n; i++) g[i] = (float)(gk_rng_uniform(&rng) - 0.5) * 0.3f;
        kern_upload(a->be, a->grads, g, n * sizeof(float));
        kern_upload(b->be, b->grads, g, n * sizeof(float));
        na = adamw_step(full, a, 1e-2f);
        double ss = 0;
        for (int r = 0; r < parts; r++) ss += adamw_grad_sumsq(sh[r], b);
        nb = sqrt(ss);
        for (int r = 0; r < parts; r++) adamw_update(sh[r], b, 1e-2f, nb);
    }
    CHECK_CLOSE(nb, na, 0, 1e-6, "global norm from the shards");
    float *pa = gk_malloc(n * sizeof(float)), *pb = gk_malloc(n * sizeof(float));
    kern_download(a->be, pa, a->params, n * sizeof(float));
    kern_download(b->be, pb, b->params, n * sizeof(float));
    CHECK_ARRAYS("sharded AdamW parameters", pb, pa, n, tol, 0);
    /* the moments of the shards, laid end to end, are the unsharded moments */
    float *ma = gk_malloc(n * sizeof(float)), *mb = gk_malloc(n * sizeof(float));
    kern_download(a->be, ma, full->m, n * sizeof(float));
    for (int r = 0; r < parts; r++) kern_download(b->be, mb + sh[r]->lo, sh[r]->m, (sh[r]->hi - sh[r]->lo) * sizeof(float));
    CHECK_ARRAYS("sharded AdamW first moments", mb, ma, n, 0, 0);
    free(pa); free(pb); free(ma); free(mb); free(g);
    adamw_free(full);
    for (int r = 0; r < parts; r++) adamw_free(sh[r]);
    gpt_free(a); gpt_free(b);
}

/* Without clipping the update is element-wise: bit-equal. With clipping the norm is summed in another order
 * (per shard, then across): the scale may differ in its last bit. */
static void test_zero1_shards_equal_full(void) {
    zero_vs_full(1, 0.0f, 0);
    zero_vs_full(3, 0.0f, 0);
    zero_vs_full(4, 1.0f, 1e-6);
}

int main(void) {
    gk_verbose = 0;
    TL_RUN(test_shard_covers_evenly);
    TL_RUN(test_one_rank_stand_ins);
    TL_RUN(test_zero1_shards_equal_full);
    return tl_summary();
}
