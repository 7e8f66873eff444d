/* cpu.h: private to src/kern. Declarations shared by the backend tables (cpu/backends.c) and the CPU
 * implementations: the fp32 reference (ref.c, ref_impl.h), the fast paths (fast*.c, attn_cache.c), the GEMM
 * libraries (fast.c, fast_dnnl.c, gemm_pick.c), and a portable OpenMP pragma macro.
 *
 * The "ref" backend's table points at kern_ref_*, the "cpu" backend's at kern_fast_* (and at kern_ref_* where
 * the reference is already the fast version: embedding). The signatures are exactly those of kern_ops.
 */
#ifndef GK_KERN_CPU_H
#define GK_KERN_CPU_H

#include <stddef.h>
#include <stdint.h>
#include "kern/kern.h"

/* GK_OMP(omp parallel for) expands to the pragma with OpenMP and to nothing without it, so that a
 * NO_OPENMP=1 build stays warning-free (-Wunknown-pragmas is part of -Wall). */
#ifdef _OPENMP
#define GK_OMP(x) _Pragma(#x)
#else
#define GK_OMP(x)
#endif

/* ---------------------------------------------------------------- fp32 reference (ref.c) */
void kern_ref_embed_fwd(kern_backend *be, float *out, const int32_t *tok, const float *wte, const float *wpe,
                        size_t B, size_t T, size_t C, size_t pos0);
void kern_ref_embed_bwd(kern_backend *be, float *dwte, float *dwpe, const float *dout, const int32_t *tok,
                        size_t B, size_t T, size_t C, size_t pos0);
void kern_ref_layernorm_fwd(kern_backend *be, float *out, float *mean, float *rstd, const float *inp, const float *w,
                            const float *b, size_t N, size_t C, float eps);
void kern_ref_layernorm_bwd(kern_backend *be, float *dinp, float *dw, float *db, const float *dout, const float *inp,
                            const float *w, const float *mean, const float *rstd, size_t N, size_t C);
void kern_ref_matmul_fwd(kern_backend *be, float *out, const float *inp, const float *w, const float *bias,
                         size_t N, size_t C, size_t OC, int wlayout);
void kern_ref_matmul_bwd(kern_backend *be, float *dinp, float *dw, float *dbias, const float *dout, const float *inp,
                         const float *w, size_t N, size_t C, size_t OC, int wlayout);
size_t kern_ref_attention_saved_floats(kern_backend *be, size_t B, size_t T, size_t C, size_t NH);
void kern_ref_attention_fwd(kern_backend *be, float *out, float *saved, const float *qkv, size_t B, size_t T, size_t C, size_t NH);
void kern_ref_attention_bwd(kern_backend *be, float *dqkv, const float *dout, const float *qkv, const float *out,
                            const float *saved, size_t B, size_t T, size_t C, size_t NH);
void kern_ref_gelu_fwd(kern_backend *be, float *out, const float *inp, size_t n);
void kern_ref_gelu_bwd(kern_backend *be, float *dinp, const float *inp, const float *dout, size_t n);
void kern_ref_add(kern_backend *be, float *out, const float *a, const float *b, size_t n);
void kern_ref_axpy(kern_backend *be, float *y, float alpha, const float *x, size_t n);
void kern_ref_scale(kern_backend *be, float *x, float s, size_t n);
void kern_ref_xent_fwd_bwd(kern_backend *be, float *loss, float *dlogits, const float *logits, const int32_t *targets,
                           const float *dloss, size_t N, size_t V);
double kern_ref_sumsq(kern_backend *be, const float *x, size_t n);
void kern_ref_adamw(kern_backend *be, float *p, const float *g, float *m, float *v, size_t n, float lr, float b1, float b2,
                    float eps, float wd, float bc1, float bc2, float gscale);

/* The LLaMA family's ops (ref_impl.h): both backends use these (OpenMP, elementwise or row-wise). */
void kern_ref_rmsnorm_fwd(kern_backend *be, float *out, float *rstd, const float *inp, const float *w, size_t N, size_t C, float eps);
void kern_ref_rmsnorm_bwd(kern_backend *be, float *dinp, float *dw, const float *dout, const float *inp, const float *w,
                          const float *rstd, size_t N, size_t C);
void kern_ref_rope(kern_backend *be, float *x, const int32_t *pos, const float *inv_freq, size_t R, size_t W, size_t nheads,
                   size_t hs, int inverse);
void kern_ref_kv_expand_fwd(kern_backend *be, float *out, const float *qkv, size_t R, size_t NH, size_t NKV, size_t hs);
void kern_ref_kv_expand_bwd(kern_backend *be, float *dqkv, const float *dout, size_t R, size_t NH, size_t NKV, size_t hs);
void kern_ref_swiglu_fwd(kern_backend *be, float *out, const float *gate, const float *up, size_t n);
void kern_ref_swiglu_bwd(kern_backend *be, float *dgate, float *dup, const float *dout, const float *gate, const float *up, size_t n);

/* Cached attention (plain triple loop) and the skinny decode matmul (kern_ref_matmul_fwd) of the reference. */
void kern_ref_attn_cache_fwd(kern_backend *be, float *out, float *kc, float *vc, const float *qkv, const int32_t *slot,
                             const int32_t *pos, size_t B, size_t n, size_t C, size_t NH, size_t NKV, size_t maxT);
void kern_ref_matmul_skinny_fwd(kern_backend *be, float *out, const float *inp, const float *w, const float *bias,
                                size_t N, size_t C, size_t OC, int wlayout);

/* ---------------------------------------------------------------- fast paths (fast.c, fast_attn.c, attn_cache.c) */
void kern_fast_attn_cache_fwd(kern_backend *be, float *out, float *kc, float *vc, const float *qkv, const int32_t *slot,
                              const int32_t *pos, size_t B, size_t n, size_t C, size_t NH, size_t NKV, size_t maxT);
void kern_fast_matmul_skinny_fwd(kern_backend *be, float *out, const float *inp, const float *w, const float *bias,
                                 size_t N, size_t C, size_t OC, int wlayout);
void kern_fast_layernorm_fwd(kern_backend *be, float *out, float *mean, float *rstd, const float *inp, const float *w,
                             const float *b, size_t N, size_t C, float eps);
void kern_fast_layernorm_bwd(kern_backend *be, float *dinp, float *dw, float *db, const float *dout, const float *inp,
                             const float *w, const float *mean, const float *rstd, size_t N, size_t C);
void kern_fast_matmul_fwd(kern_backend *be, float *out, const float *inp, const float *w, const float *bias,
                          size_t N, size_t C, size_t OC, int wlayout);
void kern_fast_matmul_bwd(kern_backend *be, float *dinp, float *dw, float *dbias, const float *dout, const float *inp,
                          const float *w, size_t N, size_t C, size_t OC, int wlayout);
size_t kern_fast_attention_saved_floats(kern_backend *be, size_t B, size_t T, size_t C, size_t NH);
void kern_fast_attention_fwd(kern_backend *be, float *out, float *saved, const float *qkv, size_t B, size_t T, size_t C, size_t NH);
void kern_fast_attention_bwd(kern_backend *be, float *dqkv, const float *dout, const float *qkv, const float *out,
                             const float *saved, size_t B, size_t T, size_t C, size_t NH);
void kern_fast_gelu_fwd(kern_backend *be, float *out, const float *inp, size_t n);
void kern_fast_gelu_bwd(kern_backend *be, float *dinp, const float *inp, const float *dout, size_t n);
void kern_fast_swiglu_fwd(kern_backend *be, float *out, const float *gate, const float *up, size_t n);
void kern_fast_swiglu_bwd(kern_backend *be, float *dgate, float *dup, const float *dout, const float *gate, const float *up,
                          size_t n);
void kern_fast_add(kern_backend *be, float *out, const float *a, const float *b, size_t n);
void kern_fast_axpy(kern_backend *be, float *y, float alpha, const float *x, size_t n);
void kern_fast_scale(kern_backend *be, float *x, float s, size_t n);
void kern_fast_xent_fwd_bwd(kern_backend *be, float *loss, float *dlogits, const float *logits, const int32_t *targets,
                            const float *dloss, size_t N, size_t V);
double kern_fast_sumsq(kern_backend *be, const float *x, size_t n);
void kern_fast_adamw(kern_backend *be, float *p, const float *g, float *m, float *v, size_t n, float lr, float b1, float b2,
                     float eps, float wd, float bc1, float bc2, float gscale);

/* ---------------------------------------------------------------- quantized weights (cpu/quant.c) */
void kern_ref_matmul_q_fwd(kern_backend *be, float *out, size_t ldo, const float *inp, const kern_qmat *w,
                           const float *bias, size_t N, int train);
void kern_fast_matmul_q_fwd(kern_backend *be, float *out, size_t ldo, const float *inp, const kern_qmat *w,
                            const float *bias, size_t N, int train);
void kern_ref_matmul_q_bwd(kern_backend *be, float *dinp, const float *dout, size_t ldd, const kern_qmat *w, size_t N);
void kern_fast_matmul_q_bwd(kern_backend *be, float *dinp, const float *dout, size_t ldd, const kern_qmat *w, size_t N);
void kern_ref_embed_q_fwd(kern_backend *be, float *out, const int32_t *tok, const kern_qmat *wte, const float *wpe,
                          size_t B, size_t T, size_t pos0);

/* ---------------------------------------------------------------- memory (kern.c): host memory, both CPU kinds */
void *kern_host_alloc(kern_backend *be, size_t bytes);
void  kern_host_free(kern_backend *be, void *p);
void  kern_host_zero(kern_backend *be, void *p, size_t bytes);
void  kern_host_upload(kern_backend *be, void *dst, const void *src, size_t bytes);
void  kern_host_download(kern_backend *be, void *dst, const void *src, size_t bytes);
void  kern_host_copy(kern_backend *be, void *dst, const void *src, size_t bytes);

/* ---------------------------------------------------------------- GEMM libraries (fast.c, fast_dnnl.c, gemm_pick.c) */
/* C[M,N] = op(A) op(B) (+ bias[N]) (+ C if accumulate), row-major; ta/tb: A stored [K,M] / B stored [N,K].
 * lib: KERN_GEMM_OPENBLAS | KERN_GEMM_ONEDNN | KERN_GEMM_BUILTIN; bf16 (oneDNN only): inputs rounded to
 * bfloat16, fp32 accumulation and result, reading sh's copy for inputs inside its range (sh may be NULL).
 * Returns 0 if lib is BUILTIN (no library: the caller runs the reference loops). */
int  kern_cpu_gemm_lib(kern_gemm lib, int bf16, kern_cpu_shadow *sh, int ta, int tb, size_t M, size_t N, size_t K,
                       const float *A, size_t lda, const float *B, size_t ldb, const float *bias, int acc, float *C,
                       size_t ldc);
/* OpenBLAS's core name ("Cooperlake", ...) or NULL without OpenBLAS. */
const char *kern_cpu_openblas_core(void);
/* The "cpu" backend's name for be's library and precision, written into be->name. */
void kern_cpu_name(kern_backend *be);
/* kern_cpu_gemm_lib's oneDNN part (fast_dnnl.c, GK_HAVE_DNNL only). */
int  kern_cpu_dnnl_available(void);
void kern_cpu_gemm(int ta, int tb, size_t M, size_t N, size_t K, const float *A, size_t lda, const float *B,
                   size_t ldb, const float *bias, int accumulate, float *C, size_t ldc, int bf16, kern_cpu_shadow *sh);
/* The bf16 weight copy (kern_bf16_shadow): set (replacing *sh; n = 0 frees it), and the note kern_fast_adamw
 * leaves when it writes [p, p+n) (the copy goes stale). */
void kern_cpu_shadow_set(kern_cpu_shadow **sh, const float *base, size_t n);
void kern_cpu_shadow_written(kern_cpu_shadow *sh, const float *p, size_t n);
/* Rounds two fp32 arrays to bfloat16 (nearest even), in one OpenMP-parallel pass. */
void kern_f32_to_bf16_pair(uint16_t *da, const float *a, size_t na, uint16_t *db, const float *b, size_t nb);
int  kern_cpu_has_bf16(void);                                        /* AVX512-BF16 or AMX-BF16 */

#endif
