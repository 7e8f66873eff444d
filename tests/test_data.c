/* test_data.c: token shards and the batch loader — llm.c's sequential order exactly, seeded shuffle that
 * resumes exactly, and clean errors on bad shards. */
#include "data/data.h"
#include "testlib.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

static char *make_shard(const char *dir, const char *name, size_t n, uint32_t base, int force32) {
    char *p = gk_path_join(dir, name);
    uint32_t *t = malloc(n * sizeof *t);
    for (size_t i = 0; i < n; i++) t[i] = (base + (uint32_t)i) % 1000;
    gk_err err;
    if (data_shard_write(p, t, n, force32, &err)) { printf("write: %s\n", err.msg); exit(2); }
    free(t);
    return p;
}

static void test_sequential_matches_llmc(void) {
    char *d = tl_tmpdir("data");
    char *a = make_shard(d, "train_000.bin", 100, 0, 0);
    char *b = make_shard(d, "train_001.bin", 50, 500, 1);   /* uint32 variant, read the same way */
    char pat[4200]; snprintf(pat, sizeof pat, "%s/train_*.bin", d);
    gk_err err;
    size_t B = 2, T = 7;
    data_loader *dl = data_loader_open(pat, B, T, 0, 0, 1000, &err);
    CHECK(dl != NULL, "open: %s", err.msg);
    if (!dl) return;
    int32_t in[14], tg[14];
    /* shard 0 has 100 tokens: batches at 0, 14, ..., 84 (84+15=99 <= 100), i.e. 7 batches; then shard 1. */
    for (int k = 0; k < 7; k++) {
        CHECK(data_loader_next(dl, in, tg, &err) == 0, "next: %s", err.msg);
        for (size_t i = 0; i < B * T; i++) {
            CHECK(in[i] == (int32_t)(k * B * T + i), "batch %d input %zu = %d", k, i, in[i]);
            CHECK(tg[i] == (int32_t)(k * B * T + i + 1), "batch %d target %zu = %d", k, i, tg[i]);
        }
    }
    CHECK(data_loader_next(dl, in, tg, &err) == 0, "next");
    CHECK(in[0] == 500 && tg[13] == 514, "second shard first batch: %d %d", in[0], tg[13]);
    data_pos p = data_loader_tell(dl);
    CHECK(p.shard == 1 && p.pos == 14, "tell %llu %llu", (unsigned long long)p.shard, (unsigned long long)p.pos);
    /* shard 1: 50 tokens -> batches at 0,14 (14+15=29), 28 (28+15=43<=50): 3 batches, then wrap to shard 0 */
    data_loader_next(dl, in, tg, &err); data_loader_next(dl, in, tg, &err);
    data_loader_next(dl, in, tg, &err);
    CHECK(in[0] == 0, "wrapped to shard 0: %d", in[0]);
    data_loader_free(dl);
    free(a); free(b); free(d);
}

static void test_shuffled_resume(void) {
    char *d = tl_tmpdir("data");
    char *a = make_shard(d, "s0.bin", 200, 0, 0);
    char *b = make_shard(d, "s1.bin", 130, 300, 0);
    char pat[4200]; snprintf(pat, sizeof pat, "%s/s*.bin", d);
    gk_err err;
    size_t B = 3, T = 5;
    data_loader *x = data_loader_open(pat, B, T, 1, 1234, 1000, &err);
    data_loader *y = data_loader_open(pat, B, T, 1, 1234, 1000, &err);
    data_loader *z = data_loader_open(pat, B, T, 1, 99, 1000, &err);
    CHECK(x && y && z, "open: %s", err.msg);
    if (!x || !y || !z) return;
    int32_t i1[15], t1[15], i2[15], t2[15];
    int differs = 0;
    /* windows: s0 has (199/5)=39 -> 13 batches, s1 has 25 -> 8 batches: an epoch is 21 batches */
    int seen[1000] = {0};
    for (int k = 0; k < 21; k++) {
        data_loader_next(x, i1, t1, &err);
        data_loader_next(z, i2, t2, &err);
        if (memcmp(i1, i2, sizeof i1)) differs = 1;
        for (int r = 0; r < 3; r++) {
            CHECK(i1[r * 5] % 5 == 0 || i1[r * 5] >= 300, "window start %d not on a stride", i1[r * 5]);
            seen[i1[r * 5]]++;
            for (int t = 0; t < 5; t++) CHECK(t1[r * 5 + t] == i1[r * 5 + t] + 1, "targets shifted");
        }
    }
    CHECK(differs, "different seeds gave the same order");
    int dup = 0;
    for (int i = 0; i < 1000; i++) if (seen[i] > 1) dup++;
    CHECK(dup == 0, "%d windows visited twice in one epoch", dup);
    /* resume: y seeks to x's position and must produce the same next batches */
    for (int k = 0; k < 5; k++) data_loader_next(x, i1, t1, &err);
    data_pos p = data_loader_tell(x);
    CHECK(data_loader_seek(y, p, &err) == 0, "seek");
    for (int k = 0; k < 30; k++) {
        data_loader_next(x, i1, t1, &err);
        data_loader_next(y, i2, t2, &err);
        CHECK(!memcmp(i1, i2, sizeof i1) && !memcmp(t1, t2, sizeof t1), "resumed batch %d differs", k);
    }
    data_loader_free(x); data_loader_free(y); data_loader_free(z);
    free(a); free(b); free(d);
}

static void write_raw(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb"); fwrite(p, 1, n, f); fclose(f);
}

static void test_bad_shards(void) {
    char *d = tl_tmpdir("data");
    gk_err err;
    char *good = make_shard(d, "good.bin", 64, 0, 0);
    char *data; size_t len;
    gk_read_file(good, &data, &len, &err);
    char *p = gk_path_join(d, "bad.bin");

    int32_t *h = (int32_t *)data;
    h[0] = 12345; write_raw(p, data, len); h[0] = DATA_SHARD_MAGIC;
    CHECK(!data_loader_open(p, 1, 4, 0, 0, 1000, &err) && strstr(err.msg, "magic") && strstr(err.msg, "bad.bin"), "magic: %s", err.msg);
    write_raw(p, data, len - 10);
    CHECK(!data_loader_open(p, 1, 4, 0, 0, 1000, &err) && strstr(err.msg, "truncated"), "truncated: %s", err.msg);
    write_raw(p, data, 100);
    CHECK(!data_loader_open(p, 1, 4, 0, 0, 1000, &err) && strstr(err.msg, "truncated"), "short header: %s", err.msg);
    h[1] = 7; write_raw(p, data, len); h[1] = 1;
    CHECK(!data_loader_open(p, 1, 4, 0, 0, 1000, &err) && strstr(err.msg, "version"), "version: %s", err.msg);
    write_raw(p, data, len);
    CHECK(!data_loader_open(p, 100, 4, 0, 0, 1000, &err) && strstr(err.msg, "whole batch"), "too small: %s", err.msg);
    /* token out of range: vocab 30 while the shard holds ids up to 63 */
    data_loader *dl = data_loader_open(p, 2, 8, 0, 0, 30, &err);
    CHECK(dl != NULL, "open for vocab test: %s", err.msg);
    int32_t in[16], tg[16];
    int rc = 0;
    for (int k = 0; k < 4 && rc == 0; k++) rc = data_loader_next(dl, in, tg, &err);
    CHECK(rc != 0 && strstr(err.msg, "out of range") && strstr(err.msg, "bad.bin"), "vocab: %s", err.msg);
    data_loader_free(dl);
    CHECK(!data_loader_open("/nonexistent/x_*.bin", 1, 4, 0, 0, 1000, &err) && strstr(err.msg, "no token shards"), "glob: %s", err.msg);
    free(data); free(p); free(good); free(d);
}

/* Invalid UTF-8 in chat or preference JSONL is refused with where it is (it used to be trained on silently):
 * raw bad bytes, overlong forms, and a lone surrogate written as a JSON escape. */
static void test_jsonl_utf8(void) {
    const char *bad[] = {
        "{\"prompt\":\"p\",\"chosen\":\"a\xff\",\"rejected\":\"b\"}",
        "{\"prompt\":\"p\",\"chosen\":\"a\xc0\x80\",\"rejected\":\"b\"}",
        "{\"prompt\":\"p\",\"chosen\":\"a\\udc00\",\"rejected\":\"b\"}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        prefs_item it; gk_err err = {{0}};
        int rc = prefs_parse_line(bad[i], "p.jsonl", 3, PREFS_ACCEPT_PREFS, &it, &err);
        CHECK(rc == -1 && strstr(err.msg, "p.jsonl:3"), "prefs case %zu accepted or unplaced: %s", i, err.msg);
        if (rc == 0) prefs_item_free(&it);
    }
    chat_conv c = {0}; gk_err err = {{0}};
    CHECK(chat_conv_from_json(&c, "{\"messages\":[{\"role\":\"user\",\"content\":\"hi \xe2\x82\"}]}", &err) == -1 &&
          strstr(err.msg, "invalid UTF-8 at byte 42"), "chat: %s", err.msg);
    CHECK(chat_conv_from_json(&c, "{\"messages\":[{\"role\":\"user\",\"content\":\"caf\xc3\xa9 \xe4\xb8\xad\"}]}", &err) == 0,
          "valid UTF-8 refused: %s", err.msg);
    chat_conv_free(&c);
}

int main(void) {
    TL_RUN(test_sequential_matches_llmc);
    TL_RUN(test_shuffled_resume);
    TL_RUN(test_bad_shards);
    TL_RUN(test_jsonl_utf8);
    return tl_summary();
}
