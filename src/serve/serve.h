/* serve: an OpenAI-compatible HTTP server over the engine's scheduler, and a web chat page.
 *
 * Routes: POST /v1/chat/completions, POST /v1/completions (non-streaming JSON, or Server-Sent Events ending in
 * "data: [DONE]"), GET /v1/models, GET /health, GET /metrics (Prometheus text), GET / (the page, compiled in).
 * Errors use OpenAI's shape {"error":{"message","type","param","code"}} with the matching status code.
 *
 * Threads: libmicrohttpd runs one thread per connection; one engine thread owns the engine. A handler parses
 * and renders the request (this file's serve_req_parse: no engine needed), hands a job to the engine thread
 * and waits on the job's condition variable for streamed text and the final result. Requests share decode
 * steps (continuous batching): the engine thread admits new jobs and cancels abandoned ones between steps.
 * Description, flags and examples: docs/serve.md.
 *
 * The HTTP part needs libmicrohttpd (GK_HAVE_MHD, detected by the Makefile); without it serve_run says so.
 * The request parser and the response builders below are always built (they are fuzzed and tested alone).
 */
#ifndef GK_SERVE_H
#define GK_SERVE_H

#include <stddef.h>
#include <stdint.h>
#include <cjson/cJSON.h>
#include "core/core.h"
#include "data/data.h"
#include "infer/infer.h"
#include "tok/tok.h"

/* ---------------------------------------------------------------- the server */
typedef struct {
    const char *model_dir;      /* checkpoint directory (required) */
    const char *adapter;        /* a LoRA adapter (PEFT layout) applied unmerged on top of model_dir; NULL = none */
    const char *model_name;     /* the id /v1/models lists and responses carry; NULL = the directory's basename */
    const char *tok_path;       /* tokenizer override; NULL = the one recorded in the checkpoint */
    const char *host;           /* default "127.0.0.1" */
    int port;                   /* default 8080; 0 = any free port (the ready line says which) */
    const char *api_key;        /* NULL = no authentication; else "Authorization: Bearer KEY" on /v1 and /metrics */
    size_t slots;               /* KV slots: sequences decoded together (default 8) */
    size_t max_queue;           /* requests waiting beyond the slots before 429 (default 64) */
    int no_prefix_cache;        /* 1: every request prefills its whole prompt (default 0: a request reuses the
                                   longest prefix of its prompt that a free slot's cache holds) */
    size_t ctx;                 /* tokens per sequence (0 = the model's n_ctx) */
    size_t max_body;            /* bytes of a request body (default 1 MiB) -> 413 */
    size_t max_header;          /* bytes of a request's headers (libmicrohttpd's per-connection memory; 32 KiB) */
    size_t max_depth;           /* JSON nesting depth (default 32) -> 400 */
    size_t max_messages;        /* messages in a chat request (default 256) -> 400 */
    size_t max_conns;           /* open connections (default 256); beyond, new ones are refused */
    double timeout_s;           /* a request's whole generation time (default 300): then it ends with "length" */
    double read_timeout_s;      /* the whole request (headers and body) must arrive within this (default 10) */
    double idle_timeout_s;      /* a connection idle this long is closed (default 30) */
    double grace_s;             /* SIGTERM: in-flight requests may finish this long, then are cancelled (10) */
    double step_delay_ms;       /* testing: a pause after every decode step, so queues and cancels can be watched */
    const char *embedder;       /* a sentence-embedding model directory: POST /v1/embeddings (NULL = route off) */
    const char *retrieve;       /* a retrieval index (gptkit index build): every chat request's last user message
                                   gets the index's top chunks before it, as chat --retrieve does (NULL = off) */
    size_t retrieve_k;          /* chunks at most (default 3) */
    size_t retrieve_budget;     /* chat-model tokens the chunks may take (0 = a quarter of the context) */
} serve_opts;
void serve_opts_default(serve_opts *o);

/* Opens the model, listens, prints "gptkit serve: listening on http://HOST:PORT" on stdout when ready, and
 * serves until SIGTERM or SIGINT (graceful: stop accepting, let in-flight requests finish within grace_s,
 * cancel the rest). Returns 0 after a clean shutdown, -1 with err if it could not start. */
int serve_run(const serve_opts *o, gk_err *err);

/* ---------------------------------------------------------------- requests (api.c) */
/* What a request body turns into: the rendered prompt, the generation settings, and what to send back. */
typedef struct {
    int chat;                   /* 1: /v1/chat/completions; 0: /v1/completions */
    int stream, include_usage;  /* SSE; stream_options.include_usage */
    int logprobs;               /* per-token log-probs in the answer */
    int top_logprobs;           /* alternatives asked for (see docs/serve.md: only the sampled token is listed) */
    int tools;                  /* tools were given: <|tool_call|>...<|tool_call_end|> ends the turn -> tool_calls */
    int force_call;             /* tool_choice "required" or a named function: the reply starts with <|tool_call|>
                                   (appended to the prompt; the server puts it back in front of the text) */
    int echo;                   /* completions: the prompt text is prepended to the answer */
    size_t n;                   /* choices (samples of the prompt) */
    size_t max_tokens;          /* generated tokens per choice */
    infer_sampling samp;
    char *stops[4]; size_t n_stops;   /* stop strings (owned) */
    int32_t *prompt; size_t n_prompt; /* rendered prompt ids (owned) */
    char *prompt_text;          /* completions: the prompt as given (for echo; owned) */
    constrain_grammar *grammar; /* response_format json_object / json_schema: the compiled grammar (owned until the
                                   engine thread binds it to the vocabulary), NULL = unconstrained */
    char *grammar_text;         /* its GBNF text (owned): the engine thread's cache key */
} serve_req;
void serve_req_free(serve_req *r);

typedef struct {
    size_t max_depth, max_messages;
    size_t ctx;                 /* tokens per sequence: prompt + max_tokens must fit */
    size_t max_n;               /* the most choices (the engine's slots) */
    /* Retrieval (serve_opts.retrieve): when set, a chat request's last user message is replaced by
     * augment(augment_ctx, text) (malloc'd; NULL with err: the request fails with 500) before rendering. */
    char *(*augment)(void *augment_ctx, const char *question, gk_err *err);
    void *augment_ctx;
} serve_limits;

/* An error for the client: HTTP status, OpenAI error type and the offending parameter ("" when none). */
typedef struct {
    int status;
    char type[40];
    char param[64];
    gk_err err;
} serve_error;

/* Parses a request body (len bytes, not NUL-terminated) for /v1/chat/completions (chat = 1) or
 * /v1/completions, and renders the prompt with tok and sp (chat: chat_render with the generation prompt;
 * tools are described in the system message; tool results become tool messages). Unknown fields are ignored.
 * Returns 0, or -1 with e filled (400 for every problem the client can fix: malformed JSON, invalid UTF-8,
 * nesting deeper than lim->max_depth, wrong types, values out of range, no messages, prompt + max_tokens
 * over the context). */
int serve_req_parse(serve_req *r, const char *body, size_t len, int chat, const serve_limits *lim,
                    const tok_tokenizer *tok, const chat_specials *sp, serve_error *e);

/* The single place response_format is handled: {"type":"text"} (nothing), {"type":"json_object"} (any JSON
 * object), {"type":"json_schema","json_schema":{"schema":{...}}} (JSON valid under the schema): r->grammar is
 * set. A schema the converter cannot take is a 400 naming the keyword and where it is. Returns 0 or -1 with e. */
int serve_response_format(const cJSON *rf, serve_req *r, serve_error *e);

/* Deepest nesting of arrays/objects in a JSON text (strings skipped); stops counting past limit + 1. */
size_t serve_json_depth(const char *s, size_t n, size_t limit);

/* ---------------------------------------------------------------- embeddings (api.c, api_out.c) */
#define SERVE_EMBED_MAX_INPUTS 2048   /* texts per request, as OpenAI's API allows */
typedef struct {
    char **texts; size_t n;     /* "input": one string or an array of strings (owned, NUL-terminated) */
    int base64;                 /* "encoding_format": "base64" (little-endian float32 bytes) or "float" (default) */
    long dimensions;            /* "dimensions" if given (must then equal the model's), else 0 */
} serve_embed_req;
/* Parses a /v1/embeddings body. Token-id inputs, more than SERVE_EMBED_MAX_INPUTS texts, an
 * unknown encoding_format: 400 naming the field. Returns 0 or -1 with e. */
int serve_embed_parse(serve_embed_req *r, const char *body, size_t len, const serve_limits *lim, serve_error *e);
void serve_embed_req_free(serve_embed_req *r);
/* The "list" answer: data[i] = {"object":"embedding","index":i,"embedding": vecs[i] as numbers or base64},
 * model, usage (tokens: the embedder's tokens over all inputs, counted as prompt tokens). */
cJSON *serve_embed_response(const float *vecs, size_t n, size_t dim, int base64, const char *model, size_t tokens);

/* ---------------------------------------------------------------- responses (api.c) */
/* OpenAI's error body: {"error":{"message","type","param","code"}} (malloc'd string). */
char *serve_error_json(const serve_error *e);
void serve_error_set(serve_error *e, int status, const char *type, const char *param, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

/* The whole answer to a non-streaming request: "chat.completion" or "text_completion" with choices[n] made from
 * out[n] (tool calls split out when r->tools), usage (`cached` of the prompt's tokens reused from a slot's
 * cache), and log-probs when asked. Returns a cJSON the caller deletes. */
cJSON *serve_response(const serve_req *r, const engine_seq *out, const char *id, long created, const char *model,
                      const tok_tokenizer *tok, size_t cached);
/* OpenAI's finish_reason for a sequence: "stop", "length" or "tool_calls". */
const char *serve_finish_reason(const serve_req *r, const engine_seq *s);
/* Splits an assistant text at <|tool_call|>: *content gets the text before it (malloc'd; NULL if empty) and
 * the call {"name","arguments"} becomes OpenAI's tool_calls array (returned; NULL when the text holds no
 * parseable call, and then *content is the whole text). */
cJSON *serve_tool_calls(const char *text, const char *id, char **content);

/* One SSE chunk object (the caller prints "data: " + JSON + "\n\n"): a delta for choice `index` with text
 * (role on the first chunk of a chat choice), or with finish set the choice's last chunk (tool_calls given
 * separately), or with usage_only the final usage chunk (choices []). */
cJSON *serve_chunk(const serve_req *r, const char *id, long created, const char *model, size_t index, int first,
                   const char *text, size_t len, const char *finish, cJSON *tool_calls);
cJSON *serve_usage(size_t prompt_tokens, size_t completion_tokens, size_t cached_tokens);

/* The compiled-in web page (src/serve/page.html, turned into a C array at build time). */
extern const unsigned char serve_page_html[];
extern const size_t serve_page_html_len;
#endif
