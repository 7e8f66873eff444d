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
 * All per-token arrays are indexed by the position that predicts the token (see train.h).
 * Output: OUT/ holds the policy (a plain LM checkpoint) + resume state, OUT/value the value model + state.
 */
#include "train/train.h"
#include "kern/kern.h"
#include "infer/infer.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- rollouts */

int rlhf_generate(struct engine *e, const int32_t *prompt, size_t n_prompt, size_t n, size_t max_new,
                  float temperature, uint64_t seed, rlhf_seq *out, int *ended, gk_err *err) {
    engine_gen_opts go;
    engine_gen_opts_default(&go);
    go.max_new = max_new;
    infer_sampling_default(&go.samp);
    go.samp.temperature = temperature;   /* pure sampling: no top-k / top-p / min-p / penalties */
    go.samp.seed = seed;
    go.default_stops = 1;
    engine_seq *gs = gk_calloc(n, sizeof *gs);
    if (engine_generate(e, prompt, n_prompt, n, &go, gs, err)) { free(gs); return -1; }
    for (size_t i = 0; i < n; i++) {
        out[i].n = n_prompt + gs[i].n;
        out[i].prompt_len = n_prompt;
        out[i].ids = gk_malloc((out[i].n ? out[i].n : 1) * sizeof(int32_t));
        memcpy(out[i].ids, prompt, n_prompt * sizeof(int32_t));
        memcpy(out[i].ids + n_prompt, gs[i].ids, gs[i].n * sizeof(int32_t));
        ended[i] = gs[i].finish == ENGINE_FINISH_STOP_TOKEN;
        engine_seq_free(&gs[i]);
    }
    free(gs);
    return 0;
}

/* RM scores of rollouts: a response that did not end gets <|end|> appended for scoring. */
static void score_rollouts(gpt_model *rm, const rlhf_seq *seqs, const int *ended, size_t n, int32_t end_id, float *out) {
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

static void response_text(const tok_tokenizer *tok, int32_t end_id, const rlhf_seq *s, char *buf, size_t cap) {
    tok_bytes b = {0};
    gk_err e;
    size_t n = s->n - s->prompt_len;
    const int32_t *ids = s->ids + s->prompt_len;
    if (n && ids[n - 1] == end_id) n--;
    tok_decode(tok, ids, n, &b, &e);
    size_t k = b.n < cap - 1 ? b.n : cap - 1;
    memcpy(buf, b.data, k);
    buf[k] = 0;
    /* one printable ASCII line, safe inside a JSON string (non-ASCII bytes become '?') */
    for (size_t i = 0; i < k; i++) {
        unsigned char ch = (unsigned char)buf[i];
        if (ch >= 0x80) buf[i] = '?';
        else if (ch == '"' || ch == '\\' || ch < 0x20 || ch == 0x7f) buf[i] = ' ';
    }
    tok_bytes_free(&b);
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
static void per_token_pass(rlhf_lp *lp, rlhf_vh *vh, const rollout_batch *b, size_t mb, float temp,
                           float *dst, float *ent) {
    for (size_t i0 = 0; i0 < b->n; i0 += mb) {
        size_t k = b->n - i0 < mb ? b->n - i0 : mb;
        int32_t *in, *tg;
        size_t T = rlhf_lm_batch(b->seqs + i0, k, &in, &tg), BT = k * T;
        float *rows = gk_malloc(BT * sizeof(float)), *erows = ent ? gk_malloc(BT * sizeof(float)) : NULL;
        if (lp) rlhf_lp_forward(lp, in, tg, k, T, temp, rows, erows);
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
    gpt_model *policy, *ref, *rm, *value;
    rlhf_lp *lp_pol, *lp_ref;
    rlhf_vh *vh;
    adamw *opt_pol, *opt_val;
    struct engine *eng;
    tok_tokenizer *tok;
    chat_specials sp;
    prefs_set prompts;
    tok_ids *pids;            /* rendered prompts that fit */
    size_t n_pids;
} ppo_ctx;

static void ctx_free(ppo_ctx *c) {
    rlhf_lp_free(c->lp_pol); rlhf_lp_free(c->lp_ref); rlhf_vh_free(c->vh);
    adamw_free(c->opt_pol); adamw_free(c->opt_val);
    if (c->eng) engine_free(c->eng);
    gpt_free(c->policy); gpt_free(c->ref); gpt_free(c->rm); gpt_free(c->value);
    for (size_t i = 0; i < c->n_pids; i++) tok_ids_free(&c->pids[i]);
    free(c->pids);
    prefs_free(&c->prompts);
    tok_free(c->tok);
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
    ppo_ctx c; memset(&c, 0, sizeof c);
    train_log lg; memset(&lg, 0, sizeof lg);
    train_state st, vst; memset(&st, 0, sizeof st); memset(&vst, 0, sizeof vst);
    rollout_batch b; memset(&b, 0, sizeof b);
    char *tok_rec = NULL, *rm_tok = NULL, *vdir = gk_path_join(o->out, "value");
    uint32_t *order = NULL;
    train_order ord = {0};
    int rc = -1;

    const char *pdir = o->resume_dir ? o->resume_dir : o->policy_dir;
    if (!(c.policy = gpt_load(pdir, &tok_rec, err))) goto done;
    if (c.policy->cfg.score_head) { gk_errf(err, "%s: the policy has a score head; pass an LM (SFT) checkpoint", pdir); goto done; }
    if (!(c.ref = gpt_load(o->policy_dir, NULL, err))) goto done;
    if (!(c.rm = rlhf_load_rm(o->reward_dir, &rm_tok, err))) goto done;
    if (!(c.value = gpt_load(o->resume_dir ? vdir : o->reward_dir, NULL, err))) goto done;
    if (!c.value->cfg.score_head) { gk_errf(err, "value model has no score head"); goto done; }
    if (c.rm->cfg.vocab_size != c.policy->cfg.vocab_size) {
        gk_errf(err, "the reward model's vocabulary (%d) differs from the policy's (%d): they must share a tokenizer",
                c.rm->cfg.vocab_size, c.policy->cfg.vocab_size);
        goto done;
    }
    if (tok_load_recorded(pdir, tok_rec, o->tokenizer, 1, &c.tok, err)) goto done;
    if (chat_specials_resolve(c.tok, (size_t)c.policy->cfg.vocab_size, &c.sp, err)) goto done;
    {
        rlhf_chat ch = {c.tok, c.sp};
        if (prefs_load(o->prompts, PREFS_ACCEPT_ANY, &c.prompts, err)) goto done;
        c.pids = gk_calloc(c.prompts.n, sizeof *c.pids);
        size_t too_long = 0, lim = (size_t)c.policy->cfg.n_ctx;
        for (size_t i = 0; i < c.prompts.n; i++) {
            tok_ids ids = {0};
            rlhf_render_prompt(&ch, &c.prompts.items[i], &ids);
            if (ids.n + (size_t)o->max_new + 1 > lim || ids.n + (size_t)o->max_new + 1 > (size_t)c.rm->cfg.n_ctx) { too_long++; tok_ids_free(&ids); continue; }
            c.pids[c.n_pids++] = ids;
        }
        if (too_long) gk_warn("ppo: skipped %zu prompt(s) that leave no room for %ld new tokens in the context\n", too_long, o->max_new);
        if (c.n_pids == 0) { gk_errf(err, "%s: no prompt fits the context with --max-new %ld", o->prompts, o->max_new); goto done; }
    }
    gpt_alloc_grads(c.policy);
    gpt_alloc_grads(c.value);
    adamw_config ocfg = o->opt;
    c.opt_pol = adamw_create(c.policy, &ocfg);
    c.opt_val = adamw_create(c.value, &ocfg);
    c.lp_pol = rlhf_lp_new(c.policy);
    c.lp_ref = rlhf_lp_new(c.ref);
    c.vh = rlhf_vh_new(c.value);
    c.eng = engine_new(c.policy, c.tok, (size_t)o->samples, 0);

    rlhf_kl_ctl ctl = {o->beta, o->kl_target, o->kl_horizon};
    gk_rng_seed(&st.rng, o->seed ^ 0x9907A11ULL);
    long step0 = 0;
    if (o->resume_dir) {
        if (train_load_state(o->resume_dir, c.policy, c.opt_pol, &st, err)) goto done;
        if (train_load_state(vdir, c.value, c.opt_val, &vst, err)) goto done;
        step0 = st.step;
        cJSON *j = cJSON_Parse(st.opts_json ? st.opts_json : "{}");
        cJSON *x = j ? cJSON_GetObjectItemCaseSensitive(j, "beta_now") : NULL;
        if (cJSON_IsNumber(x)) ctl.beta = x->valuedouble;
        cJSON_Delete(j);
        free(st.opts_json); st.opts_json = NULL;
        free(vst.opts_json); vst.opts_json = NULL;
    }
    if (gk_mkdir_p(o->out, err) || gk_mkdir_p(vdir, err)) goto done;
    {
        char *mp = gk_path_join(o->out, "metrics.jsonl");
        int lrc = train_log_open(&lg, "ppo", mp, o->json, step0, o->iters, err);
        free(mp);
        if (lrc) goto done;
    }
    res->log = gk_calloc((size_t)(o->iters - step0 > 0 ? o->iters - step0 : 1), sizeof *res->log);
    size_t P = (size_t)o->batch_prompts < c.n_pids ? (size_t)o->batch_prompts : c.n_pids;
    size_t S = (size_t)o->samples, N = P * S, MB = (size_t)o->minibatch < N ? (size_t)o->minibatch : N;
    if (!o->json)
        gk_log("ppo: policy %d layers x %d wide (%.2fM params), value model from %s; %zu prompts; %zu prompts x %zu samples "
               "per iteration, %ld epochs of minibatch %zu; beta %.4g%s\n", c.policy->cfg.n_layer, c.policy->cfg.n_embd,
               (double)c.policy->num_params / 1e6, o->reward_dir, c.n_pids, P, S, o->ppo_epochs, MB, ctl.beta,
               o->kl_target > 0 ? " (adaptive)" : " (fixed)");
    order = gk_malloc(N * sizeof(uint32_t));
    train_order_init(&ord, c.n_pids, o->seed * 7919ULL, st.pos.epoch, st.pos.pos);
    gk_sigint_install();
    double t0 = gk_now();
    long it = step0;
    rc = 0;
    for (; it < o->iters; it++) {
        if (gk_sigint_pending()) { res->interrupted = 1; break; }
        if (o->stop_at > 0 && it >= o->stop_at) break;
        gk_rng rng_save = st.rng;
        uint64_t epoch_save = ord.epoch, pos_save = ord.pos;
        ppo_step_log L; memset(&L, 0, sizeof L);
        L.beta = ctl.beta;
        /* ---- 1. rollouts */
        double ts = gk_now();
        memset(&b, 0, sizeof b);
        b.n = N;
        b.seqs = gk_calloc(N, sizeof *b.seqs);
        b.ended = gk_calloc(N, sizeof(int));
        int interrupted = 0;
        for (size_t p = 0; p < P; p++) {
            const tok_ids *pi = &c.pids[train_order_next(&ord, 1, 1, NULL)[0]];
            if (rlhf_generate(c.eng, pi->ids, pi->n, S, (size_t)o->max_new, o->temperature, gk_rng_u64(&st.rng),
                              b.seqs + p * S, b.ended + p * S, err)) { rc = -1; break; }
            if (gk_sigint_pending()) { interrupted = 1; break; }
        }
        if (rc) break;
        if (interrupted) {   /* nothing updated yet: save the state as of this iteration's start */
            st.rng = rng_save; ord.epoch = epoch_save; ord.pos = pos_save;
            res->interrupted = 1;
            break;
        }
        L.t_rollout = gk_now() - ts;
        /* ---- 2. scores, old log-probs and entropy, values */
        ts = gk_now();
        b.off = gk_malloc((N + 1) * sizeof(size_t));
        b.off[0] = 0;
        for (size_t i = 0; i < N; i++) b.off[i + 1] = b.off[i] + (b.seqs[i].n - b.seqs[i].prompt_len);
        size_t NT = b.off[N];
        b.raw = gk_malloc(N * sizeof(float)); b.score = gk_malloc(N * sizeof(float));
        score_rollouts(c.rm, b.seqs, b.ended, N, c.sp.end, b.raw);
        for (size_t i = 0; i < N; i++) b.score[i] = b.raw[i] - (b.ended[i] ? 0.0f : o->missing_end_penalty);
        size_t cap = NT ? NT : 1;
        b.logp = gk_malloc(cap * sizeof(float)); b.ref = gk_malloc(cap * sizeof(float)); b.val = gk_malloc(cap * sizeof(float));
        b.adv = gk_malloc(cap * sizeof(float)); b.ret = gk_malloc(cap * sizeof(float)); b.ent = gk_malloc(cap * sizeof(float));
        per_token_pass(c.lp_pol, NULL, &b, MB, o->temperature, b.logp, b.ent);
        per_token_pass(NULL, c.vh, &b, MB, 1.0f, b.val, NULL);
        L.t_score = gk_now() - ts;
        /* ---- 3. reference log-probs */
        ts = gk_now();
        per_token_pass(c.lp_ref, NULL, &b, MB, o->temperature, b.ref, NULL);
        L.t_ref = gk_now() - ts;
        /* ---- 4. rewards and advantages */
        float *rw = gk_malloc(cap * sizeof(float));
        double kl_sum = 0, score_sum = 0, raw_sum = 0, ent_sum = 0, len_sum = 0, ended_sum = 0;
        for (size_t i = 0; i < N; i++) {
            size_t q = b.off[i], n = b.off[i + 1] - q;
            kl_sum += rlhf_kl_rewards(b.logp + q, b.ref + q, n, b.score[i], (float)ctl.beta, rw + q);
            rlhf_gae(rw + q, b.val + q, n, o->gamma, o->lambda, b.adv + q, b.ret + q);
            score_sum += b.score[i]; raw_sum += b.raw[i]; len_sum += (double)n; ended_sum += b.ended[i];
        }
        for (size_t q = 0; q < NT; q++) ent_sum += b.ent[q];
        free(rw);
        rlhf_whiten(b.adv, NT, 0);
        L.score = raw_sum / (double)N;
        L.reward = score_sum / (double)N;
        L.kl = kl_sum / (double)N;
        L.entropy = NT ? ent_sum / (double)NT : 0;
        L.resp_len = len_sum / (double)N;
        L.ended = ended_sum / (double)N;
        /* ---- 5. update */
        ts = gk_now();
        float lr = o->warmup > 0 && it < o->warmup ? o->lr * (float)(it + 1) / (float)o->warmup : o->lr;
        float vlr = o->warmup > 0 && it < o->warmup ? o->vf_lr * (float)(it + 1) / (float)o->warmup : o->vf_lr;
        double pl_sum = 0, vl_sum = 0, cf_sum = 0, vcf_sum = 0, akl_last = 0; long nmb = 0, nmb_last = 0;
        for (size_t i = 0; i < N; i++) order[i] = (uint32_t)i;
        for (long ep = 0; ep < o->ppo_epochs; ep++) {
            gk_rng_shuffle_u32(&st.rng, order, N);
            for (size_t i0 = 0; i0 < N; i0 += MB) {
                size_t k = N - i0 < MB ? N - i0 : MB;
                rlhf_seq *ms = gk_malloc(k * sizeof *ms);
                for (size_t j = 0; j < k; j++) ms[j] = b.seqs[order[i0 + j]];
                int32_t *in, *tg;
                size_t T = rlhf_lm_batch(ms, k, &in, &tg), BT = k * T;
                size_t nt = 0;
                for (size_t j = 0; j < k; j++) nt += b.off[order[i0 + j] + 1] - b.off[order[i0 + j]];
                float *rows = gk_malloc(BT * sizeof(float)), *drows = gk_malloc(BT * sizeof(float));
                float *cur = gk_malloc((nt ? nt : 1) * sizeof(float)), *old = gk_malloc((nt ? nt : 1) * sizeof(float));
                float *adv = gk_malloc((nt ? nt : 1) * sizeof(float)), *ret = gk_malloc((nt ? nt : 1) * sizeof(float));
                float *dflat = gk_malloc((nt ? nt : 1) * sizeof(float));
                /* gather the minibatch's per-token rollout values in row order */
                size_t q = 0;
                for (size_t j = 0; j < k; j++) {
                    size_t r = order[i0 + j], s0 = b.off[r];
                    for (size_t t = 0; t < T; t++) if (tg[j * T + t] >= 0) { old[q] = b.logp[s0]; adv[q] = b.adv[s0]; ret[q] = b.ret[s0]; s0++; q++; }
                }
                /* policy */
                gpt_zero_grads(c.policy);
                rlhf_lp_forward(c.lp_pol, in, tg, k, T, o->temperature, rows, NULL);
                q = 0;
                for (size_t r = 0; r < BT; r++) if (tg[r] >= 0) cur[q++] = rows[r];
                rlhf_ppo_stats ps;
                pl_sum += rlhf_ppo_policy_loss(cur, old, adv, nt, o->clip_eps, dflat, &ps);
                cf_sum += ps.clip_frac;
                if (ep == o->ppo_epochs - 1) { akl_last += ps.approx_kl; nmb_last++; }
                q = 0;
                for (size_t r = 0; r < BT; r++) drows[r] = tg[r] >= 0 ? dflat[q++] : 0.0f;
                rlhf_lp_backward(c.lp_pol, drows);
                adamw_step(c.opt_pol, c.policy, lr);
                /* value: old values are the rollout-time ones (b.val) */
                gpt_zero_grads(c.value);
                rlhf_vh_forward(c.vh, in, k, T, rows);
                q = 0;
                for (size_t j = 0; j < k; j++) {
                    size_t r = order[i0 + j], s0 = b.off[r];
                    for (size_t t = 0; t < T; t++) if (tg[j * T + t] >= 0) { cur[q] = rows[j * T + t]; old[q] = b.val[s0]; s0++; q++; }
                }
                double vcf;
                vl_sum += rlhf_value_loss(cur, old, ret, nt, o->vf_clip, dflat, &vcf);
                vcf_sum += vcf;
                q = 0;
                for (size_t r = 0; r < BT; r++) drows[r] = tg[r] >= 0 ? dflat[q++] : 0.0f;
                rlhf_vh_backward(c.vh, drows);
                adamw_step(c.opt_val, c.value, vlr);
                nmb++;
                free(ms); free(in); free(tg); free(rows); free(drows); free(cur); free(old); free(adv); free(ret); free(dflat);
            }
        }
        L.t_update = gk_now() - ts;
        L.policy_loss = pl_sum / (double)nmb; L.value_loss = vl_sum / (double)nmb;
        L.clip_frac = cf_sum / (double)nmb; L.vf_clip_frac = vcf_sum / (double)nmb;
        L.approx_kl = nmb_last ? akl_last / (double)nmb_last : 0;
        /* ---- 6. KL coefficient */
        rlhf_kl_ctl_update(&ctl, L.kl, (long)N);
        res->log[it - step0] = L;
        res->iters_done = it + 1 - step0;
        char fields[1024], human[1024];
        snprintf(fields, sizeof fields,
                 "\"score\":%.6g,\"reward\":%.6g,\"kl\":%.6g,\"beta\":%.6g,\"entropy\":%.6g,\"clip_frac\":%.5g,"
                 "\"approx_kl\":%.6g,\"policy_loss\":%.6g,\"value_loss\":%.6g,\"vf_clip_frac\":%.5g,\"resp_len\":%.4g,"
                 "\"ended\":%.4g,\"t_rollout\":%.4f,\"t_score\":%.4f,\"t_ref\":%.4f,\"t_update\":%.4f",
                 L.score, L.reward, L.kl, L.beta, L.entropy, L.clip_frac, L.approx_kl, L.policy_loss, L.value_loss,
                 L.vf_clip_frac, L.resp_len, L.ended, L.t_rollout, L.t_score, L.t_ref, L.t_update);
        snprintf(human, sizeof human, "score %+.3f | kl %.3f | beta %.4f | ent %.3f | clip %.3f | vloss %.4f | akl %.2e | len %.1f | %.1fs",
                 L.score, L.kl, L.beta, L.entropy, L.clip_frac, L.value_loss, L.approx_kl, L.resp_len,
                 L.t_rollout + L.t_score + L.t_ref + L.t_update);
        train_log_step(&lg, it, fields, human);
        if (!isfinite(L.policy_loss) || !isfinite(L.value_loss)) { rc = gk_errf(err, "loss became non-finite at iteration %ld; lower --lr", it); break; }
        if (o->sample_every > 0 && ((it + 1) % o->sample_every == 0 || it == step0)) {
            char txt[400], fb[700];
            response_text(c.tok, c.sp.end, &b.seqs[0], txt, sizeof txt);
            snprintf(fb, sizeof fb, "\"step\":%ld,\"sample\":\"%s\",\"sample_score\":%.5g", it, txt, b.raw[0]);
            char hb[600];
            snprintf(hb, sizeof hb, "sample (score %+.3f): %s", b.raw[0], txt);
            train_log_event(&lg, fb, hb);
        }
        batch_free(&b);
        int last = it + 1 == o->iters;
        if (o->save_every > 0 && (it + 1) % o->save_every == 0 && !last) {
            st.step = it + 1; st.pos.epoch = ord.epoch; st.pos.pos = ord.pos;
            ppo_opts so = *o;
            char *oj = ppo_opts_to_json(&so);
            cJSON *j = cJSON_Parse(oj); cJSON_AddNumberToObject(j, "beta_now", ctl.beta);
            char *sj = cJSON_PrintUnformatted(j); cJSON_Delete(j); free(oj);
            free(st.opts_json); st.opts_json = gk_strdup(sj); cJSON_free(sj);
            vst = st; vst.opts_json = NULL;
            if (train_save(o->out, c.policy, c.opt_pol, &st, tok_rec, err) || train_save(vdir, c.value, c.opt_val, &vst, rm_tok, err)) { rc = -1; break; }
        }
    }
    batch_free(&b);
    res->seconds = gk_now() - t0;
    if (rc == 0 || res->interrupted) {
        st.step = it; st.pos.epoch = ord.epoch; st.pos.pos = ord.pos;
        char *oj = ppo_opts_to_json(o);
        cJSON *j = cJSON_Parse(oj); cJSON_AddNumberToObject(j, "beta_now", ctl.beta);
        char *sj = cJSON_PrintUnformatted(j); cJSON_Delete(j); free(oj);
        free(st.opts_json); st.opts_json = gk_strdup(sj); cJSON_free(sj);
        vst = st; vst.opts_json = NULL;
        gk_err serr;
        const char *tk = o->tokenizer ? o->tokenizer : tok_rec;
        if (train_save(o->out, c.policy, c.opt_pol, &st, tk, &serr) || train_save(vdir, c.value, c.opt_val, &vst, rm_tok, &serr)) {
            if (rc == 0) { *err = serr; rc = -1; }
        } else if (!o->json) gk_log("ppo: saved policy at iteration %ld to %s (value model in %s)%s\n", it, o->out, vdir,
                                    res->interrupted ? " (interrupted; continue with --resume)" : "");
    }
done:
    train_order_free(&ord); free(order);
    train_log_close(&lg);
    ctx_free(&c);
    free(st.opts_json);
    free(tok_rec); free(rm_tok); free(vdir);
    return rc;
}

/* ---------------------------------------------------------------- compare */

int rlhf_compare(const compare_opts *o, compare_result *res, gk_err *err) {
    memset(res, 0, sizeof *res);
    if (!o->a_dir || !o->b_dir || !o->rm_dir || !o->prompts) return gk_errf(err, "compare needs --a, --b, --rm and --prompts");
    if (o->samples <= 0 || o->max_new <= 0) return gk_errf(err, "--samples and --max-new must be positive");
    gpt_model *ma = NULL, *mb = NULL, *rm = NULL;
    tok_tokenizer *tok = NULL;
    struct engine *ea = NULL, *eb = NULL;
    char *tok_rec = NULL;
    prefs_set ps = {0};
    int rc = -1;
    if (!(ma = gpt_load(o->a_dir, &tok_rec, err)) || !(mb = gpt_load(o->b_dir, NULL, err)) || !(rm = rlhf_load_rm(o->rm_dir, NULL, err))) goto done;
    if (ma->cfg.vocab_size != mb->cfg.vocab_size || ma->cfg.vocab_size != rm->cfg.vocab_size) {
        gk_errf(err, "models A (%d), B (%d) and the reward model (%d) must share a vocabulary", ma->cfg.vocab_size,
                mb->cfg.vocab_size, rm->cfg.vocab_size);
        goto done;
    }
    chat_specials sp;
    if (tok_load_recorded(o->a_dir, tok_rec, o->tokenizer, 1, &tok, err)) goto done;
    if (chat_specials_resolve(tok, (size_t)ma->cfg.vocab_size, &sp, err)) goto done;
    if (prefs_load(o->prompts, PREFS_ACCEPT_ANY, &ps, err)) goto done;
    ea = engine_new(ma, tok, (size_t)o->samples, 0);
    eb = engine_new(mb, tok, (size_t)o->samples, 0);
    size_t n = o->n > 0 && (size_t)o->n < ps.n ? (size_t)o->n : ps.n, S = (size_t)o->samples;
    rlhf_chat ch = {tok, sp};
    rlhf_seq *sa = gk_calloc(S, sizeof *sa), *sb = gk_calloc(S, sizeof *sb);
    int *enda = gk_calloc(S, sizeof(int)), *endb = gk_calloc(S, sizeof(int));
    float *ra = gk_malloc(S * sizeof(float)), *rb = gk_malloc(S * sizeof(float));
    double sum_a = 0, sum_b = 0;
    size_t skipped = 0;
    rc = 0;
    for (size_t i = 0; i < n; i++) {
        tok_ids pid = {0};
        rlhf_render_prompt(&ch, &ps.items[i], &pid);
        size_t ctx = (size_t)(ma->cfg.n_ctx < mb->cfg.n_ctx ? ma->cfg.n_ctx : mb->cfg.n_ctx);
        if (pid.n + (size_t)o->max_new + 1 > ctx || pid.n + (size_t)o->max_new + 1 > (size_t)rm->cfg.n_ctx) { skipped++; tok_ids_free(&pid); continue; }
        uint64_t seed = o->seed * 1000003ULL + i;
        if (rlhf_generate(ea, pid.ids, pid.n, S, (size_t)o->max_new, o->temperature, seed, sa, enda, err) ||
            rlhf_generate(eb, pid.ids, pid.n, S, (size_t)o->max_new, o->temperature, seed, sb, endb, err)) { tok_ids_free(&pid); rc = -1; break; }
        score_rollouts(rm, sa, enda, S, sp.end, ra);
        score_rollouts(rm, sb, endb, S, sp.end, rb);
        for (size_t k = 0; k < S; k++) {
            double d = (double)ra[k] - (double)rb[k];
            if (d > 0) res->wins++; else if (d < 0) res->losses++; else res->ties++;
            res->n++;
            sum_a += ra[k]; sum_b += rb[k];
            if (o->json) {
                char ta[300], tb[300];
                response_text(tok, sp.end, &sa[k], ta, sizeof ta);
                response_text(tok, sp.end, &sb[k], tb, sizeof tb);
                printf("{\"prompt\":%zu,\"line\":%zu,\"sample\":%zu,\"score_a\":%.6g,\"score_b\":%.6g,\"a\":\"%s\",\"b\":\"%s\"}\n",
                       i, ps.items[i].line, k, ra[k], rb[k], ta, tb);
            }
            rlhf_seq_free(&sa[k]); rlhf_seq_free(&sb[k]);
        }
        tok_ids_free(&pid);
    }
    if (skipped) gk_warn("compare: skipped %zu prompt(s) too long for the context with --max-new %ld\n", skipped, o->max_new);
    if (rc == 0 && res->n == 0) rc = gk_errf(err, "%s: no prompt could be compared", o->prompts);
    if (rc == 0) {
        double N = (double)res->n;
        res->win_rate = (res->wins + 0.5 * res->ties) / N;
        rlhf_wilson(res->wins + 0.5 * res->ties, N, 1.959964, &res->ci_lo, &res->ci_hi);
        res->mean_a = sum_a / N; res->mean_b = sum_b / N;
    }
    free(sa); free(sb); free(enda); free(endb); free(ra); free(rb);
done:
    if (ea) engine_free(ea);
    if (eb) engine_free(eb);
    prefs_free(&ps);
    tok_free(tok);
    gpt_free(ma); gpt_free(mb); gpt_free(rm);
    free(tok_rec);
    return rc;
}
