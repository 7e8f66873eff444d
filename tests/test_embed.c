/* test_embed.c: the WordPiece tokenizer against HF tokenizers' ids (tests/fixtures/embed/tok_cases.json: three
 * normaliser configs, fixed tricky strings and seeded random ones), and the BERT sentence encoder against
 * sentence-transformers' encode() on two tiny random models (mean pooling + Normalize with truncation at 24
 * tokens; CLS pooling, cased, unnormalised), on both CPU kinds. Fixtures: tests/ref/gen_embed_fixture.py.
 * Also: the vector-search dot products (AVX2 and portable) against a double-precision sum, the encoder's
 * bidirectional attention against a batch-of-one run (padding must not leak) and, with the exact GELU, against
 * double-precision loops; and bad model directories. */
#include "core/core.h"
#include "embed/embed.h"
#include "kern/kern_enc.h"
#include "tok/wordpiece.h"
#include "testlib.h"
#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static cJSON *load_json(const char *rel) {
    char *d; size_t n; gk_err err;
    if (gk_read_file(tl_path(rel), &d, &n, &err)) { printf("  %s\n", err.msg); exit(1); }
    cJSON *j = cJSON_ParseWithLength(d, n);
    free(d);
    if (!j) { printf("  %s: bad JSON\n", rel); exit(1); }
    return j;
}

/* every case of one config through tokenizer t; returns the number of mismatching cases */
static int run_tok_cases(const wp_tokenizer *t, const cJSON *cases, const char *config) {
    int bad = 0, n = 0;
    const cJSON *c;
    wp_ids out = {0};
    cJSON_ArrayForEach(c, cases) {
        if (strcmp(cJSON_GetObjectItem(c, "config")->valuestring, config)) continue;
        /* the exact bytes come from "hex": cJSON stops strings at an escaped NUL */
        const char *hex = cJSON_GetObjectItem(c, "hex")->valuestring;
        size_t len = strlen(hex) / 2;
        char *text = gk_malloc(len + 1);
        for (size_t i = 0; i < len; i++) { unsigned x; sscanf(hex + 2 * i, "%2x", &x); text[i] = (char)x; }
        text[len] = 0;
        const cJSON *ids = cJSON_GetObjectItem(c, "ids");
        gk_err err;
        int rc = wp_encode(t, text, len, 1, 0, &out, &err);
        int same = rc == 0 && (size_t)cJSON_GetArraySize(ids) == out.n;
        for (size_t i = 0; same && i < out.n; i++) same = cJSON_GetArrayItem(ids, (int)i)->valueint == out.ids[i];
        if (!same) {
            if (bad < 5) {
                char *want = cJSON_PrintUnformatted(ids);
                printf("  [%s] %.60s: got %zu ids, want %s\n", config, text, out.n, want);
                free(want);
            }
            bad++;
        }
        free(text);
        n++;
    }
    wp_ids_free(&out);
    CHECK(n >= 200, "only %d cases for %s", n, config);
    return bad;
}

static void test_wordpiece_vs_hf(void) {
    cJSON *cases = load_json("tests/fixtures/embed/tok_cases.json");
    char *voc; size_t n; gk_err err;
    CHECK(gk_read_file(tl_path("tests/fixtures/embed/vocab.txt"), &voc, &n, &err) == 0, "%s", err.msg);
    static const char *const cfgs[3] = {"uncased", "cased", "lower_keep_accents"};
    for (int k = 0; k < 3; k++) {
        wp_options o; wp_options_default(&o);
        o.lowercase = k != 1; o.strip_accents = k == 2 ? 0 : -1;
        wp_tokenizer *t = wp_from_vocab(voc, n, &o, "vocab.txt", &err);
        CHECK(t, "%s", err.msg);
        if (!t) continue;
        int bad = run_tok_cases(t, cases, cfgs[k]);
        CHECK(bad == 0, "%s: %d cases differ from HF tokenizers", cfgs[k], bad);
        wp_free(t);
    }
    /* the same through the tokenizer.json files sentence-transformers saved */
    static const char *const dirs[2] = {"tests/fixtures/embed/st_mean", "tests/fixtures/embed/st_cls"};
    for (int k = 0; k < 2; k++) {
        wp_tokenizer *t = wp_load_dir(tl_path(dirs[k]), &err);
        CHECK(t, "%s", err.msg);
        if (!t) continue;
        CHECK(run_tok_cases(t, cases, k ? "cased" : "uncased") == 0, "%s/tokenizer.json differs", dirs[k]);
        wp_free(t);
    }
    free(voc); cJSON_Delete(cases);
}

/* offsets: each piece's byte range lies inside the text and covers what it came from */
static void test_wordpiece_offsets(void) {
    gk_err err;
    wp_tokenizer *t = wp_load_dir(tl_path("tests/fixtures/embed/st_mean"), &err);
    CHECK(t, "%s", err.msg);
    if (!t) return;
    const char *s = "Playful, the CAFÉ! 中国";
    wp_ids v = {0};
    CHECK(wp_encode(t, s, strlen(s), 0, 0, &v, &err) == 0, "%s", err.msg);
    /* play ##ful , the cafe ! 中 国 */
    CHECK(v.n == 8, "got %zu pieces", v.n);
    if (v.n == 8) {
        CHECK(v.start[0] == 0 && v.end[0] == 4 && v.start[1] == 4 && v.end[1] == 7, "play|ful offsets %u-%u %u-%u", v.start[0], v.end[0], v.start[1], v.end[1]);
        CHECK(v.start[4] == 13 && v.end[4] == 18, "CAFÉ is bytes 13..18, got %u..%u", v.start[4], v.end[4]);
        CHECK(v.start[7] == 23 && v.end[7] == 26, "国 at 23..26, got %u..%u", v.start[7], v.end[7]);
    }
    CHECK(wp_encode(t, "a\xff", 2, 1, 0, &v, &err) == -1 && strstr(err.msg, "UTF-8"), "invalid UTF-8 accepted");
    /* truncation keeps [CLS] ... [SEP] within max_len */
    CHECK(wp_encode(t, "the the the the the the", 23, 1, 5, &v, &err) == 0 && v.n == 5 && v.ids[0] == wp_cls_id(t) &&
          v.ids[4] == wp_sep_id(t), "truncation to 5");
    wp_ids_free(&v);
    wp_free(t);
}

static void check_model(const char *dir, const char *fixture, kern_kind kind) {
    gk_err err;
    kern_backend_opts o; kern_backend_opts_default(&o); o.kind = kind;
    kern_backend *be = kern_backend_create(&o, &err);
    embed_model *m = embed_load(tl_path(dir), be, &err);
    CHECK(m, "%s", err.msg);
    if (!m) { kern_backend_free(be); return; }
    cJSON *fx = load_json(fixture);
    const cJSON *lines = cJSON_GetObjectItem(fx, "lines"), *ids = cJSON_GetObjectItem(fx, "ids"), *emb = cJSON_GetObjectItem(fx, "emb");
    size_t n = (size_t)cJSON_GetArraySize(lines), C = embed_dim(m);
    const char **tx = gk_malloc(n * sizeof *tx);
    for (size_t i = 0; i < n; i++) tx[i] = cJSON_GetArrayItem(lines, (int)i)->valuestring;
    /* ids first: the tokenizer with truncation to max_seq_length */
    wp_ids v = {0};
    for (size_t i = 0; i < n; i++) {
        wp_encode(embed_tokenizer(m), tx[i], strlen(tx[i]), 1, embed_max_tokens(m), &v, &err);
        const cJSON *w = cJSON_GetArrayItem(ids, (int)i);
        int same = (size_t)cJSON_GetArraySize(w) == v.n;
        for (size_t k = 0; same && k < v.n; k++) same = cJSON_GetArrayItem(w, (int)k)->valueint == v.ids[k];
        CHECK(same, "%s line %zu: ids differ (%zu vs %d)", dir, i, v.n, cJSON_GetArraySize(w));
    }
    wp_ids_free(&v);
    float *out = gk_malloc(n * C * sizeof *out), *want = gk_malloc(n * C * sizeof *want);
    embed_set_batch(m, 3);   /* several padded batches of mixed lengths */
    CHECK(embed_texts(m, tx, NULL, n, out, &err) == 0, "%s", err.msg);
    double worst_cos = 1;
    for (size_t i = 0; i < n; i++) {
        const cJSON *w = cJSON_GetArrayItem(emb, (int)i);
        double dot = 0, na = 0, nb = 0;
        for (size_t c = 0; c < C; c++) {
            want[i * C + c] = (float)cJSON_GetArrayItem(w, (int)c)->valuedouble;
            dot += (double)out[i * C + c] * want[i * C + c]; na += (double)out[i * C + c] * out[i * C + c];
            nb += (double)want[i * C + c] * want[i * C + c];
        }
        double cs = dot / sqrt(na * nb + 1e-30);
        if (cs < worst_cos) worst_cos = cs;
    }
    CHECK_ARRAYS(dir, out, want, n * C, 1e-4, 1e-4);
    CHECK(worst_cos >= 0.9999, "%s: worst cosine %.6f", dir, worst_cos);
    free(out); free(want); free(tx); cJSON_Delete(fx);
    embed_free(m); kern_backend_free(be);
}
static void test_encoder_mean_normalized_ref(void) { check_model("tests/fixtures/embed/st_mean", "tests/fixtures/embed/st_mean.json", KERN_KIND_REF); }
static void test_encoder_mean_normalized_cpu(void) { check_model("tests/fixtures/embed/st_mean", "tests/fixtures/embed/st_mean.json", KERN_KIND_CPU); }
static void test_encoder_cls_cased_ref(void) { check_model("tests/fixtures/embed/st_cls", "tests/fixtures/embed/st_cls.json", KERN_KIND_REF); }
static void test_encoder_cls_cased_cpu(void) { check_model("tests/fixtures/embed/st_cls", "tests/fixtures/embed/st_cls.json", KERN_KIND_CPU); }

/* a text's vector does not depend on its batch: batch of one vs a padded batch with longer neighbours */
static void test_encoder_batch_independent(void) {
    gk_err err;
    embed_model *m = embed_load(tl_path("tests/fixtures/embed/st_mean"), NULL, &err);
    CHECK(m, "%s", err.msg);
    if (!m) return;
    const char *tx[3] = {"x", "the quick brown fox jumped over the lazy dog", "hello world"};
    size_t C = embed_dim(m);
    float all[3 * 64], one[64];
    CHECK(C <= 64, "dim");
    CHECK(embed_texts(m, tx, NULL, 3, all, &err) == 0, "%s", err.msg);
    for (int i = 0; i < 3; i++) {
        CHECK(embed_texts(m, tx + i, NULL, 1, one, &err) == 0, "%s", err.msg);
        CHECK_ARRAYS("batch vs alone", all + i * C, one, C, 1e-5, 1e-5);
    }
    embed_free(m);
}

static void test_dot_rows(void) {
    gk_rng r; gk_rng_seed(&r, 5);
    size_t R = 37, C = 389;   /* awkward sizes: tails in both loops */
    float *x = gk_malloc(R * C * sizeof *x), *q = gk_malloc(C * sizeof *q), *sc = gk_malloc(R * sizeof *sc);
    int8_t *x8 = gk_malloc(R * C);
    float a[37], b[37], c8[37], d8[37];
    for (size_t i = 0; i < R * C; i++) { x[i] = gk_rng_normal(&r); x8[i] = (int8_t)(gk_rng_below(&r, 255) - 127); }
    for (size_t i = 0; i < C; i++) q[i] = gk_rng_normal(&r);
    for (size_t i = 0; i < R; i++) sc[i] = 0.01f * (float)(i + 1);
    kern_enc_dot_rows(a, x, q, R, C, 0); kern_enc_dot_rows(b, x, q, R, C, 1);
    kern_enc_dot_rows_i8(c8, x8, sc, q, R, C, 0); kern_enc_dot_rows_i8(d8, x8, sc, q, R, C, 1);
    for (size_t i = 0; i < R; i++) {
        double s = 0, s8 = 0;
        for (size_t k = 0; k < C; k++) { s += (double)x[i * C + k] * q[k]; s8 += (double)x8[i * C + k] * q[k]; }
        CHECK_CLOSE(a[i], s, 1e-3, 1e-5, "dot (fast)");
        CHECK_CLOSE(b[i], s, 1e-3, 1e-5, "dot (portable)");
        CHECK_CLOSE(c8[i], sc[i] * s8, 1e-3, 1e-5, "dot int8 (fast)");
        CHECK_CLOSE(d8[i], sc[i] * s8, 1e-3, 1e-5, "dot int8 (portable)");
    }
    free(x); free(q); free(sc); free(x8);
}

/* The encoder's attention and exact GELU (vectorised loops, src/kern/enc.c) against double-precision loops written
 * from the definitions, at awkward sizes: head width 7 (no vector multiple), lengths 1, T and in between, padding. */
static void test_attention_gelu_vs_double(void) {
    gk_rng r; gk_rng_seed(&r, 11);
    kern_backend *be = kern_backend_create(NULL, NULL);
    size_t B = 4, T = 13, NH = 3, hs = 7, C = NH * hs;
    int32_t lens[4] = {1, 13, 6, 12};
    float *qkv = kern_alloc(be, B * T * 3 * C * sizeof(float)), *out = kern_alloc(be, B * T * C * sizeof(float));
    for (size_t i = 0; i < B * T * 3 * C; i++) qkv[i] = 2 * gk_rng_normal(&r);
    for (size_t i = 0; i < B * T * C; i++) out[i] = NAN;   /* every element must be written, padding with 0 */
    kern_enc_attention_fwd(be, out, qkv, lens, B, T, C, NH);
    double worst = 0, p[13];
    for (size_t b = 0; b < B; b++)
        for (size_t h = 0; h < NH; h++)
            for (size_t i = 0; i < T; i++) {
                size_t L = (size_t)lens[b];
                const float *q = qkv + (b * T + i) * 3 * C + h * hs;
                double mx = -INFINITY, sum = 0;
                for (size_t j = 0; j < L; j++) {
                    const float *k = qkv + (b * T + j) * 3 * C + C + h * hs;
                    double s = 0;
                    for (size_t c = 0; c < hs; c++) s += (double)q[c] * k[c];
                    p[j] = s / sqrt((double)hs);
                    if (p[j] > mx) mx = p[j];
                }
                for (size_t j = 0; j < L; j++) { p[j] = exp(p[j] - mx); sum += p[j]; }
                for (size_t c = 0; c < hs; c++) {
                    double o = 0;
                    for (size_t j = 0; j < L && i < L; j++) o += p[j] / sum * qkv[(b * T + j) * 3 * C + 2 * C + h * hs + c];
                    double d = fabs(o - out[(b * T + i) * C + h * hs + c]);
                    if (!(d <= worst)) worst = d;   /* NaN propagates as a failure */
                }
            }
    CHECK(worst < 2e-5, "attention vs double: worst abs diff %.3g", worst);
    size_t n = 4099;   /* GELU: a chunk boundary and a tail; values across erf's range */
    float *x = kern_alloc(be, n * sizeof(float)), *y = kern_alloc(be, n * sizeof(float));
    for (size_t i = 0; i < n; i++) x[i] = -9.0f + 18.0f * (float)i / (float)(n - 1);
    kern_enc_gelu_erf_fwd(be, y, x, n);
    double wg = 0;
    for (size_t i = 0; i < n; i++) {
        double want = 0.5 * x[i] * (1 + erf(x[i] / sqrt(2.0))), d = fabs(y[i] - want) / (1 + fabs(want));
        if (!(d <= wg)) wg = d;
    }
    CHECK(wg < 5e-7, "GELU vs double: worst diff %.3g", wg);
    kern_free(be, qkv); kern_free(be, out); kern_free(be, x); kern_free(be, y);
    kern_backend_free(be);
}

static void test_bad_model_dirs(void) {
    gk_err err;
    char *d = tl_tmpdir("embed_bad");
    CHECK(embed_load(d, NULL, &err) == NULL && strstr(err.msg, "config.json"), "empty dir: %s", err.msg);
    char *p = gk_path_join(d, "config.json");
    const char *cfg = "{\"model_type\": \"bert\", \"vocab_size\": 395, \"hidden_size\": 30, \"num_hidden_layers\": 1,"
                      " \"num_attention_heads\": 4, \"intermediate_size\": 8}";
    gk_write_file_atomic(p, cfg, strlen(cfg), &err);
    CHECK(embed_load(d, NULL, &err) == NULL && strstr(err.msg, "divisible"), "heads: %s", err.msg);
    cfg = "{\"model_type\": \"gpt2\"}";
    gk_write_file_atomic(p, cfg, strlen(cfg), &err);
    CHECK(embed_load(d, NULL, &err) == NULL && strstr(err.msg, "model_type"), "model_type: %s", err.msg);
    cfg = "{\"model_type\": \"bert\", \"vocab_size\": 395, \"hidden_size\": 32, \"num_hidden_layers\": 1,"
          " \"num_attention_heads\": 4, \"intermediate_size\": 8}";
    gk_write_file_atomic(p, cfg, strlen(cfg), &err);
    CHECK(embed_load(d, NULL, &err) == NULL && strstr(err.msg, "vocab.txt"), "no vocab: %s", err.msg);
    char *v = gk_path_join(d, "vocab.txt");
    gk_write_file_atomic(v, "[PAD]\n[UNK]\n", 12, &err);
    CHECK(embed_load(d, NULL, &err) == NULL && strstr(err.msg, "[CLS]"), "no CLS: %s", err.msg);
    gk_write_file_atomic(v, "[PAD]\n[UNK]\n[CLS]\n[SEP]\n", 24, &err);
    CHECK(embed_load(d, NULL, &err) == NULL && strstr(err.msg, "model.safetensors"), "no weights: %s", err.msg);
    free(v); free(p); free(d);
}

int main(void) {
    TL_RUN(test_wordpiece_vs_hf);
    TL_RUN(test_wordpiece_offsets);
    TL_RUN(test_encoder_mean_normalized_ref);
    TL_RUN(test_encoder_mean_normalized_cpu);
    TL_RUN(test_encoder_cls_cased_ref);
    TL_RUN(test_encoder_cls_cased_cpu);
    TL_RUN(test_encoder_batch_independent);
    TL_RUN(test_dot_rows);
    TL_RUN(test_attention_gelu_vs_double);
    TL_RUN(test_bad_model_dirs);
    return tl_summary();
}
