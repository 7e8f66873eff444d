/* fuzz_schema.c: what an HTTP client or a --json-schema / --regex user hands the converters. The first byte
 * picks the converter (even: JSON Schema, odd: regex); the rest is the schema or the regex. Properties checked
 * beyond "no crash": a converter's output always compiles as GBNF (abort otherwise), and a response_format
 * object wrapping the schema is handled the same way. */
#include "constrain/constrain.h"
#include <cjson/cJSON.h>
#include "fuzz_common.h"

static void must_compile(char *gbnf) {
    if (!gbnf) return;
    gk_err err;
    constrain_grammar *g = constrain_grammar_parse(gbnf, strlen(gbnf), NULL, &err);
    if (!g) { fprintf(stderr, "converter output does not compile: %s\n%s\n", err.msg, gbnf); abort(); }
    (void)constrain_grammar_matches(g, "{}", 2);
    constrain_grammar_free(g);
    free(gbnf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n) {
    if (n < 1) return 0;
    gk_err err;
    char *s = fuzz_str(data + 1, n - 1);
    if (data[0] & 1) must_compile(constrain_regex_to_gbnf(s, &err));
    else {
        must_compile(constrain_spec_to_gbnf(CONSTRAIN_JSON_SCHEMA, s, n - 1, &err));
        cJSON *sc = cJSON_ParseWithLength(s, n - 1);
        if (sc) {
            cJSON *rf = cJSON_CreateObject(), *js = cJSON_AddObjectToObject(rf, "json_schema");
            cJSON_AddStringToObject(rf, "type", "json_schema");
            cJSON_AddItemToObject(js, "schema", sc);
            char *g = NULL;
            if (constrain_from_response_format(rf, &g, &err) == 0) must_compile(g);
            cJSON_Delete(rf);
        }
    }
    free(s);
    return 0;
}
