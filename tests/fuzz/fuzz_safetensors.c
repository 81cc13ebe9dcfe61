/* fuzz_safetensors.c: libFuzzer entry point for the safetensors reader (lib/weights_safetensors.c)
 * and what runs on a loaded set: prefix stripping, ResNet inference, spec and strict matching.
 * Any input must give a set or a one-line error: never a crash, a leak or an unbounded allocation.
 * Seeds (written by LLVMFuzzerInitialize into $FUZZ_SEED_DIR): a width-1 ResNet-18 with metadata and
 * one small file per safetensors dtype.  Build and run: tests/fuzz/build_weights.sh or
 * tests/fuzz/run.sh SECONDS fuzz_safetensors. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "weights.h"
#include "fuzz_seed.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    const char *dir = getenv("FUZZ_SEED_DIR");
    if (!dir || !*dir) return 0;
    struct util_err err;
    weights_set *s = tiny_resnet();
    char path[4096];
    if (s) {
        tsz_attrs_set(&s->attrs, "format", "pt");
        tsz_attrs_set(&s->attrs, "arch", "resnet18");
        snprintf(path, sizeof path, "%s/seed-resnet18-w1.safetensors", dir);
        weights_save_safetensors(s, path, &err);
        weights_free(s);
    }
    /* one tensor of each dtype, 2x3 (BOOL and U8 1 byte each, ...), and a scalar and an empty one */
    static const struct { const char *dt; int size; } dts[] = {
        {"F64", 8}, {"F32", 4}, {"F16", 2}, {"BF16", 2}, {"I64", 8}, {"I32", 4}, {"I16", 2},
        {"I8", 1}, {"U8", 1}, {"U16", 2}, {"U32", 4}, {"U64", 8}, {"BOOL", 1},
    };
    for (size_t i = 0; i < sizeof dts / sizeof dts[0]; i++) {
        uint8_t buf[1024];
        char json[400];
        int k = snprintf(json, sizeof json,
                         "{\"__metadata__\":{\"format\":\"pt\"},\"t\":{\"dtype\":\"%s\",\"shape\":[2,3],"
                         "\"data_offsets\":[0,%d]},\"s\":{\"dtype\":\"%s\",\"shape\":[],\"data_offsets\":[%d,%d]},"
                         "\"e\":{\"dtype\":\"F32\",\"shape\":[0,4],\"data_offsets\":[%d,%d]}}",
                         dts[i].dt, 6 * dts[i].size, dts[i].dt, 6 * dts[i].size, 7 * dts[i].size, 7 * dts[i].size,
                         7 * dts[i].size);
        uint64_t hl = (uint64_t)k;
        memcpy(buf, &hl, 8);
        memcpy(buf + 8, json, (size_t)k);
        for (int j = 0; j < 7 * dts[i].size; j++) buf[8 + k + j] = (uint8_t)(j * 29 + 3);
        char name[64];
        snprintf(name, sizeof name, "seed-%s.safetensors", dts[i].dt);
        seed_file(dir, name, buf, 8 + (size_t)k + 7 * (size_t)dts[i].size);
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct util_err err = {{0}};
    weights_set *s = weights_load_mem(data, size, "fuzz.safetensors", NULL, &err);
    if (!s) {
        fuzz_require_one_line(&err);
        return 0;
    }
    weights_arch a;
    weights_spec *spec;
    int n;
    if (weights_infer_resnet(s, NULL, &a, &err) == 0 && a.width <= 64 && a.in_channels <= 64 &&
        weights_resnet_spec(&a, &spec, &n, &err) == 0) {
        weights_match(s, spec, n, s->n & 1 ? WEIGHTS_NON_STRICT : 0, &err);
        free(spec);
    }
    weights_free(s);
    return 0;
}
