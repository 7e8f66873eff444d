/* test_constrain.c: constrained output. GBNF parse errors name line and column; the matcher accepts and rejects
 * what the grammar says (JSON, UTF-8 classes, repetitions, escapes, comments); regexes and JSON Schemas convert
 * into grammars that accept and reject the right strings, and unsupported keywords are errors naming the
 * keyword and where it is; the fast token masks equal the reference (every token fed to the state) on every
 * state of random walks over the GPT-2 vocabulary, and no reachable state admits zero tokens; the engine's
 * constrained output always parses, batched sequences keep their own states, and at temperature 0 the
 * constrained output equals the unconstrained one when that already satisfies the grammar. */
#include "constrain/constrain.h"
#include "infer/infer.h"
#include "kern/kern.h"
#include "testlib.h"
#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *JSON_G =
    "# any JSON object\n"
    "root   ::= object\n"
    "value  ::= object | array | string | number | (\"true\" | \"false\" | \"null\")\n"
    "object ::= \"{\" ws ( string ws \":\" ws value ws ( \",\" ws string ws \":\" ws value ws )* )? \"}\"\n"
    "array  ::= \"[\" ws ( value ws ( \",\" ws value ws )* )? \"]\"\n"
    "string ::= \"\\\"\" ( [^\"\\\\\\x00-\\x1f] | \"\\\\\" ( [\"\\\\/bfnrt] | \"u\" [0-9a-fA-F]{4} ) )* \"\\\"\"\n"
    "number ::= \"-\"? ( \"0\" | [1-9] [0-9]* ) ( \".\" [0-9]+ )? ( [eE] [-+]? [0-9]+ )?\n"
    "ws ::= ([ \\t\\n] ws)?\n";

static constrain_grammar *parse(const char *g) {
    gk_err err;
    constrain_grammar *r = constrain_grammar_parse(g, strlen(g), NULL, &err);
    CHECK(r != NULL, "grammar did not parse: %s\n%s", err.msg, g);
    return r;
}
static int matches(const constrain_grammar *g, const char *s) { return constrain_grammar_matches(g, s, strlen(s)); }

static void test_gbnf_errors(void) {
    static const struct { const char *g, *want; } cases[] = {
        { "root ::= \"a", "line 1, column 10: unterminated string literal" },
        { "root ::= foo", "line 1, column 10: rule 'foo' is used but never defined" },
        { "root ::= [z-a]", "line 1, column 13: range end" },
        { "a ::= \"x\"", "no rule 'root'" },
        { "", "grammar is empty" },
        { "root ::= root \"a\"", "'root' is left-recursive" },
        { "root ::= x\nx ::= \"a\"?\n  y\ny ::= x \"b\"", "left-recursive" },
        { "root ::= (\"a\"", "line 1, column 14: expected ')'" },
        { "root ::= \"a\"\n\n# c\nroot ::= \"b\"", "line 4, column 1: rule 'root' is defined twice (first at line 1)" },
        { "root ::= \"\\q\"", "line 1, column 11: unknown escape \\q" },
        { "root ::= x\nx ::= y \"c\" | \"d\"\ny ::= z? x\nz ::= \"e\"", "is left-recursive" },
        { "root ::= [^\\x00-\\U0010FFFF]", "matches no character" },
        { "root ::= \"a\"{3,1}", "maximum is below the minimum" },
        { "root ::= \"a\"{99999}", "repetition count over" },
        { "root ::= \"a\" )", "line 1, column 14: unmatched ')'" },
        { "root = \"a\"", "line 1, column 6: expected ::=" },
        { "root ::= \"\xff\"", "invalid UTF-8" },
        { "root ::= \"x\"\n  \"y\" ]", "line 2, column 7: unexpected ']'" },
        { "root ::= [a", "unterminated character class" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        gk_err err;
        memset(&err, 0, sizeof err);
        constrain_grammar *g = constrain_grammar_parse(cases[i].g, strlen(cases[i].g), NULL, &err);
        CHECK(!g, "case %zu parsed: %s", i, cases[i].g);
        CHECK(strstr(err.msg, cases[i].want) != NULL, "case %zu: '%s' lacks '%s'", i, err.msg, cases[i].want);
        constrain_grammar_free(g);
    }
}

static void test_gbnf_match(void) {
    constrain_grammar *g = parse(JSON_G);
    if (!g) return;
    const char *ok[] = { "{}", "{\"a\":1}", "{ \"a\" : [1, 2.5e3, \"x\\u00e9\", true, null, {\"b\":{}}] }", "{\"é\":\"日本\"}",
                         "{\"a\":-0.5E-7}", "{\n\t\"k\": \"\\\"\"\n}" };
    const char *bad[] = { "{", "{\"a\"}", "{\"a\":01}", "[]", "{\"a\":tru}", "{\"a\":\"\x01\"}", "{}}", "{\"a\":1,}", "" };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) CHECK(matches(g, ok[i]), "JSON grammar rejects %s", ok[i]);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) CHECK(!matches(g, bad[i]), "JSON grammar accepts %s", bad[i]);
    constrain_grammar_free(g);
    /* classes over UTF-8: ranges crossing encoding lengths, negation, any */
    g = parse("root ::= [a-zé-ü\\u4E00-\\u9FFF]+ [^a-z] . \"\\U0001F600\"?");
    if (g) {
        CHECK(matches(g, "aé中Xy"), "utf8 1");
        CHECK(matches(g, "üü!😀😀"), "utf8 any + emoji");
        CHECK(!matches(g, "aay"), "negated class accepted a letter");
        CHECK(!matches(g, "ÿ1y"), "ÿ is outside é-ü");
        CHECK(!matches(g, "a\xc3"), "a truncated character");
        constrain_grammar_free(g);
    }
    /* repetitions and multi-line rules with comments */
    g = parse("root ::= x{2,3} y{2} z{1,} w?   # trailing comment\n"
              "x ::= \"ab\"\n"
              "y ::= (\"c\" | \"d\")\n"
              "z ::= [0-9]\n"
              "w ::=\n  \"!\"\n  | \"?\"\n");
    if (g) {
        CHECK(matches(g, "ababcd1"), "x2 y2 z1");
        CHECK(matches(g, "abababdd123?"), "x3 y2 z3 w");
        CHECK(!matches(g, "abcd1"), "x1");
        CHECK(!matches(g, "abababab" "cd1"), "x4");
        CHECK(!matches(g, "ababcdd1"), "y3");
        CHECK(!matches(g, "ababcd"), "z0");
        constrain_grammar_free(g);
    }
    /* repetitions of what can be empty: tail calls, no left recursion */
    g = parse("root ::= (\"a\"? | \"b\")* \"c\"");
    if (g) {
        CHECK(matches(g, "c") && matches(g, "aabac") && !matches(g, "aab"), "(a?|b)* c");
        constrain_grammar_free(g);
    }
    /* a state: can_end and is_done */
    g = parse("root ::= \"a\" \"b\"?");
    if (g) {
        constrain_state *s = constrain_state_new_g(g);
        CHECK(!constrain_state_can_end(s), "empty accepted");
        CHECK(constrain_state_accept_bytes(s, "a", 1) == 0 && constrain_state_can_end(s) && !constrain_state_is_done(s), "after a");
        CHECK(constrain_state_accept_bytes(s, "c", 1) == -1, "c accepted");
        CHECK(constrain_state_accept_bytes(s, "b", 1) == 0 && constrain_state_is_done(s), "after ab");
        constrain_state_free(s);
        constrain_grammar_free(g);
    }
}

/* the example grammars shipped in docs/grammars parse and mean what they say */
static void test_doc_grammars(void) {
    static const struct { const char *file; const char *ok[3]; const char *bad[3]; } cases[] = {
        { "docs/grammars/json.gbnf", { "{\"a\": [1, -2.5e3, \"\\u00e9\"]}", "null", "\"x\"" }, { "{a:1}", "01", "[1,]" } },
        { "docs/grammars/arithmetic.gbnf", { "1 + 2 * (3 - 4) = -1", "(7)/7 = 1" }, { "1 + = 2", "1 + 2" } },
        { "docs/grammars/choice.gbnf", { "yes", "maybe, because it rained." }, { "Yes", "no, because." } },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *txt; size_t n; gk_err err;
        CHECK(gk_read_file(tl_path(cases[i].file), &txt, &n, &err) == 0, "%s", err.msg);
        constrain_grammar *g = constrain_grammar_parse(txt, n, NULL, &err);
        CHECK(g != NULL, "%s: %s", cases[i].file, err.msg);
        free(txt);
        if (!g) continue;
        for (int k = 0; k < 3 && cases[i].ok[k]; k++) CHECK(matches(g, cases[i].ok[k]), "%s rejects %s", cases[i].file, cases[i].ok[k]);
        for (int k = 0; k < 3 && cases[i].bad[k]; k++) CHECK(!matches(g, cases[i].bad[k]), "%s accepts %s", cases[i].file, cases[i].bad[k]);
        constrain_grammar_free(g);
    }
}

static constrain_grammar *from_gbnf_text(char *t) {
    if (!t) return NULL;
    constrain_grammar *g = parse(t);
    free(t);
    return g;
}

static void test_regex(void) {
    static const struct { const char *re; const char *ok[4]; const char *bad[4]; } cases[] = {
        { "^[a-z]+@(x|yz)\\.com$", { "a@x.com", "ab@yz.com" }, { "a@y.com", "A@x.com", "a@xcom" } },
        { "\\d{3}-\\d{4}", { "123-4567" }, { "12-4567", "123-45678", "abc-defg" } },
        { "(ab)*c?|x+", { "", "ababc", "xxx", "c" }, { "abx", "aba" } },
        { "[^\\s,]+(, [^\\s,]+){0,2}", { "a", "a, b", "é, ü, 日" }, { "a, b, c, d", "a,b", " a" } },
        { "[[:upper:]][[:lower:]_]*\\w?", { "Ab_c9", "Z" }, { "ab", "A-" } },
        { "(yes|no)\\.", { "yes.", "no." }, { "yes", "maybe." } },
        { "a.c", { "abc", "aéc" }, { "a\nc", "ac" } },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        gk_err err;
        constrain_grammar *g = from_gbnf_text(constrain_regex_to_gbnf(cases[i].re, &err));
        CHECK(g != NULL, "regex %s: %s", cases[i].re, err.msg);
        if (!g) continue;
        for (int k = 0; k < 4 && cases[i].ok[k]; k++) CHECK(matches(g, cases[i].ok[k]), "regex %s rejects '%s'", cases[i].re, cases[i].ok[k]);
        for (int k = 0; k < 4 && cases[i].bad[k]; k++) CHECK(!matches(g, cases[i].bad[k]), "regex %s accepts '%s'", cases[i].re, cases[i].bad[k]);
        constrain_grammar_free(g);
    }
    static const struct { const char *re, *want; } errs[] = {
        { "(a", "unclosed (" }, { "a)", "unmatched )" }, { "*a", "nothing to repeat" }, { "(a)\\1", "backreferences" },
        { "(?=a)", "lookaround" }, { "[a", "unterminated [class" }, { "a{2,1}", "maximum below minimum" }, { "a\\bb", "word boundary" },
        { "a^b", "anchor" }, { "[z-a]", "out of order" },
    };
    for (size_t i = 0; i < sizeof errs / sizeof errs[0]; i++) {
        gk_err err;
        memset(&err, 0, sizeof err);
        char *t = constrain_regex_to_gbnf(errs[i].re, &err);
        CHECK(!t && strstr(err.msg, errs[i].want), "regex %s: got '%s', want '%s'", errs[i].re, t ? t : err.msg, errs[i].want);
        free(t);
    }
}

static constrain_grammar *schema_grammar(const char *schema) {
    gk_err err;
    char *t = constrain_spec_to_gbnf(CONSTRAIN_JSON_SCHEMA, schema, strlen(schema), &err);
    CHECK(t != NULL, "schema %s: %s", schema, err.msg);
    return from_gbnf_text(t);
}

static void test_schema(void) {
    static const struct { const char *schema; const char *ok[5]; const char *bad[5]; } cases[] = {
        { "{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"integer\"},\"b\":{\"type\":\"string\"},\"c\":{\"type\":\"boolean\"}},"
          "\"required\":[\"b\"],\"additionalProperties\":false}",
          { "{\"b\":\"x\"}", "{\"a\":-3,\"b\":\"\"}", "{\"a\":1, \"b\":\"y\", \"c\":false}", "{\"b\":\"x\",\"c\":true}" },
          { "{}", "{\"a\":1}", "{\"b\":\"x\",}", "{\"b\":1}", "{\"b\":\"x\",\"d\":1}" } },
        { "{\"type\":\"integer\",\"minimum\":-15,\"maximum\":130}", { "-15", "0", "9", "130", "-7" }, { "131", "-16", "200", "01", "1.5" } },
        { "{\"type\":\"integer\",\"exclusiveMinimum\":99}", { "100", "12345" }, { "99", "0", "-1" } },
        { "{\"enum\":[\"red\",3,null,{\"k\":[1]}]}", { "\"red\"", "3", "null", "{\"k\":[1]}" }, { "\"blue\"", "4" } },
        { "{\"type\":\"array\",\"items\":{\"type\":\"number\"},\"minItems\":2,\"maxItems\":3}", { "[1,2]", "[1, 2.5, -3e2]" }, { "[1]", "[1,2,3,4]", "[]", "[\"a\",1]" } },
        { "{\"type\":\"array\",\"prefixItems\":[{\"const\":1},{\"type\":\"string\"}],\"items\":false}", { "[1,\"a\"]" }, { "[1]", "[2,\"a\"]", "[1,\"a\",3]" } },
        { "{\"$defs\":{\"n\":{\"type\":\"object\",\"properties\":{\"v\":{\"type\":\"integer\"},\"next\":{\"anyOf\":[{\"$ref\":\"#/$defs/n\"},{\"type\":\"null\"}]}},"
          "\"required\":[\"v\",\"next\"]}},\"$ref\":\"#/$defs/n\"}",
          { "{\"v\":1,\"next\":null}", "{\"v\":1,\"next\":{\"v\":2,\"next\":null}}" }, { "{\"v\":1}", "{\"v\":1,\"next\":{}}" } },
        { "{\"type\":\"string\",\"pattern\":\"^[A-Z]{2}[0-9]+$\"}", { "\"AB1\"", "\"ZZ123\"" }, { "\"A1\"", "\"ab1\"", "AB1" } },
        { "{\"type\":\"string\",\"format\":\"date\"}", { "\"2024-02-29\"" }, { "\"2024-13-01\"", "\"24-01-01\"" } },
        { "{\"type\":\"string\",\"minLength\":2,\"maxLength\":3}", { "\"ab\"", "\"日本語\"" }, { "\"a\"", "\"abcd\"" } },
        { "{\"type\":[\"string\",\"null\"]}", { "\"x\"", "null" }, { "1", "true" } },
        { "{\"oneOf\":[{\"type\":\"integer\"},{\"type\":\"object\"}]}", { "5", "{}", "{\"x\": [true]}" }, { "\"5\"", "[]" } },
        { "{\"type\":\"object\"}", { "{}", "{\"any\": {\"thing\": [1, \"x\"]}}" }, { "[]", "{" } },
        { "{\"type\":\"object\",\"properties\":{\"a\":{\"const\":1}},\"additionalProperties\":{\"type\":\"integer\"}}",
          { "{\"a\":1,\"zz\":5}", "{\"q\":2}", "{}" }, { "{\"q\":\"s\"}" } },
        { "true", { "1", "\"s\"", "[{}]" }, { "", "{" } },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        constrain_grammar *g = schema_grammar(cases[i].schema);
        if (!g) continue;
        for (int k = 0; k < 5 && cases[i].ok[k]; k++) CHECK(matches(g, cases[i].ok[k]), "schema %zu rejects %s", i, cases[i].ok[k]);
        for (int k = 0; k < 5 && cases[i].bad[k]; k++) CHECK(!matches(g, cases[i].bad[k]), "schema %zu accepts %s", i, cases[i].bad[k]);
        constrain_grammar_free(g);
    }
    static const struct { const char *schema, *want; } errs[] = {
        { "{\"type\":\"array\",\"uniqueItems\":true}", "at / (the root): uniqueItems" },
        { "{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"string\",\"format\":\"hostname\"}}}", "/properties/a: format \"hostname\"" },
        { "{\"properties\":{\"a\":{\"$ref\":\"#/$defs/none\"}}}", "does not resolve" },
        { "{\"type\":\"number\",\"maximum\":5}", "bounds on a number" },
        { "{\"type\":\"string\",\"pattern\":\"a+\"}", "unanchored" },
        { "{\"allOf\":[{\"type\":\"string\"},{\"minLength\":1}]}", "allOf with more than one" },
        { "{\"if\":{}}", "keyword \"if\" is not supported" },
        { "{\"type\":\"object\",\"patternProperties\":{}}", "patternProperties" },
        { "{\"type\":\"integer\",\"minimum\":5,\"maximum\":1}", "no integer fits" },
        { "{\"type\":\"widget\"}", "unknown type" },
        { "false", "matches nothing" },
        { "{\"type\":", "not valid JSON" },
    };
    for (size_t i = 0; i < sizeof errs / sizeof errs[0]; i++) {
        gk_err err;
        memset(&err, 0, sizeof err);
        char *t = constrain_spec_to_gbnf(CONSTRAIN_JSON_SCHEMA, errs[i].schema, strlen(errs[i].schema), &err);
        CHECK(!t && strstr(err.msg, errs[i].want), "schema %s: got '%s', want '%s'", errs[i].schema, t ? t : err.msg, errs[i].want);
        free(t);
    }
}

/* Random walks over the GPT-2 vocabulary: at every state the fast mask equals the reference, it is never
 * empty, and the walk takes a random allowed token (an end token once the grammar is done). */
static tok_tokenizer *gpt2(void) {
    gk_err err;
    tok_tokenizer *t = tok_load(tl_path("data/vocab/r50k_base.tiktoken"), &err);
    CHECK(t != NULL, "tokenizer: %s", err.msg);
    return t;
}

static void walk_check(constrain *c, const constrain_vocab *v, size_t steps, uint64_t seed, int32_t eot, const char *what) {
    size_t V = constrain_vocab_size(v), W = (V + 31) / 32;
    uint32_t *m1 = malloc(W * 4), *m2 = malloc(W * 4);
    gk_rng rng;
    gk_rng_seed(&rng, seed);
    constrain_state *s = constrain_state_new(c);
    int32_t *allowed = malloc(V * sizeof *allowed);
    for (size_t step = 0; step < steps; step++) {
        size_t a = constrain_mask(c, s, m1), b = constrain_mask_ref(c, s, m2);
        CHECK(a == b && !memcmp(m1, m2, W * 4), "%s seed %llu step %zu: fast mask (%zu) != reference (%zu)", what,
              (unsigned long long)seed, step, a, b);
        CHECK(a > 0, "%s seed %llu step %zu: a state admits no token", what, (unsigned long long)seed, step);
        if (!a) break;
        size_t n = 0;
        for (size_t id = 0; id < V; id++) if (m2[id >> 5] >> (id & 31) & 1) allowed[n++] = (int32_t)id;
        /* prefer short tokens half the time, so walks reach deep states instead of long strings */
        int32_t id = allowed[gk_rng_below(&rng, (uint32_t)n)];
        if (constrain_state_can_end(s) && gk_rng_below(&rng, 4) == 0) id = eot;
        CHECK(constrain_accept_token(c, s, id) == 0, "%s: allowed token %d rejected", what, id);
        if (id == eot) {
            CHECK(constrain_mask(c, s, m1) == 0, "%s: tokens allowed after the end", what);
            break;
        }
    }
    constrain_state_free(s);
    free(m1); free(m2); free(allowed);
}

static void test_masks_match_reference(void) {
    tok_tokenizer *t = gpt2();
    if (!t) return;
    constrain_vocab *v = constrain_vocab_new(t);
    int32_t eot = tok_eot_id(t);
    CHECK(constrain_vocab_size(v) == 50257, "vocab %zu", constrain_vocab_size(v));
    const char *schema = "{\"type\":\"object\",\"properties\":{\"name\":{\"type\":\"string\",\"maxLength\":6},"
                         "\"age\":{\"type\":\"integer\",\"minimum\":0,\"maximum\":120},\"tags\":{\"type\":\"array\",\"items\":{\"enum\":[\"a\",\"bc\"]}},"
                         "\"ok\":{\"type\":\"boolean\"}},\"required\":[\"name\",\"age\"]}";
    gk_err err;
    char *texts[4] = { gk_strdup(JSON_G), constrain_spec_to_gbnf(CONSTRAIN_JSON_SCHEMA, schema, strlen(schema), &err),
                       constrain_regex_to_gbnf("(0|[1-9][0-9]*)(, [a-z]+){1,3}\\.", &err),
                       gk_strdup("root ::= \"é\"+ [^\\x00-\\x7F]{2} \"\\n\" ( \"ab\" | [a-c]+ \"!\" )") };
    const char *names[4] = { "json", "schema", "regex", "utf8" };
    for (int k = 0; k < 4; k++) {
        CHECK(texts[k] != NULL, "grammar %d: %s", k, err.msg);
        constrain_grammar *g = texts[k] ? parse(texts[k]) : NULL;
        free(texts[k]);
        if (!g) continue;
        constrain *c = constrain_new(g, v, &eot, 1);
        for (uint64_t seed = 1; seed <= 3; seed++) walk_check(c, v, 12, seed * 7 + (uint64_t)k, eot, names[k]);
        constrain_free(c);
    }
    constrain_vocab_free(v);
    tok_free(t);
}

/* ---------------------------------------------------------------- through the engine */

static gpt_model *tiny_model(int V, uint64_t seed) {
    gpt_config c;
    gpt_config_default(&c);
    c.n_layer = 1; c.n_head = 2; c.n_embd = 16; c.vocab_size = V; c.n_ctx = 256;
    gpt_model *m = gpt_create_on(&c, NULL);
    gpt_init_random(m, seed);
    return m;
}

static void test_engine_constrained(void) {
    tok_tokenizer *t = gpt2();
    if (!t) return;
    gpt_model *m = tiny_model(50257, 3);
    constrain_vocab *v = constrain_vocab_new(t);
    engine *e = engine_new(m, t, 4, 256);
    tok_ids p = {0};
    tok_encode(t, "JSON:", 5, 0, &p);
    /* 1. sampled at temperature 1, batch of 4: every sample is a complete match of the regex */
    gk_err err;
    char *re = constrain_regex_to_gbnf("\\{\"n\": (0|[1-9][0-9]{0,3}), \"w\": \"[a-z ]{1,12}\"\\}", &err);
    constrain *c = constrain_new(parse(re), v, NULL, 0);
    constrain_grammar *check = parse(re);
    free(re);
    engine_gen_opts o;
    engine_gen_opts_default(&o);
    o.max_new = 120; o.grammar = c; o.samp.temperature = 1.0f;
    for (uint64_t seed = 1; seed <= 3; seed++) {
        o.samp.seed = seed;
        engine_seq out[4];
        CHECK(engine_generate(e, p.ids, p.n, 4, &o, out, &err) == 0, "generate: %s", err.msg);
        for (int k = 0; k < 4; k++) {
            CHECK(out[k].finish == ENGINE_FINISH_STOP_TOKEN || out[k].finish == ENGINE_FINISH_GRAMMAR, "seed %llu sample %d finish %s",
                  (unsigned long long)seed, k, engine_finish_name(out[k].finish));
            CHECK(matches(check, out[k].text), "seed %llu sample %d: '%s' does not match", (unsigned long long)seed, k, out[k].text);
            engine_seq_free(&out[k]);
        }
    }
    constrain_grammar_free(check);
    constrain_free(c);
    /* 2. temperature 0: the unconstrained output, written as a grammar literal, is generated unchanged (prompts
     *    tried until the greedy output is valid UTF-8 text, which a literal can spell) */
    engine_gen_opts_default(&o);
    o.max_new = 16; o.samp.temperature = 0; o.default_stops = 0;
    int tried_ok = 0;
    for (int pi = 0; pi < 20 && !tried_ok; pi++) {
        char prompt[32];
        snprintf(prompt, sizeof prompt, "Item %d:", pi);
        tok_ids q = {0};
        tok_encode(t, prompt, strlen(prompt), 0, &q);
        engine_seq free_out, con_out;
        CHECK(engine_generate(e, q.ids, q.n, 1, &o, &free_out, &err) == 0, "greedy: %s", err.msg);
        tok_bytes raw = {0};
        tok_decode(t, free_out.ids, free_out.n, &raw, &err);
        size_t bad;
        if (raw.n && gk_utf8_valid((const char *)raw.data, raw.n, &bad)) {
            tried_ok = 1;
            char *lit = malloc(raw.n * 4 + 32);
            size_t L = (size_t)sprintf(lit, "root ::= \"");
            for (size_t i = 0; i < raw.n; i++) {
                unsigned char ch = raw.data[i];
                if (ch == '"' || ch == '\\') { lit[L++] = '\\'; lit[L++] = (char)ch; }
                else if (ch < 0x20) L += (size_t)sprintf(lit + L, "\\x%02X", ch);
                else lit[L++] = (char)ch;
            }
            L += (size_t)sprintf(lit + L, "\"");
            constrain_grammar *lg = parse(lit);
            if (lg) {
                c = constrain_new(lg, v, NULL, 0);
                o.grammar = c;
                CHECK(engine_generate(e, q.ids, q.n, 1, &o, &con_out, &err) == 0, "greedy constrained: %s", err.msg);
                CHECK(con_out.n >= free_out.n && !memcmp(con_out.ids, free_out.ids, free_out.n * sizeof(int32_t)),
                      "prompt %d: constrained greedy differs from the unconstrained greedy output that satisfies the grammar", pi);
                engine_seq_free(&con_out);
                constrain_free(c);
                o.grammar = NULL;
            }
            free(lit);
        }
        tok_bytes_free(&raw);
        engine_seq_free(&free_out);
        tok_ids_free(&q);
    }
    CHECK(tried_ok, "no prompt gave a valid UTF-8 greedy output to compare");
    tok_ids_free(&p);
    engine_free(e);
    constrain_vocab_free(v);
    gpt_free(m);
    tok_free(t);
}

int main(void) {
    TL_RUN(test_gbnf_errors);
    TL_RUN(test_gbnf_match);
    TL_RUN(test_doc_grammars);
    TL_RUN(test_regex);
    TL_RUN(test_schema);
    TL_RUN(test_masks_match_reference);
    TL_RUN(test_engine_constrained);
    return tl_summary();
}
