/* cmd_model.c: gptkit info (what a model is) and gptkit export (HF directory or GGUF file). */
#include "cli/cli.h"
#include "core/core.h"
#include "model/model.h"
#include "tok/tok.h"
#include "data/data.h"
#include "train/train.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *INFO_USAGE =
"usage: gptkit info --model PATH\n"
"\n"
"Prints what a model is: architecture, sizes, parameter count, tensor types, tokenizer and chat format.\n"
"PATH is a gptkit / HF checkpoint directory (config.json + safetensors, sharded or not) or a .gguf file\n"
"(whose every tensor is listed with its type and dims).\n";

static int is_gguf(const char *p) {
    size_t n = strlen(p);
    return n > 5 && !strcmp(p + n - 5, ".gguf") && !gk_is_dir(p);
}

int cmd_info(int argc, char **argv) {
    cli_args a;
    cli_args_init(&a, argc, argv, INFO_USAGE);
    const char *f, *model = NULL;
    while ((f = cli_next(&a))) {
        if (cli_is(f, "--model")) model = cli_str(&a, f);
        else if (!model && f[0] != '-') model = f;
        else cli_unknown(&a, f);
    }
    if (!model) cli_usage_error(&a, "--model PATH is required");
    gk_err err;
    if (is_gguf(model)) {
        if (gguf_print_info(model, stdout, &err)) { fprintf(stderr, "gptkit info: %s\n", err.msg); return 1; }
        return 0;
    }
    gpt_config c;
    char *rec = NULL;
    if (gpt_load_config(model, &c, &rec, &err)) { fprintf(stderr, "gptkit info: %s\n", err.msg); return 1; }
    gpt_model *t = gpt_create_table(&c, NULL);
    printf("directory     %s\n", model);
    printf("architecture  %s%s\n", gpt_arch_name(c.arch), c.qkv_bias ? " (qwen2: q/k/v bias)" : "");
    printf("sizes         %d layers, %d heads (%d key/value), width %d, FFN %d, vocab %d, context %d\n", c.n_layer, c.n_head,
           gpt_config_n_kv_head(&c), c.n_embd, gpt_config_n_inner(&c), c.vocab_size, c.n_ctx);
    printf("parameters    %zu (%.1fM)%s%s\n", t->num_params, (double)t->num_params / 1e6, c.tied_head ? ", tied head" : ", untied head",
           c.score_head ? ", score head" : "");
    if (c.arch == GPT_ARCH_LLAMA)
        printf("rope          theta %g%s, rms eps %g\n", (double)c.rope_theta, c.rope_scaling == GPT_ROPE_SCALE_LLAMA3 ? " (llama3 scaling)" : "",
               (double)c.ln_eps);
    gpt_free(t);
    tok_tokenizer *tok = NULL;
    if (tok_load_recorded(model, rec, NULL, 0, &tok, &err) == 0 && tok) {
        printf("tokenizer     %s, %zu tokens (%zu special)\n", tok_name(tok), tok_vocab_size(tok), tok_n_specials(tok));
        chat_specials sp;
        if (chat_specials_resolve(tok, 0, &sp, &err) == 0) printf("chat format   %s\n", chat_format_name(sp.fmt));
        tok_free(tok);
    } else {
        printf("tokenizer     %s\n", rec ? err.msg : "none recorded");
    }
    free(rec);
    return 0;
}

static const char *EXPORT_USAGE =
"usage: gptkit export --model PATH [--adapter DIR] --format gguf|hf [--type f32|f16|q8_0|q4_0|q4_k] --out FILE|DIR\n"
"\n"
"Writes a model in another format.\n"
"  --model PATH    checkpoint directory (gptkit or HF) or .gguf file\n"
"  --format gguf   one GGUF v3 file as llama.cpp's converter lays it out (LLaMA family or GPT-2; norms and biases f32,\n"
"                  matrices in --type, default f16); hf: an HF directory (config.json + model.safetensors, fp32,\n"
"                  with the tokenizer as tokenizer.json + tokenizer_config.json + generation_config.json)\n"
"  --type T        f32 | f16 | q8_0 | q4_0 | q4_k (GGUF only; q4_k: a plain min/max fit, matrices whose rows\n"
"                  are not a multiple of 256 wide in q8_0)\n"
"  --adapter DIR   merge this LoRA adapter (PEFT layout) into the weights first: W += (alpha/r) B A\n"
"  --out PATH      the file (gguf) or directory (hf) to write\n";

/* The token list as long as the model's vocabulary (its embedding rows): llama.cpp requires the two to agree,
 * and gptkit pads the vocabulary (50257 GPT-2 tokens + the chat specials in 50304 rows). The padding rows are never
 * produced by the tokenizer; they go in as "[PAD<id>]", GGUF type 5 (unused), as HF's converter writes them. */
static int pad_tokens(tok_bpe_export *x, size_t rows, gk_err *err) {
    if (x->n > rows) return gk_errf(err, "the tokenizer has %zu tokens, more than the model's %zu vocabulary rows", x->n, rows);
    x->tokens = gk_realloc(x->tokens, rows * sizeof *x->tokens);
    x->lens = gk_realloc(x->lens, rows * sizeof *x->lens);
    x->types = gk_realloc(x->types, rows * sizeof *x->types);
    for (size_t i = x->n; i < rows; i++) {
        char b[32];
        int k = snprintf(b, sizeof b, "[PAD%zu]", i);
        x->tokens[i] = gk_strdup(b);
        x->lens[i] = (size_t)k;
        x->types[i] = 5;
    }
    x->n = rows;
    return 0;
}

/* GGUF metadata for the model's tokenizer (tokenizer.ggml.* and the chat template), its token list padded to
 * vocab_rows; 0 entries (with a warning) when it has none or its split pattern has no llama.cpp equivalent. */
static size_t tokenizer_kvs(const char *model, const char *rec, size_t vocab_rows, gguf_extra_kv *kv) {
    gk_err err;
    tok_tokenizer *tok = NULL;
    if (tok_load_recorded(model, rec, NULL, 0, &tok, &err) || !tok) {
        fprintf(stderr, "gptkit export: no tokenizer written (%s)\n", tok ? err.msg : "the model records none");
        return 0;
    }
    tok_bpe_export x;
    if (tok_export_bpe(tok, &x, &err) || pad_tokens(&x, vocab_rows, &err)) {
        fprintf(stderr, "gptkit export: no tokenizer written: %s\n", err.msg);
        tok_bpe_export_free(&x);
        tok_free(tok);
        return 0;
    }
    size_t n = 0;
    gguf_kv_string(&kv[n++], "tokenizer.ggml.model", "gpt2");
    gguf_kv_string(&kv[n++], "tokenizer.ggml.pre", x.pre);
    gguf_kv_str_array(&kv[n++], "tokenizer.ggml.tokens", (const char *const *)x.tokens, x.lens, x.n);
    gguf_kv_i32_array(&kv[n++], "tokenizer.ggml.token_type", x.types, x.n);
    gguf_kv_str_array(&kv[n++], "tokenizer.ggml.merges", (const char *const *)x.merges, x.mlens, x.nm);
    chat_specials sp;
    if (chat_specials_resolve(tok, 0, &sp, &err) == 0) {
        if (sp.end >= 0) gguf_kv_u32(&kv[n++], "tokenizer.ggml.eos_token_id", (uint32_t)sp.end);
        if (sp.fmt == CHAT_FMT_LLAMA3 && sp.bos >= 0) gguf_kv_u32(&kv[n++], "tokenizer.ggml.bos_token_id", (uint32_t)sp.bos);
        gguf_kv_string(&kv[n++], "tokenizer.chat_template", chat_template_jinja(sp.fmt));
    }
    tok_bpe_export_free(&x);
    tok_free(tok);
    return n;
}

int cmd_export(int argc, char **argv) {
    cli_args a;
    cli_args_init(&a, argc, argv, EXPORT_USAGE);
    const char *f, *model = NULL, *format = NULL, *type = "f16", *out = NULL, *adapter = NULL;
    while ((f = cli_next(&a))) {
        if (cli_is(f, "--model")) model = cli_str(&a, f);
        else if (cli_is(f, "--format")) format = cli_str(&a, f);
        else if (cli_is(f, "--type")) type = cli_str(&a, f);
        else if (cli_is(f, "--out")) out = cli_str(&a, f);
        else if (cli_is(f, "--adapter")) adapter = cli_str(&a, f);
        else cli_unknown(&a, f);
    }
    if (!model || !out || !format) cli_usage_error(&a, "--model, --format and --out are required");
    int gg = !strcmp(format, "gguf");
    if (!gg && strcmp(format, "hf")) cli_usage_error(&a, "--format must be gguf or hf");
    int t = 0;
    if (gg && (gguf_type_parse(type, &t) || (t != GGUF_F32 && t != GGUF_F16 && t != GGUF_Q8_0 && t != GGUF_Q4_0 && t != GGUF_Q4_K)))
        cli_usage_error(&a, "--type must be f32, f16, q8_0, q4_0 or q4_k");
    gk_err err;
    char *rec = NULL;
    gpt_model *m = gpt_load(model, &rec, &err);
    if (!m) { fprintf(stderr, "gptkit export: %s\n", err.msg); return 1; }
    if (adapter) {
        if (gpt_lora_load(m, adapter, NULL, &err)) {
            fprintf(stderr, "gptkit export: %s\n", err.msg);
            gpt_free(m); free(rec);
            return 1;
        }
        gpt_lora_merge(m);   /* the written model computes base + adapter with no adapter left */
    }
    gguf_extra_kv kv[12];
    size_t nkv = 0;
    if (gg) nkv = tokenizer_kvs(model, rec, (size_t)m->cfg.vocab_size, kv);
    int rc = gg ? gpt_export_gguf(m, out, t, kv, nkv, &err) : train_save_model(m, out, rec, model, &err);
    for (size_t i = 0; i < nkv; i++) free(kv[i].bytes);
    gpt_free(m);
    free(rec);
    if (rc) { fprintf(stderr, "gptkit export: %s\n", err.msg); return 1; }
    fprintf(stderr, "gptkit export: wrote %s\n", out);
    return 0;
}
