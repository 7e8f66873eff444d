/* test_cuda.c: the CUDA backend (src/kern/cuda) against the fp32 CPU reference ("ref").
 *
 * Every op of the table on random inputs of awkward sizes (host data uploaded to the GPU, results downloaded and
 * compared with the reference run on the same host data), with gradients pre-filled with noise (so "+=" is
 * checked) and NULL gradients skipped; matmuls on sliced (unaligned) pointers too; bf16 matmuls; then the model
 * level: a 10-step training run's losses against the CPU's (GPT-2 and LLaMA families), greedy decode ids equal to
 * the CPU's, and a checkpoint + optimizer state resumed across devices (GPU -> CPU and CPU -> GPU).
 *
 * Without a GPU (or in a build without nvcc) every GPU test reports SKIP with the reason ("no CUDA device: ..."),
 * never PASS. What runs everywhere: the op table is complete (build with CUDA), and creating a cuda backend
 * without a device fails with a message instead of aborting.
 *
 * Tolerances: "1e-5 relative" is normwise: max |gpu - ref| <= 1e-5 * max(1, max |ref|) (elementwise relative
 * error is meaningless for sums that cancel to ~0). Reductions over K terms (matmul) get sqrt(K) of slack,
 * as tests/test_kern_fast.c allows the CPU fast paths. sumsq: 1e-12 relative (double accumulation). bf16
 * matmuls: 2e-2 sqrt(K), and they must differ from fp32 (so bf16 is really in use). Training losses: 1e-5
 * relative at step 0, 1e-3 by step 10 (AdamW divides tiny gradients by their own size, so last-bit
 * differences grow step by step).
 */
#include "kern/kern.h"
#include "kern/cuda/cuda.h"   /* private: the op table, to check it is complete */
#include "model/model.h"
#include "train/train.h"
#include "optim/optim.h"
#include "infer/infer.h"
#include "core/core.h"
#include "testlib.h"
#include <math.h>
#include <stdlib.h>
#include <stddef.h>
#include <string.h>
#include <stdint.h>
#include <sys/wait.h>
#include <signal.h>
#include <unistd.h>

static gk_rng g_rng;
static kern_backend *g_ref;   /* the fp32 reference (host memory) */
static kern_backend *g_cu;    /* the CUDA backend, fp32; NULL without a device */
static char g_why[1100];      /* why g_cu is NULL */
static int g_dry;             /* GK_TEST_CUDA_DRYRUN: g_cu is a cpu backend (see main) */

#define NEED_GPU() do { if (!g_cu) TL_SKIP("%s", g_why); } while (0)

/* ---------------------------------------------------------------- helpers */

static float *hrnd(size_t n, float scale) {
    float *x = gk_malloc((n ? n : 1) * sizeof(float));
    for (size_t i = 0; i < n; i++) x[i] = scale * gk_rng_normal(&g_rng);
    return x;
}
static float *hdup(const float *x, size_t n) {
    float *y = gk_malloc((n ? n : 1) * sizeof(float));
    memcpy(y, x, n * sizeof(float));
    return y;
}
/* device copy of host floats / ints on the cuda backend */
static float *dev(const float *h, size_t n) {
    float *d = kern_alloc(g_cu, n * sizeof(float));
    kern_upload(g_cu, d, h, n * sizeof(float));
    return d;
}
static int32_t *devi(const int32_t *h, size_t n) {
    int32_t *d = kern_alloc(g_cu, n * sizeof(int32_t));
    kern_upload(g_cu, d, h, n * sizeof(int32_t));
    return d;
}
/* host copy of device floats (malloc'd) */
static float *host(const float *d, size_t n) {
    float *h = gk_malloc((n ? n : 1) * sizeof(float));
    kern_download(g_cu, h, d, n * sizeof(float));
    return h;
}
static double amax(const float *x, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) if (fabs(x[i]) > m) m = fabs(x[i]);
    return m;
}
/* normwise relative comparison of a device array with a host reference */
static void check_dev(const char *file, int line, const char *what, const float *d, const float *want, size_t n,
                      double tol) {
    float *got = host(d, n);
    double sc = amax(want, n);
    tl_check_arrays(file, line, what, got, want, n, tol * (sc > 1 ? sc : 1), 0);
    free(got);
}
#define CHECK_DEV(what, d, want, n, tol) check_dev(__FILE__, __LINE__, what, d, want, n, tol)

/* ---------------------------------------------------------------- runs without a GPU */

/* Every slot of the cuda op table is filled (a missing op would be a NULL call on the GPU). A table lookup:
 * needs the CUDA build, not a device. */
static void test_table_complete(void) {
    const kern_ops *t = kern_cuda_ops();
    if (!kern_cuda_built()) {
        CHECK(t == NULL, "no CUDA in the build, yet a table");
        TL_SKIP("this build has no CUDA backend (nvcc not found at build time)");
    }
    CHECK(t != NULL, "CUDA build without a table");
    if (!t) return;
    /* every slot before the optional quantized-weight ops (kern.h) */
    const void *const *slots = (const void *const *)(const void *)t;
    size_t ns = offsetof(kern_ops, matmul_q_fwd) / sizeof(void *);
    for (size_t i = 0; i < ns; i++) CHECK(slots[i] != NULL, "kern_ops slot %zu of the cuda table is NULL", i);
    CHECK((t->matmul_q_fwd == NULL) == (t->embed_q_fwd == NULL) && (t->matmul_q_fwd == NULL) == (t->matmul_q_bwd == NULL),
          "the quantized-weight ops are half present");
}

/* The cuda kind without a device (or without CUDA in the build) refuses with a message naming the reason. */
static void test_refuses_without_device(void) {
    if (g_cu && !g_dry) TL_SKIP("a CUDA device is present: the refusal cannot be exercised here");
    gk_err err;
    CHECK(kern_cuda_usable(&err) != 0, "kern_cuda_usable says yes but the backend failed: %s", g_why);
    CHECK(strlen(err.msg) > 10 && !strchr(err.msg, '\n'), "reason is not one line: '%s'", err.msg);
    kern_backend_opts o;
    kern_backend_opts_default(&o);
    o.kind = KERN_KIND_CUDA;
    kern_backend *be = kern_backend_create(&o, &err);
    CHECK(be == NULL, "created a cuda backend without a device");
    CHECK(strstr(err.msg, "cuda") || strstr(err.msg, "CUDA"), "message: %s", err.msg);
    kern_kind k;
    CHECK(kern_kind_parse("cuda", &k) == 0 && k == KERN_KIND_CUDA, "kind parse");
    CHECK(!strcmp(kern_kind_name(KERN_KIND_CUDA), "cuda"), "kind name");
}

/* ---------------------------------------------------------------- memory */

static void test_memory(void) {
    NEED_GPU();
    size_t n = 1237;
    float *d = kern_alloc(g_cu, n * sizeof(float));
    float *z = gk_calloc(n, sizeof(float));
    CHECK_DEV("alloc is zero-filled", d, z, n, 0);
    float *h = hrnd(n, 1);
    kern_upload(g_cu, d, h, n * sizeof(float));
    float *back = host(d, n);
    CHECK(memcmp(back, h, n * sizeof(float)) == 0, "upload/download round trip");
    float *d2 = kern_alloc(g_cu, n * sizeof(float));
    kern_copy(g_cu, d2 + 3, d, (n - 3) * sizeof(float));
    float *b2 = host(d2, n);
    CHECK(memcmp(b2 + 3, h, (n - 3) * sizeof(float)) == 0 && b2[0] == 0, "copy at an offset");
    kern_zero(g_cu, d, n * sizeof(float));
    CHECK_DEV("zero", d, z, n, 0);
    kern_free(g_cu, d); kern_free(g_cu, d2); kern_free(g_cu, NULL);
    free(z); free(h); free(back); free(b2);
}

/* ---------------------------------------------------------------- embedding */

static void test_embed(void) {
    NEED_GPU();
    size_t B = 3, T = 7, C = 37, V = 11, maxT = 20, pos0 = 5;
    int32_t tok[21];
    for (size_t i = 0; i < B * T; i++) tok[i] = (int32_t)gk_rng_below(&g_rng, 4);   /* many repeats */
    float *wte = hrnd(V * C, 1), *wpe = hrnd(maxT * C, 1), *dout = hrnd(B * T * C, 1);
    float *dwte = hrnd(V * C, 1), *dwpe = hrnd(maxT * C, 1);
    int32_t *dtok = devi(tok, B * T);
    float *Dwte = dev(wte, V * C), *Dwpe = dev(wpe, maxT * C), *Ddout = dev(dout, B * T * C);
    float *Ddwte = dev(dwte, V * C), *Ddwpe = dev(dwpe, maxT * C), *Dout = kern_alloc(g_cu, B * T * C * 4);
    float *out = gk_malloc(B * T * C * 4);
    for (int with_pe = 0; with_pe < 2; with_pe++) {
        kern_embed_fwd(g_ref, out, tok, wte, with_pe ? wpe : NULL, B, T, C, pos0);
        kern_embed_fwd(g_cu, Dout, dtok, Dwte, with_pe ? Dwpe : NULL, B, T, C, pos0);
        CHECK_DEV(with_pe ? "embed_fwd" : "embed_fwd (no wpe)", Dout, out, B * T * C, 1e-6);
    }
    kern_embed_bwd(g_ref, dwte, dwpe, dout, tok, B, T, C, pos0);
    kern_embed_bwd(g_cu, Ddwte, Ddwpe, Ddout, dtok, B, T, C, pos0);
    CHECK_DEV("embed_bwd dwte", Ddwte, dwte, V * C, 1e-5);
    CHECK_DEV("embed_bwd dwpe", Ddwpe, dwpe, maxT * C, 1e-5);
    kern_embed_bwd(g_ref, dwte, NULL, dout, tok, B, T, C, 0);
    kern_embed_bwd(g_cu, Ddwte, NULL, Ddout, dtok, B, T, C, 0);
    CHECK_DEV("embed_bwd dwte (dwpe NULL)", Ddwte, dwte, V * C, 1e-5);
    kern_free(g_cu, dtok); kern_free(g_cu, Dwte); kern_free(g_cu, Dwpe); kern_free(g_cu, Ddout);
    kern_free(g_cu, Ddwte); kern_free(g_cu, Ddwpe); kern_free(g_cu, Dout);
    free(wte); free(wpe); free(dout); free(dwte); free(dwpe); free(out);
}

/* ---------------------------------------------------------------- norms */

static void test_layernorm(void) {
    NEED_GPU();
    size_t sizes[][2] = { {1, 7}, {37, 77}, {300, 768}, {5, 1029} };
    for (size_t k = 0; k < 4; k++) {
        size_t N = sizes[k][0], C = sizes[k][1];
        float *x = hrnd(N * C, 2), *w = hrnd(C, 1), *b = hrnd(C, 1), *dout = hrnd(N * C, 1);
        float *dx = hrnd(N * C, 1), *dw = hrnd(C, 1), *db = hrnd(C, 1);
        float *out = gk_malloc(N * C * 4), *mean = gk_malloc(N * 4), *rstd = gk_malloc(N * 4);
        float *Dx = dev(x, N * C), *Dw = dev(w, C), *Db = dev(b, C), *Ddout = dev(dout, N * C);
        float *Ddx = dev(dx, N * C), *Ddw = dev(dw, C), *Ddb = dev(db, C);
        float *Dout = kern_alloc(g_cu, N * C * 4), *Dmean = kern_alloc(g_cu, N * 4), *Drstd = kern_alloc(g_cu, N * 4);
        kern_layernorm_fwd(g_ref, out, mean, rstd, x, w, b, N, C, 1e-5f);
        kern_layernorm_fwd(g_cu, Dout, Dmean, Drstd, Dx, Dw, Db, N, C, 1e-5f);
        CHECK_DEV("layernorm out", Dout, out, N * C, 1e-5);
        CHECK_DEV("layernorm mean", Dmean, mean, N, 1e-5);
        CHECK_DEV("layernorm rstd", Drstd, rstd, N, 1e-5);
        kern_layernorm_bwd(g_ref, dx, dw, db, dout, x, w, mean, rstd, N, C);
        kern_layernorm_bwd(g_cu, Ddx, Ddw, Ddb, Ddout, Dx, Dw, Dmean, Drstd, N, C);
        CHECK_DEV("layernorm dx", Ddx, dx, N * C, 1e-5);
        CHECK_DEV("layernorm dw", Ddw, dw, C, 1e-5 * sqrt((double)N));
        CHECK_DEV("layernorm db", Ddb, db, C, 1e-5 * sqrt((double)N));
        kern_layernorm_bwd(g_ref, NULL, dw, NULL, dout, x, w, mean, rstd, N, C);
        kern_layernorm_bwd(g_cu, NULL, Ddw, NULL, Ddout, Dx, Dw, Dmean, Drstd, N, C);
        CHECK_DEV("layernorm dw (dx, db NULL)", Ddw, dw, C, 1e-5 * sqrt((double)N));
        CHECK_DEV("layernorm db untouched", Ddb, db, C, 1e-5 * sqrt((double)N));
        float *ptrs[] = { Dx, Dw, Db, Ddout, Ddx, Ddw, Ddb, Dout, Dmean, Drstd };
        for (size_t i = 0; i < 10; i++) kern_free(g_cu, ptrs[i]);
        free(x); free(w); free(b); free(dout); free(dx); free(dw); free(db); free(out); free(mean); free(rstd);
    }
}

static void test_rmsnorm(void) {
    NEED_GPU();
    size_t N = 41, C = 93;
    float *x = hrnd(N * C, 2), *w = hrnd(C, 1), *dout = hrnd(N * C, 1), *dx = hrnd(N * C, 1), *dw = hrnd(C, 1);
    float *out = gk_malloc(N * C * 4), *rstd = gk_malloc(N * 4);
    float *Dx = dev(x, N * C), *Dw = dev(w, C), *Ddout = dev(dout, N * C), *Ddx = dev(dx, N * C), *Ddw = dev(dw, C);
    float *Dout = kern_alloc(g_cu, N * C * 4), *Drstd = kern_alloc(g_cu, N * 4);
    kern_rmsnorm_fwd(g_ref, out, rstd, x, w, N, C, 1e-6f);
    kern_rmsnorm_fwd(g_cu, Dout, Drstd, Dx, Dw, N, C, 1e-6f);
    CHECK_DEV("rmsnorm out", Dout, out, N * C, 1e-5);
    CHECK_DEV("rmsnorm rstd", Drstd, rstd, N, 1e-5);
    kern_rmsnorm_bwd(g_ref, dx, dw, dout, x, w, rstd, N, C);
    kern_rmsnorm_bwd(g_cu, Ddx, Ddw, Ddout, Dx, Dw, Drstd, N, C);
    CHECK_DEV("rmsnorm dx", Ddx, dx, N * C, 1e-5);
    CHECK_DEV("rmsnorm dw", Ddw, dw, C, 1e-5 * sqrt((double)N));
    kern_rmsnorm_bwd(g_ref, NULL, dw, dout, x, w, rstd, N, C);
    kern_rmsnorm_bwd(g_cu, NULL, Ddw, Ddout, Dx, Dw, Drstd, N, C);
    CHECK_DEV("rmsnorm dw (dx NULL)", Ddw, dw, C, 1e-5 * sqrt((double)N));
    float *ptrs[] = { Dx, Dw, Ddout, Ddx, Ddw, Dout, Drstd };
    for (size_t i = 0; i < 7; i++) kern_free(g_cu, ptrs[i]);
    free(x); free(w); free(dout); free(dx); free(dw); free(out); free(rstd);
}

/* ---------------------------------------------------------------- matmul */

/* One forward/backward at N x C -> OC in a layout, on device pointers offset by `off` floats (unaligned). */
static void matmul_case(size_t N, size_t C, size_t OC, int layout, int with_bias, size_t off, int skinny) {
    char what[128];
    float *x = hrnd(N * C, 1), *w = hrnd(C * OC, 1), *b = hrnd(OC, 1), *dout = hrnd(N * OC, 1);
    float *dx = hrnd(N * C, 1), *dw = hrnd(C * OC, 1), *db = hrnd(OC, 1), *out = gk_malloc(N * OC * 4);
    float *Xb = kern_alloc(g_cu, (N * C + off) * 4), *Wb = kern_alloc(g_cu, (C * OC + off) * 4);
    float *Ob = kern_alloc(g_cu, (N * OC + off) * 4), *DOb = kern_alloc(g_cu, (N * OC + off) * 4);
    float *DXb = kern_alloc(g_cu, (N * C + off) * 4), *DWb = kern_alloc(g_cu, (C * OC + off) * 4);
    float *Bb = kern_alloc(g_cu, (OC + off) * 4), *DBb = kern_alloc(g_cu, (OC + off) * 4);
    float *X = Xb + off, *W = Wb + off, *O = Ob + off, *DO = DOb + off, *DX = DXb + off, *DW = DWb + off;
    float *Bi = Bb + off, *DB = DBb + off;
    kern_upload(g_cu, X, x, N * C * 4); kern_upload(g_cu, W, w, C * OC * 4); kern_upload(g_cu, Bi, b, OC * 4);
    kern_upload(g_cu, DO, dout, N * OC * 4); kern_upload(g_cu, DX, dx, N * C * 4);
    kern_upload(g_cu, DW, dw, C * OC * 4); kern_upload(g_cu, DB, db, OC * 4);
    double tol = 1e-5 * sqrt((double)C);
    snprintf(what, sizeof what, "matmul%s_fwd N=%zu C=%zu OC=%zu layout=%d bias=%d off=%zu", skinny ? "_skinny" : "",
             N, C, OC, layout, with_bias, off);
    kern_matmul_fwd(g_ref, out, x, w, with_bias ? b : NULL, N, C, OC, layout);
    if (skinny) kern_matmul_skinny_fwd(g_cu, O, X, W, with_bias ? Bi : NULL, N, C, OC, layout);
    else kern_matmul_fwd(g_cu, O, X, W, with_bias ? Bi : NULL, N, C, OC, layout);
    CHECK_DEV(what, O, out, N * OC, tol);
    if (!skinny) {
        kern_matmul_bwd(g_ref, dx, dw, with_bias ? db : NULL, dout, x, w, N, C, OC, layout);
        kern_matmul_bwd(g_cu, DX, DW, with_bias ? DB : NULL, DO, X, W, N, C, OC, layout);
        snprintf(what, sizeof what, "matmul_bwd dinp N=%zu C=%zu OC=%zu layout=%d off=%zu", N, C, OC, layout, off);
        CHECK_DEV(what, DX, dx, N * C, 1e-5 * sqrt((double)OC));
        snprintf(what, sizeof what, "matmul_bwd dw N=%zu C=%zu OC=%zu layout=%d off=%zu", N, C, OC, layout, off);
        CHECK_DEV(what, DW, dw, C * OC, 1e-5 * sqrt((double)N));
        snprintf(what, sizeof what, "matmul_bwd dbias N=%zu OC=%zu", N, OC);
        CHECK_DEV(what, DB, db, OC, 1e-5 * sqrt((double)N));
        /* NULL grads skip: only dw */
        kern_matmul_bwd(g_ref, NULL, dw, NULL, dout, x, w, N, C, OC, layout);
        kern_matmul_bwd(g_cu, NULL, DW, NULL, DO, X, W, N, C, OC, layout);
        CHECK_DEV("matmul_bwd dw only", DW, dw, C * OC, 1e-5 * sqrt((double)N));
        CHECK_DEV("matmul_bwd dinp untouched", DX, dx, N * C, 1e-5 * sqrt((double)OC));
    }
    float *ptrs[] = { Xb, Wb, Ob, DOb, DXb, DWb, Bb, DBb };
    for (size_t i = 0; i < 8; i++) kern_free(g_cu, ptrs[i]);
    free(x); free(w); free(b); free(dout); free(dx); free(dw); free(db); free(out);
}

static void test_matmul(void) {
    NEED_GPU();
    size_t sizes[][3] = { {1, 1, 1}, {7, 13, 11}, {33, 70, 45}, {257, 768, 129}, {64, 96, 1003} };
    for (size_t k = 0; k < 5; k++)
        for (int layout = 0; layout < 2; layout++) {
            matmul_case(sizes[k][0], sizes[k][1], sizes[k][2], layout, 1, 0, 0);
            matmul_case(sizes[k][0], sizes[k][1], sizes[k][2], layout, 0, 1, 0);   /* 4-byte aligned pointers */
            matmul_case(sizes[k][0], sizes[k][1], sizes[k][2], layout, 1, 3, 0);
        }
}

static void test_matmul_skinny(void) {
    NEED_GPU();
    for (size_t N = 1; N <= KERN_SKINNY_MAX_N; N += 5)
        for (int layout = 0; layout < 2; layout++) matmul_case(N, 96, 203, layout, (int)(N & 1), N % 3, 1);
}

/* ---------------------------------------------------------------- attention */

static void attention_case(size_t B, size_t T, size_t C, size_t NH) {
    char what[96];
    float *qkv = hrnd(B * T * 3 * C, 1), *dout = hrnd(B * T * C, 1), *dqkv = hrnd(B * T * 3 * C, 1);
    float *out = gk_malloc(B * T * C * 4);
    float *saved = gk_malloc(kern_attention_saved_floats(g_ref, B, T, C, NH) * 4);
    float *Dqkv = dev(qkv, B * T * 3 * C), *Ddout = dev(dout, B * T * C), *Ddqkv = dev(dqkv, B * T * 3 * C);
    float *Dout = kern_alloc(g_cu, B * T * C * 4);
    float *Dsaved = kern_alloc(g_cu, kern_attention_saved_floats(g_cu, B, T, C, NH) * 4);
    kern_attention_fwd(g_ref, out, saved, qkv, B, T, C, NH);
    kern_attention_fwd(g_cu, Dout, Dsaved, Dqkv, B, T, C, NH);
    snprintf(what, sizeof what, "attention_fwd B=%zu T=%zu C=%zu NH=%zu", B, T, C, NH);
    CHECK_DEV(what, Dout, out, B * T * C, 1e-5);
    kern_attention_bwd(g_ref, dqkv, dout, qkv, out, saved, B, T, C, NH);
    kern_attention_bwd(g_cu, Ddqkv, Ddout, Dqkv, Dout, Dsaved, B, T, C, NH);
    snprintf(what, sizeof what, "attention_bwd B=%zu T=%zu C=%zu NH=%zu", B, T, C, NH);
    CHECK_DEV(what, Ddqkv, dqkv, B * T * 3 * C, 1e-5 * sqrt((double)T));
    kern_attention_bwd(g_cu, NULL, Ddout, Dqkv, Dout, Dsaved, B, T, C, NH);   /* NULL: nothing, no fault */
    kern_free(g_cu, Dqkv); kern_free(g_cu, Ddout); kern_free(g_cu, Ddqkv); kern_free(g_cu, Dout); kern_free(g_cu, Dsaved);
    free(qkv); free(dout); free(dqkv); free(out); free(saved);
}

static void test_attention(void) {
    NEED_GPU();
    attention_case(2, 1, 12, 3);
    attention_case(2, 5, 12, 3);
    attention_case(1, 64, 64, 4);
    attention_case(2, 129, 48, 3);
    attention_case(1, 131, 128, 2);    /* hs 64 */
    attention_case(1, 33, 200, 1);     /* hs 200: 7 channels per lane, ragged */
}

static void test_attn_cache(void) {
    NEED_GPU();
    for (size_t NKV = 3; NKV >= 1; NKV -= 2) {   /* 3 heads each, then multi-query */
    size_t S = 4, NH = 3, hs = 10, C = NH * hs, W = (NH + 2 * NKV) * hs, maxT = 23, B = 2;
    int32_t slot[2] = { 3, 1 }, pos0[2] = { 0, 0 };
    float *kc = hrnd(S * NKV * maxT * hs, 1), *vc = hdup(kc, S * NKV * maxT * hs);
    float *Dkc = dev(kc, S * NKV * maxT * hs), *Dvc = dev(vc, S * NKV * maxT * hs);
    int32_t *Dslot = devi(slot, B);
    /* prefill 9 rows, then three decode steps of one row */
    size_t steps[] = { 9, 1, 1, 1 };
    for (size_t s = 0; s < 4; s++) {
        size_t n = steps[s];
        float *qkv = hrnd(B * n * W, 1), *out = gk_malloc(B * n * C * 4);
        float *Dqkv = dev(qkv, B * n * W), *Dout = kern_alloc(g_cu, B * n * C * 4);
        int32_t *Dpos = devi(pos0, B);
        kern_attn_cache_fwd(g_ref, out, kc, vc, qkv, slot, pos0, B, n, C, NH, NKV, maxT);
        kern_attn_cache_fwd(g_cu, Dout, Dkc, Dvc, Dqkv, Dslot, Dpos, B, n, C, NH, NKV, maxT);
        CHECK_DEV("attn_cache out", Dout, out, B * n * C, 1e-5);
        CHECK_DEV("attn_cache k cache", Dkc, kc, S * NKV * maxT * hs, 0);
        CHECK_DEV("attn_cache v cache", Dvc, vc, S * NKV * maxT * hs, 0);
        for (size_t b = 0; b < B; b++) pos0[b] += (int32_t)n;
        kern_free(g_cu, Dqkv); kern_free(g_cu, Dout); kern_free(g_cu, Dpos);
        free(qkv); free(out);
    }
    kern_free(g_cu, Dkc); kern_free(g_cu, Dvc); kern_free(g_cu, Dslot);
    free(kc); free(vc);
    }
}

/* ---------------------------------------------------------------- elementwise and LLaMA ops */

static void test_elementwise(void) {
    NEED_GPU();
    size_t n = 100003;
    float *a = hrnd(n, 2), *b = hrnd(n, 1), *d = hrnd(n, 1), *o = gk_malloc(n * 4);
    float *Da = dev(a, n), *Db = dev(b, n), *Dd = dev(d, n), *Do = kern_alloc(g_cu, n * 4);
    kern_gelu_fwd(g_ref, o, a, n); kern_gelu_fwd(g_cu, Do, Da, n); CHECK_DEV("gelu_fwd", Do, o, n, 1e-5);
    kern_gelu_bwd(g_ref, d, a, b, n); kern_gelu_bwd(g_cu, Dd, Da, Db, n); CHECK_DEV("gelu_bwd", Dd, d, n, 1e-5);
    kern_swiglu_fwd(g_ref, o, a, b, n); kern_swiglu_fwd(g_cu, Do, Da, Db, n); CHECK_DEV("swiglu_fwd", Do, o, n, 1e-5);
    float *du = hrnd(n, 1), *Ddu = dev(du, n);
    kern_swiglu_bwd(g_ref, d, du, o, a, b, n); kern_swiglu_bwd(g_cu, Dd, Ddu, Do, Da, Db, n);
    CHECK_DEV("swiglu_bwd dgate", Dd, d, n, 1e-5);
    CHECK_DEV("swiglu_bwd dup", Ddu, du, n, 1e-5);
    kern_swiglu_bwd(g_ref, NULL, du, o, a, b, n); kern_swiglu_bwd(g_cu, NULL, Ddu, Do, Da, Db, n);
    CHECK_DEV("swiglu_bwd dup (dgate NULL)", Ddu, du, n, 1e-5);
    kern_add(g_ref, o, a, b, n); kern_add(g_cu, Do, Da, Db, n); CHECK_DEV("add", Do, o, n, 1e-6);
    kern_axpy(g_ref, o, -0.37f, a, n); kern_axpy(g_cu, Do, -0.37f, Da, n); CHECK_DEV("axpy", Do, o, n, 1e-6);
    kern_scale(g_ref, o, 1.7f, n); kern_scale(g_cu, Do, 1.7f, n); CHECK_DEV("scale", Do, o, n, 1e-6);
    double s1 = kern_sumsq(g_ref, a, n), s2 = kern_sumsq(g_cu, Da, n);
    CHECK_CLOSE(s2, s1, 0, 1e-12, "sumsq");
    CHECK(kern_sumsq(g_cu, Da, 0) == 0, "sumsq of nothing");
    kern_free(g_cu, Da); kern_free(g_cu, Db); kern_free(g_cu, Dd); kern_free(g_cu, Do); kern_free(g_cu, Ddu);
    free(a); free(b); free(d); free(o); free(du);
}

static void test_rope_kv_expand(void) {
    NEED_GPU();
    size_t R = 13, NH = 6, NKV = 2, hs = 8, W = (NH + 2 * NKV) * hs, C = NH * hs;
    int32_t pos[13];
    for (size_t r = 0; r < R; r++) pos[r] = (int32_t)(r * 37 % 500);
    float inv[4];
    for (size_t d = 0; d < hs / 2; d++) inv[d] = powf(10000.0f, -2.0f * (float)d / (float)hs);
    float *x = hrnd(R * W, 1), *Dx = dev(x, R * W), *Dinv = dev(inv, hs / 2);
    int32_t *Dpos = devi(pos, R);
    for (int inverse = 0; inverse < 2; inverse++) {
        kern_rope(g_ref, x, pos, inv, R, W, NH + NKV, hs, inverse);
        kern_rope(g_cu, Dx, Dpos, Dinv, R, W, NH + NKV, hs, inverse);
        CHECK_DEV(inverse ? "rope inverse" : "rope", Dx, x, R * W, 1e-5);
    }
    float *out = gk_malloc(R * 3 * C * 4), *Dout = kern_alloc(g_cu, R * 3 * C * 4);
    kern_kv_expand_fwd(g_ref, out, x, R, NH, NKV, hs);
    kern_kv_expand_fwd(g_cu, Dout, Dx, R, NH, NKV, hs);
    CHECK_DEV("kv_expand_fwd", Dout, out, R * 3 * C, 0);
    float *g = hrnd(R * 3 * C, 1), *Dg = dev(g, R * 3 * C), *dq = hrnd(R * W, 1), *Ddq = dev(dq, R * W);
    kern_kv_expand_bwd(g_ref, dq, g, R, NH, NKV, hs);
    kern_kv_expand_bwd(g_cu, Ddq, Dg, R, NH, NKV, hs);
    CHECK_DEV("kv_expand_bwd", Ddq, dq, R * W, 1e-6);
    kern_free(g_cu, Dx); kern_free(g_cu, Dinv); kern_free(g_cu, Dpos); kern_free(g_cu, Dout); kern_free(g_cu, Dg);
    kern_free(g_cu, Ddq);
    free(x); free(out); free(g); free(dq);
}

/* ---------------------------------------------------------------- cross-entropy and AdamW */

static void xent_case(size_t N, size_t V) {
    char what[96];
    float *l = hrnd(N * V, 3), *dloss = hrnd(N, 1), *loss = gk_malloc(N * 4), *dl = gk_malloc(N * V * 4);
    int32_t *tg = gk_malloc(N * sizeof(int32_t));
    for (size_t i = 0; i < N; i++) tg[i] = i % 5 == 3 ? -1 : (int32_t)gk_rng_below(&g_rng, (uint32_t)V);
    float *Dl = dev(l, N * V), *Ddloss = dev(dloss, N), *Dloss = kern_alloc(g_cu, N * 4), *Ddl = kern_alloc(g_cu, N * V * 4);
    int32_t *Dtg = devi(tg, N);
    kern_xent_fwd_bwd(g_ref, loss, dl, l, tg, dloss, N, V);
    kern_xent_fwd_bwd(g_cu, Dloss, Ddl, Dl, Dtg, Ddloss, N, V);
    snprintf(what, sizeof what, "xent loss N=%zu V=%zu", N, V);
    CHECK_DEV(what, Dloss, loss, N, 1e-5);
    snprintf(what, sizeof what, "xent dlogits N=%zu V=%zu", N, V);
    CHECK_DEV(what, Ddl, dl, N * V, 1e-5);
    /* forward only, then in place (dlogits aliasing logits) */
    kern_xent_fwd_bwd(g_cu, Dloss, NULL, Dl, Dtg, NULL, N, V);
    CHECK_DEV("xent loss (forward only)", Dloss, loss, N, 1e-5);
    kern_xent_fwd_bwd(g_cu, Dloss, Dl, Dl, Dtg, Ddloss, N, V);
    CHECK_DEV("xent loss (in place)", Dloss, loss, N, 1e-5);
    CHECK_DEV("xent dlogits (in place)", Dl, dl, N * V, 1e-5);
    kern_free(g_cu, Dl); kern_free(g_cu, Ddloss); kern_free(g_cu, Dloss); kern_free(g_cu, Ddl); kern_free(g_cu, Dtg);
    free(l); free(dloss); free(loss); free(dl); free(tg);
}

static void test_xent(void) {
    NEED_GPU();
    xent_case(1, 1);
    xent_case(13, 97);
    xent_case(37, 1003);
    xent_case(3, 50257);
}

static void test_adamw(void) {
    NEED_GPU();
    size_t n = 70001;
    float *p = hrnd(n, 1), *g = hrnd(n, 1), *m = gk_calloc(n, 4), *v = gk_calloc(n, 4);
    float *Dp = dev(p, n), *Dg = dev(g, n), *Dm = dev(m, n), *Dv = dev(v, n);
    for (int t = 1; t <= 3; t++) {
        float bc1 = 1 - powf(0.9f, (float)t), bc2 = 1 - powf(0.95f, (float)t);
        kern_adamw(g_ref, p, g, m, v, n, 1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, bc1, bc2, 0.7f);
        kern_adamw(g_cu, Dp, Dg, Dm, Dv, n, 1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, bc1, bc2, 0.7f);
    }
    CHECK_DEV("adamw p", Dp, p, n, 1e-6);
    CHECK_DEV("adamw m", Dm, m, n, 1e-6);
    CHECK_DEV("adamw v", Dv, v, n, 1e-6);
    kern_free(g_cu, Dp); kern_free(g_cu, Dg); kern_free(g_cu, Dm); kern_free(g_cu, Dv);
    free(p); free(g); free(m); free(v);
}

/* ---------------------------------------------------------------- bf16 matmuls */

static void test_matmul_bf16(void) {
    NEED_GPU();
    if (g_dry) TL_SKIP("dry run: no cuda bf16 backend to create");
    kern_backend_opts o;
    kern_backend_opts_default(&o);
    o.kind = KERN_KIND_CUDA;
    o.prec = KERN_PREC_BF16;
    gk_err err;
    kern_backend *bf = kern_backend_create(&o, &err);
    CHECK(bf != NULL, "bf16 cuda backend: %s", err.msg);
    if (!bf) return;
    CHECK(strstr(kern_backend_name(bf), "bf16") != NULL, "name %s", kern_backend_name(bf));
    size_t N = 67, C = 200, OC = 91;
    float *x = hrnd(N * C, 1), *w = hrnd(C * OC, 1), *out = gk_malloc(N * OC * 4);
    /* bf is a separate backend, but both cuda instances share the device and its memory */
    float *X = dev(x, N * C), *W = dev(w, C * OC), *O = kern_alloc(g_cu, N * OC * 4), *O2 = kern_alloc(g_cu, N * OC * 4);
    for (int layout = 0; layout < 2; layout++) {
        kern_matmul_fwd(g_ref, out, x, w, NULL, N, C, OC, layout);
        kern_matmul_fwd(bf, O, X, W, NULL, N, C, OC, layout);
        CHECK_DEV("bf16 matmul vs fp32 reference", O, out, N * OC, 2e-2 * sqrt((double)C));
        float *got = host(O, N * OC);
        size_t differ = 0;
        for (size_t i = 0; i < N * OC; i++) differ += got[i] != out[i];
        CHECK(differ > N * OC / 2, "bf16 result equals fp32 in %zu of %zu elements: bf16 not in use?", N * OC - differ, N * OC);
        /* the registered bf16 copy of the weights gives the same bits as rounding afresh */
        kern_bf16_shadow(bf, W, C * OC);
        kern_matmul_fwd(bf, O2, X, W, NULL, N, C, OC, layout);
        float *got2 = host(O2, N * OC);
        CHECK(memcmp(got, got2, N * OC * 4) == 0, "bf16 copy differs from fresh rounding");
        kern_bf16_shadow(bf, NULL, 0);
        free(got); free(got2);
    }
    kern_free(g_cu, X); kern_free(g_cu, W); kern_free(g_cu, O); kern_free(g_cu, O2);
    kern_backend_free(bf);
    free(x); free(w); free(out);
}

/* ---------------------------------------------------------------- devsim: a host-unreadable "device"
 * A stand-in backend whose buffers the host cannot dereference: kern_alloc returns the host allocation's address
 * with bit 62 flipped (a non-canonical x86-64 address: any load or store through it faults), and every op flips
 * it back before calling the cpu backend. Offsets added by the caller survive the flip (no carry reaches bit 62).
 * Training, decoding and checkpointing on it prove that the model, the training loop, the engine and checkpoint
 * I/O touch device memory only through kern_* (upload/download/ops) -- which the CUDA backend needs and a CPU
 * backend can never show. It proves nothing about the CUDA kernels. Runs everywhere (no GPU needed). */
#define DS_TAG ((uintptr_t)1 << 62)
static kern_backend *g_ds_inner;   /* the cpu backend doing the work */
#define U(p) ((__typeof__(p))((p) ? (void *)((uintptr_t)(p) ^ DS_TAG) : NULL))
#define IN g_ds_inner
static void *ds_alloc(kern_backend *be, size_t n) { (void)be; void *p = kern_alloc(IN, n); return (void *)((uintptr_t)p ^ DS_TAG); }
static void ds_free(kern_backend *be, void *p) { (void)be; kern_free(IN, U(p)); }
static void ds_zero(kern_backend *be, void *p, size_t n) { (void)be; kern_zero(IN, U(p), n); }
static void ds_upload(kern_backend *be, void *d, const void *s, size_t n) { (void)be; kern_upload(IN, U(d), s, n); }
static void ds_download(kern_backend *be, void *d, const void *s, size_t n) { (void)be; kern_download(IN, d, U(s), n); }
static void ds_copy(kern_backend *be, void *d, const void *s, size_t n) { (void)be; kern_copy(IN, U(d), U(s), n); }
static void ds_embed_fwd(kern_backend *be, float *out, const int32_t *tok, const float *wte, const float *wpe, size_t B,
                         size_t T, size_t C, size_t pos0) { (void)be; kern_embed_fwd(IN, U(out), U(tok), U(wte), U(wpe), B, T, C, pos0); }
static void ds_embed_bwd(kern_backend *be, float *dwte, float *dwpe, const float *dout, const int32_t *tok, size_t B,
                         size_t T, size_t C, size_t pos0) { (void)be; kern_embed_bwd(IN, U(dwte), U(dwpe), U(dout), U(tok), B, T, C, pos0); }
static void ds_ln_fwd(kern_backend *be, float *out, float *mean, float *rstd, const float *inp, const float *w,
                      const float *b, size_t N, size_t C, float eps) {
    (void)be; kern_layernorm_fwd(IN, U(out), U(mean), U(rstd), U(inp), U(w), U(b), N, C, eps);
}
static void ds_ln_bwd(kern_backend *be, float *dinp, float *dw, float *db, const float *dout, const float *inp,
                      const float *w, const float *mean, const float *rstd, size_t N, size_t C) {
    (void)be; kern_layernorm_bwd(IN, U(dinp), U(dw), U(db), U(dout), U(inp), U(w), U(mean), U(rstd), N, C);
}
static void ds_mm_fwd(kern_backend *be, float *out, const float *inp, const float *w, const float *bias, size_t N,
                      size_t C, size_t OC, int l) { (void)be; kern_matmul_fwd(IN, U(out), U(inp), U(w), U(bias), N, C, OC, l); }
static void ds_mm_bwd(kern_backend *be, float *dinp, float *dw, float *dbias, const float *dout, const float *inp,
                      const float *w, size_t N, size_t C, size_t OC, int l) {
    (void)be; kern_matmul_bwd(IN, U(dinp), U(dw), U(dbias), U(dout), U(inp), U(w), N, C, OC, l);
}
static void ds_mm_skinny(kern_backend *be, float *out, const float *inp, const float *w, const float *bias, size_t N,
                         size_t C, size_t OC, int l) { (void)be; kern_matmul_skinny_fwd(IN, U(out), U(inp), U(w), U(bias), N, C, OC, l); }
static size_t ds_saved(kern_backend *be, size_t B, size_t T, size_t C, size_t NH) { (void)be; return kern_attention_saved_floats(IN, B, T, C, NH); }
static void ds_att_fwd(kern_backend *be, float *out, float *saved, const float *qkv, size_t B, size_t T, size_t C,
                       size_t NH) { (void)be; kern_attention_fwd(IN, U(out), U(saved), U(qkv), B, T, C, NH); }
static void ds_att_bwd(kern_backend *be, float *dqkv, const float *dout, const float *qkv, const float *out,
                       const float *saved, size_t B, size_t T, size_t C, size_t NH) {
    (void)be; kern_attention_bwd(IN, U(dqkv), U(dout), U(qkv), U(out), U(saved), B, T, C, NH);
}
static void ds_att_cache(kern_backend *be, float *out, float *kc, float *vc, const float *qkv, const int32_t *slot,
                         const int32_t *pos, size_t B, size_t n, size_t C, size_t NH, size_t NKV, size_t maxT) {
    (void)be; kern_attn_cache_fwd(IN, U(out), U(kc), U(vc), U(qkv), U(slot), U(pos), B, n, C, NH, NKV, maxT);
}
static void ds_gelu_fwd(kern_backend *be, float *out, const float *inp, size_t n) { (void)be; kern_gelu_fwd(IN, U(out), U(inp), n); }
static void ds_gelu_bwd(kern_backend *be, float *dinp, const float *inp, const float *dout, size_t n) { (void)be; kern_gelu_bwd(IN, U(dinp), U(inp), U(dout), n); }
static void ds_add(kern_backend *be, float *out, const float *a, const float *b, size_t n) { (void)be; kern_add(IN, U(out), U(a), U(b), n); }
static void ds_axpy(kern_backend *be, float *y, float al, const float *x, size_t n) { (void)be; kern_axpy(IN, U(y), al, U(x), n); }
static void ds_scale(kern_backend *be, float *x, float s, size_t n) { (void)be; kern_scale(IN, U(x), s, n); }
static void ds_xent(kern_backend *be, float *loss, float *dl, const float *l, const int32_t *tg, const float *dloss,
                    size_t N, size_t V) { (void)be; kern_xent_fwd_bwd(IN, U(loss), U(dl), U(l), U(tg), U(dloss), N, V); }
static double ds_sumsq(kern_backend *be, const float *x, size_t n) { (void)be; return kern_sumsq(IN, U(x), n); }
static void ds_adamw(kern_backend *be, float *p, const float *g, float *m, float *v, size_t n, float lr, float b1, float b2,
                     float eps, float wd, float bc1, float bc2, float gs) {
    (void)be; kern_adamw(IN, U(p), U(g), U(m), U(v), n, lr, b1, b2, eps, wd, bc1, bc2, gs);
}
static void ds_shadow(kern_backend *be, const float *base, size_t n) { (void)be; kern_bf16_shadow(IN, U(base), n); }
static void ds_rms_fwd(kern_backend *be, float *out, float *rstd, const float *inp, const float *w, size_t N, size_t C,
                       float eps) { (void)be; kern_rmsnorm_fwd(IN, U(out), U(rstd), U(inp), U(w), N, C, eps); }
static void ds_rms_bwd(kern_backend *be, float *dinp, float *dw, const float *dout, const float *inp, const float *w,
                       const float *rstd, size_t N, size_t C) { (void)be; kern_rmsnorm_bwd(IN, U(dinp), U(dw), U(dout), U(inp), U(w), U(rstd), N, C); }
static void ds_rope(kern_backend *be, float *x, const int32_t *pos, const float *inv, size_t R, size_t W, size_t nh,
                    size_t hs, int inv_) { (void)be; kern_rope(IN, U(x), U(pos), U(inv), R, W, nh, hs, inv_); }
static void ds_kv_fwd(kern_backend *be, float *out, const float *qkv, size_t R, size_t NH, size_t NKV, size_t hs) {
    (void)be; kern_kv_expand_fwd(IN, U(out), U(qkv), R, NH, NKV, hs);
}
static void ds_kv_bwd(kern_backend *be, float *dqkv, const float *dout, size_t R, size_t NH, size_t NKV, size_t hs) {
    (void)be; kern_kv_expand_bwd(IN, U(dqkv), U(dout), R, NH, NKV, hs);
}
static void ds_swiglu_fwd(kern_backend *be, float *out, const float *g, const float *u, size_t n) { (void)be; kern_swiglu_fwd(IN, U(out), U(g), U(u), n); }
static void ds_swiglu_bwd(kern_backend *be, float *dg, float *du, const float *dout, const float *g, const float *u, size_t n) {
    (void)be; kern_swiglu_bwd(IN, U(dg), U(du), U(dout), U(g), U(u), n);
}
#undef IN
static const kern_ops g_ds_ops = {
    .alloc = ds_alloc, .free = ds_free, .zero = ds_zero, .upload = ds_upload, .download = ds_download, .copy = ds_copy,
    .embed_fwd = ds_embed_fwd, .embed_bwd = ds_embed_bwd, .layernorm_fwd = ds_ln_fwd, .layernorm_bwd = ds_ln_bwd,
    .matmul_fwd = ds_mm_fwd, .matmul_bwd = ds_mm_bwd, .matmul_skinny_fwd = ds_mm_skinny,
    .attention_saved_floats = ds_saved, .attention_fwd = ds_att_fwd, .attention_bwd = ds_att_bwd,
    .attn_cache_fwd = ds_att_cache, .gelu_fwd = ds_gelu_fwd, .gelu_bwd = ds_gelu_bwd, .add = ds_add, .axpy = ds_axpy,
    .scale = ds_scale, .xent_fwd_bwd = ds_xent, .sumsq = ds_sumsq, .adamw = ds_adamw, .bf16_shadow = ds_shadow,
    .rmsnorm_fwd = ds_rms_fwd, .rmsnorm_bwd = ds_rms_bwd, .rope = ds_rope, .kv_expand_fwd = ds_kv_fwd,
    .kv_expand_bwd = ds_kv_bwd, .swiglu_fwd = ds_swiglu_fwd, .swiglu_bwd = ds_swiglu_bwd,
};
/* A devsim backend over a new cpu backend (fp32). Free with devsim_free. */
static kern_backend *devsim_new(void) {
    kern_backend_opts o;
    kern_backend_opts_default(&o);
    o.kind = KERN_KIND_CPU;
    if (!g_ds_inner) g_ds_inner = kern_backend_create(&o, NULL);
    kern_backend *be = gk_calloc(1, sizeof *be);
    be->ops = &g_ds_ops;
    be->opts = o;
    be->gemm = g_ds_inner->gemm;
    snprintf(be->name, sizeof be->name, "devsim(%s)", kern_backend_name(g_ds_inner));
    return be;
}

/* ---------------------------------------------------------------- the model on the GPU */

static void tiny_config(gpt_config *c, int llama) {
    gpt_config_default(c);
    if (llama) { gpt_config_llama(c); c->n_kv_head = 2; c->n_inner = 88; }
    c->n_layer = 2; c->n_head = 4; c->n_embd = 32; c->vocab_size = 67; c->n_ctx = 24;
}
static void batch(int32_t *in, int32_t *tg, size_t BT, int step) {
    for (size_t i = 0; i < BT; i++) {
        in[i] = (int32_t)((i * 7 + (size_t)step * 13 + i * i) % 67);
        tg[i] = (i % 11 == 5) ? -1 : (int32_t)((in[i] * 3 + 1) % 67);
    }
}
/* `steps` AdamW steps of next-token training on m from step s0, losses into loss[] (before each update). */
static void train_steps(gpt_model *m, adamw *opt, int s0, int steps, double *loss) {
    size_t B = 2, T = 16;
    int32_t in[32], tg[32];
    train_lm *lm = train_lm_new(m);
    for (int s = s0; s < s0 + steps; s++) {
        batch(in, tg, B * T, s);
        size_t cnt = 0;
        gpt_zero_grads(m);
        for (size_t i = 0; i < B * T; i++) cnt += tg[i] >= 0;
        loss[s - s0] = train_lm_loss(lm, in, tg, B, T, (double)cnt, NULL);
        adamw_step(opt, m, 3e-3f);
    }
    train_lm_free(lm);
}

static void train_10_steps_on(kern_backend *dev) {
    for (int llama = 0; llama < 2; llama++) {
        gpt_config c;
        tiny_config(&c, llama);
        gpt_model *mc = gpt_create_on(&c, g_ref), *mg = gpt_create_on(&c, dev);
        gpt_init_random(mc, 11);
        gpt_init_random(mg, 11);
        gpt_alloc_grads(mc); gpt_alloc_grads(mg);
        adamw_config oc;
        adamw_config_default(&oc);
        adamw *oc_c = adamw_create(mc, &oc), *oc_g = adamw_create(mg, &oc);
        double lc[10], lg[10];
        train_steps(mc, oc_c, 0, 10, lc);
        train_steps(mg, oc_g, 0, 10, lg);
        for (int s = 0; s < 10; s++) {
            char what[64];
            snprintf(what, sizeof what, "%s loss at step %d", llama ? "llama" : "gpt2", s);
            CHECK_CLOSE(lg[s], lc[s], 0, s == 0 ? 1e-5 : 1e-3, what);
        }
        CHECK(lc[9] < lc[0], "the CPU run did not learn (%g -> %g)", lc[0], lc[9]);
        adamw_free(oc_c); adamw_free(oc_g);
        gpt_free(mc); gpt_free(mg);
    }
}

static void greedy_decode_on(kern_backend *dev) {
    gpt_config c;
    tiny_config(&c, 0);
    gpt_model *mc = gpt_create_on(&c, g_ref), *mg = gpt_create_on(&c, dev);
    gpt_init_random(mc, 3);
    gpt_init_random(mg, 3);
    engine *ec = engine_new(mc, NULL, 2, 0), *eg = engine_new(mg, NULL, 2, 0);
    engine_gen_opts o;
    engine_gen_opts_default(&o);
    o.samp.temperature = 0;
    o.max_new = 14;
    int32_t prompt[5] = { 1, 5, 9, 2, 40 };
    engine_seq sc[2], sg[2];
    gk_err err;
    CHECK(engine_generate(ec, prompt, 5, 2, &o, sc, &err) == 0, "cpu generate: %s", err.msg);
    CHECK(engine_generate(eg, prompt, 5, 2, &o, sg, &err) == 0, "gpu generate: %s", err.msg);
    for (int k = 0; k < 2; k++) {
        CHECK(sc[k].n == sg[k].n && !memcmp(sc[k].ids, sg[k].ids, sc[k].n * sizeof(int32_t)),
              "greedy ids differ for sequence %d (cpu %zu ids, gpu %zu)", k, sc[k].n, sg[k].n);
        engine_seq_free(&sc[k]); engine_seq_free(&sg[k]);
    }
    engine_free(ec); engine_free(eg);
    gpt_free(mc); gpt_free(mg);
}

/* Trains 5 steps on device A, saves model + optimizer state, resumes on device B for 5 more; the losses after
 * the switch must match a 10-step run that stayed on A. */
static void resume_case(kern_backend *a, kern_backend *b, kern_kind kind_b, const char *tag) {
    gpt_config c;
    tiny_config(&c, 0);
    gpt_model *m = gpt_create_on(&c, a);
    gpt_init_random(m, 21);
    gpt_alloc_grads(m);
    adamw_config oc;
    adamw_config_default(&oc);
    adamw *opt = adamw_create(m, &oc);
    double l1[5], l2[5], lfull[10];
    train_steps(m, opt, 0, 5, l1);
    char *dir = tl_tmpdir(tag);
    train_state st;
    memset(&st, 0, sizeof st);
    st.step = 5;
    st.opts_json = gk_strdup("{}");
    st.last_loss = l1[4];
    gk_err err;
    CHECK(train_save(dir, m, opt, &st, NULL, &err) == 0, "save: %s", err.msg);
    free(st.opts_json);
    /* the uninterrupted run on a */
    gpt_model *mf = gpt_create_on(&c, a);
    gpt_init_random(mf, 21);
    gpt_alloc_grads(mf);
    adamw *of = adamw_create(mf, &oc);
    train_steps(mf, of, 0, 10, lfull);
    /* resume on b: gpt_load builds its model on the default backend, so make b's kind the default */
    kern_backend_opts d0, d1;
    kern_backend_opts_default(&d0);
    d1 = d0;
    d1.kind = kind_b;
    kern_backend_set_defaults(&d1);
    gpt_model *m2 = gpt_load(dir, NULL, &err);
    kern_backend_set_defaults(&d0);
    CHECK(m2 != NULL, "load: %s", err.msg);
    if (m2) {
        CHECK(m2->be->opts.kind == kind_b, "loaded onto the wrong kind");
        gpt_alloc_grads(m2);
        adamw *o2 = adamw_create(m2, &oc);
        train_state st2;
        memset(&st2, 0, sizeof st2);
        CHECK(train_load_state(dir, m2, o2, &st2, &err) == 0, "load state: %s", err.msg);
        CHECK(st2.step == 5, "resumed at step %ld", st2.step);
        free(st2.opts_json);
        train_steps(m2, o2, 5, 5, l2);
        for (int s = 0; s < 5; s++) {
            char what[80];
            snprintf(what, sizeof what, "%s: loss at step %d after the switch", tag, 5 + s);
            CHECK_CLOSE(l2[s], lfull[5 + s], 0, 1e-3, what);
        }
        adamw_free(o2);
        gpt_free(m2);
    }
    (void)b;
    adamw_free(opt); adamw_free(of);
    gpt_free(m); gpt_free(mf);
    free(dir);
}

static void test_train_10_steps(void) { NEED_GPU(); train_10_steps_on(g_cu); }
static void test_greedy_decode(void) { NEED_GPU(); greedy_decode_on(g_cu); }
static void test_resume_across_devices(void) {
    NEED_GPU();
    resume_case(g_cu, g_ref, KERN_KIND_CPU, "gpu-to-cpu");
    resume_case(g_ref, g_cu, g_dry ? KERN_KIND_CPU : KERN_KIND_CUDA, "cpu-to-gpu");
}

/* The devsim backend (above) really is unreadable from the host: a child that loads through one of its
 * pointers dies of a signal. Without this the devsim tests below could pass by not testing anything. */
static void test_devsim_faults(void) {
    kern_backend *ds = devsim_new();
    float *p = kern_alloc(ds, 16);
    float one = 1.0f, back = 0;
    kern_upload(ds, p, &one, 4);
    kern_download(ds, &back, p, 4);
    CHECK(back == 1.0f, "devsim round trip");
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        /* die of the fault itself, not through a sanitizer's handler (whose report the suite counts as a FAIL) */
        signal(SIGSEGV, SIG_DFL);
        signal(SIGBUS, SIG_DFL);
        volatile float *vp = p;
        _exit(*vp == 1.0f ? 0 : 1);   /* must fault before it can exit */
    }
    int st = 0;
    CHECK(pid > 0 && waitpid(pid, &st, 0) == pid, "fork/wait");
    CHECK(WIFSIGNALED(st), "a host load through a devsim pointer did not fault (status %d)", st);
    kern_free(ds, p);
    kern_backend_free(ds);
}
/* The model, the training loop, the engine and checkpoint I/O on a backend whose memory the host cannot touch:
 * what the CUDA backend needs of them, checked without a GPU. */
static void test_devsim_train(void) { kern_backend *ds = devsim_new(); train_10_steps_on(ds); kern_backend_free(ds); }
static void test_devsim_decode(void) { kern_backend *ds = devsim_new(); greedy_decode_on(ds); kern_backend_free(ds); }
static void test_devsim_checkpoint(void) {
    kern_backend *ds = devsim_new();
    resume_case(ds, g_ref, KERN_KIND_CPU, "devsim-to-cpu");
    kern_backend_free(ds);
}

/* ---------------------------------------------------------------- NCCL */

/* NCCL in the plugin (a compile-time option: kern_nccl_version is 0 without it) on one GPU: a communicator of one
 * rank (ncclCommInitRank with nranks 1; the lent machine has one GPU) and each collective src/dist uses. With one
 * rank a sum is the input and a slice is the whole buffer, so every result must equal the input exactly; what this
 * checks is that NCCL starts, accepts the backend's buffers and stream, and that the uneven-slice groups of
 * Reduce / Broadcast run. Two ranks need two GPUs (docs/distributed.md). */
static void test_nccl_one_rank(void) {
    NEED_GPU();
    if (g_dry) TL_SKIP("dry run: NCCL needs a real device");
    int v = kern_nccl_version();
    if (!v) TL_SKIP("this build's CUDA plugin has no NCCL (nccl.h / libnccl not found at build time, or NO_NCCL=1)");
    printf("# NCCL %d.%d.%d\n", v / 10000, v / 100 % 100, v % 100);
    gk_err err;
    unsigned char id[KERN_NCCL_ID_BYTES];
    CHECK(kern_nccl_unique_id(id, &err) == 0, "ncclGetUniqueId: %s", err.msg);
    kern_nccl *c = kern_nccl_init(g_cu, id, 1, 0, &err);
    CHECK(c != NULL, "ncclCommInitRank(nranks 1): %s", err.msg);
    if (!c) return;
    size_t n = 1001, bounds[2] = {0, n};
    float *h = hrnd(n, 1.0f), *d = dev(h, n);
    kern_nccl_allreduce_sum_f32(c, d, n);
    CHECK_DEV("allreduce, 1 rank", d, h, n, 0);
    kern_nccl_reduce_scatter_sum_f32(c, d, bounds);
    CHECK_DEV("reduce-scatter, 1 rank", d, h, n, 0);
    kern_nccl_allgather_f32(c, d, bounds);
    CHECK_DEV("all-gather, 1 rank", d, h, n, 0);
    kern_free(g_cu, d);
    free(h);
    kern_nccl_free(c);
}

int main(void) {
    gk_rng_seed(&g_rng, 20);
    kern_backend_opts o;
    kern_backend_opts_default(&o);
    o.kind = KERN_KIND_REF;
    g_ref = kern_backend_create(&o, NULL);
    gk_err err;
    /* GK_TEST_CUDA_DRYRUN=1: run every GPU test with the cpu backend standing in for the GPU, to check the tests'
     * own logic (API use, shapes, tolerances) on a machine without one. It proves nothing about the CUDA kernels,
     * and the suite never sets it. */
    const char *dry = getenv("GK_TEST_CUDA_DRYRUN");
    if (dry && *dry == '1') {
        g_cu = devsim_new();
        g_dry = 1;
        printf("# DRY RUN: the devsim backend (cpu, host-unreadable pointers) stands in for the GPU; nothing here "
               "tests CUDA\n");
    } else if (kern_cuda_usable(&err) != 0) {
        snprintf(g_why, sizeof g_why, "%s", err.msg);
    } else {
        kern_backend_opts_default(&o);
        o.kind = KERN_KIND_CUDA;
        g_cu = kern_backend_create(&o, &err);
        if (!g_cu) snprintf(g_why, sizeof g_why, "%s", err.msg);
        else printf("# backend under test: %s\n", kern_backend_name(g_cu));
    }
    TL_RUN(test_refuses_without_device);
    TL_RUN(test_table_complete);
    TL_RUN(test_memory);
    TL_RUN(test_embed);
    TL_RUN(test_layernorm);
    TL_RUN(test_rmsnorm);
    TL_RUN(test_matmul);
    TL_RUN(test_matmul_skinny);
    TL_RUN(test_attention);
    TL_RUN(test_attn_cache);
    TL_RUN(test_elementwise);
    TL_RUN(test_rope_kv_expand);
    TL_RUN(test_xent);
    TL_RUN(test_adamw);
    TL_RUN(test_matmul_bf16);
    TL_RUN(test_train_10_steps);
    TL_RUN(test_greedy_decode);
    TL_RUN(test_resume_across_devices);
    TL_RUN(test_nccl_one_rank);
    TL_RUN(test_devsim_faults);
    TL_RUN(test_devsim_train);
    TL_RUN(test_devsim_decode);
    TL_RUN(test_devsim_checkpoint);
    kern_backend_free(g_cu);
    kern_backend_free(g_ds_inner);
    kern_backend_free(g_ref);
    return tl_summary();
}
