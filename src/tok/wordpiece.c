/* wordpiece.c: BERT's WordPiece tokenizer (see wordpiece.h for the steps and why each is there).
 *
 * The vocabulary is a hash table from UTF-8 token text to id (open addressing, FNV-1a). Normalisation works
 * on code points, each remembering the byte range of the input character it came from, so the pieces can
 * report source offsets. Added tokens (the specials) are found on the raw text before anything else, as HF
 * tokenizers does, longest first. */
#include "tok/wordpiece.h"
#include "tok/wordpiece_internal.h"
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

typedef struct { char *s; size_t n; int32_t id; } wp_entry;

struct wp_tokenizer {
    wp_entry *tab; size_t cap, count;     /* hash table, cap a power of two */
    size_t vocab_size;
    wp_options o;
    int32_t unk, cls, sep, pad;
    char **added; size_t *added_n; int32_t *added_id; size_t n_added;   /* sorted longest first */
};

/* ---------------------------------------------------------------- vocabulary table */
static uint64_t wp_hash(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) { h ^= (uint8_t)s[i]; h *= 1099511628211ull; }
    return h;
}
static int32_t wp_lookup(const wp_tokenizer *t, const char *s, size_t n) {
    if (!t->cap) return -1;
    for (size_t i = wp_hash(s, n) & (t->cap - 1);; i = (i + 1) & (t->cap - 1)) {
        const wp_entry *e = &t->tab[i];
        if (!e->s) return -1;
        if (e->n == n && !memcmp(e->s, s, n)) return e->id;
    }
}
static void wp_insert(wp_tokenizer *t, const char *s, size_t n, int32_t id) {
    if (2 * (t->count + 1) > t->cap) {
        size_t nc = t->cap ? 2 * t->cap : 1024;
        wp_entry *old = t->tab; size_t oc = t->cap;
        t->tab = gk_calloc(nc, sizeof *t->tab); t->cap = nc; t->count = 0;
        for (size_t i = 0; i < oc; i++) if (old[i].s) {
            size_t j = wp_hash(old[i].s, old[i].n) & (nc - 1);
            while (t->tab[j].s) j = (j + 1) & (nc - 1);
            t->tab[j] = old[i]; t->count++;
        }
        free(old);
    }
    size_t i = wp_hash(s, n) & (t->cap - 1);
    for (; t->tab[i].s; i = (i + 1) & (t->cap - 1))
        if (t->tab[i].n == n && !memcmp(t->tab[i].s, s, n)) { t->tab[i].id = id; return; }   /* last wins, as HF */
    char *c = gk_malloc(n + 1); memcpy(c, s, n); c[n] = 0;
    t->tab[i] = (wp_entry){c, n, id}; t->count++;
    if ((size_t)id + 1 > t->vocab_size) t->vocab_size = (size_t)id + 1;
}

void wp_options_default(wp_options *o) {
    o->clean_text = 1; o->chinese = 1; o->strip_accents = -1; o->lowercase = 1; o->max_chars_per_word = 100;
}
void wp_ids_free(wp_ids *v) { free(v->ids); free(v->start); free(v->end); memset(v, 0, sizeof *v); }
static void wp_ids_push(wp_ids *v, int32_t id, uint32_t a, uint32_t b) {
    if (v->n == v->cap) {
        v->cap = v->cap ? 2 * v->cap : 64;
        v->ids = gk_realloc(v->ids, v->cap * sizeof *v->ids);
        v->start = gk_realloc(v->start, v->cap * sizeof *v->start);
        v->end = gk_realloc(v->end, v->cap * sizeof *v->end);
    }
    v->ids[v->n] = id; v->start[v->n] = a; v->end[v->n] = b; v->n++;
}

void wp_free(wp_tokenizer *t) {
    if (!t) return;
    for (size_t i = 0; i < t->cap; i++) free(t->tab[i].s);
    free(t->tab);
    for (size_t i = 0; i < t->n_added; i++) free(t->added[i]);
    free(t->added); free(t->added_n); free(t->added_id);
    free(t);
}
size_t wp_vocab_size(const wp_tokenizer *t) { return t->vocab_size; }
int32_t wp_token_id(const wp_tokenizer *t, const char *tok) { return wp_lookup(t, tok, strlen(tok)); }
int32_t wp_cls_id(const wp_tokenizer *t) { return t->cls; }
int32_t wp_sep_id(const wp_tokenizer *t) { return t->sep; }
int32_t wp_pad_id(const wp_tokenizer *t) { return t->pad; }

static void wp_add_added(wp_tokenizer *t, const char *s, int32_t id) {
    size_t n = strlen(s);
    if (!n) return;
    for (size_t i = 0; i < t->n_added; i++) if (t->added_n[i] == n && !memcmp(t->added[i], s, n)) return;
    t->added = gk_realloc(t->added, (t->n_added + 1) * sizeof *t->added);
    t->added_n = gk_realloc(t->added_n, (t->n_added + 1) * sizeof *t->added_n);
    t->added_id = gk_realloc(t->added_id, (t->n_added + 1) * sizeof *t->added_id);
    /* keep longest first so the longest literal wins at a position */
    size_t k = t->n_added;
    while (k > 0 && t->added_n[k - 1] < n) {
        t->added[k] = t->added[k - 1]; t->added_n[k] = t->added_n[k - 1]; t->added_id[k] = t->added_id[k - 1]; k--;
    }
    t->added[k] = gk_strdup(s); t->added_n[k] = n; t->added_id[k] = id; t->n_added++;
}

/* The specials every BERT vocabulary has; [UNK], [CLS] and [SEP] are required. */
static int wp_finish(wp_tokenizer *t, const char *what, gk_err *err) {
    t->unk = wp_token_id(t, "[UNK]"); t->cls = wp_token_id(t, "[CLS]"); t->sep = wp_token_id(t, "[SEP]");
    t->pad = wp_token_id(t, "[PAD]");
    if (t->pad < 0) t->pad = 0;
    const char *miss = t->unk < 0 ? "[UNK]" : t->cls < 0 ? "[CLS]" : t->sep < 0 ? "[SEP]" : NULL;
    if (miss) return gk_errf(err, "%s: the vocabulary has no %s token", what, miss);
    if (t->o.strip_accents < 0) t->o.strip_accents = t->o.lowercase;
    return 0;
}

wp_tokenizer *wp_from_vocab(const char *text, size_t n, const wp_options *o, const char *what, gk_err *err) {
    wp_tokenizer *t = gk_calloc(1, sizeof *t);
    if (o) t->o = *o; else wp_options_default(&t->o);
    size_t line = 0, pos = 0;
    while (pos < n) {
        size_t e = pos;
        while (e < n && text[e] != '\n') e++;
        size_t b = e;
        /* Rust's trim_end (HF tokenizers' vocab reader): trailing whitespace is not part of the token */
        while (b > pos && (text[b - 1] == '\r' || text[b - 1] == ' ' || text[b - 1] == '\t')) b--;
        size_t bad;
        if (!gk_utf8_valid(text + pos, b - pos, &bad)) {
            gk_errf(err, "%s:%zu: invalid UTF-8 at byte %zu", what, line + 1, bad);
            wp_free(t); return NULL;
        }
        if (line > INT32_MAX - 1) { gk_errf(err, "%s: too many lines", what); wp_free(t); return NULL; }
        wp_insert(t, text + pos, b - pos, (int32_t)line);
        line++; pos = e + 1;
    }
    static const char *const SPECIALS[] = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"};
    for (size_t i = 0; i < 5; i++) { int32_t id = wp_token_id(t, SPECIALS[i]); if (id >= 0) wp_add_added(t, SPECIALS[i], id); }
    if (wp_finish(t, what, err)) { wp_free(t); return NULL; }
    return t;
}

/* ---------------------------------------------------------------- tokenizer.json */
static int wp_json_bool(const cJSON *o, const char *key, int dflt, int *out, const char *what, gk_err *err) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v || cJSON_IsNull(v)) { *out = dflt; return 0; }
    if (!cJSON_IsBool(v)) return gk_errf(err, "%s: normalizer.%s: expected true, false or null", what, key);
    *out = cJSON_IsTrue(v);
    return 0;
}
static int wp_json_normalizer(wp_tokenizer *t, const cJSON *nz, const char *what, gk_err *err) {
    if (!nz || cJSON_IsNull(nz)) {   /* no normaliser at all: nothing changes the text */
        t->o.clean_text = t->o.chinese = t->o.lowercase = 0; t->o.strip_accents = 0; return 0;
    }
    const cJSON *ty = cJSON_GetObjectItemCaseSensitive(nz, "type");
    if (!cJSON_IsString(ty) || strcmp(ty->valuestring, "BertNormalizer"))
        return gk_errf(err, "%s: normalizer.type: only BertNormalizer is supported (got %s)", what,
                       cJSON_IsString(ty) ? ty->valuestring : "no type");
    if (wp_json_bool(nz, "clean_text", 1, &t->o.clean_text, what, err)) return -1;
    if (wp_json_bool(nz, "handle_chinese_chars", 1, &t->o.chinese, what, err)) return -1;
    if (wp_json_bool(nz, "lowercase", 1, &t->o.lowercase, what, err)) return -1;
    return wp_json_bool(nz, "strip_accents", -1, &t->o.strip_accents, what, err);
}
static int wp_json_model(wp_tokenizer *t, const cJSON *m, const char *what, gk_err *err) {
    const cJSON *ty = cJSON_GetObjectItemCaseSensitive(m, "type");
    if (!cJSON_IsObject(m) || !cJSON_IsString(ty) || strcmp(ty->valuestring, "WordPiece"))
        return gk_errf(err, "%s: model.type: expected \"WordPiece\"", what);
    const cJSON *pre = cJSON_GetObjectItemCaseSensitive(m, "continuing_subword_prefix");
    if (pre && !(cJSON_IsString(pre) && !strcmp(pre->valuestring, "##")))
        return gk_errf(err, "%s: model.continuing_subword_prefix: only \"##\" is supported", what);
    const cJSON *mx = cJSON_GetObjectItemCaseSensitive(m, "max_input_chars_per_word");
    if (mx) {
        if (!cJSON_IsNumber(mx) || mx->valuedouble < 1 || mx->valuedouble > 1e9)
            return gk_errf(err, "%s: model.max_input_chars_per_word: expected a positive integer", what);
        t->o.max_chars_per_word = (size_t)mx->valuedouble;
    }
    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(m, "vocab"), *e;
    if (!cJSON_IsObject(vocab)) return gk_errf(err, "%s: model.vocab: expected an object", what);
    cJSON_ArrayForEach(e, vocab) {
        if (!cJSON_IsNumber(e) || e->valuedouble < 0 || e->valuedouble > INT32_MAX - 1 || e->valuedouble != (int32_t)e->valuedouble)
            return gk_errf(err, "%s: model.vocab[\"%.40s\"]: expected a non-negative integer id", what, e->string);
        wp_insert(t, e->string, strlen(e->string), (int32_t)e->valuedouble);
    }
    return 0;
}
wp_tokenizer *wp_from_json(const char *text, size_t n, const char *what, gk_err *err) {
    wp_tokenizer *t = gk_calloc(1, sizeof *t);
    wp_options_default(&t->o);
    cJSON *root = cJSON_ParseWithLength(text, n);
    if (!root || !cJSON_IsObject(root)) { gk_errf(err, "%s: not a JSON object", what); goto fail; }
    if (wp_json_model(t, cJSON_GetObjectItemCaseSensitive(root, "model"), what, err)) goto fail;
    if (wp_json_normalizer(t, cJSON_GetObjectItemCaseSensitive(root, "normalizer"), what, err)) goto fail;
    const cJSON *pt = cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer");
    const cJSON *pty = cJSON_GetObjectItemCaseSensitive(pt, "type");
    if (pt && !cJSON_IsNull(pt) && !(cJSON_IsString(pty) && !strcmp(pty->valuestring, "BertPreTokenizer"))) {
        gk_errf(err, "%s: pre_tokenizer.type: only BertPreTokenizer is supported", what); goto fail;
    }
    const cJSON *added = cJSON_GetObjectItemCaseSensitive(root, "added_tokens"), *a;
    cJSON_ArrayForEach(a, added) {
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(a, "content"), *id = cJSON_GetObjectItemCaseSensitive(a, "id");
        if (!cJSON_IsString(c) || !cJSON_IsNumber(id) || id->valuedouble < 0 || id->valuedouble > INT32_MAX - 1) {
            gk_errf(err, "%s: added_tokens: each needs a string content and an id", what); goto fail;
        }
        wp_add_added(t, c->valuestring, (int32_t)id->valuedouble);
        if (wp_lookup(t, c->valuestring, strlen(c->valuestring)) < 0)
            wp_insert(t, c->valuestring, strlen(c->valuestring), (int32_t)id->valuedouble);
    }
    cJSON_Delete(root); root = NULL;
    if (wp_finish(t, what, err)) goto fail;
    return t;
fail:
    cJSON_Delete(root); wp_free(t);
    return NULL;
}

static int wp_cfg_bool(const cJSON *cfg, const char *key, int *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(cfg, key);
    if (cJSON_IsBool(v)) *out = cJSON_IsTrue(v);
    return 0;
}
wp_tokenizer *wp_load_dir(const char *dir, gk_err *err) {
    char *p = gk_path_join(dir, "tokenizer.json"), *data = NULL; size_t n;
    wp_tokenizer *t = NULL;
    if (gk_file_exists(p)) {
        if (gk_read_file(p, &data, &n, err) == 0) t = wp_from_json(data, n, p, err);
        free(data); free(p);
        return t;
    }
    free(p);
    wp_options o; wp_options_default(&o);
    p = gk_path_join(dir, "tokenizer_config.json");
    if (gk_file_exists(p) && gk_read_file(p, &data, &n, NULL) == 0) {
        cJSON *cfg = cJSON_ParseWithLength(data, n);
        if (!cfg) { gk_errf(err, "%s: not valid JSON", p); free(data); free(p); return NULL; }
        wp_cfg_bool(cfg, "do_lower_case", &o.lowercase);
        wp_cfg_bool(cfg, "strip_accents", &o.strip_accents);
        wp_cfg_bool(cfg, "tokenize_chinese_chars", &o.chinese);
        cJSON_Delete(cfg);
    }
    free(data); free(p); data = NULL;
    p = gk_path_join(dir, "vocab.txt");
    if (gk_read_file(p, &data, &n, err) == 0) t = wp_from_vocab(data, n, &o, p, err);
    else gk_err_prefix(err, "%s has neither tokenizer.json nor a readable vocab.txt", dir);
    free(data); free(p);
    return t;
}

/* ---------------------------------------------------------------- normalisation */
static uint8_t wp_ucls(uint32_t c) {
    size_t lo = 0, hi = wp_n_uranges;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (c < wp_uranges[mid].lo) hi = mid;
        else if (c > wp_uranges[mid].hi) lo = mid + 1;
        else return wp_uranges[mid].cls;
    }
    return 0;
}
static const wp_umap *wp_umap_find(const wp_umap *m, size_t n, uint32_t c) {
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (c < m[mid].cp) hi = mid; else if (c > m[mid].cp) lo = mid + 1; else return &m[mid];
    }
    return NULL;
}
/* BERT's _is_chinese_char: the CJK Unified Ideographs blocks (not Japanese kana or Korean hangul). */
static int wp_is_cjk(uint32_t c) {
    return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) || (c >= 0x20000 && c <= 0x2A6DF) ||
           (c >= 0x2A700 && c <= 0x2B73F) || (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B820 && c <= 0x2CEAF) ||
           (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

/* A normalised code point and the input bytes [a, b) it came from. */
typedef struct { uint32_t c, a, b; } wp_ch;
typedef struct { wp_ch *v; size_t n, cap; } wp_chars;
static void wp_chars_push(wp_chars *s, uint32_t c, uint32_t a, uint32_t b) {
    if (s->n == s->cap) { s->cap = s->cap ? 2 * s->cap : 256; s->v = gk_realloc(s->v, s->cap * sizeof *s->v); }
    s->v[s->n++] = (wp_ch){c, a, b};
}

static uint32_t wp_utf8_dec(const uint8_t *s, size_t *len) {   /* s is valid UTF-8 */
    if (s[0] < 0x80) { *len = 1; return s[0]; }
    if (s[0] < 0xE0) { *len = 2; return (uint32_t)(s[0] & 0x1F) << 6 | (s[1] & 0x3F); }
    if (s[0] < 0xF0) { *len = 3; return (uint32_t)(s[0] & 0x0F) << 12 | (uint32_t)(s[1] & 0x3F) << 6 | (s[2] & 0x3F); }
    *len = 4;
    return (uint32_t)(s[0] & 0x07) << 18 | (uint32_t)(s[1] & 0x3F) << 12 | (uint32_t)(s[2] & 0x3F) << 6 | (s[3] & 0x3F);
}
static size_t wp_utf8_enc(uint32_t c, char *o) {
    if (c < 0x80) { o[0] = (char)c; return 1; }
    if (c < 0x800) { o[0] = (char)(0xC0 | c >> 6); o[1] = (char)(0x80 | (c & 0x3F)); return 2; }
    if (c < 0x10000) { o[0] = (char)(0xE0 | c >> 12); o[1] = (char)(0x80 | (c >> 6 & 0x3F)); o[2] = (char)(0x80 | (c & 0x3F)); return 3; }
    o[0] = (char)(0xF0 | c >> 18); o[1] = (char)(0x80 | (c >> 12 & 0x3F)); o[2] = (char)(0x80 | (c >> 6 & 0x3F));
    o[3] = (char)(0x80 | (c & 0x3F));
    return 4;
}

/* lowercase one code point (after accent stripping, as BertNormalizer orders them) */
static void wp_push_lower(const wp_tokenizer *t, wp_chars *out, uint32_t c, uint32_t a, uint32_t b) {
    const wp_umap *m = t->o.lowercase ? wp_umap_find(wp_lower_map, wp_n_lower, c) : NULL;
    if (!m) { wp_chars_push(out, c, a, b); return; }
    for (uint32_t k = 0; k < m->n; k++) wp_chars_push(out, wp_lower_seq[m->off + k], a, b);
}
/* strip accents (NFD minus Mn), then lowercase */
static void wp_push_norm(const wp_tokenizer *t, wp_chars *out, uint32_t c, uint32_t a, uint32_t b) {
    if (!t->o.strip_accents) { wp_push_lower(t, out, c, a, b); return; }
    if (wp_ucls(c) & WP_U_MN) return;
    if (c >= 0xAC00 && c <= 0xD7A3) {   /* Hangul syllable: NFD is L V (T), computed not tabled */
        uint32_t s = c - 0xAC00;
        wp_chars_push(out, 0x1100 + s / 588, a, b);
        wp_chars_push(out, 0x1161 + (s % 588) / 28, a, b);
        if (s % 28) wp_chars_push(out, 0x11A7 + s % 28, a, b);
        return;
    }
    const wp_umap *m = wp_umap_find(wp_strip_map, wp_n_strip, c);
    if (!m) { wp_push_lower(t, out, c, a, b); return; }
    for (uint32_t k = 0; k < m->n; k++) wp_push_lower(t, out, wp_strip_seq[m->off + k], a, b);
}
/* BertNormalizer over s[a0..a1) (byte offsets into the original text) */
static void wp_normalize(const wp_tokenizer *t, const uint8_t *s, size_t a0, size_t a1, wp_chars *out) {
    out->n = 0;
    for (size_t i = a0; i < a1;) {
        size_t l; uint32_t c = wp_utf8_dec(s + i, &l);
        uint32_t a = (uint32_t)i, b = (uint32_t)(i + l);
        i += l;
        uint8_t k = wp_ucls(c);
        if (t->o.clean_text) {
            if (c == 0 || c == 0xFFFD || (k & WP_U_CONTROL)) continue;
            if (k & WP_U_SPACE) c = ' ';
        }
        if (t->o.chinese && wp_is_cjk(c)) {
            wp_chars_push(out, ' ', a, b); wp_push_norm(t, out, c, a, b); wp_chars_push(out, ' ', a, b);
            continue;
        }
        wp_push_norm(t, out, c, a, b);
    }
}

/* ---------------------------------------------------------------- WordPiece */
/* one word v[0..n): greedy longest match from the left; any failure makes the whole word [UNK] */
typedef struct { char *p; size_t cap; } wp_buf;

static void wp_word(const wp_tokenizer *t, const wp_ch *v, size_t n, wp_ids *out, wp_buf *wb) {
    if (n > t->o.max_chars_per_word) { wp_ids_push(out, t->unk, v[0].a, v[n - 1].b); return; }
    /* the word's UTF-8 and a candidate buffer ("##" + the rest): 4 bytes per code point at most each */
    if (8 * n + 4 > wb->cap) { wb->cap = 8 * n + 4; wb->p = gk_realloc(wb->p, wb->cap); }
    char *buf = wb->p;
    /* byte offset of each char inside the word's UTF-8 (after "##") */
    size_t mark = out->n, start = 0;
    size_t *off = gk_malloc((n + 1) * sizeof *off);
    size_t len = 0;
    for (size_t i = 0; i < n; i++) { off[i] = len; len += wp_utf8_enc(v[i].c, buf + len); }
    off[n] = len;
    /* cand: "##" + the rest of the word from start (only the first piece goes without the prefix) */
    char *cand = buf + len;
    while (start < n) {
        int32_t id = -1; size_t end = n, pre = start ? 2 : 0;
        cand[0] = '#'; cand[1] = '#';
        memcpy(cand + pre, buf + off[start], off[n] - off[start]);
        for (; end > start; end--) {
            id = wp_lookup(t, cand, pre + off[end] - off[start]);
            if (id >= 0) break;
        }
        if (id < 0) { out->n = mark; wp_ids_push(out, t->unk, v[0].a, v[n - 1].b); break; }
        wp_ids_push(out, id, v[start].a, v[end - 1].b);
        start = end;
    }
    free(off);
}
/* BertPreTokenizer over normalised chars, then WordPiece per word */
static void wp_pieces(const wp_tokenizer *t, const wp_chars *cs, wp_ids *out, wp_buf *buf) {
    size_t w0 = 0;
    for (size_t i = 0; i <= cs->n; i++) {
        uint8_t k = i < cs->n ? wp_ucls(cs->v[i].c) : WP_U_SPACE;
        int sp = (k & WP_U_SPACE) != 0, pu = !sp && (k & WP_U_PUNCT) != 0;
        if (!sp && !pu) continue;
        if (i > w0) wp_word(t, cs->v + w0, i - w0, out, buf);
        if (pu) wp_word(t, cs->v + i, 1, out, buf);
        w0 = i + 1;
    }
}

/* the added token starting at s[i], longest first: its index, or -1 */
static long wp_added_at(const wp_tokenizer *t, const char *s, size_t n, size_t i) {
    for (size_t k = 0; k < t->n_added; k++)
        if (t->added_n[k] <= n - i && !memcmp(s + i, t->added[k], t->added_n[k])) return (long)k;
    return -1;
}

int wp_encode(const wp_tokenizer *t, const char *s, size_t n, int specials, size_t max_len, wp_ids *out, gk_err *err) {
    out->n = 0;
    size_t bad;
    if (!gk_utf8_valid(s, n, &bad)) return gk_errf(err, "invalid UTF-8 at byte %zu", bad);
    if (n > UINT32_MAX / 2) return gk_errf(err, "text of %zu bytes is too long (4 GB at most)", n);
    if (specials) wp_ids_push(out, t->cls, 0, 0);
    wp_chars cs = {0};
    wp_buf buf = {0};
    size_t seg = 0;
    for (size_t i = 0; i <= n;) {
        long k = i < n ? wp_added_at(t, s, n, i) : -1;
        if (i < n && k < 0) { i++; continue; }
        wp_normalize(t, (const uint8_t *)s, seg, i, &cs);
        wp_pieces(t, &cs, out, &buf);
        if (i == n) break;
        wp_ids_push(out, t->added_id[k], (uint32_t)i, (uint32_t)(i + t->added_n[k]));
        i += t->added_n[k]; seg = i;
    }
    free(buf.p); free(cs.v);
    if (specials) {
        if (max_len >= 2 && out->n + 1 > max_len) out->n = max_len - 1;
        wp_ids_push(out, t->sep, (uint32_t)n, (uint32_t)n);
    } else if (max_len && out->n > max_len) out->n = max_len;
    return 0;
}
