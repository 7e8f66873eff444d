/* emu.h: just enough of CUDA's execution model, on the CPU, to run src/kern/cuda/ops.cu and attn.cu as plain C++
 * (g++ -DKCU_EMULATE) in tests/cuda_emu/test_cuda_emu.cc, so the kernels' logic -- index arithmetic, grid-stride
 * loops, warp and block reductions, barriers, the order of reads and writes when outputs alias inputs -- is
 * tested against the CPU reference on a machine without a GPU.
 *
 * Model: a launch runs its blocks one after another; within a block every thread is a fiber (ucontext) and the
 * fibers run in rounds, each round in a fresh (seeded) pseudo-random order, switching only at __syncthreads, at a
 * warp shuffle, or when a thread ends. So:
 *  - __syncthreads is a real barrier (a thread past it sees every write made before it by the block);
 *  - __shfl_xor_sync is a real exchange among the 32 lanes of a warp (all 32 must take part, as CUDA requires
 *    for a full mask; a missing lane deadlocks, which the scheduler reports);
 *  - __shared__ becomes `static`: one copy, reused by each block in turn (blocks never interleave);
 *  - atomicAdd is a plain add (fibers never preempt each other).
 *  - a missing barrier usually shows: which thread runs first between two barriers changes from round to round.
 * What it cannot show: races inside one stretch between barriers (each thread runs it whole, without
 * interleaving),
 * memory-model and alignment faults, performance, and anything of cuBLASLt (backend.cu is not emulated). */
#ifndef GK_CUDA_EMU_H
#define GK_CUDA_EMU_H

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <functional>

struct uint3 { unsigned x, y, z; };
struct dim3 {
    unsigned x, y, z;
    dim3(unsigned a = 1, unsigned b = 1, unsigned c = 1) : x(a), y(b), z(c) {}
};

namespace emu {
struct thread_state;
extern thread_state *cur;            /* the fiber running now */
extern uint3 block_idx;
extern dim3 block_dim, grid_dim;
const uint3 &thread_idx();
void launch(dim3 grid, dim3 block, const std::function<void()> &body);
void syncthreads();
float shfl_xor(float v, int lane_mask);
double shfl_xor_d(double v, int lane_mask);
float shfl_idx(float v, int src_lane);
}

#define threadIdx (emu::thread_idx())
#define blockIdx (emu::block_idx)
#define blockDim (emu::block_dim)
#define gridDim (emu::grid_dim)
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __shared__ static
#define __syncthreads() emu::syncthreads()
static inline float __shfl_xor_sync(unsigned mask, float v, int o) { (void)mask; return emu::shfl_xor(v, o); }
static inline float __shfl_sync(unsigned mask, float v, int src) { (void)mask; return emu::shfl_idx(v, src); }
static inline float atomicAdd(float *p, float v) { float old = *p; *p += v; return old; }

#define KCU_LAUNCH(kernel, grid, block, ...) emu::launch(dim3(grid), dim3(block), [&]() { kernel(__VA_ARGS__); })

/* the runtime calls ops.cu and attn.cu make */
typedef enum { cudaSuccess = 0, cudaErrorUnknown = 999 } cudaError_t;
typedef enum { cudaMemcpyHostToDevice = 1, cudaMemcpyDeviceToHost = 2, cudaMemcpyDeviceToDevice = 3 } cudaMemcpyKind;
static inline cudaError_t cudaGetLastError(void) { return cudaSuccess; }
static inline const char *cudaGetErrorName(cudaError_t e) { return e == cudaSuccess ? "cudaSuccess" : "cudaErrorUnknown"; }
static inline const char *cudaGetErrorString(cudaError_t e) { return cudaGetErrorName(e); }
static inline cudaError_t cudaMemcpy(void *d, const void *s, size_t n, cudaMemcpyKind k) { (void)k; memmove(d, s, n); return cudaSuccess; }
typedef struct { uint16_t x; } __nv_bfloat16;

#endif
