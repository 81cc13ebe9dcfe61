/* train.c: supervised training with the nn engine (finetune) and the trainer plumbing simclr-train
 * shares: example readers with "#soft" companions, in-memory data sets, per-epoch orders that depend
 * only on (seed, epoch), the TSV log and its curves, progress lines, checkpoints and feature extraction.
 * Resuming must reproduce an uninterrupted run bit for bit, so everything random is derived from the
 * seed and counters that the checkpoint stores, never from state that a restart would lose. */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dist.h"
#include "metric.h"
#include "plot.h"
#include "train.h"
#include "tszutil.h"
#include "weights.h"

/* ---------------------------------------------------------------- reading examples ---- */

int train_reader_open(train_reader *tr, const char *path, struct util_err *err)
{
    memset(tr, 0, sizeof *tr);
    tr->r = tsz_reader_open(path, err);
    return tr->r ? 0 : -1;
}

void train_reader_close(train_reader *tr)
{
    tsz_reader_close(tr->r);
    tr->r = NULL;
}

const tsz_attrs *train_reader_attrs(const train_reader *tr) { return tsz_reader_attrs(tr->r); }
const char *train_reader_path(const train_reader *tr) { return tsz_reader_path(tr->r); }

int train_reader_peek(train_reader *tr, tsz_rec *rec, struct util_err *err)
{
    if (!tr->has_next) {
        if (tr->ended) return 0;
        int rc = tsz_next(tr->r, &tr->next, err);
        if (rc <= 0) {
            tr->ended = rc == 0;
            return rc;
        }
        tr->has_next = 1;
    }
    *rec = tr->next;
    return 1;
}

int train_rec_chw(const tsz_rec *rec, int *c, int *h, int *w)
{
    const int64_t lim = 1 << 20;
    int64_t s[3];
    if (rec->ndim == 3) s[0] = rec->shape[0], s[1] = rec->shape[1], s[2] = rec->shape[2];
    else if (rec->ndim == 2) s[0] = 1, s[1] = rec->shape[0], s[2] = rec->shape[1];
    else return -1;
    for (int i = 0; i < 3; i++)
        if (s[i] < 1 || s[i] > lim) return -1;
    *c = (int)s[0], *h = (int)s[1], *w = (int)s[2];
    return 0;
}

int train_reader_next(train_reader *tr, tsz_rec *rec, void *data, size_t cap, int keep_u8, float *soft, int k,
                      int *has_soft, struct util_err *err)
{
    const char *path = tsz_reader_path(tr->r);
    if (has_soft) *has_soft = 0;
    int rc = train_reader_peek(tr, rec, err);
    if (rc <= 0) return rc;
    tr->has_next = 0;
    const int64_t idx = tsz_reader_index(tr->r) - 1;
    const size_t nl = strlen(rec->name);
    if (nl >= 5 && !strcmp(rec->name + nl - 5, "#soft"))
        return util_err_set(err, "%s: record %lld: soft labels '%s' follow no example of that name", path,
                            (long long)idx, util_msgname(rec->name).s);
    const int64_t n = tsz_rec_numel(rec);
    if (n < 0) return util_err_set(err, "%s: record %lld: invalid shape", path, (long long)idx);
    if (rec->dtype == TSZ_U8 && keep_u8) {
        if ((uint64_t)n > cap)
            return util_err_set(err, "%s: record %lld: %lld values, more than the %zu expected", path,
                                (long long)idx, (long long)n, cap);
        if (tsz_read_data(tr->r, data, cap, err) < 0) return -1;
    } else {
        const int was_u8 = rec->dtype == TSZ_U8;
        if (tsz_read_data_f32(tr->r, rec, data, cap / sizeof(float), err) < 0) return -1;
        if (was_u8) {
            float *x = data;
            for (int64_t i = 0; i < n; i++) x[i] /= 255.0f;   /* as torchvision's ToTensor */
        }
        rec->dtype = TSZ_F32;
    }
    tr->n_examples++;
    /* A companion, if any, comes right after. */
    tsz_rec nx;
    rc = train_reader_peek(tr, &nx, err);
    if (rc < 0) return -1;
    if (rc == 1 && tszutil_is_companion(rec->name, &nx)) {
        tr->has_next = 0;
        const int64_t sidx = tsz_reader_index(tr->r) - 1;
        tr->n_soft++;
        if (!soft) return tsz_skip_data(tr->r, err) < 0 ? -1 : 1;
        if (nx.ndim != 1 || nx.shape[0] != k)
            return util_err_set(err, "%s: record %lld: soft labels '%s' have %lld values, there are %d classes", path,
                                (long long)sidx, nx.name, (long long)tsz_rec_numel(&nx), k);
        if (tsz_read_data_f32(tr->r, &nx, soft, (size_t)k, err) < 0) return -1;
        for (int j = 0; j < k; j++)
            if (!(soft[j] >= 0 && soft[j] <= 1))
                return util_err_set(err, "%s: record %lld: soft label %d is %g, not a probability", path,
                                    (long long)sidx, j, soft[j]);
        if (has_soft) *has_soft = 1;
    }
    return 1;
}

/* ---------------------------------------------------------------- data sets in memory ---- */

void train_data_free(train_data *d)
{
    free(d->path);
    free(d->data);
    free(d->labels);
    free(d->folds);
    free(d->soft);
    tsz_attrs_free(&d->attrs);
    memset(d, 0, sizeof *d);
}

/* Number of classes a stream declares: its "classes" names, else "num_classes"; 0 if neither. */
static int stream_classes(const tsz_attrs *a)
{
    char **names = NULL;
    int n = 0;
    if (tsz_attrs_get_classes(a, &names, &n) == 0 && n > 0) {
        tsz_free_classes(names, n);
        return n;
    }
    long v;
    if (tsz_attrs_get_long(a, "num_classes", &v) == 0 && v > 0 && v <= 1000000) return (int)v;
    return 0;
}

static int grow(void **p, int64_t n, size_t size, struct util_err *err)
{
    if (n < 0 || (size && (uint64_t)n > SIZE_MAX / size))
        return util_err_set(err, "out of memory (%lld x %zu bytes overflows)", (long long)n, size);
    const size_t bytes = (size_t)n * size;
    void *q = realloc(*p, bytes > 0 ? bytes : 1);
    if (!q) return util_err_set(err, "out of memory (%lld x %zu bytes)", (long long)n, size);
    *p = q;
    return 0;
}

int train_data_load(train_data *d, const char *path, const train_data_opts *o, struct util_err *err)
{
    train_reader tr;
    memset(d, 0, sizeof *d);
    if (train_reader_open(&tr, path, err) < 0) return -1;
    int rc = train_data_read(d, &tr, o, err);
    train_reader_close(&tr);
    return rc;
}

int train_data_read(train_data *d, train_reader *tr, const train_data_opts *o, struct util_err *err)
{
    const char *path = train_reader_path(tr);
    memset(d, 0, sizeof *d);
    tsz_attrs_init(&d->attrs);
    if (!(d->path = strdup(path))) return util_err_set(err, "out of memory");
    int rc = -1;
    int64_t cap = 0;
    const int64_t declared = tsz_reader_declared(tr->r);
    if (tsz_attrs_copy(&d->attrs, train_reader_attrs(tr)) < 0) {
        util_err_set(err, "%s: out of memory", path);
        goto done;
    }
    d->n_classes = o->n_classes > 0 ? o->n_classes : stream_classes(&d->attrs);
    int max_label = -1;
    for (;;) {
        tsz_rec rec;
        int r = train_reader_peek(tr, &rec, err);
        if (r < 0) goto done;
        if (r == 0) break;
        const long long idx = (long long)tsz_reader_index(tr->r) - 1;
        int c, h, w;
        if (train_rec_chw(&rec, &c, &h, &w) < 0) {
            char s[128];
            tsz_shape_str(&rec, s, sizeof s);
            util_err_set(err, "%s: record %lld: shape %s is not C x H x W", path, idx, s);
            goto done;
        }
        if (d->n == 0) {
            d->c = c, d->h = h, d->w = w, d->dim = (int64_t)c * h * w;
            d->u8 = rec.dtype == TSZ_U8;
        } else if (c != d->c || h != d->h || w != d->w || (rec.dtype == TSZ_U8) != d->u8) {
            char s[128];
            tsz_shape_str(&rec, s, sizeof s);
            util_err_set(err, "%s: record %lld: %s %s, the first record is %s %dx%dx%d", path, idx,
                         tsz_dtype_name(rec.dtype), s, d->u8 ? "u8" : "f32", d->c, d->h, d->w);
            goto done;
        }
        if (o->need_labels && rec.label < 0) {
            util_err_set(err, "%s: record %lld: '%s' has no label", path, idx, util_msgname(rec.name).s);
            goto done;
        }
        if (d->n_classes > 0 && rec.label >= d->n_classes) {
            util_err_set(err, "%s: record %lld: label %d, but there are %d classes", path, idx, (int)rec.label,
                         d->n_classes);
            goto done;
        }
        if (d->n == cap) {
            /* A declared count saves the copies, but a lying header must not make us allocate much
             * before the records are there: at most 1 GiB up front, then doubling. */
            const size_t es = d->u8 ? 1 : sizeof(float);
            const int64_t rec_bytes = d->dim * (int64_t)es, up_front = ((int64_t)1 << 30) / rec_bytes;
            int64_t nc = cap ? cap * 2 : declared > 0 ? declared : 16;
            if (!cap && nc > up_front) nc = up_front > 16 ? up_front : 16;
            if (grow(&d->data, nc * d->dim, es, err) < 0 || grow((void **)&d->labels, nc, sizeof(int32_t), err) < 0 ||
                grow((void **)&d->folds, nc, sizeof(int32_t), err) < 0 ||
                (d->soft && grow((void **)&d->soft, nc * d->n_classes, sizeof(float), err) < 0)) {
                util_err_set(err, "%s: record %lld: out of memory holding %lld examples", path, idx, (long long)nc);
                goto done;
            }
            cap = nc;
        }
        const size_t es = d->u8 ? 1 : sizeof(float);
        void *dst = (uint8_t *)d->data + (size_t)(d->n * d->dim) * es;
        float *soft = NULL;
        /* soft rows (when the class count is known): a companion's values, else the label one-hot;
         * dropped again after the last record if no example had a companion */
        if (o->keep_soft && d->n_classes > 0) {
            if (!d->soft) {
                if (grow((void **)&d->soft, cap * d->n_classes, sizeof(float), err) < 0) goto done;
            }
            soft = d->soft + d->n * d->n_classes;
        }
        int has_soft = 0;
        r = train_reader_next(tr, &rec, dst, (size_t)d->dim * es, d->u8, soft, d->n_classes, &has_soft, err);
        if (r < 0) goto done;
        if (soft && !has_soft) {
            memset(soft, 0, sizeof(float) * d->n_classes);
            if (rec.label >= 0) soft[rec.label] = 1.0f;
        }
        if (has_soft) d->n_with_soft++;
        d->labels[d->n] = rec.label;
        d->folds[d->n] = rec.fold;
        if (rec.label > max_label) max_label = rec.label;
        d->n++;
    }
    if (o->keep_soft && tr->n_soft > 0 && d->n_classes <= 0) {
        util_err_set(err, "%s: soft labels need the number of classes (a classes or num_classes attribute)", path);
        goto done;
    }
    if (d->n_with_soft == 0) {   /* no companion at all: plain labels */
        free(d->soft);
        d->soft = NULL;
    }
    if (d->n_classes <= 0) d->n_classes = max_label + 1;
    rc = 0;
done:
    if (rc < 0) train_data_free(d);
    return rc;
}

void train_epoch_order(int64_t *order, int64_t n, uint64_t seed, int64_t epoch, int shuffle)
{
    for (int64_t i = 0; i < n; i++) order[i] = i;
    if (shuffle) {
        util_rng r = util_rng_split(seed, (uint64_t)epoch);
        util_shuffle_i64(&r, order, n);
    }
}

void train_data_batch(const train_data *d, const int64_t *idx, int n, float *x, int32_t *labels, float *soft)
{
    for (int i = 0; i < n; i++) {
        const int64_t j = idx[i];
        if (x) {
            float *dst = x + (size_t)i * d->dim;
            if (d->u8) {
                const uint8_t *src = (const uint8_t *)d->data + (size_t)j * d->dim;
                for (int64_t t = 0; t < d->dim; t++) dst[t] = (float)src[t] / 255.0f;
            } else {
                memcpy(dst, (const float *)d->data + (size_t)j * d->dim, sizeof(float) * d->dim);
            }
        }
        if (labels) labels[i] = d->labels[j];
        if (soft && d->soft)
            memcpy(soft + (size_t)i * d->n_classes, d->soft + (size_t)j * d->n_classes, sizeof(float) * d->n_classes);
    }
}

/* ---------------------------------------------------------------- log and curves ---- */

int train_log_init(train_log *l, const char *const *cols, int n_cols, struct util_err *err)
{
    memset(l, 0, sizeof *l);
    if (!(l->cols = calloc(n_cols, sizeof *l->cols))) return util_err_set(err, "out of memory");
    l->n_cols = n_cols;
    for (int i = 0; i < n_cols; i++)
        if (!(l->cols[i] = strdup(cols[i]))) {
            train_log_free(l);
            return util_err_set(err, "out of memory");
        }
    return 0;
}

void train_log_free(train_log *l)
{
    for (int i = 0; i < l->n_cols && l->cols; i++) free(l->cols[i]);
    free(l->cols);
    free(l->v);
    memset(l, 0, sizeof *l);
}

int train_log_add(train_log *l, const double *row, struct util_err *err)
{
    if (l->n_rows == l->cap) {
        int nc = l->cap ? 2 * l->cap : 64;
        double *v = realloc(l->v, sizeof(double) * nc * l->n_cols);
        if (!v) return util_err_set(err, "out of memory for the log");
        l->v = v, l->cap = nc;
    }
    memcpy(l->v + (size_t)l->n_rows * l->n_cols, row, sizeof(double) * l->n_cols);
    l->n_rows++;
    return 0;
}

char *train_log_text(const train_log *l)
{
    size_t cap = 64 + (size_t)(l->n_rows + 1) * l->n_cols * 32, n = 0;
    for (int j = 0; j < l->n_cols; j++) cap += strlen(l->cols[j]);
    char *s = malloc(cap);
    if (!s) return NULL;
    for (int j = 0; j < l->n_cols; j++) n += snprintf(s + n, cap - n, "%s%s", j ? "\t" : "", l->cols[j]);
    n += snprintf(s + n, cap - n, "\n");
    for (int i = 0; i < l->n_rows; i++) {
        for (int j = 0; j < l->n_cols; j++) {
            const double v = l->v[(size_t)i * l->n_cols + j];
            n += isnan(v) ? snprintf(s + n, cap - n, "%snan", j ? "\t" : "")
                          : snprintf(s + n, cap - n, "%s%.6g", j ? "\t" : "", v);
        }
        n += snprintf(s + n, cap - n, "\n");
    }
    return s;
}

int train_log_parse(train_log *l, const char *text, struct util_err *err)
{
    l->n_rows = 0;
    const char *p = text;
    /* header must match */
    for (int j = 0; j < l->n_cols; j++) {
        size_t len = strlen(l->cols[j]);
        if (strncmp(p, l->cols[j], len) != 0 || p[len] != (j + 1 < l->n_cols ? '\t' : '\n'))
            return util_err_set(err, "the saved log has other columns");
        p += len + 1;
    }
    double *row = malloc(sizeof(double) * l->n_cols);
    if (!row) return util_err_set(err, "out of memory");
    while (*p) {
        for (int j = 0; j < l->n_cols; j++) {
            char *end;
            row[j] = strtod(p, &end);
            if (end == p || *end != (j + 1 < l->n_cols ? '\t' : '\n')) {
                free(row);
                return util_err_set(err, "the saved log is malformed at row %d", l->n_rows + 1);
            }
            p = end + 1;
        }
        if (train_log_add(l, row, err) < 0) {
            free(row);
            return -1;
        }
    }
    free(row);
    return 0;
}

int train_log_write(const train_log *l, const char *path, struct util_err *err)
{
    char *s = train_log_text(l);
    if (!s) return util_err_set(err, "%s: out of memory", path);
    int rc = util_write_file_atomic(path, s, strlen(s), err);
    free(s);
    return rc;
}

int train_log_curves(const train_log *l, const char *path, const char *title, const char *const *cols, int n,
                     struct util_err *err)
{
    const char *labels[8];
    const double *series[8];
    double *buf = malloc(sizeof(double) * 8 * (l->n_rows ? l->n_rows : 1));
    if (!buf) return util_err_set(err, "%s: out of memory", path);
    int ns = 0;
    for (int k = 0; k < n && ns < 8; k++) {
        int j = 0;
        while (j < l->n_cols && strcmp(l->cols[j], cols[k])) j++;
        if (j == l->n_cols) continue;
        double *s = buf + (size_t)ns * l->n_rows;
        int finite = 0;
        for (int i = 0; i < l->n_rows; i++) finite += isfinite(s[i] = l->v[(size_t)i * l->n_cols + j]) != 0;
        if (!finite) continue;
        labels[ns] = cols[k], series[ns] = s, ns++;
    }
    int rc = 0;
    if (ns > 0 && l->n_rows > 0) rc = plot_lines_png(path, title, "epoch", ns, labels, series, l->n_rows, err);
    free(buf);
    return rc;
}

/* ---------------------------------------------------------------- progress ---- */

void train_progress_start(train_progress *p, int64_t total_steps, int64_t done_steps, int verbose)
{
    memset(p, 0, sizeof *p);
    p->tty = isatty(2);
    p->enabled = p->tty || verbose;
    p->total_steps = total_steps, p->done0 = done_steps;
    p->t0 = p->t_last = util_now();
}

double train_progress_rate(const train_progress *p)
{
    const double el = util_now() - p->t0;
    return el > 0 ? (double)p->images / el : 0;
}

void train_progress_step(train_progress *p, int64_t done, int images, const char *text)
{
    p->images += images;
    if (!p->enabled || !p->tty) return;   /* a log (-v into a pipe) gets the epoch lines only */
    const double t = util_now();
    if (t - p->t_last < 0.2 && done < p->total_steps) return;
    p->t_last = t;
    const double el = t - p->t0, per = done > p->done0 ? el / (double)(done - p->done0) : 0;
    const double left = per * (double)(p->total_steps - done);
    fprintf(stderr, "\r\033[K%s: %s, %.1f images/s, ETA %d:%02d", util_progname(), text, train_progress_rate(p),
            (int)(left / 60), (int)fmod(left, 60));
    fflush(stderr);
    p->dirty = 1;
}

void train_progress_line(train_progress *p, const char *text)
{
    if (!p->enabled) return;
    fprintf(stderr, "%s%s: %s\n", p->dirty ? "\r\033[K" : "", util_progname(), text);
    fflush(stderr);
    p->dirty = 0;
}

void train_progress_end(train_progress *p)
{
    if (p->enabled && p->dirty) fputs("\r\033[K", stderr);
    p->dirty = 0;
}

/* ---------------------------------------------------------------- checks and checkpoints ---- */

int train_check_loss(double loss, const char *path, int64_t epoch, int64_t step, int64_t global_step,
                     double lr, const char *ckpt, int64_t ckpt_epoch, struct util_err *err)
{
    if (isfinite(loss)) return 0;
    char last[600];
    if (ckpt && *ckpt && ckpt_epoch > 0)
        snprintf(last, sizeof last, "the last good checkpoint is %s (epoch %lld)", ckpt, (long long)ckpt_epoch);
    else if (!ckpt || !*ckpt)
        snprintf(last, sizeof last, "no checkpoint is kept");
    else
        snprintf(last, sizeof last, "no checkpoint was written yet");
    return util_err_set(err, "%s: epoch %lld, step %lld (step %lld of the run): loss is %s at learning rate %g; "
                        "stopped, %s", path, (long long)epoch, (long long)step, (long long)global_step,
                        isnan(loss) ? "nan" : "infinite", lr, last);
}

int64_t train_first_nonfinite(const nn_model *m)
{
    for (int64_t i = 0; i < m->n_params; i++)
        if (!isfinite(m->params[i])) return i;
    for (int64_t i = 0; i < m->n_bufs; i++)
        if (!isfinite(m->bufs[i])) return m->n_params + i;
    return -1;
}

int train_ckpt_save(const char *path, const nn_model *m, const nn_optim *opt, const tsz_attrs *state,
                    const train_log *log, struct util_err *err)
{
    tsz_attrs a;
    tsz_attrs_init(&a);
    char *text = NULL;
    int rc = -1;
    if ((state && tsz_attrs_copy(&a, state) < 0) || tsz_attrs_set(&a, "checkpoint", "1") < 0 ||
        (log && (!(text = train_log_text(log)) || tsz_attrs_set(&a, "train_log", text) < 0))) {
        util_err_set(err, "%s: out of memory", path);
        goto done;
    }
    tsz_wopts wo;
    tsz_wopts_default(&wo);
    wo.level = 1;
    rc = nn_model_save(m, opt, path, &a, &wo, err);
done:
    free(text);
    tsz_attrs_free(&a);
    return rc;
}

/* First "key=value" token of a that differs from b's (space-separated lists), into buf. */
static void first_difference(const char *a, const char *b, char *buf, size_t cap)
{
    const char *pa = a, *pb = b;
    while (*pa || *pb) {
        size_t la = strcspn(pa, " "), lb = strcspn(pb, " ");
        if (la != lb || strncmp(pa, pb, la)) {
            snprintf(buf, cap, "it has %.*s, this run %.*s", (int)(la > 200 ? 200 : la), pa,
                     (int)(lb > 200 ? 200 : lb), pb);
            return;
        }
        pa += la + (pa[la] == ' ');
        pb += lb + (pb[lb] == ' ');
    }
    snprintf(buf, cap, "options differ");
}

static int same_config(const nn_config *a, const nn_config *b, char *what, size_t cap)
{
    if (strcmp(a->arch, b->arch)) snprintf(what, cap, "arch %s, not %s", a->arch, b->arch);
    else if (a->width != b->width) snprintf(what, cap, "width %d, not %d", a->width, b->width);
    else if (a->in_ch != b->in_ch) snprintf(what, cap, "%d input channels, not %d", a->in_ch, b->in_ch);
    else if (a->num_classes != b->num_classes) snprintf(what, cap, "%d classes, not %d", a->num_classes, b->num_classes);
    else if (a->stem != b->stem) snprintf(what, cap, "another stem");
    else if (a->dropout != b->dropout) snprintf(what, cap, "dropout %g, not %g", a->dropout, b->dropout);
    else if (a->head_layers != b->head_layers ||
             (a->head_layers && (a->head_hidden != b->head_hidden || a->head_out != b->head_out)))
        snprintf(what, cap, "another projection head");   /* without a head its sizes mean nothing */
    else return 1;
    return 0;
}

int train_ckpt_load(const char *path, nn_model *m, nn_optim *opt, tsz_attrs *state, train_log *log,
                    const char *fingerprint, struct util_err *err)
{
    tsz_attrs a;
    tsz_attrs_init(&a);
    int rc = -1;
    nn_model *c = nn_model_load(path, &a, err);
    if (!c) goto done;
    if (!tsz_attrs_get(&a, "checkpoint")) {
        util_err_set(err, "%s: not a checkpoint (no checkpoint attribute)", path);
        goto done;
    }
    char what[256];
    if (!same_config(&c->cfg, &m->cfg, what, sizeof what)) {
        util_err_set(err, "%s: the checkpoint's model has %s", path, what);
        goto done;
    }
    if (fingerprint) {
        const char *f = tsz_attrs_get(&a, "train_config");
        if (!f || strcmp(f, fingerprint)) {
            char diff[512];
            first_difference(f ? f : "", fingerprint, diff, sizeof diff);
            util_err_set(err, "%s: the checkpoint was made with other options (%s); remove it or run without --resume",
                         path, diff);
            goto done;
        }
    }
    memcpy(m->params, c->params, sizeof(float) * m->n_params);
    memcpy(m->bufs, c->bufs, sizeof(float) * m->n_bufs);
    memcpy(m->tracked, c->tracked, sizeof(int64_t) * m->n_tracked);
    if (opt && nn_optim_load(opt, path, err) < 0) goto done;
    if (log) {
        const char *t = tsz_attrs_get(&a, "train_log");
        struct util_err e2 = {{0}};
        if (!t || train_log_parse(log, t, &e2) < 0) {
            util_err_set(err, "%s: %s", path, t ? e2.msg : "no train_log attribute");
            goto done;
        }
    }
    if (state && tsz_attrs_copy(state, &a) < 0) {
        util_err_set(err, "%s: out of memory", path);
        goto done;
    }
    rc = 0;
done:
    nn_model_free(c);
    tsz_attrs_free(&a);
    return rc;
}

static nn_model *model_from_weights(const char *path, const weights_opts *wo, const char *arch, int flags,
                                    FILE *notes, tsz_attrs *attrs, struct util_err *err)
{
    nn_model *m = NULL;
    weights_arch a;
    weights_set *s = weights_load_resnet(path, wo, arch, flags, notes, &a, err);
    if (!s) return NULL;
    struct util_err e2 = {{0}};
    nn_config cfg;
    nn_config_default(&cfg);
    if (strlen(a.name) >= sizeof cfg.arch) {
        util_err_set(err, "%s: %s is not supported", path, a.name);
        goto done;
    }
    strcpy(cfg.arch, a.name);
    cfg.width = a.width, cfg.in_ch = a.in_channels, cfg.num_classes = a.num_classes;
    cfg.stem = a.stem_kernel == 3 ? NN_STEM_SMALL : NN_STEM_IMAGENET;
    if (!(m = nn_model_create(&cfg, &e2))) {
        util_err_set(err, "%s: %s", path, e2.msg);
        goto done;
    }
    for (int i = 0; i < m->n_tensors; i++) {
        const nn_tensor *t = &m->tensors[i];
        const weights_tensor *wt = weights_find(s, t->name);
        if (!wt) {
            if (t->kind == NN_B_COUNT) continue;
            util_err_set(err, "%s: tensor '%s' is missing", path, t->name);
            goto fail;
        }
        if (t->kind == NN_B_COUNT) {
            if (wt->dtype == TSZ_I64 && wt->numel == 1) m->tracked[t->offset] = *(const int64_t *)wt->data;
            continue;
        }
        if (wt->dtype != TSZ_F32 || wt->numel != t->numel) {
            util_err_set(err, "%s: tensor '%s' has %lld values, the model needs %lld", path, t->name,
                         (long long)wt->numel, (long long)t->numel);
            goto fail;
        }
        memcpy((t->kind == NN_B_STAT ? m->bufs : m->params) + t->offset, wt->data, sizeof(float) * t->numel);
    }
    if (attrs && (tsz_attrs_copy(attrs, &s->attrs) < 0 || nn_model_attrs(m, attrs) < 0)) {
        util_err_set(err, "%s: out of memory", path);
        goto fail;
    }
    goto done;
fail:
    nn_model_free(m);
    m = NULL;
done:
    weights_free(s);
    return m;
}

/* train_load_model with the weights(3) options of finetune/embed (--key, --strip-prefix, --arch of the
 * file, --non-strict) for safetensors and PyTorch files, and their notes printed on notes (NULL: not).
 * To be declared in train.h; the tools declare it until then. */
nn_model *train_load_model_ex(const char *path, const weights_opts *wo, const char *arch, int flags, FILE *notes,
                              tsz_attrs *attrs, struct util_err *err);

nn_model *train_load_model(const char *path, tsz_attrs *attrs, struct util_err *err)
{
    return train_load_model_ex(path, NULL, NULL, 0, NULL, attrs, err);
}

nn_model *train_load_model_ex(const char *path, const weights_opts *wo, const char *arch, int flags, FILE *notes,
                              tsz_attrs *attrs, struct util_err *err)
{
    if (strcmp(path, "-") != 0) {
        unsigned char head[16];
        FILE *f = fopen(path, "rb");
        if (!f) return util_err_sys(err, "%s", path), NULL;
        size_t n = fread(head, 1, sizeof head, f);
        fclose(f);
        enum weights_format fmt = weights_detect(head, n);
        if (fmt == WEIGHTS_SAFETENSORS || fmt == WEIGHTS_PTH || fmt == WEIGHTS_PTH_LEGACY)
            return model_from_weights(path, wo, arch, flags, notes, attrs, err);
    }
    return nn_model_load(path, attrs, err);
}

char *train_derived_path(const char *path, const char *suffix)
{
    size_t n = strlen(path);
    if (n > 4 && !strcmp(path + n - 4, ".tsz")) n -= 4;
    char *s = malloc(n + strlen(suffix) + 1);
    if (!s) return NULL;
    memcpy(s, path, n);
    strcpy(s + n, suffix);
    return s;
}

/* ---------------------------------------------------------------- the classifier loop ---- */

void train_opts_default(train_opts *o)
{
    memset(o, 0, sizeof *o);
    nn_optim_opts_default(&o->optim, NN_OPT_ADAM);
    o->optim.weight_decay = 1e-3;
    o->epochs = 70, o->batch = 32, o->lr = 1e-4;
    o->schedule = NN_SCHED_STEP, o->step_size = 30, o->gamma = 0.1;
    o->seed = 1, o->shuffle = 1;
}

int train_evaluate(nn_model *m, nn_ws *ws, const train_data *d, float *x, int32_t *labels, double *loss,
                   double *acc)
{
    const int B = nn_ws_batch(ws) < 256 ? nn_ws_batch(ws) : 256, k = m->cfg.num_classes;
    const int R = dist_rank(), N = dist_size();
    int64_t idx[256];
    double sum = 0;
    int64_t correct = 0;
    /* with several ranks, rank r evaluates batches r, r + N, ... and the sums are added up */
    for (int64_t s = (int64_t)R * B; s < d->n; s += (int64_t)N * B) {
        const int nb = (int)(d->n - s < B ? d->n - s : B);
        for (int i = 0; i < nb; i++) idx[i] = s + i;
        train_data_batch(d, idx, nb, x, labels, NULL);
        const float *out = nn_forward(m, ws, x, nb, 0);
        int corr = 0;
        sum += nn_loss_ce(out, nb, k, labels, NULL, 0, NULL, &corr) * nb;
        correct += corr;
    }
    if (N > 1) {
        double v[2] = {sum, (double)correct};
        dist_sum_f64(v, 2);
        sum = v[0], correct = (int64_t)v[1];
    }
    *loss = d->n ? sum / (double)d->n : NAN;
    *acc = d->n ? (double)correct / (double)d->n : NAN;
    return 0;
}

/* Read nb examples of the stream into the batch buffers (f32, labels, soft rows or one-hot rows). */
static int stream_batch(train_reader *tr, int nb, int c, int h, int w, int k, float *x, int32_t *labels,
                        float *soft, struct util_err *err)
{
    const int64_t dim = (int64_t)c * h * w;
    const char *path = train_reader_path(tr);
    for (int i = 0; i < nb; i++) {
        tsz_rec rec;
        int r = train_reader_peek(tr, &rec, err);
        if (r < 0) return -1;
        if (r == 0)
            return util_err_set(err, "%s: the stream ended after %lld examples, before its declared end", path,
                                (long long)tr->n_examples);
        const long long idx = (long long)tsz_reader_index(tr->r) - 1;
        int rc_, rh, rw;
        if (train_rec_chw(&rec, &rc_, &rh, &rw) < 0 || rc_ != c || rh != h || rw != w) {
            char s[128];
            tsz_shape_str(&rec, s, sizeof s);
            return util_err_set(err, "%s: record %lld: shape %s, the first record is %dx%dx%d", path, idx, s, c, h, w);
        }
        if (rec.label < 0 || rec.label >= k)
            return util_err_set(err, "%s: record %lld: label %d is not in 0..%d", path, idx, (int)rec.label, k - 1);
        float *srow = soft ? soft + (size_t)i * k : NULL;
        int has = 0;
        if (train_reader_next(tr, &rec, x + (size_t)i * dim, sizeof(float) * dim, 0, srow, k, &has, err) < 0)
            return -1;
        if (srow && !has) {
            memset(srow, 0, sizeof(float) * k);
            srow[rec.label] = 1.0f;
        }
        labels[i] = rec.label;
    }
    return 0;
}

static int save_model(const nn_model *m, const char *path, const tsz_attrs *base, const char *const *kv, int n_kv,
                      struct util_err *err)
{
    tsz_attrs a;
    tsz_attrs_init(&a);
    int rc = -1;
    if (base && tsz_attrs_copy(&a, base) < 0) goto oom;
    for (int i = 0; i < n_kv; i++)
        if (tsz_attrs_set(&a, kv[2 * i], kv[2 * i + 1]) < 0) goto oom;
    rc = nn_model_save(m, NULL, path, &a, NULL, err);
    tsz_attrs_free(&a);
    return rc;
oom:
    tsz_attrs_free(&a);
    return util_err_set(err, "%s: out of memory", path);
}

/* Attribute value of a double that reads back to the same bits. */
static void fmt_exact(char *buf, size_t cap, double v) { snprintf(buf, cap, "%.17g", v); }

/* ---------------------------------------------------------------- data parallel ---- */

int train_dist_start(const char *input, const char *output, struct util_err *err)
{
    if (dist_init(err) < 0) return -1;
    if (dist_size() > 1 && !strcmp(output, "-"))
        return util_err_set(err, "under mpirun rank 0 writes MODEL: give a file, not '-'");
    return strcmp(input, "-") ? 0 : dist_check_stdin(err);
}

void train_dist_fingerprint(char *fp, size_t cap, int sync_bn)
{
    const size_t len = strlen(fp);
    if ((dist_size() > 1 || sync_bn) && len < cap)
        snprintf(fp + len, cap - len, " ranks=%d sync_bn=%d", dist_size(), sync_bn);
}

int train_dist_init(train_dist *d, const nn_model *m, int sync_bn, struct util_err *err)
{
    memset(d, 0, sizeof *d);
    d->ranks = dist_size(), d->rank = dist_rank(), d->sync_bn = sync_bn;
    if (d->ranks < 2) return 0;
    if (m->n_params > INT_MAX) return util_err_set(err, "%lld parameters: more than MPI counts can take",
                                                   (long long)m->n_params);
    if (!(d->start = util_malloc((size_t)d->ranks + 1, sizeof(int64_t), err))) return -1;
    /* shard r starts at the first parameter tensor at or after r / N of the parameters */
    d->start[0] = 0, d->start[d->ranks] = m->n_params;
    for (int r = 1; r < d->ranks; r++) {
        const int64_t target = m->n_params * r / d->ranks;
        int64_t best = m->n_params;
        for (int i = 0; i < m->n_tensors; i++) {
            const nn_tensor *t = &m->tensors[i];
            if (t->kind <= NN_P_BN && t->offset >= target && t->offset < best) best = t->offset;
        }
        d->start[r] = best > d->start[r - 1] ? best : d->start[r - 1];
    }
    int64_t widest = 1;
    for (int r = 0; r < d->ranks; r++)
        if (d->start[r + 1] - d->start[r] > widest) widest = d->start[r + 1] - d->start[r];
    if (!(d->tmp = util_malloc((size_t)widest, sizeof(float), err))) return train_dist_free(d), -1;
    if (sync_bn) nn_set_bn_allsum(dist_sum_f64);
    return 0;
}

void train_dist_free(train_dist *d)
{
    if (d->ranks > 1 && d->sync_bn) nn_set_bn_allsum(NULL);
    free(d->start);
    free(d->tmp);
    d->start = NULL, d->tmp = NULL;
}

void train_dist_step(train_dist *d, nn_optim *opt, double lr)
{
    if (d->ranks < 2) {
        nn_optim_step(opt, lr);
        return;
    }
    nn_model *m = opt->m;
    dist_sum_slice_f32(m->grads, d->start, d->tmp);
    nn_optim_step_range(opt, lr, d->start[d->rank], d->start[d->rank + 1]);
    dist_gather_slices_f32(m->params, d->start);
    if (!d->sync_bn && m->n_bufs) dist_bcast_f32(m->bufs, m->n_bufs, 0);
}

void train_dist_gather_state(train_dist *d, nn_optim *opt)
{
    if (d->ranks < 2) return;
    if (opt->s1) dist_gather_slices_f32(opt->s1, d->start);
    if (opt->s2) dist_gather_slices_f32(opt->s2, d->start);
}

uint64_t train_model_hash(const nn_model *m)
{
    uint64_t h = 1469598103934665603ULL;   /* FNV-1a over the bytes of parameters and buffers */
    const unsigned char *p = (const unsigned char *)m->params;
    for (size_t i = 0; i < sizeof(float) * (size_t)m->n_params; i++) h = (h ^ p[i]) * 1099511628211ULL;
    p = (const unsigned char *)m->bufs;
    for (size_t i = 0; i < sizeof(float) * (size_t)m->n_bufs; i++) h = (h ^ p[i]) * 1099511628211ULL;
    return h;
}

int train_dist_check_start(const nn_model *m, int64_t position, const char *ckpt, struct util_err *err)
{
    if (dist_size() < 2 || dist_agree_u64(train_model_hash(m) ^ (uint64_t)position * 0x9e3779b97f4a7c15ULL))
        return 0;
    return util_err_set(err, "the %d ranks start from different models or positions: %s", dist_size(),
                        ckpt ? "every rank must see the same checkpoint (a file system they share), or none"
                             : "they must read the same initial model");
}

int train_dist_check_end(const nn_model *m, struct util_err *err)
{
    if (dist_size() < 2 || dist_agree_u64(train_model_hash(m))) return 0;
    return util_err_set(err, "the %d ranks' models differ after training (their gradient sums disagreed)",
                        dist_size());
}

int train_classifier(nn_model *m, train_data *train, train_reader *stream, int64_t stream_n, int n_classes,
                     int c, int h, int w, const train_data *val, const train_opts *o, struct util_err *err)
{
    const int B = o->batch, K = n_classes;
    const int64_t n = train ? train->n : stream_n, dim = (int64_t)c * h * w;
    const char *path = train ? train->path : train_reader_path(stream);
    const int use_soft = train ? train->soft != NULL : tsz_attrs_get(train_reader_attrs(stream), "soft_labels") != NULL;
    /* Data parallel: rank R of N trains on examples R, R + N, ... of every batch; rank 0 writes. */
    const int R = dist_rank(), N = dist_size(), writer = R == 0;
    if (B < N) return util_err_set(err, "batch %d is smaller than the %d ranks", B, N);
    /* A last batch of one example is dropped: batch norm cannot take the unbiased variance of one value;
     * with several ranks, so is one that leaves a rank without examples. */
    const int64_t full = n / B, rem = n % B, spe = full + (rem >= 2 && rem >= N);
    if (spe == 0) return util_err_set(err, "%s: %lld examples: training needs at least 2", path, (long long)n);
    if (K != m->cfg.num_classes || c != m->cfg.in_ch)
        return util_err_set(err, "%s: the model has %d classes and %d input channels, the data %d and %d", path,
                            m->cfg.num_classes, m->cfg.in_ch, K, c);

    nn_ws *ws = NULL;
    nn_optim *opt = NULL;
    float *x = NULL, *soft = NULL, *dlogits = NULL;
    int32_t *labels = NULL;
    int64_t *order = NULL, *lidx = NULL;
    train_dist dist = {0};
    train_log log = {0};
    tsz_attrs state;
    tsz_attrs_init(&state);
    train_progress prog = {0};
    int rc = -1;
    static const char *const cols[] = {"epoch", "train_loss", "train_acc", "val_loss", "val_acc",
                                       "lr", "images_per_s", "seconds"};
    const int B_local = (B + N - 1) / N;
    if (!(ws = nn_ws_create(m, B_local, h, w, err)) || !(opt = nn_optim_create(m, &o->optim, err)) ||
        train_log_init(&log, cols, 8, err) < 0 || !(lidx = util_malloc(B_local, sizeof(int64_t), err)) ||
        train_dist_init(&dist, m, o->sync_bn, err) < 0)
        goto done;
    /* dropout masks: a stream of their own, apart from the per-epoch orders util_rng_split(seed, epoch) */
    const uint64_t drop_seed = (o->seed ^ 0x5eed0f0d0d0e0e0dULL) + (uint64_t)R * 0x9e3779b97f4a7c15ULL;
    nn_ws_set_seed(ws, drop_seed, 0);
    if (!(x = util_malloc((size_t)B * dim, sizeof(float), err)) || !(labels = util_malloc(B, sizeof(int32_t), err)) ||
        !(dlogits = util_malloc((size_t)B * K, sizeof(float), err)) ||
        (use_soft && !(soft = util_malloc((size_t)B * K, sizeof(float), err))) ||
        (train && !(order = util_malloc((size_t)n, sizeof(int64_t), err))))
        goto done;
    nn_sched sched = {.kind = o->schedule, .base_lr = o->lr, .warmup = (int64_t)o->warmup * spe,
                      .total = (int64_t)o->epochs * spe, .step_size = (int64_t)o->step_size * spe,
                      .gamma = o->gamma, .final_lr = 0};

    int64_t start_epoch = 0, best_epoch = 0;
    double best_acc = -1, best_loss = 1e300;   /* finite: it goes to the checkpoint as text */
    if (o->resume && o->ckpt && access(o->ckpt, F_OK) == 0) {
        if (train_ckpt_load(o->ckpt, m, opt, &state, &log, o->fingerprint, err) < 0) goto done;
        long ep;
        const char *cs = tsz_attrs_get(&state, "ws_counter");
        if (tsz_attrs_get_long(&state, "epoch", &ep) < 0 || ep < 0 || ep > o->epochs || !cs ||
            tsz_attrs_get_double(&state, "best_acc", &best_acc) < 0 ||
            tsz_attrs_get_double(&state, "best_loss", &best_loss) < 0) {
            util_err_set(err, "%s: the checkpoint's trainer state is incomplete", o->ckpt);
            goto done;
        }
        long be = 0;
        tsz_attrs_get_long(&state, "best_epoch", &be);
        start_epoch = ep, best_epoch = be;
        nn_ws_set_seed(ws, drop_seed, strtoull(cs, NULL, 10));
        if (log.n_rows != ep) {
            util_err_set(err, "%s: the checkpoint's log has %d rows for %ld epochs", o->ckpt, log.n_rows, ep);
            goto done;
        }
        tsz_attrs_free(&state);
        tsz_attrs_init(&state);
    } else if (o->resume && o->ckpt && o->verbose && writer) {
        fprintf(stderr, "%s: no checkpoint %s: starting at epoch 1\n", util_progname(), o->ckpt);
    }
    if (train_dist_check_start(m, start_epoch, o->resume ? o->ckpt : NULL, err) < 0) goto done;
    if (!train) {
        /* the stream must start where the run stands: skip what a restarted producer did not */
        const int64_t at = start_epoch * n;
        if (o->stream_start > at) {
            util_err_set(err, "%s: the stream starts at example %lld, but the run is at example %lld (epoch %lld)",
                         path, (long long)o->stream_start, (long long)at, (long long)start_epoch);
            goto done;
        }
        for (int64_t i = o->stream_start; i < at; i++) {
            tsz_rec rec;
            int r = train_reader_next(stream, &rec, x, sizeof(float) * dim, 0, NULL, 0, NULL, err);
            if (r < 0) goto done;
            if (r == 0) {
                util_err_set(err, "%s: the stream ended at example %lld while skipping to %lld", path, (long long)i,
                             (long long)at);
                goto done;
            }
        }
    }

    train_progress_start(&prog, o->epochs * spe, start_epoch * spe, o->verbose);
    if (!writer) prog.enabled = 0;
    for (int64_t e = start_epoch; e < o->epochs; e++) {
        const double t_ep = util_now();
        const int64_t img0 = prog.images;
        if (train) train_epoch_order(order, n, o->seed, e, o->shuffle);
        double sum_loss = 0, lr = 0;
        int64_t correct = 0, seen = 0;
        for (int64_t s = 0; s < spe; s++) {
            const int nb = (int)(s < full ? B : rem), nl = (nb - R + N - 1) / N;   /* global, this rank's */
            if (train) {
                for (int j = 0; j < nl; j++) lidx[j] = order[s * B + R + (int64_t)j * N];
                train_data_batch(train, lidx, nl, x, labels, soft);
            } else {
                if (stream_batch(stream, nb, c, h, w, K, x, labels, soft, err) < 0) goto done;
                /* keep rows R, R + N, ...: row j comes from row R + jN >= j, never one written before */
                for (int j = 0; N > 1 && j < nl; j++) {
                    const int64_t i = R + (int64_t)j * N;
                    if (i == j) continue;
                    memcpy(x + j * dim, x + i * dim, sizeof(float) * dim);
                    labels[j] = labels[i];
                    if (soft) memcpy(soft + (int64_t)j * K, soft + i * K, sizeof(float) * K);
                }
            }
            nn_zero_grad(m);
            const float *out = nn_forward(m, ws, x, nl, 1);
            int corr = 0;
            double loss = nn_loss_ce(out, nl, K, labels, soft, o->smoothing, dlogits, &corr);
            if (N > 1) {
                /* the gradient of the mean over the global batch: this rank's mean weighted nl / nb */
                const float sc = (float)nl / (float)nb;
                for (int64_t i = 0; i < (int64_t)nl * K; i++) dlogits[i] *= sc;
                double v[2] = {loss * nl, corr};
                dist_sum_f64(v, 2);
                loss = v[0] / nb, corr = (int)v[1];
            }
            const int64_t g = e * spe + s;
            lr = nn_sched_lr(&sched, g);
            if (train_check_loss(loss, path, e + 1, s + 1, g + 1, lr, o->ckpt, e, err) < 0)
                goto done;
            nn_backward(m, ws, dlogits, NULL);
            train_dist_step(&dist, opt, lr);   /* the gradients of the global batch, one update */
            sum_loss += loss * nb, correct += corr, seen += nb;
            char text[160];
            snprintf(text, sizeof text, "epoch %lld/%d step %lld/%lld: loss %.4f acc %.3f", (long long)e + 1,
                     o->epochs, (long long)s + 1, (long long)spe, sum_loss / seen, (double)correct / seen);
            train_progress_step(&prog, g + 1, nb, text);
        }
        if (!train && spe == full && rem && stream_batch(stream, (int)rem, c, h, w, K, x, labels, soft, err) < 0)
            goto done;   /* the dropped last batch */
        const int64_t bad = train_first_nonfinite(m);
        if (bad >= 0) {
            util_err_set(err, "%s: epoch %lld: a parameter or running statistic became non-finite (value %lld); "
                         "stopped, %s", path, (long long)e + 1, (long long)bad,
                         e > 0 && o->ckpt ? "the last good checkpoint is kept" : "no checkpoint was written yet");
            goto done;
        }
        double vloss = NAN, vacc = NAN;
        if (val && train_evaluate(m, ws, val, x, labels, &vloss, &vacc) < 0) goto done;
        const double secs = util_now() - t_ep;
        const double row[8] = {(double)(e + 1), sum_loss / seen, (double)correct / seen, vloss, vacc, lr,
                               secs > 0 ? (double)(prog.images - img0) / secs : 0, secs};
        if (train_log_add(&log, row, err) < 0) goto done;
        char b1[40], b2[40], b3[32];
        if (val && o->best && writer && (vacc > best_acc || (vacc == best_acc && vloss < best_loss))) {
            best_acc = vacc, best_loss = vloss, best_epoch = e + 1;
            snprintf(b1, sizeof b1, "%lld", (long long)e + 1);
            snprintf(b2, sizeof b2, "%.6f", vacc);
            snprintf(b3, sizeof b3, "%.6f", vloss);
            const char *kv[] = {"epoch", b1, "val_acc", b2, "val_loss", b3, "best", "1"};
            if (save_model(m, o->best, o->model_attrs, kv, 4, err) < 0) goto done;
        }
        if (writer && o->log && train_log_write(&log, o->log, err) < 0) goto done;
        static const char *const curve_cols[] = {"train_loss", "val_loss", "train_acc", "val_acc"};
        char title[300];
        snprintf(title, sizeof title, "%s %s", util_progname(), o->output);
        if (writer && o->curves && train_log_curves(&log, o->curves, title, curve_cols, 4, err) < 0) goto done;
        if (o->ckpt) train_dist_gather_state(&dist, opt);
        if (writer && o->ckpt) {
            snprintf(b1, sizeof b1, "%llu", (unsigned long long)nn_ws_counter(ws));
            fmt_exact(b2, sizeof b2, best_acc);
            fmt_exact(b3, sizeof b3, best_loss);
            if (tsz_attrs_setf(&state, "epoch", "%lld", (long long)e + 1) < 0 ||
                tsz_attrs_set(&state, "ws_counter", b1) < 0 || tsz_attrs_set(&state, "best_acc", b2) < 0 ||
                tsz_attrs_set(&state, "best_loss", b3) < 0 ||
                tsz_attrs_setf(&state, "best_epoch", "%lld", (long long)best_epoch) < 0 ||
                tsz_attrs_set(&state, "train_config", o->fingerprint ? o->fingerprint : "") < 0) {
                util_err_set(err, "out of memory");
                goto done;
            }
            if (train_ckpt_save(o->ckpt, m, opt, &state, &log, err) < 0) goto done;
        }
        char text[256];
        int k = snprintf(text, sizeof text, "epoch %lld/%d: loss %.4f acc %.3f", (long long)e + 1, o->epochs,
                         row[1], row[2]);
        if (val) k += snprintf(text + k, sizeof text - k, ", val loss %.4f acc %.3f", vloss, vacc);
        snprintf(text + k, sizeof text - k, ", lr %.3g, %.1f images/s, %.2f s", lr, row[6], secs);
        train_progress_line(&prog, text);
    }
    train_progress_end(&prog);
    if (!train) {
        tsz_rec rec;
        int r = train_reader_peek(stream, &rec, err);
        if (r < 0) goto done;
        if (r == 1) {
            util_err_set(err, "%s: record %lld: more records than %d epochs of %lld examples", path,
                         (long long)tsz_reader_index(stream->r) - 1, o->epochs, (long long)n);
            goto done;
        }
    }
    {
        char b1[32], b2[32], b3[32];
        snprintf(b1, sizeof b1, "%d", o->epochs);
        const double *last = log.n_rows ? log.v + (size_t)(log.n_rows - 1) * log.n_cols : NULL;
        snprintf(b2, sizeof b2, "%.6f", last ? last[2] : NAN);
        snprintf(b3, sizeof b3, "%.6f", last ? last[4] : NAN);
        const char *kv[] = {"epoch", b1, "train_acc", b2, "val_acc", b3};
        if (train_dist_check_end(m, err) < 0) goto done;
        if (writer && save_model(m, o->output, o->model_attrs, kv, val ? 3 : 2, err) < 0) goto done;
    }
    if (writer && o->ckpt && !o->keep_ckpt && unlink(o->ckpt) < 0 && errno != ENOENT) {
        util_err_sys(err, "%s: cannot remove the checkpoint", o->ckpt);
        goto done;
    }
    rc = 0;
done:
    if (rc < 0) train_progress_end(&prog);
    nn_ws_free(ws);
    nn_optim_free(opt);
    free(x);
    free(soft);
    free(dlogits);
    free(labels);
    free(order);
    free(lidx);
    train_dist_free(&dist);
    train_log_free(&log);
    tsz_attrs_free(&state);
    return rc;
}

/* ---------------------------------------------------------------- embedding ---- */

/* What becomes of each batch of nb outputs y (nb, D) of the records recs. */
typedef int (*embed_sink)(void *ctx, const tsz_rec *recs, int nb, float *y, int D, struct util_err *err);

/* The record loop of embed: batches of records of one shape through m in eval mode, their outputs to
 * sink.  Returns the records done, or -1. */
static int64_t embed_run(nn_model *m, train_reader *in, const train_embed_opts *o, int verbose, embed_sink sink,
                         void *ctx, struct util_err *err)
{
    const char *path = train_reader_path(in);
    const char *layer = o->layer ? o->layer : "avgpool";
    const int B = o->batch, C = m->cfg.in_ch;
    int D;
    if (o->kind == TRAIN_EMBED_FEATURES) {
        if ((D = nn_layer_channels(m, layer)) < 0) return util_err_set(err, "unknown layer '%s'", layer);
    } else {
        if ((D = m->cfg.num_classes) <= 0)
            return util_err_set(err, "the model has no classifier (num_classes 0): no logits to write");
    }
    nn_ws *ws = NULL;
    tsz_rec *recs = NULL;
    float *x = NULL, *y = NULL;
    size_t x_cap = 0;
    int h = 0, w = 0, c_in = 0, nb = 0;
    int64_t done = 0, rc = -1;
    util_progress prog;
    util_progress_start(&prog, "records", tsz_reader_declared(in->r), verbose);
    if (!(recs = util_malloc(B, sizeof *recs, err)) || !(y = util_malloc((size_t)B * D, sizeof(float), err)))
        goto out;
    for (;;) {
        tsz_rec rec;
        int r = train_reader_peek(in, &rec, err);
        if (r < 0) goto out;
        int rcn = 0, rh = 0, rw = 0;
        if (r == 1) {
            const long long idx = (long long)tsz_reader_index(in->r) - 1;
            if (train_rec_chw(&rec, &rcn, &rh, &rw) < 0) {
                char s[128];
                tsz_shape_str(&rec, s, sizeof s);
                util_err_set(err, "%s: record %lld: shape %s is not C x H x W", path, idx, s);
                goto out;
            }
            if (rcn != C && !(rcn == 1 && C == 3)) {
                util_err_set(err, "%s: record %lld: %d channels, the model takes %d", path, idx, rcn, C);
                goto out;
            }
        }
        /* run the batch when it is full, at the end, or before a record of another shape */
        if (nb > 0 && (r == 0 || nb == B || rh != h || rw != w || rcn != c_in)) {
            const float *res = nn_forward(m, ws, x, nb, 0);
            (void)res;
            if (o->kind == TRAIN_EMBED_FEATURES) {
                if (nn_ws_pooled(m, ws, layer, y, (size_t)B * D, err) < 0) goto out;
            } else {
                memcpy(y, nn_ws_logits(ws), sizeof(float) * nb * D);
                if (o->kind == TRAIN_EMBED_PROBS)
                    for (int i = 0; i < nb; i++) {
                        float *row = y + (size_t)i * D;
                        float mx = row[0];
                        for (int j = 1; j < D; j++) mx = row[j] > mx ? row[j] : mx;
                        double s = 0;
                        for (int j = 0; j < D; j++) s += exp((double)row[j] - mx);
                        for (int j = 0; j < D; j++) row[j] = (float)(exp((double)row[j] - mx) / s);
                    }
            }
            if (sink(ctx, recs, nb, y, D, err) < 0) goto out;
            done += nb;
            util_progress_update(&prog, done, NULL);
            nb = 0;
        }
        if (r == 0) break;
        if (!ws || rh != h || rw != w) {
            nn_ws_free(ws);
            struct util_err e2 = {{0}};
            if (!(ws = nn_ws_create(m, B, rh, rw, &e2))) {
                util_err_set(err, "%s: record %lld: %s", path, (long long)tsz_reader_index(in->r) - 1, e2.msg);
                goto out;
            }
            h = rh, w = rw;
            const size_t need = (size_t)B * C * h * w;
            if (need > x_cap) {
                free(x);
                x_cap = 0;
                if (!(x = util_malloc(need, sizeof(float), err))) goto out;
                x_cap = need;
            }
        }
        c_in = rcn;
        const size_t hw = (size_t)h * w;
        float *slot = x + (size_t)nb * C * hw;
        if (train_reader_next(in, &recs[nb], slot, sizeof(float) * C * hw, 0, NULL, 0, NULL, err) < 0) goto out;
        if (rcn == 1 && C == 3) {   /* grey on an RGB model: the same as summing conv1 over channels */
            memcpy(slot + hw, slot, sizeof(float) * hw);
            memcpy(slot + 2 * hw, slot, sizeof(float) * hw);
        }
        nb++;
    }
    util_progress_end(&prog, done, NULL);
    rc = done;
out:
    nn_ws_free(ws);
    free(recs);
    free(x);
    free(y);
    return rc;
}

/* train_embed's sink: the records as they are, or (o->knn_ref) as k-NN class scores. */
typedef struct {
    tsz_writer *out;
    const char *path;  /* the input, for messages */
    const train_embed_opts *o;
    float *scores;     /* batch x knn_classes */
    int64_t done;      /* records written so far */
} embed_write_ctx;

static int embed_write(void *ctx, const tsz_rec *recs, int nb, float *y, int D, struct util_err *err)
{
    embed_write_ctx *c = ctx;
    const train_embed_opts *o = c->o;
    if (o->knn_ref) {
        metric_l2_normalise_rows(y, nb, D);
        for (int i = 0; o->knn_loo && i < nb; i++) {   /* record i must be reference row i */
            const int64_t row = c->done + i;
            float diff = 0;
            for (int j = 0; row < o->knn_n && j < D; j++)
                diff = fmaxf(diff, fabsf(y[(size_t)i * D + j] - o->knn_ref[row * D + j]));
            if (row >= o->knn_n || diff > 1e-4f || recs[i].label != o->knn_labels[row])
                return util_err_set(err, "%s: record %lld (%s) is not record %lld of the k-NN reference (a "
                                    "leave-one-out probe runs a set against itself)", c->path, (long long)row,
                                    util_msgname(recs[i].name).s, (long long)row);
        }
        if (metric_knn_scores(o->knn_ref, o->knn_labels, o->knn_n, y, nb, o->knn_loo ? c->done : -1, D,
                              o->knn_classes, o->knn_k, o->knn_t, c->scores, err) < 0)
            return -1;
        y = c->scores, D = o->knn_classes;
    }
    c->done += nb;
    const int64_t shape[1] = {D};
    for (int i = 0; i < nb; i++)
        if (tsz_write_f32(c->out, recs[i].name, recs[i].label, recs[i].fold, 1, shape, y + (size_t)i * D, err) < 0)
            return -1;
    return 0;
}

int train_embed(nn_model *m, train_reader *in, tsz_writer *out, const train_embed_opts *o, int verbose,
                struct util_err *err)
{
    embed_write_ctx c = {.out = out, .path = train_reader_path(in), .o = o};
    if (o->knn_ref && !(c.scores = util_malloc((size_t)o->batch * (size_t)o->knn_classes, sizeof(float), err)))
        return -1;
    const int64_t n = embed_run(m, in, o, verbose, embed_write, &c, err);
    free(c.scores);
    return n < 0 ? -1 : 0;
}

/* train_embed_collect's sink: normalised rows and labels appended to growing arrays. */
typedef struct {
    const char *path;
    float *f;
    int32_t *labels;
    int64_t n, cap;
} embed_collect_ctx;

static int embed_collect(void *ctx, const tsz_rec *recs, int nb, float *y, int D, struct util_err *err)
{
    embed_collect_ctx *c = ctx;
    if (c->n + nb > c->cap) {
        const int64_t cap = c->cap ? 2 * c->cap : 1024;
        float *f = realloc(c->f, sizeof(float) * (size_t)cap * D);
        if (f) c->f = f;
        int32_t *l = f ? realloc(c->labels, sizeof(int32_t) * (size_t)cap) : NULL;
        if (!l) return util_err_set(err, "out of memory");
        c->labels = l, c->cap = cap;
    }
    for (int i = 0; i < nb; i++) {
        if (recs[i].label < 0)
            return util_err_set(err, "%s: record %lld ('%s') has no label: a k-NN reference needs labels", c->path,
                                (long long)(c->n + i), recs[i].name);
        c->labels[c->n + i] = recs[i].label;
    }
    memcpy(c->f + c->n * D, y, sizeof(float) * (size_t)nb * D);
    metric_l2_normalise_rows(c->f + c->n * D, nb, D);
    c->n += nb;
    return 0;
}

int train_embed_collect(nn_model *m, train_reader *in, const train_embed_opts *o, int verbose, float **f,
                        int32_t **labels, int64_t *n, struct util_err *err)
{
    embed_collect_ctx c = {.path = train_reader_path(in)};
    train_embed_opts fo = *o;
    fo.kind = TRAIN_EMBED_FEATURES, fo.knn_ref = NULL;
    if (embed_run(m, in, &fo, verbose, embed_collect, &c, err) < 0) {
        free(c.f), free(c.labels);
        return -1;
    }
    *f = c.f, *labels = c.labels, *n = c.n;
    return 0;
}
