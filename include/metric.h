/* metric.h: classification metrics as the paper reports them — accuracy, top-5, balanced accuracy,
 * macro precision/recall/F1 and the confusion matrix; fold aggregation (mean and sample standard
 * deviation); paired comparison of two methods on the same clips (bootstrap confidence interval of
 * the accuracy difference, McNemar's test).  Undefined ratios follow scikit-learn with
 * zero_division=0: they count as 0, never NaN (see score(1)). */
#ifndef EARSIGHT_METRIC_H
#define EARSIGHT_METRIC_H

#include <stdint.h>

#include "util.h"

/* Counts gathered from predictions; everything else is derived from them. */
typedef struct {
    int n_classes;
    int64_t n;        /* examples counted */
    int64_t n_top5;   /* examples whose true label is among the 5 best-scored classes */
    int64_t *conf;    /* (n_classes, n_classes): conf[true * n_classes + predicted] */
} metric_counts;

/* Zeroed counts for n_classes (1..100000) classes.  0 or -1. */
int metric_counts_init(metric_counts *c, int n_classes, struct util_err *err);
void metric_counts_free(metric_counts *c);   /* NULL or already freed is fine */

/* Predicted class: the highest score, the lowest index among equal scores. */
int metric_argmax(const float *scores, int n_classes);
/* Rank of class `label` (0 = best): classes scored higher, plus equal-scored classes of lower index
 * (the same tie rule as metric_argmax, so rank 0 <=> predicted). */
int metric_rank(const float *scores, int n_classes, int label);
/* Count one example: scores (n_classes) and its true label in [0, n_classes).  Returns the
 * predicted class.  Scores must be finite (the caller checks input). */
int metric_add(metric_counts *c, const float *scores, int label);
/* Count one example from a known prediction. */
void metric_add_pred(metric_counts *c, int label, int pred, int in_top5);
/* dst += src (same number of classes).  0 or -1. */
int metric_counts_merge(metric_counts *dst, const metric_counts *src, struct util_err *err);

/* Figures derived from counts.  Conventions (as scikit-learn with zero_division=0):
 *  - precision of a class never predicted is 0; recall of a class with no examples is 0; F1 is 0
 *    when precision + recall is 0;
 *  - macro precision/recall/F1 average over the classes present in the truth or the predictions;
 *  - balanced accuracy averages recall over the classes present in the truth;
 *  - with no examples at all every figure is 0.
 * present[k] says whether class k took part in the macro averages. */
typedef struct {
    int n_classes;
    int64_t n;
    double accuracy, top5, balanced_accuracy, macro_precision, macro_recall, macro_f1;
    double *precision, *recall, *f1;   /* (n_classes) */
    int64_t *support, *predicted;      /* (n_classes): true examples, predictions of the class */
    uint8_t *present;                  /* (n_classes) */
} metric_report;

int metric_report_compute(const metric_counts *c, metric_report *r, struct util_err *err);
void metric_report_free(metric_report *r);

/* Mean and sample standard deviation (divisor n-1; 0 when n < 2) of x (n >= 1). */
void metric_mean_sd(const double *x, int n, double *mean, double *sd);

/* McNemar's test on the discordant pairs: b clips right by A only, c right by B only.
 * Exact two-sided binomial p-value (1 when b + c = 0). */
double metric_mcnemar_exact(int64_t b, int64_t c);
/* Chi-squared statistic with continuity correction, (|b - c| - 1)^2 / (b + c) (0 when |b - c| <= 1),
 * into *stat; returns its p-value with one degree of freedom. */
double metric_mcnemar_chi2(int64_t b, int64_t c, double *stat);

/* Paired comparison of methods A and B on the same n clips: a_ok[i], b_ok[i] = 1 when the method
 * classified clip i correctly. */
typedef struct {
    int64_t n;
    int64_t both, a_only, b_only, neither;
    double acc_a, acc_b, diff;      /* diff = acc_a - acc_b */
    int n_boot;
    double level;                   /* e.g. 0.95 */
    double ci_lo, ci_hi;            /* percentile bootstrap interval of diff */
    double p_exact, chi2, p_chi2;   /* McNemar */
} metric_paired;

/* Bootstrap with n_boot resamples of the n clips (seeded, so repeatable).  0 or -1 (n < 1, memory). */
int metric_paired_compare(const uint8_t *a_ok, const uint8_t *b_ok, int64_t n, int n_boot, double level,
                          uint64_t seed, metric_paired *out, struct util_err *err);

/* Weighted k-nearest-neighbour class scores as Wu et al. (2018), the standard probe of a
 * self-supervised encoder: the k rows of fref (n_ref, d) with the largest dot product with a query
 * row of fq (n_q, d) vote for their class yref[j] with weight exp(sim / t); labels outside
 * [0, n_classes) do not vote.  With L2-normalised rows the dot product is the cosine similarity.
 * scores (n_q, n_classes) are each query's votes divided by their sum (they sum to 1; the argmax is
 * the k-NN prediction).  Ties among the k-th similarities go to the lower reference index.
 * self0 >= 0: the queries are reference rows self0, self0 + 1, ... and none votes for itself (a
 * leave-one-out probe of a set against itself); -1: every reference row votes.  0 or -1 (out of
 * memory). */
int metric_knn_scores(const float *fref, const int32_t *yref, int64_t n_ref, const float *fq, int64_t n_q,
                      int64_t self0, int d, int n_classes, int k, double t, float *scores,
                      struct util_err *err);
/* Scale each of the n rows of x (n, d) to unit L2 norm (rows of norm below 1e-12 are divided by 1e-12,
 * as torch.nn.functional.normalize). */
void metric_l2_normalise_rows(float *x, int64_t n, int d);

/* Confusion matrix picture: rows true classes, columns predicted, each cell coloured by the share of
 * its row (recall on the diagonal) and labelled with its count; class names on both axes (names may
 * be NULL or shorter than n_classes: "class K" is used).  title may be NULL.  0 or -1. */
int metric_confusion_png(const metric_counts *c, char **names, int n_names, const char *title,
                         const char *path, struct util_err *err);

#endif
