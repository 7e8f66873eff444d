/* loader.c: the CUDA backend's entries (cuda.h) as gptkit itself sees them.
 *
 * With CUDA in the build (GK_HAVE_CUDA) the backend is a plugin, libgptkit-cuda.so, built beside the gptkit binary
 * from the .cu files of this directory: this file opens it on the first call (RTLD_NOW | RTLD_LOCAL) and forwards.
 * Linking cudart and cuBLASLt into every program instead cost each command ~200 MB of resident memory and ~80 ms
 * at start, for a backend most runs never use. The plugin is looked for at $GPTKIT_CUDA_LIB, then next to the
 * running program and one directory up (build/tests/ and build/bench/ binaries find build/'s). A plugin that is
 * missing or does not load makes the backend unavailable with that reason, like a machine without a driver.
 *
 * Without CUDA in the build every entry says so, so `--device cuda` fails with one clear line. */
#include "kern/cuda/cuda.h"

#ifndef GK_HAVE_CUDA
#define NO_CUDA_MSG "this build has no CUDA backend (nvcc was not found when gptkit was built, or NO_CUDA=1; " \
                    "install the CUDA toolkit and rebuild)"
int kern_cuda_init(kern_backend *be, gk_err *err) { (void)be; return gk_errf(err, NO_CUDA_MSG); }
void kern_cuda_fini(kern_backend *be) { (void)be; }
void kern_cuda_name(kern_backend *be) { (void)be; }
const kern_ops *kern_cuda_ops(void) { return NULL; }
int kern_cuda_built_impl(void) { return 0; }
int kern_cuda_usable_impl(gk_err *err) { return gk_errf(err, NO_CUDA_MSG); }
int kern_cuda_nccl_version(void) { return 0; }
int kern_cuda_nccl_unique_id(unsigned char *id, gk_err *err) { (void)id; return gk_errf(err, NO_CUDA_MSG); }
void *kern_cuda_nccl_init(kern_backend *be, const unsigned char *id, int nranks, int rank, gk_err *err) {
    (void)be; (void)id; (void)nranks; (void)rank;
    gk_errf(err, NO_CUDA_MSG);
    return NULL;
}
void kern_cuda_nccl_free(void *comm) { (void)comm; }
/* unreachable without a communicator */
void kern_cuda_nccl_allreduce_sum_f32(void *comm, float *buf, size_t n) { (void)comm; (void)buf; (void)n; GK_CHECK(0, NO_CUDA_MSG); }
void kern_cuda_nccl_reduce_scatter_sum_f32(void *comm, float *full, const size_t *bounds) {
    (void)comm; (void)full; (void)bounds; GK_CHECK(0, NO_CUDA_MSG);
}
void kern_cuda_nccl_allgather_f32(void *comm, float *buf, const size_t *bounds) {
    (void)comm; (void)buf; (void)bounds; GK_CHECK(0, NO_CUDA_MSG);
}
#else
#include <dlfcn.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PLUGIN "libgptkit-cuda.so"

static struct {
    void *h;
    char why[600];
    int (*init)(kern_backend *, gk_err *);
    void (*fini)(kern_backend *);
    void (*name)(kern_backend *);
    const kern_ops *(*ops)(void);
    int (*usable)(gk_err *);
    /* NCCL's entries: all NULL when the plugin was built without NCCL (then kern_nccl_built says 0) */
    int (*nc_version)(void);
    int (*nc_id)(unsigned char *, gk_err *);
    void *(*nc_init)(kern_backend *, const unsigned char *, int, int, gk_err *);
    void (*nc_free)(void *);
    void (*nc_allreduce)(void *, float *, size_t);
    void (*nc_reduce_scatter)(void *, float *, const size_t *);
    void (*nc_allgather)(void *, float *, const size_t *);
} P;
static pthread_once_t P_once = PTHREAD_ONCE_INIT;

static void *open_at(const char *dir, const char *rel) {
    char path[PATH_MAX];
    if (snprintf(path, sizeof path, "%s/%s" PLUGIN, dir, rel) >= (int)sizeof path) return NULL;
    return dlopen(path, RTLD_NOW | RTLD_LOCAL);
}

static void plugin_open(void) {
    const char *env = getenv("GPTKIT_CUDA_LIB");
    if (env && *env) P.h = dlopen(env, RTLD_NOW | RTLD_LOCAL);
    else {
        char exe[PATH_MAX];
        ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
        if (n > 0) {
            exe[n] = 0;
            char *slash = strrchr(exe, '/');
            if (slash) *slash = 0;
            if (!(P.h = open_at(exe, ""))) P.h = open_at(exe, "../");
        }
    }
    if (!P.h) {
        const char *e = dlerror();
        snprintf(P.why, sizeof P.why, "the CUDA backend's plugin %s did not load (%s; it is built beside the gptkit "
                 "binary, or set GPTKIT_CUDA_LIB)", env && *env ? env : PLUGIN, e ? e : "not found next to the program");
        return;
    }
    *(void **)&P.init = dlsym(P.h, "kern_cuda_init");
    *(void **)&P.fini = dlsym(P.h, "kern_cuda_fini");
    *(void **)&P.name = dlsym(P.h, "kern_cuda_name");
    *(void **)&P.ops = dlsym(P.h, "kern_cuda_ops");
    *(void **)&P.usable = dlsym(P.h, "kern_cuda_usable_impl");
    *(void **)&P.nc_version = dlsym(P.h, "kern_cuda_nccl_version");
    *(void **)&P.nc_id = dlsym(P.h, "kern_cuda_nccl_unique_id");
    *(void **)&P.nc_init = dlsym(P.h, "kern_cuda_nccl_init");
    *(void **)&P.nc_free = dlsym(P.h, "kern_cuda_nccl_free");
    *(void **)&P.nc_allreduce = dlsym(P.h, "kern_cuda_nccl_allreduce_sum_f32");
    *(void **)&P.nc_reduce_scatter = dlsym(P.h, "kern_cuda_nccl_reduce_scatter_sum_f32");
    *(void **)&P.nc_allgather = dlsym(P.h, "kern_cuda_nccl_allgather_f32");
    if (!P.nc_version || !P.nc_id || !P.nc_init || !P.nc_free || !P.nc_allreduce || !P.nc_reduce_scatter || !P.nc_allgather)
        P.nc_version = NULL;   /* a partial set is as good as none */
    if (!P.init || !P.fini || !P.name || !P.ops || !P.usable) {
        snprintf(P.why, sizeof P.why, "the CUDA backend's plugin lacks an entry point (a plugin from another build?)");
        dlclose(P.h);
        P.h = NULL;
    }
}

static int plugin(gk_err *err) {
    pthread_once(&P_once, plugin_open);
    if (P.h) return 0;
    return err ? gk_errf(err, "%s", P.why) : -1;
}

int kern_cuda_init(kern_backend *be, gk_err *err) { return plugin(err) ? -1 : P.init(be, err); }
void kern_cuda_fini(kern_backend *be) { if (plugin(NULL) == 0) P.fini(be); }
void kern_cuda_name(kern_backend *be) { if (plugin(NULL) == 0) P.name(be); }
const kern_ops *kern_cuda_ops(void) { return plugin(NULL) ? NULL : P.ops(); }
int kern_cuda_built_impl(void) { return plugin(NULL) == 0; }
int kern_cuda_usable_impl(gk_err *err) { return plugin(err) ? -1 : P.usable(err); }

#define NO_NCCL_MSG "this build's CUDA plugin has no NCCL (nccl.h and libnccl were not found beside the CUDA toolkit " \
                    "when gptkit was built, or NO_NCCL=1)"
int kern_cuda_nccl_version(void) { return plugin(NULL) == 0 && P.nc_version ? P.nc_version() : 0; }
int kern_cuda_nccl_unique_id(unsigned char *id, gk_err *err) {
    if (plugin(err)) return -1;
    return P.nc_version ? P.nc_id(id, err) : gk_errf(err, NO_NCCL_MSG);
}
void *kern_cuda_nccl_init(kern_backend *be, const unsigned char *id, int nranks, int rank, gk_err *err) {
    if (plugin(err)) return NULL;
    if (!P.nc_version) { gk_errf(err, NO_NCCL_MSG); return NULL; }
    return P.nc_init(be, id, nranks, rank, err);
}
/* a communicator exists only when the entries do */
void kern_cuda_nccl_free(void *comm) { if (comm) P.nc_free(comm); }
void kern_cuda_nccl_allreduce_sum_f32(void *comm, float *buf, size_t n) { P.nc_allreduce(comm, buf, n); }
void kern_cuda_nccl_reduce_scatter_sum_f32(void *comm, float *full, const size_t *bounds) { P.nc_reduce_scatter(comm, full, bounds); }
void kern_cuda_nccl_allgather_f32(void *comm, float *buf, const size_t *bounds) { P.nc_allgather(comm, buf, bounds); }
#endif
