/* tsne_bench: t-SNE of 10 Gaussian clusters in 512-D (centres uniform in [-10, 10]^512, unit
 * spread, as scikit-learn's make_blobs): wall and CPU time of each stage and final KL (exact Z) for
 * Barnes-Hut, FFT and automatic repulsion.  Usage: tsne_bench [N...] (default 2000 10000);
 * TSNE_BENCH_METHODS (default "bh fft auto"), TSNE_BENCH_THREADS=N (default all CPUs). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tsne.h"

static double cpu_seconds(void)   /* all threads of the process: the work, whatever the machine's load */
{
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static float *blobs(int64_t n, int d, int k, uint64_t seed, int32_t *lab)
{
    float *x = malloc(sizeof *x * (size_t)n * d), *c = malloc(sizeof *c * (size_t)k * d);
    util_rng r;
    util_rng_seed(&r, seed);
    for (int64_t i = 0; i < (int64_t)k * d; i++) c[i] = (float)(20 * util_rng_uniform(&r) - 10);
    for (int64_t i = 0; i < n; i++) {
        lab[i] = (int32_t)(i % k);
        for (int j = 0; j < d; j++) x[i * d + j] = c[lab[i] * d + j] + (float)util_rng_normal(&r);
    }
    free(c);
    return x;
}

int main(int argc, char **argv)
{
    int64_t sizes[8] = { 2000, 10000 };
    int n_sizes = 2;
    if (argc > 1) {
        n_sizes = 0;
        for (int i = 1; i < argc && n_sizes < 8; i++) sizes[n_sizes++] = atol(argv[i]);
    }
    const char *methods = getenv("TSNE_BENCH_METHODS");
    if (!methods) methods = "bh fft auto";
    int threads = getenv("TSNE_BENCH_THREADS") ? atoi(getenv("TSNE_BENCH_THREADS")) : 0;
    const int d = 512;
    for (int s = 0; s < n_sizes; s++) {
        int64_t n = sizes[s];
        int32_t *lab = malloc(sizeof *lab * (size_t)n);
        float *x = blobs(n, d, 10, 1, lab), *y = malloc(sizeof *y * (size_t)n * 2);
        char buf[64];
        snprintf(buf, sizeof buf, "%s", methods);
        for (char *m = strtok(buf, " "); m; m = strtok(NULL, " ")) {
            tsne_opts o;
            tsne_opts_default(&o);
            o.threads = threads;
            o.method = strcmp(m, "bh") == 0 ? TSNE_BH : strcmp(m, "fft") == 0 ? TSNE_FFT
                     : strcmp(m, "auto") == 0 ? TSNE_AUTO : TSNE_EXACT;
            tsne_stats st;
            struct util_err err = { { 0 } };
            double t0 = util_now(), c0 = cpu_seconds();
            if (tsne_run(x, n, d, y, &o, &st, &err) < 0) {
                fprintf(stderr, "tsne_bench: %s\n", err.msg);
                return 1;
            }
            double t = util_now() - t0, cpu = cpu_seconds() - c0;
            printf("tsne %-4s N=%-6lld 512-D 10 clusters: wall %6.2f s (knn %.2f, affinities %.2f, optimise %.2f), "
                   "CPU %6.2f s; steps BH %d, FFT %d; KL %.4f%s\n",
                   m, (long long)n, t, st.t_knn, st.t_affinity, st.t_optimise, cpu, st.steps_bh, st.steps_fft, st.kl,
                   st.exact_z ? "" : " (approx Z)");
            fflush(stdout);
        }
        free(lab); free(x); free(y);
    }
    return 0;
}
