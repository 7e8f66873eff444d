/* cmd_pipeline.c: gptkit pipeline — the whole chain on the built-in demo data (or a config):
 *
 *   corpus -> tokenizer -> shards -> data -> pretrain -> sft -> rm -> ppo -> dpo -> grpo -> eval -> report
 *
 * Each stage writes its outputs under RUN/ and, when complete, RUN/stages/<stage>.json with what it
 * achieved. A rerun skips completed stages; an interrupted training stage resumes from its last checkpoint
 * (train_state.safetensors). The report card (report.md/json, plots/) is rebuilt at the end of every run.
 */
#include "cli/cli.h"
#include "cli/pipeline_internal.h"
#include "core/core.h"
#include "data/data.h"
#include "infer/strategy.h"
#include "tools/tools.h"
#include "eval/eval.h"
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
/* The pipeline's own keys (the training stages' keys come from their option tables, see STAGE_OPTS).
 * K_STR: cap = the field's size; choices = the allowed values (NULL-terminated), or NULL for any text */
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
    D("data.pref_drop", pref_drop, "share of preference lines where a rambling reply keeping the answer beats one that dropped it"),
    L("data.prompts", n_prompts, "RL prompts"), L("data.eval", n_eval, "evaluation tasks (held out)"),
    D("data.sft_ramble", sft_ramble, "share of plain SFT replies that add a filler sentence (imperfect demonstrations)"),
    D("data.sft_slip", sft_slip, "share of format-mode SFT replies that ignore the format (imperfect demonstrations)"),
    D("data.sft_tools", sft_tools, "share of SFT conversations that call the calc tool (big-number arithmetic)"),
    L("data.tool_eval", n_tool_eval, "held-out big-number arithmetic tasks for the tools"),
    D("data.sft_rag", sft_rag, "share of SFT conversations that answer from a source placed before the question (retrieval)"),
};
static const kspec EVAL_KEYS[] = {
    L("eval.tasks", eval_tasks, "held-out tasks per model"), L("eval.fewshot_k", fewshot_k, "examples in the base model's prompt"),
    L("eval.div_prompts", div_prompts, "prompts for the diversity measurement"),
    L("eval.div_samples", div_samples, "samples per prompt for diversity"),
    L("eval.compare_n", compare_n, "prompts for the reward-model win rates"),
    L("eval.max_new", max_new, "answer token limit"),
    L("eval.strategy_tasks", strategy_tasks, "tasks per row of the strategies table (0 = none)"),
    L("eval.best_of", best_of, "N of the best-of-N baseline in the win rates (samples from SFT, the RM's favourite; 0 = none)"),
    L("eval.rag_questions", rag_questions, "document questions answered without and with retrieval (SFT and PPO; 0 = none)"),
    L("eval.calib_items", calib_items, "multiple-choice questions for each model's calibration (0 = none)"),
};
#undef L
#undef D
#undef S
#define NKEYS (sizeof KEYS / sizeof KEYS[0])
#define NEVAL_KEYS (sizeof EVAL_KEYS / sizeof EVAL_KEYS[0])

/* the training stages' options inside pipe_cfg, keyed by their tables */
static const struct { const train_opt_table *t; size_t off; } STAGE_OPTS[] = {
    { &train_opts_pretrain, offsetof(pipe_cfg, pt) }, { &train_opts_sft, offsetof(pipe_cfg, sft) },
    { &train_opts_rm, offsetof(pipe_cfg, rm) }, { &train_opts_ppo, offsetof(pipe_cfg, ppo) },
    { &train_opts_dpo, offsetof(pipe_cfg, dpo) }, { &train_opts_grpo, offsetof(pipe_cfg, grpo) },
};
#define NSTAGE_OPTS (sizeof STAGE_OPTS / sizeof STAGE_OPTS[0])

void pipe_cfg_default(pipe_cfg *c) {
    memset(c, 0, sizeof *c);
    snprintf(c->run_dir, sizeof c->run_dir, "runs/demo");
    c->seed = 1337;
    snprintf(c->precision, sizeof c->precision, "fp32");
    c->vocab_size = 2048; c->val_fraction = 0.02;
    c->n_sft = 7500; c->n_sft_val = 300; c->n_prefs = 6000; c->n_prefs_val = 300; c->n_prompts = 1000; c->n_eval = 200; c->pref_arith = 0.1;
    c->sft_tools = 0.2; c->n_tool_eval = 100;
    c->sft_ramble = 0.15; c->sft_slip = 0;
    for (size_t i = 0; i < NSTAGE_OPTS; i++) train_opts_default(STAGE_OPTS[i].t, (char *)c + STAGE_OPTS[i].off);
    /* the demo: a small model the stages train in minutes on CPU */
    pretrain_opts *pt = &c->pt;
    pt->model_name = NULL;
    pt->n_layer = 4; pt->n_head = 4; pt->n_embd = 192; pt->n_ctx = 256;
    pt->B = 16; pt->T = 128; pt->steps = 600; pt->sched.warmup = 30; pt->val_every = 100; pt->sched.lr = (float)2e-3;
    pt->val_batches = 10; pt->save_every = 100;
    c->sft.B = 16; c->sft.epochs = 2; c->sft.steps = 0; c->sft.sched.lr = (float)1e-3; c->sft.save_every = 100;
    c->rm.batch = 16; c->rm.epochs = 2; c->rm.sched.lr = (float)5e-4;
    ppo_opts *po = &c->ppo;
    po->iters = 40; po->batch_prompts = 16; po->samples = 4; po->max_new = 24; po->ppo_epochs = 2; po->minibatch = 16;
    po->lr = (float)3e-5; po->beta = (float)0.1; po->kl_target = (float)6.0; po->kl_horizon = 1000;
    po->sample_every = 10; po->save_every = 10;
    c->dpo.batch = 16; c->dpo.epochs = 1; c->dpo.steps = 200; c->dpo.sched.lr = (float)5e-5; c->dpo.beta = (float)0.1;
    grpo_opts *go = &c->grpo;
    /* G = 16 at temperature 0.7: with the demo's SFT model most groups of 8 at temperature 1 held no correct reply
     * (no signal); lr 1e-4: 2e-4 and above drifted (KL 2-20) without gaining (bench/RESULTS.md, issue 21) */
    go->iters = 30; go->batch_prompts = 8; go->group = 16; go->temperature = 0.7f; go->max_new = 24; go->minibatch = 32;
    go->lr = (float)1e-4; go->beta = (float)0.04; go->sample_every = 10; go->save_every = 10;
    c->best_of = 4;
    c->eval_tasks = 200; c->fewshot_k = 3; c->div_prompts = 16; c->div_samples = 8; c->compare_n = 100; c->max_new = 24;
    c->calib_items = 200;
    c->strategy_tasks = 100;
    c->sft_rag = 0; c->rag_questions = 100;
}

static char *trim(char *s) {
    while (*s == ' ' || *s == '\t') s++;
    char *e = s + strlen(s);
    while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r' || e[-1] == '\n')) *--e = 0;
    return s;
}

static const kspec *find_key(const char *k) {
    for (size_t i = 0; i < NKEYS; i++) if (!strcmp(KEYS[i].key, k)) return &KEYS[i];
    for (size_t i = 0; i < NEVAL_KEYS; i++) if (!strcmp(EVAL_KEYS[i].key, k)) return &EVAL_KEYS[i];
    return NULL;
}

/* One pipeline key's value into c; the message (without file:line) into err. */
static int set_key(pipe_cfg *c, const kspec *ks, const char *v, gk_err *err) {
    char *base = (char *)c + ks->off;
    if (ks->type == K_STR) {
        if (strlen(v) >= ks->cap) return gk_errf(err, "value too long");
        int ok = !ks->choices;
        char allowed[128] = "";
        for (const char *const *ch = ks->choices; ch && *ch; ch++) {
            ok |= !strcmp(v, *ch);
            snprintf(allowed + strlen(allowed), sizeof allowed - strlen(allowed), "%s%s", ch == ks->choices ? "" : " or ", *ch);
        }
        if (!ok) return gk_errf(err, "expected %s, got '%s'", allowed, v);
        strcpy(base, v);
    } else if (ks->type == K_LONG) {
        long x;
        if (gk_parse_long(v, &x) || x < 0) return gk_errf(err, "expected a non-negative integer, got '%s'", v);
        *(long *)base = x;
    } else {
        double x;
        if (gk_parse_double(v, &x) || x < 0) return gk_errf(err, "expected a non-negative number, got '%s'", v);
        *(double *)base = x;
    }
    return 0;
}

/* Line of key k among the keys seen so far (0 if new), recording it; a key given twice is refused, since the
 * second would silently win. */
typedef struct { char **keys; size_t *lines, n; } seen_keys;
static size_t seen_before(seen_keys *sk, const char *k, size_t line) {
    for (size_t i = 0; i < sk->n; i++) if (!strcmp(sk->keys[i], k)) return sk->lines[i];
    sk->keys = gk_realloc(sk->keys, (sk->n + 1) * sizeof *sk->keys);
    sk->lines = gk_realloc(sk->lines, (sk->n + 1) * sizeof *sk->lines);
    sk->keys[sk->n] = gk_strdup(k);
    sk->lines[sk->n++] = line;
    return 0;
}
static size_t seen_line(const seen_keys *sk, const char *k) {
    for (size_t i = 0; i < sk->n; i++) if (!strcmp(sk->keys[i], k)) return sk->lines[i];
    return 0;
}

/* One `key = value` line into c (message with file:line into err). */
static int load_line(pipe_cfg *c, const char *path, size_t no, char *s, seen_keys *sk, gk_err *err) {
    char *eq = strchr(s, '=');
    if (!eq) return gk_errf(err, "%s:%zu: expected 'key = value', got '%s'", path, no, s);
    *eq = 0;
    char *k = trim(s), *v = trim(eq + 1);
    char *hash = strstr(v, " #");
    if (hash) { *hash = 0; v = trim(v); }
    gk_err e;
    const kspec *ks = find_key(k);
    int found = ks != NULL, bad = ks ? set_key(c, ks, v, &e) : 0;
    for (size_t i = 0; !found && i < NSTAGE_OPTS; i++) {
        const train_opt *d = train_opt_by_pipe_key(STAGE_OPTS[i].t, k);
        if (d) { found = 1; bad = train_opt_set(d, (char *)c + STAGE_OPTS[i].off, d->type == TRAIN_OPT_STR ? train_opt_keep_str(v) : v, &e); }
    }
    if (!found) return gk_errf(err, "%s:%zu: unknown key '%s' (see docs/pipeline.md for the list)", path, no, k);
    if (bad) return gk_errf(err, "%s:%zu: %s: %s", path, no, k, e.msg);
    size_t first = seen_before(sk, k, no);
    if (first) return gk_errf(err, "%s:%zu: %s: given twice (first on line %zu)", path, no, k, first);
    return 0;
}

int pipe_cfg_load(pipe_cfg *c, const char *path, gk_err *err) {
    gk_lines r;
    if (gk_lines_open(&r, path, err)) return -1;
    char *line; size_t no;
    int rc = 0;
    seen_keys sk = {0};
    while (rc == 0 && gk_lines_next(&r, &line, &no)) {
        char *s = trim(line);
        if (*s != '#') rc = load_line(c, path, no, s, &sk, err);
    }
    /* the width must split into the heads; said here, with the line, rather than when the model is built */
    if (rc == 0 && c->pt.n_embd > 0 && c->pt.n_head > 0 && c->pt.n_embd % c->pt.n_head) {
        size_t l1 = seen_line(&sk, "model.n_embd"), l2 = seen_line(&sk, "model.n_head");
        rc = gk_errf(err, "%s:%zu: model.n_embd %d is not divisible by model.n_head %d", path, l1 > l2 ? l1 : l2,
                     c->pt.n_embd, c->pt.n_head);
    }
    for (size_t i = 0; i < sk.n; i++) free(sk.keys[i]);
    free(sk.keys); free(sk.lines);
    gk_lines_close(&r);
    return rc;
}

static void write_keys(const pipe_cfg *c, const kspec *keys, size_t n, FILE *f) {
    for (size_t i = 0; i < n; i++) {
        const char *base = (const char *)c + keys[i].off;
        fprintf(f, "%-24s = ", keys[i].key);
        if (keys[i].type == K_STR) fprintf(f, "%s", base);
        else if (keys[i].type == K_LONG) fprintf(f, "%ld", *(const long *)base);
        else fprintf(f, "%g", *(const double *)base);
        fprintf(f, "   # %s\n", keys[i].help);
    }
}

void pipe_cfg_write(const pipe_cfg *c, FILE *f) {
    write_keys(c, KEYS, NKEYS, f);
    char key[128], val[128];
    for (size_t i = 0; i < NSTAGE_OPTS; i++) {
        const train_opt_table *t = STAGE_OPTS[i].t;
        for (size_t k = 0; k < t->n; k++) {
            if (!(t->opts[k].flags & TRAIN_OPT_PIPE)) continue;
            train_opt_pipe_key(t, &t->opts[k], key, sizeof key);
            train_opt_format(&t->opts[k], (const char *)c + STAGE_OPTS[i].off, val, sizeof val);
            fprintf(f, "%-24s = %s   # %s\n", key, val, t->opts[k].help);
        }
    }
    write_keys(c, EVAL_KEYS, NEVAL_KEYS, f);
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

/* ---------------------------------------------------------------- stages */

/* The run directory of each training stage, by stage index (NULL: not a training stage). */
static const char *const TRAIN_DIRS[] = { [4] = "base", [5] = "sft", [6] = "rm", [7] = "ppo", [8] = "dpo", [9] = "grpo" };
#define NTRAIN_DIRS (sizeof TRAIN_DIRS / sizeof TRAIN_DIRS[0])

/* p_sft_model: the SFT model the later stages start from: RUN/sft, or with sft.lora_rank > 0 (RUN/sft then holds
 * an adapter) RUN/sft_merged, the adapter merged into the base (RM, PPO, DPO and GRPO need a whole model as
 * their start and reference; their own adapters go on top of it) */
typedef struct { const pipe_cfg *c; char *p_corpus, *p_tok, *p_shards, *p_data, *p_base, *p_sft, *p_sft_model, *p_rm, *p_ppo, *p_dpo, *p_grpo; } ctx;

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
        { "tool_eval.jsonl", c->n_tool_eval, 7, 4 },
    };
    demo_opts dop;
    demo_opts_default(&dop);
    dop.pref_arith = c->pref_arith;
    dop.pref_drop = c->pref_drop;
    dop.sft_tools = c->sft_tools;
    dop.sft_ramble = c->sft_ramble;
    dop.sft_slip = c->sft_slip;
    dop.sft_rag = c->sft_rag;
    char *rag_docs = pipe_rag_docs_path(x->p_data);   /* the file the eval stage indexes: its sources' name */
    dop.rag_source = rag_docs;
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char *p = gk_path_join(x->p_data, files[i].name);
        uint64_t seed = (uint64_t)c->seed * 1000 + files[i].seed;
        long n = files[i].kind == 0 ? demo_gen_sft(p, files[i].n, seed, &dop, err)
               : files[i].kind == 1 ? demo_gen_prefs(p, files[i].n, seed, &dop, err)
               : files[i].kind == 2 ? demo_gen_prompts(p, files[i].n, seed, NULL, err)
               : files[i].kind == 3 ? demo_gen_eval(p, files[i].n, seed, NULL, err)
               : demo_gen_tool_eval(p, files[i].n, seed, NULL, err);
        free(p);
        if (n < 0) { free(rag_docs); return -1; }
        cJSON_AddNumberToObject(j, files[i].name, (double)n);
    }
    free(rag_docs);
    return 0;
}

/* precision = bf16: the training stages' matmuls in bfloat16 (PPO, eval and generation stay fp32) */
static int cfg_bf16(const pipe_cfg *c) { return !strcmp(c->precision, "bf16"); }

/* A training stage's output directory starts over: its checkpoint, resume state and metrics are dropped. */
static void stage_dir_forget(const char *dir) {
    gk_ckpt_drop(dir);
    const char *files[2] = { "train_state.safetensors", "metrics.jsonl" };   /* plain files of older versions */
    for (int k = 0; k < 2; k++) { char *p = gk_path_join(dir, files[k]); remove(p); free(p); }
}

/* dir, when an interrupted run of the stage left its resume state there (the stage then continues it). A stage
 * killed after its final save but before its result was recorded starts over instead: a resume with nothing
 * left to run could not report the final evaluation, and a rerun reproduces it exactly. */
static const char *saved_state(const char *stage, const char *dir) {
    int fin = train_state_finished(dir);
    if (fin == 1) {
        gk_log("pipeline: %s finished but its result was not recorded; running it again\n", stage);
        stage_dir_forget(dir);
    }
    if (fin == 0) gk_log("pipeline: resuming %s from %s\n", stage, dir);
    return fin == 0 ? dir : NULL;
}

/* What every training stage of the run shares: the run's seed, its output directory, resuming. */
#define STAGE_RUN(o, c, stage, dir) \
    do { (o).seed = (uint64_t)(c)->seed; (o).out = (dir); (o).resume_dir = saved_state(stage, dir); } while (0)

/* An interrupted stage fails (so the run stops) with a message saying how to continue. */
static int interrupted(const char *what, gk_err *err) {
    return gk_errf(err, "interrupted during %s (rerun to resume)", what);
}

/* The numbers a stage achieved, into its stages/<stage>.json: keys[i] = vals[i]. */
static void put_numbers(cJSON *j, const char *const *keys, const double *vals, size_t n) {
    for (size_t i = 0; i < n; i++) cJSON_AddNumberToObject(j, keys[i], vals[i]);
}
#define PUT_NUMBERS(j, keys, ...) put_numbers(j, keys, (const double[]){ __VA_ARGS__ }, sizeof keys / sizeof keys[0])

static int st_pretrain(ctx *x, cJSON *j, gk_err *err) {
    const pipe_cfg *c = x->c;
    pretrain_opts o = c->pt;
    tok_tokenizer *tk = tok_load(x->p_tok, err);   /* the vocabulary size now, bits per byte at the end */
    if (!tk) return -1;
    o.vocab_size = (int)tok_vocab_size(tk);
    /* recorded in every checkpoint of the run: absolute, so the models load from any directory */
    char *tok_abs = realpath(x->p_tok, NULL);
    o.tokenizer = tok_abs ? tok_abs : x->p_tok;
    char *tr = gk_path_join(x->p_shards, "train_*.bin");
    char *va = gk_path_join(x->p_shards, "val_000000.bin");
    o.data = tr; o.val = va;
    o.bf16 = cfg_bf16(c);
    STAGE_RUN(o, c, "pretrain", x->p_base);
    pretrain_result r;
    int rc = train_pretrain(&o, &r, err);
    if (rc == 0 && r.interrupted) rc = interrupted("pretraining", err);
    if (rc == 0) {
        static const char *const K[] = { "final_loss", "val_loss", "tokens", "train_seconds", "peak_rss_mb" };
        PUT_NUMBERS(j, K, r.final_loss, r.val_loss, r.tokens, r.seconds, r.peak_rss_mb);
        /* bits per byte of the val shard: val loss (nats/token) / ln 2 * tokens / bytes */
        size_t ntok, bytes;
        if (eval_shard_bytes(va, tk, &ntok, &bytes, err) == 0 && bytes)
            cJSON_AddNumberToObject(j, "val_bpb", r.val_loss / log(2.0) * (double)ntok / (double)bytes);
    }
    tok_free(tk);
    free(tr); free(va); free(tok_abs);
    return rc;
}

static int st_sft(ctx *x, cJSON *j, gk_err *err) {
    const pipe_cfg *c = x->c;
    sft_opts o = c->sft;
    o.init_dir = x->p_base;
    char *tr = gk_path_join(x->p_data, "sft_train.jsonl"), *va = gk_path_join(x->p_data, "sft_val.jsonl");
    o.data = tr; o.val = va;
    o.bf16 = cfg_bf16(c);
    STAGE_RUN(o, c, "sft", x->p_sft);
    if (o.resume_dir) o.init_dir = NULL;
    sft_result r;
    int rc = train_sft(&o, &r, err);
    if (rc == 0 && r.interrupted) rc = interrupted("SFT", err);
    if (rc == 0) {
        static const char *const K[] = { "final_loss", "val_loss", "steps", "conversations", "train_seconds" };
        PUT_NUMBERS(j, K, r.final_loss, r.val_loss, (double)r.steps_done, (double)r.n_train, r.seconds);
    }
    if (rc == 0 && strcmp(x->p_sft_model, x->p_sft)) {   /* a LoRA SFT: the whole model the next stages start from */
        char *argv[] = { "lora", "merge", "--model", x->p_base, "--adapter", x->p_sft, "--out", x->p_sft_model, NULL };
        int mrc = cmd_lora(8, argv);
        if (mrc) rc = gk_errf(err, "merging the SFT adapter into %s failed (exit %d)", x->p_sft_model, mrc);
        else cJSON_AddStringToObject(j, "merged", x->p_sft_model);
    }
    free(tr); free(va);
    return rc;
}

static int st_rm(ctx *x, cJSON *j, gk_err *err) {
    const pipe_cfg *c = x->c;
    rm_opts o = c->rm;
    o.init_dir = x->p_sft_model;
    char *tr = gk_path_join(x->p_data, "prefs_train.jsonl"), *va = gk_path_join(x->p_data, "prefs_val.jsonl");
    char *nz = gk_path_join(x->p_data, "sft_val.jsonl");
    o.data = tr; o.val = va; o.normalize = nz;
    o.bf16 = cfg_bf16(c);
    STAGE_RUN(o, c, "rm", x->p_rm);
    if (o.resume_dir) o.init_dir = NULL;
    rm_result r;
    int rc = train_rm(&o, &r, err);
    if (rc == 0 && r.interrupted) rc = interrupted("reward-model training", err);
    if (rc == 0) {
        static const char *const K[] = { "final_loss", "val_acc", "val_loss", "val_margin", "pairs", "val_pairs",
                                         "offset", "train_seconds" };
        PUT_NUMBERS(j, K, r.final_loss, r.val_acc, r.val_loss, r.val_margin, (double)r.pairs, (double)r.val_pairs,
                    r.offset, r.seconds);
    }
    free(tr); free(va); free(nz);
    return rc;
}

static int st_ppo(ctx *x, cJSON *j, gk_err *err) {
    const pipe_cfg *c = x->c;
    ppo_opts o = c->ppo;
    o.policy_dir = x->p_sft_model; o.reward_dir = x->p_rm;
    char *pr = gk_path_join(x->p_data, "prompts.jsonl");
    o.prompts = pr;
    STAGE_RUN(o, c, "ppo", x->p_ppo);
    ppo_result r;
    memset(&r, 0, sizeof r);
    int rc = train_ppo(&o, &r, err);
    if (rc == 0 && r.interrupted) rc = interrupted("PPO", err);
    if (rc == 0) {
        /* from the metrics, which hold every iteration even when this run resumed an interrupted one */
        char *mp = gk_path_join(x->p_ppo, "metrics.jsonl");
        const char *keys[2] = { "score", "kl" };
        for (int k = 0; k < 2; k++) {
            pipe_series ser;
            pipe_read_series(mp, keys[k], &ser);
            cJSON *arr = cJSON_AddArrayToObject(j, keys[k]);
            for (size_t i = 0; i < ser.n; i++) cJSON_AddItemToArray(arr, cJSON_CreateNumber(ser.y[i]));
            pipe_series_free(&ser);
        }
        free(mp);
        cJSON_AddNumberToObject(j, "kl_target", c->ppo.kl_target);
        cJSON_AddNumberToObject(j, "train_seconds", r.seconds);
    }
    ppo_result_free(&r);
    free(pr);
    return rc;
}

static int st_dpo(ctx *x, cJSON *j, gk_err *err) {
    const pipe_cfg *c = x->c;
    dpo_opts o = c->dpo;
    o.policy_dir = x->p_sft_model;
    char *tr = gk_path_join(x->p_data, "prefs_train.jsonl"), *va = gk_path_join(x->p_data, "prefs_val.jsonl");
    o.data = tr; o.val = va;
    o.bf16 = cfg_bf16(c);
    STAGE_RUN(o, c, "dpo", x->p_dpo);
    dpo_result r;
    int rc = train_dpo(&o, &r, err);
    if (rc == 0 && r.interrupted) rc = interrupted("DPO", err);
    if (rc == 0) {
        static const char *const K[] = { "final_loss", "val_acc", "val_margin", "train_seconds" };
        PUT_NUMBERS(j, K, r.final_loss, r.val_acc, r.val_margin, r.seconds);
    }
    free(tr); free(va);
    return rc;
}

/* GRPO from the SFT model on the RL prompts, rewarded by the demo's answer checks (their answers are recovered
 * from the prompt text); grpo.iters = 0 skips it. */
static int st_grpo(ctx *x, cJSON *j, gk_err *err) {
    const pipe_cfg *c = x->c;
    if (c->grpo.iters <= 0) { cJSON_AddBoolToObject(j, "skipped", 1); return 0; }
    grpo_opts o = c->grpo;
    o.policy_dir = x->p_sft_model;
    char *pr = gk_path_join(x->p_data, "prompts.jsonl");
    o.prompts = pr;
    STAGE_RUN(o, c, "grpo", x->p_grpo);
    grpo_result r;
    memset(&r, 0, sizeof r);
    int rc = train_grpo(&o, &r, err);
    if (rc == 0 && r.interrupted) rc = interrupted("GRPO", err);
    if (rc == 0) {
        char *mp = gk_path_join(x->p_grpo, "metrics.jsonl");
        const char *keys[3] = { "reward", "accuracy", "kl" };
        for (int k = 0; k < 3; k++) {
            pipe_series ser;
            pipe_read_series(mp, keys[k], &ser);
            cJSON *arr = cJSON_AddArrayToObject(j, keys[k]);
            for (size_t i = 0; i < ser.n; i++) cJSON_AddItemToArray(arr, cJSON_CreateNumber(ser.y[i]));
            pipe_series_free(&ser);
        }
        free(mp);
        cJSON_AddNumberToObject(j, "train_seconds", r.seconds);
    }
    grpo_result_free(&r);
    free(pr);
    return rc;
}

/* ---------------------------------------------------------------- evaluation */

/* One model's calibration on the multiple-choice items into o: "calibration": {n, accuracy, confidence, ece,
 * bins: [{n, accuracy, confidence}]}. */
static int calib_one(const pipe_cfg *c, eval_model *em, int base, const demo_mc *items, long n, cJSON *o, gk_err *err) {
    eval_calib cs;
    if (eval_calibration(em, base, items, n, (int)c->fewshot_k, (uint64_t)c->seed, &cs, err)) return -1;
    cJSON *k = cJSON_AddObjectToObject(o, "calibration");
    cJSON_AddNumberToObject(k, "n", (double)cs.n);
    cJSON_AddNumberToObject(k, "accuracy", cs.acc);
    cJSON_AddNumberToObject(k, "confidence", cs.conf);
    cJSON_AddNumberToObject(k, "ece", cs.ece);
    cJSON *bins = cJSON_AddArrayToObject(k, "bins");
    for (int b = 0; b < EVAL_CALIB_BINS; b++) {
        cJSON *x = cJSON_CreateObject();
        cJSON_AddNumberToObject(x, "n", (double)cs.bin_n[b]);
        cJSON_AddNumberToObject(x, "accuracy", cs.bin_acc[b]);
        cJSON_AddNumberToObject(x, "confidence", cs.bin_conf[b]);
        cJSON_AddItemToArray(bins, x);
    }
    return 0;
}

/* One model's task accuracy (and, for a chat model, the diversity of its samples; with items, its calibration)
 * into o. */
static int eval_one(const pipe_cfg *c, const char *dir, int base, const demo_task *tasks, long nt,
                    const demo_mc *items, long ni, cJSON *o, unsigned char *correct, gk_err *err) {
    eval_model em;
    size_t S = (size_t)(c->div_samples > 1 ? c->div_samples : 1);
    if (eval_model_open(&em, dir, NULL, 1, 1, S, err)) return -1;
    eval_task_stats ts;
    cJSON *samples = cJSON_AddArrayToObject(o, "samples");
    int rc = eval_tasks_graded(&em, base, tasks, nt, (int)c->fewshot_k, (uint64_t)c->seed, (size_t)c->max_new, &ts, samples,
                               correct, err);
    if (rc == 0) {
        cJSON_AddNumberToObject(o, "accuracy", ts.acc);
        cJSON_AddNumberToObject(o, "format_rate", ts.format_rate);
        cJSON_AddNumberToObject(o, "concise_rate", ts.concise_rate);
        cJSON_AddNumberToObject(o, "mean_tokens", ts.mean_len);
        cJSON_AddNumberToObject(o, "tasks", (double)ts.n);
    }
    eval_div_stats ds;
    if (rc == 0 && !base) {
        size_t D = (size_t)(c->div_samples > 0 ? c->div_samples : 1);
        rc = eval_diversity(&em, tasks, nt, c->div_prompts, D, (size_t)c->max_new, (uint64_t)c->seed, &ds, err);
    }
    if (rc == 0 && !base) {
        cJSON_AddNumberToObject(o, "distinct1", ds.distinct1);
        cJSON_AddNumberToObject(o, "distinct2", ds.distinct2);
        cJSON_AddNumberToObject(o, "entropy", ds.entropy);
    }
    if (rc == 0 && ni > 0) rc = calib_one(c, &em, base, items, ni, o, err);
    eval_model_close(&em);
    return rc;
}

static void put_compare(cJSON *o, const compare_result *r) {
    cJSON_AddNumberToObject(o, "win_rate", r->win_rate);
    cJSON_AddNumberToObject(o, "ci_lo", r->ci_lo);
    cJSON_AddNumberToObject(o, "ci_hi", r->ci_hi);
    cJSON_AddNumberToObject(o, "n", (double)r->n);
    cJSON_AddNumberToObject(o, "wins", r->wins);
    cJSON_AddNumberToObject(o, "ties", r->ties);
    cJSON_AddNumberToObject(o, "losses", r->losses);
}

/* Win rate of a model (or best-of-N samples of the SFT model) over the SFT model on held-out prompts, judged by
 * the reward model and by the gold rule (rlhf_judge), into o: the reward model's numbers at the top level
 * (win_rate, ci_lo, ci_hi, n, mean_score, mean_score_sft), the gold rule's under "gold". */
static int win_rate(ctx *x, const char *name, const char *dir, long best_of, const char *prompts, cJSON *o, gk_err *err) {
    const pipe_cfg *c = x->c;
    judge_opts jo;
    judge_opts_default(&jo);
    jo.a_dir = dir; jo.b_dir = x->p_sft_model; jo.rm_dir = x->p_rm; jo.prompts = prompts; jo.best_of = best_of;
    jo.n = c->compare_n; jo.max_new = c->max_new; jo.seed = (uint64_t)c->seed;
    judge_result jr;
    gk_log("pipeline: comparing %s with sft by the reward model and the gold rule on %ld prompts\n", name, c->compare_n);
    if (rlhf_judge(&jo, &jr, err)) return -1;
    put_compare(o, &jr.rm);
    cJSON_AddNumberToObject(o, "mean_score", jr.rm.mean_a);
    cJSON_AddNumberToObject(o, "mean_score_sft", jr.rm.mean_b);
    cJSON_AddNumberToObject(o, "samples_per_reply", (double)(best_of > 1 ? best_of : 1));
    cJSON *g = cJSON_AddObjectToObject(o, "gold");
    put_compare(g, &jr.gold);
    cJSON_AddNumberToObject(g, "mean_score", jr.gold.mean_a);
    cJSON_AddNumberToObject(g, "mean_score_sft", jr.gold.mean_b);
    cJSON_AddNumberToObject(g, "correct", jr.gold_correct_a);
    cJSON_AddNumberToObject(g, "correct_sft", jr.gold_correct_b);
    return 0;
}

/* ---------------------------------------------------------------- strategies (issue 15) */

/* One row of the strategies table: the SFT model on tasks[0..n) under spec, with tools or not. */
static int strategy_row(const pipe_cfg *c, eval_model *em, const char *set, const demo_task *tasks, long n,
                        const char *spec_s, tool_registry *tools, cJSON *rows, gk_err *err) {
    strategy_spec spec;
    if (strategy_parse(spec_s, &spec, err)) return -1;
    strategy_opts so;
    strategy_opts_default(&so);
    so.e = em->e; so.tok = em->tok; so.sp = &em->sp; so.tools = tools;
    so.max_new = (size_t)c->max_new * 2;
    so.samp.seed = (uint64_t)c->seed;
    long right = 0;
    double tokens = 0, secs = 0;
    for (long i = 0; i < n; i++) {
        strategy_opts to = so;
        to.system = tasks[i].system[0] ? tasks[i].system : NULL;
        strategy_result r;
        if (strategy_solve(&spec, &to, tasks[i].user, tasks[i].answer, (size_t)i, &r, err)) return -1;
        right += r.found && strategy_answer_equal(r.extracted, tasks[i].answer);
        tokens += (double)r.tokens; secs += r.seconds;
        strategy_result_free(&r);
    }
    double lo, hi;
    strategy_wilson(right, n, STRATEGY_Z95, &lo, &hi);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "tasks", set);
    cJSON_AddStringToObject(o, "strategy", spec_s);
    cJSON_AddStringToObject(o, "tools", tools ? "calc" : "");
    cJSON_AddNumberToObject(o, "n", (double)n);
    cJSON_AddNumberToObject(o, "correct", (double)right);
    cJSON_AddNumberToObject(o, "accuracy", n ? (double)right / (double)n : 0);
    cJSON_AddNumberToObject(o, "ci_lo", lo);
    cJSON_AddNumberToObject(o, "ci_hi", hi);
    cJSON_AddNumberToObject(o, "tokens_per_task", n ? tokens / (double)n : 0);
    cJSON_AddNumberToObject(o, "seconds_per_task", n ? secs / (double)n : 0);
    cJSON_AddItemToArray(rows, o);
    gk_log("pipeline: strategies: %s %s%s: %.1f%% of %ld\n", set, spec_s, tools ? " + calc" : "", n ? 100.0 * (double)right / (double)n : 0.0, n);
    return 0;
}

/* The talk's trade-off between thinking tokens and accuracy: the SFT model under each strategy on held-out
 * small arithmetic (where greedy is sometimes right), and on big-number arithmetic with and without calc. */
static int eval_strategies(ctx *x, cJSON *j, gk_err *err) {
    const pipe_cfg *c = x->c;
    if (c->strategy_tasks <= 0) return 0;
    long want = c->strategy_tasks, got = 0;
    demo_task *pool = NULL, *big = NULL;
    /* small arithmetic: plain arithmetic tasks of the held-out eval split (a draw of their own) */
    long np = demo_eval_tasks(want * 12, (uint64_t)c->seed * 1000 + 8, NULL, &pool, err);
    if (np < 0) return -1;
    for (long i = 0; i < np && got < want; i++) if (!strcmp(pool[i].skill, "arith")) pool[got++] = pool[i];
    char *tp = gk_path_join(x->p_data, "tool_eval.jsonl");
    long nb = demo_read_eval(tp, &big, err);
    free(tp);
    if (nb < 0) { free(pool); return -1; }
    if (nb > want) nb = want;
    eval_model em;
    tool_registry *calc = tools_new();
    int rc = tools_enable(calc, "calc", err);
    if (!rc) rc = eval_model_open(&em, x->p_sft_model, NULL, 1, 1, 5, err);
    if (!rc) {
        cJSON *rows = cJSON_AddArrayToObject(j, "strategies");
        static const char *const SMALL[] = {"greedy", "cot", "sc:5", "tot:3,2,2", "reflect:1"};
        gk_log("pipeline: strategies on %ld small and %ld big arithmetic tasks (sft model)\n", got, nb);
        for (size_t i = 0; i < sizeof SMALL / sizeof *SMALL && !rc; i++)
            rc = strategy_row(c, &em, "arith", pool, got, SMALL[i], NULL, rows, err);
        if (!rc) rc = strategy_row(c, &em, "bigarith", big, nb, "greedy", NULL, rows, err);
        if (!rc && tools_calc_available()) rc = strategy_row(c, &em, "bigarith", big, nb, "greedy", calc, rows, err);
        eval_model_close(&em);
    }
    tools_free(calc);
    free(pool); free(big);
    return rc;
}

static int st_eval(ctx *x, cJSON *j, gk_err *err) {
    const pipe_cfg *c = x->c;
    demo_task *tasks = NULL;
    char *ev = gk_path_join(x->p_data, "eval.jsonl");
    long nt = demo_read_eval(ev, &tasks, err);
    if (nt < 0) { free(ev); return -1; }
    if (c->eval_tasks > 0 && nt > c->eval_tasks) nt = c->eval_tasks;
    cJSON *gs = pipe_stage_result(c, "grpo");
    int has_grpo = gs && !cJSON_IsTrue(cJSON_GetObjectItem(gs, "skipped"));
    cJSON_Delete(gs);
    struct { const char *name; const char *dir; int base; } models[] = {
        { "base", x->p_base, 1 }, { "sft", x->p_sft_model, 0 }, { "ppo", x->p_ppo, 0 }, { "dpo", x->p_dpo, 0 }, { "grpo", x->p_grpo, 0 },
    };
    size_t nmodels = has_grpo ? 5 : 4;
    cJSON *acc = cJSON_AddObjectToObject(j, "models");
    unsigned char *right = gk_calloc((size_t)(nt > 0 ? nt : 1) * nmodels, 1);   /* [model][task]: for paired differences */
    demo_mc *items = NULL;
    long ni = c->calib_items > 0 ? demo_mc_items(c->calib_items, (uint64_t)c->seed, &items, err) : 0;
    int rc = ni < 0 ? -1 : 0;
    for (size_t mi = 0; rc == 0 && mi < nmodels; mi++) {
        gk_log("pipeline: evaluating %s on %ld held-out tasks\n", models[mi].name, nt);
        rc = eval_one(c, models[mi].dir, models[mi].base, tasks, nt, items, ni, cJSON_AddObjectToObject(acc, models[mi].name),
                      right + mi * (size_t)nt, err);
    }
    free(items);
    /* each RL model's accuracy minus the SFT model's on the same tasks, with a paired 95% interval */
    for (size_t mi = 2; rc == 0 && mi < nmodels && nt > 0; mi++) {
        double d, lo, hi;
        rlhf_paired_diff(right + mi * (size_t)nt, right + (size_t)nt, (size_t)nt, 1.959964, &d, &lo, &hi);
        cJSON *o = cJSON_GetObjectItem(acc, models[mi].name);
        cJSON_AddNumberToObject(o, "gain_vs_sft", d);
        cJSON_AddNumberToObject(o, "gain_ci_lo", lo);
        cJSON_AddNumberToObject(o, "gain_ci_hi", hi);
    }
    free(right);
    /* win rates against the SFT model, by the reward model and the gold rule; best-of-N of SFT as the baseline */
    cJSON *wr = cJSON_AddObjectToObject(j, "win_rate_vs_sft");
    if (rc == 0) rc = win_rate(x, "ppo", x->p_ppo, 1, ev, cJSON_AddObjectToObject(wr, "ppo"), err);
    if (rc == 0) rc = win_rate(x, "dpo", x->p_dpo, 1, ev, cJSON_AddObjectToObject(wr, "dpo"), err);
    if (rc == 0 && has_grpo) rc = win_rate(x, "grpo", x->p_grpo, 1, ev, cJSON_AddObjectToObject(wr, "grpo"), err);
    if (rc == 0 && c->best_of > 1) {
        char nm[32]; snprintf(nm, sizeof nm, "best_of_%ld", c->best_of);
        rc = win_rate(x, nm, x->p_sft_model, c->best_of, ev, cJSON_AddObjectToObject(wr, "best_of_n"), err);
    }
    if (rc == 0) rc = eval_strategies(x, j, err);
    /* retrieval (issue 16): recall@k of the demo document set, BM25 */
    /* and the SFT model's and PPO's answers about the documents without and with retrieval */
    const char *rag_names[2] = { "sft", "ppo" }, *rag_dirs[2] = { x->p_sft_model, x->p_ppo };
    if (rc == 0) rc = pipe_retrieval(c, x->p_data, rag_names, rag_dirs, 2, cJSON_AddObjectToObject(j, "retrieval"), err);
    free(tasks);
    free(ev);
    return rc;
}

/* ---------------------------------------------------------------- driver */

static const char *USAGE =
"usage: gptkit pipeline [CONFIG] [--run-dir DIR] [--fast] [--from STAGE] [--to STAGE] [--print-config]\n"
"\n"
"Runs the whole chain on the built-in demo data: corpus -> tokenizer -> shards -> data -> pretrain -> sft ->\n"
"rm -> ppo -> dpo -> grpo -> eval -> report. Each stage is skipped when its output is already complete, and an\n"
"interrupted training stage resumes from its last checkpoint, so rerunning after Ctrl-C continues.\n"
"Results: RUN/report.md (with plots under RUN/plots/) and RUN/report.json.\n"
"\n"
"  CONFIG            a 'key = value' file over the built-in defaults (docs/pipeline.md; configs/)\n"
"  --run-dir DIR     override run_dir (default runs/demo)\n"
"  --fast            a tiny configuration that runs end to end in a minute or two (for tests)\n"
"  --from STAGE      redo STAGE and everything after it\n"
"  --to STAGE        stop after STAGE (the report covers the stages done so far)\n"
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
    { "grpo", st_grpo, "GRPO on the RL prompts, rewarded by answer checks" },
    { "eval", st_eval, "evaluate every stage's model" },
};
#define NSTAGES (sizeof STAGES / sizeof STAGES[0])

/* Index of the stage called name, -1 if there is none. */
static long stage_index(const char *name) {
    for (size_t i = 0; i < NSTAGES; i++) if (!strcmp(STAGES[i].name, name)) return (long)i;
    return -1;
}

static void fast_config(pipe_cfg *c) {
    c->vocab_size = 512;
    c->n_sft = 600; c->n_sft_val = 50; c->n_prefs = 300; c->n_prefs_val = 50; c->n_prompts = 100; c->n_eval = 40;
    c->pt.n_layer = 2; c->pt.n_head = 2; c->pt.n_embd = 64; c->pt.n_ctx = 128;
    c->pt.B = 8; c->pt.T = 64; c->pt.steps = 40; c->pt.sched.warmup = 5; c->pt.val_every = 20;
    c->sft.epochs = 1; c->sft.B = 16;
    c->rm.epochs = 1; c->rm.batch = 16;
    c->ppo.iters = 3; c->ppo.batch_prompts = 4; c->ppo.samples = 2; c->ppo.max_new = 12;
    c->dpo.epochs = 1;
    c->grpo.iters = 2; c->grpo.batch_prompts = 2; c->grpo.group = 4; c->grpo.max_new = 12; c->grpo.minibatch = 8;
    c->best_of = 2;
    c->eval_tasks = 20; c->div_prompts = 4; c->div_samples = 4; c->compare_n = 10; c->max_new = 12;
    c->n_tool_eval = 10; c->strategy_tasks = 4;
    c->rag_questions = 8;
    c->calib_items = 16;
    c->sft_rag = 0.2;   /* the demo's default is 0; the test config keeps the reading exercises' wiring exercised */
}

int cmd_pipeline(int argc, char **argv) {
    cli_args a;
    cli_args_init(&a, argc, argv, USAGE);
    const char *f, *cfgpath = NULL, *rundir = NULL, *from = NULL, *to = NULL;
    int fast = 0, print = 0;
    while ((f = cli_next(&a))) {
        if (cli_is(f, "--run-dir")) rundir = cli_str(&a, f);
        else if (cli_is(f, "--fast")) fast = 1;
        else if (cli_is(f, "--from")) from = cli_str(&a, f);
        else if (cli_is(f, "--to")) to = cli_str(&a, f);
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
    long from_idx = from ? stage_index(from) : -1, to_idx = to ? stage_index(to) : (long)NSTAGES - 1;
    if (from && from_idx < 0) cli_usage_error(&a, "--from: unknown stage '%s'", from);
    if (to && to_idx < 0) cli_usage_error(&a, "--to: unknown stage '%s'", to);
    if (from && from_idx > to_idx) cli_usage_error(&a, "--from %s comes after --to %s", from, to);
    gk_dir_lock *lock = NULL;   /* one pipeline per run directory */
    if (gk_dir_lock_take(c.run_dir, &lock, &err)) { fprintf(stderr, "gptkit pipeline: %s\n", err.msg); return 1; }
    char *stages_dir = gk_path_join(c.run_dir, "stages");
    if (gk_mkdir_p(stages_dir, &err)) {
        fprintf(stderr, "gptkit pipeline: %s\n", err.msg); free(stages_dir); gk_dir_unlock(lock); return 1;
    }
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
    x.p_sft_model = run_path(&c, c.sft.lora.rank > 0 ? "sft_merged" : "sft");
    x.p_rm = run_path(&c, "rm"); x.p_ppo = run_path(&c, "ppo"); x.p_dpo = run_path(&c, "dpo"); x.p_grpo = run_path(&c, "grpo");
    double t0 = gk_now();
    int rc = 0;
    gk_sigint_install();
    kern_backend *be = kern_backend_create(NULL, NULL);   /* what the stages' models run on (the defaults) */
    gk_log("pipeline: run directory %s; backend %s, %d threads\n", c.run_dir, kern_backend_name(be), gk_num_threads());
    kern_backend_free(be);
    for (size_t i = 0; (long)i <= to_idx && rc == 0; i++) {
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
            /* a redone training stage starts over */
            if (i < NTRAIN_DIRS && TRAIN_DIRS[i]) { p = run_path(&c, TRAIN_DIRS[i]); stage_dir_forget(p); free(p); }
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
        if (i < NTRAIN_DIRS && TRAIN_DIRS[i]) {   /* what the training cost: the stage skeleton's last "resources" event */
            char *d = run_path(&c, TRAIN_DIRS[i]), *mp = gk_path_join(d, "metrics.jsonl");
            cJSON *res = pipe_read_event(mp, "resources");
            if (res) cJSON_AddItemToObject(j, "resources", res);
            free(d); free(mp);
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
    free(x.p_corpus); free(x.p_tok); free(x.p_shards); free(x.p_data); free(x.p_base); free(x.p_sft); free(x.p_sft_model);
    free(x.p_rm); free(x.p_ppo); free(x.p_dpo); free(x.p_grpo);
    gk_dir_unlock(lock);
    return rc;
}
