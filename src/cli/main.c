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
    {"rm",        cmd_rm,        "train a reward model on preference pairs / rankings"},
    {"score",     cmd_score,     "score (prompt, response) pairs with a reward model"},
    {"ppo",       cmd_ppo,       "RLHF: PPO against a reward model with a KL leash"},
    {"dpo",       cmd_dpo,       "direct preference optimisation"},
    {"compare",   cmd_compare,   "win rate of model A over model B by a reward model"},
    {"data",      cmd_data,      "generate the built-in demo datasets (SFT, preferences, prompts, eval tasks)"},
    {"pipeline",  cmd_pipeline,  "run the whole chain on the built-in demo data (or a config)"},
    {"bench",     cmd_bench,     "micro-benchmarks (peak GEMM / bandwidth probe)"},
};
#define NCOMMANDS (sizeof commands / sizeof commands[0])

static void usage(FILE *f) {
    fprintf(f, "gptkit: the GPT-assistant pipeline in C — tokenizer, pretraining, SFT, reward model, PPO, inference.\n\n"
               "usage: gptkit COMMAND [options]   (gptkit COMMAND --help for each)\n\ncommands:\n");
    for (size_t i = 0; i < NCOMMANDS; i++) fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].help);
    fprintf(f, "\nbackend: %s, %d threads\n", kern_impl_name(), gk_num_threads());
}

int main(int argc, char **argv) {
    if (argc < 2) { usage(stderr); return 2; }
    if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "help")) { usage(stdout); return 0; }
    if (!strcmp(argv[1], "--version")) { printf("gptkit 0.1\n"); return 0; }
    for (size_t i = 0; i < NCOMMANDS; i++)
        if (!strcmp(argv[1], commands[i].name)) return commands[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "gptkit: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return 2;
}
