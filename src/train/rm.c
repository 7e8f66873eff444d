/* rm.c: reward modelling — rendering (prompt, response) sequences, scoring them with a scalar head, and
 * training the head and trunk on preference pairs and rankings.
 *
 *   r_i = h[last token of sequence i] . score.weight            h = trunk output (after ln_f)
 *   loss = mean over groups of mean over the group's pairs of -log sigmoid(r_better - r_worse)
 *
 * A batch holds whole preference lines: a K-ranking puts its K sequences in the batch once and its
 * K(K-1)/2 pairs share their scores (rlhf_rm_loss). Sequences of a batch are right-padded to the longest:
 * attention is causal, so the padding after a sequence's last token never changes its reward.
 *
 * Normalisation (--normalize FILE): after training, the mean reward delta of FILE's demonstrations is
 * folded into ln_f.bias so the saved model itself scores them mean 0: with h = n*g + b and r = h.w, adding
 * -delta * w / |w|^2 to b shifts every reward by exactly -delta. The checkpoint stays a plain HF
 * GPT2ForSequenceClassification (no side offset to forget); RM_DIR/reward.json records delta.
 */
#include "train/train.h"
#include "kern/kern.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- sequences */

void rlhf_seq_free(rlhf_seq *s) {
    if (!s) return;
    free(s->ids);
    memset(s, 0, sizeof *s);
}

int rlhf_chat_open(rlhf_chat *c, const char *model_dir, const char *recorded, const char *override,
                   size_t vocab_size, gk_err *err) {
    memset(c, 0, sizeof *c);
    if (tok_load_recorded(model_dir, recorded, override, 1, &c->tok, err)) return -1;
    if (chat_specials_resolve(c->tok, vocab_size, &c->sp, err)) { tok_free(c->tok); c->tok = NULL; return -1; }
    return 0;
}

void rlhf_chat_close(rlhf_chat *c) {
    if (!c) return;
    tok_free(c->tok);
    c->tok = NULL;
}

void rlhf_render_prompt(const rlhf_chat *c, const prefs_item *it, tok_ids *out) {
    chat_conv conv = {0};
    for (size_t i = 0; i < it->n_prompt; i++) {
        chat_role r = CHAT_USER;
        chat_role_parse(it->prompt[i].role, &r);   /* validated by the prefs parser */
        chat_conv_add(&conv, r, it->prompt[i].content);
    }
    chat_tokens ct = {0};
    chat_render(c->tok, &c->sp, &conv, 1, &ct);
    for (size_t i = 0; i < ct.n; i++) tok_ids_push(out, ct.ids[i]);
    chat_tokens_free(&ct);
    chat_conv_free(&conv);
}

void rlhf_render_seq(const rlhf_chat *c, const prefs_item *it, size_t k, rlhf_seq *out) {
    tok_ids ids = {0};
    rlhf_render_prompt(c, it, &ids);
    size_t pl = ids.n;
    chat_encode_assistant(c->tok, &c->sp, it->resp[k], &ids);
    tok_ids_push(&ids, c->sp.end);
    out->ids = ids.ids; out->n = ids.n; out->prompt_len = pl;
}

/* ---------------------------------------------------------------- scoring */

/* Right-padded [n, T] batch of whole sequences (pad id 0), T = longest. Returns T. */
static size_t pack_full(const rlhf_seq *seqs, size_t n, int32_t **buf) {
    size_t T = 1;
    for (size_t i = 0; i < n; i++) if (seqs[i].n > T) T = seqs[i].n;
    int32_t *b = gk_calloc(n * T, sizeof(int32_t));
    for (size_t i = 0; i < n; i++) memcpy(b + i * T, seqs[i].ids, seqs[i].n * sizeof(int32_t));
    *buf = b;
    return T;
}

double rlhf_rm_step(gpt_model *rm, const rlhf_seq *seqs, size_t n, const size_t *first, const size_t *count,
                    size_t ngroups, int backward, float *r, rlhf_rm_stats *st) {
    GK_CHECK(gpt_has_score_head(rm), "rlhf_rm_step: the model has no score head");
    size_t C = (size_t)rm->cfg.n_embd;
    int32_t *in;
    size_t T = pack_full(seqs, n, &in), NT = n * T;
    gpt_forward(rm, in, n, T);
    const float *h = gpt_hidden(rm);
    float *dev_r = kern_alloc(rm->be, NT * sizeof(float));
    float *all = gk_malloc(NT * sizeof(float));
    gpt_score_head_fwd(rm, dev_r, h, NT);
    kern_download(rm->be, all, dev_r, NT * sizeof(float));
    float *rr = r ? r : gk_malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) rr[i] = all[i * T + seqs[i].n - 1];
    double loss = NAN;
    if (ngroups) {
        float *dr = backward ? gk_malloc(n * sizeof(float)) : NULL;
        loss = rlhf_rm_loss(rr, first, count, ngroups, dr, st);
        if (backward) {
            memset(all, 0, NT * sizeof(float));
            for (size_t i = 0; i < n; i++) all[i * T + seqs[i].n - 1] = dr[i];
            kern_upload(rm->be, dev_r, all, NT * sizeof(float));
            float *dh = kern_alloc(rm->be, NT * C * sizeof(float));
            gpt_score_head_bwd(rm, dh, dev_r, h, NT);
            gpt_backward(rm, dh);
            kern_free(rm->be, dh);
        }
        free(dr);
    }
    if (!r) free(rr);
    free(all); kern_free(rm->be, dev_r); free(in);
    return loss;
}

void rlhf_score_seqs(gpt_model *rm, const rlhf_seq *seqs, size_t n, size_t batch, float *out) {
    if (batch == 0) batch = 8;
    for (size_t i = 0; i < n; i += batch) {
        size_t k = n - i < batch ? n - i : batch;
        rlhf_rm_step(rm, seqs + i, k, NULL, NULL, 0, 0, out + i, NULL);
    }
}

gpt_model *rlhf_load_rm(const char *dir, char **tokenizer, gk_err *err) {
    /* a reward adapter (gptkit rm --lora-rank) opens onto its recorded base */
    gpt_model *m = train_open_model(dir, tokenizer, NULL, 0, err);
    if (!m) return NULL;
    if (!gpt_has_score_head(m)) {
        gpt_free(m);
        if (tokenizer) { free(*tokenizer); *tokenizer = NULL; }
        gk_errf(err, "%s: not a reward model (no score head); train one with `gptkit rm`", dir);
        return NULL;
    }
    return m;
}

/* A new score head's weights [C] (device) at dst: zeros, or N(0, std) from seed. */
static void init_head(gpt_model *m, float *dst, float std, uint64_t seed) {
    size_t C = (size_t)m->cfg.n_embd;
    float *w = gk_calloc(C, sizeof(float));
    if (std > 0) {
        gk_rng r; gk_rng_seed(&r, seed ^ 0x5C0E5C0EULL);
        for (size_t i = 0; i < C; i++) w[i] = std * gk_rng_normal(&r);
    }
    kern_upload(m->be, dst, w, C * sizeof(float));
    free(w);
}

/* A trunk checkpoint with a scalar head: the checkpoint's own head if it has one, else a new one (zeros or
 * N(0, std)) after the trunk (the score head is the last entry of the parameter table). */
gpt_model *rlhf_load_with_head(const char *dir, float head_std, uint64_t seed, char **tokenizer, gk_err *err) {
    gpt_model *m = gpt_load(dir, tokenizer, err);
    if (!m || m->cfg.score_head) return m;
    gpt_add_score_head(m);
    init_head(m, gpt_param_ptr(m, "score.weight"), head_std, seed);
    return m;
}

/* The model rm trains: the head-carrying checkpoint above (full finetuning), or with --lora-* the base (the
 * start's trunk; a resumed run's recorded base) with adapters that own the score head: a new head is drawn as
 * above, one the start already has is copied into the adapter. *base_dir: where the tokenizer is found. */
static gpt_model *rm_open(const rm_opts *o, char **tok_rec, char **base_dir, gk_err *err) {
    const char *src = o->resume_dir ? o->resume_dir : o->init_dir;
    if (o->lora.rank <= 0 && !gpt_lora_is_dir(src)) {
        *base_dir = gk_strdup(src);
        return rlhf_load_with_head(src, o->head_init_std, o->seed, tok_rec, err);
    }
    gpt_model *m = train_open_model(src, tok_rec, base_dir, 1, err);   /* LoRA here: a .gguf stays quantized */
    if (!m) return NULL;
    int fresh = !m->lora && !m->cfg.score_head;
    train_lora_opts lo = o->lora;
    lo.score = 1;
    if (train_lora_setup(m, &lo, *base_dir, o->seed, o->json, err)) { gpt_free(m); return NULL; }
    if (!m->lora->cfg.score) {
        gpt_free(m);
        gk_errf(err, "%s: this adapter has no score head: it is not a reward adapter", src);
        return NULL;
    }
    if (fresh) init_head(m, m->lora->pm->params + m->lora->score_off, o->head_init_std, o->seed);
    return m;
}

/* ---------------------------------------------------------------- rendered preference sets */

void rlhf_pref_data_free(rlhf_pref_data *d) {
    for (size_t i = 0; i < d->nseq; i++) rlhf_seq_free(&d->seqs[i]);
    free(d->seqs); free(d->first); free(d->count); free(d->ref);
    memset(d, 0, sizeof *d);
}

void rlhf_pref_data_build(rlhf_pref_data *d, const rlhf_chat *c, const prefs_set *s, size_t max_len) {
    memset(d, 0, sizeof *d);
    size_t total = 0;
    for (size_t i = 0; i < s->n; i++) total += s->items[i].n_resp;
    d->seqs = gk_calloc(total ? total : 1, sizeof *d->seqs);
    d->first = gk_calloc(s->n ? s->n : 1, sizeof(size_t));
    d->count = gk_calloc(s->n ? s->n : 1, sizeof(size_t));
    for (size_t i = 0; i < s->n; i++) {
        const prefs_item *it = &s->items[i];
        if (it->n_resp < 2) continue;
        size_t f = d->nseq, ok = 1;
        for (size_t k = 0; k < it->n_resp; k++) {
            rlhf_render_seq(c, it, k, &d->seqs[d->nseq++]);
            if (d->seqs[d->nseq - 1].n > max_len) ok = 0;
        }
        if (!ok) {
            while (d->nseq > f) rlhf_seq_free(&d->seqs[--d->nseq]);
            d->dropped++;
            continue;
        }
        d->first[d->n] = f; d->count[d->n] = it->n_resp; d->n++;
        d->pairs += it->n_resp * (it->n_resp - 1) / 2;
    }
}

/* Loss/accuracy over lines idx[0..k) of d (or lines 0..k if idx NULL), optionally with backward. */
static double rm_lines(gpt_model *m, const rlhf_pref_data *d, const uint32_t *idx, size_t k, int backward, rlhf_rm_stats *st) {
    size_t ns = 0;
    for (size_t j = 0; j < k; j++) ns += d->count[idx ? idx[j] : j];
    rlhf_seq *seqs = gk_malloc(ns * sizeof *seqs);
    size_t *first = gk_malloc(k * sizeof(size_t)), *count = gk_malloc(k * sizeof(size_t));
    size_t p = 0;
    for (size_t j = 0; j < k; j++) {
        size_t l = idx ? idx[j] : j;
        first[j] = p; count[j] = d->count[l];
        for (size_t q = 0; q < d->count[l]; q++) seqs[p++] = d->seqs[d->first[l] + q];
    }
    double loss = rlhf_rm_step(m, seqs, ns, first, count, k, backward, NULL, st);
    free(seqs); free(first); free(count);
    return loss;
}

static void rm_eval_data(gpt_model *m, const rlhf_pref_data *d, size_t batch, rlhf_rm_stats *st) {
    double lsum = 0, correct = 0, margin = 0; size_t pairs = 0;
    for (size_t i = 0; i < d->n; i += batch) {
        size_t k = d->n - i < batch ? d->n - i : batch;
        uint32_t *idx = gk_malloc(k * sizeof(uint32_t));
        for (size_t j = 0; j < k; j++) idx[j] = (uint32_t)(i + j);
        rlhf_rm_stats s;
        double l = rm_lines(m, d, idx, k, 0, &s);
        free(idx);
        lsum += l * (double)k; correct += s.correct; margin += s.margin * (double)s.npairs; pairs += s.npairs;
    }
    memset(st, 0, sizeof *st);
    st->loss = d->n ? lsum / (double)d->n : NAN;
    st->correct = correct; st->npairs = pairs;
    st->accuracy = pairs ? correct / (double)pairs : NAN;
    st->margin = pairs ? margin / (double)pairs : NAN;
}

int rlhf_rm_eval(gpt_model *rm, const rlhf_chat *c, const prefs_set *s, size_t batch, rlhf_rm_stats *st,
                 size_t *dropped, gk_err *err) {
    rlhf_pref_data d;
    rlhf_pref_data_build(&d, c, s, (size_t)rm->cfg.n_ctx);
    if (dropped) *dropped = d.dropped;
    if (d.n == 0) { rlhf_pref_data_free(&d); return gk_errf(err, "%s: no preference line fits the model's context", s->path); }
    rm_eval_data(rm, &d, batch ? batch : 8, st);
    rlhf_pref_data_free(&d);
    return 0;
}

/* ---------------------------------------------------------------- normalisation */

/* Shifts every reward of m by -delta through ln_f.bias (see the file comment). */
static int fold_offset(gpt_model *m, double delta, gk_err *err) {
    size_t C = (size_t)m->cfg.n_embd;
    float *w = gk_malloc(C * sizeof(float)), *b = gk_malloc(C * sizeof(float));
    float *dw = gpt_param_ptr(m, "score.weight"), *db = gpt_param_ptr(m, "ln_f.bias");
    kern_download(m->be, w, dw, C * sizeof(float));
    kern_download(m->be, b, db, C * sizeof(float));
    double nn = 0;
    for (size_t i = 0; i < C; i++) nn += (double)w[i] * w[i];
    int rc = 0;
    if (nn <= 0) rc = gk_errf(err, "cannot normalise: the score head is all zeros");
    else {
        for (size_t i = 0; i < C; i++) b[i] = (float)((double)b[i] - delta * (double)w[i] / nn);
        kern_upload(m->be, db, b, C * sizeof(float));
    }
    free(w); free(b);
    return rc;
}

/* Mean reward of a file's responses (each line's responses; {"messages"} lines: the last assistant turn). */
static int mean_reward(gpt_model *m, const rlhf_chat *c, const char *path, double *mean, size_t *count, gk_err *err) {
    prefs_set s;
    if (prefs_load(path, PREFS_ACCEPT_SCORED | PREFS_ACCEPT_PREFS, &s, err)) return -1;
    size_t total = 0;
    for (size_t i = 0; i < s.n; i++) total += s.items[i].n_resp;
    rlhf_seq *seqs = gk_calloc(total, sizeof *seqs);
    size_t n = 0;
    for (size_t i = 0; i < s.n; i++)
        for (size_t k = 0; k < s.items[i].n_resp; k++) {
            rlhf_render_seq(c, &s.items[i], k, &seqs[n]);
            if (seqs[n].n > (size_t)m->cfg.n_ctx) rlhf_seq_free(&seqs[n]); else n++;
        }
    int rc = 0;
    if (n == 0) rc = gk_errf(err, "%s: no response fits the model's context", path);
    else {
        float *r = gk_malloc(n * sizeof(float));
        rlhf_score_seqs(m, seqs, n, 16, r);
        double s0 = 0;
        for (size_t i = 0; i < n; i++) s0 += r[i];
        *mean = s0 / (double)n; *count = n;
        free(r);
    }
    for (size_t i = 0; i < n; i++) rlhf_seq_free(&seqs[i]);
    free(seqs);
    prefs_free(&s);
    return rc;
}

static int write_reward_json(const char *dir, const rm_opts *o, const rm_result *res, gk_err *err) {
    cJSON *j = cJSON_CreateObject();
    cJSON_AddNumberToObject(j, "format_version", 1);
    cJSON_AddNumberToObject(j, "offset_folded", res->offset);
    if (o->normalize) cJSON_AddStringToObject(j, "normalized_on", o->normalize);
    else cJSON_AddNullToObject(j, "normalized_on");
    if (isfinite(res->val_acc)) cJSON_AddNumberToObject(j, "val_accuracy", res->val_acc);
    if (isfinite(res->val_loss)) cJSON_AddNumberToObject(j, "val_loss", res->val_loss);
    cJSON_AddNumberToObject(j, "steps", (double)res->steps_done);
    char *s = cJSON_Print(j);
    cJSON_Delete(j);
    char *path = gk_path_join(dir, "reward.json");
    int rc = gk_write_file_atomic(path, s, strlen(s), err);
    free(path); cJSON_free(s);
    return rc;
}

/* ---------------------------------------------------------------- training */

int rlhf_pref_open(rlhf_pref_loop *p, train_stage *s, train_stage_cfg *sc, long batch, long epochs, long steps,
                   uint64_t seed, gk_err *err) {
    p->B = (size_t)batch < p->td->n ? (size_t)batch : p->td->n;
    long per_epoch = (long)((p->td->n + p->B - 1) / p->B);
    sc->total = steps > 0 ? steps : per_epoch * (epochs > 0 ? epochs : 1);
    sc->n_models = 1;
    sc->eval_last = 1;
    if (train_stage_open(s, sc, err)) return -1;
    /* a seeded permutation per epoch, recomputed from (seed, epoch), so the position is two numbers */
    train_order_init(&p->ord, p->td->n, seed * 1000003ULL, s->st.pos.epoch, s->st.pos.pos);
    return 0;
}

/* Under several ranks each takes a contiguous share of the batch's lines (a split hook: the skeleton weights
 * the loss, the gradient and accuracy / margin / extras by st.units). */
int rlhf_pref_micro(void *ctx, train_stage *s, long step, long micro, train_step_out *out, gk_err *err) {
    (void)step; (void)micro; (void)err;
    rlhf_pref_loop *p = ctx;
    size_t nb, lo, hi;
    const uint32_t *idx = train_order_next(&p->ord, p->B, 0, &nb);
    train_stage_share(s, nb, &lo, &hi);
    rlhf_pref_eval st;
    memset(&st, 0, sizeof st);
    out->loss = hi > lo ? p->lines(ctx, idx + lo, hi - lo, &st) : NAN;
    out->units = st.units;
    if (s->nranks > 1) {
        /* the step's statistics over every rank's pairs */
        double w = (double)st.pairs, v[5] = { st.accuracy * w, st.margin * w, st.extra[0] * w, st.extra[1] * w, w };
        if (!(w > 0)) v[0] = v[1] = v[2] = v[3] = 0;
        train_stage_sum(s, v, 5);
        st.accuracy = v[0] / v[4]; st.margin = v[1] / v[4]; st.extra[0] = v[2] / v[4]; st.extra[1] = v[3] / v[4];
    }
    *p->final_acc = st.accuracy;
    train_put(out->pre, "accuracy", "%.5g", st.accuracy);
    train_put(out->pre, "margin", "%.6g", st.margin);
    for (int i = 0; i < 2; i++) if (p->extra_keys[i]) train_put(out->pre, p->extra_keys[i], "%.6g", st.extra[i]);
    snprintf(out->hpre, sizeof out->hpre, "acc %.3f | margin %+.3f", st.accuracy, st.margin);
    return 0;
}

void rlhf_pref_val(rlhf_pref_loop *p, train_stage *s, long step, int final, const rlhf_pref_eval *v) {
    cJSON *f = cJSON_CreateObject();
    char human[256];
    if (final) {
        *p->val_loss = v->loss; *p->val_acc = v->accuracy; *p->val_margin = v->margin;
        cJSON_AddStringToObject(f, "event", "final");
    } else cJSON_AddNumberToObject(f, "step", (double)step);
    train_put(f, "val_loss", "%.7g", v->loss);
    train_put(f, "val_accuracy", "%.5g", v->accuracy);
    train_put(f, "val_margin", "%.6g", v->margin);
    if (final) {
        cJSON_AddNumberToObject(f, "val_pairs", (double)v->pairs);
        snprintf(human, sizeof human, "held-out: loss %.4f | %s %.4f over %zu pairs | margin %+.3f", v->loss, p->acc_long,
                 v->accuracy, v->pairs, v->margin);
    } else snprintf(human, sizeof human, "val loss %.4f | %s %.4f (step %ld)", v->loss, p->acc_short, v->accuracy, step + 1);
    train_log_event(&s->lg, f, human);
}

void rlhf_pref_tell(void *ctx, data_pos *pos) {
    const rlhf_pref_loop *p = ctx;
    pos->epoch = p->ord.epoch; pos->pos = p->ord.pos;
}

typedef struct {
    rlhf_pref_loop pl;        /* first: rlhf_pref_tell */
    const rm_opts *o;
    gpt_model *m;
    const rlhf_chat *chat;
    rm_result *res;
} rm_ctx;

static double rm_step_lines(void *ctx, const uint32_t *idx, size_t k, rlhf_pref_eval *st) {
    rm_ctx *c = ctx;
    rlhf_rm_stats rs;
    double loss = rm_lines(c->m, c->pl.td, idx, k, 1, &rs);
    st->accuracy = rs.accuracy; st->margin = rs.margin; st->pairs = rs.npairs;
    st->units = 0;   /* the loss is a mean over the lines that hold a pair */
    for (size_t j = 0; j < k; j++) st->units += c->pl.td->count[idx[j]] >= 2;
    return loss;
}

static int rm_eval(void *ctx, train_stage *s, long step, int final, gk_err *err) {
    (void)err;
    rm_ctx *c = ctx;
    rlhf_rm_stats v;
    rm_eval_data(c->m, c->pl.vd, c->pl.B, &v);
    rlhf_pref_val(&c->pl, s, step, final, &(rlhf_pref_eval){ .loss = v.loss, .accuracy = v.accuracy, .margin = v.margin, .pairs = c->pl.vd->pairs });
    return 0;
}

/* After a completed run: shift the rewards so the --normalize demonstrations score mean 0. */
static int rm_finish(void *ctx, train_stage *s, int completed, gk_err *err) {
    rm_ctx *c = ctx;
    if (!completed || !c->o->normalize) return 0;
    if (c->m->lora) {   /* the offset would go into the frozen base's ln_f.bias, which a LoRA run never writes */
        cJSON *f = cJSON_CreateObject();
        cJSON_AddStringToObject(f, "event", "normalize");
        cJSON_AddBoolToObject(f, "skipped", 1);
        train_log_event(&s->lg, f, "normalisation skipped: a LoRA reward adapter leaves the base's ln_f.bias frozen");
        return 0;
    }
    /* measured in fp32, as the reward model is used downstream (score, PPO, compare); fold_offset then writes
     * ln_f.bias, which must not happen under a registered bf16 weight copy */
    train_stage_precision_end(s);
    double mean = 0; size_t cnt = 0;
    if (!gpt_param_role(c->m, GPT_ROLE_LNF_B, -1)) {
        /* RMSNorm (the LLaMA family) has no bias to fold the offset into, and HF's score head none either */
        cJSON *f = cJSON_CreateObject();
        cJSON_AddStringToObject(f, "event", "normalize");
        cJSON_AddBoolToObject(f, "skipped", 1);
        train_log_event(&s->lg, f, "normalisation skipped: this architecture has no final-norm bias to fold the offset into");
        return 0;
    }
    if (mean_reward(c->m, c->chat, c->o->normalize, &mean, &cnt, err) || fold_offset(c->m, mean, err)) return -1;
    c->res->offset = mean;
    cJSON *f = cJSON_CreateObject();
    cJSON_AddStringToObject(f, "event", "normalize");
    train_put(f, "offset", "%.7g", mean);
    cJSON_AddNumberToObject(f, "responses", (double)cnt);
    char human[160];
    snprintf(human, sizeof human, "normalised: %zu demonstrations scored mean %+.4f; shifted to 0", cnt, mean);
    train_log_event(&s->lg, f, human);
    return 0;
}

int train_rm(const rm_opts *o, rm_result *res, gk_err *err) {
    memset(res, 0, sizeof *res);
    res->final_loss = res->final_acc = res->val_loss = res->val_acc = res->val_margin = NAN;
    if (o->batch <= 0) return gk_errf(err, "--batch must be positive");
    if (!o->data) return gk_errf(err, "no training data: pass --data PREFS.jsonl");
    if (!o->out) return gk_errf(err, "no output directory: pass --out DIR");
    if (!o->resume_dir && !o->init_dir) return gk_errf(err, "no model: pass --init SFT_DIR (or --resume RM_DIR)");
    char *tok_rec = NULL, *base_dir = NULL;
    gpt_model *m = rm_open(o, &tok_rec, &base_dir, err);
    if (!m) { free(tok_rec); free(base_dir); return -1; }
    rlhf_chat chat; memset(&chat, 0, sizeof chat);
    prefs_set train_set = {0}, val_set = {0};
    rlhf_pref_data td = {0}, vd = {0};
    rm_ctx c = { .pl = { .td = &td, .vd = &vd, .lines = rm_step_lines, .acc_short = "val acc", .acc_long = "accuracy", .final_acc = &res->final_acc,
                         .val_loss = &res->val_loss, .val_acc = &res->val_acc, .val_margin = &res->val_margin },
                 .o = o, .m = m, .chat = &chat, .res = res };
    train_stage s;
    memset(&s, 0, sizeof s);
    int rc = -1;
    if (rlhf_chat_open(&chat, base_dir, tok_rec, o->tokenizer, (size_t)m->cfg.vocab_size, err)) goto done;
    if (prefs_load(o->data, PREFS_ACCEPT_PREFS, &train_set, err)) goto done;
    if (o->val && prefs_load(o->val, PREFS_ACCEPT_PREFS, &val_set, err)) goto done;
    rlhf_pref_data_build(&td, &chat, &train_set, (size_t)m->cfg.n_ctx);
    if (td.n == 0) { gk_errf(err, "%s: no preference line fits the model's context (%d tokens)", o->data, m->cfg.n_ctx); goto done; }
    if (o->val) rlhf_pref_data_build(&vd, &chat, &val_set, (size_t)m->cfg.n_ctx);
    res->pairs = td.pairs; res->val_pairs = vd.pairs; res->dropped = td.dropped + vd.dropped;
    if (td.dropped) gk_warn("rm: dropped %zu training line(s) longer than the context (%d tokens)\n", td.dropped, m->cfg.n_ctx);

    train_stage_cfg sc = {
        .name = "rm", .models = { { .m = m, .out = o->out, .resume = o->resume_dir, .tokenizer = o->tokenizer ? o->tokenizer : tok_rec } },
        .rng_seed = o->seed ^ 0x2E3A11ULL, .saved_what = "reward model", TRAIN_STAGE_OPTS(o),
    };
    if (rlhf_pref_open(&c.pl, &s, &sc, o->batch, o->epochs, o->steps, o->seed, err)) goto done;
    if (!o->json)
        gk_log("rm: %d layers, width %d, %.2fM parameters; %zu lines (%zu pairs) train, %zu lines (%zu pairs) val; "
               "%zu lines/step, %ld steps\n", m->cfg.n_layer, m->cfg.n_embd, (double)m->num_params / 1e6, td.n, td.pairs,
               vd.n, vd.pairs, c.pl.B, sc.total);
    train_stage_hooks h = { .ctx = &c, .micro = rlhf_pref_micro, .split = 1, .eval = vd.n ? rm_eval : NULL, .finish = rm_finish, .tell = rlhf_pref_tell };
    rc = train_stage_run(&s, &h, rm_opts_to_json(o), err);
    TRAIN_STAGE_RESULT(res, &s);
    gk_err serr;
    if (s.saved && s.rank == 0 && write_reward_json(o->out, o, res, &serr) && rc == 0) { *err = serr; rc = -1; }   /* rank 0 writes */
done:
    train_stage_close(&s);
    train_order_free(&c.pl.ord);
    rlhf_pref_data_free(&td); rlhf_pref_data_free(&vd);
    prefs_free(&train_set); prefs_free(&val_set);
    rlhf_chat_close(&chat);
    gpt_free(m);
    free(tok_rec); free(base_dir);
    return rc;
}
