/* constrain_internal.h: the compiled grammar and the interned stacks shared by gbnf.c, match.c and mask.c.
 *
 * A compiled grammar is flat: elems[] holds every alternative of every rule as a run of elements ended by
 * an END element. An element is BYTES (one byte from a 256-bit class) or RULE (a call). Positions are indices
 * into elems[]. Unicode lives only in the parser: a character class is compiled into UTF-8 byte sequences. */
#ifndef GK_CONSTRAIN_INTERNAL_H
#define GK_CONSTRAIN_INTERNAL_H
#include "constrain/constrain.h"

#define CN_END   0u
#define CN_BYTES 1u
#define CN_RULE  2u
#define CN_TAG(e)  ((e) >> 30)
#define CN_ARG(e)  ((e) & 0x3FFFFFFFu)
#define CN_MK(t, a) (((uint32_t)(t) << 30) | (uint32_t)(a))

typedef struct { uint64_t w[4]; } cn_class;   /* 256-bit byte set */
static inline int cn_class_has(const cn_class *c, unsigned b) { return (int)((c->w[b >> 6] >> (b & 63)) & 1); }

struct constrain_grammar {
    uint32_t *elems; size_t n_elems;
    cn_class *classes; size_t n_classes;
    uint32_t *alt_start;            /* [n_alts] first position of each alternative */
    uint32_t *rule_alt0, *rule_nalt;   /* [n_rules] its alternatives: alt_start[rule_alt0 .. + nalt) */
    char **rule_names; size_t n_rules;
    uint32_t root;
};

/* Interned stacks: node 0 is the empty stack (the grammar has ended), node 1 the "unknown below" marker
 * used while computing context-independent masks; a node is (position of the next element, parent node). */
#define CN_EMPTY 0u
#define CN_BELOW 1u
typedef struct { uint32_t pos, parent; } cn_node;

typedef struct cn_pool {
    const constrain_grammar *g;
    cn_node *nodes; size_t n_nodes, cap_nodes;
    uint32_t *ht; size_t ht_cap;    /* node interning: open addressing over node ids (0 = free slot) */
    /* memoised transitions: (node, byte) -> list of nodes in tr_list */
    uint64_t *tr_key; uint32_t *tr_off, *tr_len; size_t tr_cap, tr_n;
    uint32_t *tr_list; size_t tr_list_n, tr_list_cap;
    /* dedupe marks: mark[node] == gen means "already in the set being built" */
    uint32_t *mark; size_t mark_cap; uint32_t gen;
    uint32_t *umark; uint32_t ugen;   /* the same, for unions of memoised steps (cn_advance) */
    /* closure scratch */
    uint32_t *work; size_t work_cap;
    int overflow;                   /* too many nodes: the grammar is pathological */
} cn_pool;

void cn_pool_init(cn_pool *p, const constrain_grammar *g);
void cn_pool_free(cn_pool *p);
uint32_t cn_intern(cn_pool *p, uint32_t pos, uint32_t parent);
/* Appends the closure of node n (stacks whose top is a BYTES element, or CN_EMPTY / CN_BELOW) to out,
 * skipping nodes already marked in the current generation. */
typedef struct { uint32_t *v; size_t n, cap; } cn_set;
void cn_set_push(cn_set *s, uint32_t x);
void cn_closure(cn_pool *p, uint32_t n, cn_set *out);
/* The nodes after node n (top BYTES) consumes byte b: memoised; *len = 0 if b is not in the class. */
const uint32_t *cn_step(cn_pool *p, uint32_t n, unsigned b, size_t *len);
/* out = advance of in[n_in] by byte b (deduplicated). */
void cn_advance(cn_pool *p, const uint32_t *in, size_t n_in, unsigned b, cn_set *out);
uint32_t cn_new_gen(cn_pool *p);
void cn_mark_grow(cn_pool *p);

struct constrain_state {
    const constrain_grammar *g;
    cn_pool *pool;      /* owned (byte-level state) or the constraint's */
    int own_pool;
    cn_set set;         /* the live stacks (sorted node ids) */
    int finished;       /* an end token was accepted */
};

constrain_state *cn_state_new_pool(const constrain_grammar *g, cn_pool *pool);

/* A growing string (converters build GBNF text). */
typedef struct { char *s; size_t n, cap; } cn_sb;
void cn_sb_addn(cn_sb *b, const char *s, size_t n);
void cn_sb_add(cn_sb *b, const char *s);
void cn_sb_addf(cn_sb *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void cn_sb_literal(cn_sb *b, const char *s, size_t n);        /* a GBNF "string literal" of bytes s[n] */
/* A GBNF class of code point ranges lo[k]..hi[k] (sorted, disjoint, non-empty). */
void cn_sb_class(cn_sb *b, const uint32_t *lo, const uint32_t *hi, size_t n);
/* The GBNF text of a regex as an expression (no rule name), appended to b. 0 or -1 with err. */
int cn_regex_expr(cn_sb *b, const char *re, size_t len, gk_err *err);

#define CN_MAX_NODES (1u << 22)
#define CN_MAX_STACKS 4096
#endif
