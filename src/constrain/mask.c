/* mask.c: token masks — which tokens of the vocabulary the grammar allows next.
 *
 * The vocabulary is a byte trie stored in preorder (node i's subtree is [i, end[i])), so walking it against
 * a grammar state is a linear scan that jumps over a subtree as soon as the state dies on its prefix.
 *
 * Reference (constrain_mask_ref): every token's bytes fed to the state. Fast path (constrain_mask): a state
 * is a set of stacks; for each stack only its top frame's position matters for most tokens. Per position,
 * once per grammar, the trie is walked from a stack whose frames below the top are unknown (CN_BELOW):
 *   - a token consumed while staying in the known frames (or ending exactly as the top frame returns) is
 *     accepted whatever lies below: a bit in acc;
 *   - a token that needs bytes after the top frame returned depends on what lies below: it goes into unc and
 *     is checked against the real stack at decode time (for JSON: the few hundred tokens holding a quote or
 *     a bracket, against ~50k accepted by one OR of bit words);
 *   - any other token is rejected whatever lies below.
 * A test compares the two on every reachable state of sample grammars (tests/test_constrain.c). */
#include "constrain/constrain_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

struct constrain_vocab {
    size_t V;                 /* mask length: the tokenizer's vocab size */
    size_t N;                 /* trie nodes (node 0 = root) */
    uint8_t *byte;            /* [N] the byte on the edge into node i */
    uint16_t *depth;          /* [N] */
    uint32_t *end;            /* [N] one past node i's subtree */
    uint32_t *tok0;           /* [N] first of node i's tokens in sorted[] */
    uint8_t *ntok;            /* [N] tokens whose bytes end at node i (1, or 0 for inner nodes) */
    int32_t *sorted;          /* [n_tok] token ids in byte order */
    size_t n_tok, max_len;
    uint32_t *off, *len;      /* [V] each token's bytes in data (len 0 = not a text token) */
    uint8_t *data;
};

static const uint8_t *tb(const constrain_vocab *v, int32_t id, size_t *n) { *n = v->len[id]; return v->data + v->off[id]; }

static const constrain_vocab *sort_ctx;
static int by_bytes(const void *a, const void *b) {
    size_t la, lb;
    const uint8_t *x = tb(sort_ctx, *(const int32_t *)a, &la), *y = tb(sort_ctx, *(const int32_t *)b, &lb);
    int c = memcmp(x, y, la < lb ? la : lb);
    if (c) return c;
    if (la != lb) return la < lb ? -1 : 1;
    return (*(const int32_t *)a > *(const int32_t *)b) - (*(const int32_t *)a < *(const int32_t *)b);
}

constrain_vocab *constrain_vocab_new(const tok_tokenizer *t) {
    constrain_vocab *v = gk_calloc(1, sizeof *v);
    v->V = tok_vocab_size(t);
    v->off = gk_calloc(v->V, sizeof *v->off);
    v->len = gk_calloc(v->V, sizeof *v->len);
    size_t total = 0;
    for (size_t id = 0; id < v->V; id++) {
        size_t n;
        if (!tok_text_len(t, (int32_t)id) || !tok_token_bytes(t, (int32_t)id, &n) || n == 0) continue;
        total += n;
    }
    v->data = gk_malloc(total + 1);
    v->sorted = gk_malloc((v->V + 1) * sizeof *v->sorted);
    size_t at = 0;
    for (size_t id = 0; id < v->V; id++) {
        size_t n;
        const uint8_t *b;
        if (!tok_text_len(t, (int32_t)id) || !(b = tok_token_bytes(t, (int32_t)id, &n)) || n == 0) continue;
        memcpy(v->data + at, b, n);
        v->off[id] = (uint32_t)at; v->len[id] = (uint32_t)n;
        at += n;
        v->sorted[v->n_tok++] = (int32_t)id;
        if (n > v->max_len) v->max_len = n;
    }
    sort_ctx = v;
    qsort(v->sorted, v->n_tok, sizeof *v->sorted, by_bytes);
    sort_ctx = NULL;
    /* preorder trie: each token adds the nodes past its common prefix with the previous one */
    size_t cap = total + 1;
    v->byte = gk_malloc(cap); v->depth = gk_malloc(cap * sizeof *v->depth);
    v->end = gk_malloc(cap * sizeof *v->end); v->tok0 = gk_malloc(cap * sizeof *v->tok0); v->ntok = gk_calloc(cap, 1);
    v->N = 1; v->byte[0] = 0; v->depth[0] = 0;
    uint32_t *path = gk_malloc((v->max_len + 1) * sizeof *path);
    path[0] = 0;
    const uint8_t *prev = NULL; size_t plen = 0;
    for (size_t k = 0; k < v->n_tok; k++) {
        size_t n;
        const uint8_t *b = tb(v, v->sorted[k], &n);
        size_t l = 0;
        while (prev && l < plen && l < n && prev[l] == b[l]) l++;
        for (size_t d = l; d < n; d++) {
            uint32_t i = (uint32_t)v->N++;
            v->byte[i] = b[d]; v->depth[i] = (uint16_t)(d + 1);
            path[d + 1] = i;
        }
        uint32_t node = path[n];
        if (!v->ntok[node]) v->tok0[node] = (uint32_t)k;
        if (v->ntok[node] < 255) v->ntok[node]++;
        prev = b; plen = n;
    }
    /* end[i]: the first later node no deeper than i */
    size_t sp = 0;
    for (size_t i = 0; i < v->N; i++) {
        while (sp && v->depth[path[sp - 1]] >= v->depth[i]) v->end[path[--sp]] = (uint32_t)i;
        if (sp <= v->max_len) path[sp++] = (uint32_t)i;
    }
    while (sp) v->end[path[--sp]] = (uint32_t)v->N;
    free(path);
    return v;
}

void constrain_vocab_free(constrain_vocab *v) {
    if (!v) return;
    free(v->byte); free(v->depth); free(v->end); free(v->tok0); free(v->ntok); free(v->sorted);
    free(v->off); free(v->len); free(v->data);
    free(v);
}

size_t constrain_vocab_size(const constrain_vocab *v) { return v->V; }

/* ---------------------------------------------------------------- constraints */

typedef struct {
    uint32_t *acc;            /* [W] tokens accepted whatever lies below the known frames */
    int32_t *unc; size_t nunc;   /* tokens to check against the whole stack */
    uint32_t gen;             /* already OR-ed into the mask being built */
} pos_entry;

/* uint32 -> entry map (open addressing; key + 1 stored, 0 = free) */
typedef struct { uint32_t *k; pos_entry **v; size_t cap, n; } emap;
static pos_entry *emap_get(const emap *m, uint32_t key) {
    if (!m->cap) return NULL;
    size_t h = (key * 0x9E3779B1u) & (m->cap - 1);
    for (; m->k[h]; h = (h + 1) & (m->cap - 1)) if (m->k[h] == key + 1) return m->v[h];
    return NULL;
}
static void emap_put(emap *m, uint32_t key, pos_entry *e) {
    if (2 * (m->n + 1) > m->cap) {
        size_t nc = m->cap ? 2 * m->cap : 256;
        uint32_t *nk = gk_calloc(nc, sizeof *nk); pos_entry **nv = gk_malloc(nc * sizeof *nv);
        for (size_t j = 0; j < m->cap; j++) {
            if (!m->k[j]) continue;
            size_t h = ((m->k[j] - 1) * 0x9E3779B1u) & (nc - 1);
            while (nk[h]) h = (h + 1) & (nc - 1);
            nk[h] = m->k[j]; nv[h] = m->v[j];
        }
        free(m->k); free(m->v); m->k = nk; m->v = nv; m->cap = nc;
    }
    size_t h = (key * 0x9E3779B1u) & (m->cap - 1);
    while (m->k[h] && m->k[h] != key + 1) h = (h + 1) & (m->cap - 1);
    if (!m->k[h]) m->n++;
    m->k[h] = key + 1; m->v[h] = e;
}

#define KEEP_FRAMES_MAX 8     /* frames of context tried before settling */
#define UNC_OK 256            /* an entry with at most this many context-dependent tokens is good enough */

struct constrain {
    constrain_grammar *g;
    const constrain_vocab *v;
    cn_pool pool;
    int32_t end_ids[16]; size_t n_end;
    size_t W;                 /* mask words */
    emap by_trunc;            /* truncated stack (top k frames over CN_BELOW) -> its walk (owns the entries) */
    emap by_node;             /* real stack -> the entry chosen for it */
    pos_entry **all; size_t n_all, cap_all;
    cn_set *dsets;            /* [max_len + 1] walk scratch per depth */
    cn_set ta, tb;            /* token-check scratch */
    uint32_t seen_gen;
    size_t walks;             /* trie walks done (statistics) */
    /* shortest completions: minrest[pos] bytes from position pos to the end of its alternative; cost[node]
     * bytes to empty the whole stack (UINT32_MAX = not computed yet) */
    uint32_t *minrest;        /* [n_elems] */
    uint32_t *cost; size_t cost_cap;
};

/* minlen(rule) by fixpoint (a BYTES element is 1 byte), then minrest per position (from each END backward) */
static void min_lengths(constrain *c) {
    const constrain_grammar *g = c->g;
    uint32_t *ml = gk_malloc(g->n_rules * sizeof *ml);
    for (size_t r = 0; r < g->n_rules; r++) ml[r] = UINT32_MAX;
    for (int changed = 1; changed;) {
        changed = 0;
        for (size_t r = 0; r < g->n_rules; r++)
            for (uint32_t a = 0; a < g->rule_nalt[r]; a++) {
                uint64_t sum = 0;
                for (uint32_t p = g->alt_start[g->rule_alt0[r] + a]; CN_TAG(g->elems[p]) != CN_END && sum < UINT32_MAX; p++)
                    sum += CN_TAG(g->elems[p]) == CN_BYTES ? 1 : ml[CN_ARG(g->elems[p])];
                if (sum < ml[r]) { ml[r] = (uint32_t)sum; changed = 1; }
            }
    }
    c->minrest = gk_malloc((g->n_elems + 1) * sizeof *c->minrest);
    uint64_t acc = 0;
    for (size_t p = g->n_elems; p-- > 0;) {
        uint32_t e = g->elems[p];
        if (CN_TAG(e) == CN_END) acc = 0;
        else acc += CN_TAG(e) == CN_BYTES ? 1 : ml[CN_ARG(e)];
        c->minrest[p] = acc > UINT32_MAX ? UINT32_MAX : (uint32_t)acc;
    }
    free(ml);
}

static uint32_t node_cost(constrain *c, uint32_t n) {
    if (n == CN_EMPTY) return 0;
    if (n == CN_BELOW || n == UINT32_MAX) return UINT32_MAX;
    if (c->cost_cap < c->pool.n_nodes) {
        size_t nc = c->pool.cap_nodes;
        c->cost = gk_realloc(c->cost, nc * sizeof *c->cost);
        for (size_t k = c->cost_cap; k < nc; k++) c->cost[k] = UINT32_MAX;
        c->cost_cap = nc;
    }
    if (c->cost[n] != UINT32_MAX) return c->cost[n];
    /* the chain up to the first known (or empty) ancestor, then back down */
    uint64_t sum = 0;
    uint32_t x = n;
    while (x != CN_EMPTY && x != CN_BELOW && c->cost[x] == UINT32_MAX) { sum += c->minrest[c->pool.nodes[x].pos]; x = c->pool.nodes[x].parent; }
    uint64_t base = x == CN_EMPTY ? 0 : x == CN_BELOW ? UINT32_MAX : c->cost[x];
    uint64_t total = sum + base;
    /* store along the chain: each node's own suffix */
    uint64_t run = total;
    for (uint32_t y = n; y != x; y = c->pool.nodes[y].parent) {
        c->cost[y] = run > UINT32_MAX - 1 ? UINT32_MAX - 1 : (uint32_t)run;
        run -= c->minrest[c->pool.nodes[y].pos];
    }
    return c->cost[n];
}

static size_t set_cost(constrain *c, const uint32_t *v, size_t n) {
    size_t best = SIZE_MAX;
    for (size_t k = 0; k < n; k++) { size_t x = node_cost(c, v[k]); if (x < best) best = x; }
    return best;
}

constrain *constrain_new(constrain_grammar *g, const constrain_vocab *v, const int32_t *end_ids, size_t n_end) {
    constrain *c = gk_calloc(1, sizeof *c);
    c->g = g; c->v = v;
    cn_pool_init(&c->pool, g);
    for (size_t k = 0; k < n_end && c->n_end < 16; k++)
        if (end_ids[k] >= 0 && (size_t)end_ids[k] < v->V) c->end_ids[c->n_end++] = end_ids[k];
    c->W = (v->V + 31) / 32;
    c->dsets = gk_calloc(v->max_len + 2, sizeof *c->dsets);
    min_lengths(c);
    return c;
}

void constrain_free(constrain *c) {
    if (!c) return;
    for (size_t k = 0; k < c->n_all; k++) { free(c->all[k]->acc); free(c->all[k]->unc); free(c->all[k]); }
    free(c->all);
    free(c->by_trunc.k); free(c->by_trunc.v); free(c->by_node.k); free(c->by_node.v);
    for (size_t d = 0; d < c->v->max_len + 2; d++) free(c->dsets[d].v);
    free(c->dsets); free(c->ta.v); free(c->tb.v); free(c->minrest); free(c->cost);
    cn_pool_free(&c->pool);
    constrain_grammar_free(c->g);
    free(c);
}

const constrain_grammar *constrain_grammar_of(const constrain *c) { return c->g; }

constrain_state *constrain_state_new(constrain *c) { return cn_state_new_pool(c->g, &c->pool); }

static int set_has(const cn_set *s, uint32_t x) {
    for (size_t k = 0; k < s->n; k++) if (s->v[k] == x) return 1;
    return 0;
}

/* 1 if bytes b[n] can follow the stacks in[n_in] (the whole token consumed, something alive after). */
static int check_bytes(constrain *c, const uint32_t *in, size_t n_in, const uint8_t *b, size_t n) {
    const uint32_t *cur = in; size_t ncur = n_in;
    for (size_t k = 0; k < n; k++) {
        cn_advance(&c->pool, cur, ncur, b[k], &c->ta);
        if (!c->ta.n) return 0;
        cn_set t = c->ta; c->ta = c->tb; c->tb = t;
        cur = c->tb.v; ncur = c->tb.n;
    }
    return 1;
}

static void add_unc(pos_entry *e, size_t *cap, int32_t id) {
    if (e->nunc == *cap) { *cap = *cap ? 2 * *cap : 64; e->unc = gk_realloc(e->unc, *cap * sizeof *e->unc); }
    e->unc[e->nunc++] = id;
}

/* The walk described in the file comment, from the (truncated) stack x. */
static pos_entry *walk(constrain *c, uint32_t x) {
    const constrain_vocab *v = c->v;
    pos_entry *e = gk_calloc(1, sizeof *e);
    e->acc = gk_calloc(c->W, sizeof *e->acc);
    size_t ucap = 0;
    cn_set *S = c->dsets;
    S[0].n = 0;
    if (x != UINT32_MAX) cn_set_push(&S[0], x);
    /* unc_at[d]: some path returned below the top frame before the d-th byte */
    uint8_t unc_at[65536 / 256 + 1];
    uint8_t *unc = v->max_len + 2 <= sizeof unc_at ? unc_at : gk_malloc(v->max_len + 2);
    unc[0] = 0;
    for (size_t i = 1; i < v->N;) {
        size_t d = v->depth[i];
        cn_advance(&c->pool, S[d - 1].v, S[d - 1].n, v->byte[i], &S[d]);
        int below_prev = set_has(&S[d - 1], CN_BELOW);
        unc[d] = (uint8_t)(unc[d - 1] || below_prev);
        if (S[d].n) {
            for (uint32_t t = 0; t < v->ntok[i]; t++) {
                int32_t id = v->sorted[v->tok0[i] + t];
                e->acc[id >> 5] |= 1u << (id & 31);
            }
            i++;
            continue;
        }
        if (unc[d])   /* dead in the known frames, alive below: the whole subtree depends on the context */
            for (uint32_t j = (uint32_t)i; j < v->end[i]; j++)
                for (uint32_t t = 0; t < v->ntok[j]; t++) add_unc(e, &ucap, v->sorted[v->tok0[j] + t]);
        i = v->end[i];
    }
    if (unc != unc_at) free(unc);
    if (c->n_all == c->cap_all) { c->cap_all = c->cap_all ? 2 * c->cap_all : 64; c->all = gk_realloc(c->all, c->cap_all * sizeof *c->all); }
    c->all[c->n_all++] = e;
    c->walks++;
    return e;
}

/* The entry for real stack n: its top k frames over CN_BELOW, k grown until few tokens depend on what lies
 * below (or the whole stack fits: then the walk is exact). */
static pos_entry *entry_for(constrain *c, uint32_t n) {
    pos_entry *e = emap_get(&c->by_node, n);
    if (e) return e;
    uint32_t frames[KEEP_FRAMES_MAX];
    for (int k = 1; k <= KEEP_FRAMES_MAX; k++) {
        /* the top k positions; whole = the stack has no more than k frames */
        uint32_t x = n; int got = 0;
        while (got < k && x != CN_EMPTY && x != UINT32_MAX) { frames[got++] = c->pool.nodes[x].pos; x = c->pool.nodes[x].parent; }
        int whole = x == CN_EMPTY;
        uint32_t t = whole ? n : CN_BELOW;
        if (!whole) for (int j = got - 1; j >= 0 && t != UINT32_MAX; j--) t = cn_intern(&c->pool, frames[j], t);
        if (t == UINT32_MAX) t = n;
        e = emap_get(&c->by_trunc, t);
        if (!e) { e = walk(c, t); emap_put(&c->by_trunc, t, e); }
        if (whole || e->nunc <= UNC_OK) break;
    }
    emap_put(&c->by_node, n, e);
    return e;
}

static size_t popcount_mask(const uint32_t *m, size_t W) {
    size_t n = 0;
    for (size_t k = 0; k < W; k++) n += (size_t)__builtin_popcount(m[k]);
    return n;
}

static void allow_ends(constrain *c, const constrain_state *s, uint32_t *mask) {
    if (!constrain_state_can_end(s)) return;
    for (size_t k = 0; k < c->n_end; k++) mask[c->end_ids[k] >> 5] |= 1u << (c->end_ids[k] & 31);
}

size_t constrain_mask(constrain *c, const constrain_state *s, uint32_t *mask) {
    memset(mask, 0, c->W * sizeof *mask);
    if (s->finished) return 0;
    if (++c->seen_gen == 0) { for (size_t k = 0; k < c->n_all; k++) c->all[k]->gen = 0; c->seen_gen = 1; }
    /* context-independent parts: one OR per distinct entry */
    for (size_t k = 0; k < s->set.n; k++) {
        uint32_t n = s->set.v[k];
        if (n == CN_EMPTY || n == CN_BELOW) continue;
        pos_entry *e = entry_for(c, n);
        if (e->gen == c->seen_gen) continue;
        e->gen = c->seen_gen;
        for (size_t w = 0; w < c->W; w++) mask[w] |= e->acc[w];
    }
    /* the context-dependent tokens: against the real stacks */
    for (size_t k = 0; k < s->set.n; k++) {
        uint32_t n = s->set.v[k];
        if (n == CN_EMPTY || n == CN_BELOW) continue;
        pos_entry *e = entry_for(c, n);
        for (size_t j = 0; j < e->nunc; j++) {
            int32_t id = e->unc[j];
            if (mask[id >> 5] >> (id & 31) & 1) continue;
            size_t len;
            const uint8_t *b = tb(c->v, id, &len);
            if (check_bytes(c, &n, 1, b, len)) mask[id >> 5] |= 1u << (id & 31);
        }
    }
    allow_ends(c, s, mask);
    return popcount_mask(mask, c->W);
}

size_t constrain_mask_ref(constrain *c, const constrain_state *s, uint32_t *mask) {
    memset(mask, 0, c->W * sizeof *mask);
    if (s->finished) return 0;
    for (size_t id = 0; id < c->v->V; id++) {
        size_t len;
        const uint8_t *b = tb(c->v, (int32_t)id, &len);
        if (len && check_bytes(c, s->set.v, s->set.n, b, len)) mask[id >> 5] |= 1u << (id & 31);
    }
    allow_ends(c, s, mask);
    return popcount_mask(mask, c->W);
}

int constrain_accept_token(constrain *c, constrain_state *s, int32_t id) {
    if (s->finished || id < 0 || (size_t)id >= c->v->V) return -1;
    for (size_t k = 0; k < c->n_end; k++)
        if (c->end_ids[k] == id) {
            if (!constrain_state_can_end(s)) return -1;
            s->finished = 1;
            return 0;
        }
    size_t len;
    const uint8_t *b = tb(c->v, id, &len);
    if (!len) return -1;
    return constrain_state_accept_bytes(s, b, len);
}

size_t constrain_apply(constrain *c, const constrain_state *s, float *logits, size_t V, uint32_t *scratch) {
    size_t n = constrain_mask(c, s, scratch);
    size_t Vm = V < c->v->V ? V : c->v->V;
    for (size_t w = 0; w < (Vm + 31) / 32; w++) {
        uint32_t m = scratch[w];
        if (m == 0xFFFFFFFFu) continue;
        size_t base = w * 32, top = base + 32 < Vm ? base + 32 : Vm;
        for (size_t id = base; id < top; id++) if (!(m >> (id - base) & 1)) logits[id] = -INFINITY;
    }
    for (size_t id = Vm; id < V; id++) logits[id] = -INFINITY;
    return n;
}

size_t constrain_min_to_end(constrain *c, const constrain_state *s) {
    if (s->finished) return 0;
    return set_cost(c, s->set.v, s->set.n);
}

size_t constrain_min_after(constrain *c, const constrain_state *s, int32_t id) {
    if (s->finished || id < 0 || (size_t)id >= c->v->V) return SIZE_MAX;
    for (size_t k = 0; k < c->n_end; k++) if (c->end_ids[k] == id) return constrain_state_can_end(s) ? 0 : SIZE_MAX;
    size_t len;
    const uint8_t *b = tb(c->v, id, &len);
    if (!len || !check_bytes(c, s->set.v, s->set.n, b, len)) return SIZE_MAX;
    return set_cost(c, c->tb.v, c->tb.n);
}
