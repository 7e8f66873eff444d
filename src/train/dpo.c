/* dpo.c: direct preference optimisation (Rafailov et al. 2023) — the policy learns from preferences without
 * a reward model or sampling:
 *
 *   logpi(y|x) = sum over response tokens of log pi(token | prefix)          (the <|end|> token included)
 *   z = beta ((logpi(yc) - logref(yc)) - (logpi(yr) - logref(yr)))
 *   loss = mean over pairs of -log sigmoid(z)
 *
 * The reference is the starting checkpoint, frozen: its sequence log-probs are computed once up front for
 * every training and held-out sequence, and the reference model is freed before training starts. A K-ranking
 * gives its K(K-1)/2 pairs; a batch holds whole lines and scores each sequence once. Held-out "implicit
 * reward accuracy" is the fraction of held-out pairs with z > 0 (ties count half).
 */
#include "train/train.h"
#include "kern/kern.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* The preference sets with their reference log-probs attached (ref, filled before training). */
static void dd_build(rlhf_pref_data *d, const rlhf_chat *c, const prefs_set *s, size_t max_len) {
    rlhf_pref_data_build(d, c, s, max_len);
    d->ref = gk_calloc(d->nseq ? d->nseq : 1, sizeof(float));
}

/* Sequence log-probs of seqs[0..n) (sum over response tokens); keeps the last forward for a backward when
 * n fits one call (the training path passes one batch at a time). */
static void seq_logps(train_lm *lp, const rlhf_seq *seqs, size_t n, float *sums, int32_t **tg_out, size_t *T_out) {
    int32_t *in, *tg;
    size_t T = rlhf_lm_batch(seqs, n, &in, &tg), BT = n * T;
    float *rows = gk_malloc(BT * sizeof(float));
    train_lm_logprobs(lp, in, tg, n, T, 1.0f, rows, NULL);
    for (size_t i = 0; i < n; i++) {
        double s = 0;
        for (size_t t = 0; t < T; t++) s += rows[i * T + t];
        sums[i] = (float)s;
    }
    free(in); free(rows);
    if (tg_out) { *tg_out = tg; *T_out = T; } else free(tg);
}

static void all_logps(train_lm *lp, const rlhf_seq *seqs, size_t n, size_t batch, float *out) {
    for (size_t i = 0; i < n; i += batch) {
        size_t k = n - i < batch ? n - i : batch;
        seq_logps(lp, seqs + i, k, out + i, NULL, NULL);
    }
}

/* DPO over lines idx[0..k) of d: loss over their pairs, and the backward if asked. */
static double dpo_lines(train_lm *lp, const rlhf_pref_data *d, const uint32_t *idx, size_t k, float beta, int backward,
                        rlhf_dpo_stats *st, size_t *npairs) {
    size_t ns = 0, np = 0;
    for (size_t j = 0; j < k; j++) { size_t K = d->count[idx ? idx[j] : j]; ns += K; np += K * (K - 1) / 2; }
    rlhf_seq *seqs = gk_malloc(ns * sizeof *seqs);
    float *ref = gk_malloc(ns * sizeof(float)), *sums = gk_malloc(ns * sizeof(float)), *dsum = gk_calloc(ns, sizeof(float));
    float *pc = gk_malloc(np * sizeof(float)), *pr = gk_malloc(np * sizeof(float));
    float *rc = gk_malloc(np * sizeof(float)), *rr = gk_malloc(np * sizeof(float));
    float *dpc = gk_malloc(np * sizeof(float)), *dpr = gk_malloc(np * sizeof(float));
    size_t *ci = gk_malloc(np * sizeof(size_t)), *ri = gk_malloc(np * sizeof(size_t));
    size_t p = 0, q = 0;
    for (size_t j = 0; j < k; j++) {
        size_t l = idx ? idx[j] : j, f = p;
        for (size_t a = 0; a < d->count[l]; a++) { seqs[p] = d->seqs[d->first[l] + a]; ref[p] = d->ref[d->first[l] + a]; p++; }
        for (size_t a = 0; a < d->count[l]; a++)
            for (size_t b2 = a + 1; b2 < d->count[l]; b2++) { ci[q] = f + a; ri[q] = f + b2; q++; }
    }
    int32_t *tg; size_t T;
    seq_logps(lp, seqs, ns, sums, &tg, &T);
    for (size_t i = 0; i < np; i++) { pc[i] = sums[ci[i]]; pr[i] = sums[ri[i]]; rc[i] = ref[ci[i]]; rr[i] = ref[ri[i]]; }
    double loss = rlhf_dpo_loss(pc, pr, rc, rr, np, beta, dpc, dpr, st);
    if (backward) {
        for (size_t i = 0; i < np; i++) { dsum[ci[i]] += dpc[i]; dsum[ri[i]] += dpr[i]; }
        float *drows = gk_malloc(ns * T * sizeof(float));
        for (size_t i = 0; i < ns; i++)
            for (size_t t = 0; t < T; t++) drows[i * T + t] = tg[i * T + t] >= 0 ? dsum[i] : 0.0f;
        train_lm_backward(lp, drows);
        free(drows);
    }
    if (npairs) *npairs = np;
    free(tg); free(seqs); free(ref); free(sums); free(dsum); free(pc); free(pr); free(rc); free(rr);
    free(dpc); free(dpr); free(ci); free(ri);
    return loss;
}

static void dpo_eval(train_lm *lp, const rlhf_pref_data *d, size_t batch, float beta, rlhf_dpo_stats *out) {
    double lsum = 0, acc = 0, margin = 0; size_t pairs = 0;
    for (size_t i = 0; i < d->n; i += batch) {
        size_t k = d->n - i < batch ? d->n - i : batch;
        uint32_t *idx = gk_malloc(k * sizeof(uint32_t));
        for (size_t j = 0; j < k; j++) idx[j] = (uint32_t)(i + j);
        rlhf_dpo_stats s; size_t np;
        double l = dpo_lines(lp, d, idx, k, beta, 0, &s, &np);
        free(idx);
        lsum += l * (double)np; acc += s.accuracy * (double)np; margin += s.margin * (double)np; pairs += np;
    }
    memset(out, 0, sizeof *out);
    out->loss = pairs ? lsum / (double)pairs : NAN;
    out->accuracy = pairs ? acc / (double)pairs : NAN;
    out->margin = pairs ? margin / (double)pairs : NAN;
}

/* ---------------------------------------------------------------- training */

typedef struct {
    rlhf_pref_loop pl;        /* first: rlhf_pref_tell */
    const dpo_opts *o;
    train_lm *lp;
} dpo_ctx;

static double dpo_step_lines(void *ctx, const uint32_t *idx, size_t k, rlhf_pref_eval *st) {
    dpo_ctx *c = ctx;
    rlhf_dpo_stats ds;
    size_t np;
    double loss = dpo_lines(c->lp, c->pl.td, idx, k, c->o->beta, 1, &ds, &np);
    st->units = (double)np;   /* the loss is a mean over pairs */
    st->pairs = np;
    st->accuracy = ds.accuracy; st->margin = ds.margin;
    st->extra[0] = ds.reward_chosen; st->extra[1] = ds.reward_rejected;
    return loss;
}

static int dpo_val(void *ctx, train_stage *s, long step, int final, gk_err *err) {
    (void)err;
    dpo_ctx *c = ctx;
    rlhf_dpo_stats v;
    dpo_eval(c->lp, c->pl.vd, c->pl.B, c->o->beta, &v);
    rlhf_pref_val(&c->pl, s, step, final, &(rlhf_pref_eval){ .loss = v.loss, .accuracy = v.accuracy, .margin = v.margin, .pairs = c->pl.vd->pairs });
    return 0;
}

/* The reference's sequence log-probs, once (in the training precision, so policy == reference at step 0);
 * then the reference is freed. With LoRA the reference is the policy itself with its adapters switched off
 * (the frozen base): no second copy of the weights is ever loaded. */
static int dpo_reference(const dpo_opts *o, gpt_model *policy, rlhf_pref_data *td, rlhf_pref_data *vd, gk_err *err) {
    double tr = gk_now();
    gpt_model *ref = policy->lora ? policy : gpt_load(o->policy_dir, NULL, err);
    if (!ref) return -1;
    if (ref != policy && o->bf16) kern_set_precision(ref->be, KERN_PREC_BF16);   /* precision is per model: the policy's */
    if (ref == policy) policy->lora->enabled = 0;
    train_lm *rl = train_lm_new(ref);
    all_logps(rl, td->seqs, td->nseq, 16, td->ref);
    if (vd->nseq) all_logps(rl, vd->seqs, vd->nseq, 16, vd->ref);
    train_lm_free(rl);
    if (ref == policy) policy->lora->enabled = 1;
    else gpt_free(ref);
    if (!o->json) gk_log("dpo: reference log-probs of %zu sequences in %.1fs%s\n", td->nseq + vd->nseq, gk_now() - tr,
                         ref == policy ? " (LoRA: the policy's own weights with the adapters off; no second copy loaded)" : "");
    return 0;
}

int train_dpo(const dpo_opts *o, dpo_result *res, gk_err *err) {
    memset(res, 0, sizeof *res);
    res->final_loss = res->final_acc = res->val_loss = res->val_acc = res->val_margin = NAN;
    if (!o->policy_dir) return gk_errf(err, "no policy: pass --policy SFT_DIR");
    if (!o->resume_dir && train_refuse_adapter_policy("dpo", o->policy_dir, err)) return -1;
    if (!o->data) return gk_errf(err, "no training data: pass --data PREFS.jsonl");
    if (!o->out) return gk_errf(err, "no output directory: pass --out DIR");
    if (o->batch <= 0) return gk_errf(err, "--batch must be positive");
    if (!(o->beta > 0)) return gk_errf(err, "--beta must be > 0");
    char *tok_rec = NULL, *base_dir = NULL;
    const char *mdir = o->resume_dir ? o->resume_dir : o->policy_dir;
    /* a LoRA run's --resume names its adapter directory: the recorded base is opened and the adapter attached */
    gpt_model *m = train_open_model(mdir, &tok_rec, &base_dir, o->lora.rank > 0, err);   /* LoRA: a .gguf stays quantized */
    if (!m) return -1;
    rlhf_chat chat; memset(&chat, 0, sizeof chat);
    prefs_set ts = {0}, vs = {0};
    rlhf_pref_data td = {0}, vd = {0};
    dpo_ctx c = { .pl = { .td = &td, .vd = &vd, .lines = dpo_step_lines, .extra_keys = { "reward_chosen", "reward_rejected" },
                          .acc_short = "implicit-reward acc", .acc_long = "implicit-reward accuracy",
                          .final_acc = &res->final_acc, .val_loss = &res->val_loss, .val_acc = &res->val_acc,
                          .val_margin = &res->val_margin },
                  .o = o };
    train_stage s;
    memset(&s, 0, sizeof s);
    int rc = -1;
    if (m->cfg.score_head) { gk_errf(err, "%s: has a score head; DPO trains an LM (SFT) checkpoint", mdir); goto done; }
    if (train_lora_setup(m, &o->lora, base_dir, o->seed, o->json, err)) goto done;
    if (rlhf_chat_open(&chat, base_dir, tok_rec, o->tokenizer, (size_t)m->cfg.vocab_size, err)) goto done;
    if (prefs_load(o->data, PREFS_ACCEPT_PREFS, &ts, err)) goto done;
    if (o->val && prefs_load(o->val, PREFS_ACCEPT_PREFS, &vs, err)) goto done;
    dd_build(&td, &chat, &ts, (size_t)m->cfg.n_ctx + 1);
    if (o->val) dd_build(&vd, &chat, &vs, (size_t)m->cfg.n_ctx + 1);
    if (td.n == 0) { gk_errf(err, "%s: no preference line fits the model's context", o->data); goto done; }
    if (td.dropped) gk_warn("dpo: dropped %zu training line(s) longer than the context\n", td.dropped);
    res->pairs = td.pairs; res->val_pairs = vd.pairs; res->dropped = td.dropped + vd.dropped;
    train_stage_cfg sc = {
        .name = "dpo", .models = { { .m = m, .out = o->out, .resume = o->resume_dir, .tokenizer = o->tokenizer ? o->tokenizer : tok_rec } },
        .rng_seed = o->seed ^ 0xD90ULL, .saved_what = "policy", TRAIN_STAGE_OPTS(o),
    };
    if (rlhf_pref_open(&c.pl, &s, &sc, o->batch, o->epochs, o->steps, o->seed, err) || dpo_reference(o, m, &td, &vd, err)) goto done;
    c.lp = train_lm_new(m);
    if (!o->json)
        gk_log("dpo: %d layers, width %d; beta %.3g; %zu lines (%zu pairs) train, %zu pairs val; %zu lines/step, %ld steps\n",
               m->cfg.n_layer, m->cfg.n_embd, o->beta, td.n, td.pairs, vd.pairs, c.pl.B, s.cfg.total);
    train_stage_hooks h = { .ctx = &c, .micro = rlhf_pref_micro, .split = 1, .eval = vd.n ? dpo_val : NULL, .tell = rlhf_pref_tell };
    rc = train_stage_run(&s, &h, dpo_opts_to_json(o), err);
    TRAIN_STAGE_RESULT(res, &s);
done:
    train_stage_close(&s);
    train_order_free(&c.pl.ord);
    train_lm_free(c.lp);
    rlhf_pref_data_free(&td); rlhf_pref_data_free(&vd);
    prefs_free(&ts); prefs_free(&vs);
    rlhf_chat_close(&chat);
    gpt_free(m);
    free(tok_rec); free(base_dir);
    return rc;
}
