/* test_lora.c: LoRA adapters (src/model/lora.c) on both families — a fresh adapter is the base exactly, the
 * adapter gradients by central differences, merge equals unmerged, the KV-cache path applies them, PEFT-layout
 * save/load round trip, bad input refused with a message, and (fixture) logits and adapter gradients equal
 * HF peft's on the same weights (tests/ref/gen_lora_fixtures.py). */
#include "model/model.h"
#include "kern/kern.h"
#include "optim/optim.h"
#include "testlib.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define FIX "tests/fixtures/lora"

static float *dl(const gpt_model *m, const float *dev, size_t n) {
    float *h = malloc((n ? n : 1) * sizeof(float));
    kern_download(m->be, h, dev, n * sizeof(float));
    return h;
}

static void tiny(gpt_config *c, int llama) {
    if (llama) {
        gpt_config_llama(c);
        c->n_layer = 2; c->n_head = 6; c->n_kv_head = 2; c->n_embd = 60; c->n_inner = 76;
    } else {
        gpt_config_default(c);
        c->n_layer = 2; c->n_head = 4; c->n_embd = 32;
    }
    c->vocab_size = 50; c->n_ctx = 16;
}

static gpt_model *make(int llama, uint64_t seed) {
    gpt_config c;
    tiny(&c, llama);
    gpt_model *m = gpt_create_on(&c, tl_backend(KERN_KIND_REF));
    m->own_be = 1;
    gpt_init_random(m, seed);
    return m;
}

enum { B_ = 2, T_ = 7 };
static const int32_t TOK[B_ * T_] = {1, 5, 9, 3, 44, 2, 17, 8, 8, 31, 0, 49, 12, 6};

/* logits [B*T, V] on the host */
static float *logits_of(gpt_model *m, const int32_t *tok, size_t B, size_t T) {
    size_t N = B * T, V = (size_t)m->cfg.vocab_size;
    gpt_forward(m, tok, B, T);
    float *d = kern_alloc(m->be, N * V * sizeof(float));
    gpt_lm_head_fwd(m, d, gpt_hidden(m), N);
    float *h = dl(m, d, N * V);
    kern_free(m->be, d);
    return h;
}
static float *logits(gpt_model *m) {
    size_t N = B_ * T_, V = (size_t)m->cfg.vocab_size;
    gpt_forward(m, TOK, B_, T_);
    float *d = kern_alloc(m->be, N * V * sizeof(float));
    gpt_lm_head_fwd(m, d, gpt_hidden(m), N);
    float *h = dl(m, d, N * V);
    kern_free(m->be, d);
    return h;
}

/* A scalar of the logits with a fixed weighting: f = sum_i w_i logits_i, w_i = sin(i) (double on the host). */
/* Central difference of obj at parameter i of pm (a view of m's adapters or parameters), step h: the parameter
 * moved up and down in a host copy p uploaded each time, and restored. */
static double central_diff(gpt_model *m, gpt_model *pm, float *p, size_t i, float h, double (*obj)(gpt_model *, int)) {
    float save = p[i];
    p[i] = save + h; kern_upload(m->be, pm->params, p, pm->num_params * sizeof(float));
    double fp = obj(m, 0);
    p[i] = save - h; kern_upload(m->be, pm->params, p, pm->num_params * sizeof(float));
    double fm = obj(m, 0);
    p[i] = save; kern_upload(m->be, pm->params, p, pm->num_params * sizeof(float));
    return (fp - fm) / (2 * h);
}

static double objective(gpt_model *m, int backward) {
    size_t N = B_ * T_, V = (size_t)m->cfg.vocab_size, C = (size_t)m->cfg.n_embd;
    float *lg = logits(m);
    double f = 0;
    float *w = malloc(N * V * sizeof(float));
    for (size_t i = 0; i < N * V; i++) { w[i] = (float)sin((double)i); f += (double)w[i] * lg[i]; }
    if (backward) {
        float *dw = kern_alloc(m->be, N * V * sizeof(float)), *dh = kern_alloc(m->be, N * C * sizeof(float));
        kern_upload(m->be, dw, w, N * V * sizeof(float));
        gpt_lm_head_bwd(m, dh, dw, gpt_hidden(m), N);
        gpt_backward(m, dh);
        kern_free(m->be, dw); kern_free(m->be, dh);
    }
    free(w); free(lg);
    return f;
}

static gpt_lora_config lcfg(int rank, unsigned targets) {
    gpt_lora_config c = { .rank = rank, .alpha = 7, .targets = targets };
    return c;
}

/* B random (a fresh adapter's B is zero, which would hide half the gradient paths) */
static void randomize_b(gpt_model *m, uint64_t seed) {
    gpt_lora *L = m->lora;
    float *h = dl(m, L->pm->params, L->pm->num_params);
    gk_rng r;
    gk_rng_seed(&r, seed);
    for (size_t i = 0; i < L->n_sites; i++)
        for (size_t k = 0; k < L->sites[i].out * (size_t)L->cfg.rank; k++)
            h[L->sites[i].b_off + k] = (float)(gk_rng_uniform(&r) - 0.5) * 0.6f;
    kern_upload(m->be, L->pm->params, h, L->pm->num_params * sizeof(float));
    free(h);
}

static void test_fresh_adapter_is_base(void) {
    for (int llama = 0; llama < 2; llama++) {
        gpt_model *m = make(llama, 3);
        float *l0 = logits(m);
        gk_err err;
        unsigned t;
        CHECK(gpt_lora_parse_targets(&m->cfg, "all-linear", &t, &err) == 0, "%s", err.msg);
        gpt_lora_config c = lcfg(3, t);
        CHECK(gpt_lora_attach(m, &c, 11, &err) == 0, "%s", err.msg);
        float *l1 = logits(m);
        size_t n = B_ * T_ * (size_t)m->cfg.vocab_size;
        CHECK(!memcmp(l0, l1, n * sizeof(float)), "%s: B = 0 leaves the logits bit-identical", llama ? "llama" : "gpt2");
        /* A drawn as PEFT draws it: |A| <= 1/sqrt(in), and not all zero */
        float *p = dl(m, m->lora->pm->params, m->lora->pm->num_params);
        const gpt_lora_site *s = &m->lora->sites[0];
        double mx = 0;
        for (size_t k = 0; k < (size_t)c.rank * s->in; k++) mx = fmax(mx, fabs(p[s->a_off + k]));
        CHECK(mx > 0.5 / sqrt((double)s->in) && mx <= 1 / sqrt((double)s->in), "A's range %g", mx);
        free(p); free(l0); free(l1);
        gpt_free(m);
    }
}

static void test_gradients_finite_differences(void) {
    for (int llama = 0; llama < 2; llama++) {
        gpt_model *m = make(llama, 5);
        gk_err err;
        unsigned t;
        CHECK(gpt_lora_parse_targets(&m->cfg, "all-linear", &t, &err) == 0, "%s", err.msg);
        gpt_lora_config c = lcfg(3, t);
        CHECK(gpt_lora_attach(m, &c, 12, &err) == 0, "%s", err.msg);
        randomize_b(m, 99);
        gpt_model *pm = m->lora->pm;
        for (int g = 0; g < GPT_NGROUPS; g++) gpt_set_trainable(m, g, 0);   /* the base frozen */
        gpt_alloc_grads(pm);
        gpt_zero_grads(pm);
        objective(m, 1);
        CHECK(m->grads == NULL, "the frozen base has no gradient buffer");
        float *g = dl(m, pm->grads, pm->num_params), *p = dl(m, pm->params, pm->num_params);
        /* every tensor: its 3 largest-index and a middle entry, central differences in float (f is O(10)) */
        double worst = 0;
        int checked = 0;
        for (size_t e = 0; e < pm->n_table; e++) {
            const gpt_param *tp = &pm->table[e];
            size_t idx[3] = {0, tp->numel / 2, tp->numel - 1};
            for (int k = 0; k < 3; k++) {
                size_t i = tp->offset + idx[k];
                double fd = central_diff(m, pm, p, i, 1e-2f, objective), err_ = fabs(fd - g[i]) / (fabs(fd) + 1e-1);
                if (err_ > worst) worst = err_;
                if (err_ > 2e-2) tl_fail_at(__FILE__, __LINE__, "%s %s[%zu]: analytic %g, central difference %g",
                                            llama ? "llama" : "gpt2", tp->name, idx[k], g[i], fd);
                checked++;
            }
        }
        CHECK(checked >= 6 * (int)m->cfg.n_layer, "checked %d entries", checked);
        free(g); free(p);
        gpt_free(m);
    }
}

static void test_merge_and_kv_cache(void) {
    for (int llama = 0; llama < 2; llama++) {
        gpt_model *m = make(llama, 8);
        gk_err err;
        unsigned t;
        CHECK(gpt_lora_parse_targets(&m->cfg, llama ? "q,v,down" : "c_attn,mlp.c_proj", &t, &err) == 0, "%s", err.msg);
        gpt_lora_config c = lcfg(5, t);
        c.rslora = llama;
        CHECK(gpt_lora_attach(m, &c, 13, &err) == 0, "%s", err.msg);
        randomize_b(m, 7);
        float *l0 = logits(m);
        size_t V = (size_t)m->cfg.vocab_size, n = B_ * T_ * V;
        /* the KV-cache path applies the adapters too: prefill sequence 0 and compare its logits */
        gpt_kv *kv = gpt_kv_new(m, 1, 0);
        size_t slot = 0;
        const float *h = gpt_forward_kv(m, kv, &slot, TOK, 1, T_);
        float *d = kern_alloc(m->be, T_ * V * sizeof(float));
        gpt_lm_head_fwd(m, d, h, T_);
        float *lk = dl(m, d, T_ * V);
        CHECK_ARRAYS("kv-cache logits with adapters", lk, l0, T_ * V, 1e-5, 1e-5);
        kern_free(m->be, d); free(lk); gpt_kv_free(kv);
        /* adapters off: the base */
        m->lora->enabled = 0;
        float *lb = logits(m);
        double diff = 0;
        for (size_t i = 0; i < n; i++) diff = fmax(diff, fabs(lb[i] - l0[i]));
        CHECK(diff > 1e-3, "adapters change the logits (%g)", diff);
        m->lora->enabled = 1;
        gpt_lora_merge(m);
        CHECK(m->lora == NULL, "merge detaches");
        float *l1 = logits(m);
        CHECK_ARRAYS("merged logits", l1, l0, n, 1e-5, 1e-5);
        free(l0); free(l1); free(lb);
        gpt_free(m);
    }
}

static void test_peft_files_roundtrip(void) {
    for (int llama = 0; llama < 2; llama++) {
        gpt_model *m = make(llama, 21);
        gk_err err;
        unsigned t;
        CHECK(gpt_lora_parse_targets(&m->cfg, "all-linear", &t, &err) == 0, "%s", err.msg);
        gpt_lora_config c = lcfg(3, t);
        CHECK(gpt_lora_attach(m, &c, 14, &err) == 0, "%s", err.msg);
        randomize_b(m, 8);
        float *l0 = logits(m);
        char *d = tl_tmpdir("lora");
        CHECK(gpt_lora_save(m, d, "/base/dir", &err) == 0, "%s", err.msg);
        char *mp = gk_path_join(d, "adapter_model.safetensors");
        st_file f;
        if (!st_open(&f, mp, &err)) {
            const char *k = llama ? "base_model.model.model.layers.1.self_attn.k_proj.lora_B.weight"
                                  : "base_model.model.transformer.h.1.attn.c_attn.lora_B.weight";
            const st_tensor *tt = st_find(&f, k);
            CHECK(tt && tt->shape[1] == 3 && tt->shape[0] == (llama ? 20u : 96u), "PEFT name and shape of %s", k);
            CHECK(st_find(&f, llama ? "base_model.model.model.layers.0.mlp.down_proj.lora_A.weight"
                                    : "base_model.model.transformer.h.0.mlp.c_proj.lora_A.weight") != NULL, "mlp names");
            st_close(&f);
        } else CHECK(0, "%s", err.msg);
        gpt_lora_detach(m);
        char *base = NULL;
        CHECK(gpt_lora_load(m, d, &base, &err) == 0, "load: %s", err.msg);
        CHECK(base && !strcmp(base, "/base/dir"), "base recorded");
        free(base);
        if (m->lora) {
            float *l1 = logits(m);
            CHECK(!memcmp(l0, l1, B_ * T_ * (size_t)m->cfg.vocab_size * sizeof(float)), "logits after reload");
            free(l1);
        }
        /* another base (different weights, same shapes): refused by its checksum */
        gpt_model *o = make(llama, 22);
        CHECK(gpt_lora_load(o, d, NULL, &err) != 0 && strstr(err.msg, "another base"), "other base refused: %s", err.msg);
        CHECK(o->lora == NULL, "nothing attached after a refusal");
        gpt_free(o);
        /* same family, other width: refused by shape (checksum removed, as in an adapter peft wrote) */
        {
            gpt_config c2;
            tiny(&c2, llama);
            c2.n_embd = 48;
            gpt_model *w = gpt_create(&c2);
            gpt_init_random(w, 3);
            char *d2 = tl_tmpdir("lora-nock");
            gpt_model *src = make(llama, 21);
            gpt_lora_config lc = lcfg(3, t);
            CHECK(gpt_lora_attach(src, &lc, 14, &err) == 0, "%s", err.msg);
            CHECK(gpt_lora_save(src, d2, NULL, &err) == 0, "%s", err.msg);
            /* drop the checksum: rewrite the tensors without it */
            char *p2 = gk_path_join(d2, "adapter_model.safetensors");
            st_file g;
            if (st_open(&g, p2, &err) == 0) {
                st_writer *wr = st_writer_new();
                float **keep = calloc(g.n, sizeof *keep);
                for (size_t k = 0; k < g.n; k++) {
                    size_t n = g.tensors[k].shape[0] * g.tensors[k].shape[1];
                    keep[k] = malloc(n * sizeof(float));
                    st_read_f32(&g, &g.tensors[k], keep[k], &err);
                    st_writer_add_f32(wr, g.tensors[k].name, 2, g.tensors[k].shape, keep[k]);
                }
                CHECK(st_writer_write(wr, p2, &err) == 0, "%s", err.msg);
                st_writer_free(wr);
                for (size_t k = 0; k < g.n; k++) free(keep[k]);
                free(keep);
                st_close(&g);
            }
            CHECK(gpt_lora_load(w, d2, NULL, &err) != 0 && strstr(err.msg, "has shape") && strstr(err.msg, "another model"),
                  "other width refused by shape: %s", err.msg);
            CHECK(w->lora == NULL, "nothing attached after a shape refusal");
            gpt_free(w); gpt_free(src); free(p2); free(d2);
        }
        /* the other family: refused by target names */
        o = make(!llama, 22);
        CHECK(gpt_lora_load(o, d, NULL, &err) != 0 && strstr(err.msg, "adapter_config.json"), "other family refused: %s", err.msg);
        gpt_free(o);
        free(l0); free(mp); free(d);
        gpt_free(m);
    }
}

/* peft's forward, loss, adapter gradients and merge on the same base + adapter (tests/ref/gen_lora_fixtures.py) */
static float *fx(const st_file *f, const char *name, size_t want) {
    const st_tensor *t = st_find(f, name);
    if (!t) return NULL;
    size_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
    if (n != want) return NULL;
    float *d = malloc(n * sizeof(float));
    gk_err err;
    if (st_read_f32(f, t, d, &err)) { free(d); return NULL; }
    return d;
}

/* Forward on tok [B,T], mean cross-entropy over targets >= 0, backward into the adapters' grads (accumulated).
 * Returns the loss; *lg_out (if non-NULL) gets the host logits [B*T, V]. */
static double ce_fwd_bwd(gpt_model *m, const int32_t *tok, const int32_t *tg, size_t B, size_t T, float **lg_out) {
    size_t N = B * T, V = (size_t)m->cfg.vocab_size, C = (size_t)m->cfg.n_embd;
    gpt_forward(m, tok, B, T);
    float *dlog = kern_alloc(m->be, N * V * sizeof(float)), *dh = kern_alloc(m->be, N * C * sizeof(float));
    gpt_lm_head_fwd(m, dlog, gpt_hidden(m), N);
    float *lg = dl(m, dlog, N * V);
    size_t kept = 0;
    for (size_t i = 0; i < N; i++) kept += tg[i] >= 0;
    double loss = 0;
    float *g = calloc(N * V, sizeof(float));
    for (size_t i = 0; i < N; i++) {
        if (tg[i] < 0) continue;
        double mx = -1e30, z = 0;
        for (size_t v = 0; v < V; v++) mx = fmax(mx, lg[i * V + v]);
        for (size_t v = 0; v < V; v++) z += exp(lg[i * V + v] - mx);
        loss += -(lg[i * V + (size_t)tg[i]] - mx - log(z));
        for (size_t v = 0; v < V; v++) g[i * V + v] = (float)(exp(lg[i * V + v] - mx) / z / (double)kept);
        g[i * V + (size_t)tg[i]] -= (float)(1.0 / (double)kept);
    }
    kern_upload(m->be, dlog, g, N * V * sizeof(float));
    kern_zero(m->be, dh, N * C * sizeof(float));
    gpt_lm_head_bwd(m, dh, dlog, gpt_hidden(m), N);
    gpt_backward(m, dh);
    kern_free(m->be, dlog); kern_free(m->be, dh);
    free(g);
    if (lg_out) *lg_out = lg; else free(lg);
    return loss / (double)kept;
}

static void test_matches_peft(void) {
    const char *cases[] = {"gpt2", "llama"};
    for (int c = 0; c < 2; c++) {
        char dir[256], ad[300], io[300];
        snprintf(dir, sizeof dir, "%s", tl_path(FIX));
        snprintf(ad, sizeof ad, "%s/%s/adapter", dir, cases[c]);
        snprintf(io, sizeof io, "%s/%s/io.safetensors", dir, cases[c]);
        snprintf(dir + strlen(dir), sizeof dir - strlen(dir), "/%s/model", cases[c]);
        gk_err err;
        gpt_model *m = gpt_load(dir, NULL, &err);
        CHECK(m != NULL, "%s: %s", cases[c], err.msg);
        if (!m) continue;
        st_file f;
        if (st_open(&f, io, &err)) { CHECK(0, "%s", err.msg); gpt_free(m); continue; }
        const st_tensor *tt = st_find(&f, "tokens");
        size_t B = tt->shape[0], T = tt->shape[1], V = (size_t)m->cfg.vocab_size, N = B * T;
        int32_t *tok = malloc(N * 4), *tg = malloc(N * 4);
        memcpy(tok, f.data + tt->begin, N * 4);
        memcpy(tg, f.data + st_find(&f, "targets")->begin, N * 4);
        float *want = fx(&f, "logits", N * V), *want_base = fx(&f, "base_logits", N * V), *want_merged = fx(&f, "merged_logits", N * V);
        float *want_loss = fx(&f, "loss", 1);
        CHECK(want && want_base && want_merged && want_loss, "fixture tensors");
        CHECK(gpt_lora_load(m, ad, NULL, &err) == 0, "peft's adapter loads: %s", err.msg);
        if (!m->lora || !want || !want_base || !want_merged || !want_loss) { st_close(&f); gpt_free(m); continue; }
        for (int g = 0; g < GPT_NGROUPS; g++) gpt_set_trainable(m, g, 0);
        gpt_model *pm = m->lora->pm;
        gpt_alloc_grads(pm);
        gpt_zero_grads(pm);
        /* forward, loss and backward: logits [N, V] */
        float *lg = NULL;
        double loss = ce_fwd_bwd(m, tok, tg, B, T, &lg);
        CHECK_ARRAYS("logits with peft's adapter", lg, want, N * V, 1e-4, 1e-4);
        CHECK_CLOSE(loss, want_loss[0], 1e-5, 1e-5, "loss");
        float *grads = dl(m, pm->grads, pm->num_params);
        size_t matched = 0;
        for (size_t i = 0; i < m->lora->n_sites; i++)
            for (int ab = 0; ab < 2; ab++) {
                const gpt_lora_site *s = &m->lora->sites[i];
                char key[160], gk[200];
                gpt_lora_key(m, i, ab ? 'B' : 'A', key, sizeof key);
                snprintf(gk, sizeof gk, "grad.%s", key);
                size_t n = (size_t)m->lora->cfg.rank * (ab ? s->out : s->in);
                float *w = fx(&f, gk, n);
                CHECK(w != NULL, "fixture has %s", gk);
                if (w) { CHECK_ARRAYS(gk, grads + (ab ? s->b_off : s->a_off), w, n, 2e-5, 1e-3); matched++; }
                free(w);
            }
        CHECK(matched == 2 * m->lora->n_sites && matched >= 16, "every adapter gradient compared (%zu)", matched);
        /* adapters off: the base; merged: peft's merge_and_unload */
        m->lora->enabled = 0;
        float *lb = logits_of(m, tok, B, T);
        CHECK_ARRAYS("logits with adapters off", lb, want_base, N * V, 1e-4, 1e-4);
        m->lora->enabled = 1;
        gpt_lora_merge(m);
        float *lm = logits_of(m, tok, B, T);
        CHECK_ARRAYS("merged logits vs peft's merge_and_unload", lm, want_merged, N * V, 1e-4, 1e-4);
        free(lb); free(lm); free(grads); free(lg);
        gpt_free(m);
        /* 5 AdamW steps on the adapters alone, from peft's adapter on a fresh base: torch.optim.AdamW's result */
        m = gpt_load(dir, NULL, &err);
        if (m && gpt_lora_load(m, ad, NULL, &err) == 0) {
            for (int gi = 0; gi < GPT_NGROUPS; gi++) gpt_set_trainable(m, gi, 0);
            pm = m->lora->pm;
            gpt_alloc_grads(pm);
            adamw_config ac = { .beta1 = 0.9f, .beta2 = 0.95f, .eps = 1e-8f, .weight_decay = 0.05f, .grad_clip = 0 };
            adamw *o = adamw_create(pm, &ac);
            for (int step = 0; step < 5; step++) {
                gpt_zero_grads(pm);
                ce_fwd_bwd(m, tok, tg, B, T, NULL);
                adamw_step(o, pm, 1e-2f);
            }
            CHECK(m->grads == NULL, "the base never had gradients");
            float *p = dl(m, pm->params, pm->num_params);
            size_t cmp = 0;
            for (size_t i = 0; i < m->lora->n_sites; i++)
                for (int ab = 0; ab < 2; ab++) {
                    const gpt_lora_site *s = &m->lora->sites[i];
                    char key[160], k2[200];
                    gpt_lora_key(m, i, ab ? 'B' : 'A', key, sizeof key);
                    snprintf(k2, sizeof k2, "adamw5.%s", key);
                    size_t n = (size_t)m->lora->cfg.rank * (ab ? s->out : s->in);
                    float *w = fx(&f, k2, n);
                    CHECK(w != NULL, "fixture has %s", k2);
                    if (w) { CHECK_ARRAYS(k2, p + (ab ? s->b_off : s->a_off), w, n, 2e-5, 1e-4); cmp++; }
                    free(w);
                }
            CHECK(cmp == 2 * m->lora->n_sites, "every adapter tensor after 5 AdamW steps");
            free(p);
            adamw_free(o);
        } else CHECK(0, "reload for the AdamW steps: %s", err.msg);
        free(tok); free(tg); free(want); free(want_base); free(want_merged); free(want_loss);
        st_close(&f);
        gpt_free(m);
    }
}


/* Dropout on the adapters' input: on only in training mode; within one pass the backward sees the forward's mask
 * (central differences of the adapter gradients with the mask held fixed: each objective restarts the pass
 * count with the same seed); another seed draws another mask; evaluation mode is the plain adapter. */
static void test_dropout(void) {
    for (int llama = 0; llama < 2; llama++) {
        gpt_model *m = make(llama, 41);
        gk_err err;
        unsigned t;
        CHECK(gpt_lora_parse_targets(&m->cfg, "all-linear", &t, &err) == 0, "%s", err.msg);
        gpt_lora_config c = lcfg(3, t);
        c.dropout = 0.3f;
        CHECK(gpt_lora_attach(m, &c, 12, &err) == 0, "%s", err.msg);
        randomize_b(m, 77);
        size_t n = B_ * T_ * (size_t)m->cfg.vocab_size;
        float *le = logits(m);   /* evaluation mode: no dropout */
        m->lora->cfg.dropout = 0;
        float *l0 = logits(m);
        m->lora->cfg.dropout = 0.3f;
        CHECK(!memcmp(le, l0, n * sizeof(float)), "%s: evaluation mode is the adapter without dropout", llama ? "llama" : "gpt2");
        gpt_lora_train(m, 1, 5);
        float *la = logits(m);
        gpt_lora_train(m, 1, 5);
        float *lb = logits(m);
        gpt_lora_train(m, 1, 6);
        float *lc = logits(m);
        CHECK(!memcmp(la, lb, n * sizeof(float)), "same seed, same pass: same mask");
        CHECK(memcmp(la, le, n * sizeof(float)) && memcmp(la, lc, n * sizeof(float)), "dropout changes the logits; another seed another mask");
        free(le); free(l0); free(la); free(lb); free(lc);
        /* gradients under a fixed mask */
        gpt_model *pm = m->lora->pm;
        for (int g = 0; g < GPT_NGROUPS; g++) gpt_set_trainable(m, g, 0);
        gpt_alloc_grads(pm);
        gpt_zero_grads(pm);
        gpt_lora_train(m, 1, 9);
        objective(m, 1);
        float *g = dl(m, pm->grads, pm->num_params), *p = dl(m, pm->params, pm->num_params);
        int bad = 0, checked = 0;
        for (size_t e = 0; e < pm->n_table; e++) {
            const gpt_param *tp = &pm->table[e];
            size_t idx[3] = {0, tp->numel / 2, tp->numel - 1};
            for (int k = 0; k < 3; k++) {
                size_t i = tp->offset + idx[k];
                float save = p[i], h = 1e-2f;
                p[i] = save + h; kern_upload(m->be, pm->params, p, pm->num_params * sizeof(float));
                gpt_lora_train(m, 1, 9);
                double fp = objective(m, 0);
                p[i] = save - h; kern_upload(m->be, pm->params, p, pm->num_params * sizeof(float));
                gpt_lora_train(m, 1, 9);
                double fm = objective(m, 0);
                p[i] = save; kern_upload(m->be, pm->params, p, pm->num_params * sizeof(float));
                double fd = (fp - fm) / (2 * h);
                if (fabs(fd - g[i]) / (fabs(fd) + 1e-1) > 2e-2) {
                    bad++;
                    tl_fail_at(__FILE__, __LINE__, "dropout %s %s[%zu]: analytic %g, central difference %g",
                               llama ? "llama" : "gpt2", tp->name, idx[k], g[i], fd);
                }
                checked++;
            }
        }
        CHECK(checked >= 6 * (int)m->cfg.n_layer && !bad, "dropout gradients: %d of %d entries off", bad, checked);
        free(g); free(p);
        gpt_free(m);
    }
}

/* r [B*T] of m's scalar head (host) */
static float *scores(gpt_model *m) {
    size_t N = B_ * T_;
    gpt_forward(m, TOK, B_, T_);
    float *d = kern_alloc(m->be, N * sizeof(float));
    gpt_score_head_fwd(m, d, gpt_hidden(m), N);
    float *h = dl(m, d, N);
    kern_free(m->be, d);
    return h;
}

/* A reward / value adapter owns its score head: a base without one scores through it; the head's gradient by
 * central differences; PEFT files carry it (task SEQ_CLS, modules_to_save score) and reload; merge gives the
 * base a head with the same scores; the base checksum ignores a head. */
static void test_score_adapter(void) {
    for (int llama = 0; llama < 2; llama++) {
        gpt_model *m = make(llama, 51);
        uint64_t ck0 = gpt_params_checksum(m);
        gk_err err;
        unsigned t;
        CHECK(gpt_lora_parse_targets(&m->cfg, llama ? "q,v" : "c_attn", &t, &err) == 0, "%s", err.msg);
        gpt_lora_config c = lcfg(2, t);
        c.score = 1;
        CHECK(!gpt_has_score_head(m), "a plain LM has no head");
        CHECK(gpt_lora_attach(m, &c, 3, &err) == 0, "%s", err.msg);
        CHECK(gpt_has_score_head(m) && !m->cfg.score_head, "the adapter's head");
        randomize_b(m, 5);
        gpt_lora *L = m->lora;
        size_t C = (size_t)m->cfg.n_embd;
        float *w = malloc(C * sizeof(float));
        for (size_t i = 0; i < C; i++) w[i] = (float)cos((double)i);
        kern_upload(m->be, L->pm->params + L->score_off, w, C * sizeof(float));
        float *r0 = scores(m);
        /* d(sum r)/d score.weight = sum over rows of h */
        gpt_model *pm = L->pm;
        gpt_alloc_grads(pm);
        gpt_zero_grads(pm);
        for (int g = 0; g < GPT_NGROUPS; g++) gpt_set_trainable(m, g, 0);
        gpt_forward(m, TOK, B_, T_);
        size_t N = B_ * T_;
        float *dr = kern_alloc(m->be, N * sizeof(float)), *dh = kern_alloc(m->be, N * C * sizeof(float));
        float *ones = malloc(N * sizeof(float));
        for (size_t i = 0; i < N; i++) ones[i] = 1;
        kern_upload(m->be, dr, ones, N * sizeof(float));
        gpt_score_head_bwd(m, dh, dr, gpt_hidden(m), N);
        float *hid = dl(m, gpt_hidden(m), N * C), *g = dl(m, pm->grads + L->score_off, C);
        double worst = 0;
        for (size_t k = 0; k < C; k++) {
            double want = 0;
            for (size_t i = 0; i < N; i++) want += hid[i * C + k];
            worst = fmax(worst, fabs(want - g[k]));
        }
        CHECK(worst < 1e-4, "score head gradient off by %g", worst);
        kern_free(m->be, dr); kern_free(m->be, dh);
        free(ones); free(hid); free(g);
        /* files */
        char *d = tl_tmpdir("lora-score");
        CHECK(gpt_lora_save(m, d, NULL, &err) == 0, "%s", err.msg);
        char *cp = gk_path_join(d, "adapter_config.json"), *txt = NULL;
        size_t tl = 0;
        CHECK(gk_read_file(cp, &txt, &tl, &err) == 0 && strstr(txt, "SEQ_CLS") && strstr(txt, "\"score\""), "config: %s", txt ? txt : err.msg);
        free(cp); free(txt);
        gpt_model *o = make(llama, 51);
        CHECK(gpt_lora_load(o, d, NULL, &err) == 0 && o->lora && o->lora->cfg.score, "reload: %s", err.msg);
        if (o->lora) {
            float *r1 = scores(o);
            CHECK_ARRAYS("scores after reload", r1, r0, N, 0, 0);
            free(r1);
            gpt_lora_merge(o);
            CHECK(o->cfg.score_head && !o->lora, "merge gives the base a head");
            float *r2 = scores(o);
            CHECK_ARRAYS("merged scores", r2, r0, N, 1e-5, 1e-5);
            free(r2);
        }
        gpt_free(o);
        /* a head on the base changes no checksum: the adapter still fits */
        gpt_model *h2 = make(llama, 51);
        gpt_add_score_head(h2);
        CHECK(gpt_params_checksum(h2) == ck0, "checksum without the head");
        CHECK(gpt_lora_load(h2, d, NULL, &err) == 0, "onto a base with a head: %s", err.msg);
        gpt_free(h2);
        free(d); free(w); free(r0);
        gpt_free(m);
    }
}

/* Views: several adapter sets over one base, whose parameters are shared, never copied. A view without adapters
 * is the base (the reference of PPO / GRPO); one with adapters changes only its own outputs. */
static void test_views(void) {
    gpt_model *m = make(1, 61);
    float *l0 = logits(m);
    gk_err err;
    gpt_model *ref = gpt_create_view(m), *val = gpt_create_view(m);
    CHECK(ref->params == m->params && ref->grads == NULL, "a view shares the parameters");
    unsigned t;
    CHECK(gpt_lora_parse_targets(&m->cfg, "all-linear", &t, &err) == 0, "%s", err.msg);
    gpt_lora_config c = lcfg(2, t);
    CHECK(gpt_lora_attach(m, &c, 1, &err) == 0, "%s", err.msg);
    randomize_b(m, 2);
    c.score = 1;
    CHECK(gpt_lora_attach(val, &c, 3, &err) == 0, "%s", err.msg);
    size_t n = B_ * T_ * (size_t)m->cfg.vocab_size;
    float *lp = logits(m), *lr = logits(ref);
    CHECK(!memcmp(lr, l0, n * sizeof(float)), "the reference view is the base");
    CHECK(memcmp(lp, l0, n * sizeof(float)) != 0, "the policy's adapters change its logits");
    float *rv = scores(val);
    CHECK(rv[0] == 0, "the value view's fresh head scores 0");
    free(l0); free(lp); free(lr); free(rv);
    gpt_free(val); gpt_free(ref);   /* views before their base */
    gpt_free(m);
}

/* ---------------------------------------------------------------- QLoRA: adapters over a quantized base
 * A LLaMA model 256 wide (every matrix's rows fill Q4_K's 256-value super-blocks) written as GGUF of a type, then
 * loaded twice: kept quantized (gpt_load_gguf_quant: QLoRA) and dequantized to fp32 (gpt_load_gguf). The same
 * adapters (same seed, B randomized) on both compute the same function, so the objective and every adapter gradient
 * must agree. The quantized forward multiplies dequantized panels through the same GEMM as the fp32 weights (the
 * training forward never takes the int8 decode path), and the backward's dX = dY W uses the same decoded values:
 * the only difference is float summation order (panels, q | k | v parts), so the tolerance is float noise:
 * |df| <= 1e-5 (1 + |f|) and each gradient within 1e-4 of the largest gradient's magnitude (+1e-6). */
enum { QB_ = 2, QT_ = 24 };   /* 48 rows: the "many rows" regime, well above KERN_Q_DECODE_MAX_N */

static gpt_model *qlora_load(int type, int quant, const char *path) {
    gk_err err;
    gpt_model *m = quant ? gpt_load_gguf_quant(path, &err) : gpt_load_gguf(path, &err);
    CHECK(m != NULL, "%s", err.msg);
    return m;
}

static const char *qlora_write(int type, char *path, size_t cap) {
    gpt_config c;
    gpt_config_llama(&c);
    c.n_layer = 2; c.n_head = 4; c.n_kv_head = 2; c.n_embd = 256; c.n_inner = 256; c.vocab_size = 64; c.n_ctx = 32;
    gpt_model *m = gpt_create(&c);
    gpt_init_random(m, 77);
    char *d = tl_tmpdir("qlora");
    snprintf(path, cap, "%s/base-%s.gguf", d, gguf_type_name(type));
    free(d);
    gk_err err;
    CHECK(gpt_export_gguf(m, path, type, NULL, 0, &err) == 0, "%s", err.msg);
    gpt_free(m);
    return path;
}

/* f = sum_i sin(i) logits_i over [QB_, QT_] tokens; with backward, the adapters' gradients (pm->grads). */
static double qobjective(gpt_model *m, int backward) {
    size_t N = QB_ * QT_, V = (size_t)m->cfg.vocab_size, C = (size_t)m->cfg.n_embd;
    int32_t tok[QB_ * QT_];
    for (size_t i = 0; i < N; i++) tok[i] = (int32_t)((i * 37 + 11) % V);
    gpt_forward(m, tok, QB_, QT_);
    float *d = kern_alloc(m->be, N * V * sizeof(float));
    gpt_lm_head_fwd(m, d, gpt_hidden(m), N);
    float *lg = dl(m, d, N * V), *w = malloc(N * V * sizeof(float));
    double f = 0;
    for (size_t i = 0; i < N * V; i++) { w[i] = (float)sin((double)i); f += (double)w[i] * lg[i]; }
    if (backward) {
        float *dh = kern_alloc(m->be, N * C * sizeof(float));
        kern_zero(m->be, dh, N * C * sizeof(float));
        kern_upload(m->be, d, w, N * V * sizeof(float));
        gpt_lm_head_bwd(m, dh, d, gpt_hidden(m), N);
        gpt_backward(m, dh);
        kern_free(m->be, dh);
    }
    kern_free(m->be, d);
    free(w); free(lg);
    return f;
}

static void qlora_attach(gpt_model *m) {
    gk_err err;
    unsigned t;
    CHECK(gpt_lora_parse_targets(&m->cfg, "all-linear", &t, &err) == 0, "%s", err.msg);
    gpt_lora_config c = lcfg(3, t);
    CHECK(gpt_lora_attach(m, &c, 31, &err) == 0, "%s", err.msg);
    randomize_b(m, 41);
    for (int g = 0; g < GPT_NGROUPS; g++) gpt_set_trainable(m, g, 0);
    gpt_alloc_grads(m->lora->pm);
    gpt_zero_grads(m->lora->pm);
}

static const int QTYPES[] = {GGUF_Q8_0, GGUF_Q4_0, GGUF_Q4_K};

static void test_qlora_matches_dequantized(void) {
    for (size_t ti = 0; ti < 3; ti++) {
        char path[4096];
        qlora_write(QTYPES[ti], path, sizeof path);
        gpt_model *q = qlora_load(QTYPES[ti], 1, path), *f = qlora_load(QTYPES[ti], 0, path);
        const char *tn = gguf_type_name(QTYPES[ti]);
        /* the base stays in its blocks: no fp32 copy of the block matrices or the head */
        int kept = q->qw != NULL;
        for (int l = 0; l < q->cfg.n_layer && kept; l++)
            for (int role = GPT_ROLE_QKV_W; role <= GPT_ROLE_FCPROJ_W; role++) {
                const gpt_param *p = gpt_param_role(q, role, l);
                if (p && p->ndim == 2) kept &= p->offset == GPT_NO_OFFSET && gpt_param_qweight(q, p) != NULL;
            }
        CHECK(kept, "%s: the block matrices are kept quantized", tn);
        qlora_attach(q);
        qlora_attach(f);
        CHECK(q->qw != NULL && q->grads == NULL, "%s: attaching adapters keeps the base quantized, with no gradients", tn);
        CHECK(gpt_params_checksum(q) == gpt_params_checksum(f), "%s: the quantized base's checksum is its dequantized one's", tn);
        double fq = qobjective(q, 1), ff = qobjective(f, 1);
        CHECK(fabs(fq - ff) <= 1e-5 * (1 + fabs(ff)), "%s: objective %.9g over the blocks vs %.9g over fp32", tn, fq, ff);
        gpt_model *pq = q->lora->pm, *pf = f->lora->pm;
        float *gq = dl(q, pq->grads, pq->num_params), *gf = dl(f, pf->grads, pf->num_params);
        double gmax = 0, worst = 0;
        for (size_t i = 0; i < pq->num_params; i++) gmax = fmax(gmax, fabs(gf[i]));
        for (size_t i = 0; i < pq->num_params; i++) worst = fmax(worst, fabs(gq[i] - gf[i]));
        CHECK(gmax > 0 && worst <= 1e-4 * gmax + 1e-6, "%s: adapter gradients differ by %g (largest %g)", tn, worst, gmax);
        printf("  %s: |df| %.3g (f %.6g), max |dgrad| %.3g of %.3g\n", tn, fabs(fq - ff), ff, worst, gmax);
        free(gq); free(gf);
        /* DPO's reference: the adapters off leave the base */
        q->lora->enabled = 0; f->lora->enabled = 0;
        double bq = qobjective(q, 0), bf = qobjective(f, 0);
        CHECK(fabs(bq - bf) <= 1e-5 * (1 + fabs(bf)) && fabs(bq - fq) > 1e-3, "%s: adapters off %.9g vs %.9g", tn, bq, bf);
        q->lora->enabled = 1;
        /* a view (PPO's reference and value models) shares the blocks */
        gpt_model *v = gpt_create_view(q);
        CHECK(v->qw == q->qw && v->params == q->params, "%s: a view shares the quantized base", tn);
        double fv = qobjective(v, 0);
        CHECK(fabs(fv - bq) <= 1e-6 * (1 + fabs(bq)), "%s: the view is the base: %.9g vs %.9g", tn, fv, bq);
        gpt_free(v);
        /* merging dequantizes: the merged fp32 model computes base + adapter */
        gpt_lora_merge(q);
        CHECK(q->qw == NULL && q->lora == NULL, "%s: merge leaves an fp32 model without adapters", tn);
        f->lora->enabled = 1;
        double fm = qobjective(q, 0);
        CHECK(fabs(fm - ff) <= 1e-4 * (1 + fabs(ff)), "%s: merged %.9g vs unmerged %.9g", tn, fm, ff);
        gpt_free(q); gpt_free(f);
        remove(path);
    }
}

/* The adapters' gradients through a quantized base by central differences (float, h = 1e-2: f is O(10), the
 * same criterion as test_gradients_finite_differences). */
static void test_qlora_finite_differences(void) {
    for (size_t ti = 0; ti < 3; ti++) {
        char path[4096];
        qlora_write(QTYPES[ti], path, sizeof path);
        gpt_model *m = qlora_load(QTYPES[ti], 1, path);
        qlora_attach(m);
        gpt_model *pm = m->lora->pm;
        qobjective(m, 1);
        float *g = dl(m, pm->grads, pm->num_params), *p = dl(m, pm->params, pm->num_params);
        int checked = 0;
        for (size_t e = 0; e < pm->n_table; e += 3) {   /* every third tensor: A and B of each kind across layers */
            const gpt_param *tp = &pm->table[e];
            size_t idx[2] = {tp->numel / 3, tp->numel - 1};
            for (int k = 0; k < 2; k++) {
                size_t i = tp->offset + idx[k];
                double fd = central_diff(m, pm, p, i, 1e-2f, qobjective);
                if (fabs(fd - g[i]) / (fabs(fd) + 1e-1) > 2e-2)
                    tl_fail_at(__FILE__, __LINE__, "%s %s[%zu]: analytic %g, central difference %g", gguf_type_name(QTYPES[ti]),
                               tp->name, idx[k], g[i], fd);
                checked++;
            }
        }
        CHECK(checked >= 8, "checked %d entries", checked);
        free(g); free(p);
        gpt_free(m);
        remove(path);
    }
}

static void test_bad_configs(void) {
    gpt_model *g = make(0, 1), *l = make(1, 1);
    gk_err err;
    unsigned t;
    CHECK(gpt_lora_parse_targets(&g->cfg, "q,v", &t, &err) != 0 && strstr(err.msg, "'q'") && strstr(err.msg, "c_attn"),
          "llama name on gpt2: %s", err.msg);
    CHECK(gpt_lora_parse_targets(&l->cfg, "q,bogus", &t, &err) != 0 && strstr(err.msg, "bogus"), "unknown: %s", err.msg);
    CHECK(gpt_lora_parse_targets(&l->cfg, "q_proj,o", &t, &err) == 0 && t == ((1u << GPT_LORA_Q) | (1u << GPT_LORA_O)), "aliases");
    gpt_lora_config c = lcfg(21, 1u << GPT_LORA_K);   /* k is 20 wide */
    CHECK(gpt_lora_attach(l, &c, 1, &err) != 0 && strstr(err.msg, "larger than target 'k'"), "rank too large: %s", err.msg);
    c = lcfg(0, 1u << GPT_LORA_Q);
    CHECK(gpt_lora_attach(l, &c, 1, &err) != 0, "rank 0");
    c = lcfg(2, 1u << GPT_LORA_Q); c.dropout = 1.0f;
    CHECK(gpt_lora_attach(l, &c, 1, &err) != 0 && strstr(err.msg, "dropout"), "dropout 1 refused: %s", err.msg);
    CHECK(l->lora == NULL && g->lora == NULL, "nothing attached");
    gpt_free(g); gpt_free(l);
}

int main(void) {
    TL_RUN(test_fresh_adapter_is_base);
    TL_RUN(test_gradients_finite_differences);
    TL_RUN(test_merge_and_kv_cache);
    TL_RUN(test_peft_files_roundtrip);
    TL_RUN(test_matches_peft);
    TL_RUN(test_dropout);
    TL_RUN(test_score_adapter);
    TL_RUN(test_views);
    TL_RUN(test_bad_configs);
    TL_RUN(test_qlora_matches_dequantized);
    TL_RUN(test_qlora_finite_differences);
    return tl_summary();
}
