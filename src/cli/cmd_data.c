/* cmd_data.c: gptkit data — write the built-in demo datasets (src/data/demo*.c, docs/demo-data.md).
 *
 *   gptkit data sft|prefs|prompts|eval [--n N] [--seed S] --out FILE
 *   gptkit data corpus --out TXT [--from GZ]
 *   gptkit data check --check C --expected E --response R
 */
#include "cli/cli.h"
#include "core/core.h"
#include "data/data.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char USAGE[] =
    "usage: gptkit data KIND [options]   (gptkit data KIND --help for each)\n"
    "\n"
    "Writes the built-in demo data. Every generated file is a pure function of --n and --seed.\n"
    "\n"
    "kinds:\n"
    "  sft      chat conversations for supervised finetuning        {\"messages\":[...]}\n"
    "  prefs    preference pairs and K=3..4 rankings for the RM     {\"prompt\",\"chosen\",\"rejected\"} / {\"prompt\",\"ranked\"}\n"
    "  prompts  RL prompts for PPO                                  {\"prompt\"}\n"
    "  eval     held-out tasks with checkable answers               {\"prompt\",\"answer\",\"skill\",\"check\",\"reference\"}\n"
    "  tool-eval  held-out big-number arithmetic for the calc tool  (same shape as eval)\n"
    "  corpus   extract the pretraining corpus (KJV Bible, data/corpus/kjv.txt.gz) to plain text\n"
    "  check    grade one response the way the report card does\n"
    "\n"
    "Prompts of the four generated kinds never overlap (a hash of the prompt text picks its split).\n"
    "See docs/demo-data.md.\n";

static const char USAGE_GEN[] =
    "usage: gptkit data %s [--n N] [--seed S] --out FILE\n"
    "\n"
    "%s\n"
    "\n"
    "  --n N        number of lines (default %ld)\n"
    "  --seed S     generator seed, a non-negative integer (default 1)\n"
    "  --out FILE   output JSONL (written atomically); '-' for stdout\n"
    "%s";

static const char USAGE_CORPUS[] =
    "usage: gptkit data corpus --out TXT [--from GZ]\n"
    "\n"
    "Decompresses the built-in pretraining corpus (the King James Bible, one verse per line, public domain;\n"
    "see data/README.md) to plain text.\n"
    "\n"
    "  --out TXT   output text file (written atomically)\n"
    "  --from GZ   gzip file to extract instead (default: data/corpus/kjv.txt.gz, looked up under $GK_ROOT,\n"
    "              the current directory, then next to the gptkit binary)\n";

static const char USAGE_CHECK[] =
    "usage: gptkit data check --check C --expected E --response R\n"
    "\n"
    "Prints 1 and exits 0 if R is a correct answer, else prints 0 and exits 1, using the eval checker.\n"
    "Also prints the preference rule's verdict (correct, follows_format, concise, score 0..7).\n"
    "\n"
    "  --check C     number | contains | upper | exact | json (or a skill: arith, fact, style)\n"
    "  --expected E  the task's answer\n"
    "  --response R  the reply to grade\n";

typedef long (*gen_fn)(const char *, long, uint64_t, const demo_opts *, gk_err *);

typedef struct {
    const char *name, *what, *extra;
    long default_n;
    gen_fn fn;
} gen_kind;

static const gen_kind KINDS[] = {
    {"sft", "Chat conversations in the OpenAI shape teaching arithmetic, facts, output formats and a concise\n"
            "style; a few replies ramble (--ramble) so the reward model has something to fix.", 
     "  --ramble F   fraction of plain replies with a filler sentence (default 0.15)\n"
     "  --slip F     fraction of format-mode replies that ignore the format (default 0)\n"
     "  --multi F    fraction of two-exchange conversations (default 0.15)\n"
     "  --tools F    fraction of big-number arithmetic conversations that call the calc tool (default 0)\n"
     "  --rag F      fraction of conversations answering from a source placed before the question, as\n"
     "               `chat --retrieve` places it (generated documents, never the evaluation set's; default 0)\n"
     "  --rag-source FILE  the document file those sources name (default docs.jsonl)\n", 3000, demo_gen_sft},
    {"prefs", "Preferences labelled by the hidden rule: correct beats wrong, follows the format beats ignores\n"
              "it, concise beats rambling. A mix of pairs and rankings (best first).",
     "  --rank F     fraction of lines that are rankings rather than pairs (default 0.4)\n"
     "  --arith F    chance an arithmetic prompt is kept (default 1; the pipeline uses 0.25)\n"
     "  --drop F     fraction of lines that are content contrasts: a rambling reply keeping the answer beats\n"
     "               one that dropped it (\"The capital of France is.\"; default 0)\n", 3000, demo_gen_prefs},
    {"prompts", "RL prompts from the same skills as the SFT data, disjoint instances.", "", 500, demo_gen_prompts},
    {"eval", "Held-out evaluation tasks with the answer and how to check it (no duplicate prompts).", "", 300, demo_gen_eval},
    {"tool-eval", "Held-out big-number arithmetic (operands of 4-12 digits) for the tools (docs/strategies.md).", "", 200, demo_gen_tool_eval},
};

static double frac_arg(cli_args *a, const char *flag) {
    double v = cli_double(a, flag);
    if (!(v >= 0.0 && v <= 1.0)) cli_usage_error(a, "%s must be in [0, 1], got %g", flag, v);
    return v;
}

static int run_gen(const gen_kind *k, int argc, char **argv) {
    char usage[4096];
    snprintf(usage, sizeof usage, USAGE_GEN, k->name, k->what, k->default_n, k->extra);
    cli_args a; cli_args_init(&a, argc, argv, usage);
    char cmd[32]; snprintf(cmd, sizeof cmd, "data %s", k->name); a.cmd = cmd;
    long n = k->default_n, seed = 1;
    const char *out = NULL;
    demo_opts o; demo_opts_default(&o);
    const char *f;
    while ((f = cli_next(&a))) {
        if (cli_is(f, "--n", "-n")) n = cli_long(&a, f);
        else if (cli_is(f, "--seed")) seed = cli_long(&a, f);
        else if (cli_is(f, "--out", "-o")) out = cli_str(&a, f);
        else if (k->fn == demo_gen_sft && cli_is(f, "--ramble")) o.sft_ramble = frac_arg(&a, f);
        else if (k->fn == demo_gen_sft && cli_is(f, "--slip")) o.sft_slip = frac_arg(&a, f);
        else if (k->fn == demo_gen_sft && cli_is(f, "--multi")) o.sft_multi = frac_arg(&a, f);
        else if (k->fn == demo_gen_sft && cli_is(f, "--tools")) o.sft_tools = frac_arg(&a, f);
        else if (k->fn == demo_gen_sft && cli_is(f, "--rag")) o.sft_rag = frac_arg(&a, f);
        else if (k->fn == demo_gen_sft && cli_is(f, "--rag-source")) o.rag_source = cli_str(&a, f);
        else if (k->fn == demo_gen_prefs && cli_is(f, "--rank")) o.pref_rank = frac_arg(&a, f);
        else if (k->fn == demo_gen_prefs && cli_is(f, "--arith")) o.pref_arith = frac_arg(&a, f);
        else if (k->fn == demo_gen_prefs && cli_is(f, "--drop")) o.pref_drop = frac_arg(&a, f);
        else cli_unknown(&a, f);
    }
    if (!out) cli_usage_error(&a, "--out FILE is required ('-' for stdout)");
    if (n < 1 || n > 10000000) cli_usage_error(&a, "--n must be in 1..10000000, got %ld", n);
    if (seed < 0) cli_usage_error(&a, "--seed must be a non-negative integer, got %ld", seed);
    gk_err err;
    long got = k->fn(out, n, (uint64_t)seed, &o, &err);
    if (got < 0) { fprintf(stderr, "gptkit data %s: %s\n", k->name, err.msg); return 1; }
    if (strcmp(out, "-") != 0) gk_log("gptkit data %s: wrote %ld lines to %s (seed %ld)\n", k->name, got, out, seed);
    return 0;
}

static int run_corpus(int argc, char **argv) {
    cli_args a; cli_args_init(&a, argc, argv, USAGE_CORPUS);
    a.cmd = "data corpus";
    const char *out = NULL, *from = NULL;
    const char *f;
    while ((f = cli_next(&a))) {
        if (cli_is(f, "--out", "-o")) out = cli_str(&a, f);
        else if (cli_is(f, "--from")) from = cli_str(&a, f);
        else cli_unknown(&a, f);
    }
    if (!out) cli_usage_error(&a, "--out TXT is required");
    if (!strcmp(out, "-")) cli_usage_error(&a, "--out needs a file (stdout is not supported; use zcat)");
    gk_err err;
    if (demo_corpus_extract(from, out, &err) != 0) { fprintf(stderr, "gptkit data corpus: %s\n", err.msg); return 1; }
    gk_log("gptkit data corpus: extracted to %s\n", out);
    return 0;
}

static int run_check(int argc, char **argv) {
    cli_args a; cli_args_init(&a, argc, argv, USAGE_CHECK);
    a.cmd = "data check";
    const char *check = NULL, *expected = NULL, *response = NULL;
    const char *f;
    while ((f = cli_next(&a))) {
        if (cli_is(f, "--check")) check = cli_str(&a, f);
        else if (cli_is(f, "--expected")) expected = cli_str(&a, f);
        else if (cli_is(f, "--response")) response = cli_str(&a, f);
        else cli_unknown(&a, f);
    }
    if (!check || !expected || !response) cli_usage_error(&a, "--check, --expected and --response are all required");
    int ok = demo_check_answer(check, expected, response);
    if (ok < 0) cli_usage_error(&a, "unknown check '%s' (number, contains, upper, exact, json, arith, fact, style)", check);
    demo_verdict v;
    demo_judge(check, expected, response, &v);
    printf("%d\n", ok);
    gk_log("rule: correct=%d follows_format=%d concise=%d score=%d\n", v.correct, v.follows_format, v.concise, v.score);
    return ok ? 0 : 1;
}

int cmd_data(int argc, char **argv) {
    if (argc < 2) { fputs(USAGE, stderr); return 2; }
    const char *kind = argv[1];
    if (!strcmp(kind, "-h") || !strcmp(kind, "--help") || !strcmp(kind, "help")) { fputs(USAGE, stdout); return 0; }
    for (size_t i = 0; i < sizeof KINDS / sizeof KINDS[0]; i++)
        if (!strcmp(kind, KINDS[i].name)) return run_gen(&KINDS[i], argc - 1, argv + 1);
    if (!strcmp(kind, "corpus")) return run_corpus(argc - 1, argv + 1);
    if (!strcmp(kind, "check")) return run_check(argc - 1, argv + 1);
    fprintf(stderr, "gptkit data: unknown kind '%s' (sft, prefs, prompts, eval, tool-eval, corpus, check)\n\n%s", kind, USAGE);
    return 2;
}
