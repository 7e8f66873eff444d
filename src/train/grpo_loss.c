/* grpo_loss.c: the loss math of GRPO (Shao et al. 2024, DeepSeekMath, eq. 3 with outcome supervision) as plain
 * functions on host arrays, like rlhf_loss.c for PPO: tests/test_rlhf.c compares them, value and gradient,
 * with tests/ref/gen_grpo_fixtures.py and checks the gradient by finite differences.
 *
 * Advantages (no value model): the G responses to one prompt form a group; every token of response i gets
 *   A_i = (r_i - mean(r)) / (std(r) + eps)
 * with std the sample standard deviation of the group's rewards (denominator G - 1; torch.std's default).
 * A group whose rewards are all equal gets A = 0: it teaches nothing but the KL term.
 *
 * Objective (to maximise), per token t of response i, ratio rho = pi / pi_old:
 *   J_it = min(rho A_i, clip(rho, 1 - eps, 1 + eps) A_i) - beta D_it
 *   D_it = pi_ref / pi - log(pi_ref / pi) - 1 = exp(ref - logp) - (ref - logp) - 1      (k3: unbiased, >= 0)
 * Loss = -sum_i sum_t w_it J_it with the paper's weights w_it = 1 / (N |o_i|): the mean over a response's
 * tokens, then the mean over the N responses ("seq"); or w_it = 1 / sum_i |o_i|, the mean over all tokens of
 * the batch ("token", DAPO's choice: long responses weigh more). Gradient w.r.t. logp_t:
 *   w_it ( -A_i rho [unclipped] + beta (1 - exp(ref - logp)) )
 * (clipped: the clipped term is constant in logp, as in PPO).
 */
#include "train/train.h"

#include <math.h>
#include <string.h>

void rlhf_grpo_advantages(const float *r, size_t ngroups, size_t G, float eps, float *adv) {
    for (size_t g = 0; g < ngroups; g++) {
        const float *x = r + g * G;
        double mean = 0, var = 0;
        for (size_t i = 0; i < G; i++) mean += x[i];
        mean /= (double)G;
        for (size_t i = 0; i < G; i++) { double d = x[i] - mean; var += d * d; }
        double sd = G > 1 ? sqrt(var / (double)(G - 1)) : 0;
        for (size_t i = 0; i < G; i++)
            adv[g * G + i] = G > 1 ? (float)(((double)x[i] - mean) / (sd + (double)eps)) : 0.0f;
    }
}

double rlhf_grpo_loss(const float *logp, const float *old_logp, const float *ref_logp, const size_t *off,
                      const float *adv, size_t nseq, float clip_eps, float beta, int token_norm, float *dlogp,
                      rlhf_grpo_stats *st) {
    double lo = 1.0 - (double)clip_eps, hi = 1.0 + (double)clip_eps;
    size_t ntok = off[nseq] - off[0], nonempty = 0;
    for (size_t i = 0; i < nseq; i++) nonempty += off[i + 1] > off[i];
    double loss = 0, kl = 0, clipped = 0, akl = 0;
    for (size_t i = 0; i < nseq; i++) {
        size_t a = off[i] - off[0], b = off[i + 1] - off[0], n = b - a;
        if (!n) continue;
        double w = token_norm ? 1.0 / (double)ntok : 1.0 / ((double)nonempty * (double)n);
        double A = adv[i];
        for (size_t t = a; t < b; t++) {
            double lr = (double)logp[t] - (double)old_logp[t];
            double rho = exp(lr), rc = rho < lo ? lo : rho > hi ? hi : rho;
            double u = -A * rho, c = -A * rc;
            int use_clip = c > u;                      /* max(u, c) = -min(rho A, clip(rho) A) */
            double dr = (double)ref_logp[t] - (double)logp[t];
            double k3 = exp(dr) - dr - 1.0;
            loss += w * ((use_clip ? c : u) + (double)beta * k3);
            kl += w * k3;
            clipped += use_clip;
            akl += 0.5 * lr * lr;
            if (dlogp) dlogp[t] = (float)(w * ((use_clip ? 0.0 : -A * rho) + (double)beta * (1.0 - exp(dr))));
        }
    }
    if (st) {
        st->loss = loss;
        st->kl = kl;
        st->clip_frac = ntok ? clipped / (double)ntok : 0;
        st->approx_kl = ntok ? akl / (double)ntok : 0;
    }
    return loss;
}
