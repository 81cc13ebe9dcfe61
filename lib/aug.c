/* aug.c: SimCLR image augmentations and SpecAugment/mixup for spectrograms, and the stream engine
 * behind the `augment` tool.  Image operations reproduce torchvision 0.14's float-tensor semantics
 * (ColorJitter, RandomResizedCrop.get_params, GaussianBlur) with PIL's resampling filters; every
 * random draw of input record i in epoch e comes from util_rng_split(seed, e * N + i). */
#include "aug.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

/* Buffer p of *cap elements of size es grown to at least n elements (contents not kept). */
static void *grow(void *p, size_t *cap, size_t n, size_t es, struct util_err *err)
{
    if (n <= *cap && p) return p;
    free(p);
    p = util_malloc(n > 0 ? n : 1, es, err);
    *cap = p ? n : 0;
    return p;
}
#define GROW(p, cap, n, err) (((p) = grow((p), &(cap), (n), sizeof *(p), (err))) ? 0 : -1)

static double uniform(util_rng *r, double lo, double hi) { return lo + (hi - lo) * util_rng_uniform(r); }

/* ---------------------------------------------------------------- image operations */

void aug_crop_box(util_rng *r, int h, int w, double scale_lo, double scale_hi, double ratio_lo, double ratio_hi,
                  int box[4])
{
    double area = (double)h * w, llo = log(ratio_lo), lhi = log(ratio_hi);
    for (int attempt = 0; attempt < 10; attempt++) {
        double target = area * uniform(r, scale_lo, scale_hi);
        double ar = exp(uniform(r, llo, lhi));
        /* Python's round() is half-to-even, which rint gives in the default rounding mode. */
        double cw = rint(sqrt(target * ar)), ch = rint(sqrt(target / ar));
        if (cw > 0 && cw <= w && ch > 0 && ch <= h) {
            box[2] = (int)ch;
            box[3] = (int)cw;
            box[0] = (int)util_rng_below(r, (uint64_t)(h - box[2] + 1));
            box[1] = (int)util_rng_below(r, (uint64_t)(w - box[3] + 1));
            return;
        }
    }
    double in_ratio = (double)w / h;
    int cw = w, ch = h;
    if (in_ratio < ratio_lo) ch = (int)rint(w / ratio_lo);
    else if (in_ratio > ratio_hi) cw = (int)rint(h * ratio_hi);
    if (ch < 1) ch = 1;
    if (cw < 1) cw = 1;
    if (ch > h) ch = h;
    if (cw > w) cw = w;
    box[0] = (h - ch) / 2;
    box[1] = (w - cw) / 2;
    box[2] = ch;
    box[3] = cw;
}

void aug_hflip(float *x, int c, int h, int w)
{
    for (int p = 0; p < c; p++)
        for (int y = 0; y < h; y++) {
            float *row = x + ((size_t)p * h + y) * w;
            for (int i = 0, j = w - 1; i < j; i++, j--) {
                float t = row[i];
                row[i] = row[j];
                row[j] = t;
            }
        }
}

void aug_luma(float *gray, const float *x, size_t hw)
{
    const float *r = x, *g = x + hw, *b = x + 2 * hw;
#pragma omp simd
    for (size_t i = 0; i < hw; i++) gray[i] = 0.299f * r[i] + 0.587f * g[i] + 0.114f * b[i];
}

void aug_grayscale(float *x, int c, size_t hw)
{
    if (c != 3) return;
    aug_luma(x, x, hw);  /* element i reads r[i], g[i], b[i] before writing r[i] */
    memcpy(x + hw, x, hw * sizeof *x);
    memcpy(x + 2 * hw, x, hw * sizeof *x);
}

static inline float clamp01(float v) { return v < 0.0f ? 0.0f : v > 1.0f ? 1.0f : v; }

void aug_brightness(float *x, int c, size_t hw, float f)
{
    size_t n = (size_t)c * hw;
#pragma omp simd
    for (size_t i = 0; i < n; i++) x[i] = clamp01(f * x[i]);
}

void aug_contrast(float *x, int c, size_t hw, float f)
{
    double sum = 0;
    if (c == 3)
        for (size_t i = 0; i < hw; i++) sum += 0.299f * x[i] + 0.587f * x[hw + i] + 0.114f * x[2 * hw + i];
    else
        for (size_t i = 0; i < hw; i++) sum += x[i];
    float mean = (float)(sum / (double)hw), add = (1.0f - f) * mean;
    size_t n = (size_t)c * hw;
#pragma omp simd
    for (size_t i = 0; i < n; i++) x[i] = clamp01(f * x[i] + add);
}

void aug_saturation(float *x, int c, size_t hw, float f, float *tmp)
{
    if (c != 3) return;
    aug_luma(tmp, x, hw);
    float g = 1.0f - f;
    for (int p = 0; p < 3; p++) {
        float *restrict q = x + p * hw;
#pragma omp simd
        for (size_t i = 0; i < hw; i++) q[i] = clamp01(f * q[i] + g * tmp[i]);
    }
}

/* torchvision's _rgb2hsv / _hsv2rgb, one pixel at a time, in float as torch computes them.  Written
 * with selects instead of branches and truncation instead of floorf/fmodf (same values on these
 * ranges: fmod(x, 1) = x - floor(x) exactly for x in [0.5, 2)) so that the loop vectorises. */
void aug_hue(float *x, int c, size_t hw, float shift)
{
    if (c != 3) return;
    float *restrict R = x, *restrict G = x + hw, *restrict B = x + 2 * hw;
#pragma omp simd
    for (size_t i = 0; i < hw; i++) {
        float r = R[i], g = G[i], b = B[i];
        float maxc = r > g ? r : g, minc = r < g ? r : g;
        maxc = maxc > b ? maxc : b;
        minc = minc < b ? minc : b;
        int eqc = maxc == minc;
        float cr = maxc - minc;
        float s = cr / (eqc ? 1.0f : maxc);
        float crd = eqc ? 1.0f : cr;
        float rc = (maxc - r) / crd, gc = (maxc - g) / crd, bc = (maxc - b) / crd;
        float hh = maxc == r ? bc - gc : maxc == g ? 2.0f + rc - bc : 4.0f + gc - rc;
        hh = hh / 6.0f + 1.0f;                   /* in [5/6, 11/6]: fmod(hh, 1) = hh - trunc(hh) */
        hh -= (float)(int)hh;
        hh += shift;                             /* (h + shift) % 1.0, floor-mod as torch */
        float fl = (float)(int)hh;
        fl = fl > hh ? fl - 1.0f : fl;
        hh -= fl;
        hh = hh >= 1.0f ? 0.0f : hh;
        float v = maxc, h6 = hh * 6.0f, fi = (float)(int)h6, fr = h6 - fi;
        int k = (int)fi;                         /* 0..5 */
        float p = clamp01(v * (1.0f - s)), q = clamp01(v * (1.0f - s * fr)), t = clamp01(v * (1.0f - s * (1.0f - fr)));
        R[i] = (k == 0) | (k == 5) ? v : k == 1 ? q : k == 4 ? t : p;
        G[i] = (k == 1) | (k == 2) ? v : k == 0 ? t : k == 3 ? q : p;
        B[i] = (k == 3) | (k == 4) ? v : k == 2 ? t : k == 5 ? q : p;
    }
}

void aug_gauss_kernel(float *k, int n, double sigma)
{
    double half = (n - 1) * 0.5, sum = 0;
    for (int i = 0; i < n; i++) {
        double t = (-half + i) / sigma;
        k[i] = (float)exp(-0.5 * t * t);
        sum += k[i];
    }
    for (int i = 0; i < n; i++) k[i] = (float)(k[i] / sum);
}

int aug_blur_taps(int size)
{
    int k = size / 10;
    return k / 2 * 2 + 1;
}

/* Reflect an index into [0, n) without repeating the edge sample (torch's "reflect"). */
static inline int reflect(int i, int n)
{
    if (n == 1) return 0;
    while (i < 0 || i >= n) i = i < 0 ? -i : 2 * (n - 1) - i;
    return i;
}

/* Both passes are written as sums of shifted rows (axpy), which the compiler vectorises; the
 * horizontal pass reads a reflect-padded copy of the row so the interior needs no index folding. */
void aug_blur(float *x, int c, int h, int w, const float *k, int n, float *tmp)
{
    int r = n / 2;
    float *pad = tmp + (size_t)h * w;   /* w + 2r floats after the h*w plane */
    for (int p = 0; p < c; p++) {
        float *img = x + (size_t)p * h * w;
        for (int y = 0; y < h; y++) {
            const float *s = img + (size_t)y * w;
            float *restrict d = tmp + (size_t)y * w;
            for (int i = 0; i < w + 2 * r; i++) pad[i] = s[reflect(i - r, w)];
            for (int xx = 0; xx < w; xx++) d[xx] = 0;
            for (int j = 0; j < n; j++) {
                const float *restrict ps = pad + j;
                float kj = k[j];
#pragma omp simd
                for (int xx = 0; xx < w; xx++) d[xx] += kj * ps[xx];
            }
        }
        for (int y = 0; y < h; y++) {
            float *restrict d = img + (size_t)y * w;
            for (int xx = 0; xx < w; xx++) d[xx] = 0;
            for (int j = 0; j < n; j++) {
                const float *restrict s = tmp + (size_t)reflect(y - r + j, h) * w;
                float kj = k[j];
#pragma omp simd
                for (int xx = 0; xx < w; xx++) d[xx] += kj * s[xx];
            }
        }
    }
}

void aug_simclr_default(aug_simclr_opts *o, int size, double strength)
{
    o->size = size;
    o->scale_lo = 0.08; o->scale_hi = 1.0;
    o->ratio_lo = 3.0 / 4.0; o->ratio_hi = 4.0 / 3.0;
    o->interp = IMG_BICUBIC;
    o->flip_p = 0.5;
    o->jitter_p = 0.8;
    o->brightness = o->contrast = o->saturation = 0.8 * strength;
    o->hue = 0.2 * strength;
    o->gray_p = 0.2;
    o->blur_p = 0.5;
    o->sigma_lo = 0.1; o->sigma_hi = 2.0;
    o->blur_taps = 0;
}

void aug_work_free(aug_work *w)
{
    if (!w) return;
    img_work_free(&w->img);
    free(w->a); free(w->b); free(w->k);
    memset(w, 0, sizeof *w);
}

int aug_simclr(float *dst, const float *src, int c, int h, int w, const aug_simclr_opts *o, util_rng *r,
               aug_work *ws, aug_trace *tr, struct util_err *err)
{
    aug_trace t;
    memset(&t, 0, sizeof t);
    int S = o->size;
    size_t hw = (size_t)S * S;
    aug_crop_box(r, h, w, o->scale_lo, o->scale_hi, o->ratio_lo, o->ratio_hi, t.box);
    if (img_resample(dst, S, S, src, c, h, w, t.box[0], t.box[1], t.box[2], t.box[3], o->interp, &ws->img, err) < 0)
        return -1;
    if (o->interp == IMG_BICUBIC)  /* the cubic overshoots; PIL clamps to the 8-bit range */
#pragma omp simd
        for (size_t i = 0; i < (size_t)c * hw; i++) dst[i] = clamp01(dst[i]);
    int taps = o->blur_taps > 0 ? o->blur_taps : aug_blur_taps(S);
    if (GROW(ws->a, ws->a_cap, hw + S + taps, err) < 0) return -1;   /* aug_blur's plane and padded row */

    t.flip = util_rng_uniform(r) < o->flip_p;
    if (t.flip) aug_hflip(dst, c, S, S);

    t.jitter = util_rng_uniform(r) < o->jitter_p;
    if (t.jitter) {
        int64_t ord[4] = {0, 1, 2, 3};
        util_shuffle_i64(r, ord, 4);
        t.b = (float)uniform(r, fmax(0.0, 1.0 - o->brightness), 1.0 + o->brightness);
        t.c = (float)uniform(r, fmax(0.0, 1.0 - o->contrast), 1.0 + o->contrast);
        t.s = (float)uniform(r, fmax(0.0, 1.0 - o->saturation), 1.0 + o->saturation);
        t.h = (float)uniform(r, -o->hue, o->hue);
        for (int i = 0; i < 4; i++) {
            t.order[i] = (int)ord[i];
            /* A strength of 0 disables an adjustment, as torchvision's None parameters do. */
            switch (ord[i]) {
            case 0: if (o->brightness > 0) aug_brightness(dst, c, hw, t.b); break;
            case 1: if (o->contrast > 0) aug_contrast(dst, c, hw, t.c); break;
            case 2: if (o->saturation > 0) aug_saturation(dst, c, hw, t.s, ws->a); break;
            default: if (o->hue > 0) aug_hue(dst, c, hw, t.h); break;
            }
        }
    }

    t.gray = util_rng_uniform(r) < o->gray_p;
    if (t.gray) aug_grayscale(dst, c, hw);

    t.blur = util_rng_uniform(r) < o->blur_p;
    if (t.blur) {
        int n = taps;
        t.sigma = (float)uniform(r, o->sigma_lo, o->sigma_hi);
        if (GROW(ws->k, ws->k_cap, (size_t)n, err) < 0) return -1;
        aug_gauss_kernel(ws->k, n, t.sigma);
        aug_blur(dst, c, S, S, ws->k, n, ws->a);
    }
    if (tr) *tr = t;
    return 0;
}

/* ---------------------------------------------------------------- spectrograms */

void aug_spec_default(aug_spec_opts *o)
{
    memset(o, 0, sizeof *o);
    o->freq_masks = 2; o->freq_width = 0.1; o->freq_frac = 1;
    o->time_masks = 2; o->time_width = 0.1; o->time_frac = 1;
    o->shift = 0; o->shift_roll = 1;
    o->gain_db = 0; o->gain_domain = AUG_GAIN_LN;
    o->fill = AUG_FILL_MEAN;
    o->mixup_alpha = 0; o->mixup_p = 1.0;
}

void aug_mask(float *x, int c, int f, int t, int axis, int start, int width, float value)
{
    for (int p = 0; p < c; p++) {
        float *img = x + (size_t)p * f * t;
        if (axis == 0) {
            for (int y = start; y < start + width && y < f; y++)
                for (int i = 0; i < t; i++) img[(size_t)y * t + i] = value;
        } else {
            for (int y = 0; y < f; y++)
                for (int i = start; i < start + width && i < t; i++) img[(size_t)y * t + i] = value;
        }
    }
}

void aug_shift(float *x, int c, int f, int t, int s, int roll, float value, float *tmp)
{
    if (s == 0 || t == 0) return;
    for (int row = 0; row < c * f; row++) {
        float *d = x + (size_t)row * t;
        memcpy(tmp, d, (size_t)t * sizeof *d);
        for (int i = 0; i < t; i++) {
            int j = i - s;  /* output i takes input i - s */
            if (roll) d[i] = tmp[((j % t) + t) % t];
            else d[i] = j >= 0 && j < t ? tmp[j] : value;
        }
    }
}

/* log of a Gamma(a, 1) sample: Marsaglia-Tsang, boosted for a < 1 (in logs, so tiny a cannot underflow). */
static double log_gamma_sample(util_rng *r, double a)
{
    double boost = 0;
    if (a < 1.0) {
        double u = util_rng_uniform(r);
        boost = log(u > 1e-300 ? u : 1e-300) / a;
        a += 1.0;
    }
    double d = a - 1.0 / 3.0, c = 1.0 / sqrt(9.0 * d);
    for (;;) {
        double x, v;
        do {
            x = util_rng_normal(r);
            v = 1.0 + c * x;
        } while (v <= 0.0);
        v = v * v * v;
        double u = util_rng_uniform(r);
        if (u < 1.0 - 0.0331 * x * x * x * x || log(u) < 0.5 * x * x + d * (1.0 - v + log(v)))
            return log(d * v) + boost;
    }
}

double aug_beta(util_rng *r, double a)
{
    double lx = log_gamma_sample(r, a), ly = log_gamma_sample(r, a);
    return 1.0 / (1.0 + exp(ly - lx));
}

static int axis_width(double wdt, int frac, int n)
{
    int v = frac ? (int)floor(wdt * n) : (int)wdt;
    return v < 0 ? 0 : v > n ? n : v;
}

void aug_spec(float *x, int c, int f, int t, const aug_spec_opts *o, util_rng *r, float *tmp)
{
    size_t n = (size_t)c * f * t;
    if (o->gain_db > 0) {
        double g = uniform(r, -o->gain_db, o->gain_db);
        if (o->gain_domain == AUG_GAIN_POWER) {
            float m = (float)pow(10.0, g / 10.0);
            for (size_t i = 0; i < n; i++) x[i] *= m;
        } else {
            /* ln(10^(g/10) * p) = ln p + g ln(10) / 10 */
            float a = (float)(o->gain_domain == AUG_GAIN_DB ? g : g * log(10.0) / 10.0);
            for (size_t i = 0; i < n; i++) x[i] += a;
        }
    }
    float fill = (float)o->fill_value;
    if (o->fill == AUG_FILL_MEAN) {
        double s = 0;
        for (size_t i = 0; i < n; i++) s += x[i];
        fill = n ? (float)(s / (double)n) : 0.0f;
    }
    int smax = o->shift_frac ? (int)floor(o->shift * t) : (int)o->shift;
    if (smax > 0) {
        int s = (int)util_rng_below(r, (uint64_t)(2 * smax + 1)) - smax;
        aug_shift(x, c, f, t, s, o->shift_roll, fill, tmp);
    }
    int fw = axis_width(o->freq_width, o->freq_frac, f), tw = axis_width(o->time_width, o->time_frac, t);
    for (int m = 0; m < o->freq_masks; m++) {
        int wd = (int)util_rng_below(r, (uint64_t)fw + 1);
        int st = (int)util_rng_below(r, (uint64_t)(f - wd + 1));
        aug_mask(x, c, f, t, 0, st, wd, fill);
    }
    for (int m = 0; m < o->time_masks; m++) {
        int wd = (int)util_rng_below(r, (uint64_t)tw + 1);
        int st = (int)util_rng_below(r, (uint64_t)(t - wd + 1));
        aug_mask(x, c, f, t, 1, st, wd, fill);
    }
}

/* ---------------------------------------------------------------- stream engine */

void aug_cfg_default(aug_cfg *c)
{
    memset(c, 0, sizeof *c);
    c->policy = AUG_NONE;
    aug_simclr_default(&c->simclr, 224, 1.0);
    aug_spec_default(&c->spec);
    c->views = 1;
    c->epochs = 1;
    c->seed = 0;
}

typedef struct {
    tsz_rec rec;      /* as stored: dtype is u8 or f32 for simclr/spec, anything for none */
    size_t off;       /* data offset in the arena */
    int64_t index;    /* input record index */
} held_rec;

typedef struct {      /* one input record of a batch and where its outputs go */
    const held_rec *h;
    int64_t epoch;
    size_t out_off;   /* first output byte of this instance in the batch arena */
    size_t view_bytes, soft_bytes;
    tsz_rec out_rec;
} inst;

typedef struct {
    aug_work w;
    float *src, *view;
    size_t src_cap, view_cap;
} thread_ws;

struct engine {
    const aug_cfg *cfg;
    const char *path;
    int soft;                  /* mixup: soft-label records follow each view */
    int n_classes;
    int denorm;                /* input carries mean/std normalisation: undo it */
    float in_mean[3], in_std[3];
    held_rec *recs;
    int64_t n, cap;
    uint8_t *arena;
    size_t arena_len, arena_cap;
    int64_t n_total;           /* all input records (hold mode), -1 streaming */
    int64_t n_hint;            /* the input's declared count when holding it, else 0 */
};

/* Read "a,b,c" (or one value for all three) into v.  0 or -1. */
static int parse3(const char *s, float v[3])
{
    double d[3];
    int k = 0;
    const char *p = s;
    while (k < 3) {
        char *end;
        d[k++] = strtod(p, &end);
        if (end == p) return -1;
        p = end;
        if (*p == ',') p++;
        else break;
    }
    if (*p) return -1;
    if (k == 1) d[1] = d[2] = d[0];
    else if (k != 3) return -1;
    for (int i = 0; i < 3; i++) v[i] = (float)d[i];
    return 0;
}

/* Check rec against what the policy needs; the message names the record. */
static int check_rec(const struct engine *e, const tsz_rec *rec, int64_t idx, struct util_err *err)
{
    char s[200];
    tsz_shape_str(rec, s, sizeof s);
    int pol = e->cfg->policy;
    if (pol == AUG_SIMCLR) {
        if (rec->ndim != 3 || (rec->shape[0] != 1 && rec->shape[0] != 3) || rec->shape[1] < 1 || rec->shape[2] < 1 ||
            rec->shape[1] > IMG_MAX_SIDE || rec->shape[2] > IMG_MAX_SIDE)
            return util_err_set(err, "%s: record %lld (%s): shape %s is not an image (1 or 3 x H x W)", e->path,
                                (long long)idx, util_msgname(rec->name).s, s);
    } else if (pol == AUG_SPEC) {
        int ok = rec->ndim == 2 || rec->ndim == 3;
        for (int i = 0; ok && i < rec->ndim; i++) ok = rec->shape[i] >= 1 && rec->shape[i] <= INT32_MAX;
        if (ok && rec->ndim == 3) ok = rec->shape[0] * rec->shape[1] <= INT32_MAX;
        if (!ok)
            return util_err_set(err, "%s: record %lld (%s): shape %s is not a spectrogram (F x T or C x F x T)",
                                e->path, (long long)idx, util_msgname(rec->name).s, s);
    }
    if (e->soft && (rec->label < 0 || rec->label >= e->n_classes))
        return util_err_set(err, "%s: record %lld (%s): label %d outside the %d classes mixup needs", e->path,
                            (long long)idx, util_msgname(rec->name).s, rec->label, e->n_classes);
    return 0;
}

/* Read the next input record into the arena (u8 stays u8; other dtypes become f32 unless the policy
 * is none).  1 a record, 0 end, -1 error. */
static int read_rec(struct engine *e, tsz_reader *in, struct util_err *err)
{
    tsz_rec rec;
    int rc = tsz_next(in, &rec, err);
    if (rc <= 0) return rc;
    int64_t idx = tsz_reader_index(in) - 1;
    if (check_rec(e, &rec, idx, err) < 0) return -1;
    int keep = e->cfg->policy == AUG_NONE || rec.dtype == TSZ_F32 ||
               (rec.dtype == TSZ_U8 && e->cfg->policy == AUG_SIMCLR);
    int64_t numel = tsz_rec_numel(&rec);
    size_t bytes = keep ? tsz_rec_bytes(&rec) : (size_t)numel * sizeof(float);
    size_t off = (e->arena_len + 63) & ~(size_t)63;   /* aligned for float access */
    if (off + bytes > e->arena_cap) {
        uint8_t *na = NULL;
        size_t nc = e->arena_cap ? e->arena_cap : 1 << 20;
        /* First record of a held stream that declares its count: try to reserve it all at once, so a
         * large set is not copied by repeated doubling (twice the memory for a moment).  The count
         * comes from the input, so a failure here only falls back to doubling. */
        size_t per = (bytes + 63) & ~(size_t)63;
        if (e->n == 0 && e->n_hint > 1 && per > 0 && (uint64_t)e->n_hint <= SIZE_MAX / 2 / per &&
            (na = realloc(e->arena, (size_t)e->n_hint * per)))
            nc = (size_t)e->n_hint * per;
        if (!na) {
            while (nc < off + bytes) nc *= 2;
            if (!(na = realloc(e->arena, nc)))
                return util_err_set(err, "%s: record %lld (%s): out of memory holding the input (%zu bytes)", e->path,
                                    (long long)idx, util_msgname(rec.name).s, nc);
        }
        e->arena = na;
        e->arena_cap = nc;
    }
    if (keep) rc = tsz_read_data(in, e->arena + off, bytes, err);
    else {
        rc = tsz_read_data_f32(in, &rec, (float *)(void *)(e->arena + off), (size_t)numel, err);
        rec.dtype = TSZ_F32;
    }
    if (rc < 0) return -1;
    if (e->n == e->cap) {
        int64_t nc = e->cap ? 2 * e->cap : 1024;
        held_rec *nr = realloc(e->recs, (size_t)nc * sizeof *nr);
        if (!nr) return util_err_set(err, "%s: record %lld: out of memory", e->path, (long long)idx);
        e->recs = nr;
        e->cap = nc;
    }
    e->recs[e->n].rec = rec;
    e->recs[e->n].off = off;
    e->recs[e->n].index = idx;
    e->n++;
    e->arena_len = off + bytes;
    return 1;
}

/* Output description of one view of h. */
static void out_rec(const struct engine *e, const held_rec *h, tsz_rec *o, size_t *view_bytes)
{
    const aug_cfg *c = e->cfg;
    *o = h->rec;
    if (c->policy == AUG_SIMCLR) {
        o->dtype = c->out_u8 ? TSZ_U8 : TSZ_F32;
        o->shape[1] = o->shape[2] = c->simclr.size;
    } else if (c->policy == AUG_SPEC) {
        o->dtype = TSZ_F32;
    }
    *view_bytes = tsz_rec_bytes(o);
}

/* Source image of h as floats in [0, 1] (c x h x w) in t->src. */
static int simclr_source(const struct engine *e, const held_rec *h, thread_ws *t, struct util_err *err)
{
    size_t n = (size_t)tsz_rec_numel(&h->rec);
    if (GROW(t->src, t->src_cap, n, err) < 0) return -1;
    const uint8_t *d = e->arena + h->off;
    if (h->rec.dtype == TSZ_U8) {
        for (size_t i = 0; i < n; i++) t->src[i] = d[i] / 255.0f;  /* as img2tensor's f32 output */
    } else {
        memcpy(t->src, d, n * sizeof(float));
        int c = (int)h->rec.shape[0];
        if (e->denorm) img_denormalize(t->src, c, n / c, e->in_mean, e->in_std);
    }
    return 0;
}

/* All views of one instance into out (the batch arena at in->out_off). */
static int run_inst(const struct engine *e, const inst *in, uint8_t *out, thread_ws *t, struct util_err *err)
{
    const aug_cfg *c = e->cfg;
    const held_rec *h = in->h;
    uint64_t stream = (uint64_t)in->epoch * (uint64_t)(e->n_total > 0 ? e->n_total : 0) + (uint64_t)h->index;
    util_rng r = util_rng_split(c->seed, stream);
    size_t step = in->view_bytes + in->soft_bytes;
    const uint8_t *src = e->arena + h->off;
    if (c->policy == AUG_NONE) {
        for (int v = 0; v < c->views; v++) memcpy(out + v * step, src, in->view_bytes);
        return 0;
    }
    if (c->policy == AUG_SIMCLR) {
        if (simclr_source(e, h, t, err) < 0) return -1;
        int ch = (int)h->rec.shape[0], hh = (int)h->rec.shape[1], ww = (int)h->rec.shape[2];
        size_t n = (size_t)ch * c->simclr.size * c->simclr.size;
        if (GROW(t->view, t->view_cap, n, err) < 0) return -1;
        for (int v = 0; v < c->views; v++) {
            float *dst = c->out_u8 ? t->view : (float *)(void *)(out + v * step);
            if (aug_simclr(dst, t->src, ch, hh, ww, &c->simclr, &r, &t->w, NULL, err) < 0) return -1;
            if (c->out_u8) img_to_u8(out + v * step, dst, n);
            else if (c->normalize) img_normalize(dst, ch, n / ch, c->mean, c->std);
        }
        return 0;
    }
    /* spectrograms */
    const tsz_rec *rec = &h->rec;
    int ch = rec->ndim == 3 ? (int)rec->shape[0] : 1;
    int f = (int)rec->shape[rec->ndim - 2], tt = (int)rec->shape[rec->ndim - 1];
    size_t n = (size_t)ch * f * tt;
    if (GROW(t->view, t->view_cap, (size_t)tt, err) < 0) return -1;
    for (int v = 0; v < c->views; v++) {
        float *dst = (float *)(void *)(out + v * step);
        memcpy(dst, src, n * sizeof(float));
        if (e->soft) {
            float *soft = (float *)(void *)(out + v * step + in->view_bytes);
            memset(soft, 0, (size_t)e->n_classes * sizeof(float));
            soft[rec->label] = 1.0f;
            if (util_rng_uniform(&r) < c->spec.mixup_p && e->n > 1) {
                int64_t j = (int64_t)util_rng_below(&r, (uint64_t)(e->n - 1));
                if (j >= h - e->recs) j++;
                const held_rec *p = &e->recs[j];
                float lam = (float)aug_beta(&r, c->spec.mixup_alpha);
                if (tsz_rec_numel(&p->rec) != (int64_t)n || p->rec.ndim != rec->ndim ||
                    memcmp(p->rec.shape, rec->shape, sizeof rec->shape) != 0) {
                    char s1[100], s2[100];
                    tsz_shape_str(rec, s1, sizeof s1);
                    tsz_shape_str(&p->rec, s2, sizeof s2);
                    return util_err_set(err, "%s: record %lld (%s): shape %s, but its mixup partner record %lld (%s) is %s",
                                        e->path, (long long)h->index, util_msgname(rec->name).s, s1, (long long)p->index,
                                        util_msgname(p->rec.name).s, s2);
                }
                const float *ps = (const float *)(const void *)(e->arena + p->off);
                for (size_t i = 0; i < n; i++) dst[i] = lam * dst[i] + (1.0f - lam) * ps[i];
                soft[rec->label] = lam;
                soft[p->rec.label] += 1.0f - lam;
            }
        }
        aug_spec(dst, ch, f, tt, &c->spec, &r, t->view);
    }
    return 0;
}

static const char *policy_name(int p) { return p == AUG_SIMCLR ? "simclr" : p == AUG_SPEC ? "spec" : "none"; }

int aug_stream(const aug_cfg *cfg, tsz_reader *in, const char *out_path, tsz_attrs *attrs, const tsz_wopts *wo,
               struct util_err *err)
{
    struct engine e;
    memset(&e, 0, sizeof e);
    e.cfg = cfg;
    e.path = tsz_reader_path(in);
    e.n_total = -1;
    int nt = cfg->threads > 0 ? cfg->threads : util_ncpu();
    int B = cfg->batch > 0 ? cfg->batch : 32 * nt;
    int hold = cfg->epochs > 1 || cfg->shuffle || (cfg->policy == AUG_SPEC && cfg->spec.mixup_alpha > 0);
    tsz_writer *w = NULL;
    thread_ws *tws = NULL;
    inst *insts = NULL;
    int64_t *order = NULL;
    uint8_t *out = NULL;
    size_t out_cap = 0;
    int rc = -1;
    util_progress prog;

    if (cfg->policy == AUG_SPEC && cfg->spec.mixup_alpha > 0) {
        e.soft = 1;
        e.n_classes = cfg->num_classes;
        if (e.n_classes <= 0) {
            char **names;
            int nc = 0;
            if (tsz_attrs_get_classes(attrs, &names, &nc) < 0) { util_err_set(err, "%s: out of memory", e.path); goto done; }
            tsz_free_classes(names, nc);
            e.n_classes = nc;
        }
        if (e.n_classes <= 0) {
            util_err_set(err, "%s: mixup needs the number of classes: the stream has no \"classes\" attribute "
                         "(give --num-classes)", e.path);
            goto done;
        }
    }
    if (cfg->policy == AUG_SIMCLR) {
        const char *m = tsz_attrs_get(attrs, "mean"), *s = tsz_attrs_get(attrs, "std");
        if (m && s) {
            if (parse3(m, e.in_mean) < 0 || parse3(s, e.in_std) < 0) {
                util_err_set(err, "%s: cannot read the mean/std attributes (\"%s\", \"%s\")", e.path, m, s);
                goto done;
            }
            e.denorm = 1;
        }
    }
    int per_view = e.soft ? 2 : 1;
    int64_t per_inst = (int64_t)cfg->views * per_view;
    int64_t g0 = cfg->start / per_inst, skip0 = cfg->start % per_inst;
    int64_t declared = -1, total = -1;

    if (hold) {
        int r;
        e.n_hint = tsz_reader_declared(in) > 0 ? tsz_reader_declared(in) : 0;
        while ((r = read_rec(&e, in, err)) == 1) {}
        if (r < 0) goto done;
        e.n_total = e.n;
        total = (int64_t)cfg->epochs * e.n * per_inst;
        if (cfg->start > total) {
            util_err_set(err, "%s: --start %lld is beyond the %lld records of the run", e.path, (long long)cfg->start,
                         (long long)total);
            goto done;
        }
        declared = total - cfg->start;
    } else {
        int64_t d = tsz_reader_declared(in);
        if (d >= 0) {
            total = d * per_inst;
            if (cfg->start > total) {
                util_err_set(err, "%s: --start %lld is beyond the %lld records of the run", e.path,
                             (long long)cfg->start, (long long)total);
                goto done;
            }
            declared = total - cfg->start;
        }
        /* Skip the input records before the first one we need (without decoding anything else). */
        for (int64_t i = 0; i < g0; i++) {
            tsz_rec rec;
            int r = tsz_next(in, &rec, err);
            if (r < 0) goto done;
            if (r == 0) {
                util_err_set(err, "%s: --start %lld is beyond the %lld records of the run", e.path,
                             (long long)cfg->start, (long long)(i * per_inst));
                goto done;
            }
        }
    }

    tsz_attrs_set(attrs, "augment", policy_name(cfg->policy));
    tsz_attrs_setf(attrs, "augment_views", "%d", cfg->views);
    tsz_attrs_setf(attrs, "augment_epochs", "%d", cfg->epochs);
    tsz_attrs_setf(attrs, "augment_seed", "%llu", (unsigned long long)cfg->seed);
    tsz_attrs_setf(attrs, "augment_start", "%lld", (long long)cfg->start);
    if (total >= 0) tsz_attrs_setf(attrs, "records_total", "%lld", (long long)total);
    if (cfg->policy == AUG_SIMCLR) {
        tsz_attrs_set(attrs, "kind", "image");
        tsz_attrs_setf(attrs, "size", "%d", cfg->simclr.size);
        tsz_attrs_remove(attrs, "mean");
        tsz_attrs_remove(attrs, "std");
        tsz_attrs_remove(attrs, "resize");
        tsz_attrs_remove(attrs, "crop");
        if (cfg->normalize) {
            tsz_attrs_setf(attrs, "mean", "%.9g,%.9g,%.9g", cfg->mean[0], cfg->mean[1], cfg->mean[2]);
            tsz_attrs_setf(attrs, "std", "%.9g,%.9g,%.9g", cfg->std[0], cfg->std[1], cfg->std[2]);
        }
    }
    if (e.soft) {
        tsz_attrs_set(attrs, "soft_labels", "1");
        tsz_attrs_setf(attrs, "num_classes", "%d", e.n_classes);
    }
    if (!(w = tsz_writer_open(out_path, attrs, declared, wo, err))) goto done;

    tws = calloc((size_t)nt, sizeof *tws);
    insts = calloc((size_t)B, sizeof *insts);
    if (!tws || !insts || (hold && !(order = malloc((size_t)(e.n > 0 ? e.n : 1) * sizeof *order)))) {
        util_err_set(err, "out of memory");
        goto done;
    }
    util_progress_start(&prog, "records", declared, cfg->verbose);

    int64_t g = g0, written = 0, cur_epoch = -1;
    int64_t g_end = hold ? (int64_t)cfg->epochs * e.n : INT64_MAX;
    struct util_err ferr;
    while (g < g_end) {
        /* Collect a batch of instances. */
        int nb = 0;
        if (hold) {
            int64_t ep = g / e.n;
            if (ep != cur_epoch) {
                for (int64_t i = 0; i < e.n; i++) order[i] = i;
                if (cfg->shuffle) {
                    util_rng sr = util_rng_split(cfg->seed ^ 0x53485546464c45ULL, (uint64_t)ep);
                    util_shuffle_i64(&sr, order, e.n);
                }
                cur_epoch = ep;
            }
            int64_t lim = (ep + 1) * e.n;
            for (; nb < B && g < lim; nb++, g++) {
                insts[nb].h = &e.recs[order[g % e.n]];
                insts[nb].epoch = ep;
            }
        } else {
            e.n = 0;
            e.arena_len = 0;
            int r = 1;
            while (nb < B && (r = read_rec(&e, in, err)) == 1) nb++;
            if (r < 0) goto done;
            for (int i = 0; i < nb; i++) {
                insts[i].h = &e.recs[i];
                insts[i].epoch = 0;
            }
            g += nb;
            if (nb == 0) break;
        }
        /* Lay out the outputs. */
        size_t off = 0;
        for (int i = 0; i < nb; i++) {
            inst *it = &insts[i];
            out_rec(&e, it->h, &it->out_rec, &it->view_bytes);
            it->view_bytes = (it->view_bytes + 63) & ~(size_t)63;
            it->soft_bytes = e.soft ? (((size_t)e.n_classes * sizeof(float) + 63) & ~(size_t)63) : 0;
            it->out_off = off;
            off += (it->view_bytes + it->soft_bytes) * cfg->views;
        }
        if (GROW(out, out_cap, off, err) < 0) goto done;
        int64_t fail = -1;
#pragma omp parallel for num_threads(nt) schedule(dynamic, 1)
        for (int i = 0; i < nb; i++) {
            struct util_err le;
            int tid = omp_get_thread_num();
            if (run_inst(&e, &insts[i], out + insts[i].out_off, &tws[tid], &le) < 0) {
#pragma omp critical(aug_fail)
                if (fail < 0 || i < fail) {
                    fail = i;
                    ferr = le;
                }
            }
        }
        if (fail >= 0) {  /* the first failing record in output order, whatever the threads did */
            *err = ferr;
            goto done;
        }
        /* Write in order, dropping what comes before --start. */
        for (int i = 0; i < nb; i++) {
            inst *it = &insts[i];
            for (int v = 0; v < cfg->views; v++) {
                const uint8_t *base = out + it->out_off + (it->view_bytes + it->soft_bytes) * v;
                for (int k = 0; k < per_view; k++) {
                    if (skip0 > 0) { skip0--; continue; }
                    if (k == 0) {
                        if (tsz_write(w, &it->out_rec, base, err) < 0) goto done;
                    } else {
                        tsz_rec sr;
                        int64_t shape[1] = {e.n_classes};
                        char nm[TSZ_MAX_NAME + 1];
                        snprintf(nm, sizeof nm, "%.*s#soft", TSZ_MAX_NAME - 5, it->out_rec.name);
                        tsz_rec_init(&sr, nm, TSZ_F32, 1, shape);
                        sr.label = it->out_rec.label;
                        sr.fold = it->out_rec.fold;
                        if (tsz_write(w, &sr, base + it->view_bytes, err) < 0) goto done;
                    }
                    written++;
                }
            }
        }
        util_progress_update(&prog, written, NULL);
    }
    if (skip0 > 0) {  /* streaming input without a declared count ended inside the skipped part */
        util_err_set(err, "%s: --start %lld is beyond the %lld records of the run", e.path, (long long)cfg->start,
                     (long long)(g * per_inst));
        goto done;
    }
    if (tsz_writer_finish(w, err) < 0) goto done;
    util_progress_end(&prog, written, NULL);
    rc = 0;
done:
    tsz_writer_close(w);
    if (tws)
        for (int i = 0; i < nt; i++) {
            aug_work_free(&tws[i].w);
            free(tws[i].src);
            free(tws[i].view);
        }
    free(tws); free(insts); free(order); free(out);
    free(e.recs); free(e.arena);
    return rc;
}
