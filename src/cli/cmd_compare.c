/* cmd_compare.c: gptkit compare — win rate of model A over model B, judged by a reward model (and with --gold by
 * the demo's preference rule too, optionally with A as best-of-N). */
#include "cli/cli.h"
#include "core/core.h"
#include "train/train.h"
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *USAGE =
"usage: gptkit compare --a MODEL_A --b MODEL_B --rm RM_DIR --prompts FILE [--n N] [options]\n"
"\n"
"For each of the first N prompts, samples responses from A and from B (same seed per prompt), scores both\n"
"with the reward model, and counts A's wins (ties count half). Prints the win rate with a 95% Wilson\n"
"score interval. A response cut at --max-new is scored with <|end|> appended.\n"
"\n"
"  --n N                 prompts used (default: all)      --samples S  responses per prompt per model (default 1)\n"
"  --max-new N           (default 64)                      --temperature T  (default 0.7)\n"
"  --seed S  --tokenizer PATH\n"
"  --json                one JSON object per comparison, then a summary object\n"
"  --gold                also judge by the demo's preference rule (demo prompts only; docs/rlhf.md): one\n"
"                        response per prompt per model, both win rates with 95% intervals\n"
"  --best-of N           with --gold: A's response is the reward model's favourite of N samples from A\n";

/* One result: a JSON object (judge: its "judge" field, or NULL; a win rate with nothing compared is null) or a line. */
static void print_result(const compare_result *r, int json, const char *judge, const char *label) {
    if (json) {
        cJSON *j = cJSON_CreateObject();
        if (judge) cJSON_AddStringToObject(j, "judge", judge);
        cJSON_AddNumberToObject(j, "n", (double)r->n);
        cJSON_AddNumberToObject(j, "wins", r->wins);
        cJSON_AddNumberToObject(j, "ties", r->ties);
        cJSON_AddNumberToObject(j, "losses", r->losses);
        train_put(j, "win_rate", "%.6g", r->win_rate);
        train_put(j, "ci_lo", "%.6g", r->ci_lo);
        train_put(j, "ci_hi", "%.6g", r->ci_hi);
        train_put(j, "mean_a", "%.6g", r->mean_a);
        train_put(j, "mean_b", "%.6g", r->mean_b);
        char *s = cJSON_PrintUnformatted(j);
        printf("%s\n", s);
        cJSON_free(s);
        cJSON_Delete(j);
    } else {
        printf("compare (%s): A wins %.0f, ties %.0f, loses %.0f of %ld: win rate %.3f (95%% CI %.3f-%.3f); "
               "mean score A %+.4f, B %+.4f\n", label, r->wins, r->ties, r->losses, r->n, r->win_rate, r->ci_lo, r->ci_hi,
               r->mean_a, r->mean_b);
    }
}

int cmd_compare(int argc, char **argv) {
    cli_args a;
    cli_args_init(&a, argc, argv, USAGE);
    compare_opts o;
    compare_opts_default(&o);
    const char *f;
    int gold = 0;
    long best_of = 1;
    while ((f = cli_next(&a))) {
        if (cli_is(f, "--a")) o.a_dir = cli_str(&a, f);
        else if (cli_is(f, "--b")) o.b_dir = cli_str(&a, f);
        else if (cli_is(f, "--rm", "--reward")) o.rm_dir = cli_str(&a, f);
        else if (cli_is(f, "--prompts")) o.prompts = cli_str(&a, f);
        else if (cli_is(f, "--n")) o.n = cli_long(&a, f);
        else if (cli_is(f, "--samples")) o.samples = cli_long(&a, f);
        else if (cli_is(f, "--max-new")) o.max_new = cli_long(&a, f);
        else if (cli_is(f, "--temperature")) o.temperature = (float)cli_double(&a, f);
        else if (cli_is(f, "--seed")) o.seed = (uint64_t)cli_long(&a, f);
        else if (cli_is(f, "--tokenizer")) o.tokenizer = cli_str(&a, f);
        else if (cli_is(f, "--json")) o.json = 1;
        else if (cli_is(f, "--gold")) gold = 1;
        else if (cli_is(f, "--best-of")) best_of = cli_long(&a, f);
        else if (cli_is(f, "-q", "--quiet")) gk_verbose = 0;
        else cli_unknown(&a, f);
    }
    if (!o.a_dir || !o.b_dir || !o.rm_dir || !o.prompts) cli_usage_error(&a, "--a, --b, --rm and --prompts are required");
    if (o.temperature < 0) cli_usage_error(&a, "--temperature must be >= 0");
    gk_err err;
    if (best_of > 1 && !gold) cli_usage_error(&a, "--best-of needs --gold");
    if (best_of < 1) cli_usage_error(&a, "--best-of must be >= 1");
    if (gold) {
        if (o.samples != 1) cli_usage_error(&a, "--gold compares one response per prompt per model (no --samples)");
        judge_opts jo;
        judge_opts_default(&jo);
        jo.a_dir = o.a_dir; jo.b_dir = o.b_dir; jo.rm_dir = o.rm_dir; jo.prompts = o.prompts; jo.n = o.n;
        jo.best_of = best_of; jo.max_new = o.max_new; jo.temperature = o.temperature; jo.seed = o.seed;
        jo.tokenizer = o.tokenizer; jo.json = o.json;
        judge_result jr;
        if (rlhf_judge(&jo, &jr, &err)) { fprintf(stderr, "gptkit compare: %s\n", err.msg); return 1; }
        print_result(&jr.rm, o.json, "rm", best_of > 1 ? "reward model, A best-of-N" : "reward model");
        print_result(&jr.gold, o.json, "gold", best_of > 1 ? "gold rule, A best-of-N" : "gold rule");
        return 0;
    }
    compare_result r;
    if (rlhf_compare(&o, &r, &err)) { fprintf(stderr, "gptkit compare: %s\n", err.msg); return 1; }
    print_result(&r, o.json, NULL, "reward model");
    return 0;
}
