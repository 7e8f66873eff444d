/* pretrain.c: next-token pretraining on token shards — the first stage of the pipeline.
 *
 * One optimizer step = `accum` micro-batches of B x T tokens (accum = total_batch / (B*T)); the gradient
 * is of the mean loss over all of them. The logged "loss" of a step is the mean over its micro-batches,
 * measured before that step's update. Checkpoints (OUT/config.json + model.safetensors) are written every
 * save_every steps, at the end, and on Ctrl-C, each with a resume sidecar (train_state.safetensors) so
 * that --resume continues exactly: same batches, same RNG, same optimizer moments.
 */
#include "train/train.h"
#include "kern/kern.h"
#include "tok/tok.h"
#include "dist/dist.h"

#include <cjson/cJSON.h>
#include <sys/resource.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Refuses, before allocating, a model and batch that cannot fit in memory (`--model d100` asked for 197 GB and
 * aborted in the allocator): parameters, gradients and AdamW's two moments (16 bytes a parameter) plus the
 * activations kept for the backward (about 20 floats per row, channel and layer). */
static int check_memory(const gpt_config *c, const pretrain_opts *o, gk_err *err) {
    gpt_model *t = gpt_create_table(c, NULL);
    double rows = (double)(o->B > 0 ? o->B : 1) * (double)(o->T > 0 ? o->T : c->n_ctx);
    double need = 16.0 * (double)t->num_params + 4.0 * 20.0 * rows * c->n_embd * c->n_layer;
    gpt_free(t);
    char what[96];
    snprintf(what, sizeof what, "a %d-layer, %d-wide model at batch %ld x %ld", c->n_layer, c->n_embd, o->B, o->T);
    return gk_check_fits(what, need, err);
}

/* Builds the model the options ask for: a checkpoint to continue, or a fresh random init. */
static gpt_model *make_model(const pretrain_opts *o, const char *dir, char **tok_rec, gk_err *err) {
    if (dir) {
        /* a checkpoint, or (resuming a LoRA continuation) an adapter directory onto its recorded base; with
         * --lora-* the adapters are attached to it and only they train */
        char *base_dir = NULL;
        gpt_model *m = train_open_model(dir, tok_rec, &base_dir, o->lora.rank > 0, err);   /* LoRA: a .gguf stays quantized */
        if (m && train_lora_setup(m, &o->lora, base_dir, o->seed, o->json, err)) { gpt_free(m); m = NULL; }
        free(base_dir);
        return m;
    }
    if (o->lora.rank > 0) return gk_errf(err, "--lora-rank continues a trained model: pass --init DIR (the base)"), NULL;
    gpt_config c;
    if (!o->arch || !strcmp(o->arch, "gpt2")) gpt_config_default(&c);
    else if (!strcmp(o->arch, "llama")) gpt_config_llama(&c);
    else return gk_errf(err, "unknown --arch \"%s\" (expected gpt2 or llama)", o->arch), NULL;
    if (o->model_name && gpt_config_from_name(&c, o->model_name, err)) return NULL;
    int heads_set = o->n_head && o->n_head != c.n_head, embd_set = o->n_embd && o->n_embd != c.n_embd;
    if (o->n_layer) c.n_layer = o->n_layer;
    if (o->n_head) c.n_head = o->n_head;
    if (o->n_embd) c.n_embd = o->n_embd;
    if (c.arch == GPT_ARCH_LLAMA) {   /* LLaMA dims follow overridden heads and width, as a named size's do */
        int H = c.n_head;
        if (heads_set) c.n_kv_head = H % 3 == 0 ? H / 3 : H % 2 == 0 ? H / 2 : H;
        if (embd_set) c.n_inner = (8 * c.n_embd / 3 + 63) / 64 * 64;
    }
    if (o->n_kv_head) c.n_kv_head = o->n_kv_head;
    if (o->n_inner) c.n_inner = o->n_inner;
    if (o->vocab_size) c.vocab_size = o->vocab_size;
    if (o->n_ctx) c.n_ctx = o->n_ctx;
    if (gpt_config_validate(&c, err)) return NULL;
    if (check_memory(&c, o, err)) return NULL;
    gpt_model *m = gpt_create(&c);
    gpt_init_random(m, o->seed);
    return m;
}

/* ---------------------------------------------------------------- the stage's hooks */

typedef struct {
    const pretrain_opts *o;
    gpt_model *m;
    data_loader *dl;
    train_lm *lm;
    tok_tokenizer *tok;       /* only for printing samples as text (may be NULL) */
    int32_t *in, *tg;         /* [B, T] the current micro-batch */
    long accum;
    pretrain_result *res;
} pt_ctx;

/* One micro-batch of B x T tokens; the gradient is of the mean loss over the step's accum micro-batches. */
static int pt_micro(void *ctx, train_stage *s, long step, long micro, train_step_out *out, gk_err *err) {
    (void)s; (void)step; (void)micro;
    pt_ctx *c = ctx;
    size_t BT = (size_t)c->o->B * (size_t)c->o->T;
    if (data_loader_next(c->dl, c->in, c->tg, err)) return -1;
    out->loss = train_lm_loss(c->lm, c->in, c->tg, (size_t)c->o->B, (size_t)c->o->T, (double)BT * (double)c->accum, NULL);
    out->tokens += (double)BT;
    return 0;
}

/* Another rank's micro-batch: read past it, so every rank's loader stays at the same position. */
static void pt_skip(void *ctx, train_stage *s, long step, long micro) {
    (void)s; (void)step; (void)micro;
    pt_ctx *c = ctx;
    gk_err e;
    if (data_loader_next(c->dl, c->in, c->tg, &e)) gk_warn("pretrain: %s\n", e.msg);
}

static int pt_eval(void *ctx, train_stage *s, long step, int final, gk_err *err) {
    (void)final;
    pt_ctx *c = ctx;
    double vl = NAN;
    /* each rank evaluates every nranks-th batch; the sums are added over ranks (collective) */
    double v[2] = {0, 0};
    size_t cnt = 0;
    int bad = train_eval_sums(c->m, c->o->val, (size_t)c->o->B, (size_t)c->o->T, c->o->val_batches, s->rank, s->nranks,
                              &v[0], &cnt, err) != 0;
    v[1] = (double)cnt;
    if (s->nranks > 1 && dist_any(bad)) return bad ? -1 : gk_errf(err, "another rank failed to evaluate %s", c->o->val);
    if (bad) return -1;
    train_stage_sum(s, v, 2);
    vl = v[1] > 0 ? v[0] / v[1] : NAN;
    c->res->val_loss = vl;
    cJSON *f = cJSON_CreateObject();
    cJSON_AddNumberToObject(f, "step", (double)step);
    train_put(f, "val_loss", "%.7g", vl);
    char human[128];
    snprintf(human, sizeof human, "val loss %.4f (step %ld)", vl, step + 1);
    train_log_event(&s->lg, f, human);
    return 0;
}

/* A sample continuing the document separator (or the batch's first token without a tokenizer). */
static int pt_sample(void *ctx, train_stage *s, long step, gk_err *err) {
    (void)err;
    pt_ctx *c = ctx;
    int32_t eot = c->tok ? tok_eot_id(c->tok) : -1;
    int32_t prompt[1] = { eot >= 0 && eot < c->m->cfg.vocab_size ? eot : c->in[0] }, outids[48];
    size_t n = train_sample(c->m, prompt, 1, 48, 0.8f, &s->st.rng, -1, outids);
    cJSON *ev = cJSON_CreateObject();
    cJSON_AddNumberToObject(ev, "step", (double)step);
    cJSON_AddItemToObject(ev, "sample_ids", cJSON_CreateIntArray(outids, (int)n));
    char *h;
    if (c->tok) {
        tok_bytes text = {0};
        train_decode_text(c->tok, outids, n, &text);
        cJSON_AddStringToObject(ev, "sample", (const char *)text.data);
        for (size_t i = 0; i + 1 < text.n; i++) if (text.data[i] == '\n') text.data[i] = ' ';
        h = gk_malloc(text.n + 16);
        sprintf(h, "sample: %s", (const char *)text.data);
        tok_bytes_free(&text);
    } else {
        h = gk_malloc(12 * n + 16);
        size_t k = (size_t)sprintf(h, "sample: ");
        for (size_t i = 0; i < n; i++) k += (size_t)sprintf(h + k, "%s%d", i ? "," : "", outids[i]);
    }
    train_log_event(&s->lg, ev, h);
    free(h);
    return 0;
}

/* Peak memory of the training loop (before the checkpoint write, which needs host copies). */
static int pt_finish(void *ctx, train_stage *s, int completed, gk_err *err) {
    (void)completed; (void)err;
    pt_ctx *c = ctx;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    c->res->peak_rss_mb = (double)ru.ru_maxrss / 1024.0;
    if (c->o->json) {
        cJSON *f = cJSON_CreateObject();
        train_put(f, "peak_rss_mb", "%.1f", c->res->peak_rss_mb);
        train_log_event(&s->lg, f, NULL);
    }
    return 0;
}

static void pt_tell(void *ctx, data_pos *pos) { *pos = data_loader_tell(((pt_ctx *)ctx)->dl); }

/* ---------------------------------------------------------------- the stage */

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
    pt_ctx c = { .o = o, .m = m, .accum = accum, .res = res };
    if (tokenizer && o->sample_every > 0) {
        gk_err terr;
        c.tok = tok_load(tokenizer, &terr);
        if (!c.tok) gk_warn("samples will be shown as ids: %s\n", terr.msg);
    }
    if (T > (size_t)m->cfg.n_ctx) {
        gk_errf(err, "sequence length %zu exceeds the model's context length %d", T, m->cfg.n_ctx);
        tok_free(c.tok); gpt_free(m); free(tok_rec);
        return -1;
    }
    train_stage_cfg sc = {
        .name = "pretrain", .models = { { .m = m, .out = o->out, .resume = o->resume_dir, .tokenizer = tokenizer } },
        .n_models = 1, .rng_seed = o->seed ^ 0xA5A5A5A5ULL, .total = o->steps, .accum = accum, TRAIN_STAGE_OPTS(o),
        .eval_last = o->val_every > 0, .sample_every = o->sample_every,
        .flops_per_step = train_flops_per_token(m, T) * (double)BT * (double)accum,
        .dist_bucket_mb = o->dist_bucket_mb,
    };
    train_stage s;
    int rc = -1;
    if (train_stage_open(&s, &sc, err)) goto done;
    if (!(c.dl = data_loader_open(o->data, B, T, o->shuffle, o->seed, (uint32_t)m->cfg.vocab_size, err))) goto done;
    if (o->resume_dir && data_loader_seek(c.dl, s.st.pos, err)) goto done;
    c.lm = train_lm_new(m);
    if (!o->json) {
        gk_log("pretrain: %d layers, %d heads, width %d, vocab %d, context %d: %.2fM parameters; backend %s, %d threads\n",
               m->cfg.n_layer, m->cfg.n_head, m->cfg.n_embd, m->cfg.vocab_size, m->cfg.n_ctx,
               (double)m->num_params / 1e6, kern_backend_name(m->be), gk_num_threads());
        gk_log("pretrain: %zu shard(s), %zu tokens; batch %zu x %zu x %ld accum = %ld tokens/step; steps %ld..%ld\n",
               data_loader_num_shards(c.dl), data_loader_total_tokens(c.dl), B, T, accum, (long)BT * accum, s.step0, o->steps);
    }
    c.in = gk_malloc(BT * sizeof(int32_t)); c.tg = gk_malloc(BT * sizeof(int32_t));
    train_stage_hooks h = { .ctx = &c, .micro = pt_micro, .eval = o->val ? pt_eval : NULL, .sample = pt_sample,
                            .finish = pt_finish, .tell = pt_tell, .skip = pt_skip };
    rc = train_stage_run(&s, &h, pretrain_opts_to_json(o), err);
    TRAIN_STAGE_RESULT(res, &s);
    res->tokens = s.tokens;
done:
    train_stage_close(&s);
    train_lm_free(c.lm);
    data_loader_free(c.dl);
    gpt_free(m);
    free(c.in); free(c.tg);
    free(tok_rec);
    tok_free(c.tok);
    return rc;
}
