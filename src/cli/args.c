/* args.c: the shared argument parser for subcommands (see cli.h). */
#include "cli/cli.h"
#include "core/core.h"
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void cli_args_init(cli_args *a, int argc, char **argv, const char *usage) {
    a->argc = argc; a->argv = argv; a->i = 1; a->usage = usage; a->cmd = argc > 0 ? argv[0] : "?";
}
const char *cli_next(cli_args *a) {
    if (a->i >= a->argc) return NULL;
    const char *f = a->argv[a->i++];
    if (!strcmp(f, "-h") || !strcmp(f, "--help")) { fputs(a->usage, stdout); exit(0); }
    return f;
}
int cli_is_positional(const char *f) { return f[0] != '-' || f[1] == 0; }
int cli_is_any(const char *f, ...) {
    va_list ap; va_start(ap, f);
    const char *s; int hit = 0;
    while ((s = va_arg(ap, const char *))) if (!strcmp(f, s)) { hit = 1; break; }
    va_end(ap);
    return hit;
}
void cli_usage_error(cli_args *a, const char *fmt, ...) {
    fprintf(stderr, "gptkit %s: ", a->cmd);
    va_list ap; va_start(ap, fmt); vfprintf(stderr, fmt, ap); va_end(ap);
    fprintf(stderr, "\n(see 'gptkit %s --help')\n", a->cmd);
    exit(2);
}
const char *cli_str(cli_args *a, const char *flag) {
    if (a->i >= a->argc) cli_usage_error(a, "%s needs a value", flag);
    return a->argv[a->i++];
}
long cli_long(cli_args *a, const char *flag) {
    const char *s = cli_str(a, flag);
    long v;
    if (gk_parse_long(s, &v) != 0) cli_usage_error(a, "%s needs an integer, got '%s'", flag, s);
    return v;
}
double cli_double(cli_args *a, const char *flag) {
    const char *s = cli_str(a, flag);
    double v;
    if (gk_parse_double(s, &v) != 0) cli_usage_error(a, "%s needs a number, got '%s'", flag, s);
    return v;
}
void cli_unknown(cli_args *a, const char *flag) {
    if (cli_is_positional(flag)) cli_usage_error(a, "unexpected argument '%s'", flag);
    cli_usage_error(a, "unknown option '%s'", flag);
}
int cli_strs(cli_args *a, const char *flag, const char ***out) {
    int start = a->i, n = 0;
    while (a->i < a->argc && (a->argv[a->i][0] != '-' || a->argv[a->i][1] == 0)) { a->i++; n++; }
    if (n == 0) cli_usage_error(a, "%s needs at least one value", flag);
    *out = (const char **)(a->argv + start);
    return n;
}

int cli_not_yet(const char *cmd, const char *what) {
    fprintf(stderr, "gptkit %s: not implemented yet (%s)\n", cmd, what);
    return 2;
}

int cli_sampling_flag(cli_args *a, const char *f, infer_sampling *s) {
    if (cli_is(f, "--temperature")) s->temperature = (float)cli_double(a, f);
    else if (cli_is(f, "--top-k")) s->top_k = (int)cli_long(a, f);
    else if (cli_is(f, "--top-p")) s->top_p = (float)cli_double(a, f);
    else if (cli_is(f, "--min-p")) s->min_p = (float)cli_double(a, f);
    else if (cli_is(f, "--repetition-penalty")) s->repetition_penalty = (float)cli_double(a, f);
    else if (cli_is(f, "--frequency-penalty")) s->frequency_penalty = (float)cli_double(a, f);
    else if (cli_is(f, "--presence-penalty")) s->presence_penalty = (float)cli_double(a, f);
    else if (cli_is(f, "--seed")) s->seed = (uint64_t)cli_long(a, f);
    else return 0;
    return 1;
}

/* ---------------------------------------------------------------- constrained output flags */

void cli_constraint_init(cli_constraint *c) { c->kind = -1; c->arg = NULL; }

int cli_constraint_flag(cli_args *a, const char *f, cli_constraint *c) {
    int kind;
    if (cli_is(f, "--grammar")) kind = CONSTRAIN_GBNF;
    else if (cli_is(f, "--json-schema")) kind = CONSTRAIN_JSON_SCHEMA;
    else if (cli_is(f, "--regex")) kind = CONSTRAIN_REGEX;
    else if (cli_is(f, "--json-value", "--json-object")) kind = CONSTRAIN_JSON;
    else return 0;
    if (c->kind >= 0) cli_usage_error(a, "give at most one of --grammar, --json-schema, --regex, --json-value, --json-object");
    c->kind = kind;
    c->arg = kind == CONSTRAIN_JSON ? (cli_is(f, "--json-object") ? "object" : "value") : cli_str(a, f);
    return 1;
}

int cli_constraint_build(const cli_constraint *c, const tok_tokenizer *tok, constrain_vocab **v, constrain **out, gk_err *err) {
    *v = NULL; *out = NULL;
    if (c->kind < 0) return 0;
    if (!tok) return gk_errf(err, "constrained output needs a tokenizer (the checkpoint records none; pass --tokenizer)");
    char *gbnf = NULL;
    if (c->kind == CONSTRAIN_REGEX) gbnf = constrain_spec_to_gbnf(CONSTRAIN_REGEX, c->arg, strlen(c->arg), err);
    else if (c->kind == CONSTRAIN_JSON) gbnf = !strcmp(c->arg, "object") ? constrain_json_object_gbnf() : constrain_json_value_gbnf();
    else {
        char *data; size_t n;
        if (gk_read_file(c->arg, &data, &n, err)) return -1;
        gbnf = constrain_spec_to_gbnf((constrain_kind)c->kind, data, n, err);
        free(data);
        if (!gbnf) return gk_err_prefix(err, "%s", c->arg);
    }
    if (!gbnf) return gk_err_prefix(err, "--regex");
    constrain_grammar *g = constrain_grammar_parse(gbnf, strlen(gbnf), NULL, err);
    free(gbnf);
    if (!g) return c->kind == CONSTRAIN_GBNF ? gk_err_prefix(err, "%s", c->arg) : -1;
    *v = constrain_vocab_new(tok);
    *out = constrain_new(g, *v, NULL, 0);   /* the engine allows its own stop tokens where the grammar may end */
    return 0;
}
