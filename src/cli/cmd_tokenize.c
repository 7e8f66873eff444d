/* cmd_tokenize.c: gptkit tokenize (placeholder until issue 3 lands). */
#include "cli/cli.h"
int cmd_tokenize(int argc, char **argv) { (void)argc; (void)argv; return cli_not_yet("tokenize", "see issue 3"); }
