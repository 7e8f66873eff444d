/* kvcache.c: the KV cache and the incremental trunk forward (gpt_forward_kv) used by the inference engine.
 *
 * Each layer is the same gpt_block_forward the training forward runs (block.c), in its cached attention mode:
 * instead of attending within the batch, the new rows append their keys/values to the cache and attend over
 * everything cached for their sequence (kern_attn_cache_fwd), and few rows use the skinny decode matmul.
 * Nothing is saved for a backward pass, so the scratch is one layer deep (the block's buffers alias).
 *
 * Cache layout: k, v [L, S, NKV, max_len, hs] (S = max_seqs slots, NKV key/value heads: a grouped-query model
 * stores only its own, not one per query head): per layer the op's [S, NKV, maxT, hs].
 */
#include "model/model_internal.h"
#include "kern/kern.h"

#include <stdlib.h>
#include <string.h>

/* floats per layer and position in one of the two caches: the key/value heads times the head size */
static size_t kv_width(const gpt_config *c) { return (size_t)gpt_config_n_kv_head(c) * ((size_t)c->n_embd / (size_t)c->n_head); }

size_t gpt_kv_bytes_per_pos(const gpt_config *c) { return 2 * (size_t)c->n_layer * kv_width(c) * sizeof(float); }

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
    size_t n, kvw = kv_width(c);
    GK_CHECK(gk_mul_size((size_t)c->n_layer * max_seqs, max_len * kvw, &n) == 0 &&
             gk_mul_size(n, sizeof(float), &n) == 0, "gpt_kv_new: cache size overflows");
    kv->k = kern_alloc(m->be, n);
    kv->v = kern_alloc(m->be, n);
    return kv;
}

static void scratch_free(gpt_kv *kv) {
    float **fs[] = { &kv->x, &kv->ln, &kv->qkv, &kv->atty, &kv->res, &kv->fch, &kv->fcg, &kv->mean, &kv->rstd, &kv->h,
                     &kv->gate };
    for (size_t i = 0; i < sizeof fs / sizeof fs[0]; i++) { kern_free(kv->be, *fs[i]); *fs[i] = NULL; }
    kern_free(kv->be, kv->tok); kv->tok = NULL;
    kern_free(kv->be, kv->rpos); kv->rpos = NULL;
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
    size_t L = (size_t)m->cfg.n_layer, NKV = (size_t)gpt_config_n_kv_head(&m->cfg), hs = (size_t)m->cfg.n_embd / (size_t)m->cfg.n_head;
    size_t S = kv->max_seqs, T = kv->max_len, len = kv->len[src];
    for (size_t l = 0; l < L; l++)
        for (size_t h = 0; h < NKV; h++) {
            size_t so = ((l * S + src) * NKV + h) * T * hs, d = ((l * S + dst) * NKV + h) * T * hs;
            kern_copy(m->be, kv->k + d, kv->k + so, len * hs * sizeof(float));
            kern_copy(m->be, kv->v + d, kv->v + so, len * hs * sizeof(float));
        }
    kv->len[dst] = len;
}

static void scratch_reserve(gpt_kv *kv, const gpt_config *c, size_t rows) {
    if (rows <= kv->cap_rows) return;
    scratch_free(kv);
    size_t C = (size_t)c->n_embd, I = (size_t)gpt_config_n_inner(c);
#define FA(n) ((float *)kern_alloc(kv->be, (n) * sizeof(float)))
    kv->x = FA(rows * C); kv->ln = FA(rows * C); kv->qkv = FA(rows * 3 * C); kv->atty = FA(rows * C);
    kv->res = FA(rows * C); kv->fch = FA(rows * I); kv->fcg = FA(rows * I);
    kv->mean = FA(rows); kv->rstd = FA(rows); kv->h = FA(rows * C);
    if (c->act == GPT_ACT_SWIGLU) kv->gate = FA(rows * I);
#undef FA
    kv->tok = kern_alloc(kv->be, rows * sizeof(int32_t));
    kv->rpos = kern_alloc(kv->be, rows * sizeof(int32_t));
    kv->cap_rows = rows;
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
    scratch_reserve(kv, c, R);
    kern_upload(m->be, kv->tok, tokens, R * sizeof(int32_t));
    kern_upload(m->be, kv->didx, kv->idx, 2 * S * sizeof(int32_t));   /* slot | pos, for kern_attn_cache_fwd */
    if (c->pos == GPT_POS_ROPE) {   /* row b*n + i sits at position pos[b] + i */
        int32_t *p = gk_malloc(R * sizeof(int32_t));
        for (size_t i = 0; i < R; i++) p[i] = (int32_t)(kv->pos[i / n] + i % n);
        kern_upload(m->be, kv->rpos, p, R * sizeof(int32_t));
        free(p);
    }

    /* x[b,i,:] = wte[tok[b,i],:] + wpe[pos[b]+i,:]  (each sequence at its own position) */
    for (size_t b = 0; b < B; b++) gpt_embed_tokens(m, kv->x + b * n * C, kv->tok + b * n, 1, n, kv->pos[b]);

    /* one layer of scratch: both LayerNorms share ln/mean/rstd and the block writes its output over x */
    gpt_block_acts ba = {
        .x = kv->x, .ln1 = kv->ln, .ln1_mean = kv->mean, .ln1_rstd = kv->rstd, .qkv = kv->qkv, .atty = kv->atty,
        .res2 = kv->res, .ln2 = kv->ln, .ln2_mean = kv->mean, .ln2_rstd = kv->rstd, .fch = kv->fch,
        .fch_gelu = kv->fcg, .gate = kv->gate, .xo = kv->x,
    };
    gpt_attn_mode am = { .cached = 1, .B = B, .T = n, .slots = kv->didx, .pos = kv->didx + S, .max_len = T, .skinny = 1,
                         .rpos = kv->rpos, .inv_freq = m->inv_freq, .lora = m->lora };
    size_t layer_stride = S * (size_t)gpt_config_n_kv_head(c) * T * (C / NH);
    for (size_t l = 0; l < L; l++) {
        gpt_layer_ptrs w = gpt_layer(m->params, m, (int)l);
        am.kc = kv->k + l * layer_stride;
        am.vc = kv->v + l * layer_stride;
        am.layer = (int)l;
        gpt_block_forward(m->be, c, &w, &ba, &am);
    }
    gpt_norm_fwd(m->be, c, kv->h, kv->mean, kv->rstd, kv->x, gpt_role_ptr(m->params, m, GPT_ROLE_LNF_W, -1),
                 gpt_role_ptr(m->params, m, GPT_ROLE_LNF_B, -1), R);
    for (size_t b = 0; b < B; b++) kv->len[slots[b]] += n;
    return kv->h;
}
