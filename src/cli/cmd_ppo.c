/* cmd_ppo.c: gptkit ppo (placeholder until issue 5 lands). */
#include "cli/cli.h"
int cmd_ppo(int argc, char **argv) { (void)argc; (void)argv; return cli_not_yet("ppo", "see issue 5"); }
