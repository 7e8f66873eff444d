/* lbench.c: LLaMA-family inference speed of gptkit on a model file — prefill of P tokens and batch-1 greedy decode
 * of N tokens through the engine, plus peak resident memory. The peer (llama.cpp through llama-cpp-python) runs
 * the same GGUF file with the same method in bench/llama/llama_cpp_bench.py.
 *
 *   lbench --model PATH (.gguf or HF directory) [--prompt 512] [--new 64] [--reps 3]
 *
 * prefill: engine_feed of one P-token prompt, tokens/s = P / time (median of reps, after a warm-up).
 * decode:  after that prefill, N-1 greedy steps of one token each (engine_feed of the argmax: the KV-cache decode
 *          path), timed alone; tokens/s = (N-1) / time (median of reps).
 * memory: peak RSS after loading (weights) and at the end (weights, KV cache of P + N rows, activations).
 * A .gguf model is loaded for inference (gpt_load_infer: quantized matrices stay quantized).
 * Prints "key value" lines. */
#include "infer/infer.h"
#include "kern/kern.h"
#include "core/core.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

static int cmp_d(const void *a, const void *b) { double x = *(const double *)a, y = *(const double *)b; return (x > y) - (x < y); }
static double median(double *t, int n) { qsort(t, (size_t)n, sizeof *t, cmp_d); return t[n / 2]; }

int main(int argc, char **argv) {
    const char *path = NULL;
    size_t P = 512, N = 64;
    int reps = 3;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--model") && i + 1 < argc) path = argv[++i];
        else if (!strcmp(argv[i], "--prompt") && i + 1 < argc) P = (size_t)atol(argv[++i]);
        else if (!strcmp(argv[i], "--new") && i + 1 < argc) N = (size_t)atol(argv[++i]);
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
        else { fprintf(stderr, "usage: lbench --model PATH [--prompt P] [--new N] [--reps R]\n"); return 2; }
    }
    if (!path) { fprintf(stderr, "lbench: --model PATH is required\n"); return 2; }
    gk_err err;
    double tl = gk_now();
    gpt_model *m = gpt_load_infer(path, NULL, &err);   /* a .gguf keeps its quantized matrices quantized */
    if (!m) { fprintf(stderr, "lbench: %s\n", err.msg); return 1; }
    tl = gk_now() - tl;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double load_rss = (double)ru.ru_maxrss / 1024.0;
    size_t V = (size_t)m->cfg.vocab_size;
    int32_t *prompt = malloc(P * sizeof(int32_t));
    gk_rng rng; gk_rng_seed(&rng, 7);
    for (size_t i = 0; i < P; i++) prompt[i] = (int32_t)gk_rng_below(&rng, (uint32_t)V);
    printf("gptkit_params %zu\ngptkit_backend %s\ngptkit_threads %d\ngptkit_load_s %.2f\n", m->num_params,
           kern_backend_name(m->be), gk_num_threads(), tl);
    printf("gptkit_load_peak_rss_mb %.0f\n", load_rss);
    engine *e = engine_new(m, NULL, 1, P + N + 1);
    float *lg = malloc(V * sizeof(float));
    double t[16];
    if (reps > 16) reps = 16;
    engine_feed(e, 0, prompt, P, lg, &err);   /* warm-up */
    for (int r = 0; r < reps; r++) {
        engine_reset(e, 0);
        double t0 = gk_now();
        if (engine_feed(e, 0, prompt, P, lg, &err)) { fprintf(stderr, "%s\n", err.msg); return 1; }
        t[r] = gk_now() - t0;
    }
    double prefill = median(t, reps);
    printf("gptkit_prefill_tok_s %.1f\n", (double)P / prefill);
    for (int r = 0; r < reps; r++) {
        engine_reset(e, 0);
        if (engine_feed(e, 0, prompt, P, lg, &err)) { fprintf(stderr, "%s\n", err.msg); return 1; }
        double t0 = gk_now();
        for (size_t k = 1; k < N; k++) {
            int32_t tok = 0;
            for (size_t v = 1; v < V; v++) if (lg[v] > lg[tok]) tok = (int32_t)v;
            if (engine_feed(e, 0, &tok, 1, lg, &err)) { fprintf(stderr, "%s\n", err.msg); return 1; }
        }
        t[r] = gk_now() - t0;
    }
    printf("gptkit_decode_tok_s %.2f\n", (double)(N - 1) / median(t, reps));
    getrusage(RUSAGE_SELF, &ru);
    printf("gptkit_peak_rss_mb %.0f\n", (double)ru.ru_maxrss / 1024.0);
    engine_free(e);
    gpt_free(m);
    free(lg); free(prompt);
    return 0;
}
