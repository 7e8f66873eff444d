/* kern_enc.h: the ops an encoder (BERT-family sentence embedder, src/embed) needs beyond kern.h's list:
 * token-type embeddings, bidirectional attention with a key-length mask, exact (erf) GELU, and the row dot
 * products of vector search.
 *
 * Why a second header: these ops are new with issue 16 while kern.h's table is being extended in parallel
 * (the LLaMA ops); keeping them here avoids two edits to one table. They run on both CPU kinds (host memory:
 * the pointers are kern_alloc'd on be, which must be a CPU backend: checked) with one plain implementation
 * each (src/kern/enc.c), OpenMP-parallel. A device backend would move them into kern_ops. Everything else
 * an encoder does (matmuls with bias, LayerNorm, residual adds) goes through kern.h's table. */
#ifndef GK_KERN_ENC_H
#define GK_KERN_ENC_H
#include "kern/kern.h"

/* out[b,t,:] = wte[tok[b,t],:] + wpe[t,:] + wtt[type[b,t],:]   (type NULL: all 0).
 * out [B,T,C]; tok, type [B,T] (host int32, validated by the caller); wte [V,C]; wpe [maxT,C]; wtt [NT,C]. */
void kern_enc_embed_fwd(kern_backend *be, float *out, const int32_t *tok, const int32_t *type, const float *wte,
                        const float *wpe, const float *wtt, size_t B, size_t T, size_t C);

/* Bidirectional multi-head attention with padding: sequence b has lens[b] <= T valid rows (host array).
 *   out[b,i,head h] = sum_{j < lens[b]} softmax_j(q[b,i,h] . k[b,j,h] / sqrt(hs)) v[b,j,h]   for i < lens[b]
 * and 0 for padding rows i >= lens[b]. qkv [B,T,3C] is q | k | v along the last dim (as kern_attention_fwd),
 * hs = C/NH. out [B,T,C] overwritten. The same as HF BertSelfAttention with an attention mask (HF adds the
 * dtype's most negative value to masked scores, which underflows to exactly 0 after softmax). */
void kern_enc_attention_fwd(kern_backend *be, float *out, const float *qkv, const int32_t *lens, size_t B,
                            size_t T, size_t C, size_t NH);

/* GELU, exact: 0.5 x (1 + erf(x / sqrt 2)) — BERT's "gelu" (torch.nn.functional.gelu's default). */
void kern_enc_gelu_erf_fwd(kern_backend *be, float *out, const float *inp, size_t n);

/* Dot products of one query with many rows (host memory, any backend: vector search runs on host data).
 *   out[r] = sum_c x[r,c] q[c]              x [R,C] fp32
 *   out[r] = scale[r] * sum_c x8[r,c] q[c]  x8 [R,C] int8 (symmetric per-row quantisation)
 * AVX2+FMA when the CPU has it (checked at run time), else portable loops; force_portable = 1 picks the
 * portable path (tests compare the two). OpenMP over rows. */
void kern_enc_dot_rows(float *out, const float *x, const float *q, size_t R, size_t C, int force_portable);
void kern_enc_dot_rows_i8(float *out, const int8_t *x8, const float *scale, const float *q, size_t R, size_t C,
                          int force_portable);
#endif
