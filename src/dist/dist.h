/* dist: data-parallel collectives over Open MPI, and a single-process stand-in when the build has no MPI (or the
 * process was not started by mpirun). Everything above this layer (the stage skeleton, the optimizer shard)
 * calls these functions unconditionally; with one rank they are copies or no-ops.
 *
 * Buffers are host memory (the CPU backend's device memory is host memory); a GPU backend's buffers take the
 * dist_dev_* calls below, the same collectives over NCCL (a compile-time option, in the CUDA plugin). Counts are size_t; calls split them into buckets of at most
 * DIST_BUCKET floats, so a buffer of any size goes through MPI's int counts, and a big all-reduce is a series
 * of moderate messages rather than one that holds a second copy of the gradients.
 *
 * Failure policy: the communicator keeps MPI's default error handler (MPI_ERRORS_ARE_FATAL) — a peer that dies
 * makes Open MPI's runtime end every rank of the job, and mpirun names the rank that died (docs/distributed.md).
 */
#ifndef GK_DIST_H
#define GK_DIST_H

#include <stddef.h>
#include "core/core.h"

#define DIST_BUCKET ((size_t)1 << 22)   /* floats per message of a bucketed collective (16 MiB) */

/* Starts MPI when the process runs under mpirun (Open MPI's environment says so) and the build has MPI;
 * otherwise the process is rank 0 of 1. On ranks > 0 stdout goes to /dev/null and gk_verbose is 0, so only
 * rank 0 prints the progress line and JSON. Safe to call once, before any other call here. */
void dist_init(int *argc, char ***argv);
/* MPI_Finalize (when started). */
void dist_finalize(void);
int  dist_rank(void);
int  dist_size(void);
/* 1 when this build has MPI (whether or not this process runs under mpirun). */
int  dist_available(void);

/* Sum over ranks of buf[n], in place, on every rank (bucketed). */
void dist_allreduce_sum_f32(float *buf, size_t n);
void dist_allreduce_sum_f64(double *buf, size_t n);
/* 1 on every rank when v is non-zero on any rank: how ranks agree to stop, fail or save together. */
int  dist_any(int v);
/* buf[n] of root copied to every rank. */
void dist_bcast(void *buf, size_t bytes, int root);
/* Rank r's contiguous slice [lo, hi) of n items split as evenly as possible (the first n % size ranks hold
 * one more). */
void dist_shard(size_t n, int rank, int size, size_t *lo, size_t *hi);
/* Reduce-scatter of the sum: full[n] (every rank's contribution, the whole buffer) summed over ranks; this
 * rank's slice (dist_shard of n) of the sum written over the same slice of full (other entries unchanged). */
void dist_reduce_scatter_sum_f32(float *full, size_t n);
/* All-gather: every rank's slice (dist_shard of n) of buf[n] copied into every rank's buf, in place. */
void dist_allgather_f32(float *buf, size_t n);
/* Gather to rank 0: every rank's slice [lo, hi) of a n-float buffer, given as slice[hi - lo]; on rank 0 full[n]
 * receives all of them (full is ignored elsewhere). */
void dist_gather_f32(const float *slice, float *full, size_t n);
/* Concatenation in rank order of every rank's mine[nbytes] (sizes may differ), on every rank: a malloc'd
 * buffer of *total bytes (a copy of mine with one rank). For variable-length data (PPO's rollouts). */
void *dist_allgatherv(const void *mine, size_t nbytes, size_t *total);
/* A reduce-scatter of the sum, as dist_reduce_scatter_sum_f32 (the same slices: dist_shard of n, so ZeRO-1's
 * ownership and the checkpoints do not depend on it), done bucket by bucket with non-blocking collectives
 * while the caller still computes: the backward pass finishes the gradients from the end of the flat buffer
 * towards its start, so the buckets are cut from the end, `bucket` floats each, and each starts
 * (MPI_Ireduce_scatter on a communicator of its own) as soon as the part it covers is final.
 *   dist_rs_begin   plans the buckets of full[n]; no communication yet (every rank calls it, same n, bucket)
 *   dist_rs_ready   full[from, n) is final: starts every bucket inside it (in order), and drives MPI's progress
 *                   on those in flight (MPI_Testall): Open MPI moves a non-blocking collective only inside MPI calls
 *   dist_rs_finish  starts the rest, waits for all, writes this rank's slice of the sum over full's slice; frees
 * Every rank starts the same buckets in the same order whatever its calls to dist_rs_ready were, so a rank with
 * no backward this step (fewer micro-batches than ranks) just calls dist_rs_finish. One rank: no-ops (begin
 * returns NULL, the others accept it). */
typedef struct dist_rs dist_rs;
dist_rs *dist_rs_begin(float *full, size_t n, size_t bucket);
void dist_rs_ready(dist_rs *r, size_t from);
void dist_rs_finish(dist_rs *r);
/* GPU buffers (a backend whose memory is on the device, the cuda kind): the same collectives over NCCL, in the CUDA
 * plugin (kern.h, "NCCL"; a compile-time option of the build). dist_dev_open joins every rank to one NCCL
 * communicator on be's device: rank 0 makes the id, MPI broadcasts it (MPI still starts the ranks and carries
 * every small message). Collective; call it on every rank with the same kind of backend. Returns 0 (nothing done
 * with one rank, a host backend, or a communicator already open), or -1 with err on every rank (the build has no
 * NCCL, NCCL could not start here or on another rank). dist_dev_close frees it (dist_finalize does too). */
struct kern_backend;
int  dist_dev_open(struct kern_backend *be, gk_err *err);
void dist_dev_close(void);
/* 1 when be's buffers take the dist_dev_* calls: several ranks, a device backend, dist_dev_open done. */
int  dist_dev_active(const struct kern_backend *be);
/* The contracts of dist_allreduce_sum_f32, dist_reduce_scatter_sum_f32 (the same dist_shard slices) and
 * dist_allgather_f32, on device buffers; each returns with the result in place. */
void dist_dev_allreduce_sum_f32(float *buf, size_t n);
void dist_dev_reduce_scatter_sum_f32(float *full, size_t n);
void dist_dev_allgather_f32(float *buf, size_t n);
/* Blocks until every rank arrives. */
void dist_barrier(void);
/* Ends every rank of the job (MPI_Abort) with code; exit(code) without MPI. */
void dist_abort(int code) __attribute__((noreturn));
#endif
