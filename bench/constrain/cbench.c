/* cbench.c: the cost of constrained output (issue 17).
 *
 *  1. masks: a JSON-schema grammar on the GPT-2 vocabulary (50257 tokens) and on cl100k's (100277); a fixed
 *     document valid under the schema is replayed token by token, and at every step the allowed-token mask is
 *     computed — the fast path (cold: first pass, trie walks included; warm: a second document, caches
 *     filled) and the reference (every token fed to the state). Median and p90 ms per token.
 *  2. decode: a small checkpoint (--model DIR; the one llama.cpp runs too) samples 48 tokens at temperature 1,
 *     batch 1 and 8, with and without the schema grammar: ms per step and the grammar's overhead in ms; then a
 *     GPT-2-small-shaped (d12) decode step for scale, and that overhead as a share of it. Grammar compile
 *     time of a large schema (60 properties).
 * Usage: cbench [--model DIR] [--no-decode] [--write-gbnf FILE] (from the repository root; run.sh builds it). */
#include "constrain/constrain.h"
#include "infer/infer.h"
#include "kern/kern.h"
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *SCHEMA =
    "{\"type\":\"object\",\"properties\":{"
    "\"id\":{\"type\":\"integer\",\"minimum\":0},"
    "\"name\":{\"type\":\"string\",\"maxLength\":40},"
    "\"email\":{\"type\":\"string\",\"format\":\"email\"},"
    "\"tags\":{\"type\":\"array\",\"items\":{\"type\":\"string\"},\"maxItems\":8},"
    "\"address\":{\"type\":\"object\",\"properties\":{\"street\":{\"type\":\"string\"},\"city\":{\"type\":\"string\"},"
    "\"zip\":{\"type\":\"string\",\"pattern\":\"^[0-9]{5}$\"}},\"required\":[\"city\"],\"additionalProperties\":false},"
    "\"active\":{\"type\":\"boolean\"},\"score\":{\"type\":\"number\"},"
    "\"role\":{\"enum\":[\"admin\",\"user\",\"guest\"]}},"
    "\"required\":[\"id\",\"name\",\"tags\"],\"additionalProperties\":false}";

static const char *DOC[2] = {
    "{\"id\": 4123, \"name\": \"Ada Lovelace, Countess of Lovelace\", \"email\": \"ada@analytical.org\", "
    "\"tags\": [\"mathematics\", \"engines\", \"poetry of science\"], \"address\": {\"street\": \"12 St James's Square\", "
    "\"city\": \"London\", \"zip\": \"12345\"}, \"active\": true, \"score\": 98.25, \"role\": \"admin\"}",
    "{\"id\": 77, \"name\": \"Charles Babbage\", \"tags\": [\"difference engine\", \"cryptography\", \"postal reform\", \"lighthouses\"], "
    "\"address\": {\"city\": \"Marylebone\"}, \"active\": false, \"score\": -3.5e2, \"role\": \"user\"}",
};

static int cmp_d(const void *a, const void *b) { double x = *(const double *)a, y = *(const double *)b; return (x > y) - (x < y); }
static double pct(double *v, size_t n, double p) { qsort(v, n, sizeof *v, cmp_d); return v[(size_t)(p * (double)(n - 1))]; }

static constrain_grammar *schema_grammar(const char *schema, double *ms) {
    gk_err err;
    double t0 = gk_now();
    char *g = constrain_spec_to_gbnf(CONSTRAIN_JSON_SCHEMA, schema, strlen(schema), &err);
    if (!g) { fprintf(stderr, "schema: %s\n", err.msg); exit(1); }
    constrain_grammar *gr = constrain_grammar_parse(g, strlen(g), NULL, &err);
    if (ms) *ms = (gk_now() - t0) * 1e3;
    if (!gr) { fprintf(stderr, "grammar: %s\n", err.msg); exit(1); }
    free(g);
    return gr;
}

static void bench_masks(const char *vocab) {
    gk_err err;
    char path[256];
    snprintf(path, sizeof path, "data/vocab/%s.tiktoken", vocab);
    tok_tokenizer *t = tok_load(path, &err);
    if (!t) { fprintf(stderr, "%s\n", err.msg); exit(1); }
    double t0 = gk_now();
    constrain_vocab *v = constrain_vocab_new(t);
    double trie_ms = (gk_now() - t0) * 1e3;
    int32_t eot = tok_eot_id(t);
    constrain *c = constrain_new(schema_grammar(SCHEMA, NULL), v, &eot, 1);
    size_t W = (constrain_vocab_size(v) + 31) / 32;
    uint32_t *m = malloc(W * 4);
    double fast[2][512], ref[512];
    size_t nf[2] = {0, 0}, nr = 0;
    double cold_total = 0;
    for (int d = 0; d < 2; d++) {
        tok_ids ids = {0};
        tok_encode(t, DOC[d], strlen(DOC[d]), 0, &ids);
        constrain_state *s = constrain_state_new(c);
        for (size_t k = 0; k < ids.n && k < 512; k++) {
            double a = gk_now();
            size_t n = constrain_mask(c, s, m);
            double b = gk_now();
            fast[d][nf[d]++] = (b - a) * 1e3;
            if (d == 0) cold_total += (b - a) * 1e3;
            if (d == 1) { double r0 = gk_now(); constrain_mask_ref(c, s, m); ref[nr++] = (gk_now() - r0) * 1e3; }
            if (!n || constrain_accept_token(c, s, ids.ids[k])) { fprintf(stderr, "document %d rejected at token %zu\n", d, k); exit(1); }
        }
        if (!constrain_state_can_end(s)) { fprintf(stderr, "document %d incomplete\n", d); exit(1); }
        constrain_state_free(s);
        tok_ids_free(&ids);
    }
    printf("| %s (%zu tokens) | %.0f | %.3f / %.3f | %.1f | %.3f / %.3f | %.1f / %.1f |\n", vocab, constrain_vocab_size(v), trie_ms,
           pct(fast[0], nf[0], 0.5), pct(fast[0], nf[0], 0.9), cold_total, pct(fast[1], nf[1], 0.5), pct(fast[1], nf[1], 0.9),
           pct(ref, nr, 0.5), pct(ref, nr, 0.9));
    free(m);
    constrain_free(c);
    constrain_vocab_free(v);
    tok_free(t);
}

/* ms per decode step over 48 steps of B sequences, with or without a grammar (temperature 1, seeded) */
static double decode_ms(engine *e, const int32_t *p, size_t np, size_t B, constrain *c) {
    engine_gen_opts o;
    engine_gen_opts_default(&o);
    o.max_new = 48; o.samp.temperature = 1.0f; o.samp.seed = 7; o.default_stops = 0; o.grammar = c;
    engine_seq out[8];
    gk_err err;
    double t0 = gk_now();
    if (engine_generate(e, p, np, B, &o, out, &err)) { fprintf(stderr, "%s\n", err.msg); exit(1); }
    double dt = gk_now() - t0;
    size_t steps = 0;
    for (size_t k = 0; k < B; k++) { if (out[k].n > steps) steps = out[k].n; engine_seq_free(&out[k]); }
    return dt * 1e3 / (double)steps;
}

/* The model of model_dir (the small checkpoint both sides run) with and without the schema grammar, batch 1
 * and 8, medians of 5 alternating runs; then a d12 (GPT-2 small shape, random weights) decode step for scale. */
static void bench_decode(const char *model_dir) {
    gk_err err;
    tok_tokenizer *t = tok_load("data/vocab/r50k_base.tiktoken", &err);
    constrain_vocab *v = constrain_vocab_new(t);
    tok_ids p = {0};
    tok_encode(t, "The record as JSON:", 19, 0, &p);
    printf("| model | batch | unconstrained ms/step | JSON-schema constrained ms/step | overhead ms/step | overhead |\n|---|---|---|---|---|---|\n");
    double over[9] = {0};
    if (model_dir) {
        char *rec = NULL;
        gpt_model *m = gpt_load(model_dir, &rec, &err);
        free(rec);
        if (!m) { fprintf(stderr, "%s\n", err.msg); exit(1); }
        engine *e = engine_new(m, t, 8, 256);
        for (size_t B = 1; B <= 8; B *= 8) {
            constrain *c = constrain_new(schema_grammar(SCHEMA, NULL), v, NULL, 0);
            decode_ms(e, p.ids, p.n, B, c);   /* warm-up: the grammar's caches, the GEMM pick */
            decode_ms(e, p.ids, p.n, B, NULL);
            double a[5], b[5];
            for (int r = 0; r < 5; r++) { a[r] = decode_ms(e, p.ids, p.n, B, NULL); b[r] = decode_ms(e, p.ids, p.n, B, c); }
            double ma = pct(a, 5, 0.5), mb = pct(b, 5, 0.5);
            over[B] = mb - ma;
            printf("| %s (d%d, width %d, vocab %d) | %zu | %.2f | %.2f | %.2f | %+.1f%% |\n", model_dir, m->cfg.n_layer, m->cfg.n_embd,
                   m->cfg.vocab_size, B, ma, mb, mb - ma, 100.0 * (mb - ma) / ma);
            constrain_free(c);
        }
        engine_free(e);
        gpt_free(m);
    }
    /* scale: a GPT-2-small-shaped decode step */
    gpt_config cfg;
    gpt_config_default(&cfg);
    cfg.n_layer = 12; cfg.n_head = 12; cfg.n_embd = 768; cfg.vocab_size = 50257; cfg.n_ctx = 256;
    gpt_model *m = gpt_create_on(&cfg, NULL);
    gpt_init_random(m, 1);
    engine *e = engine_new(m, t, 8, 256);
    float *logits = malloc(8 * 50257 * sizeof(float));
    for (size_t B = 1; B <= 8; B *= 8) {
        size_t slots[8]; int32_t ids[8];
        for (size_t k = 0; k < B; k++) { slots[k] = k; ids[k] = 464; engine_reset(e, k); engine_feed(e, k, p.ids, p.n, NULL, &err); }
        double d[8];
        for (int r = 0; r < 8; r++) { double t0 = gk_now(); engine_decode_slots(e, slots, ids, B, logits); d[r] = (gk_now() - t0) * 1e3; }
        double md = pct(d, 8, 0.5);
        printf("| d12 (GPT-2 small shape, 50257 vocab): decode step only | %zu | %.2f | (%.2f + the grammar's %.2f) | %.2f | %+.1f%% (the small model's grammar cost over this step) |\n",
               B, md, md, over[B], over[B], 100.0 * over[B] / md);
    }
    free(logits);
    engine_free(e);
    gpt_free(m);
    tok_ids_free(&p);
    constrain_vocab_free(v);
    tok_free(t);
}

int main(int argc, char **argv) {
    int decode = 1;
    const char *model_dir = NULL, *gbnf_out = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--no-decode")) decode = 0;
        else if (!strcmp(argv[i], "--model") && i + 1 < argc) model_dir = argv[++i];
        else if (!strcmp(argv[i], "--write-gbnf") && i + 1 < argc) gbnf_out = argv[++i];
    }
    if (gbnf_out) {   /* the schema's grammar, for the llama.cpp side */
        gk_err err;
        char *g = constrain_spec_to_gbnf(CONSTRAIN_JSON_SCHEMA, SCHEMA, strlen(SCHEMA), &err);
        FILE *f = fopen(gbnf_out, "w");
        if (!g || !f) return 1;
        fputs(g, f); fclose(f); free(g);
        return 0;
    }
    /* compile time of a large schema: 60 properties of mixed types */
    cJSON *big = cJSON_CreateObject(), *props = cJSON_AddObjectToObject(big, "properties"), *req = cJSON_AddArrayToObject(big, "required");
    cJSON_AddStringToObject(big, "type", "object");
    for (int k = 0; k < 60; k++) {
        char name[32]; snprintf(name, sizeof name, "field_%d", k);
        cJSON *p = cJSON_AddObjectToObject(props, name);
        static const char *ty[] = { "string", "integer", "number", "boolean" };
        cJSON_AddStringToObject(p, "type", ty[k % 4]);
        if (k % 4 == 1) { cJSON_AddNumberToObject(p, "minimum", -k * 10); cJSON_AddNumberToObject(p, "maximum", k * 1000 + 7); }
        if (k % 3 == 0) cJSON_AddItemToArray(req, cJSON_CreateString(name));
    }
    char *bigs = cJSON_PrintUnformatted(big);
    double ms;
    constrain_grammar *g = schema_grammar(bigs, &ms);
    printf("large schema (60 properties, %zu bytes): schema -> GBNF -> compiled grammar in %.2f ms (%zu rules)\n\n", strlen(bigs), ms,
           constrain_grammar_n_rules(g));
    constrain_grammar_free(g);
    free(bigs);
    cJSON_Delete(big);

    printf("| vocabulary | trie build ms | fast mask, cold: median / p90 ms | cold total ms | fast mask, warm: median / p90 ms | reference mask: median / p90 ms |\n|---|---|---|---|---|---|\n");
    bench_masks("r50k_base");
    bench_masks("cl100k_base");
    if (decode) {
        printf("\n");
        bench_decode(model_dir);
    }
    return 0;
}
