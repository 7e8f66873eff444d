/* tools: what an assistant can call in the middle of its reply — a registry of tools with JSON descriptions
 * (the shape of OpenAI's function calling), the parsing of a call the model wrote, and the built-in tools:
 *
 *   calc     exact arithmetic on integers and rationals (GMP): an expression parser, nothing in it runs code
 *   python   a Python program run in a sandboxed child process (namespaces, rlimits, seccomp; see python.c)
 *
 * A call is the text between <|tool_call|> and <|tool_call_end|>:  {"name": NAME, "arguments": {...}}
 * and its result is plain text that the caller inserts as <|tool_result|>TEXT<|tool_result_end|>, encoded
 * with no special tokens recognised (so a tool can never write turn markers). Every failure the model can
 * cause (malformed JSON, an unknown tool, bad arguments, a tool error) is a result text starting "error: ",
 * never a failure of the caller: the model reads it and may try again.
 *
 * Adding a tool (helper "rag" registers `retrieve` this way):
 *     tools_register(reg, "retrieve", "{\"type\":\"function\",\"function\":{\"name\":\"retrieve\",...}}",
 *                    my_run, my_ctx, &err);
 * where my_run(ctx, arguments, &out, err) returns 0 with *out a malloc'd result text, or -1 with a message
 * (shown to the model as "error: <message>").
 */
#ifndef GK_TOOLS_H
#define GK_TOOLS_H

#include <stddef.h>
#include <cjson/cJSON.h>
#include "core/core.h"

/* A tool's body: args is the call's "arguments" object (never NULL; {} when absent). On success *out is a
 * malloc'd NUL-terminated result; on failure -1 with err (the message goes to the model). */
typedef int (*tool_run_fn)(void *ctx, const cJSON *args, char **out, gk_err *err);

typedef struct tool_registry tool_registry;
tool_registry *tools_new(void);
void tools_free(tool_registry *r);   /* NULL ok */
/* Adds a tool. description: its JSON description, {"type":"function","function":{"name":...,"description":...,
 * "parameters":{JSON schema}}} (checked to parse and to name the same tool). -1 on a duplicate name or a bad
 * description (programmer-level mistakes, reported rather than aborted so a plugin can say what it did). */
int tools_register(tool_registry *r, const char *name, const char *description, tool_run_fn run, void *ctx,
                   gk_err *err);
/* Enables built-in tools from a comma list ("calc,python"). Unknown names: -1 with the list of known ones. */
int tools_enable(tool_registry *r, const char *list, gk_err *err);
size_t tools_count(const tool_registry *r);
const char *tools_name(const tool_registry *r, size_t i);
/* The descriptions as a JSON array (malloc'd; for a system prompt or an OpenAI-style "tools" field). */
char *tools_describe(const tool_registry *r);

/* Runs the call text (what the model wrote between the markers; need not be NUL-terminated). Always returns
 * a malloc'd result text: the tool's output, or "error: ..." (malformed JSON, no such tool, bad arguments,
 * the tool's own error). The result is capped at TOOLS_RESULT_MAX bytes (cut at a UTF-8 boundary, with
 * " [truncated]"). *ok (may be NULL) is 1 when the tool ran and succeeded. */
#define TOOLS_RESULT_MAX 2048
char *tools_call(tool_registry *r, const char *call, size_t len, int *ok);

/* ---------------------------------------------------------------- calc
 * Grammar (whitespace anywhere between tokens):
 *   expr   := term (('+' | '-') term)*
 *   term   := unary (('*' | '/' | '%') unary)*          '%': remainder of integers (sign of the dividend)
 *   unary  := ('+' | '-') unary | power
 *   power  := atom (('^' | '**') unary)?                  right-associative; integer exponent |e| <= 100000
 *   atom   := NUMBER | '(' expr ')'                       NUMBER: digits, optional '.' digits, optional e[+-]digits
 * Values are exact rationals. The result prints as an integer, an exact decimal when the denominator has only
 * the factors 2 and 5, else as "p/q (~ the value to 20 decimals)". Limits: 4096 bytes of input, 256
 * levels of nesting, results up to 1,000,000 bits (a bigger power is refused before it is computed).
 * Returns 0 with *out malloc'd, or -1 with err naming the byte offset: "at offset 7: expected a number". */
int tools_calc_eval(const char *expr, char **out, gk_err *err);
int tools_calc_available(void);   /* 0 when gptkit was built without GMP (calc then says so) */

/* ---------------------------------------------------------------- python sandbox */
typedef struct {
    double timeout_s;          /* wall clock; the whole process group is killed after it (default 5) */
    long   cpu_s;              /* RLIMIT_CPU (default 5) */
    long   mem_mb;             /* RLIMIT_AS (default 512) */
    long   fsize_mb;           /* RLIMIT_FSIZE (default 16) */
    long   nproc;              /* RLIMIT_NPROC (default 16) */
    size_t out_max;            /* stdout and stderr each truncated to this many bytes (default 4096) */
    const char *python;        /* interpreter (default "/usr/bin/python3") */
} tools_sandbox_opts;
void tools_sandbox_opts_default(tools_sandbox_opts *o);

typedef struct {
    char *out, *errtext;       /* captured stdout / stderr (malloc'd, NUL-terminated, maybe truncated) */
    int out_truncated, err_truncated;
    int exit_code;             /* the program's exit status; -1 when killed by a signal */
    int signal;                /* the signal that ended it, 0 if none */
    int timed_out;             /* killed at timeout_s */
    double seconds;
    char isolation[128];       /* what isolated it, e.g. "namespaces(user,net,mount,pid,ipc)+seccomp+rlimits" */
} tools_sandbox_result;
void tools_sandbox_result_free(tools_sandbox_result *r);
/* Runs code with the interpreter in a fresh empty directory (removed afterwards), no network, a file system
 * that shows only the interpreter's files (read-only) and that directory, rlimits, a seccomp filter, and the
 * timeout. Returns 0 when the program ran (whatever its exit status), -1 with err when the sandbox could not
 * be set up (then nothing ran: it fails closed). */
int tools_python_run(const char *code, const tools_sandbox_opts *o, tools_sandbox_result *res, gk_err *err);

#endif
