/* fuzz_common.h: shared by the libFuzzer harnesses in tests/fuzz (one per parser of outside input).
 * Parsers that read a path get the fuzzer's bytes through a per-process file under $TMPDIR (or /tmp). */
#ifndef GK_FUZZ_COMMON_H
#define GK_FUZZ_COMMON_H
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>

/* Writes data to a file named `name` inside a per-process directory and returns its path (static buffer). */
static inline const char *fuzz_file(const char *name, const uint8_t *data, size_t n) {
    static char dir[512], path[1024];
    if (!dir[0]) {
        const char *t = getenv("TMPDIR");
        snprintf(dir, sizeof dir, "%s/gptkit-fuzz-%ld", t ? t : "/tmp", (long)getpid());
        mkdir(dir, 0700);
    }
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f) abort();
    if (n && fwrite(data, 1, n, f) != n) abort();
    fclose(f);
    return path;
}
/* The per-process directory fuzz_file writes into (after one call). */
static inline const char *fuzz_dir(void) {
    static char d[1024];
    const char *p = fuzz_file(".probe", (const uint8_t *)"", 0);
    snprintf(d, sizeof d, "%.*s", (int)(strrchr(p, '/') - p), p);
    return d;
}
/* A NUL-terminated malloc'd copy (parsers of text lines take C strings). */
static inline char *fuzz_str(const uint8_t *data, size_t n) {
    char *s = malloc(n + 1);
    if (!s) abort();
    memcpy(s, data, n);
    s[n] = 0;
    return s;
}
#endif
