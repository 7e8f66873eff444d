/* fuzz_pipeconf.c: a pipeline config file (key = value lines, the stages' option tables) parsed and checked. */
#include "cli/pipeline_internal.h"
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n) {
    const char *path = fuzz_file("pipeline.conf", data, n);
    pipe_cfg c;
    pipe_cfg_default(&c);
    gk_err err;
    pipe_cfg_load(&c, path, &err);
    return 0;
}
