/* strategy: getting better answers out of a trained model at inference time — the talk's prompting and search
 * strategies as a library over the engine, with tools called through the chat format's tool tokens.
 *
 *   greedy       one answer, temperature 0
 *   fewshot:K    K solved examples before the task (a base model: a Q/A document; a chat model: prior turns)
 *   cot          ask for reasoning before a marked final answer ("The answer is X.")
 *   sc:N         self-consistency: N samples decoded together from one shared prefill, majority vote over the
 *                extracted answers; the winner's share of the votes is the confidence
 *   tot:K,B,D    tree of thought: beam search over reasoning steps (one line each): K proposals per node, each
 *                scored by a value prompt to the same model (log p(yes) - log p(no)), B kept, depth D; then
 *                the best path is finished greedily
 *   reflect:R    answer, ask the model whether the answer meets the task, revise; up to R rounds, stopping when
 *                it says yes
 *
 * Tools: with a tool registry, generation pauses at <|tool_call_end|>, the call is run (tools.h), its result
 * is fed as <|tool_result|>TEXT<|tool_result_end|> (TEXT encoded with no special tokens recognised) and the
 * reply resumes on the same KV cache (engine_extend); at most STRATEGY_MAX_TOOL_CALLS calls per reply.
 *
 * Answers: the extraction rules (number, choice, regex, text) are shared by every strategy; an extracted
 * answer is right when it equals the expected one as a number (both parse as numbers) or as trimmed text.
 * Layering: infer -> data (chat rendering) -> tools -> core. Description and measurements: docs/strategies.md.
 */
#ifndef GK_STRATEGY_H
#define GK_STRATEGY_H

#include <stddef.h>
#include "core/core.h"
#include "data/data.h"
#include "infer/infer.h"
#include "tools/tools.h"

#define STRATEGY_MAX_TOOL_CALLS 8
#define STRATEGY_ANSWER_MAX 256

/* ---------------------------------------------------------------- strategy specs */
typedef enum { STRAT_GREEDY = 0, STRAT_FEWSHOT, STRAT_COT, STRAT_SC, STRAT_TOT, STRAT_REFLECT } strategy_kind;
typedef struct {
    strategy_kind kind;
    int k;        /* fewshot: examples; tot: proposals per node */
    int n;        /* sc: samples */
    int beam;     /* tot: nodes kept per level */
    int depth;    /* tot: reasoning steps */
    int rounds;   /* reflect: revision rounds */
} strategy_spec;
/* "greedy", "fewshot:K", "cot", "sc:N", "tot:K,B,D", "reflect:R". Errors say which part is wrong. */
int strategy_parse(const char *s, strategy_spec *out, gk_err *err);
/* The canonical text of a spec ("sc:8") into buf (>= 32 bytes). */
const char *strategy_str(const strategy_spec *s, char *buf, size_t cap);

/* ---------------------------------------------------------------- answers */
typedef enum { ANSWER_AUTO = 0, ANSWER_NUMBER, ANSWER_CHOICE, ANSWER_REGEX, ANSWER_TEXT, ANSWER_WORD } answer_kind;
typedef struct {
    answer_kind kind;     /* AUTO: NUMBER when the expected answer is a number, WORD when it is one word, else TEXT */
    const char *regex;    /* REGEX: POSIX extended; the first match's group 1 if it has one, else the match */
} answer_rule;
/* Extracts the answer of text under rule (expected only decides AUTO; may be NULL). Into out[cap]; returns 1
 * if an answer was found, 0 if not (out = ""), -1 for a regex that does not compile.
 *   number  the first number after the last final-answer marker ("answer is", "answer:", "####", "\"answer\":"),
 *           else the last number in the text; "1,234" and "-0.50" read as 1234 and -0.5
 *   choice  a letter A-E: after the last marker, else the last "(X)" or standalone capital A-E
 *   text    the text after the last marker up to the end of its sentence, else the whole text; trimmed, one
 *           trailing '.' dropped
 *   word    the last word (letters, digits, ' and -) of what text would take: "The capital of Peru is Lima." -> Lima */
int strategy_extract(const answer_rule *rule, const char *expected, const char *text, char *out, size_t cap);
/* 1 when got equals expected as numbers (both parse) or as trimmed text. */
int strategy_answer_equal(const char *got, const char *expected);
/* Canonical number text ("1,234.50" -> "1234.5", "-0" -> "0") into out; 0, or -1 when s is not a number. */
int strategy_number_norm(const char *s, char *out, size_t cap);
/* Wilson score interval for k successes in n trials at normal quantile z (STRATEGY_Z95 for 95%); n = 0 gives [0, 1]. */
#define STRATEGY_Z95 1.959963984540054   /* the 0.975 quantile of the standard normal */
void strategy_wilson(long k, long n, double z, double *lo, double *hi);

/* ---------------------------------------------------------------- solving */
/* A task or a few-shot example: prompt (the user's text), its system message (NULL = none), the expected
 * answer, and optionally a full example reply (NULL = the answer is the reply). All malloc'd. */
typedef struct { char *prompt, *system, *answer, *reply; } strategy_example;
/* Reads a task file: JSONL lines {"prompt": TEXT or [{"role":"system"|"user","content":...}], "answer": TEXT or
 * a number, "reply": TEXT (optional)}; other keys are ignored (so demo eval files load as they are). Errors name
 * the file, line and field: "tasks.jsonl:3: field \"answer\" is missing". An empty file is an error. */
int strategy_tasks_load(const char *path, strategy_example **out, size_t *n, gk_err *err);
/* Parses one line (for the fuzzer and the loader); fills x (free with strategy_example_free). */
int strategy_task_parse(const char *line, const char *path, size_t line_no, strategy_example *x, gk_err *err);
void strategy_example_free(strategy_example *x);
void strategy_tasks_free(strategy_example *t, size_t n);

/* What a tool call looked like, for callers that show them (chat). */
typedef void (*strategy_tool_cb)(void *ctx, const char *call, const char *result);

typedef struct {
    engine *e;                     /* its max_seqs bounds sc:N and tot's K */
    const tok_tokenizer *tok;
    const chat_specials *sp;       /* chat model: the specials; NULL = base model (Q/A document prompts) */
    tool_registry *tools;          /* NULL = no tools */
    const char *system;            /* chat: system message, NULL = none */
    const chat_conv *history;      /* chat: earlier turns before the task (chat sessions), NULL = none */
    size_t max_new;                /* per generation segment (default 256) */
    infer_sampling samp;           /* sc / tot proposals: temperature (default 0.7), top-k/p, seed */
    const strategy_example *examples; size_t n_examples;   /* fewshot pool */
    answer_rule rule;
    engine_token_cb on_token; void *ctx;   /* streams greedy / reflect text (chat); NULL = none */
    strategy_tool_cb on_tool; void *tool_ctx;
    const volatile int *cancel;
    constrain *grammar;            /* constrained answers (NULL = none): every generation that produces the reply
                                      (greedy, fewshot, cot, sc samples, tot's last completion, reflect's
                                      revisions; each tool-loop segment afresh) — not tot's step proposals or
                                      reflect's verdicts */
} strategy_opts;
void strategy_opts_default(strategy_opts *o);

typedef struct {
    char *text;                      /* the final reply (tool calls and results included as markup) */
    char *final;                     /* its last segment (after the last tool result): what answers are read from */
    char extracted[STRATEGY_ANSWER_MAX];
    int found;
    double confidence;               /* sc: the winner's share of votes; 1 otherwise */
    size_t tokens;                   /* tokens generated, over every sample, step, check and revision */
    size_t tool_calls;
    double seconds;
} strategy_result;
void strategy_result_free(strategy_result *r);

/* Solves one task (prompt = the user's text; expected may be NULL: it only decides ANSWER_AUTO). Returns 0,
 * or -1 with err (a prompt that does not fit the context, a spec the engine cannot hold). */
int strategy_solve(const strategy_spec *spec, const strategy_opts *o, const char *prompt, const char *expected,
                   size_t task_index, strategy_result *res, gk_err *err);

#endif
