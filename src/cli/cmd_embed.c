/* cmd_embed.c: gptkit embed — one sentence embedding per input line, from a sentence-transformers BERT
 * directory (src/embed). Output: JSONL (one JSON array per line, the default) or raw little-endian float32
 * rows (--f32), in input order. Lines are read in blocks so output streams and memory stays flat. */
#include "cli/cli.h"
#include "core/core.h"
#include "embed/embed.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *USAGE =
    "usage: gptkit embed --model DIR [--json | --f32] [--batch N] < lines.txt > vectors\n\n"
    "One embedding per input line (UTF-8; a trailing \\r is dropped; an empty line embeds the empty text), from a\n"
    "sentence-transformers BERT-family model directory (config.json, model.safetensors, tokenizer.json or\n"
    "vocab.txt, modules.json, 1_Pooling/config.json): e.g. all-MiniLM-L6-v2. Pooling and normalisation follow\n"
    "the model's own config; inputs longer than its max_seq_length are truncated as sentence-transformers does.\n"
    "  --model DIR     the embedding model directory\n"
    "  --json          JSONL output: one JSON array of floats per line (default)\n"
    "  --f32           binary output: n x dim little-endian float32, no header (dim: see the log line)\n"
    "  --batch N       texts per forward batch (default 32)\n"
    "  -q, --quiet     no log lines on stderr\n"
    "Threads: OMP_NUM_THREADS. See docs/retrieval.md.\n";

#define EMBED_BLOCK 1024

static int embed_flush(embed_model *m, char **lines, size_t n, size_t first_line, int f32, gk_err *err) {
    size_t C = embed_dim(m);
    float *v = gk_malloc((n ? n : 1) * C * sizeof *v);
    int rc = embed_texts(m, (const char *const *)lines, NULL, n, v, err);
    if (rc) {
        /* embed_texts names "text K" within the block: turn it into the input's line number */
        size_t k = 0;
        if (sscanf(err->msg, "text %zu", &k) == 1) {
            char *colon = strchr(err->msg, ':');
            gk_err e2; gk_errf(&e2, "stdin:%zu%s", first_line + k - 1, colon ? colon : "");
            *err = e2;
        }
    } else if (f32) {
        fwrite(v, sizeof *v, n * C, stdout);
    } else {
        char num[32];
        for (size_t i = 0; i < n; i++) {
            putchar('[');
            for (size_t c = 0; c < C; c++) {
                snprintf(num, sizeof num, "%.8g", v[i * C + c]);
                fputs(num, stdout);
                if (c + 1 < C) putchar(',');
            }
            fputs("]\n", stdout);
        }
    }
    free(v);
    return rc;
}

int cmd_embed(int argc, char **argv) {
    cli_args a; cli_args_init(&a, argc, argv, USAGE);
    const char *f, *model = NULL;
    int f32 = 0; long batch = 32;
    while ((f = cli_next(&a))) {
        if (cli_is(f, "--model")) model = cli_str(&a, f);
        else if (cli_is(f, "--json")) f32 = 0;
        else if (cli_is(f, "--f32")) f32 = 1;
        else if (cli_is(f, "--batch")) batch = cli_long(&a, f);
        else if (cli_is(f, "-q", "--quiet")) gk_verbose = 0;
        else cli_unknown(&a, f);
    }
    if (!model) cli_usage_error(&a, "--model DIR is required");
    if (batch < 1 || batch > 4096) cli_usage_error(&a, "--batch must be in [1, 4096]");
    gk_err err;
    embed_model *m = embed_load(model, NULL, &err);
    if (!m) { fprintf(stderr, "gptkit embed: %s\n", err.msg); return 1; }
    embed_set_batch(m, (size_t)batch);
    gk_log("embed: %s (dim %zu)\n", embed_describe(m), embed_dim(m));
    char **lines = gk_calloc(EMBED_BLOCK, sizeof *lines);
    size_t n = 0, line_no = 0, first = 1, total = 0;
    char *buf = NULL; size_t cap = 0; ssize_t len;
    double t0 = gk_now(), last = t0;
    int rc = 0;
    while (!rc && (len = getline(&buf, &cap, stdin)) >= 0) {
        line_no++;
        if (len && buf[len - 1] == '\n') buf[--len] = 0;
        if (len && buf[len - 1] == '\r') buf[--len] = 0;
        if (memchr(buf, 0, (size_t)len)) { fprintf(stderr, "gptkit embed: stdin:%zu: the line holds a NUL byte (binary input?)\n", line_no); rc = 1; break; }
        lines[n++] = gk_strdup(buf);
        if (n == EMBED_BLOCK) {
            if (embed_flush(m, lines, n, first, f32, &err)) { fprintf(stderr, "gptkit embed: %s\n", err.msg); rc = 1; }
            for (size_t i = 0; i < n; i++) free(lines[i]);
            total += n; n = 0; first = line_no + 1;
            if (gk_verbose && gk_now() - last > 2) { last = gk_now(); gk_log("embed: %zu lines, %.1f lines/s\n", total, total / (last - t0)); }
        }
    }
    if (!rc && n && embed_flush(m, lines, n, first, f32, &err)) { fprintf(stderr, "gptkit embed: %s\n", err.msg); rc = 1; }
    for (size_t i = 0; i < n; i++) free(lines[i]);
    total += n;
    if (!rc) gk_log("embed: %zu lines in %.2fs (%.1f lines/s)\n", total, gk_now() - t0, total / (gk_now() - t0 + 1e-9));
    free(lines); free(buf);
    embed_free(m);
    if (fflush(stdout)) { fprintf(stderr, "gptkit embed: writing stdout failed\n"); rc = 1; }
    return rc;
}
