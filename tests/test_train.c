/* test_train.c: the stage skeleton (src/train/stage.c) with a toy stage on a tiny model — the cadence of eval,
 * sample and checkpoints, gradient accumulation (the micro hook runs accum times per optimizer step, the step's
 * loss is their mean), the metrics record (keys in order, printed precision), stop-at + resume continuing
 * bit for bit, a non-finite loss stopping the run, and train_put's rounding. */
#include "train/train.h"
#include "kern/kern.h"
#include <cjson/cJSON.h>
#include "testlib.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    gpt_model *m;
    train_lm *lm;
    int32_t in[8], tg[8];        /* [2, 4] */
    long micro_calls, eval_calls, sample_calls, evals[16], finals[16], samples[16];
    long micro_seen[64];          /* step * 10 + micro of each call */
    int  nan_at;                  /* step whose loss is NaN (-1: none) */
    uint64_t pos;                 /* a fake data position: micro-batches consumed */
} toy;

static int toy_micro(void *ctx, train_stage *s, long step, long micro, train_step_out *out, gk_err *err) {
    (void)s; (void)err;
    toy *t = ctx;
    if (t->micro_calls < 64) t->micro_seen[t->micro_calls] = step * 10 + micro;
    t->micro_calls++;
    t->pos++;
    for (int i = 0; i < 8; i++) { t->in[i] = (int32_t)((t->pos * 7 + (uint64_t)i * 3) % 32); t->tg[i] = (t->in[i] + 1) % 32; }
    out->loss = train_lm_loss(t->lm, t->in, t->tg, 2, 4, 8.0 * (double)s->cfg.accum, NULL);
    if (step == t->nan_at) out->loss = NAN;
    out->tokens += 8;
    if (micro == 0) {
        train_put(out->pre, "pre_x", "%.3g", 1.0 / 3.0);
        train_put(out->post, "post_y", "%.1f", 2.25);
        snprintf(out->hpre, sizeof out->hpre, "x");
    }
    return 0;
}
static int toy_eval(void *ctx, train_stage *s, long step, int final, gk_err *err) {
    (void)s; (void)err;
    toy *t = ctx;
    if (t->eval_calls < 16) { t->evals[t->eval_calls] = step; t->finals[t->eval_calls] = final; }
    t->eval_calls++;
    return 0;
}
static int toy_sample(void *ctx, train_stage *s, long step, gk_err *err) {
    (void)s; (void)err;
    toy *t = ctx;
    if (t->sample_calls < 16) t->samples[t->sample_calls] = step;
    t->sample_calls++;
    return 0;
}
static void toy_tell(void *ctx, data_pos *pos) { pos->epoch = 0; pos->shard = 0; pos->pos = ((toy *)ctx)->pos; }

static gpt_model *tiny_model(void) {
    gpt_config c;
    gpt_config_default(&c);
    c.n_layer = 1; c.n_head = 2; c.n_embd = 16; c.vocab_size = 32; c.n_ctx = 8;
    gpt_model *m = gpt_create(&c);
    gpt_init_random(m, 5);
    return m;
}

/* Runs the toy stage: total steps, stop_at, optionally resuming from dir. Returns the run's rc. */
static int run_toy(toy *t, const char *out, const char *resume, long total, long stop_at, train_stage *s, gk_err *err) {
    adamw_config oc;
    adamw_config_default(&oc);
    train_stage_cfg sc = {
        .name = "toy", .models = { { .m = t->m, .out = out, .resume = resume } }, .n_models = 1, .opt = &oc,
        .rng_seed = 9, .total = total, .accum = 2, .sched = { .lr = 1e-2f, .warmup = 2, .shape = LR_COSINE, .final_frac = 0.1f },
        .json = 1, .val_every = 2, .eval_last = 1, .sample_every = 3, .sample_first = 1, .save_every = 2, .stop_at = stop_at,
    };
    train_stage_hooks h = { .ctx = t, .micro = toy_micro, .eval = toy_eval, .sample = toy_sample, .tell = toy_tell };
    if (train_stage_open(s, &sc, err)) return -1;
    if (resume) t->pos = s->st.pos.pos;
    return train_stage_run(s, &h, gk_strdup("{\"toy\":1}"), err);
}

static void toy_init(toy *t) {
    memset(t, 0, sizeof *t);
    t->m = tiny_model();
    t->lm = train_lm_new(t->m);
    t->nan_at = -1;
}
static void toy_free(toy *t) { train_lm_free(t->lm); gpt_free(t->m); }

static char *read_text(const char *dir, const char *name) {
    char *p = gk_path_join(dir, name);
    size_t n = 0;
    char *s = NULL;
    gk_err err;
    if (gk_read_file(p, &s, &n, &err)) s = NULL;
    free(p);
    return s;
}

static void test_cadence_and_record(void) {
    char *d = tl_tmpdir("stage");
    toy t; toy_init(&t);
    train_stage s; gk_err err;
    int rc = run_toy(&t, d, NULL, 5, 0, &s, &err);
    CHECK(rc == 0, "run: %s", err.msg);
    CHECK(s.step0 == 0 && s.step == 5 && !s.interrupted && s.saved, "steps %ld..%ld", s.step0, s.step);
    /* accumulation: two micro-batches per step, in order */
    CHECK(t.micro_calls == 10, "micro calls %ld", t.micro_calls);
    for (long i = 0; i < 10 && i < t.micro_calls; i++) CHECK(t.micro_seen[i] == (i / 2) * 10 + i % 2, "call %ld was %ld", i, t.micro_seen[i]);
    /* eval at steps 1, 3 (every 2) and after the last (4, final); sample after the first (0) and every 3 (2) */
    CHECK(t.eval_calls == 3 && t.evals[0] == 1 && t.evals[1] == 3 && t.evals[2] == 4 && !t.finals[0] && !t.finals[1] && t.finals[2],
          "evals %ld: %ld %ld %ld", t.eval_calls, t.evals[0], t.evals[1], t.evals[2]);
    CHECK(t.sample_calls == 2 && t.samples[0] == 0 && t.samples[1] == 2, "samples %ld", t.sample_calls);
    train_stage_close(&s);
    /* the metrics record: keys in the skeleton's order, values at their printed precision */
    char *mj = read_text(d, "metrics.jsonl");
    CHECK(mj != NULL, "no metrics.jsonl");
    if (mj) {
        mj[strcspn(mj, "\n")] = 0;   /* the first record */
        cJSON *j = cJSON_Parse(mj);
        const char *want[] = { "stage", "step", "loss", "pre_x", "lr", "grad_norm", "post_y", "tokens_per_s", "ms", "elapsed_s" };
        size_t k = 0;
        for (cJSON *it = j ? j->child : NULL; it; it = it->next, k++)
            CHECK(k < 10 && !strcmp(it->string, want[k]), "key %zu is %s", k, it->string);
        CHECK(k == 10, "%zu keys in %s", k, mj);
        CHECK(strstr(mj, "\"pre_x\":0.333,") && strstr(mj, "\"post_y\":2.2") && strstr(mj, "\"stage\":\"toy\",\"step\":0,"),
              "record %s", mj);
        cJSON_Delete(j);
    }
    free(mj);
    toy_free(&t);
    free(d);
}

/* stop-at 3, then resume to 5 == 5 in one go: same parameters (checksum), same data position. */
static void test_stop_and_resume_exact(void) {
    char *a = tl_tmpdir("stagefull"), *b = tl_tmpdir("stagepart");
    toy t1, t2; toy_init(&t1); toy_init(&t2);
    train_stage s; gk_err err;
    CHECK(run_toy(&t1, a, NULL, 5, 0, &s, &err) == 0, "full: %s", err.msg);
    uint64_t full = train_params_checksum(t1.m);
    train_stage_close(&s);
    CHECK(run_toy(&t2, b, NULL, 5, 3, &s, &err) == 0, "part: %s", err.msg);
    CHECK(s.step == 3 && s.saved && !s.interrupted, "stopped at %ld", s.step);
    train_stage_close(&s);
    toy_free(&t2);
    char *tok = NULL;
    toy t3; toy_init(&t3);
    train_lm_free(t3.lm); gpt_free(t3.m);   /* the LM path frees on its model's backend */
    t3.m = gpt_load(b, &tok, &err);
    CHECK(t3.m != NULL, "load: %s", err.msg);
    if (t3.m) {
        t3.lm = train_lm_new(t3.m);
        CHECK(run_toy(&t3, b, b, 5, 0, &s, &err) == 0, "resume: %s", err.msg);
        CHECK(s.step0 == 3 && s.step == 5, "resumed %ld..%ld", s.step0, s.step);
        CHECK(s.resumed_opts && !strcmp(s.resumed_opts, "{\"toy\":1}"), "resumed options %s", s.resumed_opts ? s.resumed_opts : "(none)");
        CHECK(t3.pos == t1.pos, "data position %llu vs %llu", (unsigned long long)t3.pos, (unsigned long long)t1.pos);
        CHECK(train_params_checksum(t3.m) == full, "resumed parameters differ from the uninterrupted run");
        train_stage_close(&s);
        toy_free(&t3);
    }
    free(tok);
    toy_free(&t1);
    free(a); free(b);
}

static void test_nonfinite_loss_stops(void) {
    char *d = tl_tmpdir("stagenan");
    toy t; toy_init(&t);
    t.nan_at = 1;
    train_stage s; gk_err err;
    int rc = run_toy(&t, d, NULL, 5, 0, &s, &err);
    CHECK(rc == -1 && strstr(err.msg, "loss became nan at step 1"), "rc %d: %s", rc, rc ? err.msg : "");
    CHECK(!s.saved && t.micro_calls == 4, "saved %d, %ld micro calls", s.saved, t.micro_calls);
    train_stage_close(&s);
    toy_free(&t);
    free(d);
}

static void test_train_put(void) {
    cJSON *o = cJSON_CreateObject();
    train_put(o, "a", "%.7g", 3.14159265358979);
    train_put(o, "b", "%.1f", 1234.5678);
    train_put(o, "c", "%.6g", 1e-5);
    train_put(o, "d", "%.7g", NAN);
    train_put(o, "e", "%.7g", 42.0);
    char *s = cJSON_PrintUnformatted(o);
    CHECK(!strcmp(s, "{\"a\":3.141593,\"b\":1234.6,\"c\":1e-05,\"d\":null,\"e\":42}"), "got %s", s);
    cJSON_free(s);
    cJSON_Delete(o);
}

/* ---------------------------------------------------------------- the LM head on masked rows */

/* The head runs only on rows with a target (and, in train_lm_backward, a nonzero gradient), gathered past the
 * masked ones (lm.c). Reference: every row through the head at once, masked rows with dloss 0 — what lm.c did
 * before. Loss, per-token log-probs, entropies and every parameter gradient must agree to float rounding. The
 * batch (6 x 100, tied head) spans three 256-row chunks and masks rows in runs (a prompt, right padding) and
 * singly, so chunks both gather and run in place. */
static void lm_reference(gpt_model *m, const int32_t *in, const int32_t *tg, const float *dloss_rows, size_t B, size_t T,
                         float temp, float *loss, float *ent) {
    size_t BT = B * T, C = (size_t)m->cfg.n_embd, V = (size_t)m->cfg.vocab_size;
    kern_backend *be = m->be;
    float *logits = kern_alloc(be, BT * V * sizeof(float)), *dh = kern_alloc(be, BT * C * sizeof(float));
    float *dl = kern_alloc(be, BT * sizeof(float)), *dloss = kern_alloc(be, BT * sizeof(float));
    int32_t *dt = kern_alloc(be, BT * sizeof(int32_t));
    gpt_forward(m, in, B, T);
    const float *h = gpt_hidden(m);
    gpt_lm_head_fwd(m, logits, h, BT);
    kern_scale(be, logits, 1.0f / temp, BT * V);
    if (ent) {
        float *hl = malloc(BT * V * sizeof(float));
        kern_download(be, hl, logits, BT * V * sizeof(float));
        for (size_t i = 0; i < BT; i++) ent[i] = tg[i] >= 0 ? (float)rlhf_entropy_row(hl + i * V, V, 1.0f) : 0.0f;
        free(hl);
    }
    kern_upload(be, dt, tg, BT * sizeof(int32_t));
    if (dloss_rows) kern_upload(be, dloss, dloss_rows, BT * sizeof(float));
    kern_xent_fwd_bwd(be, dl, dloss_rows ? logits : NULL, logits, dt, dloss_rows ? dloss : NULL, BT, V);
    kern_download(be, loss, dl, BT * sizeof(float));
    if (dloss_rows) {
        kern_scale(be, logits, 1.0f / temp, BT * V);
        kern_zero(be, dh, BT * C * sizeof(float));
        gpt_lm_head_bwd(m, dh, logits, h, BT);
        gpt_backward(m, dh);
    }
    kern_free(be, logits); kern_free(be, dh); kern_free(be, dl); kern_free(be, dloss); kern_free(be, dt);
}

static void test_lm_head_masked_rows(void) {
    enum { B = 6, T = 100, BT = B * T };
    gpt_config c;
    gpt_config_default(&c);
    c.n_layer = 2; c.n_head = 2; c.n_embd = 16; c.vocab_size = 40; c.n_ctx = T;
    gpt_model *m = gpt_create(&c);
    gpt_init_random(m, 11);
    gpt_alloc_grads(m);
    size_t np = m->num_params;
    static int32_t in[BT], tg[BT];
    static float dlr[BT], lref[BT], eref[BT], logp[BT], ent[BT], dlogp[BT];
    float *gref = malloc(np * sizeof(float)), *got = malloc(np * sizeof(float));
    gk_rng r;
    gk_rng_seed(&r, 3);
    size_t count = 0;
    for (size_t b = 0; b < B; b++) {
        size_t prompt = 3 + 17 * b % 40, len = T - 9 * b;   /* masked prompt, right padding from len */
        for (size_t t = 0; t < T; t++) {
            size_t i = b * T + t;
            in[i] = (int32_t)(gk_rng_uniform(&r) * 40) % 40;
            tg[i] = (int32_t)(gk_rng_uniform(&r) * 40) % 40;
            if (t < prompt || t >= len || gk_rng_uniform(&r) < 0.1) tg[i] = -1;
            count += tg[i] >= 0;
        }
    }
    CHECK(count > 256 && count < BT - 100, "the batch masks some rows and keeps more than one chunk (%zu)", count);
    /* SFT's / pretraining's mean cross-entropy with its backward */
    for (size_t i = 0; i < BT; i++) dlr[i] = tg[i] >= 0 ? 1.0f / (float)count : 0.0f;
    gpt_zero_grads(m);
    lm_reference(m, in, tg, dlr, B, T, 1.0f, lref, NULL);
    kern_download(m->be, gref, m->grads, np * sizeof(float));
    double want = 0;
    for (size_t i = 0; i < BT; i++) if (tg[i] >= 0) want += lref[i];
    want /= (double)count;
    train_lm *l = train_lm_new(m);
    gpt_zero_grads(m);
    size_t n = 0;
    double loss = train_lm_loss(l, in, tg, B, T, (double)count, &n);
    CHECK(n == count, "counted %zu of %zu", n, count);
    CHECK_CLOSE(loss, want, 1e-6, 1e-6, "masked mean loss");
    kern_download(m->be, got, m->grads, np * sizeof(float));
    CHECK_ARRAYS("grads of the masked mean loss", got, gref, np, 1e-7, 1e-4);
    /* the same without a backward (evaluation) leaves the grads alone */
    loss = train_lm_loss(l, in, tg, B, T, 0, NULL);
    CHECK_CLOSE(loss, want, 1e-6, 1e-6, "masked mean loss, no backward");
    /* PPO's / DPO's log-probs (tempered, with entropies) and a backward where some counted rows get no gradient */
    float temp = 0.7f;
    for (size_t i = 0; i < BT; i++) {
        dlogp[i] = tg[i] >= 0 && i % 7 != 3 ? (float)(gk_rng_uniform(&r) - 0.5) : 0.0f;
        dlr[i] = tg[i] >= 0 ? -dlogp[i] : 0.0f;
    }
    gpt_zero_grads(m);
    lm_reference(m, in, tg, dlr, B, T, temp, lref, eref);
    kern_download(m->be, gref, m->grads, np * sizeof(float));
    for (size_t i = 0; i < BT; i++) lref[i] = tg[i] >= 0 ? -lref[i] : 0.0f;
    gpt_zero_grads(m);
    for (size_t i = 0; i < BT; i++) ent[i] = NAN;
    train_lm_logprobs(l, in, tg, B, T, temp, logp, ent);
    CHECK_ARRAYS("tempered log-probs", logp, lref, BT, 1e-6, 1e-5);
    CHECK_ARRAYS("entropies", ent, eref, BT, 1e-6, 1e-5);
    train_lm_backward(l, dlogp);
    kern_download(m->be, got, m->grads, np * sizeof(float));
    CHECK_ARRAYS("grads through train_lm_backward", got, gref, np, 1e-7, 1e-4);
    /* a batch with no target at all: NaN, and a backward of nothing */
    for (size_t i = 0; i < BT; i++) tg[i] = -1;
    gpt_zero_grads(m);
    loss = train_lm_loss(l, in, tg, B, T, 1.0, &n);
    kern_download(m->be, got, m->grads, np * sizeof(float));
    double sq = 0;
    for (size_t i = 0; i < np; i++) sq += (double)got[i] * got[i];
    CHECK(isnan(loss) && n == 0 && sq == 0, "no targets: loss %g, %zu counted, |grad|^2 %g", loss, n, sq);
    train_lm_free(l);
    free(gref); free(got);
    gpt_free(m);
}

int main(void) {
    gk_verbose = 0;
    TL_RUN(test_cadence_and_record);
    TL_RUN(test_stop_and_resume_exact);
    TL_RUN(test_nonfinite_loss_stops);
    TL_RUN(test_train_put);
    TL_RUN(test_lm_head_masked_rows);
    return tl_summary();
}
