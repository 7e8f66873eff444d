/* fuzz_gbnf.c: GBNF grammars as users write them — the parser (errors must be messages, never crashes) and,
 * for a grammar that parses, the matcher fed bytes: the input's own bytes, then a few fixed probes, each from
 * a fresh state. Input: the grammar text; a NUL byte, if any, splits it into grammar and bytes to feed. */
#include "constrain/constrain.h"
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n) {
    const uint8_t *nul = memchr(data, 0, n);
    size_t gl = nul ? (size_t)(nul - data) : n;
    gk_err err;
    constrain_grammar *g = constrain_grammar_parse((const char *)data, gl, NULL, &err);
    if (!g) return 0;
    constrain_state *s = constrain_state_new_g(g);
    const uint8_t *feed = nul ? nul + 1 : data;
    size_t fl = nul ? n - gl - 1 : (n < 256 ? n : 256);
    for (size_t i = 0; i < fl; i++) if (constrain_state_accept_bytes(s, feed + i, 1)) break;
    (void)constrain_state_can_end(s);
    (void)constrain_state_is_done(s);
    constrain_state_free(s);
    static const char *probes[] = { "", "a", "{\"a\": [1, 2]}", "\xc3\xa9\xe4\xb8\xad\xf0\x9f\x98\x80", "0123456789" };
    for (size_t k = 0; k < sizeof probes / sizeof probes[0]; k++) (void)constrain_grammar_matches(g, probes[k], strlen(probes[k]));
    constrain_grammar_free(g);
    return 0;
}
