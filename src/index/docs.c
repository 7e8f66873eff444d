/* docs.c: reading documents to index (text, Markdown, JSONL) and cutting them into chunks by tokens on
 * paragraph boundaries (index_internal.h says the rules). Input here is outside input: every failure is a
 * message naming the file and line. */
#include "index/index_internal.h"
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

uint64_t index_hash(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) { h ^= (uint8_t)s[i]; h *= 1099511628211ull; }
    return h;
}

void index_docs_free(index_docs *d) {
    for (size_t i = 0; i < d->n; i++) { free(d->v[i].source); free(d->v[i].text); }
    free(d->v); memset(d, 0, sizeof *d);
}
static void index_docs_push(index_docs *d, char *source, const char *text, size_t len) {
    if (d->n == d->cap) { d->cap = d->cap ? 2 * d->cap : 16; d->v = gk_realloc(d->v, d->cap * sizeof *d->v); }
    char *t = gk_malloc(len + 1); memcpy(t, text, len); t[len] = 0;
    d->v[d->n++] = (index_doc){source, t, len};
}
static int index_blank(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++) if (s[i] != ' ' && s[i] != '\t' && s[i] != '\n' && s[i] != '\r') return 0;
    return 1;
}
/* text checks shared by whole files and JSONL fields */
static int index_check_text(const char *where, const char *s, size_t n, gk_err *err) {
    const char *z = memchr(s, 0, n);
    if (z) return gk_errf(err, "%s: binary data (a NUL byte at offset %zu): not a text document", where, (size_t)(z - s));
    size_t bad;
    if (!gk_utf8_valid(s, n, &bad)) return gk_errf(err, "%s: invalid UTF-8 at byte %zu: not a text document", where, bad);
    if (index_blank(s, n)) return gk_errf(err, "%s: empty document (nothing but whitespace)", where);
    return 0;
}

int index_parse_buffer(const char *name, const char *data, size_t n, int jsonl, index_docs *out, gk_err *err) {
    if (!jsonl) {
        if (index_check_text(name, data, n, err)) return -1;
        index_docs_push(out, gk_strdup(name), data, n);
        return 0;
    }
    const char *z = memchr(data, 0, n);
    if (z) return gk_errf(err, "%s: binary data (a NUL byte at offset %zu): not JSONL", name, (size_t)(z - data));
    size_t line = 0, pos = 0, found = 0;
    char where[1200];
    while (pos < n) {
        const char *s = data + pos, *e = memchr(s, '\n', n - pos);
        size_t len = e ? (size_t)(e - s) : n - pos;
        pos += len + 1; line++;
        if (index_blank(s, len)) continue;
        snprintf(where, sizeof where, "%s:%zu", name, line);
        cJSON *j = cJSON_ParseWithLength(s, len);
        if (!j || !cJSON_IsObject(j)) { cJSON_Delete(j); return gk_errf(err, "%s: not a JSON object", where); }
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(j, "text"), *id = cJSON_GetObjectItemCaseSensitive(j, "id");
        if (!cJSON_IsString(t)) { cJSON_Delete(j); return gk_errf(err, "%s: text: missing or not a string", where); }
        if (index_check_text(where, t->valuestring, strlen(t->valuestring), err)) {
            cJSON_Delete(j);
            return gk_err_prefix(err, "field text");
        }
        char *src;
        if (cJSON_IsString(id) && id->valuestring[0]) {
            size_t m = strlen(name) + strlen(id->valuestring) + 2;
            src = gk_malloc(m); snprintf(src, m, "%s#%s", name, id->valuestring);
        } else if (cJSON_IsNumber(id)) {
            size_t m = strlen(name) + 32;
            src = gk_malloc(m); snprintf(src, m, "%s#%.0f", name, id->valuedouble);
        } else src = gk_strdup(where);
        index_docs_push(out, src, t->valuestring, strlen(t->valuestring));
        cJSON_Delete(j);
        found++;
    }
    if (!found) return gk_errf(err, "%s: empty document (no JSONL lines)", name);
    return 0;
}

/* ---------------------------------------------------------------- chunking */
typedef struct { size_t t0, t1; int split; } index_unit;   /* a paragraph, or a window of a long one */

/* paragraph index of each byte boundary: a blank line (\n, optional spaces, \n) separates paragraphs */
static size_t index_next_break(const char *s, size_t n, size_t from) {
    for (size_t i = from; i < n; i++) {
        if (s[i] != '\n') continue;
        size_t j = i + 1;
        while (j < n && (s[j] == ' ' || s[j] == '\t' || s[j] == '\r')) j++;
        if (j < n && s[j] == '\n') return j;
    }
    return n;
}

static void index_units(const char *text, size_t len, const wp_ids *tok, size_t max_tok, size_t overlap,
                        index_unit **out, size_t *n_out) {
    size_t cap = 16, n = 0, t = 0;
    index_unit *u = gk_malloc(cap * sizeof *u);
    size_t brk = index_next_break(text, len, 0);
    while (t < tok->n) {
        /* the paragraph holding token t: every token starting before the next break */
        while (tok->start[t] >= brk) brk = index_next_break(text, len, brk + 1);
        size_t t1 = t;
        while (t1 < tok->n && tok->start[t1] < brk) t1++;
        size_t stride = max_tok > overlap ? max_tok - overlap : max_tok;
        for (size_t w = t; w < t1; w += stride) {
            if (n == cap) { cap *= 2; u = gk_realloc(u, cap * sizeof *u); }
            size_t e = w + max_tok < t1 ? w + max_tok : t1;
            u[n++] = (index_unit){w, e, t1 - t > max_tok};
            if (e == t1) break;
        }
        t = t1;
    }
    *out = u; *n_out = n;
}

void index_chunk_doc(const char *text, size_t len, const wp_ids *tok, size_t max_tok, size_t overlap,
                     index_chunk **out, size_t *n_out) {
    index_unit *u; size_t nu;
    index_units(text, len, tok, max_tok, overlap, &u, &nu);
    size_t cap = 8, n = 0, i = 0;
    index_chunk *c = gk_malloc(cap * sizeof *c);
    while (i < nu) {
        /* pack whole units from i while they fit */
        size_t j = i, ntok = 0;
        while (j < nu && (j == i || ntok + (u[j].t1 - u[j].t0) <= max_tok)) { ntok += u[j].t1 - u[j].t0; j++; }
        if (n == cap) { cap *= 2; c = gk_realloc(c, cap * sizeof *c); }
        c[n++] = (index_chunk){u[i].t0, u[j - 1].t1, tok->start[u[i].t0], tok->end[u[j - 1].t1 - 1]};
        if (j == nu) break;
        /* the next chunk repeats trailing whole paragraphs of this one that fit in the overlap; a window of a
         * split paragraph already overlaps its neighbour */
        size_t k = j, back = 0;
        while (k - 1 > i && !u[k - 1].split && !u[j].split && back + (u[k - 1].t1 - u[k - 1].t0) <= overlap) {
            back += u[k - 1].t1 - u[k - 1].t0; k--;
        }
        i = k;
    }
    free(u);
    *out = c; *n_out = n;
}
