/* block.c: one transformer layer, forward and backward, shared by training and the KV-cache inference path.
 *
 * GPT-2's block (pre-norm, HF GPT2Block):
 *   ln1 = LN(x);  qkv = ln1 @ Wqkv + bqkv;  atty = attention(qkv);  res2 = x + atty @ Wo + bo
 *   ln2 = LN(res2);  fch = ln2 @ Wfc + bfc;  xo = res2 + gelu_tanh(fch) @ Wp + bp
 * The caller chooses where activations live (kept per layer for backward, or one layer of scratch for
 * inference) and an attention mode (gpt_attn_mode): causal within a [B,T] batch, or new rows attending over a
 * KV cache. Everything else is the same op sequence in the same order, so a prefill and a training forward
 * agree up to the attention kernel's rounding, and a fix to the block is made once.
 */
#include "model/model_internal.h"
#include "kern/kern.h"

void gpt_norm_fwd(kern_backend *be, const gpt_config *c, float *out, float *mean, float *rstd, const float *inp, const float *w,
                  const float *b, size_t R) {
    GK_CHECK(c->norm == GPT_NORM_LAYERNORM, "norm %d not implemented (gpt_config_validate refuses it)", c->norm);
    /* out = (x - mean) * rstd * w + b,   rstd = 1/sqrt(var + eps) */
    kern_layernorm_fwd(be, out, mean, rstd, inp, w, b, R, (size_t)c->n_embd, c->ln_eps);
}

/* Decode steps (few rows, inference only) stream each weight once through the skinny matmul; everything else,
 * training included, uses the GEMM. */
static void mm(kern_backend *be, const gpt_attn_mode *am, float *out, const float *inp, const float *w, const float *b, size_t R,
               size_t C, size_t OC) {
    if (am->skinny && R <= KERN_SKINNY_MAX_N) kern_matmul_skinny_fwd(be, out, inp, w, b, R, C, OC, KERN_W_IN_OUT);
    else kern_matmul_fwd(be, out, inp, w, b, R, C, OC, KERN_W_IN_OUT);
}

/* q | k | v width of c_attn's output: (NH + 2 NKV) hs (3C for multi-head attention). */
static size_t qkv_width(const gpt_config *c) {
    size_t hs = (size_t)c->n_embd / (size_t)c->n_head;
    return ((size_t)c->n_head + 2 * (size_t)gpt_config_n_kv_head(c)) * hs;
}

void gpt_block_forward(kern_backend *be, const gpt_config *c, const gpt_layer_ptrs *w, const gpt_block_acts *a, const gpt_attn_mode *am) {
    GK_CHECK(c->act == GPT_ACT_GELU_TANH, "activation %d not implemented (gpt_config_validate refuses it)", c->act);
    size_t R = am->B * am->T, C = (size_t)c->n_embd, NH = (size_t)c->n_head, I = (size_t)gpt_config_n_inner(c);
    /* ln1 = LN(x) */
    gpt_norm_fwd(be, c, a->ln1, a->ln1_mean, a->ln1_rstd, a->x, w->ln1_w, w->ln1_b, R);
    /* qkv [R,3C] = ln1 @ c_attn.weight [C,3C] + c_attn.bias */
    mm(be, am, a->qkv, a->ln1, w->qkv_w, w->qkv_b, R, C, qkv_width(c));
    /* atty = per head softmax(q k^T / sqrt(hs) + causal mask) v: within the batch, or (cached) after appending
     * this call's k, v to each sequence's slot, over everything cached for it */
    if (am->cached)
        kern_attn_cache_fwd(be, a->atty, am->kc, am->vc, a->qkv, am->slots, am->pos, am->B, am->T, C, NH, am->max_len);
    else
        kern_attention_fwd(be, a->atty, am->att_saved, a->qkv, am->B, am->T, C, NH);
    /* res2 = x + atty @ attn.c_proj.weight + attn.c_proj.bias */
    mm(be, am, a->res2, a->atty, w->proj_w, w->proj_b, R, C, C);
    kern_axpy(be, a->res2, 1.0f, a->x, R * C);
    /* ln2 = LN(res2) */
    gpt_norm_fwd(be, c, a->ln2, a->ln2_mean, a->ln2_rstd, a->res2, w->ln2_w, w->ln2_b, R);
    /* fch [R,I] = ln2 @ c_fc.weight + c_fc.bias;  fch_gelu = gelu_tanh(fch) */
    mm(be, am, a->fch, a->ln2, w->fc_w, w->fc_b, R, C, I);
    kern_gelu_fwd(be, a->fch_gelu, a->fch, R * I);
    /* xo = res2 + fch_gelu @ mlp.c_proj.weight [I,C] + mlp.c_proj.bias  (xo may alias x: x is no longer read) */
    mm(be, am, a->xo, a->fch_gelu, w->fcproj_w, w->fcproj_b, R, I, C);
    kern_axpy(be, a->xo, 1.0f, a->res2, R * C);
}

void gpt_block_backward(kern_backend *be, const gpt_config *c, const gpt_layer_ptrs *w, const gpt_layer_ptrs *g, const gpt_block_acts *a,
                        const gpt_attn_mode *am, const gpt_block_grads *d, int need_input) {
    GK_CHECK(!am->cached, "gpt_block_backward: a KV-cache forward saves nothing to differentiate");
    GK_CHECK(c->norm == GPT_NORM_LAYERNORM && c->act == GPT_ACT_GELU_TANH, "block backward: norm/activation not implemented");
    size_t B = am->B, T = am->T, R = B * T, C = (size_t)c->n_embd, NH = (size_t)c->n_head;
    size_t I = (size_t)gpt_config_n_inner(c), QKV = qkv_width(c);
    float *dres = d->dres, *dsmall = d->dsmall, *dbig1 = d->dbig1, *dbig2 = d->dbig2;

    /* xo = res2 + fch_gelu @ Wp + bp:  d res2 = dres (residual, kept in dres);
     * d fch_gelu = dres @ Wp^T;  dWp += fch_gelu^T dres;  dbp += sum dres */
    kern_zero(be, dbig1, R * I * sizeof(float));
    kern_matmul_bwd(be, dbig1, g->fcproj_w, g->fcproj_b, dres, a->fch_gelu, w->fcproj_w, R, I, C, KERN_W_IN_OUT);
    /* fch_gelu = gelu(fch):  d fch = gelu'(fch) * d fch_gelu */
    kern_zero(be, dbig2, R * I * sizeof(float));
    kern_gelu_bwd(be, dbig2, a->fch, dbig1, R * I);
    /* fch = ln2 @ Wfc + bfc:  d ln2 = d fch @ Wfc^T;  dWfc += ln2^T d fch */
    kern_zero(be, dsmall, R * C * sizeof(float));
    kern_matmul_bwd(be, dsmall, g->fc_w, g->fc_b, dbig2, a->ln2, w->fc_w, R, C, I, KERN_W_IN_OUT);
    /* ln2 = LN(res2):  d res2 += LN_bwd(d ln2) */
    kern_layernorm_bwd(be, dres, g->ln2_w, g->ln2_b, dsmall, a->res2, w->ln2_w, a->ln2_mean, a->ln2_rstd, R, C);
    /* res2 = x + atty @ Wo + bo:  d x = d res2 (residual, stays in dres);  d atty = d res2 @ Wo^T */
    kern_zero(be, dsmall, R * C * sizeof(float));
    kern_matmul_bwd(be, dsmall, g->proj_w, g->proj_b, dres, a->atty, w->proj_w, R, C, C, KERN_W_IN_OUT);
    /* atty = attention(qkv):  d qkv (dbig1 reused as [R,3C]) */
    kern_zero(be, dbig1, R * QKV * sizeof(float));
    kern_attention_bwd(be, dbig1, dsmall, a->qkv, a->atty, am->att_saved, B, T, C, NH);
    /* qkv = ln1 @ Wqkv + bqkv:  d ln1 = d qkv @ Wqkv^T */
    kern_zero(be, dsmall, R * C * sizeof(float));
    kern_matmul_bwd(be, dsmall, g->qkv_w, g->qkv_b, dbig1, a->ln1, w->qkv_w, R, C, QKV, KERN_W_IN_OUT);
    /* ln1 = LN(x):  d x += LN_bwd(d ln1)  (only if something below wants it) */
    kern_layernorm_bwd(be, need_input ? dres : NULL, g->ln1_w, g->ln1_b, dsmall, a->x, w->ln1_w, a->ln1_mean, a->ln1_rstd, R, C);
}
