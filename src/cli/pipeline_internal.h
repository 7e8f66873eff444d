/* pipeline_internal.h: shared between cmd_pipeline.c (stages) and pipeline_report.c (report card).
 * Private to src/cli. */
#ifndef GK_PIPELINE_INTERNAL_H
#define GK_PIPELINE_INTERNAL_H
#include <stddef.h>
#include <stdio.h>
#include <cjson/cJSON.h>
#include "core/core.h"
#include "train/train.h"

/* The pipeline's configuration: every knob of every stage, with built-in defaults (the demo) that a
 * `key = value` file overrides. Documented in docs/pipeline.md; configs/ holds examples. */
typedef struct {
    char   run_dir[1024];
    long   seed;
    char   precision[8];      /* "fp32" | "bf16": matmul precision of pretrain, SFT, RM and DPO */
    /* tokenizer + shards */
    long   vocab_size;
    double val_fraction;
    /* demo data */
    long   n_sft, n_sft_val, n_prefs, n_prefs_val, n_prompts, n_eval;
    double pref_arith;
    double pref_drop;              /* content contrasts in the preference data (issue 21) */
    double sft_tools;         /* share of SFT conversations that teach the calc tool (issue 15) */
    double sft_ramble, sft_slip;   /* imperfect demonstrations: rambling plain replies, format slips (issue 21) */
    long   n_tool_eval;       /* held-out big-number arithmetic tasks (tool_eval.jsonl) */
    double sft_rag;           /* share of SFT conversations that read a source before the question (issue 16) */
    /* the training stages: every option of their tables (train.h) marked TRAIN_OPT_PIPE is a key,
     * "<stage>.<name>" or "model.<name>"; paths, the seed and the precision are set by the pipeline */
    pretrain_opts pt;
    sft_opts      sft;
    rm_opts       rm;
    ppo_opts      ppo;
    dpo_opts      dpo;
    grpo_opts     grpo;       /* grpo.iters = 0 skips the stage */
    /* evaluation */
    long   eval_tasks, fewshot_k, div_prompts, div_samples, compare_n, max_new, calib_items;
    long   strategy_tasks;    /* tasks per row of the strategies table (0 = no table) */
    long   best_of;           /* N of the best-of-N row of the win rates (0 or 1 = no row) */
    long   rag_questions;     /* questions about the demo documents answered without and with retrieval (0 = none) */
} pipe_cfg;

void pipe_cfg_default(pipe_cfg *c);
/* Reads `key = value` lines (# comments, blank lines) over the defaults. Errors name file:line:key. */
int  pipe_cfg_load(pipe_cfg *c, const char *path, gk_err *err);
/* Writes the effective configuration (all keys) as a config file. */
void pipe_cfg_write(const pipe_cfg *c, FILE *f);

/* Report card: reads RUN/stages/<stage>.json (the results each stage recorded) and the stages'
 * metrics.jsonl, writes RUN/report.md, RUN/report.json and RUN/plots/<name>.svg. */
int pipe_report(const pipe_cfg *c, gk_err *err);

/* (step + 1, field) points of a stage's metrics.jsonl. Lines appended by a resumed run repeat steps: a step
 * not after the previous one drops the points it supersedes, so a run killed and resumed reads as one run. */
typedef struct { double *x, *y; size_t n, cap; } pipe_series;
void pipe_read_series(const char *path, const char *field, pipe_series *s);
/* The last line of a metrics JSONL whose "event" is `event` (a new object, the caller's), or NULL. */
cJSON *pipe_read_event(const char *path, const char *event);
void pipe_series_free(pipe_series *s);

/* A line chart as a standalone SVG: up to 4 series of (x, y) points, with axes and labels. */
typedef struct { const char *name; const double *x, *y; size_t n; } svg_series;
int svg_line_chart(const char *path, const char *title, const char *xlabel, const char *ylabel,
                   const svg_series *s, size_t ns, gk_err *err);

/* The retrieval check of the eval stage (pipeline_retrieval.c; recorded as "retrieval" in stages/eval.json):
 * retrieval recall of the demo document set, BM25, and the accuracy of each of the n_models chat models
 * (model_dirs, reported under model_names) on c->rag_questions questions about it, without and with the top
 * source in the prompt. data_dir: the run's data directory. */
int pipe_retrieval(const pipe_cfg *c, const char *data_dir, const char *const *model_names, const char *const *model_dirs,
                   size_t n_models, cJSON *j, gk_err *err);
/* The document file of the retrieval check, DATA_DIR/rag/docs.jsonl (malloc'd): the sources the SFT data's
 * reading exercises name, so that they look like the prompts of the check. */
char *pipe_rag_docs_path(const char *data_dir);

/* Loads RUN/stages/<stage>.json (NULL if the stage has not completed). */
cJSON *pipe_stage_result(const pipe_cfg *c, const char *stage);
#endif
