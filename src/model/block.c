/* block.c: one transformer layer, forward and backward, shared by training and the KV-cache inference path.
 *
 * GPT-2's block (pre-norm, HF GPT2Block):
 *   ln1 = LN(x);  qkv = ln1 @ Wqkv + bqkv;  atty = attention(qkv);  res2 = x + atty @ Wo + bo
 *   ln2 = LN(res2);  fch = ln2 @ Wfc + bfc;  xo = res2 + gelu_tanh(fch) @ Wp + bp
 * The caller chooses where activations live (kept per layer for backward, or one layer of scratch for
 * inference) and an attention mode (gpt_attn_mode): causal within a [B,T] batch, or new rows attending over a
 * KV cache. Everything else is the same op sequence in the same order, so a prefill and a training forward
 * agree up to the attention kernel's rounding, and a fix to the block is made once.
 *
 * LLaMA's block (HF LlamaDecoderLayer), the same skeleton with the family's ops (weights [out, in]):
 *   ln1 = RMSNorm(x);  qkv = ln1 @ Wqkv^T (+ bqkv, Qwen2);  rotate q and k in place (RoPE, each row at its position);
 *   qkve = k, v heads repeated for their query groups (grouped-query training/full attention; the KV cache keeps
 *   the NKV heads);  atty = attention(qkve);
 *   res2 = x + atty @ Wo^T;  ln2 = RMSNorm(res2);  fch = ln2 @ Wup^T;  gate = ln2 @ Wgate^T;
 *   xo = res2 + (silu(gate) * fch) @ Wdown^T
 * HF's q_proj | k_proj | v_proj are stored fused as one [(NH + 2 NKV) hs, C] matrix (checkpoint I/O splits it).
 */
#include "model/model_internal.h"
#include "kern/kern.h"

void gpt_norm_fwd(kern_backend *be, const gpt_config *c, float *out, float *mean, float *rstd, const float *inp, const float *w,
                  const float *b, size_t R) {
    if (c->norm == GPT_NORM_RMSNORM) {   /* out = w * x / sqrt(mean(x^2) + eps) */
        kern_rmsnorm_fwd(be, out, rstd, inp, w, R, (size_t)c->n_embd, c->ln_eps);
        return;
    }
    /* out = (x - mean) * rstd * w + b,   rstd = 1/sqrt(var + eps) */
    kern_layernorm_fwd(be, out, mean, rstd, inp, w, b, R, (size_t)c->n_embd, c->ln_eps);
}

void gpt_norm_bwd(kern_backend *be, const gpt_config *c, float *dinp, float *dw, float *db, const float *dout, const float *inp,
                  const float *w, const float *mean, const float *rstd, size_t R) {
    if (c->norm == GPT_NORM_RMSNORM) kern_rmsnorm_bwd(be, dinp, dw, dout, inp, w, rstd, R, (size_t)c->n_embd);
    else kern_layernorm_bwd(be, dinp, dw, db, dout, inp, w, mean, rstd, R, (size_t)c->n_embd);
}

void gpt_qweight_fwd(kern_backend *be, const gpt_qweight *q, float *out, const float *inp, const float *bias, size_t R,
                     size_t C, size_t OC, int train) {
    size_t col = 0;
    for (int k = 0; k < q->nparts; k++) {
        const kern_qmat *w = &q->part[k];
        GK_CHECK(w->cols == C && col + w->rows <= OC, "quantized weight part %d: [%zu, %zu] in a [%zu, %zu] product", k,
                 w->rows, w->cols, OC, C);
        if (train) kern_matmul_q_train_fwd(be, out + col, OC, inp, w, bias ? bias + col : NULL, R);
        else kern_matmul_q_fwd(be, out + col, OC, inp, w, bias ? bias + col : NULL, R);
        col += w->rows;
    }
    GK_CHECK(col == OC, "quantized weight: %zu output rows for a product of %zu", col, OC);
}

void gpt_qweight_bwd(kern_backend *be, const gpt_qweight *q, float *dinp, const float *dout, size_t R, size_t C, size_t OC) {
    size_t col = 0;
    for (int k = 0; k < q->nparts; k++) {   /* each part's output columns of dout back through its rows */
        const kern_qmat *w = &q->part[k];
        GK_CHECK(w->cols == C && col + w->rows <= OC, "quantized weight part %d: [%zu, %zu] in a [%zu, %zu] product", k,
                 w->rows, w->cols, OC, C);
        kern_matmul_q_bwd(be, dinp, dout + col, OC, w, R);
        col += w->rows;
    }
    GK_CHECK(col == OC, "quantized weight: %zu output rows for a product of %zu", col, OC);
}

/* A weight kept quantized (a GGUF file: inference, or QLoRA's frozen base) multiplies in its block format (the
 * full-attention forward, which training differentiates, never takes the decode path's int8 input rounding);
 * decode steps (few rows, inference only) stream each fp32 weight once through the skinny matmul; everything else,
 * training included, uses the GEMM. */
static void mm(kern_backend *be, const gpt_config *c, const gpt_attn_mode *am, float *out, const float *inp, const float *w,
               const gpt_qweight *q, const float *b, size_t R, size_t C, size_t OC) {
    if (q) gpt_qweight_fwd(be, q, out, inp, b, R, C, OC, !am->cached);
    else if (am->skinny && R <= KERN_SKINNY_MAX_N) kern_matmul_skinny_fwd(be, out, inp, w, b, R, C, OC, gpt_wlayout(c));
    else kern_matmul_fwd(be, out, inp, w, b, R, C, OC, gpt_wlayout(c));
}
/* A quantized W is frozen (QLoRA's base: no dW, no db), so only dinp += dout W flows, from its blocks. */
static void mm_bwd(kern_backend *be, const gpt_config *c, float *dinp, float *dw, float *db, const float *dout, const float *inp,
                   const float *w, const gpt_qweight *q, size_t R, size_t C, size_t OC) {
    if (q) {
        GK_CHECK(!dw && !db, "a weight kept quantized has no gradient (frozen base only)");
        if (dinp) gpt_qweight_bwd(be, q, dinp, dout, R, C, OC);
        return;
    }
    kern_matmul_bwd(be, dinp, dw, db, dout, inp, w, R, C, OC, gpt_wlayout(c));
}

/* mm_bwd with dinp overwritten instead of accumulated (no zeroing pass before it): dinp = dout W^T is a forward
 * product with W read in the other layout, and the weight gradients (if any) follow from kern_matmul_bwd. */
static void mm_bwd_set(kern_backend *be, const gpt_config *c, float *dinp, float *dw, float *db, const float *dout,
                       const float *inp, const float *w, const gpt_qweight *q, size_t R, size_t C, size_t OC) {
    if (q || !dinp) {
        if (dinp) kern_zero(be, dinp, R * C * sizeof(float));
        mm_bwd(be, c, dinp, dw, db, dout, inp, w, q, R, C, OC);
        return;
    }
    int wl = gpt_wlayout(c);
    kern_matmul_fwd(be, dinp, dout, w, NULL, R, OC, C, wl == KERN_W_IN_OUT ? KERN_W_OUT_IN : KERN_W_IN_OUT);
    if (dw || db) kern_matmul_bwd(be, NULL, dw, db, dout, inp, w, R, C, OC, wl);
}

/* q | k | v width of c_attn's output: (NH + 2 NKV) hs (3C for multi-head attention). */
static size_t qkv_width(const gpt_config *c) {
    size_t hs = (size_t)c->n_embd / (size_t)c->n_head;
    return ((size_t)c->n_head + 2 * (size_t)gpt_config_n_kv_head(c)) * hs;
}

void gpt_block_forward(kern_backend *be, const gpt_config *c, const gpt_layer_ptrs *w, const gpt_block_acts *a, const gpt_attn_mode *am) {
    size_t R = am->B * am->T, C = (size_t)c->n_embd, NH = (size_t)c->n_head, I = (size_t)gpt_config_n_inner(c);
    size_t NKV = (size_t)gpt_config_n_kv_head(c), hs = C / NH;
    /* ln1 = norm(x) */
    gpt_norm_fwd(be, c, a->ln1, a->ln1_mean, a->ln1_rstd, a->x, w->ln1_w, w->ln1_b, R);
    /* qkv [R, QKV] = ln1 @ W_qkv + b_qkv */
    mm(be, c, am, a->qkv, a->ln1, w->qkv_w, w->qkv_q, w->qkv_b, R, C, qkv_width(c));
    gpt_lora_fwd(am->lora, be, am->layer, GPT_ROLE_QKV_W, a->qkv, a->ln1, R);   /* + s (ln1 A^T) B^T (LoRA) */
    /* rotary: q and k heads (contiguous at the start of each row) rotated by each row's position */
    if (c->pos == GPT_POS_ROPE) kern_rope(be, a->qkv, am->rpos, am->inv_freq, R, qkv_width(c), NH + NKV, hs, 0);
    /* atty = per head softmax(q k^T / sqrt(hs) + causal mask) v: (cached) after appending this call's k, v to each
     * sequence's slot, over everything cached for it — the cache keeps the NKV key/value heads as they are; or
     * within the batch, grouped-query k, v first expanded to one head per query head */
    if (am->cached)
        kern_attn_cache_fwd(be, a->atty, am->kc, am->vc, a->qkv, am->slots, am->pos, am->B, am->T, C, NH, NKV, am->max_len);
    else {
        const float *qkv3 = a->qkv;
        if (NKV != NH) { kern_kv_expand_fwd(be, a->qkve, a->qkv, R, NH, NKV, hs); qkv3 = a->qkve; }
        kern_attention_fwd(be, a->atty, am->att_saved, qkv3, am->B, am->T, C, NH);
    }
    /* res2 = x + atty @ W_o + b_o */
    mm(be, c, am, a->res2, a->atty, w->proj_w, w->proj_q, w->proj_b, R, C, C);
    gpt_lora_fwd(am->lora, be, am->layer, GPT_ROLE_PROJ_W, a->res2, a->atty, R);
    kern_axpy(be, a->res2, 1.0f, a->x, R * C);
    /* ln2 = norm(res2) */
    gpt_norm_fwd(be, c, a->ln2, a->ln2_mean, a->ln2_rstd, a->res2, w->ln2_w, w->ln2_b, R);
    /* fch [R,I] = ln2 @ W_fc + b_fc;  fch_gelu = gelu_tanh(fch)  |  SwiGLU: silu(ln2 @ W_gate) * fch */
    mm(be, c, am, a->fch, a->ln2, w->fc_w, w->fc_q, w->fc_b, R, C, I);
    gpt_lora_fwd(am->lora, be, am->layer, GPT_ROLE_FC_W, a->fch, a->ln2, R);
    if (c->act == GPT_ACT_SWIGLU) {
        mm(be, c, am, a->gate, a->ln2, w->gate_w, w->gate_q, NULL, R, C, I);
        gpt_lora_fwd(am->lora, be, am->layer, GPT_ROLE_GATE_W, a->gate, a->ln2, R);
        kern_swiglu_fwd(be, a->fch_gelu, a->gate, a->fch, R * I);
    } else {
        kern_gelu_fwd(be, a->fch_gelu, a->fch, R * I);
    }
    /* xo = res2 + fch_gelu @ W_proj [I,C] + b_proj  (xo may alias x: x is no longer read) */
    mm(be, c, am, a->xo, a->fch_gelu, w->fcproj_w, w->fcproj_q, w->fcproj_b, R, I, C);
    gpt_lora_fwd(am->lora, be, am->layer, GPT_ROLE_FCPROJ_W, a->xo, a->fch_gelu, R);
    kern_axpy(be, a->xo, 1.0f, a->res2, R * C);
}

void gpt_block_backward(kern_backend *be, const gpt_config *c, const gpt_layer_ptrs *w, const gpt_layer_ptrs *g, const gpt_block_acts *a,
                        const gpt_attn_mode *am, const gpt_block_grads *d, int need_input) {
    GK_CHECK(!am->cached, "gpt_block_backward: a KV-cache forward saves nothing to differentiate");
    size_t B = am->B, T = am->T, R = B * T, C = (size_t)c->n_embd, NH = (size_t)c->n_head;
    size_t NKV = (size_t)gpt_config_n_kv_head(c), hs = C / NH;
    size_t I = (size_t)gpt_config_n_inner(c), QKV = qkv_width(c);
    float *dres = d->dres, *dsmall = d->dsmall, *dbig1 = d->dbig1, *dbig2 = d->dbig2, *dbig3 = d->dbig3;

    /* xo = res2 + fch_gelu @ Wp + bp:  d res2 = dres (residual, kept in dres);
     * d fch_gelu = dres @ Wp^T;  dWp += fch_gelu^T dres;  dbp += sum dres */
    mm_bwd_set(be, c, dbig1, g->fcproj_w, g->fcproj_b, dres, a->fch_gelu, w->fcproj_w, w->fcproj_q, R, I, C);
    /* LoRA beside each product: its A, B gradients and its share of the input gradient (lora.c) */
    gpt_lora_bwd(am->lora, be, am->layer, GPT_ROLE_FCPROJ_W, dbig1, dres, a->fch_gelu, R);
    if (c->act == GPT_ACT_SWIGLU) {
        /* fch_gelu = silu(gate) * fch:  d gate (dbig2), d fch (dbig3) */
        kern_zero(be, dbig2, R * I * sizeof(float));
        kern_zero(be, dbig3, R * I * sizeof(float));
        kern_swiglu_bwd(be, dbig2, dbig3, dbig1, a->gate, a->fch, R * I);
        /* gate = ln2 @ Wgate, fch = ln2 @ Wfc:  d ln2 = d gate @ Wgate^T + d fch @ Wfc^T */
        mm_bwd_set(be, c, dsmall, g->gate_w, NULL, dbig2, a->ln2, w->gate_w, w->gate_q, R, C, I);
        mm_bwd(be, c, dsmall, g->fc_w, g->fc_b, dbig3, a->ln2, w->fc_w, w->fc_q, R, C, I);
        gpt_lora_bwd(am->lora, be, am->layer, GPT_ROLE_GATE_W, dsmall, dbig2, a->ln2, R);
        gpt_lora_bwd(am->lora, be, am->layer, GPT_ROLE_FC_W, dsmall, dbig3, a->ln2, R);
    } else {
        /* fch_gelu = gelu(fch):  d fch = gelu'(fch) * d fch_gelu */
        kern_zero(be, dbig2, R * I * sizeof(float));
        kern_gelu_bwd(be, dbig2, a->fch, dbig1, R * I);
        /* fch = ln2 @ Wfc + bfc:  d ln2 = d fch @ Wfc^T;  dWfc += ln2^T d fch */
        mm_bwd_set(be, c, dsmall, g->fc_w, g->fc_b, dbig2, a->ln2, w->fc_w, w->fc_q, R, C, I);
        gpt_lora_bwd(am->lora, be, am->layer, GPT_ROLE_FC_W, dsmall, dbig2, a->ln2, R);
    }
    /* ln2 = norm(res2):  d res2 += norm_bwd(d ln2) */
    gpt_norm_bwd(be, c, dres, g->ln2_w, g->ln2_b, dsmall, a->res2, w->ln2_w, a->ln2_mean, a->ln2_rstd, R);
    /* res2 = x + atty @ Wo + bo:  d x = d res2 (residual, stays in dres);  d atty = d res2 @ Wo^T */
    mm_bwd_set(be, c, dsmall, g->proj_w, g->proj_b, dres, a->atty, w->proj_w, w->proj_q, R, C, C);
    gpt_lora_bwd(am->lora, be, am->layer, GPT_ROLE_PROJ_W, dsmall, dres, a->atty, R);
    /* atty = attention(qkv):  d qkv (dbig1 reused as [R,3C]) */
    kern_zero(be, dbig1, R * 3 * C * sizeof(float));
    float *dqkv = dbig1;
    if (NKV != NH) {
        /* attention over the expanded qkve, then each key/value head sums its group's gradients (dbig2 [R,QKV]) */
        kern_attention_bwd(be, dbig1, dsmall, a->qkve, a->atty, am->att_saved, B, T, C, NH);
        kern_zero(be, dbig2, R * QKV * sizeof(float));
        kern_kv_expand_bwd(be, dbig2, dbig1, R, NH, NKV, hs);
        dqkv = dbig2;
    } else {
        kern_attention_bwd(be, dbig1, dsmall, a->qkv, a->atty, am->att_saved, B, T, C, NH);
    }
    /* rotary: the gradient of the unrotated q, k is the inverse rotation of the rotated ones' */
    if (c->pos == GPT_POS_ROPE) kern_rope(be, dqkv, am->rpos, am->inv_freq, R, QKV, NH + NKV, hs, 1);
    /* qkv = ln1 @ Wqkv + bqkv:  d ln1 = d qkv @ Wqkv^T — only if ln1 trains or something below wants d x (not the
     * bottom block of a frozen base under LoRA: there only the adapters' dA, dB are left to compute) */
    float *dln1 = need_input || g->ln1_w || g->ln1_b ? dsmall : NULL;
    mm_bwd_set(be, c, dln1, g->qkv_w, g->qkv_b, dqkv, a->ln1, w->qkv_w, w->qkv_q, R, C, QKV);
    gpt_lora_bwd(am->lora, be, am->layer, GPT_ROLE_QKV_W, dln1, dqkv, a->ln1, R);
    /* ln1 = norm(x):  d x += norm_bwd(d ln1)  (only if something below wants it) */
    if (dln1) gpt_norm_bwd(be, c, need_input ? dres : NULL, g->ln1_w, g->ln1_b, dln1, a->x, w->ln1_w, a->ln1_mean, a->ln1_rstd, R);
}
