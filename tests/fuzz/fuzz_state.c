/* fuzz_state.c: a resume state (train_state.safetensors: optimizer moments and the step, data position, RNG,
 * options and result metadata) read back for a small model: the metadata parsers, the range checks and the
 * parameters' checksum check. train_state_opts and train_state_finished read only metadata. */
#include "train/train.h"
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n) {
    fuzz_file("train_state.safetensors", data, n);
    static gpt_model *m;
    static adamw *opt;
    if (!m) {
        gpt_config cfg;
        gpt_config_default(&cfg);
        cfg.n_layer = 1; cfg.n_head = 1; cfg.n_embd = 4; cfg.vocab_size = 8; cfg.n_ctx = 4;
        m = gpt_create(&cfg);
        gpt_alloc_grads(m);
        adamw_config ao;
        adamw_config_default(&ao);
        opt = adamw_create(m, &ao);
    }
    gk_err err;
    free(train_state_opts(fuzz_dir(), &err));
    train_state_finished(fuzz_dir());
    train_state st;
    memset(&st, 0, sizeof st);
    if (train_load_state(fuzz_dir(), m, opt, &st, &err) == 0) free(st.opts_json);
    return 0;
}
