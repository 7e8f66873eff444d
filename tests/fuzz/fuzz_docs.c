/* fuzz_docs.c: documents given to `gptkit index build`. The first byte picks plain text or JSONL; every
 * document that parses is tokenised and cut into chunks, and the chunks must cover the document's tokens
 * within the size limit (second byte) and its bytes. */
#include "index/index_internal.h"
#include "fuzz_common.h"

static const char VOCAB[] = "[PAD]\n[UNK]\n[CLS]\n[SEP]\nthe\nriver\n##s\na\nb\n.\n,\n";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n) {
    if (n < 2) return 0;
    int jsonl = data[0] & 1;
    size_t max_tok = 8 + data[1] % 64, overlap = data[1] % 8;
    data += 2; n -= 2;
    index_docs d = {0}; gk_err err;
    if (index_parse_buffer("fuzz.txt", (const char *)data, n, jsonl, &d, &err) == 0) {
        wp_tokenizer *t = wp_from_vocab(VOCAB, sizeof VOCAB - 1, NULL, "v", &err);
        if (!t) abort();
        for (size_t i = 0; i < d.n; i++) {
            wp_ids tok = {0};
            if (wp_encode(t, d.v[i].text, d.v[i].len, 0, 0, &tok, &err) == 0 && tok.n) {
                index_chunk *c; size_t nc, covered = 0;
                index_chunk_doc(d.v[i].text, d.v[i].len, &tok, max_tok, overlap, &c, &nc);
                for (size_t k = 0; k < nc; k++) {
                    if (c[k].t1 - c[k].t0 > max_tok || c[k].t0 > covered || c[k].b > d.v[i].len || c[k].a > c[k].b) abort();
                    if (c[k].t1 > covered) covered = c[k].t1;
                }
                if (covered != tok.n) abort();
                free(c);
            }
            wp_ids_free(&tok);
        }
        wp_free(t);
    }
    index_docs_free(&d);
    return 0;
}
