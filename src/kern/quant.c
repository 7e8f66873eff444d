/* quant.c: the GGUF (ggml) block formats: their sizes and the one decoder of every format (kern_q_dequantize).
 *
 * Every format stores a tensor as consecutive blocks of `block` values; a block holds one or more scales (IEEE
 * halves, little-endian) and small integers. The byte layouts (facts of the format, as the `gguf` Python package
 * documents and decodes them):
 *   F16   half                                          x = h
 *   BF16  the top 16 bits of a float                    x = bits << 16
 *   Q8_0  d | q[32] int8                                x[j] = d q[j]
 *   Q4_0  d | qs[16]                                    x[j] = d (lo(qs[j]) - 8),  x[j+16] = d (hi(qs[j]) - 8)
 *   Q4_1  d | m | qs[16]                                x = d q + m
 *   Q5_0  d | qh (u32, the fifth bits) | qs[16]          x = d (q - 16), q = nibble | bit j of qh << 4
 *   Q5_1  d | m | qh | qs[16]                           x = d q + m
 *   Q4_K  d | dmin | scales[12] | qs[128]               8 sub-blocks of 32, each a 6-bit scale sc and min mn
 *                                                      packed in scales[12]; x = d sc q - dmin mn; sub-block s
 *                                                      reads nibble (s odd: high) of qs[(s/2)*32 + l]
 *   Q5_K  Q4_K's header | qh[32] | qs[128]              as Q4_K with a fifth bit (bit s of qh[l])
 *   Q6_K  ql[128] | qh[64] | sc[16] int8 | d            x = d sc[i/16] (q - 32), q 6 bits: 4 from ql, 2 from qh
 * Decoding is in float32 with the reference package's operation order (products then sums, never fused: this
 * file is ISO C compiled with -std=c11, which keeps contraction off), so the results are bit-exact to it.
 */
#include "kern/kern.h"
#include <string.h>

static const struct { int type; size_t block, bytes; } q_types[] = {
    {KERN_QT_F32, 1, 4},     {KERN_QT_F16, 1, 2},       {KERN_QT_BF16, 1, 2},     {KERN_QT_Q4_0, 32, 18},
    {KERN_QT_Q4_1, 32, 20},  {KERN_QT_Q5_0, 32, 22},    {KERN_QT_Q5_1, 32, 24},   {KERN_QT_Q8_0, 32, 34},
    {KERN_QT_Q4_K, 256, 144}, {KERN_QT_Q5_K, 256, 176}, {KERN_QT_Q6_K, 256, 210},
};

static int q_index(int type) {
    for (size_t i = 0; i < sizeof q_types / sizeof q_types[0]; i++) if (q_types[i].type == type) return (int)i;
    return -1;
}
size_t kern_qtype_block(int type) { int i = q_index(type); return i < 0 ? 0 : q_types[i].block; }
size_t kern_qtype_block_bytes(int type) { int i = q_index(type); return i < 0 ? 0 : q_types[i].bytes; }
size_t kern_qtype_row_bytes(int type, size_t n) {
    int i = q_index(type);
    return i < 0 ? 0 : n / q_types[i].block * q_types[i].bytes;
}
int kern_qtype_matmul(int type) {
    return type == KERN_QT_F16 || type == KERN_QT_Q8_0 || type == KERN_QT_Q4_0 || type == KERN_QT_Q4_K ||
           type == KERN_QT_Q6_K;
}

float kern_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h >> 15) << 31, exp = (h >> 10) & 0x1f, man = h & 0x3ff, bits;
    if (exp == 0x1f) bits = sign | 0x7f800000u | (man << 13);
    else if (exp) bits = sign | ((exp + 112) << 23) | (man << 13);
    else if (!man) bits = sign;
    else {
        int e = -1;
        do { e++; man <<= 1; } while (!(man & 0x400));
        bits = sign | ((uint32_t)(112 - e) << 23) | ((man & 0x3ff) << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }

int kern_q_dequantize(int type, const uint8_t *src, size_t n, float *dst) {
    int ti = q_index(type);
    if (ti < 0 || n % q_types[ti].block) return -1;
    size_t nb = n / q_types[ti].block;
    switch (type) {
    case KERN_QT_F32: memcpy(dst, src, n * 4); break;
    case KERN_QT_F16: for (size_t i = 0; i < n; i++) dst[i] = kern_f16_to_f32(rd16(src + 2 * i)); break;
    case KERN_QT_BF16:
        for (size_t i = 0; i < n; i++) { uint32_t b = (uint32_t)rd16(src + 2 * i) << 16; memcpy(&dst[i], &b, 4); }
        break;
    case KERN_QT_Q8_0:
        for (size_t b = 0; b < nb; b++, src += 34, dst += 32) {
            float d = kern_f16_to_f32(rd16(src));
            for (int j = 0; j < 32; j++) dst[j] = (float)(int8_t)src[2 + j] * d;
        }
        break;
    case KERN_QT_Q4_0: case KERN_QT_Q4_1:
        for (size_t b = 0; b < nb; b++, dst += 32) {
            float d = kern_f16_to_f32(rd16(src)), m = 0;
            if (type == KERN_QT_Q4_1) m = kern_f16_to_f32(rd16(src + 2));
            const uint8_t *qs = src + (type == KERN_QT_Q4_1 ? 4 : 2);
            for (int j = 0; j < 16; j++) {
                int lo = qs[j] & 0xF, hi = qs[j] >> 4;
                if (type == KERN_QT_Q4_0) { dst[j] = d * (float)(lo - 8); dst[j + 16] = d * (float)(hi - 8); }
                else { float a = d * (float)lo, c = d * (float)hi; dst[j] = a + m; dst[j + 16] = c + m; }
            }
            src += type == KERN_QT_Q4_1 ? 20 : 18;
        }
        break;
    case KERN_QT_Q5_0: case KERN_QT_Q5_1:
        for (size_t b = 0; b < nb; b++, dst += 32) {
            float d = kern_f16_to_f32(rd16(src)), m = 0;
            if (type == KERN_QT_Q5_1) m = kern_f16_to_f32(rd16(src + 2));
            const uint8_t *qhp = src + (type == KERN_QT_Q5_1 ? 4 : 2), *qs = qhp + 4;
            uint32_t qh = (uint32_t)qhp[0] | (uint32_t)qhp[1] << 8 | (uint32_t)qhp[2] << 16 | (uint32_t)qhp[3] << 24;
            for (int j = 0; j < 32; j++) {
                int q = (j < 16 ? qs[j] & 0xF : qs[j - 16] >> 4) | (int)((qh >> j) & 1) << 4;
                if (type == KERN_QT_Q5_0) dst[j] = d * (float)(q - 16);
                else { float a = d * (float)q; dst[j] = a + m; }
            }
            src += type == KERN_QT_Q5_1 ? 24 : 22;
        }
        break;
    case KERN_QT_Q4_K: case KERN_QT_Q5_K:
        for (size_t b = 0; b < nb; b++, dst += 256) {
            float d = kern_f16_to_f32(rd16(src)), dmin = kern_f16_to_f32(rd16(src + 2));
            const uint8_t *sc = src + 4, *qh = src + 16, *qs = type == KERN_QT_Q5_K ? src + 48 : src + 16;
            for (int s = 0; s < 8; s++) {
                int scale, mn;
                if (s < 4) { scale = sc[s] & 63; mn = sc[s + 4] & 63; }
                else { scale = (sc[s + 4] & 0xF) | ((sc[s - 4] >> 6) << 4); mn = (sc[s + 4] >> 4) | ((sc[s] >> 6) << 4); }
                float dl = d * (float)scale, ml = dmin * (float)mn;
                const uint8_t *q = qs + (s / 2) * 32;
                for (int l = 0; l < 32; l++) {
                    int v = (s & 1) ? q[l] >> 4 : q[l] & 0xF;
                    if (type == KERN_QT_Q5_K) v |= ((qh[l] >> s) & 1) << 4;
                    float a = dl * (float)v;
                    dst[s * 32 + l] = a - ml;
                }
            }
            src += type == KERN_QT_Q5_K ? 176 : 144;
        }
        break;
    case KERN_QT_Q6_K:
        for (size_t b = 0; b < nb; b++, src += 210, dst += 256) {
            const uint8_t *ql = src, *qh = src + 128;
            const int8_t *sc = (const int8_t *)(src + 192);
            float d = kern_f16_to_f32(rd16(src + 208));
            for (int i = 0; i < 256; i++) {
                int c = i / 128, r = i % 128;
                int lo = (ql[c * 64 + r % 64] >> (4 * (r / 64))) & 0xF;
                int hi = (qh[c * 32 + r % 32] >> (2 * (r / 32))) & 3;
                float ds = d * (float)sc[i / 16];
                dst[i] = ds * (float)((lo | hi << 4) - 32);
            }
        }
        break;
    default: return -1;
    }
    return 0;
}
