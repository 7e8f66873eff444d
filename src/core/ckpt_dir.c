/* Checkpoint directories: a save is one atomic unit (issue 12).
 *
 * A checkpoint is several files (weights, config, resume state, and those of a second model in a subdirectory),
 * and each one replaced atomically is not enough: a kill between two of them leaves a pair that does not belong
 * together. So a save writes the whole checkpoint into a fresh directory DIR/.ckpt/<name>/ and then switches the
 * symlink DIR/.ckpt/current to it with one rename(2). Every file of the checkpoint is seen at its usual place,
 * DIR/<rel>, as a relative symlink through .ckpt/current — so readers (gptkit, transformers, cp) open DIR/model.
 * safetensors as before, and at every instant all of them resolve into one complete checkpoint.
 *
 * Layout after two saves:
 *   DIR/model.safetensors        -> .ckpt/current/model.safetensors
 *   DIR/value/config.json        -> ../.ckpt/current/value/config.json
 *   DIR/.ckpt/current            -> s000200-4242-2
 *   DIR/.ckpt/s000200-4242-2/    the complete checkpoint
 * A directory written by an older gptkit (plain files) is adopted at the first save: its files are hard-linked
 * into .ckpt/ and current points there before any of them is replaced by a symlink. */
#include "core/core.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CKPT_SUB ".ckpt"

/* ---------------------------------------------------------------- small file-system helpers */

static void fsync_dir(const char *dir) {
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd >= 0) { fsync(fd); close(fd); }
}

/* Removes path and everything under it (no symlink is followed). Best effort. */
static void remove_tree(const char *path) {
    struct stat st;
    if (lstat(path, &st) != 0) return;
    if (S_ISDIR(st.st_mode)) {
        DIR *d = opendir(path);
        if (d) {
            for (struct dirent *e; (e = readdir(d)) != NULL;) {
                if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
                char *p = gk_path_join(path, e->d_name);
                remove_tree(p);
                free(p);
            }
            closedir(d);
        }
        rmdir(path);
    } else {
        unlink(path);
    }
}

/* The name .ckpt/current points to (malloc'd), or NULL when there is none. */
static char *current_target(const char *dir) {
    char *cur = gk_path_join(dir, CKPT_SUB "/current");
    char buf[256];
    ssize_t n = readlink(cur, buf, sizeof buf - 1);
    free(cur);
    if (n <= 0) return NULL;
    buf[n] = 0;
    return gk_strdup(buf);
}

/* Points link (a path) at target, replacing whatever link is there, atomically. */
static int symlink_atomic(const char *target, const char *link, gk_err *err) {
    size_t n = strlen(link) + 32;
    char *tmp = gk_malloc(n);
    snprintf(tmp, n, "%s.tmp.%ld", link, (long)getpid());
    unlink(tmp);
    int rc = 0;
    if (symlink(target, tmp) != 0) rc = gk_errf(err, "%s: cannot create a symlink: %s", tmp, strerror(errno));
    else if (rename(tmp, link) != 0) {
        rc = gk_errf(err, "%s: cannot switch the symlink: %s", link, strerror(errno));
        unlink(tmp);
    }
    free(tmp);
    return rc;
}

/* ---------------------------------------------------------------- the files of a checkpoint */

typedef struct { char **rel; size_t n, cap; } name_list;

static void names_free(name_list *l) {
    for (size_t i = 0; i < l->n; i++) free(l->rel[i]);
    free(l->rel);
}

/* Every regular file under root, as paths relative to it ("model.safetensors", "value/config.json"). */
static void list_files(const char *root, const char *rel, name_list *out) {
    char *path = rel ? gk_path_join(root, rel) : gk_strdup(root);
    DIR *d = opendir(path);
    if (d) {
        for (struct dirent *e; (e = readdir(d)) != NULL;) {
            if (e->d_name[0] == '.') continue;   /* ".", "..", and no hidden file belongs to a checkpoint */
            char *r = rel ? gk_path_join(rel, e->d_name) : gk_strdup(e->d_name);
            char *p = gk_path_join(root, r);
            struct stat st;
            if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode)) { list_files(root, r, out); free(r); }
            else if (lstat(p, &st) == 0 && S_ISREG(st.st_mode)) {
                if (out->n == out->cap) { out->cap = out->cap ? 2 * out->cap : 8; out->rel = gk_realloc(out->rel, out->cap * sizeof *out->rel); }
                out->rel[out->n++] = r;
            } else free(r);
            free(p);
        }
        closedir(d);
    }
    free(path);
}

/* The symlink text for DIR/rel: "../" once per directory level of rel, then .ckpt/current/rel. */
static char *link_text(const char *rel) {
    size_t depth = 0;
    for (const char *p = rel; *p; p++) depth += *p == '/';
    size_t n = 3 * depth + strlen(CKPT_SUB "/current/") + strlen(rel) + 1;
    char *s = gk_malloc(n), *w = s;
    for (size_t i = 0; i < depth; i++) { memcpy(w, "../", 3); w += 3; }
    snprintf(w, n - 3 * depth, CKPT_SUB "/current/%s", rel);
    return s;
}

/* ---------------------------------------------------------------- adopting an older directory */

/* DIR holds plain checkpoint files (written before checkpoints were units, or copied in) and no current:
 * hard-link (or copy) them into .ckpt/adopted-<pid> and make that current, so that replacing each plain file
 * by its symlink afterwards never changes what DIR shows. */
static int adopt_plain_files(const char *dir, const name_list *names, gk_err *err) {
    char name[64];
    snprintf(name, sizeof name, "adopted-%ld", (long)getpid());
    char *sub = gk_path_join(dir, CKPT_SUB), *adir = gk_path_join(sub, name);
    remove_tree(adir);
    int rc = gk_mkdir_p(adir, err), any = 0;
    for (size_t i = 0; rc == 0 && i < names->n; i++) {
        char *src = gk_path_join(dir, names->rel[i]), *dst = gk_path_join(adir, names->rel[i]);
        struct stat st;
        if (lstat(src, &st) == 0 && S_ISREG(st.st_mode)) {
            char *dd = gk_strdup(dst);
            char *slash = strrchr(dd, '/');
            if (slash) { *slash = 0; rc = gk_mkdir_p(dd, err); }
            free(dd);
            if (rc == 0 && link(src, dst) != 0) {   /* another file system below DIR, or no hard links: copy */
                char *data = NULL; size_t len = 0;
                rc = gk_read_file(src, &data, &len, err);
                if (rc == 0) rc = gk_write_file_atomic(dst, data, len, err);
                free(data);
            }
            any = 1;
        }
        free(src); free(dst);
    }
    if (rc == 0 && any) {
        char *cur = gk_path_join(sub, "current");
        rc = symlink_atomic(name, cur, err);
        free(cur);
        fsync_dir(sub);
    }
    if (rc != 0 || !any) remove_tree(adir);
    free(sub); free(adir);
    return rc;
}

/* ---------------------------------------------------------------- begin / commit / abort */

char *gk_ckpt_begin(const char *dir, long step, gk_err *err) {
    static unsigned seq;
    char name[96];
    snprintf(name, sizeof name, "s%06ld-%ld-%u", step, (long)getpid(), ++seq);
    char *sub = gk_path_join(dir, CKPT_SUB);
    char *stage = gk_path_join(sub, name);
    free(sub);
    remove_tree(stage);
    if (gk_mkdir_p(stage, err)) { free(stage); return NULL; }
    return stage;
}

void gk_ckpt_abort(const char *staging) {
    if (staging) remove_tree(staging);
}

/* Gives every file of the checkpoint its symlink DIR/rel (made once; a plain file there is replaced). */
static int ensure_links(const char *dir, const name_list *names, gk_err *err) {
    for (size_t i = 0; i < names->n; i++) {
        char *path = gk_path_join(dir, names->rel[i]), *want = link_text(names->rel[i]);
        char have[512];
        ssize_t n = readlink(path, have, sizeof have - 1);
        int ok = n > 0 && (size_t)n == strlen(want) && !memcmp(have, want, (size_t)n);
        int rc = 0;
        if (!ok) {
            char *parent = gk_strdup(path);
            char *slash = strrchr(parent, '/');
            if (slash) { *slash = 0; rc = gk_mkdir_p(parent, err); }
            free(parent);
            struct stat st;
            if (rc == 0 && lstat(path, &st) == 0 && S_ISDIR(st.st_mode))
                rc = gk_errf(err, "%s is a directory, where the checkpoint has a file", path);
            if (rc == 0) rc = symlink_atomic(want, path, err);
        }
        free(path); free(want);
        if (rc) return -1;
    }
    return 0;
}

int gk_ckpt_commit(const char *dir, const char *staging, gk_err *err) {
    name_list names = {0};
    list_files(staging, NULL, &names);
    char *sub = gk_path_join(dir, CKPT_SUB), *old = current_target(dir);
    int rc = 0;
    if (!old) rc = adopt_plain_files(dir, &names, err);
    if (!old && rc == 0) old = current_target(dir);
    /* links first: each resolves through current, so until the switch they show the previous checkpoint (or
     * dangle, like a file not written yet, when there is none) */
    if (rc == 0) rc = ensure_links(dir, &names, err);
    gk_crash_point("ckpt:before-switch");
    if (rc == 0) {
        char *cur = gk_path_join(sub, "current");
        const char *base = strrchr(staging, '/');
        rc = symlink_atomic(base ? base + 1 : staging, cur, err);
        free(cur);
        fsync_dir(sub);
    }
    gk_crash_point("ckpt:after-switch");
    if (rc == 0 && old) {
        char *op = gk_path_join(sub, old);
        remove_tree(op);
        free(op);
    }
    if (rc != 0) remove_tree(staging);
    free(sub); free(old);
    names_free(&names);
    return rc;
}

/* A copy made with symlinks followed (cp -rL) has a real directory where .ckpt/current was a symlink: give it
 * a name and point a new current at it, so the next switch can replace current. */
static void relink_copied_current(const char *sub) {
    char *cur = gk_path_join(sub, "current");
    struct stat st;
    if (lstat(cur, &st) == 0 && S_ISDIR(st.st_mode)) {
        char name[64];
        snprintf(name, sizeof name, "copied-%ld", (long)getpid());
        char *dst = gk_path_join(sub, name);
        gk_err e = {0};
        if (rename(cur, dst) == 0 && symlink_atomic(name, cur, &e) == 0) fsync_dir(sub);
        free(dst);
    }
    free(cur);
}

void gk_ckpt_sweep(const char *dir) {
    char *sub = gk_path_join(dir, CKPT_SUB);
    relink_copied_current(sub);
    char *cur = current_target(dir);
    /* without a current nothing here is known to be garbage (a killed first save leaves only a staging
     * directory, which is harmless and goes once a save completes) */
    DIR *d = cur ? opendir(sub) : NULL;
    if (d) {
        for (struct dirent *e; (e = readdir(d)) != NULL;) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..") || !strcmp(e->d_name, "current")) continue;
            if (!strcmp(e->d_name, cur)) continue;
            char *p = gk_path_join(sub, e->d_name);
            gk_log("removed an incomplete checkpoint left by an interrupted save: %s\n", p);
            remove_tree(p);
            free(p);
        }
        closedir(d);
    }
    free(sub); free(cur);
}

/* Unlinks every symlink under path (recursively, .ckpt aside) that points through .ckpt/current. */
static void unlink_ckpt_links(const char *path) {
    DIR *d = opendir(path);
    if (!d) return;
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..") || !strcmp(e->d_name, CKPT_SUB)) continue;
        char *p = gk_path_join(path, e->d_name);
        struct stat st;
        char have[512];
        ssize_t n;
        if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode)) unlink_ckpt_links(p);
        else if ((n = readlink(p, have, sizeof have - 1)) > 0) {
            have[n] = 0;
            if (strstr(have, CKPT_SUB "/current/")) unlink(p);
        }
        free(p);
    }
    closedir(d);
}

void gk_ckpt_drop(const char *dir) {
    unlink_ckpt_links(dir);
    char *sub = gk_path_join(dir, CKPT_SUB);
    remove_tree(sub);
    free(sub);
}

/* ---------------------------------------------------------------- crash points (tests) */

void gk_crash_point(const char *name) {
    /* GPTKIT_CRASH_AT=NAME[:K]: the K-th time (default 1st) this process passes NAME, it is killed as by
     * kill -9, so the crash tests can stop a save between any two of its writes. */
    static const char *spec;
    static int init;
    static long count;
    if (!init) { spec = getenv("GPTKIT_CRASH_AT"); init = 1; }
    if (!spec || !*spec) return;
    size_t n = strlen(name);
    if (strncmp(spec, name, n) != 0 || (spec[n] != 0 && spec[n] != ':')) return;
    long k = spec[n] == ':' ? strtol(spec + n + 1, NULL, 10) : 1;
    if (++count == k) raise(SIGKILL);
}
