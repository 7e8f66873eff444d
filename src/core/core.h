/* core: the things every other module leans on.
 *
 *  - two error tiers (STYLE.md): GK_CHECK aborts with file:line and a hint for programmer errors and
 *    unrecoverable local failures; anything reachable from outside input returns a status (0 ok, -1 bad)
 *    and writes a message into a caller-owned gk_err;
 *  - checked allocation, a small deterministic RNG, wall clock, progress/ETA formatting;
 *  - file I/O: whole-file reads, atomic writes (temp file, fsync, rename, fsync dir);
 *  - a JSONL line reader that tracks line numbers for error messages (parsing itself is cJSON's);
 *  - SIGINT handling so long jobs can save and exit cleanly.
 */
#ifndef GK_CORE_H
#define GK_CORE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* ---------------------------------------------------------------- errors */

/* Caller-owned error message. Functions that can fail on outside input take a gk_err* (may be NULL)
 * and return 0 on success, -1 on failure with err->msg filled: "what is wrong, and where". */
typedef struct { char msg[1024]; } gk_err;

/* Formats into err (if non-NULL) and returns -1, so `return gk_errf(err, ...)` reads naturally. */
int gk_errf(gk_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Prefixes an existing message: "prefix: old message". Returns -1. */
int gk_err_prefix(gk_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Programmer errors / unrecoverable failures: prints "gptkit: fatal: file:line: message" and aborts. */
void gk_fatal_at(const char *file, int line, const char *fmt, ...) __attribute__((noreturn, format(printf, 3, 4)));
#define GK_FATAL(...) gk_fatal_at(__FILE__, __LINE__, __VA_ARGS__)
#define GK_CHECK(cond, ...) do { if (!(cond)) gk_fatal_at(__FILE__, __LINE__, __VA_ARGS__); } while (0)

/* Checked allocation: aborts with a hint on out-of-memory (the tier-1 case). */
void *gk_malloc(size_t n);
void *gk_calloc(size_t count, size_t size);
void *gk_realloc(void *p, size_t n);
char *gk_strdup(const char *s);
/* Overflow-checked size arithmetic: returns 0 and sets *out, or -1 on overflow. */
int gk_mul_size(size_t a, size_t b, size_t *out);
int gk_add_size(size_t a, size_t b, size_t *out);

/* ---------------------------------------------------------------- logging */
extern int gk_verbose;  /* 0 quiet, 1 normal (default), 2 debug */
void gk_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));   /* to stderr when verbose >= 1 */
void gk_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));  /* always, "warning: " prefix */

/* ---------------------------------------------------------------- RNG */
/* xoshiro256** seeded through splitmix64. Deterministic across platforms; the whole state is 4 u64 so it
 * can be saved in a checkpoint and restored for exact resume. */
typedef struct { uint64_t s[4]; } gk_rng;
void     gk_rng_seed(gk_rng *r, uint64_t seed);
uint64_t gk_rng_u64(gk_rng *r);
uint32_t gk_rng_below(gk_rng *r, uint32_t n);   /* uniform in [0, n), unbiased */
double   gk_rng_uniform(gk_rng *r);             /* uniform in [0, 1), 53 bits */
float    gk_rng_normal(gk_rng *r);              /* standard normal (Box-Muller) */
void     gk_rng_shuffle_u32(gk_rng *r, uint32_t *a, size_t n);  /* Fisher-Yates */

/* ---------------------------------------------------------------- time & progress */
double gk_now(void);                            /* monotonic seconds */
/* "1h02m", "3m05s", "12.3s": into buf (>= 16 bytes). Negative or non-finite gives "?". */
const char *gk_fmt_duration(double seconds, char *buf, size_t n);

/* Index of the first NaN or infinity in x[n] (n if none) / of the first value < 0: checks on loaded data. */
size_t gk_first_nonfinite(const float *x, size_t n);
size_t gk_first_negative(const float *x, size_t n);

/* ---------------------------------------------------------------- files */
/* Reads a whole file into a malloc'd buffer (NUL-terminated for convenience; *len excludes the NUL). */
int gk_read_file(const char *path, char **data, size_t *len, gk_err *err);
int gk_file_exists(const char *path);
int gk_is_dir(const char *path);
int gk_mkdir_p(const char *path, gk_err *err);
/* Path of a per-machine cache file: $XDG_CACHE_HOME/gptkit/NAME, else $HOME/.cache/gptkit/NAME (the directory
 * is created); malloc'd, or NULL where neither variable is set or the directory cannot be made. Holds what is
 * measured once per machine (peak GFLOP/s, the GEMM library `auto` picks). */
char *gk_cache_path(const char *name);
/* "dir" + "/" + "name" into a malloc'd string. */
char *gk_path_join(const char *dir, const char *name);

/* Atomic file writer: data goes to "<path>.tmp.<pid>"; gk_afile_commit fsyncs, renames over path and
 * fsyncs the directory, so a crash leaves either the old file or the new one, never a torn one.
 * gk_afile_abort removes the temp file. Write errors are remembered and reported at commit. */
typedef struct gk_afile gk_afile;
gk_afile *gk_afile_open(const char *path, gk_err *err);
int  gk_afile_write(gk_afile *f, const void *data, size_t n);
int  gk_afile_printf(gk_afile *f, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int  gk_afile_commit(gk_afile *f, gk_err *err);   /* frees f */
void gk_afile_abort(gk_afile *f);                 /* frees f */
/* One-shot: atomically replace path with the n bytes at data. */
int gk_write_file_atomic(const char *path, const void *data, size_t n, gk_err *err);

/* One writer per directory: an advisory exclusive lock (flock) on DIR/.gptkit.lock, which holds the owner's pid
 * for the message a second writer gets ("DIR is in use by another gptkit process (pid 1234)"). The directory is
 * created if needed. Once the lock is held no other gptkit writes there, so temporaries left by a killed save
 * ("*.tmp.<pid>" of a process no longer alive) are removed. The lock ends with gk_dir_unlock or the process. */
typedef struct gk_dir_lock gk_dir_lock;
int  gk_dir_lock_take(const char *dir, gk_dir_lock **out, gk_err *err);
void gk_dir_unlock(gk_dir_lock *l);   /* NULL is fine */

/* Checkpoint directories (src/core/ckpt_dir.c): a save is one atomic unit. gk_ckpt_begin makes a fresh staging
 * directory DIR/.ckpt/<name> (malloc'd path) for the whole checkpoint (a second model goes in a subdirectory of
 * it); gk_ckpt_commit switches DIR/.ckpt/current to it with one rename and shows each of its files at DIR/<rel> as
 * a symlink through current, then removes the previous checkpoint. A kill or an error at any point leaves DIR
 * showing either the previous complete checkpoint or the new one. On error the staging directory is removed.
 * gk_ckpt_sweep (run by gk_dir_lock_take) removes staging directories left by a killed save. Callers hold DIR's
 * lock. */
char *gk_ckpt_begin(const char *dir, long step, gk_err *err);
int  gk_ckpt_commit(const char *dir, const char *staging, gk_err *err);
void gk_ckpt_abort(const char *staging);   /* removes the staging directory (NULL is fine) */
void gk_ckpt_sweep(const char *dir);
/* Forgets DIR's checkpoint: .ckpt/ and the symlinks into it (a stage that starts over). */
void gk_ckpt_drop(const char *dir);
/* Crash tests: with GPTKIT_CRASH_AT=NAME[:K] in the environment, the K-th pass through crash point NAME kills the
 * process (SIGKILL). Points: "save:model" (weights written, resume state not yet), "ckpt:before-switch",
 * "ckpt:after-switch". Free when the variable is unset. */
void gk_crash_point(const char *name);

/* ---------------------------------------------------------------- JSONL */
/* Line-by-line reader over a whole file in memory. Yields each non-blank line with its 1-based number;
 * blank lines (only whitespace) are skipped. The line is NUL-terminated in place (the buffer is ours). */
typedef struct {
    char  *data; size_t len, pos;
    size_t line_no;
    char  *path;
} gk_lines;
int  gk_lines_open(gk_lines *r, const char *path, gk_err *err);
/* Returns 1 with *line set, 0 at end. */
int  gk_lines_next(gk_lines *r, char **line, size_t *line_no);
void gk_lines_close(gk_lines *r);

/* ---------------------------------------------------------------- signals */
/* First Ctrl-C sets a flag the training loops poll (save and exit cleanly); a second one exits at once. */
void gk_sigint_install(void);
int  gk_sigint_pending(void);
void gk_sigint_clear(void);

/* ---------------------------------------------------------------- text */
/* 1 if s[0..n) is well-formed UTF-8 (no overlong forms, surrogates or code points above U+10FFFF), else 0 with
 * *bad (if non-NULL) = the byte offset of the first bad sequence. Text fields of outside input are checked with
 * it, so a message can say where: "chats.jsonl:12: messages[1].content: invalid UTF-8 at byte 37". */
int gk_utf8_valid(const char *s, size_t n, size_t *bad);
/* base64, standard alphabet, padded: encode writes 4*((n+2)/3) bytes to out and returns that length; decode
 * writes at most 3*n/4 bytes, returns -1 on bad input (a length not a multiple of 4, a stray character or '='). */
size_t gk_b64_encode(const uint8_t *in, size_t n, char *out);
int gk_b64_decode(const char *in, size_t n, uint8_t *out, size_t *outn);

/* ---------------------------------------------------------------- misc */
int gk_num_threads(void);   /* OpenMP max threads, or 1 */
/* Bytes of memory this process can still use: the smaller of the system's MemAvailable (/proc/meminfo) and the
 * cgroup's memory.max less its memory.current, where those exist; 0 if nothing can be read (then callers skip
 * their check). Used to refuse a model that cannot fit before allocating it. */
size_t gk_mem_available(void);
/* The refusal every allocation estimate shares: 0 if need <= avail (or avail unknown), else -1 with
 * "WHAT needs 197.3 GB but only 22.1 GB of memory is available". */
int gk_check_fits(const char *what, double need_bytes, gk_err *err);
/* Parses a whole string as a number; returns -1 if trailing junk or out of range. */
int gk_parse_long(const char *s, long *out);
int gk_parse_double(const char *s, double *out);

#endif
