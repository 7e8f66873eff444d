/* fuzz_safetensors.c: st_open validates a safetensors header (length, JSON, dtypes, shapes, offsets against the
 * file length) before any data is read; then every tensor that fits is read as fp32. */
#include "model/model.h"
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n) {
    st_file f; gk_err err;
    if (st_open(&f, fuzz_file("model.safetensors", data, n), &err) != 0) return 0;
    for (size_t i = 0; i < f.n; i++) {
        size_t numel = 1;
        for (int d = 0; d < f.tensors[i].ndim; d++) numel *= f.tensors[i].shape[d] ? f.tensors[i].shape[d] : 1;
        if (numel > (1u << 20)) continue;
        float *dst = malloc(numel * sizeof(float) + 4);
        st_read_f32(&f, &f.tensors[i], dst, &err);
        free(dst);
    }
    st_meta(&f, "format");
    st_close(&f);
    return 0;
}
