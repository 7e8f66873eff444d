/* cmd_pretrain.c: gptkit pretrain — next-token pretraining on token shards. */
#include "cli/cli.h"
#include "core/core.h"
#include "train/train.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *USAGE =
"usage: gptkit pretrain (--model NAME | --init DIR | --resume OUT) --data SHARDS --out OUT [options]\n"
"\n"
"Trains a GPT-2-architecture model on token shards (llm.c .bin layout) and writes an HF-loadable\n"
"checkpoint (OUT/config.json + OUT/model.safetensors) plus a resume sidecar (OUT/train_state.safetensors).\n"
"\n"
"model:\n"
"  --model NAME          random init of a named size: d6 (6L/6H/384), d12 (GPT-2 124M), d24, d36, d48, dN\n"
"  --n-layer N --n-head N --n-embd N   explicit dims (override the named size)\n"
"  --vocab-size N        vocabulary (default 50257)     --n-ctx N   context length (default 1024)\n"
"  --init DIR            continue from a checkpoint with a fresh optimizer\n"
"  --resume OUT          continue a run exactly (model, optimizer, data position, RNG); stored settings\n"
"                        are reused, flags given here override them (e.g. a larger --steps)\n"
"  --seed S              init / shuffle / sampling seed (default 1337)\n"
"data:\n"
"  --data GLOB           training shards, e.g. 'shards/train_*.bin'\n"
"  --val SHARD           validation shard (val loss every --val-every steps)\n"
"  --no-shuffle          read batches sequentially exactly as llm.c does (default: seeded shuffle)\n"
"  -b, --batch B         sequences per micro-batch (default 8)\n"
"  -t, --seq-len T       tokens per sequence (default 256)\n"
"  --total-batch N       tokens per optimizer step (gradient accumulation; default B*T)\n"
"optimisation:\n"
"  --precision P         fp32 (default) | bf16: matmuls in bfloat16 with fp32 accumulation and fp32\n"
"                        master weights (needs oneDNN and AVX512-BF16/AMX)\n"
"  --steps K             optimizer steps in total (default 1000)\n"
"  --lr LR               peak learning rate (default 6e-4)\n"
"  --warmup N            linear warmup steps (default 100)\n"
"  --schedule S          constant | cosine | linear decay after warmup (default cosine)\n"
"  --final-lr-frac F     decay to LR*F at the last step (default 0.1)\n"
"  --weight-decay W      decoupled, on 2-D weight matrices only (default 0.1)\n"
"  --grad-clip G         global gradient-norm clip, 0 = off (default 1.0)\n"
"  --beta1 B1 --beta2 B2 --eps E   AdamW (defaults 0.9, 0.95, 1e-8)\n"
"output:\n"
"  --out OUT             checkpoint directory (created)\n"
"  --tokenizer PATH      tokenizer to record in the checkpoint\n"
"  --val-every N --val-batches K   (defaults 250, 20)\n"
"  --sample-every N      print a sample every N steps (default off)\n"
"  --save-every N        checkpoint every N steps (default 500; always at the end and on Ctrl-C)\n"
"  --stop-at STEP        save and stop when STEP is reached (the schedule still spans --steps)\n"
"  --json                one JSON object per step on stdout instead of the progress line\n"
"  -q, --quiet           no log lines on stderr\n";

static void parse(pretrain_opts *o, int argc, char **argv, int apply) {
    cli_args a;
    cli_args_init(&a, argc, argv, USAGE);
    const char *f;
    pretrain_opts d; pretrain_opts *t = apply ? o : &d;
    if (!apply) pretrain_opts_default(&d);
    while ((f = cli_next(&a))) {
        if (cli_is(f, "--model")) { t->model_name = cli_str(&a, f); t->init_dir = NULL; }
        else if (cli_is(f, "--n-layer")) t->n_layer = (int)cli_long(&a, f);
        else if (cli_is(f, "--n-head")) t->n_head = (int)cli_long(&a, f);
        else if (cli_is(f, "--n-embd")) t->n_embd = (int)cli_long(&a, f);
        else if (cli_is(f, "--vocab-size")) t->vocab_size = (int)cli_long(&a, f);
        else if (cli_is(f, "--n-ctx")) t->n_ctx = (int)cli_long(&a, f);
        else if (cli_is(f, "--init")) t->init_dir = cli_str(&a, f);
        else if (cli_is(f, "--resume")) t->resume_dir = cli_str(&a, f);
        else if (cli_train_flag(&a, f, &(cli_train_flags){ &t->sched, &t->opt, &t->seed, &t->val_every, &t->save_every, &t->stop_at, &t->json, &t->bf16 })) {}
        else if (cli_is(f, "--data")) t->data = cli_str(&a, f);
        else if (cli_is(f, "--val")) t->val = cli_str(&a, f);
        else if (cli_is(f, "--no-shuffle")) t->shuffle = 0;
        else if (cli_is(f, "--shuffle")) t->shuffle = 1;
        else if (cli_is(f, "-b", "--batch")) t->B = cli_long(&a, f);
        else if (cli_is(f, "-t", "--seq-len")) t->T = cli_long(&a, f);
        else if (cli_is(f, "--total-batch")) t->total_batch = cli_long(&a, f);
        else if (cli_is(f, "--steps")) t->steps = cli_long(&a, f);
        else if (cli_is(f, "--out")) t->out = cli_str(&a, f);
        else if (cli_is(f, "--tokenizer")) t->tokenizer = cli_str(&a, f);
        else if (cli_is(f, "--val-batches")) t->val_batches = cli_long(&a, f);
        else if (cli_is(f, "--sample-every")) t->sample_every = cli_long(&a, f);
        else cli_unknown(&a, f);
    }
    if (!apply) o->resume_dir = d.resume_dir;
}

int cmd_pretrain(int argc, char **argv) {
    pretrain_opts o;
    pretrain_opts_default(&o);
    gk_err err;
    /* pass 1 finds --resume (and validates the flags); with it, stored settings become the defaults */
    parse(&o, argc, argv, 0);
    if (o.resume_dir) {
        const char *resume = o.resume_dir;
        char *js = train_state_opts(resume, &err);
        if (!js) { fprintf(stderr, "gptkit pretrain: %s\n", err.msg); return 1; }
        pretrain_opts_default(&o);
        if (pretrain_opts_from_json(&o, js, &err)) { fprintf(stderr, "gptkit pretrain: %s\n", err.msg); return 1; }
        free(js);
        o.init_dir = NULL;
        o.out = resume;
    }
    parse(&o, argc, argv, 1);
    if (o.resume_dir) o.init_dir = NULL;
    pretrain_result r;
    int rc = train_pretrain(&o, &r, &err);
    if (rc) { fprintf(stderr, "gptkit pretrain: %s\n", err.msg); return 1; }
    return r.interrupted ? 130 : 0;
}
