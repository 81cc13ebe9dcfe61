/* nn_layers_test: every layer of the engine on small fixed inputs.  Forward passes against a direct
 * double-precision evaluation of the definition; backward passes against central finite differences
 * of L = sum_i r_i y_i (fixed random r), with L accumulated in double.  Losses against their formulas
 * and finite differences; NT-Xent against PyTorch (../shared/reference/ntxent) when present.
 *
 * Finite-difference tolerance for an entry with analytic gradient g:
 *   |fd - g| <= 8 * 2^-24 * S / h + rtol * |g| + 1e-7 * S
 * S = sum_i |r_i y_i| bounds the float32 rounding of L (each y_i carries <= a few ulps; 8 ulps is the
 * margin), divided by the step h; rtol covers the O(h^2) truncation: 1e-4 for layers linear in the
 * perturbed value (there the difference is exact up to rounding), 2e-3 for BN, ReLU and pooling. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn.h"
#include "test.h"
#include "../lib/nn_internal.h"   /* nn_ukernel_enable: both convolution paths are tested */

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

/* ---------------------------------------------------------------- the finite-difference driver ---- */

/* The layer under test: run() recomputes y from the current inputs and parameters. */
typedef struct {
    void (*run)(void *ctx);
    void *ctx;
    const float *y;   /* output after run() */
    const float *r;   /* weights of the objective */
    int64_t ny;
} objective;

static double obj_value(const objective *o, double *s)
{
    o->run(o->ctx);
    double l = 0, a = 0;
    for (int64_t i = 0; i < o->ny; i++) l += (double)o->r[i] * o->y[i], a += fabs((double)o->r[i] * o->y[i]);
    if (s) *s = a;
    return l;
}

/* Check analytic gradient g of every entry of p (n) against central differences; one line. */
static void fdcheck(const char *what, const objective *o, float *p, const float *g, int64_t n, double h, double rtol)
{
    double worst = 0, worst_fd = 0, worst_g = 0;
    int64_t worst_i = -1, bad = 0;
    for (int64_t i = 0; i < n; i++) {
        const float keep = p[i];
        const float up = keep + (float)h, dn = keep - (float)h;
        double s1, s2;
        p[i] = up;
        const double lp = obj_value(o, &s1);
        p[i] = dn;
        const double lm = obj_value(o, &s2);
        p[i] = keep;
        const double step = (double)up - (double)dn;   /* the step float32 actually took */
        const double fd = (lp - lm) / step;
        const double tol = 8 * 5.96e-8 * fmax(s1, s2) / (step / 2) + rtol * fabs(g[i]) + 1e-7 * fmax(s1, s2);
        const double e = fabs(fd - g[i]) / tol;
        if (e > 1) bad++;
        if (e > worst) worst = e, worst_i = i, worst_fd = fd, worst_g = g[i];
    }
    o->run(o->ctx);   /* leave the outputs as they were */
    test_check(bad == 0, "%s: %lld entries vs central differences, %lld over tolerance, worst at %.3f of tolerance "
               "(entry %lld: analytic %.7g, difference %.7g)", what, (long long)n, (long long)bad, worst,
               (long long)worst_i, worst_g, worst_fd);
}

/* ---------------------------------------------------------------- convolution ---- */

typedef struct {
    nn_conv l;
    int n, h, w, nchw;
    float *x, *y, *col;
    size_t cap;
} conv_ctx;

static void conv_run(void *c)
{
    conv_ctx *k = c;
    nn_conv_forward(&k->l, k->y, k->x, k->nchw, k->n, k->h, k->w, k->col, k->cap);
}

/* x element (c, n, i, j) in either layout */
static double xat(const conv_ctx *k, int c, int n, int i, int j)
{
    const int64_t hw = (int64_t)k->h * k->w;
    return k->nchw ? k->x[((int64_t)n * k->l.c_in + c) * hw + (int64_t)i * k->w + j]
                   : k->x[((int64_t)c * k->n + n) * hw + (int64_t)i * k->w + j];
}

static void test_conv(int k, int stride, int pad, int bias, int nchw, int big_col, int ukernel)
{
    nn_ukernel_enable(ukernel);
    conv_ctx c = {.n = 3, .h = 9, .w = 11, .nchw = nchw};
    const int ci = 3, co = 4;
    c.l = (nn_conv){.c_in = ci, .c_out = co, .k = k, .stride = stride, .pad = pad};
    const int64_t nw = (int64_t)co * ci * k * k;
    float *wb = alloc(2 * (nw + co));
    c.l.w = wb, c.l.dw = wb + nw;
    if (bias) c.l.b = wb + 2 * nw, c.l.db = wb + 2 * nw + co;
    fill(c.l.w, nw, 0.5);
    if (bias) fill(c.l.b, co, 0.5);
    const int ho = nn_out_size(c.h, k, stride, pad), wo = nn_out_size(c.w, k, stride, pad);
    const int64_t nx = (int64_t)c.n * ci * c.h * c.w, ny = (int64_t)co * c.n * ho * wo;
    c.x = alloc(nx), c.y = alloc(ny);
    fill(c.x, nx, 1.0);
    size_t per = nn_conv_col_min(&c.l, c.h, c.w, nchw);
    c.cap = big_col ? per * c.n : per;   /* one image per GEMM, or the whole batch */
    c.col = alloc((int64_t)(c.cap ? c.cap : 1));
    char what[160];
    snprintf(what, sizeof what, "conv k%d s%d p%d%s %s, %s", k, stride, pad, bias ? " bias" : "",
             nchw ? "NCHW input" : "CNHW input",
             ukernel ? "micro-kernel" : big_col ? "batched im2col" : "per-image im2col");
    /* forward against the definition, in double */
    conv_run(&c);
    float *ref = alloc(ny);
    for (int o = 0; o < co; o++)
        for (int n = 0; n < c.n; n++)
            for (int i = 0; i < ho; i++)
                for (int j = 0; j < wo; j++) {
                    double s = bias ? c.l.b[o] : 0;
                    for (int q = 0; q < ci; q++)
                        for (int a = 0; a < k; a++)
                            for (int b = 0; b < k; b++) {
                                const int ii = i * stride - pad + a, jj = j * stride - pad + b;
                                if (ii >= 0 && ii < c.h && jj >= 0 && jj < c.w)
                                    s += (double)c.l.w[((o * ci + q) * k + a) * k + b] * xat(&c, q, n, ii, jj);
                            }
                    ref[(((int64_t)o * c.n + n) * ho + i) * wo + j] = (float)s;
                }
    char fw[200];
    snprintf(fw, sizeof fw, "%s: forward vs direct sum", what);
    /* float32 GEMM over <= 3*7*7 terms of size ~1: absolute error ~1e-6 */
    test_close(fw, c.y, ref, ny, 1e-5, 1.0);
    /* backward */
    float *r = alloc(ny), *dx = alloc(nx);
    fill(r, ny, 1.0);
    for (int i = 0; i < nx; i++) dx[i] = 0.25f;   /* dx_add = 1 must add onto this */
    nn_conv_backward(&c.l, dx, 1, r, c.x, nchw, c.n, c.h, c.w, c.col, c.cap);
    for (int i = 0; i < nx; i++) dx[i] -= 0.25f;
    objective ob = {conv_run, &c, c.y, r, ny};
    snprintf(fw, sizeof fw, "%s: dw", what);
    fdcheck(fw, &ob, c.l.w, c.l.dw, nw, 0.5, 1e-4);
    if (bias) {
        snprintf(fw, sizeof fw, "%s: db", what);
        fdcheck(fw, &ob, c.l.b, c.l.db, co, 0.5, 1e-4);
    }
    snprintf(fw, sizeof fw, "%s: dx (added)", what);
    fdcheck(fw, &ob, c.x, dx, nx, 0.5, 1e-4);
    /* dx_add = 0 overwrites whatever was there */
    float *dx2 = alloc(nx);
    for (int i = 0; i < nx; i++) dx2[i] = 1e30f;
    memset(c.l.dw, 0, sizeof(float) * nw);
    nn_conv_backward(&c.l, dx2, 0, r, c.x, nchw, c.n, c.h, c.w, c.col, c.cap);
    snprintf(fw, sizeof fw, "%s: dx written", what);
    test_close(fw, dx2, dx, nx, 1e-5, 1.0);
    free(dx2), free(r), free(dx), free(ref), free(c.x), free(c.y), free(c.col), free(wb);
    nn_ukernel_enable(1);
}

/* ---------------------------------------------------------------- batch norm ---- */

typedef struct {
    nn_bn l;
    int one_d, train, relu;
    int n, c;
    int64_t m;
    float *x, *res, *y, *sm, *si;
    float mean0[8], var0[8];
    int64_t tracked;
} bn_ctx;

static void bn_run(void *p)
{
    bn_ctx *b = p;
    /* restore the running statistics so every evaluation sees the same state */
    memcpy(b->l.mean, b->mean0, sizeof(float) * b->c);
    memcpy(b->l.var, b->var0, sizeof(float) * b->c);
    if (b->one_d) nn_bn1d_forward(&b->l, b->y, b->x, b->relu, b->n, b->train, b->sm, b->si);
    else nn_bn_forward(&b->l, b->y, b->x, b->res, b->relu, b->m, b->train, b->sm, b->si);
}

static const char *bn_mode = "";   /* "sync " while a synchronised-BN all-sum is installed */

static void test_bn(int one_d, int train, int relu, int res)
{
    bn_ctx b = {.one_d = one_d, .train = train, .relu = relu, .c = 3, .n = one_d ? 6 : 2};
    b.m = one_d ? b.n : (int64_t)b.n * 5 * 4;
    const int64_t nx = (int64_t)b.c * b.m;
    float *pb = alloc(4 * b.c + 2 * b.c + 2 * b.c);
    b.l = (nn_bn){.c = b.c, .w = pb, .b = pb + b.c, .dw = pb + 2 * b.c, .db = pb + 3 * b.c, .mean = pb + 4 * b.c,
                  .var = pb + 5 * b.c, .n_tracked = &b.tracked, .momentum = 0.1f, .eps = 1e-5f};
    b.sm = pb + 6 * b.c, b.si = pb + 7 * b.c;
    for (int i = 0; i < b.c; i++) {
        b.l.w[i] = (float)(1 + 0.5 * util_rng_normal(&rng));
        b.l.b[i] = (float)(0.3 * util_rng_normal(&rng));
        b.mean0[i] = (float)(0.2 * util_rng_normal(&rng));
        b.var0[i] = (float)(0.5 + util_rng_uniform(&rng));
    }
    b.x = alloc(nx), b.y = alloc(nx);
    fill(b.x, nx, 2.0);
    for (int64_t i = 0; i < nx; i++) b.x[i] += 1.0f;   /* a non-zero mean */
    if (res) b.res = alloc(nx), fill(b.res, nx, 1.0);
    char what[160];
    snprintf(what, sizeof what, "%sbn%s %s%s%s", bn_mode, one_d ? "1d" : "2d", train ? "train" : "eval",
             relu ? " +relu" : "", res ? " +residual" : "");
    if (res && relu) {
        /* move the residual so that no pre-activation lies within 0.1 of the ReLU kink: the steps of
         * the differences (1e-2 through gamma * invstd <= ~2) then never cross it */
        for (int c = 0; c < b.c; c++) {
            double mu = 0, var = 0;
            for (int64_t i = 0; i < b.m; i++) mu += b.x[c * b.m + i];
            mu /= b.m;
            for (int64_t i = 0; i < b.m; i++) var += (b.x[c * b.m + i] - mu) * (b.x[c * b.m + i] - mu);
            var /= b.m;
            const double um = train ? mu : b.mean0[c], uv = train ? var : b.var0[c];
            for (int64_t i = 0; i < b.m; i++) {
                const int64_t j = c * b.m + i;
                const double v = (b.x[j] - um) / sqrt(uv + 1e-5) * b.l.w[c] + b.l.b[c] + b.res[j];
                if (fabs(v) < 0.1) b.res[j] += v >= 0 ? 0.2f : -0.2f;
            }
        }
    }
    b.tracked = 0;
    bn_run(&b);
    /* forward and running statistics against the definition */
    float *ref = alloc(nx);
    double err_stats = 0;
    for (int c = 0; c < b.c; c++) {
        double mu = 0, var = 0;
        for (int64_t i = 0; i < b.m; i++) mu += b.x[one_d ? i * b.c + c : c * b.m + i];
        mu /= b.m;
        for (int64_t i = 0; i < b.m; i++) {
            double d = b.x[one_d ? i * b.c + c : c * b.m + i] - mu;
            var += d * d;
        }
        var /= b.m;
        double um = train ? mu : b.mean0[c], uv = train ? var : b.var0[c];
        for (int64_t i = 0; i < b.m; i++) {
            int64_t j = one_d ? i * b.c + c : c * b.m + i;
            double v = (b.x[j] - um) / sqrt(uv + 1e-5) * b.l.w[c] + b.l.b[c] + (res ? b.res[j] : 0);
            ref[j] = (float)(relu && v < 0 ? 0 : v);
        }
        if (train) {
            double em = 0.9 * b.mean0[c] + 0.1 * mu, ev = 0.9 * b.var0[c] + 0.1 * var * b.m / (b.m - 1);
            /* a mean near 0 is judged on an absolute scale of 0.1 (float keeps ~1e-8 of it) */
            err_stats = fmax(err_stats, fmax(fabs(b.l.mean[c] - em) / fmax(fabs(em), 0.1), fabs(b.l.var[c] - ev) / ev));
        } else {
            err_stats = fmax(err_stats, fmax(fabs(b.l.mean[c] - b.mean0[c]), fabs(b.l.var[c] - b.var0[c])));
        }
    }
    char fw[200];
    snprintf(fw, sizeof fw, "%s: forward vs definition", what);
    test_close(fw, b.y, ref, nx, 1e-5, 1.0);
    test_check(err_stats < 1e-6 && b.tracked == (train ? 1 : 0),
               "%s: running stats %s (momentum 0.1, unbiased variance; rel err %.2g), num_batches_tracked %lld", what,
               train ? "updated" : "untouched", err_stats, (long long)b.tracked);
    /* backward */
    float *r = alloc(nx), *dy = alloc(nx), *dx = alloc(nx);
    fill(r, nx, 1.0);
    memcpy(dy, r, sizeof(float) * nx);
    bn_run(&b);
    if (one_d) nn_bn1d_backward(&b.l, dx, dy, b.y, relu, b.x, b.n, train, b.sm, b.si);
    else nn_bn_backward(&b.l, dx, dy, b.y, relu, b.x, b.m, train, b.sm, b.si);
    objective ob = {bn_run, &b, b.y, r, nx};
    snprintf(fw, sizeof fw, "%s: dx", what);
    fdcheck(fw, &ob, b.x, dx, nx, 1e-2, 2e-3);
    snprintf(fw, sizeof fw, "%s: dgamma", what);
    fdcheck(fw, &ob, b.l.w, b.l.dw, b.c, 1e-2, 2e-3);
    snprintf(fw, sizeof fw, "%s: dbeta", what);
    fdcheck(fw, &ob, b.l.b, b.l.db, b.c, 1e-2, 2e-3);
    if (res) {
        /* the residual's gradient is dy after the ReLU mask, left in dy */
        snprintf(fw, sizeof fw, "%s: dres (masked dy)", what);
        fdcheck(fw, &ob, b.res, dy, nx, 1e-2, 2e-3);
    }
    free(r), free(dy), free(dx), free(ref), free(b.x), free(b.y), free(b.res), free(pb);
}

/* Synchronised batch norm.  A world of one (the all-sum leaves the sums alone) must be the plain layer
 * (test_bn runs again through that path, with its finite differences); a world of two processes
 * holding the same batch (the all-sum doubles every sum, the element count included) must give the
 * same outputs and input gradients as one process, its own share of dgamma/dbeta, and running
 * variances unbiased over the 2m values of the union. */
static void allsum_one(double *v, int64_t n) {}
static void allsum_twin(double *v, int64_t n)
{
    for (int64_t i = 0; i < n; i++) v[i] *= 2;
}

static void test_bn_twin(int one_d)
{
    const int c = 4, n = one_d ? 5 : 2;
    const int64_t m = one_d ? n : (int64_t)n * 3 * 5, nx = c * m;
    float *p = alloc(16 * c), *x = alloc(nx), *res = alloc(nx), *y[2], *dy[2], *dx[2];
    int64_t tracked[2] = {0, 0};
    fill(x, nx, 2.0), fill(res, nx, 1.0);
    for (int i = 0; i < c; i++) p[i] = (float)(1 + 0.3 * util_rng_normal(&rng)), p[c + i] = (float)(0.2 * util_rng_normal(&rng));
    nn_bn l[2];
    for (int k = 0; k < 2; k++) {
        float *q = p + 2 * c + 7 * c * k;   /* dw, db, mean, var, save_mean, save_invstd of world k */
        l[k] = (nn_bn){.c = c, .w = p, .b = p + c, .dw = q, .db = q + c, .mean = q + 2 * c, .var = q + 3 * c,
                       .n_tracked = &tracked[k], .momentum = 0.1f, .eps = 1e-5f};
        for (int i = 0; i < c; i++) l[k].var[i] = 1.0f;
        y[k] = alloc(nx), dy[k] = alloc(nx), dx[k] = alloc(nx);
        fill(dy[k], nx, 1.0);
        if (k) memcpy(dy[1], dy[0], sizeof(float) * nx);
        nn_set_bn_allsum(k ? allsum_twin : NULL);
        if (one_d) {
            nn_bn1d_forward(&l[k], y[k], x, 1, n, 1, q + 4 * c, q + 5 * c);
            nn_bn1d_backward(&l[k], dx[k], dy[k], y[k], 1, x, n, 1, q + 4 * c, q + 5 * c);
        } else {
            nn_bn_forward(&l[k], y[k], x, res, 1, m, 1, q + 4 * c, q + 5 * c);
            nn_bn_backward(&l[k], dx[k], dy[k], y[k], 1, x, m, 1, q + 4 * c, q + 5 * c);
        }
    }
    nn_set_bn_allsum(NULL);
    char what[120];
    snprintf(what, sizeof what, "sync bn%s, two equal batches: output as one process", one_d ? "1d" : "2d");
    test_close(what, y[1], y[0], nx, 1e-6, 1e-5);
    snprintf(what, sizeof what, "sync bn%s, two equal batches: dx as one process", one_d ? "1d" : "2d");
    test_close(what, dx[1], dx[0], nx, 1e-6, 1e-5);
    snprintf(what, sizeof what, "sync bn%s, two equal batches: dgamma, dbeta this process's share", one_d ? "1d" : "2d");
    test_close(what, l[1].dw, l[0].dw, 2 * c, 1e-6, 1e-5);
    double err = 0;
    for (int i = 0; i < c; i++) {
        /* the union's unbiased variance: biased var * 2m / (2m - 1) instead of * m / (m - 1) */
        const double biased = (l[0].var[i] - 0.9) / 0.1 * (m - 1) / m;
        const double want = 0.9 + 0.1 * biased * (2.0 * m) / (2.0 * m - 1);
        err = fmax(err, fmax(fabs(l[1].var[i] - want) / want, fabs(l[1].mean[i] - l[0].mean[i])));
    }
    test_check(err < 1e-5 && tracked[1] == 1, "sync bn%s, two equal batches: running variance unbiased over 2m = %lld "
               "values (rel err %.2g)", one_d ? "1d" : "2d", (long long)(2 * m), err);
    for (int k = 0; k < 2; k++) free(y[k]), free(dy[k]), free(dx[k]);
    free(p), free(x), free(res);
}

/* Max pooling against the definition read literally, indices included: the first maximum in row-major
 * window order wins a tie, the first NaN wins outright (torch's rules).  Values drawn from a few
 * levels make ties common; some NaNs; sizes odd and even, so that the vectorised interior of the
 * 3x3/2 pool and its borders are both exercised. */
static void test_maxpool_rules(void)
{
    static const int shapes[][2] = {{9, 13}, {8, 16}, {5, 6}, {33, 70}, {3, 3}, {2, 2}, {1, 7}};
    static const int cfg[][3] = {{3, 2, 1}, {3, 1, 1}, {2, 2, 0}};
    int bad = 0, cases = 0;
    for (int si = 0; si < 7; si++)
        for (int ci = 0; ci < 3; ci++) {
            const int h = shapes[si][0], w = shapes[si][1], k = cfg[ci][0], st = cfg[ci][1], pd = cfg[ci][2];
            if (h + 2 * pd < k || w + 2 * pd < k) continue;
            const int ho = nn_out_size(h, k, st, pd), wo = nn_out_size(w, k, st, pd), planes = 3;
            float *x = alloc((int64_t)planes * h * w), *y = alloc((int64_t)planes * ho * wo);
            int32_t *ix = malloc(sizeof(int32_t) * planes * ho * wo);
            for (int64_t i = 0; i < (int64_t)planes * h * w; i++) {
                x[i] = (float)(int)(4 * util_rng_uniform(&rng)) - 1.5f;
                if (util_rng_uniform(&rng) < 0.03) x[i] = NAN;
            }
            nn_maxpool_forward(y, ix, x, planes, h, w, k, st, pd);
            for (int pl = 0; pl < planes; pl++)
                for (int i = 0; i < ho; i++)
                    for (int j = 0; j < wo; j++) {
                        const float *xp = x + (int64_t)pl * h * w;
                        float best = -INFINITY;
                        int bi = -1;
                        for (int a = 0; a < k && !(bi >= 0 && isnan(best)); a++)
                            for (int b = 0; b < k; b++) {
                                const int ii = i * st - pd + a, jj = j * st - pd + b;
                                if (ii < 0 || ii >= h || jj < 0 || jj >= w) continue;
                                const float v = xp[ii * w + jj];
                                if (bi < 0 || v > best || isnan(v)) best = v, bi = ii * w + jj;
                                if (isnan(v)) break;
                            }
                        const int64_t o = ((int64_t)pl * ho + i) * wo + j;
                        const int same = ix[o] == bi && (isnan(best) ? isnan(y[o]) : y[o] == best);
                        bad += !same;
                        cases++;
                    }
            free(x), free(y), free(ix);
        }
    test_check(bad == 0, "maxpool: value and index as the definition (first maximum, first NaN) in %d outputs of "
               "7 shapes x 3x3/2/1, 3x3/1/1, 2x2/2/0 (%d differ)", cases, bad);
}

/* ---------------------------------------------------------------- linear, relu, pooling, dropout ---- */

typedef struct {
    nn_linear l;
    int n;
    float *x, *y;
} lin_ctx;

static void lin_run(void *p)
{
    lin_ctx *k = p;
    nn_linear_forward(&k->l, k->y, k->x, k->n);
}

static void test_linear(void)
{
    lin_ctx k = {.n = 5};
    const int in = 7, out = 4;
    float *pb = alloc(2 * (in * out + out));
    k.l = (nn_linear){.in = in, .out = out, .w = pb, .dw = pb + in * out, .b = pb + 2 * in * out,
                      .db = pb + 2 * in * out + out};
    fill(k.l.w, in * out, 0.5);
    fill(k.l.b, out, 0.5);
    k.x = alloc(k.n * in), k.y = alloc(k.n * out);
    fill(k.x, k.n * in, 1.0);
    lin_run(&k);
    float ref[5 * 4];
    for (int i = 0; i < k.n; i++)
        for (int o = 0; o < out; o++) {
            double s = k.l.b[o];
            for (int j = 0; j < in; j++) s += (double)k.x[i * in + j] * k.l.w[o * in + j];
            ref[i * out + o] = (float)s;
        }
    test_close("linear: forward vs definition", k.y, ref, k.n * out, 1e-5, 1.0);
    float r[20], dx[35];
    fill(r, 20, 1.0);
    nn_linear_backward(&k.l, dx, r, k.x, k.n);
    objective ob = {lin_run, &k, k.y, r, 20};
    fdcheck("linear: dw", &ob, k.l.w, k.l.dw, in * out, 0.5, 1e-4);
    fdcheck("linear: db", &ob, k.l.b, k.l.db, out, 0.5, 1e-4);
    fdcheck("linear: dx", &ob, k.x, dx, k.n * in, 0.5, 1e-4);
    free(pb), free(k.x), free(k.y);
}

typedef struct {
    int kind;   /* 0 relu, 1 maxpool, 2 avgpool, 3 dropout */
    float *x, *y, *mask;
    int32_t *idx;
    int c, n, h, w;
} pw_ctx;

static void pw_run(void *p)
{
    pw_ctx *k = p;
    const int64_t planes = (int64_t)k->c * k->n;
    if (k->kind == 0) nn_relu_forward(k->y, k->x, planes * k->h * k->w);
    else if (k->kind == 1) nn_maxpool_forward(k->y, k->idx, k->x, planes, k->h, k->w, 3, 2, 1);
    else if (k->kind == 2) nn_avgpool_forward(k->y, k->x, k->c, k->n, (int64_t)k->h * k->w);
    else nn_dropout_backward(k->y, k->x, k->mask, planes * k->h * k->w);   /* y = x * mask, mask fixed */
}

static void test_pointwise(void)
{
    pw_ctx k = {.c = 2, .n = 3, .h = 7, .w = 6};
    const int64_t nx = (int64_t)k.c * k.n * k.h * k.w;
    const int ho = nn_out_size(k.h, 3, 2, 1), wo = nn_out_size(k.w, 3, 2, 1);
    k.x = alloc(nx), k.y = alloc(nx), k.mask = alloc(nx);
    k.idx = malloc(sizeof(int32_t) * nx);
    float *r = alloc(nx), *dx = alloc(nx);
    fill(k.x, nx, 1.0);
    fill(r, nx, 1.0);
    /* relu: keep values away from the kink so that h = 1e-2 never crosses it */
    for (int64_t i = 0; i < nx; i++)
        if (fabsf(k.x[i]) < 0.05f) k.x[i] = 0.1f;
    k.kind = 0;
    pw_run(&k);
    nn_relu_backward(dx, r, k.y, nx);
    objective ob = {pw_run, &k, k.y, r, nx};
    fdcheck("relu: dx", &ob, k.x, dx, nx, 1e-2, 1e-4);
    /* max pool 3x3/2 pad 1 */
    k.kind = 1;
    pw_run(&k);
    double e = 0;
    for (int64_t pl = 0; pl < (int64_t)k.c * k.n; pl++)
        for (int i = 0; i < ho; i++)
            for (int j = 0; j < wo; j++) {
                float mx = -INFINITY;
                for (int a = 0; a < 3; a++)
                    for (int b = 0; b < 3; b++) {
                        int ii = 2 * i - 1 + a, jj = 2 * j - 1 + b;
                        if (ii >= 0 && ii < k.h && jj >= 0 && jj < k.w) mx = fmaxf(mx, k.x[pl * k.h * k.w + ii * k.w + jj]);
                    }
                e = fmax(e, fabs(mx - k.y[(pl * ho + i) * wo + j]));
            }
    test_check(e == 0, "maxpool 3x3/2 pad 1: forward is the window maximum (max err %g)", e);
    nn_maxpool_backward(dx, r, k.idx, (int64_t)k.c * k.n, k.h, k.w, ho, wo);
    ob.ny = (int64_t)k.c * k.n * ho * wo;
    fdcheck("maxpool: dx", &ob, k.x, dx, nx, 1e-3, 2e-3);
    /* global average pool */
    k.kind = 2;
    pw_run(&k);
    nn_avgpool_backward(dx, r, k.c, k.n, (int64_t)k.h * k.w);
    ob.ny = (int64_t)k.c * k.n;
    fdcheck("avgpool: dx", &ob, k.x, dx, nx, 0.5, 1e-4);
    /* dropout: the mask has the right rate and scale; backward multiplies by it */
    float *big = alloc(100000), *bm = alloc(100000);
    for (int i = 0; i < 100000; i++) big[i] = 1.0f;
    util_rng dr = util_rng_split(4, 0);
    nn_dropout_forward(big, bm, big, 100000, 0.3f, &dr);
    int zeros = 0, okv = 1;
    for (int i = 0; i < 100000; i++) {
        zeros += bm[i] == 0;
        okv &= bm[i] == 0 || fabsf(bm[i] - 1 / 0.7f) < 1e-6f;
        okv &= big[i] == bm[i];
    }
    test_check(okv && abs(zeros - 30000) < 600, "dropout p=0.3: %d of 100000 dropped, kept values scaled by 1/0.7", zeros);
    k.kind = 3;
    for (int64_t i = 0; i < nx; i++) k.mask[i] = bm[i];
    pw_run(&k);
    nn_dropout_backward(dx, r, k.mask, nx);
    ob.ny = nx;
    fdcheck("dropout: dx", &ob, k.x, dx, nx, 0.5, 1e-4);
    free(big), free(bm), free(k.x), free(k.y), free(k.mask), free(k.idx), free(r), free(dx);
}

/* ---------------------------------------------------------------- losses ---- */

typedef struct {
    float *z;
    int n, k;
    int32_t *lab;
    float *soft, smooth;
    double loss;
} ce_ctx;

static void ce_run(void *p)
{
    ce_ctx *c = p;
    c->loss = nn_loss_ce(c->z, c->n, c->k, c->lab, c->soft, c->smooth, NULL, NULL);
}

static void test_ce(void)
{
    ce_ctx c = {.n = 4, .k = 5};
    int32_t lab[4] = {0, 4, 2, 2};
    c.lab = lab;
    c.z = alloc(20);
    fill(c.z, 20, 2.0);
    float soft[20];
    for (int i = 0; i < 4; i++) {
        double s = 0;
        for (int j = 0; j < 5; j++) s += soft[i * 5 + j] = (float)util_rng_uniform(&rng);
        for (int j = 0; j < 5; j++) soft[i * 5 + j] /= (float)s;
    }
    /* the value against the formula, in double */
    double want = 0, want_s = 0;
    for (int i = 0; i < 4; i++) {
        double mx = -1e30, se = 0;
        for (int j = 0; j < 5; j++) mx = fmax(mx, c.z[i * 5 + j]);
        for (int j = 0; j < 5; j++) se += exp(c.z[i * 5 + j] - mx);
        for (int j = 0; j < 5; j++) {
            double logp = c.z[i * 5 + j] - mx - log(se);
            want -= ((j == lab[i]) * 0.9 + 0.1 / 5) * logp / 4;
            want_s -= soft[i * 5 + j] * logp / 4;
        }
    }
    float dz[20];
    int correct = -1;
    float got = (float)nn_loss_ce(c.z, 4, 5, lab, NULL, 0.1f, dz, &correct), wf = (float)want;
    test_close("cross-entropy with label smoothing 0.1: value", &got, &wf, 1, 1e-6, 1e-6);
    /* dlogits against differences of the value */
    c.smooth = 0.1f;
    double worst = 0;
    for (int i = 0; i < 20; i++) {
        float keep = c.z[i];
        c.z[i] = keep + 1e-2f;
        ce_run(&c);
        double lp = c.loss;
        c.z[i] = keep - 1e-2f;
        ce_run(&c);
        double lm = c.loss;
        c.z[i] = keep;
        double fd = (lp - lm) / ((double)(keep + 1e-2f) - (double)(keep - 1e-2f));
        worst = fmax(worst, fabs(fd - dz[i]) / (1e-5 + 2e-3 * fabs(dz[i])));
    }
    test_check(worst <= 1, "cross-entropy with label smoothing: dlogits vs differences (worst %.3f of tolerance "
               "1e-5 + 2e-3 |g|; the loss is evaluated in double, so only the O(h^2) term remains)", worst);
    got = (float)nn_loss_ce(c.z, 4, 5, NULL, soft, 0, dz, NULL), wf = (float)want_s;
    test_close("cross-entropy with soft targets: value", &got, &wf, 1, 1e-6, 1e-6);
    c.soft = soft, c.smooth = 0, worst = 0;
    for (int i = 0; i < 20; i++) {
        float keep = c.z[i];
        c.z[i] = keep + 1e-2f;
        ce_run(&c);
        double lp = c.loss;
        c.z[i] = keep - 1e-2f;
        ce_run(&c);
        double lm = c.loss;
        c.z[i] = keep;
        double fd = (lp - lm) / ((double)(keep + 1e-2f) - (double)(keep - 1e-2f));
        worst = fmax(worst, fabs(fd - dz[i]) / (1e-5 + 2e-3 * fabs(dz[i])));
    }
    test_check(worst <= 1, "cross-entropy with soft targets: dlogits vs differences (worst %.3f of tolerance)", worst);
    /* hard labels: soft one-hot rows give the same loss and gradient */
    float onehot[20] = {0}, dz2[20];
    for (int i = 0; i < 4; i++) onehot[i * 5 + lab[i]] = 1;
    double a = nn_loss_ce(c.z, 4, 5, lab, NULL, 0, dz, NULL), b = nn_loss_ce(c.z, 4, 5, NULL, onehot, 0, dz2, NULL);
    test_check(fabs(a - b) < 1e-12 && !memcmp(dz, dz2, sizeof dz), "cross-entropy: one-hot soft rows = hard labels");
    free(c.z);
}

static void test_ntxent(void)
{
    const int n2 = 8, d = 6;
    float z[48], dz[48], work[48 + 64 + 8];
    fill(z, 48, 1.0);
    double worst = 0;
    int correct;
    nn_loss_ntxent(z, n2, d, 0.5f, dz, &correct, work);
    for (int i = 0; i < 48; i++) {
        float keep = z[i];
        z[i] = keep + 1e-2f;
        double lp = nn_loss_ntxent(z, n2, d, 0.5f, NULL, NULL, work);
        z[i] = keep - 1e-2f;
        double lm = nn_loss_ntxent(z, n2, d, 0.5f, NULL, NULL, work);
        z[i] = keep;
        double fd = (lp - lm) / ((double)(keep + 1e-2f) - (double)(keep - 1e-2f));
        /* similarities are float32 (rounding ~1e-7 / T), so the differences carry ~1e-5 of noise */
        worst = fmax(worst, fabs(fd - dz[i]) / (1e-4 + 5e-3 * fabs(dz[i])));
    }
    test_check(worst <= 1, "nt-xent: dz vs differences (worst %.3f of tolerance 1e-4 + 5e-3 |g|)", worst);
    /* positives made identical: every row finds its partner */
    float zz[48];
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < d; j++) zz[(i + 4) * d + j] = zz[i * d + j] = z[i * d + j];
    nn_loss_ntxent(zz, n2, d, 0.5f, NULL, &correct, work);
    test_check(correct == 8, "nt-xent: identical views are all found (%d of 8)", correct);
    const char *shared = test_shared_dir();
    char p[1024];
    if (!shared) {
        test_skip("nt-xent vs PyTorch: ../shared not found");
        return;
    }
    struct util_err err = {{0}};
    int nd;
    int64_t sh[8];
    snprintf(p, sizeof p, "%s/reference/ntxent/z.npy", shared);
    float *rz = nn_npy_load(p, &nd, sh, &err);
    snprintf(p, sizeof p, "%s/reference/ntxent/loss.npy", shared);
    float *rl = nn_npy_load(p, &nd, sh, &err);
    snprintf(p, sizeof p, "%s/reference/ntxent/grad.z.npy", shared);
    float *rg = nn_npy_load(p, &nd, sh, &err);
    if (!rz || !rl || !rg) {
        test_skip("nt-xent vs PyTorch: %s", err.msg);
    } else {
        const int rd = (int)(sh[1]);
        float *g = alloc(8 * rd), *wk = alloc((int64_t)nn_ntxent_work_floats(8, rd));
        float l = (float)nn_loss_ntxent(rz, 8, rd, 0.5f, g, NULL, wk);
        test_close("nt-xent loss vs PyTorch", &l, rl, 1, 1e-5, 1e-3);
        test_close("nt-xent gradient vs PyTorch", g, rg, 8 * rd, 1e-4, 1e-3);
        free(g), free(wk);
    }
    free(rz), free(rl), free(rg);
}

/* A convolution large enough for several depth blocks, spatial blocks and channel panels of the
 * micro-kernel path: forward against the direct sum, backward against the im2col + GEMM path (itself
 * checked by differences above). */
static void test_conv_big(int stride)
{
    conv_ctx c = {.n = 3, .h = 17, .w = 19, .nchw = 0};
    const int ci = 50, co = 30, k = 3;
    c.l = (nn_conv){.c_in = ci, .c_out = co, .k = k, .stride = stride, .pad = 1};
    const int64_t nw = (int64_t)co * ci * k * k;
    float *wb = alloc(2 * nw);
    c.l.w = wb, c.l.dw = wb + nw;
    fill(c.l.w, nw, 0.1);
    const int ho = nn_out_size(c.h, k, stride, 1), wo = nn_out_size(c.w, k, stride, 1);
    const int64_t nx = (int64_t)c.n * ci * c.h * c.w, ny = (int64_t)co * c.n * ho * wo;
    c.x = alloc(nx), c.y = alloc(ny);
    fill(c.x, nx, 1.0);
    c.cap = 1 << 20;
    c.col = alloc(c.cap);
    float *ref = alloc(ny), *r = alloc(ny), *dx[2], *dw[2], *y[2];
    fill(r, ny, 1.0);
    for (int o = 0; o < co; o++)
        for (int n = 0; n < c.n; n++)
            for (int i = 0; i < ho; i++)
                for (int j = 0; j < wo; j++) {
                    double acc = 0;
                    for (int q = 0; q < ci; q++)
                        for (int a = 0; a < k; a++)
                            for (int b = 0; b < k; b++) {
                                const int ii = i * stride - 1 + a, jj = j * stride - 1 + b;
                                if (ii >= 0 && ii < c.h && jj >= 0 && jj < c.w)
                                    acc += (double)c.l.w[((o * ci + q) * k + a) * k + b] * xat(&c, q, n, ii, jj);
                            }
                    ref[(((int64_t)o * c.n + n) * ho + i) * wo + j] = (float)acc;
                }
    for (int uk = 0; uk < 2; uk++) {
        nn_ukernel_enable(uk);
        y[uk] = alloc(ny), dx[uk] = alloc(nx), dw[uk] = alloc(nw);
        nn_conv_forward(&c.l, y[uk], c.x, 0, c.n, c.h, c.w, c.col, c.cap);
        memset(c.l.dw, 0, sizeof(float) * nw);
        nn_conv_backward(&c.l, dx[uk], 0, r, c.x, 0, c.n, c.h, c.w, c.col, c.cap);
        memcpy(dw[uk], c.l.dw, sizeof(float) * nw);
    }
    nn_ukernel_enable(1);
    char what[160];
    /* 450-term float32 sums of terms ~0.1: absolute error ~1e-6 at values ~2 */
    snprintf(what, sizeof what, "conv 50->30 k3 s%d 3x17x19, micro-kernel: forward vs direct sum", stride);
    test_close(what, y[1], ref, ny, 1e-5, 1.0);
    snprintf(what, sizeof what, "conv 50->30 k3 s%d, micro-kernel vs im2col path: dx", stride);
    test_close(what, dx[1], dx[0], nx, 1e-5, 1.0);
    snprintf(what, sizeof what, "conv 50->30 k3 s%d, micro-kernel vs im2col path: dw", stride);
    test_close(what, dw[1], dw[0], nw, 1e-5, 1.0);
    for (int uk = 0; uk < 2; uk++) free(y[uk]), free(dx[uk]), free(dw[uk]);
    free(ref), free(r), free(c.x), free(c.y), free(c.col), free(wb);
}

int main(void)
{
    nn_set_threads(1);
    util_rng_seed(&rng, 20240601);
    static const int cfgs[][3] = {{3, 1, 1}, {3, 2, 1}, {1, 1, 0}, {1, 2, 0}, {7, 2, 3}, {5, 1, 2}, {2, 3, 0}};
    for (int i = 0; i < 7; i++)
        for (int nchw = 0; nchw < 2; nchw++)
            for (int uk = 0; uk < 2; uk++) test_conv(cfgs[i][0], cfgs[i][1], cfgs[i][2], i == 5, nchw, i & 1, uk);
    test_conv(3, 1, 1, 0, 0, 1, 0);
    test_conv_big(1);
    test_conv_big(2);
    for (int train = 0; train < 2; train++) {
        test_bn(0, train, 0, 0);
        test_bn(0, train, 1, 1);
        test_bn(1, train, 1, 0);
    }
    test_bn(0, 1, 0, 1);
    test_bn(1, 1, 0, 0);
    nn_set_bn_allsum(allsum_one);
    bn_mode = "sync ";
    test_bn(0, 1, 0, 0);
    test_bn(0, 1, 1, 1);
    test_bn(1, 1, 1, 0);
    test_bn(1, 1, 0, 0);
    nn_set_bn_allsum(NULL);
    bn_mode = "";
    test_bn_twin(0);
    test_bn_twin(1);
    test_maxpool_rules();
    test_linear();
    test_pointwise();
    test_ce();
    test_ntxent();
    return test_exit();
}
