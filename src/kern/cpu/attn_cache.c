/* attn_cache.c: attention over a key/value cache (kern_attn_cache_fwd, declared at the end of kern.h) — the
 * op that makes inference incremental: a prefill of n prompt tokens and each one-token decode step attend
 * over the cached keys and values instead of recomputing the whole prefix.
 *
 * Cache layout, one layer: kc, vc [S, NH, maxT, hs]. A decode step for head h of slot s reads
 * kc[s][h][0..pos] — one contiguous block — so the step streams memory linearly.
 *
 * This is the plain fp32 reference (no fast variant yet): OpenMP over (sequence, head, new row), dynamic
 * schedule because causal rows differ in length. Tested against kern_attention_fwd through the model
 * (tests/test_engine.c: KV-cache logits == full recomputation).
 */
#include "kern/kern.h"
#include "core/core.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#ifdef _OPENMP
#define AC_OMP(x) _Pragma(#x)
#else
#define AC_OMP(x)
#endif

void kern_attn_cache_fwd(float *out, float *kc, float *vc, const float *qkv, const size_t *slot, const size_t *pos,
                         size_t B, size_t n, size_t C, size_t NH, size_t maxT) {
    size_t hs = C / NH;
    GK_CHECK(hs * NH == C, "kern_attn_cache_fwd: C=%zu not divisible by NH=%zu", C, NH);
    for (size_t b = 0; b < B; b++)
        GK_CHECK(pos[b] + n <= maxT, "kern_attn_cache_fwd: %zu cached + %zu new rows exceed the cache (%zu)", pos[b], n, maxT);
    size_t slot_stride = NH * maxT * hs, head_stride = maxT * hs;

    /* 1. append the new keys and values: k[b,i] -> kc[slot[b]][h][pos[b]+i] */
    AC_OMP(omp parallel for collapse(2) schedule(static) if(B * n * C >= 65536))
    for (size_t b = 0; b < B; b++)
        for (size_t i = 0; i < n; i++) {
            const float *row = qkv + (b * n + i) * 3 * C;
            for (size_t h = 0; h < NH; h++) {
                size_t at = slot[b] * slot_stride + h * head_stride + (pos[b] + i) * hs;
                memcpy(kc + at, row + C + h * hs, hs * sizeof(float));
                memcpy(vc + at, row + 2 * C + h * hs, hs * sizeof(float));
            }
        }

    /* 2. each new row of each head: softmax(q . k_j / sqrt(hs)) over j <= pos+i, then the weighted sum of v_j */
    float scale = 1.0f / sqrtf((float)hs);
    /* threads only pay off with enough work (fork/join costs microseconds; a tiny model's step is less) */
    size_t work = B * NH * n * (pos[0] + n) * hs;
    int par = work >= 65536;
    (void)par;
    AC_OMP(omp parallel if(par))
    {
        float *att = malloc(maxT * sizeof(float));
        GK_CHECK(att != NULL, "out of memory");
        AC_OMP(omp for collapse(3) schedule(dynamic, 1))
        for (size_t b = 0; b < B; b++)
            for (size_t h = 0; h < NH; h++)
                for (size_t i = 0; i < n; i++) {
                    const float *q = qkv + (b * n + i) * 3 * C + h * hs;
                    const float *K = kc + slot[b] * slot_stride + h * head_stride;
                    const float *Vv = vc + slot[b] * slot_stride + h * head_stride;
                    size_t len = pos[b] + i + 1;
                    float mx = -INFINITY;
                    for (size_t j = 0; j < len; j++) {
                        const float *k = K + j * hs;
                        float s = 0.0f;
                        for (size_t d = 0; d < hs; d++) s += q[d] * k[d];
                        s *= scale;
                        att[j] = s;
                        if (s > mx) mx = s;
                    }
                    float sum = 0.0f;
                    for (size_t j = 0; j < len; j++) { att[j] = expf(att[j] - mx); sum += att[j]; }
                    float inv = 1.0f / sum;
                    float *o = out + (b * n + i) * C + h * hs;
                    for (size_t d = 0; d < hs; d++) o[d] = 0.0f;
                    for (size_t j = 0; j < len; j++) {
                        const float *v = Vv + j * hs;
                        float p = att[j] * inv;
                        for (size_t d = 0; d < hs; d++) o[d] += p * v[d];
                    }
                }
        free(att);
    }
}
