/* wordpiece.h: BERT's WordPiece tokenizer, exact to HF tokenizers (BertNormalizer + BertPreTokenizer +
 * WordPiece + the [CLS] ... [SEP] template), for the sentence-embedding encoders of src/embed.
 *
 * Steps, as HF's BertTokenizerFast runs them:
 *  0. special tokens written literally in the text ("[SEP]", and every added token) are matched on the raw
 *     text first and become their own ids;
 *  1. normalise (BertNormalizer): clean_text drops NUL, U+FFFD and control characters and turns every
 *     whitespace character into ' '; handle_chinese_chars puts spaces around CJK ideographs; strip_accents
 *     (default: follows lowercase) is NFD without nonspacing marks; lowercase is the full per-character
 *     lower-casing;
 *  2. pre-tokenise (BertPreTokenizer): split on whitespace, each punctuation character (Unicode P* or ASCII
 *     punctuation) its own word;
 *  3. WordPiece: greedy longest match from the left, pieces after the first prefixed "##"; a word with no
 *     complete match, or longer than max_input_chars_per_word characters, is one [UNK];
 *  4. [CLS] + pieces + [SEP], the pieces truncated so the whole fits max_len (sentence-transformers'
 *     truncation of inputs longer than the model's max_seq_length).
 * Every token carries the byte range of the original text it came from (for chunk offsets).
 * Unicode facts come from tok/wordpiece_unicode.c (generated from Python's unicodedata). */
#ifndef GK_WORDPIECE_H
#define GK_WORDPIECE_H
#include "core/core.h"
#include <stddef.h>
#include <stdint.h>

typedef struct wp_tokenizer wp_tokenizer;

/* Normaliser switches (BertNormalizer's fields). strip_accents -1 means "as lowercase". */
typedef struct {
    int clean_text, chinese, strip_accents, lowercase;
    size_t max_chars_per_word;   /* default 100 */
} wp_options;
void wp_options_default(wp_options *o);   /* all on, strip_accents -1, 100 */

/* Token ids with the byte range [start, end) of the input each came from ([CLS]/[SEP]: an empty range). */
typedef struct { int32_t *ids; uint32_t *start, *end; size_t n, cap; } wp_ids;
void wp_ids_free(wp_ids *v);

/* From a model directory: tokenizer.json (model WordPiece, normalizer BertNormalizer, pre-tokenizer
 * BertPreTokenizer, added tokens) when present, else vocab.txt with tokenizer_config.json's do_lower_case /
 * strip_accents / tokenize_chinese_chars. Errors name the file and field. */
wp_tokenizer *wp_load_dir(const char *dir, gk_err *err);
/* From a vocab.txt text (one token per line, id = line number from 0). what names it in errors. */
wp_tokenizer *wp_from_vocab(const char *text, size_t n, const wp_options *o, const char *what, gk_err *err);
/* From a tokenizer.json text. */
wp_tokenizer *wp_from_json(const char *text, size_t n, const char *what, gk_err *err);
void wp_free(wp_tokenizer *t);

size_t wp_vocab_size(const wp_tokenizer *t);        /* largest id + 1 */
int32_t wp_token_id(const wp_tokenizer *t, const char *tok);   /* -1 if absent */
int32_t wp_cls_id(const wp_tokenizer *t);
int32_t wp_sep_id(const wp_tokenizer *t);
int32_t wp_pad_id(const wp_tokenizer *t);

/* Tokenises s[0..n) (must be valid UTF-8: -1 with the byte offset otherwise). specials: 1 adds [CLS] and
 * [SEP]. max_len > 0 truncates the output (specials included) to max_len tokens. out is cleared first. */
int wp_encode(const wp_tokenizer *t, const char *s, size_t n, int specials, size_t max_len, wp_ids *out, gk_err *err);
#endif
