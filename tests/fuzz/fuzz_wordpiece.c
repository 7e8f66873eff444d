/* fuzz_wordpiece.c: WordPiece vocabularies and text. The first byte picks: 0 a vocab.txt, 1 a tokenizer.json
 * (a tokenizer that loads must encode a fixed multilingual text), 2 text to encode (with offsets checked)
 * through a small fixed vocabulary with every normaliser switch taken from the second byte. */
#include "tok/wordpiece.h"
#include "fuzz_common.h"

static const char VOCAB[] = "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nthe\nrun\n##ning\n##s\na\nb\nc\n##a\n##b\n.\n,\n!\ncafe\n"
                            "\xe4\xb8\xad\n\xc3\xa9\n##\xc3\xa9\n";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n) {
    if (n < 2) return 0;
    int mode = data[0] % 3, flags = data[1];
    data += 2; n -= 2;
    gk_err err;
    wp_tokenizer *t = NULL;
    const char *text = "Running, the CAF\xc3\x89! \xe4\xb8\xad\xe5\x9b\xbd [SEP] \xed\x95\x9c\xea\xb5\xad\xec\x96\xb4 a\tb";
    size_t tn = strlen(text);
    if (mode == 0) t = wp_from_vocab((const char *)data, n, NULL, "fuzz", &err);
    else if (mode == 1) t = wp_from_json((const char *)data, n, "fuzz", &err);
    else {
        wp_options o; wp_options_default(&o);
        o.lowercase = flags & 1; o.strip_accents = (flags >> 1 & 3) == 3 ? -1 : (flags >> 1 & 1);
        o.chinese = flags >> 3 & 1; o.clean_text = flags >> 4 & 1; o.max_chars_per_word = 1 + (flags >> 5);
        t = wp_from_vocab(VOCAB, sizeof VOCAB - 1, &o, "fixed", &err);
        text = (const char *)data; tn = n;
    }
    if (!t) return 0;
    wp_ids ids = {0};
    if (wp_encode(t, text, tn, 1, (size_t)flags, &ids, &err) == 0) {
        for (size_t i = 0; i < ids.n; i++)
            if (ids.start[i] > ids.end[i] || ids.end[i] > tn || ids.ids[i] < 0) abort();
    }
    wp_ids_free(&ids);
    wp_free(t);
    return 0;
}
