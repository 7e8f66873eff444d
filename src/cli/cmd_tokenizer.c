/* cmd_tokenizer.c: gptkit tokenizer (placeholder until issue 3 lands). */
#include "cli/cli.h"
int cmd_tokenizer(int argc, char **argv) { (void)argc; (void)argv; return cli_not_yet("tokenizer", "see issue 3"); }
