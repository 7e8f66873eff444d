/* gbnf.c: the GBNF parser (llama.cpp's grammar syntax) and its compilation into a byte-level grammar.
 *
 *   root  ::= rule+              rule ::= name "::=" alternates
 *   alternates ::= sequence ("|" sequence)*      sequence ::= (primary postfix?)*
 *   primary ::= "literal" | [class] | [^class] | . | name | "(" alternates ")"
 *   postfix ::= "*" | "+" | "?" | "{" m "}" | "{" m ",}" | "{" m "," n "}"
 *   comments: "#" to the end of the line
 *
 * A rule ends where the next `name ::=` begins (llama.cpp ends it at a newline outside parentheses; every
 * grammar it accepts is accepted here too). Groups and repetitions become generated rules named after their
 * parent ("root-3"):  x* -> R ::= x R | ;  x? -> R ::= x | ;  x{m,n} -> m copies of x, then n-m nested
 * optionals. Right recursion costs no stack depth in the matcher (tail calls), so long repetitions are cheap.
 *
 * Unicode: literals and classes are code points; a class is compiled into UTF-8 byte sequences (the code point
 * range split where the encodings' lengths and continuation bytes change, so each piece is a product of byte
 * ranges), which lets the matcher and the token masks work on bytes only. */
#include "constrain/constrain_internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_ELEMS (1u << 21)   /* a bound for hostile grammars (x{1000}{1000}) */
#define MAX_REPEAT 10000

typedef struct { uint32_t *v; size_t n, cap; } symv;
typedef struct {
    char *name;
    symv *alts; size_t nalts, capalts;
    int defined;
    size_t def_at, ref_at;   /* byte offsets for error messages */
    int referenced;
} prule;

typedef struct {
    const char *s; size_t n, i;
    prule *rules; size_t nrules, caprules;
    cn_class *cls; size_t ncls, capcls;
    size_t total;            /* symbols so far (bound) */
    gk_err *err;
    int failed;
} parser;

static void symv_push(symv *v, uint32_t x) {
    if (v->n == v->cap) { v->cap = v->cap ? 2 * v->cap : 8; v->v = gk_realloc(v->v, v->cap * sizeof *v->v); }
    v->v[v->n++] = x;
}

/* line and column (in characters) of byte offset at */
static void line_col(const parser *p, size_t at, size_t *line, size_t *col) {
    *line = 1; *col = 1;
    for (size_t k = 0; k < at && k < p->n; k++) {
        if (p->s[k] == '\n') { (*line)++; *col = 1; }
        else if (((unsigned char)p->s[k] & 0xC0) != 0x80) (*col)++;
    }
}

__attribute__((format(printf, 3, 4)))
static int fail(parser *p, size_t at, const char *fmt, ...) {
    if (p->failed) return -1;
    p->failed = 1;
    char msg[768];
    va_list ap; va_start(ap, fmt); vsnprintf(msg, sizeof msg, fmt, ap); va_end(ap);
    size_t line, col;
    line_col(p, at, &line, &col);
    return gk_errf(p->err, "grammar line %zu, column %zu: %s", line, col, msg);
}

static uint32_t add_class(parser *p, const cn_class *c) {
    for (size_t k = 0; k < p->ncls; k++) if (!memcmp(&p->cls[k], c, sizeof *c)) return (uint32_t)k;
    if (p->ncls == p->capcls) { p->capcls = p->capcls ? 2 * p->capcls : 32; p->cls = gk_realloc(p->cls, p->capcls * sizeof *p->cls); }
    p->cls[p->ncls] = *c;
    return (uint32_t)p->ncls++;
}
static uint32_t byte_sym(parser *p, unsigned lo, unsigned hi) {
    cn_class c; memset(&c, 0, sizeof c);
    for (unsigned b = lo; b <= hi; b++) c.w[b >> 6] |= 1ull << (b & 63);
    return CN_MK(CN_BYTES, add_class(p, &c));
}

static uint32_t rule_add(parser *p, char *name) {
    if (p->nrules == p->caprules) { p->caprules = p->caprules ? 2 * p->caprules : 32; p->rules = gk_realloc(p->rules, p->caprules * sizeof *p->rules); }
    prule *r = &p->rules[p->nrules];
    memset(r, 0, sizeof *r);
    r->name = name;
    return (uint32_t)p->nrules++;
}
static uint32_t rule_lookup(parser *p, const char *name, size_t len) {
    for (size_t k = 0; k < p->nrules; k++)
        if (strlen(p->rules[k].name) == len && !memcmp(p->rules[k].name, name, len)) return (uint32_t)k;
    char *nm = gk_malloc(len + 1);
    memcpy(nm, name, len); nm[len] = 0;
    return rule_add(p, nm);
}
/* a generated rule "parent-k" */
static uint32_t rule_anon(parser *p, uint32_t parent) {
    const char *base = p->rules[parent].name;
    size_t L = strlen(base) + 24;
    char *nm = gk_malloc(L);
    snprintf(nm, L, "%s-%zu", base, p->nrules);
    uint32_t r = rule_add(p, nm);
    p->rules[r].defined = 1;
    p->rules[r].def_at = p->i;
    return r;
}
static symv *rule_new_alt(parser *p, uint32_t r) {
    prule *R = &p->rules[r];
    if (R->nalts == R->capalts) { R->capalts = R->capalts ? 2 * R->capalts : 4; R->alts = gk_realloc(R->alts, R->capalts * sizeof *R->alts); }
    memset(&R->alts[R->nalts], 0, sizeof R->alts[0]);
    return &R->alts[R->nalts++];
}
static void count(parser *p, size_t k) {
    p->total += k;
    if (p->total > MAX_ELEMS && !p->failed) fail(p, p->i, "the grammar expands to over %u elements (repetition counts too large?)", MAX_ELEMS);
}

/* ---------------------------------------------------------------- lexing */

static int is_name_char(int c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_'; }

static void skip_space(parser *p) {
    while (p->i < p->n) {
        char c = p->s[p->i];
        if (c == ' ' || c == '\t' || c == '\r' || c == '\n') p->i++;
        else if (c == '#') { while (p->i < p->n && p->s[p->i] != '\n') p->i++; }
        else break;
    }
}
static size_t name_len_at(const parser *p, size_t i) {
    size_t k = i;
    while (k < p->n && is_name_char((unsigned char)p->s[k])) k++;
    return k - i;
}
/* at i: `name ::=` (the start of the next rule)? */
static int rule_start_at(const parser *p, size_t i) {
    size_t L = name_len_at(p, i);
    if (!L) return 0;
    size_t k = i + L;
    while (k < p->n && (p->s[k] == ' ' || p->s[k] == '\t')) k++;
    return k + 3 <= p->n && !memcmp(p->s + k, "::=", 3);
}

/* One UTF-8 code point of the grammar text at p->i (advanced). -1 on invalid UTF-8. */
static long utf8_at(parser *p) {
    const unsigned char *s = (const unsigned char *)p->s + p->i;
    size_t left = p->n - p->i;
    unsigned c = s[0];
    int n; long cp;
    if (c < 0x80) { p->i++; return c; }
    if (c >= 0xC2 && c <= 0xDF) { n = 2; cp = c & 0x1F; }
    else if (c >= 0xE0 && c <= 0xEF) { n = 3; cp = c & 0x0F; }
    else if (c >= 0xF0 && c <= 0xF4) { n = 4; cp = c & 0x07; }
    else return -1;
    if (left < (size_t)n) return -1;
    for (int k = 1; k < n; k++) { if ((s[k] & 0xC0) != 0x80) return -1; cp = (cp << 6) | (s[k] & 0x3F); }
    if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10FFFF)) || (cp >= 0xD800 && cp <= 0xDFFF)) return -1;
    p->i += (size_t)n;
    return cp;
}

static long hex_digits(parser *p, int n) {
    long v = 0;
    for (int k = 0; k < n; k++) {
        if (p->i >= p->n) return -1;
        char c = p->s[p->i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (d < 0) return -1;
        v = v * 16 + d; p->i++;
    }
    return v;
}

/* A character of a literal or class (escapes decoded). -1 with the error set. */
static long char_at(parser *p) {
    size_t at = p->i;
    if (p->i >= p->n) { fail(p, at, "unexpected end of grammar inside a literal or class"); return -1; }
    if (p->s[p->i] != '\\') {
        long cp = utf8_at(p);
        if (cp < 0) fail(p, at, "invalid UTF-8 in the grammar");
        return cp;
    }
    p->i++;
    if (p->i >= p->n) { fail(p, at, "unexpected end of grammar after a backslash"); return -1; }
    char c = p->s[p->i++];
    long v;
    switch (c) {
    case 'n': return '\n';
    case 'r': return '\r';
    case 't': return '\t';
    case '0': return 0;
    case '\\': case '"': case '[': case ']': case '-': case '^': case '/': case '\'': return c;
    case 'x': v = hex_digits(p, 2); break;
    case 'u': v = hex_digits(p, 4); break;
    case 'U': v = hex_digits(p, 8); break;
    default: fail(p, at, "unknown escape \\%c (known: \\n \\r \\t \\\\ \\\" \\[ \\] \\- \\xHH \\uHHHH \\UHHHHHHHH)", c); return -1;
    }
    if (v < 0) { fail(p, at, "\\%c needs %d hex digits", c, c == 'x' ? 2 : c == 'u' ? 4 : 8); return -1; }
    if (v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) { fail(p, at, "escape \\%c is not a Unicode scalar value (U+%lX)", c, v); return -1; }
    return v;
}

/* ---------------------------------------------------------------- code point sets -> UTF-8 byte sequences */

typedef struct { uint32_t lo, hi; } crange;
static int crange_cmp(const void *a, const void *b) {
    const crange *x = a, *y = b;
    return (x->lo > y->lo) - (x->lo < y->lo);
}
/* sorts and merges in place; drops surrogates; returns the new count */
static size_t ranges_normalize(crange *r, size_t n, crange **out) {
    if (n) qsort(r, n, sizeof *r, crange_cmp);
    crange *o = gk_malloc((2 * n + 2) * sizeof *o);
    size_t m = 0;
    for (size_t k = 0; k < n; k++) {
        if (m && r[k].lo <= o[m - 1].hi + 1) { if (r[k].hi > o[m - 1].hi) o[m - 1].hi = r[k].hi; }
        else o[m++] = r[k];
    }
    /* cut out U+D800..U+DFFF */
    crange *f = gk_malloc((2 * m + 2) * sizeof *f);
    size_t q = 0;
    for (size_t k = 0; k < m; k++) {
        if (o[k].hi < 0xD800 || o[k].lo > 0xDFFF) { f[q++] = o[k]; continue; }
        if (o[k].lo < 0xD800) f[q++] = (crange){ o[k].lo, 0xD7FF };
        if (o[k].hi > 0xDFFF) f[q++] = (crange){ 0xE000, o[k].hi };
    }
    free(o);
    *out = f;
    return q;
}

static int utf8_encode(uint32_t cp, unsigned char *b) {
    if (cp < 0x80) { b[0] = (unsigned char)cp; return 1; }
    if (cp < 0x800) { b[0] = (unsigned char)(0xC0 | (cp >> 6)); b[1] = (unsigned char)(0x80 | (cp & 0x3F)); return 2; }
    if (cp < 0x10000) { b[0] = (unsigned char)(0xE0 | (cp >> 12)); b[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
                        b[2] = (unsigned char)(0x80 | (cp & 0x3F)); return 3; }
    b[0] = (unsigned char)(0xF0 | (cp >> 18)); b[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
    b[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F)); b[3] = (unsigned char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Emits [lo, hi] (same encoded length n) as products of byte ranges, one alternative of rule r each.
 * Split until, at every continuation boundary, lo and hi either share the bits above it or lo's bits below
 * are all 0 and hi's all 1: then the byte-wise ranges enumerate exactly [lo, hi]. */
static void utf8_split(parser *p, uint32_t r, uint32_t lo, uint32_t hi, int n) {
    for (int i = 1; i < n; i++) {
        uint32_t m = (1u << (6 * i)) - 1;
        if ((lo & ~m) != (hi & ~m)) {
            if (lo & m) { utf8_split(p, r, lo, lo | m, n); utf8_split(p, r, (lo | m) + 1, hi, n); return; }
            if ((hi & m) != m) { utf8_split(p, r, lo, (hi & ~m) - 1, n); utf8_split(p, r, hi & ~m, hi, n); return; }
        }
    }
    unsigned char a[4], b[4];
    utf8_encode(lo, a); utf8_encode(hi, b);
    symv *alt = rule_new_alt(p, r);
    for (int k = 0; k < n; k++) symv_push(alt, byte_sym(p, a[k], b[k]));
    count(p, (size_t)n + 1);
}

/* The symbol for a code point set: one BYTES element if it is all ASCII, else a generated rule. */
static int class_sym(parser *p, uint32_t parent, crange *r, size_t n, int negate, size_t at, uint32_t *out) {
    crange *f;
    size_t m = ranges_normalize(r, n, &f);
    if (negate) {   /* complement over U+0000..U+10FFFF (surrogates stay out) */
        crange *c = gk_malloc((m + 2) * sizeof *c);
        size_t q = 0; uint32_t next = 0;
        for (size_t k = 0; k < m; k++) { if (f[k].lo > next) c[q++] = (crange){ next, f[k].lo - 1 }; next = f[k].hi + 1; }
        if (next <= 0x10FFFF) c[q++] = (crange){ next, 0x10FFFF };
        free(f);
        m = ranges_normalize(c, q, &f);
        free(c);
    }
    if (m == 0) { free(f); return fail(p, at, "character class matches no character"); }
    if (f[m - 1].hi < 0x80) {   /* ASCII only */
        cn_class c; memset(&c, 0, sizeof c);
        for (size_t k = 0; k < m; k++) for (uint32_t b = f[k].lo; b <= f[k].hi; b++) c.w[b >> 6] |= 1ull << (b & 63);
        *out = CN_MK(CN_BYTES, add_class(p, &c));
        free(f);
        return 0;
    }
    uint32_t R = rule_anon(p, parent);
    cn_class ascii; memset(&ascii, 0, sizeof ascii);
    int any_ascii = 0;
    static const uint32_t bounds[4][2] = { { 0, 0x7F }, { 0x80, 0x7FF }, { 0x800, 0xFFFF }, { 0x10000, 0x10FFFF } };
    for (size_t k = 0; k < m; k++)
        for (int L = 0; L < 4; L++) {
            uint32_t lo = f[k].lo > bounds[L][0] ? f[k].lo : bounds[L][0];
            uint32_t hi = f[k].hi < bounds[L][1] ? f[k].hi : bounds[L][1];
            if (lo > hi) continue;
            if (L == 0) { for (uint32_t b = lo; b <= hi; b++) ascii.w[b >> 6] |= 1ull << (b & 63); any_ascii = 1; }
            else utf8_split(p, R, lo, hi, L + 1);
        }
    if (any_ascii) symv_push(rule_new_alt(p, R), CN_MK(CN_BYTES, add_class(p, &ascii)));
    free(f);
    *out = CN_MK(CN_RULE, R);
    return 0;
}

/* ---------------------------------------------------------------- expressions */

static int parse_alternates(parser *p, uint32_t rule, int nested);

/* The symbols of one primary appended to unit. */
static int parse_primary(parser *p, uint32_t rule, symv *unit) {
    size_t at = p->i;
    char c = p->s[p->i];
    if (c == '"') {
        p->i++;
        for (;;) {
            if (p->i >= p->n) return fail(p, at, "unterminated string literal");
            if (p->s[p->i] == '"') { p->i++; break; }
            if (p->s[p->i] == '\n') return fail(p, at, "unterminated string literal (newline inside it; write \\n)");
            long cp = char_at(p);
            if (cp < 0) return -1;
            unsigned char b[4];
            int k = utf8_encode((uint32_t)cp, b);
            for (int j = 0; j < k; j++) symv_push(unit, byte_sym(p, b[j], b[j]));
            count(p, (size_t)k);
        }
        return p->failed ? -1 : 0;
    }
    if (c == '[' || c == '.') {
        crange *r = NULL; size_t n = 0, cap = 0;
        int negate = 0;
        if (c == '.') { p->i++; r = gk_malloc(sizeof *r); r[0] = (crange){ 0, 0x10FFFF }; n = 1; }
        else {
            p->i++;
            if (p->i < p->n && p->s[p->i] == '^') { negate = 1; p->i++; }
            for (;;) {
                if (p->i >= p->n) { free(r); return fail(p, at, "unterminated character class"); }
                if (p->s[p->i] == ']') { p->i++; break; }
                long lo = char_at(p), hi;
                if (lo < 0) { free(r); return -1; }
                hi = lo;
                if (p->i + 1 < p->n && p->s[p->i] == '-' && p->s[p->i + 1] != ']') {
                    p->i++;
                    size_t at2 = p->i;
                    hi = char_at(p);
                    if (hi < 0) { free(r); return -1; }
                    if (hi < lo) { free(r); return fail(p, at2, "range end U+%04lX is before its start U+%04lX", hi, lo); }
                }
                if (n == cap) { cap = cap ? 2 * cap : 8; r = gk_realloc(r, cap * sizeof *r); }
                r[n++] = (crange){ (uint32_t)lo, (uint32_t)hi };
            }
            if (n == 0 && !negate) { free(r); return fail(p, at, "empty character class []"); }
        }
        uint32_t sym = 0;
        int rc = class_sym(p, rule, r, n, negate, at, &sym);
        free(r);
        if (rc) return -1;
        symv_push(unit, sym);
        count(p, 1);
        return 0;
    }
    if (c == '(') {
        p->i++;
        uint32_t g = rule_anon(p, rule);
        if (parse_alternates(p, g, 1)) return -1;
        skip_space(p);
        if (p->i >= p->n || p->s[p->i] != ')') return fail(p, p->i, "expected ')' to close the group opened at line/column of '(' (offset %zu)", at);
        p->i++;
        symv_push(unit, CN_MK(CN_RULE, g));
        count(p, 1);
        return 0;
    }
    size_t L = name_len_at(p, p->i);
    if (L) {
        uint32_t r = rule_lookup(p, p->s + p->i, L);
        if (!p->rules[r].referenced) { p->rules[r].referenced = 1; p->rules[r].ref_at = p->i; }
        p->i += L;
        symv_push(unit, CN_MK(CN_RULE, r));
        count(p, 1);
        return 0;
    }
    return fail(p, at, "unexpected '%c' (expected a literal, a [class], '.', a rule name or '(')", c);
}

static int parse_uint(parser *p, long *v) {
    size_t at = p->i;
    long x = 0;
    if (p->i >= p->n || p->s[p->i] < '0' || p->s[p->i] > '9') return fail(p, at, "expected a number in {m,n}");
    while (p->i < p->n && p->s[p->i] >= '0' && p->s[p->i] <= '9') {
        x = x * 10 + (p->s[p->i++] - '0');
        if (x > MAX_REPEAT) return fail(p, at, "repetition count over %d", MAX_REPEAT);
    }
    *v = x;
    return 0;
}

/* Appends x{min,max} (max < 0: unbounded) to seq. x is one symbol. */
static void repeat(parser *p, uint32_t rule, symv *seq, uint32_t x, long min, long max) {
    for (long k = 0; k < min; k++) symv_push(seq, x);
    count(p, (size_t)min);
    if (max < 0) {   /* R ::= x R | */
        uint32_t R = rule_anon(p, rule);
        symv *a = rule_new_alt(p, R);
        symv_push(a, x); symv_push(a, CN_MK(CN_RULE, R));
        rule_new_alt(p, R);
        symv_push(seq, CN_MK(CN_RULE, R));
        count(p, 4);
        return;
    }
    uint32_t inner = UINT32_MAX;   /* R_k ::= x R_{k-1} | */
    for (long k = min; k < max && !p->failed; k++) {
        uint32_t R = rule_anon(p, rule);
        symv *a = rule_new_alt(p, R);
        symv_push(a, x);
        if (inner != UINT32_MAX) symv_push(a, CN_MK(CN_RULE, inner));
        rule_new_alt(p, R);
        inner = R;
        count(p, 4);
    }
    if (inner != UINT32_MAX) symv_push(seq, CN_MK(CN_RULE, inner));
}

static int parse_sequence(parser *p, uint32_t rule, int nested, symv *seq) {
    for (;;) {
        skip_space(p);
        if (p->i >= p->n) return 0;
        char c = p->s[p->i];
        if (c == '|' || c == ')') return 0;
        if (!nested && rule_start_at(p, p->i)) return 0;
        symv unit = { 0 };
        if (parse_primary(p, rule, &unit)) { free(unit.v); return -1; }
        /* postfix operators (possibly several: x?* ...); none after an unbounded one: x++ or x*+ nests one
         * unbounded repetition in another, which matches nothing more and costs the matcher exponential time */
        int unbounded = 0;
        for (;;) {
            if (p->i >= p->n) break;
            char op = p->s[p->i];
            long min, max;
            if (unbounded && (op == '*' || op == '+' || op == '?' || op == '{')) {
                free(unit.v);
                return fail(p, p->i, "'%c' after an unbounded repetition: repeat it once ('*' or '+' alone)", op);
            }
            if (op == '*') { min = 0; max = -1; }
            else if (op == '+') { min = 1; max = -1; }
            else if (op == '?') { min = 0; max = 1; }
            else if (op == '{') {
                size_t at = p->i;
                p->i++;
                skip_space(p);
                if (parse_uint(p, &min)) { free(unit.v); return -1; }
                skip_space(p);
                max = min;
                if (p->i < p->n && p->s[p->i] == ',') {
                    p->i++; skip_space(p);
                    if (p->i < p->n && p->s[p->i] == '}') max = -1;
                    else if (parse_uint(p, &max)) { free(unit.v); return -1; }
                    skip_space(p);
                }
                if (p->i >= p->n || p->s[p->i] != '}') { free(unit.v); return fail(p, at, "expected '}' to close {m,n}"); }
                if (max >= 0 && max < min) { free(unit.v); return fail(p, at, "{%ld,%ld}: the maximum is below the minimum", min, max); }
            } else break;
            p->i++;
            uint32_t x;
            if (unit.n == 1) x = unit.v[0];
            else {   /* a multi-symbol literal: wrap it in a rule */
                uint32_t W = rule_anon(p, rule);
                symv *a = rule_new_alt(p, W);
                for (size_t k = 0; k < unit.n; k++) symv_push(a, unit.v[k]);
                x = CN_MK(CN_RULE, W);
            }
            unit.n = 0;
            unbounded = max < 0;
            repeat(p, rule, &unit, x, min, max);
            if (p->failed) { free(unit.v); return -1; }
            if (unit.n != 1) {   /* x{m,n} made several symbols; a further postfix wraps them */
                uint32_t W = rule_anon(p, rule);
                symv *a = rule_new_alt(p, W);
                for (size_t k = 0; k < unit.n; k++) symv_push(a, unit.v[k]);
                unit.n = 0;
                symv_push(&unit, CN_MK(CN_RULE, W));
            }
        }
        for (size_t k = 0; k < unit.n; k++) symv_push(seq, unit.v[k]);
        free(unit.v);
        if (p->failed) return -1;
    }
}

static int parse_alternates(parser *p, uint32_t rule, int nested) {
    for (;;) {
        symv seq = { 0 };
        if (parse_sequence(p, rule, nested, &seq)) { free(seq.v); return -1; }
        *rule_new_alt(p, rule) = seq;
        skip_space(p);
        if (p->i < p->n && p->s[p->i] == '|') { p->i++; continue; }
        return 0;
    }
}

/* ---------------------------------------------------------------- checks and flattening */

/* Left recursion loops a top-down matcher when the loop grows the stack: a rule that can call itself before
 * consuming a byte through at least one call that is not a tail call (a tail call replaces its frame, and the
 * interned stacks then revisit the same node, which the closure's marks stop). So `expr ::= expr "+" term` is
 * rejected, while a repetition of something that can be empty (`("a"?)*`, the regex `(a|b?)*`) is fine.
 * Method: the graph of calls at the left edge (after nullable prefixes), its strongly connected components
 * (Kosaraju, iterative), and an error for a component holding a non-tail edge. */
static int check_left_recursion(parser *p) {
    size_t R = p->nrules;
    uint8_t *nullable = gk_calloc(R, 1);
    for (int changed = 1; changed;) {
        changed = 0;
        for (size_t r = 0; r < R; r++) {
            if (nullable[r]) continue;
            for (size_t a = 0; a < p->rules[r].nalts && !nullable[r]; a++) {
                symv *s = &p->rules[r].alts[a];
                size_t k = 0;
                while (k < s->n && CN_TAG(s->v[k]) == CN_RULE && nullable[CN_ARG(s->v[k])]) k++;
                if (k == s->n) { nullable[r] = 1; changed = 1; }
            }
        }
    }
    /* edges (CSR, forward and reversed), each with its tail flag */
    size_t ne = 0;
    for (size_t r = 0; r < R; r++)
        for (size_t a = 0; a < p->rules[r].nalts; a++) {
            symv *sv = &p->rules[r].alts[a];
            for (size_t k = 0; k < sv->n && CN_TAG(sv->v[k]) == CN_RULE; k++) { ne++; if (!nullable[CN_ARG(sv->v[k])]) break; }
        }
    uint32_t *efrom = gk_malloc((ne + 1) * sizeof *efrom), *eto = gk_malloc((ne + 1) * sizeof *eto);
    uint8_t *etail = gk_malloc(ne + 1);
    size_t at = 0;
    for (size_t r = 0; r < R; r++)
        for (size_t a = 0; a < p->rules[r].nalts; a++) {
            symv *sv = &p->rules[r].alts[a];
            for (size_t k = 0; k < sv->n && CN_TAG(sv->v[k]) == CN_RULE; k++) {
                efrom[at] = (uint32_t)r; eto[at] = CN_ARG(sv->v[k]); etail[at] = k + 1 == sv->n; at++;
                if (!nullable[CN_ARG(sv->v[k])]) break;
            }
        }
    size_t *f0 = gk_calloc(R + 1, sizeof *f0), *b0 = gk_calloc(R + 1, sizeof *b0);
    uint32_t *fadj = gk_malloc((ne + 1) * sizeof *fadj), *badj = gk_malloc((ne + 1) * sizeof *badj);
    for (size_t e = 0; e < ne; e++) { f0[efrom[e] + 1]++; b0[eto[e] + 1]++; }
    for (size_t r = 0; r < R; r++) { f0[r + 1] += f0[r]; b0[r + 1] += b0[r]; }
    size_t *fi = gk_malloc((R + 1) * sizeof *fi), *bi = gk_malloc((R + 1) * sizeof *bi);
    memcpy(fi, f0, (R + 1) * sizeof *fi); memcpy(bi, b0, (R + 1) * sizeof *bi);
    for (size_t e = 0; e < ne; e++) { fadj[fi[efrom[e]]++] = eto[e]; badj[bi[eto[e]]++] = efrom[e]; }
    /* pass 1: finishing order on the forward graph */
    uint8_t *seen = gk_calloc(R, 1);
    uint32_t *order = gk_malloc((R + 1) * sizeof *order), *stk = gk_malloc((R + 1) * sizeof *stk);
    size_t *it = gk_malloc((R + 1) * sizeof *it), no = 0;
    for (size_t r0 = 0; r0 < R; r0++) {
        if (seen[r0]) continue;
        size_t sp = 0;
        stk[sp] = (uint32_t)r0; it[sp] = f0[r0]; sp++; seen[r0] = 1;
        while (sp) {
            uint32_t r = stk[sp - 1];
            if (it[sp - 1] == f0[r + 1]) { order[no++] = r; sp--; continue; }
            uint32_t nx = fadj[it[sp - 1]++];
            if (!seen[nx]) { seen[nx] = 1; stk[sp] = nx; it[sp] = f0[nx]; sp++; }
        }
    }
    /* pass 2: components on the reversed graph, in reverse finishing order */
    uint32_t *comp = gk_malloc((R + 1) * sizeof *comp);
    for (size_t r = 0; r < R; r++) comp[r] = UINT32_MAX;
    uint32_t nc = 0;
    for (size_t k = no; k-- > 0;) {
        uint32_t r0 = order[k];
        if (comp[r0] != UINT32_MAX) continue;
        size_t sp = 0;
        stk[sp++] = r0; comp[r0] = nc;
        while (sp) {
            uint32_t r = stk[--sp];
            for (size_t e = b0[r]; e < b0[r + 1]; e++)
                if (comp[badj[e]] == UINT32_MAX) { comp[badj[e]] = nc; stk[sp++] = badj[e]; }
        }
        nc++;
    }
    int rc = 0;
    for (size_t e = 0; e < ne && !rc; e++)
        if (!etail[e] && comp[efrom[e]] == comp[eto[e]]) {
            uint32_t r = eto[e];
            rc = fail(p, p->rules[r].def_at, "rule '%s' is left-recursive: it can reach itself without matching a character "
                      "(rewrite it right-recursively, e.g. expr ::= term (\"+\" term)*)", p->rules[r].name);
        }
    free(nullable); free(efrom); free(eto); free(etail); free(f0); free(b0); free(fadj); free(badj); free(fi); free(bi);
    free(seen); free(order); free(stk); free(it); free(comp);
    return rc;
}

static void parser_free(parser *p) {
    for (size_t r = 0; r < p->nrules; r++) {
        for (size_t a = 0; a < p->rules[r].nalts; a++) free(p->rules[r].alts[a].v);
        free(p->rules[r].alts);
        free(p->rules[r].name);
    }
    free(p->rules); free(p->cls);
}

constrain_grammar *constrain_grammar_parse(const char *text, size_t len, const char *root, gk_err *err) {
    parser P = { .s = text, .n = len, .err = err }, *p = &P;
    if (!root) root = "root";
    skip_space(p);
    while (p->i < p->n && !p->failed) {
        size_t at = p->i, L = name_len_at(p, p->i);
        if (!L) { fail(p, at, "expected a rule name (letters, digits, '-', '_')"); break; }
        uint32_t r = rule_lookup(p, p->s + p->i, L);
        p->i += L;
        while (p->i < p->n && (p->s[p->i] == ' ' || p->s[p->i] == '\t')) p->i++;
        if (p->i + 3 > p->n || memcmp(p->s + p->i, "::=", 3)) { fail(p, p->i, "expected ::= after rule name '%s'", p->rules[r].name); break; }
        if (p->rules[r].defined) {
            size_t l0, c0; line_col(p, p->rules[r].def_at, &l0, &c0);
            fail(p, at, "rule '%s' is defined twice (first at line %zu)", p->rules[r].name, l0);
            break;
        }
        p->rules[r].defined = 1; p->rules[r].def_at = at;
        p->i += 3;
        if (parse_alternates(p, r, 0)) break;
        skip_space(p);
        if (p->i < p->n && !rule_start_at(p, p->i)) {
            if (p->s[p->i] == ')') fail(p, p->i, "unmatched ')'");
            else fail(p, p->i, "unexpected '%c'", p->s[p->i]);
        }
    }
    if (!p->failed) {
        for (size_t r = 0; r < p->nrules && !p->failed; r++)
            if (!p->rules[r].defined) fail(p, p->rules[r].ref_at, "rule '%s' is used but never defined", p->rules[r].name);
    }
    uint32_t root_id = UINT32_MAX;
    if (!p->failed) {
        for (size_t r = 0; r < p->nrules; r++) if (!strcmp(p->rules[r].name, root)) root_id = (uint32_t)r;
        if (root_id == UINT32_MAX) {
            if (p->nrules == 0) gk_errf(err, "grammar is empty: it defines no rule (expected `%s ::= ...`)", root);
            else gk_errf(err, "grammar has no rule '%s' (the start rule)", root);
            p->failed = 1;
        }
    }
    if (!p->failed) check_left_recursion(p);
    if (p->failed) { parser_free(p); return NULL; }

    constrain_grammar *g = gk_calloc(1, sizeof *g);
    size_t nalts = 0, nel = 0;
    for (size_t r = 0; r < p->nrules; r++) {
        nalts += p->rules[r].nalts;
        for (size_t a = 0; a < p->rules[r].nalts; a++) nel += p->rules[r].alts[a].n + 1;
    }
    g->n_rules = p->nrules;
    g->elems = gk_malloc((nel + 1) * sizeof *g->elems);
    g->alt_start = gk_malloc((nalts + 1) * sizeof *g->alt_start);
    g->rule_alt0 = gk_malloc(p->nrules * sizeof *g->rule_alt0);
    g->rule_nalt = gk_malloc(p->nrules * sizeof *g->rule_nalt);
    g->rule_names = gk_malloc(p->nrules * sizeof *g->rule_names);
    size_t ai = 0, ei = 0;
    for (size_t r = 0; r < p->nrules; r++) {
        g->rule_alt0[r] = (uint32_t)ai;
        g->rule_nalt[r] = (uint32_t)p->rules[r].nalts;
        g->rule_names[r] = p->rules[r].name; p->rules[r].name = NULL;
        for (size_t a = 0; a < p->rules[r].nalts; a++) {
            g->alt_start[ai++] = (uint32_t)ei;
            if (p->rules[r].alts[a].n) memcpy(g->elems + ei, p->rules[r].alts[a].v, p->rules[r].alts[a].n * sizeof(uint32_t));
            ei += p->rules[r].alts[a].n;
            g->elems[ei++] = CN_MK(CN_END, 0);
        }
    }
    g->n_elems = ei;
    g->classes = p->cls; g->n_classes = p->ncls; p->cls = NULL;
    g->root = root_id;
    parser_free(p);
    return g;
}

void constrain_grammar_free(constrain_grammar *g) {
    if (!g) return;
    for (size_t r = 0; r < g->n_rules; r++) free(g->rule_names[r]);
    free(g->rule_names); free(g->elems); free(g->classes); free(g->alt_start); free(g->rule_alt0); free(g->rule_nalt);
    free(g);
}

size_t constrain_grammar_n_rules(const constrain_grammar *g) { return g->n_rules; }
