/* api.c: the OpenAI request and response shapes — request bodies parsed (cJSON) into a rendered prompt and
 * generation settings, and the engine's results written back as chat.completion / text_completion objects,
 * SSE chunks and error bodies. Nothing here touches HTTP or the engine, so it is fuzzed on its own
 * (tests/fuzz/fuzz_http_request.c). */
#include "serve/serve.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void serve_error_set(serve_error *e, int status, const char *type, const char *param, const char *fmt, ...) {
    e->status = status;
    snprintf(e->type, sizeof e->type, "%s", type);
    snprintf(e->param, sizeof e->param, "%s", param ? param : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->err.msg, sizeof e->err.msg, fmt, ap);
    va_end(ap);
}

/* 400 invalid_request_error naming the parameter; returns -1 */
#define BAD(param, ...) (serve_error_set(e, 400, "invalid_request_error", (param), __VA_ARGS__), -1)

char *serve_error_json(const serve_error *e) {
    cJSON *root = cJSON_CreateObject(), *o = cJSON_AddObjectToObject(root, "error");
    cJSON_AddStringToObject(o, "message", e->err.msg);
    cJSON_AddStringToObject(o, "type", e->type[0] ? e->type : "invalid_request_error");
    if (e->param[0]) cJSON_AddStringToObject(o, "param", e->param); else cJSON_AddNullToObject(o, "param");
    cJSON_AddNullToObject(o, "code");
    char *s = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    return s;
}

void serve_req_free(serve_req *r) {
    if (!r) return;
    for (size_t i = 0; i < r->n_stops; i++) free(r->stops[i]);
    free(r->prompt); free(r->prompt_text);
    constrain_grammar_free(r->grammar);
    free(r->grammar_text);
    memset(r, 0, sizeof *r);
}

size_t serve_json_depth(const char *s, size_t n, size_t limit) {
    size_t depth = 0, max = 0;
    int in_str = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (in_str) {
            if (c == '\\') i++;
            else if (c == '"') in_str = 0;
        } else if (c == '"') in_str = 1;
        else if (c == '[' || c == '{') { if (++depth > max) max = depth; if (max > limit) return max; }
        else if ((c == ']' || c == '}') && depth) depth--;
    }
    return max;
}

/* ---------------------------------------------------------------- typed fields */

static const char *json_type_name(const cJSON *v) {
    if (cJSON_IsString(v)) return "a string";
    if (cJSON_IsNumber(v)) return "a number";
    if (cJSON_IsBool(v)) return "a boolean";
    if (cJSON_IsNull(v)) return "null";
    if (cJSON_IsArray(v)) return "an array";
    return "an object";
}

/* Optional number field in [lo, hi]; absent or null leaves *out. */
static int get_num(const cJSON *o, const char *name, double lo, double hi, double *out, serve_error *e) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    if (!v || cJSON_IsNull(v)) return 0;
    if (!cJSON_IsNumber(v)) return BAD(name, "%s: expected a number, got %s", name, json_type_name(v));
    double d = v->valuedouble;
    if (!(d >= lo && d <= hi)) return BAD(name, "%s: %g is out of range [%g, %g]", name, d, lo, hi);
    *out = d;
    return 0;
}

/* Optional integer field in [lo, hi]. */
static int get_int(const cJSON *o, const char *name, double lo, double hi, double *out, serve_error *e) {
    double d = *out;
    if (get_num(o, name, lo, hi, &d, e)) return -1;
    if (d != floor(d)) return BAD(name, "%s: expected an integer, got %g", name, d);
    *out = d;
    return 0;
}

static int get_bool(const cJSON *o, const char *name, int *out, serve_error *e) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    if (!v || cJSON_IsNull(v)) return 0;
    if (!cJSON_IsBool(v)) return BAD(name, "%s: expected a boolean, got %s", name, json_type_name(v));
    *out = cJSON_IsTrue(v);
    return 0;
}

static int check_utf8(const char *s, const char *param, serve_error *e) {
    size_t bad;
    if (!gk_utf8_valid(s, strlen(s), &bad)) return BAD(param, "%s: invalid UTF-8 at byte %zu", param, bad);
    return 0;
}

/* stop: a string or an array of up to 4 non-empty strings */
static int get_stops(const cJSON *o, serve_req *r, serve_error *e) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, "stop");
    if (!v || cJSON_IsNull(v)) return 0;
    if (cJSON_IsString(v)) {
        if (v->valuestring[0]) r->stops[r->n_stops++] = gk_strdup(v->valuestring);
        return 0;
    }
    if (!cJSON_IsArray(v)) return BAD("stop", "stop: expected a string or an array of strings, got %s", json_type_name(v));
    if (cJSON_GetArraySize(v) > 4) return BAD("stop", "stop: at most 4 stop strings, got %d", cJSON_GetArraySize(v));
    int i = 0;
    for (const cJSON *s = v->child; s; s = s->next, i++) {
        if (!cJSON_IsString(s)) return BAD("stop", "stop[%d]: expected a string, got %s", i, json_type_name(s));
        if (s->valuestring[0]) r->stops[r->n_stops++] = gk_strdup(s->valuestring);
    }
    return 0;
}

/* The sampling and output fields both routes share. */
static int parse_common(const cJSON *o, serve_req *r, const serve_limits *lim, serve_error *e) {
    double t = 1.0, top_p = 1.0, fp = 0, pp = 0, n = 1, seed = 0, mt = -1, tl = 0;
    if (get_num(o, "temperature", 0, 2, &t, e) || get_num(o, "top_p", 0, 1, &top_p, e) ||
        get_num(o, "frequency_penalty", -2, 2, &fp, e) || get_num(o, "presence_penalty", -2, 2, &pp, e) ||
        get_int(o, "n", 1, 128, &n, e) || get_int(o, "seed", -9.2e18, 9.2e18, &seed, e) ||
        get_int(o, "max_tokens", 1, 1e9, &mt, e) || get_int(o, "max_completion_tokens", 1, 1e9, &mt, e) ||
        get_bool(o, "stream", &r->stream, e) || get_stops(o, r, e))
        return -1;
    if ((size_t)n > lim->max_n)
        return BAD("n", "n: %g choices asked but this server decodes at most %zu sequences at once (--slots)", n, lim->max_n);
    const cJSON *so = cJSON_GetObjectItemCaseSensitive(o, "stream_options");
    if (so && !cJSON_IsNull(so)) {
        if (!cJSON_IsObject(so)) return BAD("stream_options", "stream_options: expected an object, got %s", json_type_name(so));
        if (get_bool(so, "include_usage", &r->include_usage, e)) return -1;
    }
    if (r->chat) {
        if (get_bool(o, "logprobs", &r->logprobs, e) || get_int(o, "top_logprobs", 0, 20, &tl, e)) return -1;
        if (tl > 0 && !r->logprobs) return BAD("top_logprobs", "top_logprobs needs logprobs: true");
    } else {
        const cJSON *lp = cJSON_GetObjectItemCaseSensitive(o, "logprobs");
        if (lp && !cJSON_IsNull(lp)) {
            if (!cJSON_IsNumber(lp) && !cJSON_IsBool(lp)) return BAD("logprobs", "logprobs: expected an integer, got %s", json_type_name(lp));
            if (get_int(o, "logprobs", 0, 20, &tl, e)) { if (!cJSON_IsBool(lp)) return -1; tl = 0; }
            r->logprobs = cJSON_IsBool(lp) ? cJSON_IsTrue(lp) : 1;
        }
        if (get_bool(o, "echo", &r->echo, e)) return -1;
    }
    r->top_logprobs = (int)tl;
    r->n = (size_t)n;
    r->max_tokens = mt > 0 ? (size_t)mt : 0;
    infer_sampling_default(&r->samp);
    r->samp.temperature = (float)t;
    /* top_p 0 means "only the most likely token": the engine's top-p wants (0, 1], so take a tiny mass */
    r->samp.top_p = top_p > 0 ? (float)top_p : 1e-6f;
    r->samp.frequency_penalty = (float)fp;
    r->samp.presence_penalty = (float)pp;
    r->samp.seed = (uint64_t)(int64_t)seed;
    for (size_t i = 0; i < r->n_stops; i++) if (check_utf8(r->stops[i], "stop", e)) return -1;
    return serve_response_format(cJSON_GetObjectItemCaseSensitive(o, "response_format"), r, e);
}

int serve_response_format(const cJSON *rf, serve_req *r, serve_error *e) {
    if (!rf || cJSON_IsNull(rf)) return 0;
    if (!cJSON_IsObject(rf)) return BAD("response_format", "response_format: expected an object, got %s", json_type_name(rf));
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(rf, "type");
    if (!cJSON_IsString(t)) return BAD("response_format.type", "response_format.type: expected a string");
    char *gbnf = NULL;
    gk_err err;
    if (constrain_from_response_format(rf, &gbnf, &err)) return BAD("response_format", "%s", err.msg);
    if (!gbnf) return 0;   /* text */
    constrain_grammar_free(r->grammar);
    free(r->grammar_text);
    r->grammar = constrain_grammar_parse(gbnf, strlen(gbnf), NULL, &err);
    r->grammar_text = gbnf;
    if (!r->grammar) return BAD("response_format", "response_format: the schema's grammar does not compile: %s", err.msg);
    return 0;
}

/* ---------------------------------------------------------------- chat messages */

/* content: a string, null, or an array of {"type":"text","text":...} parts (concatenated). malloc'd. */
static int msg_content(const cJSON *m, int i, char **out, serve_error *e) {
    char param[64];
    snprintf(param, sizeof param, "messages[%d].content", i);
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(m, "content");
    if (!c || cJSON_IsNull(c)) { *out = gk_strdup(""); return 0; }
    if (cJSON_IsString(c)) {
        if (check_utf8(c->valuestring, param, e)) return -1;
        *out = gk_strdup(c->valuestring);
        return 0;
    }
    if (!cJSON_IsArray(c)) return BAD(param, "%s: expected a string or an array of text parts, got %s", param, json_type_name(c));
    tok_bytes b = {0};
    int k = 0;
    for (const cJSON *p = c->child; p; p = p->next, k++) {
        const cJSON *ty = cJSON_GetObjectItemCaseSensitive(p, "type"), *tx = cJSON_GetObjectItemCaseSensitive(p, "text");
        if (!cJSON_IsObject(p) || !cJSON_IsString(ty) || strcmp(ty->valuestring, "text") || !cJSON_IsString(tx)) {
            tok_bytes_free(&b);
            return BAD(param, "%s[%d]: only {\"type\": \"text\", \"text\": ...} parts are supported", param, k);
        }
        if (check_utf8(tx->valuestring, param, e)) { tok_bytes_free(&b); return -1; }
        tok_bytes_append(&b, tx->valuestring, strlen(tx->valuestring));
    }
    tok_bytes_append(&b, "", 1);
    *out = (char *)b.data;
    return 0;
}

/* An assistant message's tool_calls, appended to its text in the chat format:
 * <|tool_call|>{"name": NAME, "arguments": {...}}<|tool_call_end|> per call. */
static int msg_tool_calls(const cJSON *m, int i, tok_bytes *text, serve_error *e) {
    const cJSON *tc = cJSON_GetObjectItemCaseSensitive(m, "tool_calls");
    if (!tc || cJSON_IsNull(tc)) return 0;
    char param[64];
    snprintf(param, sizeof param, "messages[%d].tool_calls", i);
    if (!cJSON_IsArray(tc)) return BAD(param, "%s: expected an array, got %s", param, json_type_name(tc));
    int k = 0;
    for (const cJSON *c = tc->child; c; c = c->next, k++) {
        const cJSON *f = cJSON_GetObjectItemCaseSensitive(c, "function");
        const cJSON *nm = cJSON_GetObjectItemCaseSensitive(f, "name"), *ar = cJSON_GetObjectItemCaseSensitive(f, "arguments");
        if (!cJSON_IsObject(f) || !cJSON_IsString(nm))
            return BAD(param, "%s[%d]: expected {\"function\": {\"name\": ..., \"arguments\": ...}}", param, k);
        if (check_utf8(nm->valuestring, param, e)) return -1;
        cJSON *call = cJSON_CreateObject();
        cJSON_AddStringToObject(call, "name", nm->valuestring);
        cJSON *args = cJSON_IsString(ar) ? cJSON_Parse(ar->valuestring) : NULL;
        if (args) cJSON_AddItemToObject(call, "arguments", args);
        else if (cJSON_IsString(ar)) cJSON_AddStringToObject(call, "arguments", ar->valuestring);
        else if (ar && cJSON_IsObject(ar)) cJSON_AddItemToObject(call, "arguments", cJSON_Duplicate(ar, 1));
        else cJSON_AddItemToObject(call, "arguments", cJSON_CreateObject());
        char *js = cJSON_PrintUnformatted(call);
        cJSON_Delete(call);
        tok_bytes_append(text, TOK_TOOL_CALL, strlen(TOK_TOOL_CALL));
        tok_bytes_append(text, js, strlen(js));
        tok_bytes_append(text, TOK_TOOL_CALL_END, strlen(TOK_TOOL_CALL_END));
        free(js);
    }
    return 0;
}

/* tool_choice: "auto" (default), "none", "required", or {"type": "function", "function": {"name": ...}}; the last
 * two force a call (the model is started on <|tool_call|>). Sets *none / r->force_call. */
static int tool_choice(const cJSON *o, serve_req *r, int *none, serve_error *e) {
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(o, "tool_choice");
    *none = 0;
    if (!c || cJSON_IsNull(c)) return 0;
    if (cJSON_IsString(c)) {
        if (!strcmp(c->valuestring, "none")) *none = 1;
        else if (!strcmp(c->valuestring, "required")) r->force_call = 1;
        else if (strcmp(c->valuestring, "auto"))
            return BAD("tool_choice", "tool_choice: expected \"auto\", \"none\", \"required\" or {\"type\": \"function\", ...}");
        return 0;
    }
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(c, "function");
    if (!cJSON_IsObject(c) || !cJSON_IsString(cJSON_GetObjectItemCaseSensitive(f, "name")))
        return BAD("tool_choice", "tool_choice: expected \"auto\", \"none\", \"required\" or {\"type\": \"function\", \"function\": {\"name\": ...}}");
    r->force_call = 1;
    return 0;
}

/* The tools' descriptions as system text: how to call them, then one JSON line per function. NULL if none. */
static int tools_text(const cJSON *o, serve_req *r, char **out, serve_error *e) {
    const cJSON *tools = cJSON_GetObjectItemCaseSensitive(o, "tools");
    *out = NULL;
    int none;
    if (tool_choice(o, r, &none, e)) return -1;
    if (!tools || cJSON_IsNull(tools)) { r->force_call = 0; return 0; }
    if (!cJSON_IsArray(tools)) return BAD("tools", "tools: expected an array, got %s", json_type_name(tools));
    if (none || !cJSON_GetArraySize(tools)) { r->force_call = 0; return 0; }
    tok_bytes b = {0};
    static const char head[] = "You can call these tools. To call one, write " TOK_TOOL_CALL
        "{\"name\": NAME, \"arguments\": {...}}" TOK_TOOL_CALL_END " and wait for its result.\n";
    tok_bytes_append(&b, head, sizeof head - 1);
    int k = 0;
    for (const cJSON *t = tools->child; t; t = t->next, k++) {
        const cJSON *f = cJSON_GetObjectItemCaseSensitive(t, "function");
        const cJSON *nm = cJSON_GetObjectItemCaseSensitive(f, "name");
        if (!cJSON_IsObject(f) || !cJSON_IsString(nm)) {
            tok_bytes_free(&b);
            return BAD("tools", "tools[%d]: expected {\"type\": \"function\", \"function\": {\"name\": ...}}", k);
        }
        cJSON *d = cJSON_CreateObject();
        cJSON_AddStringToObject(d, "name", nm->valuestring);
        const cJSON *desc = cJSON_GetObjectItemCaseSensitive(f, "description"), *par = cJSON_GetObjectItemCaseSensitive(f, "parameters");
        if (cJSON_IsString(desc)) cJSON_AddStringToObject(d, "description", desc->valuestring);
        if (par) cJSON_AddItemToObject(d, "parameters", cJSON_Duplicate(par, 1));
        char *js = cJSON_PrintUnformatted(d);
        cJSON_Delete(d);
        tok_bytes_append(&b, js, strlen(js));
        tok_bytes_append(&b, "\n", 1);
        free(js);
    }
    tok_bytes_append(&b, "", 1);
    if (check_utf8((const char *)b.data, "tools", e)) { tok_bytes_free(&b); return -1; }
    *out = (char *)b.data;
    return 0;
}

static int role_of(const cJSON *m, int i, chat_role *role, serve_error *e) {
    char param[64];
    snprintf(param, sizeof param, "messages[%d].role", i);
    const cJSON *ro = cJSON_GetObjectItemCaseSensitive(m, "role");
    if (!cJSON_IsString(ro)) return BAD(param, "%s: expected a string, got %s", param, ro ? json_type_name(ro) : "nothing");
    if (!strcmp(ro->valuestring, "developer")) { *role = CHAT_SYSTEM; return 0; }
    if (chat_role_parse(ro->valuestring, role))
        return BAD(param, "%s: expected one of system|developer|user|assistant|tool, got \"%.40s\"", param, ro->valuestring);
    return 0;
}

/* messages -> conversation (tools described in the first system message). */
static int parse_messages(const cJSON *o, chat_conv *c, const serve_limits *lim, serve_req *r, serve_error *e) {
    const cJSON *ms = cJSON_GetObjectItemCaseSensitive(o, "messages");
    if (!ms) return BAD("messages", "messages: required (an array of {\"role\", \"content\"})");
    if (!cJSON_IsArray(ms)) return BAD("messages", "messages: expected an array, got %s", json_type_name(ms));
    int nm = cJSON_GetArraySize(ms);
    if (nm == 0) return BAD("messages", "messages: empty; at least one message is needed");
    if ((size_t)nm > lim->max_messages)
        return BAD("messages", "messages: %d messages, more than this server takes (%zu, --max-messages)", nm, lim->max_messages);
    char *tools = NULL;
    if (tools_text(o, r, &tools, e)) return -1;
    r->tools = tools != NULL;
    int i = 0;
    for (const cJSON *m = ms->child; m; m = m->next, i++) {
        if (!cJSON_IsObject(m)) { free(tools); return BAD("messages", "messages[%d]: expected an object, got %s", i, json_type_name(m)); }
        chat_role role;
        char *content = NULL;
        if (role_of(m, i, &role, e) || msg_content(m, i, &content, e)) { free(tools); return -1; }
        tok_bytes t = {0};
        tok_bytes_append(&t, content, strlen(content));
        free(content);
        if (role == CHAT_ASSISTANT && msg_tool_calls(m, i, &t, e)) { tok_bytes_free(&t); free(tools); return -1; }
        if (tools && role == CHAT_SYSTEM && c->n == 0) {   /* the tools join the first system message */
            tok_bytes_append(&t, "\n\n", 2);
            tok_bytes_append(&t, tools, strlen(tools));
            free(tools); tools = NULL;
        }
        tok_bytes_append(&t, "", 1);
        if (tools) { chat_conv_add(c, CHAT_SYSTEM, tools); free(tools); tools = NULL; }
        chat_conv_add(c, role, (const char *)t.data);
        tok_bytes_free(&t);
    }
    free(tools);
    gk_err verr;
    if (chat_conv_validate(c, &verr)) return BAD("messages", "%s", verr.msg);
    return 0;
}

/* completions' prompt: a string, an array of one string, or an array of token ids */
static int parse_prompt(const cJSON *o, serve_req *r, const tok_tokenizer *tok, size_t vocab, serve_error *e) {
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(o, "prompt");
    if (!p) return BAD("prompt", "prompt: required (a string)");
    if (cJSON_IsArray(p) && cJSON_GetArraySize(p) == 1 && cJSON_IsString(p->child)) p = p->child;
    tok_ids ids = {0};
    if (cJSON_IsString(p)) {
        if (check_utf8(p->valuestring, "prompt", e)) return -1;
        r->prompt_text = gk_strdup(p->valuestring);
        tok_encode(tok, p->valuestring, strlen(p->valuestring), 0, &ids);
    } else if (cJSON_IsArray(p)) {
        int k = 0;
        for (const cJSON *v = p->child; v; v = v->next, k++) {
            if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || v->valuedouble < 0 || v->valuedouble >= (double)vocab) {
                tok_ids_free(&ids);
                return BAD("prompt", "prompt[%d]: expected a token id in [0, %zu) (a prompt array holds one string or token ids)", k, vocab);
            }
            tok_ids_push(&ids, (int32_t)v->valuedouble);
        }
        tok_bytes b = {0};
        gk_err derr;
        tok_decode(tok, ids.ids, ids.n, &b, &derr);
        tok_bytes_append(&b, "", 1);
        r->prompt_text = (char *)b.data;
    } else return BAD("prompt", "prompt: expected a string or an array of token ids, got %s", json_type_name(p));
    r->prompt = ids.ids; r->n_prompt = ids.n;
    if (!ids.n) return BAD("prompt", "prompt: empty; generation needs at least one token to condition on");
    return 0;
}

/* Retrieval: the last user message gets the retrieved sources before it (lim->augment). */
static int augment_last_user(chat_conv *c, const serve_limits *lim, serve_error *e) {
    if (!lim->augment) return 0;
    size_t i = c->n;
    while (i > 0 && c->msgs[i - 1].role != CHAT_USER) i--;
    if (i == 0) return 0;
    gk_err err;
    char *t = lim->augment(lim->augment_ctx, c->msgs[i - 1].content, &err);
    if (!t) { serve_error_set(e, 500, "server_error", "", "retrieval failed: %s", err.msg); return -1; }
    free(c->msgs[i - 1].content);
    c->msgs[i - 1].content = t;
    return 0;
}

int serve_req_parse(serve_req *r, const char *body, size_t len, int chat, const serve_limits *lim,
                    const tok_tokenizer *tok, const chat_specials *sp, serve_error *e) {
    memset(r, 0, sizeof *r);
    r->chat = chat;
    size_t bad;
    if (!gk_utf8_valid(body, len, &bad)) return BAD("", "the request body is not valid UTF-8 (byte %zu)", bad);
    size_t depth = serve_json_depth(body, len, lim->max_depth);
    if (depth > lim->max_depth) return BAD("", "the request body nests deeper than %zu levels", lim->max_depth);
    const char *end = NULL;
    cJSON *o = cJSON_ParseWithLengthOpts(body, len, &end, 0);
    if (!o) return BAD("", "the request body is not valid JSON (near byte %ld)", end ? (long)(end - body) : 0L);
    int rc = -1;
    chat_conv c = {0};
    if (!cJSON_IsObject(o)) { (void)BAD("", "the request body must be a JSON object, got %s", json_type_name(o)); goto done; }
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(o, "model");
    if (model && !cJSON_IsString(model) && !cJSON_IsNull(model)) { (void)BAD("model", "model: expected a string, got %s", json_type_name(model)); goto done; }
    if (parse_common(o, r, lim, e)) goto done;
    if (chat) {
        if (parse_messages(o, &c, lim, r, e) || augment_last_user(&c, lim, e)) goto done;
        chat_tokens t = {0};
        chat_render(tok, sp, &c, 1, &t);
        if (r->force_call) chat_tokens_push(&t, sp->tool_call, 0);
        r->prompt = t.ids; r->n_prompt = t.n;
        free(t.mask);
    } else if (parse_prompt(o, r, tok, tok_vocab_size(tok), e)) goto done;
    if (r->n_prompt >= lim->ctx) {
        (void)BAD(chat ? "messages" : "prompt", "the prompt is %zu tokens but the context holds %zu; shorten it", r->n_prompt, lim->ctx);
        goto done;
    }
    size_t room = lim->ctx - r->n_prompt;
    if (r->max_tokens > room) {
        (void)BAD("max_tokens", "max_tokens: %zu asked, but the prompt is %zu tokens and the context holds %zu (at most %zu)",
            r->max_tokens, r->n_prompt, lim->ctx, room);
        goto done;
    }
    if (!r->max_tokens) r->max_tokens = room;
    rc = 0;
done:
    chat_conv_free(&c);
    cJSON_Delete(o);
    if (rc) serve_req_free(r), r->chat = chat;
    return rc;
}

/* ---------------------------------------------------------------- /v1/embeddings */

void serve_embed_req_free(serve_embed_req *r) {
    for (size_t i = 0; i < r->n; i++) free(r->texts[i]);
    free(r->texts);
    memset(r, 0, sizeof *r);
}

static int embed_text(serve_embed_req *r, const cJSON *v, const char *param, serve_error *e) {
    if (cJSON_IsNumber(v) || cJSON_IsArray(v))
        return BAD(param, "%s: token-id input is not supported by this server; send the text", param);
    if (!cJSON_IsString(v)) return BAD(param, "%s: expected a string, got %s", param, json_type_name(v));
    r->texts[r->n++] = gk_strdup(v->valuestring);
    return 0;
}

int serve_embed_parse(serve_embed_req *r, const char *body, size_t len, const serve_limits *lim, serve_error *e) {
    memset(r, 0, sizeof *r);
    size_t bad;
    if (!gk_utf8_valid(body, len, &bad)) return BAD("", "the request body is not valid UTF-8 (byte %zu)", bad);
    if (serve_json_depth(body, len, lim->max_depth) > lim->max_depth)
        return BAD("", "the request body nests deeper than %zu levels", lim->max_depth);
    const char *end = NULL;
    cJSON *o = cJSON_ParseWithLengthOpts(body, len, &end, 0);
    if (!o) return BAD("", "the request body is not valid JSON (near byte %ld)", end ? (long)(end - body) : 0L);
    int rc = -1;
    if (!cJSON_IsObject(o)) { (void)BAD("", "the request body must be a JSON object, got %s", json_type_name(o)); goto done; }
    const cJSON *in = cJSON_GetObjectItemCaseSensitive(o, "input");
    if (!in || cJSON_IsNull(in)) { (void)BAD("input", "input: required (a string or an array of strings)"); goto done; }
    if (cJSON_IsArray(in)) {
        int n = cJSON_GetArraySize(in);
        if (n == 0) { (void)BAD("input", "input: empty array; at least one text is needed"); goto done; }
        if (n > SERVE_EMBED_MAX_INPUTS) { (void)BAD("input", "input: %d texts, more than %d per request", n, SERVE_EMBED_MAX_INPUTS); goto done; }
        r->texts = gk_calloc((size_t)n, sizeof *r->texts);
        char param[40];
        for (int i = 0; i < n; i++) {
            snprintf(param, sizeof param, "input[%d]", i);
            if (embed_text(r, cJSON_GetArrayItem(in, i), param, e)) goto done;
        }
    } else {
        r->texts = gk_calloc(1, sizeof *r->texts);
        if (embed_text(r, in, "input", e)) goto done;
    }
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(o, "encoding_format");
    if (f && !cJSON_IsNull(f)) {
        if (!cJSON_IsString(f)) { (void)BAD("encoding_format", "encoding_format: expected a string, got %s", json_type_name(f)); goto done; }
        if (!strcmp(f->valuestring, "base64")) r->base64 = 1;
        else if (strcmp(f->valuestring, "float")) {
            (void)BAD("encoding_format", "encoding_format: \"%.40s\" is not one of float, base64", f->valuestring);
            goto done;
        }
    }
    double dims = 0;
    if (get_int(o, "dimensions", 1, 1e6, &dims, e)) goto done;
    r->dimensions = (long)dims;
    rc = 0;
done:
    cJSON_Delete(o);
    if (rc) serve_embed_req_free(r);
    return rc;
}
