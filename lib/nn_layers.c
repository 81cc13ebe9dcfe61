/* nn_layers.c: forward and backward of the engine's layers, each pair side by side.  Image tensors are
 * channel-major (C, N, H, W); semantics follow torch.nn (Conv2d, BatchNorm1d/2d with momentum 0.1 and
 * the unbiased running variance, MaxPool2d, AdaptiveAvgPool2d(1), Linear, Dropout).
 * Convolutions drive BLIS's micro-kernel directly, packing image columns straight into its panels
 * (forward, stride-1 input gradient as a convolution with the flipped kernel, weight gradient); the
 * im2col + BLIS GEMM path remains for when the kernel or workspace is unavailable, and both are tested. */
#include <assert.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn.h"
#include "nn_internal.h"

#define BLK 1024   /* float partial sums cover at most this many values */

/* ---------------------------------------------------------------- reductions ---- */

NN_SIMD static float sum_blk(const float *x, int n)
{
    float s = 0;
#pragma omp simd reduction(+ : s)
    for (int i = 0; i < n; i++) s += x[i];
    return s;
}

NN_SIMD static float sumsq_blk(const float *x, int n)
{
    float s = 0;
#pragma omp simd reduction(+ : s)
    for (int i = 0; i < n; i++) s += x[i] * x[i];
    return s;
}

NN_SIMD static float dot_blk(const float *x, const float *y, int n)
{
    float s = 0;
#pragma omp simd reduction(+ : s)
    for (int i = 0; i < n; i++) s += x[i] * y[i];
    return s;
}

/* sum (x - mean)^2 */
NN_SIMD static float sqdev_blk(const float *x, float mean, int n)
{
    float s = 0;
#pragma omp simd reduction(+ : s)
    for (int i = 0; i < n; i++) {
        float d = x[i] - mean;
        s += d * d;
    }
    return s;
}

double nn_sum(const float *x, int64_t n)
{
    double s = 0;
    for (int64_t i = 0; i < n; i += BLK) s += sum_blk(x + i, (int)(n - i < BLK ? n - i : BLK));
    return s;
}

double nn_sumsq(const float *x, int64_t n)
{
    double s = 0;
    for (int64_t i = 0; i < n; i += BLK) s += sumsq_blk(x + i, (int)(n - i < BLK ? n - i : BLK));
    return s;
}

double nn_dot(const float *x, const float *y, int64_t n)
{
    double s = 0;
    for (int64_t i = 0; i < n; i += BLK) s += dot_blk(x + i, y + i, (int)(n - i < BLK ? n - i : BLK));
    return s;
}

/* ---------------------------------------------------------------- convolution ---- */

/* 1x1, stride 1, no padding, channel-major input: the input already is the column matrix. */
static int conv_direct(const nn_conv *l, int x_nchw)
{
    return l->k == 1 && l->stride == 1 && l->pad == 0 && !x_nchw;
}

/* Stride-1 convolutions with a channel-major input get their input gradient as a forward convolution
 * of dy with the transposed, flipped kernel (pad k-1-p): one GEMM with the long side c_out*k*k as its
 * inner dimension instead of a GEMM with inner dimension c_out followed by a scattering col2im. */
static int conv_transposed_bwd(const nn_conv *l, int x_nchw)
{
    return l->stride == 1 && l->k > 1 && l->pad <= l->k - 1 && !x_nchw;
}

/* im2col floats per image for the forward pass and for the input gradient of conv_transposed_bwd. */
static size_t col_fwd(const nn_conv *l, int h, int w)
{
    const int ho = nn_out_size(h, l->k, l->stride, l->pad), wo = nn_out_size(w, l->k, l->stride, l->pad);
    return (size_t)l->c_in * l->k * l->k * ho * wo;
}

static size_t col_bwd(const nn_conv *l, int h, int w) { return (size_t)l->c_out * l->k * l->k * h * w; }

static size_t wt_size(const nn_conv *l) { return ((size_t)l->c_out * l->c_in * l->k * l->k + 15) & ~(size_t)15; }

size_t nn_conv_ws_fast(const nn_conv *l, int x_nchw)
{
    const nn_ukinfo *u = nn_ukernel_info();
    if (!u || conv_direct(l, x_nchw)) return 0;
    const int C = u->spatial_a ? u->nr : u->mr;
    const size_t k2 = (size_t)l->k * l->k;
    size_t need = (size_t)l->c_in * k2 * ((l->c_out + C - 1) / C * C);   /* packed kernel */
    if (conv_transposed_bwd(l, x_nchw)) {
        /* transposed kernel, then its packed form */
        const size_t t = wt_size(l) + (size_t)l->c_out * k2 * ((l->c_in + C - 1) / C * C);
        if (t > need) need = t;
    }
    return need;
}

size_t nn_conv_col_min(const nn_conv *l, int h, int w, int x_nchw)
{
    if (conv_direct(l, x_nchw)) return 0;
    size_t need = col_fwd(l, h, w);
    if (conv_transposed_bwd(l, x_nchw)) {
        const size_t b = wt_size(l) + (col_bwd(l, h, w) > need ? col_bwd(l, h, w) : need);
        if (b > need) need = b;
    }
    return need;
}

/* One run of a column-matrix row: the rl output positions ow0 .. ow0+rl-1 of output row oh read input
 * row ih = oh*st - pad + kh of the channel plane xc (h x w) through kernel column kw; positions whose
 * input lies in the padding get 0. */
static inline void im2col_run(float *d, const float *xc, int h, int w, int ih, int kw, int ow0, int rl, int st,
                              int pad)
{
    if (ih < 0 || ih >= h) {
        memset(d, 0, sizeof(float) * rl);
        return;
    }
    const float *xr = xc + (int64_t)ih * w;
    if (st == 1) {
        /* columns ow0 .. ow0+rl-1 read iw = ow - pad + kw: inside for lo <= j < hi */
        int lo = pad - kw - ow0, hi = w + pad - kw - ow0;
        if (lo < 0) lo = 0;
        if (lo > rl) lo = rl;
        if (hi > rl) hi = rl;
        if (hi < lo) hi = lo;
        for (int j = 0; j < lo; j++) d[j] = 0;
        memcpy(d + lo, xr + ow0 + lo - pad + kw, sizeof(float) * (hi - lo));
        for (int j = hi; j < rl; j++) d[j] = 0;
    } else {
        for (int j = 0; j < rl; j++) {
            const int iw = (ow0 + j) * st - pad + kw;
            d[j] = (unsigned)iw < (unsigned)w ? xr[iw] : 0.0f;
        }
    }
}

/* Column matrix col (c_in*k*k, cn*ho*wo) of images n0 .. n0+cn-1; x element (c, n, i, j) is at
 * x[c*sc + n*sn + i*w + j], which covers both the (C, N, H, W) and the (N, C, H, W) layout. */
static void im2col(float *col, const float *x, int64_t sc, int64_t sn, const nn_conv *l, int n0, int cn,
                   int h, int w, int ho, int wo)
{
    const int k = l->k, s = l->stride, p = l->pad;
    const int64_t rows = (int64_t)l->c_in * k * k, cols = (int64_t)cn * ho * wo;
#pragma omp parallel for schedule(static) if (rows * cols > NN_PAR_MIN)
    for (int64_t r = 0; r < rows; r++) {
        const int ci = (int)(r / (k * k)), kh = (int)(r / k % k), kw = (int)(r % k);
        float *d = col + r * cols;
        for (int ni = 0; ni < cn; ni++) {
            const float *xp = x + ci * sc + (int64_t)(n0 + ni) * sn;
            for (int oh = 0; oh < ho; oh++, d += wo) im2col_run(d, xp, h, w, oh * s - p + kh, kw, 0, wo, s, p);
        }
    }
}

/* dx += col2im(col) for images n0 .. n0+cn-1 (dx zeroed first unless add).  Each (channel, image)
 * plane is owned by one thread and summed in a fixed order, so the result is thread-count independent. */
static void col2im(float *dx, int add, const float *col, int64_t sc, int64_t sn, const nn_conv *l, int n0,
                   int cn, int h, int w, int ho, int wo)
{
    const int k = l->k, s = l->stride, p = l->pad;
    const int64_t hwo = (int64_t)ho * wo, cols = (int64_t)cn * hwo;
    const int64_t planes = (int64_t)l->c_in * cn;
#pragma omp parallel for schedule(static) if (planes * h * w * k * k > NN_PAR_MIN)
    for (int64_t pl = 0; pl < planes; pl++) {
        const int ci = (int)(pl / cn), ni = (int)(pl % cn);
        float *dp = dx + ci * sc + (int64_t)(n0 + ni) * sn;
        if (!add) memset(dp, 0, sizeof(float) * h * w);
        for (int kh = 0; kh < k; kh++)
            for (int kw = 0; kw < k; kw++) {
                const int64_t r = ((int64_t)ci * k + kh) * k + kw;
                const float *d = col + r * cols + ni * hwo;
                int lo = p - kw, hi = w + p - kw;
                if (lo < 0) lo = 0;
                if (lo > wo) lo = wo;
                if (hi > wo) hi = wo;
                if (hi < lo) hi = lo;
                for (int oh = 0; oh < ho; oh++, d += wo) {
                    const int ih = oh * s - p + kh;
                    if (ih < 0 || ih >= h) continue;
                    float *xr = dp + (int64_t)ih * w;
                    if (s == 1) {
                        float *xo = xr - p + kw;
                        for (int ow = lo; ow < hi; ow++) xo[ow] += d[ow];
                    } else {
                        for (int ow = 0; ow < wo; ow++) {
                            const int iw = ow * s - p + kw;
                            if ((unsigned)iw < (unsigned)w) xr[iw] += d[ow];
                        }
                    }
                }
            }
    }
}

/* Images per GEMM when each needs per floats of cap. */
static int chunk_of(size_t per, size_t cap, int n)
{
    assert(per > 0 && cap >= per);
    const size_t c = cap / per;
    return c >= (size_t)n ? n : (int)c;
}

/* ---- convolution on BLIS's micro-kernel, columns packed straight from the image ---- */

/* Pack spatial positions s0 .. s0+ns-1 (of n*ho*wo) and kernel rows p0 .. p0+kl-1 (of c_in*k*k) of the
 * implicit column matrix into panels of width S: panel q holds kl groups of S floats, positions past ns
 * are zero.  Positions are split into runs within one output row, which read one input row each. */
static void pack_cols(float *dst, int S, const float *x, int64_t sc, int64_t sn, const nn_conv *l, int h, int w,
                      int ho, int wo, int64_t s0, int ns, int p0, int kl)
{
    const int k = l->k, st = l->stride, pad = l->pad;
    const int64_t hwo = (int64_t)ho * wo;
    for (int q = 0; q * S < ns; q++) {
        float *pd = dst + (int64_t)q * kl * S;
        const int len = ns - q * S < S ? ns - q * S : S;
        if (len < S)
            for (int p = 0; p < kl; p++) memset(pd + (int64_t)p * S + len, 0, sizeof(float) * (S - len));
        for (int o = 0; o < len;) {
            const int64_t s = s0 + (int64_t)q * S + o;
            const int ni = (int)(s / hwo), oh = (int)(s % hwo / wo), ow0 = (int)(s % wo);
            const int rl = wo - ow0 < len - o ? wo - ow0 : len - o;
            const float *xn = x + (int64_t)ni * sn;
            int ci = p0 / (k * k), kh = p0 / k % k, kw = p0 % k;
            for (int p = 0; p < kl; p++) {
                im2col_run(pd + (int64_t)p * S + o, xn + ci * sc, h, w, oh * st - pad + kh, kw, ow0, rl, st, pad);
                if (++kw == k) {
                    kw = 0;
                    if (++kh == k) kh = 0, ci++;
                }
            }
            o += rl;
        }
    }
}

static int conv_bf16(const nn_conv *l, float *out, float beta, const float *dy, const float *x, int64_t sc, int64_t sn,
                     int n, int h, int w, int dw);

/* y = conv(x) (beta 0) or y += conv(x) (beta 1) through the micro-kernel.  The kernel is packed into ws:
 * for each depth block, panels of C channels (zero-padded).  Each output tile is computed by one thread
 * with a fixed depth order, so results do not depend on the thread count.  0 if not possible. */
static int conv_ukernel(const nn_conv *l, float *y, float beta, const float *x, int64_t sc, int64_t sn, int n,
                        int h, int w, float *ws, size_t cap)
{
    if (nn_precision() == NN_BF16) return conv_bf16(l, y, beta, NULL, x, sc, sn, n, h, w, 0);
    const nn_ukinfo *u = nn_ukernel_info();
    if (!u) return 0;
    const int S = u->spatial_a ? u->mr : u->nr, C = u->spatial_a ? u->nr : u->mr, KC = u->kc;
    const int K = l->c_in * l->k * l->k, cpad = (l->c_out + C - 1) / C * C;
    if ((size_t)K * cpad > cap) return 0;
    const int ho = nn_out_size(h, l->k, l->stride, l->pad), wo = nn_out_size(w, l->k, l->stride, l->pad);
    const int64_t cols = (int64_t)n * ho * wo, ldy = cols;
    /* spatial blocks of at most sb positions, as many as a multiple of the thread count */
    const int T = nn_threads();
    const int64_t want = (int64_t)T * ((cols + (int64_t)T * u->sb - 1) / ((int64_t)T * u->sb));
    const int SB = (int)(((cols + want - 1) / want + S - 1) / S * S);
    const int nkb = (K + KC - 1) / KC, ncp = cpad / C;
    /* weights: block b (depth p0 .. p0+kl-1) at ws + p0*cpad, channel panel cp at + cp*kl*C */
#pragma omp parallel for schedule(static) if ((int64_t)K * cpad > NN_PAR_MIN)
    for (int t = 0; t < nkb * ncp; t++) {
        const int b = t / ncp, cp = t % ncp, p0 = b * KC, kl = K - p0 < KC ? K - p0 : KC;
        float *d = ws + (int64_t)p0 * cpad + (int64_t)cp * kl * C;
        for (int p = 0; p < kl; p++)
            for (int j = 0; j < C; j++) {
                const int co = cp * C + j;
                d[(int64_t)p * C + j] = co < l->c_out ? l->w[(int64_t)co * K + p0 + p] : 0.0f;
            }
    }
    const int64_t nsb = (cols + SB - 1) / SB;
#pragma omp parallel for schedule(static) if (nsb > 1 && cols * K * l->c_out > 4 * NN_PAR_MIN)
    for (int64_t sb = 0; sb < nsb; sb++) {
        float *buf = nn_pack_buffer();
        const int64_t s0 = sb * SB;
        const int ns = cols - s0 < SB ? (int)(cols - s0) : SB;
        for (int b = 0; b < nkb; b++) {
            const int p0 = b * KC, kl = K - p0 < KC ? K - p0 : KC;
            pack_cols(buf, S, x, sc, sn, l, h, w, ho, wo, s0, ns, p0, kl);
            const float *wb = ws + (int64_t)p0 * cpad;
            const float bt = b == 0 ? beta : 1.0f;
            for (int cp = 0; cp < ncp; cp++) {
                const float *wp = wb + (int64_t)cp * kl * C;
                const int nc = l->c_out - cp * C < C ? l->c_out - cp * C : C;
                for (int q = 0; q * S < ns; q++) {
                    const float *sp = buf + (int64_t)q * kl * S;
                    const int nq = ns - q * S < S ? ns - q * S : S;
                    float *ct = y + (int64_t)cp * C * ldy + s0 + (int64_t)q * S;
                    if (u->spatial_a) nn_ukernel(nq, nc, kl, sp, wp, bt, ct, 1, ldy);
                    else nn_ukernel(nc, nq, kl, wp, sp, bt, ct, ldy, 1);
                }
            }
        }
    }
    return 1;
}

/* Rows p0 .. p0+nr-1 of the implicit column matrix at spatial positions s0 .. s0+sl-1, row-major into t
 * (row stride ldt): the same runs as pack_cols, one output row at a time. */
static void gather_rows(float *t, int64_t ldt, const float *x, int64_t sc, int64_t sn, const nn_conv *l, int h, int w,
                        int ho, int wo, int p0, int nr, int64_t s0, int sl)
{
    const int k = l->k, st = l->stride, pad = l->pad;
    const int64_t hwo = (int64_t)ho * wo;
    for (int o = 0; o < sl;) {
        const int64_t s = s0 + o;
        const int ni = (int)(s / hwo), oh = (int)(s % hwo / wo), ow0 = (int)(s % wo);
        const int rl = wo - ow0 < sl - o ? wo - ow0 : sl - o;
        const float *xn = x + (int64_t)ni * sn;
        int ci = p0 / (k * k), kh = p0 / k % k, kw = p0 % k;
        for (int r = 0; r < nr; r++) {
            im2col_run(t + r * ldt + o, xn + ci * sc, h, w, oh * st - pad + kh, kw, ow0, rl, st, pad);
            if (++kw == k) {
                kw = 0;
                if (++kh == k) kh = 0, ci++;
            }
        }
        o += rl;
    }
}

/* --precision bf16: the same implicit column matrix, gathered block by block into the bf16 GEMM's
 * fp32 staging panel (cache-resident) instead of an im2col buffer. */
typedef struct {
    const nn_conv *l;
    const float *x;
    int64_t sc, sn;
    int h, w, ho, wo;
} bf16_ctx;

static void bf16_fill(void *ctx, float *t, int64_t ldt, int r0, int nr, int64_t s0, int sl)
{
    const bf16_ctx *c = ctx;
    gather_rows(t, ldt, c->x, c->sc, c->sn, c->l, c->h, c->w, c->ho, c->wo, r0, nr, s0, sl);
}

/* The forward pass (and the transposed input gradient) in bf16 pays the implicit im2col once per input
 * element instead of once per kernel tap: the input is rounded once into pairs of channels with a zero
 * border, xp[cp][n][pad + i][pad + j] = bf16 x(2cp, n, i, j) | bf16 x(2cp+1, n, i, j) << 16, and the depth
 * runs (channel pair, tap, channel of the pair) so that a depth pair is a channel pair at one tap: a B
 * panel's group is a few straight copies of xp words, with no staging, rounding or repacking.  Taps inside
 * a channel pair keep a block's reads within a few planes of xp (taps outside measured slower: cache
 * misses over 128 planes).  The kernel is reordered to match (wr[co][((c/2)*k*k + kh*k + kw)*2 + c%2],
 * cpad = c_in rounded up to even, zero weights in the padding channel). */
/* Grown as the largest layer needs, kept for the process (the bf16 forward pass's xp and reordered kernel). */
static void *bf16_scratch;
static size_t bf16_scratch_bytes;

static int conv_bf16_words(const nn_conv *l, float *out, float beta, const float *x, int64_t sc, int64_t sn, int n,
                           int h, int w)
{
    const int k = l->k, st = l->stride, pad = l->pad, k2 = k * k;
    const int ho = nn_out_size(h, k, st, pad), wo = nn_out_size(w, k, st, pad);
    const int hp = h + 2 * pad, wp = w + 2 * pad, cpairs = (l->c_in + 1) / 2, cpad = 2 * cpairs;
    const int64_t plane = (int64_t)n * hp * wp, cols = (int64_t)n * ho * wo, K = (int64_t)k2 * cpad;
    if (cols > 0x7fffffff || K > 0x7fffffff) return 0;
    const size_t xp_words = (size_t)cpairs * plane, w_floats = (size_t)l->c_out * K;
    const size_t w_at = (xp_words * 4 + 63) & ~(size_t)63, need = w_at + w_floats * 4;   /* wr 64-byte aligned */
    if (need > bf16_scratch_bytes) {
        void *p = aligned_alloc(64, (need + 63) & ~(size_t)63);
        if (!p) return 0;
        free(bf16_scratch);
        bf16_scratch = p, bf16_scratch_bytes = need;
    }
    uint32_t *xp = bf16_scratch;
    float *wr = (float *)((char *)bf16_scratch + w_at);
#pragma omp parallel for schedule(static) if ((int64_t)xp_words > NN_PAR_MIN)
    for (int64_t r = 0; r < (int64_t)cpairs * n * hp; r++) {   /* one padded row of one channel pair */
        const int cp = (int)(r / ((int64_t)n * hp)), ni = (int)(r / hp % n), i = (int)(r % hp) - pad;
        uint32_t *d = xp + r * wp;
        if (i < 0 || i >= h) {
            memset(d, 0, sizeof(uint32_t) * wp);
            continue;
        }
        const float *lo = x + (int64_t)(2 * cp) * sc + ni * sn + (int64_t)i * w;
        memset(d, 0, sizeof(uint32_t) * pad);
        nn_bf16_pair_rows(d + pad, lo, 2 * cp + 1 < l->c_in ? lo + sc : NULL, w);
        memset(d + pad + w, 0, sizeof(uint32_t) * pad);
    }
#pragma omp parallel for schedule(static) if ((int64_t)w_floats > NN_PAR_MIN)
    for (int co = 0; co < l->c_out; co++) {   /* the taps of channels 2cp and 2cp+1 interleaved */
        float *d = wr + (int64_t)co * K;
        for (int cp = 0; cp < cpairs; cp++, d += 2 * k2) {
            const float *lo = l->w + ((int64_t)co * l->c_in + 2 * cp) * k2, *hi = 2 * cp + 1 < l->c_in ? lo + k2 : NULL;
            for (int t = 0; t < k2; t++) d[2 * t] = lo[t], d[2 * t + 1] = hi ? hi[t] : 0.0f;
        }
    }
    const nn_bf16_taps taps = {xp, plane, cpairs, k, st, hp, wp, ho, wo};
    nn_bf16_gemm_words(l->c_out, (int)cols, (int)K, wr, K, nn_bf16_fill_taps, (void *)&taps, beta, out, cols);
    return 1;
}

/* The weight gradient in bf16, dw += dy . col^T: the input rounded once into bf16 planes with a zero border
 * (xb in bf16_scratch, see nn_bf16_dwtaps), each B panel gathered from it as words, no fp32 staging, rounding
 * or transposing per tap.  0 if the planes do not fit the gather's 32-bit indices. */
static int conv_bf16_dw(const nn_conv *l, const float *dy, const float *x, int64_t sc, int64_t sn, int n, int h, int w)
{
    const int k = l->k, st = l->stride, pad = l->pad;
    const int ho = nn_out_size(h, k, st, pad), wo = nn_out_size(w, k, st, pad);
    const int hp = h + 2 * pad, wp = w + 2 * pad;
    const int64_t plane = (int64_t)n * hp * wp, cols = (int64_t)n * ho * wo, K = (int64_t)l->c_in * k * k;
    if (cols > 0x7fffffff || K > 0x7fffffff || (int64_t)l->c_in * plane > 0x7fffffff) return 0;
    const size_t need = ((size_t)l->c_in * plane + 32) * sizeof(uint16_t);
    if (need > bf16_scratch_bytes) {
        void *p = aligned_alloc(64, (need + 63) & ~(size_t)63);
        if (!p) return 0;
        free(bf16_scratch);
        bf16_scratch = p, bf16_scratch_bytes = need;
    }
    uint16_t *xb = bf16_scratch;
#pragma omp parallel for schedule(static) if ((int64_t)l->c_in * plane > NN_PAR_MIN)
    for (int64_t r = 0; r < (int64_t)l->c_in * n * hp; r++) {   /* one padded row of one channel */
        const int ci = (int)(r / ((int64_t)n * hp)), ni = (int)(r / hp % n), i = (int)(r % hp) - pad;
        uint16_t *d = xb + r * wp;
        if (i < 0 || i >= h) {
            memset(d, 0, sizeof(uint16_t) * wp);
            continue;
        }
        memset(d, 0, sizeof(uint16_t) * pad);
        nn_bf16_round_row(d + pad, x + (int64_t)ci * sc + ni * sn + (int64_t)i * w, w);
        memset(d + pad + w, 0, sizeof(uint16_t) * pad);
    }
    memset(xb + (size_t)l->c_in * plane, 0, 32 * sizeof(uint16_t));
    const nn_bf16_dwtaps taps = {xb, plane, cols, k, st, hp, wp, ho, wo};
    nn_bf16_gemm_words(l->c_out, (int)K, (int)cols, dy, cols, nn_bf16_fill_dw, (void *)&taps, 1.0f, l->dw, K);
    return 1;
}

/* y = conv(x) (+ beta y) or, dw 1, l->dw += dy . col^T, through nn_bf16_gemm_fill. */
static int conv_bf16(const nn_conv *l, float *out, float beta, const float *dy, const float *x, int64_t sc, int64_t sn,
                     int n, int h, int w, int dw)
{
    const int ho = nn_out_size(h, l->k, l->stride, l->pad), wo = nn_out_size(w, l->k, l->stride, l->pad);
    const int K = l->c_in * l->k * l->k;
    const int64_t cols = (int64_t)n * ho * wo;
    if (cols > 0x7fffffff) return 0;
    if (!dw && conv_bf16_words(l, out, beta, x, sc, sn, n, h, w)) return 1;
    if (dw && conv_bf16_dw(l, dy, x, sc, sn, n, h, w)) return 1;
    bf16_ctx c = {l, x, sc, sn, h, w, ho, wo};
    if (dw) nn_bf16_gemm_fill(l->c_out, K, (int)cols, dy, cols, 1, bf16_fill, &c, 1.0f, l->dw, K);
    else nn_bf16_gemm_fill(l->c_out, (int)cols, K, l->w, K, 0, bf16_fill, &c, beta, out, cols);
    return 1;
}

typedef float v8sf __attribute__((vector_size(32)));
typedef int v8si __attribute__((vector_size(32)));

/* dst[s*W + j] = src[j*lds + s] for j < nr, 0 for nr <= j < W, s < len: a panel of width W made from nr
 * rows.  8x8 blocks are transposed in registers (generic vector shuffles, compiled for each ISA); a lane
 * group of 4 (W = 12 or 6 + ...) stores half a block. */
NN_SIMD static void transpose_pack(float *dst, int W, const float *src, int64_t lds, int nr, int len)
{
    static const v8si lo1 = {0, 8, 1, 9, 4, 12, 5, 13}, hi1 = {2, 10, 3, 11, 6, 14, 7, 15};
    static const v8si lo2 = {0, 1, 8, 9, 4, 5, 12, 13}, hi2 = {2, 3, 10, 11, 6, 7, 14, 15};
    static const v8si lo4 = {0, 1, 2, 3, 8, 9, 10, 11}, hi4 = {4, 5, 6, 7, 12, 13, 14, 15};
    const v8sf zero = {0, 0, 0, 0, 0, 0, 0, 0};
    int s = 0;
    for (; s + 8 <= len; s += 8) {
        for (int j = 0; j < W; j += 8) {
            const int nl = W - j < 8 ? W - j : 8;
            if (nl != 8 && nl != 4) {   /* odd lane counts: element by element */
                for (int c = 0; c < 8; c++)
                    for (int i = 0; i < nl; i++)
                        dst[(int64_t)(s + c) * W + j + i] = j + i < nr ? src[(int64_t)(j + i) * lds + s + c] : 0.0f;
                continue;
            }
            v8sf r0, r1, r2, r3, r4, r5, r6, r7;
#define LD(i, r) if (j + i < nr) memcpy(&r, src + (int64_t)(j + i) * lds + s, sizeof r); else r = zero
            LD(0, r0); LD(1, r1); LD(2, r2); LD(3, r3); LD(4, r4); LD(5, r5); LD(6, r6); LD(7, r7);
#undef LD
            v8sf t0 = __builtin_shuffle(r0, r1, lo1), t1 = __builtin_shuffle(r0, r1, hi1);
            v8sf t2 = __builtin_shuffle(r2, r3, lo1), t3 = __builtin_shuffle(r2, r3, hi1);
            v8sf t4 = __builtin_shuffle(r4, r5, lo1), t5 = __builtin_shuffle(r4, r5, hi1);
            v8sf t6 = __builtin_shuffle(r6, r7, lo1), t7 = __builtin_shuffle(r6, r7, hi1);
            /* u0 = columns 0,4 of rows 0-3, u1 = 1,5, u2 = 2,6, u3 = 3,7; u4..u7 the same for rows 4-7 */
            v8sf u0 = __builtin_shuffle(t0, t2, lo2), u1 = __builtin_shuffle(t0, t2, hi2);
            v8sf u2 = __builtin_shuffle(t1, t3, lo2), u3 = __builtin_shuffle(t1, t3, hi2);
            v8sf u4 = __builtin_shuffle(t4, t6, lo2), u5 = __builtin_shuffle(t4, t6, hi2);
            v8sf u6 = __builtin_shuffle(t5, t7, lo2), u7 = __builtin_shuffle(t5, t7, hi2);
            v8sf c0 = __builtin_shuffle(u0, u4, lo4), c4 = __builtin_shuffle(u0, u4, hi4);
            v8sf c1 = __builtin_shuffle(u1, u5, lo4), c5 = __builtin_shuffle(u1, u5, hi4);
            v8sf c2 = __builtin_shuffle(u2, u6, lo4), c6 = __builtin_shuffle(u2, u6, hi4);
            v8sf c3 = __builtin_shuffle(u3, u7, lo4), c7 = __builtin_shuffle(u3, u7, hi4);
            float *d = dst + (int64_t)s * W + j;
            if (nl == 8) {
                memcpy(d, &c0, 32), memcpy(d + W, &c1, 32), memcpy(d + 2 * W, &c2, 32), memcpy(d + 3 * W, &c3, 32);
                memcpy(d + 4 * W, &c4, 32), memcpy(d + 5 * W, &c5, 32), memcpy(d + 6 * W, &c6, 32), memcpy(d + 7 * W, &c7, 32);
            } else {
                memcpy(d, &c0, 16), memcpy(d + W, &c1, 16), memcpy(d + 2 * W, &c2, 16), memcpy(d + 3 * W, &c3, 16);
                memcpy(d + 4 * W, &c4, 16), memcpy(d + 5 * W, &c5, 16), memcpy(d + 6 * W, &c6, 16), memcpy(d + 7 * W, &c7, 16);
            }
        }
    }
    for (; s < len; s++)
        for (int j = 0; j < W; j++) dst[(int64_t)s * W + j] = j < nr ? src[(int64_t)j * lds + s] : 0.0f;
}

/* dw += dy . col^T through the micro-kernel: C tiles of (kernel rows p, output channels), summed over
 * the spatial positions in depth blocks.  Both operands are packed transposed (one group of tile-width
 * values per position): column rows gathered from the image, dy rows from the output gradient, then
 * turned into panels by in-register 8x8 transposes.  Threads take blocks of kernel rows; every tile is
 * summed by one thread in a fixed order. */
static int conv_dw_ukernel(const nn_conv *l, const float *dy, const float *x, int64_t sc, int64_t sn, int n, int h,
                           int w)
{
    if (nn_precision() == NN_BF16) return conv_bf16(l, NULL, 1.0f, dy, x, sc, sn, n, h, w, 1);
    const nn_ukinfo *u = nn_ukernel_info();
    if (!u) return 0;
    const int S = u->spatial_a ? u->mr : u->nr, C = u->spatial_a ? u->nr : u->mr, KC = u->kc;
    const int K = l->c_in * l->k * l->k, cpad = (l->c_out + C - 1) / C * C;
    /* blocks of at most sb kernel rows, as many as a multiple of the thread count (each packs all of dy) */
    const int T = nn_threads();
    const int want = T * ((K + T * u->sb - 1) / (T * u->sb));
    const int pb = ((K + want - 1) / want + S - 1) / S * S;
    const size_t colp_floats = ((size_t)pb * KC + 15) & ~(size_t)15;
    /* buffer: column panels, dy panels, and S rows of gathered columns */
    if (colp_floats + (size_t)cpad * KC + (size_t)S * KC > u->buf_floats) return 0;
    const int ho = nn_out_size(h, l->k, l->stride, l->pad), wo = nn_out_size(w, l->k, l->stride, l->pad);
    const int64_t cols = (int64_t)n * ho * wo, ldy = cols;
    const int npb = (K + pb - 1) / pb, ncp = cpad / C;
#pragma omp parallel for schedule(static) if (npb > 1 && cols * K * l->c_out > 4 * NN_PAR_MIN)
    for (int b = 0; b < npb; b++) {
        float *colp = nn_pack_buffer(), *dyp = colp + colp_floats, *rows = dyp + (size_t)cpad * KC;
        const int p0 = b * pb, pl = K - p0 < pb ? K - p0 : pb, nq = (pl + S - 1) / S;
        for (int64_t s0 = 0; s0 < cols; s0 += KC) {
            const int sl = cols - s0 < KC ? (int)(cols - s0) : KC;
            for (int q = 0; q < nq; q++) {
                const int nr = pl - q * S < S ? pl - q * S : S;
                gather_rows(rows, KC, x, sc, sn, l, h, w, ho, wo, p0 + q * S, nr, s0, sl);
                transpose_pack(colp + (int64_t)q * sl * S, S, rows, KC, nr, sl);
            }
            for (int cp = 0; cp < ncp; cp++) {
                const int nc = l->c_out - cp * C < C ? l->c_out - cp * C : C;
                transpose_pack(dyp + (int64_t)cp * sl * C, C, dy + (int64_t)cp * C * ldy + s0, ldy, nc, sl);
            }
            for (int cp = 0; cp < ncp; cp++) {
                const int nc = l->c_out - cp * C < C ? l->c_out - cp * C : C;
                const float *gp = dyp + (int64_t)cp * sl * C;
                for (int q = 0; q < nq; q++) {
                    const int np = pl - q * S < S ? pl - q * S : S;
                    const float *cpn = colp + (int64_t)q * sl * S;
                    float *ct = l->dw + (int64_t)cp * C * K + p0 + q * S;
                    if (u->spatial_a) nn_ukernel(np, nc, sl, cpn, gp, 1.0f, ct, 1, K);
                    else nn_ukernel(nc, np, sl, gp, cpn, 1.0f, ct, K, 1);
                }
            }
        }
    }
    return 1;
}

/* y = conv(x) (beta 0) or y += conv(x) (beta 1); no bias. */
static void conv_gemm(const nn_conv *l, float *y, float beta, const float *x, int x_nchw, int n, int h, int w,
                      float *col, size_t col_cap)
{
    const int ho = nn_out_size(h, l->k, l->stride, l->pad), wo = nn_out_size(w, l->k, l->stride, l->pad);
    const int64_t hwo = (int64_t)ho * wo, ldy = n * hwo, kk = (int64_t)l->c_in * l->k * l->k;
    if (conv_direct(l, x_nchw)) {
        nn_gemm(0, 0, l->c_out, (int)ldy, l->c_in, 1.0f, l->w, l->c_in, x, ldy, beta, y, ldy);
        return;
    }
    const int64_t sc = x_nchw ? (int64_t)h * w : (int64_t)n * h * w;
    const int64_t sn = x_nchw ? (int64_t)l->c_in * h * w : (int64_t)h * w;
    if (nn_wino_forward(l, y, beta, x, sc, sn, n, h, w, col, col_cap)) return;
    if (conv_ukernel(l, y, beta, x, sc, sn, n, h, w, col, col_cap)) return;
    const int chunk = chunk_of(col_fwd(l, h, w), col_cap, n);
    for (int n0 = 0; n0 < n; n0 += chunk) {
        const int cn = n - n0 < chunk ? n - n0 : chunk;
        im2col(col, x, sc, sn, l, n0, cn, h, w, ho, wo);
        nn_gemm(0, 0, l->c_out, (int)(cn * hwo), (int)kk, 1.0f, l->w, kk, col, cn * hwo, beta, y + n0 * hwo, ldy);
    }
}

void nn_conv_forward(const nn_conv *l, float *y, const float *x, int x_nchw, int n, int h, int w,
                     float *col, size_t col_cap)
{
    conv_gemm(l, y, 0.0f, x, x_nchw, n, h, w, col, col_cap);
    if (l->b) {
        const int64_t ldy = (int64_t)n * nn_out_size(h, l->k, l->stride, l->pad) * nn_out_size(w, l->k, l->stride, l->pad);
#pragma omp parallel for schedule(static) if (l->c_out * ldy > NN_PAR_MIN)
        for (int c = 0; c < l->c_out; c++) {
            float *yc = y + c * ldy, bc = l->b[c];
            for (int64_t i = 0; i < ldy; i++) yc[i] += bc;
        }
    }
}

void nn_conv_backward(const nn_conv *l, float *dx, int dx_add, const float *dy, const float *x, int x_nchw,
                      int n, int h, int w, float *col, size_t col_cap)
{
    const int ho = nn_out_size(h, l->k, l->stride, l->pad), wo = nn_out_size(w, l->k, l->stride, l->pad);
    const int64_t hwo = (int64_t)ho * wo, ldy = n * hwo, kk = (int64_t)l->c_in * l->k * l->k;
    if (l->db) {
#pragma omp parallel for schedule(static) if (l->c_out * ldy > NN_PAR_MIN)
        for (int c = 0; c < l->c_out; c++) l->db[c] += (float)nn_sum(dy + c * ldy, ldy);
    }
    if (conv_direct(l, x_nchw)) {
        nn_gemm(0, 1, l->c_out, l->c_in, (int)ldy, 1.0f, dy, ldy, x, ldy, 1.0f, l->dw, l->c_in);
        if (dx)
            nn_gemm(1, 0, l->c_in, (int)ldy, l->c_out, 1.0f, l->w, l->c_in, dy, ldy, dx_add ? 1.0f : 0.0f,
                     dx, ldy);
        return;
    }
    const int64_t sc = x_nchw ? (int64_t)h * w : (int64_t)n * h * w;
    const int64_t sn = x_nchw ? (int64_t)l->c_in * h * w : (int64_t)h * w;
    const int transposed = dx && conv_transposed_bwd(l, x_nchw);
    /* weight gradient: dw += dy (c_out, cols) . col^T, on the micro-kernel, or with the columns
     * recomputed chunk by chunk for BLIS; a stride-2 input gradient goes through col2im */
    const int dw_done = nn_wino_dw(l, dy, x, sc, sn, n, h, w, col, col_cap) || conv_dw_ukernel(l, dy, x, sc, sn, n, h, w);
    if (!dw_done || (dx && !transposed)) {
        const int chunk = chunk_of(col_fwd(l, h, w), col_cap, n);
        for (int n0 = 0; n0 < n; n0 += chunk) {
            const int cn = n - n0 < chunk ? n - n0 : chunk;
            const int64_t cols = cn * hwo;
            if (!dw_done) {
                im2col(col, x, sc, sn, l, n0, cn, h, w, ho, wo);
                nn_gemm(0, 1, l->c_out, (int)kk, (int)cols, 1.0f, dy + n0 * hwo, ldy, col, cols, 1.0f, l->dw, kk);
            }
            if (dx && !transposed) {
                nn_gemm(1, 0, (int)kk, (int)cols, l->c_out, 1.0f, l->w, kk, dy + n0 * hwo, ldy, 0.0f, col, cols);
                col2im(dx, dx_add, col, sc, sn, l, n0, cn, h, w, ho, wo);
            }
        }
    }
    if (!transposed) return;
    /* input gradient: dx = conv(dy) with wt[ci][co][a][b] = w[co][ci][k-1-a][k-1-b], pad k-1-p */
    const int k = l->k, k2 = k * k;
    float *wt = col;
    const size_t wsz = wt_size(l);
    for (int ci = 0; ci < l->c_in; ci++)
        for (int co = 0; co < l->c_out; co++)
            for (int j = 0; j < k2; j++)
                wt[((int64_t)ci * l->c_out + co) * k2 + j] = l->w[((int64_t)co * l->c_in + ci) * k2 + (k2 - 1 - j)];
    const nn_conv lt = {.c_in = l->c_out, .c_out = l->c_in, .k = k, .stride = 1, .pad = k - 1 - l->pad, .w = wt};
    conv_gemm(&lt, dx, dx_add ? 1.0f : 0.0f, dy, 0, n, ho, wo, col + wsz, col_cap - wsz);
}

/* ---------------------------------------------------------------- batch norm ---- */

NN_SIMD static void bn_apply(float *y, const float *x, const float *res, int relu, int64_t m, float scale,
                             float shift)
{
    if (res && relu) {
#pragma omp simd
        for (int64_t i = 0; i < m; i++) {
            float v = x[i] * scale + shift + res[i];
            y[i] = v > 0.0f ? v : 0.0f;
        }
    } else if (res) {
#pragma omp simd
        for (int64_t i = 0; i < m; i++) y[i] = x[i] * scale + shift + res[i];
    } else if (relu) {
#pragma omp simd
        for (int64_t i = 0; i < m; i++) {
            float v = x[i] * scale + shift;
            y[i] = v > 0.0f ? v : 0.0f;
        }
    } else {
#pragma omp simd
        for (int64_t i = 0; i < m; i++) y[i] = x[i] * scale + shift;
    }
}

/* Sums of dy and dy * (x - mean) over one block, masking dy in place by y > 0 first when relu. */
NN_SIMD static void bn_grad_sums_blk(float *dy, const float *y, const float *x, float mean, int n, float *s1,
                                     float *s2)
{
    float a = 0, b = 0;
    if (y) {
#pragma omp simd reduction(+ : a, b)
        for (int i = 0; i < n; i++) {
            float g = y[i] > 0.0f ? dy[i] : 0.0f;
            dy[i] = g;
            a += g;
            b += g * (x[i] - mean);
        }
    } else {
#pragma omp simd reduction(+ : a, b)
        for (int i = 0; i < n; i++) {
            a += dy[i];
            b += dy[i] * (x[i] - mean);
        }
    }
    *s1 = a;
    *s2 = b;
}

/* dx = k * dy + c1 * (x - mean) + c0 */
NN_SIMD static void bn_dx(float *dx, const float *dy, const float *x, int64_t m, float mean, float k, float c1,
                          float c0)
{
#pragma omp simd
    for (int64_t i = 0; i < m; i++) dx[i] = k * dy[i] + c1 * (x[i] - mean) + c0;
}

/* ---------------------------------------------------------------- synchronised batch norm ---- */

/* With an all-sum installed (nn_set_bn_allsum), training-mode batch norm takes its statistics over the
 * batches of every process: the per-channel sums of x, then of (x - mean)^2, and in backward of dy and
 * dy * (x - mean), are summed across processes together with the element count, in two (forward) or one
 * (backward) collective per layer.  gamma and beta get this process's share only (dw, db from the local
 * sums), since the trainer sums the parameter gradients across processes anyway.  Without it
 * (default) every process normalises by its own batch, as PyTorch DDP without SyncBatchNorm. */
static nn_allsum_fn bn_allsum;
static double *bn_tmp;        /* 3 c + 2 doubles of the widest layer so far: main thread only */
static int bn_tmp_c;

void nn_set_bn_allsum(nn_allsum_fn fn) { bn_allsum = fn; }

static double *bn_scratch(int c)
{
    if (c > bn_tmp_c) {
        double *t = realloc(bn_tmp, sizeof(double) * (3 * (size_t)c + 2));
        if (!t) {   /* a few KB per channel count: out of memory here leaves nothing sensible to do */
            fprintf(stderr, "earsight: out of memory for batch-norm statistics of %d channels\n", c);
            abort();
        }
        bn_tmp = t, bn_tmp_c = c;
    }
    return bn_tmp;
}

/* Channel c's batch statistics, from its mean and biased variance over M values (this process's batch,
 * or with an all-sum every process's): the saved mean and 1/std, and the running statistics moved by
 * momentum towards the mean and the unbiased variance. */
static void bn_batch_stats(nn_bn *l, int c, double mean_d, double var, double M, float *mean, float *invstd)
{
    *mean = (float)mean_d;
    *invstd = (float)(1.0 / sqrt(var + l->eps));
    const double unbiased = M > 1 ? var * M / (M - 1) : var;
    l->mean[c] = (1.0f - l->momentum) * l->mean[c] + l->momentum * *mean;
    l->var[c] = (1.0f - l->momentum) * l->var[c] + l->momentum * (float)unbiased;
}

static void bn_forward_sync(nn_bn *l, float *y, const float *x, const float *res, int relu, int64_t m,
                            float *save_mean, float *save_invstd)
{
    const int C = l->c;
    double *s = bn_scratch(C), *sq = s + C + 1;
#pragma omp parallel for schedule(dynamic, 1) if (C * m > NN_PAR_MIN)
    for (int c = 0; c < C; c++) s[c] = nn_sum(x + c * m, m);
    s[C] = (double)m;
    bn_allsum(s, C + 1);
    const double M = s[C];
#pragma omp parallel for schedule(dynamic, 1) if (C * m > NN_PAR_MIN)
    for (int c = 0; c < C; c++) {
        const float mean = (float)(s[c] / M), *xc = x + c * m;
        double v = 0;
        for (int64_t i = 0; i < m; i += BLK) v += sqdev_blk(xc + i, mean, (int)(m - i < BLK ? m - i : BLK));
        sq[c] = v;
    }
    bn_allsum(sq, C);
#pragma omp parallel for schedule(dynamic, 1) if (C * m > NN_PAR_MIN)
    for (int c = 0; c < C; c++) {
        float mean, invstd;
        bn_batch_stats(l, c, (float)(s[c] / M), sq[c] / M, M, &mean, &invstd);
        save_mean[c] = mean, save_invstd[c] = invstd;
        const float scale = l->w[c] * invstd, shift = l->b[c] - mean * scale;
        bn_apply(y + c * m, x + c * m, res ? res + c * m : NULL, relu, m, scale, shift);
    }
    (*l->n_tracked)++;
}

static void bn_backward_sync(const nn_bn *l, float *dx, float *dy, const float *y, int relu, const float *x,
                             int64_t m, const float *save_mean, const float *save_invstd)
{
    const int C = l->c;
    double *s = bn_scratch(C);   /* sum dy (C), sum dy (x - mean) (C), count */
#pragma omp parallel for schedule(dynamic, 1) if (C * m > NN_PAR_MIN)
    for (int c = 0; c < C; c++) {
        float *dyc = dy + c * m;
        const float *xc = x + c * m, *yc = relu ? y + c * m : NULL;
        double sdy = 0, sdyx = 0;
        for (int64_t i = 0; i < m; i += BLK) {
            float a, b;
            bn_grad_sums_blk(dyc + i, yc ? yc + i : NULL, xc + i, save_mean[c], (int)(m - i < BLK ? m - i : BLK),
                             &a, &b);
            sdy += a, sdyx += b;
        }
        l->dw[c] += (float)(sdyx * save_invstd[c]);
        l->db[c] += (float)sdy;
        s[c] = sdy, s[C + c] = sdyx;
    }
    s[2 * C] = (double)m;
    bn_allsum(s, 2 * C + 1);
    if (!dx) return;
    const double M = s[2 * C];
#pragma omp parallel for schedule(dynamic, 1) if (C * m > NN_PAR_MIN)
    for (int c = 0; c < C; c++) {
        const float invstd = save_invstd[c], k = l->w[c] * invstd;
        const float c0 = (float)(-k * s[c] / M), c1 = (float)(-k * s[C + c] / M * invstd * invstd);
        bn_dx(dx + c * m, dy + c * m, x + c * m, m, save_mean[c], k, c1, c0);
    }
}

static void bn1d_forward_sync(nn_bn *l, float *y, const float *x, int relu, int n, float *save_mean,
                              float *save_invstd)
{
    const int C = l->c;
    double *s = bn_scratch(C), *sq = s + C + 1;
    for (int c = 0; c < C; c++) {
        double a = 0;
        for (int i = 0; i < n; i++) a += x[(int64_t)i * C + c];
        s[c] = a;
    }
    s[C] = n;
    bn_allsum(s, C + 1);
    const double M = s[C];
    for (int c = 0; c < C; c++) {
        const float mean = (float)(s[c] / M);
        double v = 0;
        for (int i = 0; i < n; i++) {
            double d = x[(int64_t)i * C + c] - (double)mean;
            v += d * d;
        }
        sq[c] = v;
    }
    bn_allsum(sq, C);
    for (int c = 0; c < C; c++) {
        float mean, invstd;
        bn_batch_stats(l, c, (float)(s[c] / M), sq[c] / M, M, &mean, &invstd);
        save_mean[c] = mean, save_invstd[c] = invstd;
        const float scale = l->w[c] * invstd, shift = l->b[c] - mean * scale;
        for (int i = 0; i < n; i++) {
            float v = x[(int64_t)i * C + c] * scale + shift;
            y[(int64_t)i * C + c] = relu && !(v > 0.0f) ? 0.0f : v;
        }
    }
    (*l->n_tracked)++;
}

static void bn1d_backward_sync(const nn_bn *l, float *dx, float *dy, const float *y, int relu, const float *x,
                               int n, const float *save_mean, const float *save_invstd)
{
    const int C = l->c;
    double *s = bn_scratch(C);
    for (int c = 0; c < C; c++) {
        double sdy = 0, sdyx = 0;
        for (int i = 0; i < n; i++) {
            const int64_t j = (int64_t)i * C + c;
            if (relu && !(y[j] > 0.0f)) dy[j] = 0.0f;
            sdy += dy[j];
            sdyx += (double)dy[j] * (x[j] - save_mean[c]);
        }
        l->dw[c] += (float)(sdyx * save_invstd[c]);
        l->db[c] += (float)sdy;
        s[c] = sdy, s[C + c] = sdyx;
    }
    s[2 * C] = n;
    bn_allsum(s, 2 * C + 1);
    if (!dx) return;
    const double M = s[2 * C];
    for (int c = 0; c < C; c++) {
        const float invstd = save_invstd[c], k = l->w[c] * invstd;
        const float c0 = (float)(-k * s[c] / M), c1 = (float)(-k * s[C + c] / M * invstd * invstd);
        for (int i = 0; i < n; i++) {
            const int64_t j = (int64_t)i * C + c;
            dx[j] = k * dy[j] + c1 * (x[j] - save_mean[c]) + c0;
        }
    }
}

void nn_bn_forward(nn_bn *l, float *y, const float *x, const float *res, int relu, int64_t m, int train,
                   float *save_mean, float *save_invstd)
{
    if (train && bn_allsum) {
        bn_forward_sync(l, y, x, res, relu, m, save_mean, save_invstd);
        return;
    }
#pragma omp parallel for schedule(dynamic, 1) if (l->c * m > NN_PAR_MIN)
    for (int c = 0; c < l->c; c++) {
        const float *xc = x + c * m;
        float mean, invstd;
        if (train) {
            const double mu = nn_sum(xc, m) / (double)m;
            double var = 0;
            for (int64_t i = 0; i < m; i += BLK) var += sqdev_blk(xc + i, (float)mu, (int)(m - i < BLK ? m - i : BLK));
            bn_batch_stats(l, c, mu, var / (double)m, (double)m, &mean, &invstd);
            save_mean[c] = mean;
            save_invstd[c] = invstd;
        } else {
            mean = l->mean[c];
            invstd = (float)(1.0 / sqrt((double)l->var[c] + l->eps));
            if (save_mean) save_mean[c] = mean;
            if (save_invstd) save_invstd[c] = invstd;
        }
        const float scale = l->w[c] * invstd, shift = l->b[c] - mean * scale;
        bn_apply(y + c * m, xc, res ? res + c * m : NULL, relu, m, scale, shift);
    }
    if (train) (*l->n_tracked)++;
}

void nn_bn_recompute(const nn_bn *l, float *y, const float *x, int relu, int64_t m, int train,
                     const float *save_mean, const float *save_invstd)
{
#pragma omp parallel for schedule(dynamic, 1) if (l->c * m > NN_PAR_MIN)
    for (int c = 0; c < l->c; c++) {
        /* the same float operations as nn_bn_forward: bit-identical outputs */
        float mean, invstd;
        if (train) {
            mean = save_mean[c];
            invstd = save_invstd[c];
        } else {
            mean = l->mean[c];
            invstd = (float)(1.0 / sqrt((double)l->var[c] + l->eps));
        }
        const float scale = l->w[c] * invstd, shift = l->b[c] - mean * scale;
        bn_apply(y + c * m, x + c * m, NULL, relu, m, scale, shift);
    }
}

void nn_bn_backward(const nn_bn *l, float *dx, float *dy, const float *y, int relu, const float *x,
                    int64_t m, int train, const float *save_mean, const float *save_invstd)
{
    if (train && bn_allsum) {
        bn_backward_sync(l, dx, dy, y, relu, x, m, save_mean, save_invstd);
        return;
    }
#pragma omp parallel for schedule(dynamic, 1) if (l->c * m > NN_PAR_MIN)
    for (int c = 0; c < l->c; c++) {
        float *dyc = dy + c * m;
        const float *xc = x + c * m, *yc = relu ? y + c * m : NULL;
        float mean, invstd;
        if (train) {
            mean = save_mean[c];
            invstd = save_invstd[c];
        } else {
            mean = l->mean[c];
            invstd = (float)(1.0 / sqrt((double)l->var[c] + l->eps));
        }
        double sdy = 0, sdyx = 0;
        for (int64_t i = 0; i < m; i += BLK) {
            float a, b;
            const int nb = (int)(m - i < BLK ? m - i : BLK);
            bn_grad_sums_blk(dyc + i, yc ? yc + i : NULL, xc + i, mean, nb, &a, &b);
            sdy += a;
            sdyx += b;
        }
        l->dw[c] += (float)(sdyx * invstd);
        l->db[c] += (float)sdy;
        if (!dx) continue;
        const float k = l->w[c] * invstd;
        if (train) {
            /* dx = gamma*invstd * (dy - mean(dy) - xhat * mean(dy * xhat)) */
            const float c0 = (float)(-k * sdy / (double)m);
            const float c1 = (float)(-k * sdyx / (double)m * invstd * invstd);
            bn_dx(dx + c * m, dyc, xc, m, mean, k, c1, c0);
        } else {
            bn_dx(dx + c * m, dyc, xc, m, mean, k, 0.0f, 0.0f);
        }
    }
}

void nn_bn1d_forward(nn_bn *l, float *y, const float *x, int relu, int n, int train, float *save_mean,
                     float *save_invstd)
{
    if (train && bn_allsum) {
        bn1d_forward_sync(l, y, x, relu, n, save_mean, save_invstd);
        return;
    }
    const int c_n = l->c;
    for (int c = 0; c < c_n; c++) {
        float mean, invstd;
        if (train) {
            double s = 0, v = 0;
            for (int i = 0; i < n; i++) s += x[(int64_t)i * c_n + c];
            s /= n;
            for (int i = 0; i < n; i++) {
                double d = x[(int64_t)i * c_n + c] - (double)(float)s;
                v += d * d;
            }
            bn_batch_stats(l, c, s, v / n, n, &mean, &invstd);
            save_mean[c] = mean;
            save_invstd[c] = invstd;
        } else {
            mean = l->mean[c];
            invstd = (float)(1.0 / sqrt((double)l->var[c] + l->eps));
            if (save_mean) save_mean[c] = mean;
            if (save_invstd) save_invstd[c] = invstd;
        }
        const float scale = l->w[c] * invstd, shift = l->b[c] - mean * scale;
        for (int i = 0; i < n; i++) {
            float v = x[(int64_t)i * c_n + c] * scale + shift;
            y[(int64_t)i * c_n + c] = relu && !(v > 0.0f) ? 0.0f : v;
        }
    }
    if (train) (*l->n_tracked)++;
}

void nn_bn1d_backward(const nn_bn *l, float *dx, float *dy, const float *y, int relu, const float *x, int n,
                      int train, const float *save_mean, const float *save_invstd)
{
    if (train && bn_allsum) {
        bn1d_backward_sync(l, dx, dy, y, relu, x, n, save_mean, save_invstd);
        return;
    }
    const int c_n = l->c;
    for (int c = 0; c < c_n; c++) {
        float mean, invstd;
        if (train) {
            mean = save_mean[c];
            invstd = save_invstd[c];
        } else {
            mean = l->mean[c];
            invstd = (float)(1.0 / sqrt((double)l->var[c] + l->eps));
        }
        double sdy = 0, sdyx = 0;
        for (int i = 0; i < n; i++) {
            const int64_t j = (int64_t)i * c_n + c;
            if (relu && !(y[j] > 0.0f)) dy[j] = 0.0f;
            sdy += dy[j];
            sdyx += (double)dy[j] * (x[j] - mean);
        }
        l->dw[c] += (float)(sdyx * invstd);
        l->db[c] += (float)sdy;
        if (!dx) continue;
        const float k = l->w[c] * invstd;
        const float c0 = train ? (float)(-k * sdy / n) : 0.0f;
        const float c1 = train ? (float)(-k * sdyx / n * invstd * invstd) : 0.0f;
        for (int i = 0; i < n; i++) {
            const int64_t j = (int64_t)i * c_n + c;
            dx[j] = k * dy[j] + c1 * (x[j] - mean) + c0;
        }
    }
}

/* ---------------------------------------------------------------- linear ---- */

void nn_linear_forward(const nn_linear *l, float *y, const float *x, int n)
{
    nn_gemm(0, 1, n, l->out, l->in, 1.0f, x, l->in, l->w, l->in, 0.0f, y, l->out);
    if (l->b)
        for (int i = 0; i < n; i++)
            for (int o = 0; o < l->out; o++) y[(int64_t)i * l->out + o] += l->b[o];
}

void nn_linear_backward(const nn_linear *l, float *dx, const float *dy, const float *x, int n)
{
    nn_gemm(1, 0, l->out, l->in, n, 1.0f, dy, l->out, x, l->in, 1.0f, l->dw, l->in);
    if (l->db)
        for (int o = 0; o < l->out; o++) {
            double s = 0;
            for (int i = 0; i < n; i++) s += dy[(int64_t)i * l->out + o];
            l->db[o] += (float)s;
        }
    if (dx) nn_gemm(0, 0, n, l->in, l->out, 1.0f, dy, l->out, l->w, l->in, 0.0f, dx, l->in);
}

/* ---------------------------------------------------------------- relu, pooling, dropout ---- */

NN_SIMD void nn_relu_forward(float *y, const float *x, int64_t n)
{
#pragma omp simd
    for (int64_t i = 0; i < n; i++) y[i] = x[i] > 0.0f ? x[i] : 0.0f;
}

NN_SIMD void nn_relu_backward(float *dx, const float *dy, const float *y, int64_t n)
{
#pragma omp simd
    for (int64_t i = 0; i < n; i++) dx[i] = y[i] > 0.0f ? dy[i] : 0.0f;
}

/* One output row of a 3x3 stride-2 pool over columns [ow0, ow1) whose windows lie inside the row band
 * r0 (the window's top input row, in range with the two below it): the scan order and tie/NaN rules of
 * the general loop (first maximum in row-major window order; the first NaN wins), without bounds
 * tests and as lane masks, so that the compiler vectorises across outputs. */
NN_SIMD static void pool3s2_row(float *yr, int32_t *ir, const float *xp, int w, int r0, int ow0, int ow1)
{
#pragma omp simd
    for (int ow = ow0; ow < ow1; ow++) {
        const int base = r0 * w + 2 * ow - 1;
        float best = xp[base];
        int bi = base, done = best != best;
        for (int kh = 0; kh < 3; kh++)
            for (int kw = 0; kw < 3; kw++) {
                const int o = base + kh * w + kw;
                const float v = xp[o];
                const int up = !done && (v > best || v != v);
                best = up ? v : best;
                bi = up ? o : bi;
                done = done || (up && v != v);
            }
        yr[ow] = best;
        ir[ow] = bi;
    }
}

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
/* The same row with AVX-512, 16 outputs at a time: the three columns of a window row are the even
 * lanes of 32 floats loaded at 2 ow - 1, 2 ow and 2 ow + 1; the scan order and tie/NaN rules are
 * pool3s2_row's, as lane masks.  Returns the first output it left for the caller. */
__attribute__((target("avx512f"))) static int pool3s2_row16(float *yr, int32_t *ir, const float *xp, int w, int r0,
                                                            int ow0, int ow1)
{
    const __m512i even = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
    const __m512i lane2 = _mm512_mullo_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
                                             _mm512_set1_epi32(2));
    int ow = ow0;
    for (; ow + 16 <= ow1; ow += 16) {
        const int base = r0 * w + 2 * ow - 1;
        __m512 best = _mm512_setzero_ps();
        __m512i bi = _mm512_setzero_si512();
        __mmask16 done = 0;
        for (int kh = 0; kh < 3; kh++)
            for (int kw = 0; kw < 3; kw++) {
                const int o = base + kh * w + kw;
                const __m512 v = _mm512_permutex2var_ps(_mm512_loadu_ps(xp + o), even, _mm512_loadu_ps(xp + o + 16));
                const __m512i iv = _mm512_add_epi32(_mm512_set1_epi32(o), lane2);
                const __mmask16 nan = _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
                if (kh == 0 && kw == 0) {
                    best = v, bi = iv, done = nan;
                    continue;
                }
                const __mmask16 up = (__mmask16)(~done & (_mm512_cmp_ps_mask(v, best, _CMP_GT_OQ) | nan));
                best = _mm512_mask_blend_ps(up, best, v);
                bi = _mm512_mask_blend_epi32(up, bi, iv);
                done = (__mmask16)(done | (up & nan));
            }
        _mm512_storeu_ps(yr + ow, best);
        _mm512_storeu_si512(ir + ow, bi);
    }
    return ow;
}
static int have_avx512f(void) { return __builtin_cpu_supports("avx512f"); }
#else
static int pool3s2_row16(float *yr, int32_t *ir, const float *xp, int w, int r0, int ow0, int ow1) { return ow0; }
static int have_avx512f(void) { return 0; }
#endif

void nn_maxpool_forward(float *y, int32_t *idx, const float *x, int64_t planes, int h, int w, int k,
                        int stride, int pad)
{
    const int ho = nn_out_size(h, k, stride, pad), wo = nn_out_size(w, k, stride, pad);
    /* ResNet's stem pool (3x3, stride 2, pad 1): interior windows take the vectorised row */
    const int fast = k == 3 && stride == 2 && pad == 1;
    const int ow_lo = 1, ow_hi = (w - 2) / 2 + 1;   /* 2 ow + 1 <= w - 1 */
    const int vec = fast && have_avx512f();
#pragma omp parallel for schedule(static) if (planes * h * w > NN_PAR_MIN)
    for (int64_t pl = 0; pl < planes; pl++) {
        const float *xp = x + pl * h * w;
        float *yp = y + pl * ho * wo;
        int32_t *ip = idx + pl * ho * wo;
        for (int oh = 0; oh < ho; oh++) {
            const int inner = fast && oh >= 1 && 2 * oh + 1 <= h - 1 && ow_hi > ow_lo;
            if (inner) {
                const int hi = ow_hi < wo ? ow_hi : wo;
                /* the last load of a 16-wide step reaches 2 ow + 32 of the window's bottom row: stop
                 * the wide steps where that would leave the plane */
                int hi16 = hi;
                while (hi16 > ow_lo && (2 * oh + 1) * w + 2 * (hi16 - 1) + 32 >= (int64_t)h * w) hi16--;
                const int done = vec ? pool3s2_row16(yp + oh * wo, ip + oh * wo, xp, w, 2 * oh - 1, ow_lo, hi16) : ow_lo;
                pool3s2_row(yp + oh * wo, ip + oh * wo, xp, w, 2 * oh - 1, done, hi);
            }
            for (int ow = 0; ow < wo; ow++) {
                if (inner && ow >= ow_lo && ow < ow_hi) continue;
                float best = -INFINITY;
                int bi = -1;
                for (int kh = 0; kh < k; kh++) {
                    const int ih = oh * stride - pad + kh;
                    if (ih < 0 || ih >= h) continue;
                    for (int kw = 0; kw < k; kw++) {
                        const int iw = ow * stride - pad + kw;
                        if (iw < 0 || iw >= w) continue;
                        const float v = xp[ih * w + iw];
                        /* NaN propagates, as torch's max pooling */
                        if (bi < 0 || v > best || isnan(v)) {
                            best = v;
                            bi = ih * w + iw;
                            if (isnan(v)) goto found;
                        }
                    }
                }
            found:
                yp[oh * wo + ow] = best;
                ip[oh * wo + ow] = bi;
            }
        }
    }
}

void nn_maxpool_backward(float *dx, const float *dy, const int32_t *idx, int64_t planes, int h, int w,
                         int ho, int wo)
{
#pragma omp parallel for schedule(static) if (planes * h * w > NN_PAR_MIN)
    for (int64_t pl = 0; pl < planes; pl++) {
        float *dp = dx + pl * h * w;
        const float *gp = dy + pl * ho * wo;
        const int32_t *ip = idx + pl * ho * wo;
        memset(dp, 0, sizeof(float) * h * w);
        for (int i = 0; i < ho * wo; i++) dp[ip[i]] += gp[i];
    }
}

void nn_avgpool_forward(float *y, const float *x, int c, int n, int64_t hw)
{
#pragma omp parallel for schedule(static) if ((int64_t)c * n * hw > NN_PAR_MIN)
    for (int ci = 0; ci < c; ci++)
        for (int ni = 0; ni < n; ni++)
            y[(int64_t)ni * c + ci] = (float)(nn_sum(x + ((int64_t)ci * n + ni) * hw, hw) / (double)hw);
}

void nn_avgpool_backward(float *dx, const float *dy, int c, int n, int64_t hw)
{
#pragma omp parallel for schedule(static) if ((int64_t)c * n * hw > NN_PAR_MIN)
    for (int ci = 0; ci < c; ci++)
        for (int ni = 0; ni < n; ni++) {
            const float g = dy[(int64_t)ni * c + ci] / (float)hw;
            float *d = dx + ((int64_t)ci * n + ni) * hw;
            for (int64_t i = 0; i < hw; i++) d[i] = g;
        }
}

void nn_dropout_forward(float *y, float *mask, const float *x, int64_t n, float p, util_rng *rng)
{
    const float keep = p < 1.0f ? 1.0f / (1.0f - p) : 0.0f;
    for (int64_t i = 0; i < n; i++) {
        mask[i] = util_rng_uniform(rng) < p ? 0.0f : keep;
        y[i] = x[i] * mask[i];
    }
}

void nn_dropout_backward(float *dx, const float *dy, const float *mask, int64_t n)
{
    for (int64_t i = 0; i < n; i++) dx[i] = dy[i] * mask[i];
}
