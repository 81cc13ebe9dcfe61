/* score.c: the `score` tool — accuracy, top-5, balanced accuracy, macro precision/recall/F1, the
 * per-class table and confusion matrix of logit or probability streams (from embed --logits), per
 * fold with mean and standard deviation across folds, as text, JSON, CSV or a PNG heat map; and
 * `--compare A... -- B...`, the paired comparison of two methods on the same clips. */
#include <getopt.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "metric.h"
#include "tsz.h"
#include "util.h"

static const char help[] =
    "Usage: score [OPTION]... [FILE]...\n"
    "   or: score --compare [OPTION]... A_FILE... -- B_FILE...\n"
    "Score streams of logits or probabilities (one f32 vector of class scores per record, the true\n"
    "class in the record's label; e.g. from embed --logits).  Several FILEs are folds; one FILE whose\n"
    "records carry several fold numbers is split by fold.  Default: standard input.\n"
    "  -o, --output=FILE    write the report to FILE instead of stdout\n"
    "      --json           report as JSON\n"
    "      --csv            report as CSV rows: scope,class,metric,value\n"
    "      --png=FILE       draw the confusion matrix (all folds together) with class names\n"
    "      --title=TEXT     title of the picture\n"
    "  -c, --compare        compare method A (files before '--') with method B (files after)\n"
    "      --bootstrap=N    bootstrap resamples for the confidence interval (default 10000)\n"
    "      --confidence=X   confidence level of the interval (default 0.95)\n"
    "      --seed=N         seed of the bootstrap (default 0)\n"
    "  -h, --help           show this help and exit\n"
    "  -V, --version        show the version and exit\n"
    "Undefined ratios (precision of a class never predicted, ...) count as 0; see score(1).\n"
    "Exit status: 0 success, 1 runtime error, 2 usage error.  See score(1), embed(1), tsz(5).\n";

enum { FMT_TEXT, FMT_JSON, FMT_CSV };
enum { OPT_JSON = 1000, OPT_CSV, OPT_PNG, OPT_TITLE, OPT_BOOT, OPT_CONF, OPT_SEED };

struct opts {
    const char *output, *png, *title;
    int format, compare, n_boot;
    double confidence;
    uint64_t seed;
    char **a, **b;   /* input files of (method A and) method B */
    int n_a, n_b;
};

/* One clip as scored: which fold, its name, true and predicted class. */
struct clip {
    int fold;           /* index into the set's folds */
    int label, pred;
    uint8_t top5;
    char *name;
};

/* A method's predictions: classes, folds (one per file, or per fold number of a single file). */
struct set {
    int n_classes;
    char **classes;
    int n_names;        /* names in the classes attribute (0 if none) */
    int n_folds;
    char **fold_name;   /* file path, or "fold N" */
    metric_counts *counts;   /* (n_folds) */
    metric_counts pooled;
    struct clip *clips;
    int64_t n_clips, cap;
    const char *first_path;
};

static void set_free(struct set *s)
{
    for (int f = 0; f < s->n_folds; f++) {
        metric_counts_free(&s->counts[f]);
        free(s->fold_name[f]);
    }
    free(s->counts);
    free(s->fold_name);
    metric_counts_free(&s->pooled);
    for (int64_t i = 0; i < s->n_clips; i++) free(s->clips[i].name);
    free(s->clips);
    tsz_free_classes(s->classes, s->n_names);
    memset(s, 0, sizeof *s);
}

static int add_fold(struct set *s, const char *name, struct util_err *err)
{
    metric_counts *c = realloc(s->counts, sizeof *c * (size_t)(s->n_folds + 1));
    if (!c) return util_err_set(err, "out of memory");
    s->counts = c;
    char **fn = realloc(s->fold_name, sizeof *fn * (size_t)(s->n_folds + 1));
    if (!fn) return util_err_set(err, "out of memory");
    s->fold_name = fn;
    if (!(s->fold_name[s->n_folds] = strdup(name))) return util_err_set(err, "out of memory");
    memset(&s->counts[s->n_folds], 0, sizeof s->counts[0]);
    /* before the first record the number of classes is unknown: counted from then on */
    if (s->n_classes > 0 && metric_counts_init(&s->counts[s->n_folds], s->n_classes, err) < 0) {
        free(s->fold_name[s->n_folds]);
        return -1;
    }
    s->n_folds++;
    return 0;
}

static int same_classes(char **a, int na, char **b, int nb)
{
    if (na != nb) return 0;
    for (int i = 0; i < na; i++)
        if (strcmp(a[i], b[i]) != 0) return 0;
    return 1;
}

/* Read every file of one method.  by_fold: the single file is split by its records' fold numbers. */
static int read_set(char **files, int n_files, struct set *s, struct util_err *err)
{
    memset(s, 0, sizeof *s);
    s->first_path = files[0];
    float *buf = NULL;
    size_t cap = 0;
    int rc = -1;
    tsz_reader *r = NULL;
    /* a single input with several fold numbers is split by fold: map fold number -> index */
    int by_fold = n_files == 1;
    int fold_of_number[1024];
    for (int i = 0; i < 1024; i++) fold_of_number[i] = -1;
    for (int fi = 0; fi < n_files; fi++) {
        const char *path = files[fi];
        if (!(r = tsz_reader_open(path, err))) goto done;
        char **cls = NULL;
        int ncls = 0;
        if (tsz_attrs_get_classes(tsz_reader_attrs(r), &cls, &ncls) < 0) {
            util_err_set(err, "%s: cannot read the classes attribute", path);
            goto done;
        }
        if (fi == 0) {
            s->classes = cls;
            s->n_names = ncls;
        } else {
            int same = same_classes(s->classes, s->n_names, cls, ncls);
            tsz_free_classes(cls, ncls);
            if (!same) {
                util_err_set(err, "%s: class names differ from those of %s", path, files[0]);
                goto done;
            }
        }
        if (!by_fold && add_fold(s, path, err) < 0) goto done;
        tsz_rec rec;
        int st;
        int64_t n_here = 0;
        while ((st = tsz_next(r, &rec, err)) == 1) {
            int64_t idx = tsz_reader_index(r) - 1, numel = tsz_rec_numel(&rec);
            if (numel < 1 || numel > 100000) {
                util_err_set(err, "%s: record %lld: %lld scores (1..100000 classes supported)", path, (long long)idx,
                             (long long)numel);
                goto done;
            }
            if (s->n_classes == 0) {
                s->n_classes = (int)numel;
                if (s->n_names && s->n_names != s->n_classes) {
                    util_err_set(err, "%s: record %lld: %d scores, but the classes attribute names %d classes", path,
                                 (long long)idx, s->n_classes, s->n_names);
                    goto done;
                }
                if (metric_counts_init(&s->pooled, s->n_classes, err) < 0) goto done;
                for (int f = 0; f < s->n_folds; f++)
                    if (!s->counts[f].conf && metric_counts_init(&s->counts[f], s->n_classes, err) < 0) goto done;
            } else if (numel != s->n_classes) {
                util_err_set(err, "%s: record %lld: %lld scores, earlier records have %d classes", path,
                             (long long)idx, (long long)numel, s->n_classes);
                goto done;
            }
            if (rec.label < 0) {
                util_err_set(err, "%s: record %lld: no label (the true class is needed to score)", path, (long long)idx);
                goto done;
            }
            if (rec.label >= s->n_classes) {
                util_err_set(err, "%s: record %lld: label %d outside 0..%d", path, (long long)idx, rec.label,
                             s->n_classes - 1);
                goto done;
            }
            if (cap < (size_t)numel) {
                float *nb = realloc(buf, sizeof *nb * (size_t)numel);
                if (!nb) {
                    util_err_set(err, "%s: record %lld: out of memory", path, (long long)idx);
                    goto done;
                }
                buf = nb;
                cap = (size_t)numel;
            }
            if (tsz_read_data_f32(r, &rec, buf, (size_t)numel, err) < 0) goto done;
            for (int k = 0; k < s->n_classes; k++)
                if (!isfinite(buf[k])) {
                    util_err_set(err, "%s: record %lld: score %d is not finite", path, (long long)idx, k);
                    goto done;
                }
            int f;
            if (by_fold) {
                if (rec.fold < 0 || rec.fold >= 1024) {
                    util_err_set(err, "%s: record %lld: fold %d outside 0..1023", path, (long long)idx, rec.fold);
                    goto done;
                }
                if (fold_of_number[rec.fold] < 0) {
                    char nm[64];
                    if (rec.fold == 0) snprintf(nm, sizeof nm, "%s", "all");
                    else snprintf(nm, sizeof nm, "fold %d", rec.fold);
                    fold_of_number[rec.fold] = s->n_folds;
                    if (add_fold(s, nm, err) < 0) goto done;
                }
                f = fold_of_number[rec.fold];
            } else {
                f = s->n_folds - 1;
            }
            int pred = metric_argmax(buf, s->n_classes);
            int top5 = metric_rank(buf, s->n_classes, rec.label) < 5;
            metric_add_pred(&s->counts[f], rec.label, pred, top5);
            metric_add_pred(&s->pooled, rec.label, pred, top5);
            if (s->n_clips == s->cap) {
                int64_t nc = s->cap ? s->cap * 2 : 256;
                struct clip *c = realloc(s->clips, sizeof *c * (size_t)nc);
                if (!c) {
                    util_err_set(err, "%s: record %lld: out of memory", path, (long long)idx);
                    goto done;
                }
                s->clips = c;
                s->cap = nc;
            }
            struct clip *c = &s->clips[s->n_clips];
            c->fold = f;
            c->label = rec.label;
            c->pred = pred;
            c->top5 = (uint8_t)top5;
            if (!(c->name = strdup(rec.name))) {
                util_err_set(err, "%s: out of memory", path);
                goto done;
            }
            s->n_clips++;
            n_here++;
        }
        if (st < 0) goto done;
        if (n_here == 0) {
            util_err_set(err, "%s: no records", path);
            goto done;
        }
        tsz_reader_close(r);
        r = NULL;
    }
    /* folds of a split file in increasing fold number */
    if (by_fold && s->n_folds > 1) {
        int order[1024], k = 0, remap[1024];
        for (int num = 0; num < 1024; num++)
            if (fold_of_number[num] >= 0) order[k++] = fold_of_number[num];
        for (int i = 0; i < k; i++) remap[order[i]] = i;
        metric_counts *c = malloc(sizeof *c * (size_t)k);
        char **fn = malloc(sizeof *fn * (size_t)k);
        if (!c || !fn) {
            free(c); free(fn);
            util_err_set(err, "out of memory");
            goto done;
        }
        for (int i = 0; i < k; i++) {
            c[i] = s->counts[order[i]];
            fn[i] = s->fold_name[order[i]];
        }
        free(s->counts);
        free(s->fold_name);
        s->counts = c;
        s->fold_name = fn;
        for (int64_t i = 0; i < s->n_clips; i++) s->clips[i].fold = remap[s->clips[i].fold];
    }
    rc = 0;
done:
    tsz_reader_close(r);
    free(buf);
    return rc;
}

static const char *class_name(const struct set *s, int k, char *buf, size_t cap)
{
    if (k < s->n_names && s->classes[k][0]) return s->classes[k];
    snprintf(buf, cap, "class %d", k);
    return buf;
}

/* ---- reports ---- */
#define N_FIG 6
static const char *const fig_key[N_FIG] = { "accuracy", "top5", "balanced_accuracy", "macro_precision",
                                            "macro_recall", "macro_f1" };

static void figures(const metric_report *r, double *v)
{
    v[0] = r->accuracy; v[1] = r->top5; v[2] = r->balanced_accuracy;
    v[3] = r->macro_precision; v[4] = r->macro_recall; v[5] = r->macro_f1;
}

struct summary {
    metric_report *fold;   /* (n_folds) */
    metric_report pooled;
    double mean[N_FIG], sd[N_FIG];
};

static int summarise(const struct set *s, struct summary *sm, struct util_err *err)
{
    memset(sm, 0, sizeof *sm);
    sm->fold = util_calloc((size_t)s->n_folds, sizeof *sm->fold, err);
    if (!sm->fold) return -1;
    for (int f = 0; f < s->n_folds; f++)
        if (metric_report_compute(&s->counts[f], &sm->fold[f], err) < 0) return -1;
    if (metric_report_compute(&s->pooled, &sm->pooled, err) < 0) return -1;
    double *col = util_malloc((size_t)s->n_folds, sizeof *col, err);
    if (!col) return -1;
    for (int k = 0; k < N_FIG; k++) {
        for (int f = 0; f < s->n_folds; f++) {
            double v[N_FIG];
            figures(&sm->fold[f], v);
            col[f] = v[k];
        }
        metric_mean_sd(col, s->n_folds, &sm->mean[k], &sm->sd[k]);
    }
    free(col);
    return 0;
}

static void summary_free(struct summary *sm, int n_folds)
{
    if (sm->fold)
        for (int f = 0; f < n_folds; f++) metric_report_free(&sm->fold[f]);
    free(sm->fold);
    metric_report_free(&sm->pooled);
}

/* A fold's name in the 24-character column: a long file name keeps its end, which tells folds apart. */
static const char *fold_col(const char *name, char *buf, size_t cap)
{
    const size_t n = strlen(name);
    if (n <= 24) return name;
    const char *tail = name + n - 21;
    while ((*tail & 0xC0) == 0x80) tail++;   /* not in the middle of a UTF-8 character */
    snprintf(buf, cap, "...%s", tail);
    return buf;
}

static void text_report(FILE *fp, const struct set *s, const struct summary *sm)
{
    char nb[32];
    fprintf(fp, "%d fold%s, %lld clips, %d classes\n\n", s->n_folds, s->n_folds == 1 ? "" : "s",
            (long long)s->pooled.n, s->n_classes);
    fprintf(fp, "%-24s %6s %9s %7s %9s %8s %8s %9s\n", "fold", "clips", "accuracy", "top-5", "balanced", "macro-P",
            "macro-R", "macro-F1");
    for (int f = 0; f < s->n_folds; f++) {
        double v[N_FIG];
        figures(&sm->fold[f], v);
        char fb[32];
        fprintf(fp, "%-24s %6lld %9.4f %7.4f %9.4f %8.4f %8.4f %9.4f\n", fold_col(s->fold_name[f], fb, sizeof fb),
                (long long)sm->fold[f].n,
                v[0], v[1], v[2], v[3], v[4], v[5]);
    }
    if (s->n_folds > 1) {
        fprintf(fp, "%-24s %6s %9.4f %7.4f %9.4f %8.4f %8.4f %9.4f\n", "mean", "", sm->mean[0], sm->mean[1],
                sm->mean[2], sm->mean[3], sm->mean[4], sm->mean[5]);
        fprintf(fp, "%-24s %6s %9.4f %7.4f %9.4f %8.4f %8.4f %9.4f\n", "sd", "", sm->sd[0], sm->sd[1], sm->sd[2],
                sm->sd[3], sm->sd[4], sm->sd[5]);
        fprintf(fp, "accuracy over folds: %.4f +- %.4f (mean +- sample sd)\n", sm->mean[0], sm->sd[0]);
    }
    const metric_report *p = &sm->pooled;
    fprintf(fp, "\nper class%s:\n", s->n_folds > 1 ? " (all folds together)" : "");
    int w = 5;
    for (int k = 0; k < s->n_classes; k++) {
        int l = (int)strlen(class_name(s, k, nb, sizeof nb));
        if (l > w) w = l;
    }
    if (w > 40) w = 40;
    fprintf(fp, "%-*s %8s %9s %9s %7s %7s\n", w, "class", "support", "predicted", "precision", "recall", "f1");
    for (int k = 0; k < s->n_classes; k++)
        fprintf(fp, "%-*.*s %8lld %9lld %9.4f %7.4f %7.4f\n", w, w, class_name(s, k, nb, sizeof nb),
                (long long)p->support[k], (long long)p->predicted[k], p->precision[k], p->recall[k], p->f1[k]);
    fprintf(fp, "\nconfusion matrix (rows: true class, columns: predicted class by number):\n");
    int cw = 3;
    for (int k = 0; k < s->n_classes * s->n_classes; k++) {
        int l = snprintf(nb, sizeof nb, "%lld", (long long)s->pooled.conf[k]);
        if (l > cw) cw = l;
    }
    fprintf(fp, "%*s   ", w + 4, "");
    for (int k = 0; k < s->n_classes; k++) fprintf(fp, " %*d", cw, k);
    fputc('\n', fp);
    for (int t = 0; t < s->n_classes; t++) {
        fprintf(fp, "%3d %-*.*s   ", t, w, w, class_name(s, t, nb, sizeof nb));
        for (int q = 0; q < s->n_classes; q++) fprintf(fp, " %*lld", cw, (long long)s->pooled.conf[t * s->n_classes + q]);
        fputc('\n', fp);
    }
}

static json_t *figs_json(const double *v)
{
    json_t *o = json_object();
    for (int k = 0; k < N_FIG; k++) json_object_set_new(o, fig_key[k], json_real(v[k]));
    return o;
}

static json_t *report_json(const struct set *s, const struct summary *sm)
{
    char nb[32];
    json_t *root = json_object(), *cls = json_array(), *folds = json_array(), *pc = json_array(), *conf = json_array();
    json_object_set_new(root, "n_folds", json_integer(s->n_folds));
    json_object_set_new(root, "n_clips", json_integer(s->pooled.n));
    json_object_set_new(root, "n_classes", json_integer(s->n_classes));
    for (int k = 0; k < s->n_classes; k++) json_array_append_new(cls, json_string(class_name(s, k, nb, sizeof nb)));
    json_object_set_new(root, "classes", cls);
    for (int f = 0; f < s->n_folds; f++) {
        double v[N_FIG];
        figures(&sm->fold[f], v);
        json_t *o = figs_json(v);
        json_object_set_new(o, "fold", json_string(s->fold_name[f]));
        json_object_set_new(o, "clips", json_integer(sm->fold[f].n));
        json_array_append_new(folds, o);
    }
    json_object_set_new(root, "folds", folds);
    json_object_set_new(root, "mean", figs_json(sm->mean));
    json_object_set_new(root, "sd", figs_json(sm->sd));
    double v[N_FIG];
    figures(&sm->pooled, v);
    json_t *pooled = figs_json(v);
    json_object_set_new(pooled, "clips", json_integer(sm->pooled.n));
    for (int k = 0; k < s->n_classes; k++) {
        json_t *o = json_object();
        json_object_set_new(o, "class", json_string(class_name(s, k, nb, sizeof nb)));
        json_object_set_new(o, "support", json_integer(sm->pooled.support[k]));
        json_object_set_new(o, "predicted", json_integer(sm->pooled.predicted[k]));
        json_object_set_new(o, "precision", json_real(sm->pooled.precision[k]));
        json_object_set_new(o, "recall", json_real(sm->pooled.recall[k]));
        json_object_set_new(o, "f1", json_real(sm->pooled.f1[k]));
        json_array_append_new(pc, o);
        json_t *row = json_array();
        for (int q = 0; q < s->n_classes; q++) json_array_append_new(row, json_integer(s->pooled.conf[k * s->n_classes + q]));
        json_array_append_new(conf, row);
    }
    json_object_set_new(pooled, "per_class", pc);
    json_object_set_new(pooled, "confusion", conf);
    json_object_set_new(root, "pooled", pooled);
    return root;
}

/* CSV: one value per row, scope,class,metric,value; names quoted when needed. */
static void csv_field(FILE *fp, const char *s)
{
    if (strpbrk(s, ",\"\n\r")) {
        fputc('"', fp);
        for (; *s; s++) {
            if (*s == '"') fputc('"', fp);
            fputc(*s, fp);
        }
        fputc('"', fp);
    } else {
        fputs(s, fp);
    }
}

static void csv_row(FILE *fp, const char *scope, const char *cls, const char *metric, double v, int integer)
{
    csv_field(fp, scope);
    fputc(',', fp);
    csv_field(fp, cls);
    fprintf(fp, ",%s,", metric);
    if (integer) fprintf(fp, "%lld\n", (long long)v);
    else fprintf(fp, "%.6g\n", v);
}

static void csv_report(FILE *fp, const struct set *s, const struct summary *sm)
{
    char nb[32], nb2[32];
    fprintf(fp, "scope,class,metric,value\n");
    for (int f = 0; f < s->n_folds; f++) {
        double v[N_FIG];
        figures(&sm->fold[f], v);
        csv_row(fp, s->fold_name[f], "", "clips", (double)sm->fold[f].n, 1);
        for (int k = 0; k < N_FIG; k++) csv_row(fp, s->fold_name[f], "", fig_key[k], v[k], 0);
    }
    for (int k = 0; k < N_FIG; k++) csv_row(fp, "mean", "", fig_key[k], sm->mean[k], 0);
    for (int k = 0; k < N_FIG; k++) csv_row(fp, "sd", "", fig_key[k], sm->sd[k], 0);
    double v[N_FIG];
    figures(&sm->pooled, v);
    csv_row(fp, "pooled", "", "clips", (double)sm->pooled.n, 1);
    for (int k = 0; k < N_FIG; k++) csv_row(fp, "pooled", "", fig_key[k], v[k], 0);
    for (int k = 0; k < s->n_classes; k++) {
        const char *cn = class_name(s, k, nb, sizeof nb);
        csv_row(fp, "pooled", cn, "support", (double)sm->pooled.support[k], 1);
        csv_row(fp, "pooled", cn, "predicted", (double)sm->pooled.predicted[k], 1);
        csv_row(fp, "pooled", cn, "precision", sm->pooled.precision[k], 0);
        csv_row(fp, "pooled", cn, "recall", sm->pooled.recall[k], 0);
        csv_row(fp, "pooled", cn, "f1", sm->pooled.f1[k], 0);
        for (int q = 0; q < s->n_classes; q++) {
            const char *pn = class_name(s, q, nb2, sizeof nb2);
            fprintf(fp, "pooled,");
            csv_field(fp, cn);
            fputs(",", fp);
            /* metric names the predicted class */
            char *m = malloc(strlen(pn) + 16);
            if (m) {
                sprintf(m, "predicted:%s", pn);
                csv_field(fp, m);
                free(m);
            }
            fprintf(fp, ",%lld\n", (long long)s->pooled.conf[k * s->n_classes + q]);
        }
    }
}

/* ---- paired comparison ---- */
static int cmp_clip(const void *a, const void *b)
{
    const struct clip *x = *(const struct clip *const *)a, *y = *(const struct clip *const *)b;
    if (x->fold != y->fold) return x->fold < y->fold ? -1 : 1;
    return strcmp(x->name, y->name);
}

/* Pair the clips of A and B: by (fold, name) when names are unique within folds, else by position
 * within each fold.  a_ok/b_ok: correctness per pair.  0 or -1. */
static int pair_clips(const struct set *A, const struct set *B, const char *an, const char *bn, uint8_t **a_ok,
                      uint8_t **b_ok, int64_t *n_pairs, int *by_name, struct util_err *err)
{
    if (A->n_folds != B->n_folds)
        return util_err_set(err, "%s has %d folds, %s has %d: cannot pair them", an, A->n_folds, bn, B->n_folds);
    if (A->n_classes != B->n_classes)
        return util_err_set(err, "%s has %d classes, %s has %d", an, A->n_classes, bn, B->n_classes);
    if (A->n_clips != B->n_clips)
        return util_err_set(err, "%s has %lld clips, %s has %lld: cannot pair them", an, (long long)A->n_clips, bn,
                            (long long)B->n_clips);
    int64_t n = A->n_clips;
    const struct clip **pa = malloc(sizeof *pa * (size_t)n), **pb = malloc(sizeof *pb * (size_t)n);
    *a_ok = malloc((size_t)n);
    *b_ok = malloc((size_t)n);
    if (!pa || !pb || !*a_ok || !*b_ok) {
        free(pa); free(pb);
        return util_err_set(err, "out of memory");
    }
    for (int64_t i = 0; i < n; i++) {
        pa[i] = &A->clips[i];
        pb[i] = &B->clips[i];
    }
    /* names usable when none is empty and none repeats within a fold (checked after sorting) */
    int names = 1;
    for (int64_t i = 0; i < n && names; i++) names = pa[i]->name[0] && pb[i]->name[0];
    if (names) {
        qsort(pa, (size_t)n, sizeof *pa, cmp_clip);
        qsort(pb, (size_t)n, sizeof *pb, cmp_clip);
        for (int64_t i = 1; i < n && names; i++)
            if (cmp_clip(&pa[i - 1], &pa[i]) == 0 || cmp_clip(&pb[i - 1], &pb[i]) == 0) names = 0;
        if (!names) {   /* back to reading order */
            for (int64_t i = 0; i < n; i++) {
                pa[i] = &A->clips[i];
                pb[i] = &B->clips[i];
            }
        }
    }
    if (!names) {   /* by position within each fold: stable order by fold */
        int64_t k = 0;
        for (int f = 0; f < A->n_folds; f++)
            for (int64_t i = 0; i < n; i++)
                if (A->clips[i].fold == f) pa[k++] = &A->clips[i];
        k = 0;
        for (int f = 0; f < B->n_folds; f++)
            for (int64_t i = 0; i < n; i++)
                if (B->clips[i].fold == f) pb[k++] = &B->clips[i];
    }
    int rc = 0;
    for (int64_t i = 0; i < n; i++) {
        if (pa[i]->fold != pb[i]->fold || (names && strcmp(pa[i]->name, pb[i]->name) != 0)) {
            const struct clip *c = cmp_clip(&pa[i], &pb[i]) <= 0 ? pa[i] : pb[i];
            int in_a = c == pa[i];
            rc = util_err_set(err, "%s: clip '%s' (%s) has no counterpart in %s", in_a ? an : bn, util_msgname(c->name).s,
                              (in_a ? A : B)->fold_name[c->fold], in_a ? bn : an);
            break;
        }
        if (pa[i]->label != pb[i]->label) {
            rc = util_err_set(err, "clip '%s' (%s): label %d in %s, %d in %s", util_msgname(pa[i]->name).s, A->fold_name[pa[i]->fold],
                              pa[i]->label, an, pb[i]->label, bn);
            break;
        }
        (*a_ok)[i] = pa[i]->pred == pa[i]->label;
        (*b_ok)[i] = pb[i]->pred == pb[i]->label;
    }
    free(pa); free(pb);
    *n_pairs = n;
    *by_name = names;
    return rc;
}

static int compare(const struct opts *o, FILE *fp, struct util_err *err)
{
    struct set A, B;
    struct summary sa, sb;
    memset(&sa, 0, sizeof sa);
    memset(&sb, 0, sizeof sb);
    uint8_t *a_ok = NULL, *b_ok = NULL;
    int rc = -1, by_name = 0;
    int64_t n = 0;
    char an[300], bn[300];
    snprintf(an, sizeof an, "A (%s%s)", o->a[0], o->n_a > 1 ? ", ..." : "");
    snprintf(bn, sizeof bn, "B (%s%s)", o->b[0], o->n_b > 1 ? ", ..." : "");
    memset(&B, 0, sizeof B);
    if (read_set(o->a, o->n_a, &A, err) < 0) {
        set_free(&A);
        return -1;
    }
    if (read_set(o->b, o->n_b, &B, err) < 0) goto done;
    if (pair_clips(&A, &B, an, bn, &a_ok, &b_ok, &n, &by_name, err) < 0) goto done;
    if (summarise(&A, &sa, err) < 0 || summarise(&B, &sb, err) < 0) goto done;
    metric_paired pr;
    if (metric_paired_compare(a_ok, b_ok, n, o->n_boot, o->confidence, o->seed, &pr, err) < 0) goto done;
    int nf = A.n_folds;
    if (o->format == FMT_JSON) {
        json_t *root = json_object(), *fa = json_array(), *fb = json_array(), *fd = json_array();
        for (int f = 0; f < nf; f++) {
            json_array_append_new(fa, json_real(sa.fold[f].accuracy));
            json_array_append_new(fb, json_real(sb.fold[f].accuracy));
            json_array_append_new(fd, json_real(sa.fold[f].accuracy - sb.fold[f].accuracy));
        }
        json_t *ja = json_object(), *jb = json_object();
        json_object_set_new(ja, "fold_accuracy", fa);
        json_object_set_new(ja, "mean_accuracy", json_real(sa.mean[0]));
        json_object_set_new(ja, "sd_accuracy", json_real(sa.sd[0]));
        json_object_set_new(jb, "fold_accuracy", fb);
        json_object_set_new(jb, "mean_accuracy", json_real(sb.mean[0]));
        json_object_set_new(jb, "sd_accuracy", json_real(sb.sd[0]));
        json_object_set_new(root, "a", ja);
        json_object_set_new(root, "b", jb);
        json_object_set_new(root, "fold_difference", fd);
        json_object_set_new(root, "paired_by", json_string(by_name ? "name" : "position"));
        json_object_set_new(root, "clips", json_integer(pr.n));
        json_object_set_new(root, "accuracy_a", json_real(pr.acc_a));
        json_object_set_new(root, "accuracy_b", json_real(pr.acc_b));
        json_object_set_new(root, "difference", json_real(pr.diff));
        json_object_set_new(root, "confidence", json_real(pr.level));
        json_object_set_new(root, "bootstrap", json_integer(pr.n_boot));
        json_object_set_new(root, "ci_low", json_real(pr.ci_lo));
        json_object_set_new(root, "ci_high", json_real(pr.ci_hi));
        json_object_set_new(root, "both_right", json_integer(pr.both));
        json_object_set_new(root, "a_only_right", json_integer(pr.a_only));
        json_object_set_new(root, "b_only_right", json_integer(pr.b_only));
        json_object_set_new(root, "both_wrong", json_integer(pr.neither));
        json_object_set_new(root, "mcnemar_exact_p", json_real(pr.p_exact));
        json_object_set_new(root, "mcnemar_chi2", json_real(pr.chi2));
        json_object_set_new(root, "mcnemar_chi2_p", json_real(pr.p_chi2));
        int bad = json_dumpf(root, fp, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(10)) < 0;
        fputc('\n', fp);
        json_decref(root);
        if (bad) {
            util_err_set(err, "cannot write the report");
            goto done;
        }
    } else if (o->format == FMT_CSV) {
        fprintf(fp, "scope,class,metric,value\n");
        for (int f = 0; f < nf; f++) {
            csv_row(fp, A.fold_name[f], "", "accuracy_a", sa.fold[f].accuracy, 0);
            csv_row(fp, A.fold_name[f], "", "accuracy_b", sb.fold[f].accuracy, 0);
        }
        csv_row(fp, "mean", "", "accuracy_a", sa.mean[0], 0);
        csv_row(fp, "mean", "", "accuracy_b", sb.mean[0], 0);
        csv_row(fp, "sd", "", "accuracy_a", sa.sd[0], 0);
        csv_row(fp, "sd", "", "accuracy_b", sb.sd[0], 0);
        csv_row(fp, "paired", "", "clips", (double)pr.n, 1);
        csv_row(fp, "paired", "", "difference", pr.diff, 0);
        csv_row(fp, "paired", "", "ci_low", pr.ci_lo, 0);
        csv_row(fp, "paired", "", "ci_high", pr.ci_hi, 0);
        csv_row(fp, "paired", "", "a_only_right", (double)pr.a_only, 1);
        csv_row(fp, "paired", "", "b_only_right", (double)pr.b_only, 1);
        csv_row(fp, "paired", "", "mcnemar_exact_p", pr.p_exact, 0);
        csv_row(fp, "paired", "", "mcnemar_chi2_p", pr.p_chi2, 0);
    } else {
        fputs("A:", fp);
        for (int i = 0; i < o->n_a; i++) fprintf(fp, " %s", o->a[i]);
        fputs("\nB:", fp);
        for (int i = 0; i < o->n_b; i++) fprintf(fp, " %s", o->b[i]);
        fputs("\n\n", fp);
        fprintf(fp, "%-24s %10s %10s %10s\n", "fold", "accuracy A", "accuracy B", "A - B");
        for (int f = 0; f < nf; f++) {
            char fb[32];
            fprintf(fp, "%-24s %10.4f %10.4f %+10.4f\n", fold_col(A.fold_name[f], fb, sizeof fb), sa.fold[f].accuracy,
                    sb.fold[f].accuracy, sa.fold[f].accuracy - sb.fold[f].accuracy);
        }
        if (nf > 1)
            fprintf(fp, "%-24s %10.4f %10.4f %+10.4f\n%-24s %10.4f %10.4f\n", "mean", sa.mean[0], sb.mean[0],
                    sa.mean[0] - sb.mean[0], "sd", sa.sd[0], sb.sd[0]);
        fprintf(fp, "\n%lld clips paired by %s\n", (long long)pr.n, by_name ? "name" : "position");
        fprintf(fp, "accuracy A %.4f, B %.4f, difference A - B %+.4f, %g%% bootstrap interval [%+.4f, %+.4f] (%d resamples)\n",
                pr.acc_a, pr.acc_b, pr.diff, 100 * pr.level, pr.ci_lo, pr.ci_hi, pr.n_boot);
        fprintf(fp, "both right %lld, only A right %lld, only B right %lld, both wrong %lld\n", (long long)pr.both,
                (long long)pr.a_only, (long long)pr.b_only, (long long)pr.neither);
        fprintf(fp, "McNemar: exact p = %.4g, chi-squared (continuity corrected) %.4f, p = %.4g\n", pr.p_exact, pr.chi2,
                pr.p_chi2);
    }
    rc = 0;
done:
    summary_free(&sa, A.n_folds);
    summary_free(&sb, B.n_folds);
    set_free(&A);
    set_free(&B);
    free(a_ok);
    free(b_ok);
    return rc;
}

static void parse_args(int argc, char **argv, struct opts *o)
{
    static const struct option lo[] = {
        {"output", required_argument, NULL, 'o'}, {"json", no_argument, NULL, OPT_JSON},
        {"csv", no_argument, NULL, OPT_CSV}, {"png", required_argument, NULL, OPT_PNG},
        {"title", required_argument, NULL, OPT_TITLE}, {"compare", no_argument, NULL, 'c'},
        {"bootstrap", required_argument, NULL, OPT_BOOT}, {"confidence", required_argument, NULL, OPT_CONF},
        {"seed", required_argument, NULL, OPT_SEED}, {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'}, {0}};
    /* "--" separates the two methods of --compare: options are parsed only before it */
    int split = argc;
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--") == 0) {
            split = i;
            break;
        }
    int c;
    while ((c = getopt_long(split, argv, ":o:chV", lo, NULL)) != -1) {
        switch (c) {
        case 'o': o->output = optarg; break;
        case OPT_JSON: o->format = FMT_JSON; break;
        case OPT_CSV: o->format = FMT_CSV; break;
        case OPT_PNG: o->png = optarg; break;
        case OPT_TITLE: o->title = optarg; break;
        case 'c': o->compare = 1; break;
        case OPT_BOOT: o->n_boot = (int)util_opt_long("--bootstrap", optarg, 1, 10000000); break;
        case OPT_CONF: o->confidence = util_opt_double("--confidence", optarg, 0.5, 0.9999); break;
        case OPT_SEED: o->seed = (uint64_t)util_opt_long("--seed", optarg, 0, INT64_MAX); break;
        case 'h': fputs(help, stdout); exit(fflush(stdout) == 0 ? 0 : 1);
        case 'V': util_print_version();
        default: util_option_error(c, argv);
        }
    }
    static char *dash[] = { "-" };
    o->a = argv + optind;
    o->n_a = split - optind;
    o->b = split < argc ? argv + split + 1 : NULL;
    o->n_b = split < argc ? argc - split - 1 : 0;
    if (o->compare) {
        if (o->n_a < 1 || o->n_b < 1) util_usage_error("--compare needs files of method A, '--', files of method B");
        if (o->png) util_usage_error("--png is for scoring one method, not with --compare");
    } else {
        if (o->n_b > 0) {   /* plain "--": the files after it are inputs too */
            if (o->n_a == 0) {
                o->a = o->b;
                o->n_a = o->n_b;
            } else {
                util_usage_error("'--' separates two methods: use it with --compare");
            }
            o->n_b = 0;
        }
        if (o->n_a == 0) {
            o->a = dash;
            o->n_a = 1;
        }
    }
    int n_stdin = 0;
    for (int i = 0; i < o->n_a; i++) n_stdin += strcmp(o->a[i], "-") == 0;
    for (int i = 0; i < o->n_b; i++) n_stdin += strcmp(o->b[i], "-") == 0;
    if (n_stdin > 1) util_usage_error("standard input ('-') given more than once");
}

int main(int argc, char **argv)
{
    util_set_progname(argv[0]);
    struct opts o;
    memset(&o, 0, sizeof o);
    o.output = "-";
    o.n_boot = 10000;
    o.confidence = 0.95;
    parse_args(argc, argv, &o);

    struct util_err err = {{0}};
    util_atomic_file af;
    int opened = 0, rc = 1;
    struct set s;
    struct summary sm;
    memset(&s, 0, sizeof s);
    memset(&sm, 0, sizeof sm);
    /* read and compute everything first, so a failure leaves no partial report */
    if (!o.compare) {
        if (read_set(o.a, o.n_a, &s, &err) < 0 || summarise(&s, &sm, &err) < 0) goto done;
    }
    if (util_atomic_open(&af, o.output, &err) < 0) goto done;
    opened = 1;
    if (o.compare) {
        if (compare(&o, af.fp, &err) < 0) goto done;
    } else if (o.format == FMT_JSON) {
        json_t *root = report_json(&s, &sm);
        int bad = json_dumpf(root, af.fp, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(10)) < 0;
        fputc('\n', af.fp);
        json_decref(root);
        if (bad) {
            util_err_set(&err, "%s: cannot write the report", o.output);
            goto done;
        }
    } else if (o.format == FMT_CSV) {
        csv_report(af.fp, &s, &sm);
    } else {
        text_report(af.fp, &s, &sm);
    }
    if (!o.compare && o.png) {
        char title[300];
        if (!o.title) {
            if (s.n_folds > 1)
                snprintf(title, sizeof title, "%lld clips, %d folds: accuracy %.3f +- %.3f", (long long)s.pooled.n,
                         s.n_folds, sm.mean[0], sm.sd[0]);
            else
                snprintf(title, sizeof title, "%lld clips: accuracy %.3f, macro F1 %.3f", (long long)s.pooled.n,
                         sm.pooled.accuracy, sm.pooled.macro_f1);
        }
        if (metric_confusion_png(&s.pooled, s.classes, s.n_names, o.title ? o.title : title, o.png, &err) < 0) goto done;
    }
    opened = 0;
    if (util_atomic_commit(&af, &err) < 0) goto done;
    rc = 0;
done:
    if (opened) util_atomic_abort(&af);
    if (rc) util_report(&err);
    summary_free(&sm, s.n_folds);
    set_free(&s);
    return rc;
}
