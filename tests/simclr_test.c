/* simclr_test: the pieces of SimCLR pre-training.  NT-Xent loss and gradient against PyTorch's
 * (../shared/reference/ntxent) and against central differences of a double-precision transcription;
 * one LARS step on known numbers and on random ones against the formula, with BN/bias excluded and
 * not; projection-head gradients by finite differences; the pair-stream reader (layout, u8 scaling,
 * resume skip, broken pairs, odd counts, truncation); weighted k-NN votes; and a tiny ResNet on a
 * synthetic image set whose loss falls and contrastive accuracy rises over a few dozen steps. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "aug.h"
#include "nn.h"
#include "metric.h"
#include "simclr.h"
#include "nn_gradcheck.h"
#include "test.h"
#include "tsz.h"

/* ---------------------------------------------------------------- NT-Xent ---- */

/* SimCLR's loss in double: rows i and i + n2/2 are partners; mean over rows of
 * -log(exp(s_ip / t) / sum_{j != i} exp(s_ij / t)) with s the cosine similarity. */
static double ntxent_ref(const double *z, int n2, int d, double t)
{
    const int b = n2 / 2;
    double *u = malloc(sizeof(double) * n2 * d), total = 0;
    for (int i = 0; i < n2; i++) {
        double ss = 0;
        for (int j = 0; j < d; j++) ss += z[i * d + j] * z[i * d + j];
        for (int j = 0; j < d; j++) u[i * d + j] = z[i * d + j] / sqrt(ss);
    }
    for (int i = 0; i < n2; i++) {
        const int p = i < b ? i + b : i - b;
        double se = 0, sp = 0;
        for (int j = 0; j < n2; j++) {
            if (j == i) continue;
            double s = 0;
            for (int k = 0; k < d; k++) s += u[i * d + k] * u[j * d + k];
            se += exp(s / t);
            if (j == p) sp = s / t;
        }
        total += log(se) - sp;
    }
    free(u);
    return total / n2;
}

static void ntxent_vs_reference(void)
{
    const char *sh = test_shared_dir();
    char p[1024];
    if (!sh) {
        test_skip("NT-Xent vs PyTorch: ../shared/reference/ntxent is absent");
        return;
    }
    snprintf(p, sizeof p, "%s/reference/ntxent/z.npy", sh);
    if (access(p, R_OK)) {
        test_skip("NT-Xent vs PyTorch: %s is absent", p);
        return;
    }
    int nd;
    int64_t sz[8], sl[8], sg[8];
    struct util_err err = {{0}};
    float *z = nn_npy_load(p, &nd, sz, &err);
    snprintf(p, sizeof p, "%s/reference/ntxent/loss.npy", sh);
    float *loss = z ? nn_npy_load(p, &nd, sl, &err) : NULL;
    snprintf(p, sizeof p, "%s/reference/ntxent/grad.z.npy", sh);
    float *gz = loss ? nn_npy_load(p, &nd, sg, &err) : NULL;
    if (!gz) {
        test_check(0, "NT-Xent reference files load: %s", err.msg);
        free(z), free(loss);
        return;
    }
    const int n2 = (int)sz[0], d = (int)sz[1];
    float *dz = malloc(sizeof(float) * n2 * d), *work = malloc(sizeof(float) * nn_ntxent_work_floats(n2, d));
    const double l = nn_loss_ntxent(z, n2, d, 0.5f, dz, NULL, work);
    /* float32 similarities through exp/log: a few ulps of a loss near 2 */
    test_check(fabs(l - loss[0]) <= 1e-5 * fabs(loss[0]), "NT-Xent loss %d x %d, t 0.5: %.7f, PyTorch %.7f", n2, d, l,
               loss[0]);
    /* gradients are O(0.1); 1e-4 relative to the largest covers float32 rounding of the similarity matrix */
    float gmax = 0;
    for (int i = 0; i < n2 * d; i++) gmax = fmaxf(gmax, fabsf(gz[i]));
    test_close("NT-Xent gradient vs PyTorch", dz, gz, n2 * d, 1e-4, gmax);
    free(z), free(loss), free(gz), free(dz), free(work);
}

static void ntxent_vs_fd(int n2, int d, double t, uint64_t seed)
{
    util_rng r;
    util_rng_seed(&r, seed);
    float *z = malloc(sizeof(float) * n2 * d), *dz = malloc(sizeof(float) * n2 * d),
          *fd = malloc(sizeof(float) * n2 * d), *work = malloc(sizeof(float) * nn_ntxent_work_floats(n2, d));
    double *zd = malloc(sizeof(double) * n2 * d);
    for (int i = 0; i < n2 * d; i++) z[i] = (float)util_rng_normal(&r), zd[i] = z[i];
    /* make partners similar so the loss is in its interesting range */
    for (int i = 0; i < n2 / 2; i++)
        for (int j = 0; j < d; j++) z[(i + n2 / 2) * d + j] = 0.7f * z[i * d + j] + 0.3f * z[(i + n2 / 2) * d + j],
                                    zd[(i + n2 / 2) * d + j] = z[(i + n2 / 2) * d + j];
    int corr = -1;
    const double l = nn_loss_ntxent(z, n2, d, (float)t, dz, &corr, work);
    const double lr = ntxent_ref(zd, n2, d, t);
    /* central differences of the double transcription, h 1e-5: truncation O(h^2), rounding O(1e-16 / h) */
    float gmax = 0;
    for (int i = 0; i < n2 * d; i++) {
        const double keep = zd[i];
        zd[i] = keep + 1e-5;
        const double up = ntxent_ref(zd, n2, d, t);
        zd[i] = keep - 1e-5;
        const double dn = ntxent_ref(zd, n2, d, t);
        zd[i] = keep;
        fd[i] = (float)((up - dn) / 2e-5);
        gmax = fmaxf(gmax, fabsf(fd[i]));
    }
    /* how many rows find their partner most similar, counted here in double */
    int want = 0;
    for (int i = 0; i < n2; i++) {
        const int p = i < n2 / 2 ? i + n2 / 2 : i - n2 / 2;
        int arg = -1;
        double best = -2;
        for (int j = 0; j < n2; j++) {
            if (j == i) continue;
            double s = 0, a = 0, b = 0;
            for (int k = 0; k < d; k++) s += zd[i * d + k] * zd[j * d + k], a += zd[i * d + k] * zd[i * d + k],
                                        b += zd[j * d + k] * zd[j * d + k];
            s /= sqrt(a * b);
            if (s > best) best = s, arg = j;
        }
        want += arg == p;
    }
    test_check(fabs(l - lr) <= 1e-5 * fabs(lr), "NT-Xent %d x %d, t %g: loss %.7f, double transcription %.7f", n2, d,
               t, l, lr);
    char what[128];
    snprintf(what, sizeof what, "NT-Xent gradient %d x %d, t %g vs central differences", n2, d, t);
    /* float32 similarities: 1e-4 of the largest gradient */
    test_close(what, dz, fd, n2 * d, 1e-4, gmax);
    test_check(corr == want, "NT-Xent contrastive hits %d x %d: %d, counted in double %d", n2, d, corr, want);
    free(z), free(dz), free(fd), free(work), free(zd);
}

/* ---------------------------------------------------------------- models ---- */

static nn_model *tiny_model(int width, int stem, int head_layers, int hidden, int out)
{
    nn_config c;
    nn_config_default(&c);
    c.width = width, c.in_ch = 3, c.stem = stem, c.head_layers = head_layers, c.head_hidden = hidden, c.head_out = out;
    struct util_err err = {{0}};
    nn_model *m = nn_model_create(&c, &err);
    if (!m) {
        printf("FAIL: model: %s\n", err.msg);
        exit(1);
    }
    nn_model_init(m, 7);
    return m;
}

static simclr_trainer *trainer(nn_model *m, int kind, double wd, int decay_bn_bias, int batch, int chunk, int hw,
                               float t)
{
    nn_optim_opts o;
    nn_optim_opts_default(&o, kind);
    o.weight_decay = wd, o.decay_bn_bias = decay_bn_bias;
    struct util_err err = {{0}};
    simclr_trainer *tr = simclr_trainer_create(m, &o, batch, chunk, hw, hw, t, &err);
    if (!tr) {
        printf("FAIL: trainer: %s\n", err.msg);
        exit(1);
    }
    return tr;
}

/* ---------------------------------------------------------------- LARS ---- */

static void lars_known_numbers(void)
{
    /* Every parameter w = 1 with gradient g = 0.5, weight decay 0.1, trust 0.001, momentum 0.9, lr 0.1.
     * A weight tensor of n values: |w| = sqrt(n), |g + wd w| = 0.6 sqrt(n), ratio = 0.001 / 0.6,
     *   step 1: v = lr ratio (g + wd w) = 0.1 * 0.001 = 1e-4, w = 0.9999;
     *   step 2: g + wd w = 0.59999, ratio = 0.001 * 0.9999 / 0.59999, lr ratio g' = 0.9999e-4,
     *           v = 0.9e-4 + 0.9999e-4 = 1.8999e-4, w = 0.99971001.
     * An excluded BN or bias tensor: no decay, no trust ratio: v = 0.1 * 0.5 = 0.05, w = 0.95;
     *   step 2: v = 0.045 + 0.05 = 0.095, w = 0.855.
     * With decay_bn_bias (nothing excluded) BN follows the weight rule. */
    for (int incl = 0; incl <= 1; incl++) {
        nn_model *m = tiny_model(2, NN_STEM_SMALL, 2, 4, 3);
        simclr_trainer *tr = trainer(m, NN_OPT_LARS, 0.1, incl, 2, 0, 8, 0.5f);
        for (int64_t i = 0; i < m->n_params; i++) m->params[i] = 1, m->grads[i] = 0.5f;
        simclr_update(tr, 0.1);
        const float w1 = m->params[nn_model_find(m, "layer1.0.conv1.weight")->offset];
        const float b1 = m->params[nn_model_find(m, "bn1.weight")->offset];
        const float h1 = m->params[nn_model_find(m, "head.3.bias")->offset];
        for (int64_t i = 0; i < m->n_params; i++) m->grads[i] = 0.5f;
        simclr_update(tr, 0.1);
        const float w2 = m->params[nn_model_find(m, "layer1.0.conv1.weight")->offset];
        const float b2 = m->params[nn_model_find(m, "bn1.weight")->offset];
        const float h2 = m->params[nn_model_find(m, "head.3.bias")->offset];
        const float wb1 = incl ? 0.9999f : 0.95f, wb2 = incl ? 0.99971001f : 0.855f;
        test_check(fabsf(w1 - 0.9999f) < 1e-6f && fabsf(w2 - 0.99971001f) < 1e-6f && fabsf(b1 - wb1) < 1e-6f &&
                       fabsf(b2 - wb2) < 1e-6f && fabsf(h1 - wb1) < 1e-6f && fabsf(h2 - wb2) < 1e-6f,
                   "LARS known numbers, BN/bias %s: weight 1 -> %.8g -> %.8g (0.9999, 0.99971001), BN gamma -> %.8g -> "
                   "%.8g, head bias -> %.8g -> %.8g (%.8g, %.8g)", incl ? "included" : "excluded", w1, w2, b1, b2, h1, h2,
                   wb1, wb2);
        simclr_trainer_free(tr);
        nn_model_free(m);
    }
}

static void lars_random(int incl)
{
    nn_model *m = tiny_model(2, NN_STEM_SMALL, 2, 4, 3);
    const double wd = 0.05, lr = 0.7, mu = 0.9, eta = 0.001;
    simclr_trainer *tr = trainer(m, NN_OPT_LARS, wd, incl, 2, 0, 8, 0.5f);
    util_rng r;
    util_rng_seed(&r, 11 + incl);
    const int64_t n = m->n_params;
    double *w = malloc(sizeof(double) * n), *v = calloc(n, sizeof(double));
    float *want = malloc(sizeof(float) * n);
    for (int64_t i = 0; i < n; i++) m->params[i] = (float)util_rng_normal(&r), w[i] = m->params[i];
    for (int step = 0; step < 2; step++) {
        for (int64_t i = 0; i < n; i++) m->grads[i] = (float)(0.1 * util_rng_normal(&r));
        /* the formula, per tensor, in double */
        for (int t = 0; t < m->n_tensors; t++) {
            const nn_tensor *te = &m->tensors[t];
            if (te->kind > NN_P_BN) continue;
            const int adapt = incl || te->kind == NN_P_WEIGHT;
            const double dec = adapt ? wd : 0;
            double ww = 0, gg = 0;
            for (int64_t i = te->offset; i < te->offset + te->numel; i++) {
                const double g = m->grads[i] + dec * w[i];
                ww += w[i] * w[i], gg += g * g;
            }
            const double ratio = adapt && ww > 0 && gg > 0 ? eta * sqrt(ww) / sqrt(gg) : 1.0;
            for (int64_t i = te->offset; i < te->offset + te->numel; i++) {
                v[i] = mu * v[i] + lr * ratio * (m->grads[i] + dec * w[i]);
                w[i] -= v[i];
            }
        }
        simclr_update(tr, lr);
    }
    for (int64_t i = 0; i < n; i++) want[i] = (float)w[i];
    char what[96];
    snprintf(what, sizeof what, "LARS two random steps, BN/bias %s, vs the formula in double",
             incl ? "included" : "excluded");
    /* float32 parameters of O(1) updated twice: a few ulps */
    test_close(what, m->params, want, n, 1e-6, 1.0);
    free(w), free(v), free(want);
    simclr_trainer_free(tr);
    nn_model_free(m);
}

/* ---------------------------------------------------------------- step gradients ---- */

/* Every head parameter's gradient against central differences of the step's loss. */
static void head_fd(int layers)
{
    const int B = 4, hw = 8;
    nn_model *m = tiny_model(2, NN_STEM_SMALL, layers, 6, 5);
    simclr_trainer *tr = trainer(m, NN_OPT_LARS, 0, 0, B, 0, hw, 0.5f);
    util_rng r;
    util_rng_seed(&r, 5);
    const int64_t nx = (int64_t)2 * B * 3 * hw * hw;
    float *x = malloc(sizeof(float) * nx);
    for (int64_t i = 0; i < nx; i++) x[i] = (float)util_rng_uniform(&r);
    /* the head's BN gammas and betas away from 1 and 0, so that their gradients are not special */
    for (int t = 0; t < m->n_tensors; t++) {
        const nn_tensor *te = &m->tensors[t];
        if (te->part == NN_PART_HEAD && te->kind == NN_P_BN)
            for (int64_t i = 0; i < te->numel; i++) m->params[te->offset + i] += (float)(0.3 * util_rng_normal(&r));
    }
    simclr_forward_backward(tr, x, NULL);
    float *an = malloc(sizeof(float) * m->n_params), *fd = malloc(sizeof(float) * m->n_params);
    memcpy(an, m->grads, sizeof(float) * m->n_params);
    /* Central differences at h and h/2.  A ReLU makes the loss piecewise smooth: when a step crosses a
     * kink the two estimates disagree, and that value is left out (counted).  In between, float32
     * forward noise (~1e-7 of a loss near 2) over h = 1e-3 is ~1e-4 absolute. */
    int64_t cnt = 0, kinks = 0, total = 0;
    float gmax = 0;
    for (int t = 0; t < m->n_tensors; t++) {
        const nn_tensor *te = &m->tensors[t];
        if (te->part != NN_PART_HEAD || te->kind > NN_P_BN) continue;
        for (int64_t i = te->offset; i < te->offset + te->numel; i++) {
            double est[2];
            for (int k = 0; k < 2; k++) {
                const float keep = m->params[i], h = k ? 5e-4f : 1e-3f;
                m->params[i] = keep + h;
                const double up = simclr_forward_backward(tr, x, NULL);
                m->params[i] = keep - h;
                const double dn = simclr_forward_backward(tr, x, NULL);
                m->params[i] = keep;
                est[k] = (up - dn) / (2.0 * h);
            }
            total++;
            if (fabs(est[0] - est[1]) > 2e-3 * (fabs(est[0]) + 1)) {
                kinks++;
                continue;
            }
            an[cnt] = an[i];
            fd[cnt] = (float)est[1];
            gmax = fmaxf(gmax, fabsf(fd[cnt]));
            cnt++;
        }
    }
    char what[128];
    snprintf(what, sizeof what, "head gradients (%d layers, %lld values, %lld at a ReLU kink left out) vs central "
             "differences", layers, (long long)cnt, (long long)kinks);
    /* 1e-3 of the largest gradient: the float32 noise above over gradients of O(1) */
    test_close(what, an, fd, cnt, 1e-3, gmax);
    test_check(kinks * 20 <= total, "head gradients: at most 5 %% of the values at a kink (%lld of %lld)",
               (long long)kinks, (long long)total);
    free(x), free(an), free(fd);
    simclr_trainer_free(tr);
    nn_model_free(m);
}

typedef struct {
    simclr_trainer *tr;
    const float *x;
} step_ctx;

static double step_loss(void *p)
{
    const step_ctx *c = p;
    return simclr_forward_backward(c->tr, c->x, NULL);
}

/* The step against an independent twin model: the loss is NT-Xent of the projections of one train
 * forward per chunk, the running statistics are those of these forwards (the recomputing second pass
 * leaves no trace) and the gradients are the sums of one backward per chunk.  With fd, also the whole
 * step, backbone and head, against directional differences of its loss (tests/nn_gradcheck.h):
 * chunked, the loss differentiated is NT-Xent over all 2B views with batch norm per chunk, what the
 * step claims to take the gradient of.  (Chunks of 2 views are left to the twin: batch norm over two
 * values makes the loss too rough for float32 differences, with the correct step as with any.) */
static void step_gradcheck(int chunk, int fd)
{
    const int B = 4, hw = 16;
    nn_model *m = tiny_model(4, NN_STEM_SMALL, 2, 6, 5), *twin = tiny_model(4, NN_STEM_SMALL, 2, 6, 5);
    util_rng r = util_rng_split(17, (uint64_t)chunk);
    gc_bn_off_kinks(m, &r);
    memcpy(twin->params, m->params, sizeof(float) * m->n_params);
    simclr_trainer *tr = trainer(m, NN_OPT_LARS, 0, 0, B, chunk, hw, 0.5f);
    const int64_t view = 3 * hw * hw, nx = 2 * B * view;
    float *x = malloc(sizeof(float) * nx);
    for (int64_t i = 0; i < nx; i++) x[i] = (float)util_rng_normal(&r);
    const double l0 = simclr_forward_backward(tr, x, NULL);

    /* the twin: one train forward per chunk, projections gathered, NT-Xent */
    const int c = tr->chunk, d = m->out_dim;
    struct util_err err = {{0}};
    nn_ws *ws = nn_ws_create(twin, c, hw, hw, &err);
    if (!ws) {
        printf("FAIL: twin workspace: %s\n", err.msg);
        exit(1);
    }
    float *z = malloc(sizeof(float) * 2 * B * d), *work = malloc(sizeof(float) * nn_ntxent_work_floats(2 * B, d));
    for (int i = 0; i < 2 * B / c; i++)
        memcpy(z + (size_t)i * c * d, nn_forward(twin, ws, x + i * c * view, c, 1), sizeof(float) * c * d);
    float *dzt = malloc(sizeof(float) * 2 * B * d);
    const double lt = nn_loss_ntxent(z, 2 * B, d, 0.5f, dzt, NULL, work);
    const int same = lt == l0 && !memcmp(twin->bufs, m->bufs, sizeof(float) * m->n_bufs) &&
                     !memcmp(twin->tracked, m->tracked, sizeof(int64_t) * m->n_tracked);
    test_check(same, "chunk %d of %d views: loss %.9g and running statistics as one train forward per chunk (%.9g)", c,
               2 * B, l0, lt);
    /* ... and the gradients as one forward and backward per chunk: the same sums in another order (the
     * step back-propagates the last chunk first) */
    nn_zero_grad(twin);
    for (int i = 0; i < 2 * B / c; i++) {
        nn_forward(twin, ws, x + i * c * view, c, 1);
        nn_backward(twin, ws, dzt + (size_t)i * c * d, NULL);
    }
    char what[96];
    snprintf(what, sizeof what, "chunk %d of %d views: gradients as one backward per chunk", c, 2 * B);
    test_close(what, m->grads, twin->grads, m->n_params, 1e-4, 1e-3);

    snprintf(what, sizeof what, "NT-Xent step gradcheck, chunk %d of %d views", c, 2 * B);
    step_ctx sc = {tr, x};
    if (fd) gc_check(what, m, x, NULL, 0, l0, step_loss, &sc, &r);
    nn_ws_free(ws);
    free(z), free(dzt), free(work), free(x);
    simclr_trainer_free(tr);
    nn_model_free(m), nn_model_free(twin);
}

/* ---------------------------------------------------------------- the pair stream ---- */

/* A stream of n u8 records 3x2x2, record i named "img<i/2>" (or "odd" where i == bad), value = i + j. */
static void write_pairs(const char *path, int n, int bad, int64_t start, int declare)
{
    tsz_attrs a;
    tsz_attrs_init(&a);
    tsz_attrs_set(&a, "augment_views", "2");
    if (start) tsz_attrs_setf(&a, "augment_start", "%lld", (long long)start);
    struct util_err err = {{0}};
    tsz_wopts wo;
    tsz_wopts_default(&wo);
    wo.raw = 1;
    tsz_writer *w = tsz_writer_open(path, &a, declare ? n : -1, &wo, &err);
    for (int i = 0; w && i < n; i++) {
        tsz_rec rec;
        const int64_t shape[3] = {3, 2, 2};
        char name[32];
        if (i == bad) snprintf(name, sizeof name, "odd");
        else snprintf(name, sizeof name, "img%lld", (long long)(start + i) / 2);
        tsz_rec_init(&rec, name, TSZ_U8, 3, shape);
        uint8_t d[12];
        for (int j = 0; j < 12; j++) d[j] = (uint8_t)(start + i + j);
        tsz_write(w, &rec, d, &err);
    }
    if (!w || tsz_writer_finish(w, &err) < 0) printf("FAIL: write %s: %s\n", path, err.msg);
    tsz_writer_close(w);
    tsz_attrs_free(&a);
}

/* Read a stream through simclr_stream in batches of B pairs from run record `from`; returns 0 when
 * every batch and the tail are fine, else -1 with err; first_ok: the first batch's layout was right. */
static int read_all(const char *path, int B, int64_t from, int *batches, int *first_ok, struct util_err *err)
{
    simclr_stream *s = simclr_stream_open(path, err);
    if (!s) return -1;
    const simclr_stream_info *in = simclr_stream_get_info(s);
    const int64_t nb = (in->total - from) / 2 / B;
    int rc = -1;
    *batches = 0, *first_ok = 0;
    if (simclr_stream_start(s, from, B, nb, 2, err) < 0) goto done;
    for (int64_t b = 0; b < nb; b++) {
        const float *x = simclr_stream_next(s, err);
        if (!x) goto done;
        if (b == 0) {
            /* pair p of the batch is run records from + 2p (row p) and from + 2p + 1 (row B + p) */
            int ok = 1;
            for (int p = 0; p < B; p++)
                for (int v = 0; v < 2; v++)
                    for (int j = 0; j < 12; j++)
                        ok &= x[(v * B + p) * 12 + j] == (float)(from + 2 * p + v + j) / 255.0f;
            *first_ok = ok;
        }
        simclr_stream_release(s);
        (*batches)++;
    }
    rc = simclr_stream_finish(s, err);
done:
    simclr_stream_close(s);
    return rc;
}

static void stream_tests(void)
{
    struct util_err err = {{0}};
    int nb, ok;
    /* 11 pairs, batch 3: three batches, two pairs left over (checked, dropped) */
    write_pairs("pairs.tsz", 22, -1, 0, 1);
    int rc = read_all("pairs.tsz", 3, 0, &nb, &ok, &err);
    test_check(rc == 0 && nb == 3 && ok, "pair stream: 3 batches of 3 pairs, first views rows 0-2, second rows 3-5, "
               "u8 / 255 (rc %d, %d batches, layout %s) %s", rc, nb, ok ? "right" : "wrong", err.msg);
    /* a resumed run starts at run record 6 of a stream that starts at 0: it skips */
    rc = read_all("pairs.tsz", 3, 6, &nb, &ok, &err);
    test_check(rc == 0 && nb == 2 && ok, "pair stream resumed at record 6: %d batches from pair 3 (%s)", nb,
               ok ? "right" : "wrong");
    /* augment --start 6: the stream's first record is run record 6 */
    write_pairs("start.tsz", 16, -1, 6, 1);
    simclr_stream *s = simclr_stream_open("start.tsz", &err);
    test_check(s && simclr_stream_get_info(s)->start == 6 && simclr_stream_get_info(s)->total == 22,
               "augment_start 6 + 16 declared: the run has 22 records");
    simclr_stream_close(s);
    rc = read_all("start.tsz", 3, 6, &nb, &ok, &err);
    test_check(rc == 0 && nb == 2 && ok, "stream restarted at record 6: %d batches, layout %s", nb, ok ? "right" : "wrong");
    rc = read_all("start.tsz", 3, 4, &nb, &ok, &err);
    test_check(rc < 0 && strstr(err.msg, "starts at run record 6"), "a stream that starts after the run's record: %s",
               err.msg);
    /* a broken pair: record 9 does not match record 8 */
    write_pairs("broken.tsz", 22, 9, 0, 1);
    rc = read_all("broken.tsz", 3, 0, &nb, &ok, &err);
    test_check(rc < 0 && nb == 1 && strstr(err.msg, "broken.tsz: record 9: view 'odd' does not pair with 'img4'"),
               "broken pair: one batch, then: %s", err.msg);
    /* broken in the dropped tail: still an error */
    write_pairs("broken2.tsz", 22, 21, 0, 1);
    rc = read_all("broken2.tsz", 3, 0, &nb, &ok, &err);
    test_check(rc < 0 && nb == 3 && strstr(err.msg, "record 21:"), "broken pair in the tail: %s", err.msg);
    /* odd count: 21 records */
    write_pairs("odd.tsz", 21, -1, 0, 1);
    rc = read_all("odd.tsz", 3, 0, &nb, &ok, &err);
    test_check(rc < 0 && nb == 3 && strstr(err.msg, "odd.tsz: record 20: the stream ends after this record, in the "
               "middle of a pair"), "odd record count: %s", err.msg);
    /* truncated: the file cut in the middle of record 13 (raw records of 12 bytes plus a header) */
    {
        void *buf = NULL;
        size_t n = 0;
        util_read_file("pairs.tsz", 1 << 20, &buf, &n, &err);
        const size_t cut = n * 6 / 10;
        util_write_file_atomic("cut.tsz", buf, cut, &err);
        free(buf);
        rc = read_all("cut.tsz", 3, 0, &nb, &ok, &err);
        test_check(rc < 0 && strstr(err.msg, "cut.tsz: record ") && strstr(err.msg, "truncated"),
                   "truncated stream (%d batches): %s", nb, err.msg);
    }
    /* no declared count and no records_total: the schedule cannot be planned */
    write_pairs("nodecl.tsz", 8, -1, 0, 0);
    s = simclr_stream_open("nodecl.tsz", &err);
    test_check(!s && strstr(err.msg, "declares no record count"), "undeclared count refused: %s", err.msg);
    simclr_stream_close(s);
    unlink("pairs.tsz"), unlink("start.tsz"), unlink("broken.tsz"), unlink("broken2.tsz"), unlink("odd.tsz");
    unlink("cut.tsz"), unlink("nodecl.tsz");
}

/* ---------------------------------------------------------------- k-NN ---- */

static void knn_tests(void)
{
    /* 2-D unit features.  Train: one class-0 example at angle 0, three class-1 examples at 60 degrees.
     * A query at angle 0.02: similarities ~1 (class 0) and ~0.48 (class 1 x3).  Weighted with
     * t = 0.07 the single close neighbour wins (e^14.3 >> 3 e^6.9); a plain majority of k = 4 says 1. */
    float ftr[8], fva[2] = {cosf(0.02f), sinf(0.02f)};
    int32_t ytr[4] = {0, 1, 1, 1}, yva[1] = {0};
    ftr[0] = 1, ftr[1] = 0;
    for (int i = 1; i < 4; i++) ftr[2 * i] = cosf(1.047f + 0.01f * i), ftr[2 * i + 1] = sinf(1.047f + 0.01f * i);
    double a = simclr_knn_accuracy(ftr, ytr, 4, fva, yva, 1, 0, 2, 2, 200, 0.07);
    test_check(a == 1.0, "k-NN: one near neighbour outweighs three far ones at t 0.07 (accuracy %g, want 1)", a);
    /* with a temperature of 100 the weights are nearly equal and the majority wins */
    a = simclr_knn_accuracy(ftr, ytr, 4, fva, yva, 1, 0, 2, 2, 200, 100);
    test_check(a == 0.0, "k-NN: at t 100 the majority wins (accuracy %g, want 0)", a);
    /* t 1e-4: exp(s / t) overflows a double; the votes are weighed relative to the best neighbour */
    float sc[2];
    struct util_err e = {{0}};
    int rc = metric_knn_scores(ftr, ytr, 4, fva, 1, -1, 2, 2, 200, 1e-4, sc, &e);
    test_check(rc == 0 && sc[0] == 1.0f && sc[1] == 0.0f, "k-NN scores at t 1e-4: finite, all on the nearest (%g %g)",
               sc[0], sc[1]);
    /* k = 3 keeps the three most similar: the class-0 example and two class-1 ones */
    a = simclr_knn_accuracy(ftr, ytr, 4, fva, yva, 1, 0, 2, 2, 1, 0.07);
    test_check(a == 1.0, "k-NN: k 1 is the nearest neighbour (accuracy %g)", a);
    /* a bigger random case against brute force: 300 train, 40 val, 5 classes, 8-D, k 200 */
    util_rng r;
    util_rng_seed(&r, 3);
    const int nt = 300, nv = 40, d = 8, C = 5;
    float *ft = malloc(sizeof(float) * nt * d), *fv = malloc(sizeof(float) * nv * d);
    int32_t *yt = malloc(sizeof(int32_t) * nt), *yv = malloc(sizeof(int32_t) * nv);
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < (pass ? nv : nt); i++) {
            float *f = (pass ? fv : ft) + i * d;
            int32_t y = (int32_t)util_rng_below(&r, C);
            (pass ? yv : yt)[i] = y;
            double ss = 0;
            for (int j = 0; j < d; j++) f[j] = (float)(util_rng_normal(&r) + (j == y ? 1.5 : 0)), ss += f[j] * f[j];
            for (int j = 0; j < d; j++) f[j] = (float)(f[j] / sqrt(ss));
        }
    int correct = 0;
    for (int v = 0; v < nv; v++) {
        /* brute force: sort all similarities, vote over the top 200 */
        double s[300], votes[5] = {0};
        int idx[300];
        for (int i = 0; i < nt; i++) {
            s[i] = 0, idx[i] = i;
            for (int j = 0; j < d; j++) s[i] += (double)fv[v * d + j] * ft[i * d + j];
        }
        for (int i = 0; i < nt; i++)
            for (int j = i + 1; j < nt; j++)
                if (s[idx[j]] > s[idx[i]]) {
                    int t = idx[i];
                    idx[i] = idx[j], idx[j] = t;
                }
        for (int i = 0; i < 200; i++) votes[yt[idx[i]]] += exp(s[idx[i]] / 0.07);
        int best = 0;
        for (int c = 1; c < C; c++)
            if (votes[c] > votes[best]) best = c;
        correct += best == yv[v];
    }
    a = simclr_knn_accuracy(ft, yt, nt, fv, yv, nv, 0, d, C, 200, 0.07);
    test_check(fabs(a - (double)correct / nv) < 1e-12 && a > 0.4,
               "k-NN 300 x 40, 5 classes, k 200: accuracy %.3f, brute force %.3f", a, (double)correct / nv);
    /* leave-one-out (embed --knn-loo): the 300 against themselves, row i skipped for query i, must give
     * what the 299 others give as a reference without row i; with row i voting, each finds itself */
    enum { K = 20 };
    float *loo = malloc(sizeof(float) * nt * C), *self = malloc(sizeof(float) * nt * C), *rest = malloc(sizeof(float) * (nt - 1) * d);
    int32_t *yrest = malloc(sizeof(int32_t) * (nt - 1));
    rc = metric_knn_scores(ft, yt, nt, ft, nt, 0, d, C, K, 0.07, loo, &e) |
         metric_knn_scores(ft, yt, nt, ft, nt, -1, d, C, K, 0.07, self, &e);
    double worst = 0;
    int loo_right = 0, self_right = 0;
    for (int i = 0; i < nt && rc == 0; i++) {
        for (int j = 0, k = 0; j < nt; j++)
            if (j != i) memcpy(rest + k * d, ft + j * d, sizeof(float) * d), yrest[k++] = yt[j];
        float want[5];
        rc |= metric_knn_scores(rest, yrest, nt - 1, ft + i * d, 1, -1, d, C, K, 0.07, want, &e);
        int bl = 0, bs = 0;
        for (int c = 0; c < C; c++) {
            worst = fmax(worst, fabs(loo[i * C + c] - want[c]));
            if (loo[i * C + c] > loo[i * C + bl]) bl = c;
            if (self[i * C + c] > self[i * C + bs]) bs = c;
        }
        loo_right += bl == yt[i], self_right += bs == yt[i];
    }
    test_check(rc == 0 && worst < 1e-6 && self_right == nt && loo_right < nt && loo_right > nt * 0.4,
               "k-NN leave-one-out, 300 against themselves, k %d: scores as with row i removed (max diff %.2g); "
               "accuracy %.3f (%.3f when each votes for itself)", K, worst, (double)loo_right / nt,
               (double)self_right / nt);
    a = simclr_knn_accuracy(ft, yt, nt, ft, yt, nt, 1, d, C, K, 0.07);   /* the --knn-loo monitor */
    test_check(a == (double)loo_right / nt, "k-NN monitor, leave-one-out: accuracy %.4f, from the scores %.4f", a,
               (double)loo_right / nt);
    free(loo), free(self), free(rest), free(yrest);
    free(ft), free(fv), free(yt), free(yv);
}

/* ---------------------------------------------------------------- learning on synthetic images ---- */

/* Image i: a background colour, a rectangle of another colour and diagonal stripes, all from seed i. */
static void synth_image(float *x, int S, uint64_t i)
{
    util_rng r = util_rng_split(99, i);
    float bg[3], fg[3], st[3];
    for (int c = 0; c < 3; c++)
        bg[c] = (float)util_rng_uniform(&r), fg[c] = (float)util_rng_uniform(&r), st[c] = (float)util_rng_uniform(&r);
    const int x0 = (int)util_rng_below(&r, S / 2), y0 = (int)util_rng_below(&r, S / 2);
    const int x1 = x0 + S / 4 + (int)util_rng_below(&r, S / 4), y1 = y0 + S / 4 + (int)util_rng_below(&r, S / 4);
    const int period = 3 + (int)util_rng_below(&r, 5), dir = (int)util_rng_below(&r, 2);
    for (int y = 0; y < S; y++)
        for (int xx = 0; xx < S; xx++) {
            const int in = xx >= x0 && xx < x1 && y >= y0 && y < y1;
            const int stripe = ((dir ? xx + y : xx - y + S) / period) % 2;
            for (int c = 0; c < 3; c++)
                x[(c * S + y) * S + xx] = in ? fg[c] : stripe ? 0.5f * (bg[c] + st[c]) : bg[c];
        }
}

static void learning(void)
{
    const int N = 48, S = 24, V = 16, B = 24, steps = 40;
    nn_model *m = tiny_model(4, NN_STEM_SMALL, 2, 32, 16);
    nn_optim_opts oo;
    nn_optim_opts_default(&oo, NN_OPT_LARS);
    oo.weight_decay = 1e-6;
    struct util_err err = {{0}};
    simclr_trainer *tr = simclr_trainer_create(m, &oo, B, 0, V, V, 0.5f, &err);
    if (!tr) {
        test_check(0, "learning: trainer: %s", err.msg);
        nn_model_free(m);
        return;
    }
    float *img = malloc(sizeof(float) * N * 3 * S * S), *x = malloc(sizeof(float) * 2 * B * 3 * V * V);
    for (int i = 0; i < N; i++) synth_image(img + (size_t)i * 3 * S * S, S, i);
    aug_simclr_opts ao;
    /* milder than SimCLR's views (colour strength 0.2, crops of 60-100 %, no blur): a width-4 network
     * must show progress within 40 steps */
    aug_simclr_default(&ao, V, 0.2);
    ao.scale_lo = 0.6, ao.blur_p = 0;
    aug_work aw = {0};
    /* B images, two views each, drawn from stream `seed` of the generator */
#define VIEWS(seed)                                                                                             \
    do {                                                                                                        \
        util_rng r = util_rng_split(1234, (seed));                                                              \
        int64_t order[48];                                                                                      \
        for (int i = 0; i < N; i++) order[i] = i;                                                               \
        util_shuffle_i64(&r, order, N);                                                                         \
        for (int p = 0; p < B; p++)                                                                             \
            for (int v = 0; v < 2; v++)                                                                         \
                aug_simclr(x + (size_t)(v * B + p) * 3 * V * V, img + (size_t)order[p] * 3 * S * S, 3, S, S, &ao, &r, \
                           &aw, NULL, &err);                                                                    \
    } while (0)
    /* fixed held-out batches (views no training step sees), measured before and after; rounding-level
     * differences (another build, another kernel) change the trajectory, so the margins are wide */
    const int n_eval = 4;
    double l0 = 0, l1 = 0;
    int c0 = 0, c1 = 0;
    for (int e = 0; e < n_eval; e++) {
        int corr = 0;
        VIEWS(1000000 + e);
        l0 += simclr_forward_backward(tr, x, &corr), c0 += corr;
    }
    for (int s = 0; s < steps; s++) {
        VIEWS(s);
        /* LARS moves each weight tensor by about lr x 0.001 of its norm per step: SimCLR's lr 0.3 x B/256
         * needs thousands of steps, so here lr 100 x B/256 (about 1 % per step), with 5 warm-up steps
         * and a cosine decay */
        nn_sched sc = {.kind = NN_SCHED_COSINE, .base_lr = 100.0 * B / 256, .warmup = 5, .total = steps};
        simclr_forward_backward(tr, x, NULL);
        simclr_update(tr, nn_sched_lr(&sc, s));
    }
    for (int e = 0; e < n_eval; e++) {
        int corr = 0;
        VIEWS(1000000 + e);
        l1 += simclr_forward_backward(tr, x, &corr), c1 += corr;
    }
#undef VIEWS
    l0 /= n_eval, l1 /= n_eval;
    const double a0 = c0 / (n_eval * 2.0 * B), a1 = c1 / (n_eval * 2.0 * B);
    test_check(l1 < l0 - 0.3, "synthetic images, ResNet-18 width 4 at %dx%d, %d steps of %d pairs: loss on %d held-out "
               "batches falls %.3f -> %.3f", V, V, steps, B, n_eval, l0, l1);
    test_check(a1 > a0 + 0.1, "synthetic images: contrastive accuracy on them rises %.3f -> %.3f", a0, a1);
    aug_work_free(&aw);
    free(img), free(x);
    simclr_trainer_free(tr);
    nn_model_free(m);
}

int main(void)
{
    nn_init();
    nn_set_threads(1);
    ntxent_vs_reference();
    ntxent_vs_fd(8, 5, 0.5, 1);
    ntxent_vs_fd(12, 7, 0.1, 2);
    lars_known_numbers();
    lars_random(0);
    lars_random(1);
    head_fd(2);
    head_fd(3);
    step_gradcheck(0, 1);
    step_gradcheck(4, 1);
    step_gradcheck(2, 0);
    stream_tests();
    knn_tests();
    learning();
    return test_exit();
}
