/* gguf.c: the GGUF container (llama.cpp's model file), read and written.
 *
 * Layout (version 2 and 3, little-endian):
 *   "GGUF" | u32 version | u64 n_tensors | u64 n_kv
 *   n_kv x   { string key | u32 value type | value }          string = u64 length + bytes (no NUL)
 *   n_tensors x { string name | u32 n_dims | u64 ne[n_dims] (ne[0] innermost) | u32 ggml type | u64 offset }
 *   padding to general.alignment (default 32), then the data section; tensor offsets are relative to it and
 *   multiples of the alignment.
 * Value types: u8 0, i8 1, u16 2, i16 3, u32 4, i32 5, f32 6, bool 7, string 8, array 9 (u32 element type,
 * u64 count, elements), u64 10, i64 11, f64 12.
 *
 * Files are untrusted: gguf_parse checks every length against the buffer with overflow-safe arithmetic before
 * anything is read (strings, array counts, tensor dims, types, block alignment of rows, offsets inside the data
 * section and aligned, no two tensors overlapping, no duplicate names), and names the field that lies.
 *
 * Tensor types read (dequantized to fp32 exactly as the `gguf` Python package's dequantize computes them, in
 * float32 with the same operation order: no fused multiply-adds, see the Makefile's -ffp-contract=off for
 * ISO C): F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K. Written: F32, F16, Q8_0, Q4_0 (the
 * reference quantizers' rounding), Q4_K (a plain min/max fit: quantize_q4k_block).
 *
 * LLaMA-family models: tensors named as llama.cpp's converter names them (token_embd, blk.N.attn_q, ...,
 * output_norm, output); general.architecture "llama" stores q and k rows permuted for its interleaved rotary
 * pairing (undone on load, redone on save), "qwen2" does not (it rotates halves as HF does).
 */
#include "model/model.h"
#include "model/model_internal.h"
#include "kern/kern.h"

#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---------------------------------------------------------------- types */


static const struct { int type; const char *name; size_t block, bytes; int read; } gg_types[] = {
    {GGUF_F32, "F32", 1, 4, 1},     {GGUF_F16, "F16", 1, 2, 1},      {GGUF_Q4_0, "Q4_0", 32, 18, 1},
    {GGUF_Q4_1, "Q4_1", 32, 20, 1}, {GGUF_Q5_0, "Q5_0", 32, 22, 1},  {GGUF_Q5_1, "Q5_1", 32, 24, 1},
    {GGUF_Q8_0, "Q8_0", 32, 34, 1}, {9, "Q8_1", 32, 36, 0},          {10, "Q2_K", 256, 84, 0},
    {11, "Q3_K", 256, 110, 0},      {GGUF_Q4_K, "Q4_K", 256, 144, 1}, {GGUF_Q5_K, "Q5_K", 256, 176, 1},
    {GGUF_Q6_K, "Q6_K", 256, 210, 1}, {15, "Q8_K", 256, 292, 0},     {GGUF_BF16, "BF16", 1, 2, 1},
};
#define N_GG_TYPES (sizeof gg_types / sizeof gg_types[0])

static int type_index(int type) {
    for (size_t i = 0; i < N_GG_TYPES; i++) if (gg_types[i].type == type) return (int)i;
    return -1;
}
const char *gguf_type_name(int type) { int i = type_index(type); return i < 0 ? "?" : gg_types[i].name; }
int gguf_type_parse(const char *s, int *type) {
    for (size_t i = 0; i < N_GG_TYPES; i++)
        if (!strcasecmp(s, gg_types[i].name)) { *type = gg_types[i].type; return 0; }
    return -1;
}

/* Bytes of n elements of a type (n a multiple of its block); 0 for an unknown type. */
size_t gguf_type_bytes(int type, size_t n) {
    int i = type_index(type);
    if (i < 0) return 0;
    return n / gg_types[i].block * gg_types[i].bytes;
}

/* ---------------------------------------------------------------- halves */

/* float -> IEEE half, round to nearest even (numpy's astype(float16)); overflow to inf, nan kept. */
static uint16_t f32_to_f16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000, ax = x & 0x7fffffffu;
    if (ax >= 0x7f800000u) return (uint16_t)(sign | 0x7c00 | (ax > 0x7f800000u ? 0x200 : 0));
    if (ax >= 0x477ff000u) return (uint16_t)(sign | 0x7c00);   /* >= 65520 rounds to inf */
    if (ax < 0x38800000u) {                                    /* below the smallest normal half: subnormal */
        if (ax < 0x33000000u) return (uint16_t)sign;           /* < 2^-25: rounds to 0 */
        uint32_t e = ax >> 23, m = (ax & 0x7fffff) | 0x800000;
        /* value = m 2^(e-150); in half-subnormal units of 2^-24 that is m >> (126 - e), rounded to even */
        uint32_t shift = 126 - e;
        uint32_t q = m >> shift, rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (q & 1))) q++;
        return (uint16_t)(sign | q);
    }
    uint32_t r = ax - 0x38000000u;                             /* rebias 127 -> 15 */
    uint32_t q = r >> 13, rem = r & 0x1fff;
    if (rem > 0x1000 || (rem == 0x1000 && (q & 1))) q++;
    return (uint16_t)(sign | q);
}

static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }

/* ---------------------------------------------------------------- dequantization */

/* The decoders live with the kernels (src/kern/quant.c), one per format; the type numbers are the same. */
int gguf_dequantize(int type, const uint8_t *src, size_t n, float *dst) {
    int ti = type_index(type);
    if (ti < 0 || !gg_types[ti].read || n % gg_types[ti].block) return -1;
    return kern_q_dequantize(type, src, n, dst);
}

/* ---------------------------------------------------------------- quantization (writer) */

/* One Q4_K super-block of 256 values (layout: src/kern/quant.c): x = d sc q - dmin mn per sub-block of 32. A plain
 * min/max fit, not llama.cpp's searched one (make_qkx2_quants): each sub-block's range [min(x, 0), max x] maps to
 * q in 0..15, its scale and min are rounded to 6 bits against the super-block's d and dmin, then q is rounded
 * against the scales as stored (halves), so the values decode to the nearest level the block can express. */
static int clamp_int(int v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : v; }
static void quantize_q4k_block(const float *x, uint8_t *out) {
    float scale[8], mn[8], smax = 0, mmax = 0;
    for (int s = 0; s < 8; s++) {
        float lo = 0, hi = x[s * 32];
        for (int l = 0; l < 32; l++) { float v = x[s * 32 + l]; lo = v < lo ? v : lo; hi = v > hi ? v : hi; }
        scale[s] = (hi - lo) / 15; mn[s] = -lo;
        smax = fmaxf(smax, scale[s]); mmax = fmaxf(mmax, mn[s]);
    }
    uint16_t hd = f32_to_f16(smax / 63), hm = f32_to_f16(mmax / 63);
    float d = kern_f16_to_f32(hd), dmin = kern_f16_to_f32(hm);
    int sc[8], m[8];
    for (int s = 0; s < 8; s++) {
        sc[s] = d > 0 ? clamp_int((int)roundf(scale[s] / d), 0, 63) : 0;
        m[s] = dmin > 0 ? clamp_int((int)roundf(mn[s] / dmin), 0, 63) : 0;
    }
    memset(out, 0, 144);
    out[0] = (uint8_t)hd; out[1] = (uint8_t)(hd >> 8); out[2] = (uint8_t)hm; out[3] = (uint8_t)(hm >> 8);
    uint8_t *p = out + 4, *qs = out + 16;
    for (int s = 0; s < 4; s++) {   /* 6-bit scales and mins: 0..3 whole in bytes 0..7, 4..7 split (low 4 | high 2) */
        p[s] = (uint8_t)(sc[s] | (sc[s + 4] >> 4) << 6);
        p[s + 4] = (uint8_t)(m[s] | (m[s + 4] >> 4) << 6);
        p[s + 8] = (uint8_t)((sc[s + 4] & 0xF) | (m[s + 4] & 0xF) << 4);
    }
    for (int s = 0; s < 8; s++) {
        float dl = d * (float)sc[s], ml = dmin * (float)m[s];
        for (int l = 0; l < 32; l++) {
            int q = dl > 0 ? clamp_int((int)roundf((x[s * 32 + l] + ml) / dl), 0, 15) : 0;
            qs[(s / 2) * 32 + l] |= (uint8_t)(s & 1 ? q << 4 : q);
        }
    }
}

/* round half away from zero (C roundf), as the reference quantizers */
static void quantize_row(int type, const float *x, size_t n, uint8_t *out) {
    switch (type) {
    case GGUF_F32: memcpy(out, x, n * 4); break;
    case GGUF_F16:
        for (size_t i = 0; i < n; i++) { uint16_t h = f32_to_f16(x[i]); out[2 * i] = (uint8_t)h; out[2 * i + 1] = (uint8_t)(h >> 8); }
        break;
    case GGUF_Q8_0:
        for (size_t b = 0; b < n / 32; b++, x += 32, out += 34) {
            float amax = 0;
            for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(x[j]));
            float d = amax / 127, id = d != 0 ? 1 / d : 0;
            uint16_t h = f32_to_f16(d);
            out[0] = (uint8_t)h; out[1] = (uint8_t)(h >> 8);
            for (int j = 0; j < 32; j++) out[2 + j] = (uint8_t)(int8_t)roundf(x[j] * id);
        }
        break;
    case GGUF_Q4_0:
        for (size_t b = 0; b < n / 32; b++, x += 32, out += 18) {
            float amax = 0, mx = 0;
            for (int j = 0; j < 32; j++) if (fabsf(x[j]) > amax) { amax = fabsf(x[j]); mx = x[j]; }
            float d = mx / -8, id = d != 0 ? 1 / d : 0;
            uint16_t h = f32_to_f16(d);
            out[0] = (uint8_t)h; out[1] = (uint8_t)(h >> 8);
            for (int j = 0; j < 16; j++) {
                float a = x[j] * id + 8.5f, c = x[j + 16] * id + 8.5f;
                int qa = (int)a, qc = (int)c;
                qa = qa < 0 ? 0 : qa > 15 ? 15 : qa; qc = qc < 0 ? 0 : qc > 15 ? 15 : qc;
                out[2 + j] = (uint8_t)(qa | qc << 4);
            }
        }
        break;
    case GGUF_Q4_K:
        for (size_t b = 0; b < n / 256; b++, x += 256, out += 144) quantize_q4k_block(x, out);
        break;
    }
}

/* ---------------------------------------------------------------- parser */

typedef struct { const uint8_t *p; size_t n, pos; const char *path; gk_err *err; } rd;

static int need(rd *r, size_t k, const char *what) {
    if (k > r->n - r->pos) return gk_errf(r->err, "%s: truncated at byte %zu reading %s", r->path, r->pos, what);
    return 0;
}
static int rd_u32(rd *r, uint32_t *v, const char *what) {
    if (need(r, 4, what)) return -1;
    memcpy(v, r->p + r->pos, 4); r->pos += 4; return 0;
}
static int rd_u64(rd *r, uint64_t *v, const char *what) {
    if (need(r, 8, what)) return -1;
    memcpy(v, r->p + r->pos, 8); r->pos += 8; return 0;
}
static int rd_str(rd *r, gguf_str *s, const char *what) {
    uint64_t len;
    if (rd_u64(r, &len, what)) return -1;
    if (len > r->n - r->pos)
        return gk_errf(r->err, "%s: %s claims a %llu-byte string at byte %zu, past the end of the file", r->path, what,
                       (unsigned long long)len, r->pos);
    s->p = (const char *)r->p + r->pos; s->n = (size_t)len;
    r->pos += (size_t)len;
    return 0;
}

static size_t scalar_size(uint32_t t) {
    switch (t) {
    case 0: case 1: case 7: return 1;
    case 2: case 3: return 2;
    case 4: case 5: case 6: return 4;
    case 10: case 11: case 12: return 8;
    default: return 0;
    }
}

/* Skips one value of type t (validated); depth limits nested arrays. */
static int skip_value(rd *r, uint32_t t, const char *key, int depth) {
    if (t == 8) { gguf_str s; return rd_str(r, &s, key); }
    if (t == 9) {
        uint32_t et; uint64_t cnt;
        if (rd_u32(r, &et, key) || rd_u64(r, &cnt, key)) return -1;
        if (depth > 0 && et == 9) return gk_errf(r->err, "%s: metadata \"%s\": arrays nested deeper than two levels", r->path, key);
        size_t es = scalar_size(et);
        if (es) {
            if (cnt > (r->n - r->pos) / es)
                return gk_errf(r->err, "%s: metadata \"%s\": array of %llu elements runs past the end of the file", r->path, key,
                               (unsigned long long)cnt);
            r->pos += (size_t)cnt * es;
            return 0;
        }
        if (et != 8 && et != 9) return gk_errf(r->err, "%s: metadata \"%s\": unknown array element type %u", r->path, key, et);
        if (cnt > (r->n - r->pos) / 8)
            return gk_errf(r->err, "%s: metadata \"%s\": array of %llu elements runs past the end of the file", r->path, key,
                           (unsigned long long)cnt);
        for (uint64_t i = 0; i < cnt; i++) if (skip_value(r, et, key, depth + 1)) return -1;
        return 0;
    }
    size_t es = scalar_size(t);
    if (!es) return gk_errf(r->err, "%s: metadata \"%s\": unknown value type %u", r->path, key, t);
    if (need(r, es, key)) return -1;
    r->pos += es;
    return 0;
}

static int cmp_off(const void *a, const void *b) {
    const gguf_tensor *x = *(const gguf_tensor *const *)a, *y = *(const gguf_tensor *const *)b;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

int gguf_parse(gguf_file *g, const uint8_t *data, size_t len, const char *path, gk_err *err) {
    memset(g, 0, sizeof *g);
    g->data = data; g->len = len;
    rd r = {data, len, 0, path ? path : "gguf", err};
    uint32_t magic, ver;
    if (rd_u32(&r, &magic, "the magic")) return -1;
    if (memcmp(data, "GGUF", 4)) return gk_errf(err, "%s: not a GGUF file (magic is not \"GGUF\")", r.path);
    if (rd_u32(&r, &ver, "the version")) return -1;
    if (ver != 2 && ver != 3) return gk_errf(err, "%s: GGUF version %u is not supported (2 or 3)", r.path, ver);
    uint64_t nt, nkv;
    if (rd_u64(&r, &nt, "the tensor count") || rd_u64(&r, &nkv, "the metadata count")) return -1;
    /* each kv takes >= 12 bytes, each tensor info >= 24: counts larger than the file allows are lies */
    if (nkv > (len - r.pos) / 12) return gk_errf(err, "%s: header claims %llu metadata entries, more than the file can hold", r.path, (unsigned long long)nkv);
    if (nt > (len - r.pos) / 24) return gk_errf(err, "%s: header claims %llu tensors, more than the file can hold", r.path, (unsigned long long)nt);
    g->kv = gk_calloc(nkv ? nkv : 1, sizeof *g->kv);
    g->alignment = 32;
    for (uint64_t i = 0; i < nkv; i++) {
        gguf_kv *kv = &g->kv[g->n_kv];
        if (rd_str(&r, &kv->key, "a metadata key") || rd_u32(&r, &kv->type, "a metadata type")) goto fail;
        char key[96];
        snprintf(key, sizeof key, "%.*s", (int)(kv->key.n < 90 ? kv->key.n : 90), kv->key.p);
        kv->at = r.pos;
        if (skip_value(&r, kv->type, key, 0)) goto fail;
        kv->end = r.pos;
        g->n_kv++;
        if (!strcmp(key, "general.alignment")) {
            uint32_t a;
            if (kv->type != 4) { gk_errf(err, "%s: general.alignment must be a u32", r.path); goto fail; }
            memcpy(&a, data + kv->at, 4);
            if (!a || (a & (a - 1)) || a > (1u << 20)) { gk_errf(err, "%s: general.alignment %u is not a power of two", r.path, a); goto fail; }
            g->alignment = a;
        }
    }
    g->tensors = gk_calloc(nt ? nt : 1, sizeof *g->tensors);
    for (uint64_t i = 0; i < nt; i++) {
        gguf_tensor *t = &g->tensors[g->n_tensors];
        uint32_t nd, ty;
        if (rd_str(&r, &t->name, "a tensor name") || rd_u32(&r, &nd, "a tensor's dims")) goto fail;
        int nl = (int)(t->name.n < 80 ? t->name.n : 80);
        if (nd < 1 || nd > 4) { gk_errf(err, "%s: tensor \"%.*s\" has %u dimensions (1 to 4)", r.path, nl, t->name.p, nd); goto fail; }
        t->n_dims = (int)nd;
        size_t numel = 1;
        for (uint32_t d = 0; d < nd; d++) {
            uint64_t ne;
            if (rd_u64(&r, &ne, "a tensor dim")) goto fail;
            if (ne < 1 || ne > ((uint64_t)1 << 40) || gk_mul_size(numel, (size_t)ne, &numel)) {
                gk_errf(err, "%s: tensor \"%.*s\": dimension %u is %llu", r.path, nl, t->name.p, d, (unsigned long long)ne); goto fail;
            }
            t->ne[d] = (size_t)ne;
        }
        for (int d = (int)nd; d < 4; d++) t->ne[d] = 1;
        if (rd_u32(&r, &ty, "a tensor type") || rd_u64(&r, &t->offset, "a tensor offset")) goto fail;
        int ti = type_index((int)ty);
        if (ti < 0) { gk_errf(err, "%s: tensor \"%.*s\" has unknown type %u", r.path, nl, t->name.p, ty); goto fail; }
        t->type = (int)ty;
        if (t->ne[0] % gg_types[ti].block) {
            gk_errf(err, "%s: tensor \"%.*s\": row length %zu is not a multiple of %s's block of %zu", r.path, nl, t->name.p,
                    t->ne[0], gg_types[ti].name, gg_types[ti].block);
            goto fail;
        }
        t->numel = numel;
        t->bytes = numel / gg_types[ti].block * gg_types[ti].bytes;
        for (size_t k = 0; k < g->n_tensors; k++)
            if (g->tensors[k].name.n == t->name.n && !memcmp(g->tensors[k].name.p, t->name.p, t->name.n)) {
                gk_errf(err, "%s: tensor \"%.*s\" appears twice", r.path, nl, t->name.p); goto fail;
            }
        g->n_tensors++;
    }
    size_t a = g->alignment;
    g->data_off = (r.pos + a - 1) / a * a;
    if (g->data_off > len) { gk_errf(err, "%s: truncated before the data section", r.path); goto fail; }
    size_t dlen = len - g->data_off;
    for (size_t i = 0; i < g->n_tensors; i++) {
        gguf_tensor *t = &g->tensors[i];
        int nl = (int)(t->name.n < 80 ? t->name.n : 80);
        if (t->offset % a) { gk_errf(err, "%s: tensor \"%.*s\": offset %llu is not a multiple of the alignment %zu", r.path, nl, t->name.p, (unsigned long long)t->offset, a); goto fail; }
        if (t->offset > dlen || t->bytes > dlen - t->offset) {
            gk_errf(err, "%s: tensor \"%.*s\": %zu bytes at offset %llu run past the end of the file (data section %zu bytes)",
                    r.path, nl, t->name.p, t->bytes, (unsigned long long)t->offset, dlen);
            goto fail;
        }
    }
    if (g->n_tensors > 1) {
        const gguf_tensor **s = gk_malloc(g->n_tensors * sizeof *s);
        for (size_t i = 0; i < g->n_tensors; i++) s[i] = &g->tensors[i];
        qsort(s, g->n_tensors, sizeof *s, cmp_off);
        for (size_t i = 1; i < g->n_tensors; i++)
            if (s[i - 1]->offset + s[i - 1]->bytes > s[i]->offset) {
                gk_errf(err, "%s: tensors \"%.*s\" and \"%.*s\" overlap", r.path, (int)s[i - 1]->name.n, s[i - 1]->name.p,
                        (int)s[i]->name.n, s[i]->name.p);
                free(s); goto fail;
            }
        free(s);
    }
    return 0;
fail:
    free(g->kv); free(g->tensors);
    memset(g, 0, sizeof *g);
    return -1;
}

int gguf_open(gguf_file *g, const char *path, gk_err *err) {
    memset(g, 0, sizeof *g);
    int fd = open(path, O_RDONLY);
    if (fd < 0) return gk_errf(err, "%s: cannot open", path);
    struct stat st;
    if (fstat(fd, &st) || st.st_size < 8) { close(fd); return gk_errf(err, "%s: not a GGUF file (too short)", path); }
    size_t len = (size_t)st.st_size;
    void *p = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (p == MAP_FAILED) return gk_errf(err, "%s: cannot map the file", path);
    if (gguf_parse(g, p, len, path, err)) { munmap(p, len); return -1; }
    g->mapped = p;
    g->path = gk_strdup(path);
    return 0;
}

void gguf_close(gguf_file *g) {
    if (!g) return;
    if (g->mapped) munmap(g->mapped, g->len);
    free(g->kv); free(g->tensors); free(g->path);
    memset(g, 0, sizeof *g);
}

const gguf_kv *gguf_find_kv(const gguf_file *g, const char *key) {
    size_t n = strlen(key);
    for (size_t i = 0; i < g->n_kv; i++)
        if (g->kv[i].key.n == n && !memcmp(g->kv[i].key.p, key, n)) return &g->kv[i];
    return NULL;
}
const gguf_tensor *gguf_find_tensor(const gguf_file *g, const char *name) {
    size_t n = strlen(name);
    for (size_t i = 0; i < g->n_tensors; i++)
        if (g->tensors[i].name.n == n && !memcmp(g->tensors[i].name.p, name, n)) return &g->tensors[i];
    return NULL;
}

/* A numeric metadata value as double (any integer or float type); -1 if absent or not numeric. */
int gguf_get_num(const gguf_file *g, const char *key, double *out) {
    const gguf_kv *kv = gguf_find_kv(g, key);
    if (!kv) return -1;
    const uint8_t *p = g->data + kv->at;
    switch (kv->type) {
    case 0: *out = p[0]; return 0;
    case 1: *out = (int8_t)p[0]; return 0;
    case 2: *out = rd16(p); return 0;
    case 3: *out = (int16_t)rd16(p); return 0;
    case 4: { uint32_t v; memcpy(&v, p, 4); *out = v; return 0; }
    case 5: { int32_t v; memcpy(&v, p, 4); *out = v; return 0; }
    case 6: { float v; memcpy(&v, p, 4); *out = v; return 0; }
    case 7: *out = p[0] != 0; return 0;
    case 10: { uint64_t v; memcpy(&v, p, 8); *out = (double)v; return 0; }
    case 11: { int64_t v; memcpy(&v, p, 8); *out = (double)v; return 0; }
    case 12: { double v; memcpy(&v, p, 8); *out = v; return 0; }
    default: return -1;
    }
}
/* A string metadata value (not NUL-terminated): 0, or -1 if absent or not a string. */
int gguf_get_str(const gguf_file *g, const char *key, gguf_str *out) {
    const gguf_kv *kv = gguf_find_kv(g, key);
    if (!kv || kv->type != 8) return -1;
    uint64_t n;
    memcpy(&n, g->data + kv->at, 8);
    out->p = (const char *)g->data + kv->at + 8; out->n = (size_t)n;
    return 0;
}

/* ---------------------------------------------------------------- LLaMA family <-> GGUF names */

/* GGUF name of table entry p, part k (q, k, v of the fused projection). */
static int gguf_parts(const gpt_model *m, const gpt_param *p, char names[3][96]) {
    if (m->cfg.arch == GPT_ARCH_GPT2) {   /* llama.cpp's gpt2 names; c_attn stays fused */
        static const struct { int role; const char *name; } g2[] = {
            {GPT_ROLE_LN1_W, "attn_norm.weight"}, {GPT_ROLE_LN1_B, "attn_norm.bias"}, {GPT_ROLE_QKV_W, "attn_qkv.weight"},
            {GPT_ROLE_QKV_B, "attn_qkv.bias"}, {GPT_ROLE_PROJ_W, "attn_output.weight"}, {GPT_ROLE_PROJ_B, "attn_output.bias"},
            {GPT_ROLE_LN2_W, "ffn_norm.weight"}, {GPT_ROLE_LN2_B, "ffn_norm.bias"}, {GPT_ROLE_FC_W, "ffn_up.weight"},
            {GPT_ROLE_FC_B, "ffn_up.bias"}, {GPT_ROLE_FCPROJ_W, "ffn_down.weight"}, {GPT_ROLE_FCPROJ_B, "ffn_down.bias"},
        };
        switch (p->role) {
        case GPT_ROLE_EMBED_TOK: snprintf(names[0], 96, "token_embd.weight"); return 1;
        case GPT_ROLE_EMBED_POS: snprintf(names[0], 96, "position_embd.weight"); return 1;
        case GPT_ROLE_LNF_W: snprintf(names[0], 96, "output_norm.weight"); return 1;
        case GPT_ROLE_LNF_B: snprintf(names[0], 96, "output_norm.bias"); return 1;
        case GPT_ROLE_LM_HEAD: snprintf(names[0], 96, "output.weight"); return 1;
        default:
            for (size_t i = 0; i < sizeof g2 / sizeof g2[0]; i++)
                if (g2[i].role == p->role) { snprintf(names[0], 96, "blk.%d.%s", p->layer, g2[i].name); return 1; }
        }
        return 0;
    }
    static const struct { int role; const char *name; } map[] = {
        {GPT_ROLE_LN1_W, "attn_norm.weight"}, {GPT_ROLE_PROJ_W, "attn_output.weight"}, {GPT_ROLE_LN2_W, "ffn_norm.weight"},
        {GPT_ROLE_FC_W, "ffn_up.weight"}, {GPT_ROLE_GATE_W, "ffn_gate.weight"}, {GPT_ROLE_FCPROJ_W, "ffn_down.weight"},
    };
    switch (p->role) {
    case GPT_ROLE_EMBED_TOK: snprintf(names[0], 96, "token_embd.weight"); return 1;
    case GPT_ROLE_LNF_W: snprintf(names[0], 96, "output_norm.weight"); return 1;
    case GPT_ROLE_LM_HEAD: snprintf(names[0], 96, "output.weight"); return 1;
    case GPT_ROLE_QKV_W: case GPT_ROLE_QKV_B: {
        const char *suf = p->role == GPT_ROLE_QKV_W ? "weight" : "bias";
        snprintf(names[0], 96, "blk.%d.attn_q.%s", p->layer, suf);
        snprintf(names[1], 96, "blk.%d.attn_k.%s", p->layer, suf);
        snprintf(names[2], 96, "blk.%d.attn_v.%s", p->layer, suf);
        return 3;
    }
    default:
        for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
            if (map[i].role == p->role) { snprintf(names[0], 96, "blk.%d.%s", p->layer, map[i].name); return 1; }
    }
    return 0;
}

static size_t part_rows(const gpt_model *m, const gpt_param *p, int nparts, int k) {
    if (nparts == 1) return p->shape[0];
    size_t hs = (size_t)(m->cfg.n_embd / m->cfg.n_head);
    return (size_t)(k == 0 ? m->cfg.n_head : gpt_config_n_kv_head(&m->cfg)) * hs;
}

/* llama.cpp's converter permutes q and k rows (and biases) of "llama" models for its interleaved rotary pairs:
 * within each head, HF row i * hs/2 + j (i in 0..1) becomes row 2 j + i. inverse = 1 undoes it. */
static void permute_rows(float *w, size_t rows, size_t cols, size_t hs, int inverse) {
    float *tmp = gk_malloc(rows * cols * sizeof(float));
    size_t half = hs / 2;
    for (size_t h = 0; h < rows / hs; h++)
        for (size_t i = 0; i < 2; i++)
            for (size_t j = 0; j < half; j++) {
                size_t hf = h * hs + i * half + j, gg = h * hs + 2 * j + i;
                if (inverse) memcpy(tmp + hf * cols, w + gg * cols, cols * sizeof(float));
                else memcpy(tmp + gg * cols, w + hf * cols, cols * sizeof(float));
            }
    memcpy(w, tmp, rows * cols * sizeof(float));
    free(tmp);
}

/* GPT-2's Conv1D block matrices are [in, out] in memory, GGUF rows are outputs: transpose [r, c] -> [c, r]. */
static void transpose(float *w, size_t r, size_t c) {
    float *tmp = gk_malloc(r * c * sizeof(float));
    for (size_t i = 0; i < r; i++)
        for (size_t j = 0; j < c; j++) tmp[j * r + i] = w[i * c + j];
    memcpy(w, tmp, r * c * sizeof(float));
    free(tmp);
}
static int gpt2_block_matrix(const gpt_model *m, const gpt_param *p) {
    return m->cfg.arch == GPT_ARCH_GPT2 && p->layer >= 0 && p->ndim == 2;
}

static int gguf_arch(const gguf_file *g, char *arch, size_t n) {
    gguf_str s;
    if (gguf_get_str(g, "general.architecture", &s)) return -1;
    snprintf(arch, n, "%.*s", (int)(s.n < n - 1 ? s.n : n - 1), s.p);
    return 0;
}

static int arch_num(const gguf_file *g, const char *arch, const char *key, double *v, int required, gk_err *err) {
    char k[128];
    snprintf(k, sizeof k, "%s.%s", arch, key);
    if (gguf_get_num(g, k, v)) return required ? gk_errf(err, "%s: missing metadata \"%s\"", g->path, k) : 1;
    return 0;
}

int gguf_load_config(const gguf_file *g, gpt_config *c, gk_err *err) {
    char arch[32];
    if (gguf_arch(g, arch, sizeof arch)) return gk_errf(err, "%s: no general.architecture", g->path);
    if (strcmp(arch, "llama") && strcmp(arch, "qwen2") && strcmp(arch, "gpt2"))
        return gk_errf(err, "%s: architecture \"%s\" is not supported (llama, qwen2, gpt2)", g->path, arch);
    if (!strcmp(arch, "gpt2")) {
        gpt_config_default(c);
        double L, C, H, I = 0, ctx = 1024, eps = 1e-5;
        if (arch_num(g, arch, "block_count", &L, 1, err) < 0 || arch_num(g, arch, "embedding_length", &C, 1, err) < 0 ||
            arch_num(g, arch, "attention.head_count", &H, 1, err) < 0 || arch_num(g, arch, "feed_forward_length", &I, 0, err) < 0 ||
            arch_num(g, arch, "context_length", &ctx, 0, err) < 0 || arch_num(g, arch, "attention.layer_norm_epsilon", &eps, 0, err) < 0)
            return -1;
        if (!(L >= 1 && L <= 4096 && C >= 1 && C <= 65536 && H >= 1 && H <= 4096 && I >= 0 && I <= (1 << 20) && ctx >= 1 &&
              ctx <= (1 << 20)) || L != floor(L) || C != floor(C) || H != floor(H) || I != floor(I) || ctx != floor(ctx))
            return gk_errf(err, "%s: model dimensions out of range", g->path);
        c->n_layer = (int)L; c->n_embd = (int)C; c->n_head = (int)H; c->n_inner = (int)I == 4 * (int)C ? 0 : (int)I;
        c->n_ctx = (int)ctx; c->ln_eps = (float)eps;
        const gguf_tensor *emb = gguf_find_tensor(g, "token_embd.weight");
        if (!emb || emb->n_dims != 2 || emb->ne[1] > (1 << 24)) return gk_errf(err, "%s: no usable 2-D token_embd.weight", g->path);
        c->vocab_size = (int)emb->ne[1];
        c->tied_head = gguf_find_tensor(g, "output.weight") == NULL;
        return gpt_config_validate(c, err) ? gk_err_prefix(err, "%s", g->path) : 0;
    }
    gpt_config_llama(c);
    double L, C, H, KV = 0, I, ctx = 2048, eps = 1e-5, theta = 10000, rd = 0;
    if (arch_num(g, arch, "block_count", &L, 1, err) < 0 || arch_num(g, arch, "embedding_length", &C, 1, err) < 0 ||
        arch_num(g, arch, "attention.head_count", &H, 1, err) < 0 || arch_num(g, arch, "feed_forward_length", &I, 1, err) < 0 ||
        arch_num(g, arch, "attention.head_count_kv", &KV, 0, err) < 0 || arch_num(g, arch, "context_length", &ctx, 0, err) < 0 ||
        arch_num(g, arch, "attention.layer_norm_rms_epsilon", &eps, 0, err) < 0 ||
        arch_num(g, arch, "rope.freq_base", &theta, 0, err) < 0 || arch_num(g, arch, "rope.dimension_count", &rd, 0, err) < 0)
        return -1;
    char k[128];
    snprintf(k, sizeof k, "%s.rope.scaling.type", arch);
    gguf_str st;
    if (!gguf_get_str(g, k, &st) && !(st.n == 4 && !memcmp(st.p, "none", 4)))
        return gk_errf(err, "%s: rope scaling \"%.*s\" is not supported", g->path, (int)st.n, st.p);
    const double lim = 1 << 20;
    if (!(L >= 1 && L <= 4096 && C >= 1 && C <= 65536 && H >= 1 && H <= 4096 && KV >= 0 && KV <= H && I >= 1 && I <= lim &&
          rd >= 0 && rd <= 65536) ||
        L != floor(L) || C != floor(C) || H != floor(H) || KV != floor(KV) || I != floor(I) || rd != floor(rd))
        return gk_errf(err, "%s: model dimensions out of range", g->path);
    if (!(ctx >= 1)) ctx = 2048;
    c->n_layer = (int)L; c->n_embd = (int)C; c->n_head = (int)H; c->n_kv_head = (int)KV; c->n_inner = (int)I;
    c->n_ctx = ctx >= 1 && ctx <= lim ? (int)ctx : (int)lim;
    c->ln_eps = (float)eps; c->rope_theta = (float)theta;
    if (rd && (int)rd != c->n_embd / c->n_head) return gk_errf(err, "%s: partial rotary (rope.dimension_count %g) is not supported", g->path, rd);
    c->qkv_bias = !strcmp(arch, "qwen2");
    const gguf_tensor *emb = gguf_find_tensor(g, "token_embd.weight");
    if (!emb || emb->n_dims != 2) return gk_errf(err, "%s: no 2-D token_embd.weight", g->path);
    if (emb->ne[1] > (1 << 24)) return gk_errf(err, "%s: vocabulary of %zu is too large", g->path, emb->ne[1]);
    c->vocab_size = (int)emb->ne[1];
    c->tied_head = gguf_find_tensor(g, "output.weight") == NULL;
    if (c->qkv_bias && !gguf_find_tensor(g, "blk.0.attn_q.bias")) c->qkv_bias = 0;   /* a qwen2 file without biases */
    return gpt_config_validate(c, err) ? gk_err_prefix(err, "%s", g->path) : 0;
}

/* Drops the mapped file's pages of tensor t from this process (they were copied or decoded): the load's peak memory
 * stays near one copy of the weights rather than the file plus the copy. The page cache keeps them. */
static void gguf_release(const gguf_file *g, const gguf_tensor *t) {
    if (!g->mapped) return;
    size_t pg = (size_t)sysconf(_SC_PAGESIZE), b = g->data_off + (size_t)t->offset, e = b + t->bytes;
    size_t b0 = (b + pg - 1) / pg * pg, e0 = e / pg * pg;   /* whole pages only: neighbours may share the edges */
    if (e0 > b0) madvise((char *)g->mapped + b0, e0 - b0, MADV_DONTNEED);
}

/* Rows of a "llama" q or k matrix in GGUF order -> HF order (permute_rows' inverse on whole rows of any type). */
static void unpermute_rows_bytes(uint8_t *dst, const uint8_t *src, size_t rows, size_t row_bytes, size_t hs) {
    size_t half = hs / 2;
    for (size_t h = 0; h < rows / hs; h++)
        for (size_t i = 0; i < 2; i++)
            for (size_t j = 0; j < half; j++)
                memcpy(dst + (h * hs + i * half + j) * row_bytes, src + (h * hs + 2 * j + i) * row_bytes, row_bytes);
}

/* Is table entry p a matrix the forward can multiply in its block format (inference loads)? */
static int keep_quantized(const gpt_param *p, const gguf_tensor *const *parts, int np) {
    int role_ok = p->role == GPT_ROLE_QKV_W || p->role == GPT_ROLE_PROJ_W || p->role == GPT_ROLE_FC_W ||
                  p->role == GPT_ROLE_GATE_W || p->role == GPT_ROLE_FCPROJ_W || p->role == GPT_ROLE_EMBED_TOK ||
                  p->role == GPT_ROLE_LM_HEAD;
    if (!role_ok || p->ndim != 2) return 0;
    for (int k = 0; k < np; k++)
        if (!kern_qtype_matmul(parts[k]->type) || parts[k]->n_dims != 2) return 0;
    return 1;
}

/* The first non-finite value of n values of a tensor in its format (decoded in chunks), or -1 with none. */
static long long first_nonfinite_q(int type, const uint8_t *src, size_t n, size_t row, float *bad) {
    size_t rb = gguf_type_bytes(type, row), rows_per = row >= 65536 ? 1 : 65536 / row;
    float *buf = gk_malloc(rows_per * row * sizeof(float));
    long long at = -1;
    for (size_t r0 = 0; r0 * row < n && at < 0; r0 += rows_per) {
        size_t k = (n / row - r0) < rows_per ? n / row - r0 : rows_per;
        gguf_dequantize(type, src + r0 * rb, k * row, buf);
        size_t i = gk_first_nonfinite(buf, k * row);
        if (i < k * row) { at = (long long)(r0 * row + i); *bad = buf[i]; }
    }
    free(buf);
    return at;
}

/* Copies a quantized entry's parts (the file's tensors) into m->qdata at *off (advanced, 64-byte aligned after)
 * and describes them in q; the values are checked finite first. */
static int load_quantized(gpt_model *m, const gguf_file *g, const gguf_tensor *const *parts, int np, int permuted,
                          gpt_qweight *q, size_t *off, gk_err *err) {
    size_t hs = (size_t)(m->cfg.n_embd / m->cfg.n_head);
    int same = 1;
    for (int k = 0; k < np; k++) {
        const gguf_tensor *t = parts[k];
        const uint8_t *src = g->data + g->data_off + t->offset;
        float bad = 0;
        long long at = first_nonfinite_q(t->type, src, t->numel, t->ne[0], &bad);
        if (at >= 0)
            return gk_errf(err, "%s: tensor \"%.*s\" holds a non-finite value (%g at index %lld)", g->path, (int)t->name.n,
                           t->name.p, (double)bad, at);
        uint8_t *dst = m->qdata + *off;
        if (permuted && np == 3 && k < 2) {   /* undo llama.cpp's q/k row order, whole rows (blocks never straddle rows) */
            uint8_t *tmp = gk_malloc(t->bytes);
            unpermute_rows_bytes(tmp, src, t->ne[1], t->bytes / t->ne[1], hs);
            kern_upload(m->be, dst, tmp, t->bytes);
            free(tmp);
        } else {
            kern_upload(m->be, dst, src, t->bytes);
        }
        gguf_release(g, t);
        q->part[k] = (kern_qmat){.type = t->type, .data = dst, .rows = t->ne[1], .cols = t->ne[0]};
        *off += t->bytes;
        if (t->type != parts[0]->type) same = 0;
    }
    q->nparts = np;
    if (same && np > 1) {   /* q | k | v of one type: one matrix, one call */
        size_t rows = 0;
        for (int k = 0; k < np; k++) rows += q->part[k].rows;
        q->part[0].rows = rows;
        q->nparts = 1;
    }
    *off = (*off + 63) / 64 * 64;
    return 0;
}

/* gpt_load_gguf (quant 0) and gpt_load_gguf_quant (quant 1). */
static gpt_model *load_gguf(const char *path, int quant, gk_err *err) {
    gguf_file g;
    if (gguf_open(&g, path, err)) return NULL;
    gpt_config c;
    if (gguf_load_config(&g, &c, err)) { gguf_close(&g); return NULL; }
    char arch[32];
    gguf_arch(&g, arch, sizeof arch);
    int permuted = !strcmp(arch, "llama");
    gpt_model *m = gpt_create_table(&c, NULL);
    if (!kern_quant_supported(m->be)) quant = 0;   /* a backend without the quantized ops runs fp32 weights */
    const gguf_tensor *(*src)[3] = gk_calloc(m->n_table, sizeof *src);
    char names[3][96];
    int rc = 0;
    for (size_t i = 0; i < m->n_table && !rc; i++) {
        const gpt_param *p = &m->table[i];
        int np = gguf_parts(m, p, names);
        for (int k = 0; k < np && !rc; k++) {
            const gguf_tensor *t = gguf_find_tensor(&g, names[k]);
            if (!t) { rc = gk_errf(err, "%s: missing tensor \"%s\"", path, names[k]); break; }
            size_t rows = part_rows(m, p, np, k), cols = p->ndim == 2 ? p->shape[1] : 1;
            if (gpt2_block_matrix(m, p)) { size_t tmp = rows; rows = cols; cols = tmp; }   /* stored transposed */
            /* GGUF dims are innermost first: a [rows, cols] matrix is ne = {cols, rows} */
            int ok = p->ndim == 2 ? t->n_dims == 2 && t->ne[0] == cols && t->ne[1] == rows : t->n_dims == 1 && t->ne[0] == rows;
            if (!ok) { rc = gk_errf(err, "%s: tensor \"%s\" has dims [%zu, %zu], the metadata implies [%zu, %zu]", path, names[k],
                                    t->ne[0], t->ne[1], p->ndim == 2 ? cols : rows, p->ndim == 2 ? rows : (size_t)1); break; }
            if (!gg_types[type_index(t->type)].read) { rc = gk_errf(err, "%s: tensor \"%s\" has type %s, which this build cannot read", path, names[k], gguf_type_name(t->type)); break; }
            src[i][k] = t;
        }
    }
    /* Which entries stay quantized; the fp32 ones get compact offsets in params (quantized ones have none). */
    size_t qbytes = 0, nfp32 = 0;
    if (!rc && quant) {
        m->qw = gk_calloc(m->n_table, sizeof *m->qw);
        for (size_t i = 0; i < m->n_table; i++) {
            gpt_param *p = &m->table[i];
            int np = gguf_parts(m, p, names);
            if (keep_quantized(p, src[i], np)) {
                m->qw[i].nparts = np;   /* marked; filled below */
                for (int k = 0; k < np; k++) qbytes += src[i][k]->bytes;
                qbytes = (qbytes + 63) / 64 * 64;
                p->offset = GPT_NO_OFFSET;
            } else {
                p->offset = nfp32;
                nfp32 += p->numel;
            }
        }
        m->params = kern_alloc(m->be, (nfp32 ? nfp32 : 1) * sizeof(float));
        m->qdata = kern_alloc(m->be, qbytes ? qbytes : 64);
    }
    if (!rc) gpt_alloc_params(m);
    float *host = NULL;
    size_t hs = (size_t)(c.n_embd / c.n_head), qoff = 0;
    for (size_t i = 0; i < m->n_table && !rc; i++) {
        const gpt_param *p = &m->table[i];
        int np = gguf_parts(m, p, names);
        if (m->qw && m->qw[i].nparts) {
            rc = load_quantized(m, &g, src[i], np, permuted, &m->qw[i], &qoff, err);
            continue;
        }
        host = gk_realloc(host, p->numel * sizeof(float));
        size_t row0 = 0, cols = p->ndim == 2 ? p->shape[1] : 1;
        for (int k = 0; k < np; k++) {
            const gguf_tensor *t = src[i][k];
            size_t rows = part_rows(m, p, np, k);
            float *dst = host + row0 * cols;
            gguf_dequantize(t->type, g.data + g.data_off + t->offset, t->numel, dst);
            gguf_release(&g, t);
            size_t bad = gk_first_nonfinite(dst, t->numel);
            if (bad < t->numel) {
                rc = gk_errf(err, "%s: tensor \"%.*s\" holds a non-finite value (%g at index %zu)", path, (int)t->name.n, t->name.p,
                             (double)dst[bad], bad);
                break;
            }
            if (permuted && np == 3 && k < 2) permute_rows(dst, rows, cols, hs, 1);
            if (gpt2_block_matrix(m, p)) transpose(dst, p->shape[1], p->shape[0]);   /* [out, in] -> Conv1D [in, out] */
            row0 += rows;
        }
        if (!rc) kern_upload(m->be, m->params + p->offset, host, p->numel * sizeof(float));
    }
    free(host); free(src);
    gguf_close(&g);
    if (rc) { gpt_free(m); return NULL; }
    return m;
}

gpt_model *gpt_load_gguf(const char *path, gk_err *err) { return load_gguf(path, 0, err); }
gpt_model *gpt_load_gguf_quant(const char *path, gk_err *err) { return load_gguf(path, 1, err); }

/* The inverse of the quantized load's layout: every tensor fp32 at its table offset (entries in table order). */
void gpt_dequantize_weights(gpt_model *m) {
    if (!m->qw) return;
    size_t total = 0;
    for (size_t i = 0; i < m->n_table; i++) total += m->table[i].numel;
    GK_CHECK(total == m->num_params, "gpt_dequantize_weights: table holds %zu floats, model %zu", total, m->num_params);
    float *params = kern_alloc(m->be, total * sizeof(float)), *host = NULL;
    uint8_t *bytes = NULL;
    size_t off = 0;
    for (size_t i = 0; i < m->n_table; i++) {
        gpt_param *p = &m->table[i];
        const gpt_qweight *q = &m->qw[i];
        if (q->nparts) {
            host = gk_realloc(host, p->numel * sizeof(float));
            size_t row0 = 0;
            for (int k = 0; k < q->nparts; k++) {
                const kern_qmat *w = &q->part[k];
                size_t nb = w->rows * kern_qtype_row_bytes(w->type, w->cols);
                bytes = gk_realloc(bytes, nb);
                kern_download(m->be, bytes, w->data, nb);
                kern_q_dequantize(w->type, bytes, w->rows * w->cols, host + row0 * w->cols);
                row0 += w->rows;
            }
            if (gpt2_block_matrix(m, p)) transpose(host, p->shape[1], p->shape[0]);   /* [out, in] -> Conv1D [in, out] */
            kern_upload(m->be, params + off, host, p->numel * sizeof(float));
        } else {
            kern_copy(m->be, params + off, m->params + p->offset, p->numel * sizeof(float));
        }
        p->offset = off;
        off += p->numel;
    }
    free(host); free(bytes);
    kern_free(m->be, m->params);
    kern_free(m->be, m->qdata);
    free(m->qw);
    m->params = params;
    m->qdata = NULL;
    m->qw = NULL;
}

/* ---------------------------------------------------------------- writer */

typedef struct { uint8_t *p; size_t n, cap; } wbuf;
static void wput(wbuf *b, const void *d, size_t n) {
    if (b->n + n > b->cap) { b->cap = (b->n + n) * 2 + 4096; b->p = gk_realloc(b->p, b->cap); }
    memcpy(b->p + b->n, d, n); b->n += n;
}
static void w32(wbuf *b, uint32_t v) { wput(b, &v, 4); }
static void w64(wbuf *b, uint64_t v) { wput(b, &v, 8); }
static void wstr(wbuf *b, const char *s) { w64(b, strlen(s)); wput(b, s, strlen(s)); }
static void kv_str(wbuf *b, const char *k, const char *v) { wstr(b, k); w32(b, 8); wstr(b, v); }
static void kv_u32(wbuf *b, const char *k, uint32_t v) { wstr(b, k); w32(b, 4); w32(b, v); }
static void kv_f32(wbuf *b, const char *k, float v) { wstr(b, k); w32(b, 6); wput(b, &v, 4); }

int gpt_export_gguf(const gpt_model *m, const char *path, int type, const gguf_extra_kv *extra, size_t n_extra, gk_err *err) {
    const gpt_config *c = &m->cfg;
    GK_CHECK(!m->qw, "gpt_export_gguf of a model holding quantized weights (gpt_dequantize_weights first)");
    if (c->score_head) return gk_errf(err, "GGUF export: a model with a score head (reward model) is not written");
    if (c->rope_scaling != GPT_ROPE_SCALE_NONE) return gk_errf(err, "GGUF export: llama3 rope scaling is not written yet");
    if (type != GGUF_F32 && type != GGUF_F16 && type != GGUF_Q8_0 && type != GGUF_Q4_0 && type != GGUF_Q4_K)
        return gk_errf(err, "GGUF export: type %s is not written (f32, f16, q8_0, q4_0, q4_k)", gguf_type_name(type));
    int gpt2 = c->arch == GPT_ARCH_GPT2;
    const char *arch = gpt2 ? "gpt2" : c->qkv_bias ? "qwen2" : "llama";
    int permute = !gpt2 && !c->qkv_bias;
    size_t hs = (size_t)(c->n_embd / c->n_head);
    /* tensors: name, dims, type, data (quantized into one blob) */
    typedef struct { char name[300]; size_t rows, cols; int ndim, type; size_t off, bytes; } wt;
    wt *ts = gk_calloc(m->n_table * 3, sizeof *ts);
    size_t nts = 0;
    float *host = gk_malloc(m->num_params * sizeof(float));
    kern_download(m->be, host, m->params, m->num_params * sizeof(float));
    wbuf data = {0};
    char names[3][96];
    const size_t A = 32;
    for (size_t i = 0; i < m->n_table; i++) {
        const gpt_param *p = &m->table[i];
        int np = gguf_parts(m, p, names);
        size_t row0 = 0, cols = p->ndim == 2 ? p->shape[1] : 1;
        for (int k = 0; k < np; k++) {
            wt *t = &ts[nts++];
            snprintf(t->name, sizeof t->name, "%s", names[k]);
            t->rows = part_rows(m, p, np, k); t->cols = cols; t->ndim = p->ndim;
            int tr = gpt2_block_matrix(m, p);
            if (tr) { t->rows = p->shape[1]; t->cols = p->shape[0]; }   /* Conv1D [in, out] -> [out, in] */
            /* norms and biases stay f32 (as llama.cpp's converter does); matrices whose rows do not fill blocks too */
            t->type = p->ndim == 1 ? GGUF_F32 : type;
            if (t->type == GGUF_Q4_K && t->cols % 256) t->type = GGUF_Q8_0;   /* rows that do not fill super-blocks */
            if ((t->type == GGUF_Q8_0 || t->type == GGUF_Q4_0) && t->cols % 32) t->type = GGUF_F16;
            size_t n = t->rows * t->cols;
            float *w = gk_malloc(n * sizeof(float));
            memcpy(w, host + p->offset + row0 * cols, n * sizeof(float));
            if (tr) transpose(w, p->shape[0], p->shape[1]);
            if (permute && np == 3 && k < 2) permute_rows(w, t->rows, p->ndim == 2 ? cols : 1, hs, 0);
            t->bytes = gguf_type_bytes(t->type, n);
            while (data.n % A) { uint8_t z = 0; wput(&data, &z, 1); }
            t->off = data.n;
            uint8_t *q = gk_malloc(t->bytes);
            quantize_row(t->type, w, n, q);
            wput(&data, q, t->bytes);
            free(q); free(w);
            row0 += t->rows;
        }
    }
    free(host);
    wbuf h = {0};
    wput(&h, "GGUF", 4);
    w32(&h, 3);
    w64(&h, nts);
    size_t nkv_at = h.n;
    w64(&h, 0);
    uint64_t nkv = 0;
    char k[128];
#define KEY(s) (snprintf(k, sizeof k, "%s.%s", arch, s), k)
    kv_str(&h, "general.architecture", arch); nkv++;
    kv_str(&h, "general.name", "gptkit"); nkv++;
    kv_u32(&h, "general.alignment", (uint32_t)A); nkv++;
    kv_u32(&h, "general.file_type", type == GGUF_F32 ? 0 : type == GGUF_F16 ? 1 : type == GGUF_Q8_0 ? 7 : type == GGUF_Q4_K ? 14 : 2); nkv++;
    kv_u32(&h, KEY("context_length"), (uint32_t)c->n_ctx); nkv++;
    kv_u32(&h, KEY("embedding_length"), (uint32_t)c->n_embd); nkv++;
    kv_u32(&h, KEY("block_count"), (uint32_t)c->n_layer); nkv++;
    kv_u32(&h, KEY("feed_forward_length"), (uint32_t)gpt_config_n_inner(c)); nkv++;
    kv_u32(&h, KEY("attention.head_count"), (uint32_t)c->n_head); nkv++;
    if (gpt2) {
        kv_f32(&h, KEY("attention.layer_norm_epsilon"), c->ln_eps); nkv++;
    } else {
        kv_u32(&h, KEY("attention.head_count_kv"), (uint32_t)gpt_config_n_kv_head(c)); nkv++;
        kv_u32(&h, KEY("rope.dimension_count"), (uint32_t)hs); nkv++;
        kv_f32(&h, KEY("rope.freq_base"), c->rope_theta); nkv++;
        kv_f32(&h, KEY("attention.layer_norm_rms_epsilon"), c->ln_eps); nkv++;
        kv_u32(&h, KEY("vocab_size"), (uint32_t)c->vocab_size); nkv++;
    }
#undef KEY
    int has_tok = 0;
    for (size_t i = 0; i < n_extra; i++) {
        wput(&h, extra[i].bytes, extra[i].n); nkv++;
        static const char tk[] = "tokenizer.ggml.model";
        uint64_t kl;
        memcpy(&kl, extra[i].bytes, 8);
        if (kl == sizeof tk - 1 && !memcmp(extra[i].bytes + 8, tk, kl)) has_tok = 1;
    }
    if (!has_tok) { kv_str(&h, "tokenizer.ggml.model", "none"); nkv++; }   /* llama.cpp loads a model without a vocabulary so */
    memcpy(h.p + nkv_at, &nkv, 8);
    for (size_t i = 0; i < nts; i++) {
        wt *t = &ts[i];
        wstr(&h, t->name);
        w32(&h, (uint32_t)t->ndim);
        if (t->ndim == 2) { w64(&h, t->cols); w64(&h, t->rows); } else w64(&h, t->rows);
        w32(&h, (uint32_t)t->type);
        w64(&h, t->off);
    }
    while (h.n % A) { uint8_t z = 0; wput(&h, &z, 1); }
    wput(&h, data.p, data.n);
    int rc = gk_write_file_atomic(path, h.p, h.n, err);
    free(h.p); free(data.p); free(ts);
    return rc;
}

/* ---------------------------------------------------------------- helpers for extra metadata (tokenizer) */

void gguf_kv_string(gguf_extra_kv *kv, const char *key, const char *val) {
    wbuf b = {0};
    kv_str(&b, key, val);
    kv->bytes = b.p; kv->n = b.n;
}
void gguf_kv_u32(gguf_extra_kv *kv, const char *key, uint32_t val) {
    wbuf b = {0};
    kv_u32(&b, key, val);
    kv->bytes = b.p; kv->n = b.n;
}
void gguf_kv_str_array(gguf_extra_kv *kv, const char *key, const char *const *vals, const size_t *lens, size_t n) {
    wbuf b = {0};
    wstr(&b, key); w32(&b, 9); w32(&b, 8); w64(&b, n);
    for (size_t i = 0; i < n; i++) { w64(&b, lens[i]); wput(&b, vals[i], lens[i]); }
    kv->bytes = b.p; kv->n = b.n;
}
void gguf_kv_i32_array(gguf_extra_kv *kv, const char *key, const int32_t *vals, size_t n) {
    wbuf b = {0};
    wstr(&b, key); w32(&b, 9); w32(&b, 5); w64(&b, n);
    wput(&b, vals, n * 4);
    kv->bytes = b.p; kv->n = b.n;
}

/* ---------------------------------------------------------------- info */

int gguf_print_info(const char *path, FILE *out, gk_err *err) {
    gguf_file g;
    if (gguf_open(&g, path, err)) return -1;
    char arch[32] = "?";
    gguf_arch(&g, arch, sizeof arch);
    gpt_config c;
    gk_err e2;
    int cfg_ok = gguf_load_config(&g, &c, &e2) == 0;
    fprintf(out, "file          %s (GGUF, %zu metadata entries, %zu tensors, alignment %zu)\n", path, g.n_kv, g.n_tensors, g.alignment);
    fprintf(out, "architecture  %s\n", arch);
    if (cfg_ok) {
        gpt_model *t = gpt_create_table(&c, NULL);
        fprintf(out, "sizes         %d layers, %d heads (%d key/value), width %d, FFN %d, vocab %d, context %d\n", c.n_layer,
                c.n_head, gpt_config_n_kv_head(&c), c.n_embd, gpt_config_n_inner(&c), c.vocab_size, c.n_ctx);
        fprintf(out, "parameters    %zu (%.1fM)%s\n", t->num_params, (double)t->num_params / 1e6, c.tied_head ? ", tied head" : "");
        if (c.arch == GPT_ARCH_LLAMA)
            fprintf(out, "rope          theta %g, rms eps %g%s\n", (double)c.rope_theta, (double)c.ln_eps, c.qkv_bias ? ", q/k/v bias" : "");
        gpt_free(t);
    } else {
        fprintf(out, "config        not runnable here: %s\n", e2.msg);
    }
    gguf_str s;
    if (!gguf_get_str(&g, "tokenizer.ggml.model", &s)) {
        gguf_str pre = {"", 0};
        gguf_get_str(&g, "tokenizer.ggml.pre", &pre);
        const gguf_kv *tk = gguf_find_kv(&g, "tokenizer.ggml.tokens");
        uint64_t ntok = 0;
        if (tk && tk->type == 9) memcpy(&ntok, g.data + tk->at + 4, 8);   /* array: element type u32, count u64 */
        fprintf(out, "tokenizer     %.*s%s%.*s, %llu tokens\n", (int)s.n, s.p, pre.n ? " / " : "", (int)pre.n, pre.p,
                (unsigned long long)ntok);
    }
    if (!gguf_get_str(&g, "tokenizer.chat_template", &s)) fprintf(out, "chat template %zu bytes\n", s.n);
    size_t counts[32] = {0};
    for (size_t i = 0; i < g.n_tensors; i++) { int ti = type_index(g.tensors[i].type); if (ti >= 0) counts[ti]++; }
    fprintf(out, "tensor types ");
    for (size_t i = 0; i < N_GG_TYPES; i++) if (counts[i]) fprintf(out, " %s x%zu", gg_types[i].name, counts[i]);
    fprintf(out, "\n");
    for (size_t i = 0; i < g.n_tensors; i++) {
        const gguf_tensor *t = &g.tensors[i];
        fprintf(out, "  %-36.*s %-5s [", (int)t->name.n, t->name.p, gguf_type_name(t->type));
        for (int d = 0; d < t->n_dims; d++) fprintf(out, "%s%zu", d ? ", " : "", t->ne[d]);
        fprintf(out, "]\n");
    }
    gguf_close(&g);
    return 0;
}
