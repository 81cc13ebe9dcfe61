/* nn_bf16.c: the engine's bfloat16 GEMM for --precision bf16: C (fp32) = alpha op(A) op(B) + beta C with
 * both operands rounded to bf16 (round to nearest even, as torch's autocast casts) and every product
 * summed in fp32.  Two kernels: AMX tiles (TDPBF16PS, Intel Sapphire Rapids and later) where the CPU and
 * Linux allow them, else AVX512_BF16's vdpbf16ps.  Each is compiled for its ISA alone (target attribute)
 * and only runs after cpuid says the CPU has it; the rest of the build stays generic. */
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#include <immintrin.h>
#define HAVE_X86 1
#endif
#if defined(__x86_64__) && defined(__linux__)
#include <setjmp.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>
#define HAVE_AMX 1
#endif

#include "nn.h"
#include "nn_internal.h"

/* Blocking: a B micro-panel (KC x NR bf16, 32 KB) stays in L1 while the MR-row panels of an A block
 * (MC x KC, 96 KB) stream from L2; a B block is KC x NC (512 KB). */
#define MR 6
#define NR NN_BF16_NR      /* 64 */
#define KC 256            /* even: depth is consumed in pairs */
#define MC 192            /* multiple of MR */
#define NC 1024           /* multiple of NR */
#define MAX_THREADS 256
#define SMALL_GEMM (1 << 21)   /* multiply-adds below which a GEMM stays on one thread (as nn_sgemm) */
#define AMR 32            /* AMX micro-tile: 2 x 2 tiles of 16 x 16; KC, AKC and MC are multiples of 32 */
/* AMX blocks are deeper: a micro-tile's C goes in and out of the tiles once per depth block, which at KC
 * costs as much as the products.  Depth is split into equal blocks of at most AKC (whole tiles), columns in
 * blocks of ANC so that the B block (AKC/2 x ANC words, 1 MB) stays in L2.  Measured, ResNet-18 bf16 training
 * at 2 threads: KC 256 74, AKC 1024 / ANC 512 82-85, AKC 2048 / ANC 256 84-86 images per CPU-second x 2;
 * AKC 512 balanced 79. */
#define AKC 2048
#define ANC 256
#define ANR 32

static int precision = NN_FP32;

/* Depth pairs of a depth block as the AMX kernel stores them: padded to whole tiles of 16. */
static inline int depth_pairs(int kl) { return ((kl + 1) / 2 + 15) / 16 * 16; }
static uint32_t *bbuf[MAX_THREADS];   /* per thread: packed B block, kc/2 x nc words */
static uint32_t *abuf[MAX_THREADS];   /* per thread: packed A block, MC x kc/2 words */
static float *tbuf[MAX_THREADS];      /* per thread: one fp32 B panel from a fill callback, kc x NR */
static int n_buf;

uint16_t nn_bf16_round(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40);   /* NaN stays NaN */
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

float nn_bf16_to_float(uint16_t h)
{
    const uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

int nn_cpu_has_bf16(void)
{
    const char *e = getenv("EARSIGHT_NO_BF16");
    if (e && *e && strcmp(e, "0") != 0) return 0;   /* pretend the CPU lacks it (tests, AVX2 runs) */
#ifdef HAVE_X86
    unsigned a, b, c, d;
    if (!util_cpu_has_avx512f() || __get_cpuid_max(0, NULL) < 7) return 0;
    __cpuid_count(7, 0, a, b, c, d);
    if (!(b & (1u << 30)) || !(b & (1u << 31))) return 0;   /* AVX512BW, AVX512VL */
    if (a < 1) return 0;
    __cpuid_count(7, 1, a, b, c, d);
    return (a >> 5) & 1u;                                  /* AVX512_BF16 */
#else
    return 0;
#endif
}

/* AMX: the CPU has the tiles and TDPBF16PS (cpuid), the OS saves the tile state (XCR0 bits 17-18), Linux
 * grants this process the 8 KB of tile data (arch_prctl ARCH_REQ_XCOMP_PERM, since 5.16), and a first
 * tile instruction runs (under valgrind it raises SIGILL, which is caught here).  Asked once. */
static int amx_want = 1;   /* nn_bf16_amx_enable */
static int amx;            /* 1: this precision's GEMMs run on AMX */
#ifdef HAVE_AMX
#define AMX_TARGET __attribute__((target("amx-tile,amx-bf16,avx512bf16,avx512f,avx512bw,avx512vl")))

/* LDTILECFG's 64 bytes: palette 1, then bytes per row and rows of each tile.  All eight tiles are 16 rows
 * of 64 bytes: C tiles 0-3 (16 x 16 fp32), A tiles 4-5 (16 rows x 32 bf16), B tiles 6-7 (16 pairs x 16). */
static const struct {
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} tile_cfg = {1, 0, {0}, {64, 64, 64, 64, 64, 64, 64, 64}, {16, 16, 16, 16, 16, 16, 16, 16}};

AMX_TARGET static void tiles_on(void) { _tile_loadconfig(&tile_cfg); }
AMX_TARGET static void tiles_off(void) { _tile_release(); }
AMX_TARGET static void tiles_probe(void)
{
    tiles_on();
    _tile_zero(0);
    tiles_off();
}

static sigjmp_buf probe_env;
static void probe_trap(int sig)
{
    (void)sig;
    siglongjmp(probe_env, 1);
}

static int amx_detect(void)
{
    unsigned a, b, c, d, lo, hi;
    if (__get_cpuid_max(0, NULL) < 7) return 0;
    __cpuid_count(7, 0, a, b, c, d);
    if (!(d & (1u << 24)) || !(d & (1u << 22))) return 0;                   /* AMX-TILE, AMX-BF16 */
    if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & (1u << 27))) return 0;     /* OSXSAVE: xgetbv exists */
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    if ((lo & (3u << 17)) != (3u << 17)) return 0;                          /* XTILECFG, XTILEDATA */
    if (syscall(SYS_arch_prctl, 0x1023 /* ARCH_REQ_XCOMP_PERM */, 18 /* XFEATURE_XTILEDATA */) != 0) return 0;
    struct sigaction sa, old;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = probe_trap;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGILL, &sa, &old) < 0) return 0;
    volatile int ok = 0;
    if (!sigsetjmp(probe_env, 1)) {
        tiles_probe();
        ok = 1;
    }
    sigaction(SIGILL, &old, NULL);
    return ok;
}
#endif

/* AMX usable now: hardware and OS (asked once) and EARSIGHT_NO_AMX unset (read each time, like EARSIGHT_NO_BF16). */
static int amx_available(void)
{
    const char *e = getenv("EARSIGHT_NO_AMX");
    if (e && *e && strcmp(e, "0") != 0) return 0;
#ifdef HAVE_AMX
    static int hw = -1;
    if (hw < 0) hw = amx_detect();
    return hw;
#else
    return 0;
#endif
}

int nn_bf16_amx(void) { return precision == NN_BF16 ? amx : amx_want && nn_cpu_has_bf16() && amx_available(); }

int nn_bf16_amx_enable(int on)
{
    amx_want = on;
    amx = on && amx_available();
    return amx;
}

static int alloc_buffers(int n)
{
    for (int t = n_buf; t < n && t < MAX_THREADS; t++) {
        bbuf[t] = aligned_alloc(64, (size_t)(KC * NC > AKC * ANC ? KC * NC : AKC * ANC) / 2 * 4);
        abuf[t] = aligned_alloc(64, (size_t)MC * AKC / 2 * 4);
        tbuf[t] = aligned_alloc(64, (size_t)AKC * NR * 4);
        if (!bbuf[t] || !abuf[t] || !tbuf[t]) {
            free(bbuf[t]), free(abuf[t]), free(tbuf[t]);
            bbuf[t] = abuf[t] = NULL, tbuf[t] = NULL;
            return -1;
        }
        n_buf = t + 1;
    }
    return 0;
}

const char *nn_precision_name(int p) { return p == NN_BF16 ? "bf16" : p == NN_FP32 ? "fp32" : NULL; }

int nn_precision_from_name(const char *s)
{
    if (!strcmp(s, "fp32")) return NN_FP32;
    if (!strcmp(s, "bf16")) return NN_BF16;
    return -1;
}

int nn_set_precision(int p, struct util_err *err)
{
    if (p == NN_FP32) {
        precision = NN_FP32;
        return 0;
    }
    if (p != NN_BF16) {
        util_err_set(err, "unknown precision %d", p);
        return -1;
    }
    if (!nn_cpu_has_bf16()) {
        util_err_set(err, "--precision bf16: this CPU has no AVX512_BF16 (use --precision fp32)");
        return -1;
    }
    const int t = nn_threads() > MAX_THREADS ? MAX_THREADS : nn_threads();
    if (alloc_buffers(t) < 0) {
        util_err_set(err, "bf16 packing buffers: out of memory");
        return -1;
    }
    amx = amx_want && amx_available();
    precision = NN_BF16;
    return 0;
}

int nn_precision(void) { return precision; }

#ifdef HAVE_X86
#define BF16_TARGET __attribute__((target("avx512bf16,avx512f,avx512bw,avx512vl")))

static inline uint32_t pair(float lo, float hi) { return nn_bf16_round(lo) | (uint32_t)nn_bf16_round(hi) << 16; }

/* Vector round-to-nearest-even of 16 floats to bf16 in the low 16 bits of each lane (as nn_bf16_round). */
BF16_TARGET static inline __m512i round16(__m512 v)
{
    const __m512i u = _mm512_castps_si512(v);
    const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
    __m512i r = _mm512_srli_epi32(_mm512_add_epi32(_mm512_add_epi32(u, _mm512_set1_epi32(0x7fff)), lsb), 16);
    const __mmask16 nan = _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
    return _mm512_mask_or_epi32(r, nan, _mm512_srli_epi32(u, 16), _mm512_set1_epi32(0x40));
}

/* out[i] = bf16 src[2i] | bf16 src[2i+1] << 16, i < 16: 32 consecutive floats as 16 depth pairs. */
BF16_TARGET static inline void pairs16(uint32_t *out, const float *src)
{
    const __m512i v0 = round16(_mm512_loadu_ps(src)), v1 = round16(_mm512_loadu_ps(src + 16));
    /* the bf16 of lane l sits in 16-bit word 2l: gather words 0, 2, .., 62 of (v0, v1) in order */
    const __m512i idx = _mm512_set_epi16(62, 60, 58, 56, 54, 52, 50, 48, 46, 44, 42, 40, 38, 36, 34, 32, 30, 28, 26,
                                         24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
    _mm512_storeu_si512(out, _mm512_permutex2var_epi16(v0, idx, v1));
}

/* dst[i*ldd + j] = pair i of row j (bf16 src[j*lds + 2i] | src[j*lds + 2i+1] << 16), i, j < 16: pairs16 of
 * 16 rows, transposed as 16 x 16 words in registers (unpack 32- and 64-bit halves, then 128-bit lanes). */
BF16_TARGET static void pairs16x16(uint32_t *dst, int64_t ldd, const float *src, int64_t lds)
{
    __m512i r[16], t[16], u[16];
    for (int j = 0; j < 16; j++) {
        pairs16((uint32_t *)&r[j], src + j * lds);
    }
    for (int j = 0; j < 16; j += 2) {
        t[j] = _mm512_unpacklo_epi32(r[j], r[j + 1]);
        t[j + 1] = _mm512_unpackhi_epi32(r[j], r[j + 1]);
    }
    /* u[4g + q], lane L: column 4L + q of rows 4g .. 4g+3 */
    for (int g = 0; g < 4; g++) {
        const __m512i *tg = t + 4 * g;
        u[4 * g] = _mm512_unpacklo_epi64(tg[0], tg[2]);
        u[4 * g + 1] = _mm512_unpackhi_epi64(tg[0], tg[2]);
        u[4 * g + 2] = _mm512_unpacklo_epi64(tg[1], tg[3]);
        u[4 * g + 3] = _mm512_unpackhi_epi64(tg[1], tg[3]);
    }
    for (int q = 0; q < 4; q++) {
        const __m512i v0 = _mm512_shuffle_i32x4(u[q], u[4 + q], 0x88), w0 = _mm512_shuffle_i32x4(u[8 + q], u[12 + q], 0x88);
        const __m512i v1 = _mm512_shuffle_i32x4(u[q], u[4 + q], 0xdd), w1 = _mm512_shuffle_i32x4(u[8 + q], u[12 + q], 0xdd);
        _mm512_storeu_si512(dst + q * ldd, _mm512_shuffle_i32x4(v0, w0, 0x88));
        _mm512_storeu_si512(dst + (4 + q) * ldd, _mm512_shuffle_i32x4(v1, w1, 0x88));
        _mm512_storeu_si512(dst + (8 + q) * ldd, _mm512_shuffle_i32x4(v0, w0, 0xdd));
        _mm512_storeu_si512(dst + (12 + q) * ldd, _mm512_shuffle_i32x4(v1, w1, 0xdd));
    }
}

/* Mask of the first n of 16 lanes (n may be <= 0 or > 16). */
static inline __mmask16 first_n(int n) { return n >= 16 ? (__mmask16)0xffff : n <= 0 ? 0 : (__mmask16)((1u << n) - 1); }

BF16_TARGET void nn_bf16_pair_rows(uint32_t *d, const float *lo, const float *hi, int64_t n)
{
    int64_t j = 0;
    for (; j < n; j += 16) {   /* the rows are short (a feature map's width): the tail masked, not scalar */
        const __mmask16 k = n - j >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - j)) - 1);
        const __m512i l = round16(_mm512_maskz_loadu_ps(k, lo + j));
        const __m512i h = hi ? round16(_mm512_maskz_loadu_ps(k, hi + j)) : _mm512_setzero_si512();
        _mm512_mask_storeu_epi32(d + j, k, _mm512_or_si512(l, _mm512_slli_epi32(h, 16)));
    }
}

/* d[j] = s[j], j < n, 16 words at a time (the runs are mostly shorter than a memcpy call is worth). */
BF16_TARGET static inline void copy_words(uint32_t *d, const uint32_t *s, int n)
{
    for (int j = 0; j < n; j += 16) {
        const __mmask16 k = first_n(n - j);
        _mm512_mask_storeu_epi32(d + j, k, _mm512_maskz_loadu_epi32(k, s + j));
    }
}

/* d[j] = s[2j], j < n: 32 words loaded, the even ones kept. */
BF16_TARGET static inline void copy_words_s2(uint32_t *d, const uint32_t *s, int n)
{
    const __m512i even = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
    for (int j = 0; j < n; j += 16) {
        const int left = n - j, words = 2 * left - 1;   /* the last one needed is s[2(n-1)] */
        const __m512i v0 = _mm512_maskz_loadu_epi32(first_n(words), s + 2 * j);
        const __m512i v1 = _mm512_maskz_loadu_epi32(first_n(words - 16), s + 2 * j + 16);
        _mm512_mask_storeu_epi32(d + j, first_n(left), _mm512_permutex2var_epi32(v0, even, v1));
    }
}

BF16_TARGET void nn_bf16_fill_taps(void *taps, uint32_t *dst, int r0, int np, int64_t s0, int sl)
{
    const nn_bf16_taps *c = taps;
    const int64_t hwo = (int64_t)c->ho * c->wo, img = (int64_t)c->hp * c->wp;
    int64_t base[NR];
    int off[NR], len[NR], runs = 0;
    for (int o = 0; o < sl; runs++) {   /* one run per output row met: image ni, row oh, from column ow0 */
        const int64_t s = s0 + o;
        const int ni = (int)(s / hwo), oh = (int)(s % hwo / c->wo), ow0 = (int)(s % c->wo);
        const int rl = c->wo - ow0 < sl - o ? c->wo - ow0 : sl - o;
        base[runs] = ni * img + (int64_t)oh * c->stride * c->wp + (int64_t)ow0 * c->stride;
        off[runs] = o, len[runs] = rl;
        o += rl;
    }
    const int k2 = c->k * c->k, st = c->stride;
    int tap = r0 % k2, cp = r0 / k2;
    for (int r = 0; r < np; r++) {
        const uint32_t *src = c->xp + cp * c->plane + (int64_t)(tap / c->k) * c->wp + tap % c->k;
        uint32_t *d = dst + (int64_t)r * NR;
        if (st == 1)
            for (int q = 0; q < runs; q++) copy_words(d + off[q], src + base[q], len[q]);
        else if (st == 2)
            for (int q = 0; q < runs; q++) copy_words_s2(d + off[q], src + base[q], len[q]);
        else
            for (int q = 0; q < runs; q++)
                for (int j = 0; j < len[q]; j++) d[off[q] + j] = src[base[q] + (int64_t)j * st];
        if (sl < NR) memset(d + sl, 0, sizeof(uint32_t) * (NR - sl));
        if (++tap == k2) tap = 0, cp++;
    }
}

BF16_TARGET void nn_bf16_round_row(uint16_t *d, const float *s, int64_t n)
{
    int64_t j = 0;
    for (; j < n; j += 16) {
        const __mmask16 k = n - j >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - j)) - 1);
        _mm512_mask_cvtepi32_storeu_epi16(d + j, k, round16(_mm512_maskz_loadu_ps(k, s + j)));
    }
}

/* Output positions in order as offsets of their windows' first elements in one plane of xb. */
typedef struct {
    int64_t at;   /* offset of the current position */
    int oh, ow;
} dw_walk;

static inline dw_walk dw_start(const nn_bf16_dwtaps *c, int64_t s)
{
    const int64_t hwo = (int64_t)c->ho * c->wo;
    const int oh = (int)(s % hwo / c->wo), ow = (int)(s % c->wo);
    return (dw_walk){s / hwo * c->hp * c->wp + ((int64_t)oh * c->wp + ow) * c->stride, oh, ow};
}

static inline void dw_next(const nn_bf16_dwtaps *c, dw_walk *p)
{
    p->at += c->stride;
    if (++p->ow < c->wo) return;
    p->at += (int64_t)c->stride * c->wp - (int64_t)c->wo * c->stride;   /* to the next output row */
    p->ow = 0;
    if (++p->oh < c->ho) return;
    p->at += (int64_t)(c->hp - c->ho * c->stride) * c->wp;              /* to the next image */
    p->oh = 0;
}

/* Word j of group r = x at tap j0+j of positions 2(r0+r) and 2(r0+r)+1: one gather of 32-bit words reads
 * both halves of a pair when the two positions are neighbours in one row of xb (stride 1), else two gathers
 * are merged.  The tap offsets are the gather's indices; the position moves its base. */
BF16_TARGET void nn_bf16_fill_dw(void *ctx, uint32_t *dst, int r0, int np, int64_t j0, int jl)
{
    const nn_bf16_dwtaps *c = ctx;
    const int k2 = c->k * c->k;
    int32_t off[NR] __attribute__((aligned(64)));
    for (int j = 0; j < NR; j++) {
        const int64_t tap = j0 + j;
        const int t = (int)(tap % k2);
        off[j] = j < jl ? (int32_t)(tap / k2 * c->plane + (int64_t)(t / c->k) * c->wp + t % c->k) : 0;
    }
    const __m512i lo16 = _mm512_set1_epi32(0xffff);
    const __m512i z = _mm512_setzero_si512();
    dw_walk p = dw_start(c, 2 * (int64_t)r0);
    for (int r = 0; r < np; r++) {
        const int64_t s = 2 * ((int64_t)r0 + r), b0 = p.at;
        dw_next(c, &p);
        const int has_hi = s + 1 < c->cols;
        const int64_t b1 = p.at;
        if (has_hi) dw_next(c, &p);
        const int joint = has_hi && b1 == b0 + 1;
        uint32_t *d = dst + (int64_t)r * NR;
        for (int v = 0; v < NR / 16; v++) {
            const __mmask16 m = first_n(jl - 16 * v);
            const __m512i ix = _mm512_load_si512(off + 16 * v);
            __m512i w = _mm512_mask_i32gather_epi32(z, m, ix, c->xb + b0, 2);
            if (!joint) {
                const __m512i hi = has_hi ? _mm512_mask_i32gather_epi32(z, m, ix, c->xb + b1, 2) : z;
                w = _mm512_or_si512(_mm512_and_si512(w, lo16), _mm512_slli_epi32(hi, 16));
            }
            _mm512_store_si512(d + 16 * v, w);
        }
    }
}

/* B block rows p0 .. p0+kl-1, columns j0 .. j0+nl-1 into panels of NR columns: panel q holds kl/2 (rounded
 * up) groups of NR words, word j of group r = bf16 B(p0+2r, j) | bf16 B(p0+2r+1, j) << 16; zero padded. */
BF16_TARGET static void pack_b(uint32_t *dst, int tb, const float *b, int64_t ldb, int p0, int kl, int j0, int nl)
{
    const int kp = (kl + 1) / 2;
    for (int q = 0; q * NR < nl; q++) {
        uint32_t *pd = dst + (int64_t)q * kp * NR;
        const int len = nl - q * NR < NR ? nl - q * NR : NR, jq = j0 + q * NR;
        if (!tb) {
            for (int r = 0; r < kp; r++) {
                const int p = p0 + 2 * r;
                const float *r0 = b + (int64_t)p * ldb + jq, *r1 = 2 * r + 1 < kl ? r0 + ldb : NULL;
                uint32_t *d = pd + (int64_t)r * NR;
                nn_bf16_pair_rows(d, r0, r1, len);
                for (int j = len; j < NR; j++) d[j] = 0;
            }
        } else {
            /* B(p, j) = b[j*ldb + p]: read along p.  16 columns x 16 depth pairs at a time are turned
             * into rows of the panel by an in-register transpose; the rest one word per group. */
            const int rv = kl / 32 * 16;   /* depth pairs in whole groups of 32 values */
            int jv = 0;
            for (; jv + 16 <= len; jv += 16)
                for (int r = 0; r < rv; r += 16) pairs16x16(pd + (int64_t)r * NR + jv, NR, b + (int64_t)(jq + jv) * ldb + p0 + 2 * r, ldb);
            for (int j = 0; j < NR; j++) {
                if (j >= len) {
                    for (int r = 0; r < kp; r++) pd[(int64_t)r * NR + j] = 0;
                    continue;
                }
                const float *src = b + (int64_t)(jq + j) * ldb + p0;
                int r = j < jv ? rv : 0;
                for (; 2 * r + 32 <= kl; r += 16) {
                    uint32_t tmp[16];
                    pairs16(tmp, src + 2 * r);
                    for (int i = 0; i < 16; i++) pd[(int64_t)(r + i) * NR + j] = tmp[i];
                }
                for (; r < kp; r++) pd[(int64_t)r * NR + j] = pair(src[2 * r], 2 * r + 1 < kl ? src[2 * r + 1] : 0.0f);
            }
        }
    }
}

/* A block rows i0 .. i0+ml-1, depth p0 .. p0+kl-1 into panels of MR rows: panel q holds kl/2 groups of MR
 * words (bf16 A(i, p0+2r) | bf16 A(i, p0+2r+1) << 16); rows past ml are zero. */
BF16_TARGET static void pack_a(uint32_t *dst, int ta, const float *a, int64_t lda, int i0, int ml, int p0, int kl)
{
    const int kp = (kl + 1) / 2;
    for (int q = 0; q * MR < ml; q++) {
        uint32_t *pd = dst + (int64_t)q * kp * MR;
        for (int i = 0; i < MR; i++) {
            const int ii = q * MR + i;
            if (ii >= ml) {
                for (int r = 0; r < kp; r++) pd[r * MR + i] = 0;
                continue;
            }
            int r = 0;
            if (!ta)
                for (; 2 * r + 32 <= kl; r += 16) {
                    uint32_t tmp[16];
                    pairs16(tmp, a + (int64_t)(i0 + ii) * lda + p0 + 2 * r);
                    for (int t = 0; t < 16; t++) pd[(r + t) * MR + i] = tmp[t];
                }
            for (; r < kp; r++) {
                const int p = p0 + 2 * r;
                float v0, v1 = 0.0f;
                if (!ta) {
                    const float *src = a + (int64_t)(i0 + ii) * lda + p;
                    v0 = src[0];
                    if (2 * r + 1 < kl) v1 = src[1];
                } else {
                    v0 = a[(int64_t)p * lda + i0 + ii];
                    if (2 * r + 1 < kl) v1 = a[(int64_t)(p + 1) * lda + i0 + ii];
                }
                pd[r * MR + i] = pair(v0, v1);
            }
        }
    }
}

/* C tile (mr x nr, row stride ldc) = alpha * Apanel . Bpanel + (first ? beta C : C); beta 0 never reads C.
 * The 24 accumulators are named variables: an array of vectors is kept in memory by GCC. */
#define ROW_DECL(i) __m512 c##i##0 = _mm512_setzero_ps(), c##i##1 = c##i##0, c##i##2 = c##i##0, c##i##3 = c##i##0
#define ROW_STEP(i)                                                       \
    do {                                                                  \
        const __m512bh av = (__m512bh)_mm512_set1_epi32((int)ap[i]);      \
        c##i##0 = _mm512_dpbf16_ps(c##i##0, av, b0);                      \
        c##i##1 = _mm512_dpbf16_ps(c##i##1, av, b1);                      \
        c##i##2 = _mm512_dpbf16_ps(c##i##2, av, b2);                      \
        c##i##3 = _mm512_dpbf16_ps(c##i##3, av, b3);                      \
    } while (0)
#define ROW_SAVE(i) \
    if (i < mr) store_row(c + (int64_t)i * ldc, nr, c##i##0, c##i##1, c##i##2, c##i##3, alpha, beta, first)

BF16_TARGET static inline void store_row(float *ci, int nr, __m512 r0, __m512 r1, __m512 r2, __m512 r3,
                                         float alpha, float beta, int first)
{
    const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(first ? beta : 1.0f);
    const int rd = !first || beta != 0.0f;
    const __m512 r[4] = {r0, r1, r2, r3};
    for (int v = 0; v < 4; v++) {
        const int left = nr - 16 * v;
        if (left <= 0) break;
        const __mmask16 k = left >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << left) - 1);
        __m512 t = _mm512_mul_ps(r[v], va);
        if (rd) t = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(k, ci + 16 * v), vb, t);
        _mm512_mask_storeu_ps(ci + 16 * v, k, t);
    }
}

BF16_TARGET static void kernel(int kp, const uint32_t *ap, const uint32_t *bp, float *c, int64_t ldc, int mr,
                               int nr, float alpha, float beta, int first)
{
    ROW_DECL(0); ROW_DECL(1); ROW_DECL(2); ROW_DECL(3); ROW_DECL(4); ROW_DECL(5);
#pragma GCC unroll 4
    for (int r = 0; r < kp; r++) {
        const __m512bh b0 = (__m512bh)_mm512_load_si512(bp), b1 = (__m512bh)_mm512_load_si512(bp + 16);
        const __m512bh b2 = (__m512bh)_mm512_load_si512(bp + 32), b3 = (__m512bh)_mm512_load_si512(bp + 48);
        ROW_STEP(0); ROW_STEP(1); ROW_STEP(2); ROW_STEP(3); ROW_STEP(4); ROW_STEP(5);
        ap += MR;
        bp += NR;
    }
    ROW_SAVE(0); ROW_SAVE(1); ROW_SAVE(2); ROW_SAVE(3); ROW_SAVE(4); ROW_SAVE(5);
}

/* The rows of C for one packed B block (depth pc .. pc+kl-1, nl columns from c): A packed MC rows at a
 * time into ap, then every MR x NR tile; the first depth block applies beta, the others add. */
BF16_TARGET static void block(uint32_t *abuf1, const uint32_t *apk, const uint32_t *bp, int ta, const float *a,
                              int64_t lda, int m, int pc, int kl, int nl, float *c, int64_t ldc, float alpha, float beta)
{
    const int kp = (kl + 1) / 2;
    for (int ic = 0; ic < m; ic += MC) {
        const int ml = m - ic < MC ? m - ic : MC;
        const uint32_t *ap = apk ? apk + (int64_t)ic * kp : abuf1;
        if (!apk) pack_a(abuf1, ta, a, lda, ic, ml, pc, kl);
        for (int jr = 0; jr < nl; jr += NR) {
            const uint32_t *bq = bp + (int64_t)(jr / NR) * kp * NR;
            const int nr = nl - jr < NR ? nl - jr : NR;
            for (int ir = 0; ir < ml; ir += MR) {
                const int mr = ml - ir < MR ? ml - ir : MR;
                kernel(kp, ap + (int64_t)(ir / MR) * kp * MR, bq, c + (int64_t)(ic + ir) * ldc + jr, ldc, mr, nr,
                       alpha, beta, pc == 0);
            }
        }
    }
}

#ifdef HAVE_AMX
/* The AMX kernel.  A C micro-tile is 32 x 32: tiles 0-3 accumulate 2 A tiles (16 rows x 32 depth) times
 * 2 B tiles (32 depth x 16 columns) over a depth block, are stored to a buffer, then alpha and beta are
 * applied as in the vdpbf16ps kernel.  pack_b's panels already are B tiles (16 groups of depth pairs, row
 * stride NR words); the depth of a block is padded with zero pairs to kq, a multiple of 16 pairs.  A is
 * packed row by row: row i of the block holds kq words (bf16 A(i, 2r) | A(i, 2r+1) << 16), rows padded
 * with zeros to a multiple of 32. */

/* As pairs16, from the first nv (may be <= 0 or > 32) of 32 floats, zeros after. */
AMX_TARGET static inline void pairs16_part(uint32_t *out, const float *src, int nv)
{
    if (nv >= 32) {
        pairs16(out, src);
        return;
    }
    const __m512 z = _mm512_setzero_ps();
    const __m512 x0 = nv > 0 ? _mm512_maskz_loadu_ps(first_n(nv), src) : z;
    const __m512 x1 = nv > 16 ? _mm512_maskz_loadu_ps(first_n(nv - 16), src + 16) : z;
    const __m512i idx = _mm512_set_epi16(62, 60, 58, 56, 54, 52, 50, 48, 46, 44, 42, 40, 38, 36, 34, 32, 30, 28, 26,
                                         24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
    _mm512_storeu_si512(out, _mm512_permutex2var_epi16(round16(x0), idx, round16(x1)));
}

AMX_TARGET static void pack_a_amx(uint32_t *dst, int ta, const float *a, int64_t lda, int i0, int ml, int p0, int kl)
{
    const int kq = depth_pairs(kl), mp = (ml + AMR - 1) / AMR * AMR;
    if (!ta) {
        for (int i = 0; i < mp; i++) {
            uint32_t *d = dst + (int64_t)i * kq;
            if (i >= ml) {
                memset(d, 0, (size_t)kq * 4);
                continue;
            }
            const float *src = a + (int64_t)(i0 + i) * lda + p0;
            for (int r = 0; r < kq; r += 16) pairs16_part(d + r, src + 2 * r, kl - 2 * r);
        }
        return;
    }
    /* A(i, p) = a[p*lda + i]: 16 rows of one depth pair at a time, scattered down a column of the block */
    const __m512i rows = _mm512_mullo_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
                                            _mm512_set1_epi32(kq));
    for (int i = 0; i < mp; i += 16) {
        const __mmask16 k = first_n(ml - i);
        uint32_t *d = dst + (int64_t)i * kq;
        for (int r = 0; r < kq; r++) {
            const int p = 2 * r;
            const __m512 lo = p < kl && k ? _mm512_maskz_loadu_ps(k, a + (int64_t)(p0 + p) * lda + i0 + i) : _mm512_setzero_ps();
            const __m512 hi = p + 1 < kl && k ? _mm512_maskz_loadu_ps(k, a + (int64_t)(p0 + p + 1) * lda + i0 + i)
                                              : _mm512_setzero_ps();
            _mm512_i32scatter_epi32(d + r, rows, _mm512_or_si512(round16(lo), _mm512_slli_epi32(round16(hi), 16)), 4);
        }
    }
}

/* pack_b panel by panel, each padded with zero pairs to kq. */
AMX_TARGET static void pack_b_amx(uint32_t *dst, int tb, const float *b, int64_t ldb, int p0, int kl, int j0, int nl)
{
    const int kp = (kl + 1) / 2, kq = depth_pairs(kl);
    for (int q = 0; q * NR < nl; q++) {
        uint32_t *pd = dst + (int64_t)q * kq * NR;
        pack_b(pd, tb, b, ldb, p0, kl, j0 + q * NR, nl - q * NR < NR ? nl - q * NR : NR);
        memset(pd + (int64_t)kp * NR, 0, (size_t)(kq - kp) * NR * 4);
    }
}

/* C micro-tile (mr x nr, at most 32 x 32) = alpha A0,A1 . B + (first ? beta C : C); a0 is the first of 32
 * packed A rows, bq the B panel at the micro-tile's first column.  A whole tile with alpha 1 and beta 0 or 1
 * (every fill GEMM's) accumulates straight into C: the tiles start from C (or zero) and are stored back to it,
 * without the round trip through a buffer and the vector read-modify-write of C that costs as much again. */
AMX_TARGET static void amx_kernel(int kq, const uint32_t *a0, const uint32_t *bq, float *c, int64_t ldc, int mr,
                                  int nr, float alpha, float beta, int first)
{
    float t[AMR * ANR] __attribute__((aligned(64)));
    const uint32_t *a1 = a0 + 16 * kq;
    const long sa = (long)kq * 4, sb = NR * 4, sc = (long)ldc * 4;
    const int direct = mr == AMR && nr == ANR && alpha == 1.0f && (!first || beta == 0.0f || beta == 1.0f);
    __asm__ volatile("" ::: "memory");   /* tileloadd does not tell the compiler it reads the packed blocks */
    if (direct && (!first || beta == 1.0f)) {
        _tile_loadd(0, c, sc);
        _tile_loadd(1, c + 16, sc);
        _tile_loadd(2, c + 16 * ldc, sc);
        _tile_loadd(3, c + 16 * ldc + 16, sc);
    } else {
        _tile_zero(0);
        _tile_zero(1);
        _tile_zero(2);
        _tile_zero(3);
    }
    for (int r = 0; r < kq; r += 16) {
        _tile_loadd(4, a0 + r, sa);
        _tile_loadd(5, a1 + r, sa);
        _tile_loadd(6, bq + (int64_t)r * NR, sb);
        _tile_loadd(7, bq + (int64_t)r * NR + 16, sb);
        _tile_dpbf16ps(0, 4, 6);
        _tile_dpbf16ps(1, 4, 7);
        _tile_dpbf16ps(2, 5, 6);
        _tile_dpbf16ps(3, 5, 7);
    }
    if (direct) {
        _tile_stored(0, c, sc);
        _tile_stored(1, c + 16, sc);
        _tile_stored(2, c + 16 * ldc, sc);
        _tile_stored(3, c + 16 * ldc + 16, sc);
        __asm__ volatile("" ::: "memory");   /* nor that tilestored wrote C */
        return;
    }
    _tile_stored(0, t, ANR * 4);
    _tile_stored(1, t + 16, ANR * 4);
    _tile_stored(2, t + 16 * ANR, ANR * 4);
    _tile_stored(3, t + 16 * ANR + 16, ANR * 4);
    const __m512 z = _mm512_setzero_ps();
    for (int i = 0; i < mr; i++)
        store_row(c + (int64_t)i * ldc, nr, _mm512_load_ps(t + i * ANR), _mm512_load_ps(t + i * ANR + 16), z, z, alpha,
                  beta, first);
}

/* As block(), on AMX: A packed MC rows at a time, then every 32 x 32 micro-tile, rows outer so that the
 * 32 rows of A stay in L1 while the B block streams from L2 (columns outer re-read A from L2 for every
 * micro-tile: the convolutions' few output channels reuse a B micro-panel only a few times; measured 81 -> 85
 * images per CPU-second x 2 for ResNet-18 training). */
AMX_TARGET static void amx_block(uint32_t *abuf1, const uint32_t *apk, const uint32_t *bp, int ta, const float *a,
                                 int64_t lda, int m, int pc, int kl, int nl, float *c, int64_t ldc, float alpha, float beta)
{
    const int kq = depth_pairs(kl);
    for (int ic = 0; ic < m; ic += MC) {
        const int ml = m - ic < MC ? m - ic : MC;
        const uint32_t *ap = apk ? apk + (int64_t)ic * kq : abuf1;
        if (!apk) pack_a_amx(abuf1, ta, a, lda, ic, ml, pc, kl);
        for (int ir = 0; ir < ml; ir += AMR) {
            const int mr = ml - ir < AMR ? ml - ir : AMR;
            for (int jr = 0; jr < nl; jr += ANR) {
                const uint32_t *bq = bp + (int64_t)(jr / NR) * kq * NR + jr % NR;
                const int nr = nl - jr < ANR ? nl - jr : ANR;
                amx_kernel(kq, ap + (int64_t)ir * kq, bq, c + (int64_t)(ic + ir) * ldc + jr, ldc, mr, nr, alpha, beta,
                           pc == 0);
            }
        }
    }
}
#endif

/* One depth block of one thread's GEMM: B (already packed for the kernel in use) times A, packed MC rows at
 * a time into ap, or already packed (apk, this depth block of pack_a_all's buffer). */
BF16_TARGET static void block_any(uint32_t *ap, const uint32_t *apk, const uint32_t *bp, int ta, const float *a,
                                  int64_t lda, int m, int pc, int kl, int nl, float *c, int64_t ldc, float alpha,
                                  float beta)
{
#ifdef HAVE_AMX
    if (amx) {
        amx_block(ap, apk, bp, ta, a, lda, m, pc, kl, nl, c, ldc, alpha, beta);
        return;
    }
#endif
    block(ap, apk, bp, ta, a, lda, m, pc, kl, nl, c, ldc, alpha, beta);
}

/* All of A (m x k, not transposed) packed once for the kernel in use, shared by the threads of a fill GEMM
 * (which split the columns, so each would otherwise pack the whole of A once per B block of columns): depth block
 * b at apack + b * apack_stride(m, kc), its MC-row blocks one after the other as block_any reads them. */
static uint32_t *apack;
static size_t apack_words;
/* The depth and column blocks of the kernel in use. */
static inline int depth_block(int k)
{
    if (!amx) return KC;
    const int nkb = (k + AKC - 1) / AKC;   /* AMX: as few blocks as AKC allows, of equal depth (whole tiles) */
    return ((k + nkb - 1) / nkb + 31) / 32 * 32;
}
static inline int col_block(void) { return amx ? ANC : NC; }
static int64_t apack_stride(int m, int kc) { return (int64_t)(m + AMR * MR - 1) / (AMR * MR) * (AMR * MR) * (kc / 2); }

BF16_TARGET static int pack_a_all(const float *a, int64_t lda, int m, int k, int nt)
{
    const int kc = depth_block(k), nkb = (k + kc - 1) / kc, nmb = (m + MC - 1) / MC;
    const size_t need = (size_t)nkb * (size_t)apack_stride(m, kc);
    if (need > apack_words) {
        uint32_t *p = aligned_alloc(64, need * 4);
        if (!p) return -1;
        free(apack);
        apack = p, apack_words = need;
    }
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
    for (int t = 0; t < nkb * nmb; t++) {
        const int pc = t / nmb * kc, ic = t % nmb * MC;
        const int kl = k - pc < kc ? k - pc : kc, ml = m - ic < MC ? m - ic : MC;
        uint32_t *d = apack + (int64_t)(t / nmb) * apack_stride(m, kc);
#ifdef HAVE_AMX
        if (amx) {
            pack_a_amx(d + (int64_t)ic * depth_pairs(kl), 0, a, lda, ic, ml, pc, kl);
            continue;
        }
#endif
        pack_a(d + (int64_t)ic * ((kl + 1) / 2), 0, a, lda, ic, ml, pc, kl);
    }
    return 0;
}

/* B rows p0 .. p0+kl-1, columns j0 .. j0+nl-1 packed for the kernel in use. */
BF16_TARGET static void pack_b_any(uint32_t *dst, int tb, const float *b, int64_t ldb, int p0, int kl, int j0, int nl)
{
#ifdef HAVE_AMX
    if (amx) {
        pack_b_amx(dst, tb, b, ldb, p0, kl, j0, nl);
        return;
    }
#endif
    pack_b(dst, tb, b, ldb, p0, kl, j0, nl);
}

/* Tile configuration is per thread: each GEMM a thread runs loads it first and releases the tiles after
 * (a released tile state costs nothing to save at a context switch). */
static void tiles_begin(void)
{
#ifdef HAVE_AMX
    if (amx) tiles_on();
#endif
}

static void tiles_end(void)
{
#ifdef HAVE_AMX
    if (amx) tiles_off();
#endif
}

/* One thread's GEMM on its slab of C. */
BF16_TARGET static void gemm1(int t, int ta, int tb, int m, int n, int k, float alpha, const float *a, int64_t lda,
                              const float *b, int64_t ldb, float beta, float *c, int64_t ldc)
{
    uint32_t *bp = bbuf[t], *ap = abuf[t];
    if (k <= 0) {   /* C = beta C */
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++) c[(int64_t)i * ldc + j] = beta == 0.0f ? 0.0f : beta * c[(int64_t)i * ldc + j];
        return;
    }
    tiles_begin();
    const int kc = depth_block(k), nc = col_block();
    for (int jc = 0; jc < n; jc += nc) {
        const int nl = n - jc < nc ? n - jc : nc;
        for (int pc = 0; pc < k; pc += kc) {
            const int kl = k - pc < kc ? k - pc : kc;
            pack_b_any(bp, tb, b, ldb, pc, kl, jc, nl);
            block_any(ap, NULL, bp, ta, a, lda, m, pc, kl, nl, c + jc, ldc, alpha, beta);
        }
    }
    tiles_end();
}

void nn_bf16_gemm(int ta, int tb, int m, int n, int k, float alpha, const float *a, int64_t lda, const float *b,
                  int64_t ldb, float beta, float *c, int64_t ldc)
{
    if (m <= 0 || n <= 0) return;
    /* Slabs of C as nn_sgemm; every element is summed in the same order whatever the split. */
    const double work = (double)m * n * k;
    int nt = work < SMALL_GEMM ? 1 : nn_threads();
    if (nt > n_buf) nt = n_buf;
    if (nt <= 1) {
        gemm1(0, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
        return;
    }
    const int split_n = n >= m, len = split_n ? n : m, unit = split_n ? NR : amx ? AMR : MR;
    const int chunk = ((len + nt - 1) / nt + unit - 1) / unit * unit;
#pragma omp parallel for num_threads(nt) schedule(static, 1)
    for (int t = 0; t < nt; t++) {
        const int lo = t * chunk, hi = lo + chunk < len ? lo + chunk : len;
        if (lo >= hi) continue;
        if (split_n)
            gemm1(t, ta, tb, m, hi - lo, k, alpha, a, lda, tb ? b + (int64_t)lo * ldb : b + lo, ldb, beta, c + lo, ldc);
        else
            gemm1(t, ta, tb, hi - lo, n, k, alpha, ta ? a + lo : a + (int64_t)lo * lda, lda, b, ldb, beta,
                  c + (int64_t)lo * ldc, ldc);
    }
}

/* One thread's share of nn_bf16_gemm_fill: columns [j0, j0 + n) of C. */
BF16_TARGET static void gemm_fill1(int t, int m, int n, int k, const float *a, int64_t lda, int bt, nn_bf16_fill fill,
                                   nn_bf16_fill_words fillw, void *ctx, const uint32_t *apk, int j0, float beta,
                                   float *c, int64_t ldc)
{
    uint32_t *bp = bbuf[t], *ap = abuf[t];
    float *tb = tbuf[t];
    tiles_begin();
    const int kc = depth_block(k), nc = col_block();
    for (int jc = 0; jc < n; jc += nc) {
        const int nl = n - jc < nc ? n - jc : nc;
        for (int pc = 0; pc < k; pc += kc) {
            const int kl = k - pc < kc ? k - pc : kc, kp = amx ? depth_pairs(kl) : (kl + 1) / 2;
            for (int q = 0; q * NR < nl; q++) {
                const int len = nl - q * NR < NR ? nl - q * NR : NR, jq = j0 + jc + q * NR;
                if (fillw) {   /* the panel's depth pairs straight from the callback; AMX's padding pairs 0 */
                    uint32_t *pd = bp + (int64_t)q * kp * NR;
                    const int np = (kl + 1) / 2;
                    fillw(ctx, pd, pc / 2, np, jq, len);
                    memset(pd + (int64_t)np * NR, 0, (size_t)(kp - np) * NR * 4);
                } else if (!bt) {   /* t[p][j]: kl rows of len values */
                    fill(ctx, tb, NR, pc, kl, jq, len);
                    pack_b_any(bp + (int64_t)q * kp * NR, 0, tb, NR, 0, kl, 0, len);
                } else {     /* t[j][p]: len rows of kl values */
                    fill(ctx, tb, kc, jq, len, pc, kl);
                    pack_b_any(bp + (int64_t)q * kp * NR, 1, tb, kc, 0, kl, 0, len);
                }
            }
            block_any(ap, apk ? apk + (int64_t)(pc / kc) * apack_stride(m, kc) : NULL, bp, 0, a, lda, m, pc, kl, nl, c + jc,
                      ldc, 1.0f, beta);
        }
    }
    tiles_end();
}

static void gemm_fill_any(int m, int n, int k, const float *a, int64_t lda, int bt, nn_bf16_fill fill,
                          nn_bf16_fill_words fillw, void *ctx, float beta, float *c, int64_t ldc)
{
    if (m <= 0 || n <= 0 || k <= 0) return;
    const double work = (double)m * n * k;
    int nt = work < SMALL_GEMM ? 1 : nn_threads();
    if (nt > n_buf) nt = n_buf;
    if (nt < 1) nt = 1;
    /* A packed once when more than one block of columns (or thread) would pack it again */
    const uint32_t *apk = (n > col_block() || nt > 1) && pack_a_all(a, lda, m, k, nt) == 0 ? apack : NULL;
    if (nt == 1) {
        gemm_fill1(0, m, n, k, a, lda, bt, fill, fillw, ctx, apk, 0, beta, c, ldc);
        return;
    }
    const int chunk = ((n + nt - 1) / nt + NR - 1) / NR * NR;
#pragma omp parallel for num_threads(nt) schedule(static, 1)
    for (int t = 0; t < nt; t++) {
        const int lo = t * chunk, hi = lo + chunk < n ? lo + chunk : n;
        if (lo < hi) gemm_fill1(t, m, hi - lo, k, a, lda, bt, fill, fillw, ctx, apk, lo, beta, c + lo, ldc);
    }
}

void nn_bf16_gemm_fill(int m, int n, int k, const float *a, int64_t lda, int bt, nn_bf16_fill fill, void *ctx,
                       float beta, float *c, int64_t ldc)
{
    gemm_fill_any(m, n, k, a, lda, bt, fill, NULL, ctx, beta, c, ldc);
}

void nn_bf16_gemm_words(int m, int n, int k, const float *a, int64_t lda, nn_bf16_fill_words fill, void *ctx,
                        float beta, float *c, int64_t ldc)
{
    gemm_fill_any(m, n, k, a, lda, 0, NULL, fill, ctx, beta, c, ldc);
}
#else
void nn_bf16_round_row(uint16_t *d, const float *s, int64_t n)
{
    for (int64_t j = 0; j < n; j++) d[j] = nn_bf16_round(s[j]);
}
void nn_bf16_fill_dw(void *ctx, uint32_t *dst, int r0, int np, int64_t j0, int jl)
{
    (void)ctx, (void)dst, (void)r0, (void)np, (void)j0, (void)jl;
}
void nn_bf16_fill_taps(void *taps, uint32_t *dst, int r0, int np, int64_t s0, int sl)
{
    (void)taps, (void)dst, (void)r0, (void)np, (void)s0, (void)sl;
}
void nn_bf16_pair_rows(uint32_t *d, const float *lo, const float *hi, int64_t n)
{
    for (int64_t j = 0; j < n; j++) d[j] = nn_bf16_round(lo[j]) | (uint32_t)(hi ? nn_bf16_round(hi[j]) : 0) << 16;
}
void nn_bf16_gemm_words(int m, int n, int k, const float *a, int64_t lda, nn_bf16_fill_words fill, void *ctx,
                        float beta, float *c, int64_t ldc)
{
    (void)m, (void)n, (void)k, (void)a, (void)lda, (void)fill, (void)ctx, (void)beta, (void)c, (void)ldc;
}
void nn_bf16_gemm_fill(int m, int n, int k, const float *a, int64_t lda, int bt, nn_bf16_fill fill, void *ctx,
                       float beta, float *c, int64_t ldc)
{
    (void)m, (void)n, (void)k, (void)a, (void)lda, (void)bt, (void)fill, (void)ctx, (void)beta, (void)c, (void)ldc;
}
void nn_bf16_gemm(int ta, int tb, int m, int n, int k, float alpha, const float *a, int64_t lda, const float *b,
                  int64_t ldb, float beta, float *c, int64_t ldc)
{
    nn_sgemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);   /* never reached: no bf16 off x86 */
}
#endif

void nn_gemm(int ta, int tb, int m, int n, int k, float alpha, const float *a, int64_t lda, const float *b,
             int64_t ldb, float beta, float *c, int64_t ldc)
{
    if (precision == NN_BF16) nn_bf16_gemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    else nn_sgemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}
