/* fuzz_seed.h: seed material and checks shared by the fuzz targets (included by each tests/fuzz/fuzz_*.c,
 * which run.sh builds one by one). */
#ifndef EARSIGHT_FUZZ_SEED_H
#define EARSIGHT_FUZZ_SEED_H
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "weights.h"

/* A failure must say why, on one line (tools print it as "prog: message"): otherwise show it and crash,
 * so that libFuzzer keeps the input. */
__attribute__((unused)) static void fuzz_require_one_line(const struct util_err *err)
{
    if (err->msg[0] && !strchr(err->msg, '\n')) return;
    fprintf(stderr, "fuzz: error message %s: \"%s\"\n", err->msg[0] ? "spans lines" : "is empty", err->msg);
    abort();
}

/* A ResNet-18 of base width 1 (a few thousand numbers): every name and layout of the real thing. */
__attribute__((unused)) static weights_set *tiny_resnet(void)
{
    struct util_err err;
    weights_arch a = {0};
    weights_spec *spec;
    int n;
    weights_arch_from_name("resnet18", &a);
    a.width = 1;
    a.in_channels = 1;
    a.num_classes = 2;
    a.stem_kernel = 7;
    if (weights_resnet_spec(&a, &spec, &n, &err) < 0) return NULL;
    weights_set *s = weights_create("seed", &err);
    for (int i = 0; s && i < n; i++) {
        weights_tensor *t = weights_add(s, spec[i].name, spec[i].dtype, spec[i].ndim, spec[i].shape, NULL, &err);
        for (int64_t j = 0; t && j < t->numel; j++) {
            if (t->dtype == TSZ_F32) ((float *)t->data)[j] = (float)(j % 7) - 3.0f;
            else ((int64_t *)t->data)[j] = j + 5;
        }
    }
    free(spec);
    return s;
}

/* Write data to DIR/NAME (seeds are best effort: a failure only means fewer seeds). */
__attribute__((unused)) static void seed_file(const char *dir, const char *name, const void *data, size_t n)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f) return;
    fwrite(data, 1, n, f);
    fclose(f);
}

#endif
