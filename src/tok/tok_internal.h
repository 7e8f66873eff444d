/* tok_internal.h: private to src/tok — the tokenizer struct, the byte-string hash, the character classes
 * and the pre-splitters. Nothing outside src/tok includes this. */
#ifndef GK_TOK_INTERNAL_H
#define GK_TOK_INTERNAL_H
#include "tok/tok.h"
#include <string.h>

enum { TOK_PAT_GPT2 = 0, TOK_PAT_CL100K = 1, TOK_PAT_GPTKIT = 2, TOK_PAT_CUSTOM = 3 };
enum { TOK_KIND_GAP = 0, TOK_KIND_RANK = 1, TOK_KIND_SPECIAL = 2 };
enum { TOK_C_OTHER = 0, TOK_C_L = 1, TOK_C_N = 2, TOK_C_WS = 3 };

/* Hash slot of the bytes -> rank map (ordinary tokens only). Tokens of up to 8 bytes are verified inline
 * (w holds their bytes, zero-padded), so a lookup costs one cache miss; longer ones are compared in the arena.
 * tag: the hash's high 24 bits << 8 | min(length, 255). rank -1 = empty. */
typedef struct { uint64_t w; uint32_t tag; int32_t rank; } tok_slot;

struct tok_tokenizer {
    char *name, *pattern;
    int pat;                      /* TOK_PAT_* */
    void *re;                     /* compiled custom pattern (TOK_PAT_CUSTOM, PCRE2), else NULL */
    size_t n_ranks;               /* ordinary tokens */
    size_t vocab_size;            /* 1 + largest id; arrays below have this many entries */
    size_t cap;                   /* capacity of the per-id arrays */
    uint64_t *off;                /* [cap] byte offset of token id in arena */
    uint32_t *len;                /* [cap] byte length */
    uint8_t *kind;                /* [cap] TOK_KIND_* */
    uint8_t *arena; size_t arena_n, arena_cap;
    int32_t byte_rank[256];
    int32_t *rank2;               /* [65536] rank of each 2-byte token (b0 << 8 | b1), -1 if none */
    tok_slot *slots; size_t mask; /* open addressing, power-of-two size, load <= 0.5 */
    uint64_t *filter;             /* [TOK_FILTER_BITS / 64] bit per hash: most failed lookups stop here (fits L2) */
    int hf;                       /* loaded from HF's tokenizer.json: added tokens match in any text */
    size_t n_spec;
    char **spec_text; size_t *spec_len; int32_t *spec_id;
};

static inline uint64_t tok_load_word(const uint8_t *p, size_t n) {   /* n <= 8 bytes, zero-padded */
    uint64_t w = 0;
    if (n == 8) { memcpy(&w, p, 8); return w; }
    if (n >= 4) {
        uint32_t a, b; memcpy(&a, p, 4); memcpy(&b, p + n - 4, 4);
        return (uint64_t)a | ((uint64_t)b << (8 * (n - 4)));   /* overlapping loads, little-endian */
    }
    for (size_t i = 0; i < n; i++) w |= (uint64_t)p[i] << (8 * i);
    return w;
}

static inline uint64_t tok_mix(uint64_t h) { h *= 0xd6e8feb86659fd93ull; h ^= h >> 32; h *= 0xd6e8feb86659fd93ull; h ^= h >> 29; return h; }

/* Hash of a byte string; for n <= 8 also its zero-padded word in *w (else *w = 0). */
static inline uint64_t tok_hash_w(const uint8_t *p, size_t n, uint64_t *w) {
    if (n <= 8) { *w = tok_load_word(p, n); return tok_mix(*w ^ (n * 0x9E3779B97F4A7C15ull)); }
    *w = 0;
    uint64_t h = 0x9E3779B97F4A7C15ull ^ (n * 0xff51afd7ed558ccdull);
    while (n > 8) {
        uint64_t x; memcpy(&x, p, 8);
        h = (h ^ x) * 0xbf58476d1ce4e5b9ull; h ^= h >> 29;
        p += 8; n -= 8;
    }
    return tok_mix(h ^ tok_load_word(p, n));
}
static inline uint64_t tok_hash(const uint8_t *p, size_t n) { uint64_t w; return tok_hash_w(p, n, &w); }
static inline uint32_t tok_tag(uint64_t h, size_t n) { return (uint32_t)(h >> 40) << 8 | (uint32_t)(n < 255 ? n : 255); }

#define TOK_FILTER_BITS (1u << 20)
static inline size_t tok_filter_bit(uint64_t h) { return (size_t)(h >> 24) & (TOK_FILTER_BITS - 1); }

/* Rank of the byte string (hash h, word w from tok_hash_w), or -1. */
static inline int32_t tok_rank_hw(const tok_tokenizer *t, const uint8_t *p, size_t n, uint64_t h, uint64_t w) {
    size_t fb = tok_filter_bit(h);
    if (!(t->filter[fb >> 6] >> (fb & 63) & 1)) return -1;
    size_t i = (size_t)h & t->mask;
    uint32_t tag = tok_tag(h, n);
    for (;;) {
        const tok_slot *s = &t->slots[i];
        if (s->rank < 0) return -1;
        if (s->tag == tag) {
            if (n <= 8) { if (s->w == w) return s->rank; }
            else if (t->len[s->rank] == n && !memcmp(t->arena + t->off[s->rank], p, n)) return s->rank;
        }
        i = (i + 1) & t->mask;
    }
}
static inline int32_t tok_rank_h(const tok_tokenizer *t, const uint8_t *p, size_t n, uint64_t h) {
    return tok_rank_hw(t, p, n, h, n <= 8 ? tok_load_word(p, n) : 0);
}
static inline int32_t tok_rank(const tok_tokenizer *t, const uint8_t *p, size_t n) {
    if (n == 1) return t->byte_rank[p[0]];
    if (n == 2) return t->rank2[(size_t)p[0] << 8 | p[1]];
    uint64_t w, h = tok_hash_w(p, n, &w);
    return tok_rank_hw(t, p, n, h, w);
}

/* character classes (tok_unicode.c, generated) */
extern const uint16_t tok_ucls_index[0x1100];
extern const uint8_t tok_ucls_blocks[][256];

/* Pre-splitters (tok_split.c): the end of the piece that starts at pos (< len). */
size_t tok_split_next_gpt2(const uint8_t *s, size_t len, size_t pos);
size_t tok_split_next_cl100k(const uint8_t *s, size_t len, size_t pos);
size_t tok_split_next_gptkit(const uint8_t *s, size_t len, size_t pos);
size_t tok_split_next(int pat, const uint8_t *s, size_t len, size_t pos);
size_t tok_safe_cut_pat(int pat, const uint8_t *s, size_t len);   /* see tok_safe_cut */
/* Is pattern one we split natively? Returns TOK_PAT_* or -1. Accepts "gpt2"/"r50k_base"/"cl100k"/
 * "cl100k_base", "gptkit" and the exact regex strings. */
int tok_pattern_kind(const char *pattern);

/* custom split patterns (tok_regex.c; PCRE2 when built with GK_HAVE_PCRE2, else compile fails clearly) */
void *tok_regex_compile(const char *pattern, gk_err *err);
void tok_regex_free(void *re);
void *tok_regex_md_new(void *re);      /* per-call match data */
void tok_regex_md_free(void *md);
size_t tok_regex_next(void *re, void *md, const uint8_t *s, size_t len, size_t pos);   /* end of the piece at pos */
/* Makes t use a split pattern given by name or regex: known ones natively, others through PCRE2. */
int tok_set_pattern(tok_tokenizer *t, const char *pattern, gk_err *err);

/* internal constructors used by the loaders and the trainer */
tok_tokenizer *tok_new_empty(const char *name, int pat);
/* Adds an ordinary token at rank id; returns 0, 1 if the id is taken, 2 if the bytes are already a token. */
int tok_add_rank(tok_tokenizer *t, const uint8_t *bytes, size_t n, int32_t id);
/* After all ranks: checks the 256 bytes are present and fills byte_rank. */
int tok_finish_ranks(tok_tokenizer *t, const char *what, gk_err *err);

#endif
