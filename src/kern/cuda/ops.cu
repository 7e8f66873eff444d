/* ops.cu: the CUDA backend's memory-bound ops: embedding, LayerNorm, RMSNorm, GELU, SwiGLU, rotary embedding,
 * grouped-query expansion, elementwise arithmetic, softmax cross-entropy, AdamW and the sum of squares.
 *
 * Each kernel states the math of kern.h's op it implements (the CPU reference, src/kern/cpu/ref_impl.h, is the
 * oracle the tests compare against). Patterns used throughout:
 *  - elementwise: one thread per element, grid-stride loop, grid capped by cu_grid;
 *  - row-wise (norms): one warp per row, lanes striding the row, sums by warp shuffles;
 *  - column sums over rows (dw, db, dbias): kcu_colsum, fixed row chunks and an ordered second pass, so the
 *    result does not depend on scheduling (no float atomics);
 *  - the embedding's dwte scatter uses atomicAdd (the same token may repeat anywhere in the batch): its
 *    summation order, and so its last bits, vary from run to run. Everything else here is deterministic.
 * Backward ops accumulate (+=) and skip NULL gradients, as kern.h says.
 *
 * Status: compiled, never run on a GPU yet (docs/cuda.md). */
#include "kern/cuda/cuda_impl.h"
#include <math.h>

#define GSTRIDE_LOOP(i, n) \
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < (n); i += (size_t)gridDim.x * blockDim.x)
#define WARPS_PER_BLOCK (KCU_THREADS / 32)
/* one warp per row r of n rows, grid-stride */
#define WARP_ROW_LOOP(r, n) \
    for (size_t r = blockIdx.x * (size_t)WARPS_PER_BLOCK + threadIdx.x / 32; r < (n); r += (size_t)gridDim.x * WARPS_PER_BLOCK)

__device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

/* ---------------------------------------------------------------- column sums */

#define COLSUM_MIN_ROWS 256
static __global__ void k_colsum_partial(float *part, const float *a, const float *x, const float *mean, const float *rstd,
                                 size_t N, size_t C, size_t rows_per_chunk, int mode) {
    __shared__ float sh[8][33];
    size_t c = blockIdx.x * (size_t)32 + threadIdx.x;
    size_t r0 = blockIdx.y * rows_per_chunk, r1 = r0 + rows_per_chunk < N ? r0 + rows_per_chunk : N;
    float acc = 0.0f;
    if (c < C) {
        for (size_t r = r0 + threadIdx.y; r < r1; r += 8) {
            float v = a[r * C + c];
            if (mode == 1) v *= (x[r * C + c] - mean[r]) * rstd[r];
            else if (mode == 2) v *= x[r * C + c] * rstd[r];
            acc += v;
        }
    }
    sh[threadIdx.y][threadIdx.x] = acc;
    __syncthreads();
    if (threadIdx.y == 0 && c < C) {
        float s = 0.0f;
        for (int k = 0; k < 8; k++) s += sh[k][threadIdx.x];
        part[blockIdx.y * C + c] = s;
    }
}
static __global__ void k_colsum_final(float *dst, const float *part, size_t nchunks, size_t C) {
    GSTRIDE_LOOP(c, C) {
        float s = 0.0f;
        for (size_t k = 0; k < nchunks; k++) s += part[k * C + c];
        dst[c] += s;
    }
}
void kcu_colsum(kern_backend *be, float *dst, const float *a, const float *x, const float *mean, const float *rstd,
                size_t N, size_t C, int mode) {
    if (N == 0 || C == 0) return;
    size_t rows = COLSUM_MIN_ROWS;
    while ((N + rows - 1) / rows > 4096) rows *= 2;   /* grid.y stays far below its 65535 limit */
    size_t nchunks = (N + rows - 1) / rows;
    size_t cblocks = (C + 31) / 32;
    GK_CHECK(cblocks < ((size_t)1 << 31), "kcu_colsum: C=%zu", C);
    float *part = (float *)kcu_scratch(be, 2, nchunks * C * sizeof(float));
    dim3 grid((unsigned)cblocks, (unsigned)nchunks), block(32, 8);
    KCU_LAUNCH(k_colsum_partial, grid, block, part, a, x, mean, rstd, N, C, rows, mode);
    CU_LAUNCHED();
    KCU_LAUNCH(k_colsum_final, cu_grid(C, KCU_THREADS), KCU_THREADS, dst, part, nchunks, C);
    CU_LAUNCHED();
}

/* ---------------------------------------------------------------- embedding */

/* out[b,t,c] = wte[tok[b,t], c] + wpe[pos0 + t, c] (wpe NULL: none) */
static __global__ void k_embed_fwd(float *out, const int32_t *tok, const float *wte, const float *wpe, size_t T, size_t C,
                            size_t pos0, size_t total) {
    GSTRIDE_LOOP(i, total) {
        size_t bt = i / C, c = i % C;
        float v = wte[(size_t)tok[bt] * C + c];
        if (wpe) v += wpe[(pos0 + bt % T) * C + c];
        out[i] = v;
    }
}
void kcu_embed_fwd(kern_backend *be, float *out, const int32_t *tok, const float *wte, const float *wpe, size_t B,
                   size_t T, size_t C, size_t pos0) {
    (void)be;
    size_t n = B * T * C;
    if (!n) return;
    KCU_LAUNCH(k_embed_fwd, cu_grid(n, KCU_THREADS), KCU_THREADS, out, tok, wte, wpe, T, C, pos0, n);
    CU_LAUNCHED();
}
/* dwte[tok[b,t], c] += dout[b,t,c] (atomic: tokens repeat);  dwpe[pos0+t, c] += sum_b dout[b,t,c] (one thread
 * per (t, c), b in order: deterministic). */
static __global__ void k_embed_bwd_wte(float *dwte, const float *dout, const int32_t *tok, size_t C, size_t total) {
    GSTRIDE_LOOP(i, total) atomicAdd(&dwte[(size_t)tok[i / C] * C + i % C], dout[i]);
}
static __global__ void k_embed_bwd_wpe(float *dwpe, const float *dout, size_t B, size_t T, size_t C, size_t pos0) {
    GSTRIDE_LOOP(i, T * C) {
        size_t t = i / C, c = i % C;
        float s = 0.0f;
        for (size_t b = 0; b < B; b++) s += dout[(b * T + t) * C + c];
        dwpe[(pos0 + t) * C + c] += s;
    }
}
void kcu_embed_bwd(kern_backend *be, float *dwte, float *dwpe, const float *dout, const int32_t *tok, size_t B,
                   size_t T, size_t C, size_t pos0) {
    (void)be;
    size_t n = B * T * C;
    if (!n) return;
    if (dwte) { KCU_LAUNCH(k_embed_bwd_wte, cu_grid(n, KCU_THREADS), KCU_THREADS, dwte, dout, tok, C, n); CU_LAUNCHED(); }
    if (dwpe) { KCU_LAUNCH(k_embed_bwd_wpe, cu_grid(T * C, KCU_THREADS), KCU_THREADS, dwpe, dout, B, T, C, pos0); CU_LAUNCHED(); }
}

/* ---------------------------------------------------------------- LayerNorm */

/* mean = (1/C) sum x;  var = (1/C) sum (x - mean)^2;  rstd = 1/sqrt(var + eps);  out = (x - mean) rstd w + b */
static __global__ void k_layernorm_fwd(float *out, float *mean, float *rstd, const float *inp, const float *w, const float *b,
                                size_t N, size_t C, float eps) {
    int lane = threadIdx.x % 32;
    WARP_ROW_LOOP(r, N) {
        const float *x = inp + r * C;
        float s = 0.0f;
        for (size_t c = lane; c < C; c += 32) s += x[c];
        float m = warp_sum(s) / (float)C;
        float v = 0.0f;
        for (size_t c = lane; c < C; c += 32) { float d = x[c] - m; v += d * d; }
        float rs = 1.0f / sqrtf(warp_sum(v) / (float)C + eps);
        float *o = out + r * C;
        for (size_t c = lane; c < C; c += 32) o[c] = (x[c] - m) * rs * w[c] + b[c];
        if (lane == 0) { mean[r] = m; rstd[r] = rs; }
    }
}
void kcu_layernorm_fwd(kern_backend *be, float *out, float *mean, float *rstd, const float *inp, const float *w,
                       const float *b, size_t N, size_t C, float eps) {
    (void)be;
    if (!N) return;
    KCU_LAUNCH(k_layernorm_fwd, cu_grid(N, WARPS_PER_BLOCK), KCU_THREADS, out, mean, rstd, inp, w, b, N, C, eps);
    CU_LAUNCHED();
}
/* g = dout w;  dx += rstd (g - mean(g) - xhat mean(g xhat));  dw += sum_rows dout xhat;  db += sum_rows dout */
static __global__ void k_layernorm_bwd_dx(float *dinp, const float *dout, const float *inp, const float *w, const float *mean,
                                   const float *rstd, size_t N, size_t C) {
    int lane = threadIdx.x % 32;
    WARP_ROW_LOOP(r, N) {
        const float *x = inp + r * C, *go = dout + r * C;
        float m = mean[r], s = rstd[r], gm = 0.0f, gxm = 0.0f;
        for (size_t c = lane; c < C; c += 32) {
            float g = go[c] * w[c];
            gm += g;
            gxm += g * (x[c] - m) * s;
        }
        gm = warp_sum(gm) / (float)C;
        gxm = warp_sum(gxm) / (float)C;
        float *dx = dinp + r * C;
        for (size_t c = lane; c < C; c += 32) dx[c] += s * (go[c] * w[c] - gm - (x[c] - m) * s * gxm);
    }
}
void kcu_layernorm_bwd(kern_backend *be, float *dinp, float *dw, float *db, const float *dout, const float *inp,
                       const float *w, const float *mean, const float *rstd, size_t N, size_t C) {
    if (!N) return;
    if (dinp) { KCU_LAUNCH(k_layernorm_bwd_dx, cu_grid(N, WARPS_PER_BLOCK), KCU_THREADS, dinp, dout, inp, w, mean, rstd, N, C); CU_LAUNCHED(); }
    if (dw) kcu_colsum(be, dw, dout, inp, mean, rstd, N, C, 1);
    if (db) kcu_colsum(be, db, dout, NULL, NULL, NULL, N, C, 0);
}

/* ---------------------------------------------------------------- RMSNorm */

/* rstd = 1/sqrt(mean x^2 + eps);  out = w (x rstd) */
static __global__ void k_rmsnorm_fwd(float *out, float *rstd, const float *inp, const float *w, size_t N, size_t C, float eps) {
    int lane = threadIdx.x % 32;
    WARP_ROW_LOOP(r, N) {
        const float *x = inp + r * C;
        float ss = 0.0f;
        for (size_t c = lane; c < C; c += 32) ss += x[c] * x[c];
        float s = 1.0f / sqrtf(warp_sum(ss) / (float)C + eps);
        float *o = out + r * C;
        for (size_t c = lane; c < C; c += 32) o[c] = w[c] * (x[c] * s);
        if (lane == 0) rstd[r] = s;
    }
}
void kcu_rmsnorm_fwd(kern_backend *be, float *out, float *rstd, const float *inp, const float *w, size_t N, size_t C,
                     float eps) {
    (void)be;
    if (!N) return;
    KCU_LAUNCH(k_rmsnorm_fwd, cu_grid(N, WARPS_PER_BLOCK), KCU_THREADS, out, rstd, inp, w, N, C, eps);
    CU_LAUNCHED();
}
/* dx += rstd dout w - rstd^3 x (1/C) sum(dout w x);  dw += sum_rows dout x rstd */
static __global__ void k_rmsnorm_bwd_dx(float *dinp, const float *dout, const float *inp, const float *w, const float *rstd,
                                 size_t N, size_t C) {
    int lane = threadIdx.x % 32;
    WARP_ROW_LOOP(r, N) {
        const float *x = inp + r * C, *go = dout + r * C;
        float s = rstd[r], gx = 0.0f;
        for (size_t c = lane; c < C; c += 32) gx += go[c] * w[c] * x[c];
        float k = s * s * s * warp_sum(gx) / (float)C;
        float *dx = dinp + r * C;
        for (size_t c = lane; c < C; c += 32) dx[c] += s * go[c] * w[c] - k * x[c];
    }
}
void kcu_rmsnorm_bwd(kern_backend *be, float *dinp, float *dw, const float *dout, const float *inp, const float *w,
                     const float *rstd, size_t N, size_t C) {
    if (!N) return;
    if (dinp) { KCU_LAUNCH(k_rmsnorm_bwd_dx, cu_grid(N, WARPS_PER_BLOCK), KCU_THREADS, dinp, dout, inp, w, rstd, N, C); CU_LAUNCHED(); }
    if (dw) kcu_colsum(be, dw, dout, inp, NULL, rstd, N, C, 2);
}

/* ---------------------------------------------------------------- GELU (tanh approximation), SwiGLU */

#define GELU_K 0.7978845608028654f   /* sqrt(2/pi) */
static __global__ void k_gelu_fwd(float *out, const float *inp, size_t n) {
    GSTRIDE_LOOP(i, n) {
        float x = inp[i];
        float u = GELU_K * (x + 0.044715f * x * x * x);
        out[i] = 0.5f * x * (1.0f + tanhf(u));
    }
}
/* gelu'(x) = 0.5 (1 + tanh u) + 0.5 x (1 - tanh^2 u) sqrt(2/pi) (1 + 3 0.044715 x^2);  dinp += gelu' dout */
static __global__ void k_gelu_bwd(float *dinp, const float *inp, const float *dout, size_t n) {
    GSTRIDE_LOOP(i, n) {
        float x = inp[i];
        float u = GELU_K * (x + 0.044715f * x * x * x);
        float th = tanhf(u);
        float du = GELU_K * (1.0f + 3.0f * 0.044715f * x * x);
        dinp[i] += (0.5f * (1.0f + th) + 0.5f * x * (1.0f - th * th) * du) * dout[i];
    }
}
void kcu_gelu_fwd(kern_backend *be, float *out, const float *inp, size_t n) {
    (void)be;
    if (!n) return;
    KCU_LAUNCH(k_gelu_fwd, cu_grid(n, KCU_THREADS), KCU_THREADS, out, inp, n);
    CU_LAUNCHED();
}
void kcu_gelu_bwd(kern_backend *be, float *dinp, const float *inp, const float *dout, size_t n) {
    (void)be;
    if (!n || !dinp) return;
    KCU_LAUNCH(k_gelu_bwd, cu_grid(n, KCU_THREADS), KCU_THREADS, dinp, inp, dout, n);
    CU_LAUNCHED();
}

/* out = silu(g) up, silu(g) = g / (1 + exp(-g)) */
static __global__ void k_swiglu_fwd(float *out, const float *gate, const float *up, size_t n) {
    GSTRIDE_LOOP(i, n) {
        float g = gate[i];
        out[i] = g / (1.0f + expf(-g)) * up[i];
    }
}
/* dgate += dout up sig (1 + g (1 - sig));  dup += dout g sig */
static __global__ void k_swiglu_bwd(float *dgate, float *dup, const float *dout, const float *gate, const float *up, size_t n) {
    GSTRIDE_LOOP(i, n) {
        float g = gate[i], sg = 1.0f / (1.0f + expf(-g));
        if (dgate) dgate[i] += dout[i] * up[i] * sg * (1.0f + g * (1.0f - sg));
        if (dup) dup[i] += dout[i] * g * sg;
    }
}
void kcu_swiglu_fwd(kern_backend *be, float *out, const float *gate, const float *up, size_t n) {
    (void)be;
    if (!n) return;
    KCU_LAUNCH(k_swiglu_fwd, cu_grid(n, KCU_THREADS), KCU_THREADS, out, gate, up, n);
    CU_LAUNCHED();
}
void kcu_swiglu_bwd(kern_backend *be, float *dgate, float *dup, const float *dout, const float *gate, const float *up,
                    size_t n) {
    (void)be;
    if (!n || (!dgate && !dup)) return;
    KCU_LAUNCH(k_swiglu_bwd, cu_grid(n, KCU_THREADS), KCU_THREADS, dgate, dup, dout, gate, up, n);
    CU_LAUNCHED();
}

/* ---------------------------------------------------------------- elementwise */

static __global__ void k_add(float *out, const float *a, const float *b, size_t n) { GSTRIDE_LOOP(i, n) out[i] = a[i] + b[i]; }
static __global__ void k_axpy(float *y, float alpha, const float *x, size_t n) { GSTRIDE_LOOP(i, n) y[i] += alpha * x[i]; }
static __global__ void k_scale(float *x, float s, size_t n) { GSTRIDE_LOOP(i, n) x[i] *= s; }
void kcu_add(kern_backend *be, float *out, const float *a, const float *b, size_t n) {
    (void)be;
    if (!n) return;
    KCU_LAUNCH(k_add, cu_grid(n, KCU_THREADS), KCU_THREADS, out, a, b, n);
    CU_LAUNCHED();
}
void kcu_axpy(kern_backend *be, float *y, float alpha, const float *x, size_t n) {
    (void)be;
    if (!n) return;
    KCU_LAUNCH(k_axpy, cu_grid(n, KCU_THREADS), KCU_THREADS, y, alpha, x, n);
    CU_LAUNCHED();
}
void kcu_scale(kern_backend *be, float *x, float s, size_t n) {
    (void)be;
    if (!n) return;
    KCU_LAUNCH(k_scale, cu_grid(n, KCU_THREADS), KCU_THREADS, x, s, n);
    CU_LAUNCHED();
}

/* ---------------------------------------------------------------- rotary embedding, GQA expansion */

/* HF rotate_half pairing, in place on the first nheads heads of each row of x [R, W]:
 *   x1' = x1 cos a - x2 sin a;  x2' = x2 cos a + x1 sin a;  a = pos[r] inv_freq[d] (inverse: -a).
 * One thread per (row, head, d < hs/2): each thread owns one pair, so in place is race-free. */
static __global__ void k_rope(float *x, const int32_t *pos, const float *inv_freq, size_t R, size_t W, size_t nheads,
                       size_t hs, int inverse) {
    size_t half = hs / 2;
    GSTRIDE_LOOP(i, R * nheads * half) {
        size_t d = i % half, h = (i / half) % nheads, r = i / (half * nheads);
        float a = (float)pos[r] * inv_freq[d];
        float cs = cosf(a), sn = inverse ? -sinf(a) : sinf(a);
        float *v = x + r * W + h * hs;
        float x1 = v[d], x2 = v[d + half];
        v[d] = x1 * cs - x2 * sn;
        v[d + half] = x2 * cs + x1 * sn;
    }
}
void kcu_rope(kern_backend *be, float *x, const int32_t *pos, const float *inv_freq, size_t R, size_t W, size_t nheads,
              size_t hs, int inverse) {
    (void)be;
    GK_CHECK(hs % 2 == 0, "kern_rope: head size %zu is odd", hs);
    size_t n = R * nheads * (hs / 2);
    if (!n) return;
    KCU_LAUNCH(k_rope, cu_grid(n, KCU_THREADS), KCU_THREADS, x, pos, inv_freq, R, W, nheads, hs, inverse);
    CU_LAUNCHED();
}

/* qkv [R, (NH + 2 NKV) hs] -> out [R, 3 NH hs]; query head h reads key/value head h / (NH / NKV). */
static __global__ void k_kv_expand_fwd(float *out, const float *qkv, size_t R, size_t NH, size_t NKV, size_t hs) {
    size_t C = NH * hs, W = (NH + 2 * NKV) * hs, g = NH / NKV;
    GSTRIDE_LOOP(i, R * 3 * C) {
        size_t r = i / (3 * C), j = i % (3 * C);
        const float *in = qkv + r * W;
        float v;
        if (j < C) v = in[j];
        else if (j < 2 * C) { size_t h = (j - C) / hs, d = (j - C) % hs; v = in[C + (h / g) * hs + d]; }
        else { size_t h = (j - 2 * C) / hs, d = (j - 2 * C) % hs; v = in[C + NKV * hs + (h / g) * hs + d]; }
        out[i] = v;
    }
}
/* dqkv += the transpose: one thread per element of dqkv sums its group in order (no atomics). */
static __global__ void k_kv_expand_bwd(float *dqkv, const float *dout, size_t R, size_t NH, size_t NKV, size_t hs) {
    size_t C = NH * hs, W = (NH + 2 * NKV) * hs, g = NH / NKV;
    GSTRIDE_LOOP(i, R * W) {
        size_t r = i / W, w = i % W;
        const float *go = dout + r * 3 * C;
        float s;
        if (w < C) s = go[w];
        else {
            int is_v = w >= C + NKV * hs;
            size_t off = w - C - (is_v ? NKV * hs : 0), kh = off / hs, e = off % hs;
            const float *src = go + (is_v ? 2 * C : C);
            s = 0.0f;
            for (size_t h = kh * g; h < (kh + 1) * g; h++) s += src[h * hs + e];
        }
        dqkv[i] += s;
    }
}
void kcu_kv_expand_fwd(kern_backend *be, float *out, const float *qkv, size_t R, size_t NH, size_t NKV, size_t hs) {
    (void)be;
    GK_CHECK(NKV > 0 && NH % NKV == 0, "kern_kv_expand_fwd: NKV=%zu does not divide NH=%zu", NKV, NH);
    size_t n = R * 3 * NH * hs;
    if (!n) return;
    KCU_LAUNCH(k_kv_expand_fwd, cu_grid(n, KCU_THREADS), KCU_THREADS, out, qkv, R, NH, NKV, hs);
    CU_LAUNCHED();
}
void kcu_kv_expand_bwd(kern_backend *be, float *dqkv, const float *dout, size_t R, size_t NH, size_t NKV, size_t hs) {
    (void)be;
    GK_CHECK(NKV > 0 && NH % NKV == 0, "kern_kv_expand_bwd: NKV=%zu does not divide NH=%zu", NKV, NH);
    size_t n = R * (NH + 2 * NKV) * hs;
    if (!n || !dqkv) return;
    KCU_LAUNCH(k_kv_expand_bwd, cu_grid(n, KCU_THREADS), KCU_THREADS, dqkv, dout, R, NH, NKV, hs);
    CU_LAUNCHED();
}

/* ---------------------------------------------------------------- softmax cross-entropy */

/* One block per row (grid-stride over rows). Pass 1: each thread an online (max, sum of exp) over its strided
 * share of the row, combined across the block; lse = max + log(sum). The target's logit is read before the
 * block barrier that ends pass 1, so with dlogits aliasing logits no thread has written yet. Pass 2: each
 * thread writes its own elements (reading each just before overwriting it).
 *   loss = lse - l[target] (0 if target < 0);  dl = dloss (softmax - onehot) (0 row if target < 0).
 * A target >= V (a caller's bug; the reference aborts) gives loss NaN, so it cannot go unnoticed. */
#define XENT_THREADS 512
static __global__ void k_xent(float *loss, float *dlogits, const float *logits, const int32_t *targets, const float *dloss,
                       size_t N, size_t V) {
    __shared__ float sm[XENT_THREADS / 32], ss[XENT_THREADS / 32];
    __shared__ float row_lse, row_tl;
    int lane = threadIdx.x % 32, wid = threadIdx.x / 32, nw = blockDim.x / 32;
    for (size_t r = blockIdx.x; r < N; r += gridDim.x) {
        const float *l = logits + r * V;
        int32_t tg = targets[r];
        float m = -INFINITY, s = 0.0f;
        for (size_t v = threadIdx.x; v < V; v += blockDim.x) {
            float x = l[v];
            if (x > m) { s = s * expf(m - x) + 1.0f; m = x; }   /* expf(-inf) = 0 on the first element */
            else s += expf(x - m);
        }
        /* combine (m, s) pairs: within the warp, then across warps */
        for (int o = 16; o > 0; o >>= 1) {
            float m2 = __shfl_xor_sync(0xffffffffu, m, o), s2 = __shfl_xor_sync(0xffffffffu, s, o);
            float mm = fmaxf(m, m2);
            s = (m == -INFINITY ? 0.0f : s * expf(m - mm)) + (m2 == -INFINITY ? 0.0f : s2 * expf(m2 - mm));
            m = mm;
        }
        if (lane == 0) { sm[wid] = m; ss[wid] = s; }
        if (threadIdx.x == 0) row_tl = (tg >= 0 && (size_t)tg < V) ? l[tg] : 0.0f;
        __syncthreads();
        if (threadIdx.x == 0) {
            float M = -INFINITY, S = 0.0f;
            for (int k = 0; k < nw; k++) M = fmaxf(M, sm[k]);
            for (int k = 0; k < nw; k++) if (sm[k] != -INFINITY) S += ss[k] * expf(sm[k] - M);
            row_lse = M + logf(S);
            loss[r] = tg < 0 ? 0.0f : (size_t)tg >= V ? NAN : row_lse - row_tl;
        }
        __syncthreads();
        if (dloss) {
            float lse = row_lse, g = dloss[r];
            float *dl = dlogits + r * V;
            int ignore = tg < 0 || (size_t)tg >= V;
            for (size_t v = threadIdx.x; v < V; v += blockDim.x) {
                float p = ignore ? 0.0f : g * expf(l[v] - lse);
                if (!ignore && v == (size_t)tg) p -= g;
                dl[v] = p;
            }
        }
        __syncthreads();   /* the shared row values are reused by the next row */
    }
}
void kcu_xent_fwd_bwd(kern_backend *be, float *loss, float *dlogits, const float *logits, const int32_t *targets,
                      const float *dloss, size_t N, size_t V) {
    (void)be;
    if (!N) return;
    GK_CHECK(V > 0, "kern_xent_fwd_bwd: V=0");
    unsigned grid = N < 65535 ? (unsigned)N : 65535u;
    KCU_LAUNCH(k_xent, grid, XENT_THREADS, loss, dlogits, logits, targets, dloss, N, V);
    CU_LAUNCHED();
}

/* ---------------------------------------------------------------- optimizer building blocks */

/* m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;  p -= lr ((m/bc1) / (sqrt(v/bc2) + eps) + wd p),  g = grad gscale */
static __global__ void k_adamw(float *p, const float *g, float *m, float *v, size_t n, float lr, float b1, float b2, float eps,
                        float wd, float bc1, float bc2, float gscale) {
    GSTRIDE_LOOP(i, n) {
        float gi = g[i] * gscale;
        float mi = b1 * m[i] + (1.0f - b1) * gi;
        float vi = b2 * v[i] + (1.0f - b2) * gi * gi;
        m[i] = mi;
        v[i] = vi;
        p[i] -= lr * ((mi / bc1) / (sqrtf(vi / bc2) + eps) + wd * p[i]);
    }
}
void kcu_adamw_raw(kern_backend *be, float *p, const float *g, float *m, float *v, size_t n, float lr, float b1,
                   float b2, float eps, float wd, float bc1, float bc2, float gscale) {
    (void)be;
    if (!n) return;
    KCU_LAUNCH(k_adamw, cu_grid(n, KCU_THREADS), KCU_THREADS, p, g, m, v, n, lr, b1, b2, eps, wd, bc1, bc2, gscale);
    CU_LAUNCHED();
}

/* sum x^2 in double: a fixed number of blocks (a function of n only) each reduce a grid-stride share, then one
 * thread adds the block sums in order: the same n gives the same bits on every run. */
#define SUMSQ_MAX_BLOCKS 1024
static __global__ void k_sumsq_partial(double *part, const float *x, size_t n) {
    __shared__ double sh[KCU_THREADS];
    double s = 0.0;
    GSTRIDE_LOOP(i, n) s += (double)x[i] * (double)x[i];
    sh[threadIdx.x] = s;
    __syncthreads();
    for (int o = KCU_THREADS / 2; o > 0; o >>= 1) {
        if ((int)threadIdx.x < o) sh[threadIdx.x] += sh[threadIdx.x + o];
        __syncthreads();
    }
    if (threadIdx.x == 0) part[blockIdx.x] = sh[0];
}
static __global__ void k_sumsq_final(double *part, unsigned nb) {
    if (threadIdx.x == 0 && blockIdx.x == 0) {
        double s = 0.0;
        for (unsigned k = 0; k < nb; k++) s += part[k];
        part[0] = s;
    }
}
double kcu_sumsq(kern_backend *be, const float *x, size_t n) {
    if (!n) return 0.0;
    unsigned nb = cu_grid(n, KCU_THREADS);
    if (nb > SUMSQ_MAX_BLOCKS) nb = SUMSQ_MAX_BLOCKS;
    double *part = (double *)kcu_scratch(be, 2, SUMSQ_MAX_BLOCKS * sizeof(double));
    KCU_LAUNCH(k_sumsq_partial, nb, KCU_THREADS, part, x, n);
    CU_LAUNCHED();
    KCU_LAUNCH(k_sumsq_final, 1, 32, part, nb);
    CU_LAUNCHED();
    double r = 0.0;
    CU_CHECK(cudaMemcpy(&r, part, sizeof r, cudaMemcpyDeviceToHost));
    return r;
}
