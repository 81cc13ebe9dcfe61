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

int nn_wino_tile(const nn_conv *l, int h, int w)
{
    pthread_once(&algo_once, algo_init);
    if (!shape_ok(l) || nn_precision() != NN_FP32 || algo == NN_CONV_IM2COL) return 0;
    const int m = tile_force ? tile_force : 4;
    if (algo == NN_CONV_WINOGRAD) return m;
    /* AUTO: see the rule at nn_wino_auto */
    return m;
}

/* ---------------------------------------------------------------- transforms ---- */

/* o[k][x] = sum_i B^T[k][i] d[i][x*S] for x < n (S: lane stride, 1 for a row pass, m for a column pass). */
#define BT2(S)                                                                                  \
    _Pragma("omp simd") for (int x = 0; x < n; x++) {                                           \
        const float d0 = d[0][x * S], d1 = d[1][x * S], d2 = d[2][x * S], d3 = d[3][x * S];     \
        o[0][x] = d0 - d2, o[1][x] = d1 + d2, o[2][x] = d2 - d1, o[3][x] = d1 - d3;             \
    }
#define BT4(S)                                                                                  \
    _Pragma("omp simd") for (int x = 0; x < n; x++) {                                           \
        const float d0 = d[0][x * S], d1 = d[1][x * S], d2 = d[2][x * S], d3 = d[3][x * S];     \
        const float d4 = d[4][x * S], d5 = d[5][x * S];                                         \
        const float a = d4 - 4.0f * d2, b = d3 - 4.0f * d1, c = d4 - d2, e = 2.0f * (d3 - d1);  \
        o[0][x] = 4.0f * d0 - 5.0f * d2 + d4, o[1][x] = a + b, o[2][x] = a - b;                \
        o[3][x] = c + e, o[4][x] = c - e, o[5][x] = 4.0f * d1 - 5.0f * d3 + d5;                 \
    }
NN_SIMD static void tr_bt(int m, float *const *o, const float *const *d, int s, int n)
{
    if (m == 2 && s == 1) BT2(1)
    else if (m == 2) BT2(2)
    else if (s == 1) BT4(1)
    else BT4(4)
}

/* o[k][x] = sum_i A[k][i] d[i][x*S] (A = (A^T)^T, a2 x m): the dy side of the weight gradient. */
#define AA2(S)                                                                                  \
    _Pragma("omp simd") for (int x = 0; x < n; x++) {                                           \
        const float d0 = d[0][x * S], d1 = d[1][x * S];                                         \
        o[0][x] = d0, o[1][x] = d0 + d1, o[2][x] = d0 - d1, o[3][x] = -d1;                      \
    }
#define AA4(S)                                                                                  \
    _Pragma("omp simd") for (int x = 0; x < n; x++) {                                           \
        const float d0 = d[0][x * S], d1 = d[1][x * S], d2 = d[2][x * S], d3 = d[3][x * S];     \
        const float p = d0 + d2, q = d1 + d3, r = d0 + 4.0f * d2, t = 2.0f * d1 + 8.0f * d3;    \
        o[0][x] = d0, o[1][x] = p + q, o[2][x] = p - q, o[3][x] = r + t, o[4][x] = r - t;       \
        o[5][x] = d3;                                                                           \
    }
NN_SIMD static void tr_a(int m, float *const *o, const float *const *d, int s, int n)
{
    if (m == 2 && s == 1) AA2(1)
    else if (m == 2) AA2(2)
    else if (s == 1) AA4(1)
    else AA4(4)
}

/* o[j][x*S] = sum_l A^T[j][l] d[l][x] (m outputs from a2 inputs; S: store stride). */
#define AT2(S)                                                                                  \
    _Pragma("omp simd") for (int x = 0; x < n; x++) {                                           \
        const float d0 = d[0][x], d1 = d[1][x], d2 = d[2][x], d3 = d[3][x];                     \
        o[0][x * S] = d0 + d1 + d2, o[1][x * S] = d1 - d2 - d3;                                 \
    }
#define AT4(S)                                                                                  \
    _Pragma("omp simd") for (int x = 0; x < n; x++) {                                           \
        const float d0 = d[0][x], d1 = d[1][x], d2 = d[2][x], d3 = d[3][x], d4 = d[4][x];       \
        const float d5 = d[5][x];                                                               \
        const float p = d1 + d2, q = d1 - d2, r = d3 + d4, t = d3 - d4;                         \
        o[0][x * S] = d0 + p + r, o[1][x * S] = q + 2.0f * t, o[2][x * S] = p + 4.0f * r;       \
        o[3][x * S] = q + 8.0f * t + d5;                                                        \
    }
NN_SIMD static void tr_at(int m, float *const *o, const float *const *d, int s, int n)
{
    if (m == 2 && s == 1) AT2(1)
    else if (m == 2) AT2(2)
    else if (s == 1) AT4(1)
    else AT4(4)
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
            tr_bt(m, o, d, 1, wd);
            for (int k = 0; k < a; k++) {
                for (int j = 0; j < a; j++) d[j] = r[k] + j, o[j] = v + (int64_t)(k * a + j) * ldv + ty * tw + tx0;
                tr_bt(m, o, d, m, nt);
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
            tr_a(m, o, d, 1, wd);
            for (int k = 0; k < a; k++) {
                for (int j = 0; j < m; j++) d[j] = r[k] + j;
                for (int j = 0; j < a; j++) o[j] = v + (int64_t)(k * a + j) * ldv + ty * tw + tx0;
                tr_a(m, o, d, m, nt);
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
                for (int j = 0; j < m; j++) o[j] = z[k] + j;
                tr_at(m, o, d, m, nt);
            }
            for (int k = 0; k < a; k++) d[k] = z[k];
            for (int i = 0; i < m; i++) o[i] = yr[i];
            tr_at(m, o, d, 1, wd);
            const int cl = wo - c0 < wd ? wo - c0 : wd;
            for (int i = 0; i < m && ty * m + i < ho; i++) {
                float *dst = yp + (int64_t)(ty * m + i) * wo + c0;
                if (beta == 0.0f) memcpy(dst, yr[i], sizeof(float) * cl);
                else
                    for (int j = 0; j < cl; j++) dst[j] += yr[i][j];
            }
        }
}

/* U[xi][co][ci] = (G g G^T)[xi] for the kernel w (c_out, c_in, 3, 3). */
NN_SIMD static void kernel_row(int m, float *u, int64_t ldu, const float *w, int c_in)
{
    const int a = m + 2;
#pragma omp simd
    for (int ci = 0; ci < c_in; ci++) {
        const float *g = w + (int64_t)ci * 9;
        float t[AMAX][3];   /* G g: a x 3 */
        for (int c = 0; c < 3; c++) {
            const float g0 = g[c], g1 = g[3 + c], g2 = g[6 + c];
            if (m == 2) {
                t[0][c] = g0, t[1][c] = 0.5f * (g0 + g1 + g2), t[2][c] = 0.5f * (g0 - g1 + g2), t[3][c] = g2;
            } else {
                t[0][c] = 0.25f * g0;
                t[1][c] = -(g0 + g1 + g2) / 6.0f, t[2][c] = -(g0 - g1 + g2) / 6.0f;
                t[3][c] = (g0 + 2.0f * g1 + 4.0f * g2) / 24.0f, t[4][c] = (g0 - 2.0f * g1 + 4.0f * g2) / 24.0f;
                t[5][c] = g2;
            }
        }
        for (int k = 0; k < a; k++) {
            const float g0 = t[k][0], g1 = t[k][1], g2 = t[k][2];
            float *uk = u + (int64_t)k * a * ldu + ci;
            if (m == 2) {
                uk[0] = g0, uk[ldu] = 0.5f * (g0 + g1 + g2), uk[2 * ldu] = 0.5f * (g0 - g1 + g2), uk[3 * ldu] = g2;
            } else {
                uk[0] = 0.25f * g0;
                uk[ldu] = -(g0 + g1 + g2) / 6.0f, uk[2 * ldu] = -(g0 - g1 + g2) / 6.0f;
                uk[3 * ldu] = (g0 + 2.0f * g1 + 4.0f * g2) / 24.0f, uk[4 * ldu] = (g0 - 2.0f * g1 + 4.0f * g2) / 24.0f;
                uk[5 * ldu] = g2;
            }
        }
    }
}

/* dw[co][ci] += G^T dU[.][co][ci] G (3 x 3 from a x a). */
NN_SIMD static void kernel_grad_row(int m, float *dw, const float *du, int64_t ldu, int c_in)
{
    const int a = m + 2;
#pragma omp simd
    for (int ci = 0; ci < c_in; ci++) {
        float t[3][AMAX];   /* G^T dU: 3 x a */
        for (int l = 0; l < a; l++) {
            float e[AMAX];
            for (int k = 0; k < a; k++) e[k] = du[(int64_t)(k * a + l) * ldu + ci];
            if (m == 2) {
                t[0][l] = e[0] + 0.5f * (e[1] + e[2]), t[1][l] = 0.5f * (e[1] - e[2]);
                t[2][l] = 0.5f * (e[1] + e[2]) + e[3];
            } else {
                t[0][l] = 0.25f * e[0] - (e[1] + e[2]) / 6.0f + (e[3] + e[4]) / 24.0f;
                t[1][l] = (e[2] - e[1]) / 6.0f + (e[3] - e[4]) / 12.0f;
                t[2][l] = -(e[1] + e[2]) / 6.0f + (e[3] + e[4]) / 6.0f + e[5];
            }
        }
        float *g = dw + (int64_t)ci * 9;
        for (int r = 0; r < 3; r++) {
            const float *e = t[r];
            if (m == 2) {
                g[r * 3] += e[0] + 0.5f * (e[1] + e[2]), g[r * 3 + 1] += 0.5f * (e[1] - e[2]);
                g[r * 3 + 2] += 0.5f * (e[1] + e[2]) + e[3];
            } else {
                g[r * 3] += 0.25f * e[0] - (e[1] + e[2]) / 6.0f + (e[3] + e[4]) / 24.0f;
                g[r * 3 + 1] += (e[2] - e[1]) / 6.0f + (e[3] - e[4]) / 12.0f;
                g[r * 3 + 2] += -(e[1] + e[2]) / 6.0f + (e[3] + e[4]) / 6.0f + e[5];
            }
        }
    }
}

/* ---------------------------------------------------------------- drivers ---- */

static int tiles(int s, int m) { return (s + m - 1) / m; }

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
    const int m = nn_wino_tile(l, h, w);
    if (!m) return 0;
    const int a = m + 2, a2 = a * a, th = tiles(h, m), tw = tiles(w, m);
    const int ci_n = l->c_in, co_n = l->c_out;
    const int64_t tpi = (int64_t)th * tw, hw = (int64_t)h * w, ldy = (int64_t)n * hw;
    const size_t usz = ((size_t)a2 * co_n * ci_n + 15) & ~(size_t)15;
    const int chunk = wino_chunk(usz, (size_t)a2 * (ci_n + co_n) * tpi, cap, n);
    if (!chunk) return 0;
    float *U = ws;
    const int64_t ldu = (int64_t)co_n * ci_n;
#pragma omp parallel for schedule(static) if (ldu * a2 > NN_PAR_MIN)
    for (int co = 0; co < co_n; co++) kernel_row(m, U + (int64_t)co * ci_n, ldu, l->w + (int64_t)co * ci_n * 9, ci_n);
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
    const int m = nn_wino_tile(l, h, w);
    if (!m) return 0;
    const int a = m + 2, a2 = a * a, th = tiles(h, m), tw = tiles(w, m);
    const int ci_n = l->c_in, co_n = l->c_out;
    const int64_t tpi = (int64_t)th * tw, hw = (int64_t)h * w, ldy = (int64_t)n * hw;
    const size_t usz = ((size_t)a2 * co_n * ci_n + 15) & ~(size_t)15;
    const int chunk = wino_chunk(usz, (size_t)a2 * (ci_n + co_n) * tpi, cap, n);
    if (!chunk) return 0;
    float *dU = ws;
    const int64_t ldu = (int64_t)co_n * ci_n;
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
    for (int co = 0; co < co_n; co++) kernel_grad_row(m, l->dw + (int64_t)co * ci_n * 9, dU + (int64_t)co * ci_n, ldu, ci_n);
    return 1;
}
