/* fast.c: the fast CPU paths (the "cpu" backend) for everything except attention (fast_attn.c).
 *
 *  - matmuls: one GEMM per product on the backend's library (gemm_pick.c: OpenBLAS's cblas_sgemm, oneDNN in
 *    fast_dnnl.c, or the builtin reference loops); bias folded into the GEMM; dbias by per-thread partial
 *    column sums. With KERN_PREC_BF16 the products run in bf16 with fp32 accumulation (oneDNN).
 *  - layernorm, GELU, cross-entropy, AdamW, elementwise: vectorised workers (GK_HOT, see fast_math.h) with
 *    an exp that vectorises; the layernorm backward reduces dw/db through per-thread partial sums instead
 *    of walking columns; the cross-entropy does three passes over a row (max, exp+sum, scale) and writes the
 *    exps straight into dlogits.
 * Same math as the reference (ref_impl.h); tests/test_kern_fast.c holds every op to it at stated tolerances.
 */
#include "kern/kern.h"
#include "kern/cpu/cpu.h"
#include "kern/cpu/fast_math.h"
#include "core/core.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#if defined(__x86_64__) && defined(__GNUC__)
#include <cpuid.h>
#endif

/* ---------------------------------------------------------------- backend description */
int kern_bf16_available(void) {
#ifdef GK_HAVE_DNNL
    return kern_cpu_has_bf16() && kern_cpu_dnnl_available();
#else
    return 0;
#endif
}

void kern_cpu_name(kern_backend *be) {
    const char *prec = be->prec == KERN_PREC_BF16 ? ", bf16 matmuls" : "";
    const char *core = kern_cpu_openblas_core();
    if (be->gemm == KERN_GEMM_ONEDNN && core)   /* say which OpenBLAS was passed over */
        snprintf(be->name, sizeof be->name, "cpu-fast(onednn%s, %d threads; openblas core %s not used)", prec,
                 gk_num_threads(), core);
    else if (be->gemm == KERN_GEMM_ONEDNN)
        snprintf(be->name, sizeof be->name, "cpu-fast(onednn%s, %d threads)", prec, gk_num_threads());
    else if (be->gemm == KERN_GEMM_OPENBLAS)
        snprintf(be->name, sizeof be->name, "cpu-fast(openblas %s%s, %d threads)", core, prec, gk_num_threads());
    else snprintf(be->name, sizeof be->name, "cpu-fast(no blas%s, %d threads)", prec, gk_num_threads());
}

static int nthreads(void) {
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}
static int thread_id(void) {
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

/* ---------------------------------------------------------------- column sums
 * acc[j] += sum_{n in [n0,n1)} x[n*ld + j], j < M. */
GK_HOT static void colsum_rows(float *acc, const float *x, size_t n0, size_t n1, size_t M, size_t ld) {
    for (size_t n = n0; n < n1; n++) {
        const float *r = x + n * ld;
        GK_OMP(omp simd)
        for (size_t j = 0; j < M; j++) acc[j] += r[j];
    }
}

/* out[j] += sum_n x[n, j] over N rows of width M: per-thread partials over row ranges, then a reduction
 * over columns (each thread owns a column range), so no two threads write the same element. */
static void colsum_add(float *out, const float *x, size_t N, size_t M) {
    int nt = nthreads();
    if (nt == 1 || N < 64) { colsum_rows(out, x, 0, N, M, M); return; }
    float *part = calloc((size_t)nt * M, sizeof(float));
    GK_CHECK(part, "out of memory");
    GK_OMP(omp parallel num_threads(nt))
    {
        int t = thread_id();
        size_t n0 = N * (size_t)t / (size_t)nt, n1 = N * (size_t)(t + 1) / (size_t)nt;
        colsum_rows(part + (size_t)t * M, x, n0, n1, M, M);
        GK_OMP(omp barrier)
        size_t j0 = M * (size_t)t / (size_t)nt, j1 = M * (size_t)(t + 1) / (size_t)nt;
        for (int k = 0; k < nt; k++)
            for (size_t j = j0; j < j1; j++) out[j] += part[(size_t)k * M + j];
    }
    free(part);
}

/* C[M,N] (+)= op(A) op(B) (+ bias) on be's library and precision. Returns 0 for the builtin loops (caller uses
 * the reference). bf16 products always run on oneDNN, whatever be's fp32 library. */
static int gemm(kern_backend *be, int ta, int tb, size_t M, size_t N, size_t K, const float *A, size_t lda,
                const float *B, size_t ldb, const float *bias, int acc, float *C, size_t ldc) {
    int bf16 = be->prec == KERN_PREC_BF16;
    return kern_cpu_gemm_lib(bf16 ? KERN_GEMM_ONEDNN : be->gemm, bf16, be->shadow, ta, tb, M, N, K, A, lda, B, ldb,
                             bias, acc, C, ldc);
}

/* ---------------------------------------------------------------- matmul */
void kern_fast_matmul_fwd(kern_backend *be, float *out, const float *inp, const float *w, const float *bias,
                          size_t N, size_t C, size_t OC, int wlayout) {
    if (N == 0 || OC == 0) return;
    int tb = wlayout == KERN_W_OUT_IN;
    if (!gemm(be, 0, tb, N, OC, C, inp, C, w, tb ? C : OC, bias, 0, out, OC))
        kern_ref_matmul_fwd(be, out, inp, w, bias, N, C, OC, wlayout);
}

void kern_fast_matmul_bwd(kern_backend *be, float *dinp, float *dw, float *dbias, const float *dout, const float *inp,
                          const float *w, size_t N, size_t C, size_t OC, int wlayout) {
    if (N == 0 || OC == 0) return;
    if (be->gemm == KERN_GEMM_BUILTIN && be->prec != KERN_PREC_BF16) {
        kern_ref_matmul_bwd(be, dinp, dw, dbias, dout, inp, w, N, C, OC, wlayout);
        return;
    }
    if (dbias) colsum_add(dbias, dout, N, OC);
    if (C == 0) return;
    if (dinp) {   /* dinp[N,C] += dout[N,OC] @ W^T */
        if (wlayout == KERN_W_IN_OUT) gemm(be, 0, 1, N, C, OC, dout, OC, w, OC, NULL, 1, dinp, C);
        else                          gemm(be, 0, 0, N, C, OC, dout, OC, w, C, NULL, 1, dinp, C);
    }
    if (dw) {
        if (wlayout == KERN_W_IN_OUT) gemm(be, 1, 0, C, OC, N, inp, C, dout, OC, NULL, 1, dw, OC);   /* dw[C,OC] += inp^T dout */
        else                          gemm(be, 1, 0, OC, C, N, dout, OC, inp, C, NULL, 1, dw, C);    /* dw[OC,C] += dout^T inp */
    }
}

/* ---------------------------------------------------------------- bf16 conversion */
GK_HOT static void bf16_chunk(uint16_t *dst, const float *src, size_t n) {
    GK_OMP(omp simd)
    for (size_t i = 0; i < n; i++) {
        union { float f; uint32_t u; } v;
        v.f = src[i];
        uint32_t r = v.u + 0x7fffu + ((v.u >> 16) & 1u);   /* round to nearest even (finite inputs) */
        dst[i] = (uint16_t)(r >> 16);
    }
}
void kern_f32_to_bf16_pair(uint16_t *da, const float *a, size_t na, uint16_t *db, const float *b, size_t nb) {
    const size_t CH = 16384;
    size_t ca = (na + CH - 1) / CH, cb = (nb + CH - 1) / CH;
    GK_OMP(omp parallel for schedule(static))
    for (size_t k = 0; k < ca + cb; k++) {
        if (k < ca) { size_t i = k * CH; bf16_chunk(da + i, a + i, i + CH < na ? CH : na - i); }
        else { size_t i = (k - ca) * CH; bf16_chunk(db + i, b + i, i + CH < nb ? CH : nb - i); }
    }
}

int kern_cpu_has_bf16(void) {
#if defined(__x86_64__) && defined(__GNUC__)
    unsigned a, b, c, d;
    if (__get_cpuid_max(0, NULL) < 7) return 0;
    __cpuid_count(7, 0, a, b, c, d);
    int amx_bf16 = (d >> 22) & 1;
    __cpuid_count(7, 1, a, b, c, d);
    int avx512_bf16 = (a >> 5) & 1;
    return amx_bf16 || avx512_bf16;
#else
    return 0;
#endif
}

/* ---------------------------------------------------------------- layernorm */
GK_HOT static void ln_fwd_rows(float *out, float *mean, float *rstd, const float *inp, const float *w,
                               const float *b, size_t i0, size_t i1, size_t C, float eps) {
    for (size_t i = i0; i < i1; i++) {
        const float *x = inp + i * C;
        float m = 0;
        GK_OMP(omp simd reduction(+:m))
        for (size_t c = 0; c < C; c++) m += x[c];
        m /= (float)C;
        float v = 0;
        GK_OMP(omp simd reduction(+:v))
        for (size_t c = 0; c < C; c++) { float d = x[c] - m; v += d * d; }
        v /= (float)C;
        float s = 1.0f / sqrtf(v + eps);
        float *o = out + i * C;
        GK_OMP(omp simd)
        for (size_t c = 0; c < C; c++) o[c] = (x[c] - m) * s * w[c] + b[c];
        mean[i] = m;
        rstd[i] = s;
    }
}

void kern_fast_layernorm_fwd(kern_backend *be, float *out, float *mean, float *rstd, const float *inp, const float *w,
                             const float *b, size_t N, size_t C, float eps) {
    const size_t R = 16;   /* rows per task */
    GK_OMP(omp parallel for schedule(static))
    for (size_t i0 = 0; i0 < N; i0 += R) ln_fwd_rows(out, mean, rstd, inp, w, b, i0, i0 + R < N ? i0 + R : N, C, eps);
}

/* Rows [i0,i1): dinp += rstd (g - mean(g) - xhat mean(g xhat)), g = dout w;  pdw += dout xhat; pdb += dout. */
GK_HOT static void ln_bwd_rows(float *dinp, float *pdw, float *pdb, const float *dout, const float *inp,
                               const float *w, const float *mean, const float *rstd, size_t i0, size_t i1, size_t C) {
    for (size_t i = i0; i < i1; i++) {
        const float *x = inp + i * C, *go = dout + i * C;
        float m = mean[i], s = rstd[i];
        if (dinp) {
            float gm = 0, gxm = 0;
            GK_OMP(omp simd reduction(+:gm, gxm))
            for (size_t c = 0; c < C; c++) {
                float g = go[c] * w[c];
                gm += g;
                gxm += g * (x[c] - m) * s;
            }
            gm /= (float)C;
            gxm /= (float)C;
            float *dx = dinp + i * C;
            GK_OMP(omp simd)
            for (size_t c = 0; c < C; c++) dx[c] += s * (go[c] * w[c] - gm - (x[c] - m) * s * gxm);
        }
        if (pdw) {
            GK_OMP(omp simd)
            for (size_t c = 0; c < C; c++) pdw[c] += go[c] * (x[c] - m) * s;
        }
        if (pdb) {
            GK_OMP(omp simd)
            for (size_t c = 0; c < C; c++) pdb[c] += go[c];
        }
    }
}

void kern_fast_layernorm_bwd(kern_backend *be, float *dinp, float *dw, float *db, const float *dout, const float *inp,
                             const float *w, const float *mean, const float *rstd, size_t N, size_t C) {
    if (!dinp && !dw && !db) return;
    int nt = nthreads();
    float *part = NULL;
    if (dw || db) { part = calloc((size_t)nt * 2 * C + 1, sizeof(float)); GK_CHECK(part, "out of memory"); }
    GK_OMP(omp parallel num_threads(nt))
    {
        int t = thread_id();
        size_t i0 = N * (size_t)t / (size_t)nt, i1 = N * (size_t)(t + 1) / (size_t)nt;
        float *pdw = dw ? part + (size_t)t * 2 * C : NULL, *pdb = db ? part + (size_t)t * 2 * C + C : NULL;
        ln_bwd_rows(dinp, pdw, pdb, dout, inp, w, mean, rstd, i0, i1, C);
        if (part) {
            GK_OMP(omp barrier)
            size_t c0 = C * (size_t)t / (size_t)nt, c1 = C * (size_t)(t + 1) / (size_t)nt;
            for (int k = 0; k < nt; k++)
                for (size_t c = c0; c < c1; c++) {
                    if (dw) dw[c] += part[(size_t)k * 2 * C + c];
                    if (db) db[c] += part[(size_t)k * 2 * C + C + c];
                }
        }
    }
    free(part);
}

/* ---------------------------------------------------------------- GELU
 * 0.5 x (1 + tanh u) = x sigmoid(2u), u = sqrt(2/pi)(x + 0.044715 x^3); with s = sigmoid(2u):
 * gelu'(x) = s + 2 x s (1 - s) du/dx = s (1 + 2 x e s du/dx), e = exp(-2u), since 1 - s = e s.
 * The sigmoid form avoids the cancellations of 1 + tanh and 1 - tanh^2 and vectorises. */
#define GELU_K 0.7978845608028654f
GK_HOT static void gelu_fwd_chunk(float *out, const float *inp, size_t n) {
    GK_OMP(omp simd)
    for (size_t i = 0; i < n; i++) {
        float x = inp[i];
        float u = GELU_K * (x + 0.044715f * x * x * x);
        out[i] = x / (1.0f + kern_vexpf(-2.0f * u));
    }
}
GK_HOT static void gelu_bwd_chunk(float *dinp, const float *inp, const float *dout, size_t n) {
    GK_OMP(omp simd)
    for (size_t i = 0; i < n; i++) {
        float x = inp[i];
        float u = GELU_K * (x + 0.044715f * x * x * x);
        float e = kern_vexpf(-2.0f * u), s = 1.0f / (1.0f + e);   /* 1 - s = e s, without cancellation */
        float du = GELU_K * (1.0f + 3.0f * 0.044715f * x * x);
        float es = e * s;
        dinp[i] += s * (1.0f + 2.0f * x * es * du) * dout[i];
    }
}
#define CHUNK ((size_t)8192)
void kern_fast_gelu_fwd(kern_backend *be, float *out, const float *inp, size_t n) {
    GK_OMP(omp parallel for schedule(static) if (n > CHUNK))   /* one chunk (a decode step's rows): no thread team */
    for (size_t i = 0; i < n; i += CHUNK) gelu_fwd_chunk(out + i, inp + i, i + CHUNK < n ? CHUNK : n - i);
}
void kern_fast_gelu_bwd(kern_backend *be, float *dinp, const float *inp, const float *dout, size_t n) {
    if (!dinp) return;
    GK_OMP(omp parallel for schedule(static))
    for (size_t i = 0; i < n; i += CHUNK) gelu_bwd_chunk(dinp + i, inp + i, dout + i, i + CHUNK < n ? CHUNK : n - i);
}

/* ---------------------------------------------------------------- SwiGLU
 * The reference's math (silu(g) = g sig(g), sig = 1 / (1 + exp(-g))) with kern_vexpf, vectorised: the scalar
 * expf was a few percent of a LLaMA LoRA step. */
GK_HOT static void swiglu_fwd_chunk(float *out, const float *gate, const float *up, size_t n) {
    GK_OMP(omp simd)
    for (size_t i = 0; i < n; i++) {
        float g = gate[i];
        out[i] = g / (1.0f + kern_vexpf(-g)) * up[i];
    }
}
GK_HOT static void swiglu_bwd_chunk(float *dgate, float *dup, const float *dout, const float *gate, const float *up,
                                    size_t n) {
    if (dgate && dup) {
        GK_OMP(omp simd)
        for (size_t i = 0; i < n; i++) {
            float g = gate[i], sg = 1.0f / (1.0f + kern_vexpf(-g));
            dgate[i] += dout[i] * up[i] * sg * (1.0f + g * (1.0f - sg));
            dup[i] += dout[i] * g * sg;
        }
    } else if (dgate) {
        GK_OMP(omp simd)
        for (size_t i = 0; i < n; i++) {
            float g = gate[i], sg = 1.0f / (1.0f + kern_vexpf(-g));
            dgate[i] += dout[i] * up[i] * sg * (1.0f + g * (1.0f - sg));
        }
    } else {
        GK_OMP(omp simd)
        for (size_t i = 0; i < n; i++) {
            float g = gate[i], sg = 1.0f / (1.0f + kern_vexpf(-g));
            dup[i] += dout[i] * g * sg;
        }
    }
}
void kern_fast_swiglu_fwd(kern_backend *be, float *out, const float *gate, const float *up, size_t n) {
    GK_OMP(omp parallel for schedule(static) if (n > CHUNK))   /* a decode step's row or two: no thread team */
    for (size_t i = 0; i < n; i += CHUNK) swiglu_fwd_chunk(out + i, gate + i, up + i, i + CHUNK < n ? CHUNK : n - i);
}
void kern_fast_swiglu_bwd(kern_backend *be, float *dgate, float *dup, const float *dout, const float *gate, const float *up,
                          size_t n) {
    if (!dgate && !dup) return;
    GK_OMP(omp parallel for schedule(static))
    for (size_t i = 0; i < n; i += CHUNK)
        swiglu_bwd_chunk(dgate ? dgate + i : NULL, dup ? dup + i : NULL, dout + i, gate + i, up + i,
                         i + CHUNK < n ? CHUNK : n - i);
}

/* ---------------------------------------------------------------- elementwise */
GK_HOT static void add_chunk(float *out, const float *a, const float *b, size_t n) {
    GK_OMP(omp simd)
    for (size_t i = 0; i < n; i++) out[i] = a[i] + b[i];
}
GK_HOT static void axpy_chunk(float *y, float alpha, const float *x, size_t n) {
    GK_OMP(omp simd)
    for (size_t i = 0; i < n; i++) y[i] += alpha * x[i];
}
GK_HOT static void scale_chunk(float *x, float s, size_t n) {
    GK_OMP(omp simd)
    for (size_t i = 0; i < n; i++) x[i] *= s;
}
GK_HOT static double sumsq_chunk(const float *x, size_t n) {
    double s = 0;
    GK_OMP(omp simd reduction(+:s))
    for (size_t i = 0; i < n; i++) s += (double)x[i] * x[i];
    return s;
}
void kern_fast_add(kern_backend *be, float *out, const float *a, const float *b, size_t n) {
    GK_OMP(omp parallel for schedule(static))
    for (size_t i = 0; i < n; i += CHUNK) add_chunk(out + i, a + i, b + i, i + CHUNK < n ? CHUNK : n - i);
}
void kern_fast_axpy(kern_backend *be, float *y, float alpha, const float *x, size_t n) {
    GK_OMP(omp parallel for schedule(static))
    for (size_t i = 0; i < n; i += CHUNK) axpy_chunk(y + i, alpha, x + i, i + CHUNK < n ? CHUNK : n - i);
}
void kern_fast_scale(kern_backend *be, float *x, float s, size_t n) {
    GK_OMP(omp parallel for schedule(static))
    for (size_t i = 0; i < n; i += CHUNK) scale_chunk(x + i, s, i + CHUNK < n ? CHUNK : n - i);
}
double kern_fast_sumsq(kern_backend *be, const float *x, size_t n) {
    double s = 0;
    GK_OMP(omp parallel for reduction(+:s) schedule(static))
    for (size_t i = 0; i < n; i += CHUNK) s += sumsq_chunk(x + i, i + CHUNK < n ? CHUNK : n - i);
    return s;
}

/* AdamW, as the reference (same float operations per element, so the results are bit-identical). Vectorised
 * (omp simd; -fno-math-errno lets sqrtf be vsqrtps): scalar, its divisions and square root cost more than the
 * memory traffic for models that sit in cache (PPO's minibatch steps measured it at 12% of an iteration). */
GK_HOT static void adamw_chunk(float *restrict p, const float *restrict g, float *restrict m, float *restrict v,
                               size_t n, float lr, float b1, float b2, float eps, float wd, float bc1, float bc2,
                               float gscale) {
    GK_OMP(omp simd)
    for (size_t i = 0; i < n; i++) {
        float gi = g[i] * gscale;
        float mi = b1 * m[i] + (1 - b1) * gi;
        float vi = b2 * v[i] + (1 - b2) * gi * gi;
        m[i] = mi;
        v[i] = vi;
        p[i] -= lr * ((mi / bc1) / (sqrtf(vi / bc2) + eps) + wd * p[i]);
    }
}
void kern_fast_adamw(kern_backend *be, float *p, const float *g, float *m, float *v, size_t n, float lr, float b1, float b2,
                     float eps, float wd, float bc1, float bc2, float gscale) {
    GK_OMP(omp parallel for schedule(static))
    for (size_t i = 0; i < n; i += CHUNK)
        adamw_chunk(p + i, g + i, m + i, v + i, i + CHUNK < n ? CHUNK : n - i, lr, b1, b2, eps, wd, bc1, bc2, gscale);
#ifdef GK_HAVE_DNNL
    if (be->shadow) kern_cpu_shadow_written(be->shadow, p, n);   /* a bf16 copy of these weights is now stale */
#endif
}

/* ---------------------------------------------------------------- host rows (kern.h) */
#define ROW_BLOCK 1024
GK_HOT static float row_max(const float *x, size_t n) {
    float mx = -INFINITY;
    GK_SIMD_MAX(mx)
    for (size_t i = 0; i < n; i++) mx = x[i] > mx ? x[i] : mx;
    return mx;
}
GK_HOT static float row_exp_block(float *out, const float *x, size_t n, float mx, float scale) {
    float sum = 0;
    if (out) {
        GK_OMP(omp simd reduction(+:sum))
        for (size_t i = 0; i < n; i++) { float e = kern_vexpf((x[i] - mx) * scale); out[i] = e; sum += e; }
    } else {
        GK_OMP(omp simd reduction(+:sum))
        for (size_t i = 0; i < n; i++) sum += kern_vexpf((x[i] - mx) * scale);
    }
    return sum;
}
GK_HOT static float row_sum_block(const float *x, size_t n) {
    float sum = 0;
    GK_OMP(omp simd reduction(+:sum))
    for (size_t i = 0; i < n; i++) sum += x[i];
    return sum;
}
GK_HOT static void row_scale(float *x, size_t n, float s) {
    GK_OMP(omp simd)
    for (size_t i = 0; i < n; i++) x[i] *= s;
}
float kern_row_max(const float *x, size_t n) { return row_max(x, n); }
double kern_row_exp(float *out, const float *x, size_t n, float mx, float scale) {
    double z = 0;
    for (size_t i = 0; i < n; i += ROW_BLOCK)
        z += row_exp_block(out ? out + i : NULL, x + i, n - i < ROW_BLOCK ? n - i : ROW_BLOCK, mx, scale);
    return z;
}
double kern_row_expsum(const float *x, size_t n, float mx) { return kern_row_exp(NULL, x, n, mx, 1.0f); }
void kern_row_scale(float *x, size_t n, float s) { row_scale(x, n, s); }
double kern_row_sum(const float *x, size_t n) {
    double z = 0;
    for (size_t i = 0; i < n; i += ROW_BLOCK) z += row_sum_block(x + i, n - i < ROW_BLOCK ? n - i : ROW_BLOCK);
    return z;
}

/* ---------------------------------------------------------------- cross-entropy
 * One row: mx = max; e_v = exp(l_v - mx) (written into dlogits when wanted); lse = mx + log sum e;
 * dlogits = dloss (e / sum - onehot). loss is taken before dlogits (which may alias logits) is written. */
GK_HOT static void xent_row(float *loss, float *dl, const float *l, int32_t tg, const float *dloss, size_t V) {
    float mx = -INFINITY;
    GK_SIMD_MAX(mx)
    for (size_t v = 0; v < V; v++) mx = l[v] > mx ? l[v] : mx;
    float lt = tg >= 0 ? l[tg] : 0;
    float sum = 0;
    if (dl && tg >= 0) {
        GK_OMP(omp simd reduction(+:sum))
        for (size_t v = 0; v < V; v++) { float e = kern_vexpf(l[v] - mx); dl[v] = e; sum += e; }
    } else {
        GK_OMP(omp simd reduction(+:sum))
        for (size_t v = 0; v < V; v++) sum += kern_vexpf(l[v] - mx);
    }
    float lse = mx + logf(sum);
    *loss = tg < 0 ? 0 : lse - lt;
    if (!dl) return;
    if (tg < 0) { memset(dl, 0, V * sizeof(float)); return; }
    float k = *dloss / sum;
    GK_OMP(omp simd)
    for (size_t v = 0; v < V; v++) dl[v] *= k;
    dl[tg] -= *dloss;
}

void kern_fast_xent_fwd_bwd(kern_backend *be, float *loss, float *dlogits, const float *logits, const int32_t *targets,
                            const float *dloss, size_t N, size_t V) {
    GK_OMP(omp parallel for schedule(static))
    for (size_t i = 0; i < N; i++) {
        int32_t tg = targets[i];
        GK_CHECK(tg < 0 || (size_t)tg < V, "xent: target %d out of range [0,%zu) at row %zu", (int)tg, V, i);
        xent_row(loss + i, dloss ? dlogits + i * V : NULL, logits + i * V, tg, dloss ? dloss + i : NULL, V);
    }
}
