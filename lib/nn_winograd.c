/* nn_winograd.c: Winograd F(2x2,3x3) and F(4x4,3x3) for stride-1, pad-1 3x3 convolutions in fp32
 * (Lavin & Gray 2016).  An m x m output tile of one channel plane comes from the (m+2) x (m+2) input
 * patch d around it as Y = A^T [ (G g G^T) .* (B^T d B) ] A.  Per call:
 *   U[xi] (c_out, c_in) = G g G^T        kernel transform, at each of the a2 = (m+2)^2 positions xi
 *   V[xi] (c_in, tiles) = B^T d B        input transform of every tile of a chunk of images
 *   M[xi] (c_out, tiles) = U[xi] V[xi]   a2 independent GEMMs (one thread each, in a fixed order)
 *   y = A^T M A                          output transform, clipped to the output (partial edge tiles)
 * The weight gradient is the transpose of that: dU[xi] = (A dy A^T)[xi] V[xi]^T summed over the tiles
 * (GEMMs with the tiles as inner dimension), then dw += G^T dU G.  The stride-1 input gradient is a
 * forward convolution with the flipped, transposed kernel (nn_conv_backward) and goes through the
 * forward path.  Every value is computed by one thread in a fixed order: results do not depend on the
 * thread count.  Transforms run along rows so that they vectorise (rows of tiles, strided lanes). */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "nn.h"
#include "nn_internal.h"

#define SEG 64   /* tiles of one tile row transformed together (bounds the stack buffers) */
#define AMAX 6   /* largest patch side, m + 2 */

/* ---------------------------------------------------------------- run-time choice ---- */

static pthread_once_t algo_once = PTHREAD_ONCE_INIT;
static int algo = NN_CONV_AUTO, tile_force;

static void algo_init(void)
{
    const char *s = getenv("EARSIGHT_CONV");
    if (s && !strcmp(s, "im2col")) algo = NN_CONV_IM2COL;
    else if (s && !strcmp(s, "winograd")) algo = NN_CONV_WINOGRAD;
    s = getenv("EARSIGHT_WINO_TILE");
    if (s && (!strcmp(s, "2") || !strcmp(s, "4"))) tile_force = s[0] - '0';
}

void nn_set_conv_algo(int a)
{
    pthread_once(&algo_once, algo_init);
    algo = a == NN_CONV_IM2COL || a == NN_CONV_WINOGRAD ? a : NN_CONV_AUTO;
}

int nn_conv_algo(void)
{
    pthread_once(&algo_once, algo_init);
    return algo;
}

void nn_wino_set_tile(int m)
{
    pthread_once(&algo_once, algo_init);
    tile_force = m == 2 || m == 4 ? m : 0;
}

static int shape_ok(const nn_conv *l) { return l->k == 3 && l->stride == 1 && l->pad == 1; }

static int tiles(int s, int m) { return (s + m - 1) / m; }

/* NN_CONV_AUTO.  Each call transforms the kernel (a2 c_in c_out values: a fixed cost of roughly the
 * GEMM work of ~90 tiles) and then costs a2 c_in c_out per tile, so Winograd pays off with enough tiles
 * in the batch, and F(4x4) (36 positions per 16 outputs) beats F(2x2) (16 per 4) with more still.
 * Measured (ms per call, 2 threads, BLIS skx, nn_bench conv and single shapes; machine shared with other
 * load), forward F4 / F2 / im2col and weight gradient F4 / F2 / im2col:
 *   c 64  32x63 n32 (T4 4096): 14.7 / 18.3 / 22.1    16.4 / 25.9 / 24.8
 *   c 128 16x32 n32 (T4 1024):  9.7 / 13.0 / 16.4    11.1 / 15.9 / 18.4
 *   c 256  8x16 n32 (T4  256):  8.9 / 11.0 / 15.4     8.5 / 12.5 / 17.2
 *   c 256  8x16 n8  (T4   64):  2.6 /  2.9 /  3.7     2.3 /  3.0 /  4.0
 *   c 256  8x16 n4  (T4   32):  2.0 /  1.7 /  2.1     1.4 /  1.7 /  2.0
 *   c 512  4x8  n32 (T4   64): 12.5 / 11.4 / 16.8     8.6 / 11.2 / 15.7
 *   c 512  4x8  n16 (T4   32):  8.1 /  6.2 /  8.9     5.0 /  5.6 /  7.9
 *   c 512  4x8  n8  (T4   16):  7.1 /  4.1 /  4.7     3.3 /  3.2 /  3.9
 *   c 512  4x8  n4  (T4    8):  7.4 /  3.2 /  3.2     2.9 /  2.3 /  2.3
 *   c 512  4x8  n1  (T4    2):  7.6 /  3.3 /  2.0     2.7 /  1.6 /  0.7
 *   c 64  32x63 n1  (T4  128):  0.54 / 0.61 / 0.71    0.56 / 0.85 / 0.70
 *   c 32  32x32 n32:            3.1 /  3.6 /  2.9     4.1 /  5.9 /  4.5
 *   c 16  64x64 n32:            5.3 /  6.8 /  4.6     8.3 / 14.2 /  7.7
 * Rule: im2col below 64 channels; forward (and input gradient) F(4x4) from 128 tiles of 4x4 in the batch
 * (T4 = n ceil(h/4) ceil(w/4); F(4x4) also wins at 64 tiles when c <= 256), F(2x2) from 64 tiles of 2x2;
 * weight gradient F(4x4) from 32 tiles of 4x4, F(2x2) from 64 of 2x2; else im2col. */
static int auto_tile(const nn_conv *l, int h, int w, int n, int dw)
{
    if (l->c_in < 64 || l->c_out < 64) return 0;
    const int64_t t4 = (int64_t)n * tiles(h, 4) * tiles(w, 4), t2 = (int64_t)n * tiles(h, 2) * tiles(w, 2);
    if (t4 >= (dw ? 32 : 128) || (t4 >= 64 && l->c_in <= 256 && l->c_out <= 256)) return 4;
    return t2 >= 64 ? 2 : 0;
}

int nn_wino_tile(const nn_conv *l, int h, int w, int n, int dw)
{
    pthread_once(&algo_once, algo_init);
    if (!shape_ok(l) || nn_precision() != NN_FP32 || algo == NN_CONV_IM2COL) return 0;
    if (tile_force) return tile_force;
    const int m = auto_tile(l, h, w, n, dw);
    return m || algo == NN_CONV_AUTO ? m : 2;
}

/* ---------------------------------------------------------------- transforms ---- */

/* The 1-D transforms on lanes x < n.  LD(i) is input i of lane x, ST(k, v) stores output k.  Row passes
 * combine whole rows (separate pointers, unit stride); column passes read (or write) the interleaved
 * values of one row through a single base pointer with a constant stride, which the vectoriser turns
 * into contiguous loads and permutes instead of gathers. */
#define BT2(LD, ST)                                                                             \
    _Pragma("omp simd") for (int x = 0; x < n; x++) {                                           \
        const float d0 = LD(0), d1 = LD(1), d2 = LD(2), d3 = LD(3);                             \
        ST(0, d0 - d2), ST(1, d1 + d2), ST(2, d2 - d1), ST(3, d1 - d3);                         \
    }
#define BT4(LD, ST)                                                                             \
    _Pragma("omp simd") for (int x = 0; x < n; x++) {                                           \
        const float d0 = LD(0), d1 = LD(1), d2 = LD(2), d3 = LD(3), d4 = LD(4), d5 = LD(5);     \
        const float a = d4 - 4.0f * d2, b = d3 - 4.0f * d1, c = d4 - d2, e = 2.0f * (d3 - d1);  \
        ST(0, 4.0f * d0 - 5.0f * d2 + d4), ST(1, a + b), ST(2, a - b);                          \
        ST(3, c + e), ST(4, c - e), ST(5, 4.0f * d1 - 5.0f * d3 + d5);                          \
    }
/* A = (A^T)^T, a x m: the dy side of the weight gradient */
#define AA2(LD, ST)                                                                             \
    _Pragma("omp simd") for (int x = 0; x < n; x++) {                                           \
        const float d0 = LD(0), d1 = LD(1);                                                     \
        ST(0, d0), ST(1, d0 + d1), ST(2, d0 - d1), ST(3, -d1);                                  \
    }
#define AA4(LD, ST)                                                                             \
    _Pragma("omp simd") for (int x = 0; x < n; x++) {                                           \
        const float d0 = LD(0), d1 = LD(1), d2 = LD(2), d3 = LD(3);                             \
        const float p = d0 + d2, q = d1 + d3, r = d0 + 4.0f * d2, t = 2.0f * d1 + 8.0f * d3;    \
        ST(0, d0), ST(1, p + q), ST(2, p - q), ST(3, r + t), ST(4, r - t), ST(5, d3);           \
    }
/* A^T, m x a: the output side */
#define AT2(LD, ST)                                                                             \
    _Pragma("omp simd") for (int x = 0; x < n; x++) {                                           \
        const float d0 = LD(0), d1 = LD(1), d2 = LD(2), d3 = LD(3);                             \
        ST(0, d0 + d1 + d2), ST(1, d1 - d2 - d3);                                               \
    }
#define AT4(LD, ST)                                                                             \
    _Pragma("omp simd") for (int x = 0; x < n; x++) {                                           \
        const float d0 = LD(0), d1 = LD(1), d2 = LD(2), d3 = LD(3), d4 = LD(4), d5 = LD(5);     \
        const float p = d1 + d2, q = d1 - d2, r = d3 + d4, t = d3 - d4;                         \
        ST(0, d0 + p + r), ST(1, q + 2.0f * t), ST(2, p + 4.0f * r), ST(3, q + 8.0f * t + d5);  \
    }
#define LROW(i) d[i][x]
#define SROW(k, v) o[k][x] = (v)
#define LCOL2(i) b[x * 2 + (i)]
#define LCOL4(i) b[x * 4 + (i)]
#define SCOL2(k, v) z[x * 2 + (k)] = (v)
#define SCOL4(k, v) z[x * 4 + (k)] = (v)

/* rows: o[k][x] = sum_i T[k][i] d[i][x] */
NN_SIMD static void bt_rows(int m, float *const *o, const float *const *d, int n)
{
    if (m == 2) BT2(LROW, SROW)
    else BT4(LROW, SROW)
}
NN_SIMD static void a_rows(int m, float *const *o, const float *const *d, int n)
{
    if (m == 2) AA2(LROW, SROW)
    else AA4(LROW, SROW)
}
NN_SIMD static void at_rows(int m, float *const *o, const float *const *d, int n)
{
    if (m == 2) AT2(LROW, SROW)
    else AT4(LROW, SROW)
}
/* columns: o[k][x] = sum_j T[k][j] b[x*m + j] */
NN_SIMD static void bt_cols(int m, float *const *o, const float *b, int n)
{
    if (m == 2) BT2(LCOL2, SROW)
    else BT4(LCOL4, SROW)
}
NN_SIMD static void a_cols(int m, float *const *o, const float *b, int n)
{
    if (m == 2) AA2(LCOL2, SROW)
    else AA4(LCOL4, SROW)
}
/* z[x*m + j] = sum_l A^T[j][l] d[l][x] */
NN_SIMD static void at_cols(int m, float *z, const float *const *d, int n)
{
    if (m == 2) AT2(LROW, SCOL2)
    else AT4(LROW, SCOL4)
}

/* V for one (channel, image) plane xp (h x w): element (xi, tile t = ty*tw + tx) at v[xi*ldv + t]. */
static void in_plane(int m, float *v, int64_t ldv, const float *xp, int h, int w, int th, int tw)
{
    const int a = m + 2;
    float buf[AMAX][SEG * 4 + 2], r[AMAX][SEG * 4 + 2];
    for (int ty = 0; ty < th; ty++)
        for (int tx0 = 0; tx0 < tw; tx0 += SEG) {
            const int nt = tw - tx0 < SEG ? tw - tx0 : SEG, wd = nt * m + 2, c0 = tx0 * m - 1;
            /* buf[i][j]: input (ty*m - 1 + i, c0 + j), 0 outside */
            int lo = -c0, hi = w - c0;
            if (lo < 0) lo = 0;
            if (hi > wd) hi = wd;
            for (int i = 0; i < a; i++) {
                const int ih = ty * m - 1 + i;
                if (ih < 0 || ih >= h) {
                    memset(buf[i], 0, sizeof(float) * wd);
                    continue;
                }
                for (int j = 0; j < lo; j++) buf[i][j] = 0;
                memcpy(buf[i] + lo, xp + (int64_t)ih * w + c0 + lo, sizeof(float) * (hi - lo));
                for (int j = hi; j < wd; j++) buf[i][j] = 0;
            }
            const float *d[AMAX];
            float *o[AMAX];
            for (int i = 0; i < a; i++) d[i] = buf[i], o[i] = r[i];
            bt_rows(m, o, d, wd);
            for (int k = 0; k < a; k++) {
                for (int j = 0; j < a; j++) o[j] = v + (int64_t)(k * a + j) * ldv + ty * tw + tx0;
                bt_cols(m, o, r[k], nt);
            }
        }
}

/* A dy A^T for one (channel, image) plane of dy (ho x wo), stored as in_plane stores V. */
static void dy_plane(int m, float *v, int64_t ldv, const float *gp, int ho, int wo, int th, int tw)
{
    const int a = m + 2;
    float buf[4][SEG * 4], r[AMAX][SEG * 4];
    for (int ty = 0; ty < th; ty++)
        for (int tx0 = 0; tx0 < tw; tx0 += SEG) {
            const int nt = tw - tx0 < SEG ? tw - tx0 : SEG, wd = nt * m, c0 = tx0 * m;
            const int hi = wo - c0 < wd ? wo - c0 : wd;
            for (int i = 0; i < m; i++) {
                const int oh = ty * m + i;
                if (oh >= ho) {
                    memset(buf[i], 0, sizeof(float) * wd);
                    continue;
                }
                memcpy(buf[i], gp + (int64_t)oh * wo + c0, sizeof(float) * hi);
                for (int j = hi; j < wd; j++) buf[i][j] = 0;
            }
            const float *d[AMAX];
            float *o[AMAX];
            for (int i = 0; i < m; i++) d[i] = buf[i];
            for (int k = 0; k < a; k++) o[k] = r[k];
            a_rows(m, o, d, wd);
            for (int k = 0; k < a; k++) {
                for (int j = 0; j < a; j++) o[j] = v + (int64_t)(k * a + j) * ldv + ty * tw + tx0;
                a_cols(m, o, r[k], nt);
            }
        }
}

/* y plane (ho x wo) = A^T M A (beta 0) or += (beta 1), M as in_plane stores V. */
static void out_plane(int m, float *yp, float beta, const float *mm, int64_t ldm, int ho, int wo, int th, int tw)
{
    const int a = m + 2;
    float z[AMAX][SEG * 4], yr[4][SEG * 4];
    for (int ty = 0; ty < th; ty++)
        for (int tx0 = 0; tx0 < tw; tx0 += SEG) {
            const int nt = tw - tx0 < SEG ? tw - tx0 : SEG, wd = nt * m, c0 = tx0 * m;
            const float *d[AMAX];
            float *o[AMAX];
            /* z[k][tx*m + j] = sum_l A^T[j][l] M[k*a + l][tx] */
            for (int k = 0; k < a; k++) {
                for (int l = 0; l < a; l++) d[l] = mm + (int64_t)(k * a + l) * ldm + ty * tw + tx0;
                at_cols(m, z[k], d, nt);
            }
            for (int k = 0; k < a; k++) d[k] = z[k];
            for (int i = 0; i < m; i++) o[i] = yr[i];
            at_rows(m, o, d, wd);
            const int cl = wo - c0 < wd ? wo - c0 : wd;
            for (int i = 0; i < m && ty * m + i < ho; i++) {
                float *dst = yp + (int64_t)(ty * m + i) * wo + c0;
                if (beta == 0.0f) memcpy(dst, yr[i], sizeof(float) * cl);
                else
                    for (int j = 0; j < cl; j++) dst[j] += yr[i][j];
            }
        }
}

/* G (a x 3) applied to 3 values: F(2x2) G = [1 0 0; .5 .5 .5; .5 -.5 .5; 0 0 1], F(4x4) G = [1/4 0 0;
 * -1/6 -1/6 -1/6; -1/6 1/6 -1/6; 1/24 1/12 1/6; 1/24 -1/12 1/6; 0 0 1]; and G^T (3 x a) applied to a values. */
#define G2(g0, g1, g2, ST) ST(0, g0), ST(1, 0.5f * (g0 + g1 + g2)), ST(2, 0.5f * (g0 - g1 + g2)), ST(3, g2)
#define G4(g0, g1, g2, ST)                                                                      \
    ST(0, 0.25f * g0), ST(1, -S6 * (g0 + g1 + g2)), ST(2, -S6 * (g0 - g1 + g2)),                \
        ST(3, S24 * (g0 + 2.0f * g1 + 4.0f * g2)), ST(4, S24 * (g0 - 2.0f * g1 + 4.0f * g2)), ST(5, g2)
#define GT2(e, ST) ST(0, e(0) + 0.5f * (e(1) + e(2))), ST(1, 0.5f * (e(1) - e(2))), ST(2, 0.5f * (e(1) + e(2)) + e(3))
#define GT4(e, ST)                                                                              \
    ST(0, 0.25f * e(0) - S6 * (e(1) + e(2)) + S24 * (e(3) + e(4))),                             \
        ST(1, S6 * (e(2) - e(1)) + S12 * (e(3) - e(4))), ST(2, S6 * (e(3) + e(4) - e(1) - e(2)) + e(5))
static const float S6 = 1.0f / 6.0f, S12 = 1.0f / 12.0f, S24 = 1.0f / 24.0f;

#define KB 64   /* input channels per block of the kernel transforms */

/* U[xi][co][ci] = (G g G^T)[xi] for one output channel's kernels w (c_in, 3, 3), ci0 .. ci0+nc-1:
 * g transposed first so that the lanes (input channels) are contiguous. */
NN_SIMD static void kernel_blk(int m, float *u, int64_t ldu, const float *w, int nc)
{
    const int a = m + 2;
    float g[9][KB], t[AMAX][3][KB];
    for (int ci = 0; ci < nc; ci++)
        for (int r = 0; r < 9; r++) g[r][ci] = w[ci * 9 + r];
    for (int c = 0; c < 3; c++) {   /* t = G g: a x 3 */
#define ST(k, v) t[k][c][x] = (v)
        if (m == 2) {
#pragma omp simd
            for (int x = 0; x < nc; x++) G2(g[c][x], g[3 + c][x], g[6 + c][x], ST);
        } else {
#pragma omp simd
            for (int x = 0; x < nc; x++) G4(g[c][x], g[3 + c][x], g[6 + c][x], ST);
        }
#undef ST
    }
    for (int k = 0; k < a; k++) {   /* U = t G^T */
        float *uk = u + (int64_t)k * a * ldu;
#define ST(l, v) uk[(l) * ldu + x] = (v)
        if (m == 2) {
#pragma omp simd
            for (int x = 0; x < nc; x++) G2(t[k][0][x], t[k][1][x], t[k][2][x], ST);
        } else {
#pragma omp simd
            for (int x = 0; x < nc; x++) G4(t[k][0][x], t[k][1][x], t[k][2][x], ST);
        }
#undef ST
    }
}

/* dw[co][ci] += G^T dU[.][co][ci] G (3 x 3 from a x a), ci0 .. ci0+nc-1 of one output channel. */
NN_SIMD static void kernel_grad_blk(int m, float *dw, const float *du, int64_t ldu, int nc)
{
    const int a = m + 2;
    float t[3][AMAX][KB], g[9][KB];
    for (int l = 0; l < a; l++) {   /* t = G^T dU: 3 x a */
#define E(k) du[(int64_t)((k) * a + l) * ldu + x]
#define ST(r, v) t[r][l][x] = (v)
        if (m == 2) {
#pragma omp simd
            for (int x = 0; x < nc; x++) GT2(E, ST);
        } else {
#pragma omp simd
            for (int x = 0; x < nc; x++) GT4(E, ST);
        }
#undef E
#undef ST
    }
    for (int r = 0; r < 3; r++) {   /* g = t G */
#define E(l) t[r][l][x]
#define ST(s, v) g[r * 3 + (s)][x] = (v)
        if (m == 2) {
#pragma omp simd
            for (int x = 0; x < nc; x++) GT2(E, ST);
        } else {
#pragma omp simd
            for (int x = 0; x < nc; x++) GT4(E, ST);
        }
#undef E
#undef ST
    }
    for (int ci = 0; ci < nc; ci++)
        for (int r = 0; r < 9; r++) dw[ci * 9 + r] += g[r][ci];
}

/* ---------------------------------------------------------------- drivers ---- */

size_t nn_wino_ws(const nn_conv *l, int h, int w, int n)
{
    if (!shape_ok(l)) return 0;
    size_t best = 0;
    for (int m = 2; m <= 4; m += 2) {
        const size_t a2 = (size_t)(m + 2) * (m + 2), tpi = (size_t)tiles(h, m) * tiles(w, m);
        /* transposed kernel (input gradient), U or dU, V and M for n images */
        const size_t need = (((size_t)l->c_out * l->c_in * 9 + 15) & ~(size_t)15) + a2 * l->c_out * l->c_in +
                            a2 * (l->c_in + l->c_out) * tpi * n;
        if (need > best) best = need;
    }
    return best;
}

/* Images per chunk that fit in cap after fixed floats; 0 if not even one. */
static int wino_chunk(size_t fixed, size_t per, size_t cap, int n)
{
    if (cap < fixed + per) return 0;
    const size_t c = (cap - fixed) / per;
    return c >= (size_t)n ? n : (int)c;
}

/* What both drivers derive from the layer, the input size and the workspace: tile size m (0: not
 * Winograd), a2 = (m + 2)^2 tile positions, th x tw tiles per image, the kernel block U/dU (usz floats,
 * (co_n x ci_n) per position) at the start of ws, and the images per chunk that leave room for V and
 * the products after it (0: the workspace is too small). */
typedef struct {
    int m, a2, th, tw, chunk;
    int64_t tpi, hw, ldy, ldu;
    size_t usz;
} wino_plan;

static int wino_plan_make(wino_plan *p, const nn_conv *l, int h, int w, int n, int dw, size_t cap)
{
    if (!(p->m = nn_wino_tile(l, h, w, n, dw))) return 0;
    p->a2 = (p->m + 2) * (p->m + 2), p->th = tiles(h, p->m), p->tw = tiles(w, p->m);
    p->tpi = (int64_t)p->th * p->tw, p->hw = (int64_t)h * w, p->ldy = (int64_t)n * p->hw;
    p->ldu = (int64_t)l->c_out * l->c_in;
    p->usz = ((size_t)p->a2 * p->ldu + 15) & ~(size_t)15;
    p->chunk = wino_chunk(p->usz, (size_t)p->a2 * (l->c_in + l->c_out) * p->tpi, cap, n);
    return p->chunk > 0;
}

/* The a2 GEMMs of one chunk: C[xi] = A[xi] op(B[xi]) (+ beta C[xi]), spread over threads by position. */
static void gemms(int a2, int tb, int mm, int nn, int kk, const float *A, int64_t sa, const float *B, int64_t sb,
                  float beta, float *C, int64_t scm)
{
    const int64_t lda = kk, ldb = tb ? kk : nn, ldc = nn;
#pragma omp parallel for schedule(static) if ((int64_t)mm * nn * kk * a2 > NN_PAR_MIN)
    for (int xi = 0; xi < a2; xi++)
        nn_sgemm1(0, tb, mm, nn, kk, 1.0f, A + xi * sa, lda, B + xi * sb, ldb, beta, C + xi * scm, ldc);
}

static void input_transform(int m, float *v, int64_t ldv, const float *x, int64_t sc, int64_t sn, int c, int n0,
                            int cn, int h, int w, int th, int tw)
{
    const int64_t tpi = (int64_t)th * tw, planes = (int64_t)c * cn;
#pragma omp parallel for schedule(static) if (planes * h * w > NN_PAR_MIN)
    for (int64_t p = 0; p < planes; p++) {
        const int ci = (int)(p / cn), ni = (int)(p % cn);
        in_plane(m, v + (int64_t)ci * cn * tpi + ni * tpi, ldv,
                 x + ci * sc + (int64_t)(n0 + ni) * sn, h, w, th, tw);
    }
}

int nn_wino_forward(const nn_conv *l, float *y, float beta, const float *x, int64_t sc, int64_t sn, int n, int h,
                    int w, float *ws, size_t cap)
{
    wino_plan p;
    if (!wino_plan_make(&p, l, h, w, n, 0, cap)) return 0;
    const int m = p.m, a2 = p.a2, th = p.th, tw = p.tw, chunk = p.chunk, ci_n = l->c_in, co_n = l->c_out;
    const int64_t tpi = p.tpi, hw = p.hw, ldy = p.ldy, ldu = p.ldu;
    const size_t usz = p.usz;
    float *U = ws;
#pragma omp parallel for schedule(static) if (ldu * a2 > NN_PAR_MIN)
    for (int co = 0; co < co_n; co++)
        for (int c0 = 0; c0 < ci_n; c0 += KB)
            kernel_blk(m, U + (int64_t)co * ci_n + c0, ldu, l->w + ((int64_t)co * ci_n + c0) * 9, ci_n - c0 < KB ? ci_n - c0 : KB);
    for (int n0 = 0; n0 < n; n0 += chunk) {
        const int cn = n - n0 < chunk ? n - n0 : chunk;
        const int64_t T = cn * tpi;
        float *V = ws + usz, *M = V + (int64_t)a2 * ci_n * T;
        input_transform(m, V, (int64_t)ci_n * T, x, sc, sn, ci_n, n0, cn, h, w, th, tw);
        gemms(a2, 0, co_n, (int)T, ci_n, U, ldu, V, (int64_t)ci_n * T, 0.0f, M, (int64_t)co_n * T);
        const int64_t planes = (int64_t)co_n * cn;
#pragma omp parallel for schedule(static) if (planes * hw > NN_PAR_MIN)
        for (int64_t p = 0; p < planes; p++) {
            const int co = (int)(p / cn), ni = (int)(p % cn);
            out_plane(m, y + co * ldy + (int64_t)(n0 + ni) * hw, beta, M + (int64_t)co * T + ni * tpi,
                      (int64_t)co_n * T, h, w, th, tw);
        }
    }
    return 1;
}

int nn_wino_dw(const nn_conv *l, const float *dy, const float *x, int64_t sc, int64_t sn, int n, int h, int w,
               float *ws, size_t cap)
{
    wino_plan p;
    if (!wino_plan_make(&p, l, h, w, n, 1, cap)) return 0;
    const int m = p.m, a2 = p.a2, th = p.th, tw = p.tw, chunk = p.chunk, ci_n = l->c_in, co_n = l->c_out;
    const int64_t tpi = p.tpi, hw = p.hw, ldy = p.ldy, ldu = p.ldu;
    const size_t usz = p.usz;
    float *dU = ws;
    for (int n0 = 0; n0 < n; n0 += chunk) {
        const int cn = n - n0 < chunk ? n - n0 : chunk;
        const int64_t T = cn * tpi;
        float *V = ws + usz, *D = V + (int64_t)a2 * ci_n * T;
        input_transform(m, V, (int64_t)ci_n * T, x, sc, sn, ci_n, n0, cn, h, w, th, tw);
        const int64_t planes = (int64_t)co_n * cn;
#pragma omp parallel for schedule(static) if (planes * hw > NN_PAR_MIN)
        for (int64_t p = 0; p < planes; p++) {
            const int co = (int)(p / cn), ni = (int)(p % cn);
            dy_plane(m, D + (int64_t)co * T + ni * tpi, (int64_t)co_n * T, dy + co * ldy + (int64_t)(n0 + ni) * hw, h,
                     w, th, tw);
        }
        gemms(a2, 1, co_n, ci_n, (int)T, D, (int64_t)co_n * T, V, (int64_t)ci_n * T, n0 ? 1.0f : 0.0f, dU, ldu);
    }
#pragma omp parallel for schedule(static) if (ldu * a2 > NN_PAR_MIN)
    for (int co = 0; co < co_n; co++)
        for (int c0 = 0; c0 < ci_n; c0 += KB)
            kernel_grad_blk(m, l->dw + ((int64_t)co * ci_n + c0) * 9, dU + (int64_t)co * ci_n + c0, ldu,
                            ci_n - c0 < KB ? ci_n - c0 : KB);
    return 1;
}
