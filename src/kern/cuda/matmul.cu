/* matmul.cu: the table's matmuls as row-major products for kcu_gemm (backend.cu: cuBLASLt). Kept apart from the
 * cuBLASLt call so tests/cuda_emu can run these wrappers, and kcu_lt_map's row-major -> column-major mapping,
 * against the CPU reference with a plain column-major GEMM standing in for cuBLASLt.
 *
 * Status: compiled, never run on a GPU yet (docs/cuda.md). */
#include "kern/cuda/cuda_impl.h"

/* out[N,OC] = inp[N,C] @ W + bias;  W = w[C][OC] (IN_OUT) or w[OC][C]^T (OUT_IN). */
void kcu_matmul_fwd(kern_backend *be, float *out, const float *inp, const float *w, const float *bias, size_t N,
                    size_t C, size_t OC, int wlayout) {
    if (wlayout == KERN_W_IN_OUT) kcu_gemm(be, 0, 0, N, OC, C, inp, C, w, OC, bias, 0, out, OC);
    else kcu_gemm(be, 0, 1, N, OC, C, inp, C, w, C, bias, 0, out, OC);
}

/* dinp += dout W^T;  dW += inp^T dout (in w's layout);  dbias += column sums of dout. */
void kcu_matmul_bwd(kern_backend *be, float *dinp, float *dw, float *dbias, const float *dout, const float *inp,
                    const float *w, size_t N, size_t C, size_t OC, int wlayout) {
    if (wlayout == KERN_W_IN_OUT) {
        if (dinp) kcu_gemm(be, 0, 1, N, C, OC, dout, OC, w, OC, NULL, 1, dinp, C);      /* w stored [C,OC] = [N',K'] */
        if (dw) kcu_gemm(be, 1, 0, C, OC, N, inp, C, dout, OC, NULL, 1, dw, OC);        /* inp stored [N,C] = [K',M'] */
    } else {
        if (dinp) kcu_gemm(be, 0, 0, N, C, OC, dout, OC, w, C, NULL, 1, dinp, C);       /* w stored [OC,C] = [K',N'] */
        if (dw) kcu_gemm(be, 1, 0, OC, C, N, dout, OC, inp, C, NULL, 1, dw, C);         /* dw[OC,C] += dout^T inp */
    }
    if (dbias) kcu_colsum(be, dbias, dout, NULL, NULL, NULL, N, OC, 0);
}

void kcu_matmul_skinny_fwd(kern_backend *be, float *out, const float *inp, const float *w, const float *bias,
                           size_t N, size_t C, size_t OC, int wlayout) {
    GK_CHECK(N >= 1 && N <= KERN_SKINNY_MAX_N, "kern_matmul_skinny_fwd: N=%zu (max %d)", N, KERN_SKINNY_MAX_N);
    kcu_matmul_fwd(be, out, inp, w, bias, N, C, OC, wlayout);
}
