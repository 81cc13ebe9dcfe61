/* img.h: natural images in: PNG (libpng, every colour type, bit depth and interlace) and JPEG
 * (libjpeg-turbo) decoded to RGB, resized (shorter side, exact area averaging when shrinking),
 * centre-cropped and normalised into C x H x W tensors.  The resampler follows PIL's separable
 * convolution scheme (antialiased when shrinking) and is shared with augment's random resized crop. */
#ifndef EARSIGHT_IMG_H
#define EARSIGHT_IMG_H

#include <stddef.h>
#include <stdint.h>

#include "util.h"

#define IMG_MAX_SIDE 65535               /* pixels per side accepted from a file */
#define IMG_MAX_PIXELS ((int64_t)1 << 28) /* 268 M pixels: refuse bigger images before allocating */
#define IMG_MAX_FILE ((size_t)1 << 30)   /* bytes of one image file */

/* A decoded image: h x w RGB samples, interleaved.  Alpha is dropped and gray replicated, as PIL's
 * convert('RGB') does, unless `composite` is set: then each pixel with alpha is blended onto the gray
 * level `matte` (0..255; what a transparent cut-out photo looks like on a plain background, instead of
 * whatever colours its transparent pixels happen to hold).  16-bit files keep 16 bits (native-endian
 * uint16_t samples).  The buffers and the JPEG decoder handle are reused from one decode to the next:
 * keep one img_rgb per thread. */
typedef struct {
    int composite;             /* set by the caller: 1 blends alpha onto matte, 0 drops it */
    int matte;                 /* set by the caller: gray level 0..255 */
    int w, h;
    int depth;                 /* 8 or 16 */
    int src_channels;          /* channels in the file: 1 gray, 2 gray+alpha, 3 RGB, 4 RGBA/CMYK */
    uint8_t *px;               /* h * w * 3 samples of depth bits */
    size_t px_cap;
    uint8_t *scratch;          /* undecoded rows (PNG) */
    size_t scratch_cap;
    void *tj;                  /* libturbojpeg handle, made on the first JPEG */
} img_rgb;

/* Free the buffers and decoder of im (a zeroed img_rgb is fine). */
void img_rgb_free(img_rgb *im);

/* Read a whole file (at most IMG_MAX_FILE bytes) into *buf (grown as needed, *cap its size; the
 * caller frees *buf).  *n gets the byte count.  0 or -1 (err names the file). */
int img_read_file(const char *path, uint8_t **buf, size_t *cap, size_t *n, struct util_err *err);

/* Decode a PNG or JPEG held in memory (the format comes from the signature, not the name) into im.
 * name is used in messages only.  0, or -1 with err "NAME: what". */
int img_decode(img_rgb *im, const void *data, size_t n, const char *name, struct util_err *err);

/* im as 3 planes (3 x h x w) of floats in [0, 1]: sample / 255 or / 65535. */
void img_to_planar(float *dst, const img_rgb *im);

/* Resampling filters.  IMG_AREA averages the exact overlap of each output pixel's footprint when an
 * axis shrinks and falls back to bilinear when it grows (area would only replicate pixels).
 * IMG_BILINEAR and IMG_BICUBIC (Keys, a = -0.5, as PIL) widen with the scale when shrinking. */
enum img_filter { IMG_AREA = 0, IMG_BILINEAR = 1, IMG_BICUBIC = 2 };

/* Reusable buffers of the resampler (one per thread; zero-initialise, free with img_work_free). */
typedef struct {
    float *tmp;
    size_t tmp_cap;
    float *wx, *wy;            /* weights: n_out x taps */
    int *fx, *fy;              /* first input index of each output */
    int *nx, *ny;              /* taps used by each output */
    size_t wx_cap, wy_cap, ix_cap, iy_cap;
    float *plane, *sized;      /* img_load's decoded and resized images */
    size_t plane_cap, sized_cap;
} img_work;
void img_work_free(img_work *ws);

/* Resample the rectangle (top, left, ch x cw) of src (c planes of h x w) to dst (c planes of
 * oh x ow).  Taps never leave the rectangle (crop, then resize, as torchvision's resized_crop on PIL
 * images).  Bicubic results are not clamped here.  0, or -1 when out of memory. */
int img_resample(float *dst, int oh, int ow, const float *src, int c, int h, int w, int top, int left,
                 int ch, int cw, enum img_filter f, img_work *ws, struct util_err *err);

/* Size after scaling the shorter side to `shorter` keeping the aspect ratio; the longer side is
 * truncated as torchvision's Resize does (int(shorter * long / short)).  shorter <= 0: unchanged. */
void img_resize_dims(int h, int w, int shorter, int *oh, int *ow);

/* Offsets of a centre crop of ch x cw from h x w, rounded as torchvision's CenterCrop
 * (Python's round, half to even); negative when the crop is larger than the image. */
void img_center_offsets(int h, int w, int ch, int cw, int *top, int *left);

/* Copy the ch x cw window at (top, left) of src (c planes of h x w) to dst; pixels outside src are
 * zero (torchvision pads a crop larger than the image with zeros). */
void img_crop(float *dst, int ch, int cw, const float *src, int c, int h, int w, int top, int left);

/* x[c][i] = (x[c][i] - mean[c]) / std[c] for c planes of hw values. */
void img_normalize(float *x, int c, size_t hw, const float *mean, const float *std);
/* Undo img_normalize. */
void img_denormalize(float *x, int c, size_t hw, const float *mean, const float *std);

/* Quantise [0, 1] floats to bytes: round(clamp(x, 0, 1) * 255). */
void img_to_u8(uint8_t *dst, const float *src, size_t n);

/* Decode, resize the shorter side to `resize` (0: keep), centre-crop to crop x crop (0: none),
 * write 3 x oh x ow floats in [0, 1] into *out (grown as needed; *out_cap floats) and the size into
 * *oh, *ow.  Uses im and ws as reusable state.  0 or -1. */
int img_load(const void *data, size_t n, const char *name, int resize, int crop, img_rgb *im,
             img_work *ws, float **out, size_t *out_cap, int *oh, int *ow, struct util_err *err);

#endif
