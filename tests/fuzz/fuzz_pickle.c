/* fuzz_pickle.c: libFuzzer entry point for the restricted unpickler and the PyTorch readers
 * (lib/weights_pickle.c, included here so its static functions can be driven directly).
 * An input that starts like a zip or a legacy torch.save file goes through weights_load_mem; any
 * other input is a bare data.pkl: unpickled, unwrapped and turned into tensors, with storages
 * supplied as patterned bytes of the size the pickle asks (up to 1 MB), so the tensor and stride
 * checks are reached without an archive.  Seeds (LLVMFuzzerInitialize, into $FUZZ_SEED_DIR): a
 * width-1 ResNet-18 as .pth zip, legacy .pth and bare data.pkl, a protocol-4 pickle, and the data.pkl
 * of each ../shared/reference/interop zip when present.  Build and run: tests/fuzz/build_weights.sh
 * or tests/fuzz/run.sh SECONDS fuzz_pickle. */
#include "../../lib/weights_pickle.c"
#include "fuzz_seed.h"

/* The data.pkl of a zip archive file as a seed. */
static void seed_pkl_of(const char *dir, const char *zip_path, const char *name)
{
    int zerr;
    zip_t *za = zip_open(zip_path, ZIP_RDONLY, &zerr);
    if (!za) return;
    for (zip_int64_t i = 0; i < zip_get_num_entries(za, 0); i++) {
        const char *nm = zip_get_name(za, (zip_uint64_t)i, 0);
        zip_stat_t st;
        if (!nm || !strstr(nm, "/data.pkl") || zip_stat_index(za, (zip_uint64_t)i, 0, &st) < 0 || st.size > (1u << 22))
            continue;
        uint8_t *b = malloc(st.size + 1);
        zip_file_t *f = zip_fopen_index(za, (zip_uint64_t)i, 0);
        if (b && f && zip_fread(f, b, st.size) == (zip_int64_t)st.size) seed_file(dir, name, b, st.size);
        if (f) zip_fclose(f);
        free(b);
        break;
    }
    zip_discard(za);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    /* libzip converts each entry's DOS time with mktime, which re-reads /etc/localtime unless TZ is
     * set: 2 stat calls per entry, most of an input's time */
    setenv("TZ", "UTC", 0);
    const char *dir = getenv("FUZZ_SEED_DIR");
    if (!dir || !*dir) return 0;
    struct util_err err;
    char path[4096], path2[4096];
    weights_set *s = tiny_resnet();
    if (s) {
        snprintf(path, sizeof path, "%s/seed-resnet18-w1.pth", dir);
        weights_save_pth(s, path, 0, &err);
        snprintf(path2, sizeof path2, "%s/seed-resnet18-w1.legacy.pth", dir);
        weights_save_pth(s, path2, 1, &err);
        seed_pkl_of(dir, path, "seed-resnet18-w1.data.pkl");
        weights_free(s);
    }
    /* protocol 4: FRAME, SHORT_BINUNICODE, MEMOIZE, STACK_GLOBAL, BINGET, _rebuild_parameter */
    static const uint8_t p4[] =
        "\x80\x04\x95\x00\x01\x00\x00\x00\x00\x00\x00}\x94(\x8c\x01w\x94\x8c\x0ctorch._utils\x94\x8c\x12"
        "_rebuild_parameter\x94\x93\x94h\x02\x8c\x12_rebuild_tensor_v2\x94\x93\x94((\x8c\x07storage\x94\x8c\x05torch"
        "\x94\x8c\x0c" "FloatStorage\x94\x93\x94\x8c\x01" "0\x94\x8c\x03" "cpu\x94K\x06t\x94QK\x00K\x02K\x03\x86\x94"
        "K\x03K\x01\x86\x94\x89\x8c\x0b" "collections\x94\x8c\x0bOrderedDict\x94\x93\x94)R\x94t\x94R\x94\x88h\x12)R"
        "\x94\x87\x94R\x94u.";
    seed_file(dir, "seed-protocol4.pkl", p4, sizeof p4 - 1);
    const char *shared = getenv("EARSIGHT_SHARED");
    static const char *const fixtures[] = {"resnet18_w16.pth", "resnet50_w8.checkpoint.pth", "evil.pth"};
    for (size_t i = 0; i < sizeof fixtures / sizeof fixtures[0]; i++) {
        snprintf(path, sizeof path, "%s/reference/interop/%s", shared ? shared : "../shared", fixtures[i]);
        snprintf(path2, sizeof path2, "seed-%s.data.pkl", fixtures[i]);
        seed_pkl_of(dir, path, path2);
    }
    return 0;
}

static int fake_fetch(void *ctx, struct sdata *sd, struct util_err *err)
{
    (void)ctx;
    uint64_t bytes;
    if (__builtin_mul_overflow((uint64_t)sd->numel, (uint64_t)welem_size(sd->elem), &bytes) || bytes > (1u << 20))
        return util_err_set(err, "fuzz: storage too large for the fuzzer");
    uint8_t *b = malloc(bytes ? (size_t)bytes : 1);
    if (!b) return util_err_set(err, "out of memory");
    for (uint64_t i = 0; i < bytes; i++) b[i] = (uint8_t)(i * 7 + 1);
    sd->owned = b;
    sd->bytes = b;
    return 0;
}

static void exercise(weights_set *s)
{
    struct util_err err = {{0}};
    weights_arch a;
    weights_spec *spec;
    int n;
    if (weights_strip(s, NULL, 0, &err) < 0) return;
    if (weights_infer_resnet(s, NULL, &a, &err) == 0 && a.width <= 64 && a.in_channels <= 64 &&
        weights_resnet_spec(&a, &spec, &n, &err) == 0) {
        weights_match(s, spec, n, s->n & 1 ? WEIGHTS_NON_STRICT : 0, &err);
        free(spec);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct util_err err = {{0}};
    enum weights_format f = weights_detect(data, size);
    if (f == WEIGHTS_PTH || f == WEIGHTS_PTH_LEGACY) {
        weights_set *s = weights_load_mem(data, size, "fuzz.pth", NULL, &err);
        if (!s) fuzz_require_one_line(&err);
        if (s) exercise(s);
        weights_free(s);
        return 0;
    }
    struct up u;
    struct stable tab = {0};
    struct obj *root;
    weights_set *s = NULL;
    up_init(&u, "fuzz", "fuzz: data.pkl", data, size, 0, &err);
    weights_opts o = {.key = size > 2 && data[size - 1] == 'k' ? "state_dict" : NULL};
    if (unpickle(&u, &root) == 0 && (s = weights_create("fuzz", &err))) {
        const struct obj *d = unwrap(s, root, &o, &err);
        if (d && extract(s, d, &tab, fake_fetch, NULL, &err) == 0) exercise(s);
    }
    if (err.msg[0] == 0 && !s) abort();
    if (err.msg[0]) fuzz_require_one_line(&err);   /* a failure at any step says why, on one line */
    weights_free(s);
    st_free(&tab);
    up_free(&u);
    return 0;
}
