/* fuzz_config.c: a checkpoint's config.json (HF GPT2Config plus gptkit's extras) read and validated. */
#include "model/model.h"
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n) {
    fuzz_file("config.json", data, n);
    gpt_config cfg; char *tok = NULL; gk_err err;
    if (gpt_load_config(fuzz_dir(), &cfg, &tok, &err) == 0) gpt_config_validate(&cfg, &err);
    free(tok);
    return 0;
}
