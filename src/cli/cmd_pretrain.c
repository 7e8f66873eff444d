/* cmd_pretrain.c: gptkit pretrain (placeholder until issue 2 lands). */
#include "cli/cli.h"
int cmd_pretrain(int argc, char **argv) { (void)argc; (void)argv; return cli_not_yet("pretrain", "see issue 2"); }
