/* cmd_ppo.c: gptkit ppo — RLHF with PPO against a reward model, on a KL leash to the SFT model. */
#include "cli/cli.h"
#include "core/core.h"
#include "train/train.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *USAGE =
"usage: gptkit ppo (--policy SFT_DIR --reward RM_DIR --prompts PROMPTS.jsonl | --resume OUT) --out OUT [options]\n"
"\n"
"PPO: rollouts from the policy (pure temperature sampling), per-token reward -beta (log pi - log pi_ref)\n"
"plus the reward model's score on the last token, GAE, whitened advantages, clipped policy and value losses.\n"
"The reference is a frozen copy of SFT_DIR; the value model is initialised from RM_DIR (OUT/value).\n"
"\n"
"data and models:\n"
"  --policy DIR          SFT checkpoint: the start and the frozen reference\n"
"  --reward DIR          reward model (gptkit rm)\n"
"  --prompts FILE        {\"prompt\": string | message list} per line\n"
"  --resume OUT          continue a run exactly (policy, value model, optimizers, beta, prompt order, RNG)\n"
"  --tokenizer PATH      override the recorded tokenizer\n"
"rollouts:\n"
"  --iters N             PPO iterations (default 100)\n"
"  -b, --batch P         prompts per iteration (default 8)      --samples S  responses per prompt (default 4)\n"
"  --max-new N           response token limit (default 32)      --temperature T  (default 1)\n"
"  --missing-end-penalty X  subtracted from the score of a response cut at --max-new (default 1)\n"
"KL:\n"
"  --beta B              KL coefficient (default 0.05)\n"
"  --kl-target K         adapt beta toward K nats per response (default 0: fixed beta)\n"
"  --kl-horizon H        adaptive controller horizon in rollouts (default 10000)\n"
"update:\n"
"  --ppo-epochs E        passes over each rollout batch (default 4)   --minibatch M  rollouts (default 8)\n"
"  --lr LR  --vf-lr LR   policy / value AdamW learning rates (default 1e-5 / 1e-5)   --warmup N iterations\n"
"  --clip E              policy ratio clip (default 0.2)    --vf-clip C   value clip (default 0.2)\n"
"  --gamma G --lambda L  GAE (default 1, 0.95)              --grad-clip G (default 1)  --seed S\n"
"output:\n"
"  --out OUT  --sample-every N (default 5)  --save-every N  --stop-at ITER  --json  -q\n";

static void parse(ppo_opts *o, int argc, char **argv, int apply) {
    cli_args a;
    cli_args_init(&a, argc, argv, USAGE);
    const char *f;
    ppo_opts d; ppo_opts *t = apply ? o : &d;
    if (!apply) ppo_opts_default(&d);
    while ((f = cli_next(&a))) {
        if (cli_is(f, "--policy")) t->policy_dir = cli_str(&a, f);
        else if (cli_is(f, "--reward", "--rm")) t->reward_dir = cli_str(&a, f);
        else if (cli_is(f, "--prompts")) t->prompts = cli_str(&a, f);
        else if (cli_is(f, "--resume")) t->resume_dir = cli_str(&a, f);
        else if (cli_is(f, "--tokenizer")) t->tokenizer = cli_str(&a, f);
        else if (cli_is(f, "--out")) t->out = cli_str(&a, f);
        else if (cli_is(f, "--iters", "--steps")) t->iters = cli_long(&a, f);
        else if (cli_is(f, "-b", "--batch")) t->batch_prompts = cli_long(&a, f);
        else if (cli_is(f, "--samples")) t->samples = cli_long(&a, f);
        else if (cli_is(f, "--max-new")) t->max_new = cli_long(&a, f);
        else if (cli_is(f, "--temperature")) t->temperature = (float)cli_double(&a, f);
        else if (cli_is(f, "--missing-end-penalty")) t->missing_end_penalty = (float)cli_double(&a, f);
        else if (cli_is(f, "--beta", "--kl-coef")) t->beta = (float)cli_double(&a, f);
        else if (cli_is(f, "--kl-target")) t->kl_target = (float)cli_double(&a, f);
        else if (cli_is(f, "--kl-horizon")) t->kl_horizon = cli_long(&a, f);
        else if (cli_is(f, "--ppo-epochs")) t->ppo_epochs = cli_long(&a, f);
        else if (cli_is(f, "--minibatch")) t->minibatch = cli_long(&a, f);
        else if (cli_is(f, "--lr")) t->lr = (float)cli_double(&a, f);
        else if (cli_is(f, "--vf-lr")) t->vf_lr = (float)cli_double(&a, f);
        else if (cli_is(f, "--warmup")) t->warmup = cli_long(&a, f);
        else if (cli_is(f, "--clip")) t->clip_eps = (float)cli_double(&a, f);
        else if (cli_is(f, "--vf-clip")) t->vf_clip = (float)cli_double(&a, f);
        else if (cli_is(f, "--gamma")) t->gamma = (float)cli_double(&a, f);
        else if (cli_is(f, "--lambda")) t->lambda = (float)cli_double(&a, f);
        else if (cli_train_flag(&a, f, &(cli_train_flags){ NULL, &t->opt, &t->seed, NULL, &t->save_every, &t->stop_at, &t->json, NULL })) {}
        else if (cli_is(f, "--sample-every")) t->sample_every = cli_long(&a, f);
        else cli_unknown(&a, f);
    }
    if (!apply) o->resume_dir = d.resume_dir;
}

int cmd_ppo(int argc, char **argv) {
    ppo_opts o;
    ppo_opts_default(&o);
    gk_err err;
    parse(&o, argc, argv, 0);
    if (o.resume_dir) {
        const char *resume = o.resume_dir;
        char *js = train_state_opts(resume, &err);
        if (!js) { fprintf(stderr, "gptkit ppo: %s\n", err.msg); return 1; }
        ppo_opts_default(&o);
        if (ppo_opts_from_json(&o, js, &err)) { fprintf(stderr, "gptkit ppo: %s\n", err.msg); return 1; }
        free(js);
        o.out = resume;
    }
    parse(&o, argc, argv, 1);
    ppo_result r;
    int rc = train_ppo(&o, &r, &err);
    if (rc) { fprintf(stderr, "gptkit ppo: %s\n", err.msg); ppo_result_free(&r); return 1; }
    if (!o.json && r.iters_done > 0) {
        const ppo_step_log *a = &r.log[0], *b = &r.log[r.iters_done - 1];
        printf("ppo: mean RM score %+.4f -> %+.4f, KL to reference %.4f -> %.4f over %ld iterations\n",
               a->score, b->score, a->kl, b->kl, r.iters_done);
    }
    int out = r.interrupted ? 130 : 0;
    ppo_result_free(&r);
    return out;
}
