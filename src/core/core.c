/* core.c: errors, allocation, RNG, time, atomic files, JSONL lines, SIGINT. See core.h. */
#include "core/core.h"

#include <errno.h>
#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <libgen.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#ifdef _OPENMP
#include <omp.h>
#endif

/* ---------------------------------------------------------------- errors */

int gk_errf(gk_err *err, const char *fmt, ...) {
    if (!err) return -1;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
    return -1;
}

int gk_err_prefix(gk_err *err, const char *fmt, ...) {
    if (!err) return -1;
    char prefix[512], old[sizeof err->msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, err->msg, sizeof old);
    snprintf(err->msg, sizeof err->msg, "%.500s: %.500s", prefix, old);
    return -1;
}

void gk_fatal_at(const char *file, int line, const char *fmt, ...) {
    fflush(stdout);
    fprintf(stderr, "gptkit: fatal: %s:%d: ", file, line);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    abort();
}

void *gk_malloc(size_t n) {
    void *p = malloc(n ? n : 1);
    GK_CHECK(p, "out of memory allocating %zu bytes (try a smaller batch size or model)", n);
    return p;
}
void *gk_calloc(size_t count, size_t size) {
    void *p = calloc(count ? count : 1, size ? size : 1);
    GK_CHECK(p, "out of memory allocating %zu x %zu bytes (try a smaller batch size or model)", count, size);
    return p;
}
void *gk_realloc(void *p, size_t n) {
    void *q = realloc(p, n ? n : 1);
    GK_CHECK(q, "out of memory reallocating to %zu bytes", n);
    return q;
}
char *gk_strdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = gk_malloc(n);
    memcpy(d, s, n);
    return d;
}
int gk_mul_size(size_t a, size_t b, size_t *out) {
    if (a && b > SIZE_MAX / a) return -1;
    *out = a * b;
    return 0;
}
int gk_add_size(size_t a, size_t b, size_t *out) {
    if (b > SIZE_MAX - a) return -1;
    *out = a + b;
    return 0;
}

/* ---------------------------------------------------------------- logging */
int gk_verbose = 1;
void gk_log(const char *fmt, ...) {
    if (gk_verbose < 1) return;
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
}
void gk_warn(const char *fmt, ...) {
    fputs("warning: ", stderr);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
}

/* ---------------------------------------------------------------- RNG */
static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}
void gk_rng_seed(gk_rng *r, uint64_t seed) {
    uint64_t x = seed;
    for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&x);
}
static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
uint64_t gk_rng_u64(gk_rng *r) {
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0]; s[3] ^= s[1]; s[1] ^= s[2]; s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}
uint32_t gk_rng_below(gk_rng *r, uint32_t n) {
    if (n <= 1) return 0;
    /* rejection sampling on the top 32 bits */
    uint32_t limit = (uint32_t)(-n) % n;   /* 2^32 mod n */
    for (;;) {
        uint32_t x = (uint32_t)(gk_rng_u64(r) >> 32);
        if (x >= limit) return x % n;
    }
}
double gk_rng_uniform(gk_rng *r) { return (double)(gk_rng_u64(r) >> 11) * (1.0 / 9007199254740992.0); }
float gk_rng_normal(gk_rng *r) {
    double u1 = gk_rng_uniform(r), u2 = gk_rng_uniform(r);
    if (u1 < 1e-300) u1 = 1e-300;
    return (float)(sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2));
}
void gk_rng_shuffle_u32(gk_rng *r, uint32_t *a, size_t n) {
    for (size_t i = n; i > 1; i--) {
        size_t j = (size_t)(gk_rng_uniform(r) * (double)i);
        if (j >= i) j = i - 1;
        uint32_t t = a[i - 1]; a[i - 1] = a[j]; a[j] = t;
    }
}

/* ---------------------------------------------------------------- time */
double gk_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
const char *gk_fmt_duration(double s, char *buf, size_t n) {
    if (!(s >= 0) || !isfinite(s)) snprintf(buf, n, "?");
    else if (s < 60) snprintf(buf, n, "%.1fs", s);
    else if (s < 3600) snprintf(buf, n, "%dm%02ds", (int)(s / 60), (int)s % 60);
    else snprintf(buf, n, "%dh%02dm", (int)(s / 3600), ((int)s % 3600) / 60);
    return buf;
}

/* ---------------------------------------------------------------- files */
/* Reads what a descriptor yields until end of file, growing the buffer: for pipes, character devices and
 * /proc files, whose size stat cannot tell (it says 0, or nothing). */
static int read_stream(int fd, const char *path, char **data, size_t *len, gk_err *err) {
    size_t cap = 1 << 16, n = 0;
    char *buf = gk_malloc(cap + 1);
    for (;;) {
        if (n == cap) buf = gk_realloc(buf, (cap *= 2) + 1);
        ssize_t got = read(fd, buf + n, cap - n);
        if (got == 0) break;
        if (got < 0) {
            if (errno == EINTR) continue;
            free(buf);
            return gk_errf(err, "%s: read error: %s", path, strerror(errno));
        }
        n += (size_t)got;
    }
    buf[n] = 0;
    *data = buf;
    if (len) *len = n;
    return 0;
}

/* Regular files are sized with fstat (not ftell, which "succeeds" on a directory with a nonsense size) and read
 * in one go; a directory is refused by name; pipes and /proc files are read as streams. */
int gk_read_file(const char *path, char **data, size_t *len, gk_err *err) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return gk_errf(err, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) { close(fd); return gk_errf(err, "%s: cannot stat: %s", path, strerror(errno)); }
    if (S_ISDIR(st.st_mode)) { close(fd); return gk_errf(err, "%s: is a directory, expected a file", path); }
    if (!S_ISREG(st.st_mode) || st.st_size == 0) {
        int rc = read_stream(fd, path, data, len, err);
        close(fd);
        return rc;
    }
    size_t sz = (size_t)st.st_size, got = 0;
    char *buf = gk_malloc(sz + 1);
    while (got < sz) {
        ssize_t r = read(fd, buf + got, sz - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        got += (size_t)r;
    }
    close(fd);
    if (got != sz) { free(buf); return gk_errf(err, "%s: short read (%zu of %zu bytes)", path, got, sz); }
    buf[sz] = 0;
    *data = buf;
    if (len) *len = sz;
    return 0;
}
int gk_file_exists(const char *path) { struct stat st; return stat(path, &st) == 0; }
int gk_is_dir(const char *path) { struct stat st; return stat(path, &st) == 0 && S_ISDIR(st.st_mode); }
int gk_mkdir_p(const char *path, gk_err *err) {
    char *p = gk_strdup(path);
    for (char *q = p + 1; ; q++) {
        if (*q == '/' || *q == 0) {
            char c = *q; *q = 0;
            if (mkdir(p, 0755) != 0 && errno != EEXIST) {
                int e = errno; free(p);
                return gk_errf(err, "%s: cannot create directory: %s", path, strerror(e));
            }
            *q = c;
            if (!c) break;
        }
    }
    free(p);
    if (!gk_is_dir(path)) return gk_errf(err, "%s: exists and is not a directory", path);
    return 0;
}
char *gk_cache_path(const char *name) {
    const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    char *dir;
    if (xdg && *xdg) dir = gk_path_join(xdg, "gptkit");
    else if (home && *home) dir = gk_path_join(home, ".cache/gptkit");
    else return NULL;
    char *p = gk_mkdir_p(dir, NULL) == 0 ? gk_path_join(dir, name) : NULL;
    free(dir);
    return p;
}

char *gk_path_join(const char *dir, const char *name) {
    size_t a = strlen(dir), b = strlen(name);
    char *s = gk_malloc(a + b + 2);
    memcpy(s, dir, a);
    size_t k = a;
    if (a && dir[a - 1] != '/') s[k++] = '/';
    memcpy(s + k, name, b + 1);
    return s;
}

struct gk_afile { FILE *f; char *path, *tmp; int failed; };

gk_afile *gk_afile_open(const char *path, gk_err *err) {
    gk_afile *a = gk_calloc(1, sizeof *a);
    a->path = gk_strdup(path);
    size_t n = strlen(path) + 32;
    a->tmp = gk_malloc(n);
    snprintf(a->tmp, n, "%s.tmp.%ld", path, (long)getpid());
    a->f = fopen(a->tmp, "wb");
    if (!a->f) {
        gk_errf(err, "%s: cannot create temp file %s: %s", path, a->tmp, strerror(errno));
        free(a->path); free(a->tmp); free(a);
        return NULL;
    }
    return a;
}
int gk_afile_write(gk_afile *a, const void *data, size_t n) {
    if (a->failed) return -1;
    if (n && fwrite(data, 1, n, a->f) != n) { a->failed = errno ? errno : EIO; return -1; }
    return 0;
}
int gk_afile_printf(gk_afile *a, const char *fmt, ...) {
    if (a->failed) return -1;
    va_list ap;
    va_start(ap, fmt);
    int r = vfprintf(a->f, fmt, ap);
    va_end(ap);
    if (r < 0) { a->failed = errno ? errno : EIO; return -1; }
    return 0;
}
static void afile_free(gk_afile *a) { free(a->path); free(a->tmp); free(a); }
void gk_afile_abort(gk_afile *a) {
    if (!a) return;
    if (a->f) fclose(a->f);
    unlink(a->tmp);
    afile_free(a);
}
int gk_afile_commit(gk_afile *a, gk_err *err) {
    int rc = 0;
    if (!a->failed && fflush(a->f) != 0) a->failed = errno ? errno : EIO;
    if (!a->failed && fsync(fileno(a->f)) != 0) a->failed = errno ? errno : EIO;
    if (fclose(a->f) != 0 && !a->failed) a->failed = errno ? errno : EIO;
    a->f = NULL;
    if (a->failed) {
        rc = gk_errf(err, "%s: write failed: %s (previous file left untouched)", a->path, strerror(a->failed));
        unlink(a->tmp);
    } else if (rename(a->tmp, a->path) != 0) {
        rc = gk_errf(err, "%s: cannot rename temp file into place: %s", a->path, strerror(errno));
        unlink(a->tmp);
    } else {
        char *d = gk_strdup(a->path);
        int fd = open(dirname(d), O_RDONLY | O_DIRECTORY);
        if (fd >= 0) { fsync(fd); close(fd); }
        free(d);
    }
    afile_free(a);
    return rc;
}
int gk_write_file_atomic(const char *path, const void *data, size_t n, gk_err *err) {
    gk_afile *a = gk_afile_open(path, err);
    if (!a) return -1;
    gk_afile_write(a, data, n);
    return gk_afile_commit(a, err);
}

size_t gk_first_nonfinite(const float *x, size_t n) {
    for (size_t i = 0; i < n; i++) if (!isfinite(x[i])) return i;
    return n;
}
size_t gk_first_negative(const float *x, size_t n) {
    for (size_t i = 0; i < n; i++) if (x[i] < 0) return i;
    return n;
}

/* ---------------------------------------------------------------- text */
int gk_utf8_valid(const char *str, size_t n, size_t *bad) {
    const unsigned char *s = (const unsigned char *)str;
    for (size_t i = 0; i < n;) {
        unsigned c = s[i];
        size_t len; unsigned cp, min;
        if (c < 0x80) { i++; continue; }
        else if ((c & 0xE0) == 0xC0) { len = 2; cp = c & 0x1F; min = 0x80; }
        else if ((c & 0xF0) == 0xE0) { len = 3; cp = c & 0x0F; min = 0x800; }
        else if ((c & 0xF8) == 0xF0) { len = 4; cp = c & 0x07; min = 0x10000; }
        else goto invalid;
        if (i + len > n) goto invalid;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xC0) != 0x80) goto invalid;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        /* overlong forms, UTF-16 surrogates and values beyond Unicode are not characters */
        if (cp < min || (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF) goto invalid;
        i += len;
        continue;
    invalid:
        if (bad) *bad = i;
        return 0;
    }
    return 1;
}

/* ---------------------------------------------------------------- directory lock */
struct gk_dir_lock { int fd; };

/* A name "<anything>.tmp.<pid>" whose pid is not a live process: what gk_afile leaves when killed mid-write. */
static int stale_tmp_name(const char *name) {
    const char *t = strstr(name, ".tmp.");
    if (!t) return 0;
    char *end = NULL;
    long pid = strtol(t + 5, &end, 10);
    if (!end || *end || pid <= 0 || pid == (long)getpid()) return 0;
    return kill((pid_t)pid, 0) != 0 && errno == ESRCH;
}

static void remove_stale_tmp(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        if (!stale_tmp_name(e->d_name)) continue;
        char *p = gk_path_join(dir, e->d_name);
        if (unlink(p) == 0) gk_log("removed a temporary left by an interrupted save: %s\n", p);
        free(p);
    }
    closedir(d);
}

int gk_dir_lock_take(const char *dir, gk_dir_lock **out, gk_err *err) {
    *out = NULL;
    if (gk_mkdir_p(dir, err) != 0) return -1;
    char *path = gk_path_join(dir, ".gptkit.lock");
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) { gk_errf(err, "%s: cannot open lock file: %s", path, strerror(errno)); free(path); return -1; }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        char buf[32] = {0};
        ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
        long pid = n > 0 ? strtol(buf, NULL, 10) : 0;
        close(fd); free(path);
        if (pid > 0) return gk_errf(err, "%s is in use by another gptkit process (pid %ld); wait for it or use another directory", dir, pid);
        return gk_errf(err, "%s is in use by another gptkit process; wait for it or use another directory", dir);
    }
    char buf[32];
    int n = snprintf(buf, sizeof buf, "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) != 0 || pwrite(fd, buf, (size_t)n, 0) != n) gk_warn("%s: cannot record our pid", path);
    free(path);
    remove_stale_tmp(dir);
    gk_ckpt_sweep(dir);
    *out = gk_malloc(sizeof **out);
    (*out)->fd = fd;
    return 0;
}

void gk_dir_unlock(gk_dir_lock *l) {
    if (!l) return;
    close(l->fd);   /* closing the descriptor releases the flock */
    free(l);
}

/* ---------------------------------------------------------------- JSONL */
int gk_lines_open(gk_lines *r, const char *path, gk_err *err) {
    memset(r, 0, sizeof *r);
    if (gk_read_file(path, &r->data, &r->len, err) != 0) return -1;
    r->path = gk_strdup(path);
    return 0;
}
int gk_lines_next(gk_lines *r, char **line, size_t *line_no) {
    while (r->pos < r->len) {
        char *s = r->data + r->pos;
        char *nl = memchr(s, '\n', r->len - r->pos);
        size_t n = nl ? (size_t)(nl - s) : r->len - r->pos;
        r->pos += n + (nl ? 1 : 0);
        r->line_no++;
        s[n] = 0;
        if (n && s[n - 1] == '\r') s[n - 1] = 0;
        int blank = 1;
        for (char *p = s; *p; p++) if (*p != ' ' && *p != '\t' && *p != '\r') { blank = 0; break; }
        if (blank) continue;
        *line = s;
        if (line_no) *line_no = r->line_no;
        return 1;
    }
    return 0;
}
void gk_lines_close(gk_lines *r) { free(r->data); free(r->path); memset(r, 0, sizeof *r); }

/* ---------------------------------------------------------------- signals */
static volatile sig_atomic_t g_sigint = 0;
static void on_sigint(int sig) {
    (void)sig;
    if (g_sigint) _exit(130);
    g_sigint = 1;
    static const char msg[] = "\n[interrupt] finishing the current step, saving, then exiting (Ctrl-C again to quit now)\n";
    ssize_t w = write(2, msg, sizeof msg - 1);
    (void)w;
}
void gk_sigint_install(void) {
    /* The handler runs on a stack of its own (the main thread's; SA_ONSTACK). On the interrupted stack, a Ctrl-C
     * landing inside oneDNN's JIT-generated GEMM corrupted the heap: tests/cli/rlhf.sh's ppo_sigint_saves crashed
     * in 3 runs of 15 and 5 of 20, always in the next GEMM's free, and in none of 45 with this stack
     * (bench/stress/ppo_sigint.sh). The likely cause is the handler's frame overwriting data such code keeps below
     * its stack pointer. */
    static char *alt;
    if (!alt) {
        size_t n = SIGSTKSZ > 65536 ? (size_t)SIGSTKSZ : 65536;
        alt = gk_malloc(n);
        stack_t ss = { .ss_sp = alt, .ss_size = n, .ss_flags = 0 };
        if (sigaltstack(&ss, NULL) != 0) { free(alt); alt = NULL; }
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sa.sa_flags = alt ? SA_ONSTACK : 0;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    /* mpirun forwards SIGUSR1 to every rank without ending the job (it answers Ctrl-C with SIGTERM, then
     * SIGKILL after a short grace): `kill -USR1 <mpirun>` asks a long data-parallel run to save and stop */
    sigaction(SIGUSR1, &sa, NULL);
}
int gk_sigint_pending(void) { return g_sigint != 0; }
void gk_sigint_clear(void) { g_sigint = 0; }

/* ---------------------------------------------------------------- misc */
int gk_num_threads(void) {
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}
/* A number read from a one-line file (cgroup v2 memory files); 0 if absent or "max". */
static size_t read_size_file(const char *path) {
    char *d = NULL; size_t n = 0;
    if (gk_read_file(path, &d, &n, NULL) != 0) return 0;
    unsigned long long v = strtoull(d, NULL, 10);
    free(d);
    return (size_t)v;
}

size_t gk_mem_available(void) {
    size_t avail = 0;
    char *d = NULL; size_t n = 0;
    if (gk_read_file("/proc/meminfo", &d, &n, NULL) == 0) {
        const char *p = strstr(d, "MemAvailable:");
        if (p) avail = (size_t)strtoull(p + 13, NULL, 10) * 1024;
        free(d);
    }
    size_t max = read_size_file("/sys/fs/cgroup/memory.max"), cur = read_size_file("/sys/fs/cgroup/memory.current");
    if (max && max > cur && (!avail || max - cur < avail)) avail = max - cur;
    return avail;
}

int gk_check_fits(const char *what, double need, gk_err *err) {
    size_t avail = gk_mem_available();
    if (!avail || need <= (double)avail) return 0;
    return gk_errf(err, "%s needs %.1f GB but only %.1f GB of memory is available", what, need / 1e9, (double)avail / 1e9);
}

int gk_parse_long(const char *s, long *out) {
    if (!s || !*s) return -1;
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end) return -1;
    *out = v;
    return 0;
}
int gk_parse_double(const char *s, double *out) {
    if (!s || !*s) return -1;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || *end) return -1;
    *out = v;
    return 0;
}

/* ---------------------------------------------------------------- base64 */
static const char B64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

size_t gk_b64_encode(const uint8_t *in, size_t n, char *out) {
    size_t o = 0, i = 0;
    for (; i + 3 <= n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        out[o++] = B64[v >> 18]; out[o++] = B64[(v >> 12) & 63]; out[o++] = B64[(v >> 6) & 63]; out[o++] = B64[v & 63];
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)in[i] << 16;
        out[o++] = B64[v >> 18]; out[o++] = B64[(v >> 12) & 63]; out[o++] = '='; out[o++] = '=';
    } else if (n - i == 2) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
        out[o++] = B64[v >> 18]; out[o++] = B64[(v >> 12) & 63]; out[o++] = B64[(v >> 6) & 63]; out[o++] = '=';
    }
    return o;
}

static int b64v(char c) {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}

int gk_b64_decode(const char *in, size_t n, uint8_t *out, size_t *outn) {
    if (n == 0 || n % 4) return -1;
    size_t o = 0;
    for (size_t i = 0; i < n; i += 4) {
        int v[4], pad = 0;
        for (int k = 0; k < 4; k++) {
            if (in[i + k] == '=' && i + 4 == n && k >= 2) { v[k] = 0; pad++; continue; }
            if (pad) return -1;   /* data after '=' */
            v[k] = b64v(in[i + k]);
            if (v[k] < 0) return -1;
        }
        uint32_t x = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 | (uint32_t)v[3];
        out[o++] = (uint8_t)(x >> 16);
        if (pad < 2) out[o++] = (uint8_t)(x >> 8);
        if (pad < 1) out[o++] = (uint8_t)x;
    }
    *outn = o;
    return 0;
}
