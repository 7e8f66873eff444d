/* cmd_sample.c: gptkit sample (placeholder until issue 4 lands). */
#include "cli/cli.h"
int cmd_sample(int argc, char **argv) { (void)argc; (void)argv; return cli_not_yet("sample", "see issue 4"); }
