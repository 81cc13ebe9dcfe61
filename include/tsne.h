/* tsne.h: t-SNE (van der Maaten 2008/2014) with three ways to compute the repulsive forces: exact
 * O(N^2), Barnes-Hut on a quadtree/octree, and FFT-accelerated interpolation on a grid (FIt-SNE,
 * Linderman et al. 2019).  Affinities come from perplexity calibration by bisection on the k nearest
 * neighbours (k = 3 * perplexity), found with a vantage-point tree in few dimensions and by blocked
 * brute force in many; the exact method uses all N-1 neighbours.  Deterministic for given inputs
 * and seed, whatever the thread count. */
#ifndef EARSIGHT_TSNE_H
#define EARSIGHT_TSNE_H

#include <stdint.h>

#include "util.h"

enum tsne_method { TSNE_AUTO = 0, TSNE_EXACT = 1, TSNE_BH = 2, TSNE_FFT = 3 };
enum tsne_init { TSNE_INIT_PCA = 0, TSNE_INIT_RANDOM = 1 };

/* Called every 50 iterations with the KL divergence of the embedding after `iter` steps (Z as the
 * method estimates it), and once at the end with the final KL (iter == n_iter). */
typedef void (*tsne_progress_fn)(void *ctx, int iter, int n_iter, double kl);

typedef struct {
    int dims;                 /* 2 or 3 (default 2) */
    double perplexity;        /* default 30 */
    int n_iter;               /* total gradient steps (default 1000) */
    int exag_iter;            /* steps with early exaggeration (default 250) */
    double exaggeration;      /* default 12 */
    double learning_rate;     /* <= 0: max(200, N / 12) (default) */
    double momentum;          /* during early exaggeration (default 0.5) */
    double final_momentum;    /* afterwards (default 0.8) */
    double theta;             /* Barnes-Hut opening angle (default 0.5) */
    double max_step;          /* longest step of one point per iteration; <= 0: unlimited (default 5) */
    enum tsne_method method;  /* AUTO: in 2-D, each step the cheaper of Barnes-Hut and FFT by a fixed
                                 cost model (so still deterministic); in 3-D Barnes-Hut */
    enum tsne_init init;      /* default PCA */
    double init_scale;        /* standard deviation of the first initial coordinate (default 1e-4) */
    uint64_t seed;            /* vantage points and random init (default 0) */
    int threads;              /* OpenMP threads; <= 0: OpenMP's default (all CPUs) */
    int fft_nodes;            /* interpolation nodes per interval (default 3) */
    int fft_min_intervals;    /* grid intervals per dimension at least (default 50 in 2-D, 16 in 3-D) */
    double fft_interval_size; /* intervals no wider than this in embedding units (default 1); the
                                 count is capped at min(400, 4 sqrt N) in 2-D, min(32, 3 N^(1/3))
                                 in 3-D per dimension: beyond, intervals widen */
    tsne_progress_fn progress;
    void *progress_ctx;
} tsne_opts;

void tsne_opts_default(tsne_opts *o);

/* Statistics of a run. */
typedef struct {
    enum tsne_method method;  /* what was asked for (AUTO stays AUTO in 2-D, BH in 3-D) */
    int steps_bh, steps_fft;  /* gradient steps done with each repulsion method */
    int k;                    /* neighbours per point */
    double kl;                /* final KL(P || Q), Z computed exactly when exact_z */
    int exact_z;              /* 1: Z summed over all pairs; 0: the method's estimate (N > 20000) */
    double t_knn, t_affinity, t_optimise;   /* seconds */
} tsne_stats;

/* Embed n points of d dimensions (x: n x d, row-major) into y (n x o->dims).  n >= 2, the
 * perplexity at most tsne_max_perplexity(n), the exact method for n <= 4000.
 * 0 or -1 (bad arguments, non-finite input, memory). */
int tsne_run(const float *x, int64_t n, int d, float *y, const tsne_opts *o, tsne_stats *st,
             struct util_err *err);
/* The largest perplexity usable with n points ((n - 1) / 3, so that k = 3 * perplexity < n). */
double tsne_max_perplexity(int64_t n);

/* ---- building blocks, exposed for tests and benchmarks ---- */

/* k nearest neighbours of every point (excluding itself) by Euclidean distance, in increasing
 * distance (ties by index): idx (n x k), dist2 (n x k) squared distances.  how: 1 vantage-point
 * tree (seeded), 0 brute force one pair at a time (the oracle), 2 brute force by blocks (dot
 * products screen k + 16 candidates, which are then measured and ranked exactly; much faster in
 * high dimensions, where the tree prunes little).  0 or -1. */
int tsne_knn(const float *x, int64_t n, int d, int k, int how, uint64_t seed, int threads, int32_t *idx,
             float *dist2, struct util_err *err);

/* Conditional affinities p_{j|i} of each row (k neighbours, squared distances) calibrated by
 * bisection on the Gaussian precision so that the row's perplexity 2^H equals `perplexity`
 * (tolerance 1e-5 in entropy).  p (n x k) out.  Rows of equal distances get uniform weights. */
void tsne_calibrate(const float *dist2, int64_t n, int k, double perplexity, int threads, double *p);

/* Symmetric joint affinities P = (P_cond + P_cond^T) / (2n) in CSR form. */
typedef struct {
    int64_t n;
    int64_t *row;   /* (n + 1) offsets */
    int32_t *col;   /* (nnz) */
    float *val;     /* (nnz), sums to 1 (single precision halves the memory streamed per step) */
} tsne_sparse;
int tsne_symmetrize(const int32_t *idx, const double *p, int64_t n, int k, tsne_sparse *P,
                    struct util_err *err);
void tsne_sparse_free(tsne_sparse *P);

/* Gradient workspace for one method (tree nodes, FFT grids and plans). */
typedef struct tsne_grad tsne_grad;
tsne_grad *tsne_grad_create(enum tsne_method method, int64_t n, int dims, const tsne_opts *o,
                            struct util_err *err);
void tsne_grad_free(tsne_grad *g);
/* Gradient of KL(exaggeration * P || Q) at y (n x dims) into grad (n x dims); *z receives the
 * normalisation sum_{i != j} (1 + |y_i - y_j|^2)^-1 as the method estimates it.  0 or -1. */
int tsne_gradient(tsne_grad *g, const tsne_sparse *P, const double *y, double exaggeration, double *grad,
                  double *z, struct util_err *err);
/* KL(P || Q) for y, with the given Z. */
double tsne_kl(const tsne_sparse *P, const double *y, int dims, double z, int threads);
/* Exact Z (O(N^2), parallel). */
double tsne_exact_z(const double *y, int64_t n, int dims, int threads);

/* Scatter plot of the first two coordinates of y (n x dims), coloured by label (label -1 grey),
 * with a legend of class names (names may be NULL: "class K") and per-class counts.  title may be
 * NULL.  0 or -1. */
int tsne_plot_png(const float *y, int64_t n, int dims, const int32_t *labels, char **names, int n_names,
                  const char *title, const char *path, struct util_err *err);

#endif
