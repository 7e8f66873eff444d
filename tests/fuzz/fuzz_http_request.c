/* fuzz_http_request.c: request bodies of `gptkit serve` (src/serve/api.c) — the first byte picks the route
 * (even: /v1/chat/completions, odd: /v1/completions), the rest is the body. A body that parses is answered
 * with a made-up generation (its text taken from the input, so tool-call parsing sees fuzzed text too)
 * through the same response and SSE-chunk builders the server uses; every body is also parsed and answered as
 * a /v1/embeddings request. */
#include "serve/serve.h"
#include "fuzz_common.h"

static tok_tokenizer *g_tok;
static chat_specials g_sp;

static void setup(void) {
    static const char text[] = "The capital of France is Paris. What do bees make? Bees make honey. {\"name\": 1}";
    tok_train_opts o;
    tok_train_opts_default(&o);
    o.vocab_size = 300;
    gk_err err;
    tok_trainer *tr = tok_trainer_new(&o, &err);
    tok_trainer_feed(tr, text, sizeof text - 1);
    g_tok = tok_trainer_finish(tr, &err);
    tok_trainer_free(tr);
    if (!g_tok || chat_specials_resolve(g_tok, 0, &g_sp, &err)) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n) {
    if (!g_tok) setup();
    if (n < 1) return 0;
    int chat = !(data[0] & 1);
    const char *body = (const char *)data + 1;
    size_t len = n - 1;
    serve_limits lim = { .max_depth = 32, .max_messages = 64, .ctx = 512, .max_n = 4 };
    serve_req r;
    serve_error e;
    /* the same body as a /v1/embeddings request: parsed, answered with made-up vectors of dimension 3 */
    serve_embed_req q;
    if (serve_embed_parse(&q, body, len, &lim, &e)) free(serve_error_json(&e));
    else {
        float *v = calloc(q.n * 3 + 1, sizeof(float));
        for (size_t i = 0; i < q.n * 3; i++) v[i] = (float)strlen(q.texts[i / 3]) - 1.5f;
        cJSON_Delete(serve_embed_response(v, q.n, 3, q.base64, "m", q.n));
        free(v);
        serve_embed_req_free(&q);
    }
    if (serve_req_parse(&r, body, len, chat, &lim, g_tok, &g_sp, &e)) {
        free(serve_error_json(&e));
        return 0;
    }
    /* a made-up answer: the prompt's ids back, text = the body cut at its first NUL */
    engine_seq *out = calloc(r.n, sizeof *out);
    for (size_t k = 0; k < r.n; k++) {
        size_t m = r.n_prompt < 16 ? r.n_prompt : 16;
        out[k].ids = malloc(m * sizeof(int32_t) + 1);
        out[k].logprob = malloc(m * sizeof(float) + 1);
        for (size_t i = 0; i < m; i++) { out[k].ids[i] = r.prompt[i]; out[k].logprob[i] = -1.0f; }
        out[k].n = m;
        out[k].text = fuzz_str(data + 1, strnlen(body, len));
        out[k].text_len = strlen(out[k].text);
        out[k].finish = (engine_finish)(k % 5);
    }
    cJSON_Delete(serve_response(&r, out, "fuzz", 0, "m", g_tok, 0));
    cJSON_Delete(serve_chunk(&r, "fuzz", 0, "m", 0, 1, out[0].text, out[0].text_len, serve_finish_reason(&r, &out[0]), NULL));
    for (size_t k = 0; k < r.n; k++) { free(out[k].ids); free(out[k].logprob); free(out[k].text); }
    free(out);
    serve_req_free(&r);
    return 0;
}
