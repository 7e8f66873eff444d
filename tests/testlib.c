/* testlib.c: see testlib.h. */
#include "testlib.h"
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int tl_failed_checks = 0;
int tl_total_failed = 0;
static char tl_skip_why[256];
static int tl_total_run = 0;

void tl_fail_at(const char *file, int line, const char *fmt, ...) {
    tl_failed_checks++;
    if (tl_failed_checks > 20) return;   /* keep logs readable */
    fprintf(stdout, "  %s:%d: ", file, line);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stdout, fmt, ap);
    va_end(ap);
    fputc('\n', stdout);
    fflush(stdout);
}

void tl_skip(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tl_skip_why, sizeof tl_skip_why, fmt, ap);
    va_end(ap);
    if (!tl_skip_why[0]) snprintf(tl_skip_why, sizeof tl_skip_why, "skipped");
}

void tl_run(const char *name, void (*fn)(void)) {
    tl_failed_checks = 0;
    tl_skip_why[0] = 0;
    fn();
    tl_total_run++;
    if (tl_failed_checks) { tl_total_failed++; printf("FAIL %s (%d checks)\n", name, tl_failed_checks); }
    else if (tl_skip_why[0]) printf("SKIP %s: %s\n", name, tl_skip_why);
    else printf("PASS %s\n", name);
    fflush(stdout);
}

int tl_summary(void) { return tl_total_failed ? 1 : 0; }

double tl_check_arrays(const char *file, int line, const char *what, const float *got, const float *want,
                       size_t n, double atol, double rtol) {
    double worst = 0; size_t wi = 0; int bad = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - (double)want[i]);
        if (!(d <= atol + rtol * fabs((double)want[i]))) { if (!bad || d > worst) { worst = d; wi = i; } bad++; }
        else if (!bad && d > worst) { worst = d; wi = i; }
        if (isnan(got[i]) && !isnan(want[i])) { bad++; wi = i; worst = INFINITY; }
    }
    if (bad) tl_fail_at(file, line, "%s: %d of %zu elements off; worst [%zu] got %.9g want %.9g (diff %.3g)",
                        what, bad, n, wi, got[wi], want[wi], worst);
    return worst;
}

const char *tl_path(const char *rel) {
    static char buf[4096];
    const char *root = getenv("GK_ROOT");
    snprintf(buf, sizeof buf, "%s/%s", root ? root : ".", rel);
    return buf;
}

char *tl_tmpdir(const char *tag) {
    const char *base = getenv("TMPDIR");
    char tmpl[4096];
    snprintf(tmpl, sizeof tmpl, "%s/gptkit-%s-XXXXXX", base ? base : "/tmp", tag);
    char *d = mkdtemp(tmpl);
    if (!d) { perror("mkdtemp"); exit(2); }
    return strdup(d);
}

/* ---------------------------------------------------------------- fixture tensors */

float *st_load_f32(const st_file *f, const char *name, size_t *n) {
    const st_tensor *t = st_find(f, name);
    if (!t) return NULL;
    size_t numel = 1;
    for (int i = 0; i < t->ndim; i++) numel *= t->shape[i];
    float *d = malloc((numel ? numel : 1) * sizeof(float));
    gk_err err;
    if (st_read_f32(f, t, d, &err)) { free(d); return NULL; }
    if (n) *n = numel;
    return d;
}

int32_t *st_load_i32(const st_file *f, const char *name, size_t *n) {
    const st_tensor *t = st_find(f, name);
    if (!t || strcmp(t->dtype, "I32")) return NULL;
    size_t bytes = t->end - t->begin;
    int32_t *d = malloc(bytes ? bytes : 1);
    memcpy(d, f->data + t->begin, bytes);
    if (n) *n = bytes / 4;
    return d;
}

kern_backend *tl_backend(kern_kind kind) {
    kern_backend_opts o;
    kern_backend_opts_default(&o);
    o.kind = kind;
    gk_err err;
    kern_backend *be = kern_backend_create(&o, &err);
    GK_CHECK(be != NULL, "test backend: %s", err.msg);
    return be;
}
