/* allreduce_bench: the cost of the data-parallel gradient sum, for bench/dist_bench.sh.
 *   mpirun -np N allreduce_bench [FLOATS] [REPS]
 * Times dist_sum_f32 (MPI_Allreduce, in place) of FLOATS floats (default 11,200,000: a ResNet-18's
 * gradients) REPS times (default 10) after one warm-up call; rank 0 prints
 * "allreduce N ranks FLOATS floats: best S s, median S s, GB/s" (bytes of the vector per second). */
#include <stdio.h>
#include <stdlib.h>

#include "dist.h"
#include "util.h"

static int cmp_double(const void *a, const void *b)
{
    const double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    struct util_err err = {{0}};
    const long n = argc > 1 ? atol(argv[1]) : 11200000L, reps = argc > 2 ? atol(argv[2]) : 10;
    if (n < 1 || reps < 1 || reps > 1000) return fprintf(stderr, "usage: allreduce_bench [FLOATS] [REPS]\n"), 2;
    if (dist_init(&err) < 0) return dist_fail(&err), 1;
    float *v = malloc(sizeof(float) * (size_t)n);
    double *t = malloc(sizeof(double) * (size_t)reps);
    if (!v || !t) return fprintf(stderr, "allreduce_bench: out of memory\n"), 1;
    for (long i = 0; i < n; i++) v[i] = (float)(i % 97) * 1e-3f;
    dist_sum_f32(v, n);
    for (long r = 0; r < reps; r++) {
        const double t0 = util_now();
        dist_sum_f32(v, n);
        t[r] = util_now() - t0;
    }
    qsort(t, (size_t)reps, sizeof *t, cmp_double);
    if (dist_rank() == 0)
        printf("allreduce %d ranks %ld floats: best %.4f s, median %.4f s, %.2f GB/s\n", dist_size(), n, t[0],
               t[reps / 2], 4e-9 * (double)n / t[0]);
    free(v);
    free(t);
    dist_finalize();
    return 0;
}
