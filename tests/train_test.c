/* train_test: lib/train.c's pieces (example reader with "#soft" companions, data sets, epoch orders,
 * batches, log, checkpoints, embedding) and, as `train_test gen ...`, the writer of the small synthetic
 * labelled streams that tests/finetune_test.sh and tests/embed_test.sh train on.
 *
 * The synthetic problem: class 0 horizontal stripes, 1 vertical stripes, 2 diagonal stripes, 3 a
 * checkerboard (then repeating with other periods), each with a random phase and Gaussian noise, so a
 * small convolutional network separates them while a global average of the raw pixels cannot. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nn.h"
#include "test.h"
#include "train.h"
#include "tsz.h"
#include "util.h"

/* ---------------------------------------------------------------- synthetic streams ---- */

static void pattern(float *x, int c, int h, int w, int k, util_rng *r, double noise)
{
    const int period = 4 + 2 * (k / 4);
    const int ph = (int)util_rng_below(r, (uint64_t)period);
    for (int ch = 0; ch < c; ch++)
        for (int i = 0; i < h; i++)
            for (int j = 0; j < w; j++) {
                int t;
                switch (k % 4) {
                case 0: t = i + ph; break;
                case 1: t = j + ph; break;
                case 2: t = i + j + ph; break;
                default: t = (i / 2 + j / 2) * 2 + ph; break;
                }
                const double v = (t % period) < period / 2 ? 0.75 : 0.25;
                x[((size_t)ch * h + i) * w + j] = (float)(v + noise * util_rng_normal(r));
            }
}

struct gen {
    const char *out;
    int n, k, c, h, w, u8, quant, soft, epochs, start, fold, classes_attr, bad;
    uint64_t seed;
    double noise;
};

static int gen_stream(const struct gen *g)
{
    struct util_err err = {{0}};
    tsz_attrs a;
    tsz_attrs_init(&a);
    char *names[64];
    char buf[64][16];
    for (int i = 0; i < g->k && i < 64; i++) snprintf(buf[i], sizeof buf[i], "class%d", i), names[i] = buf[i];
    if (g->classes_attr) tsz_attrs_set_classes(&a, names, g->k);
    tsz_attrs_set(&a, "kind", "synthetic");
    const int per = g->soft ? 2 : 1;
    if (g->soft) {
        tsz_attrs_set(&a, "soft_labels", "1");
        tsz_attrs_setf(&a, "num_classes", "%d", g->k);
    }
    const int epochs = g->epochs > 0 ? g->epochs : 1;
    if (g->epochs > 0) {
        tsz_attrs_setf(&a, "augment_epochs", "%d", g->epochs);
        tsz_attrs_set(&a, "augment_views", "1");
        tsz_attrs_setf(&a, "augment_start", "%d", g->start);
        tsz_attrs_setf(&a, "records_total", "%lld", (long long)epochs * g->n * per);
    }
    tsz_writer *w = tsz_writer_open(g->out, &a, (int64_t)epochs * g->n * per - g->start, NULL, &err);
    tsz_attrs_free(&a);
    if (!w) {
        fprintf(stderr, "train_test gen: %s\n", err.msg);
        return 1;
    }
    const size_t dim = (size_t)g->c * g->h * g->w;
    float *x = malloc(dim * sizeof(float));
    uint8_t *b = malloc(dim);
    int64_t rec_i = 0;
    for (int e = 0; e < epochs; e++)
        for (int i = 0; i < g->n; i++) {
            util_rng r = util_rng_split(g->seed, (uint64_t)e * g->n + i);
            const int k = i % g->k;
            pattern(x, g->c, g->h, g->w, k, &r, g->noise);
            tsz_rec rec;
            char name[64];
            snprintf(name, sizeof name, "ex%04d", i);
            int64_t shape[3] = {g->c, g->h, g->w};
            if (g->bad && i == g->n - 1) shape[2] = g->w - 1;   /* a record of another shape */
            tsz_rec_init(&rec, name, g->u8 ? TSZ_U8 : TSZ_F32, 3, shape);
            rec.label = k;
            rec.fold = g->fold ? g->fold : 1 + i % 5;
            if (g->u8 || g->quant)
                for (size_t t = 0; t < dim; t++) {
                    double v = x[t] * 255.0 + 0.5;
                    b[t] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
                    if (g->quant) x[t] = (float)b[t] / 255.0f;   /* f32 holding exactly what u8 means */
                }
            if (rec_i++ >= g->start && tsz_write(w, &rec, g->u8 ? (void *)b : (void *)x, &err) < 0) goto fail;
            if (g->soft) {
                /* a mixup-like target: 0.7 on the true class, 0.3 on the next one */
                float s[64] = {0};
                s[k] = 0.7f;
                s[(k + 1) % g->k] += 0.3f;
                char sn[80];
                snprintf(sn, sizeof sn, "%s#soft", name);
                const int64_t ss[1] = {g->k};
                if (rec_i++ >= g->start && tsz_write_f32(w, sn, k, rec.fold, 1, ss, s, &err) < 0) goto fail;
            }
        }
    free(x);
    free(b);
    if (tsz_writer_finish(w, &err) < 0) goto fail2;
    tsz_writer_close(w);
    return 0;
fail:
    free(x);
    free(b);
fail2:
    fprintf(stderr, "train_test gen: %s\n", err.msg);
    tsz_writer_close(w);
    return 1;
}

static int gen_main(int argc, char **argv)
{
    struct gen g = {.n = 60, .k = 3, .c = 1, .h = 16, .w = 16, .seed = 1, .noise = 0.1, .classes_attr = 1};
    if (argc < 3) {
        fprintf(stderr, "usage: train_test gen OUT [n=N k=K c=C h=H w=W seed=S noise=X u8=1 quant=1 soft=1 epochs=E "
                        "start=R fold=F classes=0 bad=1]\n");
        return 2;
    }
    g.out = argv[2];
    for (int i = 3; i < argc; i++) {
        char key[32];
        double v;
        if (sscanf(argv[i], "%31[^=]=%lf", key, &v) != 2) return fprintf(stderr, "bad argument %s\n", argv[i]), 2;
        if (!strcmp(key, "n")) g.n = (int)v;
        else if (!strcmp(key, "k")) g.k = (int)v;
        else if (!strcmp(key, "c")) g.c = (int)v;
        else if (!strcmp(key, "h")) g.h = (int)v;
        else if (!strcmp(key, "w")) g.w = (int)v;
        else if (!strcmp(key, "seed")) g.seed = (uint64_t)v;
        else if (!strcmp(key, "noise")) g.noise = v;
        else if (!strcmp(key, "u8")) g.u8 = (int)v;
        else if (!strcmp(key, "quant")) g.quant = (int)v;
        else if (!strcmp(key, "soft")) g.soft = (int)v;
        else if (!strcmp(key, "epochs")) g.epochs = (int)v;
        else if (!strcmp(key, "start")) g.start = (int)v;
        else if (!strcmp(key, "fold")) g.fold = (int)v;
        else if (!strcmp(key, "classes")) g.classes_attr = (int)v;
        else if (!strcmp(key, "bad")) g.bad = (int)v;
        else return fprintf(stderr, "unknown key %s\n", key), 2;
    }
    if (g.k < 1 || g.k > 64 || g.n < 1) return fprintf(stderr, "bad sizes\n"), 2;
    return gen_stream(&g);
}

/* `train_test genmodel OUT [width=W in=C classes=K head=L stem=small|imagenet seed=S]`: a randomly
 * initialised model file, e.g. an encoder with a SimCLR head and no classifier as simclr-train writes. */
static int genmodel_main(int argc, char **argv)
{
    if (argc < 3) return fprintf(stderr, "usage: train_test genmodel OUT [key=value...]\n"), 2;
    nn_config c;
    nn_config_default(&c);
    c.width = 4, c.in_ch = 3, c.num_classes = 0, c.head_layers = 2, c.head_out = 8;
    uint64_t seed = 1;
    for (int i = 3; i < argc; i++) {
        char key[32], val[32];
        if (sscanf(argv[i], "%31[^=]=%31s", key, val) != 2) return fprintf(stderr, "bad argument %s\n", argv[i]), 2;
        if (!strcmp(key, "width")) c.width = atoi(val);
        else if (!strcmp(key, "in")) c.in_ch = atoi(val);
        else if (!strcmp(key, "classes")) c.num_classes = atoi(val);
        else if (!strcmp(key, "head")) c.head_layers = atoi(val);
        else if (!strcmp(key, "stem")) c.stem = !strcmp(val, "small") ? NN_STEM_SMALL : NN_STEM_IMAGENET;
        else if (!strcmp(key, "seed")) seed = strtoull(val, NULL, 10);
        else return fprintf(stderr, "unknown key %s\n", key), 2;
    }
    struct util_err err = {{0}};
    nn_model *m = nn_model_create(&c, &err);
    if (!m) return fprintf(stderr, "genmodel: %s\n", err.msg), 1;
    nn_model_init(m, seed);
    /* running statistics away from 0/1, as a trained encoder has them */
    for (int64_t i = 0; i < m->n_bufs; i++) m->bufs[i] += 0.05f * (float)(i % 5);
    int rc = nn_model_save(m, NULL, argv[2], NULL, NULL, &err) < 0;
    if (rc) fprintf(stderr, "genmodel: %s\n", err.msg);
    nn_model_free(m);
    return rc;
}

/* `train_test cmp A B TOL [REL]`: the streams have the same records (names, labels, folds, shapes) and
 * values within TOL absolute + REL relative; prints the largest difference.  Exit 0 or 1. */
static int cmp_main(int argc, char **argv)
{
    if (argc < 5) return fprintf(stderr, "usage: train_test cmp A B TOL [REL]\n"), 2;
    const double tol = atof(argv[4]), rel = argc > 5 ? atof(argv[5]) : 0;
    struct util_err err = {{0}};
    tsz_reader *a = tsz_reader_open(argv[2], &err), *b = a ? tsz_reader_open(argv[3], &err) : NULL;
    if (!a || !b) return fprintf(stderr, "cmp: %s\n", err.msg), 1;
    void *da = NULL, *db = NULL;
    size_t ca = 0, cb = 0;
    double maxd = 0;
    int64_t n = 0, bad = 0;
    for (;; n++) {
        tsz_rec ra, rb;
        int x = tsz_next(a, &ra, &err), y = tsz_next(b, &rb, &err);
        if (x < 0 || y < 0) return fprintf(stderr, "cmp: %s\n", err.msg), 1;
        if (x != y) return fprintf(stderr, "cmp: record counts differ at %lld\n", (long long)n), 1;
        if (x == 0) break;
        int64_t na = tsz_rec_numel(&ra), nb = tsz_rec_numel(&rb);
        if (strcmp(ra.name, rb.name) || ra.label != rb.label || ra.fold != rb.fold || na != nb)
            return fprintf(stderr, "cmp: record %lld: name/label/fold/size differ\n", (long long)n), 1;
        if ((size_t)na * 4 > ca) da = realloc(da, ca = (size_t)na * 4);
        if ((size_t)nb * 4 > cb) db = realloc(db, cb = (size_t)nb * 4);
        if (tsz_read_data_f32(a, &ra, da, (size_t)na, &err) < 0 || tsz_read_data_f32(b, &rb, db, (size_t)nb, &err) < 0)
            return fprintf(stderr, "cmp: %s\n", err.msg), 1;
        for (int64_t i = 0; i < na; i++) {
            const double u = ((float *)da)[i], v = ((float *)db)[i], d = fabs(u - v);
            if (!(d <= tol + rel * fabs(v))) bad++;
            if (!(d <= maxd)) maxd = d;
        }
    }
    printf("%lld records, max abs diff %.3g, %lld values over tolerance\n", (long long)n, maxd, (long long)bad);
    free(da);
    free(db);
    tsz_reader_close(a);
    tsz_reader_close(b);
    return bad ? 1 : 0;
}

/* ---------------------------------------------------------------- unit tests ---- */

static void test_orders(void)
{
    int64_t a[100], b[100], c[100];
    train_epoch_order(a, 100, 7, 3, 1);
    train_epoch_order(b, 100, 7, 3, 1);
    train_epoch_order(c, 100, 7, 4, 1);
    int same = !memcmp(a, b, sizeof a), differ = memcmp(a, c, sizeof a) != 0, perm = 1;
    int seen[100] = {0};
    for (int i = 0; i < 100; i++) perm &= a[i] >= 0 && a[i] < 100 && !seen[a[i]]++;
    test_check(same && differ && perm, "epoch order: a permutation, the same for (seed, epoch), another next epoch");
    train_epoch_order(a, 100, 7, 3, 0);
    int id = 1;
    for (int i = 0; i < 100; i++) id &= a[i] == i;
    test_check(id, "epoch order without shuffle is the stream order");
}

static void test_data(void)
{
    struct util_err err = {{0}};
    /* u8 with soft companions on some examples and no classes attribute */
    tsz_attrs a;
    tsz_attrs_init(&a);
    tsz_attrs_set(&a, "num_classes", "3");
    tsz_writer *w = tsz_writer_open("d.tsz", &a, -1, NULL, &err);
    tsz_attrs_free(&a);
    const int64_t shape[3] = {1, 2, 2}, ss[1] = {3};
    for (int i = 0; i < 4; i++) {
        tsz_rec rec;
        char name[16];
        snprintf(name, sizeof name, "r%d", i);
        tsz_rec_init(&rec, name, TSZ_U8, 3, shape);
        rec.label = i % 3, rec.fold = 10 + i;
        uint8_t v[4] = {(uint8_t)(i * 10), 255, 0, 51};
        tsz_write(w, &rec, v, &err);
        if (i == 1 || i == 2) {
            const float s[3] = {0.25f, 0.5f, 0.25f};
            snprintf(name, sizeof name, "r%d#soft", i);
            tsz_write_f32(w, name, i % 3, 0, 1, ss, s, &err);
        }
    }
    int ok = tsz_writer_finish(w, &err) == 0;
    tsz_writer_close(w);
    train_data d;
    train_data_opts o = {.need_labels = 1, .keep_soft = 1};
    ok = ok && train_data_load(&d, "d.tsz", &o, &err) == 0;
    test_check(ok, "load a u8 stream with soft companions%s%s", ok ? "" : ": ", ok ? "" : err.msg);
    if (!ok) return;
    test_check(d.n == 4 && d.u8 && d.c == 1 && d.h == 2 && d.w == 2 && d.n_classes == 3 && d.n_with_soft == 2,
               "data set: 4 examples of u8 1x2x2, 3 classes, 2 soft rows (n %lld, classes %d, soft %lld)",
               (long long)d.n, d.n_classes, (long long)d.n_with_soft);
    int64_t idx[2] = {3, 1};
    float x[8], soft[6];
    int32_t lab[2];
    train_data_batch(&d, idx, 2, x, lab, soft);
    test_check(x[0] == 30.0f / 255.0f && x[1] == 1.0f && x[3] == 51.0f / 255.0f && x[4] == 10.0f / 255.0f &&
                   lab[0] == 0 && lab[1] == 1,
               "batch: u8 values / 255 in index order, labels follow");
    test_check(soft[0] == 1 && soft[1] == 0 && soft[2] == 0 && soft[3] == 0.25f && soft[4] == 0.5f,
               "batch: soft rows, one-hot for an example without a companion");
    test_check(d.folds[2] == 12, "folds kept");
    train_data_free(&d);

    /* n_classes from the largest label; bad records */
    struct {
        const char *what, *want;
        int kind;
    } bad[] = {{"a record of another shape", "record 2", 0}, {"a missing label", "record 1: 'r1' has no label", 1},
               {"an orphan #soft record", "record 1: soft labels 'x#soft' follow no example", 2},
               {"a label beyond --classes", "record 2: label 2, but there are 2 classes", 3}};
    for (int t = 0; t < 4; t++) {
        w = tsz_writer_open("b.tsz", NULL, -1, NULL, &err);
        for (int i = 0; i < 3; i++) {
            tsz_rec rec;
            int64_t sh[3] = {1, 2, (t == 0 && i == 2) ? 3 : 2};
            char name[16];
            snprintf(name, sizeof name, "r%d", i);
            if (t == 2 && i == 1) snprintf(name, sizeof name, "x#soft");
            tsz_rec_init(&rec, name, TSZ_F32, 3, sh);
            rec.label = (t == 1 && i == 1) ? -1 : i;
            float v[6] = {0};
            tsz_write(w, &rec, v, &err);
        }
        tsz_writer_finish(w, &err);
        tsz_writer_close(w);
        train_data_opts bo = {.need_labels = 1, .n_classes = t == 3 ? 2 : 0};
        struct util_err e2 = {{0}};
        int r = train_data_load(&d, "b.tsz", &bo, &e2);
        test_check(r < 0 && strstr(e2.msg, bad[t].want) && strstr(e2.msg, "b.tsz"), "%s is refused: %s", bad[t].what,
                   e2.msg);
        if (r == 0) train_data_free(&d);
    }
    train_data_opts io = {.need_labels = 1};
    w = tsz_writer_open("c.tsz", NULL, -1, NULL, &err);
    for (int i = 0; i < 3; i++) {
        float v[4] = {0};
        const int64_t sh[2] = {2, 2};
        tsz_write_f32(w, "r", i == 2 ? 4 : 0, 0, 2, sh, v, &err);
    }
    tsz_writer_finish(w, &err);
    tsz_writer_close(w);
    ok = train_data_load(&d, "c.tsz", &io, &err) == 0;
    test_check(ok && d.n_classes == 5 && d.c == 1 && d.h == 2 && d.w == 2,
               "2-D records are 1 x H x W; classes = max label + 1 without attributes (%d)", ok ? d.n_classes : -1);
    if (ok) train_data_free(&d);
}

static void test_log(void)
{
    struct util_err err = {{0}};
    const char *cols[] = {"epoch", "loss", "acc"};
    train_log l, m;
    train_log_init(&l, cols, 3, &err);
    train_log_init(&m, cols, 3, &err);
    const double r1[3] = {1, 2.3456789, NAN}, r2[3] = {2, 1.25, 0.5};
    train_log_add(&l, r1, &err);
    train_log_add(&l, r2, &err);
    char *t = train_log_text(&l);
    test_check(t && !strcmp(t, "epoch\tloss\tacc\n1\t2.34568\tnan\n2\t1.25\t0.5\n"), "log text: header, %%.6g values, nan");
    int ok = train_log_parse(&m, t, &err) == 0;
    char *u = train_log_text(&m);
    test_check(ok && u && !strcmp(t, u) && m.n_rows == 2, "log text parses back to the same rows");
    const char *other[] = {"epoch", "x", "acc"};
    train_log o;
    train_log_init(&o, other, 3, &err);
    test_check(train_log_parse(&o, t, &err) < 0, "a log with other columns is refused");
    const char *curve[] = {"loss", "acc"};
    ok = train_log_curves(&l, "c.png", "test", curve, 2, &err) == 0;
    FILE *f = fopen("c.png", "rb");
    unsigned char sig[8] = {0};
    if (f) {
        if (fread(sig, 1, 8, f) != 8) sig[0] = 0;
        fclose(f);
    }
    test_check(ok && sig[0] == 0x89 && sig[1] == 'P', "curves PNG written%s%s", ok ? "" : ": ", ok ? "" : err.msg);
    free(t);
    free(u);
    train_log_free(&l);
    train_log_free(&m);
    train_log_free(&o);
    char *p1 = train_derived_path("dir/m.tsz", ".ckpt"), *p2 = train_derived_path("model", ".best.tsz");
    test_check(!strcmp(p1, "dir/m.ckpt") && !strcmp(p2, "model.best.tsz"), "derived paths: %s, %s", p1, p2);
    free(p1);
    free(p2);
}

static nn_model *tiny_model(int classes, uint64_t seed)
{
    nn_config c;
    nn_config_default(&c);
    c.width = 2, c.in_ch = 1, c.num_classes = classes;
    struct util_err err = {{0}};
    nn_model *m = nn_model_create(&c, &err);
    if (m) nn_model_init(m, seed);
    return m;
}

static void test_ckpt(void)
{
    struct util_err err = {{0}};
    nn_model *m = tiny_model(3, 5), *m2 = tiny_model(3, 6);
    nn_optim_opts oo;
    nn_optim_opts_default(&oo, NN_OPT_ADAM);
    nn_optim *opt = nn_optim_create(m, &oo, &err), *opt2 = nn_optim_create(m2, &oo, &err);
    nn_ws *ws = nn_ws_create(m, 4, 16, 16, &err);
    float x[4 * 256];
    util_rng r;
    util_rng_seed(&r, 3);
    for (int i = 0; i < 4 * 256; i++) x[i] = (float)util_rng_normal(&r);
    const int32_t lab[4] = {0, 1, 2, 0};
    float dl[12];
    nn_zero_grad(m);
    const float *out = nn_forward(m, ws, x, 4, 1);
    nn_loss_ce(out, 4, 3, lab, NULL, 0, dl, NULL);
    nn_backward(m, ws, dl, NULL);
    nn_optim_step(opt, 1e-3);
    tsz_attrs st;
    tsz_attrs_init(&st);
    tsz_attrs_set(&st, "epoch", "1");
    tsz_attrs_set(&st, "train_config", "lr=1 seed=2");
    const char *cols[] = {"epoch", "loss"};
    train_log l, l2;
    train_log_init(&l, cols, 2, &err);
    train_log_init(&l2, cols, 2, &err);
    const double row[2] = {1, 0.5};
    train_log_add(&l, row, &err);
    int ok = train_ckpt_save("m.ckpt", m, opt, &st, &l, &err) == 0;
    test_check(ok, "checkpoint saved%s%s", ok ? "" : ": ", ok ? "" : err.msg);
    tsz_attrs got;
    tsz_attrs_init(&got);
    ok = train_ckpt_load("m.ckpt", m2, opt2, &got, &l2, "lr=1 seed=2", &err) == 0;
    test_check(ok, "checkpoint loaded%s%s", ok ? "" : ": ", ok ? "" : err.msg);
    if (ok) {
        test_check(!memcmp(m->params, m2->params, sizeof(float) * m->n_params) &&
                       !memcmp(m->bufs, m2->bufs, sizeof(float) * m->n_bufs) &&
                       !memcmp(m->tracked, m2->tracked, sizeof(int64_t) * m->n_tracked),
                   "checkpoint: parameters, running statistics and counters restored bit for bit");
        test_check(opt2->t == 1 && !memcmp(opt->s1, opt2->s1, sizeof(float) * m->n_params) &&
                       !memcmp(opt->s2, opt2->s2, sizeof(float) * m->n_params),
                   "checkpoint: Adam moments and step count restored");
        const char *e = tsz_attrs_get(&got, "epoch");
        test_check(e && !strcmp(e, "1") && l2.n_rows == 1 && l2.v[1] == 0.5, "checkpoint: trainer state and log restored");
    }
    struct util_err e2 = {{0}};
    test_check(train_ckpt_load("m.ckpt", m2, opt2, NULL, NULL, "lr=2 seed=2", &e2) < 0 && strstr(e2.msg, "lr=1") &&
                   strstr(e2.msg, "lr=2"),
               "checkpoint with other options refused: %s", e2.msg);
    nn_model *m3 = tiny_model(4, 1);
    test_check(train_ckpt_load("m.ckpt", m3, NULL, NULL, NULL, NULL, &e2) < 0 && strstr(e2.msg, "classes"),
               "checkpoint of another model refused: %s", e2.msg);
    nn_model_free(m3);
    tsz_attrs_free(&st);
    tsz_attrs_free(&got);
    train_log_free(&l);
    train_log_free(&l2);
    nn_ws_free(ws);
    nn_optim_free(opt);
    nn_optim_free(opt2);
    nn_model_free(m);
    nn_model_free(m2);
}

/* Embedding through train_embed in batches of 3 must give, row for row, what one forward of the whole
 * set gives in nn_ws_features / logits, also across a change of input size. */
static void test_embed(void)
{
    struct util_err err = {{0}};
    nn_model *m = tiny_model(3, 9);
    /* give the running statistics non-trivial values so that eval mode matters */
    for (int64_t i = 0; i < m->n_bufs; i++) m->bufs[i] = 0.5f + 0.01f * (float)(i % 7);
    const int n = 7;
    float x[7 * 256];
    util_rng r;
    util_rng_seed(&r, 4);
    for (int i = 0; i < n * 256; i++) x[i] = (float)util_rng_uniform(&r);
    tsz_writer *w = tsz_writer_open("e.tsz", NULL, -1, NULL, &err);
    const int64_t sh[3] = {1, 16, 16}, sh2[3] = {1, 20, 16};
    for (int i = 0; i < n; i++) tsz_write_f32(w, "a", i, i + 1, 3, sh, x + i * 256, &err);
    float big[320];
    for (int i = 0; i < 320; i++) big[i] = (float)util_rng_uniform(&r);
    tsz_write_f32(w, "big", 1, 0, 3, sh2, big, &err);
    tsz_writer_finish(w, &err);
    tsz_writer_close(w);

    for (int kind = 0; kind < 3; kind++) {
        train_reader in;
        train_reader_open(&in, "e.tsz", &err);
        tsz_writer *o = tsz_writer_open("f.tsz", NULL, -1, NULL, &err);
        train_embed_opts eo = {.kind = kind, .layer = NULL, .batch = 3};
        int ok = train_embed(m, &in, o, &eo, 0, &err) == 0 && tsz_writer_finish(o, &err) == 0;
        tsz_writer_close(o);
        train_reader_close(&in);
        test_check(ok, "embed kind %d ran%s%s", kind, ok ? "" : ": ", ok ? "" : err.msg);
        if (!ok) continue;
        nn_ws *ws = nn_ws_create(m, n, 16, 16, &err);
        const float *out = nn_forward(m, ws, x, n, 0);
        const int D = kind == 0 ? m->feat_dim : 3;
        const float *ref = kind == 0 ? nn_ws_features(ws) : out;
        tsz_reader *rd = tsz_reader_open("f.tsz", &err);
        tsz_rec rec;
        float row[64];
        double maxd = 0;
        int meta = 1, count = 0;
        double psum = 0;
        while (tsz_next(rd, &rec, &err) == 1 && count < n) {
            tsz_read_data_f32(rd, &rec, row, 64, &err);
            meta &= rec.ndim == 1 && rec.shape[0] == D && rec.label == count && rec.fold == count + 1;
            for (int j = 0; j < D; j++) {
                double want = ref[count * D + j];
                if (kind == 2) {
                    double mx = -1e30, s = 0;
                    for (int t = 0; t < D; t++) mx = fmax(mx, ref[count * D + t]);
                    for (int t = 0; t < D; t++) s += exp(ref[count * D + t] - mx);
                    want = exp(want - mx) / s;
                    psum += row[j];
                }
                maxd = fmax(maxd, fabs(row[j] - want));
            }
            count++;
        }
        /* the batch of 3 and the batch of 7 run GEMMs of other shapes: allow float rounding */
        test_check(count == n && meta && maxd < 1e-5,
                   "embed kind %d in batches of 3 matches one forward (max diff %.2g), names/labels/folds kept", kind,
                   maxd);
        if (kind == 2) test_check(fabs(psum - n) < 1e-4, "probabilities sum to 1 per row (total %.6f)", psum);
        tsz_reader_close(rd);
        nn_ws_free(ws);
    }
    /* a layer */
    train_reader in;
    train_reader_open(&in, "e.tsz", &err);
    tsz_writer *o = tsz_writer_open("g.tsz", NULL, -1, NULL, &err);
    train_embed_opts eo = {.kind = 0, .layer = "layer2", .batch = 4};
    int ok = train_embed(m, &in, o, &eo, 0, &err) == 0 && tsz_writer_finish(o, &err) == 0;
    tsz_writer_close(o);
    train_reader_close(&in);
    tsz_reader *rd = tsz_reader_open("g.tsz", &err);
    tsz_rec rec;
    int cnt = 0, shape_ok = 1;
    while (rd && tsz_next(rd, &rec, &err) == 1) {
        shape_ok &= rec.shape[0] == nn_layer_channels(m, "layer2");
        tsz_skip_data(rd, &err);
        cnt++;
    }
    tsz_reader_close(rd);
    test_check(ok && cnt == n + 1 && shape_ok, "embed --layer layer2: %d records of %d values", cnt,
               nn_layer_channels(m, "layer2"));
    nn_model_free(m);
}

int main(int argc, char **argv)
{
    if (argc > 1 && !strcmp(argv[1], "gen")) return gen_main(argc, argv);
    if (argc > 1 && !strcmp(argv[1], "cmp")) return cmp_main(argc, argv);
    if (argc > 1 && !strcmp(argv[1], "genmodel")) return genmodel_main(argc, argv);
    nn_set_threads(1);
    test_orders();
    test_data();
    test_log();
    test_ckpt();
    test_embed();
    return test_exit();
}
