/* engine.c: the inference engine — a scheduler over KV-cache slots. Requests (a prompt, n samples, their own
 * sampling and stop settings) are admitted into free slots or a FIFO queue; every engine_step prefills the
 * newly placed ones (once per prompt, the cache copied to the n sample slots), draws one token for every live
 * sequence, retires the finished ones at once (freeing their slots for the queue), and runs one batched
 * forward for the rest. engine_generate / engine_generate_multi are admit + step-until-done.
 *
 * Per step and sequence:  logits (host) -> raw log-prob of the pick (temperature 1, for PPO)
 *                                       -> sampling distribution (infer_sampling_probs) -> draw
 * then the pick is checked against the stop ids, decoded into text (tok_stream: only whole UTF-8 characters),
 * checked against the stop strings, and streamed, holding back the last (longest stop string - 1) bytes so
 * that a stop string split over tokens is never shown.
 *
 * Determinism: the batch's rows are the live sequences in admission order, each sequence has its own RNG
 * stream, and slots are taken lowest-free first, so an idle engine given the requests of one generate call
 * runs exactly the forwards and draws that call always ran (the demo's numbers depend on it).
 */
#include "infer/infer.h"
#include "kern/kern.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define PREFILL_CHUNK 256   /* rows per prefill call: bounds the scratch for long prompts */
#define PREFILL_ROWS 1024   /* rows of one batched prefill (several prompts, each padded to the longest) */

struct engine {
    gpt_model *m;
    const tok_tokenizer *tok;
    gpt_kv *kv;
    size_t max_seqs, max_len, V, C;
    float *dlogits;     /* device [max_seqs, V] */
    float *dlast;       /* device [max_seqs, C]: the last prompt row of each prompt of a batched prefill */
    float *hlogits;     /* host [max_seqs, V]: row b = logits of the b-th sequence of the last decode batch */
    int32_t end_id, eot_id;
    /* scheduler */
    struct request **reqs;      /* [n_reqs] in admission order; NULL once taken (compacted between steps) */
    size_t n_reqs, cap_reqs;
    engine_req_id next_id;
    size_t max_queued;          /* 0 = unbounded */
    int prefix_reuse;           /* engine_set_prefix_reuse */
    int32_t *hist;              /* [max_seqs, max_len]: the tokens each slot's cache holds (its first len) */
    uint8_t *slot_used;         /* [max_seqs] */
    size_t n_free;
    int in_step;                /* inside engine_step or a retire: callbacks may not step or cancel */
    /* the decode batch of one step: row b is sequence b_seq[b] in slot b_slots[b], fed b_ids[b] */
    size_t *b_slots;            /* [max_seqs] */
    int32_t *b_ids;             /* [max_seqs] */
    struct seq_state **b_seq;   /* [max_seqs] */
    float *probs;               /* host [V]: sampling distribution scratch */
    float *masked;              /* host [V]: logits with the grammar's mask applied */
    uint32_t *mask_words;       /* [mask_W] */
    size_t mask_W;              /* mask words: the larger of the model's and the tokenizer's vocabulary */
};

engine *engine_new(gpt_model *m, const tok_tokenizer *tok, size_t max_seqs, size_t max_len) {
    engine *e = gk_calloc(1, sizeof *e);
    e->m = m; e->tok = tok;
    e->max_seqs = max_seqs ? max_seqs : 1;
    /* a long-context model (LLaMA 3: 131072) gets a cache of 2048 tokens unless the caller asks for more */
    if (!max_len && m->cfg.n_ctx > 2048) max_len = 2048;
    e->kv = gpt_kv_new(m, e->max_seqs, max_len);
    e->max_len = e->kv->max_len;
    e->V = (size_t)m->cfg.vocab_size; e->C = (size_t)m->cfg.n_embd;
    e->dlogits = kern_alloc(e->m->be, e->max_seqs * e->V * sizeof(float));
    e->dlast = kern_alloc(e->m->be, e->max_seqs * e->C * sizeof(float));
    e->hlogits = gk_malloc(e->max_seqs * e->V * sizeof(float));
    /* default stops: the end of a turn and of a document, in whichever chat format the tokenizer speaks */
    e->end_id = tok ? tok_special_id(tok, TOK_END) : -1;
    if (tok && e->end_id < 0) e->end_id = tok_special_id(tok, "<|im_end|>");
    if (tok && e->end_id < 0) e->end_id = tok_special_id(tok, "<|eot_id|>");
    e->eot_id = tok ? tok_eot_id(tok) : -1;
    if (tok && e->eot_id < 0) e->eot_id = tok_special_id(tok, "<|end_of_text|>");
    e->next_id = 1;
    e->slot_used = gk_calloc(e->max_seqs, 1);
    e->hist = gk_malloc(e->max_seqs * e->max_len * sizeof(int32_t));
    e->n_free = e->max_seqs;
    e->b_slots = gk_malloc(e->max_seqs * sizeof(size_t));
    e->b_ids = gk_malloc(e->max_seqs * sizeof(int32_t));
    e->b_seq = gk_malloc(e->max_seqs * sizeof *e->b_seq);
    e->probs = gk_malloc(e->V * sizeof(float));
    e->masked = gk_malloc(e->V * sizeof(float));
    size_t vt = tok ? tok_vocab_size(tok) : 0;
    e->mask_W = ((vt > e->V ? vt : e->V) + 31) / 32;
    e->mask_words = gk_malloc(e->mask_W * sizeof(uint32_t));
    return e;
}

/* logits [B, V] = h [B, C] @ W^T, W the LM head found by role (wte when tied): gpt_lm_head_fwd's product, skinny for
 * decode rows of an fp32 head (a head kept quantized picks its own decode kernel inside gpt_lm_head_fwd) */
static void lm_head(engine *e, float *logits, const float *h, size_t B) {
    const float *w = gpt_role_ptr(e->m->params, e->m, GPT_ROLE_LM_HEAD, -1);   /* NULL when kept quantized */
    if (w && B <= KERN_SKINNY_MAX_N)
        kern_matmul_skinny_fwd(e->m->be, logits, h, w, NULL, B, e->C, e->V, KERN_W_OUT_IN);
    else gpt_lm_head_fwd(e->m, logits, h, B);
}

static void req_free(struct request *r);

void engine_free(engine *e) {
    if (!e) return;
    for (size_t i = 0; i < e->n_reqs; i++) req_free(e->reqs[i]);
    free(e->reqs);
    gpt_kv_free(e->kv);
    kern_free(e->m->be, e->dlogits);
    kern_free(e->m->be, e->dlast);
    free(e->hlogits);
    free(e->slot_used); free(e->hist); free(e->b_slots); free(e->b_ids); free(e->b_seq); free(e->probs); free(e->masked); free(e->mask_words);
    free(e);
}

gpt_model *engine_model(engine *e) { return e->m; }
size_t engine_max_len(const engine *e) { return e->max_len; }
size_t engine_max_seqs(const engine *e) { return e->max_seqs; }
size_t engine_slot_len(const engine *e, size_t slot) { return e->kv->len[slot]; }
void engine_reset(engine *e, size_t slot) {
    GK_CHECK(slot < e->max_seqs && !e->slot_used[slot], "engine_reset: slot %zu is held by a running request (or out of range)", slot);
    gpt_kv_reset(e->kv, slot);
}
static void slot_copy(engine *e, size_t dst, size_t src) {
    gpt_kv_copy(e->m, e->kv, dst, src);
    memcpy(e->hist + dst * e->max_len, e->hist + src * e->max_len, e->kv->len[src] * sizeof(int32_t));
}
void engine_fork(engine *e, size_t dst, size_t src) {
    GK_CHECK(dst < e->max_seqs && src < e->max_seqs && !e->slot_used[dst], "engine_fork: slot %zu is held by a running request (or out of range)", dst);
    slot_copy(e, dst, src);
}
void engine_set_prefix_reuse(engine *e, int on) { e->prefix_reuse = on; }

const char *engine_finish_name(engine_finish f) {
    static const char *n[] = { "stop", "stop_string", "length", "context", "cancelled", "grammar" };
    return (unsigned)f < 6 ? n[f] : "?";
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

/* ---------------------------------------------------------------- low level */

/* Records the n tokens about to be appended to slot's cache (the cache's own write comes after). */
static void hist_put(engine *e, size_t slot, const int32_t *ids, size_t n) {
    GK_CHECK(e->kv->len[slot] + n <= e->max_len, "slot %zu: %zu + %zu tokens exceed the cache (%zu)", slot, e->kv->len[slot], n, e->max_len);
    memcpy(e->hist + slot * e->max_len + e->kv->len[slot], ids, n * sizeof(int32_t));
}

/* Prefill rows: chunks of PREFILL_CHUNK; logits [V] (host) of the last token if non-NULL. The caller has
 * validated ids and lengths. */
static void feed_slot(engine *e, size_t slot, const int32_t *ids, size_t n, float *logits) {
    const float *h = NULL;
    size_t last = 0;
    for (size_t i = 0; i < n; i += PREFILL_CHUNK) {
        size_t k = n - i < PREFILL_CHUNK ? n - i : PREFILL_CHUNK;
        hist_put(e, slot, ids + i, k);
        h = gpt_forward_kv(e->m, e->kv, &slot, ids + i, 1, k);
        last = k - 1;
    }
    if (logits) {
        lm_head(e, e->dlogits, h + last * e->C, 1);
        kern_download(e->m->be, logits, e->dlogits, e->V * sizeof(float));
    }
}

/* logits [B, V] (host) after appending ids[b] to slots[b]: one batched forward of one token per sequence */
static void decode_rows(engine *e, const size_t *slots, const int32_t *ids, size_t B, float *logits) {
    GK_CHECK(B >= 1 && B <= e->max_seqs, "decode of B=%zu sequences (max %zu)", B, e->max_seqs);
    for (size_t b = 0; b < B; b++) hist_put(e, slots[b], ids + b, 1);
    const float *h = gpt_forward_kv(e->m, e->kv, slots, ids, B, 1);
    lm_head(e, e->dlogits, h, B);
    kern_download(e->m->be, logits, e->dlogits, B * e->V * sizeof(float));
}

static int check_ids(const engine *e, const int32_t *ids, size_t n, gk_err *err) {
    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0 || (size_t)ids[i] >= e->V)
            return gk_errf(err, "token id %d at position %zu is outside the model's vocabulary [0, %zu)", ids[i], i, e->V);
    return 0;
}

int engine_feed(engine *e, size_t slot, const int32_t *ids, size_t n, float *logits, gk_err *err) {
    if (slot >= e->max_seqs) return gk_errf(err, "slot %zu of %zu", slot, e->max_seqs);
    if (e->slot_used[slot]) return gk_errf(err, "slot %zu is held by a running request", slot);
    if (n == 0) return gk_errf(err, "nothing to feed");
    if (check_ids(e, ids, n, err)) return -1;
    size_t have = e->kv->len[slot];
    if (have + n > e->max_len)
        return gk_errf(err, "%s %zu tokens but the context holds %zu (the model's n_ctx is %d)",
                       have ? "sequence would be" : "prompt is", have + n, e->max_len, e->m->cfg.n_ctx);
    feed_slot(e, slot, ids, n, logits);
    return 0;
}

void engine_decode_slots(engine *e, const size_t *slots, const int32_t *ids, size_t B, float *logits) {
    for (size_t b = 0; b < B; b++)
        GK_CHECK(slots[b] < e->max_seqs && !e->slot_used[slots[b]], "engine_decode_slots: slot %zu is held by a running request", slots[b]);
    decode_rows(e, slots, ids, B, logits);
}

/* ---------------------------------------------------------------- requests and sequences */

typedef struct seq_state {
    engine_seq *out;
    size_t cap;         /* allocated length of out's arrays */
    gk_rng rng;
    uint32_t *counts;   /* [V] generated counts (penalties), or NULL */
    uint8_t *seen;      /* [V] in prompt or generated (repetition penalty), or NULL */
    tok_stream ts;
    tok_bytes text;
    size_t emitted;     /* bytes of text already streamed */
    int active;         /* still decoding (holds slot) */
    int held;           /* slot is ours (placed, not yet released) */
    size_t slot;
    size_t index;       /* seq_base + k: the callback's seq */
    const float *logits;   /* host [V]: the distribution of its next token (the prefill's, or a decode row) */
    constrain_state *cst;  /* grammar state (o.grammar), or NULL */
    constrain *grammar;    /* o.grammar */
    uint32_t *pre_mask;    /* [ceil(V/32)] the mask of cst, computed while the forward ran (pre_n allowed), */
    size_t pre_n;          /* or pre_valid = 0 */
    int pre_valid;
} seq_state;

typedef struct request {
    engine_req_id id;
    engine_req_state state;
    int prefilled, taken;
    engine_gen_opts o;      /* the caller's options; o.stop_strs points at stop_copy */
    char **stop_copy;       /* [o.n_stop_strs] */
    engine_done_cb on_done;
    int32_t *prompt;        /* [n_prompt] */
    size_t n_prompt;
    size_t n, live;         /* samples; samples still decoding */
    seq_state *st;          /* [n] */
    engine_seq *out;        /* [n] */
    float *first;           /* host [V]: logits after the prompt, shared by the n samples' first draw */
    size_t cached;          /* prompt tokens the first sample's slot already held when placed (prefix reuse) */
    int32_t stops[10];
    size_t nstops, maxstop, hold, max_new;
    /* pause and resume (keep): finished sequences hold their slots until engine_release */
    int keep, results_out;  /* results_out: engine_take_result moved the results of the last segment */
    int32_t **pend;         /* [n] tokens engine_extend asked to feed (NULL = none), or NULL */
    size_t *npend;          /* [n] */
    float *ext_logits;      /* host [n, V]: logits after each extended sequence's fed tokens */
} request;

static void req_free(request *r) {
    if (!r) return;
    for (size_t k = 0; k < r->n; k++) {
        free(r->st[k].counts); free(r->st[k].seen);
        constrain_state_free(r->st[k].cst);
        free(r->st[k].pre_mask);
        tok_bytes_free(&r->st[k].text);
        if (!r->taken) engine_seq_free(&r->out[k]);
    }
    for (size_t k = 0; k < r->o.n_stop_strs; k++) free(r->stop_copy[k]);
    if (r->pend) for (size_t k = 0; k < r->n; k++) free(r->pend[k]);
    free(r->pend); free(r->npend); free(r->ext_logits);
    free(r->stop_copy); free(r->prompt); free(r->st); free(r->out); free(r->first);
    free(r);
}

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
static int stream_upto(const engine_gen_opts *o, seq_state *s, int32_t id, size_t upto) {
    while (upto > s->emitted && upto < s->text.n && (s->text.data[upto] & 0xC0) == 0x80) upto--;
    int stop = 0;
    if (o->on_token) {
        size_t a = s->emitted, b = upto > a ? upto : a;
        stop = o->on_token(o->ctx, s->index, id, s->text.data ? (const char *)s->text.data + a : "", b - a);
    }
    if (upto > s->emitted) s->emitted = upto;
    return stop;
}

static void place_queued(engine *e);

static void slot_release(engine *e, size_t slot) {
    GK_CHECK(e->slot_used[slot], "slot %zu released twice", slot);
    e->slot_used[slot] = 0;
    e->n_free++;
}

/* Retires sequence k of r: final streaming flush, text out, penalty state freed, slot freed and handed to the
 * queue at once. The request is DONE when its last sequence retires. */
static void seq_retire(engine *e, request *r, size_t k, engine_finish f) {
    seq_state *s = &r->st[k];
    s->active = 0;
    s->out->finish = f;
    if (e->tok) {
        if (f != ENGINE_FINISH_STOP_STRING) tok_stream_flush(&s->ts, &s->text);
        stream_upto(&r->o, s, -1, s->text.n);
        s->out->text = gk_malloc(s->text.n + 1);
        if (s->text.n) memcpy(s->out->text, s->text.data, s->text.n);
        s->out->text[s->text.n] = 0;
        s->out->text_len = s->text.n;
    }
    tok_bytes_free(&s->text);
    if (!r->keep) {   /* a kept sequence may be extended: its penalty state and slot stay */
        free(s->counts); free(s->seen);
        s->counts = NULL; s->seen = NULL;
        if (s->held) { slot_release(e, s->slot); s->held = 0; }
    }
    int done = --r->live == 0;
    if (done) {
        r->state = ENGINE_REQ_DONE;
        free(r->first); r->first = NULL;
    }
    place_queued(e);   /* the freed slot, or a cancelled head of the queue, lets the next in line in */
    if (done && r->on_done) r->on_done(r->o.ctx, r->id);
}

/* The free slot whose cache shares the longest prefix with prompt (at most n - 1 tokens: the last prompt
 * token is always run, for its logits); among equals the one holding least (the longer caches stay for the
 * prompts that continue them), then the lowest; *cached = that length. */
static size_t best_prefix_slot(const engine *e, const int32_t *prompt, size_t n, size_t *cached) {
    size_t best = e->max_seqs, best_len = 0;
    for (size_t s = 0; s < e->max_seqs; s++) {
        if (e->slot_used[s]) continue;
        const int32_t *h = e->hist + s * e->max_len;
        size_t L = e->kv->len[s] < n - 1 ? e->kv->len[s] : n - 1, j = 0;
        while (j < L && h[j] == prompt[j]) j++;
        if (best == e->max_seqs || j > best_len || (j == best_len && e->kv->len[s] < e->kv->len[best])) {
            best = s; best_len = j;
        }
    }
    *cached = best_len;
    return best;
}

/* Gives queued requests their slots: FIFO, and a request needs all n of its slots at once (its samples are
 * forked from one prefill), so the head waits for room and nothing behind it overtakes it. */
static void place_queued(engine *e) {
    for (size_t i = 0; i < e->n_reqs; i++) {
        request *r = e->reqs[i];
        if (!r || r->state != ENGINE_REQ_QUEUED) continue;
        if (r->n > e->n_free) return;
        size_t next = 0;   /* lowest free first: an idle engine uses slots 0 .. n-1 */
        r->cached = 0;
        for (size_t k = 0; k < r->n; k++) {
            size_t slot;
            if (k == 0 && e->prefix_reuse) slot = best_prefix_slot(e, r->prompt, r->n_prompt, &r->cached);
            else {
                while (e->slot_used[next]) next++;
                slot = next;
            }
            e->slot_used[slot] = 1;
            e->n_free--;
            r->st[k].slot = slot;
            r->st[k].held = 1;
            if (k == 0 && r->cached) gpt_kv_truncate(e->kv, slot, r->cached);
            else gpt_kv_reset(e->kv, slot);
        }
        r->state = ENGINE_REQ_RUNNING;
    }
}

/* ---------------------------------------------------------------- admit */

static int check_prompt(const engine *e, size_t n_prompt, const char *which, gk_err *err) {
    if (n_prompt == 0) return gk_errf(err, "empty prompt%s: generation needs at least one token to condition on", which);
    if (n_prompt > e->max_len)
        return gk_errf(err, "prompt%s is %zu tokens but the context holds %zu (the model's n_ctx is %d); shorten it",
                       which, n_prompt, e->max_len, e->m->cfg.n_ctx);
    return 0;
}

static int check_common(const engine *e, size_t n_seqs, const engine_gen_opts *o, gk_err *err) {
    if (n_seqs == 0 || n_seqs > e->max_seqs)
        return gk_errf(err, "%zu sequences requested; this engine decodes 1 to %zu at once", n_seqs, e->max_seqs);
    if (infer_sampling_validate(&o->samp, err)) return -1;
    if (o->n_stop_strs && !e->tok) return gk_errf(err, "stop strings need a tokenizer (none is attached to the model)");
    return 0;
}

void engine_req_opts_default(engine_req_opts *o) {
    memset(o, 0, sizeof *o);
    engine_gen_opts_default(&o->gen);
    o->n = 1;
}

/* The request's copy of the caller's options and its stop rules (stop ids, longest stop string, the bytes
 * streaming holds back). */
static void req_set_opts(engine *e, request *r, const engine_req_opts *ro) {
    r->o = ro->gen;
    r->on_done = ro->on_done;
    r->keep = ro->keep;
    if (r->o.n_stop_strs) {
        r->stop_copy = gk_malloc(r->o.n_stop_strs * sizeof(char *));
        for (size_t k = 0; k < r->o.n_stop_strs; k++) {
            size_t L = strlen(ro->gen.stop_strs[k]);
            r->stop_copy[k] = gk_malloc(L + 1);
            memcpy(r->stop_copy[k], ro->gen.stop_strs[k], L + 1);
            if (L > r->maxstop) r->maxstop = L;
        }
        r->o.stop_strs = (const char *const *)r->stop_copy;
    }
    r->hold = r->maxstop ? r->maxstop - 1 : 0;
    if (r->o.default_stops) {
        if (e->end_id >= 0) r->stops[r->nstops++] = e->end_id;
        if (e->eot_id >= 0) r->stops[r->nstops++] = e->eot_id;
    }
    for (size_t k = 0; k < r->o.n_stop_ids && k < 8; k++) r->stops[r->nstops++] = r->o.stop_ids[k];
    r->max_new = r->o.max_new ? r->o.max_new : e->max_len;
}

/* Sequence k's state: its own RNG stream (seq_base + k), penalty counts, the prompt marked as seen. */
static void seq_init(engine *e, request *r, size_t k, size_t seq_base) {
    seq_state *s = &r->st[k];
    const infer_sampling *sp = &r->o.samp;
    s->out = &r->out[k];
    s->active = 1;
    s->index = seq_base + k;
    gk_rng_seed(&s->rng, sp->seed ^ (0x9E3779B97F4A7C15ULL * (uint64_t)(s->index + 1)));
    if (sp->frequency_penalty != 0 || sp->presence_penalty != 0) s->counts = gk_calloc(e->V, sizeof(uint32_t));
    if (sp->repetition_penalty != 1.0f) {
        s->seen = gk_calloc(e->V, 1);
        for (size_t j = 0; j < r->n_prompt; j++) s->seen[r->prompt[j]] = 1;
    }
    if (r->o.grammar) s->cst = constrain_state_new(r->o.grammar);
    s->grammar = r->o.grammar;
    tok_stream_init(&s->ts);
}

engine_req_id engine_admit(engine *e, const int32_t *prompt, size_t n_prompt, const engine_req_opts *o, gk_err *err) {
    engine_req_opts def;
    if (!o) { engine_req_opts_default(&def); o = &def; }
    if (check_prompt(e, n_prompt, "", err) || check_common(e, o->n, &o->gen, err) || check_ids(e, prompt, n_prompt, err))
        return ENGINE_REQ_ERROR;
    if (e->max_queued) {   /* it would wait if anything waits already or its n slots are not free */
        size_t queued = 0;
        for (size_t i = 0; i < e->n_reqs; i++) queued += e->reqs[i] && e->reqs[i]->state == ENGINE_REQ_QUEUED;
        if ((queued || e->n_free < o->n) && queued >= e->max_queued) {
            gk_errf(err, "busy: %zu requests already wait for a slot (the queue holds %zu)", queued, e->max_queued);
            return ENGINE_REQ_BUSY;
        }
    }
    request *r = gk_calloc(1, sizeof *r);
    r->id = e->next_id++;
    r->state = ENGINE_REQ_QUEUED;
    r->n = r->live = o->n;
    r->n_prompt = n_prompt;
    r->prompt = gk_malloc(n_prompt * sizeof(int32_t));
    memcpy(r->prompt, prompt, n_prompt * sizeof(int32_t));
    req_set_opts(e, r, o);
    r->st = gk_calloc(r->n, sizeof *r->st);
    r->out = gk_calloc(r->n, sizeof *r->out);
    for (size_t k = 0; k < r->n; k++) seq_init(e, r, k, o->seq_base);
    if (e->n_reqs == e->cap_reqs) {
        e->cap_reqs = e->cap_reqs ? 2 * e->cap_reqs : 16;
        e->reqs = gk_realloc(e->reqs, e->cap_reqs * sizeof *e->reqs);
    }
    e->reqs[e->n_reqs++] = r;
    place_queued(e);
    return r->id;
}

/* ---------------------------------------------------------------- step */

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

/* An extended request: feeds each extended sequence's new tokens into its own slot (engine_extend). */
static void req_prefill_extension(engine *e, request *r) {
    if (!r->ext_logits) r->ext_logits = gk_malloc(r->n * e->V * sizeof(float));
    for (size_t k = 0; k < r->n; k++) {
        if (!r->pend[k]) continue;
        seq_state *s = &r->st[k];
        float *lg = r->ext_logits + k * e->V;
        feed_slot(e, s->slot, r->pend[k], r->npend[k], lg);
        if (s->seen) for (size_t j = 0; j < r->npend[k]; j++) s->seen[r->pend[k][j]] = 1;
        s->logits = lg;
        free(r->pend[k]); r->pend[k] = NULL;
    }
    r->prefilled = 1;
}

/* The prompt has run in the first sample's slot and r->first holds its logits: the other samples get a copy of
 * that cache and share the logits for their first draw. */
static void req_fork_prefilled(engine *e, request *r) {
    for (size_t k = 1; k < r->n; k++) slot_copy(e, r->st[k].slot, r->st[0].slot);
    for (size_t k = 0; k < r->n; k++) r->st[k].logits = r->first;
    r->prefilled = 1;
}

/* Runs the prompt once in the first sample's slot and copies its cache to the others. */
static void req_prefill(engine *e, request *r) {
    if (r->pend) { req_prefill_extension(e, r); return; }
    r->first = gk_malloc(e->V * sizeof(float));
    feed_slot(e, r->st[0].slot, r->prompt + r->cached, r->n_prompt - r->cached, r->first);
    req_fork_prefilled(e, r);
}

static size_t rest(const request *r) { return r->n_prompt - r->cached; }   /* prompt tokens still to run */

/* Prefills g[0 .. ng) (placed requests, at most PREFILL_CHUNK tokens each still to run) in one forward: each
 * prompt's rest right-padded to the longest with token 0 — causal attention keeps every real token blind to the
 * padding after it — then the logits of each prompt's last real row, and each slot cut back to its prompt. One
 * forward of ng x n rows instead of ng forwards of a few rows each: the products run as GEMMs, and every prompt's
 * first token comes after one prefill, not after all of them in turn. */
static void prefill_group(engine *e, request **g, size_t ng) {
    if (ng == 1) { req_prefill(e, g[0]); return; }
    size_t n = 0;
    for (size_t i = 0; i < ng; i++) if (rest(g[i]) > n) n = rest(g[i]);
    int32_t *ids = gk_calloc(ng * n, sizeof(int32_t));
    size_t *slots = gk_malloc(ng * sizeof(size_t));
    for (size_t i = 0; i < ng; i++) {
        slots[i] = g[i]->st[0].slot;
        memcpy(ids + i * n, g[i]->prompt + g[i]->cached, rest(g[i]) * sizeof(int32_t));
        hist_put(e, slots[i], ids + i * n, rest(g[i]));
    }
    const float *h = gpt_forward_kv(e->m, e->kv, slots, ids, ng, n);
    for (size_t i = 0; i < ng; i++)
        kern_copy(e->m->be, e->dlast + i * e->C, h + (i * n + rest(g[i]) - 1) * e->C, e->C * sizeof(float));
    lm_head(e, e->dlogits, e->dlast, ng);
    for (size_t i = 0; i < ng; i++) {
        request *r = g[i];
        gpt_kv_truncate(e->kv, slots[i], r->n_prompt);
        r->first = gk_malloc(e->V * sizeof(float));
        kern_download(e->m->be, r->first, e->dlogits + i * e->V, e->V * sizeof(float));
        req_fork_prefilled(e, r);
    }
    free(ids); free(slots);
}

static int by_rest(const void *a, const void *b) {
    const request *x = *(request *const *)a, *y = *(request *const *)b;
    if (rest(x) != rest(y)) return (rest(x) > rest(y)) - (rest(x) < rest(y));
    return (x->id > y->id) - (x->id < y->id);
}

/* Prefills the requests placed since the last step: an extension or a long rest on its own, the others in
 * groups of similar length (sorted by tokens to run; a group grows while its padding stays under a quarter of
 * its real rows plus 16, it fits PREFILL_ROWS, and every member's cache has room for the padded rest). The
 * grouping depends only on the set of requests, so the same set always runs the same forwards. */
static void prefill_placed(engine *e, request **p, size_t np) {
    size_t nb = 0;
    for (size_t i = 0; i < np; i++) {
        if (p[i]->pend || rest(p[i]) > PREFILL_CHUNK) req_prefill(e, p[i]);
        else p[nb++] = p[i];
    }
    qsort(p, nb, sizeof *p, by_rest);
    for (size_t a = 0; a < nb;) {
        size_t b = a + 1, real = rest(p[a]), cached = p[a]->cached;
        while (b < nb) {
            size_t L = rest(p[b]), rows = (b - a + 1) * L, c = p[b]->cached > cached ? p[b]->cached : cached;
            if (rows > PREFILL_ROWS || rows - (real + L) > (real + L) / 4 + 16 || c + L > e->max_len) break;
            real += L; cached = c; b++;
        }
        prefill_group(e, p + a, b - a);
        a = b;
    }
}

/* A constrained sequence must be able to finish within what it may still generate (max_new, the context):
 * every drawn token's shortest completion must fit in the tokens left after it (every byte is at most one token,
 * so b tokens fit a completion of b bytes). A token that does not fit is struck out (its probability zeroed)
 * and the draw repeated from the rest; after many misses every allowed token is checked at once. One check of
 * the drawn token is a few memoised steps, so this costs next to nothing until the budget gets tight. */
#define BUDGET_TRIES 64
static int is_stop_id(const request *r, int32_t id) {
    for (size_t j = 0; j < r->nstops; j++) if (id == r->stops[j]) return 1;
    return 0;
}
static size_t min_after(request *r, seq_state *s, int32_t id) {
    if (is_stop_id(r, id)) return constrain_state_can_end(s->cst) ? 0 : SIZE_MAX;
    return constrain_min_after(r->o.grammar, s->cst, id);
}
static int32_t budget_draw(engine *e, request *r, seq_state *s, int32_t id) {
    size_t by_new = r->max_new > s->out->n ? r->max_new - s->out->n : 0;
    size_t in_ctx = e->max_len > e->kv->len[s->slot] ? e->max_len - e->kv->len[s->slot] : 0;
    size_t left = by_new < in_ctx ? by_new : in_ctx;   /* tokens this sequence may still draw, this one included */
    if (left == 0) return id;
    size_t budget = left - 1, need = constrain_min_to_end(r->o.grammar, s->cst);
    /* need > left: the budget was too small from the start (a long literal in few tokens); nothing to keep.
     * need <= left: the first byte of a shortest completion (a one-byte token) leaves need - 1 <= budget, so
     * some allowed token always fits */
    if (need > left) return id;
    int32_t id0 = id;
    double mass = 1.0;
    for (int t = 0; t < BUDGET_TRIES; t++) {
        if (min_after(r, s, id) <= budget) return id;
        mass -= e->probs[id];
        e->probs[id] = 0;
        e->masked[id] = -INFINITY;
        if (mass <= 1e-6) break;
        id = infer_draw(e->probs, e->V, &s->rng);
    }
    size_t alive = 0;
    for (size_t v = 0; v < e->V; v++) {
        if (e->masked[v] == -INFINITY) continue;
        if (min_after(r, s, (int32_t)v) <= budget) alive++;
        else e->masked[v] = -INFINITY;
    }
    if (!alive) return id0;   /* only without one-byte tokens (not a byte-level vocabulary): keep the first draw */
    infer_sampling_probs(&r->o.samp, e->masked, e->V, s->counts, s->seen, e->probs);
    return infer_draw(e->probs, e->V, &s->rng);
}

/* Draws sequence k's next token from its logits and applies the stop rules (stop ids, stop strings while
 * streaming, max_new, the context). Returns the token if the sequence goes on, -1 if it was retired. */
static int32_t seq_advance(engine *e, request *r, size_t k) {
    seq_state *s = &r->st[k];
    const engine_gen_opts *o = &r->o;
    const infer_sampling *sp = &o->samp;
    const float *lg = s->logits, *dist = lg;
    if (s->cst) {   /* the grammar's mask: disallowed tokens to -inf; stop tokens only where it may end */
        memcpy(e->masked, lg, e->V * sizeof(float));
        size_t allowed;
        if (s->pre_valid) { constrain_apply_mask(o->grammar, s->pre_mask, e->masked, e->V); allowed = s->pre_n; s->pre_valid = 0; }
        else allowed = constrain_apply(o->grammar, s->cst, e->masked, e->V, e->mask_words);
        if (constrain_state_can_end(s->cst))
            for (size_t j = 0; j < r->nstops; j++)
                if (r->stops[j] >= 0 && (size_t)r->stops[j] < e->V && e->masked[r->stops[j]] == -INFINITY) { e->masked[r->stops[j]] = lg[r->stops[j]]; allowed++; }
        if (!allowed) { seq_retire(e, r, k, ENGINE_FINISH_GRAMMAR); return -1; }
        dist = e->masked;
    }
    infer_sampling_probs(sp, dist, e->V, s->counts, s->seen, e->probs);
    int32_t id = infer_draw(e->probs, e->V, &s->rng);
    if (s->cst) id = budget_draw(e, r, s, id);
    float slp = sp->temperature == 0 ? 0.0f : logf(e->probs[id]);
    seq_push(s, id, o->no_logprob ? NAN : infer_logprob(lg, e->V, id), slp);
    if (s->cst) {
        int is_stop = 0;
        for (size_t j = 0; j < r->nstops; j++) is_stop |= id == r->stops[j];
        if (!is_stop) GK_CHECK(constrain_accept_token(o->grammar, s->cst, id) == 0, "engine: the grammar rejected token %d it allowed", id);
    }
    if (s->counts) s->counts[id]++;
    if (s->seen) s->seen[id] = 1;
    for (size_t j = 0; j < r->nstops; j++)
        if (id == r->stops[j]) { seq_retire(e, r, k, ENGINE_FINISH_STOP_TOKEN); return -1; }
    if (e->tok) {
        size_t old = s->text.n;
        gk_err derr;
        tok_stream_push(&s->ts, e->tok, id, &s->text, &derr);
        long at = r->maxstop ? find_stop(o, &s->text, old, r->maxstop) : -1;
        if (at >= 0) {   /* cut the text before the stop string; never stream it */
            s->text.n = (size_t)at;
            if (s->emitted > s->text.n) s->emitted = s->text.n;
            seq_retire(e, r, k, ENGINE_FINISH_STOP_STRING);
            return -1;
        }
        /* stream all but the last `hold` bytes: they could begin a stop string that the next token completes */
        size_t safe = s->text.n > r->hold ? s->text.n - r->hold : 0;
        if (safe < s->emitted) safe = s->emitted;
        if (stream_upto(o, s, id, safe)) { seq_retire(e, r, k, ENGINE_FINISH_CANCELLED); return -1; }
    } else if (o->on_token && o->on_token(o->ctx, s->index, id, "", 0)) {
        seq_retire(e, r, k, ENGINE_FINISH_CANCELLED);
        return -1;
    }
    if (s->out->n >= r->max_new) { seq_retire(e, r, k, ENGINE_FINISH_LENGTH); return -1; }
    if (e->kv->len[s->slot] >= e->max_len) { seq_retire(e, r, k, ENGINE_FINISH_CONTEXT); return -1; }
    return id;
}

static int req_cancelled(const request *r) { return r->o.cancel && *r->o.cancel; }

static void req_cancel(engine *e, request *r) {
    for (size_t k = 0; k < r->n; k++)
        if (r->st[k].active) seq_retire(e, r, k, ENGINE_FINISH_CANCELLED);
}

/* Drops taken requests from the list, keeping admission order. */
static void compact(engine *e) {
    size_t j = 0;
    for (size_t i = 0; i < e->n_reqs; i++) {
        request *r = e->reqs[i];
        if (r && r->taken) { req_free(r); r = NULL; }
        if (r) e->reqs[j++] = r;
    }
    e->n_reqs = j;
}

/* The next masks of the constrained sequences of this step's batch (run beside the forward). */
typedef struct { engine *e; size_t nb; } masks_job;
static void *masks_run(void *arg) {
    masks_job *mj = arg;
    engine *e = mj->e;
    for (size_t b = 0; b < mj->nb; b++) {
        seq_state *s = e->b_seq[b];
        if (!s->cst) continue;
        if (!s->pre_mask) s->pre_mask = gk_malloc(e->mask_W * sizeof(uint32_t));
        s->pre_n = constrain_mask(s->grammar, s->cst, s->pre_mask);
        s->pre_valid = 1;
    }
    return NULL;
}

size_t engine_step(engine *e) {
    GK_CHECK(!e->in_step, "engine_step called from an engine callback (on_token / on_done); step from the caller's loop");
    e->in_step = 1;
    place_queued(e);
    /* 1. prefill the requests placed since the last step, batched (prefill_placed); a cancelled one is retired
     *    without it, its slots go to the queue, whose newly placed requests come later in this loop */
    request **placed = gk_malloc((e->n_reqs + 1) * sizeof *placed);
    size_t np = 0;
    for (size_t i = 0; i < e->n_reqs; i++) {
        request *r = e->reqs[i];
        if (!r || r->state != ENGINE_REQ_RUNNING || r->prefilled) continue;
        if (req_cancelled(r)) req_cancel(e, r);
        else placed[np++] = r;
    }
    prefill_placed(e, placed, np);
    free(placed);
    /* 2. one token for every live sequence, in admission order: the rows of the decode batch */
    size_t nb = 0;
    for (size_t i = 0; i < e->n_reqs; i++) {
        request *r = e->reqs[i];
        if (!r || r->state != ENGINE_REQ_RUNNING || !r->prefilled) continue;
        if (req_cancelled(r)) { req_cancel(e, r); continue; }
        for (size_t k = 0; k < r->n; k++) {
            if (!r->st[k].active) continue;
            int32_t id = seq_advance(e, r, k);
            if (id < 0) continue;
            e->b_slots[nb] = r->st[k].slot; e->b_ids[nb] = id; e->b_seq[nb] = &r->st[k];
            nb++;
        }
    }
    /* 3. one batched forward: row b holds the logits of b_seq[b]'s next token until the next step. The grammar
     *    masks of the next step depend only on the states, not on the logits: a second thread computes them
     *    meanwhile (nothing else touches the constraints until the forward is done) */
    if (nb) {
        masks_job mj = { e, nb };
        pthread_t th;
        int threaded = 0;
        for (size_t b = 0; b < nb && !threaded; b++) threaded = e->b_seq[b]->cst != NULL;
        if (threaded && pthread_create(&th, NULL, masks_run, &mj) != 0) { threaded = 0; }
        decode_rows(e, e->b_slots, e->b_ids, nb, e->hlogits);
        if (threaded) pthread_join(th, NULL);
        for (size_t b = 0; b < nb; b++) e->b_seq[b]->logits = e->hlogits + b * e->V;
    }
    e->in_step = 0;
    compact(e);
    return engine_in_flight(e);
}

/* ---------------------------------------------------------------- retire, status, results */

static request *find_req(const engine *e, engine_req_id id) {
    for (size_t i = 0; i < e->n_reqs; i++)
        if (e->reqs[i] && e->reqs[i]->id == id && !e->reqs[i]->taken) return e->reqs[i];
    return NULL;
}

int engine_cancel(engine *e, engine_req_id id, gk_err *err) {
    GK_CHECK(!e->in_step, "engine_cancel called from an engine callback; set the request's cancel flag or return non-zero from on_token");
    request *r = find_req(e, id);
    if (!r) return gk_errf(err, "no request %lld (unknown, or its result was taken)", (long long)id);
    if (r->state == ENGINE_REQ_DONE) return 0;
    e->in_step = 1;
    req_cancel(e, r);
    e->in_step = 0;
    return 0;
}

engine_req_state engine_req_status(const engine *e, engine_req_id id) {
    const request *r = find_req(e, id);
    return r ? r->state : ENGINE_REQ_UNKNOWN;
}

size_t engine_req_cached(const engine *e, engine_req_id id) {
    const request *r = find_req(e, id);
    return r ? r->cached : 0;   /* set when placed; 0 before */
}

int engine_take_result(engine *e, engine_req_id id, engine_seq *out, gk_err *err) {
    request *r = find_req(e, id);
    if (!r) return gk_errf(err, "no request %lld (unknown, or its result was taken)", (long long)id);
    if (r->state != ENGINE_REQ_DONE)
        return gk_errf(err, "request %lld is still %s", (long long)id, r->state == ENGINE_REQ_QUEUED ? "queued" : "running");
    for (size_t k = 0; k < r->n; k++) out[k] = r->out[k];
    if (r->keep) {   /* the request stays for engine_extend / engine_release; its next results start empty */
        for (size_t k = 0; k < r->n; k++) { memset(&r->out[k], 0, sizeof r->out[k]); r->st[k].cap = 0; }
        r->results_out = 1;
        return 0;
    }
    r->taken = 1;
    if (!e->in_step) compact(e);   /* inside a step the list is being walked: freed when the step ends */
    return 0;
}

int engine_extend(engine *e, engine_req_id id, const int32_t *const *ids, const size_t *n_ids, gk_err *err) {
    request *r = find_req(e, id);
    if (!r) return gk_errf(err, "no request %lld (unknown, or released)", (long long)id);
    if (!r->keep) return gk_errf(err, "request %lld was not admitted with keep = 1; it cannot be extended", (long long)id);
    if (r->state != ENGINE_REQ_DONE) return gk_errf(err, "request %lld is still running; extend it when it is done", (long long)id);
    if (!r->results_out) return gk_errf(err, "take request %lld's results before extending it", (long long)id);
    size_t any = 0;
    for (size_t k = 0; k < r->n; k++) {
        if (!n_ids[k]) continue;
        any++;
        if (check_ids(e, ids[k], n_ids[k], err)) return gk_err_prefix(err, "extending sequence %zu", k);
        size_t have = e->kv->len[r->st[k].slot];
        if (have + n_ids[k] > e->max_len)
            return gk_errf(err, "sequence %zu would be %zu tokens but the context holds %zu", k, have + n_ids[k], e->max_len);
    }
    if (!any) return gk_errf(err, "nothing to extend (every n_ids[k] is 0)");
    if (!r->pend) { r->pend = gk_calloc(r->n, sizeof *r->pend); r->npend = gk_calloc(r->n, sizeof *r->npend); }
    for (size_t k = 0; k < r->n; k++) {
        if (!n_ids[k]) continue;
        seq_state *s = &r->st[k];
        r->pend[k] = gk_malloc(n_ids[k] * sizeof(int32_t));
        memcpy(r->pend[k], ids[k], n_ids[k] * sizeof(int32_t));
        r->npend[k] = n_ids[k];
        s->active = 1;
        s->emitted = 0;
        if (s->cst) { constrain_state_free(s->cst); s->cst = constrain_state_new(r->o.grammar); s->pre_valid = 0; }
        memset(&s->text, 0, sizeof s->text);
        tok_stream_init(&s->ts);
        r->live++;
    }
    r->state = ENGINE_REQ_RUNNING;
    r->prefilled = 0;
    r->results_out = 0;
    return 0;
}

int engine_release(engine *e, engine_req_id id, gk_err *err) {
    GK_CHECK(!e->in_step, "engine_release called from an engine callback");
    request *r = find_req(e, id);
    if (!r) return gk_errf(err, "no request %lld (unknown, or released)", (long long)id);
    if (r->state == ENGINE_REQ_RUNNING || r->state == ENGINE_REQ_QUEUED)
        return gk_errf(err, "request %lld is still %s; cancel it first", (long long)id, r->state == ENGINE_REQ_QUEUED ? "queued" : "running");
    for (size_t k = 0; k < r->n; k++) {
        if (r->st[k].held) { slot_release(e, r->st[k].slot); r->st[k].held = 0; }
        if (!r->results_out) engine_seq_free(&r->out[k]);
    }
    r->taken = 1;
    compact(e);
    place_queued(e);
    return 0;
}

size_t engine_in_flight(const engine *e) {
    size_t n = 0;
    for (size_t i = 0; i < e->n_reqs; i++) n += e->reqs[i] && !e->reqs[i]->taken && e->reqs[i]->state != ENGINE_REQ_DONE;
    return n;
}

size_t engine_free_slots(const engine *e) { return e->n_free; }
void engine_set_max_queued(engine *e, size_t n) { e->max_queued = n; }

/* ---------------------------------------------------------------- one-call generation */

static int check_idle(const engine *e, const char *fn, gk_err *err) {
    size_t n = engine_in_flight(e);
    if (n) return gk_errf(err, "%s needs an idle engine, but %zu request%s queued or running", fn, n, n > 1 ? "s are" : " is");
    return 0;
}

/* Steps until every one of ids[n] is DONE, then moves their results to out (request i's n_i results after
 * request i-1's). */
static int run_requests(engine *e, const engine_req_id *ids, size_t n, engine_seq *out, gk_err *err) {
    for (;;) {
        size_t done = 0;
        for (size_t i = 0; i < n; i++) done += engine_req_status(e, ids[i]) == ENGINE_REQ_DONE;
        if (done == n) break;
        engine_step(e);
    }
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        size_t ni = find_req(e, ids[i])->n;
        if (engine_take_result(e, ids[i], out + at, err)) return -1;
        at += ni;
    }
    return 0;
}

int engine_generate(engine *e, const int32_t *prompt, size_t n_prompt, size_t n_seqs, const engine_gen_opts *o,
                    engine_seq *out, gk_err *err) {
    if (check_idle(e, "engine_generate", err)) return -1;
    engine_req_opts ro;
    engine_req_opts_default(&ro);
    ro.gen = *o;
    ro.n = n_seqs;
    engine_req_id id = engine_admit(e, prompt, n_prompt, &ro, err);
    if (id < 0) return -1;
    return run_requests(e, &id, 1, out, err);
}

/* n_req requests of n_per samples each: request i continues prompts[i]; with seeds, its sampling seed is
 * seeds[i] and its sequences are 0..n_per-1 (what engine_generate with that seed draws), else every request
 * keeps o's seed and request i is sequence i. Every prompt is checked before any is admitted, so a bad one
 * leaves nothing behind; requests beyond the free slots wait in the queue. */
static int generate_reqs(engine *e, const char *fn, const int32_t *const *prompts, const size_t *n_prompts, size_t n_req,
                         size_t n_per, const engine_gen_opts *o, const uint64_t *seeds, engine_seq *out, gk_err *err) {
    if (check_idle(e, fn, err) || check_common(e, seeds ? n_per : n_req, o, err)) return -1;
    for (size_t i = 0; i < n_req; i++) {
        char which[48];
        snprintf(which, sizeof which, " %zu", i);
        if (check_prompt(e, n_prompts[i], which, err)) return -1;
    }
    for (size_t i = 0; i < n_req; i++)
        if (check_ids(e, prompts[i], n_prompts[i], err)) return gk_err_prefix(err, "prompt %zu", i);
    engine_req_id *ids = gk_malloc((n_req ? n_req : 1) * sizeof *ids);
    engine_req_opts ro;
    engine_req_opts_default(&ro);
    ro.gen = *o;
    ro.n = n_per;
    for (size_t i = 0; i < n_req; i++) {
        if (seeds) ro.gen.samp.seed = seeds[i]; else ro.seq_base = i;
        ids[i] = engine_admit(e, prompts[i], n_prompts[i], &ro, err);
        GK_CHECK(ids[i] > 0, "%s: admit of a validated prompt failed: %s", fn, err->msg);
    }
    int rc = run_requests(e, ids, n_req, out, err);
    free(ids);
    return rc;
}

int engine_generate_multi(engine *e, const int32_t *const *prompts, const size_t *n_prompts, size_t n_seqs,
                          const engine_gen_opts *o, engine_seq *out, gk_err *err) {
    return generate_reqs(e, "engine_generate_multi", prompts, n_prompts, n_seqs, 1, o, NULL, out, err);
}

int engine_generate_groups(engine *e, const int32_t *const *prompts, const size_t *n_prompts, size_t n_groups,
                           size_t n_per, const engine_gen_opts *o, const uint64_t *seeds, engine_seq *out, gk_err *err) {
    return generate_reqs(e, "engine_generate_groups", prompts, n_prompts, n_groups, n_per, o, seeds, out, err);
}
