/* cmd_pipeline.c: gptkit pipeline — the whole chain on the built-in demo data (or a config):
 *
 *   corpus -> tokenizer -> shards -> data -> pretrain -> sft -> rm -> ppo -> dpo -> eval -> report
 *
 * Each stage writes its outputs under RUN/ and, when complete, RUN/stages/<stage>.json with what it
 * achieved. A rerun skips completed stages; an interrupted training stage resumes from its last checkpoint
 * (train_state.safetensors). The report card (report.md/json, plots/) is rebuilt at the end of every run.
 */
#include "cli/cli.h"
#include "cli/pipeline_internal.h"
#include "core/core.h"
#include "data/data.h"
#include "infer/infer.h"
#include "kern/kern.h"
#include "model/model.h"
#include "tok/tok.h"
#include "train/train.h"

#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- configuration */

typedef enum { K_LONG, K_DOUBLE, K_STR } ktype;
/* K_STR: cap = the field's size; choices = the allowed values (NULL-terminated), or NULL for any text */
typedef struct { const char *key; ktype type; size_t off; const char *help; size_t cap; const char *const *choices; } kspec;
#define L(k, f, h) { k, K_LONG, offsetof(pipe_cfg, f), h, 0, NULL }
#define D(k, f, h) { k, K_DOUBLE, offsetof(pipe_cfg, f), h, 0, NULL }
#define S(k, f, h, ch) { k, K_STR, offsetof(pipe_cfg, f), h, sizeof ((pipe_cfg *)0)->f, ch }
static const char *const PRECISIONS[] = { "fp32", "bf16", NULL };
static const kspec KEYS[] = {
    S("run_dir", run_dir, "where every stage writes (created)", NULL),
    L("seed", seed, "seed of every stage"),
    S("precision", precision, "fp32 | bf16 (matmuls of pretrain/SFT/RM/DPO; needs AMX or AVX512-BF16)", PRECISIONS),
    L("tokenizer.vocab_size", vocab_size, "BPE vocabulary incl. the 9 chat special tokens"),
    D("shards.val_fraction", val_fraction, "fraction of the corpus held out for validation"),
    L("data.sft", n_sft, "SFT conversations"), L("data.sft_val", n_sft_val, "held-out SFT conversations"),
    L("data.prefs", n_prefs, "preference lines (pairs and rankings)"), L("data.prefs_val", n_prefs_val, "held-out preference lines"),
    D("data.pref_arith", pref_arith, "share of arithmetic prompts kept in the preference data"),
    L("data.prompts", n_prompts, "RL prompts"), L("data.eval", n_eval, "evaluation tasks (held out)"),
    L("model.n_layer", n_layer, "transformer blocks"), L("model.n_head", n_head, "attention heads"),
    L("model.n_embd", n_embd, "width"), L("model.n_ctx", n_ctx, "context length"),
    L("pretrain.batch", pt_batch, "sequences per step"), L("pretrain.seq_len", pt_seq, "tokens per sequence"),
    L("pretrain.steps", pt_steps, "optimizer steps"), L("pretrain.warmup", pt_warmup, "warmup steps"),
    L("pretrain.val_every", pt_val_every, "validation interval"), D("pretrain.lr", pt_lr, "peak learning rate"),
    L("sft.batch", sft_batch, "conversations per step"), L("sft.epochs", sft_epochs, "epochs (when steps = 0)"),
    L("sft.steps", sft_steps, "optimizer steps (0 = epochs)"), D("sft.lr", sft_lr, "peak learning rate"),
    L("rm.batch", rm_batch, "preference lines per step"), L("rm.epochs", rm_epochs, "epochs"), D("rm.lr", rm_lr, "learning rate"),
    L("ppo.iters", ppo_iters, "PPO iterations"), L("ppo.prompts", ppo_prompts, "prompts per rollout batch"),
    L("ppo.samples", ppo_samples, "responses per prompt"), L("ppo.max_new", ppo_max_new, "response token limit"),
    L("ppo.epochs", ppo_epochs, "passes over each rollout batch"), L("ppo.minibatch", ppo_minibatch, "rollouts per minibatch"),
    D("ppo.lr", ppo_lr, "policy learning rate"), D("ppo.beta", ppo_beta, "initial KL coefficient"),
    D("ppo.kl_target", ppo_kl_target, "adaptive KL target (nats per response; 0 = fixed beta)"),
    L("ppo.kl_horizon", ppo_kl_horizon, "adaptive KL controller horizon (rollouts)"),
    L("dpo.batch", dpo_batch, "preference lines per step"), L("dpo.epochs", dpo_epochs, "epochs"),
    L("dpo.steps", dpo_steps, "optimizer steps (0 = epochs)"),
    D("dpo.lr", dpo_lr, "learning rate"), D("dpo.beta", dpo_beta, "DPO beta"),
    L("eval.tasks", eval_tasks, "held-out tasks per model"), L("eval.fewshot_k", fewshot_k, "examples in the base model's prompt"),
    L("eval.div_prompts", div_prompts, "prompts for the diversity measurement"),
    L("eval.div_samples", div_samples, "samples per prompt for diversity"),
    L("eval.compare_n", compare_n, "prompts for the reward-model win rates"),
    L("eval.max_new", max_new, "answer token limit"),
};
#undef L
#undef D
#undef S
#define NKEYS (sizeof KEYS / sizeof KEYS[0])

void pipe_cfg_default(pipe_cfg *c) {
    memset(c, 0, sizeof *c);
    snprintf(c->run_dir, sizeof c->run_dir, "runs/demo");
    c->seed = 1337;
    snprintf(c->precision, sizeof c->precision, "fp32");
    c->vocab_size = 2048; c->val_fraction = 0.02;
    c->n_sft = 6000; c->n_sft_val = 300; c->n_prefs = 6000; c->n_prefs_val = 300; c->n_prompts = 1000; c->n_eval = 200; c->pref_arith = 0.1;
    c->n_layer = 4; c->n_head = 4; c->n_embd = 192; c->n_ctx = 256;
    c->pt_batch = 16; c->pt_seq = 128; c->pt_steps = 600; c->pt_warmup = 30; c->pt_val_every = 100; c->pt_lr = 2e-3;
    c->sft_batch = 16; c->sft_epochs = 2; c->sft_steps = 0; c->sft_lr = 1e-3;
    c->rm_batch = 16; c->rm_epochs = 2; c->rm_lr = 5e-4;
    c->ppo_iters = 40; c->ppo_prompts = 16; c->ppo_samples = 4; c->ppo_max_new = 24; c->ppo_epochs = 2; c->ppo_minibatch = 16;
    c->ppo_lr = 3e-5; c->ppo_beta = 0.1; c->ppo_kl_target = 6.0; c->ppo_kl_horizon = 1000;
    c->dpo_batch = 16; c->dpo_epochs = 1; c->dpo_steps = 200; c->dpo_lr = 5e-5; c->dpo_beta = 0.1;
    c->eval_tasks = 200; c->fewshot_k = 3; c->div_prompts = 16; c->div_samples = 8; c->compare_n = 100; c->max_new = 24;
}

static char *trim(char *s) {
    while (*s == ' ' || *s == '\t') s++;
    char *e = s + strlen(s);
    while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r' || e[-1] == '\n')) *--e = 0;
    return s;
}

int pipe_cfg_load(pipe_cfg *c, const char *path, gk_err *err) {
    gk_lines r;
    if (gk_lines_open(&r, path, err)) return -1;
    char *line; size_t no;
    int rc = 0;
    while (rc == 0 && gk_lines_next(&r, &line, &no)) {
        char *s = trim(line);
        if (*s == '#') continue;
        char *eq = strchr(s, '=');
        if (!eq) { rc = gk_errf(err, "%s:%zu: expected 'key = value', got '%s'", path, no, s); break; }
        *eq = 0;
        char *k = trim(s), *v = trim(eq + 1);
        char *hash = strstr(v, " #");
        if (hash) { *hash = 0; v = trim(v); }
        const kspec *ks = NULL;
        for (size_t i = 0; i < NKEYS; i++) if (!strcmp(KEYS[i].key, k)) ks = &KEYS[i];
        if (!ks) { rc = gk_errf(err, "%s:%zu: unknown key '%s' (see docs/pipeline.md for the list)", path, no, k); break; }
        char *base = (char *)c + ks->off;
        if (ks->type == K_STR) {
            if (strlen(v) >= ks->cap) { rc = gk_errf(err, "%s:%zu: %s: value too long", path, no, k); break; }
            int ok = !ks->choices;
            char allowed[128] = "";
            for (const char *const *ch = ks->choices; ch && *ch; ch++) {
                ok |= !strcmp(v, *ch);
                snprintf(allowed + strlen(allowed), sizeof allowed - strlen(allowed), "%s%s", ch == ks->choices ? "" : " or ", *ch);
            }
            if (!ok) { rc = gk_errf(err, "%s:%zu: %s: expected %s, got '%s'", path, no, k, allowed, v); break; }
            strcpy(base, v);
        } else if (ks->type == K_LONG) {
            long x;
            if (gk_parse_long(v, &x) || x < 0) { rc = gk_errf(err, "%s:%zu: %s: expected a non-negative integer, got '%s'", path, no, k, v); break; }
            *(long *)base = x;
        } else {
            double x;
            if (gk_parse_double(v, &x) || x < 0) { rc = gk_errf(err, "%s:%zu: %s: expected a non-negative number, got '%s'", path, no, k, v); break; }
            *(double *)base = x;
        }
    }
    gk_lines_close(&r);
    return rc;
}

void pipe_cfg_write(const pipe_cfg *c, FILE *f) {
    for (size_t i = 0; i < NKEYS; i++) {
        const char *base = (const char *)c + KEYS[i].off;
        fprintf(f, "%-24s = ", KEYS[i].key);
        if (KEYS[i].type == K_STR) fprintf(f, "%s", base);
        else if (KEYS[i].type == K_LONG) fprintf(f, "%ld", *(const long *)base);
        else fprintf(f, "%g", *(const double *)base);
        fprintf(f, "   # %s\n", KEYS[i].help);
    }
}

/* ---------------------------------------------------------------- stage bookkeeping */

static char *run_path(const pipe_cfg *c, const char *rel) { return gk_path_join(c->run_dir, rel); }

cJSON *pipe_stage_result(const pipe_cfg *c, const char *stage) {
    char rel[256]; snprintf(rel, sizeof rel, "stages/%s.json", stage);
    char *p = run_path(c, rel);
    char *data; size_t len;
    cJSON *j = NULL;
    if (gk_read_file(p, &data, &len, NULL) == 0) { j = cJSON_Parse(data); free(data); }
    free(p);
    return j;
}

/* Records a completed stage (atomically, so a crash never leaves a half-written marker). Takes j. */
static int stage_done(const pipe_cfg *c, const char *stage, cJSON *j, double seconds, gk_err *err) {
    cJSON_AddNumberToObject(j, "seconds", seconds);
    char rel[256]; snprintf(rel, sizeof rel, "stages/%s.json", stage);
    char *p = run_path(c, rel);
    char *s = cJSON_Print(j);
    int rc = gk_write_file_atomic(p, s, strlen(s), err);
    cJSON_free(s); cJSON_Delete(j); free(p);
    return rc;
}

static int exists_in_run(const pipe_cfg *c, const char *rel) {
    char *p = run_path(c, rel);
    int e = gk_file_exists(p);
    free(p);
    return e;
}

/* ---------------------------------------------------------------- stages */

typedef struct { const pipe_cfg *c; char *p_corpus, *p_tok, *p_shards, *p_data, *p_base, *p_sft, *p_rm, *p_ppo, *p_dpo; } ctx;

static int st_corpus(ctx *x, cJSON *j, gk_err *err) {
    char *gz = demo_corpus_locate();
    if (!gz) return gk_errf(err, "cannot find the built-in corpus data/corpus/kjv.txt.gz (run from the repository, or set GK_ROOT)");
    int rc = demo_corpus_extract(gz, x->p_corpus, err);
    free(gz);
    if (rc) return -1;
    char *d; size_t n;
    if (gk_read_file(x->p_corpus, &d, &n, err)) return -1;
    free(d);
    cJSON_AddNumberToObject(j, "bytes", (double)n);
    return 0;
}

static int st_tokenizer(ctx *x, cJSON *j, gk_err *err) {
    tok_train_opts o;
    tok_train_opts_default(&o);
    o.vocab_size = (size_t)x->c->vocab_size;
    o.progress = 1;
    o.name = "gptkit-demo";
    const char *files[1] = { x->p_corpus };
    tok_tokenizer *t = tok_train_files(files, 1, &o, err);
    if (!t) return -1;
    if (gk_mkdir_p(x->p_tok, err) || tok_save(t, x->p_tok, err)) { tok_free(t); return -1; }
    /* compression on the last 5% of the corpus (bytes per token) */
    char *d; size_t n;
    if (gk_read_file(x->p_corpus, &d, &n, err)) { tok_free(t); return -1; }
    size_t off = n - n / 20;
    tok_ids ids = {0};
    tok_encode(t, d + off, n - off, 0, &ids);
    cJSON_AddNumberToObject(j, "vocab_size", (double)tok_vocab_size(t));
    cJSON_AddNumberToObject(j, "bytes_per_token", (double)(n - off) / (double)(ids.n ? ids.n : 1));
    tok_ids_free(&ids);
    free(d);
    tok_free(t);
    return 0;
}

static int st_shards(ctx *x, cJSON *j, gk_err *err) {
    char vf[32]; snprintf(vf, sizeof vf, "%g", x->c->val_fraction);
    char *argv[] = { "tokenize", "--tokenizer", x->p_tok, "--input", x->p_corpus, "--out-dir", x->p_shards,
                     "--val-fraction", vf, NULL };
    int rc = cmd_tokenize(9, argv);
    if (rc) return gk_errf(err, "tokenize failed (exit %d)", rc);
    char *tr = gk_path_join(x->p_shards, "train_*.bin"), *va = gk_path_join(x->p_shards, "val_*.bin");
    data_loader *a = data_loader_open(tr, 1, 1, 0, 0, UINT32_MAX, err);
    data_loader *b = a ? data_loader_open(va, 1, 1, 0, 0, UINT32_MAX, err) : NULL;
    if (a && b) {
        cJSON_AddNumberToObject(j, "train_tokens", (double)data_loader_total_tokens(a));
        cJSON_AddNumberToObject(j, "val_tokens", (double)data_loader_total_tokens(b));
    }
    int ok = a && b;
    data_loader_free(a); data_loader_free(b); free(tr); free(va);
    return ok ? 0 : -1;
}

static int st_data(ctx *x, cJSON *j, gk_err *err) {
    const pipe_cfg *c = x->c;
    if (gk_mkdir_p(x->p_data, err)) return -1;
    struct { const char *name; long n; uint64_t seed; int kind; } files[] = {
        { "sft_train.jsonl", c->n_sft, 1, 0 }, { "sft_val.jsonl", c->n_sft_val, 2, 0 },
        { "prefs_train.jsonl", c->n_prefs, 3, 1 }, { "prefs_val.jsonl", c->n_prefs_val, 4, 1 },
        { "prompts.jsonl", c->n_prompts, 5, 2 }, { "eval.jsonl", c->n_eval, 6, 3 },
    };
    demo_opts dop;
    demo_opts_default(&dop);
    dop.pref_arith = c->pref_arith;
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char *p = gk_path_join(x->p_data, files[i].name);
        uint64_t seed = (uint64_t)c->seed * 1000 + files[i].seed;
        long n = files[i].kind == 0 ? demo_gen_sft(p, files[i].n, seed, &dop, err)
               : files[i].kind == 1 ? demo_gen_prefs(p, files[i].n, seed, &dop, err)
               : files[i].kind == 2 ? demo_gen_prompts(p, files[i].n, seed, NULL, err)
               : demo_gen_eval(p, files[i].n, seed, NULL, err);
        free(p);
        if (n < 0) return -1;
        cJSON_AddNumberToObject(j, files[i].name, (double)n);
    }
    return 0;
}

/* precision = bf16: the training stages' matmuls in bfloat16 (PPO, eval and generation stay fp32) */
static int cfg_bf16(const pipe_cfg *c) { return !strcmp(c->precision, "bf16"); }

static int st_pretrain(ctx *x, cJSON *j, gk_err *err) {
    const pipe_cfg *c = x->c;
    pretrain_opts o;
    pretrain_opts_default(&o);
    tok_tokenizer *tk = tok_load(x->p_tok, err);   /* the vocabulary size now, bits per byte at the end */
    if (!tk) return -1;
    o.vocab_size = (int)tok_vocab_size(tk);
    o.model_name = NULL;
    o.n_layer = (int)c->n_layer; o.n_head = (int)c->n_head; o.n_embd = (int)c->n_embd; o.n_ctx = (int)c->n_ctx;
    /* recorded in every checkpoint of the run: absolute, so the models load from any directory */
    char *tok_abs = realpath(x->p_tok, NULL);
    o.tokenizer = tok_abs ? tok_abs : x->p_tok;
    char *tr = gk_path_join(x->p_shards, "train_*.bin");
    char *va = gk_path_join(x->p_shards, "val_000000.bin");
    o.data = tr; o.val = va;
    o.B = c->pt_batch; o.T = c->pt_seq; o.steps = c->pt_steps;
    o.sched.lr = (float)c->pt_lr; o.sched.warmup = c->pt_warmup; o.sched.shape = LR_COSINE; o.sched.final_frac = 0.1f;
    o.seed = (uint64_t)c->seed;
    o.bf16 = cfg_bf16(c);
    o.out = x->p_base;
    o.val_every = c->pt_val_every; o.val_batches = 10; o.save_every = 100;
    if (exists_in_run(c, "base/train_state.safetensors")) { o.resume_dir = x->p_base; gk_log("pipeline: resuming pretrain from %s\n", x->p_base); }
    pretrain_result r;
    int rc = train_pretrain(&o, &r, err);
    if (rc == 0 && r.interrupted) rc = gk_errf(err, "interrupted during pretraining (rerun to resume)");
    if (rc == 0) {
        cJSON_AddNumberToObject(j, "final_loss", r.final_loss);
        cJSON_AddNumberToObject(j, "val_loss", r.val_loss);
        cJSON_AddNumberToObject(j, "tokens", r.tokens);
        cJSON_AddNumberToObject(j, "train_seconds", r.seconds);
        cJSON_AddNumberToObject(j, "peak_rss_mb", r.peak_rss_mb);
        /* bits per byte of the val shard: val loss (nats/token) / ln 2 * tokens / bytes */
        data_shard s;
        if (data_shard_open(&s, va, err) == 0) {
            size_t bytes = 0;
            for (size_t i = 0; i < s.ntok; i++) bytes += tok_text_len(tk, (int32_t)data_shard_token(&s, i));
            if (bytes) cJSON_AddNumberToObject(j, "val_bpb", r.val_loss / log(2.0) * (double)s.ntok / (double)bytes);
            data_shard_close(&s);
        }
    }
    tok_free(tk);
    free(tr); free(va); free(tok_abs);
    return rc;
}

static int st_sft(ctx *x, cJSON *j, gk_err *err) {
    const pipe_cfg *c = x->c;
    sft_opts o;
    sft_opts_default(&o);
    o.init_dir = x->p_base;
    char *tr = gk_path_join(x->p_data, "sft_train.jsonl"), *va = gk_path_join(x->p_data, "sft_val.jsonl");
    o.data = tr; o.val = va;
    o.B = c->sft_batch; o.epochs = c->sft_epochs; o.steps = c->sft_steps;
    o.sched.lr = (float)c->sft_lr;
    o.seed = (uint64_t)c->seed;
    o.bf16 = cfg_bf16(c);
    o.out = x->p_sft;
    o.save_every = 100;
    if (exists_in_run(c, "sft/train_state.safetensors")) { o.resume_dir = x->p_sft; o.init_dir = NULL; gk_log("pipeline: resuming sft from %s\n", x->p_sft); }
    sft_result r;
    int rc = train_sft(&o, &r, err);
    if (rc == 0 && r.interrupted) rc = gk_errf(err, "interrupted during SFT (rerun to resume)");
    if (rc == 0) {
        cJSON_AddNumberToObject(j, "final_loss", r.final_loss);
        cJSON_AddNumberToObject(j, "val_loss", r.val_loss);
        cJSON_AddNumberToObject(j, "steps", (double)r.steps_done);
        cJSON_AddNumberToObject(j, "conversations", (double)r.n_train);
        cJSON_AddNumberToObject(j, "train_seconds", r.seconds);
    }
    free(tr); free(va);
    return rc;
}

static int st_rm(ctx *x, cJSON *j, gk_err *err) {
    const pipe_cfg *c = x->c;
    rm_opts o;
    rm_opts_default(&o);
    o.init_dir = x->p_sft;
    char *tr = gk_path_join(x->p_data, "prefs_train.jsonl"), *va = gk_path_join(x->p_data, "prefs_val.jsonl");
    char *nz = gk_path_join(x->p_data, "sft_val.jsonl");
    o.data = tr; o.val = va; o.normalize = nz;
    o.batch = c->rm_batch; o.epochs = c->rm_epochs; o.sched.lr = (float)c->rm_lr;
    o.seed = (uint64_t)c->seed;
    o.bf16 = cfg_bf16(c);
    o.out = x->p_rm;
    if (exists_in_run(c, "rm/train_state.safetensors")) { o.resume_dir = x->p_rm; o.init_dir = NULL; gk_log("pipeline: resuming rm from %s\n", x->p_rm); }
    rm_result r;
    int rc = train_rm(&o, &r, err);
    if (rc == 0 && r.interrupted) rc = gk_errf(err, "interrupted during reward-model training (rerun to resume)");
    if (rc == 0) {
        cJSON_AddNumberToObject(j, "final_loss", r.final_loss);
        cJSON_AddNumberToObject(j, "val_acc", r.val_acc);
        cJSON_AddNumberToObject(j, "val_loss", r.val_loss);
        cJSON_AddNumberToObject(j, "val_margin", r.val_margin);
        cJSON_AddNumberToObject(j, "pairs", (double)r.pairs);
        cJSON_AddNumberToObject(j, "val_pairs", (double)r.val_pairs);
        cJSON_AddNumberToObject(j, "offset", r.offset);
        cJSON_AddNumberToObject(j, "train_seconds", r.seconds);
    }
    free(tr); free(va); free(nz);
    return rc;
}

static int st_ppo(ctx *x, cJSON *j, gk_err *err) {
    const pipe_cfg *c = x->c;
    ppo_opts o;
    ppo_opts_default(&o);
    o.policy_dir = x->p_sft; o.reward_dir = x->p_rm;
    char *pr = gk_path_join(x->p_data, "prompts.jsonl");
    o.prompts = pr;
    o.out = x->p_ppo;
    o.iters = c->ppo_iters; o.batch_prompts = c->ppo_prompts; o.samples = c->ppo_samples; o.max_new = c->ppo_max_new;
    o.ppo_epochs = c->ppo_epochs; o.minibatch = c->ppo_minibatch;
    o.lr = (float)c->ppo_lr; o.beta = (float)c->ppo_beta; o.kl_target = (float)c->ppo_kl_target;
    if (c->ppo_kl_horizon > 0) o.kl_horizon = c->ppo_kl_horizon;
    o.seed = (uint64_t)c->seed;
    o.sample_every = 10;
    o.save_every = 10;
    if (exists_in_run(c, "ppo/train_state.safetensors")) { o.resume_dir = x->p_ppo; gk_log("pipeline: resuming ppo from %s\n", x->p_ppo); }
    ppo_result r;
    memset(&r, 0, sizeof r);
    int rc = train_ppo(&o, &r, err);
    if (rc == 0 && r.interrupted) rc = gk_errf(err, "interrupted during PPO (rerun to resume)");
    if (rc == 0 && r.iters_done > 0) {
        cJSON *sc = cJSON_AddArrayToObject(j, "score"), *kl = cJSON_AddArrayToObject(j, "kl");
        for (long i = 0; i < r.iters_done; i++) {
            cJSON_AddItemToArray(sc, cJSON_CreateNumber(r.log[i].score));
            cJSON_AddItemToArray(kl, cJSON_CreateNumber(r.log[i].kl));
        }
        cJSON_AddNumberToObject(j, "kl_target", c->ppo_kl_target);
        cJSON_AddNumberToObject(j, "train_seconds", r.seconds);
    }
    ppo_result_free(&r);
    free(pr);
    return rc;
}

static int st_dpo(ctx *x, cJSON *j, gk_err *err) {
    const pipe_cfg *c = x->c;
    dpo_opts o;
    dpo_opts_default(&o);
    o.policy_dir = x->p_sft;
    char *tr = gk_path_join(x->p_data, "prefs_train.jsonl"), *va = gk_path_join(x->p_data, "prefs_val.jsonl");
    o.data = tr; o.val = va;
    o.batch = c->dpo_batch; o.epochs = c->dpo_epochs; o.steps = c->dpo_steps; o.sched.lr = (float)c->dpo_lr; o.beta = (float)c->dpo_beta;
    o.seed = (uint64_t)c->seed;
    o.bf16 = cfg_bf16(c);
    o.out = x->p_dpo;
    if (exists_in_run(c, "dpo/train_state.safetensors")) { o.resume_dir = x->p_dpo; gk_log("pipeline: resuming dpo from %s\n", x->p_dpo); }
    dpo_result r;
    int rc = train_dpo(&o, &r, err);
    if (rc == 0 && r.interrupted) rc = gk_errf(err, "interrupted during DPO (rerun to resume)");
    if (rc == 0) {
        cJSON_AddNumberToObject(j, "final_loss", r.final_loss);
        cJSON_AddNumberToObject(j, "val_acc", r.val_acc);
        cJSON_AddNumberToObject(j, "val_margin", r.val_margin);
        cJSON_AddNumberToObject(j, "train_seconds", r.seconds);
    }
    free(tr); free(va);
    return rc;
}

/* ---------------------------------------------------------------- evaluation */

/* Answers every task with one model: greedy, up to max_new tokens. Chat models get the conversation
 * rendered with the generation prompt; the base model gets a few-shot prompt and answers up to a newline. */
typedef struct { double acc, format_rate, concise_rate, mean_len; long n; } task_stats;

/* A checkpoint ready to answer: model, its recorded tokenizer with the chat specials, an engine. */
typedef struct { gpt_model *m; tok_tokenizer *tok; chat_specials sp; engine *e; } chat_model;

static void chat_model_close(chat_model *cm) {
    engine_free(cm->e); tok_free(cm->tok); gpt_free(cm->m);
    memset(cm, 0, sizeof *cm);
}

static int chat_model_open(chat_model *cm, const char *dir, size_t max_seqs, gk_err *err) {
    memset(cm, 0, sizeof *cm);
    char *rec = NULL;
    cm->m = gpt_load(dir, &rec, err);
    if (!cm->m) return -1;
    int rc = infer_load_tokenizer(dir, rec, NULL, 1, &cm->tok, err);
    free(rec);
    if (rc == 0) rc = chat_specials_resolve(cm->tok, (size_t)cm->m->cfg.vocab_size, &cm->sp, err);
    if (rc == 0) cm->e = engine_new(cm->m, cm->tok, max_seqs, 0);
    if (rc) chat_model_close(cm);
    return rc;
}

static int eval_model(const pipe_cfg *c, chat_model *cm, int base, const demo_task *tasks, long nt,
                      task_stats *ts, cJSON *samples, gk_err *err) {
    gpt_model *m = cm->m; tok_tokenizer *tok = cm->tok; engine *e = cm->e;
    const chat_specials sp = cm->sp;
    int rc = 0;
    memset(ts, 0, sizeof *ts);
    double len_sum = 0;
    int shown_ok = 0, shown_bad = 0;   /* sample conversations: two right and two wrong answers if there are */
    for (long i = 0; rc == 0 && i < nt; i++) {
        const demo_task *t = &tasks[i];
        tok_ids ids = {0};
        if (base) {
            char *p = demo_fewshot_prompt(t, (int)c->fewshot_k, (uint64_t)c->seed + (uint64_t)i);
            tok_encode(tok, p, strlen(p), 0, &ids);
            free(p);
        } else {
            chat_conv cv = {0};
            if (t->system[0]) chat_conv_add(&cv, CHAT_SYSTEM, t->system);
            chat_conv_add(&cv, CHAT_USER, t->user);
            chat_tokens ct = {0};
            chat_render(tok, &sp, &cv, 1, &ct);
            for (size_t k = 0; k < ct.n; k++) tok_ids_push(&ids, ct.ids[k]);
            chat_tokens_free(&ct); chat_conv_free(&cv);
        }
        /* keep the prompt inside the context, leaving room for the answer */
        size_t room = (size_t)m->cfg.n_ctx - (size_t)c->max_new;
        const int32_t *pp = ids.ids; size_t pn = ids.n;
        if (pn > room) { pp += pn - room; pn = room; }
        engine_gen_opts go;
        engine_gen_opts_default(&go);
        go.max_new = (size_t)c->max_new;
        go.samp.temperature = 0;
        const char *nl[1] = { "\n" };
        if (base) { go.stop_strs = nl; go.n_stop_strs = 1; }
        engine_seq s;
        memset(&s, 0, sizeof s);
        if (engine_generate(e, pp, pn, 1, &go, &s, err)) { tok_ids_free(&ids); rc = -1; break; }
        const char *text = s.text ? s.text : "";
        while (*text == ' ') text++;
        int ok = demo_check_answer(t->check, t->answer, text) == 1;
        demo_verdict v;
        memset(&v, 0, sizeof v);
        demo_judge(t->check, t->answer, text, &v);
        ts->acc += ok; ts->format_rate += v.follows_format; ts->concise_rate += v.concise;
        len_sum += (double)s.n;
        ts->n++;
        if (samples && (ok ? shown_ok < 2 : shown_bad < 2)) {
            if (ok) shown_ok++; else shown_bad++;
            cJSON *o = cJSON_CreateObject();
            if (t->system[0]) cJSON_AddStringToObject(o, "system", t->system);
            cJSON_AddStringToObject(o, "user", t->user);
            cJSON_AddStringToObject(o, "reply", text);
            cJSON_AddStringToObject(o, "expected", t->answer);
            cJSON_AddBoolToObject(o, "correct", ok);
            cJSON_AddItemToArray(samples, o);
        }
        engine_seq_free(&s);
        tok_ids_free(&ids);
    }
    if (ts->n) { ts->acc /= ts->n; ts->format_rate /= ts->n; ts->concise_rate /= ts->n; ts->mean_len = len_sum / ts->n; }
    return rc;
}

/* Output diversity: for each of P prompts, S samples at temperature 1. distinct-n = unique n-grams / all
 * n-grams over a prompt's samples (averaged over prompts); entropy = mean over sampled tokens of -log p,
 * an unbiased estimate of the per-token entropy of the policy's sampling distribution. */
typedef struct { double distinct1, distinct2, entropy; } div_stats;

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}
static size_t count_unique(uint64_t *v, size_t n) {
    if (!n) return 0;
    qsort(v, n, sizeof *v, cmp_u64);
    size_t u = 1;
    for (size_t i = 1; i < n; i++) u += v[i] != v[i - 1];
    return u;
}

static int eval_diversity(const pipe_cfg *c, chat_model *cm, const demo_task *tasks, long nt, div_stats *ds, gk_err *err) {
    tok_tokenizer *tok = cm->tok; engine *e = cm->e;
    const chat_specials sp = cm->sp;
    int rc = 0;
    size_t S = (size_t)(c->div_samples > 0 ? c->div_samples : 1);
    memset(ds, 0, sizeof *ds);
    long np = 0; double ent_sum = 0; size_t ent_n = 0;
    engine_seq *seqs = gk_calloc(S, sizeof *seqs);
    for (long i = 0; rc == 0 && i < nt && i < c->div_prompts; i++) {
        chat_conv cv = {0};
        if (tasks[i].system[0]) chat_conv_add(&cv, CHAT_SYSTEM, tasks[i].system);
        chat_conv_add(&cv, CHAT_USER, tasks[i].user);
        chat_tokens ct = {0};
        chat_render(tok, &sp, &cv, 1, &ct);
        chat_conv_free(&cv);
        engine_gen_opts go;
        engine_gen_opts_default(&go);
        go.max_new = (size_t)c->max_new;
        go.samp.temperature = 1;
        go.samp.seed = (uint64_t)c->seed + (uint64_t)i;
        if (engine_generate(e, ct.ids, ct.n, S, &go, seqs, err)) { chat_tokens_free(&ct); rc = -1; break; }
        chat_tokens_free(&ct);
        size_t tot = 0;
        for (size_t s = 0; s < S; s++) tot += seqs[s].n;
        uint64_t *u1 = gk_malloc((tot + 1) * sizeof *u1), *u2 = gk_malloc((tot + 1) * sizeof *u2);
        size_t n1 = 0, n2 = 0;
        for (size_t s = 0; s < S; s++) {
            for (size_t k = 0; k < seqs[s].n; k++) {
                u1[n1++] = (uint64_t)(uint32_t)seqs[s].ids[k];
                if (k) u2[n2++] = ((uint64_t)(uint32_t)seqs[s].ids[k - 1] << 32) | (uint32_t)seqs[s].ids[k];
                ent_sum += -seqs[s].logprob[k]; ent_n++;
            }
            engine_seq_free(&seqs[s]);
        }
        if (n1) ds->distinct1 += (double)count_unique(u1, n1) / (double)n1;
        if (n2) ds->distinct2 += (double)count_unique(u2, n2) / (double)n2;
        free(u1); free(u2);
        np++;
    }
    free(seqs);
    if (np) { ds->distinct1 /= np; ds->distinct2 /= np; }
    ds->entropy = ent_n ? ent_sum / (double)ent_n : NAN;
    return rc;
}

static int st_eval(ctx *x, cJSON *j, gk_err *err) {
    const pipe_cfg *c = x->c;
    demo_task *tasks = NULL;
    char *ev = gk_path_join(x->p_data, "eval.jsonl");
    long nt = demo_read_eval(ev, &tasks, err);
    if (nt < 0) { free(ev); return -1; }
    if (c->eval_tasks > 0 && nt > c->eval_tasks) nt = c->eval_tasks;
    struct { const char *name; const char *dir; int base; } models[] = {
        { "base", x->p_base, 1 }, { "sft", x->p_sft, 0 }, { "ppo", x->p_ppo, 0 }, { "dpo", x->p_dpo, 0 },
    };
    cJSON *acc = cJSON_AddObjectToObject(j, "models");
    int rc = 0;
    for (size_t mi = 0; rc == 0 && mi < 4; mi++) {
        gk_log("pipeline: evaluating %s on %ld held-out tasks\n", models[mi].name, nt);
        task_stats ts; div_stats ds;
        cJSON *o = cJSON_AddObjectToObject(acc, models[mi].name);
        cJSON *samples = cJSON_AddArrayToObject(o, "samples");
        chat_model cm;
        if (chat_model_open(&cm, models[mi].dir, (size_t)(c->div_samples > 1 ? c->div_samples : 1), err)) { rc = -1; break; }
        if (eval_model(c, &cm, models[mi].base, tasks, nt, &ts, samples, err)) { chat_model_close(&cm); rc = -1; break; }
        cJSON_AddNumberToObject(o, "accuracy", ts.acc);
        cJSON_AddNumberToObject(o, "format_rate", ts.format_rate);
        cJSON_AddNumberToObject(o, "concise_rate", ts.concise_rate);
        cJSON_AddNumberToObject(o, "mean_tokens", ts.mean_len);
        cJSON_AddNumberToObject(o, "tasks", (double)ts.n);
        if (!models[mi].base) {
            if (eval_diversity(c, &cm, tasks, nt, &ds, err)) { chat_model_close(&cm); rc = -1; break; }
            cJSON_AddNumberToObject(o, "distinct1", ds.distinct1);
            cJSON_AddNumberToObject(o, "distinct2", ds.distinct2);
            cJSON_AddNumberToObject(o, "entropy", ds.entropy);
        }
        chat_model_close(&cm);
    }
    /* reward-model win rates against the SFT model */
    const char *vs[2] = { "ppo", "dpo" };
    const char *vdir[2] = { x->p_ppo, x->p_dpo };
    cJSON *wr = cJSON_AddObjectToObject(j, "win_rate_vs_sft");
    for (int k = 0; rc == 0 && k < 2; k++) {
        compare_opts co;
        compare_opts_default(&co);
        co.a_dir = vdir[k]; co.b_dir = x->p_sft; co.rm_dir = x->p_rm; co.prompts = ev;
        co.n = c->compare_n; co.max_new = c->max_new; co.seed = (uint64_t)c->seed;
        compare_result cr;
        gk_log("pipeline: comparing %s with sft by the reward model on %ld prompts\n", vs[k], c->compare_n);
        if (rlhf_compare(&co, &cr, err)) { rc = -1; break; }
        cJSON *o = cJSON_AddObjectToObject(wr, vs[k]);
        cJSON_AddNumberToObject(o, "win_rate", cr.win_rate);
        cJSON_AddNumberToObject(o, "ci_lo", cr.ci_lo);
        cJSON_AddNumberToObject(o, "ci_hi", cr.ci_hi);
        cJSON_AddNumberToObject(o, "n", (double)cr.n);
        cJSON_AddNumberToObject(o, "mean_score", cr.mean_a);
        cJSON_AddNumberToObject(o, "mean_score_sft", cr.mean_b);
    }
    free(tasks);
    free(ev);
    return rc;
}

/* ---------------------------------------------------------------- driver */

static const char *USAGE =
"usage: gptkit pipeline [CONFIG] [--run-dir DIR] [--fast] [--from STAGE] [--print-config]\n"
"\n"
"Runs the whole chain on the built-in demo data: corpus -> tokenizer -> shards -> data -> pretrain -> sft ->\n"
"rm -> ppo -> dpo -> eval -> report. Each stage is skipped when its output is already complete, and an\n"
"interrupted training stage resumes from its last checkpoint, so rerunning after Ctrl-C continues.\n"
"Results: RUN/report.md (with plots under RUN/plots/) and RUN/report.json.\n"
"\n"
"  CONFIG            a 'key = value' file over the built-in defaults (docs/pipeline.md; configs/)\n"
"  --run-dir DIR     override run_dir (default runs/demo)\n"
"  --fast            a tiny configuration that runs end to end in a minute or two (for tests)\n"
"  --from STAGE      redo STAGE and everything after it\n"
"  --print-config    print the effective configuration and exit\n";

typedef int (*stage_fn)(ctx *, cJSON *, gk_err *);
static const struct { const char *name; stage_fn fn; const char *what; } STAGES[] = {
    { "corpus", st_corpus, "extract the built-in corpus" },
    { "tokenizer", st_tokenizer, "train the BPE tokenizer" },
    { "shards", st_shards, "tokenize the corpus into shards" },
    { "data", st_data, "generate SFT / preference / prompt / eval data" },
    { "pretrain", st_pretrain, "pretrain the base model" },
    { "sft", st_sft, "supervised finetuning" },
    { "rm", st_rm, "train the reward model" },
    { "ppo", st_ppo, "PPO against the reward model" },
    { "dpo", st_dpo, "DPO on the preferences (comparison)" },
    { "eval", st_eval, "evaluate every stage's model" },
};
#define NSTAGES (sizeof STAGES / sizeof STAGES[0])

static void fast_config(pipe_cfg *c) {
    c->vocab_size = 512;
    c->n_sft = 600; c->n_sft_val = 50; c->n_prefs = 300; c->n_prefs_val = 50; c->n_prompts = 100; c->n_eval = 40;
    c->n_layer = 2; c->n_head = 2; c->n_embd = 64; c->n_ctx = 128;
    c->pt_batch = 8; c->pt_seq = 64; c->pt_steps = 40; c->pt_warmup = 5; c->pt_val_every = 20;
    c->sft_epochs = 1; c->sft_batch = 16;
    c->rm_epochs = 1; c->rm_batch = 16;
    c->ppo_iters = 3; c->ppo_prompts = 4; c->ppo_samples = 2; c->ppo_max_new = 12;
    c->dpo_epochs = 1;
    c->eval_tasks = 20; c->div_prompts = 4; c->div_samples = 4; c->compare_n = 10; c->max_new = 12;
}

int cmd_pipeline(int argc, char **argv) {
    cli_args a;
    cli_args_init(&a, argc, argv, USAGE);
    const char *f, *cfgpath = NULL, *rundir = NULL, *from = NULL;
    int fast = 0, print = 0;
    while ((f = cli_next(&a))) {
        if (cli_is(f, "--run-dir")) rundir = cli_str(&a, f);
        else if (cli_is(f, "--fast")) fast = 1;
        else if (cli_is(f, "--from")) from = cli_str(&a, f);
        else if (cli_is(f, "--print-config")) print = 1;
        else if (cli_is_positional(f) && !cfgpath) cfgpath = f;
        else cli_unknown(&a, f);
    }
    pipe_cfg c;
    pipe_cfg_default(&c);
    if (fast) { fast_config(&c); snprintf(c.run_dir, sizeof c.run_dir, "runs/fast"); }
    gk_err err;
    if (cfgpath && pipe_cfg_load(&c, cfgpath, &err)) { fprintf(stderr, "gptkit pipeline: %s\n", err.msg); return 1; }
    if (rundir) snprintf(c.run_dir, sizeof c.run_dir, "%s", rundir);
    if (print) { pipe_cfg_write(&c, stdout); return 0; }
    long from_idx = -1;
    if (from) {
        for (size_t i = 0; i < NSTAGES; i++) if (!strcmp(STAGES[i].name, from)) from_idx = (long)i;
        if (from_idx < 0) cli_usage_error(&a, "--from: unknown stage '%s'", from);
    }
    char *stages_dir = gk_path_join(c.run_dir, "stages");
    if (gk_mkdir_p(stages_dir, &err)) { fprintf(stderr, "gptkit pipeline: %s\n", err.msg); free(stages_dir); return 1; }
    free(stages_dir);
    {   /* the effective config, for the record */
        char *p = gk_path_join(c.run_dir, "config.txt");
        FILE *cf = fopen(p, "w");
        if (cf) { pipe_cfg_write(&c, cf); fclose(cf); }
        free(p);
    }
    ctx x = { .c = &c };
    x.p_corpus = run_path(&c, "corpus.txt"); x.p_tok = run_path(&c, "tokenizer"); x.p_shards = run_path(&c, "shards");
    x.p_data = run_path(&c, "data"); x.p_base = run_path(&c, "base"); x.p_sft = run_path(&c, "sft");
    x.p_rm = run_path(&c, "rm"); x.p_ppo = run_path(&c, "ppo"); x.p_dpo = run_path(&c, "dpo");
    double t0 = gk_now();
    int rc = 0;
    gk_sigint_install();
    kern_backend *be = kern_backend_create(NULL, NULL);   /* what the stages' models run on (the defaults) */
    gk_log("pipeline: run directory %s; backend %s, %d threads\n", c.run_dir, kern_backend_name(be), gk_num_threads());
    kern_backend_free(be);
    for (size_t i = 0; i < NSTAGES && rc == 0; i++) {
        char tb[32];
        cJSON *prev = pipe_stage_result(&c, STAGES[i].name);
        if (prev && (from_idx < 0 || (long)i < from_idx)) {
            gk_log("pipeline: [%zu/%zu] %-9s done already (%.0fs) — skipped\n", i + 1, NSTAGES, STAGES[i].name,
                   cJSON_GetNumberValue(cJSON_GetObjectItem(prev, "seconds")));
            cJSON_Delete(prev);
            continue;
        }
        cJSON_Delete(prev);
        if (from_idx >= 0 && (long)i >= from_idx) {
            char rel[256]; snprintf(rel, sizeof rel, "stages/%s.json", STAGES[i].name);
            char *p = run_path(&c, rel); remove(p); free(p);
            /* a redone training stage starts over: drop its resume state and metrics */
            static const char *dirs[] = { [4] = "base", [5] = "sft", [6] = "rm", [7] = "ppo", [8] = "dpo" };
            if (i < sizeof dirs / sizeof dirs[0] && dirs[i]) {
                const char *files[2] = { "train_state.safetensors", "metrics.jsonl" };
                for (int k = 0; k < 2; k++) {
                    snprintf(rel, sizeof rel, "%s/%s", dirs[i], files[k]);
                    p = run_path(&c, rel); remove(p); free(p);
                }
            }
        }
        gk_log("pipeline: [%zu/%zu] %-9s %s (total elapsed %s)\n", i + 1, NSTAGES, STAGES[i].name, STAGES[i].what,
               gk_fmt_duration(gk_now() - t0, tb, sizeof tb));
        double ts = gk_now();
        cJSON *j = cJSON_CreateObject();
        if (STAGES[i].fn(&x, j, &err)) {
            fprintf(stderr, "gptkit pipeline: stage %s: %s\n", STAGES[i].name, err.msg);
            cJSON_Delete(j);
            rc = gk_sigint_pending() ? 130 : 1;
            break;
        }
        if (stage_done(&c, STAGES[i].name, j, gk_now() - ts, &err)) { fprintf(stderr, "gptkit pipeline: %s\n", err.msg); rc = 1; }
        if (gk_sigint_pending()) { fprintf(stderr, "gptkit pipeline: interrupted after stage %s; rerun to continue\n", STAGES[i].name); rc = 130; }
    }
    if (pipe_report(&c, &err)) { fprintf(stderr, "gptkit pipeline: report: %s\n", err.msg); if (!rc) rc = 1; }
    char tb[32];
    if (rc == 0) {
        printf("\npipeline finished in %s. Report: %s/report.md\n", gk_fmt_duration(gk_now() - t0, tb, sizeof tb), c.run_dir);
        printf("Talk to the result:  ./build/gptkit chat --model %s/ppo\n", c.run_dir);
    }
    free(x.p_corpus); free(x.p_tok); free(x.p_shards); free(x.p_data); free(x.p_base); free(x.p_sft);
    free(x.p_rm); free(x.p_ppo); free(x.p_dpo);
    return rc;
}
