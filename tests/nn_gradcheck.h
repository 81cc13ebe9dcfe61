/* nn_gradcheck.h: a whole network's gradients against central finite differences of its loss, one random
 * direction per tensor.  Shared by nn_resnet_test (cross-entropy) and simclr_test (the NT-Xent step,
 * whole and chunked).
 *
 * Directional differences, one random direction v per tensor (and one for the input):
 * D(h) = (L(p + h v) - L(p - h v)) / 2h against g.v.  Single entries of a whole float32 network are too
 * noisy for differences (the loss is rounded to ~1e-7 relative and amplified), but a direction through
 * every entry of a tensor has a derivative of the size of the tensor's whole gradient.  ReLU kinks
 * crossed by the step make differences of a randomly initialised network jump, so gc_bn_off_kinks gives
 * the BN layers gamma ~ 0.4 and beta ~ 1.5 (most units active and away from the kink; dead units still
 * occur).  Tolerance: rounding noise s / h, plus twice the change between steps h and 2h (the error
 * estimate of Ridders' method: what curvature and kinks cost), plus 1% of |g.v|.  s is the loss's
 * rounding noise, measured along v: the largest departure from the tangent of four losses 1e-3 h away
 * (where the true change is ~1e-6 of the differences'), at least 1e-6 |L| (a CE loss's noise was
 * measured at <= 2.5e-7 relative).  It grows with depth and with batch norm over few values: for the
 * NT-Xent step of a width-4 network it reached ~1e-5 relative.  Some gradients are exactly zero in
 * theory (a per-channel shift before a train-mode BN); their check only says "zero within noise", so the
 * check also requires that most are sharp (tolerance under 25% of |g.v|). */
#ifndef EARSIGHT_NN_GRADCHECK_H
#define EARSIGHT_NN_GRADCHECK_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn.h"
#include "test.h"
#include "util.h"

/* The loss at the model's current parameters and input (it may overwrite m->grads). */
typedef double (*gc_loss_fn)(void *ctx);

/* BN gammas ~ 0.4 and betas ~ 1.5 (head BN included): see above. */
__attribute__((unused)) static void gc_bn_off_kinks(nn_model *m, util_rng *r)
{
    for (int i = 0; i < m->n_tensors; i++) {
        const nn_tensor *t = &m->tensors[i];
        if (t->kind != NN_P_BN) continue;
        const int gamma = strstr(t->name, "weight") != NULL;
        for (int64_t j = 0; j < t->numel; j++)
            m->params[t->offset + j] = (float)(gamma ? 0.4 + 0.1 * util_rng_normal(r) : 1.5 + 0.3 * util_rng_normal(r));
    }
}

/* One direction v through p (numel values, gradient g): the derivative g.v, the differences D(h), D(2h)
 * and the tolerance.  Returns |D(h) - g.v| / tolerance; p is restored. */
typedef struct {
    double gv, d1, d2, tol;
} gc_dir;

static double gc_direction(gc_dir *o, float *p, const float *g, int64_t numel, double l0, gc_loss_fn loss, void *ctx,
                           util_rng *r)
{
    float *keep = malloc(sizeof(float) * numel), *v = malloc(sizeof(float) * numel);
    memcpy(keep, p, sizeof(float) * numel);
    /* step: 1e-3 of the tensor's rms value, at least 1e-3 */
    double rms = 0, gv = 0;
    for (int64_t j = 0; j < numel; j++) rms += (double)keep[j] * keep[j];
    const double hs = fmax(1e-3 * sqrt(rms / numel), 1e-3);
    for (int64_t j = 0; j < numel; j++) v[j] = (float)util_rng_normal(r), gv += (double)g[j] * v[j];
    double noise = 1e-6 * fabs(l0);
    for (int q = -2; q <= 2; q++) {
        if (!q) continue;
        /* the tangent along the step actually taken: float32 rounds p + e v by a few % of e v */
        const double e = 1e-3 * hs * q;
        double lin = 0;
        for (int64_t j = 0; j < numel; j++) p[j] = keep[j] + (float)(e * v[j]), lin += (double)g[j] * (p[j] - keep[j]);
        noise = fmax(noise, fabs(loss(ctx) - l0 - lin));
    }
    double D[2];
    for (int q = 0; q < 2; q++) {
        const double hq = hs * (q + 1);
        for (int64_t j = 0; j < numel; j++) p[j] = keep[j] + (float)(hq * v[j]);
        const double lp = loss(ctx);
        for (int64_t j = 0; j < numel; j++) p[j] = keep[j] - (float)(hq * v[j]);
        const double lm = loss(ctx);
        D[q] = (lp - lm) / (2 * hq);
    }
    memcpy(p, keep, sizeof(float) * numel);
    free(keep);
    free(v);
    o->gv = gv, o->d1 = D[0], o->d2 = D[1];
    o->tol = noise / hs + 2 * fabs(D[1] - D[0]) + 1e-2 * fabs(gv);
    return fabs(D[0] - gv) / o->tol;
}

/* Check m->grads (and dx, the gradient of input x of nx floats, unless NULL) against directional
 * differences of loss(ctx), whose value at the current point is l0.  A tensor over tolerance gets a
 * second direction and fails only if that is over tolerance too: a wrong gradient is wrong along
 * almost every direction, while a ReLU kink just beside the point (closer than h, where D(h) and
 * D(2h) agree with each other and not with g.v) lies in the way of few.  One test line named `what`. */
__attribute__((unused)) static void gc_check(const char *what, nn_model *m, float *x, const float *dx, int64_t nx,
                                             double l0, gc_loss_fn loss, void *ctx, util_rng *r)
{
    float *grads = malloc(sizeof(float) * m->n_params);
    memcpy(grads, m->grads, sizeof(float) * m->n_params);
    int checked = 0, bad = 0, sharp = 0, second = 0;
    double worst = 0;
    char worst_name[96] = "";
    for (int i = 0; i <= m->n_tensors; i++) {
        const nn_tensor *t = i < m->n_tensors ? &m->tensors[i] : NULL;
        if (t ? t->kind > NN_P_BN : !dx) continue;
        float *p = t ? m->params + t->offset : x;
        const float *g = t ? grads + t->offset : dx;
        const int64_t numel = t ? t->numel : nx;
        gc_dir o;
        double e = gc_direction(&o, p, g, numel, l0, loss, ctx, r);
        if (e > 1) {
            printf("  %s: analytic %.6g, finite differences %.6g (h) %.6g (2h), tolerance %.3g; another direction:\n",
                   t ? t->name : "input", o.gv, o.d1, o.d2, o.tol);
            second++;
            e = gc_direction(&o, p, g, numel, l0, loss, ctx, r);
            printf("    analytic %.6g, finite differences %.6g (h) %.6g (2h), tolerance %.3g\n", o.gv, o.d1, o.d2, o.tol);
        }
        checked++;
        sharp += o.tol < 0.25 * fabs(o.gv);
        bad += e > 1;
        if (e > worst) worst = e, snprintf(worst_name, sizeof worst_name, "%s", t ? t->name : "input");
    }
    test_check(bad == 0 && 2 * sharp > checked,
               "%s: %d tensors%s along random directions (%d needed a second), %d over tolerance, %d sharp (tolerance "
               "< 25%% of the derivative), worst at %.2f of tolerance (%s)", what, checked - (dx != NULL),
               dx ? " + input" : "", second, bad, sharp, worst, worst_name);
    free(grads);
}

/* The whole check on a tiny classifier cfg (num_classes 3): cross-entropy of a train forward of 4
 * images of cfg->in_ch x h x w drawn from util_rng_split(99, 0), labels 0 2 1 2, weights from seed 7.
 * Shared by nn_resnet_test (every architecture and stem) and nn_winograd_test (through Winograd). */
typedef struct {
    nn_model *m;
    nn_ws *ws;
    const float *x;
    int n;
    const int32_t *lab;
} gc_ce_ctx;

static double gc_ce_loss(void *p)
{
    /* a train forward moves the running statistics; they do not affect a train forward's output */
    const gc_ce_ctx *c = p;
    const float *out = nn_forward(c->m, c->ws, c->x, c->n, 1);
    return nn_loss_ce(out, c->n, c->m->cfg.num_classes, c->lab, NULL, 0, NULL, NULL);
}

__attribute__((unused)) static void gc_check_ce(const char *what, const nn_config *cfg, int h, int w)
{
    const int n = 4;
    struct util_err err = {{0}};
    nn_model *m = nn_model_create(cfg, &err);
    nn_ws *ws = m ? nn_ws_create(m, n, h, w, &err) : NULL;
    if (!ws) {
        test_check(0, "%s: %s", what, err.msg);
        nn_model_free(m);
        return;
    }
    nn_model_init(m, 7);
    util_rng r = util_rng_split(99, 0);
    gc_bn_off_kinks(m, &r);
    const int nx = n * cfg->in_ch * h * w;
    float *x = malloc(sizeof(float) * nx), *dx = malloc(sizeof(float) * nx), dl[64];
    for (int i = 0; i < nx; i++) x[i] = (float)util_rng_normal(&r);
    int32_t lab[4] = {0, 2, 1, 2};
    nn_zero_grad(m);
    const float *out = nn_forward(m, ws, x, n, 1);
    const double l0 = nn_loss_ce(out, n, 3, lab, NULL, 0, dl, NULL);
    nn_backward(m, ws, dl, dx);
    gc_ce_ctx c = {m, ws, x, n, lab};
    gc_check(what, m, x, dx, nx, l0, gc_ce_loss, &c, &r);
    free(x);
    free(dx);
    nn_ws_free(ws);
    nn_model_free(m);
}

#endif
