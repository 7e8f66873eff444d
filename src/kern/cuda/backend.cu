/* backend.cu: the CUDA backend's state, memory ops, matmuls and op table.
 *
 * Matmuls go through cuBLASLt. kern.h's products are row-major; cuBLASLt is column-major. A row-major matrix
 * X[r][c] with leading dimension ld is, read column-major, X^T with the same ld, so the row-major product
 * C[M,N] = op(A)[M,K] op(B)[K,N] is computed as the column-major C^T[N,M] = op(B)^T op(A)^T: the operands swap
 * places and keep their transpose flags (kcu_gemm below). fp32 mode computes in true fp32
 * (CUBLAS_COMPUTE_32F, never TF32: the tests hold it to 1e-5 of the CPU reference); bf16 mode rounds both inputs
 * to bfloat16 (nearest even) and accumulates in fp32 into an fp32 result, as the CPU bf16 path does. Weights
 * registered with kern_bf16_shadow are rounded once per AdamW step instead of on every product.
 *
 * Status: compiled, never run on a GPU yet (docs/cuda.md). */
#include "kern/cuda/cuda_impl.h"
#include <string.h>
#include <stdlib.h>

/* ---------------------------------------------------------------- device discovery */

extern "C" int kern_cuda_built_impl(void) { return 1; }

extern "C" int kern_cuda_usable_impl(gk_err *err) {
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
        cudaGetLastError();   /* clear the (non-sticky) error so a later call starts clean */
        if (e == cudaErrorNoDevice)
            return gk_errf(err, "no CUDA device: the NVIDIA driver reports no GPU (cudaErrorNoDevice)");
        if (e == cudaErrorInsufficientDriver)
            return gk_errf(err, "no CUDA device: no NVIDIA driver is loaded here, or one older than this build's CUDA "
                           "runtime %d.%d needs (cudaErrorInsufficientDriver)", CUDART_VERSION / 1000,
                           CUDART_VERSION % 1000 / 10);
        return gk_errf(err, "no CUDA device: %s (%s)", cudaGetErrorString(e), cudaGetErrorName(e));
    }
    if (n < 1) return gk_errf(err, "no CUDA device: the driver reports no GPU");
    cudaDeviceProp p;
    if (cudaGetDeviceProperties(&p, 0) != cudaSuccess) { cudaGetLastError(); return gk_errf(err, "no CUDA device: device 0 unreadable"); }
    if (p.major < 8)
        return gk_errf(err, "CUDA device 0 (%s) is sm_%d%d; this build targets sm_90 (PTX: sm_90 and newer)", p.name,
                       p.major, p.minor);
    return 0;
}

extern "C" void kern_cuda_name(kern_backend *be) {
    kern_cuda_state *s = be->cuda;
    snprintf(be->name, sizeof be->name, "cuda(%.96s, sm_%d%d, %s)", s ? s->prop.name : "?", s ? s->prop.major : 0,
             s ? s->prop.minor : 0, be->prec == KERN_PREC_BF16 ? "bf16 matmuls" : "fp32");
}

extern "C" int kern_cuda_init(kern_backend *be, gk_err *err) {
    if (kern_cuda_usable_impl(err) != 0) return -1;
    kern_cuda_state *s = (kern_cuda_state *)gk_calloc(1, sizeof *s);
    s->device = 0;
    cudaError_t e = cudaSetDevice(0);
    if (e == cudaSuccess) e = cudaGetDeviceProperties(&s->prop, 0);
    if (e == cudaSuccess) e = cudaMalloc(&s->workspace, KCU_WORKSPACE);
    if (e != cudaSuccess) {
        free(s);
        cudaGetLastError();
        return gk_errf(err, "CUDA device 0: %s", cudaGetErrorString(e));
    }
    if (cublasLtCreate(&s->lt) != CUBLAS_STATUS_SUCCESS) {
        cudaFree(s->workspace);
        free(s);
        return gk_errf(err, "cuBLASLt could not start on CUDA device 0");
    }
    be->cuda = s;
    be->ops = kern_cuda_ops();
    kern_cuda_name(be);
    return 0;
}

extern "C" void kern_cuda_fini(kern_backend *be) {
    kern_cuda_state *s = be->cuda;
    if (!s) return;
    CU_CHECK(cudaDeviceSynchronize());
    for (int i = 0; i < 3; i++) cudaFree(s->scratch[i]);
    cudaFree(s->sh_bf16);
    cudaFree(s->workspace);
    cublasLtDestroy(s->lt);
    free(s);
    be->cuda = NULL;
}

void *kcu_scratch(kern_backend *be, int i, size_t bytes) {
    kern_cuda_state *s = be->cuda;
    if (bytes == 0) bytes = 16;
    if (s->scratch_bytes[i] < bytes) {
        /* the previous contents are dead (scratch lives within one op); wait for users of the old buffer */
        CU_CHECK(cudaDeviceSynchronize());
        CU_CHECK(cudaFree(s->scratch[i]));
        s->scratch[i] = NULL;
        size_t grow = bytes + bytes / 4;
        CU_CHECK(cudaMalloc(&s->scratch[i], grow));
        s->scratch_bytes[i] = grow;
    }
    return s->scratch[i];
}

/* ---------------------------------------------------------------- memory */

static void *cu_alloc(kern_backend *be, size_t bytes) {
    (void)be;
    void *p = NULL;
    cudaError_t e = cudaMalloc(&p, bytes ? bytes : 16);
    if (e != cudaSuccess) {
        size_t fr = 0, tot = 0;
        cudaGetLastError();
        cudaMemGetInfo(&fr, &tot);
        GK_FATAL("out of GPU memory allocating %zu bytes (%zu of %zu MiB free; try a smaller batch or model, or "
                 "--recompute): %s", bytes, fr >> 20, tot >> 20, cudaGetErrorString(e));
    }
    CU_CHECK(cudaMemset(p, 0, bytes ? bytes : 16));   /* kern_alloc's contract: zero-filled */
    return p;
}
static void cu_free(kern_backend *be, void *p) {
    (void)be;
    if (p) CU_CHECK(cudaFree(p));   /* cudaFree synchronizes the device: no kernel still reads p */
}
static void cu_zero(kern_backend *be, void *p, size_t bytes) { (void)be; if (bytes) CU_CHECK(cudaMemset(p, 0, bytes)); }
static void cu_upload(kern_backend *be, void *dst, const void *src, size_t bytes) {
    (void)be;
    if (bytes) CU_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice));
}
static void cu_download(kern_backend *be, void *dst, const void *src, size_t bytes) {
    (void)be;
    if (bytes) CU_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost));
}
/* kern_copy is memmove on the host; cudaMemcpy's result is undefined for overlapping ranges, so those go
 * through scratch. */
static void cu_copy(kern_backend *be, void *dst, const void *src, size_t bytes) {
    if (!bytes || dst == src) return;
    const char *d = (const char *)dst, *s = (const char *)src;
    if (d < s + bytes && s < d + bytes) {
        void *tmp = kcu_scratch(be, 0, bytes);
        CU_CHECK(cudaMemcpy(tmp, src, bytes, cudaMemcpyDeviceToDevice));
        src = tmp;
    }
    CU_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToDevice));
}

/* ---------------------------------------------------------------- bf16 */

static __global__ void k_f32_to_bf16(__nv_bfloat16 *dst, const float *src, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        dst[i] = __float2bfloat16_rn(src[i]);
}
void kcu_f32_to_bf16(__nv_bfloat16 *dst, const float *src, size_t n) {
    if (!n) return;
    KCU_LAUNCH(k_f32_to_bf16, cu_grid(n, KCU_THREADS), KCU_THREADS, dst, src, n);
    CU_LAUNCHED();
}

static void cu_bf16_shadow(kern_backend *be, const float *base, size_t n) {
    kern_cuda_state *s = be->cuda;
    if (!s) return;
    if (s->sh_bf16) CU_CHECK(cudaFree(s->sh_bf16));
    s->sh_bf16 = NULL;
    s->sh_base = n ? base : NULL;
    s->sh_n = n;
    s->sh_stale = 1;
    if (n) CU_CHECK(cudaMalloc(&s->sh_bf16, n * sizeof(__nv_bfloat16)));
}

/* A bf16 operand for the fp32 array x of n elements: the registered copy if x lies inside it (refreshed if
 * AdamW wrote since), else x rounded into scratch buffer `slot`. */
static const __nv_bfloat16 *bf16_operand(kern_backend *be, const float *x, size_t n, int slot) {
    kern_cuda_state *s = be->cuda;
    if (s->sh_bf16 && x >= s->sh_base && x + n <= s->sh_base + s->sh_n) {
        if (s->sh_stale) { kcu_f32_to_bf16(s->sh_bf16, s->sh_base, s->sh_n); s->sh_stale = 0; }
        return s->sh_bf16 + (x - s->sh_base);
    }
    __nv_bfloat16 *d = (__nv_bfloat16 *)kcu_scratch(be, slot, n * sizeof(__nv_bfloat16));
    kcu_f32_to_bf16(d, x, n);
    return d;
}

static void cu_adamw(kern_backend *be, float *p, const float *g, float *m, float *v, size_t n, float lr, float b1,
                     float b2, float eps, float wd, float bc1, float bc2, float gscale) {
    kcu_adamw_raw(be, p, g, m, v, n, lr, b1, b2, eps, wd, bc1, bc2, gscale);
    kern_cuda_state *s = be->cuda;
    if (s->sh_bf16 && p < s->sh_base + s->sh_n && p + n > s->sh_base) s->sh_stale = 1;
}

/* ---------------------------------------------------------------- matmul (cuBLASLt) */

static __global__ void k_add_bias_rows(float *out, const float *bias, size_t N, size_t OC) {
    size_t total = N * OC;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total; i += (size_t)gridDim.x * blockDim.x)
        out[i] += bias[i % OC];
}

/* The largest power of two (up to 256) dividing p's address. */
static uint32_t align_of(const void *p) {
    uintptr_t a = (uintptr_t)p;
    uint32_t r = 256;
    while (r > 1 && (a % r) != 0) r >>= 1;
    return r;
}

/* Row-major C[M,N] (=, or += with acc) op(A)[M,K] op(B)[K,N] (+ bias[N] on every row, only with acc = 0).
 * ta: A is stored [K,M] (lda its row stride); tb: B is stored [N,K]. fp32 or bf16 inputs per be->prec; the
 * result is fp32. nA/nB: element counts of A and B as stored (for bf16 rounding). */
void kcu_gemm(kern_backend *be, int ta, int tb, size_t M, size_t N, size_t K, const float *A, size_t lda,
                     const float *B, size_t ldb, const float *bias, int acc, float *C, size_t ldc) {
    if (M == 0 || N == 0) return;
    kern_cuda_state *s = be->cuda;
    if (K == 0) {   /* empty sum: C = bias or unchanged */
        if (!acc) {
            GK_CHECK(ldc == N, "kcu_gemm: K=0 with a strided C");
            CU_CHECK(cudaMemset(C, 0, M * N * sizeof(float)));
            if (bias) { KCU_LAUNCH(k_add_bias_rows, cu_grid(M * N, KCU_THREADS), KCU_THREADS, C, bias, M, N); CU_LAUNCHED(); }
        }
        return;
    }
    GK_CHECK(M < ((size_t)1 << 31) && N < ((size_t)1 << 31) && K < ((size_t)1 << 31), "kcu_gemm: dims %zu x %zu x %zu "
             "exceed cuBLASLt's int64 layouts we use", M, N, K);
    int bf16 = be->prec == KERN_PREC_BF16;
    const void *pa = A, *pb = B;
    if (bf16) {
        pa = bf16_operand(be, A, (ta ? K : M) * lda, 0);
        pb = bf16_operand(be, B, (tb ? N : K) * ldb, 1);
    }
    cudaDataType_t in_t = bf16 ? CUDA_R_16BF : CUDA_R_32F;
    kcu_lt_shape sh = kcu_lt_map(ta, tb, M, N, K, lda, ldb, ldc);   /* first operand B, second A (cuda_impl.h) */
    cublasOperation_t opA = sh.t1 ? CUBLAS_OP_T : CUBLAS_OP_N;
    cublasOperation_t opB = sh.t2 ? CUBLAS_OP_T : CUBLAS_OP_N;
    cublasLtMatmulDesc_t desc;
    cublasLtMatrixLayout_t la, lb, lc;
    LT_CHECK(cublasLtMatmulDescCreate(&desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    LT_CHECK(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSA, &opA, sizeof opA));
    LT_CHECK(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSB, &opB, sizeof opB));
    int use_epi = bias && !acc && align_of(bias) >= 16;   /* else the bias goes on in a kernel of ours */
    if (use_epi) {
        cublasLtEpilogue_t epi = CUBLASLT_EPILOGUE_BIAS;
        LT_CHECK(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof epi));
        LT_CHECK(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof bias));
        cudaDataType_t bt = CUDA_R_32F;
        LT_CHECK(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bt, sizeof bt));
    }
    LT_CHECK(cublasLtMatrixLayoutCreate(&la, in_t, sh.rows1, sh.cols1, sh.ld1));
    LT_CHECK(cublasLtMatrixLayoutCreate(&lb, in_t, sh.rows2, sh.cols2, sh.ld2));
    LT_CHECK(cublasLtMatrixLayoutCreate(&lc, CUDA_R_32F, sh.m, sh.n, sh.ldd));
    cublasLtMatmulPreference_t pref;
    LT_CHECK(cublasLtMatmulPreferenceCreate(&pref));
    size_t ws = KCU_WORKSPACE;
    LT_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws));
    /* the heuristic assumes 256-byte aligned operands unless told: activations are often sliced (lm.c's chunks) */
    uint32_t al_a = align_of(pb), al_b = align_of(pa), al_c = align_of(C);
    LT_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &al_a, sizeof al_a));
    LT_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &al_b, sizeof al_b));
    LT_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &al_c, sizeof al_c));
    LT_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &al_c, sizeof al_c));
    cublasLtMatmulHeuristicResult_t heur;
    int found = 0;
    cublasStatus_t hs = cublasLtMatmulAlgoGetHeuristic(s->lt, desc, la, lb, lc, lc, pref, 1, &heur, &found);
    if ((hs != CUBLAS_STATUS_SUCCESS || found == 0) && use_epi) {
        /* no kernel with the bias epilogue for this shape: plain product, bias added after */
        cublasLtEpilogue_t none = CUBLASLT_EPILOGUE_DEFAULT;
        LT_CHECK(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &none, sizeof none));
        use_epi = 0;
        hs = cublasLtMatmulAlgoGetHeuristic(s->lt, desc, la, lb, lc, lc, pref, 1, &heur, &found);
    }
    GK_CHECK(hs == CUBLAS_STATUS_SUCCESS && found > 0, "cuBLASLt has no algorithm for %s %zux%zux%zu (ta=%d tb=%d)",
             bf16 ? "bf16" : "fp32", M, N, K, ta, tb);
    float alpha = 1.0f, beta = acc ? 1.0f : 0.0f;
    LT_CHECK(cublasLtMatmul(s->lt, desc, &alpha, pb, la, pa, lb, &beta, C, lc, C, lc, &heur.algo, s->workspace,
                            KCU_WORKSPACE, 0));
    CU_LAUNCHED();
    if (bias && !use_epi) {
        GK_CHECK(!acc, "kcu_gemm: bias with accumulate is not supported");
        GK_CHECK(ldc == N, "kcu_gemm: bias on a strided C");
        KCU_LAUNCH(k_add_bias_rows, cu_grid(M * N, KCU_THREADS), KCU_THREADS, C, bias, M, N);
        CU_LAUNCHED();
    }
    cublasLtMatmulPreferenceDestroy(pref);
    cublasLtMatrixLayoutDestroy(la);
    cublasLtMatrixLayoutDestroy(lb);
    cublasLtMatrixLayoutDestroy(lc);
    cublasLtMatmulDescDestroy(desc);
}

/* ---------------------------------------------------------------- the table */

static kern_ops make_ops(void) {
    kern_ops t;
    memset(&t, 0, sizeof t);
    t.alloc = cu_alloc; t.free = cu_free; t.zero = cu_zero;
    t.upload = cu_upload; t.download = cu_download; t.copy = cu_copy;
    t.embed_fwd = kcu_embed_fwd; t.embed_bwd = kcu_embed_bwd;
    t.layernorm_fwd = kcu_layernorm_fwd; t.layernorm_bwd = kcu_layernorm_bwd;
    t.matmul_fwd = kcu_matmul_fwd; t.matmul_bwd = kcu_matmul_bwd; t.matmul_skinny_fwd = kcu_matmul_skinny_fwd;
    t.attention_saved_floats = kcu_attention_saved_floats;
    t.attention_fwd = kcu_attention_fwd; t.attention_bwd = kcu_attention_bwd;
    t.attn_cache_fwd = kcu_attn_cache_fwd;
    t.gelu_fwd = kcu_gelu_fwd; t.gelu_bwd = kcu_gelu_bwd;
    t.add = kcu_add; t.axpy = kcu_axpy; t.scale = kcu_scale;
    t.xent_fwd_bwd = kcu_xent_fwd_bwd; t.sumsq = kcu_sumsq; t.adamw = cu_adamw;
    t.bf16_shadow = cu_bf16_shadow;
    t.rmsnorm_fwd = kcu_rmsnorm_fwd; t.rmsnorm_bwd = kcu_rmsnorm_bwd; t.rope = kcu_rope;
    t.kv_expand_fwd = kcu_kv_expand_fwd; t.kv_expand_bwd = kcu_kv_expand_bwd;
    t.swiglu_fwd = kcu_swiglu_fwd; t.swiglu_bwd = kcu_swiglu_bwd;
    return t;
}
static const kern_ops g_cuda_ops = make_ops();

extern "C" const kern_ops *kern_cuda_ops(void) { return &g_cuda_ops; }
