/* kbench.c: kernel microbenchmarks, fast path vs fp32 reference, on the shapes that matter:
 *   d6   (6 layers, width 384, 6 heads, vocab 50257) at B 8, T 256  -> N = 2048 rows
 *   d12  (GPT-2 124M, width 768, 12 heads)         at B 4, T 64   -> N = 256 rows
 * and attention at T 256 (B 8) and T 1024 (B 2), 6 heads of 64.
 * Each case times forward + backward (all gradients) and prints one line per implementation:
 *   op  shape  impl  median_ms  min_ms  GFLOP/s(at the median)
 * impl: fast (fp32), fast-bf16 (matmuls with bf16 inputs, when available), ref (skipped above 20 GFLOP).
 * Usage: kbench [--reps N] [--ref-reps N] [--no-ref] [--filter SUBSTR] [--gemm auto|openblas|onednn|builtin]
 * Built and run by bench/kern/run.sh (OMP_NUM_THREADS=2 there). */
#include "kern/kern.h"
#include "core/core.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int g_reps = 5, g_ref_reps = 1, g_no_ref = 0;
static const char *g_filter = NULL;
static gk_rng g_rng;
/* g_impls: ref, fast (the cpu backend on --gemm's library, default auto), fast-bf16 (NULL if unavailable);
 * g_be: the one being timed; g_mem: allocates the buffers (host memory, shared by the CPU backends) */
static kern_backend *g_impls[3], *g_be, *g_mem;
static kern_gemm g_gemm = KERN_GEMM_AUTO;

static float *rnd(size_t n, float s) {
    float *x = kern_alloc(g_mem, n * sizeof(float));
    for (size_t i = 0; i < n; i++) x[i] = s * gk_rng_normal(&g_rng);
    return x;
}
static int cmp_d(const void *a, const void *b) { double x = *(const double *)a, y = *(const double *)b; return (x > y) - (x < y); }

typedef void (*runfn)(void *ctx);
static double time_median(runfn f, void *ctx, int reps, double *tmin) {
    double t[64];
    if (reps > 64) reps = 64;
    if (reps < 1) reps = 1;
    f(ctx);   /* warm-up */
    for (int r = 0; r < reps; r++) { double t0 = gk_now(); f(ctx); t[r] = gk_now() - t0; }
    qsort(t, (size_t)reps, sizeof(double), cmp_d);
    *tmin = t[0];
    return t[reps / 2];
}
/* impl 0 ref, 1 fast, 2 fast with bf16 matmuls (matmul cases only) */
static void report_impls(const char *op, const char *shape, runfn f, void *ctx, double flops, int with_bf16) {
    if (g_filter && !strstr(op, g_filter) && !strstr(shape, g_filter)) return;
    for (int impl = 1; impl <= 3; impl++) {
        int im = impl % 3;
        if (im == 0 && (g_no_ref || flops > 20e9)) continue;
        if (im == 2 && (!with_bf16 || !g_impls[2])) continue;
        g_be = g_impls[im];
        double tmin, t = time_median(f, ctx, im ? g_reps : g_ref_reps, &tmin);
        printf("%-10s %-26s %-9s %10.3f ms %10.3f ms %8.1f GFLOP/s\n", op, shape,
               im == 0 ? "ref" : im == 1 ? "fast" : "fast-bf16", t * 1e3, tmin * 1e3, flops > 0 ? flops / t * 1e-9 : 0);
        fflush(stdout);
    }
    g_be = g_impls[1];
}
static void report(const char *op, const char *shape, runfn f, void *ctx, double flops) {
    report_impls(op, shape, f, ctx, flops, 0);
}

/* ---------------------------------------------------------------- matmul fwd + bwd */
typedef struct { size_t N, C, OC; int layout; float *inp, *w, *b, *out, *dout, *dinp, *dw, *db; } mm_ctx;
static void mm_run(void *p) {
    mm_ctx *c = p;
    kern_matmul_fwd(g_be, c->out, c->inp, c->w, c->b, c->N, c->C, c->OC, c->layout);
    kern_matmul_bwd(g_be, c->dinp, c->dw, c->db, c->dout, c->inp, c->w, c->N, c->C, c->OC, c->layout);
}
static void bench_matmul(const char *name, size_t N, size_t C, size_t OC, int layout, int bias) {
    mm_ctx c = { N, C, OC, layout, rnd(N * C, 1), rnd(C * OC, 0.02f), bias ? rnd(OC, 0.1f) : NULL,
                 kern_alloc(g_mem, N * OC * 4), rnd(N * OC, 1), kern_alloc(g_mem, N * C * 4), kern_alloc(g_mem, C * OC * 4),
                 bias ? kern_alloc(g_mem, OC * 4) : NULL };
    char shape[64];
    snprintf(shape, sizeof shape, "%zux%zux%zu%s", N, C, OC, layout == KERN_W_OUT_IN ? "(T)" : "");
    report_impls(name, shape, mm_run, &c, 6.0 * N * C * OC, 1);
    kern_free(g_mem, c.inp); kern_free(g_mem, c.w); kern_free(g_mem, c.b); kern_free(g_mem, c.out); kern_free(g_mem, c.dout);
    kern_free(g_mem, c.dinp); kern_free(g_mem, c.dw); kern_free(g_mem, c.db);
}

/* ---------------------------------------------------------------- attention fwd + bwd */
typedef struct { size_t B, T, C, NH; float *qkv, *out, *saved, *dout, *dqkv; } att_ctx;
static void att_run(void *p) {
    att_ctx *c = p;
    kern_attention_fwd(g_be, c->out, c->saved, c->qkv, c->B, c->T, c->C, c->NH);
    kern_attention_bwd(g_be, c->dqkv, c->dout, c->qkv, c->out, c->saved, c->B, c->T, c->C, c->NH);
}
static void bench_attention(size_t B, size_t T, size_t C, size_t NH) {
    size_t sref = B * NH * T * T;   /* the larger of the two implementations' saved sizes */
    att_ctx c = { B, T, C, NH, rnd(B * T * 3 * C, 1), kern_alloc(g_mem, B * T * C * 4), kern_alloc(g_mem, sref * 4),
                  rnd(B * T * C, 1), kern_alloc(g_mem, B * T * 3 * C * 4) };
    char shape[64];
    snprintf(shape, sizeof shape, "B%zu T%zu C%zu NH%zu", B, T, C, NH);
    /* causal: QK^T and PV forward (2 x 2 x T^2/2 x C per batch), backward 2.5x that (5 GEMM-likes vs 2) */
    double fl = 2.0 * 2.0 * B * (double)T * T / 2 * C * 3.5;
    report("attention", shape, att_run, &c, fl);
    kern_free(g_mem, c.qkv); kern_free(g_mem, c.out); kern_free(g_mem, c.saved); kern_free(g_mem, c.dout); kern_free(g_mem, c.dqkv);
}

/* ---------------------------------------------------------------- layernorm, gelu, xent */
typedef struct { size_t N, C; float *x, *w, *b, *o, *m, *r, *g, *dx, *dw, *db; } ln_ctx;
static void ln_run(void *p) {
    ln_ctx *c = p;
    kern_layernorm_fwd(g_be, c->o, c->m, c->r, c->x, c->w, c->b, c->N, c->C, 1e-5f);
    kern_layernorm_bwd(g_be, c->dx, c->dw, c->db, c->g, c->x, c->w, c->m, c->r, c->N, c->C);
}
typedef struct { size_t n; float *x, *o, *g, *dx; } gelu_ctx;
static void gelu_run(void *p) {
    gelu_ctx *c = p;
    kern_gelu_fwd(g_be, c->o, c->x, c->n);
    kern_gelu_bwd(g_be, c->dx, c->x, c->g, c->n);
}
typedef struct { size_t N, V; float *l, *loss, *dl, *dls; int32_t *tg; } xent_ctx;
static void xent_run(void *p) {
    xent_ctx *c = p;
    kern_xent_fwd_bwd(g_be, c->loss, c->dl, c->l, c->tg, c->dls, c->N, c->V);
}
static void bench_small_ops(size_t N, size_t C, size_t V, size_t xN) {
    char shape[64];
    ln_ctx l = { N, C, rnd(N * C, 1), rnd(C, 1), rnd(C, 1), kern_alloc(g_mem, N * C * 4), kern_alloc(g_mem, N * 4), kern_alloc(g_mem, N * 4),
                 rnd(N * C, 1), kern_alloc(g_mem, N * C * 4), kern_alloc(g_mem, C * 4), kern_alloc(g_mem, C * 4) };
    snprintf(shape, sizeof shape, "%zux%zu", N, C);
    report("layernorm", shape, ln_run, &l, 0);
    kern_free(g_mem, l.x); kern_free(g_mem, l.w); kern_free(g_mem, l.b); kern_free(g_mem, l.o); kern_free(g_mem, l.m); kern_free(g_mem, l.r);
    kern_free(g_mem, l.g); kern_free(g_mem, l.dx); kern_free(g_mem, l.dw); kern_free(g_mem, l.db);
    gelu_ctx g = { N * 4 * C, rnd(N * 4 * C, 1), kern_alloc(g_mem, N * 4 * C * 4), rnd(N * 4 * C, 1), kern_alloc(g_mem, N * 4 * C * 4) };
    snprintf(shape, sizeof shape, "%zux%zu", N, 4 * C);
    report("gelu", shape, gelu_run, &g, 0);
    kern_free(g_mem, g.x); kern_free(g_mem, g.o); kern_free(g_mem, g.g); kern_free(g_mem, g.dx);
    xent_ctx x = { xN, V, rnd(xN * V, 2), kern_alloc(g_mem, xN * 4), kern_alloc(g_mem, xN * V * 4), rnd(xN, 1),
                   gk_malloc(xN * sizeof(int32_t)) };
    for (size_t i = 0; i < xN; i++) x.tg[i] = (int32_t)gk_rng_below(&g_rng, (uint32_t)V);
    snprintf(shape, sizeof shape, "%zux%zu", xN, V);
    report("xent", shape, xent_run, &x, 0);
    kern_free(g_mem, x.l); kern_free(g_mem, x.loss); kern_free(g_mem, x.dl); kern_free(g_mem, x.dls); free(x.tg);
}

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--reps") && i + 1 < argc) g_reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--ref-reps") && i + 1 < argc) g_ref_reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--no-ref")) g_no_ref = 1;
        else if (!strcmp(argv[i], "--filter") && i + 1 < argc) g_filter = argv[++i];
        else if (!strcmp(argv[i], "--gemm") && i + 1 < argc && kern_gemm_parse(argv[i + 1], &g_gemm) == 0) i++;
        else {
            fprintf(stderr, "usage: kbench [--reps N] [--ref-reps N] [--no-ref] [--filter S] "
                            "[--gemm auto|openblas|onednn|builtin]\n");
            return 2;
        }
    }
    gk_rng_seed(&g_rng, 1);
    kern_backend_opts o = {KERN_KIND_REF, KERN_GEMM_BUILTIN, KERN_PREC_FP32};
    gk_err err;
    g_impls[0] = kern_backend_create(&o, NULL);
    o.kind = KERN_KIND_CPU; o.gemm = g_gemm;
    if (!(g_impls[1] = kern_backend_create(&o, &err))) { fprintf(stderr, "kbench: %s\n", err.msg); return 2; }
    o.gemm = KERN_GEMM_ONEDNN; o.prec = KERN_PREC_BF16;
    g_impls[2] = kern_bf16_available() ? kern_backend_create(&o, NULL) : NULL;
    g_mem = g_impls[0];
    g_be = g_impls[1];
    printf("# kbench: %s, %d threads; fwd+bwd per line (matmul: 6NC*OC flops); median and min of %d\n",
           kern_backend_name(g_be), gk_num_threads(), g_reps);
    /* d6 at B 8, T 256 */
    size_t N = 2048, C = 384;
    bench_matmul("mm.qkv", N, C, 3 * C, KERN_W_IN_OUT, 1);
    bench_matmul("mm.proj", N, C, C, KERN_W_IN_OUT, 1);
    bench_matmul("mm.fc", N, C, 4 * C, KERN_W_IN_OUT, 1);
    bench_matmul("mm.fcproj", N, 4 * C, C, KERN_W_IN_OUT, 1);
    bench_matmul("mm.lmhead", N, C, 50257, KERN_W_OUT_IN, 0);
    /* d12 (124M) at B 4, T 64 */
    N = 256; C = 768;
    bench_matmul("mm.qkv", N, C, 3 * C, KERN_W_IN_OUT, 1);
    bench_matmul("mm.proj", N, C, C, KERN_W_IN_OUT, 1);
    bench_matmul("mm.fc", N, C, 4 * C, KERN_W_IN_OUT, 1);
    bench_matmul("mm.fcproj", N, 4 * C, C, KERN_W_IN_OUT, 1);
    bench_matmul("mm.lmhead", N, C, 50257, KERN_W_OUT_IN, 0);
    bench_attention(8, 256, 384, 6);
    bench_attention(2, 1024, 384, 6);
    bench_attention(4, 64, 768, 12);
    bench_small_ops(2048, 384, 50257, 256);
    return 0;
}
