/* cmd_eval.c: gptkit eval — mean next-token loss of a checkpoint on a shard. */
#include "cli/cli.h"
#include "core/core.h"
#include "train/train.h"
#include "infer/infer.h"
#include "tok/tok.h"
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
"  --tokenizer T    tokenizer for bits per byte (default: the one the checkpoint records)\n"
"  --json           print one JSON object: {\"loss\", \"ppl\", \"tokens\", \"batches\", \"bpb\"}\n"
"With a tokenizer, also bits per byte: loss / ln 2 x (target tokens / their bytes), comparable across\n"
"vocabularies (<|endoftext|> and other special tokens count zero bytes).\n";

/* Bytes of the targets of the first `batches` sequential batches (what the loss was measured on). */
static double target_bytes(const char *data, const tok_tokenizer *tok, size_t B, size_t T, long batches, uint32_t vocab) {
    gk_err err;
    data_loader *dl = data_loader_open(data, B, T, 0, 0, vocab, &err);
    if (!dl) return 0;
    int32_t *in = gk_malloc(B * T * sizeof(int32_t)), *tg = gk_malloc(B * T * sizeof(int32_t));
    double bytes = 0;
    long avail = (long)data_loader_batches_per_epoch(dl);
    if (batches <= 0 || batches > avail) batches = avail;
    for (long k = 0; k < batches && data_loader_next(dl, in, tg, &err) == 0; k++)
        for (size_t i = 0; i < B * T; i++) bytes += (double)tok_text_len(tok, tg[i]);
    free(in); free(tg);
    data_loader_free(dl);
    return bytes;
}

int cmd_eval(int argc, char **argv) {
    cli_args a;
    cli_args_init(&a, argc, argv, USAGE);
    const char *f, *model = NULL, *data = NULL, *tokpath = NULL;
    long B = 4, T = 0, K = 0; int json = 0;
    while ((f = cli_next(&a))) {
        if (cli_is(f, "--model")) model = cli_str(&a, f);
        else if (cli_is(f, "--data")) data = cli_str(&a, f);
        else if (cli_is(f, "-b", "--batch")) B = cli_long(&a, f);
        else if (cli_is(f, "-t", "--seq-len")) T = cli_long(&a, f);
        else if (cli_is(f, "--batches")) K = cli_long(&a, f);
        else if (cli_is(f, "--tokenizer")) tokpath = cli_str(&a, f);
        else if (cli_is(f, "--json")) json = 1;
        else cli_unknown(&a, f);
    }
    if (!model) cli_usage_error(&a, "--model DIR is required");
    if (!data) cli_usage_error(&a, "--data SHARD is required");
    if (B <= 0 || T < 0 || K < 0) cli_usage_error(&a, "-b must be positive, -t and --batches non-negative");
    gk_err err;
    char *rec = NULL;
    gpt_model *m = gpt_load(model, &rec, &err);
    if (!m) { fprintf(stderr, "gptkit eval: %s\n", err.msg); return 1; }
    tok_tokenizer *tok = NULL;
    if (infer_load_tokenizer(model, rec, tokpath, tokpath != NULL, &tok, &err)) {
        fprintf(stderr, "gptkit eval: %s\n", err.msg); free(rec); gpt_free(m); return 1;
    }
    free(rec);
    if (T == 0) T = m->cfg.n_ctx < 256 ? m->cfg.n_ctx : 256;
    double loss; size_t ntok;
    double t0 = gk_now();
    int rc = train_eval_loss(m, data, (size_t)B, (size_t)T, K, &loss, &ntok, &err);
    double dt = gk_now() - t0;
    uint32_t vocab = (uint32_t)m->cfg.vocab_size;
    gpt_free(m);
    if (rc) { fprintf(stderr, "gptkit eval: %s\n", err.msg); tok_free(tok); return 1; }
    long nb = (long)(ntok / (size_t)(B * T));
    double bytes = tok ? target_bytes(data, tok, (size_t)B, (size_t)T, K, vocab) : 0;
    double bpb = bytes > 0 ? loss / log(2.0) * (double)ntok / bytes : NAN;
    tok_free(tok);
    if (json) {
        printf("{\"loss\":%.7g,\"ppl\":%.6g,\"tokens\":%zu,\"batches\":%ld,\"seconds\":%.3f", loss, exp(loss), ntok, nb, dt);
        if (isfinite(bpb)) printf(",\"bpb\":%.6g", bpb);
        printf("}\n");
    } else {
        printf("loss %.4f | perplexity %.2f", loss, exp(loss));
        if (isfinite(bpb)) printf(" | %.4f bits/byte", bpb);
        printf(" | %zu tokens in %ld batches | %.1fs\n", ntok, nb, dt);
    }
    return 0;
}
