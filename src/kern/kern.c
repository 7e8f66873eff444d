/* kern.c: backend selection and memory for the CPU backends.
 * Every public op dispatches on the selected implementation: KERN_IMPL_REF -> kern_ref_* (cpu/ref.c),
 * KERN_IMPL_FAST -> kern_fast_* (cpu/fast*.c). Ops without a fast version fall through to the reference. */
#include "kern/kern.h"
#include "kern/cpu/cpu.h"
#include "core/core.h"
#include <string.h>
#include <stdlib.h>

#define FAST (g_impl == KERN_IMPL_FAST)

static kern_impl g_impl = KERN_IMPL_FAST;
void kern_set_impl(kern_impl impl) { g_impl = impl; }
kern_impl kern_get_impl(void) { return g_impl; }
const char *kern_impl_name(void) { return g_impl == KERN_IMPL_REF ? "cpu-ref" : kern_fast_name(); }

static kern_prec g_prec = KERN_PREC_FP32;
int kern_bf16_available(void) { return kern_fast_bf16_available(); }
void kern_bf16_shadow(const float *base, size_t n) {
#ifdef GK_HAVE_DNNL
    kern_cpu_bf16_shadow(base, n);
#else
    (void)base; (void)n;
#endif
}
int kern_set_precision(kern_prec prec) {
    if (prec == KERN_PREC_BF16 && !kern_fast_bf16_available()) return -1;
    g_prec = prec;
    return 0;
}
kern_prec kern_get_precision(void) { return g_prec; }

void *kern_alloc(size_t bytes) {
    void *p = NULL;
    size_t n = (bytes + 63) & ~(size_t)63;
    GK_CHECK(posix_memalign(&p, 64, n ? n : 64) == 0, "out of memory allocating %zu bytes (try a smaller batch or model)", bytes);
    memset(p, 0, n);
    return p;
}
void kern_free(void *p) { free(p); }
void kern_zero(void *p, size_t bytes) { memset(p, 0, bytes); }
void kern_upload(void *dst, const void *src, size_t bytes) { memcpy(dst, src, bytes); }
void kern_download(void *dst, const void *src, size_t bytes) { memcpy(dst, src, bytes); }
void kern_copy(void *dst, const void *src, size_t bytes) { memmove(dst, src, bytes); }

/* ---------------------------------------------------------------- ops */
void kern_embed_fwd(float *out, const int32_t *tok, const float *wte, const float *wpe,
                    size_t B, size_t T, size_t C, size_t pos0) {
    kern_ref_embed_fwd(out, tok, wte, wpe, B, T, C, pos0);
}
void kern_embed_bwd(float *dwte, float *dwpe, const float *dout, const int32_t *tok,
                    size_t B, size_t T, size_t C, size_t pos0) {
    kern_ref_embed_bwd(dwte, dwpe, dout, tok, B, T, C, pos0);
}
void kern_layernorm_fwd(float *out, float *mean, float *rstd, const float *inp, const float *w,
                        const float *b, size_t N, size_t C, float eps) {
    (FAST ? kern_fast_layernorm_fwd : kern_ref_layernorm_fwd)(out, mean, rstd, inp, w, b, N, C, eps);
}
void kern_layernorm_bwd(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                        const float *w, const float *mean, const float *rstd, size_t N, size_t C) {
    (FAST ? kern_fast_layernorm_bwd : kern_ref_layernorm_bwd)(dinp, dw, db, dout, inp, w, mean, rstd, N, C);
}
void kern_matmul_fwd(float *out, const float *inp, const float *w, const float *bias,
                     size_t N, size_t C, size_t OC, int wlayout) {
    (FAST ? kern_fast_matmul_fwd : kern_ref_matmul_fwd)(out, inp, w, bias, N, C, OC, wlayout);
}
void kern_matmul_bwd(float *dinp, float *dw, float *dbias, const float *dout, const float *inp,
                     const float *w, size_t N, size_t C, size_t OC, int wlayout) {
    (FAST ? kern_fast_matmul_bwd : kern_ref_matmul_bwd)(dinp, dw, dbias, dout, inp, w, N, C, OC, wlayout);
}
size_t kern_attention_saved_floats(size_t B, size_t T, size_t C, size_t NH) {
    return (FAST ? kern_fast_attention_saved_floats : kern_ref_attention_saved_floats)(B, T, C, NH);
}
void kern_attention_fwd(float *out, float *saved, const float *qkv, size_t B, size_t T, size_t C, size_t NH) {
    (FAST ? kern_fast_attention_fwd : kern_ref_attention_fwd)(out, saved, qkv, B, T, C, NH);
}
void kern_attention_bwd(float *dqkv, const float *dout, const float *qkv, const float *out,
                        const float *saved, size_t B, size_t T, size_t C, size_t NH) {
    (FAST ? kern_fast_attention_bwd : kern_ref_attention_bwd)(dqkv, dout, qkv, out, saved, B, T, C, NH);
}
void kern_gelu_fwd(float *out, const float *inp, size_t n) { (FAST ? kern_fast_gelu_fwd : kern_ref_gelu_fwd)(out, inp, n); }
void kern_gelu_bwd(float *dinp, const float *inp, const float *dout, size_t n) { (FAST ? kern_fast_gelu_bwd : kern_ref_gelu_bwd)(dinp, inp, dout, n); }
void kern_add(float *out, const float *a, const float *b, size_t n) { (FAST ? kern_fast_add : kern_ref_add)(out, a, b, n); }
void kern_axpy(float *y, float alpha, const float *x, size_t n) { (FAST ? kern_fast_axpy : kern_ref_axpy)(y, alpha, x, n); }
void kern_scale(float *x, float s, size_t n) { (FAST ? kern_fast_scale : kern_ref_scale)(x, s, n); }
void kern_xent_fwd_bwd(float *loss, float *dlogits, const float *logits, const int32_t *targets,
                       const float *dloss, size_t N, size_t V) {
    (FAST ? kern_fast_xent_fwd_bwd : kern_ref_xent_fwd_bwd)(loss, dlogits, logits, targets, dloss, N, V);
}
double kern_sumsq(const float *x, size_t n) { return (FAST ? kern_fast_sumsq : kern_ref_sumsq)(x, n); }
void kern_adamw(float *p, const float *g, float *m, float *v, size_t n, float lr, float b1, float b2,
                float eps, float wd, float bc1, float bc2, float gscale) {
    (FAST ? kern_fast_adamw : kern_ref_adamw)(p, g, m, v, n, lr, b1, b2, eps, wd, bc1, bc2, gscale);
}
