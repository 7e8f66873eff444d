/* demo_check.c: grading replies to the demo tasks, and the hidden preference rule (see data.h).
 *
 * Two consumers: the report card grades model replies against eval answers (demo_check_answer), and the
 * preference generator ranks candidate replies (demo_judge); demo_gold is the same rule as a judge of any
 * model's reply to a demo prompt (the report's gold win rates). Both read only the reply text, the expected
 * answer and the check name, so a reply from any model is graded the same way as a generated one.
 * All comparisons are ASCII and locale-independent (no <ctype.h>, whose answers depend on the locale).
 */
#include "data/data.h"
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

static int is_lower(int c) { return c >= 'a' && c <= 'z'; }
static int is_upper(int c) { return c >= 'A' && c <= 'Z'; }
static int is_digit(int c) { return c >= '0' && c <= '9'; }
static int is_alnum(int c) { return is_lower(c) || is_upper(c) || is_digit(c); }
static int is_space(int c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }
static int to_lower(int c) { return is_upper(c) ? c - 'A' + 'a' : c; }

/* [*b, *e) = s without leading/trailing whitespace. */
static void trim(const char *s, const char **b, const char **e) {
    const char *p = s, *q = s + strlen(s);
    while (p < q && is_space((unsigned char)*p)) p++;
    while (q > p && is_space((unsigned char)q[-1])) q--;
    *b = p; *e = q;
}

static int range_eq_nocase(const char *p, size_t n, const char *q, size_t m) {
    if (n != m) return 0;
    for (size_t i = 0; i < n; i++)
        if (to_lower((unsigned char)p[i]) != to_lower((unsigned char)q[i])) return 0;
    return 1;
}

/* Parses a whole string (after trimming) as a decimal integer with optional '-'. Returns 0 ok, -1 not. */
static int parse_int(const char *s, long long *out) {
    const char *b, *e; trim(s, &b, &e);
    int neg = 0;
    if (b < e && *b == '-') { neg = 1; b++; }
    if (b == e || e - b > 18) return -1;
    long long v = 0;
    for (const char *p = b; p < e; p++) { if (!is_digit((unsigned char)*p)) return -1; v = v * 10 + (*p - '0'); }
    *out = neg ? -v : v;
    return 0;
}

/* The first integer in s: a maximal digit run, negative if a '-' directly precedes it (and that '-' does
 * not follow a letter/digit, as in "x-3"). A run followed by '.' and a digit is a decimal, never equal to
 * an integer answer: returns 2 then. Returns 1 with *v set, 0 if s has no digits. */
static int first_int(const char *s, long long *v) {
    for (const char *p = s; *p; p++) {
        if (!is_digit((unsigned char)*p)) continue;
        int neg = p > s && p[-1] == '-' && (p - 1 == s || !is_alnum((unsigned char)p[-2]));
        long long x = 0; int nd = 0;
        while (is_digit((unsigned char)*p)) { if (nd < 18) x = x * 10 + (*p - '0'); nd++; p++; }
        if (nd > 18) return 2;
        if (*p == '.' && is_digit((unsigned char)p[1])) return 2;
        *v = neg ? -x : x;
        return 1;
    }
    return 0;
}

/* Does word (trimmed) occur in s as a whole word, case-insensitively? */
static int has_word(const char *s, const char *word) {
    const char *wb, *we; trim(word, &wb, &we);
    size_t n = (size_t)(we - wb), len = strlen(s);
    if (n == 0 || n > len) return 0;
    for (size_t i = 0; i + n <= len; i++) {
        if (!range_eq_nocase(s + i, n, wb, n)) continue;
        int left_ok  = i == 0 || !is_alnum((unsigned char)s[i - 1]);
        int right_ok = i + n == len || !is_alnum((unsigned char)s[i + n]);
        if (left_ok && right_ok) return 1;
    }
    return 0;
}

static int has_lower(const char *s) { for (; *s; s++) if (is_lower((unsigned char)*s)) return 1; return 0; }
static int has_alnum(const char *s) { for (; *s; s++) if (is_alnum((unsigned char)*s)) return 1; return 0; }

/* [*b, *e): the trimmed reply with one trailing '.' removed (the "bare answer" shape). */
static void bare(const char *s, const char **b, const char **e) {
    trim(s, b, e);
    if (*e > *b && (*e)[-1] == '.') (*e)--;
}

/* Is the reply a bare single word (letters, digits, '-'; an optional final '.')? */
static int is_single_word(const char *s) {
    const char *b, *e; bare(s, &b, &e);
    if (b == e) return 0;
    for (const char *p = b; p < e; p++)
        if (!is_alnum((unsigned char)*p) && *p != '-') return 0;
    return 1;
}

/* Parses the trimmed reply as JSON; the whole reply must be the one value. Caller cJSON_Delete()s. */
static cJSON *parse_whole_json(const char *s) {
    const char *b, *e; trim(s, &b, &e);
    size_t n = (size_t)(e - b);
    char *tmp = gk_malloc(n + 1);
    memcpy(tmp, b, n); tmp[n] = 0;
    cJSON *j = cJSON_ParseWithOpts(tmp, NULL, 1);
    free(tmp);
    return j;
}

/* The reply's {"answer": value} value if the reply is exactly such an object, else NULL. */
static const cJSON *json_answer(const cJSON *j) {
    if (!cJSON_IsObject(j)) return NULL;
    const cJSON *c = j->child;
    if (!c || c->next || !c->string || strcmp(c->string, "answer") != 0) return NULL;
    if (!cJSON_IsString(c) && !cJSON_IsNumber(c)) return NULL;
    return c;
}

static int check_number(const char *expected, const char *response) {
    long long want, got;
    if (parse_int(expected, &want) != 0) return 0;
    return first_int(response, &got) == 1 && got == want;
}

static int check_exact(const char *expected, const char *response) {
    const char *b, *e, *xb, *xe;
    bare(response, &b, &e);
    bare(expected, &xb, &xe);
    return b < e && range_eq_nocase(b, (size_t)(e - b), xb, (size_t)(xe - xb));
}

static int check_json(const char *expected, const char *response) {
    cJSON *j = parse_whole_json(response);
    const cJSON *a = json_answer(j);
    int ok = 0;
    if (a && cJSON_IsNumber(a)) {
        long long want;
        ok = parse_int(expected, &want) == 0 && a->valuedouble == (double)want;
    } else if (a) {
        const char *xb, *xe; trim(expected, &xb, &xe);
        const char *sb, *se; trim(a->valuestring, &sb, &se);
        ok = range_eq_nocase(sb, (size_t)(se - sb), xb, (size_t)(xe - xb));
    }
    cJSON_Delete(j);
    return ok;
}

typedef enum { CK_NUMBER, CK_CONTAINS, CK_UPPER, CK_EXACT, CK_JSON, CK_UNKNOWN } check_kind;

static check_kind check_of(const char *name) {
    if (!name) return CK_UNKNOWN;
    if (!strcmp(name, "number") || !strcmp(name, "arith")) return CK_NUMBER;
    if (!strcmp(name, "contains") || !strcmp(name, "fact")) return CK_CONTAINS;
    if (!strcmp(name, "upper")) return CK_UPPER;
    if (!strcmp(name, "exact") || !strcmp(name, "style")) return CK_EXACT;
    if (!strcmp(name, "json")) return CK_JSON;
    return CK_UNKNOWN;
}

int demo_check_answer(const char *skill_or_check, const char *expected, const char *response) {
    if (!expected || !response) return 0;
    switch (check_of(skill_or_check)) {
    case CK_NUMBER:   return check_number(expected, response);
    case CK_CONTAINS: return has_word(response, expected);
    case CK_UPPER:    return has_alnum(response) && !has_lower(response) && has_word(response, expected);
    case CK_EXACT:    return check_exact(expected, response);
    case CK_JSON:     return check_json(expected, response);
    default:          return -1;
    }
}

/* Sentences: segments ended by a run of '.', '!' or '?' (or a JSON object's closing '}') followed by
 * whitespace or the end, counted when they hold a letter or digit. "3.5" stays one sentence; a JSON object
 * followed by more text is two. */
static int count_sentences(const char *s) {
    int n = 0, seg_has_text = 0;
    for (const char *p = s; *p; p++) {
        if (is_alnum((unsigned char)*p)) seg_has_text = 1;
        if (*p == '.' || *p == '!' || *p == '?' || *p == '}') {
            const char *q = p;
            if (*q == '}') q++;
            while (*q == '.' || *q == '!' || *q == '?') q++;
            if (*q == 0 || is_space((unsigned char)*q)) {
                n += seg_has_text; seg_has_text = 0;
                p = q - 1;
            }
        }
    }
    return n + seg_has_text;
}

int demo_judge(const char *check, const char *answer, const char *response, demo_verdict *v) {
    check_kind k = check_of(check);
    if (k == CK_UNKNOWN || !answer || !response) return -1;
    long long dummy;
    /* Content: the right number (integer answers) or the right word, whatever the format. */
    int correct = parse_int(answer, &dummy) == 0 ? check_number(answer, response) : has_word(response, answer);
    int fmt = 1;
    if (k == CK_UPPER) fmt = has_alnum(response) && !has_lower(response);
    else if (k == CK_EXACT) fmt = is_single_word(response);
    else if (k == CK_JSON) { cJSON *j = parse_whole_json(response); fmt = json_answer(j) != NULL; cJSON_Delete(j); }
    int concise = count_sentences(response) <= 1;
    v->correct = correct; v->follows_format = fmt; v->concise = concise;
    v->score = 4 * correct + 2 * fmt + concise;
    return 0;
}

int demo_gold(const char *system, const char *user, const char *response, demo_verdict *v) {
    demo_task t;
    if (!user || !response || demo_task_from_prompt(system, user, &t) != 0) return -1;
    while (*response == ' ') response++;
    return demo_judge(t.check, t.answer, response, v);
}
