/* nn_bf16_test: the bf16 precision.  (1) Rounding to bf16 (nearest even, NaN, overflow).  (2) nn_bf16_gemm
 * in all four transpose cases and block-crossing shapes against a double reference computed from the
 * bf16-rounded inputs.  (3) Convolution and linear layers in bf16: on inputs that already are bf16 values
 * (rounding is then the identity) they equal the fp32 layers to summation error; on general inputs they
 * differ by bf16 rounding.  (4) A whole ResNet-18 train step in bf16 against fp32, and bit-identical
 * for 1 and 2 threads.  (5) EARSIGHT_NO_BF16: nn_set_precision refuses bf16 with a message.  (2)-(4) run
 * on both kernels, AMX tiles (skipped on a CPU without them) and vdpbf16ps, and (6) the two agree to fp32
 * summation order on shapes around the AMX tile edges (16, 32 rows/columns, 32 depth). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../lib/nn_internal.h"   /* nn_bf16_amx_enable: both kernels are tested */
#include "nn.h"
#include "test.h"

static const char *kname;   /* the kernel under test, in every message */

static float rbf(float f) { return nn_bf16_to_float(nn_bf16_round(f)); }

static void rounding(void)
{
    const float one_half_ulp = 1.0f + 0x1p-8f, three_half = 1.0f + 3 * 0x1p-8f, above = 1.0f + 0x1p-8f + 0x1p-20f;
    test_check(nn_bf16_round(1.0f) == 0x3f80 && nn_bf16_round(-2.0f) == 0xc000, "bf16: 1 and -2 are exact");
    test_check(nn_bf16_round(one_half_ulp) == 0x3f80 && nn_bf16_round(three_half) == 0x3f82,
               "bf16: ties round to even (1+2^-8 -> 1, 1+3*2^-8 -> 1+2^-6)");
    test_check(nn_bf16_round(above) == 0x3f81, "bf16: just above a tie rounds up");
    test_check(isnan(rbf(NAN)) && isnan(rbf(nanf("1"))), "bf16: NaN stays NaN");
    test_check(rbf(INFINITY) == INFINITY && rbf(3.4e38f) == INFINITY && rbf(-1e38f) == -0x1.2cp126f,
               "bf16: inf stays, FLT_MAX rounds to inf, -1e38 to the nearest bf16");
}

static void fill(float *x, int64_t n, util_rng *r)
{
    for (int64_t i = 0; i < n; i++) x[i] = (float)util_rng_normal(r);
}

/* C = alpha op(A) op(B) + beta C0 against double sums of the rounded operands; error judged against
 * sum |a||b| (fp32 accumulation of k products: at most about k * 2^-24 of it; we allow 2^-24 * (k + 8)).
 * Also: the result differs from the unrounded fp32 product by far more (rounding did happen). */
static void gemm_case(int ta, int tb, int m, int n, int k, float alpha, float beta)
{
    util_rng r = util_rng_split(7, (uint64_t)(m * 131 + n * 7 + k + ta * 2 + tb));
    const int64_t lda = ta ? m + 3 : k + 1, ldb = tb ? k + 2 : n + 5, ldc = n + 1;
    float *a = malloc(sizeof(float) * (ta ? (int64_t)k * lda : (int64_t)m * lda));
    float *b = malloc(sizeof(float) * (tb ? (int64_t)n * ldb : (int64_t)k * ldb));
    float *c = malloc(sizeof(float) * (int64_t)m * ldc), *c0 = malloc(sizeof(float) * (int64_t)m * ldc);
    fill(a, ta ? (int64_t)k * lda : (int64_t)m * lda, &r);
    fill(b, tb ? (int64_t)n * ldb : (int64_t)k * ldb, &r);
    fill(c0, (int64_t)m * ldc, &r);
    for (int64_t i = 0; i < (int64_t)m * ldc; i++) c[i] = beta == 0.0f ? NAN : c0[i];   /* beta 0: C unread */
    nn_bf16_gemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    double worst = 0, moved = 0;
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) {
            double s = 0, s32 = 0, mag = 0;
            for (int p = 0; p < k; p++) {
                const float av = ta ? a[(int64_t)p * lda + i] : a[(int64_t)i * lda + p];
                const float bv = tb ? b[(int64_t)j * ldb + p] : b[(int64_t)p * ldb + j];
                s += (double)rbf(av) * rbf(bv);
                s32 += (double)av * bv;
                mag += fabs((double)rbf(av) * rbf(bv));
            }
            const double cb = beta == 0.0f ? 0.0 : beta * (double)c0[(int64_t)i * ldc + j];
            const double want = alpha * s + cb, got = c[(int64_t)i * ldc + j];
            const double scale = fabs(alpha) * mag + fabs(cb) + 1e-30;
            const double e = fabs(got - want) / scale;
            if (!(e <= worst)) worst = e;
            const double d = fabs(got - (alpha * s32 + cb)) / scale;
            if (d > moved) moved = d;
        }
    const double tol = 0x1p-24 * (k + 8);
    test_check(worst <= tol && moved > 1e-4,
               "bf16 gemm (%s) ta=%d tb=%d %dx%dx%d alpha %g beta %g: err %.3g of sum|ab| (tol %.3g); differs from "
               "the unrounded product by %.3g", kname, ta, tb, m, n, k, alpha, beta, worst, tol, moved);
    free(a), free(b), free(c), free(c0);
}

static void gemms(void)
{
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            gemm_case(ta, tb, 13, 70, 37, 1.0f, 0.0f);
            gemm_case(ta, tb, 7, 5, 1, 0.5f, 1.0f);
        }
    /* crosses MC (192), NC (1024) and KC (256) blocks, odd depth */
    gemm_case(0, 0, 200, 1100, 601, 1.0f, 1.0f);
    gemm_case(0, 1, 65, 130, 999, -1.0f, 0.5f);
    gemm_case(1, 0, 197, 67, 300, 2.0f, 0.0f);
    /* AMX edges: 16-row tiles, 32 x 32 micro-tiles, 32-deep tiles, and a 1-row product */
    gemm_case(0, 0, 33, 17, 33, 1.0f, 0.0f);
    gemm_case(1, 1, 32, 32, 32, 1.0f, 1.0f);
    gemm_case(0, 1, 16, 65, 31, 1.0f, 0.0f);
    gemm_case(1, 0, 1, 96, 64, 1.0f, 0.0f);
    /* whole 32 x 32 tiles accumulated in C itself (alpha 1, beta 0 or 1), over several depth blocks */
    gemm_case(0, 0, 64, 96, 600, 1.0f, 0.0f);
    gemm_case(0, 1, 96, 64, 520, 1.0f, 1.0f);
    /* more depth than one AMX block (2048): two equal blocks, C through the tiles twice */
    gemm_case(0, 0, 40, 70, 2100, 1.0f, 1.0f);
    gemm_case(1, 1, 33, 64, 4100, 0.5f, 0.0f);
    gemm_case(0, 0, 47, 129, 257, 1.0f, 0.0f);
    /* thread-count independence on a product large enough to be split */
    const int m = 96, n = 2000, k = 300;
    util_rng r = util_rng_split(9, 1);
    float *a = malloc(sizeof(float) * m * k), *b = malloc(sizeof(float) * k * n);
    float *c1 = calloc((size_t)m * n, sizeof(float)), *c2 = calloc((size_t)m * n, sizeof(float));
    fill(a, (int64_t)m * k, &r), fill(b, (int64_t)k * n, &r);
    struct util_err err = {{0}};
    nn_set_threads(1);
    nn_bf16_gemm(0, 0, m, n, k, 1.0f, a, k, b, n, 0.0f, c1, n);
    nn_set_threads(2);
    nn_set_precision(NN_BF16, &err);   /* buffers for the second thread */
    nn_bf16_gemm(0, 0, m, n, k, 1.0f, a, k, b, n, 0.0f, c2, n);
    nn_bf16_gemm(0, 0, n / 20, m, k, 1.0f, b, k, a, m, 0.0f, c2 + (size_t)m * n / 2, m);   /* split by rows */
    nn_set_threads(1);
    nn_bf16_gemm(0, 0, n / 20, m, k, 1.0f, b, k, a, m, 0.0f, c1 + (size_t)m * n / 2, m);
    test_check(!memcmp(c1, c2, sizeof(float) * m * n), "bf16 gemm (%s): 1 and 2 threads bit-identical", kname);
    free(a), free(b), free(c1), free(c2);
}

/* ||got - want|| / ||want|| */
static double l2rel(const float *got, const float *want, int64_t n)
{
    double e = 0, s = 0;
    for (int64_t i = 0; i < n; i++) {
        e += ((double)got[i] - want[i]) * ((double)got[i] - want[i]);
        s += (double)want[i] * want[i];
    }
    return sqrt(e / (s > 0 ? s : 1));
}

static double maxrel(const float *got, const float *want, int64_t n)
{
    double e = 0, s = 0;
    for (int64_t i = 0; i < n; i++) {
        e = fmax(e, fabs((double)got[i] - want[i]));
        s = fmax(s, fabs((double)want[i]));
    }
    return e / (s > 0 ? s : 1);
}

/* One convolution forward and backward in fp32 and bf16 on x, w, dy given. */
static void conv_run(const nn_conv *proto, int prec, const float *x, const float *w, const float *dy, int x_nchw,
                     int n, int h, int wd, float *y, float *dx, float *dw)
{
    struct util_err err = {{0}};
    nn_set_precision(prec, &err);
    nn_conv l = *proto;
    const size_t wn = (size_t)l.c_out * l.c_in * l.k * l.k;
    float *wc = malloc(sizeof(float) * wn);
    memcpy(wc, w, sizeof(float) * wn);
    l.w = wc, l.dw = dw, l.b = l.db = NULL;
    memset(dw, 0, sizeof(float) * wn);
    const size_t cap = nn_conv_col_min(&l, h, wd, x_nchw) * n + 4096;
    float *col = malloc(sizeof(float) * cap);
    nn_conv_forward(&l, y, x, x_nchw, n, h, wd, col, cap);
    nn_conv_backward(&l, dx, 0, dy, x, x_nchw, n, h, wd, col, cap);
    free(col), free(wc);
    nn_set_precision(NN_FP32, &err);
}

static void conv_case(int c_in, int c_out, int k, int stride, int pad, int x_nchw, int n, int h, int w)
{
    const nn_conv proto = {.c_in = c_in, .c_out = c_out, .k = k, .stride = stride, .pad = pad};
    const int ho = nn_out_size(h, k, stride, pad), wo = nn_out_size(w, k, stride, pad);
    const int64_t nx = (int64_t)c_in * n * h * w, ny = (int64_t)c_out * n * ho * wo, nw = (int64_t)c_out * c_in * k * k;
    util_rng r = util_rng_split(5, (uint64_t)(c_in * 1000 + c_out * 10 + k + stride));
    float *x = malloc(sizeof(float) * nx), *wt = malloc(sizeof(float) * nw), *dy = malloc(sizeof(float) * ny);
    fill(x, nx, &r), fill(wt, nw, &r), fill(dy, ny, &r);
    float *y[2], *dx[2], *dw[2];
    for (int i = 0; i < 2; i++) {
        y[i] = malloc(sizeof(float) * ny), dx[i] = malloc(sizeof(float) * nx), dw[i] = malloc(sizeof(float) * nw);
    }
    /* general inputs: bf16 differs from fp32 by rounding (relative ~2^-9 per operand) */
    conv_run(&proto, NN_FP32, x, wt, dy, x_nchw, n, h, w, y[0], dx[0], dw[0]);
    conv_run(&proto, NN_BF16, x, wt, dy, x_nchw, n, h, w, y[1], dx[1], dw[1]);
    const double e0 = maxrel(y[1], y[0], ny), e1 = maxrel(dx[1], dx[0], nx), e2 = maxrel(dw[1], dw[0], nw);
    /* bf16-representable inputs: bf16 = fp32 up to the order of fp32 sums */
    for (int64_t i = 0; i < nx; i++) x[i] = rbf(x[i]);
    for (int64_t i = 0; i < nw; i++) wt[i] = rbf(wt[i]);
    for (int64_t i = 0; i < ny; i++) dy[i] = rbf(dy[i]);
    conv_run(&proto, NN_FP32, x, wt, dy, x_nchw, n, h, w, y[0], dx[0], dw[0]);
    conv_run(&proto, NN_BF16, x, wt, dy, x_nchw, n, h, w, y[1], dx[1], dw[1]);
    const double f0 = maxrel(y[1], y[0], ny), f1 = maxrel(dx[1], dx[0], nx), f2 = maxrel(dw[1], dw[0], nw);
    /* tolerances: 1e-5 is fp32 summation noise over <= 10^4 terms measured against the max value; the
     * general-input difference must lie between 1e-4 (rounding happened) and 2e-2 (8-bit mantissa) */
    const int ok = f0 < 1e-5 && f1 < 1e-5 && f2 < 1e-5 && e0 > 1e-4 && e1 > 1e-4 && e2 > 1e-4 && e0 < 2e-2 &&
                   e1 < 2e-2 && e2 < 2e-2;
    test_check(ok, "bf16 conv (%s) %d->%d k%d s%d p%d%s: on bf16 inputs = fp32 (y %.2g dx %.2g dw %.2g, tol 1e-5); on "
               "fp32 inputs differs by rounding (y %.2g dx %.2g dw %.2g, in [1e-4, 2e-2])", kname, c_in, c_out, k, stride,
               pad, x_nchw ? " nchw" : "", f0, f1, f2, e0, e1, e2);
    for (int i = 0; i < 2; i++) free(y[i]), free(dx[i]), free(dw[i]);
    free(x), free(wt), free(dy);
}

static void linear_case(void)
{
    const int n = 9, in = 40, out = 11;
    util_rng r = util_rng_split(4, 4);
    float x[9 * 40], w[11 * 40], b[11], dy[9 * 11], y[2][9 * 11], dx[2][9 * 40], dw[2][11 * 40], db[2][11];
    fill(x, n * in, &r), fill(w, out * in, &r), fill(b, out, &r), fill(dy, n * out, &r);
    for (int i = 0; i < n * in; i++) x[i] = rbf(x[i]);
    for (int i = 0; i < out * in; i++) w[i] = rbf(w[i]);
    for (int i = 0; i < n * out; i++) dy[i] = rbf(dy[i]);
    struct util_err err = {{0}};
    for (int p = 0; p < 2; p++) {
        nn_set_precision(p ? NN_BF16 : NN_FP32, &err);
        memset(dw[p], 0, sizeof dw[p]), memset(db[p], 0, sizeof db[p]);
        nn_linear l = {.in = in, .out = out, .w = w, .b = b, .dw = dw[p], .db = db[p]};
        nn_linear_forward(&l, y[p], x, n);
        nn_linear_backward(&l, dx[p], dy, x, n);
    }
    nn_set_precision(NN_FP32, &err);
    const double e = fmax(fmax(maxrel(y[1], y[0], n * out), maxrel(dx[1], dx[0], n * in)), maxrel(dw[1], dw[0], out * in));
    test_check(e < 1e-5, "bf16 linear (%s) on bf16 inputs = fp32 (forward, dx, dw: max rel %.2g, tol 1e-5)", kname, e);
}

/* One ResNet-18 (width 16) train step on 3x32x40, batch 4: logits and every gradient. */
static float *step(int prec, int threads, int round_w, int64_t *total)
{
    struct util_err err = {{0}};
    nn_set_threads(threads);
    if (nn_set_precision(prec, &err) < 0) {
        test_check(0, "precision: %s", err.msg);
        return NULL;
    }
    nn_config cfg;
    nn_config_default(&cfg);
    cfg.width = 16, cfg.num_classes = 5;
    const int n = 8, h = 64, w = 64;
    nn_model *m = nn_model_create(&cfg, &err);
    nn_ws *ws = m ? nn_ws_create(m, n, h, w, &err) : NULL;
    if (!ws) {
        test_check(0, "resnet: %s", err.msg);
        nn_model_free(m);
        return NULL;
    }
    nn_model_init(m, 3);
    if (round_w)
        for (int64_t i = 0; i < m->n_params; i++) m->params[i] = rbf(m->params[i]);
    util_rng r = util_rng_split(8, 0);
    float *x = malloc(sizeof(float) * n * 3 * h * w), dl[8 * 5];
    fill(x, (int64_t)n * 3 * h * w, &r);
    int32_t lab[8] = {0, 1, 2, 4, 3, 2, 1, 0};
    nn_zero_grad(m);
    const float *out = nn_forward(m, ws, x, n, 1);
    nn_loss_ce(out, n, 5, lab, NULL, 0, dl, NULL);
    nn_backward(m, ws, dl, NULL);
    *total = 40 + m->n_params;
    float *res = malloc(sizeof(float) * *total);
    memcpy(res, out, sizeof(float) * 40);
    memcpy(res + 40, m->grads, sizeof(float) * m->n_params);
    free(x);
    nn_ws_free(ws);
    nn_model_free(m);
    nn_set_threads(1);
    nn_set_precision(NN_FP32, &err);
    return res;
}

static void resnet(void)
{
    int64_t total = 0;
    float *f = step(NN_FP32, 1, 0, &total), *b1 = step(NN_BF16, 1, 0, &total), *b2 = step(NN_BF16, 2, 0, &total);
    float *fr = step(NN_FP32, 1, 1, &total);
    if (f && b1 && b2 && fr) {
        printf("# fp32 with bf16-rounded weights vs fp32: logits max %.3g l2 %.3g; grads max %.3g l2 %.3g\n",
               maxrel(fr, f, 40), l2rel(fr, f, 40), maxrel(fr + 40, f + 40, total - 40), l2rel(fr + 40, f + 40, total - 40));
        const double el = maxrel(b1, f, 40), eg = maxrel(b1 + 40, f + 40, total - 40);
        const double ll = l2rel(b1, f, 40), lg = l2rel(b1 + 40, f + 40, total - 40);
        printf("# resnet18 bf16 (%s) vs fp32: logits max %.3g l2 %.3g; grads max %.3g l2 %.3g\n", kname, el, ll, eg, lg);
        /* A randomly initialised ResNet in train mode is ill-conditioned (BN over few values per channel
         * in the last stages): rounding only the weights to bf16, in fp32, already moves the gradients by
         * ~0.2 of their norm (measured above).  The noise floor is that change; bf16 everywhere (weights
         * and activations in every product) may be up to 3x it.  The per-layer checks above are the
         * tight ones. */
        const double nl = l2rel(fr, f, 40), ng = l2rel(fr + 40, f + 40, total - 40);
        test_check(ll <= 3 * nl && lg <= 3 * ng && ll > 0,
                   "resnet18 train step bf16 (%s) vs fp32: logits %.3g, gradients %.3g of their norm (tol 3x the "
                   "change from bf16 weights alone: %.3g, %.3g)", kname, ll, lg, 3 * nl, 3 * ng);
        test_check(!memcmp(b1, b2, sizeof(float) * total), "resnet18 bf16 train step (%s): 1 and 2 threads bit-identical", kname);
    }
    free(f), free(b1), free(b2), free(fr);
}

static void unsupported(void)
{
    struct util_err err = {{0}};
    setenv("EARSIGHT_NO_BF16", "1", 1);
    const int rc = nn_set_precision(NN_BF16, &err);
    test_check(rc < 0 && strstr(err.msg, "AVX512_BF16") && nn_precision() == NN_FP32 && !nn_cpu_has_bf16(),
               "EARSIGHT_NO_BF16=1: bf16 refused (\"%s\"), precision stays fp32", err.msg);
    unsetenv("EARSIGHT_NO_BF16");
    test_check(nn_precision_from_name("bf16") == NN_BF16 && nn_precision_from_name("fp32") == NN_FP32 &&
                   nn_precision_from_name("fp16") == -1 && !strcmp(nn_precision_name(NN_BF16), "bf16"),
               "precision names");
}

/* AMX against vdpbf16ps on the same rounded operands: both sum in fp32, in different orders, so they agree
 * to fp32 summation error (2^-24 * (k + 8) of sum |ab|, as gemm_case) but not necessarily bit for bit. */
static void amx_vs_dp(int ta, int tb, int m, int n, int k)
{
    util_rng r = util_rng_split(11, (uint64_t)(m * 7 + n * 3 + k + ta * 2 + tb));
    const int64_t na = (int64_t)m * k, nb = (int64_t)k * n;
    float *a = malloc(sizeof(float) * na), *b = malloc(sizeof(float) * nb);
    float *c[2] = {malloc(sizeof(float) * m * n), malloc(sizeof(float) * m * n)};
    fill(a, na, &r), fill(b, nb, &r);
    for (int p = 0; p < 2; p++) {
        nn_bf16_amx_enable(p == 0);
        nn_bf16_gemm(ta, tb, m, n, k, 1.0f, a, ta ? m : k, b, tb ? k : n, 0.0f, c[p], n);
    }
    double worst = 0;
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) {
            double mag = 0;
            for (int q = 0; q < k; q++)
                mag += fabs((double)rbf(ta ? a[(int64_t)q * m + i] : a[(int64_t)i * k + q]) *
                            rbf(tb ? b[(int64_t)j * k + q] : b[(int64_t)q * n + j]));
            const double e = fabs((double)c[0][(int64_t)i * n + j] - c[1][(int64_t)i * n + j]) / (mag + 1e-30);
            if (!(e <= worst)) worst = e;
        }
    const double tol = 0x1p-24 * (k + 8);
    test_check(worst <= tol, "bf16 gemm AMX vs vdpbf16ps ta=%d tb=%d %dx%dx%d: differ by %.3g of sum|ab| (tol %.3g)",
               ta, tb, m, n, k, worst, tol);
    free(a), free(b), free(c[0]), free(c[1]);
}

/* Everything that multiplies, on the kernel chosen by nn_bf16_amx_enable. */
static void kernel_checks(void)
{
    kname = nn_bf16_amx() ? "AMX" : "vdpbf16ps";
    gemms();
    conv_case(8, 20, 3, 1, 1, 0, 2, 9, 11);     /* stride 1: transposed-kernel input gradient */
    conv_case(6, 10, 3, 2, 1, 0, 2, 11, 9);     /* stride 2: col2im */
    conv_case(12, 7, 1, 1, 0, 0, 3, 5, 6);      /* 1x1: direct GEMMs */
    conv_case(8, 16, 1, 2, 0, 0, 2, 8, 8);      /* downsample */
    conv_case(3, 16, 7, 2, 3, 1, 2, 20, 18);    /* stem on (N, C, H, W) */
    conv_case(40, 33, 3, 1, 1, 0, 2, 7, 9);     /* channels across AMX tiles */
    conv_case(6, 8, 3, 1, 1, 0, 2, 5, 70);      /* output rows longer than a B panel (64 columns) */
    conv_case(5, 9, 3, 1, 1, 0, 1, 5, 7);
    conv_case(240, 20, 3, 1, 1, 0, 1, 5, 6);    /* depth 2160: two AMX depth blocks in the forward fill */       /* odd positions in all: the weight gradient's last pair half empty */
    conv_case(5, 9, 3, 2, 1, 0, 2, 13, 41);     /* stride 2, rows of 21 (more than 16 words per run) */
    conv_case(4, 6, 3, 3, 1, 0, 2, 10, 40);     /* stride 3: word by word */
    linear_case();
    resnet();
}

int main(void)
{
    nn_set_threads(1);
    rounding();
    unsupported();
    struct util_err err = {{0}};
    if (nn_set_precision(NN_BF16, &err) < 0) {
        test_skip("bf16 kernels: %s", err.msg);
        return test_exit();
    }
    nn_set_precision(NN_FP32, &err);
    if (nn_bf16_amx_enable(1)) {
        kernel_checks();
        for (int ta = 0; ta < 2; ta++)
            for (int tb = 0; tb < 2; tb++) amx_vs_dp(ta, tb, 45, 77, 70);
        amx_vs_dp(0, 0, 192, 300, 600);
    } else {
        test_skip("bf16 AMX kernel: this CPU (or the OS, or EARSIGHT_NO_AMX) gives no AMX-BF16 tiles; vdpbf16ps only");
    }
    nn_bf16_amx_enable(0);
    kernel_checks();
    nn_bf16_amx_enable(1);
    return test_exit();
}
