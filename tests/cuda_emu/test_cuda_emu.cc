/* test_cuda_emu: the CUDA backend's kernels (src/kern/cuda/ops.cu, attn.cu) compiled as C++ and run on the CPU
 * under emu.h's emulation of CUDA's execution model, against the fp32 CPU reference on awkward sizes: embedding,
 * LayerNorm, RMSNorm, GELU, SwiGLU, add/axpy/scale, rotary, GQA expansion, cross-entropy (in place too), AdamW,
 * sum of squares, attention forward/backward and the KV-cache attention. Gradients are pre-filled with noise
 * (so "+=" is checked) and NULL gradients skipped. The matmuls (matmul.cu) run with a plain column-major GEMM
 * standing in for cuBLASLt (kcu_gemm below): that checks their calls and the row-major -> column-major mapping
 * (kcu_lt_map), not cuBLASLt itself. Not covered: backend.cu (the cuBLASLt call, bf16 rounding, memory). Runs everywhere a C++ compiler is (no nvcc, no GPU): it tests the kernels' logic, not the GPU
 * (emu.h lists what the emulation cannot show). Tolerances: as tests/test_cuda.c (normwise 1e-5). */
#include "kern/cuda/cuda_impl.h"
extern "C" {
#include "testlib.h"
#include "kern/cpu/cpu.h"
#include "model/model.h"
#include "train/train.h"
#include "optim/optim.h"
#include "infer/infer.h"
}
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <vector>

/* the emulated backend's scratch: host memory */
void *kcu_scratch(kern_backend *be, int i, size_t bytes) {
    (void)be;
    static std::vector<char> bufs[3];
    if (bufs[i].size() < bytes + 64) bufs[i].resize(bytes + 64);
    return bufs[i].data();
}

/* cuBLASLt stand-in: what cublasLtMatmul computes from the column-major description backend.cu builds with
 * kcu_lt_map (first operand B, second A; D = op1 op2 + beta D (+ bias[i] per row i of D with the BIAS epilogue)),
 * written from cuBLASLt's documented semantics, so matmul.cu's calls and the mapping are checked together. A
 * description cuBLASLt would reject (stored shape not matching op, ld < rows) fails the test. */
static int g_gemm_bad;
void kcu_gemm(kern_backend *be, int ta, int tb, size_t M, size_t N, size_t K, const float *A, size_t lda,
              const float *B, size_t ldb, const float *bias, int acc, float *C, size_t ldc) {
    (void)be;
    kcu_lt_shape s = kcu_lt_map(ta, tb, M, N, K, lda, ldb, ldc);
    const float *P1 = B, *P2 = A;
    uint64_t m = s.m, n = s.n, k = s.k;
    int ok = (s.t1 ? (s.rows1 == k && s.cols1 == m) : (s.rows1 == m && s.cols1 == k)) &&
             (s.t2 ? (s.rows2 == n && s.cols2 == k) : (s.rows2 == k && s.cols2 == n)) &&
             s.ld1 >= (int64_t)s.rows1 && s.ld2 >= (int64_t)s.rows2 && s.ldd >= (int64_t)m;
    if (!ok) { g_gemm_bad++; return; }
    for (uint64_t j = 0; j < n; j++)
        for (uint64_t i = 0; i < m; i++) {
            double acc_v = 0;
            for (uint64_t l = 0; l < k; l++) {
                float a = s.t1 ? P1[l + i * s.ld1] : P1[i + l * s.ld1];
                float b = s.t2 ? P2[j + l * s.ld2] : P2[l + j * s.ld2];
                acc_v += (double)a * b;
            }
            float *d = &C[i + j * s.ldd];
            *d = (float)acc_v + (acc ? *d : 0.0f) + (bias && !acc ? bias[i] : 0.0f);
        }
}

static gk_rng g_rng;
static kern_backend *g_ref;
#define EB ((kern_backend *)NULL)   /* the emulated ops ignore their backend */

static std::vector<float> rnd(size_t n, float s) {
    std::vector<float> v(n ? n : 1);
    for (size_t i = 0; i < n; i++) v[i] = s * gk_rng_normal(&g_rng);
    return v;
}
static double amax(const float *x, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) m = fabs(x[i]) > m ? fabs(x[i]) : m;
    return m;
}
static void cmp(const char *file, int line, const char *what, const std::vector<float> &got,
                const std::vector<float> &want, size_t n, double tol) {
    double sc = amax(want.data(), n);
    tl_check_arrays(file, line, what, got.data(), want.data(), n, tol * (sc > 1 ? sc : 1), 0);
}
#define CMP(what, got, want, n, tol) cmp(__FILE__, __LINE__, what, got, want, n, tol)

static void test_emu_embed(void) {
    size_t B = 3, T = 7, C = 37, V = 11, maxT = 20, pos0 = 5;
    std::vector<int32_t> tok(B * T);
    for (auto &t : tok) t = (int32_t)gk_rng_below(&g_rng, 4);
    auto wte = rnd(V * C, 1), wpe = rnd(maxT * C, 1), dout = rnd(B * T * C, 1), dwte = rnd(V * C, 1), dwpe = rnd(maxT * C, 1);
    auto dwte2 = dwte, dwpe2 = dwpe;
    std::vector<float> o1(B * T * C), o2(B * T * C);
    for (int pe = 0; pe < 2; pe++) {
        kern_embed_fwd(g_ref, o1.data(), tok.data(), wte.data(), pe ? wpe.data() : NULL, B, T, C, pos0);
        kcu_embed_fwd(EB, o2.data(), tok.data(), wte.data(), pe ? wpe.data() : NULL, B, T, C, pos0);
        CMP("embed_fwd", o2, o1, B * T * C, 0);
    }
    kern_embed_bwd(g_ref, dwte.data(), dwpe.data(), dout.data(), tok.data(), B, T, C, pos0);
    kcu_embed_bwd(EB, dwte2.data(), dwpe2.data(), dout.data(), tok.data(), B, T, C, pos0);
    CMP("embed_bwd dwte", dwte2, dwte, V * C, 1e-5);
    CMP("embed_bwd dwpe", dwpe2, dwpe, maxT * C, 1e-5);
    kcu_embed_bwd(EB, NULL, dwpe2.data(), dout.data(), tok.data(), B, T, C, pos0);
    kern_embed_bwd(g_ref, NULL, dwpe.data(), dout.data(), tok.data(), B, T, C, pos0);
    CMP("embed_bwd dwpe (dwte NULL)", dwpe2, dwpe, maxT * C, 1e-5);
}

static void test_emu_layernorm(void) {
    size_t sizes[][2] = { {1, 7}, {37, 77}, {300, 131}, {5, 1029} };
    for (auto &sz : sizes) {
        size_t N = sz[0], C = sz[1];
        auto x = rnd(N * C, 2), w = rnd(C, 1), b = rnd(C, 1), dout = rnd(N * C, 1);
        auto dx = rnd(N * C, 1), dw = rnd(C, 1), db = rnd(C, 1);
        auto dx2 = dx, dw2 = dw, db2 = db;
        std::vector<float> o1(N * C), m1(N), r1(N), o2(N * C), m2(N), r2(N);
        kern_layernorm_fwd(g_ref, o1.data(), m1.data(), r1.data(), x.data(), w.data(), b.data(), N, C, 1e-5f);
        kcu_layernorm_fwd(EB, o2.data(), m2.data(), r2.data(), x.data(), w.data(), b.data(), N, C, 1e-5f);
        CMP("layernorm out", o2, o1, N * C, 1e-5);
        CMP("layernorm mean", m2, m1, N, 1e-5);
        CMP("layernorm rstd", r2, r1, N, 1e-5);
        kern_layernorm_bwd(g_ref, dx.data(), dw.data(), db.data(), dout.data(), x.data(), w.data(), m1.data(), r1.data(), N, C);
        kcu_layernorm_bwd(EB, dx2.data(), dw2.data(), db2.data(), dout.data(), x.data(), w.data(), m1.data(), r1.data(), N, C);
        CMP("layernorm dx", dx2, dx, N * C, 1e-5);
        CMP("layernorm dw", dw2, dw, C, 1e-5 * sqrt((double)N));
        CMP("layernorm db", db2, db, C, 1e-5 * sqrt((double)N));
        kern_layernorm_bwd(g_ref, NULL, NULL, db.data(), dout.data(), x.data(), w.data(), m1.data(), r1.data(), N, C);
        kcu_layernorm_bwd(EB, NULL, NULL, db2.data(), dout.data(), x.data(), w.data(), m1.data(), r1.data(), N, C);
        CMP("layernorm db only", db2, db, C, 1e-5 * sqrt((double)N));
        CMP("layernorm dx untouched", dx2, dx, N * C, 1e-5);
    }
}

static void test_emu_rmsnorm(void) {
    size_t N = 41, C = 93;
    auto x = rnd(N * C, 2), w = rnd(C, 1), dout = rnd(N * C, 1), dx = rnd(N * C, 1), dw = rnd(C, 1);
    auto dx2 = dx, dw2 = dw;
    std::vector<float> o1(N * C), r1(N), o2(N * C), r2(N);
    kern_rmsnorm_fwd(g_ref, o1.data(), r1.data(), x.data(), w.data(), N, C, 1e-6f);
    kcu_rmsnorm_fwd(EB, o2.data(), r2.data(), x.data(), w.data(), N, C, 1e-6f);
    CMP("rmsnorm out", o2, o1, N * C, 1e-5);
    CMP("rmsnorm rstd", r2, r1, N, 1e-5);
    kern_rmsnorm_bwd(g_ref, dx.data(), dw.data(), dout.data(), x.data(), w.data(), r1.data(), N, C);
    kcu_rmsnorm_bwd(EB, dx2.data(), dw2.data(), dout.data(), x.data(), w.data(), r1.data(), N, C);
    CMP("rmsnorm dx", dx2, dx, N * C, 1e-5);
    CMP("rmsnorm dw", dw2, dw, C, 1e-5 * sqrt((double)N));
}

static void test_emu_elementwise(void) {
    size_t n = 5003;
    auto a = rnd(n, 2), b = rnd(n, 1), d = rnd(n, 1), du = rnd(n, 1);
    auto d2 = d, du2 = du;
    std::vector<float> o1(n), o2(n);
    kern_gelu_fwd(g_ref, o1.data(), a.data(), n); kcu_gelu_fwd(EB, o2.data(), a.data(), n); CMP("gelu_fwd", o2, o1, n, 1e-6);
    kern_gelu_bwd(g_ref, d.data(), a.data(), b.data(), n); kcu_gelu_bwd(EB, d2.data(), a.data(), b.data(), n);
    CMP("gelu_bwd", d2, d, n, 1e-6);
    kern_swiglu_fwd(g_ref, o1.data(), a.data(), b.data(), n); kcu_swiglu_fwd(EB, o2.data(), a.data(), b.data(), n);
    CMP("swiglu_fwd", o2, o1, n, 1e-6);
    kern_swiglu_bwd(g_ref, d.data(), du.data(), o1.data(), a.data(), b.data(), n);
    kcu_swiglu_bwd(EB, d2.data(), du2.data(), o1.data(), a.data(), b.data(), n);
    CMP("swiglu_bwd dgate", d2, d, n, 1e-6);
    CMP("swiglu_bwd dup", du2, du, n, 1e-6);
    kern_add(g_ref, o1.data(), a.data(), b.data(), n); kcu_add(EB, o2.data(), a.data(), b.data(), n); CMP("add", o2, o1, n, 0);
    kern_axpy(g_ref, o1.data(), -0.3f, a.data(), n); kcu_axpy(EB, o2.data(), -0.3f, a.data(), n); CMP("axpy", o2, o1, n, 0);
    kern_scale(g_ref, o1.data(), 1.7f, n); kcu_scale(EB, o2.data(), 1.7f, n); CMP("scale", o2, o1, n, 0);
    double s1 = kern_sumsq(g_ref, a.data(), n), s2 = kcu_sumsq(EB, a.data(), n);
    CHECK_CLOSE(s2, s1, 0, 1e-12, "sumsq");
    auto big = rnd(300007, 1);   /* more blocks than the partial sums' cap: grid-stride inside */
    CHECK_CLOSE(kcu_sumsq(EB, big.data(), 300007), kern_sumsq(g_ref, big.data(), 300007), 0, 1e-12, "sumsq (large)");
}

static void test_emu_rope_kv(void) {
    size_t R = 13, NH = 6, NKV = 2, hs = 8, W = (NH + 2 * NKV) * hs, C = NH * hs;
    std::vector<int32_t> pos(R);
    for (size_t r = 0; r < R; r++) pos[r] = (int32_t)(r * 37 % 500);
    std::vector<float> inv(hs / 2);
    for (size_t d = 0; d < hs / 2; d++) inv[d] = powf(10000.0f, -2.0f * (float)d / (float)hs);
    auto x = rnd(R * W, 1);
    auto x2 = x;
    for (int inverse = 0; inverse < 2; inverse++) {
        kern_rope(g_ref, x.data(), pos.data(), inv.data(), R, W, NH + NKV, hs, inverse);
        kcu_rope(EB, x2.data(), pos.data(), inv.data(), R, W, NH + NKV, hs, inverse);
        CMP(inverse ? "rope inverse" : "rope", x2, x, R * W, 1e-5);
    }
    std::vector<float> o1(R * 3 * C), o2(R * 3 * C);
    kern_kv_expand_fwd(g_ref, o1.data(), x.data(), R, NH, NKV, hs);
    kcu_kv_expand_fwd(EB, o2.data(), x.data(), R, NH, NKV, hs);
    CMP("kv_expand_fwd", o2, o1, R * 3 * C, 0);
    auto g = rnd(R * 3 * C, 1), dq = rnd(R * W, 1);
    auto dq2 = dq;
    kern_kv_expand_bwd(g_ref, dq.data(), g.data(), R, NH, NKV, hs);
    kcu_kv_expand_bwd(EB, dq2.data(), g.data(), R, NH, NKV, hs);
    CMP("kv_expand_bwd", dq2, dq, R * W, 1e-6);
}

static void xent_case(size_t N, size_t V) {
    auto l = rnd(N * V, 3), dloss = rnd(N, 1);
    std::vector<int32_t> tg(N);
    for (size_t i = 0; i < N; i++) tg[i] = i % 5 == 3 ? -1 : (int32_t)gk_rng_below(&g_rng, (uint32_t)V);
    std::vector<float> L1(N), L2(N), d1(N * V), d2(N * V);
    kern_xent_fwd_bwd(g_ref, L1.data(), d1.data(), l.data(), tg.data(), dloss.data(), N, V);
    kcu_xent_fwd_bwd(EB, L2.data(), d2.data(), l.data(), tg.data(), dloss.data(), N, V);
    CMP("xent loss", L2, L1, N, 1e-5);
    CMP("xent dlogits", d2, d1, N * V, 1e-5);
    std::fill(L2.begin(), L2.end(), 0.0f);
    kcu_xent_fwd_bwd(EB, L2.data(), NULL, l.data(), tg.data(), NULL, N, V);
    CMP("xent loss (forward only)", L2, L1, N, 1e-5);
    auto inplace = l;
    kcu_xent_fwd_bwd(EB, L2.data(), inplace.data(), inplace.data(), tg.data(), dloss.data(), N, V);
    CMP("xent loss (in place)", L2, L1, N, 1e-5);
    CMP("xent dlogits (in place)", inplace, d1, N * V, 1e-5);
}
static void test_emu_xent(void) {
    xent_case(1, 1);
    xent_case(13, 97);
    xent_case(5, 1003);
    xent_case(2, 50257);
}

static void test_emu_adamw(void) {
    size_t n = 7001;
    auto p = rnd(n, 1), g = rnd(n, 1);
    std::vector<float> m(n), v(n);
    auto p2 = p, m2 = m, v2 = v;
    for (int t = 1; t <= 3; t++) {
        float bc1 = 1 - powf(0.9f, (float)t), bc2 = 1 - powf(0.95f, (float)t);
        kern_adamw(g_ref, p.data(), g.data(), m.data(), v.data(), n, 1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, bc1, bc2, 0.7f);
        kcu_adamw_raw(EB, p2.data(), g.data(), m2.data(), v2.data(), n, 1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, bc1, bc2, 0.7f);
    }
    CMP("adamw p", p2, p, n, 1e-6);
    CMP("adamw m", m2, m, n, 1e-6);
    CMP("adamw v", v2, v, n, 1e-6);
}

static void attention_case(size_t B, size_t T, size_t C, size_t NH) {
    char what[96];
    auto qkv = rnd(B * T * 3 * C, 1), dout = rnd(B * T * C, 1), dqkv = rnd(B * T * 3 * C, 1);
    auto dqkv2 = dqkv;
    std::vector<float> o1(B * T * C), o2(B * T * C);
    std::vector<float> s1(kern_attention_saved_floats(g_ref, B, T, C, NH)), s2(kcu_attention_saved_floats(EB, B, T, C, NH));
    kern_attention_fwd(g_ref, o1.data(), s1.data(), qkv.data(), B, T, C, NH);
    kcu_attention_fwd(EB, o2.data(), s2.data(), qkv.data(), B, T, C, NH);
    snprintf(what, sizeof what, "attention_fwd B=%zu T=%zu C=%zu NH=%zu", B, T, C, NH);
    CMP(what, o2, o1, B * T * C, 1e-5);
    kern_attention_bwd(g_ref, dqkv.data(), dout.data(), qkv.data(), o1.data(), s1.data(), B, T, C, NH);
    kcu_attention_bwd(EB, dqkv2.data(), dout.data(), qkv.data(), o2.data(), s2.data(), B, T, C, NH);
    snprintf(what, sizeof what, "attention_bwd B=%zu T=%zu C=%zu NH=%zu", B, T, C, NH);
    CMP(what, dqkv2, dqkv, B * T * 3 * C, 1e-5 * sqrt((double)T));
}
static void matmul_case(size_t N, size_t C, size_t OC, int layout, int with_bias) {
    char what[96];
    auto x = rnd(N * C, 1), w = rnd(C * OC, 1), b = rnd(OC, 1), dout = rnd(N * OC, 1);
    auto dx = rnd(N * C, 1), dw = rnd(C * OC, 1), db = rnd(OC, 1);
    auto dx2 = dx, dw2 = dw, db2 = db;
    std::vector<float> o1(N * OC), o2(N * OC);
    g_gemm_bad = 0;
    kern_matmul_fwd(g_ref, o1.data(), x.data(), w.data(), with_bias ? b.data() : NULL, N, C, OC, layout);
    kcu_matmul_fwd(EB, o2.data(), x.data(), w.data(), with_bias ? b.data() : NULL, N, C, OC, layout);
    snprintf(what, sizeof what, "matmul_fwd N=%zu C=%zu OC=%zu layout=%d bias=%d", N, C, OC, layout, with_bias);
    CMP(what, o2, o1, N * OC, 1e-5 * sqrt((double)C));
    kern_matmul_bwd(g_ref, dx.data(), dw.data(), with_bias ? db.data() : NULL, dout.data(), x.data(), w.data(), N, C, OC, layout);
    kcu_matmul_bwd(EB, dx2.data(), dw2.data(), with_bias ? db2.data() : NULL, dout.data(), x.data(), w.data(), N, C, OC, layout);
    snprintf(what, sizeof what, "matmul_bwd dinp N=%zu C=%zu OC=%zu layout=%d", N, C, OC, layout);
    CMP(what, dx2, dx, N * C, 1e-5 * sqrt((double)OC));
    snprintf(what, sizeof what, "matmul_bwd dw N=%zu C=%zu OC=%zu layout=%d", N, C, OC, layout);
    CMP(what, dw2, dw, C * OC, 1e-5 * sqrt((double)N));
    CMP("matmul_bwd dbias", db2, db, OC, 1e-5 * sqrt((double)N));
    kcu_matmul_bwd(EB, NULL, dw2.data(), NULL, dout.data(), x.data(), w.data(), N, C, OC, layout);
    kern_matmul_bwd(g_ref, NULL, dw.data(), NULL, dout.data(), x.data(), w.data(), N, C, OC, layout);
    CMP("matmul_bwd dw only", dw2, dw, C * OC, 1e-5 * sqrt((double)N));
    if (N <= KERN_SKINNY_MAX_N) {
        kcu_matmul_skinny_fwd(EB, o2.data(), x.data(), w.data(), with_bias ? b.data() : NULL, N, C, OC, layout);
        CMP("matmul_skinny_fwd", o2, o1, N * OC, 1e-5 * sqrt((double)C));
    }
    CHECK(g_gemm_bad == 0, "%d GEMM descriptions cuBLASLt would reject (shape/ld mismatch)", g_gemm_bad);
}
static void test_emu_matmul(void) {
    size_t sizes[][3] = { {1, 1, 1}, {7, 13, 11}, {33, 70, 45}, {3, 96, 203}, {64, 31, 130} };
    for (auto &sz : sizes)
        for (int layout = 0; layout < 2; layout++)
            for (int bias = 0; bias < 2; bias++) matmul_case(sz[0], sz[1], sz[2], layout, bias);
}

static void test_emu_attention(void) {
    attention_case(2, 1, 12, 3);
    attention_case(2, 5, 12, 3);
    attention_case(1, 33, 24, 2);
    attention_case(2, 70, 128, 2);  /* hs 64: the tiled forward at its widest, three tiles, the last partial */
    attention_case(1, 64, 96, 3);   /* hs 32: two full tiles */
    attention_case(1, 9, 80, 1);    /* hs 80: 3 channels on some lanes, 2 on others */
    attention_case(1, 3, 256, 1);   /* hs 256: the largest supported, 8 per lane */
}

static void test_emu_attn_cache(void) {
    for (size_t NKV : { (size_t)3, (size_t)1 }) {   /* 3 heads each, then multi-query */
    size_t S = 4, NH = 3, hs = 10, C = NH * hs, W = (NH + 2 * NKV) * hs, maxT = 23, B = 2;
    std::vector<int32_t> slot = { 3, 1 }, pos = { 0, 0 };
    auto kc = rnd(S * NKV * maxT * hs, 1);
    auto vc = kc, kc2 = kc, vc2 = kc;
    size_t steps[] = { 9, 1, 1 };
    for (size_t n : steps) {
        auto qkv = rnd(B * n * W, 1);
        std::vector<float> o1(B * n * C), o2(B * n * C);
        kern_attn_cache_fwd(g_ref, o1.data(), kc.data(), vc.data(), qkv.data(), slot.data(), pos.data(), B, n, C, NH, NKV, maxT);
        kcu_attn_cache_fwd(EB, o2.data(), kc2.data(), vc2.data(), qkv.data(), slot.data(), pos.data(), B, n, C, NH, NKV, maxT);
        CMP("attn_cache out", o2, o1, B * n * C, 1e-5);
        CMP("attn_cache k", kc2, kc, S * NKV * maxT * hs, 0);
        CMP("attn_cache v", vc2, vc, S * NKV * maxT * hs, 0);
        for (auto &p : pos) p += (int32_t)n;
    }
    }
}

/* ---------------------------------------------------------------- the whole table in a training run
 * An "emu" backend: host memory, and for every op the CUDA backend's code under emulation (matmuls with the
 * cuBLASLt stand-in above). 4 training steps of a tiny GPT-2 and a tiny LLaMA on it against the CPU reference,
 * and greedy decoding (KV cache, decode matmul): what tests/test_cuda.c does on the GPU, here with the kernels'
 * logic in the model's real call patterns (chunked LM head, aliasing, saved buffers between forward and backward).
 * Fewer steps than on the GPU: every launch costs thousands of fiber switches here (~0.5 s a step). */
static void emu_shadow(kern_backend *be, const float *base, size_t n) { (void)be; (void)base; (void)n; }
static kern_ops emu_ops(void) {
    kern_ops t;
    memset(&t, 0, sizeof t);
    t.alloc = kern_host_alloc; t.free = kern_host_free; t.zero = kern_host_zero;
    t.upload = kern_host_upload; t.download = kern_host_download; t.copy = kern_host_copy;
    t.embed_fwd = kcu_embed_fwd; t.embed_bwd = kcu_embed_bwd;
    t.layernorm_fwd = kcu_layernorm_fwd; t.layernorm_bwd = kcu_layernorm_bwd;
    t.matmul_fwd = kcu_matmul_fwd; t.matmul_bwd = kcu_matmul_bwd; t.matmul_skinny_fwd = kcu_matmul_skinny_fwd;
    t.attention_saved_floats = kcu_attention_saved_floats;
    t.attention_fwd = kcu_attention_fwd; t.attention_bwd = kcu_attention_bwd; t.attn_cache_fwd = kcu_attn_cache_fwd;
    t.gelu_fwd = kcu_gelu_fwd; t.gelu_bwd = kcu_gelu_bwd; t.add = kcu_add; t.axpy = kcu_axpy; t.scale = kcu_scale;
    t.xent_fwd_bwd = kcu_xent_fwd_bwd; t.sumsq = kcu_sumsq; t.adamw = kcu_adamw_raw; t.bf16_shadow = emu_shadow;
    t.rmsnorm_fwd = kcu_rmsnorm_fwd; t.rmsnorm_bwd = kcu_rmsnorm_bwd; t.rope = kcu_rope;
    t.kv_expand_fwd = kcu_kv_expand_fwd; t.kv_expand_bwd = kcu_kv_expand_bwd;
    t.swiglu_fwd = kcu_swiglu_fwd; t.swiglu_bwd = kcu_swiglu_bwd;
    return t;
}
static kern_ops g_emu_ops;
static kern_backend *emu_backend(void) {
    g_emu_ops = emu_ops();
    kern_backend *be = (kern_backend *)gk_calloc(1, sizeof *be);
    be->ops = &g_emu_ops;
    kern_backend_opts_default(&be->opts);
    be->opts.kind = KERN_KIND_REF;   /* host memory; nothing looks at the kind but names */
    be->gemm = KERN_GEMM_BUILTIN;
    snprintf(be->name, sizeof be->name, "cuda-emu");
    return be;
}

static void tiny_config(gpt_config *c, int llama) {
    gpt_config_default(c);
    if (llama) { gpt_config_llama(c); c->n_kv_head = 2; c->n_inner = 88; }
    c->n_layer = 2; c->n_head = 4; c->n_embd = 32; c->vocab_size = 67; c->n_ctx = 24;
}
static void train_steps(gpt_model *m, adamw *opt, int steps, double *loss) {
    size_t B = 2, T = 16;
    int32_t in[32], tg[32];
    train_lm *lm = train_lm_new(m);
    for (int s = 0; s < steps; s++) {
        for (size_t i = 0; i < B * T; i++) {
            in[i] = (int32_t)((i * 7 + (size_t)s * 13 + i * i) % 67);
            tg[i] = (i % 11 == 5) ? -1 : (int32_t)((in[i] * 3 + 1) % 67);
        }
        size_t cnt = 0;
        for (size_t i = 0; i < B * T; i++) cnt += tg[i] >= 0;
        gpt_zero_grads(m);
        loss[s] = train_lm_loss(lm, in, tg, B, T, (double)cnt, NULL);
        adamw_step(opt, m, 3e-3f);
    }
    train_lm_free(lm);
}
#define EMU_STEPS 4
static void test_emu_train_steps(void) {
    kern_backend *eb = emu_backend();
    for (int llama = 0; llama < 2; llama++) {
        gpt_config c;
        tiny_config(&c, llama);
        gpt_model *mc = gpt_create_on(&c, g_ref), *me = gpt_create_on(&c, eb);
        gpt_init_random(mc, 11);
        gpt_init_random(me, 11);
        gpt_alloc_grads(mc);
        gpt_alloc_grads(me);
        adamw_config oc;
        adamw_config_default(&oc);
        adamw *oc_c = adamw_create(mc, &oc), *oc_e = adamw_create(me, &oc);
        double lc[EMU_STEPS], le[EMU_STEPS];
        train_steps(mc, oc_c, EMU_STEPS, lc);
        train_steps(me, oc_e, EMU_STEPS, le);
        for (int s = 0; s < EMU_STEPS; s++) {
            char what[64];
            snprintf(what, sizeof what, "%s loss at step %d", llama ? "llama" : "gpt2", s);
            CHECK_CLOSE(le[s], lc[s], 0, s == 0 ? 1e-5 : 1e-3, what);
        }
        CHECK(lc[EMU_STEPS - 1] < lc[0], "the reference did not learn (%g -> %g)", lc[0], lc[EMU_STEPS - 1]);
        adamw_free(oc_c); adamw_free(oc_e);
        gpt_free(mc); gpt_free(me);
    }
    kern_backend_free(eb);
}
static void test_emu_greedy_decode(void) {
    kern_backend *eb = emu_backend();
    for (int llama = 0; llama < 2; llama++) {
        gpt_config c;
        tiny_config(&c, llama);
        gpt_model *mc = gpt_create_on(&c, g_ref), *me = gpt_create_on(&c, eb);
        gpt_init_random(mc, 3);
        gpt_init_random(me, 3);
        engine *ec = engine_new(mc, NULL, 2, 0), *ee = engine_new(me, NULL, 2, 0);
        engine_gen_opts o;
        engine_gen_opts_default(&o);
        o.samp.temperature = 0;
        o.max_new = 8;
        int32_t prompt[5] = { 1, 5, 9, 2, 40 };
        engine_seq sc[2], se[2];
        gk_err err;
        CHECK(engine_generate(ec, prompt, 5, 2, &o, sc, &err) == 0, "reference generate: %s", err.msg);
        CHECK(engine_generate(ee, prompt, 5, 2, &o, se, &err) == 0, "emulated generate: %s", err.msg);
        for (int k = 0; k < 2; k++) {
            CHECK(sc[k].n == se[k].n && !memcmp(sc[k].ids, se[k].ids, sc[k].n * sizeof(int32_t)),
                  "%s: greedy ids differ for sequence %d", llama ? "llama" : "gpt2", k);
            engine_seq_free(&sc[k]); engine_seq_free(&se[k]);
        }
        engine_free(ec); engine_free(ee);
        gpt_free(mc); gpt_free(me);
    }
    kern_backend_free(eb);
}

int main(void) {
    gk_rng_seed(&g_rng, 31);
    kern_backend_opts o;
    kern_backend_opts_default(&o);
    o.kind = KERN_KIND_REF;
    g_ref = kern_backend_create(&o, NULL);
    printf("# the CUDA kernels under CPU emulation (tests/cuda_emu/emu.h): their logic, not the GPU\n");
    TL_RUN(test_emu_embed);
    TL_RUN(test_emu_layernorm);
    TL_RUN(test_emu_rmsnorm);
    TL_RUN(test_emu_elementwise);
    TL_RUN(test_emu_rope_kv);
    TL_RUN(test_emu_xent);
    TL_RUN(test_emu_adamw);
    TL_RUN(test_emu_matmul);
    TL_RUN(test_emu_attention);
    TL_RUN(test_emu_attn_cache);
    TL_RUN(test_emu_train_steps);
    TL_RUN(test_emu_greedy_decode);
    kern_backend_free(g_ref);
    return tl_summary();
}
