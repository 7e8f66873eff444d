/* rlhf_loss.c: the loss math of reward modelling, PPO and DPO as plain functions on host arrays.
 *
 * Everything here is a pure function of its inputs (no model, no device), so tests/test_rlhf.c can compare
 * each one, value and gradient, with the PyTorch fixtures made by tests/ref/gen_rlhf_fixtures.py. The
 * training loops (rm.c, ppo.c, dpo.c) run the model, gather the rows these functions need, call them, and
 * hand the gradients back to the model's backward.
 *
 * Sums are accumulated in double; inputs and outputs are fp32.
 */
#include "train/train.h"
#include "kern/kern.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* -log sigmoid(x) = softplus(-x), stable for large |x|. */
static double neg_log_sigmoid(double x) {
    return x >= 0 ? log1p(exp(-x)) : -x + log1p(exp(x));
}
static double sigmoid(double x) {
    if (x >= 0) { double e = exp(-x); return 1.0 / (1.0 + e); }
    double e = exp(x); return e / (1.0 + e);
}

/* ---------------------------------------------------------------- reward model */

/* Groups: group g scores responses [first[g], first[g]+count[g]) of r, best first. Its pairs (i < j) say
 * response i beats response j. loss_g = mean over its pairs of -log sigmoid(r_i - r_j); loss = mean_g loss_g.
 *   d loss / d r_i += -sigmoid(-(r_i - r_j)) / (npairs_g * ngroups),  d / d r_j the opposite. */
double rlhf_rm_loss(const float *r, const size_t *first, const size_t *count, size_t ngroups, float *dr,
                    rlhf_rm_stats *st) {
    double loss = 0, correct = 0, margin = 0;
    size_t npairs = 0;
    if (dr) {
        size_t nr = 0;
        for (size_t g = 0; g < ngroups; g++) if (first[g] + count[g] > nr) nr = first[g] + count[g];
        memset(dr, 0, nr * sizeof(float));
    }
    size_t used = 0;
    for (size_t g = 0; g < ngroups; g++) used += count[g] >= 2;
    for (size_t g = 0; g < ngroups; g++) {
        size_t K = count[g], f = first[g];
        if (K < 2) continue;
        double np = (double)(K * (K - 1) / 2), lg = 0;
        for (size_t i = 0; i < K; i++)
            for (size_t j = i + 1; j < K; j++) {
                double d = (double)r[f + i] - (double)r[f + j];
                lg += neg_log_sigmoid(d);
                correct += d > 0 ? 1.0 : d == 0 ? 0.5 : 0.0;
                margin += d;
                npairs++;
                if (dr) {
                    double gd = -sigmoid(-d) / (np * (double)used);
                    dr[f + i] += (float)gd;
                    dr[f + j] -= (float)gd;
                }
            }
        loss += lg / np;
    }
    loss = used ? loss / (double)used : NAN;
    if (st) {
        st->loss = loss;
        st->npairs = npairs;
        st->correct = correct;
        st->accuracy = npairs ? correct / (double)npairs : NAN;
        st->margin = npairs ? margin / (double)npairs : NAN;
    }
    return loss;
}

/* ---------------------------------------------------------------- PPO pieces */

double rlhf_kl_rewards(const float *logp, const float *ref_logp, size_t n, float score, float beta, float *rewards) {
    double kl = 0;
    for (size_t t = 0; t < n; t++) {
        double d = (double)logp[t] - (double)ref_logp[t];
        kl += d;
        rewards[t] = (float)(-(double)beta * d);
    }
    if (n) rewards[n - 1] += score;
    return kl;
}

void rlhf_gae(const float *rewards, const float *values, size_t n, float gamma, float lambda, float *adv, float *ret) {
    double next_v = 0, next_a = 0;   /* the episode ends after the last token: V = 0, A = 0 beyond it */
    for (size_t k = n; k-- > 0;) {
        double delta = (double)rewards[k] + (double)gamma * next_v - (double)values[k];
        double a = delta + (double)gamma * (double)lambda * next_a;
        adv[k] = (float)a;
        ret[k] = (float)(a + (double)values[k]);
        next_v = values[k]; next_a = a;
    }
}

void rlhf_whiten(float *x, size_t n, int keep_mean) {
    if (n == 0) return;
    double mean = 0, var = 0;
    for (size_t i = 0; i < n; i++) mean += x[i];
    mean /= (double)n;
    for (size_t i = 0; i < n; i++) { double d = x[i] - mean; var += d * d; }
    var /= (double)n;
    double inv = 1.0 / sqrt(var + 1e-8);
    for (size_t i = 0; i < n; i++) x[i] = (float)(((double)x[i] - mean) * inv + (keep_mean ? mean : 0.0));
}

double rlhf_ppo_policy_loss(const float *logp, const float *old_logp, const float *adv, size_t n, float clip_eps,
                            float *dlogp, rlhf_ppo_stats *st) {
    double loss = 0, clipped = 0, akl = 0;
    double lo = 1.0 - (double)clip_eps, hi = 1.0 + (double)clip_eps;
    for (size_t t = 0; t < n; t++) {
        double lr = (double)logp[t] - (double)old_logp[t];
        double ratio = exp(lr), A = adv[t];
        double rc = ratio < lo ? lo : ratio > hi ? hi : ratio;
        double u = -A * ratio, c = -A * rc;
        /* max(u, c): the clipped term wins only when it is strictly larger; then the gradient is zero
         * (the clipped ratio is constant in logp there). */
        int use_clip = c > u;
        loss += use_clip ? c : u;
        clipped += use_clip;
        akl += 0.5 * lr * lr;
        if (dlogp) dlogp[t] = use_clip ? 0.0f : (float)(-A * ratio / (double)n);
    }
    loss = n ? loss / (double)n : 0;
    if (st) {
        st->loss = loss;
        st->clip_frac = n ? clipped / (double)n : 0;
        st->approx_kl = n ? akl / (double)n : 0;
    }
    return loss;
}

double rlhf_value_loss(const float *v, const float *old_v, const float *ret, size_t n, float clip, float *dv,
                       double *clip_frac) {
    double loss = 0, clipped = 0;
    for (size_t t = 0; t < n; t++) {
        double d = (double)v[t] - (double)old_v[t];
        double dc = d < -clip ? -clip : d > clip ? clip : d;
        double vc = (double)old_v[t] + dc;
        double e1 = (double)v[t] - ret[t], e2 = vc - ret[t];
        double l1 = e1 * e1, l2 = e2 * e2;
        int use_clip = l2 > l1;
        loss += 0.5 * (use_clip ? l2 : l1);
        clipped += use_clip;
        /* the clipped branch can win only where |v - old_v| >= clip, and there it is constant in v */
        if (dv) dv[t] = use_clip ? 0.0f : (float)(e1 / (double)n);
    }
    if (clip_frac) *clip_frac = n ? clipped / (double)n : 0;
    return n ? loss / (double)n : 0;
}

double rlhf_entropy_row(const float *logits, size_t V, float temperature) {
    double inv = temperature > 0 ? 1.0 / (double)temperature : 1.0;
    double mx = -INFINITY;
    for (size_t v = 0; v < V; v++) if (logits[v] * inv > mx) mx = logits[v] * inv;
    double z = 0, s = 0;
    for (size_t v = 0; v < V; v++) {
        double x = logits[v] * inv - mx, e = exp(x);
        z += e; s += e * x;
    }
    return log(z) - s / z;   /* H = log Z - E[x] with x the shifted logits */
}

/* ---------------------------------------------------------------- DPO */

double rlhf_dpo_loss(const float *pc, const float *pr, const float *rc, const float *rr, size_t n, float beta,
                     float *dpc, float *dpr, rlhf_dpo_stats *st) {
    double loss = 0, correct = 0, margin = 0, chosen = 0, rejected = 0;
    for (size_t i = 0; i < n; i++) {
        double ac = (double)beta * ((double)pc[i] - (double)rc[i]);   /* implicit rewards */
        double ar = (double)beta * ((double)pr[i] - (double)rr[i]);
        double z = ac - ar;
        loss += neg_log_sigmoid(z);
        correct += z > 0 ? 1.0 : z == 0 ? 0.5 : 0.0;
        margin += z; chosen += ac; rejected += ar;
        double g = -sigmoid(-z) * (double)beta / (double)n;
        if (dpc) dpc[i] = (float)g;
        if (dpr) dpr[i] = (float)(-g);
    }
    double dn = n ? (double)n : 1.0;
    loss = n ? loss / dn : NAN;
    if (st) {
        st->loss = loss;
        st->accuracy = n ? correct / dn : NAN;
        st->margin = margin / dn;
        st->reward_chosen = chosen / dn;
        st->reward_rejected = rejected / dn;
    }
    return loss;
}

/* ---------------------------------------------------------------- statistics */

void rlhf_wilson(double successes, double n, double z, double *lo, double *hi) {
    if (n <= 0) { *lo = 0; *hi = 1; return; }
    double p = successes / n, z2 = z * z;
    double den = 1 + z2 / n;
    double centre = (p + z2 / (2 * n)) / den;
    double half = z * sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / den;
    *lo = centre - half < 0 ? 0 : centre - half;
    *hi = centre + half > 1 ? 1 : centre + half;
}

void rlhf_kl_ctl_update(rlhf_kl_ctl *c, double kl, long n_steps) {
    if (!(c->target > 0) || c->horizon <= 0) return;
    double e = kl / c->target - 1.0;
    if (e > 0.2) e = 0.2;
    if (e < -0.2) e = -0.2;
    c->beta *= 1.0 + e * (double)n_steps / (double)c->horizon;
}

/* ---------------------------------------------------------------- LM batches of sequences */

size_t rlhf_lm_batch(const rlhf_seq *seqs, size_t n, int32_t **inputs, int32_t **targets) {
    size_t T = 1;
    for (size_t i = 0; i < n; i++) if (seqs[i].n > T + 1) T = seqs[i].n - 1;
    int32_t *in = gk_calloc(n * T, sizeof(int32_t)), *tg = gk_malloc(n * T * sizeof(int32_t));
    for (size_t i = 0; i < n * T; i++) tg[i] = -1;
    for (size_t i = 0; i < n; i++) {
        const rlhf_seq *s = &seqs[i];
        if (s->n < 2) continue;
        memcpy(in + i * T, s->ids, (s->n - 1) * sizeof(int32_t));
        size_t p0 = s->prompt_len ? s->prompt_len - 1 : 0;
        for (size_t p = p0; p + 1 < s->n; p++) tg[i * T + p] = s->ids[p + 1];
    }
    *inputs = in; *targets = tg;
    return T;
}

/* ---------------------------------------------------------------- value head at every row, with backward */

struct rlhf_vh {
    gpt_model *m;
    size_t cap, BT;
    float *r, *dh;   /* device [BT], [BT, C] */
};

rlhf_vh *rlhf_vh_new(gpt_model *m) {
    GK_CHECK(gpt_has_score_head(m), "rlhf_vh_new: the model has no score head");
    rlhf_vh *v = gk_calloc(1, sizeof *v);
    v->m = m;
    return v;
}

void rlhf_vh_free(rlhf_vh *v) {
    if (!v) return;
    kern_free(v->m->be, v->r); kern_free(v->m->be, v->dh);
    free(v);
}

void rlhf_vh_forward(rlhf_vh *v, const int32_t *inputs, size_t B, size_t T, float *values) {
    size_t BT = B * T, C = (size_t)v->m->cfg.n_embd;
    if (BT > v->cap) {
        kern_free(v->m->be, v->r); kern_free(v->m->be, v->dh);
        v->r = kern_alloc(v->m->be, BT * sizeof(float));
        v->dh = kern_alloc(v->m->be, BT * C * sizeof(float));
        v->cap = BT;
    }
    v->BT = BT;
    gpt_forward(v->m, inputs, B, T);
    gpt_score_head_fwd(v->m, v->r, gpt_hidden(v->m), BT);
    kern_download(v->m->be, values, v->r, BT * sizeof(float));
}

void rlhf_vh_backward(rlhf_vh *v, const float *dvalues) {
    size_t C = (size_t)v->m->cfg.n_embd;
    kern_upload(v->m->be, v->r, dvalues, v->BT * sizeof(float));
    kern_zero(v->m->be, v->dh, v->BT * C * sizeof(float));
    gpt_score_head_bwd(v->m, v->dh, v->r, gpt_hidden(v->m), v->BT);
    gpt_backward(v->m, v->dh);
}
