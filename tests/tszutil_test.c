/* tszutil_test.c: the library behind `tsz` — CRC-32 known values, the zip writer read back by libzip
 * (plain and ZIP64), .npy header parsing (versions, byte orders, malformed headers), the statistics
 * against a two-pass double computation, selection parsing, and the attribute merge rules. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zip.h>

#include "test.h"
#include "tszutil.h"

static void test_crc(void)
{
    const char *s = "123456789";
    uint32_t a = tszutil_crc32(0, s, 9);
    /* The same in two pieces, across the 8-byte fast path. */
    uint32_t b = tszutil_crc32(tszutil_crc32(0, s, 3), s + 3, 6);
    test_check(a == 0xcbf43926u && b == a, "crc32(\"123456789\") = %08x, in two parts %08x (want cbf43926)", a, b);
}

/* Write a zip with two members, read it back with libzip. */
static void test_zip(int force64)
{
    struct util_err err = {{0}};
    const char *path = force64 ? "t64.zip" : "t.zip";
    tszutil_zip *z = tszutil_zip_open(path, &err);
    static uint8_t big[100000];
    for (size_t i = 0; i < sizeof big; i++) big[i] = (uint8_t)(i * 7);
    const void *p1[2] = {"head", big};
    size_t s1[2] = {4, sizeof big};
    const void *p2[1] = {"x"};
    size_t s2[1] = {1};
    int ok = z != NULL;
    if (ok && force64) tszutil_zip_force_zip64(z);
    ok = ok && tszutil_zip_add(z, "dir/a.npy", 2, p1, s1, &err) == 0 && tszutil_zip_add(z, "é.npy", 1, p2, s2, &err) == 0 &&
         tszutil_zip_finish(z, &err) == 0;
    tszutil_zip_close(z);
    int zerr = 0, good = 0;
    zip_t *za = ok ? zip_open(path, ZIP_RDONLY | ZIP_CHECKCONS, &zerr) : NULL;
    if (za && zip_get_num_entries(za, 0) == 2) {
        zip_stat_t st;
        uint8_t *buf = malloc(sizeof big + 4);
        zip_file_t *f = zip_fopen(za, "dir/a.npy", 0);
        if (f && zip_stat(za, "dir/a.npy", 0, &st) == 0 && st.size == sizeof big + 4 &&
            zip_fread(f, buf, sizeof big + 4) == (zip_int64_t)sizeof big + 4 && memcmp(buf, "head", 4) == 0 &&
            memcmp(buf + 4, big, sizeof big) == 0)
            good++;
        if (f) zip_fclose(f);
        f = zip_fopen(za, "é.npy", 0);
        if (f && zip_fread(f, buf, 1) == 1 && buf[0] == 'x') good++;
        if (f) zip_fclose(f);
        free(buf);
    }
    if (za) zip_close(za);
    test_check(ok && good == 2, "zip writer%s: libzip (consistency checks on) reads both members back: %s",
               force64 ? " with ZIP64 records" : "", ok ? (good == 2 ? "yes" : "no") : err.msg);
}

/* Parse a header given as text; returns 0/-1 and fills info. */
static int parse(int major, const char *dict, const void *data, size_t n, tszutil_npy_info *info, void **buf,
                 struct util_err *err)
{
    FILE *f = fopen("h.npy", "wb");
    size_t hl = strlen(dict);
    fwrite("\x93NUMPY", 1, 6, f);
    fputc(major, f);
    fputc(0, f);
    if (major == 1) { fputc((int)(hl & 255), f); fputc((int)(hl >> 8), f); }
    else { uint32_t l = (uint32_t)hl; fwrite(&l, 4, 1, f); }
    fwrite(dict, 1, hl, f);
    fwrite(data, 1, n, f);
    fclose(f);
    f = fopen("h.npy", "rb");
    int rc = tszutil_npy_read_header(f, "h.npy", info, err);
    *buf = NULL;
    if (rc == 0) rc = tszutil_npy_read_data(f, "h.npy", info, buf, err);
    fclose(f);
    return rc;
}

static void test_npy(void)
{
    struct util_err err = {{0}};
    tszutil_npy_info in;
    void *buf;
    const int16_t be[6] = {0x0100, 0x0200, 0x0300, 0x0400, 0x0500, 0x0600};  /* 1..6 big-endian */
    int rc = parse(2, "{\"descr\":\">i2\",\"fortran_order\":True,\"shape\":(2,3)}\n", be, sizeof be, &in, &buf, &err);
    /* Fortran (2,3) holding 1..6 column-major: C order is 1 3 5 / 2 4 6. */
    const int16_t want[6] = {1, 3, 5, 2, 4, 6};
    test_check(rc == 0 && in.dtype == TSZ_I16 && in.ndim == 2 && memcmp(buf, want, sizeof want) == 0,
               "npy v2.0, double quotes, big-endian Fortran-order i2 -> C-order little-endian: %s",
               rc ? err.msg : "ok");
    free(buf);
    uint8_t b3[3] = {1, 0, 1};
    rc = parse(3, "{'descr': '|b1', 'fortran_order': False, 'shape': (3,), }   \n", b3, 3, &in, &buf, &err);
    test_check(rc == 0 && in.dtype == TSZ_U8 && in.shape[0] == 3, "npy v3.0 bool -> u8: %s", rc ? err.msg : "ok");
    free(buf);
    static const struct { const char *dict, *pattern; } bad[] = {
        {"{'descr': '<U5', 'fortran_order': False, 'shape': (1,), }\n", "no TSZ equivalent"},
        {"{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (1,), }\n", "structured"},
        {"{'descr': '<f4', 'shape': (1,), }\n", "malformed"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (1, 2, 3, 4, 5, 6, 7, 8, 9), }\n", "more than 8"},
        {"{'descr': '<f8', 'fortran_order': False, 'shape': (4611686018427387904, 4), }\n", "overflows"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (1000000000000,), }\n", "exceeds the record limit"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (5,), }\n", "truncated"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (), }\n", "after the array data"},
        {"{'descr': '<f4', 'fortran_order': Maybe, 'shape': (), }\n", "malformed"},
        {"{'descr': '<\n4', 'fortran_order': False, 'shape': (1,), }\n", "dtype '<?4' has no"},   /* one line */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        rc = parse(1, bad[i].dict, "12345678", 8, &in, &buf, &err);
        free(buf);
        test_check(rc < 0 && strstr(err.msg, bad[i].pattern) && strstr(err.msg, "h.npy") && !strchr(err.msg, '\n'),
                   "npy header rejected with '%s': %s", bad[i].pattern, rc < 0 ? err.msg : "(accepted)");
    }
    char h[256];
    size_t n = tszutil_npy_header(h, sizeof h, "<f4", 2, (int64_t[]){128, 501});
    test_check(n == 128 && h[127] == '\n' && h[8] == 118 && memcmp(h + 10, "{'descr': '<f4', 'fortran_order': False, 'shape': (128, 501), }", 61) == 0,
               "npy header for (128, 501) is numpy's 128 bytes (length field %d)", (unsigned char)h[8]);
}

static void test_unicode(void)
{
    char *names[] = {"ab", "\xc3\xa9", "\xff"};  /* "ab", "é" in UTF-8, a byte that is not UTF-8 */
    size_t n;
    uint8_t *img = tszutil_npy_unicode(names, 3, &n);
    static const uint32_t want[6] = {'a', 'b', 0xe9, 0, 0xff, 0};
    int ok = img && n == 128 + 24 && memcmp(img + 10, "{'descr': '<U2', 'fortran_order': False, 'shape': (3,), }", 57) == 0 &&
             memcmp(img + 128, want, sizeof want) == 0;
    test_check(ok, "names as a NumPy '<U2' array: UTF-32LE code points, invalid UTF-8 bytes kept as Latin-1");
    free(img);
}

static void test_stats(void)
{
    /* Values around 1e6 with small spread, in records of different sizes: a naive sum of squares loses
     * the variance; compare with a two-pass computation in double. */
    enum { N = 3 };
    int sizes[N] = {1000, 1, 333};
    float *x[N];
    double sum = 0, n = 0;
    util_rng g;
    util_rng_seed(&g, 5);
    tszutil_stats st;
    tszutil_stats_init(&st);
    struct util_err err;
    for (int r = 0; r < N; r++) {
        x[r] = malloc(sizes[r] * sizeof(float));
        for (int i = 0; i < sizes[r]; i++) { x[r][i] = (float)(1e6 + util_rng_normal(&g) * 0.5); sum += x[r][i]; n++; }
        tsz_rec rec;
        tsz_rec_init(&rec, "r", TSZ_F32, 1, (int64_t[]){sizes[r]});
        tszutil_stats_add(&st, &rec, x[r], &err);
    }
    double mean = sum / n, m2 = 0;
    for (int r = 0; r < N; r++)
        for (int i = 0; i < sizes[r]; i++) m2 += (x[r][i] - mean) * (x[r][i] - mean);
    double sd = sqrt(m2 / n), got = tszutil_stats_std(&st);
    test_check(fabs(got - sd) / sd < 1e-9 && fabs(st.mean - mean) < 1e-9 * mean,
               "stats: std %.12g vs two-pass %.12g, mean %.15g vs %.15g (values ~1e6, spread 0.5)", got, sd, st.mean, mean);
    for (int r = 0; r < N; r++) free(x[r]);
    /* i8 through the histogram path: -128 and 127. */
    int8_t b[2] = {-128, 127};
    tszutil_stats s8;
    tszutil_stats_init(&s8);
    tsz_rec rec;
    tsz_rec_init(&rec, "b", TSZ_I8, 1, (int64_t[]){2});
    tszutil_stats_add(&s8, &rec, b, &err);
    test_check(s8.min == -128 && s8.max == 127 && s8.mean == -0.5 && tszutil_stats_std(&s8) == 127.5,
               "stats of i8 {-128, 127}: min %g max %g mean %g std %g", s8.min, s8.max, s8.mean, tszutil_stats_std(&s8));
    tszutil_stats_free(&s8);
    tszutil_stats_free(&st);
}

static void test_select(void)
{
    tszutil_select s;
    tszutil_select_init(&s);
    int ok = tszutil_select_set_range(&s, "3:7") == 0 && s.lo == 3 && s.hi == 7 &&
             tszutil_select_set_range(&s, ":2") == 0 && s.lo == 0 && s.hi == 2 &&
             tszutil_select_set_range(&s, "4") == 0 && s.lo == 4 && s.hi == 5 &&
             tszutil_select_set_range(&s, "9:") == 0 && s.lo == 9 && s.hi > ((int64_t)1 << 62) &&
             tszutil_select_set_range(&s, "5:2") < 0 && tszutil_select_set_range(&s, "a:b") < 0 &&
             tszutil_select_set_range(&s, "1:2:3") < 0 && tszutil_select_set_range(&s, "-1:") < 0 &&
             tszutil_select_add_folds(&s, "1,2") == 0 && tszutil_select_add_folds(&s, "1,") < 0 &&
             tszutil_select_add_labels(&s, "") < 0 && tszutil_select_add_labels(&s, "99999999999") < 0;
    test_check(ok, "range and list parsing (A:B, :B, A, A:, and malformed ones)");
    tszutil_select_free(&s);
}

static void test_merge(void)
{
    struct util_err err = {{0}};
    tsz_attrs a, b, c;
    tsz_attrs_init(&a); tsz_attrs_init(&b); tsz_attrs_init(&c);
    tsz_attrs_set(&a, "kind", "one");
    tsz_attrs_set(&a, "history", "x\ny");
    tsz_attrs_set(&b, "kind", "two");
    tsz_attrs_set(&b, "rate", "5");
    tsz_attrs_set(&b, "history", "x\nz\ny");
    tsz_attrs_set(&b, "classes", "p\nq");
    tsz_attrs_set(&c, "classes", "q\np");
    int rc = tszutil_merge_attrs(&a, "a", &b, "b", &err);
    const char *h = tsz_attrs_get(&a, "history");
    test_check(rc == 0 && strcmp(tsz_attrs_get(&a, "kind"), "one") == 0 && strcmp(tsz_attrs_get(&a, "rate"), "5") == 0 &&
               h && strcmp(h, "x\ny\nz") == 0 && strcmp(tsz_attrs_get(&a, "classes"), "p\nq") == 0,
               "merge: first value wins, new keys and classes added, history lines 'x y' + 'x z y' give 'x y z'");
    rc = tszutil_merge_attrs(&a, "a", &c, "c", &err);
    test_check(rc < 0 && strstr(err.msg, "classes") && strstr(err.msg, "c:"), "merge: differing classes: %s",
               rc < 0 ? err.msg : "(accepted)");
    tsz_attrs_free(&a); tsz_attrs_free(&b); tsz_attrs_free(&c);
}

int main(void)
{
    test_crc();
    test_zip(0);
    test_zip(1);
    test_npy();
    test_unicode();
    test_stats();
    test_select();
    test_merge();
    return test_exit();
}
