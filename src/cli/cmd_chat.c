/* cmd_chat.c: gptkit chat — talk to a chat model. Interactive (multi-turn, streamed, /reset, /system, /temp;
 * Ctrl-C interrupts a reply, not the program) or one-shot with -p (stdout = the reply only). */
#include "cli/cli.h"
#include "index/index.h"
#include "core/core.h"
#include "data/data.h"
#include "eval/eval.h"
#include "infer/infer.h"
#include "infer/strategy.h"
#include "tools/tools.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *USAGE =
"usage: gptkit chat --model DIR [-p QUESTION] [options]\n"
"\n"
"Talks to a chat model (an SFT or RLHF checkpoint; the chat format is in docs/chat.md). The tokenizer recorded\n"
"in the checkpoint is used. Interactively, type a message and the reply streams back; commands:\n"
"  /reset          forget the conversation (keeps the system prompt)\n"
"  /system TEXT    set the system prompt (and reset)\n"
"  /temp X         set the sampling temperature\n"
"  /quit           exit (or Ctrl-D). Ctrl-C stops a reply that is being written.\n"
"With -p, answers one question and exits; stdout holds the reply only.\n"
"\n"
"  --model DIR           checkpoint directory (or a LoRA adapter directory: its base with the adapter on)\n"
"  --adapter DIR         a LoRA adapter (PEFT layout) on top of --model, unmerged (docs/lora.md)\n"
"  --tokenizer PATH      override the tokenizer recorded in the checkpoint\n"
"  -p, --prompt TEXT     answer once and exit\n"
"  --system TEXT         system prompt\n"
"  --max-new N           longest reply in tokens (default 256)\n"
"  --temperature T       default 0.7 interactively, 0 (greedy, reproducible) with -p\n"
"  --top-k K  --top-p P  --min-p P  --repetition-penalty R  --frequency-penalty F  --presence-penalty P\n"
"  --seed S              sampling seed (default 1337)\n"
CLI_CONSTRAINT_HELP
"  --tools LIST          tools the model may call: calc, python, retrieve (with --retrieve; calls are shown on\n"
"                        stderr as they happen)\n"
"  --strategy S          greedy (default) | cot | sc:N | tot:K,B,D | reflect:R (docs/strategies.md)\n"
"  --retrieve INDEX.db   put the top chunks of a retrieval index (gptkit index build) before each question\n"
"  --retrieve-k K        how many chunks at most (default 3)\n"
"  --retrieve-budget N   chat-model tokens the chunks may take at most (default: a quarter of the context)\n"
"  -q, --quiet           no log lines on stderr\n";

static volatile int g_generating = 0;
static volatile int g_cancel = 0;

static void on_sigint(int sig) {
    (void)sig;
    if (g_generating) { g_cancel = 1; return; }
    static const char msg[] = "\n(type /quit or press Ctrl-D to exit)\n";
    ssize_t r = write(STDERR_FILENO, msg, sizeof msg - 1);
    (void)r;
}

static int stream_out(void *ctx, size_t seq, int32_t id, const char *text, size_t len) {
    (void)ctx; (void)seq; (void)id;
    fwrite(text, 1, len, stdout);
    fflush(stdout);
    return 0;
}

typedef struct {
    eval_model em;             /* model, tokenizer, chat specials, a one-sequence engine */
    engine_gen_opts o;
    /* tools and strategies (issue 15): replies go through strategy_solve when either is set */
    tool_registry *tools;
    strategy_spec spec;
    int use_strategy;
    constrain_vocab *cv;       /* --grammar / --json-schema / --regex: every reply constrained */
    constrain *cons;
} chat_session;

/* Renders conv with a generation prompt; drops the oldest non-system turns while it does not fit with room
 * for a reply. Returns 0, or -1 if even the last message alone does not fit. */
static int render_fitting(chat_session *s, chat_conv *c, chat_tokens *r, int *dropped, gk_err *err) {
    size_t ctx = engine_max_len(s->em.e), room = s->o.max_new < ctx / 2 ? s->o.max_new : ctx / 2;
    *dropped = 0;
    for (;;) {
        r->n = 0;
        chat_render(s->em.tok, &s->em.sp, c, 1, r);
        if (r->n + room <= ctx) return 0;
        /* first non-system message, and every tool/assistant continuation glued to it */
        size_t k = 0;
        while (k < c->n && c->msgs[k].role == CHAT_SYSTEM) k++;
        if (k + 1 >= c->n) {
            if (r->n < ctx) return 0;   /* no room to spare, but it fits */
            return gk_errf(err, "the message is %zu tokens with its chat markup but the model's context holds %zu", r->n, ctx);
        }
        size_t j = k + 1;
        while (j < c->n && c->msgs[j].role != CHAT_USER) j++;
        for (size_t i = k; i < j; i++) free(c->msgs[i].content);
        memmove(c->msgs + k, c->msgs + j, (c->n - j) * sizeof *c->msgs);
        c->n -= j - k;
        (*dropped)++;
    }
}

static void show_tool(void *ctx, const char *call, const char *result) {
    (void)ctx;
    fprintf(stderr, "\n[tool] %s\n[result] %s\n", call, result);
}

/* A reply through a strategy and/or tools: the earlier turns as history, the last user message as the task. */
static int reply_strategy(chat_session *s, chat_conv *c, int *interrupted, gk_err *err) {
    chat_conv hist = {0};
    const char *system = NULL;
    for (size_t i = 0; i + 1 < c->n; i++) {
        if (c->msgs[i].role == CHAT_SYSTEM) system = c->msgs[i].content;
        else chat_conv_add(&hist, c->msgs[i].role, c->msgs[i].content);
    }
    strategy_opts so;
    strategy_opts_default(&so);
    so.e = s->em.e; so.tok = s->em.tok; so.sp = &s->em.sp; so.tools = s->tools;
    so.system = system; so.history = &hist;
    so.max_new = s->o.max_new;
    so.samp = s->o.samp;
    /* streamed only without tools and with one answer: otherwise the reply is printed when it is final (tool
     * calls and results go to stderr as they happen) */
    int streamed = !s->tools && s->spec.kind != STRAT_SC && s->spec.kind != STRAT_TOT;
    if (s->spec.kind == STRAT_SC || s->spec.kind == STRAT_TOT) { if (so.samp.temperature == 0) so.samp.temperature = 0.7f; }
    if (streamed) { so.on_token = s->o.on_token; so.ctx = s->o.ctx; }
    so.on_tool = show_tool;
    so.cancel = s->o.cancel;
    so.grammar = s->cons;
    strategy_result r;
    g_cancel = 0; g_generating = 1;
    int rc = strategy_solve(&s->spec, &so, c->msgs[c->n - 1].content, NULL, 0, &r, err);
    g_generating = 0;
    chat_conv_free(&hist);
    if (rc) return -1;
    if (!streamed) {
        fputs(r.final, stdout);
        if (s->spec.kind == STRAT_SC) fprintf(stderr, "\n(agreement %.0f%%)", 100 * r.confidence);
    }
    *interrupted = g_cancel;
    chat_conv_add(c, CHAT_ASSISTANT, r.final);
    strategy_result_free(&r);
    return 0;
}

/* Generates the assistant's reply to conv, streaming it to stdout; appends it to conv. */
static int reply(chat_session *s, chat_conv *c, int *interrupted, gk_err *err) {
    if (s->use_strategy) return reply_strategy(s, c, interrupted, err);
    chat_tokens r = {0};
    int dropped;
    if (render_fitting(s, c, &r, &dropped, err)) { chat_tokens_free(&r); return -1; }
    if (dropped) gk_log("(dropped the %d oldest exchange%s to fit the context)\n", dropped, dropped > 1 ? "s" : "");
    engine_seq q;
    g_cancel = 0; g_generating = 1;
    int rc = engine_generate(s->em.e, r.ids, r.n, 1, &s->o, &q, err);
    g_generating = 0;
    chat_tokens_free(&r);
    if (rc) return -1;
    *interrupted = q.finish == ENGINE_FINISH_CANCELLED;
    chat_conv_add(c, CHAT_ASSISTANT, q.text ? q.text : "");
    engine_seq_free(&q);
    return 0;
}

/* The user's turn, with retrieved sources before it when --retrieve is on (index_augment_question). */
static int rag_add_user(index_db *rag, chat_session *s, chat_conv *c, const char *text, size_t k, size_t budget, gk_err *err) {
    if (!rag) { chat_conv_add(c, CHAT_USER, text); return 0; }
    char *t = index_augment_question(rag, s->em.tok, text, k, budget, err);
    if (!t) return -1;
    chat_conv_add(c, CHAT_USER, t);
    free(t);
    return 0;
}

int cmd_chat(int argc, char **argv) {
    cli_args a;
    cli_args_init(&a, argc, argv, USAGE);
    const char *f, *model_dir = NULL, *tok_path = NULL, *question = NULL, *system = NULL;
    chat_session s;
    memset(&s, 0, sizeof s);
    engine_gen_opts_default(&s.o);
    s.o.max_new = 256;
    int temp_set = 0;
    const char *tools = NULL, *strategy = NULL, *adapter = NULL;
    const char *rag_db = NULL; size_t rag_k = 3, rag_budget = 0; index_db *rag = NULL;
    cli_constraint cc;
    cli_constraint_init(&cc);
    while ((f = cli_next(&a))) {
        if (cli_is(f, "--model")) model_dir = cli_str(&a, f);
        else if (cli_is(f, "--adapter")) adapter = cli_str(&a, f);
        else if (cli_is(f, "--tokenizer")) tok_path = cli_str(&a, f);
        else if (cli_is(f, "-p", "--prompt")) question = cli_str(&a, f);
        else if (cli_is(f, "--system")) system = cli_str(&a, f);
        else if (cli_is(f, "--max-new")) { long v = cli_long(&a, f); if (v < 1) cli_usage_error(&a, "--max-new must be >= 1"); s.o.max_new = (size_t)v; }
        else if (cli_sampling_flag(&a, f, &s.o.samp)) temp_set |= cli_is(f, "--temperature");
        else if (cli_constraint_flag(&a, f, &cc)) {}
        else if (cli_is(f, "-q", "--quiet")) gk_verbose = 0;
        else if (cli_is(f, "--tools")) tools = cli_str(&a, f);
        else if (cli_is(f, "--strategy")) strategy = cli_str(&a, f);
        /* retrieval (issue 16): --retrieve INDEX.db [--retrieve-k K] [--retrieve-budget N] */
        else if (cli_is(f, "--retrieve")) rag_db = cli_str(&a, f);
        else if (cli_is(f, "--retrieve-k")) { long v = cli_long(&a, f); if (v < 1 || v > 100) cli_usage_error(&a, "--retrieve-k must be in [1, 100]"); rag_k = (size_t)v; }
        else if (cli_is(f, "--retrieve-budget")) { long v = cli_long(&a, f); if (v < 1) cli_usage_error(&a, "--retrieve-budget must be >= 1"); rag_budget = (size_t)v; }
        else cli_unknown(&a, f);
    }
    if (!model_dir) cli_usage_error(&a, "--model DIR is required");
    if (strategy || tools) {
        gk_err e2;
        s.use_strategy = 1;
        if (strategy_parse(strategy ? strategy : "greedy", &s.spec, &e2)) cli_usage_error(&a, "--strategy: %s", e2.msg);
        if (s.spec.kind == STRAT_FEWSHOT) cli_usage_error(&a, "--strategy: fewshot needs examples; use gptkit solve --examples");
        s.tools = tools ? tools_new() : NULL;
        if (tools && ((rag_db && index_tool_register(s.tools, NULL, rag_k, &e2)) || tools_enable(s.tools, tools, &e2)))
            cli_usage_error(&a, "%s", e2.msg);
    }
    if (!temp_set) s.o.samp.temperature = question ? 0.0f : 0.7f;
    gk_err err;
    if (infer_sampling_validate(&s.o.samp, &err)) cli_usage_error(&a, "%s", err.msg);

    int rc = 1;
    chat_conv c = {0};
    if (rag_db && !(rag = index_open(rag_db, NULL, &err))) goto fail;
    if (rag && s.tools && index_tool_register(s.tools, rag, rag_k, &err)) goto fail;   /* now on the open index */
    size_t seqs = s.spec.kind == STRAT_SC ? (size_t)s.spec.n : s.spec.kind == STRAT_TOT ? (size_t)s.spec.k : 1;
    if (eval_model_open(&s.em, model_dir, tok_path, 1, 1, seqs, &err)) goto fail;
    if (adapter && eval_model_add_adapter(&s.em, adapter, &err)) goto fail;
    if (cli_constraint_build(&cc, s.em.tok, &s.cv, &s.cons, &err)) goto fail;
    s.o.grammar = s.cons;
    s.o.cancel = &g_cancel;
    s.o.on_token = stream_out;
    if (system) chat_conv_add(&c, CHAT_SYSTEM, system);
    if (rag && !rag_budget) rag_budget = engine_max_len(s.em.e) / 4;

    if (question) {
        if (rag_add_user(rag, &s, &c, question, rag_k, rag_budget, &err)) goto fail;
        int intr;
        if (reply(&s, &c, &intr, &err)) goto fail;
        printf("\n");
        fflush(stdout);
        rc = 0;
        goto fail;
    }

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sigaction(SIGINT, &sa, NULL);
    int tty = isatty(STDIN_FILENO);
    if (tty) fprintf(stderr, "gptkit chat: %s (%d layers, width %d). /reset, /system TEXT, /temp X, /quit; Ctrl-C stops a reply.\n",
                     model_dir, s.em.m->cfg.n_layer, s.em.m->cfg.n_embd);
    char *line = NULL; size_t cap = 0;
    for (;;) {
        if (tty) { printf("you> "); fflush(stdout); }
        ssize_t n = getline(&line, &cap, stdin);
        if (n < 0) break;
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r')) line[--n] = 0;
        if (n == 0) continue;
        if (!strcmp(line, "/quit") || !strcmp(line, "/exit")) break;
        if (!strcmp(line, "/reset")) {
            size_t k = 0;
            while (k < c.n && c.msgs[k].role == CHAT_SYSTEM) k++;
            for (size_t i = k; i < c.n; i++) free(c.msgs[i].content);
            c.n = k;
            fprintf(stderr, "(conversation reset)\n");
            continue;
        }
        if (!strncmp(line, "/system", 7) && (line[7] == ' ' || line[7] == 0)) {
            chat_conv_clear(&c);
            const char *txt = line[7] ? line + 8 : "";
            if (*txt) chat_conv_add(&c, CHAT_SYSTEM, txt);
            fprintf(stderr, "(system prompt %s; conversation reset)\n", *txt ? "set" : "cleared");
            continue;
        }
        if (!strncmp(line, "/temp", 5) && (line[5] == ' ' || line[5] == 0)) {
            double t;
            if (gk_parse_double(line + 5 + (line[5] == ' '), &t) || t < 0) { fprintf(stderr, "(usage: /temp X with X >= 0)\n"); continue; }
            s.o.samp.temperature = (float)t;
            fprintf(stderr, "(temperature %g)\n", t);
            continue;
        }
        if (line[0] == '/' && line[1] != '/' && line[1] != ' ') {
            fprintf(stderr, "(unknown command %s; commands: /reset, /system TEXT, /temp X, /quit)\n", line);
            continue;
        }
        if (rag_add_user(rag, &s, &c, line, rag_k, rag_budget, &err)) { fprintf(stderr, "gptkit chat: %s\n", err.msg); continue; }
        if (tty) { printf("assistant> "); fflush(stdout); }
        int intr = 0;
        s.o.samp.seed++;
        if (reply(&s, &c, &intr, &err)) {
            fprintf(stderr, "gptkit chat: %s\n", err.msg);
            free(c.msgs[--c.n].content);   /* forget the message that did not fit */
            continue;
        }
        printf("\n");
        if (intr) fprintf(stderr, "(interrupted)\n");
        fflush(stdout);
    }
    free(line);
    rc = 0;
fail:
    if (rc) fprintf(stderr, "gptkit chat: %s\n", err.msg);
    chat_conv_free(&c);
    tools_free(s.tools);
    index_close(rag);
    eval_model_close(&s.em);
    constrain_free(s.cons);
    constrain_vocab_free(s.cv);
    return rc;
}
