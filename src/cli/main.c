/* main.c: the gptkit binary — dispatches to subcommands. */
#include "cli/cli.h"
#include "core/core.h"
#include "kern/kern.h"
#include "dist/dist.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* dist: 1 for the commands that split their work across ranks under mpirun (src/dist); the others refuse to run
 * on more than one rank rather than repeat their work and race on their output files. */
typedef struct { const char *name; int (*fn)(int, char **); const char *help; int dist; } command;

/* `mpirun -np N gptkit dist-info`: whether this build has MPI and how many ranks the launcher started (rank 0
 * prints; the others' stdout is closed by dist_init). */
static int cmd_dist_info(int argc, char **argv) {
    printf("gptkit dist: MPI %s; rank %d of ranks %d\n", dist_available() ? "built in (Open MPI)" : "not built in",
           dist_rank(), dist_size());
    /* NCCL (GPU buffers, --device cuda) lives in the CUDA plugin: asking loads the plugin, not the GPU */
    int nv = kern_nccl_version();
    if (nv) printf("gptkit dist: NCCL %d.%d.%d in the CUDA plugin (--device cuda under mpirun)\n", nv / 10000, nv / 100 % 100, nv % 100);
    else printf("gptkit dist: NCCL not built in (--device cuda cannot run on several ranks)\n");
    /* --bench MB: the all-reduce (sum of floats) of an MB-megabyte buffer, median of 9 after 2 warm-ups, and its
     * bus bandwidth 2 (N-1)/N bytes / time (what a ring moves per rank; NCCL's convention) */
    if (argc >= 3 && !strcmp(argv[1], "--bench")) {
        double mb = atof(argv[2]);
        size_t n = (size_t)(mb * 1e6 / sizeof(float));
        if (n == 0) { fprintf(stderr, "gptkit dist-info: --bench takes a size in MB\n"); return 2; }
        float *buf = gk_calloc(n, sizeof(float));
        double t[11];
        for (int i = 0; i < 11; i++) {
            dist_barrier();
            double t0 = gk_now();
            dist_allreduce_sum_f32(buf, n);
            t[i] = gk_now() - t0;
        }
        double *w = t + 2;
        for (int i = 0; i < 9; i++) for (int j = i + 1; j < 9; j++) if (w[j] < w[i]) { double x = w[i]; w[i] = w[j]; w[j] = x; }
        double N = dist_size(), bus = N > 1 ? 2.0 * (N - 1) / N * (double)n * sizeof(float) / w[4] : 0;
        printf("allreduce %.1f MB over %d ranks: median %.3f ms, bus bandwidth %.2f GB/s\n", (double)n * sizeof(float) / 1e6,
               dist_size(), w[4] * 1e3, bus / 1e9);
        free(buf);
    }
    return 0;
}

static const command commands[] = {
    {"tokenizer", cmd_tokenizer, "train / encode / decode / inspect a byte-level BPE tokenizer", 0},
    {"tokenize",  cmd_tokenize,  "turn text files into token shards (llm.c .bin layout)", 0},
    {"pretrain",  cmd_pretrain,  "train a GPT-2 or LLaMA-family model from scratch or continue one, on token shards", 1},
    {"eval",      cmd_eval,      "mean next-token loss of a checkpoint on a shard", 0},
    {"info",      cmd_info,      "what a model is: architecture, sizes, parameters, tensor types, tokenizer", 0},
    {"export",    cmd_export,    "write a model as GGUF (f32/f16/q8_0/q4_0) or an HF directory", 0},
    {"lora",      cmd_lora,      "LoRA adapters: merge one into its base (docs/lora.md)", 0},
    {"sft",       cmd_sft,       "supervised finetuning on chat JSONL (loss on assistant tokens)", 1},
    {"sample",    cmd_sample,    "generate completions from a checkpoint", 0},
    {"chat",      cmd_chat,      "talk to a chat model", 0},
    {"serve",     cmd_serve,     "OpenAI-compatible HTTP server with continuous batching, and a web chat page", 0},
    {"solve",     cmd_solve,     "answer a task file with a strategy (greedy, fewshot, cot, sc, tot, reflect) and tools", 0},
    {"rm",        cmd_rm,        "train a reward model on preference pairs / rankings", 1},
    {"score",     cmd_score,     "score (prompt, response) pairs with a reward model", 0},
    {"ppo",       cmd_ppo,       "RLHF: PPO against a reward model with a KL leash", 1},
    {"dpo",       cmd_dpo,       "direct preference optimisation", 1},
    {"grpo",      cmd_grpo,      "GRPO with verifiable rewards (answers checked)", 1},
    {"compare",   cmd_compare,   "win rate of model A over model B by a reward model", 0},
    {"data",      cmd_data,      "generate the built-in demo datasets (SFT, preferences, prompts, eval tasks)", 0},
    {"pipeline",  cmd_pipeline,  "run the whole chain on the built-in demo data (or a config)", 0},
    {"bench",     cmd_bench,     "micro-benchmarks (peak GEMM / bandwidth probe)", 0},
    {"embed",     cmd_embed,     "sentence embeddings of text lines with a sentence-transformers BERT model", 0},
    {"index",     cmd_index,     "retrieval index (SQLite): build from documents, query by BM25 / vector / hybrid", 0},
    {"fill",      cmd_fill,      "fill a template's holes (gen / select / grammar) in one pass: captures as JSON", 0},
    {"dist-info", cmd_dist_info, "data parallelism: MPI in this build, and the ranks mpirun started", 1},
};
#define NCOMMANDS (sizeof commands / sizeof commands[0])

static void usage(FILE *f) {
    fprintf(f, "gptkit: the GPT-assistant pipeline in C — tokenizer, pretraining, SFT, reward model, PPO, inference.\n\n"
               "usage: gptkit [--backend cpu|ref|cuda] [--gemm auto|openblas|onednn|builtin] COMMAND [options]\n"
               "       (gptkit COMMAND --help for each)\n\ncommands:\n");
    for (size_t i = 0; i < NCOMMANDS; i++) fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].help);
    fprintf(f, "\nglobal options (any command, anywhere on the line; docs/kernels.md):\n"
               "  --backend cpu|ref|cuda  kernels: the fast CPU backend (default), the plain fp32 reference (slow, exact)\n"
               "                       or the NVIDIA GPU (docs/cuda.md); --device is the same option\n"
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
        int is_be = (!strncmp(a, "--backend", 9) && (a[9] == 0 || a[9] == '=')) ||
                    (!strncmp(a, "--device", 8) && (a[8] == 0 || a[8] == '='));
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
            fprintf(stderr, "gptkit: --backend/--device takes cpu, ref or cuda (got '%s')\n", val ? val : "");
            return -1;
        }
        /* fail here, in one line, rather than deep inside the first model the command builds */
        gk_err e;
        if (is_be && o.kind == KERN_KIND_CUDA && kern_cuda_usable(&e) != 0) {
            fprintf(stderr, "gptkit: --device cuda: %s\n", e.msg);
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
        if (!strcmp(argv[1], commands[i].name)) {
            /* under mpirun every rank runs the same command; the training stages split the work (src/dist) */
            dist_init(&argc, &argv);
            if (dist_size() > 1 && !commands[i].dist) {
                if (dist_rank() == 0)
                    fprintf(stderr, "gptkit %s: runs in one process; under mpirun only pretrain, sft, rm, dpo, ppo and grpo "
                            "split their work across ranks (run it without mpirun)\n", argv[1]);
                dist_finalize();
                return 2;
            }
            int rc = commands[i].fn(argc - 1, argv + 1);
            /* a rank that failed alone must not leave the others waiting in a collective: end the job. 130 is
             * Ctrl-C after the checkpoint every rank agreed on (stage.c): a clean end, not a failure. */
            if (rc != 0 && rc != 130 && dist_size() > 1) { fflush(stdout); fflush(stderr); dist_abort(rc); }
            dist_finalize();
            return rc;
        }
    fprintf(stderr, "gptkit: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return 2;
}
