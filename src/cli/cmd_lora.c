/* cmd_lora.c: gptkit lora merge — a LoRA adapter (PEFT layout) folded into its base, written as a full
 * checkpoint (docs/lora.md). The merged model computes base + adapter with no adapter left: W += (alpha/r) B A. */
#include "cli/cli.h"
#include "core/core.h"
#include "model/model.h"
#include "train/train.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *USAGE =
"usage: gptkit lora merge --model BASE --adapter DIR --out MERGED\n"
"\n"
"Folds the LoRA adapter in DIR (adapter_config.json + adapter_model.safetensors, written by gptkit or HF peft)\n"
"into the base checkpoint BASE and writes MERGED (config.json + model.safetensors + the base's tokenizer as\n"
"tokenizer.json, tokenizer_config.json and generation_config.json).\n"
"The adapter must fit the base: target names, shapes, and (gptkit's adapters) the base's checksum.\n"
"  --model BASE    the base checkpoint directory (gptkit or HF)\n"
"  --adapter DIR   the adapter directory\n"
"  --out MERGED    the directory to write\n"
"GGUF of the merged model: gptkit export --model MERGED --format gguf --out FILE.gguf\n";

static int do_merge(int argc, char **argv) {
    cli_args a;
    cli_args_init(&a, argc, argv, USAGE);
    const char *f, *model = NULL, *adapter = NULL, *out = NULL;
    while ((f = cli_next(&a))) {
        if (cli_is(f, "--model")) model = cli_str(&a, f);
        else if (cli_is(f, "--adapter")) adapter = cli_str(&a, f);
        else if (cli_is(f, "--out")) out = cli_str(&a, f);
        else cli_unknown(&a, f);
    }
    if (!model || !adapter || !out) cli_usage_error(&a, "--model, --adapter and --out are required");
    gk_err err;
    char *rec = NULL;
    gpt_model *m = gpt_load(model, &rec, &err);
    if (!m) { fprintf(stderr, "gptkit lora merge: %s\n", err.msg); return 1; }
    int rc = gpt_lora_load(m, adapter, NULL, &err);
    if (rc == 0) {
        size_t n = gpt_lora_num_params(m), sites = m->lora->n_sites;
        gpt_lora_merge(m);
        /* the tokenizer path the base records may be relative to the base: record it so MERGED finds it anywhere */
        char *tok = NULL;
        if (rec && rec[0] != '/') {
            char *p = gk_path_join(model, rec);
            tok = realpath(p, NULL);
            free(p);
        }
        rc = train_save_model(m, out, tok ? tok : rec, model, &err);
        free(tok);
        if (rc == 0) fprintf(stderr, "gptkit lora merge: %zu adapter parameters on %zu layers merged; wrote %s\n", n, sites, out);
    }
    if (rc) fprintf(stderr, "gptkit lora merge: %s\n", err.msg);
    gpt_free(m);
    free(rec);
    return rc ? 1 : 0;
}

int cmd_lora(int argc, char **argv) {
    if (argc < 2) { fputs(USAGE, stderr); return 2; }
    const char *sub = argv[1];
    if (!strcmp(sub, "-h") || !strcmp(sub, "--help")) { fputs(USAGE, stdout); return 0; }
    if (!strcmp(sub, "merge")) return do_merge(argc - 1, argv + 1);
    fprintf(stderr, "gptkit lora: unknown subcommand '%s'\n\n%s", sub, USAGE);
    return 2;
}
