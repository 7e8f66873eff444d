/* ref_impl.h: the reference ops, written once and compiled twice (no include guard on purpose):
 *   ref.c   with REAL = float,  FN(x) = kern_ref_##x     (the fp32 oracle the fast paths are tested against)
 *   ref64.c with REAL = double, FN(x) = kern_ref64_##x   (for finite-difference gradient checks)
 * The includer also defines R_EXP, R_LOG, R_SQRT, R_TANH, R_COS, R_SIN for REAL, and REF_BE: the leading parameter of every op,
 * `kern_backend *be,` in ref.c (the fp32 ops sit in the backend table, whose ops take their backend first; the
 * reference has no state and ignores it) and empty in ref64.c.
 *
 * Plain loops, parallel with OpenMP where that is race-free. Backward ops accumulate (+=) into every
 * gradient and skip a NULL one. Parallel loops never let two threads write the same element: reductions
 * over rows (dw, dbias, embedding scatter with repeated tokens) are parallelised over channels instead.
 * Nothing assumes a size is a multiple of anything.
 */
#ifndef REAL
#error "define REAL, FN, REF_BE, R_EXP, R_LOG, R_SQRT, R_TANH, R_COS, R_SIN before including ref_impl.h"
#endif

/* Channels handled by one thread in column-wise reductions: 32 floats = two cache lines. */
#define REF_CBLK ((size_t)32)
#define REF_MIN(a, b) ((a) < (b) ? (a) : (b))

/* ---------------------------------------------------------------- embedding
 * out[b,t,c] = wte[tok[b,t], c] + wpe[pos0 + t, c] */
void FN(embed_fwd)(REF_BE REAL *out, const int32_t *tok, const REAL *wte, const REAL *wpe,
                   size_t B, size_t T, size_t C, size_t pos0) {
    GK_OMP(omp parallel for schedule(static))
    for (size_t bt = 0; bt < B * T; bt++) {
        const REAL *e = wte + (size_t)tok[bt] * C;
        REAL *o = out + bt * C;
        if (!wpe) { for (size_t c = 0; c < C; c++) o[c] = e[c]; continue; }   /* rotary models: no position table */
        const REAL *p = wpe + (pos0 + bt % T) * C;
        for (size_t c = 0; c < C; c++) o[c] = e[c] + p[c];
    }
}

/* dwte[tok[b,t], c] += dout[b,t,c];  dwpe[pos0+t, c] += sum_b dout[b,t,c].
 * The same token can appear many times, so the wte scatter is split over channel blocks (each thread owns
 * a set of columns and walks every token); the wpe rows are distinct per t, so that one splits over t. */
void FN(embed_bwd)(REF_BE REAL *dwte, REAL *dwpe, const REAL *dout, const int32_t *tok,
                   size_t B, size_t T, size_t C, size_t pos0) {
    if (dwte) {
        GK_OMP(omp parallel for schedule(static))
        for (size_t c0 = 0; c0 < C; c0 += REF_CBLK) {
            size_t c1 = REF_MIN(c0 + REF_CBLK, C);
            for (size_t bt = 0; bt < B * T; bt++) {
                REAL *d = dwte + (size_t)tok[bt] * C;
                const REAL *g = dout + bt * C;
                for (size_t c = c0; c < c1; c++) d[c] += g[c];
            }
        }
    }
    if (dwpe) {
        GK_OMP(omp parallel for schedule(static))
        for (size_t t = 0; t < T; t++) {
            REAL *d = dwpe + (pos0 + t) * C;
            for (size_t b = 0; b < B; b++) {
                const REAL *g = dout + (b * T + t) * C;
                for (size_t c = 0; c < C; c++) d[c] += g[c];
            }
        }
    }
}

/* ---------------------------------------------------------------- layernorm
 * mean = (1/C) sum_c x_c;  var = (1/C) sum_c (x_c - mean)^2  (biased, as torch);  rstd = 1/sqrt(var + eps)
 * xhat_c = (x_c - mean) rstd;  out_c = xhat_c w_c + b_c */
void FN(layernorm_fwd)(REF_BE REAL *out, REAL *mean, REAL *rstd, const REAL *inp, const REAL *w,
                       const REAL *b, size_t N, size_t C, REAL eps) {
    GK_OMP(omp parallel for schedule(static))
    for (size_t i = 0; i < N; i++) {
        const REAL *x = inp + i * C;
        REAL m = 0;
        for (size_t c = 0; c < C; c++) m += x[c];
        m /= (REAL)C;
        REAL v = 0;
        for (size_t c = 0; c < C; c++) { REAL d = x[c] - m; v += d * d; }
        v /= (REAL)C;
        REAL s = 1 / R_SQRT(v + eps);
        REAL *o = out + i * C;
        for (size_t c = 0; c < C; c++) o[c] = (x[c] - m) * s * w[c] + b[c];
        mean[i] = m;
        rstd[i] = s;
    }
}

/* With g_c = dout_c w_c (the gradient at xhat):
 *   dx_c += rstd (g_c - mean_c'(g) - xhat_c mean_c'(g xhat))
 *   dw_c += sum_rows dout_c xhat_c;   db_c += sum_rows dout_c */
void FN(layernorm_bwd)(REF_BE REAL *dinp, REAL *dw, REAL *db, const REAL *dout, const REAL *inp,
                       const REAL *w, const REAL *mean, const REAL *rstd, size_t N, size_t C) {
    if (dinp) {
        GK_OMP(omp parallel for schedule(static))
        for (size_t i = 0; i < N; i++) {
            const REAL *x = inp + i * C, *go = dout + i * C;
            REAL m = mean[i], s = rstd[i];
            REAL gmean = 0, gxmean = 0;
            for (size_t c = 0; c < C; c++) {
                REAL g = go[c] * w[c];
                gmean += g;
                gxmean += g * (x[c] - m) * s;
            }
            gmean /= (REAL)C;
            gxmean /= (REAL)C;
            REAL *dx = dinp + i * C;
            for (size_t c = 0; c < C; c++) {
                REAL xhat = (x[c] - m) * s;
                dx[c] += s * (go[c] * w[c] - gmean - xhat * gxmean);
            }
        }
    }
    if (dw || db) {
        GK_OMP(omp parallel for schedule(static))
        for (size_t c0 = 0; c0 < C; c0 += REF_CBLK) {
            size_t c1 = REF_MIN(c0 + REF_CBLK, C);
            for (size_t i = 0; i < N; i++) {
                const REAL *x = inp + i * C, *go = dout + i * C;
                for (size_t c = c0; c < c1; c++) {
                    if (dw) dw[c] += go[c] * (x[c] - mean[i]) * rstd[i];
                    if (db) db[c] += go[c];
                }
            }
        }
    }
}

/* ---------------------------------------------------------------- matmul
 * out[n,o] = bias[o] + sum_c inp[n,c] W[c,o],  W[c,o] = w[c*OC + o] (IN_OUT) or w[o*C + c] (OUT_IN) */
void FN(matmul_fwd)(REF_BE REAL *out, const REAL *inp, const REAL *w, const REAL *bias,
                    size_t N, size_t C, size_t OC, int wlayout) {
    GK_OMP(omp parallel for schedule(static))
    for (size_t n = 0; n < N; n++) {
        const REAL *x = inp + n * C;
        REAL *o = out + n * OC;
        if (wlayout == KERN_W_IN_OUT) {
            for (size_t j = 0; j < OC; j++) o[j] = bias ? bias[j] : 0;
            for (size_t c = 0; c < C; c++) {
                REAL a = x[c];
                const REAL *wr = w + c * OC;
                for (size_t j = 0; j < OC; j++) o[j] += a * wr[j];
            }
        } else {
            for (size_t j = 0; j < OC; j++) {
                const REAL *wr = w + j * C;
                REAL acc = bias ? bias[j] : 0;
                for (size_t c = 0; c < C; c++) acc += x[c] * wr[c];
                o[j] = acc;
            }
        }
    }
}

/* dinp[n,c] += sum_o dout[n,o] W[c,o]
 * dW[c,o]   += sum_n inp[n,c] dout[n,o]    (stored in w's layout)
 * dbias[o]  += sum_n dout[n,o] */
void FN(matmul_bwd)(REF_BE REAL *dinp, REAL *dw, REAL *dbias, const REAL *dout, const REAL *inp,
                    const REAL *w, size_t N, size_t C, size_t OC, int wlayout) {
    if (dinp) {
        GK_OMP(omp parallel for schedule(static))
        for (size_t n = 0; n < N; n++) {
            const REAL *g = dout + n * OC;
            REAL *dx = dinp + n * C;
            if (wlayout == KERN_W_IN_OUT) {
                for (size_t c = 0; c < C; c++) {
                    const REAL *wr = w + c * OC;
                    REAL acc = 0;
                    for (size_t j = 0; j < OC; j++) acc += g[j] * wr[j];
                    dx[c] += acc;
                }
            } else {
                for (size_t j = 0; j < OC; j++) {
                    REAL a = g[j];
                    const REAL *wr = w + j * C;
                    for (size_t c = 0; c < C; c++) dx[c] += a * wr[c];
                }
            }
        }
    }
    if (dw) {
        if (wlayout == KERN_W_IN_OUT) {          /* one thread per row c of dw[C][OC] */
            GK_OMP(omp parallel for schedule(static))
            for (size_t c = 0; c < C; c++) {
                REAL *d = dw + c * OC;
                for (size_t n = 0; n < N; n++) {
                    REAL a = inp[n * C + c];
                    const REAL *g = dout + n * OC;
                    for (size_t j = 0; j < OC; j++) d[j] += a * g[j];
                }
            }
        } else {                                 /* one thread per row o of dw[OC][C] */
            GK_OMP(omp parallel for schedule(static))
            for (size_t j = 0; j < OC; j++) {
                REAL *d = dw + j * C;
                for (size_t n = 0; n < N; n++) {
                    REAL a = dout[n * OC + j];
                    const REAL *x = inp + n * C;
                    for (size_t c = 0; c < C; c++) d[c] += a * x[c];
                }
            }
        }
    }
    if (dbias) {
        GK_OMP(omp parallel for schedule(static))
        for (size_t j0 = 0; j0 < OC; j0 += REF_CBLK) {
            size_t j1 = REF_MIN(j0 + REF_CBLK, OC);
            for (size_t n = 0; n < N; n++)
                for (size_t j = j0; j < j1; j++) dbias[j] += dout[n * OC + j];
        }
    }
}

/* ---------------------------------------------------------------- causal self-attention
 * For batch b, head h, hs = C/NH, q_t, k_t, v_t the head's slices of qkv[b,t,:]:
 *   s[t,j] = (q_t . k_j) / sqrt(hs)  for j <= t  (j > t masked out)
 *   P[t,j] = exp(s[t,j] - max_j s[t,:]) / sum_j exp(...)
 *   out_t  = sum_{j<=t} P[t,j] v_j
 * saved = P, [B,NH,T,T] (zeros above the diagonal). */
void FN(attention_fwd)(REF_BE REAL *out, REAL *saved, const REAL *qkv, size_t B, size_t T, size_t C, size_t NH) {
    size_t hs = C / NH, C3 = 3 * C;
    REAL scale = 1 / R_SQRT((REAL)hs);
    GK_OMP(omp parallel for collapse(3) schedule(static))
    for (size_t b = 0; b < B; b++)
        for (size_t h = 0; h < NH; h++)
            for (size_t t = 0; t < T; t++) {
                const REAL *q = qkv + (b * T + t) * C3 + h * hs;
                REAL *P = saved + ((b * NH + h) * T + t) * T;
                REAL mx = -INFINITY;
                for (size_t j = 0; j <= t; j++) {
                    const REAL *k = qkv + (b * T + j) * C3 + C + h * hs;
                    REAL s = 0;
                    for (size_t d = 0; d < hs; d++) s += q[d] * k[d];
                    s *= scale;
                    P[j] = s;
                    if (s > mx) mx = s;
                }
                REAL sum = 0;
                for (size_t j = 0; j <= t; j++) { P[j] = R_EXP(P[j] - mx); sum += P[j]; }
                for (size_t j = 0; j <= t; j++) P[j] /= sum;
                for (size_t j = t + 1; j < T; j++) P[j] = 0;
                REAL *o = out + (b * T + t) * C + h * hs;
                for (size_t d = 0; d < hs; d++) o[d] = 0;
                for (size_t j = 0; j <= t; j++) {
                    const REAL *v = qkv + (b * T + j) * C3 + 2 * C + h * hs;
                    for (size_t d = 0; d < hs; d++) o[d] += P[j] * v[d];
                }
            }
}

/* With dO_t = dout[b,t,head slice]:
 *   dv_j    += sum_t P[t,j] dO_t
 *   dP[t,j]  = dO_t . v_j
 *   dS[t,j]  = P[t,j] (dP[t,j] - sum_j' P[t,j'] dP[t,j'])     (softmax backward)
 *   dq_t    += (1/sqrt(hs)) sum_j dS[t,j] k_j
 *   dk_j    += (1/sqrt(hs)) sum_t dS[t,j] q_t
 * Every (b,h) writes only its own slices of dqkv, so (b,h) pairs run in parallel; t runs serially inside. */
void FN(attention_bwd)(REF_BE REAL *dqkv, const REAL *dout, const REAL *qkv, const REAL *out,
                       const REAL *saved, size_t B, size_t T, size_t C, size_t NH) {
    (void)out;
    if (!dqkv) return;
    size_t hs = C / NH, C3 = 3 * C;
    REAL scale = 1 / R_SQRT((REAL)hs);
    GK_OMP(omp parallel for collapse(2) schedule(static))
    for (size_t b = 0; b < B; b++)
        for (size_t h = 0; h < NH; h++) {
            REAL *dS = gk_malloc(T * sizeof(REAL));
            for (size_t t = 0; t < T; t++) {
                const REAL *P = saved + ((b * NH + h) * T + t) * T;
                const REAL *dO = dout + (b * T + t) * C + h * hs;
                const REAL *q = qkv + (b * T + t) * C3 + h * hs;
                REAL *dq = dqkv + (b * T + t) * C3 + h * hs;
                REAL pdp = 0;
                for (size_t j = 0; j <= t; j++) {
                    const REAL *v = qkv + (b * T + j) * C3 + 2 * C + h * hs;
                    REAL *dv = dqkv + (b * T + j) * C3 + 2 * C + h * hs;
                    REAL dp = 0;
                    for (size_t d = 0; d < hs; d++) { dp += dO[d] * v[d]; dv[d] += P[j] * dO[d]; }
                    dS[j] = dp;
                    pdp += P[j] * dp;
                }
                for (size_t j = 0; j <= t; j++) {
                    REAL ds = P[j] * (dS[j] - pdp) * scale;
                    const REAL *k = qkv + (b * T + j) * C3 + C + h * hs;
                    REAL *dk = dqkv + (b * T + j) * C3 + C + h * hs;
                    for (size_t d = 0; d < hs; d++) { dq[d] += ds * k[d]; dk[d] += ds * q[d]; }
                }
            }
            free(dS);
        }
}

/* ---------------------------------------------------------------- GELU (tanh approximation)
 * u = sqrt(2/pi) (x + 0.044715 x^3);  gelu(x) = 0.5 x (1 + tanh u)
 * gelu'(x) = 0.5 (1 + tanh u) + 0.5 x (1 - tanh^2 u) sqrt(2/pi) (1 + 3 * 0.044715 x^2) */
#define REF_GELU_K ((REAL)0.7978845608028654)   /* sqrt(2/pi) */
void FN(gelu_fwd)(REF_BE REAL *out, const REAL *inp, size_t n) {
    GK_OMP(omp parallel for schedule(static))
    for (size_t i = 0; i < n; i++) {
        REAL x = inp[i];
        REAL u = REF_GELU_K * (x + (REAL)0.044715 * x * x * x);
        out[i] = (REAL)0.5 * x * (1 + R_TANH(u));
    }
}

void FN(gelu_bwd)(REF_BE REAL *dinp, const REAL *inp, const REAL *dout, size_t n) {
    if (!dinp) return;
    GK_OMP(omp parallel for schedule(static))
    for (size_t i = 0; i < n; i++) {
        REAL x = inp[i];
        REAL u = REF_GELU_K * (x + (REAL)0.044715 * x * x * x);
        REAL th = R_TANH(u);
        REAL du = REF_GELU_K * (1 + 3 * (REAL)0.044715 * x * x);
        REAL g = (REAL)0.5 * (1 + th) + (REAL)0.5 * x * (1 - th * th) * du;
        dinp[i] += g * dout[i];
    }
}
#undef REF_GELU_K

/* ---------------------------------------------------------------- softmax cross-entropy
 * lse_i = log sum_v exp(logits[i,v]);  loss_i = lse_i - logits[i, target_i]  (0 if target_i < 0)
 * dlogits[i,v] = dloss_i (exp(logits[i,v] - lse_i) - [v == target_i])  (0 row if target_i < 0)
 * dlogits may alias logits: each row reads everything it needs before it writes. */
void FN(xent_fwd_bwd)(REF_BE REAL *loss, REAL *dlogits, const REAL *logits, const int32_t *targets,
                      const REAL *dloss, size_t N, size_t V) {
    GK_OMP(omp parallel for schedule(static))
    for (size_t i = 0; i < N; i++) {
        const REAL *l = logits + i * V;
        int32_t tg = targets[i];
        GK_CHECK(tg < 0 || (size_t)tg < V, "xent: target %d out of range [0,%zu) at row %zu", (int)tg, V, i);
        REAL mx = -INFINITY;
        for (size_t v = 0; v < V; v++) if (l[v] > mx) mx = l[v];
        REAL sum = 0;
        for (size_t v = 0; v < V; v++) sum += R_EXP(l[v] - mx);
        REAL lse = mx + R_LOG(sum);
        loss[i] = tg < 0 ? 0 : lse - l[tg];
        if (dloss) {
            REAL *dl = dlogits + i * V;
            REAL s = dloss[i];
            if (tg < 0) {
                for (size_t v = 0; v < V; v++) dl[v] = 0;
            } else {
                for (size_t v = 0; v < V; v++) dl[v] = s * R_EXP(l[v] - lse);
                dl[tg] -= s;
            }
        }
    }
}

/* ---------------------------------------------------------------- the LLaMA family's ops
 * Row-wise and elementwise: a decode step's few rows run on one thread (an OpenMP region costs more than the
 * work below REF_PAR_MIN elements, and far more on a loaded machine where threads wait for each other). */
#define REF_PAR_MIN ((size_t)1 << 15)

/* RMSNorm (HF LlamaRMSNorm): rstd = 1/sqrt(mean_c x_c^2 + eps);  out_c = w_c (x_c rstd).  rstd [N] saved. */
void FN(rmsnorm_fwd)(REF_BE REAL *out, REAL *rstd, const REAL *inp, const REAL *w, size_t N, size_t C, REAL eps) {
    GK_OMP(omp parallel for schedule(static) if (N * C >= REF_PAR_MIN))
    for (size_t i = 0; i < N; i++) {
        const REAL *x = inp + i * C;
        REAL ss = 0;
        for (size_t c = 0; c < C; c++) ss += x[c] * x[c];
        REAL s = 1 / R_SQRT(ss / (REAL)C + eps);
        REAL *o = out + i * C;
        for (size_t c = 0; c < C; c++) o[c] = w[c] * (x[c] * s);
        rstd[i] = s;
    }
}

/* With g_c = dout_c w_c:  dx_c += rstd g_c - rstd^3 x_c (1/C) sum_k g_k x_k;   dw_c += sum_rows dout_c x_c rstd */
void FN(rmsnorm_bwd)(REF_BE REAL *dinp, REAL *dw, const REAL *dout, const REAL *inp, const REAL *w, const REAL *rstd,
                     size_t N, size_t C) {
    if (dinp) {
        GK_OMP(omp parallel for schedule(static) if (N * C >= REF_PAR_MIN))
        for (size_t i = 0; i < N; i++) {
            const REAL *x = inp + i * C, *go = dout + i * C;
            REAL s = rstd[i], gx = 0;
            for (size_t c = 0; c < C; c++) gx += go[c] * w[c] * x[c];
            REAL k = s * s * s * gx / (REAL)C;
            REAL *dx = dinp + i * C;
            for (size_t c = 0; c < C; c++) dx[c] += s * go[c] * w[c] - k * x[c];
        }
    }
    if (dw) {
        GK_OMP(omp parallel for schedule(static))
        for (size_t c0 = 0; c0 < C; c0 += REF_CBLK) {
            size_t c1 = REF_MIN(c0 + REF_CBLK, C);
            for (size_t i = 0; i < N; i++) {
                const REAL *x = inp + i * C, *go = dout + i * C;
                for (size_t c = c0; c < c1; c++) dw[c] += go[c] * x[c] * rstd[i];
            }
        }
    }
}

/* Rotary position embedding, in place, HF's rotate_half pairing: in each of the first nheads heads (hs wide) of
 * each row of x [R, W], channel d < hs/2 pairs with d + hs/2 and rotates by angle a = pos[r] inv_freq[d]:
 *   x1' = x1 cos a - x2 sin a;   x2' = x2 cos a + x1 sin a.
 * inverse = 1 rotates by -a: the transpose of the rotation, i.e. the backward of the op applied to a gradient.
 * The angle is formed in REAL (fp32 as HF does: inv_freq * position in float, then cos/sin). */
void FN(rope)(REF_BE REAL *x, const int32_t *pos, const REAL *inv_freq, size_t R, size_t W, size_t nheads, size_t hs,
              int inverse) {
    size_t half = hs / 2;
    GK_OMP(omp parallel for schedule(static) if (R * nheads * hs >= REF_PAR_MIN))
    for (size_t r = 0; r < R; r++) {
        REAL p = (REAL)pos[r];
        for (size_t d = 0; d < half; d++) {
            REAL a = p * inv_freq[d];
            REAL cs = R_COS(a), sn = inverse ? -R_SIN(a) : R_SIN(a);
            for (size_t h = 0; h < nheads; h++) {
                REAL *v = x + r * W + h * hs;
                REAL x1 = v[d], x2 = v[d + half];
                v[d] = x1 * cs - x2 * sn;
                v[d + half] = x2 * cs + x1 * sn;
            }
        }
    }
}

/* Grouped-query attention's key/value sharing: qkv [R, (NH + 2 NKV) hs] -> out [R, 3 NH hs] (the multi-head layout
 * the attention ops take), query head h reading key/value head h / (NH / NKV). */
void FN(kv_expand_fwd)(REF_BE REAL *out, const REAL *qkv, size_t R, size_t NH, size_t NKV, size_t hs) {
    size_t W = (NH + 2 * NKV) * hs, C = NH * hs, g = NH / NKV;
    GK_OMP(omp parallel for schedule(static) if (R * C >= REF_PAR_MIN))
    for (size_t r = 0; r < R; r++) {
        const REAL *in = qkv + r * W;
        REAL *o = out + r * 3 * C;
        for (size_t c = 0; c < C; c++) o[c] = in[c];
        for (size_t h = 0; h < NH; h++)
            for (size_t d = 0; d < hs; d++) {
                o[C + h * hs + d] = in[C + (h / g) * hs + d];
                o[2 * C + h * hs + d] = in[C + NKV * hs + (h / g) * hs + d];
            }
    }
}

/* dqkv [R, (NH + 2 NKV) hs] += the expansion's transpose of dout [R, 3 NH hs] (a key/value head sums its group). */
void FN(kv_expand_bwd)(REF_BE REAL *dqkv, const REAL *dout, size_t R, size_t NH, size_t NKV, size_t hs) {
    size_t W = (NH + 2 * NKV) * hs, C = NH * hs, g = NH / NKV;
    GK_OMP(omp parallel for schedule(static) if (R * C >= REF_PAR_MIN))
    for (size_t r = 0; r < R; r++) {
        REAL *d = dqkv + r * W;
        const REAL *go = dout + r * 3 * C;
        for (size_t c = 0; c < C; c++) d[c] += go[c];
        for (size_t h = 0; h < NH; h++)
            for (size_t e = 0; e < hs; e++) {
                d[C + (h / g) * hs + e] += go[C + h * hs + e];
                d[C + NKV * hs + (h / g) * hs + e] += go[2 * C + h * hs + e];
            }
    }
}

/* SwiGLU: out = silu(gate) * up, silu(g) = g / (1 + exp(-g)).  n elements. */
void FN(swiglu_fwd)(REF_BE REAL *out, const REAL *gate, const REAL *up, size_t n) {
    GK_OMP(omp parallel for schedule(static) if (n >= REF_PAR_MIN))
    for (size_t i = 0; i < n; i++) {
        REAL g = gate[i];
        out[i] = g / (1 + R_EXP(-g)) * up[i];
    }
}

/* dgate += dout up silu'(g), silu'(g) = sig (1 + g (1 - sig));  dup += dout silu(g).  Either may be NULL. */
void FN(swiglu_bwd)(REF_BE REAL *dgate, REAL *dup, const REAL *dout, const REAL *gate, const REAL *up, size_t n) {
    GK_OMP(omp parallel for schedule(static) if (n >= REF_PAR_MIN))
    for (size_t i = 0; i < n; i++) {
        REAL g = gate[i], sg = 1 / (1 + R_EXP(-g));
        if (dgate) dgate[i] += dout[i] * up[i] * sg * (1 + g * (1 - sg));
        if (dup) dup[i] += dout[i] * g * sg;
    }
}

#undef REF_PAR_MIN
#undef REF_CBLK
#undef REF_MIN
