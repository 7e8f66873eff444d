/* cmd_bench.c: gptkit bench — machine probes.
 *   gptkit bench peak [--json]   fp32 (and bf16) GEMM GFLOP/s and memory bandwidth, via kern_peak_probe.
 * Kernel microbenchmarks against the reference and PyTorch live in bench/kern (run.sh). */
#include "cli/cli.h"
#include "core/core.h"
#include "kern/kern.h"
#include <stdio.h>
#include <string.h>

static const char *USAGE =
    "usage: gptkit bench peak [--json]\n"
    "\n"
    "Measures this machine's ceilings with a small probe (about a second) on the fast CPU path:\n"
    "  fp32 GEMM GFLOP/s   1024x1024x1024 products, best of 5\n"
    "  bf16 GEMM GFLOP/s   the same with bfloat16 inputs and fp32 accumulation (if the build and CPU have it)\n"
    "  memory GB/s         a streaming a = b + s*c over 3 x 32 MiB arrays, best of 5\n"
    "Threads: OMP_NUM_THREADS (default: all cores).\n"
    "\n"
    "options:\n"
    "  --json     print one JSON object instead of text\n"
    "  -h, --help this text\n";

static int bench_peak(int argc, char **argv) {
    cli_args a;
    cli_args_init(&a, argc, argv, USAGE);
    a.cmd = "bench peak";
    int json = 0;
    const char *f;
    while ((f = cli_next(&a))) {
        if (cli_is(f, "--json")) json = 1;
        else cli_unknown(&a, f);
    }
    kern_backend *be = kern_backend_create(NULL, NULL);   /* the default backend (--gemm picks its library) */
    double fp32 = 0, bf16 = 0, bw = 0;
    kern_peak_probe(be, &fp32, &bf16, &bw);
    if (json) {
        printf("{\"impl\": \"%s\", \"threads\": %d, \"fp32_gflops\": %.1f, ", kern_backend_name(be), gk_num_threads(), fp32);
        if (bf16 > 0) printf("\"bf16_gflops\": %.1f, ", bf16);
        else printf("\"bf16_gflops\": null, ");
        printf("\"bw_gbs\": %.2f}\n", bw);
    } else {
        printf("gptkit bench peak: %s\n", kern_backend_name(be));
        printf("  fp32 GEMM  %8.1f GFLOP/s   (1024^3, best of 5)\n", fp32);
        if (bf16 > 0) printf("  bf16 GEMM  %8.1f GFLOP/s   (bf16 inputs, fp32 accumulation)\n", bf16);
        else printf("  bf16 GEMM       n/a         (needs oneDNN and AVX512-BF16 or AMX)\n");
        printf("  memory     %8.2f GB/s      (a = b + s*c, 3 x 32 MiB)\n", bw);
    }
    kern_backend_free(be);
    return 0;
}

int cmd_bench(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        fputs(USAGE, argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "peak")) return bench_peak(argc - 1, argv + 1);
    fprintf(stderr, "gptkit bench: unknown subcommand '%s'\n(see 'gptkit bench --help')\n", argv[1]);
    return 2;
}
