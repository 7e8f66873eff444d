/* cmd_score.c: gptkit score (placeholder until issue 5 lands). */
#include "cli/cli.h"
int cmd_score(int argc, char **argv) { (void)argc; (void)argv; return cli_not_yet("score", "see issue 5"); }
