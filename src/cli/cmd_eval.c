/* cmd_eval.c: gptkit eval — mean next-token loss of a checkpoint on a shard. */
#include "cli/cli.h"
#include "core/core.h"
#include "train/train.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

static const char *USAGE =
"usage: gptkit eval --model DIR --data SHARD [-b B] [-t T] [--batches K] [--json]\n"
"\n"
"Mean next-token cross-entropy (nats) of the checkpoint in DIR over the first K sequential batches of\n"
"SHARD (read exactly as llm.c's loader does), and its perplexity.\n"
"  --model DIR      checkpoint directory (config.json + model.safetensors)\n"
"  --data SHARD     token shard (.bin) or a glob of shards\n"
"  -b, --batch B    sequences per batch (default 4)\n"
"  -t, --seq-len T  tokens per sequence (default: min(256, context))\n"
"  --batches K      batches to evaluate (default: all that fit in one pass)\n"
"  --json           print one JSON object: {\"loss\", \"ppl\", \"tokens\", \"batches\"}\n";

int cmd_eval(int argc, char **argv) {
    cli_args a;
    cli_args_init(&a, argc, argv, USAGE);
    const char *f, *model = NULL, *data = NULL;
    long B = 4, T = 0, K = 0; int json = 0;
    while ((f = cli_next(&a))) {
        if (cli_is(f, "--model")) model = cli_str(&a, f);
        else if (cli_is(f, "--data")) data = cli_str(&a, f);
        else if (cli_is(f, "-b", "--batch")) B = cli_long(&a, f);
        else if (cli_is(f, "-t", "--seq-len")) T = cli_long(&a, f);
        else if (cli_is(f, "--batches")) K = cli_long(&a, f);
        else if (cli_is(f, "--json")) json = 1;
        else cli_unknown(&a, f);
    }
    if (!model) cli_usage_error(&a, "--model DIR is required");
    if (!data) cli_usage_error(&a, "--data SHARD is required");
    if (B <= 0 || T < 0 || K < 0) cli_usage_error(&a, "-b must be positive, -t and --batches non-negative");
    gk_err err;
    gpt_model *m = gpt_load(model, NULL, &err);
    if (!m) { fprintf(stderr, "gptkit eval: %s\n", err.msg); return 1; }
    if (T == 0) T = m->cfg.n_ctx < 256 ? m->cfg.n_ctx : 256;
    double loss; size_t ntok;
    double t0 = gk_now();
    int rc = train_eval_loss(m, data, (size_t)B, (size_t)T, K, &loss, &ntok, &err);
    double dt = gk_now() - t0;
    gpt_free(m);
    if (rc) { fprintf(stderr, "gptkit eval: %s\n", err.msg); return 1; }
    long nb = (long)(ntok / (size_t)(B * T));
    if (json) printf("{\"loss\":%.7g,\"ppl\":%.6g,\"tokens\":%zu,\"batches\":%ld,\"seconds\":%.3f}\n", loss, exp(loss), ntok, nb, dt);
    else printf("loss %.4f | perplexity %.2f | %zu tokens in %ld batches | %.1fs\n", loss, exp(loss), ntok, nb, dt);
    return 0;
}
