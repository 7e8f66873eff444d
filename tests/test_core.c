/* test_core.c: core utilities — RNG determinism, atomic writes, JSONL line numbers, size overflow. */
#include "core/core.h"
#include "testlib.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static void test_rng_deterministic(void) {
    gk_rng a, b;
    gk_rng_seed(&a, 42); gk_rng_seed(&b, 42);
    for (int i = 0; i < 100; i++) CHECK(gk_rng_u64(&a) == gk_rng_u64(&b), "same seed diverged at %d", i);
    gk_rng_seed(&b, 43);
    CHECK(gk_rng_u64(&a) != gk_rng_u64(&b), "different seeds agree");
    double s = 0, s2 = 0; int n = 20000;
    for (int i = 0; i < n; i++) { double x = gk_rng_normal(&a); s += x; s2 += x * x; }
    CHECK(fabs(s / n) < 0.05, "normal mean %g", s / n);
    CHECK(fabs(s2 / n - 1) < 0.05, "normal var %g", s2 / n);
    int counts[7] = {0};
    for (int i = 0; i < 70000; i++) counts[gk_rng_below(&a, 7)]++;
    for (int k = 0; k < 7; k++) CHECK(abs(counts[k] - 10000) < 500, "below(7) bucket %d has %d", k, counts[k]);
}

static void test_atomic_write(void) {
    char *d = tl_tmpdir("core");
    char *p = gk_path_join(d, "f.txt");
    gk_err err;
    CHECK(gk_write_file_atomic(p, "hello", 5, &err) == 0, "write: %s", err.msg);
    gk_afile *f = gk_afile_open(p, &err);
    CHECK(f != NULL, "open");
    gk_afile_write(f, "garbage", 7);
    gk_afile_abort(f);   /* a crash mid-write: the old file must survive */
    char *data; size_t len;
    CHECK(gk_read_file(p, &data, &len, &err) == 0 && len == 5 && !memcmp(data, "hello", 5), "old content lost");
    free(data);
    CHECK(gk_write_file_atomic("/nonexistent-dir/x", "a", 1, &err) != 0 && strstr(err.msg, "nonexistent-dir"),
          "error should name the path: %s", err.msg);
    free(p); free(d);
}

static void test_lines(void) {
    char *d = tl_tmpdir("core");
    char *p = gk_path_join(d, "a.jsonl");
    gk_err err;
    const char *txt = "{\"a\":1}\n\n  \n{\"b\":2}\r\n{\"c\":3}";
    gk_write_file_atomic(p, txt, strlen(txt), &err);
    gk_lines r; char *line; size_t no;
    CHECK(gk_lines_open(&r, p, &err) == 0, "open");
    size_t want[] = {1, 4, 5}; int k = 0;
    while (gk_lines_next(&r, &line, &no)) { CHECK(k < 3 && no == want[k], "line %zu", no); k++; }
    CHECK(k == 3, "got %d lines", k);
    gk_lines_close(&r);
    free(p); free(d);
}

static void test_sizes(void) {
    size_t out;
    CHECK(gk_mul_size(SIZE_MAX / 2, 3, &out) != 0, "mul overflow not caught");
    CHECK(gk_add_size(SIZE_MAX, 1, &out) != 0, "add overflow not caught");
    CHECK(gk_mul_size(1000, 1000, &out) == 0 && out == 1000000, "mul");
    long v; double x;
    CHECK(gk_parse_long("12x", &v) != 0, "trailing junk accepted");
    CHECK(gk_parse_double("3e-4", &x) == 0 && x == 3e-4, "double");
}

/* A directory where a file is expected is refused by name (it used to pass ftell's nonsense size to malloc);
 * files whose size stat cannot tell (/proc) are read to their end. */
static void test_read_not_regular(void) {
    char *dir = tl_tmpdir("readdir"), *data = NULL; size_t len = 0; gk_err err = {{0}};
    CHECK(gk_read_file(dir, &data, &len, &err) == -1, "directory read");
    CHECK(strstr(err.msg, "is a directory") && strstr(err.msg, dir), "message: %s", err.msg);
    CHECK(gk_read_file("/proc/self/status", &data, &len, &err) == 0 && len > 0 && strstr(data, "Name:"),
          "/proc file: %s", err.msg);
    free(data);
    free(dir);
}

/* A second writer on a locked directory is refused with the holder's pid (a child process plays the second
 * writer: flock locks belong to open files, so a second open in this process would conflict as well, but a fork
 * is the real case); stale temporaries of dead processes are swept, live ones kept. */
static void test_dir_lock(void) {
    char *dir = tl_tmpdir("lock"); gk_err err = {{0}};
    char *stale = gk_path_join(dir, "model.safetensors.tmp.999999999"), *mine = NULL;
    char name[64]; snprintf(name, sizeof name, "x.tmp.%ld", (long)getpid());
    mine = gk_path_join(dir, name);
    CHECK(gk_write_file_atomic(stale, "x", 1, &err) == 0 && gk_write_file_atomic(mine, "x", 1, &err) == 0, "setup");
    gk_dir_lock *l = NULL;
    CHECK(gk_dir_lock_take(dir, &l, &err) == 0 && l, "first lock: %s", err.msg);
    CHECK(!gk_file_exists(stale), "stale temporary not removed");
    CHECK(gk_file_exists(mine), "a live process's temporary was removed");
    pid_t pid = fork();
    if (pid == 0) {
        gk_dir_lock *l2 = NULL; gk_err e2 = {{0}};
        int ok = gk_dir_lock_take(dir, &l2, &e2) == -1 && strstr(e2.msg, "in use") && strstr(e2.msg, "pid");
        _exit(ok ? 0 : 1);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "second writer was not refused with the holder's pid");
    gk_dir_unlock(l);
    CHECK(gk_dir_lock_take(dir, &l, &err) == 0, "relock after unlock: %s", err.msg);
    gk_dir_unlock(l);
    free(stale); free(mine); free(dir);
}

static void test_utf8_valid(void) {
    struct { const char *s; int ok; size_t bad; } c[] = {
        { "plain ascii", 1, 0 }, { "caf\xc3\xa9 \xe4\xb8\xad \xf0\x9f\x98\x80", 1, 0 },
        { "ab\xff", 0, 2 }, { "\xc0\x80", 0, 0 },            /* overlong NUL */
        { "x\xed\xa0\x80", 0, 1 },                            /* surrogate U+D800 */
        { "\xf4\x90\x80\x80", 0, 0 },                        /* above U+10FFFF */
        { "ok\xe2\x82", 0, 2 },                               /* truncated at the end */
        { "\xe2\x28\xa1", 0, 0 },                            /* bad continuation */
    };
    for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
        size_t bad = 99;
        int ok = gk_utf8_valid(c[i].s, strlen(c[i].s), &bad);
        CHECK(ok == c[i].ok, "case %zu: valid=%d", i, ok);
        if (!c[i].ok) CHECK(bad == c[i].bad, "case %zu: bad at %zu want %zu", i, bad, c[i].bad);
    }
}

static void test_mem_available(void) {
    size_t a = gk_mem_available();
    CHECK(a > ((size_t)1 << 20), "available memory %zu bytes: /proc/meminfo unread?", a);
    gk_err err = {{0}};
    CHECK(gk_check_fits("a small thing", 1e6, &err) == 0, "1 MB refused: %s", err.msg);
    CHECK(gk_check_fits("model d100", 1e15, &err) == -1 && strstr(err.msg, "model d100 needs 1000000.0 GB"), "%s", err.msg);
}

int main(void) {
    TL_RUN(test_rng_deterministic);
    TL_RUN(test_atomic_write);
    TL_RUN(test_lines);
    TL_RUN(test_sizes);
    TL_RUN(test_read_not_regular);
    TL_RUN(test_dir_lock);
    TL_RUN(test_utf8_valid);
    TL_RUN(test_mem_available);
    return tl_summary();
}
