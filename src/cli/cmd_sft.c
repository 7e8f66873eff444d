/* cmd_sft.c: gptkit sft — supervised finetuning on chat JSONL (loss on assistant tokens only). */
#include "cli/cli.h"
#include "core/core.h"
#include "train/train.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *USAGE =
"usage: gptkit sft --init CKPT --data train.jsonl --out DIR [--val val.jsonl] [options]\n"
"       gptkit sft --resume DIR [options]\n"
"\n"
"Finetunes a checkpoint on conversations, one {\"messages\":[{\"role\":\"system|user|assistant|tool\",\n"
"\"content\":\"...\"}]} per line. The loss is next-token cross-entropy on the assistant's tokens (and its\n"
"end-of-turn token) only, averaged over those tokens in each batch. The chat format is in docs/chat.md.\n"
"Writes an ordinary checkpoint (DIR/config.json + model.safetensors, recording the tokenizer) plus a\n"
"resume sidecar; Ctrl-C saves and exits 130.\n"
"\n"
"model and data:\n"
"  --init CKPT           checkpoint to finetune (its recorded tokenizer is used)\n"
"  --resume DIR          continue a run exactly; stored settings are reused, flags here override them\n"
"  --tokenizer PATH      override the tokenizer recorded in CKPT\n"
"  --data FILE           training conversations (JSONL)\n"
"  --val FILE            held-out conversations: loss on their assistant tokens\n"
"  --skip-bad            skip malformed lines (counted) instead of stopping at the first\n"
"  -b, --batch B         conversations per step (default 8), padded to the longest\n"
"  -t, --seq-len T       max input tokens per conversation (default: the model's context). Longer\n"
"                        conversations are cut from the right if an assistant token remains, else dropped\n"
"optimisation:\n"
"  --epochs N            passes over the data (default 3), unless --steps is given\n"
"  --steps K             optimizer steps in total\n"
"  --lr LR               peak learning rate (default 1e-4)\n"
"  --warmup N            linear warmup steps (default 10)\n"
"  --schedule S          constant | cosine | linear (default cosine)\n"
"  --final-lr-frac F     decay to LR*F (default 0.1)\n"
"  --weight-decay W      (default 0)   --grad-clip G (default 1.0)\n"
"  --beta1 B1 --beta2 B2 --eps E   AdamW (defaults 0.9, 0.95, 1e-8)\n"
"  --seed S              data order seed (default 1337)\n"
"  --precision P         fp32 (default) | bf16: matmuls in bfloat16 with fp32 accumulation and fp32\n"
"                        master weights (needs oneDNN and AVX512-BF16/AMX)\n"
"output:\n"
"  --out DIR             checkpoint directory (created)\n"
"  --val-every N         held-out loss every N steps (default: at the end)\n"
"  --save-every N        checkpoint every N steps (default: at the end and on Ctrl-C)\n"
"  --stop-at STEP        save and stop when STEP is reached (the schedule still spans all steps)\n"
"  --json                one JSON object per step on stdout\n"
"  -q, --quiet           no log lines on stderr\n";

static void parse(sft_opts *o, int argc, char **argv, int apply) {
    cli_args a;
    cli_args_init(&a, argc, argv, USAGE);
    const char *f;
    sft_opts d; sft_opts *t = apply ? o : &d;
    if (!apply) sft_opts_default(&d);
    while ((f = cli_next(&a))) {
        if (cli_is(f, "--init")) t->init_dir = cli_str(&a, f);
        else if (cli_is(f, "--resume")) t->resume_dir = cli_str(&a, f);
        else if (cli_is(f, "--tokenizer")) t->tokenizer = cli_str(&a, f);
        else if (cli_is(f, "--data")) t->data = cli_str(&a, f);
        else if (cli_is(f, "--val")) t->val = cli_str(&a, f);
        else if (cli_is(f, "--skip-bad")) t->skip_bad = 1;
        else if (cli_is(f, "-b", "--batch")) t->B = cli_long(&a, f);
        else if (cli_is(f, "-t", "--seq-len")) t->T = cli_long(&a, f);
        else if (cli_is(f, "--epochs")) { t->epochs = cli_long(&a, f); t->steps = 0; }
        else if (cli_is(f, "--steps")) t->steps = cli_long(&a, f);
        else if (cli_train_flag(&a, f, &(cli_train_flags){ &t->sched, &t->opt, &t->seed, &t->val_every, &t->save_every, &t->stop_at, &t->json, &t->bf16 })) {}
        else if (cli_is(f, "--out")) t->out = cli_str(&a, f);
        else cli_unknown(&a, f);
    }
    if (!apply) o->resume_dir = d.resume_dir;
}

int cmd_sft(int argc, char **argv) {
    sft_opts o;
    sft_opts_default(&o);
    gk_err err;
    parse(&o, argc, argv, 0);
    if (o.resume_dir) {
        const char *resume = o.resume_dir;
        char *js = train_state_opts(resume, &err);
        if (!js) { fprintf(stderr, "gptkit sft: %s\n", err.msg); return 1; }
        sft_opts_default(&o);
        if (sft_opts_from_json(&o, js, &err)) { fprintf(stderr, "gptkit sft: %s\n", err.msg); return 1; }
        free(js);
        o.out = resume;
    }
    parse(&o, argc, argv, 1);
    sft_result r;
    if (train_sft(&o, &r, &err)) { fprintf(stderr, "gptkit sft: %s\n", err.msg); return 1; }
    return r.interrupted ? 130 : 0;
}
