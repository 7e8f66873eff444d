/* cmd_train.c: the training commands — gptkit pretrain, sft, rm, ppo, dpo, grpo. Each is its stage's option table
 * (flags, --help, --resume: cli_train_opts) around its train_* function; only the usage head and the summary
 * line printed at the end differ. */
#include "cli/cli.h"
#include "core/core.h"
#include "train/train.h"
#include <stdio.h>

/* ---------------------------------------------------------------- pretrain */

static const char *HEAD_PRETRAIN =
"usage: gptkit pretrain (--model NAME | --init DIR | --resume OUT) --data SHARDS --out OUT [options]\n"
"\n"
"Trains a GPT-2-architecture model on token shards (llm.c .bin layout) and writes an HF-loadable\n"
"checkpoint (OUT/config.json + OUT/model.safetensors) plus a resume sidecar (OUT/train_state.safetensors).\n"
"Ctrl-C saves and exits 130; --resume OUT continues exactly (model, optimizer, data position, RNG).\n"
"\n";
static int run_pretrain(void *o, gk_err *err) {
    pretrain_result r;
    if (train_pretrain(o, &r, err)) return -1;
    return r.interrupted ? 130 : 0;
}

/* ---------------------------------------------------------------- sft */

static const char *HEAD_SFT =
"usage: gptkit sft --init CKPT --data train.jsonl --out DIR [--val val.jsonl] [options]\n"
"       gptkit sft --resume DIR [options]\n"
"\n"
"Finetunes a checkpoint on conversations, one {\"messages\":[{\"role\":\"system|user|assistant|tool\",\n"
"\"content\":\"...\"}]} per line. The loss is next-token cross-entropy on the assistant's tokens (and its\n"
"end-of-turn token) only, averaged over those tokens in each batch. The chat format is in docs/chat.md.\n"
"Writes an ordinary checkpoint (DIR/config.json + model.safetensors, recording the tokenizer) plus a\n"
"resume sidecar; Ctrl-C saves and exits 130.\n"
"\n";
static int run_sft(void *o, gk_err *err) {
    sft_result r;
    if (train_sft(o, &r, err)) return -1;
    return r.interrupted ? 130 : 0;
}

/* ---------------------------------------------------------------- rm */

static const char *HEAD_RM =
"usage: gptkit rm (--init SFT_DIR | --resume RM_DIR) --data PREFS.jsonl --out RM_DIR [options]\n"
"\n"
"Trains a reward model: the checkpoint's trunk plus a scalar head (score.weight, HF\n"
"GPT2ForSequenceClassification layout) read at the last token of each response (the <|end|> of the\n"
"assistant turn). Loss: -log sigmoid(r_chosen - r_rejected), averaged over a line's pairs, then over lines;\n"
"a K-ranking gives its K(K-1)/2 pairs with each response scored once.\n"
"\n";
static int run_rm(void *o, gk_err *err) {
    rm_result r;
    if (train_rm(o, &r, err)) return -1;
    if (!((rm_opts *)o)->json && !r.interrupted && r.val_pairs)
        printf("rm: held-out accuracy %.4f over %zu pairs (loss %.4f)\n", r.val_acc, r.val_pairs, r.val_loss);
    return r.interrupted ? 130 : 0;
}

/* ---------------------------------------------------------------- ppo */

static const char *HEAD_PPO =
"usage: gptkit ppo (--policy SFT_DIR --reward RM_DIR --prompts PROMPTS.jsonl | --resume OUT) --out OUT [options]\n"
"\n"
"PPO: rollouts from the policy (pure temperature sampling), per-token reward -beta (log pi - log pi_ref)\n"
"plus the reward model's score on the last token, GAE, whitened advantages, clipped policy and value losses.\n"
"The reference is a frozen copy of SFT_DIR; the value model is initialised from RM_DIR (OUT/value).\n"
"\n";
static int run_ppo(void *o, gk_err *err) {
    ppo_result r;
    if (train_ppo(o, &r, err)) { ppo_result_free(&r); return -1; }
    if (!((ppo_opts *)o)->json && r.iters_done > 0) {
        const ppo_step_log *a = &r.log[0], *b = &r.log[r.iters_done - 1];
        printf("ppo: mean RM score %+.4f -> %+.4f, KL to reference %.4f -> %.4f over %ld iterations\n",
               a->score, b->score, a->kl, b->kl, r.iters_done);
    }
    int rc = r.interrupted ? 130 : 0;
    ppo_result_free(&r);
    return rc;
}

/* ---------------------------------------------------------------- dpo */

static const char *HEAD_DPO =
"usage: gptkit dpo (--policy SFT_DIR | --resume OUT) --data PREFS.jsonl --out OUT [options]\n"
"\n"
"DPO: loss -log sigmoid(beta ((log pi(yc) - log ref(yc)) - (log pi(yr) - log ref(yr)))) over preference pairs\n"
"(rankings give all their pairs); the reference is the frozen --policy checkpoint. With --val, prints the\n"
"implicit-reward accuracy on held-out pairs.\n"
"\n";
static int run_dpo(void *o, gk_err *err) {
    dpo_result r;
    if (train_dpo(o, &r, err)) return -1;
    if (!((dpo_opts *)o)->json && !r.interrupted && r.val_pairs)
        printf("dpo: held-out implicit-reward accuracy %.4f over %zu pairs (loss %.4f)\n", r.val_acc, r.val_pairs, r.val_loss);
    return r.interrupted ? 130 : 0;
}

/* ---------------------------------------------------------------- grpo */

static const char *HEAD_GRPO =
"usage: gptkit grpo (--policy SFT_DIR --prompts PROMPTS.jsonl | --resume OUT) --out OUT [--val TASKS.jsonl] [options]\n"
"\n"
"GRPO (group relative policy optimisation) with verifiable rewards: G responses per prompt from the policy,\n"
"reward = --correct-reward if the answer checks (the demo's checks, or the strategies' answer extraction for an\n"
"\"answer\" field) + --format-reward if it ends and keeps the prompt's format; advantage (r - group mean) /\n"
"(group std + eps) on every token, no value model; loss -min(rho A, clip(rho) A) + beta k3 KL to the frozen\n"
"SFT_DIR, averaged per response then over responses (--token-norm: over tokens). docs/rlhf.md.\n"
"\n";
static int run_grpo(void *o, gk_err *err) {
    grpo_result r;
    if (train_grpo(o, &r, err)) { grpo_result_free(&r); return -1; }
    if (!((grpo_opts *)o)->json && r.iters_done > 0) {
        const grpo_step_log *a = &r.log[0], *b = &r.log[r.iters_done - 1];
        printf("grpo: mean reward %.4f -> %.4f, accuracy %.4f -> %.4f, KL to reference %.4f -> %.4f over %ld iterations\n",
               a->reward, b->reward, a->accuracy, b->accuracy, a->kl, b->kl, r.iters_done);
        if (r.val_n > 0)
            printf("grpo: held-out accuracy %.4f -> %.4f over %ld tasks (greedy)\n", r.val_acc0, r.val_acc, r.val_n);
    }
    int rc = r.interrupted ? 130 : 0;
    grpo_result_free(&r);
    return rc;
}

/* ---------------------------------------------------------------- shared */

typedef struct {
    const char *name;
    const train_opt_table *t;
    const char **head;
    int (*run)(void *o, gk_err *err);     /* 0, 130 when interrupted, or -1 with err */
} train_cmd;

/* parse (cli_train_opts) -> train -> exit code */
static int run_cmd(const train_cmd *c, int argc, char **argv) {
    union { pretrain_opts pt; sft_opts sft; rm_opts rm; ppo_opts ppo; dpo_opts dpo; grpo_opts grpo; } o;
    if (cli_train_opts(c->t, &o, argc, argv, *c->head)) return 1;
    gk_err err;
    int rc = c->run(&o, &err);
    if (rc < 0) { fprintf(stderr, "gptkit %s: %s\n", c->name, err.msg); return 1; }
    return rc;
}

int cmd_pretrain(int argc, char **argv) {
    return run_cmd(&(train_cmd){ "pretrain", &train_opts_pretrain, &HEAD_PRETRAIN, run_pretrain }, argc, argv);
}
int cmd_sft(int argc, char **argv) { return run_cmd(&(train_cmd){ "sft", &train_opts_sft, &HEAD_SFT, run_sft }, argc, argv); }
int cmd_rm(int argc, char **argv) { return run_cmd(&(train_cmd){ "rm", &train_opts_rm, &HEAD_RM, run_rm }, argc, argv); }
int cmd_ppo(int argc, char **argv) { return run_cmd(&(train_cmd){ "ppo", &train_opts_ppo, &HEAD_PPO, run_ppo }, argc, argv); }
int cmd_dpo(int argc, char **argv) { return run_cmd(&(train_cmd){ "dpo", &train_opts_dpo, &HEAD_DPO, run_dpo }, argc, argv); }
int cmd_grpo(int argc, char **argv) { return run_cmd(&(train_cmd){ "grpo", &train_opts_grpo, &HEAD_GRPO, run_grpo }, argc, argv); }
