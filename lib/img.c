/* img.c: PNG (libpng) and JPEG (libjpeg-turbo) decoding to RGB, PIL-style separable resampling,
 * centre crop and normalisation.  Decoding agrees with PIL's Image.open(...).convert('RGB') for
 * 8-bit files (alpha dropped, gray replicated, palette expanded); 16-bit samples are kept whole. */
#include "img.h"

#include <errno.h>
#include <math.h>
#include <png.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>
#include <turbojpeg.h>

void img_rgb_free(img_rgb *im)
{
    if (!im) return;
    free(im->px);
    free(im->scratch);
    if (im->tj) tjDestroy(im->tj);
    memset(im, 0, sizeof *im);
}

void img_work_free(img_work *ws)
{
    if (!ws) return;
    free(ws->tmp); free(ws->wx); free(ws->wy); free(ws->fx); free(ws->fy);  /* nx, ny share fx, fy blocks */
    free(ws->plane); free(ws->sized);
    memset(ws, 0, sizeof *ws);
}

/* Buffer p of *cap bytes grown to at least n bytes (contents not kept); NULL when out of memory. */
static void *grow(void *p, size_t *cap, size_t n, struct util_err *err)
{
    if (n <= *cap && p) return p;
    free(p);
    p = malloc(n > 0 ? n : 1);
    *cap = p ? n : 0;
    if (!p) util_err_set(err, "out of memory (%zu bytes)", n);
    return p;
}
#define RESERVE(p, cap, n, err) (((p) = grow((p), &(cap), (n), (err))) ? 0 : -1)

int img_read_file(const char *path, uint8_t **buf, size_t *cap, size_t *n, struct util_err *err)
{
    FILE *f = fopen(path, "rb");
    if (!f) return util_err_sys(err, "%s", path);
    size_t len = 0;
    for (;;) {
        if (len == *cap || !*buf) {
            if (*cap >= IMG_MAX_FILE) {
                fclose(f);
                return util_err_set(err, "%s: larger than %zu bytes", path, IMG_MAX_FILE);
            }
            size_t nc = *cap ? 2 * *cap : 1 << 16;
            if (nc > IMG_MAX_FILE) nc = IMG_MAX_FILE;
            uint8_t *nb = realloc(*buf, nc);
            if (!nb) { fclose(f); return util_err_set(err, "%s: out of memory", path); }
            *buf = nb;
            *cap = nc;
        }
        size_t got = fread(*buf + len, 1, *cap - len, f);
        len += got;
        if (got == 0) break;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) return util_err_sys(err, "%s: read error", path);
    *n = len;
    return 0;
}

/* ---------------------------------------------------------------- PNG */

struct png_src {
    const uint8_t *data;
    size_t n, pos;
    char msg[200];
};

static void png_read_mem(png_structp png, png_bytep out, png_size_t len)
{
    struct png_src *s = png_get_io_ptr(png);
    if (len > s->n - s->pos) png_error(png, "file is truncated");
    memcpy(out, s->data + s->pos, len);
    s->pos += len;
}

static void png_on_error(png_structp png, png_const_charp msg)
{
    struct png_src *s = png_get_error_ptr(png);
    snprintf(s->msg, sizeof s->msg, "%s", msg);
    png_longjmp(png, 1);
}

static void png_on_warning(png_structp png, png_const_charp msg) { (void)png; (void)msg; }

static int decode_png(img_rgb *im, const uint8_t *data, size_t n, const char *name, struct util_err *err)
{
    struct png_src src = {data, n, 0, ""};
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &src, png_on_error, png_on_warning);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!info) {
        png_destroy_read_struct(&png, NULL, NULL);
        return util_err_set(err, "%s: out of memory", name);
    }
    png_bytep *volatile rows = NULL;
    if (setjmp(png_jmpbuf(png))) {
        free(rows);
        png_destroy_read_struct(&png, &info, NULL);
        return util_err_set(err, "%s: bad PNG: %s", name, src.msg[0] ? src.msg : "decoding failed");
    }
    png_set_read_fn(png, &src, png_read_mem);
    png_set_user_limits(png, IMG_MAX_SIDE, IMG_MAX_SIDE);
    png_read_info(png, info);
    png_uint_32 w = png_get_image_width(png, info), h = png_get_image_height(png, info);
    int ct = png_get_color_type(png, info), bd = png_get_bit_depth(png, info);
    if ((int64_t)w * h > IMG_MAX_PIXELS) {
        snprintf(src.msg, sizeof src.msg, "%ux%u pixels exceed the limit of %lld", (unsigned)w, (unsigned)h,
                 (long long)IMG_MAX_PIXELS);
        png_longjmp(png, 1);
    }
    im->src_channels = png_get_channels(png, info);
    if (ct == PNG_COLOR_TYPE_PALETTE) {
        png_set_palette_to_rgb(png);   /* may add alpha from tRNS: dropped below */
        im->src_channels = 3;
    }
    if ((ct == PNG_COLOR_TYPE_GRAY || ct == PNG_COLOR_TYPE_GRAY_ALPHA) && bd < 8) png_set_expand_gray_1_2_4_to_8(png);
    if (im->composite && png_get_valid(png, info, PNG_INFO_tRNS)) png_set_tRNS_to_alpha(png);   /* blended below */
    png_set_interlace_handling(png);
    png_read_update_info(png, info);
    int ch = png_get_channels(png, info), depth = png_get_bit_depth(png, info);
    size_t rowbytes = png_get_rowbytes(png, info);
    if (ch < 1 || ch > 4 || (depth != 8 && depth != 16) || rowbytes != (size_t)w * ch * (depth / 8)) {
        snprintf(src.msg, sizeof src.msg, "unexpected layout after expansion (%d channels, %d bits)", ch, depth);
        png_longjmp(png, 1);
    }
    struct util_err e2;
    if (RESERVE(im->scratch, im->scratch_cap, rowbytes * h, &e2) < 0 ||
        RESERVE(im->px, im->px_cap, (size_t)w * h * 3 * (depth / 8), &e2) < 0 ||
        !(rows = malloc(h * sizeof *rows))) {
        snprintf(src.msg, sizeof src.msg, "out of memory");
        png_longjmp(png, 1);
    }
    for (png_uint_32 y = 0; y < h; y++) rows[y] = im->scratch + y * rowbytes;
    png_read_image(png, rows);
    png_read_end(png, NULL);
    free(rows);
    rows = NULL;
    png_destroy_read_struct(&png, &info, NULL);

    im->w = (int)w;
    im->h = (int)h;
    im->depth = depth;
    size_t np = (size_t)w * h;
    const uint8_t *s = im->scratch;
    /* Alpha, when the file has it and the caller wants it blended: out = (v a + matte (max - a)) / max,
     * rounded to nearest, in integers. */
    const int blend = im->composite && (ch == 2 || ch == 4), ai = ch - 1;
    if (depth == 8) {
        uint8_t *d = im->px;
        const uint32_t m = (uint32_t)im->matte;
        for (size_t i = 0; i < np; i++, s += ch, d += 3) {
            if (ch <= 2) d[0] = d[1] = d[2] = s[0];
            else { d[0] = s[0]; d[1] = s[1]; d[2] = s[2]; }
            if (blend) {
                const uint32_t a = s[ai];
                for (int k = 0; k < 3; k++) d[k] = (uint8_t)((d[k] * a + m * (255 - a) + 127) / 255);
            }
        }
    } else {  /* PNG stores 16-bit samples big-endian */
        uint16_t *d = (uint16_t *)im->px;
        const uint64_t m = (uint64_t)im->matte * 257;
        for (size_t i = 0; i < np; i++, s += 2 * ch, d += 3) {
            if (ch <= 2) d[0] = d[1] = d[2] = (uint16_t)(s[0] << 8 | s[1]);
            else for (int k = 0; k < 3; k++) d[k] = (uint16_t)(s[2 * k] << 8 | s[2 * k + 1]);
            if (blend) {
                const uint64_t a = (uint64_t)(s[2 * ai] << 8 | s[2 * ai + 1]);
                for (int k = 0; k < 3; k++) d[k] = (uint16_t)((d[k] * a + m * (65535 - a) + 32767) / 65535);
            }
        }
    }
    return 0;
}

/* ---------------------------------------------------------------- JPEG */

static int decode_jpeg(img_rgb *im, const uint8_t *data, size_t n, const char *name, struct util_err *err)
{
    if (!im->tj && !(im->tj = tjInitDecompress())) return util_err_set(err, "%s: cannot start the JPEG decoder", name);
    tjhandle tj = im->tj;
    int w = 0, h = 0, sub = 0, cs = 0;
    if (tjDecompressHeader3(tj, data, (unsigned long)n, &w, &h, &sub, &cs) < 0)
        return util_err_set(err, "%s: bad JPEG: %s", name, tjGetErrorStr2(tj));
    if (w < 1 || h < 1) return util_err_set(err, "%s: bad JPEG: no image in the data", name);
    if (w > IMG_MAX_SIDE || h > IMG_MAX_SIDE || (int64_t)w * h > IMG_MAX_PIXELS)
        return util_err_set(err, "%s: JPEG of %dx%d pixels is beyond the limits", name, w, h);
    int cmyk = cs == TJCS_CMYK || cs == TJCS_YCCK;
    im->src_channels = cmyk ? 4 : cs == TJCS_GRAY ? 1 : 3;
    size_t np = (size_t)w * h;
    if (RESERVE(im->px, im->px_cap, np * 3, err) < 0) return util_err_set(err, "%s: out of memory", name);
    uint8_t *dst = im->px;
    if (cmyk && RESERVE(im->scratch, im->scratch_cap, np * 4, err) < 0) return util_err_set(err, "%s: out of memory", name);
    if (tjDecompress2(tj, data, (unsigned long)n, cmyk ? im->scratch : dst, w, 0, h, cmyk ? TJPF_CMYK : TJPF_RGB,
                      TJFLAG_ACCURATEDCT) < 0) {
        /* A few real files (some in ImageNet) draw harmless warnings that PIL ignores: stray bytes
         * before a marker, odd SOS parameters.  Any other warning means missing or corrupt data. */
        const char *msg = tjGetErrorStr2(tj);
        if (tjGetErrorCode(tj) != TJERR_WARNING ||
            !(strstr(msg, "extraneous bytes") || strstr(msg, "Invalid SOS parameters")))
            return util_err_set(err, "%s: bad JPEG: %s", name, msg);
    }
    if (cmyk) {
        /* Adobe writes inverted CMYK (as nearly all CMYK JPEGs are): R = C * K / 255. */
        const uint8_t *s = im->scratch;
        for (size_t i = 0; i < np; i++, s += 4) {
            dst[3 * i + 0] = (uint8_t)((s[0] * s[3] + 127) / 255);
            dst[3 * i + 1] = (uint8_t)((s[1] * s[3] + 127) / 255);
            dst[3 * i + 2] = (uint8_t)((s[2] * s[3] + 127) / 255);
        }
    }
    im->w = w;
    im->h = h;
    im->depth = 8;
    return 0;
}

int img_decode(img_rgb *im, const void *data, size_t n, const char *name, struct util_err *err)
{
    const uint8_t *p = data;
    if (n >= 8 && png_sig_cmp(p, 0, 8) == 0) return decode_png(im, p, n, name, err);
    if (n >= 3 && p[0] == 0xff && p[1] == 0xd8 && p[2] == 0xff) return decode_jpeg(im, p, n, name, err);
    if (n == 0) return util_err_set(err, "%s: empty file", name);
    return util_err_set(err, "%s: not a PNG or JPEG file", name);
}

void img_to_planar(float *dst, const img_rgb *im)
{
    size_t np = (size_t)im->w * im->h;
    float *r = dst, *g = dst + np, *b = dst + 2 * np;
    if (im->depth == 8) {
        const uint8_t *s = im->px;
        for (size_t i = 0; i < np; i++, s += 3) {
            r[i] = s[0] / 255.0f; g[i] = s[1] / 255.0f; b[i] = s[2] / 255.0f;
        }
    } else {
        const uint16_t *s = (const uint16_t *)im->px;
        for (size_t i = 0; i < np; i++, s += 3) {
            r[i] = s[0] / 65535.0f; g[i] = s[1] / 65535.0f; b[i] = s[2] / 65535.0f;
        }
    }
}

/* ---------------------------------------------------------------- resampling */

static double filt_bilinear(double x)
{
    x = fabs(x);
    return x < 1.0 ? 1.0 - x : 0.0;
}

/* Keys' cubic with a = -0.5, as PIL (PyTorch's bicubic uses -0.75). */
static double filt_bicubic(double x)
{
    const double a = -0.5;
    x = fabs(x);
    if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0;
    if (x < 2.0) return (((x - 5.0) * x + 8.0) * x - 4.0) * a;
    return 0.0;
}

/* Weights mapping n_in samples to n_out (PIL's precompute_coeffs, or exact overlaps for area).
 * Returns the taps per output (row stride of *wt), or -1 when out of memory. */
static int coeffs(int n_in, int n_out, enum img_filter f, float **wt, size_t *wcap, int **first, int **count,
                  size_t *icap, struct util_err *err)
{
    double scale = (double)n_in / n_out;
    if (f == IMG_AREA && scale <= 1.0) f = IMG_BILINEAR;
    int taps;
    double support = 0;
    if (f == IMG_AREA) {
        taps = (int)ceil(scale) + 2;
    } else {
        double fs = scale > 1.0 ? scale : 1.0;
        support = (f == IMG_BICUBIC ? 2.0 : 1.0) * fs;
        taps = (int)ceil(support) * 2 + 1;
    }
    if (RESERVE(*wt, *wcap, (size_t)n_out * taps * sizeof **wt, err) < 0) return -1;
    if ((size_t)n_out * 2 * sizeof(int) > *icap) {
        free(*first);  /* first and count share one block */
        *first = malloc((size_t)n_out * 2 * sizeof(int));
        if (!*first) { *icap = 0; *count = NULL; return util_err_set(err, "out of memory"); }
        *icap = (size_t)n_out * 2 * sizeof(int);
    }
    *count = *first + n_out;
    for (int o = 0; o < n_out; o++) {
        float *k = *wt + (size_t)o * taps;
        double sum = 0;
        int lo, hi;
        if (f == IMG_AREA) {
            double a = o * scale, b = (o + 1) * scale;
            lo = (int)floor(a);
            hi = (int)ceil(b);
            if (hi > n_in) hi = n_in;
            if (hi - lo > taps) hi = lo + taps;
            for (int x = lo; x < hi; x++) {
                double l = a > x ? a : x, r = b < x + 1 ? b : x + 1;
                k[x - lo] = (float)(r > l ? r - l : 0);
            }
        } else {
            double fs = scale > 1.0 ? scale : 1.0, ss = 1.0 / fs, center = (o + 0.5) * scale;
            lo = (int)(center - support + 0.5);
            if (lo < 0) lo = 0;
            hi = (int)(center + support + 0.5);
            if (hi > n_in) hi = n_in;
            if (hi - lo > taps) hi = lo + taps;
            for (int x = lo; x < hi; x++)
                k[x - lo] = (float)(f == IMG_BICUBIC ? filt_bicubic((x - center + 0.5) * ss)
                                                     : filt_bilinear((x - center + 0.5) * ss));
        }
        for (int x = 0; x < hi - lo; x++) sum += k[x];
        for (int x = 0; x < taps; x++) k[x] = x < hi - lo && sum != 0 ? (float)(k[x] / sum) : 0.0f;
        (*first)[o] = lo;
        (*count)[o] = hi - lo;
    }
    return taps;
}

int img_resample(float *dst, int oh, int ow, const float *src, int c, int h, int w, int top, int left,
                 int ch, int cw, enum img_filter f, img_work *ws, struct util_err *err)
{
    (void)h;
    int tx = coeffs(cw, ow, f, &ws->wx, &ws->wx_cap, &ws->fx, &ws->nx, &ws->ix_cap, err);
    int ty = tx < 0 ? -1 : coeffs(ch, oh, f, &ws->wy, &ws->wy_cap, &ws->fy, &ws->ny, &ws->iy_cap, err);
    if (ty < 0) return -1;
    if (RESERVE(ws->tmp, ws->tmp_cap, (size_t)c * ch * ow * sizeof(float), err) < 0) return -1;
    /* Horizontal pass over the rows of the rectangle, then vertical (vectorises across a row). */
    for (int p = 0; p < c; p++) {
        for (int y = 0; y < ch; y++) {
            const float *s = src + ((size_t)p * h + top + y) * w + left;
            float *t = ws->tmp + ((size_t)p * ch + y) * ow;
            for (int o = 0; o < ow; o++) {
                const float *k = ws->wx + (size_t)o * tx;
                const float *ss = s + ws->fx[o];
                float acc = 0;
                for (int j = 0; j < ws->nx[o]; j++) acc += k[j] * ss[j];
                t[o] = acc;
            }
        }
        for (int o = 0; o < oh; o++) {
            float *d = dst + ((size_t)p * oh + o) * ow;
            const float *k = ws->wy + (size_t)o * ty;
            const float *t = ws->tmp + ((size_t)p * ch + ws->fy[o]) * ow;
            for (int x = 0; x < ow; x++) d[x] = 0;
            for (int j = 0; j < ws->ny[o]; j++) {
                float kj = k[j];
                const float *restrict tr = t + (size_t)j * ow;
                float *restrict dd = d;
#pragma omp simd
                for (int x = 0; x < ow; x++) dd[x] += kj * tr[x];
            }
        }
    }
    return 0;
}

void img_resize_dims(int h, int w, int shorter, int *oh, int *ow)
{
    if (shorter <= 0 || h <= 0 || w <= 0) { *oh = h; *ow = w; return; }
    if (h <= w) {
        *oh = shorter;
        *ow = (int)((int64_t)shorter * w / h);
    } else {
        *ow = shorter;
        *oh = (int)((int64_t)shorter * h / w);
    }
    if (*oh < 1) *oh = 1;
    if (*ow < 1) *ow = 1;
}

/* Python's round(d / 2.0) for an integer d: halves go to the even neighbour. */
static int round_half_even_div2(int d)
{
    int q = (int)floor(d / 2.0);
    if (d % 2 == 0) return d / 2;
    return q % 2 == 0 ? q : q + 1;
}

void img_center_offsets(int h, int w, int ch, int cw, int *top, int *left)
{
    *top = round_half_even_div2(h - ch);
    *left = round_half_even_div2(w - cw);
}

void img_crop(float *dst, int ch, int cw, const float *src, int c, int h, int w, int top, int left)
{
    for (int p = 0; p < c; p++)
        for (int y = 0; y < ch; y++) {
            float *d = dst + ((size_t)p * ch + y) * cw;
            int sy = top + y;
            if (sy < 0 || sy >= h) { memset(d, 0, cw * sizeof *d); continue; }
            const float *s = src + ((size_t)p * h + sy) * w;
            for (int x = 0; x < cw; x++) {
                int sx = left + x;
                d[x] = sx >= 0 && sx < w ? s[sx] : 0.0f;
            }
        }
}

void img_normalize(float *x, int c, size_t hw, const float *mean, const float *std)
{
    for (int p = 0; p < c; p++) {
        float m = mean[p], is = 1.0f / std[p];
        float *q = x + p * hw;
        for (size_t i = 0; i < hw; i++) q[i] = (q[i] - m) * is;
    }
}

void img_denormalize(float *x, int c, size_t hw, const float *mean, const float *std)
{
    for (int p = 0; p < c; p++) {
        float m = mean[p], s = std[p];
        float *q = x + p * hw;
        for (size_t i = 0; i < hw; i++) q[i] = q[i] * s + m;
    }
}

void img_to_u8(uint8_t *dst, const float *src, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        float v = src[i];
        v = v > 0.0f ? (v < 1.0f ? v : 1.0f) : 0.0f;  /* also maps NaN to 0 */
        dst[i] = (uint8_t)(v * 255.0f + 0.5f);
    }
}

int img_load(const void *data, size_t n, const char *name, int resize, int crop, img_rgb *im, img_work *ws,
             float **out, size_t *out_cap, int *oh, int *ow, struct util_err *err)
{
    if (img_decode(im, data, n, name, err) < 0) return -1;
    size_t np = (size_t)im->w * im->h;
    struct util_err e2;
    if (RESERVE(ws->plane, ws->plane_cap, 3 * np * sizeof(float), &e2) < 0)
        return util_err_set(err, "%s: out of memory (%dx%d image)", name, im->w, im->h);
    img_to_planar(ws->plane, im);
    const float *cur = ws->plane;
    int h = im->h, w = im->w;
    if (resize > 0) {
        int rh, rw;
        img_resize_dims(h, w, resize, &rh, &rw);
        if (rh != h || rw != w) {
            if (RESERVE(ws->sized, ws->sized_cap, 3 * (size_t)rh * rw * sizeof(float), &e2) < 0 ||
                img_resample(ws->sized, rh, rw, cur, 3, h, w, 0, 0, h, w, IMG_AREA, ws, &e2) < 0)
                return util_err_set(err, "%s: out of memory resizing to %dx%d", name, rw, rh);
            cur = ws->sized;
            h = rh;
            w = rw;
        }
    }
    int fh = crop > 0 ? crop : h, fw = crop > 0 ? crop : w;
    if ((size_t)3 * fh * fw > *out_cap || !*out) {
        float *nb = realloc(*out, (size_t)3 * fh * fw * sizeof(float));
        if (!nb) return util_err_set(err, "%s: out of memory", name);
        *out = nb;
        *out_cap = (size_t)3 * fh * fw;
    }
    if (crop > 0) {
        int top, left;
        img_center_offsets(h, w, fh, fw, &top, &left);
        img_crop(*out, fh, fw, cur, 3, h, w, top, left);
    } else {
        memcpy(*out, cur, (size_t)3 * h * w * sizeof(float));
    }
    *oh = fh;
    *ow = fw;
    return 0;
}
