/* test_kern_fast.c: every fast CPU op (KERN_IMPL_FAST) against the fp32 reference (KERN_IMPL_REF) on random
 * inputs of awkward sizes (not multiples of any block or vector width; attention crossing its 64-row blocks),
 * with gradients pre-filled with noise (so "+=" is checked) and NULL gradients skipped.
 *
 * Tolerances (|fast - ref| <= atol + rtol |ref|), stated per op:
 *   matmul          atol 1e-5 * sqrt(K), rtol 1e-5   (K = the reduction length; BLAS sums in another order)
 *   layernorm       atol 2e-5, rtol 1e-4 (dw/db: reductions over N rows in another order)
 *   attention       atol 2e-5, rtol 1e-4 (online softmax, exps from kern_vexpf)
 *   gelu            vs the f64 reference atol 1e-6, rtol 1e-6; vs the f32 one atol 3e-6 (its tanh form cancels)
 *   cross-entropy   loss atol 1e-5 rtol 1e-5; dlogits atol 1e-7 rtol 1e-5
 *   adamw, add, axpy, scale: exact (same float operations in the same order per element)
 *   sumsq           rtol 1e-12 (double accumulation in another order)
 *   bf16 matmul     atol 2e-2 sqrt(K) (inputs rounded to bfloat16), and must differ from fp32
 */
#include "kern/kern.h"
#include "kern/cpu/fast_math.h"
#include "core/core.h"
#include "testlib.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

static gk_rng g_rng;

static float *rnd(size_t n, float scale) {
    float *x = kern_alloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) x[i] = scale * gk_rng_normal(&g_rng);
    return x;
}
static float *dup(const float *x, size_t n) {
    float *y = kern_alloc(n * sizeof(float));
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
}

static void matmul_case(size_t N, size_t C, size_t OC, int layout, int with_bias) {
    float *inp = rnd(N * C, 1), *w = rnd(C * OC, 1), *bias = with_bias ? rnd(OC, 1) : NULL, *g = rnd(N * OC, 1);
    float *o1 = rnd(N * OC, 1), *o2 = rnd(N * OC, 1);   /* garbage: the forward overwrites */
    float *dx0 = rnd(N * C, 1), *dw0 = rnd(C * OC, 1), *db0 = rnd(OC, 1);
    float *dx1 = dup(dx0, N * C), *dw1 = dup(dw0, C * OC), *db1 = dup(db0, OC);
    float *dx2 = dup(dx0, N * C), *dw2 = dup(dw0, C * OC), *db2 = dup(db0, OC);
    char what[96];
    kern_set_impl(KERN_IMPL_REF);
    kern_matmul_fwd(o1, inp, w, bias, N, C, OC, layout);
    kern_matmul_bwd(dx1, dw1, with_bias ? db1 : NULL, g, inp, w, N, C, OC, layout);
    kern_set_impl(KERN_IMPL_FAST);
    kern_matmul_fwd(o2, inp, w, bias, N, C, OC, layout);
    kern_matmul_bwd(dx2, dw2, with_bias ? db2 : NULL, g, inp, w, N, C, OC, layout);
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
    kern_matmul_bwd(a, NULL, NULL, g, inp, w, N, C, OC, layout);
    kern_matmul_bwd(NULL, b, NULL, g, inp, w, N, C, OC, layout);
    CHECK(!memcmp(a, dx2, N * C * 4) && !memcmp(b, dw2, C * OC * 4), "fast matmul: NULL grads change the others");
    kern_free(a); kern_free(b);
    kern_free(inp); kern_free(w); kern_free(bias); kern_free(g); kern_free(o1); kern_free(o2);
    kern_free(dx0); kern_free(dw0); kern_free(db0); kern_free(dx1); kern_free(dw1); kern_free(db1);
    kern_free(dx2); kern_free(dw2); kern_free(db2);
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
        float *o1 = kern_alloc(N * C * 4), *m1 = kern_alloc(N * 4), *r1 = kern_alloc(N * 4);
        float *o2 = kern_alloc(N * C * 4), *m2 = kern_alloc(N * 4), *r2 = kern_alloc(N * 4);
        float *dx0 = rnd(N * C, 1), *dw0 = rnd(C, 1), *db0 = rnd(C, 1);
        float *dx1 = dup(dx0, N * C), *dw1 = dup(dw0, C), *db1 = dup(db0, C);
        float *dx2 = dup(dx0, N * C), *dw2 = dup(dw0, C), *db2 = dup(db0, C);
        kern_set_impl(KERN_IMPL_REF);
        kern_layernorm_fwd(o1, m1, r1, x, w, b, N, C, 1e-5f);
        kern_layernorm_bwd(dx1, dw1, db1, g, x, w, m1, r1, N, C);
        kern_set_impl(KERN_IMPL_FAST);
        kern_layernorm_fwd(o2, m2, r2, x, w, b, N, C, 1e-5f);
        kern_layernorm_bwd(dx2, dw2, db2, g, x, w, m2, r2, N, C);
        CHECK_ARRAYS("ln fwd", o2, o1, N * C, 2e-5, 1e-4);
        CHECK_ARRAYS("ln mean", m2, m1, N, 1e-5, 1e-5);
        CHECK_ARRAYS("ln rstd", r2, r1, N, 1e-5, 1e-4);
        CHECK_ARRAYS("ln dinp", dx2, dx1, N * C, 2e-5, 1e-4);
        CHECK_ARRAYS("ln dw", dw2, dw1, C, 2e-5 * sqrt((double)N), 1e-4);
        CHECK_ARRAYS("ln db", db2, db1, C, 2e-5 * sqrt((double)N), 1e-4);
        float *a = dup(dx0, N * C), *bb = dup(dw0, C), *c = dup(db0, C);
        kern_layernorm_bwd(a, NULL, NULL, g, x, w, m2, r2, N, C);
        kern_layernorm_bwd(NULL, bb, NULL, g, x, w, m2, r2, N, C);
        kern_layernorm_bwd(NULL, NULL, c, g, x, w, m2, r2, N, C);
        CHECK(!memcmp(a, dx2, N * C * 4), "fast ln: dinp alone differs");
        CHECK_ARRAYS("fast ln dw alone", bb, dw2, C, 1e-6, 1e-6);
        CHECK_ARRAYS("fast ln db alone", c, db2, C, 1e-6, 1e-6);
        kern_free(a); kern_free(bb); kern_free(c);
        kern_free(x); kern_free(w); kern_free(b); kern_free(g); kern_free(o1); kern_free(m1); kern_free(r1);
        kern_free(o2); kern_free(m2); kern_free(r2); kern_free(dx0); kern_free(dw0); kern_free(db0);
        kern_free(dx1); kern_free(dw1); kern_free(db1); kern_free(dx2); kern_free(dw2); kern_free(db2);
    }
}

static void attention_case(size_t B, size_t T, size_t C, size_t NH, float qscale) {
    size_t n3 = B * T * 3 * C, n = B * T * C;
    float *qkv = rnd(n3, qscale), *g = rnd(n, 1);
    kern_set_impl(KERN_IMPL_REF);
    size_t s1n = kern_attention_saved_floats(B, T, C, NH);
    kern_set_impl(KERN_IMPL_FAST);
    size_t s2n = kern_attention_saved_floats(B, T, C, NH);
    CHECK(s2n == B * NH * T, "fast saved floats %zu, want B*NH*T = %zu", s2n, B * NH * T);
    float *o1 = rnd(n, 1), *o2 = rnd(n, 1), *s1 = kern_alloc(s1n * 4), *s2 = kern_alloc(s2n * 4);
    float *d0 = rnd(n3, 1), *d1 = dup(d0, n3), *d2 = dup(d0, n3);
    kern_set_impl(KERN_IMPL_REF);
    kern_attention_fwd(o1, s1, qkv, B, T, C, NH);
    kern_attention_bwd(d1, g, qkv, o1, s1, B, T, C, NH);
    kern_set_impl(KERN_IMPL_FAST);
    kern_attention_fwd(o2, s2, qkv, B, T, C, NH);
    kern_attention_bwd(d2, g, qkv, o2, s2, B, T, C, NH);
    kern_attention_bwd(NULL, g, qkv, o2, s2, B, T, C, NH);
    char what[96];
    snprintf(what, sizeof what, "attention fwd B%zu T%zu C%zu NH%zu", B, T, C, NH);
    CHECK_ARRAYS(what, o2, o1, n, 2e-5, 1e-4);
    snprintf(what, sizeof what, "attention dqkv B%zu T%zu C%zu NH%zu", B, T, C, NH);
    CHECK_ARRAYS(what, d2, d1, n3, 2e-5, 1e-4);
    kern_free(qkv); kern_free(g); kern_free(o1); kern_free(o2); kern_free(s1); kern_free(s2);
    kern_free(d0); kern_free(d1); kern_free(d2);
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
    float *x = rnd(n, 3), *g = rnd(n, 1), *o1 = kern_alloc(n * 4), *o2 = kern_alloc(n * 4);
    x[0] = 0; x[1] = -20; x[2] = 20; x[3] = -9; x[4] = 1e-6f;
    float *d0 = rnd(n, 1), *d1 = dup(d0, n), *d2 = dup(d0, n);
    kern_set_impl(KERN_IMPL_REF);
    kern_gelu_fwd(o1, x, n); kern_gelu_bwd(d1, x, g, n);
    kern_set_impl(KERN_IMPL_FAST);
    kern_gelu_fwd(o2, x, n); kern_gelu_bwd(d2, x, g, n);
    kern_gelu_bwd(NULL, x, g, n);
    CHECK_ARRAYS("gelu fwd vs f32 ref", o2, o1, n, 1e-6, 1e-5);
    CHECK_ARRAYS("gelu bwd vs f32 ref", d2, d1, n, 3e-6, 1e-5);
    double *x64 = gk_malloc(n * 8), *g64 = gk_malloc(n * 8), *o64 = gk_malloc(n * 8), *d64 = gk_calloc(n, 8);
    for (size_t i = 0; i < n; i++) { x64[i] = x[i]; g64[i] = g[i]; }
    kern_ref64_gelu_fwd(o64, x64, n);
    kern_ref64_gelu_bwd(d64, x64, g64, n);
    float *o3 = kern_alloc(n * 4), *d3 = kern_alloc(n * 4);
    for (size_t i = 0; i < n; i++) { o3[i] = (float)o64[i]; d3[i] = (float)(d64[i] + d0[i]); }
    CHECK_ARRAYS("gelu fwd vs f64 ref", o2, o3, n, 1e-6, 1e-6);
    CHECK_ARRAYS("gelu bwd vs f64 ref", d2, d3, n, 1e-6, 1e-6);
    free(x64); free(g64); free(o64); free(d64); kern_free(o3); kern_free(d3);
    kern_free(x); kern_free(g); kern_free(o1); kern_free(o2); kern_free(d0); kern_free(d1); kern_free(d2);
}

static void test_xent_fast(void) {
    size_t N = 9, V = 1031;
    float *l = rnd(N * V, 4), *dls = rnd(N, 1);
    for (size_t v = 0; v < V; v++) l[4 * V + v] += 60;   /* large logits */
    int32_t tg[9] = {5, -1, 1030, 0, 77, -1, 3, 1000, 12};
    float *L1 = kern_alloc(N * 4), *L2 = kern_alloc(N * 4), *d1 = rnd(N * V, 1), *d2 = rnd(N * V, 1);
    kern_set_impl(KERN_IMPL_REF);
    kern_xent_fwd_bwd(L1, d1, l, tg, dls, N, V);
    kern_set_impl(KERN_IMPL_FAST);
    kern_xent_fwd_bwd(L2, d2, l, tg, dls, N, V);
    CHECK_ARRAYS("xent loss", L2, L1, N, 1e-5, 1e-5);
    CHECK_ARRAYS("xent dlogits", d2, d1, N * V, 1e-7, 1e-5);
    CHECK(L2[1] == 0 && L2[5] == 0 && d2[V] == 0 && d2[5 * V + 17] == 0, "ignored rows");
    /* aliasing, and loss only */
    float *al = dup(l, N * V), *L3 = kern_alloc(N * 4);
    kern_xent_fwd_bwd(L3, al, al, tg, dls, N, V);
    CHECK(!memcmp(al, d2, N * V * 4) && !memcmp(L3, L2, N * 4), "aliased dlogits differ");
    kern_xent_fwd_bwd(L3, NULL, l, tg, NULL, N, V);
    CHECK(!memcmp(L3, L2, N * 4), "loss-only differs");
    kern_free(l); kern_free(dls); kern_free(L1); kern_free(L2); kern_free(d1); kern_free(d2); kern_free(al); kern_free(L3);
}

static void test_elementwise_fast(void) {
    size_t n = 100001;
    float *a = rnd(n, 1), *b = rnd(n, 1), *o1 = kern_alloc(n * 4), *o2 = kern_alloc(n * 4);
    kern_set_impl(KERN_IMPL_REF);
    kern_add(o1, a, b, n); kern_axpy(o1, 0.37f, b, n); kern_scale(o1, -1.7f, n);
    double s1 = kern_sumsq(a, n);
    kern_set_impl(KERN_IMPL_FAST);
    kern_add(o2, a, b, n); kern_axpy(o2, 0.37f, b, n); kern_scale(o2, -1.7f, n);
    double s2 = kern_sumsq(a, n);
    CHECK(!memcmp(o1, o2, n * 4), "add/axpy/scale differ");
    CHECK_CLOSE(s2, s1, 0, 1e-12, "sumsq");
    /* AdamW */
    float *p1 = rnd(n, 1), *g = rnd(n, 1), *m1 = rnd(n, 0.1f), *v1 = rnd(n, 0.1f);
    for (size_t i = 0; i < n; i++) v1[i] = v1[i] * v1[i];
    float *p2 = dup(p1, n), *m2 = dup(m1, n), *v2 = dup(v1, n);
    kern_set_impl(KERN_IMPL_REF);
    kern_adamw(p1, g, m1, v1, n, 1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, 0.5f, 0.3f, 0.7f);
    kern_set_impl(KERN_IMPL_FAST);
    kern_adamw(p2, g, m2, v2, n, 1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, 0.5f, 0.3f, 0.7f);
    CHECK_ARRAYS("adamw p", p2, p1, n, 0, 0);
    CHECK_ARRAYS("adamw m", m2, m1, n, 0, 0);
    CHECK_ARRAYS("adamw v", v2, v1, n, 0, 0);
    kern_free(a); kern_free(b); kern_free(o1); kern_free(o2);
    kern_free(p1); kern_free(g); kern_free(m1); kern_free(v1); kern_free(p2); kern_free(m2); kern_free(v2);
}

/* bf16 matmuls: inputs rounded to bfloat16 (relative error <= 2^-9 each), fp32 accumulation. With N(0,1)
 * inputs the error of a K-term sum is about sqrt(K) * 2 * 2^-9 * |a||b| ~ 4e-3 sqrt(K); allowed: 2e-2 sqrt(K).
 * Also checks the result is NOT bit-identical to fp32 (else the bf16 path silently is not in use). */
static void test_matmul_bf16(void) {
    if (!kern_bf16_available()) {
        CHECK(kern_set_precision(KERN_PREC_BF16) == -1 && kern_get_precision() == KERN_PREC_FP32,
              "bf16 unavailable but accepted");
        TL_SKIP("bf16 matmul unavailable on this build/CPU (only its refusal was checked)");
    }
    size_t N = 77, C = 45, OC = 131;
    for (int layout = 0; layout < 2; layout++) {
        float *x = rnd(N * C, 1), *w = rnd(C * OC, 1), *b = rnd(OC, 1), *g = rnd(N * OC, 1);
        float *o1 = kern_alloc(N * OC * 4), *o2 = kern_alloc(N * OC * 4);
        float *dx1 = kern_alloc(N * C * 4), *dw1 = kern_alloc(C * OC * 4), *dx2 = kern_alloc(N * C * 4), *dw2 = kern_alloc(C * OC * 4);
        kern_set_impl(KERN_IMPL_REF);
        kern_matmul_fwd(o1, x, w, b, N, C, OC, layout);
        kern_matmul_bwd(dx1, dw1, NULL, g, x, w, N, C, OC, layout);
        kern_set_impl(KERN_IMPL_FAST);
        CHECK(kern_set_precision(KERN_PREC_BF16) == 0 && kern_get_precision() == KERN_PREC_BF16, "set bf16");
        CHECK(strstr(kern_impl_name(), "bf16") != NULL, "impl name does not say bf16: %s", kern_impl_name());
        kern_matmul_fwd(o2, x, w, b, N, C, OC, layout);
        kern_matmul_bwd(dx2, dw2, NULL, g, x, w, N, C, OC, layout);
        kern_set_precision(KERN_PREC_FP32);
        CHECK_ARRAYS("bf16 matmul fwd", o2, o1, N * OC, 2e-2 * sqrt((double)C), 0);
        CHECK_ARRAYS("bf16 matmul dinp", dx2, dx1, N * C, 2e-2 * sqrt((double)OC), 0);
        CHECK_ARRAYS("bf16 matmul dw", dw2, dw1, C * OC, 2e-2 * sqrt((double)N), 0);
        double maxd = 0;
        for (size_t i = 0; i < N * OC; i++) maxd = fmax(maxd, fabs(o2[i] - o1[i]));
        CHECK(maxd > 1e-4, "bf16 result equals fp32 (max diff %g): bf16 not in use?", maxd);
        kern_free(x); kern_free(w); kern_free(b); kern_free(g); kern_free(o1); kern_free(o2);
        kern_free(dx1); kern_free(dw1); kern_free(dx2); kern_free(dw2);
    }
}

/* The bf16 weight copy (kern_bf16_shadow): products reading registered weights equal products that round
 * them afresh (bit for bit, forward and backward), and after kern_adamw changes the weights the next product
 * sees the new values (the copy is refreshed), also for a weight that starts mid-range. */
static void test_bf16_shadow(void) {
    if (!kern_bf16_available()) TL_SKIP("bf16 unavailable on this build/CPU: shadow not tested");
    size_t N = 19, C = 37, OC = 53, off = 11, np = off + C * OC + 5;
    float *params = rnd(np, 1), *w = params + off, *x = rnd(N * C, 1), *g = rnd(N * OC, 1);
    float *gw = rnd(np, 1), *mm = kern_alloc(np * 4), *vv = kern_alloc(np * 4);
    float *o1 = kern_alloc(N * OC * 4), *o2 = kern_alloc(N * OC * 4), *dx1 = kern_alloc(N * C * 4), *dx2 = kern_alloc(N * C * 4);
    kern_set_impl(KERN_IMPL_FAST);
    CHECK(kern_set_precision(KERN_PREC_BF16) == 0, "set bf16");
    for (int round = 0; round < 2; round++) {
        kern_bf16_shadow(NULL, 0);                       /* fresh rounding */
        kern_matmul_fwd(o1, x, w, NULL, N, C, OC, KERN_W_IN_OUT);
        kern_matmul_bwd(dx1, NULL, NULL, g, x, w, N, C, OC, KERN_W_IN_OUT);
        kern_bf16_shadow(params, np);                    /* through the copy */
        kern_matmul_fwd(o2, x, w, NULL, N, C, OC, KERN_W_IN_OUT);
        kern_matmul_bwd(dx2, NULL, NULL, g, x, w, N, C, OC, KERN_W_IN_OUT);
        CHECK_ARRAYS("shadowed fwd", o2, o1, N * OC, 0, 0);
        CHECK_ARRAYS("shadowed dinp", dx2, dx1, N * C, 0, 0);
        /* an optimizer step on the registered range makes the copy stale; the next product must see it */
        kern_adamw(params, gw, mm, vv, np, 0.5f, 0.9f, 0.95f, 1e-8f, 0.0f, 1.0f, 1.0f, 1.0f);
        kern_matmul_fwd(o2, x, w, NULL, N, C, OC, KERN_W_IN_OUT);
        kern_bf16_shadow(NULL, 0);
        kern_matmul_fwd(o1, x, w, NULL, N, C, OC, KERN_W_IN_OUT);
        CHECK_ARRAYS("shadow refreshed after adamw", o2, o1, N * OC, 0, 0);
    }
    kern_set_precision(KERN_PREC_FP32);
    kern_free(params); kern_free(x); kern_free(g); kern_free(gw); kern_free(mm); kern_free(vv);
    kern_free(o1); kern_free(o2); kern_free(dx1); kern_free(dx2);
}

static void test_peak_probe(void) {
    double f = -1, h = -1, bw = -1;
    CHECK(kern_peak_probe(&f, &h, &bw) == 0, "probe failed");
    CHECK(f > 0.1 && f < 1e6, "fp32 GFLOP/s %g", f);
    CHECK(bw > 0.1 && bw < 1e5, "bandwidth %g GB/s", bw);
    CHECK(kern_bf16_available() ? h > 0.1 : h == 0, "bf16 GFLOP/s %g", h);
    CHECK(kern_get_impl() == KERN_IMPL_FAST && kern_get_precision() == KERN_PREC_FP32, "probe changed settings");
}

static void test_impl_name(void) {
    kern_set_impl(KERN_IMPL_FAST);
    const char *nm = kern_impl_name();
    CHECK(nm && !strncmp(nm, "cpu-fast", 8), "fast impl name '%s'", nm ? nm : "(null)");
    kern_set_impl(KERN_IMPL_REF);
    CHECK(!strcmp(kern_impl_name(), "cpu-ref"), "ref impl name '%s'", kern_impl_name());
    kern_set_impl(KERN_IMPL_FAST);
}

int main(void) {
    gk_rng_seed(&g_rng, 777);
    TL_RUN(test_vexpf_accuracy);
    TL_RUN(test_matmul_fast);
    TL_RUN(test_layernorm_fast);
    TL_RUN(test_attention_fast);
    TL_RUN(test_gelu_fast);
    TL_RUN(test_xent_fast);
    TL_RUN(test_elementwise_fast);
    TL_RUN(test_matmul_bf16);
    TL_RUN(test_bf16_shadow);
    TL_RUN(test_peak_probe);
    TL_RUN(test_impl_name);
    return tl_summary();
}
