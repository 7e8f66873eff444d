/* eval: measuring a model — open a checkpoint ready to answer (model, tokenizer, chat specials, engine), its
 * loss and bits per byte on a token shard, its accuracy on held-out tasks, the diversity of its samples.
 * `gptkit eval` and the pipeline's eval stage print what these return; win rates by a reward model are
 * rlhf_compare (train.h).
 *
 * Layering: core -> kern -> model -> optim/data -> train/infer -> eval -> serve/cli (eval uses the engine
 * and the training stages' loss, so it sits above both).
 */
#ifndef GK_EVAL_H
#define GK_EVAL_H

#include <stddef.h>
#include <stdint.h>
#include <cjson/cJSON.h>
#include "core/core.h"
#include "data/data.h"
#include "infer/infer.h"
#include "model/model.h"
#include "tok/tok.h"

/* ---------------------------------------------------------------- a checkpoint ready to answer */
typedef struct {
    gpt_model     *m;
    tok_tokenizer *tok;        /* NULL only when none is recorded and none was required */
    chat_specials  sp;         /* resolved when opened with chat */
    engine        *e;          /* when opened with max_seqs > 0 */
} eval_model;
/* Opens checkpoint dir (or a LoRA adapter directory: its recorded base with the adapter on): the model; its tokenizer (tok_override if non-NULL, else the recorded one, see
 * tok_load_recorded; an error when tok_required and there is none); with chat, the chat specials resolved
 * against the model's vocabulary; with max_seqs > 0, an engine decoding up to max_seqs sequences together.
 * Returns 0, or -1 with err and nothing left open. */
int  eval_model_open(eval_model *em, const char *dir, const char *tok_override, int tok_required, int chat,
                     size_t max_seqs, gk_err *err);
/* Puts the LoRA adapter in dir (PEFT layout, src/model/lora.c) on em's model, unmerged. The adapter's recorded
 * base checksum, its shapes and its target names must fit the model (errors name the file). */
int  eval_model_add_adapter(eval_model *em, const char *dir, gk_err *err);
void eval_model_close(eval_model *em);    /* safe on a zeroed or closed one */

/* ---------------------------------------------------------------- loss on a shard */
typedef struct {
    double loss;               /* mean next-token loss (nats) */
    size_t ntok;               /* targets counted */
    long   batches;
    double bpb;                /* bits per byte of those targets (NaN without a tokenizer) */
} eval_loss_stats;
/* Mean next-token loss of m over the first `batches` sequential batches of B x T (all if 0) of data (a shard or
 * a glob), and with tok the bits per byte: loss / ln 2 x (targets / their bytes; specials count zero bytes). */
int eval_shard_loss(gpt_model *m, const tok_tokenizer *tok, const char *data, size_t B, size_t T, long batches,
                    eval_loss_stats *st, gk_err *err);
/* Tokens of a whole shard and the bytes they decode to (for bits per byte of a loss measured on it). */
int eval_shard_bytes(const char *shard, const tok_tokenizer *tok, size_t *ntok, size_t *bytes, gk_err *err);

/* ---------------------------------------------------------------- held-out tasks */
typedef struct { double acc, format_rate, concise_rate, mean_len; long n; } eval_task_stats;
/* Answers tasks[0..nt) greedily, up to max_new tokens each (em opened with chat and an engine). A chat model
 * gets the conversation rendered with the generation prompt; a base model (base = 1) a few-shot prompt of
 * fewshot_k examples (drawn from seed + task index), answering up to a newline. Prompts are cut from the left
 * to leave max_new tokens of context. samples (may be NULL) receives up to two right and two wrong answers as
 * {system?, user, reply, expected, correct}. */
int eval_tasks(eval_model *em, int base, const demo_task *tasks, long nt, int fewshot_k, uint64_t seed,
               size_t max_new, eval_task_stats *ts, cJSON *samples, gk_err *err);
/* eval_tasks, also writing 1/0 per task into correct [nt] (may be NULL): for paired comparisons of two models. */
int eval_tasks_graded(eval_model *em, int base, const demo_task *tasks, long nt, int fewshot_k, uint64_t seed,
                      size_t max_new, eval_task_stats *ts, cJSON *samples, unsigned char *correct, gk_err *err);

/* Output diversity over the first `prompts` tasks: `samples` answers each at temperature 1 (seed + task index).
 * distinct-n = unique n-grams / all n-grams over a prompt's samples (averaged over prompts); entropy = mean
 * over sampled tokens of -log p, an unbiased estimate of the per-token entropy of the sampling distribution.
 * em's engine must hold `samples` sequences. */
typedef struct { double distinct1, distinct2, entropy; } eval_div_stats;
int eval_diversity(eval_model *em, const demo_task *tasks, long nt, long prompts, size_t samples, size_t max_new,
                   uint64_t seed, eval_div_stats *ds, gk_err *err);

/* ---------------------------------------------------------------- calibration
 * How well a model's confidence matches its accuracy, on multiple-choice items (demo_mc_items): its belief in
 * each choice is the likelihood of that reply after the prompt (a chat model: the reply and the end of its turn;
 * a base model: " reply" and a newline after a few-shot prompt, as eval_tasks prompts it), normalised over the
 * choices. Its answer is the most likely choice, its confidence that choice's probability. */
#define EVAL_CALIB_BINS 10
typedef struct {
    long   n;
    double acc;     /* share of items answered right */
    double conf;    /* mean confidence */
    double ece;     /* expected calibration error: sum over EVAL_CALIB_BINS equal confidence bins of
                       (items in the bin / n) x |accuracy in the bin - mean confidence in the bin| */
    long   bin_n[EVAL_CALIB_BINS];
    double bin_acc[EVAL_CALIB_BINS], bin_conf[EVAL_CALIB_BINS];   /* 0 for an empty bin */
} eval_calib;
int  eval_calibration(eval_model *em, int base, const demo_mc *items, long n, int fewshot_k, uint64_t seed,
                      eval_calib *cs, gk_err *err);
/* The statistics from per-item confidences in [0, 1] and right (1) / wrong (0) flags. */
void eval_calib_stats(const double *conf, const unsigned char *right, long n, eval_calib *cs);
#endif
