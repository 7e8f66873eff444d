/* api_out.c: the engine's results in OpenAI's shapes — chat.completion / text_completion objects, their SSE
 * chunks, usage, log-probs and tool calls. */
#include "serve/serve.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

cJSON *serve_usage(size_t prompt_tokens, size_t completion_tokens, size_t cached_tokens) {
    cJSON *u = cJSON_CreateObject();
    cJSON_AddNumberToObject(u, "prompt_tokens", (double)prompt_tokens);
    cJSON_AddNumberToObject(u, "completion_tokens", (double)completion_tokens);
    cJSON_AddNumberToObject(u, "total_tokens", (double)(prompt_tokens + completion_tokens));
    cJSON *d = cJSON_AddObjectToObject(u, "prompt_tokens_details");
    cJSON_AddNumberToObject(d, "cached_tokens", (double)cached_tokens);
    return u;
}

const char *serve_finish_reason(const serve_req *r, const engine_seq *s) {
    if (r->tools && s->text && strstr(s->text, TOK_TOOL_CALL)) {
        char *content = NULL;
        cJSON *calls = serve_tool_calls(s->text, "x", &content);
        free(content);
        if (calls) { cJSON_Delete(calls); return "tool_calls"; }
    }
    switch (s->finish) {
    case ENGINE_FINISH_STOP_TOKEN: case ENGINE_FINISH_STOP_STRING: return "stop";
    default: return "length";   /* max_tokens, the context, or the request's time limit */
    }
}

cJSON *serve_tool_calls(const char *text, const char *id, char **content) {
    const char *at = strstr(text, TOK_TOOL_CALL);
    *content = NULL;
    if (!at) { *content = gk_strdup(text); return NULL; }
    const char *js = at + strlen(TOK_TOOL_CALL);
    const char *end = strstr(js, TOK_TOOL_CALL_END);
    size_t n = end ? (size_t)(end - js) : strlen(js);
    cJSON *call = cJSON_ParseWithLength(js, n);
    const cJSON *nm = cJSON_GetObjectItemCaseSensitive(call, "name"), *ar = cJSON_GetObjectItemCaseSensitive(call, "arguments");
    if (!cJSON_IsObject(call) || !cJSON_IsString(nm)) {
        cJSON_Delete(call);
        *content = gk_strdup(text);
        return NULL;
    }
    cJSON *calls = cJSON_CreateArray(), *c = cJSON_CreateObject(), *f;
    char cid[96];
    snprintf(cid, sizeof cid, "call_%s", id);
    cJSON_AddStringToObject(c, "id", cid);
    cJSON_AddStringToObject(c, "type", "function");
    f = cJSON_AddObjectToObject(c, "function");
    cJSON_AddStringToObject(f, "name", nm->valuestring);
    /* OpenAI sends arguments as a JSON text */
    char *args = ar ? (cJSON_IsString(ar) ? gk_strdup(ar->valuestring) : cJSON_PrintUnformatted(ar)) : gk_strdup("{}");
    cJSON_AddStringToObject(f, "arguments", args);
    free(args);
    cJSON_AddItemToArray(calls, c);
    cJSON_Delete(call);
    size_t pre = (size_t)(at - text);
    while (pre && (text[pre - 1] == ' ' || text[pre - 1] == '\n')) pre--;
    if (pre) {
        *content = gk_malloc(pre + 1);
        memcpy(*content, text, pre);
        (*content)[pre] = 0;
    }
    return calls;
}

/* A token's text for log-prob lists: its bytes when they are valid UTF-8 on their own, else U+FFFD (the raw
 * bytes go in "bytes"). malloc'd. */
static char *token_text(const tok_tokenizer *tok, int32_t id, cJSON **bytes) {
    size_t n = 0;
    const uint8_t *b = tok_token_bytes(tok, id, &n);
    if (!b) n = 0;
    if (bytes) {
        *bytes = cJSON_CreateArray();
        for (size_t i = 0; i < n; i++) cJSON_AddItemToArray(*bytes, cJSON_CreateNumber(b[i]));
    }
    size_t bad;
    if (n && !gk_utf8_valid((const char *)b, n, &bad)) return gk_strdup("\xEF\xBF\xBD");
    char *s = gk_malloc(n + 1);
    if (n) memcpy(s, b, n);
    s[n] = 0;
    return s;
}

/* Tokens of s that are part of the answer: a stop token that ended it is not. */
static size_t answer_tokens(const engine_seq *s) {
    return s->finish == ENGINE_FINISH_STOP_TOKEN && s->n ? s->n - 1 : s->n;
}

/* chat: {"content": [{token, logprob, bytes, top_logprobs}]}; top_logprobs lists the sampled token only (the
 * engine does not hand out the whole distribution). */
static cJSON *chat_logprobs(const serve_req *r, const engine_seq *s, const tok_tokenizer *tok) {
    cJSON *lp = cJSON_CreateObject(), *arr = cJSON_AddArrayToObject(lp, "content");
    for (size_t i = 0; i < answer_tokens(s); i++) {
        cJSON *t = cJSON_CreateObject(), *bytes;
        char *txt = token_text(tok, s->ids[i], &bytes);
        cJSON_AddStringToObject(t, "token", txt);
        cJSON_AddNumberToObject(t, "logprob", s->logprob[i]);
        cJSON_AddItemToObject(t, "bytes", bytes);
        cJSON *top = cJSON_AddArrayToObject(t, "top_logprobs");
        if (r->top_logprobs > 0) {
            cJSON *a = cJSON_CreateObject();
            cJSON_AddStringToObject(a, "token", txt);
            cJSON_AddNumberToObject(a, "logprob", s->logprob[i]);
            cJSON_AddItemToObject(a, "bytes", cJSON_Duplicate(bytes, 1));
            cJSON_AddItemToArray(top, a);
        }
        free(txt);
        cJSON_AddItemToArray(arr, t);
    }
    cJSON_AddNullToObject(lp, "refusal");
    return lp;
}

/* completions: {"tokens", "token_logprobs", "top_logprobs", "text_offset"} */
static cJSON *text_logprobs(const serve_req *r, const engine_seq *s, const tok_tokenizer *tok, size_t offset) {
    cJSON *lp = cJSON_CreateObject();
    cJSON *toks = cJSON_AddArrayToObject(lp, "tokens"), *lps = cJSON_AddArrayToObject(lp, "token_logprobs");
    cJSON *tops = cJSON_AddArrayToObject(lp, "top_logprobs"), *offs = cJSON_AddArrayToObject(lp, "text_offset");
    for (size_t i = 0; i < answer_tokens(s); i++) {
        char *txt = token_text(tok, s->ids[i], NULL);
        cJSON_AddItemToArray(toks, cJSON_CreateString(txt));
        cJSON_AddItemToArray(lps, cJSON_CreateNumber(s->logprob[i]));
        cJSON *top = cJSON_CreateObject();
        if (r->top_logprobs > 0) cJSON_AddNumberToObject(top, txt, s->logprob[i]);
        cJSON_AddItemToArray(tops, top);
        cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)offset));
        offset += tok_text_len(tok, s->ids[i]);
        free(txt);
    }
    return lp;
}

static cJSON *chat_choice(const serve_req *r, const engine_seq *s, size_t k, const char *id, const tok_tokenizer *tok) {
    cJSON *c = cJSON_CreateObject(), *msg;
    cJSON_AddNumberToObject(c, "index", (double)k);
    msg = cJSON_AddObjectToObject(c, "message");
    cJSON_AddStringToObject(msg, "role", "assistant");
    const char *text = s->text ? s->text : "";
    char *content = NULL;
    cJSON *calls = NULL;
    if (r->tools) {
        char cid[80];
        snprintf(cid, sizeof cid, "%s_%zu", id, k);
        calls = serve_tool_calls(text, cid, &content);
    } else content = gk_strdup(text);
    if (content) cJSON_AddStringToObject(msg, "content", content); else cJSON_AddNullToObject(msg, "content");
    free(content);
    cJSON_AddNullToObject(msg, "refusal");
    if (calls) cJSON_AddItemToObject(msg, "tool_calls", calls);
    if (r->logprobs) cJSON_AddItemToObject(c, "logprobs", chat_logprobs(r, s, tok));
    else cJSON_AddNullToObject(c, "logprobs");
    cJSON_AddStringToObject(c, "finish_reason", serve_finish_reason(r, s));
    return c;
}

cJSON *serve_response(const serve_req *r, const engine_seq *out, const char *id, long created, const char *model,
                      const tok_tokenizer *tok, size_t cached) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", id);
    cJSON_AddStringToObject(o, "object", r->chat ? "chat.completion" : "text_completion");
    cJSON_AddNumberToObject(o, "created", (double)created);
    cJSON_AddStringToObject(o, "model", model);
    cJSON *ch = cJSON_AddArrayToObject(o, "choices");
    size_t gen = 0;
    for (size_t k = 0; k < r->n; k++) {
        const engine_seq *s = &out[k];
        gen += s->n;
        if (r->chat) { cJSON_AddItemToArray(ch, chat_choice(r, s, k, id, tok)); continue; }
        cJSON *c = cJSON_CreateObject();
        size_t pre = r->echo && r->prompt_text ? strlen(r->prompt_text) : 0;
        tok_bytes t = {0};
        if (pre) tok_bytes_append(&t, r->prompt_text, pre);
        if (s->text) tok_bytes_append(&t, s->text, s->text_len);
        tok_bytes_append(&t, "", 1);
        cJSON_AddStringToObject(c, "text", (const char *)t.data);
        tok_bytes_free(&t);
        cJSON_AddNumberToObject(c, "index", (double)k);
        if (r->logprobs) cJSON_AddItemToObject(c, "logprobs", text_logprobs(r, s, tok, pre));
        else cJSON_AddNullToObject(c, "logprobs");
        cJSON_AddStringToObject(c, "finish_reason", serve_finish_reason(r, s));
        cJSON_AddItemToArray(ch, c);
    }
    cJSON_AddItemToObject(o, "usage", serve_usage(r->n_prompt, gen, cached));
    cJSON_AddStringToObject(o, "system_fingerprint", "gptkit");
    return o;
}

cJSON *serve_chunk(const serve_req *r, const char *id, long created, const char *model, size_t index, int first,
                   const char *text, size_t len, const char *finish, cJSON *tool_calls) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", id);
    cJSON_AddStringToObject(o, "object", r->chat ? "chat.completion.chunk" : "text_completion");
    cJSON_AddNumberToObject(o, "created", (double)created);
    cJSON_AddStringToObject(o, "model", model);
    cJSON_AddStringToObject(o, "system_fingerprint", "gptkit");
    cJSON *ch = cJSON_AddArrayToObject(o, "choices");
    if (index == (size_t)-1) { cJSON_AddNullToObject(o, "usage"); return o; }   /* the caller adds usage */
    char *t = gk_malloc(len + 1);
    if (len) memcpy(t, text, len);
    t[len] = 0;
    cJSON *c = cJSON_CreateObject();
    cJSON_AddNumberToObject(c, "index", (double)index);
    if (r->chat) {
        cJSON *d = cJSON_AddObjectToObject(c, "delta");
        if (first) cJSON_AddStringToObject(d, "role", "assistant");
        if (len || (first && !finish)) cJSON_AddStringToObject(d, "content", t);
        if (tool_calls) {
            int i = 0;
            for (cJSON *tc = tool_calls->child; tc; tc = tc->next) cJSON_AddNumberToObject(tc, "index", i++);
            cJSON_AddItemToObject(d, "tool_calls", tool_calls);
        }
    } else {
        cJSON_AddStringToObject(c, "text", t);
        if (tool_calls) cJSON_Delete(tool_calls);
    }
    free(t);
    cJSON_AddNullToObject(c, "logprobs");
    if (finish) cJSON_AddStringToObject(c, "finish_reason", finish); else cJSON_AddNullToObject(c, "finish_reason");
    cJSON_AddItemToArray(ch, c);
    return o;
}

cJSON *serve_embed_response(const float *vecs, size_t n, size_t dim, int base64, const char *model, size_t tokens) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "object", "list");
    cJSON *data = cJSON_AddArrayToObject(o, "data");
    char *b64 = base64 ? gk_malloc(4 * ((dim * 4 + 2) / 3) + 1) : NULL;
    uint8_t *bytes = base64 ? gk_malloc(dim * 4) : NULL;
    for (size_t i = 0; i < n; i++) {
        const float *v = vecs + i * dim;
        cJSON *d = cJSON_CreateObject();
        cJSON_AddStringToObject(d, "object", "embedding");
        cJSON_AddNumberToObject(d, "index", (double)i);
        if (base64) {   /* float32, little-endian, as OpenAI's clients decode it */
            for (size_t k = 0; k < dim; k++) {
                uint32_t u;
                memcpy(&u, &v[k], 4);
                for (int b = 0; b < 4; b++) bytes[4 * k + (size_t)b] = (uint8_t)(u >> (8 * b));
            }
            b64[gk_b64_encode(bytes, dim * 4, b64)] = 0;
            cJSON_AddStringToObject(d, "embedding", b64);
        } else {
            cJSON *arr = cJSON_AddArrayToObject(d, "embedding");
            for (size_t k = 0; k < dim; k++) cJSON_AddItemToArray(arr, cJSON_CreateNumber((double)v[k]));
        }
        cJSON_AddItemToArray(data, d);
    }
    free(b64); free(bytes);
    cJSON_AddStringToObject(o, "model", model);
    cJSON *u = cJSON_CreateObject();
    cJSON_AddNumberToObject(u, "prompt_tokens", (double)tokens);
    cJSON_AddNumberToObject(u, "total_tokens", (double)tokens);
    cJSON_AddItemToObject(o, "usage", u);
    return o;
}
