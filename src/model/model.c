/* model.c: config, parameter table (sizes from the architecture fields, lookups by role), the trunk's
 * forward/backward over the layers, and the two heads.
 *
 * The architecture (Radford et al. 2019, as in HF transformers' GPT2Model):
 *   x0 = wte[tok] + wpe[pos]
 *   for each layer:  x = block(x)            (block.c: x = x + attn(ln_1(x));  x = x + mlp(ln_2(x)))
 *   h  = ln_f(x)
 * with pre-LayerNorm (eps cfg.ln_eps), causal multi-head attention scaled by 1/sqrt(head_dim),
 * mlp(u) = c_proj(gelu_tanh(c_fc(u))), Conv1D weights stored [in, out]. The LM head is tied by default
 * (logits = h @ wte^T) or its own lm_head.weight. Losses are not here (see model.h).
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
    c->arch = GPT_ARCH_GPT2;
    c->n_layer = 6; c->n_head = 6; c->n_embd = 384;
    c->n_kv_head = 0; c->n_inner = 0;   /* resolved from n_head / n_embd, so setting the dims later keeps them right */
    c->vocab_size = 50257;
    c->n_ctx = 1024;
    c->norm = GPT_NORM_LAYERNORM; c->ln_eps = 1e-5f;
    c->pos = GPT_POS_LEARNED; c->rope_theta = 10000.0f;
    c->act = GPT_ACT_GELU_TANH;
    c->bias = 1;
    c->tied_head = 1;
    c->score_head = 0;
}

void gpt_config_llama(gpt_config *c) {
    gpt_config_default(c);
    c->arch = GPT_ARCH_LLAMA;
    c->n_kv_head = 2; c->n_inner = 1024;
    c->norm = GPT_NORM_RMSNORM;
    c->pos = GPT_POS_ROPE; c->rope_theta = 10000.0f;
    c->act = GPT_ACT_SWIGLU;
    c->bias = 0;
    c->tied_head = 0;
}

/* LLaMA dims for a GPT-2-style size: grouped-query where the head count allows, SwiGLU width 8C/3 (64-aligned). */
static void llama_dims(gpt_config *c) {
    int H = c->n_head;
    c->n_kv_head = H % 3 == 0 ? H / 3 : H % 2 == 0 ? H / 2 : H;
    c->n_inner = (8 * c->n_embd / 3 + 63) / 64 * 64;
}

int gpt_config_from_name(gpt_config *c, const char *name, gk_err *err) {
    static const struct { const char *name; int L, H, C; } named[] = {
        {"d6", 6, 6, 384}, {"d12", 12, 12, 768}, {"d24", 24, 16, 1024}, {"d36", 36, 20, 1280}, {"d48", 48, 25, 1600},
    };
    if (c->arch == GPT_ARCH_LLAMA && !strcmp(name, "llama-135m")) {   /* SmolLM-135M's shape */
        c->n_layer = 30; c->n_head = 9; c->n_kv_head = 3; c->n_embd = 576; c->n_inner = 1536;
        return 0;
    }
    for (size_t i = 0; i < sizeof named / sizeof named[0]; i++)
        if (!strcmp(name, named[i].name)) {
            c->n_layer = named[i].L; c->n_head = named[i].H; c->n_embd = named[i].C;
            if (c->arch == GPT_ARCH_LLAMA) llama_dims(c);
            return 0;
        }
    long n;
    if (name[0] != 'd' || gk_parse_long(name + 1, &n) || n < 1 || n > 1000)
        return gk_errf(err, "unknown model size \"%s\" (expected d6, d12, d24, d36, d48 or dN with N in 1..1000%s)", name,
                       c->arch == GPT_ARCH_LLAMA ? ", or llama-135m" : "");
    c->n_layer = (int)n; c->n_head = (int)n; c->n_embd = 64 * (int)n;
    if (c->arch == GPT_ARCH_LLAMA) llama_dims(c);
    return 0;
}

int gpt_wlayout(const gpt_config *c) { return c->arch == GPT_ARCH_LLAMA ? KERN_W_OUT_IN : KERN_W_IN_OUT; }

/* HF: inv_freq[i] = 1 / theta^(2i / hs) in fp32; llama3 scaling (HF _compute_llama3_parameters): wavelengths longer
 * than orig_ctx / low_freq_factor are divided by factor, shorter than orig_ctx / high_freq_factor kept, and those
 * between interpolated smoothly. */
void gpt_rope_inv_freq(const gpt_config *c, float *inv_freq) {
    int hs = c->n_embd / c->n_head;
    for (int i = 0; i < hs / 2; i++) {
        float f = 1.0f / powf(c->rope_theta, (float)(2 * i) / (float)hs);
        if (c->rope_scaling == GPT_ROPE_SCALE_LLAMA3) {
            float pi = 3.14159265358979323846f, wavelen = 2 * pi / f;
            float low_wl = (float)c->rope_orig_ctx / c->rope_low_freq_factor;
            float high_wl = (float)c->rope_orig_ctx / c->rope_high_freq_factor;
            float fl = wavelen > low_wl ? f / c->rope_factor : f;
            if (!(wavelen < high_wl) && !(wavelen > low_wl)) {
                float sm = ((float)c->rope_orig_ctx / wavelen - c->rope_low_freq_factor) /
                           (c->rope_high_freq_factor - c->rope_low_freq_factor);
                fl = (1 - sm) * fl / c->rope_factor + sm * fl;
            }
            f = fl;
        }
        inv_freq[i] = f;
    }
}

int gpt_config_n_kv_head(const gpt_config *c) { return c->n_kv_head ? c->n_kv_head : c->n_head; }
int gpt_config_n_inner(const gpt_config *c) { return c->n_inner ? c->n_inner : 4 * c->n_embd; }

const char *gpt_arch_name(int arch) {
    switch (arch) {
    case GPT_ARCH_GPT2: return "gpt2";
    case GPT_ARCH_LLAMA: return "llama";
    default: return "?";
    }
}

int gpt_config_check_dims(const gpt_config *c, gk_err *err) {
    if (c->arch != GPT_ARCH_GPT2 && c->arch != GPT_ARCH_LLAMA) return gk_errf(err, "unknown architecture %d", c->arch);
    if (c->n_layer < 1 || c->n_layer > 4096) return gk_errf(err, "n_layer %d out of range [1, 4096]", c->n_layer);
    if (c->n_head < 1 || c->n_head > 4096) return gk_errf(err, "n_head %d out of range [1, 4096]", c->n_head);
    if (c->n_embd < 1 || c->n_embd > (1 << 16)) return gk_errf(err, "n_embd %d out of range [1, 65536]", c->n_embd);
    if (c->n_embd % c->n_head) return gk_errf(err, "n_embd %d is not divisible by n_head %d", c->n_embd, c->n_head);
    if (c->n_kv_head < 0 || c->n_kv_head > c->n_head || (c->n_kv_head && c->n_head % c->n_kv_head))
        return gk_errf(err, "n_kv_head %d must divide n_head %d (0 = n_head)", c->n_kv_head, c->n_head);
    if (c->n_inner < 0 || c->n_inner > (1 << 20)) return gk_errf(err, "n_inner %d out of range [1, 2^20] (0 = 4 * n_embd)", c->n_inner);
    if (c->vocab_size < 1 || c->vocab_size > (1 << 24)) return gk_errf(err, "vocab_size %d out of range [1, 2^24]", c->vocab_size);
    if (c->n_ctx < 1 || c->n_ctx > (1 << 20)) return gk_errf(err, "n_ctx %d out of range [1, 2^20]", c->n_ctx);
    if (c->norm != GPT_NORM_LAYERNORM && c->norm != GPT_NORM_RMSNORM) return gk_errf(err, "unknown norm type %d", c->norm);
    if (!(c->ln_eps > 0 && c->ln_eps < 1)) return gk_errf(err, "layer_norm_epsilon %g out of range (0, 1)", (double)c->ln_eps);
    if (c->pos != GPT_POS_LEARNED && c->pos != GPT_POS_ROPE) return gk_errf(err, "unknown position encoding %d", c->pos);
    if (c->pos == GPT_POS_ROPE && !(c->rope_theta > 0)) return gk_errf(err, "rope_theta %g must be > 0", (double)c->rope_theta);
    if (c->act != GPT_ACT_GELU_TANH && c->act != GPT_ACT_SWIGLU) return gk_errf(err, "unknown activation %d", c->act);
    if (c->rope_scaling != GPT_ROPE_SCALE_NONE && c->rope_scaling != GPT_ROPE_SCALE_LLAMA3)
        return gk_errf(err, "unknown rope scaling %d", c->rope_scaling);
    if (c->rope_scaling == GPT_ROPE_SCALE_LLAMA3 &&
        !(c->rope_factor > 0 && c->rope_low_freq_factor > 0 && c->rope_high_freq_factor > c->rope_low_freq_factor &&
          c->rope_orig_ctx > 0))
        return gk_errf(err, "llama3 rope scaling needs factor > 0, high_freq_factor > low_freq_factor > 0 and "
                       "original_max_position_embeddings > 0");
    return 0;
}

/* What the block and the kernels implement today: GPT-2 exactly, with any FFN width and a tied or untied head.
 * Everything else is describable (the table sizes it) but refused here, by name, until its ops exist. */
int gpt_config_validate(const gpt_config *c, gk_err *err) {
    if (gpt_config_check_dims(c, err)) return -1;
    if (c->arch == GPT_ARCH_LLAMA) {
        /* the LLaMA family as HF LlamaForCausalLM (and Qwen2, Mistral) runs it */
        if (c->norm != GPT_NORM_RMSNORM) return gk_errf(err, "architecture llama: norm layernorm not supported (only rmsnorm)");
        if (c->pos != GPT_POS_ROPE) return gk_errf(err, "architecture llama: learned positions not supported (only rope)");
        if (c->act != GPT_ACT_SWIGLU) return gk_errf(err, "architecture llama: activation gelu not supported (only swiglu)");
        if (c->bias) return gk_errf(err, "architecture llama: biases on every layer not supported (only a q/k/v bias)");
        if ((c->n_embd / c->n_head) % 2) return gk_errf(err, "architecture llama: head_dim %d must be even for rotary embeddings", c->n_embd / c->n_head);
        return 0;
    }
    if (c->qkv_bias) return gk_errf(err, "architecture gpt2: a separate q/k/v bias is not supported");
    if (c->arch != GPT_ARCH_GPT2) return gk_errf(err, "architecture %s: not supported yet", gpt_arch_name(c->arch));
    if (c->norm != GPT_NORM_LAYERNORM) return gk_errf(err, "norm rmsnorm: not supported yet (only layernorm)");
    if (c->pos != GPT_POS_LEARNED) return gk_errf(err, "position encoding rope: not supported yet (only learned)");
    if (c->act != GPT_ACT_GELU_TANH) return gk_errf(err, "activation swiglu: not supported yet (only gelu_tanh)");
    if (gpt_config_n_kv_head(c) != c->n_head)
        return gk_errf(err, "grouped-query attention (n_kv_head %d < n_head %d): not supported yet", c->n_kv_head, c->n_head);
    if (!c->bias) return gk_errf(err, "bias off: not supported yet (GPT-2's layers all have biases)");
    return 0;
}

/* ---------------------------------------------------------------- parameter table */
/* One line per tensor: its role, HF GPT-2 name, shape in named model dims, and when the architecture has it.
 * Adding a tensor is one line here (and, for a layer tensor, one field in gpt_layer_ptrs). */
enum { INIT_NORMAL = 0, INIT_PROJ, INIT_ZERO, INIT_ONE };
enum { DIM_ONE = 0, DIM_C, DIM_V, DIM_CTX, DIM_QKV, DIM_INNER };
enum { HAS_ALWAYS = 0, HAS_LEARNED_POS, HAS_BIAS, HAS_QKV_BIAS, HAS_NORM_BIAS, HAS_GATE, HAS_UNTIED, HAS_SCORE };
typedef struct {
    int role;
    const char *name;   /* layer tensors: suffix after "h.<l>." */
    const char *lname;  /* the LLaMA family's name (HF LlamaForCausalLM's without "model."; layers "layers.<l>.") */
    int ndim, d[2];     /* DIM_* */
    int decay, init, has;
    size_t field;       /* offsetof(gpt_layer_ptrs, ...) for layer tensors */
} param_spec;

#define LF(f) offsetof(gpt_layer_ptrs, f)
static const param_spec embed_specs[] = {
    /* decay on wte: it is also the (tied) LM head's matrix. Position embeddings are excluded (issue 2). */
    {GPT_ROLE_EMBED_TOK, "wte.weight", "embed_tokens.weight", 2, {DIM_V, DIM_C},   1, INIT_NORMAL, HAS_ALWAYS, 0},
    {GPT_ROLE_EMBED_POS, "wpe.weight", NULL, 2, {DIM_CTX, DIM_C}, 0, INIT_NORMAL, HAS_LEARNED_POS, 0},
};
static const param_spec layer_specs[] = {
    {GPT_ROLE_LN1_W,    "ln_1.weight", "input_layernorm.weight",        1, {DIM_C, DIM_ONE},     0, INIT_ONE,    HAS_ALWAYS,    LF(ln1_w)},
    {GPT_ROLE_LN1_B,    "ln_1.bias", NULL,          1, {DIM_C, DIM_ONE},     0, INIT_ZERO,   HAS_NORM_BIAS, LF(ln1_b)},
    {GPT_ROLE_QKV_W,    "attn.c_attn.weight", "self_attn.qkv_proj.weight", 2, {DIM_C, DIM_QKV},     1, INIT_NORMAL, HAS_ALWAYS,    LF(qkv_w)},
    {GPT_ROLE_QKV_B,    "attn.c_attn.bias", "self_attn.qkv_proj.bias",   1, {DIM_QKV, DIM_ONE},   0, INIT_ZERO,   HAS_QKV_BIAS,  LF(qkv_b)},
    {GPT_ROLE_PROJ_W,   "attn.c_proj.weight", "self_attn.o_proj.weight", 2, {DIM_C, DIM_C},       1, INIT_PROJ,   HAS_ALWAYS,    LF(proj_w)},
    {GPT_ROLE_PROJ_B,   "attn.c_proj.bias", NULL,   1, {DIM_C, DIM_ONE},     0, INIT_ZERO,   HAS_BIAS,      LF(proj_b)},
    {GPT_ROLE_LN2_W,    "ln_2.weight", "post_attention_layernorm.weight",        1, {DIM_C, DIM_ONE},     0, INIT_ONE,    HAS_ALWAYS,    LF(ln2_w)},
    {GPT_ROLE_LN2_B,    "ln_2.bias", NULL,          1, {DIM_C, DIM_ONE},     0, INIT_ZERO,   HAS_NORM_BIAS, LF(ln2_b)},
    {GPT_ROLE_FC_W,     "mlp.c_fc.weight", "mlp.up_proj.weight",    2, {DIM_C, DIM_INNER},   1, INIT_NORMAL, HAS_ALWAYS,    LF(fc_w)},
    {GPT_ROLE_FC_B,     "mlp.c_fc.bias", NULL,      1, {DIM_INNER, DIM_ONE}, 0, INIT_ZERO,   HAS_BIAS,      LF(fc_b)},
    {GPT_ROLE_GATE_W,   "mlp.c_gate.weight", "mlp.gate_proj.weight",  2, {DIM_C, DIM_INNER},   1, INIT_NORMAL, HAS_GATE,      LF(gate_w)},
    {GPT_ROLE_FCPROJ_W, "mlp.c_proj.weight", "mlp.down_proj.weight",  2, {DIM_INNER, DIM_C},   1, INIT_PROJ,   HAS_ALWAYS,    LF(fcproj_w)},
    {GPT_ROLE_FCPROJ_B, "mlp.c_proj.bias", NULL,    1, {DIM_C, DIM_ONE},     0, INIT_ZERO,   HAS_BIAS,      LF(fcproj_b)},
};
#undef LF
static const param_spec final_specs[] = {
    {GPT_ROLE_LNF_W, "ln_f.weight", "norm.weight", 1, {DIM_C, DIM_ONE}, 0, INIT_ONE,  HAS_ALWAYS,    0},
    {GPT_ROLE_LNF_B, "ln_f.bias", NULL,   1, {DIM_C, DIM_ONE}, 0, INIT_ZERO, HAS_NORM_BIAS, 0},
    /* untied LM head: torch.nn.Linear(C, V, bias=False).weight [V, C], HF's top-level "lm_head.weight" */
    {GPT_ROLE_LM_HEAD, "lm_head.weight", "lm_head.weight", 2, {DIM_V, DIM_C}, 1, INIT_NORMAL, HAS_UNTIED, 0},
};
/* HF GPT2ForSequenceClassification's score = nn.Linear(C, 1, bias=False): weight [1, C]. */
static const param_spec score_specs[] = {
    {GPT_ROLE_SCORE, "score.weight", "score.weight", 2, {DIM_ONE, DIM_C}, 1, INIT_NORMAL, HAS_SCORE, 0},
};
#define NSPEC(a) (sizeof a / sizeof a[0])
#define N_LAYER_SPECS NSPEC(layer_specs)

static size_t dim_eval(int d, const gpt_config *c) {
    size_t C = (size_t)c->n_embd, hs = C / (size_t)c->n_head;
    switch (d) {
    case DIM_C: return C;
    case DIM_V: return (size_t)c->vocab_size;
    case DIM_CTX: return (size_t)c->n_ctx;
    case DIM_QKV: return ((size_t)c->n_head + 2 * (size_t)gpt_config_n_kv_head(c)) * hs;   /* q | k | v */
    case DIM_INNER: return (size_t)gpt_config_n_inner(c);
    default: return 1;
    }
}

static int spec_present(const param_spec *s, const gpt_config *c) {
    switch (s->has) {
    case HAS_LEARNED_POS: return c->pos == GPT_POS_LEARNED;
    case HAS_BIAS: return c->bias;
    case HAS_QKV_BIAS: return c->bias || c->qkv_bias;
    case HAS_NORM_BIAS: return c->bias && c->norm == GPT_NORM_LAYERNORM;   /* RMSNorm has no bias */
    case HAS_GATE: return c->act == GPT_ACT_SWIGLU;
    case HAS_UNTIED: return !c->tied_head;
    case HAS_SCORE: return c->score_head;
    default: return 1;
    }
}

static void table_add(gpt_model *m, const param_spec *s, int layer, int group, size_t *cap) {
    if (!spec_present(s, &m->cfg)) return;
    if (m->n_table == *cap) { *cap = *cap ? 2 * *cap : 64; m->table = gk_realloc(m->table, *cap * sizeof *m->table); }
    gpt_param *p = &m->table[m->n_table];
    memset(p, 0, sizeof *p);
    int llama = m->cfg.arch == GPT_ARCH_LLAMA;
    GK_CHECK(!llama || s->lname, "parameter %s has no LLaMA name", s->name);
    if (layer >= 0) snprintf(p->name, sizeof p->name, llama ? "layers.%d.%s" : "h.%d.%s", layer, llama ? s->lname : s->name);
    else snprintf(p->name, sizeof p->name, "%s", llama ? s->lname : s->name);
    p->ndim = s->ndim;
    p->shape[0] = dim_eval(s->d[0], &m->cfg);
    p->shape[1] = s->ndim == 2 ? dim_eval(s->d[1], &m->cfg) : 1;
    if (llama && layer >= 0 && s->ndim == 2) {   /* nn.Linear: [out, in] */
        size_t t = p->shape[0]; p->shape[0] = p->shape[1]; p->shape[1] = t;
    }
    p->numel = p->shape[0] * p->shape[1];
    p->offset = m->num_params;
    p->role = s->role;
    p->layer = layer;
    p->group = group;
    p->decay = s->decay;
    p->init = s->init;
    m->role_at[(size_t)(layer + 1) * GPT_NROLES + (size_t)s->role] = (int)m->n_table;
    m->n_table++;
    m->num_params += p->numel;
}

gpt_model *gpt_create_table(const gpt_config *cfg, kern_backend *be) {
    gk_err err;
    GK_CHECK(gpt_config_check_dims(cfg, &err) == 0, "gpt_create: invalid config: %s", err.msg);
    /* the largest valid config must not overflow size_t arithmetic: 4096 layers x (65536 x 2^20) x 4 < 2^64 */
    gpt_model *m = gk_calloc(1, sizeof *m);
    m->cfg = *cfg;
    m->own_be = be == NULL;
    m->be = be ? be : kern_backend_create(NULL, NULL);
    size_t n_roles = ((size_t)cfg->n_layer + 1) * GPT_NROLES;
    m->role_at = gk_malloc(n_roles * sizeof *m->role_at);
    for (size_t i = 0; i < n_roles; i++) m->role_at[i] = -1;
    size_t cap = 0;
    for (size_t i = 0; i < NSPEC(embed_specs); i++) table_add(m, &embed_specs[i], -1, GPT_GROUP_EMBED, &cap);
    for (int l = 0; l < cfg->n_layer; l++)
        for (size_t i = 0; i < N_LAYER_SPECS; i++) table_add(m, &layer_specs[i], l, GPT_GROUP_BLOCKS, &cap);
    for (size_t i = 0; i < NSPEC(final_specs); i++) table_add(m, &final_specs[i], -1, GPT_GROUP_FINAL, &cap);
    for (size_t i = 0; i < NSPEC(score_specs); i++) table_add(m, &score_specs[i], -1, GPT_GROUP_SCORE, &cap);
    /* a tied head IS the token embedding: the role points at wte's entry */
    if (cfg->tied_head) m->role_at[GPT_ROLE_LM_HEAD] = m->role_at[GPT_ROLE_EMBED_TOK];
    for (int g = 0; g < GPT_NGROUPS; g++) m->trainable[g] = 1;
    return m;
}

void gpt_alloc_params(gpt_model *m) {
    if (!m->params) m->params = kern_alloc(m->be, m->num_params * sizeof(float));
    if (m->cfg.pos == GPT_POS_ROPE && !m->inv_freq) {
        size_t half = (size_t)(m->cfg.n_embd / m->cfg.n_head / 2);
        float *h = gk_malloc((half ? half : 1) * sizeof(float));
        gpt_rope_inv_freq(&m->cfg, h);
        m->inv_freq = kern_alloc(m->be, (half ? half : 1) * sizeof(float));
        kern_upload(m->be, m->inv_freq, h, half * sizeof(float));
        free(h);
    }
}

gpt_model *gpt_create(const gpt_config *cfg) { return gpt_create_on(cfg, NULL); }
gpt_model *gpt_create_on(const gpt_config *cfg, kern_backend *be) {
    gk_err err;
    GK_CHECK(gpt_config_validate(cfg, &err) == 0, "gpt_create: config not runnable: %s", err.msg);
    gpt_model *m = gpt_create_table(cfg, be);
    gpt_alloc_params(m);
    return m;
}

static void acts_free(gpt_model *m) {
    gpt_acts *a = &m->acts;
    float **fs[] = {&a->x, &a->ln1, &a->ln1_mean, &a->ln1_rstd, &a->qkv, &a->atty, &a->att_saved, &a->res2,
                    &a->ln2, &a->ln2_mean, &a->ln2_rstd, &a->fch, &a->fch_gelu, &a->lnf, &a->lnf_mean, &a->lnf_rstd,
                    &a->gate, &a->qkve};
    for (size_t i = 0; i < sizeof fs / sizeof fs[0]; i++) { kern_free(m->be, *fs[i]); *fs[i] = NULL; }
    kern_free(m->be, a->tokens); a->tokens = NULL;
    kern_free(m->be, a->rpos); a->rpos = NULL;
    kern_free(m->be, m->scratch); m->scratch = NULL;
    m->acts_cap_bt = 0; m->acts_cap_saved = 0;
}

gpt_model *gpt_create_view(gpt_model *base) {
    GK_CHECK(base->params, "gpt_create_view of a model without parameters");
    gpt_model *v = gpt_create_table(&base->cfg, base->be);   /* the same table, borrowed backend */
    if (base->qw) {   /* a quantized base (QLoRA) is shared as it is: its compacted offsets and its blocks */
        memcpy(v->table, base->table, base->n_table * sizeof *v->table);
        v->qw = base->qw;
    }
    v->params = base->params;
    v->inv_freq = base->inv_freq;
    v->view = 1;
    for (int g = 0; g < GPT_NGROUPS; g++) v->trainable[g] = 0;   /* a view never trains the shared base */
    return v;
}

void gpt_add_score_head(gpt_model *m) {
    if (m->cfg.score_head) return;
    GK_CHECK(!m->view, "gpt_add_score_head on a view");
    gpt_dequantize_weights(m);
    gpt_config c = m->cfg;
    c.score_head = 1;
    gpt_model *t = gpt_create_table(&c, m->be);   /* the score head is the table's last entry */
    float *p = kern_alloc(m->be, t->num_params * sizeof(float));   /* zero-filled: the new head is 0 */
    kern_copy(m->be, p, m->params, m->num_params * sizeof(float));
    kern_free(m->be, m->params);
    m->params = p;
    if (m->grads) { kern_free(m->be, m->grads); m->grads = kern_alloc(m->be, t->num_params * sizeof(float)); }
    free(m->table); free(m->role_at);
    m->table = t->table; m->n_table = t->n_table; m->role_at = t->role_at; m->num_params = t->num_params;
    m->cfg = c;
    t->table = NULL; t->role_at = NULL;
    gpt_free(t);
}

int gpt_has_score_head(const gpt_model *m) { return m->cfg.score_head || (m->lora && m->lora->cfg.score); }

void gpt_free(gpt_model *m) {
    if (!m) return;
    gpt_lora_detach(m);
    acts_free(m);
    if (!m->view) { kern_free(m->be, m->params); kern_free(m->be, m->inv_freq); }
    kern_free(m->be, m->grads);
    if (!m->view) { kern_free(m->be, m->qdata); free(m->qw); }   /* a view borrows its base's blocks */
    free(m->table);
    free(m->role_at);
    if (m->own_be) kern_backend_free(m->be);
    free(m);
}

void gpt_init_random(gpt_model *m, uint64_t seed) {
    GK_CHECK(!m->qw, "gpt_init_random on a model holding quantized weights");
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
    return p && p->offset != GPT_NO_OFFSET ? m->params + p->offset : NULL;
}

const gpt_param *gpt_param_role(const gpt_model *m, int role, int layer) {
    GK_CHECK(role >= 0 && role < GPT_NROLES && layer >= -1 && layer < m->cfg.n_layer,
             "gpt_param_role: role %d, layer %d of %d", role, layer, m->cfg.n_layer);
    int i = m->role_at[(size_t)(layer + 1) * GPT_NROLES + (size_t)role];
    return i < 0 ? NULL : &m->table[i];
}

float *gpt_role_ptr(float *base, const gpt_model *m, int role, int layer) {
    const gpt_param *p = gpt_param_role(m, role, layer);
    return base && p && p->offset != GPT_NO_OFFSET ? base + p->offset : NULL;
}

const gpt_qweight *gpt_param_qweight(const gpt_model *m, const gpt_param *p) {
    if (!m->qw || !p) return NULL;
    const gpt_qweight *q = &m->qw[p - m->table];
    return q->nparts ? q : NULL;
}

size_t gpt_weight_bytes(const gpt_model *m) {
    size_t b = 0;
    for (size_t i = 0; i < m->n_table; i++) {
        const gpt_qweight *q = gpt_param_qweight(m, &m->table[i]);
        if (!q) { b += m->table[i].numel * sizeof(float); continue; }
        for (int k = 0; k < q->nparts; k++) b += q->part[k].rows * kern_qtype_row_bytes(q->part[k].type, q->part[k].cols);
    }
    return b;
}

/* A tensor the caller cannot do without (the architecture guarantees it): found by role or abort. */
static const gpt_param *need_role(const gpt_model *m, int role, int layer) {
    const gpt_param *p = gpt_param_role(m, role, layer);
    GK_CHECK(p, "model has no tensor for role %d (layer %d)", role, layer);
    return p;
}

gpt_layer_ptrs gpt_layer(float *base, const gpt_model *m, int l) {
    gpt_layer_ptrs lp;
    memset(&lp, 0, sizeof lp);
    if (!base) return lp;   /* all NULL: a frozen group's gradients */
    GK_CHECK(l >= 0 && l < m->cfg.n_layer, "gpt_layer: layer %d of %d", l, m->cfg.n_layer);
    for (size_t k = 0; k < N_LAYER_SPECS; k++)
        *(float **)((char *)&lp + layer_specs[k].field) = gpt_role_ptr(base, m, layer_specs[k].role, l);
    if (base == m->params && m->qw) {   /* the matrices kept quantized (inference) */
        lp.qkv_q = gpt_param_qweight(m, gpt_param_role(m, GPT_ROLE_QKV_W, l));
        lp.proj_q = gpt_param_qweight(m, gpt_param_role(m, GPT_ROLE_PROJ_W, l));
        lp.fc_q = gpt_param_qweight(m, gpt_param_role(m, GPT_ROLE_FC_W, l));
        lp.gate_q = gpt_param_qweight(m, gpt_param_role(m, GPT_ROLE_GATE_W, l));
        lp.fcproj_q = gpt_param_qweight(m, gpt_param_role(m, GPT_ROLE_FCPROJ_W, l));
    }
    return lp;
}

void gpt_alloc_grads(gpt_model *m) {
    GK_CHECK(!m->view || !m->qw, "gpt_alloc_grads on a view of a quantized base");
    gpt_dequantize_weights(m);   /* training the base itself needs fp32 weights */
    if (!m->grads) m->grads = kern_alloc(m->be, m->num_params * sizeof(float));
}
void gpt_zero_grads(gpt_model *m) {
    if (m->grads) kern_zero(m->be, m->grads, m->num_params * sizeof(float));
}
void gpt_set_trainable(gpt_model *m, int group, int on) {
    GK_CHECK(group >= 0 && group < GPT_NGROUPS, "gpt_set_trainable: group %d", group);
    m->trainable[group] = on ? 1 : 0;
}

/* ---------------------------------------------------------------- activations */

/* Widest per-row activation: the FFN (I) or the q|k|v projection as attention sees it (3C: grouped-query
 * attention's k, v expanded to every query head). */
static size_t wide_cols(const gpt_config *c) {
    size_t I = (size_t)gpt_config_n_inner(c), qkv = 3 * (size_t)c->n_embd;
    return I > qkv ? I : qkv;
}

/* Sizes the activation buffers for (B, T); grows only. */
static void acts_reserve(gpt_model *m, size_t B, size_t T) {
    const gpt_config *c = &m->cfg;
    size_t BT = B * T, C = (size_t)c->n_embd, L = (size_t)c->n_layer, I = (size_t)gpt_config_n_inner(c);
    size_t saved = kern_attention_saved_floats(m->be, B, T, C, (size_t)c->n_head);
    if (BT <= m->acts_cap_bt && saved <= m->acts_cap_saved) return;
    size_t cap_bt = BT > m->acts_cap_bt ? BT : m->acts_cap_bt;
    size_t cap_saved = saved > m->acts_cap_saved ? saved : m->acts_cap_saved;
    acts_free(m);
    gpt_acts *a = &m->acts;
#define FA(n) ((float *)kern_alloc(m->be, (n) * sizeof(float)))
    a->x = FA((L + 1) * cap_bt * C);
    a->ln1 = FA(L * cap_bt * C); a->ln1_mean = FA(L * cap_bt); a->ln1_rstd = FA(L * cap_bt);
    a->qkv = FA(L * cap_bt * dim_eval(DIM_QKV, c));
    a->atty = FA(L * cap_bt * C);
    a->att_saved = FA(L * cap_saved);
    a->res2 = FA(L * cap_bt * C);
    a->ln2 = FA(L * cap_bt * C); a->ln2_mean = FA(L * cap_bt); a->ln2_rstd = FA(L * cap_bt);
    a->fch = FA(L * cap_bt * I);
    a->fch_gelu = FA(L * cap_bt * I);
    if (c->act == GPT_ACT_SWIGLU) a->gate = FA(L * cap_bt * I);
    if (gpt_config_n_kv_head(c) != c->n_head) a->qkve = FA(L * cap_bt * 3 * C);
    a->lnf = FA(cap_bt * C); a->lnf_mean = FA(cap_bt); a->lnf_rstd = FA(cap_bt);
    m->scratch = FA(cap_bt * (C + 3 * wide_cols(c)));   /* backward: dres [BT,C] | dbig1..3 [BT,W] */
#undef FA
    a->tokens = kern_alloc(m->be, cap_bt * sizeof(int32_t));
    a->rpos = kern_alloc(m->be, cap_bt * sizeof(int32_t));
    m->acts_cap_bt = cap_bt;
    m->acts_cap_saved = cap_saved;
}

/* Layer l's slice of the saved activations of a (B,T) forward, and its attention mode. */
static gpt_block_acts layer_acts(gpt_model *m, size_t l, gpt_attn_mode *am) {
    gpt_acts *a = &m->acts;
    size_t BT = m->B * m->T, C = (size_t)m->cfg.n_embd, I = (size_t)gpt_config_n_inner(&m->cfg);
    gpt_block_acts b = {
        .x = a->x + l * BT * C,
        .ln1 = a->ln1 + l * BT * C, .ln1_mean = a->ln1_mean + l * BT, .ln1_rstd = a->ln1_rstd + l * BT,
        .qkv = a->qkv + l * BT * dim_eval(DIM_QKV, &m->cfg), .atty = a->atty + l * BT * C, .res2 = a->res2 + l * BT * C,
        .ln2 = a->ln2 + l * BT * C, .ln2_mean = a->ln2_mean + l * BT, .ln2_rstd = a->ln2_rstd + l * BT,
        .fch = a->fch + l * BT * I, .fch_gelu = a->fch_gelu + l * BT * I,
        .gate = a->gate ? a->gate + l * BT * I : NULL, .qkve = a->qkve ? a->qkve + l * BT * 3 * C : NULL,
        .xo = a->x + (l + 1) * BT * C,
    };
    memset(am, 0, sizeof *am);
    am->B = m->B; am->T = m->T;
    am->rpos = a->rpos; am->inv_freq = m->inv_freq;
    am->att_saved = a->att_saved + l * m->acts_cap_saved;
    am->lora = m->lora; am->layer = (int)l;
    return b;
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
    if (m->lora) gpt_lora_new_pass(m->lora);   /* new dropout masks (training only) */
    size_t BT = B * T, C = (size_t)c->n_embd, L = (size_t)c->n_layer;
    gpt_acts *a = &m->acts;
    kern_upload(m->be, a->tokens, tokens, BT * sizeof(int32_t));
    if (c->pos == GPT_POS_ROPE) {   /* row b*T + t sits at position t */
        int32_t *p = gk_malloc(BT * sizeof(int32_t));
        for (size_t i = 0; i < BT; i++) p[i] = (int32_t)(i % T);
        kern_upload(m->be, a->rpos, p, BT * sizeof(int32_t));
        free(p);
    }

    /* x0[b,t,:] = wte[tok[b,t],:] + wpe[t,:] */
    gpt_embed_tokens(m, a->x, a->tokens, B, T, 0);
    for (size_t l = 0; l < L; l++) {
        gpt_layer_ptrs w = gpt_layer(m->params, m, (int)l);
        gpt_attn_mode am;
        gpt_block_acts ba = layer_acts(m, l, &am);
        gpt_block_forward(m->be, c, &w, &ba, &am);
    }
    /* h = ln_f(x_L) */
    gpt_norm_fwd(m->be, c, a->lnf, a->lnf_mean, a->lnf_rstd, a->x + L * BT * C, gpt_role_ptr(m->params, m, GPT_ROLE_LNF_W, -1),
                 gpt_role_ptr(m->params, m, GPT_ROLE_LNF_B, -1), BT);
}

const float *gpt_hidden(const gpt_model *m) { return m->acts.lnf; }

void gpt_embed_tokens(gpt_model *m, float *out, const int32_t *tok, size_t B, size_t T, size_t pos0) {
    const gpt_param *p = need_role(m, GPT_ROLE_EMBED_TOK, -1);
    const gpt_qweight *q = gpt_param_qweight(m, p);
    const float *wpe = gpt_role_ptr(m->params, m, GPT_ROLE_EMBED_POS, -1);   /* NULL for rotary models */
    if (q) kern_embed_q_fwd(m->be, out, tok, &q->part[0], wpe, B, T, pos0);   /* only the rows it reads */
    else kern_embed_fwd(m->be, out, tok, m->params + p->offset, wpe, B, T, (size_t)m->cfg.n_embd, pos0);
}

/* ---------------------------------------------------------------- heads */

/* Gradient base for a group: NULL when frozen or when no grads are allocated. */
static float *grad_base(const gpt_model *m, int group) {
    return m->trainable[group] && m->grads ? m->grads : NULL;
}
static float *gptr(float *base, const gpt_param *p) { return base && p ? base + p->offset : NULL; }

void gpt_lm_head_fwd(gpt_model *m, float *logits, const float *h, size_t N) {
    /* logits [N,V] = h [N,C] @ W[V,C]^T  (torch.nn.Linear layout; tied: W is wte) */
    const gpt_param *p = need_role(m, GPT_ROLE_LM_HEAD, -1);
    const gpt_qweight *q = gpt_param_qweight(m, p);
    /* rows of the training forward's hidden states (gpt_hidden) may be differentiated (QLoRA): those take the
     * quantized product's fp32 path; other rows (the engine's decode) may take its int8 decode path */
    size_t C = (size_t)m->cfg.n_embd;
    int train = m->acts.lnf && h >= m->acts.lnf && h < m->acts.lnf + m->acts_cap_bt * C;
    if (q) gpt_qweight_fwd(m->be, q, logits, h, NULL, N, C, (size_t)m->cfg.vocab_size, train);
    else kern_matmul_fwd(m->be, logits, h, m->params + p->offset, NULL, N, (size_t)m->cfg.n_embd, (size_t)m->cfg.vocab_size,
                         KERN_W_OUT_IN);
}

void gpt_lm_head_bwd(gpt_model *m, float *dh, const float *dlogits, const float *h, size_t N) {
    /* dh += dlogits @ W;  dW += dlogits^T @ h — for a tied W (wte), its second gradient contribution */
    const gpt_param *p = need_role(m, GPT_ROLE_LM_HEAD, -1);
    const gpt_qweight *q = gpt_param_qweight(m, p);
    if (q) {   /* a frozen quantized head (QLoRA): dh only, from its blocks */
        gpt_qweight_bwd(m->be, q, dh, dlogits, N, (size_t)m->cfg.n_embd, (size_t)m->cfg.vocab_size);
        return;
    }
    kern_matmul_bwd(m->be, dh, gptr(grad_base(m, p->group), p), NULL, dlogits, h, m->params + p->offset, N,
                    (size_t)m->cfg.n_embd, (size_t)m->cfg.vocab_size, KERN_W_OUT_IN);
}

/* The scalar head's weight [1, C] and its gradient (NULL = frozen): the LoRA adapter's own head when it has one
 * (a reward or value adapter trains it beside the adapters), else the model's score.weight. */
static const float *score_weights(const gpt_model *m, float **grad) {
    if (m->lora && m->lora->cfg.score) {
        gpt_model *pm = m->lora->pm;
        *grad = pm->grads ? pm->grads + m->lora->score_off : NULL;
        return pm->params + m->lora->score_off;
    }
    GK_CHECK(m->cfg.score_head, "score head used on a model without one (cfg.score_head = 0)");
    const gpt_param *p = need_role(m, GPT_ROLE_SCORE, -1);
    *grad = gptr(grad_base(m, GPT_GROUP_SCORE), p);
    return m->params + p->offset;
}

void gpt_score_head_fwd(gpt_model *m, float *r, const float *h, size_t N) {
    /* r [N] = h [N,C] . score.weight[0,:] */
    float *g;
    kern_matmul_fwd(m->be, r, h, score_weights(m, &g), NULL, N, (size_t)m->cfg.n_embd, 1, KERN_W_OUT_IN);
}

void gpt_score_head_bwd(gpt_model *m, float *dh, const float *dr, const float *h, size_t N) {
    /* dh [N,C] += dr[n] * score.weight;  dscore += sum_n dr[n] h[n,:] */
    float *g;
    const float *w = score_weights(m, &g);
    kern_matmul_bwd(m->be, dh, g, NULL, dr, h, w, N, (size_t)m->cfg.n_embd, 1, KERN_W_OUT_IN);
}

/* ---------------------------------------------------------------- backward */

/* Where the tail of grads that gpt_backward no longer writes begins once the layers >= li are done (li = L:
 * after ln_f's backward): past the end of every tensor it may still write — a block tensor of a layer below li,
 * or an embedding (scatter-added last; wte also takes the tied LM head's gradient, before the backward). */
static size_t grads_final_from(const gpt_model *m, size_t li) {
    size_t from = 0;
    for (size_t i = 0; i < m->n_table; i++) {
        const gpt_param *p = &m->table[i];
        int pending = p->layer >= 0 ? (size_t)p->layer < li : p->group == GPT_GROUP_EMBED;
        if (pending && p->offset + p->numel > from) from = p->offset + p->numel;
    }
    return from;
}

/* Tells m->bwd_ready that the layers >= li are done (all = 1: the whole backward is). */
static void bwd_ready(gpt_model *m, size_t li, int all) {
    if (m->bwd_ready) m->bwd_ready(m->bwd_ready_ctx, all ? 0 : grads_final_from(m, li));
}

void gpt_backward(gpt_model *m, float *dh) {
    const gpt_config *c = &m->cfg;
    GK_CHECK(m->acts_cap_bt > 0 && m->B > 0, "gpt_backward without a forward pass");
    /* a quantized base (QLoRA) has no gradient buffer (gpt_alloc_grads dequantizes), so every group is frozen here
     * and only the adapters' gradients flow, through dX = dY W of the blocks (block.c) */
    GK_CHECK(!m->qw || !m->grads, "gpt_backward: a model holding quantized weights with base gradients");
    size_t B = m->B, T = m->T, BT = B * T, C = (size_t)c->n_embd, L = (size_t)c->n_layer, W = wide_cols(c);
    gpt_acts *a = &m->acts;
    float *g_embed = grad_base(m, GPT_GROUP_EMBED), *g_blocks = grad_base(m, GPT_GROUP_BLOCKS);
    float *g_final = grad_base(m, GPT_GROUP_FINAL);
    /* How far down the gradient has to flow: nothing below the lowest trainable group is computed. */
    int lora = m->lora && m->lora->enabled && m->lora->pm->grads;   /* adapters in every block want gradients */
    int need_blocks = g_blocks || g_embed || lora;   /* some group at or below the blocks wants gradients */
    if (!g_final && !need_blocks) return;

    gpt_block_grads d = {
        .dres = m->scratch,                   /* [BT,C]  d(residual stream) at the current depth */
        .dbig1 = m->scratch + BT * C,         /* [BT,W] */
        .dbig2 = m->scratch + BT * (C + W),   /* [BT,W] */
        .dbig3 = m->scratch + BT * (C + 2 * W),   /* [BT,W] */
        .dsmall = dh,                         /* [BT,C]  dh is free once ln_f's backward has read it */
    };

    /* h = ln_f(x_L):  dx_L = LN_bwd(dh);  d ln_f.{weight,bias} */
    kern_zero(m->be, d.dres, BT * C * sizeof(float));
    gpt_norm_bwd(m->be, c, need_blocks ? d.dres : NULL, gpt_role_ptr(g_final, m, GPT_ROLE_LNF_W, -1),
                 gpt_role_ptr(g_final, m, GPT_ROLE_LNF_B, -1), dh, a->x + L * BT * C,
                 gpt_role_ptr(m->params, m, GPT_ROLE_LNF_W, -1), a->lnf_mean, a->lnf_rstd, BT);
    if (!need_blocks) { bwd_ready(m, 0, 1); return; }
    bwd_ready(m, L, 0);

    for (size_t li = L; li-- > 0;) {
        gpt_layer_ptrs w = gpt_layer(m->params, m, (int)li);
        gpt_layer_ptrs g = gpt_layer(g_blocks, m, (int)li);   /* all NULL if the blocks are frozen */
        /* Does anything below this point need the gradient w.r.t. this layer's input? */
        int need_input = g_embed || ((g_blocks || lora) && li > 0);
        gpt_attn_mode am;
        gpt_block_acts ba = layer_acts(m, li, &am);
        gpt_block_backward(m->be, c, &w, &g, &ba, &am, &d, need_input);
        if (!need_input) { bwd_ready(m, 0, 1); return; }
        bwd_ready(m, li, 0);
    }
    /* x0 = wte[tok] + wpe[pos]:  scatter-add dres into the embedding rows */
    if (g_embed)
        kern_embed_bwd(m->be, gpt_role_ptr(g_embed, m, GPT_ROLE_EMBED_TOK, -1), gpt_role_ptr(g_embed, m, GPT_ROLE_EMBED_POS, -1),
                       d.dres, a->tokens, B, T, C, 0);
    bwd_ready(m, 0, 1);
}
