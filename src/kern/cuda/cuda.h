/* cuda.h: private to src/kern. What the backend tables (cpu/backends.c) need from the CUDA backend, in plain C.
 * Built from the .cu files of src/kern/cuda when the Makefile finds nvcc (GK_HAVE_CUDA); otherwise cuda/loader.c stands in and
 * every entry says "this build has no CUDA backend". The .cu files include this header inside extern "C".
 *
 * The backend's ops take device pointers (cudaMalloc'd by its alloc op); token ids, targets, slots, positions
 * and rotary frequencies are int32/fp32 device arrays as kern.h says. Everything runs on the legacy default
 * stream in issue order, so an upload/download (cudaMemcpy) is ordered after every kernel before it.
 */
#ifndef GK_KERN_CUDA_H
#define GK_KERN_CUDA_H

#include "kern/kern.h"

/* Fills be->cuda (device 0 of this process, a cuBLASLt handle and workspace), be->ops and be->name for be's
 * precision. Returns 0, or -1 with a one-line message in err (no driver, no device, a device the build has no
 * code for, a cuBLASLt failure); be is then untouched apart from be->cuda staying NULL. */
int  kern_cuda_init(kern_backend *be, gk_err *err);
/* Frees be->cuda (its scratch, bf16 copy, handle). Buffers from kern_alloc are the caller's to free first. */
void kern_cuda_fini(kern_backend *be);
/* Writes be->name for its precision: "cuda(NVIDIA H100 80GB HBM3, sm_90, fp32)". */
void kern_cuda_name(kern_backend *be);
/* The op table (NULL in a build without CUDA). A table lookup only: needs no device. */
const kern_ops *kern_cuda_ops(void);
/* kern.h's kern_cuda_built / kern_cuda_usable. */
int  kern_cuda_built_impl(void);
int  kern_cuda_usable_impl(gk_err *err);

/* NCCL (nccl.cu, in the plugin only when the build found NCCL: GK_HAVE_NCCL). A communicator is the plugin's
 * (void *). version: NCCL's version code (e.g. 22809), 0 when the plugin has no NCCL (loader.c answers that for a
 * plugin without these entries). The collectives abort on failure with file:line (kern.h says what they do). */
int   kern_cuda_nccl_version(void);
int   kern_cuda_nccl_unique_id(unsigned char *id, gk_err *err);
void *kern_cuda_nccl_init(kern_backend *be, const unsigned char *id, int nranks, int rank, gk_err *err);
void  kern_cuda_nccl_free(void *comm);
void  kern_cuda_nccl_allreduce_sum_f32(void *comm, float *buf, size_t n);
void  kern_cuda_nccl_reduce_scatter_sum_f32(void *comm, float *full, const size_t *bounds);
void  kern_cuda_nccl_allgather_f32(void *comm, float *buf, const size_t *bounds);

#endif
