/* img_test: PNG decoding of every colour type, bit depth and interlace (files made here with libpng,
 * pixels known exactly), JPEG round trips (RGB, gray, CMYK), corrupt and oversized files, the
 * resampler against PIL 9.4 float-mode results, centre-crop rounding, and the shared Tiny-ImageNet
 * copies (the JPEG decode must equal the PNG copy, which PIL made from the same libjpeg-turbo decode). */
#include <png.h>
#include <stdlib.h>
#include <string.h>
#include <turbojpeg.h>
#include <unistd.h>

#include "img.h"
#include "tsz.h"
#include "test.h"
#include "png_make.h"

/* What img_decode must give for pixel (x, y), channel k (0..2), in the decoded depth. */
static unsigned expect(int x, int y, int k, int ct, int bd, const png_color *pal, int n_pal)
{
    switch (ct) {
    case PNG_COLOR_TYPE_PALETTE: {
        const png_color *e = &pal[sample(x, y, 0, bd) % n_pal];
        return k == 0 ? e->red : k == 1 ? e->green : e->blue;
    }
    case PNG_COLOR_TYPE_GRAY:
    case PNG_COLOR_TYPE_GRAY_ALPHA: {
        unsigned v = sample(x, y, 0, bd);
        return bd < 8 ? v * 255u / ((1u << bd) - 1) : v;  /* low depths scale to 8 bits */
    }
    default:
        return sample(x, y, k, bd);
    }
}

static void test_png_types(void)
{
    static const struct { int ct, bd, trns; const char *name; } cases[] = {
        {PNG_COLOR_TYPE_GRAY, 1, 0, "gray 1-bit"}, {PNG_COLOR_TYPE_GRAY, 2, 0, "gray 2-bit"},
        {PNG_COLOR_TYPE_GRAY, 4, 0, "gray 4-bit"}, {PNG_COLOR_TYPE_GRAY, 8, 0, "gray 8-bit"},
        {PNG_COLOR_TYPE_GRAY, 8, 1, "gray 8-bit + tRNS"}, {PNG_COLOR_TYPE_GRAY, 16, 0, "gray 16-bit"},
        {PNG_COLOR_TYPE_GRAY_ALPHA, 8, 0, "gray+alpha 8-bit"}, {PNG_COLOR_TYPE_GRAY_ALPHA, 16, 0, "gray+alpha 16-bit"},
        {PNG_COLOR_TYPE_PALETTE, 1, 0, "palette 1-bit"}, {PNG_COLOR_TYPE_PALETTE, 2, 0, "palette 2-bit"},
        {PNG_COLOR_TYPE_PALETTE, 4, 0, "palette 4-bit"}, {PNG_COLOR_TYPE_PALETTE, 8, 0, "palette 8-bit"},
        {PNG_COLOR_TYPE_PALETTE, 8, 1, "palette 8-bit + tRNS"}, {PNG_COLOR_TYPE_RGB, 8, 0, "RGB 8-bit"},
        {PNG_COLOR_TYPE_RGB, 16, 0, "RGB 16-bit"}, {PNG_COLOR_TYPE_RGB_ALPHA, 8, 0, "RGBA 8-bit"},
        {PNG_COLOR_TYPE_RGB_ALPHA, 16, 0, "RGBA 16-bit"},
    };
    png_color pal[256];
    for (int i = 0; i < 256; i++) pal[i] = (png_color){(png_byte)(i * 7 + 3), (png_byte)(255 - i), (png_byte)(i * 13)};
    img_rgb im = {0};
    const int w = 13, h = 11;  /* odd sizes exercise every Adam7 pass */
    for (size_t ci = 0; ci < sizeof cases / sizeof *cases; ci++)
        for (int il = 0; il < 2; il++) {
            int ct = cases[ci].ct, bd = cases[ci].bd;
            int n_pal = ct == PNG_COLOR_TYPE_PALETTE ? (bd == 8 ? 200 : 1 << bd) : 0;
            struct membuf m = make_png(w, h, ct, bd, il ? PNG_INTERLACE_ADAM7 : PNG_INTERLACE_NONE, cases[ci].trns, pal, n_pal);
            struct util_err err = {{0}};
            int rc = img_decode(&im, m.p, m.n, "gen.png", &err);
            long bad = 0;
            int want_depth = bd == 16 ? 16 : 8;
            if (rc == 0 && im.w == w && im.h == h && im.depth == want_depth) {
                for (int y = 0; y < h; y++)
                    for (int x = 0; x < w; x++)
                        for (int k = 0; k < 3; k++) {
                            size_t i = ((size_t)y * w + x) * 3 + k;
                            unsigned got = im.depth == 16 ? ((uint16_t *)im.px)[i] : im.px[i];
                            if (got != expect(x, y, k, ct, bd, pal, n_pal)) bad++;
                        }
            } else {
                bad = -1;
            }
            test_check(bad == 0, "png %s%s: %dx%d decoded exactly (%ld wrong samples%s%s)", cases[ci].name,
                       il ? " interlaced" : "", w, h, bad, rc ? ", error: " : "", rc ? err.msg : "");
            free(m.p);
        }

    /* 16-bit to floats: sample / 65535, and to bytes with rounding. */
    struct membuf m = make_png(5, 3, PNG_COLOR_TYPE_RGB, 16, PNG_INTERLACE_NONE, 0, NULL, 0);
    struct util_err err = {{0}};
    float pl[45];
    uint8_t u8[45];
    int ok = img_decode(&im, m.p, m.n, "g16.png", &err) == 0;
    if (ok) {
        img_to_planar(pl, &im);
        img_to_u8(u8, pl, 45);
        for (int y = 0; y < 3; y++)
            for (int x = 0; x < 5; x++)
                for (int k = 0; k < 3; k++) {
                    unsigned v = sample(x, y, k, 16);
                    size_t i = ((size_t)k * 3 + y) * 5 + x;
                    if (pl[i] != v / 65535.0f || u8[i] != (v * 255u + 32767u) / 65535u) ok = 0;
                }
    }
    test_check(ok, "png 16-bit: planar floats are v/65535 and bytes round(v*255/65535)");
    free(m.p);
    img_rgb_free(&im);
}

/* CRC-32 as PNG chunks use it (bitwise; the test needs one). */
static uint32_t crc32_png(const uint8_t *p, size_t n)
{
    uint32_t c = 0xffffffffu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++) c = c & 1 ? 0xedb88320u ^ (c >> 1) : c >> 1;
    }
    return c ^ 0xffffffffu;
}

static void test_png_bad(void)
{
    img_rgb im = {0};
    struct util_err err;
    struct membuf m = make_png(40, 30, PNG_COLOR_TYPE_RGB, 8, PNG_INTERLACE_NONE, 0, NULL, 0);
    int rc = img_decode(&im, m.p, m.n / 2, "half.png", &err);
    test_check(rc < 0 && strstr(err.msg, "half.png: bad PNG"), "png truncated: error '%s'", rc < 0 ? err.msg : "none");
    uint8_t *c = malloc(m.n);
    memcpy(c, m.p, m.n);
    for (size_t i = 60; i < m.n; i += 7) c[i] ^= 0x5a;   /* corrupt the compressed data */
    rc = img_decode(&im, c, m.n, "corrupt.png", &err);
    test_check(rc < 0 && strstr(err.msg, "corrupt.png"), "png corrupted: error '%s'", rc < 0 ? err.msg : "none");
    free(c);
    free(m.p);

    /* A header announcing 60000 x 60000 pixels (IHDR patched, CRC redone): refused before allocating. */
    struct membuf big = make_png(40, 30, PNG_COLOR_TYPE_RGB, 8, PNG_INTERLACE_NONE, 0, NULL, 0);
    uint8_t *ihdr = big.p + 8;   /* length(4) "IHDR" width(4) height(4) ... crc over type + data */
    uint32_t dim = 60000;
    for (int k = 0; k < 4; k++) ihdr[8 + k] = ihdr[12 + k] = (uint8_t)(dim >> (24 - 8 * k));
    uint32_t crc = crc32_png(ihdr + 4, 17);
    for (int k = 0; k < 4; k++) ihdr[21 + k] = (uint8_t)(crc >> (24 - 8 * k));
    rc = img_decode(&im, big.p, big.n, "huge.png", &err);
    test_check(rc < 0 && strstr(err.msg, "exceed"), "png 60000x60000 header refused: '%s'", rc < 0 ? err.msg : "decoded");
    free(big.p);

    rc = img_decode(&im, "hello world, not an image", 25, "text.txt", &err);
    test_check(rc < 0 && strstr(err.msg, "not a PNG or JPEG"), "text file refused: '%s'", rc < 0 ? err.msg : "none");
    rc = img_decode(&im, "", 0, "empty.png", &err);
    test_check(rc < 0 && strstr(err.msg, "empty"), "empty file refused: '%s'", rc < 0 ? err.msg : "none");
    img_rgb_free(&im);
}

/* ---- JPEG ---- */
static void test_jpeg(void)
{
    const int w = 40, h = 24;
    uint8_t rgb[40 * 24 * 4];
    tjhandle tj = tjInitCompress();
    img_rgb im = {0};
    struct util_err err = {{0}};
    for (int pass = 0; pass < 3; pass++) {  /* RGB, gray, CMYK */
        int pf = pass == 0 ? TJPF_RGB : pass == 1 ? TJPF_GRAY : TJPF_CMYK, ps = tjPixelSize[pf];
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++)
                for (int k = 0; k < ps; k++)  /* smooth ramps: quality 100 keeps them within a few levels */
                    rgb[(y * w + x) * ps + k] = (uint8_t)(40 + 4 * x + 3 * y + 20 * k);
        unsigned char *jpg = NULL;
        unsigned long n = 0;
        if (tjCompress2(tj, rgb, w, 0, h, pf, &jpg, &n, pass == 1 ? TJSAMP_GRAY : TJSAMP_444, 100, 0) < 0) {
            test_check(0, "jpeg encode: %s", tjGetErrorStr2(tj));
            continue;
        }
        int rc = img_decode(&im, jpg, n, "gen.jpg", &err);
        int maxd = 0;
        if (rc == 0 && im.w == w && im.h == h && im.depth == 8)
            for (int i = 0; i < w * h; i++)
                for (int k = 0; k < 3; k++) {
                    const uint8_t *s = rgb + i * ps;
                    int want = pass == 0 ? s[k] : pass == 1 ? s[0] : (s[k] * s[3] + 127) / 255;  /* inverted CMYK */
                    int d = abs(im.px[i * 3 + k] - want);
                    if (d > maxd) maxd = d;
                }
        else maxd = 999;
        const char *what[] = {"RGB 4:4:4", "gray", "CMYK (Adobe inverted)"};
        /* Quality 100 of smooth ramps: a few levels of DCT rounding; CMYK multiplies two such errors. */
        test_check(maxd <= (pass == 2 ? 6 : 3), "jpeg %s q100 round trip: max diff %d levels%s%s", what[pass], maxd,
                   rc ? ": " : "", rc ? err.msg : "");
        if (pass == 0) {
            int rc2 = img_decode(&im, jpg, n / 2, "half.jpg", &err);
            test_check(rc2 < 0 && strstr(err.msg, "half.jpg: bad JPEG"), "jpeg truncated: error '%s'", rc2 < 0 ? err.msg : "none");
            rc2 = img_decode(&im, jpg, 40, "head.jpg", &err);
            test_check(rc2 < 0 && strstr(err.msg, "head.jpg"), "jpeg cut in the header: error '%s'", rc2 < 0 ? err.msg : "none");
        }
        tjFree(jpg);
    }
    tjDestroy(tj);
    img_rgb_free(&im);
}

/* ---- resampling against PIL 9.4 (mode 'F' images, float arithmetic) ---- */
/* Made by this script (Debian 12: PIL 9.4.0, numpy 1.24.2), printing each array with "%.9g":
 *   img = np.array([[((7*y + 13*x) % 17) / 16.0 for x in range(9)] for y in range(7)], dtype=np.float32)
 *   pim = Image.fromarray(img, mode="F"); rs = lambda im, size, f: np.array(im.resize(size, resample=f))
 *   ref_bilinear_4x3 = rs(pim, (4, 3), Image.BILINEAR); ref_bicubic_13x11 = rs(pim, (13, 11), Image.BICUBIC)
 *   ref_bicubic_crop_4x4 = rs(pim.crop((2, 1, 8, 6)), (4, 4), Image.BICUBIC)
 *   ref_bilinear_crop_10x10 = rs(pim.crop((2, 1, 8, 6)), (10, 10), Image.BILINEAR)
 *   ref_bicubic_5x2 = rs(pim, (5, 2), Image.BICUBIC)
 *   img8 = the same formula on 8 x 6; ref_box_4x3 = rs(Image.fromarray(img8, mode="F"), (4, 3), Image.BOX) */
static const float ref_bilinear_4x3[12] = {
    0.497448981, 0.527874529, 0.465592325, 0.472959191, 0.432142854, 0.539634109, 0.471036583, 0.505357146,
    0.431760192, 0.505553126, 0.500653327, 0.465816319,
};
static const float ref_bicubic_13x11[143] = {
    -0.0855891183, 0.449621081, 0.862726033, 0.557577193, 0.374491721, 0.167546704, 0.0317382812, 0.692544162,
    0.909010828, 0.646212101, 0.41560024, 0.203264564, 0.0787888467, 0.135610551, 0.335383058, 0.605620146,
    0.774754107, 0.650007606, 0.414894015, 0.221059114, 0.501762927, 0.518873274, 0.346642047, 0.560177267,
    0.457842857, 0.264644146, 0.499180108, 0.281153977, 0.320817918, 0.949573755, 0.867783964, 0.670735657,
    0.543764114, 0.34383294, 0.105947033, 0.0291601699, 0.654184818, 0.752426744, 0.594810486, 0.849541306,
    0.691392362, 0.529417634, 0.507616341, 0.287197173, 0.410900116, 0.894815922, 0.735722005, 0.478132188,
    0.277938366, 0.255404562, 0.623149753, 0.997315049, 0.696704149, 0.547294974, 0.432904124, 0.506289423,
    0.275141001, 0.335793912, 0.743754685, 0.567185283, 0.543204606, 0.629394233, 0.34247148, 0.529865503,
    0.836732864, 0.265449435, 0.0690109804, 0.136720523, 0.781918526, 0.707015276, 0.485576928, 0.3125,
    0.0610776059, 0.345983148, 0.890589416, 0.704454958, 0.488753766, 0.359550565, 0.582220435, 0.382479757,
    0.22727482, 0.355804086, 0.755124867, 0.890953779, 0.624436498, 0.363216847, 0.336397737, 0.43551302,
    0.208838895, 0.41549775, 0.717414618, 0.563667893, 0.596295476, 0.514528155, 0.254021347, 0.659780622,
    0.855692148, 0.627441764, 0.65844959, 0.54553628, 0.295881957, 0.0428048745, 0.336832553, 0.729940832,
    0.0344678871, 0.509826243, 0.887336433, 0.64260143, 0.483026087, 0.286657542, 0.145895943, 0.736996412,
    0.917744339, 0.662240088, 0.454235077, 0.286110967, 0.196942359, 0.270084232, 0.429320157, 0.497269303,
    0.284655154, 0.492041916, 0.546325505, 0.347862422, 0.539389968, 0.506867409, 0.355144024, 0.664269447,
    0.592500508, 0.391447455, 0.55082792, 0.378287643, 0.119968943, -0.0621870719, 0.533085346, 0.852641106,
    0.593261719, 0.365404159, 0.115198374, 0.0526385866, 0.755371511, 0.841478229, 0.640312254,
};
static const float ref_bicubic_crop_4x4[16] = {
    0.774981081, 0.604675114, 0.251377821, 0.444092602, 0.433994383, 0.506262422, 0.549043, 0.479764462,
    0.60824585, 0.662925243, 0.364504099, 0.347897917, 0.519130647, 0.390019327, 0.746932328, 0.398825675,
};
static const float ref_bilinear_crop_10x10[100] = {
    1, 0.899999976, 0.75, 0.600000024, 0.449999988, 0.300000012, 0.150000006, 0,
    0.487500012, 0.8125, 0.84375, 0.743749976, 0.59375, 0.603125036, 0.559374988, 0.409375012,
    0.259375006, 0.109375, 0.4375, 0.65625, 0.53125, 0.431250006, 0.28125, 0.609375,
    0.778124988, 0.628125012, 0.478124976, 0.328125, 0.337500006, 0.34375, 0.484375, 0.384375006,
    0.234375, 0.5625, 0.731249988, 0.581250012, 0.537499964, 0.546875, 0.396874994, 0.296875,
    0.703125, 0.603124976, 0.453125, 0.462500006, 0.418749988, 0.268750012, 0.4375, 0.765625,
    0.615625024, 0.515625, 0.65625, 0.662499964, 0.671875, 0.521875024, 0.371874988, 0.221874997,
    0.390625, 0.71875, 0.568750024, 0.46875, 0.34375, 0.5625, 0.890625, 0.740625024,
    0.590624988, 0.440625012, 0.396874994, 0.40625, 0.256249994, 0.15625, 0.296875, 0.515625,
    0.84375, 0.693750024, 0.596875012, 0.606249988, 0.509374976, 0.359375, 0.209375009, 0.109375,
    0.515625, 0.521874964, 0.53125, 0.381249994, 0.390625, 0.71875, 0.728124976, 0.578125,
    0.428125024, 0.328125, 0.625, 0.524999976, 0.375, 0.224999994, 0.287499994, 0.774999976,
    0.837499976, 0.6875, 0.537500024, 0.4375,
};
static const float ref_bicubic_5x2[10] = {
    0.443723917, 0.569850326, 0.488607317, 0.444610417, 0.516094089, 0.419260532, 0.486602038, 0.539591312,
    0.461683542, 0.484575421,
};
static const float ref_box_4x3[12] = {
    0.359375, 0.65625, 0.421875, 0.453125, 0.4375, 0.46875, 0.5, 0.53125,
    0.515625, 0.546875, 0.578125, 0.34375,
};

static void fill_ramp(float *x, int h, int w)
{
    for (int y = 0; y < h; y++)
        for (int i = 0; i < w; i++) x[y * w + i] = ((7 * y + 13 * i) % 17) / 16.0f;
}

static void test_resample(void)
{
    float src[63], src8[48], out[256];
    fill_ramp(src, 7, 9);
    fill_ramp(src8, 6, 8);
    img_work ws = {0};
    struct util_err err;
    /* PIL computes in double, we in float: 1e-5 covers the rounding of a dozen-tap sum. */
    img_resample(out, 3, 4, src, 1, 7, 9, 0, 0, 7, 9, IMG_BILINEAR, &ws, &err);
    test_close("resample bilinear 9x7 -> 4x3 vs PIL", out, ref_bilinear_4x3, 12, 1e-5, 1.0);
    img_resample(out, 11, 13, src, 1, 7, 9, 0, 0, 7, 9, IMG_BICUBIC, &ws, &err);
    test_close("resample bicubic 9x7 -> 13x11 vs PIL", out, ref_bicubic_13x11, 143, 1e-5, 1.0);
    img_resample(out, 4, 4, src, 1, 7, 9, 1, 2, 5, 6, IMG_BICUBIC, &ws, &err);
    test_close("resample bicubic crop (1,2,5,6) -> 4x4 vs PIL crop+resize", out, ref_bicubic_crop_4x4, 16, 1e-5, 1.0);
    img_resample(out, 10, 10, src, 1, 7, 9, 1, 2, 5, 6, IMG_BILINEAR, &ws, &err);
    test_close("resample bilinear crop (1,2,5,6) -> 10x10 vs PIL crop+resize", out, ref_bilinear_crop_10x10, 100, 1e-5, 1.0);
    img_resample(out, 2, 5, src, 1, 7, 9, 0, 0, 7, 9, IMG_BICUBIC, &ws, &err);
    test_close("resample bicubic 9x7 -> 5x2 vs PIL", out, ref_bicubic_5x2, 10, 1e-5, 1.0);
    img_resample(out, 3, 4, src8, 1, 6, 8, 0, 0, 6, 8, IMG_AREA, &ws, &err);
    test_close("resample area 8x6 -> 4x3 vs PIL box (integer factor)", out, ref_box_4x3, 12, 1e-6, 1.0);

    /* Area at a fractional factor: 5 -> 2 averages [a0 a1 a2/2] and [a2/2 a3 a4] over 2.5 pixels. */
    float row[5] = {1, 2, 4, 8, 16}, want[2] = {(1 + 2 + 2) / 2.5f, (2 + 8 + 16) / 2.5f};
    img_resample(out, 1, 2, row, 1, 1, 5, 0, 0, 1, 5, IMG_AREA, &ws, &err);
    test_close("resample area 5 -> 2 exact overlaps", out, want, 2, 1e-6, 1.0);

    /* Same size is the identity for every filter; a constant stays constant at any scale. */
    int ok = 1;
    for (int f = 0; f < 3; f++) {
        img_resample(out, 7, 9, src, 1, 7, 9, 0, 0, 7, 9, (enum img_filter)f, &ws, &err);
        for (int i = 0; i < 63; i++) ok &= out[i] == src[i];
    }
    test_check(ok, "resample same size is the identity (area, bilinear, bicubic)");
    float cst[15 * 11];
    for (int i = 0; i < 15 * 11; i++) cst[i] = 0.375f;
    double worst = 0;
    for (int f = 0; f < 3; f++)
        for (int oh = 1; oh <= 16; oh += 3)
            for (int ow = 1; ow <= 16; ow += 5) {
                img_resample(out, oh, ow, cst, 1, 11, 15, 1, 2, 9, 12, (enum img_filter)f, &ws, &err);
                for (int i = 0; i < oh * ow; i++) worst = fmax(worst, fabs(out[i] - 0.375));
            }
    test_check(worst < 1e-6, "resample weights sum to one: constant image max deviation %.2g (tol 1e-6)", worst);
    img_work_free(&ws);
}

static void test_geometry(void)
{
    int oh, ow, top, left;
    img_resize_dims(375, 500, 256, &oh, &ow);
    test_check(oh == 256 && ow == 341, "resize 500x375 shorter side 256 -> %dx%d (want 341x256, torchvision truncates)", ow, oh);
    img_resize_dims(72, 64, 32, &oh, &ow);
    test_check(oh == 36 && ow == 32, "resize 64x72 shorter side 32 -> %dx%d (want 32x36)", ow, oh);
    /* torchvision CenterCrop: int(round((h - ch) / 2.0)), Python rounds halves to even */
    int cases[][3] = {{64, 61, 2}, {64, 59, 2}, {64, 63, 0}, {64, 57, 4}, {64, 64, 0}, {10, 20, -5}, {10, 13, -2}};
    int ok = 1;
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        img_center_offsets(cases[i][0], cases[i][0], cases[i][1], cases[i][1], &top, &left);
        if (top != cases[i][2] || left != cases[i][2]) {
            ok = 0;
            printf("  centre crop %d of %d: offset %d, want %d\n", cases[i][1], cases[i][0], top, cases[i][2]);
        }
    }
    test_check(ok, "centre crop offsets round half to even as torchvision");
    float src[2 * 3] = {1, 2, 3, 4, 5, 6}, dst[4 * 4];
    img_crop(dst, 4, 4, src, 1, 2, 3, -1, 0);   /* larger than the image: zero padding */
    float want[16] = {0, 0, 0, 0, 1, 2, 3, 0, 4, 5, 6, 0, 0, 0, 0, 0};
    test_close("crop beyond the image pads with zeros", dst, want, 16, 0, 1.0);
}

/* img_load on a generated 64 x 48 RGB PNG: resize 24 is an exact 2x2 box average; crop is centred. */
static void test_load(void)
{
    struct membuf m = make_png(64, 48, PNG_COLOR_TYPE_RGB, 8, PNG_INTERLACE_NONE, 0, NULL, 0);
    img_rgb im = {0};
    img_work ws = {0};
    float *out = NULL;
    size_t cap = 0;
    int oh, ow;
    struct util_err err;
    int rc = img_load(m.p, m.n, "load.png", 24, 0, &im, &ws, &out, &cap, &oh, &ow, &err);
    double worst = 0;
    if (rc == 0 && oh == 24 && ow == 32)
        for (int k = 0; k < 3; k++)
            for (int y = 0; y < 24; y++)
                for (int x = 0; x < 32; x++) {
                    double s = 0;
                    for (int dy = 0; dy < 2; dy++)
                        for (int dx = 0; dx < 2; dx++) s += sample(2 * x + dx, 2 * y + dy, k, 8) / 255.0;
                    worst = fmax(worst, fabs(out[(k * 24 + y) * 32 + x] - s / 4));
                }
    else worst = 1;
    test_check(rc == 0 && worst < 1e-6, "load 64x48 --resize 24: %dx%d, 2x2 box means (max err %.2g)", ow, oh, worst);
    rc = img_load(m.p, m.n, "load.png", 24, 20, &im, &ws, &out, &cap, &oh, &ow, &err);
    float full[3 * 24 * 32];
    img_load(m.p, m.n, "load.png", 24, 0, &im, &ws, &out, &cap, &oh, &ow, &err);
    memcpy(full, out, sizeof full);
    img_load(m.p, m.n, "load.png", 24, 20, &im, &ws, &out, &cap, &oh, &ow, &err);
    int ok = rc == 0 && oh == 20 && ow == 20;
    for (int k = 0; ok && k < 3; k++)
        for (int y = 0; y < 20; y++)
            for (int x = 0; x < 20; x++) ok &= out[(k * 20 + y) * 20 + x] == full[(k * 24 + y + 2) * 32 + x + 6];
    test_check(ok, "load --resize 24 --crop 20: the centre 20x20 (offsets 2, 6) of the resized image");
    free(out);
    free(m.p);
    img_rgb_free(&im);
    img_work_free(&ws);
}

/* The shared Tiny-ImageNet copies: each PNG was written from PIL's decode of the JPEG, and PIL decodes
 * with the same libjpeg-turbo (accurate IDCT, fancy upsampling), so the two decodes must agree exactly. */
static void test_shared(void)
{
    const char *sh = test_shared_dir();
    char cmd[1024];
    if (!sh) { test_skip("tiny-imagenet-2k png/jpeg agreement: no shared data"); return; }
    snprintf(cmd, sizeof cmd, "cd '%s/data/tiny-imagenet-2k/png' 2>/dev/null && find . -name '*.png' | sort", sh);
    FILE *f = popen(cmd, "r");
    char line[600], p1[1400], p2[1400];
    img_rgb a = {0}, b = {0};
    uint8_t *buf = NULL;
    size_t cap = 0, n;
    struct util_err err = {{0}};
    long n_img = 0, n_exact = 0, n_fail = 0, maxd = 0;
    double sum = 0, cnt = 0;
    while (f && fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = 0;
        snprintf(p1, sizeof p1, "%s/data/tiny-imagenet-2k/png/%s", sh, line + 2);
        snprintf(p2, sizeof p2, "%s/data/tiny-imagenet-2k/jpeg/%.*s.jpg", sh, (int)strlen(line + 2) - 4, line + 2);
        if (img_read_file(p1, &buf, &cap, &n, &err) < 0 || img_decode(&a, buf, n, p1, &err) < 0 ||
            img_read_file(p2, &buf, &cap, &n, &err) < 0 || img_decode(&b, buf, n, p2, &err) < 0 ||
            a.w != b.w || a.h != b.h || a.depth != 8) {
            if (n_fail++ == 0) printf("  %s: %s\n", line, err.msg);
            continue;
        }
        n_img++;
        int same = 1;
        for (size_t i = 0; i < (size_t)a.w * a.h * 3; i++) {
            int d = abs(a.px[i] - b.px[i]);
            if (d) same = 0;
            if (d > maxd) maxd = d;
            sum += d;
            cnt++;
        }
        n_exact += same;
    }
    if (f) pclose(f);
    free(buf);
    img_rgb_free(&a);
    img_rgb_free(&b);
    if (n_img + n_fail == 0) { test_skip("tiny-imagenet-2k: no images found under %s", sh); return; }
    test_check(n_fail == 0 && n_img == 2000, "tiny-imagenet-2k: %ld PNG/JPEG pairs decoded, %ld failures", n_img, n_fail);
    test_check(n_exact == n_img, "tiny-imagenet-2k: JPEG decode equals the PNG copy in %ld of %ld images "
               "(mean abs diff %.4f levels, max %ld)", n_exact, n_img, cnt ? sum / cnt : 0.0, maxd);
}


/* ---- the img2tensor tool on files made here (run from the test's directory, tools on PATH) ---- */
static void write_file(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(p, 1, n, f) != n) { perror(path); exit(1); }
    fclose(f);
}

static int read_stream(const char *path, tsz_rec *recs, void **data, int max, tsz_attrs *attrs)
{
    struct util_err err;
    tsz_reader *r = tsz_reader_open(path, &err);
    if (!r) { printf("  %s\n", err.msg); return -1; }
    tsz_attrs_copy(attrs, tsz_reader_attrs(r));
    int n = 0, rc;
    size_t cap = 0;
    void *buf = NULL;
    while (n < max && (rc = tsz_read(r, &recs[n], &buf, &cap, &err)) == 1) {
        data[n] = malloc(cap);
        memcpy(data[n], buf, tsz_rec_bytes(&recs[n]));
        n++;
    }
    free(buf);
    tsz_reader_close(r);
    return n;
}

static void test_tool(void)
{
    const char *bin = getenv("EARSIGHT_BIN");
    char tool[1024];
    snprintf(tool, sizeof tool, "%s/img2tensor", bin ? bin : ".");
    /* run by hand without tests/run.sh there is no tool directory; under it, a missing tool is a broken build */
    if (!bin) { test_skip("img2tensor tool: EARSIGHT_BIN unset (run through tests/run.sh)"); return; }
    if (access(tool, X_OK) != 0) { test_check(0, "img2tensor tool: %s not built", tool); return; }
    if (system("rm -rf imgs && mkdir -p imgs/cls_b imgs/cls_a") != 0) { test_check(0, "mkdir"); return; }
    png_color pal[4] = {{1, 2, 3}, {4, 5, 6}, {7, 8, 9}, {10, 11, 12}};
    struct membuf a = make_png(10, 6, PNG_COLOR_TYPE_RGB, 8, PNG_INTERLACE_NONE, 0, NULL, 0);
    struct membuf b = make_png(7, 9, PNG_COLOR_TYPE_GRAY, 16, PNG_INTERLACE_ADAM7, 0, NULL, 0);
    struct membuf c = make_png(5, 5, PNG_COLOR_TYPE_PALETTE, 2, PNG_INTERLACE_NONE, 0, pal, 4);
    write_file("imgs/cls_b/x1.png", a.p, a.n);
    write_file("imgs/cls_a/y.PNG", b.p, b.n);
    write_file("imgs/cls_a/z.png", c.p, c.n);
    write_file("imgs/cls_a/notes.txt", "not an image\n", 13);
    int rc = system("img2tensor --u8 -j 2 -o u8.tsz imgs 2>err.txt");
    tsz_rec recs[8];
    void *data[8] = {0};
    tsz_attrs at;
    tsz_attrs_init(&at);
    int n = rc == 0 ? read_stream("u8.tsz", recs, data, 8, &at) : -1;
    const char *cls = tsz_attrs_get(&at, "classes"), *kind = tsz_attrs_get(&at, "kind");
    int ok = n == 3 && cls && strcmp(cls, "cls_a\ncls_b") == 0 && kind && strcmp(kind, "image") == 0 &&
             strcmp(recs[0].name, "imgs/cls_a/y.PNG") == 0 && strcmp(recs[1].name, "imgs/cls_a/z.png") == 0 &&
             strcmp(recs[2].name, "imgs/cls_b/x1.png") == 0 && recs[0].label == 0 && recs[1].label == 0 &&
             recs[2].label == 1 && recs[0].dtype == TSZ_U8 && recs[2].shape[0] == 3 && recs[2].shape[1] == 6 &&
             recs[2].shape[2] == 10 && recs[0].shape[1] == 9 && recs[0].shape[2] == 7;
    test_check(ok, "img2tensor DIR: 3 images in sorted order (notes.txt ignored), ImageFolder labels, classes attribute "
               "(status %d, %d records)", rc, n);
    if (ok) {
        int exact = 1;
        const uint8_t *p0 = data[0], *p1 = data[1], *p2 = data[2];
        for (int k = 0; k < 3; k++)
            for (int y = 0; y < 9; y++)
                for (int x = 0; x < 7; x++)
                    exact &= p0[(k * 9 + y) * 7 + x] == (sample(x, y, 0, 16) * 255u + 32767u) / 65535u;
        for (int k = 0; k < 3; k++)
            for (int y = 0; y < 5; y++)
                for (int x = 0; x < 5; x++) {
                    const png_color *e = &pal[sample(x, y, 0, 2) % 4];
                    exact &= p1[(k * 5 + y) * 5 + x] == (k == 0 ? e->red : k == 1 ? e->green : e->blue);
                }
        for (int k = 0; k < 3; k++)
            for (int y = 0; y < 6; y++)
                for (int x = 0; x < 10; x++) exact &= p2[(k * 6 + y) * 10 + x] == sample(x, y, k, 8);
        test_check(exact, "img2tensor --u8: 16-bit gray, 2-bit palette and RGB pixels exact in C x H x W order");
    }
    for (int i = 0; i < 8; i++) { free(data[i]); data[i] = NULL; }
    tsz_attrs_free(&at);

    /* f32, normalised, resized and cropped, from a list with class names */
    FILE *l = fopen("list.txt", "w");
    fprintf(l, "imgs/cls_b/x1.png\tzebra\nimgs/cls_a/z.png\tant\n");
    fclose(l);
    rc = system("img2tensor --list list.txt --normalize imagenet -o f.tsz 2>err.txt");
    tsz_attrs_init(&at);
    n = rc == 0 ? read_stream("f.tsz", recs, data, 8, &at) : -1;
    cls = tsz_attrs_get(&at, "classes");
    ok = n == 2 && cls && strcmp(cls, "ant\nzebra") == 0 && recs[0].label == 1 && recs[1].label == 0 &&
         recs[0].dtype == TSZ_F32;
    double worst = 0;
    const float mean[3] = {0.485f, 0.456f, 0.406f}, sd[3] = {0.229f, 0.224f, 0.225f};
    for (int k = 0; ok && k < 3; k++)
        for (int y = 0; y < 6; y++)
            for (int x = 0; x < 10; x++) {
                double want = (sample(x, y, k, 8) / 255.0 - mean[k]) / sd[k];
                worst = fmax(worst, fabs(((float *)data[0])[(k * 6 + y) * 10 + x] - want));
            }
    test_check(ok && worst < 1e-5, "img2tensor --list with classes --normalize imagenet: labels by sorted class name, "
               "(v/255 - mean)/std (max err %.2g)", worst);
    for (int i = 0; i < 8; i++) { free(data[i]); data[i] = NULL; }
    tsz_attrs_free(&at);

    rc = system("img2tensor --resize 4 --crop 3 --no-labels -o r.tsz imgs 2>err.txt");
    tsz_attrs_init(&at);
    n = rc == 0 ? read_stream("r.tsz", recs, data, 8, &at) : -1;
    ok = n == 3 && !tsz_attrs_get(&at, "classes");
    for (int i = 0; ok && i < n; i++)
        ok &= recs[i].label == -1 && recs[i].ndim == 3 && recs[i].shape[0] == 3 && recs[i].shape[1] == 3 &&
              recs[i].shape[2] == 3;
    test_check(ok, "img2tensor --resize 4 --crop 3 --no-labels: three 3x3x3 records, label -1, no classes");
    for (int i = 0; i < 8; i++) free(data[i]);
    tsz_attrs_free(&at);
    free(a.p); free(b.p); free(c.p);
}

int main(void)
{
    test_png_types();
    test_png_bad();
    test_jpeg();
    test_resample();
    test_geometry();
    test_load();
    test_shared();
    test_tool();
    return test_exit();
}
