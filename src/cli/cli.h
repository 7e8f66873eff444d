/* cli: the gptkit binary's subcommands and a small shared argument parser.
 * Each subcommand lives in its own cmd_*.c file and is `int cmd_NAME(int argc, char **argv)` where argv[0]
 * is the subcommand name. Exit codes: 0 ok, 1 failure (bad input, I/O), 2 usage error, 130 interrupted. */
#ifndef GK_CLI_H
#define GK_CLI_H
#include <stddef.h>
#include <stdint.h>
#include "infer/infer.h"
#include "train/train.h"

int cmd_pretrain(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_export(int argc, char **argv);
int cmd_lora(int argc, char **argv);     /* cmd_lora.c: lora merge */
int cmd_tokenizer(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_sample(int argc, char **argv);
int cmd_chat(int argc, char **argv);
int cmd_serve(int argc, char **argv);
int cmd_solve(int argc, char **argv);
int cmd_sft(int argc, char **argv);
int cmd_rm(int argc, char **argv);
int cmd_score(int argc, char **argv);
int cmd_ppo(int argc, char **argv);
int cmd_dpo(int argc, char **argv);
int cmd_grpo(int argc, char **argv);
int cmd_compare(int argc, char **argv);
int cmd_pipeline(int argc, char **argv);
int cmd_data(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_embed(int argc, char **argv);
int cmd_index(int argc, char **argv);
int cmd_fill(int argc, char **argv);

/* Argument iteration:
 *   cli_args a; cli_args_init(&a, argc, argv, usage_text);
 *   const char *f;
 *   while ((f = cli_next(&a))) {
 *       if (cli_is(f, "--lr")) lr = cli_double(&a, f);
 *       else if (cli_is(f, "-b", "--batch")) B = cli_long(&a, f);
 *       else cli_unknown(&a, f);
 *   }
 * -h/--help print the usage text and exit 0. A value-less flag is just tested with cli_is. Bare words
 * (not starting with '-') are returned too, so commands can take positional arguments (cli_positional). */
typedef struct {
    int argc; char **argv; int i;
    const char *usage;
    const char *cmd;
} cli_args;
void cli_args_init(cli_args *a, int argc, char **argv, const char *usage);
const char *cli_next(cli_args *a);
int  cli_is_positional(const char *flag);
#define cli_is(f, ...) cli_is_any((f), __VA_ARGS__, (const char *)0)
int  cli_is_any(const char *f, ...);
const char *cli_str(cli_args *a, const char *flag);
long   cli_long(cli_args *a, const char *flag);
double cli_double(cli_args *a, const char *flag);
void   cli_unknown(cli_args *a, const char *flag) __attribute__((noreturn));
void   cli_usage_error(cli_args *a, const char *fmt, ...) __attribute__((noreturn, format(printf, 2, 3)));
/* Like cli_str, but collects every following non-flag word (for --input FILES...). Returns count. */
int    cli_strs(cli_args *a, const char *flag, const char ***out);
#endif

/* A training command's options from its stage's table (train.h): parses the flags (each value checked against
 * the table's type and range), and with --resume DIR takes the options stored in DIR's resume state as the
 * base, re-applies the flags given (so `--resume OUT --steps 2000` extends a run), sets --out to DIR, and
 * checks the result. head is the command's usage lines and description; --help prints it followed by the
 * table's options with their defaults. -q/--quiet is accepted by every training command. Exits 2 on a usage
 * error; returns 0, or 1 after printing why the resume state could not be read. */
int cli_train_opts(const train_opt_table *t, void *o, int argc, char **argv, const char *head);


/* The sampling flags sample and chat share: --temperature --top-k --top-p --min-p --repetition-penalty
 * --frequency-penalty --presence-penalty --seed (infer_sampling_validate checks them). Returns 1 if f was one. */
int cli_sampling_flag(cli_args *a, const char *f, infer_sampling *s);

/* Constrained output, the flags sample, chat and solve share: --grammar FILE.gbnf, --json-schema FILE.json,
 * --regex RE, --json-value (any JSON value), --json-object (any JSON object); at most one. Returns 1 if f
 * was one. */
typedef struct { int kind; const char *arg; } cli_constraint;   /* kind -1 = none, else a constrain_kind */
#define CLI_CONSTRAINT_HELP \
"  --grammar FILE        constrain the output to a GBNF grammar (llama.cpp syntax; docs/constrain.md)\n" \
"  --json-schema FILE    constrain the output to JSON valid under a JSON Schema\n" \
"  --regex RE            constrain the output to match a regular expression (whole output)\n" \
"  --json-value | --json-object   constrain the output to any JSON value / object\n"
void cli_constraint_init(cli_constraint *c);
int cli_constraint_flag(cli_args *a, const char *f, cli_constraint *c);
/* The constraint asked for (NULL in *out when none): grammar text read/converted, compiled and bound to
 * tok's vocabulary (*v, built here; free both after the engine). 0, or -1 with err naming the file. */
int cli_constraint_build(const cli_constraint *c, const tok_tokenizer *tok, constrain_vocab **v, constrain **out, gk_err *err);

/* A subcommand whose issue has not landed yet: says so and exits 2. */
int cli_not_yet(const char *cmd, const char *what);
