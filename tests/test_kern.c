/* test_kern.c: the reference ops.
 *  - every backward checked by central finite differences on the double-precision reference (kern_ref64_*),
 *    at awkward sizes, with gradients pre-filled with noise so that "+=" (not "=") is what passes;
 *  - the float reference (public kern_* on the "ref" backend) agrees with the double one;
 *  - NULL gradients are skipped and leave the other gradients unchanged;
 *  - a deliberately broken gradient is caught by the checker (so the checks can fail);
 *  - cross-entropy ignore targets and dloss scaling, AdamW against a hand-computed step;
 *  - the column-parallel reductions are race-free (many repeated tokens / rows, many threads). */
#include "kern/kern.h"
#include "core/core.h"
#include "testlib.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

static gk_rng g_rng;
static kern_backend *g_ref;   /* the fp32 reference backend: these tests check it against double and by hand */

static double *rnd64(size_t n, double scale) {
    double *x = gk_malloc((n ? n : 1) * sizeof(double));
    for (size_t i = 0; i < n; i++) x[i] = scale * gk_rng_normal(&g_rng);
    return x;
}
static double *dup64(const double *x, size_t n) {
    double *y = gk_malloc((n ? n : 1) * sizeof(double));
    memcpy(y, x, n * sizeof(double));
    return y;
}
static float *to32(const double *x, size_t n) {
    float *y = gk_malloc((n ? n : 1) * sizeof(float));
    for (size_t i = 0; i < n; i++) y[i] = (float)x[i];
    return y;
}
static double dot64(const double *a, const double *b, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}
/* float result vs double result, as floats */
static void check_f32_vs_f64(const char *file, int line, const char *what, const float *got, const double *want,
                             size_t n, double atol, double rtol) {
    float *w = to32(want, n);
    tl_check_arrays(file, line, what, got, w, n, atol, rtol);
    free(w);
}
#define CHECK_F32_F64(what, got, want, n, atol, rtol) check_f32_vs_f64(__FILE__, __LINE__, what, got, want, n, atol, rtol)

/* ---------------------------------------------------------------- finite differences
 * A loss L(x) = <forward(x), R> for a fixed random R; its gradient is the backward with dout = R.
 * fd_worst returns max_i |grad_i - fd_i| / (FD_ATOL + FD_RTOL |fd_i|): <= 1 means every element passes. */
typedef double (*lossfn)(void *ctx);
#define FD_H 1e-5
#define FD_ATOL 1e-7
#define FD_RTOL 1e-5

static double fd_worst(double *x, size_t n, const double *grad, lossfn f, void *ctx, size_t *wi, double *wfd) {
    double worst = 0;
    *wi = 0; *wfd = 0;
    for (size_t i = 0; i < n; i++) {
        double x0 = x[i];
        x[i] = x0 + FD_H; double lp = f(ctx);
        x[i] = x0 - FD_H; double lm = f(ctx);
        x[i] = x0;
        double fd = (lp - lm) / (2 * FD_H);
        double e = fabs(grad[i] - fd) / (FD_ATOL + FD_RTOL * fabs(fd));
        if (!(e <= worst)) { worst = e; *wi = i; *wfd = fd; }   /* NaN counts as worst */
    }
    f(ctx);   /* leave the context's outputs at the unperturbed point */
    return worst;
}
static void fd_check_at(const char *file, int line, const char *what, double *x, size_t n, const double *grad,
                        lossfn f, void *ctx) {
    size_t wi; double wfd;
    double e = fd_worst(x, n, grad, f, ctx, &wi, &wfd);
    if (!(e <= 1)) tl_fail_at(file, line, "%s: grad[%zu] = %.10g, finite difference %.10g (scaled error %.3g)",
                              what, wi, grad[wi], wfd, e);
    /* a gradient that is all zeros passes against a loss that does not depend on x: make sure it does */
    double norm = 0;
    for (size_t i = 0; i < n; i++) norm += grad[i] * grad[i];
    if (!(norm > 0)) tl_fail_at(file, line, "%s: gradient is identically zero", what);
}
#define FD_CHECK(what, x, n, grad, f, ctx) fd_check_at(__FILE__, __LINE__, what, x, n, grad, f, ctx)

/* Pre-fill a gradient with noise, run the backward, then subtract the noise: checks accumulation. */
static double *noise_like(size_t n) { return rnd64(n, 0.5); }
static void sub64(double *g, const double *g0, size_t n) { for (size_t i = 0; i < n; i++) g[i] -= g0[i]; }

/* ---------------------------------------------------------------- embedding */
typedef struct { size_t B, T, C, V, maxT, pos0; int32_t *tok; double *wte, *wpe, *out, *R; } embed_ctx;
static double embed_loss(void *p) {
    embed_ctx *c = p;
    kern_ref64_embed_fwd(c->out, c->tok, c->wte, c->wpe, c->B, c->T, c->C, c->pos0);
    return dot64(c->out, c->R, c->B * c->T * c->C);
}
static void embed_setup(embed_ctx *c) {
    c->B = 2; c->T = 5; c->C = 12; c->V = 97; c->maxT = 9; c->pos0 = 3;
    size_t BT = c->B * c->T;
    c->tok = gk_malloc(BT * sizeof(int32_t));
    for (size_t i = 0; i < BT; i++) c->tok[i] = (int32_t)gk_rng_below(&g_rng, (uint32_t)c->V);
    c->tok[3] = c->tok[0]; c->tok[7] = c->tok[0]; c->tok[9] = (int32_t)c->V - 1;   /* repeats, last row */
    c->wte = rnd64(c->V * c->C, 1); c->wpe = rnd64(c->maxT * c->C, 1);
    c->out = rnd64(BT * c->C, 1); c->R = rnd64(BT * c->C, 1);
}
static void embed_free(embed_ctx *c) { free(c->tok); free(c->wte); free(c->wpe); free(c->out); free(c->R); }

static void test_embed_grad(void) {
    embed_ctx c; embed_setup(&c);
    size_t nte = c.V * c.C, npe = c.maxT * c.C;
    double *g0te = noise_like(nte), *g0pe = noise_like(npe);
    double *dwte = dup64(g0te, nte), *dwpe = dup64(g0pe, npe);
    kern_ref64_embed_bwd(dwte, dwpe, c.R, c.tok, c.B, c.T, c.C, c.pos0);
    sub64(dwte, g0te, nte); sub64(dwpe, g0pe, npe);
    FD_CHECK("embed dwte", c.wte, nte, dwte, embed_loss, &c);
    FD_CHECK("embed dwpe", c.wpe, npe, dwpe, embed_loss, &c);
    /* NULL skipping: each alone gives the same as both */
    double *a = dup64(g0te, nte), *b = dup64(g0pe, npe);
    kern_ref64_embed_bwd(a, NULL, c.R, c.tok, c.B, c.T, c.C, c.pos0);
    kern_ref64_embed_bwd(NULL, b, c.R, c.tok, c.B, c.T, c.C, c.pos0);
    sub64(a, g0te, nte); sub64(b, g0pe, npe);
    CHECK(!memcmp(a, dwte, nte * sizeof(double)) && !memcmp(b, dwpe, npe * sizeof(double)), "NULL grad changed the others");
    free(a); free(b); free(g0te); free(g0pe); free(dwte); free(dwpe);
    embed_free(&c);
}

/* ---------------------------------------------------------------- layernorm */
typedef struct { size_t N, C; double *inp, *w, *b, *out, *mean, *rstd, *R; } ln_ctx;
static double ln_loss(void *p) {
    ln_ctx *c = p;
    kern_ref64_layernorm_fwd(c->out, c->mean, c->rstd, c->inp, c->w, c->b, c->N, c->C, 1e-5);
    return dot64(c->out, c->R, c->N * c->C);
}
static void ln_setup(ln_ctx *c) {
    c->N = 7; c->C = 13;
    c->inp = rnd64(c->N * c->C, 2);
    for (size_t i = 0; i < c->N * c->C; i++) c->inp[i] += 0.7;   /* non-zero mean */
    c->w = rnd64(c->C, 1); c->b = rnd64(c->C, 1);
    c->out = rnd64(c->N * c->C, 1); c->mean = rnd64(c->N, 1); c->rstd = rnd64(c->N, 1);
    c->R = rnd64(c->N * c->C, 1);
}
static void ln_free(ln_ctx *c) { free(c->inp); free(c->w); free(c->b); free(c->out); free(c->mean); free(c->rstd); free(c->R); }

static void test_layernorm_grad(void) {
    ln_ctx c; ln_setup(&c);
    size_t NC = c.N * c.C;
    ln_loss(&c);
    /* forward against a direct computation of one row */
    for (size_t i = 0; i < c.N; i += 3) {
        double m = 0, v = 0;
        for (size_t k = 0; k < c.C; k++) m += c.inp[i * c.C + k] / c.C;
        for (size_t k = 0; k < c.C; k++) v += (c.inp[i * c.C + k] - m) * (c.inp[i * c.C + k] - m) / c.C;
        for (size_t k = 0; k < c.C; k++)
            CHECK_CLOSE(c.out[i * c.C + k], (c.inp[i * c.C + k] - m) / sqrt(v + 1e-5) * c.w[k] + c.b[k], 1e-12, 1e-10, "ln fwd");
    }
    double *g0x = noise_like(NC), *g0w = noise_like(c.C), *g0b = noise_like(c.C);
    double *dx = dup64(g0x, NC), *dw = dup64(g0w, c.C), *db = dup64(g0b, c.C);
    kern_ref64_layernorm_bwd(dx, dw, db, c.R, c.inp, c.w, c.mean, c.rstd, c.N, c.C);
    sub64(dx, g0x, NC); sub64(dw, g0w, c.C); sub64(db, g0b, c.C);
    FD_CHECK("layernorm dinp", c.inp, NC, dx, ln_loss, &c);
    FD_CHECK("layernorm dw", c.w, c.C, dw, ln_loss, &c);
    FD_CHECK("layernorm db", c.b, c.C, db, ln_loss, &c);
    ln_loss(&c);
    double *a = dup64(g0x, NC), *b = dup64(g0w, c.C), *d = dup64(g0b, c.C);
    kern_ref64_layernorm_bwd(a, NULL, NULL, c.R, c.inp, c.w, c.mean, c.rstd, c.N, c.C);
    kern_ref64_layernorm_bwd(NULL, b, NULL, c.R, c.inp, c.w, c.mean, c.rstd, c.N, c.C);
    kern_ref64_layernorm_bwd(NULL, NULL, d, c.R, c.inp, c.w, c.mean, c.rstd, c.N, c.C);
    kern_ref64_layernorm_bwd(NULL, NULL, NULL, c.R, c.inp, c.w, c.mean, c.rstd, c.N, c.C);
    sub64(a, g0x, NC); sub64(b, g0w, c.C); sub64(d, g0b, c.C);
    CHECK(!memcmp(a, dx, NC * 8) && !memcmp(b, dw, c.C * 8) && !memcmp(d, db, c.C * 8), "NULL grad changed the others");
    free(a); free(b); free(d); free(g0x); free(g0w); free(g0b); free(dx); free(dw); free(db);
    ln_free(&c);
}

/* ---------------------------------------------------------------- matmul */
typedef struct { size_t N, C, OC; int layout; double *inp, *w, *bias, *out, *R; } mm_ctx;
static double mm_loss(void *p) {
    mm_ctx *c = p;
    kern_ref64_matmul_fwd(c->out, c->inp, c->w, c->bias, c->N, c->C, c->OC, c->layout);
    return dot64(c->out, c->R, c->N * c->OC);
}
static void mm_setup(mm_ctx *c, int layout, int with_bias) {
    c->N = 7; c->C = 13; c->OC = 11; c->layout = layout;
    c->inp = rnd64(c->N * c->C, 1); c->w = rnd64(c->C * c->OC, 1);
    c->bias = with_bias ? rnd64(c->OC, 1) : NULL;
    c->out = rnd64(c->N * c->OC, 1); c->R = rnd64(c->N * c->OC, 1);
}
static void mm_free(mm_ctx *c) { free(c->inp); free(c->w); free(c->bias); free(c->out); free(c->R); }

static void matmul_grad_case(int layout, int with_bias) {
    mm_ctx c; mm_setup(&c, layout, with_bias);
    const char *tag = layout == KERN_W_IN_OUT ? (with_bias ? "IN_OUT+bias" : "IN_OUT") : (with_bias ? "OUT_IN+bias" : "OUT_IN");
    char what[64];
    size_t NC = c.N * c.C, W = c.C * c.OC;
    mm_loss(&c);
    /* forward: one element by hand */
    double want = with_bias ? c.bias[4] : 0;
    for (size_t k = 0; k < c.C; k++)
        want += c.inp[5 * c.C + k] * (layout == KERN_W_IN_OUT ? c.w[k * c.OC + 4] : c.w[4 * c.C + k]);
    snprintf(what, sizeof what, "matmul fwd %s", tag);
    CHECK_CLOSE(c.out[5 * c.OC + 4], want, 1e-12, 1e-10, what);
    double *g0x = noise_like(NC), *g0w = noise_like(W), *g0b = noise_like(c.OC);
    double *dx = dup64(g0x, NC), *dw = dup64(g0w, W), *db = dup64(g0b, c.OC);
    kern_ref64_matmul_bwd(dx, dw, with_bias ? db : NULL, c.R, c.inp, c.w, c.N, c.C, c.OC, layout);
    sub64(dx, g0x, NC); sub64(dw, g0w, W); sub64(db, g0b, c.OC);
    snprintf(what, sizeof what, "matmul dinp %s", tag);  FD_CHECK(what, c.inp, NC, dx, mm_loss, &c);
    snprintf(what, sizeof what, "matmul dw %s", tag);    FD_CHECK(what, c.w, W, dw, mm_loss, &c);
    if (with_bias) { snprintf(what, sizeof what, "matmul dbias %s", tag); FD_CHECK(what, c.bias, c.OC, db, mm_loss, &c); }
    else {
        double z = 0;
        for (size_t j = 0; j < c.OC; j++) z += fabs(db[j]);
        CHECK(z == 0, "matmul %s: NULL dbias was written", tag);
    }
    /* NULL skipping */
    double *a = dup64(g0x, NC), *b = dup64(g0w, W), *d = dup64(g0b, c.OC);
    kern_ref64_matmul_bwd(a, NULL, NULL, c.R, c.inp, c.w, c.N, c.C, c.OC, layout);
    kern_ref64_matmul_bwd(NULL, b, NULL, c.R, c.inp, c.w, c.N, c.C, c.OC, layout);
    if (with_bias) kern_ref64_matmul_bwd(NULL, NULL, d, c.R, c.inp, c.w, c.N, c.C, c.OC, layout);
    kern_ref64_matmul_bwd(NULL, NULL, NULL, c.R, c.inp, c.w, c.N, c.C, c.OC, layout);
    sub64(a, g0x, NC); sub64(b, g0w, W); sub64(d, g0b, c.OC);
    CHECK(!memcmp(a, dx, NC * 8) && !memcmp(b, dw, W * 8) && !memcmp(d, db, c.OC * 8), "matmul %s: NULL grad changed the others", tag);
    free(a); free(b); free(d); free(g0x); free(g0w); free(g0b); free(dx); free(dw); free(db);
    mm_free(&c);
}
static void test_matmul_grad(void) {
    for (int layout = 0; layout < 2; layout++)
        for (int wb = 0; wb < 2; wb++) matmul_grad_case(layout, wb);
}

/* ---------------------------------------------------------------- attention */
typedef struct { size_t B, T, C, NH; double *qkv, *out, *saved, *R; } att_ctx;
static double att_loss(void *p) {
    att_ctx *c = p;
    kern_ref64_attention_fwd(c->out, c->saved, c->qkv, c->B, c->T, c->C, c->NH);
    return dot64(c->out, c->R, c->B * c->T * c->C);
}
static void att_setup(att_ctx *c, size_t B, size_t T, size_t C, size_t NH) {
    c->B = B; c->T = T; c->C = C; c->NH = NH;
    c->qkv = rnd64(B * T * 3 * C, 1.5); c->out = rnd64(B * T * C, 1);
    c->saved = rnd64(B * NH * T * T, 1); c->R = rnd64(B * T * C, 1);
}
static void att_free(att_ctx *c) { free(c->qkv); free(c->out); free(c->saved); free(c->R); }

static void test_attention_grad(void) {
    att_ctx c; att_setup(&c, 2, 5, 12, 3);
    size_t n = c.B * c.T * 3 * c.C, hs = c.C / c.NH;
    att_loss(&c);
    /* forward by hand for b=1, h=2, t=3, d=1 */
    {
        size_t b = 1, h = 2, t = 3, d = 1, C3 = 3 * c.C;
        double s[5], mx = -1e300, sum = 0, o = 0;
        for (size_t j = 0; j <= t; j++) {
            s[j] = 0;
            for (size_t e = 0; e < hs; e++)
                s[j] += c.qkv[(b * c.T + t) * C3 + h * hs + e] * c.qkv[(b * c.T + j) * C3 + c.C + h * hs + e];
            s[j] /= sqrt((double)hs);
            if (s[j] > mx) mx = s[j];
        }
        for (size_t j = 0; j <= t; j++) sum += exp(s[j] - mx);
        for (size_t j = 0; j <= t; j++) o += exp(s[j] - mx) / sum * c.qkv[(b * c.T + j) * C3 + 2 * c.C + h * hs + d];
        CHECK_CLOSE(c.out[(b * c.T + t) * c.C + h * hs + d], o, 1e-12, 1e-10, "attention fwd by hand");
        CHECK(c.saved[((b * c.NH + h) * c.T + t) * c.T + 4] == 0, "future probability not zero");
    }
    double *g0 = noise_like(n), *dq = dup64(g0, n);
    kern_ref64_attention_bwd(dq, c.R, c.qkv, c.out, c.saved, c.B, c.T, c.C, c.NH);
    sub64(dq, g0, n);
    FD_CHECK("attention dqkv", c.qkv, n, dq, att_loss, &c);
    kern_ref64_attention_bwd(NULL, c.R, c.qkv, c.out, c.saved, c.B, c.T, c.C, c.NH);   /* must not crash */
    free(g0); free(dq);
    att_free(&c);
    /* T = 1 and a single head are edge cases too */
    att_setup(&c, 1, 1, 4, 1);
    n = 12; att_loss(&c);
    dq = rnd64(n, 0); memset(dq, 0, n * 8);
    kern_ref64_attention_bwd(dq, c.R, c.qkv, c.out, c.saved, 1, 1, 4, 1);
    /* with one position the output is v itself: dv = R, dq = dk = 0 */
    for (size_t d = 0; d < 4; d++) {
        CHECK_CLOSE(c.out[d], c.qkv[8 + d], 1e-15, 0, "T=1 out = v");
        CHECK_CLOSE(dq[8 + d], c.R[d], 1e-15, 0, "T=1 dv = dout");
        CHECK_CLOSE(dq[d], 0, 1e-15, 0, "T=1 dq = 0");
    }
    free(dq);
    att_free(&c);
}

/* ---------------------------------------------------------------- gelu */
typedef struct { size_t n; double *inp, *out, *R; } gelu_ctx;
static double gelu_loss(void *p) {
    gelu_ctx *c = p;
    kern_ref64_gelu_fwd(c->out, c->inp, c->n);
    return dot64(c->out, c->R, c->n);
}
static void test_gelu_grad(void) {
    gelu_ctx c = { .n = 37 };
    c.inp = rnd64(c.n, 2); c.out = rnd64(c.n, 1); c.R = rnd64(c.n, 1);
    c.inp[0] = 0; c.inp[1] = -5; c.inp[2] = 5;
    gelu_loss(&c);
    CHECK_CLOSE(c.out[0], 0, 1e-15, 0, "gelu(0)");
    CHECK_CLOSE(c.out[2], 5 * 0.5 * (1 + tanh(sqrt(2 / M_PI) * (5 + 0.044715 * 125))), 1e-12, 1e-12, "gelu(5)");
    double *g0 = noise_like(c.n), *d = dup64(g0, c.n);
    kern_ref64_gelu_bwd(d, c.inp, c.R, c.n);
    sub64(d, g0, c.n);
    FD_CHECK("gelu dinp", c.inp, c.n, d, gelu_loss, &c);
    kern_ref64_gelu_bwd(NULL, c.inp, c.R, c.n);
    free(g0); free(d); free(c.inp); free(c.out); free(c.R);
}

/* ---------------------------------------------------------------- cross-entropy */
typedef struct { size_t N, V; double *logits, *loss, *dloss; int32_t *tg; } xent_ctx;
static double xent_lossfn(void *p) {   /* L = sum_i dloss_i loss_i */
    xent_ctx *c = p;
    kern_ref64_xent_fwd_bwd(c->loss, NULL, c->logits, c->tg, NULL, c->N, c->V);
    return dot64(c->loss, c->dloss, c->N);
}
static void test_xent_grad(void) {
    xent_ctx c = { .N = 7, .V = 97 };
    c.logits = rnd64(c.N * c.V, 3); c.loss = rnd64(c.N, 1); c.dloss = rnd64(c.N, 1);
    c.tg = gk_malloc(c.N * sizeof(int32_t));
    for (size_t i = 0; i < c.N; i++) c.tg[i] = (int32_t)gk_rng_below(&g_rng, (uint32_t)c.V);
    c.tg[2] = -1; c.tg[5] = -1; c.tg[6] = (int32_t)c.V - 1;
    c.dloss[3] = 1.0 / 7; c.dloss[4] = 3.5;   /* mean-style and large scalings */
    size_t n = c.N * c.V;
    double *dl = rnd64(n, 1);   /* garbage: must be overwritten, not accumulated */
    kern_ref64_xent_fwd_bwd(c.loss, dl, c.logits, c.tg, c.dloss, c.N, c.V);
    for (size_t i = 0; i < c.N; i++) {
        if (c.tg[i] < 0) {
            CHECK(c.loss[i] == 0, "ignored row %zu has loss %g", i, c.loss[i]);
            for (size_t v = 0; v < c.V; v++) CHECK(dl[i * c.V + v] == 0, "ignored row %zu has gradient", i);
            continue;
        }
        double s = 0;
        for (size_t v = 0; v < c.V; v++) s += exp(c.logits[i * c.V + v]);
        CHECK_CLOSE(c.loss[i], log(s) - c.logits[i * c.V + c.tg[i]], 1e-12, 1e-12, "xent loss by hand");
        double rs = 0;
        for (size_t v = 0; v < c.V; v++) rs += dl[i * c.V + v];
        CHECK_CLOSE(rs, 0, 1e-12, 0, "xent gradient row sums to zero");
    }
    FD_CHECK("xent dlogits", c.logits, n, dl, xent_lossfn, &c);
    /* dlogits aliasing logits gives the same numbers */
    double *al = dup64(c.logits, n), *loss2 = rnd64(c.N, 1);
    kern_ref64_xent_fwd_bwd(loss2, al, al, c.tg, c.dloss, c.N, c.V);
    for (size_t i = 0; i < n; i++) if (al[i] != dl[i]) { CHECK(0, "aliased dlogits differ at %zu: %.17g vs %.17g", i, al[i], dl[i]); break; }
    for (size_t i = 0; i < c.N; i++) CHECK(loss2[i] == c.loss[i], "aliased loss differs at %zu: %.17g vs %.17g", i, loss2[i], c.loss[i]);
    /* large logits do not overflow */
    for (size_t v = 0; v < c.V; v++) al[v] = 1000 + (double)v;
    al[0] = 1000 + c.V;
    int32_t t0 = 0;
    kern_ref64_xent_fwd_bwd(loss2, NULL, al, &t0, NULL, 1, c.V);
    CHECK(isfinite(loss2[0]) && loss2[0] < 1, "large logits: loss %g", loss2[0]);
    free(al); free(loss2); free(dl); free(c.logits); free(c.loss); free(c.dloss); free(c.tg);
}

/* ---------------------------------------------------------------- the checker can fail */
static void test_fd_checker_catches_bugs(void) {
    mm_ctx c; mm_setup(&c, KERN_W_IN_OUT, 1);
    size_t W = c.C * c.OC, wi; double wfd;
    mm_loss(&c);
    double *dw = rnd64(W, 0); memset(dw, 0, W * 8);
    kern_ref64_matmul_bwd(NULL, dw, NULL, c.R, c.inp, c.w, c.N, c.C, c.OC, KERN_W_IN_OUT);
    CHECK(fd_worst(c.w, W, dw, mm_loss, &c, &wi, &wfd) <= 1, "correct gradient rejected");
    dw[17] *= 1.001;
    CHECK(fd_worst(c.w, W, dw, mm_loss, &c, &wi, &wfd) > 1 && wi == 17, "0.1%% error in one element not caught");
    /* the classic bug: the weight gradient in the other layout (a transpose) */
    memset(dw, 0, W * 8);
    kern_ref64_matmul_bwd(NULL, dw, NULL, c.R, c.inp, c.w, c.N, c.C, c.OC, KERN_W_OUT_IN);
    CHECK(fd_worst(c.w, W, dw, mm_loss, &c, &wi, &wfd) > 1, "transposed dw not caught");
    free(dw); mm_free(&c);
    /* "=" instead of "+=": pre-filled noise would survive. Emulate: a gradient plus leftover noise. */
    gelu_ctx g = { .n = 11 };
    g.inp = rnd64(g.n, 1); g.out = rnd64(g.n, 1); g.R = rnd64(g.n, 1);
    double *d = rnd64(g.n, 0.5);
    kern_ref64_gelu_bwd(d, g.inp, g.R, g.n);
    CHECK(fd_worst(g.inp, g.n, d, gelu_loss, &g, &wi, &wfd) > 1, "un-subtracted noise not caught");
    free(d); free(g.inp); free(g.out); free(g.R);
}

/* ---------------------------------------------------------------- float reference vs double reference */
static void test_f32_matches_f64(void) {
    /* embedding */
    {
        embed_ctx c; embed_setup(&c);
        size_t BT = c.B * c.T, nte = c.V * c.C, npe = c.maxT * c.C;
        float *wte = to32(c.wte, nte), *wpe = to32(c.wpe, npe), *R = to32(c.R, BT * c.C);
        float *out = kern_alloc(g_ref, BT * c.C * 4), *dwte = kern_alloc(g_ref, nte * 4), *dwpe = kern_alloc(g_ref, npe * 4);
        double *dte = rnd64(nte, 0), *dpe = rnd64(npe, 0); memset(dte, 0, nte * 8); memset(dpe, 0, npe * 8);
        kern_embed_fwd(g_ref, out, c.tok, wte, wpe, c.B, c.T, c.C, c.pos0);
        embed_loss(&c);
        CHECK_F32_F64("embed fwd f32", out, c.out, BT * c.C, 1e-6, 1e-6);
        kern_embed_bwd(g_ref, dwte, dwpe, R, c.tok, c.B, c.T, c.C, c.pos0);
        kern_ref64_embed_bwd(dte, dpe, c.R, c.tok, c.B, c.T, c.C, c.pos0);
        CHECK_F32_F64("embed dwte f32", dwte, dte, nte, 1e-6, 1e-6);
        CHECK_F32_F64("embed dwpe f32", dwpe, dpe, npe, 1e-6, 1e-6);
        kern_free(g_ref, out); kern_free(g_ref, dwte); kern_free(g_ref, dwpe); free(wte); free(wpe); free(R); free(dte); free(dpe);
        embed_free(&c);
    }
    /* layernorm */
    {
        ln_ctx c; ln_setup(&c);
        size_t NC = c.N * c.C;
        float *inp = to32(c.inp, NC), *w = to32(c.w, c.C), *b = to32(c.b, c.C), *R = to32(c.R, NC);
        float *out = kern_alloc(g_ref, NC * 4), *mean = kern_alloc(g_ref, c.N * 4), *rstd = kern_alloc(g_ref, c.N * 4);
        float *dx = kern_alloc(g_ref, NC * 4), *dw = kern_alloc(g_ref, c.C * 4), *db = kern_alloc(g_ref, c.C * 4);
        double *dx64 = rnd64(NC, 0), *dw64 = rnd64(c.C, 0), *db64 = rnd64(c.C, 0);
        memset(dx64, 0, NC * 8); memset(dw64, 0, c.C * 8); memset(db64, 0, c.C * 8);
        kern_layernorm_fwd(g_ref, out, mean, rstd, inp, w, b, c.N, c.C, 1e-5f);
        ln_loss(&c);
        CHECK_F32_F64("ln fwd f32", out, c.out, NC, 1e-5, 1e-5);
        CHECK_F32_F64("ln rstd f32", rstd, c.rstd, c.N, 1e-6, 1e-5);
        kern_layernorm_bwd(g_ref, dx, dw, db, R, inp, w, mean, rstd, c.N, c.C);
        kern_ref64_layernorm_bwd(dx64, dw64, db64, c.R, c.inp, c.w, c.mean, c.rstd, c.N, c.C);
        CHECK_F32_F64("ln dinp f32", dx, dx64, NC, 1e-5, 1e-4);
        CHECK_F32_F64("ln dw f32", dw, dw64, c.C, 1e-5, 1e-4);
        CHECK_F32_F64("ln db f32", db, db64, c.C, 1e-5, 1e-4);
        kern_free(g_ref, out); kern_free(g_ref, mean); kern_free(g_ref, rstd); kern_free(g_ref, dx); kern_free(g_ref, dw); kern_free(g_ref, db);
        free(inp); free(w); free(b); free(R); free(dx64); free(dw64); free(db64);
        ln_free(&c);
    }
    /* matmul, both layouts */
    for (int layout = 0; layout < 2; layout++) {
        mm_ctx c; mm_setup(&c, layout, 1);
        size_t NC = c.N * c.C, W = c.C * c.OC, NO = c.N * c.OC;
        float *inp = to32(c.inp, NC), *w = to32(c.w, W), *bias = to32(c.bias, c.OC), *R = to32(c.R, NO);
        float *out = kern_alloc(g_ref, NO * 4), *dx = kern_alloc(g_ref, NC * 4), *dw = kern_alloc(g_ref, W * 4), *db = kern_alloc(g_ref, c.OC * 4);
        double *dx64 = rnd64(NC, 0), *dw64 = rnd64(W, 0), *db64 = rnd64(c.OC, 0);
        memset(dx64, 0, NC * 8); memset(dw64, 0, W * 8); memset(db64, 0, c.OC * 8);
        kern_matmul_fwd(g_ref, out, inp, w, bias, c.N, c.C, c.OC, layout);
        mm_loss(&c);
        CHECK_F32_F64("matmul fwd f32", out, c.out, NO, 1e-5, 1e-5);
        kern_matmul_bwd(g_ref, dx, dw, db, R, inp, w, c.N, c.C, c.OC, layout);
        kern_ref64_matmul_bwd(dx64, dw64, db64, c.R, c.inp, c.w, c.N, c.C, c.OC, layout);
        CHECK_F32_F64("matmul dinp f32", dx, dx64, NC, 1e-5, 1e-5);
        CHECK_F32_F64("matmul dw f32", dw, dw64, W, 1e-5, 1e-5);
        CHECK_F32_F64("matmul dbias f32", db, db64, c.OC, 1e-5, 1e-5);
        kern_free(g_ref, out); kern_free(g_ref, dx); kern_free(g_ref, dw); kern_free(g_ref, db);
        free(inp); free(w); free(bias); free(R); free(dx64); free(dw64); free(db64);
        mm_free(&c);
    }
    /* attention */
    {
        att_ctx c; att_setup(&c, 2, 5, 12, 3);
        size_t n = c.B * c.T * 3 * c.C, no = c.B * c.T * c.C;
        float *qkv = to32(c.qkv, n), *R = to32(c.R, no);
        float *out = kern_alloc(g_ref, no * 4), *saved = kern_alloc(g_ref, kern_attention_saved_floats(g_ref, c.B, c.T, c.C, c.NH) * 4);
        float *dq = kern_alloc(g_ref, n * 4);
        double *dq64 = rnd64(n, 0); memset(dq64, 0, n * 8);
        CHECK(kern_attention_saved_floats(g_ref, c.B, c.T, c.C, c.NH) == c.B * c.NH * c.T * c.T, "ref saved size");
        kern_attention_fwd(g_ref, out, saved, qkv, c.B, c.T, c.C, c.NH);
        att_loss(&c);
        CHECK_F32_F64("attention fwd f32", out, c.out, no, 1e-5, 1e-5);
        kern_attention_bwd(g_ref, dq, R, qkv, out, saved, c.B, c.T, c.C, c.NH);
        kern_ref64_attention_bwd(dq64, c.R, c.qkv, c.out, c.saved, c.B, c.T, c.C, c.NH);
        CHECK_F32_F64("attention dqkv f32", dq, dq64, n, 1e-5, 1e-4);
        kern_free(g_ref, out); kern_free(g_ref, saved); kern_free(g_ref, dq); free(qkv); free(R); free(dq64);
        att_free(&c);
    }
    /* gelu and xent */
    {
        size_t n = 41, N = 7, V = 97;
        double *x64 = rnd64(n, 2), *o64 = rnd64(n, 0), *R64 = rnd64(n, 1), *d64 = rnd64(n, 0);
        memset(d64, 0, n * 8);
        float *x = to32(x64, n), *R = to32(R64, n), *o = kern_alloc(g_ref, n * 4), *d = kern_alloc(g_ref, n * 4);
        kern_gelu_fwd(g_ref, o, x, n); kern_ref64_gelu_fwd(o64, x64, n);
        CHECK_F32_F64("gelu fwd f32", o, o64, n, 1e-6, 1e-5);
        kern_gelu_bwd(g_ref, d, x, R, n); kern_ref64_gelu_bwd(d64, x64, R64, n);
        CHECK_F32_F64("gelu bwd f32", d, d64, n, 1e-6, 1e-5);
        double *l64 = rnd64(N * V, 3), *loss64 = rnd64(N, 0), *dl64 = rnd64(N * V, 0), *dls64 = rnd64(N, 1);
        int32_t tg[7] = {3, -1, 96, 0, 50, -1, 7};
        float *l = to32(l64, N * V), *dls = to32(dls64, N), *loss = kern_alloc(g_ref, N * 4), *dl = kern_alloc(g_ref, N * V * 4);
        kern_xent_fwd_bwd(g_ref, loss, dl, l, tg, dls, N, V);
        kern_ref64_xent_fwd_bwd(loss64, dl64, l64, tg, dls64, N, V);
        CHECK_F32_F64("xent loss f32", loss, loss64, N, 1e-5, 1e-5);
        CHECK_F32_F64("xent dlogits f32", dl, dl64, N * V, 1e-6, 1e-4);
        free(x64); free(o64); free(R64); free(d64); free(x); free(R); kern_free(g_ref, o); kern_free(g_ref, d);
        free(l64); free(loss64); free(dl64); free(dls64); free(l); free(dls); kern_free(g_ref, loss); kern_free(g_ref, dl);
    }
}

/* ---------------------------------------------------------------- elementwise and optimizer */
static void test_elementwise(void) {
    size_t n = 1003;
    float *a = kern_alloc(g_ref, n * 4), *b = kern_alloc(g_ref, n * 4), *o = kern_alloc(g_ref, n * 4);
    double ss = 0;
    for (size_t i = 0; i < n; i++) { a[i] = (float)i * 0.5f - 3; b[i] = 1.0f / (float)(i + 1); ss += (double)a[i] * a[i]; }
    kern_add(g_ref, o, a, b, n);
    for (size_t i = 0; i < n; i += 97) CHECK(o[i] == a[i] + b[i], "add [%zu]", i);
    kern_axpy(g_ref, o, -2.0f, b, n);
    for (size_t i = 0; i < n; i += 97) CHECK_CLOSE(o[i], a[i] - b[i], 1e-6, 1e-6, "axpy");
    kern_scale(g_ref, o, 0.25f, n);
    for (size_t i = 0; i < n; i += 97) CHECK_CLOSE(o[i], 0.25 * ((double)a[i] - b[i]), 1e-6, 1e-6, "scale");
    CHECK_CLOSE(kern_sumsq(g_ref, a, n), ss, 0, 1e-12, "sumsq");
    CHECK(kern_sumsq(g_ref, a, 0) == 0, "sumsq of nothing");
    kern_free(g_ref, a); kern_free(g_ref, b); kern_free(g_ref, o);
}

static void test_adamw_step(void) {
    /* First step from zero moments: m/bc1 = g and v/bc2 = g^2, so the update is lr (g/(|g|+eps) + wd p):
     * p = 1, g = 0.5 * gscale 2 = 1, lr 0.1, wd 0.1  ->  p = 1 - 0.1 (1 + 0.1) = 0.89 */
    float p = 1, g = 0.5f, m = 0, v = 0;
    kern_adamw(g_ref, &p, &g, &m, &v, 1, 0.1f, 0.9f, 0.999f, 1e-8f, 0.1f, 1 - 0.9f, 1 - 0.999f, 2.0f);
    CHECK_CLOSE(p, 0.89, 1e-6, 0, "adamw first step");
    CHECK_CLOSE(m, 0.1, 1e-7, 0, "adamw m");
    CHECK_CLOSE(v, 0.001, 3e-8, 0, "adamw v");   /* 1 - 0.999f is 0.00099998713 in float */
    /* A later step (t = 3) with non-zero moments, worked by hand:
     *   g = -0.3, m = 0.2 -> 0.9*0.2 + 0.1*(-0.3) = 0.15;  v = 0.05 -> 0.999*0.05 + 0.001*0.09 = 0.05004
     *   bc1 = 1 - 0.9^3 = 0.271, bc2 = 1 - 0.999^3 = 0.002997001
     *   mhat = 0.553505535..., vhat = 16.69669112..., sqrt = 4.086158480...
     *   p = 2 - 0.01 (0.553505535/(4.086158480 + 1e-3) + 0.01*2) = 2 - 0.01 (0.135425513... + 0.02) = 1.998445745 */
    float ps[3] = {2, 2, -1}, gs[3] = {-0.3f, -0.3f, 0}, ms[3] = {0.2f, 0.2f, 0}, vs[3] = {0.05f, 0.05f, 0};
    kern_adamw(g_ref, ps, gs, ms, vs, 3, 0.01f, 0.9f, 0.999f, 1e-3f, 0.01f, 0.271f, 0.002997001f, 1.0f);
    CHECK_CLOSE(ms[0], 0.15, 1e-7, 0, "adamw m t=3");
    CHECK_CLOSE(vs[0], 0.05004, 1e-8, 0, "adamw v t=3");
    CHECK_CLOSE(ps[0], 1.998445745, 2e-6, 0, "adamw p t=3");
    CHECK(ps[1] == ps[0], "adamw elements independent");
    CHECK_CLOSE(ps[2], -1 + 0.01 * 0.01, 1e-7, 0, "adamw zero grad: weight decay only");
}

/* ---------------------------------------------------------------- races */
/* Many rows with the same token and many rows summed into one dw/dbias: a racy parallel reduction loses
 * updates. Integer-valued data makes the exact answer representable, so the comparison is exact. */
static void test_reductions_race_free(void) {
    size_t B = 8, T = 512, C = 67, V = 5, BT = B * T;
    int32_t *tok = gk_malloc(BT * sizeof(int32_t));
    float *dout = kern_alloc(g_ref, BT * C * 4), *dwte = kern_alloc(g_ref, V * C * 4), *dwpe = kern_alloc(g_ref, T * C * 4);
    for (size_t i = 0; i < BT; i++) tok[i] = (int32_t)(i % 3 == 0 ? 2 : i % V);
    for (size_t i = 0; i < BT * C; i++) dout[i] = (float)((i % 7) + 1);
    kern_embed_bwd(g_ref, dwte, dwpe, dout, tok, B, T, C, 0);
    double *want = rnd64(V * C, 0); memset(want, 0, V * C * 8);
    for (size_t i = 0; i < BT; i++) for (size_t c = 0; c < C; c++) want[tok[i] * C + c] += dout[i * C + c];
    CHECK_F32_F64("embed scatter with repeats", dwte, want, V * C, 0, 0);
    /* matmul dbias/dw over 4096 rows, layernorm dw/db */
    size_t OC = 3;
    float *inp = kern_alloc(g_ref, BT * C * 4), *g = kern_alloc(g_ref, BT * OC * 4), *w = kern_alloc(g_ref, C * OC * 4);
    float *dw = kern_alloc(g_ref, C * OC * 4), *db = kern_alloc(g_ref, OC * 4);
    for (size_t i = 0; i < BT * C; i++) inp[i] = (float)(i % 3);
    for (size_t i = 0; i < BT * OC; i++) g[i] = 1;
    kern_matmul_bwd(g_ref, NULL, dw, db, g, inp, w, BT, C, OC, KERN_W_OUT_IN);
    for (size_t j = 0; j < OC; j++) CHECK(db[j] == (float)BT, "dbias[%zu] = %g want %zu", j, db[j], BT);
    double s0 = 0;
    for (size_t n = 0; n < BT; n++) s0 += inp[n * C + 0];
    CHECK(dw[0] == (float)s0 && dw[C] == (float)s0, "dw col 0: %g want %g", dw[0], s0);
    free(tok); kern_free(g_ref, dout); kern_free(g_ref, dwte); kern_free(g_ref, dwpe); free(want);
    kern_free(g_ref, inp); kern_free(g_ref, g); kern_free(g_ref, w); kern_free(g_ref, dw); kern_free(g_ref, db);
}

int main(void) {
    gk_rng_seed(&g_rng, 1234);
    kern_backend_opts o = {KERN_KIND_REF, KERN_GEMM_BUILTIN, KERN_PREC_FP32};
    g_ref = kern_backend_create(&o, NULL);
    TL_RUN(test_embed_grad);
    TL_RUN(test_layernorm_grad);
    TL_RUN(test_matmul_grad);
    TL_RUN(test_attention_grad);
    TL_RUN(test_gelu_grad);
    TL_RUN(test_xent_grad);
    TL_RUN(test_fd_checker_catches_bugs);
    TL_RUN(test_f32_matches_f64);
    TL_RUN(test_elementwise);
    TL_RUN(test_adamw_step);
    TL_RUN(test_reductions_race_free);
    kern_backend_free(g_ref);
    return tl_summary();
}
