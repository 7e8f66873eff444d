/* nccl.cu: collectives between processes on the CUDA backend's device buffers, through NCCL (kern.h, "NCCL").
 *
 * Built into the plugin only when the Makefile finds nccl.h and libnccl (GK_HAVE_NCCL); otherwise this file is
 * empty and loader.c, not finding these entries in the plugin, says the build has no NCCL. src/dist drives them:
 * rank 0 makes the communicator's id (ncclGetUniqueId), MPI broadcasts it, every rank joins with
 * ncclCommInitRank. NCCL is not a second launcher: Open MPI still starts the ranks and carries everything small.
 *
 * Every collective runs on the backend's stream (the legacy default stream, cuda.h), so it follows the backward
 * kernels that wrote the gradients and precedes the AdamW kernels that read them, with no event in between; the
 * call then waits for the stream (cudaStreamSynchronize), so it returns with the result in place, like the MPI
 * calls it stands beside, and the step's comm_ms measures it.
 *
 * The slices are given as bounds[0..nranks] (rank r's slice is [bounds[r], bounds[r+1]) of the flat buffer):
 * src/dist's dist_shard, which splits unevenly when nranks does not divide n. NCCL's own ReduceScatter and
 * AllGather want equal slices, so the uneven ones are a group of one Reduce per slice (rooted at its owner, in
 * place) and a group of one Broadcast per slice (from its owner): inside ncclGroupStart/End NCCL runs them as one
 * fused operation, and the slices, hence ZeRO-1's optimizer shards and the checkpoints, are exactly the MPI
 * path's.
 *
 * Errors: any NCCL or CUDA failure mid-run is unrecoverable (a peer died, a bad buffer): NC_CHECK / CU_CHECK abort
 * with file:line, NCCL's message and its last-error text. Only creating the communicator returns an error.
 *
 * Status: compiled (warning-free under WERROR=1), run only by scripts/gpu-check.sh's one-rank smoke check on a
 * machine with a GPU; never run across two GPUs (docs/distributed.md). */
#ifdef GK_HAVE_NCCL
#include "kern/cuda/cuda_impl.h"
#include <nccl.h>
#include <stdlib.h>
#include <string.h>

#define NC_CHECK(call) do { ncclResult_t nc_e_ = (call); if (nc_e_ != ncclSuccess) \
    gk_fatal_at(__FILE__, __LINE__, "NCCL error %d (%s) in %s: %s (NCCL_DEBUG=WARN says more)", (int)nc_e_, \
                ncclGetErrorString(nc_e_), #call, ncclGetLastError(NULL)); } while (0)

static_assert(NCCL_UNIQUE_ID_BYTES == KERN_NCCL_ID_BYTES, "kern.h's KERN_NCCL_ID_BYTES must be NCCL's id size");

/* One communicator: the backend's device, this rank's place. */
struct kcu_nccl {
    ncclComm_t comm;
    int nranks, rank;
};

extern "C" int kern_cuda_nccl_version(void) {
    int v = 0;
    return ncclGetVersion(&v) == ncclSuccess ? v : 0;
}

extern "C" int kern_cuda_nccl_unique_id(unsigned char *id, gk_err *err) {
    ncclUniqueId u;
    ncclResult_t e = ncclGetUniqueId(&u);
    if (e != ncclSuccess)
        return gk_errf(err, "NCCL could not make a communicator id: %s (%s)", ncclGetErrorString(e), ncclGetLastError(NULL));
    memcpy(id, u.internal, NCCL_UNIQUE_ID_BYTES);
    return 0;
}

extern "C" void *kern_cuda_nccl_init(kern_backend *be, const unsigned char *id, int nranks, int rank, gk_err *err) {
    if (!be->cuda) { gk_errf(err, "NCCL needs a cuda backend"); return NULL; }
    CU_CHECK(cudaSetDevice(be->cuda->device));
    ncclUniqueId u;
    memcpy(u.internal, id, NCCL_UNIQUE_ID_BYTES);
    ncclComm_t comm;
    ncclResult_t e = ncclCommInitRank(&comm, nranks, u, rank);
    if (e != ncclSuccess) {
        gk_errf(err, "rank %d of %d: NCCL could not join the communicator: %s (%s; NCCL_DEBUG=WARN says more)", rank,
                nranks, ncclGetErrorString(e), ncclGetLastError(NULL));
        return NULL;
    }
    kcu_nccl *c = (kcu_nccl *)gk_calloc(1, sizeof *c);
    c->comm = comm; c->nranks = nranks; c->rank = rank;
    return c;
}

extern "C" void kern_cuda_nccl_free(void *p) {
    kcu_nccl *c = (kcu_nccl *)p;
    if (!c) return;
    NC_CHECK(ncclCommDestroy(c->comm));
    free(c);
}

/* The collectives are enqueued on the backend's stream (0, the legacy default stream) and waited for. */
static void wait_stream(void) { CU_CHECK(cudaStreamSynchronize(0)); }

extern "C" void kern_cuda_nccl_allreduce_sum_f32(void *p, float *buf, size_t n) {
    kcu_nccl *c = (kcu_nccl *)p;
    if (n == 0) return;
    NC_CHECK(ncclAllReduce(buf, buf, n, ncclFloat32, ncclSum, c->comm, 0));
    wait_stream();
}

extern "C" void kern_cuda_nccl_reduce_scatter_sum_f32(void *p, float *full, const size_t *bounds) {
    kcu_nccl *c = (kcu_nccl *)p;
    NC_CHECK(ncclGroupStart());
    for (int r = 0; r < c->nranks; r++) {
        size_t lo = bounds[r], k = bounds[r + 1] - lo;
        /* in place on the root (sendbuff == recvbuff is allowed there); the other ranks' full stays as it was */
        if (k) NC_CHECK(ncclReduce(full + lo, full + lo, k, ncclFloat32, ncclSum, r, c->comm, 0));
    }
    NC_CHECK(ncclGroupEnd());
    wait_stream();
}

extern "C" void kern_cuda_nccl_allgather_f32(void *p, float *buf, const size_t *bounds) {
    kcu_nccl *c = (kcu_nccl *)p;
    NC_CHECK(ncclGroupStart());
    for (int r = 0; r < c->nranks; r++) {
        size_t lo = bounds[r], k = bounds[r + 1] - lo;
        if (k) NC_CHECK(ncclBroadcast(buf + lo, buf + lo, k, ncclFloat32, r, c->comm, 0));
    }
    NC_CHECK(ncclGroupEnd());
    wait_stream();
}
#endif
