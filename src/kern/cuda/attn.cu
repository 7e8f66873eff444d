/* attn.cu: causal multi-head attention (forward, backward) and attention over the KV cache, for the CUDA backend.
 *
 * This is the straightforward version, written to be checked against the CPU reference first: one warp per
 * query row (forward, dq) or key row (dk, dv), the head's hs channels spread over the 32 lanes (hs <= 256,
 * up to 8 per lane, in registers), dot products by warp shuffles, an online softmax (running max m and sum l;
 * the accumulator rescaled when the max moves) so no T x T matrix is ever stored. saved = lse = m + log l per
 * (b, h, t): B*NH*T floats, as the cpu backend keeps. The backward recomputes P = exp(s - lse):
 *   D_t = dO_t . O_t;  dP = dO_t . v_j;  dS = P (dP - D_t);  dq_t += dS k_j / sqrt(hs);  dk_j += dS q_t / sqrt(hs);
 *   dv_j += P dO_t
 * dq by query rows, dk/dv by key rows: each warp owns the rows it writes, so no atomics and the result is
 * deterministic. It reads K and V from global memory (L2) once per query row: it is NOT a tiled flash kernel and
 * will be far slower than one (shared-memory tiles and tensor cores are the next step; docs/cuda.md).
 *
 * Status: compiled, never run on a GPU yet (docs/cuda.md). */
#include "kern/cuda/cuda_impl.h"
#include <math.h>

#define AT_MAXD 8                       /* channels per lane: hs <= 32 * AT_MAXD */
#define AT_WARPS (KCU_THREADS / 32)
#define WARP_ROW_LOOP(r, n) \
    for (size_t r = blockIdx.x * (size_t)AT_WARPS + threadIdx.x / 32; r < (n); r += (size_t)gridDim.x * AT_WARPS)

__device__ __forceinline__ float at_warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
/* a . b over one head, lanes striding hs; every lane gets the sum */
__device__ __forceinline__ float at_dot(const float (&a)[AT_MAXD], const float *b, int lane, int hs) {
    float s = 0.0f;
#pragma unroll
    for (int k = 0; k < AT_MAXD; k++) { int d = lane + 32 * k; if (d < hs) s += a[k] * b[d]; }
    return at_warp_sum(s);
}
__device__ __forceinline__ void at_load(float (&a)[AT_MAXD], const float *src, int lane, int hs) {
#pragma unroll
    for (int k = 0; k < AT_MAXD; k++) { int d = lane + 32 * k; a[k] = d < hs ? src[d] : 0.0f; }
}

static void check_heads(size_t C, size_t NH, const char *op) {
    GK_CHECK(NH > 0 && C % NH == 0, "%s: C=%zu not divisible by NH=%zu", op, C, NH);
    GK_CHECK(C / NH <= 32 * AT_MAXD, "%s: head size %zu > %d is not supported by the CUDA attention kernels", op,
             C / NH, 32 * AT_MAXD);
}

size_t kcu_attention_saved_floats(kern_backend *be, size_t B, size_t T, size_t C, size_t NH) {
    (void)be; (void)C;
    return B * NH * T;
}

/* row = (b*NH + h)*T + t: out_t = softmax(q_t K^T / sqrt(hs)) V over j <= t;  lse saved */
static __global__ void k_attn_fwd(float *out, float *lse, const float *qkv, size_t B, size_t T, size_t C, size_t NH) {
    int lane = threadIdx.x % 32, hs = (int)(C / NH);
    size_t C3 = 3 * C;
    float scale = 1.0f / sqrtf((float)hs);
    WARP_ROW_LOOP(row, B * NH * T) {
        size_t t = row % T, h = (row / T) % NH, b = row / (T * NH);
        float q[AT_MAXD], acc[AT_MAXD];
        at_load(q, qkv + (b * T + t) * C3 + h * hs, lane, hs);
#pragma unroll
        for (int k = 0; k < AT_MAXD; k++) acc[k] = 0.0f;
        float m = -INFINITY, l = 0.0f;
        for (size_t j = 0; j <= t; j++) {
            const float *kr = qkv + (b * T + j) * C3 + C + h * hs;
            const float *vr = kr + C;
            float s = at_dot(q, kr, lane, hs) * scale;
            float mn = fmaxf(m, s);
            float corr = expf(m - mn), p = expf(s - mn);   /* m = -inf on the first key: corr = 0 */
            l = l * corr + p;
#pragma unroll
            for (int k = 0; k < AT_MAXD; k++) { int d = lane + 32 * k; if (d < hs) acc[k] = acc[k] * corr + p * vr[d]; }
            m = mn;
        }
        float *o = out + (b * T + t) * C + h * hs;
#pragma unroll
        for (int k = 0; k < AT_MAXD; k++) { int d = lane + 32 * k; if (d < hs) o[d] = acc[k] / l; }
        if (lane == 0) lse[row] = m + logf(l);
    }
}
/* The tiled forward (flash-style, fp32, no tensor cores) for head sizes <= FT_HS: a block owns FT_BR = 32 query
 * rows of one (b, h) and walks the key tiles of FT_BC = 32 keys up to the diagonal, staging Q (pre-scaled by
 * 1/sqrt(hs)), K and V tiles in shared memory, so each key and value is read from global memory once per 32
 * query rows instead of once per row. Lane j of a warp scores key j of the tile against one query row (a dot
 * product from shared memory, no shuffles), the row's max and sum are warp reductions, and P V is accumulated
 * with P broadcast lane by lane; each warp owns 8 query rows (online softmax state and two output channels per
 * lane in registers). Same outputs and lse as k_attn_fwd, which remains for head sizes above FT_HS. */
#define FT_BR 32
#define FT_BC 32
#define FT_HS 64
#define FT_WARPS 4
#define FT_ROWS (FT_BR / FT_WARPS)
/* Stages keys and values of rows [t0, t0 + FT_BC) of head h of sequence b into shared tiles (row widths KW, VW:
 * FT_HS, or FT_HS + 1 where a lane reads its own row), zero past T and past hs. Every thread of the block takes part. */
template <int KW, int VW>
__device__ __forceinline__ void ft_stage_kv(float (*Ks)[KW], float (*Vs)[VW], const float *qkv, size_t b, size_t h,
                                            size_t t0, size_t T, size_t C, int hs) {
    for (int idx = threadIdx.x; idx < FT_BC * FT_HS; idx += blockDim.x) {
        int j = idx / FT_HS, d = idx % FT_HS;
        size_t t = t0 + (size_t)j;
        int ok = t < T && d < hs;
        Ks[j][d] = ok ? qkv[(b * T + t) * 3 * C + C + h * hs + d] : 0.0f;
        Vs[j][d] = ok ? qkv[(b * T + t) * 3 * C + 2 * C + h * hs + d] : 0.0f;
    }
}
static __global__ void k_attn_fwd_tiled(float *out, float *lse, const float *qkv, size_t B, size_t T, size_t C,
                                        size_t NH) {
    __shared__ float Qs[FT_BR][FT_HS];
    __shared__ float Ks[FT_BC][FT_HS + 1];   /* +1: lane j reading row j, channel d hits bank (j + d) % 32 */
    __shared__ float Vs[FT_BC][FT_HS];
    int lane = threadIdx.x % 32, warp = threadIdx.x / 32, hs = (int)(C / NH);
    size_t C3 = 3 * C, ntiles = (T + FT_BR - 1) / FT_BR;
    float scale = 1.0f / sqrtf((float)hs);
    for (size_t blk = blockIdx.x; blk < B * NH * ntiles; blk += gridDim.x) {
        size_t qt = blk % ntiles, h = (blk / ntiles) % NH, b = blk / (ntiles * NH), q0 = qt * FT_BR;
        for (int idx = threadIdx.x; idx < FT_BR * FT_HS; idx += blockDim.x) {
            int r = idx / FT_HS, d = idx % FT_HS;
            size_t t = q0 + (size_t)r;
            Qs[r][d] = (t < T && d < hs) ? qkv[(b * T + t) * C3 + h * hs + d] * scale : 0.0f;
        }
        float m[FT_ROWS], l[FT_ROWS], acc0[FT_ROWS], acc1[FT_ROWS];
#pragma unroll
        for (int i = 0; i < FT_ROWS; i++) { m[i] = -INFINITY; l[i] = 0.0f; acc0[i] = 0.0f; acc1[i] = 0.0f; }
        for (size_t kt = 0; kt <= qt; kt++) {
            size_t k0 = kt * FT_BC;
            __syncthreads();   /* Q is loaded; everyone is done with the previous K/V tile */
            ft_stage_kv(Ks, Vs, qkv, b, h, k0, T, C, hs);
            __syncthreads();
#pragma unroll
            for (int i = 0; i < FT_ROWS; i++) {
                int r = warp * FT_ROWS + i;
                size_t t = q0 + (size_t)r;
                if (t >= T) continue;                      /* warp-uniform */
                size_t key = k0 + (size_t)lane;
                float sc = 0.0f;
#pragma unroll 16
                for (int d = 0; d < FT_HS; d++) sc += Qs[r][d] * Ks[lane][d];
                if (key > t) sc = -INFINITY;               /* causal mask (also covers keys past T: t < T) */
                float mt = sc;
                for (int o = 16; o > 0; o >>= 1) mt = fmaxf(mt, __shfl_xor_sync(0xffffffffu, mt, o));
                float mn = fmaxf(m[i], mt);                /* finite: key k0 <= q0 <= t is never masked */
                float p = expf(sc - mn), corr = expf(m[i] - mn);
                l[i] = l[i] * corr + at_warp_sum(p);
                float a0 = acc0[i] * corr, a1 = acc1[i] * corr;
                for (int j = 0; j < FT_BC; j++) {
                    float pj = __shfl_sync(0xffffffffu, p, j);
                    a0 += pj * Vs[j][lane];
                    a1 += pj * Vs[j][lane + 32];
                }
                acc0[i] = a0; acc1[i] = a1; m[i] = mn;
            }
        }
#pragma unroll
        for (int i = 0; i < FT_ROWS; i++) {
            size_t t = q0 + (size_t)(warp * FT_ROWS + i);
            if (t >= T) continue;
            float *o = out + (b * T + t) * C + h * hs;
            if (lane < hs) o[lane] = acc0[i] / l[i];
            if (lane + 32 < hs) o[lane + 32] = acc1[i] / l[i];
            if (lane == 0) lse[(b * NH + h) * T + t] = m[i] + logf(l[i]);
        }
        __syncthreads();   /* Qs is reloaded for the next block index */
    }
}

void kcu_attention_fwd(kern_backend *be, float *out, float *saved, const float *qkv, size_t B, size_t T, size_t C,
                       size_t NH) {
    (void)be;
    check_heads(C, NH, "kern_attention_fwd");
    size_t rows = B * NH * T;
    if (!rows) return;
    if (C / NH <= FT_HS) {
        size_t blocks = B * NH * ((T + FT_BR - 1) / FT_BR);
        KCU_LAUNCH(k_attn_fwd_tiled, cu_grid(blocks, 1), FT_WARPS * 32, out, saved, qkv, B, T, C, NH);
    } else {
        KCU_LAUNCH(k_attn_fwd, cu_grid(rows, AT_WARPS), KCU_THREADS, out, saved, qkv, B, T, C, NH);
    }
    CU_LAUNCHED();
}

/* D[row] = dO_t . O_t */
static __global__ void k_attn_bwd_D(float *D, const float *dout, const float *out, size_t B, size_t T, size_t C, size_t NH) {
    int lane = threadIdx.x % 32, hs = (int)(C / NH);
    WARP_ROW_LOOP(row, B * NH * T) {
        size_t t = row % T, h = (row / T) % NH, b = row / (T * NH);
        const float *go = dout + (b * T + t) * C + h * hs, *o = out + (b * T + t) * C + h * hs;
        float s = 0.0f;
        for (int d = lane; d < hs; d += 32) s += go[d] * o[d];
        s = at_warp_sum(s);
        if (lane == 0) D[row] = s;
    }
}
/* dq_t += (1/sqrt(hs)) sum_{j<=t} P (dO_t . v_j - D_t) k_j */
static __global__ void k_attn_bwd_dq(float *dqkv, const float *dout, const float *qkv, const float *lse, const float *D,
                              size_t B, size_t T, size_t C, size_t NH) {
    int lane = threadIdx.x % 32, hs = (int)(C / NH);
    size_t C3 = 3 * C;
    float scale = 1.0f / sqrtf((float)hs);
    WARP_ROW_LOOP(row, B * NH * T) {
        size_t t = row % T, h = (row / T) % NH, b = row / (T * NH);
        float q[AT_MAXD], go[AT_MAXD], dq[AT_MAXD];
        at_load(q, qkv + (b * T + t) * C3 + h * hs, lane, hs);
        at_load(go, dout + (b * T + t) * C + h * hs, lane, hs);
#pragma unroll
        for (int k = 0; k < AT_MAXD; k++) dq[k] = 0.0f;
        float L = lse[row], Dt = D[row];
        for (size_t j = 0; j <= t; j++) {
            const float *kr = qkv + (b * T + j) * C3 + C + h * hs, *vr = kr + C;
            float p = expf(at_dot(q, kr, lane, hs) * scale - L);
            float ds = p * (at_dot(go, vr, lane, hs) - Dt);
#pragma unroll
            for (int k = 0; k < AT_MAXD; k++) { int d = lane + 32 * k; if (d < hs) dq[k] += ds * kr[d]; }
        }
        float *dst = dqkv + (b * T + t) * C3 + h * hs;
#pragma unroll
        for (int k = 0; k < AT_MAXD; k++) { int d = lane + 32 * k; if (d < hs) dst[d] += dq[k] * scale; }
    }
}
/* for key row j: dv_j += sum_{t>=j} P dO_t;  dk_j += (1/sqrt(hs)) sum_{t>=j} P (dO_t . v_j - D_t) q_t */
static __global__ void k_attn_bwd_dkv(float *dqkv, const float *dout, const float *qkv, const float *lse, const float *D,
                               size_t B, size_t T, size_t C, size_t NH) {
    int lane = threadIdx.x % 32, hs = (int)(C / NH);
    size_t C3 = 3 * C;
    float scale = 1.0f / sqrtf((float)hs);
    WARP_ROW_LOOP(row, B * NH * T) {
        size_t j = row % T, h = (row / T) % NH, b = row / (T * NH);
        float kk[AT_MAXD], vv[AT_MAXD], dk[AT_MAXD], dv[AT_MAXD];
        at_load(kk, qkv + (b * T + j) * C3 + C + h * hs, lane, hs);
        at_load(vv, qkv + (b * T + j) * C3 + 2 * C + h * hs, lane, hs);
#pragma unroll
        for (int k = 0; k < AT_MAXD; k++) { dk[k] = 0.0f; dv[k] = 0.0f; }
        size_t base = (b * NH + h) * T;
        for (size_t t = j; t < T; t++) {
            const float *qr = qkv + (b * T + t) * C3 + h * hs, *gr = dout + (b * T + t) * C + h * hs;
            float p = expf(at_dot(kk, qr, lane, hs) * scale - lse[base + t]);
            float ds = p * (at_dot(vv, gr, lane, hs) - D[base + t]);
#pragma unroll
            for (int k = 0; k < AT_MAXD; k++) {
                int d = lane + 32 * k;
                if (d < hs) { dv[k] += p * gr[d]; dk[k] += ds * qr[d]; }
            }
        }
        float *dkr = dqkv + (b * T + j) * C3 + C + h * hs, *dvr = dkr + C;
#pragma unroll
        for (int k = 0; k < AT_MAXD; k++) {
            int d = lane + 32 * k;
            if (d < hs) { dkr[d] += dk[k] * scale; dvr[d] += dv[k]; }
        }
    }
}
/* The tiled backward for head sizes <= FT_HS, the same structure as the tiled forward, in two kernels that each
 * own the rows they write (no atomics, deterministic):
 *   dq: a block owns 32 query rows (Q pre-scaled and dO staged), walks the key tiles up to the diagonal; lane j:
 *       P = exp(q.k_j - lse), dP = dO.v_j, dS = P (dP - D); dq += dS k_j (dS broadcast lane by lane), scaled once.
 *   dkv: a block owns 32 keys (K and V staged), walks the query tiles from the diagonal down; lane t (a query
 *       row of the tile): the same P and dS; dv_j += P dO_t, dk_j += dS q_t (P, dS broadcast lane by lane).
 * Rows are padded (FT_HS + 1) where a lane reads its own row, so those reads hit distinct banks. */
static __global__ void k_attn_bwd_dq_tiled(float *dqkv, const float *dout, const float *qkv, const float *lse,
                                           const float *D, size_t B, size_t T, size_t C, size_t NH) {
    __shared__ float Qs[FT_BR][FT_HS], Gs[FT_BR][FT_HS];           /* q (scaled), dO of the block's rows */
    __shared__ float Ks[FT_BC][FT_HS + 1], Vs[FT_BC][FT_HS + 1];
    int lane = threadIdx.x % 32, warp = threadIdx.x / 32, hs = (int)(C / NH);
    size_t C3 = 3 * C, ntiles = (T + FT_BR - 1) / FT_BR;
    float scale = 1.0f / sqrtf((float)hs);
    for (size_t blk = blockIdx.x; blk < B * NH * ntiles; blk += gridDim.x) {
        size_t qt = blk % ntiles, h = (blk / ntiles) % NH, b = blk / (ntiles * NH), q0 = qt * FT_BR;
        for (int idx = threadIdx.x; idx < FT_BR * FT_HS; idx += blockDim.x) {
            int r = idx / FT_HS, d = idx % FT_HS;
            size_t t = q0 + (size_t)r;
            int ok = t < T && d < hs;
            Qs[r][d] = ok ? qkv[(b * T + t) * C3 + h * hs + d] * scale : 0.0f;
            Gs[r][d] = ok ? dout[(b * T + t) * C + h * hs + d] : 0.0f;
        }
        float dq0[FT_ROWS], dq1[FT_ROWS];
#pragma unroll
        for (int i = 0; i < FT_ROWS; i++) { dq0[i] = 0.0f; dq1[i] = 0.0f; }
        for (size_t kt = 0; kt <= qt; kt++) {
            size_t k0 = kt * FT_BC;
            __syncthreads();
            ft_stage_kv(Ks, Vs, qkv, b, h, k0, T, C, hs);
            __syncthreads();
#pragma unroll
            for (int i = 0; i < FT_ROWS; i++) {
                int r = warp * FT_ROWS + i;
                size_t t = q0 + (size_t)r;
                if (t >= T) continue;                      /* warp-uniform */
                size_t row = (b * NH + h) * T + t;
                float sc = 0.0f, dp = 0.0f;
#pragma unroll 16
                for (int d = 0; d < FT_HS; d++) { sc += Qs[r][d] * Ks[lane][d]; dp += Gs[r][d] * Vs[lane][d]; }
                float p = (k0 + (size_t)lane > t) ? 0.0f : expf(sc - lse[row]);
                float ds = p * (dp - D[row]);
                float a0 = dq0[i], a1 = dq1[i];
                for (int j = 0; j < FT_BC; j++) {
                    float dsj = __shfl_sync(0xffffffffu, ds, j);
                    a0 += dsj * Ks[j][lane];
                    a1 += dsj * Ks[j][lane + 32];
                }
                dq0[i] = a0; dq1[i] = a1;
            }
        }
#pragma unroll
        for (int i = 0; i < FT_ROWS; i++) {
            size_t t = q0 + (size_t)(warp * FT_ROWS + i);
            if (t >= T) continue;
            float *dq = dqkv + (b * T + t) * C3 + h * hs;
            if (lane < hs) dq[lane] += dq0[i] * scale;
            if (lane + 32 < hs) dq[lane + 32] += dq1[i] * scale;
        }
        __syncthreads();
    }
}
static __global__ void k_attn_bwd_dkv_tiled(float *dqkv, const float *dout, const float *qkv, const float *lse,
                                            const float *D, size_t B, size_t T, size_t C, size_t NH) {
    __shared__ float Ks[FT_BC][FT_HS], Vs[FT_BC][FT_HS];           /* the block's keys and values */
    __shared__ float Qs[FT_BR][FT_HS + 1], Gs[FT_BR][FT_HS + 1];   /* a query tile (q scaled), its dO */
    __shared__ float Ls[FT_BR], Ds[FT_BR];
    int lane = threadIdx.x % 32, warp = threadIdx.x / 32, hs = (int)(C / NH);
    size_t C3 = 3 * C, ntiles = (T + FT_BC - 1) / FT_BC;
    float scale = 1.0f / sqrtf((float)hs);
    for (size_t blk = blockIdx.x; blk < B * NH * ntiles; blk += gridDim.x) {
        size_t kt = blk % ntiles, h = (blk / ntiles) % NH, b = blk / (ntiles * NH), k0 = kt * FT_BC;
        ft_stage_kv(Ks, Vs, qkv, b, h, k0, T, C, hs);
        float dk0[FT_ROWS], dk1[FT_ROWS], dv0[FT_ROWS], dv1[FT_ROWS];
#pragma unroll
        for (int i = 0; i < FT_ROWS; i++) { dk0[i] = 0.0f; dk1[i] = 0.0f; dv0[i] = 0.0f; dv1[i] = 0.0f; }
        for (size_t qt = kt; qt < ntiles; qt++) {
            size_t q0 = qt * FT_BR;
            __syncthreads();
            for (int idx = threadIdx.x; idx < FT_BR * FT_HS; idx += blockDim.x) {
                int r = idx / FT_HS, d = idx % FT_HS;
                size_t t = q0 + (size_t)r;
                int ok = t < T && d < hs;
                Qs[r][d] = ok ? qkv[(b * T + t) * C3 + h * hs + d] * scale : 0.0f;
                Gs[r][d] = ok ? dout[(b * T + t) * C + h * hs + d] : 0.0f;
            }
            for (int r = threadIdx.x; r < FT_BR; r += blockDim.x) {
                size_t t = q0 + (size_t)r;
                Ls[r] = t < T ? lse[(b * NH + h) * T + t] : 0.0f;
                Ds[r] = t < T ? D[(b * NH + h) * T + t] : 0.0f;
            }
            __syncthreads();
#pragma unroll
            for (int i = 0; i < FT_ROWS; i++) {
                int j = warp * FT_ROWS + i;
                size_t key = k0 + (size_t)j, t = q0 + (size_t)lane;
                if (key >= T) continue;                    /* warp-uniform */
                float sc = 0.0f, dp = 0.0f;
#pragma unroll 16
                for (int d = 0; d < FT_HS; d++) { sc += Qs[lane][d] * Ks[j][d]; dp += Gs[lane][d] * Vs[j][d]; }
                float p = (t >= T || key > t) ? 0.0f : expf(sc - Ls[lane]);
                float ds = p * (dp - Ds[lane]);
                float k_0 = dk0[i], k_1 = dk1[i], v_0 = dv0[i], v_1 = dv1[i];
                for (int r = 0; r < FT_BR; r++) {
                    float pr = __shfl_sync(0xffffffffu, p, r), dsr = __shfl_sync(0xffffffffu, ds, r);
                    v_0 += pr * Gs[r][lane];
                    v_1 += pr * Gs[r][lane + 32];
                    k_0 += dsr * Qs[r][lane];
                    k_1 += dsr * Qs[r][lane + 32];
                }
                dk0[i] = k_0; dk1[i] = k_1; dv0[i] = v_0; dv1[i] = v_1;
            }
        }
#pragma unroll
        for (int i = 0; i < FT_ROWS; i++) {
            size_t key = k0 + (size_t)(warp * FT_ROWS + i);
            if (key >= T) continue;
            float *dk = dqkv + (b * T + key) * C3 + C + h * hs, *dv = dk + C;
            if (lane < hs) { dk[lane] += dk0[i]; dv[lane] += dv0[i]; }   /* q was pre-scaled: dk needs no scale */
            if (lane + 32 < hs) { dk[lane + 32] += dk1[i]; dv[lane + 32] += dv1[i]; }
        }
        __syncthreads();
    }
}

void kcu_attention_bwd(kern_backend *be, float *dqkv, const float *dout, const float *qkv, const float *out,
                       const float *saved, size_t B, size_t T, size_t C, size_t NH) {
    if (!dqkv) return;
    check_heads(C, NH, "kern_attention_bwd");
    size_t rows = B * NH * T;
    if (!rows) return;
    float *D = (float *)kcu_scratch(be, 0, rows * sizeof(float));
    unsigned g = cu_grid(rows, AT_WARPS);
    KCU_LAUNCH(k_attn_bwd_D, g, KCU_THREADS, D, dout, out, B, T, C, NH);
    CU_LAUNCHED();
    if (C / NH <= FT_HS) {
        unsigned gt = cu_grid(B * NH * ((T + FT_BR - 1) / FT_BR), 1);
        KCU_LAUNCH(k_attn_bwd_dq_tiled, gt, FT_WARPS * 32, dqkv, dout, qkv, saved, D, B, T, C, NH);
        CU_LAUNCHED();
        KCU_LAUNCH(k_attn_bwd_dkv_tiled, gt, FT_WARPS * 32, dqkv, dout, qkv, saved, D, B, T, C, NH);
        CU_LAUNCHED();
        return;
    }
    KCU_LAUNCH(k_attn_bwd_dq, g, KCU_THREADS, dqkv, dout, qkv, saved, D, B, T, C, NH);
    CU_LAUNCHED();
    KCU_LAUNCH(k_attn_bwd_dkv, g, KCU_THREADS, dqkv, dout, qkv, saved, D, B, T, C, NH);
    CU_LAUNCHED();
}

/* ---------------------------------------------------------------- attention over the KV cache */

/* Writes the new keys/values of qkv [B, n, (NH + 2 NKV) hs] into rows pos[b] .. pos[b]+n-1 of slot slot[b]:
 * kc, vc [S, NKV, maxT, hs]. Rows past maxT are dropped (the model checks pos + n <= maxT before calling). */
static __global__ void k_cache_put(float *kc, float *vc, const float *qkv, const int32_t *slot, const int32_t *pos, size_t B,
                            size_t n, size_t C, size_t NH, size_t NKV, size_t maxT) {
    size_t hs = C / NH, KW = NKV * hs, W = C + 2 * KW;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < B * n * KW; i += (size_t)gridDim.x * blockDim.x) {
        size_t c = i % KW, bi = i / KW, b = bi / n, r = bi % n, g = c / hs, d = c % hs;
        if (slot[b] < 0 || pos[b] < 0) continue;
        size_t s = (size_t)slot[b], p = (size_t)pos[b] + r;
        if (p >= maxT) continue;
        const float *row = qkv + bi * W;
        kc[((s * NKV + g) * maxT + p) * hs + d] = row[C + c];
        vc[((s * NKV + g) * maxT + p) * hs + d] = row[C + KW + c];
    }
}
/* one warp per (b, new row i, head h): out = softmax(q K[0..pos+i]^T / sqrt(hs)) V over the slot's cache, K and
 * V those of key/value head h / (NH/NKV) */
static __global__ void k_cache_attn(float *out, const float *kc, const float *vc, const float *qkv, const int32_t *slot,
                             const int32_t *pos, size_t B, size_t n, size_t C, size_t NH, size_t NKV, size_t maxT) {
    int lane = threadIdx.x % 32, hs = (int)(C / NH);
    size_t W = C + 2 * NKV * (size_t)hs, g0 = NH / NKV;
    float scale = 1.0f / sqrtf((float)hs);
    WARP_ROW_LOOP(row, B * n * NH) {
        size_t h = row % NH, bi = row / NH, b = bi / n, i = bi % n;
        float *o = out + bi * C + h * hs;
        if (slot[b] < 0 || pos[b] < 0 || (size_t)pos[b] + i >= maxT) {   /* out of contract: zeros, no fault */
            for (int d = lane; d < hs; d += 32) o[d] = 0.0f;
            continue;
        }
        size_t s = (size_t)slot[b], len = (size_t)pos[b] + i + 1;
        const float *K = kc + (s * NKV + h / g0) * maxT * hs, *V = vc + (s * NKV + h / g0) * maxT * hs;
        float q[AT_MAXD], acc[AT_MAXD];
        at_load(q, qkv + bi * W + h * hs, lane, hs);
#pragma unroll
        for (int k = 0; k < AT_MAXD; k++) acc[k] = 0.0f;
        float m = -INFINITY, l = 0.0f;
        for (size_t j = 0; j < len; j++) {
            float sc = at_dot(q, K + j * hs, lane, hs) * scale;
            float mn = fmaxf(m, sc), corr = expf(m - mn), p = expf(sc - mn);
            l = l * corr + p;
#pragma unroll
            for (int k = 0; k < AT_MAXD; k++) { int d = lane + 32 * k; if (d < hs) acc[k] = acc[k] * corr + p * V[j * hs + d]; }
            m = mn;
        }
#pragma unroll
        for (int k = 0; k < AT_MAXD; k++) { int d = lane + 32 * k; if (d < hs) o[d] = acc[k] / l; }
    }
}
void kcu_attn_cache_fwd(kern_backend *be, float *out, float *kc, float *vc, const float *qkv, const int32_t *slot,
                        const int32_t *pos, size_t B, size_t n, size_t C, size_t NH, size_t NKV, size_t maxT) {
    (void)be;
    check_heads(C, NH, "kern_attn_cache_fwd");
    GK_CHECK(NKV >= 1 && NH % NKV == 0, "kern_attn_cache_fwd: NKV=%zu does not divide NH=%zu", NKV, NH);
    if (!B || !n) return;
    KCU_LAUNCH(k_cache_put, cu_grid(B * n * NKV * (C / NH), KCU_THREADS), KCU_THREADS, kc, vc, qkv, slot, pos, B, n, C, NH,
               NKV, maxT);
    CU_LAUNCHED();
    KCU_LAUNCH(k_cache_attn, cu_grid(B * n * NH, AT_WARPS), KCU_THREADS, out, kc, vc, qkv, slot, pos, B, n, C, NH, NKV, maxT);
    CU_LAUNCHED();
}
