/* sft.c: supervised finetuning — the second stage of the pipeline. A pretrained model learns the chat format
 * from demonstrations: next-token loss on the assistant's tokens only (the mask from chat_render), averaged
 * over the masked tokens of each batch. The loop mirrors pretrain.c: progress line / JSON, metrics JSONL,
 * held-out loss, checkpoints with an exact-resume sidecar, Ctrl-C saves.
 *
 * Batches: B conversations in an order shuffled per epoch from (seed, epoch), right-padded to the longest in
 * the batch (so short chats cost little); the last batch of an epoch may hold fewer than B. The resume
 * position is (epoch, batch index) in train_state's data_pos.
 */
#include "train/train.h"
#include "train/opts_json.h"
#include "kern/kern.h"
#include "infer/infer.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

void sft_opts_default(sft_opts *o) {
    memset(o, 0, sizeof *o);
    o->B = 8; o->T = 0;
    o->epochs = 3; o->steps = 0;
    o->sched.lr = 1e-4f; o->sched.warmup = 10; o->sched.shape = LR_COSINE; o->sched.final_frac = 0.1f;
    adamw_config_default(&o->opt);
    o->opt.weight_decay = 0.0f;
    o->seed = 1337;
    o->out = "out/sft";
    o->val_every = 0; o->save_every = 0;
}

char *sft_opts_to_json(const sft_opts *o) {
    sft_opts c = *o;
    cJSON *j = cJSON_CreateObject();
    OJ_PUT_S("init_dir", o->init_dir); OJ_PUT_S("data", o->data); OJ_PUT_S("val", o->val);
    OJ_PUT_S("tokenizer", o->tokenizer); OJ_PUT_S("out", o->out);
    OJ_PUT_N("B", o->B); OJ_PUT_N("T", o->T); OJ_PUT_N("epochs", o->epochs); OJ_PUT_N("steps", o->steps);
    OJ_PUT_N("skip_bad", o->skip_bad);
    oj_put_common(j, &(oj_common){ &c.sched, &c.opt, &c.seed, &c.val_every, &c.save_every, &c.bf16 });
    return oj_finish(j);
}

int sft_opts_from_json(sft_opts *o, const char *json, gk_err *err) {
    cJSON *j = cJSON_Parse(json);
    if (!j) return gk_errf(err, "stored SFT options are not valid JSON");
    OJ_GET_S("init_dir", o->init_dir); OJ_GET_S("data", o->data); OJ_GET_S("val", o->val);
    OJ_GET_S("tokenizer", o->tokenizer); OJ_GET_S("out", o->out);
    OJ_GET_N("B", o->B, long); OJ_GET_N("T", o->T, long); OJ_GET_N("epochs", o->epochs, long);
    OJ_GET_N("steps", o->steps, long); OJ_GET_N("skip_bad", o->skip_bad, int);
    oj_get_common(j, &(oj_common){ &o->sched, &o->opt, &o->seed, &o->val_every, &o->save_every, &o->bf16 });
    cJSON_Delete(j);
    return 0;
}

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

/* ---------------------------------------------------------------- the loop */

int train_sft(const sft_opts *o, sft_result *res, gk_err *err) {
    memset(res, 0, sizeof *res);
    res->final_loss = res->val_loss = NAN;
    const char *src = o->resume_dir ? o->resume_dir : o->init_dir;
    if (!src) return gk_errf(err, "no model to finetune: pass --init CKPT (a pretrained checkpoint) or --resume OUT");
    if (!o->data) return gk_errf(err, "no training data: pass --data FILE.jsonl (one {\"messages\":[...]} per line)");
    if (!o->out) return gk_errf(err, "no output directory: pass --out DIR");
    if (o->B <= 0) return gk_errf(err, "batch size (-b) must be positive");
    if (o->steps < 0 || o->epochs < 0 || (o->steps == 0 && o->epochs == 0)) return gk_errf(err, "give --steps or --epochs (positive)");

    char *tok_rec = NULL;
    gpt_model *m = gpt_load(src, &tok_rec, err);
    if (!m) return -1;
    const char *tok_path = o->tokenizer ? o->tokenizer : tok_rec;
    int rc = -1;
    tok_tokenizer *tok = NULL;
    chat_data train = {0}, val = {0};
    adamw *opt = NULL;
    train_lm *lm = NULL;
    train_log lg; memset(&lg, 0, sizeof lg);
    train_state st; memset(&st, 0, sizeof st);
    int32_t *in = NULL, *tg = NULL;
    train_order ord = {0};
    size_t *idx = NULL;
    if (infer_load_tokenizer(src, tok_rec, o->tokenizer, 1, &tok, err)) goto done;
    chat_specials sp;
    if (chat_specials_resolve(tok, (size_t)m->cfg.vocab_size, &sp, err)) goto done;
    size_t T = o->T > 0 ? (size_t)o->T : (size_t)m->cfg.n_ctx;
    if (T > (size_t)m->cfg.n_ctx) { gk_errf(err, "sequence length %zu exceeds the model's context length %d", T, m->cfg.n_ctx); goto done; }
    if (chat_data_load(&train, o->data, tok, &sp, T + 1, o->skip_bad, err)) goto done;
    if (o->val && chat_data_load(&val, o->val, tok, &sp, T + 1, o->skip_bad, err)) goto done;
    res->n_train = train.n; res->n_val = val.n;
    res->n_bad = train.n_bad + val.n_bad; res->n_truncated = train.n_truncated + val.n_truncated;
    res->n_dropped = train.n_dropped + val.n_dropped;

    size_t B = (size_t)o->B < train.n ? (size_t)o->B : train.n;
    size_t per_epoch = (train.n + B - 1) / B;
    long total = o->steps > 0 ? o->steps : o->epochs * (long)per_epoch;
    long step0;
    if (train_stage_begin(m, &o->opt, o->seed ^ 0x5F5F5F5FULL, o->resume_dir, o->out, "sft", o->json, total, &opt, &st, &lg, &step0, err)) goto done;
    if (train_precision_begin(m, o->bf16, err)) goto done;
    st.opts_json = sft_opts_to_json(o);
    lm = train_lm_new(m);
    lr_schedule sched = o->sched;
    sched.total = total;
    if (!o->json) {
        gk_log("sft: %d layers, width %d, vocab %d, context %d (%.2fM parameters); backend %s, %d threads\n",
               m->cfg.n_layer, m->cfg.n_embd, m->cfg.vocab_size, m->cfg.n_ctx, (double)m->num_params / 1e6,
               kern_backend_name(m->be), gk_num_threads());
        gk_log("sft: %s: %zu conversations (%zu tokens, %zu trained), %zu truncated to %zu tokens, %zu dropped, %zu malformed skipped\n",
               o->data, train.n, train.n_tokens, train.n_masked, train.n_truncated, T + 1, train.n_dropped, train.n_bad);
        if (o->val) gk_log("sft: %s: %zu conversations for held-out loss\n", o->val, val.n);
        gk_log("sft: batch %zu, %zu batches per epoch, steps %ld..%ld\n", B, per_epoch, step0, total);
    } else {
        char f[512];
        snprintf(f, sizeof f, "\"data\":{\"conversations\":%zu,\"tokens\":%zu,\"trained_tokens\":%zu,\"truncated\":%zu,"
                 "\"dropped\":%zu,\"malformed\":%zu,\"val_conversations\":%zu}",
                 train.n, train.n_tokens, train.n_masked, train.n_truncated, train.n_dropped, res->n_bad, val.n);
        train_log_event(&lg, f, NULL);
    }

    size_t maxlen = 0;
    for (size_t i = 0; i < train.n; i++) if (train.len[i] > maxlen) maxlen = train.len[i];
    in = gk_malloc(B * maxlen * sizeof(int32_t)); tg = gk_malloc(B * maxlen * sizeof(int32_t));
    idx = gk_malloc(B * sizeof(size_t));
    /* Conversation order: a permutation per epoch from (seed, epoch); the position is (epoch, conversations taken). */
    train_order_init(&ord, train.n, o->seed * 0x9E3779B97F4A7C15ULL + 1, o->resume_dir ? st.pos.epoch : 0,
                     o->resume_dir ? st.pos.pos : 0);
    gk_sigint_install();
    double t0 = gk_now();
    long step = step0;
    rc = 0;
    for (; step < total; step++) {
        if (gk_sigint_pending()) { res->interrupted = 1; break; }
        if (o->stop_at > 0 && step >= o->stop_at) break;
        double ts = gk_now();
        size_t nb;
        const uint32_t *take = train_order_next(&ord, B, 1, &nb);
        for (size_t b = 0; b < nb; b++) idx[b] = take[b];
        size_t Tb = sft_make_batch(&train, idx, nb, in, tg), count;
        gpt_zero_grads(m);
        double loss = sft_batch_loss(lm, in, tg, nb, Tb, 1, &count);
        float lr = lr_at(&sched, step);
        double norm = adamw_step(opt, m, lr);
        double dt = gk_now() - ts;
        res->final_loss = loss;
        char fields[1024], human[1024];
        snprintf(fields, sizeof fields, "\"loss\":%.7g,\"lr\":%.6g,\"grad_norm\":%.6g,\"epoch\":%llu,\"trained_tokens\":%zu,"
                 "\"tokens_per_s\":%.1f,\"ms\":%.1f", loss, lr, norm, (unsigned long long)ord.epoch, count,
                 (double)(nb * Tb) / dt, dt * 1000);
        snprintf(human, sizeof human, "loss %.4f | lr %.2e | norm %.3f | epoch %llu | %.0f tok/s | %.0f ms", loss, lr, norm,
                 (unsigned long long)ord.epoch, (double)(nb * Tb) / dt, dt * 1000);
        train_log_step(&lg, step, fields, human);
        if (!isfinite(loss)) { rc = gk_errf(err, "loss became %f at step %ld; lower --lr or check the data", loss, step); break; }
        int last = step + 1 == total;
        if (o->val && ((o->val_every > 0 && (step + 1) % o->val_every == 0) || last)) {
            size_t c;
            double vl = sft_eval_loss(lm, &val, B, &c);
            res->val_loss = vl;
            snprintf(fields, sizeof fields, "\"step\":%ld,\"val_loss\":%.7g,\"val_tokens\":%zu", step, vl, c);
            snprintf(human, sizeof human, "val loss %.4f over %zu assistant tokens (step %ld)", vl, c, step + 1);
            train_log_event(&lg, fields, human);
        }
        if (o->save_every > 0 && (step + 1) % o->save_every == 0 && !last) {
            st.step = step + 1; st.pos.epoch = ord.epoch; st.pos.shard = 0; st.pos.pos = ord.pos;
            if (train_save(o->out, m, opt, &st, tok_path, err)) { rc = -1; break; }
        }
    }
    res->steps_done = step - step0;
    res->seconds = gk_now() - t0;
    if (rc == 0 || res->interrupted) {
        st.step = step; st.pos.epoch = ord.epoch; st.pos.shard = 0; st.pos.pos = ord.pos;
        gk_err serr;
        if (train_save(o->out, m, opt, &st, tok_path, &serr)) { if (rc == 0) { *err = serr; rc = -1; } }
        else if (!o->json) gk_log("sft: saved checkpoint at step %ld to %s%s\n", step, o->out,
                                  res->interrupted ? " (interrupted; continue with --resume)" : "");
    }
done:
    train_precision_end(m, o->bf16);
    train_log_close(&lg);
    train_lm_free(lm);
    adamw_free(opt);
    chat_data_free(&train); chat_data_free(&val);
    tok_free(tok);
    gpt_free(m);
    free(st.opts_json);
    free(tok_rec);
    free(in); free(tg); train_order_free(&ord); free(idx);
    return rc;
}
