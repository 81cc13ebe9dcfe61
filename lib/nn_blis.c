/* nn_blis.c: the engine's door to BLIS: kernel choice before BLIS initialises, thread counts for BLIS
 * and OpenMP, and a row-major sgemm wrapper.  Debian's BLIS 0.9 does not know Zen 5 and falls back to
 * generic kernels there; its skx kernels are right for every CPU with AVX-512F and illegal elsewhere. */
#include <omp.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* blis.h defines many static helpers this file does not use. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wtype-limits"
#pragma GCC diagnostic ignored "-Wsign-compare"
#include <blis.h>
#pragma GCC diagnostic pop

#include "nn.h"
#include "nn_internal.h"

/* multiply-adds below which a GEMM stays on one thread */
#define SMALL_GEMM (1 << 21)

static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static const char *arch_name = "?";
static int n_threads = 1;

/* BLIS's sgemm micro-kernel and its blocking, for the engine's own convolution driver (nn_layers.c),
 * and one packing buffer per thread, allocated when the thread count is set (never in a training step). */
#define MAX_THREADS 256
static nn_ukinfo uk;
static int uk_ok;
static sgemm_ukr_ft ukr;
static cntx_t *uk_cntx;
static float *pack_buf[MAX_THREADS];
static int n_pack;

static void alloc_pack_buffers(int n)
{
    if (!uk_ok) return;
    for (int t = n_pack; t < n && t < MAX_THREADS; t++) {
        pack_buf[t] = aligned_alloc(64, ((size_t)uk.buf_floats * sizeof(float) + 63) & ~(size_t)63);
        if (!pack_buf[t]) break;
        n_pack = t + 1;
    }
}

static void init_ukernel(void)
{
    uk_cntx = bli_gks_query_cntx();
    ukr = (sgemm_ukr_ft)bli_cntx_get_l3_nat_ukr_dt(BLIS_FLOAT, BLIS_GEMM_UKR, uk_cntx);
    uk.mr = (int)bli_cntx_get_blksz_def_dt(BLIS_FLOAT, BLIS_MR, uk_cntx);
    uk.nr = (int)bli_cntx_get_blksz_def_dt(BLIS_FLOAT, BLIS_NR, uk_cntx);
    uk.kc = (int)bli_cntx_get_blksz_def_dt(BLIS_FLOAT, BLIS_KC, uk_cntx);
    const int mc = (int)bli_cntx_get_blksz_def_dt(BLIS_FLOAT, BLIS_MC, uk_cntx);
    /* A kernel that prefers column-stored C tiles gets the spatial positions (contiguous in a row of
     * the channel-major output) as its MR side, one preferring rows as its NR side. */
    uk.spatial_a = bli_cntx_l3_nat_ukr_prefers_cols_dt(BLIS_FLOAT, BLIS_GEMM_UKR, uk_cntx) ? 1 : 0;
    const int sp = uk.spatial_a ? uk.mr : uk.nr;
    int sb = mc > 256 ? mc : 256;
    uk.sb = (sb + sp - 1) / sp * sp;
    /* a spatial block, plus room for up to 1040 packed channels (the weight-gradient driver) */
    uk.buf_floats = ((size_t)uk.sb + 1040) * uk.kc;
    uk_ok = ukr && uk.mr > 0 && uk.nr > 0 && uk.kc > 0 && uk.mr <= 64 && uk.nr <= 64;
}

static void init_blis(void)
{
    /* setenv with overwrite 0: a user's explicit BLIS_ARCH_TYPE (e.g. forcing the AVX2 path to test
     * it) wins.  This must run before BLIS's own one-time initialisation reads the variable. */
    if (util_cpu_has_avx512f()) setenv("BLIS_ARCH_TYPE", "0", 0);
    const char *s = getenv("BLIS_NUM_THREADS");
    long t = 0;
    if (s && util_parse_long(s, 1, 1024, &t) == 0) n_threads = (int)t;
    bli_thread_set_num_threads(1);   /* nn_sgemm threads by itself */
    omp_set_num_threads(n_threads);
    arch_name = bli_arch_string(bli_arch_query_id());
    init_ukernel();
    alloc_pack_buffers(n_threads);
}

static int uk_off;

void nn_ukernel_enable(int on) { uk_off = !on; }

const nn_ukinfo *nn_ukernel_info(void)
{
    nn_init();
    return uk_ok && !uk_off && n_pack >= n_threads ? &uk : NULL;
}

float *nn_pack_buffer(void)
{
    const int t = omp_get_thread_num();
    return t < n_pack ? pack_buf[t] : NULL;
}

void nn_ukernel(int m, int n, int k, const float *a, const float *b, float beta, float *c, int64_t rs_c,
                int64_t cs_c)
{
    float one = 1.0f;
    auxinfo_t aux;
    memset(&aux, 0, sizeof aux);
    bli_auxinfo_set_next_ab((void *)a, (void *)b, &aux);   /* prefetch hints only */
    ukr(m, n, k, &one, (float *)a, (float *)b, &beta, c, rs_c, cs_c, &aux, uk_cntx);
}

const char *nn_init(void)
{
    pthread_once(&init_once, init_blis);
    return arch_name;
}

void nn_set_threads(int n)
{
    nn_init();
    if (n < 1) n = 1;
    n_threads = n;
    omp_set_num_threads(n);
    alloc_pack_buffers(n);
}

int nn_threads(void)
{
    nn_init();
    return n_threads;
}

/* One thread's share: C rows [m0, m1) or columns [n0, n1) through single-threaded BLIS. */
static void gemm1(int ta, int tb, int m, int n, int k, float alpha, const float *a, int64_t lda, const float *b,
                  int64_t ldb, float beta, float *c, int64_t ldc)
{
    rntm_t rntm = BLIS_RNTM_INITIALIZER;
    bli_rntm_set_num_threads(1, &rntm);
    /* No small-matrix ("sup") kernels: they are chosen by sub-problem size, so a different thread count
     * (a different split) could change the rounding; measured no slower on the AVX2 path here. */
    bli_rntm_disable_l3_sup(&rntm);
    bli_sgemm_ex(ta ? BLIS_TRANSPOSE : BLIS_NO_TRANSPOSE, tb ? BLIS_TRANSPOSE : BLIS_NO_TRANSPOSE,
                 m, n, k, &alpha, (float *)a, lda, 1, (float *)b, ldb, 1, &beta, c, ldc, 1, NULL, &rntm);
}

void nn_sgemm1(int ta, int tb, int m, int n, int k, float alpha, const float *a, int64_t lda, const float *b,
               int64_t ldb, float beta, float *c, int64_t ldc)
{
    if (m <= 0 || n <= 0) return;
    nn_init();
    gemm1(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

void nn_sgemm(int ta, int tb, int m, int n, int k, float alpha, const float *a, int64_t lda,
              const float *b, int64_t ldb, float beta, float *c, int64_t ldc)
{
    if (m <= 0 || n <= 0) return;
    nn_init();
    /* Row-major storage is BLIS's row stride = ld, column stride = 1; the strides describe the matrix as
     * stored and the trans flag applies on top.
     * Threads split C into contiguous slabs (of the longer side, in multiples of 32) and each runs
     * single-threaded BLIS: one fork and one join per product.  BLIS's own threading synchronises its
     * threads with spinning barriers many times per product, which collapses (10-100x) as soon as
     * another process competes for the cores.  Every element of C is still summed in the same order,
     * so the result does not depend on the thread count.  Small products stay on one thread. */
    const double work = (double)m * n * k;
    const int nt = work < SMALL_GEMM ? 1 : n_threads;
    if (nt == 1) {
        gemm1(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
        return;
    }
    const int split_n = n >= m, len = split_n ? n : m;
    const int chunk = ((len + nt - 1) / nt + 31) / 32 * 32;
#pragma omp parallel for num_threads(nt) schedule(static, 1)
    for (int t = 0; t < nt; t++) {
        const int lo = t * chunk, hi = lo + chunk < len ? lo + chunk : len;
        if (lo >= hi) continue;
        if (split_n) /* columns lo..hi of op(B) and C */
            gemm1(ta, tb, m, hi - lo, k, alpha, a, lda, tb ? b + (int64_t)lo * ldb : b + lo, ldb, beta, c + lo, ldc);
        else         /* rows lo..hi of op(A) and C */
            gemm1(ta, tb, hi - lo, n, k, alpha, ta ? a + lo : a + (int64_t)lo * lda, lda, b, ldb, beta,
                  c + (int64_t)lo * ldc, ldc);
    }
}
