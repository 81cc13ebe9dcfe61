/* nn_winograd_test: Winograd F(2x2,3x3) and F(4x4,3x3) (lib/nn_winograd.c) against the im2col path
 * (itself checked against the definition and finite differences in nn_layers_test) on ResNet-18/50
 * 3x3 shapes: forward, input gradient and weight gradient, with the error measured as
 * max |winograd - im2col| / max |im2col| per output tensor; an (N, C, H, W) model input and beta 1
 * (y += conv).  Then entry-by-entry central differences of
 * L = sum r_i y_i through the Winograd path, whole tiny ResNets along random directions
 * (tests/nn_gradcheck.h), and bit-identity between 1 and 2 threads and between runs. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn.h"
#include "nn_gradcheck.h"
#include "test.h"
#include "../lib/nn_internal.h"

static util_rng rng;

static void fill(float *x, int64_t n, double scale)
{
    for (int64_t i = 0; i < n; i++) x[i] = (float)(scale * util_rng_normal(&rng));
}

static float *alloc(int64_t n)
{
    float *p = calloc((size_t)(n ? n : 1), sizeof(float));
    if (!p) abort();
    return p;
}

/* max |a - b| / max |b| */
static double rel_err(const float *a, const float *b, int64_t n)
{
    double e = 0, s = 0;
    for (int64_t i = 0; i < n; i++) {
        e = fmax(e, fabs((double)a[i] - b[i]));
        s = fmax(s, fabs((double)b[i]));
    }
    return s > 0 ? e / s : e;
}

typedef struct {
    nn_conv l;
    int n, h, w;
    float *x, *dy, *y, *dx, *dw, *col;
    size_t cap;
} conv_case;

/* forward, input gradient (written) and weight gradient (from zero) with the current algorithm */
static void run_case(conv_case *c)
{
    nn_conv_forward(&c->l, c->y, c->x, 0, c->n, c->h, c->w, c->col, c->cap);
    memset(c->l.dw, 0, sizeof(float) * c->l.c_out * c->l.c_in * 9);
    nn_conv_backward(&c->l, c->dx, 0, c->dy, c->x, 0, c->n, c->h, c->w, c->col, c->cap);
    memcpy(c->dw, c->l.dw, sizeof(float) * c->l.c_out * c->l.c_in * 9);
}

static void case_init(conv_case *c, int ci, int co, int n, int h, int w, int one_image)
{
    memset(c, 0, sizeof *c);
    c->l = (nn_conv){.c_in = ci, .c_out = co, .k = 3, .stride = 1, .pad = 1};
    c->n = n, c->h = h, c->w = w;
    const int64_t nw = (int64_t)co * ci * 9, nx = (int64_t)ci * n * h * w, ny = (int64_t)co * n * h * w;
    c->l.w = alloc(nw), c->l.dw = alloc(nw);
    fill(c->l.w, nw, sqrt(2.0 / (9.0 * ci)));   /* kaiming: outputs ~ inputs in size */
    c->x = alloc(nx), c->dx = alloc(nx), c->y = alloc(ny), c->dy = alloc(ny), c->dw = alloc(nw);
    fill(c->x, nx, 1.0);
    fill(c->dy, ny, 1.0);
    /* room for Winograd on the whole batch (or one image per chunk), and for the im2col path */
    c->cap = nn_wino_ws(&c->l, h, w, one_image ? 1 : n);
    const size_t im = nn_conv_col_min(&c->l, h, w, 0) + nn_conv_ws_fast(&c->l, 0);
    if (im > c->cap) c->cap = im;
    c->col = alloc((int64_t)c->cap);
}

static void case_free(conv_case *c)
{
    free(c->l.w), free(c->l.dw), free(c->x), free(c->dx), free(c->y), free(c->dy), free(c->dw), free(c->col);
}

/* Winograd (tile m) against im2col on one shape; tolerances per tensor. */
static void compare(int ci, int co, int n, int h, int w, int one_image, double tol2, double tol4)
{
    conv_case c;
    case_init(&c, ci, co, n, h, w, one_image);
    const int64_t nx = (int64_t)ci * n * h * w, ny = (int64_t)co * n * h * w, nw = (int64_t)co * ci * 9;
    nn_set_conv_algo(NN_CONV_IM2COL);
    run_case(&c);
    float *y0 = alloc(ny), *dx0 = alloc(nx), *dw0 = alloc(nw);
    memcpy(y0, c.y, sizeof(float) * ny), memcpy(dx0, c.dx, sizeof(float) * nx), memcpy(dw0, c.dw, sizeof(float) * nw);
    nn_set_conv_algo(NN_CONV_WINOGRAD);
    for (int m = 2; m <= 4; m += 2) {
        nn_wino_set_tile(m);
        const double tol = m == 2 ? tol2 : tol4;
        /* the Winograd path must actually run: called directly on the same workspace */
        const int used = nn_wino_forward(&c.l, c.y, 0.0f, c.x, (int64_t)n * h * w, (int64_t)h * w, n, h, w, c.col, c.cap);
        run_case(&c);
        const double ey = rel_err(c.y, y0, ny), ex = rel_err(c.dx, dx0, nx), ew = rel_err(c.dw, dw0, nw);
        test_check(used && ey < tol && ex < tol && ew < tol,
                   "F(%dx%d,3x3) %d->%d n%d %dx%d%s vs im2col: forward %.2g, input grad %.2g, weight grad %.2g "
                   "(max abs err / max abs value, tol %.0e)", m, m, ci, co, n, h, w, one_image ? " (one image per chunk)" : "",
                   ey, ex, ew, tol);
    }
    nn_wino_set_tile(0);
    nn_set_conv_algo(NN_CONV_AUTO);
    free(y0), free(dx0), free(dw0);
    case_free(&c);
}

/* The model input (N, C, H, W) (a small-stem ResNet's first convolution): forward and weight gradient
 * through Winograd, the input gradient through col2im either way. */
static void compare_nchw(int ci, int co, int n, int h, int w)
{
    conv_case c;
    case_init(&c, ci, co, n, h, w, 0);
    const int64_t nx = (int64_t)ci * n * h * w, ny = (int64_t)co * n * h * w, nw = (int64_t)co * ci * 9;
    float *y0 = alloc(ny), *dx0 = alloc(nx), *dw0 = alloc(nw);
    for (int a = 0; a < 3; a++) {
        nn_set_conv_algo(a ? NN_CONV_WINOGRAD : NN_CONV_IM2COL);
        nn_wino_set_tile(a == 2 ? 4 : 2);
        nn_conv_forward(&c.l, c.y, c.x, 1, n, h, w, c.col, c.cap);
        memset(c.l.dw, 0, sizeof(float) * nw);
        nn_conv_backward(&c.l, c.dx, 0, c.dy, c.x, 1, n, h, w, c.col, c.cap);
        if (!a) {
            memcpy(y0, c.y, sizeof(float) * ny), memcpy(dx0, c.dx, sizeof(float) * nx), memcpy(dw0, c.l.dw, sizeof(float) * nw);
            continue;
        }
        const int used = nn_wino_forward(&c.l, c.y, 1.0f, c.x, (int64_t)h * w, (int64_t)ci * h * w, n, h, w, c.col, c.cap);
        nn_conv_forward(&c.l, c.y, c.x, 1, n, h, w, c.col, c.cap);   /* undo the beta-1 call's sum */
        const double ey = rel_err(c.y, y0, ny), ex = rel_err(c.dx, dx0, nx), ew = rel_err(c.l.dw, dw0, nw);
        const double tol = a == 1 ? 1e-5 : 1e-4;
        test_check(used && ey < tol && ex < tol && ew < tol,
                   "F(%dx%d,3x3) %d->%d n%d %dx%d NCHW input vs im2col: forward %.2g, input grad %.2g, weight grad %.2g "
                   "(tol %.0e)", 2 * a, 2 * a, ci, co, n, h, w, ey, ex, ew, tol);
    }
    nn_wino_set_tile(0);
    nn_set_conv_algo(NN_CONV_AUTO);
    free(y0), free(dx0), free(dw0);
    case_free(&c);
}

/* beta 1: y += conv(x) */
static void check_beta(void)
{
    conv_case c;
    case_init(&c, 32, 40, 2, 9, 10, 0);
    const int64_t ny = 40 * 2 * 9 * 10;
    float *y0 = alloc(ny), *base = alloc(ny);
    fill(base, ny, 1.0);
    nn_set_conv_algo(NN_CONV_IM2COL);
    nn_conv_forward(&c.l, y0, c.x, 0, 2, 9, 10, c.col, c.cap);
    for (int64_t i = 0; i < ny; i++) y0[i] += base[i];
    nn_set_conv_algo(NN_CONV_WINOGRAD);
    for (int m = 2; m <= 4; m += 2) {
        nn_wino_set_tile(m);
        memcpy(c.y, base, sizeof(float) * ny);
        const int used = nn_wino_forward(&c.l, c.y, 1.0f, c.x, (int64_t)2 * 9 * 10, 9 * 10, 2, 9, 10, c.col, c.cap);
        const double e = rel_err(c.y, y0, ny);
        test_check(used && e < (m == 2 ? 1e-5 : 1e-4), "F(%dx%d,3x3) beta 1 adds onto y: %.2g", m, m, e);
    }
    nn_wino_set_tile(0);
    nn_set_conv_algo(NN_CONV_AUTO);
    free(y0), free(base);
    case_free(&c);
}

/* ---------------------------------------------------------------- finite differences ---- */

typedef struct {
    conv_case *c;
    const float *r;
    int64_t ny;
} obj;

static double obj_value(const obj *o, double *s)
{
    conv_case *c = o->c;
    nn_conv_forward(&c->l, c->y, c->x, 0, c->n, c->h, c->w, c->col, c->cap);
    double l = 0, a = 0;
    for (int64_t i = 0; i < o->ny; i++) l += (double)o->r[i] * c->y[i], a += fabs((double)o->r[i] * c->y[i]);
    *s = a;
    return l;
}

/* as nn_layers_test's fdcheck: |fd - g| <= 8 ulp * S / h + rtol |g| + 1e-7 S, S = sum |r_i y_i|;
 * F(4x4) rounds each output to a few more ulps (its transforms have coefficients up to 8), so 32 ulp */
static void fdcheck(const char *what, const obj *o, float *p, const float *g, int64_t n, double h, double rtol,
                    double ulps)
{
    double worst = 0;
    int64_t bad = 0;
    for (int64_t i = 0; i < n; i++) {
        const float keep = p[i], up = keep + (float)h, dn = keep - (float)h;
        double s1, s2;
        p[i] = up;
        const double lp = obj_value(o, &s1);
        p[i] = dn;
        const double lm = obj_value(o, &s2);
        p[i] = keep;
        const double step = (double)up - (double)dn, fd = (lp - lm) / step;
        const double tol = ulps * 5.96e-8 * fmax(s1, s2) / (step / 2) + rtol * fabs(g[i]) + 1e-7 * fmax(s1, s2);
        const double e = fabs(fd - g[i]) / tol;
        bad += e > 1;
        if (e > worst) worst = e;
    }
    test_check(bad == 0, "%s: %lld entries vs central differences, %lld over tolerance, worst at %.3f of tolerance",
               what, (long long)n, (long long)bad, worst);
}

static void fd_conv(int m)
{
    nn_set_conv_algo(NN_CONV_WINOGRAD);
    nn_wino_set_tile(m);
    conv_case c;
    case_init(&c, 3, 4, 2, 7, 9, 0);   /* partial tiles on both sides for both tile sizes */
    const int64_t nx = 3 * 2 * 7 * 9, ny = 4 * 2 * 7 * 9, nw = 4 * 3 * 9;
    float *r = alloc(ny);
    fill(r, ny, 1.0);
    memcpy(c.dy, r, sizeof(float) * ny);
    run_case(&c);
    obj o = {&c, r, ny};
    char what[96];
    snprintf(what, sizeof what, "F(%dx%d,3x3) 3->4 n2 7x9: dw", m, m);
    fdcheck(what, &o, c.l.w, c.dw, nw, 0.25, 1e-4, m == 2 ? 8 : 32);
    snprintf(what, sizeof what, "F(%dx%d,3x3) 3->4 n2 7x9: dx", m, m);
    fdcheck(what, &o, c.x, c.dx, nx, 0.25, 1e-4, m == 2 ? 8 : 32);
    free(r);
    case_free(&c);
    nn_wino_set_tile(0);
    nn_set_conv_algo(NN_CONV_AUTO);
}

/* A tiny network's gradients through Winograd convolutions (every 3x3 stride-1 one). */
static void gradcheck(const char *arch, int m_tile, int width)
{
    nn_set_conv_algo(NN_CONV_WINOGRAD);
    nn_wino_set_tile(m_tile);
    nn_config cfg;
    nn_config_default(&cfg);
    snprintf(cfg.arch, sizeof cfg.arch, "%s", arch);
    cfg.width = width, cfg.in_ch = 2, cfg.num_classes = 3, cfg.stem = NN_STEM_SMALL;
    char what[96];
    snprintf(what, sizeof what, "gradcheck tiny %s width %d through F(%dx%d,3x3)", arch, width, m_tile, m_tile);
    gc_check_ce(what, &cfg, 16, 16);
    nn_wino_set_tile(0);
    nn_set_conv_algo(NN_CONV_AUTO);
}

/* ---------------------------------------------------------------- determinism ---- */

static void threads_identical(int m, int one_image)
{
    nn_set_conv_algo(NN_CONV_WINOGRAD);
    nn_wino_set_tile(m);
    conv_case c;
    case_init(&c, 64, 48, 3, 19, 21, one_image);
    const int64_t nx = 64 * 3 * 19 * 21, ny = 48 * 3 * 19 * 21, nw = 48 * 64 * 9;
    float *y[3], *dx[3], *dw[3];
    for (int t = 0; t < 3; t++) {
        nn_set_threads(t == 1 ? 2 : 1);
        run_case(&c);
        y[t] = alloc(ny), dx[t] = alloc(nx), dw[t] = alloc(nw);
        memcpy(y[t], c.y, sizeof(float) * ny), memcpy(dx[t], c.dx, sizeof(float) * nx), memcpy(dw[t], c.dw, sizeof(float) * nw);
    }
    nn_set_threads(1);
    const int same = !memcmp(y[0], y[1], sizeof(float) * ny) && !memcmp(dx[0], dx[1], sizeof(float) * nx) &&
                     !memcmp(dw[0], dw[1], sizeof(float) * nw);
    const int again = !memcmp(y[0], y[2], sizeof(float) * ny) && !memcmp(dx[0], dx[2], sizeof(float) * nx) &&
                      !memcmp(dw[0], dw[2], sizeof(float) * nw);
    test_check(same && again, "F(%dx%d,3x3) 64->48 n3 19x21%s: forward, input and weight gradient bit-identical with "
               "1 and 2 threads (%s) and run again (%s)", m, m, one_image ? " (one image per chunk)" : "",
               same ? "yes" : "no", again ? "yes" : "no");
    for (int t = 0; t < 3; t++) free(y[t]), free(dx[t]), free(dw[t]);
    case_free(&c);
    nn_wino_set_tile(0);
    nn_set_conv_algo(NN_CONV_AUTO);
}

/* A ResNet-18 training step with 1 and 2 threads under Winograd: identical gradients. */
static void resnet_threads(void)
{
    nn_set_conv_algo(NN_CONV_WINOGRAD);
    nn_config cfg;
    nn_config_default(&cfg);
    cfg.width = 16, cfg.in_ch = 3, cfg.num_classes = 5;
    const int n = 3, h = 64, w = 72;
    struct util_err err = {{0}};
    nn_model *m = nn_model_create(&cfg, &err);
    nn_ws *ws = m ? nn_ws_create(m, n, h, w, &err) : NULL;
    if (!ws) {
        test_check(0, "resnet threads: %s", err.msg);
        nn_model_free(m);
        return;
    }
    nn_model_init(m, 3);
    const int nx = n * 3 * h * w;
    float *x = alloc(nx), *g[2], dl[15];
    fill(x, nx, 1.0);
    int32_t lab[3] = {0, 4, 2};
    for (int t = 0; t < 2; t++) {
        nn_set_threads(t + 1);
        nn_zero_grad(m);
        const float *out = nn_forward(m, ws, x, n, 1);
        nn_loss_ce(out, n, 5, lab, NULL, 0, dl, NULL);
        nn_backward(m, ws, dl, NULL);
        g[t] = alloc(m->n_params);
        memcpy(g[t], m->grads, sizeof(float) * m->n_params);
    }
    nn_set_threads(1);
    test_check(!memcmp(g[0], g[1], sizeof(float) * m->n_params),
               "resnet18 width 16 train step under Winograd: gradients bit-identical with 1 and 2 threads");
    free(g[0]), free(g[1]), free(x);
    nn_ws_free(ws);
    nn_model_free(m);
    nn_set_conv_algo(NN_CONV_AUTO);
}

int main(void)
{
    nn_set_threads(1);
    util_rng_seed(&rng, 20261204);
    if (!nn_ukernel_info()) test_skip("micro-kernel unavailable: the im2col reference is the BLIS GEMM path");
    /* ResNet-18/50 3x3 shapes (channels, spatial size of each stage), odd sizes with partial tiles, c_in !=
     * c_out.  Tolerances: F(2x2) 1e-5, F(4x4) 1e-4.  Measured (max abs err / max abs value, seed below):
     * F(2x2) up to 9.1e-7 on every shape and tensor (im2col's own rounding level); F(4x4) up to 1.3e-5,
     * largest at 512 channels (4x4, 4x8): the error grows with the summed channels, and F(4x4)'s
     * transforms (coefficients up to 8 and down to 1/24) amplify rounding ~10x. */
    static const struct { int ci, co, n, h, w, one; } shapes[] = {
        {64, 64, 2, 32, 32, 0},  {128, 128, 2, 16, 16, 0}, {256, 256, 2, 8, 8, 0}, {512, 512, 2, 4, 4, 0},
        {64, 64, 2, 7, 13, 0},   {32, 48, 3, 9, 11, 0},    {48, 32, 2, 5, 6, 0},   {3, 5, 2, 1, 1, 0},
        {64, 64, 4, 32, 63, 1},  {128, 128, 3, 16, 32, 1}, {512, 512, 3, 4, 8, 1}, {16, 24, 5, 130, 7, 0},
        /* the tiny networks of simclr_test (width 4 at 16x16: stages at 4x4 .. 1x1, batch 48) */
        {4, 4, 48, 4, 4, 0},     {8, 8, 48, 2, 2, 0},      {16, 16, 48, 1, 1, 0},  {32, 32, 48, 1, 1, 0},
    };
    for (int i = 0; i < (int)(sizeof shapes / sizeof shapes[0]); i++)
        compare(shapes[i].ci, shapes[i].co, shapes[i].n, shapes[i].h, shapes[i].w, shapes[i].one, 1e-5, 1e-4);
    compare_nchw(3, 16, 2, 11, 13);
    compare_nchw(64, 64, 2, 16, 18);
    check_beta();
    fd_conv(2);
    fd_conv(4);
    /* nn_resnet_test's configuration (small stem, 16x16, batch 4); ResNet-18 at width 8, where fewer
     * tensors sit at the "sharp" criterion's edge (width 4: 31 of 62 sharp with F(4x4), 32 needed; no
     * tensor over tolerance).  ResNet-50 at width 8 has one tensor (layer3.5.conv2) over tolerance with
     * im2col as well: a kink, its analytic gradient agreeing across im2col, F(2x2) and F(4x4). */
    gradcheck("resnet18", 2, 8);
    gradcheck("resnet18", 4, 8);
    gradcheck("resnet50", 2, 4);
    gradcheck("resnet50", 4, 4);
    threads_identical(2, 0);
    threads_identical(4, 0);
    threads_identical(4, 1);
    resnet_threads();
    return test_exit();
}
