/* kern: the op list of the GPT trunk and its heads, forward and backward, on raw pointers.
 *
 * Every pointer named "device" below lives in the backend's memory (host memory for the CPU backends).
 * The model never dereferences device pointers itself: it allocates with kern_alloc, moves bytes with
 * kern_upload/kern_download, and calls these ops. A CUDA backend implements the same list.
 *
 * Conventions
 *  - Row-major, fp32. N = number of rows (B*T), C = channels, OC = output channels, V = vocabulary.
 *  - Token ids are int32 device arrays.
 *  - Backward ops ACCUMULATE (+=) into every gradient they write, parameter and activation gradients alike;
 *    the caller zeroes buffers before a backward pass. Exception: kern_xent_fwd_bwd overwrites dlogits
 *    (it is where the gradient starts).
 *  - A NULL gradient pointer means "not needed" (frozen parameter, or an input gradient nobody wants):
 *    the op skips that work. This is how LoRA and reward-model training freeze parts of the model.
 *  - Weight layouts: KERN_W_IN_OUT is HF GPT-2's Conv1D layout, w[C][OC] (out = inp @ w); KERN_W_OUT_IN is
 *    torch.nn.Linear's layout, w[OC][C] (out = inp @ w^T), used for the tied LM head on wte[V][C].
 *
 * Implementations: src/kern/cpu/ref*.c is the plain fp32 reference (OpenMP-parallel, readable, the oracle);
 * fast paths live in their own files and are selected with kern_set_impl. Tests compare every fast path
 * with the reference on random inputs of awkward sizes, and check every reference backward by finite
 * differences in double precision (kern_ref64_* below: the same reference code instantiated for double).
 */
#ifndef GK_KERN_H
#define GK_KERN_H

#include <stddef.h>
#include <stdint.h>

enum { KERN_W_IN_OUT = 0, KERN_W_OUT_IN = 1 };

typedef enum { KERN_IMPL_REF = 0, KERN_IMPL_FAST = 1 } kern_impl;
void kern_set_impl(kern_impl impl);     /* default: KERN_IMPL_FAST when built with fast paths, else REF */
kern_impl kern_get_impl(void);
const char *kern_impl_name(void);       /* e.g. "cpu-ref", "cpu-fast(openblas SkylakeX, 2 threads)" */

/* Matmul precision on the fast path. KERN_PREC_BF16 rounds both inputs of every matmul product to bfloat16
 * and accumulates in fp32 (fp32 in, fp32 out: weights, grads and AdamW state stay fp32 masters); the other ops
 * stay fp32. Returns 0, or -1 (precision unchanged) if this build/CPU has no bf16 matmul (needs oneDNN and
 * AVX512-BF16 or AMX). The reference ignores it. Default KERN_PREC_FP32. */
typedef enum { KERN_PREC_FP32 = 0, KERN_PREC_BF16 = 1 } kern_prec;
int kern_set_precision(kern_prec prec);
kern_prec kern_get_precision(void);
int kern_bf16_available(void);
/* A bf16 copy of [base, base+n) kept for the bf16 matmuls (a training loop's parameters): products whose fp32
 * input lies inside the range read the copy instead of rounding the input again on every call (forward and
 * backward read each weight twice per step). The copy is refreshed on first use after kern_adamw writes into
 * the range; nothing else may write there while it is registered. n = 0 drops it. No-op without bf16. */
void kern_bf16_shadow(const float *base, size_t n);

/* Measures this machine with a small probe (~0.5 s): fp32 GEMM GFLOP/s (1024^3 products on the fast path's GEMM),
 * bf16 GEMM GFLOP/s (0 if unavailable) and memory bandwidth in GB/s (a streaming a = b + s c over 3 x 32 MiB,
 * counting 3 x 4 bytes per element). Any pointer may be NULL. For MFU: achieved FLOP/s over *fp32_gflops.
 * Returns 0. */
int kern_peak_probe(double *fp32_gflops, double *bf16_gflops, double *bw_gbs);

/* ---------------------------------------------------------------- memory */
void *kern_alloc(size_t bytes);                              /* zero-filled; aborts on OOM */
void  kern_free(void *p);
void  kern_zero(void *p, size_t bytes);
void  kern_upload(void *dst_dev, const void *src_host, size_t bytes);
void  kern_download(void *dst_host, const void *src_dev, size_t bytes);
void  kern_copy(void *dst_dev, const void *src_dev, size_t bytes);

/* ---------------------------------------------------------------- trunk ops */

/* out[b,t,:] = wte[tok[b,t],:] + wpe[pos0+t,:].   out [B,T,C]; tok [B,T]; wte [V,C]; wpe [maxT,C].
 * Token ids are validated by the caller (the model), not here. */
void kern_embed_fwd(float *out, const int32_t *tok, const float *wte, const float *wpe,
                    size_t B, size_t T, size_t C, size_t pos0);
/* dwte[tok[b,t],:] += dout[b,t,:];  dwpe[pos0+t,:] += dout[b,t,:].  Either grad may be NULL. */
void kern_embed_bwd(float *dwte, float *dwpe, const float *dout, const int32_t *tok,
                    size_t B, size_t T, size_t C, size_t pos0);

/* LayerNorm over the last dim, eps given.  out,inp [N,C]; w,b [C]; mean,rstd [N] (saved for backward). */
void kern_layernorm_fwd(float *out, float *mean, float *rstd, const float *inp, const float *w,
                        const float *b, size_t N, size_t C, float eps);
/* dinp [N,C] +=; dw, db [C] +=.  Any of the three may be NULL. */
void kern_layernorm_bwd(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                        const float *w, const float *mean, const float *rstd, size_t N, size_t C);

/* out[N,OC] = inp[N,C] @ W + bias (bias may be NULL). W is w[C,OC] (KERN_W_IN_OUT) or w[OC,C] (KERN_W_OUT_IN).
 * out is overwritten. */
void kern_matmul_fwd(float *out, const float *inp, const float *w, const float *bias,
                     size_t N, size_t C, size_t OC, int wlayout);
/* dinp[N,C] += dout @ W^T;  dw += (inp^T @ dout, in w's layout);  dbias[OC] += sum_rows dout.  Each may be NULL. */
void kern_matmul_bwd(float *dinp, float *dw, float *dbias, const float *dout, const float *inp,
                     const float *w, size_t N, size_t C, size_t OC, int wlayout);

/* Causal multi-head self-attention.  qkv [B,T,3C] holds q | k | v along the last dim (HF c_attn order),
 * head h uses channels [h*hs, (h+1)*hs) of each, hs = C/NH.  out [B,T,C] (overwritten).
 * scores scaled by 1/sqrt(hs).  saved: kern_attention_saved_floats(B,T,C,NH) floats that the forward fills and
 * the backward reads (the reference keeps softmax probabilities; a blocked kernel keeps log-sum-exps). */
size_t kern_attention_saved_floats(size_t B, size_t T, size_t C, size_t NH);   /* depends on kern_set_impl:
                                       ref B*NH*T*T, fast B*NH*T; forward and backward must use the same impl */
void kern_attention_fwd(float *out, float *saved, const float *qkv, size_t B, size_t T, size_t C, size_t NH);
/* dqkv [B,T,3C] +=.  out is the forward's output (a blocked backward needs it). */
void kern_attention_bwd(float *dqkv, const float *dout, const float *qkv, const float *out,
                        const float *saved, size_t B, size_t T, size_t C, size_t NH);

/* GELU, tanh approximation: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).  n elements. */
void kern_gelu_fwd(float *out, const float *inp, size_t n);
void kern_gelu_bwd(float *dinp, const float *inp, const float *dout, size_t n);   /* dinp += */

void kern_add(float *out, const float *a, const float *b, size_t n);            /* out = a + b */
void kern_axpy(float *y, float alpha, const float *x, size_t n);                 /* y += alpha x */
void kern_scale(float *x, float s, size_t n);                                    /* x *= s */

/* ---------------------------------------------------------------- losses' building blocks */

/* Softmax cross-entropy per row. logits [N,V]; targets [N] (host or device per backend; target < 0 means
 * "ignore": loss 0, zero gradient).  loss [N] (overwritten, natural log).  If dloss is non-NULL, dlogits
 * [N,V] is OVERWRITTEN with dloss[i] * (softmax(logits[i]) - onehot(target[i])); dlogits may alias logits. */
void kern_xent_fwd_bwd(float *loss, float *dlogits, const float *logits, const int32_t *targets,
                       const float *dloss, size_t N, size_t V);

/* ---------------------------------------------------------------- optimizer building blocks */

/* Sum of squares (in double) of x[0..n). */
double kern_sumsq(const float *x, size_t n);
/* AdamW, decoupled weight decay:
 *   m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;
 *   p -= lr * ( (m / bc1) / (sqrt(v / bc2) + eps) + wd * p )
 * where bc1 = 1 - b1^t, bc2 = 1 - b2^t are passed in, and g = grad * gscale (gradient clipping folded in). */
void kern_adamw(float *p, const float *g, float *m, float *v, size_t n, float lr, float b1, float b2,
                float eps, float wd, float bc1, float bc2, float gscale);

/* ---------------------------------------------------------------- double-precision reference */
/* The same reference code compiled for double, for finite-difference gradient checks in tests.
 * Signatures mirror the float ops above with double in place of float. */
void kern_ref64_embed_fwd(double *out, const int32_t *tok, const double *wte, const double *wpe,
                          size_t B, size_t T, size_t C, size_t pos0);
void kern_ref64_embed_bwd(double *dwte, double *dwpe, const double *dout, const int32_t *tok,
                          size_t B, size_t T, size_t C, size_t pos0);
void kern_ref64_layernorm_fwd(double *out, double *mean, double *rstd, const double *inp, const double *w,
                              const double *b, size_t N, size_t C, double eps);
void kern_ref64_layernorm_bwd(double *dinp, double *dw, double *db, const double *dout, const double *inp,
                              const double *w, const double *mean, const double *rstd, size_t N, size_t C);
void kern_ref64_matmul_fwd(double *out, const double *inp, const double *w, const double *bias,
                           size_t N, size_t C, size_t OC, int wlayout);
void kern_ref64_matmul_bwd(double *dinp, double *dw, double *dbias, const double *dout, const double *inp,
                           const double *w, size_t N, size_t C, size_t OC, int wlayout);
void kern_ref64_attention_fwd(double *out, double *saved, const double *qkv, size_t B, size_t T, size_t C, size_t NH);
void kern_ref64_attention_bwd(double *dqkv, const double *dout, const double *qkv, const double *out,
                              const double *saved, size_t B, size_t T, size_t C, size_t NH);
void kern_ref64_gelu_fwd(double *out, const double *inp, size_t n);
void kern_ref64_gelu_bwd(double *dinp, const double *inp, const double *dout, size_t n);
void kern_ref64_xent_fwd_bwd(double *loss, double *dlogits, const double *logits, const int32_t *targets,
                             const double *dloss, size_t N, size_t V);

/* ================================================================ cached attention (issue 4: inference engine)
 * Owned by the inference engine's author; implemented in src/kern/cpu/attn_cache.c (fp32 reference, OpenMP over
 * sequences x heads x new rows). */

/* Attention of n new tokens per sequence over a key/value cache, for prefill and one-token decode.
 *  qkv [B, n, 3C]: the new rows' q | k | v (HF c_attn order, as kern_attention_fwd); head h uses channels
 *  [h*hs, (h+1)*hs), hs = C/NH.
 *  kc, vc [S, NH, maxT, hs]: one layer's key and value cache (S slots; each head's rows contiguous so a decode
 *  step streams them). Sequence b uses slot slot[b] (host array) and already has pos[b] (host) cached rows.
 * The op first writes the new k and v into rows pos[b] .. pos[b]+n-1 of that slot, then
 *   out[b,i, head h] = sum_{j <= pos[b]+i} softmax_j( q[b,i,h] . k[j] / sqrt(hs) ) v[j]
 * i.e. the new rows attend causally over everything cached before them and to themselves.  out [B, n, C]
 * is overwritten.  Requires pos[b] + n <= maxT and distinct slots (the caller, the model, checks). */
void kern_attn_cache_fwd(float *out, float *kc, float *vc, const float *qkv, const size_t *slot, const size_t *pos,
                         size_t B, size_t n, size_t C, size_t NH, size_t maxT);
/* kern_matmul_fwd for a few rows (decode steps: N = live sequences, at most KERN_SKINNY_MAX_N): the same
 * product, layouts and bias, computed by streaming W exactly once (a decode step is bound by reading the weights;
 * a general GEMM packs W first, which costs more than the product at N = 1). OpenMP: each thread streams one
 * contiguous block of W (input rows for KERN_W_IN_OUT, output rows for KERN_W_OUT_IN).
 * Equals kern_matmul_fwd up to float summation order. Also in attn_cache.c (inference-only ops). */
#define KERN_SKINNY_MAX_N 16
void kern_matmul_skinny_fwd(float *out, const float *inp, const float *w, const float *bias,
                            size_t N, size_t C, size_t OC, int wlayout);
/* For tests: 1 makes kern_matmul_skinny_fwd use its portable loops (what CPUs without AVX-512 run) even where
 * the AVX-512 body would be picked; returns the previous setting. */
int kern_skinny_portable(int on);
/* ================================================================ end of cached attention */

#endif
