/* regex.c: regular expressions -> GBNF text, and the string builder the converters share.
 *
 * The subset (POSIX ERE plus the Perl classes every engine accepts): literals, `.` (any character but a
 * newline), [classes] with ranges, negation and [:digit:]-style names, \d \w \s \D \W \S, escapes (\n \t \r
 * \f \v \xHH \uHHHH \. ...), groups ( ) and (?: ), alternation |, quantifiers * + ? {m} {m,} {m,n} (a trailing
 * ? or + - lazy, possessive - is accepted and ignored: the grammar constrains the set of strings, not the
 * match). ^ at the start and $ at the end are accepted (the whole output matches anyway). Backreferences,
 * lookaround, anchors elsewhere and \b are errors that name the construct and its offset.
 *
 * The translation is direct: every regex construct has a GBNF one (a class is written as code point ranges,
 * quantifiers carry over unchanged), so no automaton is built here; the GBNF compiler does the rest. */
#include "constrain/constrain_internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- string builder */

void cn_sb_addn(cn_sb *b, const char *s, size_t n) {
    if (b->n + n + 1 > b->cap) { b->cap = (b->n + n + 1) * 2; b->s = gk_realloc(b->s, b->cap); }
    memcpy(b->s + b->n, s, n);
    b->n += n;
    b->s[b->n] = 0;
}
void cn_sb_add(cn_sb *b, const char *s) { cn_sb_addn(b, s, strlen(s)); }
void cn_sb_addf(cn_sb *b, const char *fmt, ...) {
    char buf[512];
    va_list ap; va_start(ap, fmt);
    int k = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (k < 0) return;
    if ((size_t)k < sizeof buf) { cn_sb_addn(b, buf, (size_t)k); return; }
    char *big = gk_malloc((size_t)k + 1);
    va_start(ap, fmt); vsnprintf(big, (size_t)k + 1, fmt, ap); va_end(ap);
    cn_sb_addn(b, big, (size_t)k);
    free(big);
}

/* bytes of s are kept as they are when printable ASCII or UTF-8 lead/continuation bytes of valid text;
 * quotes, backslashes and control bytes are escaped (\xHH is a code point, so only ASCII goes through it) */
void cn_sb_literal(cn_sb *b, const char *s, size_t n) {
    cn_sb_add(b, "\"");
    for (size_t k = 0; k < n; k++) {
        unsigned char c = (unsigned char)s[k];
        if (c == '"') cn_sb_add(b, "\\\"");
        else if (c == '\\') cn_sb_add(b, "\\\\");
        else if (c == '\n') cn_sb_add(b, "\\n");
        else if (c == '\t') cn_sb_add(b, "\\t");
        else if (c == '\r') cn_sb_add(b, "\\r");
        else if (c < 0x20 || c == 0x7F) cn_sb_addf(b, "\\x%02X", c);
        else cn_sb_addn(b, (const char *)&c, 1);
    }
    cn_sb_add(b, "\"");
}

static void class_char(cn_sb *b, uint32_t c) {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) { char ch = (char)c; cn_sb_addn(b, &ch, 1); }
    else if (c < 0x100) cn_sb_addf(b, "\\x%02X", c);
    else if (c < 0x10000) cn_sb_addf(b, "\\u%04X", c);
    else cn_sb_addf(b, "\\U%08X", c);
}
void cn_sb_class(cn_sb *b, const uint32_t *lo, const uint32_t *hi, size_t n) {
    cn_sb_add(b, "[");
    for (size_t k = 0; k < n; k++) {
        class_char(b, lo[k]);
        if (hi[k] != lo[k]) { cn_sb_add(b, "-"); class_char(b, hi[k]); }
    }
    cn_sb_add(b, "]");
}

/* ---------------------------------------------------------------- code point sets */

typedef struct { uint32_t *lo, *hi; size_t n, cap; } cpset;
static void cp_add(cpset *s, uint32_t lo, uint32_t hi) {
    if (s->n == s->cap) { s->cap = s->cap ? 2 * s->cap : 8; s->lo = gk_realloc(s->lo, s->cap * 4); s->hi = gk_realloc(s->hi, s->cap * 4); }
    s->lo[s->n] = lo; s->hi[s->n] = hi; s->n++;
}
static void cp_free(cpset *s) { free(s->lo); free(s->hi); memset(s, 0, sizeof *s); }
/* sort + merge (insertion sort: classes are small) */
static void cp_norm(cpset *s) {
    for (size_t i = 1; i < s->n; i++)
        for (size_t j = i; j > 0 && s->lo[j - 1] > s->lo[j]; j--) {
            uint32_t t = s->lo[j]; s->lo[j] = s->lo[j - 1]; s->lo[j - 1] = t;
            t = s->hi[j]; s->hi[j] = s->hi[j - 1]; s->hi[j - 1] = t;
        }
    size_t m = 0;
    for (size_t k = 0; k < s->n; k++) {
        if (m && s->lo[k] <= s->hi[m - 1] + 1) { if (s->hi[k] > s->hi[m - 1]) s->hi[m - 1] = s->hi[k]; }
        else { s->lo[m] = s->lo[k]; s->hi[m] = s->hi[k]; m++; }
    }
    s->n = m;
}
static void cp_negate(cpset *s) {
    cp_norm(s);
    cpset o = { 0 };
    uint32_t next = 0;
    for (size_t k = 0; k < s->n; k++) { if (s->lo[k] > next) cp_add(&o, next, s->lo[k] - 1); next = s->hi[k] + 1; }
    if (next <= 0x10FFFF) cp_add(&o, next, 0x10FFFF);
    cp_free(s);
    *s = o;
}
/* adds set `which` (d w s, negated when upper case) */
static void cp_perl(cpset *s, char which) {
    cpset t = { 0 };
    switch (which | 0x20) {
    case 'd': cp_add(&t, '0', '9'); break;
    case 'w': cp_add(&t, '0', '9'); cp_add(&t, 'A', 'Z'); cp_add(&t, '_', '_'); cp_add(&t, 'a', 'z'); break;
    case 's': cp_add(&t, '\t', '\r'); cp_add(&t, ' ', ' '); break;
    }
    if (which >= 'A' && which <= 'Z') cp_negate(&t);
    for (size_t k = 0; k < t.n; k++) cp_add(s, t.lo[k], t.hi[k]);
    cp_free(&t);
}

/* ---------------------------------------------------------------- the regex parser */

typedef struct { const char *s; size_t n, i; gk_err *err; int failed; int depth; } rx;

__attribute__((format(printf, 3, 4)))
static int rfail(rx *r, size_t at, const char *fmt, ...) {
    if (r->failed) return -1;
    r->failed = 1;
    char msg[700];
    va_list ap; va_start(ap, fmt); vsnprintf(msg, sizeof msg, fmt, ap); va_end(ap);
    return gk_errf(r->err, "regex at offset %zu: %s", at, msg);
}

static long rx_utf8(rx *r) {
    const unsigned char *s = (const unsigned char *)r->s + r->i;
    size_t left = r->n - r->i;
    unsigned c = s[0];
    int n; long cp;
    if (c < 0x80) { r->i++; return c; }
    if (c >= 0xC2 && c <= 0xDF) { n = 2; cp = c & 0x1F; }
    else if (c >= 0xE0 && c <= 0xEF) { n = 3; cp = c & 0x0F; }
    else if (c >= 0xF0 && c <= 0xF4) { n = 4; cp = c & 0x07; }
    else return rfail(r, r->i, "invalid UTF-8"), -1;
    if (left < (size_t)n) return rfail(r, r->i, "invalid UTF-8"), -1;
    for (int k = 1; k < n; k++) { if ((s[k] & 0xC0) != 0x80) return rfail(r, r->i, "invalid UTF-8"), -1; cp = (cp << 6) | (s[k] & 0x3F); }
    if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10FFFF)) || (cp >= 0xD800 && cp <= 0xDFFF))
        return rfail(r, r->i, "invalid UTF-8"), -1;
    r->i += (size_t)n;
    return cp;
}

static long rx_hex(rx *r, int n) {
    long v = 0;
    for (int k = 0; k < n; k++) {
        if (r->i >= r->n) return -1;
        char c = r->s[r->i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (d < 0) return -1;
        v = v * 16 + d; r->i++;
    }
    return v;
}

/* After a backslash: a single code point (>= 0), or a Perl class added to set (returns -2), or -1 error. */
static long rx_escape(rx *r, cpset *set, int in_class) {
    size_t at = r->i - 1;
    if (r->i >= r->n) return rfail(r, at, "trailing backslash");
    char c = r->s[r->i++];
    switch (c) {
    case 'd': case 'D': case 'w': case 'W': case 's': case 'S': cp_perl(set, c); return -2;
    case 'n': return '\n';
    case 't': return '\t';
    case 'r': return '\r';
    case 'f': return '\f';
    case 'v': return '\v';
    case '0': return 0;
    case 'x': case 'u': {
        long v = rx_hex(r, c == 'x' ? 2 : 4);
        if (v < 0 || (v >= 0xD800 && v <= 0xDFFF)) return rfail(r, at, "\\%c needs %d hex digits of a Unicode scalar value", c, c == 'x' ? 2 : 4);
        return v;
    }
    case 'b': if (in_class) return '\b'; return rfail(r, at, "\\b (word boundary) is not supported");
    case 'B': case 'A': case 'z': case 'Z': case 'G': return rfail(r, at, "the anchor \\%c is not supported", c);
    default:
        if (c >= '1' && c <= '9') return rfail(r, at, "backreferences (\\%c) are not supported", c);
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) return rfail(r, at, "unknown escape \\%c", c);
        r->i--;
        return rx_utf8(r);   /* \. \* \\ \[ ... and any other punctuation or character stands for itself */
    }
}

static const struct { const char *name; uint32_t ranges[4][2]; int n; } posix[] = {
    { "digit", { { '0', '9' } }, 1 },
    { "alpha", { { 'A', 'Z' }, { 'a', 'z' } }, 2 },
    { "alnum", { { '0', '9' }, { 'A', 'Z' }, { 'a', 'z' } }, 3 },
    { "upper", { { 'A', 'Z' } }, 1 },
    { "lower", { { 'a', 'z' } }, 1 },
    { "space", { { '\t', '\r' }, { ' ', ' ' } }, 2 },
    { "blank", { { '\t', '\t' }, { ' ', ' ' } }, 2 },
    { "xdigit", { { '0', '9' }, { 'A', 'F' }, { 'a', 'f' } }, 3 },
    { "punct", { { '!', '/' }, { ':', '@' }, { '[', '`' }, { '{', '~' } }, 4 },
    { "cntrl", { { 0, 0x1F }, { 0x7F, 0x7F } }, 2 },
    { "print", { { 0x20, 0x7E } }, 1 },
    { "graph", { { 0x21, 0x7E } }, 1 },
};

static int rx_class(rx *r, cn_sb *b) {
    size_t at = r->i - 1;
    cpset set = { 0 };
    int neg = 0, first = 1;
    if (r->i < r->n && r->s[r->i] == '^') { neg = 1; r->i++; }
    for (;;) {
        if (r->i >= r->n) { cp_free(&set); return rfail(r, at, "unterminated [class"); }
        char c = r->s[r->i];
        if (c == ']' && !first) { r->i++; break; }
        first = 0;
        if (c == '[' && r->i + 1 < r->n && r->s[r->i + 1] == ':') {
            size_t e = r->i + 2;
            while (e + 1 < r->n && !(r->s[e] == ':' && r->s[e + 1] == ']')) e++;
            if (e + 1 >= r->n) { cp_free(&set); return rfail(r, r->i, "unterminated [: class name"); }
            size_t L = e - (r->i + 2);
            int found = 0;
            for (size_t k = 0; k < sizeof posix / sizeof posix[0]; k++)
                if (strlen(posix[k].name) == L && !memcmp(posix[k].name, r->s + r->i + 2, L)) {
                    for (int j = 0; j < posix[k].n; j++) cp_add(&set, posix[k].ranges[j][0], posix[k].ranges[j][1]);
                    found = 1;
                }
            if (!found) { cp_free(&set); return rfail(r, r->i, "unknown class name [:%.*s:]", (int)L, r->s + r->i + 2); }
            r->i = e + 2;
            continue;
        }
        long lo;
        if (c == '\\') { r->i++; lo = rx_escape(r, &set, 1); }
        else lo = rx_utf8(r);
        if (lo == -2) continue;
        if (lo < 0) { cp_free(&set); return -1; }
        long hi = lo;
        if (r->i + 1 < r->n && r->s[r->i] == '-' && r->s[r->i + 1] != ']') {
            size_t at2 = r->i;
            r->i++;
            if (r->s[r->i] == '\\') { r->i++; hi = rx_escape(r, &set, 1); }
            else hi = rx_utf8(r);
            if (hi == -2) { cp_free(&set); return rfail(r, at2, "a range cannot end in a class like \\d"); }
            if (hi < 0) { cp_free(&set); return -1; }
            if (hi < lo) { cp_free(&set); return rfail(r, at2, "range out of order"); }
        }
        cp_add(&set, (uint32_t)lo, (uint32_t)hi);
    }
    if (neg) cp_negate(&set); else cp_norm(&set);
    /* drop surrogates (they are not characters) */
    cpset t = { 0 };
    for (size_t k = 0; k < set.n; k++) {
        if (set.hi[k] < 0xD800 || set.lo[k] > 0xDFFF) { cp_add(&t, set.lo[k], set.hi[k]); continue; }
        if (set.lo[k] < 0xD800) cp_add(&t, set.lo[k], 0xD7FF);
        if (set.hi[k] > 0xDFFF) cp_add(&t, 0xE000, set.hi[k]);
    }
    cp_free(&set);
    if (!t.n) { cp_free(&t); return rfail(r, at, "the class matches no character"); }
    cn_sb_class(b, t.lo, t.hi, t.n);
    cp_free(&t);
    return 0;
}

static int rx_alt(rx *r, cn_sb *b);

static int rx_atom(rx *r, cn_sb *b) {
    size_t at = r->i;
    char c = r->s[r->i];
    if (c == '(') {
        if (++r->depth > 200) return rfail(r, at, "groups nested over 200 deep");
        r->i++;
        if (r->i < r->n && r->s[r->i] == '?') {
            if (r->i + 1 < r->n && r->s[r->i + 1] == ':') r->i += 2;
            else return rfail(r, at, "(?%c...) (lookaround, named groups, flags) is not supported; use ( ) or (?: )",
                              r->i + 1 < r->n ? r->s[r->i + 1] : ' ');
        }
        cn_sb_add(b, "(");
        if (rx_alt(r, b)) return -1;
        if (r->i >= r->n || r->s[r->i] != ')') return rfail(r, at, "unclosed (");
        r->i++;
        cn_sb_add(b, ")");
        r->depth--;
        return 0;
    }
    if (c == '[') { r->i++; return rx_class(r, b); }
    if (c == '.') { r->i++; cn_sb_add(b, "[^\\n]"); return 0; }
    if (c == '*' || c == '+' || c == '?' || c == '{') return rfail(r, at, "'%c' has nothing to repeat", c);
    if (c == ')') return rfail(r, at, "unmatched )");
    if (c == '^' || c == '$') return rfail(r, at, "the anchor '%c' is only supported at the start (^) or end ($)", c);
    long cp;
    cpset set = { 0 };
    if (c == '\\') { r->i++; cp = rx_escape(r, &set, 0); }
    else cp = rx_utf8(r);
    if (cp == -2) {
        cp_norm(&set);
        cn_sb_class(b, set.lo, set.hi, set.n);
        cp_free(&set);
        return 0;
    }
    cp_free(&set);
    if (cp < 0) return -1;
    uint32_t one = (uint32_t)cp;
    cn_sb_class(b, &one, &one, 1);   /* a one-character class: no quoting questions */
    return 0;
}

static int rx_uint(rx *r, long *v) {
    long x = 0;
    if (r->i >= r->n || r->s[r->i] < '0' || r->s[r->i] > '9') return rfail(r, r->i, "expected a number in {m,n}");
    while (r->i < r->n && r->s[r->i] >= '0' && r->s[r->i] <= '9') {
        x = x * 10 + (r->s[r->i++] - '0');
        if (x > 10000) return rfail(r, r->i, "repetition count over 10000");
    }
    *v = x;
    return 0;
}

static int rx_concat(rx *r, cn_sb *b) {
    int any = 0;
    while (r->i < r->n && r->s[r->i] != '|' && r->s[r->i] != ')') {
        if (r->s[r->i] == '$' && r->i + 1 == r->n) { r->i++; break; }
        if (any) cn_sb_add(b, " ");
        if (rx_atom(r, b)) return -1;
        any = 1;
        while (r->i < r->n) {
            char q = r->s[r->i];
            if (q == '*' || q == '+' || q == '?') { cn_sb_addn(b, &q, 1); r->i++; }
            else if (q == '{') {
                size_t at = r->i;
                long m, n;
                r->i++;
                if (rx_uint(r, &m)) return -1;
                n = m;
                if (r->i < r->n && r->s[r->i] == ',') {
                    r->i++;
                    if (r->i < r->n && r->s[r->i] == '}') n = -1;
                    else if (rx_uint(r, &n)) return -1;
                }
                if (r->i >= r->n || r->s[r->i] != '}') return rfail(r, at, "expected } in {m,n}");
                if (n >= 0 && n < m) return rfail(r, at, "{%ld,%ld}: maximum below minimum", m, n);
                r->i++;
                if (n < 0) cn_sb_addf(b, "{%ld,}", m); else cn_sb_addf(b, "{%ld,%ld}", m, n);
            } else break;
            /* a lazy or possessive mark after a quantifier: the same strings */
            if (r->i < r->n && (r->s[r->i] == '?' || r->s[r->i] == '+')) r->i++;
            /* a second quantifier (a**, a+{2}): undefined in ERE, and a repetition of a repetition costs the
             * matcher exponential time; refused (group it explicitly if it is meant) */
            if (r->i < r->n && (r->s[r->i] == '*' || r->s[r->i] == '+' || r->s[r->i] == '?' || r->s[r->i] == '{'))
                return rfail(r, r->i, "'%c' after a quantifier: one quantifier per atom", r->s[r->i]);
            break;
        }
    }
    if (!any) cn_sb_add(b, "\"\"");
    return 0;
}

static int rx_alt(rx *r, cn_sb *b) {
    if (rx_concat(r, b)) return -1;
    while (r->i < r->n && r->s[r->i] == '|') {
        r->i++;
        cn_sb_add(b, " | ");
        if (rx_concat(r, b)) return -1;
    }
    return 0;
}

int cn_regex_expr(cn_sb *b, const char *re, size_t len, gk_err *err) {
    rx R = { .s = re, .n = len, .err = err }, *r = &R;
    if (r->n && r->s[0] == '^') r->i++;
    cn_sb_add(b, "(");
    if (rx_alt(r, b)) return -1;
    if (r->i < r->n) return rfail(r, r->i, "unmatched )");
    cn_sb_add(b, ")");
    return 0;
}

char *constrain_regex_to_gbnf(const char *re, gk_err *err) {
    cn_sb b = { 0 };
    cn_sb_add(&b, "root ::= ");
    if (cn_regex_expr(&b, re, strlen(re), err)) { free(b.s); return NULL; }
    cn_sb_add(&b, "\n");
    return b.s;
}
