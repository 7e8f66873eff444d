/* cmd_compare.c: gptkit compare — win rate of model A over model B, judged by a reward model (and with --gold by
 * the demo's preference rule too, optionally with A as best-of-N). */
#include "cli/cli.h"
#include "core/core.h"
#include "train/train.h"
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
        const compare_result *c[2] = { &jr.rm, &jr.gold };
        const char *name[2] = { "reward model", "gold rule" };
        for (int k = 0; k < 2; k++) {
            const compare_result *r = c[k];
            if (o.json)
                printf("{\"judge\":\"%s\",\"n\":%ld,\"wins\":%g,\"ties\":%g,\"losses\":%g,\"win_rate\":%.6g,\"ci_lo\":%.6g,"
                       "\"ci_hi\":%.6g,\"mean_a\":%.6g,\"mean_b\":%.6g}\n", k ? "gold" : "rm", r->n, r->wins, r->ties, r->losses,
                       r->win_rate, r->ci_lo, r->ci_hi, r->mean_a, r->mean_b);
            else
                printf("compare (%s%s): A wins %.0f, ties %.0f, loses %.0f of %ld: win rate %.3f (95%% CI %.3f-%.3f); "
                       "mean score A %+.4f, B %+.4f\n", name[k], best_of > 1 ? ", A best-of-N" : "", r->wins, r->ties, r->losses,
                       r->n, r->win_rate, r->ci_lo, r->ci_hi, r->mean_a, r->mean_b);
        }
        return 0;
    }
    compare_result r;
    if (rlhf_compare(&o, &r, &err)) { fprintf(stderr, "gptkit compare: %s\n", err.msg); return 1; }
    if (o.json)
        printf("{\"n\":%ld,\"wins\":%g,\"ties\":%g,\"losses\":%g,\"win_rate\":%.6g,\"ci_lo\":%.6g,\"ci_hi\":%.6g,"
               "\"mean_a\":%.6g,\"mean_b\":%.6g}\n", r.n, r.wins, r.ties, r.losses, r.win_rate, r.ci_lo, r.ci_hi, r.mean_a, r.mean_b);
    else
        printf("compare: A wins %.0f, ties %.0f, loses %.0f of %ld: win rate %.3f (95%% CI %.3f-%.3f); "
               "mean RM score A %+.4f, B %+.4f\n", r.wins, r.ties, r.losses, r.n, r.win_rate, r.ci_lo, r.ci_hi, r.mean_a, r.mean_b);
    return 0;
}
