/* simclr.c: SimCLR pre-training on the nn engine: the pair-stream reader thread and its queue of batches,
 * the training step (both views as one batch of 2B, NT-Xent, backward; the update apart), the weighted
 * k-NN monitor of Wu et al. (2018) and the whole run with its schedule, log, checkpoints and resume.
 * A resumed run must end with the bytes of an uninterrupted one: everything that reaches the model
 * comes from the stream, the seed and counters stored in the checkpoint, never from timing. */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "dist.h"
#include "metric.h"
#include "nn.h"
#include "plot.h"
#include "simclr.h"
#include "train.h"
#include "tsz.h"
#include "util.h"

/* ---------------------------------------------------------------- the pair stream ---- */

struct simclr_stream {
    tsz_reader *r;
    char *path;
    simclr_stream_info info;
    tsz_attrs attrs;
    tsz_rec first;             /* the first record's header, read by open; its data is still unread */
    int have_first;
    int64_t next_local;        /* stream index of the next record to consume */
    char prev_name[TSZ_MAX_NAME + 1];
    int64_t dim;               /* c * h * w */
    uint8_t *tmp;              /* one u8 record */
    /* the queue */
    int batch, depth;
    int64_t n_batches, from;
    float **slot;              /* depth buffers of 2 * batch * dim floats */
    pthread_t th;
    int started;
    pthread_mutex_t mu;
    pthread_cond_t cv_prod, cv_cons, cv_exit;
    int64_t produced, consumed;   /* batches made ready / released */
    int failed, done, stop, exited;
    struct util_err perr;      /* the reader's error when failed */
    double wait;
};

/* "record 13", or "record 13 (record 1037 of the run)" for a stream restarted with augment --start. */
static void rec_label(const simclr_stream *s, int64_t li, char *buf, size_t cap)
{
    if (s->info.start > 0)
        snprintf(buf, cap, "record %lld (record %lld of the run)", (long long)li, (long long)(s->info.start + li));
    else
        snprintf(buf, cap, "record %lld", (long long)li);
}

__attribute__((format(printf, 4, 5))) static int rec_err(const simclr_stream *s, struct util_err *err, int64_t li,
                                                         const char *fmt, ...)
{
    char what[700], lab[96];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    rec_label(s, li, lab, sizeof lab);
    return util_err_set(err, "%s: %s: %s", s->path, lab, what);
}

/* A reader error names the record when tsz did not (truncation is reported as a count). */
static int wrap_tsz_err(const simclr_stream *s, struct util_err *err, int64_t li, const struct util_err *e)
{
    const size_t pl = strlen(s->path);
    const char *rest = e->msg;
    if (!strncmp(rest, s->path, pl) && !strncmp(rest + pl, ": ", 2)) rest += pl + 2;
    if (!strncmp(rest, "record ", 7)) return util_err_set(err, "%s", e->msg);
    return rec_err(s, err, li, "%s", rest);
}

simclr_stream *simclr_stream_open(const char *path, struct util_err *err)
{
    simclr_stream *s = calloc(1, sizeof *s);
    if (!s) return util_err_set(err, "%s: out of memory", path), NULL;
    tsz_attrs_init(&s->attrs);
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv_prod, NULL);
    pthread_cond_init(&s->cv_cons, NULL);
    pthread_cond_init(&s->cv_exit, NULL);
    if (!(s->path = strdup(path))) {
        util_err_set(err, "%s: out of memory", path);
        goto fail;
    }
    if (!(s->r = tsz_reader_open(path, err))) goto fail;
    const tsz_attrs *a = tsz_reader_attrs(s->r);
    if (tsz_attrs_copy(&s->attrs, a) < 0) {
        util_err_set(err, "%s: out of memory", path);
        goto fail;
    }
    long v;
    if (tsz_attrs_get(a, "augment_views") && (tsz_attrs_get_long(a, "augment_views", &v) < 0 || v != 2)) {
        util_err_set(err, "%s: a stream of %s views per image: simclr-train needs pairs (augment --views 2)", path,
                     tsz_attrs_get(a, "augment_views"));
        goto fail;
    }
    if (tsz_attrs_get(a, "augment_start") && (tsz_attrs_get_long(a, "augment_start", &v) < 0 || v < 0)) {
        util_err_set(err, "%s: bad augment_start attribute", path);
        goto fail;
    }
    s->info.start = tsz_attrs_get(a, "augment_start") ? v : 0;
    const int64_t declared = tsz_reader_declared(s->r);
    if (declared >= 0) {
        s->info.total = s->info.start + declared;
    } else if (tsz_attrs_get_long(a, "records_total", &v) == 0 && v >= s->info.start) {
        s->info.total = v;
    } else {
        util_err_set(err, "%s: the stream declares no record count: the learning-rate schedule cannot be planned "
                     "(write it with augment, or to a file first)", path);
        goto fail;
    }
    if (tsz_attrs_get(a, "augment_epochs") &&
        (tsz_attrs_get_long(a, "augment_epochs", &v) < 0 || v < 1 || v > 1000000)) {
        util_err_set(err, "%s: bad augment_epochs attribute", path);
        goto fail;
    }
    s->info.epochs = tsz_attrs_get(a, "augment_epochs") ? (int)v : 0;
    int r = tsz_next(s->r, &s->first, err);
    if (r < 0) goto fail;
    if (r == 0) {
        util_err_set(err, "%s: the stream has no records", path);
        goto fail;
    }
    s->have_first = 1;
    if (train_rec_chw(&s->first, &s->info.c, &s->info.h, &s->info.w) < 0) {
        char sh[128];
        tsz_shape_str(&s->first, sh, sizeof sh);
        rec_err(s, err, 0, "shape %s is not C x H x W", sh);
        goto fail;
    }
    s->dim = (int64_t)s->info.c * s->info.h * s->info.w;
    return s;
fail:
    simclr_stream_close(s);
    return NULL;
}

const simclr_stream_info *simclr_stream_get_info(const simclr_stream *s) { return &s->info; }
const tsz_attrs *simclr_stream_attrs(const simclr_stream *s) { return &s->attrs; }
double simclr_stream_wait_seconds(const simclr_stream *s) { return s->wait; }

/* Consume the next record: 1 (into dst, or checked and skipped when dst is NULL; only skipped when
 * check is 0), 0 at the clean end, -1. */
static int read_view(simclr_stream *s, float *dst, int check, struct util_err *err)
{
    tsz_rec rec;
    struct util_err e2 = {{0}};
    const int64_t li = s->next_local;
    int r;
    if (s->have_first) rec = s->first, s->have_first = 0, r = 1;
    else r = tsz_next(s->r, &rec, &e2);
    if (r < 0) return wrap_tsz_err(s, err, li, &e2);
    if (r == 0) return 0;
    s->next_local++;
    if (!check) return tsz_skip_data(s->r, &e2) < 0 ? wrap_tsz_err(s, err, li, &e2) : 1;
    int c, h, w;
    if (train_rec_chw(&rec, &c, &h, &w) < 0 || c != s->info.c || h != s->info.h || w != s->info.w) {
        char sh[128];
        tsz_shape_str(&rec, sh, sizeof sh);
        return rec_err(s, err, li, "shape %s, the first record is %dx%dx%d", sh, s->info.c, s->info.h, s->info.w);
    }
    if ((s->info.start + li) % 2 == 0) {
        memcpy(s->prev_name, rec.name, sizeof s->prev_name);
    } else if (strcmp(s->prev_name, rec.name)) {
        return rec_err(s, err, li, "view '%.100s' does not pair with '%.100s' before it (a pair is two consecutive "
                       "records of the same name, augment --views 2)", util_msgname(rec.name).s,
                       util_msgname(s->prev_name).s);
    }
    if (!dst) return tsz_skip_data(s->r, &e2) < 0 ? wrap_tsz_err(s, err, li, &e2) : 1;
    if (rec.dtype == TSZ_U8) {
        if (tsz_read_data(s->r, s->tmp, (size_t)s->dim, &e2) < 0) return wrap_tsz_err(s, err, li, &e2);
        for (int64_t i = 0; i < s->dim; i++) dst[i] = (float)s->tmp[i] / 255.0f;   /* as torchvision's ToTensor */
    } else if (tsz_read_data_f32(s->r, &rec, dst, (size_t)s->dim, &e2) < 0) {
        return wrap_tsz_err(s, err, li, &e2);
    }
    return 1;
}

static int stopping(simclr_stream *s)
{
    pthread_mutex_lock(&s->mu);
    const int st = s->stop;
    pthread_mutex_unlock(&s->mu);
    return st;
}

static void *reader_main(void *arg)
{
    simclr_stream *s = arg;
    struct util_err e = {{0}};
    const int B = s->batch;
    const int64_t planned = s->info.total - s->info.start;
    int ok = 1;
    /* records a restarted run has already trained on */
    for (int64_t g = s->info.start; ok && g < s->from; g++) {
        int r = read_view(s, NULL, 0, &e);
        if (r == 0) rec_err(s, &e, s->next_local, "the stream ends here, before record %lld where the run resumes",
                            (long long)(s->from - s->info.start));
        if (r <= 0) ok = 0;
        if (ok && (g & 1023) == 0 && stopping(s)) goto out;
    }
    for (int64_t b = 0; ok && b < s->n_batches; b++) {
        pthread_mutex_lock(&s->mu);
        while (s->produced - s->consumed >= s->depth && !s->stop) pthread_cond_wait(&s->cv_prod, &s->mu);
        const int st = s->stop;
        pthread_mutex_unlock(&s->mu);
        if (st) goto out;
        float *x = s->slot[b % s->depth];
        for (int i = 0; ok && i < 2 * B; i++) {
            /* pair p's first view goes to row p, its second to row B + p */
            const int row = (i & 1) * B + i / 2;
            int r = read_view(s, x + (int64_t)row * s->dim, 1, &e);
            if (r == 0)
                rec_err(s, &e, s->next_local, "the stream ends after %lld records, %lld were planned%s",
                        (long long)s->next_local, (long long)planned, i & 1 ? " (in the middle of a pair)" : "");
            if (r <= 0) ok = 0;
        }
        if (!ok) break;
        if (stopping(s)) goto out;
        pthread_mutex_lock(&s->mu);
        s->produced++;
        pthread_cond_signal(&s->cv_cons);
        pthread_mutex_unlock(&s->mu);
    }
    /* the rest: pairs too few for a batch, then the end marker */
    while (ok) {
        int r = read_view(s, NULL, 1, &e);
        if (r < 0) ok = 0;
        if (r == 0) {
            if ((s->info.start + s->next_local) % 2)
                ok = 0, rec_err(s, &e, s->next_local - 1, "the stream ends after this record, in the middle of a pair");
            else if (s->next_local < planned)
                ok = 0, rec_err(s, &e, s->next_local, "the stream ends after %lld records, %lld were planned",
                                (long long)s->next_local, (long long)planned);
            break;
        }
        if ((s->next_local & 1023) == 0 && stopping(s)) goto out;
    }
out:
    pthread_mutex_lock(&s->mu);
    if (!ok && !s->stop) s->failed = 1, s->perr = e;
    else if (!s->stop) s->done = 1;
    s->exited = 1;
    pthread_cond_broadcast(&s->cv_cons);
    pthread_cond_broadcast(&s->cv_exit);
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

int simclr_stream_start(simclr_stream *s, int64_t from, int batch, int64_t n_batches, int depth,
                        struct util_err *err)
{
    if (s->started) return util_err_set(err, "%s: the reader is already running", s->path);
    if (from < s->info.start || (from - s->info.start) % 2 || s->info.start % 2)
        return util_err_set(err, "%s: the stream starts at run record %lld, the run needs record %lld", s->path,
                            (long long)s->info.start, (long long)from);
    if (batch < 1 || depth < 2 || n_batches < 0) return util_err_set(err, "%s: bad queue size", s->path);
    s->batch = batch, s->depth = depth, s->n_batches = n_batches, s->from = from;
    if (!(s->tmp = util_malloc((size_t)s->dim, 1, err))) return -1;
    if (!(s->slot = util_calloc((size_t)depth, sizeof *s->slot, err))) return -1;
    for (int i = 0; i < depth; i++)
        if (!(s->slot[i] = util_malloc((size_t)2 * batch * s->dim, sizeof(float), err))) return -1;
    int e = pthread_create(&s->th, NULL, reader_main, s);
    if (e) {
        errno = e;
        return util_err_sys(err, "%s: cannot start the reader thread", s->path);
    }
    s->started = 1;
    return 0;
}

const float *simclr_stream_next(simclr_stream *s, struct util_err *err)
{
    const double t0 = util_now();
    pthread_mutex_lock(&s->mu);
    while (s->produced <= s->consumed && !s->failed && !s->done) pthread_cond_wait(&s->cv_cons, &s->mu);
    const float *x = NULL;
    if (s->produced > s->consumed) x = s->slot[s->consumed % s->depth];
    else if (s->failed) util_err_set(err, "%s", s->perr.msg);
    else util_err_set(err, "%s: no more batches", s->path);
    pthread_mutex_unlock(&s->mu);
    s->wait += util_now() - t0;
    return x;
}

void simclr_stream_release(simclr_stream *s)
{
    pthread_mutex_lock(&s->mu);
    s->consumed++;
    pthread_cond_signal(&s->cv_prod);
    pthread_mutex_unlock(&s->mu);
}

int simclr_stream_finish(simclr_stream *s, struct util_err *err)
{
    if (!s->started) return 0;
    pthread_join(s->th, NULL);
    s->started = 0;
    if (s->failed) return util_err_set(err, "%s", s->perr.msg);
    return 0;
}

void simclr_stream_close(simclr_stream *s)
{
    if (!s) return;
    if (s->started) {
        pthread_mutex_lock(&s->mu);
        s->stop = 1;
        pthread_cond_broadcast(&s->cv_prod);
        struct timespec dl;
        clock_gettime(CLOCK_REALTIME, &dl);
        dl.tv_sec += 1;
        while (!s->exited)
            if (pthread_cond_timedwait(&s->cv_exit, &s->mu, &dl) == ETIMEDOUT) break;
        const int exited = s->exited;
        pthread_mutex_unlock(&s->mu);
        if (!exited) {
            /* blocked in read() on a producer that sends nothing: it still uses s, so s stays; the
             * process exits next and takes both along */
            pthread_detach(s->th);
            return;
        }
        pthread_join(s->th, NULL);
    }
    tsz_reader_close(s->r);
    if (s->slot)
        for (int i = 0; i < s->depth; i++) free(s->slot[i]);
    free(s->slot);
    free(s->tmp);
    free(s->path);
    tsz_attrs_free(&s->attrs);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv_prod);
    pthread_cond_destroy(&s->cv_cons);
    pthread_cond_destroy(&s->cv_exit);
    free(s);
}

/* ---------------------------------------------------------------- the training step ---- */

simclr_trainer *simclr_trainer_create(nn_model *m, const nn_optim_opts *oo, int batch, int chunk, int h, int w,
                                      float temperature, struct util_err *err)
{
    if (!m->n_head) return util_err_set(err, "the model has no projection head"), NULL;
    if (batch < 2) return util_err_set(err, "batch %d: NT-Xent needs at least 2 pairs", batch), NULL;
    if (!(temperature > 0)) return util_err_set(err, "temperature %g is not positive", temperature), NULL;
    const int n2 = 2 * batch, d = m->out_dim, N = dist_size();
    if (chunk == 0) chunk = n2;
    if (chunk < 2 || chunk > n2 || n2 % chunk)
        return util_err_set(err, "chunk %d: must be at least 2 and divide the %d views of a batch", chunk, n2), NULL;
    if (chunk < n2 && m->cfg.dropout > 0 && m->fc.out)
        return util_err_set(err, "chunk %d: a chunked step cannot repeat dropout masks", chunk), NULL;
    /* several ranks: each takes batch / N pairs and chunk / N views per pass */
    if (batch % N || chunk % N || chunk / N < 2)
        return util_err_set(err, "batch %d and chunk %d: with %d ranks both must be multiples of %d (and chunk at "
                            "least %d)", batch, chunk, N, N, 2 * N), NULL;
    simclr_trainer *t = calloc(1, sizeof *t);
    if (!t) return util_err_set(err, "out of memory"), NULL;
    t->m = m, t->batch = batch, t->chunk = chunk, t->h = h, t->w = w, t->temperature = temperature;
    t->rank = dist_rank(), t->ranks = N, t->local = batch / N, t->local_chunk = chunk / N;
    const int n2l = 2 * t->local;
    if (!(t->ws = nn_ws_create(m, t->local_chunk, h, w, err)) || !(t->opt = nn_optim_create(m, oo, err)) ||
        !(t->dz = util_malloc((size_t)n2 * d, sizeof(float), err)) ||
        !(t->work = util_malloc(nn_ntxent_work_floats(n2, d), sizeof(float), err)))
        goto fail;
    if (N > 1 && (!(t->z_all = util_malloc((size_t)n2 * d, sizeof(float), err)) ||
                  !(t->z_glob = util_malloc((size_t)n2 * d, sizeof(float), err)) ||
                  !(t->dz_local = util_malloc((size_t)n2l * d, sizeof(float), err))))
        goto fail;
    if ((chunk < n2 || N > 1) && !(t->z = util_malloc((size_t)n2l * d, sizeof(float), err)))
        goto fail;
    if (chunk < n2 && (!(t->bufs_keep = util_malloc((size_t)(m->n_bufs ? m->n_bufs : 1), sizeof(float), err)) ||
                       !(t->tracked_keep = util_malloc((size_t)(m->n_tracked ? m->n_tracked : 1), sizeof(int64_t),
                                                       err))))
        goto fail;
    return t;
fail:
    simclr_trainer_free(t);
    return NULL;
}

void simclr_trainer_free(simclr_trainer *t)
{
    if (!t) return;
    nn_ws_free(t->ws);
    nn_optim_free(t->opt);
    free(t->z);
    free(t->z_all);
    free(t->z_glob);
    free(t->dz_local);
    free(t->dz);
    free(t->work);
    free(t->bufs_keep);
    free(t->tracked_keep);
    free(t);
}

int64_t simclr_global_view(const simclr_trainer *t, int r, int j)
{
    const int64_t B = t->batch, N = t->ranks, bl = t->local;
    return j < bl ? r + j * N : B + r + (j - bl) * N;
}

double simclr_forward_backward(simclr_trainer *t, const float *x, int *n_correct)
{
    nn_model *m = t->m;
    const int n2 = 2 * t->batch, n2l = 2 * t->local, d = m->out_dim, c = t->local_chunk, k = n2l / c;
    const size_t view = (size_t)m->cfg.in_ch * t->h * t->w;
    nn_zero_grad(m);
    /* Pass 1: the projections of every chunk (this pass's running-statistics updates are the step's);
     * one chunk's are used where the network left them. */
    const float *z = t->z;
    for (int i = 0; i < k; i++) {
        const float *zi = nn_forward(m, t->ws, x + (size_t)i * c * view, c, 1);
        if (k == 1 && t->ranks == 1) z = zi;
        else memcpy(t->z + (size_t)i * c * d, zi, sizeof(float) * c * d);
    }
    float *dz = t->dz;
    if (t->ranks > 1) {
        /* every rank's projections in the single-process row order: the loss over the global batch,
         * with every other view of it a negative, computed alike on every rank */
        dist_gather_f32(t->z, (int64_t)n2l * d, t->z_all);
        for (int r = 0; r < t->ranks; r++)
            for (int j = 0; j < n2l; j++)
                memcpy(t->z_glob + simclr_global_view(t, r, j) * d, t->z_all + ((size_t)r * n2l + j) * d,
                       sizeof(float) * d);
        z = t->z_glob;
    }
    const double loss = nn_loss_ntxent(z, n2, d, t->temperature, t->dz, n_correct, t->work);
    if (!isfinite(loss)) return loss;   /* a non-finite step is not taken anyway */
    if (t->ranks > 1) {   /* this rank back-propagates the gradient of its own views */
        for (int j = 0; j < n2l; j++)
            memcpy(t->dz_local + (size_t)j * d, t->dz + simclr_global_view(t, t->rank, j) * d, sizeof(float) * d);
        dz = t->dz_local;
    }
    if (k > 1) {
        memcpy(t->bufs_keep, m->bufs, sizeof(float) * m->n_bufs);
        memcpy(t->tracked_keep, m->tracked, sizeof(int64_t) * m->n_tracked);
    }
    /* Pass 2: the last chunk's activations are still in the workspace; the others are recomputed,
     * bit-identical to pass 1 (train-mode BN uses batch statistics, the parameters have not moved). */
    nn_backward(m, t->ws, dz + (size_t)(k - 1) * c * d, NULL);
    for (int i = 0; i < k - 1; i++) {
        nn_forward(m, t->ws, x + (size_t)i * c * view, c, 1);
        nn_backward(m, t->ws, dz + (size_t)i * c * d, NULL);
    }
    if (k > 1) {
        memcpy(m->bufs, t->bufs_keep, sizeof(float) * m->n_bufs);
        memcpy(m->tracked, t->tracked_keep, sizeof(int64_t) * m->n_tracked);
    }
    return loss;
}

void simclr_update(simclr_trainer *t, double lr) { nn_optim_step(t->opt, lr); }

/* ---------------------------------------------------------------- k-NN monitor ---- */

double simclr_knn_accuracy(const float *ftrain, const int32_t *ytrain, int64_t n_train, const float *fval,
                           const int32_t *yval, int64_t n_val, int loo, int d, int n_classes, int k,
                           double t)
{
    if (n_val <= 0 || n_train <= 0) return NAN;
    struct util_err err = {{0}};
    float *scores = util_malloc((size_t)n_val * (size_t)n_classes, sizeof(float), &err);
    if (!scores || metric_knn_scores(ftrain, ytrain, n_train, fval, n_val, loo ? 0 : -1, d, n_classes, k, t, scores, &err) < 0) {
        free(scores);
        return NAN;
    }
    int64_t correct = 0;
    for (int64_t i = 0; i < n_val; i++) correct += metric_argmax(scores + i * n_classes, n_classes) == yval[i];
    free(scores);
    return (double)correct / (double)n_val;
}

int simclr_knn_open(simclr_knn *k, const nn_model *m, const char *train_path, const char *val_path,
                    struct util_err *err)
{
    memset(k, 0, sizeof *k);
    train_data_opts dop = {.need_labels = 1, .n_classes = 0, .keep_soft = 0};
    if (train_data_load(&k->train, train_path, &dop, err) < 0 ||
        (val_path && train_data_load(&k->val, val_path, &dop, err) < 0))
        goto fail;
    const train_data *a = &k->train, *b = val_path ? &k->val : &k->train;
    if (!val_path) val_path = train_path;
    if (a->n == 0 || b->n == 0) {
        util_err_set(err, "%s: no records", a->n == 0 ? train_path : val_path);
        goto fail;
    }
    if (a->c != b->c || a->h != b->h || a->w != b->w) {
        util_err_set(err, "%s: records are %dx%dx%d, those of %s %dx%dx%d", val_path, b->c, b->h, b->w, train_path,
                     a->c, a->h, a->w);
        goto fail;
    }
    if (a->c != m->cfg.in_ch && !(a->c == 1 && m->cfg.in_ch == 3)) {
        util_err_set(err, "%s: %d channels, the model takes %d", train_path, a->c, m->cfg.in_ch);
        goto fail;
    }
    k->n_classes = a->n_classes > b->n_classes ? a->n_classes : b->n_classes;
    for (int64_t i = 0; i < b->n; i++)
        if (b->labels[i] >= k->n_classes) k->n_classes = b->labels[i] + 1;
    k->batch = 64;
    struct util_err e2 = {{0}};
    if (!(k->ws = nn_ws_create(m, k->batch, a->h, a->w, &e2))) {
        util_err_set(err, "%s: %s", train_path, e2.msg);
        goto fail;
    }
    const size_t xin = (size_t)k->batch * a->dim, x3 = (size_t)k->batch * m->cfg.in_ch * a->h * a->w;
    if (!(k->x = util_malloc(xin + x3, sizeof(float), err)) ||
        !(k->ftrain = util_malloc((size_t)a->n * m->feat_dim, sizeof(float), err)) ||
        (b != a && !(k->fval = util_malloc((size_t)b->n * m->feat_dim, sizeof(float), err))))
        goto fail;
    k->loo = b == a;
    return 0;
fail:
    simclr_knn_close(k);
    return -1;
}

void simclr_knn_close(simclr_knn *k)
{
    train_data_free(&k->train);
    train_data_free(&k->val);
    nn_ws_free(k->ws);
    free(k->x);
    free(k->ftrain);
    free(k->fval);
    memset(k, 0, sizeof *k);
}

/* L2-normalised pooled features of every example of d into f (n, feat_dim). */
static void knn_features(simclr_knn *k, nn_model *m, const train_data *d, float *f)
{
    const int fd = m->feat_dim, C = m->cfg.in_ch;
    const int64_t hw = (int64_t)d->h * d->w;
    float *xin = k->x, *x3 = k->x + (size_t)k->batch * d->dim;
    int64_t idx[64];
    for (int64_t s = 0; s < d->n; s += k->batch) {
        const int nb = (int)(d->n - s < k->batch ? d->n - s : k->batch);
        for (int i = 0; i < nb; i++) idx[i] = s + i;
        train_data_batch(d, idx, nb, xin, NULL, NULL);
        const float *x = xin;
        if (d->c != C) {   /* one grey plane repeated on the model's channels */
            for (int i = 0; i < nb; i++)
                for (int c = 0; c < C; c++) memcpy(x3 + ((int64_t)i * C + c) * hw, xin + (int64_t)i * hw, sizeof(float) * hw);
            x = x3;
        }
        nn_forward(m, k->ws, x, nb, 0);
        const float *feat = nn_ws_features(k->ws);
        memcpy(f + s * fd, feat, sizeof(float) * nb * fd);
        metric_l2_normalise_rows(f + s * fd, nb, fd);
    }
}

double simclr_knn_eval(simclr_knn *k, nn_model *m)
{
    knn_features(k, m, &k->train, k->ftrain);
    if (k->loo)
        return simclr_knn_accuracy(k->ftrain, k->train.labels, k->train.n, k->ftrain, k->train.labels, k->train.n, 1,
                                   m->feat_dim, k->n_classes, 200, 0.07);
    knn_features(k, m, &k->val, k->fval);
    return simclr_knn_accuracy(k->ftrain, k->train.labels, k->train.n, k->fval, k->val.labels, k->val.n, 0,
                               m->feat_dim, k->n_classes, 200, 0.07);
}

/* ---------------------------------------------------------------- the whole run ---- */

void simclr_opts_default(simclr_opts *o)
{
    memset(o, 0, sizeof *o);
    o->input = "-", o->output = "-";
    nn_config_default(&o->cfg);
    o->cfg.head_layers = 2, o->cfg.head_hidden = 0, o->cfg.head_out = 128;
    nn_optim_opts_default(&o->optim, NN_OPT_LARS);
    o->optim.weight_decay = 1e-6;
    o->lr = 1.2;
    o->temperature = 0.5;
    o->batch = 256;
    o->warmup = -1;
    o->seed = 1;
    o->knn_every = 10;
    o->queue = 3;
}

/* Progress: one line redrawn on a terminal at most 5 times a second; epoch lines on a terminal or -v. */
typedef struct {
    int enabled, tty, dirty;
    double t0, t_last;
    int64_t s0;
} progress;

static void prog_start(progress *p, int64_t s0, int verbose)
{
    memset(p, 0, sizeof *p);
    p->tty = isatty(2);
    p->enabled = p->tty || verbose;
    p->t0 = p->t_last = util_now();
    p->s0 = s0;
}

static void prog_step(progress *p, int64_t done, int64_t total, int batch, const char *text)
{
    if (!p->enabled || !p->tty) return;
    const double t = util_now();
    if (t - p->t_last < 0.2 && done < total) return;
    p->t_last = t;
    const double el = t - p->t0, per = done > p->s0 ? el / (double)(done - p->s0) : 0;
    const double left = per * (double)(total - done), rate = el > 0 ? (double)(done - p->s0) * batch / el : 0;
    const int hrs = (int)(left / 3600), mins = (int)fmod(left / 60, 60), secs = (int)fmod(left, 60);
    fprintf(stderr, "\r\033[K%s: %s, %.1f pairs/s, ETA %d:%02d:%02d", util_progname(), text, rate, hrs, mins, secs);
    fflush(stderr);
    p->dirty = 1;
}

static void prog_line(progress *p, const char *text)
{
    if (!p->enabled) return;
    fprintf(stderr, "%s%s: %s\n", p->dirty ? "\r\033[K" : "", util_progname(), text);
    fflush(stderr);
    p->dirty = 0;
}

static void prog_end(progress *p)
{
    if (p->enabled && p->dirty) fputs("\r\033[K", stderr);
    p->dirty = 0;
}

/* Keys of a checkpoint that are not the model's own attributes. */
static int ckpt_only_key(const char *k)
{
    static const char *const keys[] = {"checkpoint", "train_log", "train_config", "optim", "optim_steps", "model",
                                       "arch", "width", "in_channels", "num_classes", "stem", "dropout",
                                       "head_layers", "head_hidden", "head_out"};
    if (!strncmp(k, "simclr_ckpt_", 12)) return 1;
    for (size_t i = 0; i < sizeof keys / sizeof *keys; i++)
        if (!strcmp(k, keys[i])) return 1;
    return 0;
}

static void drop_ckpt_keys(tsz_attrs *a)
{
    for (int i = 0; i < a->n;) {
        char key[256];
        snprintf(key, sizeof key, "%s", a->keys[i]);
        if (ckpt_only_key(key)) tsz_attrs_remove(a, key);
        else i++;
    }
}

/* The model's attributes from the stream's: keys that describe the data stream only, or that a model
 * file reads as its own configuration, are dropped; this command joins the history without --resume
 * (it does not change the result, and a resumed run must write an uninterrupted run's bytes). */
static int stream_model_attrs(tsz_attrs *a, const tsz_attrs *in, int argc, char **argv)
{
    if (tsz_attrs_copy(a, in) < 0) return -1;
    static const char *const drop[] = {"kind", "soft_labels", "records_total", "augment_start"};
    for (size_t i = 0; i < sizeof drop / sizeof *drop; i++) tsz_attrs_remove(a, drop[i]);
    drop_ckpt_keys(a);
    if (argc > 0) {
        char **av = malloc(sizeof(char *) * (argc + 1));
        if (!av) return -1;
        int n = 0;
        for (int i = 0; i < argc; i++)
            if (strcmp(argv[i], "--resume")) av[n++] = argv[i];
        av[n] = NULL;
        int rc = tsz_attrs_add_history(a, n, av);
        free(av);
        if (rc < 0) return -1;
    }
    return tsz_attrs_set(a, "kind", "model");
}

/* "; the last checkpoint F (step S) is kept" appended to err. */
static void add_kept(struct util_err *err, const char *ckpt, int64_t step)
{
    char tail[600];
    if (!ckpt) snprintf(tail, sizeof tail, "; no checkpoint (--no-checkpoint)");
    else if (step > 0) snprintf(tail, sizeof tail, "; the last checkpoint %s (step %lld) is kept", ckpt, (long long)step);
    else snprintf(tail, sizeof tail, "; no checkpoint was written yet");
    const size_t n = strlen(err->msg);
    snprintf(err->msg + n, sizeof err->msg - n, "%s", tail);
}

/* Physical memory in GiB (0 when the system does not say). */
static double phys_mem_gib(void)
{
    const long pages = sysconf(_SC_PHYS_PAGES), size = sysconf(_SC_PAGESIZE);
    return pages > 0 && size > 0 ? (double)pages * size / 1073741824.0 : 0;
}

/* User and system CPU time of the process so far. */
static double cpu_seconds(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec * 1e-6 + (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec * 1e-6;
}

static void fmt_exact(char *buf, size_t cap, double v) { snprintf(buf, cap, "%.17g", v); }

/* The shortest %g text that reads back as v (for the fingerprint a user may see in a message). */
static const char *fmt_short(char *buf, size_t cap, double v)
{
    for (int p = 6; p <= 17; p++) {
        snprintf(buf, cap, "%.*g", p, v);
        if (strtod(buf, NULL) == v) break;
    }
    return buf;
}

enum { COL_EPOCH, COL_STEP, COL_LOSS, COL_ACC, COL_LR, COL_RATE, COL_WAIT, COL_KNN, COL_SECS, N_COLS };
static const char *const log_cols[N_COLS] = {"epoch", "step", "loss", "contrastive_acc", "lr",
                                             "pairs_per_s", "wait_frac", "knn_acc", "seconds"};

/* --curves: the loss divided by its value for uniform similarities, ln(2B - 1), next to the contrastive
 * and k-NN accuracies, so that all three share the 0..1 axis (the raw loss, 4 to 6.2 at B = 256, would
 * squash the accuracies, a few percent early in a run, onto the x axis).  Point i is log row i (row 0:
 * the k-NN accuracy before training). */
static int simclr_curves(const train_log *l, int64_t batch, const char *path, const char *title,
                         struct util_err *err)
{
    static const char *const labels[3] = {"loss / ln(2B-1)", "contrastive_acc", "knn_acc"};
    static const int cols[3] = {COL_LOSS, COL_ACC, COL_KNN};
    const int n = l->n_rows;
    if (n <= 0) return 0;
    double *buf = malloc(sizeof(double) * 3 * n);
    if (!buf) return util_err_set(err, "%s: out of memory", path);
    const double chance = log((double)(2 * batch - 1));
    const double *series[3];
    int ns = 0;
    const char *lab[3];
    for (int k = 0; k < 3; k++) {
        double *s = buf + (size_t)ns * n;
        int finite = 0;
        for (int i = 0; i < n; i++) {
            s[i] = l->v[(size_t)i * l->n_cols + cols[k]];
            if (cols[k] == COL_LOSS && chance > 0) s[i] /= chance;   /* B = 1: ln 1 = 0, plot it raw */
            finite += isfinite(s[i]) != 0;
        }
        if (finite) series[ns] = s, lab[ns] = labels[k], ns++;
    }
    const int rc = ns ? plot_lines_png(path, title, "log row (1: before training, 2: epoch 1, ...)", ns, lab,
                                       series, n, err) : 0;
    free(buf);
    return rc;
}

/* what to do about a batch whose workspace does not fit */
#define CHUNK_HINT "; --chunk N runs the step N views at a time"

int simclr_train(const simclr_opts *o, struct util_err *err)
{
    simclr_stream *st = NULL;
    nn_model *m = NULL, *pre = NULL;
    simclr_trainer *tr = NULL;
    simclr_knn knn = {0};
    int have_knn = 0, rc = -1;
    train_log log = {0};
    tsz_attrs mattrs, state, ck;
    tsz_attrs_init(&mattrs);
    tsz_attrs_init(&state);
    tsz_attrs_init(&ck);
    progress prog = {0};
    char fp[1100];
    const int B = o->batch;
    int64_t last_ckpt = 0;
    const int N = dist_size(), writer = dist_rank() == 0;   /* rank 0 writes the files */
    float *x_local = NULL;   /* this rank's views of a global batch (several ranks only) */
    train_dist dist = {0};

    if (!(st = simclr_stream_open(o->input, err))) goto done;
    const simclr_stream_info *in = simclr_stream_get_info(st);
    const char *path = o->input;

    /* The plan, from the header: the stream holds the whole run. */
    const int64_t pairs_total = in->total / 2;
    int E = in->epochs;
    if (E > 0 && o->epochs > 0 && o->epochs != E) {
        util_err_set(err, "%s: the stream holds %d epochs (augment --epochs), --epochs says %d", path, E, o->epochs);
        goto done;
    }
    if (E == 0) E = o->epochs > 0 ? o->epochs : 1;
    const int64_t S = pairs_total / B;
    if (S < 1) {
        util_err_set(err, "%s: %lld pairs, fewer than one batch of %d", path, (long long)pairs_total, B);
        goto done;
    }
    const double per_epoch = (double)pairs_total / E;   /* pairs */
    const double wep = o->warmup >= 0 ? o->warmup : E >= 100 ? 10.0 : E / 10.0;
    int64_t W = llround(wep * per_epoch / B);
    if (W > S) W = S;
    const nn_sched sched = {.kind = NN_SCHED_COSINE, .base_lr = o->lr * B / 256.0, .warmup = W, .total = S,
                            .final_lr = 0};

    /* The network and its trainer. */
    nn_config cfg = o->cfg;
    if (o->init) {
        /* the pre-trained network decides the encoder (its weights fit no other); the head is new */
        tsz_attrs pattrs;
        tsz_attrs_init(&pattrs);
        pre = train_load_model_ex(o->init, &o->wo, NULL, o->wflags, stderr, &pattrs, err);
        tsz_attrs_free(&pattrs);
        if (!pre) goto done;
        snprintf(cfg.arch, sizeof cfg.arch, "%s", pre->cfg.arch);
        cfg.width = pre->cfg.width, cfg.stem = pre->cfg.stem;
    }
    cfg.in_ch = in->c, cfg.num_classes = 0;
    if (!cfg.head_layers) cfg.head_layers = 2;
    {
        struct util_err e2 = {{0}};
        if (!(m = nn_model_create(&cfg, &e2))) {
            util_err_set(err, "%s", e2.msg);
            goto done;
        }
        nn_model_init(m, o->seed);
        if (pre && nn_model_copy_backbone(m, pre, &e2) < 0) {
            util_err_set(err, "%s: %s", o->init, e2.msg);
            goto done;
        }
        nn_model_free(pre);
        pre = NULL;
        if (!(tr = simclr_trainer_create(m, &o->optim, B, o->chunk, in->h, in->w, (float)o->temperature, &e2))) {
            util_err_set(err, "%s: %s%s", path, e2.msg, strstr(e2.msg, "workspace") ? CHUNK_HINT : "");
            goto done;
        }
        /* Linux grants more than it has and kills the process later, when the pages are touched */
        const double ws_gib = nn_ws_bytes(tr->ws) / 1073741824.0, phys_gib = phys_mem_gib();
        if (phys_gib > 0 && ws_gib > 0.9 * phys_gib) {
            util_err_set(err, "%s: %d views of %dx%d need %.1f GiB of workspace, this machine has %.1f GiB" CHUNK_HINT,
                         path, tr->chunk, in->h, in->w, ws_gib, phys_gib);
            goto done;
        }
    }
    const uint64_t ws_seed = o->seed ^ 0x5eed0f0d0d0e0e0dULL;   /* no dropout in SimCLR; kept for symmetry */
    nn_ws_set_seed(tr->ws, ws_seed, 0);
    const size_t view = (size_t)in->c * in->h * in->w;
    if ((N > 1 && !(x_local = util_malloc((size_t)2 * tr->local * view, sizeof(float), err))) ||
        train_dist_init(&dist, m, o->sync_bn, err) < 0)
        goto done;
    if (o->knn_train && writer) {   /* the monitor runs on rank 0 while the others wait for the next step */
        if (simclr_knn_open(&knn, m, o->knn_train, o->knn_val, err) < 0) goto done;
        have_knn = 1;
    }
    if (train_log_init(&log, log_cols, N_COLS, err) < 0) goto done;
    {
        char f[5][32];
        snprintf(fp, sizeof fp,
                 "arch=%s width=%d stem=%s input=%dx%dx%d head=%d/%d/%d temperature=%s batch=%d chunk=%d optimizer=%s lr=%s wd=%s "
                 "momentum=%s trust=%s decay_bn_bias=%d warmup_steps=%lld epochs=%d records=%lld seed=%llu init=%s",
                 cfg.arch, cfg.width, cfg.stem == NN_STEM_SMALL ? "small" : "imagenet", in->c, in->h, in->w,
                 cfg.head_layers, cfg.head_hidden, cfg.head_out, fmt_short(f[0], 32, o->temperature), B, tr->chunk,
                 nn_optim_name(o->optim.kind), fmt_short(f[1], 32, o->lr), fmt_short(f[2], 32, o->optim.weight_decay),
                 fmt_short(f[3], 32, o->optim.momentum), fmt_short(f[4], 32, o->optim.trust), o->optim.decay_bn_bias,
                 (long long)W, E, (long long)in->total, (unsigned long long)o->seed, o->init ? o->init : "-");
        train_dist_fingerprint(fp, sizeof fp, o->sync_bn);
    }

    /* Where the run stands: a checkpoint, or the start. */
    int64_t s0 = 0, epoch_done = 0, ep_steps = 0, ep_correct = 0, ep_views = 0;
    double ep_loss = 0, knn_last = NAN, knn_init = NAN;
    if (o->resume && o->ckpt && access(o->ckpt, F_OK) == 0) {
        if (train_ckpt_load(o->ckpt, m, tr->opt, &ck, &log, fp, err) < 0) goto done;
        const char *vs[8];
        static const char *const keys[8] = {"simclr_ckpt_step", "simclr_ckpt_epoch", "simclr_ckpt_ep_steps",
                                            "simclr_ckpt_ep_correct", "simclr_ckpt_ep_views", "simclr_ckpt_ep_loss",
                                            "simclr_ckpt_knn", "simclr_ckpt_ws_counter"};
        for (int i = 0; i < 8; i++)
            if (!(vs[i] = tsz_attrs_get(&ck, keys[i]))) {
                util_err_set(err, "%s: the checkpoint's trainer state is incomplete (no %s)", o->ckpt, keys[i]);
                goto done;
            }
        s0 = strtoll(vs[0], NULL, 10), epoch_done = strtoll(vs[1], NULL, 10), ep_steps = strtoll(vs[2], NULL, 10);
        ep_correct = strtoll(vs[3], NULL, 10), ep_views = strtoll(vs[4], NULL, 10);
        ep_loss = strtod(vs[5], NULL), knn_last = strtod(vs[6], NULL);
        const char *ki = tsz_attrs_get(&ck, "simclr_ckpt_knn_init");
        knn_init = ki ? strtod(ki, NULL) : NAN;
        nn_ws_set_seed(tr->ws, ws_seed, strtoull(vs[7], NULL, 10));
        if (s0 < 1 || s0 >= S) {
            util_err_set(err, "%s: the checkpoint is at step %lld of a run of %lld", o->ckpt, (long long)s0, (long long)S);
            goto done;
        }
        last_ckpt = s0;
        /* the model's attributes are the first run's: the resumed stream's differ (augment --start) */
        if (tsz_attrs_copy(&mattrs, &ck) < 0) goto oom;
        drop_ckpt_keys(&mattrs);
    } else {
        if (o->resume && o->ckpt && o->verbose && writer)
            fprintf(stderr, "%s: no checkpoint %s: starting at step 1\n", util_progname(), o->ckpt);
        if (stream_model_attrs(&mattrs, simclr_stream_attrs(st), o->argc, o->argv) < 0) goto oom;
        if (o->save_init && writer) {   /* the untrained model: the baseline of a k-NN or fine-tuning comparison */
            tsz_attrs ia;
            tsz_attrs_init(&ia);
            int r = -1;
            if (tsz_attrs_copy(&ia, &mattrs) < 0 || tsz_attrs_set(&ia, "steps", "0") < 0 ||
                tsz_attrs_set(&ia, "pairs_seen", "0") < 0)
                util_err_set(err, "out of memory");
            else
                r = nn_model_save(m, NULL, o->save_init, &ia, NULL, err);
            tsz_attrs_free(&ia);
            if (r < 0) goto done;
        }
    }
    if (train_dist_check_start(m, s0, o->resume ? o->ckpt : NULL, err) < 0) goto done;
    const int64_t from = 2 * B * s0;
    if (in->start > from) {
        util_err_set(err, "%s: the stream starts at run record %lld, but the run stands at record %lld (step %lld): "
                     "restart the producer with augment --start %lld", path, (long long)in->start, (long long)from,
                     (long long)s0, (long long)from);
        goto done;
    }
    if (simclr_stream_start(st, from, B, S - s0, o->queue > 1 ? o->queue : 2, err) < 0) goto done;
    prog_start(&prog, s0, o->verbose);
    if (!writer) prog.enabled = 0;
    if (s0 > 0 && o->verbose) {
        char t[200];
        snprintf(t, sizeof t, "resuming at step %lld (run record %lld)", (long long)s0, (long long)from);
        prog_line(&prog, t);
    }
    if (have_knn && s0 == 0) {
        const double t = util_now();
        knn_init = knn_last = simclr_knn_eval(&knn, m);
        double row[N_COLS] = {0, 0, NAN, NAN, NAN, NAN, NAN, knn_init, util_now() - t};
        if (train_log_add(&log, row, err) < 0) goto done;
        char text[120];
        snprintf(text, sizeof text, "before training: k-NN accuracy %.4f", knn_init);
        prog_line(&prog, text);
    }

    double t_ep = util_now(), wait_ep = simclr_stream_wait_seconds(st), lr = 0;
    const double t_run = t_ep, cpu_run = cpu_seconds();
    int64_t ep_pairs0 = s0;   /* step at which this epoch's timing started */
    for (int64_t s = s0; s < S; s++) {
        const float *x = simclr_stream_next(st, err);
        if (!x) {
            add_kept(err, o->ckpt, last_ckpt);
            goto done;
        }
        lr = nn_sched_lr(&sched, s);
        if (N > 1) {   /* this rank's pairs of the global batch */
            for (int j = 0; j < 2 * tr->local; j++)
                memcpy(x_local + j * view, x + simclr_global_view(tr, dist_rank(), j) * view, sizeof(float) * view);
            x = x_local;
        }
        int corr = 0;
        const double loss = simclr_forward_backward(tr, x, &corr);
        simclr_stream_release(st);
        if (!isfinite(loss)) {
            const int64_t e = (int64_t)((double)(s * B) * E / (double)pairs_total) + 1;
            util_err_set(err, "%s: step %lld of %lld (epoch %lld): the loss is %s at learning rate %g; stopped", path,
                         (long long)s + 1, (long long)S, (long long)(e > E ? E : e), isnan(loss) ? "nan" : "infinite",
                         lr);
            add_kept(err, o->ckpt, last_ckpt);
            goto done;
        }
        train_dist_step(&dist, tr->opt, lr);   /* the global batch's gradients, one update (simclr_update) */
        const int64_t done = s + 1;
        ep_loss += loss, ep_steps++, ep_correct += corr, ep_views += 2 * B;
        if (prog.enabled && prog.tty) {
            char text[200];
            snprintf(text, sizeof text, "step %lld/%lld (epoch %lld/%d): loss %.4f acc %.3f lr %.4g", (long long)done,
                     (long long)S, (long long)(epoch_done + 1 > E ? E : epoch_done + 1), E, ep_loss / ep_steps,
                     (double)ep_correct / ep_views, lr);
            prog_step(&prog, done, S, B, text);
        }
        /* epoch boundaries: pairs seen reach a multiple of the pairs per epoch; the last step ends the run.
         * The quotient of two exact integers is exact when whole and at least 1/pairs_total below the
         * next whole number otherwise, so the floor is right. */
        int64_t e_now = (int64_t)((double)(done * B) * E / (double)pairs_total);   /* exact: see below */
        if (e_now > E || done == S) e_now = E;
        const int epoch_end = e_now > epoch_done;
        if (epoch_end) {
            epoch_done = e_now;
            const double now = util_now(), secs = now - t_ep, wt = simclr_stream_wait_seconds(st) - wait_ep;
            double knn_acc = NAN;
            if (have_knn && ((o->knn_every > 0 && e_now % o->knn_every == 0) || e_now == E))
                knn_acc = knn_last = simclr_knn_eval(&knn, m);
            double row[N_COLS] = {(double)e_now, (double)done, ep_loss / ep_steps, (double)ep_correct / ep_views, lr,
                                  secs > 0 ? (double)(done - ep_pairs0) * B / secs : 0, secs > 0 ? wt / secs : 0,
                                  knn_acc, util_now() - t_ep};
            if (train_log_add(&log, row, err) < 0) goto done;
            if (writer && o->log && train_log_write(&log, o->log, err) < 0) goto done;
            char title[300];
            snprintf(title, sizeof title, "%s %s", util_progname(), o->output);
            if (writer && o->curves && simclr_curves(&log, B, o->curves, title, err) < 0) goto done;
            char text[300];
            int k = snprintf(text, sizeof text, "epoch %lld/%d (step %lld): loss %.4f acc %.3f lr %.4g, %.1f pairs/s, "
                             "input wait %.0f%%", (long long)e_now, E, (long long)done, row[COL_LOSS], row[COL_ACC], lr,
                             row[COL_RATE], 100 * row[COL_WAIT]);
            if (!isnan(knn_acc)) snprintf(text + k, sizeof text - k, ", k-NN %.4f", knn_acc);
            prog_line(&prog, text);
            ep_loss = 0, ep_steps = ep_correct = ep_views = 0;
            t_ep = util_now(), wait_ep = simclr_stream_wait_seconds(st), ep_pairs0 = done;
        }
        /* every --checkpoint-every steps, else at the end of every epoch */
        if (o->ckpt && done < S && (o->ckpt_every > 0 ? done % o->ckpt_every == 0 : epoch_end)) {
            const int64_t bad = train_first_nonfinite(m);
            if (bad >= 0) {
                util_err_set(err, "%s: step %lld: a parameter or running statistic became non-finite (value %lld); "
                             "stopped", path, (long long)done, (long long)bad);
                add_kept(err, o->ckpt, last_ckpt);
                goto done;
            }
            char b[6][40];
            snprintf(b[0], 40, "%llu", (unsigned long long)nn_ws_counter(tr->ws));
            fmt_exact(b[1], 40, ep_loss);
            fmt_exact(b[2], 40, knn_last);
            fmt_exact(b[3], 40, knn_init);
            tsz_attrs_free(&state);
            tsz_attrs_init(&state);
            if (tsz_attrs_copy(&state, &mattrs) < 0 || tsz_attrs_setf(&state, "simclr_ckpt_step", "%lld", (long long)done) < 0 ||
                tsz_attrs_setf(&state, "simclr_ckpt_records", "%lld", (long long)(2 * B * done)) < 0 ||
                tsz_attrs_setf(&state, "simclr_ckpt_epoch", "%lld", (long long)epoch_done) < 0 ||
                tsz_attrs_setf(&state, "simclr_ckpt_ep_steps", "%lld", (long long)ep_steps) < 0 ||
                tsz_attrs_setf(&state, "simclr_ckpt_ep_correct", "%lld", (long long)ep_correct) < 0 ||
                tsz_attrs_setf(&state, "simclr_ckpt_ep_views", "%lld", (long long)ep_views) < 0 ||
                tsz_attrs_set(&state, "simclr_ckpt_ep_loss", b[1]) < 0 || tsz_attrs_set(&state, "simclr_ckpt_knn", b[2]) < 0 ||
                tsz_attrs_set(&state, "simclr_ckpt_knn_init", b[3]) < 0 ||
                tsz_attrs_set(&state, "simclr_ckpt_ws_counter", b[0]) < 0 || tsz_attrs_set(&state, "train_config", fp) < 0)
                goto oom;
            train_dist_gather_state(&dist, tr->opt);
            if (writer && train_ckpt_save(o->ckpt, m, tr->opt, &state, &log, err) < 0) {
                add_kept(err, o->ckpt, last_ckpt);
                goto done;
            }
            last_ckpt = done;
            if (o->verbose && writer) {
                char t[600];
                snprintf(t, sizeof t, "checkpoint %s at step %lld (run record %lld)", o->ckpt, (long long)done,
                         (long long)(2 * B * done));
                prog_line(&prog, t);
            }
        }
    }
    if (simclr_stream_finish(st, err) < 0) {
        add_kept(err, o->ckpt, last_ckpt);
        goto done;
    }
    prog_end(&prog);
    {
        const double secs = util_now() - t_run, wt = simclr_stream_wait_seconds(st);
        if (o->verbose && writer) {
            /* a training step costs about 3 forward passes; 2 views per pair.  Per CPU-second: what
             * the process computed with the CPU time it got, less sensitive to other load */
            const double rate = secs > 0 ? (double)(S - s0) * B / secs : 0, cpu = cpu_seconds() - cpu_run;
            const double flops = 3.0 * 2.0 * nn_model_flops(m, in->h, in->w) * (double)(S - s0) * B;
            struct rusage ru;
            getrusage(RUSAGE_SELF, &ru);
            char t[400];
            snprintf(t, sizeof t, "%lld steps, %.1f pairs/s, %.1f GFLOP/s (%.1f per CPU-second), waited on the input "
                     "%.1f%% of %.1f s, peak RSS %.0f MiB", (long long)(S - s0), rate, secs > 0 ? flops / secs / 1e9 : 0,
                     cpu > 0 ? flops / cpu / 1e9 : 0, secs > 0 ? 100 * wt / secs : 0, secs, ru.ru_maxrss / 1024.0);
            prog_line(&prog, t);
        }
        /* deterministic results only: the file must not depend on timing or on being resumed */
        const double *last = NULL;
        for (int r = log.n_rows - 1; r >= 0 && !last; r--)
            if (log.v[(size_t)r * N_COLS + COL_EPOCH] > 0) last = log.v + (size_t)r * N_COLS;
        char b[4][40];
        fmt_short(b[0], 40, o->temperature);
        snprintf(b[1], 40, "%.6f", last ? last[COL_LOSS] : NAN);
        snprintf(b[2], 40, "%.6f", last ? last[COL_ACC] : NAN);
        if (tsz_attrs_setf(&mattrs, "steps", "%lld", (long long)S) < 0 ||
            tsz_attrs_setf(&mattrs, "pairs_seen", "%lld", (long long)S * B) < 0 ||
            tsz_attrs_setf(&mattrs, "epochs", "%d", E) < 0 || tsz_attrs_setf(&mattrs, "batch", "%d", B) < 0 ||
            tsz_attrs_setf(&mattrs, "chunk", "%d", tr->chunk) < 0 ||
            tsz_attrs_set(&mattrs, "temperature", b[0]) < 0 || tsz_attrs_set(&mattrs, "simclr_loss", b[1]) < 0 ||
            tsz_attrs_set(&mattrs, "contrastive_acc", b[2]) < 0)
            goto oom;
        if (have_knn) {
            snprintf(b[3], 40, "%.6f", knn_init);
            if (tsz_attrs_set(&mattrs, "knn_acc_init", b[3]) < 0) goto oom;
            snprintf(b[3], 40, "%.6f", knn_last);
            if (tsz_attrs_set(&mattrs, "knn_acc", b[3]) < 0) goto oom;
        }
        if (train_dist_check_end(m, err) < 0) goto done;
        if (writer && nn_model_save(m, NULL, o->output, &mattrs, NULL, err) < 0) goto done;
    }
    if (writer && o->ckpt && !o->keep_ckpt && unlink(o->ckpt) < 0 && errno != ENOENT) {
        util_err_sys(err, "%s: cannot remove the checkpoint", o->ckpt);
        goto done;
    }
    rc = 0;
    goto done;
oom:
    util_err_set(err, "out of memory");
done:
    prog_end(&prog);
    free(x_local);
    train_dist_free(&dist);
    simclr_stream_close(st);
    simclr_trainer_free(tr);
    nn_model_free(m);
    nn_model_free(pre);
    if (have_knn) simclr_knn_close(&knn);
    train_log_free(&log);
    tsz_attrs_free(&mattrs);
    tsz_attrs_free(&state);
    tsz_attrs_free(&ck);
    return rc;
}
