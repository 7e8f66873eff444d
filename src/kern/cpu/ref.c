/* ref.c: the fp32 CPU reference — the oracle every fast path is tested against, and the "ref" backend's ops.
 * The trunk ops come from ref_impl.h (shared with the double-precision build in ref64.c); the elementwise,
 * optimizer and inference ops, which have no double twin, are below. */
#include "kern/kern.h"
#include "kern/cpu/cpu.h"
#include "core/core.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define REAL float
#define FN(x) kern_ref_##x
#define REF_BE kern_backend *be,
#define R_EXP expf
#define R_LOG logf
#define R_SQRT sqrtf
#define R_TANH tanhf
#define R_COS cosf
#define R_SIN sinf
#include "kern/cpu/ref_impl.h"

/* The reference keeps the softmax probabilities P [B,NH,T,T]. */
size_t kern_ref_attention_saved_floats(kern_backend *be, size_t B, size_t T, size_t C, size_t NH) {
    (void)C;
    return B * NH * T * T;
}

/* out = a + b */
void kern_ref_add(kern_backend *be, float *out, const float *a, const float *b, size_t n) {
    GK_OMP(omp parallel for schedule(static))
    for (size_t i = 0; i < n; i++) out[i] = a[i] + b[i];
}

/* y += alpha x */
void kern_ref_axpy(kern_backend *be, float *y, float alpha, const float *x, size_t n) {
    GK_OMP(omp parallel for schedule(static))
    for (size_t i = 0; i < n; i++) y[i] += alpha * x[i];
}

/* x *= s */
void kern_ref_scale(kern_backend *be, float *x, float s, size_t n) {
    GK_OMP(omp parallel for schedule(static))
    for (size_t i = 0; i < n; i++) x[i] *= s;
}

/* sum_i x_i^2, accumulated in double */
double kern_ref_sumsq(kern_backend *be, const float *x, size_t n) {
    double s = 0;
    GK_OMP(omp parallel for reduction(+:s) schedule(static))
    for (size_t i = 0; i < n; i++) s += (double)x[i] * x[i];
    return s;
}

/* AdamW with decoupled weight decay, g = grad * gscale:
 *   m = b1 m + (1-b1) g;   v = b2 v + (1-b2) g^2;   p -= lr ((m/bc1) / (sqrt(v/bc2) + eps) + wd p) */
void kern_ref_adamw(kern_backend *be, float *p, const float *g, float *m, float *v, size_t n, float lr, float b1,
                    float b2, float eps, float wd, float bc1, float bc2, float gscale) {
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

/* ---------------------------------------------------------------- inference ops */

/* The decode matmul is the ordinary product; streaming W once is the fast backend's business. */
void kern_ref_matmul_skinny_fwd(kern_backend *be, float *out, const float *inp, const float *w, const float *bias,
                                size_t N, size_t C, size_t OC, int wlayout) {
    GK_CHECK(N >= 1 && N <= KERN_SKINNY_MAX_N, "kern_matmul_skinny_fwd: N=%zu (max %d)", N, KERN_SKINNY_MAX_N);
    kern_ref_matmul_fwd(be, out, inp, w, bias, N, C, OC, wlayout);
}

/* Attention over the cache, as kern.h states it: append the new keys and values of sequence b at rows
 * pos[b].. of slot slot[b], then for each new row i and head h (key/value head g = h / (NH/NKV))
 *   att_j = q . k_{g,j} / sqrt(hs)  for j <= pos[b] + i;   out = sum_j softmax(att)_j v_{g,j}
 * Cache index of (slot s, key/value head g, row j, channel d): ((s NKV + g) maxT + j) hs + d. */
void kern_ref_attn_cache_fwd(kern_backend *be, float *out, float *kc, float *vc, const float *qkv, const int32_t *slot,
                             const int32_t *pos, size_t B, size_t n, size_t C, size_t NH, size_t NKV, size_t maxT) {
    size_t hs = C / NH;
    GK_CHECK(hs * NH == C, "kern_attn_cache_fwd: C=%zu not divisible by NH=%zu", C, NH);
    GK_CHECK(NKV >= 1 && NH % NKV == 0, "kern_attn_cache_fwd: NKV=%zu does not divide NH=%zu", NKV, NH);
    size_t W = (NH + 2 * NKV) * hs, grp = NH / NKV;
    float scale = 1.0f / sqrtf((float)hs);
    float *att = gk_malloc((maxT ? maxT : 1) * sizeof(float));
    for (size_t b = 0; b < B; b++) {
        size_t s = (size_t)slot[b], p0 = (size_t)pos[b];
        GK_CHECK(slot[b] >= 0 && pos[b] >= 0 && p0 + n <= maxT, "kern_attn_cache_fwd: %zu cached + %zu new rows exceed the cache (%zu)", p0, n, maxT);
        for (size_t i = 0; i < n; i++)
            for (size_t g = 0; g < NKV; g++) {
                const float *row = qkv + (b * n + i) * W;
                float *kd = kc + ((s * NKV + g) * maxT + p0 + i) * hs, *vd = vc + ((s * NKV + g) * maxT + p0 + i) * hs;
                for (size_t d = 0; d < hs; d++) { kd[d] = row[(NH + g) * hs + d]; vd[d] = row[(NH + NKV + g) * hs + d]; }
            }
        for (size_t i = 0; i < n; i++)
            for (size_t h = 0; h < NH; h++) {
                const float *q = qkv + (b * n + i) * W + h * hs;
                const float *K = kc + (s * NKV + h / grp) * maxT * hs, *V = vc + (s * NKV + h / grp) * maxT * hs;
                size_t len = p0 + i + 1;
                float mx = -INFINITY, sum = 0;
                for (size_t j = 0; j < len; j++) {
                    float a = 0;
                    for (size_t d = 0; d < hs; d++) a += q[d] * K[j * hs + d];
                    att[j] = a * scale;
                    if (att[j] > mx) mx = att[j];
                }
                for (size_t j = 0; j < len; j++) { att[j] = expf(att[j] - mx); sum += att[j]; }
                float *o = out + (b * n + i) * C + h * hs;
                for (size_t d = 0; d < hs; d++) {
                    float acc = 0;
                    for (size_t j = 0; j < len; j++) acc += att[j] / sum * V[j * hs + d];
                    o[d] = acc;
                }
            }
    }
    free(att);
}
