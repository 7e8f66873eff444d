/* cmd_data.c: gptkit data (placeholder until issue 6 lands). */
#include "cli/cli.h"
int cmd_data(int argc, char **argv) { (void)argc; (void)argv; return cli_not_yet("data", "see issue 6"); }
