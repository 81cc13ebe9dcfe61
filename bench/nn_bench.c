/* nn_bench: throughput of the engine next to BLIS's own sgemm measured in the same run.
 * Training steps (forward, cross-entropy, backward, SGD update) in images/s and achieved GFLOP/s
 * (3x the forward FLOPs of convolutions and linear layers), inference in images/s.
 * Usage: nn_bench [-j THREADS] [-s STEPS] [-p fp32|bf16] [CASE...]
 * cases: sgemm r18train r50train r18infer, and those of the bf16 bench: r18train3 r50train3 r18infer3 (3x128x250)
 * and r18simclr (the ResNet-18 train step of SimCLR at 64x64, 2 x 256 views, imagenet stem, 10-way fc);
 * conv: each 3x3 stride-1 convolution shape of those networks at 3x128x250, im2col against Winograd.
 * -c: each case in -r rounds (3) of im2col then Winograd (NN_CONV_AUTO), with min and median images/s. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "nn.h"
#include "../lib/nn_internal.h"   /* nn_wino_set_tile, nn_wino_ws: the per-layer convolution comparison */

/* blis.h defines many static helpers this file does not use. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wtype-limits"
#pragma GCC diagnostic ignored "-Wsign-compare"
#include <blis.h>
#pragma GCC diagnostic pop

/* Process CPU seconds (all threads): on a machine shared with other work, FLOPs per CPU-second show
 * what the code achieves while it runs, wall-clock rates what the user sees. */
static double cpu_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

/* GFLOP/s of C = A B, n x n, best of reps: through BLIS with its own threading (engine 0), or through
 * the engine's nn_sgemm (engine 1). */
static double sgemm_rate(int n, int reps, int threads, int engine, double *cpu_rate)
{
    float *a = malloc(sizeof(float) * n * n), *b = malloc(sizeof(float) * n * n), *c = malloc(sizeof(float) * n * n);
    util_rng r;
    util_rng_seed(&r, 1);
    for (long i = 0; i < (long)n * n; i++) a[i] = (float)util_rng_uniform(&r), b[i] = (float)util_rng_uniform(&r), c[i] = 0;
    rntm_t rntm = BLIS_RNTM_INITIALIZER;
    bli_rntm_set_num_threads(threads, &rntm);
    float one = 1, zero = 0;
    double best = 1e30, best_cpu = 1e30;
    for (int k = 0; k <= reps; k++) {   /* k = 0 warms up packing buffers and threads */
        double t = util_now(), c0 = cpu_now();
        if (engine) nn_sgemm(0, 0, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
        else bli_sgemm_ex(BLIS_NO_TRANSPOSE, BLIS_NO_TRANSPOSE, n, n, n, &one, a, n, 1, b, n, 1, &zero, c, n, 1, NULL, &rntm);
        t = util_now() - t, c0 = cpu_now() - c0;
        if (k > 0 && t < best) best = t;
        if (k > 0 && c0 < best_cpu) best_cpu = c0;
    }
    free(a), free(b), free(c);
    *cpu_rate = 2.0 * n * n * (double)n / best_cpu / 1e9 * threads;
    return 2.0 * n * n * (double)n / best / 1e9;
}

/* Seconds per training step (or forward when !train), best of steps after one warm-up step. */
static double run(const char *arch, int in_ch, int h, int w, int batch, int train, int steps, double *flops_img,
                  size_t *ws_bytes, double *cpu_s)
{
    nn_config c;
    nn_config_default(&c);
    snprintf(c.arch, sizeof c.arch, "%s", arch);
    c.in_ch = in_ch, c.num_classes = 10;
    struct util_err err = {{0}};
    nn_model *m = nn_model_create(&c, &err);
    nn_ws *ws = m ? nn_ws_create(m, batch, h, w, &err) : NULL;
    nn_optim_opts oo;
    nn_optim_opts_default(&oo, NN_OPT_SGD);
    oo.weight_decay = 1e-4;
    nn_optim *opt = m ? nn_optim_create(m, &oo, &err) : NULL;
    if (!ws || !opt) {
        fprintf(stderr, "nn_bench: %s\n", err.msg);
        exit(1);
    }
    nn_model_init(m, 1);
    *flops_img = nn_model_flops(m, h, w);
    *ws_bytes = nn_ws_bytes(ws);
    const size_t nx = (size_t)batch * in_ch * h * w;
    float *x = malloc(sizeof(float) * nx), *dl = malloc(sizeof(float) * batch * 10);
    int32_t *lab = malloc(sizeof(int32_t) * batch);
    util_rng r;
    util_rng_seed(&r, 2);
    for (size_t i = 0; i < nx; i++) x[i] = (float)util_rng_normal(&r);
    for (int i = 0; i < batch; i++) lab[i] = i % 10;
    double best = 1e30;
    *cpu_s = 1e30;
    for (int k = 0; k <= steps; k++) {
        double t = util_now(), c0 = cpu_now();
        if (train) {
            nn_zero_grad(m);
            const float *out = nn_forward(m, ws, x, batch, 1);
            nn_loss_ce(out, batch, 10, lab, NULL, 0, dl, NULL);
            nn_backward(m, ws, dl, NULL);
            nn_optim_step(opt, 0.01);
        } else {
            nn_forward(m, ws, x, batch, 0);
        }
        t = util_now() - t, c0 = cpu_now() - c0;
        if (k > 0 && t < best) best = t;   /* step 0 touches the workspace pages for the first time */
        if (k > 0 && c0 < *cpu_s) *cpu_s = c0;
    }
    free(x), free(dl), free(lab);
    nn_optim_free(opt);
    nn_ws_free(ws);
    nn_model_free(m);
    return best;
}

/* Best seconds of reps calls of forward (what 0), weight gradient only (1), input + weight gradient (2)
 * of the 3x3 stride-1 convolution c -> c at h x w on batch n, for the current algorithm. */
static double conv_time(int c, int n, int h, int w, int what, int reps)
{
    nn_conv l = {.c_in = c, .c_out = c, .k = 3, .stride = 1, .pad = 1};
    const size_t nw = (size_t)c * c * 9, nx = (size_t)c * n * h * w;
    l.w = malloc(sizeof(float) * nw), l.dw = calloc(nw, sizeof(float));
    float *x = malloc(sizeof(float) * nx), *y = malloc(sizeof(float) * nx), *dx = malloc(sizeof(float) * nx);
    util_rng r;
    util_rng_seed(&r, 3);
    for (size_t i = 0; i < nw; i++) l.w[i] = (float)(0.05 * util_rng_normal(&r));
    for (size_t i = 0; i < nx; i++) x[i] = (float)util_rng_normal(&r), y[i] = (float)util_rng_normal(&r);
    /* workspace as nn_ws_create sizes it */
    size_t cap = nn_conv_col_min(&l, h, w, 0), fast = nn_conv_ws_fast(&l, 0);
    cap = cap * ((size_t)(6 << 20) / cap < (size_t)n ? (size_t)(6 << 20) / cap : (size_t)n);
    if (fast > cap) cap = fast;
    const size_t fixed = nn_wino_ws(&l, h, w, 0), all = nn_wino_ws(&l, h, w, n), one = nn_wino_ws(&l, h, w, 1);
    size_t wino = all < fixed + ((size_t)8 << 20) ? all : fixed + ((size_t)8 << 20);
    if (wino < one) wino = one;
    if (wino > cap) cap = wino;
    float *col = malloc(sizeof(float) * cap);
    double best = 1e30;
    for (int k = 0; k <= reps; k++) {
        double t = util_now();
        if (what == 0) nn_conv_forward(&l, y, x, 0, n, h, w, col, cap);
        else nn_conv_backward(&l, what == 2 ? dx : NULL, 0, y, x, 0, n, h, w, col, cap);
        t = util_now() - t;
        if (k > 0 && t < best) best = t;
    }
    free(l.w), free(l.dw), free(x), free(y), free(dx), free(col);
    return best;
}

/* The 3x3 stride-1 convolutions of ResNet-18/50 on 3x128x250 at batch 32 (the same four shapes in
 * both): im2col against Winograd F(2x2) and F(4x4), milliseconds per call. */
static void conv_compare(int reps)
{
    static const int shapes[][3] = {{64, 32, 63}, {128, 16, 32}, {256, 8, 16}, {512, 4, 8}};
    const int keep = nn_conv_algo();
    for (int s = 0; s < 4; s++) {
        const int c = shapes[s][0], h = shapes[s][1], w = shapes[s][2];
        double t[3][3];
        for (int a = 0; a < 3; a++) {
            nn_set_conv_algo(a == 0 ? NN_CONV_IM2COL : NN_CONV_WINOGRAD);
            nn_wino_set_tile(a == 2 ? 4 : 2);
            for (int q = 0; q < 3; q++) t[a][q] = conv_time(c, 32, h, w, q, reps);
        }
        printf("conv3x3 %d->%d 32x%dx%d ms: forward im2col %.1f F2 %.1f F4 %.1f | input grad %.1f %.1f %.1f | "
               "weight grad %.1f %.1f %.1f\n", c, c, h, w, 1e3 * t[0][0], 1e3 * t[1][0], 1e3 * t[2][0],
               1e3 * (t[0][2] - t[0][1]), 1e3 * (t[1][2] - t[1][1]), 1e3 * (t[2][2] - t[2][1]), 1e3 * t[0][1],
               1e3 * t[1][1], 1e3 * t[2][1]);
        fflush(stdout);
    }
    nn_wino_set_tile(0);
    nn_set_conv_algo(keep);
}

static int want(int argc, char **argv, int first, const char *s)
{
    for (int i = first; i < argc; i++)
        if (!strcmp(argv[i], s)) return 1;
    return 0;
}

int main(int argc, char **argv)
{
    int threads = util_ncpu(), steps = 3, opt, prec = NN_FP32, compare = 0, rounds = 3;
    while ((opt = getopt(argc, argv, "j:s:p:cr:")) != -1) {
        if (opt == 'j') threads = atoi(optarg);
        else if (opt == 'c') compare = 1;
        else if (opt == 'r') rounds = atoi(optarg) > 0 ? atoi(optarg) : 1;
        else if (opt == 'p' && (prec = nn_precision_from_name(optarg)) >= 0) continue;
        else if (opt == 's') steps = atoi(optarg);
        else {
            fprintf(stderr, "usage: nn_bench [-j THREADS] [-s STEPS] [-p fp32|bf16] [-c [-r ROUNDS]] [CASE...]\n");
            return 2;
        }
    }
    const char *arch = nn_init();
    nn_set_threads(threads);
    struct util_err perr = {{0}};
    if (nn_set_precision(prec, &perr) < 0) {
        fprintf(stderr, "nn_bench: %s\n", perr.msg);
        return 1;
    }
    int all = optind >= argc;
#define WANT(s) (all || want(argc, argv, optind, s))
    printf("nn_bench: BLIS kernels %s, %d threads, best of %d steps, precision %s\n", arch, threads, steps,
           nn_precision_name(prec));
    double peak = 0, peak_cpu = 0, ecpu;
    if (WANT("sgemm")) {
        peak = sgemm_rate(3072, 3, threads, 0, &peak_cpu);
        printf("sgemm 3072^3, BLIS threading:  %7.1f GFLOP/s wall, %7.1f per CPU-second x %d threads (baseline)\n", peak,
               peak_cpu, threads);
        double e = sgemm_rate(3072, 3, threads, 1, &ecpu);
        printf("sgemm 3072^3, engine nn_sgemm: %7.1f GFLOP/s wall, %7.1f per CPU-second x %d threads\n", e, ecpu, threads);
    }
    if (want(argc, argv, optind, "conv")) conv_compare(steps);
    static const struct { const char *name, *arch; int ch, h, w, batch, train; } cases[] = {
        {"r18train", "resnet18", 1, 128, 256, 32, 1},
        {"r50train", "resnet50", 3, 128, 250, 32, 1},
        {"r18infer", "resnet18", 1, 128, 256, 64, 0},
        {"r18train3", "resnet18", 3, 128, 250, 32, 1},
        {"r50train3", "resnet50", 3, 128, 250, 32, 1},
        {"r18infer3", "resnet18", 3, 128, 250, 64, 0},
        {"r18simclr", "resnet18", 3, 64, 64, 512, 1},
    };
    for (int i = 0; i < (int)(sizeof cases / sizeof cases[0]); i++) {
        if (!(i < 3 ? WANT(cases[i].name) : want(argc, argv, optind, cases[i].name))) continue;
        /* -c: rounds of im2col then Winograd (the AUTO rule), alternating so that both see the same
         * load on a shared machine; then min and median images/s of each */
        double ips_r[2][64];
        const int nr = compare ? (rounds < 64 ? rounds : 64) : 1;
        for (int q = 0; q < nr * (compare ? 2 : 1); q++) {
            if (compare) nn_set_conv_algo(q % 2 == 0 ? NN_CONV_IM2COL : NN_CONV_AUTO);
            double fl, cs;
            size_t bytes;
            double t = run(cases[i].arch, cases[i].ch, cases[i].h, cases[i].w, cases[i].batch, cases[i].train, steps, &fl,
                           &bytes, &cs);
            const double ips = cases[i].batch / t, gf = (cases[i].train ? 3 : 1) * fl * ips / 1e9;
            const double gf_cpu = (cases[i].train ? 3 : 1) * fl * cases[i].batch / cs / 1e9 * threads;
            if (compare) ips_r[q % 2][q / 2] = ips, printf("[%s] ", q % 2 == 0 ? "im2col" : "winograd");
            printf("%s %s %dx%dx%d batch %d: %.2f GFLOP/img fwd, %.3f s/step, %7.1f images/s, %7.1f GFLOP/s", cases[i].arch,
                   cases[i].train ? "train" : "infer", cases[i].ch, cases[i].h, cases[i].w, cases[i].batch, fl / 1e9, t, ips,
                   gf);
            if (peak > 0) printf(" = %.0f%% of sgemm", 100 * gf / peak);
            printf("; per CPU-second x %d: %.1f GFLOP/s", threads, gf_cpu);
            if (peak_cpu > 0) printf(" = %.0f%% of sgemm's", 100 * gf_cpu / peak_cpu);
            printf(" (workspace %zu MiB); %.2f images per CPU-second x %d\n", bytes >> 20,
                   cases[i].batch / cs * threads, threads);
            fflush(stdout);
        }
        if (compare) {
            double mn[2], md[2];
            for (int a = 0; a < 2; a++) {
                double *v = ips_r[a];
                for (int x = 1; x < nr; x++)   /* insertion sort */
                    for (int y = x; y > 0 && v[y] < v[y - 1]; y--) {
                        const double tmp = v[y];
                        v[y] = v[y - 1], v[y - 1] = tmp;
                    }
                mn[a] = v[0], md[a] = nr % 2 ? v[nr / 2] : 0.5 * (v[nr / 2 - 1] + v[nr / 2]);
            }
            printf("%s %s: images/s over %d rounds, im2col min %.1f median %.1f, winograd min %.1f median %.1f; "
                   "winograd / im2col: min %.2f, median %.2f\n", cases[i].name, cases[i].arch, nr, mn[0], md[0], mn[1],
                   md[1], mn[1] / mn[0], md[1] / md[0]);
            fflush(stdout);
        }
    }
    return 0;
}

