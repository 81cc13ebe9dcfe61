/* nn_npy.c: a small reader for NumPy .npy files (the reference arrays PyTorch runs leave behind),
 * converting little-endian f4/f8/i4/i8/u1 data in C order to float32. */
#include <stdlib.h>
#include <string.h>

#include "nn.h"

/* The value text after 'key': in the header dict, or NULL. */
static const char *dict_value(const char *h, const char *key)
{
    const char *p = strstr(h, key);
    if (!p) return NULL;
    p += strlen(key);
    while (*p == ' ' || *p == ':') p++;
    return p;
}

float *nn_npy_load(const char *path, int *ndim, int64_t *shape, struct util_err *err)
{
    void *buf = NULL;
    size_t n = 0;
    float *out = NULL;
    if (util_read_file(path, (size_t)1 << 32, &buf, &n, err) < 0) return NULL;
    const unsigned char *b = buf;
    if (n < 10 || memcmp(b, "\x93NUMPY", 6) != 0) {
        util_err_set(err, "%s: not a .npy file", path);
        goto done;
    }
    size_t hlen, hoff;
    if (b[6] == 1) hlen = b[8] | (size_t)b[9] << 8, hoff = 10;
    else if (n >= 12) hlen = b[8] | (size_t)b[9] << 8 | (size_t)b[10] << 16 | (size_t)b[11] << 24, hoff = 12;
    else hlen = (size_t)-1, hoff = 0;
    if (hlen > n - hoff || hlen > 1 << 20) {
        util_err_set(err, "%s: truncated .npy header", path);
        goto done;
    }
    char *h = malloc(hlen + 1);
    if (!h) {
        util_err_set(err, "%s: out of memory", path);
        goto done;
    }
    memcpy(h, b + hoff, hlen);
    h[hlen] = 0;
    const char *descr = dict_value(h, "'descr'"), *fo = dict_value(h, "'fortran_order'"), *sh = dict_value(h, "'shape'");
    char type[8] = "";
    int nd = 0;
    int64_t numel = 1;
    if (descr && *descr == '\'') sscanf(descr + 1, "%7[^']", type);
    if (!fo || strncmp(fo, "False", 5) != 0 || !sh || *sh != '(') {
        util_err_set(err, "%s: unsupported .npy header (need C order)", path);
        free(h);
        goto done;
    }
    for (const char *p = sh + 1; *p && *p != ')';) {
        if (*p == ' ' || *p == ',') {
            p++;
            continue;
        }
        char *e;
        long long v = strtoll(p, &e, 10);
        if (e == p || v < 0 || nd >= 8 || (v > 0 && numel > ((int64_t)1 << 40) / v)) {
            nd = -1;
            break;
        }
        shape[nd++] = v;
        numel *= v;
        p = e;
    }
    free(h);
    size_t es = !strcmp(type, "<f4") || !strcmp(type, "<i4") ? 4 : !strcmp(type, "<f8") || !strcmp(type, "<i8") ? 8
              : !strcmp(type, "|u1") ? 1 : 0;
    if (nd < 0 || es == 0) {
        util_err_set(err, "%s: unsupported .npy dtype '%s' or shape", path, type);
        goto done;
    }
    if ((size_t)numel * es > n - hoff - hlen) {
        util_err_set(err, "%s: truncated .npy data", path);
        goto done;
    }
    out = malloc(sizeof(float) * (numel ? numel : 1));
    if (!out) {
        util_err_set(err, "%s: out of memory", path);
        goto done;
    }
    const unsigned char *d = b + hoff + hlen;
    for (int64_t i = 0; i < numel; i++) {
        const unsigned char *q = d + i * es;
        if (!strcmp(type, "<f4")) memcpy(&out[i], q, 4);
        else if (!strcmp(type, "<i4")) { int32_t v; memcpy(&v, q, 4); out[i] = (float)v; }
        else if (!strcmp(type, "<f8")) { double v; memcpy(&v, q, 8); out[i] = (float)v; }
        else if (!strcmp(type, "<i8")) { int64_t v; memcpy(&v, q, 8); out[i] = (float)v; }
        else out[i] = q[0];
    }
    *ndim = nd;
done:
    free(buf);
    return out;
}
