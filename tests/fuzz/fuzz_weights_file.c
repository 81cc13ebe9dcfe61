/* fuzz_weights_file.c: libFuzzer entry point for weights_load on a file, the path every tool takes.
 * Unlike the in-memory targets (fuzz_safetensors, fuzz_pickle), a file is mapped and aligned f32/i64
 * data is used in place, so tensors borrow from the mapping: this covers that borrowing, the zip
 * offset lookup for stored entries, and the release of mapping and arena, for every format the
 * content may be detected as (safetensors, zip and legacy .pth, TSZ).  Any input must give a set or a
 * one-line error.  Seeds (LLVMFuzzerInitialize, into $FUZZ_SEED_DIR): a width-1 ResNet-18 saved as
 * safetensors, zip .pth, legacy .pth and TSZ.  Run: tests/fuzz/run.sh SECONDS fuzz_weights_file. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "weights.h"
#include "fuzz_seed.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    const char *dir = getenv("FUZZ_SEED_DIR");
    if (!dir || !*dir) return 0;
    struct util_err err;
    weights_set *s = tiny_resnet();
    if (!s) return 0;
    char path[4096];
    snprintf(path, sizeof path, "%s/seed.safetensors", dir);
    weights_save_safetensors(s, path, &err);
    snprintf(path, sizeof path, "%s/seed.pth", dir);
    weights_save_pth(s, path, 0, &err);
    snprintf(path, sizeof path, "%s/seed-legacy.pth", dir);
    weights_save_pth(s, path, 1, &err);
    tsz_attrs attrs;
    tsz_attrs_init(&attrs);
    snprintf(path, sizeof path, "%s/seed.tsz", dir);
    weights_save_tsz(s, path, &attrs, NULL, &err);
    tsz_attrs_free(&attrs);
    weights_free(s);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char path[64];
    if (!path[0]) snprintf(path, sizeof path, "/tmp/fuzz_weights_file.%ld", (long)getpid());
    FILE *f = fopen(path, "wb");
    if (!f) abort();
    if (size && fwrite(data, 1, size, f) != size) abort();
    if (fclose(f) != 0) abort();
    struct util_err err = {{0}};
    weights_set *s = weights_load(path, NULL, &err);
    if (!s) {
        fuzz_require_one_line(&err);
    } else {
        /* read every byte of every tensor: borrowed data must stay valid as long as the set */
        volatile uint8_t sum = 0;
        for (int i = 0; i < s->n; i++) {
            const uint8_t *p = s->t[i].data;
            const size_t bytes = (size_t)s->t[i].numel * (s->t[i].dtype == TSZ_F32 ? 4 : 8);
            for (size_t j = 0; j < bytes; j++) sum += p[j];
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
    }
    unlink(path);
    return 0;
}
