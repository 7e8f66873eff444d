/* fuzz_gguf.c: gguf_parse validates a GGUF header (magic, version, counts, strings, metadata arrays, tensor dims,
 * types, offsets, alignment, overlaps) before any tensor byte is read; then every tensor that fits is dequantized,
 * the metadata is queried, and the LLaMA config is derived (as gptkit info / --model FILE.gguf would). */
#include "model/model.h"
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n) {
    gguf_file g; gk_err err;
    if (gguf_parse(&g, data, n, "fuzz.gguf", &err) != 0) return 0;
    for (size_t i = 0; i < g.n_tensors; i++) {
        const gguf_tensor *t = &g.tensors[i];
        if (t->numel > (1u << 20)) continue;
        float *dst = malloc(t->numel * sizeof(float) + 4);
        gguf_dequantize(t->type, g.data + g.data_off + t->offset, t->numel, dst);
        free(dst);
    }
    double v; gguf_str s;
    gguf_get_num(&g, "llama.block_count", &v);
    gguf_get_str(&g, "general.architecture", &s);
    gpt_config c;
    gguf_load_config(&g, &c, &err);
    gguf_close(&g);   /* not mapped: frees the tables only */
    return 0;
}
