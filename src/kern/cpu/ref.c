/* ref.c: the fp32 CPU reference — the oracle every fast path is tested against.
 * The trunk ops come from ref_impl.h (shared with the double-precision build in ref64.c); the elementwise
 * and optimizer ops, which have no double twin, are below. */
#include "kern/kern.h"
#include "kern/cpu/cpu.h"
#include "core/core.h"
#include <math.h>
#include <stdlib.h>

#define REAL float
#define FN(x) kern_ref_##x
#define R_EXP expf
#define R_LOG logf
#define R_SQRT sqrtf
#define R_TANH tanhf
#include "kern/cpu/ref_impl.h"

/* The reference keeps the softmax probabilities P [B,NH,T,T]. */
size_t kern_ref_attention_saved_floats(size_t B, size_t T, size_t C, size_t NH) {
    (void)C;
    return B * NH * T * T;
}

/* out = a + b */
void kern_ref_add(float *out, const float *a, const float *b, size_t n) {
    GK_OMP(omp parallel for schedule(static))
    for (size_t i = 0; i < n; i++) out[i] = a[i] + b[i];
}

/* y += alpha x */
void kern_ref_axpy(float *y, float alpha, const float *x, size_t n) {
    GK_OMP(omp parallel for schedule(static))
    for (size_t i = 0; i < n; i++) y[i] += alpha * x[i];
}

/* x *= s */
void kern_ref_scale(float *x, float s, size_t n) {
    GK_OMP(omp parallel for schedule(static))
    for (size_t i = 0; i < n; i++) x[i] *= s;
}

/* sum_i x_i^2, accumulated in double */
double kern_ref_sumsq(const float *x, size_t n) {
    double s = 0;
    GK_OMP(omp parallel for reduction(+:s) schedule(static))
    for (size_t i = 0; i < n; i++) s += (double)x[i] * x[i];
    return s;
}

/* AdamW with decoupled weight decay, g = grad * gscale:
 *   m = b1 m + (1-b1) g;   v = b2 v + (1-b2) g^2;   p -= lr ((m/bc1) / (sqrt(v/bc2) + eps) + wd p) */
void kern_ref_adamw(float *p, const float *g, float *m, float *v, size_t n, float lr, float b1, float b2,
                    float eps, float wd, float bc1, float bc2, float gscale) {
    GK_OMP(omp parallel for schedule(static))
    for (size_t i = 0; i < n; i++) {
        float gi = g[i] * gscale;
        float mi = b1 * m[i] + (1 - b1) * gi;
        float vi = b2 * v[i] + (1 - b2) * gi * gi;
        m[i] = mi;
        v[i] = vi;
        p[i] -= lr * ((mi / bc1) / (sqrtf(vi / bc2) + eps) + wd * p[i]);
    }
}
