/* test_tok.c: the tokenizer against tiktoken's ids (shared vectors + generated random vectors, for gpt2 via
 * both file formats and for cl100k_base), round trips on random bytes, the hand-checked training merge
 * sequence, save/load, the incremental decoder's UTF-8 guarantee, special tokens, and malformed vocab files. */
#include "core/core.h"
#include "tok/tok.h"
#include "testlib.h"
#include <stdlib.h>
#include <string.h>

static tok_tokenizer *load(const char *rel) {
    gk_err err;
    tok_tokenizer *t = tok_load(tl_path(rel), &err);
    if (!t) { printf("  cannot load %s: %s\n", rel, err.msg); exit(1); }
    return t;
}

static size_t unhex(const char *h, uint8_t *out) {
    size_t n = strlen(h) / 2;
    for (size_t i = 0; i < n; i++) { unsigned v; sscanf(h + 2 * i, "%2x", &v); out[i] = (uint8_t)v; }
    return n;
}

/* The fixture lines are parsed by hand: cJSON rejects the lone surrogates some "text" fields hold (the exact
 * bytes are in utf8_hex). Finds "key": and returns what follows, or NULL. */
static const char *field(const char *line, const char *key) {
    char pat[64]; snprintf(pat, sizeof pat, "\"%s\":", key);
    const char *p = strstr(line, pat);
    if (!p) return NULL;
    p += strlen(pat);
    while (*p == ' ') p++;
    return p;
}
/* Parses a JSON int array at p into v. */
static void parse_ids(const char *p, tok_ids *v) {
    v->n = 0;
    if (!p || *p != '[') return;
    p++;
    while (*p && *p != ']') {
        char *e; long x = strtol(p, &e, 10);
        if (e == p) { p++; continue; }
        tok_ids_push(v, (int32_t)x);
        p = e;
    }
}
static int same(const tok_ids *a, const tok_ids *b) { return a->n == b->n && (a->n == 0 || !memcmp(a->ids, b->ids, a->n * 4)); }

/* Checks every vector of a fixture file; returns how many cases were checked. */
static int check_vectors(tok_tokenizer *t, const char *rel) {
    gk_lines L; gk_err err;
    if (gk_lines_open(&L, tl_path(rel), &err)) { CHECK(0, "%s", err.msg); return 0; }
    char *line; size_t ln; int n = 0;
    tok_encoder *enc = tok_encoder_new(t);
    tok_ids want = {0}, want_sp = {0};
    while (gk_lines_next(&L, &line, &ln)) {
        char name[64] = "?";
        const char *nm = field(line, "name");
        if (nm) sscanf(nm, "\"%63[^\"]", name);
        const char *hex = field(line, "utf8_hex");
        CHECK(hex && *hex == '"', "%s:%zu: no utf8_hex", rel, ln);
        if (!hex) continue;
        hex++;
        size_t hl = (size_t)(strchr(hex, '"') - hex);
        char *hx = gk_malloc(hl + 1); memcpy(hx, hex, hl); hx[hl] = 0;
        uint8_t *b = gk_malloc(hl / 2 + 1);
        size_t len = unhex(hx, b);
        parse_ids(field(line, "ids"), &want);
        const char *sp = field(line, "ids_special");
        if (sp) parse_ids(sp, &want_sp);
        tok_ids ids = {0}, ids2 = {0};
        tok_encode(t, b, len, 0, &ids);
        CHECK(same(&ids, &want), "%s %s: ids differ from tiktoken (got %zu ids, want %zu)", rel, name, ids.n, want.n);
        tok_encoder_encode(enc, b, len, 0, &ids2);   /* cached path: same ids */
        CHECK(same(&ids, &ids2), "%s %s: encoder (cached) differs", rel, name);
        tok_bytes out = {0};
        CHECK(tok_decode(t, ids.ids, ids.n, &out, &err) == 0 && out.n == len && (len == 0 || !memcmp(out.data, b, len)), "%s %s: decode", rel, name);
        ids.n = 0;
        tok_encode(t, b, len, 1, &ids);
        CHECK(same(&ids, sp ? &want_sp : &want), "%s %s: ids with specials allowed differ", rel, name);
        tok_ids_free(&ids); tok_ids_free(&ids2); tok_bytes_free(&out); free(b); free(hx);
        n++;
    }
    tok_ids_free(&want); tok_ids_free(&want_sp);
    tok_encoder_free(enc);
    gk_lines_close(&L);
    return n;
}

static void test_vectors_gpt2_tiktoken(void) {
    tok_tokenizer *t = load("data/vocab/r50k_base.tiktoken");
    CHECK(tok_vocab_size(t) == 50257 && tok_eot_id(t) == 50256, "gpt2: vocab %zu eot %d", tok_vocab_size(t), tok_eot_id(t));
    int n = check_vectors(t, "tests/fixtures/tok/gpt2.jsonl") + check_vectors(t, "tests/fixtures/tok/gpt2_random.jsonl");
    CHECK(n >= 250, "only %d vectors", n);
    tok_free(t);
}
static void test_vectors_gpt2_encoder_json(void) {
    tok_tokenizer *t = load("data/vocab/gpt2");
    CHECK(tok_vocab_size(t) == 50257 && tok_eot_id(t) == 50256, "gpt2 dir: vocab %zu eot %d", tok_vocab_size(t), tok_eot_id(t));
    check_vectors(t, "tests/fixtures/tok/gpt2.jsonl");
    check_vectors(t, "tests/fixtures/tok/gpt2_random.jsonl");
    tok_free(t);
}
static void test_vectors_cl100k(void) {
    tok_tokenizer *t = load("data/vocab/cl100k_base.tiktoken");
    CHECK(tok_vocab_size(t) == 100277 && tok_eot_id(t) == 100257, "cl100k: vocab %zu eot %d", tok_vocab_size(t), tok_eot_id(t));
    CHECK(tok_special_id(t, "<|endofprompt|>") == 100276, "endofprompt");
    int n = check_vectors(t, "tests/fixtures/tok/cl100k_base.jsonl") + check_vectors(t, "tests/fixtures/tok/cl100k_base_random.jsonl");
    CHECK(n >= 250, "only %d vectors", n);
    tok_free(t);
}

/* A tokenizer trained by gptkit (its own split pattern) against tiktoken running the same regex and ranks. */
static void test_vectors_gptkit_pattern(void) {
    tok_tokenizer *t = load("tests/fixtures/tok/kjv4k");
    CHECK(!strcmp(tok_pattern(t), tok_pattern_gptkit), "kjv4k pattern: %s", tok_pattern(t));
    CHECK(tok_vocab_size(t) == 4096 && tok_eot_id(t) == 4087, "kjv4k vocab %zu eot %d", tok_vocab_size(t), tok_eot_id(t));
    int n = check_vectors(t, "tests/fixtures/tok/gptkit_random.jsonl");
    CHECK(n >= 200, "only %d vectors", n);
    tok_free(t);
}

/* decode(encode(x)) == x for random byte strings, including invalid UTF-8 and special-token text */
static void test_roundtrip_random_bytes(void) {
    const char *files[] = {"data/vocab/r50k_base.tiktoken", "data/vocab/cl100k_base.tiktoken", "tests/fixtures/tok/kjv4k"};
    gk_rng r; gk_rng_seed(&r, 7);
    for (int f = 0; f < 3; f++) {
        tok_tokenizer *t = load(files[f]);
        for (int it = 0; it < 400; it++) {
            size_t n = gk_rng_below(&r, it % 50 == 0 ? 5000 : 64);
            uint8_t *b = gk_malloc(n + 1);
            int mode = it % 4;
            for (size_t i = 0; i < n; i++) {
                uint32_t v = gk_rng_below(&r, 256);
                if (mode == 1) v = " a1\n\t'!\xe2\x80\x85"[v % 10] & 0xFF;   /* dense in split-relevant bytes */
                if (mode == 2) v = v < 128 ? v : 0x80 | (v & 0x3F) | (gk_rng_below(&r, 4) ? 0 : 0x40);
                b[i] = (uint8_t)v;
            }
            if (mode == 3 && n > 20) memcpy(b + n / 2, "<|endoftext|>", 13 < n / 2 ? 13 : n / 2);
            for (int sp = 0; sp < 2; sp++) {
                tok_ids ids = {0}; tok_bytes out = {0}; gk_err err;
                tok_encode(t, b, n, sp, &ids);
                int ok = tok_decode(t, ids.ids, ids.n, &out, &err) == 0 && out.n == n && (n == 0 || !memcmp(out.data, b, n));
                CHECK(ok, "%s: round trip failed (len %zu, iteration %d, specials %d)", files[f], n, it, sp);
                tok_ids_free(&ids); tok_bytes_free(&out);
            }
            free(b);
        }
        tok_free(t);
    }
}

/* Long pieces go through the heap merge; they must agree with the array merge on the same content.
 * Splitting a long run into pieces changes ids, so compare against tiktoken's fixture runs instead: the
 * random vectors include letter runs up to 600 bytes and digit/whitespace runs up to 400. Here: 1 MB pieces
 * encode (the digit run merges into far fewer ids than bytes; r50k has no multi-space tokens) and decode back byte for byte. No wall-clock bound: timings flake on
 * a loaded machine. A quadratic merge would need ~10^12 steps for 1 MB, i.e. hours, so a regression shows as
 * tests/run.sh's per-binary time limit expiring (a FAIL naming this binary), never as a flaky verdict. */
static void test_long_runs_not_quadratic(void) {
    tok_tokenizer *t = load("data/vocab/r50k_base.tiktoken");
    size_t n = 1 << 20;
    char *b = gk_malloc(2 * n);   /* [2n]: a digit run, then a space run */
    for (size_t i = 0; i < n; i++) b[i] = (i % 3) ? '7' : '1';
    memset(b + n, ' ', n);
    tok_ids ids = {0};
    tok_encode(t, b, n, 0, &ids);
    size_t n_digits = ids.n;
    tok_encode(t, b + n, n, 0, &ids);
    CHECK(n_digits > 0 && n_digits < n / 2, "%zu ids for a %zu-byte digit run: merges missing", n_digits, n);
    tok_bytes out = {0}; gk_err err;
    CHECK(tok_decode(t, ids.ids, ids.n, &out, &err) == 0 && out.n == 2 * n && !memcmp(out.data, b, 2 * n),
          "decode length %zu (want %zu) or content differs", out.n, 2 * n);
    tok_ids_free(&ids); tok_bytes_free(&out); free(b); tok_free(t);
}

/* The incremental decoder only ever emits valid UTF-8, and equals decode for valid text. */
static int valid_utf8(const uint8_t *s, size_t n) {
    for (size_t i = 0; i < n;) {
        uint8_t c = s[i];
        size_t k; uint32_t lo = 0x80, hi = 0xBF;
        if (c < 0x80) { i++; continue; }
        else if (c >= 0xC2 && c <= 0xDF) k = 2;
        else if (c >= 0xE0 && c <= 0xEF) { k = 3; if (c == 0xE0) lo = 0xA0; if (c == 0xED) hi = 0x9F; }
        else if (c >= 0xF0 && c <= 0xF4) { k = 4; if (c == 0xF0) lo = 0x90; if (c == 0xF4) hi = 0x8F; }
        else return 0;
        if (i + k > n) return 0;
        if (s[i + 1] < lo || s[i + 1] > hi) return 0;
        for (size_t j = 2; j < k; j++) if ((s[i + j] & 0xC0) != 0x80) return 0;
        i += k;
    }
    return 1;
}

static void test_stream_decoder(void) {
    tok_tokenizer *t = load("data/vocab/cl100k_base.tiktoken");
    gk_rng r; gk_rng_seed(&r, 11);
    gk_err err;
    /* random ids: every push's output is valid UTF-8 on its own */
    for (int it = 0; it < 300; it++) {
        tok_stream s; tok_stream_init(&s);
        int bad = 0;
        for (int k = 0; k < 50; k++) {
            int32_t id = (int32_t)gk_rng_below(&r, 100256);
            if (k % 3 == 0) id = (int32_t)gk_rng_below(&r, 256);   /* raw bytes: many broken sequences */
            tok_bytes out = {0};
            CHECK(tok_stream_push(&s, t, id, &out, &err) == 0, "push %d", id);
            if (!valid_utf8(out.data, out.n)) bad++;
            tok_bytes_free(&out);
        }
        tok_bytes out = {0};
        tok_stream_flush(&s, &out);
        if (!valid_utf8(out.data, out.n)) bad++;
        CHECK(bad == 0, "iteration %d: %d pushes emitted invalid UTF-8", it, bad);
        tok_bytes_free(&out);
    }
    /* valid text split into tokens that cut characters: stream output == the text */
    const char *text = "naïve café 東京 😀👍🏽 👨‍👩‍👧 Привет мир — done";
    tok_ids ids = {0};
    tok_encode(t, text, strlen(text), 0, &ids);
    tok_stream s; tok_stream_init(&s);
    tok_bytes all = {0};
    for (size_t i = 0; i < ids.n; i++) {
        tok_bytes out = {0};
        tok_stream_push(&s, t, ids.ids[i], &out, &err);
        CHECK(valid_utf8(out.data, out.n), "piece %zu invalid", i);
        tok_bytes_append(&all, out.data, out.n);
        tok_bytes_free(&out);
    }
    tok_stream_flush(&s, &all);
    CHECK(all.n == strlen(text) && !memcmp(all.data, text, all.n), "stream output differs from the text");
    CHECK(tok_stream_push(&s, t, 100256, &all, &err) != 0, "gap id 100256 must fail");
    tok_ids_free(&ids); tok_bytes_free(&all); tok_free(t);
}

static void test_decode_out_of_range(void) {
    tok_tokenizer *t = load("data/vocab/r50k_base.tiktoken");
    int32_t ids[] = {31373, 50257};
    tok_bytes out = {0}; gk_err err;
    CHECK(tok_decode(t, ids, 2, &out, &err) != 0 && strstr(err.msg, "50257"), "out of range id accepted: %s", err.msg);
    int32_t neg[] = {-1};
    CHECK(tok_decode(t, neg, 1, &out, &err) != 0, "negative id accepted");
    tok_bytes_free(&out); tok_free(t);
    t = load("data/vocab/cl100k_base.tiktoken");
    int32_t gap[] = {100256};
    CHECK(tok_decode(t, gap, 1, &out, &err) != 0 && strstr(err.msg, "gap"), "gap id accepted: %s", err.msg);
    tok_bytes_free(&out); tok_free(t);
}

static void test_chat_specials(void) {
    tok_tokenizer *t = load("data/vocab/r50k_base.tiktoken");
    CHECK(tok_add_chat_specials(t) == 8, "gpt2 should gain 8 chat specials");
    CHECK(tok_eot_id(t) == 50256 && tok_special_id(t, TOK_SYSTEM) == 50257 && tok_special_id(t, TOK_TOOL_RESULT_END) == 50264,
          "chat special ids: system %d tool_result_end %d", tok_special_id(t, TOK_SYSTEM), tok_special_id(t, TOK_TOOL_RESULT_END));
    const char *s = "<|user|>hi<|end|>";
    tok_ids ids = {0};
    tok_encode(t, s, strlen(s), 1, &ids);
    CHECK(ids.n == 3 && ids.ids[0] == tok_special_id(t, TOK_USER) && ids.ids[2] == tok_special_id(t, TOK_END), "special matching (%zu ids)", ids.n);
    ids.n = 0;
    tok_encode(t, s, strlen(s), 0, &ids);
    CHECK(ids.n > 3, "specials must be plain text when not allowed");
    tok_ids_free(&ids); tok_free(t);
    t = load("data/vocab/cl100k_base.tiktoken");
    tok_add_chat_specials(t);
    CHECK(tok_special_id(t, TOK_SYSTEM) == 100277 && tok_vocab_size(t) == 100285, "cl100k chat specials: %d, vocab %zu",
          tok_special_id(t, TOK_SYSTEM), tok_vocab_size(t));
    tok_free(t);
}

/* "aaabdaaabac": pairs aa:4 ab:2 ... -> merge (a,a)=256. Then (a,b):2 and (aa,a):2 tie; smaller left id wins
 * -> (a,b)=257. Then (aa,ab):2 -> 258 "aaab". Then all count 1; smallest left id: (a,c) -> 259 "ac". */
static void test_train_hand_checked(void) {
    tok_train_opts o; tok_train_opts_default(&o);
    o.vocab_size = 256 + 4 + TOK_N_CHAT_SPECIALS;
    gk_err err;
    tok_trainer *tr = tok_trainer_new(&o, &err);
    tok_trainer_feed(tr, "aaabdaaabac", 11);
    tok_tokenizer *t = tok_trainer_finish(tr, &err);
    tok_trainer_free(tr);
    CHECK(t != NULL, "train: %s", err.msg);
    if (!t) return;
    const char *want[] = {"aa", "ab", "aaab", "ac"};
    for (int i = 0; i < 4; i++) {
        size_t n; const uint8_t *b = tok_token_bytes(t, 256 + i, &n);
        CHECK(b && n == strlen(want[i]) && !memcmp(b, want[i], n), "merge %d: want %s got %.*s", i, want[i], (int)n, b ? (const char *)b : "");
    }
    CHECK(tok_vocab_size(t) == o.vocab_size, "vocab %zu", tok_vocab_size(t));
    CHECK(tok_eot_id(t) == 260 && tok_special_id(t, TOK_TOOL_RESULT_END) == 268, "special ids right after merges");
    tok_ids ids = {0};
    tok_encode(t, "aaabdaaabac", 11, 0, &ids);
    /* rank order: aa, ab, aaab, then ac also merges: [aaab, d, aaab, ac] */
    CHECK(ids.n == 4 && ids.ids[0] == 258 && ids.ids[1] == 'd' && ids.ids[2] == 258 && ids.ids[3] == 259,
          "encode after training (%zu ids)", ids.n);
    tok_ids_free(&ids); tok_free(t);
}

/* Train on a small corpus twice (deterministic), save, load, same encodings; vocab file checks. */
static void test_train_save_load(void) {
    char *d = tl_tmpdir("tok");
    char *corpus = gk_path_join(d, "c.txt");
    gk_rng r; gk_rng_seed(&r, 3);
    char words[300][12];
    const char *syl[] = {"ka", "ri", "to", "mu", "ne", "sa", "lo", "vi", "é", "ß", "th", "qu", "2", "!"};
    for (int w = 0; w < 300; w++) {
        words[w][0] = 0;
        for (int k = 0, m = 1 + (int)gk_rng_below(&r, 4); k < m; k++) strcat(words[w], syl[gk_rng_below(&r, 14)]);
    }
    tok_bytes txt = {0};
    for (int i = 0; i < 20000; i++) {
        const char *w = words[gk_rng_below(&r, 300)];
        tok_bytes_append(&txt, w, strlen(w));
        tok_bytes_append(&txt, i % 13 == 12 ? ".\n" : " ", i % 13 == 12 ? 2 : 1);
    }
    gk_err err;
    CHECK(gk_write_file_atomic(corpus, txt.data, txt.n, &err) == 0, "%s", err.msg);
    tok_train_opts o; tok_train_opts_default(&o);
    o.vocab_size = 400;
    o.pattern = "cl100k";
    const char *extra[] = {"<|mine|>"};
    o.specials = extra; o.n_specials = 1;
    const char *files[] = {corpus};
    tok_tokenizer *a = tok_train_files(files, 1, &o, &err), *b = tok_train_files(files, 1, &o, &err);
    CHECK(a && b, "train: %s", err.msg);
    if (!a || !b) return;
    CHECK(tok_vocab_size(a) == 400 && tok_special_id(a, "<|mine|>") == 399, "vocab %zu, mine %d", tok_vocab_size(a), tok_special_id(a, "<|mine|>"));
    for (int32_t id = 0; id < 400; id++) {
        size_t na, nb; const uint8_t *pa = tok_token_bytes(a, id, &na), *pb = tok_token_bytes(b, id, &nb);
        CHECK(pa && pb && na == nb && !memcmp(pa, pb, na), "training is not deterministic at id %d", id);
    }
    char *saved = gk_path_join(d, "mytok");
    CHECK(tok_save(a, saved, &err) == 0, "save: %s", err.msg);
    tok_tokenizer *c = tok_load(saved, &err);
    CHECK(c != NULL, "load saved: %s", err.msg);
    if (c) {
        CHECK(!strcmp(tok_pattern(c), tok_pattern(a)) && tok_vocab_size(c) == 400 && tok_special_id(c, TOK_END) == tok_special_id(a, TOK_END), "saved tokenizer differs");
        tok_ids x = {0}, y = {0};
        tok_encode(a, txt.data, txt.n, 1, &x); tok_encode(c, txt.data, txt.n, 1, &y);
        CHECK(x.n == y.n && !memcmp(x.ids, y.ids, x.n * 4), "saved tokenizer encodes differently");
        CHECK(x.n < txt.n / 2, "trained tokenizer compresses poorly: %zu tokens for %zu bytes", x.n, txt.n);
        tok_ids_free(&x); tok_ids_free(&y); tok_free(c);
    }
    /* also loadable as PATH.tiktoken and PATH.json */
    char *tk = gk_malloc(strlen(saved) + 16); sprintf(tk, "%s.tiktoken", saved);
    c = tok_load(tk, &err); CHECK(c && tok_n_specials(c) == 10, "load via .tiktoken: %s", c ? "" : err.msg); tok_free(c);
    sprintf(tk, "%s.json", saved);
    c = tok_load(tk, &err); CHECK(c && tok_n_specials(c) == 10, "load via .json: %s", c ? "" : err.msg); tok_free(c);
    free(tk);
    /* too small a vocabulary, custom regex */
    o.vocab_size = 260;
    CHECK(tok_train_files(files, 1, &o, &err) == NULL && strstr(err.msg, "too small"), "small vocab: %s", err.msg);
    o.vocab_size = 400; o.pattern = "[a-z]+|[^a-z]";
    if (!tok_regex_available()) {
        CHECK(tok_train_files(files, 1, &o, &err) == NULL && strstr(err.msg, "custom"), "custom regex: %s", err.msg);
    } else {   /* PCRE2 build: a custom pattern trains, saves, loads and round-trips */
        tok_tokenizer *cu = tok_train_files(files, 1, &o, &err);
        CHECK(cu && !strcmp(tok_pattern(cu), "[a-z]+|[^a-z]"), "custom regex train: %s", cu ? tok_pattern(cu) : err.msg);
        char *cp = gk_path_join(d, "custom");
        tok_tokenizer *cl = cu && tok_save(cu, cp, &err) == 0 ? tok_load(cp, &err) : NULL;
        CHECK(cl != NULL, "custom regex save/load: %s", err.msg);
        if (cl) {
            tok_ids x = {0}; tok_bytes y = {0};
            tok_encode(cl, txt.data, txt.n, 0, &x);
            CHECK(tok_decode(cl, x.ids, x.n, &y, &err) == 0 && y.n == txt.n && !memcmp(y.data, txt.data, y.n), "custom regex round trip");
            tok_ids_free(&x); tok_bytes_free(&y);
        }
        o.pattern = "(unclosed";
        CHECK(tok_train_files(files, 1, &o, &err) == NULL && strstr(err.msg, "parenthesis"), "bad regex: %s", err.msg);
        tok_free(cu); tok_free(cl); free(cp);
    }
    tok_free(a); tok_free(b); tok_bytes_free(&txt);
    free(saved); free(corpus); free(d);
}

static void expect_load_error(const char *dir, const char *name, const char *content, const char *want) {
    char *p = gk_path_join(dir, name);
    gk_err err;
    gk_write_file_atomic(p, content, strlen(content), &err);
    tok_tokenizer *t = tok_load(p, &err);
    CHECK(t == NULL, "%s: malformed file loaded", name);
    if (!t) CHECK(strstr(err.msg, want) != NULL, "%s: message \"%s\" lacks \"%s\"", name, err.msg, want);
    tok_free(t);
    free(p);
}

static void test_malformed_vocab(void) {
    char *d = tl_tmpdir("tokbad");
    /* a valid base: the 256 bytes */
    tok_bytes good = {0};
    for (int b = 0; b < 256; b++) {
        char line[64]; const char *B = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        int n = snprintf(line, sizeof line, "%c%c== %d\n", B[b >> 2], B[(b & 3) << 4], b);
        tok_bytes_append(&good, line, (size_t)n);
    }
    tok_bytes_append(&good, "", 1);
    static char buf[8192];
    snprintf(buf, sizeof buf, "%sYWI= 256\n", (char *)good.data);
    char *p = gk_path_join(d, "ok.tiktoken"); gk_err err;
    gk_write_file_atomic(p, buf, strlen(buf), &err);
    tok_tokenizer *t = tok_load(p, &err);
    CHECK(t && tok_n_ranks(t) == 257, "valid small rank file: %s", t ? "" : err.msg);
    tok_free(t); free(p);
    snprintf(buf, sizeof buf, "%sYW!= 256\n", (char *)good.data);
    expect_load_error(d, "b64.tiktoken", buf, "b64.tiktoken:257: bad base64");
    snprintf(buf, sizeof buf, "%sYWI 256\n", (char *)good.data);
    expect_load_error(d, "b64b.tiktoken", buf, "bad base64");
    snprintf(buf, sizeof buf, "%sYWI= 255\n", (char *)good.data);
    expect_load_error(d, "duprank.tiktoken", buf, "duprank.tiktoken:257: duplicate rank 255");
    snprintf(buf, sizeof buf, "%sYQ== 300\n", (char *)good.data);
    expect_load_error(d, "duptok.tiktoken", buf, "duplicate token");
    snprintf(buf, sizeof buf, "%sYWI= x1\n", (char *)good.data);
    expect_load_error(d, "rank.tiktoken", buf, "bad rank");
    expect_load_error(d, "missing.tiktoken", "YQ== 0\n", "single byte 0x00");
    expect_load_error(d, "empty.tiktoken", "", "no tokens");
    /* GPT-2 files: truncated vocab.bpe, broken merge */
    char *g = gk_path_join(d, "g2");
    gk_mkdir_p(g, &err);
    char *data; size_t len;
    gk_read_file(tl_path("data/vocab/gpt2/encoder.json"), &data, &len, &err);
    char *ej = gk_path_join(g, "encoder.json"), *vb = gk_path_join(g, "vocab.bpe");
    gk_write_file_atomic(ej, data, len, &err);
    free(data);
    gk_read_file(tl_path("data/vocab/gpt2/vocab.bpe"), &data, &len, &err);
    gk_write_file_atomic(vb, data, len / 2, &err);   /* half the merges */
    t = tok_load(g, &err);
    CHECK(t == NULL && strstr(err.msg, "missing merges"), "truncated vocab.bpe: %s", t ? "loaded" : err.msg);
    tok_free(t);
    char *nl = memchr(data + 20, '\n', len - 20);   /* corrupt the 2nd merge line */
    nl[1] = '#'; nl[2] = '#';
    int lineno = 2;
    for (char *q = data; q < nl; q++) lineno += *q == '\n';
    char want[32]; snprintf(want, sizeof want, "vocab.bpe:%d:", lineno);
    gk_write_file_atomic(vb, data, len, &err);
    t = tok_load(g, &err);
    CHECK(t == NULL && strstr(err.msg, want), "bad merge line (want %s): %s", want, t ? "loaded" : err.msg);
    tok_free(t);
    free(data); free(ej); free(vb); free(g);
    CHECK(tok_load("/nonexistent/tok", &err) == NULL && strstr(err.msg, "/nonexistent/tok"), "missing path: %s", err.msg);
    tok_bytes_free(&good); free(d);
}

/* Cutting at tok_safe_cut gives the same ids as encoding the whole (what tokenize relies on). */
static void test_safe_cut(void) {
    const char *files[] = {"data/vocab/r50k_base.tiktoken", "data/vocab/cl100k_base.tiktoken", "tests/fixtures/tok/kjv4k"};
    const char *text = "Hello there!\n\nIt's 12345 o'clock.\n  indented\n(paren) and\r\nwindows\n\t tab\n'quote\n1 two\n"
                       "earth.\nAnd God said, Let there be light: and there was light.\nword\nnext ( x ) y!\n!z\n";
    size_t n = strlen(text);
    for (int f = 0; f < 3; f++) {
        tok_tokenizer *t = load(files[f]);
        tok_ids whole = {0};
        tok_encode(t, text, n, 0, &whole);
        for (size_t end = 1; end <= n; end++) {
            size_t cut = tok_safe_cut(t, (const uint8_t *)text, end);
            if (cut == end) continue;
            tok_ids parts = {0};
            tok_encode(t, text, cut, 0, &parts);
            tok_encode(t, text + cut, n - cut, 0, &parts);
            CHECK(parts.n == whole.n && !memcmp(parts.ids, whole.ids, whole.n * 4), "%s: cut at %zu changes ids", files[f], cut);
            tok_ids_free(&parts);
        }
        tok_ids_free(&whole); tok_free(t);
    }
}

/* tok_encode of an input of 4 MB or more splits it at tok_safe_cut boundaries for the OpenMP threads: the ids
 * must equal one encoder's over the whole text, with special tokens matched and not, on a text of short lines,
 * long runs without a boundary, digits and special-token text (so some segments end where no cut was found). */
static void test_encode_threads(void) {
    const char *files[] = {"data/vocab/r50k_base.tiktoken", "data/vocab/cl100k_base.tiktoken"};
    const char *parts[] = {"And God said, Let there be light: and there was light.\n", "<|endoftext|>",
                           "It's 12345 o'clock!\n\n", "  indented (paren) word\r\n", "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"};
    size_t cap = (size_t)5 << 20, n = 0;
    char *text = gk_malloc(cap + 256);
    gk_rng r; gk_rng_seed(&r, 5);
    while (n < cap) {
        uint32_t k = gk_rng_below(&r, 100);
        const char *p = parts[k < 60 ? 0 : k < 63 ? 1 : k < 80 ? 2 : k < 95 ? 3 : 4];
        size_t l = strlen(p);
        memcpy(text + n, p, l);
        n += l;
    }
    for (int f = 0; f < 2; f++) {
        tok_tokenizer *t = load(files[f]);
        if (tok_special_id(t, "<|endoftext|>") < 0) tok_add_special(t, "<|endoftext|>", -1, NULL);
        for (int sp = 0; sp < 2; sp++) {
            tok_ids a = {0}, b = {0};
            tok_encode(t, text, n, sp, &a);
            tok_encoder *e = tok_encoder_new(t);
            tok_encoder_encode(e, text, n, sp, &b);
            tok_encoder_free(e);
            CHECK(a.n == b.n && !memcmp(a.ids, b.ids, a.n * 4), "%s special %d: threaded encode differs (%zu vs %zu ids)",
                  files[f], sp, a.n, b.n);
            tok_ids_free(&a); tok_ids_free(&b);
        }
        tok_free(t);
    }
    free(text);
}

/* tok_hf_json (the tokenizer.json every checkpoint carries) read back by tok_load: the same vocabulary, the same
 * special tokens at the same ids, and the same ids for every input, with special tokens matched or not -- for
 * GPT-2's vocabulary, a gptkit-trained BPE with chat specials (gptkit's pattern), and HF tokenizer.json files of
 * the LLaMA 3, Qwen2 and SmolLM families (whose special tokens sit after, between or before the ranks). */
static void test_hf_json_roundtrip(void) {
    const char *srcs[] = {"data/vocab/r50k_base.tiktoken", "tests/fixtures/tok/kjv4k", "tests/fixtures/hftok/llama3",
                          "tests/fixtures/hftok/qwen2", "tests/fixtures/hftok/smollm"};
    static const char *texts[] = {
        "In the beginning God created the heaven and the earth.",
        "Hello, world! It's 3:45pm -- don't panic; we'll see... (maybe) [ok] {x: 1} a/b\\c",
        "1234567890 3.14159 1,000,000 -42 0x1F 12345abc 7th",
        "naïve café résumé — “quotes” 日本語のテキスト、中文。한국어 🙂👍🏽",
        "   leading and trailing   \t\ttabs\n\n\nnewlines\r\n\r\nCRLF    \n  ",
        "<|endoftext|>special<|im_start|>user\nhi<|im_end|><|end|><|user|><|begin_of_text|><|eot_id|>",
        "word\nWord\n word.\n\"quoted\"\n'apostrophe's\nYOU'RE I'M THEY'LL",
    };
    char *d = tl_tmpdir("hfjson");
    gk_err err;
    char *corpus = NULL; size_t clen = 0;
    gk_read_file(tl_path("tests/fixtures/tok/gptkit_random.jsonl"), &corpus, &clen, &err);
    for (size_t k = 0; k < sizeof srcs / sizeof srcs[0]; k++) {
        if (k >= 2 && !tok_regex_available()) { printf("  (no PCRE2: %s skipped)\n", srcs[k]); continue; }
        tok_tokenizer *a = load(srcs[k]);
        char *js = tok_hf_json(a, &err);
        CHECK(js, "%s: tok_hf_json: %s", srcs[k], err.msg);
        if (!js) { tok_free(a); continue; }
        char sub[32]; snprintf(sub, sizeof sub, "t%zu", k);
        char *dir = gk_path_join(d, sub), *path = gk_path_join(dir, "tokenizer.json");
        gk_mkdir_p(dir, &err);
        CHECK(gk_write_file_atomic(path, js, strlen(js), &err) == 0, "%s", err.msg);
        tok_tokenizer *b = tok_load(dir, &err);
        CHECK(b, "%s: reading back: %s", srcs[k], err.msg);
        if (b) {
            CHECK(tok_vocab_size(a) == tok_vocab_size(b) && tok_n_ranks(a) == tok_n_ranks(b) && tok_n_specials(a) == tok_n_specials(b),
                  "%s: vocab %zu/%zu ranks %zu/%zu specials %zu/%zu", srcs[k], tok_vocab_size(a), tok_vocab_size(b),
                  tok_n_ranks(a), tok_n_ranks(b), tok_n_specials(a), tok_n_specials(b));
            CHECK(!strcmp(tok_pattern(a), tok_pattern(b)) || tok_pattern(a)[0] == '\'', "%s: pattern %s", srcs[k], tok_pattern(b));
            size_t diff = 0;
            for (int32_t id = 0; (size_t)id < tok_vocab_size(a); id++) {
                size_t na = 0, nb = 0;
                const uint8_t *pa = tok_token_bytes(a, id, &na), *pb = tok_token_bytes(b, id, &nb);
                if (!pa != !pb || na != nb || (pa && memcmp(pa, pb, na)) || tok_text_len(a, id) != tok_text_len(b, id)) diff++;
            }
            CHECK(diff == 0, "%s: %zu ids differ", srcs[k], diff);
            size_t bad = 0;
            tok_ids ia = {0}, ib = {0};
            for (int pass = 0; pass < 3; pass++) {
                size_t nt = pass == 0 ? sizeof texts / sizeof texts[0] : pass == 1 ? 1 : 64;
                for (size_t i = 0; i < nt; i++) {
                    uint8_t rnd[200];
                    const void *txt; size_t len;
                    if (pass == 0) { txt = texts[i]; len = strlen(texts[i]); }
                    else if (pass == 1) { txt = corpus; len = corpus ? clen : 0; }
                    else {   /* random bytes, invalid UTF-8 included */
                        gk_rng r; gk_rng_seed(&r, 100 + i);
                        for (size_t j = 0; j < sizeof rnd; j++) rnd[j] = (uint8_t)gk_rng_below(&r, i % 2 ? 256 : 128);
                        txt = rnd; len = sizeof rnd;
                    }
                    for (int allow = 0; allow < 2; allow++) {
                        ia.n = ib.n = 0;
                        tok_encode(a, txt, len, allow, &ia);
                        tok_encode(b, txt, len, allow, &ib);
                        if (ia.n != ib.n || memcmp(ia.ids, ib.ids, ia.n * sizeof *ia.ids)) {
                            if (!bad) printf("  %s: input %d/%zu (allow_special %d) encodes differently\n", srcs[k], pass, i, allow);
                            bad++;
                        }
                    }
                }
            }
            CHECK(bad == 0, "%s: %zu inputs encode differently after the round trip", srcs[k], bad);
            tok_ids_free(&ia); tok_ids_free(&ib);
        }
        tok_free(a); tok_free(b); free(js); free(dir); free(path);
    }
    free(corpus); free(d);
}

int main(void) {
    TL_RUN(test_vectors_gpt2_tiktoken);
    TL_RUN(test_vectors_gpt2_encoder_json);
    TL_RUN(test_vectors_cl100k);
    TL_RUN(test_vectors_gptkit_pattern);
    TL_RUN(test_roundtrip_random_bytes);
    TL_RUN(test_long_runs_not_quadratic);
    TL_RUN(test_stream_decoder);
    TL_RUN(test_decode_out_of_range);
    TL_RUN(test_chat_specials);
    TL_RUN(test_train_hand_checked);
    TL_RUN(test_train_save_load);
    TL_RUN(test_malformed_vocab);
    TL_RUN(test_safe_cut);
    TL_RUN(test_encode_threads);
    TL_RUN(test_hf_json_roundtrip);
    return tl_summary();
}
