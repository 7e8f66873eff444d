/* cmd_sft.c: gptkit sft (placeholder until issue 4 lands). */
#include "cli/cli.h"
int cmd_sft(int argc, char **argv) { (void)argc; (void)argv; return cli_not_yet("sft", "see issue 4"); }
