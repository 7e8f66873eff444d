/* tok.c: the tokenizer object — construction, queries, special tokens, encode (pre-split + rank merge with a
 * piece cache), decode and the incremental UTF-8-safe decoder. Loading and saving live in tok_io.c,
 * training in tok_train.c, the pre-splitters in tok_split.c.
 *
 * Merge inside a piece (tiktoken's rule): repeatedly merge the adjacent pair of parts whose concatenated bytes
 * have the lowest rank, leftmost on ties, until no adjacent concatenation is a token. Short pieces use the
 * plain O(n^2) scan over an array (fast for the usual 2-20 bytes); long pieces (runs of spaces, digits, long
 * words) use a linked list plus a min-heap keyed (rank, byte offset), O(n log n), which picks exactly the same
 * pair at every step because byte offsets of part starts never change. */
#include "tok/tok_internal.h"
#include <stdlib.h>

const char *const tok_chat_specials[TOK_N_CHAT_SPECIALS] = {
    TOK_EOT, TOK_SYSTEM, TOK_USER, TOK_ASSISTANT, TOK_END,
    TOK_TOOL_CALL, TOK_TOOL_CALL_END, TOK_TOOL_RESULT, TOK_TOOL_RESULT_END,
};

/* ---------------------------------------------------------------- growable arrays */
void tok_ids_free(tok_ids *v) { if (v) { free(v->ids); v->ids = NULL; v->n = v->cap = 0; } }
void tok_bytes_free(tok_bytes *b) { if (b) { free(b->data); b->data = NULL; b->n = b->cap = 0; } }
static void ids_reserve(tok_ids *v, size_t extra) {
    if (v->n + extra <= v->cap) return;
    size_t c = v->cap ? v->cap : 64;
    while (c < v->n + extra) c *= 2;
    v->ids = gk_realloc(v->ids, c * sizeof *v->ids); v->cap = c;
}
void tok_ids_push(tok_ids *v, int32_t id) { ids_reserve(v, 1); v->ids[v->n++] = id; }
void tok_bytes_append(tok_bytes *b, const void *data, size_t n) {
    if (b->n + n > b->cap) {
        size_t c = b->cap ? b->cap : 256;
        while (c < b->n + n) c *= 2;
        b->data = gk_realloc(b->data, c); b->cap = c;
    }
    if (n) memcpy(b->data + b->n, data, n);
    b->n += n;
}

/* ---------------------------------------------------------------- construction */
tok_tokenizer *tok_new_empty(const char *name, int pat) {
    tok_tokenizer *t = gk_calloc(1, sizeof *t);
    t->name = gk_strdup(name ? name : "gptkit-bpe");
    t->pat = pat;
    t->pattern = gk_strdup(pat == TOK_PAT_CL100K ? tok_pattern_cl100k : pat == TOK_PAT_GPTKIT ? tok_pattern_gptkit : tok_pattern_gpt2);
    t->mask = 1023;
    t->slots = gk_malloc((t->mask + 1) * sizeof *t->slots);
    for (size_t i = 0; i <= t->mask; i++) t->slots[i].rank = -1;
    for (int i = 0; i < 256; i++) t->byte_rank[i] = -1;
    t->filter = gk_calloc(TOK_FILTER_BITS / 64, sizeof *t->filter);
    t->rank2 = gk_malloc(65536 * sizeof *t->rank2);
    for (int i = 0; i < 65536; i++) t->rank2[i] = -1;
    return t;
}

void tok_free(tok_tokenizer *t) {
    if (!t) return;
    for (size_t i = 0; i < t->n_spec; i++) free(t->spec_text[i]);
    free(t->spec_text); free(t->spec_len); free(t->spec_id);
    free(t->name); free(t->pattern); free(t->off); free(t->len); free(t->kind); free(t->arena); free(t->slots); free(t->rank2); free(t->filter); tok_regex_free(t->re);
    free(t);
}

int tok_set_pattern(tok_tokenizer *t, const char *pattern, gk_err *err) {
    int kind = tok_pattern_kind(pattern);
    void *re = NULL;
    if (kind < 0) {
        if (!(re = tok_regex_compile(pattern, err))) return -1;
        kind = TOK_PAT_CUSTOM;
    }
    tok_regex_free(t->re);
    t->re = re;
    t->pat = kind;
    free(t->pattern);
    t->pattern = gk_strdup(kind == TOK_PAT_CL100K ? tok_pattern_cl100k : kind == TOK_PAT_GPTKIT ? tok_pattern_gptkit
                           : kind == TOK_PAT_GPT2 ? tok_pattern_gpt2 : pattern);
    return 0;
}

static void ensure_ids(tok_tokenizer *t, size_t id) {
    if (id < t->cap) { if (id >= t->vocab_size) t->vocab_size = id + 1; return; }
    size_t c = t->cap ? t->cap : 1024;
    while (c <= id) c *= 2;
    t->off = gk_realloc(t->off, c * sizeof *t->off);
    t->len = gk_realloc(t->len, c * sizeof *t->len);
    t->kind = gk_realloc(t->kind, c);
    memset(t->kind + t->cap, TOK_KIND_GAP, c - t->cap);
    memset(t->len + t->cap, 0, (c - t->cap) * sizeof *t->len);
    t->cap = c;
    t->vocab_size = id + 1;
}

static uint64_t arena_add(tok_tokenizer *t, const void *p, size_t n) {
    if (t->arena_n + n > t->arena_cap) {
        size_t c = t->arena_cap ? t->arena_cap : 4096;
        while (c < t->arena_n + n) c *= 2;
        t->arena = gk_realloc(t->arena, c); t->arena_cap = c;
    }
    memcpy(t->arena + t->arena_n, p, n);
    uint64_t o = t->arena_n; t->arena_n += n;
    return o;
}

static void slots_grow(tok_tokenizer *t) {
    size_t nsz = (t->mask + 1) * 2;
    tok_slot *ns = gk_malloc(nsz * sizeof *ns);
    for (size_t i = 0; i < nsz; i++) ns[i].rank = -1;
    for (size_t i = 0; i <= t->mask; i++) {
        int32_t r = t->slots[i].rank;
        if (r < 0) continue;
        size_t j = (size_t)tok_hash(t->arena + t->off[r], t->len[r]) & (nsz - 1);
        while (ns[j].rank >= 0) j = (j + 1) & (nsz - 1);
        ns[j] = t->slots[i];
    }
    free(t->slots); t->slots = ns; t->mask = nsz - 1;
}

int tok_add_rank(tok_tokenizer *t, const uint8_t *bytes, size_t n, int32_t id) {
    if ((size_t)id < t->vocab_size && t->kind[id] != TOK_KIND_GAP) return 1;
    uint64_t w, h = tok_hash_w(bytes, n, &w);
    if (tok_rank_hw(t, bytes, n, h, w) >= 0) return 2;
    ensure_ids(t, (size_t)id);
    t->off[id] = arena_add(t, bytes, n);
    t->len[id] = (uint32_t)n;
    t->kind[id] = TOK_KIND_RANK;
    t->n_ranks++;
    if (2 * (t->n_ranks + 1) > t->mask + 1) slots_grow(t);
    size_t j = (size_t)h & t->mask;
    while (t->slots[j].rank >= 0) j = (j + 1) & t->mask;
    t->slots[j].w = w; t->slots[j].tag = tok_tag(h, n); t->slots[j].rank = id;
    size_t fb = tok_filter_bit(h);
    t->filter[fb >> 6] |= (uint64_t)1 << (fb & 63);
    if (n == 1) t->byte_rank[bytes[0]] = id;
    if (n == 2) t->rank2[(size_t)bytes[0] << 8 | bytes[1]] = id;
    return 0;
}

int tok_finish_ranks(tok_tokenizer *t, const char *what, gk_err *err) {
    for (int b = 0; b < 256; b++)
        if (t->byte_rank[b] < 0)
            return gk_errf(err, "%s: the single byte 0x%02x is not a token (a byte-level BPE vocabulary needs all 256)", what, b);
    return 0;
}

/* ---------------------------------------------------------------- queries */
size_t tok_vocab_size(const tok_tokenizer *t) { return t->vocab_size; }
size_t tok_n_ranks(const tok_tokenizer *t) { return t->n_ranks; }
size_t tok_n_specials(const tok_tokenizer *t) { return t->n_spec; }
const char *tok_name(const tok_tokenizer *t) { return t->name; }
const char *tok_pattern(const tok_tokenizer *t) { return t->pattern; }
int32_t tok_special_id(const tok_tokenizer *t, const char *name) {
    for (size_t i = 0; i < t->n_spec; i++) if (!strcmp(t->spec_text[i], name)) return t->spec_id[i];
    return -1;
}
int32_t tok_eot_id(const tok_tokenizer *t) { return tok_special_id(t, TOK_EOT); }
int tok_specials_in_text(const tok_tokenizer *t) { return t->hf; }
const char *tok_special_at(const tok_tokenizer *t, size_t i, int32_t *id) {
    if (i >= t->n_spec) return NULL;
    if (id) *id = t->spec_id[i];
    return t->spec_text[i];
}
const uint8_t *tok_token_bytes(const tok_tokenizer *t, int32_t id, size_t *len) {
    if (id < 0 || (size_t)id >= t->vocab_size || t->kind[id] == TOK_KIND_GAP) return NULL;
    *len = t->len[id];
    return t->arena + t->off[id];
}

size_t tok_text_len(const tok_tokenizer *t, int32_t id) {
    if (id < 0 || (size_t)id >= t->vocab_size || t->kind[id] != TOK_KIND_RANK) return 0;
    return t->len[id];
}

int32_t tok_add_special(tok_tokenizer *t, const char *text, int32_t id, gk_err *err) {
    size_t n = strlen(text);
    if (n == 0) { gk_errf(err, "special token text is empty"); return -1; }
    if (tok_special_id(t, text) >= 0) { gk_errf(err, "special token %s is already defined", text); return -1; }
    if (id < 0) id = (int32_t)t->vocab_size;
    if ((size_t)id < t->vocab_size && t->kind[id] != TOK_KIND_GAP) {
        gk_errf(err, "special token %s: id %d is already taken", text, (int)id); return -1;
    }
    ensure_ids(t, (size_t)id);
    t->off[id] = arena_add(t, text, n);
    t->len[id] = (uint32_t)n;
    t->kind[id] = TOK_KIND_SPECIAL;
    t->spec_text = gk_realloc(t->spec_text, (t->n_spec + 1) * sizeof *t->spec_text);
    t->spec_len = gk_realloc(t->spec_len, (t->n_spec + 1) * sizeof *t->spec_len);
    t->spec_id = gk_realloc(t->spec_id, (t->n_spec + 1) * sizeof *t->spec_id);
    t->spec_text[t->n_spec] = gk_strdup(text);
    t->spec_len[t->n_spec] = n;
    t->spec_id[t->n_spec] = id;
    t->n_spec++;
    return id;
}

int tok_add_chat_specials(tok_tokenizer *t) {
    int added = 0;
    for (int i = 0; i < TOK_N_CHAT_SPECIALS; i++)
        if (tok_special_id(t, tok_chat_specials[i]) < 0 && tok_add_special(t, tok_chat_specials[i], -1, NULL) >= 0) added++;
    return added;
}

/* ---------------------------------------------------------------- BPE merge inside one piece */
#ifndef SMALL_PIECE
#define SMALL_PIECE 64
#endif

/* Appends the ids of piece p[0..n) (n >= 2, not itself a token) to out. */
static void bpe_small(const tok_tokenizer *t, const uint8_t *p, size_t n, tok_ids *out) {
    uint32_t start[SMALL_PIECE + 1];
    int32_t rk[SMALL_PIECE + 1];   /* rk[i]: rank of parts i and i+1 joined, INT32_MAX if none */
    int32_t prk[SMALL_PIECE + 1];  /* prk[i]: rank of part i itself */
    size_t cnt = n + 1;            /* boundaries */
    for (size_t i = 0; i <= n; i++) start[i] = (uint32_t)i;
    for (size_t i = 0; i < n; i++) prk[i] = t->byte_rank[p[i]];
    for (size_t i = 0; i + 2 <= n; i++) {
        int32_t r = t->rank2[(size_t)p[i] << 8 | p[i + 1]];
        rk[i] = r < 0 ? INT32_MAX : r;
    }
    rk[n - 1] = INT32_MAX;
    for (;;) {
        int32_t best = INT32_MAX; size_t bi = 0;
        for (size_t i = 0; i + 2 < cnt; i++) if (rk[i] < best) { best = rk[i]; bi = i; }
        if (best == INT32_MAX) break;
        /* merge parts bi and bi+1: drop boundary bi+1 */
        prk[bi] = best;
        memmove(start + bi + 1, start + bi + 2, (cnt - bi - 2) * sizeof *start);
        memmove(rk + bi + 1, rk + bi + 2, (cnt - bi - 2) * sizeof *rk);
        memmove(prk + bi + 1, prk + bi + 2, (cnt - bi - 2) * sizeof *prk);
        cnt--;
        if (bi + 2 < cnt) {
            int32_t r = tok_rank(t, p + start[bi], start[bi + 2] - start[bi]);
            rk[bi] = r < 0 ? INT32_MAX : r;
        } else rk[bi] = INT32_MAX;
        if (bi > 0) {
            int32_t r = tok_rank(t, p + start[bi - 1], start[bi + 1] - start[bi - 1]);
            rk[bi - 1] = r < 0 ? INT32_MAX : r;
        }
    }
    ids_reserve(out, cnt - 1);
    memcpy(out->ids + out->n, prk, (cnt - 1) * sizeof *prk);
    out->n += cnt - 1;
}

typedef struct { int32_t rank; uint32_t pos; } heap_ent;
static inline int heap_less(heap_ent a, heap_ent b) { return a.rank < b.rank || (a.rank == b.rank && a.pos < b.pos); }
static void heap_push(heap_ent *h, size_t *n, heap_ent e) {
    size_t i = (*n)++;
    while (i > 0) { size_t pa = (i - 1) / 2; if (!heap_less(e, h[pa])) break; h[i] = h[pa]; i = pa; }
    h[i] = e;
}
static heap_ent heap_pop(heap_ent *h, size_t *n) {
    heap_ent top = h[0], last = h[--(*n)];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        heap_ent best = last;
        if (l < *n && heap_less(h[l], best)) { m = l; best = h[l]; }
        if (r < *n && heap_less(h[r], best)) { m = r; }
        if (m == i) break;
        h[i] = h[m]; i = m;
    }
    if (*n) h[i] = last;
    return top;
}

/* Long pieces: parts as a linked list over byte offsets; cur[i] = rank of the pair starting at part i. */
static void bpe_large(const tok_tokenizer *t, const uint8_t *p, size_t n, tok_ids *out) {
    uint32_t *next = gk_malloc((n + 1) * sizeof *next), *prev = gk_malloc((n + 1) * sizeof *prev);
    int32_t *cur = gk_malloc(n * sizeof *cur), *prk = gk_malloc(n * sizeof *prk);
    heap_ent *h = gk_malloc(3 * n * sizeof *h);
    size_t hn = 0;
    for (size_t i = 0; i <= n; i++) { next[i] = (uint32_t)i + 1; prev[i] = (uint32_t)i - 1; }
    for (size_t i = 0; i < n; i++) {
        prk[i] = t->byte_rank[p[i]];
        cur[i] = i + 1 < n ? t->rank2[(size_t)p[i] << 8 | p[i + 1]] : -1;
        if (cur[i] >= 0) heap_push(h, &hn, (heap_ent){cur[i], (uint32_t)i});
    }
    while (hn) {
        heap_ent e = heap_pop(h, &hn);
        uint32_t i = e.pos;
        if (cur[i] != e.rank) continue;          /* stale: part gone (cur = -2) or pair changed */
        uint32_t j = next[i], k = next[j];       /* merge parts [i,j) and [j,k) */
        next[i] = k; if (k <= n) prev[k] = i;
        prk[i] = e.rank;
        cur[j] = -2;
        cur[i] = -1;
        if (k < n) {
            int32_t r = tok_rank(t, p + i, next[k] - i);
            if (r >= 0) { cur[i] = r; heap_push(h, &hn, (heap_ent){r, i}); }
        }
        if (i > 0) {
            uint32_t a = prev[i];
            int32_t r = tok_rank(t, p + a, k - a);
            cur[a] = r;
            if (r >= 0) heap_push(h, &hn, (heap_ent){r, a});
        }
    }
    for (uint32_t i = 0; i < n; i = next[i]) tok_ids_push(out, prk[i]);
    free(next); free(prev); free(cur); free(prk); free(h);
}

/* ---------------------------------------------------------------- piece cache */
#define CACHE_BITS 15
#define CACHE_MAXLEN 46
#define CACHE_MAXIDS 16
typedef struct {
    uint64_t h;
    uint8_t len, nids;
    uint8_t bytes[CACHE_MAXLEN];
    int32_t ids[CACHE_MAXIDS];
} cache_ent;   /* 128 bytes: pieces up to 46 bytes and 16 ids (4 MB per encoder) */

struct tok_encoder {
    const tok_tokenizer *t;
    cache_ent *cache;   /* [1 << CACHE_BITS], direct-mapped */
};

tok_encoder *tok_encoder_new(const tok_tokenizer *t) {
    tok_encoder *e = gk_malloc(sizeof *e);
    e->t = t;
    e->cache = gk_calloc((size_t)1 << CACHE_BITS, sizeof *e->cache);
    return e;
}
void tok_encoder_free(tok_encoder *e) { if (e) { free(e->cache); free(e); } }

static inline void encode_piece(const tok_tokenizer *t, cache_ent *cache, const uint8_t *p, size_t n, tok_ids *out) {
    if (n == 1) { tok_ids_push(out, t->byte_rank[p[0]]); return; }
    uint64_t w, h = tok_hash_w(p, n, &w);
    int32_t r = n == 2 ? t->rank2[(size_t)p[0] << 8 | p[1]] : tok_rank_hw(t, p, n, h, w);
    if (r >= 0) { tok_ids_push(out, r); return; }
    cache_ent *c = NULL;
    if (cache && n <= CACHE_MAXLEN) {
        c = &cache[h >> (64 - CACHE_BITS)];
        if (c->h == h && c->len == n && !memcmp(c->bytes, p, n)) {
            ids_reserve(out, c->nids);
            memcpy(out->ids + out->n, c->ids, c->nids * sizeof(int32_t));
            out->n += c->nids;
            return;
        }
    }
    size_t before = out->n;
    if (n <= SMALL_PIECE) bpe_small(t, p, n, out); else bpe_large(t, p, n, out);
    size_t k = out->n - before;
    if (c && k <= CACHE_MAXIDS) {
        c->h = h; c->len = (uint8_t)n; c->nids = (uint8_t)k;
        memcpy(c->bytes, p, n);
        memcpy(c->ids, out->ids + before, k * sizeof(int32_t));
    }
}

static void encode_ordinary(const tok_tokenizer *t, cache_ent *cache, const uint8_t *s, size_t len, tok_ids *out) {
    size_t pos = 0;
    if (t->pat == TOK_PAT_CL100K) {
        while (pos < len) { size_t e = tok_split_next_cl100k(s, len, pos); encode_piece(t, cache, s + pos, e - pos, out); pos = e; }
    } else if (t->pat == TOK_PAT_GPTKIT) {
        while (pos < len) { size_t e = tok_split_next_gptkit(s, len, pos); encode_piece(t, cache, s + pos, e - pos, out); pos = e; }
    } else if (t->pat == TOK_PAT_CUSTOM) {
        void *md = tok_regex_md_new(t->re);
        while (pos < len) { size_t e = tok_regex_next(t->re, md, s, len, pos); encode_piece(t, cache, s + pos, e - pos, out); pos = e; }
        tok_regex_md_free(md);
    } else {
        while (pos < len) { size_t e = tok_split_next_gpt2(s, len, pos); encode_piece(t, cache, s + pos, e - pos, out); pos = e; }
    }
}

static void encode_impl(const tok_tokenizer *t, cache_ent *cache, const void *text, size_t len, int allow_special, tok_ids *out) {
    const uint8_t *s = text;
    if (len == 0) return;
    if (!allow_special || t->n_spec == 0) { encode_ordinary(t, cache, s, len, out); return; }
    /* next occurrence of each special at or after pos (SIZE_MAX = none left) */
    size_t ns = t->n_spec;
    size_t *nextpos = gk_malloc(ns * sizeof *nextpos);   /* next occurrence of special i, SIZE_MAX = none */
    for (size_t i = 0; i < ns; i++) {
        const uint8_t *f = memmem(s, len, t->spec_text[i], t->spec_len[i]);
        nextpos[i] = f ? (size_t)(f - s) : SIZE_MAX;
    }
    size_t pos = 0;
    for (;;) {
        size_t best = SIZE_MAX, bi = 0;
        for (size_t i = 0; i < ns; i++) {
            if (nextpos[i] != SIZE_MAX && nextpos[i] < pos) {   /* passed: search again from pos */
                const uint8_t *f = memmem(s + pos, len - pos, t->spec_text[i], t->spec_len[i]);
                nextpos[i] = f ? (size_t)(f - s) : SIZE_MAX;
            }
            /* earliest wins; at the same position the longer special wins */
            if (nextpos[i] < best || (nextpos[i] == best && best != SIZE_MAX && t->spec_len[i] > t->spec_len[bi])) {
                best = nextpos[i]; bi = i;
            }
        }
        if (best == SIZE_MAX) { encode_ordinary(t, cache, s + pos, len - pos, out); break; }
        encode_ordinary(t, cache, s + pos, best - pos, out);
        tok_ids_push(out, t->spec_id[bi]);
        pos = best + t->spec_len[bi];
    }
    free(nextpos);
}

void tok_encoder_encode(tok_encoder *e, const void *text, size_t len, int allow_special, tok_ids *out) {
    encode_impl(e->t, e->cache, text, len, allow_special, out);
}

/* tok_encode of a big input: segments of about ENC_SEG bytes (tok_segment: the ids are those of the whole; special
 * tokens hold no such boundary), encoded by the OpenMP threads, each with its own encoder, and joined in order. */
#define ENC_SEG ((size_t)1 << 20)
static void encode_threads(const tok_tokenizer *t, const uint8_t *p, size_t len, int allow_special, tok_ids *out) {
    size_t ns = 0, cap = len / ENC_SEG + 2;
    size_t *at = gk_malloc((cap + 1) * sizeof *at);
    at[0] = 0;
    while (at[ns] < len) {
        if (ns + 1 == cap) { cap *= 2; at = gk_realloc(at, (cap + 1) * sizeof *at); }
        at[ns + 1] = at[ns] + tok_segment(t, p + at[ns], len - at[ns], ENC_SEG);
        ns++;
    }
    tok_ids *part = gk_calloc(ns, sizeof *part);
#ifdef _OPENMP
#pragma omp parallel
#endif
    {
        tok_encoder *e = tok_encoder_new(t);
#ifdef _OPENMP
#pragma omp for schedule(dynamic, 1)
#endif
        for (long i = 0; i < (long)ns; i++) tok_encoder_encode(e, p + at[i], at[i + 1] - at[i], allow_special, &part[i]);
        tok_encoder_free(e);
    }
    size_t total = 0;
    for (size_t i = 0; i < ns; i++) total += part[i].n;
    ids_reserve(out, total);
    for (size_t i = 0; i < ns; i++) {
        memcpy(out->ids + out->n, part[i].ids, part[i].n * sizeof(int32_t));
        out->n += part[i].n;
        tok_ids_free(&part[i]);
    }
    free(part); free(at);
}

void tok_encode(const tok_tokenizer *t, const void *text, size_t len, int allow_special, tok_ids *out) {
    if (len < 65536) { encode_impl(t, NULL, text, len, allow_special, out); return; }
    if (len >= 4 * ENC_SEG) { encode_threads(t, text, len, allow_special, out); return; }
    tok_encoder *e = tok_encoder_new(t);
    tok_encoder_encode(e, text, len, allow_special, out);
    tok_encoder_free(e);
}

/* ---------------------------------------------------------------- decode */
int tok_decode(const tok_tokenizer *t, const int32_t *ids, size_t n, tok_bytes *out, gk_err *err) {
    for (size_t i = 0; i < n; i++) {
        int32_t id = ids[i];
        if (id < 0 || (size_t)id >= t->vocab_size || t->kind[id] == TOK_KIND_GAP)
            return gk_errf(err, "token id %lld (position %zu) is not in the vocabulary (%s: ids 0..%zu%s)",
                           (long long)id, i, t->name, t->vocab_size - 1,
                           (id >= 0 && (size_t)id < t->vocab_size) ? ", and this id is an unused gap" : "");
        tok_bytes_append(out, t->arena + t->off[id], t->len[id]);
    }
    return 0;
}

/* ---------------------------------------------------------------- incremental decode */
void tok_stream_init(tok_stream *s) { s->npend = 0; }

/* Length of the valid UTF-8 character at p (avail bytes): >0 complete, 0 = valid but incomplete prefix,
 * -1 = invalid at its first byte. */
static int utf8_char(const uint8_t *p, size_t avail) {
    uint8_t c = p[0];
    if (c < 0x80) return 1;
    int need; uint8_t lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) need = 2;
    else if (c >= 0xE0 && c <= 0xEF) { need = 3; if (c == 0xE0) lo = 0xA0; if (c == 0xED) hi = 0x9F; }
    else if (c >= 0xF0 && c <= 0xF4) { need = 4; if (c == 0xF0) lo = 0x90; if (c == 0xF4) hi = 0x8F; }
    else return -1;
    for (int k = 1; k < need; k++) {
        if ((size_t)k >= avail) return 0;
        uint8_t b = p[k];
        if (k == 1 ? (b < lo || b > hi) : ((b & 0xC0) != 0x80)) return -1;
    }
    return need;
}

static const uint8_t REPL[3] = {0xEF, 0xBF, 0xBD};

int tok_stream_push(tok_stream *s, const tok_tokenizer *t, int32_t id, tok_bytes *out, gk_err *err) {
    size_t n;
    const uint8_t *b = tok_token_bytes(t, id, &n);
    if (!b) return gk_errf(err, "token id %lld is not in the vocabulary (%s: ids 0..%zu)", (long long)id, t->name, t->vocab_size - 1);
    /* work on pending + new bytes */
    uint8_t small[64];
    uint8_t *buf = s->npend + n <= sizeof small ? small : gk_malloc(s->npend + n);
    memcpy(buf, s->pend, (size_t)s->npend);
    memcpy(buf + s->npend, b, n);
    size_t tot = s->npend + n, i = 0, run = 0;   /* run: start of pending valid output */
    s->npend = 0;
    while (i < tot) {
        int k = utf8_char(buf + i, tot - i);
        if (k > 0) { i += (size_t)k; continue; }
        tok_bytes_append(out, buf + run, i - run);
        if (k == 0) {   /* incomplete tail: hold back */
            memcpy(s->pend, buf + i, tot - i); s->npend = (int)(tot - i);
            run = i = tot;
            break;
        }
        tok_bytes_append(out, REPL, 3);
        /* skip the lead byte and any continuation bytes that followed a valid prefix */
        i++;
        run = i;
    }
    tok_bytes_append(out, buf + run, i - run);
    if (buf != small) free(buf);
    return 0;
}

void tok_stream_flush(tok_stream *s, tok_bytes *out) {
    if (s->npend) tok_bytes_append(out, REPL, 3);
    s->npend = 0;
}
