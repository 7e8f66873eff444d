/* quant.c (cpu): products with weights kept in a GGUF block format (kern_matmul_q_fwd) and the quantized token
 * embedding (kern_embed_q_fwd), for both CPU kinds.
 *
 * Reference (the "ref" backend, the oracle): each weight row dequantized with kern_q_dequantize, fp32 dot products.
 *
 * Fast ("cpu" backend):
 *  - Decode (N <= KERN_Q_DECODE_MAX_N input rows), Q8_0 and Q4_0: a decode step is bound by streaming the weights,
 *    so they are read in their blocks, never widened in memory. Each input row is quantized once per call to int8
 *    in 32-value blocks, x ~ dx qx with dx = max|x| / 127 (the block size of the weights, so a block of W meets
 *    exactly one block of x). Then per output j and block b: the integer dot s = sum_i qw_i qx_i is exact, and
 *    out[j] = sum_b (dw_b dx_b) s_b. The int8 product uses the unsigned-by-signed instructions (VNNI's vpdpbusd,
 *    AVX2's vpmaddubsw). VNNI takes two blocks per 512-bit instruction, the weights as unsigned bytes offset by a
 *    constant (Q4_0's raw nibbles, Q8_0's bytes + 128), the sum starting at -offset * sum x (once per input row);
 *    AVX2 moves the weight's sign onto x instead (qw qx = |qw| (sign(qw) qx)). One output row at a time.
 *    F16: halves widened in registers (F16C) and fp32 fused multiply-adds with x.
 *    Q4_K, Q6_K: each weight row decoded into a per-thread buffer (vectorising decoders, the same floats as the
 *    reference's) and dotted in fp32 (still read once, from its blocks).
 *  - Prefill (more rows): a panel of weight rows at a time is dequantized to fp32 (about 4 MB, cache-sized) and
 *    multiplied by the backend's GEMM; the dequantization is amortised over the N rows, and the GEMM is the
 *    tuned one training uses (measured within noise of the fp32 GEMM at 512 x 576 x 1536; an int8 path tiled over
 *    rows, as llama.cpp's, was not tried: it would need its own register-blocked kernel).
 *  - Training (QLoRA: kern_matmul_q_train_fwd and kern_matmul_q_bwd): the prefill's panels for every row count, and
 *    the input gradient dX += dY W from the same panels through the GEMM (no dW: the base is frozen).
 *  The instruction set is picked at run time (AVX-512 VNNI+VL+BW, else AVX2+FMA+F16C, else portable C), capped by
 *  be->q_isa for the tests that hold every path to the reference. OpenMP over output rows, each thread one
 *  contiguous range (one stream through W).
 */
#include "kern/kern.h"
#include "kern/cpu/cpu.h"
#include "kern/cpu/fast_math.h"
#include "core/core.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>
#include <immintrin.h>
#define Q_X86 1
#endif

#define QB 32   /* values per block of Q8_0 / Q4_0, and of the quantized input */

static int q_nthreads(void) {
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}
static int q_thread(void) {
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }

/* The backend's scratch, grown to at least `bytes` (64-byte aligned; contents not kept). */
static void *q_scratch(kern_backend *be, size_t bytes) {
    if (bytes > be->q_scratch_bytes) {
        free(be->q_scratch);
        be->q_scratch = NULL;
        GK_CHECK(posix_memalign(&be->q_scratch, 64, bytes) == 0, "out of memory (%zu bytes of matmul scratch)", bytes);
        be->q_scratch_bytes = bytes;
    }
    return be->q_scratch;
}

/* ---------------------------------------------------------------- reference */

void kern_ref_matmul_q_fwd(kern_backend *be, float *out, size_t ldo, const float *inp, const kern_qmat *w,
                           const float *bias, size_t N, int train) {
    (void)train;   /* the reference has one path, fp32 dot products, for every row count */
    size_t C = w->cols, rb = kern_qtype_row_bytes(w->type, C);
    GK_OMP(omp parallel)
    {
        float *row = gk_malloc((C ? C : 1) * sizeof(float));
        GK_OMP(omp for schedule(static))
        for (size_t j = 0; j < w->rows; j++) {
            kern_q_dequantize(w->type, w->data + j * rb, C, row);
            for (size_t n = 0; n < N; n++) {
                const float *x = inp + n * C;
                float acc = 0;
                for (size_t c = 0; c < C; c++) acc += x[c] * row[c];
                out[n * ldo + j] = acc + (bias ? bias[j] : 0.0f);
            }
        }
        free(row);
    }
}

/* dinp [N, C] += dout [N, rows] (stride ldd) @ W: W decoded a panel of rows at a time (a whole copy of W would be
 * what QLoRA avoids); each thread owns rows n of dinp, so the sums need no atomics. */
#define Q_REF_PANEL 64
void kern_ref_matmul_q_bwd(kern_backend *be, float *dinp, const float *dout, size_t ldd, const kern_qmat *w, size_t N) {
    (void)be;
    size_t C = w->cols, rb = kern_qtype_row_bytes(w->type, C);
    float *panel = gk_malloc(Q_REF_PANEL * (C ? C : 1) * sizeof(float));
    for (size_t j0 = 0; j0 < w->rows; j0 += Q_REF_PANEL) {
        size_t p = w->rows - j0 < Q_REF_PANEL ? w->rows - j0 : Q_REF_PANEL;
        for (size_t r = 0; r < p; r++) kern_q_dequantize(w->type, w->data + (j0 + r) * rb, C, panel + r * C);
        GK_OMP(omp parallel for schedule(static))
        for (size_t n = 0; n < N; n++) {
            float *dx = dinp + n * C;
            for (size_t r = 0; r < p; r++) {
                float g = dout[n * ldd + j0 + r];
                const float *row = panel + r * C;
                for (size_t c = 0; c < C; c++) dx[c] += g * row[c];
            }
        }
    }
    free(panel);
}

void kern_ref_embed_q_fwd(kern_backend *be, float *out, const int32_t *tok, const kern_qmat *wte, const float *wpe,
                          size_t B, size_t T, size_t pos0) {
    size_t C = wte->cols, rb = kern_qtype_row_bytes(wte->type, C);
    GK_OMP(omp parallel for schedule(static))
    for (size_t i = 0; i < B * T; i++) {
        float *o = out + i * C;
        kern_q_dequantize(wte->type, wte->data + (size_t)tok[i] * rb, C, o);
        if (wpe) {
            const float *p = wpe + (pos0 + i % T) * C;
            for (size_t c = 0; c < C; c++) o[c] += p[c];
        }
    }
}

/* ---------------------------------------------------------------- input quantization (decode)
 * Row n of x [N, C] -> qx [N, C] int8 and dx [N, C/32]: x ~ dx qx per block, qx = round(x / dx) in [-127, 127].
 * Scalar and shared by every instruction set, so all of them multiply the same integers. */
static void q_quantize_rows(const float *x, size_t N, size_t C, int8_t *qx, float *dx) {
    size_t nb = C / QB;
    for (size_t i = 0; i < N * nb; i++) {
        const float *v = x + i * QB;
        float amax = 0;
        for (int k = 0; k < QB; k++) { float a = fabsf(v[k]); amax = a > amax ? a : amax; }
        float d = amax / 127.0f, id = d > 0 ? 1.0f / d : 0.0f;
        dx[i] = d;
        for (int k = 0; k < QB; k++) {   /* nearest (ties to even); |v id| <= 127 up to rounding */
            long q = lrintf(v[k] * id);
            qx[i * QB + k] = (int8_t)(q > 127 ? 127 : q < -127 ? -127 : q);
        }
    }
}

/* ---------------------------------------------------------------- portable dot products */

/* One Q8_0 / Q4_0 block -> its 32 int8 values and scale. */
static float q_unpack_plain(int type, const uint8_t *blk, int8_t *q) {
    if (type == KERN_QT_Q8_0) memcpy(q, blk + 2, QB);
    else
        for (int j = 0; j < 16; j++) { q[j] = (int8_t)((blk[2 + j] & 0xF) - 8); q[j + 16] = (int8_t)((blk[2 + j] >> 4) - 8); }
    return kern_f16_to_f32(rd16(blk));
}

static float q_dot_plain(int type, const uint8_t *row, size_t nb, const int8_t *qx, const float *dx) {
    size_t bytes = kern_qtype_block_bytes(type);
    float acc = 0;
    for (size_t b = 0; b < nb; b++) {
        int8_t q[QB];
        float dw = q_unpack_plain(type, row + b * bytes, q);
        int32_t s = 0;
        for (int k = 0; k < QB; k++) s += (int32_t)q[k] * qx[b * QB + k];
        acc += (float)s * (dw * dx[b]);
    }
    return acc;
}

static float f16_dot_plain(const uint8_t *row, const float *x, size_t C) {
    float acc = 0;
    for (size_t c = 0; c < C; c++) acc += kern_f16_to_f32(rd16(row + 2 * c)) * x[c];
    return acc;
}

/* ---------------------------------------------------------------- x86 dot products */
#ifdef Q_X86
#define Q_AVX2 "avx2,fma,f16c"
#define Q_AVX512 "avx2,fma,f16c,avx512f,avx512vl,avx512bw,avx512vnni"

__attribute__((target(Q_AVX2))) static inline float q_hsum256(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}
/* AVX2: one block's integer dot product with the input block x, as 8 int32 partial sums. vpmaddubsw multiplies
 * unsigned by signed bytes (and its int16 pair sums could not hold an offset weight: 2 * 255 * 127 overflows), so
 * the weight's sign moves onto x: w x = |w| (sign(w) x). Q4_0's low nibbles are values 0..15 of the block, high
 * 16..31. */
__attribute__((target(Q_AVX2))) static inline __m256i q4_nibbles(const uint8_t *blk) {
    __m128i b = _mm_loadu_si128((const __m128i *)(blk + 2)), m = _mm_set1_epi8(0xF);
    return _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(b, 4), m), _mm_and_si128(b, m));
}
__attribute__((target(Q_AVX2))) static inline __m256i q_signed_dot_avx2(__m256i w, __m256i x) {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_abs_epi8(w), _mm256_sign_epi8(x, w)), _mm256_set1_epi16(1));
}
__attribute__((target(Q_AVX2))) static inline __m256i q8_blk_avx2(const uint8_t *blk, __m256i x, const int32_t *corr) {
    (void)corr;
    return q_signed_dot_avx2(_mm256_loadu_si256((const __m256i *)(blk + 2)), x);
}
/* Q4_0's nibbles u = w + 8 are unsigned already, so vpmaddubsw takes them as they are (15 * 127 * 2 fits its
 * int16 sums), and the offset comes off through the VNNI kernels' corr (-8 sum x per 4-value lane group): two
 * instructions fewer per block than moving the sign. */
__attribute__((target(Q_AVX2))) static inline __m256i q4_blk_avx2(const uint8_t *blk, __m256i x, const int32_t *corr) {
    __m256i p = _mm256_madd_epi16(_mm256_maddubs_epi16(q4_nibbles(blk), x), _mm256_set1_epi16(1));
    return _mm256_add_epi32(p, _mm256_loadu_si256((const __m256i *)corr));
}
/* acc += the block's partial sums scaled by dw dx */
__attribute__((target(Q_AVX2))) static inline __m256 q_scale_add(__m256i p, const uint8_t *blk, float dx, __m256 acc) {
    return _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(_cvtsh_ss(rd16(blk)) * dx), acc);
}

/* AVX2: one row (nb blocks of BYTES) dotted with the quantized input (qx, dx). One row at a time, two
 * accumulators (even and odd blocks): four rows interleaved per pass measured 3-4x slower for Q8_0 (one stream
 * per thread is what the prefetchers follow best). */
#define Q_DOT(NAME, TARGET, BLK, BYTES)                                                                            \
    __attribute__((target(TARGET))) static float NAME(const uint8_t *r, size_t nb, const int8_t *qx,              \
                                                      const float *dx, const int32_t *corr) {                     \
        __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();                                                 \
        size_t b = 0;                                                                                              \
        for (; b + 2 <= nb; b += 2) {                                                                              \
            const uint8_t *b0 = r + b * (BYTES), *b1 = b0 + (BYTES);                                               \
            a0 = q_scale_add(BLK(b0, _mm256_loadu_si256((const __m256i *)(qx + b * QB)), corr + 8 * b), b0, dx[b], a0); \
            a1 = q_scale_add(BLK(b1, _mm256_loadu_si256((const __m256i *)(qx + b * QB + QB)), corr + 8 * b + 8), b1, \
                             dx[b + 1], a1);                                                                       \
        }                                                                                                          \
        if (b < nb) a0 = q_scale_add(BLK(r + b * (BYTES), _mm256_loadu_si256((const __m256i *)(qx + b * QB)),      \
                                         corr + 8 * b), r + b * (BYTES), dx[b], a0);                               \
        return q_hsum256(_mm256_add_ps(a0, a1));                                                                   \
    }
Q_DOT(q8_dot_avx2, Q_AVX2, q8_blk_avx2, 34)
Q_DOT(q4_dot_avx2, Q_AVX2, q4_blk_avx2, 18)

/* AVX-512 VNNI: two blocks per 512-bit vpdpbusd (unsigned by signed bytes). The weights enter as unsigned bytes
 * u = w + K (Q8_0: w XOR 0x80, K = 128; Q4_0: the raw nibbles, K = 8), so sum u x = sum w x + K sum x; the
 * accumulator starts at corr = -K sum x per 4-byte lane group, computed once per input row (q_input_corr), not
 * once per weight row. */
__attribute__((target(Q_AVX512))) static inline __m512i q8_pair_u8(const uint8_t *b0, const uint8_t *b1) {
    __m512i v = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(b0 + 2))),
                                   _mm256_loadu_si256((const __m256i *)(b1 + 2)), 1);
    return _mm512_xor_si512(v, _mm512_set1_epi8((char)0x80));
}
__attribute__((target(Q_AVX512))) static inline __m512i q4_pair_u8(const uint8_t *b0, const uint8_t *b1) {
    __m256i t = _mm256_set_m128i(_mm_loadu_si128((const __m128i *)(b1 + 2)), _mm_loadu_si128((const __m128i *)(b0 + 2)));
    __m256i m = _mm256_set1_epi8(0xF), lo = _mm256_and_si256(t, m), hi = _mm256_and_si256(_mm256_srli_epi16(t, 4), m);
    __m512i v = _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);   /* lo0 lo1 hi0 hi1 */
    return _mm512_shuffle_i64x2(v, v, _MM_SHUFFLE(3, 1, 2, 0));          /* lo0 hi0 lo1 hi1: the two blocks in order */
}
/* [dw0 dx0] x 8 | [dw1 dx1] x 8: the two blocks' scales, each over its 8 lanes */
__attribute__((target(Q_AVX512))) static inline __m512 q_pair_scales(const uint8_t *b0, const uint8_t *b1, const float *dx) {
    __m128 dw = _mm_cvtph_ps(_mm_insert_epi16(_mm_cvtsi32_si128(rd16(b0)), rd16(b1), 1));
    __m128 d = _mm_mul_ps(dw, _mm_castsi128_ps(_mm_loadl_epi64((const __m128i *)dx)));   /* dx[0], dx[1] (unaligned) */
    return _mm512_permutexvar_ps(_mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0), _mm512_castps128_ps512(d));
}
#define Q_DOT512(NAME, PAIR, BYTES)                                                                                \
    __attribute__((target(Q_AVX512))) static float NAME(const uint8_t *r, size_t nb, const int8_t *qx,            \
                                                        const float *dx, const int32_t *corr) {                   \
        __m512 acc = _mm512_setzero_ps();                                                                          \
        size_t b = 0;                                                                                              \
        for (; b + 2 <= nb; b += 2) {                                                                              \
            const uint8_t *b0 = r + b * (BYTES), *b1 = b0 + (BYTES);                                               \
            __m512i p = _mm512_dpbusd_epi32(_mm512_loadu_si512(corr + 8 * b), PAIR(b0, b1),                        \
                                            _mm512_loadu_si512(qx + b * QB));                                      \
            __m512 sc = q_pair_scales(b0, b1, dx + b);                                                             \
            acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), sc, acc);                                                 \
        }                                                                                                          \
        if (b < nb) {   /* an odd last block: the pair's first half */                                             \
            const uint8_t *b0 = r + b * (BYTES);                                                                   \
            __m512i p = _mm512_dpbusd_epi32(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(corr + 8 * b))), \
                                            PAIR(b0, b0), _mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(qx + b * QB)))); \
            acc = _mm512_mask3_fmadd_ps(_mm512_cvtepi32_ps(p), _mm512_set1_ps(_cvtsh_ss(rd16(b0)) * dx[b]), acc,   \
                                        (__mmask16)0x00FF);   /* the upper half (not a block) leaves acc as it was */ \
        }                                                                                                          \
        return _mm512_reduce_add_ps(acc);                                                                          \
    }
Q_DOT512(q8_dot_avx512, q8_pair_u8, 34)
Q_DOT512(q4_dot_avx512, q4_pair_u8, 18)

__attribute__((target(Q_AVX512))) static float f16_dot_avx512(const uint8_t *row, const float *x, size_t C) {
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
    size_t c = 0;
    for (; c + 32 <= C; c += 32) {
        a0 = _mm512_fmadd_ps(_mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(row + 2 * c))), _mm512_loadu_ps(x + c), a0);
        a1 = _mm512_fmadd_ps(_mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(row + 2 * c + 32))),
                             _mm512_loadu_ps(x + c + 16), a1);
    }
    float acc = _mm512_reduce_add_ps(_mm512_add_ps(a0, a1));
    for (; c < C; c++) acc += _cvtsh_ss(rd16(row + 2 * c)) * x[c];
    return acc;
}
__attribute__((target(Q_AVX2))) static float f16_dot_avx2(const uint8_t *row, const float *x, size_t C) {
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    size_t c = 0;
    for (; c + 16 <= C; c += 16) {
        a0 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(row + 2 * c))), _mm256_loadu_ps(x + c), a0);
        a1 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(row + 2 * c + 16))),
                             _mm256_loadu_ps(x + c + 8), a1);
    }
    float acc = q_hsum256(_mm256_add_ps(a0, a1));
    for (; c < C; c++) acc += _cvtsh_ss(rd16(row + 2 * c)) * x[c];
    return acc;
}

/* The best instruction set here, capped by be->q_isa (tests). */
static int q_isa(const kern_backend *be) {
    static int have = -1;
    if (have < 0) {
        have = KERN_ISA_PORTABLE;
        unsigned a, b, c, d;   /* F16C: CPUID.1:ECX bit 29 (clang's __builtin_cpu_supports does not know "f16c") */
        int f16c = __get_cpuid(1, &a, &b, &c, &d) && ((c >> 29) & 1);
        if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && f16c)
            have = KERN_ISA_AVX2;
        if (have == KERN_ISA_AVX2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
            __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vnni"))
            have = KERN_ISA_AVX512;
    }
    return be->q_isa && be->q_isa < have ? be->q_isa : have;
}
#else
static int q_isa(const kern_backend *be) { (void)be; return KERN_ISA_PORTABLE; }
#endif

/* ---------------------------------------------------------------- decode */

/* Rows [j0, j1) of W (Q8_0 / Q4_0) against the N quantized input rows. */
static void q_rows_int8(float *out, size_t ldo, const kern_qmat *w, const float *bias, size_t N, const int8_t *qx,
                        const float *dx, const int32_t *corr, size_t j0, size_t j1, int isa) {
    size_t C = w->cols, nb = C / QB, rb = kern_qtype_row_bytes(w->type, C);
    int q8 = w->type == KERN_QT_Q8_0;
    for (size_t j = j0; j < j1; j++)
        for (size_t n = 0; n < N; n++) {
            const uint8_t *r = w->data + j * rb;
            const int8_t *q = qx + n * C;
            const float *d = dx + n * nb;
            float s;
#ifdef Q_X86
            if (isa >= KERN_ISA_AVX512) {
                const int32_t *k = corr + n * nb * 8;
                s = q8 ? q8_dot_avx512(r, nb, q, d, k) : q4_dot_avx512(r, nb, q, d, k);
            }
            else if (isa >= KERN_ISA_AVX2) {
                const int32_t *k = corr + n * nb * 8;
                s = q8 ? q8_dot_avx2(r, nb, q, d, k) : q4_dot_avx2(r, nb, q, d, k);
            }
            else
#endif
                s = q_dot_plain(w->type, r, nb, q, d);
            out[n * ldo + j] = s + (bias ? bias[j] : 0.0f);
        }
    (void)isa;
}

/* Rows [j0, j1) of an F16 W against the fp32 input. */
static void q_rows_f16(float *out, size_t ldo, const kern_qmat *w, const float *bias, const float *inp, size_t N,
                       size_t j0, size_t j1, int isa) {
    size_t C = w->cols, rb = 2 * C;
    for (size_t j = j0; j < j1; j++)
        for (size_t n = 0; n < N; n++) {
            const uint8_t *r = w->data + j * rb;
            const float *x = inp + n * C;
            float s;
#ifdef Q_X86
            if (isa >= KERN_ISA_AVX512) s = f16_dot_avx512(r, x, C);
            else if (isa >= KERN_ISA_AVX2) s = f16_dot_avx2(r, x, C);
            else
#endif
                s = f16_dot_plain(r, x, C);
            out[n * ldo + j] = s + (bias ? bias[j] : 0.0f);
        }
    (void)isa;
}

/* The fast path's decoders of one row of the K formats: the same values as kern_q_dequantize (the same float
 * operations), written a whole sub-block at a time so that the loops vectorise (the reference walks value by
 * value with divisions). Layouts: src/kern/quant.c. */
GK_HOT static void q4k_row(const uint8_t *restrict src, size_t nb, float *restrict dst) {
    for (size_t b = 0; b < nb; b++, src += 144, dst += 256) {
        float d = kern_f16_to_f32(rd16(src)), dmin = kern_f16_to_f32(rd16(src + 2));
        const uint8_t *sc = src + 4, *qs = src + 16;
        float dl[8], ml[8];
        for (int s = 0; s < 8; s++) {
            int scale, mn;
            if (s < 4) { scale = sc[s] & 63; mn = sc[s + 4] & 63; }
            else { scale = (sc[s + 4] & 0xF) | ((sc[s - 4] >> 6) << 4); mn = (sc[s + 4] >> 4) | ((sc[s] >> 6) << 4); }
            dl[s] = d * (float)scale;
            ml[s] = dmin * (float)mn;
        }
        for (int p = 0; p < 4; p++) {   /* sub-blocks 2p (low nibbles) and 2p+1 (high) share 32 bytes */
            const uint8_t *q = qs + 32 * p;
            float *o = dst + 64 * p, d0 = dl[2 * p], m0 = ml[2 * p], d1 = dl[2 * p + 1], m1 = ml[2 * p + 1];
            GK_OMP(omp simd)
            for (int l = 0; l < 32; l++) {
                float a = d0 * (float)(q[l] & 0xF), c = d1 * (float)(q[l] >> 4);
                o[l] = a - m0;
                o[32 + l] = c - m1;
            }
        }
    }
}
GK_HOT static void q6k_row(const uint8_t *restrict src, size_t nb, float *restrict dst) {
    for (size_t b = 0; b < nb; b++, src += 210, dst += 256) {
        const uint8_t *ql = src, *qh = src + 128;
        const int8_t *sc = (const int8_t *)(src + 192);
        float d = kern_f16_to_f32(rd16(src + 208));
        for (int s = 0; s < 8; s++) {   /* 32 values 32 s ..: 4 bits from ql, 2 from qh; scale per 16 */
            int c = s / 4, part = s % 4, shl = 4 * (part >> 1), shh = 2 * part;
            const uint8_t *l4 = ql + 64 * c + 32 * (part & 1), *h2 = qh + 32 * c;
            float ds0 = d * (float)sc[2 * s], ds1 = d * (float)sc[2 * s + 1];
            float *o = dst + 32 * s;
            GK_OMP(omp simd)
            for (int k = 0; k < 32; k++) {
                int q = ((l4[k] >> shl) & 0xF) | ((h2[k] >> shh) & 3) << 4;
                o[k] = (k < 16 ? ds0 : ds1) * (float)(q - 32);
            }
        }
    }
}
/* Q8_0 and Q4_0 likewise (d * q, one multiply per value, as the reference) */
GK_HOT static void q8_0_row(const uint8_t *restrict src, size_t nb, float *restrict dst) {
    for (size_t b = 0; b < nb; b++, src += 34, dst += 32) {
        float d = kern_f16_to_f32(rd16(src));
        const int8_t *q = (const int8_t *)(src + 2);
        GK_OMP(omp simd)
        for (int l = 0; l < 32; l++) dst[l] = (float)q[l] * d;
    }
}
GK_HOT static void q4_0_row(const uint8_t *restrict src, size_t nb, float *restrict dst) {
    for (size_t b = 0; b < nb; b++, src += 18, dst += 32) {
        float d = kern_f16_to_f32(rd16(src));
        const uint8_t *q = src + 2;
        GK_OMP(omp simd)
        for (int l = 0; l < 16; l++) {
            dst[l] = d * (float)((q[l] & 0xF) - 8);
            dst[l + 16] = d * (float)((q[l] >> 4) - 8);
        }
    }
}
#ifdef Q_X86
/* F16 with the F16C conversion instruction (exact, as every f16 -> f32 conversion is) */
__attribute__((target(Q_AVX2))) static void f16_row_f16c(const uint8_t *src, size_t C, float *dst) {
    size_t c = 0;
    for (; c + 8 <= C; c += 8) _mm256_storeu_ps(dst + c, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(src + 2 * c))));
    for (; c < C; c++) dst[c] = kern_f16_to_f32(rd16(src + 2 * c));
}
#endif

/* A row of W -> fp32: the vectorising decoders above for the K formats, Q8_0, Q4_0 and (with F16C) F16, the
 * reference for the rest. Prefill decodes every weight once per call this way: with the reference's
 * value-by-value F16 conversion a 512-token F16 prefill of a 135M model ran at 0.71x of the F32 file's. */
static void q_row_f32(int type, const uint8_t *src, size_t C, float *dst, int isa) {
    if (type == KERN_QT_Q4_K) q4k_row(src, C / 256, dst);
    else if (type == KERN_QT_Q6_K) q6k_row(src, C / 256, dst);
    else if (type == KERN_QT_Q8_0) q8_0_row(src, C / 32, dst);
    else if (type == KERN_QT_Q4_0) q4_0_row(src, C / 32, dst);
#ifdef Q_X86
    else if (type == KERN_QT_F16 && isa >= KERN_ISA_AVX2) f16_row_f16c(src, C, dst);   /* q_isa: F16C included */
#endif
    else kern_q_dequantize(type, src, C, dst);
    (void)isa;
}
GK_HOT static float dot_f32(const float *x, const float *y, size_t C) {
    float acc = 0;
    GK_OMP(omp simd reduction(+:acc))
    for (size_t c = 0; c < C; c++) acc += x[c] * y[c];
    return acc;
}

/* Rows [j0, j1) of any type, each decoded into row [C] and dotted in fp32. */
static void q_rows_dequant(float *out, size_t ldo, const kern_qmat *w, const float *bias, const float *inp, size_t N,
                           size_t j0, size_t j1, float *row, int isa) {
    size_t C = w->cols, rb = kern_qtype_row_bytes(w->type, C);
    for (size_t j = j0; j < j1; j++) {
        q_row_f32(w->type, w->data + j * rb, C, row, isa);
        for (size_t n = 0; n < N; n++) out[n * ldo + j] = dot_f32(inp + n * C, row, C) + (bias ? bias[j] : 0.0f);
    }
}

#define Q_ROWS_PER_TASK 16   /* output rows per OpenMP task (static schedule: each thread one contiguous range) */

static void q_decode(kern_backend *be, float *out, size_t ldo, const float *inp, const kern_qmat *w, const float *bias,
                     size_t N) {
    size_t C = w->cols, nt = (w->rows + Q_ROWS_PER_TASK - 1) / Q_ROWS_PER_TASK;
    int isa = q_isa(be), int8 = w->type == KERN_QT_Q8_0 || w->type == KERN_QT_Q4_0;
    int8_t *qx = NULL;
    float *dx = NULL, *rows = NULL;
    int32_t *corr = NULL;
    if (int8) {   /* scratch: corr [N, C/32, 8] | dx [N, C/32] | qx [N, C] */
        size_t nb = C / QB;
        corr = q_scratch(be, N * nb * (8 * sizeof(int32_t) + sizeof(float)) + N * C);
        dx = (float *)(corr + N * nb * 8);
        qx = (int8_t *)(dx + N * nb);
        q_quantize_rows(inp, N, C, qx, dx);
        /* the VNNI kernels' start value per block and 4-value lane group: -K (sum of the group's qx) */
        int K = w->type == KERN_QT_Q8_0 ? 128 : 8;
        for (size_t i = 0; i < N * nb * 8; i++)
            corr[i] = -K * (qx[4 * i] + qx[4 * i + 1] + qx[4 * i + 2] + qx[4 * i + 3]);
    } else if (w->type != KERN_QT_F16) {
        rows = q_scratch(be, (size_t)q_nthreads() * C * sizeof(float));
    }
    GK_OMP(omp parallel for schedule(static))
    for (size_t t = 0; t < nt; t++) {
        size_t j0 = t * Q_ROWS_PER_TASK, j1 = j0 + Q_ROWS_PER_TASK < w->rows ? j0 + Q_ROWS_PER_TASK : w->rows;
        if (int8) q_rows_int8(out, ldo, w, bias, N, qx, dx, corr, j0, j1, isa);
        else if (w->type == KERN_QT_F16) q_rows_f16(out, ldo, w, bias, inp, N, j0, j1, isa);
        else q_rows_dequant(out, ldo, w, bias, inp, N, j0, j1, rows + (size_t)q_thread() * C, isa);
    }
}

/* ---------------------------------------------------------------- prefill: dequantized panels through the GEMM */

#define Q_PANEL_BYTES ((size_t)4 << 20)

/* The panel scratch of p_rows rows of W (about Q_PANEL_BYTES of fp32), and rows [j0, j0+p) of W decoded into it. */
static float *q_panel_scratch(kern_backend *be, const kern_qmat *w, size_t *p_rows) {
    size_t P = Q_PANEL_BYTES / (w->cols * sizeof(float));
    if (P < 16) P = 16;
    if (P > w->rows) P = w->rows;
    *p_rows = P;
    return q_scratch(be, P * w->cols * sizeof(float));
}
static void q_panel_fill(const kern_qmat *w, float *panel, size_t j0, size_t p, int isa) {
    size_t C = w->cols, rb = kern_qtype_row_bytes(w->type, C);
    GK_OMP(omp parallel for schedule(static))
    for (size_t r = 0; r < p; r++) q_row_f32(w->type, w->data + (j0 + r) * rb, C, panel + r * C, isa);
}

static void q_prefill(kern_backend *be, float *out, size_t ldo, const float *inp, const kern_qmat *w, const float *bias,
                      size_t N) {
    size_t C = w->cols, P;
    float *panel = q_panel_scratch(be, w, &P);
    int bf16 = be->prec == KERN_PREC_BF16;
    for (size_t j0 = 0; j0 < w->rows; j0 += P) {
        size_t p = j0 + P < w->rows ? P : w->rows - j0;
        q_panel_fill(w, panel, j0, p, q_isa(be));
        /* out[:, j0 .. j0+p) = inp [N, C] @ panel [p, C]^T + bias */
        if (kern_cpu_gemm_lib(bf16 ? KERN_GEMM_ONEDNN : be->gemm, bf16, NULL, 0, 1, N, p, C, inp, C, panel, C,
                              bias ? bias + j0 : NULL, 0, out + j0, ldo))
            continue;
        GK_OMP(omp parallel for schedule(static))
        for (size_t n = 0; n < N; n++)
            for (size_t r = 0; r < p; r++) {
                float acc = 0;
                for (size_t c = 0; c < C; c++) acc += inp[n * C + c] * panel[r * C + c];
                out[n * ldo + j0 + r] = acc + (bias ? bias[j0 + r] : 0.0f);
            }
    }
}

void kern_fast_matmul_q_fwd(kern_backend *be, float *out, size_t ldo, const float *inp, const kern_qmat *w,
                            const float *bias, size_t N, int train) {
    if (N == 0 || w->rows == 0) return;
    if (N <= KERN_Q_DECODE_MAX_N && !train) q_decode(be, out, ldo, inp, w, bias, N);
    else q_prefill(be, out, ldo, inp, w, bias, N);
}

/* ---------------------------------------------------------------- backward: dX = dY W through the same panels
 * The frozen base of QLoRA needs only the input gradient. A panel of p rows of W is dequantized (as the prefill
 * does) and dinp [N, C] += dout[:, j0 .. j0+p) [N, p] @ panel [p, C] accumulates through the GEMM (A = dout's
 * columns with row stride ldd, B = the panel as stored, no transposes). */
void kern_fast_matmul_q_bwd(kern_backend *be, float *dinp, const float *dout, size_t ldd, const kern_qmat *w, size_t N) {
    if (N == 0 || w->rows == 0) return;
    size_t C = w->cols, P;
    float *panel = q_panel_scratch(be, w, &P);
    int bf16 = be->prec == KERN_PREC_BF16;
    for (size_t j0 = 0; j0 < w->rows; j0 += P) {
        size_t p = j0 + P < w->rows ? P : w->rows - j0;
        q_panel_fill(w, panel, j0, p, q_isa(be));
        if (kern_cpu_gemm_lib(bf16 ? KERN_GEMM_ONEDNN : be->gemm, bf16, NULL, 0, 0, N, C, p, dout + j0, ldd, panel, C,
                              NULL, 1, dinp, C))
            continue;
        GK_OMP(omp parallel for schedule(static))
        for (size_t n = 0; n < N; n++)
            for (size_t r = 0; r < p; r++) {
                float g = dout[n * ldd + j0 + r];
                const float *row = panel + r * C;
                float *dx = dinp + n * C;
                for (size_t c = 0; c < C; c++) dx[c] += g * row[c];
            }
    }
}
