/* plot_test: the drawing library — clipping, PNG round trip through libpng's reader, atomic save,
 * the colour maps (end colours, monotone luminance), the font (every glyph inked and distinct,
 * vertical text is the rotation of horizontal text), heat map layout and the line chart. */
#include <math.h>
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "plot.h"
#include "test.h"

/* Read a PNG back as 8-bit RGB with libpng's simplified API.  Returns malloc'd pixels or NULL. */
static uint8_t *read_png(const char *path, int *w, int *h)
{
    png_image im;
    memset(&im, 0, sizeof im);
    im.version = PNG_IMAGE_VERSION;
    if (!png_image_begin_read_from_file(&im, path)) return NULL;
    im.format = PNG_FORMAT_RGB;
    uint8_t *buf = malloc(PNG_IMAGE_SIZE(im));
    if (!buf || !png_image_finish_read(&im, NULL, buf, 0, NULL)) {
        free(buf);
        png_image_free(&im);
        return NULL;
    }
    *w = (int)im.width;
    *h = (int)im.height;
    return buf;
}

static const char *why(int rc, const struct util_err *e) { return rc == 0 ? "" : e->msg; }

static int same_rgb(plot_rgb a, const uint8_t *p) { return a.r == p[0] && a.g == p[1] && a.b == p[2]; }

static double lum(plot_rgb c)   /* relative luminance (sRGB, D65) */
{
    double v[3] = { c.r / 255.0, c.g / 255.0, c.b / 255.0 };
    for (int i = 0; i < 3; i++) v[i] = v[i] <= 0.04045 ? v[i] / 12.92 : pow((v[i] + 0.055) / 1.055, 2.4);
    return 0.2126 * v[0] + 0.7152 * v[1] + 0.0722 * v[2];
}

static int near_hex(plot_rgb c, uint32_t hex, int tol)
{
    return abs(c.r - (int)(hex >> 16 & 255)) <= tol && abs(c.g - (int)(hex >> 8 & 255)) <= tol &&
           abs(c.b - (int)(hex & 255)) <= tol;
}

/* Ink bounding box of a canvas drawn black on white; returns the number of inked pixels. */
static long ink_box(const plot_canvas *c, int *x0, int *y0, int *x1, int *y1)
{
    long n = 0;
    *x0 = *y0 = 1 << 30;
    *x1 = *y1 = -1;
    for (int y = 0; y < c->h; y++)
        for (int x = 0; x < c->w; x++)
            if (c->rgb[((size_t)y * c->w + x) * 3] == 0) {
                n++;
                if (x < *x0) *x0 = x;
                if (y < *y0) *y0 = y;
                if (x > *x1) *x1 = x;
                if (y > *y1) *y1 = y;
            }
    return n;
}

int main(void)
{
    struct util_err err = { { 0 } };
    const plot_rgb white = { 255, 255, 255 }, black = { 0, 0, 0 }, red = { 255, 0, 0 };
    plot_canvas c;
    int rc;

    /* canvas, clipping, rectangles */
    test_check(plot_canvas_create(&c, 0, 10, white, &err) < 0 && err.msg[0], "canvas 0x10 refused: %s", err.msg);
    test_check(plot_canvas_create(&c, 40, 30, white, &err) == 0, "canvas 40x30 created");
    plot_pixel(&c, -1, 5, red);
    plot_pixel(&c, 40, 5, red);
    plot_pixel(&c, 3, 30, red);
    plot_line(&c, -100, -50, 200, 120, red);   /* crosses the canvas, ends outside */
    plot_fill_rect(&c, 30, 20, 100, 100, red); /* clipped to 10x10 */
    long nred = 0;
    for (int i = 0; i < 40 * 30; i++) nred += c.rgb[3 * i] == 255 && c.rgb[3 * i + 1] == 0;
    long line_px = 0;   /* the line from (-100,-50) to (200,120) inside x<30 or y<20 */
    for (int y = 0; y < 30; y++)
        for (int x = 0; x < 40; x++)
            if (!(x >= 30 && y >= 20) && c.rgb[(y * 40 + x) * 3 + 1] == 0) line_px++;
    test_check(nred >= 100 && line_px >= 20 && line_px <= 45,
               "clipped drawing: %ld red pixels, %ld on the line inside the canvas", nred, line_px);
    plot_rect(&c, 2, 2, 5, 4, black);
    long nblack = 0;
    for (int i = 0; i < 40 * 30; i++) nblack += c.rgb[3 * i] == 0 && c.rgb[3 * i + 1] == 0;
    test_check(nblack == 14, "rect 5x4 outline has 14 pixels (got %ld)", nblack);
    plot_blend_pixel(&c, 0, 29, black, 0.5f);
    test_check(c.rgb[(29 * 40) * 3] == 128, "blend 50%% of black on white gives 128 (got %d)", c.rgb[(29 * 40) * 3]);

    /* PNG round trip, byte for byte */
    for (int i = 0; i < 40 * 30 * 3; i++) c.rgb[i] = (uint8_t)(i * 7 + i / 13);
    rc = plot_save_png(&c, "rt.png", &err);
    test_check(rc == 0, "save rt.png %s", why(rc, &err));
    int w = 0, h = 0;
    uint8_t *back = read_png("rt.png", &w, &h);
    test_check(back && w == 40 && h == 30 && memcmp(back, c.rgb, 40 * 30 * 3) == 0,
               "PNG read back by libpng equals the canvas (%dx%d)", w, h);
    free(back);
    err.msg[0] = 0;
    rc = plot_save_png(&c, "no-such-dir/x.png", &err);
    test_check(rc < 0 && strstr(err.msg, "no-such-dir/x.png"), "save into a missing directory fails: %s", err.msg);
    test_check(access("no-such-dir", F_OK) != 0, "no stray files after a failed save");
    plot_canvas_free(&c);
    plot_canvas_free(&c);   /* twice is harmless */

    /* colour maps: ends near the published colours, luminance strictly rising */
    test_check(near_hex(plot_viridis(0), 0x440154, 2) && near_hex(plot_viridis(1), 0xfde725, 2) &&
               near_hex(plot_viridis(0.5f), 0x21918c, 2), "viridis ends and middle match the published colours");
    test_check(near_hex(plot_magma(0), 0x000004, 2) && near_hex(plot_magma(1), 0xfcfdbf, 2) &&
               near_hex(plot_magma(0.5f), 0xb73779, 2), "magma ends and middle match the published colours");
    /* 8-bit rounding of neighbouring entries can dip luminance by ~1e-4; over 8 entries it must rise */
    int mono_v = 1, mono_m = 1;
    for (int i = 1; i < 256; i++) {
        double lv = lum(plot_viridis(i / 255.0f)), lm = lum(plot_magma(i / 255.0f));
        if (lv < lum(plot_viridis((i - 1) / 255.0f)) - 5e-4) mono_v = 0;
        if (lm < lum(plot_magma((i - 1) / 255.0f)) - 5e-4) mono_m = 0;
        if (i >= 8 && !(lv > lum(plot_viridis((i - 8) / 255.0f)))) mono_v = 0;
        if (i >= 8 && !(lm > lum(plot_magma((i - 8) / 255.0f)))) mono_m = 0;
    }
    test_check(mono_v && mono_m, "viridis and magma luminance rises (viridis %d, magma %d)", mono_v, mono_m);
    test_check(same_rgb(plot_magma(-3), (uint8_t[]){ plot_magma(0).r, plot_magma(0).g, plot_magma(0).b }) &&
               same_rgb(plot_magma(NAN), (uint8_t[]){ plot_magma(0).r, plot_magma(0).g, plot_magma(0).b }) &&
               same_rgb(plot_magma(7), (uint8_t[]){ plot_magma(1).r, plot_magma(1).g, plot_magma(1).b }),
               "colour maps clamp t (and NaN) to [0, 1]");
    int min_d = 1 << 30;
    for (int i = 0; i < 20; i++)
        for (int j = 0; j < i; j++) {
            plot_rgb a = plot_category(i), b = plot_category(j);
            int d = abs(a.r - b.r) + abs(a.g - b.g) + abs(a.b - b.b);
            if (d < min_d) min_d = d;
        }
    test_check(min_d >= 60, "first 20 categorical colours differ (min L1 distance %d >= 60)", min_d);

    /* font */
    test_check(plot_text_width("", 2) == 0 && plot_text_width("abc", 1) == 17 && plot_text_width("abc", 3) == 51 &&
               plot_text_height(2) == 20, "text width/height formulas");
    static uint8_t bitmaps[95][60];
    int blank = 0, dup = 0, outside = 0;
    for (int ch = 32; ch < 127; ch++) {
        char s[2] = { (char)ch, 0 };
        plot_canvas_create(&c, 12, 14, white, &err);
        plot_text(&c, 1, 1, s, black, 1);
        int x0, y0, x1, y1;
        long n = ink_box(&c, &x0, &y0, &x1, &y1);
        if (ch != ' ' && n == 0) blank++;
        if (n && (x0 < 1 || y0 < 1 || x1 > 5 || y1 > 9)) outside++;
        for (int y = 0; y < 10; y++)
            for (int x = 0; x < 6; x++) bitmaps[ch - 32][y * 6 + x] = c.rgb[((y + 1) * 12 + x + 1) * 3] == 0;
        plot_canvas_free(&c);
    }
    for (int i = 0; i < 95; i++)
        for (int j = 0; j < i; j++) dup += memcmp(bitmaps[i], bitmaps[j], 60) == 0;
    test_check(blank == 0 && dup == 0 && outside == 0,
               "font: every printable glyph inked (%d blank), all distinct (%d duplicates), inside its 5x9 cell (%d outside)",
               blank, dup, outside);
    plot_canvas_create(&c, 12, 14, white, &err);
    plot_text(&c, 1, 1, "\x01", black, 1);
    int same_q = 1;
    for (int y = 0; y < 10; y++)
        for (int x = 0; x < 6; x++)
            if ((c.rgb[((y + 1) * 12 + x + 1) * 3] == 0) != bitmaps['?' - 32][y * 6 + x]) same_q = 0;
    test_check(same_q, "unprintable characters are drawn as '?'");
    plot_canvas_free(&c);

    /* vertical text is horizontal text rotated 90 degrees counter-clockwise */
    {
        const char *s = "Tg2";
        int tw = plot_text_width(s, 2), tht = plot_text_height(2);
        plot_canvas hc, vc;
        plot_canvas_create(&hc, tw + 4, tht + 4, white, &err);
        plot_canvas_create(&vc, tht + 4, tw + 4, white, &err);
        plot_text(&hc, 2, 2, s, black, 2);
        plot_text_vertical(&vc, 2, 2, s, black, 2);
        int ok = 1;
        /* horizontal (x, y) -> vertical (y, tw - 1 - x) relative to the boxes' corners */
        for (int y = 0; y < tht; y++)
            for (int x = 0; x < tw; x++) {
                int hv = hc.rgb[((y + 2) * hc.w + x + 2) * 3] == 0;
                int vv = vc.rgb[((tw - 1 - x + 2) * vc.w + y + 2) * 3] == 0;
                if (hv != vv) ok = 0;
            }
        int x0, y0, x1, y1;
        long nh = ink_box(&hc, &x0, &y0, &x1, &y1), nv = ink_box(&vc, &x0, &y0, &x1, &y1);
        test_check(ok && nh == nv && nh > 0, "vertical text is the rotation of horizontal text (%ld pixels)", nh);
        plot_canvas_free(&hc);
        plot_canvas_free(&vc);
    }

    /* heat map: 2 rows x 3 cols, scale 4, row 0 at the bottom */
    {
        float m[6] = { 0, 1, 2, 3, 4, NAN };
        rc = plot_heatmap_png(m, 2, 3, 0, 4, 1, 4, "heat.png", &err);
        test_check(rc == 0, "heat map saved %s", why(rc, &err));
        uint8_t *p = read_png("heat.png", &w, &h);
        int ok = p && w == 12 && h == 8;
        if (ok) {
            /* bottom-left cell (pixel row 7) is m[0] = vmin, top row holds m[3..5] */
            ok &= same_rgb(plot_magma(0), p + (7 * 12 + 0) * 3);
            ok &= same_rgb(plot_magma(0.25f), p + (5 * 12 + 5) * 3);
            ok &= same_rgb(plot_magma(0.75f), p + (0 * 12 + 0) * 3);
            ok &= same_rgb(plot_magma(1), p + (3 * 12 + 4) * 3);
            ok &= p[(0 * 12 + 11) * 3] == 128 && p[(0 * 12 + 11) * 3 + 1] == 128;   /* NaN grey */
        }
        test_check(ok, "heat map: 12x8 pixels, flipped rows, magma values, NaN grey (%dx%d)", w, h);
        free(p);
        test_check(plot_heatmap_png(m, 2, 3, 0, 4, 0, 4, "heat2.png", &err) == 0 &&
                       (p = read_png("heat2.png", &w, &h)) && same_rgb(plot_magma(0), p),
                   "heat map without flip: row 0 at the top");
        free(p);
        err.msg[0] = 0;
        test_check(plot_heatmap_png(m, 0, 3, 0, 4, 0, 4, "heat3.png", &err) < 0 && err.msg[0] &&
                       access("heat3.png", F_OK) != 0, "empty heat map refused: %s", err.msg);
    }

    /* line chart: readable output, gaps for NaN, bad arguments refused */
    {
        double loss[30], acc[30], lr[30];
        for (int i = 0; i < 30; i++) {
            loss[i] = 2.3 * exp(-i / 8.0) + 0.1;
            acc[i] = 1 - 0.9 * exp(-i / 6.0);
            lr[i] = i == 12 ? NAN : 0.5 * (1 + cos(M_PI * i / 29));
        }
        const double *ser[3] = { loss, acc, lr };
        const char *lab[3] = { "train loss", "val accuracy", "learning rate" };
        rc = plot_lines_png("lines.png", "Fine-tuning: ResNet-18 fold 1", "epoch", 3, lab, ser, 30, &err);
        test_check(rc == 0, "line chart saved %s", why(rc, &err));
        uint8_t *p = read_png("lines.png", &w, &h);
        long counts[3] = { 0, 0, 0 };
        if (p)
            for (long i = 0; i < (long)w * h; i++)
                for (int s = 0; s < 3; s++) counts[s] += same_rgb(plot_category(s), p + 3 * i);
        test_check(p && w >= 600 && h >= 400 && counts[0] > 300 && counts[1] > 300 && counts[2] > 300,
                   "line chart %dx%d draws each series (%ld, %ld, %ld pixels)", w, h, counts[0], counts[1], counts[2]);
        free(p);
        const double *one[1] = { loss };
        test_check(plot_lines_png("one.png", NULL, NULL, 1, lab, one, 1, &err) == 0, "single point, no title");
        err.msg[0] = 0;
        test_check(plot_lines_png("bad.png", NULL, NULL, 9, lab, ser, 30, &err) < 0 && err.msg[0] &&
                       access("bad.png", F_OK) != 0, "9 series refused: %s", err.msg);
    }

    /* a sample sheet to look at: text at several scales, maps, categories */
    {
        plot_canvas_create(&c, 720, 300, white, &err);
        plot_text(&c, 10, 10, " !\"#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ", black, 2);
        plot_text(&c, 10, 36, "[\\]^_`abcdefghijklmnopqrstuvwxyz{|}~  dog_bark -1.25e-3", black, 2);
        plot_text(&c, 10, 62, "Chainsaw 0.93 +- 0.02", black, 3);
        for (int x = 0; x < 512; x++) {
            plot_fill_rect(&c, 10 + x, 110, 1, 30, plot_viridis(x / 511.0f));
            plot_fill_rect(&c, 10 + x, 145, 1, 30, plot_magma(x / 511.0f));
        }
        for (int i = 0; i < 40; i++) plot_disc(&c, 20.0f + 17 * i, 200, 7, plot_category(i), 1);
        plot_text_vertical(&c, 600, 110, "vertical", black, 2);
        rc = plot_save_png(&c, "sheet.png", &err);
        test_check(rc == 0, "sample sheet saved %s", why(rc, &err));
        plot_canvas_free(&c);
        const char *keep = getenv("PLOT_TEST_KEEP");   /* a directory to copy the pictures to */
        if (keep) {
            char cmd[1024];
            snprintf(cmd, sizeof cmd, "cp sheet.png lines.png heat.png '%s'/", keep);
            if (system(cmd) != 0) fprintf(stderr, "copy to %s failed\n", keep);
        }
    }
    return test_exit();
}
