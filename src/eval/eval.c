/* eval.c: measuring a model (eval.h) — the numbers `gptkit eval` and the pipeline's report print. */
#include "eval/eval.h"
#include "train/train.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- opening */

void eval_model_close(eval_model *em) {
    engine_free(em->e); tok_free(em->tok); gpt_free(em->m);
    memset(em, 0, sizeof *em);
}

int eval_model_open(eval_model *em, const char *dir, const char *tok_override, int tok_required, int chat,
                    size_t max_seqs, gk_err *err) {
    memset(em, 0, sizeof *em);
    char *rec = NULL, *base = NULL;
    /* a checkpoint, or a LoRA adapter directory: its recorded base with the adapter on (not merged) */
    em->m = train_open_model(dir, &rec, &base, 1, err);
    if (!em->m) return -1;
    int rc = tok_load_recorded(base, rec, tok_override, tok_required, &em->tok, err);
    free(rec); free(base);
    if (rc == 0 && chat) rc = chat_specials_resolve(em->tok, (size_t)em->m->cfg.vocab_size, &em->sp, err);
    if (rc == 0 && max_seqs > 0) em->e = engine_new(em->m, em->tok, max_seqs, 0);
    if (rc) eval_model_close(em);
    return rc;
}

int eval_model_add_adapter(eval_model *em, const char *dir, gk_err *err) {
    if (em->m->lora) return gk_errf(err, "%s: the model already carries an adapter", dir);
    return gpt_lora_load(em->m, dir, NULL, err);
}

/* ---------------------------------------------------------------- loss on a shard */

/* Bytes of the targets of the first `batches` sequential batches (what the loss was measured on). */
static double target_bytes(const char *data, const tok_tokenizer *tok, size_t B, size_t T, long batches, uint32_t vocab) {
    gk_err err;
    data_loader *dl = data_loader_open(data, B, T, 0, 0, vocab, &err);
    if (!dl) return 0;
    int32_t *in = gk_malloc(B * T * sizeof(int32_t)), *tg = gk_malloc(B * T * sizeof(int32_t));
    double bytes = 0;
    long avail = (long)data_loader_batches_per_epoch(dl);
    if (batches <= 0 || batches > avail) batches = avail;
    for (long k = 0; k < batches && data_loader_next(dl, in, tg, &err) == 0; k++)
        for (size_t i = 0; i < B * T; i++) bytes += (double)tok_text_len(tok, tg[i]);
    free(in); free(tg);
    data_loader_free(dl);
    return bytes;
}

int eval_shard_loss(gpt_model *m, const tok_tokenizer *tok, const char *data, size_t B, size_t T, long batches,
                    eval_loss_stats *st, gk_err *err) {
    memset(st, 0, sizeof *st);
    st->bpb = NAN;
    if (train_eval_loss(m, data, B, T, batches, &st->loss, &st->ntok, err)) return -1;
    st->batches = (long)(st->ntok / (B * T));
    double bytes = tok ? target_bytes(data, tok, B, T, batches, (uint32_t)m->cfg.vocab_size) : 0;
    if (bytes > 0) st->bpb = st->loss / log(2.0) * (double)st->ntok / bytes;
    return 0;
}

int eval_shard_bytes(const char *shard, const tok_tokenizer *tok, size_t *ntok, size_t *bytes, gk_err *err) {
    data_shard s;
    if (data_shard_open(&s, shard, err)) return -1;
    size_t n = 0;
    for (size_t i = 0; i < s.ntok; i++) n += tok_text_len(tok, (int32_t)data_shard_token(&s, i));
    *ntok = s.ntok; *bytes = n;
    data_shard_close(&s);
    return 0;
}

/* ---------------------------------------------------------------- held-out tasks */

/* The prompt of task t: few-shot text for a base model, the rendered conversation for a chat model. */
static void task_prompt(const eval_model *em, int base, const demo_task *t, int fewshot_k, uint64_t seed, tok_ids *ids) {
    if (base) {
        char *p = demo_fewshot_prompt(t, fewshot_k, seed);
        tok_encode(em->tok, p, strlen(p), 0, ids);
        free(p);
        return;
    }
    chat_conv cv = {0};
    if (t->system[0]) chat_conv_add(&cv, CHAT_SYSTEM, t->system);
    chat_conv_add(&cv, CHAT_USER, t->user);
    chat_tokens ct = {0};
    chat_render(em->tok, &em->sp, &cv, 1, &ct);
    for (size_t k = 0; k < ct.n; k++) tok_ids_push(ids, ct.ids[k]);
    chat_tokens_free(&ct); chat_conv_free(&cv);
}

static void add_sample(cJSON *samples, const demo_task *t, const char *text, int ok) {
    cJSON *o = cJSON_CreateObject();
    if (t->system[0]) cJSON_AddStringToObject(o, "system", t->system);
    cJSON_AddStringToObject(o, "user", t->user);
    cJSON_AddStringToObject(o, "reply", text);
    cJSON_AddStringToObject(o, "expected", t->answer);
    cJSON_AddBoolToObject(o, "correct", ok);
    cJSON_AddItemToArray(samples, o);
}

int eval_tasks(eval_model *em, int base, const demo_task *tasks, long nt, int fewshot_k, uint64_t seed,
               size_t max_new, eval_task_stats *ts, cJSON *samples, gk_err *err) {
    return eval_tasks_graded(em, base, tasks, nt, fewshot_k, seed, max_new, ts, samples, NULL, err);
}

int eval_tasks_graded(eval_model *em, int base, const demo_task *tasks, long nt, int fewshot_k, uint64_t seed,
                      size_t max_new, eval_task_stats *ts, cJSON *samples, unsigned char *correct, gk_err *err) {
    int rc = 0;
    memset(ts, 0, sizeof *ts);
    double len_sum = 0;
    int shown_ok = 0, shown_bad = 0;   /* sample conversations: two right and two wrong answers if there are */
    for (long i = 0; rc == 0 && i < nt; i++) {
        const demo_task *t = &tasks[i];
        tok_ids ids = {0};
        task_prompt(em, base, t, fewshot_k, seed + (uint64_t)i, &ids);
        /* keep the prompt inside the context, leaving room for the answer */
        size_t room = (size_t)em->m->cfg.n_ctx - max_new;
        const int32_t *pp = ids.ids; size_t pn = ids.n;
        if (pn > room) { pp += pn - room; pn = room; }
        engine_gen_opts go;
        engine_gen_opts_default(&go);
        go.max_new = max_new;
        go.samp.temperature = 0;
        const char *nl[1] = { "\n" };
        if (base) { go.stop_strs = nl; go.n_stop_strs = 1; }
        engine_seq s;
        memset(&s, 0, sizeof s);
        if (engine_generate(em->e, pp, pn, 1, &go, &s, err)) { tok_ids_free(&ids); rc = -1; break; }
        const char *text = s.text ? s.text : "";
        while (*text == ' ') text++;
        int ok = demo_check_answer(t->check, t->answer, text) == 1;
        if (correct) correct[i] = (unsigned char)ok;
        demo_verdict v;
        memset(&v, 0, sizeof v);
        demo_judge(t->check, t->answer, text, &v);
        ts->acc += ok; ts->format_rate += v.follows_format; ts->concise_rate += v.concise;
        len_sum += (double)s.n;
        ts->n++;
        if (samples && (ok ? shown_ok < 2 : shown_bad < 2)) {
            if (ok) shown_ok++; else shown_bad++;
            add_sample(samples, t, text, ok);
        }
        engine_seq_free(&s);
        tok_ids_free(&ids);
    }
    if (ts->n) { ts->acc /= ts->n; ts->format_rate /= ts->n; ts->concise_rate /= ts->n; ts->mean_len = len_sum / ts->n; }
    return rc;
}

/* ---------------------------------------------------------------- diversity */

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}
static size_t count_unique(uint64_t *v, size_t n) {
    if (!n) return 0;
    qsort(v, n, sizeof *v, cmp_u64);
    size_t u = 1;
    for (size_t i = 1; i < n; i++) u += v[i] != v[i - 1];
    return u;
}

/* distinct-1 and distinct-2 of one prompt's S samples, adding their -log p to *ent_sum / *ent_n; frees them */
static void sample_ngrams(engine_seq *seqs, size_t S, eval_div_stats *ds, double *ent_sum, size_t *ent_n) {
    size_t tot = 0;
    for (size_t s = 0; s < S; s++) tot += seqs[s].n;
    uint64_t *u1 = gk_malloc((tot + 1) * sizeof *u1), *u2 = gk_malloc((tot + 1) * sizeof *u2);
    size_t n1 = 0, n2 = 0;
    for (size_t s = 0; s < S; s++) {
        for (size_t k = 0; k < seqs[s].n; k++) {
            u1[n1++] = (uint64_t)(uint32_t)seqs[s].ids[k];
            if (k) u2[n2++] = ((uint64_t)(uint32_t)seqs[s].ids[k - 1] << 32) | (uint32_t)seqs[s].ids[k];
            *ent_sum += -seqs[s].logprob[k]; (*ent_n)++;
        }
        engine_seq_free(&seqs[s]);
    }
    if (n1) ds->distinct1 += (double)count_unique(u1, n1) / (double)n1;
    if (n2) ds->distinct2 += (double)count_unique(u2, n2) / (double)n2;
    free(u1); free(u2);
}

int eval_diversity(eval_model *em, const demo_task *tasks, long nt, long prompts, size_t samples, size_t max_new,
                   uint64_t seed, eval_div_stats *ds, gk_err *err) {
    int rc = 0;
    size_t S = samples > 0 ? samples : 1;
    memset(ds, 0, sizeof *ds);
    long np = 0; double ent_sum = 0; size_t ent_n = 0;
    engine_seq *seqs = gk_calloc(S, sizeof *seqs);
    for (long i = 0; rc == 0 && i < nt && i < prompts; i++) {
        chat_conv cv = {0};
        if (tasks[i].system[0]) chat_conv_add(&cv, CHAT_SYSTEM, tasks[i].system);
        chat_conv_add(&cv, CHAT_USER, tasks[i].user);
        chat_tokens ct = {0};
        chat_render(em->tok, &em->sp, &cv, 1, &ct);
        chat_conv_free(&cv);
        engine_gen_opts go;
        engine_gen_opts_default(&go);
        go.max_new = max_new;
        go.samp.temperature = 1;
        go.samp.seed = seed + (uint64_t)i;
        if (engine_generate(em->e, ct.ids, ct.n, S, &go, seqs, err)) { chat_tokens_free(&ct); rc = -1; break; }
        chat_tokens_free(&ct);
        sample_ngrams(seqs, S, ds, &ent_sum, &ent_n);
        np++;
    }
    free(seqs);
    if (np) { ds->distinct1 /= np; ds->distinct2 /= np; }
    ds->entropy = ent_n ? ent_sum / (double)ent_n : NAN;
    return rc;
}

/* ---------------------------------------------------------------- calibration */

void eval_calib_stats(const double *conf, const unsigned char *right, long n, eval_calib *cs) {
    memset(cs, 0, sizeof *cs);
    cs->n = n;
    for (long i = 0; i < n; i++) {
        int b = (int)(conf[i] * EVAL_CALIB_BINS);
        if (b >= EVAL_CALIB_BINS) b = EVAL_CALIB_BINS - 1;
        if (b < 0) b = 0;
        cs->bin_n[b]++; cs->bin_acc[b] += right[i]; cs->bin_conf[b] += conf[i];
        cs->acc += right[i]; cs->conf += conf[i];
    }
    if (n == 0) return;
    cs->acc /= (double)n; cs->conf /= (double)n;
    for (int b = 0; b < EVAL_CALIB_BINS; b++) {
        if (!cs->bin_n[b]) continue;
        cs->bin_acc[b] /= (double)cs->bin_n[b]; cs->bin_conf[b] /= (double)cs->bin_n[b];
        cs->ece += (double)cs->bin_n[b] / (double)n * fabs(cs->bin_acc[b] - cs->bin_conf[b]);
    }
}

/* The DEMO_MC_K sequences of one item: its prompt (cut from the left to fit) followed by each choice. */
static void mc_seqs(const eval_model *em, int base, const demo_mc *it, int fewshot_k, uint64_t seed, rlhf_seq *out) {
    tok_ids p = {0};
    task_prompt(em, base, &it->t, fewshot_k, seed, &p);
    for (int c = 0; c < DEMO_MC_K; c++) {
        tok_ids r = {0};
        if (base) {
            char line[DEMO_TEXT_MAX + 4];
            snprintf(line, sizeof line, " %s\n", it->choice[c]);
            tok_encode(em->tok, line, strlen(line), 0, &r);
        } else {
            tok_encode(em->tok, it->choice[c], strlen(it->choice[c]), 0, &r);
            tok_ids_push(&r, em->sp.end);
        }
        size_t room = (size_t)em->m->cfg.n_ctx, pn = p.n;
        if (pn + r.n > room) pn = room > r.n + 1 ? room - r.n : 1;
        rlhf_seq *s = &out[c];
        s->prompt_len = pn;
        s->n = pn + r.n;
        s->ids = gk_malloc(s->n * sizeof(int32_t));
        memcpy(s->ids, p.ids + (p.n - pn), pn * sizeof(int32_t));
        memcpy(s->ids + pn, r.ids, r.n * sizeof(int32_t));
        tok_ids_free(&r);
    }
    tok_ids_free(&p);
}

int eval_calibration(eval_model *em, int base, const demo_mc *items, long n, int fewshot_k, uint64_t seed,
                     eval_calib *cs, gk_err *err) {
    if (!em->tok) return gk_errf(err, "calibration needs the model's tokenizer");
    enum { ITEMS = 8 };   /* items scored per forward pass */
    train_lm *lm = train_lm_new(em->m);
    double *conf = gk_malloc((n > 0 ? (size_t)n : 1) * sizeof(double));
    unsigned char *right = gk_malloc(n > 0 ? (size_t)n : 1);
    rlhf_seq seqs[ITEMS * DEMO_MC_K];
    for (long i0 = 0; i0 < n; i0 += ITEMS) {
        size_t k = (size_t)(n - i0 < ITEMS ? n - i0 : ITEMS), ns = k * DEMO_MC_K;
        for (size_t j = 0; j < k; j++) mc_seqs(em, base, &items[i0 + (long)j], fewshot_k, seed + (uint64_t)(i0 + (long)j), seqs + j * DEMO_MC_K);
        int32_t *in, *tg;
        size_t T = rlhf_lm_batch(seqs, ns, &in, &tg);
        float *lp = gk_malloc(ns * T * sizeof(float));
        train_lm_logprobs(lm, in, tg, ns, T, 1.0f, lp, NULL);
        for (size_t j = 0; j < k; j++) {
            double ll[DEMO_MC_K], z = 0;
            int best = 0;
            for (int c = 0; c < DEMO_MC_K; c++) {
                const float *row = lp + (j * DEMO_MC_K + (size_t)c) * T;
                ll[c] = 0;
                for (size_t t = 0; t < T; t++) ll[c] += row[t];   /* 0 where no target */
                if (ll[c] > ll[best]) best = c;
            }
            for (int c = 0; c < DEMO_MC_K; c++) z += exp(ll[c] - ll[best]);
            conf[i0 + (long)j] = 1.0 / z;   /* the best choice's softmax share: exp(0) / z */
            right[i0 + (long)j] = (unsigned char)(best == items[i0 + (long)j].right);
        }
        for (size_t q = 0; q < ns; q++) rlhf_seq_free(&seqs[q]);
        free(in); free(tg); free(lp);
    }
    eval_calib_stats(conf, right, n, cs);
    free(conf); free(right);
    train_lm_free(lm);
    return 0;
}
