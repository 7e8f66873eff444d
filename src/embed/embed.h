/* embed: sentence embeddings from BERT-family encoders as sentence-transformers publishes them
 * (all-MiniLM-L6-v2 and its kin): forward only, through the kern backend table.
 *
 *   text --WordPiece (tok/wordpiece.h)--> [CLS] ids [SEP] (truncated to max_seq_length)
 *        --> x = LN(word[id] + type[0] + pos[t])
 *        --> per layer (post-LayerNorm):  a = LN(x + Wo attn(x Wqkv) + bo)    bidirectional, padding masked
 *                                         x = LN(a + W2 gelu(W1 a + b1) + b2)
 *        --> pooling (mean over tokens, CLS, max or mean*sqrt(len), as 1_Pooling/config.json says)
 *        --> L2 normalisation when modules.json lists a Normalize module.
 *
 * A model directory holds config.json (BertConfig), model.safetensors (names with or without "bert."),
 * tokenizer.json or vocab.txt, and optionally modules.json, 1_Pooling/config.json, sentence_bert_config.json
 * (max_seq_length). Without modules.json the directory is a plain HF BERT: mean pooling, no normalisation
 * (what sentence-transformers makes of one). Batches are sorted by length and padded within a batch; the
 * result of a text does not depend on what else is in its batch beyond float summation order. */
#ifndef GK_EMBED_H
#define GK_EMBED_H
#include "core/core.h"
#include "kern/kern.h"
#include "tok/wordpiece.h"

typedef struct embed_model embed_model;
typedef enum { EMBED_POOL_MEAN = 0, EMBED_POOL_CLS, EMBED_POOL_MAX, EMBED_POOL_MEAN_SQRT } embed_pool;

/* Loads DIR on backend be (NULL: a default one, owned by the model). Errors name the file and field. */
embed_model *embed_load(const char *dir, kern_backend *be, gk_err *err);
void embed_free(embed_model *m);

size_t embed_dim(const embed_model *m);                 /* output vector length */
size_t embed_max_tokens(const embed_model *m);          /* max_seq_length, [CLS] and [SEP] included */
int    embed_normalized(const embed_model *m);          /* 1 if outputs are L2-normalised */
const wp_tokenizer *embed_tokenizer(const embed_model *m);
/* One line about the model: "bert 6x384 (12 heads), mean pooling, normalized, max 256 tokens, vocab 30522". */
const char *embed_describe(const embed_model *m);
/* A fingerprint of the weights and settings (hex, 16 chars): an index refuses a different embedder. */
const char *embed_fingerprint(const embed_model *m);
const char *embed_path(const embed_model *m);           /* the directory it was loaded from */
/* Texts per forward batch (default 32). */
void embed_set_batch(embed_model *m, size_t batch);

/* Embeds n texts (texts[i] of lens[i] bytes; lens NULL: NUL-terminated) into out [n, embed_dim]. Returns 0,
 * or -1 naming the text's index (invalid UTF-8). */
int embed_texts(embed_model *m, const char *const *texts, const size_t *lens, size_t n, float *out, gk_err *err);
/* Embeds already-tokenised inputs (ids with [CLS]/[SEP], each at most embed_max_tokens): out [n, dim]. */
void embed_ids(embed_model *m, const int32_t *const *ids, const size_t *n_ids, size_t n, float *out);
#endif
