/* test_serve.c: the request parser and response builders of `gptkit serve` (src/serve/api.c, api_out.c), no
 * network: the prompt a chat request renders to equals chat_render of the same conversation (tools written into
 * the system message, assistant tool_calls written back in the chat format), limits and error parameters,
 * tool-call extraction, the JSON depth scan, and the shapes of answers and SSE chunks. The HTTP side is tested
 * by tests/cli/serve.sh. */
#include "serve/serve.h"
#include "testlib.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static tok_tokenizer *g_tok;
static chat_specials g_sp;
static const serve_limits LIM = { .max_depth = 8, .max_messages = 4, .ctx = 128, .max_n = 4 };

static void setup(void) {
    static const char text[] = "What do bees make? Bees make honey. The weather in Paris is sunny.";
    tok_train_opts o;
    tok_train_opts_default(&o);
    o.vocab_size = 300;
    gk_err err;
    tok_trainer *tr = tok_trainer_new(&o, &err);
    tok_trainer_feed(tr, text, sizeof text - 1);
    g_tok = tok_trainer_finish(tr, &err);
    tok_trainer_free(tr);
    GK_CHECK(g_tok && chat_specials_resolve(g_tok, 0, &g_sp, &err) == 0, "tokenizer");
}

static int parse(serve_req *r, const char *body, int chat, serve_error *e) {
    return serve_req_parse(r, body, strlen(body), chat, &LIM, g_tok, &g_sp, e);
}

/* ids of conv rendered with the generation prompt */
static void render(chat_conv *c, chat_tokens *t) {
    chat_render(g_tok, &g_sp, c, 1, t);
}

static void test_chat_renders_like_chat_render(void) {
    serve_req r;
    serve_error e;
    CHECK(parse(&r, "{\"messages\":[{\"role\":\"system\",\"content\":\"Be brief.\"},{\"role\":\"user\",\"content\":"
                    "[{\"type\":\"text\",\"text\":\"What do \"},{\"type\":\"text\",\"text\":\"bees make?\"}]}],"
                    "\"temperature\":0,\"n\":2,\"seed\":5,\"stop\":\"x\",\"max_tokens\":7,\"extra\":{\"a\":1}}", 1, &e) == 0,
          "parse: %s", e.err.msg);
    chat_conv c = {0};
    chat_conv_add(&c, CHAT_SYSTEM, "Be brief.");
    chat_conv_add(&c, CHAT_USER, "What do bees make?");
    chat_tokens t = {0};
    render(&c, &t);
    CHECK(r.n_prompt == t.n && !memcmp(r.prompt, t.ids, t.n * sizeof(int32_t)), "prompt differs from chat_render's");
    CHECK(r.n == 2 && r.max_tokens == 7 && r.samp.temperature == 0 && r.samp.seed == 5, "settings");
    CHECK(r.n_stops == 1 && !strcmp(r.stops[0], "x"), "stop");
    chat_tokens_free(&t); chat_conv_free(&c); serve_req_free(&r);
    /* max_tokens absent: as many as fit */
    CHECK(parse(&r, "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}", 1, &e) == 0, "%s", e.err.msg);
    CHECK(r.max_tokens == LIM.ctx - r.n_prompt, "default max_tokens %zu", r.max_tokens);
    serve_req_free(&r);
}

static void test_tools_round_trip(void) {
    serve_req r;
    serve_error e;
    const char *body =
        "{\"messages\":[{\"role\":\"user\",\"content\":\"Weather?\"},"
        "{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":\"c\",\"type\":\"function\","
        "\"function\":{\"name\":\"get_weather\",\"arguments\":\"{\\\"city\\\": \\\"Paris\\\"}\"}}]},"
        "{\"role\":\"tool\",\"tool_call_id\":\"c\",\"content\":\"sunny\"}],"
        "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"description\":\"d\"}}]}";
    serve_limits big = LIM;
    big.ctx = 4096;   /* the tools' description is long in a 300-token vocabulary */
    CHECK(serve_req_parse(&r, body, strlen(body), 1, &big, g_tok, &g_sp, &e) == 0, "parse: %s", e.err.msg);
    CHECK(r.tools == 1, "tools flag");
    chat_conv c = {0};
    chat_conv_add(&c, CHAT_SYSTEM, "You can call these tools. To call one, write " TOK_TOOL_CALL
                  "{\"name\": NAME, \"arguments\": {...}}" TOK_TOOL_CALL_END " and wait for its result.\n"
                  "{\"name\":\"get_weather\",\"description\":\"d\"}\n");
    chat_conv_add(&c, CHAT_USER, "Weather?");
    chat_conv_add(&c, CHAT_ASSISTANT, TOK_TOOL_CALL "{\"name\":\"get_weather\",\"arguments\":{\"city\":\"Paris\"}}" TOK_TOOL_CALL_END);
    chat_conv_add(&c, CHAT_TOOL, "sunny");
    chat_tokens t = {0};
    render(&c, &t);
    CHECK(r.n_prompt == t.n && !memcmp(r.prompt, t.ids, t.n * sizeof(int32_t)), "tool conversation renders differently");
    chat_tokens_free(&t); chat_conv_free(&c);
    /* tool_choice "required" starts the reply on <|tool_call|>; "none" leaves the tools out */
    size_t n_auto = r.n_prompt;
    serve_req_free(&r);
    char *req = gk_malloc(strlen(body) + 64);
    snprintf(req, strlen(body) + 64, "%.*s,\"tool_choice\":\"required\"}", (int)strlen(body) - 1, body);
    CHECK(serve_req_parse(&r, req, strlen(req), 1, &big, g_tok, &g_sp, &e) == 0, "parse: %s", e.err.msg);
    CHECK(r.force_call && r.n_prompt == n_auto + 1 && r.prompt[r.n_prompt - 1] == g_sp.tool_call, "required");
    serve_req_free(&r);
    snprintf(req, strlen(body) + 64, "%.*s,\"tool_choice\":\"none\"}", (int)strlen(body) - 1, body);
    CHECK(serve_req_parse(&r, req, strlen(req), 1, &big, g_tok, &g_sp, &e) == 0, "parse: %s", e.err.msg);
    CHECK(!r.force_call && !r.tools && r.n_prompt < n_auto, "none");
    serve_req_free(&r);
    free(req);
}

static void expect_400(const char *body, int chat, const char *param, const char *msg_part) {
    serve_req r;
    serve_error e;
    int rc = parse(&r, body, chat, &e);
    CHECK(rc == -1 && e.status == 400, "%s: accepted", body);
    if (rc) {
        CHECK(!strcmp(e.param, param), "%s: param '%s', want '%s'", body, e.param, param);
        CHECK(strstr(e.err.msg, msg_part) != NULL, "%s: message '%s' lacks '%s'", body, e.err.msg, msg_part);
    } else serve_req_free(&r);
}

static void test_bad_requests(void) {
    expect_400("{\"messages\": [", 1, "", "not valid JSON");
    expect_400("[[[[[[[[[[[[]]]]]]]]]]]]", 1, "", "nests deeper than 8");
    expect_400("{\"messages\":[{\"role\":\"user\",\"content\":\"\xff\"}]}", 1, "", "not valid UTF-8");
    expect_400("{\"messages\":\"x\"}", 1, "messages", "expected an array");
    expect_400("{\"model\":\"m\"}", 1, "messages", "required");
    expect_400("{\"messages\":[1,2,3,4,5]}", 1, "messages", "more than this server takes (4");
    expect_400("{\"messages\":[{\"role\":\"bot\",\"content\":\"x\"}]}", 1, "messages[0].role", "got \"bot\"");
    expect_400("{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"temperature\":\"hot\"}", 1, "temperature", "expected a number");
    expect_400("{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"top_p\":1.5}", 1, "top_p", "out of range");
    expect_400("{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"n\":5}", 1, "n", "at most 4");
    expect_400("{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"n\":1.5}", 1, "n", "expected an integer");
    expect_400("{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"max_tokens\":500}", 1, "max_tokens", "at most");
    expect_400("{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"top_logprobs\":2}", 1, "top_logprobs", "needs logprobs");
    expect_400("{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"response_format\":{\"type\":\"json_schema\","
               "\"json_schema\":{\"name\":\"x\",\"schema\":{\"type\":\"array\",\"uniqueItems\":true}}}}", 1,
               "response_format", "uniqueItems");
    expect_400("{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"response_format\":{\"type\":\"json_schema\"}}", 1,
               "response_format", "json_schema");
    expect_400("{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"response_format\":{\"type\":\"yaml\"}}", 1,
               "response_format", "not one of");
    expect_400("{\"messages\":[{\"role\":\"tool\",\"content\":\"x\"}]}", 1, "messages", "tool");
    expect_400("{\"prompt\":[1, 99999]}", 0, "prompt", "token id");
    expect_400("{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tool_choice\":\"maybe\"}", 1, "tool_choice", "expected");
    expect_400("{\"prompt\":\"\"}", 0, "prompt", "empty");
    /* a rejected request leaves nothing behind: LeakSanitizer checks the paths above under make asan */
}

/* response_format json_object / json_schema compile a grammar onto the request; text leaves none */
static void test_response_format(void) {
    const char *bodies[3] = {
        "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"response_format\":{\"type\":\"json_object\"}}",
        "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"response_format\":{\"type\":\"json_schema\",\"json_schema\":"
        "{\"name\":\"p\",\"strict\":true,\"schema\":{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"integer\"}},\"required\":[\"a\"]}}}}",
        "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"response_format\":{\"type\":\"text\"}}" };
    for (int i = 0; i < 3; i++) {
        serve_req r;
        serve_error e;
        int rc = parse(&r, bodies[i], 1, &e);
        CHECK(rc == 0, "body %d rejected: %s", i, rc ? e.err.msg : "");
        if (rc) continue;
        CHECK((r.grammar != NULL) == (i < 2), "body %d: grammar %p", i, (void *)r.grammar);
        if (i == 1 && r.grammar) {
            CHECK(constrain_grammar_matches(r.grammar, "{\"a\": 5}", 8), "schema grammar rejects {\"a\": 5}");
            CHECK(!constrain_grammar_matches(r.grammar, "{}", 2), "schema grammar accepts {} without the required a");
        }
        if (i == 0 && r.grammar) CHECK(!constrain_grammar_matches(r.grammar, "[1]", 3), "json_object accepts an array");
        serve_req_free(&r);
    }
}

static void test_depth_scan(void) {
    CHECK(serve_json_depth("{\"a\":[1,{\"b\":2}]}", 15, 100) == 3, "depth 3");
    CHECK(serve_json_depth("{\"a\":\"[[[[\"}", 11, 100) == 1, "brackets in strings do not count");
    CHECK(serve_json_depth("{\"a\":\"\\\"[[\"}", 12, 100) == 1, "escaped quote");
}

static void test_tool_call_split(void) {
    char *content = NULL;
    cJSON *calls = serve_tool_calls("Let me check.\n" TOK_TOOL_CALL "{\"name\":\"f\",\"arguments\":{\"x\":1}}", "id", &content);
    CHECK(calls && cJSON_GetArraySize(calls) == 1, "one call");
    CHECK(content && !strcmp(content, "Let me check."), "content '%s'", content ? content : "(null)");
    if (calls) {
        const cJSON *f = cJSON_GetObjectItem(calls->child, "function");
        CHECK(!strcmp(cJSON_GetObjectItem(f, "name")->valuestring, "f"), "name");
        CHECK(!strcmp(cJSON_GetObjectItem(f, "arguments")->valuestring, "{\"x\":1}"), "arguments as JSON text");
        CHECK(!strcmp(cJSON_GetObjectItem(calls->child, "id")->valuestring, "call_id"), "id");
    }
    cJSON_Delete(calls); free(content);
    calls = serve_tool_calls(TOK_TOOL_CALL "not json", "id", &content);
    CHECK(!calls && content && !strcmp(content, TOK_TOOL_CALL "not json"), "unparseable call stays text");
    cJSON_Delete(calls); free(content);
}

static void test_response_shapes(void) {
    serve_req r;
    serve_error e;
    CHECK(parse(&r, "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"logprobs\":true,\"top_logprobs\":1}", 1, &e) == 0, "%s", e.err.msg);
    int32_t ids[3] = { 'B', 'e', g_sp.end };
    float lp[3] = { -0.5f, -0.25f, -0.1f };
    engine_seq s = { .ids = ids, .n = 3, .logprob = lp, .text = "Be", .text_len = 2, .finish = ENGINE_FINISH_STOP_TOKEN };
    cJSON *o = serve_response(&r, &s, "chatcmpl-1", 7, "m", g_tok, 0);
    const cJSON *ch = cJSON_GetArrayItem(cJSON_GetObjectItem(o, "choices"), 0);
    CHECK(!strcmp(cJSON_GetObjectItem(o, "object")->valuestring, "chat.completion"), "object");
    CHECK(!strcmp(cJSON_GetObjectItem(cJSON_GetObjectItem(ch, "message"), "content")->valuestring, "Be"), "content");
    CHECK(!strcmp(cJSON_GetObjectItem(ch, "finish_reason")->valuestring, "stop"), "finish_reason");
    const cJSON *toks = cJSON_GetObjectItem(cJSON_GetObjectItem(ch, "logprobs"), "content");
    CHECK(cJSON_GetArraySize(toks) == 2, "log-probs of the answer's tokens, not the stop token: %d", cJSON_GetArraySize(toks));
    CHECK(fabs(cJSON_GetObjectItem(cJSON_GetArrayItem(toks, 1), "logprob")->valuedouble + 0.25) < 1e-6, "logprob value");
    const cJSON *u = cJSON_GetObjectItem(o, "usage");
    CHECK(cJSON_GetObjectItem(u, "completion_tokens")->valueint == 3 &&
          cJSON_GetObjectItem(u, "prompt_tokens")->valueint == (int)r.n_prompt, "usage");
    cJSON_Delete(o);
    o = serve_chunk(&r, "chatcmpl-1", 7, "m", 0, 1, "", 0, NULL, NULL);
    const cJSON *d = cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(o, "choices"), 0), "delta");
    CHECK(!strcmp(cJSON_GetObjectItem(d, "role")->valuestring, "assistant") && cJSON_GetObjectItem(d, "content"),
          "first chunk: role and empty content");
    cJSON_Delete(o);
    serve_error err;
    serve_error_set(&err, 429, "rate_limit_error", "", "busy");
    char *j = serve_error_json(&err);
    CHECK(!strcmp(j, "{\"error\":{\"message\":\"busy\",\"type\":\"rate_limit_error\",\"param\":null,\"code\":null}}"), "%s", j);
    free(j);
    serve_req_free(&r);
}

int main(void) {
    setup();
    TL_RUN(test_chat_renders_like_chat_render);
    TL_RUN(test_tools_round_trip);
    TL_RUN(test_bad_requests);
    TL_RUN(test_response_format);
    TL_RUN(test_depth_scan);
    TL_RUN(test_tool_call_split);
    TL_RUN(test_response_shapes);
    tok_free(g_tok);
    return tl_summary();
}
