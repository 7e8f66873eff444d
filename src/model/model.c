/* model.c: GPT-2 — config, parameter table, trunk forward/backward and the two heads.
 *
 * The architecture (Radford et al. 2019, as in HF transformers' GPT2Model):
 *   x0 = wte[tok] + wpe[pos]
 *   for each layer:  x = x + attn(ln_1(x));  x = x + mlp(ln_2(x))
 *   h  = ln_f(x)
 * with pre-LayerNorm (eps cfg.ln_eps), causal multi-head attention scaled by 1/sqrt(head_dim),
 * mlp(u) = c_proj(gelu_tanh(c_fc(u))), Conv1D weights stored [in, out]. The LM head is tied:
 * logits = h @ wte^T. Losses are not here (see model.h).
 *
 * Every op is a kern_* call on device pointers; this file never dereferences params, grads or activations
 * (a CUDA backend runs the same code). Host memory is touched only through kern_upload / kern_download.
 */
#include "model/model.h"
#include "model/model_internal.h"
#include "kern/kern.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- config */

void gpt_config_default(gpt_config *c) {
    memset(c, 0, sizeof *c);
    c->n_layer = 6; c->n_head = 6; c->n_embd = 384;
    c->vocab_size = 50257;
    c->n_ctx = 1024;
    c->ln_eps = 1e-5f;
    c->score_head = 0;
}

int gpt_config_from_name(gpt_config *c, const char *name, gk_err *err) {
    static const struct { const char *name; int L, H, C; } named[] = {
        {"d6", 6, 6, 384}, {"d12", 12, 12, 768}, {"d24", 24, 16, 1024}, {"d36", 36, 20, 1280}, {"d48", 48, 25, 1600},
    };
    for (size_t i = 0; i < sizeof named / sizeof named[0]; i++)
        if (!strcmp(name, named[i].name)) {
            c->n_layer = named[i].L; c->n_head = named[i].H; c->n_embd = named[i].C;
            return 0;
        }
    long n;
    if (name[0] != 'd' || gk_parse_long(name + 1, &n) || n < 1 || n > 1000)
        return gk_errf(err, "unknown model size \"%s\" (expected d6, d12, d24, d36, d48 or dN with N in 1..1000)", name);
    c->n_layer = (int)n; c->n_head = (int)n; c->n_embd = 64 * (int)n;
    return 0;
}

int gpt_config_validate(const gpt_config *c, gk_err *err) {
    if (c->n_layer < 1 || c->n_layer > 4096) return gk_errf(err, "n_layer %d out of range [1, 4096]", c->n_layer);
    if (c->n_head < 1 || c->n_head > 4096) return gk_errf(err, "n_head %d out of range [1, 4096]", c->n_head);
    if (c->n_embd < 1 || c->n_embd > (1 << 16)) return gk_errf(err, "n_embd %d out of range [1, 65536]", c->n_embd);
    if (c->n_embd % c->n_head) return gk_errf(err, "n_embd %d is not divisible by n_head %d", c->n_embd, c->n_head);
    if (c->vocab_size < 1 || c->vocab_size > (1 << 24)) return gk_errf(err, "vocab_size %d out of range [1, 2^24]", c->vocab_size);
    if (c->n_ctx < 1 || c->n_ctx > (1 << 20)) return gk_errf(err, "n_ctx %d out of range [1, 2^20]", c->n_ctx);
    if (!(c->ln_eps > 0 && c->ln_eps < 1)) return gk_errf(err, "layer_norm_epsilon %g out of range (0, 1)", (double)c->ln_eps);
    return 0;
}

/* ---------------------------------------------------------------- parameter table */
/* Shapes are written as multiples of the model dims: dim = mult_C*C + mult_V*V + mult_T*n_ctx (+ lit).
 * Adding a tensor is one line here (and, for a layer tensor, one field in gpt_layer_ptrs). */
enum { INIT_NORMAL = 0, INIT_PROJ, INIT_ZERO, INIT_ONE };
typedef struct { int c, v, t, lit; } dim_expr;
typedef struct {
    const char *name;   /* layer tensors: suffix after "h.<l>." */
    int ndim; dim_expr d[2];
    int decay, init;
    size_t field;       /* offsetof(gpt_layer_ptrs, ...) for layer tensors */
} param_spec;

#define DC(k) {k, 0, 0, 0}
#define D1    {0, 0, 0, 1}
static const param_spec embed_specs[] = {
    /* decay on wte: it is also the LM head's matrix. Position embeddings are excluded (issue 2). */
    {"wte.weight", 2, {{0, 1, 0, 0}, DC(1)}, 1, INIT_NORMAL, 0},
    {"wpe.weight", 2, {{0, 0, 1, 0}, DC(1)}, 0, INIT_NORMAL, 0},
};
static const param_spec layer_specs[] = {
    {"ln_1.weight",        1, {DC(1), D1}, 0, INIT_ONE,    offsetof(gpt_layer_ptrs, ln1_w)},
    {"ln_1.bias",          1, {DC(1), D1}, 0, INIT_ZERO,   offsetof(gpt_layer_ptrs, ln1_b)},
    {"attn.c_attn.weight", 2, {DC(1), DC(3)}, 1, INIT_NORMAL, offsetof(gpt_layer_ptrs, qkv_w)},
    {"attn.c_attn.bias",   1, {DC(3), D1}, 0, INIT_ZERO,   offsetof(gpt_layer_ptrs, qkv_b)},
    {"attn.c_proj.weight", 2, {DC(1), DC(1)}, 1, INIT_PROJ, offsetof(gpt_layer_ptrs, proj_w)},
    {"attn.c_proj.bias",   1, {DC(1), D1}, 0, INIT_ZERO,   offsetof(gpt_layer_ptrs, proj_b)},
    {"ln_2.weight",        1, {DC(1), D1}, 0, INIT_ONE,    offsetof(gpt_layer_ptrs, ln2_w)},
    {"ln_2.bias",          1, {DC(1), D1}, 0, INIT_ZERO,   offsetof(gpt_layer_ptrs, ln2_b)},
    {"mlp.c_fc.weight",    2, {DC(1), DC(4)}, 1, INIT_NORMAL, offsetof(gpt_layer_ptrs, fc_w)},
    {"mlp.c_fc.bias",      1, {DC(4), D1}, 0, INIT_ZERO,   offsetof(gpt_layer_ptrs, fc_b)},
    {"mlp.c_proj.weight",  2, {DC(4), DC(1)}, 1, INIT_PROJ, offsetof(gpt_layer_ptrs, fcproj_w)},
    {"mlp.c_proj.bias",    1, {DC(1), D1}, 0, INIT_ZERO,   offsetof(gpt_layer_ptrs, fcproj_b)},
};
static const param_spec final_specs[] = {
    {"ln_f.weight", 1, {DC(1), D1}, 0, INIT_ONE, 0},
    {"ln_f.bias",   1, {DC(1), D1}, 0, INIT_ZERO, 0},
};
/* HF GPT2ForSequenceClassification's score = nn.Linear(C, 1, bias=False): weight [1, C]. */
static const param_spec score_specs[] = {
    {"score.weight", 2, {D1, DC(1)}, 1, INIT_NORMAL, 0},
};
#define NSPEC(a) (sizeof a / sizeof a[0])
#define N_LAYER_SPECS NSPEC(layer_specs)

static size_t dim_eval(dim_expr d, const gpt_config *c) {
    return (size_t)d.c * (size_t)c->n_embd + (size_t)d.v * (size_t)c->vocab_size + (size_t)d.t * (size_t)c->n_ctx + (size_t)d.lit;
}

static void table_add(gpt_model *m, const param_spec *s, const char *prefix, int group, size_t *cap) {
    if (m->n_table == *cap) { *cap = *cap ? 2 * *cap : 64; m->table = gk_realloc(m->table, *cap * sizeof *m->table); }
    gpt_param *p = &m->table[m->n_table++];
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "%s%s", prefix, s->name);
    p->ndim = s->ndim;
    p->shape[0] = dim_eval(s->d[0], &m->cfg);
    p->shape[1] = s->ndim == 2 ? dim_eval(s->d[1], &m->cfg) : 1;
    p->numel = p->shape[0] * p->shape[1];
    p->offset = m->num_params;
    p->group = group;
    p->decay = s->decay;
    p->init = s->init;
    m->num_params += p->numel;
}

gpt_model *gpt_create_table(const gpt_config *cfg, kern_backend *be) {
    gk_err err;
    GK_CHECK(gpt_config_validate(cfg, &err) == 0, "gpt_create: invalid config: %s", err.msg);
    /* the largest valid config must not overflow size_t arithmetic: 4096 layers x 12 (65536)^2 x 4 < 2^64 */
    gpt_model *m = gk_calloc(1, sizeof *m);
    m->cfg = *cfg;
    m->own_be = be == NULL;
    m->be = be ? be : kern_backend_create(NULL, NULL);
    size_t cap = 0;
    char prefix[32];
    for (size_t i = 0; i < NSPEC(embed_specs); i++) table_add(m, &embed_specs[i], "", GPT_GROUP_EMBED, &cap);
    for (int l = 0; l < cfg->n_layer; l++) {
        snprintf(prefix, sizeof prefix, "h.%d.", l);
        for (size_t i = 0; i < N_LAYER_SPECS; i++) table_add(m, &layer_specs[i], prefix, GPT_GROUP_BLOCKS, &cap);
    }
    for (size_t i = 0; i < NSPEC(final_specs); i++) table_add(m, &final_specs[i], "", GPT_GROUP_FINAL, &cap);
    if (cfg->score_head)
        for (size_t i = 0; i < NSPEC(score_specs); i++) table_add(m, &score_specs[i], "", GPT_GROUP_SCORE, &cap);
    for (int g = 0; g < GPT_NGROUPS; g++) m->trainable[g] = 1;
    return m;
}

void gpt_alloc_params(gpt_model *m) {
    if (!m->params) m->params = kern_alloc(m->be, m->num_params * sizeof(float));
}

gpt_model *gpt_create(const gpt_config *cfg) { return gpt_create_on(cfg, NULL); }
gpt_model *gpt_create_on(const gpt_config *cfg, kern_backend *be) {
    gpt_model *m = gpt_create_table(cfg, be);
    gpt_alloc_params(m);
    return m;
}

static void acts_free(gpt_model *m) {
    gpt_acts *a = &m->acts;
    float **fs[] = {&a->x, &a->ln1, &a->ln1_mean, &a->ln1_rstd, &a->qkv, &a->atty, &a->att_saved, &a->res2,
                    &a->ln2, &a->ln2_mean, &a->ln2_rstd, &a->fch, &a->fch_gelu, &a->lnf, &a->lnf_mean, &a->lnf_rstd};
    for (size_t i = 0; i < sizeof fs / sizeof fs[0]; i++) { kern_free(m->be, *fs[i]); *fs[i] = NULL; }
    kern_free(m->be, a->tokens); a->tokens = NULL;
    kern_free(m->be, m->scratch); m->scratch = NULL;
    m->acts_cap_bt = 0; m->acts_cap_saved = 0;
}

void gpt_free(gpt_model *m) {
    if (!m) return;
    acts_free(m);
    kern_free(m->be, m->params);
    kern_free(m->be, m->grads);
    free(m->table);
    if (m->own_be) kern_backend_free(m->be);
    free(m);
}

void gpt_init_random(gpt_model *m, uint64_t seed) {
    gk_rng rng;
    gk_rng_seed(&rng, seed);
    float proj_std = 0.02f / sqrtf(2.0f * (float)m->cfg.n_layer);
    for (size_t i = 0; i < m->n_table; i++) {
        const gpt_param *p = &m->table[i];
        float *h = gk_malloc(p->numel * sizeof(float));
        for (size_t k = 0; k < p->numel; k++) {
            switch (p->init) {
            case INIT_NORMAL: h[k] = 0.02f * gk_rng_normal(&rng); break;
            case INIT_PROJ:   h[k] = proj_std * gk_rng_normal(&rng); break;
            case INIT_ONE:    h[k] = 1.0f; break;
            default:          h[k] = 0.0f; break;
            }
        }
        kern_upload(m->be, m->params + p->offset, h, p->numel * sizeof(float));
        free(h);
    }
}

const gpt_param *gpt_find_param(const gpt_model *m, const char *name) {
    for (size_t i = 0; i < m->n_table; i++)
        if (!strcmp(m->table[i].name, name)) return &m->table[i];
    return NULL;
}

float *gpt_param_ptr(gpt_model *m, const char *name) {
    const gpt_param *p = gpt_find_param(m, name);
    return p ? m->params + p->offset : NULL;
}

/* Table index of a tensor, by construction of the table (no name lookups on the hot path). */
static const gpt_param *tbl_layer(const gpt_model *m, int l, size_t k) {
    return &m->table[NSPEC(embed_specs) + (size_t)l * N_LAYER_SPECS + k];
}
static const gpt_param *tbl_final(const gpt_model *m, size_t k) {
    return &m->table[NSPEC(embed_specs) + (size_t)m->cfg.n_layer * N_LAYER_SPECS + k];
}
static const gpt_param *tbl_score(const gpt_model *m) {
    GK_CHECK(m->cfg.score_head, "score head used on a model without one (cfg.score_head = 0)");
    return tbl_final(m, NSPEC(final_specs));
}

gpt_layer_ptrs gpt_layer(float *base, const gpt_model *m, int l) {
    gpt_layer_ptrs lp;
    memset(&lp, 0, sizeof lp);
    if (!base) return lp;   /* all NULL: a frozen group's gradients */
    GK_CHECK(l >= 0 && l < m->cfg.n_layer, "gpt_layer: layer %d of %d", l, m->cfg.n_layer);
    for (size_t k = 0; k < N_LAYER_SPECS; k++)
        *(float **)((char *)&lp + layer_specs[k].field) = base + tbl_layer(m, l, k)->offset;
    return lp;
}

void gpt_alloc_grads(gpt_model *m) {
    if (!m->grads) m->grads = kern_alloc(m->be, m->num_params * sizeof(float));
}
void gpt_zero_grads(gpt_model *m) {
    if (m->grads) kern_zero(m->be, m->grads, m->num_params * sizeof(float));
}
void gpt_set_trainable(gpt_model *m, int group, int on) {
    GK_CHECK(group >= 0 && group < GPT_NGROUPS, "gpt_set_trainable: group %d", group);
    m->trainable[group] = on ? 1 : 0;
}

/* Gradient base for a group: NULL when frozen or when no grads are allocated. */
static float *grad_base(const gpt_model *m, int group) {
    return m->trainable[group] && m->grads ? m->grads : NULL;
}
static float *gptr(float *base, const gpt_param *p) { return base ? base + p->offset : NULL; }

/* ---------------------------------------------------------------- activations */

/* Sizes the activation buffers for (B, T); grows only. */
static void acts_reserve(gpt_model *m, size_t B, size_t T) {
    const gpt_config *c = &m->cfg;
    size_t BT = B * T, C = (size_t)c->n_embd, L = (size_t)c->n_layer;
    size_t saved = kern_attention_saved_floats(m->be, B, T, C, (size_t)c->n_head);
    if (BT <= m->acts_cap_bt && saved <= m->acts_cap_saved) return;
    size_t cap_bt = BT > m->acts_cap_bt ? BT : m->acts_cap_bt;
    size_t cap_saved = saved > m->acts_cap_saved ? saved : m->acts_cap_saved;
    acts_free(m);
    gpt_acts *a = &m->acts;
#define FA(n) ((float *)kern_alloc(m->be, (n) * sizeof(float)))
    a->x = FA((L + 1) * cap_bt * C);
    a->ln1 = FA(L * cap_bt * C); a->ln1_mean = FA(L * cap_bt); a->ln1_rstd = FA(L * cap_bt);
    a->qkv = FA(L * cap_bt * 3 * C);
    a->atty = FA(L * cap_bt * C);
    a->att_saved = FA(L * cap_saved);
    a->res2 = FA(L * cap_bt * C);
    a->ln2 = FA(L * cap_bt * C); a->ln2_mean = FA(L * cap_bt); a->ln2_rstd = FA(L * cap_bt);
    a->fch = FA(L * cap_bt * 4 * C);
    a->fch_gelu = FA(L * cap_bt * 4 * C);
    a->lnf = FA(cap_bt * C); a->lnf_mean = FA(cap_bt); a->lnf_rstd = FA(cap_bt);
    m->scratch = FA(cap_bt * 9 * C);   /* backward: dres [BT,C] | dbig1 [BT,4C] | dbig2 [BT,4C] */
#undef FA
    a->tokens = kern_alloc(m->be, cap_bt * sizeof(int32_t));
    m->acts_cap_bt = cap_bt;
    m->acts_cap_saved = cap_saved;
}

/* ---------------------------------------------------------------- forward */

int gpt_check_tokens(const gpt_model *m, const int32_t *tokens, size_t B, size_t T, gk_err *err) {
    if (T < 1 || B < 1) return gk_errf(err, "empty batch (B=%zu, T=%zu)", B, T);
    if (T > (size_t)m->cfg.n_ctx) return gk_errf(err, "sequence length %zu exceeds the model's context %d", T, m->cfg.n_ctx);
    for (size_t i = 0; i < B * T; i++)
        if (tokens[i] < 0 || tokens[i] >= m->cfg.vocab_size)
            return gk_errf(err, "token id %d at [%zu, %zu] is outside the vocabulary [0, %d)",
                           (int)tokens[i], i / T, i % T, m->cfg.vocab_size);
    return 0;
}

void gpt_forward(gpt_model *m, const int32_t *tokens, size_t B, size_t T) {
    const gpt_config *c = &m->cfg;
    GK_CHECK(B >= 1 && T >= 1 && T <= (size_t)c->n_ctx, "gpt_forward: B=%zu T=%zu (n_ctx %d)", B, T, c->n_ctx);
    acts_reserve(m, B, T);
    m->B = B; m->T = T;
    size_t BT = B * T, C = (size_t)c->n_embd, NH = (size_t)c->n_head, L = (size_t)c->n_layer;
    gpt_acts *a = &m->acts;
    kern_upload(m->be, a->tokens, tokens, BT * sizeof(int32_t));

    /* x0[b,t,:] = wte[tok[b,t],:] + wpe[t,:] */
    kern_embed_fwd(m->be, a->x, a->tokens, m->params + m->table[0].offset, m->params + m->table[1].offset, B, T, C, 0);

    for (size_t l = 0; l < L; l++) {
        gpt_layer_ptrs w = gpt_layer(m->params, m, (int)l);
        float *x = a->x + l * BT * C, *xo = a->x + (l + 1) * BT * C;
        float *ln1 = a->ln1 + l * BT * C, *ln1_mean = a->ln1_mean + l * BT, *ln1_rstd = a->ln1_rstd + l * BT;
        float *qkv = a->qkv + l * BT * 3 * C, *atty = a->atty + l * BT * C, *att_saved = a->att_saved + l * m->acts_cap_saved;
        float *res2 = a->res2 + l * BT * C;
        float *ln2 = a->ln2 + l * BT * C, *ln2_mean = a->ln2_mean + l * BT, *ln2_rstd = a->ln2_rstd + l * BT;
        float *fch = a->fch + l * BT * 4 * C, *fch_gelu = a->fch_gelu + l * BT * 4 * C;
        /* ln1 = (x - mean) * rstd * ln1_w + ln1_b,   rstd = 1/sqrt(var + eps) */
        kern_layernorm_fwd(m->be, ln1, ln1_mean, ln1_rstd, x, w.ln1_w, w.ln1_b, BT, C, c->ln_eps);
        /* qkv [BT,3C] = ln1 @ c_attn.weight [C,3C] + c_attn.bias */
        kern_matmul_fwd(m->be, qkv, ln1, w.qkv_w, w.qkv_b, BT, C, 3 * C, KERN_W_IN_OUT);
        /* atty = per head softmax(q k^T / sqrt(hs) + causal mask) v */
        kern_attention_fwd(m->be, atty, att_saved, qkv, B, T, C, NH);
        /* res2 = x + atty @ attn.c_proj.weight + attn.c_proj.bias */
        kern_matmul_fwd(m->be, res2, atty, w.proj_w, w.proj_b, BT, C, C, KERN_W_IN_OUT);
        kern_axpy(m->be, res2, 1.0f, x, BT * C);
        /* ln2 = LayerNorm(res2) */
        kern_layernorm_fwd(m->be, ln2, ln2_mean, ln2_rstd, res2, w.ln2_w, w.ln2_b, BT, C, c->ln_eps);
        /* fch [BT,4C] = ln2 @ c_fc.weight + c_fc.bias;  fch_gelu = gelu_tanh(fch) */
        kern_matmul_fwd(m->be, fch, ln2, w.fc_w, w.fc_b, BT, C, 4 * C, KERN_W_IN_OUT);
        kern_gelu_fwd(m->be, fch_gelu, fch, BT * 4 * C);
        /* x_{l+1} = res2 + fch_gelu @ mlp.c_proj.weight [4C,C] + mlp.c_proj.bias */
        kern_matmul_fwd(m->be, xo, fch_gelu, w.fcproj_w, w.fcproj_b, BT, 4 * C, C, KERN_W_IN_OUT);
        kern_axpy(m->be, xo, 1.0f, res2, BT * C);
    }
    /* h = ln_f(x_L) */
    kern_layernorm_fwd(m->be, a->lnf, a->lnf_mean, a->lnf_rstd, a->x + L * BT * C,
                       m->params + tbl_final(m, 0)->offset, m->params + tbl_final(m, 1)->offset, BT, C, c->ln_eps);
}

const float *gpt_hidden(const gpt_model *m) { return m->acts.lnf; }

/* ---------------------------------------------------------------- heads */

void gpt_lm_head_fwd(gpt_model *m, float *logits, const float *h, size_t N) {
    /* logits [N,V] = h [N,C] @ wte[V,C]^T  (torch.nn.Linear layout: tied lm_head.weight == wte) */
    kern_matmul_fwd(m->be, logits, h, m->params + m->table[0].offset, NULL, N, (size_t)m->cfg.n_embd,
                    (size_t)m->cfg.vocab_size, KERN_W_OUT_IN);
}

void gpt_lm_head_bwd(gpt_model *m, float *dh, const float *dlogits, const float *h, size_t N) {
    /* dh += dlogits @ wte;  dwte += dlogits^T @ h — the tied weight's second gradient contribution */
    kern_matmul_bwd(m->be, dh, gptr(grad_base(m, GPT_GROUP_EMBED), &m->table[0]), NULL, dlogits, h,
                    m->params + m->table[0].offset, N, (size_t)m->cfg.n_embd, (size_t)m->cfg.vocab_size, KERN_W_OUT_IN);
}

void gpt_score_head_fwd(gpt_model *m, float *r, const float *h, size_t N) {
    /* r [N] = h [N,C] . score.weight[0,:] */
    kern_matmul_fwd(m->be, r, h, m->params + tbl_score(m)->offset, NULL, N, (size_t)m->cfg.n_embd, 1, KERN_W_OUT_IN);
}

void gpt_score_head_bwd(gpt_model *m, float *dh, const float *dr, const float *h, size_t N) {
    /* dh [N,C] += dr[n] * score.weight;  dscore += sum_n dr[n] h[n,:] */
    const gpt_param *p = tbl_score(m);
    kern_matmul_bwd(m->be, dh, gptr(grad_base(m, GPT_GROUP_SCORE), p), NULL, dr, h, m->params + p->offset,
                    N, (size_t)m->cfg.n_embd, 1, KERN_W_OUT_IN);
}

/* ---------------------------------------------------------------- backward */

void gpt_backward(gpt_model *m, float *dh) {
    const gpt_config *c = &m->cfg;
    GK_CHECK(m->acts_cap_bt > 0 && m->B > 0, "gpt_backward without a forward pass");
    size_t B = m->B, T = m->T, BT = B * T, C = (size_t)c->n_embd, NH = (size_t)c->n_head, L = (size_t)c->n_layer;
    gpt_acts *a = &m->acts;
    float *g_embed = grad_base(m, GPT_GROUP_EMBED), *g_blocks = grad_base(m, GPT_GROUP_BLOCKS);
    float *g_final = grad_base(m, GPT_GROUP_FINAL);
    /* How far down the gradient has to flow: nothing below the lowest trainable group is computed. */
    int need_blocks = g_blocks || g_embed;   /* some group at or below the blocks wants gradients */
    if (!g_final && !need_blocks) return;

    float *dres = m->scratch;                  /* [BT,C]  d(residual stream) at the current depth */
    float *dbig1 = m->scratch + BT * C;        /* [BT,4C] */
    float *dbig2 = m->scratch + BT * 5 * C;    /* [BT,4C] */
    float *dsmall = dh;                        /* [BT,C]  dh is free once ln_f's backward has read it */

    /* h = ln_f(x_L):  dx_L = LN_bwd(dh);  d ln_f.{weight,bias} */
    kern_zero(m->be, dres, BT * C * sizeof(float));
    kern_layernorm_bwd(m->be, need_blocks ? dres : NULL, gptr(g_final, tbl_final(m, 0)), gptr(g_final, tbl_final(m, 1)),
                       dh, a->x + L * BT * C, m->params + tbl_final(m, 0)->offset, a->lnf_mean, a->lnf_rstd, BT, C);
    if (!need_blocks) return;

    for (size_t li = L; li-- > 0;) {
        gpt_layer_ptrs w = gpt_layer(m->params, m, (int)li);
        gpt_layer_ptrs g = gpt_layer(g_blocks, m, (int)li);   /* all NULL if the blocks are frozen */
        /* Does anything below this point need the gradient w.r.t. this layer's input? */
        int need_input = g_embed || (g_blocks && li > 0);
        float *x = a->x + li * BT * C;
        float *ln1 = a->ln1 + li * BT * C, *ln1_mean = a->ln1_mean + li * BT, *ln1_rstd = a->ln1_rstd + li * BT;
        float *qkv = a->qkv + li * BT * 3 * C, *atty = a->atty + li * BT * C;
        float *att_saved = a->att_saved + li * m->acts_cap_saved;
        float *res2 = a->res2 + li * BT * C;
        float *ln2 = a->ln2 + li * BT * C, *ln2_mean = a->ln2_mean + li * BT, *ln2_rstd = a->ln2_rstd + li * BT;
        float *fch = a->fch + li * BT * 4 * C, *fch_gelu = a->fch_gelu + li * BT * 4 * C;

        /* x_{l+1} = res2 + fch_gelu @ Wp + bp:  d res2 = dres (residual, kept in dres);
         * d fch_gelu = dres @ Wp^T;  dWp += fch_gelu^T dres;  dbp += sum dres */
        kern_zero(m->be, dbig1, BT * 4 * C * sizeof(float));
        kern_matmul_bwd(m->be, dbig1, g.fcproj_w, g.fcproj_b, dres, fch_gelu, w.fcproj_w, BT, 4 * C, C, KERN_W_IN_OUT);
        /* fch_gelu = gelu(fch):  d fch = gelu'(fch) * d fch_gelu */
        kern_zero(m->be, dbig2, BT * 4 * C * sizeof(float));
        kern_gelu_bwd(m->be, dbig2, fch, dbig1, BT * 4 * C);
        /* fch = ln2 @ Wfc + bfc:  d ln2 = d fch @ Wfc^T;  dWfc += ln2^T d fch */
        kern_zero(m->be, dsmall, BT * C * sizeof(float));
        kern_matmul_bwd(m->be, dsmall, g.fc_w, g.fc_b, dbig2, ln2, w.fc_w, BT, C, 4 * C, KERN_W_IN_OUT);
        /* ln2 = LN(res2):  d res2 += LN_bwd(d ln2) */
        kern_layernorm_bwd(m->be, dres, g.ln2_w, g.ln2_b, dsmall, res2, w.ln2_w, ln2_mean, ln2_rstd, BT, C);
        /* res2 = x + atty @ Wo + bo:  d x = d res2 (residual, stays in dres);  d atty = d res2 @ Wo^T */
        kern_zero(m->be, dsmall, BT * C * sizeof(float));
        kern_matmul_bwd(m->be, dsmall, g.proj_w, g.proj_b, dres, atty, w.proj_w, BT, C, C, KERN_W_IN_OUT);
        /* atty = attention(qkv):  d qkv (dbig1 reused as [BT,3C]) */
        kern_zero(m->be, dbig1, BT * 3 * C * sizeof(float));
        kern_attention_bwd(m->be, dbig1, dsmall, qkv, atty, att_saved, B, T, C, NH);
        /* qkv = ln1 @ Wqkv + bqkv:  d ln1 = d qkv @ Wqkv^T */
        kern_zero(m->be, dsmall, BT * C * sizeof(float));
        kern_matmul_bwd(m->be, dsmall, g.qkv_w, g.qkv_b, dbig1, ln1, w.qkv_w, BT, C, 3 * C, KERN_W_IN_OUT);
        /* ln1 = LN(x):  d x += LN_bwd(d ln1)  (only if something below wants it) */
        kern_layernorm_bwd(m->be, need_input ? dres : NULL, g.ln1_w, g.ln1_b, dsmall, x, w.ln1_w, ln1_mean, ln1_rstd, BT, C);
        if (!need_input) return;
    }
    /* x0 = wte[tok] + wpe[pos]:  scatter-add dres into the embedding rows */
    if (g_embed)
        kern_embed_bwd(m->be, g_embed + m->table[0].offset, g_embed + m->table[1].offset, dres, a->tokens, B, T, C, 0);
}
