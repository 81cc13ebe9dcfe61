/* plot.c: the project's own drawing code — an RGB canvas, Bresenham lines, anti-aliased discs, a
 * built-in 5x9 bitmap font (5x7 body plus two descender rows), viridis/magma/categorical colours and
 * PNG output through libpng, written under a temporary name and renamed into place. */
#include "plot.h"

#include <math.h>
#include <png.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- canvas ---- */
int plot_canvas_create(plot_canvas *c, int w, int h, plot_rgb bg, struct util_err *err)
{
    c->w = c->h = 0;
    c->rgb = NULL;
    if (w <= 0 || h <= 0 || w > 32768 || h > 32768)
        return util_err_set(err, "canvas size %dx%d out of range (1..32768)", w, h);
    c->rgb = util_malloc((size_t)w * (size_t)h, 3, err);
    if (!c->rgb) return -1;
    c->w = w;
    c->h = h;
    for (size_t i = 0; i < (size_t)w * (size_t)h; i++) {
        c->rgb[3 * i] = bg.r;
        c->rgb[3 * i + 1] = bg.g;
        c->rgb[3 * i + 2] = bg.b;
    }
    return 0;
}

void plot_canvas_free(plot_canvas *c)
{
    if (!c) return;
    free(c->rgb);
    c->rgb = NULL;
    c->w = c->h = 0;
}

/* libpng reports errors by longjmp; the message is kept for util_err. */
struct png_ctx {
    jmp_buf jb;
    char msg[200];
};

static void png_error_fn(png_structp png, png_const_charp msg)
{
    struct png_ctx *ctx = png_get_error_ptr(png);
    snprintf(ctx->msg, sizeof ctx->msg, "%s", msg);
    longjmp(ctx->jb, 1);
}

static void png_warn_fn(png_structp png, png_const_charp msg) { (void)png; (void)msg; }

int plot_save_png(const plot_canvas *c, const char *path, struct util_err *err)
{
    util_atomic_file af;
    if (!c->rgb || c->w <= 0 || c->h <= 0) return util_err_set(err, "%s: empty canvas", path);
    if (util_atomic_open(&af, path, err) < 0) return -1;
    struct png_ctx ctx;
    ctx.msg[0] = 0;
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &ctx, png_error_fn, png_warn_fn);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!png || !info) {
        png_destroy_write_struct(&png, NULL);
        util_atomic_abort(&af);
        return util_err_set(err, "%s: out of memory", path);
    }
    if (setjmp(ctx.jb)) {
        png_destroy_write_struct(&png, &info);
        util_atomic_abort(&af);
        return util_err_set(err, "%s: png: %s", path, ctx.msg);
    }
    png_init_io(png, af.fp);
    png_set_IHDR(png, info, (png_uint_32)c->w, (png_uint_32)c->h, 8, PNG_COLOR_TYPE_RGB,
                 PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    for (int y = 0; y < c->h; y++) png_write_row(png, c->rgb + (size_t)y * (size_t)c->w * 3);
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    return util_atomic_commit(&af, err);
}

/* ---- primitives ---- */
void plot_pixel(plot_canvas *c, int x, int y, plot_rgb col)
{
    if (x < 0 || y < 0 || x >= c->w || y >= c->h) return;
    uint8_t *p = c->rgb + ((size_t)y * (size_t)c->w + (size_t)x) * 3;
    p[0] = col.r;
    p[1] = col.g;
    p[2] = col.b;
}

static uint8_t mix8(uint8_t a, uint8_t b, float t)
{
    float v = (float)a + ((float)b - (float)a) * t;
    return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v + 0.5f);
}

void plot_blend_pixel(plot_canvas *c, int x, int y, plot_rgb col, float alpha)
{
    if (x < 0 || y < 0 || x >= c->w || y >= c->h || !(alpha > 0)) return;
    if (alpha > 1) alpha = 1;
    uint8_t *p = c->rgb + ((size_t)y * (size_t)c->w + (size_t)x) * 3;
    p[0] = mix8(p[0], col.r, alpha);
    p[1] = mix8(p[1], col.g, alpha);
    p[2] = mix8(p[2], col.b, alpha);
}

void plot_line(plot_canvas *c, int x0, int y0, int x1, int y1, plot_rgb col)
{
    /* Bresenham; endpoints far outside the canvas are clamped to a generous box first so that the
     * loop stays short whatever the caller passes. */
    const int lim = 1 << 20;
    if (x0 < -lim || x0 > lim || x1 < -lim || x1 > lim || y0 < -lim || y0 > lim || y1 < -lim ||
        y1 > lim)
        return;
    int dx = abs(x1 - x0), sx = x0 < x1 ? 1 : -1;
    int dy = -abs(y1 - y0), sy = y0 < y1 ? 1 : -1;
    int e = dx + dy;
    for (;;) {
        plot_pixel(c, x0, y0, col);
        if (x0 == x1 && y0 == y1) break;
        int e2 = 2 * e;
        if (e2 >= dy) { e += dy; x0 += sx; }
        if (e2 <= dx) { e += dx; y0 += sy; }
    }
}

void plot_fill_rect(plot_canvas *c, int x, int y, int w, int h, plot_rgb col)
{
    int x0 = x < 0 ? 0 : x, y0 = y < 0 ? 0 : y;
    long x1 = (long)x + w, y1 = (long)y + h;
    if (x1 > c->w) x1 = c->w;
    if (y1 > c->h) y1 = c->h;
    for (int yy = y0; yy < y1; yy++)
        for (int xx = x0; xx < x1; xx++) plot_pixel(c, xx, yy, col);
}

void plot_rect(plot_canvas *c, int x, int y, int w, int h, plot_rgb col)
{
    if (w <= 0 || h <= 0) return;
    plot_fill_rect(c, x, y, w, 1, col);
    plot_fill_rect(c, x, y + h - 1, w, 1, col);
    plot_fill_rect(c, x, y, 1, h, col);
    plot_fill_rect(c, x + w - 1, y, 1, h, col);
}

void plot_disc(plot_canvas *c, float cx, float cy, float radius, plot_rgb col, float alpha)
{
    if (!(radius > 0) || !isfinite(cx) || !isfinite(cy)) return;
    /* Coverage of each pixel approximated by the distance of its centre to the edge (one pixel of
     * linear fall-off), which is enough to make small markers look round. */
    int x0 = (int)floorf(cx - radius - 1), x1 = (int)ceilf(cx + radius + 1);
    int y0 = (int)floorf(cy - radius - 1), y1 = (int)ceilf(cy + radius + 1);
    if (x1 < 0 || y1 < 0 || x0 >= c->w || y0 >= c->h) return;
    if (x0 < 0) x0 = 0;
    if (y0 < 0) y0 = 0;
    if (x1 >= c->w) x1 = c->w - 1;
    if (y1 >= c->h) y1 = c->h - 1;
    for (int y = y0; y <= y1; y++)
        for (int x = x0; x <= x1; x++) {
            float dx = (float)x + 0.5f - cx, dy = (float)y + 0.5f - cy;
            float cov = radius + 0.5f - sqrtf(dx * dx + dy * dy);
            if (cov <= 0) continue;
            if (cov > 1) cov = 1;
            plot_blend_pixel(c, x, y, col, alpha * cov);
        }
}

/* ---- font ----
 * One glyph per printable ASCII character, 5 columns by up to 9 rows written as rows of five
 * characters separated by spaces ('#' ink, '.' paper).  Rows 0-6 hold capitals and digits (the
 * baseline is row 6); rows 7-8 are descenders.  Omitted trailing rows are blank.  Cell: 6x10. */
static const char *const font[95] = {
    /* ' ' */ "",
    /* '!' */ "..#.. ..#.. ..#.. ..#.. ..#.. ..... ..#..",
    /* '"' */ ".#.#. .#.#. .#.#.",
    /* '#' */ ".#.#. .#.#. ##### .#.#. ##### .#.#. .#.#.",
    /* '$' */ "..#.. .#### #.#.. .###. ..#.# ####. ..#..",
    /* '%' */ "##... ##..# ...#. ..#.. .#... #..## ...##",
    /* '&' */ ".##.. #..#. #.#.. .#... #.#.# #..#. .##.#",
    /* ''' */ "..#.. ..#.. .#...",
    /* '(' */ "...#. ..#.. .#... .#... .#... ..#.. ...#.",
    /* ')' */ ".#... ..#.. ...#. ...#. ...#. ..#.. .#...",
    /* '*' */ "..... ..#.. #.#.# .###. #.#.# ..#.. .....",
    /* '+' */ "..... ..#.. ..#.. ##### ..#.. ..#.. .....",
    /* ',' */ "..... ..... ..... ..... ..... .##.. .##.. ..#.. .#...",
    /* '-' */ "..... ..... ..... .###. ..... ..... .....",
    /* '.' */ "..... ..... ..... ..... ..... .##.. .##..",
    /* '/' */ "..... ....# ...#. ..#.. .#... #.... .....",
    /* '0' */ ".###. #...# #..## #.#.# ##..# #...# .###.",
    /* '1' */ "..#.. .##.. ..#.. ..#.. ..#.. ..#.. .###.",
    /* '2' */ ".###. #...# ....# ...#. ..#.. .#... #####",
    /* '3' */ "##### ...#. ..#.. ...#. ....# #...# .###.",
    /* '4' */ "...#. ..##. .#.#. #..#. ##### ...#. ...#.",
    /* '5' */ "##### #.... ####. ....# ....# #...# .###.",
    /* '6' */ "..##. .#... #.... ####. #...# #...# .###.",
    /* '7' */ "##### ....# ...#. ..#.. .#... .#... .#...",
    /* '8' */ ".###. #...# #...# .###. #...# #...# .###.",
    /* '9' */ ".###. #...# #...# .#### ....# ...#. .##..",
    /* ':' */ "..... .##.. .##.. ..... .##.. .##.. .....",
    /* ';' */ "..... .##.. .##.. ..... .##.. .##.. ..#.. .#...",
    /* '<' */ "...#. ..#.. .#... #.... .#... ..#.. ...#.",
    /* '=' */ "..... ..... ##### ..... ##### ..... .....",
    /* '>' */ ".#... ..#.. ...#. ....# ...#. ..#.. .#...",
    /* '?' */ ".###. #...# ....# ...#. ..#.. ..... ..#..",
    /* '@' */ ".###. #...# ....# .##.# #.#.# #.#.# .###.",
    /* 'A' */ ".###. #...# #...# ##### #...# #...# #...#",
    /* 'B' */ "####. #...# #...# ####. #...# #...# ####.",
    /* 'C' */ ".###. #...# #.... #.... #.... #...# .###.",
    /* 'D' */ "###.. #..#. #...# #...# #...# #..#. ###..",
    /* 'E' */ "##### #.... #.... ####. #.... #.... #####",
    /* 'F' */ "##### #.... #.... ####. #.... #.... #....",
    /* 'G' */ ".###. #...# #.... #.### #...# #...# .####",
    /* 'H' */ "#...# #...# #...# ##### #...# #...# #...#",
    /* 'I' */ ".###. ..#.. ..#.. ..#.. ..#.. ..#.. .###.",
    /* 'J' */ "..### ...#. ...#. ...#. ...#. #..#. .##..",
    /* 'K' */ "#...# #..#. #.#.. ##... #.#.. #..#. #...#",
    /* 'L' */ "#.... #.... #.... #.... #.... #.... #####",
    /* 'M' */ "#...# ##.## #.#.# #.#.# #...# #...# #...#",
    /* 'N' */ "#...# #...# ##..# #.#.# #..## #...# #...#",
    /* 'O' */ ".###. #...# #...# #...# #...# #...# .###.",
    /* 'P' */ "####. #...# #...# ####. #.... #.... #....",
    /* 'Q' */ ".###. #...# #...# #...# #.#.# #..#. .##.#",
    /* 'R' */ "####. #...# #...# ####. #.#.. #..#. #...#",
    /* 'S' */ ".#### #.... #.... .###. ....# ....# ####.",
    /* 'T' */ "##### ..#.. ..#.. ..#.. ..#.. ..#.. ..#..",
    /* 'U' */ "#...# #...# #...# #...# #...# #...# .###.",
    /* 'V' */ "#...# #...# #...# #...# #...# .#.#. ..#..",
    /* 'W' */ "#...# #...# #...# #.#.# #.#.# #.#.# .#.#.",
    /* 'X' */ "#...# #...# .#.#. ..#.. .#.#. #...# #...#",
    /* 'Y' */ "#...# #...# .#.#. ..#.. ..#.. ..#.. ..#..",
    /* 'Z' */ "##### ....# ...#. ..#.. .#... #.... #####",
    /* '[' */ ".###. .#... .#... .#... .#... .#... .###.",
    /* '\' */ "..... #.... .#... ..#.. ...#. ....# .....",
    /* ']' */ ".###. ...#. ...#. ...#. ...#. ...#. .###.",
    /* '^' */ "..#.. .#.#. #...#",
    /* '_' */ "..... ..... ..... ..... ..... ..... ..... #####",
    /* '`' */ ".#... ..#..",
    /* 'a' */ "..... ..... .###. ....# .#### #...# .####",
    /* 'b' */ "#.... #.... #.##. ##..# #...# #...# ####.",
    /* 'c' */ "..... ..... .###. #.... #.... #...# .###.",
    /* 'd' */ "....# ....# .##.# #..## #...# #...# .####",
    /* 'e' */ "..... ..... .###. #...# ##### #.... .###.",
    /* 'f' */ "..##. .#..# .#... ###.. .#... .#... .#...",
    /* 'g' */ "..... ..... .#### #...# #...# #...# .#### ....# .###.",
    /* 'h' */ "#.... #.... #.##. ##..# #...# #...# #...#",
    /* 'i' */ "..#.. ..... .##.. ..#.. ..#.. ..#.. .###.",
    /* 'j' */ "...#. ..... ..##. ...#. ...#. ...#. ...#. #..#. .##..",
    /* 'k' */ "#.... #.... #..#. #.#.. ##... #.#.. #..#.",
    /* 'l' */ ".##.. ..#.. ..#.. ..#.. ..#.. ..#.. .###.",
    /* 'm' */ "..... ..... ##.#. #.#.# #.#.# #.#.# #.#.#",
    /* 'n' */ "..... ..... #.##. ##..# #...# #...# #...#",
    /* 'o' */ "..... ..... .###. #...# #...# #...# .###.",
    /* 'p' */ "..... ..... ####. #...# #...# #...# ####. #.... #....",
    /* 'q' */ "..... ..... .#### #...# #...# #...# .#### ....# ....#",
    /* 'r' */ "..... ..... #.##. ##..# #.... #.... #....",
    /* 's' */ "..... ..... .###. #.... .###. ....# ####.",
    /* 't' */ ".#... .#... ###.. .#... .#... .#..# ..##.",
    /* 'u' */ "..... ..... #...# #...# #...# #..## .##.#",
    /* 'v' */ "..... ..... #...# #...# #...# .#.#. ..#..",
    /* 'w' */ "..... ..... #...# #...# #.#.# #.#.# .#.#.",
    /* 'x' */ "..... ..... #...# .#.#. ..#.. .#.#. #...#",
    /* 'y' */ "..... ..... #...# #...# #...# #...# .#### ....# .###.",
    /* 'z' */ "..... ..... ##### ...#. ..#.. .#... #####",
    /* '{' */ "...#. ..#.. ..#.. .#... ..#.. ..#.. ...#.",
    /* '|' */ "..#.. ..#.. ..#.. ..#.. ..#.. ..#.. ..#.. ..#..",
    /* '}' */ ".#... ..#.. ..#.. ...#. ..#.. ..#.. .#...",
    /* '~' */ "..... ..... .#... #.#.# ...#.",
};

enum { GLYPH_W = 5, GLYPH_H = 9, CELL_W = 6, CELL_H = 10 };

static const char *glyph(unsigned char ch)
{
    if (ch < 32 || ch > 126) ch = '?';
    return font[ch - 32];
}

/* Ink at (row, col) of glyph g: rows are 5 characters plus a separator. */
static int glyph_ink(const char *g, size_t len, int row, int col)
{
    size_t i = (size_t)row * (GLYPH_W + 1) + (size_t)col;
    return i < len && g[i] == '#';
}

int plot_text_width(const char *s, int scale)
{
    if (scale < 1) scale = 1;
    size_t n = strlen(s);
    return n ? (int)(n * CELL_W - 1) * scale : 0;
}

int plot_text_height(int scale) { return CELL_H * (scale < 1 ? 1 : scale); }

/* Draw glyph rows/cols through a mapping so horizontal and vertical text share one loop:
 * pixel (col, row) of character k lands at (x + ax*u + bx*v, y + ay*u + by*v) where u runs along
 * the text and v across it. */
static void draw_text(plot_canvas *c, int x, int y, const char *s, plot_rgb col, int scale, int vertical)
{
    if (scale < 1) scale = 1;
    for (int k = 0; s[k]; k++) {
        const char *g = glyph((unsigned char)s[k]);
        size_t len = strlen(g);
        for (int row = 0; row < GLYPH_H; row++)
            for (int cc = 0; cc < GLYPH_W; cc++) {
                if (!glyph_ink(g, len, row, cc)) continue;
                int u = (k * CELL_W + cc) * scale, v = row * scale;
                if (!vertical)
                    plot_fill_rect(c, x + u, y + v, scale, scale, col);
                else /* rotated 90 degrees counter-clockwise: along-text runs upwards */
                    plot_fill_rect(c, x + v, y - u - scale + 1, scale, scale, col);
            }
    }
}

void plot_text(plot_canvas *c, int x, int y, const char *s, plot_rgb col, int scale)
{
    draw_text(c, x, y, s, col, scale, 0);
}

/* (x, y) is the top-left of the rotated text's bounding box, as for plot_text: the text occupies
 * plot_text_height(scale) columns from x and plot_text_width rows from y, reading upwards. */
void plot_text_vertical(plot_canvas *c, int x, int y, const char *s, plot_rgb col, int scale)
{
    if (scale < 1) scale = 1;
    draw_text(c, x, y + plot_text_width(s, scale) - 1, s, col, scale, 1);
}

/* ---- colour maps ----
 * viridis and magma are rebuilt here from five published anchor colours each (the ends and the
 * quarter points), interpolated in the OKLab space with a monotone cubic (Fritsch-Carlson) in each
 * coordinate, so that lightness rises monotonically and evenly like the originals.  256 entries,
 * built once. */
static double srgb_to_lin(double v)
{
    return v <= 0.04045 ? v / 12.92 : pow((v + 0.055) / 1.055, 2.4);
}

static double lin_to_srgb(double v)
{
    if (v <= 0) return 0;
    if (v >= 1) return 1;
    return v <= 0.0031308 ? 12.92 * v : 1.055 * pow(v, 1 / 2.4) - 0.055;
}

static void rgb_to_oklab(const double rgb[3], double lab[3])
{
    double r = srgb_to_lin(rgb[0]), g = srgb_to_lin(rgb[1]), b = srgb_to_lin(rgb[2]);
    double l = cbrt(0.4122214708 * r + 0.5363325363 * g + 0.0514459929 * b);
    double m = cbrt(0.2119034982 * r + 0.6806995451 * g + 0.1073969566 * b);
    double s = cbrt(0.0883024619 * r + 0.2817188376 * g + 0.6299787005 * b);
    lab[0] = 0.2104542553 * l + 0.7936177850 * m - 0.0040720468 * s;
    lab[1] = 1.9779984951 * l - 2.4285922050 * m + 0.4505937099 * s;
    lab[2] = 0.0259040371 * l + 0.7827717662 * m - 0.8086757660 * s;
}

static void oklab_to_rgb(const double lab[3], double rgb[3])
{
    double l = lab[0] + 0.3963377774 * lab[1] + 0.2158037573 * lab[2];
    double m = lab[0] - 0.1055613458 * lab[1] - 0.0638541728 * lab[2];
    double s = lab[0] - 0.0894841775 * lab[1] - 1.2914855480 * lab[2];
    l = l * l * l; m = m * m * m; s = s * s * s;
    rgb[0] = lin_to_srgb(4.0767416621 * l - 3.3077115913 * m + 0.2309699292 * s);
    rgb[1] = lin_to_srgb(-1.2684380046 * l + 2.6097574011 * m - 0.3413193965 * s);
    rgb[2] = lin_to_srgb(-0.0041960863 * l - 0.7034186147 * m + 1.7076147010 * s);
}

static void build_map(const uint32_t anchors[5], plot_rgb out[256])
{
    double p[5][3], d[5][3];
    for (int k = 0; k < 5; k++) {
        double rgb[3] = { (anchors[k] >> 16 & 255) / 255.0, (anchors[k] >> 8 & 255) / 255.0,
                          (anchors[k] & 255) / 255.0 };
        rgb_to_oklab(rgb, p[k]);
    }
    /* Fritsch-Carlson slopes per coordinate on knots 0, 1/4, .., 1 (unit spacing in knot index). */
    for (int j = 0; j < 3; j++) {
        double del[4];
        for (int k = 0; k < 4; k++) del[k] = p[k + 1][j] - p[k][j];
        d[0][j] = del[0];
        d[4][j] = del[3];
        for (int k = 1; k < 4; k++)
            d[k][j] = del[k - 1] * del[k] <= 0 ? 0 : 2 / (1 / del[k - 1] + 1 / del[k]);
    }
    for (int i = 0; i < 256; i++) {
        double t = i / 255.0 * 4;
        int k = t >= 4 ? 3 : (int)t;
        double u = t - k, lab[3], rgb[3];
        double h00 = (1 + 2 * u) * (1 - u) * (1 - u), h10 = u * (1 - u) * (1 - u);
        double h01 = u * u * (3 - 2 * u), h11 = u * u * (u - 1);
        for (int j = 0; j < 3; j++)
            lab[j] = h00 * p[k][j] + h10 * d[k][j] + h01 * p[k + 1][j] + h11 * d[k + 1][j];
        oklab_to_rgb(lab, rgb);
        out[i].r = (uint8_t)lrint(rgb[0] * 255);
        out[i].g = (uint8_t)lrint(rgb[1] * 255);
        out[i].b = (uint8_t)lrint(rgb[2] * 255);
    }
}

static plot_rgb viridis_tab[256], magma_tab[256];
static pthread_once_t maps_once = PTHREAD_ONCE_INIT;

static void build_maps(void)
{
    static const uint32_t viridis_anchor[5] = { 0x440154, 0x3b528b, 0x21918c, 0x5ec962, 0xfde725 };
    static const uint32_t magma_anchor[5] = { 0x000004, 0x51127c, 0xb73779, 0xfc8961, 0xfcfdbf };
    build_map(viridis_anchor, viridis_tab);
    build_map(magma_anchor, magma_tab);
}

static int map_index(float t)
{
    if (!(t > 0)) return 0;   /* also NaN */
    if (t >= 1) return 255;
    return (int)(t * 255 + 0.5f);
}

plot_rgb plot_viridis(float t)
{
    pthread_once(&maps_once, build_maps);
    return viridis_tab[map_index(t)];
}

plot_rgb plot_magma(float t)
{
    pthread_once(&maps_once, build_maps);
    return magma_tab[map_index(t)];
}

/* Ten strong colours chosen to differ in hue and lightness, then ten lighter companions; beyond 20
 * the cycle repeats darkened, so colours stay distinguishable from their first use. */
plot_rgb plot_category(int i)
{
    static const uint32_t pal[20] = {
        0x2b6cb0, 0xe8731c, 0x2e9e44, 0xd62f2f, 0x8a55c4, 0x8c5a3c, 0xe06bb8, 0x6f6f6f, 0xb0b021, 0x17b3c8,
        0x8fb8e8, 0xf7b96e, 0x93d68a, 0xf59a9a, 0xc7a8e6, 0xc49c84, 0xf5b8dc, 0xbdbdbd, 0xdede8a, 0x9ee3ec,
    };
    if (i < 0) i = -i;
    uint32_t v = pal[i % 20];
    int round = (i / 20) % 3;   /* 0: as is, 1: 70 %, 2: 85 % brightness */
    float f = round == 0 ? 1.0f : round == 1 ? 0.7f : 0.85f;
    plot_rgb c = { (uint8_t)((v >> 16 & 255) * f), (uint8_t)((v >> 8 & 255) * f), (uint8_t)((v & 255) * f) };
    return c;
}

/* ---- heat map ---- */
int plot_heatmap_png(const float *m, int rows, int cols, float vmin, float vmax, int flip_y, int scale,
                     const char *path, struct util_err *err)
{
    if (rows <= 0 || cols <= 0 || scale < 1 || (long)rows * scale > 32768 || (long)cols * scale > 32768)
        return util_err_set(err, "%s: heat map %dx%d at scale %d is out of range", path, rows, cols, scale);
    plot_canvas c;
    plot_rgb black = { 0, 0, 0 };
    if (plot_canvas_create(&c, cols * scale, rows * scale, black, err) < 0) return -1;
    float span = vmax - vmin;
    plot_rgb nan_col = { 128, 128, 128 };   /* NaN cells stand out from every magma colour */
    for (int r = 0; r < rows; r++) {
        int y = flip_y ? rows - 1 - r : r;
        for (int k = 0; k < cols; k++) {
            float v = m[(size_t)r * (size_t)cols + (size_t)k];
            plot_rgb col;
            if (isnan(v)) col = nan_col;
            else col = plot_magma(span > 0 ? (v - vmin) / span : (v > vmin ? 1.0f : 0.0f));
            plot_fill_rect(&c, k * scale, y * scale, scale, scale, col);
        }
    }
    int rc = plot_save_png(&c, path, err);
    plot_canvas_free(&c);
    return rc;
}

/* ---- line chart ---- */
/* A "nice" tick step (1, 2 or 5 times a power of ten) giving about `want` intervals over span. */
static double nice_step(double span, int want)
{
    if (!(span > 0)) return 1;
    double raw = span / want, p = pow(10, floor(log10(raw))), f = raw / p;
    return (f < 1.5 ? 1 : f < 3.5 ? 2 : f < 7.5 ? 5 : 10) * p;
}

static void tick_label(char *buf, size_t cap, double v, double step)
{
    if (fabs(v) < step * 1e-6) v = 0;   /* avoid "-0" and 1e-17 */
    int dec = step >= 1 ? 0 : (int)ceil(-log10(step) - 1e-9);
    if (fabs(v) >= 1e6 || (v != 0 && fabs(v) < 1e-4)) snprintf(buf, cap, "%.3g", v);
    else snprintf(buf, cap, "%.*f", dec > 6 ? 6 : dec, v);
}

int plot_lines_png(const char *path, const char *title, const char *xlabel, int n_series,
                   const char *const *labels, const double *const *series, int n,
                   struct util_err *err)
{
    if (n_series < 1 || n_series > 8) return util_err_set(err, "%s: %d series (1..8 allowed)", path, n_series);
    if (n < 1) return util_err_set(err, "%s: no points to plot", path);
    const int W = 900, H = 540, S = 2;   /* text scale 2: 10x14-pixel capitals */
    const plot_rgb white = { 255, 255, 255 }, black = { 0, 0, 0 }, grid = { 225, 225, 225 };
    const plot_rgb dark = { 60, 60, 60 };

    double lo = INFINITY, hi = -INFINITY;
    for (int s = 0; s < n_series; s++)
        for (int i = 0; i < n; i++) {
            double v = series[s][i];
            if (!isfinite(v)) continue;
            if (v < lo) lo = v;
            if (v > hi) hi = v;
        }
    if (!(lo <= hi)) { lo = 0; hi = 1; }
    if (hi - lo < 1e-12 * (fabs(hi) + 1)) { lo -= 0.5; hi += 0.5; }
    double ystep = nice_step(hi - lo, 6);
    double ylo = floor(lo / ystep) * ystep, yhi = ceil(hi / ystep) * ystep;
    double xlo = 1, xhi = n > 1 ? n : 2;
    double xstep = nice_step(xhi - xlo, 8);
    if (xstep < 1) xstep = 1;

    /* Layout: y tick labels on the left, legend column on the right, title above, x label below. */
    char buf[64];
    int ylab_w = 0;
    for (double v = ylo; v <= yhi + ystep * 1e-6; v += ystep) {
        tick_label(buf, sizeof buf, v, ystep);
        int w = plot_text_width(buf, S);
        if (w > ylab_w) ylab_w = w;
    }
    int leg_w = 0;
    for (int s = 0; s < n_series; s++) {
        int w = plot_text_width(labels && labels[s] ? labels[s] : "", S);
        if (w > leg_w) leg_w = w;
    }
    leg_w += 50;
    int th = plot_text_height(S);
    int left = ylab_w + 24, right = W - leg_w - 30, top = title ? 20 + th + 16 : 24;
    int bottom = H - (xlabel ? 2 * th + 30 : th + 24);
    if (right - left < 100) right = left + 100;
    int pw = right - left, ph = bottom - top;

    plot_canvas c;
    int cw = right + leg_w + 30 > W ? right + leg_w + 30 : W;
    if (plot_canvas_create(&c, cw, H, white, err) < 0) return -1;
    /* grid and y ticks */
    for (double v = ylo; v <= yhi + ystep * 1e-6; v += ystep) {
        int y = bottom - (int)lround((v - ylo) / (yhi - ylo) * ph);
        plot_fill_rect(&c, left, y, pw, 1, grid);
        plot_fill_rect(&c, left - 5, y, 5, 1, black);
        tick_label(buf, sizeof buf, v, ystep);
        plot_text(&c, left - 8 - plot_text_width(buf, S), y - 7, buf, dark, S);
    }
    for (double v = ceil(xlo / xstep) * xstep; v <= xhi + 1e-9; v += xstep) {
        int x = left + (int)lround((v - xlo) / (xhi - xlo) * pw);
        plot_fill_rect(&c, x, top, 1, ph, grid);
        plot_fill_rect(&c, x, bottom, 1, 5, black);
        tick_label(buf, sizeof buf, v, 1);
        plot_text(&c, x - plot_text_width(buf, S) / 2, bottom + 9, buf, dark, S);
    }
    plot_rect(&c, left, top, pw + 1, ph + 1, black);
    if (title) plot_text(&c, left + (pw - plot_text_width(title, S)) / 2, 20, title, black, S);
    if (xlabel)
        plot_text(&c, left + (pw - plot_text_width(xlabel, S)) / 2, bottom + 14 + th, xlabel, black, S);

    for (int s = 0; s < n_series; s++) {
        plot_rgb col = plot_category(s);
        int px = 0, py = 0, have = 0;
        for (int i = 0; i < n; i++) {
            double v = series[s][i];
            if (!isfinite(v)) { have = 0; continue; }   /* a gap, not a line to zero */
            int x = left + (int)lround((i + 1 - xlo) / (xhi - xlo) * pw);
            int y = bottom - (int)lround((v - ylo) / (yhi - ylo) * ph);
            if (have) {   /* about two pixels thick whatever the slope */
                plot_line(&c, px, py, x, y, col);
                plot_line(&c, px, py + 1, x, y + 1, col);
                plot_line(&c, px + 1, py, x + 1, y, col);
            }
            if (n <= 60) plot_disc(&c, (float)x + 0.5f, (float)y + 0.5f, 3.0f, col, 1.0f);
            px = x; py = y; have = 1;
        }
    }
    /* legend */
    int lx = right + 20, ly = top;
    plot_rect(&c, lx - 8, ly - 8, leg_w + 8, n_series * (th + 8) + 12, dark);
    for (int s = 0; s < n_series; s++) {
        int y = ly + s * (th + 8);
        plot_fill_rect(&c, lx, y + th / 2 - 2, 28, 4, plot_category(s));
        plot_text(&c, lx + 36, y, labels && labels[s] ? labels[s] : "", black, S);
    }
    int rc = plot_save_png(&c, path, err);
    plot_canvas_free(&c);
    return rc;
}
