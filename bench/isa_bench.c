/* isa_bench: instruction throughput of one core, for bench/bf16_bench.sh: fp32 FMA (vfmadd231ps zmm,
 * 32 flops) against AVX512_BF16's dot product (vdpbf16ps zmm, 64 flops), each on 24 independent
 * accumulators (more than latency x issue width on current cores), in GFLOP/s.  Whether a bf16 GEMM
 * built on vdpbf16ps can beat an fp32 one on this CPU is decided here: on AMD Zen 4 and Zen 5 the
 * instruction issues at a fraction of the FMA rate.  Where the bf16 GEMM runs on AMX (nn_bf16_amx: the CPU
 * has AMX-BF16 and Linux granted the tiles), also TDPBF16PS (16x32 by 32x16 bf16 into 16x16 fp32, 16384
 * flops) on 6 independent accumulator tiles.  Prints "isa: unsupported" without AVX-512. */
#include <stdio.h>

#include "../lib/nn_internal.h"   /* nn_bf16_amx: whether the tiles may be used */
#include "nn.h"
#include "util.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define T __attribute__((target("avx512bf16,avx512f,avx512bw,avx512vl"), noinline))
#define REP24(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11) \
                 X(12) X(13) X(14) X(15) X(16) X(17) X(18) X(19) X(20) X(21) X(22) X(23)
#define DECL(i) __m512 c##i = _mm512_set1_ps(1e-3f * (i + 1));
#define SINK(i) s = _mm512_add_ps(s, c##i);

T static double fma_rate(long n)
{
    REP24(DECL)
    const __m512 m = _mm512_set1_ps(0.999f), a = _mm512_set1_ps(1e-6f);
    const double t = util_now();
    for (long r = 0; r < n; r++) {
#define FMA(i) c##i = _mm512_fmadd_ps(c##i, m, a);
        REP24(FMA)
    }
    const double s_ = util_now() - t;
    __m512 s = _mm512_setzero_ps();
    REP24(SINK)
    volatile float keep = _mm512_reduce_add_ps(s);
    (void)keep;
    return 24.0 * 32 * (double)n / s_ / 1e9;
}

T static double dpbf16_rate(long n)
{
    REP24(DECL)
    const __m512bh a = (__m512bh)_mm512_set1_epi32(0x3a803a80), b = (__m512bh)_mm512_set1_epi32(0x3f803f80);
    const double t = util_now();
    for (long r = 0; r < n; r++) {
#define DP(i) c##i = _mm512_dpbf16_ps(c##i, a, b);
        REP24(DP)
    }
    const double s_ = util_now() - t;
    __m512 s = _mm512_setzero_ps();
    REP24(SINK)
    volatile float keep = _mm512_reduce_add_ps(s);
    (void)keep;
    return 24.0 * 64 * (double)n / s_ / 1e9;
}

#define TA __attribute__((target("amx-tile,amx-bf16"), noinline))
/* Tiles 0-5 accumulate tile 6 (A) times tile 7 (B), all 16 rows of 64 bytes; operands are zero (the
 * instruction's rate does not depend on the values). */
TA static double amx_rate(long n)
{
    static const struct {
        unsigned char palette, start_row, reserved[14];
        unsigned short colsb[16];
        unsigned char rows[16];
    } cfg = {1, 0, {0}, {64, 64, 64, 64, 64, 64, 64, 64}, {16, 16, 16, 16, 16, 16, 16, 16}};
    _tile_loadconfig(&cfg);
    _tile_zero(6);
    _tile_zero(7);
    const double t = util_now();
    for (long r = 0; r < n; r++) {
        _tile_dpbf16ps(0, 6, 7);
        _tile_dpbf16ps(1, 6, 7);
        _tile_dpbf16ps(2, 6, 7);
        _tile_dpbf16ps(3, 6, 7);
        _tile_dpbf16ps(4, 6, 7);
        _tile_dpbf16ps(5, 6, 7);
    }
    const double s_ = util_now() - t;
    _tile_release();
    return 6.0 * 16384 * (double)n / s_ / 1e9;
}

int main(void)
{
    if (!__builtin_cpu_supports("avx512f")) return puts("isa: unsupported (no AVX-512)"), 0;
    double f = 0, d = 0;
    for (int rep = 0; rep < 3; rep++) {   /* best of 3: other load only slows a run down */
        const double x = fma_rate(20000000);
        if (x > f) f = x;
        if (nn_cpu_has_bf16()) {
            const double y = dpbf16_rate(20000000);
            if (y > d) d = y;
        }
    }
    if (nn_cpu_has_bf16())
        printf("isa: one core, fp32 FMA zmm %.1f GFLOP/s, bf16 vdpbf16ps zmm %.1f GFLOP/s (%.2fx the FMA rate)\n", f, d,
               d / f);
    else printf("isa: one core, fp32 FMA zmm %.1f GFLOP/s; no AVX512_BF16\n", f);
    if (nn_cpu_has_bf16() && nn_bf16_amx()) {
        double x = 0;
        for (int rep = 0; rep < 3; rep++) {
            const double y = amx_rate(2000000);
            if (y > x) x = y;
        }
        printf("isa: one core, AMX TDPBF16PS %.1f GFLOP/s (%.2fx the FMA rate); bf16 kernel: AMX\n", x, x / f);
    } else if (nn_cpu_has_bf16()) {
        puts("isa: bf16 kernel: vdpbf16ps (no AMX-BF16 tiles, or EARSIGHT_NO_AMX)");
    }
    return 0;
}
#else
int main(void) { return puts("isa: unsupported (not x86-64)"), 0; }
#endif
