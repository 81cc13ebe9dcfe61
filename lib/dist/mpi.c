/* dist/mpi.c: the world of MPI_COMM_WORLD through OpenMPI.  MPI starts only under a launcher
 * (mpirun/mpiexec set OMPI_COMM_WORLD_SIZE, srun sets PMIX_RANK or PMI_RANK): a tool run by hand
 * stays one process and skips MPI_Init, which would otherwise start OpenMPI's singleton runtime. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sys/stat.h>

#include <mpi.h>

#include "dist.h"

static int world_rank = 0, world_size = 1, mpi_on = 0;
static char backend[MPI_MAX_LIBRARY_VERSION_STRING + 32] = "single process";

/* MPI counts are int: long arrays go in slices. */
#define SLICE (1 << 28)

static int launched(void)
{
    static const char *const vars[] = {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK", "PMI_SIZE"};
    for (size_t i = 0; i < sizeof vars / sizeof *vars; i++)
        if (getenv(vars[i])) return 1;
    return 0;
}

int dist_init(struct util_err *err)
{
    if (mpi_on || !launched()) return 0;
    int provided = 0;
    if (MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
        return util_err_set(err, "MPI_Init_thread failed");
    mpi_on = 1;
    /* errors end the job with a message (the default), never a silent return code */
    MPI_Comm_rank(MPI_COMM_WORLD, &world_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &world_size);
    char v[MPI_MAX_LIBRARY_VERSION_STRING];
    int len = 0;
    MPI_Get_library_version(v, &len);
    v[strcspn(v, ",\n")] = 0;   /* "Open MPI v4.1.4, package: ..." -> "Open MPI v4.1.4" */
    snprintf(backend, sizeof backend, "%s, %d ranks", v, world_size);
    return 0;
}

void dist_finalize(void)
{
    if (mpi_on) MPI_Finalize();
    mpi_on = 0;
}

int dist_rank(void) { return world_rank; }
int dist_size(void) { return world_size; }
const char *dist_backend(void) { return backend; }

void dist_sum_f32(float *v, int64_t n)
{
    if (world_size < 2) return;
    for (int64_t i = 0; i < n; i += SLICE)
        MPI_Allreduce(MPI_IN_PLACE, v + i, (int)(n - i < SLICE ? n - i : SLICE), MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
}

void dist_sum_f64(double *v, int64_t n)
{
    if (world_size < 2) return;
    for (int64_t i = 0; i < n; i += SLICE)
        MPI_Allreduce(MPI_IN_PLACE, v + i, (int)(n - i < SLICE ? n - i : SLICE), MPI_DOUBLE, MPI_SUM,
                      MPI_COMM_WORLD);
}

void dist_gather_f32(const float *mine, int64_t n, float *all)
{
    if (world_size < 2) {
        if (all != mine) memmove(all, mine, sizeof(float) * (size_t)n);
        return;
    }
    if (n <= INT_MAX) {
        MPI_Allgather(mine, (int)n, MPI_FLOAT, all, (int)n, MPI_FLOAT, MPI_COMM_WORLD);
        return;
    }
    for (int r = 0; r < world_size; r++) {   /* never for projections; kept correct for any n */
        float *dst = all + (int64_t)r * n;
        if (r == world_rank) memcpy(dst, mine, sizeof(float) * (size_t)n);
        dist_bcast_f32(dst, n, r);
    }
}

void dist_bcast_f32(float *v, int64_t n, int root)
{
    if (world_size < 2) return;
    for (int64_t i = 0; i < n; i += SLICE)
        MPI_Bcast(v + i, (int)(n - i < SLICE ? n - i : SLICE), MPI_FLOAT, root, MPI_COMM_WORLD);
}

/* int counts and displacements of the slices: a model has far fewer than 2^31 parameters (the trainers
 * check before they shard) */
static void slice_counts(const int64_t *start, int *count, int *displ)
{
    for (int r = 0; r < world_size; r++) count[r] = (int)(start[r + 1] - start[r]), displ[r] = (int)start[r];
}

void dist_sum_slice_f32(float *v, const int64_t *start, float *tmp)
{
    if (world_size < 2) return;
    int count[world_size], displ[world_size];
    slice_counts(start, count, displ);
    MPI_Reduce_scatter(v, tmp, count, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
    memcpy(v + start[world_rank], tmp, sizeof(float) * (size_t)count[world_rank]);
}

void dist_gather_slices_f32(float *v, const int64_t *start)
{
    if (world_size < 2) return;
    int count[world_size], displ[world_size];
    slice_counts(start, count, displ);
    MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, v, count, displ, MPI_FLOAT, MPI_COMM_WORLD);
}

int dist_agree_u64(uint64_t v)
{
    if (world_size < 2) return 1;
    uint64_t lo = v, hi = v;
    MPI_Allreduce(MPI_IN_PLACE, &lo, 1, MPI_UINT64_T, MPI_MIN, MPI_COMM_WORLD);
    MPI_Allreduce(MPI_IN_PLACE, &hi, 1, MPI_UINT64_T, MPI_MAX, MPI_COMM_WORLD);
    return lo == hi;
}

int dist_check_stdin(struct util_err *err)
{
    if (world_size < 2) return 0;
    struct stat st;
    const int ok = fstat(0, &st) == 0 && (S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode) || S_ISREG(st.st_mode));
    int first_bad = ok ? world_size : world_rank;
    MPI_Allreduce(MPI_IN_PLACE, &first_bad, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    if (first_bad == world_size) return 0;
    return util_err_set(err, "-: rank %d of %d has no stream on its standard input (mpirun passes its own to rank 0 "
                        "only): give a file, or let every rank run its own pipe, mpirun ... sh -c 'PRODUCER | TOOL -'",
                        first_bad, world_size);
}

void dist_fail(const struct util_err *err)
{
    if (world_size < 2) {
        util_report(err);
        return;
    }
    struct util_err e = {{0}};
    util_err_set(&e, "rank %d of %d: %s", world_rank, world_size, err->msg);
    util_report(&e);
    fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, 1);
    exit(1);
}
