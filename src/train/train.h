/* train: the training stages (pretrain, sft, rm, dpo, ppo), each owning its loss and a step hook, run by one
 * stage skeleton (stage.c) that owns the loop: start and exact resume, RNG, Ctrl-C, progress line and metrics
 * JSONL, eval / checkpoint cadence, precision, gradient accumulation and the optimizer step. Also the helpers
 * under it (metrics log, checkpoint + resume state, epoch order) and the one LM head path (lm.c).
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
#include "tok/tok.h"

/* ---------------------------------------------------------------- LM loss and log-probs */
/* The one path from the trunk's hidden states through the LM head to per-row next-token quantities, used by
 * pretraining and SFT (mean cross-entropy) and by PPO and DPO (per-token log-probs with a backward). Rows are
 * processed in chunks so a [B*T, V] logits buffer never exists. Owns its scratch (device). */
typedef struct train_lm train_lm;
train_lm *train_lm_new(gpt_model *m);
void train_lm_free(train_lm *l);
/* Runs the trunk on inputs [B,T] (host), then the LM head + softmax cross-entropy against targets [B,T]
 * (host; target < 0 = ignored). Returns the mean loss over counted targets (NaN if none) and their count
 * in *ncounted. If grad_div > 0, also backpropagates d(sum of losses)/grad_div into the model's grads
 * (accumulating), in the same pass over the chunks: pretraining passes count*accum_steps so the accumulated
 * gradient is of the mean loss. Token ids must already be validated (gpt_check_tokens / the data loader). */
double train_lm_loss(train_lm *l, const int32_t *inputs, const int32_t *targets, size_t B, size_t T,
                     double grad_div, size_t *ncounted);
/* Per-token log-probabilities of the targets, logp = log softmax(logits / temperature)[target] = -xent
 * (temperature <= 0 means 1): trunk + head on inputs [B,T] (host, validated); logp [B*T] (host), 0 where
 * target < 0; entropy [B*T] (host, may be NULL): entropy of the tempered distribution at rows with target >= 0,
 * else 0. Keeps what train_lm_backward needs. */
void train_lm_logprobs(train_lm *l, const int32_t *inputs, const int32_t *targets, size_t B, size_t T,
                       float temperature, float *logp, float *entropy);
/* Accumulates d(loss)/d(params) for dlogp [B*T] (host) = d loss / d logp through the last train_lm_logprobs:
 * recomputes the head's logits chunk by chunk, runs the cross-entropy backward with dloss = -dlogp, and hands
 * dh to the trunk (the policy side of PPO and DPO). */
void train_lm_backward(train_lm *l, const float *dlogp);

/* ---------------------------------------------------------------- loop helpers */
struct cJSON;
typedef struct {
    FILE  *metrics;           /* JSONL, appended; NULL = none */
    int    json;              /* print one JSON object per step on stdout instead of the human line */
    double t_start;
    long   step0, total;      /* for ETA */
    const char *stage;        /* "pretrain", "sft", ... */
} train_log;
int  train_log_open(train_log *lg, const char *stage, const char *metrics_path, int json, long step0, long total, gk_err *err);
void train_log_close(train_log *lg);
/* Emits a step: fields is a cJSON object of the step's metrics (consumed: deleted here); human is the
 * human-readable part of the progress line. The metrics line is {"stage", "step", fields..., "elapsed_s"}, the
 * --json stdout line {"step", fields...}; the human line adds the step count and the ETA. */
void train_log_step(train_log *lg, long step, struct cJSON *fields, const char *human);
/* A non-step event (val loss, sample): fields (consumed) go to metrics as {"stage", fields...} and to stdout
 * in --json mode; human (may be NULL) to stdout otherwise. */
void train_log_event(train_log *lg, struct cJSON *fields, const char *human);
/* Text of ids for a log line or a metrics string: valid UTF-8 (U+FFFD for broken bytes), appended to out
 * and NUL-terminated (out->n counts the NUL). */
void train_decode_text(const tok_tokenizer *tok, const int32_t *ids, size_t n, tok_bytes *out);
/* Adds the number key = v to o rounded as printf's fmt prints it ("%.7g": 7 significant digits, "%.1f": one
 * decimal), so a metrics line carries the digits that mean something; a non-finite v is written as null. */
void train_put(struct cJSON *o, const char *key, const char *fmt, double v);

/* Resume state beside a checkpoint: OUT/train_state.safetensors holds the optimizer moments and, in its
 * metadata, the step, optimizer step count, data position, RNG, the stage's options (JSON), and what the stage's
 * result carries on (tokens so far, the last step's loss) so that a resumed run reports what an uninterrupted
 * one does. `finished` marks the final save of a run that completed. It records a checksum of the parameters it
 * belongs to, so a state paired with the wrong model file is refused. */
typedef struct {
    long     step;
    data_pos pos;
    gk_rng   rng;
    char    *opts_json;       /* malloc'd; the stage's options */
    double   tokens;          /* tokens processed by the stage up to step */
    double   last_loss;       /* the loss of step - 1 (NaN when unknown, as in states of older versions) */
    int      finished;        /* 1: saved after the stage's last step and its final evaluation */
} train_state;
int  train_save(const char *dir, const gpt_model *m, const adamw *opt, const train_state *st,
                const char *tokenizer, gk_err *err);
/* The one way a full checkpoint is written (stages, lora merge, export --format hf): gpt_save_ex with the
 * tokenizer inside -- tokenizer.json, tokenizer_config.json, generation_config.json (chat_tokenizer_files) and
 * config.json's bos/eos ids -- so the directory can be moved or uploaded. The tokenizer is the one
 * tok_load_recorded(tok_dir, tokenizer) finds (tok_dir: the model directory it was recorded in, or NULL);
 * `tokenizer` is also recorded as before. With none found the checkpoint is written without (a warning). */
int  train_save_model(const gpt_model *m, const char *dir, const char *tokenizer, const char *tok_dir, gk_err *err);
/* Loads moments into opt (created for m) and fills st. m must already hold the checkpoint's params. */
int  train_load_state(const char *dir, const gpt_model *m, adamw *opt, train_state *st, gk_err *err);
/* Reads only the options JSON of a saved state (malloc'd), for resuming with the stored settings. */
char *train_state_opts(const char *dir, gk_err *err);
/* 1 if DIR holds the resume state of a stage that ran to its end (train_state.finished), 0 if it holds one of
 * an unfinished run, -1 if it holds none (or an unreadable one). */
int train_state_finished(const char *dir);
uint64_t train_params_checksum(const gpt_model *m);
/* What model m's optimizer updates: m->lora->pm when m has LoRA adapters, else m (stage.c). */
gpt_model *train_opt_model(gpt_model *m);

/* LoRA settings a stage may take (docs/lora.md): rank 0 = full finetuning. */
typedef struct {
    long   rank;                  /* --lora-rank R (0: off) */
    float  alpha;                 /* --lora-alpha A (default 16, PEFT's) */
    float  dropout;               /* --lora-dropout P: on the adapters' input while training */
    const char *targets;          /* --lora-targets LIST (default all-linear) */
    int    rslora;                /* --rslora: scale alpha / sqrt(R) */
    int    score;                 /* not a flag: the stage's adapter owns a trainable score head (rm) */
} train_lora_opts;
/* Attaches fresh adapters to m per o (rank > 0; no-op at rank 0), freezes every base group, records base_dir
 * (made absolute) as the adapter's base, and logs the trainable parameters and the optimizer + gradient memory
 * (quiet, i.e. --json: as one {"lora": {...}} object on stdout instead). Errors name the flag. */
int train_lora_setup(gpt_model *m, const train_lora_opts *o, const char *base_dir, uint64_t seed, int quiet, gk_err *err);
/* The policy a stage trains and its frozen reference (PPO, GRPO): the policy from resume_dir or policy_dir
 * (train_open_model), adapters attached per lo (train_lora_setup); with adapters the reference is a view of the
 * same base with none (gpt_create_view: no second copy of the weights), else a second load of policy_dir.
 * A policy_dir that is itself an adapter is refused (stacked adapters: merge it first). *base_dir as
 * train_open_model's. On error the models opened so far are still returned (the caller frees them, the
 * reference first). */
int train_policy_open(const char *stage, const char *policy_dir, const char *resume_dir, const train_lora_opts *lo,
                      uint64_t seed, int quiet, gpt_model **policy, gpt_model **ref, char **tok_rec, char **base_dir,
                      gk_err *err);
/* Refuses a LoRA adapter directory where a stage needs a whole model as its frozen reference. */
int train_refuse_adapter_policy(const char *stage, const char *dir, gk_err *err);
/* Opens what a run continues from: a full checkpoint (gpt_load), or a LoRA adapter directory (its recorded base
 * loaded, the adapter attached, the base frozen). *tok_rec and *base_dir (may be NULL) as gpt_load's tokenizer
 * and the directory the model's tokenizer is found from. quant = 1 (sampling, chat, serving, evaluation, and LoRA
 * training: QLoRA): a .gguf model, or an adapter's .gguf base, keeps its quantized matrices quantized
 * (gpt_load_infer); full training passes 0 (dequantized to fp32 at load). */
gpt_model *train_open_model(const char *dir, char **tok_rec, char **base_dir, int quant, gk_err *err);

/* ---------------------------------------------------------------- the stage skeleton */
/* Every training stage (pretrain, sft, rm, dpo, ppo) runs inside this one loop, which owns what they share:
 * start and exact resume, the stage's RNG, Ctrl-C, the progress line and metrics JSONL, the eval and sample
 * cadence, periodic / stop-at / final checkpoints, precision begin/end, gradient accumulation, and the
 * optimizer step (train_stage_update: the one place for the gradient norm and clipping, the data-parallel
 * reduce-scatter / ZeRO-1 update / all-gather, and LoRA's parameter selection). A stage supplies its models
 * and a hook struct. Under mpirun every rank runs the loop; the micro-batches of a step are dealt to the ranks
 * (or a split hook takes its share of the batch), only rank 0 writes (docs/distributed.md).
 *
 *   open:  grads + AdamW per model, RNG from rng_seed, resume (moments, step, data position, RNG), OUT dirs,
 *          metrics.jsonl, precision
 *   run:   for step in [step0, total) until Ctrl-C or stop_at:
 *            zero grads; micro x accum (loss and gradient of one micro-batch); update at lr_at(sched, step)
 *              -- or iterate (a stage that drives its own updates, PPO) --
 *            log the step; stop on a non-finite loss; eval / sample at their cadence; periodic checkpoint
 *          after the loop: finish; final checkpoint (also on Ctrl-C and stop_at)
 *   close: precision end, frees the optimizers and the log (not the models) */
#define TRAIN_STAGE_MAX_MODELS 2

/* One model a stage trains: model 0 is the stage's main output (its OUT holds metrics.jsonl and the options). */
typedef struct {
    gpt_model  *m;            /* owned by the stage */
    const char *out;          /* checkpoint directory */
    const char *resume;       /* directory to resume from (its train_state.safetensors), or NULL */
    const char *tokenizer;    /* recorded in its checkpoints (may be NULL) */
    adamw      *opt;          /* created by train_stage_open */
} train_stage_model;

typedef struct {
    const char *name;         /* "pretrain", "sft", ...: the metrics' stage field and the log prefix */
    train_stage_model models[TRAIN_STAGE_MAX_MODELS];
    size_t n_models;
    const adamw_config *opt;  /* every model's optimizer settings */
    uint64_t rng_seed;        /* the stage RNG's seed (a resume restores the saved RNG instead) */
    long  total;              /* steps */
    long  accum;              /* micro-batches per optimizer step (0 or 1: none) */
    lr_schedule sched;        /* lr_at(&sched, step) for the micro path (sched.total is set to total) */
    int   json;
    long  val_every;          /* eval every N steps (0: never periodically) ... */
    int   eval_last;          /* ... and after the last step */
    long  sample_every;       /* sample hook every N steps (0: never) ... */
    int   sample_first;       /* ... and after the first step of this run */
    long  save_every, stop_at;
    int   bf16;               /* --precision bf16 for model 0 (bf16 matmuls, fp32 master weights) */
    double flops_per_step;    /* > 0: log MFU against the measured peak (pretraining) */
    const char *saved_what;   /* the final log line: "saved <saved_what> at step ..." ("checkpoint") */
    float dist_bucket_mb;     /* > 0 with several ranks (micro path, whole micro-batches, no LoRA): the gradient
                                 reduce-scatter in buckets of this many MB, started during the rank's last backward
                                 of the step (dist_rs_*); 0: one blocking reduce-scatter after it */
} train_stage_cfg;

/* What one step reports to the log. The skeleton writes "loss", pre's fields, "lr", "grad_norm", post's fields,
 * then "tokens_per_s" (if tokens > 0), "ms" and "mfu"; the human line the same way. An iterate hook writes the
 * whole record into post / hpost instead (no loss, lr or norm of the skeleton's). */
typedef struct {
    double loss;              /* of the micro-batch (the step's is the mean over micro-batches); checked finite */
    double tokens;            /* tokens processed, summed over micro-batches (for the rate) */
    double units;             /* split hooks under several ranks: what this rank's loss is a mean over (counted
                                 tokens, pairs); the skeleton weights losses, gradients and pre's numbers by it */
    struct cJSON *pre, *post; /* created by the skeleton; a hook adds fields with train_put */
    char hpre[256], hpost[512];
} train_step_out;

typedef struct train_stage train_stage;
typedef struct {
    void *ctx;
    /* One micro-batch (micro in [0, accum)) of optimizer step `step`: forward, loss, and backward accumulating
     * into model 0's grads (zeroed before micro 0). Sets out->loss, adds to out->tokens, may add fields.
     * Returns 0 or -1 with err. */
    int  (*micro)(void *ctx, train_stage *s, long step, long micro, train_step_out *out, gk_err *err);
    /* Data parallelism (several ranks): split = 0, each rank runs whole micro-batches (micro a on rank
     * a % nranks) and calls skip for the others' (advance the data position without computing; required).
     * split = 1: micro itself takes this rank's share of its batch (train_stage_share) and sets out->units; the
     * skeleton then rescales the gradients (accum must be 1). */
    int  split;
    void (*skip)(void *ctx, train_stage *s, long step, long micro);
    /* Instead of micro: a whole step the stage drives (PPO's rollout and update epochs), updating through
     * train_stage_zero / train_stage_update. Returns 0; 1 when interrupted before anything was updated (the
     * hook restored the RNG and data position: the step does not count); or -1 with err. */
    int  (*iterate)(void *ctx, train_stage *s, long step, train_step_out *out, gk_err *err);
    /* Held-out evaluation (logs its own event); final = after the last step. NULL: no held-out data. */
    int  (*eval)(void *ctx, train_stage *s, long step, int final, gk_err *err);
    /* A progress sample (logs its own event). */
    int  (*sample)(void *ctx, train_stage *s, long step, gk_err *err);
    /* After the loop when it ended without error (also on Ctrl-C / stop_at: completed = 0), before the final
     * checkpoint. */
    int  (*finish)(void *ctx, train_stage *s, int completed, gk_err *err);
    /* The data position to store in a checkpoint. */
    void (*tell)(void *ctx, data_pos *pos);
    /* The options to store in a checkpoint (malloc'd JSON) when they change during the run (PPO's beta);
     * NULL: the opts_json given to train_stage_run. */
    char *(*opts)(void *ctx);
} train_stage_hooks;

/* The skeleton's state; the stage reads it (st.rng is the stage RNG, st.pos the resumed data position). */
struct train_stage {
    train_stage_cfg cfg;
    train_state st;           /* step, data position, RNG, options of model 0's checkpoints */
    char *resumed_opts;       /* the options stored in the resumed state (malloc'd), or NULL */
    train_log lg;
    long   step0;             /* the step this run starts from */
    long   step;              /* after run: the step reached (the next to run) */
    int    interrupted;       /* Ctrl-C */
    int    saved;             /* the final checkpoint was written */
    double last_loss;         /* of the last step (NaN before) */
    double tokens, seconds;   /* over this run's loop */
    double peak;              /* FLOP/s of the machine (for MFU) */
    int    bf16_on;
    gk_dir_lock *locks[TRAIN_STAGE_MAX_MODELS];   /* one writer per output directory (gk_dir_lock_take) */
    int    rank, nranks;      /* data parallelism (src/dist): only rank 0 writes files and prints */
    double opt_bytes;         /* this rank's optimizer state (AdamW moments, ZeRO-1 sharded), bytes */
    double comm_s;            /* seconds in the update's collectives during the current step ("comm_ms") */
    struct dist_rs *rs;       /* the step's overlapped gradient reduce-scatter (cfg.dist_bucket_mb), or NULL */
};

/* This rank's contiguous share [*lo, *hi) of n items of a split micro-batch (all of them with one rank). */
void train_stage_share(const train_stage *s, size_t n, size_t *lo, size_t *hi);
/* v[n] summed over ranks in place (nothing with one rank): a split hook's statistics. Every rank must call it. */
void train_stage_sum(const train_stage *s, double *v, size_t n);
/* After a backward over this rank's share of a batch whose loss is a mean over `units` (tokens, pairs): model
 * k's gradient (of the share's mean) is rescaled by units / (sum over ranks of units), and vals[n] (the share's
 * means: loss, statistics) become the means over every rank's units. Nothing with one rank. Collective. */
void train_stage_weigh(train_stage *s, size_t k, double units, double *vals, size_t n);

/* The skeleton settings every stage's options carry under the same names (designated initializers for a
 * train_stage_cfg from a pretrain_opts, sft_opts, rm_opts or dpo_opts pointer). */
#define TRAIN_STAGE_OPTS(o) .opt = &(o)->opt, .sched = (o)->sched, .json = (o)->json, .val_every = (o)->val_every, \
                            .save_every = (o)->save_every, .stop_at = (o)->stop_at, .bf16 = (o)->bf16

/* The outcome every stage reports, from the skeleton's state into the stage's result struct (same field names). */
#define TRAIN_STAGE_RESULT(res, s) do { (res)->steps_done = (s)->step; (res)->seconds = (s)->seconds; \
                                        (res)->final_loss = (s)->last_loss; (res)->interrupted = (s)->interrupted; } while (0)

/* Starts a stage (see above). On failure returns -1 with err; train_stage_close is still to be called. */
int  train_stage_open(train_stage *s, const train_stage_cfg *cfg, gk_err *err);
/* Runs the loop and writes the final checkpoint (options opts_json, malloc'd, taken over). Returns 0 (also
 * when interrupted: s->interrupted) or -1 with err. */
int  train_stage_run(train_stage *s, const train_stage_hooks *h, char *opts_json, gk_err *err);
void train_stage_close(train_stage *s);
/* Back to fp32 before the run ends (the RM's normalisation writes weights under a bf16 shadow otherwise). */
void train_stage_precision_end(train_stage *s);
/* Model k's LoRA adapters in training mode (on: dropout with masks seeded from the stage seed, step and micro, so a
 * resume is exact) or evaluation mode (off). The micro path does this itself around each micro hook; an iterate
 * hook (PPO) calls it around its update passes. No-op without adapters. */
void train_stage_lora_train(train_stage *s, size_t k, long step, long micro, int on);
/* Zeroes model k's grads. */
void train_stage_zero(train_stage *s, size_t k);
/* The optimizer step of model k at learning rate lr: global gradient norm, clipping, AdamW over the trainable
 * parameters. Returns the pre-clip norm. Every stage's update goes through here. With several ranks it is a
 * collective: the gradients summed over ranks (reduce-scatter), each rank's slice updated with its slice of the
 * moments (ZeRO-1), the parameters all-gathered. */
double train_stage_update(train_stage *s, size_t k, float lr);

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

/* ---------------------------------------------------------------- option tables */
/* Every training stage's options are one table of descriptors (options.c): name, type, default, help,
 * range, whether the resume state stores it, and its pipeline key. The struct's defaults, the CLI flags and
 * --help (src/cli), the resume JSON (train_state's "opts") and the pipeline config keys all come from it, so an
 * option is written once. The options every stage shares (schedule, AdamW, seed, intervals, precision, output)
 * are declared once in options.c and reused by each stage's table. */
typedef enum {
    TRAIN_OPT_SECTION = 0,     /* a heading in --help (help = "model:"); no field */
    TRAIN_OPT_STR,             /* const char *: a path or a name; points at the caller's text (not copied) */
    TRAIN_OPT_INT,             /* int */
    TRAIN_OPT_LONG,            /* long */
    TRAIN_OPT_FLOAT,           /* float */
    TRAIN_OPT_U64,             /* uint64_t (seeds); stored as a decimal string: a JSON number cannot hold them all */
    TRAIN_OPT_BOOL,            /* int 0/1: the flag sets 1, neg (e.g. --no-shuffle) sets 0; takes no value */
    TRAIN_OPT_SHAPE,           /* lr_shape: constant | cosine | linear */
    TRAIN_OPT_PRECISION,       /* int bf16: fp32 | bf16 */
} train_opt_type;

enum {
    TRAIN_OPT_STORED = 1,      /* written to the resume state and read back by --resume */
    TRAIN_OPT_PIPE   = 2,      /* a pipeline config key (docs/pipeline.md) */
    TRAIN_OPT_FRESH  = 4,      /* cleared when resuming (pretrain's --init: the resume checkpoint replaces it) */
};

typedef struct {
    train_opt_type type;
    const char *flag, *alias;  /* "--batch", "-b" (alias may be NULL) */
    const char *neg;           /* TRAIN_OPT_BOOL: the flag that sets 0, or NULL */
    const char *key;           /* resume-JSON key; also the pipeline key's suffix unless pipe is set */
    const char *pipe;          /* pipeline key: a suffix after "<stage>." ("batch"), or a whole key with a dot
                                  ("model.n_layer"); NULL = key */
    size_t off;                /* offsetof the field in the stage's options struct */
    double def;                /* default of a number / bool / precision */
    const char *def_str;       /* default of a string or a schedule shape ("cosine"); NULL = none */
    double min, max;           /* allowed range of a number (inclusive) */
    unsigned flags;            /* TRAIN_OPT_STORED | TRAIN_OPT_PIPE | TRAIN_OPT_FRESH */
    const char *clears;        /* key of an option reset to 0 / NULL when this flag is given (sft's --epochs
                                  clears --steps), or NULL */
    const char *metavar, *help;
} train_opt;

typedef struct {
    const char *stage;         /* "pretrain": the pipeline keys' prefix and the resume-state label */
    const train_opt *opts; size_t n;
    size_t size;               /* sizeof the options struct */
} train_opt_table;
extern const train_opt_table train_opts_pretrain, train_opts_sft, train_opts_rm, train_opts_ppo, train_opts_dpo;

/* Zeroes o (t->size bytes) and sets every field to its default. */
void train_opts_default(const train_opt_table *t, void *o);
/* The option a command-line flag names (NULL if none); *value = 0 when it is a bool's negative spelling. */
const train_opt *train_opt_by_flag(const train_opt_table *t, const char *flag, int *value);
const train_opt *train_opt_by_key(const train_opt_table *t, const char *key);
/* The option of a whole pipeline key ("pretrain.lr", "model.n_layer"), TRAIN_OPT_PIPE ones only. */
const train_opt *train_opt_by_pipe_key(const train_opt_table *t, const char *key);
/* Writes the whole pipeline key of d into buf ("pretrain.batch"). */
void train_opt_pipe_key(const train_opt_table *t, const train_opt *d, char *buf, size_t cap);
/* Parses value into d's field of o with its range check (a bool takes 0/1/true/false). On error returns -1
 * with err holding "expected ..., got 'value'" for the caller to prefix with the flag or file:line:key. A
 * string is stored as the pointer given. */
int  train_opt_set(const train_opt *d, void *o, const char *value, gk_err *err);
/* The field's value as text ("0.002", "cosine", "bf16", a path, "" for NULL). */
void train_opt_format(const train_opt *d, const void *o, char *buf, size_t cap);
/* Applies clears: resets the option d names in its `clears` (after d was given explicitly). */
void train_opt_apply_clears(const train_opt_table *t, const train_opt *d, void *o);
/* Every number in range; returns -1 with err naming the flag otherwise. */
int  train_opts_check(const train_opt_table *t, const void *o, gk_err *err);
/* The TRAIN_OPT_STORED fields as a JSON object (malloc'd), and back (strings copied into a process-lifetime
 * pool in options.c: option structs hold plain pointers and live for the whole process). */
char *train_opts_to_json(const train_opt_table *t, const void *o);
/* A copy of s that lives as long as the process (string options read from a file outlive its buffer). */
const char *train_opt_keep_str(const char *s);
int   train_opts_from_json(const train_opt_table *t, void *o, const char *json, gk_err *err);

/* ---------------------------------------------------------------- pretraining */
typedef struct {
    /* model: exactly one of model_name (random init), init_dir (continue, fresh optimizer), resume */
    const char *model_name;
    const char *arch;             /* "gpt2" (default) | "llama": the family a random init builds */
    int n_layer, n_head, n_embd, vocab_size, n_ctx;   /* overrides; 0 = default / from name */
    int n_kv_head, n_inner;       /* overrides (LLaMA: grouped-query heads, SwiGLU width); 0 = from name */
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
    train_lora_opts lora;         /* --lora-* with --init: continue pretraining through adapters (docs/lora.md) */
    float  dist_bucket_mb;        /* under mpirun: gradient buckets overlapped with the backward (0 = off); not stored */
} pretrain_opts;
void pretrain_opts_default(pretrain_opts *o);
char *pretrain_opts_to_json(const pretrain_opts *o);
/* Fills o from JSON written by pretrain_opts_to_json (strings as train_opts_from_json keeps them). */
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
/* The sums under it, of batches k with k % nparts == part only (a rank's share under data parallelism): the
 * summed loss of the counted targets and their count. */
int train_eval_sums(gpt_model *m, const char *shard, size_t B, size_t T, long batches, int part, int nparts,
                    double *sum, size_t *count, gk_err *err);
int train_eval_loss(gpt_model *m, const char *shard, size_t B, size_t T, long batches, double *loss,
                    size_t *ntok, gk_err *err);

/* ================================================================ */
/* supervised finetuning on chat conversations (issue 4). implemented in
 * src/train/sft.c. Format, mask and truncation policy: data/data.h and docs/chat.md.
 *
 * Loss: next-token cross-entropy on the masked (assistant) tokens only, averaged over all masked tokens of
 * the batch (not per conversation): sum of losses / number of masked targets. Batches hold B conversations,
 * right-padded to the longest one (padding targets are -1 and never contribute). One optimizer step per batch.
 * Each epoch visits the conversations in an order shuffled from (seed, epoch), so resuming is exact. */

typedef struct {
    const char *init_dir;         /* checkpoint to finetune (fresh optimizer) */
    const char *resume_dir;       /* continue an SFT run exactly (model, optimizer, data position, RNG) */
    const char *data, *val;       /* chat JSONL; val optional */
    const char *tokenizer;        /* override; default: the one recorded in the init checkpoint */
    long   B;                     /* conversations per batch (default 8) */
    long   T;                     /* max input tokens per conversation; 0 = the model's n_ctx */
    long   epochs;                /* used when steps == 0 (default 3) */
    long   steps;                 /* optimizer steps; 0 = epochs * batches per epoch */
    lr_schedule sched;            /* default: 1e-4 peak, warmup 10, cosine to 0.1 */
    adamw_config opt;             /* default: adamw_config_default with weight decay 0 */
    uint64_t seed;
    int    skip_bad;              /* skip malformed JSONL lines (counted) instead of failing */
    const char *out;
    int    json;
    long   val_every, save_every; /* 0 = only at the end */
    long   stop_at;               /* >0: save and stop at this step (not stored) */
    int    bf16;                  /* --precision bf16 (the stage skeleton sets it on the model's backend) */
    train_lora_opts lora;         /* --lora-*: train adapters only (docs/lora.md) */
} sft_opts;
void  sft_opts_default(sft_opts *o);
char *sft_opts_to_json(const sft_opts *o);
int   sft_opts_from_json(sft_opts *o, const char *json, gk_err *err);   /* strings as train_opts_from_json */

typedef struct {
    long   steps_done;
    double final_loss, val_loss;  /* NaN if not measured */
    double seconds;
    size_t n_train, n_val;        /* conversations kept */
    size_t n_bad, n_truncated, n_dropped;   /* over train + val */
    int    interrupted;
} sft_result;
int train_sft(const sft_opts *o, sft_result *res, gk_err *err);

/* The pieces train_sft uses, exposed for tests and other stages:
 * sft_make_batch fills inputs/targets [B, Tb] (host; caller-sized for B*(T) entries) from conversations
 * idx[0..B) of d: inputs = ids[0..len-2], targets[t] = mask[t+1] ? ids[t+1] : -1, right-padded with input 0 /
 * target -1 to Tb = (longest len) - 1. Returns Tb. */
size_t sft_make_batch(const chat_data *d, const size_t *idx, size_t B, int32_t *inputs, int32_t *targets);
/* Masked mean loss of a batch; with backward, accumulates the gradient of that mean into the model's grads.
 * *count receives the number of masked targets. */
double sft_batch_loss(train_lm *lm, const int32_t *inputs, const int32_t *targets, size_t B, size_t Tb,
                      int backward, size_t *count);
/* Mean masked loss over a whole dataset (batches of B, no backward); *count = masked tokens. */
double sft_eval_loss(train_lm *lm, const chat_data *d, size_t B, size_t *count);

/* ================================================================ */
/* reward modelling, PPO with a KL leash, DPO, and model comparison (issue 5).
 * Implemented in rlhf_loss.c (loss math, LM batches of sequences, the value head), rm.c (sequences,
 * scoring, reward-model training), ppo.c (PPO and `compare`), dpo.c. docs/rlhf.md has the full description.
 *
 * Sequences. A (prompt, response) pair becomes token ids exactly as the chat format renders it and as the
 * engine generates it: chat_render(prompt, generation prompt) = "... <|assistant|>", then the response
 * encoded as assistant text, then <|end|>. A reward model reads its scalar head at the LAST token of the
 * sequence (the <|end|> of the assistant turn). Per-token quantities of a response (log-probs, values,
 * rewards) are indexed by the position that PREDICTS the token: response token k sits at ids[prompt_len+k]
 * and is predicted from position prompt_len+k-1.
 */

/* ================================================================ loss math (rlhf_loss.c) */

/* Reward-model loss over groups of scored responses. Group g is responses r[first[g] .. first[g]+count[g])
 * ranked best first (a pair is a group of 2, a K-ranking a group of K: its K(K-1)/2 pairs share the K
 * scores). loss = mean over groups of (mean over the group's pairs i<j of -log sigmoid(r_i - r_j)), the
 * InstructGPT normalisation: each prompt weighs the same whatever its K. dr (may be NULL) receives
 * d loss / d r for every response (overwritten). Groups with fewer than 2 responses are skipped. */
typedef struct {
    double loss;
    double accuracy;     /* fraction of pairs with r_i > r_j (ties count half) */
    double margin;       /* mean r_i - r_j over pairs */
    double correct;      /* pairs right (ties half) */
    size_t npairs;
} rlhf_rm_stats;
double rlhf_rm_loss(const float *r, const size_t *first, const size_t *count, size_t ngroups, float *dr,
                    rlhf_rm_stats *st);

/* KL-shaped per-token rewards of one response of n tokens:
 *   rewards[t] = -beta * (logp[t] - ref_logp[t]),  plus score on the last token.
 * Returns the sampled KL estimate sum_t (logp[t] - ref_logp[t]). */
double rlhf_kl_rewards(const float *logp, const float *ref_logp, size_t n, float score, float beta, float *rewards);

/* Generalised advantage estimation over one response (the episode ends after token n-1: V = 0 beyond):
 *   delta_t = r_t + gamma V_{t+1} - V_t;  A_t = delta_t + gamma lambda A_{t+1};  returns_t = A_t + V_t. */
void rlhf_gae(const float *rewards, const float *values, size_t n, float gamma, float lambda, float *adv, float *ret);

/* x <- (x - mean) / sqrt(var + 1e-8) (population variance), adding the mean back if keep_mean. */
void rlhf_whiten(float *x, size_t n, int keep_mean);

/* PPO's clipped surrogate over n tokens: ratio = exp(logp - old_logp),
 *   loss = mean_t max(-A ratio, -A clip(ratio, 1-eps, 1+eps)).
 * dlogp (may be NULL) receives d loss / d logp[t]. Stats: clip_frac = fraction of tokens where the clipped
 * term is the larger one (gradient 0); approx_kl = mean 0.5 (logp - old_logp)^2. */
typedef struct { double loss, clip_frac, approx_kl; } rlhf_ppo_stats;
double rlhf_ppo_policy_loss(const float *logp, const float *old_logp, const float *adv, size_t n, float clip_eps,
                            float *dlogp, rlhf_ppo_stats *st);

/* Clipped value loss: vc = old_v + clip(v - old_v, -clip, clip);
 *   loss = 0.5 mean_t max((v - R)^2, (vc - R)^2).  dv (may be NULL) = d loss / d v. */
double rlhf_value_loss(const float *v, const float *old_v, const float *ret, size_t n, float clip, float *dv,
                       double *clip_frac);

/* Entropy (nats) of softmax(logits / temperature) over V entries. */
double rlhf_entropy_row(const float *logits, size_t V, float temperature);

/* DPO over n pairs with sequence log-probs (sums over response tokens) of the policy (pc, pr) and the frozen
 * reference (rc, rr), chosen and rejected:  z = beta((pc - rc) - (pr - rr));  loss = mean -log sigmoid(z).
 * dpc, dpr (may be NULL) receive d loss / d pc, d pr. Stats: accuracy of the implicit reward (z > 0; ties
 * half), mean margin z, mean implicit rewards beta(pc - rc), beta(pr - rr). */
typedef struct { double loss, accuracy, margin, reward_chosen, reward_rejected; } rlhf_dpo_stats;
double rlhf_dpo_loss(const float *pc, const float *pr, const float *rc, const float *rr, size_t n, float beta,
                     float *dpc, float *dpr, rlhf_dpo_stats *st);

/* Wilson score interval for a proportion successes/n at normal quantile z (1.96 for 95%). */
void rlhf_wilson(double successes, double n, double z, double *lo, double *hi);

/* Adaptive KL coefficient (Ziegler et al. 2019): e = clip(KL / target - 1, -0.2, 0.2);
 * beta <- beta (1 + e * n_steps / horizon). target <= 0 leaves beta fixed. */
typedef struct { double beta, target; long horizon; } rlhf_kl_ctl;
void rlhf_kl_ctl_update(rlhf_kl_ctl *c, double kl, long n_steps);

/* Token ids of prompt + response. Response tokens are ids[prompt_len .. n). */
typedef struct {
    int32_t *ids; size_t n;
    size_t prompt_len;
} rlhf_seq;
void rlhf_seq_free(rlhf_seq *s);

/* LM batch of n sequences, right-padded: inputs [n, T] hold ids[0 .. len-2] (pad 0); targets [n, T] hold
 * ids[p+1] at the positions p in [prompt_len-1, len-1) that predict response tokens, -1 elsewhere.
 * T = longest len - 1. Returns T; *inputs and *targets are malloc'd. */
size_t rlhf_lm_batch(const rlhf_seq *seqs, size_t n, int32_t **inputs, int32_t **targets);

/* A scalar head read at every row (PPO's value model), with backward. */
typedef struct rlhf_vh rlhf_vh;
rlhf_vh *rlhf_vh_new(gpt_model *m);             /* m must have cfg.score_head */
void rlhf_vh_free(rlhf_vh *v);
/* Trunk + score head on inputs [B,T]: values [B*T] (host). */
void rlhf_vh_forward(rlhf_vh *v, const int32_t *inputs, size_t B, size_t T, float *values);
/* Accumulates grads for d loss / d values [B*T] (host) through the last forward. */
void rlhf_vh_backward(rlhf_vh *v, const float *dvalues);

/* ================================================================ sequences and scoring (rm.c) */

/* What rendering needs: the tokenizer (with chat specials) and their ids. */
typedef struct {
    tok_tokenizer *tok;
    chat_specials sp;
} rlhf_chat;
/* Loads a checkpoint's tokenizer (override if non-NULL, else the recorded path, also tried relative to
 * model_dir) and resolves the chat specials against vocab_size. Returns 0 or -1 with err. */
int  rlhf_chat_open(rlhf_chat *c, const char *model_dir, const char *recorded, const char *override,
                    size_t vocab_size, gk_err *err);
void rlhf_chat_close(rlhf_chat *c);
/* A preference file rendered for training: every response of every line as a full sequence (prompt + response),
 * line by line; lines with a sequence longer than max_len are dropped (counted). The RM and DPO share it. */
typedef struct {
    rlhf_seq *seqs; size_t nseq;   /* all responses of all kept lines, line by line */
    size_t *first, *count; size_t n;   /* per kept line: its first sequence and how many */
    size_t pairs, dropped;         /* pairs the kept lines yield; lines dropped for length */
    float *ref;                    /* [nseq] values a stage attaches (DPO: reference log-probs), or NULL */
} rlhf_pref_data;
void rlhf_pref_data_build(rlhf_pref_data *d, const rlhf_chat *c, const prefs_set *s, size_t max_len);
void rlhf_pref_data_free(rlhf_pref_data *d);   /* frees ref too */

/* Renders the prompt of an item with the generation prompt (ending in <|assistant|>) into out (appended). */
void rlhf_render_prompt(const rlhf_chat *c, const prefs_item *it, tok_ids *out);
/* prompt + response k + <|end|>. */
void rlhf_render_seq(const rlhf_chat *c, const prefs_item *it, size_t k, rlhf_seq *out);

/* Scalar rewards of n sequences, read at each one's last token: batched (batch sequences per forward,
 * right-padded). rm must have cfg.score_head. Rewards include the model's stored offset (see rm_offset). */
void rlhf_score_seqs(gpt_model *rm, const rlhf_seq *seqs, size_t n, size_t batch, float *out);
/* The same for rollouts (PPO, the judge): a response that did not end gets <|end|> appended for scoring. */
void rlhf_score_rollouts(gpt_model *rm, const rlhf_seq *seqs, const int *ended, size_t n, int32_t end_id, float *out);
/* The response of a sequence as text (without its closing <|end|>), NUL-terminated valid UTF-8. */
void rlhf_response_text(const tok_tokenizer *tok, int32_t end_id, const rlhf_seq *s, tok_bytes *out);

/* Reward-model forward on n sequences (right-padded into one [n, longest] batch): r [n] (host, may be NULL)
 * at each sequence's last token. With ngroups > 0, also the loss of rlhf_rm_loss over the groups (indices
 * into seqs) and, if backward, accumulates its gradient into the model's grads. Returns the loss (NaN
 * without groups). */
double rlhf_rm_step(gpt_model *rm, const rlhf_seq *seqs, size_t n, const size_t *first, const size_t *count,
                    size_t ngroups, int backward, float *r, rlhf_rm_stats *st);

/* A reward-model checkpoint (must have a score head). RM_DIR/reward.json records the normalisation. */
gpt_model *rlhf_load_rm(const char *dir, char **tokenizer, gk_err *err);
/* Any checkpoint with a scalar head: its own, or a new one (zeros, or N(0, head_std) if head_std > 0)
 * added after the copied trunk. */
gpt_model *rlhf_load_with_head(const char *dir, float head_std, uint64_t seed, char **tokenizer, gk_err *err);

/* ================================================================ reward model training (rm.c) */
typedef struct {
    const char *init_dir;      /* a checkpoint (normally SFT): the trunk; a score head is added (zeros, or
                                  N(0, head_init_std)) unless it has one */
    const char *resume_dir;    /* continue an rm run exactly */
    const char *data, *val;    /* preference JSONL (pairs / rankings) */
    const char *normalize;     /* JSONL of demonstrations ({"messages"} or {"prompt","response"}): after
                                  training, shift rewards so these score mean 0 (NULL: no shift) */
    const char *tokenizer;     /* overrides the checkpoint's record */
    const char *out;
    long   batch;              /* preference lines per step (default 8) */
    long   epochs;             /* default 1; steps = epochs * ceil(lines / batch) unless steps > 0 */
    long   steps;
    lr_schedule sched;         /* default 1e-4 peak, 10% warmup... see rm_opts_default */
    adamw_config opt;
    float  head_init_std;      /* 0: zeros */
    uint64_t seed;
    int    json;
    long   val_every, save_every, stop_at;
    int    bf16;                  /* --precision bf16 (the stage skeleton sets it on the model's backend) */
    train_lora_opts lora;         /* --lora-*: adapters plus the adapter's own score head (docs/lora.md) */
} rm_opts;
void  rm_opts_default(rm_opts *o);
char *rm_opts_to_json(const rm_opts *o);
int   rm_opts_from_json(rm_opts *o, const char *json, gk_err *err);

typedef struct {
    long   steps_done;
    double final_loss, final_acc;       /* last step's */
    double val_loss, val_acc, val_margin;  /* held-out, at the end (NaN without --val) */
    double offset;                      /* normalisation shift subtracted from raw rewards (0 if none) */
    size_t pairs, val_pairs, dropped;   /* dropped: lines whose sequences exceed the context */
    double seconds;
    int    interrupted;
} rm_result;
int train_rm(const rm_opts *o, rm_result *res, gk_err *err);

/* What the RM and DPO loops share: whole preference lines of td in batches of B, in a seeded order per epoch
 * (the position is (epoch, lines taken)), accuracy and margin per step, a held-out evaluation on vd. A stage's
 * hook context starts with this struct (rlhf_pref_tell casts it). */
/* units: what the loss is a mean over (RM: ranked lines, DPO: pairs), to weight ranks' shares by; pairs: what
 * accuracy, margin and extra are means over */
typedef struct { double loss, accuracy, margin; size_t pairs; double extra[2]; double units; } rlhf_pref_eval;
typedef struct {
    const rlhf_pref_data *td, *vd;
    size_t B;
    train_order ord;
    /* Loss of lines idx[0..k) of td with the backward; fills accuracy, margin and the extra values. */
    double (*lines)(void *ctx, const uint32_t *idx, size_t k, rlhf_pref_eval *st);
    const char *extra_keys[2];          /* step fields after accuracy and margin (NULL: none) */
    const char *acc_short, *acc_long;   /* the accuracy in human lines: "val acc" / "accuracy" */
    double *final_acc, *val_loss, *val_acc, *val_margin;   /* the stage's result fields */
} rlhf_pref_loop;
/* Opens the skeleton for a preference stage: batches of B = min(batch, lines) lines, sc->total = steps, or
 * epochs (at least 1) over the lines; one model; eval after the last step; the line order seeded from seed. */
int  rlhf_pref_open(rlhf_pref_loop *p, train_stage *s, train_stage_cfg *sc, long batch, long epochs, long steps,
                    uint64_t seed, gk_err *err);
/* The micro hook: the next batch of lines through p->lines; logs accuracy, margin and the extra fields. */
int  rlhf_pref_micro(void *ctx, train_stage *s, long step, long micro, train_step_out *out, gk_err *err);
/* Logs a held-out evaluation as an event: {"step", "val_loss", "val_accuracy", "val_margin"}, or after the last
 * step {"event":"final", ..., "val_pairs"}, stored in the result too. */
void rlhf_pref_val(rlhf_pref_loop *p, train_stage *s, long step, int final, const rlhf_pref_eval *v);
/* The tell hook: the order's position. */
void rlhf_pref_tell(void *ctx, data_pos *pos);

/* Held-out accuracy / loss of a reward model on a preference file. */
int rlhf_rm_eval(gpt_model *rm, const rlhf_chat *c, const prefs_set *s, size_t batch, rlhf_rm_stats *st,
                 size_t *dropped, gk_err *err);

/* ================================================================ PPO (ppo.c) */
typedef struct {
    const char *policy_dir;    /* SFT checkpoint: the policy's start and the frozen reference */
    const char *reward_dir;    /* reward model; the value model is initialised from it */
    const char *prompts;       /* {"prompt"} JSONL */
    const char *resume_dir;
    const char *tokenizer;
    const char *grammar;       /* GBNF file: rollouts constrained to it (docs/constrain.md); NULL = none */
    const char *out;           /* policy checkpoint; OUT/value holds the value model */
    long   iters;              /* PPO iterations (rollout batch + update) */
    long   batch_prompts;      /* prompts per rollout batch (default 8) */
    long   samples;            /* responses per prompt (one shared prefill; default 4) */
    long   max_new;            /* response token limit (default 32) */
    float  temperature;        /* rollouts: pure sampling at this temperature (default 1) */
    float  beta;               /* initial KL coefficient (default 0.05) */
    float  kl_target;          /* > 0: adaptive beta toward this KL (nats per response); 0: fixed */
    long   kl_horizon;         /* adaptive controller horizon in rollouts (default 10000) */
    float  gamma, lambda;      /* GAE (1, 0.95) */
    float  clip_eps;           /* policy ratio clip (0.2) */
    float  vf_clip;            /* value clip (0.2) */
    long   ppo_epochs;         /* passes over each rollout batch (default 4) */
    long   minibatch;          /* rollouts per minibatch (default 8) */
    float  lr, vf_lr;          /* AdamW, constant with warmup (defaults 1e-5, 1e-5) */
    long   warmup;
    adamw_config opt;
    float  missing_end_penalty;/* subtracted from the RM score of a response that hit max_new (default 1) */
    uint64_t seed;
    int    json;
    long   sample_every;       /* print a sample response every N iterations (default 5; 0 off) */
    long   save_every, stop_at;
    train_lora_opts lora;      /* --lora-*: policy and value adapters over one frozen base (docs/lora.md) */
} ppo_opts;
void  ppo_opts_default(ppo_opts *o);
char *ppo_opts_to_json(const ppo_opts *o);
int   ppo_opts_from_json(ppo_opts *o, const char *json, gk_err *err);

/* One iteration's log (also the per-step JSONL record). */
typedef struct {
    double score;              /* mean RM score of the rollouts */
    double reward;             /* mean score after the missing-end penalty (what PPO optimises, with the KL) */
    double kl;                 /* mean over rollouts of sum_t (logp - ref_logp): KL to the reference */
    double beta;               /* KL coefficient used */
    double entropy;            /* mean per-token policy entropy at rollout time */
    double clip_frac, approx_kl, policy_loss, value_loss, vf_clip_frac;
    double resp_len, ended;    /* mean response length; fraction of responses that ended with <|end|> */
    double t_rollout, t_score, t_ref, t_update;   /* seconds: generation, RM + value + old log-probs, reference, update */
} ppo_step_log;
typedef struct {
    long   iters_done;
    ppo_step_log *log;         /* [iters_done] of this run (malloc'd; ppo_result_free) */
    double seconds;
    int    interrupted;
} ppo_result;
int  train_ppo(const ppo_opts *o, ppo_result *res, gk_err *err);
void ppo_result_free(ppo_result *r);

/* Responses from the engine's model for one prompt: one prefill, n samples decoded together with pure
 * temperature sampling (no top-k/top-p/penalties), stopping at <|end|> / <|endoftext|> or after max_new
 * tokens. out[i] holds prompt + response (ids, prompt_len); ended[i] = 1 if it stopped at a stop token
 * (included). seed fixes the draws. grammar (NULL = none): responses constrained to it (docs/constrain.md).
 * Returns 0 or -1 with err (e.g. the prompt does not fit the context). */
struct engine;
struct constrain;
int rlhf_generate(struct engine *e, const int32_t *prompt, size_t n_prompt, size_t n, size_t max_new,
                  float temperature, uint64_t seed, rlhf_seq *out, int *ended, struct constrain *grammar, gk_err *err);
/* The same for P prompts at once, all decoded together: prompt p draws with seeds[p] (what rlhf_generate of
 * it with that seed draws, up to batched rounding); out and ended [P * n], prompt by prompt. The engine needs
 * n slots at least (more slots, more prompts in flight). */
int rlhf_generate_groups(struct engine *e, const tok_ids *prompts, size_t P, size_t n, size_t max_new, float temperature,
                         const uint64_t *seeds, rlhf_seq *out, int *ended, struct constrain *grammar, gk_err *err);
/* An engine for rlhf_generate_groups over batches of P of these prompts x n samples: a cache as long as the
 * longest prompt + max_new, with slots for the whole batch (or as many groups as fit in 1 GiB). */
struct engine *rlhf_rollout_engine(gpt_model *m, const tok_tokenizer *tok, size_t P, size_t n, const tok_ids *prompts,
                                   size_t n_prompts, size_t max_new);

/* ================================================================ DPO (dpo.c) */
typedef struct {
    const char *policy_dir;    /* start and frozen reference */
    const char *resume_dir;
    const char *data, *val;
    const char *tokenizer;
    const char *out;
    float  beta;               /* 0.1 */
    long   batch;              /* preference lines per step (8) */
    long   epochs, steps;
    lr_schedule sched;
    adamw_config opt;
    uint64_t seed;
    int    json;
    long   val_every, save_every, stop_at;
    int    bf16;                  /* --precision bf16 (the stage skeleton; the reference model matches it) */
    train_lora_opts lora;         /* --lora-*: train adapters; the reference is the base (adapters off) */
} dpo_opts;
void  dpo_opts_default(dpo_opts *o);
char *dpo_opts_to_json(const dpo_opts *o);
int   dpo_opts_from_json(dpo_opts *o, const char *json, gk_err *err);
typedef struct {
    long   steps_done;
    double final_loss, final_acc;
    double val_loss, val_acc, val_margin;   /* implicit-reward accuracy on held-out pairs at the end */
    size_t pairs, val_pairs, dropped;
    double seconds;
    int    interrupted;
} dpo_result;
int train_dpo(const dpo_opts *o, dpo_result *res, gk_err *err);

/* ================================================================ compare (ppo.c) */
typedef struct {
    const char *a_dir, *b_dir, *rm_dir, *prompts;
    long   n;                  /* prompts used (first n; 0 = all) */
    long   samples;            /* responses per prompt per model (default 1) */
    long   max_new;            /* default 64 */
    float  temperature;        /* default 0.7 */
    uint64_t seed;
    const char *tokenizer;
    int    json;               /* one JSON object per comparison on stdout */
} compare_opts;
void compare_opts_default(compare_opts *o);
typedef struct {
    long   n;                  /* comparisons */
    double wins, ties, losses;
    double win_rate;           /* (wins + ties/2) / n */
    double ci_lo, ci_hi;       /* 95% Wilson interval of win_rate */
    double mean_a, mean_b;     /* mean RM scores */
} compare_result;
int rlhf_compare(const compare_opts *o, compare_result *res, gk_err *err);
/* Adds one comparison to r (d > 0: A wins; a, b: the two scores); rlhf_tally_finish turns the sums into the
 * win rate (ties half), its Wilson 95% interval and the mean scores (win_rate NaN when n = 0). */
void rlhf_tally(compare_result *r, double d, double a, double b);
void rlhf_tally_finish(compare_result *r);

/* What compare and the judge open: policies A and B, a reward model sharing their vocabulary, A's tokenizer with
 * its chat specials, the prompts, and the smallest context of the three models. */
typedef struct {
    gpt_model *a, *b, *rm;
    rlhf_chat ch;
    prefs_set ps;
    size_t ctx;
} rlhf_duel;
int  rlhf_duel_open(rlhf_duel *d, const char *a_dir, const char *b_dir, const char *rm_dir, const char *prompts,
                    const char *tokenizer, gk_err *err);
void rlhf_duel_close(rlhf_duel *d);



/* ================================================================ GRPO (grpo.c, grpo_loss.c, grpo_reward.c) */
/* Group Relative Policy Optimization (Shao et al. 2024): G sampled responses per prompt, advantages relative to
 * the group (no value model), a KL penalty to the frozen reference by the k3 estimator inside the loss, the
 * clipped ratio objective; rewards that check the answer. docs/rlhf.md has the equations and choices. */

/* Group-relative advantages: r [ngroups * G], groups of G consecutive responses; adv_i = (r_i - mean) /
 * (std + eps), std the sample standard deviation (G - 1); G = 1 gives 0. */
void rlhf_grpo_advantages(const float *r, size_t ngroups, size_t G, float eps, float *adv);
/* The GRPO loss over nseq responses whose per-token arrays (logp: current policy, old_logp: at rollout,
 * ref_logp: the reference) hold response i at [off[i] - off[0], off[i+1] - off[0]); adv [nseq] per response.
 * Loss = -sum w_it (min(rho A, clip(rho, 1 -+ eps) A) - beta k3), k3 = exp(ref - logp) - (ref - logp) - 1,
 * w_it = 1 / (responses x |o_i|) (token_norm = 0: the paper's mean per response, then over responses) or
 * 1 / tokens (token_norm = 1). dlogp (may be NULL) = d loss / d logp. Stats: the loss, the mean k3 under the
 * same weights, the fraction of tokens clipped, mean 0.5 (logp - old)^2. */
typedef struct { double loss, kl, clip_frac, approx_kl; } rlhf_grpo_stats;
double rlhf_grpo_loss(const float *logp, const float *old_logp, const float *ref_logp, const size_t *off,
                      const float *adv, size_t nseq, float clip_eps, float beta, int token_norm, float *dlogp,
                      rlhf_grpo_stats *st);

/* A task with a checkable answer: check is a demo check ("number", "contains", "upper", "exact", "json":
 * demo_check_answer) or "" for any other answer, which is then read from the reply by the strategies' rules
 * (strategy_extract, ANSWER_AUTO; strategy_answer_equal). */
typedef struct { char answer[64]; char check[16]; } grpo_task;
/* The task of a prompt line: answer (and check) given on the line, or else recovered from a demo prompt
 * (demo_task_from_prompt on the prompt's system and last user message). Returns 0, or -1 with err when the
 * line has no answer and its prompt is not one of the demo's. answer/check may be NULL. */
int grpo_task_of(const prefs_item *it, const char *answer, const char *check, grpo_task *t, gk_err *err);
/* Verifiable reward of a reply (text without the closing <|end|>; ended = it closed with <|end|>):
 *   reward = correct_w * correct + format_w * format
 * correct: the answer checks; format: it ended and, for a demo task, it obeys the prompt's format instruction
 * and is one sentence (demo_judge's follows_format and concise). */
typedef struct { int correct, format; double reward; } grpo_reward_out;
void grpo_reward(const grpo_task *t, const char *reply, int ended, float correct_w, float format_w, grpo_reward_out *out);
/* A prompt file for GRPO: {"prompt": P, "answer"?: TEXT or number, "check"?: NAME} per line (an eval file of
 * the demo loads as it is; an RL prompt file of the demo needs no answers). Errors name file:line:field. */
typedef struct { prefs_item *items; grpo_task *tasks; size_t n; } grpo_set;
int  grpo_set_load(const char *path, grpo_set *s, gk_err *err);
void grpo_set_free(grpo_set *s);

typedef struct {
    const char *policy_dir;    /* SFT checkpoint: the start and the frozen reference */
    const char *prompts;       /* grpo_set file */
    const char *val;           /* held-out tasks (grpo_set file): greedy accuracy before and after, NULL = none */
    const char *resume_dir;
    const char *tokenizer;
    const char *out;
    long   iters;              /* iterations (rollouts + update) */
    long   batch_prompts;      /* prompts per iteration (8) */
    long   group;              /* G: responses per prompt (8) */
    long   max_new;            /* response token limit (32) */
    float  temperature;        /* rollout sampling temperature (1) */
    float  beta;               /* KL coefficient (0.04) */
    float  clip_eps;           /* ratio clip (0.2) */
    float  adv_eps;            /* advantage denominator epsilon (1e-4) */
    int    token_norm;         /* 0: mean per response then over responses (the paper); 1: mean over tokens */
    int    skip_no_signal;     /* 1: groups whose rewards are all equal are left out of the update (DAPO's filter) */
    long   epochs;             /* mu: passes over each rollout batch (1) */
    long   minibatch;          /* responses per minibatch (16) */
    float  lr;                 /* AdamW, constant after warmup (1e-5) */
    long   warmup;
    adamw_config opt;
    float  correct_reward;     /* reward of a correct answer (1) */
    float  format_reward;      /* reward of the format (0: off) */
    long   val_n;              /* held-out tasks used (0 = all) */
    uint64_t seed;
    int    json;
    long   sample_every, val_every, save_every, stop_at;
    train_lora_opts lora;      /* --lora-*: policy adapters; the reference is the base (adapters off) */
} grpo_opts;
extern const train_opt_table train_opts_grpo;
void  grpo_opts_default(grpo_opts *o);
char *grpo_opts_to_json(const grpo_opts *o);
int   grpo_opts_from_json(grpo_opts *o, const char *json, gk_err *err);

typedef struct {
    double reward, accuracy, format;   /* means over the iteration's responses */
    double reward_std;                 /* mean within-group std of the rewards */
    double zero_std;                   /* fraction of groups whose rewards are all equal (no signal) */
    double kl;                         /* mean over responses of sum_t (logp - ref): nats per response, as PPO's */
    double kl_k3;                      /* mean k3 per token, weighted as the loss */
    double loss, clip_frac, approx_kl;
    double resp_len, ended;
    double updated;                    /* share of the responses that entered the update (skip_no_signal) */
    double t_rollout, t_reward, t_ref, t_update;   /* seconds: generation, answer checks, reference, the rest */
} grpo_step_log;
typedef struct {
    long   iters_done;
    grpo_step_log *log;        /* [iters_done] of this run (grpo_result_free) */
    double val_acc0, val_acc;  /* held-out greedy accuracy before (NaN when resumed) and after; NaN without --val */
    long   val_n;
    double seconds;
    int    interrupted;
} grpo_result;
int  train_grpo(const grpo_opts *o, grpo_result *res, gk_err *err);
void grpo_result_free(grpo_result *r);
/* Greedy accuracy of a model (its engine) on tasks: replies up to max_new tokens, graded as grpo_reward's
 * correct. correct [n] (may be NULL) receives 1/0 per task. Returns the accuracy, or NaN with err on failure. */
struct engine;
double grpo_accuracy(struct engine *e, const tok_tokenizer *tok, const chat_specials *sp, const grpo_set *s, size_t n,
                     size_t max_new, unsigned char *correct, gk_err *err);



/* ================================================================ judged win rates (judge.c) */
/* Win rate of model A over model B on held-out prompts by two judges: the reward model (what PPO optimised,
 * and can fool) and, for demo prompts, the gold rule the preferences were generated from (demo_gold). One reply
 * per prompt per model; with best_of > 1, A's reply is the reward model's favourite of best_of samples from A
 * (best-of-N: the baseline an RL method must beat at equal sampling cost). */
typedef struct {
    const char *a_dir, *b_dir, *rm_dir, *prompts;
    long   n;                  /* prompts used (first n; 0 = all) */
    long   best_of;            /* > 1: best-of-N for A (by the reward model) */
    long   max_new;            /* default 64 */
    float  temperature;        /* default 0.7 */
    uint64_t seed;
    const char *tokenizer;
    int    json;               /* one JSON object per comparison on stdout */
} judge_opts;
void judge_opts_default(judge_opts *o);
typedef struct {
    compare_result rm;         /* by the reward model: wins/ties/losses, win rate (ties half), Wilson 95%, mean scores */
    compare_result gold;       /* by the gold rule over the comparisons it can judge (n); mean_a/b: mean rule score 0..7 */
    double gold_correct_a, gold_correct_b;   /* share of A's / B's judged replies with the right answer */
} judge_result;
int rlhf_judge(const judge_opts *o, judge_result *res, gk_err *err);

/* A paired 95% interval for the difference of two accuracies on the same n tasks (a[i], b[i] in {0,1}):
 * mean d = a - b, interval d +- z sd(d) / sqrt(n) (sd with n - 1; the normal approximation of the paired
 * difference). n < 2 gives [-1, 1]. */
void rlhf_paired_diff(const unsigned char *a, const unsigned char *b, size_t n, double z, double *mean, double *lo, double *hi);

#endif
