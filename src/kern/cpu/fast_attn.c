/* fast_attn.c: causal self-attention without a T x T matrix (blocked, online softmax; "flash" style).
 *
 * Forward, per (b, h, block of BQ queries): walk the key blocks up to the diagonal; for each, scores
 * S = (q/sqrt(hs)) K^T on a BQ x BK tile, then the online softmax: with m the running row max and l the
 * running sum of exp(s - m),
 *     m' = max(m, max_j s_j);  l' = l e^(m - m') + sum_j e^(s_j - m');  o' = o e^(m - m') + sum_j e^(s_j - m') v_j
 * and at the end out = o / l and the saved log-sum-exp lse = m + log l (B*NH*T floats in all).
 *
 * Backward, per (b, h), key block by key block, recomputing P from the saved lse:
 *     P_ij = exp(s_ij - lse_i);  D_i = dO_i . out_i  (= sum_j P_ij dP_ij)
 *     dV_j += sum_i P_ij dO_i;  dP_ij = dO_i . v_j;  dS_ij = P_ij (dP_ij - D_i)
 *     dq_i += (1/sqrt(hs)) sum_j dS_ij k_j;  dk_j += (1/sqrt(hs)) sum_i dS_ij q_i
 * dK and dV of a key block are summed in local tiles and added to dqkv once; all writes of a (b,h) stay in
 * its own channel slices, so (b,h) pairs run in parallel without races.
 *
 * Every tile product (S = Q K^T, O += P V, dP = dO V^T, dV += P^T dO, dK += dS^T Q, dQ += dS K) is one call
 * of tile_gemm, a register-blocked 4 x 32 (AVX-512) or 4 x 16 micro-kernel written with GCC vector extensions
 * (compiled for AVX-512, AVX2 and baseline by GK_HOT). Operands are packed into zero-padded tiles (rows to BQ/BK, head
 * size to a multiple of 32), so any T and head size work and the padding contributes exact zeros.
 * Memory per thread: a dozen 64 x hs tiles, independent of T.
 */
/* Let GCC fuse the micro-kernel's multiply-adds into FMAs (ISO C mode, -std=c11, turns contraction off).
 * Rounding differs from the reference by at most an ulp per product; the tests' tolerances cover it. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("fp-contract=fast")
#endif
#include "kern/kern.h"
#include "kern/cpu/cpu.h"
#include "kern/cpu/fast_math.h"
#include "core/core.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define BQ ((size_t)64)
#define BK ((size_t)64)
#define PAD32(x) (((x) + 31) & ~(size_t)31)

size_t kern_fast_attention_saved_floats(kern_backend *be, size_t B, size_t T, size_t C, size_t NH) {
    (void)C;
    return B * NH * T;
}

/* ---------------------------------------------------------------- the tile product
 * C[M,N] += A[M,K] B[K,N], all row-major with leading dims; M % 4 == 0, N % 32 == 0. One body, two widths: 4 rows
 * x 2 vectors of accumulators — 16-float vectors (4 x 32) where AVX-512 gives 32 registers, 8-float ones (4 x 16,
 * eight AVX2 registers plus the two B loads) elsewhere: the 16-float body compiled for AVX2 splits every vector in
 * two and spills (stop 26: a quarter of a GPT-2 LoRA step on a Zen 3). */
#define VLD(v, p) memcpy(&(v), (p), sizeof(v))
#define VST(p, v) memcpy((p), &(v), sizeof(v))
#define TILE_GEMM(NAME, VW)                                                                                     \
    typedef float NAME##_v __attribute__((vector_size(VW * sizeof(float))));                                        \
    GK_HOT static void NAME(size_t M, size_t N, size_t K, const float *A, size_t lda, const float *B, size_t ldb,    \
                            float *C, size_t ldc) {                                                                 \
        for (size_t i = 0; i < M; i += 4)                                                                           \
            for (size_t j = 0; j < N; j += 2 * VW) {                                                                \
                NAME##_v c00, c01, c10, c11, c20, c21, c30, c31;                                                    \
                float *c0 = C + i * ldc + j, *c1 = c0 + ldc, *c2 = c1 + ldc, *c3 = c2 + ldc;                        \
                VLD(c00, c0); VLD(c01, c0 + VW); VLD(c10, c1); VLD(c11, c1 + VW);                                   \
                VLD(c20, c2); VLD(c21, c2 + VW); VLD(c30, c3); VLD(c31, c3 + VW);                                   \
                const float *a0 = A + i * lda, *a1 = a0 + lda, *a2 = a1 + lda, *a3 = a2 + lda;                      \
                for (size_t k = 0; k < K; k++) {                                                                    \
                    NAME##_v b0, b1;                                                                                \
                    VLD(b0, B + k * ldb + j);                                                                       \
                    VLD(b1, B + k * ldb + j + VW);                                                                  \
                    float x0 = a0[k], x1 = a1[k], x2 = a2[k], x3 = a3[k];                                           \
                    c00 += x0 * b0; c01 += x0 * b1;                                                                 \
                    c10 += x1 * b0; c11 += x1 * b1;                                                                 \
                    c20 += x2 * b0; c21 += x2 * b1;                                                                 \
                    c30 += x3 * b0; c31 += x3 * b1;                                                                 \
                }                                                                                                   \
                VST(c0, c00); VST(c0 + VW, c01); VST(c1, c10); VST(c1 + VW, c11);                                   \
                VST(c2, c20); VST(c2 + VW, c21); VST(c3, c30); VST(c3 + VW, c31);                                   \
            }                                                                                                       \
    }
TILE_GEMM(tile_gemm16, 16)
TILE_GEMM(tile_gemm8, 8)

static void tile_gemm(size_t M, size_t N, size_t K, const float *A, size_t lda, const float *B, size_t ldb, float *C,
                      size_t ldc) {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    int wide = __builtin_cpu_supports("avx512f");   /* a load and a test of libgcc's CPU model */
#else
    int wide = 0;
#endif
    if (wide) tile_gemm16(M, N, K, A, lda, B, ldb, C, ldc);
    else tile_gemm8(M, N, K, A, lda, B, ldb, C, ldc);
}

/* dst[c][r] = src[r][c] for r < rows, c < cols (dst leading dim ldd, src lds). */
static void transpose(float *dst, size_t ldd, const float *src, size_t lds, size_t rows, size_t cols) {
    for (size_t r = 0; r < rows; r++)
        for (size_t c = 0; c < cols; c++) dst[c * ldd + r] = src[r * lds + c];
}

/* ---------------------------------------------------------------- forward */
typedef struct {
    float *Q;    /* [BQ][hp]  q / sqrt(hs) */
    float *KT;   /* [hs][BK]  keys, transposed */
    float *V;    /* [BK][hp]  values */
    float *S;    /* [BQ][BK]  scores, then probabilities */
    float *O;    /* [BQ][hp]  unnormalised output */
    float *M, *L;   /* [BQ] running max and sum */
} fwd_bufs;

GK_HOT static void softmax_rows(float *S, float *M, float *L, float *O, size_t nq, size_t i0, size_t j0, size_t nk,
                                size_t hp) {
    for (size_t r = 0; r < nq; r++) {
        size_t i = i0 + r;
        float *s = S + r * BK;
        size_t nv = i + 1 < j0 + nk ? i + 1 - j0 : nk;   /* keys j0 .. min(j0+nk, i+1) - 1; i >= j0 here */
        float mx = M[r];
        GK_SIMD_MAX(mx)
        for (size_t c = 0; c < nv; c++) mx = s[c] > mx ? s[c] : mx;
        float corr = kern_vexpf(M[r] - mx), sum = 0;
        GK_OMP(omp simd reduction(+:sum))
        for (size_t c = 0; c < nv; c++) { s[c] = kern_vexpf(s[c] - mx); sum += s[c]; }
        for (size_t c = nv; c < BK; c++) s[c] = 0;
        L[r] = L[r] * corr + sum;
        M[r] = mx;
        if (corr != 1.0f) {
            float *o = O + r * hp;
            GK_OMP(omp simd)
            for (size_t d = 0; d < hp; d++) o[d] *= corr;
        }
    }
}

static void fwd_block(float *out, float *lse, const float *qkv, size_t b, size_t h, size_t i0, size_t i1,
                      size_t T, size_t C, size_t NH, fwd_bufs *w) {
    size_t hs = C / NH, hp = PAD32(hs), C3 = 3 * C, nq = i1 - i0;
    float scale = 1.0f / sqrtf((float)hs);
    const float *base = qkv + b * T * C3 + h * hs;
    memset(w->Q, 0, BQ * hp * sizeof(float));
    memset(w->O, 0, BQ * hp * sizeof(float));
    for (size_t r = 0; r < nq; r++) {
        const float *q = base + (i0 + r) * C3;
        for (size_t d = 0; d < hs; d++) w->Q[r * hp + d] = q[d] * scale;
        w->M[r] = -INFINITY;
        w->L[r] = 0;
    }
    size_t mq = (nq + 3) & ~(size_t)3;   /* rows the micro-kernel touches */
    for (size_t j0 = 0; j0 < i1; j0 += BK) {
        size_t nk = (j0 + BK < i1 ? j0 + BK : i1) - j0;
        memset(w->KT, 0, hs * BK * sizeof(float));
        memset(w->V, 0, BK * hp * sizeof(float));
        for (size_t c = 0; c < nk; c++) {
            const float *k = base + (j0 + c) * C3 + C, *v = base + (j0 + c) * C3 + 2 * C;
            for (size_t d = 0; d < hs; d++) { w->KT[d * BK + c] = k[d]; w->V[c * hp + d] = v[d]; }
        }
        /* rows of this query block that see at least one key of this block: i >= j0 */
        size_t r0 = j0 > i0 ? j0 - i0 : 0;
        r0 &= ~(size_t)3;
        memset(w->S + r0 * BK, 0, (mq - r0) * BK * sizeof(float));
        tile_gemm(mq - r0, BK, hs, w->Q + r0 * hp, hp, w->KT, BK, w->S + r0 * BK, BK);
        size_t rs = j0 > i0 ? j0 - i0 : 0;   /* first row with i >= j0 */
        for (size_t r = r0; r < rs; r++) memset(w->S + r * BK, 0, BK * sizeof(float));
        softmax_rows(w->S + rs * BK, w->M + rs, w->L + rs, w->O + rs * hp, nq - rs, i0 + rs, j0, nk, hp);
        for (size_t r = nq; r < mq; r++) memset(w->S + r * BK, 0, BK * sizeof(float));
        tile_gemm(mq - r0, hp, BK, w->S + r0 * BK, BK, w->V, hp, w->O + r0 * hp, hp);
    }
    for (size_t r = 0; r < nq; r++) {
        size_t i = i0 + r;
        float inv = 1.0f / w->L[r], *o = out + (b * T + i) * C + h * hs;
        for (size_t d = 0; d < hs; d++) o[d] = w->O[r * hp + d] * inv;
        lse[(b * NH + h) * T + i] = w->M[r] + logf(w->L[r]);
    }
}

void kern_fast_attention_fwd(kern_backend *be, float *out, float *saved, const float *qkv, size_t B, size_t T, size_t C, size_t NH) {
    size_t hs = C / NH, hp = PAD32(hs), nqb = (T + BQ - 1) / BQ;
    GK_OMP(omp parallel)
    {
        fwd_bufs w;
        float *mem = gk_malloc((2 * BQ * hp + hs * BK + BK * hp + BQ * BK + 2 * BQ) * sizeof(float));
        w.Q = mem; w.O = w.Q + BQ * hp; w.KT = w.O + BQ * hp; w.V = w.KT + hs * BK; w.S = w.V + BK * hp;
        w.M = w.S + BQ * BK; w.L = w.M + BQ;
        GK_OMP(omp for collapse(3) schedule(dynamic))
        for (size_t b = 0; b < B; b++)
            for (size_t h = 0; h < NH; h++)
                for (size_t qb = 0; qb < nqb; qb++) {
                    size_t i0 = (nqb - 1 - qb) * BQ;   /* longest (last) blocks first: better balance */
                    size_t i1 = i0 + BQ < T ? i0 + BQ : T;
                    fwd_block(out, saved, qkv, b, h, i0, i1, T, C, NH, &w);
                }
        free(mem);
    }
}

/* ---------------------------------------------------------------- backward */
typedef struct {
    float *D;                 /* [T]       dO . out per query */
    float *Kb, *KT, *VT;      /* [BK][hp], [hs][BK], [hs][BK] */
    float *dK, *dV;           /* [BK][hp]  accumulated over query blocks */
    float *Q, *dO;            /* [BQ][hp]  q / sqrt(hs), dO */
    float *S, *dP;            /* [BQ][BK]  P, then dS; dP */
    float *PT, *dST;          /* [BK][BQ]  transposes */
    float *dQ;                /* [BQ][hp] */
} bwd_bufs;

/* P = exp(S - lse) (0 where masked or padded); dS = P (dP - D). */
GK_HOT static void bwd_probs(float *S, float *dP, const float *lse, const float *D, size_t nq, size_t i0, size_t j0,
                             size_t nk) {
    for (size_t r = 0; r < nq; r++) {
        size_t i = i0 + r;
        float *s = S + r * BK, *dp = dP + r * BK;
        size_t nv = i < j0 ? 0 : (i + 1 < j0 + nk ? i + 1 - j0 : nk);
        float li = lse[i], Di = D[i];
        GK_OMP(omp simd)
        for (size_t c = 0; c < nv; c++) {
            float p = kern_vexpf(s[c] - li);
            s[c] = p;
            dp[c] = p * (dp[c] - Di);
        }
        for (size_t c = nv; c < BK; c++) { s[c] = 0; dp[c] = 0; }
    }
}

static void bwd_head(float *dqkv, const float *dout, const float *qkv, const float *out, const float *lse,
                     size_t b, size_t h, size_t T, size_t C, size_t NH, bwd_bufs *w) {
    size_t hs = C / NH, hp = PAD32(hs), C3 = 3 * C;
    float scale = 1.0f / sqrtf((float)hs);
    const float *base = qkv + b * T * C3 + h * hs;
    float *dbase = dqkv + b * T * C3 + h * hs;
    const float *L = lse + (b * NH + h) * T;
    for (size_t i = 0; i < T; i++) {
        const float *go = dout + (b * T + i) * C + h * hs, *o = out + (b * T + i) * C + h * hs;
        float acc = 0;
        for (size_t d = 0; d < hs; d++) acc += go[d] * o[d];
        w->D[i] = acc;
    }
    for (size_t j0 = 0; j0 < T; j0 += BK) {
        size_t nk = (j0 + BK < T ? j0 + BK : T) - j0;
        memset(w->Kb, 0, BK * hp * sizeof(float));
        memset(w->KT, 0, hs * BK * sizeof(float));
        memset(w->VT, 0, hs * BK * sizeof(float));
        memset(w->dK, 0, BK * hp * sizeof(float));
        memset(w->dV, 0, BK * hp * sizeof(float));
        for (size_t c = 0; c < nk; c++) {
            const float *k = base + (j0 + c) * C3 + C, *v = base + (j0 + c) * C3 + 2 * C;
            for (size_t d = 0; d < hs; d++) { w->Kb[c * hp + d] = k[d]; w->KT[d * BK + c] = k[d]; w->VT[d * BK + c] = v[d]; }
        }
        for (size_t i0 = j0 - j0 % BQ; i0 < T; i0 += BQ) {   /* query blocks with some i >= j0 */
            size_t nq = (i0 + BQ < T ? i0 + BQ : T) - i0;
            size_t mq = (nq + 3) & ~(size_t)3;
            memset(w->Q, 0, BQ * hp * sizeof(float));
            memset(w->dO, 0, BQ * hp * sizeof(float));
            for (size_t r = 0; r < nq; r++) {
                const float *q = base + (i0 + r) * C3, *go = dout + (b * T + i0 + r) * C + h * hs;
                for (size_t d = 0; d < hs; d++) { w->Q[r * hp + d] = q[d] * scale; w->dO[r * hp + d] = go[d]; }
            }
            memset(w->S, 0, BQ * BK * sizeof(float));
            memset(w->dP, 0, BQ * BK * sizeof(float));
            tile_gemm(mq, BK, hs, w->Q, hp, w->KT, BK, w->S, BK);     /* S  = (q/sqrt(hs)) K^T */
            tile_gemm(mq, BK, hs, w->dO, hp, w->VT, BK, w->dP, BK);   /* dP = dO V^T */
            bwd_probs(w->S, w->dP, L, w->D, nq, i0, j0, nk);          /* S <- P, dP <- dS */
            transpose(w->PT, BQ, w->S, BK, BQ, BK);
            transpose(w->dST, BQ, w->dP, BK, BQ, BK);
            tile_gemm(BK, hp, BQ, w->PT, BQ, w->dO, hp, w->dV, hp);   /* dV += P^T dO */
            tile_gemm(BK, hp, BQ, w->dST, BQ, w->Q, hp, w->dK, hp);   /* dK += dS^T (q/sqrt(hs)) */
            memset(w->dQ, 0, BQ * hp * sizeof(float));
            tile_gemm(mq, hp, BK, w->dP, BK, w->Kb, hp, w->dQ, hp);   /* dQ  = dS K (times 1/sqrt(hs) below) */
            for (size_t r = 0; r < nq; r++) {
                float *dq = dbase + (i0 + r) * C3;
                for (size_t d = 0; d < hs; d++) dq[d] += scale * w->dQ[r * hp + d];
            }
        }
        for (size_t c = 0; c < nk; c++) {
            float *dk = dbase + (j0 + c) * C3 + C, *dv = dbase + (j0 + c) * C3 + 2 * C;
            for (size_t d = 0; d < hs; d++) { dk[d] += w->dK[c * hp + d]; dv[d] += w->dV[c * hp + d]; }
        }
    }
}

void kern_fast_attention_bwd(kern_backend *be, float *dqkv, const float *dout, const float *qkv, const float *out,
                             const float *saved, size_t B, size_t T, size_t C, size_t NH) {
    if (!dqkv) return;
    size_t hs = C / NH, hp = PAD32(hs);
    GK_OMP(omp parallel)
    {
        bwd_bufs w;
        size_t n = T + BK * hp + 2 * hs * BK + 2 * BK * hp + 2 * BQ * hp + 2 * BQ * BK + 2 * BK * BQ + BQ * hp;
        float *mem = gk_malloc(n * sizeof(float));
        w.D = mem; w.Kb = w.D + T; w.KT = w.Kb + BK * hp; w.VT = w.KT + hs * BK; w.dK = w.VT + hs * BK;
        w.dV = w.dK + BK * hp; w.Q = w.dV + BK * hp; w.dO = w.Q + BQ * hp; w.S = w.dO + BQ * hp;
        w.dP = w.S + BQ * BK; w.PT = w.dP + BQ * BK; w.dST = w.PT + BK * BQ; w.dQ = w.dST + BK * BQ;
        GK_OMP(omp for collapse(2) schedule(dynamic))
        for (size_t b = 0; b < B; b++)
            for (size_t h = 0; h < NH; h++) bwd_head(dqkv, dout, qkv, out, saved, b, h, T, C, NH, &w);
        free(mem);
    }
}
