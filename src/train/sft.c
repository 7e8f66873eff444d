/* sft.c: supervised finetuning — the second stage of the pipeline. A pretrained model learns the chat format
 * from demonstrations: next-token loss on the assistant's tokens only (the mask from chat_render), averaged
 * over the masked tokens of each batch. The loop is the stage skeleton's (stage.c): progress line / JSON,
 * metrics JSONL, held-out loss, checkpoints with an exact-resume sidecar, Ctrl-C saves; this file supplies the
 * batch (the micro hook), the held-out loss (eval) and the data position (tell).
 *
 * Batches: B conversations in an order shuffled per epoch from (seed, epoch), right-padded to the longest in
 * the batch (so short chats cost little); the last batch of an epoch may hold fewer than B. The resume
 * position is (epoch, batch index) in train_state's data_pos.
 */
#include "train/train.h"
#include "kern/kern.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- batches and loss */

size_t sft_make_batch(const chat_data *d, const size_t *idx, size_t B, int32_t *inputs, int32_t *targets) {
    size_t Tb = 1;
    for (size_t b = 0; b < B; b++) if (d->len[idx[b]] - 1 > Tb) Tb = d->len[idx[b]] - 1;
    for (size_t b = 0; b < B; b++) {
        const int32_t *ids = d->ids[idx[b]];
        const uint8_t *mask = d->mask[idx[b]];
        size_t n = d->len[idx[b]] - 1;   /* inputs of this conversation */
        for (size_t t = 0; t < Tb; t++) {
            if (t < n) {
                inputs[b * Tb + t] = ids[t];
                targets[b * Tb + t] = mask[t + 1] ? ids[t + 1] : -1;
            } else {
                inputs[b * Tb + t] = 0;
                targets[b * Tb + t] = -1;
            }
        }
    }
    return Tb;
}

double sft_batch_loss(train_lm *lm, const int32_t *inputs, const int32_t *targets, size_t B, size_t Tb,
                      int backward, size_t *count) {
    size_t c = 0;
    for (size_t i = 0; i < B * Tb; i++) c += targets[i] >= 0;
    if (count) *count = c;
    if (c == 0) return NAN;
    return train_lm_loss(lm, inputs, targets, B, Tb, backward ? (double)c : 0, NULL);
}

double sft_eval_loss(train_lm *lm, const chat_data *d, size_t B, size_t *count) {
    size_t maxlen = 0;
    for (size_t i = 0; i < d->n; i++) if (d->len[i] > maxlen) maxlen = d->len[i];
    int32_t *in = gk_malloc(B * maxlen * sizeof(int32_t)), *tg = gk_malloc(B * maxlen * sizeof(int32_t));
    size_t *idx = gk_malloc(B * sizeof(size_t));
    double sum = 0; size_t tot = 0;
    for (size_t i0 = 0; i0 < d->n; i0 += B) {
        size_t nb = d->n - i0 < B ? d->n - i0 : B;
        for (size_t b = 0; b < nb; b++) idx[b] = i0 + b;
        size_t Tb = sft_make_batch(d, idx, nb, in, tg), c;
        double l = sft_batch_loss(lm, in, tg, nb, Tb, 0, &c);
        if (c) { sum += l * (double)c; tot += c; }
    }
    free(in); free(tg); free(idx);
    if (count) *count = tot;
    return tot ? sum / (double)tot : NAN;
}

/* ---------------------------------------------------------------- the stage's hooks */

typedef struct {
    const sft_opts *o;
    train_lm *lm;
    const chat_data *train, *val;
    size_t B;
    train_order ord;          /* conversation order: a permutation per epoch from (seed, epoch) */
    int32_t *in, *tg;         /* [B, longest - 1] */
    size_t *idx;              /* [B] */
    sft_result *res;
} sft_ctx;

/* One batch of up to B conversations (the last of an epoch may be short); the gradient of its masked mean. */
/* Under several ranks each takes a contiguous share of the batch's rows (padded to the whole batch's longest,
 * as one process pads them) and reports its counted tokens as out->units; the skeleton weights by them. */
static int sft_micro(void *ctx, train_stage *s, long step, long micro, train_step_out *out, gk_err *err) {
    (void)step; (void)micro; (void)err;
    sft_ctx *c = ctx;
    size_t nb, count = 0, lo, hi;
    const uint32_t *take = train_order_next(&c->ord, c->B, 1, &nb);
    for (size_t b = 0; b < nb; b++) c->idx[b] = take[b];
    size_t Tb = sft_make_batch(c->train, c->idx, nb, c->in, c->tg);
    train_stage_share(s, nb, &lo, &hi);
    out->loss = hi > lo ? sft_batch_loss(c->lm, c->in + lo * Tb, c->tg + lo * Tb, hi - lo, Tb, 1, &count) : NAN;
    out->units = (double)count;
    count = 0;   /* the whole batch's, for the log */
    for (size_t i = 0; i < nb * Tb; i++) count += c->tg[i] >= 0;
    out->tokens += (double)((hi - lo) * Tb);
    cJSON_AddNumberToObject(out->post, "epoch", (double)c->ord.epoch);
    cJSON_AddNumberToObject(out->post, "trained_tokens", (double)count);
    snprintf(out->hpost, sizeof out->hpost, "epoch %llu", (unsigned long long)c->ord.epoch);
    return 0;
}

static int sft_eval(void *ctx, train_stage *s, long step, int final, gk_err *err) {
    (void)final; (void)err;
    sft_ctx *c = ctx;
    size_t n;
    double vl = sft_eval_loss(c->lm, c->val, c->B, &n);
    c->res->val_loss = vl;
    cJSON *f = cJSON_CreateObject();
    cJSON_AddNumberToObject(f, "step", (double)step);
    train_put(f, "val_loss", "%.7g", vl);
    cJSON_AddNumberToObject(f, "val_tokens", (double)n);
    char human[160];
    snprintf(human, sizeof human, "val loss %.4f over %zu assistant tokens (step %ld)", vl, n, step + 1);
    train_log_event(&s->lg, f, human);
    return 0;
}

static void sft_tell(void *ctx, data_pos *pos) {
    const sft_ctx *c = ctx;
    pos->epoch = c->ord.epoch; pos->shard = 0; pos->pos = c->ord.pos;
}

/* The data summary: on stderr, or as one JSON event. */
static void sft_log_data(train_stage *s, const sft_opts *o, const chat_data *train, const chat_data *val, size_t T,
                         size_t B, size_t per_epoch, const sft_result *res) {
    if (!o->json) {
        gk_log("sft: %s: %zu conversations (%zu tokens, %zu trained), %zu truncated to %zu tokens, %zu dropped, %zu malformed skipped\n",
               o->data, train->n, train->n_tokens, train->n_masked, train->n_truncated, T + 1, train->n_dropped, train->n_bad);
        if (o->val) gk_log("sft: %s: %zu conversations for held-out loss\n", o->val, val->n);
        gk_log("sft: batch %zu, %zu batches per epoch, steps %ld..%ld\n", B, per_epoch, s->step0, s->cfg.total);
        return;
    }
    cJSON *f = cJSON_CreateObject(), *d = cJSON_AddObjectToObject(f, "data");
    cJSON_AddNumberToObject(d, "conversations", (double)train->n);
    cJSON_AddNumberToObject(d, "tokens", (double)train->n_tokens);
    cJSON_AddNumberToObject(d, "trained_tokens", (double)train->n_masked);
    cJSON_AddNumberToObject(d, "truncated", (double)train->n_truncated);
    cJSON_AddNumberToObject(d, "dropped", (double)train->n_dropped);
    cJSON_AddNumberToObject(d, "malformed", (double)res->n_bad);
    cJSON_AddNumberToObject(d, "val_conversations", (double)val->n);
    train_log_event(&s->lg, f, NULL);
}

/* ---------------------------------------------------------------- the stage */

int train_sft(const sft_opts *o, sft_result *res, gk_err *err) {
    memset(res, 0, sizeof *res);
    res->final_loss = res->val_loss = NAN;
    const char *src = o->resume_dir ? o->resume_dir : o->init_dir;
    if (!src) return gk_errf(err, "no model to finetune: pass --init CKPT (a pretrained checkpoint) or --resume OUT");
    if (!o->data) return gk_errf(err, "no training data: pass --data FILE.jsonl (one {\"messages\":[...]} per line)");
    if (!o->out) return gk_errf(err, "no output directory: pass --out DIR");
    if (o->B <= 0) return gk_errf(err, "batch size (-b) must be positive");
    if (o->steps < 0 || o->epochs < 0 || (o->steps == 0 && o->epochs == 0)) return gk_errf(err, "give --steps or --epochs (positive)");

    char *tok_rec = NULL, *base_dir = NULL;
    /* --resume of a LoRA run names an adapter directory: its recorded base is opened and the adapter attached */
    gpt_model *m = train_open_model(src, &tok_rec, &base_dir, o->lora.rank > 0, err);   /* LoRA: a .gguf stays quantized */
    if (!m) return -1;
    int rc = -1;
    tok_tokenizer *tok = NULL;
    chat_data train = {0}, val = {0};
    sft_ctx c = { .o = o, .train = &train, .val = &val, .res = res };
    train_stage s;
    memset(&s, 0, sizeof s);
    if (train_lora_setup(m, &o->lora, base_dir, o->seed, o->json, err)) goto done;
    if (tok_load_recorded(base_dir, tok_rec, o->tokenizer, 1, &tok, err)) goto done;
    chat_specials sp;
    if (chat_specials_resolve(tok, (size_t)m->cfg.vocab_size, &sp, err)) goto done;
    size_t T = o->T > 0 ? (size_t)o->T : (size_t)m->cfg.n_ctx;
    if (T > (size_t)m->cfg.n_ctx) { gk_errf(err, "sequence length %zu exceeds the model's context length %d", T, m->cfg.n_ctx); goto done; }
    if (chat_data_load(&train, o->data, tok, &sp, T + 1, o->skip_bad, err)) goto done;
    if (o->val && chat_data_load(&val, o->val, tok, &sp, T + 1, o->skip_bad, err)) goto done;
    res->n_train = train.n; res->n_val = val.n;
    res->n_bad = train.n_bad + val.n_bad; res->n_truncated = train.n_truncated + val.n_truncated;
    res->n_dropped = train.n_dropped + val.n_dropped;

    c.B = (size_t)o->B < train.n ? (size_t)o->B : train.n;
    size_t per_epoch = (train.n + c.B - 1) / c.B;
    train_stage_cfg sc = {
        .name = "sft", .models = { { .m = m, .out = o->out, .resume = o->resume_dir, .tokenizer = o->tokenizer ? o->tokenizer : tok_rec } },
        .n_models = 1, .rng_seed = o->seed ^ 0x5F5F5F5FULL, .total = o->steps > 0 ? o->steps : o->epochs * (long)per_epoch,
        .eval_last = 1, TRAIN_STAGE_OPTS(o),
    };
    if (train_stage_open(&s, &sc, err)) goto done;
    c.lm = train_lm_new(m);
    if (!o->json) gk_log("sft: %d layers, width %d, vocab %d, context %d (%.2fM parameters); backend %s, %d threads\n",
                         m->cfg.n_layer, m->cfg.n_embd, m->cfg.vocab_size, m->cfg.n_ctx, (double)m->num_params / 1e6,
                         kern_backend_name(m->be), gk_num_threads());
    sft_log_data(&s, o, &train, &val, T, c.B, per_epoch, res);
    size_t maxlen = 0;
    for (size_t i = 0; i < train.n; i++) if (train.len[i] > maxlen) maxlen = train.len[i];
    c.in = gk_malloc(c.B * maxlen * sizeof(int32_t)); c.tg = gk_malloc(c.B * maxlen * sizeof(int32_t));
    c.idx = gk_malloc(c.B * sizeof(size_t));
    train_order_init(&c.ord, train.n, o->seed * 0x9E3779B97F4A7C15ULL + 1, o->resume_dir ? s.st.pos.epoch : 0,
                     o->resume_dir ? s.st.pos.pos : 0);
    train_stage_hooks h = { .ctx = &c, .micro = sft_micro, .split = 1, .eval = o->val ? sft_eval : NULL, .tell = sft_tell };
    rc = train_stage_run(&s, &h, sft_opts_to_json(o), err);
    TRAIN_STAGE_RESULT(res, &s);
done:
    train_stage_close(&s);
    train_lm_free(c.lm);
    chat_data_free(&train); chat_data_free(&val);
    tok_free(tok);
    gpt_free(m);
    free(tok_rec); free(base_dir);
    free(c.in); free(c.tg); train_order_free(&c.ord); free(c.idx);
    return rc;
}
