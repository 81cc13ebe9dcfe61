/* tsz_bench: the two ends of a TSZ pipe for bench/tsz_bench.sh.
 *   tsz_bench gen MIB [SEED]   a raw TSZ stream of MIB MiB of spectrogram-like f32 records on stdout
 *   tsz_bench read [FILE]      read a stream (default stdin) into a buffer; prints "BYTES SECONDS"
 * Records are 1 x 128 x 250 log-mel-like values: ln(P + 1e-6) of a smooth spectral envelope times
 * the energy of a few frequency bins (Gamma noise), so low mantissa bits are as random as in real
 * log-mel data.  256 distinct records (32 MB) are cycled, far beyond zstd's 2 MB window at level 3. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tsz.h"
#include "util.h"

enum { MELS = 128, FRAMES = 250, POOL = 256 };

static void make_record(float *x, util_rng *g)
{
    double tilt = 4 + 4 * util_rng_uniform(g), level = -3 + 4 * util_rng_uniform(g);
    double env[FRAMES];
    for (int t = 0; t < FRAMES; t++) {  /* a few events with soft attacks and decays */
        env[t] = -6;
    }
    int n_ev = 1 + (int)util_rng_below(g, 4);
    for (int e = 0; e < n_ev; e++) {
        int t0 = (int)util_rng_below(g, FRAMES), len = 10 + (int)util_rng_below(g, 80);
        double amp = 3 + 5 * util_rng_uniform(g);
        for (int t = t0; t < FRAMES && t < t0 + len; t++) {
            double v = amp * exp(-(t - t0) / (0.3 * len));
            if (v > env[t] + 6) env[t] = v - 6;
        }
    }
    for (int m = 0; m < MELS; m++) {
        double base = level - tilt * m / MELS;
        int k = 1 + m / 16;  /* higher mel bands average more FFT bins: less noise */
        for (int t = 0; t < FRAMES; t++) {
            double s = 0;
            for (int i = 0; i < k; i++) s -= log(1 - util_rng_uniform(g));
            double p = exp(base + env[t]) * s / k;
            x[m * FRAMES + t] = (float)log(p + 1e-6);
        }
    }
}

static int gen(long mib, long seed)
{
    struct util_err err = {{0}};
    size_t per = (size_t)MELS * FRAMES;
    float *pool = malloc(POOL * per * sizeof *pool);
    if (!pool) { fprintf(stderr, "tsz_bench: out of memory\n"); return 1; }
    for (int i = 0; i < POOL; i++) {
        util_rng g = util_rng_split((uint64_t)seed, (uint64_t)i);
        make_record(pool + i * per, &g);
    }
    int64_t n = (int64_t)mib * 1024 * 1024 / (int64_t)(per * sizeof(float));
    tsz_attrs a;
    tsz_attrs_init(&a);
    tsz_attrs_set(&a, "kind", "logmel");
    tsz_attrs_set(&a, "note", "synthetic log-mel-like data from tsz_bench");
    tsz_wopts o;
    tsz_wopts_default(&o);
    o.raw = 1;
    tsz_writer *w = tsz_writer_open("-", &a, n, &o, &err);
    tsz_attrs_free(&a);
    int rc = w ? 0 : -1;
    for (int64_t r = 0; rc == 0 && r < n; r++) {
        char name[32];
        snprintf(name, sizeof name, "clip-%lld", (long long)r);
        rc = tsz_write_f32(w, name, (int32_t)(r % 10), (int32_t)(1 + r % 5), 3,
                           (int64_t[]){1, MELS, FRAMES}, pool + (r % POOL) * per, &err);
    }
    if (rc == 0) rc = tsz_writer_finish(w, &err);
    if (rc < 0) util_report(&err);
    tsz_writer_close(w);
    free(pool);
    return rc < 0;
}

static int readall(const char *path)
{
    struct util_err err = {{0}};
    double t0 = util_now();
    tsz_reader *r = tsz_reader_open(path, &err);
    if (!r) { util_report(&err); return 1; }
    void *buf = NULL;
    size_t cap = 0;
    uint64_t bytes = 0;
    float sink = 0;
    tsz_rec rec;
    int rc;
    while ((rc = tsz_read(r, &rec, &buf, &cap, &err)) == 1) {
        size_t b = tsz_rec_bytes(&rec);
        bytes += b;
        if (b >= 4) sink += ((float *)buf)[b / 8];  /* use the data so nothing is optimised away */
    }
    double t = util_now() - t0;
    if (rc < 0) util_report(&err);
    else printf("%llu %.6f %g\n", (unsigned long long)bytes, t, sink * 0);
    free(buf);
    tsz_reader_close(r);
    return rc < 0;
}

int main(int argc, char **argv)
{
    util_set_progname("tsz_bench");
    if (argc >= 3 && strcmp(argv[1], "gen") == 0)
        return gen(util_opt_long("MIB", argv[2], 1, 1 << 20), argc > 3 ? util_opt_long("SEED", argv[3], 0, 1L << 40) : 1);
    if (argc >= 2 && strcmp(argv[1], "read") == 0) return readall(argc > 2 ? argv[2] : "-");
    fprintf(stderr, "usage: tsz_bench gen MIB [SEED] | tsz_bench read [FILE]\n");
    return 2;
}
