/* tsne.c: t-SNE as in van der Maaten (2014, Barnes-Hut) and Linderman et al. (2019, FIt-SNE):
 * k-nearest neighbours (vantage-point tree, or blocked brute force in many dimensions where the
 * tree prunes little), perplexity calibration by bisection, symmetric
 * sparse P, gradient descent with early exaggeration, momentum and gains (Jacobs 1988), repulsion
 * exact, by Barnes-Hut or by polynomial interpolation on a grid convolved with FFTW.  Every sum
 * that crosses points is done per point and then added in a fixed order, so the result does not
 * depend on the number of threads. */
#include "tsne.h"

#include <fftw3.h>
#include <float.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plot.h"

void tsne_opts_default(tsne_opts *o)
{
    memset(o, 0, sizeof *o);
    o->dims = 2;
    o->perplexity = 30;
    o->n_iter = 1000;
    o->exag_iter = 250;
    o->exaggeration = 12;
    o->learning_rate = 0;
    o->momentum = 0.5;
    o->final_momentum = 0.8;
    o->theta = 0.5;
    o->max_step = 5;
    o->method = TSNE_AUTO;
    o->init = TSNE_INIT_PCA;
    o->init_scale = 1e-4;
    o->seed = 0;
    o->threads = 0;
    o->fft_nodes = 3;
    o->fft_min_intervals = 0;   /* 0: by dimension, see fft_create */
    o->fft_interval_size = 1;
}

double tsne_max_perplexity(int64_t n) { return n > 1 ? (double)(n - 1) / 3 : 0; }

static int nthreads(int t) { return t > 0 ? t : omp_get_max_threads(); }

/* Threads for a parallel region of about `work` operations: one below ~2e7.  A region that short
 * gains little from a second thread, and on a busy machine each barrier can cost a scheduler time
 * slice (seen here: a 60-point map taking seconds).  The results do not depend on it. */
static int par(int nt, double work) { return work >= 2e7 ? nt : 1; }

/* ---- distances ----
 * Squared Euclidean distance in float; the clones let the loader pick AVX-512, AVX2 or plain SSE2
 * code for the CPU at hand (see shared/README: never assume AVX-512). */
__attribute__((target_clones("avx512f", "avx2", "default")))
static float sqdist(const float *a, const float *b, int d)
{
    float s = 0;
#pragma omp simd reduction(+ : s)
    for (int i = 0; i < d; i++) {
        float t = a[i] - b[i];
        s += t * t;
    }
    return s;
}

__attribute__((target_clones("avx512f", "avx2", "default")))
static double dotf(const float *a, const float *b, int64_t n)
{
    float s = 0;   /* blocks of 1024 in float, added in double */
    double tot = 0;
    for (int64_t i0 = 0; i0 < n; i0 += 1024) {
        int64_t i1 = i0 + 1024 < n ? i0 + 1024 : n;
        s = 0;
#pragma omp simd reduction(+ : s)
        for (int64_t i = i0; i < i1; i++) s += a[i] * b[i];
        tot += s;
    }
    return tot;
}

/* ---- k nearest neighbours ---- */
typedef struct {
    float d;     /* distance (not squared) */
    int32_t i;
} nbr;

static int nbr_less(nbr a, nbr b) { return a.d < b.d || (a.d == b.d && a.i < b.i); }

/* Max-heap of the k best so far (worst on top). */
static void heap_push(nbr *h, int *len, int k, nbr v)
{
    if (*len == k) {
        if (!nbr_less(v, h[0])) return;
        /* replace the top and sift down */
        int i = 0;
        for (;;) {
            int l = 2 * i + 1, r = l + 1, m = -1;
            nbr big = v;
            if (l < k && nbr_less(big, h[l])) { m = l; big = h[l]; }
            if (r < k && nbr_less(big, h[r])) { m = r; big = h[r]; }
            if (m < 0) break;
            h[i] = h[m];
            i = m;
        }
        h[i] = v;
        return;
    }
    int i = (*len)++;
    while (i > 0) {
        int p = (i - 1) / 2;
        if (!nbr_less(h[p], v)) break;
        h[i] = h[p];
        i = p;
    }
    h[i] = v;
}

static int cmp_nbr(const void *a, const void *b)
{
    nbr x = *(const nbr *)a, y = *(const nbr *)b;
    return nbr_less(x, y) ? -1 : nbr_less(y, x) ? 1 : 0;
}

/* Vantage-point tree stored in place: the node at position p has vantage point item[p]; its
 * "inside" subtree occupies [p + 1, mid[p]) (distance <= thr[p]), its "outside" subtree
 * [mid[p], end[p]) (distance >= thr[p]). */
typedef struct {
    const float *x;
    int d;
    int32_t *item, *mid, *end;
    float *thr;
    float *tmp;   /* build scratch: distances */
} vptree;

static void select_k(float *dist, int32_t *item, int64_t lo, int64_t hi, int64_t kth)
{
    /* Quickselect on (distance, index) so the split is the same on every run. */
    while (hi - lo > 1) {
        int64_t m = lo + (hi - lo) / 2;
        /* median of three as pivot */
        nbr a = { dist[lo], item[lo] }, b = { dist[m], item[m] }, c = { dist[hi - 1], item[hi - 1] }, pv;
        if (nbr_less(a, b)) pv = nbr_less(b, c) ? b : nbr_less(a, c) ? c : a;
        else pv = nbr_less(a, c) ? a : nbr_less(b, c) ? c : b;
        int64_t i = lo, j = hi - 1;
        while (i <= j) {
            while (nbr_less((nbr){ dist[i], item[i] }, pv)) i++;
            while (nbr_less(pv, (nbr){ dist[j], item[j] })) j--;
            if (i <= j) {
                float td = dist[i]; dist[i] = dist[j]; dist[j] = td;
                int32_t ti = item[i]; item[i] = item[j]; item[j] = ti;
                i++; j--;
            }
        }
        if (kth <= j) hi = j + 1;
        else if (kth >= i) lo = i;
        else return;
    }
}

static void vp_build(vptree *t, int64_t lo, int64_t hi, util_rng *rng)
{
    while (hi - lo > 0) {
        t->end[lo] = (int32_t)hi;
        if (hi - lo == 1) {
            t->mid[lo] = (int32_t)hi;
            t->thr[lo] = 0;
            return;
        }
        int64_t r = lo + (int64_t)util_rng_below(rng, (uint64_t)(hi - lo));
        int32_t tmp = t->item[lo]; t->item[lo] = t->item[r]; t->item[r] = tmp;
        const float *v = t->x + (size_t)t->item[lo] * t->d;
        for (int64_t i = lo + 1; i < hi; i++) t->tmp[i] = sqrtf(sqdist(v, t->x + (size_t)t->item[i] * t->d, t->d));
        int64_t mid = lo + 1 + (hi - lo - 1) / 2;
        select_k(t->tmp, t->item, lo + 1, hi, mid);
        t->mid[lo] = (int32_t)mid;
        t->thr[lo] = t->tmp[mid];
        vp_build(t, lo + 1, mid, rng);
        lo = mid;   /* the outside part iteratively: only one recursion per level */
        /* the outside subtree's root is at mid; continue the loop there */
    }
}

/* Triangle-inequality pruning with a little slack for float rounding of the distances. */
#define VP_SLACK(a) ((a) * 1e-5f + 1e-30f)

static void vp_search(const vptree *t, int64_t p, const float *q, int32_t self, int k, nbr *h, int *len)
{
    while (p >= 0) {
        int64_t end = t->end[p], mid = t->mid[p];
        int32_t v = t->item[p];
        float dist = sqrtf(sqdist(q, t->x + (size_t)v * t->d, t->d));
        if (v != self) heap_push(h, len, k, (nbr){ dist, v });
        if (end - p == 1) return;
        float thr = t->thr[p];
        float tau = *len < k ? FLT_MAX : h[0].d;
        int has_in = mid > p + 1, has_out = mid < end;
        float sl = VP_SLACK(dist + thr + (tau < FLT_MAX ? tau : 0));
        if (dist < thr) {
            if (has_in && dist - tau <= thr + sl) vp_search(t, p + 1, q, self, k, h, len);
            tau = *len < k ? FLT_MAX : h[0].d;
            p = has_out && (tau == FLT_MAX || dist + tau + sl >= thr) ? mid : -1;
        } else {
            if (has_out && (tau == FLT_MAX || dist + tau + sl >= thr)) vp_search(t, mid, q, self, k, h, len);
            tau = *len < k ? FLT_MAX : h[0].d;
            p = has_in && dist - tau <= thr + sl ? p + 1 : -1;
        }
    }
}

/* Brute force by blocks: squared distances screened as |q|^2 + |r|^2 - 2 q.r from dot products of
 * 4 queries x 16 references at a time (references packed 16 to a panel, dimension-major), the
 * KNN_EXTRA best candidates per query then re-measured with sqdist and ranked exactly.  Data are
 * centred first, which keeps the cancellation in the screening small.  Kernels for AVX-512,
 * AVX2+FMA and plain SSE2 are chosen at run time. */
typedef float v16 __attribute__((vector_size(64)));
enum { KNN_EXTRA = 16, KNN_QB = 64 };

/* dots of 4 queries (rows q, q + d, ...) with the 16 references of a panel */
#define KNN_TILE4(q, out)                                                                    \
    {                                                                                        \
        v16 acc0 = { 0 }, acc1 = { 0 }, acc2 = { 0 }, acc3 = { 0 };                          \
        const float *q0 = (q), *q1 = (q) + d, *q2 = (q) + 2 * d, *q3 = (q) + 3 * d;          \
        for (int t = 0; t < d; t++) {                                                        \
            v16 b;                                                                           \
            memcpy(&b, panel + (size_t)t * 16, sizeof b);                                    \
            acc0 += q0[t] * b;                                                               \
            acc1 += q1[t] * b;                                                               \
            acc2 += q2[t] * b;                                                               \
            acc3 += q3[t] * b;                                                               \
        }                                                                                    \
        memcpy((out), &acc0, sizeof acc0);                                                   \
        memcpy((out) + 16, &acc1, sizeof acc1);                                              \
        memcpy((out) + 32, &acc2, sizeof acc2);                                              \
        memcpy((out) + 48, &acc3, sizeof acc3);                                              \
    }
/* 8 queries: with AVX-512 eight accumulators hide the FMA latency; AVX2 and SSE2 have too few
 * registers for that and take them 4 at a time */
__attribute__((target("avx512f,fma"), optimize("fp-contract=fast")))
static void knn_tile_avx512(const float *q, const float *panel, int d, float *out)
{
    v16 a0 = { 0 }, a1 = { 0 }, a2 = { 0 }, a3 = { 0 }, a4 = { 0 }, a5 = { 0 }, a6 = { 0 }, a7 = { 0 };
    const float *q0 = q, *q1 = q + d, *q2 = q + 2 * d, *q3 = q + 3 * d;
    const float *q4 = q + 4 * d, *q5 = q + 5 * d, *q6 = q + 6 * d, *q7 = q + 7 * d;
    for (int t = 0; t < d; t++) {
        v16 b;
        memcpy(&b, panel + (size_t)t * 16, sizeof b);
        a0 += q0[t] * b; a1 += q1[t] * b; a2 += q2[t] * b; a3 += q3[t] * b;
        a4 += q4[t] * b; a5 += q5[t] * b; a6 += q6[t] * b; a7 += q7[t] * b;
    }
    memcpy(out, &a0, 64); memcpy(out + 16, &a1, 64); memcpy(out + 32, &a2, 64); memcpy(out + 48, &a3, 64);
    memcpy(out + 64, &a4, 64); memcpy(out + 80, &a5, 64); memcpy(out + 96, &a6, 64); memcpy(out + 112, &a7, 64);
}
__attribute__((target("avx2,fma"), optimize("fp-contract=fast")))
static void knn_tile_avx2(const float *q, const float *panel, int d, float *out)
{
    KNN_TILE4(q, out)
    KNN_TILE4(q + 4 * d, out + 64)
}
static void knn_tile_sse(const float *q, const float *panel, int d, float *out)
{
    KNN_TILE4(q, out)
    KNN_TILE4(q + 4 * d, out + 64)
}

static int knn_blocked(const float *x, int64_t n, int d, int k, int nt, int32_t *idx, float *dist2, struct util_err *err)
{
    /* EARSIGHT_TSNE_KERNEL=avx2|sse forces a narrower kernel (tests run every kernel the CPU has) */
    const char *force = getenv("EARSIGHT_TSNE_KERNEL");
    int avx512 = util_cpu_has_avx512f(), avx2 = util_cpu_has_avx2_fma();
    if (force && strcmp(force, "avx2") == 0) avx512 = 0;
    if (force && strcmp(force, "sse") == 0) avx512 = avx2 = 0;
    void (*tile)(const float *, const float *, int, float *) =
        avx512 ? knn_tile_avx512 : avx2 ? knn_tile_avx2 : knn_tile_sse;
    int64_t n_panel = (n + 15) / 16, n_qpad = (n + 7) / 8 * 8;
    int kk = k + KNN_EXTRA < n - 1 ? k + KNN_EXTRA : (int)(n - 1);
    float *xc = util_calloc((size_t)n_qpad * d, sizeof *xc, err);
    float *pk = util_calloc((size_t)n_panel * 16 * d, sizeof *pk, err);
    float *nrm = util_malloc((size_t)n_panel * 16, sizeof *nrm, err);
    double *mean = util_calloc((size_t)d, sizeof *mean, err);
    nbr *heaps = util_malloc((size_t)nt * KNN_QB * kk, sizeof *heaps, err);
    int rc = -1;
    if (!xc || !pk || !nrm || !mean || !heaps) goto done;
    for (int64_t i = 0; i < n; i++)
        for (int j = 0; j < d; j++) mean[j] += x[i * d + j];
    for (int j = 0; j < d; j++) mean[j] /= (double)n;
    for (int64_t i = 0; i < n; i++) {
        double s = 0;
        for (int j = 0; j < d; j++) {
            float v = (float)(x[i * d + j] - mean[j]);
            xc[i * d + j] = v;
            pk[(size_t)(i / 16) * 16 * d + (size_t)j * 16 + i % 16] = v;
            s += (double)v * v;
        }
        nrm[i] = (float)s;
    }
    for (int64_t i = n; i < n_panel * 16; i++) nrm[i] = INFINITY;   /* padding never qualifies */
#pragma omp parallel num_threads(nt)
    {
        nbr *hs = heaps + (size_t)omp_get_thread_num() * KNN_QB * kk;
        int len[KNN_QB];
        float dots[128], e[16];
#pragma omp for schedule(dynamic, 1)
        for (int64_t q0 = 0; q0 < n; q0 += KNN_QB) {
            int nq = (int)(n - q0 < KNN_QB ? n - q0 : KNN_QB);
            for (int r = 0; r < nq; r++) len[r] = 0;
            for (int64_t p = 0; p < n_panel; p++) {
                const float *panel = pk + (size_t)p * 16 * d;
                const float *np = nrm + p * 16;
                for (int r0 = 0; r0 < nq; r0 += 8) {
                    tile(xc + (size_t)(q0 + r0) * d, panel, d, dots);
                    for (int r = r0; r < r0 + 8 && r < nq; r++) {
                        int64_t qi = q0 + r;
                        nbr *h = hs + (size_t)r * kk;
                        float thr = len[r] == kk ? h[0].d : INFINITY, nq_ = nrm[qi];
                        int any = 0;
                        for (int c = 0; c < 16; c++) {
                            e[c] = nq_ + np[c] - 2 * dots[(r - r0) * 16 + c];
                            any |= e[c] <= thr;
                        }
                        if (!any) continue;
                        for (int c = 0; c < 16; c++) {
                            int64_t j = p * 16 + c;
                            if (e[c] <= thr && j != qi && j < n) heap_push(h, &len[r], kk, (nbr){ e[c], (int32_t)j });
                        }
                    }
                }
            }
            /* exact distances of the candidates, ranked by (distance, index) */
            for (int r = 0; r < nq; r++) {
                int64_t qi = q0 + r;
                nbr *h = hs + (size_t)r * kk;
                for (int c = 0; c < len[r]; c++)
                    h[c].d = sqrtf(sqdist(x + (size_t)qi * d, x + (size_t)h[c].i * d, d));
                qsort(h, (size_t)len[r], sizeof *h, cmp_nbr);
                for (int j = 0; j < k; j++) {
                    idx[qi * k + j] = h[j].i;
                    dist2[qi * k + j] = h[j].d * h[j].d;
                }
            }
        }
    }
    rc = 0;
done:
    free(xc); free(pk); free(nrm); free(mean); free(heaps);
    return rc;
}

int tsne_knn(const float *x, int64_t n, int d, int k, int use_tree, uint64_t seed, int threads, int32_t *idx,
             float *dist2, struct util_err *err)
{
    if (n < 2 || k < 1 || k > n - 1) return util_err_set(err, "%d neighbours of %lld points", k, (long long)n);
    if (n > INT32_MAX) return util_err_set(err, "%lld points is too many", (long long)n);
    /* tree search costs roughly n log n distances, brute force n^2 */
    int nt = par(nthreads(threads), (double)n * d * (use_tree == 1 ? 20 * log2((double)n + 1) : (double)n));
    if (use_tree == 2) return knn_blocked(x, n, d, k, nt, idx, dist2, err);
    nbr *heaps = util_malloc((size_t)nt * (size_t)k, sizeof *heaps, err);
    if (!heaps) return -1;
    vptree t = { x, d, NULL, NULL, NULL, NULL, NULL };
    if (use_tree) {
        t.item = util_malloc((size_t)n, sizeof *t.item, err);
        t.mid = util_malloc((size_t)n, sizeof *t.mid, err);
        t.end = util_malloc((size_t)n, sizeof *t.end, err);
        t.thr = util_malloc((size_t)n, sizeof *t.thr, err);
        t.tmp = util_malloc((size_t)n, sizeof *t.tmp, err);
        if (!t.item || !t.mid || !t.end || !t.thr || !t.tmp) {
            free(heaps); free(t.item); free(t.mid); free(t.end); free(t.thr); free(t.tmp);
            return -1;
        }
        for (int64_t i = 0; i < n; i++) t.item[i] = (int32_t)i;
        util_rng rng;
        util_rng_seed(&rng, seed ^ 0x7670747265650000ull);   /* "vptree" */
        vp_build(&t, 0, n, &rng);
        free(t.tmp);
        t.tmp = NULL;
    }
#pragma omp parallel num_threads(nt)
    {
        nbr *h = heaps + (size_t)omp_get_thread_num() * k;
#pragma omp for schedule(dynamic, 16)
        for (int64_t i = 0; i < n; i++) {
            int len = 0;
            const float *q = x + (size_t)i * d;
            if (use_tree) {
                vp_search(&t, 0, q, (int32_t)i, k, h, &len);
            } else {
                for (int64_t j = 0; j < n; j++)
                    if (j != i) heap_push(h, &len, k, (nbr){ sqrtf(sqdist(q, x + (size_t)j * d, d)), (int32_t)j });
            }
            qsort(h, (size_t)len, sizeof *h, cmp_nbr);
            for (int j = 0; j < k; j++) {
                idx[i * k + j] = h[j].i;
                dist2[i * k + j] = h[j].d * h[j].d;
            }
        }
    }
    free(heaps);
    free(t.item); free(t.mid); free(t.end); free(t.thr);
    return 0;
}

/* ---- perplexity calibration ---- */
void tsne_calibrate(const float *dist2, int64_t n, int k, double perplexity, int threads, double *p)
{
    const double target = log(perplexity);
#pragma omp parallel for schedule(static) num_threads(par(nthreads(threads), 50.0 * n * k))
    for (int64_t i = 0; i < n; i++) {
        const float *d = dist2 + i * k;
        double *pi = p + i * k;
        double dmin = d[0];
        for (int j = 1; j < k; j++)
            if (d[j] < dmin) dmin = d[j];
        /* distances shifted by the smallest one: the same P, no underflow for large distances */
        double beta = 1, lo = 0, hi = INFINITY, mean = 0;
        for (int j = 0; j < k; j++) mean += d[j] - dmin;
        if (mean > 0) beta = k / mean;   /* a starting point of the right scale */
        for (int it = 0; it < 200; it++) {
            double sum = 0, sdp = 0;
            for (int j = 0; j < k; j++) {
                double e = exp(-beta * (d[j] - dmin));
                pi[j] = e;
                sum += e;
                sdp += e * (d[j] - dmin);
            }
            double h = log(sum) + beta * sdp / sum;
            for (int j = 0; j < k; j++) pi[j] /= sum;
            if (fabs(h - target) < 1e-5) break;
            if (h > target) {   /* too flat: sharpen */
                lo = beta;
                beta = isinf(hi) ? beta * 2 : (beta + hi) / 2;
            } else {
                hi = beta;
                beta = (beta + lo) / 2;
            }
        }
    }
}

/* ---- symmetric sparse P ---- */
void tsne_sparse_free(tsne_sparse *P)
{
    if (!P) return;
    free(P->row); free(P->col); free(P->val);
    memset(P, 0, sizeof *P);
}

typedef struct {
    int32_t c;
    double v;
} entry;

static int cmp_entry(const void *a, const void *b)
{
    int32_t x = ((const entry *)a)->c, y = ((const entry *)b)->c;
    return (x > y) - (x < y);
}

int tsne_symmetrize(const int32_t *idx, const double *p, int64_t n, int k, tsne_sparse *P, struct util_err *err)
{
    memset(P, 0, sizeof *P);
    int64_t *cnt = util_calloc((size_t)n + 1, sizeof *cnt, err);
    if (!cnt) return -1;
    for (int64_t i = 0; i < n; i++) {
        cnt[i] += k;
        for (int j = 0; j < k; j++) cnt[idx[i * k + j]]++;
    }
    int64_t total = 0;
    for (int64_t i = 0; i < n; i++) total += cnt[i];
    entry *e = util_malloc((size_t)total, sizeof *e, err);
    int64_t *start = util_malloc((size_t)n + 1, sizeof *start, err);
    if (!e || !start) {
        free(cnt); free(e); free(start);
        return -1;
    }
    start[0] = 0;
    for (int64_t i = 0; i < n; i++) start[i + 1] = start[i] + cnt[i];
    memset(cnt, 0, sizeof *cnt * (size_t)n);
    for (int64_t i = 0; i < n; i++)
        for (int j = 0; j < k; j++) {
            int32_t c = idx[i * k + j];
            double v = p[i * k + j];
            e[start[i] + cnt[i]++] = (entry){ c, v };
            e[start[c] + cnt[c]++] = (entry){ (int32_t)i, v };
        }
    /* sort each row by column and merge duplicates (j in i's list and i in j's list) */
    int64_t nnz = 0;
    for (int64_t i = 0; i < n; i++) {
        entry *r = e + start[i];
        int64_t m = start[i + 1] - start[i];
        qsort(r, (size_t)m, sizeof *r, cmp_entry);
        int64_t u = 0;
        for (int64_t j = 0; j < m; j++) {
            if (u > 0 && r[u - 1].c == r[j].c) r[u - 1].v += r[j].v;
            else r[u++] = r[j];
        }
        cnt[i] = u;
        nnz += u;
    }
    P->n = n;
    P->row = util_malloc((size_t)n + 1, sizeof *P->row, err);
    P->col = util_malloc((size_t)nnz, sizeof *P->col, err);
    P->val = util_malloc((size_t)nnz, sizeof *P->val, err);
    if (!P->row || !P->col || !P->val) {
        tsne_sparse_free(P);
        free(cnt); free(e); free(start);
        return -1;
    }
    P->row[0] = 0;
    double scale = 1.0 / (2.0 * (double)n);
    for (int64_t i = 0; i < n; i++) {
        P->row[i + 1] = P->row[i] + cnt[i];
        for (int64_t j = 0; j < cnt[i]; j++) {
            P->col[P->row[i] + j] = e[start[i] + j].c;
            P->val[P->row[i] + j] = (float)(e[start[i] + j].v * scale);
        }
    }
    free(cnt); free(e); free(start);
    return 0;
}

/* ---- Barnes-Hut tree (quadtree in 2-D, octree in 3-D) ----
 * Points are not walked through the tree one by one: the tree is cut into groups of at most
 * BH_GROUP points (the highest nodes that small), and each group walks the tree once.  A cell is
 * summarised by its centre of mass when its width is below theta times its distance to the
 * group's bounding box — at least as strict as the usual per-point test — and the accepted
 * interactions are applied to the whole group in a vectorised loop. */
typedef struct {
    double c[3];     /* cell centre */
    double com[3];   /* centre of mass (a sum while building) */
    double hw;       /* half width */
    int32_t cnt;     /* points below */
    int32_t child;   /* first of 2^D children, -1 for a leaf */
    int32_t head;    /* a leaf's first point (list through bh_tree.next), -1 if empty */
    int32_t start;   /* the node's points are perm[start, start + cnt) */
} bh_node;

enum { BH_MAX_DEPTH = 48, BH_GROUP = 32 };

typedef struct {
    bh_node *node;
    int64_t n_node, cap;
    int32_t *next;     /* (n) next point in the same leaf, -1 at the end */
    int32_t *perm;     /* (n) points in depth-first order */
    int32_t *group;    /* (n_group, 2): first position in perm and number of points of each group */
    int64_t n_group, n_alloc;
} bh_tree;

static void bh_tree_free(bh_tree *t)
{
    free(t->node); free(t->next); free(t->perm); free(t->group);
    memset(t, 0, sizeof *t);
}

static int bh_new_children(bh_tree *t, int32_t parent, int D, struct util_err *err)
{
    int nc = 1 << D;
    if (t->n_node + nc > t->cap) {
        int64_t cap = t->cap * 2 + nc;
        if (cap > INT32_MAX) return util_err_set(err, "Barnes-Hut tree too large");
        bh_node *nn = realloc(t->node, (size_t)cap * sizeof *nn);
        if (!nn) return util_err_set(err, "out of memory (Barnes-Hut tree of %lld nodes)", (long long)cap);
        t->node = nn;
        t->cap = cap;
    }
    bh_node *p = &t->node[parent];
    int32_t first = (int32_t)t->n_node;
    for (int q = 0; q < nc; q++) {
        bh_node *c = &t->node[first + q];
        memset(c, 0, sizeof *c);
        c->hw = p->hw / 2;
        for (int dd = 0; dd < D; dd++) c->c[dd] = p->c[dd] + ((q >> dd) & 1 ? c->hw : -c->hw);
        c->child = -1;
        c->head = -1;
    }
    p->child = first;
    t->n_node += nc;
    return 0;
}

static int bh_quadrant(const bh_node *nd, const double *y, int D)
{
    int q = 0;
    for (int dd = 0; dd < D; dd++) q |= (y[dd] >= nd->c[dd]) << dd;
    return q;
}

static int bh_build(bh_tree *t, const double *y, int64_t n, int D, struct util_err *err)
{
    double lo[3] = { INFINITY, INFINITY, INFINITY }, hi[3] = { -INFINITY, -INFINITY, -INFINITY };
    for (int64_t i = 0; i < n; i++)
        for (int dd = 0; dd < D; dd++) {
            if (y[i * D + dd] < lo[dd]) lo[dd] = y[i * D + dd];
            if (y[i * D + dd] > hi[dd]) hi[dd] = y[i * D + dd];
        }
    double w = 0;
    for (int dd = 0; dd < D; dd++) w = fmax(w, hi[dd] - lo[dd]);
    if (!isfinite(w)) return util_err_set(err, "embedding diverged (non-finite coordinates)");
    if (!t->next) {
        t->cap = 2 * n + 16;
        t->node = malloc((size_t)t->cap * sizeof *t->node);
        t->next = malloc((size_t)n * sizeof *t->next);
        t->perm = malloc((size_t)n * sizeof *t->perm);
        if (!t->node || !t->next || !t->perm) {
            bh_tree_free(t);
            return util_err_set(err, "out of memory (Barnes-Hut tree)");
        }
    }
    bh_node *root = &t->node[0];
    memset(root, 0, sizeof *root);
    for (int dd = 0; dd < D; dd++) root->c[dd] = (lo[dd] + hi[dd]) / 2;
    root->hw = w / 2 * (1 + 1e-9) + 1e-12;
    root->child = -1;
    root->head = -1;
    t->n_node = 1;
    for (int64_t i = 0; i < n; i++) {
        const double *yi = y + i * D;
        int32_t cur = 0;
        for (int depth = 0;; depth++) {
            bh_node *nd = &t->node[cur];
            nd->cnt++;
            for (int dd = 0; dd < D; dd++) nd->com[dd] += yi[dd];
            if (nd->child >= 0) {
                cur = nd->child + bh_quadrant(nd, yi, D);
                continue;
            }
            if (nd->cnt == 1 || depth >= BH_MAX_DEPTH) {
                /* an empty leaf, or coincident points at the maximum depth: they share the leaf */
                t->next[i] = nd->head;
                nd->head = (int32_t)i;
                break;
            }
            /* split: move the resident point down, then continue with i */
            int32_t old = nd->head;
            if (bh_new_children(t, cur, D, err) < 0) return -1;
            nd = &t->node[cur];
            nd->head = -1;
            const double *yo = y + (int64_t)old * D;
            bh_node *c = &t->node[nd->child + bh_quadrant(nd, yo, D)];
            c->cnt = 1;
            c->head = old;
            t->next[old] = -1;
            for (int dd = 0; dd < D; dd++) c->com[dd] = yo[dd];
            cur = nd->child + bh_quadrant(nd, yi, D);
        }
    }
    for (int64_t k = 0; k < t->n_node; k++)
        if (t->node[k].cnt > 0)
            for (int dd = 0; dd < D; dd++) t->node[k].com[dd] /= t->node[k].cnt;
    /* depth-first numbering of the points and the list of groups */
    if (t->n_alloc < n) {   /* at most one group per point */
        int32_t *gr = realloc(t->group, (size_t)n * 2 * sizeof *gr);
        if (!gr) return util_err_set(err, "out of memory (Barnes-Hut groups)");
        t->group = gr;
        t->n_alloc = n;
    }
    t->n_group = 0;
    int32_t stack[BH_MAX_DEPTH * 8 + 16];
    int sp = 0, pos = 0;
    stack[sp++] = 0;
    while (sp > 0) {
        int32_t k = stack[--sp];
        bh_node *nd = &t->node[k];
        nd->start = pos;
        if (nd->cnt == 0) continue;
        if (nd->cnt <= BH_GROUP || nd->child < 0) {
            /* a group (the first node small enough on the way down), or a leaf of many coincident
             * points, cut into groups of BH_GROUP */
            for (int32_t off = 0; off < nd->cnt; off += BH_GROUP) {
                t->group[2 * t->n_group] = pos + off;
                t->group[2 * t->n_group + 1] = nd->cnt - off < BH_GROUP ? nd->cnt - off : BH_GROUP;
                t->n_group++;
            }
            /* number its points */
            int32_t st2[BH_MAX_DEPTH * 8 + 16];
            int sp2 = 0;
            st2[sp2++] = k;
            while (sp2 > 0) {
                bh_node *m = &t->node[st2[--sp2]];
                m->start = pos;
                if (m->child < 0) {
                    for (int32_t j = m->head; j >= 0; j = t->next[j]) t->perm[pos++] = j;
                } else {
                    for (int q = (1 << D) - 1; q >= 0; q--) st2[sp2++] = m->child + q;
                }
            }
            continue;
        }
        for (int q = (1 << D) - 1; q >= 0; q--) stack[sp++] = nd->child + q;
    }
    return 0;
}

/* Accumulate the interaction of group points g (SoA: gy[dd][m]) with cnt points at c. */
__attribute__((always_inline)) static inline void bh_interact(int D, int m, double (*gy)[BH_GROUP], const double *c,
                                                              double cnt, double *z, double (*r)[BH_GROUP])
{
    if (D == 2) {
#pragma omp simd
        for (int i = 0; i < m; i++) {
            double dx = gy[0][i] - c[0], dy = gy[1][i] - c[1];
            double w = 1 / (1 + dx * dx + dy * dy), cw = cnt * w;
            z[i] += cw;
            r[0][i] += cw * w * dx;
            r[1][i] += cw * w * dy;
        }
    } else {
#pragma omp simd
        for (int i = 0; i < m; i++) {
            double dx = gy[0][i] - c[0], dy = gy[1][i] - c[1], dz = gy[2][i] - c[2];
            double w = 1 / (1 + dx * dx + dy * dy + dz * dz), cw = cnt * w;
            z[i] += cw;
            r[0][i] += cw * w * dx;
            r[1][i] += cw * w * dy;
            r[2][i] += cw * w * dz;
        }
    }
}

/* One group's walk: rep (n, D) and zi (n) of its points are written. */
__attribute__((always_inline)) static inline void bh_group(const bh_tree *t, const double *y, const int32_t *grp,
                                                           int D, double theta2, double *rep, double *zi)
{
    int m = grp[1];
    double gy[3][BH_GROUP], r[3][BH_GROUP], z[BH_GROUP], lo[3], hi[3];
    int32_t gidx[BH_GROUP];
    for (int i = 0; i < m; i++) {
        gidx[i] = t->perm[grp[0] + i];
        z[i] = 0;
        for (int dd = 0; dd < D; dd++) {
            gy[dd][i] = y[(int64_t)gidx[i] * D + dd];
            r[dd][i] = 0;
        }
    }
    for (int dd = 0; dd < D; dd++) {
        lo[dd] = hi[dd] = gy[dd][0];
        for (int i = 1; i < m; i++) {
            lo[dd] = gy[dd][i] < lo[dd] ? gy[dd][i] : lo[dd];
            hi[dd] = gy[dd][i] > hi[dd] ? gy[dd][i] : hi[dd];
        }
    }
    int32_t stack[BH_MAX_DEPTH * 8 + 16];
    int sp = 0;
    stack[sp++] = 0;
    while (sp > 0) {
        const bh_node *nd = &t->node[stack[--sp]];
        if (nd->cnt == 0) continue;
        if (nd->child < 0) {   /* a leaf: its points one by one, without self-interaction */
            for (int32_t j = nd->head; j >= 0; j = t->next[j]) {
                const double *yj = y + (int64_t)j * D;
                bh_interact(D, m, gy, yj, 1.0, z, r);
                for (int i = 0; i < m; i++)
                    if (gidx[i] == j) z[i] -= 1;   /* self: w = 1 and no force; take it back out */
            }
            continue;
        }
        double dmin2 = 0;
        for (int dd = 0; dd < D; dd++) {
            double e = lo[dd] - nd->com[dd] > 0 ? lo[dd] - nd->com[dd] : nd->com[dd] - hi[dd] > 0 ? nd->com[dd] - hi[dd] : 0;
            dmin2 += e * e;
        }
        double width = 2 * nd->hw;
        if (width * width < theta2 * dmin2) {
            bh_interact(D, m, gy, nd->com, (double)nd->cnt, z, r);
        } else {
            for (int q = (1 << D) - 1; q >= 0; q--) stack[sp++] = nd->child + q;
        }
    }
    for (int i = 0; i < m; i++) {
        zi[gidx[i]] = z[i];
        for (int dd = 0; dd < D; dd++) rep[(int64_t)gidx[i] * D + dd] = r[dd][i];
    }
}

__attribute__((target_clones("avx512f", "avx2", "default")))
static void bh_repulsion(const bh_tree *t, const double *y, int D, double theta, double *rep, double *zi, int nt)
{
    double th2 = theta * theta;
#pragma omp parallel for schedule(dynamic, 4) num_threads(nt)
    for (int64_t gi = 0; gi < t->n_group; gi++) {
        if (D == 2) bh_group(t, y, t->group + 2 * gi, 2, th2, rep, zi);
        else bh_group(t, y, t->group + 2 * gi, 3, th2, rep, zi);
    }
}

/* ---- FFT-accelerated interpolation (FIt-SNE) ----
 * The square domain holding all points is cut into nb intervals per dimension, each with p
 * equispaced interpolation nodes; charges are spread to the nodes with Lagrange weights, the
 * node-to-node kernel sums are a convolution (the nodes are equispaced), done by FFT on a grid
 * padded to twice the size, and potentials are interpolated back with the same weights.
 * Kernels: K^2 with charges 1 and y (repulsive force), K with charge 1 (Z, without the
 * cancellation that the K^2 expansion would suffer in single precision). */
typedef struct {
    int D, p, nb, nn, L;           /* nodes per dim nn = nb * p, padded length L = 2 nn */
    int64_t G, Gc;                 /* real grid points L^D, complex L^(D-1) (L/2 + 1) */
    int nq;                        /* charges: 1, y_1..y_D */
    float *kern;                   /* (G) */
    fftwf_complex *khat2, *khat1;  /* (Gc) kernels K^2 and K */
    float *grid[5];                /* (nq + 1) x (G): charge grids, then potentials */
    fftwf_complex *spec[5];        /* (nq + 1) x (Gc) */
    fftwf_plan fwd, inv;
    int planned_L;
    double kern_delta;             /* spacing the kernel transforms were made for (0: none) */
    int32_t *base;                 /* (n, D) first node of each point's interval */
    float *wts;                    /* (n, D, p) Lagrange weights */
} fft_ws;

static int smooth7(int v)   /* only factors 2, 3, 5, 7: fast FFT sizes */
{
    static const int f[4] = { 2, 3, 5, 7 };
    for (int i = 0; i < 4; i++)
        while (v % f[i] == 0) v /= f[i];
    return v == 1;
}

static void fft_release(fft_ws *f)
{
    if (f->planned_L) {
        fftwf_destroy_plan(f->fwd);
        fftwf_destroy_plan(f->inv);
    }
    fftwf_free(f->kern); fftwf_free(f->khat2); fftwf_free(f->khat1);
    f->kern = NULL; f->khat2 = f->khat1 = NULL;
    for (int q = 0; q < 5; q++) {
        fftwf_free(f->grid[q]); fftwf_free(f->spec[q]);
        f->grid[q] = NULL; f->spec[q] = NULL;
    }
    f->planned_L = 0;
    f->kern_delta = 0;
}

/* FFTW's planner is not thread-safe; plans are made here only, in the calling thread. */
static int fft_setup(fft_ws *f, int nb, struct util_err *err)
{
    int L = 2 * nb * f->p;
    if (L == f->planned_L) return 0;
    fft_release(f);
    f->nb = nb;
    f->nn = nb * f->p;
    f->L = L;
    f->G = f->D == 2 ? (int64_t)L * L : (int64_t)L * L * L;
    f->Gc = f->D == 2 ? (int64_t)L * (L / 2 + 1) : (int64_t)L * L * (L / 2 + 1);
    int nb_grids = f->nq + 1;
    f->kern = fftwf_malloc(sizeof(float) * (size_t)f->G);
    f->khat2 = fftwf_malloc(sizeof(fftwf_complex) * (size_t)f->Gc);
    f->khat1 = fftwf_malloc(sizeof(fftwf_complex) * (size_t)f->Gc);
    int ok = f->kern && f->khat2 && f->khat1;
    for (int q = 0; q < nb_grids; q++) {   /* separate blocks: each has FFTW's preferred alignment */
        f->grid[q] = fftwf_malloc(sizeof(float) * (size_t)f->G);
        f->spec[q] = fftwf_malloc(sizeof(fftwf_complex) * (size_t)f->Gc);
        ok &= f->grid[q] && f->spec[q];
    }
    if (!ok) {
        fft_release(f);
        return util_err_set(err, "out of memory (FFT grid %d^%d)", L, f->D);
    }
    /* FFTW_ESTIMATE: measured plans could differ between runs, and so would the output */
    if (f->D == 2) {
        f->fwd = fftwf_plan_dft_r2c_2d(L, L, f->kern, f->khat2, FFTW_ESTIMATE);
        f->inv = fftwf_plan_dft_c2r_2d(L, L, f->khat2, f->kern, FFTW_ESTIMATE);
    } else {
        f->fwd = fftwf_plan_dft_r2c_3d(L, L, L, f->kern, f->khat2, FFTW_ESTIMATE);
        f->inv = fftwf_plan_dft_c2r_3d(L, L, L, f->khat2, f->kern, FFTW_ESTIMATE);
    }
    if (!f->fwd || !f->inv) {
        if (f->fwd) fftwf_destroy_plan(f->fwd);
        if (f->inv) fftwf_destroy_plan(f->inv);
        fft_release(f);
        return util_err_set(err, "cannot plan an FFT of %d^%d", L, f->D);
    }
    f->planned_L = L;
    return 0;
}

/* Grid for a square domain of side span: intervals of width isz (default 1) once the embedding
 * is wider than min_iv of them, so the kernel transforms stay valid from one iteration to the
 * next until the grid grows; narrower intervals (span / min_iv) while it is small.  The count is
 * capped (see below) to bound memory and time; beyond the cap intervals widen and accuracy drops. */
static int fft_intervals(const tsne_opts *o, int64_t n, int D, int p, double span, double *h)
{
    int min_iv = o->fft_min_intervals > 0 ? o->fft_min_intervals : D == 2 ? 50 : 16;
    /* the grid need not outgrow the points: 4 sqrt(N) intervals (2-D), 3 N^(1/3) (3-D), at most
     * 400 / 32, so a small, very spread-out map does not cost seconds per step */
    double cap = D == 2 ? fmin(400, 4 * sqrt((double)n)) : fmin(32, 3 * cbrt((double)n));
    int max_iv = (int)cap;
    if (min_iv > max_iv) min_iv = max_iv;
    double isz = o->fft_interval_size > 0 ? o->fft_interval_size : 1;
    int nb;
    if (span * (1 + 1e-9) < min_iv * isz) {
        nb = min_iv;
        while (!smooth7(2 * nb * p)) nb++;
        *h = span * (1 + 1e-7) / nb;   /* a hair of margin keeps the largest point inside */
        return nb;
    }
    double want = ceil(span * (1 + 1e-9) / isz);
    nb = want > max_iv ? max_iv : (int)want;
    while (!smooth7(2 * nb * p)) nb++;
    *h = nb * isz >= span * (1 + 1e-9) ? isz : span * (1 + 1e-7) / nb;
    return nb;
}

static void fft_kernels(fft_ws *f, double delta, int nt)
{
    const int L = f->L, nn = f->nn, D = f->D;
    const int64_t rows = f->G / L;
    double off2[8192];   /* squared wrapped offset of each grid index, in units of delta^2 */
    for (int a = 0; a < L; a++) {
        int off = a < nn ? a : a - L;
        off2[a] = (double)off * off * delta * delta;
    }
    for (int kk = 0; kk < 2; kk++) {
#pragma omp parallel for schedule(static) num_threads(nt)
        for (int64_t r = 0; r < rows; r++) {
            double base = D == 2 ? off2[r] : off2[r % L] + off2[r / L];
            float *k = f->kern + r * L;
            for (int a = 0; a < L; a++) {
                double w = 1 / (1 + base + off2[a]);
                k[a] = (float)(kk == 0 ? w * w : w);
            }
        }
        fftwf_execute_dft_r2c(f->fwd, f->kern, kk == 0 ? f->khat2 : f->khat1);
    }
}

static int fft_repulsion(fft_ws *f, const double *y, int64_t n, double *rep, double *zi, const tsne_opts *o,
                         int nt, struct util_err *err)
{
    const int D = f->D, p = f->p;
    double lo = INFINITY, hi = -INFINITY;
    for (int64_t i = 0; i < n * D; i++) {
        if (y[i] < lo) lo = y[i];
        if (y[i] > hi) hi = y[i];
    }
    if (!isfinite(lo) || !isfinite(hi)) return util_err_set(err, "embedding diverged (non-finite coordinates)");
    double span = hi - lo, h;
    if (span <= 0) span = 1e-6;
    int nb = fft_intervals(o, n, D, p, span, &h);
    if (fft_setup(f, nb, err) < 0) return -1;
    const int L = f->L;
    const int64_t G = f->G, Gc = f->Gc;
    const double delta = h / p;
    double t[8], denom[8];
    for (int k = 0; k < p; k++) t[k] = (k + 0.5) / p;
    for (int k = 0; k < p; k++) {
        denom[k] = 1;
        for (int m = 0; m < p; m++)
            if (m != k) denom[k] *= t[k] - t[m];
    }
    /* interpolation weights per point and dimension */
#pragma omp parallel for schedule(static) num_threads(nt)
    for (int64_t i = 0; i < n; i++)
        for (int dd = 0; dd < D; dd++) {
            double u = (y[i * D + dd] - lo) / h;
            int b = (int)u;
            if (b >= nb) b = nb - 1;
            if (b < 0) b = 0;
            u -= b;
            f->base[i * D + dd] = b * p;
            for (int k = 0; k < p; k++) {
                double w = 1;
                for (int m = 0; m < p; m++)
                    if (m != k) w *= u - t[m];
                f->wts[(i * D + dd) * p + k] = (float)(w / denom[k]);
            }
        }
    /* kernels on the padded grid (wrapped offsets) and their transforms, unless this grid and
     * spacing were used last time */
    if (f->kern_delta != delta) {
        fft_kernels(f, delta, nt);
        f->kern_delta = delta;
    }
    /* spread charges (serially: a parallel scatter would need atomics and lose determinism) */
    const int nq = f->nq;
    for (int qq = 0; qq < nq; qq++) memset(f->grid[qq], 0, sizeof(float) * (size_t)G);
    int ncomb = D == 2 ? p * p : p * p * p;
    for (int64_t i = 0; i < n; i++) {
        const int32_t *b = f->base + i * D;
        const float *w = f->wts + i * D * p;
        float q[4];
        q[0] = 1;
        for (int dd = 0; dd < D; dd++) q[1 + dd] = (float)y[i * D + dd];
        for (int c = 0; c < ncomb; c++) {
            int k0 = c % p, k1 = (c / p) % p, k2 = c / (p * p);
            float wt = w[0 * p + k0] * w[1 * p + k1];
            int64_t g = (int64_t)(b[0] + k0) + (int64_t)(b[1] + k1) * L;
            if (D == 3) {
                wt *= w[2 * p + k2];
                g += (int64_t)(b[2] + k2) * L * L;
            }
            for (int qq = 0; qq < nq; qq++) f->grid[qq][g] += wt * q[qq];
        }
    }
    /* forward transforms of the charges, products with the kernels, inverse transforms; the
     * extra slot nq holds charge 1 convolved with K */
#pragma omp parallel for schedule(static, 1) num_threads(nt)
    for (int qq = 0; qq < nq; qq++) fftwf_execute_dft_r2c(f->fwd, f->grid[qq], f->spec[qq]);
    memcpy(f->spec[nq], f->spec[0], sizeof(fftwf_complex) * (size_t)Gc);
#pragma omp parallel for schedule(static, 1) num_threads(nt)
    for (int qq = 0; qq <= nq; qq++) {
        fftwf_complex *s = f->spec[qq];
        const fftwf_complex *kh = qq < nq ? f->khat2 : f->khat1;
        for (int64_t g = 0; g < Gc; g++) {
            float re = s[g][0] * kh[g][0] - s[g][1] * kh[g][1];
            float im = s[g][0] * kh[g][1] + s[g][1] * kh[g][0];
            s[g][0] = re;
            s[g][1] = im;
        }
        fftwf_execute_dft_c2r(f->inv, s, f->grid[qq]);
    }
    /* interpolate potentials back to the points */
    const double norm = 1.0 / (double)G;
#pragma omp parallel for schedule(static) num_threads(nt)
    for (int64_t i = 0; i < n; i++) {
        const int32_t *b = f->base + i * D;
        const float *w = f->wts + i * D * p;
        double pot[5] = { 0, 0, 0, 0, 0 };
        for (int c = 0; c < ncomb; c++) {
            int k0 = c % p, k1 = (c / p) % p, k2 = c / (p * p);
            double wt = (double)w[0 * p + k0] * w[1 * p + k1];
            int64_t g = (int64_t)(b[0] + k0) + (int64_t)(b[1] + k1) * L;
            if (D == 3) {
                wt *= w[2 * p + k2];
                g += (int64_t)(b[2] + k2) * L * L;
            }
            for (int qq = 0; qq <= nq; qq++) pot[qq] += wt * f->grid[qq][g];
        }
        for (int qq = 0; qq <= nq; qq++) pot[qq] *= norm;
        for (int dd = 0; dd < D; dd++) rep[i * D + dd] = y[i * D + dd] * pot[0] - pot[1 + dd];
        zi[i] = pot[nq] - 1;   /* minus the point's own K(0) = 1 */
    }
    return 0;
}

/* ---- gradient ---- */
struct tsne_grad {
    enum tsne_method method;
    int64_t n;
    int dims, nt;
    tsne_opts o;
    bh_tree tree;
    fft_ws fft;
    double *rep;   /* (n, dims) */
    double *zi;    /* (n) */
    float *ys[3];  /* (dims) x (n): coordinates by dimension, single precision for the attraction */
    int64_t n_bh, n_fft;   /* AUTO: steps done each way */
};

tsne_grad *tsne_grad_create(enum tsne_method method, int64_t n, int dims, const tsne_opts *o, struct util_err *err)
{
    if (dims != 2 && dims != 3) {
        util_err_set(err, "%d output dimensions (2 or 3)", dims);
        return NULL;
    }
    tsne_grad *g = util_calloc(1, sizeof *g, err);
    if (!g) return NULL;
    g->method = method;
    g->n = n;
    g->dims = dims;
    g->o = *o;
    /* a step costs some thousand operations per point */
    g->nt = par(nthreads(o->threads), (double)n * 2000);
    g->rep = util_malloc((size_t)n * dims, sizeof *g->rep, err);
    g->zi = util_malloc((size_t)n, sizeof *g->zi, err);
    if (!g->rep || !g->zi) goto fail;
    for (int dd = 0; dd < dims; dd++)
        if (!(g->ys[dd] = util_malloc((size_t)n, sizeof(float), err))) goto fail;
    if (method == TSNE_AUTO && dims != 2) g->method = method = TSNE_BH;
    if (method == TSNE_FFT || method == TSNE_AUTO) {
        g->fft.D = dims;
        g->fft.p = o->fft_nodes >= 2 && o->fft_nodes <= 8 ? o->fft_nodes : 3;
        g->fft.nq = dims + 1;
        g->fft.base = util_malloc((size_t)n * dims, sizeof *g->fft.base, err);
        g->fft.wts = util_malloc((size_t)n * dims * g->fft.p, sizeof *g->fft.wts, err);
        if (!g->fft.base || !g->fft.wts) goto fail;
    }
    return g;
fail:
    tsne_grad_free(g);
    return NULL;
}

void tsne_grad_free(tsne_grad *g)
{
    if (!g) return;
    free(g->rep);
    free(g->zi);
    for (int dd = 0; dd < 3; dd++) free(g->ys[dd]);
    bh_tree_free(&g->tree);
    fft_release(&g->fft);
    free(g->fft.base);
    free(g->fft.wts);
    free(g);
}

__attribute__((target_clones("avx512f", "avx2", "default")))
static double exact_z_row(const double *y, int64_t n, int dims, int64_t i)
{
    double s = 0, yi[3] = { y[i * dims], y[i * dims + 1], dims == 3 ? y[i * dims + 2] : 0 };
    if (dims == 2) {
#pragma omp simd reduction(+ : s)
        for (int64_t j = 0; j < n; j++) {
            double dx = yi[0] - y[2 * j], dy = yi[1] - y[2 * j + 1];
            s += 1 / (1 + dx * dx + dy * dy);
        }
    } else {
#pragma omp simd reduction(+ : s)
        for (int64_t j = 0; j < n; j++) {
            double dx = yi[0] - y[3 * j], dy = yi[1] - y[3 * j + 1], dz = yi[2] - y[3 * j + 2];
            s += 1 / (1 + dx * dx + dy * dy + dz * dz);
        }
    }
    return s - 1;   /* j == i contributed exactly 1 */
}

double tsne_exact_z(const double *y, int64_t n, int dims, int threads)
{
    double *zi = malloc(sizeof *zi * (size_t)n);
    double z = 0;
    if (!zi) return NAN;
#pragma omp parallel for schedule(dynamic, 64) num_threads(par(nthreads(threads), (double)n * n))
    for (int64_t i = 0; i < n; i++) zi[i] = exact_z_row(y, n, dims, i);
    for (int64_t i = 0; i < n; i++) z += zi[i];
    free(zi);
    return z;
}

/* attraction over the sparse P, combined with the repulsion into the gradient.  Coordinates come
 * as separate single-precision arrays (ys[dd][j]) so the neighbour loads are plain gathers, and
 * twice as many fit a vector (float: 7 digits, plenty for a force of this kind); eight partial sums per
 * coordinate are added in a fixed order at the end, so the loop vectorises without reassociation
 * and gives the same result whatever the vector width. */
__attribute__((always_inline)) static inline void attract_row(const tsne_sparse *P, const float *const *ys, int D,
                                                              int64_t i, double *a)
{
    enum { W = 8 };
    const float *y0 = ys[0], *y1 = ys[1], *y2 = ys[D == 3 ? 2 : 1];
    const float xi = y0[i], yi = y1[i], zi = D == 3 ? y2[i] : 0;
    float ax[W] = { 0 }, ay[W] = { 0 }, az[W] = { 0 };
    const int32_t *col = P->col;
    const float *val = P->val;
    int64_t e = P->row[i];
    const int64_t e1 = P->row[i + 1];
    for (; e + W <= e1; e += W)
        for (int l = 0; l < W; l++) {
            int32_t j = col[e + l];
            float dx = xi - y0[j], dy = yi - y1[j], dz = D == 3 ? zi - y2[j] : 0;
            float pw = val[e + l] / (1 + dx * dx + dy * dy + dz * dz);
            ax[l] += pw * dx;
            ay[l] += pw * dy;
            az[l] += pw * dz;
        }
    for (int l = 0; e < e1; e++, l++) {
        int32_t j = col[e];
        float dx = xi - y0[j], dy = yi - y1[j], dz = D == 3 ? zi - y2[j] : 0;
        float pw = val[e] / (1 + dx * dx + dy * dy + dz * dz);
        ax[l] += pw * dx;
        ay[l] += pw * dy;
        az[l] += pw * dz;
    }
    a[0] = a[1] = a[2] = 0;
    for (int l = 0; l < W; l++) {
        a[0] += ax[l];
        a[1] += ay[l];
        a[2] += az[l];
    }
}

__attribute__((target_clones("avx512f", "avx2", "default")))
static void attraction(const tsne_sparse *P, const float *const *ys, int D, double exaggeration, double iz,
                       const double *rep, double *grad, int nt)
{
#pragma omp parallel for schedule(static) num_threads(nt)
    for (int64_t i = 0; i < P->n; i++) {
        double a[3];
        if (D == 2) attract_row(P, ys, 2, i, a);
        else attract_row(P, ys, 3, i, a);
        for (int dd = 0; dd < D; dd++) grad[i * D + dd] = 4 * (exaggeration * a[dd] - rep[i * D + dd] * iz);
    }
}

/* AUTO in 2-D: per step, the cheaper of Barnes-Hut and FFT by a cost model fitted on this code
 * (single thread: Barnes-Hut ~90 ns * N log2 N; FFT ~0.16 ns per element-log of each of its 7
 * transforms plus ~30 ns per point).  Only the embedding decides, so runs stay repeatable.  FFT
 * wins for large N; Barnes-Hut while the embedding is wide and sparse (early exaggeration of
 * well-separated clusters can stretch it to hundreds of units). */
static enum tsne_method auto_choice(const tsne_grad *g, const double *y)
{
    int64_t n = g->n;
    double lo = INFINITY, hi = -INFINITY, h;
    for (int64_t i = 0; i < n * g->dims; i++) {
        if (y[i] < lo) lo = y[i];
        if (y[i] > hi) hi = y[i];
    }
    double span = hi - lo > 0 ? hi - lo : 1e-6;
    int nb = fft_intervals(&g->o, n, g->dims, g->fft.p, span, &h);
    double L = 2.0 * nb * g->fft.p, G = L * L;
    double fft_ns = 7 * G * log2(G) * 0.16 + 30.0 * (double)n;
    double bh_ns = 90.0 * (double)n * log2((double)n + 1);
    return fft_ns < bh_ns ? TSNE_FFT : TSNE_BH;
}

int tsne_gradient(tsne_grad *g, const tsne_sparse *P, const double *y, double exaggeration, double *grad,
                  double *z_out, struct util_err *err)
{
    const int64_t n = g->n;
    const int D = g->dims;
    const int nt = g->nt;
    /* repulsion: rep_i = sum_j w_ij^2 (y_i - y_j) and zi_i = sum_j w_ij */
    enum tsne_method m = g->method;
    if (m == TSNE_AUTO) {
        m = auto_choice(g, y);
        if (m == TSNE_FFT) g->n_fft++;
        else g->n_bh++;
    }
    if (m == TSNE_EXACT) {
#pragma omp parallel for schedule(dynamic, 64) num_threads(nt)
        for (int64_t i = 0; i < n; i++) {
            double r[3] = { 0, 0, 0 }, s = 0;
            for (int64_t j = 0; j < n; j++) {
                if (j == i) continue;
                double dx[3], d2 = 0;
                for (int dd = 0; dd < D; dd++) {
                    dx[dd] = y[i * D + dd] - y[j * D + dd];
                    d2 += dx[dd] * dx[dd];
                }
                double w = 1 / (1 + d2);
                s += w;
                for (int dd = 0; dd < D; dd++) r[dd] += w * w * dx[dd];
            }
            g->zi[i] = s;
            for (int dd = 0; dd < D; dd++) g->rep[i * D + dd] = r[dd];
        }
    } else if (m == TSNE_BH) {
        if (bh_build(&g->tree, y, n, D, err) < 0) return -1;
        bh_repulsion(&g->tree, y, D, g->o.theta, g->rep, g->zi, nt);
    } else {
        if (fft_repulsion(&g->fft, y, n, g->rep, g->zi, &g->o, nt, err) < 0) return -1;
    }
    double z = 0;
    for (int64_t i = 0; i < n; i++) z += g->zi[i];
    if (!(z > 0) || !isfinite(z)) return util_err_set(err, "embedding diverged (normalisation %g)", z);
    for (int64_t i = 0; i < n; i++)
        for (int dd = 0; dd < D; dd++) g->ys[dd][i] = (float)y[i * D + dd];
    attraction(P, (const float *const *)g->ys, D, exaggeration, 1 / z, g->rep, grad, nt);
    if (z_out) *z_out = z;
    return 0;
}

double tsne_kl(const tsne_sparse *P, const double *y, int dims, double z, int threads)
{
    int64_t n = P->n;
    double *part = malloc(sizeof *part * (size_t)n), kl = 0;
    if (!part) return NAN;
#pragma omp parallel for schedule(static) num_threads(par(nthreads(threads), 20.0 * (double)P->row[n]))
    for (int64_t i = 0; i < n; i++) {
        double s = 0;
        for (int64_t e = P->row[i]; e < P->row[i + 1]; e++) {
            double d2 = 0, p = P->val[e];
            for (int dd = 0; dd < dims; dd++) {
                double t = y[i * dims + dd] - y[(int64_t)P->col[e] * dims + dd];
                d2 += t * t;
            }
            if (p > 0) s += p * log(p * z * (1 + d2));   /* p log(p / q), q = w / Z */
        }
        part[i] = s;
    }
    for (int64_t i = 0; i < n; i++) kl += part[i];
    free(part);
    return kl;
}

/* ---- PCA initialisation ---- */
/* Eigen-decomposition of a small symmetric matrix (m x m, row-major) by cyclic Jacobi rotations.
 * a is destroyed; eigenvalues in ev, eigenvectors in the columns of v. */
static void jacobi_eigen(double *a, int m, double *ev, double *v)
{
    for (int i = 0; i < m; i++)
        for (int j = 0; j < m; j++) v[i * m + j] = i == j;
    for (int sweep = 0; sweep < 100; sweep++) {
        double off = 0;
        for (int i = 0; i < m; i++)
            for (int j = i + 1; j < m; j++) off += a[i * m + j] * a[i * m + j];
        if (off < 1e-30) break;
        for (int p = 0; p < m; p++)
            for (int q = p + 1; q < m; q++) {
                double apq = a[p * m + q];
                if (fabs(apq) < 1e-300) continue;
                double theta = (a[q * m + q] - a[p * m + p]) / (2 * apq);
                double t = (theta >= 0 ? 1 : -1) / (fabs(theta) + sqrt(theta * theta + 1));
                double c = 1 / sqrt(t * t + 1), s = t * c;
                for (int k = 0; k < m; k++) {   /* A = J^T A J */
                    double akp = a[k * m + p], akq = a[k * m + q];
                    a[k * m + p] = c * akp - s * akq;
                    a[k * m + q] = s * akp + c * akq;
                }
                for (int k = 0; k < m; k++) {
                    double apk = a[p * m + k], aqk = a[q * m + k];
                    a[p * m + k] = c * apk - s * aqk;
                    a[q * m + k] = s * apk + c * aqk;
                }
                for (int k = 0; k < m; k++) {
                    double vkp = v[k * m + p], vkq = v[k * m + q];
                    v[k * m + p] = c * vkp - s * vkq;
                    v[k * m + q] = s * vkp + c * vkq;
                }
            }
    }
    for (int i = 0; i < m; i++) ev[i] = a[i * m + i];
}

/* Orthonormalise the columns of v (d x b, row-major) by modified Gram-Schmidt. */
static void orthonormalise(double *v, int d, int b)
{
    for (int c = 0; c < b; c++) {
        for (int c2 = 0; c2 < c; c2++) {
            double s = 0;
            for (int i = 0; i < d; i++) s += v[i * b + c] * v[i * b + c2];
            for (int i = 0; i < d; i++) v[i * b + c] -= s * v[i * b + c2];
        }
        double nrm = 0;
        for (int i = 0; i < d; i++) nrm += v[i * b + c] * v[i * b + c];
        nrm = sqrt(nrm);
        if (nrm < 1e-300) {   /* degenerate: restart the column from a unit vector */
            for (int i = 0; i < d; i++) v[i * b + c] = i == c % d;
            c--;
            continue;
        }
        for (int i = 0; i < d; i++) v[i * b + c] /= nrm;
    }
}

/* Top `dims` principal components of x by subspace iteration on the covariance (d <= 4096) or on
 * the data (larger d), then Rayleigh-Ritz; y = centred x times the components.  0 or -1. */
static int pca_init(const float *x, int64_t n, int d, int dims, double *y, int nt, struct util_err *err)
{
    nt = par(nt, (double)n * d * (d <= 2048 ? d : 100));
    int b = dims + 8 < d ? dims + 8 : d;
    int use_cov = d <= 2048;
    double *mean = util_calloc((size_t)d, sizeof *mean, err);
    float *xt = util_malloc((size_t)d * (size_t)n, sizeof *xt, err);   /* centred, feature-major */
    double *cov = use_cov ? util_malloc((size_t)d * d, sizeof *cov, err) : NULL;
    double *v = util_malloc((size_t)d * b, sizeof *v, err), *w = util_malloc((size_t)d * b, sizeof *w, err);
    double *t = util_malloc((size_t)n * b, sizeof *t, err);
    double *small = util_malloc((size_t)b * b, sizeof *small, err), *ev = util_malloc((size_t)b, sizeof *ev, err);
    double *u = util_malloc((size_t)b * b, sizeof *u, err);
    int rc = -1;
    if (!mean || !xt || (use_cov && !cov) || !v || !w || !t || !small || !ev || !u) goto done;
    for (int64_t i = 0; i < n; i++)
        for (int j = 0; j < d; j++) mean[j] += x[i * d + j];
    for (int j = 0; j < d; j++) mean[j] /= (double)n;
#pragma omp parallel for schedule(static) num_threads(nt)
    for (int j = 0; j < d; j++)
        for (int64_t i = 0; i < n; i++) xt[(size_t)j * n + i] = (float)(x[i * d + j] - mean[j]);
    if (use_cov) {
#pragma omp parallel for schedule(dynamic, 4) num_threads(nt)
        for (int a = 0; a < d; a++)
            for (int c = a; c < d; c++) {
                double s = dotf(xt + (size_t)a * n, xt + (size_t)c * n, n) / (double)n;
                cov[a * d + c] = s;
                cov[c * d + a] = s;
            }
    }
    /* deterministic start: a fixed pseudo-random block */
    util_rng rng;
    util_rng_seed(&rng, 0x70636131ull);
    for (int64_t i = 0; i < (int64_t)d * b; i++) v[i] = util_rng_normal(&rng);
    orthonormalise(v, d, b);
    for (int it = 0, n_it = use_cov ? 60 : 30; it < n_it; it++) {
        if (use_cov) {
#pragma omp parallel for schedule(static) num_threads(nt)
            for (int i = 0; i < d; i++) {
                double acc[16] = { 0 };   /* b <= 11 */
                for (int j = 0; j < d; j++) {
                    double cij = cov[i * d + j];
                    for (int c = 0; c < b; c++) acc[c] += cij * v[j * b + c];
                }
                for (int c = 0; c < b; c++) w[i * b + c] = acc[c];
            }
        } else {   /* w = X^T (X v) / n */
#pragma omp parallel for schedule(static) num_threads(nt)
            for (int64_t i = 0; i < n; i++)
                for (int c = 0; c < b; c++) {
                    double s = 0;
                    for (int j = 0; j < d; j++) s += xt[(size_t)j * n + i] * v[j * b + c];
                    t[i * b + c] = s;
                }
#pragma omp parallel for schedule(static) num_threads(nt)
            for (int j = 0; j < d; j++)
                for (int c = 0; c < b; c++) {
                    double s = 0;
                    for (int64_t i = 0; i < n; i++) s += xt[(size_t)j * n + i] * t[i * b + c];
                    w[j * b + c] = s / (double)n;
                }
        }
        orthonormalise(w, d, b);
        double change = 0;
        for (int64_t i = 0; i < (int64_t)d * b; i++) change = fmax(change, fabs(w[i] - v[i]));
        memcpy(v, w, sizeof *v * (size_t)d * b);
        if (change < 1e-7) break;
    }
    /* Rayleigh-Ritz: small = V^T C V through the projected data */
#pragma omp parallel for schedule(static) num_threads(nt)
    for (int64_t i = 0; i < n; i++)
        for (int c = 0; c < b; c++) {
            double s = 0;
            for (int j = 0; j < d; j++) s += xt[(size_t)j * n + i] * v[j * b + c];
            t[i * b + c] = s;
        }
    for (int c = 0; c < b; c++)
        for (int c2 = 0; c2 < b; c2++) {
            double s = 0;
            for (int64_t i = 0; i < n; i++) s += t[i * b + c] * t[i * b + c2];
            small[c * b + c2] = s / (double)n;
        }
    jacobi_eigen(small, b, ev, u);
    int chosen[3];
    for (int k = 0; k < dims; k++) {
        int best = -1;   /* k-th largest eigenvalue */
        for (int c = 0; c < b; c++) {
            int used = 0;
            for (int k2 = 0; k2 < k; k2++) used |= chosen[k2] == c;
            if (!used && (best < 0 || ev[c] > ev[best])) best = c;
        }
        chosen[k] = best;
        double maxabs = 0, sign = 1;
        for (int64_t i = 0; i < n; i++) {
            double s = 0;
            for (int c = 0; c < b; c++) s += t[i * b + c] * u[c * b + best];
            y[i * dims + k] = s;
            if (fabs(s) > maxabs) { maxabs = fabs(s); sign = s < 0 ? -1 : 1; }
        }
        for (int64_t i = 0; i < n; i++) y[i * dims + k] *= sign;   /* sign: largest coordinate positive */
    }
    rc = 0;
done:
    free(mean); free(xt); free(cov); free(v); free(w); free(t); free(small); free(ev); free(u);
    return rc;
}

/* ---- the optimisation ---- */
int tsne_run(const float *x, int64_t n, int d, float *yout, const tsne_opts *o, tsne_stats *st,
             struct util_err *err)
{
    tsne_stats stats;
    memset(&stats, 0, sizeof stats);
    const int D = o->dims;
    if (D != 2 && D != 3) return util_err_set(err, "%d output dimensions (2 or 3)", D);
    if (n < 2) return util_err_set(err, "%lld points: t-SNE needs at least 2", (long long)n);
    if (n > INT32_MAX / 4) return util_err_set(err, "%lld points is too many", (long long)n);
    if (d < 1) return util_err_set(err, "points of %d dimensions", d);
    if (!(o->perplexity > 0) || o->perplexity > tsne_max_perplexity(n))
        return util_err_set(err, "perplexity %g too large for %lld points (at most %g)", o->perplexity,
                            (long long)n, tsne_max_perplexity(n));
    if (o->n_iter < 0 || o->exag_iter < 0) return util_err_set(err, "negative iteration count");
    for (int64_t i = 0; i < n * d; i++)
        if (!isfinite(x[i]))
            return util_err_set(err, "point %lld: non-finite value", (long long)(i / d));
    enum tsne_method method = o->method;
    if (method == TSNE_AUTO && D != 2) method = TSNE_BH;
    /* exact P holds all n (n - 1) pairs, several times over while it is symmetrised */
    if (method == TSNE_EXACT && n > 4000)
        return util_err_set(err, "%lld points: the exact method is for 4000 at most", (long long)n);
    stats.method = method;
    const int nt = nthreads(o->threads);
    int k = method == TSNE_EXACT ? (int)(n - 1) : (int)fmin((double)(n - 1), floor(3 * o->perplexity));
    if (k < 1) k = 1;
    stats.k = k;

    int rc = -1;
    int32_t *idx = NULL;
    float *dist2 = NULL;
    double *pc = NULL, *y = NULL, *grad = NULL, *upd = NULL, *gains = NULL;
    tsne_sparse P = { 0, NULL, NULL, NULL };
    tsne_grad *g = NULL;

    double t0 = util_now();
    idx = util_malloc((size_t)n * k, sizeof *idx, err);
    dist2 = util_malloc((size_t)n * k, sizeof *dist2, err);
    if (!idx || !dist2) goto done;
    /* blocks where the tree prunes little (many dimensions, or all pairs anyway), else the tree */
    int how = method == TSNE_EXACT || (d >= 16 && (double)n * n * d <= 5e12) ? 2 : 1;
    if (tsne_knn(x, n, d, k, how, o->seed, nt, idx, dist2, err) < 0) goto done;
    stats.t_knn = util_now() - t0;
    t0 = util_now();
    pc = util_malloc((size_t)n * k, sizeof *pc, err);
    if (!pc) goto done;
    tsne_calibrate(dist2, n, k, o->perplexity, nt, pc);
    free(dist2);
    dist2 = NULL;
    if (tsne_symmetrize(idx, pc, n, k, &P, err) < 0) goto done;
    free(idx); idx = NULL;
    free(pc); pc = NULL;
    stats.t_affinity = util_now() - t0;

    t0 = util_now();
    y = util_malloc((size_t)n * D, sizeof *y, err);
    grad = util_malloc((size_t)n * D, sizeof *grad, err);
    upd = util_calloc((size_t)n * D, sizeof *upd, err);
    gains = util_malloc((size_t)n * D, sizeof *gains, err);
    if (!y || !grad || !upd || !gains) goto done;
    for (int64_t i = 0; i < n * D; i++) gains[i] = 1;
    int random_init = o->init == TSNE_INIT_RANDOM;
    if (!random_init) {
        if (pca_init(x, n, d, D, y, nt, err) < 0) goto done;
        double m = 0, s = 0;
        for (int64_t i = 0; i < n; i++) m += y[i * D];
        m /= (double)n;
        for (int64_t i = 0; i < n; i++) s += (y[i * D] - m) * (y[i * D] - m);
        s = sqrt(s / (double)n);
        if (s > 0 && isfinite(s)) {
            double f = (o->init_scale > 0 ? o->init_scale : 1e-4) / s;
            for (int64_t i = 0; i < n * D; i++) y[i] *= f;
        } else {
            random_init = 1;   /* all points identical: PCA says nothing */
        }
    }
    if (random_init) {
        util_rng rng;
        util_rng_seed(&rng, o->seed);
        double sc = o->init_scale > 0 ? o->init_scale : 1e-4;
        for (int64_t i = 0; i < n * D; i++) y[i] = sc * util_rng_normal(&rng);
    }
    g = tsne_grad_create(method, n, D, o, err);
    if (!g) goto done;
    double eta = o->learning_rate > 0 ? o->learning_rate : fmax(200.0, (double)n / 12.0);
    double z = 0;
    for (int it = 0; it < o->n_iter; it++) {
        int early = it < o->exag_iter;
        double exag = early ? o->exaggeration : 1, mom = early ? o->momentum : o->final_momentum;
        if (tsne_gradient(g, &P, y, exag, grad, &z, err) < 0) goto done;
        /* KL of the current y with the Z that came with its gradient, before the step */
        if (o->progress && it > 0 && it % 50 == 0) o->progress(o->progress_ctx, it, o->n_iter, tsne_kl(&P, y, D, z, nt));
        for (int64_t i = 0; i < n * D; i++) {
            /* gains grow where the gradient keeps pointing against the last step, shrink where it flips */
            gains[i] = (grad[i] > 0) != (upd[i] > 0) ? gains[i] + 0.2 : gains[i] * 0.8;
            if (gains[i] < 0.01) gains[i] = 0.01;
            upd[i] = mom * upd[i] - eta * gains[i] * grad[i];
        }
        /* no point moves more than max_step per step (as openTSNE): with the large default
         * learning rate on small sets, early exaggeration would otherwise fling points far away */
        if (o->max_step > 0)
            for (int64_t i = 0; i < n; i++) {
                double s2 = 0;
                for (int dd = 0; dd < D; dd++) s2 += upd[i * D + dd] * upd[i * D + dd];
                if (s2 > o->max_step * o->max_step) {
                    double f = o->max_step / sqrt(s2);
                    for (int dd = 0; dd < D; dd++) upd[i * D + dd] *= f;
                }
            }
        for (int64_t i = 0; i < n * D; i++) y[i] += upd[i];
        for (int dd = 0; dd < D; dd++) {   /* keep the embedding centred */
            double m = 0;
            for (int64_t i = 0; i < n; i++) m += y[i * D + dd];
            m /= (double)n;
            for (int64_t i = 0; i < n; i++) y[i * D + dd] -= m;
        }
    }
    stats.t_optimise = util_now() - t0;
    stats.steps_bh = method == TSNE_BH ? o->n_iter : method == TSNE_AUTO ? (int)g->n_bh : 0;
    stats.steps_fft = method == TSNE_FFT ? o->n_iter : method == TSNE_AUTO ? (int)g->n_fft : 0;
    /* final KL with Z summed exactly when affordable */
    if (n <= 20000 || method == TSNE_EXACT) {
        z = tsne_exact_z(y, n, D, nt);
        stats.exact_z = 1;
    } else {
        double zz;
        if (tsne_gradient(g, &P, y, 1, grad, &zz, err) < 0) goto done;
        z = zz;
    }
    stats.kl = tsne_kl(&P, y, D, z, nt);
    if (o->progress) o->progress(o->progress_ctx, o->n_iter, o->n_iter, stats.kl);
    for (int64_t i = 0; i < n * D; i++) yout[i] = (float)y[i];
    rc = 0;
done:
    free(idx); free(dist2); free(pc); free(y); free(grad); free(upd); free(gains);
    tsne_sparse_free(&P);
    tsne_grad_free(g);
    if (st) *st = stats;
    return rc;
}

/* ---- scatter plot ---- */
int tsne_plot_png(const float *y, int64_t n, int dims, const int32_t *labels, char **names, int n_names,
                  const char *title, const char *path, struct util_err *err)
{
    if (n < 1) return util_err_set(err, "%s: no points to draw", path);
    const plot_rgb white = { 255, 255, 255 }, black = { 0, 0, 0 }, grey = { 150, 150, 150 };
    const plot_rgb dark = { 60, 60, 60 };
    /* classes present and their counts */
    int32_t max_label = -1;
    for (int64_t i = 0; i < n; i++)
        if (labels && labels[i] > max_label) max_label = labels[i];
    int n_cls = max_label + 1;
    if (n_cls > 100000) return util_err_set(err, "%s: label %d too large to draw", path, max_label);
    int64_t *count = util_calloc((size_t)n_cls + 1, sizeof *count, err);
    if (!count) return -1;
    int64_t n_unl = 0;
    for (int64_t i = 0; i < n; i++) {
        if (labels && labels[i] >= 0) count[labels[i]]++;
        else n_unl++;
    }
    /* legend entries (at most 40 lines; further classes are summarised) */
    char line[300];
    const int S = 2, th = plot_text_height(S);
    int leg_w = 0, leg_lines = 0;
    for (int c = 0; c < n_cls; c++) {
        if (!count[c]) continue;
        if (leg_lines >= 40) break;
        if (names && c < n_names && names[c][0]) snprintf(line, sizeof line, "%.40s (%lld)", names[c], (long long)count[c]);
        else snprintf(line, sizeof line, "class %d (%lld)", c, (long long)count[c]);
        int w = plot_text_width(line, S);
        if (w > leg_w) leg_w = w;
        leg_lines++;
    }
    if (n_unl) {
        snprintf(line, sizeof line, "unlabelled (%lld)", (long long)n_unl);
        if (plot_text_width(line, S) > leg_w) leg_w = plot_text_width(line, S);
        leg_lines++;
    }
    int plot_side = 760, left = 70, top = title ? 20 + th + 20 : 30;
    int legend_x = left + plot_side + 30;
    int W = legend_x + 30 + leg_w + 30, H = top + plot_side + 70;
    int tw = title ? plot_text_width(title, S) + 40 : 0;
    if (W < tw) W = tw;
    if (H < top + leg_lines * (th + 6) + 40) H = top + leg_lines * (th + 6) + 40;
    plot_canvas cv;
    if (plot_canvas_create(&cv, W, H, white, err) < 0) {
        free(count);
        return -1;
    }
    /* equal scales on both axes: the map's distances are what matters */
    double lo[2] = { INFINITY, INFINITY }, hi[2] = { -INFINITY, -INFINITY };
    for (int64_t i = 0; i < n; i++)
        for (int dd = 0; dd < 2; dd++) {
            double v = y[i * dims + dd];
            if (!isfinite(v)) continue;
            if (v < lo[dd]) lo[dd] = v;
            if (v > hi[dd]) hi[dd] = v;
        }
    double span = fmax(hi[0] - lo[0], hi[1] - lo[1]);
    if (!(span > 0)) span = 1;
    span *= 1.06;
    double cx = (lo[0] + hi[0]) / 2, cy = (lo[1] + hi[1]) / 2;
    if (!isfinite(cx)) cx = cy = 0;
    float radius = (float)fmin(4.5, fmax(1.6, 260.0 / sqrt((double)n)));
    float alpha = n > 20000 ? 0.5f : 0.85f;
    /* draw in a fixed shuffled order so no class is systematically hidden under another */
    int64_t *order = util_malloc((size_t)n, sizeof *order, err);
    if (!order) {
        free(count);
        plot_canvas_free(&cv);
        return -1;
    }
    for (int64_t i = 0; i < n; i++) order[i] = i;
    util_rng rng;
    util_rng_seed(&rng, 12345);
    util_shuffle_i64(&rng, order, n);
    for (int64_t k = 0; k < n; k++) {
        int64_t i = order[k];
        double px = left + (y[i * dims] - cx) / span * plot_side + plot_side / 2.0;
        double py = top + plot_side / 2.0 - (y[i * dims + 1] - cy) / span * plot_side;
        int lab = labels ? labels[i] : -1;
        plot_disc(&cv, (float)px, (float)py, radius, lab >= 0 ? plot_category(lab) : grey, alpha);
    }
    free(order);
    plot_rect(&cv, left - 1, top - 1, plot_side + 2, plot_side + 2, dark);
    const char *xl = "t-SNE 1", *yl = "t-SNE 2";
    plot_text(&cv, left + (plot_side - plot_text_width(xl, S)) / 2, top + plot_side + 12, xl, black, S);
    plot_text_vertical(&cv, left - 14 - th, top + (plot_side - plot_text_width(yl, S)) / 2, yl, black, S);
    if (title) plot_text(&cv, (W - plot_text_width(title, S)) / 2, 20, title, black, S);
    /* legend */
    int ly = top, shown = 0;
    for (int c = 0; c < n_cls && shown < 40; c++) {
        if (!count[c]) continue;
        if (names && c < n_names && names[c][0]) snprintf(line, sizeof line, "%.40s (%lld)", names[c], (long long)count[c]);
        else snprintf(line, sizeof line, "class %d (%lld)", c, (long long)count[c]);
        plot_disc(&cv, (float)legend_x + 8, (float)ly + th / 2.0f - 2, 6, plot_category(c), 1);
        plot_text(&cv, legend_x + 22, ly, line, black, S);
        ly += th + 6;
        shown++;
    }
    if (n_unl) {
        snprintf(line, sizeof line, "unlabelled (%lld)", (long long)n_unl);
        plot_disc(&cv, (float)legend_x + 8, (float)ly + th / 2.0f - 2, 6, grey, 1);
        plot_text(&cv, legend_x + 22, ly, line, black, S);
    }
    free(count);
    int rc = plot_save_png(&cv, path, err);
    plot_canvas_free(&cv);
    return rc;
}
