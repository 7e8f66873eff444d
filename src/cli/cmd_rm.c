/* cmd_rm.c: gptkit rm — train a reward model on preference pairs / rankings. */
#include "cli/cli.h"
#include "core/core.h"
#include "train/train.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *USAGE =
"usage: gptkit rm (--init SFT_DIR | --resume RM_DIR) --data PREFS.jsonl --out RM_DIR [options]\n"
"\n"
"Trains a reward model: the checkpoint's trunk plus a scalar head (score.weight, HF\n"
"GPT2ForSequenceClassification layout) read at the last token of each response (the <|end|> of the\n"
"assistant turn). Loss: -log sigmoid(r_chosen - r_rejected), averaged over a line's pairs, then over lines;\n"
"a K-ranking gives its K(K-1)/2 pairs with each response scored once.\n"
"\n"
"data (JSONL; prompt is a string or a message list):\n"
"  --data FILE           {\"prompt\",\"chosen\",\"rejected\"} or {\"prompt\",\"ranked\":[best..worst]}\n"
"  --val FILE            held-out preferences: accuracy at the end (and every --val-every steps)\n"
"  --normalize FILE      after training, shift rewards so FILE's demonstrations ({\"messages\"} or\n"
"                        {\"prompt\",\"response\"}) score mean 0 (folded into ln_f.bias; see docs/rlhf.md)\n"
"model:\n"
"  --init DIR            starting checkpoint (SFT); its head is created if absent\n"
"  --head-init-std S     initial score head N(0, S) (default 0: zeros)\n"
"  --resume RM_DIR       continue a run exactly; stored settings are reused, flags given override them\n"
"  --tokenizer PATH      override the checkpoint's recorded tokenizer\n"
"optimisation:\n"
"  -b, --batch N         preference lines per step (default 8)\n"
"  --epochs N            passes over the data (default 1)     --steps K   exact step count instead\n"
"  --lr LR               peak learning rate (default 1e-4)    --warmup N  (default 10)\n"
"  --schedule S          constant | cosine | linear (default linear)  --final-lr-frac F (default 0.1)\n"
"  --weight-decay W (default 0)   --grad-clip G (default 1)   --seed S (default 1337)\n"
"  --precision P         fp32 (default) | bf16: matmuls in bfloat16 with fp32 accumulation and fp32\n"
"                        master weights (needs oneDNN and AVX512-BF16/AMX)\n"
"output:\n"
"  --out DIR             reward model checkpoint (+ reward.json, metrics.jsonl, resume state)\n"
"  --val-every N  --save-every N  --stop-at STEP  --json  -q\n";

static void parse(rm_opts *o, int argc, char **argv, int apply) {
    cli_args a;
    cli_args_init(&a, argc, argv, USAGE);
    const char *f;
    rm_opts d; rm_opts *t = apply ? o : &d;
    if (!apply) rm_opts_default(&d);
    while ((f = cli_next(&a))) {
        if (cli_is(f, "--init")) t->init_dir = cli_str(&a, f);
        else if (cli_is(f, "--resume")) t->resume_dir = cli_str(&a, f);
        else if (cli_is(f, "--data")) t->data = cli_str(&a, f);
        else if (cli_is(f, "--val")) t->val = cli_str(&a, f);
        else if (cli_is(f, "--normalize")) t->normalize = cli_str(&a, f);
        else if (cli_is(f, "--tokenizer")) t->tokenizer = cli_str(&a, f);
        else if (cli_is(f, "--out")) t->out = cli_str(&a, f);
        else if (cli_is(f, "--head-init-std")) t->head_init_std = (float)cli_double(&a, f);
        else if (cli_is(f, "-b", "--batch")) t->batch = cli_long(&a, f);
        else if (cli_is(f, "--epochs")) t->epochs = cli_long(&a, f);
        else if (cli_is(f, "--steps")) t->steps = cli_long(&a, f);
        else if (cli_train_flag(&a, f, &(cli_train_flags){ &t->sched, &t->opt, &t->seed, &t->val_every, &t->save_every, &t->stop_at, &t->json, &t->bf16 })) {}
        else cli_unknown(&a, f);
    }
    if (!apply) o->resume_dir = d.resume_dir;
}

int cmd_rm(int argc, char **argv) {
    rm_opts o;
    rm_opts_default(&o);
    gk_err err;
    parse(&o, argc, argv, 0);
    if (o.resume_dir) {
        const char *resume = o.resume_dir;
        char *js = train_state_opts(resume, &err);
        if (!js) { fprintf(stderr, "gptkit rm: %s\n", err.msg); return 1; }
        rm_opts_default(&o);
        if (rm_opts_from_json(&o, js, &err)) { fprintf(stderr, "gptkit rm: %s\n", err.msg); return 1; }
        free(js);
        o.out = resume;
    }
    parse(&o, argc, argv, 1);
    rm_result r;
    if (train_rm(&o, &r, &err)) { fprintf(stderr, "gptkit rm: %s\n", err.msg); return 1; }
    if (!o.json && !r.interrupted && r.val_pairs)
        printf("rm: held-out accuracy %.4f over %zu pairs (loss %.4f)\n", r.val_acc, r.val_pairs, r.val_loss);
    return r.interrupted ? 130 : 0;
}
