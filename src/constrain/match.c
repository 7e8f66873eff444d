/* match.c: the incremental matcher — a pushdown automaton over bytes, run on a set of stacks.
 *
 * A stack is a linked list of frames, each frame the position of the next element to match in one rule
 * alternative; the top frame's element is always a byte class (after closure). Stacks are interned: a node
 * (pos, parent) has one id for the life of the pool, so a state is a set of node ids, sets dedupe by id, and
 * the step "node n consumes byte b" is computed once and memoised (the token-mask walk does it ~10^5 times).
 *
 * Closure of a node: END pops to the parent; RULE r replaces the frame by its return address and pushes each
 * alternative of r (a return address that is itself an END is skipped: a tail call, so right-recursive
 * repetitions never deepen the stack); BYTES is a result. The empty stack (node 0) means the grammar has
 * ended. Left recursion would loop here; the parser rejects it. */
#include "constrain/constrain_internal.h"

#include <stdlib.h>
#include <string.h>

static uint64_t mix64(uint64_t x) {
    x ^= x >> 33; x *= 0xff51afd7ed558ccdULL; x ^= x >> 33; x *= 0xc4ceb9fe1a85ec53ULL; x ^= x >> 33;
    return x;
}

void cn_set_push(cn_set *s, uint32_t x) {
    if (s->n == s->cap) { s->cap = s->cap ? 2 * s->cap : 16; s->v = gk_realloc(s->v, s->cap * sizeof *s->v); }
    s->v[s->n++] = x;
}

void cn_pool_init(cn_pool *p, const constrain_grammar *g) {
    memset(p, 0, sizeof *p);
    p->g = g;
    p->cap_nodes = 1024;
    p->nodes = gk_malloc(p->cap_nodes * sizeof *p->nodes);
    p->nodes[CN_EMPTY] = (cn_node){ UINT32_MAX, UINT32_MAX };
    p->nodes[CN_BELOW] = (cn_node){ UINT32_MAX, UINT32_MAX };
    p->n_nodes = 2;
    p->ht_cap = 2048;
    p->ht = gk_calloc(p->ht_cap, sizeof *p->ht);
    p->tr_cap = 2048;
    p->tr = gk_calloc(p->tr_cap, sizeof *p->tr);
    cn_mark_grow(p);
}

void cn_pool_free(cn_pool *p) {
    free(p->nodes); free(p->ht); free(p->tr); free(p->tr_list);
    free(p->mark); free(p->umark); free(p->work); free(p->hot_idx); free(p->hits); free(p->hot);
    memset(p, 0, sizeof *p);
}

void cn_mark_grow(cn_pool *p) {
    if (p->mark_cap >= p->cap_nodes) return;
    p->hot_idx = gk_realloc(p->hot_idx, p->cap_nodes * sizeof *p->hot_idx);
    p->hits = gk_realloc(p->hits, p->cap_nodes * sizeof *p->hits);
    memset(p->hot_idx + p->mark_cap, 0, (p->cap_nodes - p->mark_cap) * sizeof *p->hot_idx);
    memset(p->hits + p->mark_cap, 0, (p->cap_nodes - p->mark_cap) * sizeof *p->hits);
    p->mark = gk_realloc(p->mark, p->cap_nodes * sizeof *p->mark);
    p->umark = gk_realloc(p->umark, p->cap_nodes * sizeof *p->umark);
    memset(p->mark + p->mark_cap, 0, (p->cap_nodes - p->mark_cap) * sizeof *p->mark);
    memset(p->umark + p->mark_cap, 0, (p->cap_nodes - p->mark_cap) * sizeof *p->umark);
    p->mark_cap = p->cap_nodes;
}

static uint64_t node_hash(uint32_t pos, uint32_t parent) { return mix64(((uint64_t)pos << 32) | parent); }

uint32_t cn_intern(cn_pool *p, uint32_t pos, uint32_t parent) {
    size_t m = p->ht_cap - 1, h = (size_t)node_hash(pos, parent) & m;
    for (;; h = (h + 1) & m) {
        uint32_t id = p->ht[h];
        if (!id) break;
        if (p->nodes[id].pos == pos && p->nodes[id].parent == parent) return id;
    }
    if (p->n_nodes >= CN_MAX_NODES) { p->overflow = 1; return UINT32_MAX; }
    if (p->n_nodes == p->cap_nodes) {
        p->cap_nodes *= 2;
        p->nodes = gk_realloc(p->nodes, p->cap_nodes * sizeof *p->nodes);
        cn_mark_grow(p);
    }
    uint32_t id = (uint32_t)p->n_nodes++;
    p->nodes[id] = (cn_node){ pos, parent };
    p->ht[h] = id;
    if (2 * p->n_nodes > p->ht_cap) {   /* rehash at half load */
        size_t nc = p->ht_cap * 2;
        uint32_t *nt = gk_calloc(nc, sizeof *nt);
        for (size_t k = 0; k < p->ht_cap; k++) {
            uint32_t x = p->ht[k];
            if (!x) continue;
            size_t j = (size_t)node_hash(p->nodes[x].pos, p->nodes[x].parent) & (nc - 1);
            while (nt[j]) j = (j + 1) & (nc - 1);
            nt[j] = x;
        }
        free(p->ht); p->ht = nt; p->ht_cap = nc;
    }
    return id;
}

uint32_t cn_new_gen(cn_pool *p) {
    if (++p->gen == 0) { memset(p->mark, 0, p->mark_cap * sizeof *p->mark); p->gen = 1; }
    return p->gen;
}

static void work_push(cn_pool *p, size_t *n, uint32_t x) {
    if (*n == p->work_cap) { p->work_cap = p->work_cap ? 2 * p->work_cap : 64; p->work = gk_realloc(p->work, p->work_cap * sizeof *p->work); }
    p->work[(*n)++] = x;
}

/* Closure under the current generation of p->mark (see the file comment). */
void cn_closure(cn_pool *p, uint32_t n0, cn_set *out) {
    const constrain_grammar *g = p->g;
    size_t nw = 0;
    work_push(p, &nw, n0);
    while (nw) {
        uint32_t x = p->work[--nw];
        if (x == UINT32_MAX) continue;   /* dropped (node limit) */
        if (p->mark[x] == p->gen) continue;
        p->mark[x] = p->gen;
        if (x == CN_EMPTY || x == CN_BELOW) { cn_set_push(out, x); continue; }
        cn_node nd = p->nodes[x];
        uint32_t e = g->elems[nd.pos];
        switch (CN_TAG(e)) {
        case CN_END: work_push(p, &nw, nd.parent); break;
        case CN_BYTES: if (out->n < CN_MAX_STACKS) cn_set_push(out, x); else p->overflow = 1; break;
        default: {
            uint32_t r = CN_ARG(e), ret = nd.pos + 1;
            uint32_t base = CN_TAG(g->elems[ret]) == CN_END ? nd.parent : cn_intern(p, ret, nd.parent);
            if (base == UINT32_MAX) break;
            for (uint32_t a = 0; a < g->rule_nalt[r]; a++) {
                uint32_t y = cn_intern(p, g->alt_start[g->rule_alt0[r] + a], base);
                if (y != UINT32_MAX && p->mark[y] != p->gen) work_push(p, &nw, y);
                else if (y == UINT32_MAX) p->overflow = 1;
            }
            if (p->mark_cap < p->cap_nodes) cn_mark_grow(p);
        }
        }
    }
}

const uint32_t *cn_step(cn_pool *p, uint32_t n, unsigned b, size_t *len) {
    const constrain_grammar *g = p->g;
    cn_node nd = p->nodes[n];
    if (!cn_class_has(&g->classes[CN_ARG(g->elems[nd.pos])], b)) { *len = 0; return NULL; }
    uint64_t *slot = NULL;
    if (p->hot_idx[n]) {
        slot = &p->hot[(size_t)(p->hot_idx[n] - 1) * 256 + b];
        if (*slot != UINT64_MAX) { *len = (size_t)(*slot & 0xFFFFFF); return p->tr_list + (*slot >> 24); }
    } else if (++p->hits[n] >= CN_HOT && p->n_hot < CN_MAX_HOT) {
        if (p->n_hot == p->cap_hot) { p->cap_hot = p->cap_hot ? 2 * p->cap_hot : 16; p->hot = gk_realloc(p->hot, p->cap_hot * 256 * sizeof *p->hot); }
        memset(p->hot + p->n_hot * 256, 0xFF, 256 * sizeof *p->hot);
        p->hot_idx[n] = (uint32_t)++p->n_hot;
    }
    uint64_t key = (((uint64_t)n << 8) | b) + 1;
    size_t m = p->tr_cap - 1, h = (size_t)mix64(key) & m;
    for (;; h = (h + 1) & m) {
        if (!p->tr[h].key) break;
        if (p->tr[h].key == key) {
            if (p->hot_idx[n]) p->hot[(size_t)(p->hot_idx[n] - 1) * 256 + b] = ((uint64_t)p->tr[h].off << 24) | p->tr[h].len;
            *len = p->tr[h].len;
            return p->tr_list + p->tr[h].off;
        }
    }
    /* compute: the frame moves past the byte, then closure */
    cn_set tmp = { 0 };
    cn_new_gen(p);
    uint32_t next = CN_TAG(g->elems[nd.pos + 1]) == CN_END ? nd.parent : cn_intern(p, nd.pos + 1, nd.parent);
    if (p->mark_cap < p->cap_nodes) cn_mark_grow(p);
    cn_closure(p, next, &tmp);
    if (p->tr_list_n + tmp.n > p->tr_list_cap) {
        p->tr_list_cap = (p->tr_list_n + tmp.n) * 2 + 1024;
        p->tr_list = gk_realloc(p->tr_list, p->tr_list_cap * sizeof *p->tr_list);
    }
    if (tmp.n) memcpy(p->tr_list + p->tr_list_n, tmp.v, tmp.n * sizeof(uint32_t));
    /* the table may have been probed past; find the free slot again after possible growth */
    if (2 * (p->tr_n + 1) > p->tr_cap) {
        size_t nc = p->tr_cap * 2;
        struct cn_tr *nt = gk_calloc(nc, sizeof *nt);
        for (size_t k = 0; k < p->tr_cap; k++) {
            if (!p->tr[k].key) continue;
            size_t j = (size_t)mix64(p->tr[k].key) & (nc - 1);
            while (nt[j].key) j = (j + 1) & (nc - 1);
            nt[j] = p->tr[k];
        }
        free(p->tr);
        p->tr = nt; p->tr_cap = nc;
        m = nc - 1;
        h = (size_t)mix64(key) & m;
        while (p->tr[h].key) h = (h + 1) & m;
    }
    p->tr[h].key = key; p->tr[h].off = (uint32_t)p->tr_list_n; p->tr[h].len = (uint32_t)tmp.n;
    p->tr_n++;
    p->tr_list_n += tmp.n;
    free(tmp.v);
    if (p->hot_idx[n]) p->hot[(size_t)(p->hot_idx[n] - 1) * 256 + b] = ((uint64_t)p->tr[h].off << 24) | p->tr[h].len;
    *len = p->tr[h].len;
    return p->tr_list ? p->tr_list + p->tr[h].off : NULL;   /* an empty list before any was stored */
}

void cn_advance(cn_pool *p, const uint32_t *in, size_t n_in, unsigned b, cn_set *out) {
    out->n = 0;
    if (++p->ugen == 0) { memset(p->umark, 0, p->mark_cap * sizeof *p->umark); p->ugen = 1; }
    uint32_t ug = p->ugen;
    for (size_t k = 0; k < n_in; k++) {
        uint32_t n = in[k];
        if (n == CN_EMPTY || n == CN_BELOW) continue;
        size_t len;
        const uint32_t *l = cn_step(p, n, b, &len);
        if (!len) continue;
        /* copy first: a later cn_step may move tr_list (and grow umark) */
        for (size_t j = 0; j < len; j++) {
            uint32_t x = l[j];
            if (p->umark[x] == ug) continue;
            p->umark[x] = ug;
            cn_set_push(out, x);
        }
        ug = p->ugen;
    }
}

/* ---------------------------------------------------------------- states */

static void state_start(constrain_state *s) {
    cn_pool *p = s->pool;
    const constrain_grammar *g = s->g;
    s->set.n = 0;
    cn_new_gen(p);
    for (uint32_t a = 0; a < g->rule_nalt[g->root]; a++) {
        uint32_t y = cn_intern(p, g->alt_start[g->rule_alt0[g->root] + a], CN_EMPTY);
        if (p->mark_cap < p->cap_nodes) cn_mark_grow(p);
        cn_closure(p, y, &s->set);
    }
}

constrain_state *constrain_state_new_g(const constrain_grammar *g) {
    constrain_state *s = gk_calloc(1, sizeof *s);
    s->g = g;
    s->pool = gk_malloc(sizeof *s->pool);
    cn_pool_init(s->pool, g);
    s->own_pool = 1;
    state_start(s);
    return s;
}

constrain_state *cn_state_new_pool(const constrain_grammar *g, cn_pool *pool) {
    constrain_state *s = gk_calloc(1, sizeof *s);
    s->g = g; s->pool = pool;
    state_start(s);
    return s;
}

constrain_state *constrain_state_clone(const constrain_state *s) {
    GK_CHECK(!s->own_pool, "constrain_state_clone: only states bound to a constraint can be cloned");
    constrain_state *c = gk_calloc(1, sizeof *c);
    *c = *s;
    c->set.v = gk_malloc((s->set.n + 1) * sizeof *c->set.v);
    c->set.cap = s->set.n + 1;
    if (s->set.n) memcpy(c->set.v, s->set.v, s->set.n * sizeof *c->set.v);
    return c;
}

void constrain_state_free(constrain_state *s) {
    if (!s) return;
    if (s->own_pool) { cn_pool_free(s->pool); free(s->pool); }
    free(s->set.v);
    free(s);
}

int constrain_state_accept_bytes(constrain_state *s, const void *bytes, size_t n) {
    const uint8_t *b = bytes;
    if (n == 0) return 0;
    if (s->finished) return -1;
    cn_set a = { 0 }, c = { 0 };
    const uint32_t *cur = s->set.v; size_t ncur = s->set.n;
    for (size_t k = 0; k < n; k++) {
        cn_advance(s->pool, cur, ncur, b[k], &a);
        if (!a.n) { free(a.v); free(c.v); return -1; }
        cn_set t = a; a = c; c = t;
        cur = c.v; ncur = c.n;
    }
    free(s->set.v);
    s->set = c;
    free(a.v);
    return 0;
}

int constrain_state_can_end(const constrain_state *s) {
    for (size_t k = 0; k < s->set.n; k++) if (s->set.v[k] == CN_EMPTY) return 1;
    return 0;
}
int constrain_state_is_done(const constrain_state *s) {
    return s->finished || (s->set.n == 1 && s->set.v[0] == CN_EMPTY);
}

int constrain_grammar_matches(const constrain_grammar *g, const void *text, size_t n) {
    constrain_state *s = constrain_state_new_g(g);
    int ok = constrain_state_accept_bytes(s, text, n) == 0 && constrain_state_can_end(s);
    constrain_state_free(s);
    return ok;
}
