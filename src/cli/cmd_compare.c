/* cmd_compare.c: gptkit compare (placeholder until issue 5 lands). */
#include "cli/cli.h"
int cmd_compare(int argc, char **argv) { (void)argc; (void)argv; return cli_not_yet("compare", "see issue 5"); }
