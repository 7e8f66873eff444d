/* fuzz_tokenizer.c: tokenizer files. The first byte picks the form: a bare .tiktoken rank file, or our saved
 * pair (PATH.tiktoken + PATH.json) with the rest split at the first NUL; a tokenizer that loads must encode and
 * decode a fixed text without crashing. */
#include "tok/tok.h"
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n) {
    if (n < 1) return 0;
    int pair = data[0] & 1;
    data++; n--;
    const char *path;
    if (pair) {
        const uint8_t *nul = memchr(data, 0, n);
        size_t a = nul ? (size_t)(nul - data) : n;
        fuzz_file("t.tiktoken", data, a);
        path = fuzz_file("t.json", nul ? nul + 1 : data + n, nul ? n - a - 1 : 0);
    } else {
        path = fuzz_file("x.tiktoken", data, n);
    }
    gk_err err;
    tok_tokenizer *t = tok_load(path, &err);
    if (!t) return 0;
    static const char text[] = "Hello, world! <|endoftext|> 12345 caf\xc3\xa9 \xe4\xb8\xad";
    tok_ids ids = {0};
    tok_encode(t, text, sizeof text - 1, 1, &ids);
    tok_bytes out = {0};
    tok_decode(t, ids.ids, ids.n, &out, &err);
    tok_ids_free(&ids);
    tok_bytes_free(&out);
    tok_free(t);
    return 0;
}
