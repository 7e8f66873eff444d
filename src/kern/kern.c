/* kern.c: the backend-independent part of src/kern: the process defaults for new backends, names of GEMM
 * libraries and kinds, host memory (shared by both CPU kinds), and the public kern_* ops, each a one-line
 * dispatch through its backend's table (be->ops). The tables themselves and kern_backend_create live in
 * cpu/backends.c; the implementations in cpu/. */
#include "kern/kern.h"
#include "kern/cpu/cpu.h"
#include "core/core.h"
#include <string.h>
#include <stdlib.h>

/* ---------------------------------------------------------------- defaults and names */
/* The defaults of kern_backend_create(NULL): set once by the CLI's global flags before any model exists. */
static kern_backend_opts g_defaults = {KERN_KIND_CPU, KERN_GEMM_AUTO, KERN_PREC_FP32};
void kern_backend_opts_default(kern_backend_opts *o) { *o = g_defaults; }
void kern_backend_set_defaults(const kern_backend_opts *o) { g_defaults = *o; }

static const char *const gemm_names[] = {"auto", "openblas", "onednn", "builtin"};
int kern_gemm_parse(const char *s, kern_gemm *out) {
    for (int i = 0; i < 4; i++)
        if (s && !strcmp(s, gemm_names[i])) { *out = (kern_gemm)i; return 0; }
    return -1;
}
const char *kern_gemm_name(kern_gemm g) { return (unsigned)g < 4 ? gemm_names[g] : "?"; }
int kern_kind_parse(const char *s, kern_kind *out) {
    if (s && !strcmp(s, "cpu")) *out = KERN_KIND_CPU;
    else if (s && !strcmp(s, "ref")) *out = KERN_KIND_REF;
    else if (s && !strcmp(s, "cuda")) *out = KERN_KIND_CUDA;
    else return -1;
    return 0;
}

const char *kern_kind_name(kern_kind k) {
    return k == KERN_KIND_CPU ? "cpu" : k == KERN_KIND_REF ? "ref" : k == KERN_KIND_CUDA ? "cuda" : "?";
}

const char *kern_backend_name(const kern_backend *be) { return be->name; }
kern_prec kern_get_precision(const kern_backend *be) { return be->prec; }

/* ---------------------------------------------------------------- host memory (both CPU kinds) */
void *kern_host_alloc(kern_backend *be, size_t bytes) {
    void *p = NULL;
    size_t n = (bytes + 63) & ~(size_t)63;
    GK_CHECK(posix_memalign(&p, 64, n ? n : 64) == 0, "out of memory allocating %zu bytes (try a smaller batch or model)", bytes);
    memset(p, 0, n);
    return p;
}
void kern_host_free(kern_backend *be, void *p) { free(p); }
void kern_host_zero(kern_backend *be, void *p, size_t bytes) { memset(p, 0, bytes); }
void kern_host_upload(kern_backend *be, void *dst, const void *src, size_t bytes) { memcpy(dst, src, bytes); }
void kern_host_download(kern_backend *be, void *dst, const void *src, size_t bytes) { memcpy(dst, src, bytes); }
void kern_host_copy(kern_backend *be, void *dst, const void *src, size_t bytes) { memmove(dst, src, bytes); }

/* ---------------------------------------------------------------- dispatch */
void *kern_alloc(kern_backend *be, size_t bytes) { return be->ops->alloc(be, bytes); }
void kern_free(kern_backend *be, void *p) { if (p) be->ops->free(be, p); }
void kern_zero(kern_backend *be, void *p, size_t bytes) { be->ops->zero(be, p, bytes); }
void kern_upload(kern_backend *be, void *dst, const void *src, size_t bytes) { be->ops->upload(be, dst, src, bytes); }
void kern_download(kern_backend *be, void *dst, const void *src, size_t bytes) { be->ops->download(be, dst, src, bytes); }
void kern_copy(kern_backend *be, void *dst, const void *src, size_t bytes) { be->ops->copy(be, dst, src, bytes); }
void kern_bf16_shadow(kern_backend *be, const float *base, size_t n) { be->ops->bf16_shadow(be, base, n); }

void kern_embed_fwd(kern_backend *be, float *out, const int32_t *tok, const float *wte, const float *wpe,
                    size_t B, size_t T, size_t C, size_t pos0) {
    be->ops->embed_fwd(be, out, tok, wte, wpe, B, T, C, pos0);
}
void kern_embed_bwd(kern_backend *be, float *dwte, float *dwpe, const float *dout, const int32_t *tok,
                    size_t B, size_t T, size_t C, size_t pos0) {
    be->ops->embed_bwd(be, dwte, dwpe, dout, tok, B, T, C, pos0);
}
void kern_layernorm_fwd(kern_backend *be, float *out, float *mean, float *rstd, const float *inp, const float *w,
                        const float *b, size_t N, size_t C, float eps) {
    be->ops->layernorm_fwd(be, out, mean, rstd, inp, w, b, N, C, eps);
}
void kern_layernorm_bwd(kern_backend *be, float *dinp, float *dw, float *db, const float *dout, const float *inp,
                        const float *w, const float *mean, const float *rstd, size_t N, size_t C) {
    be->ops->layernorm_bwd(be, dinp, dw, db, dout, inp, w, mean, rstd, N, C);
}
void kern_matmul_fwd(kern_backend *be, float *out, const float *inp, const float *w, const float *bias,
                     size_t N, size_t C, size_t OC, int wlayout) {
    be->ops->matmul_fwd(be, out, inp, w, bias, N, C, OC, wlayout);
}
void kern_matmul_bwd(kern_backend *be, float *dinp, float *dw, float *dbias, const float *dout, const float *inp,
                     const float *w, size_t N, size_t C, size_t OC, int wlayout) {
    be->ops->matmul_bwd(be, dinp, dw, dbias, dout, inp, w, N, C, OC, wlayout);
}
void kern_matmul_skinny_fwd(kern_backend *be, float *out, const float *inp, const float *w, const float *bias,
                            size_t N, size_t C, size_t OC, int wlayout) {
    be->ops->matmul_skinny_fwd(be, out, inp, w, bias, N, C, OC, wlayout);
}
size_t kern_attention_saved_floats(kern_backend *be, size_t B, size_t T, size_t C, size_t NH) {
    return be->ops->attention_saved_floats(be, B, T, C, NH);
}
void kern_attention_fwd(kern_backend *be, float *out, float *saved, const float *qkv, size_t B, size_t T, size_t C,
                        size_t NH) {
    be->ops->attention_fwd(be, out, saved, qkv, B, T, C, NH);
}
void kern_attention_bwd(kern_backend *be, float *dqkv, const float *dout, const float *qkv, const float *out,
                        const float *saved, size_t B, size_t T, size_t C, size_t NH) {
    be->ops->attention_bwd(be, dqkv, dout, qkv, out, saved, B, T, C, NH);
}
void kern_attn_cache_fwd(kern_backend *be, float *out, float *kc, float *vc, const float *qkv, const int32_t *slot,
                         const int32_t *pos, size_t B, size_t n, size_t C, size_t NH, size_t NKV, size_t maxT) {
    be->ops->attn_cache_fwd(be, out, kc, vc, qkv, slot, pos, B, n, C, NH, NKV, maxT);
}
void kern_gelu_fwd(kern_backend *be, float *out, const float *inp, size_t n) { be->ops->gelu_fwd(be, out, inp, n); }
void kern_gelu_bwd(kern_backend *be, float *dinp, const float *inp, const float *dout, size_t n) {
    be->ops->gelu_bwd(be, dinp, inp, dout, n);
}
void kern_add(kern_backend *be, float *out, const float *a, const float *b, size_t n) { be->ops->add(be, out, a, b, n); }
void kern_axpy(kern_backend *be, float *y, float alpha, const float *x, size_t n) { be->ops->axpy(be, y, alpha, x, n); }
void kern_scale(kern_backend *be, float *x, float s, size_t n) { be->ops->scale(be, x, s, n); }
void kern_xent_fwd_bwd(kern_backend *be, float *loss, float *dlogits, const float *logits, const int32_t *targets,
                       const float *dloss, size_t N, size_t V) {
    be->ops->xent_fwd_bwd(be, loss, dlogits, logits, targets, dloss, N, V);
}
double kern_sumsq(kern_backend *be, const float *x, size_t n) { return be->ops->sumsq(be, x, n); }
void kern_adamw(kern_backend *be, float *p, const float *g, float *m, float *v, size_t n, float lr, float b1, float b2,
                float eps, float wd, float bc1, float bc2, float gscale) {
    be->ops->adamw(be, p, g, m, v, n, lr, b1, b2, eps, wd, bc1, bc2, gscale);
}

void kern_rmsnorm_fwd(kern_backend *be, float *out, float *rstd, const float *inp, const float *w, size_t N, size_t C, float eps) {
    be->ops->rmsnorm_fwd(be, out, rstd, inp, w, N, C, eps);
}
void kern_rmsnorm_bwd(kern_backend *be, float *dinp, float *dw, const float *dout, const float *inp, const float *w,
                      const float *rstd, size_t N, size_t C) {
    be->ops->rmsnorm_bwd(be, dinp, dw, dout, inp, w, rstd, N, C);
}
void kern_rope(kern_backend *be, float *x, const int32_t *pos, const float *inv_freq, size_t R, size_t W, size_t nheads,
               size_t hs, int inverse) {
    be->ops->rope(be, x, pos, inv_freq, R, W, nheads, hs, inverse);
}
void kern_kv_expand_fwd(kern_backend *be, float *out, const float *qkv, size_t R, size_t NH, size_t NKV, size_t hs) {
    be->ops->kv_expand_fwd(be, out, qkv, R, NH, NKV, hs);
}
void kern_kv_expand_bwd(kern_backend *be, float *dqkv, const float *dout, size_t R, size_t NH, size_t NKV, size_t hs) {
    be->ops->kv_expand_bwd(be, dqkv, dout, R, NH, NKV, hs);
}
void kern_swiglu_fwd(kern_backend *be, float *out, const float *gate, const float *up, size_t n) {
    be->ops->swiglu_fwd(be, out, gate, up, n);
}
void kern_swiglu_bwd(kern_backend *be, float *dgate, float *dup, const float *dout, const float *gate, const float *up, size_t n) {
    be->ops->swiglu_bwd(be, dgate, dup, dout, gate, up, n);
}
int kern_quant_supported(const kern_backend *be) {
    return be->ops->matmul_q_fwd && be->ops->embed_q_fwd && be->ops->matmul_q_bwd;
}
static void q_check(const char *op, const kern_qmat *w, size_t ld) {
    GK_CHECK(kern_qtype_matmul(w->type) && w->cols % kern_qtype_block(w->type) == 0 && ld >= w->rows,
             "%s: type %d, %zu x %zu, ld %zu", op, w->type, w->rows, w->cols, ld);
}
void kern_matmul_q_fwd(kern_backend *be, float *out, size_t ldo, const float *inp, const kern_qmat *w, const float *bias,
                       size_t N) {
    q_check("kern_matmul_q_fwd", w, ldo);
    be->ops->matmul_q_fwd(be, out, ldo, inp, w, bias, N, 0);
}
void kern_matmul_q_train_fwd(kern_backend *be, float *out, size_t ldo, const float *inp, const kern_qmat *w,
                             const float *bias, size_t N) {
    q_check("kern_matmul_q_train_fwd", w, ldo);
    be->ops->matmul_q_fwd(be, out, ldo, inp, w, bias, N, 1);
}
void kern_matmul_q_bwd(kern_backend *be, float *dinp, const float *dout, size_t ldd, const kern_qmat *w, size_t N) {
    q_check("kern_matmul_q_bwd", w, ldd);
    be->ops->matmul_q_bwd(be, dinp, dout, ldd, w, N);
}
void kern_embed_q_fwd(kern_backend *be, float *out, const int32_t *tok, const kern_qmat *wte, const float *wpe,
                      size_t B, size_t T, size_t pos0) {
    be->ops->embed_q_fwd(be, out, tok, wte, wpe, B, T, pos0);
}
