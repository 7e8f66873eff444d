/* pretrain.c: next-token pretraining on token shards — the first stage of the pipeline.
 *
 * One optimizer step = `accum` micro-batches of B x T tokens (accum = total_batch / (B*T)); the gradient
 * is of the mean loss over all of them. The logged "loss" of a step is the mean over its micro-batches,
 * measured before that step's update. Checkpoints (OUT/config.json + model.safetensors) are written every
 * save_every steps, at the end, and on Ctrl-C, each with a resume sidecar (train_state.safetensors) so
 * that --resume continues exactly: same batches, same RNG, same optimizer moments.
 */
#include "train/train.h"
#include "train/opts_json.h"
#include "kern/kern.h"
#include "tok/tok.h"

#include <cjson/cJSON.h>
#include <sys/resource.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

void pretrain_opts_default(pretrain_opts *o) {
    memset(o, 0, sizeof *o);
    o->model_name = "d6";
    o->B = 8; o->T = 256;
    o->steps = 1000;
    o->sched.lr = 6e-4f; o->sched.warmup = 100; o->sched.shape = LR_COSINE; o->sched.final_frac = 0.1f;
    adamw_config_default(&o->opt);
    o->seed = 1337;
    o->shuffle = 1;
    o->out = "out/pretrain";
    o->val_every = 250; o->val_batches = 20; o->sample_every = 0; o->save_every = 500;
}

char *pretrain_opts_to_json(const pretrain_opts *o) {
    pretrain_opts c = *o;
    cJSON *j = cJSON_CreateObject();
    OJ_PUT_S("model_name", o->model_name); OJ_PUT_S("init_dir", o->init_dir); OJ_PUT_S("data", o->data);
    OJ_PUT_S("val", o->val); OJ_PUT_S("tokenizer", o->tokenizer); OJ_PUT_S("out", o->out);
    OJ_PUT_N("n_layer", o->n_layer); OJ_PUT_N("n_head", o->n_head); OJ_PUT_N("n_embd", o->n_embd);
    OJ_PUT_N("vocab_size", o->vocab_size); OJ_PUT_N("n_ctx", o->n_ctx);
    OJ_PUT_N("B", o->B); OJ_PUT_N("T", o->T); OJ_PUT_N("steps", o->steps); OJ_PUT_N("total_batch", o->total_batch);
    OJ_PUT_N("shuffle", o->shuffle); OJ_PUT_N("val_batches", o->val_batches); OJ_PUT_N("sample_every", o->sample_every);
    oj_put_common(j, &(oj_common){ &c.sched, &c.opt, &c.seed, &c.val_every, &c.save_every, &c.bf16 });
    return oj_finish(j);
}

int pretrain_opts_from_json(pretrain_opts *o, const char *json, gk_err *err) {
    cJSON *j = cJSON_Parse(json);
    if (!j) return gk_errf(err, "stored options are not valid JSON");
    OJ_GET_S("model_name", o->model_name); OJ_GET_S("init_dir", o->init_dir); OJ_GET_S("data", o->data);
    OJ_GET_S("val", o->val); OJ_GET_S("tokenizer", o->tokenizer); OJ_GET_S("out", o->out);
    OJ_GET_N("n_layer", o->n_layer, int); OJ_GET_N("n_head", o->n_head, int); OJ_GET_N("n_embd", o->n_embd, int);
    OJ_GET_N("vocab_size", o->vocab_size, int); OJ_GET_N("n_ctx", o->n_ctx, int);
    OJ_GET_N("B", o->B, long); OJ_GET_N("T", o->T, long); OJ_GET_N("steps", o->steps, long);
    OJ_GET_N("total_batch", o->total_batch, long); OJ_GET_N("shuffle", o->shuffle, int);
    OJ_GET_N("val_batches", o->val_batches, long); OJ_GET_N("sample_every", o->sample_every, long);
    oj_get_common(j, &(oj_common){ &o->sched, &o->opt, &o->seed, &o->val_every, &o->save_every, &o->bf16 });
    cJSON_Delete(j);
    return 0;
}

/* Builds the model the options ask for: a checkpoint to continue, or a fresh random init. */
static gpt_model *make_model(const pretrain_opts *o, const char *dir, char **tok_rec, gk_err *err) {
    if (dir) {
        gpt_model *m = gpt_load(dir, tok_rec, err);
        if (!m) return NULL;
        return m;
    }
    gpt_config c;
    gpt_config_default(&c);
    if (o->model_name && gpt_config_from_name(&c, o->model_name, err)) return NULL;
    if (o->n_layer) c.n_layer = o->n_layer;
    if (o->n_head) c.n_head = o->n_head;
    if (o->n_embd) c.n_embd = o->n_embd;
    if (o->vocab_size) c.vocab_size = o->vocab_size;
    if (o->n_ctx) c.n_ctx = o->n_ctx;
    if (gpt_config_validate(&c, err)) return NULL;
    gpt_model *m = gpt_create(&c);
    gpt_init_random(m, o->seed);
    return m;
}

static double val_loss(gpt_model *m, const pretrain_opts *o, gk_err *err, int *ok) {
    double l = NAN;
    *ok = train_eval_loss(m, o->val, (size_t)o->B, (size_t)o->T, o->val_batches, &l, NULL, err) == 0;
    return l;
}

int train_pretrain(const pretrain_opts *o, pretrain_result *res, gk_err *err) {
    memset(res, 0, sizeof *res);
    res->final_loss = res->val_loss = NAN;
    if (o->B <= 0 || o->T <= 0) return gk_errf(err, "batch size (-b) and sequence length (-t) must be positive");
    if (o->steps <= 0) return gk_errf(err, "--steps must be positive");
    if (!o->data) return gk_errf(err, "no training data: pass --data SHARDS (a glob of .bin token shards)");
    if (!o->out) return gk_errf(err, "no output directory: pass --out DIR");
    size_t B = (size_t)o->B, T = (size_t)o->T, BT = B * T;
    long accum = 1;
    if (o->total_batch > 0) {
        if (o->total_batch % (long)BT)
            return gk_errf(err, "--total-batch %ld is not a multiple of B*T = %zu", o->total_batch, BT);
        accum = o->total_batch / (long)BT;
    }

    char *tok_rec = NULL;
    gpt_model *m = make_model(o, o->resume_dir ? o->resume_dir : o->init_dir, &tok_rec, err);
    if (!m) return -1;
    const char *tokenizer = o->tokenizer ? o->tokenizer : tok_rec;
    tok_tokenizer *tok = NULL;   /* only for printing samples as text */
    if (tokenizer && o->sample_every > 0) {
        gk_err terr;
        tok = tok_load(tokenizer, &terr);
        if (!tok) gk_warn("samples will be shown as ids: %s\n", terr.msg);
    }
    if (T > (size_t)m->cfg.n_ctx) {
        gpt_free(m); free(tok_rec);
        return gk_errf(err, "sequence length %zu exceeds the model's context length %d", T, m->cfg.n_ctx);
    }
    gpt_alloc_grads(m);
    adamw *opt = adamw_create(m, &o->opt);
    train_state st;
    memset(&st, 0, sizeof st);
    gk_rng_seed(&st.rng, o->seed ^ 0xA5A5A5A5ULL);
    long step0 = 0;
    data_loader *dl = NULL;
    train_lm *lm = NULL;
    train_log lg;
    memset(&lg, 0, sizeof lg);
    int rc = -1;
    if (o->resume_dir) {
        if (train_load_state(o->resume_dir, m, opt, &st, err)) goto done;
        step0 = st.step;
        free(st.opts_json); st.opts_json = NULL;
    }
    dl = data_loader_open(o->data, B, T, o->shuffle, o->seed, (uint32_t)m->cfg.vocab_size, err);
    if (!dl) goto done;
    if (o->resume_dir && data_loader_seek(dl, st.pos, err)) goto done;
    if (gk_mkdir_p(o->out, err)) goto done;
    {
        char *mp = gk_path_join(o->out, "metrics.jsonl");
        int lrc = train_log_open(&lg, "pretrain", mp, o->json, step0, o->steps, err);
        free(mp);
        if (lrc) goto done;
    }
    st.opts_json = pretrain_opts_to_json(o);
    lm = train_lm_new(m);
    lr_schedule sched = o->sched;
    sched.total = o->steps;
    if (train_precision_begin(m, o->bf16, err)) goto done;   /* before the log line, which names the backend */

    if (!o->json) {
        gk_log("pretrain: %d layers, %d heads, width %d, vocab %d, context %d: %.2fM parameters; backend %s, %d threads\n",
               m->cfg.n_layer, m->cfg.n_head, m->cfg.n_embd, m->cfg.vocab_size, m->cfg.n_ctx,
               (double)m->num_params / 1e6, kern_backend_name(m->be), gk_num_threads());
        gk_log("pretrain: %zu shard(s), %zu tokens; batch %zu x %zu x %ld accum = %ld tokens/step; steps %ld..%ld\n",
               data_loader_num_shards(dl), data_loader_total_tokens(dl), B, T, accum, (long)BT * accum, step0, o->steps);
    }
    rc = -1;
    double peak = train_peak_gflops(o->bf16) * 1e9;
    double flops_step = train_flops_per_token(m, T) * (double)BT * (double)accum;
    gk_sigint_install();
    int32_t *in = gk_malloc(BT * sizeof(int32_t)), *tg = gk_malloc(BT * sizeof(int32_t));
    double t0 = gk_now();
    long step = step0;
    rc = 0;
    for (; step < o->steps; step++) {
        if (gk_sigint_pending()) { res->interrupted = 1; break; }
        if (o->stop_at > 0 && step >= o->stop_at) break;
        double ts = gk_now();
        gpt_zero_grads(m);
        double lsum = 0;
        for (long a = 0; a < accum; a++) {
            if (data_loader_next(dl, in, tg, err)) { rc = -1; break; }
            lsum += train_lm_loss(lm, in, tg, B, T, (double)BT * (double)accum, NULL);
        }
        if (rc) break;
        double loss = lsum / (double)accum;
        float lr = lr_at(&sched, step);
        double norm = adamw_step(opt, m, lr);
        double dt = gk_now() - ts;
        double tps = (double)BT * (double)accum / dt;
        res->final_loss = loss;
        res->tokens += (double)BT * (double)accum;
        char fields[1024], human[1024];
        double mfu = peak > 0 ? flops_step / dt / peak : 0;
        snprintf(fields, sizeof fields, "\"loss\":%.7g,\"lr\":%.6g,\"grad_norm\":%.6g,\"tokens_per_s\":%.1f,\"ms\":%.1f,\"mfu\":%.4f",
                 loss, lr, norm, tps, dt * 1000, mfu);
        snprintf(human, sizeof human, "loss %.4f | lr %.2e | norm %.3f | %.0f tok/s | %.0f ms | MFU %.1f%%", loss, lr, norm, tps, dt * 1000, 100 * mfu);
        train_log_step(&lg, step, fields, human);
        if (!isfinite(loss)) { rc = gk_errf(err, "loss became %f at step %ld; lower --lr or check the data", loss, step); break; }
        int last = step + 1 == o->steps;
        if (o->val && o->val_every > 0 && ((step + 1) % o->val_every == 0 || last)) {
            int ok;
            double vl = val_loss(m, o, err, &ok);
            if (!ok) { rc = -1; break; }
            res->val_loss = vl;
            snprintf(fields, sizeof fields, "\"step\":%ld,\"val_loss\":%.7g", step, vl);
            snprintf(human, sizeof human, "val loss %.4f (step %ld)", vl, step + 1);
            train_log_event(&lg, fields, human);
        }
        if (o->sample_every > 0 && (step + 1) % o->sample_every == 0) {
            /* a sample continuing the document separator (or the batch's first token without a tokenizer) */
            int32_t eot = tok ? tok_eot_id(tok) : -1;
            int32_t prompt[1] = { eot >= 0 && eot < m->cfg.vocab_size ? eot : in[0] }, outids[48];
            size_t n = train_sample(m, prompt, 1, 48, 0.8f, &st.rng, -1, outids);
            char *ids = gk_malloc(12 * n + 1); size_t k = 0;
            ids[0] = 0;
            for (size_t i = 0; i < n; i++) k += (size_t)snprintf(ids + k, 12, "%s%d", i ? "," : "", outids[i]);
            cJSON *ev = cJSON_CreateObject();
            cJSON_AddNumberToObject(ev, "step", (double)step);
            cJSON_AddItemToObject(ev, "sample_ids", cJSON_CreateIntArray(outids, (int)n));
            tok_bytes text = {0};
            if (tok) {
                /* the streaming decoder: always valid UTF-8 (U+FFFD for broken bytes), so the JSON is too */
                gk_err derr;
                tok_stream ts;
                tok_stream_init(&ts);
                for (size_t i = 0; i < n; i++) tok_stream_push(&ts, tok, outids[i], &text, &derr);
                tok_stream_flush(&ts, &text);
                tok_bytes_append(&text, "", 1);
                cJSON_AddStringToObject(ev, "sample", (const char *)text.data);
                for (size_t i = 0; i + 1 < text.n; i++) if (text.data[i] == '\n') text.data[i] = ' ';
            }
            char *js = cJSON_PrintUnformatted(ev);
            size_t jl = strlen(js);
            char *body = gk_malloc(jl + 1);
            memcpy(body, js + 1, jl - 2); body[jl - 2] = 0;     /* without the braces */
            char *h = gk_malloc((tok ? text.n : k) + 16);
            sprintf(h, "sample: %s", tok ? (const char *)text.data : ids);
            train_log_event(&lg, body, h);
            free(h); free(body); cJSON_free(js); cJSON_Delete(ev); tok_bytes_free(&text); free(ids);
        }
        if (o->save_every > 0 && (step + 1) % o->save_every == 0 && !last) {
            st.step = step + 1; st.pos = data_loader_tell(dl);
            if (train_save(o->out, m, opt, &st, tokenizer, err)) { rc = -1; break; }
        }
    }
    free(in); free(tg);
    {   /* peak memory of the training loop (before the checkpoint write, which needs host copies) */
        struct rusage ru;
        getrusage(RUSAGE_SELF, &ru);
        res->peak_rss_mb = (double)ru.ru_maxrss / 1024.0;
        char fields[128];
        snprintf(fields, sizeof fields, "\"peak_rss_mb\":%.1f", res->peak_rss_mb);
        if (o->json) train_log_event(&lg, fields, NULL);
    }
    res->steps_done = step - step0;
    res->seconds = gk_now() - t0;
    if (rc == 0 || res->interrupted) {
        st.step = step; st.pos = data_loader_tell(dl);
        gk_err serr;
        if (train_save(o->out, m, opt, &st, tokenizer, &serr)) { if (rc == 0) { *err = serr; rc = -1; } }
        else if (!o->json) gk_log("pretrain: saved checkpoint at step %ld to %s%s\n", step, o->out,
                                  res->interrupted ? " (interrupted; continue with --resume)" : "");
    }
done:
    train_precision_end(m, o->bf16);
    train_log_close(&lg);
    train_lm_free(lm);
    data_loader_free(dl);
    adamw_free(opt);
    gpt_free(m);
    free(st.opts_json);
    free(tok_rec);
    tok_free(tok);
    return rc;
}
