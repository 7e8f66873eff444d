/* rows.c: a model's weight products at a given number of rows, one call timed at a time — the decode products
 * (kern_matmul_skinny_fwd, up to KERN_SKINNY_MAX_N rows) and, above that, the GEMM (kern_matmul_fwd).
 *   rows N [SET]   SET: d6 (default; GPT-2 shape, width 384, tied 50257 head), d12 (GPT-2 124M), llama135m
 *                  (SmolLM-135M's products, all in the LM-head layout), minilm (all-MiniLM-L6's, for embedding)
 * Per product: the first call (oneDNN generates its kernel then), then the median of 21 timings of 10 calls,
 * GFLOP/s and the weight's bytes per second. Random weights and inputs. Built and run by bench/kern/rows.sh. */
#include "kern/kern.h"
#include "core/core.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct { const char *name; size_t C, OC; int out_in; } product;

static const product D6[] = {{"qkv", 384, 1152, 0}, {"attn proj", 384, 384, 0}, {"fc", 384, 1536, 0},
                             {"fc proj", 1536, 384, 0}, {"lm head", 384, 50257, 1}, {NULL, 0, 0, 0}};
static const product D12[] = {{"qkv", 768, 2304, 0}, {"attn proj", 768, 768, 0}, {"fc", 768, 3072, 0},
                              {"fc proj", 3072, 768, 0}, {"lm head", 768, 50257, 1}, {NULL, 0, 0, 0}};
static const product LLAMA[] = {{"q / o", 576, 576, 1}, {"k / v", 576, 192, 1}, {"gate / up", 576, 1536, 1},
                                {"down", 1536, 576, 1}, {"lm head", 576, 49152, 1}, {NULL, 0, 0, 0}};
static const product MINILM[] = {{"qkv", 384, 1152, 1}, {"attn out", 384, 384, 1}, {"inter", 384, 1536, 1},
                                 {"out", 1536, 384, 1}, {NULL, 0, 0, 0}};

static int cmp_d(const void *a, const void *b) { double x = *(const double *)a, y = *(const double *)b; return (x > y) - (x < y); }

int main(int argc, char **argv) {
    if (argc < 2 || atol(argv[1]) < 1) { fprintf(stderr, "usage: rows N [d6|d12|llama135m|minilm]\n"); return 2; }
    size_t N = (size_t)atol(argv[1]);
    const char *set = argc > 2 ? argv[2] : "d6";
    const product *ps = !strcmp(set, "d12") ? D12 : !strcmp(set, "llama135m") ? LLAMA : !strcmp(set, "minilm") ? MINILM : D6;
    kern_backend *be = kern_backend_create(NULL, NULL);
    int skinny = N <= KERN_SKINNY_MAX_N;
    printf("# %s, %zu rows, %s, %s\n", kern_backend_name(be), N, skinny ? "kern_matmul_skinny_fwd" : "kern_matmul_fwd", set);
    gk_rng r;
    gk_rng_seed(&r, 1);
    for (const product *p = ps; p->name; p++) {
        size_t C = p->C, OC = p->OC;
        int lay = p->out_in ? KERN_W_OUT_IN : KERN_W_IN_OUT;
        float *w = malloc(C * OC * 4), *x = malloc(N * C * 4), *o = malloc(N * OC * 4), *b = malloc(OC * 4);
        for (size_t i = 0; i < C * OC; i++) w[i] = 0.02f * gk_rng_normal(&r);
        for (size_t i = 0; i < N * C; i++) x[i] = gk_rng_normal(&r);
        for (size_t i = 0; i < OC; i++) b[i] = 0.1f;
        const float *bias = p->out_in && OC > 40000 ? NULL : b;   /* the tied head has none */
        double t[21], t0 = gk_now();
        if (skinny) kern_matmul_skinny_fwd(be, o, x, w, bias, N, C, OC, lay);
        else kern_matmul_fwd(be, o, x, w, bias, N, C, OC, lay);
        double first = gk_now() - t0;
        for (int k = 0; k < 21; k++) {
            t0 = gk_now();
            for (int q = 0; q < 10; q++) {
                if (skinny) kern_matmul_skinny_fwd(be, o, x, w, bias, N, C, OC, lay);
                else kern_matmul_fwd(be, o, x, w, bias, N, C, OC, lay);
            }
            t[k] = (gk_now() - t0) / 10;
        }
        qsort(t, 21, sizeof *t, cmp_d);
        printf("%-10s %5zu -> %5zu %s  first %8.3f ms  median %8.3f ms  %6.1f GFLOP/s  %6.1f GB/s of W\n", p->name, C, OC,
               p->out_in ? "w[OC][C]" : "w[C][OC]", first * 1e3, t[10] * 1e3, 2.0 * N * C * OC / t[10] / 1e9,
               C * OC * 4 / t[10] / 1e9);
        free(w); free(x); free(o); free(b);
    }
    kern_backend_free(be);
    return 0;
}
