/* tok_train.c: byte-level BPE training.
 *
 * 1. Count: the corpus is pre-split with the pattern (the same splitter encoding uses) and every unique
 *    piece ("word") is counted in a hash map. Memory is proportional to the unique pieces, not the corpus.
 * 2. Merge: each word is an array of token ids (initially its bytes; ids 0..255 are the bytes). Pair counts
 *    (weighted by word counts) live in a hash map, each pair with the list of words it occurs in. A lazy
 *    max-heap orders pairs by (count desc, left id asc, right id asc): that is the documented, deterministic
 *    tie-break. Merging pair (a,b) -> z rewrites only the words on the pair's list, updating neighbouring
 *    pair counts by delta (-(x,a) +(x,z), -(b,y) +(z,y)); the pairs involving z are pushed afterwards.
 *    Existing pairs only ever lose count, so a popped heap entry whose count is stale is re-pushed with the
 *    true count (or dropped at zero). If a merge's bytes already are a token (ab+c == a+bc), the existing id
 *    is reused and no new rank is made.
 * 3. Result: ranks 0..255 bytes, then merges in order, then the 9 chat specials, then extra specials. */
#include "tok/tok_internal.h"
#include <errno.h>
#include <stdlib.h>

void tok_train_opts_default(tok_train_opts *o) {
    memset(o, 0, sizeof *o);
    o->vocab_size = 4096;
    o->pattern = "gptkit";
}

/* ---------------------------------------------------------------- piece counting */
typedef struct { uint64_t h; uint64_t off; uint32_t len; uint64_t count; } wslot;   /* count 0 = empty */

struct tok_trainer {
    tok_train_opts o;
    int pat;
    char *pattern;      /* as given (for a custom regex) */
    void *re, *md;      /* custom regex and its match data */
    wslot *ws; size_t wmask, nw;
    uint8_t *arena; size_t an, acap;
    uint64_t bytes_fed;
};

tok_trainer *tok_trainer_new(const tok_train_opts *o, gk_err *err) {
    const char *p = o->pattern ? o->pattern : "gptkit";
    int pat = tok_pattern_kind(p);
    void *re = NULL;
    if (pat < 0) {
        if (!(re = tok_regex_compile(p, err))) return NULL;
        pat = TOK_PAT_CUSTOM;
    }
    tok_trainer *tr = gk_calloc(1, sizeof *tr);
    tr->o = *o;
    tr->pat = pat;
    tr->re = re;
    tr->md = re ? tok_regex_md_new(re) : NULL;
    tr->pattern = gk_strdup(p);
    tr->wmask = (1u << 16) - 1;
    tr->ws = gk_calloc(tr->wmask + 1, sizeof *tr->ws);
    return tr;
}

void tok_trainer_free(tok_trainer *tr) {
    if (!tr) return;
    free(tr->ws); free(tr->arena); free(tr->pattern);
    tok_regex_md_free(tr->md); tok_regex_free(tr->re);
    free(tr);
}

static void words_grow(tok_trainer *tr) {
    size_t nsz = (tr->wmask + 1) * 2;
    wslot *n = gk_calloc(nsz, sizeof *n);
    for (size_t i = 0; i <= tr->wmask; i++) {
        if (!tr->ws[i].count) continue;
        size_t j = tr->ws[i].h & (nsz - 1);
        while (n[j].count) j = (j + 1) & (nsz - 1);
        n[j] = tr->ws[i];
    }
    free(tr->ws); tr->ws = n; tr->wmask = nsz - 1;
}

static void count_piece(tok_trainer *tr, const uint8_t *p, size_t n) {
    uint64_t h = tok_hash(p, n);
    size_t j = h & tr->wmask;
    for (;;) {
        wslot *s = &tr->ws[j];
        if (!s->count) break;
        if (s->h == h && s->len == n && !memcmp(tr->arena + s->off, p, n)) { s->count++; return; }
        j = (j + 1) & tr->wmask;
    }
    if (tr->an + n > tr->acap) {
        size_t c = tr->acap ? tr->acap : 1 << 20;
        while (c < tr->an + n) c *= 2;
        tr->arena = gk_realloc(tr->arena, c); tr->acap = c;
    }
    memcpy(tr->arena + tr->an, p, n);
    tr->ws[j] = (wslot){h, tr->an, (uint32_t)n, 1};
    tr->an += n;
    if (2 * ++tr->nw > tr->wmask + 1) words_grow(tr);
}

void tok_trainer_feed(tok_trainer *tr, const void *text, size_t len) {
    const uint8_t *s = text;
    size_t pos = 0;
    while (pos < len) {
        size_t e = tr->re ? tok_regex_next(tr->re, tr->md, s, len, pos) : tok_split_next(tr->pat, s, len, pos);
        count_piece(tr, s + pos, e - pos);
        pos = e;
    }
    tr->bytes_fed += len;
}

/* ---------------------------------------------------------------- merging */
typedef struct {
    int64_t count;
    int32_t a, b;
    uint32_t *w; uint32_t nw, capw;   /* words containing the pair (may hold stale entries) */
    uint32_t stamp;                   /* merge number that last queued it for a push */
} pair_t;

typedef struct { int64_t count; int32_t a, b; uint32_t idx; } hent;

typedef struct {
    pair_t *p; size_t np, capp;
    uint64_t *keys; uint32_t *vals; size_t mask, nused;   /* (a<<32|b) -> pair index; vals UINT32_MAX = empty */
    hent *heap; size_t hn, hcap;
} pairs_t;

static inline uint64_t mix64(uint64_t x) { x ^= x >> 33; x *= 0xff51afd7ed558ccdull; x ^= x >> 33; return x; }

static void pmap_grow(pairs_t *P) {
    size_t nsz = P->mask ? (P->mask + 1) * 2 : 1 << 16;
    uint64_t *k = gk_malloc(nsz * sizeof *k);
    uint32_t *v = gk_malloc(nsz * sizeof *v);
    memset(v, 0xff, nsz * sizeof *v);
    for (size_t i = 0; P->mask && i <= P->mask; i++) {
        if (P->vals[i] == UINT32_MAX) continue;
        size_t j = mix64(P->keys[i]) & (nsz - 1);
        while (v[j] != UINT32_MAX) j = (j + 1) & (nsz - 1);
        k[j] = P->keys[i]; v[j] = P->vals[i];
    }
    free(P->keys); free(P->vals); P->keys = k; P->vals = v; P->mask = nsz - 1;
}

static uint32_t pair_get(pairs_t *P, int32_t a, int32_t b) {
    uint64_t key = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
    size_t j = mix64(key) & P->mask;
    while (P->vals[j] != UINT32_MAX) {
        if (P->keys[j] == key) return P->vals[j];
        j = (j + 1) & P->mask;
    }
    if (P->np == P->capp) { P->capp = P->capp ? P->capp * 2 : 1 << 16; P->p = gk_realloc(P->p, P->capp * sizeof *P->p); }
    uint32_t idx = (uint32_t)P->np++;
    P->p[idx] = (pair_t){0, a, b, NULL, 0, 0, UINT32_MAX};
    P->keys[j] = key; P->vals[j] = idx;
    if (2 * ++P->nused > P->mask + 1) pmap_grow(P);
    return idx;
}

static inline int hent_before(hent x, hent y) {   /* max-heap order */
    if (x.count != y.count) return x.count > y.count;
    if (x.a != y.a) return x.a < y.a;
    return x.b < y.b;
}
static void hpush(pairs_t *P, uint32_t idx) {
    if (P->hn == P->hcap) { P->hcap = P->hcap ? P->hcap * 2 : 1 << 16; P->heap = gk_realloc(P->heap, P->hcap * sizeof *P->heap); }
    hent e = {P->p[idx].count, P->p[idx].a, P->p[idx].b, idx};
    size_t i = P->hn++;
    while (i > 0) { size_t pa = (i - 1) / 2; if (!hent_before(e, P->heap[pa])) break; P->heap[i] = P->heap[pa]; i = pa; }
    P->heap[i] = e;
}
static hent hpop(pairs_t *P) {
    hent top = P->heap[0], last = P->heap[--P->hn];
    size_t i = 0, n = P->hn;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        hent best = last;
        if (l < n && hent_before(P->heap[l], best)) { m = l; best = P->heap[l]; }
        if (r < n && hent_before(P->heap[r], best)) m = r;
        if (m == i) break;
        P->heap[i] = P->heap[m]; i = m;
    }
    if (n) P->heap[i] = last;
    return top;
}

static inline void pair_add_word(pair_t *p, uint32_t w) {
    if (p->nw && p->w[p->nw - 1] == w) return;
    if (p->nw == p->capw) { p->capw = p->capw ? p->capw * 2 : 4; p->w = gk_realloc(p->w, p->capw * sizeof *p->w); }
    p->w[p->nw++] = w;
}

typedef struct { int32_t *sym; uint32_t len; uint64_t count; } word_t;

tok_tokenizer *tok_trainer_finish(tok_trainer *tr, gk_err *err) {
    const tok_train_opts *o = &tr->o;
    size_t nspec = TOK_N_CHAT_SPECIALS + o->n_specials;
    if (o->vocab_size < 256 + nspec)
        { gk_errf(err, "vocab size %zu is too small: it must hold 256 bytes + %zu special tokens", o->vocab_size, nspec); return NULL; }
    for (size_t i = 0; i < o->n_specials; i++) {
        if (!o->specials[i][0]) { gk_errf(err, "--special: empty token"); return NULL; }
        for (size_t k = 0; k < TOK_N_CHAT_SPECIALS; k++)
            if (!strcmp(o->specials[i], tok_chat_specials[k])) { gk_errf(err, "--special %s: already one of the chat special tokens", o->specials[i]); return NULL; }
        for (size_t k = 0; k < i; k++)
            if (!strcmp(o->specials[i], o->specials[k])) { gk_errf(err, "--special %s given twice", o->specials[i]); return NULL; }
    }
    size_t target = o->vocab_size - nspec;   /* ranks wanted: 256 + merges */
    double t0 = gk_now();
    tok_tokenizer *t = tok_new_empty(o->name ? o->name : "gptkit-bpe", tr->re ? TOK_PAT_GPT2 : tr->pat);
    if (tr->re && tok_set_pattern(t, tr->pattern, err)) { tok_free(t); return NULL; }
    for (int b = 0; b < 256; b++) { uint8_t c = (uint8_t)b; tok_add_rank(t, &c, 1, b); }

    /* words */
    size_t nw = tr->nw;
    word_t *W = gk_malloc((nw ? nw : 1) * sizeof *W);
    int32_t *symbuf = gk_malloc((tr->an ? tr->an : 1) * sizeof *symbuf);
    size_t k = 0, so = 0;
    for (size_t i = 0; i <= tr->wmask; i++) {
        wslot *s = &tr->ws[i];
        if (!s->count) continue;
        W[k].sym = symbuf + so; W[k].len = s->len; W[k].count = s->count;
        for (uint32_t j = 0; j < s->len; j++) symbuf[so + j] = tr->arena[s->off + j];
        so += s->len; k++;
    }
    /* Word order must not depend on hash-table layout for determinism of anything order-sensitive: only
     * counts feed decisions, so order is irrelevant to the result. */
    pairs_t P = {0};
    pmap_grow(&P);
    for (size_t w = 0; w < nw; w++)
        for (uint32_t j = 0; j + 1 < W[w].len; j++) {
            uint32_t pi = pair_get(&P, W[w].sym[j], W[w].sym[j + 1]);
            P.p[pi].count += (int64_t)W[w].count;
            pair_add_word(&P.p[pi], (uint32_t)w);
        }
    for (size_t i = 0; i < P.np; i++) if (P.p[i].count > 0) hpush(&P, (uint32_t)i);
    if (o->progress)
        gk_log("tokenizer train: %.1f MB, %zu unique pieces, %zu pairs; %zu merges to go\n",
               tr->bytes_fed / 1e6, nw, P.np, target > 256 ? target - 256 : 0);

    uint32_t *seen = gk_calloc(nw ? nw : 1, sizeof *seen);   /* merge number + 1 that last rewrote word */
    uint32_t *touched = NULL; size_t ntouched = 0, captouched = 0;
    uint8_t *mb = NULL; size_t mbcap = 0;
    uint32_t merge_no = 0;
    double last_log = gk_now();
    size_t start_ranks = t->n_ranks;
    while (t->n_ranks < target && P.hn) {
        hent e = hpop(&P);
        pair_t *pp = &P.p[e.idx];
        if (pp->count != e.count) { if (pp->count > 0) hpush(&P, e.idx); continue; }
        if (pp->count <= 0) continue;
        int32_t a = pp->a, b = pp->b;
        /* the merged token's bytes */
        size_t la, lb;
        const uint8_t *ba = tok_token_bytes(t, a, &la), *bb = tok_token_bytes(t, b, &lb);
        if (la + lb > mbcap) { mbcap = 2 * (la + lb); mb = gk_realloc(mb, mbcap); }
        memcpy(mb, ba, la); memcpy(mb + la, bb, lb);
        int32_t z = tok_rank(t, mb, la + lb);
        if (z < 0) { z = (int32_t)t->vocab_size; tok_add_rank(t, mb, la + lb, z); }
        merge_no++;
        ntouched = 0;
        /* rewrite every word holding (a,b); pp may move when pairs are added, so index by e.idx */
        uint32_t nwl = P.p[e.idx].nw;
        uint32_t *wl = P.p[e.idx].w;
        P.p[e.idx].w = NULL; P.p[e.idx].nw = P.p[e.idx].capw = 0;
        for (uint32_t q = 0; q < nwl; q++) {
            uint32_t w = wl[q];
            if (seen[w] == merge_no) continue;
            seen[w] = merge_no;
            word_t *wd = &W[w];
            int64_t c = (int64_t)wd->count;
            uint32_t i = 0, out = 0, len = wd->len;
            int32_t *s = wd->sym;
            int any = 0;
            while (i < len) {
                if (i + 1 < len && s[i] == a && s[i + 1] == b) {
                    any = 1;
                    if (out > 0) {
                        int32_t x = s[out - 1];
                        P.p[pair_get(&P, x, a)].count -= c;
                        uint32_t pi = pair_get(&P, x, z);
                        P.p[pi].count += c; pair_add_word(&P.p[pi], w);
                        if (P.p[pi].stamp != merge_no) {
                            P.p[pi].stamp = merge_no;
                            if (ntouched == captouched) { captouched = captouched ? 2 * captouched : 1024; touched = gk_realloc(touched, captouched * sizeof *touched); }
                            touched[ntouched++] = pi;
                        }
                    }
                    if (i + 2 < len) {
                        int32_t y = s[i + 2];
                        P.p[pair_get(&P, b, y)].count -= c;
                        uint32_t pi = pair_get(&P, z, y);
                        P.p[pi].count += c; pair_add_word(&P.p[pi], w);
                        if (P.p[pi].stamp != merge_no) {
                            P.p[pi].stamp = merge_no;
                            if (ntouched == captouched) { captouched = captouched ? 2 * captouched : 1024; touched = gk_realloc(touched, captouched * sizeof *touched); }
                            touched[ntouched++] = pi;
                        }
                    }
                    P.p[e.idx].count -= c;
                    s[out++] = z;
                    i += 2;
                } else s[out++] = s[i++];
            }
            if (any) wd->len = out;
        }
        free(wl);
        for (size_t q = 0; q < ntouched; q++) if (P.p[touched[q]].count > 0) hpush(&P, touched[q]);
        if (o->progress && gk_now() - last_log > 1.0) {
            last_log = gk_now();
            size_t done = t->n_ranks - start_ranks, todo = target - start_ranks;
            double el = last_log - t0;
            char eb[32], tb[32];
            gk_log("tokenizer train: merge %zu/%zu (count %lld), %s elapsed, ETA %s\n", done, todo, (long long)e.count,
                   gk_fmt_duration(el, tb, sizeof tb), gk_fmt_duration(el / (double)done * (double)(todo - done), eb, sizeof eb));
        }
    }
    if (t->n_ranks < target)
        gk_warn("tokenizer train: the corpus ran out of pairs after %zu merges; the vocabulary has %zu ranks, not %zu\n",
                t->n_ranks - 256, t->n_ranks, target);
    for (int i = 0; i < TOK_N_CHAT_SPECIALS; i++) tok_add_special(t, tok_chat_specials[i], -1, NULL);
    for (size_t i = 0; i < o->n_specials; i++) tok_add_special(t, o->specials[i], -1, NULL);
    for (size_t i = 0; i < P.np; i++) free(P.p[i].w);
    free(P.p); free(P.keys); free(P.vals); free(P.heap);
    free(seen); free(touched); free(mb); free(W); free(symbuf);
    return t;
}

/* ---------------------------------------------------------------- files */
/* Safe cut points (piece boundaries whatever follows or precedes the block), scanning back from the end:
 *  - between an ASCII letter and " x" (x an ASCII letter): "word| word" — under all three patterns the left
 *    piece ends at the letter (no alternative takes a space after letters) and " word" starts a piece;
 *  - just after a '\n' with printable non-space ASCII on both sides: no alternative matches a newline
 *    followed by a non-space, and the newline is a whitespace run of length one (GPT-2's \s+(?!\S) treats a
 *    longer run differently at the end of the text than before a non-space). Under gptkit's pattern a
 *    newline followed by a letter starts that word's piece, so there the next character must not be a letter.
 * Encoding the two sides separately then gives exactly the ids of the whole. */
static inline int is_alpha(uint8_t c) { return (c | 0x20) >= 'a' && (c | 0x20) <= 'z'; }
static inline int is_graph(uint8_t c) { return c > 0x20 && c < 0x7f; }
size_t tok_safe_cut_pat(int pat, const uint8_t *s, size_t len) {
    if (pat == TOK_PAT_CUSTOM) return len;   /* unknown regex: no boundary is known to be safe */
    for (size_t i = len; i > 2; i--) {
        uint8_t a = s[i - 3], b = s[i - 2], c = s[i - 1];
        if (b == ' ' && is_alpha(a) && is_alpha(c)) return i - 2;
        if (b == '\n' && is_graph(a) && is_graph(c) && !(pat == TOK_PAT_GPTKIT && is_alpha(c))) return i - 1;
    }
    return len;
}
size_t tok_safe_cut(const tok_tokenizer *t, const uint8_t *s, size_t len) { return tok_safe_cut_pat(t->pat, s, len); }
size_t tok_segment(const tok_tokenizer *t, const uint8_t *s, size_t len, size_t seg) {
    if (len <= seg + seg / 2) return len;
    size_t take = tok_safe_cut(t, s, seg);
    return take == 0 || take >= seg ? len : take;   /* no boundary: the rest whole (exactness first) */
}

tok_tokenizer *tok_train_files(const char *const *files, size_t nfiles, const tok_train_opts *o, gk_err *err) {
    tok_trainer *tr = tok_trainer_new(o, err);
    if (!tr) return NULL;
    const size_t BLOCK = 16u << 20;
    uint8_t *buf = gk_malloc(BLOCK);
    double t0 = gk_now();
    for (size_t f = 0; f < nfiles; f++) {
        FILE *fp = fopen(files[f], "rb");
        if (!fp) { gk_errf(err, "%s: cannot open: %s", files[f], strerror(errno)); free(buf); tok_trainer_free(tr); return NULL; }
        size_t have = 0;
        for (;;) {
            size_t r = fread(buf + have, 1, BLOCK - have, fp);
            have += r;
            int eof = r == 0 || feof(fp);
            if (ferror(fp)) { gk_errf(err, "%s: read error", files[f]); fclose(fp); free(buf); tok_trainer_free(tr); return NULL; }
            size_t cut = eof ? have : tok_safe_cut_pat(tr->pat, buf, have);
            tok_trainer_feed(tr, buf, cut);
            memmove(buf, buf + cut, have - cut);
            have -= cut;
            if (eof && have == 0) break;
            if (eof) { tok_trainer_feed(tr, buf, have); break; }
        }
        fclose(fp);
        if (o->progress) gk_log("tokenizer train: counted %s (%.1f MB so far, %zu unique pieces, %.1fs)\n",
                                files[f], tr->bytes_fed / 1e6, tr->nw, gk_now() - t0);
    }
    free(buf);
    tok_tokenizer *t = tok_trainer_finish(tr, err);
    tok_trainer_free(tr);
    return t;
}
