/* fast_math.h: private to the CPU kernels (src/kern/cpu, src/kern/enc.c). Helpers for the fast CPU paths:
 *  - GK_HOT: compile a hot worker three times (AVX-512F, AVX2, baseline x86-64) and pick one at load time
 *    (GCC's target_clones, an ifunc), so one binary uses the wide vector units where the CPU has them.
 *    The clones are keyed on ISA features, not "arch=" names: an arch= clone is picked by CPU model, and the
 *    build machine's virtualised "Intel Xeon Processor" matched none, silently running the baseline clone
 *    (tile_gemm measured 1.2 GFLOP/s there instead of 20-40).
 *    Workers are plain functions called from outside OpenMP regions' outlined bodies, so they get cloned.
 *  - kern_vexpf: an exp that the compiler can vectorise (libm's expf is a scalar call without -ffast-math).
 *    Range reduction x = n ln2 + r, |r| <= ln2/2, degree-6 Taylor polynomial for e^r (truncation error
 *    r^7/7! < 1.2e-7 relative), then scaling by 2^n through the exponent bits. Measured max relative error
 *    about 2.5e-7 (~2 ulp) over [-87, 88]; inputs below -87 give exactly 0, above 88 are clamped to e^88,
 *    NaN gives NaN.
 */
#ifndef GK_KERN_FAST_MATH_H
#define GK_KERN_FAST_MATH_H

#include <stdint.h>
#include <string.h>

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && !defined(GK_NO_CLONES) && \
    !defined(__SANITIZE_ADDRESS__)
#define GK_HOT __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define GK_HOT
#endif

/* A max-reduction loop GCC vectorises under `omp simd`; clang cannot (and would warn), so there it is plain. */
#if defined(__clang__)
#define GK_SIMD_MAX(v)
#else
#define GK_SIMD_MAX(v) GK_OMP(omp simd reduction(max:v))
#endif

static inline __attribute__((always_inline)) float kern_vexpf(float x) {
    /* written so that NaN clamps too (every comparison with NaN is false): the int conversion below must
     * never see NaN (undefined behaviour); NaN is passed through at the end */
    float xc = x > -87.0f ? x : -87.0f;
    xc = xc < 88.0f ? xc : 88.0f;
    /* n = round(x / ln2) by the 1.5*2^23 trick: adding and subtracting it rounds to an integer. */
    float n = (xc * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    float r = xc - n * 0.693145751953125f;        /* ln2 split in a high part exact in float ... */
    r = r - n * 1.428606765330187e-06f;           /* ... and the rest */
    float p = 1.0f + r * (1.0f + r * (0.5f + r * (0.16666667f + r * (0.041666668f + r * (0.008333334f + r * 0.0013888889f)))));
    union { int32_t i; float f; } s;
    s.i = ((int32_t)n + 127) << 23;
    float y = p * s.f;
    return x < -87.0f ? 0.0f : (x == x ? y : x);
}

#endif
