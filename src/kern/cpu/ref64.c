/* ref64.c: the reference trunk ops (ref_impl.h) compiled for double: kern_ref64_*, used by the tests'
 * finite-difference gradient checks, where fp32 rounding would swamp the difference quotients. */
#include "kern/kern.h"
#include "kern/cpu/cpu.h"
#include "core/core.h"
#include <math.h>
#include <stdlib.h>

#define REAL double
#define FN(x) kern_ref64_##x
#define REF_BE
#define R_EXP exp
#define R_LOG log
#define R_SQRT sqrt
#define R_TANH tanh
#define R_COS cos
#define R_SIN sin
#include "kern/cpu/ref_impl.h"
