/* metric.c: confusion counts and the figures derived from them, fold aggregation, paired bootstrap
 * and McNemar's test, and the confusion-matrix picture.  Conventions for undefined ratios follow
 * scikit-learn (zero_division=0) and are stated in metric.h and score(1). */
#include "metric.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn.h"
#include "plot.h"

int metric_counts_init(metric_counts *c, int n_classes, struct util_err *err)
{
    memset(c, 0, sizeof *c);
    if (n_classes < 1 || n_classes > 100000)
        return util_err_set(err, "%d classes (1..100000 supported)", n_classes);
    c->conf = util_calloc((size_t)n_classes * (size_t)n_classes, sizeof *c->conf, err);
    if (!c->conf) return -1;
    c->n_classes = n_classes;
    return 0;
}

void metric_counts_free(metric_counts *c)
{
    if (!c) return;
    free(c->conf);
    memset(c, 0, sizeof *c);
}

int metric_argmax(const float *s, int n)
{
    int best = 0;
    for (int k = 1; k < n; k++)
        if (s[k] > s[best]) best = k;
    return best;
}

int metric_rank(const float *s, int n, int label)
{
    int r = 0;
    for (int k = 0; k < n; k++)
        if (s[k] > s[label] || (s[k] == s[label] && k < label)) r++;
    return r;
}

void metric_add_pred(metric_counts *c, int label, int pred, int in_top5)
{
    c->conf[(size_t)label * (size_t)c->n_classes + (size_t)pred]++;
    c->n++;
    c->n_top5 += in_top5 != 0;
}

int metric_add(metric_counts *c, const float *scores, int label)
{
    int pred = metric_argmax(scores, c->n_classes);
    metric_add_pred(c, label, pred, metric_rank(scores, c->n_classes, label) < 5);
    return pred;
}

int metric_counts_merge(metric_counts *dst, const metric_counts *src, struct util_err *err)
{
    if (dst->n_classes != src->n_classes)
        return util_err_set(err, "cannot merge counts of %d and %d classes", dst->n_classes, src->n_classes);
    size_t nn = (size_t)dst->n_classes * (size_t)dst->n_classes;
    for (size_t i = 0; i < nn; i++) dst->conf[i] += src->conf[i];
    dst->n += src->n;
    dst->n_top5 += src->n_top5;
    return 0;
}

void metric_report_free(metric_report *r)
{
    if (!r) return;
    free(r->precision); free(r->recall); free(r->f1);
    free(r->support); free(r->predicted); free(r->present);
    memset(r, 0, sizeof *r);
}

int metric_report_compute(const metric_counts *c, metric_report *r, struct util_err *err)
{
    int K = c->n_classes;
    memset(r, 0, sizeof *r);
    r->precision = util_calloc((size_t)K, sizeof(double), err);
    r->recall = util_calloc((size_t)K, sizeof(double), err);
    r->f1 = util_calloc((size_t)K, sizeof(double), err);
    r->support = util_calloc((size_t)K, sizeof(int64_t), err);
    r->predicted = util_calloc((size_t)K, sizeof(int64_t), err);
    r->present = util_calloc((size_t)K, 1, err);
    if (!r->precision || !r->recall || !r->f1 || !r->support || !r->predicted || !r->present) {
        metric_report_free(r);
        return -1;
    }
    r->n_classes = K;
    r->n = c->n;
    int64_t correct = 0;
    for (int t = 0; t < K; t++)
        for (int p = 0; p < K; p++) {
            int64_t v = c->conf[(size_t)t * K + p];
            r->support[t] += v;
            r->predicted[p] += v;
            if (t == p) correct += v;
        }
    if (c->n == 0) return 0;
    r->accuracy = (double)correct / (double)c->n;
    r->top5 = (double)c->n_top5 / (double)c->n;
    int n_present = 0, n_true = 0;
    double sp = 0, sr = 0, sf = 0, sbal = 0;
    for (int k = 0; k < K; k++) {
        int64_t tp = c->conf[(size_t)k * K + k];
        double p = r->predicted[k] ? (double)tp / (double)r->predicted[k] : 0;
        double rc = r->support[k] ? (double)tp / (double)r->support[k] : 0;
        double f = p + rc > 0 ? 2 * p * rc / (p + rc) : 0;
        r->precision[k] = p;
        r->recall[k] = rc;
        r->f1[k] = f;
        r->present[k] = r->support[k] > 0 || r->predicted[k] > 0;
        if (r->present[k]) { n_present++; sp += p; sr += rc; sf += f; }
        if (r->support[k] > 0) { n_true++; sbal += rc; }
    }
    r->macro_precision = sp / n_present;   /* n > 0 implies at least one class present */
    r->macro_recall = sr / n_present;
    r->macro_f1 = sf / n_present;
    r->balanced_accuracy = sbal / n_true;
    return 0;
}

void metric_mean_sd(const double *x, int n, double *mean, double *sd)
{
    double m = 0, s = 0;
    for (int i = 0; i < n; i++) m += x[i];
    m /= n;
    for (int i = 0; i < n; i++) s += (x[i] - m) * (x[i] - m);
    *mean = m;
    *sd = n > 1 ? sqrt(s / (n - 1)) : 0;
}

double metric_mcnemar_exact(int64_t b, int64_t c)
{
    int64_t n = b + c, k = b < c ? b : c;
    if (n == 0) return 1;
    /* Two-sided: twice the lower binomial(n, 1/2) tail, summed in log space so large n is fine. */
    double lnf = lgamma((double)n + 1), s = 0;
    for (int64_t i = 0; i <= k; i++)
        s += exp(lnf - lgamma((double)i + 1) - lgamma((double)(n - i) + 1) - (double)n * M_LN2);
    double p = 2 * s;
    return p > 1 ? 1 : p;
}

double metric_mcnemar_chi2(int64_t b, int64_t c, double *stat)
{
    double d = fabs((double)b - (double)c) - 1;
    double x = b + c > 0 && d > 0 ? d * d / (double)(b + c) : 0;
    if (stat) *stat = x;
    return erfc(sqrt(x / 2));   /* chi-squared with 1 dof: P(X > x) = P(|N(0,1)| > sqrt(x)) */
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double quantile_sorted(const double *v, int n, double q)
{
    double pos = q * (n - 1);
    int i = (int)floor(pos);
    if (i >= n - 1) return v[n - 1];
    double f = pos - i;
    return v[i] + f * (v[i + 1] - v[i]);
}

int metric_paired_compare(const uint8_t *a_ok, const uint8_t *b_ok, int64_t n, int n_boot, double level,
                          uint64_t seed, metric_paired *out, struct util_err *err)
{
    memset(out, 0, sizeof *out);
    if (n < 1) return util_err_set(err, "no paired clips to compare");
    if (n_boot < 1) n_boot = 1;
    out->n = n;
    out->n_boot = n_boot;
    out->level = level;
    int8_t *d = util_malloc((size_t)n, 1, err);
    double *boot = util_malloc((size_t)n_boot, sizeof *boot, err);
    if (!d || !boot) {
        free(d); free(boot);
        return -1;
    }
    for (int64_t i = 0; i < n; i++) {
        int a = a_ok[i] != 0, b = b_ok[i] != 0;
        out->both += a && b;
        out->a_only += a && !b;
        out->b_only += !a && b;
        out->neither += !a && !b;
        d[i] = (int8_t)(a - b);
    }
    out->acc_a = (double)(out->both + out->a_only) / (double)n;
    out->acc_b = (double)(out->both + out->b_only) / (double)n;
    out->diff = out->acc_a - out->acc_b;
    /* Resample clips with replacement; resample r uses its own RNG stream so the result does not
     * depend on how the loop is split. */
    for (int r = 0; r < n_boot; r++) {
        util_rng g = util_rng_split(seed, (uint64_t)r);
        int64_t s = 0;
        for (int64_t i = 0; i < n; i++) s += d[util_rng_below(&g, (uint64_t)n)];
        boot[r] = (double)s / (double)n;
    }
    qsort(boot, (size_t)n_boot, sizeof *boot, cmp_double);
    out->ci_lo = quantile_sorted(boot, n_boot, (1 - level) / 2);
    out->ci_hi = quantile_sorted(boot, n_boot, 1 - (1 - level) / 2);
    out->p_exact = metric_mcnemar_exact(out->a_only, out->b_only);
    out->p_chi2 = metric_mcnemar_chi2(out->a_only, out->b_only, &out->chi2);
    free(d);
    free(boot);
    return 0;
}

/* ---- confusion matrix picture ---- */
static plot_rgb ramp(double t)   /* white to a deep blue, so dark cells mean a large share */
{
    const double lo[3] = { 255, 255, 255 }, hi[3] = { 8, 48, 107 };
    if (!(t > 0)) t = 0;
    if (t > 1) t = 1;
    t = sqrt(t);   /* small shares of a row stay visible */
    plot_rgb c = { (uint8_t)lrint(lo[0] + (hi[0] - lo[0]) * t), (uint8_t)lrint(lo[1] + (hi[1] - lo[1]) * t),
                   (uint8_t)lrint(lo[2] + (hi[2] - lo[2]) * t) };
    return c;
}

static const char *class_name(char **names, int n_names, int k, char *buf, size_t cap)
{
    if (names && k < n_names && names[k] && names[k][0]) return names[k];
    snprintf(buf, cap, "class %d", k);
    return buf;
}

int metric_confusion_png(const metric_counts *c, char **names, int n_names, const char *title,
                         const char *path, struct util_err *err)
{
    int K = c->n_classes;
    if (K > 200) return util_err_set(err, "%s: %d classes are too many to draw (200 at most)", path, K);
    const plot_rgb white = { 255, 255, 255 }, black = { 0, 0, 0 }, grey = { 150, 150, 150 };
    int cs = K <= 12 ? 64 : K <= 25 ? 40 : K <= 60 ? 20 : 12;   /* cell size */
    int ts = cs >= 40 ? 2 : 1;                                    /* text scale */
    char buf[64], nb[32];
    int name_w = 0;
    for (int k = 0; k < K; k++) {
        int w = plot_text_width(class_name(names, n_names, k, nb, sizeof nb), ts);
        if (w > name_w) name_w = w;
    }
    int th = plot_text_height(ts), th2 = plot_text_height(2);
    int x0 = 20 + th2 + 12 + name_w + 10;          /* "true class" label, row names, gap */
    int y0 = title ? 20 + th2 + 20 : 20;
    int side = K * cs;
    int sup_w = 0;
    for (int k = 0; k < K; k++) {
        int64_t s = 0;
        for (int p = 0; p < K; p++) s += c->conf[(size_t)k * K + p];
        snprintf(buf, sizeof buf, "n=%lld", (long long)s);
        int w = plot_text_width(buf, ts);
        if (w > sup_w) sup_w = w;
    }
    int bar_x = x0 + side + 16 + sup_w + 24;
    int W = bar_x + 24 + plot_text_width("1.0", 2) + 20;
    int tw = title ? plot_text_width(title, 2) + 40 : 0;
    if (W < tw) W = tw;
    int H = y0 + side + 10 + name_w + 14 + th2 + 20;
    plot_canvas cv;
    if (plot_canvas_create(&cv, W, H, white, err) < 0) return -1;

    for (int t = 0; t < K; t++) {
        int64_t row = 0;
        for (int p = 0; p < K; p++) row += c->conf[(size_t)t * K + p];
        for (int p = 0; p < K; p++) {
            int64_t v = c->conf[(size_t)t * K + p];
            double share = row ? (double)v / (double)row : 0;
            int x = x0 + p * cs, y = y0 + t * cs;
            plot_fill_rect(&cv, x, y, cs, cs, ramp(share));
            snprintf(buf, sizeof buf, "%lld", (long long)v);
            int s = ts;
            while (s > 1 && plot_text_width(buf, s) > cs - 4) s--;
            if (plot_text_width(buf, s) <= cs - 2 && cs >= 12) {
                plot_rgb tc = v == 0 ? grey : sqrt(share) > 0.55 ? white : black;
                plot_text(&cv, x + (cs - plot_text_width(buf, s)) / 2 + 1,
                          y + (cs - 7 * s) / 2, buf, tc, s);
            }
        }
        /* row name, right-aligned against the matrix, and the row's support on the right */
        const char *nm = class_name(names, n_names, t, nb, sizeof nb);
        plot_text(&cv, x0 - 10 - plot_text_width(nm, ts), y0 + t * cs + (cs - 7 * ts) / 2, nm, black, ts);
        snprintf(buf, sizeof buf, "n=%lld", (long long)row);
        plot_text(&cv, x0 + side + 12, y0 + t * cs + (cs - 7 * ts) / 2, buf, grey, ts);
    }
    /* grid lines between cells and a frame */
    const plot_rgb line = { 200, 200, 200 };
    for (int k = 1; k < K; k++) {
        plot_fill_rect(&cv, x0 + k * cs, y0, 1, side, line);
        plot_fill_rect(&cv, x0, y0 + k * cs, side, 1, line);
    }
    plot_rect(&cv, x0 - 1, y0 - 1, side + 2, side + 2, black);
    /* column names: rotated, ending just below the matrix */
    for (int p = 0; p < K; p++) {
        const char *nm = class_name(names, n_names, p, nb, sizeof nb);
        plot_text_vertical(&cv, x0 + p * cs + (cs - 7 * ts) / 2, y0 + side + 10, nm, black, ts);
    }
    /* axis titles */
    const char *xl = "predicted class", *yl = "true class";
    plot_text(&cv, x0 + (side - plot_text_width(xl, 2)) / 2, y0 + side + 10 + name_w + 10, xl, black, 2);
    plot_text_vertical(&cv, 20, y0 + (side - plot_text_width(yl, 2)) / 2, yl, black, 2);
    if (title) plot_text(&cv, (W - plot_text_width(title, 2)) / 2, 20, title, black, 2);
    /* colour bar: share of the row */
    for (int y = 0; y < side; y++) plot_fill_rect(&cv, bar_x, y0 + y, 18, 1, ramp(1.0 - (double)y / (side - 1 ? side - 1 : 1)));
    plot_rect(&cv, bar_x - 1, y0 - 1, 20, side + 2, black);
    plot_text(&cv, bar_x + 24, y0, "1.0", black, 2);
    plot_text(&cv, bar_x + 24, y0 + side - th2 + 4, "0.0", black, 2);
    if (side >= plot_text_width("share of row", 2) + 2 * th2 + 10)
        plot_text_vertical(&cv, bar_x + 26, y0 + (side - plot_text_width("share of row", 2)) / 2, "share of row", grey, 2);
    (void)th;
    int rc = plot_save_png(&cv, path, err);
    plot_canvas_free(&cv);
    return rc;
}

/* ---------------------------------------------------------------- k-NN ---- */

void metric_l2_normalise_rows(float *x, int64_t n, int d)
{
    for (int64_t i = 0; i < n; i++) {
        float *row = x + i * d;
        double ss = 0;
        for (int j = 0; j < d; j++) ss += (double)row[j] * row[j];
        const double inv = 1.0 / fmax(sqrt(ss), 1e-12);
        for (int j = 0; j < d; j++) row[j] = (float)(row[j] * inv);
    }
}

/* Sift-down in a min-heap of (sim, idx) keyed by sim. */
static void knn_heap_down(float *hs, int32_t *hi, int n, int i)
{
    for (;;) {
        int l = 2 * i + 1, r = l + 1, m = i;
        if (l < n && hs[l] < hs[m]) m = l;
        if (r < n && hs[r] < hs[m]) m = r;
        if (m == i) return;
        float ts = hs[i];
        hs[i] = hs[m], hs[m] = ts;
        int32_t ti = hi[i];
        hi[i] = hi[m], hi[m] = ti;
        i = m;
    }
}

/* Sift-up of the new last element c. */
static void knn_heap_up(float *hs, int32_t *hi, int c)
{
    while (c > 0 && hs[(c - 1) / 2] > hs[c]) {
        const int p = (c - 1) / 2;
        float ts = hs[p];
        hs[p] = hs[c], hs[c] = ts;
        int32_t ti = hi[p];
        hi[p] = hi[c], hi[c] = ti;
        c = p;
    }
}

int metric_knn_scores(const float *fref, const int32_t *yref, int64_t n_ref, const float *fq, int64_t n_q,
                      int64_t self0, int d, int n_classes, int k, double t, float *scores,
                      struct util_err *err)
{
    if (n_q <= 0) return 0;
    const int kk = (int)(k < n_ref ? k : n_ref);
    const int chunk = (int)(n_q < 256 ? n_q : 256);   /* queries per similarity block */
    float *sims = util_malloc((size_t)chunk * (size_t)(n_ref > 0 ? n_ref : 1), sizeof(float), err);
    float *hs = util_malloc((size_t)(kk > 0 ? kk : 1), sizeof(float), err);
    int32_t *hi = util_malloc((size_t)(kk > 0 ? kk : 1), sizeof(int32_t), err);
    double *votes = util_malloc((size_t)n_classes, sizeof(double), err);
    if (!sims || !hs || !hi || !votes) {
        free(sims), free(hs), free(hi), free(votes);
        return -1;
    }
    for (int64_t q0 = 0; q0 < n_q; q0 += chunk) {
        const int nb = (int)(n_q - q0 < chunk ? n_q - q0 : chunk);
        if (n_ref > 0) nn_sgemm(0, 1, nb, (int)n_ref, d, 1.0f, fq + q0 * d, d, fref, d, 0.0f, sims, n_ref);
        for (int i = 0; i < nb; i++) {
            const float *s = sims + (int64_t)i * n_ref;
            const int64_t left_out = self0 >= 0 ? self0 + q0 + i : -1;
            int n = 0;
            for (int64_t j = 0; j < n_ref; j++) {
                if (j == left_out) continue;
                if (n < kk) {
                    hs[n] = s[j], hi[n] = (int32_t)j;
                    knn_heap_up(hs, hi, n++);
                } else if (s[j] > hs[0]) {
                    hs[0] = s[j], hi[0] = (int32_t)j;
                    knn_heap_down(hs, hi, n, 0);
                }
            }
            /* weights relative to the best similarity: the same shares, and no overflow at small t */
            float smax = -INFINITY;
            for (int j = 0; j < n; j++) smax = hs[j] > smax ? hs[j] : smax;
            memset(votes, 0, sizeof(double) * n_classes);
            double total = 0;
            for (int j = 0; j < n; j++) {
                const int32_t y = yref[hi[j]];
                if (y < 0 || y >= n_classes) continue;
                const double w = exp(((double)hs[j] - smax) / t);
                votes[y] += w, total += w;
            }
            float *out = scores + (q0 + i) * n_classes;
            for (int c = 0; c < n_classes; c++) out[c] = total > 0 ? (float)(votes[c] / total) : 0.0f;
        }
    }
    free(sims), free(hs), free(hi), free(votes);
    return 0;
}
