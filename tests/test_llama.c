/* test_llama.c: the LLaMA family — its ops by finite differences in double, the model against HF transformers'
 * LlamaForCausalLM / Qwen2ForCausalLM fixtures, fast path vs reference, KV cache vs full forward, checkpoints.
 *
 * Fixtures: tests/fixtures/llama/<case>/, made by tests/ref/gen_llama_fixtures.py (float64 reference on the stored
 * weights; head_dim 10, 3 query heads per key/value head, FFN 46, vocab 67). Tolerances as test_model.c's:
 *   logits |d| <= 1e-5 + 1e-5 |ref|; loss 1e-5 relative; grads |d| <= 1e-4 |ref| + 1e-5 max|ref|.
 */
#include "model/model.h"
#include "kern/kern.h"
#include "data/data.h"
#include "tok/tok.h"
#include "testlib.h"
#include <cjson/cJSON.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define FIX "tests/fixtures/llama"

static kern_backend *g_mem;
static float *download(const float *dev, size_t n) {
    float *h = malloc((n ? n : 1) * sizeof(float));
    kern_download(g_mem, h, dev, n * sizeof(float));
    return h;
}

/* ---------------------------------------------------------------- ops: finite differences in double */

static uint64_t g_seed = 7;
static double urand(void) {   /* [-1, 1) */
    g_seed = g_seed * 6364136223846793005ULL + 1442695040888963407ULL;
    return (double)(g_seed >> 11) / (double)(1ULL << 53) * 2 - 1;
}
static double *drand_arr(size_t n) {
    double *a = malloc(n * sizeof(double));
    for (size_t i = 0; i < n; i++) a[i] = urand();
    return a;
}

/* f(x) = sum_i R_i out_i(x); checks the analytic gradient dx against central differences of f. */
typedef void (*fwd_fn)(const double *x, double *out, void *ctx);
static double fd_check(const char *what, fwd_fn f, void *ctx, double *x, size_t nx, size_t nout, const double *R,
                       const double *dx) {
    double *o = malloc(nout * sizeof(double)), worst = 0, h = 1e-6;
    for (size_t i = 0; i < nx; i++) {
        double keep = x[i], fp = 0, fm = 0;
        x[i] = keep + h; f(x, o, ctx);
        for (size_t k = 0; k < nout; k++) fp += R[k] * o[k];
        x[i] = keep - h; f(x, o, ctx);
        for (size_t k = 0; k < nout; k++) fm += R[k] * o[k];
        x[i] = keep;
        double num = (fp - fm) / (2 * h), d = fabs(num - dx[i]) / (1e-6 + fabs(num));
        if (d > worst) worst = d;
    }
    free(o);
    CHECK(worst < 1e-6, "%s: finite differences disagree (worst relative %.3g)", what, worst);
    return worst;
}

typedef struct { size_t N, C; double *w, *rstd, eps; int wrt_w; double *x; } rms_ctx;
static void rms_f(const double *x, double *out, void *vc) {
    rms_ctx *c = vc;
    if (c->wrt_w) kern_ref64_rmsnorm_fwd(out, c->rstd, c->x, x, c->N, c->C, c->eps);
    else kern_ref64_rmsnorm_fwd(out, c->rstd, x, c->w, c->N, c->C, c->eps);
}

typedef struct { size_t R, W, nh, hs; int32_t *pos; double *inv; } rope_ctx;
static void rope_f(const double *x, double *out, void *vc) {
    rope_ctx *c = vc;
    memcpy(out, x, c->R * c->W * sizeof(double));
    kern_ref64_rope(out, c->pos, c->inv, c->R, c->W, c->nh, c->hs, 0);
}

typedef struct { size_t R, NH, NKV, hs; } kv_ctx;
static void kv_f(const double *x, double *out, void *vc) {
    kv_ctx *c = vc;
    kern_ref64_kv_expand_fwd(out, x, c->R, c->NH, c->NKV, c->hs);
}

typedef struct { size_t n; double *other; int wrt_up; } sw_ctx;
static void sw_f(const double *x, double *out, void *vc) {
    sw_ctx *c = vc;
    if (c->wrt_up) kern_ref64_swiglu_fwd(out, c->other, x, c->n);
    else kern_ref64_swiglu_fwd(out, x, c->other, c->n);
}

static void test_ops_finite_differences(void) {
    /* RMSNorm, odd width */
    size_t N = 3, C = 7;
    double *x = drand_arr(N * C), *w = drand_arr(C), *R = drand_arr(N * C), *out = malloc(N * C * sizeof(double));
    double rstd[3], *dx = calloc(N * C, sizeof(double)), *dw = calloc(C, sizeof(double));
    kern_ref64_rmsnorm_fwd(out, rstd, x, w, N, C, 1e-5);
    kern_ref64_rmsnorm_bwd(dx, dw, R, x, w, rstd, N, C);
    rms_ctx rc = {N, C, w, rstd, 1e-5, 0, x};
    double e1 = fd_check("rmsnorm dx", rms_f, &rc, x, N * C, N * C, R, dx);
    rc.wrt_w = 1;
    double e2 = fd_check("rmsnorm dw", rms_f, &rc, w, C, N * C, R, dw);
    free(x); free(w); free(R); free(out); free(dx); free(dw);
    /* RoPE: 4 rows of width 33 (2 heads of 10 rotated, the rest untouched), positions 0, 5, 17, 3 */
    size_t Rr = 4, W = 33, hs = 10;
    int32_t pos[4] = {0, 5, 17, 3};
    double inv[5];
    for (int i = 0; i < 5; i++) inv[i] = pow(10000.0, -2.0 * i / 10.0);
    x = drand_arr(Rr * W); R = drand_arr(Rr * W);
    double *g = malloc(Rr * W * sizeof(double));
    memcpy(g, R, Rr * W * sizeof(double));
    kern_ref64_rope(g, pos, inv, Rr, W, 2, hs, 1);   /* the backward: inverse rotation of the output gradient */
    rope_ctx pc = {Rr, W, 2, hs, pos, inv};
    double e3 = fd_check("rope", rope_f, &pc, x, Rr * W, Rr * W, R, g);
    /* forward then inverse is the identity */
    double *y = malloc(Rr * W * sizeof(double));
    memcpy(y, x, Rr * W * sizeof(double));
    kern_ref64_rope(y, pos, inv, Rr, W, 2, hs, 0);
    kern_ref64_rope(y, pos, inv, Rr, W, 2, hs, 1);
    double id = 0;
    for (size_t i = 0; i < Rr * W; i++) id = fmax(id, fabs(y[i] - x[i]));
    CHECK(id < 1e-12, "rope inverse: %g", id);
    free(x); free(R); free(g); free(y);
    /* grouped-query expand: 6 query heads over 2 key/value heads of 3 */
    kv_ctx kc = {3, 6, 2, 3};
    size_t nin = 3 * (6 + 4) * 3, nout = 3 * 3 * 18;
    x = drand_arr(nin); R = drand_arr(nout);
    double *dq = calloc(nin, sizeof(double));
    kern_ref64_kv_expand_bwd(dq, R, 3, 6, 2, 3);
    double e4 = fd_check("kv expand", kv_f, &kc, x, nin, nout, R, dq);
    free(x); free(R); free(dq);
    /* SwiGLU */
    size_t n = 11;
    double *ga = drand_arr(n), *up = drand_arr(n), *dg = calloc(n, sizeof(double)), *du = calloc(n, sizeof(double));
    for (size_t i = 0; i < n; i++) ga[i] *= 4;
    R = drand_arr(n);
    kern_ref64_swiglu_bwd(dg, du, R, ga, up, n);
    sw_ctx sc = {n, up, 0};
    double e5 = fd_check("swiglu dgate", sw_f, &sc, ga, n, n, R, dg);
    sc.other = ga; sc.wrt_up = 1;
    double e6 = fd_check("swiglu dup", sw_f, &sc, up, n, n, R, du);
    printf("  worst relative: rmsnorm %.1e/%.1e rope %.1e kv_expand %.1e swiglu %.1e/%.1e\n", e1, e2, e3, e4, e5, e6);
    free(ga); free(up); free(dg); free(du); free(R);
}

/* The fp32 ops of both backends equal the double reference. */
static void test_ops_fp32_vs_double(void) {
    kern_backend *be = tl_backend(KERN_KIND_CPU);
    size_t N = 5, C = 13;
    double *xd = drand_arr(N * C), *wd = drand_arr(C), outd[65], rstdd[5];
    float x[65], w[13], out[65], rstd[5], outd_f[65];
    for (size_t i = 0; i < N * C; i++) x[i] = (float)xd[i];
    for (size_t i = 0; i < C; i++) w[i] = (float)wd[i];
    for (size_t i = 0; i < N * C; i++) xd[i] = x[i];
    for (size_t i = 0; i < C; i++) wd[i] = w[i];
    kern_rmsnorm_fwd(be, out, rstd, x, w, N, C, 1e-6f);
    kern_ref64_rmsnorm_fwd(outd, rstdd, xd, wd, N, C, 1e-6);
    for (size_t i = 0; i < N * C; i++) outd_f[i] = (float)outd[i];
    CHECK_ARRAYS("rmsnorm fp32 vs double", out, outd_f, N * C, 1e-6, 1e-5);
    free(xd); free(wd);
    kern_backend_free(be);
}

/* ---------------------------------------------------------------- the model against transformers */

static double run_batch(gpt_model *m, const char *iopath, float **logits_out, int backward) {
    st_file io; gk_err err;
    if (st_open(&io, tl_path(iopath), &err)) { CHECK(0, "%s", err.msg); return NAN; }
    size_t n = 0;
    int32_t *tok = st_load_i32(&io, "tokens", &n), *tgt = st_load_i32(&io, "targets", NULL);
    const st_tensor *tt = st_find(&io, "tokens");
    size_t B = tt->shape[0], T = tt->shape[1], BT = B * T, C = (size_t)m->cfg.n_embd, V = (size_t)m->cfg.vocab_size;
    CHECK(gpt_check_tokens(m, tok, B, T, &err) == 0, "tokens: %s", err.msg);
    if (backward) { gpt_alloc_grads(m); gpt_zero_grads(m); }
    gpt_forward(m, tok, B, T);
    float *logits = kern_alloc(m->be, BT * V * sizeof(float)), *dlogits = kern_alloc(m->be, BT * V * sizeof(float));
    float *loss = kern_alloc(m->be, BT * sizeof(float)), *dloss = kern_alloc(m->be, BT * sizeof(float));
    int32_t *dtgt = kern_alloc(m->be, BT * sizeof(int32_t));
    float *dh = kern_alloc(m->be, BT * C * sizeof(float));
    float *ones = malloc(BT * sizeof(float));
    for (size_t i = 0; i < BT; i++) ones[i] = 1.0f / (float)BT;
    kern_upload(m->be, dloss, ones, BT * sizeof(float));
    kern_upload(m->be, dtgt, tgt, BT * sizeof(int32_t));
    gpt_lm_head_fwd(m, logits, gpt_hidden(m), BT);
    if (logits_out) *logits_out = download(logits, BT * V);
    kern_xent_fwd_bwd(m->be, loss, dlogits, logits, dtgt, dloss, BT, V);
    float *hl = download(loss, BT);
    double total = 0;
    for (size_t i = 0; i < BT; i++) total += hl[i];
    total /= (double)BT;
    if (backward) {
        gpt_lm_head_bwd(m, dh, dlogits, gpt_hidden(m), BT);
        gpt_backward(m, dh);
    }
    free(hl); free(ones); free(tok); free(tgt);
    kern_free(m->be, logits); kern_free(m->be, dlogits); kern_free(m->be, loss); kern_free(m->be, dloss);
    kern_free(m->be, dtgt); kern_free(m->be, dh);
    st_close(&io);
    return total;
}

static void check_case(const char *name, int grads) {
    gk_err err;
    char dir[256], io[256];
    snprintf(dir, sizeof dir, FIX "/%s/model", name);
    snprintf(io, sizeof io, FIX "/%s/io.safetensors", name);
    gpt_model *m = gpt_load(tl_path(dir), NULL, &err);
    CHECK(m != NULL, "%s: load: %s", name, err.msg);
    if (!m) return;
    CHECK(m->cfg.arch == GPT_ARCH_LLAMA && m->cfg.n_head == 3 && gpt_config_n_kv_head(&m->cfg) == 1 &&
          m->cfg.n_embd == 30 && gpt_config_n_inner(&m->cfg) == 46, "%s: config", name);
    float *logits = NULL;
    double loss = run_batch(m, io, &logits, grads);
    st_file f;
    if (st_open(&f, tl_path(io), &err)) { CHECK(0, "%s", err.msg); gpt_free(m); free(logits); return; }
    size_t n;
    float *want = st_load_f32(&f, "logits", &n), *wl = st_load_f32(&f, "loss", NULL);
    char what[128];
    snprintf(what, sizeof what, "%s logits", name);
    double dl = CHECK_ARRAYS(what, logits, want, n, 1e-5, 1e-5);
    CHECK_CLOSE(loss, wl[0], 0, 1e-5, name);
    double worst = 0;
    if (grads) {
        st_file g;
        snprintf(io, sizeof io, FIX "/%s/grads.safetensors", name);
        if (st_open(&g, tl_path(io), &err)) CHECK(0, "%s", err.msg);
        else {
            float *all = download(m->grads, m->num_params);
            CHECK(g.n == m->n_table, "fixture has %zu grads, model %zu params", g.n, m->n_table);
            for (size_t i = 0; i < m->n_table; i++) {
                const gpt_param *p = &m->table[i];
                size_t k = 0;
                float *wg = st_load_f32(&g, p->name, &k);
                CHECK(wg && k == p->numel, "fixture grad %s", p->name);
                if (!wg || k != p->numel) { free(wg); continue; }
                double mx = 0;
                for (size_t j = 0; j < k; j++) mx = fmax(mx, fabs(wg[j]));
                snprintf(what, sizeof what, "grad %s", p->name);
                CHECK_ARRAYS(what, all + p->offset, wg, k, 1e-5 * mx + 1e-9, 1e-4);
                for (size_t j = 0; j < k; j++) worst = fmax(worst, fabs(all[p->offset + j] - wg[j]) / (mx + 1e-30));
                free(wg);
            }
            free(all);
            st_close(&g);
        }
    }
    printf("  %s (%s): logits max |diff| %.2e, loss %.7f vs %.7f%s", name, kern_backend_name(m->be), dl, loss, wl[0],
           grads ? "" : "\n");
    if (grads) printf(", grads max |diff|/max|ref| %.2e\n", worst);
    free(want); free(wl); free(logits);
    st_close(&f);
    gpt_free(m);
}

static void test_fixtures_every_backend(void) {
    kern_backend_opts saved;
    kern_backend_opts_default(&saved);
    kern_backend_opts runs[3] = {{KERN_KIND_REF, KERN_GEMM_BUILTIN, KERN_PREC_FP32},
                                 {KERN_KIND_CPU, KERN_GEMM_OPENBLAS, KERN_PREC_FP32},
                                 {KERN_KIND_CPU, KERN_GEMM_ONEDNN, KERN_PREC_FP32}};
    for (int i = 0; i < 3; i++) {
        if (!kern_gemm_present(runs[i].gemm)) continue;
        kern_backend_set_defaults(&runs[i]);
        check_case("gqa", 1);      /* fp32, untied, GQA 3:1, head_dim 10: logits, loss, every gradient */
        check_case("tied", 0);     /* fp16 shards + index, tied head, llama3 rope scaling, theta 500000 */
        check_case("qwen2", 0);    /* bf16, q/k/v biases */
    }
    kern_backend_set_defaults(&saved);
}

/* ---------------------------------------------------------------- fast path vs reference, KV cache */

static void tiny_llama(gpt_config *c) {
    gpt_config_llama(c);
    c->n_layer = 2; c->n_head = 6; c->n_kv_head = 2; c->n_embd = 60; c->n_inner = 37; c->vocab_size = 29; c->n_ctx = 24;
}

static gpt_model *make_on(const gpt_config *c, kern_backend *be) {
    gpt_model *m = gpt_create_on(c, be);
    gpt_init_random(m, 5);
    /* larger weights than init so differences show */
    size_t n = m->num_params;
    float *h = download(m->params, n);
    for (size_t i = 0; i < n; i++) h[i] = h[i] * 5 + (float)(i % 7) * 0.01f;
    kern_upload(m->be, m->params, h, n * sizeof(float));
    free(h);
    return m;
}

static void test_fast_vs_ref(void) {
    gpt_config c;
    tiny_llama(&c);
    kern_backend *ref = tl_backend(KERN_KIND_REF), *fast = tl_backend(KERN_KIND_CPU);
    gpt_model *a = make_on(&c, ref), *b = make_on(&c, fast);
    size_t B = 3, T = 19, BT = B * T, C = (size_t)c.n_embd;
    int32_t tok[57];
    for (size_t i = 0; i < BT; i++) tok[i] = (int32_t)((i * 11 + 3) % (size_t)c.vocab_size);
    gpt_model *ms[2] = {a, b};
    float *h[2], *g[2];
    for (int k = 0; k < 2; k++) {
        gpt_model *m = ms[k];
        gpt_alloc_grads(m); gpt_zero_grads(m);
        gpt_forward(m, tok, B, T);
        h[k] = download(gpt_hidden(m), BT * C);
        float *dh = kern_alloc(m->be, BT * C * sizeof(float)), *R = malloc(BT * C * sizeof(float));
        for (size_t i = 0; i < BT * C; i++) R[i] = (float)((i * 37 % 101) / 50.0 - 1.0);
        kern_upload(m->be, dh, R, BT * C * sizeof(float));
        gpt_backward(m, dh);
        g[k] = download(m->grads, m->num_params);
        kern_free(m->be, dh); free(R);
    }
    double dh = CHECK_ARRAYS("hidden fast vs ref", h[1], h[0], BT * C, 1e-4, 1e-4);
    double mx = 0;
    for (size_t i = 0; i < a->num_params; i++) mx = fmax(mx, fabs(g[0][i]));
    double dg = CHECK_ARRAYS("grads fast vs ref", g[1], g[0], a->num_params, 2e-5 * mx, 1e-3);
    printf("  %s vs %s: hidden %.2e, grads %.2e (max %.2e)\n", kern_backend_name(fast), kern_backend_name(ref), dh, dg, mx);
    for (int k = 0; k < 2; k++) { free(h[k]); free(g[k]); }
    gpt_free(a); gpt_free(b);
    kern_backend_free(ref); kern_backend_free(fast);
}

/* Prefill + token-by-token decode over the cache equals the full forward (rotary positions, GQA). */
static void test_kv_cache(void) {
    gpt_config c;
    tiny_llama(&c);
    gpt_model *m = make_on(&c, NULL);
    size_t T = 11, C = (size_t)c.n_embd;
    int32_t tok[22];
    for (size_t i = 0; i < 2 * T; i++) tok[i] = (int32_t)((i * 5 + 1) % (size_t)c.vocab_size);
    gpt_forward(m, tok, 2, T);
    float *full = download(gpt_hidden(m), 2 * T * C);
    gpt_kv *kv = gpt_kv_new(m, 3, 0);
    float *got = malloc(2 * T * C * sizeof(float));
    /* sequence 0 in slot 2: prefill 4, then one at a time; sequence 1 in slot 0: prefill 7, then 4 at once */
    size_t s2 = 2, s0 = 0;
    float *first = download(gpt_forward_kv(m, kv, &s2, tok, 1, 4), 4 * C);
    memcpy(got, first, 4 * C * sizeof(float));
    free(first);
    for (size_t t = 4; t < T; t++) {
        float *r = download(gpt_forward_kv(m, kv, &s2, tok + t, 1, 1), C);
        memcpy(got + t * C, r, C * sizeof(float));
        free(r);
    }
    float *r = download(gpt_forward_kv(m, kv, &s0, tok + T, 1, 7), 7 * C);
    memcpy(got + T * C, r, 7 * C * sizeof(float)); free(r);
    r = download(gpt_forward_kv(m, kv, &s0, tok + T + 7, 1, 4), 4 * C);
    memcpy(got + (T + 7) * C, r, 4 * C * sizeof(float)); free(r);
    double d = CHECK_ARRAYS("kv decode vs full", got, full, 2 * T * C, 1e-4, 1e-4);
    printf("  kv cache vs full forward: %.2e\n", d);
    gpt_kv_free(kv);
    free(full); free(got);
    gpt_free(m);
}

/* ---------------------------------------------------------------- checkpoints */

static void test_save_roundtrip(void) {
    gk_err err;
    gpt_config c;
    tiny_llama(&c);
    c.qkv_bias = 1; c.rope_theta = 500000; c.rope_scaling = GPT_ROPE_SCALE_LLAMA3;
    c.rope_factor = 8; c.rope_low_freq_factor = 1; c.rope_high_freq_factor = 4; c.rope_orig_ctx = 16; c.ln_eps = 1e-6f;
    for (int tied = 0; tied < 2; tied++) {
        c.tied_head = tied;
        gpt_model *m = make_on(&c, NULL);
        char *d = tl_tmpdir("llama");
        CHECK(gpt_save(m, d, "tok.json", &err) == 0, "%s", err.msg);
        char *mp = gk_path_join(d, "model.safetensors");
        st_file f;
        if (!st_open(&f, mp, &err)) {
            CHECK(st_find(&f, "model.layers.1.self_attn.k_proj.weight") && st_find(&f, "model.layers.0.self_attn.q_proj.bias") &&
                  st_find(&f, "model.norm.weight") && !st_find(&f, "model.layers.0.self_attn.qkv_proj.weight") &&
                  (st_find(&f, "lm_head.weight") != NULL) == !tied, "HF names in the file");
            const st_tensor *t = st_find(&f, "model.layers.1.self_attn.k_proj.weight");
            CHECK(t && t->shape[0] == 20 && t->shape[1] == 60, "k_proj shape");
            st_close(&f);
        } else CHECK(0, "%s", err.msg);
        char *tk = NULL;
        gpt_model *m2 = gpt_load(d, &tk, &err);
        CHECK(m2 != NULL, "reload: %s", err.msg);
        if (m2) {
            CHECK(!memcmp(&m->cfg, &m2->cfg, sizeof c), "config after round trip");
            float *h1 = download(m->params, m->num_params), *h2 = download(m2->params, m2->num_params);
            CHECK(m->num_params == m2->num_params && !memcmp(h1, h2, m->num_params * sizeof(float)), "params after round trip");
            CHECK(tk && !strcmp(tk, "tok.json"), "tokenizer recorded");
            free(h1); free(h2);
            gpt_free(m2);
        }
        free(tk); free(mp); free(d);
        gpt_free(m);
    }
}

static void copy_dir_file(const char *from, const char *to, const char *name) {
    gk_err err;
    char *a = gk_path_join(from, name), *b = gk_path_join(to, name), *txt = NULL;
    size_t n = 0;
    if (!gk_read_file(a, &txt, &n, &err)) gk_write_file_atomic(b, txt, n, &err);
    free(txt); free(a); free(b);
}

static void test_bad_inputs(void) {
    gk_err err;
    char *d = tl_tmpdir("badllama");
    /* an index naming a shard that is not there */
    const char *src = tl_path(FIX "/tied/model");
    char *srcd = gk_strdup(src);
    copy_dir_file(srcd, d, "config.json");
    copy_dir_file(srcd, d, "model.safetensors.index.json");
    copy_dir_file(srcd, d, "model-00001-of-00011.safetensors");
    gpt_model *m = gpt_load(d, NULL, &err);
    CHECK(!m && strstr(err.msg, "index.json") && strstr(err.msg, "missing") && strstr(err.msg, "model-000"), "missing shard: %s",
          m ? "(loaded)" : err.msg);
    gpt_free(m);
    /* a config whose shapes disagree with the weights */
    char *d2 = tl_tmpdir("badllama2");
    char *gq = gk_strdup(tl_path(FIX "/gqa/model"));
    copy_dir_file(gq, d2, "model.safetensors");
    char *cp = gk_path_join(gq, "config.json"), *txt = NULL;
    size_t n;
    if (!gk_read_file(cp, &txt, &n, &err)) {
        char *p = strstr(txt, "\"intermediate_size\": 46");
        CHECK(p != NULL, "fixture config has intermediate_size 46");
        if (p) memcpy(p, "\"intermediate_size\": 48", 23);
        char *o = gk_path_join(d2, "config.json");
        gk_write_file_atomic(o, txt, n, &err);
        free(o);
    }
    m = gpt_load(d2, NULL, &err);
    CHECK(!m && strstr(err.msg, "model.safetensors") && strstr(err.msg, "shape") && strstr(err.msg, "mlp"), "shape mismatch: %s",
          m ? "(loaded)" : err.msg);
    gpt_free(m);
    /* an unsupported rope scaling type is refused by name */
    char *o = gk_path_join(d2, "config.json");
    const char *js = "{\"model_type\":\"llama\",\"num_hidden_layers\":2,\"num_attention_heads\":3,\"hidden_size\":30,"
                     "\"intermediate_size\":46,\"vocab_size\":67,\"rope_scaling\":{\"rope_type\":\"yarn\",\"factor\":4}}";
    gk_write_file_atomic(o, js, strlen(js), &err);
    m = gpt_load(d2, NULL, &err);
    CHECK(!m && strstr(err.msg, "yarn") && strstr(err.msg, "not supported"), "yarn: %s", m ? "(loaded)" : err.msg);
    gpt_free(m);
    free(o); free(cp); free(txt); free(gq); free(srcd); free(d); free(d2);
}

static void test_named_sizes(void) {
    gpt_config c; gk_err err;
    gpt_config_llama(&c);
    CHECK(gpt_config_from_name(&c, "d12", &err) == 0 && c.n_head == 12 && c.n_kv_head == 4 && c.n_inner == 2048, "llama d12");
    CHECK(gpt_config_from_name(&c, "llama-135m", &err) == 0 && c.n_layer == 30 && c.n_kv_head == 3 && c.n_inner == 1536,
          "llama-135m");
    CHECK(gpt_config_validate(&c, &err) == 0, "%s", err.msg);
    gpt_config_default(&c);
    CHECK(gpt_config_from_name(&c, "llama-135m", &err) != 0, "gpt2 has no llama-135m");
}

/* The model's own chat template: a Qwen2 directory's tokenizer.json announces ChatML; the rendering of a
 * conversation equals transformers' apply_chat_template(add_generation_prompt=True). */
static void test_chat_template_chatml(void) {
    gk_err err;
    char *txt = NULL; size_t n;
    if (gk_read_file(tl_path(FIX "/chat/expected.json"), &txt, &n, &err)) { CHECK(0, "%s", err.msg); return; }
    cJSON *j = cJSON_ParseWithLength(txt, n);
    tok_tokenizer *t = NULL;
    CHECK(tok_load_recorded(tl_path(FIX "/chat/model"), NULL, NULL, 1, &t, &err) == 0, "tokenizer: %s", err.msg);
    if (!t || !j) { cJSON_Delete(j); free(txt); tok_free(t); return; }
    chat_specials sp;
    CHECK(chat_specials_resolve(t, 0, &sp, &err) == 0 && sp.fmt == CHAT_FMT_CHATML, "chatml recognised: %s", err.msg);
    chat_conv c = {0};
    const cJSON *m;
    cJSON_ArrayForEach(m, cJSON_GetObjectItemCaseSensitive(j, "messages")) {
        chat_role r;
        chat_role_parse(cJSON_GetObjectItemCaseSensitive(m, "role")->valuestring, &r);
        chat_conv_add(&c, r, cJSON_GetObjectItemCaseSensitive(m, "content")->valuestring);
    }
    chat_tokens ct = {0};
    chat_render(t, &sp, &c, 1, &ct);
    const cJSON *want = cJSON_GetObjectItemCaseSensitive(j, "prompt_ids");
    int same = (size_t)cJSON_GetArraySize(want) == ct.n;
    for (size_t i = 0; same && i < ct.n; i++) same = cJSON_GetArrayItem(want, (int)i)->valueint == ct.ids[i];
    CHECK(same, "rendering differs from apply_chat_template (%zu vs %d ids)", ct.n, cJSON_GetArraySize(want));
    /* an assistant turn's content and <|im_end|> are the targets, nothing else */
    chat_conv_add(&c, CHAT_ASSISTANT, "Light.");
    chat_tokens ct2 = {0};
    chat_render(t, &sp, &c, 0, &ct2);
    size_t targets = 0;
    for (size_t i = 0; i < ct2.n; i++) targets += ct2.mask[i];
    tok_ids reply = {0};
    tok_encode(t, "Light.", 6, 0, &reply);
    CHECK(targets == reply.n + 1 && ct2.mask[ct2.n - 2] == 1 && ct2.ids[ct2.n - 2] == sp.end && ct2.mask[ct2.n - 1] == 0,
          "mask: %zu targets for a %zu-token reply", targets, reply.n);
    tok_ids_free(&reply);
    chat_tokens_free(&ct); chat_tokens_free(&ct2); chat_conv_free(&c);
    tok_free(t); cJSON_Delete(j); free(txt);
}

/* ---------------------------------------------------------------- GGUF */

#define GFIX "tests/fixtures/gguf"

static void test_gguf_dequant_bit_exact(void) {
    gk_err err;
    gguf_file g;
    if (gguf_open(&g, tl_path(GFIX "/dequant.gguf"), &err)) { CHECK(0, "%s", err.msg); return; }
    const char *types[] = {"F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q4_K", "Q5_K", "Q6_K"};
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        char en[32];
        snprintf(en, sizeof en, "%s.expected", types[i]);
        const gguf_tensor *t = gguf_find_tensor(&g, types[i]), *e = gguf_find_tensor(&g, en);
        CHECK(t && e && e->type == GGUF_F32 && t->numel == e->numel, "%s: tensors", types[i]);
        if (!t || !e) continue;
        float *got = malloc(t->numel * sizeof(float));
        CHECK(gguf_dequantize(t->type, g.data + g.data_off + t->offset, t->numel, got) == 0, "%s: dequantize", types[i]);
        size_t bad = 0;
        const uint8_t *want = g.data + g.data_off + e->offset;
        for (size_t k = 0; k < t->numel; k++) if (memcmp(got + k, want + 4 * k, 4)) bad++;
        CHECK(bad == 0, "%s: %zu of %zu values differ from gguf.quants.dequantize", types[i], bad, t->numel);
        free(got);
    }
    gguf_close(&g);
}

static cJSON *load_json(const char *rel) {
    gk_err err;
    char *txt = NULL; size_t n;
    if (gk_read_file(tl_path(rel), &txt, &n, &err)) return NULL;
    cJSON *j = cJSON_ParseWithLength(txt, n);
    free(txt);
    return j;
}

static void test_gguf_models_match_transformers(void) {
    cJSON *j = load_json(GFIX "/expected.json");
    CHECK(j != NULL, "expected.json");
    if (!j) return;
    const cJSON *tk = cJSON_GetObjectItemCaseSensitive(j, "tokens");
    int32_t tok[30];
    for (int b = 0; b < 2; b++)
        for (int t = 0; t < 15; t++) tok[b * 15 + t] = cJSON_GetArrayItem(cJSON_GetArrayItem(tk, b), t)->valueint;
    const char *qs[] = {"f32", "q8_0", "q4_0"};
    for (int q = 0; q < 3; q++) {
        char path[128];
        snprintf(path, sizeof path, GFIX "/model-%s.gguf", qs[q]);
        gk_err err;
        gpt_model *m = gpt_load(tl_path(path), NULL, &err);
        CHECK(m != NULL, "%s: %s", qs[q], err.msg);
        if (!m) continue;
        CHECK(m->cfg.arch == GPT_ARCH_LLAMA && gpt_config_n_kv_head(&m->cfg) == 1 && m->cfg.n_embd == 96 && !m->cfg.tied_head,
              "%s: config", qs[q]);
        size_t N = 30, V = 67;
        gpt_forward(m, tok, 2, 15);
        float *dl = kern_alloc(m->be, N * V * sizeof(float));
        gpt_lm_head_fwd(m, dl, gpt_hidden(m), N);
        float *got = download(dl, N * V), *want = malloc(N * V * sizeof(float));
        const cJSON *wl = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(j, qs[q]), "logits");
        for (size_t i = 0; i < N * V; i++) want[i] = (float)cJSON_GetArrayItem(wl, (int)i)->valuedouble;
        char what[64];
        snprintf(what, sizeof what, "%s logits", qs[q]);
        double d = CHECK_ARRAYS(what, got, want, N * V, 1e-4, 1e-4);
        printf("  %s GGUF vs transformers on the stored weights: logits max |diff| %.2e\n", qs[q], d);
        free(got); free(want); kern_free(m->be, dl);
        gpt_free(m);
    }
    cJSON_Delete(j);
}

/* gptkit's writer: an HF directory exported as f32 reloads to the same parameters; as q8_0 / q4_0 its tensors
 * equal the gguf package's quantization of the same weights (the fixture files), bit for bit. */
static void test_gguf_export(void) {
    gk_err err;
    gpt_model *m = gpt_load(tl_path(GFIX "/model"), NULL, &err);
    CHECK(m != NULL, "%s", err.msg);
    if (!m) return;
    char *d = tl_tmpdir("gguf");
    const char *qs[] = {"f32", "q8_0", "q4_0"};
    for (int q = 0; q < 3; q++) {
        int type;
        CHECK(gguf_type_parse(qs[q], &type) == 0, "type %s", qs[q]);
        char name[32];
        snprintf(name, sizeof name, "out-%s.gguf", qs[q]);
        char *out = gk_path_join(d, name);
        CHECK(gpt_export_gguf(m, out, type, NULL, 0, &err) == 0, "export %s: %s", qs[q], err.msg);
        gguf_file a, b;
        char ref[128];
        snprintf(ref, sizeof ref, GFIX "/model-%s.gguf", qs[q]);
        if (gguf_open(&a, out, &err) == 0) {
            if (gguf_open(&b, tl_path(ref), &err) == 0) {
                CHECK(a.n_tensors == b.n_tensors, "%s: %zu tensors vs %zu", qs[q], a.n_tensors, b.n_tensors);
                for (size_t i = 0; i < a.n_tensors; i++) {
                    const gguf_tensor *ta = &a.tensors[i];
                    char tn[128];
                    snprintf(tn, sizeof tn, "%.*s", (int)ta->name.n, ta->name.p);
                    const gguf_tensor *tb = gguf_find_tensor(&b, tn);
                    CHECK(tb && tb->type == ta->type && tb->bytes == ta->bytes &&
                          !memcmp(a.data + a.data_off + ta->offset, b.data + b.data_off + tb->offset, ta->bytes),
                          "%s: tensor %s differs from the gguf package's", qs[q], tn);
                }
                gguf_close(&b);
            } else CHECK(0, "%s", err.msg);
            gguf_close(&a);
        } else CHECK(0, "%s", err.msg);
        if (q == 0) {   /* f32 round trip */
            gpt_model *m2 = gpt_load(out, NULL, &err);
            CHECK(m2 && m2->num_params == m->num_params, "reload: %s", m2 ? "" : err.msg);
            if (m2) {
                float *h1 = download(m->params, m->num_params), *h2 = download(m2->params, m2->num_params);
                CHECK(!memcmp(h1, h2, m->num_params * sizeof(float)), "f32 GGUF round trip changes the weights");
                free(h1); free(h2);
                gpt_free(m2);
            }
        }
        free(out);
    }
    /* GPT-2 too: llama.cpp's gpt2 layout (Conv1D matrices transposed to [out, in]), reloaded unchanged */
    gpt_model *g2 = gpt_load(tl_path("tests/fixtures/gpt2/model"), NULL, &err);
    CHECK(g2 != NULL, "%s", err.msg);
    if (g2) {
        char *out = gk_path_join(d, "gpt2.gguf");
        CHECK(gpt_export_gguf(g2, out, GGUF_F32, NULL, 0, &err) == 0, "gpt2 export: %s", err.msg);
        gpt_model *r = gpt_load(out, NULL, &err);
        CHECK(r && r->cfg.arch == GPT_ARCH_GPT2 && r->num_params == g2->num_params, "gpt2 reload: %s", r ? "" : err.msg);
        if (r) {
            float *h1 = download(g2->params, g2->num_params), *h2 = download(r->params, r->num_params);
            CHECK(!memcmp(h1, h2, g2->num_params * sizeof(float)), "gpt2 GGUF round trip changes the weights");
            free(h1); free(h2);
            gpt_free(r);
        }
        free(out);
        gpt_free(g2);
    }
    free(d);
    gpt_free(m);
}

/* Bad files: clear errors naming the file and the field, never a crash. */
static void test_gguf_bad_files(void) {
    gk_err err;
    char *txt = NULL; size_t n;
    CHECK(gk_read_file(tl_path(GFIX "/model-q8_0.gguf"), &txt, &n, &err) == 0, "%s", err.msg);
    if (!txt) return;
    gguf_file g;
    uint8_t *buf = malloc(n);
    /* truncated anywhere in the header or the data */
    size_t cuts[] = {3, 10, 23, 100, 500, 2000, n / 2, n - 64};   /* (the last bytes may be padding) */
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        memcpy(buf, txt, n);
        int rc = gguf_parse(&g, buf, cuts[i], "x.gguf", &err);
        CHECK(rc != 0 && strstr(err.msg, "x.gguf"), "truncated at %zu: %s", cuts[i], rc ? err.msg : "parsed");
        if (!rc) gguf_close(&g);
    }
    CHECK(gguf_parse(&g, (const uint8_t *)txt, n, "ok.gguf", &err) == 0, "intact: %s", err.msg);
    size_t first_off_at = 0;
    if (g.n_tensors) {   /* where the first tensor's offset field sits: right before the next name, found by scanning */
        const gguf_tensor *t = &g.tensors[0];
        first_off_at = (size_t)((const uint8_t *)t->name.p - g.data) + t->name.n + 4 + 8 * (size_t)t->n_dims + 4;
    }
    gguf_close(&g);
    /* lying counts */
    memcpy(buf, txt, n);
    uint64_t big = (uint64_t)1 << 40;
    memcpy(buf + 8, &big, 8);
    CHECK(gguf_parse(&g, buf, n, "x.gguf", &err) != 0 && strstr(err.msg, "tensors"), "tensor count: %s", err.msg);
    memcpy(buf, txt, n);
    memcpy(buf + 16, &big, 8);
    CHECK(gguf_parse(&g, buf, n, "x.gguf", &err) != 0 && strstr(err.msg, "metadata"), "kv count: %s", err.msg);
    /* a tensor offset past the end, and a misaligned one */
    memcpy(buf, txt, n);
    uint64_t off = (uint64_t)n;
    memcpy(buf + first_off_at, &off, 8);
    CHECK(gguf_parse(&g, buf, n, "x.gguf", &err) != 0 && strstr(err.msg, "past the end"), "offset: %s", err.msg);
    memcpy(buf, txt, n);
    off = 8;
    memcpy(buf + first_off_at, &off, 8);
    CHECK(gguf_parse(&g, buf, n, "x.gguf", &err) != 0 && (strstr(err.msg, "alignment") || strstr(err.msg, "overlap")),
          "misaligned: %s", err.msg);
    /* an unknown tensor type */
    memcpy(buf, txt, n);
    uint32_t ty = 99;
    memcpy(buf + first_off_at - 4, &ty, 4);
    CHECK(gguf_parse(&g, buf, n, "x.gguf", &err) != 0 && strstr(err.msg, "unknown type 99"), "type: %s", err.msg);
    /* not GGUF at all */
    CHECK(gguf_parse(&g, (const uint8_t *)"GGML\3\0\0\0", 8, "x.gguf", &err) != 0 && strstr(err.msg, "not a GGUF"), "magic");
    free(buf); free(txt);
}

int main(void) {
    g_mem = kern_backend_create(NULL, NULL);
    TL_RUN(test_ops_finite_differences);
    TL_RUN(test_ops_fp32_vs_double);
    TL_RUN(test_named_sizes);
    TL_RUN(test_fixtures_every_backend);
    TL_RUN(test_fast_vs_ref);
    TL_RUN(test_kv_cache);
    TL_RUN(test_save_roundtrip);
    TL_RUN(test_bad_inputs);
    TL_RUN(test_chat_template_chatml);
    TL_RUN(test_gguf_dequant_bit_exact);
    TL_RUN(test_gguf_models_match_transformers);
    TL_RUN(test_gguf_export);
    TL_RUN(test_gguf_bad_files);
    kern_backend_free(g_mem);
    return tl_summary();
}
