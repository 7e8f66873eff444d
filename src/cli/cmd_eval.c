/* cmd_eval.c: gptkit eval — mean next-token loss of a checkpoint on a shard, or its calibration on the demo's
 * multiple-choice items. */
#include "cli/cli.h"
#include "core/core.h"
#include "eval/eval.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

static const char *USAGE =
"usage: gptkit eval --model DIR --data SHARD [-b B] [-t T] [--batches K] [--json]\n"
"       gptkit eval --model DIR --calibration N [--base] [--json]\n"
"\n"
"Mean next-token cross-entropy (nats) of the checkpoint in DIR over the first K sequential batches of\n"
"SHARD (read exactly as llm.c's loader does), and its perplexity.\n"
"  --model DIR      checkpoint directory (config.json + model.safetensors), or a LoRA adapter directory\n"
"  --adapter DIR    a LoRA adapter (PEFT layout) applied on top of --model, unmerged (docs/lora.md)\n"
"  --data SHARD     token shard (.bin) or a glob of shards\n"
"  -b, --batch B    sequences per batch (default 4)\n"
"  -t, --seq-len T  tokens per sequence (default: min(256, context))\n"
"  --batches K      batches to evaluate (default: all that fit in one pass)\n"
"  --tokenizer T    tokenizer for bits per byte (default: the one the checkpoint records)\n"
"  --json           print one JSON object: {\"loss\", \"ppl\", \"tokens\", \"batches\", \"bpb\"}\n"
"With a tokenizer, also bits per byte: loss / ln 2 x (target tokens / their bytes), comparable across\n"
"vocabularies (<|endoftext|> and other special tokens count zero bytes).\n"
"\n"
"--calibration N: instead, N held-out demo questions (facts and arithmetic) asked as multiple choice with 4\n"
"replies each; the model's belief in a reply is its likelihood, normalised over the 4 (a chat model gets the\n"
"chat format, --base a few-shot Q/A document). Prints accuracy, mean confidence and the expected calibration\n"
"error (10 equal confidence bins), then the bins; --json: {\"n\", \"accuracy\", \"confidence\", \"ece\",\n"
"\"bins\": [{\"n\", \"accuracy\", \"confidence\"}, ...]}. docs/rlhf.md, \"Calibration\".\n"
"  --seed S         seed of the items and of the few-shot examples (default 1337)\n";

static int calibration(eval_model *em, long n, int base, uint64_t seed, int json) {
    gk_err err;
    demo_mc *items = NULL;
    long got = demo_mc_items(n, seed, &items, &err);
    eval_calib cs;
    int rc = got < 0 ? -1 : eval_calibration(em, base, items, got, 3, seed, &cs, &err);
    free(items);
    if (rc) { fprintf(stderr, "gptkit eval: %s\n", err.msg); return 1; }
    if (json) {
        printf("{\"n\":%ld,\"accuracy\":%.6g,\"confidence\":%.6g,\"ece\":%.6g,\"bins\":[", cs.n, cs.acc, cs.conf, cs.ece);
        for (int b = 0; b < EVAL_CALIB_BINS; b++)
            printf("%s{\"n\":%ld,\"accuracy\":%.6g,\"confidence\":%.6g}", b ? "," : "", cs.bin_n[b], cs.bin_acc[b], cs.bin_conf[b]);
        printf("]}\n");
        return 0;
    }
    printf("%ld items | accuracy %.1f%% | mean confidence %.1f%% | ECE %.3f\n", cs.n, 100 * cs.acc, 100 * cs.conf, cs.ece);
    for (int b = 0; b < EVAL_CALIB_BINS; b++)
        if (cs.bin_n[b])
            printf("  confidence %.1f-%.1f: %4ld items, accuracy %5.1f%%, mean confidence %5.1f%%\n", b / 10.0, (b + 1) / 10.0,
                   cs.bin_n[b], 100 * cs.bin_acc[b], 100 * cs.bin_conf[b]);
    return 0;
}

int cmd_eval(int argc, char **argv) {
    cli_args a;
    cli_args_init(&a, argc, argv, USAGE);
    const char *f, *model = NULL, *data = NULL, *tokpath = NULL, *adapter = NULL;
    long B = 4, T = 0, K = 0, calib = 0, seed = 1337; int json = 0, base = 0;
    while ((f = cli_next(&a))) {
        if (cli_is(f, "--model")) model = cli_str(&a, f);
        else if (cli_is(f, "--data")) data = cli_str(&a, f);
        else if (cli_is(f, "-b", "--batch")) B = cli_long(&a, f);
        else if (cli_is(f, "-t", "--seq-len")) T = cli_long(&a, f);
        else if (cli_is(f, "--batches")) K = cli_long(&a, f);
        else if (cli_is(f, "--tokenizer")) tokpath = cli_str(&a, f);
        else if (cli_is(f, "--adapter")) adapter = cli_str(&a, f);
        else if (cli_is(f, "--json")) json = 1;
        else if (cli_is(f, "--calibration")) calib = cli_long(&a, f);
        else if (cli_is(f, "--base")) base = 1;
        else if (cli_is(f, "--seed")) seed = cli_long(&a, f);
        else cli_unknown(&a, f);
    }
    if (!model) cli_usage_error(&a, "--model DIR is required");
    if (calib < 0) cli_usage_error(&a, "--calibration must be positive");
    if (!data && !calib) cli_usage_error(&a, "--data SHARD (or --calibration N) is required");
    if (B <= 0 || T < 0 || K < 0) cli_usage_error(&a, "-b must be positive, -t and --batches non-negative");
    gk_err err;
    eval_model em;
    if (eval_model_open(&em, model, tokpath, calib > 0, calib > 0, 0, &err)) { fprintf(stderr, "gptkit eval: %s\n", err.msg); return 1; }
    if (adapter && eval_model_add_adapter(&em, adapter, &err)) {
        fprintf(stderr, "gptkit eval: %s\n", err.msg);
        eval_model_close(&em);
        return 1;
    }
    if (calib) {
        int r = calibration(&em, calib, base, (uint64_t)seed, json);
        eval_model_close(&em);
        return r;
    }
    if (T == 0) T = em.m->cfg.n_ctx < 256 ? em.m->cfg.n_ctx : 256;
    eval_loss_stats st;
    double t0 = gk_now();
    int rc = eval_shard_loss(em.m, em.tok, data, (size_t)B, (size_t)T, K, &st, &err);
    double dt = gk_now() - t0;
    eval_model_close(&em);
    if (rc) { fprintf(stderr, "gptkit eval: %s\n", err.msg); return 1; }
    if (json) {
        printf("{\"loss\":%.7g,\"ppl\":%.6g,\"tokens\":%zu,\"batches\":%ld,\"seconds\":%.3f", st.loss, exp(st.loss), st.ntok,
               st.batches, dt);
        if (isfinite(st.bpb)) printf(",\"bpb\":%.6g", st.bpb);
        printf("}\n");
    } else {
        printf("loss %.4f | perplexity %.2f", st.loss, exp(st.loss));
        if (isfinite(st.bpb)) printf(" | %.4f bits/byte", st.bpb);
        printf(" | %zu tokens in %ld batches | %.1fs\n", st.ntok, st.batches, dt);
    }
    return 0;
}
