/* cbench.c: the cost of constrained output (issue 17).
 *
 *  1. masks: a JSON-schema grammar on the GPT-2 vocabulary (50257 tokens), on cl100k's (100277) and on every
 *     --vocab FILE given (run.sh passes LLaMA 3's 128256-token vocabulary when it could fetch it); a fixed
 *     document valid under the schema is replayed token by token, and at every step the allowed-token mask is
 *     computed — the fast path (cold: first pass, trie walks included; warm: a second document, caches
 *     filled) and the reference (every token fed to the state). Median and p90 ms per token.
 *  2. decode, end to end through the engine: 48 tokens at temperature 1, batch 1 and 8, with and without the
 *     schema grammar (ms per generated token, the overhead in ms and %) on a small checkpoint (--model DIR; the one llama.cpp
 *     runs too), on a GPT-2-small-shaped model (d12, 50257 tokens) and, with --vocab-128k FILE, on a
 *     SmolLM-135M-shaped LLaMA with that 128256-token vocabulary (random weights: the cost, not the text, is
 *     measured). Grammar compile time of a large schema (60 properties).
 * Usage: cbench [--model DIR] [--vocab FILE]... [--vocab-128k FILE] [--no-decode | --decode-only] [--write-gbnf FILE]
 *        (from the repository root; run.sh builds it). */
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

static tok_tokenizer *load_vocab(const char *path) {
    gk_err err;
    tok_tokenizer *t = tok_load(path, &err);
    if (!t) { fprintf(stderr, "%s\n", err.msg); exit(1); }
    return t;
}
static const char *base_of(const char *path) { const char *b = strrchr(path, '/'); return b ? b + 1 : path; }

static void bench_masks(const char *path) {
    const char *vocab = base_of(path);
    tok_tokenizer *t = load_vocab(path);
    double t0 = gk_now();
    constrain_vocab *v = constrain_vocab_new(t);
    double trie_ms = (gk_now() - t0) * 1e3;
    int32_t eot = tok_eot_id(t);
    constrain *c = constrain_new(schema_grammar(SCHEMA, NULL), v, &eot, eot >= 0);
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

/* The grammar's own work per decode step, timed in isolation (robust to a loaded machine): B sequences each
 * sample 48 tokens from random logits (N(0, 2), temperature 1) under the schema grammar; timed per token is what
 * the engine adds for a constrained sequence — the logits copy and mask (constrain_apply), the budget check of
 * the drawn token (constrain_min_after) and the state's advance (constrain_accept_token); the sampling itself
 * is the same with or without a grammar and is not timed. Median and mean ms per step (the sum over B). */
static void bench_isolated(const char *path, double *mean_b1, double *mean_b8) {
    const char *vocab = base_of(path);
    tok_tokenizer *t = load_vocab(path);
    constrain_vocab *v = constrain_vocab_new(t);
    size_t V = constrain_vocab_size(v), W = (V + 31) / 32;
    float *logits = malloc(V * sizeof(float)), *masked = malloc(V * sizeof(float)), *probs = malloc(V * sizeof(float));
    uint32_t *words = malloc(W * 4);
    infer_sampling sp;
    infer_sampling_default(&sp);
    for (size_t B = 1; B <= 8; B *= 8) {
        constrain *c = constrain_new(schema_grammar(SCHEMA, NULL), v, NULL, 0);
        double steps_ms[3][48];
        size_t nsteps[3] = {0, 0, 0};
        for (int rep = 0; rep < 3; rep++) {   /* rep 0 warms the caches; reps 1-2 are reported */
            gk_rng rng;
            gk_rng_seed(&rng, 100 + (uint64_t)rep);
            constrain_state *st[8];
            int live[8];
            for (size_t b = 0; b < B; b++) { st[b] = constrain_state_new(c); live[b] = 1; }
            for (int step = 0; step < 48; step++) {
                double tot = 0;
                int any = 0;
                for (size_t b = 0; b < B; b++) {
                    if (!live[b]) continue;
                    any = 1;
                    for (size_t i = 0; i < V; i++) logits[i] = 2.0f * gk_rng_normal(&rng);
                    double t0 = gk_now();
                    memcpy(masked, logits, V * sizeof(float));
                    size_t n = constrain_apply(c, st[b], masked, V, words);
                    double t1 = gk_now();
                    if (!n) { live[b] = 0; tot += t1 - t0; continue; }
                    infer_sampling_probs(&sp, masked, V, NULL, NULL, probs);
                    int32_t id = infer_draw(probs, V, &rng);
                    double t2 = gk_now();
                    (void)constrain_min_after(c, st[b], id);
                    if (constrain_accept_token(c, st[b], id)) { fprintf(stderr, "rejected an allowed token\n"); exit(1); }
                    if (constrain_state_is_done(st[b])) live[b] = 0;
                    tot += (t1 - t0) + (gk_now() - t2);
                }
                if (!any) break;
                steps_ms[rep][nsteps[rep]++] = tot * 1e3;
            }
            for (size_t b = 0; b < B; b++) constrain_state_free(st[b]);
        }
        double all[96], sum = 0;
        size_t n = 0;
        for (int rep = 1; rep < 3; rep++) for (size_t k = 0; k < nsteps[rep]; k++) { all[n++] = steps_ms[rep][k]; sum += steps_ms[rep][k]; }
        double mean = sum / (double)n;
        printf("| %s (%zu tokens) | %zu | %.3f | %.3f | %.3f |\n", vocab, V, B, pct(all, n, 0.5), mean, pct(all, n, 0.9));
        if (B == 1) *mean_b1 = mean; else *mean_b8 = mean;
        constrain_free(c);
    }
    free(logits); free(masked); free(probs); free(words);
    constrain_vocab_free(v);
    tok_free(t);
}

/* ms per generated token at batch B: one request of B samples, up to 48 tokens each, temperature 1, seeded,
 * stepped by hand; timed are the steps after the first (which prefills) in which all B sequences drew a token,
 * so a constrained sequence that finishes early (its JSON complete) does not leave cheaper or dearer steps of
 * fewer rows in the comparison. */
static size_t g_step_tokens;
static int count_token(void *ctx, size_t seq, int32_t id, const char *text, size_t len) {
    (void)ctx; (void)seq; (void)id; (void)text; (void)len;
    g_step_tokens++;
    return 0;
}
static double decode_ms(engine *e, const int32_t *p, size_t np, size_t B, constrain *c) {
    engine_req_opts o;
    engine_req_opts_default(&o);
    o.gen.max_new = 48; o.gen.samp.temperature = 1.0f; o.gen.samp.seed = 7; o.gen.default_stops = 0; o.gen.grammar = c;
    o.gen.on_token = count_token;
    o.n = B;
    gk_err err;
    engine_req_id id = engine_admit(e, p, np, &o, &err);
    if (id < 0) { fprintf(stderr, "%s\n", err.msg); exit(1); }
    double full = 0;
    size_t tokens = 0;
    for (int step = 0;; step++) {
        g_step_tokens = 0;
        double t0 = gk_now();
        size_t left = engine_step(e);
        double dt = gk_now() - t0;
        if (step > 0 && g_step_tokens == B) { full += dt; tokens += B; }
        if (!left) break;
    }
    engine_seq out[8];
    if (engine_take_result(e, id, out, &err)) { fprintf(stderr, "%s\n", err.msg); exit(1); }
    for (size_t k = 0; k < B; k++) engine_seq_free(&out[k]);
    return tokens ? full * 1e3 / (double)tokens : 0;
}

/* One model with and without the schema grammar, batch 1 and 8: medians of 5 alternating runs of 48 tokens,
 * after a warm-up of each (the grammar's caches, the GEMM pick). */
static void bench_decode(const char *label, gpt_model *m, tok_tokenizer *t) {
    constrain_vocab *v = constrain_vocab_new(t);
    tok_ids p = {0};
    tok_encode(t, "The record as JSON:", 19, 0, &p);
    engine *e = engine_new(m, t, 8, 256);
    for (size_t B = 1; B <= 8; B *= 8) {
        constrain *c = constrain_new(schema_grammar(SCHEMA, NULL), v, NULL, 0);
        decode_ms(e, p.ids, p.n, B, c);
        decode_ms(e, p.ids, p.n, B, NULL);
        double a[5], b[5];
        for (int r = 0; r < 5; r++) { a[r] = decode_ms(e, p.ids, p.n, B, NULL); b[r] = decode_ms(e, p.ids, p.n, B, c); }
        double ma = pct(a, 5, 0.5), mb = pct(b, 5, 0.5);
        printf("| %s (%d layers, width %d, vocab %d) | %zu | %.2f | %.2f | %.2f | %+.1f%% |\n", label, m->cfg.n_layer, m->cfg.n_embd,
               m->cfg.vocab_size, B, ma, mb, mb - ma, 100.0 * (mb - ma) / ma);
        fflush(stdout);
        constrain_free(c);
    }
    engine_free(e);
    tok_ids_free(&p);
    constrain_vocab_free(v);
}

/* A model of a named size and vocabulary with random weights */
static gpt_model *random_model(int arch, const char *size, int vocab) {
    gk_err err;
    gpt_config cfg;
    if (arch == GPT_ARCH_LLAMA) gpt_config_llama(&cfg);
    else gpt_config_default(&cfg);
    if (gpt_config_from_name(&cfg, size, &err)) { fprintf(stderr, "%s\n", err.msg); exit(1); }
    cfg.vocab_size = vocab; cfg.n_ctx = 256; cfg.tied_head = 1;   /* SmolLM ties its head */
    gpt_model *m = gpt_create_on(&cfg, NULL);
    gpt_init_random(m, 1);
    return m;
}

static void bench_decode_all(const char *model_dir, const char *vocab_128k) {
    gk_err err;
    printf("| model | batch | unconstrained ms/token | JSON-schema constrained ms/token | overhead ms/token | overhead |\n|---|---|---|---|---|---|\n");
    tok_tokenizer *r50k = load_vocab("data/vocab/r50k_base.tiktoken");
    if (model_dir) {
        char *rec = NULL;
        gpt_model *m = gpt_load(model_dir, &rec, &err);
        free(rec);
        if (!m) { fprintf(stderr, "%s\n", err.msg); exit(1); }
        bench_decode(model_dir, m, r50k);
        gpt_free(m);
    }
    gpt_model *d12 = random_model(GPT_ARCH_GPT2, "d12", 50257);
    bench_decode("GPT-2 small shape, r50k_base", d12, r50k);
    gpt_free(d12);
    tok_free(r50k);
    if (vocab_128k) {
        tok_tokenizer *t = load_vocab(vocab_128k);
        gpt_model *m = random_model(GPT_ARCH_LLAMA, "llama-135m", (int)tok_vocab_size(t));
        bench_decode("SmolLM-135M shape (LLaMA), LLaMA 3 vocabulary", m, t);
        gpt_free(m);
        tok_free(t);
    }
}

int main(int argc, char **argv) {
    int decode = 1;
    const char *model_dir = NULL, *gbnf_out = NULL, *vocab_128k = NULL, *vocabs[8] = {"data/vocab/r50k_base.tiktoken", "data/vocab/cl100k_base.tiktoken"};
    size_t nvocab = 2;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--no-decode")) decode = 0;
        else if (!strcmp(argv[i], "--decode-only")) decode = 2;
        else if (!strcmp(argv[i], "--model") && i + 1 < argc) model_dir = argv[++i];
        else if (!strcmp(argv[i], "--write-gbnf") && i + 1 < argc) gbnf_out = argv[++i];
        else if (!strcmp(argv[i], "--vocab") && i + 1 < argc && nvocab < 8) vocabs[nvocab++] = argv[++i];
        else if (!strcmp(argv[i], "--vocab-128k") && i + 1 < argc) vocab_128k = vocabs[nvocab < 8 ? nvocab++ : 7] = argv[++i];
        else { fprintf(stderr, "cbench: unknown argument %s\n", argv[i]); return 2; }
    }
    if (gbnf_out) {   /* the schema's grammar, for the llama.cpp side */
        gk_err err;
        char *g = constrain_spec_to_gbnf(CONSTRAIN_JSON_SCHEMA, SCHEMA, strlen(SCHEMA), &err);
        FILE *f = fopen(gbnf_out, "w");
        if (!g || !f) return 1;
        fputs(g, f); fclose(f); free(g);
        return 0;
    }
    if (decode == 2) { bench_decode_all(model_dir, vocab_128k); return 0; }
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
    for (size_t k = 0; k < nvocab; k++) bench_masks(vocabs[k]);
    if (decode) {
        printf("\nThe grammar's own work per decode step (mask + budget check + advance), timed in isolation:\n\n");
        printf("| vocabulary | batch | median ms/step | mean ms/step | p90 ms/step |\n|---|---|---|---|---|\n");
        for (size_t k = 0; k < nvocab; k++) { double m1, m8; bench_isolated(vocabs[k], &m1, &m8); }
        printf("\nEnd to end through the engine (up to 48 tokens per sequence at temperature 1; ms per token over the steps in which every sequence of the batch was live; medians of 5 alternating runs):\n\n");
        bench_decode_all(model_dir, vocab_128k);
    }
    return 0;
}
