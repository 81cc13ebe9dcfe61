/* fuzz_npy.c: libFuzzer harness for the .npy reader of `tsz from-npy` (lib/tszutil.c): each input is
 * a file's bytes, parsed (header dict, dtype, shape, versions 1-3) and its data read and converted
 * (byte order, Fortran order).  Must give errors, never crash or allocate far beyond the input. */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tszutil.h"
#include "fuzz_seed.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    const char *dir = getenv("FUZZ_SEED_DIR");
    if (!dir || !*dir) return 0;
    /* Seeds: the headers numpy writes for a few shapes and dtypes, with their data. */
    static const struct { const char *descr; int ndim; int64_t shape[3]; } seeds[] = {
        {"<f4", 2, {2, 3}}, {"|u1", 1, {5}}, {"<f4", 0, {0}}, {">i2", 3, {2, 1, 2}}, {"<f8", 1, {0}}};
    for (size_t i = 0; i < sizeof seeds / sizeof seeds[0]; i++) {
        char h[256], path[4096];
        size_t hl = tszutil_npy_header(h, sizeof h, seeds[i].descr, seeds[i].ndim, seeds[i].shape);
        snprintf(path, sizeof path, "%s/seed-%zu.npy", dir, i);
        FILE *f = fopen(path, "wb");
        if (!f) continue;
        fwrite(h, 1, hl, f);
        for (int k = 0; k < 48; k++) fputc(k * 5, f);
        fclose(f);
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    FILE *f = fmemopen((void *)data, size ? size : 1, "rb");
    if (!f) return 0;
    if (size == 0) { fclose(f); return 0; }
    struct util_err err = {{0}};
    tszutil_npy_info info;
    void *buf = NULL;
    if (tszutil_npy_read_header(f, "fuzz.npy", &info, &err) < 0) fuzz_require_one_line(&err);
    else if (info.bytes <= (64u << 20) && tszutil_npy_read_data(f, "fuzz.npy", &info, &buf, &err) < 0)
        fuzz_require_one_line(&err);
    free(buf);
    fclose(f);
    return 0;
}
