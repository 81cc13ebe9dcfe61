/* nn_internal.h: helpers shared by the lib/nn_*.c files, not part of the engine's interface. */
#ifndef EARSIGHT_NN_INTERNAL_H
#define EARSIGHT_NN_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "nn.h"

/* Hot elementwise loops are compiled three times and the best version for the running CPU is picked
 * when the program starts (GNU ifunc), so one binary uses AVX-512 where it exists and never executes
 * it where it does not. */
#define NN_SIMD __attribute__((target_clones("avx512f", "avx2", "default")))

/* Loops over fewer values than this run on one thread: starting a team costs microseconds, and far
 * more when the cores are shared with other processes (a descheduled thread stalls the barrier). */
#define NN_PAR_MIN ((int64_t)1 << 15)

/* Sums accumulated in float over short blocks (vectorised) and in double across blocks, so that a
 * channel of 10^6 values keeps ~1e-7 relative accuracy.  The order is fixed: results do not depend on
 * the thread count. */
double nn_sum(const float *x, int64_t n);
double nn_sumsq(const float *x, int64_t n);
double nn_dot(const float *x, const float *y, int64_t n);

/* BLIS's native sgemm micro-kernel, driven directly by the convolution code so that columns are packed
 * straight from the image into the kernel's panel format (one copy instead of im2col + BLIS packing).
 * Panels: a micro-panel of width W (MR or NR) and depth k holds k groups of W consecutive floats. */
typedef struct {
    int mr, nr, kc;   /* micro-tile and depth blocking */
    int sb;           /* spatial positions per packing block (a multiple of the spatial tile width) */
    int spatial_a;    /* 1: spatial positions are the kernel's A (MR) side, C tiles column-stored */
    size_t buf_floats;  /* per-thread packing buffer: (sb + 1040) * kc */
} nn_ukinfo;
/* NULL when the kernel or the packing buffers are unavailable (callers fall back to im2col + GEMM). */
const nn_ukinfo *nn_ukernel_info(void);
/* 0: use im2col + BLIS GEMM everywhere (tests compare the two paths); 1: default. */
void nn_ukernel_enable(int on);
/* This thread's packing buffer of buf_floats floats (64-byte aligned). */
float *nn_pack_buffer(void);
/* C (m x n tile, m <= MR, n <= NR; element (i, j) at c[i*rs_c + j*cs_c]) = A B + beta C, with A an MR-wide
 * and B an NR-wide packed micro-panel of depth k.  beta 0 never reads C. */
void nn_ukernel(int m, int n, int k, const float *a, const float *b, float beta, float *c, int64_t rs_c,
                int64_t cs_c);
/* Workspace floats a convolution needs to run forward and backward on the micro-kernel (packed kernels);
 * with less it falls back to im2col + GEMM. */
size_t nn_conv_ws_fast(const nn_conv *l, int x_nchw);

/* bf16 GEMM whose B operand is produced block by block by a callback (the convolutions' implicit
 * im2col, so that no column matrix is written to memory): C (m x n) = A (m x k, row-major, lda) B + beta C.
 * fill(ctx, t, ldt, r0, nr, s0, sl) writes nr rows r0.. of sl values s0.. row-major into t (row stride ldt):
 * bt 0: rows are depth (B rows), values columns of C; bt 1: rows are columns of C, values depth. */
typedef void (*nn_bf16_fill)(void *ctx, float *t, int64_t ldt, int r0, int nr, int64_t s0, int sl);
void nn_bf16_gemm_fill(int m, int n, int k, const float *a, int64_t lda, int bt, nn_bf16_fill fill, void *ctx,
                       float beta, float *c, int64_t ldc);
/* d[j] = bf16 lo[j] | bf16 hi[j] << 16 (hi NULL: 0), j < n: two rows as depth pairs. */
void nn_bf16_pair_rows(uint32_t *d, const float *lo, const float *hi, int64_t n);
/* The same with B delivered already paired: fill(ctx, dst, r0, np, s0, sl) writes depth pairs r0 .. r0+np-1
 * of columns s0 .. s0+sl-1 as np groups of NN_BF16_NR words (dst[r*NN_BF16_NR + j] = bf16 B(2(r0+r), s0+j) |
 * bf16 B(2(r0+r)+1, s0+j) << 16), words sl .. NN_BF16_NR-1 of each group 0.  k even. */
#define NN_BF16_NR 64
typedef void (*nn_bf16_fill_words)(void *ctx, uint32_t *dst, int r0, int np, int64_t s0, int sl);
void nn_bf16_gemm_words(int m, int n, int k, const float *a, int64_t lda, nn_bf16_fill_words fill, void *ctx,
                        float beta, float *c, int64_t ldc);
/* A convolution's B operand for nn_bf16_gemm_words, depth pair r = (channel pair r / k^2, tap r % k^2): the input as pairs of
 * channels with a zero border of pad, xp[cp][n][pad + i][pad + j] = bf16 x(2cp, n, i, j) | bf16 x(2cp+1, n,
 * i, j) << 16 (hp = h + 2 pad, wp = w + 2 pad, plane = n hp wp words per pair), so that each group of a
 * panel is a few straight copies of xp words. */
typedef struct {
    const uint32_t *xp;
    int64_t plane;
    int cpairs, k, stride, hp, wp, ho, wo;
} nn_bf16_taps;
void nn_bf16_fill_taps(void *taps, uint32_t *dst, int r0, int np, int64_t s0, int sl);
/* A convolution's weight gradient dw += dy . col^T as nn_bf16_gemm_words(c_out, K, cols, dy, ...): depth
 * pair r = output positions 2r, 2r+1, column j = kernel row (channel j / k^2, tap j % k^2), gathered from
 * the input in bf16 with a zero border, xb[c][n][pad + i][pad + j] (plane = n hp wp elements, and at least
 * one spare element after the last plane: a gather reads 32 bits at each 16-bit position); c_in plane < 2^31. */
typedef struct {
    const uint16_t *xb;
    int64_t plane, cols;
    int k, stride, hp, wp, ho, wo;
} nn_bf16_dwtaps;
void nn_bf16_fill_dw(void *dwtaps, uint32_t *dst, int r0, int np, int64_t j0, int jl);
/* d[j] = bf16 s[j], j < n. */
void nn_bf16_round_row(uint16_t *d, const float *s, int64_t n);

/* The bf16 GEMM's kernel: 1 when AMX tiles run it (the CPU has AMX-BF16, Linux grants the tile state,
 * EARSIGHT_NO_AMX is unset), 0 for AVX512_BF16's vdpbf16ps.  nn_bf16_amx_enable(0) forces vdpbf16ps and
 * (1) allows AMX again (tests run both); it returns nn_bf16_amx() and lasts across nn_set_precision. */
int nn_bf16_amx(void);
int nn_bf16_amx_enable(int on);

/* Single-threaded nn_sgemm (callers that spread independent products over threads themselves). */
void nn_sgemm1(int ta, int tb, int m, int n, int k, float alpha, const float *a, int64_t lda, const float *b,
               int64_t ldb, float beta, float *c, int64_t ldc);

/* Winograd convolution (nn_winograd.c) for 3x3, stride-1, pad-1 convolutions in fp32.  x element
 * (c, n, i, j) at x[c*sc + n*sn + i*w + j]; y and dy channel-major (C, N, H, W).  Each returns 0 when it
 * does not apply (shape, precision, nn_set_conv_algo, workspace too small) and the caller falls back. */
/* Tile size 2 or 4 that a forward (dw 0) or weight gradient (dw 1) on n images would use, or 0. */
int nn_wino_tile(const nn_conv *l, int h, int w, int n, int dw);
void nn_wino_set_tile(int m);                        /* 2 or 4: force that tile size; 0: automatic */
/* Workspace floats for forward, input gradient and weight gradient on n images in one chunk. */
size_t nn_wino_ws(const nn_conv *l, int h, int w, int n);
/* y = conv(x) (beta 0) or y += conv(x) (beta 1). */
int nn_wino_forward(const nn_conv *l, float *y, float beta, const float *x, int64_t sc, int64_t sn, int n, int h,
                    int w, float *ws, size_t cap);
/* l->dw += weight gradient from dy. */
int nn_wino_dw(const nn_conv *l, const float *dy, const float *x, int64_t sc, int64_t sn, int n, int h, int w,
               float *ws, size_t cap);

#endif
