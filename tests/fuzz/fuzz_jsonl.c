/* fuzz_jsonl.c: one line of the JSONL inputs — chat conversations ({"messages"}), preference pairs and
 * rankings, scored responses and prompt sets — through the parsers the stages use. */
#include "data/data.h"
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n) {
    char *s = fuzz_str(data, n);
    gk_err err;
    chat_conv c = {0};
    chat_conv_from_json(&c, s, &err);
    chat_conv_free(&c);
    static const int accepts[] = { PREFS_ACCEPT_PREFS, PREFS_ACCEPT_SCORED, PREFS_ACCEPT_PROMPTS,
                                   PREFS_ACCEPT_PREFS | PREFS_ACCEPT_SCORED | PREFS_ACCEPT_PROMPTS };
    for (size_t i = 0; i < sizeof accepts / sizeof accepts[0]; i++) {
        prefs_item it;
        if (prefs_parse_line(s, "fuzz.jsonl", 1, accepts[i], &it, &err) == 0) prefs_item_free(&it);
    }
    free(s);
    return 0;
}
