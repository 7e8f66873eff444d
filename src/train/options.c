/* options.c: the option tables of the training stages and the code every table shares.
 *
 * Each stage's options struct (train.h) is described once, here, by a static array of train_opt descriptors
 * (offsetof into the struct). From that one description come the defaults (train_opts_default), the resume
 * JSON (train_opts_to_json / _from_json), the CLI flags and --help (src/cli/train_args.c) and the pipeline
 * config keys (src/cli/cmd_pipeline.c). The options several stages share — learning-rate schedule, AdamW,
 * seed, precision, the output intervals — are written once as the OPT_* macros below, each taking the stage's
 * struct and its defaults.
 */
#include "train/train.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BIG 1e18                      /* "no upper bound" */
#define ST TRAIN_OPT_STORED
#define PI TRAIN_OPT_PIPE

/* ---------------------------------------------------------------- shared descriptors */

#define OPT_SECTION(h) { .type = TRAIN_OPT_SECTION, .help = (h) }
#define OPT_STR_(S, fl, k, f, d, fg, mv, h) \
    { .type = TRAIN_OPT_STR, .flag = (fl), .key = (k), .off = offsetof(S, f), .def_str = (d), .flags = (fg), \
      .metavar = (mv), .help = (h) }
#define OPT_NUM_(S, ty, fl, al, k, pk, f, d, lo, hi, fg, mv, h) \
    { .type = (ty), .flag = (fl), .alias = (al), .key = (k), .pipe = (pk), .off = offsetof(S, f), .def = (d), \
      .min = (lo), .max = (hi), .flags = (fg), .metavar = (mv), .help = (h) }
#define OPT_LONG(S, fl, k, f, d, lo, fg, mv, h)  OPT_NUM_(S, TRAIN_OPT_LONG, fl, NULL, k, NULL, f, d, lo, BIG, fg, mv, h)
#define OPT_FLOAT(S, fl, k, f, d, lo, hi, fg, mv, h) OPT_NUM_(S, TRAIN_OPT_FLOAT, fl, NULL, k, NULL, f, d, lo, hi, fg, mv, h)

/* --resume: the stage's start replaced by a saved run (model, optimizer, data position, RNG) */
#define OPT_RESUME(S, mv) \
    OPT_STR_(S, "--resume", "resume_dir", resume_dir, NULL, 0, mv, \
             "continue a run exactly; stored settings are reused, flags given here override them")
#define OPT_TOKENIZER(S) OPT_STR_(S, "--tokenizer", "tokenizer", tokenizer, NULL, ST, "PATH", \
                                  "use this tokenizer instead of the checkpoint's own (and carry it in the output)")

/* the learning-rate schedule (lr_schedule sched) */
#define OPT_SCHED(S, d_lr, d_warmup, d_shape, d_frac) \
    OPT_FLOAT(S, "--lr", "lr", sched.lr, d_lr, 0, BIG, ST | PI, "LR", "peak learning rate"), \
    OPT_LONG(S, "--warmup", "warmup", sched.warmup, d_warmup, 0, ST | PI, "N", "linear warmup steps"), \
    { .type = TRAIN_OPT_SHAPE, .flag = "--schedule", .key = "schedule", .off = offsetof(S, sched.shape), \
      .def_str = (d_shape), .flags = ST | PI, .metavar = "S", .help = "constant | cosine | linear decay after warmup" }, \
    OPT_NUM_(S, TRAIN_OPT_FLOAT, "--final-lr-frac", NULL, "final_frac", "final_lr_frac", sched.final_frac, d_frac, 0, 1, \
             ST | PI, "F", "decay to LR*F at the last step")

/* AdamW (adamw_config opt); the betas, eps and clip are adamw_config_default's */
#define OPT_ADAMW(S, d_wd) \
    OPT_FLOAT(S, "--weight-decay", "weight_decay", opt.weight_decay, d_wd, 0, BIG, ST | PI, "W", \
              "decoupled weight decay, on 2-D weight matrices only"), \
    OPT_FLOAT(S, "--grad-clip", "grad_clip", opt.grad_clip, 1.0, 0, BIG, ST | PI, "G", "global gradient-norm clip, 0 = off"), \
    OPT_FLOAT(S, "--beta1", "beta1", opt.beta1, 0.9, 0, 1, ST, "B1", "AdamW first-moment decay"), \
    OPT_FLOAT(S, "--beta2", "beta2", opt.beta2, 0.95, 0, 1, ST, "B2", "AdamW second-moment decay"), \
    OPT_FLOAT(S, "--eps", "eps", opt.eps, 1e-8, 1e-30, BIG, ST, "E", "AdamW epsilon (> 0)")

#define OPT_SEED(S) \
    OPT_NUM_(S, TRAIN_OPT_U64, "--seed", NULL, "seed", NULL, seed, 1337, 0, 0, ST, "S", \
             "seed of the run's random choices (init, data order, sampling)")
#define OPT_PRECISION(S) \
    { .type = TRAIN_OPT_PRECISION, .flag = "--precision", .key = "bf16", .off = offsetof(S, bf16), .flags = ST, \
      .metavar = "P", .help = "fp32 | bf16: matmuls in bfloat16 with fp32 accumulation and fp32 master weights " \
                              "(needs oneDNN and AVX512-BF16/AMX)" }
#define OPT_VAL_EVERY(S, d) \
    OPT_LONG(S, "--val-every", "val_every", val_every, d, 0, ST | PI, "N", "held-out evaluation every N steps (0 = at the end)")
/* checkpoints, stopping early, the step lines */
#define OPT_OUTPUT(S, d_save) \
    OPT_LONG(S, "--save-every", "save_every", save_every, d_save, 0, ST | PI, "N", \
             "checkpoint every N steps (0 = only at the end; always on Ctrl-C)"), \
    OPT_LONG(S, "--stop-at", "stop_at", stop_at, 0, 0, 0, "STEP", \
             "save and stop when STEP is reached (the schedule still spans all steps)"), \
    { .type = TRAIN_OPT_BOOL, .flag = "--json", .key = "json", .off = offsetof(S, json), \
      .help = "one JSON object per step on stdout instead of the progress line" }

/* What the gradient-descent stages (pretrain, sft, rm, dpo) share: the schedule, AdamW, seed and precision;
 * then their output block: --out, --val-every, --save-every, --stop-at, --json. */
#define OPT_OPTIM(S, d_lr, d_warmup, d_shape, d_frac, d_wd) \
    OPT_SCHED(S, d_lr, d_warmup, d_shape, d_frac), OPT_ADAMW(S, d_wd), OPT_SEED(S), OPT_PRECISION(S)
#define OPT_OUTPUT_BLOCK(S, d_out, mv, h, d_val, d_save) \
    OPT_SECTION("output:"), \
    OPT_STR_(S, "--out", "out", out, d_out, ST, mv, h), \
    OPT_VAL_EVERY(S, d_val), OPT_OUTPUT(S, d_save)

/* LoRA (train_lora_opts lora): rank 0 = full finetuning; PIPE: TRAIN_OPT_PIPE to make them pipeline keys, or 0 */
#define OPT_LORA(S, PIPE) \
    OPT_SECTION("LoRA (train low-rank adapters only; the base stays frozen):"), \
    OPT_NUM_(S, TRAIN_OPT_LONG, "--lora-rank", NULL, "lora_rank", NULL, lora.rank, 0, 0, 65536, ST | (PIPE), "R", \
             "adapter rank (0 = full finetuning); a .gguf base stays quantized (QLoRA)"), \
    OPT_NUM_(S, TRAIN_OPT_FLOAT, "--lora-alpha", NULL, "lora_alpha", NULL, lora.alpha, 16, 1e-9, BIG, ST | (PIPE), "A", \
             "adapter scaling numerator: updates are scaled by A/R"), \
    OPT_NUM_(S, TRAIN_OPT_FLOAT, "--lora-dropout", NULL, "lora_dropout", NULL, lora.dropout, 0, 0, 0.999, ST | (PIPE), "P", \
             "dropout on the adapters' input while training (off at evaluation)"), \
    OPT_STR_(S, "--lora-targets", "lora_targets", lora.targets, "all-linear", ST | (PIPE), "LIST", \
             "layers to adapt: q,k,v,o,gate,up,down (llama) | c_attn,c_proj,c_fc,mlp.c_proj (gpt2) | all-linear"), \
    { .type = TRAIN_OPT_BOOL, .flag = "--rslora", .alias = "--lora-rslora", .key = "rslora", .pipe = "lora_rslora", \
      .off = offsetof(S, lora.rslora), .flags = ST | (PIPE), .help = "rank-stabilised scaling A/sqrt(R) instead of A/R" }

#define TABLE(name, stage, S, arr) \
    const train_opt_table name = { stage, arr, sizeof arr / sizeof arr[0], sizeof(S) }

/* ---------------------------------------------------------------- pretrain */

static const train_opt PRETRAIN[] = {
    OPT_SECTION("model:"),
    { .type = TRAIN_OPT_STR, .flag = "--model", .key = "model_name", .off = offsetof(pretrain_opts, model_name),
      .def_str = "d6", .flags = ST, .clears = "init_dir", .metavar = "NAME",
      .help = "random init of a named size: d6 (6L/6H/384), d12 (GPT-2 124M), d24, d36, d48, dN; llama-135m with --arch llama" },
    { .type = TRAIN_OPT_STR, .flag = "--arch", .key = "arch", .pipe = "model.arch", .off = offsetof(pretrain_opts, arch),
      .def_str = "gpt2", .flags = ST | PI, .metavar = "NAME",
      .help = "model family of a random init: gpt2 or llama (RMSNorm, RoPE, SwiGLU, grouped-query attention)" },
    OPT_NUM_(pretrain_opts, TRAIN_OPT_INT, "--n-layer", NULL, "n_layer", "model.n_layer", n_layer, 0, 0, 1e6, ST | PI, "N",
             "transformer blocks (0 = the named size's)"),
    OPT_NUM_(pretrain_opts, TRAIN_OPT_INT, "--n-head", NULL, "n_head", "model.n_head", n_head, 0, 0, 1e6, ST | PI, "N",
             "attention heads (0 = the named size's)"),
    OPT_NUM_(pretrain_opts, TRAIN_OPT_INT, "--n-embd", NULL, "n_embd", "model.n_embd", n_embd, 0, 0, 1e8, ST | PI, "N",
             "width (0 = the named size's)"),
    OPT_NUM_(pretrain_opts, TRAIN_OPT_INT, "--n-kv-head", NULL, "n_kv_head", "model.n_kv_head", n_kv_head, 0, 0, 1e6, ST | PI, "N",
             "key/value heads, dividing --n-head (llama; 0 = the named size's)"),
    OPT_NUM_(pretrain_opts, TRAIN_OPT_INT, "--n-inner", NULL, "n_inner", "model.n_inner", n_inner, 0, 0, 1e8, ST | PI, "N",
             "FFN width (0 = the named size's)"),
    OPT_NUM_(pretrain_opts, TRAIN_OPT_INT, "--vocab-size", NULL, "vocab_size", NULL, vocab_size, 50257, 1, 1e9, ST, "N",
             "vocabulary size"),
    OPT_NUM_(pretrain_opts, TRAIN_OPT_INT, "--n-ctx", NULL, "n_ctx", "model.n_ctx", n_ctx, 1024, 1, 1e8, ST | PI, "N",
             "context length"),
    OPT_STR_(pretrain_opts, "--init", "init_dir", init_dir, NULL, ST | TRAIN_OPT_FRESH, "DIR",
             "continue from a checkpoint with a fresh optimizer"),
    OPT_RESUME(pretrain_opts, "OUT"),
    OPT_SECTION("data:"),
    OPT_STR_(pretrain_opts, "--data", "data", data, NULL, ST, "GLOB", "training shards, e.g. 'shards/train_*.bin'"),
    OPT_STR_(pretrain_opts, "--val", "val", val, NULL, ST, "SHARD", "validation shard (val loss every --val-every steps)"),
    { .type = TRAIN_OPT_BOOL, .flag = "--shuffle", .neg = "--no-shuffle", .key = "shuffle",
      .off = offsetof(pretrain_opts, shuffle), .def = 1, .flags = ST,
      .help = "seeded shuffle of the batches (default); --no-shuffle reads them sequentially exactly as llm.c does" },
    OPT_NUM_(pretrain_opts, TRAIN_OPT_LONG, "--batch", "-b", "B", "batch", B, 8, 1, BIG, ST | PI, "B",
             "sequences per micro-batch"),
    OPT_NUM_(pretrain_opts, TRAIN_OPT_LONG, "--seq-len", "-t", "T", "seq_len", T, 256, 1, BIG, ST | PI, "T",
             "tokens per sequence"),
    OPT_LONG(pretrain_opts, "--total-batch", "total_batch", total_batch, 0, 0, ST | PI, "N",
             "tokens per optimizer step (gradient accumulation; 0 = B*T)"),
    OPT_SECTION("optimisation:"),
    OPT_LONG(pretrain_opts, "--steps", "steps", steps, 1000, 0, ST | PI, "K", "optimizer steps in total"),
    OPT_OPTIM(pretrain_opts, 6e-4, 100, "cosine", 0.1, 0.1),
    OPT_LORA(pretrain_opts, 0),
    OPT_SECTION("output:"),
    OPT_STR_(pretrain_opts, "--out", "out", out, "out/pretrain", ST, "OUT", "checkpoint directory (created)"),
    OPT_STR_(pretrain_opts, "--tokenizer", "tokenizer", tokenizer, NULL, ST, "PATH", "tokenizer the checkpoint carries (tokenizer.json + tokenizer_config.json + generation_config.json)"),
    OPT_VAL_EVERY(pretrain_opts, 250),
    OPT_LONG(pretrain_opts, "--val-batches", "val_batches", val_batches, 20, 0, ST | PI, "K", "batches per validation"),
    OPT_LONG(pretrain_opts, "--sample-every", "sample_every", sample_every, 0, 0, ST | PI, "N",
             "print a sample every N steps (0 = off)"),
    OPT_OUTPUT(pretrain_opts, 500),
    OPT_SECTION("data parallelism (under mpirun):"),
    OPT_FLOAT(pretrain_opts, "--dist-bucket-mb", "dist_bucket_mb", dist_bucket_mb, 25, 0, 1024, 0, "MB",
              "reduce the gradients in buckets of MB megabytes, each started as the backward finishes it (overlap; "
              "0 = one reduce-scatter after the backward)"),
};
TABLE(train_opts_pretrain, "pretrain", pretrain_opts, PRETRAIN);

/* ---------------------------------------------------------------- sft */

static const train_opt SFT[] = {
    OPT_SECTION("model and data:"),
    OPT_STR_(sft_opts, "--init", "init_dir", init_dir, NULL, ST, "CKPT", "checkpoint to finetune (its recorded tokenizer is used)"),
    OPT_RESUME(sft_opts, "DIR"),
    OPT_TOKENIZER(sft_opts),
    OPT_STR_(sft_opts, "--data", "data", data, NULL, ST, "FILE", "training conversations (JSONL)"),
    OPT_STR_(sft_opts, "--val", "val", val, NULL, ST, "FILE", "held-out conversations: loss on their assistant tokens"),
    { .type = TRAIN_OPT_BOOL, .flag = "--skip-bad", .key = "skip_bad", .off = offsetof(sft_opts, skip_bad), .flags = ST,
      .help = "skip malformed lines (counted) instead of stopping at the first" },
    OPT_NUM_(sft_opts, TRAIN_OPT_LONG, "--batch", "-b", "B", "batch", B, 8, 1, BIG, ST | PI, "B",
             "conversations per step, padded to the longest"),
    OPT_NUM_(sft_opts, TRAIN_OPT_LONG, "--seq-len", "-t", "T", "seq_len", T, 0, 0, BIG, ST | PI, "T",
             "max input tokens per conversation (0 = the model's context); longer ones are cut from the right "
             "if an assistant token remains, else dropped"),
    OPT_SECTION("optimisation:"),
    { .type = TRAIN_OPT_LONG, .flag = "--epochs", .key = "epochs", .off = offsetof(sft_opts, epochs), .def = 3, .min = 0,
      .max = BIG, .flags = ST | PI, .clears = "steps", .metavar = "N", .help = "passes over the data, unless --steps is given" },
    OPT_LONG(sft_opts, "--steps", "steps", steps, 0, 0, ST | PI, "K", "optimizer steps in total (0 = --epochs)"),
    OPT_OPTIM(sft_opts, 1e-4, 10, "cosine", 0.1, 0.0),
    OPT_LORA(sft_opts, PI),
    OPT_OUTPUT_BLOCK(sft_opts, "out/sft", "DIR", "checkpoint directory (created)", 0, 0),
};
TABLE(train_opts_sft, "sft", sft_opts, SFT);

/* ---------------------------------------------------------------- rm */

static const train_opt RM[] = {
    OPT_SECTION("data (JSONL; prompt is a string or a message list):"),
    OPT_STR_(rm_opts, "--data", "data", data, NULL, ST, "FILE",
             "{\"prompt\",\"chosen\",\"rejected\"} or {\"prompt\",\"ranked\":[best..worst]}"),
    OPT_STR_(rm_opts, "--val", "val", val, NULL, ST, "FILE",
             "held-out preferences: accuracy at the end (and every --val-every steps)"),
    OPT_STR_(rm_opts, "--normalize", "normalize", normalize, NULL, ST, "FILE",
             "after training, shift rewards so FILE's demonstrations ({\"messages\"} or {\"prompt\",\"response\"}) "
             "score mean 0 (folded into ln_f.bias; see docs/rlhf.md)"),
    OPT_SECTION("model:"),
    OPT_STR_(rm_opts, "--init", "init_dir", init_dir, NULL, ST, "DIR", "starting checkpoint (SFT); its head is created if absent"),
    OPT_FLOAT(rm_opts, "--head-init-std", "head_init_std", head_init_std, 0, 0, BIG, ST | PI, "S",
              "initial score head N(0, S) (0 = zeros)"),
    OPT_RESUME(rm_opts, "RM_DIR"),
    OPT_TOKENIZER(rm_opts),
    OPT_SECTION("optimisation:"),
    OPT_NUM_(rm_opts, TRAIN_OPT_LONG, "--batch", "-b", "batch", NULL, batch, 8, 1, BIG, ST | PI, "N", "preference lines per step"),
    OPT_LONG(rm_opts, "--epochs", "epochs", epochs, 1, 0, ST | PI, "N", "passes over the data"),
    OPT_LONG(rm_opts, "--steps", "steps", steps, 0, 0, ST | PI, "K", "exact step count instead (0 = --epochs)"),
    OPT_OPTIM(rm_opts, 1e-4, 10, "linear", 0.1, 0.0),
    OPT_LORA(rm_opts, PI),
    OPT_OUTPUT_BLOCK(rm_opts, "out/rm", "DIR",
                     "reward model checkpoint (+ reward.json, metrics.jsonl, resume state)", 0, 0),
};
TABLE(train_opts_rm, "rm", rm_opts, RM);

/* ---------------------------------------------------------------- ppo */

#define PPO_F(fl, al, k, pk, f, d, lo, hi, mv, h) OPT_NUM_(ppo_opts, TRAIN_OPT_FLOAT, fl, al, k, pk, f, d, lo, hi, ST | PI, mv, h)
#define PPO_L(fl, al, k, pk, f, d, lo, mv, h) OPT_NUM_(ppo_opts, TRAIN_OPT_LONG, fl, al, k, pk, f, d, lo, BIG, ST | PI, mv, h)
static const train_opt PPO[] = {
    OPT_SECTION("data and models:"),
    OPT_STR_(ppo_opts, "--policy", "policy_dir", policy_dir, NULL, ST, "DIR", "SFT checkpoint: the start and the frozen reference"),
    { .type = TRAIN_OPT_STR, .flag = "--reward", .alias = "--rm", .key = "reward_dir", .off = offsetof(ppo_opts, reward_dir),
      .flags = ST, .metavar = "DIR", .help = "reward model (gptkit rm)" },
    OPT_STR_(ppo_opts, "--prompts", "prompts", prompts, NULL, ST, "FILE", "{\"prompt\": string | message list} per line"),
    OPT_STR_(ppo_opts, "--resume", "resume_dir", resume_dir, NULL, 0, "OUT",
             "continue a run exactly (policy, value model, optimizers, beta, prompt order, RNG)"),
    OPT_TOKENIZER(ppo_opts),
    OPT_STR_(ppo_opts, "--grammar", "grammar", grammar, NULL, ST, "FILE",
             "constrain the rollouts to a GBNF grammar (docs/constrain.md; e.g. a JSON or answer format)"),
    OPT_SECTION("rollouts:"),
    PPO_L("--iters", "--steps", "iters", NULL, iters, 100, 0, "N", "PPO iterations"),
    PPO_L("--batch", "-b", "batch_prompts", "prompts", batch_prompts, 8, 1, "P", "prompts per iteration"),
    PPO_L("--samples", NULL, "samples", NULL, samples, 4, 1, "S", "responses per prompt"),
    PPO_L("--max-new", NULL, "max_new", NULL, max_new, 32, 1, "N", "response token limit"),
    PPO_F("--temperature", NULL, "temperature", NULL, temperature, 1.0, 0, BIG, "T", "rollout sampling temperature"),
    PPO_F("--missing-end-penalty", NULL, "missing_end_penalty", NULL, missing_end_penalty, 1.0, -BIG, BIG, "X",
          "subtracted from the score of a response cut at --max-new"),
    OPT_SECTION("KL:"),
    PPO_F("--beta", "--kl-coef", "beta", NULL, beta, 0.05, 0, BIG, "B", "KL coefficient"),
    PPO_F("--kl-target", NULL, "kl_target", NULL, kl_target, 0, 0, BIG, "K", "adapt beta toward K nats per response (0 = fixed beta)"),
    PPO_L("--kl-horizon", NULL, "kl_horizon", NULL, kl_horizon, 10000, 1, "H", "adaptive controller horizon in rollouts"),
    OPT_SECTION("update:"),
    PPO_L("--ppo-epochs", NULL, "ppo_epochs", "epochs", ppo_epochs, 4, 1, "E", "passes over each rollout batch"),
    PPO_L("--minibatch", NULL, "minibatch", NULL, minibatch, 8, 1, "M", "rollouts per minibatch"),
    PPO_F("--lr", NULL, "lr", NULL, lr, 1e-5, 0, BIG, "LR", "policy AdamW learning rate"),
    PPO_F("--vf-lr", NULL, "vf_lr", NULL, vf_lr, 1e-5, 0, BIG, "LR", "value model AdamW learning rate"),
    PPO_L("--warmup", NULL, "warmup", NULL, warmup, 0, 0, "N", "learning-rate warmup iterations"),
    PPO_F("--clip", NULL, "clip_eps", NULL, clip_eps, 0.2, 0, BIG, "E", "policy ratio clip"),
    PPO_F("--vf-clip", NULL, "vf_clip", NULL, vf_clip, 0.2, 0, BIG, "C", "value clip"),
    PPO_F("--gamma", NULL, "gamma", NULL, gamma, 1.0, 0, 1, "G", "GAE discount"),
    PPO_F("--lambda", NULL, "lambda", NULL, lambda, 0.95, 0, 1, "L", "GAE lambda"),
    OPT_ADAMW(ppo_opts, 0.0),
    OPT_SEED(ppo_opts),
    OPT_LORA(ppo_opts, PI),
    OPT_SECTION("output:"),
    OPT_STR_(ppo_opts, "--out", "out", out, "out/ppo", ST, "OUT", "policy checkpoint; OUT/value holds the value model"),
    PPO_L("--sample-every", NULL, "sample_every", NULL, sample_every, 5, 0, "N", "print a sample response every N iterations (0 = off)"),
    OPT_OUTPUT(ppo_opts, 0),
};
#undef PPO_F
#undef PPO_L
TABLE(train_opts_ppo, "ppo", ppo_opts, PPO);

/* ---------------------------------------------------------------- dpo */

static const train_opt DPO[] = {
    OPT_SECTION("data and model:"),
    { .type = TRAIN_OPT_STR, .flag = "--policy", .alias = "--init", .key = "policy_dir", .off = offsetof(dpo_opts, policy_dir),
      .flags = ST, .metavar = "DIR", .help = "SFT checkpoint (start and reference)" },
    OPT_STR_(dpo_opts, "--data", "data", data, NULL, ST, "FILE", "preference JSONL (as gptkit rm)"),
    OPT_STR_(dpo_opts, "--val", "val", val, NULL, ST, "FILE", "held-out preferences: implicit-reward accuracy at the end"),
    OPT_RESUME(dpo_opts, "OUT"),
    OPT_TOKENIZER(dpo_opts),
    OPT_SECTION("optimisation:"),
    OPT_FLOAT(dpo_opts, "--beta", "beta", beta, 0.1, 0, BIG, ST | PI, "B", "DPO beta"),
    OPT_NUM_(dpo_opts, TRAIN_OPT_LONG, "--batch", "-b", "batch", NULL, batch, 8, 1, BIG, ST | PI, "N", "preference lines per step"),
    OPT_LONG(dpo_opts, "--epochs", "epochs", epochs, 1, 0, ST | PI, "N", "passes over the data"),
    OPT_LONG(dpo_opts, "--steps", "steps", steps, 0, 0, ST | PI, "K", "optimizer steps (0 = --epochs)"),
    OPT_OPTIM(dpo_opts, 1e-5, 10, "linear", 0.1, 0.0),
    OPT_LORA(dpo_opts, PI),
    OPT_OUTPUT_BLOCK(dpo_opts, "out/dpo", "OUT", "checkpoint directory (created)", 0, 0),
};
TABLE(train_opts_dpo, "dpo", dpo_opts, DPO);

/* ---------------------------------------------------------------- grpo */

#define GR_F(fl, al, k, pk, f, d, lo, hi, mv, h) OPT_NUM_(grpo_opts, TRAIN_OPT_FLOAT, fl, al, k, pk, f, d, lo, hi, ST | PI, mv, h)
#define GR_L(fl, al, k, pk, f, d, lo, mv, h) OPT_NUM_(grpo_opts, TRAIN_OPT_LONG, fl, al, k, pk, f, d, lo, BIG, ST | PI, mv, h)
static const train_opt GRPO[] = {
    OPT_SECTION("data and model:"),
    OPT_STR_(grpo_opts, "--policy", "policy_dir", policy_dir, NULL, ST, "DIR", "SFT checkpoint: the start and the frozen reference"),
    OPT_STR_(grpo_opts, "--prompts", "prompts", prompts, NULL, ST, "FILE",
             "{\"prompt\": P, \"answer\"?: A, \"check\"?: C} per line; a demo prompt needs no answer"),
    OPT_STR_(grpo_opts, "--val", "val", val, NULL, ST, "FILE", "held-out tasks (same shape): greedy accuracy before and after"),
    GR_L("--val-n", NULL, "val_n", NULL, val_n, 0, 0, "N", "held-out tasks used (0 = all)"),
    OPT_STR_(grpo_opts, "--resume", "resume_dir", resume_dir, NULL, 0, "OUT", "continue a run exactly (policy, optimizer, prompt order, RNG)"),
    OPT_TOKENIZER(grpo_opts),
    OPT_SECTION("rollouts and rewards:"),
    GR_L("--iters", "--steps", "iters", NULL, iters, 100, 0, "N", "iterations (rollouts + update)"),
    GR_L("--batch", "-b", "batch_prompts", "prompts", batch_prompts, 8, 1, "P", "prompts per iteration"),
    GR_L("--group", "-G", "group", NULL, group, 8, 1, "G", "responses per prompt (the group)"),
    GR_L("--max-new", NULL, "max_new", NULL, max_new, 32, 1, "N", "response token limit"),
    GR_F("--temperature", NULL, "temperature", NULL, temperature, 1.0, 0, BIG, "T", "rollout sampling temperature"),
    GR_F("--correct-reward", NULL, "correct_reward", NULL, correct_reward, 1.0, -BIG, BIG, "R", "reward of a correct answer"),
    GR_F("--format-reward", NULL, "format_reward", NULL, format_reward, 0.0, -BIG, BIG, "R",
         "reward of a reply that ends and keeps the prompt's format in one sentence (0 = off)"),
    OPT_SECTION("objective:"),
    GR_F("--beta", "--kl-coef", "beta", NULL, beta, 0.04, 0, BIG, "B", "KL coefficient (k3 estimator, in the loss)"),
    GR_F("--clip", NULL, "clip_eps", NULL, clip_eps, 0.2, 0, BIG, "E", "ratio clip"),
    GR_F("--adv-eps", NULL, "adv_eps", NULL, adv_eps, 1e-4, 0, BIG, "E", "advantage = (r - mean) / (std + E)"),
    { .type = TRAIN_OPT_BOOL, .flag = "--token-norm", .neg = "--seq-norm", .key = "token_norm", .pipe = "token_norm",
      .off = offsetof(grpo_opts, token_norm), .flags = ST | PI,
      .help = "average the loss over all tokens (DAPO) instead of per response, then over responses (the paper; default)" },
    { .type = TRAIN_OPT_BOOL, .flag = "--skip-no-signal", .key = "skip_no_signal", .off = offsetof(grpo_opts, skip_no_signal),
      .flags = ST | PI, .help = "leave groups whose rewards are all equal (advantage 0) out of the update (DAPO's filter): "
                                "no optimizer step of the KL term alone" },
    GR_L("--grpo-epochs", "--mu", "epochs", NULL, epochs, 1, 1, "E", "passes over each rollout batch"),
    GR_L("--minibatch", NULL, "minibatch", NULL, minibatch, 16, 1, "M", "responses per minibatch (one optimizer step)"),
    GR_F("--lr", NULL, "lr", NULL, lr, 1e-5, 0, BIG, "LR", "AdamW learning rate"),
    GR_L("--warmup", NULL, "warmup", NULL, warmup, 0, 0, "N", "learning-rate warmup iterations"),
    OPT_ADAMW(grpo_opts, 0.0),
    OPT_SEED(grpo_opts),
    OPT_LORA(grpo_opts, PI),
    OPT_SECTION("output:"),
    OPT_STR_(grpo_opts, "--out", "out", out, "out/grpo", ST, "OUT", "policy checkpoint directory (created)"),
    GR_L("--sample-every", NULL, "sample_every", NULL, sample_every, 5, 0, "N", "print a sample response every N iterations (0 = off)"),
    OPT_VAL_EVERY(grpo_opts, 0),
    OPT_OUTPUT(grpo_opts, 0),
};
#undef GR_F
#undef GR_L
TABLE(train_opts_grpo, "grpo", grpo_opts, GRPO);

/* ---------------------------------------------------------------- generic code over a table */

#define FIELD(o, d, type) ((type *)((char *)(o) + (d)->off))
#define CFIELD(o, d, type) ((const type *)((const char *)(o) + (d)->off))

/* The field as a double (numbers, bools, precision); 0 for the rest. */
static double get_num(const train_opt *d, const void *o) {
    switch (d->type) {
    case TRAIN_OPT_INT: case TRAIN_OPT_BOOL: case TRAIN_OPT_PRECISION: return *CFIELD(o, d, int);
    case TRAIN_OPT_LONG: return (double)*CFIELD(o, d, long);
    case TRAIN_OPT_FLOAT: return *CFIELD(o, d, float);
    case TRAIN_OPT_U64: return (double)*CFIELD(o, d, uint64_t);
    default: return 0;
    }
}
/* Stores a number, with the C conversion the hand-written code used ((float)x, (long)x, ...). */
static void put_num(const train_opt *d, void *o, double x) {
    switch (d->type) {
    case TRAIN_OPT_INT: case TRAIN_OPT_BOOL: case TRAIN_OPT_PRECISION: *FIELD(o, d, int) = (int)x; break;
    case TRAIN_OPT_LONG: *FIELD(o, d, long) = (long)x; break;
    case TRAIN_OPT_FLOAT: *FIELD(o, d, float) = (float)x; break;
    case TRAIN_OPT_U64: *FIELD(o, d, uint64_t) = (uint64_t)x; break;
    default: break;
    }
}
static int ranged(const train_opt *d) {
    return d->type == TRAIN_OPT_INT || d->type == TRAIN_OPT_LONG || d->type == TRAIN_OPT_FLOAT;
}

void train_opts_default(const train_opt_table *t, void *o) {
    memset(o, 0, t->size);
    for (size_t i = 0; i < t->n; i++) {
        const train_opt *d = &t->opts[i];
        if (d->type == TRAIN_OPT_STR) *FIELD(o, d, const char *) = d->def_str;
        else if (d->type == TRAIN_OPT_SHAPE) { if (d->def_str) lr_shape_parse(d->def_str, FIELD(o, d, lr_shape)); }
        else if (d->type == TRAIN_OPT_U64) *FIELD(o, d, uint64_t) = (uint64_t)d->def;
        else if (d->type != TRAIN_OPT_SECTION) put_num(d, o, d->def);
    }
}

const train_opt *train_opt_by_flag(const train_opt_table *t, const char *flag, int *value) {
    for (size_t i = 0; i < t->n; i++) {
        const train_opt *d = &t->opts[i];
        if (d->type == TRAIN_OPT_SECTION) continue;
        if (!strcmp(d->flag, flag) || (d->alias && !strcmp(d->alias, flag))) { if (value) *value = 1; return d; }
        if (d->neg && !strcmp(d->neg, flag)) { if (value) *value = 0; return d; }
    }
    return NULL;
}

const train_opt *train_opt_by_key(const train_opt_table *t, const char *key) {
    for (size_t i = 0; i < t->n; i++)
        if (t->opts[i].type != TRAIN_OPT_SECTION && !strcmp(t->opts[i].key, key)) return &t->opts[i];
    return NULL;
}

void train_opt_pipe_key(const train_opt_table *t, const train_opt *d, char *buf, size_t cap) {
    const char *k = d->pipe ? d->pipe : d->key;
    if (strchr(k, '.')) snprintf(buf, cap, "%s", k);
    else snprintf(buf, cap, "%s.%s", t->stage, k);
}

const train_opt *train_opt_by_pipe_key(const train_opt_table *t, const char *key) {
    char buf[128];
    for (size_t i = 0; i < t->n; i++) {
        if (!(t->opts[i].flags & TRAIN_OPT_PIPE)) continue;
        train_opt_pipe_key(t, &t->opts[i], buf, sizeof buf);
        if (!strcmp(buf, key)) return &t->opts[i];
    }
    return NULL;
}

/* "an integer >= 1", "a number in [0, 1]" */
static void describe_range(const train_opt *d, char *buf, size_t cap) {
    const char *what = d->type == TRAIN_OPT_FLOAT ? "a number" : "an integer";
    if (d->max >= BIG && d->min <= -BIG) snprintf(buf, cap, "%s", what);
    else if (d->max >= BIG) snprintf(buf, cap, "%s >= %g", what, d->min);
    else snprintf(buf, cap, "%s in [%g, %g]", what, d->min, d->max);
}

int train_opt_set(const train_opt *d, void *o, const char *value, gk_err *err) {
    switch (d->type) {
    case TRAIN_OPT_STR: *FIELD(o, d, const char *) = value; return 0;
    case TRAIN_OPT_SHAPE:
        if (lr_shape_parse(value, FIELD(o, d, lr_shape))) return gk_errf(err, "expected constant, cosine or linear, got '%s'", value);
        return 0;
    case TRAIN_OPT_PRECISION:
        if (!strcmp(value, "fp32") || !strcmp(value, "bf16")) { *FIELD(o, d, int) = !strcmp(value, "bf16"); return 0; }
        return gk_errf(err, "expected fp32 or bf16, got '%s'", value);
    case TRAIN_OPT_BOOL:
        if (!strcmp(value, "1") || !strcmp(value, "true")) { *FIELD(o, d, int) = 1; return 0; }
        if (!strcmp(value, "0") || !strcmp(value, "false")) { *FIELD(o, d, int) = 0; return 0; }
        return gk_errf(err, "expected 0 or 1, got '%s'", value);
    case TRAIN_OPT_U64: {
        /* as the hand-written parser did: a long, cast (so -1 is the largest seed) */
        long x;
        if (gk_parse_long(value, &x)) return gk_errf(err, "expected an integer, got '%s'", value);
        *FIELD(o, d, uint64_t) = (uint64_t)x;
        return 0;
    }
    case TRAIN_OPT_INT: case TRAIN_OPT_LONG: case TRAIN_OPT_FLOAT: {
        double x; long l = 0;
        int bad = d->type == TRAIN_OPT_FLOAT ? gk_parse_double(value, &x) : gk_parse_long(value, &l);
        if (d->type != TRAIN_OPT_FLOAT) x = (double)l;
        char want[96];
        describe_range(d, want, sizeof want);
        if (bad || !(x >= d->min && x <= d->max)) return gk_errf(err, "expected %s, got '%s'", want, value);
        if (d->type == TRAIN_OPT_LONG) *FIELD(o, d, long) = l;
        else put_num(d, o, x);
        return 0;
    }
    default: return gk_errf(err, "not an option");
    }
}

void train_opt_format(const train_opt *d, const void *o, char *buf, size_t cap) {
    switch (d->type) {
    case TRAIN_OPT_STR: { const char *s = *CFIELD(o, d, char *); snprintf(buf, cap, "%s", s ? s : ""); break; }
    case TRAIN_OPT_SHAPE: snprintf(buf, cap, "%s", lr_shape_name(*CFIELD(o, d, lr_shape))); break;
    case TRAIN_OPT_PRECISION: snprintf(buf, cap, "%s", *CFIELD(o, d, int) ? "bf16" : "fp32"); break;
    case TRAIN_OPT_U64: snprintf(buf, cap, "%llu", (unsigned long long)*CFIELD(o, d, uint64_t)); break;
    case TRAIN_OPT_LONG: snprintf(buf, cap, "%ld", *CFIELD(o, d, long)); break;
    case TRAIN_OPT_SECTION: snprintf(buf, cap, "%s", ""); break;
    default: snprintf(buf, cap, "%g", get_num(d, o)); break;
    }
}

void train_opt_apply_clears(const train_opt_table *t, const train_opt *d, void *o) {
    const train_opt *c = d->clears ? train_opt_by_key(t, d->clears) : NULL;
    if (!c) return;
    if (c->type == TRAIN_OPT_STR) *FIELD(o, c, const char *) = NULL;
    else put_num(c, o, 0);
}

int train_opts_check(const train_opt_table *t, const void *o, gk_err *err) {
    for (size_t i = 0; i < t->n; i++) {
        const train_opt *d = &t->opts[i];
        if (!ranged(d)) continue;
        double x = get_num(d, o);
        if (x >= d->min && x <= d->max) continue;
        char want[96], got[64];
        describe_range(d, want, sizeof want);
        train_opt_format(d, o, got, sizeof got);
        return gk_errf(err, "%s: expected %s, got %s", d->flag, want, got);
    }
    return 0;
}

char *train_opts_to_json(const train_opt_table *t, const void *o) {
    cJSON *j = cJSON_CreateObject();
    char buf[64];
    for (size_t i = 0; i < t->n; i++) {
        const train_opt *d = &t->opts[i];
        if (!(d->flags & TRAIN_OPT_STORED)) continue;
        if (d->type == TRAIN_OPT_STR) {
            const char *s = *CFIELD(o, d, char *);
            if (s) cJSON_AddStringToObject(j, d->key, s);
        } else if (d->type == TRAIN_OPT_SHAPE || d->type == TRAIN_OPT_U64) {
            train_opt_format(d, o, buf, sizeof buf);
            cJSON_AddStringToObject(j, d->key, buf);
        } else {
            cJSON_AddNumberToObject(j, d->key, get_num(d, o));
        }
    }
    char *s = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    char *r = gk_strdup(s);
    cJSON_free(s);
    return r;
}

/* Strings read back from stored options live as long as the process (the option structs hold plain pointers,
 * as they do to argv): they are kept reachable here, an append-only pool, so nothing is lost or reported leaked. */
static const char *keep_str(const char *s);
static char **stored_strs;
static size_t n_stored_strs;
const char *train_opt_keep_str(const char *s) { return keep_str(s); }
static const char *keep_str(const char *s) {
    stored_strs = gk_realloc(stored_strs, (n_stored_strs + 1) * sizeof *stored_strs);
    return stored_strs[n_stored_strs++] = gk_strdup(s);
}

int train_opts_from_json(const train_opt_table *t, void *o, const char *json, gk_err *err) {
    cJSON *j = cJSON_Parse(json);
    if (!j) return gk_errf(err, "stored %s options are not valid JSON", t->stage);
    for (size_t i = 0; i < t->n; i++) {
        const train_opt *d = &t->opts[i];
        if (!(d->flags & TRAIN_OPT_STORED)) continue;
        const cJSON *x = cJSON_GetObjectItemCaseSensitive(j, d->key);
        if (!x) continue;
        if (d->type == TRAIN_OPT_STR && cJSON_IsString(x)) *FIELD(o, d, const char *) = keep_str(x->valuestring);
        else if (d->type == TRAIN_OPT_SHAPE && cJSON_IsString(x)) lr_shape_parse(x->valuestring, FIELD(o, d, lr_shape));
        else if (d->type == TRAIN_OPT_U64 && cJSON_IsString(x)) *FIELD(o, d, uint64_t) = strtoull(x->valuestring, NULL, 10);
        else if (cJSON_IsNumber(x) && d->type != TRAIN_OPT_STR && d->type != TRAIN_OPT_SHAPE && d->type != TRAIN_OPT_U64)
            put_num(d, o, x->valuedouble);
    }
    cJSON_Delete(j);
    return 0;
}

/* ---------------------------------------------------------------- the stages' named entry points */

void  pretrain_opts_default(pretrain_opts *o) { train_opts_default(&train_opts_pretrain, o); }
char *pretrain_opts_to_json(const pretrain_opts *o) { return train_opts_to_json(&train_opts_pretrain, o); }
int   pretrain_opts_from_json(pretrain_opts *o, const char *json, gk_err *err) { return train_opts_from_json(&train_opts_pretrain, o, json, err); }
void  sft_opts_default(sft_opts *o) { train_opts_default(&train_opts_sft, o); }
char *sft_opts_to_json(const sft_opts *o) { return train_opts_to_json(&train_opts_sft, o); }
int   sft_opts_from_json(sft_opts *o, const char *json, gk_err *err) { return train_opts_from_json(&train_opts_sft, o, json, err); }
void  rm_opts_default(rm_opts *o) { train_opts_default(&train_opts_rm, o); }
char *rm_opts_to_json(const rm_opts *o) { return train_opts_to_json(&train_opts_rm, o); }
int   rm_opts_from_json(rm_opts *o, const char *json, gk_err *err) { return train_opts_from_json(&train_opts_rm, o, json, err); }
void  ppo_opts_default(ppo_opts *o) { train_opts_default(&train_opts_ppo, o); }
char *ppo_opts_to_json(const ppo_opts *o) { return train_opts_to_json(&train_opts_ppo, o); }
int   ppo_opts_from_json(ppo_opts *o, const char *json, gk_err *err) { return train_opts_from_json(&train_opts_ppo, o, json, err); }
void  dpo_opts_default(dpo_opts *o) { train_opts_default(&train_opts_dpo, o); }
char *dpo_opts_to_json(const dpo_opts *o) { return train_opts_to_json(&train_opts_dpo, o); }
int   dpo_opts_from_json(dpo_opts *o, const char *json, gk_err *err) { return train_opts_from_json(&train_opts_dpo, o, json, err); }

void  grpo_opts_default(grpo_opts *o) { train_opts_default(&train_opts_grpo, o); }
char *grpo_opts_to_json(const grpo_opts *o) { return train_opts_to_json(&train_opts_grpo, o); }
int   grpo_opts_from_json(grpo_opts *o, const char *json, gk_err *err) { return train_opts_from_json(&train_opts_grpo, o, json, err); }

void compare_opts_default(compare_opts *o) {
    memset(o, 0, sizeof *o);
    o->samples = 1; o->max_new = 64; o->temperature = 0.7f; o->seed = 1337;
}
