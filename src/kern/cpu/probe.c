/* probe.c: kern_peak_probe, a small measurement of this machine's ceilings for MFU and `gptkit bench peak`.
 *  - fp32 (and bf16) GEMM: 1024 x 1024 x 1024 products through the cpu backend's GEMM (kern_matmul_fwd on a
 *    cpu backend with the given backend's library), best of 5 after a warm-up, 2 n^3 flops each;
 *  - memory bandwidth: a = b + s c over three 32 MiB arrays, OpenMP-parallel, best of 5, 12 bytes per element
 *    (reads of b and c, write of a; write-allocate traffic not counted, as STREAM's triad).
 * A cuda backend measures the GPU instead (dev_* below).
 * Best-of rather than median: the question is what the hardware can do, and shared machines are noisy. */
#include "kern/kern.h"
#include "kern/cpu/cpu.h"
#include "core/core.h"
#include <stdlib.h>

/* GFLOP/s of 1024^3 products on a cpu backend with be's GEMM library (auto for the ref kind) in fp32 or bf16. */
static double gemm_gflops(const kern_backend *be, int bf16) {
    const size_t n = 1024;
    kern_backend_opts o = {KERN_KIND_CPU, be->opts.kind == KERN_KIND_CPU ? be->gemm : KERN_GEMM_AUTO,
                           bf16 ? KERN_PREC_BF16 : KERN_PREC_FP32};
    kern_backend *pb = kern_backend_create(&o, NULL);
    float *a = kern_alloc(pb, n * n * 4), *b = kern_alloc(pb, n * n * 4), *c = kern_alloc(pb, n * n * 4);
    for (size_t i = 0; i < n * n; i++) { a[i] = (float)(i % 13) * 0.01f; b[i] = (float)(i % 7) * 0.01f; }
    double best = 0;
    for (int r = 0; r < 6; r++) {
        double t0 = gk_now();
        kern_matmul_fwd(pb, c, a, b, NULL, n, n, n, KERN_W_IN_OUT);
        double t = gk_now() - t0;
        if (r > 0 && t > 0 && 2.0 * n * n * n / t > best) best = 2.0 * n * n * n / t;
    }
    kern_free(pb, a); kern_free(pb, b); kern_free(pb, c);
    kern_backend_free(pb);
    return best * 1e-9;
}

static double bandwidth_gbs(kern_backend *be) {
    const size_t n = (size_t)8 << 20;   /* 8 Mi floats = 32 MiB per array */
    float *a = kern_alloc(be, n * 4), *b = kern_alloc(be, n * 4), *c = kern_alloc(be, n * 4);
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
    kern_free(be, a); kern_free(be, b); kern_free(be, c);
    return best * 1e-9;
}

/* A device backend (cuda) measures itself: its own GEMM on device buffers (4096^3, bf16 inputs for the bf16
 * figure) and a = b + c through kern_add (12 bytes per element), each run timed to completion (a 4-byte download
 * waits for everything queued before it). Host code never touches the buffers. */
static void dev_sync(kern_backend *be, const float *p) { float x; kern_download(be, &x, p, sizeof x); }
static double dev_gemm_gflops(kern_backend *be, int bf16) {
    const size_t n = 4096;
    kern_prec was = kern_get_precision(be);
    if (kern_set_precision(be, bf16 ? KERN_PREC_BF16 : KERN_PREC_FP32) != 0) return 0;
    float *h = gk_malloc(n * n * 4);
    for (size_t i = 0; i < n * n; i++) h[i] = (float)(i % 13) * 0.01f;
    float *a = kern_alloc(be, n * n * 4), *b = kern_alloc(be, n * n * 4), *c = kern_alloc(be, n * n * 4);
    kern_upload(be, a, h, n * n * 4);
    kern_upload(be, b, h, n * n * 4);
    free(h);
    double best = 0;
    for (int r = 0; r < 6; r++) {
        double t0 = gk_now();
        kern_matmul_fwd(be, c, a, b, NULL, n, n, n, KERN_W_IN_OUT);
        dev_sync(be, c);
        double t = gk_now() - t0;
        if (r > 0 && t > 0 && 2.0 * n * n * n / t > best) best = 2.0 * n * n * n / t;
    }
    kern_free(be, a); kern_free(be, b); kern_free(be, c);
    kern_set_precision(be, was);
    return best * 1e-9;
}
static double dev_bandwidth_gbs(kern_backend *be) {
    const size_t n = (size_t)64 << 20;   /* 256 MiB per array: far beyond any L2 */
    float *a = kern_alloc(be, n * 4), *b = kern_alloc(be, n * 4), *c = kern_alloc(be, n * 4);
    double best = 0;
    for (int r = 0; r < 6; r++) {
        double t0 = gk_now();
        kern_add(be, a, b, c, n);
        dev_sync(be, a);
        double t = gk_now() - t0;
        if (r > 0 && t > 0 && 12.0 * n / t > best) best = 12.0 * n / t;
    }
    kern_free(be, a); kern_free(be, b); kern_free(be, c);
    return best * 1e-9;
}

int kern_peak_probe(kern_backend *be, double *fp32_gflops, double *bf16_gflops, double *bw_gbs) {
    if (be->opts.kind == KERN_KIND_CUDA) {
        if (fp32_gflops) *fp32_gflops = dev_gemm_gflops(be, 0);
        if (bf16_gflops) *bf16_gflops = dev_gemm_gflops(be, 1);
        if (bw_gbs) *bw_gbs = dev_bandwidth_gbs(be);
        return 0;
    }
    if (fp32_gflops) *fp32_gflops = gemm_gflops(be, 0);
    if (bf16_gflops) *bf16_gflops = kern_bf16_available() ? gemm_gflops(be, 1) : 0;
    if (bw_gbs) *bw_gbs = bandwidth_gbs(be);
    return 0;
}
