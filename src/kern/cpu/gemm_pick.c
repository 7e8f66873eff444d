/* gemm_pick.c: the cpu backend's GEMM libraries — one entry point over OpenBLAS, oneDNN and the builtin loops
 * (kern_cpu_gemm_lib), which of them this build has (kern_gemm_present), and the pick of KERN_GEMM_AUTO.
 *
 * Why a timed pick: which library is faster depends on the CPU and on the libraries' builds, not on a vendor
 * or model name we could list (Debian's OpenBLAS 0.3.21 calls some recent Xeons "Prescott" and runs SSE3
 * kernels, 3-5x slower; on a Zen 4 EPYC oneDNN ran a GPT-2 124M training step 1.9x faster than OpenBLAS).
 * So each library present is timed once per machine (the pick is cached with the CPU model, thread count and
 * OpenBLAS core as its key: see cached_pick) on a training-shaped product, [512,768] x [768,768]
 * (GPT-2 small's attention projection on 512 rows), best of 5 after a warm-up (oneDNN creates its primitive
 * then), the libraries taking turns: about 60 ms on two idle cores (120 ms on one).
 * Why a margin: where the two run level the pick would flip from run to run with the machine's noise, and
 * results differ between libraries in the last bits (summation order), so the demo's figures, and a resumed
 * run against an uninterrupted one, would too. oneDNN is the pick unless OpenBLAS is at least AUTO_MARGIN
 * times faster. Why that way round: on the 2-core AMD EPYC (AVX-512, AVX512-BF16) these were written on, the
 * ratio openblas/onednn time measured 1.1 to 7 on this product under varying load (OpenBLAS's own thread
 * pool suffers most when the cores are shared) and 0.9-1.1 on small products, so "OpenBLAS unless oneDNN is
 * 1.25x faster" flipped between processes; "oneDNN unless OpenBLAS is 1.25x faster" did not in a dozen
 * probes, but one exact-resume test still failed once under a load average of 20, hence 1.5x and best of 5.
 *
 * OpenBLAS (Debian's pthread build) gets as many threads as OpenMP and is only ever called from outside
 * OpenMP parallel regions, so the two pools take turns instead of oversubscribing the cores. */
#include "kern/kern.h"
#include "kern/cpu/cpu.h"
#include "core/core.h"
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#ifdef GK_HAVE_BLAS
#include <cblas.h>
#endif

#define AUTO_MARGIN 1.5

#ifdef GK_HAVE_BLAS
static void openblas_init(void) { openblas_set_num_threads(gk_num_threads()); }
#endif

const char *kern_cpu_openblas_core(void) {
#ifdef GK_HAVE_BLAS
    return openblas_get_corename();
#else
    return NULL;
#endif
}

int kern_gemm_present(kern_gemm g) {
    switch (g) {
    case KERN_GEMM_AUTO: case KERN_GEMM_BUILTIN: return 1;
#ifdef GK_HAVE_BLAS
    case KERN_GEMM_OPENBLAS: return 1;
#endif
#ifdef GK_HAVE_DNNL
    case KERN_GEMM_ONEDNN: return kern_cpu_dnnl_available();
#endif
    default: return 0;
    }
}

int kern_cpu_gemm_lib(kern_gemm lib, int bf16, kern_cpu_shadow *sh, int ta, int tb, size_t M, size_t N, size_t K,
                      const float *A, size_t lda, const float *B, size_t ldb, const float *bias, int acc, float *C,
                      size_t ldc) {
#ifdef GK_HAVE_DNNL
    if ((lib == KERN_GEMM_ONEDNN || bf16) && K > 0) {   /* oneDNN rejects empty reductions: handled below */
        kern_cpu_gemm(ta, tb, M, N, K, A, lda, B, ldb, bias, acc, C, ldc, bf16, sh);
        return 1;
    }
#endif
    (void)bf16; (void)sh;
    if (K == 0) {   /* op(A) op(B) = 0 */
        for (size_t i = 0; i < M; i++)
            for (size_t j = 0; j < N; j++) C[i * ldc + j] = (acc ? C[i * ldc + j] : 0) + (bias ? bias[j] : 0);
        return 1;
    }
#ifdef GK_HAVE_BLAS
    if (lib == KERN_GEMM_OPENBLAS) {
        static pthread_once_t once = PTHREAD_ONCE_INIT;
        pthread_once(&once, openblas_init);
        float beta = acc ? 1.0f : 0.0f;
        if (bias) {   /* bias folded in as beta = 1 over bias rows (or added to the accumulator) */
            GK_OMP(omp parallel for schedule(static))
            for (size_t i = 0; i < M; i++) {
                float *c = C + i * ldc;
                if (acc) for (size_t j = 0; j < N; j++) c[j] += bias[j];
                else memcpy(c, bias, N * sizeof(float));
            }
            beta = 1.0f;
        }
        cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, (int)M, (int)N, (int)K,
                    1.0f, A, (int)lda, B, (int)ldb, beta, C, (int)ldc);
        return 1;
    }
#endif
    return 0;
}

/* Seconds of one out[M,N] = inp[M,K] @ w[K,N] on lib. */
static double time_once(kern_gemm lib, const float *inp, const float *w, float *out, size_t M, size_t K, size_t N) {
    double t0 = gk_now();
    kern_cpu_gemm_lib(lib, 0, NULL, 0, 0, M, N, K, inp, K, w, N, NULL, 0, out, N);
    return gk_now() - t0;
}

/* The machine's identity for the cached pick: the CPU model, core count and the libraries of this build. */
static void machine_key(char *key, size_t cap) {
    char *info = NULL, model[128] = "unknown";
    if (gk_read_file("/proc/cpuinfo", &info, NULL, NULL) == 0) {
        const char *p = strstr(info, "model name");
        if (p && (p = strchr(p, ':'))) sscanf(p + 1, " %127[^\n]", model);
        free(info);
    }
    snprintf(key, cap, "%s | %d threads | openblas %s", model, gk_num_threads(),
             kern_cpu_openblas_core() ? kern_cpu_openblas_core() : "-");
}

/* A pick measured earlier on this machine. The cache file holds one "KEY<TAB>LIBRARY" line per key (each
 * thread count its own: processes run with different counts must not keep replacing each other's pick): once
 * measured, every later process with that key uses the same library, so a resumed run sums in the same order as
 * the run it continues even when the machine is busy during a second probe. */
static int cached_pick(const char *path, const char *key, kern_gemm *out) {
    char *d = NULL;
    if (!path || gk_read_file(path, &d, NULL, NULL) != 0) return 0;
    int ok = 0;
    size_t kl = strlen(key);
    for (char *line = d, *next; line && *line && !ok; line = next) {
        next = strchr(line, '\n');
        if (next) *next++ = 0;
        if (strncmp(line, key, kl) || line[kl] != '\t') continue;
        ok = kern_gemm_parse(line + kl + 1, out) == 0 && *out != KERN_GEMM_AUTO && kern_gemm_present(*out);
    }
    free(d);
    return ok;
}

/* Records key's pick in the cache file, keeping the other keys' lines. */
static void cache_pick(const char *path, const char *key, kern_gemm g) {
    char *d = NULL;
    size_t n = 0, kl = strlen(key);
    if (gk_read_file(path, &d, &n, NULL) != 0) { d = NULL; n = 0; }
    size_t cap = n + kl + 64, len = 0;
    char *buf = gk_malloc(cap);
    for (char *line = d, *next; line && *line; line = next) {
        next = strchr(line, '\n');
        if (next) *next++ = 0;
        if (!strchr(line, '\t') || (!strncmp(line, key, kl) && line[kl] == '\t')) continue;   /* old format, or ours */
        len += (size_t)snprintf(buf + len, cap - len, "%s\n", line);
    }
    len += (size_t)snprintf(buf + len, cap - len, "%s\t%s\n", key, kern_gemm_name(g));
    gk_write_file_atomic(path, buf, len, NULL);
    free(buf); free(d);
}

static kern_gemm g_auto = KERN_GEMM_BUILTIN;
static void auto_pick(void) {
    int blas = kern_gemm_present(KERN_GEMM_OPENBLAS), dnnl = kern_gemm_present(KERN_GEMM_ONEDNN);
    if (!blas || !dnnl) { g_auto = blas ? KERN_GEMM_OPENBLAS : dnnl ? KERN_GEMM_ONEDNN : KERN_GEMM_BUILTIN; return; }
    char key[256];
    machine_key(key, sizeof key);
    char *path = gk_cache_path("gemm");
    if (cached_pick(path, key, &g_auto)) { free(path); return; }
    const size_t M = 512, K = 768, N = 768;
    float *inp = gk_malloc(M * K * sizeof(float)), *w = gk_malloc(K * N * sizeof(float));
    float *out = gk_malloc(M * N * sizeof(float));
    for (size_t i = 0; i < M * K; i++) inp[i] = (float)(i % 13) * 0.01f;
    for (size_t i = 0; i < K * N; i++) w[i] = (float)(i % 7) * 0.01f;
    /* a warm-up each, then best of 5, the two libraries interleaved so that a burst of load elsewhere on the
     * machine slows both rather than one */
    double t_blas = 1e30, t_dnnl = 1e30;
    for (int r = 0; r < 6; r++) {
        double tb = time_once(KERN_GEMM_OPENBLAS, inp, w, out, M, K, N);
        double td = time_once(KERN_GEMM_ONEDNN, inp, w, out, M, K, N);
        if (r > 0 && tb < t_blas) t_blas = tb;
        if (r > 0 && td < t_dnnl) t_dnnl = td;
    }
    g_auto = t_dnnl >= AUTO_MARGIN * t_blas ? KERN_GEMM_OPENBLAS : KERN_GEMM_ONEDNN;
    if (gk_verbose >= 2) gk_log("kern: GEMM auto pick %s (openblas %.2f ms, onednn %.2f ms on 512x768x768)\n", kern_gemm_name(g_auto),
           t_blas * 1e3, t_dnnl * 1e3);
    free(inp); free(w); free(out);
    if (path) cache_pick(path, key, g_auto);
    free(path);
}

kern_gemm kern_gemm_auto(void) {
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, auto_pick);
    return g_auto;
}
