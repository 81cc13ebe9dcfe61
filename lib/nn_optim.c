/* nn_optim.c: SGD (momentum, Nesterov), Adam, AdamW as torch.optim computes them, LARS as SimCLR's
 * TensorFlow implementation, over parameter groups; and learning-rate schedules.  Updates are flat
 * loops over each tensor of the model's one parameter block. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "nn.h"
#include "nn_internal.h"

static const char *kind_names[] = {"sgd", "adam", "adamw", "lars"};

const char *nn_optim_name(int kind) { return kind >= 0 && kind < 4 ? kind_names[kind] : "?"; }

int nn_optim_kind_from_name(const char *s)
{
    for (int i = 0; i < 4; i++)
        if (!strcmp(s, kind_names[i])) return i;
    return -1;
}

void nn_optim_opts_default(nn_optim_opts *o, int kind)
{
    memset(o, 0, sizeof *o);
    o->kind = kind;
    o->momentum = 0.9;
    o->beta1 = 0.9;
    o->beta2 = 0.999;
    o->eps = 1e-8;
    o->trust = 0.001;
}

nn_optim *nn_optim_create(nn_model *m, const nn_optim_opts *opts, struct util_err *err)
{
    if (opts->kind < 0 || opts->kind > NN_OPT_LARS) return util_err_set(err, "unknown optimiser %d", opts->kind), NULL;
    nn_optim *o = calloc(1, sizeof *o);
    if (!o) return util_err_set(err, "out of memory"), NULL;
    o->opts = *opts;
    o->m = m;
    const int adam = opts->kind == NN_OPT_ADAM || opts->kind == NN_OPT_ADAMW;
    const int mom = adam || opts->kind == NN_OPT_LARS || opts->momentum != 0;
    o->s1 = mom ? calloc(m->n_params ? m->n_params : 1, sizeof(float)) : NULL;
    o->s2 = adam ? calloc(m->n_params ? m->n_params : 1, sizeof(float)) : NULL;
    o->group = calloc(m->n_tensors, sizeof(int));
    if ((mom && !o->s1) || (adam && !o->s2) || !o->group) {
        nn_optim_free(o);
        return util_err_set(err, "out of memory for the optimiser state"), NULL;
    }
    o->n_groups = 2;
    o->groups[0] = (nn_param_group){.weight_decay = opts->weight_decay, .lars_adapt = 1, .lr_scale = 1};
    o->groups[1] = (nn_param_group){.weight_decay = 0, .lars_adapt = 0, .lr_scale = 1};
    for (int i = 0; i < m->n_tensors; i++) {
        const nn_tensor *t = &m->tensors[i];
        if (t->kind == NN_B_STAT || t->kind == NN_B_COUNT) o->group[i] = -1;
        else if (m->freeze_backbone && t->part == NN_PART_BACKBONE) o->group[i] = -1;
        else if (t->kind == NN_P_WEIGHT || opts->decay_bn_bias) o->group[i] = 0;
        else o->group[i] = 1;
    }
    return o;
}

void nn_optim_free(nn_optim *o)
{
    if (!o) return;
    free(o->s1);
    free(o->s2);
    free(o->group);
    free(o);
}

static void step_sgd(const nn_optim *o, const nn_param_group *g, float *w, const float *dw, float *buf, int64_t n,
                     double lr)
{
    const float wd = (float)g->weight_decay, mu = (float)o->opts.momentum, a = (float)lr;
    const int nest = o->opts.nesterov;
#pragma omp parallel for schedule(static) if (n > NN_PAR_MIN)
    for (int64_t i = 0; i < n; i++) {
        float d = dw[i] + wd * w[i];
        if (buf) {
            /* torch starts the buffer at the first gradient: mu * 0 + d is the same thing */
            buf[i] = mu * buf[i] + d;
            d = nest ? d + mu * buf[i] : buf[i];
        }
        w[i] -= a * d;
    }
}

static void step_adam(const nn_optim *o, const nn_param_group *g, float *w, const float *dw, float *m1, float *m2,
                      int64_t n, double lr)
{
    const double b1 = o->opts.beta1, b2 = o->opts.beta2;
    const double bc1 = 1.0 - pow(b1, (double)o->t), bc2 = 1.0 - pow(b2, (double)o->t);
    const float step = (float)(lr / bc1), sbc2 = (float)sqrt(bc2), eps = (float)o->opts.eps;
    /* 1 - beta in double, then rounded, as torch does (1 - 0.999f is 1.3e-5 off 0.001) */
    const float fb1 = (float)b1, fb2 = (float)b2, omb1 = (float)(1.0 - b1), omb2 = (float)(1.0 - b2);
    const float wd = (float)g->weight_decay;
    const int decoupled = o->opts.kind == NN_OPT_ADAMW;
    const float shrink = (float)(1.0 - lr * g->weight_decay);
#pragma omp parallel for schedule(static) if (n > NN_PAR_MIN)
    for (int64_t i = 0; i < n; i++) {
        float d = dw[i];
        if (decoupled) w[i] *= shrink;
        else d += wd * w[i];
        m1[i] = fb1 * m1[i] + omb1 * d;
        m2[i] = fb2 * m2[i] + omb2 * d * d;
        w[i] -= step * m1[i] / (sqrtf(m2[i]) / sbc2 + eps);
    }
}

static void step_lars(const nn_optim *o, const nn_param_group *g, float *w, const float *dw, float *v, int64_t n,
                      double lr)
{
    const double wd = g->weight_decay;
    double ratio = 1.0;
    if (g->lars_adapt) {
        /* |g + wd w|^2 = |g|^2 + 2 wd g.w + wd^2 |w|^2 */
        const double ww = nn_sumsq(w, n), gg = nn_sumsq(dw, n), gw = nn_dot(dw, w, n);
        const double wn = sqrt(ww), gn = sqrt(fmax(gg + 2 * wd * gw + wd * wd * ww, 0.0));
        if (wn > 0 && gn > 0) ratio = o->opts.trust * wn / gn;
    }
    const float a = (float)(lr * ratio), mu = (float)o->opts.momentum, fwd = (float)wd;
    const int nest = o->opts.nesterov;
#pragma omp parallel for schedule(static) if (n > NN_PAR_MIN)
    for (int64_t i = 0; i < n; i++) {
        const float d = dw[i] + fwd * w[i];
        v[i] = mu * v[i] + a * d;
        w[i] -= nest ? mu * v[i] + a * d : v[i];
    }
}

void nn_optim_step(nn_optim *o, double lr) { nn_optim_step_range(o, lr, 0, o->m->n_params); }

void nn_optim_step_range(nn_optim *o, double lr, int64_t p0, int64_t p1)
{
    nn_model *m = o->m;
    o->t++;
    for (int i = 0; i < m->n_tensors; i++) {
        if (o->group[i] < 0) continue;
        const nn_tensor *t = &m->tensors[i];
        if (t->offset < p0 || t->offset >= p1) continue;
        const nn_param_group *g = &o->groups[o->group[i]];
        float *w = m->params + t->offset;
        const float *dw = m->grads + t->offset;
        const double a = lr * g->lr_scale;
        switch (o->opts.kind) {
        case NN_OPT_SGD: step_sgd(o, g, w, dw, o->s1 ? o->s1 + t->offset : NULL, t->numel, a); break;
        case NN_OPT_ADAM:
        case NN_OPT_ADAMW: step_adam(o, g, w, dw, o->s1 + t->offset, o->s2 + t->offset, t->numel, a); break;
        case NN_OPT_LARS: step_lars(o, g, w, dw, o->s1 + t->offset, t->numel, a); break;
        }
    }
}

/* ---------------------------------------------------------------- schedules ---- */

double nn_sched_lr(const nn_sched *s, int64_t t)
{
    if (t < s->warmup) return s->base_lr * (double)(t + 1) / (double)s->warmup;
    const int64_t u = t - s->warmup;
    switch (s->kind) {
    case NN_SCHED_STEP:
        return s->step_size > 0 ? s->base_lr * pow(s->gamma, (double)(u / s->step_size)) : s->base_lr;
    case NN_SCHED_COSINE: {
        const int64_t span = s->total - s->warmup;
        if (span <= 0) return s->base_lr;
        double p = (double)u / (double)span;
        if (p > 1) p = 1;
        return s->final_lr + (s->base_lr - s->final_lr) * 0.5 * (1.0 + cos(M_PI * p));
    }
    default:
        return s->base_lr;
    }
}
