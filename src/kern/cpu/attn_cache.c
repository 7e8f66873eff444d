/* attn_cache.c: the cpu backend's inference ops: attention over a key/value cache (kern_attn_cache_fwd) — the
 * op that makes inference incremental: a prefill of n prompt tokens and each one-token decode step attend
 * over the cached keys and values instead of recomputing the whole prefix.
 *
 * Cache layout, one layer: kc, vc [S, NKV, maxT, hs] (NKV key/value heads; query head h reads head h/(NH/NKV)).
 * A decode step for head h of slot s reads kc[s][h/(NH/NKV)][0..pos] — one contiguous block — so the step
 * streams memory linearly.
 *
 * OpenMP over (sequence, head, new row), dynamic schedule because causal rows differ in length; vectorised dot
 * products and exp (kern_vexpf, ~2 ulp). Tested against the ref backend's plain loops (tests/test_kern_fast.c)
 * and against kern_attention_fwd through the model (tests/test_engine.c: KV-cache logits == full recomputation).
 * Also the skinny decode matmul (below).
 */
#include "kern/kern.h"
#include "kern/cpu/cpu.h"
#include "core/core.h"
#include "kern/cpu/fast_math.h"

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

/* a . b over n floats with 16 independent partial sums, so the loop vectorises without -ffast-math */
static inline float dot16(const float *a, const float *b, size_t n) {
    size_t n16 = n & ~(size_t)15;
    float p[16] = {0}, s = 0.0f;
    for (size_t d = 0; d < n16; d += 16)
        for (size_t u = 0; u < 16; u++) p[u] += a[d + u] * b[d + u];
    for (size_t d = n16; d < n; d++) s += a[d] * b[d];
    /* the 16 partial sums pairwise (vector adds), not one after another: a decode step's scores are dots of a
     * head's width, where a chain of 16 dependent adds took longer than the products */
    for (size_t u = 0; u < 8; u++) p[u] += p[u + 8];
    for (size_t u = 0; u < 4; u++) p[u] += p[u + 4];
    return s + ((p[0] + p[2]) + (p[1] + p[3]));
}

/* One query row of the G heads that read one key/value head (grouped-query attention; G = 1 otherwise), over
 * the cached positions in chunks of AC_CHUNK: each chunk gives, per head, its own running maximum m, sum of
 * exponentials l and unnormalised output o (ac_part); the chunks are then merged in order (ac_merge):
 *   M = max_c m_c,  out = sum_c e^(m_c - M) o_c / sum_c e^(m_c - M) l_c.
 * Why: a decode step has one row per sequence, so per (sequence, head) work items left one of two threads idle
 * for a third of the time at batch 1 (9 heads), and each of a group's heads read the group's keys and values
 * again; chunks spread one row over the threads, and a group reads them once. The arithmetic of a row depends
 * only on its length, not on how the chunks are spread (one thread or many), so a prefill and a decode of the
 * same position agree exactly. */
#define AC_CHUNK 128
#define AC_GMAX 8   /* query heads per key/value head taken together; a larger group goes one head at a time */

typedef struct { float m[AC_GMAX], l[AC_GMAX]; } ac_stats;   /* per chunk; its o (G x hs floats) kept beside */

/* A step's rows: row r is (sequence b, group of heads u, new row i) in that order. */
typedef struct {
    const float *qkv, *kc, *vc;
    const int32_t *slot, *pos;
    size_t n, units, G, grp, W, C, hs, slot_stride, head_stride;
} ac_job;
typedef struct {
    const float *q, *K, *V;   /* the group's first query head; its key/value head's cache */
    size_t G, out, len, nc;   /* heads in the group; offset of its output; positions attended; chunks */
} ac_row;
static ac_row ac_row_at(const ac_job *j, size_t r) {
    size_t b = r / (j->units * j->n), h = r / j->n % j->units * j->G, i = r % j->n;
    size_t kv = (size_t)j->slot[b] * j->slot_stride + h / j->grp * j->head_stride, len = (size_t)j->pos[b] + i + 1;
    return (ac_row){j->qkv + (b * j->n + i) * j->W + h * j->hs, j->kc + kv, j->vc + kv, j->G,
                    (b * j->n + i) * j->C + h * j->hs, len, (len + AC_CHUNK - 1) / AC_CHUNK};
}

/* chunk c of row w: positions [c AC_CHUNK, min((c+1) AC_CHUNK, len)) */
GK_HOT static void ac_part(float *o, ac_stats *st, const ac_row *w, size_t c, size_t hs, float scale, float *att) {
    const float *q = w->q, *K = w->K, *V = w->V;
    size_t G = w->G, j0 = c * AC_CHUNK, j1 = j0 + AC_CHUNK < w->len ? j0 + AC_CHUNK : w->len, n = j1 - j0;
    for (size_t j = 0; j < n; j++) {
        const float *k = K + (j0 + j) * hs;
        for (size_t g = 0; g < G; g++) att[g * n + j] = dot16(q + g * hs, k, hs) * scale;
    }
    for (size_t g = 0; g < G; g++) {
        float *a = att + g * n, mx = -INFINITY;
        for (size_t j = 0; j < n; j++) if (a[j] > mx) mx = a[j];
        /* omp simd: -O2 alone vectorises neither the exp nor the sums (a float reduction, a possible alias) */
        float sum = 0.0f;
        AC_OMP(omp simd reduction(+:sum))
        for (size_t j = 0; j < n; j++) { a[j] = kern_vexpf(a[j] - mx); sum += a[j]; }
        st->m[g] = mx;
        st->l[g] = sum;
        for (size_t d = 0; d < hs; d++) o[g * hs + d] = 0.0f;
    }
    size_t j = 0;
    for (; j + 4 <= n; j += 4) {   /* four rows of V per pass over o */
        const float *v0 = V + (j0 + j) * hs, *v1 = v0 + hs, *v2 = v1 + hs, *v3 = v2 + hs;
        for (size_t g = 0; g < G; g++) {
            const float *a = att + g * n;
            float *og = o + g * hs, p0 = a[j], p1 = a[j + 1], p2 = a[j + 2], p3 = a[j + 3];
            AC_OMP(omp simd)
            for (size_t d = 0; d < hs; d++) {
                float x = og[d];
                x += p0 * v0[d];
                x += p1 * v1[d];
                x += p2 * v2[d];
                x += p3 * v3[d];
                og[d] = x;
            }
        }
    }
    for (; j < n; j++) {
        const float *v = V + (j0 + j) * hs;
        for (size_t g = 0; g < G; g++) {
            float *og = o + g * hs, pj = att[g * n + j];
            AC_OMP(omp simd)
            for (size_t d = 0; d < hs; d++) og[d] += pj * v[d];
        }
    }
}

/* out (G heads, adjacent) from the nc chunks' (o, stats), o of chunk c at po + c * ostride */
static void ac_merge(float *out, const float *po, size_t ostride, const ac_stats *st, size_t nc, size_t G, size_t hs) {
    for (size_t g = 0; g < G; g++) {
        float M = -INFINITY, L = 0.0f, *y = out + g * hs;
        for (size_t c = 0; c < nc; c++) M = st[c].m[g] > M ? st[c].m[g] : M;
        for (size_t d = 0; d < hs; d++) y[d] = 0.0f;
        for (size_t c = 0; c < nc; c++) {
            float w = expf(st[c].m[g] - M);
            const float *o = po + c * ostride + g * hs;
            L += w * st[c].l[g];
            for (size_t d = 0; d < hs; d++) y[d] += w * o[d];
        }
        float inv = 1.0f / L;
        for (size_t d = 0; d < hs; d++) y[d] *= inv;
    }
}

void kern_fast_attn_cache_fwd(kern_backend *be, float *out, float *kc, float *vc, const float *qkv, const int32_t *slot,
                              const int32_t *pos, size_t B, size_t n, size_t C, size_t NH, size_t NKV, size_t maxT) {
    size_t hs = C / NH;
    GK_CHECK(hs * NH == C, "kern_attn_cache_fwd: C=%zu not divisible by NH=%zu", C, NH);
    GK_CHECK(NKV >= 1 && NH % NKV == 0, "kern_attn_cache_fwd: NKV=%zu does not divide NH=%zu", NKV, NH);
    size_t W = (NH + 2 * NKV) * hs, grp = NH / NKV;
    for (size_t b = 0; b < B; b++)
        GK_CHECK(slot[b] >= 0 && pos[b] >= 0 && (size_t)pos[b] + n <= maxT,
                 "kern_attn_cache_fwd: %d cached + %zu new rows exceed the cache (%zu)", (int)pos[b], n, maxT);
    size_t slot_stride = NKV * maxT * hs, head_stride = maxT * hs;

    /* 1. append the new keys and values: k[b,i,g] -> kc[slot[b]][g][pos[b]+i] */
    AC_OMP(omp parallel for collapse(2) schedule(static) if(B * n * C >= 65536))
    for (size_t b = 0; b < B; b++)
        for (size_t i = 0; i < n; i++) {
            const float *row = qkv + (b * n + i) * W;
            for (size_t g = 0; g < NKV; g++) {
                size_t at = (size_t)slot[b] * slot_stride + g * head_stride + ((size_t)pos[b] + i) * hs;
                memcpy(kc + at, row + (NH + g) * hs, hs * sizeof(float));
                memcpy(vc + at, row + (NH + NKV + g) * hs, hs * sizeof(float));
            }
        }

    /* 2. each new row of each group of heads: the chunks of its positions j <= pos+i, merged */
    float scale = 1.0f / sqrtf((float)hs);
    size_t G = grp <= AC_GMAX ? grp : 1, units = NH / G, rows = B * units * n;
    size_t maxlen = 0;   /* the longest row's positions: its chunks bound every row's (not maxT: a long context's
                          * cache would size the scratch for positions no row has yet) */
    for (size_t b = 0; b < B; b++) maxlen = (size_t)pos[b] + n > maxlen ? (size_t)pos[b] + n : maxlen;
    size_t maxc = (maxlen + AC_CHUNK - 1) / AC_CHUNK, ow = G * hs;   /* chunks of the longest row; o floats per chunk */
    /* threads only pay off with enough work (fork/join costs microseconds; a tiny model's step is less) */
    size_t work = B * NH * n * ((size_t)pos[0] + n) * hs;
    int par = work >= 65536, nth = 1;
#ifdef _OPENMP
    if (par) nth = omp_get_max_threads();
#endif
    (void)par;
    ac_job job = {qkv, kc, vc, slot, pos, n, units, G, grp, W, C, hs, slot_stride, head_stride};
    if (rows >= 2 * (size_t)nth) {   /* enough rows: each a work item, its chunks one after another */
        AC_OMP(omp parallel if(par))
        {
            float *att = malloc(G * AC_CHUNK * sizeof(float)), *po = malloc(maxc * ow * sizeof(float));
            ac_stats *st = malloc(maxc * sizeof(ac_stats));
            GK_CHECK(att && po && st, "out of memory");
            AC_OMP(omp for schedule(dynamic, 1))
            for (size_t r = 0; r < rows; r++) {
                ac_row w = ac_row_at(&job, r);
                for (size_t c = 0; c < w.nc; c++) ac_part(po + c * ow, st + c, &w, c, hs, scale, att);
                ac_merge(out + w.out, po, ow, st, w.nc, G, hs);
            }
            free(att); free(po); free(st);
        }
    } else {   /* few rows (a decode step of few sequences): every chunk of every row a work item, then the merges */
        float *po = malloc(rows * maxc * ow * sizeof(float));
        ac_stats *st = malloc(rows * maxc * sizeof(ac_stats));
        GK_CHECK(po && st, "out of memory");
        AC_OMP(omp parallel if(par))
        {
            float *att = malloc(G * AC_CHUNK * sizeof(float));
            GK_CHECK(att != NULL, "out of memory");
            AC_OMP(omp for collapse(2) schedule(dynamic, 1))
            for (size_t r = 0; r < rows; r++)
                for (size_t c = 0; c < maxc; c++) {
                    ac_row w = ac_row_at(&job, r);
                    if (c < w.nc) ac_part(po + (r * maxc + c) * ow, st + r * maxc + c, &w, c, hs, scale, att);
                }
            free(att);
            AC_OMP(omp for schedule(static))
            for (size_t r = 0; r < rows; r++) {
                ac_row w = ac_row_at(&job, r);
                ac_merge(out + w.out, po + r * maxc * ow, ow, st + r * maxc, w.nc, G, hs);
            }
        }
        free(po); free(st);
    }
}

/* ---------------------------------------------------------------- skinny matmul (decode)
 * out[N,OC] = inp[N,C] @ W + bias for N <= KERN_SKINNY_MAX_N, reading W once, as one contiguous stream per
 * thread (the hardware prefetchers follow a linear stream; short runs at a large stride they do not).
 *  - KERN_W_IN_OUT (w[C][OC], HF Conv1D): the input channels are split between threads, so thread t reads
 *    rows [c0, c1) of W — one contiguous block — into its own partial sums part[t][N][OC]; after a barrier
 *    each thread adds the partials (and the bias) for a range of output columns. Inside a thread, SK_ROWS rows
 *    of W at a time update a block of accumulator columns sized to stay in cache (acc += x0 w0 + x1 w1 + ...).
 *  - KERN_W_OUT_IN (w[OC][C], the tied LM head): each thread a contiguous range of outputs; four rows of W
 *    at a time, each a dot product with the input row (16-lane partial sums).
 * The AVX-512 bodies are intrinsics (fused multiply-add, masked tails), picked at run time; elsewhere the
 * portable loops below do the same work. Block sizes were picked by measurement (bench/engine): 4 vs 8 rows
 * and 24 KB vs 128 KB accumulator blocks were within noise at batch 1; the larger ones helped batch 8 a little. */
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define SK_X86 1
#endif

#define SK_ACC_FLOATS 32768   /* accumulator columns x N per block: 128 KB, L2-resident */
#define SK_ROWS 8              /* rows of W per pass over the accumulators */

static size_t sk_block_cols(size_t N, size_t OC) {
    size_t b = SK_ACC_FLOATS / N;
    b = b < 64 ? 64 : b & ~(size_t)15;
    return b < OC ? b : OC;
}

/* part[n][j] (row stride OC) = sum_{c in [c0,c1)} inp[n][c] w[c][j] for j in [j0, j1). GK_HOT and omp simd: an
 * AVX2 machine's decode runs here, and without them the loop stayed scalar (part and w might alias). */
GK_HOT static void sk_rows_plain(float *part, const float *inp, const float *w, size_t N, size_t C, size_t OC,
                                 size_t c0, size_t c1, size_t j0, size_t j1) {
    for (size_t n = 0; n < N; n++) memset(part + n * OC + j0, 0, (j1 - j0) * sizeof(float));
    for (size_t c = c0; c < c1; c++) {
        const float *wr = w + c * OC;
        for (size_t n = 0; n < N; n++) {
            float a = inp[n * C + c], *r = part + n * OC;
            AC_OMP(omp simd)
            for (size_t j = j0; j < j1; j++) r[j] += a * wr[j];
        }
    }
}

GK_HOT static void sk_dots_plain(float *out, const float *inp, const float *w, const float *bias, size_t N, size_t C,
                          size_t OC, size_t o0, size_t o1) {
    for (size_t o = o0; o < o1; o++)
        for (size_t n = 0; n < N; n++) out[n * OC + o] = dot16(inp + n * C, w + o * C, C) + (bias ? bias[o] : 0.0f);
}

#ifdef SK_X86
__attribute__((target("avx512f")))
static void sk_rows_avx512(float *part, const float *inp, const float *w, size_t N, size_t C, size_t OC,
                           size_t c0, size_t c1, size_t j0, size_t j1) {
    size_t len = j1 - j0, full = len & ~(size_t)15;
    __mmask16 tail = (__mmask16)((1u << (len - full)) - 1u);
    for (size_t n = 0; n < N; n++) memset(part + n * OC + j0, 0, len * sizeof(float));
    size_t c = c0;
    for (; c + SK_ROWS <= c1; c += SK_ROWS) {
        const float *w0 = w + c * OC + j0;
        for (size_t j = 0; j < len; j += 16) {
            __mmask16 m = j < full ? (__mmask16)0xFFFF : tail;
            __m512 a[SK_ROWS];
            for (size_t k = 0; k < SK_ROWS; k++) a[k] = _mm512_maskz_loadu_ps(m, w0 + k * OC + j);
            for (size_t n = 0; n < N; n++) {
                const float *x = inp + n * C + c;
                float *r = part + n * OC + j0 + j;
                __m512 acc = _mm512_maskz_loadu_ps(m, r);
                for (size_t k = 0; k < SK_ROWS; k++) acc = _mm512_fmadd_ps(_mm512_set1_ps(x[k]), a[k], acc);
                _mm512_mask_storeu_ps(r, m, acc);
            }
        }
    }
    for (; c < c1; c++) {
        const float *w0 = w + c * OC + j0;
        for (size_t j = 0; j < len; j += 16) {
            __mmask16 m = j < full ? (__mmask16)0xFFFF : tail;
            __m512 a0 = _mm512_maskz_loadu_ps(m, w0 + j);
            for (size_t n = 0; n < N; n++) {
                float *r = part + n * OC + j0 + j;
                __m512 acc = _mm512_fmadd_ps(_mm512_set1_ps(inp[n * C + c]), a0, _mm512_maskz_loadu_ps(m, r));
                _mm512_mask_storeu_ps(r, m, acc);
            }
        }
    }
}

__attribute__((target("avx512f")))
static void sk_dots_avx512(float *out, const float *inp, const float *w, const float *bias, size_t N, size_t C,
                           size_t OC, size_t o0, size_t o1) {
    size_t full = C & ~(size_t)15;
    __mmask16 tail = (__mmask16)((1u << (C - full)) - 1u);
    size_t o = o0;
    for (; o + 4 <= o1; o += 4) {
        const float *w0 = w + o * C, *w1 = w0 + C, *w2 = w1 + C, *w3 = w2 + C;
        for (size_t n = 0; n < N; n++) {
            const float *x = inp + n * C;
            __m512 s0 = _mm512_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
            for (size_t c = 0; c < C; c += 16) {
                __mmask16 m = c < full ? (__mmask16)0xFFFF : tail;
                __m512 xv = _mm512_maskz_loadu_ps(m, x + c);
                s0 = _mm512_fmadd_ps(xv, _mm512_maskz_loadu_ps(m, w0 + c), s0);
                s1 = _mm512_fmadd_ps(xv, _mm512_maskz_loadu_ps(m, w1 + c), s1);
                s2 = _mm512_fmadd_ps(xv, _mm512_maskz_loadu_ps(m, w2 + c), s2);
                s3 = _mm512_fmadd_ps(xv, _mm512_maskz_loadu_ps(m, w3 + c), s3);
            }
            float *y = out + n * OC + o;
            y[0] = _mm512_reduce_add_ps(s0) + (bias ? bias[o] : 0.0f);
            y[1] = _mm512_reduce_add_ps(s1) + (bias ? bias[o + 1] : 0.0f);
            y[2] = _mm512_reduce_add_ps(s2) + (bias ? bias[o + 2] : 0.0f);
            y[3] = _mm512_reduce_add_ps(s3) + (bias ? bias[o + 3] : 0.0f);
        }
    }
    if (o < o1) sk_dots_plain(out, inp, w, bias, N, C, OC, o, o1);
}

/* KERN_W_OUT_IN on AVX2 + FMA (a CPU without AVX-512): register tiles of 4 rows of W x 3 input rows, 12
 * accumulators of 8 lanes, so each W load feeds 3 FMAs and each input load 4 (the one-row-at-a-time dots above
 * load twice per FMA). W is still read once, as one stream per thread (rows o..o+3 are adjacent); the input rows
 * stay in cache. On such a CPU this is also the path from SK_GEMM_FROM rows on, where oneDNN would first copy
 * all of W into its packed layout: the tied LM head of a d6 model (50257 x 384) at 16 rows took 9.2 ms a call
 * through oneDNN, 7.1 ms here; at 4 rows 7.2 ms with the one-row dots, 4.0 ms here; at 1 row 4.1 -> 2.7 ms (2
 * threads, the 2-core Zen 3; docs/kernels.md says how it was measured). */
#define SK_TR 3   /* input rows per tile (2 and 4 measured slower) */
__attribute__((target("avx2,fma")))
static inline __m128 sk_hsum4(__m256 a, __m256 b, __m256 c, __m256 d) {   /* {sum a, sum b, sum c, sum d} */
    __m256 s = _mm256_hadd_ps(_mm256_hadd_ps(a, b), _mm256_hadd_ps(c, d));
    return _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
}

/* out[n .. n+R)[o .. o+4) = inp rows . W rows (+ bias), R <= SK_TR; tail: the lanes of the last partial 8.
 * Written out by hand (SK_FMA4): GCC at -O2 kept a loop-indexed accumulator array in memory. */
#define SK_FMA4(a, xv) do { a[0] = _mm256_fmadd_ps(xv, w0v, a[0]); a[1] = _mm256_fmadd_ps(xv, w1v, a[1]); \
                            a[2] = _mm256_fmadd_ps(xv, w2v, a[2]); a[3] = _mm256_fmadd_ps(xv, w3v, a[3]); } while (0)
#define SK_STEP(LOAD, c) do { \
        __m256 w0v = LOAD(w0 + (c)), w1v = LOAD(w0 + C + (c)), w2v = LOAD(w0 + 2 * C + (c)), w3v = LOAD(w0 + 3 * C + (c)); \
        SK_FMA4(a0, LOAD(x0 + (c))); \
        if (R > 1) SK_FMA4(a1, LOAD(x0 + C + (c))); \
        if (R > 2) SK_FMA4(a2, LOAD(x0 + 2 * C + (c))); } while (0)
__attribute__((target("avx2,fma"), always_inline))
static inline void sk_tile_avx2(float *out, const float *inp, const float *w, const float *bias, size_t C, size_t OC,
                                size_t o, size_t n, const int R, __m256i tail) {
    __m256 z = _mm256_setzero_ps(), a0[4] = {z, z, z, z}, a1[4] = {z, z, z, z}, a2[4] = {z, z, z, z};
    const float *w0 = w + o * C, *x0 = inp + n * C;
    size_t full = C & ~(size_t)7, c = 0;
#define SK_LOADU(p) _mm256_loadu_ps(p)
#define SK_LOADM(p) _mm256_maskload_ps(p, tail)
    for (; c < full; c += 8) SK_STEP(SK_LOADU, c);
    if (c < C) SK_STEP(SK_LOADM, c);
#undef SK_LOADU
#undef SK_LOADM
    __m128 b = bias ? _mm_loadu_ps(bias + o) : _mm_setzero_ps();
    _mm_storeu_ps(out + n * OC + o, _mm_add_ps(sk_hsum4(a0[0], a0[1], a0[2], a0[3]), b));
    if (R > 1) _mm_storeu_ps(out + (n + 1) * OC + o, _mm_add_ps(sk_hsum4(a1[0], a1[1], a1[2], a1[3]), b));
    if (R > 2) _mm_storeu_ps(out + (n + 2) * OC + o, _mm_add_ps(sk_hsum4(a2[0], a2[1], a2[2], a2[3]), b));
}
#undef SK_STEP
#undef SK_FMA4

__attribute__((target("avx2,fma")))
static void sk_dots_avx2(float *out, const float *inp, const float *w, const float *bias, size_t N, size_t C,
                         size_t OC, size_t o0, size_t o1) {
    int rem = (int)(C & 7);
    __m256i tail = _mm256_cmpgt_epi32(_mm256_set1_epi32(rem), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    size_t o = o0;
    for (; o + 4 <= o1; o += 4) {
        size_t n = 0;
        for (; n + SK_TR <= N; n += SK_TR) sk_tile_avx2(out, inp, w, bias, C, OC, o, n, SK_TR, tail);
        switch (N - n) {
        case 2: sk_tile_avx2(out, inp, w, bias, C, OC, o, n, 2, tail); break;
        case 1: sk_tile_avx2(out, inp, w, bias, C, OC, o, n, 1, tail); break;
        default: break;
        }
    }
    if (o < o1) sk_dots_plain(out, inp, w, bias, N, C, OC, o, o1);
}

/* KERN_W_IN_OUT on AVX2 + FMA, from 2 rows: register tiles of up to 6 input rows x 16 output columns (12
 * accumulators); each thread a contiguous range of 16-column strips, each strip walked down all C rows of W (64
 * bytes a row) once per group of 6 input rows, which finds it in cache after the first group. No partial sums to
 * add across threads. cols: 16, or the last strip's width (masked loads and stores). Against what ran before on the
 * 2-core Zen 3 (2 threads): d6's four block products at 4 rows 0.39 -> 0.17 ms (the row-streaming loops), at 16
 * rows 0.48 -> 0.41 ms (oneDNN); GPT-2 124M's at 16 rows 2.74 -> 1.77 ms. One row stays on the streaming loops
 * (bound by reading W, which they do as one linear stream per thread). */
#define SKI_R 6
#define SKI_FMA2(r) do { if (R > r) { __m256 xb = _mm256_broadcast_ss(x0 + (r) * C + c); \
        a[2 * (r)] = _mm256_fmadd_ps(xb, w0v, a[2 * (r)]); a[2 * (r) + 1] = _mm256_fmadd_ps(xb, w1v, a[2 * (r) + 1]); } } while (0)
#define SKI_LOOP(L0, L1) for (size_t c = c0; c < c1; c++) { \
        __m256 w0v = L0(w + c * OC + j), w1v = L1(w + c * OC + j + 8); \
        SKI_FMA2(0); SKI_FMA2(1); SKI_FMA2(2); SKI_FMA2(3); SKI_FMA2(4); SKI_FMA2(5); }
__attribute__((target("avx2,fma"), always_inline))
static inline void ski_tile_avx2(float *out, const float *inp, const float *w, const float *bias, size_t C, size_t OC,
                                 size_t n, size_t j, const int R, int masked, __m256i m0, __m256i m1, size_t c0, size_t c1) {
    __m256 z = _mm256_setzero_ps(), a[2 * SKI_R] = {z, z, z, z, z, z, z, z, z, z, z, z};
    const float *x0 = inp + n * C;
#define SKI_U(p) _mm256_loadu_ps(p)
#define SKI_M0(p) _mm256_maskload_ps(p, m0)
#define SKI_M1(p) _mm256_maskload_ps(p, m1)
#define SKI_LD(r) do { if (R > r) { const float *y = out + (n + (r)) * OC + j; \
        a[2 * (r)] = masked ? SKI_M0(y) : SKI_U(y); a[2 * (r) + 1] = masked ? SKI_M1(y + 8) : SKI_U(y + 8); } } while (0)
    if (c0 > 0) { SKI_LD(0); SKI_LD(1); SKI_LD(2); SKI_LD(3); SKI_LD(4); SKI_LD(5); }   /* a later block of rows */
#undef SKI_LD
    if (!masked) SKI_LOOP(SKI_U, SKI_U)
    else SKI_LOOP(SKI_M0, SKI_M1)
    __m256 b0 = _mm256_setzero_ps(), b1 = b0;
    if (bias && c1 == C) { b0 = masked ? SKI_M0(bias + j) : SKI_U(bias + j); b1 = masked ? SKI_M1(bias + j + 8) : SKI_U(bias + j + 8); }
#undef SKI_U
#undef SKI_M0
#undef SKI_M1
#define SKI_ST(r) do { if (R > r) { float *y = out + (n + (r)) * OC + j; \
        __m256 v0 = _mm256_add_ps(a[2 * (r)], b0), v1 = _mm256_add_ps(a[2 * (r) + 1], b1); \
        if (!masked) { _mm256_storeu_ps(y, v0); _mm256_storeu_ps(y + 8, v1); } \
        else { _mm256_maskstore_ps(y, m0, v0); _mm256_maskstore_ps(y + 8, m1, v1); } } } while (0)
    SKI_ST(0); SKI_ST(1); SKI_ST(2); SKI_ST(3); SKI_ST(4); SKI_ST(5);
#undef SKI_ST
}
#undef SKI_LOOP
#undef SKI_FMA2

/* columns [j0, j1) of out, j0 a multiple of 16; W's rows in blocks of SKI_KB, so that the block's input columns
 * (N x SKI_KB floats) and a strip of it (SKI_KB x 64 bytes) stay in L1 (a later block adds to what out holds) */
#define SKI_KB 256
__attribute__((target("avx2,fma")))
static void sk_cols_avx2(float *out, const float *inp, const float *w, const float *bias, size_t N, size_t C, size_t OC,
                         size_t j0, size_t j1) {
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    for (size_t c0 = 0; c0 < C; c0 += SKI_KB) {
        size_t c1 = c0 + SKI_KB < C ? c0 + SKI_KB : C;
        for (size_t j = j0; j < j1; j += 16) {
            int cols = j1 - j < 16 ? (int)(j1 - j) : 16, masked = cols < 16;
            __m256i m0 = _mm256_cmpgt_epi32(_mm256_set1_epi32(cols), lane), m1 = _mm256_cmpgt_epi32(_mm256_set1_epi32(cols - 8), lane);
            size_t n = 0;
            for (; n + SKI_R <= N; n += SKI_R) ski_tile_avx2(out, inp, w, bias, C, OC, n, j, SKI_R, masked, m0, m1, c0, c1);
            switch (N - n) {
            case 5: ski_tile_avx2(out, inp, w, bias, C, OC, n, j, 5, masked, m0, m1, c0, c1); break;
            case 4: ski_tile_avx2(out, inp, w, bias, C, OC, n, j, 4, masked, m0, m1, c0, c1); break;
            case 3: ski_tile_avx2(out, inp, w, bias, C, OC, n, j, 3, masked, m0, m1, c0, c1); break;
            case 2: ski_tile_avx2(out, inp, w, bias, C, OC, n, j, 2, masked, m0, m1, c0, c1); break;
            case 1: ski_tile_avx2(out, inp, w, bias, C, OC, n, j, 1, masked, m0, m1, c0, c1); break;
            default: break;
            }
        }
    }
}

static int sk_avx2(const kern_backend *be) {
    static int have = -1;
    if (have < 0) have = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") ? 1 : 0;
    return have && !be->skinny_portable;
}

/* be->skinny_portable (tests): the portable loops even on AVX-512 */
static int sk_avx512(const kern_backend *be) {
    static int have = -1;
    if (have < 0) have = __builtin_cpu_supports("avx512f") ? 1 : 0;
    return have && !be->skinny_portable;
}
#else
static int sk_avx512(const kern_backend *be) { (void)be; return 0; }
static int sk_avx2(const kern_backend *be) { (void)be; return 0; }
#define sk_rows_avx512 sk_rows_plain
#define sk_dots_avx512 sk_dots_plain
#define sk_dots_avx2 sk_dots_plain
static void sk_cols_avx2(float *out, const float *inp, const float *w, const float *bias, size_t N, size_t C, size_t OC,
                         size_t j0, size_t j1) {   /* never called: sk_avx2 is 0 here */
    (void)out; (void)inp; (void)w; (void)bias; (void)N; (void)C; (void)OC; (void)j0; (void)j1;
    GK_CHECK(0, "sk_cols_avx2 without x86 intrinsics");
}
#endif

/* One thread's share of the row split: partial sums over rows [c0, c1), block by block of columns. */
static void sk_rows(float *part, const float *inp, const float *w, size_t N, size_t C, size_t OC, size_t c0,
                    size_t c1, int wide) {
    size_t bc = sk_block_cols(N, OC);
    for (size_t j0 = 0; j0 < OC; j0 += bc) {
        size_t j1 = j0 + bc < OC ? j0 + bc : OC;
        if (wide) sk_rows_avx512(part, inp, w, N, C, OC, c0, c1, j0, j1);
        else sk_rows_plain(part, inp, w, N, C, OC, c0, c1, j0, j1);
    }
}

/* On AVX-512 CPUs (and with the portable loops), from this many rows oneDNN's GEMM (its primitive for the shape
 * cached after the first call) beats the streaming kernels, whose loads per FMA grow with the rows they keep apart. Measured end to end (`gptkit sample
 * --num-samples N`, 64 tokens, 2 threads, quiet 2-core EPYC; streaming everywhere vs GEMM from 8 rows):
 * d6 at 8 / 16 sequences 528-575 -> 632-648 and 782-800 -> 883-898 tok/s, GPT-2 124M 177 -> 194-197 and
 * 217-219 -> 298-302 tok/s; at 4 sequences streaming was ahead (d12 118-119 vs 107-116 with the GEMM from 4 in
 * the in-out layout), and at 1 the GEMM lost 10-17%. */
#define SK_GEMM_FROM 8

void kern_fast_matmul_skinny_fwd(kern_backend *be, float *out, const float *inp, const float *w, const float *bias,
                                 size_t N, size_t C, size_t OC, int wlayout) {
    GK_CHECK(N >= 1 && N <= KERN_SKINNY_MAX_N, "kern_matmul_skinny_fwd: N=%zu (max %d)", N, KERN_SKINNY_MAX_N);
    int wide = sk_avx512(be), tiled = !wide && sk_avx2(be) && (wlayout == KERN_W_OUT_IN || N >= 2);
    if (be->gemm == KERN_GEMM_ONEDNN && !be->skinny_portable && !tiled && N >= SK_GEMM_FROM) {
        kern_matmul_fwd(be, out, inp, w, bias, N, C, OC, wlayout);
        return;
    }
    int par = C * OC >= 65536;
    size_t maxt = 1;
#ifdef _OPENMP
    if (par) maxt = (size_t)omp_get_max_threads();
#else
    (void)par;   /* without OpenMP there is one thread: nothing to decide */
#endif
    if (wlayout == KERN_W_OUT_IN) {
        AC_OMP(omp parallel if(par))
        {
            size_t nt = 1, t = 0;
#ifdef _OPENMP
            nt = (size_t)omp_get_num_threads(); t = (size_t)omp_get_thread_num();
#endif
            size_t per = ((OC + nt - 1) / nt + 3) & ~(size_t)3;   /* whole groups of 4 rows per thread */
            size_t o0 = t * per < OC ? t * per : OC, o1 = o0 + per < OC ? o0 + per : OC;
            if (o0 < o1) {
                if (wide) sk_dots_avx512(out, inp, w, bias, N, C, OC, o0, o1);
                else if (tiled) sk_dots_avx2(out, inp, w, bias, N, C, OC, o0, o1);
                else sk_dots_plain(out, inp, w, bias, N, C, OC, o0, o1);
            }
        }
        return;
    }
    if (tiled) {   /* KERN_W_IN_OUT, 2+ rows: whole 16-column strips per thread */
        size_t strips = (OC + 15) / 16;
        AC_OMP(omp parallel if(par))
        {
            size_t nt = 1, t = 0;
#ifdef _OPENMP
            nt = (size_t)omp_get_num_threads(); t = (size_t)omp_get_thread_num();
#endif
            size_t j0 = strips * t / nt * 16, j1 = strips * (t + 1) / nt * 16;
            if (j1 > OC) j1 = OC;
            if (j0 < j1) sk_cols_avx2(out, inp, w, bias, N, C, OC, j0, j1);
        }
        return;
    }
    /* KERN_W_IN_OUT: partials per thread beyond the first (thread 0 sums into out directly) */
    static _Thread_local float *scratch;
    static _Thread_local size_t scratch_cap;
    size_t need = maxt > 1 ? (maxt - 1) * N * OC : 0;
    if (need > scratch_cap) {
        free(scratch);
        scratch = malloc(need * sizeof(float));
        GK_CHECK(scratch != NULL, "out of memory (%zu floats of decode scratch)", need);
        scratch_cap = need;
    }
    float *parts = scratch;
    AC_OMP(omp parallel if(par))
    {
        size_t nt = 1, t = 0;
#ifdef _OPENMP
        nt = (size_t)omp_get_num_threads(); t = (size_t)omp_get_thread_num();
#endif
        size_t c0 = C * t / nt, c1 = C * (t + 1) / nt;
        float *mine = t == 0 ? out : parts + (t - 1) * N * OC;
        sk_rows(mine, inp, w, N, C, OC, c0, c1, wide);
        AC_OMP(omp barrier)
        /* thread t adds the other threads' partials and the bias into out, columns [j0, j1) */
        size_t j0 = OC * t / nt, j1 = OC * (t + 1) / nt;
        for (size_t n = 0; n < N; n++) {
            float *y = out + n * OC;
            for (size_t u = 1; u < nt; u++) {
                const float *p = parts + ((u - 1) * N + n) * OC;
                for (size_t j = j0; j < j1; j++) y[j] += p[j];
            }
            if (bias)
                for (size_t j = j0; j < j1; j++) y[j] += bias[j];
        }
    }
}
