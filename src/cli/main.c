/* main.c: the gptkit binary — dispatches to subcommands. */
#include "cli/cli.h"
#include "core/core.h"
#include "kern/kern.h"
#include <stdio.h>
#include <string.h>

typedef struct { const char *name; int (*fn)(int, char **); const char *help; } command;

static const command commands[] = {
    {"tokenizer", cmd_tokenizer, "train / encode / decode / inspect a byte-level BPE tokenizer"},
    {"tokenize",  cmd_tokenize,  "turn text files into token shards (llm.c .bin layout)"},
    {"pretrain",  cmd_pretrain,  "train a GPT-2 from scratch or continue one, on token shards"},
    {"eval",      cmd_eval,      "mean next-token loss of a checkpoint on a shard"},
    {"sft",       cmd_sft,       "supervised finetuning on chat JSONL (loss on assistant tokens)"},
    {"sample",    cmd_sample,    "generate completions from a checkpoint"},
    {"chat",      cmd_chat,      "talk to a chat model"},
    {"serve",     cmd_serve,     "OpenAI-compatible HTTP server with continuous batching, and a web chat page"},
    {"solve",     cmd_solve,     "answer a task file with a strategy (greedy, fewshot, cot, sc, tot, reflect) and tools"},
    {"rm",        cmd_rm,        "train a reward model on preference pairs / rankings"},
    {"score",     cmd_score,     "score (prompt, response) pairs with a reward model"},
    {"ppo",       cmd_ppo,       "RLHF: PPO against a reward model with a KL leash"},
    {"dpo",       cmd_dpo,       "direct preference optimisation"},
    {"compare",   cmd_compare,   "win rate of model A over model B by a reward model"},
    {"data",      cmd_data,      "generate the built-in demo datasets (SFT, preferences, prompts, eval tasks)"},
    {"pipeline",  cmd_pipeline,  "run the whole chain on the built-in demo data (or a config)"},
    {"bench",     cmd_bench,     "micro-benchmarks (peak GEMM / bandwidth probe)"},
    {"embed",     cmd_embed,     "sentence embeddings of text lines with a sentence-transformers BERT model"},
    {"index",     cmd_index,     "retrieval index (SQLite): build from documents, query by BM25 / vector / hybrid"},
    {"fill",      cmd_fill,      "fill a template's holes (gen / select / grammar) in one pass: captures as JSON"},
};
#define NCOMMANDS (sizeof commands / sizeof commands[0])

static void usage(FILE *f) {
    fprintf(f, "gptkit: the GPT-assistant pipeline in C — tokenizer, pretraining, SFT, reward model, PPO, inference.\n\n"
               "usage: gptkit [--backend cpu|ref] [--gemm auto|openblas|onednn|builtin] COMMAND [options]\n"
               "       (gptkit COMMAND --help for each)\n\ncommands:\n");
    for (size_t i = 0; i < NCOMMANDS; i++) fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].help);
    fprintf(f, "\nglobal options (any command, anywhere on the line; docs/kernels.md):\n"
               "  --backend cpu|ref    kernels: the fast CPU backend (default) or the plain fp32 reference (slow, exact)\n"
               "  --gemm LIB           the cpu backend's GEMM library: auto (default: the fastest present, timed once\n"
               "                       per run), openblas, onednn, or builtin (plain loops); present here:");
    for (int g = KERN_GEMM_OPENBLAS; g <= KERN_GEMM_BUILTIN; g++)
        if (kern_gemm_present((kern_gemm)g)) fprintf(f, " %s", kern_gemm_name((kern_gemm)g));
    kern_backend *be = kern_backend_create(NULL, NULL);
    fprintf(f, "\n\nbackend: %s, %d threads\n", kern_backend_name(be), gk_num_threads());
    kern_backend_free(be);
}

/* Strips the global options (--backend, --gemm; "--opt VALUE" or "--opt=VALUE") from argv wherever they stand
 * and makes them the defaults of every backend created later (kern_backend_set_defaults), so commands never
 * see them. Returns the new argc, or -1 with a message on stderr. */
static int global_options(int argc, char **argv) {
    kern_backend_opts o;
    kern_backend_opts_default(&o);
    int out = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *val = NULL;
        int is_gemm = !strncmp(a, "--gemm", 6) && (a[6] == 0 || a[6] == '=');
        int is_be = !strncmp(a, "--backend", 9) && (a[9] == 0 || a[9] == '=');
        if (!strcmp(a, "--")) { while (i < argc) argv[out++] = argv[i++]; break; }
        if (!is_gemm && !is_be) { argv[out++] = argv[i]; continue; }
        const char *eq = strchr(a, '=');
        if (eq) val = eq + 1;
        else if (i + 1 < argc) val = argv[++i];
        if (is_gemm && (!val || kern_gemm_parse(val, &o.gemm) != 0)) {
            fprintf(stderr, "gptkit: --gemm takes auto, openblas, onednn or builtin (got '%s')\n", val ? val : "");
            return -1;
        }
        if (is_gemm && !kern_gemm_present(o.gemm)) {
            fprintf(stderr, "gptkit: --gemm %s: this build has no %s (gptkit --help lists what it has)\n", val, val);
            return -1;
        }
        if (is_be && (!val || kern_kind_parse(val, &o.kind) != 0)) {
            fprintf(stderr, "gptkit: --backend takes cpu or ref (got '%s')\n", val ? val : "");
            return -1;
        }
    }
    argv[out] = NULL;
    kern_backend_set_defaults(&o);
    return out;
}

int main(int argc, char **argv) {
    argc = global_options(argc, argv);
    if (argc < 0) return 2;
    if (argc < 2) { usage(stderr); return 2; }
    if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "help")) { usage(stdout); return 0; }
    if (!strcmp(argv[1], "--version")) { printf("gptkit 0.1\n"); return 0; }
    for (size_t i = 0; i < NCOMMANDS; i++)
        if (!strcmp(argv[1], commands[i].name)) return commands[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "gptkit: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return 2;
}
