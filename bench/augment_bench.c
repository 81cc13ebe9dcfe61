/* augment_bench: SimCLR views per second per core at 64, 96 and 224 pixels (one thread, in process),
 * each operation timed on its own, next to the random resized crop alone as the baseline of the same
 * run; and image decoding per core (img2tensor's inner loop) on the shared Tiny-ImageNet JPEGs and PNGs.
 * Times are thread CPU time, so other load on the machine does not count against us. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "aug.h"
#include "img.h"

static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* A natural-looking source: smooth gradients plus texture, in [0, 1]. */
static void fill_src(float *x, int h, int w)
{
    for (int c = 0; c < 3; c++)
        for (int y = 0; y < h; y++)
            for (int i = 0; i < w; i++)
                x[((size_t)c * h + y) * w + i] = 0.5f + 0.3f * sinf(0.05f * (i + 2 * y) + c) + 0.1f * sinf(0.9f * i * y + c);
}

/* Seconds of CPU per call of the given kind (0 full policy, 1 crop only, 2 jitter, 3 blur). */
static double per_view(int kind, int side, int src_side, double min_secs)
{
    size_t sn = (size_t)3 * src_side * src_side;
    float *src = malloc(sn * sizeof *src), *dst = malloc((size_t)3 * side * side * sizeof *dst);
    fill_src(src, src_side, src_side);
    aug_simclr_opts o;
    aug_simclr_default(&o, side, 1.0);
    if (kind == 1) o.flip_p = o.jitter_p = o.gray_p = o.blur_p = 0;
    if (kind == 2) { o.flip_p = o.gray_p = o.blur_p = 0; o.jitter_p = 1; }
    if (kind == 3) { o.flip_p = o.gray_p = o.jitter_p = 0; o.blur_p = 1; }
    aug_work ws = {0};
    struct util_err err;
    util_rng r;
    util_rng_seed(&r, 1);
    long n = 0;
    double t0 = cpu_now(), t;
    do {
        for (int i = 0; i < 16; i++) aug_simclr(dst, src, 3, src_side, src_side, &o, &r, &ws, NULL, &err);
        n += 16;
        t = cpu_now() - t0;
    } while (t < min_secs);
    aug_work_free(&ws);
    free(src);
    free(dst);
    return t / n;
}

static void decode_rate(const char *shared, const char *kind, const char *ext)
{
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "find '%s/data/tiny-imagenet-2k/%s' -name '*.%s' | sort", shared, kind, ext);
    FILE *f = popen(cmd, "r");
    char line[1024];
    uint8_t **files = NULL;
    size_t *sizes = NULL, n = 0, cap = 0;
    struct util_err err;
    while (f && fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = 0;
        if (n == cap) {
            cap = cap ? 2 * cap : 256;
            files = realloc(files, cap * sizeof *files);
            sizes = realloc(sizes, cap * sizeof *sizes);
        }
        size_t c = 0;
        files[n] = NULL;
        if (img_read_file(line, &files[n], &c, &sizes[n], &err) == 0) n++;
    }
    if (f) pclose(f);
    if (n == 0) { printf("decode %s: no files\n", kind); free(files); free(sizes); return; }
    img_rgb im = {0};
    img_work ws = {0};
    float *out = NULL;
    size_t oc = 0;
    int oh, ow;
    long done = 0;
    double t0 = cpu_now(), t;
    do {
        for (size_t i = 0; i < n; i++) img_load(files[i], sizes[i], "bench", 0, 0, &im, &ws, &out, &oc, &oh, &ow, &err);
        done += (long)n;
        t = cpu_now() - t0;
    } while (t < 1.0);
    printf("decode %-4s 64x64 to f32 (img2tensor per image): %8.0f images/s per core (%zu files, %ld decodes)\n",
           kind, done / t, n, done);
    img_rgb_free(&im);
    img_work_free(&ws);
    free(out);
    for (size_t i = 0; i < n; i++) free(files[i]);
    free(files);
    free(sizes);
}

int main(int argc, char **argv)
{
    double secs = argc > 1 ? atof(argv[1]) : 1.0;
    static const int sides[3][2] = {{64, 64}, {96, 96}, {224, 256}};  /* output side, source side */
    printf("SimCLR views per second per core (thread CPU time; bicubic crop, default probabilities)\n");
    printf("%-9s %-9s %12s %12s %12s %12s %10s\n", "output", "source", "full policy", "crop only", "jitter(p=1)",
           "blur(p=1)", "full/crop");
    for (int k = 0; k < 3; k++) {
        int s = sides[k][0], src = sides[k][1];
        double full = per_view(0, s, src, secs), crop = per_view(1, s, src, secs), jit = per_view(2, s, src, secs),
               blur = per_view(3, s, src, secs);
        char a[32], b[32];
        snprintf(a, sizeof a, "%dx%d", s, s);
        snprintf(b, sizeof b, "%dx%d", src, src);
        printf("%-9s %-9s %12.0f %12.0f %12.0f %12.0f %9.2fx\n", a, b, 1 / full, 1 / crop, 1 / jit, 1 / blur, full / crop);
    }
    const char *sh = getenv("EARSIGHT_SHARED");
    if (sh) {
        decode_rate(sh, "jpeg", "jpg");
        decode_rate(sh, "png", "png");
    } else {
        printf("decode: no shared data (EARSIGHT_SHARED unset)\n");
    }
    return 0;
}
