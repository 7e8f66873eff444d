/* cmd_pipeline.c: gptkit pipeline (placeholder until issue 6 lands). */
#include "cli/cli.h"
int cmd_pipeline(int argc, char **argv) { (void)argc; (void)argv; return cli_not_yet("pipeline", "see issue 6"); }
