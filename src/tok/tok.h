/* tok: byte-level BPE tokenizer — load (tiktoken ranks, GPT-2 encoder.json + vocab.bpe, our own saved
 * format), encode, decode, incremental decode, special tokens, training, saving.
 *
 * Model (the same as OpenAI's tiktoken): a vocabulary is a set of byte strings, each with a rank (= its id).
 * Encoding pre-splits the text with the vocabulary's split pattern (GPT-2's or cl100k's, matched by a
 * hand-written splitter with tiktoken's exact Unicode classes), then inside each piece repeatedly merges the
 * adjacent pair whose concatenation has the lowest rank (leftmost on ties). Every one of the 256 single bytes
 * is a token, so any byte string encodes and decode(encode(x)) == x. Invalid UTF-8 bytes in the input are
 * split as one-byte "other" (punctuation-like) characters.
 *
 * Special tokens (e.g. "<|endoftext|>") are separate ids with no rank; they are matched in text only when
 * the caller allows it, otherwise their text is ordinary text.
 *
 * Thread safety: a loaded tokenizer is read-only during encode/decode, so any number of threads may encode
 * with it at once (each tok_encoder is per thread). tok_add_special / tok_add_chat_specials mutate it.
 * Full format and behaviour notes: docs/tokenizer.md. */
#ifndef GK_TOK_H
#define GK_TOK_H
#include <stddef.h>
#include <stdint.h>
#include "core/core.h"

/* ---------------------------------------------------------------- special tokens of the chat format */
#define TOK_EOT              "<|endoftext|>"
#define TOK_SYSTEM           "<|system|>"
#define TOK_USER             "<|user|>"
#define TOK_ASSISTANT        "<|assistant|>"
#define TOK_END              "<|end|>"               /* end of a turn */
#define TOK_TOOL_CALL        "<|tool_call|>"
#define TOK_TOOL_CALL_END    "<|tool_call_end|>"
#define TOK_TOOL_RESULT      "<|tool_result|>"
#define TOK_TOOL_RESULT_END  "<|tool_result_end|>"
#define TOK_N_CHAT_SPECIALS  9
/* The nine above, in this order (a trained tokenizer gives them ids right after its merges, in this order). */
extern const char *const tok_chat_specials[TOK_N_CHAT_SPECIALS];

/* Known split patterns (tiktoken's exact strings). */
extern const char tok_pattern_gpt2[];
extern const char tok_pattern_cl100k[];
/* gptkit's own pattern, the default for training: cl100k's, but a word may start with a newline and keeps
 * its trailing punctuation (except an apostrophe). See docs/tokenizer.md. */
extern const char tok_pattern_gptkit[];

/* ---------------------------------------------------------------- growable outputs */
/* Caller-owned growable arrays; zero-initialise ({0}) before first use, free with tok_ids_free /
 * tok_bytes_free. Encode/decode APPEND to them (set .n = 0 to reuse). */
typedef struct { int32_t *ids; size_t n, cap; } tok_ids;
typedef struct { uint8_t *data; size_t n, cap; } tok_bytes;
void tok_ids_free(tok_ids *v);
void tok_bytes_free(tok_bytes *b);
void tok_ids_push(tok_ids *v, int32_t id);
void tok_bytes_append(tok_bytes *b, const void *data, size_t n);

typedef struct tok_tokenizer tok_tokenizer;

/* ---------------------------------------------------------------- load / free / save */
/* Loads a tokenizer. path may be:
 *   - a .tiktoken rank file ("base64(bytes) rank" per line). If PATH.json (or the .tiktoken's stem + .json)
 *     exists beside it, that is our saved format and gives the pattern and special tokens; otherwise
 *     r50k_base / gpt2 and cl100k_base are recognised (by file name, else by rank count) and get their
 *     pattern and special tokens; any other rank file gets the GPT-2 pattern and no special tokens;
 *   - a directory holding GPT-2's encoder.json + vocab.bpe, our tokenizer.tiktoken + tokenizer.json, or HF's
 *     tokenizer.json alone (byte-level BPE; tok_io.c says which pre-tokenizers), or that tokenizer.json's path;
 *   - our saved PATH (PATH.tiktoken + PATH.json), given as PATH, PATH.tiktoken or PATH.json;
 *   - the names "gpt2", "r50k_base", "cl100k_base": looked up under $GPTKIT_VOCAB, else data/vocab.
 * Returns a new tokenizer (free with tok_free) or NULL with err naming the file, line and problem
 * (bad base64, duplicate rank or token, missing single byte, merge not in vocabulary, ...). */
tok_tokenizer *tok_load(const char *path, gk_err *err);
/* The vocabulary of a GGUF model file (tokenizer.ggml.model "gpt2" with pre llama-bpe, qwen2, smollm or gpt-2);
 * tok_load calls it for a path ending in .gguf. */
tok_tokenizer *tok_load_gguf(const char *path, gk_err *err);
/* The vocabulary as llama.cpp's GGUF stores a byte-level BPE ("gpt2" model): per id its string (byte-mapped,
 * or the special token's text, or "[PAD<id>]" for a gap) and type (1 normal, 3 control, 5 unused); merges "a b"
 * in rank order (each token's last merge under rank BPE); pre = llama.cpp's name for the split pattern
 * (llama-bpe, qwen2, smollm, gpt-2). -1 with err if the pattern has no llama.cpp equivalent. */
typedef struct {
    char **tokens; size_t *lens; int32_t *types; size_t n;
    char **merges; size_t *mlens; size_t nm;
    const char *pre;
} tok_bpe_export;
int  tok_export_bpe(const tok_tokenizer *t, tok_bpe_export *x, gk_err *err);
void tok_bpe_export_free(tok_bpe_export *x);
/* The tokenizer as HF's tokenizer.json (byte-level BPE: vocabulary, merges in rank order, every special token an
 * added token with special = true, the pre-tokenizer HF writes for its split pattern, ByteLevel decoder, no
 * normalizer or post-processor), which tok_load reads back to a tokenizer encoding as t does and HF's tokenizers
 * encode alike (docs/tokenizer.md). Returns a malloc'd, newline-terminated string, or NULL with err when a token
 * is not made by a merge. */
char *tok_hf_json(const tok_tokenizer *t, gk_err *err);
/* The tokenizer of a checkpoint: `override` if non-NULL (--tokenizer), else model_dir's own tokenizer.json (every
 * checkpoint gptkit writes carries one, so a moved directory keeps its tokenizer), else the path recorded in its
 * config.json (`recorded`, from gpt_load), tried as written and then relative to model_dir. *tok = NULL if
 * there is none; that is an error only when `required` ("... records no tokenizer; pass --tokenizer PATH"). */
int tok_load_recorded(const char *model_dir, const char *recorded, const char *override, int required,
                      tok_tokenizer **tok, gk_err *err);
void tok_free(tok_tokenizer *t);   /* NULL ok */

/* Saves as PATH.tiktoken + PATH.json (a directory path gives DIR/tokenizer.{tiktoken,json}); atomic writes.
 * A trailing ".tiktoken" or ".json" on path is stripped first. Returns 0, or -1 with err. */
int tok_save(const tok_tokenizer *t, const char *path, gk_err *err);

/* ---------------------------------------------------------------- queries */
size_t      tok_vocab_size(const tok_tokenizer *t);   /* 1 + the largest id (ordinary or special) */
size_t      tok_n_ranks(const tok_tokenizer *t);      /* ordinary (ranked) tokens */
size_t      tok_n_specials(const tok_tokenizer *t);
const char *tok_name(const tok_tokenizer *t);         /* "gpt2", "cl100k_base", or the saved name */
const char *tok_pattern(const tok_tokenizer *t);      /* the split regex (exact string) */
int32_t     tok_special_id(const tok_tokenizer *t, const char *name);   /* -1 if absent */
int32_t     tok_eot_id(const tok_tokenizer *t);       /* id of <|endoftext|>, -1 if absent */
/* 1 for a tokenizer that matches its special tokens in any text (HF tokenizer.json's added tokens): callers
 * that encode user text for the model pass allow_special = 1 for it, as HF's encode does. */
int         tok_specials_in_text(const tok_tokenizer *t);
/* The i-th special token (0 <= i < tok_n_specials): its text and id. */
const char *tok_special_at(const tok_tokenizer *t, size_t i, int32_t *id);
/* Bytes of token id (ordinary or special); NULL if id is not a token (out of range or a gap). */
const uint8_t *tok_token_bytes(const tok_tokenizer *t, int32_t id, size_t *len);
/* Bytes of text token id stands for: its length for an ordinary token, 0 for a special token (a marker, not
 * text) or a non-token. What bits-per-byte figures divide by. */
size_t tok_text_len(const tok_tokenizer *t, int32_t id);

/* Adds a special token with the given id (-1: next free id after everything). Returns its id, or -1 with err
 * if the text or id is already taken. */
int32_t tok_add_special(tok_tokenizer *t, const char *text, int32_t id, gk_err *err);
/* Appends whichever of tok_chat_specials are missing, at ids after the vocabulary's largest id, in order.
 * (gpt2: <|endoftext|> stays 50256 and <|system|> becomes 50257, ...) Returns how many were added. */
int tok_add_chat_specials(tok_tokenizer *t);

/* ---------------------------------------------------------------- encode / decode */
/* Encodes len bytes (any bytes) and appends the ids to out. allow_special: 0 = special-token text is
 * ordinary text (tiktoken's encode_ordinary); 1 = every special token of t is matched (tiktoken's
 * encode(allowed_special="all")). Never fails. Uses a temporary piece cache for long inputs, and from 4 MB
 * the OpenMP threads (segments cut at tok_safe_cut boundaries: the same ids); for many calls on one thread, a
 * tok_encoder is faster. */
void tok_encode(const tok_tokenizer *t, const void *text, size_t len, int allow_special, tok_ids *out);

/* A per-thread encoder: the tokenizer plus a cache of recently seen pieces (~4 MB). Not thread-safe itself;
 * use one per thread. The tokenizer must outlive it. */
typedef struct tok_encoder tok_encoder;
tok_encoder *tok_encoder_new(const tok_tokenizer *t);
void tok_encoder_free(tok_encoder *e);
void tok_encoder_encode(tok_encoder *e, const void *text, size_t len, int allow_special, tok_ids *out);

/* Appends the bytes of n ids to out. Returns 0, or -1 with err naming the first id that is not a token
 * (out of range or a gap in the ranks); out then holds the bytes of the ids before it. */
int tok_decode(const tok_tokenizer *t, const int32_t *ids, size_t n, tok_bytes *out, gk_err *err);

/* Incremental decoder for streaming: push ids one at a time; only complete, valid UTF-8 is appended to out.
 * An incomplete character at the end is held back until the next id completes it; bytes that can never
 * form valid UTF-8 become U+FFFD. tok_stream_flush appends U+FFFD for a held-back incomplete tail. For ids
 * whose bytes are valid UTF-8 overall, the concatenated output equals tok_decode's. */
typedef struct { uint8_t pend[4]; int npend; } tok_stream;
void tok_stream_init(tok_stream *s);
int  tok_stream_push(tok_stream *s, const tok_tokenizer *t, int32_t id, tok_bytes *out, gk_err *err);
void tok_stream_flush(tok_stream *s, tok_bytes *out);

/* ---------------------------------------------------------------- training */
/* Byte-level BPE training. Feed text (any number of times, any sizes; pieces are counted as they come),
 * then finish. Memory is the unique pre-split pieces and their counts, not the corpus.
 * Merges: the most frequent adjacent pair (weighted by piece counts) is merged next; ties go to the pair
 * whose (left id, right id) is smallest. Pair counts are updated incrementally and the next pair comes
 * from a lazy max-heap. A merge whose bytes already are a token reuses that token (no new rank). */
typedef struct {
    size_t vocab_size;           /* total: 256 bytes + merges + specials */
    const char *pattern;         /* "gptkit", "gpt2", "cl100k", their regex strings, or (PCRE2 builds) any regex; NULL = gptkit */
    const char **specials;       /* extra special tokens after the chat ones (NULL ok) */
    size_t n_specials;
    const char *name;            /* recorded in the saved JSON; NULL = "gptkit-bpe" */
    int progress;                /* 1: log progress with ETA to stderr */
} tok_train_opts;
void tok_train_opts_default(tok_train_opts *o);

typedef struct tok_trainer tok_trainer;
tok_trainer *tok_trainer_new(const tok_train_opts *o, gk_err *err);   /* NULL if the pattern is unsupported */
void tok_trainer_feed(tok_trainer *tr, const void *text, size_t len);
/* Runs the merges and returns the tokenizer (ranks 0..255 = bytes, then merges, then the 9 chat specials,
 * then o->specials). NULL with err if vocab_size is too small. Frees nothing: call tok_trainer_free. */
tok_tokenizer *tok_trainer_finish(tok_trainer *tr, gk_err *err);
void tok_trainer_free(tok_trainer *tr);
/* Convenience: reads the files (in 16 MB blocks cut at line starts) and trains. */
tok_tokenizer *tok_train_files(const char *const *files, size_t nfiles, const tok_train_opts *o, gk_err *err);

/* ---------------------------------------------------------------- pre-splitting (exposed for tests) */
/* 1 if custom split regexes (anything but gptkit / gpt2 / cl100k) are supported: builds with PCRE2
 * (-DGK_HAVE_PCRE2 -lpcre2-8). Otherwise loading or training with one fails with a clear error. */
int tok_regex_available(void);
/* Calls fn(start, end, ctx) for each piece of text under t's pattern, in order; pieces tile the text. */
void tok_split(const tok_tokenizer *t, const void *text, size_t len,
               void (*fn)(size_t start, size_t end, void *ctx), void *ctx);
/* A cut position near the end of s[0..len) that is a piece boundary under t's pattern whatever comes
 * before or after the block: encoding s[0..cut) and the rest separately gives the ids of the whole. Used to
 * split big inputs for threads. Cuts at "letter| letter" or just after a newline between printable ASCII
 * characters. Returns len if there is none (cutting there may then change ids at the seam). */
size_t tok_safe_cut(const tok_tokenizer *t, const uint8_t *s, size_t len);
/* The length of the next segment of s[0..len) for encoding pieces apart (threads): about seg bytes, ending at a
 * tok_safe_cut boundary; the whole of s when it is under 1.5 seg or no boundary is found (the ids stay those of
 * the whole text either way). */
size_t tok_segment(const tok_tokenizer *t, const uint8_t *s, size_t len, size_t seg);

#endif
