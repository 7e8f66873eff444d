/* grpo.c: GRPO with verifiable rewards (Shao et al. 2024) — `gptkit grpo`.
 *
 * One iteration:
 *   1. rollout   P prompts x G responses from the policy through the engine (one prefill per prompt, pure
 *                temperature sampling, stop at <|end|> or max_new tokens);
 *   2. reward    each reply checked against its prompt's known answer (grpo_reward.c): correct_reward for a
 *                correct answer, format_reward for a reply that ends and keeps the prompt's format;
 *   3. advantage per group: (r - mean) / (std + eps) on every token of the response — no value model;
 *   4. old / ref the policy's log-probs at rollout time (recomputed in the batched path the update uses, so
 *                the first minibatch's ratios are exactly 1) and the frozen reference's;
 *   5. update    epochs passes over the rollouts in shuffled minibatches: the clipped ratio objective with the
 *                k3 KL penalty inside the loss (grpo_loss.c), one AdamW step per minibatch.
 * Unlike PPO the KL is not folded into the reward, and there is no value model to train or to load: the group
 * mean is the baseline. Log-probs are of the tempered distribution softmax(logits / T), as PPO's.
 *
 * Across ranks (mpirun, src/dist) as PPO: every rank draws every prompt and seed but generates only its share
 * of the prompts, the rollouts are all-gathered (rewards and group advantages are then the one process's, on
 * every rank), the old and reference log-probs are computed for a share of the rollouts each and all-gathered,
 * and each update minibatch is split across ranks, weighted by what the loss averages over (train_stage_weigh).
 *
 * Per-token arrays are indexed by the position that predicts the token (train.h). OUT holds the policy (a
 * plain LM checkpoint) and its resume state; the prompt order and RNG are in it, so --resume is exact.
 */
#include "train/train.h"
#include "kern/kern.h"
#include "infer/infer.h"
#include "dist/dist.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const grpo_opts *o;
    gpt_model *policy, *ref;
    train_lm *lp_pol, *lp_ref;
    struct engine *eng;        /* held-out accuracy and samples */
    struct engine *reng;       /* rollouts: the whole batch at once */
    tok_tokenizer *tok;
    chat_specials sp;
    grpo_set set, val;
    tok_ids *pids; uint32_t *pitem;   /* rendered prompts that fit, and their line in set */
    size_t n_pids;
    size_t P, G, N, MB;
    train_order ord;
    uint32_t *order;                  /* [N] rollout order of an update epoch */
    /* this iteration's rollouts */
    rlhf_seq *seqs; int *ended;
    float *reward, *adv;              /* [N] */
    size_t *off;                      /* [N + 1] response token offsets */
    float *old, *reflp;               /* [off[N]] */
    char *sample;                     /* the first reply (for the sample hook) */
    double sample_reward;
    grpo_result *res;
} grpo_ctx;

void grpo_result_free(grpo_result *r) {
    if (!r) return;
    free(r->log);
    r->log = NULL;
}

static void rollouts_free(grpo_ctx *c) {
    if (c->seqs) for (size_t i = 0; i < c->N; i++) rlhf_seq_free(&c->seqs[i]);
    free(c->seqs); free(c->ended); free(c->reward); free(c->adv); free(c->off); free(c->old); free(c->reflp); free(c->sample);
    c->seqs = NULL; c->ended = NULL; c->reward = c->adv = c->old = c->reflp = NULL; c->off = NULL; c->sample = NULL;
}

static void ctx_free(grpo_ctx *c) {
    rollouts_free(c);
    train_lm_free(c->lp_pol); train_lm_free(c->lp_ref);
    if (c->eng) engine_free(c->eng);
    if (c->reng) engine_free(c->reng);
    gpt_free(c->ref);   /* first: with LoRA it is a view of the policy's base */
    gpt_free(c->policy);
    for (size_t i = 0; i < c->n_pids; i++) tok_ids_free(&c->pids[i]);
    free(c->pids); free(c->pitem);
    grpo_set_free(&c->set); grpo_set_free(&c->val);
    tok_free(c->tok);
    train_order_free(&c->ord); free(c->order);
}

/* Per-token log-probs of every rollout through lp, minibatch by minibatch, into dst at the rollouts' offsets.
 * Under several ranks each computes a share of the rollouts and the shares are all-gathered. */
static void logprob_pass(grpo_ctx *c, train_stage *s, train_lm *lp, float *dst) {
    size_t r0, r1;
    train_stage_share(s, c->N, &r0, &r1);
    for (size_t i0 = r0; i0 < r1; i0 += c->MB) {
        size_t k = r1 - i0 < c->MB ? r1 - i0 : c->MB;
        int32_t *in, *tg;
        size_t T = rlhf_lm_batch(c->seqs + i0, k, &in, &tg), BT = k * T;
        float *rows = gk_malloc(BT * sizeof(float));
        train_lm_logprobs(lp, in, tg, k, T, c->o->temperature, rows, NULL);
        for (size_t j = 0; j < k; j++) {
            size_t q = c->off[i0 + j];
            for (size_t t = 0; t < T; t++) if (tg[j * T + t] >= 0) dst[q++] = rows[j * T + t];
        }
        free(in); free(tg); free(rows);
    }
    if (s->nranks > 1) {
        size_t tot;
        float *all = dist_allgatherv(dst + c->off[r0], (c->off[r1] - c->off[r0]) * sizeof(float), &tot);
        GK_CHECK(tot == c->off[c->N] * sizeof(float), "grpo: gathered %zu log-probs, expected %zu", tot / sizeof(float), c->off[c->N]);
        memcpy(dst, all, tot);
        free(all);
    }
}

/* Under several ranks: every rank's rollouts [lo, hi) (its share of the prompts, times G) into every rank's
 * seqs / ended, in rollout order. */
static void gather_rollouts(grpo_ctx *c, train_stage *s, size_t lo, size_t hi) {
    if (s->nranks < 2) return;
    size_t n = hi - lo, nids = 0, tot;
    double *hdr = gk_malloc((n ? n : 1) * 3 * sizeof(double));
    for (size_t i = lo; i < hi; i++) {
        double *h = hdr + 3 * (i - lo);
        h[0] = (double)c->seqs[i].n; h[1] = (double)c->seqs[i].prompt_len; h[2] = c->ended[i];
        nids += c->seqs[i].n;
    }
    int32_t *ids = gk_malloc((nids ? nids : 1) * sizeof(int32_t));
    for (size_t i = lo, q = 0; i < hi; q += c->seqs[i].n, i++) memcpy(ids + q, c->seqs[i].ids, c->seqs[i].n * sizeof(int32_t));
    double *H = dist_allgatherv(hdr, n * 3 * sizeof(double), &tot);
    GK_CHECK(tot == c->N * 3 * sizeof(double), "grpo: gathered %zu rollouts, expected %zu", tot / (3 * sizeof(double)), c->N);
    int32_t *I = dist_allgatherv(ids, nids * sizeof(int32_t), &tot);
    for (size_t i = 0, q = 0; i < c->N; i++) {
        rlhf_seq_free(&c->seqs[i]);
        const double *h = H + 3 * i;
        c->seqs[i].n = (size_t)h[0]; c->seqs[i].prompt_len = (size_t)h[1]; c->ended[i] = (int)h[2];
        c->seqs[i].ids = gk_malloc((c->seqs[i].n ? c->seqs[i].n : 1) * sizeof(int32_t));
        memcpy(c->seqs[i].ids, I + q, c->seqs[i].n * sizeof(int32_t));
        q += c->seqs[i].n;
    }
    free(hdr); free(ids); free(H); free(I);
}

/* 1-2. Rollouts and their rewards. Returns 0, 1 if Ctrl-C came first (RNG and prompt position restored), -1. */
static int grpo_rollouts(grpo_ctx *c, train_stage *s, grpo_step_log *L, gk_err *err) {
    gk_rng rng_save = s->st.rng;
    uint64_t epoch_save = c->ord.epoch, pos_save = c->ord.pos;
    rollouts_free(c);
    size_t N = c->N;
    c->seqs = gk_calloc(N, sizeof *c->seqs);
    c->ended = gk_calloc(N, sizeof(int));
    const grpo_task **task = gk_malloc(N * sizeof *task);
    /* this rank's prompts [plo, phi); the prompt order and the seeds advance over all P on every rank */
    size_t plo, phi;
    train_stage_share(s, c->P, &plo, &phi);
    tok_ids *pr = gk_malloc(c->P * sizeof *pr);
    uint64_t *seed = gk_malloc(c->P * sizeof *seed);
    for (size_t p = 0; p < c->P; p++) {
        uint32_t k = train_order_next(&c->ord, 1, 1, NULL)[0];
        pr[p] = c->pids[k];
        for (size_t g = 0; g < c->G; g++) task[p * c->G + g] = &c->set.tasks[c->pitem[k]];
        seed[p] = gk_rng_u64(&s->st.rng);
    }
    /* this rank's prompts, decoded together */
    int rc = rlhf_generate_groups(c->reng, pr + plo, phi - plo, c->G, (size_t)c->o->max_new, c->o->temperature,
                                  seed + plo, c->seqs + plo * c->G, c->ended + plo * c->G, NULL, err);
    free(pr); free(seed);
    if (rc) { free(task); return -1; }
    /* every rank stops when any rank saw Ctrl-C */
    if (dist_any(gk_sigint_pending())) {
        s->st.rng = rng_save; c->ord.epoch = epoch_save; c->ord.pos = pos_save;
        free(task);
        return 1;
    }
    gather_rollouts(c, s, plo * c->G, phi * c->G);
    c->reward = gk_malloc(N * sizeof(float)); c->adv = gk_malloc(N * sizeof(float));
    c->off = gk_malloc((N + 1) * sizeof(size_t));
    c->off[0] = 0;
    double rs = 0, cs = 0, fs = 0, ls = 0, es = 0, tr = gk_now();
    for (size_t i = 0; i < N; i++) {
        tok_bytes t = {0};
        rlhf_response_text(c->tok, c->sp.end, &c->seqs[i], &t);
        grpo_reward_out r;
        grpo_reward(task[i], (const char *)t.data, c->ended[i], c->o->correct_reward, c->o->format_reward, &r);
        c->reward[i] = (float)r.reward;
        rs += r.reward; cs += r.correct; fs += r.format; es += c->ended[i];
        size_t n = c->seqs[i].n - c->seqs[i].prompt_len;
        ls += (double)n;
        c->off[i + 1] = c->off[i] + n;
        if (i == 0) { c->sample = gk_strdup((const char *)t.data); c->sample_reward = r.reward; }
        tok_bytes_free(&t);
    }
    free(task);
    L->t_reward = gk_now() - tr;
    L->reward = rs / (double)N; L->accuracy = cs / (double)N; L->format = fs / (double)N;
    L->resp_len = ls / (double)N; L->ended = es / (double)N;
    /* 3. group-relative advantages, and how much signal the groups carry */
    rlhf_grpo_advantages(c->reward, c->P, c->G, c->o->adv_eps, c->adv);
    double sds = 0, zero = 0;
    for (size_t p = 0; p < c->P; p++) {
        const float *x = c->reward + p * c->G;
        double m = 0, v = 0;
        int same = 1;
        for (size_t g = 0; g < c->G; g++) { m += x[g]; same &= x[g] == x[0]; }
        m /= (double)c->G;
        for (size_t g = 0; g < c->G; g++) v += (x[g] - m) * (x[g] - m);
        sds += c->G > 1 ? sqrt(v / (double)(c->G - 1)) : 0;
        zero += same;
    }
    L->reward_std = sds / (double)c->P; L->zero_std = zero / (double)c->P;
    return 0;
}

/* 4. Old and reference log-probs; the rollout-time KL (sum of logp - ref per response, and k3 per token). */
static void grpo_old_ref(grpo_ctx *c, train_stage *s, grpo_step_log *L) {
    size_t NT = c->off[c->N], cap = NT ? NT : 1;
    c->old = gk_malloc(cap * sizeof(float)); c->reflp = gk_malloc(cap * sizeof(float));
    logprob_pass(c, s, c->lp_pol, c->old);
    double ts = gk_now();
    logprob_pass(c, s, c->lp_ref, c->reflp);
    L->t_ref = gk_now() - ts;
    double kl = 0;
    for (size_t q = 0; q < NT; q++) kl += (double)c->old[q] - (double)c->reflp[q];
    L->kl = kl / (double)c->N;
    rlhf_grpo_stats st;
    rlhf_grpo_loss(c->old, c->old, c->reflp, c->off, c->adv, c->N, c->o->clip_eps, c->o->beta, c->o->token_norm, NULL, &st);
    L->kl_k3 = st.kl;
}

/* 5. One minibatch (rollouts idx[0..k)): current log-probs, the loss and its gradient, one AdamW step. Under
 * several ranks this rank takes rollouts [lo, hi) of the minibatch: its loss is a mean over its tokens
 * (token_norm) or responses, weighted across ranks by them; clip_frac and approx_kl by tokens. */
static void grpo_minibatch(grpo_ctx *c, train_stage *s, const uint32_t *idx, size_t k, float lr, rlhf_grpo_stats *sum) {
    if (s->nranks > 1) {
        size_t lo, hi;
        train_stage_share(s, k, &lo, &hi);
        idx += lo; k = hi - lo;
        if (k == 0) {
            /* no share: no gradient, but every collective of the update */
            double v[3] = {0}, w[3] = {0};
            train_stage_zero(s, 0);
            train_stage_weigh(s, 0, 0, v, 1);
            train_stage_sum(s, w, 3);
            train_stage_update(s, 0, lr);
            sum->loss += v[0];
            sum->clip_frac += w[2] > 0 ? w[0] / w[2] : 0; sum->approx_kl += w[2] > 0 ? w[1] / w[2] : 0;
            return;
        }
    }
    rlhf_seq *ms = gk_malloc(k * sizeof *ms);
    size_t *off = gk_malloc((k + 1) * sizeof(size_t));
    float *adv = gk_malloc(k * sizeof(float));
    off[0] = 0;
    for (size_t j = 0; j < k; j++) {
        ms[j] = c->seqs[idx[j]];
        adv[j] = c->adv[idx[j]];
        off[j + 1] = off[j] + (c->off[idx[j] + 1] - c->off[idx[j]]);
    }
    size_t nt = off[k], cap = nt ? nt : 1;
    float *cur = gk_malloc(cap * sizeof(float)), *old = gk_malloc(cap * sizeof(float)), *ref = gk_malloc(cap * sizeof(float));
    float *d = gk_malloc(cap * sizeof(float));
    int32_t *in, *tg;
    size_t T = rlhf_lm_batch(ms, k, &in, &tg), BT = k * T;
    float *rows = gk_malloc(BT * sizeof(float));
    /* gather the rollout-time arrays in the minibatch's row order (rows of a sequence are in token order) */
    for (size_t j = 0; j < k; j++) {
        size_t src = c->off[idx[j]], n = c->off[idx[j] + 1] - src;
        memcpy(old + off[j], c->old + src, n * sizeof(float));
        memcpy(ref + off[j], c->reflp + src, n * sizeof(float));
    }
    train_stage_zero(s, 0);
    train_lm_logprobs(c->lp_pol, in, tg, k, T, c->o->temperature, rows, NULL);
    size_t q = 0;
    for (size_t r = 0; r < BT; r++) if (tg[r] >= 0) cur[q++] = rows[r];
    rlhf_grpo_stats st;
    rlhf_grpo_loss(cur, old, ref, off, adv, k, c->o->clip_eps, c->o->beta, c->o->token_norm, d, &st);
    q = 0;
    for (size_t r = 0; r < BT; r++) rows[r] = tg[r] >= 0 ? d[q++] : 0.0f;
    train_lm_backward(c->lp_pol, rows);
    if (s->nranks > 1) {
        double v[1] = { st.loss }, w[3] = { st.clip_frac * (double)nt, st.approx_kl * (double)nt, (double)nt };
        train_stage_weigh(s, 0, c->o->token_norm ? (double)nt : (double)k, v, 1);
        train_stage_sum(s, w, 3);
        st.loss = v[0];
        st.clip_frac = w[2] > 0 ? w[0] / w[2] : 0; st.approx_kl = w[2] > 0 ? w[1] / w[2] : 0;
    }
    train_stage_update(s, 0, lr);
    sum->loss += st.loss; sum->clip_frac += st.clip_frac; sum->approx_kl += st.approx_kl;
    free(ms); free(off); free(adv); free(cur); free(old); free(ref); free(d); free(in); free(tg); free(rows);
}

static int grpo_iterate(void *ctx, train_stage *s, long it, train_step_out *out, gk_err *err) {
    grpo_ctx *c = ctx;
    const grpo_opts *o = c->o;
    grpo_step_log L;
    memset(&L, 0, sizeof L);
    double ts = gk_now();
    int r = grpo_rollouts(c, s, &L, err);
    if (r) return r;
    L.t_rollout = gk_now() - ts - L.t_reward;
    ts = gk_now();
    grpo_old_ref(c, s, &L);
    float lr = o->warmup > 0 && it < o->warmup ? o->lr * (float)(it + 1) / (float)o->warmup : o->lr;
    rlhf_grpo_stats sum = {0};
    long nmb = 0;
    /* --skip-no-signal (DAPO's dynamic-sampling filter, without the resampling): responses of groups whose
     * rewards are all equal (A = 0) are left out of the update, so no optimizer step is made of the KL term alone
     * (Adam would scale that small gradient up to a full step) and the per-response mean runs over the responses
     * that carry a signal */
    size_t nu = 0;
    for (size_t i = 0; i < c->N; i++) {
        int flat = 1;
        for (size_t g = 0, g0 = i / c->G * c->G; g < c->G; g++) flat &= c->reward[g0 + g] == c->reward[g0];
        if (!(o->skip_no_signal && flat)) c->order[nu++] = (uint32_t)i;
    }
    for (long ep = 0; ep < o->epochs && nu; ep++) {
        gk_rng_shuffle_u32(&s->st.rng, c->order, nu);
        for (size_t i0 = 0; i0 < nu; i0 += c->MB, nmb++)
            grpo_minibatch(c, s, c->order + i0, nu - i0 < c->MB ? nu - i0 : c->MB, lr, &sum);
    }
    L.t_update = gk_now() - ts - L.t_ref;
    double dn = nmb ? (double)nmb : 1.0;
    L.loss = sum.loss / dn; L.clip_frac = sum.clip_frac / dn; L.approx_kl = sum.approx_kl / dn;
    L.updated = (double)nu / (double)c->N;
    c->res->log[it - s->step0] = L;
    c->res->iters_done = it + 1 - s->step0;
    out->loss = L.loss;
    out->tokens = (double)c->off[c->N];
    const char *keys[18] = { "reward", "accuracy", "format", "reward_std", "zero_std", "kl", "kl_k3", "loss", "clip_frac",
                             "approx_kl", "resp_len", "ended", "updated", "lr", "t_rollout", "t_reward", "t_ref", "t_update" };
    double vals[18] = { L.reward, L.accuracy, L.format, L.reward_std, L.zero_std, L.kl, L.kl_k3, L.loss, L.clip_frac,
                        L.approx_kl, L.resp_len, L.ended, L.updated, lr, L.t_rollout, L.t_reward, L.t_ref, L.t_update };
    for (int i = 0; i < 18; i++) train_put(out->post, keys[i], i >= 14 ? "%.4f" : "%.6g", vals[i]);
    snprintf(out->hpost, sizeof out->hpost,
             "reward %.3f | acc %.3f | fmt %.2f | kl %.3f | k3 %.4f | loss %+.4f | clip %.3f | no-signal %.2f | len %.1f | %.1fs",
             L.reward, L.accuracy, L.format, L.kl, L.kl_k3, L.loss, L.clip_frac, L.zero_std, L.resp_len,
             L.t_rollout + L.t_reward + L.t_ref + L.t_update);
    return 0;
}

static int grpo_sample(void *ctx, train_stage *s, long it, gk_err *err) {
    (void)err;
    grpo_ctx *c = ctx;
    const char *txt = c->sample ? c->sample : "";
    cJSON *f = cJSON_CreateObject();
    cJSON_AddNumberToObject(f, "step", (double)it);
    cJSON_AddStringToObject(f, "sample", txt);
    train_put(f, "sample_reward", "%.5g", c->sample_reward);
    char *h = gk_malloc(strlen(txt) + 48);
    sprintf(h, "sample (reward %.2f): %s", c->sample_reward, txt);
    for (char *p = h; *p; p++) if ((unsigned char)*p < 0x20) *p = ' ';
    train_log_event(&s->lg, f, h);
    free(h);
    return 0;
}

/* Held-out greedy accuracy (an event; the final one is the result's val_acc). */
static int grpo_eval(void *ctx, train_stage *s, long step, int final, gk_err *err) {
    grpo_ctx *c = ctx;
    if (!c->val.n) return 0;
    double acc = grpo_accuracy(c->eng, c->tok, &c->sp, &c->val, (size_t)c->o->val_n, (size_t)c->o->max_new, NULL, err);
    if (isnan(acc)) return -1;
    c->res->val_acc = acc;
    cJSON *f = cJSON_CreateObject();
    if (final) cJSON_AddStringToObject(f, "event", "final");
    cJSON_AddNumberToObject(f, "step", (double)step);
    train_put(f, "val_accuracy", "%.6g", acc);
    cJSON_AddNumberToObject(f, "val_n", (double)c->res->val_n);
    char h[128];
    snprintf(h, sizeof h, "held-out accuracy %.4f over %ld tasks (greedy)", acc, c->res->val_n);
    train_log_event(&s->lg, f, h);
    return 0;
}

static void grpo_tell(void *ctx, data_pos *pos) {
    const grpo_ctx *c = ctx;
    pos->epoch = c->ord.epoch; pos->pos = c->ord.pos;
}

static int grpo_load(grpo_ctx *c, char **tok_rec, char **base_dir, gk_err *err) {
    const grpo_opts *o = c->o;
    /* with --lora-*, the reference is the policy's base with the adapters off (no second copy) */
    if (train_policy_open("grpo", o->policy_dir, o->resume_dir, &o->lora, o->seed, o->json, &c->policy, &c->ref, tok_rec,
                          base_dir, err)) return -1;
    if (tok_load_recorded(*base_dir, *tok_rec, o->tokenizer, 1, &c->tok, err)) return -1;
    if (chat_specials_resolve(c->tok, (size_t)c->policy->cfg.vocab_size, &c->sp, err)) return -1;
    if (grpo_set_load(o->prompts, &c->set, err)) return -1;
    if (o->val && grpo_set_load(o->val, &c->val, err)) return -1;
    rlhf_chat ch = { c->tok, c->sp };
    c->pids = gk_calloc(c->set.n, sizeof *c->pids);
    c->pitem = gk_calloc(c->set.n, sizeof *c->pitem);
    size_t too_long = 0, lim = (size_t)c->policy->cfg.n_ctx;
    for (size_t i = 0; i < c->set.n; i++) {
        tok_ids ids = {0};
        rlhf_render_prompt(&ch, &c->set.items[i], &ids);
        if (ids.n + (size_t)o->max_new + 1 > lim) { too_long++; tok_ids_free(&ids); continue; }
        c->pitem[c->n_pids] = (uint32_t)i;
        c->pids[c->n_pids++] = ids;
    }
    if (too_long) gk_warn("grpo: skipped %zu prompt(s) that leave no room for %ld new tokens in the context\n", too_long, o->max_new);
    if (c->n_pids == 0) return gk_errf(err, "%s: no prompt fits the context with --max-new %ld", o->prompts, o->max_new);
    return 0;
}

int train_grpo(const grpo_opts *o, grpo_result *res, gk_err *err) {
    memset(res, 0, sizeof *res);
    res->val_acc0 = res->val_acc = NAN;
    if (!o->policy_dir) return gk_errf(err, "no policy: pass --policy SFT_DIR");
    if (!o->prompts) return gk_errf(err, "no prompts: pass --prompts PROMPTS.jsonl");
    if (!o->out) return gk_errf(err, "no output directory: pass --out DIR");
    if (o->iters <= 0 || o->batch_prompts <= 0 || o->group <= 0 || o->max_new <= 0 || o->epochs <= 0 || o->minibatch <= 0)
        return gk_errf(err, "--iters, --batch, --group, --max-new, --grpo-epochs and --minibatch must be positive");
    if (o->group < 2) return gk_errf(err, "--group must be at least 2: the advantages are relative to the group");
    if (!(o->temperature > 0)) return gk_errf(err, "--temperature must be > 0 (GRPO samples; greedy groups have no spread)");
    grpo_ctx c;
    memset(&c, 0, sizeof c);
    c.o = o; c.res = res;
    train_stage s;
    memset(&s, 0, sizeof s);
    char *tok_rec = NULL, *base_dir = NULL;
    int rc = -1;
    if (grpo_load(&c, &tok_rec, &base_dir, err)) goto done;
    train_stage_cfg sc = {
        .name = "grpo", .n_models = 1, .opt = &o->opt, .rng_seed = o->seed ^ 0x6E90ULL, .total = o->iters,
        .json = o->json, .sample_every = o->sample_every, .sample_first = 1, .save_every = o->save_every,
        .stop_at = o->stop_at, .val_every = o->val_every, .eval_last = 1, .saved_what = "policy",
        .models = { { .m = c.policy, .out = o->out, .resume = o->resume_dir, .tokenizer = o->tokenizer ? o->tokenizer : tok_rec } },
    };
    if (train_stage_open(&s, &sc, err)) goto done;
    c.lp_pol = train_lm_new(c.policy);
    c.lp_ref = train_lm_new(c.ref);
    c.eng = engine_new(c.policy, c.tok, (size_t)o->group, 0);
    res->log = gk_calloc((size_t)(o->iters - s.step0 > 0 ? o->iters - s.step0 : 1), sizeof *res->log);
    c.P = (size_t)o->batch_prompts < c.n_pids ? (size_t)o->batch_prompts : c.n_pids;
    c.G = (size_t)o->group; c.N = c.P * c.G; c.MB = (size_t)o->minibatch < c.N ? (size_t)o->minibatch : c.N;
    size_t plo, phi;
    train_stage_share(&s, c.P, &plo, &phi);
    c.reng = rlhf_rollout_engine(c.policy, c.tok, phi - plo, c.G, c.pids, c.n_pids, (size_t)o->max_new);
    c.order = gk_malloc(c.N * sizeof(uint32_t));
    train_order_init(&c.ord, c.n_pids, o->seed * 7919ULL + 21, s.st.pos.epoch, s.st.pos.pos);
    if (c.val.n) res->val_n = (long)(o->val_n > 0 && (size_t)o->val_n < c.val.n ? (size_t)o->val_n : c.val.n);
    if (!o->json)
        gk_log("grpo: policy %d layers x %d wide (%.2fM params); %zu prompts; %zu prompts x %zu responses per iteration, "
               "%ld epoch(s) of minibatch %zu; beta %.4g, clip %.2g, %s normalisation\n", c.policy->cfg.n_layer,
               c.policy->cfg.n_embd, (double)c.policy->num_params / 1e6, c.n_pids, c.P, c.G, o->epochs, c.MB, o->beta,
               o->clip_eps, o->token_norm ? "token" : "per-response");
    if (c.val.n && s.step0 == 0) {   /* the starting point: the SFT model's held-out accuracy */
        double acc = grpo_accuracy(c.eng, c.tok, &c.sp, &c.val, (size_t)o->val_n, (size_t)o->max_new, NULL, err);
        if (isnan(acc)) goto done;
        res->val_acc0 = acc;
        cJSON *f = cJSON_CreateObject();
        cJSON_AddStringToObject(f, "event", "start");
        train_put(f, "val_accuracy", "%.6g", acc);
        cJSON_AddNumberToObject(f, "val_n", (double)res->val_n);
        char h[128];
        snprintf(h, sizeof h, "held-out accuracy at the start %.4f over %ld tasks (greedy)", acc, res->val_n);
        train_log_event(&s.lg, f, h);
    }
    train_stage_hooks h = { .ctx = &c, .iterate = grpo_iterate, .sample = grpo_sample, .tell = grpo_tell,
                            .eval = c.val.n ? grpo_eval : NULL };
    rc = train_stage_run(&s, &h, grpo_opts_to_json(o), err);
    res->seconds = s.seconds;
    res->interrupted = s.interrupted;
done:
    train_stage_close(&s);
    ctx_free(&c);
    free(tok_rec); free(base_dir);
    return rc;
}
