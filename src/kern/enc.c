/* enc.c: the encoder ops of kern_enc.h (see there for the math). Host-memory implementations shared by both
 * CPU kinds: one readable version each, OpenMP-parallel; the vector-search dot products also have an
 * AVX2+FMA path (runtime-detected), tested against the portable loops. */
#include "kern/kern_enc.h"
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

void kern_enc_attention_fwd(kern_backend *be, float *out, const float *qkv, const int32_t *lens, size_t B,
                            size_t T, size_t C, size_t NH) {
    enc_check_host(be);
    size_t hs = C / NH;
    float sc = 1.0f / sqrtf((float)hs);
    long work = (long)(B * NH * T);
#pragma omp parallel if (B * T * T * C > (1u << 18))
    {
        float *p = gk_malloc((T ? T : 1) * sizeof *p);
#pragma omp for schedule(static)
        for (long w = 0; w < work; w++) {
            size_t i = (size_t)w % T, h = (size_t)w / T % NH, b = (size_t)w / T / NH;
            size_t L = (size_t)lens[b];
            float *o = out + (b * T + i) * C + h * hs;
            if (i >= L) { memset(o, 0, hs * sizeof *o); continue; }
            const float *q = qkv + (b * T + i) * 3 * C + h * hs;
            float mx = -INFINITY;
            for (size_t j = 0; j < L; j++) {
                const float *k = qkv + (b * T + j) * 3 * C + C + h * hs;
                float s = 0;
                for (size_t c = 0; c < hs; c++) s += q[c] * k[c];
                p[j] = s * sc;
                if (p[j] > mx) mx = p[j];
            }
            float sum = 0;
            for (size_t j = 0; j < L; j++) { p[j] = expf(p[j] - mx); sum += p[j]; }
            float inv = 1.0f / sum;
            memset(o, 0, hs * sizeof *o);
            for (size_t j = 0; j < L; j++) {
                const float *v = qkv + (b * T + j) * 3 * C + 2 * C + h * hs;
                float a = p[j] * inv;
                for (size_t c = 0; c < hs; c++) o[c] += a * v[c];
            }
        }
        free(p);
    }
}

void kern_enc_gelu_erf_fwd(kern_backend *be, float *out, const float *inp, size_t n) {
    enc_check_host(be);
#pragma omp parallel for schedule(static) if (n > (1u << 16))
    for (long i = 0; i < (long)n; i++) out[i] = 0.5f * inp[i] * (1.0f + erff(inp[i] * 0.70710678118654752f));
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
