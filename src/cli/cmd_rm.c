/* cmd_rm.c: gptkit rm (placeholder until issue 5 lands). */
#include "cli/cli.h"
int cmd_rm(int argc, char **argv) { (void)argc; (void)argv; return cli_not_yet("rm", "see issue 5"); }
