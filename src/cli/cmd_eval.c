/* cmd_eval.c: gptkit eval (placeholder until issue 2 lands). */
#include "cli/cli.h"
int cmd_eval(int argc, char **argv) { (void)argc; (void)argv; return cli_not_yet("eval", "see issue 2"); }
