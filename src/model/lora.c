/* lora.c: LoRA adapters on the block's linear layers — sites, init, forward/backward, merge, PEFT files.
 *
 * Each adapted product y [R, out] = x [R, in] W gets y += s * (x A^T) B^T with A [r, in] and B [out, r] in
 * torch.nn.Linear's layout (PEFT's lora_A.weight / lora_B.weight for both families: GPT-2's Conv1D base is
 * [in, out], but its adapters are Linear layers all the same). LLaMA's q, k and v are one fused product here
 * ([(NH + 2 NKV) hs] wide): their adapters write column ranges of it (col0, out) — one site each, so PEFT's
 * separate q_proj / k_proj / v_proj adapters map one to one.
 *
 * The adapter parameters are their own table (pm, a gpt_model shell with params and grads only) so the
 * optimizer, the gradient norm, clipping, ZeRO slices and resume state work on them unchanged: the base has no
 * gradient buffer and no moments at all.
 *
 * Forward of one site: u = s x A^T [R, r], then out += u B^T straight into the product's output (one GEMM that
 * accumulates, kern_matmul_bwd's input-gradient form), so no [R, out] temporary exists.
 * Backward of one site, with g = dout[:, cols] (the product's output gradient), u = x A^T recomputed:
 *   dB += g^T (s u)        du = s (g B)        dA += du^T x          dx += du A
 * s is applied to the [R, r] factors, never to the [R, out] gradient. (u is recomputed rather than saved:
 * [R, r] for r ~ 8 is cheaper to redo than to keep for every layer.)
 * A site that covers only some columns of its product (q, k or v of the fused q|k|v) uses B zero-padded to the
 * product's width, so every op is on whole contiguous rows (no per-row strided adds).
 */
#include "model/model_internal.h"
#include "kern/kern.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- targets */

static const struct { const char *name, *alias, *peft; int llama; } TGT[GPT_LORA_NTARGETS] = {
    [GPT_LORA_Q] = {"q", "q_proj", "q_proj", 1},        [GPT_LORA_K] = {"k", "k_proj", "k_proj", 1},
    [GPT_LORA_V] = {"v", "v_proj", "v_proj", 1},        [GPT_LORA_O] = {"o", "o_proj", "o_proj", 1},
    [GPT_LORA_GATE] = {"gate", "gate_proj", "gate_proj", 1}, [GPT_LORA_UP] = {"up", "up_proj", "up_proj", 1},
    [GPT_LORA_DOWN] = {"down", "down_proj", "down_proj", 1},
    [GPT_LORA_C_ATTN] = {"c_attn", "attn.c_attn", "attn.c_attn", 0},
    [GPT_LORA_C_PROJ] = {"c_proj", "attn.c_proj", "attn.c_proj", 0},
    [GPT_LORA_C_FC] = {"c_fc", "mlp.c_fc", "mlp.c_fc", 0},
    [GPT_LORA_MLP_C_PROJ] = {"mlp.c_proj", "mlp.c_proj", "mlp.c_proj", 0},
};

const char *gpt_lora_target_name(int t) { return t >= 0 && t < GPT_LORA_NTARGETS ? TGT[t].peft : "?"; }

static int family_has(const gpt_config *c, int t) {
    if (TGT[t].llama != (c->arch == GPT_ARCH_LLAMA)) return 0;
    if (t == GPT_LORA_GATE) return c->act == GPT_ACT_SWIGLU;
    return 1;
}

int gpt_lora_parse_targets(const gpt_config *c, const char *list, unsigned *targets, gk_err *err) {
    *targets = 0;
    if (!list || !*list) return gk_errf(err, "--lora-targets is empty: name the layers (or all-linear)");
    char valid[256] = "";
    for (int t = 0; t < GPT_LORA_NTARGETS; t++)
        if (family_has(c, t)) { strcat(valid, *valid ? ", " : ""); strcat(valid, TGT[t].name); }
    const char *p = list;
    while (*p) {
        const char *e = strchr(p, ',');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        char name[64];
        if (n == 0 || n >= sizeof name) return gk_errf(err, "--lora-targets '%s': empty or overlong name", list);
        memcpy(name, p, n); name[n] = 0;
        int found = -1;
        if (!strcmp(name, "all-linear")) {
            for (int t = 0; t < GPT_LORA_NTARGETS; t++) if (family_has(c, t)) *targets |= 1u << t;
            found = GPT_LORA_NTARGETS;
        }
        for (int t = 0; t < GPT_LORA_NTARGETS && found < 0; t++)
            if (!strcmp(name, TGT[t].name) || !strcmp(name, TGT[t].alias)) found = t;
        if (found < 0 || (found < GPT_LORA_NTARGETS && !family_has(c, found)))
            return gk_errf(err, "--lora-targets: '%s' is not a linear layer of this %s model (valid: %s, all-linear)", name,
                           gpt_arch_name(c->arch), valid);
        if (found < GPT_LORA_NTARGETS) *targets |= 1u << found;
        p += n + (e ? 1 : 0);
    }
    return 0;
}

/* Where target t sits in layer l of config c: base role, widths and column range. */
static void site_shape(const gpt_config *c, int t, gpt_lora_site *s) {
    size_t C = (size_t)c->n_embd, NH = (size_t)c->n_head, hs = C / NH, NKV = (size_t)gpt_config_n_kv_head(c);
    size_t I = (size_t)gpt_config_n_inner(c), QKV = (NH + 2 * NKV) * hs;
    s->target = t; s->col0 = 0;
    switch (t) {
    case GPT_LORA_Q: s->role = GPT_ROLE_QKV_W; s->in = C; s->out = NH * hs; s->ldo = QKV; break;
    case GPT_LORA_K: s->role = GPT_ROLE_QKV_W; s->in = C; s->out = NKV * hs; s->ldo = QKV; s->col0 = NH * hs; break;
    case GPT_LORA_V: s->role = GPT_ROLE_QKV_W; s->in = C; s->out = NKV * hs; s->ldo = QKV; s->col0 = (NH + NKV) * hs; break;
    case GPT_LORA_C_ATTN: s->role = GPT_ROLE_QKV_W; s->in = C; s->out = QKV; s->ldo = QKV; break;
    case GPT_LORA_O: case GPT_LORA_C_PROJ: s->role = GPT_ROLE_PROJ_W; s->in = C; s->out = C; s->ldo = C; break;
    case GPT_LORA_UP: case GPT_LORA_C_FC: s->role = GPT_ROLE_FC_W; s->in = C; s->out = I; s->ldo = I; break;
    case GPT_LORA_GATE: s->role = GPT_ROLE_GATE_W; s->in = C; s->out = I; s->ldo = I; break;
    default: s->role = GPT_ROLE_FCPROJ_W; s->in = I; s->out = C; s->ldo = C; break;   /* down, mlp.c_proj */
    }
}

/* ---------------------------------------------------------------- attach / detach */

static size_t C_bytes(const gpt_config *c) { return (size_t)c->n_embd * sizeof(float); }

static void add_entry(gpt_model *pm, size_t *cap, const char *name, size_t d0, size_t d1, int layer) {
    if (pm->n_table == *cap) {
        *cap = *cap ? 2 * *cap : 64;
        pm->table = realloc(pm->table, *cap * sizeof *pm->table);
        GK_CHECK(pm->table, "out of memory");
    }
    gpt_param *p = &pm->table[pm->n_table++];
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "%s", name);
    p->ndim = 2; p->shape[0] = d0; p->shape[1] = d1; p->numel = d0 * d1;
    p->offset = pm->num_params; pm->num_params += p->numel;
    p->layer = layer; p->group = GPT_GROUP_BLOCKS; p->decay = 1; p->role = -1;
}

int gpt_lora_attach(gpt_model *m, const gpt_lora_config *cfg, uint64_t seed, gk_err *err) {
    const gpt_config *c = &m->cfg;
    if (m->lora) return gk_errf(err, "the model already has LoRA adapters");
    /* a base kept quantized (a GGUF file) stays so: QLoRA, the adapters' gradients flow through its blocks */
    if (cfg->rank < 1) return gk_errf(err, "--lora-rank must be at least 1 (got %d)", cfg->rank);
    if (!(cfg->alpha > 0) || !isfinite(cfg->alpha)) return gk_errf(err, "--lora-alpha must be positive (got %g)", cfg->alpha);
    if (!(cfg->dropout >= 0 && cfg->dropout < 1)) return gk_errf(err, "--lora-dropout must be in [0, 1) (got %g)", cfg->dropout);
    if (!cfg->targets) return gk_errf(err, "no LoRA targets: pass --lora-targets (e.g. all-linear)");
    for (int t = 0; t < GPT_LORA_NTARGETS; t++) {
        if (!(cfg->targets & (1u << t))) continue;
        if (!family_has(c, t)) return gk_errf(err, "LoRA target '%s' does not exist in a %s model", TGT[t].name, gpt_arch_name(c->arch));
        gpt_lora_site s;
        site_shape(c, t, &s);
        if ((size_t)cfg->rank > s.in || (size_t)cfg->rank > s.out)
            return gk_errf(err, "--lora-rank %d is larger than target '%s' (%zu -> %zu)", cfg->rank, TGT[t].name, s.in, s.out);
    }
    gpt_lora *L = gk_calloc(1, sizeof *L);
    L->cfg = *cfg;
    L->enabled = 1;
    L->scale = cfg->rslora ? cfg->alpha / sqrtf((float)cfg->rank) : cfg->alpha / (float)cfg->rank;
    gpt_model *pm = gk_calloc(1, sizeof *pm);
    pm->cfg = *c; pm->be = m->be;
    for (int g = 0; g < GPT_NGROUPS; g++) pm->trainable[g] = 1;
    size_t cap = 0, r = (size_t)cfg->rank, L_ = (size_t)c->n_layer;
    L->sites = gk_calloc(L_ * GPT_LORA_NTARGETS, sizeof *L->sites);
    L->site_at = gk_calloc(L_ * GPT_NROLES, sizeof *L->site_at);
    for (size_t l = 0; l < L_; l++)
        for (int t = 0; t < GPT_LORA_NTARGETS; t++) {
            if (!(cfg->targets & (1u << t))) continue;
            gpt_lora_site *s = &L->sites[L->n_sites];
            site_shape(c, t, s);
            s->layer = (int)l;
            char name[64];
            snprintf(name, sizeof name, "h.%zu.%s.lora_A", l, TGT[t].peft);
            add_entry(pm, &cap, name, r, s->in, (int)l);
            s->a_off = pm->table[pm->n_table - 1].offset;
            snprintf(name, sizeof name, "h.%zu.%s.lora_B", l, TGT[t].peft);
            add_entry(pm, &cap, name, s->out, r, (int)l);
            s->b_off = pm->table[pm->n_table - 1].offset;
            /* sites of one (layer, role) are consecutive: remember the first */
            size_t *at = &L->site_at[l * GPT_NROLES + (size_t)s->role];
            if (!*at) *at = L->n_sites + 1;
            L->n_sites++;
        }
    if (cfg->score) {   /* a reward / value adapter's own scalar head, trained beside the adapters */
        add_entry(pm, &cap, "score.weight", 1, (size_t)c->n_embd, -1);
        pm->table[pm->n_table - 1].group = GPT_GROUP_SCORE;
        pm->table[pm->n_table - 1].role = GPT_ROLE_SCORE;
        L->score_off = pm->table[pm->n_table - 1].offset;
    }
    pm->params = kern_alloc(m->be, pm->num_params * sizeof(float));
    /* A ~ U(-1/sqrt(in), 1/sqrt(in)): kaiming_uniform_(a = sqrt(5)) as PEFT draws it; B = 0 */
    float *h = gk_calloc(pm->num_params, sizeof(float));
    gk_rng rng;
    gk_rng_seed(&rng, seed);
    for (size_t i = 0; i < L->n_sites; i++) {
        const gpt_lora_site *s = &L->sites[i];
        float bound = 1.0f / sqrtf((float)s->in);
        for (size_t k = 0; k < r * s->in; k++) h[s->a_off + k] = (float)(2.0 * gk_rng_uniform(&rng) - 1.0) * bound;
    }
    if (cfg->score && c->score_head)   /* start from the model's own head (zeros otherwise) */
        kern_download(m->be, h + L->score_off, m->params + gpt_param_role(m, GPT_ROLE_SCORE, -1)->offset, C_bytes(c));
    kern_upload(m->be, pm->params, h, pm->num_params * sizeof(float));
    free(h);
    L->pm = pm;
    m->lora = L;
    return 0;
}

void gpt_lora_detach(gpt_model *m) {
    gpt_lora *L = m ? m->lora : NULL;
    if (!L) return;
    kern_free(m->be, L->u); kern_free(m->be, L->du);
    kern_free(m->be, L->bpad); kern_free(m->be, L->dbpad);
    kern_free(m->be, L->xd); kern_free(m->be, L->dxd); free(L->hmask); free(L->hx);
    kern_free(m->be, L->pm->params); kern_free(m->be, L->pm->grads);
    free(L->pm->table); free(L->pm);
    free(L->sites); free(L->site_at); free(L->base);
    free(L);
    m->lora = NULL;
}

size_t gpt_lora_num_params(const gpt_model *m) { return m->lora ? m->lora->pm->num_params : 0; }

/* ---------------------------------------------------------------- forward / backward */

static void reserve(gpt_lora *L, kern_backend *be, size_t R) {
    if (R <= L->cap_rows) return;
    size_t wide = 0, r = (size_t)L->cfg.rank;
    for (size_t i = 0; i < L->n_sites; i++) if (L->sites[i].ldo > wide) wide = L->sites[i].ldo;
    kern_free(be, L->u); kern_free(be, L->du); kern_free(be, L->bpad); kern_free(be, L->dbpad);
    L->u = kern_alloc(be, R * r * sizeof(float));
    L->du = kern_alloc(be, R * r * sizeof(float));
    L->bpad = kern_alloc(be, wide * r * sizeof(float));
    L->dbpad = kern_alloc(be, wide * r * sizeof(float));
    L->cap_rows = R;
}

/* The site's B as a [ldo, r] matrix over the whole product's width: B itself when the adapter covers every
 * output column, else B's rows placed at col0 in a zeroed copy (LLaMA's q, k, v share one fused product). Rows
 * of B are contiguous, so this is one copy, and every later op works on whole contiguous rows. */
static const float *b_full(gpt_lora *L, kern_backend *be, const gpt_lora_site *s) {
    const float *B = L->pm->params + s->b_off;
    if (s->ldo == s->out) return B;
    size_t r = (size_t)L->cfg.rank;
    kern_zero(be, L->bpad, s->ldo * r * sizeof(float));
    kern_copy(be, L->bpad + s->col0 * r, B, s->out * r * sizeof(float));
    return L->bpad;
}

void gpt_lora_train(gpt_model *m, int on, uint64_t seed) {
    if (!m || !m->lora) return;
    m->lora->training = on;
    m->lora->drop_seed = seed;
    m->lora->drop_pass = 0;
}

void gpt_lora_new_pass(gpt_lora *L) { if (L->training) L->drop_pass++; }

static int dropping(const gpt_lora *L) { return L->training && L->cfg.dropout > 0; }

/* splitmix64's finaliser: a well-mixed 64-bit hash */
static uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

/* Inverted dropout of site i's input in the current pass, on the host: hmask [R, in] = keep / (1 - p), keep =
 * 1 with probability 1 - p, from a hash of (seed, pass, site, element) so that the backward of the same pass
 * gets the same mask. xd [R, in] (device) = inp * hmask. */
static void drop_input(gpt_lora *L, kern_backend *be, size_t site, const float *inp, size_t R, size_t in) {
    size_t n = R * in;
    if (n > L->cap_in) {   /* grows only */
        kern_free(be, L->xd); kern_free(be, L->dxd); free(L->hmask); free(L->hx);
        L->xd = kern_alloc(be, n * sizeof(float));
        L->dxd = kern_alloc(be, n * sizeof(float));
        L->hmask = gk_malloc(n * sizeof(float));
        L->hx = gk_malloc(n * sizeof(float));
        L->cap_in = n;
    }
    float p = L->cfg.dropout, keep = 1.0f / (1.0f - p);
    uint64_t key = mix64(L->drop_seed ^ mix64(L->drop_pass * 0x9E3779B97F4A7C15ULL + site));
    float *x = L->hx;
    kern_download(be, x, inp, n * sizeof(float));
    for (size_t k = 0; k < n; k++) {
        double u = (double)(mix64(key + k) >> 11) * 0x1.0p-53;   /* uniform in [0, 1) */
        L->hmask[k] = u < p ? 0.0f : keep;
        x[k] *= L->hmask[k];
    }
    kern_upload(be, L->xd, x, n * sizeof(float));
}

void gpt_lora_fwd(gpt_lora *L, kern_backend *be, int layer, int role, float *out, const float *inp, size_t R) {
    if (!L || !L->enabled) return;
    size_t at = L->site_at[(size_t)layer * GPT_NROLES + (size_t)role];
    if (!at) return;
    reserve(L, be, R);
    size_t r = (size_t)L->cfg.rank;
    const float *P = L->pm->params;
    for (size_t i = at - 1; i < L->n_sites && L->sites[i].layer == layer && L->sites[i].role == role; i++) {
        const gpt_lora_site *s = &L->sites[i];
        /* x = inp, or dropout(inp) while training */
        const float *x = inp;
        if (dropping(L)) { drop_input(L, be, i, inp, R, s->in); x = L->xd; }
        /* u [R, r] = s x A^T;  out [R, ldo] += u Bfull^T (zero outside the site's columns): Bfull [ldo, r] read as
         * the [C, OC] weight of kern_matmul_bwd's dinp += dout W^T, which accumulates */
        kern_matmul_fwd(be, L->u, x, P + s->a_off, NULL, R, s->in, r, KERN_W_OUT_IN);
        kern_scale(be, L->u, L->scale, R * r);
        kern_matmul_bwd(be, out, NULL, NULL, L->u, NULL, b_full(L, be, s), R, s->ldo, r, KERN_W_IN_OUT);
    }
}

void gpt_lora_bwd(gpt_lora *L, kern_backend *be, int layer, int role, float *dinp, const float *dout, const float *inp,
                  size_t R) {
    if (!L || !L->enabled) return;
    size_t at = L->site_at[(size_t)layer * GPT_NROLES + (size_t)role];
    if (!at) return;
    reserve(L, be, R);
    size_t r = (size_t)L->cfg.rank;
    const float *P = L->pm->params;
    float *G = L->pm->grads;
    for (size_t i = at - 1; i < L->n_sites && L->sites[i].layer == layer && L->sites[i].role == role; i++) {
        const gpt_lora_site *s = &L->sites[i];
        int pad = s->ldo != s->out, drop = dropping(L);
        /* with dropout, x = inp * mask (the forward's mask, regenerated) and dinp gets (du A) * mask */
        const float *x = inp;
        if (drop) { drop_input(L, be, i, inp, R, s->in); x = L->xd; }
        /* g = dout [R, ldo], unscaled;  u = s x A^T (recomputed, scaled: [R, r] is the small factor) */
        kern_matmul_fwd(be, L->u, x, P + s->a_off, NULL, R, s->in, r, KERN_W_OUT_IN);
        kern_scale(be, L->u, L->scale, R * r);
        /* dBfull += g^T u (its rows at col0 are dB);  du = s (g Bfull) (rows outside the site are zero: no effect) */
        float *dB = G ? (pad ? L->dbpad : G + s->b_off) : NULL;
        if (dB && pad) kern_zero(be, L->dbpad, s->ldo * r * sizeof(float));
        kern_zero(be, L->du, R * r * sizeof(float));
        kern_matmul_bwd(be, L->du, dB, NULL, dout, L->u, b_full(L, be, s), R, r, s->ldo, KERN_W_OUT_IN);
        kern_scale(be, L->du, L->scale, R * r);
        if (dB && pad) kern_axpy(be, G + s->b_off, 1.0f, L->dbpad + s->col0 * r, s->out * r);
        /* dA += du^T x;  dinp += du A (times the mask with dropout) */
        if (!drop || !dinp) {   /* dinp NULL: no input gradient wanted (the bottom block of a frozen base) */
            kern_matmul_bwd(be, dinp, G ? G + s->a_off : NULL, NULL, L->du, x, P + s->a_off, R, s->in, r, KERN_W_OUT_IN);
            continue;
        }
        size_t n = R * s->in;
        kern_zero(be, L->dxd, n * sizeof(float));
        kern_matmul_bwd(be, L->dxd, G ? G + s->a_off : NULL, NULL, L->du, x, P + s->a_off, R, s->in, r, KERN_W_OUT_IN);
        float *h = L->hx;
        kern_download(be, h, L->dxd, n * sizeof(float));
        for (size_t k = 0; k < n; k++) h[k] *= L->hmask[k];
        kern_upload(be, L->dxd, h, n * sizeof(float));
        kern_axpy(be, dinp, 1.0f, L->dxd, n);
    }
}

/* ---------------------------------------------------------------- merge */

void gpt_lora_merge(gpt_model *m) {
    gpt_lora *L = m->lora;
    if (!L) return;
    GK_CHECK(!m->view, "gpt_lora_merge on a view (its base's weights are shared)");
    gpt_dequantize_weights(m);   /* a quantized base merges into fp32 weights (the delta is not quantized) */
    size_t r = (size_t)L->cfg.rank;
    int inout = gpt_wlayout(&m->cfg) == KERN_W_IN_OUT;
    float *P = gk_malloc(L->pm->num_params * sizeof(float));
    kern_download(m->be, P, L->pm->params, L->pm->num_params * sizeof(float));
    for (size_t i = 0; i < L->n_sites; i++) {
        const gpt_lora_site *s = &L->sites[i];
        const gpt_param *wp = gpt_param_role(m, s->role, s->layer);
        float *W = gk_malloc(wp->numel * sizeof(float));
        kern_download(m->be, W, m->params + wp->offset, wp->numel * sizeof(float));
        const float *A = P + s->a_off, *Bm = P + s->b_off;
        /* delta[o][k] = s * sum_j B[o][j] A[j][k], added at output column col0 + o, input k */
        for (size_t o = 0; o < s->out; o++)
            for (size_t k = 0; k < s->in; k++) {
                double acc = 0;
                for (size_t j = 0; j < r; j++) acc += (double)Bm[o * r + j] * A[j * s->in + k];
                size_t oc = s->col0 + o;
                float *w = inout ? &W[k * s->ldo + oc] : &W[oc * s->in + k];
                *w += (float)(L->scale * acc);
            }
        kern_upload(m->be, m->params + wp->offset, W, wp->numel * sizeof(float));
        free(W);
    }
    if (L->cfg.score) {   /* the adapter's scalar head becomes the model's */
        gpt_add_score_head(m);
        kern_upload(m->be, m->params + gpt_param_role(m, GPT_ROLE_SCORE, -1)->offset, P + L->score_off, C_bytes(&m->cfg));
    }
    free(P);
    gpt_lora_detach(m);
}

/* ---------------------------------------------------------------- PEFT files */

/* FNV-1a over n floats' bytes, continuing h */
static uint64_t fnv_floats(uint64_t h, const float *x, size_t n) {
    const uint8_t *b = (const uint8_t *)x;
    for (size_t i = 0; i < n * sizeof(float); i++) { h ^= b[i]; h *= 1099511628211ULL; }
    return h;
}

uint64_t gpt_params_checksum(const gpt_model *m) {
    /* the tensors in table order as fp32 in the table's layout, the score head left out; a chunk at a time (a whole
     * host copy would double a large base's memory at every save). A matrix kept quantized (QLoRA) is hashed as
     * its dequantized values (gpt_dequantize_weights' decoder and layout), so an adapter trained over a quantized
     * base matches the same file dequantized, and the other way round. */
    enum { CHUNK = 1 << 18 };
    float *host = gk_malloc(CHUNK * sizeof(float));
    uint8_t *bytes = NULL;
    uint64_t h = 1469598103934665603ULL;
    for (size_t t = 0; t < m->n_table; t++) {
        const gpt_param *p = &m->table[t];
        if (p->role == GPT_ROLE_SCORE) continue;
        const gpt_qweight *q = gpt_param_qweight(m, p);
        if (!q) {
            for (size_t i0 = 0; i0 < p->numel; i0 += CHUNK) {
                size_t n = p->numel - i0 < CHUNK ? p->numel - i0 : CHUNK;
                kern_download(m->be, host, m->params + p->offset + i0, n * sizeof(float));
                h = fnv_floats(h, host, n);
            }
            continue;
        }
        /* GPT-2's Conv1D block matrices are [in, out] in the table, the blocks [out, in]: transposed whole (they
         * are a block's size); every other matrix's rows are the table's rows, hashed a few rows at a time */
        int tr = m->cfg.arch == GPT_ARCH_GPT2 && p->layer >= 0;
        float *whole = tr ? gk_malloc(p->numel * sizeof(float)) : NULL;
        size_t row0 = 0;
        for (int k = 0; k < q->nparts; k++) {
            const kern_qmat *w = &q->part[k];
            size_t rb = kern_qtype_row_bytes(w->type, w->cols), per = w->cols >= CHUNK ? 1 : CHUNK / w->cols;
            bytes = gk_realloc(bytes, per * rb);
            for (size_t r0 = 0; r0 < w->rows; r0 += per) {
                size_t nr = w->rows - r0 < per ? w->rows - r0 : per;
                float *dst = tr ? whole + (row0 + r0) * w->cols : host;
                kern_download(m->be, bytes, w->data + r0 * rb, nr * rb);
                kern_q_dequantize(w->type, bytes, nr * w->cols, dst);
                if (!tr) h = fnv_floats(h, dst, nr * w->cols);
            }
            row0 += w->rows;
        }
        if (tr) {   /* [out, in] -> [in, out] */
            size_t out = p->shape[1], in = p->shape[0];
            float *t2 = gk_malloc(p->numel * sizeof(float));
            for (size_t o = 0; o < out; o++)
                for (size_t i = 0; i < in; i++) t2[i * out + o] = whole[o * in + i];
            h = fnv_floats(h, t2, p->numel);
            free(t2); free(whole);
        }
    }
    free(host); free(bytes);
    return h;
}

/* The base's checksum, hashed once per attachment: the base is frozen while adapters are attached (training
 * writes only the adapter table; merging detaches), and hashing a 124M-parameter base byte by byte costs about
 * a second, which every checkpoint of a LoRA run used to pay. */
static uint64_t base_checksum(const gpt_model *m) {
    gpt_lora *L = m->lora;
    if (!L->base_ck_ok) { L->base_ck = gpt_params_checksum(m); L->base_ck_ok = 1; }
    return L->base_ck;
}

/* PEFT's key of a reward / value adapter's scalar head (a module saved whole: modules_to_save = ["score"]) */
#define SCORE_KEY "base_model.model.score.weight"

/* PEFT's key of a site's A (ab 'A') or B: base_model.model. + the HF module path + .lora_X.weight */
void gpt_lora_key(const gpt_model *m, size_t site, char ab, char *out, size_t cap) {
    const gpt_config *c = &m->cfg;
    const gpt_lora_site *s = &m->lora->sites[site];
    if (c->arch == GPT_ARCH_LLAMA) {
        int attn = s->target <= GPT_LORA_O;
        snprintf(out, cap, "base_model.model.model.layers.%d.%s.%s.lora_%c.weight", s->layer, attn ? "self_attn" : "mlp",
                 TGT[s->target].peft, ab);
    } else {
        snprintf(out, cap, "base_model.model.transformer.h.%d.%s.lora_%c.weight", s->layer, TGT[s->target].peft, ab);
    }
}

int gpt_lora_is_dir(const char *dir) {
    char *p = gk_path_join(dir, "adapter_config.json");
    int e = gk_file_exists(p);
    free(p);
    return e;
}

int gpt_lora_save(const gpt_model *m, const char *dir, const char *base, gk_err *err) {
    const gpt_lora *L = m->lora;
    GK_CHECK(L, "gpt_lora_save on a model without adapters");
    if (gk_mkdir_p(dir, err)) return -1;
    float *P = gk_malloc(L->pm->num_params * sizeof(float));
    kern_download(m->be, P, L->pm->params, L->pm->num_params * sizeof(float));
    st_writer *w = st_writer_new();
    char (*keys)[128] = gk_malloc(2 * L->n_sites * sizeof *keys);
    for (size_t i = 0; i < L->n_sites; i++) {
        const gpt_lora_site *s = &L->sites[i];
        size_t sa[2] = {(size_t)L->cfg.rank, s->in}, sb[2] = {s->out, (size_t)L->cfg.rank};
        gpt_lora_key(m, i, 'A', keys[2 * i], sizeof keys[0]);
        gpt_lora_key(m, i, 'B', keys[2 * i + 1], sizeof keys[0]);
        st_writer_add_f32(w, keys[2 * i], 2, sa, P + s->a_off);
        st_writer_add_f32(w, keys[2 * i + 1], 2, sb, P + s->b_off);
    }
    size_t shead[2] = {1, (size_t)m->cfg.n_embd};
    if (L->cfg.score) st_writer_add_f32(w, SCORE_KEY, 2, shead, P + L->score_off);   /* as PEFT saves modules_to_save */
    char ck[32];
    snprintf(ck, sizeof ck, "%016llx", (unsigned long long)base_checksum(m));
    st_writer_add_meta(w, "format", "pt");
    st_writer_add_meta(w, "gptkit_base_checksum", ck);
    char *mpath = gk_path_join(dir, "adapter_model.safetensors"), *cpath = gk_path_join(dir, "adapter_config.json");
    int rc = st_writer_write(w, mpath, err);
    st_writer_free(w);
    free(keys); free(P);
    if (rc == 0) {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "peft_type", "LORA");
        cJSON_AddStringToObject(j, "task_type", L->cfg.score ? "SEQ_CLS" : "CAUSAL_LM");
        if (base) cJSON_AddStringToObject(j, "base_model_name_or_path", base);
        else cJSON_AddNullToObject(j, "base_model_name_or_path");
        cJSON_AddNumberToObject(j, "r", L->cfg.rank);
        cJSON_AddNumberToObject(j, "lora_alpha", L->cfg.alpha);
        cJSON_AddNumberToObject(j, "lora_dropout", L->cfg.dropout);
        cJSON_AddBoolToObject(j, "use_rslora", L->cfg.rslora);
        cJSON_AddBoolToObject(j, "fan_in_fan_out", m->cfg.arch == GPT_ARCH_GPT2);
        cJSON_AddStringToObject(j, "bias", "none");
        cJSON_AddBoolToObject(j, "inference_mode", 1);
        cJSON_AddBoolToObject(j, "init_lora_weights", 1);
        if (L->cfg.score) cJSON_AddItemToArray(cJSON_AddArrayToObject(j, "modules_to_save"), cJSON_CreateString("score"));
        cJSON *tm = cJSON_AddArrayToObject(j, "target_modules");
        for (int t = 0; t < GPT_LORA_NTARGETS; t++)
            if (L->cfg.targets & (1u << t)) cJSON_AddItemToArray(tm, cJSON_CreateString(TGT[t].peft));
        char *txt = cJSON_Print(j);
        cJSON_Delete(j);
        GK_CHECK(txt, "out of memory printing adapter_config.json");
        rc = gk_write_file_atomic(cpath, txt, strlen(txt), err);
        free(txt);
    }
    free(mpath); free(cpath);
    return rc;
}

int gpt_lora_load(gpt_model *m, const char *dir, char **base, gk_err *err) {
    if (base) *base = NULL;
    char *cpath = gk_path_join(dir, "adapter_config.json"), *mpath = gk_path_join(dir, "adapter_model.safetensors");
    char *txt = NULL; size_t tl = 0;
    cJSON *j = NULL;
    st_file f; memset(&f, 0, sizeof f);
    int rc = -1, st_ok = 0, attached = 0;
    float *h = NULL;
    if (m->lora) { gk_errf(err, "%s: the model already carries LoRA adapters", dir); goto done; }
    if (gk_read_file(cpath, &txt, &tl, err)) goto done;
    j = cJSON_ParseWithLength(txt, tl);
    if (!j || !cJSON_IsObject(j)) { gk_errf(err, "%s: not a JSON object", cpath); goto done; }
    const cJSON *pt = cJSON_GetObjectItemCaseSensitive(j, "peft_type"), *r = cJSON_GetObjectItemCaseSensitive(j, "r"),
                *al = cJSON_GetObjectItemCaseSensitive(j, "lora_alpha"), *rs = cJSON_GetObjectItemCaseSensitive(j, "use_rslora"),
                *tm = cJSON_GetObjectItemCaseSensitive(j, "target_modules"), *bm = cJSON_GetObjectItemCaseSensitive(j, "base_model_name_or_path");
    if (!cJSON_IsString(pt) || strcmp(pt->valuestring, "LORA")) { gk_errf(err, "%s: peft_type is not \"LORA\"", cpath); goto done; }
    if (!cJSON_IsNumber(r) || r->valuedouble < 1 || r->valuedouble > 65536) { gk_errf(err, "%s: field 'r' missing or out of range", cpath); goto done; }
    if (!cJSON_IsNumber(al)) { gk_errf(err, "%s: field 'lora_alpha' missing", cpath); goto done; }
    if (!cJSON_IsArray(tm)) { gk_errf(err, "%s: field 'target_modules' must be a list of names", cpath); goto done; }
    /* PEFT options that change the function computed: only their defaults are understood */
    static const char *const must_be_off[] = {"use_dora", "lora_bias", "use_qalora", "use_bdlora", "layers_to_transform",
                                               "target_parameters", "layer_replication", "trainable_token_indices"};
    for (size_t k = 0; k < sizeof must_be_off / sizeof must_be_off[0]; k++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, must_be_off[k]);
        if (v && !cJSON_IsNull(v) && !cJSON_IsFalse(v)) { gk_errf(err, "%s: '%s' is set: not supported (only plain LoRA)", cpath, must_be_off[k]); goto done; }
    }
    static const char *const must_be_empty[] = {"rank_pattern", "alpha_pattern"};
    for (size_t k = 0; k < 2; k++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, must_be_empty[k]);
        if (v && !cJSON_IsNull(v) && !(cJSON_IsObject(v) && !v->child)) { gk_errf(err, "%s: '%s' is not empty: per-layer ranks are not supported", cpath, must_be_empty[k]); goto done; }
    }
    /* modules_to_save: only a scalar head ("score"; PEFT adds "classifier" too for SEQ_CLS), held by the adapter */
    const cJSON *ms = cJSON_GetObjectItemCaseSensitive(j, "modules_to_save"), *mi;
    if (ms && !cJSON_IsNull(ms)) {
        if (!cJSON_IsArray(ms)) { gk_errf(err, "%s: 'modules_to_save' must be a list", cpath); goto done; }
        cJSON_ArrayForEach(mi, ms)
            if (!cJSON_IsString(mi) || (strcmp(mi->valuestring, "score") && strcmp(mi->valuestring, "classifier"))) {
                gk_errf(err, "%s: modules_to_save holds %s: only a scalar head (\"score\") is supported", cpath,
                        cJSON_IsString(mi) ? mi->valuestring : "a non-string");
                goto done;
            }
    }
    const cJSON *bi = cJSON_GetObjectItemCaseSensitive(j, "bias");
    if (bi && !cJSON_IsNull(bi) && !(cJSON_IsString(bi) && !strcmp(bi->valuestring, "none"))) { gk_errf(err, "%s: 'bias' must be \"none\"", cpath); goto done; }
    gpt_lora_config lc = { .rank = (int)r->valuedouble, .alpha = (float)al->valuedouble, .rslora = cJSON_IsTrue(rs) };
    const cJSON *dr = cJSON_GetObjectItemCaseSensitive(j, "lora_dropout");
    if (cJSON_IsNumber(dr) && dr->valuedouble >= 0 && dr->valuedouble < 1) lc.dropout = (float)dr->valuedouble;   /* training only */
    const cJSON *it;
    cJSON_ArrayForEach(it, tm) {
        if (!cJSON_IsString(it)) { gk_errf(err, "%s: target_modules holds a non-string", cpath); goto done; }
        unsigned t1;
        if (gpt_lora_parse_targets(&m->cfg, it->valuestring, &t1, err)) {
            char msg[sizeof err->msg];
            snprintf(msg, sizeof msg, "%s", err->msg);
            gk_errf(err, "%s: target_modules: %s (an adapter for another model family?)", cpath, msg);
            goto done;
        }
        lc.targets |= t1;
    }
    if (st_open(&f, mpath, err)) goto done;
    st_ok = 1;
    /* a scalar head saved with the adapter makes it a reward / value adapter: attached with its own head */
    const st_tensor *head = st_find(&f, SCORE_KEY);
    if (!head) head = st_find(&f, "base_model.model.score.modules_to_save.default.weight");
    if (head && (head->ndim != 2 || head->shape[0] != 1 || head->shape[1] != (size_t)m->cfg.n_embd)) {
        gk_errf(err, "%s: the score head has shape [%zu, %zu], this base needs [1, %d] (a head for another base, or more "
                "than one label?)", mpath, head->ndim > 0 ? head->shape[0] : 0, head->ndim > 1 ? head->shape[1] : 0, m->cfg.n_embd);
        goto done;
    }
    lc.score = head != NULL;
    if (gpt_lora_attach(m, &lc, 0, err)) { /* message names the problem */
        char msg[sizeof err->msg];
        snprintf(msg, sizeof msg, "%s", err->msg);
        gk_errf(err, "%s: %s", cpath, msg);
        goto done;
    }
    attached = 1;
    const char *ck = st_meta(&f, "gptkit_base_checksum");
    if (ck) {
        char mine[32];
        snprintf(mine, sizeof mine, "%016llx", (unsigned long long)base_checksum(m));
        if (strcmp(ck, mine)) { gk_errf(err, "%s: adapter was trained on another base (base checksum %s, this model %s)", mpath, ck, mine); goto done; }
    }
    gpt_lora *L = m->lora;
    h = gk_calloc(L->pm->num_params, sizeof(float));
    size_t found = 0;
    for (size_t i = 0; i < L->n_sites; i++)
        for (int ab = 0; ab < 2; ab++) {
            const gpt_lora_site *s = &L->sites[i];
            char key[128];
            gpt_lora_key(m, i, ab ? 'B' : 'A', key, sizeof key);
            const st_tensor *t = st_find(&f, key);
            if (!t) { char k2[160]; snprintf(k2, sizeof k2, "%s", key);   /* PEFT may keep the adapter name */
                char *dot = strstr(k2, ".weight"); if (dot) strcpy(dot, ".default.weight");
                t = st_find(&f, k2); }
            if (!t) { gk_errf(err, "%s: missing tensor %s", mpath, key); goto done; }
            size_t d0 = ab ? s->out : (size_t)lc.rank, d1 = ab ? (size_t)lc.rank : s->in;
            if (t->ndim != 2 || t->shape[0] != d0 || t->shape[1] != d1) {
                gk_errf(err, "%s: %s has shape [%zu, %zu], this base needs [%zu, %zu] (an adapter for another model?)", mpath, key,
                        t->ndim > 0 ? t->shape[0] : 0, t->ndim > 1 ? t->shape[1] : 0, d0, d1);
                goto done;
            }
            if (st_read_f32(&f, t, h + (ab ? s->b_off : s->a_off), err)) goto done;
            found++;
        }
    if (head) {
        if (st_read_f32(&f, head, h + L->score_off, err)) goto done;
        found++;
    }
    if (found != f.n) {
        gk_errf(err, "%s: holds %zu tensors, the config's targets give %zu (adapters on layers this config does not name?)",
                mpath, f.n, found);
        goto done;
    }
    kern_upload(m->be, L->pm->params, h, L->pm->num_params * sizeof(float));
    if (base && cJSON_IsString(bm)) *base = gk_strdup(bm->valuestring);
    rc = 0;
done:
    if (rc && attached) gpt_lora_detach(m);   /* never a half-loaded adapter; an earlier one is not touched */
    free(h);
    if (st_ok) st_close(&f);
    cJSON_Delete(j);
    free(txt); free(cpath); free(mpath);
    return rc;
}
