/* plot.h: the project's small drawing code — an RGB canvas, points, lines, rectangles, text in a
 * built-in bitmap font, colour maps — written to PNG with libpng.  Used for spectrograms, t-SNE maps,
 * confusion matrices and training curves.  No other plotting library is involved. */
#ifndef EARSIGHT_PLOT_H
#define EARSIGHT_PLOT_H

#include <stdint.h>

#include "util.h"

typedef struct {
    int w, h;
    uint8_t *rgb;   /* h rows of w pixels, 3 bytes each */
} plot_canvas;

typedef struct {
    uint8_t r, g, b;
} plot_rgb;

/* Allocate a w x h canvas filled with bg.  0 or -1. */
int plot_canvas_create(plot_canvas *c, int w, int h, plot_rgb bg, struct util_err *err);
void plot_canvas_free(plot_canvas *c);
/* Write the canvas as an 8-bit RGB PNG, atomically (temporary name, then rename).  0 or -1. */
int plot_save_png(const plot_canvas *c, const char *path, struct util_err *err);

/* Drawing; everything clips to the canvas. */
void plot_pixel(plot_canvas *c, int x, int y, plot_rgb col);
void plot_blend_pixel(plot_canvas *c, int x, int y, plot_rgb col, float alpha);
void plot_line(plot_canvas *c, int x0, int y0, int x1, int y1, plot_rgb col);
void plot_fill_rect(plot_canvas *c, int x, int y, int w, int h, plot_rgb col);
void plot_rect(plot_canvas *c, int x, int y, int w, int h, plot_rgb col);
void plot_disc(plot_canvas *c, float cx, float cy, float radius, plot_rgb col, float alpha);
/* Text in the built-in font (printable ASCII; others drawn as '?'), top-left at (x, y), scale >= 1. */
void plot_text(plot_canvas *c, int x, int y, const char *s, plot_rgb col, int scale);
int plot_text_width(const char *s, int scale);
int plot_text_height(int scale);
/* Text rotated 90 degrees counter-clockwise (reads bottom to top), for y-axis labels. */
void plot_text_vertical(plot_canvas *c, int x, int y, const char *s, plot_rgb col, int scale);

/* Colour maps: t in [0, 1] (clamped) to a perceptually uniform map (viridis, magma). */
plot_rgb plot_viridis(float t);
plot_rgb plot_magma(float t);
/* Categorical colour i (distinct colours for the first 20, then repeating with variations). */
plot_rgb plot_category(int i);

/* Render a (rows x cols) matrix as an image, row 0 at the bottom when flip_y (spectrograms: low
 * frequencies at the bottom), values mapped linearly from [vmin, vmax] with the magma map, each cell
 * scale x scale pixels.  0 or -1. */
int plot_heatmap_png(const float *m, int rows, int cols, float vmin, float vmax, int flip_y, int scale,
                     const char *path, struct util_err *err);

/* Line chart of up to 8 series sharing an x axis (e.g. loss and accuracy per epoch): series[k] has
 * n values; labels name the series in a legend; title may be NULL.  0 or -1. */
int plot_lines_png(const char *path, const char *title, const char *xlabel, int n_series,
                   const char *const *labels, const double *const *series, int n,
                   struct util_err *err);

#endif
