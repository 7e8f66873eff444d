/* test_kern_fast.c: every op of every backend in the build (the cpu backend on each GEMM library: OpenBLAS,
 * oneDNN, builtin loops; oneDNN in bf16) against the fp32 reference backend ("ref") on random inputs of awkward
 * sizes (not multiples of any block or vector width; attention crossing its 64-row blocks), with gradients
 * pre-filled with noise (so "+=" is checked) and NULL gradients skipped. Backends this build or CPU lacks are
 * reported SKIP. Both CPU kinds keep data in host memory, so buffers come from g_ref and serve both.
 *
 * Tolerances (|fast - ref| <= atol + rtol |ref|), stated per op:
 *   matmul          atol 1e-5 * sqrt(K), rtol 1e-5   (K = the reduction length; BLAS sums in another order)
 *   layernorm       atol 2e-5, rtol 1e-4 (dw/db: reductions over N rows in another order)
 *   attention       atol 2e-5, rtol 1e-4 (online softmax, exps from kern_vexpf)
 *   gelu            vs the f64 reference atol 1e-6, rtol 1e-6; vs the f32 one atol 3e-6 (its tanh form cancels)
 *   swiglu          atol 1e-6, rtol 1e-5 (the same formula, exps from kern_vexpf)
 *   cross-entropy   loss atol 1e-5 rtol 1e-5; dlogits atol 1e-7 rtol 1e-5
 *   adamw, add, axpy, scale: exact (same float operations in the same order per element)
 *   sumsq           rtol 1e-12 (double accumulation in another order)
 *   bf16 matmul     atol 2e-2 sqrt(K) (inputs rounded to bfloat16), and must differ from fp32
 *   cached attention atol 2e-5, rtol 1e-4 (vectorised exps and dot products); the cache rows written: exact
 *   skinny matmul   as matmul
 */
#include "kern/kern.h"
#include "kern/cpu/fast_math.h"
#include "core/core.h"
#include "testlib.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

static gk_rng g_rng;
static kern_backend *g_ref;   /* the fp32 reference: the oracle */
static kern_backend *g_be;    /* the backend under test (run_backend sets it) */

static float *rnd(size_t n, float scale) {
    float *x = kern_alloc(g_ref, n * sizeof(float));
    for (size_t i = 0; i < n; i++) x[i] = scale * gk_rng_normal(&g_rng);
    return x;
}
static float *dup(const float *x, size_t n) {
    float *y = kern_alloc(g_ref, n * sizeof(float));
    memcpy(y, x, n * sizeof(float));
    return y;
}

static void test_vexpf_accuracy(void) {
    double worst = 0, wx = 0;
    for (int i = 0; i <= 2000000; i++) {
        float x = -87.0f + 175.0f * (float)i / 2000000.0f;
        double want = exp((double)x), got = kern_vexpf(x);
        double e = fabs(got - want) / want;
        if (!(e <= worst)) { worst = e; wx = x; }
    }
    CHECK(worst < 5e-7, "kern_vexpf max relative error %.3g at x = %.9g", worst, wx);
    CHECK(kern_vexpf(0) == 1.0f, "exp(0) = %.9g", kern_vexpf(0));
    CHECK(kern_vexpf(-INFINITY) == 0 && kern_vexpf(-100) == 0, "exp of very negative must be 0");
    CHECK(isfinite(kern_vexpf(1000)), "exp(1000) must be finite (clamped)");
    CHECK(isnan(kern_vexpf(NAN)), "exp(NaN) must be NaN (and convert no NaN to an integer: UBSan)");
}

/* The host-row helpers (the sampler's softmax, log-probability and draw) against double-precision loops, at
 * sizes around the vector width and the 1024-element block. */
static void test_host_rows(void) {
    static const size_t sizes[] = {1, 7, 16, 17, 1023, 1024, 1025, 3000, 50257};
    for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
        size_t n = sizes[si];
        float *x = rnd(n, 4), *e = malloc(n * sizeof *e);
        double mx = -INFINITY, want_sum = 0, want_exp = 0;
        for (size_t i = 0; i < n; i++) { if (x[i] > mx) mx = x[i]; want_sum += x[i]; }
        float got_mx = kern_row_max(x, n);
        CHECK(got_mx == (float)mx, "n %zu: max %.9g want %.9g", n, got_mx, mx);
        for (size_t i = 0; i < n; i++) want_exp += exp(((double)x[i] - mx) * 0.7);
        double z = kern_row_exp(e, x, n, got_mx, 0.7f), worst = 0;
        /* a float sum over each block of <= 1024 terms (vectorised lanes, or in order in a build without the
         * clones): its rounding is up to ~1e-5 relative; the blocks are added in double */
        CHECK(fabs(z - want_exp) <= 2e-5 * want_exp, "n %zu: sum of exp %.9g want %.9g", n, z, want_exp);
        for (size_t i = 0; i < n; i++) {
            double w = exp(((double)x[i] - mx) * 0.7), d = fabs(e[i] - w) / w;
            if (d > worst) worst = d;
        }
        /* the float argument (x - mx) * scale carries ~1e-7 relative rounding of values up to ~20 */
        CHECK(worst < 5e-6, "n %zu: exp relative error %.3g", n, worst);
        double want1 = 0;
        for (size_t i = 0; i < n; i++) want1 += exp((double)x[i] - mx);
        double z1 = kern_row_expsum(x, n, got_mx), sm = kern_row_sum(x, n);
        CHECK(fabs(z1 - want1) <= 2e-5 * want1, "n %zu: expsum %.9g want %.9g", n, z1, want1);
        double abs_sum = 0;
        for (size_t i = 0; i < n; i++) abs_sum += fabs(x[i]);
        CHECK(fabs(sm - want_sum) <= 2e-5 * abs_sum, "n %zu: sum %.9g want %.9g", n, sm, want_sum);
        float last = e[n - 1];
        kern_row_scale(e, n, 0.5f);
        CHECK(e[n - 1] == 0.5f * last, "n %zu: scale", n);
        kern_free(g_ref, x); free(e);
    }
    float nanrow[20];
    for (int i = 0; i < 20; i++) nanrow[i] = (float)i;
    nanrow[13] = NAN;
    CHECK(kern_row_max(nanrow, 20) == 19.0f, "max skips NaN");
    CHECK(isnan(kern_row_expsum(nanrow, 20, 19.0f)), "a NaN makes the exp sum NaN");
    CHECK(kern_row_max(nanrow, 0) == -INFINITY, "max of nothing is -inf");
}

static void matmul_case(size_t N, size_t C, size_t OC, int layout, int with_bias) {
    float *inp = rnd(N * C, 1), *w = rnd(C * OC, 1), *bias = with_bias ? rnd(OC, 1) : NULL, *g = rnd(N * OC, 1);
    float *o1 = rnd(N * OC, 1), *o2 = rnd(N * OC, 1);   /* garbage: the forward overwrites */
    float *dx0 = rnd(N * C, 1), *dw0 = rnd(C * OC, 1), *db0 = rnd(OC, 1);
    float *dx1 = dup(dx0, N * C), *dw1 = dup(dw0, C * OC), *db1 = dup(db0, OC);
    float *dx2 = dup(dx0, N * C), *dw2 = dup(dw0, C * OC), *db2 = dup(db0, OC);
    char what[96];
    kern_matmul_fwd(g_ref, o1, inp, w, bias, N, C, OC, layout);
    kern_matmul_bwd(g_ref, dx1, dw1, with_bias ? db1 : NULL, g, inp, w, N, C, OC, layout);
    kern_matmul_fwd(g_be, o2, inp, w, bias, N, C, OC, layout);
    kern_matmul_bwd(g_be, dx2, dw2, with_bias ? db2 : NULL, g, inp, w, N, C, OC, layout);
    snprintf(what, sizeof what, "matmul fwd N%zu C%zu OC%zu L%d b%d", N, C, OC, layout, with_bias);
    CHECK_ARRAYS(what, o2, o1, N * OC, 1e-5 * sqrt((double)C), 1e-5);
    snprintf(what, sizeof what, "matmul dinp N%zu C%zu OC%zu L%d b%d", N, C, OC, layout, with_bias);
    CHECK_ARRAYS(what, dx2, dx1, N * C, 1e-5 * sqrt((double)OC), 1e-5);
    snprintf(what, sizeof what, "matmul dw N%zu C%zu OC%zu L%d b%d", N, C, OC, layout, with_bias);
    CHECK_ARRAYS(what, dw2, dw1, C * OC, 1e-5 * sqrt((double)N), 1e-5);
    snprintf(what, sizeof what, "matmul dbias N%zu C%zu OC%zu L%d b%d", N, C, OC, layout, with_bias);
    CHECK_ARRAYS(what, db2, db1, OC, 1e-5 * sqrt((double)N), 1e-5);
    if (!with_bias) CHECK(!memcmp(db2, db0, OC * 4), "NULL dbias written");
    /* NULL skipping on the fast path: one gradient at a time equals all at once */
    float *a = dup(dx0, N * C), *b = dup(dw0, C * OC);
    kern_matmul_bwd(g_be, a, NULL, NULL, g, inp, w, N, C, OC, layout);
    kern_matmul_bwd(g_be, NULL, b, NULL, g, inp, w, N, C, OC, layout);
    CHECK(!memcmp(a, dx2, N * C * 4) && !memcmp(b, dw2, C * OC * 4), "matmul: NULL grads change the others");
    kern_free(g_ref, a); kern_free(g_ref, b);
    kern_free(g_ref, inp); kern_free(g_ref, w); kern_free(g_ref, bias); kern_free(g_ref, g); kern_free(g_ref, o1); kern_free(g_ref, o2);
    kern_free(g_ref, dx0); kern_free(g_ref, dw0); kern_free(g_ref, db0); kern_free(g_ref, dx1); kern_free(g_ref, dw1); kern_free(g_ref, db1);
    kern_free(g_ref, dx2); kern_free(g_ref, dw2); kern_free(g_ref, db2);
}
static void test_matmul_fast(void) {
    for (int layout = 0; layout < 2; layout++)
        for (int wb = 0; wb < 2; wb++) {
            matmul_case(37, 29, 53, layout, wb);
            matmul_case(300, 97, 131, layout, wb);
            matmul_case(1, 13, 7, layout, wb);
        }
}

static void test_layernorm_fast(void) {
    size_t sizes[][2] = {{67, 97}, {5, 384}, {130, 13}, {1, 1}};
    for (size_t k = 0; k < 4; k++) {
        size_t N = sizes[k][0], C = sizes[k][1];
        float *x = rnd(N * C, 2), *w = rnd(C, 1), *b = rnd(C, 1), *g = rnd(N * C, 1);
        for (size_t i = 0; i < N * C; i++) x[i] += 3;
        float *o1 = kern_alloc(g_ref, N * C * 4), *m1 = kern_alloc(g_ref, N * 4), *r1 = kern_alloc(g_ref, N * 4);
        float *o2 = kern_alloc(g_ref, N * C * 4), *m2 = kern_alloc(g_ref, N * 4), *r2 = kern_alloc(g_ref, N * 4);
        float *dx0 = rnd(N * C, 1), *dw0 = rnd(C, 1), *db0 = rnd(C, 1);
        float *dx1 = dup(dx0, N * C), *dw1 = dup(dw0, C), *db1 = dup(db0, C);
        float *dx2 = dup(dx0, N * C), *dw2 = dup(dw0, C), *db2 = dup(db0, C);
        kern_layernorm_fwd(g_ref, o1, m1, r1, x, w, b, N, C, 1e-5f);
        kern_layernorm_bwd(g_ref, dx1, dw1, db1, g, x, w, m1, r1, N, C);
        kern_layernorm_fwd(g_be, o2, m2, r2, x, w, b, N, C, 1e-5f);
        kern_layernorm_bwd(g_be, dx2, dw2, db2, g, x, w, m2, r2, N, C);
        CHECK_ARRAYS("ln fwd", o2, o1, N * C, 2e-5, 1e-4);
        CHECK_ARRAYS("ln mean", m2, m1, N, 1e-5, 1e-5);
        CHECK_ARRAYS("ln rstd", r2, r1, N, 1e-5, 1e-4);
        CHECK_ARRAYS("ln dinp", dx2, dx1, N * C, 2e-5, 1e-4);
        CHECK_ARRAYS("ln dw", dw2, dw1, C, 2e-5 * sqrt((double)N), 1e-4);
        CHECK_ARRAYS("ln db", db2, db1, C, 2e-5 * sqrt((double)N), 1e-4);
        float *a = dup(dx0, N * C), *bb = dup(dw0, C), *c = dup(db0, C);
        kern_layernorm_bwd(g_be, a, NULL, NULL, g, x, w, m2, r2, N, C);
        kern_layernorm_bwd(g_be, NULL, bb, NULL, g, x, w, m2, r2, N, C);
        kern_layernorm_bwd(g_be, NULL, NULL, c, g, x, w, m2, r2, N, C);
        CHECK(!memcmp(a, dx2, N * C * 4), "fast ln: dinp alone differs");
        CHECK_ARRAYS("fast ln dw alone", bb, dw2, C, 1e-6, 1e-6);
        CHECK_ARRAYS("fast ln db alone", c, db2, C, 1e-6, 1e-6);
        kern_free(g_ref, a); kern_free(g_ref, bb); kern_free(g_ref, c);
        kern_free(g_ref, x); kern_free(g_ref, w); kern_free(g_ref, b); kern_free(g_ref, g); kern_free(g_ref, o1); kern_free(g_ref, m1); kern_free(g_ref, r1);
        kern_free(g_ref, o2); kern_free(g_ref, m2); kern_free(g_ref, r2); kern_free(g_ref, dx0); kern_free(g_ref, dw0); kern_free(g_ref, db0);
        kern_free(g_ref, dx1); kern_free(g_ref, dw1); kern_free(g_ref, db1); kern_free(g_ref, dx2); kern_free(g_ref, dw2); kern_free(g_ref, db2);
    }
}

static void attention_case(size_t B, size_t T, size_t C, size_t NH, float qscale) {
    size_t n3 = B * T * 3 * C, n = B * T * C;
    float *qkv = rnd(n3, qscale), *g = rnd(n, 1);
    size_t s1n = kern_attention_saved_floats(g_ref, B, T, C, NH);
    size_t s2n = kern_attention_saved_floats(g_be, B, T, C, NH);
    CHECK(s2n == B * NH * T, "fast saved floats %zu, want B*NH*T = %zu", s2n, B * NH * T);
    float *o1 = rnd(n, 1), *o2 = rnd(n, 1), *s1 = kern_alloc(g_ref, s1n * 4), *s2 = kern_alloc(g_ref, s2n * 4);
    float *d0 = rnd(n3, 1), *d1 = dup(d0, n3), *d2 = dup(d0, n3);
    kern_attention_fwd(g_ref, o1, s1, qkv, B, T, C, NH);
    kern_attention_bwd(g_ref, d1, g, qkv, o1, s1, B, T, C, NH);
    kern_attention_fwd(g_be, o2, s2, qkv, B, T, C, NH);
    kern_attention_bwd(g_be, d2, g, qkv, o2, s2, B, T, C, NH);
    kern_attention_bwd(g_be, NULL, g, qkv, o2, s2, B, T, C, NH);
    char what[96];
    snprintf(what, sizeof what, "attention fwd B%zu T%zu C%zu NH%zu", B, T, C, NH);
    CHECK_ARRAYS(what, o2, o1, n, 2e-5, 1e-4);
    snprintf(what, sizeof what, "attention dqkv B%zu T%zu C%zu NH%zu", B, T, C, NH);
    CHECK_ARRAYS(what, d2, d1, n3, 2e-5, 1e-4);
    kern_free(g_ref, qkv); kern_free(g_ref, g); kern_free(g_ref, o1); kern_free(g_ref, o2); kern_free(g_ref, s1); kern_free(g_ref, s2);
    kern_free(g_ref, d0); kern_free(g_ref, d1); kern_free(g_ref, d2);
}
static void test_attention_fast(void) {
    attention_case(2, 5, 12, 3, 1);
    attention_case(2, 131, 48, 3, 1);     /* crosses two 64-row blocks, hs = 16 */
    attention_case(1, 200, 128, 2, 2);    /* hs = 64, peaky softmax */
    attention_case(3, 64, 36, 6, 1);      /* exactly one block, hs = 6 */
    attention_case(1, 1, 8, 2, 1);
    attention_case(1, 129, 20, 4, 4);     /* very peaky: online max correction matters */
}

/* GELU: compared with the double-precision reference as well, because the float reference's 1 + tanh(u)
 * cancels for negative x (absolute error up to ~5e-7 in gelu') where the fast sigmoid form does not. */
static void test_gelu_fast(void) {
    size_t n = 100003;
    float *x = rnd(n, 3), *g = rnd(n, 1), *o1 = kern_alloc(g_ref, n * 4), *o2 = kern_alloc(g_ref, n * 4);
    x[0] = 0; x[1] = -20; x[2] = 20; x[3] = -9; x[4] = 1e-6f;
    float *d0 = rnd(n, 1), *d1 = dup(d0, n), *d2 = dup(d0, n);
    kern_gelu_fwd(g_ref, o1, x, n); kern_gelu_bwd(g_ref, d1, x, g, n);
    kern_gelu_fwd(g_be, o2, x, n); kern_gelu_bwd(g_be, d2, x, g, n);
    kern_gelu_bwd(g_be, NULL, x, g, n);
    CHECK_ARRAYS("gelu fwd vs f32 ref", o2, o1, n, 1e-6, 1e-5);
    CHECK_ARRAYS("gelu bwd vs f32 ref", d2, d1, n, 3e-6, 1e-5);
    double *x64 = gk_malloc(n * 8), *g64 = gk_malloc(n * 8), *o64 = gk_malloc(n * 8), *d64 = gk_calloc(n, 8);
    for (size_t i = 0; i < n; i++) { x64[i] = x[i]; g64[i] = g[i]; }
    kern_ref64_gelu_fwd(o64, x64, n);
    kern_ref64_gelu_bwd(d64, x64, g64, n);
    float *o3 = kern_alloc(g_ref, n * 4), *d3 = kern_alloc(g_ref, n * 4);
    for (size_t i = 0; i < n; i++) { o3[i] = (float)o64[i]; d3[i] = (float)(d64[i] + d0[i]); }
    CHECK_ARRAYS("gelu fwd vs f64 ref", o2, o3, n, 1e-6, 1e-6);
    CHECK_ARRAYS("gelu bwd vs f64 ref", d2, d3, n, 1e-6, 1e-6);
    free(x64); free(g64); free(o64); free(d64); kern_free(g_ref, o3); kern_free(g_ref, d3);
    kern_free(g_ref, x); kern_free(g_ref, g); kern_free(g_ref, o1); kern_free(g_ref, o2); kern_free(g_ref, d0); kern_free(g_ref, d1); kern_free(g_ref, d2);
}

/* SwiGLU, forward and both input gradients (each may be NULL), against the reference's scalar expf. */
static void test_swiglu_fast(void) {
    size_t n = 100003;
    float *g = rnd(n, 3), *u = rnd(n, 1), *go = rnd(n, 1), *o1 = kern_alloc(g_ref, n * 4), *o2 = kern_alloc(g_ref, n * 4);
    g[0] = 0; g[1] = -100; g[2] = 100; g[3] = -30; g[4] = 1e-6f;
    float *dg1 = rnd(n, 1), *dg2 = dup(dg1, n), *du1 = rnd(n, 1), *du2 = dup(du1, n);
    kern_swiglu_fwd(g_ref, o1, g, u, n); kern_swiglu_fwd(g_be, o2, g, u, n);
    CHECK_ARRAYS("swiglu fwd", o2, o1, n, 1e-6, 1e-5);
    kern_swiglu_bwd(g_ref, dg1, du1, go, g, u, n); kern_swiglu_bwd(g_be, dg2, du2, go, g, u, n);
    CHECK_ARRAYS("swiglu bwd dgate", dg2, dg1, n, 1e-6, 1e-5);
    CHECK_ARRAYS("swiglu bwd dup", du2, du1, n, 1e-6, 1e-5);
    kern_swiglu_bwd(g_ref, NULL, du1, go, g, u, n); kern_swiglu_bwd(g_be, NULL, du2, go, g, u, n);
    CHECK_ARRAYS("swiglu bwd dup (dgate NULL)", du2, du1, n, 1e-6, 1e-5);
    kern_swiglu_bwd(g_ref, dg1, NULL, go, g, u, n); kern_swiglu_bwd(g_be, dg2, NULL, go, g, u, n);
    CHECK_ARRAYS("swiglu bwd dgate (dup NULL)", dg2, dg1, n, 1e-6, 1e-5);
    kern_free(g_ref, g); kern_free(g_ref, u); kern_free(g_ref, go); kern_free(g_ref, o1); kern_free(g_ref, o2);
    kern_free(g_ref, dg1); kern_free(g_ref, dg2); kern_free(g_ref, du1); kern_free(g_ref, du2);
}

static void test_xent_fast(void) {
    size_t N = 9, V = 1031;
    float *l = rnd(N * V, 4), *dls = rnd(N, 1);
    for (size_t v = 0; v < V; v++) l[4 * V + v] += 60;   /* large logits */
    int32_t tg[9] = {5, -1, 1030, 0, 77, -1, 3, 1000, 12};
    float *L1 = kern_alloc(g_ref, N * 4), *L2 = kern_alloc(g_ref, N * 4), *d1 = rnd(N * V, 1), *d2 = rnd(N * V, 1);
    kern_xent_fwd_bwd(g_ref, L1, d1, l, tg, dls, N, V);
    kern_xent_fwd_bwd(g_be, L2, d2, l, tg, dls, N, V);
    CHECK_ARRAYS("xent loss", L2, L1, N, 1e-5, 1e-5);
    CHECK_ARRAYS("xent dlogits", d2, d1, N * V, 1e-7, 1e-5);
    CHECK(L2[1] == 0 && L2[5] == 0 && d2[V] == 0 && d2[5 * V + 17] == 0, "ignored rows");
    /* aliasing, and loss only */
    float *al = dup(l, N * V), *L3 = kern_alloc(g_ref, N * 4);
    kern_xent_fwd_bwd(g_be, L3, al, al, tg, dls, N, V);
    CHECK(!memcmp(al, d2, N * V * 4) && !memcmp(L3, L2, N * 4), "aliased dlogits differ");
    kern_xent_fwd_bwd(g_be, L3, NULL, l, tg, NULL, N, V);
    CHECK(!memcmp(L3, L2, N * 4), "loss-only differs");
    kern_free(g_ref, l); kern_free(g_ref, dls); kern_free(g_ref, L1); kern_free(g_ref, L2); kern_free(g_ref, d1); kern_free(g_ref, d2); kern_free(g_ref, al); kern_free(g_ref, L3);
}

static void test_elementwise_fast(void) {
    size_t n = 100001;
    float *a = rnd(n, 1), *b = rnd(n, 1), *o1 = kern_alloc(g_ref, n * 4), *o2 = kern_alloc(g_ref, n * 4);
    kern_add(g_ref, o1, a, b, n); kern_axpy(g_ref, o1, 0.37f, b, n); kern_scale(g_ref, o1, -1.7f, n);
    double s1 = kern_sumsq(g_ref, a, n);
    kern_add(g_be, o2, a, b, n); kern_axpy(g_be, o2, 0.37f, b, n); kern_scale(g_be, o2, -1.7f, n);
    double s2 = kern_sumsq(g_be, a, n);
    CHECK(!memcmp(o1, o2, n * 4), "add/axpy/scale differ");
    CHECK_CLOSE(s2, s1, 0, 1e-12, "sumsq");
    /* AdamW */
    float *p1 = rnd(n, 1), *g = rnd(n, 1), *m1 = rnd(n, 0.1f), *v1 = rnd(n, 0.1f);
    for (size_t i = 0; i < n; i++) v1[i] = v1[i] * v1[i];
    float *p2 = dup(p1, n), *m2 = dup(m1, n), *v2 = dup(v1, n);
    kern_adamw(g_ref, p1, g, m1, v1, n, 1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, 0.5f, 0.3f, 0.7f);
    kern_adamw(g_be, p2, g, m2, v2, n, 1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, 0.5f, 0.3f, 0.7f);
    CHECK_ARRAYS("adamw p", p2, p1, n, 0, 0);
    CHECK_ARRAYS("adamw m", m2, m1, n, 0, 0);
    CHECK_ARRAYS("adamw v", v2, v1, n, 0, 0);
    kern_free(g_ref, a); kern_free(g_ref, b); kern_free(g_ref, o1); kern_free(g_ref, o2);
    kern_free(g_ref, p1); kern_free(g_ref, g); kern_free(g_ref, m1); kern_free(g_ref, v1); kern_free(g_ref, p2); kern_free(g_ref, m2); kern_free(g_ref, v2);
}

/* ---------------------------------------------------------------- inference ops */

/* Cached attention, fast vs the reference's triple loop: sequences in scattered slots at different cache
 * lengths, a prefill of several rows and a one-row decode, head sizes that are no multiple of 16. The cache
 * starts with the same random contents on both sides (earlier tokens); both the outputs and the caches (the
 * appended rows) must agree. */
static void attn_cache_case(size_t S, size_t B, size_t n, size_t C, size_t NH, size_t NKV, size_t maxT, const int32_t *slot,
                            const int32_t *pos) {
    size_t hs = C / NH, W = (NH + 2 * NKV) * hs, ncache = S * NKV * maxT * hs;
    float *qkv = rnd(B * n * W, 1), *kc1 = rnd(ncache, 1), *vc1 = rnd(ncache, 1);
    float *kc2 = dup(kc1, ncache), *vc2 = dup(vc1, ncache), *o1 = rnd(B * n * C, 1), *o2 = rnd(B * n * C, 1);
    int32_t *dslot = kern_alloc(g_ref, B * sizeof(int32_t)), *dpos = kern_alloc(g_ref, B * sizeof(int32_t));
    kern_upload(g_ref, dslot, slot, B * sizeof(int32_t));
    kern_upload(g_ref, dpos, pos, B * sizeof(int32_t));
    kern_attn_cache_fwd(g_ref, o1, kc1, vc1, qkv, dslot, dpos, B, n, C, NH, NKV, maxT);
    kern_attn_cache_fwd(g_be, o2, kc2, vc2, qkv, dslot, dpos, B, n, C, NH, NKV, maxT);
    char what[96];
    snprintf(what, sizeof what, "attn_cache out S%zu B%zu n%zu C%zu NH%zu NKV%zu", S, B, n, C, NH, NKV);
    CHECK_ARRAYS(what, o2, o1, B * n * C, 2e-5, 1e-4);
    CHECK(!memcmp(kc1, kc2, ncache * 4) && !memcmp(vc1, vc2, ncache * 4), "%s: caches differ", what);
    int fresh = 1;
    for (size_t b = 0; b < B; b++) fresh &= pos[b] == 0;
    if (NKV != NH && fresh) {   /* grouped-query from an empty cache == full attention over the expanded k, v */
        float *qkve = kern_alloc(g_ref, B * n * 3 * C * 4), *o3 = kern_alloc(g_ref, B * n * C * 4);
        float *kc3 = kern_alloc(g_ref, S * NH * maxT * hs * 4), *vc3 = kern_alloc(g_ref, S * NH * maxT * hs * 4);
        kern_kv_expand_fwd(g_ref, qkve, qkv, B * n, NH, NKV, hs);
        kern_attn_cache_fwd(g_ref, o3, kc3, vc3, qkve, dslot, dpos, B, n, C, NH, NH, maxT);
        CHECK_ARRAYS("grouped-query cache == expanded heads", o1, o3, B * n * C, 1e-6, 1e-5);
        kern_free(g_ref, qkve); kern_free(g_ref, o3); kern_free(g_ref, kc3); kern_free(g_ref, vc3);
    }
    kern_free(g_ref, qkv); kern_free(g_ref, kc1); kern_free(g_ref, vc1); kern_free(g_ref, kc2); kern_free(g_ref, vc2);
    kern_free(g_ref, o1); kern_free(g_ref, o2); kern_free(g_ref, dslot); kern_free(g_ref, dpos);
}
static void test_attn_cache(void) {
    int32_t s1[2] = {2, 0}, p1[2] = {5, 0};
    attn_cache_case(3, 2, 4, 21, 3, 3, 37, s1, p1);          /* prefill of 4 rows, hs = 7 */
    attn_cache_case(3, 2, 4, 42, 6, 2, 37, s1, p1);          /* grouped-query 3:1, hs = 7 */
    int32_t s2[3] = {1, 3, 0}, p2[3] = {0, 77, 148};
    attn_cache_case(4, 3, 1, 40, 2, 2, 149, s2, p2);         /* decode; one slot fills the cache exactly */
    attn_cache_case(4, 3, 1, 60, 6, 1, 149, s2, p2);         /* multi-query decode, hs = 10 */
    int32_t s3[1] = {0}, p3[1] = {0};
    attn_cache_case(1, 1, 70, 24, 4, 4, 70, s3, p3);          /* a whole prompt at once, hs = 6 */
    int32_t s4[2] = {1, 0}, p4[2] = {0, 0};
    attn_cache_case(2, 2, 33, 54, 9, 3, 40, s4, p4);         /* grouped-query 3:1 prompts from empty slots, hs = 6 */
    /* the cpu backend's chunks of 128 positions: a batch-1 decode over three chunks (each chunk its own work item),
     * a group wider than it takes together (9:1, one head at a time), and a prefill whose rows cross a chunk end */
    int32_t s5[1] = {1}, p5[1] = {300};
    attn_cache_case(2, 1, 1, 63, 9, 3, 320, s5, p5);         /* grouped-query 3:1 decode, hs = 7 */
    attn_cache_case(2, 1, 1, 90, 18, 2, 320, s5, p5);        /* grouped-query 9:1 decode, hs = 5 */
    int32_t s6[1] = {0}, p6[1] = {100};
    attn_cache_case(1, 1, 40, 63, 9, 3, 150, s6, p6);        /* 40 rows after 100 cached: lengths 101..140 */
}

/* The skinny decode matmul against the reference matmul, both layouts, with and without bias, for every N up
 * to KERN_SKINNY_MAX_N at awkward widths (C = 517 spans three of the AVX2 kernel's 256-row blocks of W, with a
 * partial 8 at the end; OC = 301 ends in a partial 16-column strip and a partial group of 4 rows); on the cpu
 * backend both its vector bodies (AVX-512 or AVX2, whichever the CPU has) and its portable loops. */
static void test_matmul_skinny(void) {
    const size_t Cs[2] = {67, 517}, OC = 301;
    for (int ci = 0; ci < 2; ci++) {
        size_t C = Cs[ci];
        float *w = rnd(C * OC, 1), *bias = rnd(OC, 1), *x = rnd(KERN_SKINNY_MAX_N * C, 1);
        float *want = kern_alloc(g_ref, KERN_SKINNY_MAX_N * OC * 4), *got = kern_alloc(g_ref, KERN_SKINNY_MAX_N * OC * 4);
        for (int portable = 0; portable < 2; portable++)
            for (int lay = 0; lay < 2; lay++)
                for (size_t N = 1; N <= KERN_SKINNY_MAX_N; N++) {
                    const float *b = N % 2 ? bias : NULL;
                    kern_matmul_fwd(g_ref, want, x, w, b, N, C, OC, lay);
                    g_be->skinny_portable = portable;
                    kern_matmul_skinny_fwd(g_be, got, x, w, b, N, C, OC, lay);
                    g_be->skinny_portable = 0;
                    char what[96];
                    snprintf(what, sizeof what, "skinny C%zu N%zu layout %d portable %d", C, N, lay, portable);
                    CHECK_ARRAYS(what, got, want, N * OC, 1e-5 * sqrt((double)C), 1e-5);
                }
        kern_free(g_ref, w); kern_free(g_ref, bias); kern_free(g_ref, x); kern_free(g_ref, want); kern_free(g_ref, got);
    }
}

/* bf16 matmuls: inputs rounded to bfloat16 (relative error <= 2^-9 each), fp32 accumulation. With N(0,1)
 * inputs the error of a K-term sum is about sqrt(K) * 2 * 2^-9 * |a||b| ~ 4e-3 sqrt(K); allowed: 2e-2 sqrt(K).
 * Also checks the result is NOT bit-identical to fp32 (else the bf16 path silently is not in use).
 * g_be is the bf16 backend here. */
static void test_matmul_bf16(void) {
    size_t N = 77, C = 45, OC = 131;
    CHECK(kern_get_precision(g_be) == KERN_PREC_BF16, "backend not bf16");
    CHECK(strstr(kern_backend_name(g_be), "bf16") != NULL, "name does not say bf16: %s", kern_backend_name(g_be));
    for (int layout = 0; layout < 2; layout++) {
        float *x = rnd(N * C, 1), *w = rnd(C * OC, 1), *b = rnd(OC, 1), *g = rnd(N * OC, 1);
        float *o1 = kern_alloc(g_ref, N * OC * 4), *o2 = kern_alloc(g_ref, N * OC * 4);
        float *dx1 = kern_alloc(g_ref, N * C * 4), *dw1 = kern_alloc(g_ref, C * OC * 4);
        float *dx2 = kern_alloc(g_ref, N * C * 4), *dw2 = kern_alloc(g_ref, C * OC * 4);
        kern_matmul_fwd(g_ref, o1, x, w, b, N, C, OC, layout);
        kern_matmul_bwd(g_ref, dx1, dw1, NULL, g, x, w, N, C, OC, layout);
        kern_matmul_fwd(g_be, o2, x, w, b, N, C, OC, layout);
        kern_matmul_bwd(g_be, dx2, dw2, NULL, g, x, w, N, C, OC, layout);
        CHECK_ARRAYS("bf16 matmul fwd", o2, o1, N * OC, 2e-2 * sqrt((double)C), 0);
        CHECK_ARRAYS("bf16 matmul dinp", dx2, dx1, N * C, 2e-2 * sqrt((double)OC), 0);
        CHECK_ARRAYS("bf16 matmul dw", dw2, dw1, C * OC, 2e-2 * sqrt((double)N), 0);
        double maxd = 0;
        for (size_t i = 0; i < N * OC; i++) maxd = fmax(maxd, fabs(o2[i] - o1[i]));
        CHECK(maxd > 1e-4, "bf16 result equals fp32 (max diff %g): bf16 not in use?", maxd);
        kern_free(g_ref, x); kern_free(g_ref, w); kern_free(g_ref, b); kern_free(g_ref, g); kern_free(g_ref, o1);
        kern_free(g_ref, o2); kern_free(g_ref, dx1); kern_free(g_ref, dw1); kern_free(g_ref, dx2); kern_free(g_ref, dw2);
    }
}

/* The bf16 weight copy (kern_bf16_shadow): products reading registered weights equal products that round
 * them afresh (bit for bit, forward and backward), and after kern_adamw changes the weights the next product
 * sees the new values (the copy is refreshed), also for a weight that starts mid-range. g_be is bf16. */
static void test_bf16_shadow(void) {
    size_t N = 19, C = 37, OC = 53, off = 11, np = off + C * OC + 5;
    float *params = rnd(np, 1), *w = params + off, *x = rnd(N * C, 1), *g = rnd(N * OC, 1);
    float *gw = rnd(np, 1), *mm = kern_alloc(g_ref, np * 4), *vv = kern_alloc(g_ref, np * 4);
    float *o1 = kern_alloc(g_ref, N * OC * 4), *o2 = kern_alloc(g_ref, N * OC * 4);
    float *dx1 = kern_alloc(g_ref, N * C * 4), *dx2 = kern_alloc(g_ref, N * C * 4);
    for (int round = 0; round < 2; round++) {
        kern_bf16_shadow(g_be, NULL, 0);                       /* fresh rounding */
        kern_matmul_fwd(g_be, o1, x, w, NULL, N, C, OC, KERN_W_IN_OUT);
        kern_matmul_bwd(g_be, dx1, NULL, NULL, g, x, w, N, C, OC, KERN_W_IN_OUT);
        kern_bf16_shadow(g_be, params, np);                    /* through the copy */
        kern_matmul_fwd(g_be, o2, x, w, NULL, N, C, OC, KERN_W_IN_OUT);
        kern_matmul_bwd(g_be, dx2, NULL, NULL, g, x, w, N, C, OC, KERN_W_IN_OUT);
        CHECK_ARRAYS("shadowed fwd", o2, o1, N * OC, 0, 0);
        CHECK_ARRAYS("shadowed dinp", dx2, dx1, N * C, 0, 0);
        /* an optimizer step on the registered range makes the copy stale; the next product must see it */
        kern_adamw(g_be, params, gw, mm, vv, np, 0.5f, 0.9f, 0.95f, 1e-8f, 0.0f, 1.0f, 1.0f, 1.0f);
        kern_matmul_fwd(g_be, o2, x, w, NULL, N, C, OC, KERN_W_IN_OUT);
        kern_bf16_shadow(g_be, NULL, 0);
        kern_matmul_fwd(g_be, o1, x, w, NULL, N, C, OC, KERN_W_IN_OUT);
        CHECK_ARRAYS("shadow refreshed after adamw", o2, o1, N * OC, 0, 0);
    }
    kern_bf16_shadow(g_be, params, np);   /* left registered: kern_backend_free must drop it */
    kern_free(g_ref, params); kern_free(g_ref, x); kern_free(g_ref, g); kern_free(g_ref, gw); kern_free(g_ref, mm);
    kern_free(g_ref, vv); kern_free(g_ref, o1); kern_free(g_ref, o2); kern_free(g_ref, dx1); kern_free(g_ref, dx2);
}

/* ---------------------------------------------------------------- backends themselves */

static void test_peak_probe(void) {
    kern_backend *be = kern_backend_create(NULL, NULL);
    double f = -1, h = -1, bw = -1;
    CHECK(kern_peak_probe(be, &f, &h, &bw) == 0, "probe failed");
    CHECK(f > 0.1 && f < 1e6, "fp32 GFLOP/s %g", f);
    CHECK(bw > 0.1 && bw < 1e5, "bandwidth %g GB/s", bw);
    CHECK(kern_bf16_available() ? h > 0.1 : h == 0, "bf16 GFLOP/s %g", h);
    CHECK(kern_get_precision(be) == KERN_PREC_FP32, "probe changed the backend's precision");
    kern_backend_free(be);
}

/* Names, option parsing, refusals, and precision as per-instance state (two backends, two precisions). */
static void test_backend_api(void) {
    kern_backend *fast = kern_backend_create(NULL, NULL);
    CHECK(!strncmp(kern_backend_name(fast), "cpu-fast", 8), "fast name '%s'", kern_backend_name(fast));
    CHECK(!strcmp(kern_backend_name(g_ref), "cpu-ref"), "ref name '%s'", kern_backend_name(g_ref));
    CHECK(fast->gemm == kern_gemm_auto() && fast->gemm != KERN_GEMM_AUTO, "auto resolved to %d", (int)fast->gemm);
    CHECK(kern_gemm_auto() == kern_gemm_auto(), "auto pick changes within a process");
    kern_gemm g;
    CHECK(kern_gemm_parse("onednn", &g) == 0 && g == KERN_GEMM_ONEDNN, "parse onednn");
    CHECK(kern_gemm_parse("mkl", &g) == -1, "parse of an unknown library accepted");
    CHECK(!strcmp(kern_gemm_name(KERN_GEMM_BUILTIN), "builtin"), "gemm name");
    kern_kind k;
    CHECK(kern_kind_parse("ref", &k) == 0 && k == KERN_KIND_REF && kern_kind_parse("gpu", &k) == -1, "kind parse");
    CHECK(kern_set_precision(g_ref, KERN_PREC_BF16) == -1 && kern_get_precision(g_ref) == KERN_PREC_FP32,
          "the reference accepted bf16");
    gk_err err;
    kern_backend_opts o = {KERN_KIND_REF, KERN_GEMM_BUILTIN, KERN_PREC_BF16};
    CHECK(kern_backend_create(&o, &err) == NULL && strstr(err.msg, "bf16"), "ref+bf16 created");
    if (kern_bf16_available()) {
        kern_backend *b16 = kern_backend_create(NULL, NULL);
        CHECK(kern_set_precision(b16, KERN_PREC_BF16) == 0, "set bf16");
        CHECK(kern_get_precision(b16) == KERN_PREC_BF16 && kern_get_precision(fast) == KERN_PREC_FP32,
              "precision leaked between backends");
        kern_backend_free(b16);
    } else {
        CHECK(kern_set_precision(fast, KERN_PREC_BF16) == -1 && kern_get_precision(fast) == KERN_PREC_FP32,
              "bf16 unavailable but accepted");
    }
    for (int lib = KERN_GEMM_OPENBLAS; lib <= KERN_GEMM_BUILTIN; lib++) {
        kern_backend_opts q = {KERN_KIND_CPU, (kern_gemm)lib, KERN_PREC_FP32};
        kern_backend *be = kern_backend_create(&q, &err);
        CHECK((be != NULL) == (kern_gemm_present((kern_gemm)lib) != 0), "%s: created %d, present %d",
              kern_gemm_name((kern_gemm)lib), be != NULL, kern_gemm_present((kern_gemm)lib));
        if (be) CHECK(be->gemm == (kern_gemm)lib, "library %d, asked %d", (int)be->gemm, lib);
        kern_backend_free(be);
    }
    kern_backend_free(fast);
}

/* ---------------------------------------------------------------- every backend against the reference */
/* The backends under test: every GEMM library the cpu backend can have, fp32, and oneDNN in bf16. One that
 * this build or CPU lacks is reported SKIP (never PASS). The ops other than matmul do not depend on the
 * library, but run on each backend anyway: a backend is a table, and each table is tested whole. */
typedef struct { const char *tag; kern_backend_opts o; int bf16; } be_case;
static const be_case g_cases[] = {
    {"cpu/openblas", {KERN_KIND_CPU, KERN_GEMM_OPENBLAS, KERN_PREC_FP32}, 0},
    {"cpu/onednn", {KERN_KIND_CPU, KERN_GEMM_ONEDNN, KERN_PREC_FP32}, 0},
    {"cpu/builtin", {KERN_KIND_CPU, KERN_GEMM_BUILTIN, KERN_PREC_FP32}, 0},
    {"cpu/onednn-bf16", {KERN_KIND_CPU, KERN_GEMM_ONEDNN, KERN_PREC_BF16}, 1},
};
typedef struct { const char *name; void (*fn)(void); } be_test;
static const be_test g_fp32_tests[] = {
    {"matmul", test_matmul_fast}, {"layernorm", test_layernorm_fast}, {"attention", test_attention_fast},
    {"gelu", test_gelu_fast}, {"swiglu", test_swiglu_fast}, {"xent", test_xent_fast}, {"elementwise", test_elementwise_fast},
    {"attn_cache", test_attn_cache}, {"matmul_skinny", test_matmul_skinny},
};
static const be_test g_bf16_tests[] = {{"matmul_bf16", test_matmul_bf16}, {"bf16_shadow", test_bf16_shadow}};

static char g_why[1200];
static void skip_absent(void) { TL_SKIP("%s", g_why); }

static void run_backend(const be_case *c) {
    /* the same random inputs for every backend (and, for the first, those of the tests before backends were
     * a table): a failure then points at the backend, not at the draw */
    gk_rng_seed(&g_rng, 777);
    gk_err err;
    g_be = kern_backend_create(&c->o, &err);
    if (!g_be) snprintf(g_why, sizeof g_why, "%s absent here: %s", c->tag, err.msg);
    const be_test *t = c->bf16 ? g_bf16_tests : g_fp32_tests;
    size_t nt = c->bf16 ? sizeof g_bf16_tests / sizeof *t : sizeof g_fp32_tests / sizeof *t;
    char name[128];
    for (size_t i = 0; i < nt; i++) {
        snprintf(name, sizeof name, "%s[%s]", t[i].name, c->tag);
        tl_run(name, g_be ? t[i].fn : skip_absent);
    }
    kern_backend_free(g_be);
    g_be = NULL;
}

int main(void) {
    gk_rng_seed(&g_rng, 777);
    kern_backend_opts ro = {KERN_KIND_REF, KERN_GEMM_BUILTIN, KERN_PREC_FP32};
    g_ref = kern_backend_create(&ro, NULL);
    TL_RUN(test_vexpf_accuracy);
    TL_RUN(test_host_rows);
    for (size_t i = 0; i < sizeof g_cases / sizeof g_cases[0]; i++) run_backend(&g_cases[i]);
    TL_RUN(test_peak_probe);
    TL_RUN(test_backend_api);
    kern_backend_free(g_ref);
    return tl_summary();
}
