/* weights_bench.c: time to load a full-size ResNet-50 (torchvision shapes, 3 channels, 1000 classes,
 * ~102 MB of f32) from safetensors, a torch.save zip, a legacy .pth and a TSZ stream, all written by
 * our own writers into DIR, next to the time to read() the same bytes into memory (the baseline).
 * Usage: weights_bench DIR [REPS]   Prints one line per format: best and median of REPS loads. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "weights.h"

/* CPU seconds of this process: on a shared machine less disturbed by other jobs than wall time */
static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* read() the whole file into a fresh buffer: what any loader must at least pay */
static double time_read(const char *path, size_t *bytes, double *cpu)
{
    double t0 = util_now(), c0 = cpu_now();
    int fd = open(path, O_RDONLY);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0) return -1;
    char *buf = malloc((size_t)st.st_size + 1);
    size_t done = 0;
    while (buf && done < (size_t)st.st_size) {
        ssize_t k = read(fd, buf + done, (size_t)st.st_size - done);
        if (k <= 0) break;
        done += (size_t)k;
    }
    close(fd);
    volatile char sink = buf ? buf[done / 2] : 0;   /* keep the read */
    (void)sink;
    free(buf);
    *bytes = done;
    *cpu = cpu_now() - c0;
    return util_now() - t0;
}

int main(int argc, char **argv)
{
    util_set_progname(argv[0]);
    if (argc < 2) {
        fprintf(stderr, "usage: weights_bench DIR [REPS]\n");
        return 2;
    }
    int reps = argc > 2 ? atoi(argv[2]) : 5;
    if (reps < 1) reps = 1;
    struct util_err err = {0};
    weights_arch a = {0};
    weights_arch_from_name("resnet50", &a);
    a.width = 64;
    a.in_channels = 3;
    a.num_classes = 1000;
    a.stem_kernel = 7;
    weights_spec *spec;
    int n;
    if (weights_resnet_spec(&a, &spec, &n, &err) < 0) { util_report(&err); return 1; }
    weights_set *s = weights_create("resnet50", &err);
    util_rng r;
    util_rng_seed(&r, 1);
    for (int i = 0; i < n; i++) {
        weights_tensor *t = weights_add(s, spec[i].name, spec[i].dtype, spec[i].ndim, spec[i].shape, NULL, &err);
        if (!t) { util_report(&err); return 1; }
        for (int64_t j = 0; j < t->numel; j++) {
            if (t->dtype == TSZ_F32) ((float *)t->data)[j] = (float)(util_rng_uniform(&r) - 0.5);
            else ((int64_t *)t->data)[j] = 1000;
        }
    }
    weights_arch_attrs(&a, &s->attrs);
    static const char *const names[] = {"safetensors", "pth", "pth-legacy", "tsz"};
    char paths[4][4096];
    snprintf(paths[0], sizeof paths[0], "%s/resnet50.safetensors", argv[1]);
    snprintf(paths[1], sizeof paths[1], "%s/resnet50.pth", argv[1]);
    snprintf(paths[2], sizeof paths[2], "%s/resnet50.legacy.pth", argv[1]);
    snprintf(paths[3], sizeof paths[3], "%s/resnet50.tsz", argv[1]);
    if (weights_save_safetensors(s, paths[0], &err) < 0 || weights_save_pth(s, paths[1], 0, &err) < 0 ||
        weights_save_pth(s, paths[2], 1, &err) < 0 || weights_save_tsz(s, paths[3], NULL, NULL, &err) < 0) {
        util_report(&err);
        return 1;
    }
    printf("resnet50: %d tensors, %lld f32 values (%.1f MB), %d loads each, files in page cache\n", s->n,
           (long long)weights_numel(s), weights_numel(s) * 4 / 1e6, reps);
    double *t = malloc(sizeof *t * (size_t)reps), *tr = malloc(sizeof *tr * (size_t)reps);
    double *c = malloc(sizeof *c * (size_t)reps), *cr = malloc(sizeof *cr * (size_t)reps);
    for (int f = 0; f < 4; f++) {
        size_t bytes = 0;
        int same = 1;
        for (int k = 0; k < reps; k++) {
            tr[k] = time_read(paths[f], &bytes, &cr[k]);
            double t0 = util_now(), c0 = cpu_now();
            weights_set *l = weights_load(paths[f], NULL, &err);
            t[k] = util_now() - t0;
            c[k] = cpu_now() - c0;
            if (!l) { util_report(&err); return 1; }
            if (k == 0) /* the bytes must be right for the time to mean anything */
                for (int i = 0; i < s->n && same; i++)
                    same = strcmp(l->t[i].name, s->t[i].name) == 0 &&
                           memcmp(l->t[i].data, s->t[i].data, (size_t)s->t[i].numel * (s->t[i].dtype == TSZ_F32 ? 4 : 8)) == 0;
            weights_free(l);
        }
        qsort(t, (size_t)reps, sizeof *t, cmp_d);
        qsort(tr, (size_t)reps, sizeof *tr, cmp_d);
        qsort(c, (size_t)reps, sizeof *c, cmp_d);
        qsort(cr, (size_t)reps, sizeof *cr, cmp_d);
        printf("load %-11s %6.1f MB: wall best %7.1f ms, median %7.1f ms (%5.2f GB/s), cpu best %7.1f ms; "
               "read() of the file: wall %6.1f ms, cpu %6.1f ms; load/read wall %.2fx, cpu %.2fx%s\n",
               names[f], bytes / 1e6, t[0] * 1e3, t[reps / 2] * 1e3, bytes / t[0] / 1e9, c[0] * 1e3, tr[0] * 1e3,
               cr[0] * 1e3, t[0] / tr[0], c[0] / cr[0], same ? "" : "  CONTENT DIFFERS");
        if (!same) return 1;
    }
    free(t);
    free(tr);
    free(c);
    free(cr);
    free(spec);
    weights_free(s);
    return 0;
}
