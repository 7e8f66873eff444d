/* cmd_chat.c: gptkit chat (placeholder until issue 4 lands). */
#include "cli/cli.h"
int cmd_chat(int argc, char **argv) { (void)argc; (void)argv; return cli_not_yet("chat", "see issue 4"); }
