/* png_make.h: PNG files written into memory with libpng, pixels known exactly (sample()), for
 * img_test and the image fuzz target's seeds.  Header-only: each includer gets its own copy. */
#ifndef EARSIGHT_PNG_MAKE_H
#define EARSIGHT_PNG_MAKE_H
#include <png.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct membuf {
    uint8_t *p;
    size_t n, cap;
};
__attribute__((unused)) static void mem_write(png_structp png, png_bytep data, png_size_t len)
{
    struct membuf *m = png_get_io_ptr(png);
    if (m->n + len > m->cap) {
        m->cap = (m->n + len) * 2;
        m->p = realloc(m->p, m->cap);
    }
    memcpy(m->p + m->n, data, len);
    m->n += len;
}
__attribute__((unused)) static void mem_flush(png_structp png) { (void)png; }

/* Sample c of pixel (x, y) for a file of `depth` bits: spread over the whole range. */
__attribute__((unused)) static unsigned sample(int x, int y, int c, int depth)
{
    if (depth == 16) return (unsigned)(x * 9973 + y * 30011 + c * 4099 + 17) & 0xffffu;
    return (unsigned)(x * 37 + y * 101 + c * 59 + 7) & ((1u << depth) - 1);
}

/* Write a w x h PNG of colour type ct and depth bd; with_trns adds a tRNS chunk (palette/gray/RGB). */
__attribute__((unused)) static struct membuf make_png(int w, int h, int ct, int bd, int interlace, int with_trns, png_color *pal, int n_pal)
{
    struct membuf m = {0};
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png_create_info_struct(png);
    if (setjmp(png_jmpbuf(png))) { fprintf(stderr, "png write failed\n"); exit(1); }
    png_set_write_fn(png, &m, mem_write, mem_flush);
    png_set_IHDR(png, info, w, h, bd, ct, interlace, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    if (ct == PNG_COLOR_TYPE_PALETTE) {
        png_set_PLTE(png, info, pal, n_pal);
        if (with_trns) {
            png_byte tr[256];
            for (int i = 0; i < n_pal; i++) tr[i] = (png_byte)(255 - i);
            png_set_tRNS(png, info, tr, n_pal, NULL);
        }
    } else if (with_trns && ct == PNG_COLOR_TYPE_GRAY) {
        png_color_16 t = {0, 0, 0, 0, (png_uint_16)sample(0, 0, 0, bd)};
        png_set_tRNS(png, info, NULL, 0, &t);
    }
    png_write_info(png, info);
    if (bd < 8) png_set_packing(png);  /* rows hold one byte per sample */
    int ch = png_get_channels(png, info);
    int bps = bd == 16 ? 2 : 1;
    uint8_t *img = malloc((size_t)w * h * ch * bps);
    png_bytep *rows = malloc(h * sizeof *rows);
    for (int y = 0; y < h; y++) {
        rows[y] = img + (size_t)y * w * ch * bps;
        for (int x = 0; x < w; x++)
            for (int c = 0; c < ch; c++) {
                unsigned v = ct == PNG_COLOR_TYPE_PALETTE ? sample(x, y, 0, bd) % n_pal : sample(x, y, c, bd);
                uint8_t *p = rows[y] + ((size_t)x * ch + c) * bps;
                if (bps == 2) { p[0] = (uint8_t)(v >> 8); p[1] = (uint8_t)v; }
                else p[0] = (uint8_t)v;
            }
    }
    png_write_image(png, rows);
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    free(rows);
    free(img);
    return m;
}

#endif
