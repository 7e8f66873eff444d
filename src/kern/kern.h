/* kern: the op list of the GPT trunk and its heads, forward and backward, on raw pointers.
 *
 * Every pointer named "device" below lives in the backend's memory (host memory for the CPU backends).
 * The model never dereferences device pointers itself: it allocates with kern_alloc, moves bytes with
 * kern_upload/kern_download, and calls these ops. A CUDA backend implements the same list.
 *
 * Conventions
 *  - Row-major, fp32. N = number of rows (B*T), C = channels, OC = output channels, V = vocabulary.
 *  - Token ids are int32 device arrays.
 *  - Backward ops ACCUMULATE (+=) into every gradient they write, parameter and activation gradients alike;
 *    the caller zeroes buffers before a backward pass. Exception: kern_xent_fwd_bwd overwrites dlogits
 *    (it is where the gradient starts).
 *  - A NULL gradient pointer means "not needed" (frozen parameter, or an input gradient nobody wants):
 *    the op skips that work. This is how LoRA and reward-model training freeze parts of the model.
 *  - Weight layouts: KERN_W_IN_OUT is HF GPT-2's Conv1D layout, w[C][OC] (out = inp @ w); KERN_W_OUT_IN is
 *    torch.nn.Linear's layout, w[OC][C] (out = inp @ w^T), used for the tied LM head on wte[V][C].
 *
 * Implementations: src/kern/cpu/ref*.c is the plain fp32 reference (OpenMP-parallel, readable, the oracle);
 * fast paths live in their own files and form the "cpu" backend (see "backends" below; docs/kernels.md says
 * how to add an op or a backend). Tests compare every backend
 * with the reference on random inputs of awkward sizes, and check every reference backward by finite
 * differences in double precision (kern_ref64_* below: the same reference code instantiated for double).
 */
#ifndef GK_KERN_H
#define GK_KERN_H

#include "core/core.h"
#include <stddef.h>
#include <stdint.h>

enum { KERN_W_IN_OUT = 0, KERN_W_OUT_IN = 1 };

/* ================================================================ backends
 * A backend is one instance of struct kern_backend: a table of op pointers (kern_ops, one static table per kind
 * of backend) plus the instance's own state: its GEMM library, its matmul precision and the bf16 copy of the
 * weights it keeps. Nothing about a backend is process-global, so two models can run on two backends (say
 * one in bf16 and one in fp32) in the same process. Each gpt_model holds the backend it runs on (m->be).
 *
 *   kind   GEMM library                                  precision     name
 *   ref    the reference loops (cpu/ref_impl.h)          fp32          "cpu-ref"
 *   cpu    openblas | onednn | builtin (auto: fastest)   fp32 | bf16   "cpu-fast(...)"
 *   cuda   cuBLASLt (src/kern/cuda/; built when nvcc is   fp32 | bf16   "cuda(<GPU name>, sm_XY, ...)"
 *          found; needs an NVIDIA GPU at run time)
 *
 * Every op below is a thin dispatcher: kern_X(be, args...) calls be->ops->X(be, args...). Memory is owned
 * by the backend it was allocated on: free it with the same backend (kern_free(be, p)).
 */

/* Matmul precision. KERN_PREC_BF16 rounds both inputs of every matmul product to bfloat16 and accumulates in
 * fp32 (fp32 in, fp32 out: weights, grads and AdamW state stay fp32 masters); the other ops stay fp32. Needs
 * oneDNN and AVX512-BF16 or AMX (kern_bf16_available). */
typedef enum { KERN_PREC_FP32 = 0, KERN_PREC_BF16 = 1 } kern_prec;
/* GEMM library of the cpu backend. AUTO: the fastest library present, timed once per process on a
 * training-shaped product (kern_gemm_auto, which says how ties are kept stable). BUILTIN: the reference loops. */
typedef enum { KERN_GEMM_AUTO = 0, KERN_GEMM_OPENBLAS = 1, KERN_GEMM_ONEDNN = 2, KERN_GEMM_BUILTIN = 3 } kern_gemm;
typedef enum { KERN_KIND_CPU = 0, KERN_KIND_REF = 1, KERN_KIND_CUDA = 2 } kern_kind;

/* How to build a backend. Plain struct; kern_backend_opts_default fills the process defaults. */
typedef struct {
    kern_kind kind;     /* default KERN_KIND_CPU */
    kern_gemm gemm;     /* default KERN_GEMM_AUTO (ignored by the ref kind) */
    kern_prec prec;     /* default KERN_PREC_FP32 */
} kern_backend_opts;

typedef struct kern_backend kern_backend;
typedef struct kern_cpu_shadow kern_cpu_shadow;   /* private to src/kern/cpu */
typedef struct kern_cuda_state kern_cuda_state;   /* private to src/kern/cuda */
struct kern_qmat;                                 /* a quantized weight matrix (below, "quantized weights") */

/* The op table. Signatures are those of the public kern_* dispatchers below (see there for the math). */
typedef struct {
    void *(*alloc)(kern_backend *be, size_t bytes);
    void  (*free)(kern_backend *be, void *p);
    void  (*zero)(kern_backend *be, void *p, size_t bytes);
    void  (*upload)(kern_backend *be, void *dst_dev, const void *src_host, size_t bytes);
    void  (*download)(kern_backend *be, void *dst_host, const void *src_dev, size_t bytes);
    void  (*copy)(kern_backend *be, void *dst_dev, const void *src_dev, size_t bytes);
    void  (*embed_fwd)(kern_backend *be, float *out, const int32_t *tok, const float *wte, const float *wpe,
                       size_t B, size_t T, size_t C, size_t pos0);
    void  (*embed_bwd)(kern_backend *be, float *dwte, float *dwpe, const float *dout, const int32_t *tok,
                       size_t B, size_t T, size_t C, size_t pos0);
    void  (*layernorm_fwd)(kern_backend *be, float *out, float *mean, float *rstd, const float *inp, const float *w,
                           const float *b, size_t N, size_t C, float eps);
    void  (*layernorm_bwd)(kern_backend *be, float *dinp, float *dw, float *db, const float *dout, const float *inp,
                           const float *w, const float *mean, const float *rstd, size_t N, size_t C);
    void  (*matmul_fwd)(kern_backend *be, float *out, const float *inp, const float *w, const float *bias,
                        size_t N, size_t C, size_t OC, int wlayout);
    void  (*matmul_bwd)(kern_backend *be, float *dinp, float *dw, float *dbias, const float *dout, const float *inp,
                        const float *w, size_t N, size_t C, size_t OC, int wlayout);
    void  (*matmul_skinny_fwd)(kern_backend *be, float *out, const float *inp, const float *w, const float *bias,
                               size_t N, size_t C, size_t OC, int wlayout);
    size_t (*attention_saved_floats)(kern_backend *be, size_t B, size_t T, size_t C, size_t NH);
    void  (*attention_fwd)(kern_backend *be, float *out, float *saved, const float *qkv, size_t B, size_t T,
                           size_t C, size_t NH);
    void  (*attention_bwd)(kern_backend *be, float *dqkv, const float *dout, const float *qkv, const float *out,
                           const float *saved, size_t B, size_t T, size_t C, size_t NH);
    void  (*attn_cache_fwd)(kern_backend *be, float *out, float *kc, float *vc, const float *qkv,
                            const int32_t *slot, const int32_t *pos, size_t B, size_t n, size_t C, size_t NH, size_t NKV,
                            size_t maxT);
    void  (*gelu_fwd)(kern_backend *be, float *out, const float *inp, size_t n);
    void  (*gelu_bwd)(kern_backend *be, float *dinp, const float *inp, const float *dout, size_t n);
    void  (*add)(kern_backend *be, float *out, const float *a, const float *b, size_t n);
    void  (*axpy)(kern_backend *be, float *y, float alpha, const float *x, size_t n);
    void  (*scale)(kern_backend *be, float *x, float s, size_t n);
    void  (*xent_fwd_bwd)(kern_backend *be, float *loss, float *dlogits, const float *logits, const int32_t *targets,
                          const float *dloss, size_t N, size_t V);
    double (*sumsq)(kern_backend *be, const float *x, size_t n);
    void  (*adamw)(kern_backend *be, float *p, const float *g, float *m, float *v, size_t n, float lr, float b1,
                   float b2, float eps, float wd, float bc1, float bc2, float gscale);
    void  (*bf16_shadow)(kern_backend *be, const float *base, size_t n);
    void  (*rmsnorm_fwd)(kern_backend *be, float *out, float *rstd, const float *inp, const float *w, size_t N, size_t C,
                         float eps);
    void  (*rmsnorm_bwd)(kern_backend *be, float *dinp, float *dw, const float *dout, const float *inp, const float *w,
                         const float *rstd, size_t N, size_t C);
    void  (*rope)(kern_backend *be, float *x, const int32_t *pos, const float *inv_freq, size_t R, size_t W, size_t nheads,
                  size_t hs, int inverse);
    void  (*kv_expand_fwd)(kern_backend *be, float *out, const float *qkv, size_t R, size_t NH, size_t NKV, size_t hs);
    void  (*kv_expand_bwd)(kern_backend *be, float *dqkv, const float *dout, size_t R, size_t NH, size_t NKV, size_t hs);
    void  (*swiglu_fwd)(kern_backend *be, float *out, const float *gate, const float *up, size_t n);
    void  (*swiglu_bwd)(kern_backend *be, float *dgate, float *dup, const float *dout, const float *gate, const float *up,
                        size_t n);
    /* Optional (NULL on a backend without quantized weights, e.g. cuda today: kern_quant_supported says which;
     * the inference loader then dequantizes to fp32). Every slot above is required. */
    void  (*matmul_q_fwd)(kern_backend *be, float *out, size_t ldo, const float *inp, const struct kern_qmat *w,
                          const float *bias, size_t N, int train);
    void  (*embed_q_fwd)(kern_backend *be, float *out, const int32_t *tok, const struct kern_qmat *wte, const float *wpe,
                         size_t B, size_t T, size_t pos0);
    void  (*matmul_q_bwd)(kern_backend *be, float *dinp, const float *dout, size_t ldd, const struct kern_qmat *w, size_t N);
} kern_ops;

/* One backend instance. Open so that a backend's files can fill it; callers treat it as opaque and use the
 * functions below. */
struct kern_backend {
    const kern_ops *ops;
    kern_backend_opts opts;     /* as requested (gemm may be KERN_GEMM_AUTO) */
    kern_gemm gemm;             /* the library in use (never AUTO); KERN_GEMM_BUILTIN for the ref kind */
    kern_prec prec;             /* the matmul precision in use */
    int skinny_portable;        /* tests: 1 makes matmul_skinny_fwd use its portable loops, not AVX-512 */
    int q_isa;                  /* tests: caps the instruction set of matmul_q_fwd (KERN_ISA_*; 0 = the best the CPU has) */
    kern_cpu_shadow *shadow;    /* the bf16 weight copy (kern_bf16_shadow), NULL when none */
    kern_cuda_state *cuda;      /* the cuda kind's device, cuBLASLt handle, scratch and bf16 copy; NULL otherwise */
    void *q_scratch;            /* matmul_q_fwd's scratch (quantized activations, dequantized weight panels) */
    size_t q_scratch_bytes;
    char name[192];             /* e.g. "cpu-ref", "cpu-fast(openblas Cooperlake, 2 threads)" */
};

/* The options kern_backend_create(NULL, ...) uses: the process defaults, which the CLI sets once at startup
 * from its global flags (--backend, --gemm) with kern_backend_set_defaults. Library code never changes them. */
void kern_backend_opts_default(kern_backend_opts *o);
void kern_backend_set_defaults(const kern_backend_opts *o);
/* A new backend (o NULL: the defaults). Returns NULL with a message in err if the build or CPU lacks what o
 * asks for (a GEMM library not built in, bf16 without AVX512-BF16/AMX); with err NULL that aborts instead.
 * Free with kern_backend_free (after every buffer allocated on it). */
kern_backend *kern_backend_create(const kern_backend_opts *o, gk_err *err);
void kern_backend_free(kern_backend *be);
const char *kern_backend_name(const kern_backend *be);
/* Changes be's matmul precision (a model's, for bf16 training). Returns 0, or -1 (unchanged) if be cannot do
 * bf16 (the ref kind never does; the cpu kind needs kern_bf16_available). */
int kern_set_precision(kern_backend *be, kern_prec prec);
kern_prec kern_get_precision(const kern_backend *be);
/* 1 if this build and CPU have bf16 matmuls (oneDNN and AVX512-BF16 or AMX). A property of the machine. */
int kern_bf16_available(void);
/* A bf16 copy of [base, base+n) kept by be for its bf16 matmuls (a training loop's parameters): products whose
 * fp32 input lies inside the range read the copy instead of rounding the input again on every call (forward
 * and backward read each weight twice per step). The copy is refreshed on first use after kern_adamw on be
 * writes into the range; nothing else may write there while it is registered. n = 0 drops it (so does
 * kern_backend_free). No-op on backends without bf16 matmuls (ref; cpu built without oneDNN). */
void kern_bf16_shadow(kern_backend *be, const float *base, size_t n);

/* GEMM libraries: names "auto", "openblas", "onednn", "builtin". parse returns 0, or -1 for an unknown name.
 * kern_gemm_present: 1 if the library is built in and works here (BUILTIN and AUTO always). kern_gemm_auto:
 * the library AUTO resolves to: each library present is timed on a training-shaped product (512 x 768 x 768,
 * best of 5 after a warm-up, ~60 ms in all, once per process on first use). oneDNN is the pick unless
 * OpenBLAS beats it by 1.5x or more: where the two run level the pick must not flip from run to run with the
 * machine's noise (results depend on the library's summation order). cpu/gemm_pick.c says why this way. */
int kern_gemm_parse(const char *s, kern_gemm *out);
const char *kern_gemm_name(kern_gemm g);
int kern_gemm_present(kern_gemm g);
kern_gemm kern_gemm_auto(void);
int kern_kind_parse(const char *s, kern_kind *out);   /* "ref" | "cpu" | "cuda" */
const char *kern_kind_name(kern_kind k);
/* 1 if this build has the CUDA backend (nvcc was found at build time; src/kern/cuda/). */
int kern_cuda_built(void);
/* 0 if the cuda kind can run here (built in, a driver and at least one GPU); else -1 with a one-line reason in
 * err ("no CUDA device: ..." or "this build has no CUDA backend ..."). Cheap; never aborts. */
int kern_cuda_usable(gk_err *err);

/* ---------------------------------------------------------------- NCCL */
/* Collectives between processes on the cuda kind's device buffers, through NCCL inside the CUDA plugin (built in
 * when the Makefile finds nccl.h and libnccl: GK_HAVE_NCCL). src/dist drives them (dist_dev_*): rank 0 makes the
 * id, MPI broadcasts it, every rank joins. Each collective runs on the backend's stream after the work queued
 * before it and returns when done. Slices are bounds[0..nranks]: rank r's is [bounds[r], bounds[r+1]).
 * A failure mid-collective aborts with file:line and NCCL's message; joining returns -1 / NULL with err. */
#define KERN_NCCL_ID_BYTES 128                /* NCCL_UNIQUE_ID_BYTES (nccl.cu checks they agree) */
typedef struct kern_nccl kern_nccl;
/* NCCL's version code (e.g. 22809 for 2.28.9) when the CUDA plugin has NCCL and loads; 0 otherwise. Needs no GPU. */
int  kern_nccl_version(void);
int  kern_nccl_unique_id(unsigned char id[KERN_NCCL_ID_BYTES], gk_err *err);
/* Joins the communicator `id` as rank `rank` of `nranks` on be's device (be: the cuda kind). Collective over the
 * nranks processes. */
kern_nccl *kern_nccl_init(kern_backend *be, const unsigned char id[KERN_NCCL_ID_BYTES], int nranks, int rank, gk_err *err);
void kern_nccl_free(kern_nccl *c);
/* buf[n] (device) summed over ranks, in place, on every rank. */
void kern_nccl_allreduce_sum_f32(kern_nccl *c, float *buf, size_t n);
/* full[bounds[nranks]] (device): this rank's slice of the sum over ranks written over the same slice (the rest
 * of full unchanged): dist_reduce_scatter_sum_f32's contract. */
void kern_nccl_reduce_scatter_sum_f32(kern_nccl *c, float *full, const size_t *bounds);
/* every rank's slice of buf (device) copied into every rank's buf, in place: dist_allgather_f32's contract. */
void kern_nccl_allgather_f32(kern_nccl *c, float *buf, const size_t *bounds);
/* 1 if be's buffers are device memory that host code and MPI cannot touch (the cuda kind). */
int  kern_on_device(const kern_backend *be);

/* Measures this machine with a small probe (~0.5 s) on be's GEMM library: fp32 GEMM GFLOP/s (1024^3
 * products), bf16 GEMM GFLOP/s (0 if unavailable) and memory bandwidth in GB/s (a streaming a = b + s c over
 * 3 x 32 MiB, counting 3 x 4 bytes per element). Any pointer may be NULL. For MFU: achieved FLOP/s over
 * *fp32_gflops. Returns 0. */
int kern_peak_probe(kern_backend *be, double *fp32_gflops, double *bf16_gflops, double *bw_gbs);

/* ---------------------------------------------------------------- host rows
 * Plain host memory, whatever the backend: the sampler's rows of logits (downloaded per step). Vectorised
 * (AVX-512/AVX2 clones) with the kernels' exp (relative error ~2.5e-7); sums are taken in float over blocks
 * of 1024 and added in double. A NaN input makes the exp sums NaN, not a crash; the max skips NaN. */
float  kern_row_max(const float *x, size_t n);                                  /* -inf for n == 0 */
/* out[i] = exp((x[i] - mx) * scale) (out may be x); returns the sum of out. */
double kern_row_exp(float *out, const float *x, size_t n, float mx, float scale);
double kern_row_expsum(const float *x, size_t n, float mx);                    /* sum exp(x[i] - mx) */
void   kern_row_scale(float *x, size_t n, float s);                            /* x *= s */
double kern_row_sum(const float *x, size_t n);                                 /* sum x[i] */

/* ---------------------------------------------------------------- memory */
void *kern_alloc(kern_backend *be, size_t bytes);                 /* zero-filled; aborts on OOM */
void  kern_free(kern_backend *be, void *p);                       /* p from kern_alloc on the same be; NULL ok */
void  kern_zero(kern_backend *be, void *p, size_t bytes);
void  kern_upload(kern_backend *be, void *dst_dev, const void *src_host, size_t bytes);
void  kern_download(kern_backend *be, void *dst_host, const void *src_dev, size_t bytes);
void  kern_copy(kern_backend *be, void *dst_dev, const void *src_dev, size_t bytes);

/* ---------------------------------------------------------------- trunk ops */

/* out[b,t,:] = wte[tok[b,t],:] + wpe[pos0+t,:].   out [B,T,C]; tok [B,T]; wte [V,C]; wpe [maxT,C] or NULL (none).
 * Token ids are validated by the caller (the model), not here. */
void kern_embed_fwd(kern_backend *be, float *out, const int32_t *tok, const float *wte, const float *wpe,
                    size_t B, size_t T, size_t C, size_t pos0);
/* dwte[tok[b,t],:] += dout[b,t,:];  dwpe[pos0+t,:] += dout[b,t,:].  Either grad may be NULL. */
void kern_embed_bwd(kern_backend *be, float *dwte, float *dwpe, const float *dout, const int32_t *tok,
                    size_t B, size_t T, size_t C, size_t pos0);

/* LayerNorm over the last dim, eps given.  out,inp [N,C]; w,b [C]; mean,rstd [N] (saved for backward). */
void kern_layernorm_fwd(kern_backend *be, float *out, float *mean, float *rstd, const float *inp, const float *w,
                        const float *b, size_t N, size_t C, float eps);
/* dinp [N,C] +=; dw, db [C] +=.  Any of the three may be NULL. */
void kern_layernorm_bwd(kern_backend *be, float *dinp, float *dw, float *db, const float *dout, const float *inp,
                        const float *w, const float *mean, const float *rstd, size_t N, size_t C);

/* out[N,OC] = inp[N,C] @ W + bias (bias may be NULL). W is w[C,OC] (KERN_W_IN_OUT) or w[OC,C] (KERN_W_OUT_IN).
 * out is overwritten. */
void kern_matmul_fwd(kern_backend *be, float *out, const float *inp, const float *w, const float *bias,
                     size_t N, size_t C, size_t OC, int wlayout);
/* dinp[N,C] += dout @ W^T;  dw += (inp^T @ dout, in w's layout);  dbias[OC] += sum_rows dout.  Each may be NULL. */
void kern_matmul_bwd(kern_backend *be, float *dinp, float *dw, float *dbias, const float *dout, const float *inp,
                     const float *w, size_t N, size_t C, size_t OC, int wlayout);

/* Causal multi-head self-attention.  qkv [B,T,3C] holds q | k | v along the last dim (HF c_attn order),
 * head h uses channels [h*hs, (h+1)*hs) of each, hs = C/NH.  out [B,T,C] (overwritten).
 * scores scaled by 1/sqrt(hs).  saved: kern_attention_saved_floats(B,T,C,NH) floats that the forward fills and
 * the backward reads (the reference keeps softmax probabilities; a blocked kernel keeps log-sum-exps). */
size_t kern_attention_saved_floats(kern_backend *be, size_t B, size_t T, size_t C, size_t NH);   /* depends on the
                                       backend: ref B*NH*T*T, cpu B*NH*T; forward and backward use the same be */
void kern_attention_fwd(kern_backend *be, float *out, float *saved, const float *qkv, size_t B, size_t T, size_t C, size_t NH);
/* dqkv [B,T,3C] +=.  out is the forward's output (a blocked backward needs it). */
void kern_attention_bwd(kern_backend *be, float *dqkv, const float *dout, const float *qkv, const float *out,
                        const float *saved, size_t B, size_t T, size_t C, size_t NH);

/* GELU, tanh approximation: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).  n elements. */
void kern_gelu_fwd(kern_backend *be, float *out, const float *inp, size_t n);
void kern_gelu_bwd(kern_backend *be, float *dinp, const float *inp, const float *dout, size_t n);   /* dinp += */

void kern_add(kern_backend *be, float *out, const float *a, const float *b, size_t n);            /* out = a + b */
void kern_axpy(kern_backend *be, float *y, float alpha, const float *x, size_t n);                 /* y += alpha x */
void kern_scale(kern_backend *be, float *x, float s, size_t n);                                    /* x *= s */

/* ---------------------------------------------------------------- the LLaMA family's ops */

/* RMSNorm (no mean, no bias): rstd[i] = 1/sqrt(mean_c inp[i,c]^2 + eps);  out[i,c] = w[c] (inp[i,c] rstd[i]). */
void kern_rmsnorm_fwd(kern_backend *be, float *out, float *rstd, const float *inp, const float *w, size_t N, size_t C, float eps);
/* dinp [N,C] +=, dw [C] += (either may be NULL). */
void kern_rmsnorm_bwd(kern_backend *be, float *dinp, float *dw, const float *dout, const float *inp, const float *w,
                      const float *rstd, size_t N, size_t C);
/* Rotary position embedding in place on the first nheads heads (hs wide, hs even) of each row of x [R, W]: HF's
 * rotate_half pairing (channel d with d + hs/2, d < hs/2) by angle pos[r] * inv_freq[d]. pos [R] int32 and
 * inv_freq [hs/2] are device arrays. inverse = 1 rotates the other way: applied to the gradient of the rotated
 * values it gives the gradient of the unrotated ones (the rotation is orthogonal), in place. */
void kern_rope(kern_backend *be, float *x, const int32_t *pos, const float *inv_freq, size_t R, size_t W, size_t nheads,
               size_t hs, int inverse);
/* Grouped-query attention: qkv [R, (NH + 2 NKV) hs] (q | k | v with NKV key/value heads) -> out [R, 3 NH hs], the
 * multi-head layout of kern_attention_fwd / kern_attn_cache_fwd, query head h using key/value head h/(NH/NKV).
 * NKV divides NH. The backward accumulates: dqkv += (a key/value head sums the gradients of its group). */
void kern_kv_expand_fwd(kern_backend *be, float *out, const float *qkv, size_t R, size_t NH, size_t NKV, size_t hs);
void kern_kv_expand_bwd(kern_backend *be, float *dqkv, const float *dout, size_t R, size_t NH, size_t NKV, size_t hs);
/* SwiGLU: out = silu(gate) * up elementwise (silu(g) = g sigmoid(g)). Backward: dgate +=, dup += (NULL skips). */
void kern_swiglu_fwd(kern_backend *be, float *out, const float *gate, const float *up, size_t n);
void kern_swiglu_bwd(kern_backend *be, float *dgate, float *dup, const float *dout, const float *gate, const float *up, size_t n);

/* ---------------------------------------------------------------- losses' building blocks */

/* Softmax cross-entropy per row. logits [N,V]; targets [N] (host or device per backend; target < 0 means
 * "ignore": loss 0, zero gradient).  loss [N] (overwritten, natural log).  If dloss is non-NULL, dlogits
 * [N,V] is OVERWRITTEN with dloss[i] * (softmax(logits[i]) - onehot(target[i])); dlogits may alias logits. */
void kern_xent_fwd_bwd(kern_backend *be, float *loss, float *dlogits, const float *logits, const int32_t *targets,
                       const float *dloss, size_t N, size_t V);

/* ---------------------------------------------------------------- optimizer building blocks */

/* Sum of squares (in double) of x[0..n). */
double kern_sumsq(kern_backend *be, const float *x, size_t n);
/* AdamW, decoupled weight decay:
 *   m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;
 *   p -= lr * ( (m / bc1) / (sqrt(v / bc2) + eps) + wd * p )
 * where bc1 = 1 - b1^t, bc2 = 1 - b2^t are passed in, and g = grad * gscale (gradient clipping folded in). */
void kern_adamw(kern_backend *be, float *p, const float *g, float *m, float *v, size_t n, float lr, float b1, float b2,
                float eps, float wd, float bc1, float bc2, float gscale);

/* ---------------------------------------------------------------- double-precision reference */
/* The same reference code compiled for double, for finite-difference gradient checks in tests.
 * Signatures mirror the float ops above with double in place of float. */
void kern_ref64_embed_fwd(double *out, const int32_t *tok, const double *wte, const double *wpe,
                          size_t B, size_t T, size_t C, size_t pos0);
void kern_ref64_embed_bwd(double *dwte, double *dwpe, const double *dout, const int32_t *tok,
                          size_t B, size_t T, size_t C, size_t pos0);
void kern_ref64_layernorm_fwd(double *out, double *mean, double *rstd, const double *inp, const double *w,
                              const double *b, size_t N, size_t C, double eps);
void kern_ref64_layernorm_bwd(double *dinp, double *dw, double *db, const double *dout, const double *inp,
                              const double *w, const double *mean, const double *rstd, size_t N, size_t C);
void kern_ref64_matmul_fwd(double *out, const double *inp, const double *w, const double *bias,
                           size_t N, size_t C, size_t OC, int wlayout);
void kern_ref64_matmul_bwd(double *dinp, double *dw, double *dbias, const double *dout, const double *inp,
                           const double *w, size_t N, size_t C, size_t OC, int wlayout);
void kern_ref64_attention_fwd(double *out, double *saved, const double *qkv, size_t B, size_t T, size_t C, size_t NH);
void kern_ref64_attention_bwd(double *dqkv, const double *dout, const double *qkv, const double *out,
                              const double *saved, size_t B, size_t T, size_t C, size_t NH);
void kern_ref64_rmsnorm_fwd(double *out, double *rstd, const double *inp, const double *w, size_t N, size_t C, double eps);
void kern_ref64_rmsnorm_bwd(double *dinp, double *dw, const double *dout, const double *inp, const double *w,
                            const double *rstd, size_t N, size_t C);
void kern_ref64_rope(double *x, const int32_t *pos, const double *inv_freq, size_t R, size_t W, size_t nheads, size_t hs,
                     int inverse);
void kern_ref64_kv_expand_fwd(double *out, const double *qkv, size_t R, size_t NH, size_t NKV, size_t hs);
void kern_ref64_kv_expand_bwd(double *dqkv, const double *dout, size_t R, size_t NH, size_t NKV, size_t hs);
void kern_ref64_swiglu_fwd(double *out, const double *gate, const double *up, size_t n);
void kern_ref64_swiglu_bwd(double *dgate, double *dup, const double *dout, const double *gate, const double *up, size_t n);
void kern_ref64_gelu_fwd(double *out, const double *inp, size_t n);
void kern_ref64_gelu_bwd(double *dinp, const double *inp, const double *dout, size_t n);
void kern_ref64_xent_fwd_bwd(double *loss, double *dlogits, const double *logits, const int32_t *targets,
                             const double *dloss, size_t N, size_t V);

/* ---------------------------------------------------------------- inference ops */

/* Attention of n new tokens per sequence over a key/value cache, for prefill and one-token decode.
 *  qkv [B, n, (NH + 2 NKV) hs]: the new rows' q | k | v, hs = C/NH: NH query heads, then NKV key heads and NKV
 *  value heads (NKV = NH: HF c_attn order, 3C wide, as kern_attention_fwd; NKV < NH: grouped-query, NKV
 *  dividing NH, as the LLaMA projections produce it).
 *  kc, vc [S, NKV, maxT, hs]: one layer's key and value cache (S slots; each key/value head's rows contiguous so
 *  a decode step streams them; grouped-query models store only their NKV heads). Sequence b uses slot slot[b]
 *  and already has pos[b] cached rows; slot and pos are int32 device arrays [B] (so a device backend reads them
 *  where it runs).
 * The op first writes the new k and v into rows pos[b] .. pos[b]+n-1 of that slot, then, with g = h / (NH/NKV),
 *   out[b,i, head h] = sum_{j <= pos[b]+i} softmax_j( q[b,i,h] . k[g,j] / sqrt(hs) ) v[g,j]
 * i.e. the new rows attend causally over everything cached before them and to themselves.  out [B, n, C]
 * is overwritten.  Requires pos[b] + n <= maxT and distinct slots (the caller, the model, checks).
 * ref: a plain triple loop (cpu/ref.c); cpu: OpenMP over sequences x heads x new rows (cpu/attn_cache.c). */
void kern_attn_cache_fwd(kern_backend *be, float *out, float *kc, float *vc, const float *qkv, const int32_t *slot,
                         const int32_t *pos, size_t B, size_t n, size_t C, size_t NH, size_t NKV, size_t maxT);
/* kern_matmul_fwd for a few rows (decode steps: N = live sequences, at most KERN_SKINNY_MAX_N): the same
 * product, layouts and bias. The cpu backend reads W from memory once (a decode step is bound by reading the
 * weights; a general GEMM packs W first, which costs more than the product at N = 1): OpenMP, each thread one
 * contiguous block of W (input rows for KERN_W_IN_OUT, output rows for KERN_W_OUT_IN); AVX-512 where the CPU
 * has it. On AVX2 + FMA without AVX-512: register-tiled products (several rows of W times several input rows),
 * for KERN_W_IN_OUT from 2 rows each thread a range of output columns walked in cache-sized blocks of W's rows.
 * Portable loops elsewhere (or when be->skinny_portable is set, for tests). The ref backend runs
 * kern_matmul_fwd's reference. Equals kern_matmul_fwd up to float summation order. */
#define KERN_SKINNY_MAX_N 16
void kern_matmul_skinny_fwd(kern_backend *be, float *out, const float *inp, const float *w, const float *bias,
                            size_t N, size_t C, size_t OC, int wlayout);

/* ---------------------------------------------------------------- quantized weights (inference)
 * A weight matrix kept in a GGUF block format instead of fp32: a quarter (Q8_0) to an eighth (Q4_0) of the bytes
 * a decode step has to stream. Row-major [rows = OC, cols = C] in torch.nn.Linear's layout (GGUF stores every
 * matrix so: a row is one output), each row cols / block blocks. The formats are ggml's (their type numbers are
 * GGUF's, src/kern/quant.c describes the bytes):
 *   F16   1 value per "block": IEEE half                                                   2 bytes
 *   Q8_0  32 values: half d, 32 x int8 q;                 x = d q                         34 bytes
 *   Q4_0  32 values: half d, 16 bytes of nibbles;         x = d (q - 8), q in 0..15       18 bytes
 *   Q4_K  256 values: 8 sub-blocks of 32, 6-bit scales and mins, 4-bit q                  144 bytes
 *   Q6_K  256 values: 16 sub-blocks of 16, int8 scales, 6-bit q                            210 bytes
 * Other GGUF types (Q4_1, Q5_*, Q5_K, BF16) are readable by kern_q_dequantize only; the model dequantizes them at
 * load. Full training needs fp32 weights (the model dequantizes before it allocates gradients); LoRA over a
 * quantized base (QLoRA) keeps them: the forward and the input gradient (kern_matmul_q_bwd) come from the blocks. */
enum {
    KERN_QT_F32 = 0, KERN_QT_F16 = 1, KERN_QT_Q4_0 = 2, KERN_QT_Q4_1 = 3, KERN_QT_Q5_0 = 6, KERN_QT_Q5_1 = 7,
    KERN_QT_Q8_0 = 8, KERN_QT_Q4_K = 12, KERN_QT_Q5_K = 13, KERN_QT_Q6_K = 14, KERN_QT_BF16 = 30
};
typedef struct kern_qmat {
    int type;                 /* KERN_QT_F16 | Q8_0 | Q4_0 | Q4_K | Q6_K (kern_qtype_matmul) */
    const uint8_t *data;      /* device: rows * kern_qtype_row_bytes(type, cols) bytes */
    size_t rows, cols;        /* OC, C; cols a multiple of the type's block */
} kern_qmat;
/* Values per block and bytes per block of a GGUF type (0, 0 if unknown). */
size_t kern_qtype_block(int type);
size_t kern_qtype_block_bytes(int type);
/* Bytes of one row of n values (n a multiple of the block; 0 for an unknown type). */
size_t kern_qtype_row_bytes(int type, size_t n);
/* 1 if kern_matmul_q_fwd multiplies this type directly. */
int kern_qtype_matmul(int type);
/* Host code, any readable type: n values at src -> fp32 dst, exactly as the `gguf` Python package's dequantize
 * (float32, the same operation order, no fused multiply-adds). Returns -1 for a type it cannot read or n not a
 * multiple of the block. The one decoder of every format: the model's loader, the kernels' reference and the
 * tests all use it. */
int kern_q_dequantize(int type, const uint8_t *src, size_t n, float *dst);
float kern_f16_to_f32(uint16_t h);

/* out[n, j] = sum_c inp[n, c] W[j, c] + bias[j] for n < N, j < w->rows, written with row stride ldo (>= w->rows;
 * so that q | k | v stored as three matrices of different types fill one [N, QKV] buffer). inp [N, w->cols];
 * bias [w->rows] or NULL. The ref backend dequantizes each row (kern_q_dequantize) and takes fp32 dot products:
 * the oracle. The cpu backend, for few rows (N <= KERN_Q_DECODE_MAX_N) of Q8_0 / Q4_0: each 32-value block of
 * an input row quantized to int8 (scale max|x| / 127, rounded to nearest), then integer block dot products
 * (AVX-512 VNNI, AVX2, or portable loops, picked at run time) scaled by the two blocks' scales; F16: halves
 * converted on the fly (F16C) with fp32 fused multiply-adds; Q4_K / Q6_K: each row dequantized into cache and dotted
 * in fp32. For more rows (prefill) every type is dequantized a panel of rows at a time into fp32 and multiplied
 * by the backend's GEMM. OpenMP over output rows. The int8 input rounding makes the Q8_0 / Q4_0 decode products
 * differ from the oracle by at most sum_blocks (d_x / 2) sum_i |W[j, i]| (tests/test_kern.c holds them to it). */
#define KERN_Q_DECODE_MAX_N 8
enum { KERN_ISA_BEST = 0, KERN_ISA_PORTABLE = 1, KERN_ISA_AVX2 = 2, KERN_ISA_AVX512 = 3 };
void kern_matmul_q_fwd(kern_backend *be, float *out, size_t ldo, const float *inp, const kern_qmat *w, const float *bias,
                       size_t N);
/* kern_matmul_q_fwd for a product training differentiates (QLoRA): every row count takes the fp32 path (the
 * reference's dot products; the cpu backend's dequantized panels through the GEMM), never the decode path's int8
 * input rounding, so the forward is the function whose gradient kern_matmul_q_bwd gives. */
void kern_matmul_q_train_fwd(kern_backend *be, float *out, size_t ldo, const float *inp, const kern_qmat *w,
                             const float *bias, size_t N);
/* The input gradient of that product for a frozen quantized W (there is no dW): dinp [N, w->cols] += dout @ W, dout
 * [N, w->rows] read with row stride ldd (>= w->rows: one part of a q | k | v product). The ref backend dequantizes
 * a row of W at a time (the oracle); the cpu backend dequantizes a panel of rows at a time into fp32 and accumulates
 * dout[:, panel] @ panel with the backend's GEMM (the prefill's panels, transposed use). */
void kern_matmul_q_bwd(kern_backend *be, float *dinp, const float *dout, size_t ldd, const kern_qmat *w, size_t N);
/* 1 if be's table has the quantized ops; a backend without them (a device backend that has not implemented
 * them yet) gets fp32 weights from the model's loader instead. */
int kern_quant_supported(const kern_backend *be);
/* out[b,t,:] = row tok[b,t] of wte (dequantized) + wpe[pos0+t,:] (wpe may be NULL): kern_embed_fwd for a quantized
 * token table, dequantizing only the rows it reads. C = wte->cols. */
void kern_embed_q_fwd(kern_backend *be, float *out, const int32_t *tok, const kern_qmat *wte, const float *wpe,
                      size_t B, size_t T, size_t pos0);

#endif
