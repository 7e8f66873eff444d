/* cpu.h: private to src/kern. Declarations shared by kern.c (the dispatcher) and the CPU implementations:
 * the fp32 reference (ref.c, ref_impl.h), the fast paths (fast*.c), and a portable OpenMP pragma macro.
 *
 * kern.c routes every public kern_* op to kern_ref_* or kern_fast_* according to kern_set_impl.
 * The signatures are exactly those of kern.h.
 */
#ifndef GK_KERN_CPU_H
#define GK_KERN_CPU_H

#include <stddef.h>
#include <stdint.h>

/* GK_OMP(omp parallel for) expands to the pragma with OpenMP and to nothing without it, so that a
 * NO_OPENMP=1 build stays warning-free (-Wunknown-pragmas is part of -Wall). */
#ifdef _OPENMP
#define GK_OMP(x) _Pragma(#x)
#else
#define GK_OMP(x)
#endif

/* ---------------------------------------------------------------- fp32 reference (ref.c) */
void kern_ref_embed_fwd(float *out, const int32_t *tok, const float *wte, const float *wpe,
                        size_t B, size_t T, size_t C, size_t pos0);
void kern_ref_embed_bwd(float *dwte, float *dwpe, const float *dout, const int32_t *tok,
                        size_t B, size_t T, size_t C, size_t pos0);
void kern_ref_layernorm_fwd(float *out, float *mean, float *rstd, const float *inp, const float *w,
                            const float *b, size_t N, size_t C, float eps);
void kern_ref_layernorm_bwd(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                            const float *w, const float *mean, const float *rstd, size_t N, size_t C);
void kern_ref_matmul_fwd(float *out, const float *inp, const float *w, const float *bias,
                         size_t N, size_t C, size_t OC, int wlayout);
void kern_ref_matmul_bwd(float *dinp, float *dw, float *dbias, const float *dout, const float *inp,
                         const float *w, size_t N, size_t C, size_t OC, int wlayout);
size_t kern_ref_attention_saved_floats(size_t B, size_t T, size_t C, size_t NH);
void kern_ref_attention_fwd(float *out, float *saved, const float *qkv, size_t B, size_t T, size_t C, size_t NH);
void kern_ref_attention_bwd(float *dqkv, const float *dout, const float *qkv, const float *out,
                            const float *saved, size_t B, size_t T, size_t C, size_t NH);
void kern_ref_gelu_fwd(float *out, const float *inp, size_t n);
void kern_ref_gelu_bwd(float *dinp, const float *inp, const float *dout, size_t n);
void kern_ref_add(float *out, const float *a, const float *b, size_t n);
void kern_ref_axpy(float *y, float alpha, const float *x, size_t n);
void kern_ref_scale(float *x, float s, size_t n);
void kern_ref_xent_fwd_bwd(float *loss, float *dlogits, const float *logits, const int32_t *targets,
                           const float *dloss, size_t N, size_t V);
double kern_ref_sumsq(const float *x, size_t n);
void kern_ref_adamw(float *p, const float *g, float *m, float *v, size_t n, float lr, float b1, float b2,
                    float eps, float wd, float bc1, float bc2, float gscale);

/* ---------------------------------------------------------------- fast paths (fast.c, fast_attn.c) */
const char *kern_fast_name(void);
int kern_fast_bf16_available(void);
void kern_fast_layernorm_fwd(float *out, float *mean, float *rstd, const float *inp, const float *w,
                             const float *b, size_t N, size_t C, float eps);
void kern_fast_layernorm_bwd(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                             const float *w, const float *mean, const float *rstd, size_t N, size_t C);
void kern_fast_matmul_fwd(float *out, const float *inp, const float *w, const float *bias,
                          size_t N, size_t C, size_t OC, int wlayout);
void kern_fast_matmul_bwd(float *dinp, float *dw, float *dbias, const float *dout, const float *inp,
                          const float *w, size_t N, size_t C, size_t OC, int wlayout);
size_t kern_fast_attention_saved_floats(size_t B, size_t T, size_t C, size_t NH);
void kern_fast_attention_fwd(float *out, float *saved, const float *qkv, size_t B, size_t T, size_t C, size_t NH);
void kern_fast_attention_bwd(float *dqkv, const float *dout, const float *qkv, const float *out,
                             const float *saved, size_t B, size_t T, size_t C, size_t NH);
void kern_fast_gelu_fwd(float *out, const float *inp, size_t n);
void kern_fast_gelu_bwd(float *dinp, const float *inp, const float *dout, size_t n);
void kern_fast_add(float *out, const float *a, const float *b, size_t n);
void kern_fast_axpy(float *y, float alpha, const float *x, size_t n);
void kern_fast_scale(float *x, float s, size_t n);
void kern_fast_xent_fwd_bwd(float *loss, float *dlogits, const float *logits, const int32_t *targets,
                            const float *dloss, size_t N, size_t V);
double kern_fast_sumsq(const float *x, size_t n);
void kern_fast_adamw(float *p, const float *g, float *m, float *v, size_t n, float lr, float b1, float b2,
                     float eps, float wd, float bc1, float bc2, float gscale);

/* ---------------------------------------------------------------- GEMM backends (fast_dnnl.c, fast.c) */
/* C[M,N] = op(A) op(B) (+ bias[N]) (+ C if accumulate), row-major; ta/tb: A stored [K,M] / B stored [N,K].
 * bf16: inputs rounded to bfloat16, fp32 accumulation and result. oneDNN only (GK_HAVE_DNNL). */
void kern_cpu_gemm(int ta, int tb, size_t M, size_t N, size_t K, const float *A, size_t lda, const float *B, size_t ldb,
             const float *bias, int accumulate, float *C, size_t ldc, int bf16);
int  kern_cpu_dnnl_available(void);
/* kern_bf16_shadow's implementation, and the note kern_fast_adamw leaves when it writes [p, p+n). */
void kern_cpu_bf16_shadow(const float *base, size_t n);
void kern_cpu_bf16_written(const float *p, size_t n);
/* Rounds two fp32 arrays to bfloat16 (nearest even), in one OpenMP-parallel pass. */
void kern_f32_to_bf16_pair(uint16_t *da, const float *a, size_t na, uint16_t *db, const float *b, size_t nb);
int  kern_cpu_has_bf16(void);                                        /* AVX512-BF16 or AMX-BF16 */

#endif
