/* cmd_dpo.c: gptkit dpo — direct preference optimisation of an SFT model. */
#include "cli/cli.h"
#include "core/core.h"
#include "train/train.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *USAGE =
"usage: gptkit dpo (--policy SFT_DIR | --resume OUT) --data PREFS.jsonl --out OUT [options]\n"
"\n"
"DPO: loss -log sigmoid(beta ((log pi(yc) - log ref(yc)) - (log pi(yr) - log ref(yr)))) over preference pairs\n"
"(rankings give all their pairs); the reference is the frozen --policy checkpoint. With --val, prints the\n"
"implicit-reward accuracy on held-out pairs.\n"
"\n"
"  --policy DIR          SFT checkpoint (start and reference)\n"
"  --data FILE --val FILE   preference JSONL (as gptkit rm)\n"
"  --beta B              (default 0.1)\n"
"  -b, --batch N         lines per step (default 8)   --epochs N (default 1)   --steps K\n"
"  --lr LR (default 1e-5)  --warmup N (default 10)  --schedule S (default linear)  --final-lr-frac F\n"
"  --weight-decay W (default 0)  --grad-clip G (default 1)  --seed S\n"
"  --precision P         fp32 (default) | bf16: matmuls in bfloat16 with fp32 accumulation and fp32\n"
"                        master weights (needs oneDNN and AVX512-BF16/AMX)\n"
"  --resume OUT  --tokenizer PATH  --out OUT  --val-every N  --save-every N  --stop-at STEP  --json  -q\n";

static void parse(dpo_opts *o, int argc, char **argv, int apply) {
    cli_args a;
    cli_args_init(&a, argc, argv, USAGE);
    const char *f;
    dpo_opts d; dpo_opts *t = apply ? o : &d;
    if (!apply) dpo_opts_default(&d);
    while ((f = cli_next(&a))) {
        if (cli_is(f, "--policy", "--init")) t->policy_dir = cli_str(&a, f);
        else if (cli_is(f, "--resume")) t->resume_dir = cli_str(&a, f);
        else if (cli_is(f, "--data")) t->data = cli_str(&a, f);
        else if (cli_is(f, "--val")) t->val = cli_str(&a, f);
        else if (cli_is(f, "--tokenizer")) t->tokenizer = cli_str(&a, f);
        else if (cli_is(f, "--out")) t->out = cli_str(&a, f);
        else if (cli_is(f, "--beta")) t->beta = (float)cli_double(&a, f);
        else if (cli_is(f, "-b", "--batch")) t->batch = cli_long(&a, f);
        else if (cli_is(f, "--epochs")) t->epochs = cli_long(&a, f);
        else if (cli_is(f, "--steps")) t->steps = cli_long(&a, f);
        else if (cli_train_flag(&a, f, &(cli_train_flags){ &t->sched, &t->opt, &t->seed, &t->val_every, &t->save_every, &t->stop_at, &t->json, &t->bf16 })) {}
        else cli_unknown(&a, f);
    }
    if (!apply) o->resume_dir = d.resume_dir;
}

int cmd_dpo(int argc, char **argv) {
    dpo_opts o;
    dpo_opts_default(&o);
    gk_err err;
    parse(&o, argc, argv, 0);
    if (o.resume_dir) {
        const char *resume = o.resume_dir;
        char *js = train_state_opts(resume, &err);
        if (!js) { fprintf(stderr, "gptkit dpo: %s\n", err.msg); return 1; }
        dpo_opts_default(&o);
        if (dpo_opts_from_json(&o, js, &err)) { fprintf(stderr, "gptkit dpo: %s\n", err.msg); return 1; }
        free(js);
        o.out = resume;
    }
    parse(&o, argc, argv, 1);
    dpo_result r;
    if (train_dpo(&o, &r, &err)) { fprintf(stderr, "gptkit dpo: %s\n", err.msg); return 1; }
    if (!o.json && !r.interrupted && r.val_pairs)
        printf("dpo: held-out implicit-reward accuracy %.4f over %zu pairs (loss %.4f)\n", r.val_acc, r.val_pairs, r.val_loss);
    return r.interrupted ? 130 : 0;
}
