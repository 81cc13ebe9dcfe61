/* tsne_test: the t-SNE building blocks against independent oracles — vantage-point tree against
 * brute force, calibrated perplexities against the target, the exact gradient against central
 * finite differences of KL, Barnes-Hut and FFT gradients against the exact one — then whole runs:
 * separated clusters stay separated, KL decreases, output is repeatable and independent of the
 * thread count. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test.h"
#include "tsne.h"

/* n points in d dimensions around k centres (spread `sep` per coordinate), unit noise. */
static float *clusters(int64_t n, int d, int k, double sep, uint64_t seed, int32_t *lab)
{
    float *x = malloc(sizeof *x * (size_t)n * d), *c = malloc(sizeof *c * (size_t)k * d);
    util_rng r;
    util_rng_seed(&r, seed);
    for (int64_t i = 0; i < (int64_t)k * d; i++) c[i] = (float)(sep * util_rng_normal(&r));
    for (int64_t i = 0; i < n; i++) {
        int l = (int)(i % k);
        if (lab) lab[i] = l;
        for (int j = 0; j < d; j++) x[i * d + j] = c[l * d + j] + (float)util_rng_normal(&r);
    }
    free(c);
    return x;
}

/* KL(P || Q) with exact Z, in double, for finite differences */
static double kl_exact(const tsne_sparse *P, const double *y, int D)
{
    return tsne_kl(P, y, D, tsne_exact_z(y, P->n, D, 1), 1);
}

static double rel_err(const double *a, const double *b, int64_t n)
{
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) {
        num += (a[i] - b[i]) * (a[i] - b[i]);
        den += b[i] * b[i];
    }
    return sqrt(num / den);
}

static int build_p(const float *x, int64_t n, int d, double perp, int k, tsne_sparse *P)
{
    struct util_err err;
    int32_t *idx = malloc(sizeof *idx * (size_t)n * k);
    float *d2 = malloc(sizeof *d2 * (size_t)n * k);
    double *pc = malloc(sizeof *pc * (size_t)n * k);
    int rc = tsne_knn(x, n, d, k, 1, 0, 0, idx, d2, &err);
    if (rc == 0) {
        tsne_calibrate(d2, n, k, perp, 0, pc);
        rc = tsne_symmetrize(idx, pc, n, k, P, &err);
    }
    free(idx); free(d2); free(pc);
    return rc;
}

struct trace {
    int n;
    int iter[64];
    double kl[64];
};

static void on_progress(void *ctx, int iter, int n_iter, double kl)
{
    struct trace *t = ctx;
    (void)n_iter;
    if (t->n < 64) {
        t->iter[t->n] = iter;
        t->kl[t->n++] = kl;
    }
}

/* leave-one-out 1-nearest-neighbour accuracy of labels in the embedding */
static double knn1_accuracy(const float *y, int64_t n, int D, const int32_t *lab)
{
    int64_t ok = 0;
    for (int64_t i = 0; i < n; i++) {
        double best = INFINITY;
        int64_t bj = -1;
        for (int64_t j = 0; j < n; j++) {
            if (j == i) continue;
            double s = 0;
            for (int dd = 0; dd < D; dd++) s += (y[i * D + dd] - y[j * D + dd]) * (y[i * D + dd] - y[j * D + dd]);
            if (s < best) { best = s; bj = j; }
        }
        ok += lab[bj] == lab[i];
    }
    return (double)ok / (double)n;
}

int main(void)
{
    struct util_err err = { { 0 } };

    /* 1. kNN: the tree finds exactly what brute force finds, ties (a coarse lattice) included */
    {
        const int64_t n = 600;
        const int d = 12, k = 20;
        float *x = clusters(n, d, 4, 3, 7, NULL);
        for (int64_t i = 0; i < n * d / 2; i++) x[i] = roundf(x[i]);   /* many equal distances */
        int32_t *i1 = malloc(sizeof *i1 * n * k), *i2 = malloc(sizeof *i2 * n * k);
        float *d1 = malloc(sizeof *d1 * n * k), *d2 = malloc(sizeof *d2 * n * k);
        int rc = tsne_knn(x, n, d, k, 1, 3, 2, i1, d1, &err) | tsne_knn(x, n, d, k, 0, 3, 1, i2, d2, &err);
        int same = rc == 0 && memcmp(i1, i2, sizeof *i1 * n * k) == 0 && memcmp(d1, d2, sizeof *d1 * n * k) == 0;
        int sorted = 1, noself = 1;
        for (int64_t i = 0; i < n; i++)
            for (int j = 0; j < k; j++) {
                if (j && d1[i * k + j] < d1[i * k + j - 1]) sorted = 0;
                if (i1[i * k + j] == i) noself = 0;
            }
        test_check(same && sorted && noself, "vantage-point tree kNN equals brute force (600 points, 12-D, k 20, with ties)");
        rc = tsne_knn(x, n, d, k, 1, 99, 1, i2, d2, &err);
        test_check(rc == 0 && memcmp(i1, i2, sizeof *i1 * n * k) == 0, "kNN independent of the tree's seed");
        test_check(tsne_knn(x, 5, d, 5, 1, 0, 1, i1, d1, &err) < 0, "k >= n refused: %s", err.msg);
        /* blocked brute force, with each kernel this CPU can run */
        const char *kern[3] = { "default", "avx2", "sse" };
        for (int kx = 0; kx < 3; kx++) {
            if (kx == 0) unsetenv("EARSIGHT_TSNE_KERNEL");
            else setenv("EARSIGHT_TSNE_KERNEL", kern[kx], 1);
            if (kx == 1 && !util_cpu_has_avx2_fma()) {
                test_skip("blocked kNN, avx2 kernel: the CPU has no AVX2/FMA");
                continue;
            }
            int32_t *i3 = malloc(sizeof *i3 * n * k);
            float *d3 = malloc(sizeof *d3 * n * k);
            rc = tsne_knn(x, n, d, k, 2, 0, 2, i3, d3, &err) | tsne_knn(x, n, d, k, 0, 3, 1, i2, d2, &err);
            test_check(rc == 0 && memcmp(i3, i2, sizeof *i3 * n * k) == 0 && memcmp(d3, d2, sizeof *d3 * n * k) == 0,
                       "blocked kNN (%s kernel) equals brute force", kern[kx]);
            free(i3); free(d3);
        }
        unsetenv("EARSIGHT_TSNE_KERNEL");
        free(i1); free(i2); free(d1); free(d2); free(x);
    }

    /* 2. perplexity calibration: 2^H of every row equals the target */
    {
        const int64_t n = 400;
        const int k = 60;
        float *x = clusters(n, 30, 5, 2, 11, NULL);
        int32_t *idx = malloc(sizeof *idx * n * k);
        float *d2 = malloc(sizeof *d2 * n * k);
        double *pc = malloc(sizeof *pc * n * k);
        tsne_knn(x, n, 30, k, 1, 0, 0, idx, d2, &err);
        for (int t = 0; t < 2; t++) {
            double target = t ? 20 : 5, worst = 0, worst_sum = 0;
            tsne_calibrate(d2, n, k, target, 0, pc);
            for (int64_t i = 0; i < n; i++) {
                double h = 0, s = 0;
                for (int j = 0; j < k; j++) {
                    double p = pc[i * k + j];
                    s += p;
                    if (p > 0) h -= p * log2(p);
                }
                worst = fmax(worst, fabs(pow(2, h) / target - 1));
                worst_sum = fmax(worst_sum, fabs(s - 1));
            }
            /* bisection stops at |H - log target| < 1e-5 nats: relative perplexity error <= 1e-5 */
            test_check(worst < 2e-5 && worst_sum < 1e-12, "calibrated perplexity %g: worst relative error %.2g (tol 2e-5), rows sum to 1",
                       target, worst);
        }
        /* equal distances: uniform row */
        float eq[10] = { 4, 4, 4, 4, 4, 4, 4, 4, 4, 4 };
        double pe[10];
        tsne_calibrate(eq, 1, 10, 3, 1, pe);
        int uni = 1;
        for (int j = 0; j < 10; j++) uni &= fabs(pe[j] - 0.1) < 1e-12;
        test_check(uni, "a row of equal distances gets uniform weights");
        /* symmetric P: p_ij = (p_j|i + p_i|j) / 2n, sums to 1 */
        tsne_calibrate(d2, n, k, 20, 0, pc);
        tsne_sparse P;
        tsne_symmetrize(idx, pc, n, k, &P, &err);
        double sum = 0, asym = 0;
        for (int64_t i = 0; i < n; i++)
            for (int64_t e = P.row[i]; e < P.row[i + 1]; e++) {
                sum += P.val[e];
                int64_t j = P.col[e];
                double back = -1;
                for (int64_t f = P.row[j]; f < P.row[j + 1]; f++)
                    if (P.col[f] == i) back = P.val[f];
                asym = fmax(asym, fabs(back - P.val[e]));
            }
        double want01 = 0;   /* p_{0,j} by definition for the first neighbour j of point 0 */
        int32_t j0 = idx[0];
        want01 = pc[0];
        for (int j = 0; j < k; j++)
            if (idx[j0 * k + j] == 0) want01 += pc[j0 * k + j];
        want01 /= 2.0 * n;
        double got01 = -1;
        for (int64_t e = P.row[0]; e < P.row[1]; e++)
            if (P.col[e] == j0) got01 = P.val[e];
        test_check(fabs(sum - 1) < 1e-5 && asym == 0 && fabs(got01 - want01) < 1e-7 * want01 + 1e-12,
                   "symmetric P: sums to %.7f, symmetric, p_ij = (p_j|i + p_i|j) / 2n", sum);
        tsne_sparse_free(&P);
        free(idx); free(d2); free(pc); free(x);
    }

    /* 3. exact gradient = finite differences of KL; BH and FFT gradients close to exact */
    for (int D = 2; D <= 3; D++) {
        const int64_t n = 40;
        float *x = clusters(n, 10, 3, 2, 5, NULL);
        tsne_sparse P;
        build_p(x, n, 10, 5, 15, &P);
        double *y = malloc(sizeof *y * n * D), *g = malloc(sizeof *g * n * D), *fd = malloc(sizeof *fd * n * D);
        util_rng r;
        util_rng_seed(&r, 2);
        for (int64_t i = 0; i < n * D; i++) y[i] = 3 * util_rng_normal(&r);
        tsne_opts o;
        tsne_opts_default(&o);
        o.threads = 1;
        tsne_grad *ge = tsne_grad_create(TSNE_EXACT, n, D, &o, &err);
        double z;
        tsne_gradient(ge, &P, y, 1, g, &z, &err);
        const double h = 1e-5;
        for (int64_t i = 0; i < n * D; i++) {
            double keep = y[i];
            y[i] = keep + h;
            double kp = kl_exact(&P, y, D);
            y[i] = keep - h;
            double km = kl_exact(&P, y, D);
            y[i] = keep;
            fd[i] = (kp - km) / (2 * h);
        }
        double e = rel_err(g, fd, n * D);
        /* central differences in double with h 1e-5: error ~h^2 * f''' + eps / h ~ 1e-10 relative */
        test_check(e < 1e-6, "%d-D exact gradient vs finite differences of KL: relative error %.2g (tol 1e-6)", D, e);
        /* exaggeration multiplies the attractive part only: g(a) - g(1) = (a - 1) * attraction */
        double *g3 = malloc(sizeof *g3 * n * D), *g5 = malloc(sizeof *g5 * n * D);
        tsne_gradient(ge, &P, y, 3, g3, &z, &err);
        tsne_gradient(ge, &P, y, 5, g5, &z, &err);
        double lin = 0;
        for (int64_t i = 0; i < n * D; i++) lin = fmax(lin, fabs((g5[i] - g3[i]) - (g3[i] - g[i])));
        test_check(lin < 1e-12, "%d-D gradient is linear in the exaggeration (%.2g)", D, lin);
        free(g3); free(g5);
        tsne_grad_free(ge);
        tsne_sparse_free(&P);
        free(y); free(g); free(fd); free(x);
    }
    for (int D = 2; D <= 3; D++) {
        const int64_t n = 1500;
        float *x = clusters(n, 20, 6, 2, 9, NULL);
        tsne_sparse P;
        build_p(x, n, 20, 30, 90, &P);
        double *y = malloc(sizeof *y * n * D), *ge_ = malloc(sizeof *ge_ * n * D), *gb = malloc(sizeof *gb * n * D);
        util_rng r;
        util_rng_seed(&r, 4);
        /* an embedding of the usual size: clusters a few units wide, some tens of units apart */
        for (int64_t i = 0; i < n; i++)
            for (int dd = 0; dd < D; dd++) y[i * D + dd] = 12 * ((i % 6) >> dd & 1) + 2 * util_rng_normal(&r) + (i % 6) * 3;
        tsne_opts o;
        tsne_opts_default(&o);
        double ze, zb;
        tsne_grad *g = tsne_grad_create(TSNE_EXACT, n, D, &o, &err);
        tsne_gradient(g, &P, y, 1, ge_, &ze, &err);
        tsne_grad_free(g);
        double theta[2] = { 0.5, 0.1 }, tol[2] = { 2e-2, 2e-3 };
        for (int t = 0; t < 2; t++) {
            o.theta = theta[t];
            g = tsne_grad_create(TSNE_BH, n, D, &o, &err);
            tsne_gradient(g, &P, y, 1, gb, &zb, &err);
            tsne_grad_free(g);
            double e = rel_err(gb, ge_, n * D), ez = fabs(zb / ze - 1);
            /* Barnes-Hut error shrinks with theta; the tolerances hold with margin for this layout */
            test_check(e < tol[t] && ez < tol[t], "%d-D Barnes-Hut theta %.1f vs exact: gradient rel err %.2g, Z rel err %.2g (tol %g)",
                       D, theta[t], e, ez, tol[t]);
        }
        o.theta = 0.5;
        g = tsne_grad_create(TSNE_FFT, n, D, &o, &err);
        int rc = tsne_gradient(g, &P, y, 1, gb, &zb, &err);
        tsne_grad_free(g);
        double e = rel_err(gb, ge_, n * D), ez = fabs(zb / ze - 1);
        /* 3 nodes per interval of at most 1 unit (FIt-SNE's defaults) are good to about 1e-2 in 2-D;
         * in 3-D the grid is capped at 32 intervals, 1.2 units here, hence the looser bound */
        double ftol = D == 2 ? 1e-2 : 5e-2;
        test_check(rc == 0 && e < ftol && ez < ftol, "%d-D FFT interpolation vs exact: gradient rel err %.2g, Z rel err %.2g (tol %g)",
                   D, e, ez, ftol);
        if (D == 2) {
            o.fft_nodes = 5;   /* more nodes per interval: closer */
            g = tsne_grad_create(TSNE_FFT, n, D, &o, &err);
            tsne_gradient(g, &P, y, 1, gb, &zb, &err);
            tsne_grad_free(g);
            double e5 = rel_err(gb, ge_, n * D);
            test_check(e5 < e, "2-D FFT with 5 nodes per interval is closer: %.2g < %.2g", e5, e);
            /* a tiny embedding (start of the optimisation): the grid shrinks with it */
            for (int64_t i = 0; i < n * D; i++) y[i] *= 1e-3;
            g = tsne_grad_create(TSNE_EXACT, n, D, &o, &err);
            tsne_gradient(g, &P, y, 12, ge_, &ze, &err);
            tsne_grad_free(g);
            o.fft_nodes = 3;
            g = tsne_grad_create(TSNE_FFT, n, D, &o, &err);
            tsne_gradient(g, &P, y, 12, gb, &zb, &err);
            tsne_grad_free(g);
            e = rel_err(gb, ge_, n * D);
            test_check(e < 1e-3, "2-D FFT on an embedding 0.01 units wide, exaggeration 12: rel err %.2g (tol 1e-3)", e);
        }
        tsne_sparse_free(&P);
        free(y); free(ge_); free(gb); free(x);
    }

    /* 4. whole runs: separated clusters in 50-D stay separated; KL decreases; repeatable */
    {
        const int64_t n = 1000;
        const int d = 50;
        int32_t lab[1000];
        float *x = clusters(n, d, 5, 3, 21, lab);
        float *y1 = malloc(sizeof *y1 * n * 3), *y2 = malloc(sizeof *y2 * n * 3);
        tsne_opts o;
        tsne_opts_default(&o);
        o.n_iter = 500;
        struct trace tr = { 0 };
        o.progress = on_progress;
        o.progress_ctx = &tr;
        o.threads = 2;
        tsne_stats st;
        int rc = tsne_run(x, n, d, y1, &o, &st, &err);
        double acc = rc == 0 ? knn1_accuracy(y1, n, 2, lab) : 0;
        test_check(rc == 0 && acc >= 0.95, "5 clusters in 50-D, 1000 points: 2-D 1-NN accuracy %.3f (>= 0.95), KL %.3f", acc, st.kl);
        int dec = tr.n >= 5;
        double first_after = NAN;
        for (int i = 0; i < tr.n; i++) {
            if (tr.iter[i] <= o.exag_iter) continue;
            if (isnan(first_after)) first_after = tr.kl[i];
            /* after early exaggeration each report may not rise by more than noise */
            if (i > 0 && tr.iter[i - 1] > o.exag_iter && tr.kl[i] > tr.kl[i - 1] * 1.01) dec = 0;
        }
        dec &= tr.kl[tr.n - 1] < first_after;
        test_check(dec, "KL decreases after early exaggeration: %.4f at step %d -> %.4f at the end", first_after,
                   o.exag_iter + 50, tr.kl[tr.n - 1]);
        o.progress = NULL;
        o.threads = 1;
        rc = tsne_run(x, n, d, y2, &o, &st, &err);
        test_check(rc == 0 && memcmp(y1, y2, sizeof *y1 * n * 2) == 0, "identical output with 1 and 2 threads");
        o.init = TSNE_INIT_RANDOM;
        o.seed = 5;
        rc = tsne_run(x, n, d, y1, &o, &st, &err) | tsne_run(x, n, d, y2, &o, &st, &err);
        test_check(rc == 0 && memcmp(y1, y2, sizeof *y1 * n * 2) == 0, "random init: same seed, identical output");
        acc = knn1_accuracy(y1, n, 2, lab);
        test_check(acc >= 0.95, "random init: 1-NN accuracy %.3f", acc);
        o.seed = 6;
        rc = tsne_run(x, n, d, y2, &o, &st, &err);
        test_check(rc == 0 && memcmp(y1, y2, sizeof *y1 * n * 2) != 0, "random init: another seed, another map");
        /* 3-D */
        o.init = TSNE_INIT_PCA;
        o.dims = 3;
        rc = tsne_run(x, n, d, y1, &o, &st, &err);
        acc = rc == 0 ? knn1_accuracy(y1, n, 3, lab) : 0;
        test_check(rc == 0 && acc >= 0.95 && st.steps_bh == 500, "3-D map (Barnes-Hut): 1-NN accuracy %.3f, KL %.3f", acc, st.kl);
        /* exact on a small set */
        o.dims = 2;
        o.method = TSNE_EXACT;
        o.perplexity = 10;
        o.n_iter = 750;
        rc = tsne_run(x, 200, d, y1, &o, &st, &err);
        acc = rc == 0 ? knn1_accuracy(y1, 200, 2, lab) : 0;
        test_check(rc == 0 && acc >= 0.95 && st.k == 199, "exact method, 200 points: 1-NN accuracy %.3f, KL %.3f", acc, st.kl);
        /* bad arguments */
        o.method = TSNE_AUTO;
        o.perplexity = 30;
        err.msg[0] = 0;
        test_check(tsne_run(x, 50, d, y1, &o, &st, &err) < 0 && strstr(err.msg, "perplexity"), "perplexity 30 with 50 points refused: %s",
                   err.msg);
        test_check(tsne_run(x, 1, d, y1, &o, &st, &err) < 0, "a single point refused: %s", err.msg);
        x[17] = NAN;
        test_check(tsne_run(x, n, d, y1, &o, &st, &err) < 0 && strstr(err.msg, "point 0"), "NaN input refused: %s", err.msg);
        free(x); free(y1); free(y2);
    }
    return test_exit();
}
