/* tok_internal.h: private to src/tok — the tokenizer struct, the byte-string hash, the character classes
 * and the pre-splitters. Nothing outside src/tok includes this. */
#ifndef GK_TOK_INTERNAL_H
#define GK_TOK_INTERNAL_H
#include "tok/tok.h"
#include <string.h>

enum { TOK_PAT_GPT2 = 0, TOK_PAT_CL100K = 1, TOK_PAT_GPTKIT = 2 };
enum { TOK_KIND_GAP = 0, TOK_KIND_RANK = 1, TOK_KIND_SPECIAL = 2 };
enum { TOK_C_OTHER = 0, TOK_C_L = 1, TOK_C_N = 2, TOK_C_WS = 3 };

/* hash slot of the bytes -> rank map (ordinary tokens only); rank -1 = empty */
typedef struct { uint32_t h; int32_t rank; } tok_slot;

struct tok_tokenizer {
    char *name, *pattern;
    int pat;                      /* TOK_PAT_* */
    size_t n_ranks;               /* ordinary tokens */
    size_t vocab_size;            /* 1 + largest id; arrays below have this many entries */
    size_t cap;                   /* capacity of the per-id arrays */
    uint64_t *off;                /* [cap] byte offset of token id in arena */
    uint32_t *len;                /* [cap] byte length */
    uint8_t *kind;                /* [cap] TOK_KIND_* */
    uint8_t *arena; size_t arena_n, arena_cap;
    int32_t byte_rank[256];
    tok_slot *slots; size_t mask; /* open addressing, power-of-two size, load <= 0.5 */
    size_t n_spec;
    char **spec_text; size_t *spec_len; int32_t *spec_id;
};

static inline uint64_t tok_hash(const uint8_t *p, size_t n) {
    uint64_t h = 0x9E3779B97F4A7C15ull ^ (n * 0xff51afd7ed558ccdull);
    while (n >= 8) {
        uint64_t w; memcpy(&w, p, 8);
        h = (h ^ w) * 0xbf58476d1ce4e5b9ull; h ^= h >> 29;
        p += 8; n -= 8;
    }
    if (n) {
        uint64_t w = 0;
        for (size_t i = 0; i < n; i++) w |= (uint64_t)p[i] << (8 * i);
        h = (h ^ w) * 0x94d049bb133111ebull; h ^= h >> 31;
    }
    h *= 0xd6e8feb86659fd93ull; h ^= h >> 32;
    return h;
}

/* Rank of the byte string, or -1. */
static inline int32_t tok_rank_h(const tok_tokenizer *t, const uint8_t *p, size_t n, uint64_t h) {
    size_t i = (size_t)h & t->mask;
    uint32_t h32 = (uint32_t)(h >> 32);
    for (;;) {
        const tok_slot *s = &t->slots[i];
        if (s->rank < 0) return -1;
        if (s->h == h32 && t->len[s->rank] == n && !memcmp(t->arena + t->off[s->rank], p, n)) return s->rank;
        i = (i + 1) & t->mask;
    }
}
static inline int32_t tok_rank(const tok_tokenizer *t, const uint8_t *p, size_t n) {
    if (n == 1) return t->byte_rank[p[0]];
    return tok_rank_h(t, p, n, tok_hash(p, n));
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

/* internal constructors used by the loaders and the trainer */
tok_tokenizer *tok_new_empty(const char *name, int pat);
/* Adds an ordinary token at rank id; returns 0, 1 if the id is taken, 2 if the bytes are already a token. */
int tok_add_rank(tok_tokenizer *t, const uint8_t *bytes, size_t n, int32_t id);
/* After all ranks: checks the 256 bytes are present and fills byte_rank. */
int tok_finish_ranks(tok_tokenizer *t, const char *what, gk_err *err);

/* base64 (standard alphabet, padded) */
size_t tok_b64_encode(const uint8_t *in, size_t n, char *out);   /* out needs 4*((n+2)/3) bytes; returns length */
int tok_b64_decode(const char *in, size_t n, uint8_t *out, size_t *outn);   /* -1 on bad input */
#endif
