/* fast_dnnl.c: GEMM through oneDNN's matmul primitive (built when GK_HAVE_DNNL is defined).
 *
 * Why: oneDNN picks its kernel from the CPU's actual ISA (AVX-512, AMX), where OpenBLAS 0.3.21's dynamic
 * dispatch was seen to misdetect recent Xeons as "Prescott" (SSE3) and run 3-5x slower; and oneDNN can
 * compute an fp32 product with bf16 inputs and fp32 accumulation (fpmath mode bf16: AMX tiles or
 * AVX512-BF16), the optional KERN_PREC_BF16 precision. oneDNN threads with OpenMP, i.e. the same thread
 * pool as the rest of the kernels, so nothing oversubscribes. AMX permission (arch_prctl) is requested
 * by oneDNN itself.
 *
 * bf16: both inputs are rounded to bfloat16 into scratch buffers (weights stay fp32 masters; the copy costs
 * 6 bytes per input element, small next to the K-fold reuse in the product) and multiplied with fp32
 * accumulation and an fp32 result. (oneDNN 2.6's fpmath_mode=bf16 attribute on fp32 tensors was measured
 * to keep the fp32 kernel, so the conversion is explicit.)
 * One primitive cache and one bf16 scratch, shared by every backend instance (the bf16 weight copy is each
 * backend's own: kern_cpu_shadow): a mutex serialises concurrent callers (each product is itself
 * parallel, so callers on several threads gain nothing from overlapping anyway).
 *
 * kern_cpu_gemm computes, row-major, C[M,N] = op(A)[M,K] op(B)[K,N] (+ bias[N]) (+ C if accumulate), where
 * op(A) = A (stored M x K, leading dim lda) or A^T (stored K x M); likewise B. Transposes are expressed as
 * strides, so nothing is copied. Primitives are created once per distinct problem and cached (a model has
 * a dozen shapes; decode adds each of them per batch row count).
 */
#ifdef GK_HAVE_DNNL
#include "kern/cpu/cpu.h"
#include "core/core.h"
#include <dnnl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    int64_t M, N, K, lda, ldb, ldc;
    int ta, tb, acc, bias, bf16;
    dnnl_primitive_t prim;
    dnnl_memory_t a, b, c, bi;
} gemm_entry;

#define CACHE_MAX 256   /* a model's dozen shapes, times every decode row count 1..16 a server sees */
static gemm_entry g_cache[CACHE_MAX];
static int g_ncache = 0;
static dnnl_engine_t g_engine;
static dnnl_stream_t g_stream;
static int g_init = 0;   /* 0 not tried, 1 ok, -1 failed */
static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;

static int dnnl_ok_locked(void) {
    if (g_init) return g_init > 0;
    g_init = -1;
    if (dnnl_engine_create(&g_engine, dnnl_cpu, 0) != dnnl_success) return 0;
    if (dnnl_stream_create(&g_stream, g_engine, dnnl_stream_default_flags) != dnnl_success) return 0;
    g_init = 1;
    return 1;
}

static void md2(dnnl_memory_desc_t *md, int64_t rows, int64_t cols, int64_t srow, int64_t scol, dnnl_data_type_t dt) {
    dnnl_dims_t dims = {rows, cols}, strides = {srow, scol};
    GK_CHECK(dnnl_memory_desc_init_by_strides(md, 2, dims, dt, strides) == dnnl_success, "oneDNN memory desc");
}

static gemm_entry *lookup(int ta, int tb, int64_t M, int64_t N, int64_t K, int64_t lda, int64_t ldb, int64_t ldc,
                          int acc, int bias, int bf16) {
    for (int i = 0; i < g_ncache; i++) {
        gemm_entry *e = &g_cache[i];
        if (e->M == M && e->N == N && e->K == K && e->lda == lda && e->ldb == ldb && e->ldc == ldc && e->ta == ta &&
            e->tb == tb && e->acc == acc && e->bias == bias && e->bf16 == bf16) return e;
    }
    gemm_entry *e;
    if (g_ncache < CACHE_MAX) e = &g_cache[g_ncache++];
    else {   /* full: recycle the oldest slot */
        e = &g_cache[0];
        dnnl_primitive_destroy(e->prim);
        dnnl_memory_destroy(e->a); dnnl_memory_destroy(e->b); dnnl_memory_destroy(e->c);
        if (e->bi) dnnl_memory_destroy(e->bi);
        memmove(&g_cache[0], &g_cache[1], (CACHE_MAX - 1) * sizeof(gemm_entry));
        e = &g_cache[CACHE_MAX - 1];
    }
    memset(e, 0, sizeof *e);
    e->M = M; e->N = N; e->K = K; e->lda = lda; e->ldb = ldb; e->ldc = ldc;
    e->ta = ta; e->tb = tb; e->acc = acc; e->bias = bias; e->bf16 = bf16;
    dnnl_memory_desc_t amd, bmd, cmd, bimd;
    dnnl_data_type_t in = bf16 ? dnnl_bf16 : dnnl_f32;
    if (ta) md2(&amd, M, K, 1, lda, in); else md2(&amd, M, K, lda, 1, in);
    if (tb) md2(&bmd, K, N, 1, ldb, in); else md2(&bmd, K, N, ldb, 1, in);
    md2(&cmd, M, N, ldc, 1, dnnl_f32);
    if (bias) md2(&bimd, 1, N, N, 1, dnnl_f32);
    dnnl_matmul_desc_t desc;
    GK_CHECK(dnnl_matmul_desc_init(&desc, &amd, &bmd, bias ? &bimd : NULL, &cmd) == dnnl_success, "oneDNN matmul desc");
    dnnl_primitive_attr_t attr;
    GK_CHECK(dnnl_primitive_attr_create(&attr) == dnnl_success, "oneDNN attr");
    if (acc) {
        dnnl_post_ops_t po;
        dnnl_post_ops_create(&po);
        dnnl_post_ops_append_sum(po, 1.0f);
        dnnl_primitive_attr_set_post_ops(attr, po);
        dnnl_post_ops_destroy(po);
    }
    dnnl_primitive_desc_t pd;
    GK_CHECK(dnnl_primitive_desc_create(&pd, &desc, attr, g_engine, NULL) == dnnl_success,
             "oneDNN: no matmul for %lldx%lldx%lld (try NO_DNNL=1)", (long long)M, (long long)N, (long long)K);
    GK_CHECK(dnnl_primitive_create(&e->prim, pd) == dnnl_success, "oneDNN primitive");
    dnnl_primitive_desc_destroy(pd);
    dnnl_primitive_attr_destroy(attr);
    dnnl_memory_create(&e->a, &amd, g_engine, DNNL_MEMORY_NONE);
    dnnl_memory_create(&e->b, &bmd, g_engine, DNNL_MEMORY_NONE);
    dnnl_memory_create(&e->c, &cmd, g_engine, DNNL_MEMORY_NONE);
    if (bias) dnnl_memory_create(&e->bi, &bimd, g_engine, DNNL_MEMORY_NONE);
    return e;
}

int kern_cpu_dnnl_available(void) {
    pthread_mutex_lock(&g_lock);
    int ok = dnnl_ok_locked();
    pthread_mutex_unlock(&g_lock);
    return ok;
}

/* Grow-only scratch for the bf16 copies of A and B. */
static uint16_t *g_abuf, *g_bbuf;
static size_t g_acap, g_bcap;
static uint16_t *scratch(uint16_t **buf, size_t *cap, size_t n) {
    if (n > *cap) { free(*buf); *buf = gk_malloc(n * sizeof(uint16_t)); *cap = n; }
    return *buf;
}

/* A backend's bf16 copy (kern_bf16_shadow): [base, base+n) rounded into copy while fresh. Guarded by g_lock,
 * which every oneDNN product holds anyway. */
struct kern_cpu_shadow {
    const float *base;
    size_t n;
    uint16_t *copy;
    int fresh;
};

void kern_cpu_shadow_set(kern_cpu_shadow **sh, const float *base, size_t n) {
    pthread_mutex_lock(&g_lock);
    if (*sh) { free((*sh)->copy); free(*sh); *sh = NULL; }
    if (n) {
        *sh = gk_calloc(1, sizeof **sh);
        (*sh)->copy = gk_malloc(n * sizeof(uint16_t));
        (*sh)->base = base;
        (*sh)->n = n;
    }
    pthread_mutex_unlock(&g_lock);
}

void kern_cpu_shadow_written(kern_cpu_shadow *sh, const float *p, size_t n) {
    pthread_mutex_lock(&g_lock);
    if (p < sh->base + sh->n && p + n > sh->base) sh->fresh = 0;
    pthread_mutex_unlock(&g_lock);
}

/* The copy of X[0, n) if it lies inside sh's range (refreshed first if stale), else NULL. */
static const uint16_t *shadow_of(kern_cpu_shadow *sh, const float *X, size_t n) {
    if (!sh || X < sh->base || X + n > sh->base + sh->n) return NULL;
    if (!sh->fresh) { kern_f32_to_bf16_pair(sh->copy, sh->base, sh->n, NULL, NULL, 0); sh->fresh = 1; }
    return sh->copy + (X - sh->base);
}

void kern_cpu_gemm(int ta, int tb, size_t M, size_t N, size_t K, const float *A, size_t lda, const float *B,
                   size_t ldb, const float *bias, int accumulate, float *C, size_t ldc, int bf16, kern_cpu_shadow *sh) {
    pthread_mutex_lock(&g_lock);
    GK_CHECK(dnnl_ok_locked(), "oneDNN CPU engine unavailable");
    gemm_entry *e = lookup(ta, tb, (int64_t)M, (int64_t)N, (int64_t)K, (int64_t)lda, (int64_t)ldb, (int64_t)ldc,
                           accumulate, bias != NULL, bf16);
    if (bf16) {   /* round both inputs to bfloat16 (nearest even); the product accumulates in fp32 */
        size_t na = (ta ? K : M) * lda, nb = (tb ? N : K) * ldb;
        const uint16_t *sa = shadow_of(sh, A, na), *sb = shadow_of(sh, B, nb);   /* weights: already rounded */
        uint16_t *a16 = sa ? NULL : scratch(&g_abuf, &g_acap, na), *b16 = sb ? NULL : scratch(&g_bbuf, &g_bcap, nb);
        kern_f32_to_bf16_pair(a16, sa ? NULL : A, sa ? 0 : na, b16, sb ? NULL : B, sb ? 0 : nb);
        dnnl_memory_set_data_handle(e->a, sa ? (void *)sa : a16);
        dnnl_memory_set_data_handle(e->b, sb ? (void *)sb : b16);
    } else {
        dnnl_memory_set_data_handle(e->a, (void *)A);
        dnnl_memory_set_data_handle(e->b, (void *)B);
    }
    dnnl_memory_set_data_handle(e->c, C);
    dnnl_exec_arg_t args[4] = {{DNNL_ARG_SRC, e->a}, {DNNL_ARG_WEIGHTS, e->b}, {DNNL_ARG_DST, e->c}, {DNNL_ARG_BIAS, e->bi}};
    if (bias) dnnl_memory_set_data_handle(e->bi, (void *)bias);
    GK_CHECK(dnnl_primitive_execute(e->prim, g_stream, bias ? 4 : 3, args) == dnnl_success, "oneDNN matmul failed");
    dnnl_stream_wait(g_stream);
    pthread_mutex_unlock(&g_lock);
}
#else
typedef int gk_fast_dnnl_unused;   /* ISO C forbids an empty translation unit */
#endif
