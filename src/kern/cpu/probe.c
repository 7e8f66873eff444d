/* probe.c: kern_peak_probe, a small measurement of this machine's ceilings for MFU and `gptkit bench peak`.
 *  - fp32 (and bf16) GEMM: 1024 x 1024 x 1024 products through the fast path's GEMM (kern_matmul_fwd with
 *    KERN_IMPL_FAST), best of 5 after a warm-up, 2 n^3 flops each;
 *  - memory bandwidth: a = b + s c over three 32 MiB arrays, OpenMP-parallel, best of 5, 12 bytes per element
 *    (reads of b and c, write of a; write-allocate traffic not counted, as STREAM's triad).
 * Best-of rather than median: the question is what the hardware can do, and shared machines are noisy. */
#include "kern/kern.h"
#include "kern/cpu/cpu.h"
#include "core/core.h"
#include <stdlib.h>

static double gemm_gflops(int bf16) {
    const size_t n = 1024;
    float *a = kern_alloc(n * n * 4), *b = kern_alloc(n * n * 4), *c = kern_alloc(n * n * 4);
    for (size_t i = 0; i < n * n; i++) { a[i] = (float)(i % 13) * 0.01f; b[i] = (float)(i % 7) * 0.01f; }
    kern_impl impl = kern_get_impl();
    kern_prec prec = kern_get_precision();
    kern_set_impl(KERN_IMPL_FAST);
    double best = 0;
    if (kern_set_precision(bf16 ? KERN_PREC_BF16 : KERN_PREC_FP32) == 0) {
        for (int r = 0; r < 6; r++) {
            double t0 = gk_now();
            kern_matmul_fwd(c, a, b, NULL, n, n, n, KERN_W_IN_OUT);
            double t = gk_now() - t0;
            if (r > 0 && t > 0 && 2.0 * n * n * n / t > best) best = 2.0 * n * n * n / t;
        }
    }
    kern_set_precision(prec);
    kern_set_impl(impl);
    kern_free(a); kern_free(b); kern_free(c);
    return best * 1e-9;
}

static double bandwidth_gbs(void) {
    const size_t n = (size_t)8 << 20;   /* 8 Mi floats = 32 MiB per array */
    float *a = kern_alloc(n * 4), *b = kern_alloc(n * 4), *c = kern_alloc(n * 4);
    GK_OMP(omp parallel for schedule(static))
    for (size_t i = 0; i < n; i++) { b[i] = 1.0f; c[i] = 2.0f; a[i] = 0; }   /* first touch by the same threads */
    double best = 0;
    for (int r = 0; r < 6; r++) {
        double t0 = gk_now();
        GK_OMP(omp parallel for schedule(static))
        for (size_t i = 0; i < n; i++) a[i] = b[i] + 0.5f * c[i];
        double t = gk_now() - t0;
        if (r > 0 && t > 0 && 12.0 * n / t > best) best = 12.0 * n / t;
    }
    GK_CHECK(a[n / 2] == 2.0f, "bandwidth probe: wrong result");
    kern_free(a); kern_free(b); kern_free(c);
    return best * 1e-9;
}

int kern_peak_probe(double *fp32_gflops, double *bf16_gflops, double *bw_gbs) {
    if (fp32_gflops) *fp32_gflops = gemm_gflops(0);
    if (bf16_gflops) *bf16_gflops = kern_bf16_available() ? gemm_gflops(1) : 0;
    if (bw_gbs) *bw_gbs = bandwidth_gbs();
    return 0;
}
