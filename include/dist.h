/* dist.h: data-parallel training across processes.  One implementation is linked per build:
 * lib/dist/mpi.c (OpenMPI, when pkg-config finds ompi-c, i.e. libopenmpi-dev is installed) or
 * lib/dist/single.c (one process, every call a no-op).  The trainers call the same functions either way.
 *
 * A process is one of dist_size() ranks; rank 0 writes the files.  MPI is initialised only when a
 * launcher started the process (mpirun / mpiexec of OpenMPI, or Slurm's srun: their environment
 * variables say so); a tool run directly is a world of one and never touches MPI.  Every collective
 * below must be called by all ranks in the same order (the trainers do so step by step).  Only the
 * calling (main) thread may use them. */
#ifndef EARSIGHT_DIST_H
#define EARSIGHT_DIST_H

#include <stdint.h>

#include "util.h"

/* Join the world (MPI_Init_thread when launched by mpirun/srun).  0, or -1 with err set. */
int dist_init(struct util_err *err);
/* Leave it (MPI_Finalize); call once at the end of a successful run. */
void dist_finalize(void);
int dist_rank(void);
int dist_size(void);
/* "single process" or the MPI library's version, for logs and --version. */
const char *dist_backend(void);

/* In-place element-wise sums over all ranks (MPI_Allreduce).  Every rank receives the same bits. */
void dist_sum_f32(float *v, int64_t n);
void dist_sum_f64(double *v, int64_t n);
/* all (size * n) = the n values of rank 0, then rank 1's, ... (MPI_Allgather). */
void dist_gather_f32(const float *mine, int64_t n, float *all);
/* v (n) on every rank = rank root's. */
void dist_bcast_f32(float *v, int64_t n, int root);
/* Shards: slice r of v is [start[r], start[r + 1]) (start has size + 1 entries, start[0] = 0).
 * dist_sum_slice_f32: this rank's slice of v becomes the sum over ranks of that slice
 * (MPI_Reduce_scatter); the rest of v is left as it was.  tmp holds the largest slice.
 * dist_gather_slices_f32: every rank's slice of v from the rank that owns it (MPI_Allgatherv, in place).
 * Together they are dist_sum_f32 with the work between them shared out. */
void dist_sum_slice_f32(float *v, const int64_t *start, float *tmp);
void dist_gather_slices_f32(float *v, const int64_t *start);
/* 1 when every rank passed the same value, else 0 (collective). */
int dist_agree_u64(uint64_t v);

/* Input "-" with several ranks: mpirun gives its standard input to rank 0 only (the others read
 * /dev/null), so a stream piped into mpirun cannot feed them; each rank's own pipe can
 * (mpirun -np N sh -c 'augment ... | simclr-train ... -').  -1 with err set (naming the first rank
 * concerned) unless every rank's standard input is a pipe, socket or regular file (collective). */
int dist_check_stdin(struct util_err *err);

/* After a failure: print err (prefixed "rank R of N:" when there are several ranks) and, with several
 * ranks, abort the whole job (MPI_Abort) so that no rank waits forever on one that has gone.  With one
 * rank it only prints, and returns. */
void dist_fail(const struct util_err *err);

#endif
