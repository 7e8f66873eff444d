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
#include <omp.h>
#endif

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

/* ---------------------------------------------------------------- skinny matmul (decode)
 * out[N,OC] = inp[N,C] @ W + bias for N <= KERN_SKINNY_MAX_N, reading W once.
 *  - KERN_W_IN_OUT (w[C][OC]): each thread owns a range of output columns, processed in blocks of SK_BLOCK;
 *    for every input channel c it reads the block's slice of row c of W once and updates the N accumulator
 *    rows (acc[n][j] += inp[n][c] * w[c][o0+j]: an axpy the compiler vectorises).
 *  - KERN_W_OUT_IN (w[OC][C], the tied LM head): each output o is N dot products with the contiguous row w[o];
 *    16 independent partial sums per dot so the loop vectorises without reassociating a single sum. */
#define SK_BLOCK 256
#define SK_WIDE 2048   /* columns per pass: runs of 8 KB of each weight row */
/* Compiled for AVX-512, AVX2 and baseline, picked at load time by CPU features (ISA names, not arch= names,
 * which GCC's resolver matches by exact CPU model and so misses newer Xeons). */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && !defined(__SANITIZE_ADDRESS__)
#define SK_HOT __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define SK_HOT
#endif

/* r[0..SK_BLOCK) += a * w[0..SK_BLOCK): constant trip count and restrict, so -O2 vectorises it */
static inline void axpy_block(float *restrict r, float a, const float *restrict w) {
    for (size_t j = 0; j < SK_BLOCK; j++) r[j] += a * w[j];
}

SK_HOT static void skinny_in_out(float *out, const float *inp, const float *w, const float *bias,
                                 size_t N, size_t C, size_t OC, size_t o0, size_t o1, float *acc) {
    /* acc [N][SK_WIDE]: the block's accumulator rows (per thread, from the caller) */
    for (size_t b0 = o0; b0 < o1; b0 += SK_WIDE) {
        size_t len = o1 - b0 < SK_WIDE ? o1 - b0 : SK_WIDE;
        size_t full = len / SK_BLOCK * SK_BLOCK;
        for (size_t n = 0; n < N; n++)
            for (size_t j = 0; j < len; j++) acc[n * SK_WIDE + j] = bias ? bias[b0 + j] : 0.0f;
        for (size_t c = 0; c < C; c++) {
            const float *wr = w + c * OC + b0;   /* len contiguous floats of row c */
            for (size_t n = 0; n < N; n++) {
                float a = inp[n * C + c], *r = acc + n * SK_WIDE;
                for (size_t j = 0; j < full; j += SK_BLOCK) axpy_block(r + j, a, wr + j);
                for (size_t j = full; j < len; j++) r[j] += a * wr[j];
            }
        }
        for (size_t n = 0; n < N; n++) memcpy(out + n * OC + b0, acc + n * SK_WIDE, len * sizeof(float));
    }
}

SK_HOT static void skinny_out_in(float *out, const float *inp, const float *w, const float *bias,
                                 size_t N, size_t C, size_t OC, size_t o0, size_t o1) {
    size_t C16 = C & ~(size_t)15;
    for (size_t o = o0; o < o1; o++) {
        const float *wr = w + o * C;
        for (size_t n = 0; n < N; n++) {
            const float *x = inp + n * C;
            float p[16] = {0};
            for (size_t c = 0; c < C16; c += 16)
                for (size_t k = 0; k < 16; k++) p[k] += x[c + k] * wr[c + k];
            float s = 0.0f;
            for (size_t c = C16; c < C; c++) s += x[c] * wr[c];
            for (size_t k = 0; k < 16; k++) s += p[k];
            out[n * OC + o] = s + (bias ? bias[o] : 0.0f);
        }
    }
}

void kern_matmul_skinny_fwd(float *out, const float *inp, const float *w, const float *bias,
                            size_t N, size_t C, size_t OC, int wlayout) {
    GK_CHECK(N >= 1 && N <= KERN_SKINNY_MAX_N, "kern_matmul_skinny_fwd: N=%zu (max %d)", N, KERN_SKINNY_MAX_N);
    int par = C * OC >= 65536;
    (void)par;
    /* each thread one contiguous range of output columns (multiples of 16), so it streams long runs of W */
    AC_OMP(omp parallel if(par))
    {
        size_t nt = 1, t = 0;
#ifdef _OPENMP
        nt = (size_t)omp_get_num_threads(); t = (size_t)omp_get_thread_num();
#endif
        size_t per = (OC + nt - 1) / nt;
        per = (per + 15) & ~(size_t)15;
        size_t o0 = t * per < OC ? t * per : OC, o1 = o0 + per < OC ? o0 + per : OC;
        if (o0 < o1) {
            if (wlayout == KERN_W_IN_OUT) {
                float *acc = malloc(N * SK_WIDE * sizeof(float));
                GK_CHECK(acc != NULL, "out of memory");
                skinny_in_out(out, inp, w, bias, N, C, OC, o0, o1, acc);
                free(acc);
            } else skinny_out_in(out, inp, w, bias, N, C, OC, o0, o1);
        }
    }
}
