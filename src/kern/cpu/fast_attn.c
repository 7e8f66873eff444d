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
 * dK and dV of a key block are summed in a local tile and added to dqkv once; all writes of a (b,h) stay in
 * its own channel slices, so (b,h) pairs run in parallel without races.
 * Memory per thread: a few BK x hs tiles, independent of T.
 */
#include "kern/kern.h"
#include "kern/cpu/cpu.h"
#include "kern/cpu/fast_math.h"
#include "core/core.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define BQ ((size_t)64)
#define BK ((size_t)64)

size_t kern_fast_attention_saved_floats(size_t B, size_t T, size_t C, size_t NH) {
    (void)C;
    return B * NH * T;
}

/* One (b, h, query block [i0, i1)). buf holds BQ*hs (Q) + hs*BK (K^T) + BK (scores) + BQ*hs (O) + 2 BQ. */
GK_HOT static void fwd_block(float *out, float *lse, const float *qkv, size_t b, size_t h, size_t i0, size_t i1,
                             size_t T, size_t C, size_t NH, float *buf) {
    size_t hs = C / NH, C3 = 3 * C, nq = i1 - i0;
    float scale = 1.0f / sqrtf((float)hs);
    float *Q = buf, *KT = Q + BQ * hs, *s = KT + hs * BK, *O = s + BK, *M = O + BQ * hs, *L = M + BQ;
    const float *base = qkv + b * T * C3 + h * hs;
    for (size_t r = 0; r < nq; r++) {
        const float *q = base + (i0 + r) * C3;
        for (size_t d = 0; d < hs; d++) { Q[r * hs + d] = q[d] * scale; O[r * hs + d] = 0; }
        M[r] = -INFINITY;
        L[r] = 0;
    }
    for (size_t j0 = 0; j0 < i1; j0 += BK) {
        size_t j1 = j0 + BK < i1 ? j0 + BK : i1;
        for (size_t c = 0; c < j1 - j0; c++) {
            const float *k = base + (j0 + c) * C3 + C;
            for (size_t d = 0; d < hs; d++) KT[d * BK + c] = k[d];
        }
        for (size_t r = 0; r < nq; r++) {
            size_t i = i0 + r;
            if (i < j0) continue;
            size_t nv = (i + 1 < j1 ? i + 1 : j1) - j0;   /* keys j0 .. min(j1, i+1) - 1 */
            const float *q = Q + r * hs;
            for (size_t c = 0; c < nv; c++) s[c] = 0;
            for (size_t d = 0; d < hs; d++) {
                float qd = q[d];
                const float *kt = KT + d * BK;
                GK_OMP(omp simd)
                for (size_t c = 0; c < nv; c++) s[c] += qd * kt[c];
            }
            float mx = M[r];
            GK_OMP(omp simd reduction(max:mx))
            for (size_t c = 0; c < nv; c++) mx = s[c] > mx ? s[c] : mx;
            float corr = gk_vexpf(M[r] - mx), sum = 0;
            GK_OMP(omp simd reduction(+:sum))
            for (size_t c = 0; c < nv; c++) { s[c] = gk_vexpf(s[c] - mx); sum += s[c]; }
            L[r] = L[r] * corr + sum;
            M[r] = mx;
            float *o = O + r * hs;
            if (corr != 1.0f) {
                GK_OMP(omp simd)
                for (size_t d = 0; d < hs; d++) o[d] *= corr;
            }
            for (size_t c = 0; c < nv; c++) {
                float p = s[c];
                const float *v = base + (j0 + c) * C3 + 2 * C;
                GK_OMP(omp simd)
                for (size_t d = 0; d < hs; d++) o[d] += p * v[d];
            }
        }
    }
    for (size_t r = 0; r < nq; r++) {
        size_t i = i0 + r;
        float inv = 1.0f / L[r], *o = out + (b * T + i) * C + h * hs;
        for (size_t d = 0; d < hs; d++) o[d] = O[r * hs + d] * inv;
        lse[(b * NH + h) * T + i] = M[r] + logf(L[r]);
    }
}

void kern_fast_attention_fwd(float *out, float *saved, const float *qkv, size_t B, size_t T, size_t C, size_t NH) {
    size_t hs = C / NH, nqb = (T + BQ - 1) / BQ;
    GK_OMP(omp parallel)
    {
        float *buf = gk_malloc((2 * BQ * hs + hs * BK + BK + 2 * BQ) * sizeof(float));
        GK_OMP(omp for collapse(3) schedule(dynamic))
        for (size_t b = 0; b < B; b++)
            for (size_t h = 0; h < NH; h++)
                for (size_t qb = 0; qb < nqb; qb++) {
                    size_t i0 = (nqb - 1 - qb) * BQ;   /* longest (last) blocks first: better balance */
                    size_t i1 = i0 + BQ < T ? i0 + BQ : T;
                    fwd_block(out, saved, qkv, b, h, i0, i1, T, C, NH, buf);
                }
        free(buf);
    }
}

/* One (b, h). buf holds T (D) + 3 * hs*BK (K^T, V^T, K) + 2 * BK*hs (dK, dV) + 3 BK (s/p, dp, ds). */
GK_HOT static void bwd_head(float *dqkv, const float *dout, const float *qkv, const float *out, const float *lse,
                            size_t b, size_t h, size_t T, size_t C, size_t NH, float *buf) {
    size_t hs = C / NH, C3 = 3 * C;
    float scale = 1.0f / sqrtf((float)hs);
    float *D = buf, *KT = D + T, *VT = KT + hs * BK, *Kb = VT + hs * BK, *dK = Kb + BK * hs, *dV = dK + BK * hs;
    float *p = dV + BK * hs, *dp = p + BK;
    const float *base = qkv + b * T * C3 + h * hs;
    float *dbase = dqkv + b * T * C3 + h * hs;
    const float *L = lse + (b * NH + h) * T;
    for (size_t i = 0; i < T; i++) {
        const float *go = dout + (b * T + i) * C + h * hs, *o = out + (b * T + i) * C + h * hs;
        float acc = 0;
        GK_OMP(omp simd reduction(+:acc))
        for (size_t d = 0; d < hs; d++) acc += go[d] * o[d];
        D[i] = acc;
    }
    for (size_t j0 = 0; j0 < T; j0 += BK) {
        size_t j1 = j0 + BK < T ? j0 + BK : T, nk = j1 - j0;
        for (size_t c = 0; c < nk; c++) {
            const float *k = base + (j0 + c) * C3 + C, *v = base + (j0 + c) * C3 + 2 * C;
            for (size_t d = 0; d < hs; d++) {
                KT[d * BK + c] = k[d];
                VT[d * BK + c] = v[d];
                Kb[c * hs + d] = k[d];
            }
        }
        memset(dK, 0, nk * hs * sizeof(float));
        memset(dV, 0, nk * hs * sizeof(float));
        for (size_t i = j0; i < T; i++) {
            size_t nv = (i + 1 < j1 ? i + 1 : j1) - j0;
            const float *q = base + i * C3, *go = dout + (b * T + i) * C + h * hs;
            for (size_t c = 0; c < nv; c++) { p[c] = 0; dp[c] = 0; }
            for (size_t d = 0; d < hs; d++) {   /* s = q K^T, dp = dO V^T */
                float qd = q[d] * scale, gd = go[d];
                const float *kt = KT + d * BK, *vt = VT + d * BK;
                GK_OMP(omp simd)
                for (size_t c = 0; c < nv; c++) { p[c] += qd * kt[c]; dp[c] += gd * vt[c]; }
            }
            float li = L[i], Di = D[i];
            GK_OMP(omp simd)
            for (size_t c = 0; c < nv; c++) {
                float pc = gk_vexpf(p[c] - li);
                p[c] = pc;
                dp[c] = pc * (dp[c] - Di) * scale;   /* dS, with the 1/sqrt(hs) of dq and dk folded in */
            }
            float *dq = dbase + i * C3;
            for (size_t c = 0; c < nv; c++) {
                float pc = p[c], ds = dp[c];
                float *dv = dV + c * hs, *dk = dK + c * hs;
                const float *k = Kb + c * hs;
                GK_OMP(omp simd)
                for (size_t d = 0; d < hs; d++) {
                    dv[d] += pc * go[d];
                    dk[d] += ds * q[d];
                    dq[d] += ds * k[d];
                }
            }
        }
        for (size_t c = 0; c < nk; c++) {
            float *dk = dbase + (j0 + c) * C3 + C, *dv = dbase + (j0 + c) * C3 + 2 * C;
            for (size_t d = 0; d < hs; d++) { dk[d] += dK[c * hs + d]; dv[d] += dV[c * hs + d]; }
        }
    }
}

void kern_fast_attention_bwd(float *dqkv, const float *dout, const float *qkv, const float *out,
                             const float *saved, size_t B, size_t T, size_t C, size_t NH) {
    if (!dqkv) return;
    size_t hs = C / NH;
    GK_OMP(omp parallel)
    {
        float *buf = gk_malloc((T + 3 * hs * BK + 2 * BK * hs + 3 * BK) * sizeof(float));
        GK_OMP(omp for collapse(2) schedule(dynamic))
        for (size_t b = 0; b < B; b++)
            for (size_t h = 0; h < NH; h++) bwd_head(dqkv, dout, qkv, out, saved, b, h, T, C, NH, buf);
        free(buf);
    }
}
