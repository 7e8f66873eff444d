/* stage.c: the one training-stage skeleton (see train.h, "the stage skeleton").
 *
 * pretrain, sft, rm, dpo and ppo each supply a hook struct (a micro-batch's loss and gradient, or PPO's whole
 * iteration; eval; sample; data position) and this file runs everything around it: start and exact resume,
 * the stage RNG, Ctrl-C, the progress line and metrics JSONL, the eval / sample / checkpoint cadence, precision
 * begin/end, gradient accumulation and the optimizer step. Anything every stage needs (the gradient
 * all-reduce, LoRA's parameter selection, a new precision) is added here once.
 */
#include "train/train.h"
#include "kern/kern.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- precision */

/* --precision bf16: bf16 matmul inputs with fp32 accumulation and master weights, m's parameters rounded once
 * per optimizer step (kern_bf16_shadow). */
static int precision_begin(gpt_model *m, int bf16, gk_err *err) {
    if (!bf16) return 0;
    if (kern_set_precision(m->be, KERN_PREC_BF16) != 0)
        return gk_errf(err, "--precision bf16 needs oneDNN and a CPU with AVX512-BF16 or AMX; this build/CPU has neither");
    kern_bf16_shadow(m->be, m->params, m->num_params);
    return 0;
}

void train_stage_precision_end(train_stage *s) {
    if (!s->bf16_on) return;
    gpt_model *m = s->cfg.models[0].m;
    kern_bf16_shadow(m->be, NULL, 0);
    kern_set_precision(m->be, KERN_PREC_FP32);
    s->bf16_on = 0;
}

/* ---------------------------------------------------------------- start */

int train_stage_open(train_stage *s, const train_stage_cfg *cfg, gk_err *err) {
    memset(s, 0, sizeof *s);
    s->cfg = *cfg;
    s->cfg.sched.total = cfg->total;
    if (s->cfg.accum < 1) s->cfg.accum = 1;
    if (!s->cfg.saved_what) s->cfg.saved_what = "checkpoint";
    s->last_loss = NAN;
    GK_CHECK(cfg->n_models >= 1 && cfg->n_models <= TRAIN_STAGE_MAX_MODELS, "train_stage_open: %zu models", cfg->n_models);
    /* one writer per output directory, before anything there is read or written (this also removes the
     * temporaries of a save that was killed) */
    for (size_t k = 0; k < s->cfg.n_models; k++)
        if (gk_dir_lock_take(s->cfg.models[k].out, &s->locks[k], err)) return -1;
    for (size_t k = 0; k < s->cfg.n_models; k++) {
        gpt_alloc_grads(s->cfg.models[k].m);
        s->cfg.models[k].opt = adamw_create(s->cfg.models[k].m, cfg->opt);
    }
    gk_rng_seed(&s->st.rng, cfg->rng_seed);
    /* Resume: every model's moments from its own state; step, data position and RNG from model 0's (the
     * others store the same values). */
    for (size_t k = 0; k < s->cfg.n_models; k++) {
        const train_stage_model *sm = &s->cfg.models[k];
        if (!sm->resume) continue;
        train_state tmp;
        memset(&tmp, 0, sizeof tmp);
        if (train_load_state(sm->resume, sm->m, sm->opt, k ? &tmp : &s->st, err)) return -1;
        free(tmp.opts_json);
        if (k == 0) {
            s->step0 = s->st.step; s->resumed_opts = s->st.opts_json; s->st.opts_json = NULL;
            s->tokens = s->st.tokens; s->last_loss = s->st.last_loss;
        }
    }
    for (size_t k = 0; k < s->cfg.n_models; k++)
        if (gk_mkdir_p(s->cfg.models[k].out, err)) return -1;
    char *mp = gk_path_join(s->cfg.models[0].out, "metrics.jsonl");
    int rc = train_log_open(&s->lg, cfg->name, mp, cfg->json, s->step0, cfg->total, err);
    free(mp);
    if (rc) return -1;
    if (precision_begin(s->cfg.models[0].m, cfg->bf16, err)) return -1;
    s->bf16_on = cfg->bf16;
    if (cfg->flops_per_step > 0) s->peak = train_peak_gflops(cfg->bf16) * 1e9;
    return 0;
}

void train_stage_close(train_stage *s) {
    train_stage_precision_end(s);
    train_log_close(&s->lg);
    for (size_t k = 0; k < s->cfg.n_models; k++) { adamw_free(s->cfg.models[k].opt); s->cfg.models[k].opt = NULL; }
    free(s->st.opts_json); s->st.opts_json = NULL;
    free(s->resumed_opts); s->resumed_opts = NULL;
    for (size_t k = 0; k < TRAIN_STAGE_MAX_MODELS; k++) { gk_dir_unlock(s->locks[k]); s->locks[k] = NULL; }
}

/* ---------------------------------------------------------------- the optimizer step */

void train_stage_zero(train_stage *s, size_t k) { gpt_zero_grads(s->cfg.models[k].m); }

/* The only optimizer step in src/train. Data-parallel training all-reduces the gradients here, before the
 * norm; LoRA's parameter selection is the model's trainable[] groups, which adamw_step (norm, clipping,
 * update) alone reads. */
double train_stage_update(train_stage *s, size_t k, float lr) {
    const train_stage_model *sm = &s->cfg.models[k];
    return adamw_step(sm->opt, sm->m, lr);
}

/* ---------------------------------------------------------------- checkpoints */

/* Where model output `out` goes inside the staging directory of model 0's output out0: out0 itself, or the
 * subdirectory `out` is of it. */
static char *stage_subdir(const char *staging, const char *out0, const char *out) {
    size_t n = strlen(out0);
    if (!strcmp(out, out0)) return gk_strdup(staging);
    GK_CHECK(!strncmp(out, out0, n) && out[n] == '/' && out[n + 1], "checkpoint of %s must lie inside %s", out, out0);
    return gk_path_join(staging, out + n + 1);
}

/* Every model's checkpoint + resume state at `step` (the next step to run), as one unit (gk_ckpt_begin/commit):
 * written complete into a staging directory, then switched to. Model k > 0 lives in a subdirectory of model 0's
 * output (PPO's OUT/value), so one switch covers every model and their steps always agree. */
static int save_all(train_stage *s, const train_stage_hooks *h, long step, int finished, gk_err *err) {
    s->st.step = step;
    s->st.tokens = s->tokens; s->st.last_loss = s->last_loss; s->st.finished = finished;
    if (h->tell) h->tell(h->ctx, &s->st.pos);
    if (h->opts) { free(s->st.opts_json); s->st.opts_json = h->opts(h->ctx); }
    const char *out0 = s->cfg.models[0].out;
    char *staging = gk_ckpt_begin(out0, step, err);
    if (!staging) return -1;
    int rc = 0;
    for (size_t k = 0; k < s->cfg.n_models && rc == 0; k++) {
        const train_stage_model *sm = &s->cfg.models[k];
        train_state st = s->st;
        if (k) st.opts_json = NULL;   /* the options live with model 0 */
        char *dir = stage_subdir(staging, out0, sm->out);
        rc = train_save(dir, sm->m, sm->opt, &st, sm->tokenizer, err);
        free(dir);
    }
    if (rc == 0) rc = gk_ckpt_commit(out0, staging, err);   /* removes staging itself on failure */
    else gk_ckpt_abort(staging);
    free(staging);
    return rc ? -1 : 0;
}

/* ---------------------------------------------------------------- one step */

static void out_init(train_step_out *o) {
    memset(o, 0, sizeof *o);
    o->pre = cJSON_CreateObject();
    o->post = cJSON_CreateObject();
}

/* Moves src's items to the end of dst (in order) and deletes src. */
static void move_items(cJSON *dst, cJSON *src) {
    while (src->child) {
        cJSON *it = cJSON_DetachItemViaPointer(src, src->child);
        cJSON_AddItemToObject(dst, it->string, it);
    }
    cJSON_Delete(src);
}

/* Appends " | text" to a human line when text is not empty. */
static void human_add(char *h, size_t cap, const char *text) {
    size_t n = strlen(h);
    if (*text && n < cap) snprintf(h + n, cap - n, "%s%s", n ? " | " : "", text);
}

/* The micro-batch path: zero, accum micro-batches, one update on the schedule; then the step's log record. */
static int micro_step(train_stage *s, const train_stage_hooks *h, long step, gk_err *err) {
    train_step_out o;
    out_init(&o);
    double ts = gk_now(), lsum = 0;
    train_stage_zero(s, 0);
    for (long a = 0; a < s->cfg.accum; a++) {
        if (h->micro(h->ctx, s, step, a, &o, err)) { cJSON_Delete(o.pre); cJSON_Delete(o.post); return -1; }
        lsum += o.loss;
    }
    double loss = lsum / (double)s->cfg.accum;
    float lr = lr_at(&s->cfg.sched, step);
    double norm = train_stage_update(s, 0, lr);
    double dt = gk_now() - ts;
    s->last_loss = loss;
    s->tokens += o.tokens;

    cJSON *f = cJSON_CreateObject();
    char hum[1024] = "", part[128];
    train_put(f, "loss", "%.7g", loss);
    snprintf(part, sizeof part, "loss %.4f", loss);                        human_add(hum, sizeof hum, part);
    move_items(f, o.pre);                                                  human_add(hum, sizeof hum, o.hpre);
    train_put(f, "lr", "%.6g", lr);
    train_put(f, "grad_norm", "%.6g", norm);
    snprintf(part, sizeof part, "lr %.2e | norm %.3f", lr, norm);         human_add(hum, sizeof hum, part);
    move_items(f, o.post);                                                 human_add(hum, sizeof hum, o.hpost);
    if (o.tokens > 0) {
        train_put(f, "tokens_per_s", "%.1f", o.tokens / dt);
        snprintf(part, sizeof part, "%.0f tok/s", o.tokens / dt);         human_add(hum, sizeof hum, part);
    }
    train_put(f, "ms", "%.1f", dt * 1000);
    snprintf(part, sizeof part, "%.0f ms", dt * 1000);                    human_add(hum, sizeof hum, part);
    if (s->cfg.flops_per_step > 0) {
        double mfu = s->peak > 0 ? s->cfg.flops_per_step / dt / s->peak : 0;
        train_put(f, "mfu", "%.4f", mfu);
        snprintf(part, sizeof part, "MFU %.1f%%", 100 * mfu);             human_add(hum, sizeof hum, part);
    }
    train_log_step(&s->lg, step, f, hum);
    return 0;
}

/* The iterate path: the hook runs the step and writes its whole record. Returns 0, 1 (interrupted) or -1. */
static int iterate_step(train_stage *s, const train_stage_hooks *h, long step, gk_err *err) {
    train_step_out o;
    out_init(&o);
    int rc = h->iterate(h->ctx, s, step, &o, err);
    cJSON_Delete(o.pre);
    if (rc) { cJSON_Delete(o.post); return rc; }
    s->last_loss = o.loss;
    s->tokens += o.tokens;
    train_log_step(&s->lg, step, o.post, o.hpost);
    return 0;
}

/* ---------------------------------------------------------------- the loop */

/* What follows a logged step: the loss check, eval and sample at their cadence, a periodic checkpoint. */
static int after_step(train_stage *s, const train_stage_hooks *h, long step, gk_err *err) {
    const train_stage_cfg *c = &s->cfg;
    if (!isfinite(s->last_loss))
        return gk_errf(err, "loss became %f at step %ld; lower --lr or check the data", s->last_loss, step);
    int last = step + 1 == c->total;
    int periodic = c->val_every > 0 && (step + 1) % c->val_every == 0;
    if (h->eval && ((last && c->eval_last) || periodic) && h->eval(h->ctx, s, step, last && c->eval_last, err)) return -1;
    if (h->sample && c->sample_every > 0 && ((step + 1) % c->sample_every == 0 || (c->sample_first && step == s->step0)) &&
        h->sample(h->ctx, s, step, err)) return -1;
    if (c->save_every > 0 && (step + 1) % c->save_every == 0 && !last && save_all(s, h, step + 1, 0, err)) return -1;
    return 0;
}

int train_stage_run(train_stage *s, const train_stage_hooks *h, char *opts_json, gk_err *err) {
    const train_stage_cfg *c = &s->cfg;
    free(s->st.opts_json);
    s->st.opts_json = opts_json;
    gk_sigint_install();
    double t0 = gk_now();
    long step = s->step0;
    int rc = 0;
    for (; step < c->total; step++) {
        if (gk_sigint_pending()) { s->interrupted = 1; break; }
        if (c->stop_at > 0 && step >= c->stop_at) break;
        int r = h->iterate ? iterate_step(s, h, step, err) : micro_step(s, h, step, err);
        if (r == 1) { s->interrupted = 1; break; }
        if (r || after_step(s, h, step, err)) { rc = -1; break; }
    }
    s->step = step;
    s->seconds = gk_now() - t0;
    if (rc == 0 && h->finish && h->finish(h->ctx, s, step >= c->total && !s->interrupted, err)) rc = -1;
    if (rc == 0 || s->interrupted) {
        gk_err serr;
        if (save_all(s, h, step, step >= c->total && !s->interrupted, &serr)) { if (rc == 0) { *err = serr; rc = -1; } }
        else {
            s->saved = 1;
            if (!c->json) {
                gk_log("%s: saved %s at step %ld to %s", c->name, c->saved_what, step, c->models[0].out);
                for (size_t k = 1; k < c->n_models; k++) gk_log(", %s", c->models[k].out);
                gk_log("%s\n", s->interrupted ? " (interrupted; continue with --resume)" : "");
            }
        }
    }
    return rc;
}
