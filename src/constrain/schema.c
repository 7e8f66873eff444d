/* schema.c: JSON Schema -> GBNF text, the JSON grammars (any value, any object), and the entry points the
 * command line and the server use (constrain_spec_to_gbnf, constrain_from_response_format).
 *
 * Each subschema becomes one rule (named after its JSON pointer's last part where that is a plain name).
 * Objects: properties in the schema's order, required ones present, optional ones optional; the commas come
 * from two rule chains per object — H_k "properties k.. with none written yet" and T_k "properties k.. after
 * at least one" — so every combination of optional properties is written with exactly the right commas.
 * additionalProperties: absent or false -> no other keys are generated (absent still validates: the schema
 * allows them, the grammar just never writes them); true or a schema -> extra "key": value pairs after the
 * named ones (a generated key could repeat a named one: documented).
 * Whitespace between tokens is bounded (ws below) so a sampler cannot spend its budget on spaces.
 * Unsupported keywords are errors naming the keyword and the schema's JSON pointer; annotations (title,
 * description, examples, default, $schema, $id, $comment, deprecated, readOnly, writeOnly) are ignored. */
#include "constrain/constrain_internal.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The shared JSON rules (a schema's grammar includes them; unused ones cost nothing). */
static const char json_common[] =
    "ws ::= ([ \\t\\n] [ \\t]{0,20})?\n"
    "value ::= object | array | string | number | boolean | null\n"
    "object ::= \"{\" ws ( string ws \":\" ws value ws ( \",\" ws string ws \":\" ws value ws )* )? \"}\"\n"
    "array ::= \"[\" ws ( value ws ( \",\" ws value ws )* )? \"]\"\n"
    "string ::= \"\\\"\" char* \"\\\"\"\n"
    "char ::= [^\"\\\\\\x00-\\x1F] | \"\\\\\" ( [\"\\\\/bfnrt] | \"u\" [0-9a-fA-F]{4} )\n"
    "number ::= integer ( \".\" [0-9]{1,16} )? ( [eE] [-+]? [0-9]{1,2} )?\n"
    "integer ::= \"-\"? ( \"0\" | [1-9] [0-9]{0,15} )\n"
    "boolean ::= \"true\" | \"false\"\n"
    "null ::= \"null\"\n";

char *constrain_json_object_gbnf(void) {
    cn_sb b = { 0 };
    cn_sb_add(&b, "root ::= object\n");
    cn_sb_add(&b, json_common);
    return b.s;
}
char *constrain_json_value_gbnf(void) {
    cn_sb b = { 0 };
    cn_sb_add(&b, "root ::= value\n");
    cn_sb_add(&b, json_common);
    return b.s;
}

/* ---------------------------------------------------------------- the converter */

typedef struct { char *ref; char *rule; } refname;
typedef struct {
    const cJSON *root;
    cn_sb out;
    size_t nrules;
    refname *refs; size_t nrefs, caprefs;
    gk_err *err;
    int failed, depth;
} conv;

__attribute__((format(printf, 3, 4)))
static int cfail(conv *c, const char *ptr, const char *fmt, ...) {
    if (c->failed) return -1;
    c->failed = 1;
    char msg[800];
    va_list ap; va_start(ap, fmt); vsnprintf(msg, sizeof msg, fmt, ap); va_end(ap);
    return gk_errf(c->err, "JSON Schema at %s: %s", *ptr ? ptr : "/ (the root)", msg);
}

/* a fresh rule name "s<k>" or "<hint>-<k>" (hint sanitised to GBNF name characters) */
static char *new_rule(conv *c, const char *hint) {
    char buf[80];
    size_t j = 0;
    for (const char *h = hint; h && *h && j < 40; h++) {
        char ch = *h;
        if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9')) buf[j++] = ch;
        else if (j && buf[j - 1] != '-') buf[j++] = '-';
    }
    if (!j) buf[j++] = 's';
    snprintf(buf + j, sizeof buf - j, "-%zu", ++c->nrules);
    return gk_strdup(buf);
}

static const char *const annotations[] = {
    "title", "description", "examples", "default", "$schema", "$id", "$comment", "deprecated", "readOnly",
    "writeOnly", "$defs", "definitions", "$anchor", "nullable", "contentMediaType", "contentEncoding", NULL };
static int is_annotation(const char *k) {
    for (int i = 0; annotations[i]; i++) if (!strcmp(annotations[i], k)) return 1;
    return 0;
}

static int gen(conv *c, const cJSON *s, const char *ptr, const char *hint, char **rule);

static void child_ptr(char *dst, size_t n, const char *ptr, const char *a, const char *b) {
    if (b) snprintf(dst, n, "%s/%s/%s", ptr, a, b); else snprintf(dst, n, "%s/%s", ptr, a);
}

/* JSON pointer resolution for "#/..." refs (with ~0 ~1 unescaping) */
static const cJSON *resolve(const cJSON *root, const char *ref) {
    if (strcmp(ref, "#") == 0) return root;
    if (strncmp(ref, "#/", 2)) return NULL;
    const cJSON *cur = root;
    const char *p = ref + 2;
    char part[256];
    while (cur) {
        size_t j = 0;
        while (*p && *p != '/' && j + 1 < sizeof part) {
            if (p[0] == '~' && p[1] == '0') { part[j++] = '~'; p += 2; }
            else if (p[0] == '~' && p[1] == '1') { part[j++] = '/'; p += 2; }
            else part[j++] = *p++;
        }
        part[j] = 0;
        if (cJSON_IsArray(cur)) {
            char *end; long k = strtol(part, &end, 10);
            cur = *end || k < 0 ? NULL : cJSON_GetArrayItem(cur, (int)k);
        } else cur = cJSON_GetObjectItemCaseSensitive(cur, part);
        if (!*p) break;
        p++;
    }
    return cur;
}

/* a literal JSON value (enum / const) as a GBNF literal */
static void json_literal(conv *c, const cJSON *v) {
    char *txt = cJSON_PrintUnformatted(v);
    cn_sb_literal(&c->out, txt, strlen(txt));
    free(txt);
}

/* ---- integers with bounds: [lo, hi] written as digit-class products (split at powers of ten, the way
 * code point ranges are split into UTF-8 byte ranges) */
static void digits_range(cn_sb *b, const char *lo, const char *hi, size_t n, int *first) {
    /* lo, hi: n-digit strings, lo <= hi. Emit as alternatives of class sequences. */
    size_t k = 0;
    while (k < n && lo[k] == hi[k]) k++;
    if (k == n) { if (!*first) cn_sb_add(b, " | "); *first = 0; cn_sb_literal(b, lo, n); return; }
    /* is the tail lo[k+1..] all 0 and hi[k+1..] all 9? then one product */
    int lo0 = 1, hi9 = 1;
    for (size_t j = k + 1; j < n; j++) { lo0 &= lo[j] == '0'; hi9 &= hi[j] == '9'; }
    if (lo0 && hi9) {
        if (!*first) cn_sb_add(b, " | ");
        *first = 0;
        cn_sb_add(b, "(");
        if (k) { cn_sb_literal(b, lo, k); cn_sb_add(b, " "); }
        cn_sb_addf(b, "[%c-%c]", lo[k], hi[k]);
        if (n - k - 1) cn_sb_addf(b, " [0-9]{%zu}", n - k - 1);
        cn_sb_add(b, ")");
        return;
    }
    char a[24], z[24];
    memcpy(a, lo, n); memcpy(z, hi, n);
    if (!lo0) {   /* [lo, lo[..k] lo[k] 99..9] then the rest */
        for (size_t j = k + 1; j < n; j++) z[j] = '9';
        z[k] = lo[k];
        digits_range(b, lo, z, n, first);
        if (lo[k] == hi[k] - 1 && hi9) {   /* the rest is one product */
            memcpy(a, hi, n); for (size_t j = k + 1; j < n; j++) a[j] = '0';
            digits_range(b, a, hi, n, first);
            return;
        }
        memcpy(a, lo, n); a[k] = (char)(lo[k] + 1); for (size_t j = k + 1; j < n; j++) a[j] = '0';
        digits_range(b, a, hi, n, first);
        return;
    }
    /* lo's tail is 0s, hi's is not all 9s: [lo, (hi[k]-1) 99..9] and [hi[k] 00..0, hi] */
    memcpy(z, hi, n); z[k] = (char)(hi[k] - 1); for (size_t j = k + 1; j < n; j++) z[j] = '9';
    digits_range(b, lo, z, n, first);
    memcpy(a, hi, n); for (size_t j = k + 1; j < n; j++) a[j] = '0';
    digits_range(b, a, hi, n, first);
}
/* non-negative [lo, hi] (hi < 0: unbounded) */
static void uint_range(cn_sb *b, long long lo, long long hi, int *first) {
    char ls[24], hs[24];
    for (int d = 1; d <= 19; d++) {
        long long dlo = d == 1 ? 0 : 1, dhi = 9;
        for (int j = 1; j < d; j++) { dlo *= 10; dhi = dhi * 10 + 9; }
        if (d == 1) dlo = 0;
        if (hi >= 0 && dlo > hi) break;
        long long a = lo > dlo ? lo : dlo, z = hi >= 0 && hi < dhi ? hi : dhi;
        if (a > z) continue;
        if (hi < 0 && a == dlo && d >= 2) {   /* every number of d or more digits */
            if (!*first) cn_sb_add(b, " | ");
            *first = 0;
            cn_sb_addf(b, "([1-9] [0-9]{%d,15})", d - 1);
            return;
        }
        snprintf(ls, sizeof ls, "%lld", a); snprintf(hs, sizeof hs, "%lld", z);
        digits_range(b, ls, hs, (size_t)d, first);
        if (d == 16 && hi < 0) return;
    }
}

static int gen_integer(conv *c, const cJSON *s, const char *ptr, cn_sb *e) {
    const cJSON *mn = cJSON_GetObjectItemCaseSensitive(s, "minimum"), *mx = cJSON_GetObjectItemCaseSensitive(s, "maximum");
    const cJSON *emn = cJSON_GetObjectItemCaseSensitive(s, "exclusiveMinimum"), *emx = cJSON_GetObjectItemCaseSensitive(s, "exclusiveMaximum");
    int has_lo = 0, has_hi = 0;
    long long lo = 0, hi = 0;
    const double big = 1e15;
    /* range-checked as doubles first: a cast of a value beyond long long's range is undefined */
    const cJSON *bounds[4] = { mn, emn, mx, emx };
    for (int k = 0; k < 4; k++)
        if (cJSON_IsNumber(bounds[k]) && !(fabs(bounds[k]->valuedouble) <= big))
            return cfail(c, ptr, "integer bounds beyond 1e15 are not supported");
    if (cJSON_IsNumber(mn)) { has_lo = 1; lo = (long long)ceil(mn->valuedouble); }
    if (cJSON_IsNumber(emn)) { long long v = (long long)floor(emn->valuedouble) + 1; if (!has_lo || v > lo) lo = v; has_lo = 1; }
    if (cJSON_IsNumber(mx)) { has_hi = 1; hi = (long long)floor(mx->valuedouble); }
    if (cJSON_IsNumber(emx)) { long long v = (long long)ceil(emx->valuedouble) - 1; if (!has_hi || v < hi) hi = v; has_hi = 1; }
    if ((has_lo && fabs((double)lo) > big) || (has_hi && fabs((double)hi) > big))
        return cfail(c, ptr, "integer bounds beyond 1e15 are not supported");
    if (!has_lo && !has_hi) { cn_sb_add(e, "integer"); return 0; }
    if (has_lo && has_hi && lo > hi) return cfail(c, ptr, "minimum %lld is above maximum %lld: no integer fits", lo, hi);
    int first = 1;
    cn_sb_add(e, "(");
    /* negative part: "-" then the magnitudes */
    if (!has_lo || lo < 0) {
        long long mlo = has_hi && hi < 0 ? -hi : 1, mhi = has_lo ? -lo : -1;
        if (!first) cn_sb_add(e, " | ");
        first = 0;
        cn_sb_add(e, "(\"-\" (");
        int f2 = 1;
        uint_range(e, mlo, mhi, &f2);
        cn_sb_add(e, "))");
    }
    if (!has_hi || hi >= 0) uint_range(e, has_lo && lo > 0 ? lo : 0, has_hi ? hi : -1, &first);
    cn_sb_add(e, ")");
    return 0;
}

static const struct { const char *name, *re; } formats[] = {
    { "date", "[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])" },
    { "time", "([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\\.[0-9]{1,6})?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])" },
    { "date-time", "[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\\.[0-9]{1,6})?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])" },
    { "uuid", "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}" },
    { "ipv4", "((25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\\.){3}(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])" },
    { "email", "[A-Za-z0-9._%+-]{1,32}@[A-Za-z0-9-]{1,32}(\\.[A-Za-z0-9-]{1,32}){0,3}\\.[A-Za-z]{2,8}" },
};

/* a string's contents as a regex inside the quotes: JSON-escape-free characters only (no " \ or control) */
/* A count keyword (minItems, maxLength, ...): dflt when absent; a value outside 0..1e6 (negative, huge,
 * infinite) comes back as -2 or 1000001 for the caller's range check, never as an out-of-range cast. */
static long count_kw(const cJSON *v, long dflt) {
    if (!cJSON_IsNumber(v)) return dflt;
    double d = v->valuedouble;
    return d < 0 ? -2 : d <= 1e6 ? (long)d : 1000001;
}

static int gen_string(conv *c, const cJSON *s, const char *ptr, cn_sb *e) {
    const cJSON *pat = cJSON_GetObjectItemCaseSensitive(s, "pattern"), *fmt = cJSON_GetObjectItemCaseSensitive(s, "format");
    const cJSON *mn = cJSON_GetObjectItemCaseSensitive(s, "minLength"), *mx = cJSON_GetObjectItemCaseSensitive(s, "maxLength");
    const char *re = NULL;
    if (cJSON_IsString(fmt)) {
        for (size_t k = 0; k < sizeof formats / sizeof formats[0]; k++) if (!strcmp(formats[k].name, fmt->valuestring)) re = formats[k].re;
        if (!re) return cfail(c, ptr, "format \"%s\" is not supported (supported: date, time, date-time, uuid, ipv4, email)", fmt->valuestring);
    }
    if (cJSON_IsString(pat)) {
        if (re) return cfail(c, ptr, "pattern together with format is not supported");
        re = pat->valuestring;
        size_t L = strlen(re);
        int anchored = L && re[0] == '^' && re[L - 1] == '$';
        if (!anchored) return cfail(c, ptr, "pattern \"%s\" is unanchored: JSON Schema matches it anywhere in the string; "
                                           "write ^...$ to say what the whole string is", re);
    }
    if (re) {
        if (cJSON_IsNumber(mn) || cJSON_IsNumber(mx)) return cfail(c, ptr, "minLength/maxLength together with pattern or format is not supported");
        cn_sb_add(e, "\"\\\"\" ");
        gk_err e2;
        if (cn_regex_expr(e, re, strlen(re), &e2)) return cfail(c, ptr, "pattern: %s", e2.msg);
        cn_sb_add(e, " \"\\\"\"");
        return 0;
    }
    long lo = count_kw(mn, 0), hi = count_kw(mx, -1);
    if (lo < 0 || lo > 10000 || hi < -1 || hi > 10000) return cfail(c, ptr, "minLength/maxLength must be in 0..10000");
    if (hi >= 0 && hi < lo) return cfail(c, ptr, "maxLength %ld is below minLength %ld", hi, lo);
    if (hi < 0 && lo == 0) cn_sb_add(e, "string");
    else if (hi < 0) cn_sb_addf(e, "\"\\\"\" char{%ld,} \"\\\"\"", lo);
    else cn_sb_addf(e, "\"\\\"\" char{%ld,%ld} \"\\\"\"", lo, hi);
    return 0;
}

static int gen_array(conv *c, const cJSON *s, const char *ptr, const char *hint, cn_sb *e) {
    const cJSON *items = cJSON_GetObjectItemCaseSensitive(s, "items"), *prefix = cJSON_GetObjectItemCaseSensitive(s, "prefixItems");
    const cJSON *mn = cJSON_GetObjectItemCaseSensitive(s, "minItems"), *mx = cJSON_GetObjectItemCaseSensitive(s, "maxItems");
    const cJSON *uq = cJSON_GetObjectItemCaseSensitive(s, "uniqueItems");
    char p2[1024];
    if (cJSON_IsTrue(uq)) return cfail(c, ptr, "uniqueItems: true is not supported");
    if (cJSON_GetObjectItemCaseSensitive(s, "contains")) return cfail(c, ptr, "contains is not supported");
    long lo = count_kw(mn, 0), hi = count_kw(mx, -1);
    if (lo < 0 || lo > 1000 || hi < -1 || hi > 1000) return cfail(c, ptr, "minItems/maxItems must be in 0..1000");
    if (hi >= 0 && hi < lo) return cfail(c, ptr, "maxItems %ld is below minItems %ld", hi, lo);
    if (prefix) {   /* a tuple: exactly the prefix items (further items only if items allows and minItems asks) */
        if (!cJSON_IsArray(prefix)) return cfail(c, ptr, "prefixItems must be an array");
        if (items && !cJSON_IsFalse(items)) return cfail(c, ptr, "prefixItems with items other than false is not supported");
        int n = cJSON_GetArraySize(prefix);
        char **names = gk_calloc((size_t)n + 1, sizeof *names);
        for (int k = 0; k < n && !c->failed; k++) {
            char idx[16]; snprintf(idx, sizeof idx, "%d", k);
            child_ptr(p2, sizeof p2, ptr, "prefixItems", idx);
            gen(c, cJSON_GetArrayItem(prefix, k), p2, hint, &names[k]);
        }
        if (!c->failed) {
            cn_sb_add(e, "\"[\" ws ");
            for (int k = 0; k < n; k++) cn_sb_addf(e, "%s%s ws ", k ? "\",\" ws " : "", names[k]);
            cn_sb_add(e, "\"]\"");
        }
        for (int k = 0; k < n; k++) free(names[k]);
        free(names);
        return c->failed ? -1 : 0;
    }
    char *it = NULL;
    if (items && !cJSON_IsTrue(items)) {
        child_ptr(p2, sizeof p2, ptr, "items", NULL);
        if (gen(c, items, p2, hint, &it)) return -1;
    } else it = gk_strdup("value");
    if (hi == 0) cn_sb_add(e, "\"[\" ws \"]\"");
    else if (lo == 0) {
        if (hi < 0) cn_sb_addf(e, "\"[\" ws ( %s ws ( \",\" ws %s ws )* )? \"]\"", it, it);
        else cn_sb_addf(e, "\"[\" ws ( %s ws ( \",\" ws %s ws ){0,%ld} )? \"]\"", it, it, hi - 1);
    } else {
        if (hi < 0) cn_sb_addf(e, "\"[\" ws %s ws ( \",\" ws %s ws ){%ld,} \"]\"", it, it, lo - 1);
        else cn_sb_addf(e, "\"[\" ws %s ws ( \",\" ws %s ws ){%ld,%ld} \"]\"", it, it, lo - 1, hi - 1);
    }
    free(it);
    return 0;
}

static int gen_object(conv *c, const cJSON *s, const char *ptr, const char *hint, const char *self) {
    static const char *const unsupported[] = { "patternProperties", "propertyNames", "minProperties", "maxProperties",
        "dependentRequired", "dependentSchemas", "dependencies", "unevaluatedProperties", NULL };
    for (int k = 0; unsupported[k]; k++)
        if (cJSON_GetObjectItemCaseSensitive(s, unsupported[k])) return cfail(c, ptr, "%s is not supported", unsupported[k]);
    const cJSON *props = cJSON_GetObjectItemCaseSensitive(s, "properties"), *req = cJSON_GetObjectItemCaseSensitive(s, "required");
    const cJSON *add = cJSON_GetObjectItemCaseSensitive(s, "additionalProperties");
    if (props && !cJSON_IsObject(props)) return cfail(c, ptr, "properties must be an object");
    if (req && !cJSON_IsArray(req)) return cfail(c, ptr, "required must be an array of names");
    size_t n = 0;
    for (const cJSON *p = props ? props->child : NULL; p; p = p->next) n++;
    /* required names must be properties (else the grammar could not write them) */
    for (const cJSON *r = req ? req->child : NULL; r; r = r->next) {
        if (!cJSON_IsString(r)) return cfail(c, ptr, "required must hold strings");
        if (!props || !cJSON_GetObjectItemCaseSensitive(props, r->valuestring))
            return cfail(c, ptr, "required property \"%s\" has no schema under properties (not supported)", r->valuestring);
    }
    char **kv = gk_calloc(n + 1, sizeof *kv);
    int *need = gk_calloc(n + 1, sizeof *need);
    char p2[1024];
    size_t k = 0;
    for (const cJSON *p = props ? props->child : NULL; p && !c->failed; p = p->next, k++) {
        child_ptr(p2, sizeof p2, ptr, "properties", p->string);
        char *vr = NULL;
        if (gen(c, p, p2, p->string, &vr)) break;
        for (const cJSON *r = req ? req->child : NULL; r; r = r->next) if (!strcmp(r->valuestring, p->string)) need[k] = 1;
        /* kv_k ::= "\"name\"" ws ":" ws value ws */
        kv[k] = new_rule(c, p->string);
        cJSON *ks = cJSON_CreateString(p->string);
        char *kt = cJSON_PrintUnformatted(ks);
        cJSON_Delete(ks);
        cn_sb_addf(&c->out, "%s ::= ", kv[k]);
        cn_sb_literal(&c->out, kt, strlen(kt));
        cn_sb_addf(&c->out, " ws \":\" ws %s ws\n", vr);
        free(kt); free(vr);
    }
    if (c->failed) { for (size_t j = 0; j < n; j++) free(kv[j]); free(kv); free(need); return -1; }
    /* extra pairs */
    char *extra = NULL;
    if (add && !cJSON_IsFalse(add)) {
        char *vr;
        if (cJSON_IsTrue(add)) vr = gk_strdup("value");
        else {
            child_ptr(p2, sizeof p2, ptr, "additionalProperties", NULL);
            if (gen(c, add, p2, hint, &vr)) { for (size_t j = 0; j < n; j++) free(kv[j]); free(kv); free(need); return -1; }
        }
        extra = new_rule(c, "extra");
        cn_sb_addf(&c->out, "%s ::= string ws \":\" ws %s ws\n", extra, vr);
        free(vr);
    } else if (!add && n == 0) {
        extra = gk_strdup("");   /* {"type":"object"} alone: any object */
    }
    /* T_k and H_k chains, k = n .. 0 */
    char **T = gk_calloc(n + 2, sizeof *T), **H = gk_calloc(n + 2, sizeof *H);
    T[n] = new_rule(c, self); H[n] = new_rule(c, self);
    if (extra && *extra) {
        cn_sb_addf(&c->out, "%s ::= ( \",\" ws %s )*\n", T[n], extra);
        cn_sb_addf(&c->out, "%s ::= ( %s ( \",\" ws %s )* )?\n", H[n], extra, extra);
    } else if (extra) {   /* any object */
        cn_sb_addf(&c->out, "%s ::= ( \",\" ws string ws \":\" ws value ws )*\n", T[n]);
        cn_sb_addf(&c->out, "%s ::= ( string ws \":\" ws value ws ( \",\" ws string ws \":\" ws value ws )* )?\n", H[n]);
    } else {
        cn_sb_addf(&c->out, "%s ::= \"\"\n", T[n]);
        cn_sb_addf(&c->out, "%s ::= \"\"\n", H[n]);
    }
    for (size_t j = n; j-- > 0;) {
        T[j] = new_rule(c, self); H[j] = new_rule(c, self);
        if (need[j]) {
            cn_sb_addf(&c->out, "%s ::= \",\" ws %s %s\n", T[j], kv[j], T[j + 1]);
            cn_sb_addf(&c->out, "%s ::= %s %s\n", H[j], kv[j], T[j + 1]);
        } else {
            cn_sb_addf(&c->out, "%s ::= ( \",\" ws %s )? %s\n", T[j], kv[j], T[j + 1]);
            cn_sb_addf(&c->out, "%s ::= %s %s | %s\n", H[j], kv[j], T[j + 1], H[j + 1]);
        }
    }
    cn_sb_addf(&c->out, "%s ::= \"{\" ws %s \"}\"\n", self, H[0]);
    for (size_t j = 0; j <= n; j++) { free(T[j]); free(H[j]); }
    for (size_t j = 0; j < n; j++) free(kv[j]);
    free(T); free(H); free(kv); free(need); free(extra);
    return 0;
}

/* The rule for schema s (its name in *rule, malloc'd). */
static int gen(conv *c, const cJSON *s, const char *ptr, const char *hint, char **rule) {
    *rule = NULL;
    if (c->failed) return -1;
    if (++c->depth > 64) return cfail(c, ptr, "schema nested over 64 deep");
    int rc = -1;
    if (cJSON_IsTrue(s)) { *rule = gk_strdup("value"); c->depth--; return 0; }
    if (cJSON_IsFalse(s)) { c->depth--; return cfail(c, ptr, "the schema false matches nothing"); }
    if (!cJSON_IsObject(s)) { c->depth--; return cfail(c, ptr, "a schema must be an object or a boolean"); }
    /* $ref: one rule per target, named before it is generated so recursive schemas terminate */
    const cJSON *ref = cJSON_GetObjectItemCaseSensitive(s, "$ref");
    if (ref) {
        if (!cJSON_IsString(ref)) { c->depth--; return cfail(c, ptr, "$ref must be a string"); }
        for (size_t k = 0; k < c->nrefs; k++)
            if (!strcmp(c->refs[k].ref, ref->valuestring)) { *rule = gk_strdup(c->refs[k].rule); c->depth--; return 0; }
        const cJSON *t = resolve(c->root, ref->valuestring);
        if (!t) { c->depth--; return cfail(c, ptr, "$ref \"%s\" does not resolve (only local refs \"#/...\" are supported)", ref->valuestring); }
        for (const cJSON *k = s->child; k; k = k->next)
            if (strcmp(k->string, "$ref") && !is_annotation(k->string)) { c->depth--; return cfail(c, ptr, "keywords beside $ref (here \"%s\") are not supported", k->string); }
        if (c->nrefs == c->caprefs) { c->caprefs = c->caprefs ? 2 * c->caprefs : 8; c->refs = gk_realloc(c->refs, c->caprefs * sizeof *c->refs); }
        const char *last = strrchr(ref->valuestring, '/');
        char *name = new_rule(c, last ? last + 1 : "ref");
        c->refs[c->nrefs].ref = gk_strdup(ref->valuestring);
        c->refs[c->nrefs].rule = name;
        c->nrefs++;
        char *inner;
        if (gen(c, t, ref->valuestring + 1, last ? last + 1 : "ref", &inner)) { c->depth--; return -1; }
        cn_sb_addf(&c->out, "%s ::= %s\n", name, inner);
        free(inner);
        *rule = gk_strdup(name);
        c->depth--;
        return 0;
    }
    /* keywords we know; anything else is an error */
    static const char *const known[] = { "type", "enum", "const", "anyOf", "oneOf", "allOf", "properties", "required",
        "additionalProperties", "items", "prefixItems", "minItems", "maxItems", "uniqueItems", "minLength", "maxLength",
        "pattern", "format", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "contains",
        "patternProperties", "propertyNames", "minProperties", "maxProperties", "dependentRequired",
        "dependentSchemas", "dependencies", "unevaluatedProperties", NULL };
    for (const cJSON *k = s->child; k; k = k->next) {
        if (is_annotation(k->string)) continue;
        int ok = 0;
        for (int j = 0; known[j]; j++) if (!strcmp(known[j], k->string)) ok = 1;
        if (!ok) { c->depth--; return cfail(c, ptr, "keyword \"%s\" is not supported", k->string); }
    }
    if (cJSON_GetObjectItemCaseSensitive(s, "multipleOf")) { c->depth--; return cfail(c, ptr, "multipleOf is not supported"); }
    char *self = new_rule(c, hint);
    char p2[1024];
    const cJSON *en = cJSON_GetObjectItemCaseSensitive(s, "enum"), *cn = cJSON_GetObjectItemCaseSensitive(s, "const");
    const cJSON *any = cJSON_GetObjectItemCaseSensitive(s, "anyOf");
    if (!any) any = cJSON_GetObjectItemCaseSensitive(s, "oneOf");
    const cJSON *all = cJSON_GetObjectItemCaseSensitive(s, "allOf");
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(s, "type");
    if (cn) {
        cn_sb_addf(&c->out, "%s ::= ", self); json_literal(c, cn); cn_sb_add(&c->out, "\n");
        rc = 0;
    } else if (en) {
        if (!cJSON_IsArray(en) || !en->child) { free(self); c->depth--; return cfail(c, ptr, "enum must be a non-empty array"); }
        cn_sb_addf(&c->out, "%s ::= ", self);
        for (const cJSON *v = en->child; v; v = v->next) { if (v != en->child) cn_sb_add(&c->out, " | "); json_literal(c, v); }
        cn_sb_add(&c->out, "\n");
        rc = 0;
    } else if (any || (all && cJSON_GetArraySize(all) == 1)) {
        const cJSON *arr = any ? any : all;
        const char *kw = any ? (cJSON_GetObjectItemCaseSensitive(s, "anyOf") ? "anyOf" : "oneOf") : "allOf";
        if (!cJSON_IsArray(arr) || !arr->child) { free(self); c->depth--; return cfail(c, ptr, "%s must be a non-empty array", kw); }
        if (type || cJSON_GetObjectItemCaseSensitive(s, "properties")) { free(self); c->depth--; return cfail(c, ptr, "%s beside type/properties is not supported (put them inside each branch)", kw); }
        int k = 0;
        cn_sb alts = { 0 };
        for (const cJSON *v = arr->child; v; v = v->next, k++) {
            char idx[16]; snprintf(idx, sizeof idx, "%d", k);
            child_ptr(p2, sizeof p2, ptr, kw, idx);
            char *r;
            if (gen(c, v, p2, hint, &r)) { free(alts.s); free(self); c->depth--; return -1; }
            cn_sb_addf(&alts, "%s%s", k ? " | " : "", r);
            free(r);
        }
        cn_sb_addf(&c->out, "%s ::= %s\n", self, alts.s);
        free(alts.s);
        rc = 0;
    } else if (all) {
        free(self); c->depth--;
        return cfail(c, ptr, "allOf with more than one schema is not supported");
    } else {
        /* type: one name, a list of names, or absent (inferred from the keywords present) */
        const char *types[8]; int nt = 0;
        if (cJSON_IsString(type)) types[nt++] = type->valuestring;
        else if (cJSON_IsArray(type)) {
            for (const cJSON *t = type->child; t && nt < 8; t = t->next) {
                if (!cJSON_IsString(t)) { free(self); c->depth--; return cfail(c, ptr, "type list must hold strings"); }
                types[nt++] = t->valuestring;
            }
        } else if (type) { free(self); c->depth--; return cfail(c, ptr, "type must be a string or an array of strings"); }
        else if (cJSON_GetObjectItemCaseSensitive(s, "properties") || cJSON_GetObjectItemCaseSensitive(s, "additionalProperties")) types[nt++] = "object";
        else if (cJSON_GetObjectItemCaseSensitive(s, "items") || cJSON_GetObjectItemCaseSensitive(s, "prefixItems")) types[nt++] = "array";
        else if (cJSON_GetObjectItemCaseSensitive(s, "pattern") || cJSON_GetObjectItemCaseSensitive(s, "format")) types[nt++] = "string";
        if (nt == 0) { cn_sb_addf(&c->out, "%s ::= value\n", self); rc = 0; }
        else {
            cn_sb head = { 0 };   /* the alternatives (rules they need are written to c->out as they come) */
            rc = 0;
            for (int k = 0; k < nt && !rc; k++) {
                const char *t = types[k];
                if (k) cn_sb_add(&head, " | ");
                if (!strcmp(t, "string")) rc = gen_string(c, s, ptr, &head);
                else if (!strcmp(t, "integer")) rc = gen_integer(c, s, ptr, &head);
                else if (!strcmp(t, "number")) {
                    const char *bk[] = { "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum" };
                    int bounded = 0;
                    for (int j = 0; j < 4; j++) if (cJSON_GetObjectItemCaseSensitive(s, bk[j])) bounded = 1;
                    if (bounded) {
                        const cJSON *mn = cJSON_GetObjectItemCaseSensitive(s, "minimum");
                        int only_nonneg = cJSON_IsNumber(mn) && mn->valuedouble == 0 && !cJSON_GetObjectItemCaseSensitive(s, "maximum") &&
                                          !cJSON_GetObjectItemCaseSensitive(s, "exclusiveMinimum") && !cJSON_GetObjectItemCaseSensitive(s, "exclusiveMaximum");
                        if (!only_nonneg) rc = cfail(c, ptr, "bounds on a number (other than minimum 0) are not supported; use type integer or drop them");
                        else cn_sb_add(&head, "( \"0\" | [1-9] [0-9]{0,15} ) ( \".\" [0-9]{1,16} )?");
                    } else cn_sb_add(&head, "number");
                }
                else if (!strcmp(t, "boolean")) cn_sb_add(&head, "boolean");
                else if (!strcmp(t, "null")) cn_sb_add(&head, "null");
                else if (!strcmp(t, "array")) rc = gen_array(c, s, ptr, hint, &head);
                else if (!strcmp(t, "object")) {
                    char *orule = new_rule(c, hint);
                    rc = gen_object(c, s, ptr, hint, orule);
                    if (!rc) cn_sb_add(&head, orule);
                    free(orule);
                }
                else rc = cfail(c, ptr, "unknown type \"%s\"", t);
            }
            if (!rc) cn_sb_addf(&c->out, "%s ::= %s\n", self, head.s);
            free(head.s);
        }
    }
    c->depth--;
    if (rc) { free(self); return -1; }
    *rule = self;
    return 0;
}

char *constrain_schema_to_gbnf(const cJSON *schema, gk_err *err) {
    conv C = { .root = schema, .err = err }, *c = &C;
    /* names and values become grammar literals, which are text: the schema must be valid UTF-8 */
    char *all = cJSON_PrintUnformatted(schema);
    size_t bad = 0;
    int ok = all && gk_utf8_valid(all, strlen(all), &bad);
    free(all);
    if (!ok) { gk_errf(err, "JSON Schema is not valid UTF-8 (near byte %zu of its printed form)", bad); return NULL; }
    char *r;
    if (gen(c, schema, "", "root", &r)) {
        free(c->out.s);
        for (size_t k = 0; k < c->nrefs; k++) { free(c->refs[k].ref); free(c->refs[k].rule); }
        free(c->refs);
        return NULL;
    }
    cn_sb b = { 0 };
    cn_sb_addf(&b, "root ::= %s\n", r);
    cn_sb_add(&b, c->out.s ? c->out.s : "");
    cn_sb_add(&b, json_common);
    free(r); free(c->out.s);
    for (size_t k = 0; k < c->nrefs; k++) { free(c->refs[k].ref); free(c->refs[k].rule); }
    free(c->refs);
    return b.s;
}

/* ---------------------------------------------------------------- entry points */

char *constrain_spec_to_gbnf(constrain_kind kind, const char *spec, size_t len, gk_err *err) {
    switch (kind) {
    case CONSTRAIN_GBNF: {
        char *s = gk_malloc(len + 1);
        memcpy(s, spec, len); s[len] = 0;
        return s;
    }
    case CONSTRAIN_JSON: return constrain_json_value_gbnf();
    case CONSTRAIN_REGEX: {
        cn_sb b = { 0 };
        cn_sb_add(&b, "root ::= ");
        if (cn_regex_expr(&b, spec, len, err)) { free(b.s); return NULL; }
        cn_sb_add(&b, "\n");
        return b.s;
    }
    case CONSTRAIN_JSON_SCHEMA: {
        const char *end = NULL;
        cJSON *j = cJSON_ParseWithLengthOpts(spec, len, &end, 0);
        if (!j) {
            size_t at = end && end >= spec ? (size_t)(end - spec) : 0;
            gk_errf(err, "JSON Schema is not valid JSON (near byte %zu)", at);
            return NULL;
        }
        char *g = constrain_schema_to_gbnf(j, err);
        cJSON_Delete(j);
        return g;
    }
    }
    gk_errf(err, "unknown constraint kind");
    return NULL;
}

int constrain_from_response_format(const cJSON *rf, char **out, gk_err *err) {
    *out = NULL;
    if (!rf || cJSON_IsNull(rf)) return 0;
    if (!cJSON_IsObject(rf)) return gk_errf(err, "response_format: expected an object");
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(rf, "type");
    if (!cJSON_IsString(t)) return gk_errf(err, "response_format.type: expected a string");
    if (!strcmp(t->valuestring, "text")) return 0;
    if (!strcmp(t->valuestring, "json_object")) { *out = constrain_json_object_gbnf(); return 0; }
    if (!strcmp(t->valuestring, "json_schema")) {
        const cJSON *js = cJSON_GetObjectItemCaseSensitive(rf, "json_schema");
        if (!cJSON_IsObject(js)) return gk_errf(err, "response_format.json_schema: expected an object with a \"schema\"");
        const cJSON *sc = cJSON_GetObjectItemCaseSensitive(js, "schema");
        if (!sc) return gk_errf(err, "response_format.json_schema.schema: missing");
        *out = constrain_schema_to_gbnf(sc, err);
        if (!*out) return gk_err_prefix(err, "response_format.json_schema.schema");
        return 0;
    }
    return gk_errf(err, "response_format.type: \"%s\" is not one of text, json_object, json_schema", t->valuestring);
}
