/* testlib: a tiny test harness. Each tests/test_*.c is its own binary whose main() calls TL_RUN on each
 * test function; every test prints one "PASS name", "FAIL name" or "SKIP name: why" line, and tests/run.sh
 * counts them. A test that cannot run here (no bf16 on this CPU, a library absent from the build) calls
 * TL_SKIP and returns: it is reported as skipped, never as passed.
 * A check that fails prints file:line and the message and marks the current test failed (it goes on, so
 * one run shows every broken check). */
#ifndef GK_TESTLIB_H
#define GK_TESTLIB_H
#include "model/model.h"
#include <stddef.h>
#include <stdio.h>

extern int tl_failed_checks;   /* in the current test */
extern int tl_total_failed;    /* tests failed in this binary */
void tl_fail_at(const char *file, int line, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void tl_run(const char *name, void (*fn)(void));
/* Marks the current test skipped, with the reason (printed on its SKIP line). The test should return next;
 * a failed check before or after still makes it FAIL. */
void tl_skip(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int  tl_summary(void);          /* return value for main: 0 if all passed */

#define TL_RUN(fn) tl_run(#fn, fn)
#define TL_SKIP(...) do { tl_skip(__VA_ARGS__); return; } while (0)
#define CHECK(cond, ...) do { if (!(cond)) tl_fail_at(__FILE__, __LINE__, __VA_ARGS__); } while (0)
/* |a-b| <= atol + rtol*|b| */
#define CHECK_CLOSE(a, b, atol, rtol, what) do { double _a = (a), _b = (b); \
    if (!(fabs(_a - _b) <= (atol) + (rtol) * fabs(_b))) tl_fail_at(__FILE__, __LINE__, \
        "%s: got %.9g want %.9g (diff %.3g)", (what), _a, _b, fabs(_a - _b)); } while (0)

/* Compares arrays; reports the worst element. Returns the max abs diff. */
double tl_check_arrays(const char *file, int line, const char *what, const float *got, const float *want,
                       size_t n, double atol, double rtol);
#define CHECK_ARRAYS(what, got, want, n, atol, rtol) tl_check_arrays(__FILE__, __LINE__, what, got, want, n, atol, rtol)

/* A backend of the given kind with default options (aborts if it cannot be created). */
kern_backend *tl_backend(kern_kind kind);

/* Path of a file under the repository root (tests run from the root; GK_ROOT overrides). Static buffer. */
const char *tl_path(const char *rel);
/* A fresh empty temp directory for this test (under $TMPDIR), malloc'd path. */
char *tl_tmpdir(const char *tag);
/* Fixture tensors of a safetensors file (tests/ref's scripts write them): a malloc'd copy as float32 (any float
 * dtype converted) or int32 (dtype I32 only); NULL when the tensor is absent. n (may be NULL): element count. */
float *st_load_f32(const st_file *f, const char *name, size_t *n);
int32_t *st_load_i32(const st_file *f, const char *name, size_t *n);

#endif
