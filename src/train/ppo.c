/* ppo.c: RLHF with PPO against a reward model, on a KL leash to the SFT model; and `compare`.
 *
 * One iteration:
 *   1. rollout   P prompts x S samples from the policy through the engine (one prefill per prompt, pure
 *                temperature sampling, stop at <|end|> or max_new tokens);
 *   2. score     RM score of every response at its <|end|> (a response cut at max_new gets <|end|> appended
 *                for scoring and loses missing_end_penalty); the policy's per-token log-probs and entropy
 *                ("old" log-probs: recomputed in the same batched path the update uses, so ratios start at
 *                exactly 1) and the value model's values;
 *   3. reference the frozen SFT model's per-token log-probs;
 *   4. rewards   r_t = -beta (logp_t - ref_logp_t), + score on the last token; GAE (gamma, lambda) per
 *                response; advantages whitened over the batch's tokens;
 *   5. update    ppo_epochs passes over the rollouts in shuffled minibatches: the clipped surrogate
 *                (mean over the minibatch's tokens) -> policy AdamW step; the clipped value loss -> value
 *                AdamW step.
 *   6. beta      adaptive (Ziegler et al.) toward kl_target if set, else fixed.
 *
 * Value model: a separate model initialised from the reward model (trunk + scalar head read at every
 * position), not a value head on the policy trunk. Why: its start is informed (the RM already predicts the
 * final score from a prefix, so early advantages are not noise), the value loss cannot disturb the policy's
 * features, and the policy checkpoint stays a plain LM. It costs a second trunk forward/backward per
 * minibatch (InstructGPT and TRL's PPOTrainer make the same choice).
 *
 * Across ranks (mpirun, src/dist): every rank draws every prompt and sampling seed in the same order, but
 * generates, scores and evaluates (steps 1-3, the expensive part) only its contiguous share of the prompts;
 * the rollouts are then all-gathered, so steps 4 and 6 (whitening, KL statistics, the adaptive KL controller)
 * see the whole batch on every rank, exactly as one process does. Each update minibatch is split across ranks
 * (a share of its rollouts each), weighted by response tokens (train_stage_weigh).
 *
 * All per-token arrays are indexed by the position that predicts the token (see train.h).
 * Output: OUT/ holds the policy (a plain LM checkpoint) + resume state, OUT/value the value model + state.
 */
#include "train/train.h"
#include "kern/kern.h"
#include "infer/infer.h"
#include "dist/dist.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- rollouts */

int rlhf_generate_groups(struct engine *e, const tok_ids *prompts, size_t P, size_t n, size_t max_new, float temperature,
                         const uint64_t *seeds, rlhf_seq *out, int *ended, struct constrain *grammar, gk_err *err) {
    engine_gen_opts go;
    engine_gen_opts_default(&go);
    go.max_new = max_new;
    infer_sampling_default(&go.samp);
    go.samp.temperature = temperature;   /* pure sampling: no top-k / top-p / min-p / penalties */
    go.default_stops = 1;
    go.grammar = grammar;
    const int32_t **pp = gk_malloc((P ? P : 1) * sizeof *pp);
    size_t *pn = gk_malloc((P ? P : 1) * sizeof *pn);
    for (size_t p = 0; p < P; p++) { pp[p] = prompts[p].ids; pn[p] = prompts[p].n; }
    engine_seq *gs = gk_calloc(P * n > 0 ? P * n : 1, sizeof *gs);
    int rc = engine_generate_groups(e, pp, pn, P, n, &go, seeds, gs, err);
    for (size_t i = 0; rc == 0 && i < P * n; i++) {
        const tok_ids *pr = &prompts[i / n];
        out[i].n = pr->n + gs[i].n;
        out[i].prompt_len = pr->n;
        out[i].ids = gk_malloc((out[i].n ? out[i].n : 1) * sizeof(int32_t));
        memcpy(out[i].ids, pr->ids, pr->n * sizeof(int32_t));
        memcpy(out[i].ids + pr->n, gs[i].ids, gs[i].n * sizeof(int32_t));
        ended[i] = gs[i].finish == ENGINE_FINISH_STOP_TOKEN;
    }
    for (size_t i = 0; i < P * n; i++) engine_seq_free(&gs[i]);   /* zeroed where nothing was generated */
    free(gs); free(pp); free(pn);
    return rc;
}

int rlhf_generate(struct engine *e, const int32_t *prompt, size_t n_prompt, size_t n, size_t max_new,
                  float temperature, uint64_t seed, rlhf_seq *out, int *ended, struct constrain *grammar, gk_err *err) {
    tok_ids one = { .ids = (int32_t *)prompt, .n = n_prompt };
    return rlhf_generate_groups(e, &one, 1, n, max_new, temperature, &seed, out, ended, grammar, err);
}

struct engine *rlhf_rollout_engine(gpt_model *m, const tok_tokenizer *tok, size_t P, size_t n, const tok_ids *prompts,
                                   size_t n_prompts, size_t max_new) {
    size_t len = 0;
    for (size_t i = 0; i < n_prompts; i++) if (prompts[i].n > len) len = prompts[i].n;
    len += max_new;
    if (len > (size_t)m->cfg.n_ctx) len = (size_t)m->cfg.n_ctx;
    /* every rollout of the batch in flight at once, unless their cache would pass 1 GiB: then as many whole
     * groups as fit (the rest wait in the engine's queue), and never fewer than one */
    double per_seq = (double)gpt_kv_bytes_per_pos(&m->cfg) * (double)len;
    size_t groups = P ? P : 1, fit = (size_t)((double)(1u << 30) / (per_seq * (double)n));
    if (groups > fit) groups = fit ? fit : 1;
    return engine_new(m, tok, groups * n, len);
}

void rlhf_score_rollouts(gpt_model *rm, const rlhf_seq *seqs, const int *ended, size_t n, int32_t end_id, float *out) {
    rlhf_seq *tmp = gk_calloc(n, sizeof *tmp);
    for (size_t i = 0; i < n; i++) {
        tmp[i] = seqs[i];
        if (!ended[i]) {
            tmp[i].ids = gk_malloc((seqs[i].n + 1) * sizeof(int32_t));
            memcpy(tmp[i].ids, seqs[i].ids, seqs[i].n * sizeof(int32_t));
            tmp[i].ids[tmp[i].n++] = end_id;
        }
    }
    rlhf_score_seqs(rm, tmp, n, 16, out);
    for (size_t i = 0; i < n; i++) if (!ended[i]) free(tmp[i].ids);
    free(tmp);
}

void rlhf_response_text(const tok_tokenizer *tok, int32_t end_id, const rlhf_seq *s, tok_bytes *out) {
    size_t n = s->n - s->prompt_len;
    const int32_t *ids = s->ids + s->prompt_len;
    if (n && ids[n - 1] == end_id) n--;
    train_decode_text(tok, ids, n, out);
}

/* Control characters (newlines) to spaces: one line of a progress log. */
static void one_line(tok_bytes *t) {
    for (size_t i = 0; i + 1 < t->n; i++) if (t->data[i] < 0x20 || t->data[i] == 0x7f) t->data[i] = ' ';
}

void ppo_result_free(ppo_result *r) {
    if (!r) return;
    free(r->log);
    r->log = NULL;
}

/* ---------------------------------------------------------------- one rollout batch */

typedef struct {
    size_t n;                 /* rollouts */
    rlhf_seq *seqs;
    int *ended;
    float *score;             /* [n] RM score after the missing-end penalty */
    float *raw;               /* [n] RM score */
    /* per response token, concatenated rollout by rollout; off[i] = start of rollout i, len = off[n] */
    size_t *off;
    float *logp, *ref, *val, *adv, *ret, *ent;
} rollout_batch;

static void batch_free(rollout_batch *b) {
    for (size_t i = 0; i < b->n; i++) rlhf_seq_free(&b->seqs[i]);
    free(b->seqs); free(b->ended); free(b->score); free(b->raw); free(b->off);
    free(b->logp); free(b->ref); free(b->val); free(b->adv); free(b->ret); free(b->ent);
    memset(b, 0, sizeof *b);
}

/* Per-token values of rollouts idx[0..k) through lp (policy/ref log-probs) or vh (values), in minibatches of
 * mb; written into dst at each rollout's offsets. */
static void per_token_pass(train_lm *lp, rlhf_vh *vh, const rollout_batch *b, size_t mb, float temp,
                           float *dst, float *ent) {
    for (size_t i0 = 0; i0 < b->n; i0 += mb) {
        size_t k = b->n - i0 < mb ? b->n - i0 : mb;
        int32_t *in, *tg;
        size_t T = rlhf_lm_batch(b->seqs + i0, k, &in, &tg), BT = k * T;
        float *rows = gk_malloc(BT * sizeof(float)), *erows = ent ? gk_malloc(BT * sizeof(float)) : NULL;
        if (lp) train_lm_logprobs(lp, in, tg, k, T, temp, rows, erows);
        else rlhf_vh_forward(vh, in, k, T, rows);
        for (size_t j = 0; j < k; j++) {
            size_t r = i0 + j, q = b->off[r];
            for (size_t t = 0; t < T; t++)
                if (tg[j * T + t] >= 0) { dst[q] = rows[j * T + t]; if (ent) ent[q] = erows[j * T + t]; q++; }
        }
        free(in); free(tg); free(rows); free(erows);
    }
}

/* ---------------------------------------------------------------- training */

typedef struct {
    const ppo_opts *o;
    gpt_model *policy, *ref, *rm, *value;
    train_lm *lp_pol, *lp_ref;
    rlhf_vh *vh;
    struct engine *eng;
    tok_tokenizer *tok;
    chat_specials sp;
    constrain_vocab *cvocab;  /* --grammar: the rollouts' constraint on the tokenizer's vocabulary */
    constrain *cons;
    prefs_set prompts;
    tok_ids *pids;            /* rendered prompts that fit */
    size_t n_pids;
    size_t P, S, N, MB;       /* prompts and samples per iteration, rollouts (P*S), minibatch */
    rlhf_kl_ctl ctl;
    train_order ord;          /* prompt order: a seeded permutation per epoch */
    uint32_t *order;          /* [N] rollout order of an update epoch */
    rollout_batch b;          /* this iteration's rollouts (kept for the sample) */
    ppo_result *res;
} ppo_ctx;

static void ctx_free(ppo_ctx *c) {
    batch_free(&c->b);
    train_lm_free(c->lp_pol); train_lm_free(c->lp_ref); rlhf_vh_free(c->vh);
    if (c->eng) engine_free(c->eng);
    gpt_free(c->ref); gpt_free(c->rm); gpt_free(c->value);   /* first: with LoRA they are views of the policy's base */
    gpt_free(c->policy);
    for (size_t i = 0; i < c->n_pids; i++) tok_ids_free(&c->pids[i]);
    free(c->pids);
    prefs_free(&c->prompts);
    constrain_free(c->cons);
    constrain_vocab_free(c->cvocab);
    tok_free(c->tok);
    train_order_free(&c->ord); free(c->order);
}

/* 1. P prompts x S samples through the engine. Returns 0, 1 if Ctrl-C came first (the RNG and prompt position
 * are restored: nothing was updated), or -1 with err. */
static int ppo_rollouts(ppo_ctx *c, train_stage *s, gk_err *err) {
    gk_rng rng_save = s->st.rng;
    uint64_t epoch_save = c->ord.epoch, pos_save = c->ord.pos;
    rollout_batch *b = &c->b;
    batch_free(b);
    /* this rank's prompts [plo, phi); the prompt order and the seeds advance over all P on every rank */
    size_t plo, phi;
    train_stage_share(s, c->P, &plo, &phi);
    b->n = (phi - plo) * c->S;
    b->seqs = gk_calloc(b->n ? b->n : 1, sizeof *b->seqs);
    b->ended = gk_calloc(b->n ? b->n : 1, sizeof(int));
    tok_ids *pr = gk_malloc(c->P * sizeof *pr);
    uint64_t *seed = gk_malloc(c->P * sizeof *seed);
    for (size_t p = 0; p < c->P; p++) {
        pr[p] = c->pids[train_order_next(&c->ord, 1, 1, NULL)[0]];
        seed[p] = gk_rng_u64(&s->st.rng);
    }
    /* this rank's prompts, decoded together */
    int rc = rlhf_generate_groups(c->eng, pr + plo, phi - plo, c->S, (size_t)c->o->max_new, c->o->temperature,
                                  seed + plo, b->seqs, b->ended, c->cons, err);
    free(pr); free(seed);
    if (rc) return -1;
    /* every rank stops when any rank saw Ctrl-C */
    if (dist_any(gk_sigint_pending())) {
        s->st.rng = rng_save; c->ord.epoch = epoch_save; c->ord.pos = pos_save;
        return 1;
    }
    return 0;
}

/* 2-3. Scores, old log-probs and entropy, values, then the reference's log-probs (of this rank's rollouts). */
static void ppo_score(ppo_ctx *c, ppo_step_log *L) {
    rollout_batch *b = &c->b;
    size_t N = b->n;
    double ts = gk_now();
    b->off = gk_malloc((N + 1) * sizeof(size_t));
    b->off[0] = 0;
    for (size_t i = 0; i < N; i++) b->off[i + 1] = b->off[i] + (b->seqs[i].n - b->seqs[i].prompt_len);
    b->raw = gk_malloc(N * sizeof(float)); b->score = gk_malloc(N * sizeof(float));
    rlhf_score_rollouts(c->rm, b->seqs, b->ended, N, c->sp.end, b->raw);
    for (size_t i = 0; i < N; i++) b->score[i] = b->raw[i] - (b->ended[i] ? 0.0f : c->o->missing_end_penalty);
    size_t cap = b->off[N] ? b->off[N] : 1;
    b->logp = gk_malloc(cap * sizeof(float)); b->ref = gk_malloc(cap * sizeof(float)); b->val = gk_malloc(cap * sizeof(float));
    b->adv = gk_malloc(cap * sizeof(float)); b->ret = gk_malloc(cap * sizeof(float)); b->ent = gk_malloc(cap * sizeof(float));
    per_token_pass(c->lp_pol, NULL, b, c->MB, c->o->temperature, b->logp, b->ent);
    per_token_pass(NULL, c->vh, b, c->MB, 1.0f, b->val, NULL);
    L->t_score = gk_now() - ts;
    ts = gk_now();
    per_token_pass(c->lp_ref, NULL, b, c->MB, c->o->temperature, b->ref, NULL);
    L->t_ref = gk_now() - ts;
}

/* Under several ranks: every rank's rollouts (in rank order, which is the prompts' order) into c->b on every
 * rank: per rollout (length, prompt length, ended, raw score, score) and the token ids; per response token
 * the old log-prob, the reference's, the value and the entropy. */
static void ppo_gather(ppo_ctx *c, train_stage *s) {
    if (s->nranks < 2) return;
    rollout_batch *b = &c->b, g;
    memset(&g, 0, sizeof g);
    size_t n = b->n, NT = b->off[n], nids = 0, tot;
    double *hdr = gk_malloc((n ? n : 1) * 5 * sizeof(double));
    for (size_t i = 0; i < n; i++) {
        double *h = hdr + 5 * i;
        h[0] = (double)b->seqs[i].n; h[1] = (double)b->seqs[i].prompt_len; h[2] = b->ended[i]; h[3] = b->raw[i]; h[4] = b->score[i];
        nids += b->seqs[i].n;
    }
    int32_t *ids = gk_malloc((nids ? nids : 1) * sizeof(int32_t));
    for (size_t i = 0, q = 0; i < n; q += b->seqs[i].n, i++) memcpy(ids + q, b->seqs[i].ids, b->seqs[i].n * sizeof(int32_t));
    double *H = dist_allgatherv(hdr, n * 5 * sizeof(double), &tot);
    int32_t *I = dist_allgatherv(ids, nids * sizeof(int32_t), &nids);
    g.n = tot / (5 * sizeof(double));
    GK_CHECK(g.n == c->N, "ppo: gathered %zu rollouts, expected %zu", g.n, c->N);
    g.seqs = gk_calloc(g.n, sizeof *g.seqs); g.ended = gk_malloc(g.n * sizeof(int));
    g.raw = gk_malloc(g.n * sizeof(float)); g.score = gk_malloc(g.n * sizeof(float));
    g.off = gk_malloc((g.n + 1) * sizeof(size_t));
    g.off[0] = 0;
    for (size_t i = 0, q = 0; i < g.n; i++) {
        const double *h = H + 5 * i;
        g.seqs[i].n = (size_t)h[0]; g.seqs[i].prompt_len = (size_t)h[1];
        g.seqs[i].ids = gk_malloc((g.seqs[i].n ? g.seqs[i].n : 1) * sizeof(int32_t));
        memcpy(g.seqs[i].ids, I + q, g.seqs[i].n * sizeof(int32_t));
        q += g.seqs[i].n;
        g.ended[i] = (int)h[2]; g.raw[i] = (float)h[3]; g.score[i] = (float)h[4];
        g.off[i + 1] = g.off[i] + (g.seqs[i].n - g.seqs[i].prompt_len);
    }
    float **mine[4] = { &b->logp, &b->ref, &b->val, &b->ent }, **all[4] = { &g.logp, &g.ref, &g.val, &g.ent };
    for (int k = 0; k < 4; k++) {
        *all[k] = dist_allgatherv(*mine[k], NT * sizeof(float), &tot);
        GK_CHECK(tot == g.off[g.n] * sizeof(float), "ppo: gathered %zu per-token values, expected %zu", tot / sizeof(float), g.off[g.n]);
    }
    size_t cap = g.off[g.n] ? g.off[g.n] : 1;
    g.adv = gk_malloc(cap * sizeof(float)); g.ret = gk_malloc(cap * sizeof(float));
    free(hdr); free(ids); free(H); free(I);
    batch_free(b);
    *b = g;
}

/* 4. KL-shaped rewards, GAE per response, advantages whitened over the batch's tokens; the rollout statistics. */
static void ppo_advantages(ppo_ctx *c, ppo_step_log *L) {
    rollout_batch *b = &c->b;
    size_t N = c->N, NT = b->off[N];
    float *rw = gk_malloc((NT ? NT : 1) * sizeof(float));
    double kl_sum = 0, score_sum = 0, raw_sum = 0, ent_sum = 0, len_sum = 0, ended_sum = 0;
    for (size_t i = 0; i < N; i++) {
        size_t q = b->off[i], n = b->off[i + 1] - q;
        kl_sum += rlhf_kl_rewards(b->logp + q, b->ref + q, n, b->score[i], (float)c->ctl.beta, rw + q);
        rlhf_gae(rw + q, b->val + q, n, c->o->gamma, c->o->lambda, b->adv + q, b->ret + q);
        score_sum += b->score[i]; raw_sum += b->raw[i]; len_sum += (double)n; ended_sum += b->ended[i];
    }
    for (size_t q = 0; q < NT; q++) ent_sum += b->ent[q];
    free(rw);
    rlhf_whiten(b->adv, NT, 0);
    L->score = raw_sum / (double)N;
    L->reward = score_sum / (double)N;
    L->kl = kl_sum / (double)N;
    L->entropy = NT ? ent_sum / (double)NT : 0;
    L->resp_len = len_sum / (double)N;
    L->ended = ended_sum / (double)N;
}

/* Sums over an iteration's minibatches. */
typedef struct { double pl, vl, cf, vcf, akl_last; long nmb, nmb_last; } ppo_sums;

/* Scatters the minibatch's per-token values (in row order) to rows [BT] with target >= 0 (0 elsewhere). */
static void to_rows(const int32_t *tg, size_t BT, const float *flat, float *rows) {
    size_t q = 0;
    for (size_t r = 0; r < BT; r++) rows[r] = tg[r] >= 0 ? flat[q++] : 0.0f;
}

/* 5. One minibatch (rollouts idx[0..k)): the clipped surrogate -> policy step; the clipped value loss -> value
 * step. Per-token rollout values are gathered in the minibatch's row order. Under several ranks this rank
 * takes rollouts [lo, hi) of the minibatch, and the losses (means over response tokens) are weighted by them. */
static void ppo_minibatch(ppo_ctx *c, train_stage *s, const uint32_t *idx, size_t k, float lr, float vlr, int last_epoch,
                          ppo_sums *sm) {
    const rollout_batch *b = &c->b;
    if (s->nranks > 1) {
        size_t lo, hi;
        train_stage_share(s, k, &lo, &hi);
        idx += lo; k = hi - lo;
        if (k == 0) {
            /* no share: a zero gradient and no tokens, but the collectives of both updates all the same */
            double pv[3] = {0}, vv[2] = {0};
            train_stage_zero(s, 0);
            train_stage_weigh(s, 0, 0, pv, 3);
            train_stage_update(s, 0, lr);
            train_stage_zero(s, 1);
            train_stage_weigh(s, 1, 0, vv, 2);
            train_stage_update(s, 1, vlr);
            sm->pl += pv[0]; sm->cf += pv[1]; if (last_epoch) { sm->akl_last += pv[2]; sm->nmb_last++; }
            sm->vl += vv[0]; sm->vcf += vv[1]; sm->nmb++;
            return;
        }
    }
    rlhf_seq *ms = gk_malloc(k * sizeof *ms);
    for (size_t j = 0; j < k; j++) ms[j] = b->seqs[idx[j]];
    int32_t *in, *tg;
    size_t T = rlhf_lm_batch(ms, k, &in, &tg), BT = k * T, nt = 0;
    for (size_t j = 0; j < k; j++) nt += b->off[idx[j] + 1] - b->off[idx[j]];
    size_t cap = nt ? nt : 1;
    float *rows = gk_malloc(BT * sizeof(float)), *drows = gk_malloc(BT * sizeof(float));
    float *cur = gk_malloc(cap * sizeof(float)), *old = gk_malloc(cap * sizeof(float)), *oldv = gk_malloc(cap * sizeof(float));
    float *adv = gk_malloc(cap * sizeof(float)), *ret = gk_malloc(cap * sizeof(float)), *dflat = gk_malloc(cap * sizeof(float));
    size_t q = 0;
    for (size_t j = 0; j < k; j++) {
        size_t s0 = b->off[idx[j]];
        for (size_t t = 0; t < T; t++)
            if (tg[j * T + t] >= 0) { old[q] = b->logp[s0]; adv[q] = b->adv[s0]; ret[q] = b->ret[s0]; oldv[q] = b->val[s0]; s0++; q++; }
    }
    /* policy */
    train_stage_zero(s, 0);
    train_lm_logprobs(c->lp_pol, in, tg, k, T, c->o->temperature, rows, NULL);
    q = 0;
    for (size_t r = 0; r < BT; r++) if (tg[r] >= 0) cur[q++] = rows[r];
    rlhf_ppo_stats ps;
    double pv[3];
    pv[0] = rlhf_ppo_policy_loss(cur, old, adv, nt, c->o->clip_eps, dflat, &ps);
    pv[1] = ps.clip_frac; pv[2] = ps.approx_kl;
    to_rows(tg, BT, dflat, drows);
    train_lm_backward(c->lp_pol, drows);
    train_stage_weigh(s, 0, (double)nt, pv, 3);
    sm->pl += pv[0];
    sm->cf += pv[1];
    if (last_epoch) { sm->akl_last += pv[2]; sm->nmb_last++; }
    train_stage_update(s, 0, lr);
    /* value: the old values are the rollout-time ones (b->val) */
    train_stage_zero(s, 1);
    rlhf_vh_forward(c->vh, in, k, T, rows);
    q = 0;
    for (size_t r = 0; r < BT; r++) if (tg[r] >= 0) cur[q++] = rows[r];
    double vv[2];
    vv[0] = rlhf_value_loss(cur, oldv, ret, nt, c->o->vf_clip, dflat, &vv[1]);
    to_rows(tg, BT, dflat, drows);
    rlhf_vh_backward(c->vh, drows);
    train_stage_weigh(s, 1, (double)nt, vv, 2);
    sm->vl += vv[0];
    sm->vcf += vv[1];
    train_stage_update(s, 1, vlr);
    sm->nmb++;
    free(ms); free(in); free(tg); free(rows); free(drows); free(cur); free(old); free(oldv); free(adv); free(ret); free(dflat);
}

/* 5. ppo_epochs passes over the rollouts in shuffled minibatches (learning rates warmed up linearly). */
static void ppo_update(ppo_ctx *c, train_stage *s, long it, ppo_step_log *L) {
    const ppo_opts *o = c->o;
    double ts = gk_now();
    int warming = o->warmup > 0 && it < o->warmup;
    float lr = warming ? o->lr * (float)(it + 1) / (float)o->warmup : o->lr;
    float vlr = warming ? o->vf_lr * (float)(it + 1) / (float)o->warmup : o->vf_lr;
    ppo_sums sm = {0};
    for (size_t i = 0; i < c->N; i++) c->order[i] = (uint32_t)i;
    for (long ep = 0; ep < o->ppo_epochs; ep++) {
        gk_rng_shuffle_u32(&s->st.rng, c->order, c->N);
        for (size_t i0 = 0; i0 < c->N; i0 += c->MB) {
            size_t k = c->N - i0 < c->MB ? c->N - i0 : c->MB;
            ppo_minibatch(c, s, c->order + i0, k, lr, vlr, ep == o->ppo_epochs - 1, &sm);
        }
    }
    L->t_update = gk_now() - ts;
    L->policy_loss = sm.pl / (double)sm.nmb; L->value_loss = sm.vl / (double)sm.nmb;
    L->clip_frac = sm.cf / (double)sm.nmb; L->vf_clip_frac = sm.vcf / (double)sm.nmb;
    L->approx_kl = sm.nmb_last ? sm.akl_last / (double)sm.nmb_last : 0;
}

/* One PPO iteration as the skeleton's step: rollouts, scores, advantages, update, the KL coefficient. */
static int ppo_iterate(void *ctx, train_stage *s, long it, train_step_out *out, gk_err *err) {
    ppo_ctx *c = ctx;
    ppo_step_log L;
    memset(&L, 0, sizeof L);
    L.beta = c->ctl.beta;
    double ts = gk_now();
    int r = ppo_rollouts(c, s, err);
    if (r) return r;
    L.t_rollout = gk_now() - ts;
    ppo_score(c, &L);
    ppo_gather(c, s);
    ppo_advantages(c, &L);
    ppo_update(c, s, it, &L);
    rlhf_kl_ctl_update(&c->ctl, L.kl, (long)c->N);
    c->res->log[it - s->step0] = L;
    c->res->iters_done = it + 1 - s->step0;
    /* a non-finite policy or value loss stops the run (the sum is finite only when both are) */
    out->loss = L.policy_loss + L.value_loss;
    const char *keys[16] = { "score", "reward", "kl", "beta", "entropy", "clip_frac", "approx_kl", "policy_loss",
                             "value_loss", "vf_clip_frac", "resp_len", "ended", "t_rollout", "t_score", "t_ref", "t_update" };
    const char *fmts[16] = { "%.6g", "%.6g", "%.6g", "%.6g", "%.6g", "%.5g", "%.6g", "%.6g", "%.6g", "%.5g", "%.4g", "%.4g",
                             "%.4f", "%.4f", "%.4f", "%.4f" };
    double vals[16] = { L.score, L.reward, L.kl, L.beta, L.entropy, L.clip_frac, L.approx_kl, L.policy_loss, L.value_loss,
                        L.vf_clip_frac, L.resp_len, L.ended, L.t_rollout, L.t_score, L.t_ref, L.t_update };
    for (int i = 0; i < 16; i++) train_put(out->post, keys[i], fmts[i], vals[i]);
    snprintf(out->hpost, sizeof out->hpost,
             "score %+.3f | kl %.3f | beta %.4f | ent %.3f | clip %.3f | vloss %.4f | akl %.2e | len %.1f | %.1fs",
             L.score, L.kl, L.beta, L.entropy, L.clip_frac, L.value_loss, L.approx_kl, L.resp_len,
             L.t_rollout + L.t_score + L.t_ref + L.t_update);
    return 0;
}

static int ppo_sample(void *ctx, train_stage *s, long it, gk_err *err) {
    (void)err;
    ppo_ctx *c = ctx;
    tok_bytes text = {0};
    rlhf_response_text(c->tok, c->sp.end, &c->b.seqs[0], &text);
    cJSON *f = cJSON_CreateObject();
    cJSON_AddNumberToObject(f, "step", (double)it);
    cJSON_AddStringToObject(f, "sample", (const char *)text.data);
    train_put(f, "sample_score", "%.5g", c->b.raw[0]);
    one_line(&text);
    char *h = gk_malloc(text.n + 48);
    sprintf(h, "sample (score %+.3f): %s", c->b.raw[0], (const char *)text.data);
    train_log_event(&s->lg, f, h);
    free(h);
    tok_bytes_free(&text);
    return 0;
}

static void ppo_tell(void *ctx, data_pos *pos) {
    const ppo_ctx *c = ctx;
    pos->epoch = c->ord.epoch; pos->pos = c->ord.pos;
}

/* The options with the adaptive KL coefficient reached (beta_now), which a resume continues from. */
static char *ppo_opts_now(void *ctx) {
    const ppo_ctx *c = ctx;
    char *oj = ppo_opts_to_json(c->o);
    cJSON *j = cJSON_Parse(oj);
    free(oj);
    cJSON_AddNumberToObject(j, "beta_now", c->ctl.beta);
    char *sj = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    char *r = gk_strdup(sj);
    cJSON_free(sj);
    return r;
}

/* With LoRA (policy adapters attached): the reward and value models over the policy's frozen base. A reward adapter
 * trained on this base (gptkit rm --lora-rank) is loaded onto a view of it; a whole reward model is loaded as it
 * is. The value model is another view with its own adapter and score head: on a resume the saved value adapter;
 * else a copy of the reward adapter (the informed start full PPO gets from copying the reward model), or, beside a
 * whole reward model, fresh adapters per --lora-* with the reward model's score head. */
static int ppo_load_lora_critics(ppo_ctx *c, const char *vdir, char **rm_tok, gk_err *err) {
    const ppo_opts *o = c->o;
    int rm_adapter = gpt_lora_is_dir(o->reward_dir);
    if (rm_adapter) {
        c->rm = gpt_create_view(c->policy);
        if (gpt_lora_load(c->rm, o->reward_dir, NULL, err))
            return gk_err_prefix(err, "the reward adapter must be trained on the policy's base (%s)", c->policy->lora->base);
        if (!c->rm->lora->cfg.score) return gk_errf(err, "%s: this adapter has no score head: it is not a reward adapter", o->reward_dir);
    } else if (!(c->rm = rlhf_load_rm(o->reward_dir, rm_tok, err))) return -1;
    c->value = gpt_create_view(c->policy);
    if (o->resume_dir || rm_adapter) {
        if (gpt_lora_load(c->value, o->resume_dir ? vdir : o->reward_dir, NULL, err)) return -1;
        c->value->lora->cfg.dropout = o->lora.dropout;
    } else {
        train_lora_opts lo = o->lora;
        lo.score = 1;
        if (train_lora_setup(c->value, &lo, NULL, o->seed ^ 0x7A1E, 1, err)) return -1;
        kern_copy(c->value->be, c->value->lora->pm->params + c->value->lora->score_off,
                  c->rm->params + gpt_param_role(c->rm, GPT_ROLE_SCORE, -1)->offset, (size_t)c->rm->cfg.n_embd * sizeof(float));
    }
    if (!c->value->lora->cfg.score) return gk_errf(err, "the value adapter has no score head");
    free(c->value->lora->base);
    c->value->lora->base = c->policy->lora->base ? gk_strdup(c->policy->lora->base) : NULL;
    double mb = (double)gpt_weight_bytes(c->policy) / 1e6;   /* a quantized base: its blocks */
    int copies = 2 + rm_adapter;   /* the reference's and the value model's, and the reward model's when it is an adapter */
    gk_log("ppo: one frozen base (%.1f MB) holds the policy, the reference (adapters off), the value model%s; "
           "%.1f MB of weights not loaded compared with full finetuning (%d copies)\n", mb,
           rm_adapter ? " and the reward model (adapters)" : " (adapters)", copies * mb, copies);
    return 0;
}

/* Loads the policy, reference, reward and value models and the tokenizer; renders the prompts that fit. */
static int ppo_load(ppo_ctx *c, const char *vdir, char **tok_rec, char **rm_tok, gk_err *err) {
    const ppo_opts *o = c->o;
    char *base_dir = NULL;
    int rc = train_policy_open("ppo", o->policy_dir, o->resume_dir, &o->lora, o->seed, o->json, &c->policy, &c->ref,
                               tok_rec, &base_dir, err);
    if (rc == 0 && c->policy->lora) rc = ppo_load_lora_critics(c, vdir, rm_tok, err);
    else if (rc == 0) {
        if (!(c->rm = rlhf_load_rm(o->reward_dir, rm_tok, err))) rc = -1;
        /* the value model starts as a copy of the reward model (an adapter one merged into a whole model) */
        else if (!(c->value = train_open_model(o->resume_dir ? vdir : o->reward_dir, NULL, NULL, 0, err))) rc = -1;
        else {
            gpt_lora_merge(c->value);
            for (int g = 0; g < GPT_NGROUPS; g++) gpt_set_trainable(c->value, g, 1);
            if (!c->value->cfg.score_head) rc = gk_errf(err, "value model has no score head");
        }
    }
    if (rc == 0) rc = tok_load_recorded(base_dir, *tok_rec, o->tokenizer, 1, &c->tok, err);
    free(base_dir);
    if (rc) return -1;
    if (c->rm->cfg.vocab_size != c->policy->cfg.vocab_size)
        return gk_errf(err, "the reward model's vocabulary (%d) differs from the policy's (%d): they must share a tokenizer",
                       c->rm->cfg.vocab_size, c->policy->cfg.vocab_size);
    if (chat_specials_resolve(c->tok, (size_t)c->policy->cfg.vocab_size, &c->sp, err)) return -1;
    if (o->grammar) {   /* constrained rollouts: the grammar file compiled onto the tokenizer's vocabulary */
        char *txt; size_t n;
        if (gk_read_file(o->grammar, &txt, &n, err)) return -1;
        constrain_grammar *g = constrain_grammar_parse(txt, n, NULL, err);
        free(txt);
        if (!g) return gk_err_prefix(err, "%s", o->grammar);
        c->cvocab = constrain_vocab_new(c->tok);
        c->cons = constrain_new(g, c->cvocab, NULL, 0);
    }
    rlhf_chat ch = {c->tok, c->sp};
    if (prefs_load(o->prompts, PREFS_ACCEPT_ANY, &c->prompts, err)) return -1;
    c->pids = gk_calloc(c->prompts.n, sizeof *c->pids);
    size_t too_long = 0, lim = (size_t)c->policy->cfg.n_ctx;
    for (size_t i = 0; i < c->prompts.n; i++) {
        tok_ids ids = {0};
        rlhf_render_prompt(&ch, &c->prompts.items[i], &ids);
        if (ids.n + (size_t)o->max_new + 1 > lim || ids.n + (size_t)o->max_new + 1 > (size_t)c->rm->cfg.n_ctx) { too_long++; tok_ids_free(&ids); continue; }
        c->pids[c->n_pids++] = ids;
    }
    if (too_long) gk_warn("ppo: skipped %zu prompt(s) that leave no room for %ld new tokens in the context\n", too_long, o->max_new);
    if (c->n_pids == 0) return gk_errf(err, "%s: no prompt fits the context with --max-new %ld", o->prompts, o->max_new);
    return 0;
}

int train_ppo(const ppo_opts *o, ppo_result *res, gk_err *err) {
    memset(res, 0, sizeof *res);
    if (!o->policy_dir) return gk_errf(err, "no policy: pass --policy SFT_DIR");
    if (!o->reward_dir) return gk_errf(err, "no reward model: pass --reward RM_DIR");
    if (!o->prompts) return gk_errf(err, "no prompts: pass --prompts PROMPTS.jsonl");
    if (!o->out) return gk_errf(err, "no output directory: pass --out DIR");
    if (o->iters <= 0 || o->batch_prompts <= 0 || o->samples <= 0 || o->max_new <= 0 || o->ppo_epochs <= 0 || o->minibatch <= 0)
        return gk_errf(err, "--iters, --batch, --samples, --max-new, --ppo-epochs and --minibatch must be positive");
    if (!(o->temperature > 0)) return gk_errf(err, "--temperature must be > 0 (PPO samples; greedy rollouts have no ratio)");
    ppo_ctx c;
    memset(&c, 0, sizeof c);
    c.o = o; c.res = res;
    train_stage s;
    memset(&s, 0, sizeof s);
    char *tok_rec = NULL, *rm_tok = NULL, *vdir = gk_path_join(o->out, "value");
    int rc = -1;
    if (ppo_load(&c, vdir, &tok_rec, &rm_tok, err)) goto done;
    /* Two models, two optimizers: the policy (model 0, OUT) and the value model (OUT/value). */
    train_stage_cfg sc = {
        .name = "ppo", .n_models = 2, .opt = &o->opt, .rng_seed = o->seed ^ 0x9907A11ULL, .total = o->iters,
        .json = o->json, .sample_every = o->sample_every, .sample_first = 1, .save_every = o->save_every,
        .stop_at = o->stop_at, .saved_what = "policy",
        .models = { { .m = c.policy, .out = o->out, .resume = o->resume_dir, .tokenizer = o->tokenizer ? o->tokenizer : tok_rec },
                    { .m = c.value, .out = vdir, .resume = o->resume_dir ? vdir : NULL, .tokenizer = rm_tok } },
    };
    if (train_stage_open(&s, &sc, err)) goto done;
    c.lp_pol = train_lm_new(c.policy);
    c.lp_ref = train_lm_new(c.ref);
    c.vh = rlhf_vh_new(c.value);
    c.ctl = (rlhf_kl_ctl){o->beta, o->kl_target, o->kl_horizon};
    if (s.resumed_opts) {
        cJSON *j = cJSON_Parse(s.resumed_opts);
        cJSON *x = j ? cJSON_GetObjectItemCaseSensitive(j, "beta_now") : NULL;
        if (cJSON_IsNumber(x)) c.ctl.beta = x->valuedouble;
        cJSON_Delete(j);
    }
    res->log = gk_calloc((size_t)(o->iters - s.step0 > 0 ? o->iters - s.step0 : 1), sizeof *res->log);
    c.P = (size_t)o->batch_prompts < c.n_pids ? (size_t)o->batch_prompts : c.n_pids;
    c.S = (size_t)o->samples; c.N = c.P * c.S; c.MB = (size_t)o->minibatch < c.N ? (size_t)o->minibatch : c.N;
    size_t plo, phi;
    train_stage_share(&s, c.P, &plo, &phi);
    c.eng = rlhf_rollout_engine(c.policy, c.tok, phi - plo, c.S, c.pids, c.n_pids, (size_t)o->max_new);
    if (!o->json)
        gk_log("ppo: policy %d layers x %d wide (%.2fM params), value model from %s; %zu prompts; %zu prompts x %zu samples "
               "per iteration, %ld epochs of minibatch %zu; beta %.4g%s\n", c.policy->cfg.n_layer, c.policy->cfg.n_embd,
               (double)c.policy->num_params / 1e6, o->reward_dir, c.n_pids, c.P, c.S, o->ppo_epochs, c.MB, c.ctl.beta,
               o->kl_target > 0 ? " (adaptive)" : " (fixed)");
    c.order = gk_malloc(c.N * sizeof(uint32_t));
    train_order_init(&c.ord, c.n_pids, o->seed * 7919ULL, s.st.pos.epoch, s.st.pos.pos);
    train_stage_hooks h = { .ctx = &c, .iterate = ppo_iterate, .sample = ppo_sample, .tell = ppo_tell, .opts = ppo_opts_now };
    rc = train_stage_run(&s, &h, NULL, err);
    res->seconds = s.seconds;
    res->interrupted = s.interrupted;
done:
    train_stage_close(&s);
    ctx_free(&c);
    free(tok_rec); free(rm_tok); free(vdir);
    return rc;
}

/* ---------------------------------------------------------------- compare */

/* One comparison as a JSON line on stdout (--json). */
static void print_comparison(const tok_tokenizer *tok, int32_t end_id, size_t prompt, size_t line, size_t sample,
                             const rlhf_seq *a, const rlhf_seq *b, float score_a, float score_b) {
    tok_bytes ta = {0}, tb = {0};
    rlhf_response_text(tok, end_id, a, &ta);
    rlhf_response_text(tok, end_id, b, &tb);
    cJSON *j = cJSON_CreateObject();
    cJSON_AddNumberToObject(j, "prompt", (double)prompt);
    cJSON_AddNumberToObject(j, "line", (double)line);
    cJSON_AddNumberToObject(j, "sample", (double)sample);
    train_put(j, "score_a", "%.6g", score_a);
    train_put(j, "score_b", "%.6g", score_b);
    cJSON_AddStringToObject(j, "a", (const char *)ta.data);
    cJSON_AddStringToObject(j, "b", (const char *)tb.data);
    char *s = cJSON_PrintUnformatted(j);
    printf("%s\n", s);
    cJSON_free(s);
    cJSON_Delete(j);
    tok_bytes_free(&ta); tok_bytes_free(&tb);
}

void rlhf_tally(compare_result *r, double d, double a, double b) {
    if (d > 0) r->wins++; else if (d < 0) r->losses++; else r->ties++;
    r->n++;
    r->mean_a += a; r->mean_b += b;
}

void rlhf_tally_finish(compare_result *r) {
    if (r->n == 0) { r->win_rate = NAN; r->ci_lo = 0; r->ci_hi = 1; return; }
    double N = (double)r->n;
    r->win_rate = (r->wins + 0.5 * r->ties) / N;
    rlhf_wilson(r->wins + 0.5 * r->ties, N, 1.959964, &r->ci_lo, &r->ci_hi);
    r->mean_a /= N; r->mean_b /= N;
}

int rlhf_duel_open(rlhf_duel *d, const char *a_dir, const char *b_dir, const char *rm_dir, const char *prompts,
                   const char *tokenizer, gk_err *err) {
    memset(d, 0, sizeof *d);
    char *tok_rec = NULL, *a_base = NULL;
    int rc = -1;
    /* checkpoints or LoRA adapters (opened onto their recorded bases) */
    if (!(d->a = train_open_model(a_dir, &tok_rec, &a_base, 0, err)) || !(d->b = train_open_model(b_dir, NULL, NULL, 0, err)) ||
        !(d->rm = rlhf_load_rm(rm_dir, NULL, err))) goto done;
    if (d->a->cfg.vocab_size != d->b->cfg.vocab_size || d->a->cfg.vocab_size != d->rm->cfg.vocab_size) {
        gk_errf(err, "models A (%d), B (%d) and the reward model (%d) must share a vocabulary", d->a->cfg.vocab_size,
                d->b->cfg.vocab_size, d->rm->cfg.vocab_size);
        goto done;
    }
    if (rlhf_chat_open(&d->ch, a_base, tok_rec, tokenizer, (size_t)d->a->cfg.vocab_size, err)) goto done;
    if (prefs_load(prompts, PREFS_ACCEPT_ANY, &d->ps, err)) goto done;
    d->ctx = (size_t)d->a->cfg.n_ctx;
    if ((size_t)d->b->cfg.n_ctx < d->ctx) d->ctx = (size_t)d->b->cfg.n_ctx;
    if ((size_t)d->rm->cfg.n_ctx < d->ctx) d->ctx = (size_t)d->rm->cfg.n_ctx;
    rc = 0;
done:
    free(tok_rec); free(a_base);
    if (rc) rlhf_duel_close(d);
    return rc;
}

void rlhf_duel_close(rlhf_duel *d) {
    prefs_free(&d->ps);
    rlhf_chat_close(&d->ch);
    gpt_free(d->a); gpt_free(d->b); gpt_free(d->rm);
    memset(d, 0, sizeof *d);
}

int rlhf_compare(const compare_opts *o, compare_result *res, gk_err *err) {
    memset(res, 0, sizeof *res);
    if (!o->a_dir || !o->b_dir || !o->rm_dir || !o->prompts) return gk_errf(err, "compare needs --a, --b, --rm and --prompts");
    if (o->samples <= 0 || o->max_new <= 0) return gk_errf(err, "--samples and --max-new must be positive");
    rlhf_duel d;
    if (rlhf_duel_open(&d, o->a_dir, o->b_dir, o->rm_dir, o->prompts, o->tokenizer, err)) return -1;
    size_t n = o->n > 0 && (size_t)o->n < d.ps.n ? (size_t)o->n : d.ps.n, S = (size_t)o->samples;
    struct engine *ea = engine_new(d.a, d.ch.tok, S, 0), *eb = engine_new(d.b, d.ch.tok, S, 0);
    int32_t end = d.ch.sp.end;
    rlhf_seq *sa = gk_calloc(S, sizeof *sa), *sb = gk_calloc(S, sizeof *sb);
    int *enda = gk_calloc(S, sizeof(int)), *endb = gk_calloc(S, sizeof(int));
    float *ra = gk_malloc(S * sizeof(float)), *rb = gk_malloc(S * sizeof(float));
    size_t skipped = 0;
    int rc = 0;
    for (size_t i = 0; i < n; i++) {
        tok_ids pid = {0};
        rlhf_render_prompt(&d.ch, &d.ps.items[i], &pid);
        if (pid.n + (size_t)o->max_new + 1 > d.ctx) { skipped++; tok_ids_free(&pid); continue; }
        uint64_t seed = o->seed * 1000003ULL + i;
        if (rlhf_generate(ea, pid.ids, pid.n, S, (size_t)o->max_new, o->temperature, seed, sa, enda, NULL, err) ||
            rlhf_generate(eb, pid.ids, pid.n, S, (size_t)o->max_new, o->temperature, seed, sb, endb, NULL, err)) { tok_ids_free(&pid); rc = -1; break; }
        rlhf_score_rollouts(d.rm, sa, enda, S, end, ra);
        rlhf_score_rollouts(d.rm, sb, endb, S, end, rb);
        for (size_t k = 0; k < S; k++) {
            rlhf_tally(res, (double)ra[k] - (double)rb[k], ra[k], rb[k]);
            if (o->json) print_comparison(d.ch.tok, end, i, d.ps.items[i].line, k, &sa[k], &sb[k], ra[k], rb[k]);
            rlhf_seq_free(&sa[k]); rlhf_seq_free(&sb[k]);
        }
        tok_ids_free(&pid);
    }
    if (skipped) gk_warn("compare: skipped %zu prompt(s) too long for the context with --max-new %ld\n", skipped, o->max_new);
    if (rc == 0 && res->n == 0) rc = gk_errf(err, "%s: no prompt could be compared", o->prompts);
    if (rc == 0) rlhf_tally_finish(res);
    free(sa); free(sb); free(enda); free(endb); free(ra); free(rb);
    engine_free(ea); engine_free(eb);
    rlhf_duel_close(&d);
    return rc;
}
