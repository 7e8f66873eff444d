/* data: what the training stages read — token shards (llm.c's .bin layout), and the built-in demo data.
 *
 * Token shards: a 256 x int32 header — [0] magic 20240520, [1] version (1: uint16 tokens, 2: uint32 tokens,
 * gptkit's documented variant for vocabularies over 65,536), [2] number of tokens — then the tokens.
 * Shards are mmap'd and validated (magic, version, size) before any token is read; token ids are checked
 * against the model's vocabulary as batches are cut, with the file and position in the message.
 *
 * The loader cuts batches of B rows x T tokens (inputs) with targets shifted by one:
 *  - sequential mode reads exactly as llm.c's loader does: in each shard, batch k covers tokens
 *    [k*B*T, (k+1)*B*T] inclusive (B*T+1 tokens); row b is the b-th run of T; when the next batch would
 *    run past the end of the shard, the loader moves to the next shard (wrapping around after the last).
 *  - shuffled mode (the default for training): each shard is cut into windows of T+1 tokens at stride T;
 *    every epoch visits the shards in a seeded random order and each shard's windows in a seeded random
 *    order (a batch = B windows of one shard; leftovers of fewer than B windows are dropped). The state
 *    is three integers (epoch, shard slot, window slot) because the permutations are recomputed from
 *    (seed, epoch, shard), so resuming is exact.
 */
#ifndef GK_DATA_H
#define GK_DATA_H

#include <stddef.h>
#include <stdint.h>
#include "core/core.h"

#define DATA_SHARD_MAGIC 20240520
#define DATA_SHARD_HEADER_INTS 256

typedef struct {
    char   *path;
    void   *map; size_t map_len;
    const uint8_t *tokens;   /* start of token data */
    size_t ntok;
    int    tok_bytes;        /* 2 (version 1) or 4 (version 2) */
} data_shard;

/* Opens and validates one shard (mmap). */
int  data_shard_open(data_shard *s, const char *path, gk_err *err);
void data_shard_close(data_shard *s);
static inline uint32_t data_shard_token(const data_shard *s, size_t i) {
    if (s->tok_bytes == 2) return ((const uint16_t *)s->tokens)[i];
    return ((const uint32_t *)s->tokens)[i];
}

/* Loader position, enough to resume exactly. */
typedef struct {
    uint64_t epoch;      /* shuffled: epoch; sequential: number of wraps */
    uint64_t shard;      /* shuffled: slot in the epoch's shard order; sequential: shard index */
    uint64_t pos;        /* shuffled: window slot in the shard's permutation; sequential: token position */
} data_pos;

typedef struct data_loader data_loader;
/* pattern: a glob (or a single path) of shards, sorted by name. vocab_size: ids >= it are errors.
 * Fails if nothing matches, a shard is bad, or no shard holds one batch (B*T+1 tokens). */
data_loader *data_loader_open(const char *pattern, size_t B, size_t T, int shuffle, uint64_t seed,
                              uint32_t vocab_size, gk_err *err);
void data_loader_free(data_loader *dl);
/* Fills inputs and targets [B*T] (host) with the next batch. Errors name shard file and token position. */
int  data_loader_next(data_loader *dl, int32_t *inputs, int32_t *targets, gk_err *err);
data_pos data_loader_tell(const data_loader *dl);
int  data_loader_seek(data_loader *dl, data_pos pos, gk_err *err);
void data_loader_rewind(data_loader *dl);      /* back to the very first batch */
size_t data_loader_total_tokens(const data_loader *dl);
size_t data_loader_num_shards(const data_loader *dl);
/* Batches in one pass over all shards (sequential: sum of (ntok-1)/(B*T); shuffled: sum of windows/B). */
size_t data_loader_batches_per_epoch(const data_loader *dl);

/* Writes a shard atomically: version 1 (uint16) when every id < 65536 fits and force32 is 0, else version 2. */
int data_shard_write(const char *path, const uint32_t *tokens, size_t n, int force32, gk_err *err);

/* Sections of this header kept in their own files (one per responsibility, so they can grow apart):
 *  data_chat.inc  — chat conversations: JSONL parsing, rendering to ids + loss mask (issue 4)
 *  data_prefs.inc — preference pairs / rankings and prompt sets (issue 5)
 *  data_demo.inc  — the built-in demo data generators (issue 6) */
#if defined(__has_include)
#if __has_include("data_chat.inc")
#include "data_chat.inc"
#endif
#if __has_include("data_prefs.inc")
#include "data_prefs.inc"
#endif
#if __has_include("data_demo.inc")
#include "data_demo.inc"
#endif
#endif

#endif
