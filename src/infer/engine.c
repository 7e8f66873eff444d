/* engine.c: KV-cached generation — prefill once, fork the prompt's cache to N slots, decode the N sequences
 * together one token per step, each with its own RNG, penalties state, stop rules and streaming decoder.
 *
 * Per step and sequence:  logits (host) -> raw log-prob of the pick (temperature 1, for PPO)
 *                                       -> sampling distribution (infer_sampling_probs) -> draw
 * then the pick is checked against the stop ids, decoded into text (tok_stream: only whole UTF-8 characters),
 * checked against the stop strings, and streamed, holding back the last (longest stop string - 1) bytes so
 * that a stop string split over tokens is never shown.
 */
#include "infer/infer.h"
#include "kern/kern.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define PREFILL_CHUNK 256   /* rows per prefill call: bounds the scratch for long prompts */

struct engine {
    gpt_model *m;
    const tok_tokenizer *tok;
    gpt_kv *kv;
    size_t max_seqs, max_len, V, C;
    float *dlogits;     /* device [max_seqs, V] */
    float *hlogits;     /* host [max_seqs, V] */
    int32_t end_id, eot_id;
};

engine *engine_new(gpt_model *m, const tok_tokenizer *tok, size_t max_seqs, size_t max_len) {
    engine *e = gk_calloc(1, sizeof *e);
    e->m = m; e->tok = tok;
    e->max_seqs = max_seqs ? max_seqs : 1;
    e->kv = gpt_kv_new(m, e->max_seqs, max_len);
    e->max_len = e->kv->max_len;
    e->V = (size_t)m->cfg.vocab_size; e->C = (size_t)m->cfg.n_embd;
    e->dlogits = kern_alloc(e->m->be, e->max_seqs * e->V * sizeof(float));
    e->hlogits = gk_malloc(e->max_seqs * e->V * sizeof(float));
    e->end_id = tok ? tok_special_id(tok, TOK_END) : -1;
    e->eot_id = tok ? tok_eot_id(tok) : -1;
    return e;
}

/* logits [B, V] = h [B, C] @ wte^T: the tied LM head (gpt_lm_head_fwd's product), skinny for decode rows */
static void lm_head(engine *e, float *logits, const float *h, size_t B) {
    if (B <= KERN_SKINNY_MAX_N)
        kern_matmul_skinny_fwd(e->m->be, logits, h, e->m->params + e->m->table[0].offset, NULL, B, e->C, e->V, KERN_W_OUT_IN);
    else gpt_lm_head_fwd(e->m, logits, h, B);
}

void engine_free(engine *e) {
    if (!e) return;
    gpt_kv_free(e->kv);
    kern_free(e->m->be, e->dlogits);
    free(e->hlogits);
    free(e);
}

gpt_model *engine_model(engine *e) { return e->m; }
size_t engine_max_len(const engine *e) { return e->max_len; }
size_t engine_max_seqs(const engine *e) { return e->max_seqs; }
size_t engine_slot_len(const engine *e, size_t slot) { return e->kv->len[slot]; }
void engine_reset(engine *e, size_t slot) { gpt_kv_reset(e->kv, slot); }
void engine_fork(engine *e, size_t dst, size_t src) { gpt_kv_copy(e->m, e->kv, dst, src); }

const char *engine_finish_name(engine_finish f) {
    static const char *n[] = { "stop", "stop_string", "length", "context", "cancelled" };
    return (unsigned)f < 5 ? n[f] : "?";
}

void engine_gen_opts_default(engine_gen_opts *o) {
    memset(o, 0, sizeof *o);
    infer_sampling_default(&o->samp);
    o->default_stops = 1;
}

void engine_seq_free(engine_seq *s) {
    if (!s) return;
    free(s->ids); free(s->logprob); free(s->sample_logprob); free(s->text);
    memset(s, 0, sizeof *s);
}

/* ---------------------------------------------------------------- loading */

int infer_load_tokenizer(const char *model_dir, const char *recorded, const char *override, int required,
                         tok_tokenizer **tok, gk_err *err) {
    *tok = NULL;
    const char *path = override ? override : recorded;
    if (!path) {
        if (!required) return 0;
        return gk_errf(err, "%s records no tokenizer; pass --tokenizer PATH", model_dir);
    }
    gk_err e1;
    *tok = tok_load(path, &e1);
    if (*tok) return 0;
    if (!override && path[0] != '/' && model_dir) {   /* a relative path recorded from elsewhere */
        char *alt = gk_path_join(model_dir, path);
        gk_err e2;
        *tok = tok_load(alt, &e2);
        free(alt);
        if (*tok) return 0;
    }
    return gk_errf(err, "tokenizer %s%s: %s", path, override ? "" : " (recorded in the checkpoint; override with --tokenizer)", e1.msg);
}

/* ---------------------------------------------------------------- low level */

int engine_feed(engine *e, size_t slot, const int32_t *ids, size_t n, float *logits, gk_err *err) {
    if (slot >= e->max_seqs) return gk_errf(err, "slot %zu of %zu", slot, e->max_seqs);
    if (n == 0) return gk_errf(err, "nothing to feed");
    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0 || (size_t)ids[i] >= e->V)
            return gk_errf(err, "token id %d at position %zu is outside the model's vocabulary [0, %zu)", ids[i], i, e->V);
    size_t have = e->kv->len[slot];
    if (have + n > e->max_len)
        return gk_errf(err, "%s %zu tokens but the context holds %zu (the model's n_ctx is %d)",
                       have ? "sequence would be" : "prompt is", have + n, e->max_len, e->m->cfg.n_ctx);
    const float *h = NULL;
    size_t last = 0;
    for (size_t i = 0; i < n; i += PREFILL_CHUNK) {
        size_t k = n - i < PREFILL_CHUNK ? n - i : PREFILL_CHUNK;
        h = gpt_forward_kv(e->m, e->kv, &slot, ids + i, 1, k);
        last = k - 1;
    }
    if (logits) {
        lm_head(e, e->dlogits, h + last * e->C, 1);
        kern_download(e->m->be, logits, e->dlogits, e->V * sizeof(float));
    }
    return 0;
}

void engine_step(engine *e, const size_t *slots, const int32_t *ids, size_t B, float *logits) {
    GK_CHECK(B >= 1 && B <= e->max_seqs, "engine_step: B=%zu (max %zu)", B, e->max_seqs);
    const float *h = gpt_forward_kv(e->m, e->kv, slots, ids, B, 1);
    lm_head(e, e->dlogits, h, B);
    kern_download(e->m->be, logits, e->dlogits, B * e->V * sizeof(float));
}

/* ---------------------------------------------------------------- generate */

typedef struct {
    engine_seq *out;
    size_t cap;
    gk_rng rng;
    uint32_t *counts;   /* [V] generated counts (penalties), or NULL */
    uint8_t *seen;      /* [V] in prompt or generated (repetition penalty), or NULL */
    tok_stream ts;
    tok_bytes text;
    size_t emitted;     /* bytes of text already streamed */
    int active;
} seq_state;

static void seq_push(seq_state *s, int32_t id, float lp, float slp) {
    engine_seq *o = s->out;
    if (o->n == s->cap) {
        s->cap = s->cap ? 2 * s->cap : 64;
        o->ids = gk_realloc(o->ids, s->cap * sizeof(int32_t));
        o->logprob = gk_realloc(o->logprob, s->cap * sizeof(float));
        o->sample_logprob = gk_realloc(o->sample_logprob, s->cap * sizeof(float));
    }
    o->ids[o->n] = id; o->logprob[o->n] = lp; o->sample_logprob[o->n] = slp;
    o->n++;
}

/* Streams text[emitted .. upto), upto moved back to a UTF-8 character start. Returns the callback's verdict. */
static int stream_upto(const engine_gen_opts *o, size_t i, seq_state *s, int32_t id, size_t upto) {
    while (upto > s->emitted && upto < s->text.n && (s->text.data[upto] & 0xC0) == 0x80) upto--;
    int stop = 0;
    if (o->on_token) {
        size_t a = s->emitted, b = upto > a ? upto : a;
        stop = o->on_token(o->ctx, i, id, s->text.data ? (const char *)s->text.data + a : "", b - a);
    }
    if (upto > s->emitted) s->emitted = upto;
    return stop;
}

static void seq_finish(const engine_gen_opts *o, size_t i, seq_state *s, engine_finish f, int has_tok) {
    s->active = 0;
    s->out->finish = f;
    if (!has_tok) return;
    if (f != ENGINE_FINISH_STOP_STRING) tok_stream_flush(&s->ts, &s->text);
    stream_upto(o, i, s, -1, s->text.n);
}

/* Earliest occurrence of any stop string that ends in the bytes added since old_n; -1 if none. */
static long find_stop(const engine_gen_opts *o, const tok_bytes *t, size_t old_n, size_t maxlen) {
    size_t from = old_n > maxlen ? old_n - maxlen : 0;
    long best = -1;
    for (size_t k = 0; k < o->n_stop_strs; k++) {
        size_t L = strlen(o->stop_strs[k]);
        if (L == 0 || t->n < L) continue;
        for (size_t p = from; p + L <= t->n; p++)
            if (!memcmp(t->data + p, o->stop_strs[k], L)) { if (best < 0 || (long)p < best) best = (long)p; break; }
    }
    return best;
}

/* The decode loop shared by engine_generate (one prompt prefilled once, forked) and engine_generate_multi (a
 * prompt per sequence). Sequence i lives in slot i, its prompt is prompts[i] (for the repetition penalty), and
 * the logits after its prompt are first + i * first_stride. */
static int decode_loop(engine *e, const int32_t *const *prompts, const size_t *n_prompts, size_t n_seqs,
                       const float *first, size_t first_stride, const engine_gen_opts *o, engine_seq *out);

static int check_common(engine *e, size_t n_seqs, const engine_gen_opts *o, gk_err *err) {
    if (n_seqs == 0 || n_seqs > e->max_seqs)
        return gk_errf(err, "%zu sequences requested; this engine decodes 1 to %zu at once", n_seqs, e->max_seqs);
    if (infer_sampling_validate(&o->samp, err)) return -1;
    if (o->n_stop_strs && !e->tok) return gk_errf(err, "stop strings need a tokenizer (none is attached to the model)");
    return 0;
}

static int check_prompt(engine *e, size_t n_prompt, const char *which, gk_err *err) {
    if (n_prompt == 0) return gk_errf(err, "empty prompt%s: generation needs at least one token to condition on", which);
    if (n_prompt > e->max_len)
        return gk_errf(err, "prompt%s is %zu tokens but the context holds %zu (the model's n_ctx is %d); shorten it",
                       which, n_prompt, e->max_len, e->m->cfg.n_ctx);
    return 0;
}

int engine_generate(engine *e, const int32_t *prompt, size_t n_prompt, size_t n_seqs, const engine_gen_opts *o,
                    engine_seq *out, gk_err *err) {
    if (check_prompt(e, n_prompt, "", err) || check_common(e, n_seqs, o, err)) return -1;
    for (size_t i = 0; i < n_seqs; i++) memset(&out[i], 0, sizeof out[i]);
    /* prefill slot 0, fork to the others */
    float *first = gk_malloc(e->V * sizeof(float));
    engine_reset(e, 0);
    if (engine_feed(e, 0, prompt, n_prompt, first, err)) { free(first); return -1; }
    for (size_t i = 1; i < n_seqs; i++) engine_fork(e, i, 0);
    const int32_t **ps = gk_malloc(n_seqs * sizeof *ps);
    size_t *ns = gk_malloc(n_seqs * sizeof *ns);
    for (size_t i = 0; i < n_seqs; i++) { ps[i] = prompt; ns[i] = n_prompt; }
    int rc = decode_loop(e, ps, ns, n_seqs, first, 0, o, out);
    free(ps); free(ns); free(first);
    return rc;
}

int engine_generate_multi(engine *e, const int32_t *const *prompts, const size_t *n_prompts, size_t n_seqs,
                          const engine_gen_opts *o, engine_seq *out, gk_err *err) {
    if (check_common(e, n_seqs, o, err)) return -1;
    for (size_t i = 0; i < n_seqs; i++) {
        char which[48];
        snprintf(which, sizeof which, " %zu", i);
        if (check_prompt(e, n_prompts[i], which, err)) return -1;
    }
    for (size_t i = 0; i < n_seqs; i++) memset(&out[i], 0, sizeof out[i]);
    float *first = gk_malloc(n_seqs * e->V * sizeof(float));
    for (size_t i = 0; i < n_seqs; i++) {
        engine_reset(e, i);
        if (engine_feed(e, i, prompts[i], n_prompts[i], first + i * e->V, err)) {
            free(first);
            return gk_err_prefix(err, "prompt %zu", i);
        }
    }
    int rc = decode_loop(e, prompts, n_prompts, n_seqs, first, e->V, o, out);
    free(first);
    return rc;
}

static int decode_loop(engine *e, const int32_t *const *prompts, const size_t *n_prompts, size_t n_seqs,
                       const float *first, size_t first_stride, const engine_gen_opts *o, engine_seq *out) {
    size_t V = e->V;
    int32_t stops[10]; size_t nstops = 0;
    if (o->default_stops) {
        if (e->end_id >= 0) stops[nstops++] = e->end_id;
        if (e->eot_id >= 0) stops[nstops++] = e->eot_id;
    }
    for (size_t k = 0; k < o->n_stop_ids && k < 8; k++) stops[nstops++] = o->stop_ids[k];
    size_t maxstop = 0;
    for (size_t k = 0; k < o->n_stop_strs; k++) { size_t L = strlen(o->stop_strs[k]); if (L > maxstop) maxstop = L; }
    size_t hold = maxstop ? maxstop - 1 : 0;
    const infer_sampling *sp = &o->samp;
    int need_counts = sp->frequency_penalty != 0 || sp->presence_penalty != 0;
    int need_seen = sp->repetition_penalty != 1.0f;
    size_t max_new = o->max_new ? o->max_new : e->max_len;

    seq_state *st = gk_calloc(n_seqs, sizeof *st);
    for (size_t i = 0; i < n_seqs; i++) {
        st[i].out = &out[i];
        st[i].active = 1;
        gk_rng_seed(&st[i].rng, sp->seed ^ (0x9E3779B97F4A7C15ULL * (uint64_t)(i + 1)));
        if (need_counts) st[i].counts = gk_calloc(V, sizeof(uint32_t));
        if (need_seen) {
            st[i].seen = gk_calloc(V, 1);
            for (size_t k = 0; k < n_prompts[i]; k++) st[i].seen[prompts[i][k]] = 1;
        }
        tok_stream_init(&st[i].ts);
    }
    float *probs = gk_malloc(V * sizeof(float));
    size_t *slots = gk_malloc(n_seqs * sizeof(size_t));
    int32_t *next = gk_malloc(n_seqs * sizeof(int32_t));
    size_t *row_of = gk_malloc(n_seqs * sizeof(size_t));
    for (size_t i = 0; i < n_seqs; i++) row_of[i] = 0;
    int first_step = 1;
    for (;;) {
        int cancelled = o->cancel && *o->cancel;
        size_t nact = 0;
        for (size_t i = 0; i < n_seqs; i++) {
            seq_state *s = &st[i];
            if (!s->active) continue;
            if (cancelled) { seq_finish(o, i, s, ENGINE_FINISH_CANCELLED, e->tok != NULL); continue; }
            const float *lg = first_step ? first + i * first_stride : e->hlogits + row_of[i] * V;
            infer_sampling_probs(sp, lg, V, s->counts, s->seen, probs);
            int32_t id = infer_draw(probs, V, &s->rng);
            float slp = sp->temperature == 0 ? 0.0f : logf(probs[id]);
            seq_push(s, id, infer_logprob(lg, V, id), slp);
            if (s->counts) s->counts[id]++;
            if (s->seen) s->seen[id] = 1;
            int is_stop = 0;
            for (size_t k = 0; k < nstops; k++) if (id == stops[k]) is_stop = 1;
            if (is_stop) { seq_finish(o, i, s, ENGINE_FINISH_STOP_TOKEN, e->tok != NULL); continue; }
            if (e->tok) {
                size_t old = s->text.n;
                gk_err derr;
                tok_stream_push(&s->ts, e->tok, id, &s->text, &derr);
                long at = maxstop ? find_stop(o, &s->text, old, maxstop) : -1;
                if (at >= 0) {
                    s->text.n = (size_t)at;
                    if (s->emitted > s->text.n) s->emitted = s->text.n;
                    seq_finish(o, i, s, ENGINE_FINISH_STOP_STRING, 1);
                    continue;
                }
                size_t safe = s->text.n > hold ? s->text.n - hold : 0;
                if (safe < s->emitted) safe = s->emitted;
                if (stream_upto(o, i, s, id, safe)) { seq_finish(o, i, s, ENGINE_FINISH_CANCELLED, 1); continue; }
            } else if (o->on_token && o->on_token(o->ctx, i, id, "", 0)) {
                seq_finish(o, i, s, ENGINE_FINISH_CANCELLED, 0); continue;
            }
            if (s->out->n >= max_new) { seq_finish(o, i, s, ENGINE_FINISH_LENGTH, e->tok != NULL); continue; }
            if (e->kv->len[i] >= e->max_len) { seq_finish(o, i, s, ENGINE_FINISH_CONTEXT, e->tok != NULL); continue; }
            slots[nact] = i; next[nact] = id; row_of[i] = nact; nact++;
        }
        first_step = 0;
        if (nact == 0) break;
        engine_step(e, slots, next, nact, e->hlogits);
    }
    for (size_t i = 0; i < n_seqs; i++) {
        seq_state *s = &st[i];
        if (e->tok) {
            out[i].text = gk_malloc(s->text.n + 1);
            if (s->text.n) memcpy(out[i].text, s->text.data, s->text.n);
            out[i].text[s->text.n] = 0;
            out[i].text_len = s->text.n;
        }
        tok_bytes_free(&s->text);
        free(s->counts); free(s->seen);
    }
    free(st); free(probs); free(slots); free(next); free(row_of);
    return 0;
}
