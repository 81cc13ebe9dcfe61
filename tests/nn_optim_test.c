/* nn_optim_test: optimiser steps on known numbers (worked by hand in the comments), then three steps of
 * every optimiser on random numbers against a double-precision transcription of the update rules
 * (torch.optim's SGD/Adam/AdamW, SimCLR's LARS), parameter groups (BN/bias excluded from weight decay and
 * LARS adaptation, frozen backbone untouched), and the learning-rate schedules. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn.h"
#include "test.h"

static nn_model *tiny(void)
{
    nn_config c;
    nn_config_default(&c);
    c.width = 2, c.in_ch = 1, c.num_classes = 3;
    struct util_err err = {{0}};
    nn_model *m = nn_model_create(&c, &err);
    if (!m) {
        printf("FAIL: create: %s\n", err.msg);
        exit(1);
    }
    return m;
}

static void set_all(nn_model *m, float w, float g)
{
    for (int64_t i = 0; i < m->n_params; i++) m->params[i] = w, m->grads[i] = g;
}

static float at(nn_model *m, const char *name) { return m->params[nn_model_find(m, name)->offset]; }

static void known_numbers(void)
{
    nn_model *m = tiny();
    struct util_err err = {{0}};
    nn_optim_opts o;
    /* SGD, momentum 0.9, weight decay 0.1, lr 0.1, w = 1, g = 0.5:
     * step 1, weight: d = 0.5 + 0.1*1 = 0.6, buf = 0.6, w = 1 - 0.06 = 0.94
     *         BN (no decay): d = 0.5, buf = 0.5, w = 0.95
     * step 2, weight: d = 0.5 + 0.094 = 0.594, buf = 0.54 + 0.594 = 1.134, w = 0.94 - 0.1134 = 0.8266 */
    nn_optim_opts_default(&o, NN_OPT_SGD);
    o.weight_decay = 0.1;
    nn_optim *opt = nn_optim_create(m, &o, &err);
    set_all(m, 1, 0.5f);
    nn_optim_step(opt, 0.1);
    float w1 = at(m, "conv1.weight"), b1 = at(m, "bn1.weight"), f1 = at(m, "fc.bias");
    nn_optim_step(opt, 0.1);
    float w2 = at(m, "conv1.weight");
    test_check(fabsf(w1 - 0.94f) < 1e-6f && fabsf(b1 - 0.95f) < 1e-6f && fabsf(f1 - 0.95f) < 1e-6f &&
                   fabsf(w2 - 0.8266f) < 1e-6f,
               "SGD momentum 0.9 wd 0.1: weight 1 -> %.7g -> %.7g (0.94, 0.8266), BN and bias without decay -> %.7g, %.7g "
               "(0.95)", w1, w2, b1, f1);
    nn_optim_free(opt);
    /* Nesterov, same numbers: step 1 weight: d = 0.6 + 0.9*0.6 = 1.14, w = 1 - 0.114 = 0.886 */
    o.nesterov = 1;
    opt = nn_optim_create(m, &o, &err);
    set_all(m, 1, 0.5f);
    nn_optim_step(opt, 0.1);
    w1 = at(m, "conv1.weight");
    test_check(fabsf(w1 - 0.886f) < 1e-6f, "SGD Nesterov: weight 1 -> %.7g (0.886)", w1);
    nn_optim_free(opt);
    /* AdamW, lr 0.1, wd 0.01, w = 1, g = 0.5, step 1: w *= 1 - 0.001 -> 0.999; m = 0.05, v = 0.00025,
     * m^ = 0.5, v^ = 0.25, w -= 0.1 * 0.5 / (0.5 + 1e-8) -> 0.899 (BN: no decay -> 0.9)
     * step 2 (same g): w = 0.899 * 0.999 = 0.898101; m = 0.095, v = 0.00049975, m^ = 0.5, v^ = 0.25 -> 0.798101 */
    nn_optim_opts_default(&o, NN_OPT_ADAMW);
    o.weight_decay = 0.01;
    opt = nn_optim_create(m, &o, &err);
    set_all(m, 1, 0.5f);
    nn_optim_step(opt, 0.1);
    w1 = at(m, "conv1.weight"), b1 = at(m, "bn1.bias");
    nn_optim_step(opt, 0.1);
    w2 = at(m, "conv1.weight");
    test_check(fabsf(w1 - 0.899f) < 1e-6f && fabsf(b1 - 0.9f) < 1e-6f && fabsf(w2 - 0.798101f) < 2e-6f,
               "AdamW lr 0.1 wd 0.01: weight 1 -> %.7g -> %.7g (0.899, 0.798101), BN bias -> %.7g (0.9)", w1, w2, b1);
    nn_optim_free(opt);
    /* Adam with L2 0.01: g' = 0.5 + 0.01 = 0.51, step 1 moves by lr * sign = 0.1 exactly -> 0.9 */
    nn_optim_opts_default(&o, NN_OPT_ADAM);
    o.weight_decay = 0.01;
    opt = nn_optim_create(m, &o, &err);
    set_all(m, 1, 0.5f);
    nn_optim_step(opt, 0.1);
    w1 = at(m, "conv1.weight");
    test_check(fabsf(w1 - 0.9f) < 1e-6f, "Adam (L2 decay): weight 1 -> %.7g (0.9)", w1);
    nn_optim_free(opt);
    /* LARS, lr 0.1, momentum 0.9, eta 0.001, wd 1e-6, one tensor with all w = 1, g = 0.5 (n entries):
     * d = 0.500001, |w| = sqrt(n), |d| = 0.500001 sqrt(n), ratio = 0.001 / 0.500001,
     * v = 0.1 * ratio * d = 1e-4 exactly, w = 0.9999; BN excluded: no decay, ratio 1: v = 0.05, w = 0.95 */
    nn_optim_opts_default(&o, NN_OPT_LARS);
    o.weight_decay = 1e-6;
    opt = nn_optim_create(m, &o, &err);
    set_all(m, 1, 0.5f);
    nn_optim_step(opt, 0.1);
    w1 = at(m, "conv1.weight"), b1 = at(m, "bn1.weight");
    test_check(fabsf(w1 - 0.9999f) < 1e-7f && fabsf(b1 - 0.95f) < 1e-7f,
               "LARS: weight 1 -> %.8g (0.9999: trust ratio), BN 1 -> %.7g (0.95: excluded)", w1, b1);
    nn_optim_free(opt);
    /* decay_bn_bias = 1: BN adapted too -> 0.9999 (its d has the decay as well) */
    o.decay_bn_bias = 1;
    opt = nn_optim_create(m, &o, &err);
    set_all(m, 1, 0.5f);
    nn_optim_step(opt, 0.1);
    b1 = at(m, "bn1.weight");
    test_check(fabsf(b1 - 0.9999f) < 1e-7f, "LARS with BN/bias not excluded: BN 1 -> %.8g (0.9999)", b1);
    nn_optim_free(opt);
    nn_model_free(m);
}

/* Three steps of each optimiser on random numbers against the rules in double. */
static void against_rules(int kind, int nesterov)
{
    nn_model *m = tiny();
    struct util_err err = {{0}};
    nn_optim_opts o;
    nn_optim_opts_default(&o, kind);
    o.weight_decay = kind == NN_OPT_LARS ? 1e-4 : 0.05;
    o.nesterov = nesterov;
    nn_optim *opt = nn_optim_create(m, &o, &err);
    const int64_t n = m->n_params;
    double *w = malloc(sizeof(double) * n), *s1 = calloc(n, sizeof(double)), *s2 = calloc(n, sizeof(double));
    util_rng r = util_rng_split(kind * 2 + nesterov, 0);
    for (int64_t i = 0; i < n; i++) w[i] = m->params[i] = (float)util_rng_normal(&r);
    const double lrs[3] = {0.1, 0.05, 0.02};
    for (int step = 1; step <= 3; step++) {
        for (int64_t i = 0; i < n; i++) m->grads[i] = (float)util_rng_normal(&r);
        nn_optim_step(opt, lrs[step - 1]);
        const double lr = lrs[step - 1];
        for (int ti = 0; ti < m->n_tensors; ti++) {
            const nn_tensor *t = &m->tensors[ti];
            if (t->kind > NN_P_BN) continue;
            const int excluded = t->kind != NN_P_WEIGHT;
            const double wd = excluded ? 0 : o.weight_decay;
            double ww = 0, dd = 0;
            for (int64_t j = t->offset; j < t->offset + t->numel; j++) {
                const double d = m->grads[j] + wd * w[j];
                ww += w[j] * w[j], dd += d * d;
            }
            const double ratio = (!excluded && ww > 0 && dd > 0) ? o.trust * sqrt(ww) / sqrt(dd) : 1.0;
            for (int64_t j = t->offset; j < t->offset + t->numel; j++) {
                const double g = m->grads[j];
                if (kind == NN_OPT_SGD) {
                    const double d = g + wd * w[j];
                    s1[j] = 0.9 * s1[j] + d;
                    w[j] -= lr * (nesterov ? d + 0.9 * s1[j] : s1[j]);
                } else if (kind == NN_OPT_LARS) {
                    const double d = g + wd * w[j];
                    s1[j] = 0.9 * s1[j] + lr * ratio * d;
                    w[j] -= nesterov ? 0.9 * s1[j] + lr * ratio * d : s1[j];
                } else {
                    double d = g;
                    if (kind == NN_OPT_ADAMW) w[j] *= 1 - lr * wd;
                    else d += wd * w[j];
                    s1[j] = 0.9 * s1[j] + 0.1 * d;
                    s2[j] = 0.999 * s2[j] + 0.001 * d * d;
                    const double mh = s1[j] / (1 - pow(0.9, step)), vh = s2[j] / (1 - pow(0.999, step));
                    w[j] -= lr * mh / (sqrt(vh) + 1e-8);
                }
            }
        }
    }
    float *wf = malloc(sizeof(float) * n);
    for (int64_t i = 0; i < n; i++) wf[i] = (float)w[i];
    char what[128];
    snprintf(what, sizeof what, "%s%s: 3 steps on random numbers vs the update rule in double", nn_optim_name(kind),
             nesterov ? " (Nesterov)" : "");
    /* float32 state and arithmetic over 3 steps: a few ulps of the weights (|w| ~ 1) */
    test_close(what, m->params, wf, n, 2e-6, 1.0);
    free(wf), free(w), free(s1), free(s2);
    nn_optim_free(opt);
    nn_model_free(m);
}

static void groups_and_freeze(void)
{
    nn_model *m = tiny();
    struct util_err err = {{0}};
    nn_model_set_freeze(m, 1);
    nn_optim_opts o;
    nn_optim_opts_default(&o, NN_OPT_SGD);
    o.weight_decay = 0.5;
    nn_optim *opt = nn_optim_create(m, &o, &err);
    set_all(m, 1, 0.5f);
    nn_optim_step(opt, 0.1);
    const nn_tensor *fw = nn_model_find(m, "fc.weight");
    int backbone_same = 1, fc_moved = 1;
    for (int64_t i = 0; i < fw->offset; i++) backbone_same &= m->params[i] == 1.0f;
    for (int64_t i = fw->offset; i < m->n_params; i++) fc_moved &= m->params[i] != 1.0f;
    test_check(backbone_same && fc_moved, "frozen backbone: an SGD step with weight decay leaves it alone, fc moves");
    nn_optim_free(opt);
    nn_model_free(m);
}

static void schedules(void)
{
    nn_sched s = {.kind = NN_SCHED_STEP, .base_lr = 1e-4, .step_size = 30, .gamma = 0.1};
    int ok = fabs(nn_sched_lr(&s, 0) - 1e-4) < 1e-15 && fabs(nn_sched_lr(&s, 29) - 1e-4) < 1e-15 &&
             fabs(nn_sched_lr(&s, 30) - 1e-5) < 1e-15 && fabs(nn_sched_lr(&s, 69) - 1e-6) < 1e-15;
    test_check(ok, "step schedule: 1e-4, x0.1 every 30 (t=30: %g, t=69: %g)", nn_sched_lr(&s, 30), nn_sched_lr(&s, 69));
    s = (nn_sched){.kind = NN_SCHED_COSINE, .base_lr = 1.0, .warmup = 10, .total = 110};
    ok = fabs(nn_sched_lr(&s, 0) - 0.1) < 1e-12 && fabs(nn_sched_lr(&s, 9) - 1.0) < 1e-12 &&
         fabs(nn_sched_lr(&s, 10) - 1.0) < 1e-12 && fabs(nn_sched_lr(&s, 60) - 0.5) < 1e-12 &&
         fabs(nn_sched_lr(&s, 110)) < 1e-12 && fabs(nn_sched_lr(&s, 500)) < 1e-12;
    test_check(ok, "warm-up 10 then cosine to 0 at 110: t=0 %.3g, t=9 %.3g, t=60 %.3g, t=110 %.3g", nn_sched_lr(&s, 0),
               nn_sched_lr(&s, 9), nn_sched_lr(&s, 60), nn_sched_lr(&s, 110));
}

int main(void)
{
    nn_set_threads(1);
    known_numbers();
    for (int k = 0; k < 4; k++) {
        against_rules(k, 0);
        if (k == NN_OPT_SGD || k == NN_OPT_LARS) against_rules(k, 1);
    }
    groups_and_freeze();
    schedules();
    return test_exit();
}
