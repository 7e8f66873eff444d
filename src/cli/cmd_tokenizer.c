/* cmd_tokenizer.c: gptkit tokenizer {encode, decode, info, render, export-hf, train, bench}.
 * encode: stdin bytes -> ids on stdout; decode: ids on stdin -> bytes on stdout; info: vocabulary facts;
 * render: a conversation (JSON) -> the ids of its chat rendering; export-hf: the tokenizer files a checkpoint
 * carries; train: byte-level BPE on the user's files; bench: single-thread encode throughput on a file. */
#include "cli/cli.h"
#include "core/core.h"
#include "tok/tok.h"
#include "data/data.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *USAGE =
    "usage: gptkit tokenizer SUBCOMMAND [options]\n\n"
    "  encode --tokenizer T [--ids|--json] [--allow-special]   stdin text -> token ids on stdout\n"
    "  decode --tokenizer T                                    ids (space/comma separated) on stdin -> bytes\n"
    "  info   --tokenizer T                                    vocabulary size, pattern, special tokens\n"
    "  render --tokenizer T [--no-gen-prompt]                  stdin {\"messages\": [...]} -> ids of its chat rendering\n"
    "  export-hf --tokenizer T --out DIR [--n-ctx N] [--vocab-size V]   the tokenizer files a checkpoint carries\n"
    "  train  --input FILES... --vocab-size N [--pattern gptkit|gpt2|cl100k|REGEX] [--special TOKENS...] [--name NAME] --out PATH\n"
    "  bench  --tokenizer T --input FILE [--repeat N]          single-thread encode throughput\n\n"
    "T is a .tiktoken rank file, a directory holding GPT-2's encoder.json + vocab.bpe or HF's tokenizer.json, a tokenizer saved by\n"
    "'train' (PATH, PATH.tiktoken or PATH.json), or one of the names gpt2 / cl100k_base (from data/vocab).\n"
    "--allow-special: special-token text (e.g. <|endoftext|>) becomes its special id; otherwise it is plain text\n"
    "(an HF tokenizer.json always matches its added tokens, as HF does).\n"
    "--vocab-size N counts everything: 256 bytes + merges + the 9 chat special tokens + --special ones.\n"
    "--pattern: the split regex; default gptkit (cl100k's, with words keeping trailing punctuation and a leading\n"
    "newline); a custom REGEX needs a PCRE2 build. Training writes PATH.tiktoken + PATH.json.\n"
    "render: the ids chat, sft and the RLHF stages feed the model for the conversation (the tokenizer's own format:\n"
    "ChatML, LLaMA 3, or gptkit's), ending in the assistant's turn start unless --no-gen-prompt.\n"
    "export-hf: DIR/tokenizer.json, tokenizer_config.json (chat template, special tokens, model_max_length = N,\n"
    "default 1024) and generation_config.json, as every checkpoint holds them; V: the model's vocabulary (room for\n"
    "gptkit's chat tokens; default no limit). HF's AutoTokenizer.from_pretrained(DIR) then encodes as gptkit does.\n"
    "See docs/tokenizer.md.\n";

static int read_stdin(char **data, size_t *len) {
    size_t cap = 1 << 16, n = 0;
    char *b = gk_malloc(cap);
    for (;;) {
        if (n == cap) { cap *= 2; b = gk_realloc(b, cap); }
        size_t r = fread(b + n, 1, cap - n, stdin);
        n += r;
        if (r == 0) break;
    }
    if (ferror(stdin)) { free(b); return -1; }
    *data = b; *len = n;
    return 0;
}

static tok_tokenizer *load_or_die(const char *path, const char *cmd) {
    if (!path) { fprintf(stderr, "gptkit tokenizer %s: --tokenizer is required\n", cmd); exit(2); }
    gk_err err;
    tok_tokenizer *t = tok_load(path, &err);
    if (!t) { fprintf(stderr, "gptkit tokenizer %s: %s\n", cmd, err.msg); exit(1); }
    return t;
}

static int do_encode(int argc, char **argv) {
    cli_args a; cli_args_init(&a, argc, argv, USAGE);
    const char *tp = NULL, *f; int json = 0, allow = 0;
    while ((f = cli_next(&a))) {
        if (cli_is(f, "--tokenizer", "-t")) tp = cli_str(&a, f);
        else if (cli_is(f, "--ids")) json = 0;
        else if (cli_is(f, "--json")) json = 1;
        else if (cli_is(f, "--allow-special")) allow = 1;
        else cli_unknown(&a, f);
    }
    tok_tokenizer *t = load_or_die(tp, "encode");
    char *data; size_t len;
    if (read_stdin(&data, &len)) { fprintf(stderr, "gptkit tokenizer encode: reading stdin failed\n"); tok_free(t); return 1; }
    tok_ids ids = {0};
    tok_encode(t, data, len, allow || tok_specials_in_text(t), &ids);
    /* the ids as text, in blocks formatted by the OpenMP threads (digits by hand: snprintf per id cost more than
     * the encoding), written in order */
    const char *sep = json ? ", " : " ";
    size_t seplen = strlen(sep), nblk = ids.n / 65536 + 1;
    char **blk = gk_calloc(nblk, sizeof *blk);
    size_t *blen = gk_calloc(nblk, sizeof *blen);
#ifdef _OPENMP
#pragma omp parallel for schedule(static)
#endif
    for (long bi = 0; bi < (long)nblk; bi++) {
        size_t i0 = (size_t)bi * 65536, i1 = i0 + 65536 < ids.n ? i0 + 65536 : ids.n, o = 0;
        char *b = blk[bi] = gk_malloc((i1 - i0) * 12 + 1);
        for (size_t i = i0; i < i1; i++) {
            if (i) { memcpy(b + o, sep, seplen); o += seplen; }
            char d[12];
            int k = 0;
            uint32_t v = (uint32_t)ids.ids[i];   /* ids are never negative */
            do { d[k++] = (char)('0' + v % 10); v /= 10; } while (v);
            while (k) b[o++] = d[--k];
        }
        blen[bi] = o;
    }
    int rc = 0;
    if (json && fputc('[', stdout) == EOF) rc = 1;
    for (size_t bi = 0; bi < nblk; bi++) {
        if (!rc && fwrite(blk[bi], 1, blen[bi], stdout) != blen[bi]) rc = 1;
        free(blk[bi]);
    }
    if (!rc && (json && fputc(']', stdout) == EOF)) rc = 1;
    if (!rc && (fputc('\n', stdout) == EOF || fflush(stdout) != 0)) rc = 1;
    free(blk); free(blen);
    free(data); tok_ids_free(&ids); tok_free(t);
    return rc;
}

static int do_decode(int argc, char **argv) {
    cli_args a; cli_args_init(&a, argc, argv, USAGE);
    const char *tp = NULL, *f;
    while ((f = cli_next(&a))) {
        if (cli_is(f, "--tokenizer", "-t")) tp = cli_str(&a, f);
        else cli_unknown(&a, f);
    }
    tok_tokenizer *t = load_or_die(tp, "decode");
    char *data; size_t len;
    if (read_stdin(&data, &len)) { fprintf(stderr, "gptkit tokenizer decode: reading stdin failed\n"); tok_free(t); return 1; }
    data = gk_realloc(data, len + 1); data[len] = 0;
    tok_ids ids = {0};
    /* ids separated by whitespace and/or commas; surrounding [ ] (a JSON array) allowed */
    for (size_t i = 0; i < len;) {
        char c = data[i];
        if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == ',' || c == '[' || c == ']') { i++; continue; }
        size_t j = i;
        while (j < len && !(data[j] == ' ' || data[j] == '\t' || data[j] == '\n' || data[j] == '\r' || data[j] == ',' || data[j] == ']')) j++;
        char save = data[j]; data[j] = 0;
        long v;
        if (gk_parse_long(data + i, &v) || v < -2147483647L || v > 2147483647L) {
            fprintf(stderr, "gptkit tokenizer decode: stdin byte %zu: \"%.20s\" is not an integer token id\n", i, data + i);
            free(data); tok_ids_free(&ids); tok_free(t); return 1;
        }
        data[j] = save;
        tok_ids_push(&ids, (int32_t)v);
        i = j;
    }
    tok_bytes out = {0};
    gk_err err;
    int rc = 0;
    if (tok_decode(t, ids.ids, ids.n, &out, &err)) { fprintf(stderr, "gptkit tokenizer decode: %s\n", err.msg); rc = 1; }
    else if (fwrite(out.data, 1, out.n, stdout) != out.n || fflush(stdout)) rc = 1;
    free(data); tok_ids_free(&ids); tok_bytes_free(&out); tok_free(t);
    return rc;
}

static int do_info(int argc, char **argv) {
    cli_args a; cli_args_init(&a, argc, argv, USAGE);
    const char *tp = NULL, *f;
    while ((f = cli_next(&a))) {
        if (cli_is(f, "--tokenizer", "-t")) tp = cli_str(&a, f);
        else cli_unknown(&a, f);
    }
    tok_tokenizer *t = load_or_die(tp, "info");
    printf("name:        %s\n", tok_name(t));
    printf("vocab size:  %zu (ids 0..%zu)\n", tok_vocab_size(t), tok_vocab_size(t) - 1);
    printf("ranks:       %zu (256 bytes + %zu merges)\n", tok_n_ranks(t), tok_n_ranks(t) - 256);
    printf("pattern:     %s\n", tok_pattern(t));
    printf("specials:    %zu\n", tok_n_specials(t));
    for (size_t i = 0; i < tok_n_specials(t); i++) {
        int32_t id; const char *s = tok_special_at(t, i, &id);
        printf("  %-22s %d\n", s, (int)id);
    }
    printf("shard width: %s\n", tok_vocab_size(t) <= 65536 ? "uint16 (llm.c version 1)" : "uint32 (gptkit version 2)");
    tok_free(t);
    return 0;
}

static int do_train(int argc, char **argv) {
    cli_args a; cli_args_init(&a, argc, argv, USAGE);
    const char *out = NULL, *f, **inputs = NULL, **specials = NULL;
    int ninputs = 0, nspecials = 0;
    tok_train_opts o; tok_train_opts_default(&o);
    o.progress = 1;
    while ((f = cli_next(&a))) {
        if (cli_is(f, "--input", "-i")) ninputs = cli_strs(&a, f, &inputs);
        else if (cli_is(f, "--vocab-size")) {
            long v = cli_long(&a, f);
            if (v < 256 + TOK_N_CHAT_SPECIALS || v > (1L << 24)) cli_usage_error(&a, "--vocab-size must be in %d..16777216", 256 + TOK_N_CHAT_SPECIALS);
            o.vocab_size = (size_t)v;
        }
        else if (cli_is(f, "--pattern")) o.pattern = cli_str(&a, f);
        else if (cli_is(f, "--special")) nspecials = cli_strs(&a, f, &specials);
        else if (cli_is(f, "--name")) o.name = cli_str(&a, f);
        else if (cli_is(f, "--out", "-o")) out = cli_str(&a, f);
        else if (cli_is(f, "--quiet", "-q")) o.progress = 0;
        else cli_unknown(&a, f);
    }
    if (!ninputs) cli_usage_error(&a, "--input is required");
    if (!out) cli_usage_error(&a, "--out is required");
    if (!o.vocab_size) cli_usage_error(&a, "--vocab-size is required");
    o.specials = specials; o.n_specials = (size_t)nspecials;
    gk_err err;
    double t0 = gk_now();
    tok_tokenizer *t = tok_train_files(inputs, (size_t)ninputs, &o, &err);
    if (!t) { fprintf(stderr, "gptkit tokenizer train: %s\n", err.msg); return 1; }
    if (tok_save(t, out, &err)) { fprintf(stderr, "gptkit tokenizer train: %s\n", err.msg); tok_free(t); return 1; }
    gk_log("tokenizer train: %zu ranks + %zu specials (vocab %zu) in %.2fs -> %s\n",
           tok_n_ranks(t), tok_n_specials(t), tok_vocab_size(t), gk_now() - t0, out);
    tok_free(t);
    return 0;
}

static int do_bench(int argc, char **argv) {
    cli_args a; cli_args_init(&a, argc, argv, USAGE);
    const char *tp = NULL, *in = NULL, *f; long repeat = 3;
    while ((f = cli_next(&a))) {
        if (cli_is(f, "--tokenizer", "-t")) tp = cli_str(&a, f);
        else if (cli_is(f, "--input", "-i")) in = cli_str(&a, f);
        else if (cli_is(f, "--repeat")) repeat = cli_long(&a, f);
        else cli_unknown(&a, f);
    }
    if (!in) cli_usage_error(&a, "--input is required");
    tok_tokenizer *t = load_or_die(tp, "bench");
    char *data; size_t len; gk_err err;
    if (gk_read_file(in, &data, &len, &err)) { fprintf(stderr, "gptkit tokenizer bench: %s\n", err.msg); tok_free(t); return 1; }
    tok_ids ids = {0};
    double best = 1e30;
    for (long r = 0; r < (repeat < 1 ? 1 : repeat); r++) {
        ids.n = 0;
        tok_encoder *e = tok_encoder_new(t);   /* cold cache every run */
        double t0 = gk_now();
        tok_encoder_encode(e, data, len, 0, &ids);
        double dt = gk_now() - t0;
        tok_encoder_free(e);
        if (dt < best) best = dt;
    }
    printf("{\"bytes\": %zu, \"tokens\": %zu, \"seconds\": %.6f, \"mb_per_s\": %.3f}\n", len, ids.n, best, len / best / 1e6);
    free(data); tok_ids_free(&ids); tok_free(t);
    return 0;
}

static int do_render(int argc, char **argv) {
    cli_args a; cli_args_init(&a, argc, argv, USAGE);
    const char *tp = NULL, *f; int gen = 1;
    while ((f = cli_next(&a))) {
        if (cli_is(f, "--tokenizer", "-t")) tp = cli_str(&a, f);
        else if (cli_is(f, "--no-gen-prompt")) gen = 0;
        else cli_unknown(&a, f);
    }
    tok_tokenizer *t = load_or_die(tp, "render");
    char *data; size_t len;
    if (read_stdin(&data, &len)) { fprintf(stderr, "gptkit tokenizer render: reading stdin failed\n"); tok_free(t); return 1; }
    data = gk_realloc(data, len + 1); data[len] = 0;
    gk_err err;
    chat_conv c = {0};
    chat_specials sp;
    chat_tokens r = {0};
    int rc = 1;
    if (chat_conv_from_json(&c, data, &err)) fprintf(stderr, "gptkit tokenizer render: stdin: %s\n", err.msg);
    else if (chat_specials_resolve(t, 0, &sp, &err)) fprintf(stderr, "gptkit tokenizer render: %s\n", err.msg);
    else {
        chat_render(t, &sp, &c, gen, &r);
        for (size_t i = 0; i < r.n; i++) printf("%s%d", i ? " " : "", (int)r.ids[i]);
        printf("\n");
        rc = fflush(stdout) == 0 ? 0 : 1;
    }
    chat_tokens_free(&r); chat_conv_free(&c); free(data); tok_free(t);
    return rc;
}

static int do_export_hf(int argc, char **argv) {
    cli_args a; cli_args_init(&a, argc, argv, USAGE);
    const char *tp = NULL, *out = NULL, *f; long n_ctx = 1024, vocab = 0;
    while ((f = cli_next(&a))) {
        if (cli_is(f, "--tokenizer", "-t")) tp = cli_str(&a, f);
        else if (cli_is(f, "--out")) out = cli_str(&a, f);
        else if (cli_is(f, "--n-ctx")) n_ctx = cli_long(&a, f);
        else if (cli_is(f, "--vocab-size")) vocab = cli_long(&a, f);
        else cli_unknown(&a, f);
    }
    if (!out) cli_usage_error(&a, "--out is required");
    if (n_ctx < 1 || n_ctx > (1L << 30) || vocab < 0) cli_usage_error(&a, "--n-ctx must be positive, --vocab-size not negative");
    tok_tokenizer *t = load_or_die(tp, "export-hf");
    gk_err err;
    chat_tok_files fs;
    int rc = chat_tokenizer_files(t, (size_t)vocab, (int)n_ctx, &fs, &err);
    if (!rc) rc = gk_mkdir_p(out, &err);
    const char *names[3] = {"tokenizer.json", "tokenizer_config.json", "generation_config.json"};
    const char *texts[3] = {fs.tokenizer_json, fs.tokenizer_config_json, fs.generation_config_json};
    for (int i = 0; i < 3 && !rc; i++) {
        char *p = gk_path_join(out, names[i]);
        rc = gk_write_file_atomic(p, texts[i], strlen(texts[i]), &err);
        free(p);
    }
    if (rc) fprintf(stderr, "gptkit tokenizer export-hf: %s\n", err.msg);
    chat_tok_files_free(&fs); tok_free(t);
    return rc ? 1 : 0;
}

int cmd_tokenizer(int argc, char **argv) {
    if (argc < 2) { fputs(USAGE, stderr); return 2; }
    const char *sub = argv[1];
    if (!strcmp(sub, "-h") || !strcmp(sub, "--help")) { fputs(USAGE, stdout); return 0; }
    if (!strcmp(sub, "encode")) return do_encode(argc - 1, argv + 1);
    if (!strcmp(sub, "decode")) return do_decode(argc - 1, argv + 1);
    if (!strcmp(sub, "info")) return do_info(argc - 1, argv + 1);
    if (!strcmp(sub, "render")) return do_render(argc - 1, argv + 1);
    if (!strcmp(sub, "export-hf")) return do_export_hf(argc - 1, argv + 1);
    if (!strcmp(sub, "train")) return do_train(argc - 1, argv + 1);
    if (!strcmp(sub, "bench")) return do_bench(argc - 1, argv + 1);
    fprintf(stderr, "gptkit tokenizer: unknown subcommand '%s'\n\n%s", sub, USAGE);
    return 2;
}
