/* train: the training stages (pretrain now; sft, rm, ppo, dpo follow), each owning its loss and loop,
 * plus the loop helpers they share (progress line with rate and ETA, metrics JSONL, checkpoint + resume
 * state, Ctrl-C handling).
 */
#ifndef GK_TRAIN_H
#define GK_TRAIN_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include "core/core.h"
#include "model/model.h"
#include "optim/optim.h"
#include "data/data.h"

/* ---------------------------------------------------------------- LM loss */
/* Next-token cross-entropy over the rows of a batch, computed in row chunks so a [B*T, V] logits buffer
 * never exists. Owns its scratch (device). */
typedef struct train_lm train_lm;
train_lm *train_lm_new(gpt_model *m);
void train_lm_free(train_lm *l);
/* Runs the trunk on inputs [B,T] (host), then the LM head + softmax cross-entropy against targets [B,T]
 * (host; target < 0 = ignored). Returns the mean loss over counted targets (NaN if none) and their count
 * in *ncounted. If grad_div > 0, also backpropagates d(sum of losses)/grad_div into the model's grads
 * (accumulating): pretraining passes count*accum_steps so the accumulated gradient is of the mean loss.
 * Token ids must already be validated (gpt_check_tokens / the data loader). */
double train_lm_loss(train_lm *l, const int32_t *inputs, const int32_t *targets, size_t B, size_t T,
                     double grad_div, size_t *ncounted);
/* Per-row log-probabilities of the targets (no backward): logp [B*T] (host), 0 where target < 0. */
void train_lm_logprobs(train_lm *l, const int32_t *inputs, const int32_t *targets, size_t B, size_t T, float *logp);

/* ---------------------------------------------------------------- loop helpers */
typedef struct {
    FILE  *metrics;           /* JSONL, appended; NULL = none */
    int    json;              /* print one JSON object per step on stdout instead of the human line */
    double t_start;
    long   step0, total;      /* for ETA */
    const char *stage;        /* "pretrain", "sft", ... */
} train_log;
int  train_log_open(train_log *lg, const char *stage, const char *metrics_path, int json, long step0, long total, gk_err *err);
void train_log_close(train_log *lg);
/* Emits a step: fields is a JSON object body without braces, e.g. "\"loss\":3.2,\"lr\":1e-4";
 * human is the human-readable part of the progress line. Adds step, elapsed time and ETA. */
void train_log_step(train_log *lg, long step, const char *fields_json, const char *human);
/* A non-step event (val loss, sample): JSON body written to metrics (and stdout in --json mode). */
void train_log_event(train_log *lg, const char *fields_json, const char *human);

/* Resume state beside a checkpoint: OUT/train_state.safetensors holds the optimizer moments and, in its
 * metadata, the step, optimizer step count, data position, RNG and the stage's options (JSON). It records a
 * checksum of the parameters it belongs to, so a state paired with the wrong model file is refused. */
typedef struct {
    long     step;
    data_pos pos;
    gk_rng   rng;
    char    *opts_json;       /* malloc'd; the stage's options */
} train_state;
/* The start every training stage shares: grads, a fresh AdamW (*opt, set even on failure so the caller frees
 * it), the stage's RNG from rng_seed, and with resume_dir the moments, step and data position saved there
 * (st->opts_json is cleared); then OUT is created and its metrics.jsonl opened for the stage. *step0 = the step
 * to start from. Returns 0, or -1 with err. */
int  train_stage_begin(gpt_model *m, const adamw_config *oc, uint64_t rng_seed, const char *resume_dir,
                       const char *out, const char *stage, int json, long total, adamw **opt, train_state *st,
                       train_log *lg, long *step0, gk_err *err);
/* --precision bf16 for a stage: bf16 matmul inputs with fp32 accumulation and master weights, m's parameters
 * rounded once per optimizer step (kern_bf16_shadow). Returns 0 (nothing to do when !bf16), or -1 with err when
 * the build/CPU has no bf16 matmul. train_precision_end undoes it (call it on every exit path). */
int  train_precision_begin(gpt_model *m, int bf16, gk_err *err);
void train_precision_end(int bf16);
int  train_save(const char *dir, const gpt_model *m, const adamw *opt, const train_state *st,
                const char *tokenizer, gk_err *err);
/* Loads moments into opt (created for m) and fills st. m must already hold the checkpoint's params. */
int  train_load_state(const char *dir, const gpt_model *m, adamw *opt, train_state *st, gk_err *err);
/* Reads only the options JSON of a saved state (malloc'd), for resuming with the stored settings. */
char *train_state_opts(const char *dir, gk_err *err);
uint64_t train_params_checksum(const gpt_model *m);

/* Items of a dataset (conversations, preference lines, prompts) visited epoch by epoch in a seeded order: the
 * permutation of epoch e comes from gk_rng_seed(base + e), so the position (epoch, pos = items consumed in the
 * epoch) is all a resume needs; it is stored in train_state's data_pos. */
typedef struct {
    uint32_t *perm; size_t n;
    uint64_t base, epoch, pos, perm_epoch;
} train_order;
void train_order_init(train_order *o, size_t n, uint64_t base, uint64_t epoch, uint64_t pos);
void train_order_free(train_order *o);
/* The next k indices. A new epoch starts first when the current one has fewer than k left (partial = 0: the
 * remainder is skipped) or none left (partial = 1: the last take of an epoch may be short). *got = count. */
const uint32_t *train_order_next(train_order *o, size_t k, int partial, size_t *got);

/* Greedy or temperature sampling by full recomputation (no KV cache): for progress samples during
 * training. Writes up to max_new ids into out; stops early at stop_id (if >= 0). Returns count. */
size_t train_sample(gpt_model *m, const int32_t *prompt, size_t n_prompt, size_t max_new, float temperature,
                    gk_rng *rng, int32_t stop_id, int32_t *out);

/* ---------------------------------------------------------------- pretraining */
typedef struct {
    /* model: exactly one of model_name (random init), init_dir (continue, fresh optimizer), resume */
    const char *model_name;
    int n_layer, n_head, n_embd, vocab_size, n_ctx;   /* overrides; 0 = default / from name */
    const char *init_dir;
    const char *resume_dir;
    const char *data, *val;       /* shard glob, val shard (optional) */
    const char *tokenizer;        /* recorded in the checkpoint; used to print sample text */
    long   B, T;
    long   steps;
    long   total_batch;           /* tokens per optimizer step; 0 = B*T (no accumulation) */
    lr_schedule sched;
    adamw_config opt;
    uint64_t seed;
    int    shuffle;
    const char *out;
    int    json;
    long   val_every, val_batches, sample_every, save_every;
    long   stop_at;               /* >0: save and stop once this step is reached (resume later); not stored */
    int    bf16;                  /* matmuls in bf16 with fp32 accumulation and fp32 master weights */
} pretrain_opts;
void pretrain_opts_default(pretrain_opts *o);
char *pretrain_opts_to_json(const pretrain_opts *o);
/* Fills o from JSON written by pretrain_opts_to_json (strings are malloc'd and leaked on purpose: they
 * live for the whole run). */
int  pretrain_opts_from_json(pretrain_opts *o, const char *json, gk_err *err);

typedef struct {
    long   steps_done;
    double final_loss, val_loss;      /* NaN if not measured */
    double tokens, seconds;
    double peak_rss_mb;               /* peak resident memory of the training loop */
    int    interrupted;
} pretrain_result;
int train_pretrain(const pretrain_opts *o, pretrain_result *res, gk_err *err);

/* Peak fp32 (or bf16) GEMM GFLOP/s of this machine for MFU: kern_peak_probe (~0.5 s) each run, keeping the
 * largest figure ever seen in $XDG_CACHE_HOME/gptkit/peak (or ~/.cache/gptkit/peak), since a probe on a busy
 * machine reads low; $GPTKIT_PEAK_GFLOPS overrides (and skips the probe). */
double train_peak_gflops(int bf16);
/* Training FLOPs per token of a GPT-2 forward+backward: 6 N (N = parameters) + 12 L C T (attention). */
double train_flops_per_token(const gpt_model *m, size_t T);

/* ---------------------------------------------------------------- evaluation */
/* Mean next-token loss over the first `batches` sequential batches of a shard (all batches if 0). */
int train_eval_loss(gpt_model *m, const char *shard, size_t B, size_t T, long batches, double *loss,
                    size_t *ntok, gk_err *err);

/* Stages kept in their own header sections:
 *  train_sft.inc  — supervised finetuning (issue 4)
 *  train_rlhf.inc — reward model, PPO, DPO, compare (issue 5) */
#if defined(__has_include)
#if __has_include("train_sft.inc")
#include "train_sft.inc"
#endif
#if __has_include("train_rlhf.inc")
#include "train_rlhf.inc"
#endif
#endif

#endif
