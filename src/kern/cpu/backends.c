/* backends.c: the CPU backends' op tables and kern_backend_create.
 *
 *   ref  (kern_ref_ops):  the plain fp32 reference of every op (ref.c, ref_impl.h): the oracle.
 *   cpu  (kern_cpu_ops):  the fast paths (fast.c, fast_attn.c, attn_cache.c) on a GEMM library (openblas |
 *                         onednn | builtin loops), fp32 or bf16 matmuls. The embedding keeps the reference:
 *                         it is a gather, already memory-bound.
 * Both keep their data in host memory (kern_host_*).
 *   cuda (src/kern/cuda/): its own table (kern_cuda_ops) and state (be->cuda), device memory; created here by
 *                         create_cuda. cuda/loader.c opens the plugin (without nvcc: refuses with a reason).
 * A new backend adds its table here (or in its own folder)
 * and a case to kern_backend_create; docs/kernels.md walks through it. */
#include "kern/kern.h"
#include "kern/cpu/cpu.h"
#include "kern/cuda/cuda.h"
#include "core/core.h"
#include <stdio.h>
#include <stdlib.h>

/* The LLaMA family's ops: row-wise or elementwise and memory-bound, the OpenMP reference serves both kinds. */
#define LLAMA_OPS \
    .rmsnorm_fwd = kern_ref_rmsnorm_fwd, .rmsnorm_bwd = kern_ref_rmsnorm_bwd, .rope = kern_ref_rope, \
    .kv_expand_fwd = kern_ref_kv_expand_fwd, .kv_expand_bwd = kern_ref_kv_expand_bwd, .embed_q_fwd = kern_ref_embed_q_fwd,

static void ref_bf16_shadow(kern_backend *be, const float *base, size_t n) { (void)be; (void)base; (void)n; }

static const kern_ops kern_ref_ops = {
    .alloc = kern_host_alloc, .free = kern_host_free, .zero = kern_host_zero,
    .upload = kern_host_upload, .download = kern_host_download, .copy = kern_host_copy,
    .embed_fwd = kern_ref_embed_fwd, .embed_bwd = kern_ref_embed_bwd,
    .layernorm_fwd = kern_ref_layernorm_fwd, .layernorm_bwd = kern_ref_layernorm_bwd,
    .matmul_fwd = kern_ref_matmul_fwd, .matmul_bwd = kern_ref_matmul_bwd,
    .matmul_skinny_fwd = kern_ref_matmul_skinny_fwd, .matmul_q_fwd = kern_ref_matmul_q_fwd,
    .matmul_q_bwd = kern_ref_matmul_q_bwd,
    .attention_saved_floats = kern_ref_attention_saved_floats,
    .attention_fwd = kern_ref_attention_fwd, .attention_bwd = kern_ref_attention_bwd,
    .attn_cache_fwd = kern_ref_attn_cache_fwd,
    .gelu_fwd = kern_ref_gelu_fwd, .gelu_bwd = kern_ref_gelu_bwd,
    .add = kern_ref_add, .axpy = kern_ref_axpy, .scale = kern_ref_scale,
    .xent_fwd_bwd = kern_ref_xent_fwd_bwd, .sumsq = kern_ref_sumsq, .adamw = kern_ref_adamw,
    .bf16_shadow = ref_bf16_shadow,
    LLAMA_OPS
    .swiglu_fwd = kern_ref_swiglu_fwd, .swiglu_bwd = kern_ref_swiglu_bwd,
};

static void cpu_bf16_shadow(kern_backend *be, const float *base, size_t n) {
#ifdef GK_HAVE_DNNL
    kern_cpu_shadow_set(&be->shadow, base, n);
#else
    (void)be; (void)base; (void)n;
#endif
}

static const kern_ops kern_cpu_ops = {
    .alloc = kern_host_alloc, .free = kern_host_free, .zero = kern_host_zero,
    .upload = kern_host_upload, .download = kern_host_download, .copy = kern_host_copy,
    .embed_fwd = kern_ref_embed_fwd, .embed_bwd = kern_ref_embed_bwd,
    .layernorm_fwd = kern_fast_layernorm_fwd, .layernorm_bwd = kern_fast_layernorm_bwd,
    .matmul_fwd = kern_fast_matmul_fwd, .matmul_bwd = kern_fast_matmul_bwd,
    .matmul_skinny_fwd = kern_fast_matmul_skinny_fwd, .matmul_q_fwd = kern_fast_matmul_q_fwd,
    .matmul_q_bwd = kern_fast_matmul_q_bwd,
    .attention_saved_floats = kern_fast_attention_saved_floats,
    .attention_fwd = kern_fast_attention_fwd, .attention_bwd = kern_fast_attention_bwd,
    .attn_cache_fwd = kern_fast_attn_cache_fwd,
    .gelu_fwd = kern_fast_gelu_fwd, .gelu_bwd = kern_fast_gelu_bwd,
    .add = kern_fast_add, .axpy = kern_fast_axpy, .scale = kern_fast_scale,
    .xent_fwd_bwd = kern_fast_xent_fwd_bwd, .sumsq = kern_fast_sumsq, .adamw = kern_fast_adamw,
    .bf16_shadow = cpu_bf16_shadow,
    LLAMA_OPS
    .swiglu_fwd = kern_fast_swiglu_fwd, .swiglu_bwd = kern_fast_swiglu_bwd,
};

static void rename_backend(kern_backend *be) {
    if (be->opts.kind == KERN_KIND_REF) snprintf(be->name, sizeof be->name, "cpu-ref");
    else if (be->opts.kind == KERN_KIND_CUDA) kern_cuda_name(be);
    else kern_cpu_name(be);
}

int kern_cuda_built(void) { return kern_cuda_built_impl(); }
int kern_cuda_usable(gk_err *err) { return kern_cuda_usable_impl(err); }

/* NCCL: forwarded to the plugin (cuda.h); the communicator is the plugin's pointer behind kern.h's opaque type. */
int kern_nccl_version(void) { return kern_cuda_nccl_version(); }
int kern_nccl_unique_id(unsigned char id[KERN_NCCL_ID_BYTES], gk_err *err) { return kern_cuda_nccl_unique_id(id, err); }
kern_nccl *kern_nccl_init(kern_backend *be, const unsigned char id[KERN_NCCL_ID_BYTES], int nranks, int rank, gk_err *err) {
    if (be->opts.kind != KERN_KIND_CUDA) { gk_errf(err, "NCCL needs the cuda backend (--device cuda)"); return NULL; }
    return (kern_nccl *)kern_cuda_nccl_init(be, id, nranks, rank, err);
}
void kern_nccl_free(kern_nccl *c) { kern_cuda_nccl_free(c); }
void kern_nccl_allreduce_sum_f32(kern_nccl *c, float *buf, size_t n) { kern_cuda_nccl_allreduce_sum_f32(c, buf, n); }
void kern_nccl_reduce_scatter_sum_f32(kern_nccl *c, float *full, const size_t *bounds) {
    kern_cuda_nccl_reduce_scatter_sum_f32(c, full, bounds);
}
void kern_nccl_allgather_f32(kern_nccl *c, float *buf, const size_t *bounds) { kern_cuda_nccl_allgather_f32(c, buf, bounds); }
int kern_on_device(const kern_backend *be) { return be->opts.kind == KERN_KIND_CUDA; }

/* The cuda kind: its own table and state (src/kern/cuda); bf16 needs nothing of the CPU (any sm_80+ GPU). */
static kern_backend *create_cuda(const kern_backend_opts *o, gk_err *err) {
    gk_err local;
    gk_err *e = err ? err : &local;
    kern_backend *be = gk_calloc(1, sizeof *be);
    be->opts = *o;
    be->gemm = KERN_GEMM_BUILTIN;   /* no CPU GEMM library: cuBLASLt */
    be->prec = o->prec;
    if (kern_cuda_init(be, e) != 0) {
        free(be);
        GK_CHECK(err, "--device cuda: %s", e->msg);
        return NULL;
    }
    return be;
}

kern_backend *kern_backend_create(const kern_backend_opts *o, gk_err *err) {
    kern_backend_opts d;
    if (!o) { kern_backend_opts_default(&d); o = &d; }
    gk_err local;
    gk_err *e = err ? err : &local;
    if (o->kind == KERN_KIND_CUDA) return create_cuda(o, err);
    kern_gemm lib = KERN_GEMM_BUILTIN;
    if (o->kind == KERN_KIND_CPU) {
        lib = o->gemm == KERN_GEMM_AUTO ? kern_gemm_auto() : o->gemm;
        if (!kern_gemm_present(lib)) {
            gk_errf(e, "GEMM library %s is not in this build (gptkit --help lists what is; rebuild with it installed)",
                    kern_gemm_name(lib));
            GK_CHECK(err, "%s", e->msg);
            return NULL;
        }
    }
    if (o->prec == KERN_PREC_BF16 && (o->kind == KERN_KIND_REF || !kern_bf16_available())) {
        gk_errf(e, "bf16 matmuls need the cpu backend, oneDNN and a CPU with AVX512-BF16 or AMX; this %s",
                o->kind == KERN_KIND_REF ? "backend is the fp32 reference" : "build/CPU has neither");
        GK_CHECK(err, "%s", e->msg);
        return NULL;
    }
    kern_backend *be = gk_calloc(1, sizeof *be);
    be->ops = o->kind == KERN_KIND_REF ? &kern_ref_ops : &kern_cpu_ops;
    be->opts = *o;
    be->gemm = lib;
    be->prec = o->prec;
    rename_backend(be);
    return be;
}

void kern_backend_free(kern_backend *be) {
    if (!be) return;
    be->ops->bf16_shadow(be, NULL, 0);
    if (be->opts.kind == KERN_KIND_CUDA) kern_cuda_fini(be);
    free(be->q_scratch);
    free(be);
}

int kern_set_precision(kern_backend *be, kern_prec prec) {
    if (prec == KERN_PREC_BF16 && be->opts.kind != KERN_KIND_CUDA &&
        (be->opts.kind == KERN_KIND_REF || !kern_bf16_available())) return -1;
    be->prec = prec;
    rename_backend(be);
    return 0;
}
