/* nn_internal.h: helpers shared by the lib/nn_*.c files, not part of the engine's interface. */
#ifndef EARSIGHT_NN_INTERNAL_H
#define EARSIGHT_NN_INTERNAL_H

#include <stdint.h>

/* Hot elementwise loops are compiled three times and the best version for the running CPU is picked
 * when the program starts (GNU ifunc), so one binary uses AVX-512 where it exists and never executes
 * it where it does not. */
#define NN_SIMD __attribute__((target_clones("avx512f", "avx2", "default")))

/* Loops over fewer values than this run on one thread: starting a team costs microseconds, and far
 * more when the cores are shared with other processes (a descheduled thread stalls the barrier). */
#define NN_PAR_MIN ((int64_t)1 << 15)

/* Sums accumulated in float over short blocks (vectorised) and in double across blocks, so that a
 * channel of 10^6 values keeps ~1e-7 relative accuracy.  The order is fixed: results do not depend on
 * the thread count. */
double nn_sum(const float *x, int64_t n);
double nn_sumsq(const float *x, int64_t n);
double nn_dot(const float *x, const float *y, int64_t n);

#endif
