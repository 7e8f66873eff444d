/* fuzz_shard.c: a token shard (llm.c's .bin layout: 256-int header, then uint16 or uint32 ids) is opened,
 * validated against its length, and every token read. */
#include "data/data.h"
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n) {
    data_shard s; gk_err err;
    if (data_shard_open(&s, fuzz_file("shard.bin", data, n), &err) != 0) return 0;
    uint64_t sum = 0;
    for (size_t i = 0; i < s.ntok; i++) sum += data_shard_token(&s, i);
    data_shard_close(&s);
    return (int)(sum & 0);
}
