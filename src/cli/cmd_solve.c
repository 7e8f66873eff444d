/* cmd_solve.c: gptkit solve — answers a file of tasks with checkable answers under one strategy (and tools),
 * and reports the accuracy with a 95% Wilson interval, the tokens generated and the seconds per task. */
#include "cli/cli.h"
#include "core/core.h"
#include "eval/eval.h"
#include "infer/strategy.h"
#include "tools/tools.h"

#include <cjson/cJSON.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *USAGE =
"usage: gptkit solve --model DIR --tasks FILE [--strategy S] [--tools calc,python] [--json] [options]\n"
"\n"
"Answers every task of FILE (JSONL: {\"prompt\": TEXT, \"answer\": TEXT}; demo eval files work as they are) and\n"
"prints each task's extracted answer, then the accuracy with its 95% interval. An answer is right when it equals\n"
"the expected one as a number (when both parse as numbers) or as trimmed text. docs/strategies.md explains each\n"
"strategy and the tools.\n"
"\n"
"  --model DIR           checkpoint (a chat model gets chat turns; a base model a Q/A document)\n"
"  --tasks FILE          the tasks\n"
"  --strategy S          greedy (default) | fewshot:K | cot | sc:N | tot:K,B,D | reflect:R\n"
"  --tools LIST          tools the model may call: calc, python (comma-separated; default none)\n"
"  --examples FILE       few-shot examples (same format; default: other tasks of --tasks)\n"
"  --extract RULE        auto (default: number for a numeric answer, word for a one-word one, else text) | number |\n"
"                        choice | text | word |\n"
"                        regex:RE (POSIX extended; group 1 if any)\n"
"  --system TEXT         system message for every task (a task's own system message wins)\n"
"  --base                prompt as a base model (Q/A document) even if the checkpoint knows the chat format\n"
"  --limit N             only the first N tasks\n"
"  --max-new N           tokens per generation segment (default 128)\n"
"  --temperature T       sampling temperature of sc and tot proposals (default 0.7)\n"
"  --top-k K  --top-p P  --min-p P   sampling filters of sc and tot\n"
"  --seed S              sampling seed (default 1337)\n"
CLI_CONSTRAINT_HELP
"  --json                one JSON object per task, then a summary object (below)\n"
"  --tokenizer PATH      override the tokenizer recorded in the checkpoint\n"
"  -q, --quiet           no progress on stderr\n"
"\n"
"--json lines: {\"prompt\",\"answer\",\"extracted\",\"correct\",\"tokens\",\"seconds\",\"confidence\",\"tool_calls\",\n"
"\"reply\"} per task, then {\"strategy\",\"accuracy\",\"n\",\"correct\",\"ci95\":[lo,hi],\"tokens_per_task\",\n"
"\"seconds_per_task\"}.\n";

static volatile int g_cancel = 0;
static void on_sigint(int sig) { (void)sig; g_cancel = 1; }

static int parse_extract(const char *s, answer_rule *r) {
    memset(r, 0, sizeof *r);
    if (!strcmp(s, "auto")) r->kind = ANSWER_AUTO;
    else if (!strcmp(s, "number")) r->kind = ANSWER_NUMBER;
    else if (!strcmp(s, "choice")) r->kind = ANSWER_CHOICE;
    else if (!strcmp(s, "text")) r->kind = ANSWER_TEXT;
    else if (!strcmp(s, "word")) r->kind = ANSWER_WORD;
    else if (!strncmp(s, "regex:", 6) && s[6]) { r->kind = ANSWER_REGEX; r->regex = s + 6; }
    else return -1;
    return 0;
}

typedef struct {
    const char *model, *tasks, *examples, *tools, *system, *tok;
    strategy_spec spec;
    char spec_text[64];
    answer_rule rule;
    int json, base;
    long limit;
    size_t max_new;
    infer_sampling samp;
    cli_constraint cons;
} solve_args;

static void print_task(const solve_args *a, const strategy_example *t, const strategy_result *r, int correct, size_t i) {
    if (a->json) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "prompt", t->prompt);
        cJSON_AddStringToObject(o, "answer", t->answer);
        if (r->found) cJSON_AddStringToObject(o, "extracted", r->extracted);
        else cJSON_AddNullToObject(o, "extracted");
        cJSON_AddBoolToObject(o, "correct", correct);
        cJSON_AddNumberToObject(o, "tokens", (double)r->tokens);
        cJSON_AddNumberToObject(o, "seconds", r->seconds);
        cJSON_AddNumberToObject(o, "confidence", r->confidence);
        cJSON_AddNumberToObject(o, "tool_calls", (double)r->tool_calls);
        cJSON_AddStringToObject(o, "reply", r->text);
        char *s = cJSON_PrintUnformatted(o);
        puts(s);
        cJSON_free(s);
        cJSON_Delete(o);
    } else {
        printf("%4zu %s %-24s expected %-16s %5zu tokens %6.2f s%s\n", i + 1, correct ? "ok " : "BAD",
               r->found ? r->extracted : "(no answer)", t->answer, r->tokens, r->seconds,
               r->tool_calls ? "  (tools)" : "");
    }
    fflush(stdout);
}

static void print_summary(const solve_args *a, long right, long n, double tokens, double secs) {
    double lo, hi;
    strategy_wilson(right, n, STRATEGY_Z95, &lo, &hi);
    double acc = n ? (double)right / (double)n : 0;
    if (a->json) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "strategy", a->spec_text);
        cJSON_AddStringToObject(o, "tools", a->tools ? a->tools : "");
        cJSON_AddNumberToObject(o, "accuracy", acc);
        cJSON_AddNumberToObject(o, "n", (double)n);
        cJSON_AddNumberToObject(o, "correct", (double)right);
        cJSON *ci = cJSON_AddArrayToObject(o, "ci95");
        cJSON_AddItemToArray(ci, cJSON_CreateNumber(lo));
        cJSON_AddItemToArray(ci, cJSON_CreateNumber(hi));
        cJSON_AddNumberToObject(o, "tokens_per_task", n ? tokens / (double)n : 0);
        cJSON_AddNumberToObject(o, "seconds_per_task", n ? secs / (double)n : 0);
        char *s = cJSON_PrintUnformatted(o);
        puts(s);
        cJSON_free(s);
        cJSON_Delete(o);
    } else {
        printf("%s%s%s: accuracy %.1f%% (%ld/%ld), 95%% interval [%.1f%%, %.1f%%]; %.1f tokens and %.2f s per task\n",
               a->spec_text, a->tools ? " with tools " : "", a->tools ? a->tools : "", 100 * acc, right, n,
               100 * lo, 100 * hi, n ? tokens / (double)n : 0, n ? secs / (double)n : 0);
    }
}

static void parse_args(int argc, char **argv, solve_args *a) {
    cli_args c;
    cli_args_init(&c, argc, argv, USAGE);
    memset(a, 0, sizeof *a);
    const char *strat = "greedy", *f;
    a->max_new = 128;
    infer_sampling_default(&a->samp);
    a->samp.temperature = 0.7f;
    cli_constraint_init(&a->cons);
    while ((f = cli_next(&c))) {
        if (cli_is(f, "--model")) a->model = cli_str(&c, f);
        else if (cli_is(f, "--tasks")) a->tasks = cli_str(&c, f);
        else if (cli_is(f, "--strategy")) strat = cli_str(&c, f);
        else if (cli_is(f, "--tools")) a->tools = cli_str(&c, f);
        else if (cli_is(f, "--examples")) a->examples = cli_str(&c, f);
        else if (cli_is(f, "--system")) a->system = cli_str(&c, f);
        else if (cli_is(f, "--tokenizer")) a->tok = cli_str(&c, f);
        else if (cli_is(f, "--extract")) { if (parse_extract(cli_str(&c, f), &a->rule)) cli_usage_error(&c, "--extract: auto, number, choice, text, word or regex:RE"); }
        else if (cli_is(f, "--base")) a->base = 1;
        else if (cli_is(f, "--json")) a->json = 1;
        else if (cli_is(f, "--limit")) { a->limit = cli_long(&c, f); if (a->limit < 1) cli_usage_error(&c, "--limit must be >= 1"); }
        else if (cli_is(f, "--max-new")) { long v = cli_long(&c, f); if (v < 1) cli_usage_error(&c, "--max-new must be >= 1"); a->max_new = (size_t)v; }
        else if (cli_sampling_flag(&c, f, &a->samp)) {}
        else if (cli_constraint_flag(&c, f, &a->cons)) {}
        else if (cli_is(f, "-q", "--quiet")) gk_verbose = 0;
        else cli_unknown(&c, f);
    }
    if (!a->model) cli_usage_error(&c, "--model DIR is required");
    if (!a->tasks) cli_usage_error(&c, "--tasks FILE is required");
    gk_err err;
    if (strategy_parse(strat, &a->spec, &err)) cli_usage_error(&c, "--strategy: %s", err.msg);
    strategy_str(&a->spec, a->spec_text, sizeof a->spec_text);
    if (infer_sampling_validate(&a->samp, &err)) cli_usage_error(&c, "%s", err.msg);
    if (a->tools) {
        tool_registry *r = tools_new();
        int bad = tools_enable(r, a->tools, &err);
        tools_free(r);
        if (bad) cli_usage_error(&c, "%s", err.msg);
    }
}

/* Opens the model as a chat model when it can be one (unless --base), else as a base model. */
static int open_model(const solve_args *a, eval_model *em, size_t seqs, int *chat, gk_err *err) {
    *chat = 0;
    if (!a->base) {
        gk_err e2;
        if (!eval_model_open(em, a->model, a->tok, 1, 1, seqs, &e2)) { *chat = 1; return 0; }
    }
    return eval_model_open(em, a->model, a->tok, 1, 0, seqs, err);
}

int cmd_solve(int argc, char **argv) {
    solve_args a;
    parse_args(argc, argv, &a);
    gk_err err;
    int rc = 1, chat = 0;
    strategy_example *tasks = NULL, *ex = NULL;
    size_t nt = 0, nx = 0, n_loaded = 0;
    eval_model em;
    memset(&em, 0, sizeof em);
    tool_registry *reg = NULL;
    constrain_vocab *cv = NULL;
    constrain *cons = NULL;
    if (strategy_tasks_load(a.tasks, &tasks, &nt, &err)) goto out;
    n_loaded = nt;
    if (a.examples && strategy_tasks_load(a.examples, &ex, &nx, &err)) goto out;
    if (a.limit && (size_t)a.limit < nt) nt = (size_t)a.limit;
    size_t seqs = a.spec.kind == STRAT_SC ? (size_t)a.spec.n : a.spec.kind == STRAT_TOT ? (size_t)a.spec.k : 1;
    if (open_model(&a, &em, seqs, &chat, &err)) goto out;
    if (cli_constraint_build(&a.cons, em.tok, &cv, &cons, &err)) goto out;
    if (a.tools) {
        reg = tools_new();
        if (tools_enable(reg, a.tools, &err)) goto out;
        if (!chat) gk_log("gptkit solve: %s has no chat format, so it cannot call tools; answering without them\n", a.model);
    }
    strategy_opts so;
    strategy_opts_default(&so);
    so.e = em.e; so.tok = em.tok; so.sp = chat ? &em.sp : NULL;
    so.tools = chat ? reg : NULL;
    so.max_new = a.max_new;
    so.samp = a.samp;
    so.examples = ex ? ex : tasks; so.n_examples = ex ? nx : nt;
    so.rule = a.rule;
    so.cancel = &g_cancel;
    so.grammar = cons;
    signal(SIGINT, on_sigint);
    long right = 0, done = 0;
    double tokens = 0, secs = 0, t0 = gk_now();
    for (size_t i = 0; i < nt && !g_cancel; i++) {
        strategy_opts to = so;
        to.system = tasks[i].system ? tasks[i].system : a.system;
        strategy_result r;
        if (strategy_solve(&a.spec, &to, tasks[i].prompt, tasks[i].answer, i, &r, &err)) {
            gk_err_prefix(&err, "%s: task %zu", a.tasks, i + 1);
            goto out;
        }
        if (g_cancel) { strategy_result_free(&r); break; }
        int ok = r.found && strategy_answer_equal(r.extracted, tasks[i].answer);
        right += ok; done++;
        tokens += (double)r.tokens; secs += r.seconds;
        print_task(&a, &tasks[i], &r, ok, i);
        strategy_result_free(&r);
        double el = gk_now() - t0;
        char eta[32];
        if (a.json || gk_verbose > 1) gk_log("\r[solve] %zu/%zu tasks, %.2f tasks/s, ETA %s   ", i + 1, nt, (double)(i + 1) / el,
                                            gk_fmt_duration(el / (double)(i + 1) * (double)(nt - i - 1), eta, sizeof eta));
    }
    if (a.json || gk_verbose > 1) gk_log("\n");
    if (g_cancel) { gk_log("gptkit solve: interrupted after %ld tasks\n", done); }
    print_summary(&a, right, done, tokens, secs);
    rc = g_cancel ? 130 : 0;
out:
    if (rc == 1) fprintf(stderr, "gptkit solve: %s\n", err.msg);
    tools_free(reg);
    eval_model_close(&em);
    constrain_free(cons);
    constrain_vocab_free(cv);
    strategy_tasks_free(tasks, n_loaded);
    strategy_tasks_free(ex, nx);
    return rc;
}
