/* infer: the inference engine — a scheduler over KV-cache slots (admit / step / retire: requests join and leave
 * a running batch between decode steps), KV-cached prefill and batched decode, N samples of one prompt that
 * share one prefill, sampling (temperature, top-k, top-p, min-p, repetition / frequency / presence penalties,
 * seeded), stop rules (stop tokens, stop strings, max tokens, context full, cancel), per-token log-probs, and
 * streaming through an incremental UTF-8-safe decoder. The CLI (sample, chat), the strategies, the pipeline's
 * evaluation and PPO rollouts all go through this module. Description: docs/chat.md section 4.
 *
 * Threads: an engine is single-threaded (it owns the KV cache and scratch); the kernels it calls use OpenMP.
 */
#ifndef GK_INFER_H
#define GK_INFER_H

#include <stddef.h>
#include <stdint.h>
#include "core/core.h"
#include "model/model.h"
#include "tok/tok.h"
#include "constrain/constrain.h"

/* ---------------------------------------------------------------- sampling */
typedef struct {
    float temperature;         /* 0 = greedy (argmax, lowest id on ties); default 1 */
    int   top_k;               /* keep the k most likely tokens; 0 = off */
    float top_p;               /* keep the smallest most-likely set with total probability >= top_p; 1 = off */
    float min_p;               /* drop tokens with p < min_p * p_max; 0 = off */
    float repetition_penalty;  /* CTRL / HF: for every token already in the sequence (prompt + generated),
                                  logit > 0 ? logit / r : logit * r; 1 = off */
    float frequency_penalty;   /* OpenAI: logit -= f * (times the token was generated); 0 = off */
    float presence_penalty;    /* OpenAI: logit -= p if the token was generated at all; 0 = off */
    uint64_t seed;             /* sequence i of a generate call uses an RNG seeded from (seed, i) */
} infer_sampling;
void infer_sampling_default(infer_sampling *s);
/* "temperature must be >= 0", "top-p must be in (0, 1]", ... */
int  infer_sampling_validate(const infer_sampling *s, gk_err *err);

/* The sampling distribution: penalties (counts [V] of generated tokens and seen [V] flags for prompt +
 * generated, either may be NULL), then temperature, then top-k, top-p, min-p (in that order, each on the
 * survivors of the previous, renormalising). probs [V] receives the final distribution (zeros on excluded
 * tokens). logits is left unchanged. With temperature 0, probs is one-hot on the argmax of the penalised
 * logits. */
void infer_sampling_probs(const infer_sampling *s, const float *logits, size_t V, const uint32_t *counts,
                          const uint8_t *seen, float *probs);
/* Draws from probs [V] (sums to 1) with one uniform from rng (inverse CDF in id order). */
int32_t infer_draw(const float *probs, size_t V, gk_rng *rng);
/* log softmax(logits)[id] at temperature 1 (expf terms summed in double). */
float infer_logprob(const float *logits, size_t V, int32_t id);

/* ---------------------------------------------------------------- engine */
typedef struct engine engine;
/* m and tok are borrowed and must outlive the engine; tok may be NULL (ids only: no text, no stop strings,
 * no default stop tokens). max_seqs: KV slots, the most sequences decoded together. max_len:
 * tokens per sequence, prompt + generated (0 = the model's n_ctx; clamped to it). The KV cache costs
 * 2 * n_layer * max_seqs * max_len * n_embd floats. */
engine *engine_new(gpt_model *m, const tok_tokenizer *tok, size_t max_seqs, size_t max_len);
void engine_free(engine *e);
gpt_model *engine_model(engine *e);
size_t engine_max_len(const engine *e);
size_t engine_max_seqs(const engine *e);

typedef enum {
    ENGINE_FINISH_STOP_TOKEN = 0,  /* a stop token was generated (it is the last id) */
    ENGINE_FINISH_STOP_STRING,     /* a stop string appeared in the text (text cut before it) */
    ENGINE_FINISH_LENGTH,          /* max_new tokens generated */
    ENGINE_FINISH_CONTEXT,         /* the sequence filled max_len */
    ENGINE_FINISH_CANCELLED,       /* *cancel was set, or the callback asked to stop */
    ENGINE_FINISH_GRAMMAR,         /* the grammar is complete and allows nothing more (and no stop token) */
} engine_finish;
/* "stop", "stop_string", "length", "context", "cancelled", "grammar" */
const char *engine_finish_name(engine_finish f);

/* Streaming callback: one call per generated token of sequence seq, with the text that token completes
 * (valid UTF-8; may be empty while a multi-byte character is incomplete, or while text is held back because it
 * could be the start of a stop string; stop tokens and stop strings are never passed). When the sequence
 * finishes, a last call with id -1 flushes held-back text. Return non-zero to stop that sequence (CANCELLED). */
typedef int (*engine_token_cb)(void *ctx, size_t seq, int32_t id, const char *text, size_t len);

typedef struct {
    size_t max_new;                 /* generated tokens per sequence; 0 = until max_len */
    infer_sampling samp;
    int    default_stops;           /* 1 (default): stop on <|end|> and <|endoftext|> if the tokenizer has them */
    int32_t stop_ids[8]; size_t n_stop_ids;    /* more stop ids */
    const char *const *stop_strs; size_t n_stop_strs;   /* needs a tokenizer */
    engine_token_cb on_token; void *ctx;        /* streaming; NULL = none */
    const volatile int *cancel;     /* polled before every step; non-zero finishes all sequences (CANCELLED) */
    constrain *grammar;             /* constrained output (NULL = none; borrowed, outlives the request): each
                                       sequence keeps its own grammar state; tokens the grammar rejects get
                                       probability 0 before sampling; stop tokens only where the grammar may end.
                                       The raw logprob stays the unmasked model's. An extended (keep) sequence
                                       starts the grammar afresh for its new segment. */
    int    no_logprob;              /* 1: the raw log-probs are not wanted (engine_seq.logprob holds NAN): saves a
                                       pass over the vocabulary per token — all of a greedy token's sampling cost */
} engine_gen_opts;
void engine_gen_opts_default(engine_gen_opts *o);

/* One generated sequence. */
typedef struct {
    int32_t *ids; size_t n;   /* generated ids only; includes the stop token when one ended the sequence */
    float *logprob;           /* [n] log p(id | prefix) under the raw model: logits at temperature 1, no penalties
                                 or filters (what PPO needs for its ratio and KL) */
    float *sample_logprob;    /* [n] log of the probability id had in the distribution it was drawn from
                                 (after penalties, temperature, top-k/p, min-p); 0 for greedy */
    char  *text; size_t text_len;   /* decoded (NUL-terminated) without stop token / stop string; NULL without tokenizer */
    engine_finish finish;
} engine_seq;
void engine_seq_free(engine_seq *s);

/* ---------------------------------------------------------------- scheduler: admit / step / retire
 * A request is one prompt and n samples of it. engine_admit validates it and gives it n KV slots at once if
 * they are free, else puts it in a FIFO queue (unbounded unless engine_set_max_queued; a full queue makes
 * admit return ENGINE_REQ_BUSY). engine_step runs one round for every running request:
 *   1. requests that got their slots since the last step are prefilled (in admission order): the prompt runs
 *      once in the first slot and its cache is copied to the other n-1 (shared-prefix prefill);
 *   2. every live sequence, in admission order (then sample order), draws one token from its logits and is
 *      checked against its stop rules; a sequence that finishes (or whose cancel flag is set) is retired at
 *      once: its result is complete, its slot is freed and handed to the head of the queue (prefilled on the
 *      next step);
 *   3. one batched forward of the sequences that go on gives each the logits of its next token.
 * A request is DONE when its last sequence retires; its results wait for engine_take_result. Sequence k of a
 * request draws from an RNG seeded from (samp.seed, seq_base + k), so what it generates does not depend on
 * what else is in the batch (up to the float rounding of batched matrix products). */
typedef int64_t engine_req_id;        /* >= 1; admit's failures are negative */
#define ENGINE_REQ_ERROR ((engine_req_id)-1)   /* invalid request (message in err) */
#define ENGINE_REQ_BUSY  ((engine_req_id)-2)   /* the queue is full (engine_set_max_queued); try after a step */

typedef enum {
    ENGINE_REQ_UNKNOWN = 0,   /* no such id, or its result was already taken */
    ENGINE_REQ_QUEUED,        /* waiting for free slots */
    ENGINE_REQ_RUNNING,       /* holds slots (prefilled on the next step if it has not been yet) */
    ENGINE_REQ_DONE,          /* every sequence finished; result ready for engine_take_result */
} engine_req_state;

/* Called once when a request becomes DONE (from engine_step or engine_cancel), with gen.ctx. */
typedef void (*engine_done_cb)(void *ctx, engine_req_id id);

typedef struct {
    engine_gen_opts gen;     /* sampling, max_new, stops (stop strings are copied), streaming, cancel flag; the
                                callback's seq argument is seq_base + k; *gen.cancel is polled once per step */
    size_t n;                /* samples of the prompt (default 1): prefilled once, forked to n slots */
    size_t seq_base;         /* sample k is sequence seq_base + k (RNG stream and callback index); default 0 */
    engine_done_cb on_done;  /* NULL = none */
    int keep;                /* 1: finished sequences keep their slots and state (RNG, penalties) for
                                engine_extend — the tool loop's pause and resume; free them with engine_release */
} engine_req_opts;
void engine_req_opts_default(engine_req_opts *o);

/* Admits a request (prompt is copied; o NULL = defaults). Returns its id, ENGINE_REQ_BUSY, or
 * ENGINE_REQ_ERROR with a message: empty prompt, ids outside the vocabulary, n of 0 or over max_seqs, bad
 * sampling options, stop strings without a tokenizer, a prompt longer than the context. */
engine_req_id engine_admit(engine *e, const int32_t *prompt, size_t n_prompt, const engine_req_opts *o, gk_err *err);
/* One step (above) for every running request. Returns the requests still queued or running (0 = idle). */
size_t engine_step(engine *e);
/* Finishes the request now (CANCELLED; tokens already generated are kept): its slots are free and handed to
 * the queue before this returns. A DONE request is left as it is. -1 (message) for an unknown id. */
int engine_cancel(engine *e, engine_req_id id, gk_err *err);
engine_req_state engine_req_status(const engine *e, engine_req_id id);
/* prompt tokens the request found in its slot's cache (prefix reuse; 0 while queued or without reuse) */
size_t engine_req_cached(const engine *e, engine_req_id id);
/* Moves a DONE request's n results into out[n] (free each with engine_seq_free) and forgets the id.
 * -1 (message) if the id is unknown or the request is not DONE yet. */
int engine_take_result(engine *e, engine_req_id id, engine_seq *out, gk_err *err);
size_t engine_in_flight(const engine *e);          /* requests queued or running */
size_t engine_free_slots(const engine *e);
void engine_set_max_queued(engine *e, size_t n);   /* 0 (default) = unbounded queue */
/* Prefix reuse (off by default): a placed request takes the free slot whose cache already holds the longest
 * prefix of its prompt and runs only the rest — a server's requests that share a system prompt or repeat a
 * conversation skip most of their prefill. Its samples then match a fresh prefill's to rounding, not bitwise. */
void engine_set_prefix_reuse(engine *e, int on);
/* Callbacks (on_token, on_done) may call engine_admit, engine_req_status and engine_take_result; calling
 * engine_step or engine_cancel from them aborts (programmer error). */

/* ---------------------------------------------------------------- pause and resume (requests with keep = 1)
 * A kept request that is DONE still holds its slots: each sequence's cache holds the prompt and every token it
 * generated except the last one (drawn, never fed). engine_take_result moves its results out but keeps the
 * request. engine_extend then appends ids[k] (n_ids[k] tokens; 0 = sequence k stays finished) after what
 * sequence k's cache holds — typically its last token, then inserted text such as a tool result — and the
 * request runs again: on the next step those tokens are fed (one prefill per extended sequence) and decoding
 * continues with the sequence's own RNG stream and penalty state; max_new and the stop rules apply afresh to
 * the new segment, whose results are taken as before. Errors (request unknown, not kept, not DONE, results not
 * taken, ids outside the vocabulary, a sequence that would exceed max_len, nothing to extend): -1, request
 * unchanged. engine_release frees a kept request's slots (any state but RUNNING/QUEUED) and forgets it. */
int engine_extend(engine *e, engine_req_id id, const int32_t *const *ids, const size_t *n_ids, gk_err *err);
int engine_release(engine *e, engine_req_id id, gk_err *err);

/* ---------------------------------------------------------------- one-call generation (on the scheduler)
 * Both need an idle engine (nothing queued or running) and produce exactly what the scheduler produces for
 * the same requests admitted together. */

/* Prefills the prompt once, copies its cache to n_seqs slots, and decodes them together until each stops.
 * out[n_seqs] is filled (free each with engine_seq_free). Errors (returned, not aborted): empty prompt, ids
 * outside the vocabulary, n_seqs > max_seqs, bad sampling options, stop strings without a tokenizer, and a
 * prompt longer than the context: "prompt is 1100 tokens but the context holds 1024 (the model's n_ctx)". */
int engine_generate(engine *e, const int32_t *prompt, size_t n_prompt, size_t n_seqs, const engine_gen_opts *o,
                    engine_seq *out, gk_err *err);

/* Like engine_generate, but sequence i continues its own prompt prompts[i] (n_prompts[i] tokens): each is
 * prefilled in its own slot, then all are decoded together (PPO rollouts over a batch of prompts). One
 * request per prompt, with seq_base i. Errors name the prompt: "prompt 3 is 1100 tokens but the context
 * holds 1024 ...". */
int engine_generate_multi(engine *e, const int32_t *const *prompts, const size_t *n_prompts, size_t n_seqs,
                          const engine_gen_opts *o, engine_seq *out, gk_err *err);

/* n_groups prompts, each prefilled once and sampled n_per times, all decoded together (RL rollouts: a batch
 * of prompts x a group each). Group i samples with seed seeds[i], so it draws what engine_generate of prompt i
 * with that seed draws (up to the float rounding of batched products). out[n_groups * n_per], group by group.
 * Groups beyond the engine's free slots wait for earlier ones to finish. Errors as engine_generate_multi. */
int engine_generate_groups(engine *e, const int32_t *const *prompts, const size_t *n_prompts, size_t n_groups,
                           size_t n_per, const engine_gen_opts *o, const uint64_t *seeds, engine_seq *out, gk_err *err);

/* ---------------------------------------------------------------- low level (benchmarks, tests, scoring)
 * Direct use of slots, for callers that drive the cache themselves. Only on slots no request holds: with
 * requests in flight use the scheduler (engine_feed reports a held slot as an error; the others abort). */
/* Feeds n tokens to slot after what it already holds; logits [V] (host) of the last one, if non-NULL.
 * Errors: ids outside the vocabulary, or the slot would exceed max_len. */
int  engine_feed(engine *e, size_t slot, const int32_t *ids, size_t n, float *logits, gk_err *err);
/* One decode step for B sequences: ids[b] appended to slots[b]; logits [B, V] (host). Lengths must fit. */
void engine_decode_slots(engine *e, const size_t *slots, const int32_t *ids, size_t B, float *logits);
void engine_fork(engine *e, size_t dst, size_t src);   /* dst's cache becomes a copy of src's */
void engine_reset(engine *e, size_t slot);
size_t engine_slot_len(const engine *e, size_t slot);

#endif
