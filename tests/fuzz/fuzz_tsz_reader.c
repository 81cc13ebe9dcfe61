/* fuzz_tsz_reader.c: libFuzzer harness for the TSZ reader (lib/tsz.c).  Each input is a file's bytes
 * (raw or zstd, one stream or several concatenated); it is opened through a memfd and read to the end,
 * each record's data read as stored, converted to float32 or skipped.  The reader must return errors,
 * never crash, leak or allocate beyond its record limit.  Seeds: when tests/fuzz/run.sh sets
 * FUZZ_SEED_DIR, LLVMFuzzerInitialize writes a few valid streams there with the library's writer. */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "tsz.h"
#include "fuzz_seed.h"

#define MAX_RECORD (4u << 20)   /* keeps one input from asking for gigabytes (the default is 4 GiB) */

static void write_seed(const char *dir, const char *name, int raw, int shuffle, int n_records, int level)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/seed-%s.tsz", dir, name);
    struct util_err err;
    tsz_attrs a;
    tsz_attrs_init(&a);
    tsz_attrs_set(&a, "kind", "logmel");
    tsz_attrs_set(&a, "note", "two\nlines \\ backslash");
    char *cls[] = {"dog", "rain"};
    tsz_attrs_set_classes(&a, cls, 2);
    tsz_wopts o;
    tsz_wopts_default(&o);
    o.raw = raw;
    o.shuffle = shuffle;
    o.level = level;
    tsz_writer *w = tsz_writer_open(path, &a, n_records, &o, &err);
    tsz_attrs_free(&a);
    if (!w) return;
    static const int dtypes[] = {TSZ_F32, TSZ_U8, TSZ_I32, TSZ_F64, TSZ_I64, TSZ_F16, TSZ_BF16, TSZ_I8, TSZ_U16, TSZ_I16};
    uint8_t data[512];
    for (int i = 0; i < (int)sizeof data; i++) data[i] = (uint8_t)(i * 37 + 11);
    for (int r = 0; r < n_records; r++) {
        tsz_rec rec;
        int64_t shape[3] = {2, 1 + r % 3, 4};
        char nm[32];
        snprintf(nm, sizeof nm, "rec%d", r);
        tsz_rec_init(&rec, nm, dtypes[r % 10], r % 4, shape);
        rec.label = r % 3 - 1;
        rec.fold = r % 5;
        tsz_write(w, &rec, data, &err);
    }
    tsz_writer_finish(w, &err);
    tsz_writer_close(w);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    const char *dir = getenv("FUZZ_SEED_DIR");
    if (dir && *dir) {
        write_seed(dir, "raw", 1, 0, 12, 3);
        write_seed(dir, "zstd-shuffle", 0, 1, 12, 3);
        write_seed(dir, "zstd", 0, 0, 5, 1);
        write_seed(dir, "empty", 1, 0, 0, 3);
        /* Concatenated streams: raw after zstd. */
        char a[4096], b[4096], c[4096];
        snprintf(a, sizeof a, "%s/seed-zstd.tsz", dir);
        snprintf(b, sizeof b, "%s/seed-raw.tsz", dir);
        snprintf(c, sizeof c, "%s/seed-concat.tsz", dir);
        FILE *out = fopen(c, "wb");
        for (int i = 0; out && i < 2; i++) {
            FILE *in = fopen(i ? b : a, "rb");
            int ch;
            while (in && (ch = fgetc(in)) != EOF) fputc(ch, out);
            if (in) fclose(in);
        }
        if (out) fclose(out);
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int fd = -1;
    static char path[64];
    if (fd < 0) {
        fd = memfd_create("tsz-fuzz", 0);
        if (fd < 0) abort();
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    }
    if (ftruncate(fd, 0) != 0 || pwrite(fd, data, size, 0) != (ssize_t)size) abort();
    struct util_err err = {{0}};
    tsz_reader *r = tsz_reader_open(path, &err);
    if (!r) {
        fuzz_require_one_line(&err);
        return 0;
    }
    tsz_reader_set_max_record(r, MAX_RECORD);
    char **cls;
    int nc;
    if (tsz_attrs_get_classes(tsz_reader_attrs(r), &cls, &nc) == 0) tsz_free_classes(cls, nc);
    long v;
    tsz_attrs_get_long(tsz_reader_attrs(r), "rate", &v);
    void *buf = NULL;
    size_t cap = 0;
    float *f = NULL;
    tsz_rec rec;
    int rc, failed = 0;
    /* The last input byte picks how records are consumed, so all three paths get exercised. */
    int mode = size ? data[size - 1] % 3 : 0;
    for (int64_t i = 0;; i++) {
        if (mode == 0) {
            if ((rc = tsz_read(r, &rec, &buf, &cap, &err)) != 1) { failed = rc < 0; break; }
        } else {
            if ((rc = tsz_next(r, &rec, &err)) != 1) { failed = rc < 0; break; }
            int64_t n = tsz_rec_numel(&rec);
            if (mode == 1 && n >= 0) {
                float *nf = realloc(f, (n ? n : 1) * sizeof *nf);
                if (!nf) break;
                f = nf;
                if (tsz_read_data_f32(r, &rec, f, (size_t)n, &err) < 0) { failed = 1; break; }
            } else if (i % 2 == 0 && tsz_skip_data(r, &err) < 0) {
                failed = 1;
                break;
            }
        }
        char s[256];
        tsz_shape_str(&rec, s, sizeof s);
    }
    if (failed) fuzz_require_one_line(&err);
    free(buf);
    free(f);
    tsz_reader_close(r);
    return 0;
}
