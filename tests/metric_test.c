/* metric_test: metrics on hand-computed confusion matrices, the zero-division conventions (no NaN),
 * tie rules of argmax/top-5, fold mean and standard deviation, McNemar on known tables, the paired
 * bootstrap, and the confusion-matrix picture. */
#include <math.h>
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "metric.h"
#include "test.h"

static int near(double a, double b, double tol) { return fabs(a - b) <= tol; }

int main(void)
{
    struct util_err err = { { 0 } };
    metric_counts c;
    metric_report r;

    /* 3 classes, 10 clips.  Confusion (rows true): [2 1 1; 1 2 0; 0 1 2].  By hand:
     * accuracy 6/10; precision 2/3, 2/4, 2/3; recall 2/4, 2/3, 2/3; F1 4/7, 4/7, 2/3;
     * macro P 11/18, macro R 11/18, macro F1 (8/7 + 2/3)/3 = 38/63; balanced = macro R. */
    const int truth[10] = { 0, 0, 0, 0, 1, 1, 1, 2, 2, 2 }, pred[10] = { 0, 0, 1, 2, 1, 1, 0, 2, 2, 1 };
    metric_counts_init(&c, 3, &err);
    for (int i = 0; i < 10; i++) {
        float s[3] = { 0, 0, 0 };
        s[pred[i]] = 1 + 0.1f * i;
        metric_add(&c, s, truth[i]);
    }
    const int64_t want_conf[9] = { 2, 1, 1, 1, 2, 0, 0, 1, 2 };
    test_check(memcmp(c.conf, want_conf, sizeof want_conf) == 0 && c.n == 10, "3-class confusion matrix as by hand");
    metric_report_compute(&c, &r, &err);
    const double tol = 1e-12;
    test_check(near(r.accuracy, 0.6, tol) && near(r.top5, 1, tol), "accuracy 0.6, top-5 1 (%g, %g)", r.accuracy, r.top5);
    test_check(near(r.precision[0], 2.0 / 3, tol) && near(r.precision[1], 0.5, tol) && near(r.precision[2], 2.0 / 3, tol) &&
               near(r.recall[0], 0.5, tol) && near(r.recall[1], 2.0 / 3, tol) && near(r.recall[2], 2.0 / 3, tol) &&
               near(r.f1[0], 4.0 / 7, tol) && near(r.f1[1], 4.0 / 7, tol) && near(r.f1[2], 2.0 / 3, tol),
               "per-class precision/recall/F1 as by hand");
    test_check(near(r.macro_precision, 11.0 / 18, tol) && near(r.macro_recall, 11.0 / 18, tol) &&
               near(r.macro_f1, 38.0 / 63, tol) && near(r.balanced_accuracy, 11.0 / 18, tol),
               "macro P %.6f R %.6f F1 %.6f balanced %.6f (by hand 0.611111 0.611111 0.603175 0.611111)",
               r.macro_precision, r.macro_recall, r.macro_f1, r.balanced_accuracy);
    test_check(r.support[0] == 4 && r.support[1] == 3 && r.support[2] == 3 && r.predicted[0] == 3 &&
               r.predicted[1] == 4 && r.predicted[2] == 3, "support and predicted counts");
    metric_report_free(&r);

    /* merge = counting everything at once */
    metric_counts c2;
    metric_counts_init(&c2, 3, &err);
    metric_add_pred(&c2, 2, 2, 1);
    test_check(metric_counts_merge(&c2, &c, &err) == 0 && c2.n == 11 && c2.conf[8] == 3, "merge adds counts");
    metric_counts_free(&c2);
    metric_counts_init(&c2, 4, &err);
    test_check(metric_counts_merge(&c2, &c, &err) < 0, "merging 4 and 3 classes refused: %s", err.msg);
    metric_counts_free(&c2);
    metric_counts_free(&c);

    /* zero-division conventions, 5 classes:
     *  class 0: 2 clips, both right; class 1: 2 clips, never predicted (precision 0, recall 0);
     *  class 2: no clips but predicted twice (precision 0, recall 0, counted in macro P/R/F1, not in
     *  balanced accuracy); classes 3, 4: no clips, no predictions (left out of every average). */
    metric_counts_init(&c, 5, &err);
    metric_add_pred(&c, 0, 0, 1);
    metric_add_pred(&c, 0, 0, 1);
    metric_add_pred(&c, 1, 2, 1);
    metric_add_pred(&c, 1, 2, 0);
    metric_report_compute(&c, &r, &err);
    int finite = 1;
    for (int k = 0; k < 5; k++) finite &= isfinite(r.precision[k]) && isfinite(r.recall[k]) && isfinite(r.f1[k]);
    test_check(finite && r.precision[1] == 0 && r.recall[1] == 0 && r.f1[1] == 0 && r.precision[2] == 0 &&
               r.recall[2] == 0 && r.precision[3] == 0 && r.recall[4] == 0, "undefined ratios are 0, never NaN");
    test_check(near(r.macro_precision, 1.0 / 3, tol) && near(r.macro_recall, 1.0 / 3, tol) &&
               near(r.macro_f1, 1.0 / 3, tol) && near(r.balanced_accuracy, 0.5, tol) && near(r.accuracy, 0.5, tol) &&
               near(r.top5, 0.75, tol),
               "absent classes: macro over 3 present classes (%.4f), balanced over 2 true classes (%.4f), top-5 %.2f",
               r.macro_f1, r.balanced_accuracy, r.top5);
    test_check(r.present[0] && r.present[1] && r.present[2] && !r.present[3] && !r.present[4], "present flags");
    metric_report_free(&r);
    metric_counts_free(&c);
    metric_counts_init(&c, 3, &err);
    metric_report_compute(&c, &r, &err);
    test_check(r.n == 0 && r.accuracy == 0 && r.macro_f1 == 0 && r.balanced_accuracy == 0, "no examples: all zero, no NaN");
    metric_report_free(&r);
    metric_counts_free(&c);
    test_check(metric_counts_init(&c, 0, &err) < 0, "0 classes refused: %s", err.msg);

    /* ties and top-5 */
    float s[7] = { 0.1f, 0.5f, 0.5f, 0.2f, 0.5f, 0.0f, 0.3f };
    test_check(metric_argmax(s, 7) == 1, "argmax takes the lowest index among ties");
    test_check(metric_rank(s, 7, 1) == 0 && metric_rank(s, 7, 2) == 1 && metric_rank(s, 7, 4) == 2 &&
               metric_rank(s, 7, 6) == 3 && metric_rank(s, 7, 3) == 4 && metric_rank(s, 7, 0) == 5 &&
               metric_rank(s, 7, 5) == 6, "ranks follow score, then index");
    metric_counts_init(&c, 7, &err);
    metric_add(&c, s, 3);   /* rank 4: in top 5 */
    metric_add(&c, s, 0);   /* rank 5: not */
    test_check(c.n_top5 == 1, "top-5 counts rank 4 in, rank 5 out");
    metric_counts_free(&c);

    /* fold aggregation */
    double folds[5] = { 0.80, 0.85, 0.90, 0.75, 0.70 }, m, sd;
    metric_mean_sd(folds, 5, &m, &sd);
    test_check(near(m, 0.80, 1e-12) && near(sd, sqrt(0.025 / 4), 1e-12), "fold mean %.4f sd %.6f (sample sd, n-1)", m, sd);
    metric_mean_sd(folds, 1, &m, &sd);
    test_check(m == 0.80 && sd == 0, "one fold: sd 0");

    /* McNemar: b = 10, c = 2 -> exact p = 2 (1 + 12 + 66) / 2^12 = 0.0385742;
     * corrected chi2 = (10 - 2 - 1)^2 / 12 = 4.08333, p = 0.0433081 (chi-squared, 1 dof) */
    double stat, pe = metric_mcnemar_exact(10, 2), pc = metric_mcnemar_chi2(10, 2, &stat);
    test_check(near(pe, 158.0 / 4096, 1e-12) && near(stat, 49.0 / 12, 1e-12) && near(pc, 0.0433081, 1e-6),
               "McNemar b=10 c=2: exact p %.7f, chi2 %.5f p %.7f", pe, stat, pc);
    test_check(metric_mcnemar_exact(0, 0) == 1 && metric_mcnemar_exact(5, 5) == 1 && metric_mcnemar_chi2(3, 3, &stat) == 1 &&
               stat == 0, "McNemar with no or balanced disagreements: p = 1");
    pe = metric_mcnemar_exact(300, 250);
    pc = metric_mcnemar_chi2(300, 250, &stat);
    test_check(fabs(pe - pc) < 0.005 && pe > 0.03 && pe < 0.05, "large tables: exact %.5f and chi2 %.5f agree", pe, pc);
    pe = metric_mcnemar_exact(4000, 3000);
    test_check(pe >= 0 && pe < 1e-30, "very unbalanced table: p %.3g, no overflow", pe);

    /* paired bootstrap */
    enum { N = 400 };
    uint8_t a[N], b[N];
    util_rng g;
    util_rng_seed(&g, 5);
    for (int i = 0; i < N; i++) {
        a[i] = util_rng_uniform(&g) < 0.85;
        b[i] = util_rng_uniform(&g) < 0.75;
    }
    metric_paired pr, pr2;
    metric_paired_compare(a, b, N, 4000, 0.95, 1, &pr, &err);
    metric_paired_compare(a, b, N, 4000, 0.95, 1, &pr2, &err);
    double var = 0, mean_d = pr.diff;
    for (int i = 0; i < N; i++) var += ((a[i] - b[i]) - mean_d) * ((a[i] - b[i]) - mean_d);
    double se = sqrt(var / N / N);   /* standard error of the mean difference */
    test_check(pr.both + pr.a_only + pr.b_only + pr.neither == N && near(pr.diff, pr.acc_a - pr.acc_b, 1e-15),
               "paired counts: %lld both, %lld A only, %lld B only, %lld neither", (long long)pr.both,
               (long long)pr.a_only, (long long)pr.b_only, (long long)pr.neither);
    test_check(pr.ci_lo < pr.diff && pr.diff < pr.ci_hi && fabs((pr.ci_hi - pr.ci_lo) / (2 * 1.96 * se) - 1) < 0.15,
               "bootstrap 95%% CI [%.4f, %.4f] around %.4f, width within 15%% of normal theory (se %.4f)", pr.ci_lo,
               pr.ci_hi, pr.diff, se);
    test_check(pr.ci_lo == pr2.ci_lo && pr.ci_hi == pr2.ci_hi, "same seed, same interval");
    memset(a, 1, N);
    memset(b, 0, N);
    metric_paired_compare(a, b, N, 500, 0.95, 1, &pr, &err);
    test_check(pr.diff == 1 && pr.ci_lo == 1 && pr.ci_hi == 1 && pr.p_exact < 1e-100, "A always right, B never: diff 1, CI [1, 1]");
    test_check(metric_paired_compare(a, b, 0, 10, 0.95, 1, &pr, &err) < 0, "no clips refused: %s", err.msg);

    /* confusion picture: readable back, right size, cells coloured */
    metric_counts_init(&c, 4, &err);
    for (int t = 0; t < 4; t++)
        for (int p = 0; p < 4; p++)
            for (int k = 0; k < (t == p ? 30 : t + p); k++) metric_add_pred(&c, t, p, 1);
    char *names[4] = { "dog", "rooster", "chainsaw", "crying_baby" };
    int rc = metric_confusion_png(&c, names, 4, "ESC-10 test: accuracy 0.80", "conf.png", &err);
    png_image im;
    memset(&im, 0, sizeof im);
    im.version = PNG_IMAGE_VERSION;
    int ok = rc == 0 && png_image_begin_read_from_file(&im, "conf.png");
    test_check(ok && im.width > 300 && im.height > 300, "confusion picture %ux%u written", im.width, im.height);
    png_image_free(&im);
    test_check(metric_confusion_png(&c, NULL, 0, NULL, "conf-nonames.png", &err) == 0, "confusion picture without names");
    metric_counts_free(&c);
    const char *keep = getenv("PLOT_TEST_KEEP");
    if (keep) {
        char cmd[512];
        snprintf(cmd, sizeof cmd, "cp conf.png '%s'/", keep);
        if (system(cmd) != 0) fprintf(stderr, "copy failed\n");
    }
    return test_exit();
}
