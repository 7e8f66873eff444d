/* kvcache.c: the KV cache and the incremental trunk forward (gpt_forward_kv) used by the inference engine.
 *
 * The layer math is gpt_forward's, row by row; only attention differs: instead of attending within the batch,
 * the new rows append their keys/values to the cache and attend over everything cached for their sequence
 * (kern_attn_cache_fwd). Nothing is saved for a backward pass, so the scratch is one layer deep.
 *
 * Cache layout: k, v [L, S, NH, max_len, hs] (S = max_seqs slots): per layer the op's [S, NH, maxT, hs].
 */
#include "model/model.h"
#include "kern/kern.h"

#include <stdlib.h>
#include <string.h>

gpt_kv *gpt_kv_new(const gpt_model *m, size_t max_seqs, size_t max_len) {
    const gpt_config *c = &m->cfg;
    GK_CHECK(max_seqs >= 1, "gpt_kv_new: max_seqs must be >= 1");
    if (max_len == 0 || max_len > (size_t)c->n_ctx) max_len = (size_t)c->n_ctx;
    gpt_kv *kv = gk_calloc(1, sizeof *kv);
    kv->max_seqs = max_seqs; kv->max_len = max_len;
    kv->len = gk_calloc(max_seqs, sizeof(size_t));
    kv->pos = gk_calloc(max_seqs, sizeof(size_t));
    kv->be = m->be;
    kv->idx = gk_calloc(2 * max_seqs, sizeof(int32_t));
    kv->didx = kern_alloc(m->be, 2 * max_seqs * sizeof(int32_t));
    size_t n;
    GK_CHECK(gk_mul_size((size_t)c->n_layer * max_seqs, max_len * (size_t)c->n_embd, &n) == 0 &&
             gk_mul_size(n, sizeof(float), &n) == 0, "gpt_kv_new: cache size overflows");
    kv->k = kern_alloc(m->be, n);
    kv->v = kern_alloc(m->be, n);
    return kv;
}

static void scratch_free(gpt_kv *kv) {
    float **fs[] = { &kv->x, &kv->ln, &kv->qkv, &kv->atty, &kv->res, &kv->fch, &kv->fcg, &kv->mean, &kv->rstd, &kv->h };
    for (size_t i = 0; i < sizeof fs / sizeof fs[0]; i++) { kern_free(kv->be, *fs[i]); *fs[i] = NULL; }
    kern_free(kv->be, kv->tok); kv->tok = NULL;
    kv->cap_rows = 0;
}

void gpt_kv_free(gpt_kv *kv) {
    if (!kv) return;
    scratch_free(kv);
    kern_free(kv->be, kv->k); kern_free(kv->be, kv->v); kern_free(kv->be, kv->didx);
    free(kv->len); free(kv->pos); free(kv->idx);
    free(kv);
}

void gpt_kv_reset(gpt_kv *kv, size_t slot) {
    GK_CHECK(slot < kv->max_seqs, "gpt_kv_reset: slot %zu of %zu", slot, kv->max_seqs);
    kv->len[slot] = 0;
}

void gpt_kv_truncate(gpt_kv *kv, size_t slot, size_t len) {
    GK_CHECK(slot < kv->max_seqs && len <= kv->len[slot], "gpt_kv_truncate: slot %zu to %zu", slot, len);
    kv->len[slot] = len;
}

void gpt_kv_copy(const gpt_model *m, gpt_kv *kv, size_t dst, size_t src) {
    GK_CHECK(dst < kv->max_seqs && src < kv->max_seqs, "gpt_kv_copy: slots %zu <- %zu of %zu", dst, src, kv->max_seqs);
    if (dst == src) return;
    size_t L = (size_t)m->cfg.n_layer, NH = (size_t)m->cfg.n_head, hs = (size_t)m->cfg.n_embd / NH;
    size_t S = kv->max_seqs, T = kv->max_len, len = kv->len[src];
    for (size_t l = 0; l < L; l++)
        for (size_t h = 0; h < NH; h++) {
            size_t so = ((l * S + src) * NH + h) * T * hs, d = ((l * S + dst) * NH + h) * T * hs;
            kern_copy(m->be, kv->k + d, kv->k + so, len * hs * sizeof(float));
            kern_copy(m->be, kv->v + d, kv->v + so, len * hs * sizeof(float));
        }
    kv->len[dst] = len;
}

static void scratch_reserve(gpt_kv *kv, size_t rows, size_t C) {
    if (rows <= kv->cap_rows) return;
    scratch_free(kv);
#define FA(n) ((float *)kern_alloc(kv->be, (n) * sizeof(float)))
    kv->x = FA(rows * C); kv->ln = FA(rows * C); kv->qkv = FA(rows * 3 * C); kv->atty = FA(rows * C);
    kv->res = FA(rows * C); kv->fch = FA(rows * 4 * C); kv->fcg = FA(rows * 4 * C);
    kv->mean = FA(rows); kv->rstd = FA(rows); kv->h = FA(rows * C);
#undef FA
    kv->tok = kern_alloc(kv->be, rows * sizeof(int32_t));
    kv->cap_rows = rows;
}

/* Decode steps (few rows) stream each weight once through the skinny matmul; prefill uses the GEMM. */
static void mm(kern_backend *be, float *out, const float *inp, const float *w, const float *b, size_t R, size_t C,
               size_t OC) {
    if (R <= KERN_SKINNY_MAX_N) kern_matmul_skinny_fwd(be, out, inp, w, b, R, C, OC, KERN_W_IN_OUT);
    else kern_matmul_fwd(be, out, inp, w, b, R, C, OC, KERN_W_IN_OUT);
}

const float *gpt_forward_kv(gpt_model *m, gpt_kv *kv, const size_t *slots, const int32_t *tokens, size_t B, size_t n) {
    const gpt_config *c = &m->cfg;
    size_t C = (size_t)c->n_embd, NH = (size_t)c->n_head, L = (size_t)c->n_layer, R = B * n;
    size_t S = kv->max_seqs, T = kv->max_len;
    GK_CHECK(B >= 1 && n >= 1 && B <= S, "gpt_forward_kv: B=%zu n=%zu (slots %zu)", B, n, S);
    for (size_t b = 0; b < B; b++) {
        GK_CHECK(slots[b] < S, "gpt_forward_kv: slot %zu of %zu", slots[b], S);
        GK_CHECK(kv->len[slots[b]] + n <= T, "gpt_forward_kv: slot %zu holds %zu tokens, +%zu exceeds %zu",
                 slots[b], kv->len[slots[b]], n, T);
        for (size_t a = 0; a < b; a++) GK_CHECK(slots[a] != slots[b], "gpt_forward_kv: slot %zu twice", slots[b]);
        kv->pos[b] = kv->len[slots[b]];
        kv->idx[b] = (int32_t)slots[b];
        kv->idx[S + b] = (int32_t)kv->pos[b];
    }
    scratch_reserve(kv, R, C);
    kern_upload(m->be, kv->tok, tokens, R * sizeof(int32_t));
    kern_upload(m->be, kv->didx, kv->idx, 2 * S * sizeof(int32_t));   /* slot | pos, for kern_attn_cache_fwd */
    const float *wte = m->params + m->table[0].offset, *wpe = m->params + m->table[1].offset;

    /* x[b,i,:] = wte[tok[b,i],:] + wpe[pos[b]+i,:]  (each sequence at its own position) */
    for (size_t b = 0; b < B; b++) kern_embed_fwd(m->be, kv->x + b * n * C, kv->tok + b * n, wte, wpe, 1, n, C, kv->pos[b]);

    size_t layer_stride = S * NH * T * (C / NH);
    for (size_t l = 0; l < L; l++) {
        gpt_layer_ptrs w = gpt_layer(m->params, m, (int)l);
        /* ln = LayerNorm(x);  qkv = ln @ c_attn + b */
        kern_layernorm_fwd(m->be, kv->ln, kv->mean, kv->rstd, kv->x, w.ln1_w, w.ln1_b, R, C, c->ln_eps);
        mm(m->be, kv->qkv, kv->ln, w.qkv_w, w.qkv_b, R, C, 3 * C);
        /* append k, v to the cache; attend over it */
        kern_attn_cache_fwd(m->be, kv->atty, kv->k + l * layer_stride, kv->v + l * layer_stride, kv->qkv, kv->didx,
                            kv->didx + S, B, n, C, NH, T);
        /* res = x + atty @ c_proj + b */
        mm(m->be, kv->res, kv->atty, w.proj_w, w.proj_b, R, C, C);
        kern_axpy(m->be, kv->res, 1.0f, kv->x, R * C);
        /* x = res + gelu(LayerNorm(res) @ c_fc + b) @ mlp.c_proj + b */
        kern_layernorm_fwd(m->be, kv->ln, kv->mean, kv->rstd, kv->res, w.ln2_w, w.ln2_b, R, C, c->ln_eps);
        mm(m->be, kv->fch, kv->ln, w.fc_w, w.fc_b, R, C, 4 * C);
        kern_gelu_fwd(m->be, kv->fcg, kv->fch, R * 4 * C);
        mm(m->be, kv->x, kv->fcg, w.fcproj_w, w.fcproj_b, R, 4 * C, C);
        kern_axpy(m->be, kv->x, 1.0f, kv->res, R * C);
    }
    const gpt_param *lnw = gpt_find_param(m, "ln_f.weight"), *lnb = gpt_find_param(m, "ln_f.bias");
    GK_CHECK(lnw && lnb, "gpt_forward_kv: no ln_f in the parameter table");
    kern_layernorm_fwd(m->be, kv->h, kv->mean, kv->rstd, kv->x, m->params + lnw->offset, m->params + lnb->offset, R, C, c->ln_eps);
    for (size_t b = 0; b < B; b++) kv->len[slots[b]] += n;
    return kv->h;
}
