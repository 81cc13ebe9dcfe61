/* weights_bench.c: loading a full-size ResNet-50 (torchvision shapes, 3 channels, 1000 classes, ~102 MB
 * of f32) from safetensors, a torch.save zip, a legacy .pth and a TSZ stream.  Each timed load runs in
 * a fresh process, as in a tool, so it pays for fresh memory like a user does, and ends with one pass
 * reading every byte of every tensor (data used in place from the mapped file is not "loaded" until
 * it has been read); the baseline is read() of the same file into fresh memory.
 *   weights_bench make DIR    write the four files with our writers and check that each loads back exactly
 *   weights_bench load FILE   load once and read every tensor; print "wall_ms cpu_ms"
 *   weights_bench read FILE   read() once into a fresh buffer; print "wall_ms cpu_ms"
 * bench/weights_bench.sh runs these (and torch.load when python3-torch is installed) and reports medians. */
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

static int make(const char *dir)
{
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
    free(spec);
    weights_arch_attrs(&a, &s->attrs);
    static const char *const files[] = {"resnet50.safetensors", "resnet50.pth", "resnet50.legacy.pth", "resnet50.tsz"};
    char path[4][4096];
    for (int f = 0; f < 4; f++) snprintf(path[f], sizeof path[f], "%s/%s", dir, files[f]);
    if (weights_save_safetensors(s, path[0], &err) < 0 || weights_save_pth(s, path[1], 0, &err) < 0 ||
        weights_save_pth(s, path[2], 1, &err) < 0 || weights_save_tsz(s, path[3], NULL, NULL, &err) < 0) {
        util_report(&err);
        return 1;
    }
    /* the timings mean something only if the files load back exactly */
    for (int f = 0; f < 4; f++) {
        weights_set *l = weights_load(path[f], NULL, &err);
        if (!l) { util_report(&err); return 1; }
        int same = l->n == s->n;
        for (int i = 0; i < s->n && same; i++)
            same = strcmp(l->t[i].name, s->t[i].name) == 0 &&
                   memcmp(l->t[i].data, s->t[i].data, (size_t)s->t[i].numel * (s->t[i].dtype == TSZ_F32 ? 4 : 8)) == 0;
        weights_free(l);
        if (!same) {
            fprintf(stderr, "weights_bench: %s does not load back the tensors written\n", path[f]);
            return 1;
        }
    }
    printf("resnet50: %d tensors, %lld f32 values (%.1f MB); 4 files written and checked\n", s->n,
           (long long)weights_numel(s), weights_numel(s) * 4 / 1e6);
    weights_free(s);
    return 0;
}

int main(int argc, char **argv)
{
    util_set_progname(argv[0]);
    if (argc != 3) {
        fprintf(stderr, "usage: weights_bench make DIR | load FILE | read FILE\n");
        return 2;
    }
    if (strcmp(argv[1], "make") == 0) return make(argv[2]);
    double t0 = util_now(), c0 = cpu_now();
    if (strcmp(argv[1], "load") == 0) {
        struct util_err err = {0};
        weights_set *l = weights_load(argv[2], NULL, &err);
        if (!l) { util_report(&err); return 1; }
        uint64_t x = 0;   /* every 8 bytes of every tensor (f32 pairs, i64), so nothing is left unread */
        for (int i = 0; i < l->n; i++) {
            const weights_tensor *t = &l->t[i];
            size_t bytes = (size_t)t->numel * (t->dtype == TSZ_F32 ? 4 : 8);
            const unsigned char *p = t->data;
            for (size_t j = 0; j + 8 <= bytes; j += 8) {
                uint64_t w;
                memcpy(&w, p + j, 8);
                x ^= w;
            }
        }
        double t = util_now() - t0, c = cpu_now() - c0;
        printf("%.2f %.2f\n", t * 1e3, c * 1e3);
        if (x == 1) fprintf(stderr, "\n");   /* keeps the pass */
        weights_free(l);
        return 0;
    }
    if (strcmp(argv[1], "read") == 0) {
        int fd = open(argv[2], O_RDONLY);
        struct stat st;
        if (fd < 0 || fstat(fd, &st) < 0) { perror(argv[2]); return 1; }
        char *buf = malloc((size_t)st.st_size + 1);
        size_t done = 0;
        while (buf && done < (size_t)st.st_size) {
            ssize_t k = read(fd, buf + done, (size_t)st.st_size - done);
            if (k <= 0) break;
            done += (size_t)k;
        }
        close(fd);
        double t = util_now() - t0, c = cpu_now() - c0;
        if (done != (size_t)st.st_size) return 1;
        printf("%.2f %.2f\n", t * 1e3, c * 1e3);
        free(buf);
        return 0;
    }
    fprintf(stderr, "usage: weights_bench make DIR | load FILE | read FILE\n");
    return 2;
}
