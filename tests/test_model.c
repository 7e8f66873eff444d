/* test_model.c: GPT-2 against PyTorch (HF transformers) fixtures, checkpoints, and safetensors validation.
 *
 * Fixtures: tests/fixtures/gpt2/, made by tests/ref/gen_gpt2_fixtures.py (float64 reference on fp32 weights).
 * Tolerances (fp32 forward/backward vs the float64 reference):
 *   logits: |d| <= 1e-5 + 1e-5 |ref|;   loss: 1e-5 relative;
 *   grads:  |d| <= 1e-4 |ref| + 1e-5 * max|ref of that tensor|   (fp32 accumulation over B*T rows)
 */
#include "model/model.h"
#include "kern/kern.h"
#include "testlib.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define FIX "tests/fixtures/gpt2"

/* ---------------------------------------------------------------- helpers */

/* Host copy of n floats of device memory (tests run on CPU backends, whose memory is host memory: any
 * backend can copy it out; g_mem is one kept for that). */
static kern_backend *g_mem;
static float *download(const float *dev, size_t n) {
    float *h = malloc((n ? n : 1) * sizeof(float));
    kern_download(g_mem, h, dev, n * sizeof(float));
    return h;
}

/* Writes a raw safetensors file: 8-byte length, header text as given, then `data_len` bytes of pattern. */
#define ST_AUTO UINT64_MAX   /* claimed header length = the header text's length */
static void write_raw_st(const char *path, const char *header, uint64_t claimed_len, size_t data_len) {
    FILE *fp = fopen(path, "wb");
    if (claimed_len == ST_AUTO) claimed_len = strlen(header);
    uint8_t lb[8];
    for (int i = 0; i < 8; i++) lb[i] = (uint8_t)(claimed_len >> (8 * i));
    fwrite(lb, 1, 8, fp);
    fwrite(header, 1, strlen(header), fp);
    for (size_t i = 0; i < data_len; i++) fputc((int)(i * 7 & 0xff), fp);
    fclose(fp);
}

static void copy_file(const char *from, const char *to) {
    char *d; size_t n; gk_err err;
    if (gk_read_file(from, &d, &n, &err)) { CHECK(0, "read %s: %s", from, err.msg); return; }
    gk_write_file_atomic(to, d, n, &err);
    free(d);
}

/* Runs the fixture batch through model + LM head + mean cross-entropy and backward. Returns the loss;
 * logits_out (if non-NULL) receives a malloc'd host copy [B*T*V]. */
static double run_fixture_batch(gpt_model *m, float **logits_out) {
    st_file io; gk_err err;
    if (st_open(&io, tl_path(FIX "/io.safetensors"), &err)) { CHECK(0, "%s", err.msg); return NAN; }
    size_t n = 0, nt = 0;
    int32_t *tok = st_load_i32(&io, "tokens", &n), *tgt = st_load_i32(&io, "targets", &nt);
    const st_tensor *tt = st_find(&io, "tokens");
    CHECK(tok && tgt && tt && tt->ndim == 2, "fixture io tensors");
    if (!tok || !tgt || !tt) { st_close(&io); return NAN; }
    size_t B = tt->shape[0], T = tt->shape[1], BT = B * T, C = (size_t)m->cfg.n_embd, V = (size_t)m->cfg.vocab_size;
    CHECK(gpt_check_tokens(m, tok, B, T, &err) == 0, "tokens: %s", err.msg);
    gpt_alloc_grads(m);
    gpt_zero_grads(m);
    gpt_forward(m, tok, B, T);
    float *logits = kern_alloc(m->be, BT * V * sizeof(float)), *dlogits = kern_alloc(m->be, BT * V * sizeof(float));
    float *loss = kern_alloc(m->be, BT * sizeof(float)), *dloss = kern_alloc(m->be, BT * sizeof(float));
    int32_t *dtgt = kern_alloc(m->be, BT * sizeof(int32_t));
    float *dh = kern_alloc(m->be, BT * C * sizeof(float));
    float *ones = malloc(BT * sizeof(float));
    for (size_t i = 0; i < BT; i++) ones[i] = 1.0f / (float)BT;   /* mean over rows */
    kern_upload(m->be, dloss, ones, BT * sizeof(float));
    kern_upload(m->be, dtgt, tgt, BT * sizeof(int32_t));
    gpt_lm_head_fwd(m, logits, gpt_hidden(m), BT);
    if (logits_out) *logits_out = download(logits, BT * V);
    kern_xent_fwd_bwd(m->be, loss, dlogits, logits, dtgt, dloss, BT, V);
    float *hl = download(loss, BT);
    double total = 0;
    for (size_t i = 0; i < BT; i++) total += hl[i];
    total /= (double)BT;
    gpt_lm_head_bwd(m, dh, dlogits, gpt_hidden(m), BT);
    gpt_backward(m, dh);
    free(hl); free(ones); free(tok); free(tgt);
    kern_free(m->be, logits); kern_free(m->be, dlogits); kern_free(m->be, loss); kern_free(m->be, dloss); kern_free(m->be, dtgt); kern_free(m->be, dh);
    st_close(&io);
    return total;
}

/* Compares every gradient (or, if only_group >= 0, checks groups: matching fixture if trainable, zero if not). */
static double compare_grads(gpt_model *m, int check_frozen_zero) {
    st_file g; gk_err err;
    if (st_open(&g, tl_path(FIX "/grads.safetensors"), &err)) { CHECK(0, "%s", err.msg); return INFINITY; }
    float *all = download(m->grads, m->num_params);
    double worst_rel = 0;
    CHECK(g.n == m->n_table, "fixture has %zu grads, model %zu params", g.n, m->n_table);
    for (size_t i = 0; i < m->n_table; i++) {
        const gpt_param *p = &m->table[i];
        size_t n = 0;
        float *want = st_load_f32(&g, p->name, &n);
        CHECK(want && n == p->numel, "fixture grad %s", p->name);
        if (!want || n != p->numel) { free(want); continue; }
        const float *got = all + p->offset;
        if (check_frozen_zero && !m->trainable[p->group]) {
            for (size_t k = 0; k < n; k++) if (got[k] != 0) { CHECK(0, "frozen %s has grad %g at %zu", p->name, got[k], k); break; }
        } else {
            double mx = 0;
            for (size_t k = 0; k < n; k++) mx = fmax(mx, fabs(want[k]));
            char what[128];
            snprintf(what, sizeof what, "grad %s", p->name);
            CHECK_ARRAYS(what, got, want, n, 1e-5 * mx + 1e-9, 1e-4);
            for (size_t k = 0; k < n; k++) worst_rel = fmax(worst_rel, fabs(got[k] - want[k]) / (mx + 1e-30));
        }
        free(want);
    }
    free(all);
    st_close(&g);
    return worst_rel;
}

/* ---------------------------------------------------------------- tests */

static void test_config_names(void) {
    gpt_config c; gk_err err;
    gpt_config_default(&c);
    CHECK(c.n_layer == 6 && c.n_head == 6 && c.n_embd == 384 && c.vocab_size == 50257 && c.n_ctx == 1024, "default");
    struct { const char *n; int L, H, C; } cases[] = {
        {"d6", 6, 6, 384}, {"d12", 12, 12, 768}, {"d24", 24, 16, 1024}, {"d36", 36, 20, 1280}, {"d48", 48, 25, 1600},
        {"d2", 2, 2, 128}, {"d7", 7, 7, 448},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        c.vocab_size = 123; c.n_ctx = 77;
        CHECK(gpt_config_from_name(&c, cases[i].n, &err) == 0, "%s: %s", cases[i].n, err.msg);
        CHECK(c.n_layer == cases[i].L && c.n_head == cases[i].H && c.n_embd == cases[i].C && c.vocab_size == 123 &&
              c.n_ctx == 77, "%s gave %d/%d/%d", cases[i].n, c.n_layer, c.n_head, c.n_embd);
        CHECK(gpt_config_validate(&c, &err) == 0, "%s invalid: %s", cases[i].n, err.msg);
    }
    CHECK(gpt_config_from_name(&c, "gpt5", &err) != 0 && strstr(err.msg, "gpt5"), "bad name: %s", err.msg);
    CHECK(gpt_config_from_name(&c, "d", &err) != 0, "bare d accepted");
    CHECK(gpt_config_from_name(&c, "d0", &err) != 0, "d0 accepted");
    gpt_config_default(&c);
    c.n_embd = 100; c.n_head = 3;
    CHECK(gpt_config_validate(&c, &err) != 0 && strstr(err.msg, "divisible"), "100/3: %s", err.msg);
}

static void test_param_table(void) {
    gpt_config c;
    gpt_config_default(&c);
    gk_err err;
    gpt_config_from_name(&c, "d12", &err);
    /* GPT-2 small: 124,439,808 parameters (with the tied head counted once). */
    gpt_model *m = gpt_create(&c);
    CHECK(m->num_params == 124439808, "d12 has %zu params", m->num_params);
    CHECK(m->n_table == 2 + 12 * 12 + 2, "table size %zu", m->n_table);
    gpt_free(m);
    c.n_layer = 2; c.n_head = 3; c.n_embd = 24; c.vocab_size = 97; c.n_ctx = 16; c.score_head = 1;
    m = gpt_create(&c);
    size_t off = 0;
    for (size_t i = 0; i < m->n_table; i++) {
        const gpt_param *p = &m->table[i];
        CHECK(p->offset == off, "%s offset %zu want %zu", p->name, p->offset, off);
        off += p->numel;
        int mat = p->ndim == 2 && strcmp(p->name, "wpe.weight");
        CHECK(p->decay == mat, "%s decay %d", p->name, p->decay);
    }
    CHECK(off == m->num_params, "sum of numel");
    const gpt_param *p = gpt_find_param(m, "h.1.mlp.c_fc.weight");
    CHECK(p && p->shape[0] == 24 && p->shape[1] == 96 && p->group == GPT_GROUP_BLOCKS, "c_fc shape");
    p = gpt_find_param(m, "score.weight");
    CHECK(p && p->shape[0] == 1 && p->shape[1] == 24 && p->group == GPT_GROUP_SCORE && p == &m->table[m->n_table - 1], "score");
    p = gpt_find_param(m, "wpe.weight");
    CHECK(p && p->shape[0] == 16 && p->shape[1] == 24 && p->group == GPT_GROUP_EMBED && !p->decay, "wpe");
    gpt_layer_ptrs lp = gpt_layer(m->params, m, 1);
    CHECK(lp.fcproj_b == gpt_param_ptr(m, "h.1.mlp.c_proj.bias") && lp.ln1_w == gpt_param_ptr(m, "h.1.ln_1.weight") &&
          lp.qkv_w == gpt_param_ptr(m, "h.1.attn.c_attn.weight"), "gpt_layer pointers");
    CHECK(gpt_param_ptr(m, "nope") == NULL, "absent name");
    gpt_free(m);
}

/* A config the table can size but this build cannot run: LLaMA-shaped (RMSNorm, RoPE, SwiGLU, GQA, no biases,
 * untied head). */
static void llama_like(gpt_config *c) {
    gpt_config_default(c);
    c->arch = GPT_ARCH_LLAMA; c->n_layer = 2; c->n_head = 4; c->n_kv_head = 2; c->n_embd = 32; c->n_inner = 88;
    c->vocab_size = 50; c->n_ctx = 16; c->norm = GPT_NORM_RMSNORM; c->pos = GPT_POS_ROPE; c->act = GPT_ACT_SWIGLU;
    c->bias = 0; c->tied_head = 0;
}

static void test_table_from_arch_fields(void) {
    gpt_config c;
    gpt_config_default(&c);
    c.n_layer = 2; c.n_head = 3; c.n_embd = 24; c.vocab_size = 97; c.n_ctx = 16;
    gpt_model *m = gpt_create_table(&c, NULL);
    size_t base_n = m->n_table, base_p = m->num_params;
    CHECK(base_n == 2 + 2 * 12 + 2 && m->params == NULL, "GPT-2 table %zu", base_n);
    gpt_free(m);
    /* untied head: one more tensor, lm_head.weight [V,C] in the final group, found by the LM_HEAD role */
    c.tied_head = 0;
    m = gpt_create_table(&c, NULL);
    const gpt_param *h = gpt_find_param(m, "lm_head.weight");
    CHECK(m->n_table == base_n + 1 && m->num_params == base_p + 97 * 24, "untied: %zu tensors", m->n_table);
    CHECK(h && h->shape[0] == 97 && h->shape[1] == 24 && h->group == GPT_GROUP_FINAL && h->decay && h->layer == -1,
          "lm_head entry");
    CHECK(gpt_param_role(m, GPT_ROLE_LM_HEAD, -1) == h && gpt_param_role(m, GPT_ROLE_EMBED_TOK, -1) != h, "untied role");
    gpt_free(m);
    /* no biases: the 4 linear and 2 LayerNorm biases per layer and ln_f.bias go */
    c.tied_head = 1; c.bias = 0;
    m = gpt_create_table(&c, NULL);
    CHECK(m->n_table == base_n - 2 * 6 - 1, "no-bias table %zu", m->n_table);
    CHECK(!gpt_find_param(m, "h.0.attn.c_attn.bias") && !gpt_find_param(m, "ln_f.bias") &&
          !gpt_param_role(m, GPT_ROLE_FC_B, 1) && gpt_param_role(m, GPT_ROLE_FC_W, 1), "biases dropped");
    size_t want = base_p - 2 * (3 * 24 + 24 + 96 + 24 + 2 * 24) - 24;
    CHECK(m->num_params == want, "no-bias params %zu want %zu", m->num_params, want);
    gpt_free(m);
    /* FFN width from n_inner */
    c.bias = 1; c.n_inner = 40;
    m = gpt_create_table(&c, NULL);
    const gpt_param *fc = gpt_param_role(m, GPT_ROLE_FC_W, 1), *fb = gpt_param_role(m, GPT_ROLE_FC_B, 1);
    const gpt_param *fp = gpt_param_role(m, GPT_ROLE_FCPROJ_W, 0);
    CHECK(fc && fc->shape[0] == 24 && fc->shape[1] == 40 && fb && fb->shape[0] == 40 && fp && fp->shape[0] == 40 &&
          fp->shape[1] == 24, "n_inner widths");
    gpt_free(m);
    /* LLaMA-shaped: no wpe, qkv = (NH + 2 NKV) hs wide, a gate, RMSNorm without bias, untied head */
    llama_like(&c);
    m = gpt_create_table(&c, NULL);
    const gpt_param *qkv = gpt_param_role(m, GPT_ROLE_QKV_W, 0), *g = gpt_param_role(m, GPT_ROLE_GATE_W, 1);
    CHECK(!gpt_param_role(m, GPT_ROLE_EMBED_POS, -1) && !gpt_find_param(m, "wpe.weight"), "rope: no wpe");
    /* nn.Linear layout [out, in], HF names without "model." */
    CHECK(qkv && qkv->shape[1] == 32 && qkv->shape[0] == (4 + 2 * 2) * 8, "gqa qkv width %zu", qkv ? qkv->shape[0] : 0);
    CHECK(g && g->shape[1] == 32 && g->shape[0] == 88 && !strcmp(g->name, "layers.1.mlp.gate_proj.weight"), "swiglu gate");
    CHECK(gpt_find_param(m, "embed_tokens.weight") && gpt_find_param(m, "norm.weight") &&
          gpt_find_param(m, "layers.0.self_attn.o_proj.weight"), "llama names");
    CHECK(m->n_table == 1 + 2 * 7 + 1 + 1, "llama-like table %zu", m->n_table);
    size_t lp = 2 * 32 + 32 * 64 + 32 * 32 + 3 * 32 * 88;
    CHECK(m->num_params == 50 * 32 + 2 * lp + 32 + 50 * 32, "llama-like params %zu", m->num_params);
    gpt_free(m);
}

static void test_roles(void) {
    gpt_config c;
    gpt_config_default(&c);
    c.n_layer = 3; c.n_head = 2; c.n_embd = 8; c.vocab_size = 13; c.n_ctx = 6; c.score_head = 1;
    gpt_model *m = gpt_create(&c);
    /* every entry is found by its own (role, layer), and names agree with roles */
    for (size_t i = 0; i < m->n_table; i++) {
        const gpt_param *p = &m->table[i];
        const gpt_param *q = gpt_param_role(m, p->role, p->layer);
        CHECK(q == p, "%s: role %d layer %d", p->name, p->role, p->layer);
        CHECK((p->layer >= 0) == (strncmp(p->name, "h.", 2) == 0), "%s layer %d", p->name, p->layer);
    }
    const gpt_param *wte = gpt_find_param(m, "wte.weight");
    CHECK(gpt_param_role(m, GPT_ROLE_EMBED_TOK, -1) == wte && gpt_param_role(m, GPT_ROLE_LM_HEAD, -1) == wte, "tied head is wte");
    CHECK(gpt_param_role(m, GPT_ROLE_SCORE, -1) == gpt_find_param(m, "score.weight"), "score");
    CHECK(gpt_param_role(m, GPT_ROLE_PROJ_B, 2) == gpt_find_param(m, "h.2.attn.c_proj.bias"), "layer role");
    CHECK(gpt_param_role(m, GPT_ROLE_LNF_W, -1) == gpt_find_param(m, "ln_f.weight"), "ln_f");
    CHECK(gpt_param_role(m, GPT_ROLE_GATE_W, 0) == NULL && gpt_param_role(m, GPT_ROLE_QKV_W, -1) == NULL, "absent roles");
    CHECK(gpt_role_ptr(m->params, m, GPT_ROLE_LM_HEAD, -1) == m->params + wte->offset && !gpt_role_ptr(NULL, m, GPT_ROLE_LM_HEAD, -1),
          "role pointers");
    gpt_layer_ptrs lp = gpt_layer(m->params, m, 2);
    CHECK(lp.fc_b == gpt_param_ptr(m, "h.2.mlp.c_fc.bias") && lp.ln2_w == gpt_param_ptr(m, "h.2.ln_2.weight") &&
          lp.gate_w == NULL, "gpt_layer by roles");
    gpt_free(m);
}

/* Mixtures of the two families are refused by name; the dims themselves stay valid. */
static void test_unsupported_arch(void) {
    gpt_config c; gk_err err;
    llama_like(&c);
    CHECK(gpt_config_check_dims(&c, &err) == 0, "llama-like dims: %s", err.msg);
    CHECK(gpt_config_validate(&c, &err) == 0, "llama runs: %s", err.msg);
    const char *want[] = {"rmsnorm", "rope", "swiglu", "grouped-query", "bias"};
    for (int k = 0; k < 5; k++) {
        gpt_config_default(&c);
        c.n_head = 6;
        if (k == 0) c.norm = GPT_NORM_RMSNORM;
        if (k == 1) c.pos = GPT_POS_ROPE;
        if (k == 2) c.act = GPT_ACT_SWIGLU;
        if (k == 3) c.n_kv_head = 2;
        if (k == 4) c.bias = 0;
        CHECK(gpt_config_validate(&c, &err) != 0 && strstr(err.msg, want[k]) && strstr(err.msg, "not supported yet"),
              "%s: %s", want[k], err.msg);
    }
    const char *lwant[] = {"layernorm", "learned", "gelu", "biases", "head_dim"};
    for (int k = 0; k < 5; k++) {
        llama_like(&c);
        if (k == 0) c.norm = GPT_NORM_LAYERNORM;
        if (k == 1) c.pos = GPT_POS_LEARNED;
        if (k == 2) c.act = GPT_ACT_GELU_TANH;
        if (k == 3) c.bias = 1;
        if (k == 4) { c.n_embd = 36; c.n_head = 4; }   /* head_dim 9 */
        CHECK(gpt_config_validate(&c, &err) != 0 && strstr(err.msg, lwant[k]) && strstr(err.msg, "architecture llama"),
              "llama %s: %s", lwant[k], err.msg);
    }
    gpt_config_default(&c);
    c.n_kv_head = 4;   /* does not divide 6 */
    CHECK(gpt_config_check_dims(&c, &err) != 0 && strstr(err.msg, "n_kv_head"), "kv heads: %s", err.msg);
    gpt_config_default(&c);
    c.tied_head = 0; c.n_inner = 100;   /* both run today */
    CHECK(gpt_config_validate(&c, &err) == 0, "untied, n_inner: %s", err.msg);
}

/* Sum of logits * R (R fixed): its gradient is dlogits = R, so a model's analytic gradient can be checked by
 * central differences in float on a tiny model. */
static double probe_loss(gpt_model *m, const int32_t *tok, size_t B, size_t T, const float *R, float *dR) {
    size_t N = B * T, V = (size_t)m->cfg.vocab_size;
    float *logits = kern_alloc(m->be, N * V * sizeof(float));
    gpt_forward(m, tok, B, T);
    gpt_lm_head_fwd(m, logits, gpt_hidden(m), N);
    float *hl = download(logits, N * V);
    double s = 0;
    for (size_t i = 0; i < N * V; i++) s += (double)hl[i] * R[i];
    if (dR) {
        float *dh = kern_alloc(m->be, N * (size_t)m->cfg.n_embd * sizeof(float));
        kern_upload(m->be, dR, R, N * V * sizeof(float));
        gpt_lm_head_bwd(m, dh, dR, gpt_hidden(m), N);
        gpt_backward(m, dh);
        kern_free(m->be, dh);
    }
    free(hl); kern_free(m->be, logits);
    return s;
}

/* gpt_backward's bwd_ready reports: each `from` no larger than the last, 0 at the end, one report after ln_f and
 * one per block, and grads[from, n) at each report already equal to the final gradients (the data-parallel
 * stage sends that tail while the backward goes on: a tail still written afterwards would send a partial sum). */
typedef struct { size_t n, calls, from[16]; float *tail[16]; const gpt_model *m; } ready_log;
static void ready_record(void *ctx, size_t from) {
    ready_log *r = ctx;
    if (r->calls >= 16) { r->calls++; return; }
    r->from[r->calls] = from;
    r->tail[r->calls] = download(r->m->grads, r->n);   /* the whole buffer; only [from, n) is compared */
    r->calls++;
}
static void check_ready_tails(int tied) {
    gpt_config c;
    gpt_config_default(&c);
    c.n_layer = 3; c.n_head = 2; c.n_embd = 8; c.vocab_size = 11; c.n_ctx = 8; c.tied_head = tied;
    gpt_model *m = gpt_create(&c);
    gpt_init_random(m, 3);
    gpt_alloc_grads(m);
    size_t B = 2, T = 5, N = B * T, V = 11;
    int32_t tok[10] = {1, 4, 7, 2, 9, 3, 3, 10, 0, 5};
    float *R = malloc(N * V * sizeof(float)), *dR = kern_alloc(m->be, N * V * sizeof(float));
    gk_rng rng; gk_rng_seed(&rng, 9);
    for (size_t i = 0; i < N * V; i++) R[i] = gk_rng_normal(&rng);
    ready_log r = { .n = m->num_params, .m = m };
    gpt_zero_grads(m);
    m->bwd_ready = ready_record; m->bwd_ready_ctx = &r;
    probe_loss(m, tok, B, T, R, dR);
    m->bwd_ready = NULL; m->bwd_ready_ctx = NULL;
    float *final = download(m->grads, m->num_params);
    CHECK(r.calls == (size_t)c.n_layer + 2, "tied %d: %zu reports for %d layers", tied, r.calls, c.n_layer);
    size_t h_last = gpt_param_role(m, GPT_ROLE_LN1_W, c.n_layer - 1)->offset;   /* the last block's first tensor */
    for (size_t k = 0; k < r.calls && k < 16; k++) {
        CHECK(k == 0 || r.from[k] <= r.from[k - 1], "tied %d: from grew at report %zu", tied, k);
        size_t bad = r.n;
        for (size_t i = r.from[k]; i < r.n; i++) if (r.tail[k][i] != final[i]) { bad = i; break; }
        CHECK(bad == r.n, "tied %d: report %zu (from %zu) had grads[%zu] = %g, final %g", tied, k, r.from[k], bad,
              bad < r.n ? r.tail[k][bad] : 0.0, bad < r.n ? final[bad] : 0.0);
        free(r.tail[k]);
    }
    CHECK(r.calls >= 2 && r.from[r.calls - 1] == 0, "tied %d: the last report is not 0", tied);
    /* the tail really grows block by block (a report of n each time would pass the equality trivially) */
    CHECK(r.calls >= 3 && r.from[1] <= h_last && r.from[r.calls - 2] > 0, "tied %d: from %zu after the last block (its "
          "first tensor at %zu), %zu after the first", tied, r.from[1], h_last, r.from[r.calls - 2]);
    free(final); free(R); kern_free(m->be, dR);
    gpt_free(m);
}
static void test_backward_ready_tails(void) { check_ready_tails(1); check_ready_tails(0); }

static void test_untied_wide_ffn(void) {
    /* GPT-2 with n_inner != 4C and an untied head: gradients by finite differences, the KV path against the full
     * forward, and a checkpoint round trip (tie_word_embeddings false, lm_head.weight, n_inner kept). */
    gpt_config c; gk_err err;
    gpt_config_default(&c);
    c.n_layer = 2; c.n_head = 2; c.n_embd = 8; c.vocab_size = 11; c.n_ctx = 8; c.n_inner = 20; c.tied_head = 0;
    gpt_model *m = gpt_create(&c);
    gpt_init_random(m, 11);
    gpt_alloc_grads(m);
    /* 3x GPT-2's init, so every tensor's gradient is well above float noise while the model stays smooth
     * enough for central differences with step 1e-2 (agreement seen: ~1e-3 relative) */
    float *hp = download(m->params, m->num_params);
    for (size_t i = 0; i < m->num_params; i++) hp[i] *= 3.0f;
    kern_upload(m->be, m->params, hp, m->num_params * sizeof(float));
    size_t B = 2, T = 5, N = B * T, V = 11;
    int32_t tok[10] = {1, 4, 7, 2, 9, 3, 3, 10, 0, 5};
    float *R = malloc(N * V * sizeof(float)), *dR = kern_alloc(m->be, N * V * sizeof(float));
    gk_rng rng; gk_rng_seed(&rng, 5);
    for (size_t i = 0; i < N * V; i++) R[i] = gk_rng_normal(&rng);
    gpt_zero_grads(m);
    probe_loss(m, tok, B, T, R, dR);
    float *g = download(m->grads, m->num_params);
    const char *names[] = {"lm_head.weight", "wte.weight", "h.0.mlp.c_fc.weight", "h.1.mlp.c_fc.bias", "h.0.mlp.c_proj.weight",
                           "h.1.attn.c_attn.weight", "wpe.weight"};
    for (size_t k = 0; k < sizeof names / sizeof names[0]; k++) {
        const gpt_param *p = gpt_find_param(m, names[k]);
        CHECK(p != NULL, "%s", names[k]);
        if (!p) continue;
        for (size_t j = 0; j < 3; j++) {
            size_t at = p->offset + (j * 7919) % p->numel;
            float keep = hp[at], e = 1e-2f;
            hp[at] = keep + e; kern_upload(m->be, m->params, hp, m->num_params * sizeof(float));
            double lp = probe_loss(m, tok, B, T, R, NULL);
            hp[at] = keep - e; kern_upload(m->be, m->params, hp, m->num_params * sizeof(float));
            double lm = probe_loss(m, tok, B, T, R, NULL);
            hp[at] = keep; kern_upload(m->be, m->params, hp, m->num_params * sizeof(float));
            double fd = (lp - lm) / (2.0 * e);
            CHECK(fabs(fd - g[at]) <= 1e-2 * fabs(fd) + 1e-2, "%s[%zu]: fd %.6g analytic %.6g", p->name, at - p->offset, fd, g[at]);
        }
    }
    /* KV prefill of both rows == full forward */
    gpt_forward(m, tok, B, T);
    float *full = download(gpt_hidden(m), N * 8);
    gpt_kv *kv = gpt_kv_new(m, 2, 0);
    size_t slots[2] = {1, 0};
    float *cached = download(gpt_forward_kv(m, kv, slots, tok, B, T), N * 8);
    CHECK_ARRAYS("kv vs full (n_inner 20)", cached, full, N * 8, 1e-5, 1e-5);
    gpt_kv_free(kv);
    /* checkpoint */
    char *d = tl_tmpdir("model");
    CHECK(gpt_save(m, d, NULL, &err) == 0, "%s", err.msg);
    char *cp = gk_path_join(d, "config.json"), *txt = NULL; size_t len;
    CHECK(gk_read_file(cp, &txt, &len, &err) == 0, "%s", err.msg);
    CHECK(txt && strstr(txt, "\"tie_word_embeddings\":\tfalse") && strstr(txt, "\"n_inner\":\t20"), "config.json: %s", txt);
    char *mp = gk_path_join(d, "model.safetensors");
    st_file f;
    if (!st_open(&f, mp, &err)) {
        const st_tensor *t = st_find(&f, "lm_head.weight");
        CHECK(t && t->shape[0] == 11 && t->shape[1] == 8 && !st_find(&f, "transformer.lm_head.weight"), "lm_head in file");
        st_close(&f);
    } else CHECK(0, "%s", err.msg);
    gpt_model *m2 = gpt_load(d, NULL, &err);
    CHECK(m2 != NULL, "reload: %s", err.msg);
    if (m2) {
        CHECK(!memcmp(&m->cfg, &m2->cfg, sizeof c) && m2->num_params == m->num_params, "config after round trip");
        float *h2 = download(m2->params, m2->num_params);
        CHECK(!memcmp(hp, h2, m->num_params * sizeof(float)), "params after round trip");
        free(h2);
        gpt_free(m2);
    }
    free(txt); free(cp); free(mp); free(d);
    free(full); free(cached);
    free(g); free(hp); free(R); kern_free(m->be, dR);
    gpt_free(m);
}

static void test_fixture_logits_loss_grads(void) {
    gk_err err;
    char *tok = NULL;
    gpt_model *m = gpt_load(tl_path(FIX "/model"), &tok, &err);
    CHECK(m != NULL, "load HF checkpoint: %s", err.msg);
    if (!m) return;
    CHECK(tok == NULL, "no tokenizer recorded by HF");
    CHECK(m->cfg.n_layer == 2 && m->cfg.n_head == 3 && m->cfg.n_embd == 24 && m->cfg.vocab_size == 97 &&
          m->cfg.n_ctx == 16 && !m->cfg.score_head, "config");
    float *logits = NULL;
    double loss = run_fixture_batch(m, &logits);
    st_file io;
    if (st_open(&io, tl_path(FIX "/io.safetensors"), &err)) { CHECK(0, "%s", err.msg); gpt_free(m); return; }
    size_t n;
    float *want = st_load_f32(&io, "logits", &n), *wl = st_load_f32(&io, "loss", NULL);
    double dl = CHECK_ARRAYS("logits", logits, want, n, 1e-5, 1e-5);
    CHECK_CLOSE(loss, wl[0], 0, 1e-5, "loss");
    double dg = compare_grads(m, 0);
    printf("  logits max |diff| %.2e, loss %.7f vs %.7f, grads max |diff|/max|ref| %.2e\n", dl, loss, wl[0], dg);
    free(want); free(wl); free(logits);
    st_close(&io);
    gpt_free(m);
}

static void test_fixture_every_kern_backend(void) {
    /* The same fixture on the reference backend and on the cpu backend with every GEMM library in the build
     * (models take the process defaults, here set per run; the default may be any of them). */
    kern_backend_opts saved;
    kern_backend_opts_default(&saved);
    kern_backend_opts runs[4] = {{KERN_KIND_REF, KERN_GEMM_BUILTIN, KERN_PREC_FP32},
                                 {KERN_KIND_CPU, KERN_GEMM_OPENBLAS, KERN_PREC_FP32},
                                 {KERN_KIND_CPU, KERN_GEMM_ONEDNN, KERN_PREC_FP32},
                                 {KERN_KIND_CPU, KERN_GEMM_BUILTIN, KERN_PREC_FP32}};
    for (int i = 0; i < 4; i++) {
        if (!kern_gemm_present(runs[i].gemm)) { printf("  %s: not in this build\n", kern_gemm_name(runs[i].gemm)); continue; }
        kern_backend_set_defaults(&runs[i]);
        kern_backend *be = kern_backend_create(NULL, NULL);
        printf("  kern backend %s:\n", kern_backend_name(be));
        kern_backend_free(be);
        test_fixture_logits_loss_grads();
    }
    kern_backend_set_defaults(&saved);
}

static void test_shapes_and_reuse(void) {
    /* Forward at other shapes (activation buffers grow), then the fixture again: same answer.
     * Also: a B=1 batch of row 0 gives row 0's hidden states of the B=2 batch (rows are independent). */
    gk_err err;
    gpt_model *m = gpt_load(tl_path(FIX "/model"), NULL, &err);
    CHECK(m != NULL, "%s", err.msg);
    if (!m) return;
    float *l1 = NULL, *l2 = NULL;
    double a = run_fixture_batch(m, &l1);
    float *g1 = download(m->grads, m->num_params);
    int32_t toks[3 * 16];
    for (int i = 0; i < 48; i++) toks[i] = (i * 31 + 5) % 97;
    gpt_forward(m, toks, 1, 16);
    gpt_forward(m, toks, 3, 16);
    gpt_forward(m, toks, 3, 5);
    double b = run_fixture_batch(m, &l2);
    float *g2 = download(m->grads, m->num_params);
    CHECK(a == b, "loss changed after other shapes: %.9g vs %.9g", a, b);
    CHECK(!memcmp(l1, l2, 2 * 13 * 97 * sizeof(float)), "logits changed after other shapes");
    CHECK(!memcmp(g1, g2, m->num_params * sizeof(float)), "grads changed after other shapes");
    /* row independence and T-prefix causality: hidden states of the first 7 tokens of row 1 */
    st_file io;
    if (!st_open(&io, tl_path(FIX "/io.safetensors"), &err)) {
        int32_t *tk = st_load_i32(&io, "tokens", NULL);
        size_t C = 24;
        gpt_forward(m, tk, 2, 13);
        float *h2 = download(gpt_hidden(m), 2 * 13 * C);
        gpt_forward(m, tk + 13, 1, 7);
        float *h1 = download(gpt_hidden(m), 7 * C);
        CHECK_ARRAYS("causal prefix of row 1", h1, h2 + 13 * C, 7 * C, 1e-5, 1e-5);
        free(h1); free(h2); free(tk);
        st_close(&io);
    }
    free(l1); free(l2); free(g1); free(g2);
    gpt_free(m);
}

static void test_frozen_groups(void) {
    gk_err err;
    gpt_model *m = gpt_load(tl_path(FIX "/model"), NULL, &err);
    CHECK(m != NULL, "%s", err.msg);
    if (!m) return;
    /* blocks frozen: embed and ln_f still exact, blocks zero */
    gpt_set_trainable(m, GPT_GROUP_BLOCKS, 0);
    run_fixture_batch(m, NULL);
    compare_grads(m, 1);
    /* only ln_f trainable */
    gpt_set_trainable(m, GPT_GROUP_EMBED, 0);
    run_fixture_batch(m, NULL);
    compare_grads(m, 1);
    /* only the blocks: lowest layer's input gradient is skipped, block grads still exact */
    gpt_set_trainable(m, GPT_GROUP_BLOCKS, 1);
    gpt_set_trainable(m, GPT_GROUP_FINAL, 0);
    run_fixture_batch(m, NULL);
    compare_grads(m, 1);
    /* everything frozen: nothing written */
    gpt_set_trainable(m, GPT_GROUP_BLOCKS, 0);
    run_fixture_batch(m, NULL);
    compare_grads(m, 1);
    gpt_free(m);
}

static void test_score_head(void) {
    /* r = h . w;  dh += dr w;  dw += sum dr h — checked on the host */
    gpt_config c;
    gpt_config_default(&c);
    c.n_layer = 1; c.n_head = 1; c.n_embd = 5; c.vocab_size = 11; c.n_ctx = 8; c.score_head = 1;
    gpt_model *m = gpt_create(&c);
    gpt_init_random(m, 7);
    gpt_alloc_grads(m);
    int32_t tk[6] = {1, 2, 3, 4, 5, 6};
    gpt_forward(m, tk, 2, 3);
    size_t N = 6, C = 5;
    float *r = kern_alloc(m->be, N * sizeof(float)), *dr = kern_alloc(m->be, N * sizeof(float)), *dh = kern_alloc(m->be, N * C * sizeof(float));
    gpt_score_head_fwd(m, r, gpt_hidden(m), N);
    float hdr[6] = {0.5f, -1, 2, 0.25f, 3, -0.5f};
    kern_upload(m->be, dr, hdr, sizeof hdr);
    gpt_score_head_bwd(m, dh, dr, gpt_hidden(m), N);
    float *h = download(gpt_hidden(m), N * C), *hr = download(r, N), *hdh = download(dh, N * C);
    const gpt_param *sp = gpt_find_param(m, "score.weight");
    float *w = download(m->params + sp->offset, C), *dw = download(m->grads + sp->offset, C);
    for (size_t i = 0; i < N; i++) {
        double s = 0;
        for (size_t k = 0; k < C; k++) { s += h[i * C + k] * w[k]; CHECK_CLOSE(hdh[i * C + k], hdr[i] * w[k], 1e-7, 1e-6, "dh"); }
        CHECK_CLOSE(hr[i], s, 1e-6, 1e-5, "r");
    }
    for (size_t k = 0; k < C; k++) {
        double s = 0;
        for (size_t i = 0; i < N; i++) s += hdr[i] * h[i * C + k];
        CHECK_CLOSE(dw[k], s, 1e-6, 1e-5, "dscore");
    }
    free(h); free(hr); free(hdh); free(w); free(dw);
    kern_free(m->be, r); kern_free(m->be, dr); kern_free(m->be, dh);
    gpt_free(m);
}

static void test_check_tokens(void) {
    gpt_config c;
    gpt_config_default(&c);
    c.n_layer = 1; c.n_head = 1; c.n_embd = 4; c.vocab_size = 10; c.n_ctx = 4;
    gpt_model *m = gpt_create(&c);
    gk_err err;
    int32_t ok[4] = {0, 9, 3, 1}, bad[4] = {0, 9, 10, 1}, neg[4] = {0, -1, 0, 0};
    CHECK(gpt_check_tokens(m, ok, 2, 2, &err) == 0, "valid tokens: %s", err.msg);
    CHECK(gpt_check_tokens(m, bad, 2, 2, &err) != 0 && strstr(err.msg, "10"), "id 10: %s", err.msg);
    CHECK(gpt_check_tokens(m, neg, 1, 4, &err) != 0 && strstr(err.msg, "-1"), "id -1: %s", err.msg);
    CHECK(gpt_check_tokens(m, ok, 1, 5, &err) != 0 && strstr(err.msg, "context"), "T > n_ctx: %s", err.msg);
    gpt_free(m);
}

static void test_checkpoint_roundtrip(void) {
    char *d = tl_tmpdir("model");
    char *ck = gk_path_join(d, "ck");
    gpt_config c;
    gpt_config_default(&c);
    c.n_layer = 3; c.n_head = 5; c.n_embd = 35; c.vocab_size = 211; c.n_ctx = 19; c.score_head = 1; c.ln_eps = 1e-5f;
    gpt_model *m = gpt_create(&c);
    gpt_init_random(m, 42);
    gk_err err;
    CHECK(gpt_save(m, ck, "tok/my tokenizer.json", &err) == 0, "save: %s", err.msg);
    char *tok = NULL;
    gpt_model *m2 = gpt_load(ck, &tok, &err);
    CHECK(m2 != NULL, "load: %s", err.msg);
    if (m2) {
        CHECK(!memcmp(&m->cfg, &m2->cfg, sizeof c), "config differs after round trip");
        CHECK(m2->num_params == m->num_params, "num_params");
        float *a = download(m->params, m->num_params), *b = download(m2->params, m2->num_params);
        CHECK(!memcmp(a, b, m->num_params * sizeof(float)), "params differ after round trip");
        free(a); free(b);
        CHECK(tok && !strcmp(tok, "tok/my tokenizer.json"), "tokenizer %s", tok ? tok : "(null)");
    }
    /* the file layout: sorted names, metadata format pt, header padded to 8, transformer. prefix */
    char *mp = gk_path_join(ck, "model.safetensors");
    st_file f;
    CHECK(st_open(&f, mp, &err) == 0, "%s", err.msg);
    CHECK(f.n == m->n_table, "%zu tensors", f.n);
    CHECK(st_meta(&f, "format") && !strcmp(st_meta(&f, "format"), "pt"), "format metadata");
    CHECK((size_t)(f.data - (const uint8_t *)f.file) % 8 == 0, "data not 8-aligned");
    CHECK(st_find(&f, "transformer.h.2.mlp.c_proj.bias") && st_find(&f, "score.weight") && !st_find(&f, "lm_head.weight"),
          "names");
    for (size_t i = 1; i < f.n; i++) CHECK(strcmp(f.tensors[i - 1].name, f.tensors[i].name) < 0, "not sorted at %zu", i);
    st_close(&f);
    free(mp); free(tok);
    gpt_free(m); gpt_free(m2);
    free(ck); free(d);
}

static void test_save_matches_hf_layout(void) {
    /* Load HF's file, save it ourselves: same tensor names, shapes, offsets and bytes as save_pretrained. */
    gk_err err;
    gpt_model *m = gpt_load(tl_path(FIX "/model"), NULL, &err);
    CHECK(m != NULL, "%s", err.msg);
    if (!m) return;
    char *d = tl_tmpdir("model");
    CHECK(gpt_save(m, d, NULL, &err) == 0, "%s", err.msg);
    char *mp = gk_path_join(d, "model.safetensors");
    st_file a, b;
    CHECK(st_open(&a, mp, &err) == 0, "%s", err.msg);
    CHECK(st_open(&b, tl_path(FIX "/model/model.safetensors"), &err) == 0, "%s", err.msg);
    CHECK(a.n == b.n, "tensor count %zu vs HF %zu", a.n, b.n);
    for (size_t i = 0; i < b.n; i++) {
        const st_tensor *tb = &b.tensors[i], *ta = st_find(&a, tb->name);
        CHECK(ta != NULL, "we do not write %s", tb->name);
        if (!ta) continue;
        CHECK(ta->ndim == tb->ndim && !memcmp(ta->shape, tb->shape, sizeof ta->shape) && !strcmp(ta->dtype, tb->dtype) &&
              ta->begin == tb->begin && ta->end == tb->end, "%s entry differs", tb->name);
        CHECK(!memcmp(a.data + ta->begin, b.data + tb->begin, tb->end - tb->begin), "%s bytes differ", tb->name);
    }
    st_close(&a); st_close(&b);
    /* and it still loads */
    gpt_model *m2 = gpt_load(d, NULL, &err);
    CHECK(m2 != NULL, "reload: %s", err.msg);
    gpt_free(m2);
    free(mp); free(d);
    gpt_free(m);
}

static void test_load_variants(void) {
    /* Names without "transformer.", old attn.bias / masked_bias buffers, a tied lm_head.weight, F16 and BF16. */
    gk_err err;
    gpt_model *m = gpt_load(tl_path(FIX "/model"), NULL, &err);
    CHECK(m != NULL, "%s", err.msg);
    if (!m) return;
    char *d = tl_tmpdir("model");
    char *cp = gk_path_join(d, "config.json");
    copy_file(tl_path(FIX "/model/config.json"), cp);
    free(cp);
    char *mp = gk_path_join(d, "model.safetensors");
    float *host = download(m->params, m->num_params);
    float mask[16 * 16];
    for (int i = 0; i < 256; i++) mask[i] = (i % 16) <= (i / 16);
    size_t mshape[4] = {1, 1, 16, 16}, one = 1;
    float mb = -1e4f;
    st_writer *w = st_writer_new();
    for (size_t i = 0; i < m->n_table; i++)
        st_writer_add_f32(w, m->table[i].name, m->table[i].ndim, m->table[i].shape, host + m->table[i].offset);
    st_writer_add_f32(w, "h.0.attn.bias", 4, mshape, mask);
    st_writer_add_f32(w, "h.1.attn.masked_bias", 0, &one, &mb);
    st_writer_add_f32(w, "lm_head.weight", 2, m->table[0].shape, host);
    CHECK(st_writer_write(w, mp, &err) == 0, "%s", err.msg);
    st_writer_free(w);
    gpt_model *m2 = gpt_load(d, NULL, &err);
    CHECK(m2 != NULL, "no-prefix / buffers / tied head: %s", err.msg);
    if (m2) {
        float *h2 = download(m2->params, m2->num_params);
        CHECK(!memcmp(host, h2, m->num_params * sizeof(float)), "params differ");
        free(h2);
        gpt_free(m2);
    }
    /* an untied lm_head is refused */
    float *head = malloc(m->table[0].numel * sizeof(float));
    memcpy(head, host, m->table[0].numel * sizeof(float));
    head[3] += 0.5f;
    w = st_writer_new();
    for (size_t i = 0; i < m->n_table; i++)
        st_writer_add_f32(w, m->table[i].name, m->table[i].ndim, m->table[i].shape, host + m->table[i].offset);
    st_writer_add_f32(w, "lm_head.weight", 2, m->table[0].shape, head);
    st_writer_write(w, mp, &err);
    st_writer_free(w);
    m2 = gpt_load(d, NULL, &err);
    CHECK(m2 == NULL && strstr(err.msg, "lm_head.weight"), "untied head accepted: %s", m2 ? "(loaded)" : err.msg);
    gpt_free(m2);
    free(head); free(host); free(mp); free(d);
    gpt_free(m);
}

static void test_half_dtypes(void) {
    /* F16 and BF16 values with known fp32 equivalents, incl. subnormal, inf, negative zero. */
    char *d = tl_tmpdir("model");
    char *p = gk_path_join(d, "h.safetensors");
    uint16_t f16[6] = {0x3c00, 0xc000, 0x0001, 0x7c00, 0x8000, 0x3555};   /* 1, -2, 2^-24, inf, -0, 0.33325 */
    uint16_t bf16[3] = {0x3f80, 0xc0a0, 0x3eaa};                           /* 1, -5, 0.33203125 */
    const char *hdr = "{\"a\":{\"dtype\":\"F16\",\"shape\":[2,3],\"data_offsets\":[0,12]},"
                      "\"b\":{\"dtype\":\"BF16\",\"shape\":[3],\"data_offsets\":[12,18]}}";
    FILE *fp = fopen(p, "wb");
    uint64_t n = strlen(hdr);
    uint8_t lb[8];
    for (int i = 0; i < 8; i++) lb[i] = (uint8_t)(n >> (8 * i));
    fwrite(lb, 1, 8, fp); fwrite(hdr, 1, n, fp);
    for (int i = 0; i < 6; i++) { fputc(f16[i] & 0xff, fp); fputc(f16[i] >> 8, fp); }
    for (int i = 0; i < 3; i++) { fputc(bf16[i] & 0xff, fp); fputc(bf16[i] >> 8, fp); }
    fclose(fp);
    st_file f; gk_err err;
    CHECK(st_open(&f, p, &err) == 0, "%s", err.msg);
    float a[6], b[3];
    CHECK(st_read_f32(&f, st_find(&f, "a"), a, &err) == 0, "%s", err.msg);
    CHECK(st_read_f32(&f, st_find(&f, "b"), b, &err) == 0, "%s", err.msg);
    CHECK(a[0] == 1.0f && a[1] == -2.0f && a[2] == ldexpf(1, -24) && isinf(a[3]) && a[4] == 0 && signbit(a[4]) &&
          fabsf(a[5] - 0.333251953125f) < 1e-9f, "f16 %g %g %g %g %g %g", a[0], a[1], a[2], a[3], a[4], a[5]);
    CHECK(b[0] == 1.0f && b[1] == -5.0f && b[2] == 0.33203125f, "bf16 %g %g %g", b[0], b[1], b[2]);
    st_close(&f);
    free(p); free(d);
}

static void test_safetensors_roundtrip(void) {
    char *d = tl_tmpdir("model");
    char *p = gk_path_join(d, "x.safetensors");
    float a[7] = {1, 2, 3, 4, 5, 6, 7}, b[1] = {-1}, z[1] = {0};
    size_t sa[2] = {7, 1}, sb[1] = {1}, sz[2] = {0, 3};
    st_writer *w = st_writer_new();
    st_writer_add_f32(w, "zeta", 2, sa, a);
    st_writer_add_f32(w, "alpha \"quoted\"", 1, sb, b);
    st_writer_add_f32(w, "empty", 2, sz, z);
    st_writer_add_meta(w, "step", "12");
    st_writer_add_meta(w, "format", "pt");
    gk_err err;
    CHECK(st_writer_write(w, p, &err) == 0, "%s", err.msg);
    st_writer_free(w);
    st_file f;
    CHECK(st_open(&f, p, &err) == 0, "%s", err.msg);
    CHECK(f.n == 3 && !strcmp(f.tensors[0].name, "alpha \"quoted\"") && !strcmp(f.tensors[1].name, "empty") &&
          !strcmp(f.tensors[2].name, "zeta"), "order/names");
    CHECK(st_meta(&f, "step") && !strcmp(st_meta(&f, "step"), "12") && st_meta(&f, "format") && !st_meta(&f, "nope"), "meta");
    float got[7];
    const st_tensor *t = st_find(&f, "zeta");
    CHECK(t && t->ndim == 2 && t->shape[0] == 7 && t->shape[1] == 1, "zeta shape");
    CHECK(t && st_read_f32(&f, t, got, &err) == 0 && !memcmp(got, a, sizeof a), "zeta data");
    /* header padded with spaces to a multiple of 8 */
    size_t hl = (size_t)(f.data - (const uint8_t *)f.file) - 8;
    CHECK(hl % 8 == 0, "header length %zu", hl);
    st_close(&f);
    /* python's safetensors reads it too, if present (not required) */
    free(p); free(d);
}

/* Each malformed file must give -1 with a message containing `want` (and the path). */
static void expect_bad(const char *path, const char *want, const char *what) {
    st_file f; gk_err err;
    memset(&err, 0, sizeof err);
    int rc = st_open(&f, path, &err);
    CHECK(rc != 0, "%s: accepted", what);
    if (rc == 0) { st_close(&f); return; }
    CHECK(strstr(err.msg, want) != NULL, "%s: message \"%s\" lacks \"%s\"", what, err.msg, want);
    CHECK(strstr(err.msg, path) != NULL, "%s: message \"%s\" lacks the path", what, err.msg);
}

static void test_bad_safetensors(void) {
    char *d = tl_tmpdir("model");
    char *p = gk_path_join(d, "bad.safetensors");
    const char *good = "{\"t\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]}}";
    size_t gl = strlen(good);
    write_raw_st(p, good, ST_AUTO, 16);
    st_file f; gk_err err;
    CHECK(st_open(&f, p, &err) == 0, "control file rejected: %s", err.msg);
    st_close(&f);

    FILE *fp = fopen(p, "wb"); fwrite("abc", 1, 3, fp); fclose(fp);
    expect_bad(p, "too short", "3-byte file");
    write_raw_st(p, good, gl + 100, 16);
    expect_bad(p, "header length", "header length larger than file");
    write_raw_st(p, good, UINT64_MAX - 1, 16);
    expect_bad(p, "header length", "header length 2^64-1");
    /* truncated: data shorter than offsets claim */
    write_raw_st(p, good, ST_AUTO, 10);
    expect_bad(p, "past the end", "truncated data");
    write_raw_st(p, "{\"t\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]", ST_AUTO, 16);
    expect_bad(p, "JSON", "invalid JSON");
    write_raw_st(p, "[1,2,3]                                  ", ST_AUTO, 0);
    expect_bad(p, "JSON object", "not an object");
    write_raw_st(p, "{\"t\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,1600]}}", ST_AUTO, 16);
    expect_bad(p, "past the end", "data_offsets beyond the file");
    write_raw_st(p, "{\"t\":{\"dtype\":\"Q4\",\"shape\":[2,2],\"data_offsets\":[0,16]}}", ST_AUTO, 16);
    expect_bad(p, "unknown dtype", "unknown dtype");
    write_raw_st(p, "{\"t\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,16]}}", ST_AUTO, 16);
    expect_bad(p, "need 24 bytes", "shape x dtype != span");
    write_raw_st(p, "{\"t\":{\"dtype\":\"F16\",\"shape\":[2,2],\"data_offsets\":[0,16]}}", ST_AUTO, 16);
    expect_bad(p, "need 8 bytes", "F16 span");
    write_raw_st(p, "{\"t\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4294967296],\"data_offsets\":[0,16]}}", ST_AUTO, 16);
    expect_bad(p, "overflow", "shape overflow");
    write_raw_st(p, "{\"t\":{\"dtype\":\"F32\",\"shape\":[-1,2],\"data_offsets\":[0,16]}}", ST_AUTO, 16);
    expect_bad(p, "shape", "negative dim");
    write_raw_st(p, "{\"t\":{\"dtype\":\"F32\",\"shape\":[2.5,2],\"data_offsets\":[0,16]}}", ST_AUTO, 16);
    expect_bad(p, "shape", "fractional dim");
    write_raw_st(p, "{\"t\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[16,0]}}", ST_AUTO, 16);
    expect_bad(p, "backwards", "begin > end");
    write_raw_st(p, "{\"t\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0]}}", ST_AUTO, 16);
    expect_bad(p, "data_offsets", "one offset");
    write_raw_st(p, "{\"t\":{\"shape\":[2,2],\"data_offsets\":[0,16]}}", ST_AUTO, 16);
    expect_bad(p, "dtype", "missing dtype");
    write_raw_st(p, "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                    "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", ST_AUTO, 16);
    expect_bad(p, "overlap", "overlapping tensors");
    write_raw_st(p, "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                    "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}", ST_AUTO, 16);
    expect_bad(p, "twice", "duplicate name");
    write_raw_st(p, "{\"__metadata__\":{\"step\":3}}", ST_AUTO, 0);
    expect_bad(p, "__metadata__", "non-string metadata");
    write_raw_st(p, "{\"t\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]}} x", ST_AUTO, 16);
    expect_bad(p, "junk", "junk after JSON");
    char *missing = gk_path_join(d, "missing.safetensors");
    expect_bad(missing, "missing.safetensors", "missing file");
    free(missing);

    /* dtypes that exist but are not floats: open fine, reading as f32 errors */
    write_raw_st(p, "{\"t\":{\"dtype\":\"I64\",\"shape\":[2],\"data_offsets\":[0,16]}}", ST_AUTO, 16);
    CHECK(st_open(&f, p, &err) == 0, "I64 file: %s", err.msg);
    float tmp[4];
    CHECK(st_read_f32(&f, &f.tensors[0], tmp, &err) != 0 && strstr(err.msg, "I64"), "I64 read as f32: %s", err.msg);
    st_close(&f);
    free(p); free(d);
}

/* Writes a checkpoint dir with config.json text `cfg` and the fixture's weights. */
static void write_ckpt(const char *dir, const char *cfg) {
    gk_err err;
    char *cp = gk_path_join(dir, "config.json"), *mp = gk_path_join(dir, "model.safetensors");
    gk_write_file_atomic(cp, cfg, strlen(cfg), &err);
    copy_file(tl_path(FIX "/model/model.safetensors"), mp);
    free(cp); free(mp);
}

static void expect_load_fail(const char *dir, const char *want1, const char *want2, const char *what) {
    gk_err err;
    memset(&err, 0, sizeof err);
    gpt_model *m = gpt_load(dir, NULL, &err);
    CHECK(m == NULL, "%s: loaded", what);
    gpt_free(m);
    if (m) return;
    CHECK(strstr(err.msg, want1) && (!want2 || strstr(err.msg, want2)), "%s: message \"%s\" lacks \"%s\"/\"%s\"",
          what, err.msg, want1, want2 ? want2 : "");
}

static void test_bad_checkpoints(void) {
    char *d = tl_tmpdir("model");
    const char *base = "{\"model_type\":\"gpt2\",\"n_layer\":2,\"n_head\":3,\"n_embd\":24,\"vocab_size\":97,\"n_positions\":16%s}";
    char cfg[512];
    snprintf(cfg, sizeof cfg, base, "");
    write_ckpt(d, cfg);
    gk_err err;
    gpt_model *m = gpt_load(d, NULL, &err);
    CHECK(m != NULL, "minimal config rejected: %s", err.msg);
    gpt_free(m);

    const char *keys[] = {"n_layer", "n_head", "n_embd", "vocab_size", "n_positions"};
    for (int k = 0; k < 5; k++) {
        /* drop key k */
        char c2[512] = "{\"model_type\":\"gpt2\"";
        const char *vals[] = {"2", "3", "24", "97", "16"};
        for (int i = 0; i < 5; i++)
            if (i != k) { strcat(c2, ",\""); strcat(c2, keys[i]); strcat(c2, "\":"); strcat(c2, vals[i]); }
        strcat(c2, "}");
        write_ckpt(d, c2);
        expect_load_fail(d, "config.json", keys[k], "missing config key");
    }
    write_ckpt(d, "{\"model_type\":\"gpt2\",\"n_layer\":2,\"n_head\":3,\"n_embd\":24,\"vocab_size\":98,\"n_positions\":16}");
    expect_load_fail(d, "wte.weight", "[98, 24]", "vocab mismatch");
    expect_load_fail(d, "model.safetensors", "[97, 24]", "vocab mismatch names file and found shape");
    write_ckpt(d, "{\"model_type\":\"gpt2\",\"n_layer\":2,\"n_head\":3,\"n_embd\":24,\"vocab_size\":97,\"n_positions\":20}");
    expect_load_fail(d, "wpe.weight", "[20, 24]", "n_positions mismatch");
    write_ckpt(d, "{\"model_type\":\"gpt2\",\"n_layer\":3,\"n_head\":3,\"n_embd\":24,\"vocab_size\":97,\"n_positions\":16}");
    expect_load_fail(d, "h.2.ln_1.weight", "missing", "too many layers");
    write_ckpt(d, "{\"model_type\":\"gpt2\",\"n_layer\":1,\"n_head\":3,\"n_embd\":24,\"vocab_size\":97,\"n_positions\":16}");
    expect_load_fail(d, "unexpected tensor", "h.1", "too few layers");
    /* a config claiming a ~800 GB model must fail on the shapes, before any allocation */
    write_ckpt(d, "{\"model_type\":\"gpt2\",\"n_layer\":4000,\"n_head\":64,\"n_embd\":4096,\"vocab_size\":97,\"n_positions\":16}");
    expect_load_fail(d, "wte.weight", "[97, 4096]", "huge config");
    write_ckpt(d, "{\"model_type\":\"gpt2\",\"n_layer\":2,\"n_head\":5,\"n_embd\":24,\"vocab_size\":97,\"n_positions\":16}");
    expect_load_fail(d, "config.json", "divisible", "heads do not divide");
    write_ckpt(d, "{\"model_type\":\"gpt2\",\"n_layer\":\"2\",\"n_head\":3,\"n_embd\":24,\"vocab_size\":97,\"n_positions\":16}");
    expect_load_fail(d, "config.json", "n_layer", "string n_layer");
    write_ckpt(d, "{\"model_type\":\"bert\",\"n_layer\":2,\"n_head\":3,\"n_embd\":24,\"vocab_size\":97,\"n_positions\":16}");
    expect_load_fail(d, "config.json", "model_type", "wrong model_type");
    /* a LLaMA config with GPT-2's keys: the LLaMA key it lacks is named */
    write_ckpt(d, "{\"model_type\":\"llama\",\"n_layer\":2,\"n_head\":3,\"n_embd\":24,\"vocab_size\":97,\"n_positions\":16}");
    expect_load_fail(d, "config.json", "num_hidden_layers", "llama keys");
    snprintf(cfg, sizeof cfg, base, ",\"activation_function\":\"relu\"");
    write_ckpt(d, cfg);
    expect_load_fail(d, "config.json", "activation_function", "relu");
    write_ckpt(d, "{\"n_layer\":2,");
    expect_load_fail(d, "config.json", "JSON", "truncated config.json");
    snprintf(cfg, sizeof cfg, base, ",\"gptkit\":{\"score_head\":true}");
    write_ckpt(d, cfg);
    expect_load_fail(d, "score.weight", "missing", "score head absent from file");
    /* a lying safetensors under a good config */
    snprintf(cfg, sizeof cfg, base, "");
    write_ckpt(d, cfg);
    char *mp = gk_path_join(d, "model.safetensors");
    write_raw_st(mp, "{\"t\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]}}", 1000, 16);
    expect_load_fail(d, "model.safetensors", "header length", "lying header");
    remove(mp);
    expect_load_fail(d, "model.safetensors", NULL, "missing weights file");
    char *cp = gk_path_join(d, "config.json");
    remove(cp);
    expect_load_fail(d, "config.json", NULL, "missing config");
    free(mp); free(cp); free(d);
}

static void test_fuzz_safetensors(void) {
    /* Random byte flips and truncations of a valid file: st_open must never crash; if it accepts the file,
     * every tensor must be readable. (ASan/UBSan builds make this meaningful: make asan.) */
    char *src; size_t len; gk_err err;
    if (gk_read_file(tl_path(FIX "/io.safetensors"), &src, &len, &err)) { CHECK(0, "%s", err.msg); return; }
    char *d = tl_tmpdir("model");
    char *p = gk_path_join(d, "fuzz.safetensors");
    gk_rng rng;
    gk_rng_seed(&rng, 2024);
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--) hl = (hl << 8) | (uint8_t)src[i];
    char *buf = malloc(len);
    int accepted = 0, rejected = 0;
    float *tmp = malloc(len * 4 + 16);
    for (int it = 0; it < 1500; it++) {
        memcpy(buf, src, len);
        size_t n = len;
        int flips = 1 + (int)gk_rng_below(&rng, 4);
        for (int k = 0; k < flips; k++) {
            /* mostly inside the length prefix and header, where the parsing happens */
            size_t at = gk_rng_below(&rng, 4) ? gk_rng_below(&rng, (uint32_t)(8 + hl)) : gk_rng_below(&rng, (uint32_t)len);
            buf[at] = gk_rng_below(&rng, 2) ? (char)gk_rng_below(&rng, 256) : (char)(buf[at] ^ (1 << gk_rng_below(&rng, 8)));
        }
        if (gk_rng_below(&rng, 8) == 0) n = gk_rng_below(&rng, (uint32_t)len);
        remove(p);   /* a fresh file: truncating one in place makes ext4 flush on close (slow) */
        FILE *fp = fopen(p, "wb");   /* plain write: an fsync per mutant would dominate the run time */
        fwrite(buf, 1, n, fp);
        fclose(fp);
        st_file f;
        if (st_open(&f, p, &err) == 0) {
            accepted++;
            for (size_t i = 0; i < f.n; i++) {
                const st_tensor *t = &f.tensors[i];
                CHECK(t->begin <= t->end && t->end <= f.data_len, "accepted tensor out of bounds");
                if (t->end - t->begin <= len * 4) st_read_f32(&f, t, tmp, &err);
            }
            st_close(&f);
        } else {
            rejected++;
            CHECK(err.msg[0] != 0, "rejection without a message");
        }
    }
    CHECK(rejected > 100, "fuzz: only %d of 1500 mutants rejected", rejected);
    printf("  fuzz: %d accepted, %d rejected\n", accepted, rejected);
    free(tmp); free(buf); free(src); free(p); free(d);
}

static void test_adamw_step1_with_kern_ops(void) {
    /* One AdamW step from the fixture's fp32 grads (as src/optim's test would feed them): tight match. */
    gk_err err;
    gpt_model *m = gpt_load(tl_path(FIX "/model"), NULL, &err);
    st_file a, g;
    CHECK(m != NULL, "%s", err.msg);
    if (!m) return;
    if (st_open(&a, tl_path(FIX "/adamw.safetensors"), &err) || st_open(&g, tl_path(FIX "/grads.safetensors"), &err)) {
        CHECK(0, "%s", err.msg); gpt_free(m); return;
    }
    double lr = atof(st_meta(&a, "lr")), b1 = atof(st_meta(&a, "beta1")), b2 = atof(st_meta(&a, "beta2"));
    double eps = atof(st_meta(&a, "eps")), wd = atof(st_meta(&a, "weight_decay")), clip = atof(st_meta(&a, "clip"));
    gpt_alloc_grads(m);
    for (size_t i = 0; i < m->n_table; i++) {
        float *gr = st_load_f32(&g, m->table[i].name, NULL);
        if (gr) kern_upload(m->be, m->grads + m->table[i].offset, gr, m->table[i].numel * sizeof(float));
        free(gr);
    }
    float *wn = st_load_f32(&a, "step1_grad_norm", NULL);
    double norm = sqrt(kern_sumsq(m->be, m->grads, m->num_params));
    CHECK(wn && fabs(norm - wn[0]) <= 1e-6 * wn[0], "grad norm %.9g want %.9g", norm, wn ? wn[0] : 0);
    double gscale = clip / (norm + 1e-6) < 1 ? clip / (norm + 1e-6) : 1;
    float *mom = kern_alloc(m->be, m->num_params * sizeof(float)), *vel = kern_alloc(m->be, m->num_params * sizeof(float));
    for (size_t i = 0; i < m->n_table; i++) {
        const gpt_param *p = &m->table[i];
        kern_adamw(m->be, m->params + p->offset, m->grads + p->offset, mom + p->offset, vel + p->offset, p->numel,
                   (float)lr, (float)b1, (float)b2, (float)eps, p->decay ? (float)wd : 0.0f,
                   (float)(1 - b1), (float)(1 - b2), (float)gscale);
    }
    float *host = download(m->params, m->num_params);
    double worst = 0;
    for (size_t i = 0; i < m->n_table; i++) {
        const gpt_param *p = &m->table[i];
        char name[96];
        snprintf(name, sizeof name, "step1.%s", p->name);
        float *want = st_load_f32(&a, name, NULL);
        CHECK(want != NULL, "fixture lacks %s", name);
        if (!want) continue;
        worst = fmax(worst, CHECK_ARRAYS(name, host + p->offset, want, p->numel, 1e-6, 1e-5));
        free(want);
    }
    printf("  adamw step 1: params max |diff| %.2e\n", worst);
    free(host); free(wn);
    kern_free(m->be, mom); kern_free(m->be, vel);
    st_close(&a); st_close(&g);
    gpt_free(m);
}

static void test_adamw_fixture_with_kern_ops(void) {
    /* Consistency of adamw.safetensors with kern_adamw/kern_sumsq directly (src/optim has its own test):
     * 10 steps on the fixture batch, global-norm clipping g *= min(1, clip/(norm+1e-6)), decay per table. */
    gk_err err;
    gpt_model *m = gpt_load(tl_path(FIX "/model"), NULL, &err);
    st_file a;
    CHECK(m != NULL, "%s", err.msg);
    if (!m) return;
    if (st_open(&a, tl_path(FIX "/adamw.safetensors"), &err)) { CHECK(0, "%s", err.msg); gpt_free(m); return; }
    double lr = atof(st_meta(&a, "lr")), b1 = atof(st_meta(&a, "beta1")), b2 = atof(st_meta(&a, "beta2"));
    double eps = atof(st_meta(&a, "eps")), wd = atof(st_meta(&a, "weight_decay")), clip = atof(st_meta(&a, "clip"));
    int steps = atoi(st_meta(&a, "steps"));
    float *losses = st_load_f32(&a, "losses", NULL), *norms = st_load_f32(&a, "grad_norms", NULL);
    float *final = st_load_f32(&a, "final_loss", NULL);
    float *mom = kern_alloc(m->be, m->num_params * sizeof(float)), *vel = kern_alloc(m->be, m->num_params * sizeof(float));
    for (int t = 1; t <= steps; t++) {
        double loss = run_fixture_batch(m, NULL);
        double norm = sqrt(kern_sumsq(m->be, m->grads, m->num_params));
        CHECK_CLOSE(loss, losses[t - 1], 0, 5e-5, "adamw loss");
        CHECK_CLOSE(norm, norms[t - 1], 0, 1e-4, "adamw grad norm");
        double gscale = clip / (norm + 1e-6) < 1 ? clip / (norm + 1e-6) : 1;
        for (size_t i = 0; i < m->n_table; i++) {
            const gpt_param *p = &m->table[i];
            kern_adamw(m->be, m->params + p->offset, m->grads + p->offset, mom + p->offset, vel + p->offset, p->numel,
                       (float)lr, (float)b1, (float)b2, (float)eps, p->decay ? (float)wd : 0.0f,
                       (float)(1 - pow(b1, t)), (float)(1 - pow(b2, t)), (float)gscale);
        }
    }
    double fl = run_fixture_batch(m, NULL);
    CHECK_CLOSE(fl, final[0], 0, 1e-4, "loss after 10 steps");
    float *host = download(m->params, m->num_params);
    double worst = 0;
    size_t n_loose = 0;
    for (size_t i = 0; i < m->n_table; i++) {
        const gpt_param *p = &m->table[i];
        float *want = st_load_f32(&a, p->name, NULL);
        CHECK(want != NULL, "adamw fixture lacks %s", p->name);
        if (!want) continue;
        /* The key bias gets an exactly-zero gradient (q . b_k shifts a whole softmax row), so in fp32 its
         * gradient is rounding noise and Adam turns noise into steps of ~lr: it is only bounded, not matched. */
        size_t C = (size_t)m->cfg.n_embd;
        int is_attn_bias = strstr(p->name, "attn.c_attn.bias") != NULL;
        for (size_t k = 0; k < p->numel; k++) {
            double d = fabs((double)host[p->offset + k] - want[k]);
            if (is_attn_bias && k >= C && k < 2 * C) {
                CHECK(d <= 2 * steps * lr, "%s[%zu] (key bias) moved %g", p->name, k, d);
                continue;
            }
            /* near-zero-gradient weights drift the same way: all within 2e-3, 99.9% within 1e-4 */
            CHECK(d <= 2e-3, "%s[%zu] after %d steps: got %.7g want %.7g", p->name, k, steps, host[p->offset + k], want[k]);
            n_loose += d > 1e-4;
            worst = fmax(worst, d);
        }
        free(want);
    }
    CHECK(n_loose * 1000 <= m->num_params, "%zu params differ by more than 1e-4", n_loose);
    printf("  adamw: loss after %d steps %.7f vs %.7f, params max |diff| %.2e (%zu of %zu beyond 1e-4)\n", steps, fl,
           final[0], worst, n_loose, m->num_params);
    free(host); free(losses); free(norms); free(final);
    kern_free(m->be, mom); kern_free(m->be, vel);
    st_close(&a);
    gpt_free(m);
}

int main(void) {
    g_mem = kern_backend_create(NULL, NULL);
    TL_RUN(test_config_names);
    TL_RUN(test_param_table);
    TL_RUN(test_table_from_arch_fields);
    TL_RUN(test_roles);
    TL_RUN(test_unsupported_arch);
    TL_RUN(test_untied_wide_ffn);
    TL_RUN(test_safetensors_roundtrip);
    TL_RUN(test_half_dtypes);
    TL_RUN(test_bad_safetensors);
    TL_RUN(test_fuzz_safetensors);
    TL_RUN(test_check_tokens);
    TL_RUN(test_checkpoint_roundtrip);
    TL_RUN(test_save_matches_hf_layout);
    TL_RUN(test_load_variants);
    TL_RUN(test_bad_checkpoints);
    TL_RUN(test_fixture_logits_loss_grads);
    TL_RUN(test_fixture_every_kern_backend);
    TL_RUN(test_shapes_and_reuse);
    TL_RUN(test_frozen_groups);
    TL_RUN(test_score_head);
    TL_RUN(test_backward_ready_tails);
    TL_RUN(test_adamw_step1_with_kern_ops);
    TL_RUN(test_adamw_fixture_with_kern_ops);
    kern_backend_free(g_mem);
    return tl_summary();
}
