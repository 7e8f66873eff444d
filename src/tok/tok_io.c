/* tok_io.c: loading and saving tokenizers.
 *
 *  - .tiktoken rank files: one "base64(token bytes) SP rank" per line (tiktoken's format);
 *  - GPT-2's encoder.json (token string -> id, bytes spelled with GPT-2's byte-to-unicode map) + vocab.bpe
 *    (merge list); validated like tiktoken's data_gym loader: merge i must produce id 256 + i and every
 *    multi-byte token must come from a merge;
 *  - our saved format: PATH.tiktoken + PATH.json {"name", "pattern", "special_tokens": {text: id}}.
 * Every error names the file and line. */
#include "tok/tok_internal.h"
#include "model/model.h"   /* the GGUF reader (tok_load_gguf) */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdlib.h>

/* ---------------------------------------------------------------- helpers */
static int ends_with(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcmp(s + a - b, suf);
}
static const char *base_name(const char *p) { const char *s = strrchr(p, '/'); return s ? s + 1 : p; }

static char *strip_suffix(const char *p, const char *suf) {
    char *s = gk_strdup(p);
    if (ends_with(s, suf)) s[strlen(s) - strlen(suf)] = 0;
    return s;
}

/* ---------------------------------------------------------------- .tiktoken */
static tok_tokenizer *load_tiktoken(const char *path, const char *name, int pat, gk_err *err) {
    char *data; size_t len;
    if (gk_read_file(path, &data, &len, err)) return NULL;
    tok_tokenizer *t = tok_new_empty(name, pat);
    uint8_t *buf = NULL; size_t bufcap = 0;
    size_t pos = 0, line = 0;
    while (pos < len) {
        line++;
        size_t e = pos;
        while (e < len && data[e] != '\n') e++;
        size_t le = e;
        if (le > pos && data[le - 1] == '\r') le--;
        const char *l = data + pos;
        size_t ll = le - pos;
        pos = e + 1;
        if (ll == 0) continue;
        const char *sp = memchr(l, ' ', ll);
        if (!sp) { gk_errf(err, "%s:%zu: expected \"base64 rank\", found no space", path, line); goto fail; }
        size_t bl = (size_t)(sp - l);
        if (bl / 4 * 3 + 3 > bufcap) { bufcap = bl / 4 * 3 + 3; buf = gk_realloc(buf, bufcap); }
        size_t nb;
        if (gk_b64_decode(l, bl, buf, &nb)) { gk_errf(err, "%s:%zu: bad base64 token \"%.*s\"", path, line, (int)(bl > 60 ? 60 : bl), l); goto fail; }
        char num[32]; size_t nl = ll - bl - 1;
        if (nl == 0 || nl >= sizeof num) { gk_errf(err, "%s:%zu: bad rank", path, line); goto fail; }
        memcpy(num, sp + 1, nl); num[nl] = 0;
        long r;
        if (gk_parse_long(num, &r) || r < 0 || r >= (1L << 24)) { gk_errf(err, "%s:%zu: bad rank \"%s\" (want an integer in 0..16777215)", path, line, num); goto fail; }
        int rc = tok_add_rank(t, buf, nb, (int32_t)r);
        if (rc == 1) { gk_errf(err, "%s:%zu: duplicate rank %ld", path, line, r); goto fail; }
        if (rc == 2) { gk_errf(err, "%s:%zu: duplicate token (its bytes already have rank %d)", path, line, (int)tok_rank(t, buf, nb)); goto fail; }
    }
    if (t->n_ranks == 0) { gk_errf(err, "%s: no tokens in rank file", path); goto fail; }
    if (tok_finish_ranks(t, path, err)) goto fail;
    free(buf); free(data);
    return t;
fail:
    free(buf); free(data); tok_free(t);
    return NULL;
}

/* ---------------------------------------------------------------- GPT-2 encoder.json + vocab.bpe */
/* GPT-2's bytes_to_unicode: printable Latin-1 bytes map to themselves, the other 68 to U+0100.. in order. */
static void gpt2_byte_map(int32_t byte_to_cp[256], int16_t cp_to_byte[324]) {
    int n = 0;
    for (int i = 0; i < 324; i++) cp_to_byte[i] = -1;
    for (int b = 0; b < 256; b++) {
        int keep = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
        byte_to_cp[b] = keep ? b : 256 + n++;
        cp_to_byte[byte_to_cp[b]] = (int16_t)b;
    }
}

/* Decodes a GPT-2 token string (UTF-8 of mapped code points) to bytes. -1 if a character is not in the map. */
static int gpt2_unmap(const int16_t cp_to_byte[324], const char *s, size_t n, uint8_t *out, size_t *outn) {
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        uint8_t c = (uint8_t)s[i];
        uint32_t cp;
        if (c < 0x80) { cp = c; i++; }
        else if ((c & 0xE0) == 0xC0 && i + 1 < n) { cp = ((uint32_t)(c & 0x1F) << 6) | ((uint8_t)s[i + 1] & 0x3F); i += 2; }
        else return -1;
        if (cp >= 324 || cp_to_byte[cp] < 0) return -1;
        out[o++] = (uint8_t)cp_to_byte[cp];
    }
    *outn = o;
    return 0;
}

static tok_tokenizer *load_gpt2_dir(const char *dir, gk_err *err) {
    char *ej = gk_path_join(dir, "encoder.json"), *vb = gk_path_join(dir, "vocab.bpe");
    char *jdata = NULL, *bdata = NULL; size_t jlen, blen;
    cJSON *root = NULL;
    tok_tokenizer *t = NULL;
    uint8_t *buf = NULL;
    int32_t b2c[256]; int16_t c2b[324];
    gpt2_byte_map(b2c, c2b);
    if (gk_read_file(ej, &jdata, &jlen, err) || gk_read_file(vb, &bdata, &blen, err)) goto fail;
    root = cJSON_ParseWithLength(jdata, jlen);
    if (!root || !cJSON_IsObject(root)) { gk_errf(err, "%s: not a JSON object (error near byte %td)", ej, root ? 0 : cJSON_GetErrorPtr() - jdata); goto fail; }
    t = tok_new_empty("gpt2", TOK_PAT_GPT2);
    buf = gk_malloc(jlen + 1);
    size_t nent = 0;
    for (cJSON *it = root->child; it; it = it->next) {
        nent++;
        if (!cJSON_IsNumber(it) || it->valuedouble < 0 || it->valuedouble >= (1 << 24) || it->valuedouble != (double)(int)it->valuedouble) {
            gk_errf(err, "%s: entry %zu (\"%.40s\"): id must be a non-negative integer", ej, nent, it->string); goto fail;
        }
        int32_t id = (int32_t)it->valuedouble;
        if (!strcmp(it->string, "<|endoftext|>") || !strcmp(it->string, "<|startoftext|>")) {
            if (tok_add_special(t, it->string, id, err) < 0) { gk_err_prefix(err, "%s", ej); goto fail; }
            continue;
        }
        size_t nb;
        if (gpt2_unmap(c2b, it->string, strlen(it->string), buf, &nb) || nb == 0) {
            gk_errf(err, "%s: entry %zu (\"%.40s\"): not a GPT-2 byte-mapped token string", ej, nent, it->string); goto fail;
        }
        int rc = tok_add_rank(t, buf, nb, id);
        if (rc == 1) { gk_errf(err, "%s: entry %zu (\"%.40s\"): duplicate id %d", ej, nent, it->string, (int)id); goto fail; }
        if (rc == 2) { gk_errf(err, "%s: entry %zu (\"%.40s\"): duplicate token", ej, nent, it->string); goto fail; }
    }
    if (tok_finish_ranks(t, ej, err)) goto fail;
    /* vocab.bpe: "#version" line, then "A B" per line; merge i must give id 256 + i */
    size_t pos = 0, line = 0, merges = 0;
    uint8_t *pa = gk_malloc(blen + 1);
    while (pos < blen) {
        line++;
        size_t e = pos;
        while (e < blen && bdata[e] != '\n') e++;
        size_t le = e;
        if (le > pos && bdata[le - 1] == '\r') le--;
        const char *l = bdata + pos; size_t ll = le - pos;
        pos = e + 1;
        if (ll == 0 || (line == 1 && l[0] == '#')) continue;
        const char *sp = memchr(l, ' ', ll);
        size_t na, nb2;
        if (!sp || sp == l || sp + 1 == l + ll) { gk_errf(err, "%s:%zu: expected \"A B\" (two tokens separated by a space)", vb, line); free(pa); goto fail; }
        if (gpt2_unmap(c2b, l, (size_t)(sp - l), pa, &na) || gpt2_unmap(c2b, sp + 1, (size_t)(l + ll - sp - 1), pa + na, &nb2)) {
            gk_errf(err, "%s:%zu: not GPT-2 byte-mapped token strings", vb, line); free(pa); goto fail;
        }
        if (tok_rank(t, pa, na) < 0 || tok_rank(t, pa + na, nb2) < 0) {
            gk_errf(err, "%s:%zu: merge \"%.*s\": a part is not a token in encoder.json", vb, line, (int)ll, l); free(pa); goto fail;
        }
        int32_t r = tok_rank(t, pa, na + nb2);
        if (r < 0) { gk_errf(err, "%s:%zu: merge \"%.*s\": the merged token is not in encoder.json", vb, line, (int)ll, l); free(pa); goto fail; }
        if ((size_t)r != 256 + merges) {
            gk_errf(err, "%s:%zu: merge \"%.*s\" gives id %d in encoder.json; merge number %zu should give %zu",
                    vb, line, (int)ll, l, (int)r, merges, 256 + merges); free(pa); goto fail;
        }
        merges++;
    }
    free(pa);
    if (merges + 256 != t->n_ranks) {
        /* name the first multi-byte token no merge produced */
        int32_t first = (int32_t)(256 + merges);
        while ((size_t)first < t->vocab_size && t->kind[first] != TOK_KIND_RANK) first++;
        gk_errf(err, "%s: missing merges: encoder.json has %zu tokens beyond the 256 bytes but vocab.bpe has %zu merges "
                "(first token without a merge: id %d)", vb, t->n_ranks - 256, merges, (int)first);
        goto fail;
    }
    free(buf); cJSON_Delete(root); free(jdata); free(bdata); free(ej); free(vb);
    return t;
fail:
    free(buf); cJSON_Delete(root); free(jdata); free(bdata); free(ej); free(vb); tok_free(t);
    return NULL;
}

/* ---------------------------------------------------------------- HF tokenizer.json (byte-level BPE)
 * model {"type": "BPE", "vocab": {token: id}, "merges": ["a b", ...] or [["a", "b"], ...]} with tokens spelled in
 * GPT-2's byte-to-unicode map; added_tokens [{id, content, special}] (all matched in text, as HF does); the
 * pre-tokenizer decides the split pattern:
 *   ByteLevel(use_regex)                                    GPT-2's pattern
 *   Sequence[Split(Regex P, Isolated), ByteLevel(no regex)]  P (LLaMA 3 = cl100k's, Qwen2's, ...; PCRE2 if not native)
 *   Sequence[Digits(individual), ByteLevel(use_regex)]       GPT-2's pattern with every digit its own piece (SmolLM)
 * Anything else (a normalizer, other pre-tokenizers, non-byte-level models) is refused by name.
 * Encoding uses gptkit's rank BPE with rank = id, which equals HF's merge-priority BPE when every merged token
 * has a merge and merges come in id order: both are checked. */
static const char hf_digits_gpt2_pattern[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

/* The split pattern a tokenizer.json pre_tokenizer means, or NULL with err. */
static const char *hf_pattern(const cJSON *pt, const char *path, gk_err *err) {
    const cJSON *ty = cJSON_GetObjectItemCaseSensitive(pt, "type");
    const char *type = cJSON_IsString(ty) ? ty->valuestring : "?";
    if (!strcmp(type, "ByteLevel")) {
        if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(pt, "add_prefix_space")))
            return gk_errf(err, "%s: pre_tokenizer ByteLevel with add_prefix_space is not supported", path), NULL;
        if (cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(pt, "use_regex")))
            return gk_errf(err, "%s: pre_tokenizer ByteLevel without a split regex is not supported", path), NULL;
        return tok_pattern_gpt2;
    }
    if (!strcmp(type, "Sequence")) {
        const cJSON *seq = cJSON_GetObjectItemCaseSensitive(pt, "pretokenizers");
        const cJSON *a = cJSON_GetArrayItem(seq, 0), *b = cJSON_GetArrayItem(seq, 1);
        const cJSON *at = cJSON_GetObjectItemCaseSensitive(a, "type"), *bt = cJSON_GetObjectItemCaseSensitive(b, "type");
        if (cJSON_GetArraySize(seq) == 2 && cJSON_IsString(at) && cJSON_IsString(bt) && !strcmp(bt->valuestring, "ByteLevel")) {
            int b_regex = !cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(b, "use_regex"));
            if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(b, "add_prefix_space")))
                return gk_errf(err, "%s: pre_tokenizer ByteLevel with add_prefix_space is not supported", path), NULL;
            if (!strcmp(at->valuestring, "Split") && !b_regex) {
                const cJSON *pat = cJSON_GetObjectItemCaseSensitive(a, "pattern");
                const cJSON *re = cJSON_GetObjectItemCaseSensitive(pat, "Regex");
                const cJSON *beh = cJSON_GetObjectItemCaseSensitive(a, "behavior");
                if (cJSON_IsString(re) && cJSON_IsString(beh) && !strcmp(beh->valuestring, "Isolated") &&
                    !cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(a, "invert")))
                    return re->valuestring;
            }
            if (!strcmp(at->valuestring, "Digits") && b_regex &&
                cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(a, "individual_digits")))
                return hf_digits_gpt2_pattern;
        }
    }
    return gk_errf(err, "%s: pre_tokenizer \"%s\" is not supported (byte-level BPE with ByteLevel, Split(regex) + "
                   "ByteLevel, or Digits + ByteLevel only)", path, type), NULL;
}

/* A byte-level BPE vocabulary given as lists (from tokenizer.json or GGUF's tokenizer.ggml.*): ordinary tokens
 * (byte-mapped strings) with their ids, merges as (a, b) byte-mapped string pairs in priority order, special
 * tokens with their ids. Checks that rank-by-id BPE equals merge-priority BPE (see above). */
typedef struct { const char *s; size_t n; int32_t id; } bpe_tok;
typedef struct { const char *a; size_t an; const char *b; size_t bn; } bpe_merge;

static tok_tokenizer *build_bpe(const char *what, const char *name, const char *pattern, const bpe_tok *toks, size_t nt,
                                const bpe_merge *merges, size_t nm, const bpe_tok *spec, size_t ns, gk_err *err) {
    int32_t b2c[256]; int16_t c2b[324];
    gpt2_byte_map(b2c, c2b);
    tok_tokenizer *t = tok_new_empty(name, TOK_PAT_GPT2);
    uint8_t *buf = NULL, *made = NULL;
    if (tok_set_pattern(t, pattern, err)) { gk_err_prefix(err, "%s", what); goto fail; }
    size_t maxl = 16;
    for (size_t i = 0; i < nt; i++) if (toks[i].n > maxl) maxl = toks[i].n;
    for (size_t i = 0; i < nm; i++) if (merges[i].an + merges[i].bn > maxl) maxl = merges[i].an + merges[i].bn;
    buf = gk_malloc(maxl + 1);
    for (size_t i = 0; i < nt; i++) {
        size_t nb;
        if (toks[i].id < 0 || toks[i].id >= (1 << 24)) { gk_errf(err, "%s: token %zu has id %d", what, i, (int)toks[i].id); goto fail; }
        if (gpt2_unmap(c2b, toks[i].s, toks[i].n, buf, &nb) || nb == 0) {
            gk_errf(err, "%s: token %d (\"%.*s\"): not a byte-level token string", what, (int)toks[i].id,
                    (int)(toks[i].n < 40 ? toks[i].n : 40), toks[i].s);
            goto fail;
        }
        int rc = tok_add_rank(t, buf, nb, toks[i].id);
        if (rc == 1) { gk_errf(err, "%s: duplicate id %d", what, (int)toks[i].id); goto fail; }
        if (rc == 2) { gk_errf(err, "%s: token %d (\"%.*s\") duplicates another", what, (int)toks[i].id, (int)(toks[i].n < 40 ? toks[i].n : 40), toks[i].s); goto fail; }
    }
    if (tok_finish_ranks(t, what, err)) goto fail;
    made = gk_calloc(t->vocab_size ? t->vocab_size : 1, 1);
    int32_t last = -1;
    for (size_t mi = 0; mi < nm; mi++) {
        const bpe_merge *m = &merges[mi];
        size_t na, nb2;
        if (gpt2_unmap(c2b, m->a, m->an, buf, &na) || gpt2_unmap(c2b, m->b, m->bn, buf + na, &nb2)) {
            gk_errf(err, "%s: merges[%zu] is not a pair of byte-level token strings", what, mi); goto fail;
        }
        int32_t r = tok_rank(t, buf, na + nb2);
        if (tok_rank(t, buf, na) < 0 || tok_rank(t, buf + na, nb2) < 0 || r < 0) {
            gk_errf(err, "%s: merges[%zu] (\"%.*s\" + \"%.*s\"): a part or the result is not in the vocabulary", what, mi,
                    (int)m->an, m->a, (int)m->bn, m->b);
            goto fail;
        }
        if (made[r]) continue;   /* a second merge to the same token: the rank order already holds */
        if (r <= last) {
            gk_errf(err, "%s: merges[%zu] makes id %d after a merge made id %d: merges out of id order are not supported",
                    what, mi, (int)r, (int)last);
            goto fail;
        }
        made[r] = 1; last = r;
    }
    for (size_t id = 0; id < t->vocab_size; id++)
        if (t->kind[id] == TOK_KIND_RANK && t->len[id] > 1 && !made[id]) {
            gk_errf(err, "%s: vocabulary token %zu has no merge making it (not supported)", what, id);
            goto fail;
        }
    for (size_t i = 0; i < ns; i++) {
        char *txt = gk_malloc(spec[i].n + 1);
        memcpy(txt, spec[i].s, spec[i].n); txt[spec[i].n] = 0;
        int32_t rc = tok_add_special(t, txt, spec[i].id, err);
        free(txt);
        if (rc < 0) { gk_err_prefix(err, "%s", what); goto fail; }
    }
    t->hf = 1;
    free(buf); free(made);
    return t;
fail:
    free(buf); free(made); tok_free(t);
    return NULL;
}

static tok_tokenizer *load_hf_json(const char *path, gk_err *err) {
    char *data = NULL; size_t len = 0;
    if (gk_read_file(path, &data, &len, err)) return NULL;
    cJSON *root = cJSON_ParseWithLength(data, len);
    tok_tokenizer *t = NULL;
    bpe_tok *toks = NULL, *spec = NULL;
    bpe_merge *mg = NULL;
    int32_t *add_id = NULL;
    const cJSON *model = root ? cJSON_GetObjectItemCaseSensitive(root, "model") : NULL;
    const cJSON *mty = cJSON_GetObjectItemCaseSensitive(model, "type");
    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab"), *merges = cJSON_GetObjectItemCaseSensitive(model, "merges");
    if (!cJSON_IsObject(model) || !cJSON_IsString(mty) || strcmp(mty->valuestring, "BPE") || !cJSON_IsObject(vocab) ||
        !cJSON_IsArray(merges)) {
        gk_errf(err, "%s: not a byte-level BPE tokenizer.json (want model.type \"BPE\" with vocab and merges)", path);
        goto done;
    }
    const cJSON *norm = cJSON_GetObjectItemCaseSensitive(root, "normalizer");
    if (norm && !cJSON_IsNull(norm)) { gk_errf(err, "%s: a normalizer is not supported (byte-level BPE has none)", path); goto done; }
    const cJSON *pt = cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer");
    const char *pattern = cJSON_IsObject(pt) ? hf_pattern(pt, path, err) : NULL;
    if (!pattern) { if (!cJSON_IsObject(pt)) gk_errf(err, "%s: no pre_tokenizer (byte-level BPE needs one)", path); goto done; }
    /* added tokens: special ids, not ranks, even where vocab lists them too */
    const cJSON *added = cJSON_GetObjectItemCaseSensitive(root, "added_tokens");
    size_t nadd = (size_t)cJSON_GetArraySize(added), k = 0;
    add_id = gk_calloc(nadd ? nadd : 1, sizeof *add_id);
    spec = gk_calloc(nadd ? nadd : 1, sizeof *spec);
    for (const cJSON *a = cJSON_IsArray(added) ? added->child : NULL; a; a = a->next, k++) {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(a, "id"), *ct = cJSON_GetObjectItemCaseSensitive(a, "content");
        if (!cJSON_IsNumber(id) || id->valuedouble < 0 || id->valuedouble >= (1 << 24) || !cJSON_IsString(ct)) {
            gk_errf(err, "%s: added_tokens[%zu] needs an integer id and a content string", path, k); goto done;
        }
        add_id[k] = (int32_t)id->valuedouble;
        spec[k] = (bpe_tok){ct->valuestring, strlen(ct->valuestring), add_id[k]};
    }
    size_t nv = (size_t)cJSON_GetArraySize(vocab), nt = 0, nent = 0;
    toks = gk_calloc(nv ? nv : 1, sizeof *toks);
    for (cJSON *it = vocab->child; it; it = it->next) {
        nent++;
        if (!cJSON_IsNumber(it) || it->valuedouble < 0 || it->valuedouble >= (1 << 24) || it->valuedouble != (double)(int)it->valuedouble) {
            gk_errf(err, "%s: vocab entry %zu (\"%.40s\"): id must be a non-negative integer", path, nent, it->string); goto done;
        }
        int32_t id = (int32_t)it->valuedouble;
        int is_added = 0;
        for (size_t i = 0; i < nadd; i++) is_added |= add_id[i] == id;
        if (!is_added) toks[nt++] = (bpe_tok){it->string, strlen(it->string), id};
    }
    size_t nm = (size_t)cJSON_GetArraySize(merges), mi = 0;
    mg = gk_calloc(nm ? nm : 1, sizeof *mg);
    for (const cJSON *m = merges->child; m; m = m->next, mi++) {
        bpe_merge *g = &mg[mi];
        if (cJSON_IsString(m)) {
            const char *sp = strchr(m->valuestring, ' ');
            if (sp) { g->a = m->valuestring; g->an = (size_t)(sp - g->a); g->b = sp + 1; g->bn = strlen(g->b); }
        } else if (cJSON_IsArray(m) && cJSON_GetArraySize(m) == 2 && cJSON_IsString(m->child) && cJSON_IsString(m->child->next)) {
            g->a = m->child->valuestring; g->an = strlen(g->a); g->b = m->child->next->valuestring; g->bn = strlen(g->b);
        }
        if (!g->a) { gk_errf(err, "%s: merges[%zu] is not a pair of token strings", path, mi); goto done; }
    }
    const char *b = base_name(path);
    t = build_bpe(path, strcmp(b, "tokenizer.json") ? b : "hf-bpe", pattern, toks, nt, mg, nm, spec, nadd, err);
done:
    free(toks); free(spec); free(mg); free(add_id);
    cJSON_Delete(root); free(data);
    return t;
}

/* ---------------------------------------------------------------- GGUF's tokenizer.ggml.* (model "gpt2") */
/* tokens (byte-level strings, index = id), token_type (3 control, 4 user-defined: special tokens, matched in
 * text), merges ("a b"), and pre naming the split: llama-bpe / llama3 (LLaMA 3's regex), qwen2, smollm (digits
 * alone, then GPT-2's), gpt-2. The "llama" (SentencePiece) model and other pre-tokenizers are refused by name. */
static const char hf_llama3_pattern[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
static const char hf_qwen2_pattern[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

/* A string array's elements (pointers into the file). */
static int gguf_strs(const gguf_file *g, const char *key, bpe_tok **out, size_t *n, gk_err *err) {
    const gguf_kv *kv = gguf_find_kv(g, key);
    *out = NULL; *n = 0;
    if (!kv) return 1;
    uint32_t et; uint64_t cnt;
    const uint8_t *p = g->data + kv->at;
    if (kv->type != 9) return gk_errf(err, "%s: %s is not an array", g->path, key);
    memcpy(&et, p, 4); memcpy(&cnt, p + 4, 8);
    if (et != 8) return gk_errf(err, "%s: %s is not an array of strings", g->path, key);
    p += 12;
    *out = gk_calloc(cnt ? cnt : 1, sizeof **out);   /* parse validated: cnt strings fit in [at, end) */
    for (uint64_t i = 0; i < cnt; i++) {
        uint64_t l;
        memcpy(&l, p, 8);
        (*out)[i] = (bpe_tok){(const char *)p + 8, (size_t)l, (int32_t)i};
        p += 8 + l;
    }
    *n = (size_t)cnt;
    return 0;
}

tok_tokenizer *tok_load_gguf(const char *path, gk_err *err) {
    gguf_file g;
    if (gguf_open(&g, path, err)) return NULL;
    tok_tokenizer *t = NULL;
    bpe_tok *all = NULL, *merges_s = NULL, *toks = NULL, *spec = NULL;
    bpe_merge *mg = NULL;
    size_t n = 0, nm = 0;
    gguf_str model, pre = {"default", 7};
    if (gguf_get_str(&g, "tokenizer.ggml.model", &model)) { gk_errf(err, "%s: has no tokenizer (tokenizer.ggml.model)", path); goto done; }
    if (!(model.n == 4 && !memcmp(model.p, "gpt2", 4))) {
        gk_errf(err, "%s: tokenizer model \"%.*s\" is not supported (only \"gpt2\", byte-level BPE)", path, (int)model.n, model.p);
        goto done;
    }
    gguf_get_str(&g, "tokenizer.ggml.pre", &pre);
    const char *pattern = NULL;
#define PRE(s) (pre.n == strlen(s) && !memcmp(pre.p, s, pre.n))
    if (PRE("llama-bpe") || PRE("llama3")) pattern = hf_llama3_pattern;
    else if (PRE("qwen2")) pattern = hf_qwen2_pattern;
    else if (PRE("smollm")) pattern = hf_digits_gpt2_pattern;
    else if (PRE("gpt-2") || PRE("gpt2")) pattern = tok_pattern_gpt2;
#undef PRE
    if (!pattern) { gk_errf(err, "%s: pre-tokenizer \"%.*s\" is not supported (llama-bpe, qwen2, smollm, gpt-2)", path, (int)pre.n, pre.p); goto done; }
    if (gguf_strs(&g, "tokenizer.ggml.tokens", &all, &n, err)) { if (!all) gk_errf(err, "%s: no tokenizer.ggml.tokens", path); goto done; }
    if (gguf_strs(&g, "tokenizer.ggml.merges", &merges_s, &nm, err) < 0) goto done;
    const gguf_kv *tt = gguf_find_kv(&g, "tokenizer.ggml.token_type");
    const int32_t *types = NULL;
    if (tt) {
        uint32_t et; uint64_t cnt;
        memcpy(&et, g.data + tt->at, 4); memcpy(&cnt, g.data + tt->at + 4, 8);
        if (tt->type != 9 || et != 5 || cnt != n) { gk_errf(err, "%s: tokenizer.ggml.token_type must be %zu int32s", path, n); goto done; }
        types = (const int32_t *)(g.data + tt->at + 12);
    }
    toks = gk_calloc(n ? n : 1, sizeof *toks);
    spec = gk_calloc(n ? n : 1, sizeof *spec);
    size_t nt = 0, ns = 0;
    for (size_t i = 0; i < n; i++) {
        int32_t ty = 1;
        if (types) memcpy(&ty, (const uint8_t *)types + 4 * i, 4);
        if (ty == 3 || ty == 4) spec[ns++] = all[i];
        else if (ty != 5) toks[nt++] = all[i];   /* unused slots stay gaps */
    }
    mg = gk_calloc(nm ? nm : 1, sizeof *mg);
    for (size_t i = 0; i < nm; i++) {
        const char *sp = memchr(merges_s[i].s, ' ', merges_s[i].n);
        if (!sp) { gk_errf(err, "%s: tokenizer.ggml.merges[%zu] is not \"a b\"", path, i); goto done; }
        mg[i] = (bpe_merge){merges_s[i].s, (size_t)(sp - merges_s[i].s), sp + 1, merges_s[i].n - (size_t)(sp - merges_s[i].s) - 1};
    }
    t = build_bpe(path, base_name(path), pattern, toks, nt, mg, nm, spec, ns, err);
done:
    free(all); free(merges_s); free(toks); free(spec); free(mg);
    gguf_close(&g);
    return t;
}

/* ---------------------------------------------------------------- export for GGUF */

/* The merge that makes token r (bytes p[0..n)): rank BPE on its bytes using only tokens of lower rank ends in
 * two parts; *split = the first part's length. -1 if it does not (not a BPE-reachable token). */
static int merge_of(const tok_tokenizer *t, const uint8_t *p, size_t n, int32_t r, size_t *split) {
    size_t *cut = gk_malloc((n + 1) * sizeof *cut), k = n;   /* part i = [cut[i], cut[i+1]) */
    for (size_t i = 0; i <= n; i++) cut[i] = i;
    while (k > 2) {
        int32_t best = -1; size_t bi = 0;
        for (size_t i = 0; i + 1 < k; i++) {
            int32_t q = tok_rank(t, p + cut[i], cut[i + 2] - cut[i]);
            if (q >= 0 && q < r && (best < 0 || q < best)) { best = q; bi = i; }
        }
        if (best < 0) break;
        memmove(cut + bi + 1, cut + bi + 2, (k - bi - 1) * sizeof *cut);
        k--;
    }
    int ok = k == 2;
    *split = cut[1];
    free(cut);
    return ok ? 0 : -1;
}

/* The byte-level lists (tokens, types, merges) of tok_export_bpe, whatever the split pattern. */
static int export_lists(const tok_tokenizer *t, tok_bpe_export *x, gk_err *err) {
    memset(x, 0, sizeof *x);
    int32_t b2c[256]; int16_t c2b[324];
    gpt2_byte_map(b2c, c2b);
    size_t n = t->vocab_size;
    x->n = n;
    x->tokens = gk_calloc(n ? n : 1, sizeof *x->tokens);
    x->lens = gk_calloc(n ? n : 1, sizeof *x->lens);
    x->types = gk_calloc(n ? n : 1, sizeof *x->types);
    x->merges = gk_calloc(n ? n : 1, sizeof *x->merges);
    x->mlens = gk_calloc(n ? n : 1, sizeof *x->mlens);
    char *tmp = NULL;
    /* byte-mapped spelling: each byte becomes one code point < 324, at most 2 UTF-8 bytes */
    for (size_t id = 0; id < n; id++) {
        if (t->kind[id] == TOK_KIND_GAP) {
            char b[32];
            int l = snprintf(b, sizeof b, "[PAD%zu]", id);
            x->tokens[id] = gk_strdup(b); x->lens[id] = (size_t)l; x->types[id] = 5;
            continue;
        }
        const uint8_t *p = t->arena + t->off[id];
        size_t len = t->len[id];
        if (t->kind[id] == TOK_KIND_SPECIAL) {
            x->tokens[id] = gk_malloc(len + 1); memcpy(x->tokens[id], p, len); x->tokens[id][len] = 0;
            x->lens[id] = len; x->types[id] = 3;
            continue;
        }
        char *s = gk_malloc(2 * len + 1);
        size_t o = 0;
        for (size_t i = 0; i < len; i++) {
            uint32_t cp = (uint32_t)b2c[p[i]];
            if (cp < 0x80) s[o++] = (char)cp;
            else { s[o++] = (char)(0xC0 | (cp >> 6)); s[o++] = (char)(0x80 | (cp & 0x3F)); }
        }
        s[o] = 0;
        x->tokens[id] = s; x->lens[id] = o; x->types[id] = 1;
    }
    /* merges in rank (= id) order */
    for (size_t id = 0; id < n; id++) {
        if (t->kind[id] != TOK_KIND_RANK || t->len[id] < 2) continue;
        size_t split;
        const uint8_t *p = t->arena + t->off[id];
        if (merge_of(t, p, t->len[id], (int32_t)id, &split)) {
            free(tmp);
            tok_bpe_export_free(x);
            return gk_errf(err, "tokenizer %s: token %zu is not made by a merge of lower-ranked tokens", t->name, id);
        }
        int32_t a = tok_rank(t, p, split), b = tok_rank(t, p + split, t->len[id] - split);
        size_t la = x->lens[a], lb = x->lens[b];
        char *m = gk_malloc(la + lb + 2);
        memcpy(m, x->tokens[a], la); m[la] = ' '; memcpy(m + la + 1, x->tokens[b], lb); m[la + lb + 1] = 0;
        x->merges[x->nm] = m; x->mlens[x->nm] = la + lb + 1; x->nm++;
    }
    free(tmp);
    return 0;
}

int tok_export_bpe(const tok_tokenizer *t, tok_bpe_export *x, gk_err *err) {
    memset(x, 0, sizeof *x);
    const char *pre;
    if (t->pat == TOK_PAT_CL100K || !strcmp(t->pattern, hf_llama3_pattern)) pre = "llama-bpe";
    else if (!strcmp(t->pattern, hf_qwen2_pattern)) pre = "qwen2";
    else if (!strcmp(t->pattern, hf_digits_gpt2_pattern)) pre = "smollm";
    else if (t->pat == TOK_PAT_GPT2) pre = "gpt-2";
    else return gk_errf(err, "tokenizer %s: its split pattern has no llama.cpp pre-tokenizer", t->name);
    if (export_lists(t, x, err)) return -1;
    x->pre = pre;
    return 0;
}

/* ---------------------------------------------------------------- HF tokenizer.json out
 * The inverse of load_hf_json: model BPE with the byte-mapped vocabulary and the merges in rank order (the
 * lists tok_export_bpe makes), every special token an added token with special = true, and the pre-tokenizer
 * HF writes for the split pattern -- ByteLevel(use_regex) for GPT-2's, Digits + ByteLevel for SmolLM's, and
 * Split(Regex, Isolated) + ByteLevel(no regex) for the others (cl100k as LLaMA 3's spelling of it, which HF's
 * regex engine and ours split alike; gptkit's own and Qwen2's as they are). No normalizer and no post-processor:
 * encode adds nothing (no BOS), as gptkit's does. Read back by tok_load it encodes as t does. */
static cJSON *byte_level(int use_regex) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "type", "ByteLevel");
    cJSON_AddBoolToObject(o, "add_prefix_space", 0);
    cJSON_AddBoolToObject(o, "trim_offsets", 1);
    cJSON_AddBoolToObject(o, "use_regex", use_regex);
    return o;
}

static cJSON *hf_pre_tokenizer(const tok_tokenizer *t) {
    if (t->pat == TOK_PAT_GPT2) return byte_level(1);
    cJSON *seq = cJSON_CreateObject(), *list;
    cJSON_AddStringToObject(seq, "type", "Sequence");
    list = cJSON_AddArrayToObject(seq, "pretokenizers");
    if (!strcmp(t->pattern, hf_digits_gpt2_pattern)) {
        cJSON *d = cJSON_CreateObject();
        cJSON_AddStringToObject(d, "type", "Digits");
        cJSON_AddBoolToObject(d, "individual_digits", 1);
        cJSON_AddItemToArray(list, d);
        cJSON_AddItemToArray(list, byte_level(1));
        return seq;
    }
    cJSON *sp = cJSON_CreateObject(), *pat = cJSON_CreateObject();
    cJSON_AddStringToObject(sp, "type", "Split");
    cJSON_AddStringToObject(pat, "Regex", t->pat == TOK_PAT_CL100K ? hf_llama3_pattern : t->pattern);
    cJSON_AddItemToObject(sp, "pattern", pat);
    cJSON_AddStringToObject(sp, "behavior", "Isolated");
    cJSON_AddBoolToObject(sp, "invert", 0);
    cJSON_AddItemToArray(list, sp);
    cJSON_AddItemToArray(list, byte_level(0));
    return seq;
}

char *tok_hf_json(const tok_tokenizer *t, gk_err *err) {
    tok_bpe_export x;
    if (export_lists(t, &x, err)) return NULL;
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "version", "1.0");
    cJSON_AddNullToObject(root, "truncation");
    cJSON_AddNullToObject(root, "padding");
    cJSON *added = cJSON_AddArrayToObject(root, "added_tokens");
    /* in id order, as HF writes them */
    for (size_t id = 0; id < x.n; id++) {
        if (x.types[id] != 3) continue;
        cJSON *a = cJSON_CreateObject();
        cJSON_AddNumberToObject(a, "id", (double)id);
        cJSON_AddStringToObject(a, "content", x.tokens[id]);
        cJSON_AddBoolToObject(a, "single_word", 0);
        cJSON_AddBoolToObject(a, "lstrip", 0);
        cJSON_AddBoolToObject(a, "rstrip", 0);
        cJSON_AddBoolToObject(a, "normalized", 0);
        cJSON_AddBoolToObject(a, "special", 1);
        cJSON_AddItemToArray(added, a);
    }
    cJSON_AddNullToObject(root, "normalizer");
    cJSON_AddItemToObject(root, "pre_tokenizer", hf_pre_tokenizer(t));
    cJSON_AddNullToObject(root, "post_processor");
    cJSON *dec = byte_level(1);
    cJSON_ReplaceItemInObject(dec, "add_prefix_space", cJSON_CreateTrue());   /* HF's ByteLevel decoder default */
    cJSON_AddItemToObject(root, "decoder", dec);
    cJSON *model = cJSON_CreateObject();
    cJSON_AddStringToObject(model, "type", "BPE");
    cJSON_AddNullToObject(model, "dropout");
    cJSON_AddNullToObject(model, "unk_token");
    cJSON_AddNullToObject(model, "continuing_subword_prefix");
    cJSON_AddNullToObject(model, "end_of_word_suffix");
    cJSON_AddBoolToObject(model, "fuse_unk", 0);
    cJSON_AddBoolToObject(model, "byte_fallback", 0);
    cJSON_AddBoolToObject(model, "ignore_merges", 0);   /* gptkit's BPE always merges, even a whole-word token */
    cJSON *vocab = cJSON_AddObjectToObject(model, "vocab");
    for (size_t id = 0; id < x.n; id++)
        if (x.types[id] == 1) cJSON_AddItemToObject(vocab, x.tokens[id], cJSON_CreateNumber((double)id));
    /* the special tokens in the vocabulary too (as GPT-2's and SmolLM's files have them): HF gives an added token
     * its vocabulary id, and one missing there the next free id after the vocabulary, which is not its id when
     * it sits before or between ordinary tokens (SmolLM's specials are 0..2) */
    for (size_t id = 0; id < x.n; id++)
        if (x.types[id] == 3 && !cJSON_GetObjectItemCaseSensitive(vocab, x.tokens[id]))
            cJSON_AddItemToObject(vocab, x.tokens[id], cJSON_CreateNumber((double)id));
    cJSON *merges = cJSON_AddArrayToObject(model, "merges");
    for (size_t i = 0; i < x.nm; i++) {   /* ["a", "b"]: byte-mapped strings never hold a space */
        char *m = x.merges[i], *sp = strchr(m, ' ');
        *sp = 0;
        cJSON *pair = cJSON_CreateArray();
        cJSON_AddItemToArray(pair, cJSON_CreateString(m));
        cJSON_AddItemToArray(pair, cJSON_CreateString(sp + 1));
        cJSON_AddItemToArray(merges, pair);
        *sp = ' ';
    }
    cJSON_AddItemToObject(root, "model", model);
    char *s = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    tok_bpe_export_free(&x);
    GK_CHECK(s, "out of memory printing tokenizer.json");
    size_t n = strlen(s);
    s = gk_realloc(s, n + 2);
    s[n] = '\n'; s[n + 1] = 0;
    return s;
}

void tok_bpe_export_free(tok_bpe_export *x) {
    for (size_t i = 0; i < x->n; i++) free(x->tokens[i]);
    for (size_t i = 0; i < x->nm; i++) free(x->merges[i]);
    free(x->tokens); free(x->lens); free(x->types); free(x->merges); free(x->mlens);
    memset(x, 0, sizeof *x);
}

/* Is this tokenizer.json HF's (a "model" object) rather than our rank file's sidecar? */
static int is_hf_json(const char *path) {
    char *data = NULL; size_t len = 0;
    gk_err e;
    if (gk_read_file(path, &data, &len, &e)) return 0;
    cJSON *root = cJSON_ParseWithLength(data, len);
    int hf = root && cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(root, "model"));
    cJSON_Delete(root); free(data);
    return hf;
}

/* ---------------------------------------------------------------- our JSON sidecar */
static tok_tokenizer *load_saved(const char *tk_path, const char *json_path, gk_err *err) {
    char *data; size_t len;
    if (gk_read_file(json_path, &data, &len, err)) return NULL;
    cJSON *root = cJSON_ParseWithLength(data, len);
    tok_tokenizer *t = NULL;
    if (!root || !cJSON_IsObject(root)) { gk_errf(err, "%s: not a JSON object", json_path); goto done; }
    const cJSON *pat = cJSON_GetObjectItemCaseSensitive(root, "pattern");
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(root, "name");
    const cJSON *spec = cJSON_GetObjectItemCaseSensitive(root, "special_tokens");
    if (!cJSON_IsString(pat)) { gk_errf(err, "%s: field \"pattern\" (a string) is missing", json_path); goto done; }
    int kind = tok_pattern_kind(pat->valuestring);
    void *probe = kind < 0 ? tok_regex_compile(pat->valuestring, err) : NULL;
    if (kind < 0 && !probe) { gk_err_prefix(err, "%s: field \"pattern\"", json_path); goto done; }
    tok_regex_free(probe);
    if (spec && !cJSON_IsObject(spec)) { gk_errf(err, "%s: field \"special_tokens\" must be an object {text: id}", json_path); goto done; }
    t = load_tiktoken(tk_path, cJSON_IsString(name) ? name->valuestring : "gptkit-bpe", kind < 0 ? TOK_PAT_GPT2 : kind, err);
    if (!t) goto done;
    if (kind < 0 && tok_set_pattern(t, pat->valuestring, err)) { gk_err_prefix(err, "%s", json_path); tok_free(t); t = NULL; goto done; }
    for (const cJSON *it = spec ? spec->child : NULL; it; it = it->next) {
        if (!cJSON_IsNumber(it) || it->valuedouble < 0 || it->valuedouble >= (1 << 24) || it->valuedouble != (double)(int)it->valuedouble) {
            gk_errf(err, "%s: special_tokens[\"%s\"]: id must be a non-negative integer", json_path, it->string);
            tok_free(t); t = NULL; goto done;
        }
        if (tok_add_special(t, it->string, (int32_t)it->valuedouble, err) < 0) {
            gk_err_prefix(err, "%s", json_path); tok_free(t); t = NULL; goto done;
        }
    }
done:
    cJSON_Delete(root); free(data);
    return t;
}

/* ---------------------------------------------------------------- known encodings */
static int add_known_specials(tok_tokenizer *t, gk_err *err) {
    if (t->pat == TOK_PAT_CL100K) {
        static const char *names[] = {"<|endoftext|>", "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>", "<|endofprompt|>"};
        static const int ids[] = {100257, 100258, 100259, 100260, 100276};
        for (int i = 0; i < 5; i++) if (tok_add_special(t, names[i], ids[i], err) < 0) return -1;
    } else if (tok_add_special(t, TOK_EOT, 50256, err) < 0) return -1;
    return 0;
}

static tok_tokenizer *load_rank_file(const char *path, gk_err *err) {
    /* our sidecar? */
    char *stem = strip_suffix(path, ".tiktoken");
    size_t sl = strlen(stem);
    char *js = gk_malloc(sl + 6);
    memcpy(js, stem, sl); memcpy(js + sl, ".json", 6);
    free(stem);
    if (gk_file_exists(js)) { tok_tokenizer *t = load_saved(path, js, err); free(js); return t; }
    free(js);
    const char *b = base_name(path);
    int kind = strstr(b, "cl100k") ? TOK_PAT_CL100K : (strstr(b, "r50k") || strstr(b, "gpt2")) ? TOK_PAT_GPT2 : -1;
    tok_tokenizer *t = load_tiktoken(path, kind == TOK_PAT_CL100K ? "cl100k_base" : "gpt2", kind < 0 ? TOK_PAT_GPT2 : kind, err);
    if (!t) return NULL;
    if (kind < 0) {   /* recognise by size */
        if (t->n_ranks == 100256) kind = TOK_PAT_CL100K;
        else if (t->n_ranks == 50256) kind = TOK_PAT_GPT2;
        if (kind == TOK_PAT_CL100K) {
            t->pat = kind; free(t->pattern); t->pattern = gk_strdup(tok_pattern_cl100k);
            free(t->name); t->name = gk_strdup("cl100k_base");
        }
    }
    if (kind >= 0) {
        if (add_known_specials(t, err)) { gk_err_prefix(err, "%s", path); tok_free(t); return NULL; }
    } else {
        free(t->name); t->name = gk_strdup(b);
    }
    return t;
}

tok_tokenizer *tok_load(const char *path, gk_err *err) {
    if (!path || !*path) { gk_errf(err, "no tokenizer path given"); return NULL; }
    if (gk_is_dir(path)) {
        char *ej = gk_path_join(path, "encoder.json"), *tk = gk_path_join(path, "tokenizer.tiktoken");
        char *hj = gk_path_join(path, "tokenizer.json");
        int has_gpt2 = gk_file_exists(ej), has_ours = gk_file_exists(tk), has_hf = gk_file_exists(hj) && is_hf_json(hj);
        tok_tokenizer *t = NULL;
        if (has_ours) t = load_rank_file(tk, err);
        else if (has_hf) t = load_hf_json(hj, err);
        else if (has_gpt2) t = load_gpt2_dir(path, err);
        else gk_errf(err, "%s: directory has neither encoder.json + vocab.bpe, tokenizer.tiktoken nor HF's tokenizer.json", path);
        free(hj);
        if (has_hf) has_gpt2 = 0;
        if (t && has_gpt2 && !has_ours && tok_eot_id(t) < 0) tok_add_special(t, TOK_EOT, 50256, NULL);   /* encoder.json without it */
        free(ej); free(tk);
        return t;
    }
    if (gk_file_exists(path)) {
        if (ends_with(path, ".gguf")) return tok_load_gguf(path, err);
        if (ends_with(path, ".json") && is_hf_json(path)) return load_hf_json(path, err);
        if (ends_with(path, ".json")) {
            char *stem = strip_suffix(path, ".json");
            size_t sl = strlen(stem);
            char *tk = gk_malloc(sl + 10);
            memcpy(tk, stem, sl); memcpy(tk + sl, ".tiktoken", 10);
            free(stem);
            tok_tokenizer *t = gk_file_exists(tk) ? load_saved(tk, path, err) : NULL;
            if (!t && !gk_file_exists(tk)) gk_errf(err, "%s: no rank file %s beside it", path, tk);
            free(tk);
            return t;
        }
        return load_rank_file(path, err);
    }
    /* PATH of a saved pair */
    size_t pl = strlen(path);
    char *tk = gk_malloc(pl + 10);
    memcpy(tk, path, pl); memcpy(tk + pl, ".tiktoken", 10);
    if (gk_file_exists(tk)) { tok_tokenizer *t = load_rank_file(tk, err); free(tk); return t; }
    free(tk);
    /* known names */
    const char *file = !strcmp(path, "gpt2") || !strcmp(path, "r50k_base") ? "r50k_base.tiktoken"
                     : !strcmp(path, "cl100k_base") || !strcmp(path, "cl100k") ? "cl100k_base.tiktoken" : NULL;
    if (file) {
        const char *dir = getenv("GPTKIT_VOCAB");
        char *p = gk_path_join(dir && *dir ? dir : "data/vocab", file);
        tok_tokenizer *t = gk_file_exists(p) ? load_rank_file(p, err) : NULL;
        if (!t && !gk_file_exists(p)) gk_errf(err, "tokenizer '%s': %s not found (set GPTKIT_VOCAB to the folder holding it)", path, p);
        free(p);
        return t;
    }
    gk_errf(err, "%s: no such tokenizer (want a .tiktoken file, a directory with encoder.json + vocab.bpe, "
                 "a saved PATH with PATH.tiktoken + PATH.json, or gpt2 / cl100k_base)", path);
    return NULL;
}

/* ---------------------------------------------------------------- save */
int tok_save(const tok_tokenizer *t, const char *path, gk_err *err) {
    char *stem;
    if (gk_is_dir(path) || ends_with(path, "/")) {
        if (gk_mkdir_p(path, err)) return -1;
        stem = gk_path_join(path, "tokenizer");
    } else {
        char *a = strip_suffix(path, ".tiktoken");
        stem = strip_suffix(a, ".json");
        free(a);
    }
    size_t sl = strlen(stem);
    char *tk = gk_malloc(sl + 10), *js = gk_malloc(sl + 6);
    memcpy(tk, stem, sl); memcpy(tk + sl, ".tiktoken", 10);
    memcpy(js, stem, sl); memcpy(js + sl, ".json", 6);
    free(stem);
    int rc = -1;
    gk_afile *f = gk_afile_open(tk, err);
    if (!f) goto out;
    char *line = NULL; size_t cap = 0;
    for (size_t id = 0; id < t->vocab_size; id++) {
        if (t->kind[id] != TOK_KIND_RANK) continue;
        size_t need = 4 * ((t->len[id] + 2) / 3) + 32;
        if (need > cap) { cap = need; line = gk_realloc(line, cap); }
        size_t o = gk_b64_encode(t->arena + t->off[id], t->len[id], line);
        o += (size_t)snprintf(line + o, cap - o, " %zu\n", id);
        gk_afile_write(f, line, o);
    }
    free(line);
    if (gk_afile_commit(f, err)) goto out;
    cJSON *root = cJSON_CreateObject(), *spec = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "name", t->name);
    cJSON_AddStringToObject(root, "pattern", t->pattern);
    for (size_t i = 0; i < t->n_spec; i++) cJSON_AddNumberToObject(spec, t->spec_text[i], t->spec_id[i]);
    cJSON_AddItemToObject(root, "special_tokens", spec);
    char *s = cJSON_Print(root);
    cJSON_Delete(root);
    size_t n = strlen(s);
    s = gk_realloc(s, n + 2); s[n] = '\n'; s[n + 1] = 0;
    rc = gk_write_file_atomic(js, s, n + 1, err);
    free(s);
out:
    free(tk); free(js);
    return rc;
}

/* A checkpoint's tokenizer (tok.h). */
int tok_load_recorded(const char *model_dir, const char *recorded, const char *override, int required,
                      tok_tokenizer **tok, gk_err *err) {
    *tok = NULL;
    const char *path = override ? override : recorded;
    if (!path && model_dir && ends_with(model_dir, ".gguf") && !gk_is_dir(model_dir)) {   /* a GGUF file carries its vocabulary */
        gk_err e;
        *tok = tok_load_gguf(model_dir, &e);
        if (*tok || !required) return 0;
        return gk_errf(err, "%s", e.msg);
    }
    gk_err own_err = {0};
    if (!override && model_dir && gk_is_dir(model_dir)) {
        /* the directory's own tokenizer.json first (an HF model's, or the one every gptkit checkpoint carries):
         * it moves with the directory, where a recorded path may not */
        char *hj = gk_path_join(model_dir, "tokenizer.json");
        int hf = gk_file_exists(hj) && is_hf_json(hj);
        free(hj);
        if (hf) {
            *tok = tok_load(model_dir, &own_err);
            if (*tok) return 0;
            if (!path) return gk_errf(err, "%s", own_err.msg);
            /* a tokenizer.json this build cannot read: the recorded path is tried next */
        }
    }
    if (!path) {
        if (!required) return 0;
        return gk_errf(err, "%s records no tokenizer; pass --tokenizer PATH", model_dir);
    }
    gk_err e1;
    *tok = tok_load(path, &e1);
    if (*tok) return 0;
    if (!override && path[0] != '/' && model_dir) {   /* a relative path recorded from elsewhere */
        char *alt = gk_path_join(model_dir, path);
        gk_err e2;
        *tok = tok_load(alt, &e2);
        free(alt);
        if (*tok) return 0;
    }
    return gk_errf(err, "tokenizer %s%s: %s", path, override ? "" : " (recorded in the checkpoint; override with --tokenizer)", e1.msg);
}
