/* dist.c: the collectives of dist.h over Open MPI (GK_HAVE_MPI), or their one-rank stand-ins.
 *
 * MPI starts only when Open MPI's launcher set up this process (OMPI_COMM_WORLD_SIZE, or PMIx's PMIX_RANK):
 * a plain `gptkit pretrain ...` never touches MPI, so a build with MPI behaves exactly like one without it
 * outside mpirun (and does not pay the singleton start-up).
 */
#include "dist/dist.h"
#include "core/core.h"
#include "kern/kern.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef GK_HAVE_MPI
#include <mpi.h>
#endif

static int g_rank = 0, g_size = 1;
#ifdef GK_HAVE_MPI
static int g_started = 0;
/* The bucketed gradient reduce-scatter's own communicator (a duplicate of MPI_COMM_WORLD): its non-blocking
 * collectives stay in flight while the stage runs blocking ones (the loss sum, dist_any) on the world, and a
 * communicator of their own keeps the two streams from ever being matched against each other. */
static MPI_Comm g_grad_comm = MPI_COMM_NULL;
#endif

int dist_available(void) {
#ifdef GK_HAVE_MPI
    return 1;
#else
    return 0;
#endif
}

void dist_init(int *argc, char ***argv) {
    (void)argc; (void)argv;
#ifdef GK_HAVE_MPI
    if (g_started || (!getenv("OMPI_COMM_WORLD_SIZE") && !getenv("PMIX_RANK"))) return;
    MPI_Init(argc, argv);
    g_started = 1;
    MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &g_size);
    if (g_size > 1) MPI_Comm_dup(MPI_COMM_WORLD, &g_grad_comm);
#else
    if (getenv("OMPI_COMM_WORLD_SIZE") && atoi(getenv("OMPI_COMM_WORLD_SIZE")) > 1)
        gk_warn("this gptkit was built without MPI (install libopenmpi-dev and rebuild): every rank trains alone\n");
#endif
    if (g_rank > 0) {
        /* one voice: rank 0 prints the progress line, the JSON and the log; the others only warn and fail */
        if (!freopen("/dev/null", "w", stdout)) { /* keep the old stdout: harmless duplicate lines */ }
        gk_verbose = 0;
    }
}

void dist_finalize(void) {
    dist_dev_close();
#ifdef GK_HAVE_MPI
    if (g_started) {
        if (g_grad_comm != MPI_COMM_NULL) MPI_Comm_free(&g_grad_comm);
        MPI_Finalize();
        g_started = 0;
    }
#endif
}

int dist_rank(void) { return g_rank; }
int dist_size(void) { return g_size; }

void dist_shard(size_t n, int rank, int size, size_t *lo, size_t *hi) {
    size_t r = (size_t)rank, s = size > 0 ? (size_t)size : 1, base = n / s, extra = n % s;
    *lo = r * base + (r < extra ? r : extra);
    *hi = *lo + base + (r < extra ? 1 : 0);
}

#ifdef GK_HAVE_MPI
/* Per-rank counts and displacements of the part of [b0, b1) that each rank's shard of n covers, relative to b0. */
static void bucket_parts(size_t n, size_t b0, size_t b1, int *counts, int *displs) {
    for (int r = 0; r < g_size; r++) {
        size_t lo, hi;
        dist_shard(n, r, g_size, &lo, &hi);
        size_t a = lo > b0 ? lo : b0, b = hi < b1 ? hi : b1;
        counts[r] = b > a ? (int)(b - a) : 0;
        displs[r] = b > a ? (int)(a - b0) : 0;
    }
}
#endif

void dist_allreduce_sum_f32(float *buf, size_t n) {
#ifdef GK_HAVE_MPI
    if (g_size < 2) return;
    for (size_t i = 0; i < n; i += DIST_BUCKET) {
        size_t k = n - i < DIST_BUCKET ? n - i : DIST_BUCKET;
        MPI_Allreduce(MPI_IN_PLACE, buf + i, (int)k, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
    }
#else
    (void)buf; (void)n;
#endif
}

void dist_allreduce_sum_f64(double *buf, size_t n) {
#ifdef GK_HAVE_MPI
    if (g_size < 2) return;
    for (size_t i = 0; i < n; i += DIST_BUCKET) {
        size_t k = n - i < DIST_BUCKET ? n - i : DIST_BUCKET;
        MPI_Allreduce(MPI_IN_PLACE, buf + i, (int)k, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
    }
#else
    (void)buf; (void)n;
#endif
}

int dist_any(int v) {
#ifdef GK_HAVE_MPI
    if (g_size < 2) return v != 0;
    int in = v != 0, out = 0;
    MPI_Allreduce(&in, &out, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    return out;
#else
    return v != 0;
#endif
}

void dist_bcast(void *buf, size_t bytes, int root) {
#ifdef GK_HAVE_MPI
    if (g_size < 2) return;
    char *p = buf;
    size_t step = DIST_BUCKET * sizeof(float);
    for (size_t i = 0; i < bytes; i += step) {
        size_t k = bytes - i < step ? bytes - i : step;
        MPI_Bcast(p + i, (int)k, MPI_BYTE, root, MPI_COMM_WORLD);
    }
#else
    (void)buf; (void)bytes; (void)root;
#endif
}

void dist_reduce_scatter_sum_f32(float *full, size_t n) {
#ifdef GK_HAVE_MPI
    if (g_size < 2) return;
    int *counts = gk_malloc((size_t)g_size * sizeof(int)), *displs = gk_malloc((size_t)g_size * sizeof(int));
    float *tmp = gk_malloc((n < DIST_BUCKET ? n : DIST_BUCKET) * sizeof(float) + sizeof(float));
    for (size_t b0 = 0; b0 < n; b0 += DIST_BUCKET) {
        size_t b1 = n - b0 < DIST_BUCKET ? n : b0 + DIST_BUCKET;
        bucket_parts(n, b0, b1, counts, displs);
        /* the ranks' parts of a bucket are contiguous and in rank order, as MPI_Reduce_scatter lays them out */
        MPI_Reduce_scatter(full + b0, tmp, counts, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
        memcpy(full + b0 + displs[g_rank], tmp, (size_t)counts[g_rank] * sizeof(float));
    }
    free(counts); free(displs); free(tmp);
#else
    (void)full; (void)n;
#endif
}

void dist_allgather_f32(float *buf, size_t n) {
#ifdef GK_HAVE_MPI
    if (g_size < 2) return;
    int *counts = gk_malloc((size_t)g_size * sizeof(int)), *displs = gk_malloc((size_t)g_size * sizeof(int));
    for (size_t b0 = 0; b0 < n; b0 += DIST_BUCKET) {
        size_t b1 = n - b0 < DIST_BUCKET ? n : b0 + DIST_BUCKET;
        bucket_parts(n, b0, b1, counts, displs);
        MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, buf + b0, counts, displs, MPI_FLOAT, MPI_COMM_WORLD);
    }
    free(counts); free(displs);
#else
    (void)buf; (void)n;
#endif
}

void dist_gather_f32(const float *slice, float *full, size_t n) {
    size_t lo, hi;
    dist_shard(n, g_rank, g_size, &lo, &hi);
#ifdef GK_HAVE_MPI
    if (g_size > 1) {
        int *counts = gk_malloc((size_t)g_size * sizeof(int)), *displs = gk_malloc((size_t)g_size * sizeof(int));
        for (size_t b0 = 0; b0 < n; b0 += DIST_BUCKET) {
            size_t b1 = n - b0 < DIST_BUCKET ? n : b0 + DIST_BUCKET;
            bucket_parts(n, b0, b1, counts, displs);
            size_t a = lo > b0 ? lo : b0;
            MPI_Gatherv(counts[g_rank] ? slice + (a - lo) : slice, counts[g_rank], MPI_FLOAT, g_rank == 0 ? full + b0 : NULL, counts, displs,
                        MPI_FLOAT, 0, MPI_COMM_WORLD);
        }
        free(counts); free(displs);
        return;
    }
#endif
    memcpy(full, slice, (hi - lo) * sizeof(float));
}

void *dist_allgatherv(const void *mine, size_t nbytes, size_t *total) {
#ifdef GK_HAVE_MPI
    if (g_size > 1) {
        long long me = (long long)nbytes, *all = gk_malloc((size_t)g_size * sizeof(long long));
        MPI_Allgather(&me, 1, MPI_LONG_LONG, all, 1, MPI_LONG_LONG, MPI_COMM_WORLD);
        int *counts = gk_malloc((size_t)g_size * sizeof(int)), *displs = gk_malloc((size_t)g_size * sizeof(int));
        long long sum = 0;
        for (int r = 0; r < g_size; r++) {
            GK_CHECK(all[r] < INT_MAX && sum + all[r] < INT_MAX, "dist_allgatherv: %lld bytes exceed MPI's int counts", sum + all[r]);
            counts[r] = (int)all[r]; displs[r] = (int)sum; sum += all[r];
        }
        char *out = gk_malloc(sum ? (size_t)sum : 1);
        MPI_Allgatherv(mine, (int)nbytes, MPI_BYTE, out, counts, displs, MPI_BYTE, MPI_COMM_WORLD);
        free(all); free(counts); free(displs);
        *total = (size_t)sum;
        return out;
    }
#endif
    void *out = gk_malloc(nbytes ? nbytes : 1);
    if (nbytes) memcpy(out, mine, nbytes);
    *total = nbytes;
    return out;
}

/* ---------------------------------------------------------------- the overlapped reduce-scatter */

#ifdef GK_HAVE_MPI
struct dist_rs {
    float *full;              /* [n] every rank's contribution; this rank's slice of the sum at finish */
    size_t n, lo, hi;         /* this rank's slice [lo, hi) (dist_shard) */
    size_t bucket, nb;        /* floats per bucket; buckets: k covers [n - (k+1) bucket, n - k bucket) clipped at 0 */
    size_t started;           /* buckets 0 .. started-1 are in flight or done */
    float *recv;              /* [hi - lo + 1] this rank's slice of the sum, as the buckets deliver it: a bucket's
                                 send buffer must not overlap its receive buffer, so full[lo, hi) is written at the end */
    int *counts;              /* [nb, size] each bucket's per-rank counts: MPI reads them until the bucket completes */
    MPI_Request *req;         /* [nb] */
};

static void rs_bucket(const dist_rs *r, size_t k, size_t *b0, size_t *b1) {
    *b1 = r->n - k * r->bucket;
    *b0 = *b1 > r->bucket ? *b1 - r->bucket : 0;
}

static void rs_start(dist_rs *r) {
    size_t k = r->started++, b0, b1;
    rs_bucket(r, k, &b0, &b1);
    int *counts = r->counts + k * (size_t)g_size, *displs = gk_malloc((size_t)g_size * sizeof(int));
    bucket_parts(r->n, b0, b1, counts, displs);
    /* this rank's part of the bucket is [max(lo, b0), min(hi, b1)): its place in recv is its offset from lo */
    float *dst = r->recv + (counts[g_rank] ? (r->lo > b0 ? r->lo : b0) - r->lo : 0);
    MPI_Ireduce_scatter(r->full + b0, dst, counts, MPI_FLOAT, MPI_SUM, g_grad_comm, &r->req[k]);
    free(displs);
}
#endif

dist_rs *dist_rs_begin(float *full, size_t n, size_t bucket) {
#ifdef GK_HAVE_MPI
    if (g_size < 2 || n == 0) return NULL;
    /* at least 1 KiB a bucket (a degenerate option must not make millions of requests), at most MPI's int count */
    if (bucket < 256) bucket = 256;
    if (bucket > (size_t)INT_MAX / 2) bucket = (size_t)INT_MAX / 2;
    dist_rs *r = gk_calloc(1, sizeof *r);
    r->full = full; r->n = n; r->bucket = bucket;
    r->nb = (n + bucket - 1) / bucket;
    dist_shard(n, g_rank, g_size, &r->lo, &r->hi);
    r->recv = gk_malloc((r->hi - r->lo + 1) * sizeof(float));
    r->counts = gk_malloc(r->nb * (size_t)g_size * sizeof(int));
    r->req = gk_malloc(r->nb * sizeof(MPI_Request));
    return r;
#else
    (void)full; (void)n; (void)bucket;
    return NULL;
#endif
}

void dist_rs_ready(dist_rs *r, size_t from) {
#ifdef GK_HAVE_MPI
    if (!r) return;
    size_t b0, b1;
    while (r->started < r->nb && (rs_bucket(r, r->started, &b0, &b1), b0 >= from)) rs_start(r);
    int done;
    if (r->started) MPI_Testall((int)r->started, r->req, &done, MPI_STATUSES_IGNORE);
#else
    (void)r; (void)from;
#endif
}

void dist_rs_finish(dist_rs *r) {
#ifdef GK_HAVE_MPI
    if (!r) return;
    while (r->started < r->nb) rs_start(r);
    MPI_Waitall((int)r->nb, r->req, MPI_STATUSES_IGNORE);
    memcpy(r->full + r->lo, r->recv, (r->hi - r->lo) * sizeof(float));
    free(r->recv); free(r->counts); free(r->req); free(r);
#else
    (void)r;
#endif
}

/* ---------------------------------------------------------------- device buffers (NCCL) */

static kern_nccl *g_nccl;          /* the one communicator of this process (all its models share device 0) */

static size_t *shard_bounds(size_t n) {
    size_t *b = gk_malloc(((size_t)g_size + 1) * sizeof(size_t)), hi;
    for (int r = 0; r < g_size; r++) dist_shard(n, r, g_size, &b[r], &hi);
    b[g_size] = n;
    return b;
}

int dist_dev_open(kern_backend *be, gk_err *err) {
    if (g_size < 2 || !kern_on_device(be) || g_nccl) return 0;
    /* every rank checks it could join before any enters ncclCommInitRank, which waits for all of them */
    int bad = kern_nccl_version() == 0;
    if (bad) gk_errf(err, "rank %d: data parallelism on %s needs NCCL, and this build's CUDA plugin has none (install "
                     "NCCL beside the CUDA toolkit and rebuild)", g_rank, kern_backend_name(be));
    if (dist_any(bad)) return bad ? -1 : gk_errf(err, "rank %d: another rank has no NCCL", g_rank);
    /* the id, with rank 0's success in its last byte */
    unsigned char id[KERN_NCCL_ID_BYTES + 1] = {0};
    if (g_rank == 0) id[KERN_NCCL_ID_BYTES] = kern_nccl_unique_id(id, err) == 0;
    dist_bcast(id, sizeof id, 0);
    if (!id[KERN_NCCL_ID_BYTES]) return g_rank == 0 ? -1 : gk_errf(err, "rank %d: rank 0 could not start NCCL", g_rank);
    g_nccl = kern_nccl_init(be, id, g_size, g_rank, err);
    bad = g_nccl == NULL;
    if (dist_any(bad)) {
        kern_nccl_free(g_nccl);
        g_nccl = NULL;
        return bad ? -1 : gk_errf(err, "rank %d: another rank could not join NCCL's communicator", g_rank);
    }
    return 0;
}

void dist_dev_close(void) { kern_nccl_free(g_nccl); g_nccl = NULL; }

int dist_dev_active(const kern_backend *be) { return g_nccl && g_size > 1 && kern_on_device(be); }

void dist_dev_allreduce_sum_f32(float *buf, size_t n) {
    GK_CHECK(g_nccl, "dist_dev_allreduce_sum_f32 before dist_dev_open");
    kern_nccl_allreduce_sum_f32(g_nccl, buf, n);
}

void dist_dev_reduce_scatter_sum_f32(float *full, size_t n) {
    GK_CHECK(g_nccl, "dist_dev_reduce_scatter_sum_f32 before dist_dev_open");
    size_t *b = shard_bounds(n);
    kern_nccl_reduce_scatter_sum_f32(g_nccl, full, b);
    free(b);
}

void dist_dev_allgather_f32(float *buf, size_t n) {
    GK_CHECK(g_nccl, "dist_dev_allgather_f32 before dist_dev_open");
    size_t *b = shard_bounds(n);
    kern_nccl_allgather_f32(g_nccl, buf, b);
    free(b);
}

void dist_barrier(void) {
#ifdef GK_HAVE_MPI
    if (g_size > 1) MPI_Barrier(MPI_COMM_WORLD);
#endif
}

void dist_abort(int code) {
#ifdef GK_HAVE_MPI
    if (g_started && g_size > 1) MPI_Abort(MPI_COMM_WORLD, code);
#endif
    exit(code);
}
