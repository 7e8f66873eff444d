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
#include "train/opts_json.h"
#include "kern/kern.h"
#include "infer/infer.h"

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
static void seq_logps(rlhf_lp *lp, const rlhf_seq *seqs, size_t n, float *sums, int32_t **tg_out, size_t *T_out) {
    int32_t *in, *tg;
    size_t T = rlhf_lm_batch(seqs, n, &in, &tg), BT = n * T;
    float *rows = gk_malloc(BT * sizeof(float));
    rlhf_lp_forward(lp, in, tg, n, T, 1.0f, rows, NULL);
    for (size_t i = 0; i < n; i++) {
        double s = 0;
        for (size_t t = 0; t < T; t++) s += rows[i * T + t];
        sums[i] = (float)s;
    }
    free(in); free(rows);
    if (tg_out) { *tg_out = tg; *T_out = T; } else free(tg);
}

static void all_logps(rlhf_lp *lp, const rlhf_seq *seqs, size_t n, size_t batch, float *out) {
    for (size_t i = 0; i < n; i += batch) {
        size_t k = n - i < batch ? n - i : batch;
        seq_logps(lp, seqs + i, k, out + i, NULL, NULL);
    }
}

/* DPO over lines idx[0..k) of d: loss over their pairs, and the backward if asked. */
static double dpo_lines(rlhf_lp *lp, const rlhf_pref_data *d, const uint32_t *idx, size_t k, float beta, int backward,
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
        rlhf_lp_backward(lp, drows);
        free(drows);
    }
    if (npairs) *npairs = np;
    free(tg); free(seqs); free(ref); free(sums); free(dsum); free(pc); free(pr); free(rc); free(rr);
    free(dpc); free(dpr); free(ci); free(ri);
    return loss;
}

static void dpo_eval(rlhf_lp *lp, const rlhf_pref_data *d, size_t batch, float beta, rlhf_dpo_stats *out) {
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

/* ---------------------------------------------------------------- options */

void dpo_opts_default(dpo_opts *o) {
    memset(o, 0, sizeof *o);
    o->out = "out/dpo";
    o->beta = 0.1f;
    o->batch = 8; o->epochs = 1;
    o->sched.lr = 1e-5f; o->sched.warmup = 10; o->sched.shape = LR_LINEAR; o->sched.final_frac = 0.1f;
    adamw_config_default(&o->opt);
    o->opt.weight_decay = 0.0f;
    o->seed = 1337;
}

char *dpo_opts_to_json(const dpo_opts *o) {
    dpo_opts c = *o;
    cJSON *j = cJSON_CreateObject();
    OJ_PUT_S("policy_dir", o->policy_dir); OJ_PUT_S("data", o->data); OJ_PUT_S("val", o->val);
    OJ_PUT_S("tokenizer", o->tokenizer); OJ_PUT_S("out", o->out);
    OJ_PUT_N("beta", o->beta); OJ_PUT_N("batch", o->batch); OJ_PUT_N("epochs", o->epochs); OJ_PUT_N("steps", o->steps);
    oj_put_common(j, &(oj_common){ &c.sched, &c.opt, &c.seed, &c.val_every, &c.save_every, &c.bf16 });
    return oj_finish(j);
}

int dpo_opts_from_json(dpo_opts *o, const char *json, gk_err *err) {
    cJSON *j = cJSON_Parse(json);
    if (!j) return gk_errf(err, "stored options are not valid JSON");
    OJ_GET_S("policy_dir", o->policy_dir); OJ_GET_S("data", o->data); OJ_GET_S("val", o->val);
    OJ_GET_S("tokenizer", o->tokenizer); OJ_GET_S("out", o->out);
    OJ_GET_N("beta", o->beta, float); OJ_GET_N("batch", o->batch, long); OJ_GET_N("epochs", o->epochs, long);
    OJ_GET_N("steps", o->steps, long);
    oj_get_common(j, &(oj_common){ &o->sched, &o->opt, &o->seed, &o->val_every, &o->save_every, &o->bf16 });
    cJSON_Delete(j);
    return 0;
}

/* ---------------------------------------------------------------- training */

int train_dpo(const dpo_opts *o, dpo_result *res, gk_err *err) {
    memset(res, 0, sizeof *res);
    res->final_loss = res->final_acc = res->val_loss = res->val_acc = res->val_margin = NAN;
    if (!o->policy_dir) return gk_errf(err, "no policy: pass --policy SFT_DIR");
    if (!o->data) return gk_errf(err, "no training data: pass --data PREFS.jsonl");
    if (!o->out) return gk_errf(err, "no output directory: pass --out DIR");
    if (o->batch <= 0) return gk_errf(err, "--batch must be positive");
    if (!(o->beta > 0)) return gk_errf(err, "--beta must be > 0");
    char *tok_rec = NULL;
    const char *mdir = o->resume_dir ? o->resume_dir : o->policy_dir;
    gpt_model *m = gpt_load(mdir, &tok_rec, err), *ref = NULL;
    if (!m) return -1;
    rlhf_chat chat; memset(&chat, 0, sizeof chat);
    prefs_set ts = {0}, vs = {0};
    rlhf_pref_data td = {0}, vd = {0};
    adamw *opt = NULL;
    rlhf_lp *lp = NULL;
    train_log lg; memset(&lg, 0, sizeof lg);
    train_state st; memset(&st, 0, sizeof st);
    train_order ord = {0};
    int rc = -1;
    if (m->cfg.score_head) { gk_errf(err, "%s: has a score head; DPO trains an LM (SFT) checkpoint", mdir); goto done; }
    if (rlhf_chat_open(&chat, mdir, tok_rec, o->tokenizer, (size_t)m->cfg.vocab_size, err)) goto done;
    if (prefs_load(o->data, PREFS_ACCEPT_PREFS, &ts, err)) goto done;
    if (o->val && prefs_load(o->val, PREFS_ACCEPT_PREFS, &vs, err)) goto done;
    dd_build(&td, &chat, &ts, (size_t)m->cfg.n_ctx + 1);
    if (o->val) dd_build(&vd, &chat, &vs, (size_t)m->cfg.n_ctx + 1);
    if (td.n == 0) { gk_errf(err, "%s: no preference line fits the model's context", o->data); goto done; }
    if (td.dropped) gk_warn("dpo: dropped %zu training line(s) longer than the context\n", td.dropped);
    res->pairs = td.pairs; res->val_pairs = vd.pairs; res->dropped = td.dropped + vd.dropped;
    /* the reference log-probs are taken in the training precision too, so policy == reference at step 0 */
    if (train_precision_begin(m, o->bf16, err)) goto done;
    /* reference log-probs, once, then the reference is freed */
    {
        double tr = gk_now();
        if (!(ref = gpt_load(o->policy_dir, NULL, err))) goto done;
        kern_set_precision(ref->be, kern_get_precision(m->be));   /* precision is per model: match the policy's */
        rlhf_lp *rl = rlhf_lp_new(ref);
        all_logps(rl, td.seqs, td.nseq, 16, td.ref);
        if (vd.nseq) all_logps(rl, vd.seqs, vd.nseq, 16, vd.ref);
        rlhf_lp_free(rl);
        gpt_free(ref); ref = NULL;
        if (!o->json) gk_log("dpo: reference log-probs of %zu sequences in %.1fs\n", td.nseq + vd.nseq, gk_now() - tr);
    }
    size_t B = (size_t)o->batch < td.n ? (size_t)o->batch : td.n;
    long per_epoch = (long)((td.n + B - 1) / B);
    long steps = o->steps > 0 ? o->steps : per_epoch * (o->epochs > 0 ? o->epochs : 1);
    long step0;
    if (train_stage_begin(m, &o->opt, o->seed ^ 0xD90ULL, o->resume_dir, o->out, "dpo", o->json, steps, &opt, &st, &lg, &step0, err)) goto done;
    lp = rlhf_lp_new(m);
    st.opts_json = dpo_opts_to_json(o);
    lr_schedule sched = o->sched;
    sched.total = steps;
    if (!o->json)
        gk_log("dpo: %d layers, width %d; beta %.3g; %zu lines (%zu pairs) train, %zu pairs val; %zu lines/step, %ld steps\n",
               m->cfg.n_layer, m->cfg.n_embd, o->beta, td.n, td.pairs, vd.pairs, B, steps);
    train_order_init(&ord, td.n, o->seed * 1000003ULL, st.pos.epoch, st.pos.pos);
    gk_sigint_install();
    double t0 = gk_now();
    long step = step0;
    rc = 0;
    for (; step < steps; step++) {
        if (gk_sigint_pending()) { res->interrupted = 1; break; }
        if (o->stop_at > 0 && step >= o->stop_at) break;
        size_t nb;
        const uint32_t *idx = train_order_next(&ord, B, 0, &nb);
        double ts0 = gk_now();
        gpt_zero_grads(m);
        rlhf_dpo_stats s;
        double loss = dpo_lines(lp, &td, idx, nb, o->beta, 1, &s, NULL);
        float lr = lr_at(&sched, step);
        double norm = adamw_step(opt, m, lr);
        double dt = gk_now() - ts0;
        res->final_loss = loss; res->final_acc = s.accuracy;
        char fields[512], human[512];
        snprintf(fields, sizeof fields, "\"loss\":%.7g,\"accuracy\":%.5g,\"margin\":%.6g,\"reward_chosen\":%.6g,\"reward_rejected\":%.6g,"
                 "\"lr\":%.6g,\"grad_norm\":%.6g,\"ms\":%.1f", loss, s.accuracy, s.margin, s.reward_chosen, s.reward_rejected, lr, norm, dt * 1000);
        snprintf(human, sizeof human, "loss %.4f | acc %.3f | margin %+.3f | lr %.2e | norm %.3f | %.0f ms",
                 loss, s.accuracy, s.margin, lr, norm, dt * 1000);
        train_log_step(&lg, step, fields, human);
        if (!isfinite(loss)) { rc = gk_errf(err, "loss became %f at step %ld; lower --lr", loss, step); break; }
        int last = step + 1 == steps;
        if (vd.n && o->val_every > 0 && (step + 1) % o->val_every == 0 && !last) {
            rlhf_dpo_stats v;
            dpo_eval(lp, &vd, B, o->beta, &v);
            snprintf(fields, sizeof fields, "\"step\":%ld,\"val_loss\":%.7g,\"val_accuracy\":%.5g,\"val_margin\":%.6g", step, v.loss, v.accuracy, v.margin);
            snprintf(human, sizeof human, "val loss %.4f | implicit-reward acc %.4f (step %ld)", v.loss, v.accuracy, step + 1);
            train_log_event(&lg, fields, human);
        }
        if (o->save_every > 0 && (step + 1) % o->save_every == 0 && !last) {
            st.step = step + 1; st.pos.epoch = ord.epoch; st.pos.pos = ord.pos;
            if (train_save(o->out, m, opt, &st, o->tokenizer ? o->tokenizer : tok_rec, err)) { rc = -1; break; }
        }
    }
    res->steps_done = step - step0;
    res->seconds = gk_now() - t0;
    if (rc == 0 && !res->interrupted && step >= steps && vd.n) {
        rlhf_dpo_stats v;
        dpo_eval(lp, &vd, B, o->beta, &v);
        res->val_loss = v.loss; res->val_acc = v.accuracy; res->val_margin = v.margin;
        char fields[512], human[512];
        snprintf(fields, sizeof fields, "\"event\":\"final\",\"val_loss\":%.7g,\"val_accuracy\":%.5g,\"val_margin\":%.6g,\"val_pairs\":%zu",
                 v.loss, v.accuracy, v.margin, vd.pairs);
        snprintf(human, sizeof human, "held-out: loss %.4f | implicit-reward accuracy %.4f over %zu pairs | margin %+.3f",
                 v.loss, v.accuracy, vd.pairs, v.margin);
        train_log_event(&lg, fields, human);
    }
    if (rc == 0 || res->interrupted) {
        st.step = step; st.pos.epoch = ord.epoch; st.pos.pos = ord.pos;
        gk_err serr;
        if (train_save(o->out, m, opt, &st, o->tokenizer ? o->tokenizer : tok_rec, &serr)) { if (rc == 0) { *err = serr; rc = -1; } }
        else if (!o->json) gk_log("dpo: saved policy at step %ld to %s%s\n", step, o->out,
                                  res->interrupted ? " (interrupted; continue with --resume)" : "");
    }
done:
    train_precision_end(m, o->bf16);
    train_order_free(&ord);
    train_log_close(&lg);
    rlhf_lp_free(lp);
    rlhf_pref_data_free(&td); rlhf_pref_data_free(&vd);
    prefs_free(&ts); prefs_free(&vs);
    rlhf_chat_close(&chat);
    adamw_free(opt);
    gpt_free(m); gpt_free(ref);
    free(st.opts_json);
    free(tok_rec);
    return rc;
}
