/* fuzz_img_decode.c: libFuzzer harness for the image decoder behind img2tensor and augment
 * (lib/img.c: PNG through libpng, JPEG through libjpeg-turbo, chosen by signature).  Each input is a
 * file's bytes; img_decode must give an image of sane size or a one-line error, never crash, leak or
 * allocate beyond IMG_MAX_PIXELS.  One img_rgb is reused across inputs, as img2tensor's workers do,
 * so stale buffer sizes and decoder state are exercised too.  Seeds (written by LLVMFuzzerInitialize
 * into $FUZZ_SEED_DIR): PNGs of every colour type, 1-16 bits, interlaced and with tRNS, and JPEGs
 * (RGB 4:4:4 and 4:2:0, gray, CMYK, progressive). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <turbojpeg.h>

#include "img.h"
#include "fuzz_seed.h"
#include "../png_make.h"

static void png_seed(const char *dir, int w, int h, int ct, int bd, int interlace, int trns)
{
    png_color pal[7];
    for (int i = 0; i < 7; i++) pal[i] = (png_color){(png_byte)(i * 40), (png_byte)(200 - i * 20), (png_byte)(i * 9)};
    struct membuf m = make_png(w, h, ct, bd, interlace, trns, pal, 7);
    char name[80];
    snprintf(name, sizeof name, "seed-%dx%d-ct%d-bd%d-i%d-t%d.png", w, h, ct, bd, interlace, trns);
    seed_file(dir, name, m.p, m.n);
    free(m.p);
}

static void jpeg_seed(const char *dir, tjhandle tj, int pf, int subsamp, int flags, const char *name)
{
    enum { W = 19, H = 13 };
    uint8_t px[W * H * 4];
    for (int i = 0; i < W * H * 4; i++) px[i] = (uint8_t)(i * 7 + 30);
    unsigned char *jpg = NULL;
    unsigned long n = 0;
    if (tjCompress2(tj, px, W, 0, H, pf, &jpg, &n, subsamp, 85, flags) == 0) seed_file(dir, name, jpg, n);
    tjFree(jpg);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    const char *dir = getenv("FUZZ_SEED_DIR");
    if (!dir || !*dir) return 0;
    png_seed(dir, 5, 3, PNG_COLOR_TYPE_GRAY, 1, PNG_INTERLACE_NONE, 0);
    png_seed(dir, 5, 3, PNG_COLOR_TYPE_GRAY, 16, PNG_INTERLACE_ADAM7, 1);
    png_seed(dir, 6, 4, PNG_COLOR_TYPE_GRAY_ALPHA, 8, PNG_INTERLACE_NONE, 0);
    png_seed(dir, 7, 5, PNG_COLOR_TYPE_RGB, 8, PNG_INTERLACE_ADAM7, 0);
    png_seed(dir, 4, 4, PNG_COLOR_TYPE_RGB_ALPHA, 16, PNG_INTERLACE_NONE, 0);
    png_seed(dir, 9, 2, PNG_COLOR_TYPE_PALETTE, 4, PNG_INTERLACE_NONE, 1);
    tjhandle tj = tjInitCompress();
    if (tj) {
        jpeg_seed(dir, tj, TJPF_RGB, TJSAMP_444, 0, "seed-rgb444.jpg");
        jpeg_seed(dir, tj, TJPF_RGB, TJSAMP_420, TJFLAG_PROGRESSIVE, "seed-rgb420-progressive.jpg");
        jpeg_seed(dir, tj, TJPF_GRAY, TJSAMP_GRAY, 0, "seed-gray.jpg");
        jpeg_seed(dir, tj, TJPF_CMYK, TJSAMP_444, 0, "seed-cmyk.jpg");
        tjDestroy(tj);
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static img_rgb im;   /* reused, as by one worker thread */
    struct util_err err = {{0}};
    if (img_decode(&im, data, size, "fuzz.img", &err) < 0) {
        fuzz_require_one_line(&err);
        return 0;
    }
    if (im.w < 1 || im.h < 1 || (int64_t)im.w * im.h > IMG_MAX_PIXELS || (im.depth != 8 && im.depth != 16)) {
        fprintf(stderr, "fuzz: decoded %dx%d at depth %d\n", im.w, im.h, im.depth);
        abort();
    }
    /* touch every sample: the buffer must hold all of them */
    const size_t n = (size_t)im.w * im.h * 3 * (im.depth / 8);
    volatile uint8_t sum = 0;
    for (size_t i = 0; i < n; i++) sum += im.px[i];
    (void)sum;
    return 0;
}
