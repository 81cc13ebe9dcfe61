/* nn_model.c: model files as TSZ streams.  Attributes describe the network (model=resnet, arch, width,
 * in_channels, num_classes, stem, head_*), records hold torchvision-named tensors in state_dict order
 * (num_batches_tracked as an i64 scalar), then optional optimiser state under "optim.". */
#include <stdlib.h>
#include <string.h>

#include "nn.h"

int nn_model_attrs(const nn_model *m, tsz_attrs *a)
{
    const nn_config *c = &m->cfg;
    if (tsz_attrs_set(a, "model", "resnet") < 0 || tsz_attrs_set(a, "arch", c->arch) < 0 ||
        tsz_attrs_setf(a, "width", "%d", c->width) < 0 || tsz_attrs_setf(a, "in_channels", "%d", c->in_ch) < 0 ||
        tsz_attrs_setf(a, "num_classes", "%d", c->num_classes) < 0 ||
        tsz_attrs_set(a, "stem", c->stem == NN_STEM_SMALL ? "small" : "imagenet") < 0)
        return -1;
    if (c->dropout > 0 && tsz_attrs_setf(a, "dropout", "%.9g", c->dropout) < 0) return -1;
    if (c->head_layers) {
        if (tsz_attrs_setf(a, "head_layers", "%d", c->head_layers) < 0 ||
            tsz_attrs_setf(a, "head_hidden", "%d", c->head_hidden) < 0 ||
            tsz_attrs_setf(a, "head_out", "%d", c->head_out) < 0)
            return -1;
    }
    return 0;
}

int nn_config_from_attrs(nn_config *c, const tsz_attrs *a, struct util_err *err)
{
    nn_config_default(c);
    const char *s = tsz_attrs_get(a, "model");
    if (s && strcmp(s, "resnet") != 0) return util_err_set(err, "model '%s' is not a resnet", s);
    s = tsz_attrs_get(a, "arch");
    if (!s) return util_err_set(err, "no 'arch' attribute: not a model file");
    if (strlen(s) >= sizeof c->arch) return util_err_set(err, "unknown architecture '%.40s'", s);
    strcpy(c->arch, s);
    static const struct { const char *key; int need; long lo, hi; } keys[] = {
        {"width", 1, 1, 1024}, {"in_channels", 1, 1, 1024}, {"num_classes", 0, 0, 1000000},
        {"head_layers", 0, 0, 3}, {"head_hidden", 0, 0, 65536}, {"head_out", 0, 1, 65536}};
    int *dst[] = {&c->width, &c->in_ch, &c->num_classes, &c->head_layers, &c->head_hidden, &c->head_out};
    for (int i = 0; i < 6; i++) {
        long v;
        const char *t = tsz_attrs_get(a, keys[i].key);
        if (!t) {
            if (keys[i].need) return util_err_set(err, "no '%s' attribute", keys[i].key);
            continue;
        }
        if (util_parse_long(t, keys[i].lo, keys[i].hi, &v) < 0)
            return util_err_set(err, "attribute %s='%.40s' is not a number in %ld..%ld", keys[i].key, t, keys[i].lo,
                                keys[i].hi);
        *dst[i] = (int)v;
    }
    s = tsz_attrs_get(a, "stem");
    if (!s || !strcmp(s, "imagenet")) c->stem = NN_STEM_IMAGENET;
    else if (!strcmp(s, "small")) c->stem = NN_STEM_SMALL;
    else return util_err_set(err, "unknown stem '%.40s' (imagenet, small)", s);
    double d;
    if (tsz_attrs_get(a, "dropout")) {
        if (tsz_attrs_get_double(a, "dropout", &d) < 0 || !(d >= 0 && d < 1))
            return util_err_set(err, "attribute dropout is not a probability");
        c->dropout = (float)d;
    }
    return 0;
}

/* ---------------------------------------------------------------- writing ---- */

static const char *slot_name(const nn_optim *o, int slot)
{
    const int adam = o->opts.kind == NN_OPT_ADAM || o->opts.kind == NN_OPT_ADAMW;
    return slot == 0 ? (adam ? "exp_avg" : "momentum") : "exp_avg_sq";
}

static int n_slots(const nn_optim *o) { return o ? (o->s1 != NULL) + (o->s2 != NULL) : 0; }

int64_t nn_model_n_records(const nn_model *m, const nn_optim *opt)
{
    int64_t n = m->n_tensors;
    for (int i = 0; i < m->n_tensors; i++)
        if (m->tensors[i].kind <= NN_P_BN) n += n_slots(opt);
    return n;
}

int nn_model_write(const nn_model *m, const nn_optim *opt, tsz_writer *w, struct util_err *err)
{
    tsz_rec rec;
    for (int i = 0; i < m->n_tensors; i++) {
        const nn_tensor *t = &m->tensors[i];
        const void *data;
        if (t->kind == NN_B_COUNT) {
            tsz_rec_init(&rec, t->name, TSZ_I64, 0, t->shape);
            data = m->tracked + t->offset;
        } else {
            tsz_rec_init(&rec, t->name, TSZ_F32, t->ndim, t->shape);
            data = (t->kind == NN_B_STAT ? m->bufs : m->params) + t->offset;
        }
        if (tsz_write(w, &rec, data, err) < 0) return -1;
    }
    for (int s = 0; s < n_slots(opt); s++) {
        const float *state = s == 0 ? opt->s1 : opt->s2;
        for (int i = 0; i < m->n_tensors; i++) {
            const nn_tensor *t = &m->tensors[i];
            if (t->kind > NN_P_BN) continue;
            char name[TSZ_MAX_NAME + 1];
            snprintf(name, sizeof name, "optim.%s.%s", slot_name(opt, s), t->name);
            tsz_rec_init(&rec, name, TSZ_F32, t->ndim, t->shape);
            if (tsz_write(w, &rec, state + t->offset, err) < 0) return -1;
        }
    }
    return 0;
}

int nn_model_save(const nn_model *m, const nn_optim *opt, const char *path, const tsz_attrs *extra,
                  const tsz_wopts *wo, struct util_err *err)
{
    tsz_attrs a;
    tsz_attrs_init(&a);
    tsz_writer *w = NULL;
    int rc = -1;
    if ((extra && tsz_attrs_copy(&a, extra) < 0) || nn_model_attrs(m, &a) < 0 ||
        (opt && (tsz_attrs_set(&a, "optim", nn_optim_name(opt->opts.kind)) < 0 ||
                 tsz_attrs_setf(&a, "optim_steps", "%lld", (long long)opt->t) < 0))) {
        util_err_set(err, "%s: out of memory for attributes", path);
        goto done;
    }
    if (!(w = tsz_writer_open(path, &a, nn_model_n_records(m, opt), wo, err)) || nn_model_write(m, opt, w, err) < 0 ||
        tsz_writer_finish(w, err) < 0)
        goto done;
    rc = 0;
done:
    tsz_writer_close(w);
    tsz_attrs_free(&a);
    return rc;
}

/* ---------------------------------------------------------------- reading ---- */

static int same_shape(const tsz_rec *rec, const nn_tensor *t)
{
    if (t->kind == NN_B_COUNT) return tsz_rec_numel(rec) == 1;
    if (rec->ndim != t->ndim) return 0;
    for (int d = 0; d < t->ndim; d++)
        if (rec->shape[d] != t->shape[d]) return 0;
    return 1;
}

static int shape_err(struct util_err *err, const char *path, int64_t idx, const tsz_rec *rec, const nn_tensor *t)
{
    char got[128], want[128];
    tsz_rec want_rec;
    tsz_shape_str(rec, got, sizeof got);
    tsz_rec_init(&want_rec, t->name, TSZ_F32, t->ndim, t->shape);
    tsz_shape_str(&want_rec, want, sizeof want);
    return util_err_set(err, "%s: record %lld: %s has shape %s, the model needs %s", path, (long long)idx, t->name,
                        got, want);
}

nn_model *nn_model_load(const char *path, tsz_attrs *attrs, struct util_err *err)
{
    nn_model *m = NULL;
    char *seen = NULL;
    tsz_reader *r = tsz_reader_open(path, err);
    if (!r) return NULL;
    nn_config cfg;
    struct util_err e2 = {{0}};
    if (nn_config_from_attrs(&cfg, tsz_reader_attrs(r), &e2) < 0 || !(m = nn_model_create(&cfg, &e2))) {
        util_err_set(err, "%s: %s", path, e2.msg);
        goto fail;
    }
    if (!(seen = calloc(m->n_tensors, 1))) {
        util_err_set(err, "%s: out of memory", path);
        goto fail;
    }
    tsz_rec rec;
    int rc;
    while ((rc = tsz_next(r, &rec, err)) == 1) {
        const int64_t idx = tsz_reader_index(r) - 1;
        if (!strncmp(rec.name, "optim.", 6)) {
            if (tsz_skip_data(r, err) < 0) goto fail;
            continue;
        }
        const nn_tensor *t = nn_model_find(m, rec.name);
        if (!t) {
            util_err_set(err, "%s: record %lld: '%s' is not a tensor of this %s", path, (long long)idx, util_msgname(rec.name).s,
                         m->cfg.arch);
            goto fail;
        }
        const int ti = (int)(t - m->tensors);
        if (seen[ti]) {
            util_err_set(err, "%s: record %lld: '%s' appears twice", path, (long long)idx, util_msgname(rec.name).s);
            goto fail;
        }
        seen[ti] = 1;
        if (!same_shape(&rec, t)) {
            shape_err(err, path, idx, &rec, t);
            goto fail;
        }
        if (t->kind == NN_B_COUNT) {
            if (rec.dtype == TSZ_I64) {
                int64_t v;
                if (tsz_read_data(r, &v, sizeof v, err) < 0) goto fail;
                m->tracked[t->offset] = v;
            } else {
                float v;
                if (tsz_read_data_f32(r, &rec, &v, 1, err) < 0) goto fail;
                m->tracked[t->offset] = (int64_t)v;
            }
            continue;
        }
        float *dst = (t->kind == NN_B_STAT ? m->bufs : m->params) + t->offset;
        if (tsz_read_data_f32(r, &rec, dst, (size_t)t->numel, err) < 0) goto fail;
    }
    if (rc < 0) goto fail;
    for (int i = 0; i < m->n_tensors; i++)
        if (!seen[i] && m->tensors[i].kind != NN_B_COUNT) {
            util_err_set(err, "%s: tensor '%s' is missing", path, m->tensors[i].name);
            goto fail;
        }
    if (attrs && tsz_attrs_copy(attrs, tsz_reader_attrs(r)) < 0) {
        util_err_set(err, "%s: out of memory", path);
        goto fail;
    }
    free(seen);
    tsz_reader_close(r);
    return m;
fail:
    free(seen);
    nn_model_free(m);
    tsz_reader_close(r);
    return NULL;
}

int nn_optim_load(nn_optim *o, const char *path, struct util_err *err)
{
    const nn_model *m = o->m;
    tsz_reader *r = tsz_reader_open(path, err);
    if (!r) return -1;
    const tsz_attrs *a = tsz_reader_attrs(r);
    const char *kind = tsz_attrs_get(a, "optim");
    long steps;
    int rc = -1, n_loaded = 0, slots = n_slots(o);
    if (!kind || nn_optim_kind_from_name(kind) != o->opts.kind) {
        util_err_set(err, "%s: no %s optimiser state in this file", path, nn_optim_name(o->opts.kind));
        goto done;
    }
    if (tsz_attrs_get_long(a, "optim_steps", &steps) < 0 || steps < 0) {
        util_err_set(err, "%s: bad or missing optim_steps attribute", path);
        goto done;
    }
    tsz_rec rec;
    int st;
    while ((st = tsz_next(r, &rec, err)) == 1) {
        const int64_t idx = tsz_reader_index(r) - 1;
        float *state = NULL;
        const char *rest = NULL;
        for (int s = 0; s < slots && !state; s++) {
            char prefix[64];
            snprintf(prefix, sizeof prefix, "optim.%s.", slot_name(o, s));
            if (!strncmp(rec.name, prefix, strlen(prefix))) state = s == 0 ? o->s1 : o->s2, rest = rec.name + strlen(prefix);
        }
        const nn_tensor *t = state ? nn_model_find(m, rest) : NULL;
        if (!t || t->kind > NN_P_BN) {
            if (!strncmp(rec.name, "optim.", 6)) {
                util_err_set(err, "%s: record %lld: unexpected optimiser record '%s'", path, (long long)idx,
                             util_msgname(rec.name).s);
                goto done;
            }
            if (tsz_skip_data(r, err) < 0) goto done;
            continue;
        }
        if (!same_shape(&rec, t)) {
            shape_err(err, path, idx, &rec, t);
            goto done;
        }
        if (tsz_read_data_f32(r, &rec, state + t->offset, (size_t)t->numel, err) < 0) goto done;
        n_loaded++;
    }
    if (st < 0) goto done;
    int expect = 0;
    for (int i = 0; i < m->n_tensors; i++) expect += m->tensors[i].kind <= NN_P_BN;
    if (n_loaded != expect * slots) {
        util_err_set(err, "%s: optimiser state covers %d of %d tensors", path, n_loaded, expect * slots);
        goto done;
    }
    o->t = steps;
    rc = 0;
done:
    tsz_reader_close(r);
    return rc;
}
