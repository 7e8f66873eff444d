/* strategy.c: strategy specs, answer extraction and comparison, the Wilson interval (strategy.h). The
 * generation side (prompts, the tool loop, the strategies themselves) is in strategy_solve.c. */
#include "infer/strategy.h"

#include <ctype.h>
#include <math.h>
#include <regex.h>
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---------------------------------------------------------------- specs */

/* Parses "a,b,c" (count values, each 1..max) after the ':' of name. */
static int parse_ints(const char *s, const char *name, int *v, int count, int max, gk_err *err) {
    const char *p = s;
    for (int i = 0; i < count; i++) {
        char *end;
        long x = strtol(p, &end, 10);
        if (end == p || x < 1 || x > max)
            return gk_errf(err, "strategy %s: value %d of %d must be an integer in 1..%d (got \"%s\")", name, i + 1, count, max, s);
        v[i] = (int)x;
        p = end;
        if (i + 1 < count) {
            if (*p != ',') return gk_errf(err, "strategy %s needs %d comma-separated values (got \"%s\")", name, count, s);
            p++;
        }
    }
    if (*p) return gk_errf(err, "strategy %s: unexpected \"%s\" after its values", name, p);
    return 0;
}

int strategy_parse(const char *s, strategy_spec *o, gk_err *err) {
    memset(o, 0, sizeof *o);
    const char *colon = strchr(s, ':');
    size_t nl = colon ? (size_t)(colon - s) : strlen(s);
    const char *arg = colon ? colon + 1 : NULL;
#define IS(name) (nl == strlen(name) && !strncmp(s, name, nl))
    if (IS("greedy") || IS("cot")) {
        if (arg) return gk_errf(err, "strategy %.*s takes no value (got \"%s\")", (int)nl, s, s);
        o->kind = IS("greedy") ? STRAT_GREEDY : STRAT_COT;
        return 0;
    }
    if (!arg) return gk_errf(err, "unknown strategy \"%s\" (greedy, fewshot:K, cot, sc:N, tot:K,B,D, reflect:R)", s);
    if (IS("fewshot")) { o->kind = STRAT_FEWSHOT; return parse_ints(arg, "fewshot:K", &o->k, 1, 64, err); }
    if (IS("sc")) { o->kind = STRAT_SC; return parse_ints(arg, "sc:N", &o->n, 1, 256, err); }
    if (IS("reflect")) { o->kind = STRAT_REFLECT; return parse_ints(arg, "reflect:R", &o->rounds, 1, 16, err); }
    if (IS("tot")) {
        int v[3];
        o->kind = STRAT_TOT;
        if (parse_ints(arg, "tot:K,B,D", v, 3, 64, err)) return -1;
        o->k = v[0]; o->beam = v[1]; o->depth = v[2];
        return 0;
    }
#undef IS
    return gk_errf(err, "unknown strategy \"%s\" (greedy, fewshot:K, cot, sc:N, tot:K,B,D, reflect:R)", s);
}

const char *strategy_str(const strategy_spec *s, char *buf, size_t cap) {
    switch (s->kind) {
    case STRAT_GREEDY:  snprintf(buf, cap, "greedy"); break;
    case STRAT_FEWSHOT: snprintf(buf, cap, "fewshot:%d", s->k); break;
    case STRAT_COT:     snprintf(buf, cap, "cot"); break;
    case STRAT_SC:      snprintf(buf, cap, "sc:%d", s->n); break;
    case STRAT_TOT:     snprintf(buf, cap, "tot:%d,%d,%d", s->k, s->beam, s->depth); break;
    case STRAT_REFLECT: snprintf(buf, cap, "reflect:%d", s->rounds); break;
    }
    return buf;
}

/* ---------------------------------------------------------------- numbers */

/* Length of the number starting at s ("-1,234.5"), 0 if none: optional '-', digits with optional
 * thousands commas (a comma only when exactly three digits follow), optional '.' digits. */
static size_t number_len(const char *s) {
    size_t i = 0;
    if (s[i] == '-' || s[i] == '+') i++;
    if (!isdigit((unsigned char)s[i])) return 0;
    while (isdigit((unsigned char)s[i]) ||
           (s[i] == ',' && isdigit((unsigned char)s[i + 1]) && isdigit((unsigned char)s[i + 2]) &&
            isdigit((unsigned char)s[i + 3]) && !isdigit((unsigned char)s[i + 4])))
        i++;
    if (s[i] == '.' && isdigit((unsigned char)s[i + 1])) { i++; while (isdigit((unsigned char)s[i])) i++; }
    return i;
}

int strategy_number_norm(const char *s, char *out, size_t cap) {
    while (isspace((unsigned char)*s)) s++;
    size_t n = number_len(s);
    size_t end = n;
    while (s[end] && isspace((unsigned char)s[end])) end++;
    if (!n || s[end]) return -1;
    char buf[STRATEGY_ANSWER_MAX];
    size_t k = 0;
    int neg = s[0] == '-';
    size_t i = (s[0] == '-' || s[0] == '+');
    while (i < n && s[i] == '0' && isdigit((unsigned char)s[i + 1])) i++;   /* leading zeros */
    for (; i < n && k + 2 < sizeof buf; i++) if (s[i] != ',') buf[k++] = s[i];
    buf[k] = 0;
    char *dot = strchr(buf, '.');
    if (dot) {   /* trailing fractional zeros, then a bare point */
        while (k > 0 && buf[k - 1] == '0') buf[--k] = 0;
        if (buf[k - 1] == '.') buf[--k] = 0;
    }
    int zero = !strcmp(buf, "0");
    int w = snprintf(out, cap, "%s%s", neg && !zero ? "-" : "", buf);
    return w < 0 || (size_t)w >= cap ? -1 : 0;
}

/* ---------------------------------------------------------------- extraction */

/* Offset just after the last final-answer marker in text, or -1. */
static long after_marker(const char *text) {
    static const char *const markers[] = {"answer is", "answer:", "####", "\"answer\":"};
    long best = -1;
    size_t n = strlen(text);
    for (size_t m = 0; m < sizeof markers / sizeof *markers; m++) {
        size_t L = strlen(markers[m]);
        for (size_t i = 0; i + L <= n; i++)
            if (!strncasecmp(text + i, markers[m], L) && (long)(i + L) > best) best = (long)(i + L);
    }
    return best;
}

static int set_out(char *out, size_t cap, const char *s, size_t n) {
    while (n && isspace((unsigned char)*s)) { s++; n--; }
    while (n && isspace((unsigned char)s[n - 1])) n--;
    if (n >= cap) n = cap - 1;
    memcpy(out, s, n);
    out[n] = 0;
    return n > 0;
}

static int extract_number(const char *text, char *out, size_t cap) {
    long m = after_marker(text);
    const char *last = NULL; size_t last_n = 0;
    for (const char *p = text + (m >= 0 ? m : 0); *p; p++) {
        /* a number starts at a digit or sign not glued to a preceding digit or letter */
        if (p > text && (isalnum((unsigned char)p[-1]) || p[-1] == '.')) continue;
        size_t n = number_len(p);
        if (!n) continue;
        if (m >= 0) return strategy_number_norm(strndupa(p, n), out, cap) == 0;
        last = p; last_n = n;
        p += n - 1;
    }
    if (!last) { out[0] = 0; return 0; }
    return strategy_number_norm(strndupa(last, last_n), out, cap) == 0;
}

static int choice_at(const char *p, const char *text) {
    if (*p < 'A' || *p > 'E') return 0;
    int before_ok = p == text || !isalnum((unsigned char)p[-1]);
    int after_ok = !isalnum((unsigned char)p[1]);
    return before_ok && after_ok;
}

static int extract_choice(const char *text, char *out, size_t cap) {
    long m = after_marker(text);
    if (m >= 0)
        for (const char *p = text + m; *p; p++) if (choice_at(p, text)) return set_out(out, cap, p, 1);
    const char *last = NULL;
    for (const char *p = text; *p; p++) if (choice_at(p, text)) last = p;
    if (!last) { out[0] = 0; return 0; }
    return set_out(out, cap, last, 1);
}

static int extract_text(const char *text, char *out, size_t cap) {
    long m = after_marker(text);
    const char *s = m >= 0 ? text + m : text;
    size_t n = strlen(s);
    if (m >= 0) {   /* up to the end of the sentence or line */
        for (size_t i = 0; i < n; i++)
            if (s[i] == '\n' || ((s[i] == '.' || s[i] == '!' || s[i] == '?') && (s[i + 1] == 0 || isspace((unsigned char)s[i + 1])))) { n = i; break; }
    }
    while (n && isspace((unsigned char)s[n - 1])) n--;
    if (n && s[n - 1] == '.') n--;
    return set_out(out, cap, s, n);
}

static int word_char(char c) { return isalnum((unsigned char)c) || c == '\'' || c == '-'; }

static int extract_word(const char *text, char *out, size_t cap) {
    char t[STRATEGY_ANSWER_MAX * 4];
    if (!extract_text(text, t, sizeof t)) { out[0] = 0; return 0; }
    size_t e = strlen(t);
    while (e && !word_char(t[e - 1])) e--;
    size_t b = e;
    while (b && word_char(t[b - 1])) b--;
    return set_out(out, cap, t + b, e - b);
}

static int extract_regex(const char *re, const char *text, char *out, size_t cap) {
    regex_t rx;
    if (!re || regcomp(&rx, re, REG_EXTENDED)) return -1;
    regmatch_t mt[2];
    int found = regexec(&rx, text, 2, mt, 0) == 0;
    int rc = 0;
    out[0] = 0;
    if (found) {
        int g = mt[1].rm_so >= 0 ? 1 : 0;
        rc = set_out(out, cap, text + mt[g].rm_so, (size_t)(mt[g].rm_eo - mt[g].rm_so));
    }
    regfree(&rx);
    return rc;
}

int strategy_extract(const answer_rule *rule, const char *expected, const char *text, char *out, size_t cap) {
    char tmp[STRATEGY_ANSWER_MAX];
    answer_kind k = rule->kind;
    if (k == ANSWER_AUTO) {
        int one_word = expected && *expected;
        for (const char *p = expected; one_word && *p; p++) one_word = word_char(*p);
        k = expected && !strategy_number_norm(expected, tmp, sizeof tmp) ? ANSWER_NUMBER : one_word ? ANSWER_WORD : ANSWER_TEXT;
    }
    if (!text) text = "";
    switch (k) {
    case ANSWER_NUMBER: return extract_number(text, out, cap);
    case ANSWER_CHOICE: return extract_choice(text, out, cap);
    case ANSWER_REGEX:  return extract_regex(rule->regex, text, out, cap);
    case ANSWER_WORD:   return extract_word(text, out, cap);
    default:            return extract_text(text, out, cap);
    }
}

int strategy_answer_equal(const char *got, const char *expected) {
    char a[STRATEGY_ANSWER_MAX], b[STRATEGY_ANSWER_MAX];
    if (!strategy_number_norm(got, a, sizeof a) && !strategy_number_norm(expected, b, sizeof b)) return !strcmp(a, b);
    set_out(a, sizeof a, got, strlen(got));
    set_out(b, sizeof b, expected, strlen(expected));
    return !strcmp(a, b);
}

void strategy_wilson(long k, long n, double z, double *lo, double *hi) {
    if (n <= 0) { *lo = 0; *hi = 1; return; }
    double p = (double)k / (double)n, nn = (double)n, z2 = z * z;
    double c = (p + z2 / (2 * nn)) / (1 + z2 / nn);
    double h = z * sqrt(p * (1 - p) / nn + z2 / (4 * nn * nn)) / (1 + z2 / nn);
    *lo = k == 0 || c - h < 0 ? 0 : c - h;   /* exact ends: c - h is 0 only up to rounding when k = 0 */
    *hi = k == n || c + h > 1 ? 1 : c + h;
}

/* ---------------------------------------------------------------- task files */

static char *dup_s(const char *s) {
    size_t n = strlen(s);
    char *d = gk_malloc(n + 1);
    memcpy(d, s, n + 1);
    return d;
}

void strategy_example_free(strategy_example *x) {
    if (!x) return;
    free(x->prompt); free(x->system); free(x->answer); free(x->reply);
    memset(x, 0, sizeof *x);
}

void strategy_tasks_free(strategy_example *t, size_t n) {
    for (size_t i = 0; i < n; i++) strategy_example_free(&t[i]);
    free(t);
}

/* "prompt": a string, or a message list of system / user messages (the last user message is the prompt). */
static int task_prompt_field(const cJSON *p, strategy_example *x, const char *path, size_t ln, gk_err *err) {
    if (cJSON_IsString(p)) { x->prompt = dup_s(p->valuestring); return 0; }
    if (!cJSON_IsArray(p)) return gk_errf(err, "%s:%zu: field \"prompt\" must be a string or a list of messages", path, ln);
    int k = 0;
    for (const cJSON *m = p->child; m; m = m->next, k++) {
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(m, "role");
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(m, "content");
        if (!cJSON_IsString(role) || !cJSON_IsString(content))
            return gk_errf(err, "%s:%zu: field \"prompt\"[%d] needs string \"role\" and \"content\"", path, ln, k);
        char **dst = !strcmp(role->valuestring, "system") ? &x->system : !strcmp(role->valuestring, "user") ? &x->prompt : NULL;
        if (!dst) return gk_errf(err, "%s:%zu: field \"prompt\"[%d].role must be system or user, got \"%s\"", path, ln, k, role->valuestring);
        free(*dst);
        *dst = dup_s(content->valuestring);
    }
    if (!x->prompt) return gk_errf(err, "%s:%zu: field \"prompt\" has no user message", path, ln);
    return 0;
}

int strategy_task_parse(const char *line, const char *path, size_t ln, strategy_example *x, gk_err *err) {
    memset(x, 0, sizeof *x);
    cJSON *j = cJSON_Parse(line);
    int rc = 0;
    if (!cJSON_IsObject(j)) { cJSON_Delete(j); return gk_errf(err, "%s:%zu: not a JSON object", path, ln); }
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(j, "prompt");
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(j, "answer");
    const cJSON *r = cJSON_GetObjectItemCaseSensitive(j, "reply");
    if (!p) rc = gk_errf(err, "%s:%zu: field \"prompt\" is missing", path, ln);
    else if (task_prompt_field(p, x, path, ln, err)) rc = -1;
    else if (!a) rc = gk_errf(err, "%s:%zu: field \"answer\" is missing", path, ln);
    else if (cJSON_IsString(a)) x->answer = dup_s(a->valuestring);
    else if (cJSON_IsNumber(a)) {   /* a JSON number: its text as written is lost, so print it back exactly */
        char b[64];
        if (a->valuedouble == (double)(long long)a->valuedouble && fabs(a->valuedouble) < 9e15) snprintf(b, sizeof b, "%lld", (long long)a->valuedouble);
        else snprintf(b, sizeof b, "%.17g", a->valuedouble);
        x->answer = dup_s(b);
    } else rc = gk_errf(err, "%s:%zu: field \"answer\" must be a string or a number", path, ln);
    if (!rc && r) {
        if (!cJSON_IsString(r)) rc = gk_errf(err, "%s:%zu: field \"reply\" must be a string", path, ln);
        else x->reply = dup_s(r->valuestring);
    }
    cJSON_Delete(j);
    if (rc) strategy_example_free(x);
    return rc;
}

int strategy_tasks_load(const char *path, strategy_example **out, size_t *n, gk_err *err) {
    gk_lines lr;
    *out = NULL; *n = 0;
    if (gk_lines_open(&lr, path, err)) return -1;
    size_t cap = 64, cnt = 0;
    strategy_example *t = gk_malloc(cap * sizeof *t);
    char *line; size_t ln;
    while (gk_lines_next(&lr, &line, &ln)) {
        if (cnt == cap) { cap *= 2; t = gk_realloc(t, cap * sizeof *t); }
        if (strategy_task_parse(line, path, ln, &t[cnt], err)) { gk_lines_close(&lr); strategy_tasks_free(t, cnt); return -1; }
        cnt++;
    }
    gk_lines_close(&lr);
    if (!cnt) { free(t); return gk_errf(err, "%s: no tasks (the file is empty)", path); }
    *out = t; *n = cnt;
    return 0;
}
