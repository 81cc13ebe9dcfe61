/* tsz.c: reader and writer of TSZ tensor streams (bytes described in man/man5/tsz.5).
 * The logical stream is a header, records and an end marker; it is written raw or as one zstd frame,
 * and readers detect which by the first bytes.  Nothing here seeks, so pipes work; every size read
 * from a file is checked before it is used to allocate. */
#include "tsz.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "TSZ I/O assumes a little-endian host");

static const uint8_t TSZ_MAGIC[8] = {0x89, 'T', 'S', 'Z', '\r', '\n', 0x1a, '\n'};
static const uint8_t TAG_REC[4] = {'T', 'R', 'E', 'C'};
static const uint8_t TAG_END[4] = {'T', 'E', 'N', 'D'};
static const uint8_t ZSTD_MAGIC[4] = {0x28, 0xb5, 0x2f, 0xfd};
enum { FILTER_NONE = 0, FILTER_SHUFFLE = 1 };

/* ---------------------------------------------------------------- dtypes and records */

size_t tsz_dtype_size(int dtype)
{
    switch (dtype) {
    case TSZ_U8: case TSZ_I8: return 1;
    case TSZ_F16: case TSZ_BF16: case TSZ_U16: case TSZ_I16: return 2;
    case TSZ_F32: case TSZ_I32: return 4;
    case TSZ_F64: case TSZ_I64: return 8;
    default: return 0;
    }
}

static const char *const dtype_names[] = {"?", "f32", "u8", "i32", "f64", "i64", "f16", "bf16", "i8", "u16", "i16"};

const char *tsz_dtype_name(int dtype)
{
    return dtype >= 1 && dtype <= TSZ_I16 ? dtype_names[dtype] : "?";
}

int tsz_dtype_from_name(const char *s)
{
    for (int i = 1; i <= TSZ_I16; i++)
        if (strcmp(s, dtype_names[i]) == 0) return i;
    return -1;
}

int64_t tsz_rec_numel(const tsz_rec *rec)
{
    int64_t n = 1;
    if (rec->ndim < 0 || rec->ndim > TSZ_MAX_DIMS) return -1;
    for (int i = 0; i < rec->ndim; i++) {
        int64_t d = rec->shape[i];
        if (d < 0) return -1;
        if (d && n > ((int64_t)1 << 62) / d) return -1;
        n *= d;
    }
    return n;
}

uint64_t tsz_rec_bytes(const tsz_rec *rec)
{
    int64_t n = tsz_rec_numel(rec);
    size_t s = tsz_dtype_size(rec->dtype);
    if (n < 0 || s == 0 || (uint64_t)n > UINT64_MAX / 16) return 0;
    return (uint64_t)n * s;
}

void tsz_rec_init(tsz_rec *rec, const char *name, enum tsz_dtype dtype, int ndim, const int64_t *shape)
{
    memset(rec, 0, sizeof *rec);
    snprintf(rec->name, sizeof rec->name, "%s", name ? name : "");
    rec->dtype = dtype;
    rec->ndim = ndim;
    for (int i = 0; i < ndim && i < TSZ_MAX_DIMS; i++) rec->shape[i] = shape[i];
    rec->label = -1;
    rec->fold = 0;
}

void tsz_shape_str(const tsz_rec *rec, char *buf, size_t cap)
{
    size_t n = 0;
    buf[0] = 0;
    if (rec->ndim == 0) { snprintf(buf, cap, "scalar"); return; }
    for (int i = 0; i < rec->ndim && n < cap; i++)
        n += snprintf(buf + n, cap - n, "%s%lld", i ? "x" : "", (long long)rec->shape[i]);
}

/* ---------------------------------------------------------------- attributes */

void tsz_attrs_init(tsz_attrs *a) { memset(a, 0, sizeof *a); }

void tsz_attrs_free(tsz_attrs *a)
{
    for (int i = 0; i < a->n; i++) { free(a->keys[i]); free(a->vals[i]); }
    free(a->keys); free(a->vals);
    memset(a, 0, sizeof *a);
}

static int key_ok(const char *k)
{
    size_t n = strlen(k);
    if (n == 0 || n > 255) return 0;
    for (; *k; k++)
        if (!((*k >= 'a' && *k <= 'z') || (*k >= 'A' && *k <= 'Z') || (*k >= '0' && *k <= '9') ||
              *k == '_' || *k == '.' || *k == '-'))
            return 0;
    return 1;
}

static int attrs_find(const tsz_attrs *a, const char *key)
{
    for (int i = 0; i < a->n; i++)
        if (strcmp(a->keys[i], key) == 0) return i;
    return -1;
}

int tsz_attrs_set(tsz_attrs *a, const char *key, const char *value)
{
    if (!key_ok(key) || !value) return -1;
    char *v = strdup(value);
    if (!v) return -1;
    int i = attrs_find(a, key);
    if (i >= 0) { free(a->vals[i]); a->vals[i] = v; return 0; }
    if (a->n == a->cap) {
        int nc = a->cap ? 2 * a->cap : 16;
        char **nk = realloc(a->keys, nc * sizeof *nk);
        if (!nk) { free(v); return -1; }
        a->keys = nk;
        char **nv = realloc(a->vals, nc * sizeof *nv);
        if (!nv) { free(v); return -1; }
        a->vals = nv;
        a->cap = nc;
    }
    if (!(a->keys[a->n] = strdup(key))) { free(v); return -1; }
    a->vals[a->n++] = v;
    return 0;
}

int tsz_attrs_setf(tsz_attrs *a, const char *key, const char *fmt, ...)
{
    va_list ap, ap2;
    va_start(ap, fmt);
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *s = n >= 0 ? malloc((size_t)n + 1) : NULL;
    if (s) vsnprintf(s, (size_t)n + 1, fmt, ap2);
    va_end(ap2);
    if (!s) return -1;
    int rc = tsz_attrs_set(a, key, s);
    free(s);
    return rc;
}

const char *tsz_attrs_get(const tsz_attrs *a, const char *key)
{
    int i = attrs_find(a, key);
    return i >= 0 ? a->vals[i] : NULL;
}

int tsz_attrs_get_long(const tsz_attrs *a, const char *key, long *out)
{
    const char *v = tsz_attrs_get(a, key);
    return v ? util_parse_long(v, LONG_MIN, LONG_MAX, out) : -1;
}

int tsz_attrs_get_double(const tsz_attrs *a, const char *key, double *out)
{
    const char *v = tsz_attrs_get(a, key);
    return v ? util_parse_double(v, -1e308, 1e308, out) : -1;
}

int tsz_attrs_remove(tsz_attrs *a, const char *key)
{
    int i = attrs_find(a, key);
    if (i < 0) return 0;
    free(a->keys[i]); free(a->vals[i]);
    memmove(a->keys + i, a->keys + i + 1, (a->n - i - 1) * sizeof *a->keys);
    memmove(a->vals + i, a->vals + i + 1, (a->n - i - 1) * sizeof *a->vals);
    a->n--;
    return 1;
}

int tsz_attrs_copy(tsz_attrs *dst, const tsz_attrs *src)
{
    for (int i = 0; i < src->n; i++)
        if (tsz_attrs_set(dst, src->keys[i], src->vals[i]) < 0) return -1;
    return 0;
}

int tsz_attrs_add_history(tsz_attrs *a, int argc, char **argv)
{
    char *line = util_cmdline(argc, argv);
    if (!line) return -1;
    const char *old = tsz_attrs_get(a, "history");
    int rc = old && *old ? tsz_attrs_setf(a, "history", "%s\n%s", old, line) : tsz_attrs_set(a, "history", line);
    free(line);
    return rc;
}

int tsz_attrs_set_classes(tsz_attrs *a, char **names, int n)
{
    size_t len = 1;
    for (int i = 0; i < n; i++) len += strlen(names[i]) + 1;
    char *s = malloc(len), *p = s;
    if (!s) return -1;
    *p = 0;
    for (int i = 0; i < n; i++) {
        if (i) *p++ = '\n';
        for (const char *c = names[i]; *c; c++) *p++ = *c == '\n' ? ' ' : *c;
    }
    *p = 0;
    int rc = tsz_attrs_set(a, "classes", s);
    free(s);
    return rc;
}

int tsz_attrs_get_classes(const tsz_attrs *a, char ***names, int *n)
{
    *names = NULL;
    *n = 0;
    const char *v = tsz_attrs_get(a, "classes");
    if (!v || !*v) return 0;
    int count = 1;
    for (const char *c = v; *c; c++) count += *c == '\n';
    char **out = calloc(count, sizeof *out);
    if (!out) return -1;
    const char *start = v;
    for (int i = 0; i < count; i++) {
        const char *end = strchr(start, '\n');
        size_t len = end ? (size_t)(end - start) : strlen(start);
        if (!(out[i] = strndup(start, len))) { tsz_free_classes(out, i); return -1; }
        start = end ? end + 1 : start + len;
    }
    *names = out;
    *n = count;
    return 0;
}

void tsz_free_classes(char **names, int n)
{
    for (int i = 0; i < n; i++) free(names[i]);
    free(names);
}

/* "key=value\n" lines; backslash and newline in values escaped as \\ and \n. */
static char *attrs_serialize(const tsz_attrs *a, size_t *len)
{
    size_t cap = 1;
    for (int i = 0; i < a->n; i++) cap += strlen(a->keys[i]) + 2 * strlen(a->vals[i]) + 2;
    char *s = malloc(cap), *p = s;
    if (!s) return NULL;
    for (int i = 0; i < a->n; i++) {
        p = stpcpy(p, a->keys[i]);
        *p++ = '=';
        for (const char *c = a->vals[i]; *c; c++) {
            if (*c == '\\') { *p++ = '\\'; *p++ = '\\'; }
            else if (*c == '\n') { *p++ = '\\'; *p++ = 'n'; }
            else *p++ = *c;
        }
        *p++ = '\n';
    }
    *p = 0;
    *len = p - s;
    return s;
}

/* Parse text of n bytes into a; 0 or -1 with err naming what is wrong. */
static int attrs_parse(tsz_attrs *a, const char *text, size_t n, const char *path, struct util_err *err)
{
    size_t pos = 0;
    char *val = malloc(n + 1);
    if (!val) return util_err_set(err, "%s: out of memory", path);
    while (pos < n) {
        const char *line = text + pos;
        const char *nl = memchr(line, '\n', n - pos);
        if (!nl) { free(val); return util_err_set(err, "%s: header attributes: last line has no newline", path); }
        const char *eq = memchr(line, '=', nl - line);
        size_t klen = eq ? (size_t)(eq - line) : 0;
        char key[256];
        if (!eq || klen == 0 || klen > 255) {
            free(val);
            return util_err_set(err, "%s: header attributes: malformed line at byte %zu", path, pos);
        }
        memcpy(key, line, klen);
        key[klen] = 0;
        size_t vl = 0;
        for (const char *c = eq + 1; c < nl; c++) {
            if (*c == 0) { free(val); return util_err_set(err, "%s: header attributes: NUL byte in value of '%s'", path, key); }
            if (*c == '\\' && c + 1 < nl && (c[1] == 'n' || c[1] == '\\')) {
                val[vl++] = c[1] == 'n' ? '\n' : '\\';
                c++;
            } else {
                val[vl++] = *c;
            }
        }
        val[vl] = 0;
        if (tsz_attrs_set(a, key, val) < 0) {
            free(val);
            return util_err_set(err, "%s: header attributes: invalid key '%.64s'", path, key);
        }
        pos = nl + 1 - text;
    }
    free(val);
    return 0;
}

/* ---------------------------------------------------------------- byte shuffle and halves */

void tsz_byte_shuffle(uint8_t *dst, const uint8_t *src, size_t n, size_t size)
{
    if (size == 4) {  /* the common f32 case, written so the compiler vectorises it */
        uint8_t *d0 = dst, *d1 = dst + n, *d2 = dst + 2 * n, *d3 = dst + 3 * n;
        for (size_t i = 0; i < n; i++) {
            d0[i] = src[4 * i]; d1[i] = src[4 * i + 1]; d2[i] = src[4 * i + 2]; d3[i] = src[4 * i + 3];
        }
        return;
    }
    for (size_t b = 0; b < size; b++)
        for (size_t i = 0; i < n; i++) dst[b * n + i] = src[i * size + b];
}

void tsz_byte_unshuffle(uint8_t *dst, const uint8_t *src, size_t n, size_t size)
{
    if (size == 4) {
        const uint8_t *s0 = src, *s1 = src + n, *s2 = src + 2 * n, *s3 = src + 3 * n;
        for (size_t i = 0; i < n; i++) {
            dst[4 * i] = s0[i]; dst[4 * i + 1] = s1[i]; dst[4 * i + 2] = s2[i]; dst[4 * i + 3] = s3[i];
        }
        return;
    }
    for (size_t b = 0; b < size; b++)
        for (size_t i = 0; i < n; i++) dst[i * size + b] = src[b * n + i];
}

float tsz_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h >> 15) << 31, exp = (h >> 10) & 0x1f, man = h & 0x3ff, bits;
    if (exp == 0) {
        if (man == 0) bits = sign;
        else {  /* subnormal: normalise */
            int e = -1;
            do { e++; man <<= 1; } while (!(man & 0x400));
            bits = sign | (uint32_t)(127 - 15 - e) << 23 | (man & 0x3ff) << 13;
        }
    } else if (exp == 31) {
        bits = sign | 0x7f800000u | man << 13;
    } else {
        bits = sign | (exp + 127 - 15) << 23 | man << 13;
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

float tsz_bf16_to_f32(uint16_t h)
{
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

/* ---------------------------------------------------------------- reader */

struct tsz_reader {
    char *path;
    int fd, own_fd;
    int zstd;                /* current stream is zstd-compressed */
    ZSTD_DCtx *dctx;
    uint8_t *in; size_t in_pos, in_len, in_cap;   /* bytes from the file */
    uint8_t *out; size_t out_pos, out_len, out_cap; /* decoded logical bytes */
    size_t last_ret;         /* ZSTD_decompressStream's last hint: 0 when a frame ended */
    int in_eof;
    uint64_t offset;         /* logical bytes consumed, for messages */
    tsz_attrs attrs;
    int64_t declared, index, stream_first;
    int in_record;           /* 1: tsz_next returned a record whose data is unread */
    int in_data;             /* 1: reading that record's data (messages name record index - 1) */
    tsz_rec cur;
    int cur_filter;
    uint64_t max_record;
    uint8_t *scratch; size_t scratch_cap;
    int done;
};

/* The record an error belongs to: while its data is read, index already counts it. */
static long long err_index(const tsz_reader *r) { return (long long)(r->index - r->in_data); }

/* Refill the raw input buffer.  Returns bytes added, 0 at EOF, -1 on read error. */
static ssize_t raw_fill(tsz_reader *r, struct util_err *err)
{
    if (r->in_pos == r->in_len) r->in_pos = r->in_len = 0;
    if (r->in_pos > 0 && r->in_len == r->in_cap) {
        memmove(r->in, r->in + r->in_pos, r->in_len - r->in_pos);
        r->in_len -= r->in_pos;
        r->in_pos = 0;
    }
    if (r->in_eof) return 0;
    ssize_t got;
    do got = read(r->fd, r->in + r->in_len, r->in_cap - r->in_len);
    while (got < 0 && errno == EINTR);
    if (got < 0) return util_err_sys(err, "%s: read error", r->path);
    if (got == 0) r->in_eof = 1;
    r->in_len += got;
    return got;
}

/* One call of the zstd decoder on the buffered input, output into out (which must be empty).
 * Returns the bytes produced (0 is possible), or -1 for corrupt data. */
static ssize_t zstd_step(tsz_reader *r, struct util_err *err)
{
    ZSTD_inBuffer ib = {r->in, r->in_len, r->in_pos};
    ZSTD_outBuffer ob = {r->out, r->out_cap, 0};
    size_t ret = ZSTD_decompressStream(r->dctx, &ob, &ib);
    r->in_pos = ib.pos;
    if (ZSTD_isError(ret))
        return util_err_set(err, "%s: record %lld: corrupt zstd data (%s)", r->path,
                            err_index(r), ZSTD_getErrorName(ret));
    r->last_ret = ret;
    r->out_pos = 0;
    r->out_len = ob.pos;
    return (ssize_t)ob.pos;
}

/* Make sure raw input is buffered when a zstd frame is in progress.  1: ok, -1: error (EOF inside
 * the frame, e.g. only the checksum is missing). */
static int zstd_need_input(tsz_reader *r, struct util_err *err)
{
    if (r->in_pos < r->in_len) return 1;
    ssize_t got = raw_fill(r, err);
    if (got < 0) return -1;
    if (got == 0 && r->last_ret != 0)
        return util_err_set(err, "%s: record %lld: truncated zstd frame at byte %llu", r->path,
                            err_index(r), (unsigned long long)r->offset);
    return 1;
}

/* Make at least one logical byte available in out (unless at the end).  1: ok, 0: end, -1: error. */
static int logical_fill(tsz_reader *r, struct util_err *err)
{
    if (r->out_pos < r->out_len) return 1;
    r->out_pos = r->out_len = 0;
    for (;;) {
        if (r->in_pos == r->in_len) {
            if (r->zstd && zstd_need_input(r, err) < 0) return -1;
            if (!r->zstd && raw_fill(r, err) < 0) return -1;
            if (r->in_pos == r->in_len) return 0;
        }
        if (!r->zstd) {
            size_t n = r->in_len - r->in_pos;
            if (n > r->out_cap) n = r->out_cap;
            memcpy(r->out, r->in + r->in_pos, n);
            r->in_pos += n;
            r->out_len = n;
            return 1;
        }
        ssize_t got = zstd_step(r, err);
        if (got < 0) return -1;
        if (got > 0) return 1;
    }
}

/* Decode straight into dst (up to n bytes) while out is empty, saving a copy of record data.
 * Returns the bytes produced (> 0), 0 at the end of the input, -1 on error. */
static ssize_t direct_fill(tsz_reader *r, uint8_t *dst, size_t n, struct util_err *err)
{
    for (;;) {
        if (!r->zstd) {
            size_t k = r->in_len - r->in_pos;
            if (k > 0) {  /* bytes already buffered come first */
                if (k > n) k = n;
                memcpy(dst, r->in + r->in_pos, k);
                r->in_pos += k;
                return (ssize_t)k;
            }
            if (r->in_eof) return 0;
            ssize_t got;
            do got = read(r->fd, dst, n);
            while (got < 0 && errno == EINTR);
            if (got < 0) return util_err_sys(err, "%s: read error", r->path);
            if (got == 0) r->in_eof = 1;
            return got;
        }
        if (r->in_pos == r->in_len) {
            if (zstd_need_input(r, err) < 0) return -1;
            if (r->in_pos == r->in_len) return 0;
        }
        ZSTD_inBuffer ib = {r->in, r->in_len, r->in_pos};
        ZSTD_outBuffer ob = {dst, n, 0};
        size_t ret = ZSTD_decompressStream(r->dctx, &ob, &ib);
        r->in_pos = ib.pos;
        if (ZSTD_isError(ret))
            return util_err_set(err, "%s: record %lld: corrupt zstd data (%s)", r->path, err_index(r),
                                ZSTD_getErrorName(ret));
        r->last_ret = ret;
        if (ob.pos > 0) return (ssize_t)ob.pos;
    }
}

/* Read exactly n logical bytes.  1: ok, 0: end before the first byte, -1: error or short read
 * (what names the item being read for the truncation message; inside a record's data the record's
 * name is added then, not formatted ahead for every record). */
static int lread(tsz_reader *r, void *dst, size_t n, const char *what, struct util_err *err)
{
    uint8_t *d = dst;
    size_t got = 0;
    while (got < n) {
        if (r->out_pos == r->out_len && n - got >= 65536) {  /* big reads (record data) bypass out */
            ssize_t k = direct_fill(r, d + got, n - got, err);
            if (k < 0) return -1;
            if (k > 0) { got += (size_t)k; continue; }
        } else {
            int f = logical_fill(r, err);
            if (f < 0) return -1;
            if (f > 0) {
                size_t k = r->out_len - r->out_pos;
                if (k > n - got) k = n - got;
                memcpy(d + got, r->out + r->out_pos, k);
                r->out_pos += k;
                got += k;
                continue;
            }
        }
        if (got == 0 && what == NULL) return 0;
        if (r->in_data)
            return util_err_set(err, "%s: record %lld: truncated inside the data of '%.200s' (stream ends at byte "
                                "%llu)", r->path, err_index(r), util_msgname(r->cur.name).s,
                                (unsigned long long)(r->offset + got));
        return util_err_set(err, "%s: record %lld: truncated inside %s (stream ends at byte %llu)", r->path,
                            err_index(r), what ? what : "header", (unsigned long long)(r->offset + got));
    }
    r->offset += n;
    return 1;
}

/* Decide raw or zstd from the next raw bytes (a stream start).  0 ok, 1 clean EOF, -1 error. */
static int detect(tsz_reader *r, struct util_err *err)
{
    while (r->in_len - r->in_pos < 4) {
        ssize_t got = raw_fill(r, err);
        if (got < 0) return -1;
        if (got == 0) break;
    }
    size_t avail = r->in_len - r->in_pos;
    if (avail == 0) return 1;
    r->zstd = avail >= 4 && memcmp(r->in + r->in_pos, ZSTD_MAGIC, 4) == 0;
    if (r->zstd) {
        ZSTD_DCtx_reset(r->dctx, ZSTD_reset_session_only);
        r->last_ret = 1;  /* a frame is in progress until zstd reports its end */
    }
    return 0;
}

static uint32_t rd_u32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static int64_t rd_i64(const uint8_t *p) { int64_t v; memcpy(&v, p, 8); return v; }

/* Read a header (magic already consumed when have_magic). */
static int read_header(tsz_reader *r, int first, struct util_err *err)
{
    uint8_t h[24];
    int rc = lread(r, h, 8, first ? NULL : "header", err);
    if (rc < 0) return -1;
    if (rc == 0) return util_err_set(err, "%s: empty input, not a TSZ stream", r->path);
    if (memcmp(h, TSZ_MAGIC, 8) != 0)
        return util_err_set(err, "%s: not a TSZ stream (bad magic at byte %llu)", r->path,
                            (unsigned long long)(r->offset - 8));
    if (lread(r, h + 8, 16, "header", err) < 0) return -1;
    uint32_t version = rd_u32(h + 8), flags = rd_u32(h + 12);
    if (version != TSZ_VERSION)
        return util_err_set(err, "%s: unsupported TSZ version %u (this reader knows %d)", r->path, version, TSZ_VERSION);
    if (flags != 0) return util_err_set(err, "%s: unknown header flags 0x%x", r->path, flags);
    int64_t declared = rd_i64(h + 16);
    if (declared < -1) return util_err_set(err, "%s: bad declared record count %lld", r->path, (long long)declared);
    uint8_t lb[4];
    if (lread(r, lb, 4, "header", err) < 0) return -1;
    uint32_t alen = rd_u32(lb);
    if (alen > TSZ_MAX_ATTR_BYTES)
        return util_err_set(err, "%s: header attributes of %u bytes exceed the limit of %u", r->path, alen, TSZ_MAX_ATTR_BYTES);
    char *text = malloc(alen + 1);
    if (!text) return util_err_set(err, "%s: out of memory", r->path);
    if (lread(r, text, alen, "header attributes", err) < 0) { free(text); return -1; }
    int prc = 0;
    if (first) {
        prc = attrs_parse(&r->attrs, text, alen, r->path, err);
        r->declared = declared;
    } else {
        /* A concatenated stream: check its attributes parse, keep the first header's. */
        tsz_attrs tmp;
        tsz_attrs_init(&tmp);
        prc = attrs_parse(&tmp, text, alen, r->path, err);
        tsz_attrs_free(&tmp);
        if (r->declared >= 0 && declared >= 0) r->declared += declared;
        else r->declared = -1;
    }
    free(text);
    r->stream_first = r->index;
    return prc;
}

tsz_reader *tsz_reader_open(const char *path, struct util_err *err)
{
    tsz_reader *r = calloc(1, sizeof *r);
    if (!r) { util_err_set(err, "%s: out of memory", path); return NULL; }
    r->path = strdup(path);
    /* 64 KiB each: a pipe delivers at most that per read, record data bypasses out (direct_fill),
     * and small buffers keep opening a reader cheap (bigger ones made the fuzzer 6x slower under
     * ASan, with no measurable gain in tsz_bench). */
    r->in_cap = 1 << 16;
    r->out_cap = 1 << 16;
    r->in = malloc(r->in_cap);
    r->out = malloc(r->out_cap);
    r->dctx = ZSTD_createDCtx();
    r->max_record = TSZ_DEFAULT_MAX_RECORD;
    r->fd = -1;
    tsz_attrs_init(&r->attrs);
    if (!r->path || !r->in || !r->out || !r->dctx) {
        util_err_set(err, "%s: out of memory", path);
        tsz_reader_close(r);
        return NULL;
    }
    if (strcmp(path, "-") == 0) {
        r->fd = 0;
    } else {
        r->fd = open(path, O_RDONLY);
        if (r->fd < 0) { util_err_sys(err, "%s", path); tsz_reader_close(r); return NULL; }
        r->own_fd = 1;
        struct stat st;
        if (fstat(r->fd, &st) == 0 && S_ISDIR(st.st_mode)) {
            util_err_set(err, "%s: is a directory", path);
            tsz_reader_close(r);
            return NULL;
        }
    }
    int d = detect(r, err);
    if (d == 1) util_err_set(err, "%s: empty input, not a TSZ stream", path);
    if (d != 0 || read_header(r, 1, err) < 0) { tsz_reader_close(r); return NULL; }
    return r;
}

void tsz_reader_close(tsz_reader *r)
{
    if (!r) return;
    if (r->own_fd && r->fd >= 0) close(r->fd);
    ZSTD_freeDCtx(r->dctx);
    free(r->in); free(r->out); free(r->scratch); free(r->path);
    tsz_attrs_free(&r->attrs);
    free(r);
}

const tsz_attrs *tsz_reader_attrs(const tsz_reader *r) { return &r->attrs; }
int64_t tsz_reader_declared(const tsz_reader *r) { return r->declared; }
const char *tsz_reader_path(const tsz_reader *r) { return r->path; }
int64_t tsz_reader_index(const tsz_reader *r) { return r->index; }
void tsz_reader_set_max_record(tsz_reader *r, uint64_t max_bytes) { r->max_record = max_bytes; }

int tsz_next(tsz_reader *r, tsz_rec *rec, struct util_err *err)
{
    if (r->done) return 0;
    if (r->in_record && tsz_skip_data(r, err) < 0) return -1;
    for (;;) {
        uint8_t tag[4];
        if (lread(r, tag, 4, "record header", err) < 0) {
            if (strstr(err->msg, "truncated") && r->index >= 0)
                util_err_set(err, "%s: truncated: stream ends after %lld records without an end marker",
                             r->path, (long long)r->index);
            return -1;
        }
        if (memcmp(tag, TAG_END, 4) == 0) {
            uint8_t b[8];
            if (lread(r, b, 8, "end marker", err) < 0) return -1;
            int64_t count = rd_i64(b), here = r->index - r->stream_first;
            if (count != here)
                return util_err_set(err, "%s: end marker counts %lld records, the stream has %lld", r->path,
                                    (long long)count, (long long)here);
            /* Another stream may follow (cat a.tsz b.tsz), raw or compressed. */
            if (!r->zstd) {
                /* Bytes decoded past the end marker were copied from just before in_pos (nothing
                 * refills the input while out holds data): give them back so detect() sees them. */
                r->in_pos -= r->out_len - r->out_pos;
                r->out_pos = r->out_len = 0;
            } else {
                /* Let the frame end (its checksum) before looking at what follows it; output here
                 * means another stream inside the same frame. */
                while (r->out_pos == r->out_len && r->last_ret != 0) {
                    if (zstd_need_input(r, err) < 0 || zstd_step(r, err) < 0) return -1;
                }
            }
            if (r->out_pos == r->out_len) {
                int d = detect(r, err);
                if (d < 0) return -1;
                if (d == 1) {
                    if (r->declared >= 0 && r->declared != r->index)
                        return util_err_set(err, "%s: header declares %lld records, the stream has %lld", r->path,
                                            (long long)r->declared, (long long)r->index);
                    r->done = 1;
                    return 0;
                }
            }
            if (read_header(r, 0, err) < 0) return -1;
            continue;
        }
        if (memcmp(tag, TAG_REC, 4) != 0)
            return util_err_set(err, "%s: record %lld: bad record tag at byte %llu (corrupt stream)", r->path,
                                (long long)r->index, (unsigned long long)(r->offset - 4));
        break;
    }
    uint8_t h[14];
    if (lread(r, h, 14, "record header", err) < 0) return -1;
    memset(rec, 0, sizeof *rec);
    int dtype = h[0], ndim = h[1], filter = h[2];
    if (tsz_dtype_size(dtype) == 0)
        return util_err_set(err, "%s: record %lld: unknown dtype code %d", r->path, (long long)r->index, dtype);
    if (ndim > TSZ_MAX_DIMS)
        return util_err_set(err, "%s: record %lld: rank %d exceeds %d", r->path, (long long)r->index, ndim, TSZ_MAX_DIMS);
    if (filter > FILTER_SHUFFLE || h[3] != 0)
        return util_err_set(err, "%s: record %lld: unknown filter %d", r->path, (long long)r->index, filter);
    rec->dtype = dtype;
    rec->ndim = ndim;
    memcpy(&rec->label, h + 4, 4);
    memcpy(&rec->fold, h + 8, 4);
    uint16_t nlen;
    memcpy(&nlen, h + 12, 2);
    if (nlen > TSZ_MAX_NAME)
        return util_err_set(err, "%s: record %lld: name of %u bytes exceeds %d", r->path, (long long)r->index, nlen, TSZ_MAX_NAME);
    if (lread(r, rec->name, nlen, "record name", err) < 0) return -1;
    rec->name[nlen] = 0;
    if (memchr(rec->name, 0, nlen))
        return util_err_set(err, "%s: record %lld: NUL byte in name", r->path, (long long)r->index);
    uint8_t dims[8 * TSZ_MAX_DIMS];
    if (lread(r, dims, 8 * (size_t)ndim, "record shape", err) < 0) return -1;
    for (int i = 0; i < ndim; i++) rec->shape[i] = rd_i64(dims + 8 * i);
    if (tsz_rec_numel(rec) < 0) {
        char s[200];
        tsz_shape_str(rec, s, sizeof s);
        return util_err_set(err, "%s: record %lld (%s): invalid dims %s (negative or product overflows)", r->path,
                            (long long)r->index, util_msgname(rec->name).s, s);
    }
    uint64_t bytes = tsz_rec_bytes(rec);
    if (bytes == 0 && tsz_rec_numel(rec) > 0) {  /* numel fits 2^62 but numel * element size does not */
        char s[200];
        tsz_shape_str(rec, s, sizeof s);
        return util_err_set(err, "%s: record %lld (%s): invalid dims %s (data size overflows)", r->path,
                            (long long)r->index, util_msgname(rec->name).s, s);
    }
    if (bytes > r->max_record)
        return util_err_set(err, "%s: record %lld (%s): %llu bytes exceed the limit of %llu", r->path,
                            (long long)r->index, util_msgname(rec->name).s, (unsigned long long)bytes,
                            (unsigned long long)r->max_record);
    r->cur = *rec;
    r->cur_filter = filter;
    r->in_record = 1;
    r->index++;
    return 1;
}

static int scratch_reserve(tsz_reader *r, size_t n, struct util_err *err)
{
    if (n <= r->scratch_cap) return 0;
    uint8_t *s = realloc(r->scratch, n);
    if (!s) return util_err_set(err, "%s: record %lld: out of memory (%zu bytes)", r->path, (long long)r->index - 1, n);
    r->scratch = s;
    r->scratch_cap = n;
    return 0;
}

int tsz_read_data(tsz_reader *r, void *buf, size_t cap, struct util_err *err)
{
    if (!r->in_record) return util_err_set(err, "%s: no record to read", r->path);
    uint64_t bytes = tsz_rec_bytes(&r->cur);
    if (bytes > cap)
        return util_err_set(err, "%s: record %lld (%s): %llu bytes do not fit the buffer of %zu", r->path,
                            (long long)r->index - 1, util_msgname(r->cur.name).s, (unsigned long long)bytes, cap);
    r->in_record = 0;
    size_t es = tsz_dtype_size(r->cur.dtype);
    int rc = 0;
    r->in_data = 1;
    if (r->cur_filter == FILTER_SHUFFLE && es > 1 && bytes > 0) {
        if (scratch_reserve(r, bytes, err) < 0 || lread(r, r->scratch, bytes, "the data", err) < 0) rc = -1;
        else tsz_byte_unshuffle(buf, r->scratch, bytes / es, es);
    } else if (lread(r, buf, bytes, "the data", err) < 0) {
        rc = -1;
    }
    r->in_data = 0;
    return rc;
}

int tsz_skip_data(tsz_reader *r, struct util_err *err)
{
    if (!r->in_record) return 0;
    uint64_t left = tsz_rec_bytes(&r->cur);
    r->in_record = 0;
    uint8_t tmp[65536];
    r->in_data = 1;
    while (left > 0) {
        size_t k = left > sizeof tmp ? sizeof tmp : left;
        if (lread(r, tmp, k, "the data", err) < 0) { r->in_data = 0; return -1; }
        left -= k;
    }
    r->in_data = 0;
    return 0;
}

int tsz_read(tsz_reader *r, tsz_rec *rec, void **buf, size_t *cap, struct util_err *err)
{
    int rc = tsz_next(r, rec, err);
    if (rc <= 0) return rc;
    size_t bytes = tsz_rec_bytes(rec);
    if (bytes > *cap || !*buf) {
        void *nb = realloc(*buf, bytes ? bytes : 1);
        if (!nb) return util_err_set(err, "%s: record %lld: out of memory (%zu bytes)", r->path, (long long)r->index - 1, bytes);
        *buf = nb;
        *cap = bytes ? bytes : 1;
    }
    return tsz_read_data(r, *buf, *cap, err) < 0 ? -1 : 1;
}

int tsz_read_data_f32(tsz_reader *r, const tsz_rec *rec, float *out, size_t n_out, struct util_err *err)
{
    int64_t n = tsz_rec_numel(rec);
    if (n < 0 || (uint64_t)n > n_out)
        return util_err_set(err, "%s: record %lld (%s): %lld values do not fit the buffer of %zu", r->path,
                            (long long)r->index - 1, util_msgname(rec->name).s, (long long)n, n_out);
    if (rec->dtype == TSZ_F32) return tsz_read_data(r, out, n_out * sizeof(float), err);
    if (n == 0) return tsz_skip_data(r, err);  /* nothing to convert (and no scratch to point into) */
    size_t es = tsz_dtype_size(rec->dtype);
    if (scratch_reserve(r, (size_t)n * es + (size_t)n * es, err) < 0) return -1;
    /* Read into the second half of scratch: tsz_read_data may use the first half to unshuffle. */
    uint8_t *raw = r->scratch + (size_t)n * es;
    if (tsz_read_data(r, raw, (size_t)n * es, err) < 0) return -1;
    for (int64_t i = 0; i < n; i++) {
        const uint8_t *p = raw + i * es;
        switch (rec->dtype) {
        case TSZ_U8: out[i] = p[0]; break;
        case TSZ_I8: out[i] = (int8_t)p[0]; break;
        case TSZ_U16: { uint16_t v; memcpy(&v, p, 2); out[i] = v; break; }
        case TSZ_I16: { int16_t v; memcpy(&v, p, 2); out[i] = v; break; }
        case TSZ_I32: { int32_t v; memcpy(&v, p, 4); out[i] = (float)v; break; }
        case TSZ_I64: { int64_t v; memcpy(&v, p, 8); out[i] = (float)v; break; }
        case TSZ_F64: { double v; memcpy(&v, p, 8); out[i] = (float)v; break; }
        case TSZ_F16: { uint16_t v; memcpy(&v, p, 2); out[i] = tsz_f16_to_f32(v); break; }
        case TSZ_BF16: { uint16_t v; memcpy(&v, p, 2); out[i] = tsz_bf16_to_f32(v); break; }
        default: return util_err_set(err, "%s: record %lld: cannot convert dtype %d", r->path, (long long)r->index - 1, rec->dtype);
        }
    }
    return 0;
}

/* ---------------------------------------------------------------- writer */

void tsz_wopts_default(tsz_wopts *o)
{
    o->level = 3;
    o->raw = 0;
    o->shuffle = 1;
    o->threads = 0;
}

struct tsz_writer {
    util_atomic_file af;
    char *path;
    tsz_wopts opt;
    ZSTD_CCtx *cctx;
    uint8_t *zout; size_t zout_cap;
    uint8_t *scratch; size_t scratch_cap;
    int flush_each;          /* output is a pipe or terminal: flush after every record */
    int64_t declared, count;
    uint64_t raw_bytes, out_bytes;
    int finished, failed;
};

static int w_out(tsz_writer *w, const void *p, size_t n, struct util_err *err)
{
    if (n && fwrite(p, 1, n, w->af.fp) != n) {
        w->failed = 1;
        return util_err_sys(err, "%s: write failed", w->path);
    }
    w->out_bytes += n;
    return 0;
}

/* Feed logical bytes; mode is ZSTD_e_continue, ZSTD_e_flush or ZSTD_e_end. */
static int w_feed(tsz_writer *w, const void *p, size_t n, ZSTD_EndDirective mode, struct util_err *err)
{
    if (w->failed) return util_err_set(err, "%s: earlier write failed", w->path);
    w->raw_bytes += n;
    if (w->opt.raw) {
        if (w_out(w, p, n, err) < 0) return -1;
        if (mode != ZSTD_e_continue && fflush(w->af.fp) != 0) { w->failed = 1; return util_err_sys(err, "%s: write failed", w->path); }
        return 0;
    }
    ZSTD_inBuffer ib = {p, n, 0};
    for (;;) {
        ZSTD_outBuffer ob = {w->zout, w->zout_cap, 0};
        size_t left = ZSTD_compressStream2(w->cctx, &ob, &ib, mode);
        if (ZSTD_isError(left)) { w->failed = 1; return util_err_set(err, "%s: zstd: %s", w->path, ZSTD_getErrorName(left)); }
        if (w_out(w, w->zout, ob.pos, err) < 0) return -1;
        if (mode == ZSTD_e_continue ? ib.pos == ib.size : left == 0) break;
    }
    if (mode != ZSTD_e_continue && fflush(w->af.fp) != 0) { w->failed = 1; return util_err_sys(err, "%s: write failed", w->path); }
    return 0;
}

tsz_writer *tsz_writer_open(const char *path, const tsz_attrs *attrs, int64_t n_declared,
                            const tsz_wopts *opts, struct util_err *err)
{
    tsz_writer *w = calloc(1, sizeof *w);
    if (!w) { util_err_set(err, "%s: out of memory", path); return NULL; }
    if (opts) w->opt = *opts; else tsz_wopts_default(&w->opt);
    w->declared = n_declared < 0 ? -1 : n_declared;
    w->path = strdup(strcmp(path, "-") == 0 ? "standard output" : path);
    if (!w->path) { free(w); util_err_set(err, "%s: out of memory", path); return NULL; }
    if (util_atomic_open(&w->af, path, err) < 0) { free(w->path); free(w); return NULL; }
    struct stat st;
    w->flush_each = fstat(fileno(w->af.fp), &st) == 0 && !S_ISREG(st.st_mode);
    if (!w->opt.raw) {
        w->cctx = ZSTD_createCCtx();
        w->zout_cap = ZSTD_CStreamOutSize();
        w->zout = malloc(w->zout_cap);
        if (!w->cctx || !w->zout) { util_err_set(err, "%s: out of memory", path); goto fail; }
        int lvl = w->opt.level < 1 ? 1 : w->opt.level > 19 ? 19 : w->opt.level;
        ZSTD_CCtx_setParameter(w->cctx, ZSTD_c_compressionLevel, lvl);
        ZSTD_CCtx_setParameter(w->cctx, ZSTD_c_checksumFlag, 1);
        if (w->opt.threads > 0) ZSTD_CCtx_setParameter(w->cctx, ZSTD_c_nbWorkers, w->opt.threads);
    }
    size_t alen = 0;
    tsz_attrs empty;
    tsz_attrs_init(&empty);
    char *text = attrs_serialize(attrs ? attrs : &empty, &alen);
    if (!text) { util_err_set(err, "%s: out of memory", path); goto fail; }
    if (alen > TSZ_MAX_ATTR_BYTES) {
        free(text);
        util_err_set(err, "%s: attributes of %zu bytes exceed the limit of %u", path, alen, TSZ_MAX_ATTR_BYTES);
        goto fail;
    }
    uint8_t h[28];
    uint32_t version = TSZ_VERSION, flags = 0, al = (uint32_t)alen;
    memcpy(h, TSZ_MAGIC, 8);
    memcpy(h + 8, &version, 4);
    memcpy(h + 12, &flags, 4);
    memcpy(h + 16, &w->declared, 8);
    memcpy(h + 24, &al, 4);
    int rc = w_feed(w, h, 28, ZSTD_e_continue, err);
    if (rc == 0) rc = w_feed(w, text, alen, w->flush_each ? ZSTD_e_flush : ZSTD_e_continue, err);
    free(text);
    if (rc < 0) goto fail;
    return w;
fail:
    tsz_writer_close(w);
    return NULL;
}

int tsz_write(tsz_writer *w, const tsz_rec *rec, const void *data, struct util_err *err)
{
    if (w->finished) return util_err_set(err, "%s: write after finish", w->path);
    size_t es = tsz_dtype_size(rec->dtype);
    size_t nlen = strnlen(rec->name, sizeof rec->name);
    if (es == 0) return util_err_set(err, "%s: record %lld: unknown dtype %d", w->path, (long long)w->count, rec->dtype);
    if (rec->ndim < 0 || rec->ndim > TSZ_MAX_DIMS || tsz_rec_numel(rec) < 0)
        return util_err_set(err, "%s: record %lld (%s): invalid shape", w->path, (long long)w->count,
                            util_msgname(rec->name).s);
    if (nlen > TSZ_MAX_NAME) return util_err_set(err, "%s: record %lld: name too long", w->path, (long long)w->count);
    uint64_t bytes = tsz_rec_bytes(rec);
    if (bytes == 0 && tsz_rec_numel(rec) > 0)
        return util_err_set(err, "%s: record %lld (%s): data size overflows", w->path, (long long)w->count,
                            util_msgname(rec->name).s);
    int shuffle = w->opt.shuffle && !w->opt.raw && es > 1 && bytes >= 64;
    uint8_t h[4 + 14 + TSZ_MAX_NAME + 8 * TSZ_MAX_DIMS];
    size_t k = 0;
    memcpy(h, TAG_REC, 4); k = 4;
    h[k++] = (uint8_t)rec->dtype;
    h[k++] = (uint8_t)rec->ndim;
    h[k++] = shuffle ? FILTER_SHUFFLE : FILTER_NONE;
    h[k++] = 0;
    memcpy(h + k, &rec->label, 4); k += 4;
    memcpy(h + k, &rec->fold, 4); k += 4;
    uint16_t nl = (uint16_t)nlen;
    memcpy(h + k, &nl, 2); k += 2;
    memcpy(h + k, rec->name, nlen); k += nlen;
    for (int i = 0; i < rec->ndim; i++) { memcpy(h + k, &rec->shape[i], 8); k += 8; }
    if (w_feed(w, h, k, ZSTD_e_continue, err) < 0) return -1;
    const void *payload = data;
    if (shuffle) {
        if (bytes > w->scratch_cap) {
            uint8_t *s = realloc(w->scratch, bytes);
            if (!s) return util_err_set(err, "%s: out of memory", w->path);
            w->scratch = s;
            w->scratch_cap = bytes;
        }
        tsz_byte_shuffle(w->scratch, data, bytes / es, es);
        payload = w->scratch;
    }
    if (w_feed(w, payload, bytes, w->flush_each ? ZSTD_e_flush : ZSTD_e_continue, err) < 0) return -1;
    w->count++;
    return 0;
}

int tsz_write_f32(tsz_writer *w, const char *name, int32_t label, int32_t fold, int ndim,
                  const int64_t *shape, const float *data, struct util_err *err)
{
    tsz_rec rec;
    tsz_rec_init(&rec, name, TSZ_F32, ndim, shape);
    rec.label = label;
    rec.fold = fold;
    return tsz_write(w, &rec, data, err);
}

int tsz_writer_flush(tsz_writer *w, struct util_err *err)
{
    return w_feed(w, NULL, 0, ZSTD_e_flush, err);
}

int tsz_writer_finish(tsz_writer *w, struct util_err *err)
{
    if (w->finished) return 0;
    if (w->declared >= 0 && w->declared != w->count)
        return util_err_set(err, "%s: %lld records written, the header declared %lld", w->path,
                            (long long)w->count, (long long)w->declared);
    uint8_t e[12];
    memcpy(e, TAG_END, 4);
    memcpy(e + 4, &w->count, 8);
    if (w_feed(w, e, 12, ZSTD_e_end, err) < 0) return -1;
    if (util_atomic_commit(&w->af, err) < 0) { w->failed = 1; return -1; }
    w->finished = 1;
    return 0;
}

void tsz_writer_close(tsz_writer *w)
{
    if (!w) return;
    if (!w->finished) util_atomic_abort(&w->af);
    ZSTD_freeCCtx(w->cctx);
    free(w->zout); free(w->scratch); free(w->path);
    free(w);
}

int64_t tsz_writer_count(const tsz_writer *w) { return w->count; }

void tsz_writer_stats(const tsz_writer *w, uint64_t *raw_bytes, uint64_t *out_bytes)
{
    if (raw_bytes) *raw_bytes = w->raw_bytes;
    if (out_bytes) *out_bytes = w->out_bytes;
}
