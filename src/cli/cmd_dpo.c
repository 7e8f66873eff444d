/* cmd_dpo.c: gptkit dpo (placeholder until issue 5 lands). */
#include "cli/cli.h"
int cmd_dpo(int argc, char **argv) { (void)argc; (void)argv; return cli_not_yet("dpo", "see issue 5"); }
