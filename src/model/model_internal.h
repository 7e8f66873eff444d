/* model_internal.h: shared between the files of src/model only (not part of the public interface). */
#ifndef GK_MODEL_INTERNAL_H
#define GK_MODEL_INTERNAL_H
#include "model/model.h"

void gpt_alloc_params(gpt_model *m);   /* zero-filled; no-op if already allocated */
/* out [B*T, C] = token embedding of tok [B*T] (device) + positions pos0 + t (learned positions), whether the token
 * table is fp32 or kept quantized. */
void gpt_embed_tokens(gpt_model *m, float *out, const int32_t *tok, size_t B, size_t T, size_t pos0);
/* out [R, OC] = inp [R, C] @ W^T + bias for a quantized W [OC, C] (its parts fill column ranges). train = 1: the
 * product training differentiates (kern_matmul_q_train_fwd: no int8 decode path). */
void gpt_qweight_fwd(kern_backend *be, const gpt_qweight *q, float *out, const float *inp, const float *bias, size_t R,
                     size_t C, size_t OC, int train);
/* dinp [R, C] += dout [R, OC] @ W for a frozen quantized W [OC, C] (QLoRA's base): each part from its columns. */
void gpt_qweight_bwd(kern_backend *be, const gpt_qweight *q, float *dinp, const float *dout, size_t R, size_t C, size_t OC);

/* ---------------------------------------------------------------- the block (block.c)
 * One transformer layer, written once, for the training forward (and its backward) and the KV-cache
 * prefill/decode. The caller picks the activation buffers and an attention mode; the layer math, the op
 * sequence and therefore the floats are the same for both (only attention and, for few rows, the matmul
 * kernel differ, as they must). */

/* How a block call attends and multiplies. */
typedef struct {
    int    cached;        /* 0: causal attention within each of B sequences of T rows (training; saves for
                           *    backward into att_saved). 1: T new rows per sequence attend over a KV cache. */
    size_t B, T;          /* rows R = B*T */
    float *att_saved;     /* full: kern_attention_saved_floats(B, T, C, NH) floats, filled for the backward */
    float *kc, *vc;       /* cached: this layer's cache [S, NH, max_len, hs] */
    const int32_t *slots, *pos;  /* cached, device [B]: sequence b's slot and its cached length before the call */
    size_t max_len;       /* cached: rows per slot */
    int    skinny;        /* 1: R <= KERN_SKINNY_MAX_N uses the weight-streaming decode matmul (inference only) */
    const int32_t *rpos;  /* rotary models: device [R], each row's position */
    const float *inv_freq;   /* rotary models: device [hs/2] */
    gpt_lora *lora;       /* the model's adapters (NULL: none): added to the products they sit on */
    int    layer;         /* this block's index (finds its adapters) */
} gpt_attn_mode;

/* One layer's activations over R rows. In the training path every buffer is distinct and kept for backward;
 * the KV path reuses one-layer scratch, so ln1/ln2 (and their mean/rstd) may alias and xo may alias x. */
typedef struct {
    float *x;                           /* [R,C]  residual stream entering the layer (read) */
    float *ln1, *ln1_mean, *ln1_rstd;   /* [R,C], [R], [R] */
    float *qkv;                         /* [R,3C] */
    float *atty;                        /* [R,C]  attention output before c_proj */
    float *res2;                        /* [R,C]  x + attn */
    float *ln2, *ln2_mean, *ln2_rstd;   /* [R,C], [R], [R] */
    float *fch, *fch_gelu;              /* [R,I]  pre- and post-activation (SwiGLU: up, silu(gate) * up) */
    float *gate;                        /* [R,I]  SwiGLU's gate projection */
    float *qkve;                        /* [R,3C] grouped-query attention: qkv with k, v expanded per query head */
    float *xo;                          /* [R,C]  the layer's output */
} gpt_block_acts;

/* Backward scratch for one layer over R rows (device; contents are not kept between layers). */
typedef struct {
    float *dres;    /* [R,C]  gradient of the residual stream: in, the layer output's; out, its input's */
    float *dsmall;  /* [R,C] */
    float *dbig1;   /* [R, max(I, 3C)] */
    float *dbig2;   /* [R, max(I, 3C)] */
    float *dbig3;   /* [R, max(I, 3C)] (SwiGLU) */
} gpt_block_grads;

/* x -> xo through one layer with weights w. */
void gpt_block_forward(kern_backend *be, const gpt_config *c, const gpt_layer_ptrs *w, const gpt_block_acts *a, const gpt_attn_mode *am);
/* Backward of a full-attention gpt_block_forward with the same acts: accumulates into the non-NULL fields of g
 * (all NULL when the blocks are frozen); d.dres becomes the gradient at the layer's input, or is left partial
 * when need_input is 0 (nothing below wants it, so the last LayerNorm's input gradient is skipped). */
void gpt_block_backward(kern_backend *be, const gpt_config *c, const gpt_layer_ptrs *w, const gpt_layer_ptrs *g, const gpt_block_acts *a,
                        const gpt_attn_mode *am, const gpt_block_grads *d, int need_input);
/* The configured norm over R rows: out, mean, rstd [R,C], [R], [R] (RMSNorm: mean unused). Used by ln_f too. */
void gpt_norm_fwd(kern_backend *be, const gpt_config *c, float *out, float *mean, float *rstd, const float *inp, const float *w,
                  const float *b, size_t R);
void gpt_norm_bwd(kern_backend *be, const gpt_config *c, float *dinp, float *dw, float *db, const float *dout, const float *inp,
                  const float *w, const float *mean, const float *rstd, size_t R);
#endif
