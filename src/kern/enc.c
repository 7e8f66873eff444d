/* enc.c: the encoder ops of kern_enc.h (see there for the math). Host-memory implementations shared by both
 * CPU kinds: one readable version each, OpenMP-parallel, written so that the compiler vectorises the inner loops
 * (GK_HOT: AVX-512 / AVX2 / baseline clones picked at load); tests/test_embed.c checks attention and GELU against
 * double-precision loops. The vector-search dot products also have an AVX2+FMA path (runtime-detected), tested
 * against the portable loops. */
#include "kern/kern_enc.h"
#include "kern/cpu/cpu.h"
#include "kern/cpu/fast_math.h"
#include <math.h>
#include <string.h>
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define ENC_X86 1
#endif

static void enc_check_host(const kern_backend *be) {
    GK_CHECK(be->opts.kind == KERN_KIND_CPU || be->opts.kind == KERN_KIND_REF,
             "the encoder ops (kern_enc.h) run on CPU backends only; backend %s has none", be->name);
}

void kern_enc_embed_fwd(kern_backend *be, float *out, const int32_t *tok, const int32_t *type, const float *wte,
                        const float *wpe, const float *wtt, size_t B, size_t T, size_t C) {
    enc_check_host(be);
    long n = (long)(B * T);
    /* small work stays on one thread: a parallel region costs more than it saves on a busy machine */
#pragma omp parallel for schedule(static) if (B * T * C > (1u << 16))
    for (long r = 0; r < n; r++) {
        size_t t = (size_t)r % T;
        const float *a = wte + (size_t)tok[r] * C, *p = wpe + t * C, *y = wtt + (size_t)(type ? type[r] : 0) * C;
        float *o = out + (size_t)r * C;
        /* HF order: (word + token_type) + position */
        for (size_t c = 0; c < C; c++) o[c] = (a[c] + y[c]) + p[c];
    }
}

/* One (sequence, head) of kern_enc_attention_fwd: L valid rows of a [T, 3C] qkv block. The head's keys are
 * transposed into kt [hs][L] first, so both inner loops (scores over j, then the weighted sum over c) run
 * along contiguous memory without a reduction and vectorise; p [L] holds one row's scores. */
GK_HOT static void enc_attn_head(float *out, const float *qkv, size_t L, size_t C, size_t hs, float sc, float *kt,
                                 float *p) {
    size_t ld = 3 * C;
    for (size_t j = 0; j < L; j++)
        for (size_t c = 0; c < hs; c++) kt[c * L + j] = qkv[j * ld + C + c];
    for (size_t i = 0; i < L; i++) {
        const float *q = qkv + i * ld;
        for (size_t j = 0; j < L; j++) p[j] = 0;
        for (size_t c = 0; c < hs; c++) {
            float qc = q[c] * sc;
            const float *kr = kt + c * L;
            GK_OMP(omp simd)
            for (size_t j = 0; j < L; j++) p[j] += qc * kr[j];
        }
        float mx = -INFINITY;
        GK_SIMD_MAX(mx)
        for (size_t j = 0; j < L; j++) mx = p[j] > mx ? p[j] : mx;
        float sum = 0;
        GK_OMP(omp simd reduction(+:sum))
        for (size_t j = 0; j < L; j++) { p[j] = kern_vexpf(p[j] - mx); sum += p[j]; }
        float inv = 1.0f / sum, *o = out + i * C;
        for (size_t c = 0; c < hs; c++) o[c] = 0;
        for (size_t j = 0; j < L; j++) {
            const float *v = qkv + j * ld + 2 * C;
            float a = p[j] * inv;
            GK_OMP(omp simd)
            for (size_t c = 0; c < hs; c++) o[c] += a * v[c];
        }
    }
}

void kern_enc_attention_fwd(kern_backend *be, float *out, const float *qkv, const int32_t *lens, size_t B,
                            size_t T, size_t C, size_t NH) {
    enc_check_host(be);
    size_t hs = C / NH;
    float sc = 1.0f / sqrtf((float)hs);
    long work = (long)(B * NH);
#pragma omp parallel if (B * T * T * C > (1u << 18))
    {
        float *kt = gk_malloc((T ? T : 1) * hs * sizeof *kt), *p = gk_malloc((T ? T : 1) * sizeof *p);
#pragma omp for schedule(dynamic)
        for (long w = 0; w < work; w++) {
            size_t h = (size_t)w % NH, b = (size_t)w / NH, L = (size_t)lens[b];
            float *o = out + b * T * C + h * hs;
            enc_attn_head(o, qkv + b * T * 3 * C + h * hs, L, C, hs, sc, kt, p);
            for (size_t i = L; i < T; i++) memset(o + i * C, 0, hs * sizeof *o);
        }
        free(kt); free(p);
    }
}

/* erf by Abramowitz & Stegun 7.1.26 (absolute error below 1.5e-7), in a form the compiler vectorises:
 * erf|x| = 1 - (a1 t + a2 t^2 + a3 t^3 + a4 t^4 + a5 t^5) e^(-x^2), t = 1 / (1 + 0.3275911 |x|). */
static inline __attribute__((always_inline)) float enc_verff(float x) {
    float ax = fabsf(x), t = 1.0f / (1.0f + 0.3275911f * ax);
    float poly = t * (0.254829592f + t * (-0.284496736f + t * (1.421413741f + t * (-1.453152027f + t * 1.061405429f))));
    float y = 1.0f - poly * kern_vexpf(-ax * ax);
    return x < 0 ? -y : y;
}

GK_HOT static void enc_gelu_rows(float *out, const float *inp, size_t n) {
    GK_OMP(omp simd)
    for (size_t i = 0; i < n; i++) out[i] = 0.5f * inp[i] * (1.0f + enc_verff(inp[i] * 0.70710678118654752f));
}

void kern_enc_gelu_erf_fwd(kern_backend *be, float *out, const float *inp, size_t n) {
    enc_check_host(be);
    size_t chunk = 4096, nc = (n + chunk - 1) / chunk;
#pragma omp parallel for schedule(static) if (n > (1u << 16))
    for (long k = 0; k < (long)nc; k++) {
        size_t a = (size_t)k * chunk, m = n - a < chunk ? n - a : chunk;
        enc_gelu_rows(out + a, inp + a, m);
    }
}

/* ---------------------------------------------------------------- vector search */
static float enc_dot_portable(const float *x, const float *q, size_t C) {
    float s[8] = {0};   /* eight partial sums: the same association as the AVX2 path's lanes */
    size_t c = 0;
    for (; c + 8 <= C; c += 8)
        for (int l = 0; l < 8; l++) s[l] += x[c + l] * q[c + l];
    float t = ((s[0] + s[4]) + (s[1] + s[5])) + ((s[2] + s[6]) + (s[3] + s[7]));
    for (; c < C; c++) t += x[c] * q[c];
    return t;
}
static float enc_dot8_portable(const int8_t *x, const float *q, size_t C) {
    float s[8] = {0};
    size_t c = 0;
    for (; c + 8 <= C; c += 8)
        for (int l = 0; l < 8; l++) s[l] += (float)x[c + l] * q[c + l];
    float t = ((s[0] + s[4]) + (s[1] + s[5])) + ((s[2] + s[6]) + (s[3] + s[7]));
    for (; c < C; c++) t += (float)x[c] * q[c];
    return t;
}
#ifdef ENC_X86
__attribute__((target("avx2,fma"))) static float enc_hsum256(__m256 v) {
    __m128 lo = _mm256_castps256_ps128(v), hi = _mm256_extractf128_ps(v, 1);
    __m128 s = _mm_add_ps(lo, hi);                        /* lanes l + l+4 */
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));               /* (0+4)+(2+6), (1+5)+(3+7) */
    s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    return _mm_cvtss_f32(s);
}
__attribute__((target("avx2,fma"))) static float enc_dot_avx2(const float *x, const float *q, size_t C) {
    __m256 a = _mm256_setzero_ps();
    size_t c = 0;
    for (; c + 8 <= C; c += 8) a = _mm256_fmadd_ps(_mm256_loadu_ps(x + c), _mm256_loadu_ps(q + c), a);
    float t = enc_hsum256(a);
    for (; c < C; c++) t += x[c] * q[c];
    return t;
}
__attribute__((target("avx2,fma"))) static float enc_dot8_avx2(const int8_t *x, const float *q, size_t C) {
    __m256 a = _mm256_setzero_ps();
    size_t c = 0;
    for (; c + 8 <= C; c += 8) {
        __m256i w = _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(x + c)));
        a = _mm256_fmadd_ps(_mm256_cvtepi32_ps(w), _mm256_loadu_ps(q + c), a);
    }
    float t = enc_hsum256(a);
    for (; c < C; c++) t += (float)x[c] * q[c];
    return t;
}
static int enc_have_avx2(void) {
    static int have = -1;
    if (have < 0) { __builtin_cpu_init(); have = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"); }
    return have;
}
#endif

void kern_enc_dot_rows(float *out, const float *x, const float *q, size_t R, size_t C, int force_portable) {
#ifdef ENC_X86
    if (!force_portable && enc_have_avx2()) {
#pragma omp parallel for schedule(static) if (R * C > (1u << 16))
        for (long r = 0; r < (long)R; r++) out[r] = enc_dot_avx2(x + (size_t)r * C, q, C);
        return;
    }
#endif
#pragma omp parallel for schedule(static) if (R * C > (1u << 16))
    for (long r = 0; r < (long)R; r++) out[r] = enc_dot_portable(x + (size_t)r * C, q, C);
}
void kern_enc_dot_rows_i8(float *out, const int8_t *x8, const float *scale, const float *q, size_t R, size_t C,
                          int force_portable) {
#ifdef ENC_X86
    if (!force_portable && enc_have_avx2()) {
#pragma omp parallel for schedule(static) if (R * C > (1u << 16))
        for (long r = 0; r < (long)R; r++) out[r] = scale[r] * enc_dot8_avx2(x8 + (size_t)r * C, q, C);
        return;
    }
#endif
#pragma omp parallel for schedule(static) if (R * C > (1u << 16))
    for (long r = 0; r < (long)R; r++) out[r] = scale[r] * enc_dot8_portable(x8 + (size_t)r * C, q, C);
}
