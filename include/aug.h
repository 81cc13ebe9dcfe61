/* aug.h: data augmentation for self-supervised and supervised training.  Image operations follow
 * torchvision's semantics for float tensors in [0, 1] (SimCLR v1's pipeline: random resized crop,
 * flip, colour jitter in random order, grayscale, Gaussian blur); spectrogram operations are
 * SpecAugment masks, time shift, gain and mixup.  aug_stream runs a policy over a TSZ stream with
 * per-record random streams (util_rng_split(seed, epoch * N + index)), so the output does not depend on
 * the thread count and can be restarted at any output record. */
#ifndef EARSIGHT_AUG_H
#define EARSIGHT_AUG_H

#include <stddef.h>
#include <stdint.h>

#include "img.h"
#include "tsz.h"
#include "util.h"

/* ---- single image operations: planar float images, c planes of h x w, values in [0, 1] ---- */

/* torchvision's RandomResizedCrop.get_params: up to 10 tries of area in [scale_lo, scale_hi] of the
 * image and log-uniform aspect ratio in [ratio_lo, ratio_hi], else the central crop clamped to the ratio
 * range.  box = top, left, height, width. */
void aug_crop_box(util_rng *r, int h, int w, double scale_lo, double scale_hi, double ratio_lo, double ratio_hi,
                  int box[4]);
void aug_hflip(float *x, int c, int h, int w);
/* ITU-R 601 luma 0.299 R + 0.587 G + 0.114 B (PIL's weights; torchvision's tensor path uses 0.2989),
 * written to gray (h*w values) from 3 planes. */
void aug_luma(float *gray, const float *x, size_t hw);
/* Replace the 3 planes by their luma (c == 1: no change). */
void aug_grayscale(float *x, int c, size_t hw);
/* torchvision adjust_*: brightness f*x, contrast blend with the mean luma, saturation blend with the
 * luma image, all clamped to [0, 1]; hue shifts H by `shift` (in turns, [-0.5, 0.5]) through HSV.
 * Saturation and hue leave 1-channel images unchanged; tmp holds hw floats. */
void aug_brightness(float *x, int c, size_t hw, float f);
void aug_contrast(float *x, int c, size_t hw, float f);
void aug_saturation(float *x, int c, size_t hw, float f, float *tmp);
void aug_hue(float *x, int c, size_t hw, float shift);
/* Normalised Gaussian taps (odd n) as torchvision's _get_gaussian_kernel1d. */
void aug_gauss_kernel(float *k, int n, double sigma);
/* Separable blur with k (n taps) and reflect padding (torch's "reflect": the edge is not repeated);
 * tmp holds h*w + w + n floats. */
void aug_blur(float *x, int c, int h, int w, const float *k, int n, float *tmp);
/* SimCLR's kernel: 10 % of the side, made odd (64 -> 7, 96 -> 9, 224 -> 23). */
int aug_blur_taps(int size);

/* SimCLR v1 image policy; every probability and strength is a field (defaults in aug_simclr_default). */
typedef struct {
    int size;                            /* output side (square) */
    double scale_lo, scale_hi;           /* crop area fraction, 0.08 .. 1 */
    double ratio_lo, ratio_hi;           /* crop aspect, 3/4 .. 4/3 */
    enum img_filter interp;              /* IMG_BICUBIC (default) or IMG_BILINEAR */
    double flip_p;                       /* 0.5 */
    double jitter_p;                     /* 0.8 */
    double brightness, contrast, saturation, hue;  /* 0.8 s, 0.8 s, 0.8 s, 0.2 s */
    double gray_p;                       /* 0.2 */
    double blur_p;                       /* 0.5 */
    double sigma_lo, sigma_hi;           /* 0.1 .. 2.0 */
    int blur_taps;                       /* odd; 0: aug_blur_taps(size) */
} aug_simclr_opts;
void aug_simclr_default(aug_simclr_opts *o, int size, double strength);

/* Which operations one view drew (for tests and for debugging). */
typedef struct {
    int box[4];
    int flip, jitter, gray, blur;
    int order[4];                        /* 0 brightness, 1 contrast, 2 saturation, 3 hue */
    float b, c, s, h, sigma;
} aug_trace;

/* Per-thread buffers (zero-initialise; free with aug_work_free). */
typedef struct {
    img_work img;
    float *a, *b;
    size_t a_cap, b_cap;
    float *k;
    size_t k_cap;
} aug_work;
void aug_work_free(aug_work *w);

/* One SimCLR view: src (c x h x w, [0, 1]) to dst (c x size x size).  trace may be NULL. 0 or -1 (memory). */
int aug_simclr(float *dst, const float *src, int c, int h, int w, const aug_simclr_opts *o, util_rng *r,
               aug_work *ws, aug_trace *trace, struct util_err *err);

/* ---- spectrograms: c planes of f (frequency) x t (time) ---- */

enum aug_gain_domain { AUG_GAIN_LN = 0, AUG_GAIN_DB = 1, AUG_GAIN_POWER = 2 };
enum aug_fill { AUG_FILL_MEAN = 0, AUG_FILL_VALUE = 1 };

typedef struct {
    int freq_masks, time_masks;          /* how many of each (2, 2) */
    double freq_width, time_width;       /* max width: bins/frames, or a fraction of the axis if *_frac */
    int freq_frac, time_frac;
    double shift;                        /* max |shift| in frames (or fraction when shift_frac); 0: off */
    int shift_frac;
    int shift_roll;                      /* 1: circular, 0: fill with the fill value */
    double gain_db;                      /* max |gain| in dB; 0: off */
    enum aug_gain_domain gain_domain;
    enum aug_fill fill;                  /* masks and shift fill: the record's mean or fill_value */
    double fill_value;
    double mixup_alpha;                  /* Beta(alpha, alpha) mixing weight; 0: off */
    double mixup_p;                      /* probability that a view is mixed (1) */
} aug_spec_opts;
void aug_spec_default(aug_spec_opts *o);

/* Mask [start, start + width) of the frequency (axis 0) or time (axis 1) axis with value. */
void aug_mask(float *x, int c, int f, int t, int axis, int start, int width, float value);
/* Shift every row by s frames (positive: later), circularly or filling with value. tmp: t floats. */
void aug_shift(float *x, int c, int f, int t, int s, int roll, float value, float *tmp);
/* Beta(a, a) sample (Marsaglia-Tsang gammas). */
double aug_beta(util_rng *r, double a);

/* Spectrogram view in place (gain, shift, masks; mixup is done by the caller). */
void aug_spec(float *x, int c, int f, int t, const aug_spec_opts *o, util_rng *r, float *tmp);

/* ---- streams ---- */

enum aug_policy { AUG_NONE = 0, AUG_SIMCLR = 1, AUG_SPEC = 2 };

typedef struct {
    enum aug_policy policy;
    aug_simclr_opts simclr;
    aug_spec_opts spec;
    int views;                /* views per input record (1) */
    int epochs;               /* passes over the input (1); > 1 holds the input in memory */
    int shuffle;              /* reshuffle the order every epoch (holds the input in memory) */
    int64_t start;            /* skip this many output records (restart a run where it stopped) */
    uint64_t seed;
    int threads;              /* 0: all cores */
    int batch;                /* input records per parallel batch (0: 32 per thread) */
    int out_u8;               /* simclr: write u8 (round(x * 255)) instead of f32 */
    int normalize;            /* simclr: write (x - mean) / std */
    float mean[3], std[3];
    int num_classes;          /* mixup: 0 = count of the "classes" attribute */
    int verbose;
} aug_cfg;
void aug_cfg_default(aug_cfg *c);

/* Run cfg over in, writing out_path ("-" stdout) with attributes attrs (the caller copies the input's
 * attributes and adds history; this adds its own and sets the declared count: epochs x N x views,
 * twice that with mixup's soft-label records, less cfg->start).  0, or -1 with err naming the record. */
int aug_stream(const aug_cfg *cfg, tsz_reader *in, const char *out_path, tsz_attrs *attrs, const tsz_wopts *wo,
               struct util_err *err);

#endif
