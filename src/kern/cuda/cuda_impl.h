/* cuda_impl.h: private to src/kern/cuda (CUDA C++ only). The backend's state, the error checks, launch-size
 * helpers and the declarations shared by its three files:
 *   backend.cu   state, memory ops, the cuBLASLt call (kcu_gemm), the bf16 weight copy, the op table
 *   matmul.cu    the table's matmuls as row-major products for kcu_gemm
 *   ops.cu       embedding, norms, elementwise ops, cross-entropy, AdamW, sum of squares, LLaMA ops
 *   attn.cu      causal attention forward/backward and attention over the KV cache
 *
 * Error tiers (STYLE.md): a CUDA or cuBLASLt error mid-run is unrecoverable, so every call is checked and aborts
 * with file:line, the API's own message and a hint (CU_CHECK, CU_LAUNCHED after every kernel launch). Only
 * backend creation (kern_cuda_init) returns errors, because "no GPU here" is an expected outcome.
 *
 * Index arithmetic is size_t (B*T*3C overflows int at GPT-2 sizes only by a factor of a few, but it does), and
 * every grid is capped (cu_grid) with grid-stride loops inside, so no size can exceed a launch limit. */
#ifndef GK_KERN_CUDA_IMPL_H
#define GK_KERN_CUDA_IMPL_H

extern "C" {
#include "kern/kern.h"
#include "kern/cuda/cuda.h"
#include "core/core.h"
}
#include <stdint.h>
#ifdef KCU_EMULATE
/* tests/cuda_emu/emu.h: ops.cu and attn.cu compiled as plain C++ and run on the CPU under an emulation of CUDA's
 * execution model (blocks, threads as fibers, __syncthreads, warp shuffles), to test their logic without a GPU. */
#include "emu.h"
#else
#include <cuda_runtime.h>
#include <cuda_bf16.h>
#include <cublasLt.h>
/* every launch goes through this, so the emulation can replace it */
#define KCU_LAUNCH(kernel, grid, block, ...) kernel<<<(grid), (block)>>>(__VA_ARGS__)
#endif

#define CU_CHECK(call) do { cudaError_t cu_e_ = (call); if (cu_e_ != cudaSuccess) \
    gk_fatal_at(__FILE__, __LINE__, "CUDA error %s (%s) in %s (run with CUDA_LAUNCH_BLOCKING=1 to find the kernel)", \
                cudaGetErrorName(cu_e_), cudaGetErrorString(cu_e_), #call); } while (0)
/* After every <<<...>>>: a bad launch configuration shows here; a fault inside the kernel at the next sync. */
#define CU_LAUNCHED() CU_CHECK(cudaGetLastError())
#ifndef KCU_EMULATE
#define LT_CHECK(call) do { cublasStatus_t lt_e_ = (call); if (lt_e_ != CUBLAS_STATUS_SUCCESS) \
    gk_fatal_at(__FILE__, __LINE__, "cuBLASLt error %d in %s", (int)lt_e_, #call); } while (0)

/* The backend's state (be->cuda). */
struct kern_cuda_state {
    int device;
    cudaDeviceProp prop;
    cublasLtHandle_t lt;
    void *workspace;                 /* cuBLASLt workspace, KCU_WORKSPACE bytes */
    /* scratch: grown on demand, never shrunk; used within one op (all ops run in order on one stream) */
    void *scratch[3];
    size_t scratch_bytes[3];
    /* bf16 weight copy (kern_bf16_shadow): [base, base+n) rounded once per AdamW step */
    const float *sh_base;
    size_t sh_n;
    __nv_bfloat16 *sh_bf16;
    int sh_stale;
};

#endif   /* KCU_EMULATE */

/* Under emulation the ops get other names, so a test can link them beside the real ones of libgptkit.a. */
#ifdef KCU_EMULATE
#define kcu_adamw_raw emu_kcu_adamw_raw
#define kcu_add emu_kcu_add
#define kcu_gemm emu_kcu_gemm
#define kcu_matmul_fwd emu_kcu_matmul_fwd
#define kcu_matmul_bwd emu_kcu_matmul_bwd
#define kcu_matmul_skinny_fwd emu_kcu_matmul_skinny_fwd
#define kcu_attention_bwd emu_kcu_attention_bwd
#define kcu_attention_fwd emu_kcu_attention_fwd
#define kcu_attention_saved_floats emu_kcu_attention_saved_floats
#define kcu_attn_cache_fwd emu_kcu_attn_cache_fwd
#define kcu_axpy emu_kcu_axpy
#define kcu_colsum emu_kcu_colsum
#define kcu_embed_bwd emu_kcu_embed_bwd
#define kcu_embed_fwd emu_kcu_embed_fwd
#define kcu_f32_to_bf16 emu_kcu_f32_to_bf16
#define kcu_gelu_bwd emu_kcu_gelu_bwd
#define kcu_gelu_fwd emu_kcu_gelu_fwd
#define kcu_kv_expand_bwd emu_kcu_kv_expand_bwd
#define kcu_kv_expand_fwd emu_kcu_kv_expand_fwd
#define kcu_layernorm_bwd emu_kcu_layernorm_bwd
#define kcu_layernorm_fwd emu_kcu_layernorm_fwd
#define kcu_rmsnorm_bwd emu_kcu_rmsnorm_bwd
#define kcu_rmsnorm_fwd emu_kcu_rmsnorm_fwd
#define kcu_rope emu_kcu_rope
#define kcu_scale emu_kcu_scale
#define kcu_scratch emu_kcu_scratch
#define kcu_sumsq emu_kcu_sumsq
#define kcu_swiglu_bwd emu_kcu_swiglu_bwd
#define kcu_swiglu_fwd emu_kcu_swiglu_fwd
#define kcu_xent_fwd_bwd emu_kcu_xent_fwd_bwd
#endif

#define KCU_WORKSPACE ((size_t)32 << 20)
#define KCU_THREADS 256
/* Blocks for n items at `per` items per block, at least 1, at most 2^20 (kernels loop with a grid stride). */
static inline unsigned cu_grid(size_t n, size_t per) {
    size_t b = (n + per - 1) / per;
    if (b < 1) b = 1;
    if (b > ((size_t)1 << 20)) b = (size_t)1 << 20;
    return (unsigned)b;
}
/* Scratch buffer i of at least `bytes` (device memory; contents undefined). */
void *kcu_scratch(kern_backend *be, int i, size_t bytes);

/* How a row-major product C[M,N] (+)= op(A)[M,K] op(B)[K,N] (ta: A stored [K,M], row stride lda; tb: B stored
 * [N,K], row stride ldb; C row stride ldc) is handed to a column-major GEMM (cuBLASLt): a row-major X with row
 * stride ld read column-major is X^T with leading dimension ld, so C^T[N,M] = op(B)^T op(A)^T: the FIRST operand
 * is B (transposed iff tb), the SECOND is A (transposed iff ta), each described as stored (rows x cols, ld), and D
 * is m x n = N x M with leading dimension ldc. */
typedef struct {
    int t1, t2;                                  /* transpose the first (B) / second (A) operand */
    uint64_t rows1, cols1, rows2, cols2, m, n, k;
    int64_t ld1, ld2, ldd;
} kcu_lt_shape;
static inline kcu_lt_shape kcu_lt_map(int ta, int tb, size_t M, size_t N, size_t K, size_t lda, size_t ldb, size_t ldc) {
    kcu_lt_shape s;
    s.t1 = tb; s.t2 = ta;
    s.rows1 = tb ? K : N; s.cols1 = tb ? N : K; s.ld1 = (int64_t)ldb;   /* B as stored, column-major */
    s.rows2 = ta ? M : K; s.cols2 = ta ? K : M; s.ld2 = (int64_t)lda;   /* A as stored, column-major */
    s.m = N; s.n = M; s.k = K; s.ldd = (int64_t)ldc;
    return s;
}
/* Row-major C[M,N] (=, or += with acc) op(A) op(B) (+ bias[N] on every row, acc = 0 only); backend.cu. */
void kcu_gemm(kern_backend *be, int ta, int tb, size_t M, size_t N, size_t K, const float *A, size_t lda,
              const float *B, size_t ldb, const float *bias, int acc, float *C, size_t ldc);
void kcu_matmul_fwd(kern_backend *be, float *out, const float *inp, const float *w, const float *bias, size_t N,
                    size_t C, size_t OC, int wlayout);
void kcu_matmul_bwd(kern_backend *be, float *dinp, float *dw, float *dbias, const float *dout, const float *inp,
                    const float *w, size_t N, size_t C, size_t OC, int wlayout);
void kcu_matmul_skinny_fwd(kern_backend *be, float *out, const float *inp, const float *w, const float *bias,
                           size_t N, size_t C, size_t OC, int wlayout);

/* Column sums over rows, deterministic (fixed row chunks, partials summed in order):
 *   dst[c] += sum_i f(i, c),  f = mode 0: a[i,c];  1: a[i,c] (x[i,c] - mean[i]) rstd[i];  2: a[i,c] x[i,c] rstd[i]. */
void kcu_colsum(kern_backend *be, float *dst, const float *a, const float *x, const float *mean, const float *rstd,
                size_t N, size_t C, int mode);

/* ops.cu and attn.cu: the table's entries (signatures of kern_ops). */
#define KCU_DECL_OPS \
    void kcu_embed_fwd(kern_backend *be, float *out, const int32_t *tok, const float *wte, const float *wpe, size_t B, size_t T, size_t C, size_t pos0); \
    void kcu_embed_bwd(kern_backend *be, float *dwte, float *dwpe, const float *dout, const int32_t *tok, size_t B, size_t T, size_t C, size_t pos0); \
    void kcu_layernorm_fwd(kern_backend *be, float *out, float *mean, float *rstd, const float *inp, const float *w, const float *b, size_t N, size_t C, float eps); \
    void kcu_layernorm_bwd(kern_backend *be, float *dinp, float *dw, float *db, const float *dout, const float *inp, const float *w, const float *mean, const float *rstd, size_t N, size_t C); \
    size_t kcu_attention_saved_floats(kern_backend *be, size_t B, size_t T, size_t C, size_t NH); \
    void kcu_attention_fwd(kern_backend *be, float *out, float *saved, const float *qkv, size_t B, size_t T, size_t C, size_t NH); \
    void kcu_attention_bwd(kern_backend *be, float *dqkv, const float *dout, const float *qkv, const float *out, const float *saved, size_t B, size_t T, size_t C, size_t NH); \
    void kcu_attn_cache_fwd(kern_backend *be, float *out, float *kc, float *vc, const float *qkv, const int32_t *slot, const int32_t *pos, size_t B, size_t n, size_t C, size_t NH, size_t NKV, size_t maxT); \
    void kcu_gelu_fwd(kern_backend *be, float *out, const float *inp, size_t n); \
    void kcu_gelu_bwd(kern_backend *be, float *dinp, const float *inp, const float *dout, size_t n); \
    void kcu_add(kern_backend *be, float *out, const float *a, const float *b, size_t n); \
    void kcu_axpy(kern_backend *be, float *y, float alpha, const float *x, size_t n); \
    void kcu_scale(kern_backend *be, float *x, float s, size_t n); \
    void kcu_xent_fwd_bwd(kern_backend *be, float *loss, float *dlogits, const float *logits, const int32_t *targets, const float *dloss, size_t N, size_t V); \
    double kcu_sumsq(kern_backend *be, const float *x, size_t n); \
    void kcu_adamw_raw(kern_backend *be, float *p, const float *g, float *m, float *v, size_t n, float lr, float b1, float b2, float eps, float wd, float bc1, float bc2, float gscale); \
    void kcu_rmsnorm_fwd(kern_backend *be, float *out, float *rstd, const float *inp, const float *w, size_t N, size_t C, float eps); \
    void kcu_rmsnorm_bwd(kern_backend *be, float *dinp, float *dw, const float *dout, const float *inp, const float *w, const float *rstd, size_t N, size_t C); \
    void kcu_rope(kern_backend *be, float *x, const int32_t *pos, const float *inv_freq, size_t R, size_t W, size_t nheads, size_t hs, int inverse); \
    void kcu_kv_expand_fwd(kern_backend *be, float *out, const float *qkv, size_t R, size_t NH, size_t NKV, size_t hs); \
    void kcu_kv_expand_bwd(kern_backend *be, float *dqkv, const float *dout, size_t R, size_t NH, size_t NKV, size_t hs); \
    void kcu_swiglu_fwd(kern_backend *be, float *out, const float *gate, const float *up, size_t n); \
    void kcu_swiglu_bwd(kern_backend *be, float *dgate, float *dup, const float *dout, const float *gate, const float *up, size_t n); \
    void kcu_f32_to_bf16(__nv_bfloat16 *dst, const float *src, size_t n);
KCU_DECL_OPS

#endif
