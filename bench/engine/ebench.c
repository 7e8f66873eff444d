/* ebench.c: inference engine benchmark — prefill and decode tokens/s at batch 1 and 8, plus a memory read
 * bandwidth probe, for a named model size with random weights (the speed does not depend on the values).
 *
 *   ebench --model d6|d12 [--prompt 128] [--new 64] [--reps 3]
 *
 * prefill: one prompt of P tokens through the KV path (engine_feed), tokens/s = P / time.
 * decode:  engine_generate (greedy, no stop tokens) of N new tokens for B sequences sharing the prompt;
 *          decode time = generate time - prefill time; tokens/s = B * N / decode time.
 * bandwidth at batch-1 decode: bytes a step must read (every weight except the unused rows of wpe, plus the
 * KV cache) x steps/s, against kern_peak_probe's streaming bandwidth (what `gptkit bench peak` reports).
 * Median of --reps runs. Output: one "key value" line per figure, read by bench/engine/run.sh. */
#include "infer/infer.h"
#include "kern/kern.h"
#include "core/core.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int cmp_d(const void *a, const void *b) { double x = *(const double *)a, y = *(const double *)b; return (x > y) - (x < y); }
static double median(double *t, int n) { qsort(t, (size_t)n, sizeof *t, cmp_d); return t[n / 2]; }

int main(int argc, char **argv) {
    const char *name = "d6";
    size_t P = 128, N = 64;
    int reps = 3, probe = 1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--model") && i + 1 < argc) name = argv[++i];
        else if (!strcmp(argv[i], "--prompt") && i + 1 < argc) P = (size_t)atol(argv[++i]);
        else if (!strcmp(argv[i], "--new") && i + 1 < argc) N = (size_t)atol(argv[++i]);
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--no-probe")) probe = 0;
        else { fprintf(stderr, "usage: ebench --model d6|d12 [--prompt P] [--new N] [--reps R] [--no-probe]\n"); return 2; }
    }
    gpt_config c;
    gpt_config_default(&c);
    gk_err err;
    if (gpt_config_from_name(&c, name, &err)) { fprintf(stderr, "%s\n", err.msg); return 2; }
    gpt_model *m = gpt_create(&c);
    gpt_init_random(m, 1);
    size_t V = (size_t)c.vocab_size;
    int32_t *prompt = malloc(P * sizeof(int32_t));
    gk_rng rng; gk_rng_seed(&rng, 7);
    for (size_t i = 0; i < P; i++) prompt[i] = (int32_t)gk_rng_below(&rng, (uint32_t)V);
    printf("model %s\nlayers %d\nwidth %d\nparams %zu\nbackend %s\nthreads %d\n", name, c.n_layer, c.n_embd,
           m->num_params, kern_backend_name(m->be), gk_num_threads());

    engine *e = engine_new(m, NULL, 8, P + N + 1);
    float *lg = malloc(V * sizeof(float));
    double t[16];
    if (reps > 16) reps = 16;
    engine_feed(e, 0, prompt, P, lg, &err);   /* warm-up: page in the weights */
    for (int r = 0; r < reps; r++) {
        engine_reset(e, 0);
        double t0 = gk_now();
        if (engine_feed(e, 0, prompt, P, lg, &err)) { fprintf(stderr, "%s\n", err.msg); return 1; }
        t[r] = gk_now() - t0;
    }
    double prefill = median(t, reps);
    printf("prefill_tokens %zu\nprefill_tok_s %.1f\n", P, (double)P / prefill);

    engine_gen_opts o;
    engine_gen_opts_default(&o);
    o.samp.temperature = 0; o.max_new = N; o.default_stops = 0;
    size_t batches[2] = { 1, 8 };
    for (int k = 0; k < 2; k++) {
        size_t B = batches[k];
        engine_seq s[8];
        for (int r = 0; r < reps; r++) {
            double t0 = gk_now();
            if (engine_generate(e, prompt, P, B, &o, s, &err)) { fprintf(stderr, "%s\n", err.msg); return 1; }
            t[r] = gk_now() - t0 - prefill;
            for (size_t i = 0; i < B; i++) engine_seq_free(&s[i]);
        }
        double dt = median(t, reps);
        /* N tokens per sequence, but the first comes from the prefill's logits: N-1 decode steps */
        double tps = (double)B * (double)(N - 1) / dt;
        printf("decode_b%zu_tok_s %.2f\n", B, tps);
        if (B == 1) {
            size_t C = (size_t)c.n_embd, L = (size_t)c.n_layer;
            double weights = (double)(m->num_params - (size_t)c.n_ctx * C) * 4.0;   /* wpe: one row per step */
            double kv = 2.0 * (double)L * (double)(P + N / 2) * (double)C * 4.0;    /* mean cache read per step */
            printf("decode_b1_bytes_per_step %.0f\ndecode_b1_GB_s %.2f\n", weights + kv, (weights + kv) * tps / 1e9);
        }
    }
    if (probe) {   /* the kernel module's probe (gptkit bench peak): streaming a = b + s*c, best of 5 */
        double gf, bf, bw;
        kern_peak_probe(m->be, &gf, &bf, &bw);
        printf("peak_mem_GB_s %.2f\n", bw);
    }
    engine_free(e);
    gpt_free(m);
    free(lg); free(prompt);
    return 0;
}
