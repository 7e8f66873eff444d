/* none.c: the CUDA backend's stand-in in a build without nvcc (GK_HAVE_CUDA undefined): every entry of cuda.h
 * says the build has none, so `--device cuda` fails with one clear line instead of a link error. In a build with
 * CUDA the real entries live in the .cu files beside this one and this file compiles to nothing. */
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
#else
typedef int kern_cuda_none_unused;   /* ISO C wants a declaration in every translation unit */
#endif
