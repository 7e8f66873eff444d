/* calc.c: the `calc` tool — a recursive-descent parser of arithmetic expressions evaluated exactly on GMP
 * rationals (mpq_t). It only parses and computes: there is no name lookup, no function call, nothing that
 * could run code. The limits (input length, nesting depth, result size) are checked before work is done, so
 * "9^9^9^9" is refused instead of exhausting memory. Grammar and output format: tools.h. */
#include "tools/tools.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef GK_HAVE_GMP

int tools_calc_available(void) { return 0; }
int tools_calc_eval(const char *expr, char **out, gk_err *err) {
    (void)expr; *out = NULL;
    return gk_errf(err, "calc is unavailable: gptkit was built without GMP (install libgmp-dev and rebuild)");
}

#else
#include <gmp.h>

#define CALC_MAX_INPUT 4096
#define CALC_MAX_DEPTH 256
#define CALC_MAX_BITS  1000000
#define CALC_MAX_EXP   100000

int tools_calc_available(void) { return 1; }

typedef struct {
    const char *s; size_t pos;
    int depth;
    gk_err *err;
    int failed;
} parser;

static int fail(parser *p, const char *what) {
    if (!p->failed) gk_errf(p->err, "at offset %zu: %s", p->pos, what);
    p->failed = 1;
    return -1;
}

static void skip_ws(parser *p) { while (p->s[p->pos] == ' ' || p->s[p->pos] == '\t' || p->s[p->pos] == '\n') p->pos++; }

static int peek(parser *p) { skip_ws(p); return (unsigned char)p->s[p->pos]; }

/* Size of a value in bits (numerator + denominator): what the result limit is measured in. */
static size_t bits_of(const mpq_t v) { return mpz_sizeinbase(mpq_numref(v), 2) + mpz_sizeinbase(mpq_denref(v), 2); }

static int check_size(parser *p, const mpq_t v) {
    return bits_of(v) > CALC_MAX_BITS ? fail(p, "the result is too large (over 1,000,000 bits)") : 0;
}

static int parse_expr(parser *p, mpq_t v);
static int parse_unary(parser *p, mpq_t v);

/* NUMBER: digits [. digits] [e [+-] digits], as an exact rational */
static int parse_number(parser *p, mpq_t v) {
    const char *s = p->s;
    size_t i = p->pos, start = i;
    mpz_t num, den;
    while (s[i] >= '0' && s[i] <= '9') i++;
    size_t int_end = i, frac_start = i, frac_end = i;
    if (s[i] == '.') { frac_start = ++i; while (s[i] >= '0' && s[i] <= '9') i++; frac_end = i; }
    if (int_end == start && frac_end == frac_start) return fail(p, "expected a number or '('");
    long ex = 0;
    if (s[i] == 'e' || s[i] == 'E') {
        size_t j = i + 1; int neg = 0;
        if (s[j] == '+' || s[j] == '-') neg = s[j++] == '-';
        if (!(s[j] >= '0' && s[j] <= '9')) { p->pos = j; return fail(p, "expected digits after the exponent 'e'"); }
        while (s[j] >= '0' && s[j] <= '9') { ex = ex * 10 + (s[j++] - '0'); if (ex > CALC_MAX_EXP) { p->pos = j; return fail(p, "exponent too large"); } }
        if (neg) ex = -ex;
        i = j;
    }
    /* digits without the point as the numerator; 10^(fraction digits - exponent) as the denominator */
    size_t nd = (int_end - start) + (frac_end - frac_start);
    char *digits = gk_malloc(nd + 2);
    memcpy(digits, s + start, int_end - start);
    memcpy(digits + (int_end - start), s + frac_start, frac_end - frac_start);
    digits[nd] = 0;
    mpz_init_set_str(num, nd ? digits : "0", 10);
    free(digits);
    mpz_init(den);
    long scale = (long)(frac_end - frac_start) - ex;
    mpz_ui_pow_ui(den, 10, (unsigned long)(scale < 0 ? -scale : scale));
    if (scale >= 0) { mpq_set_num(v, num); mpq_set_den(v, den); }
    else { mpz_mul(num, num, den); mpq_set_z(v, num); }
    mpq_canonicalize(v);
    mpz_clear(num); mpz_clear(den);
    p->pos = i;
    return check_size(p, v);
}

static int parse_atom(parser *p, mpq_t v) {
    int c = peek(p);
    if (c == '(') {
        if (++p->depth > CALC_MAX_DEPTH) return fail(p, "nested too deeply");
        p->pos++;
        if (parse_expr(p, v)) return -1;
        if (peek(p) != ')') return fail(p, "expected ')'");
        p->pos++;
        p->depth--;
        return 0;
    }
    if ((c >= '0' && c <= '9') || c == '.') return parse_number(p, v);
    if (c == 0) return fail(p, "unexpected end of the expression");
    return fail(p, "expected a number or '(' (calc knows numbers, + - * / % ^ and parentheses only)");
}

/* base ^ e for an integer e, refused when the result would exceed the size limit */
static int power(parser *p, mpq_t v, const mpq_t e) {
    if (mpz_cmp_ui(mpq_denref(e), 1) != 0) return fail(p, "the exponent must be an integer");
    if (!mpz_fits_slong_p(mpq_numref(e)) || labs(mpz_get_si(mpq_numref(e))) > CALC_MAX_EXP)
        return fail(p, "the exponent is too large (at most 100000)");
    long n = mpz_get_si(mpq_numref(e));
    if (mpq_sgn(v) == 0) {
        if (n < 0) return fail(p, "division by zero (0 to a negative power)");
        mpq_set_ui(v, n == 0 ? 1 : 0, 1);
        return 0;
    }
    unsigned long k = (unsigned long)labs(n);
    if ((double)bits_of(v) * (double)k > (double)CALC_MAX_BITS + 64 && !(mpz_cmpabs_ui(mpq_numref(v), 1) == 0 && mpz_cmp_ui(mpq_denref(v), 1) == 0))
        return fail(p, "the result is too large (over 1,000,000 bits)");
    mpz_pow_ui(mpq_numref(v), mpq_numref(v), k);
    mpz_pow_ui(mpq_denref(v), mpq_denref(v), k);
    if (n < 0) mpq_inv(v, v);
    mpq_canonicalize(v);
    return check_size(p, v);
}

static int parse_power(parser *p, mpq_t v) {
    if (parse_atom(p, v)) return -1;
    int c = peek(p);
    int is_pow = c == '^' || (c == '*' && p->s[p->pos + 1] == '*');
    if (!is_pow) return 0;
    p->pos += c == '^' ? 1 : 2;
    mpq_t e;
    mpq_init(e);
    int rc = parse_unary(p, e) || power(p, v, e);
    mpq_clear(e);
    return rc ? -1 : 0;
}

static int parse_unary(parser *p, mpq_t v) {
    int c = peek(p);
    if (c == '+' || c == '-') {
        if (++p->depth > CALC_MAX_DEPTH) return fail(p, "nested too deeply");
        p->pos++;
        if (parse_unary(p, v)) return -1;
        if (c == '-') mpq_neg(v, v);
        p->depth--;
        return 0;
    }
    return parse_power(p, v);
}

static int apply(parser *p, int op, mpq_t v, const mpq_t r) {
    switch (op) {
    case '+': mpq_add(v, v, r); break;
    case '-': mpq_sub(v, v, r); break;
    case '*': mpq_mul(v, v, r); break;
    case '/':
        if (mpq_sgn(r) == 0) return fail(p, "division by zero");
        mpq_div(v, v, r);
        break;
    case '%':
        if (mpz_cmp_ui(mpq_denref(v), 1) || mpz_cmp_ui(mpq_denref(r), 1)) return fail(p, "% needs integers");
        if (mpq_sgn(r) == 0) return fail(p, "division by zero (remainder)");
        mpz_tdiv_r(mpq_numref(v), mpq_numref(v), mpq_numref(r));
        break;
    }
    return check_size(p, v);
}

static int parse_term(parser *p, mpq_t v) {
    if (parse_unary(p, v)) return -1;
    for (;;) {
        int c = peek(p);
        if (!(c == '*' || c == '/' || c == '%') || (c == '*' && p->s[p->pos + 1] == '*')) return 0;
        p->pos++;
        mpq_t r;
        mpq_init(r);
        int rc = parse_unary(p, r) || apply(p, c, v, r);
        mpq_clear(r);
        if (rc) return -1;
    }
}

static int parse_expr(parser *p, mpq_t v) {
    if (parse_term(p, v)) return -1;
    for (;;) {
        int c = peek(p);
        if (c != '+' && c != '-') return 0;
        p->pos++;
        mpq_t r;
        mpq_init(r);
        int rc = parse_term(p, r) || apply(p, c, v, r);
        mpq_clear(r);
        if (rc) return -1;
    }
}

/* |num| * 10^k / den (exact when the caller picked k so), as a decimal with k digits after the point and the
 * sign of num; malloc'd. */
static char *decimal_string(const mpz_t num, const mpz_t den, unsigned long k) {
    mpz_t t;
    mpz_init(t);
    mpz_ui_pow_ui(t, 10, k);
    mpz_mul(t, t, num);
    mpz_abs(t, t);
    mpz_tdiv_q(t, t, den);
    char *digits = mpz_get_str(NULL, 10, t);
    size_t nd = strlen(digits);
    size_t pad = nd <= k ? k + 1 - nd : 0;   /* leading zeros so that there is a digit before the point */
    char *s = gk_malloc(nd + pad + 3);
    char *w = s;
    if (mpz_sgn(num) < 0) *w++ = '-';
    for (size_t i = 0; i < pad; i++) *w++ = '0';
    memcpy(w, digits, nd);
    w += nd;
    *w = 0;
    if (k) {   /* insert the point k digits from the right */
        memmove(w - k + 1, w - k, k + 1);
        w[-(long)k] = '.';
    }
    free(digits);   /* mpz_get_str allocates with GMP's allocator, which is malloc by default */
    mpz_clear(t);
    return s;
}

/* The value as text: an integer, an exact decimal (denominator 2^a 5^b), or "p/q (~ 20 decimals)". */
static char *format_value(const mpq_t v) {
    if (mpz_cmp_ui(mpq_denref(v), 1) == 0) {
        char *g = mpz_get_str(NULL, 10, mpq_numref(v));
        size_t n = strlen(g);
        char *s = gk_malloc(n + 1);
        memcpy(s, g, n + 1);
        free(g);
        return s;
    }
    mpz_t d, f;
    mpz_init_set(d, mpq_denref(v));
    mpz_init_set_ui(f, 2);
    unsigned long a = mpz_remove(d, d, f);
    mpz_set_ui(f, 5);
    unsigned long b = mpz_remove(d, d, f);
    int terminating = mpz_cmp_ui(d, 1) == 0;
    mpz_clears(d, f, NULL);
    if (terminating) return decimal_string(mpq_numref(v), mpq_denref(v), a > b ? a : b);
    char *pq = mpq_get_str(NULL, 10, v);
    char *approx = decimal_string(mpq_numref(v), mpq_denref(v), 20);
    size_t cap = strlen(pq) + strlen(approx) + 8;
    char *s = gk_malloc(cap);
    snprintf(s, cap, "%s (~ %s)", pq, approx);
    free(pq); free(approx);
    return s;
}

int tools_calc_eval(const char *expr, char **out, gk_err *err) {
    *out = NULL;
    size_t n = strlen(expr);
    if (n > CALC_MAX_INPUT) return gk_errf(err, "the expression is %zu bytes (at most %d)", n, CALC_MAX_INPUT);
    parser p = {expr, 0, 0, err, 0};
    mpq_t v;
    mpq_init(v);
    int rc = parse_expr(&p, v);
    if (!rc && peek(&p) != 0) rc = fail(&p, "unexpected character after the expression");
    if (!rc) *out = format_value(v);
    mpq_clear(v);
    return rc;
}
#endif
