/* cmd_bench.c: gptkit bench (placeholder until issue 7 lands). */
#include "cli/cli.h"
int cmd_bench(int argc, char **argv) { (void)argc; (void)argv; return cli_not_yet("bench", "see issue 7"); }
