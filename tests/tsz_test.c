/* tsz_test.c: the TSZ library — round trips of every dtype and rank, raw and compressed, shuffled and
 * not, attributes with awkward values, concatenated streams, and the errors for truncated, corrupted
 * and malicious input. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "test.h"
#include "tsz.h"

static const int dtypes[] = {TSZ_F32, TSZ_U8, TSZ_I32, TSZ_F64, TSZ_I64, TSZ_F16, TSZ_BF16, TSZ_I8, TSZ_U16, TSZ_I16};
#define N_DTYPES (int)(sizeof dtypes / sizeof dtypes[0])

/* Record r of the test stream: dtype cycles, rank r % 9, deterministic bytes. */
static void make_rec(int r, tsz_rec *rec, uint8_t **data)
{
    int64_t shape[TSZ_MAX_DIMS];
    int nd = r % (TSZ_MAX_DIMS + 1);
    for (int i = 0; i < nd; i++) shape[i] = 1 + (r + i) % 3;
    char name[64];
    snprintf(name, sizeof name, "rec-%d é\t", r);
    tsz_rec_init(rec, name, dtypes[r % N_DTYPES], nd, shape);
    rec->label = r % 5 - 1;
    rec->fold = r % 4;
    size_t n = tsz_rec_bytes(rec);
    *data = malloc(n);
    util_rng g = util_rng_split(7, r);
    for (size_t i = 0; i < n; i++) (*data)[i] = (uint8_t)util_rng_u64(&g);
}

static int write_stream(const char *path, int n, const tsz_wopts *o, struct util_err *err)
{
    tsz_attrs a;
    tsz_attrs_init(&a);
    tsz_attrs_set(&a, "kind", "test");
    tsz_attrs_set(&a, "multi", "line one\nline two \\ with backslash = and equals");
    char *classes[] = {"dog", "rain", "sea waves"};
    tsz_attrs_set_classes(&a, classes, 3);
    tsz_writer *w = tsz_writer_open(path, &a, n, o, err);
    tsz_attrs_free(&a);
    if (!w) return -1;
    for (int r = 0; r < n; r++) {
        tsz_rec rec;
        uint8_t *d;
        make_rec(r, &rec, &d);
        int rc = tsz_write(w, &rec, d, err);
        free(d);
        if (rc < 0) { tsz_writer_close(w); return -1; }
    }
    int rc = tsz_writer_finish(w, err);
    tsz_writer_close(w);
    return rc;
}

/* Read the stream and compare with make_rec; returns the number of records or -1. */
static int read_stream(const char *path, int expect_n, struct util_err *err, int *mismatch)
{
    tsz_reader *r = tsz_reader_open(path, err);
    if (!r) return -1;
    *mismatch = 0;
    const char *m = tsz_attrs_get(tsz_reader_attrs(r), "multi");
    if (!m || strcmp(m, "line one\nline two \\ with backslash = and equals") != 0) (*mismatch)++;
    char **cls; int nc;
    tsz_attrs_get_classes(tsz_reader_attrs(r), &cls, &nc);
    if (nc != 3 || strcmp(cls[2], "sea waves") != 0) (*mismatch)++;
    tsz_free_classes(cls, nc);
    void *buf = NULL;
    size_t cap = 0;
    int n = 0, rc;
    tsz_rec rec;
    while ((rc = tsz_read(r, &rec, &buf, &cap, err)) == 1) {
        tsz_rec want;
        uint8_t *d;
        make_rec(n, &want, &d);
        if (strcmp(rec.name, want.name) || rec.dtype != want.dtype || rec.ndim != want.ndim ||
            rec.label != want.label || rec.fold != want.fold ||
            memcmp(rec.shape, want.shape, sizeof rec.shape) ||
            memcmp(buf, d, tsz_rec_bytes(&want)))
            (*mismatch)++;
        free(d);
        n++;
    }
    free(buf);
    tsz_reader_close(r);
    if (rc < 0) return -1;
    if (n != expect_n) (*mismatch)++;
    return n;
}

static void roundtrip(const char *label, int raw, int shuffle, int level)
{
    struct util_err err = {{0}};
    tsz_wopts o;
    tsz_wopts_default(&o);
    o.raw = raw; o.shuffle = shuffle; o.level = level;
    int mism = -1;
    int ok = write_stream("rt.tsz", 40, &o, &err) == 0 && read_stream("rt.tsz", 40, &err, &mism) == 40 && mism == 0;
    test_check(ok, "round trip %s (every dtype, rank 0..8): %s", label, ok ? "identical" : err.msg);
}

/* Write the file's bytes with a modification, then expect tsz reading to fail mentioning pattern. */
static void expect_error(const char *what, const uint8_t *bytes, size_t n, const char *pattern)
{
    FILE *f = fopen("bad.tsz", "wb");
    fwrite(bytes, 1, n, f);
    fclose(f);
    struct util_err err = {{0}};
    int mism;
    int rc = read_stream("bad.tsz", -1, &err, &mism);
    int ok = rc < 0 && strstr(err.msg, pattern) && strchr(err.msg, '\n') == NULL && strstr(err.msg, "bad.tsz");
    test_check(ok, "%s: error '%s'", what, rc < 0 ? err.msg : "(none: read succeeded)");
}

static uint8_t *slurp(const char *path, size_t *n)
{
    void *d; struct util_err err;
    if (util_read_file(path, 1 << 26, &d, n, &err) < 0) return NULL;
    return d;
}

int main(void)
{
    roundtrip("zstd+shuffle", 0, 1, 3);
    roundtrip("zstd", 0, 0, 3);
    roundtrip("zstd level 19", 0, 1, 19);
    roundtrip("raw", 1, 0, 3);

    /* Truncation at every byte of a small compressed and a raw stream: an error each time, never a
     * success, and the library never crashes (the sanitizer build checks the "never"). */
    struct util_err err = {{0}};
    for (int raw = 0; raw <= 1; raw++) {
        tsz_wopts o;
        tsz_wopts_default(&o);
        o.raw = raw;
        write_stream("small.tsz", 6, &o, &err);
        size_t n;
        uint8_t *b = slurp("small.tsz", &n);
        int bad = 0;
        for (size_t cut = 0; cut < n; cut++) {
            FILE *f = fopen("cut.tsz", "wb");
            fwrite(b, 1, cut, f);
            fclose(f);
            int mism;
            if (read_stream("cut.tsz", 6, &err, &mism) >= 0) bad++;
        }
        test_check(bad == 0, "%s stream truncated at each of %zu offsets: %d read as complete",
                   raw ? "raw" : "zstd", n, bad);
        free(b);
    }

    /* Specific malformed inputs, built from a raw stream. */
    tsz_wopts o;
    tsz_wopts_default(&o);
    o.raw = 1;
    write_stream("raw.tsz", 3, &o, &err);
    size_t n;
    uint8_t *b = slurp("raw.tsz", &n), *c = malloc(n + 64);
    expect_error("empty file", b, 0, "empty");
    memcpy(c, b, n); c[1] = 'X';
    expect_error("bad magic", c, n, "not a TSZ stream");
    memcpy(c, b, n); c[8] = 9;
    expect_error("wrong version", c, n, "unsupported TSZ version 9");
    uint32_t alen; memcpy(&alen, b + 24, 4);
    size_t rec0 = 28 + alen;  /* first record tag */
    memcpy(c, b, n); c[rec0 + 4] = 77;
    expect_error("unknown dtype", c, n, "unknown dtype");
    memcpy(c, b, n); c[rec0 + 5] = 9;
    expect_error("rank over 8", c, n, "rank 9");
    memcpy(c, b, n); c[rec0] = 'Q';
    expect_error("bad record tag", c, n, "bad record tag");
    memcpy(c, b, n); memcpy(c + 24, &(uint32_t){0x7fffffffu}, 4);
    expect_error("huge attribute length", c, n, "exceed the limit");
    /* Record 1 has rank 1: make its dim huge, then make the dims' product overflow. */
    tsz_rec r0; uint8_t *d0; make_rec(0, &r0, &d0); free(d0);
    size_t rec1 = rec0 + 18 + strlen(r0.name) + 8 * r0.ndim + tsz_rec_bytes(&r0);
    size_t name1 = strlen("rec-1 é\t");
    memcpy(c, b, n); memcpy(c + rec1 + 18 + name1, &(int64_t){(int64_t)1 << 40}, 8);
    expect_error("record larger than the limit", c, n, "exceed the limit");
    memcpy(c, b, n); memcpy(c + rec1 + 18 + name1, &(int64_t){-5}, 8);
    expect_error("negative dim", c, n, "invalid dims");
    /* names are bytes: a message quoting one must stay on one line (found by the fuzzer) */
    c[rec1 + 18 + name1 - 1] = '\n';
    expect_error("negative dim, newline in the record's name", c, n, "record 1 (rec-1 ??" "?): invalid dims");
    /* Record 2 has rank 2: two dims of 2^40 overflow 2^62. */
    tsz_rec r1; uint8_t *d1; make_rec(1, &r1, &d1); free(d1);
    size_t rec2 = rec1 + 18 + name1 + 8 * r1.ndim + tsz_rec_bytes(&r1);
    size_t name2 = strlen("rec-2 é\t");
    memcpy(c, b, n);
    memcpy(c + rec2 + 18 + name2, &(int64_t){(int64_t)1 << 40}, 8);
    memcpy(c + rec2 + 18 + name2 + 8, &(int64_t){(int64_t)1 << 40}, 8);
    expect_error("dims whose product overflows", c, n, "invalid dims");
    memcpy(c, b, n); c[n - 8] = 7;
    expect_error("end marker count wrong", c, n, "end marker counts 7");
    memcpy(c, b, n); memcpy(c + 16, &(int64_t){5}, 8);
    expect_error("declared count wrong", c, n, "declares 5");
    memcpy(c, b, n);
    expect_error("no end marker", c, n - 12, "without an end marker");
    free(b);

    /* Corrupt zstd: flip a byte in the middle of a compressed stream. */
    tsz_wopts_default(&o);
    write_stream("z.tsz", 20, &o, &err);
    b = slurp("z.tsz", &n);
    free(c);
    c = malloc(n);
    memcpy(c, b, n); c[n / 2] ^= 0x55;
    expect_error("corrupt zstd frame", c, n, "corrupt zstd data");
    free(b); free(c);

    /* Concatenated streams (cat a b) read as one, raw after zstd too. */
    {
        tsz_wopts_default(&o);
        write_stream("a.tsz", 5, &o, &err);
        o.raw = 1;
        write_stream("b.tsz", 5, &o, &err);
        size_t na, nb;
        uint8_t *a = slurp("a.tsz", &na), *bb = slurp("b.tsz", &nb);
        FILE *f = fopen("ab.tsz", "wb");
        fwrite(a, 1, na, f); fwrite(bb, 1, nb, f);
        fclose(f);
        free(a); free(bb);
        tsz_reader *r = tsz_reader_open("ab.tsz", &err);
        int cnt = 0, rc;
        tsz_rec rec;
        void *buf = NULL; size_t cap = 0;
        while (r && (rc = tsz_read(r, &rec, &buf, &cap, &err)) == 1) cnt++;
        test_check(r && rc == 0 && cnt == 10, "concatenated zstd+raw streams read as one: %d records%s%s", cnt,
                   r && rc < 0 ? ": " : "", r && rc < 0 ? err.msg : "");
        free(buf);
        tsz_reader_close(r);
    }

    /* Unfinished writer leaves no file behind. */
    {
        tsz_writer *w = tsz_writer_open("partial.tsz", NULL, -1, NULL, &err);
        float x[4] = {1, 2, 3, 4};
        tsz_write_f32(w, "x", 0, 0, 1, (int64_t[]){4}, x, &err);
        tsz_writer_close(w);
        test_check(access("partial.tsz", F_OK) != 0, "an unfinished writer leaves no output file");
    }
    /* f16/bf16 conversions at known points. */
    test_check(tsz_f16_to_f32(0x3c00) == 1.0f && tsz_f16_to_f32(0xc000) == -2.0f &&
               tsz_f16_to_f32(0x0001) == 0x1p-24f && tsz_f16_to_f32(0x7bff) == 65504.0f &&
               tsz_bf16_to_f32(0x3f80) == 1.0f, "f16/bf16 known values (1, -2, smallest subnormal, max)");
    return test_exit();
}
