/* cmd_sample.c: gptkit sample — completions from any checkpoint (base or chat) through the inference engine. */
#include "cli/cli.h"
#include "core/core.h"
#include "infer/infer.h"
#include "train/train.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *USAGE =
"usage: gptkit sample --model DIR (--prompt TEXT | --prompt-ids \"1 2 3\") [options]\n"
"\n"
"Generates completions with the KV-cached engine. Prints the generated text (streamed) or, without a\n"
"tokenizer, the generated ids. --json prints one object per sample:\n"
"  {\"ids\":[generated ids], \"text\":\"...\" (with a tokenizer), \"finish\":\"length|stop|stop_string|context|grammar\",\n"
"   \"logprobs\":[raw model log-probs of the ids]}\n"
"\n"
"  --model DIR           checkpoint directory (config.json + model.safetensors), or a LoRA adapter directory\n"
"  --adapter DIR         a LoRA adapter (PEFT layout) on top of --model, unmerged (docs/lora.md)\n"
"  --tokenizer PATH      override the tokenizer recorded in the checkpoint\n"
"  --prompt TEXT         prompt text (special-token text such as <|endoftext|> is recognised)\n"
"  --prompt-ids IDS      prompt as token ids, separated by spaces or commas\n"
"  --max-new N           tokens to generate per sample (default 64)\n"
"  --temperature T       0 = greedy (default 1)\n"
"  --top-k K             keep the K most likely tokens (default 0 = off)\n"
"  --top-p P             nucleus sampling (default 1 = off)\n"
"  --min-p P             drop tokens below P * the top probability (default 0 = off)\n"
"  --repetition-penalty R  --frequency-penalty F  --presence-penalty P   (defaults 1, 0, 0)\n"
"  --seed S              sampling seed (default 1337)\n"
"  --num-samples N       independent samples sharing one prompt prefill (default 1)\n"
"  --stop STR            stop when STR appears (repeatable; the text ends before it)\n"
"  --no-stop             do not stop on <|end|> / <|endoftext|>\n"
CLI_CONSTRAINT_HELP
"  --json                one JSON object per sample on stdout\n"
"  -q, --quiet           no log lines on stderr\n";

static int stream_out(void *ctx, size_t seq, int32_t id, const char *text, size_t len) {
    (void)ctx; (void)seq; (void)id;
    fwrite(text, 1, len, stdout);
    fflush(stdout);
    return 0;
}

static int parse_ids(const char *s, int32_t **out, size_t *n) {
    size_t cap = 16; *n = 0;
    *out = gk_malloc(cap * sizeof(int32_t));
    const char *p = s;
    while (*p) {
        while (*p == ' ' || *p == ',' || *p == '\t' || *p == '\n') p++;
        if (!*p) break;
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p || v < 0 || v > INT32_MAX) return -1;
        if (*n == cap) { cap *= 2; *out = gk_realloc(*out, cap * sizeof(int32_t)); }
        (*out)[(*n)++] = (int32_t)v;
        p = end;
    }
    return 0;
}

int cmd_sample(int argc, char **argv) {
    cli_args a;
    cli_args_init(&a, argc, argv, USAGE);
    const char *f, *model_dir = NULL, *tok_path = NULL, *prompt = NULL, *prompt_ids = NULL, *adapter = NULL;
    engine_gen_opts o;
    engine_gen_opts_default(&o);
    o.max_new = 64;
    long nsamp = 1;
    int json = 0;
    const char *stops[16]; size_t nstops = 0;
    cli_constraint cc;
    cli_constraint_init(&cc);
    while ((f = cli_next(&a))) {
        if (cli_is(f, "--model")) model_dir = cli_str(&a, f);
        else if (cli_is(f, "--adapter")) adapter = cli_str(&a, f);
        else if (cli_is(f, "--tokenizer")) tok_path = cli_str(&a, f);
        else if (cli_is(f, "--prompt")) prompt = cli_str(&a, f);
        else if (cli_is(f, "--prompt-ids")) prompt_ids = cli_str(&a, f);
        else if (cli_is(f, "--max-new")) { long v = cli_long(&a, f); if (v < 1) cli_usage_error(&a, "--max-new must be >= 1"); o.max_new = (size_t)v; }
        else if (cli_sampling_flag(&a, f, &o.samp)) {}
        else if (cli_constraint_flag(&a, f, &cc)) {}
        else if (cli_is(f, "--num-samples", "-n")) { nsamp = cli_long(&a, f); if (nsamp < 1 || nsamp > 4096) cli_usage_error(&a, "--num-samples must be 1..4096"); }
        else if (cli_is(f, "--stop")) { if (nstops == 16) cli_usage_error(&a, "at most 16 --stop strings"); stops[nstops++] = cli_str(&a, f); }
        else if (cli_is(f, "--no-stop")) o.default_stops = 0;
        else if (cli_is(f, "--json")) json = 1;
        else if (cli_is(f, "-q", "--quiet")) gk_verbose = 0;
        else cli_unknown(&a, f);
    }
    if (!model_dir) cli_usage_error(&a, "--model DIR is required");
    if (!prompt == !prompt_ids) cli_usage_error(&a, "give exactly one of --prompt TEXT and --prompt-ids IDS");
    gk_err err;
    if (infer_sampling_validate(&o.samp, &err)) cli_usage_error(&a, "%s", err.msg);

    char *tok_rec = NULL, *base_dir = NULL;
    /* a checkpoint, or a LoRA adapter directory (its recorded base with the adapter on) */
    gpt_model *m = train_open_model(model_dir, &tok_rec, &base_dir, 1, &err);
    if (!m) { fprintf(stderr, "gptkit sample: %s\n", err.msg); return 1; }
    tok_tokenizer *tok = NULL;
    int rc = 1;
    int32_t *ids = NULL; size_t n = 0;
    engine *e = NULL;
    engine_seq *out = NULL;
    constrain_vocab *cv = NULL;
    constrain *cons = NULL;
    if (adapter && (m->lora ? gk_errf(&err, "%s: --model is already an adapter", adapter) : gpt_lora_load(m, adapter, NULL, &err)))
        goto fail;
    if (tok_load_recorded(base_dir, tok_rec, tok_path, prompt != NULL || nstops > 0 || cc.kind >= 0, &tok, &err)) goto fail;
    if (cli_constraint_build(&cc, tok, &cv, &cons, &err)) goto fail;
    o.grammar = cons;
    if (prompt) {
        tok_ids v = {0};
        tok_encode(tok, prompt, strlen(prompt), 1, &v);
        ids = v.ids; n = v.n;
    } else if (parse_ids(prompt_ids, &ids, &n)) {
        gk_errf(&err, "--prompt-ids: expected non-negative integers separated by spaces or commas, got '%s'", prompt_ids);
        goto fail;
    }
    o.stop_strs = stops; o.n_stop_strs = nstops;
    size_t max_len = n + o.max_new;
    e = engine_new(m, tok, (size_t)nsamp, max_len);
    int streaming = !json && nsamp == 1 && tok != NULL;
    if (streaming) o.on_token = stream_out;
    out = gk_calloc((size_t)nsamp, sizeof *out);
    if (engine_generate(e, ids, n, (size_t)nsamp, &o, out, &err)) goto fail;
    for (long s = 0; s < nsamp; s++) {
        engine_seq *q = &out[s];
        if (json) {
            cJSON *j = cJSON_CreateObject();
            cJSON *ja = cJSON_AddArrayToObject(j, "ids");
            for (size_t i = 0; i < q->n; i++) cJSON_AddItemToArray(ja, cJSON_CreateNumber(q->ids[i]));
            if (q->text) cJSON_AddStringToObject(j, "text", q->text);
            cJSON_AddStringToObject(j, "finish", engine_finish_name(q->finish));
            cJSON *jl = cJSON_AddArrayToObject(j, "logprobs");
            for (size_t i = 0; i < q->n; i++) cJSON_AddItemToArray(jl, cJSON_CreateNumber((double)q->logprob[i]));
            char *txt = cJSON_PrintUnformatted(j);
            printf("%s\n", txt);
            cJSON_free(txt);
            cJSON_Delete(j);
        } else if (streaming) {
            printf("\n");
        } else {
            if (nsamp > 1) printf("%s--- sample %ld\n", s ? "\n" : "", s + 1);
            if (q->text) fwrite(q->text, 1, q->text_len, stdout);
            else for (size_t i = 0; i < q->n; i++) printf("%s%d", i ? " " : "", q->ids[i]);
            printf("\n");
        }
    }
    fflush(stdout);
    rc = 0;
fail:
    if (rc) fprintf(stderr, "gptkit sample: %s\n", err.msg);
    if (out) for (long s = 0; s < nsamp; s++) engine_seq_free(&out[s]);
    free(out);
    engine_free(e);
    constrain_free(cons);
    constrain_vocab_free(cv);
    free(ids);
    tok_free(tok);
    free(tok_rec); free(base_dir);
    gpt_free(m);
    return rc;
}
