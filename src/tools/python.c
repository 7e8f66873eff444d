/* python.c: the `python` tool's sandbox — runs a program in a child process cut off from the host.
 *
 * Layers, each chosen because the one before does not cover the case:
 *   1. Linux namespaces (unshare): a new network namespace (only a down loopback: no network at all), a new
 *      mount namespace whose root is a fresh tmpfs holding read-only bind mounts of the interpreter's files
 *      (/usr and the /bin, /lib* links or mounts), /dev/null and /dev/urandom, and a size-limited tmpfs /work
 *      as the working directory (fresh and empty but for main.py; gone when the program ends); pivot_root
 *      detaches the host's tree, so host files can be neither read nor written. A new PID namespace, so no
 *      host process can be named (a signal to the parent has no target), and new IPC and UTS namespaces.
 *      As root that needs no user namespace; otherwise a user namespace maps the caller's uid to root inside.
 *   2. Privileges dropped (as root: to nobody, 65534; no supplementary groups), no_new_privs, rlimits: CPU
 *      seconds, address space, file size, process count (RLIMIT_NPROC counts per real user, and root is
 *      exempt from it: hence dropping to nobody, or the user namespace's unprivileged uid), 64 files, no core.
 *   3. A seccomp filter (x86-64 and aarch64): socket() for anything but AF_UNIX, and mount, umount, pivot_root,
 *      chroot, unshare, setns, ptrace, bpf, keyctl, perf_event_open fail with EPERM — belt and braces for the
 *      network and the namespaces should a kernel or a container let a step above be undone.
 *   4. The parent kills the whole process group (SIGKILL) at the wall-clock timeout; PID 1 of the namespace
 *      dying takes every process inside with it. stdout and stderr are read as they come (a program that
 *      prints forever cannot block) and truncated.
 * If any namespace step fails (a container that forbids unshare), nothing runs and the caller gets an error:
 * the sandbox fails closed rather than running code half-isolated.
 */
#include "tools/tools.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <grp.h>
#include <unistd.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>

void tools_sandbox_opts_default(tools_sandbox_opts *o) {
    memset(o, 0, sizeof *o);
    o->timeout_s = 5;
    o->cpu_s = 5;
    o->mem_mb = 512;
    o->fsize_mb = 16;
    o->nproc = 16;
    o->out_max = 4096;
    o->python = "/usr/bin/python3";
}

void tools_sandbox_result_free(tools_sandbox_result *r) {
    if (!r) return;
    free(r->out); free(r->errtext);
    r->out = r->errtext = NULL;
}

/* ---------------------------------------------------------------- in the child (async-signal-safe-ish: the
 * child of a fork in a single-threaded caller; on failure it reports through errfd and exits 126) */

static void die(int errfd, const char *what) {
    char msg[256];
    int n = snprintf(msg, sizeof msg, "%s: %s", what, strerror(errno));
    if (n > 0 && write(errfd, msg, (size_t)n) < 0) { /* nothing more to do */ }
    _exit(126);
}

static void write_file(const char *path, const char *s, int errfd) {
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0 || write(fd, s, strlen(s)) != (ssize_t)strlen(s)) die(errfd, path);
    close(fd);
}

/* target inside the new root: a read-only bind mount of src, or the same symlink when src is one */
static void expose(const char *src, const char *root, int errfd) {
    char dst[512], link[512];
    snprintf(dst, sizeof dst, "%s%s", root, src);
    ssize_t ln = readlink(src, link, sizeof link - 1);
    if (ln >= 0) {
        link[ln] = 0;
        if (symlink(link, dst)) die(errfd, "symlink");
        return;
    }
    struct stat st;
    if (stat(src, &st)) return;   /* absent on this system (e.g. /lib64 elsewhere) */
    if (S_ISDIR(st.st_mode)) { if (mkdir(dst, 0755)) die(errfd, dst); }
    else { int fd = open(dst, O_CREAT | O_WRONLY | O_CLOEXEC, 0644); if (fd < 0) die(errfd, dst); close(fd); }
    if (mount(src, dst, NULL, MS_BIND | MS_REC, NULL)) die(errfd, "bind mount");
    if (mount(NULL, dst, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV, NULL)) die(errfd, "read-only remount");
}

/* The new root (see the file comment), then pivot_root into it and detach the host's tree. */
static void build_root(const char *root, const tools_sandbox_opts *o, const char *code, uid_t uid, int errfd) {
    char p[512], opt[64];
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL)) die(errfd, "making mounts private");
    if (mount("tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=0755")) die(errfd, "tmpfs root");
    static const char *const sys[] = {"/usr", "/bin", "/lib", "/lib64", "/lib32", "/libx32"};
    for (size_t i = 0; i < sizeof sys / sizeof *sys; i++) expose(sys[i], root, errfd);
    snprintf(p, sizeof p, "%s/dev", root);
    if (mkdir(p, 0755)) die(errfd, "mkdir dev");
    expose("/dev/null", root, errfd);
    expose("/dev/urandom", root, errfd);
    snprintf(p, sizeof p, "%s/work", root);
    if (mkdir(p, 0755)) die(errfd, "mkdir work");
    snprintf(opt, sizeof opt, "size=%ldm,mode=0700,uid=%u", o->fsize_mb * 2 + 1, (unsigned)uid);
    if (mount("tmpfs", p, "tmpfs", MS_NOSUID | MS_NODEV, opt)) die(errfd, "tmpfs work");
    snprintf(p, sizeof p, "%s/work/main.py", root);
    int fd = open(p, O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
    if (fd < 0 || write(fd, code, strlen(code)) != (ssize_t)strlen(code)) die(errfd, "writing main.py");
    if (fchown(fd, uid, uid)) die(errfd, "chown main.py");
    close(fd);
    if (chdir(root)) die(errfd, "chdir root");
    if (syscall(SYS_pivot_root, ".", ".") == 0) {
        if (umount2(".", MNT_DETACH)) die(errfd, "detaching the host tree");
    } else if (errno == EINVAL) {
        /* inside a chroot (the caller's root is not a mount point) pivot_root refuses; chroot instead: the host
         * tree stays mounted but unreachable, since the program drops to nobody (no CAP_SYS_CHROOT) and seccomp
         * denies chroot, the only way back out */
        if (chroot(".")) die(errfd, "chroot");
    } else die(errfd, "pivot_root");
    if (chdir("/")) die(errfd, "chdir /");
    if (mount(NULL, "/", NULL, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV, "size=1m,mode=0755")) die(errfd, "read-only root");
    if (chdir("/work")) die(errfd, "chdir /work");
}

#if defined(__x86_64__)
#define SBX_ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define SBX_ARCH AUDIT_ARCH_AARCH64
#endif

static void install_seccomp(int errfd) {
#ifdef SBX_ARCH
#define DENY(nr) BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (nr), 0, 1), BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM)
    struct sock_filter f[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SBX_ARCH, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        /* socket(domain, ...): AF_UNIX allowed, anything else EPERM */
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_socket, 0, 4),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[0])),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AF_UNIX, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
        DENY(SYS_mount), DENY(SYS_umount2), DENY(SYS_pivot_root), DENY(SYS_chroot), DENY(SYS_unshare),
        DENY(SYS_setns), DENY(SYS_ptrace), DENY(SYS_bpf), DENY(SYS_keyctl), DENY(SYS_perf_event_open),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
#undef DENY
    struct sock_fprog prog = {(unsigned short)(sizeof f / sizeof *f), f};
    if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog)) die(errfd, "seccomp");
#else
    (void)errfd;
#endif
}

static void set_limit(int what, rlim_t v, int errfd) {
    struct rlimit r = {v, v};
    if (setrlimit(what, &r)) die(errfd, "setrlimit");
}

/* PID 1 of the new PID namespace: the root, the limits, the identity, the filter, then the interpreter. */
static void run_inner(const char *root, const tools_sandbox_opts *o, const char *code, int as_root, int errfd) {
    uid_t uid = as_root ? 65534 : 0;
    build_root(root, o, code, uid, errfd);
    set_limit(RLIMIT_CPU, (rlim_t)o->cpu_s, errfd);
    set_limit(RLIMIT_AS, (rlim_t)o->mem_mb << 20, errfd);
    set_limit(RLIMIT_FSIZE, (rlim_t)o->fsize_mb << 20, errfd);
    set_limit(RLIMIT_NOFILE, 64, errfd);
    set_limit(RLIMIT_CORE, 0, errfd);
    if (as_root) {
        if (setgroups(0, NULL) || setresgid(65534, 65534, 65534) || setresuid(65534, 65534, 65534)) die(errfd, "dropping to nobody");
    }
    set_limit(RLIMIT_NPROC, (rlim_t)o->nproc, errfd);   /* after the switch: it counts the new user's processes */
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)) die(errfd, "no_new_privs");
    install_seccomp(errfd);
    char *argv[] = {(char *)"python3", (char *)"-I", (char *)"-S", (char *)"main.py", NULL};
    char *envp[] = {(char *)"PATH=/usr/bin:/bin", (char *)"HOME=/work", (char *)"LANG=C.UTF-8",
                    (char *)"PYTHONDONTWRITEBYTECODE=1", (char *)"PYTHONIOENCODING=utf-8", NULL};
    execve(o->python, argv, envp);
    die(errfd, o->python);
}

/* The first child: its own process group, the namespaces, then PID 1 of the new PID namespace, whose exit
 * status it passes on (or 128 + the signal that killed it). */
static void run_outer(const char *root, const tools_sandbox_opts *o, const char *code, int out_fd, int err_fd, int errfd) {
    setpgid(0, 0);
    int nul = open("/dev/null", O_RDONLY);
    if (nul < 0 || dup2(nul, 0) < 0 || dup2(out_fd, 1) < 0 || dup2(err_fd, 2) < 0) die(errfd, "redirecting output");
    int as_root = geteuid() == 0;
    uid_t uid = getuid(); gid_t gid = getgid();
    int flags = CLONE_NEWNET | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS;
    if (!as_root) flags |= CLONE_NEWUSER;
    if (unshare(flags)) die(errfd, "unshare (namespaces are needed to isolate the program)");
    if (!as_root) {   /* root inside, the caller's own uid outside */
        char m[64];
        write_file("/proc/self/setgroups", "deny", errfd);
        snprintf(m, sizeof m, "0 %u 1", (unsigned)uid); write_file("/proc/self/uid_map", m, errfd);
        snprintf(m, sizeof m, "0 %u 1", (unsigned)gid); write_file("/proc/self/gid_map", m, errfd);
    }
    pid_t pid = fork();
    if (pid < 0) die(errfd, "fork");
    if (pid == 0) run_inner(root, o, code, as_root, errfd);
    close(errfd);
    int st;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {}
    _exit(WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
}

/* ---------------------------------------------------------------- in the parent */

/* One captured stream: everything is read (so the child never blocks on a full pipe), max bytes kept. */
typedef struct { char *buf; size_t n, max; int truncated; } capture;

static void capture_add(capture *c, const char *d, size_t n) {
    size_t room = c->max - c->n;
    if (n > room) { c->truncated = 1; n = room; }
    memcpy(c->buf + c->n, d, n);
    c->n += n;
}

/* Drops a partial UTF-8 character at the end of a truncated capture, then NUL-terminates it. */
static char *capture_finish(capture *c) {
    if (c->truncated) {
        size_t k = c->n;
        while (k > 0 && ((unsigned char)c->buf[k - 1] & 0xC0) == 0x80) k--;
        if (k > 0 && ((unsigned char)c->buf[k - 1] & 0x80)) c->n = k - 1;
    }
    c->buf[c->n] = 0;
    return c->buf;
}

/* Reads both pipes until they close or the deadline passes; returns 1 on timeout. */
static int pump(int fo, int fe, capture *co, capture *ce, double deadline) {
    struct pollfd pf[2] = {{fo, POLLIN, 0}, {fe, POLLIN, 0}};
    int open_n = 2;
    char buf[4096];
    while (open_n > 0) {
        double left = deadline - gk_now();
        if (left <= 0) return 1;
        int r = poll(pf, 2, (int)(left * 1000) + 1);
        if (r < 0) { if (errno == EINTR) continue; return 1; }
        for (int i = 0; i < 2; i++) {
            if (pf[i].fd < 0 || !(pf[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
            ssize_t n = read(pf[i].fd, buf, sizeof buf);
            if (n > 0) capture_add(i ? ce : co, buf, (size_t)n);
            else if (n == 0 || errno != EINTR) { pf[i].fd = -1; open_n--; }
        }
    }
    return 0;
}

int tools_python_run(const char *code, const tools_sandbox_opts *opt, tools_sandbox_result *res, gk_err *err) {
    tools_sandbox_opts o;
    if (opt) o = *opt; else tools_sandbox_opts_default(&o);
    memset(res, 0, sizeof *res);
    if (!code) return gk_errf(err, "no code to run");
    if (access(o.python, X_OK)) return gk_errf(err, "python sandbox: the interpreter %s is not there (install python3)", o.python);
    char root[] = "/tmp/gptkit-sandbox-XXXXXX";
    if (!mkdtemp(root)) return gk_errf(err, "python sandbox: cannot make a directory in /tmp: %s", strerror(errno));
    int po[2], pe[2], px[2];
    if (pipe2(po, O_CLOEXEC) || pipe2(pe, O_CLOEXEC) || pipe2(px, O_CLOEXEC)) {
        rmdir(root);
        return gk_errf(err, "python sandbox: pipe: %s", strerror(errno));
    }
    fflush(stdout); fflush(stderr);
    double t0 = gk_now();
    pid_t pid = fork();
    if (pid < 0) { rmdir(root); return gk_errf(err, "python sandbox: fork: %s", strerror(errno)); }
    if (pid == 0) {
        close(po[0]); close(pe[0]); close(px[0]);
        run_outer(root, &o, code, po[1], pe[1], px[1]);
    }
    close(po[1]); close(pe[1]); close(px[1]);
    capture co = {gk_malloc(o.out_max + 1), 0, o.out_max, 0}, ce = {gk_malloc(o.out_max + 1), 0, o.out_max, 0};
    res->timed_out = pump(po[0], pe[0], &co, &ce, t0 + o.timeout_s);
    kill(-pid, SIGKILL);   /* the whole group: whatever the program left behind, or all of it on timeout */
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {}
    res->seconds = gk_now() - t0;
    char setup[300];
    ssize_t sn = read(px[0], setup, sizeof setup - 1);
    close(po[0]); close(pe[0]); close(px[0]);
    rmdir(root);
    res->out = capture_finish(&co); res->out_truncated = co.truncated;
    res->errtext = capture_finish(&ce); res->err_truncated = ce.truncated;
    if (sn > 0) {   /* the sandbox could not be built: nothing ran */
        setup[sn] = 0;
        tools_sandbox_result_free(res);
        return gk_errf(err, "python sandbox unavailable: %s", setup);
    }
    int code_ = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    if (res->timed_out) { res->exit_code = -1; res->signal = SIGKILL; }
    else if (code_ > 128 && code_ < 128 + 65) { res->exit_code = -1; res->signal = code_ - 128; }
    else res->exit_code = code_;
    snprintf(res->isolation, sizeof res->isolation, "namespaces(%snet,mount,pid,ipc,uts)+%sseccomp+rlimits",
             geteuid() == 0 ? "" : "user,", geteuid() == 0 ? "uid nobody+" : "");
    return 0;
}
