/* test_quant.c: weights kept in their GGUF block format (kern_matmul_q_fwd, kern_embed_q_fwd, gpt_load_infer).
 *
 *  - The quantized matmul against dequantize-then-multiply (kern_q_dequantize, products in double) for every type it
 *    takes, at awkward sizes (1, 2, 3, 7, 33 rows; odd output widths; an output row stride wider than the product),
 *    on both backends and every instruction set the CPU has (portable, AVX2, AVX-512 VNNI), and the instruction
 *    sets against each other. Tolerances: the fp32 paths (F16, Q4_K, Q6_K, every prefill) 2e-6 sum |w x| (float
 *    summation of C terms); the Q8_0 / Q4_0 decode rounds each 32-value block of x to int8 with step dx = max|x|/127,
 *    so each product moves by at most (dx/2) |w| per value: the bound is sum_b (dx_b / 2) sum_i |w_i| plus the same
 *    float slack, computed per output and never exceeded (the integer dot itself is exact).
 *  - A whole model: the q8_0 / q4_0 GGUF fixtures (tests/fixtures/gguf) loaded for inference against the same files
 *    loaded as fp32: prefill logits (dequantized panels through the GEMM: float rounding only) within 1e-4, and a
 *    greedy decode through the KV cache (int8 inputs). Its error is the method's (llama.cpp quantizes its inputs the
 *    same way), not float noise: each product moves by ~ dx / sqrt(12) per value, about 0.5% of the product for
 *    Gaussian-like blocks, compounded over the layers and the LM head of this tiny random model (width 96, whose
 *    activations have outlier channels that widen dx). Measured here: max |diff| 5% and mean |diff| 2.1% of the
 *    step's logit range (q8_0), 2% and 0.8% (q4_0). Held to 8% (max) and 3% (mean) of the range, and the greedy
 *    id equal to fp32's on every step whose top-two margin exceeds 10% of the range (a closer tie may flip honestly).
 *  - Training on an inference load dequantizes to exactly gpt_load's parameters; memory holds the blocks only.
 *  - Bad files (rows short of a block, truncation) are refused by the inference load with the file named.
 */
#include "model/model.h"
#include "kern/kern.h"
#include "testlib.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define GFIX "tests/fixtures/gguf"

/* A finite half: random sign, exponent 2^-5 .. 2^-1, random mantissa. */
static uint16_t rand_half(gk_rng *r) {
    uint32_t sign = gk_rng_below(r, 2), exp = 10 + gk_rng_below(r, 5), man = gk_rng_below(r, 1024);
    return (uint16_t)(sign << 15 | exp << 10 | man);
}
static void put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }

/* rows x cols values of `type` with random quants and finite random scales. */
static uint8_t *rand_qmat(int type, size_t rows, size_t cols, gk_rng *r) {
    size_t rb = kern_qtype_row_bytes(type, cols), bb = kern_qtype_block_bytes(type), n = rows * rb;
    uint8_t *d = malloc(n ? n : 1);
    for (size_t i = 0; i < n; i++) d[i] = (uint8_t)gk_rng_below(r, 256);
    for (size_t b = 0; b < n / bb; b++) {
        uint8_t *blk = d + b * bb;
        switch (type) {
        case KERN_QT_F16: put16(blk, rand_half(r)); break;
        case KERN_QT_Q8_0: case KERN_QT_Q4_0: put16(blk, rand_half(r)); break;
        case KERN_QT_Q4_K: put16(blk, rand_half(r)); put16(blk + 2, rand_half(r)); break;
        case KERN_QT_Q6_K: put16(blk + 208, rand_half(r)); break;
        }
    }
    return d;
}

/* The decode bound of one output (see the file's comment) and the float slack sum |w x|. */
static void bounds(const float *w, const float *x, size_t C, double *int8_bound, double *absdot) {
    double b = 0, s = 0;
    for (size_t k = 0; k < C / 32; k++) {
        float amax = 0, wsum = 0;
        for (int i = 0; i < 32; i++) { amax = fmaxf(amax, fabsf(x[k * 32 + i])); wsum += fabsf(w[k * 32 + i]); }
        b += 0.5 * (amax / 127.0) * (1 + 1e-6) * wsum;
    }
    for (size_t c = 0; c < C; c++) s += fabs((double)w[c] * x[c]);
    *int8_bound = b;
    *absdot = s;
}

static void test_matmul_q_vs_dequant(void) {
    kern_backend *ref = tl_backend(KERN_KIND_REF), *cpu = tl_backend(KERN_KIND_CPU);
    const int types[] = {KERN_QT_F16, KERN_QT_Q8_0, KERN_QT_Q4_0, KERN_QT_Q4_K, KERN_QT_Q6_K};
    const size_t Ns[] = {1, 2, 3, 7, 33}, OCs[] = {1, 3, 17, 34};
    gk_rng r;
    gk_rng_seed(&r, 13);
    size_t cases = 0;
    double worst_ratio = 0;   /* the largest int8 error seen as a fraction of its bound */
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
        int type = types[ti];
        size_t blk = kern_qtype_block(type);
        size_t Cs[2] = {blk == 256 ? 256 : 96, blk == 256 ? 512 : (type == KERN_QT_F16 ? 45 : 160)};
        for (int ci = 0; ci < 2; ci++)
            for (size_t oi = 0; oi < sizeof OCs / sizeof OCs[0]; oi++)
                for (size_t ni = 0; ni < sizeof Ns / sizeof Ns[0]; ni++) {
                    size_t C = Cs[ci], OC = OCs[oi], N = Ns[ni], ldo = OC + 3;
                    int with_bias = (oi + ni) % 2;
                    uint8_t *wq = rand_qmat(type, OC, C, &r);
                    float *wd = malloc(OC * C * sizeof(float)), *x = malloc(N * C * sizeof(float));
                    float *bias = malloc(OC * sizeof(float)), *want = malloc(N * ldo * sizeof(float));
                    CHECK(kern_q_dequantize(type, wq, OC * C, wd) == 0, "dequantize type %d", type);
                    for (size_t i = 0; i < N * C; i++) x[i] = gk_rng_normal(&r) * (i % 7 == 0 ? 4.0f : 1.0f);
                    for (size_t j = 0; j < OC; j++) bias[j] = gk_rng_normal(&r);
                    for (size_t n = 0; n < N; n++)
                        for (size_t j = 0; j < OC; j++) {
                            double acc = with_bias ? bias[j] : 0;
                            for (size_t c = 0; c < C; c++) acc += (double)wd[j * C + c] * x[n * C + c];
                            want[n * ldo + j] = (float)acc;
                        }
                    kern_qmat w = {.type = type, .data = wq, .rows = OC, .cols = C};
                    int int8 = (type == KERN_QT_Q8_0 || type == KERN_QT_Q4_0) && N <= KERN_Q_DECODE_MAX_N;
                    float *got[4] = {0};
                    struct { kern_backend *be; int isa; const char *name; } runs[4] = {
                        {ref, 0, "ref"}, {cpu, KERN_ISA_PORTABLE, "portable"}, {cpu, KERN_ISA_AVX2, "avx2"},
                        {cpu, KERN_ISA_BEST, "best"}};
                    for (int k = 0; k < 4; k++) {
                        got[k] = malloc(N * ldo * sizeof(float));
                        for (size_t i = 0; i < N * ldo; i++) got[k][i] = 12345.0f;   /* the stride's gaps stay */
                        runs[k].be->q_isa = runs[k].isa;
                        kern_matmul_q_fwd(runs[k].be, got[k], ldo, x, &w, with_bias ? bias : NULL, N);
                        runs[k].be->q_isa = 0;
                        for (size_t n = 0; n < N; n++) {
                            for (size_t j = 0; j < OC; j++) {
                                double b8, ad;
                                bounds(wd + j * C, x + n * C, C, &b8, &ad);
                                double tol = 2e-6 * ad + 1e-6 + (int8 && k > 0 ? b8 : 0);
                                double e = fabs((double)got[k][n * ldo + j] - want[n * ldo + j]);
                                if (int8 && k > 0 && b8 > 0 && e / b8 > worst_ratio) worst_ratio = e / b8;
                                CHECK(e <= tol, "type %d %s N=%zu C=%zu OC=%zu: out[%zu,%zu] %.7g vs %.7g (tol %.3g)", type,
                                      runs[k].name, N, C, OC, n, j, got[k][n * ldo + j], want[n * ldo + j], tol);
                                /* the instruction sets multiply the same integers: only float order differs */
                                if (k > 1) {
                                    double d = fabs((double)got[k][n * ldo + j] - got[1][n * ldo + j]);
                                    CHECK(d <= 2e-6 * ad + 1e-6, "type %d %s vs portable N=%zu C=%zu: %.7g vs %.7g", type,
                                          runs[k].name, N, C, got[k][n * ldo + j], got[1][n * ldo + j]);
                                }
                            }
                            for (size_t j = OC; j < ldo; j++)
                                CHECK(got[k][n * ldo + j] == 12345.0f, "%s wrote past the product's columns", runs[k].name);
                        }
                    }
                    cases++;
                    for (int k = 0; k < 4; k++) free(got[k]);
                    free(wq); free(wd); free(x); free(bias); free(want);
                }
    }
    printf("  %zu cases x 4 paths; worst int8 decode error %.2f of its bound\n", cases, worst_ratio);
    /* the bound is tight enough to mean something: random inputs use a fair part of it */
    CHECK(worst_ratio > 0.01 && worst_ratio <= 1, "int8 error / bound = %g", worst_ratio);
    kern_backend_free(ref);
    kern_backend_free(cpu);
}

/* QLoRA's two products with a frozen quantized W: kern_matmul_q_train_fwd (no int8 decode path at any row count:
 * equal to dequantize-then-multiply within float summation, 2e-6 sum |w x|, even for N <= KERN_Q_DECODE_MAX_N) and
 * kern_matmul_q_bwd (dinp += dout W, accumulating, dout read with a row stride wider than W's rows), against
 * double products of the dequantized W, on both backends; 2e-6 sum |dout w| + 1e-6 (float sums of OC terms). */
static void test_matmul_q_train_and_bwd(void) {
    kern_backend *ref = tl_backend(KERN_KIND_REF), *cpu = tl_backend(KERN_KIND_CPU);
    kern_backend *bes[2] = {ref, cpu};
    const int types[] = {KERN_QT_F16, KERN_QT_Q8_0, KERN_QT_Q4_0, KERN_QT_Q4_K, KERN_QT_Q6_K};
    const size_t Ns[] = {1, 5, 37}, OCs[] = {3, 41};
    gk_rng r;
    gk_rng_seed(&r, 29);
    size_t cases = 0;
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
        int type = types[ti];
        size_t C = kern_qtype_block(type) == 256 ? 512 : 96;
        for (size_t oi = 0; oi < 2; oi++)
            for (size_t ni = 0; ni < 3; ni++) {
                size_t OC = OCs[oi], N = Ns[ni], ldd = OC + 5;
                uint8_t *wq = rand_qmat(type, OC, C, &r);
                float *wd = malloc(OC * C * sizeof(float)), *x = malloc(N * C * sizeof(float));
                float *dy = malloc(N * ldd * sizeof(float)), *dx0 = malloc(N * C * sizeof(float));
                float *got = malloc(N * ldd * sizeof(float)), *dx = malloc(N * C * sizeof(float));
                kern_q_dequantize(type, wq, OC * C, wd);
                for (size_t i = 0; i < N * C; i++) { x[i] = gk_rng_normal(&r); dx0[i] = gk_rng_normal(&r); }
                for (size_t i = 0; i < N * ldd; i++) dy[i] = gk_rng_normal(&r);
                kern_qmat w = {.type = type, .data = wq, .rows = OC, .cols = C};
                for (int k = 0; k < 2; k++) {
                    kern_matmul_q_train_fwd(bes[k], got, ldd, x, &w, NULL, N);
                    for (size_t n = 0; n < N; n++)
                        for (size_t j = 0; j < OC; j++) {
                            double acc = 0, ad = 0;
                            for (size_t c = 0; c < C; c++) {
                                acc += (double)wd[j * C + c] * x[n * C + c];
                                ad += fabs((double)wd[j * C + c] * x[n * C + c]);
                            }
                            CHECK(fabs(got[n * ldd + j] - acc) <= 2e-6 * ad + 1e-6, "type %d %s train fwd N=%zu: %.7g vs %.7g",
                                  type, k ? "cpu" : "ref", N, got[n * ldd + j], acc);
                        }
                    memcpy(dx, dx0, N * C * sizeof(float));
                    kern_matmul_q_bwd(bes[k], dx, dy, ldd, &w, N);
                    for (size_t n = 0; n < N; n++)
                        for (size_t c = 0; c < C; c++) {
                            double acc = dx0[n * C + c], ad = fabs(dx0[n * C + c]);
                            for (size_t j = 0; j < OC; j++) {
                                acc += (double)dy[n * ldd + j] * wd[j * C + c];
                                ad += fabs((double)dy[n * ldd + j] * wd[j * C + c]);
                            }
                            CHECK(fabs(dx[n * C + c] - acc) <= 2e-6 * ad + 1e-6, "type %d %s bwd N=%zu OC=%zu: dx[%zu,%zu] %.7g vs %.7g",
                                  type, k ? "cpu" : "ref", N, OC, n, c, dx[n * C + c], acc);
                        }
                }
                cases++;
                free(wq); free(wd); free(x); free(dy); free(dx0); free(got); free(dx);
            }
    }
    printf("  %zu cases x 2 backends\n", cases);
    kern_backend_free(ref);
    kern_backend_free(cpu);
}

static void test_embed_q(void) {
    kern_backend *be = kern_backend_create(NULL, NULL);
    gk_rng r;
    gk_rng_seed(&r, 7);
    const int types[] = {KERN_QT_F16, KERN_QT_Q8_0, KERN_QT_Q4_0, KERN_QT_Q4_K, KERN_QT_Q6_K};
    for (size_t ti = 0; ti < 5; ti++) {
        size_t V = 11, C = 256, B = 2, T = 3;
        uint8_t *wq = rand_qmat(types[ti], V, C, &r);
        float *wd = malloc(V * C * sizeof(float)), *wpe = malloc(8 * C * sizeof(float)), *out = malloc(B * T * C * sizeof(float));
        kern_q_dequantize(types[ti], wq, V * C, wd);
        for (size_t i = 0; i < 8 * C; i++) wpe[i] = gk_rng_normal(&r);
        int32_t tok[6] = {10, 0, 3, 3, 7, 1};
        kern_qmat w = {.type = types[ti], .data = wq, .rows = V, .cols = C};
        kern_embed_q_fwd(be, out, tok, &w, wpe, B, T, 2);
        size_t bad = 0;
        for (size_t i = 0; i < B * T; i++)
            for (size_t c = 0; c < C; c++)
                bad += out[i * C + c] != wd[(size_t)tok[i] * C + c] + wpe[(2 + i % T) * C + c];
        CHECK(bad == 0, "type %d: %zu embedding values differ from the dequantized rows", types[ti], bad);
        free(wq); free(wd); free(wpe); free(out);
    }
    kern_backend_free(be);
}

static float *logits_of(gpt_model *m, const float *h, size_t N) {
    size_t V = (size_t)m->cfg.vocab_size;
    float *dl = kern_alloc(m->be, N * V * sizeof(float)), *out = malloc(N * V * sizeof(float));
    gpt_lm_head_fwd(m, dl, h, N);
    kern_download(m->be, out, dl, N * V * sizeof(float));
    kern_free(m->be, dl);
    return out;
}

static size_t argmax2(const float *x, size_t n, float *margin) {
    size_t a = 0;
    for (size_t i = 1; i < n; i++) if (x[i] > x[a]) a = i;
    float second = -INFINITY;
    for (size_t i = 0; i < n; i++) if (i != a && x[i] > second) second = x[i];
    *margin = x[a] - second;
    return a;
}

/* One fixture file, loaded both ways. */
static void compare_model(const char *path, const char *tag) {
    gk_err err;
    gpt_model *f = gpt_load(path, NULL, &err);
    CHECK(f != NULL, "%s: %s", tag, err.msg);
    gpt_model *q = gpt_load_infer(path, NULL, &err);
    CHECK(q != NULL, "%s (inference load): %s", tag, err.msg);
    if (!f || !q) { gpt_free(f); gpt_free(q); return; }
    CHECK(q->qw != NULL && gpt_param_qweight(q, gpt_param_role(q, GPT_ROLE_FC_W, 0)) != NULL, "%s: matrices kept quantized", tag);
    CHECK(gpt_layer(q->params, q, 0).fc_w == NULL, "%s: a quantized matrix has no fp32 pointer", tag);
    size_t V = (size_t)f->cfg.vocab_size;
    /* prefill path: 2 x 15 rows through dequantized panels and the GEMM */
    int32_t tok[30];
    for (int i = 0; i < 30; i++) tok[i] = (int32_t)((i * 37 + 11) % (int)V);
    gpt_forward(f, tok, 2, 15);
    gpt_forward(q, tok, 2, 15);
    float *lf = logits_of(f, gpt_hidden(f), 30), *lq = logits_of(q, gpt_hidden(q), 30);
    double d = CHECK_ARRAYS("prefill logits", lq, lf, 30 * V, 1e-4, 1e-4);
    printf("  %s: prefill logits vs the fp32 load max |diff| %.2e\n", tag, d);
    free(lf); free(lq);
    /* greedy decode through the KV cache, one row per step: the int8 path */
    gpt_kv *kf = gpt_kv_new(f, 1, 64), *kq = gpt_kv_new(q, 1, 64);
    size_t slot = 0;
    int32_t cur = 5;
    double worst = 0, range = 0, mean_ratio = 0;
    int compared = 0, same = 0;
    for (int step = 0; step < 24; step++) {
        const float *hf = gpt_forward_kv(f, kf, &slot, &cur, 1, 1);
        const float *hq = gpt_forward_kv(q, kq, &slot, &cur, 1, 1);
        float *a = logits_of(f, hf, 1), *b = logits_of(q, hq, 1);
        float mn = a[0], mx = a[0];
        for (size_t v = 0; v < V; v++) { mn = fminf(mn, a[v]); mx = fmaxf(mx, a[v]); worst = fmax(worst, fabs(a[v] - b[v])); }
        range = fmax(range, mx - mn);
        float tol = 0.08f * (mx - mn), margin;
        double sum = 0;
        for (size_t v = 0; v < V; v++) {
            CHECK(fabsf(a[v] - b[v]) <= tol, "%s step %d: logit %zu %g vs fp32 %g", tag, step, v, b[v], a[v]);
            sum += fabs(a[v] - b[v]);
        }
        mean_ratio = fmax(mean_ratio, sum / (double)V / (mx - mn));
        CHECK(sum / (double)V <= 0.03 * (mx - mn), "%s step %d: mean |logit diff| %g, range %g", tag, step, sum / (double)V, mx - mn);
        size_t ia = argmax2(a, V, &margin), ib = 0;
        for (size_t v = 1; v < V; v++) if (b[v] > b[ib]) ib = v;
        if (margin > 0.1f * (mx - mn)) { compared++; same += ia == ib; CHECK(ia == ib, "%s step %d: greedy %zu vs fp32 %zu", tag, step, ib, ia); }
        cur = (int32_t)ia;   /* both follow fp32's ids */
        free(a); free(b);
    }
    printf("  %s: decode logits max |diff| %.3g (logit range %.3g), worst step's mean |diff| / range %.4f; greedy ids equal"
           " on %d of %d clear steps\n", tag, worst, range, mean_ratio, same, compared);
    gpt_kv_free(kf); gpt_kv_free(kq);
    /* training on it: fp32 weights exactly as gpt_load's */
    gpt_alloc_grads(q);
    CHECK(q->qw == NULL && q->num_params == f->num_params, "%s: dequantized for training", tag);
    float *pf = malloc(f->num_params * sizeof(float)), *pq = malloc(q->num_params * sizeof(float));
    kern_download(f->be, pf, f->params, f->num_params * sizeof(float));
    kern_download(q->be, pq, q->params, q->num_params * sizeof(float));
    CHECK(memcmp(pf, pq, f->num_params * sizeof(float)) == 0, "%s: dequantized weights differ from gpt_load's", tag);
    free(pf); free(pq);
    gpt_free(f); gpt_free(q);
}

static void test_gguf_inference_load(void) {
    compare_model(tl_path(GFIX "/model-q8_0.gguf"), "q8_0");
    compare_model(tl_path(GFIX "/model-q4_0.gguf"), "q4_0");
    /* F16: the f32 fixture exported as f16 by our writer */
    gk_err err;
    gpt_model *m = gpt_load(tl_path(GFIX "/model-f32.gguf"), NULL, &err);
    CHECK(m != NULL, "%s", err.msg);
    if (!m) return;
    char *d = tl_tmpdir("quant"), path[1024];
    snprintf(path, sizeof path, "%s/m-f16.gguf", d);
    CHECK(gpt_export_gguf(m, path, GGUF_F16, NULL, 0, &err) == 0, "export f16: %s", err.msg);
    gpt_free(m);
    compare_model(path, "f16");
    /* GPT-2: Conv1D weights stored [in, out] in fp32, [out, in] in the file and in the blocks */
    gpt_config c;
    gpt_config_default(&c);
    c.n_layer = 2; c.n_head = 4; c.n_embd = 128; c.vocab_size = 97; c.n_ctx = 64;
    gpt_model *g = gpt_create(&c);
    gpt_init_random(g, 5);
    snprintf(path, sizeof path, "%s/gpt2-q8_0.gguf", d);
    CHECK(gpt_export_gguf(g, path, GGUF_Q8_0, NULL, 0, &err) == 0, "export gpt2: %s", err.msg);
    gpt_free(g);
    compare_model(path, "gpt2 q8_0");
    free(d);
}

/* Bad files through the inference load: a quantized tensor whose rows do not fill whole blocks, and a truncated
 * file, are refused with the file named (never multiplied). */
static void test_bad_quantized_files(void) {
    gk_err err;
    char *txt = NULL;
    size_t n = 0;
    CHECK(gk_read_file(tl_path(GFIX "/model-q8_0.gguf"), &txt, &n, &err) == 0, "%s", err.msg);
    if (!txt) return;
    const char name[] = "blk.0.ffn_up.weight";
    uint8_t *at = memmem(txt, n, name, sizeof name - 1);
    CHECK(at != NULL, "tensor info of %s", name);
    char *d = tl_tmpdir("quant-bad"), path[1024];
    snprintf(path, sizeof path, "%s/bad.gguf", d);
    if (at) {
        uint64_t ne0;
        memcpy(&ne0, at + sizeof name - 1 + 4, 8);   /* name | u32 n_dims | u64 ne[0] */
        CHECK(ne0 % 32 == 0, "ne[0] = %llu", (unsigned long long)ne0);
        uint64_t bad = ne0 - 16;                     /* half a Q8_0 block short */
        memcpy(at + sizeof name - 1 + 4, &bad, 8);
        CHECK(gk_write_file_atomic(path, txt, n, &err) == 0, "%s", err.msg);
        gpt_model *m = gpt_load_infer(path, NULL, &err);
        CHECK(!m && strstr(err.msg, "bad.gguf") && strstr(err.msg, "block"), "rows short of a block: %s", m ? "loaded" : err.msg);
        gpt_free(m);
    }
    CHECK(gk_write_file_atomic(path, txt, n - 1000, &err) == 0, "%s", err.msg);
    gpt_model *m = gpt_load_infer(path, NULL, &err);
    CHECK(!m && strstr(err.msg, "bad.gguf"), "truncated: %s", m ? "loaded" : err.msg);
    gpt_free(m);
    free(txt); free(d);
}

int main(void) {
    TL_RUN(test_matmul_q_vs_dequant);
    TL_RUN(test_matmul_q_train_and_bwd);
    TL_RUN(test_embed_q);
    TL_RUN(test_gguf_inference_load);
    TL_RUN(test_bad_quantized_files);
    return tl_summary();
}
