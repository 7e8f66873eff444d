/* strategy_solve.c: the strategies of strategy.h over the engine — prompts (chat turns or a Q/A document),
 * generation with the tool loop (pause at <|tool_call_end|>, run the tool, feed the result, resume on the same
 * KV cache), and greedy / fewshot / cot / sc / tot / reflect on top of that. */
#include "infer/strategy.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

void strategy_opts_default(strategy_opts *o) {
    memset(o, 0, sizeof *o);
    o->max_new = 256;
    infer_sampling_default(&o->samp);
    o->samp.temperature = 0.7f;
    o->rule.kind = ANSWER_AUTO;
}

void strategy_result_free(strategy_result *r) {
    if (!r) return;
    free(r->text); free(r->final);
    memset(r, 0, sizeof *r);
}

static char *dup_n(const char *s, size_t n) {
    char *d = gk_malloc(n + 1);
    if (n) memcpy(d, s, n);
    d[n] = 0;
    return d;
}
static char *dup_s(const char *s) { return dup_n(s ? s : "", s ? strlen(s) : 0); }

static void bytes_add(tok_bytes *b, const char *s) { tok_bytes_append(b, s, strlen(s)); }
static char *bytes_str(const tok_bytes *b) { return dup_n(b->n ? (const char *)b->data : "", b->n); }

/* ---------------------------------------------------------------- prompts */

/* How the task is put to the model: the strategy's instruction (cot), the examples (fewshot), and an
 * assistant prefix (tot's partial reasoning, reflect's follow-ups are whole conversations instead). */
#define COT_CHAT " Think step by step, then finish with \"The answer is X.\""
#define COT_BASE " Let's think step by step."

static const strategy_example *example_at(const strategy_opts *o, const char *prompt, size_t task, int i) {
    /* K distinct pool entries after the task's own position, skipping the task itself */
    if (!o->n_examples) return NULL;
    for (size_t j = 0, seen = 0; j < o->n_examples; j++) {
        const strategy_example *x = &o->examples[(task + 1 + j) % o->n_examples];
        if (!strcmp(x->prompt, prompt)) continue;
        if ((int)seen++ == i) return x;
    }
    return NULL;
}

static void chat_prompt(const strategy_spec *sp, const strategy_opts *o, const char *prompt, size_t task,
                        const char *prefix, tok_ids *out) {
    chat_conv c = {0};
    if (o->system) chat_conv_add(&c, CHAT_SYSTEM, o->system);
    if (o->history) for (size_t i = 0; i < o->history->n; i++) chat_conv_add(&c, o->history->msgs[i].role, o->history->msgs[i].content);
    for (int i = 0; sp->kind == STRAT_FEWSHOT && i < sp->k; i++) {
        const strategy_example *x = example_at(o, prompt, task, i);
        if (!x) break;
        chat_conv_add(&c, CHAT_USER, x->prompt);
        chat_conv_add(&c, CHAT_ASSISTANT, x->reply ? x->reply : x->answer);
    }
    size_t pl = strlen(prompt);
    char *u = gk_malloc(pl + sizeof COT_CHAT);
    memcpy(u, prompt, pl + 1);
    if (sp->kind == STRAT_COT || sp->kind == STRAT_TOT) strcat(u, COT_CHAT);
    chat_conv_add(&c, CHAT_USER, u);
    free(u);
    chat_tokens r = {0};
    chat_render(o->tok, o->sp, &c, 1, &r);
    for (size_t i = 0; i < r.n; i++) tok_ids_push(out, r.ids[i]);
    if (prefix && *prefix) chat_encode_assistant(o->tok, o->sp, prefix, out);
    chat_tokens_free(&r);
    chat_conv_free(&c);
}

static void base_prompt(const strategy_spec *sp, const strategy_opts *o, const char *prompt, size_t task,
                        const char *prefix, tok_ids *out) {
    tok_bytes d = {0};
    for (int i = 0; sp->kind == STRAT_FEWSHOT && i < sp->k; i++) {
        const strategy_example *x = example_at(o, prompt, task, i);
        if (!x) break;
        bytes_add(&d, "Q: "); bytes_add(&d, x->prompt); bytes_add(&d, "\nA: ");
        bytes_add(&d, x->reply ? x->reply : x->answer); bytes_add(&d, "\n\n");
    }
    bytes_add(&d, "Q: "); bytes_add(&d, prompt); bytes_add(&d, "\nA:");
    if (sp->kind == STRAT_COT || sp->kind == STRAT_TOT) bytes_add(&d, COT_BASE);
    if (prefix && *prefix) { bytes_add(&d, " "); bytes_add(&d, prefix); }
    tok_encode(o->tok, d.data, d.n, 0, out);
    tok_bytes_free(&d);
}

static void task_prompt(const strategy_spec *sp, const strategy_opts *o, const char *prompt, size_t task,
                        const char *prefix, tok_ids *out) {
    if (o->sp) chat_prompt(sp, o, prompt, task, prefix, out);
    else base_prompt(sp, o, prompt, task, prefix, out);
}

/* ---------------------------------------------------------------- generation with the tool loop */

typedef struct {
    tok_bytes text;     /* every segment, tool calls and results as markup */
    tok_bytes final;    /* the last segment */
    tok_ids ids;        /* every generated id (to find the call's start) */
    engine_finish finish;
    size_t calls;
} gen_out;

static void gen_out_free(gen_out *g) { tok_bytes_free(&g->text); tok_bytes_free(&g->final); tok_ids_free(&g->ids); }

typedef struct {
    size_t nseq, max_new;
    infer_sampling samp;
    const char *const *stop_strs; size_t n_stop_strs;
    int use_tools;
    int stream;          /* pass o->on_token */
    int constrained;     /* an answer: o->grammar applies */
} gen_cfg;

/* After a segment that stopped at <|tool_call_end|>: runs the call and builds the ids to feed (the pending
 * <|tool_call_end|>, then <|tool_result|> result <|tool_result_end|>). Returns the number of ids, 0 when
 * there is no room left in the context (the reply then ends here). */
static size_t tool_turn(const strategy_opts *o, gen_out *g, size_t seg_start, size_t cache_len, tok_ids *ext) {
    size_t start = seg_start;
    for (size_t i = g->ids.n - 1; i-- > seg_start;)   /* the last <|tool_call|> of this segment before the stop */
        if (g->ids.ids[i] == o->sp->tool_call) { start = i + 1; break; }
    tok_bytes call = {0};
    gk_err derr;
    tok_decode(o->tok, g->ids.ids + start, g->ids.n - 1 - start, &call, &derr);
    char *res = tools_call(o->tools, call.n ? (const char *)call.data : "", call.n, NULL);
    g->calls++;
    if (o->on_tool) {
        char *c = bytes_str(&call);
        o->on_tool(o->tool_ctx, c, res);
        free(c);
    }
    size_t text_before = g->text.n;
    ext->n = 0;
    tok_ids_push(ext, o->sp->tool_call_end);
    tok_ids_push(ext, o->sp->tool_result);
    tok_encode(o->tok, res, strlen(res), 0, ext);   /* no special tokens: a result can never write turn markers */
    tok_ids_push(ext, o->sp->tool_result_end);
    bytes_add(&g->text, TOK_TOOL_CALL_END TOK_TOOL_RESULT);
    bytes_add(&g->text, res);
    bytes_add(&g->text, TOK_TOOL_RESULT_END);
    g->final.n = 0;
    free(res);
    tok_bytes_free(&call);
    if (cache_len + ext->n + 1 > engine_max_len(o->e)) {   /* no room to read the result: the reply ends unanswered */
        g->text.n = text_before;
        return 0;
    }
    return ext->n;
}

/* Runs one request of c->nseq samples of prompt to the end, through any tool calls. out[nseq] zeroed by the
 * caller. Returns the tokens generated, or -1 with err. */
static long gen_run(const strategy_opts *o, const gen_cfg *c, const int32_t *prompt, size_t n_prompt, gen_out *out,
                    gk_err *err) {
    int tools = c->use_tools && o->tools && o->sp;
    engine_req_opts ro;
    engine_req_opts_default(&ro);
    ro.n = c->nseq;
    ro.keep = tools;
    ro.gen.max_new = c->max_new;
    ro.gen.samp = c->samp;
    ro.gen.stop_strs = c->stop_strs; ro.gen.n_stop_strs = c->n_stop_strs;
    ro.gen.cancel = o->cancel;
    if (c->constrained) ro.gen.grammar = o->grammar;
    if (c->stream) { ro.gen.on_token = o->on_token; ro.gen.ctx = o->ctx; }
    if (tools) ro.gen.stop_ids[ro.gen.n_stop_ids++] = o->sp->tool_call_end;
    engine_req_id id = engine_admit(o->e, prompt, n_prompt, &ro, err);
    if (id < 0) return -1;
    long tokens = 0;
    engine_seq *res = gk_calloc(c->nseq, sizeof *res);
    int32_t **ext = gk_calloc(c->nseq, sizeof *ext);
    size_t *n_ext = gk_calloc(c->nseq, sizeof *n_ext);
    size_t *cache = gk_calloc(c->nseq, sizeof *cache);   /* tokens in each sequence's cache */
    for (size_t k = 0; k < c->nseq; k++) cache[k] = n_prompt;
    tok_ids tmp = {0};
    for (;;) {
        while (engine_req_status(o->e, id) != ENGINE_REQ_DONE) engine_step(o->e);
        if (engine_take_result(o->e, id, res, err)) { tokens = -1; break; }
        size_t more = 0;
        for (size_t k = 0; k < c->nseq; k++) {
            gen_out *g = &out[k];
            n_ext[k] = 0;
            if (!res[k].n && !res[k].text) continue;   /* not extended this round */
            size_t seg_start = g->ids.n;
            for (size_t i = 0; i < res[k].n; i++) tok_ids_push(&g->ids, res[k].ids[i]);
            tokens += (long)res[k].n;
            if (res[k].text) { tok_bytes_append(&g->text, res[k].text, res[k].text_len); tok_bytes_append(&g->final, res[k].text, res[k].text_len); }
            g->finish = res[k].finish;
            cache[k] += res[k].n ? res[k].n - 1 : 0;
            int paused = tools && res[k].finish == ENGINE_FINISH_STOP_TOKEN && res[k].n &&
                         res[k].ids[res[k].n - 1] == o->sp->tool_call_end && g->calls < STRATEGY_MAX_TOOL_CALLS;
            if (paused && tool_turn(o, g, seg_start, cache[k], &tmp)) {
                free(ext[k]);
                ext[k] = gk_malloc(tmp.n * sizeof(int32_t));
                memcpy(ext[k], tmp.ids, tmp.n * sizeof(int32_t));
                n_ext[k] = tmp.n;
                cache[k] += tmp.n;
                more++;
            }
            engine_seq_free(&res[k]);
        }
        if (!more || (o->cancel && *o->cancel)) break;
        if (engine_extend(o->e, id, (const int32_t *const *)ext, n_ext, err)) { tokens = -1; break; }
    }
    if (tools) engine_release(o->e, id, NULL);
    for (size_t k = 0; k < c->nseq; k++) { engine_seq_free(&res[k]); free(ext[k]); }
    free(res); free(ext); free(n_ext); free(cache);
    tok_ids_free(&tmp);
    return tokens;
}

/* ---------------------------------------------------------------- one answer (greedy, fewshot, cot) */

static const char *const NL_STOP[] = {"\n"};
static const char *const BASE_STOP[] = {"\nQ:", "\n\n"};

/* One generation of the task's prompt (plus prefix) with nseq samples; the gen_cfg a strategy starts from. */
static void cfg_for(const strategy_opts *o, gen_cfg *c, size_t nseq, int greedy, int cot) {
    memset(c, 0, sizeof *c);
    c->nseq = nseq;
    c->max_new = o->max_new;
    c->samp = o->samp;
    if (greedy) c->samp.temperature = 0;
    c->use_tools = 1;
    c->constrained = 1;
    if (!o->sp) {   /* a base model answers on one line; reasoning may take a paragraph */
        c->stop_strs = cot ? BASE_STOP : NL_STOP;
        c->n_stop_strs = cot ? 2 : 1;
    }
}

static int fits(const strategy_opts *o, size_t n, gk_err *err) {
    if (n + 1 >= engine_max_len(o->e))
        return gk_errf(err, "the prompt is %zu tokens but the context holds %zu", n, engine_max_len(o->e));
    return 0;
}

static void set_answer(const strategy_opts *o, const char *expected, strategy_result *r) {
    r->found = strategy_extract(&o->rule, expected, r->final, r->extracted, sizeof r->extracted) == 1;
    if (!r->found && strcmp(r->final, r->text))
        r->found = strategy_extract(&o->rule, expected, r->text, r->extracted, sizeof r->extracted) == 1;
}

static int solve_single(const strategy_spec *sp, const strategy_opts *o, const char *prompt, const char *expected,
                        size_t task, strategy_result *r, gk_err *err) {
    tok_ids ids = {0};
    task_prompt(sp, o, prompt, task, NULL, &ids);
    gen_cfg c;
    cfg_for(o, &c, 1, 1, sp->kind == STRAT_COT);
    c.stream = 1;
    gen_out g = {0};
    long t = fits(o, ids.n, err) ? -1 : gen_run(o, &c, ids.ids, ids.n, &g, err);
    tok_ids_free(&ids);
    if (t < 0) { gen_out_free(&g); return -1; }
    r->tokens += (size_t)t;
    r->tool_calls += g.calls;
    r->text = bytes_str(&g.text);
    r->final = bytes_str(&g.final);
    r->confidence = 1;
    gen_out_free(&g);
    set_answer(o, expected, r);
    return 0;
}

/* ---------------------------------------------------------------- self-consistency */

static int solve_sc(const strategy_spec *sp, const strategy_opts *o, const char *prompt, const char *expected,
                    size_t task, strategy_result *r, gk_err *err) {
    size_t N = (size_t)sp->n;
    if (N > engine_max_seqs(o->e)) return gk_errf(err, "sc:%zu needs %zu sequences but the engine holds %zu", N, N, engine_max_seqs(o->e));
    tok_ids ids = {0};
    strategy_spec cot = *sp;
    cot.kind = STRAT_GREEDY;   /* the plain prompt: voting is over the model's usual answers */
    task_prompt(&cot, o, prompt, task, NULL, &ids);
    gen_cfg c;
    cfg_for(o, &c, N, 0, 0);
    c.samp.seed = o->samp.seed ^ (0x9E3779B97F4A7C15ULL * (uint64_t)(task + 1));
    gen_out *g = gk_calloc(N, sizeof *g);
    long t = fits(o, ids.n, err) ? -1 : gen_run(o, &c, ids.ids, ids.n, g, err);
    tok_ids_free(&ids);
    if (t < 0) { for (size_t k = 0; k < N; k++) gen_out_free(&g[k]); free(g); return -1; }
    r->tokens += (size_t)t;
    /* votes: sample k's extracted answer; equal answers (as numbers or text) pool their votes */
    char (*ans)[STRATEGY_ANSWER_MAX] = gk_calloc(N, sizeof *ans);
    int *has = gk_calloc(N, sizeof *has);
    for (size_t k = 0; k < N; k++) {
        char *fin = bytes_str(&g[k].final);
        has[k] = strategy_extract(&o->rule, expected, fin, ans[k], STRATEGY_ANSWER_MAX) == 1;
        free(fin);
        r->tool_calls += g[k].calls;
    }
    size_t best = 0, best_votes = 0, answered = 0;
    for (size_t k = 0; k < N; k++) {
        if (!has[k]) continue;
        answered++;
        size_t v = 0;
        for (size_t j = 0; j < N; j++) v += has[j] && strategy_answer_equal(ans[j], ans[k]);
        if (v > best_votes) { best_votes = v; best = k; }   /* ties: the earliest sample */
    }
    r->text = bytes_str(&g[best].text);
    r->final = bytes_str(&g[best].final);
    r->found = best_votes > 0;
    if (r->found) snprintf(r->extracted, sizeof r->extracted, "%s", ans[best]);
    r->confidence = (double)best_votes / (double)N;
    (void)answered;
    for (size_t k = 0; k < N; k++) gen_out_free(&g[k]);
    free(g); free(ans); free(has);
    return 0;
}

/* ---------------------------------------------------------------- tree of thought */

/* log p(yes) - log p(no) of the model's next token after a question about the partial solution: the value of
 * a node. Yes/no each pool the probabilities of their capitalised and lower-case first tokens. */
static double value_score(const strategy_opts *o, const char *prompt, const char *steps, gk_err *err, int *bad) {
    size_t L = strlen(prompt) + strlen(steps) + 160;
    char *q = gk_malloc(L);
    tok_ids ids = {0};
    if (o->sp) {
        snprintf(q, L, "Question: %s\nProposed solution:\n%s\nIs this correct so far? Answer yes or no.", prompt, steps);
        chat_conv c = {0};
        chat_conv_add(&c, CHAT_USER, q);
        chat_tokens t = {0};
        chat_render(o->tok, o->sp, &c, 1, &t);
        for (size_t i = 0; i < t.n; i++) tok_ids_push(&ids, t.ids[i]);
        chat_tokens_free(&t); chat_conv_free(&c);
    } else {
        snprintf(q, L, "Q: %s\nA: %s\nIs this correct so far (yes or no)?", prompt, steps);
        tok_encode(o->tok, q, strlen(q), 0, &ids);
    }
    free(q);
    size_t V = (size_t)engine_model(o->e)->cfg.vocab_size;
    float *lg = gk_malloc(V * sizeof(float));
    double s = 0;
    size_t keep = ids.n < engine_max_len(o->e) ? ids.n : engine_max_len(o->e);
    engine_reset(o->e, 0);
    if (engine_feed(o->e, 0, ids.ids + (ids.n - keep), keep, lg, err)) *bad = 1;
    else {
        const char *yes[] = {"Yes", "yes", " Yes", " yes"}, *no[] = {"No", "no", " No", " no"};
        double py = 0, pn = 0;
        for (int i = 0; i < 4; i++) {
            tok_ids a = {0}, b = {0};
            tok_encode(o->tok, yes[i], strlen(yes[i]), 0, &a);
            tok_encode(o->tok, no[i], strlen(no[i]), 0, &b);
            if (a.n) py += exp(infer_logprob(lg, V, a.ids[0]));
            if (b.n) pn += exp(infer_logprob(lg, V, b.ids[0]));
            tok_ids_free(&a); tok_ids_free(&b);
        }
        s = log(py + 1e-30) - log(pn + 1e-30);
    }
    engine_reset(o->e, 0);
    free(lg);
    tok_ids_free(&ids);
    return s;
}

typedef struct { char *steps; double score; int done; } tot_node;

static int node_cmp(const void *a, const void *b) {
    const tot_node *x = a, *y = b;
    return (x->score < y->score) - (x->score > y->score);   /* best first; qsort ties keep no order: see below */
}

/* K proposals for the next step (one line) of node, each scored; appended to kids. */
static int tot_expand(const strategy_spec *sp, const strategy_opts *o, const char *prompt, size_t task, const tot_node *node,
                      uint64_t seed, tot_node *kids, size_t *nk, strategy_result *r, gk_err *err) {
    tok_ids ids = {0};
    task_prompt(sp, o, prompt, task, node->steps, &ids);
    gen_cfg c;
    cfg_for(o, &c, (size_t)sp->k, 0, 1);
    c.use_tools = 0;
    c.constrained = 0;   /* a step of reasoning, not the answer */
    c.stop_strs = NL_STOP; c.n_stop_strs = 1;
    c.max_new = o->max_new < 64 ? o->max_new : 64;
    c.samp.seed = seed;
    gen_out *g = gk_calloc((size_t)sp->k, sizeof *g);
    long t = fits(o, ids.n, err) ? -1 : gen_run(o, &c, ids.ids, ids.n, g, err);
    tok_ids_free(&ids);
    int rc = t < 0 ? -1 : 0;
    if (!rc) r->tokens += (size_t)t;
    for (int k = 0; k < sp->k && !rc; k++) {
        tot_node *x = &kids[(*nk)++];
        size_t a = strlen(node->steps);
        x->steps = gk_malloc(a + g[k].text.n + 2);
        memcpy(x->steps, node->steps, a);
        if (g[k].text.n) memcpy(x->steps + a, g[k].text.data, g[k].text.n);
        x->done = g[k].finish != ENGINE_FINISH_STOP_STRING;   /* ended its reply, not just a line */
        x->steps[a + g[k].text.n] = x->done ? 0 : '\n';
        x->steps[a + g[k].text.n + 1] = 0;
        int bad = 0;
        x->score = value_score(o, prompt, x->steps, err, &bad);
        if (bad) rc = -1;
    }
    for (int k = 0; k < sp->k; k++) gen_out_free(&g[k]);
    free(g);
    return rc;
}

static int solve_tot(const strategy_spec *sp, const strategy_opts *o, const char *prompt, const char *expected,
                     size_t task, strategy_result *r, gk_err *err) {
    if ((size_t)sp->k > engine_max_seqs(o->e)) return gk_errf(err, "tot with %d proposals needs %d sequences but the engine holds %zu", sp->k, sp->k, engine_max_seqs(o->e));
    size_t cap = (size_t)sp->beam * (size_t)sp->k + (size_t)sp->beam;
    tot_node *beam = gk_calloc(cap, sizeof *beam), *kids = gk_calloc(cap, sizeof *kids);
    size_t nb = 1, nk = 0;
    beam[0].steps = dup_s("");
    int rc = 0;
    for (int d = 0; d < sp->depth && !rc; d++) {
        nk = 0;
        for (size_t b = 0; b < nb && !rc; b++) {
            if (beam[b].done) { kids[nk++] = beam[b]; beam[b].steps = NULL; continue; }   /* finished paths stay */
            uint64_t seed = o->samp.seed ^ (0x9E3779B97F4A7C15ULL * (uint64_t)(task * 131 + (size_t)d * 17 + b + 1));
            rc = tot_expand(sp, o, prompt, task, &beam[b], seed, kids, &nk, r, err);
        }
        for (size_t b = 0; b < nb; b++) { free(beam[b].steps); beam[b].steps = NULL; }
        /* stable best-first order: qsort is not stable, so sort by (score, index) through a tie-free key */
        for (size_t i = 0; i < nk; i++) kids[i].score -= 1e-12 * (double)i;
        qsort(kids, nk, sizeof *kids, node_cmp);
        nb = nk < (size_t)sp->beam ? nk : (size_t)sp->beam;
        for (size_t i = 0; i < nk; i++) { if (i < nb) beam[i] = kids[i]; else free(kids[i].steps); }
        int all_done = 1;
        for (size_t i = 0; i < nb; i++) all_done &= beam[i].done;
        if (all_done) break;
    }
    if (!rc) {   /* finish the best path greedily (with tools) unless it has ended */
        if (beam[0].done) { r->text = dup_s(beam[0].steps); r->final = dup_s(beam[0].steps); }
        else {
            tok_ids ids = {0};
            task_prompt(sp, o, prompt, task, beam[0].steps, &ids);
            gen_cfg c;
            cfg_for(o, &c, 1, 1, 1);
            gen_out g = {0};
            long t = fits(o, ids.n, err) ? -1 : gen_run(o, &c, ids.ids, ids.n, &g, err);
            if (t < 0) rc = -1;
            else {
                r->tokens += (size_t)t;
                r->tool_calls += g.calls;
                tok_bytes all = {0};
                bytes_add(&all, beam[0].steps);
                tok_bytes_append(&all, g.text.data, g.text.n);
                r->text = bytes_str(&all);
                r->final = g.calls ? bytes_str(&g.final) : bytes_str(&all);
                tok_bytes_free(&all);
            }
            gen_out_free(&g);
            tok_ids_free(&ids);
        }
    }
    for (size_t i = 0; i < nb; i++) free(beam[i].steps);
    free(beam); free(kids);
    if (rc) return -1;
    r->confidence = 1;
    set_answer(o, expected, r);
    return 0;
}

/* ---------------------------------------------------------------- reflection */

#define CHECK_Q "Check your answer: is it correct and does it do what was asked? Reply yes or no."
#define REVISE_Q "Then give a corrected answer."

/* A follow-up in a conversation about the task: greedy, with tools; returns the final segment (malloc'd). */
static char *reflect_turn(const strategy_opts *o, const char *prompt, char *const *turns, size_t nturns, size_t max_new,
                          int use_tools, strategy_result *r, int *no_room, gk_err *err) {
    tok_ids ids = {0};
    if (o->sp) {
        chat_conv c = {0};
        if (o->system) chat_conv_add(&c, CHAT_SYSTEM, o->system);
        chat_conv_add(&c, CHAT_USER, prompt);
        for (size_t i = 0; i < nturns; i++) chat_conv_add(&c, i % 2 ? CHAT_USER : CHAT_ASSISTANT, turns[i]);
        chat_tokens t = {0};
        chat_render(o->tok, o->sp, &c, 1, &t);
        for (size_t i = 0; i < t.n; i++) tok_ids_push(&ids, t.ids[i]);
        chat_tokens_free(&t); chat_conv_free(&c);
    } else {
        tok_bytes d = {0};
        bytes_add(&d, "Q: "); bytes_add(&d, prompt);
        for (size_t i = 0; i < nturns; i++) { bytes_add(&d, i % 2 ? "\nQ: " : "\nA: "); bytes_add(&d, turns[i]); }
        bytes_add(&d, "\nA:");
        tok_encode(o->tok, d.data, d.n, 0, &ids);
        tok_bytes_free(&d);
    }
    gen_cfg c;
    cfg_for(o, &c, 1, 1, 0);
    c.max_new = max_new;
    c.use_tools = use_tools;
    c.constrained = use_tools;   /* revisions are answers; the short verdict turns are not */
    gen_out g = {0};
    if (ids.n + (max_new < 16 ? max_new : 16) > engine_max_len(o->e)) {   /* the conversation has outgrown the context: stop reflecting */
        *no_room = 1;
        tok_ids_free(&ids);
        return NULL;
    }
    long t = gen_run(o, &c, ids.ids, ids.n, &g, err);
    tok_ids_free(&ids);
    char *s = NULL;
    if (t >= 0) {
        r->tokens += (size_t)t;
        r->tool_calls += g.calls;
        s = bytes_str(&g.final);
    }
    gen_out_free(&g);
    return s;
}

static int solve_reflect(const strategy_spec *sp, const strategy_opts *o, const char *prompt, const char *expected,
                         size_t task, strategy_result *r, gk_err *err) {
    strategy_spec g = *sp;
    g.kind = STRAT_GREEDY;
    if (solve_single(&g, o, prompt, expected, task, r, err)) return -1;
    char *turns[4] = {0};
    for (int round = 0; round < sp->rounds; round++) {
        turns[0] = dup_s(r->final);
        turns[1] = dup_s(CHECK_Q);
        int no_room = 0;
        char *verdict = reflect_turn(o, prompt, turns, 2, 8, 0, r, &no_room, err);
        if (!verdict) { for (int i = 0; i < 2; i++) free(turns[i]); if (no_room) break; return -1; }
        const char *v = verdict;
        while (*v == ' ' || *v == '\n') v++;
        int ok = !strncasecmp(v, "yes", 3);
        if (ok) { free(verdict); for (int i = 0; i < 2; i++) free(turns[i]); break; }
        turns[2] = verdict;
        turns[3] = dup_s(REVISE_Q);
        char *revised = reflect_turn(o, prompt, turns, 4, o->max_new, 1, r, &no_room, err);
        for (int i = 0; i < 4; i++) { free(turns[i]); turns[i] = NULL; }
        if (!revised) { if (no_room) break; return -1; }
        free(r->final); free(r->text);
        r->final = revised;
        r->text = dup_s(revised);
    }
    set_answer(o, expected, r);
    return 0;
}

/* ---------------------------------------------------------------- entry */

int strategy_solve(const strategy_spec *sp, const strategy_opts *o, const char *prompt, const char *expected,
                   size_t task, strategy_result *r, gk_err *err) {
    memset(r, 0, sizeof *r);
    double t0 = gk_now();
    int rc;
    switch (sp->kind) {
    case STRAT_SC:      rc = solve_sc(sp, o, prompt, expected, task, r, err); break;
    case STRAT_TOT:     rc = solve_tot(sp, o, prompt, expected, task, r, err); break;
    case STRAT_REFLECT: rc = solve_reflect(sp, o, prompt, expected, task, r, err); break;
    default:            rc = solve_single(sp, o, prompt, expected, task, r, err); break;
    }
    r->seconds = gk_now() - t0;
    if (rc) { strategy_result_free(r); return rc; }   /* nothing to free after a failure */
    if (!r->text) r->text = dup_s("");
    if (!r->final) r->final = dup_s("");
    return 0;
}
