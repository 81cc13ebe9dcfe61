/* tszutil.c: the work behind `tsz` (tsz(1)): selection predicates, value statistics and info reports,
 * attribute merging, NumPy .npy headers (byte for byte as numpy >= 1.23 numpy.save writes them) and a
 * front-to-back writer of stored zip archives (the .npz layout numpy.savez produces, ZIP64 when needed). */
#include "tszutil.h"

#include <errno.h>
#include <fnmatch.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- record groups */

int tszutil_is_companion(const char *prev_name, const tsz_rec *rec)
{
    size_t n = strlen(rec->name);
    return prev_name && n > 5 && strcmp(rec->name + n - 5, "#soft") == 0 && strlen(prev_name) == n - 5 &&
           memcmp(prev_name, rec->name, n - 5) == 0;
}

int tszutil_soft_groups(const tsz_attrs *a)
{
    const char *v = tsz_attrs_get(a, "soft_labels");
    return v && strcmp(v, "1") == 0;
}

/* ---------------------------------------------------------------- selection */

void tszutil_select_init(tszutil_select *s)
{
    memset(s, 0, sizeof *s);
    s->hi = INT64_MAX;
}

void tszutil_select_free(tszutil_select *s)
{
    free(s->folds);
    free(s->labels);
    for (int i = 0; i < s->n_names; i++) free(s->names[i]);
    free(s->names);
    tszutil_select_init(s);
}

static int add_ints(int32_t **v, int *n, const char *list)
{
    const char *p = list;
    if (!*p) return -1;
    for (;;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        char tok[32];
        long x;
        if (len == 0 || len >= sizeof tok) return -1;
        memcpy(tok, p, len);
        tok[len] = 0;
        if (util_parse_long(tok, INT32_MIN, INT32_MAX, &x) < 0) return -1;
        int32_t *nv = realloc(*v, (*n + 1) * sizeof **v);
        if (!nv) return -1;
        *v = nv;
        (*v)[(*n)++] = (int32_t)x;
        if (!comma) return 0;
        p = comma + 1;
    }
}

int tszutil_select_add_folds(tszutil_select *s, const char *list) { return add_ints(&s->folds, &s->n_folds, list); }
int tszutil_select_add_labels(tszutil_select *s, const char *list) { return add_ints(&s->labels, &s->n_labels, list); }

int tszutil_select_add_name(tszutil_select *s, const char *glob)
{
    char **nn = realloc(s->names, (s->n_names + 1) * sizeof *nn);
    if (!nn) return -1;
    s->names = nn;
    if (!(s->names[s->n_names] = strdup(glob))) return -1;
    s->n_names++;
    return 0;
}

int tszutil_select_set_range(tszutil_select *s, const char *text)
{
    const char *colon = strchr(text, ':');
    long lo = 0, hi = LONG_MAX;
    if (!colon) {
        if (util_parse_long(text, 0, LONG_MAX - 1, &lo) < 0) return -1;
        hi = lo + 1;
    } else {
        char a[32];
        size_t la = (size_t)(colon - text);
        if (la >= sizeof a || strchr(colon + 1, ':')) return -1;
        memcpy(a, text, la);
        a[la] = 0;
        if (la && util_parse_long(a, 0, LONG_MAX, &lo) < 0) return -1;
        if (colon[1] && util_parse_long(colon + 1, 0, LONG_MAX, &hi) < 0) return -1;
        if (hi < lo) return -1;
    }
    s->has_range = 1;
    s->lo = lo;
    s->hi = hi;
    return 0;
}

int tszutil_select_match(const tszutil_select *s, const tsz_rec *rec, int64_t index)
{
    int ok = 1;
    if (s->n_folds) {
        int any = 0;
        for (int i = 0; i < s->n_folds; i++) any |= rec->fold == s->folds[i];
        ok &= any;
    }
    if (s->n_labels) {
        int any = 0;
        for (int i = 0; i < s->n_labels; i++) any |= rec->label == s->labels[i];
        ok &= any;
    }
    if (s->n_names) {
        int any = 0;
        for (int i = 0; i < s->n_names && !any; i++) any = fnmatch(s->names[i], rec->name, 0) == 0;
        ok &= any;
    }
    if (s->has_range) ok &= index >= s->lo && index < s->hi;
    return ok ^ (s->invert != 0);
}

int tszutil_select_past_end(const tszutil_select *s, int64_t index)
{
    return !s->invert && s->has_range && index >= s->hi;
}

/* ---------------------------------------------------------------- statistics */

#define MAX_COUNT_KEYS 65536   /* distinct labels or folds tracked; more are reported as "other" */

void tszutil_stats_init(tszutil_stats *s)
{
    memset(s, 0, sizeof *s);
    s->min = INFINITY;
    s->max = -INFINITY;
}

void tszutil_stats_free(tszutil_stats *s)
{
    free(s->kinds);
    free(s->labels);
    free(s->folds);
    tszutil_stats_init(s);
}

/* Count key in a sorted table; keys beyond MAX_COUNT_KEYS distinct ones are dropped (*other++). */
static int count_key(tszutil_count **t, int *n, int *cap, int32_t key, int64_t *other)
{
    int lo = 0, hi = *n;
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if ((*t)[mid].key < key) lo = mid + 1;
        else hi = mid;
    }
    if (lo < *n && (*t)[lo].key == key) { (*t)[lo].count++; return 0; }
    if (*n >= MAX_COUNT_KEYS) { (*other)++; return 0; }
    if (*n == *cap) {
        int nc = *cap ? 2 * *cap : 16;
        tszutil_count *nt = realloc(*t, nc * sizeof *nt);
        if (!nt) return -1;
        *t = nt;
        *cap = nc;
    }
    memmove(*t + lo + 1, *t + lo, (*n - lo) * sizeof **t);
    (*t)[lo].key = key;
    (*t)[lo].count = 1;
    (*n)++;
    return 0;
}

/* Moments of one record: count, min, max, mean, m2, then merged into s (Chan et al.'s pairwise update,
 * so a long stream keeps full double precision). */
struct moments {
    uint64_t n, nonfinite;
    double min, max, s1, s2, shift;
};

static void merge_moments(tszutil_stats *s, const struct moments *m)
{
    s->n_nonfinite += m->nonfinite;
    if (m->n == 0) return;
    double nb = (double)m->n, mean_b = m->shift + m->s1 / nb;
    double m2_b = m->s2 - m->s1 * m->s1 / nb;
    if (m2_b < 0) m2_b = 0;
    if (m->min < s->min) s->min = m->min;
    if (m->max > s->max) s->max = m->max;
    if (s->n_values == 0) {
        s->mean = mean_b;
        s->m2 = m2_b;
    } else {
        double na = (double)s->n_values, n = na + nb, delta = mean_b - s->mean;
        s->mean += delta * nb / n;
        s->m2 += m2_b + delta * delta * na * nb / n;
    }
    s->n_values += m->n;
}

/* Float element loop: the shift (first finite value) keeps the sums of squares well conditioned. */
#define FLOAT_MOMENTS(T, CONV)                                                                   \
    do {                                                                                         \
        const T *p = data;                                                                       \
        int have = 0;                                                                            \
        for (int64_t i = 0; i < n; i++) {                                                        \
            double x = CONV(p[i]);                                                               \
            if (!isfinite(x)) { m.nonfinite++; continue; }                                       \
            if (!have) { m.shift = x; m.min = m.max = x; have = 1; }                             \
            double d = x - m.shift;                                                              \
            m.s1 += d;                                                                           \
            m.s2 += d * d;                                                                       \
            if (x < m.min) m.min = x;                                                            \
            if (x > m.max) m.max = x;                                                            \
            m.n++;                                                                               \
        }                                                                                        \
    } while (0)

#define INT_MOMENTS(T)                                                                           \
    do {                                                                                         \
        const T *p = data;                                                                       \
        m.shift = (double)p[0];                                                                  \
        m.min = m.max = m.shift;                                                                 \
        for (int64_t i = 0; i < n; i++) {                                                        \
            double x = (double)p[i], d = x - m.shift;                                            \
            m.s1 += d;                                                                           \
            m.s2 += d * d;                                                                       \
            if (x < m.min) m.min = x;                                                            \
            if (x > m.max) m.max = x;                                                            \
        }                                                                                        \
        m.n = (uint64_t)n;                                                                       \
    } while (0)

static double f32d(float x) { return x; }
static double f64d(double x) { return x; }
static double f16d(uint16_t x) { return tsz_f16_to_f32(x); }
static double bf16d(uint16_t x) { return tsz_bf16_to_f32(x); }

/* Bytes: a histogram is exact and much faster than the general loop (4 tables break the
 * store-to-load dependency on runs of equal bytes). */
static void byte_moments(struct moments *m, const uint8_t *p, int64_t n, int is_signed)
{
    uint64_t h[4][256];
    memset(h, 0, sizeof h);
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        h[0][p[i]]++; h[1][p[i + 1]]++; h[2][p[i + 2]]++; h[3][p[i + 3]]++;
    }
    for (; i < n; i++) h[0][p[i]]++;
    m->shift = is_signed ? (double)(int8_t)p[0] : p[0];
    m->min = INFINITY;
    m->max = -INFINITY;
    for (int b = 0; b < 256; b++) {
        uint64_t c = h[0][b] + h[1][b] + h[2][b] + h[3][b];
        if (!c) continue;
        double x = is_signed ? (double)(int8_t)b : b, d = x - m->shift;
        m->s1 += d * (double)c;
        m->s2 += d * d * (double)c;
        if (x < m->min) m->min = x;
        if (x > m->max) m->max = x;
    }
    m->n = (uint64_t)n;
}

int tszutil_stats_add(tszutil_stats *s, const tsz_rec *rec, const void *data, struct util_err *err)
{
    s->n_records++;
    s->data_bytes += tsz_rec_bytes(rec);
    /* dtype and shape */
    int k;
    for (k = s->n_kinds - 1; k >= 0; k--) {  /* the newest kind first: runs of one shape are common */
        tszutil_kind *q = &s->kinds[k];
        if (q->dtype == (int)rec->dtype && q->ndim == rec->ndim &&
            memcmp(q->shape, rec->shape, rec->ndim * sizeof q->shape[0]) == 0)
            break;
    }
    if (k >= 0) {
        s->kinds[k].count++;
    } else if (s->n_kinds >= TSZUTIL_MAX_KINDS) {
        s->other_kinds++;
    } else {
        if (s->n_kinds == s->cap_kinds) {
            int nc = s->cap_kinds ? 2 * s->cap_kinds : 8;
            tszutil_kind *nk = realloc(s->kinds, nc * sizeof *nk);
            if (!nk) return util_err_set(err, "out of memory");
            s->kinds = nk;
            s->cap_kinds = nc;
        }
        tszutil_kind *q = &s->kinds[s->n_kinds++];
        memset(q, 0, sizeof *q);
        q->dtype = rec->dtype;
        q->ndim = rec->ndim;
        memcpy(q->shape, rec->shape, rec->ndim * sizeof q->shape[0]);
        q->count = 1;
    }
    if (count_key(&s->labels, &s->n_labels, &s->cap_labels, rec->label, &s->other_labels) < 0 ||
        count_key(&s->folds, &s->n_folds, &s->cap_folds, rec->fold, &s->other_folds) < 0)
        return util_err_set(err, "out of memory");
    if (!data) return 0;
    tszutil_stats_add_values(s, (int)rec->dtype, data, tsz_rec_numel(rec));
    return 0;
}

void tszutil_stats_add_values(tszutil_stats *s, int dtype, const void *data, int64_t n)
{
    if (n <= 0) return;
    struct moments m = {0};
    switch (dtype) {
    case TSZ_F32: FLOAT_MOMENTS(float, f32d); break;
    case TSZ_F64: FLOAT_MOMENTS(double, f64d); break;
    case TSZ_F16: FLOAT_MOMENTS(uint16_t, f16d); break;
    case TSZ_BF16: FLOAT_MOMENTS(uint16_t, bf16d); break;
    case TSZ_U8: byte_moments(&m, data, n, 0); break;
    case TSZ_I8: byte_moments(&m, data, n, 1); break;
    case TSZ_I32: INT_MOMENTS(int32_t); break;
    case TSZ_I64: INT_MOMENTS(int64_t); break;
    case TSZ_U16: INT_MOMENTS(uint16_t); break;
    case TSZ_I16: INT_MOMENTS(int16_t); break;
    default: return;
    }
    merge_moments(s, &m);
}

double tszutil_stats_std(const tszutil_stats *s)
{
    return s->n_values ? sqrt(s->m2 / (double)s->n_values) : NAN;
}

/* ---------------------------------------------------------------- per-channel statistics */

void tszutil_chstats_init(tszutil_chstats *c)
{
    memset(c, 0, sizeof *c);
    for (int k = 0; k < TSZUTIL_MAX_CHANNELS; k++) tszutil_stats_init(&c->ch[k]);
}

int tszutil_example_channels(const tsz_rec *rec)
{
    if (rec->ndim == 2) return 1;
    if (rec->ndim == 3 && rec->shape[0] >= 1 && rec->shape[0] <= INT_MAX) return (int)rec->shape[0];
    return -1;
}

int tszutil_chstats_add(tszutil_chstats *c, const tsz_rec *rec, const void *data, struct util_err *err)
{
    const int nc = tszutil_example_channels(rec), u8 = rec->dtype == TSZ_U8;
    if (nc < 0) return util_err_set(err, "rank %d, expected C x H x W or H x W", rec->ndim);
    if (nc > TSZUTIL_MAX_CHANNELS) return util_err_set(err, "%d channels (at most %d)", nc, TSZUTIL_MAX_CHANNELS);
    if (c->n_examples == 0) {
        c->n_ch = nc;
        c->u8 = u8;
    } else if (nc != c->n_ch) {
        return util_err_set(err, "%d channels, the first example had %d", nc, c->n_ch);
    } else if (u8 != c->u8) {
        return util_err_set(err, "dtype %s, the first example was %s", tsz_dtype_name(rec->dtype),
                            c->u8 ? "u8" : "not u8");
    }
    const int64_t plane = tsz_rec_numel(rec) / nc;
    const size_t esize = tsz_dtype_size(rec->dtype);
    for (int k = 0; k < nc; k++)
        tszutil_stats_add_values(&c->ch[k], (int)rec->dtype, (const char *)data + (size_t)(k * plane) * esize, plane);
    c->n_examples++;
    return 0;
}

int tszutil_chstats_file(tszutil_chstats *c, const char *path, struct util_err *err)
{
    struct util_err e = {{0}};
    tsz_reader *r = tsz_reader_open(path, err);
    if (!r) return -1;
    const int group = tszutil_soft_groups(tsz_reader_attrs(r));
    char prev[TSZ_MAX_NAME + 1] = "";
    void *buf = NULL;
    size_t cap = 0;
    tsz_rec rec;
    int st, ok = -1;
    while ((st = tsz_read(r, &rec, &buf, &cap, err)) == 1) {
        const int companion = group && tszutil_is_companion(prev, &rec);
        memcpy(prev, rec.name, sizeof prev);
        if (companion) continue;
        if (tszutil_chstats_add(c, &rec, buf, &e) < 0) {
            util_err_set(err, "%s: record %lld (%s): %s", path, (long long)tsz_reader_index(r) - 1,
                         util_msgname(rec.name).s, e.msg);
            goto done;
        }
    }
    if (st < 0) goto done;
    if (c->n_examples == 0) {
        util_err_set(err, "%s: no examples (C x H x W or H x W records)", path);
        goto done;
    }
    ok = 0;
done:
    free(buf);
    tsz_reader_close(r);
    return ok;
}

void tszutil_chstats_get(const tszutil_chstats *c, int k, double *mean, double *std)
{
    const double unit = c->u8 ? 1.0 / 255.0 : 1.0;
    *mean = c->ch[k].mean * unit;
    *std = tszutil_stats_std(&c->ch[k]) * unit;
}

static void shape_text(char *buf, size_t cap, int dtype, int ndim, const int64_t *shape)
{
    tsz_rec r;
    memset(&r, 0, sizeof r);
    r.ndim = ndim;
    memcpy(r.shape, shape, ndim * sizeof *shape);
    char sh[200];
    tsz_shape_str(&r, sh, sizeof sh);
    snprintf(buf, cap, "%s %s", tsz_dtype_name(dtype), sh);
}

/* Print a possibly multi-line value with continuation lines indented under the first. */
static void print_value(FILE *f, const char *v, int indent)
{
    for (const char *c = v; *c; c++) {
        fputc(*c, f);
        if (*c == '\n') fprintf(f, "%*s", indent, "");
    }
    fputc('\n', f);
}

void tszutil_stats_print(FILE *f, const char *path, const tsz_attrs *a, int64_t declared,
                         const tszutil_stats *s)
{
    fprintf(f, "%s:\n", path);
    fprintf(f, "  attributes: %d\n", a->n);
    for (int i = 0; i < a->n; i++) {
        int w = fprintf(f, "    %s=", a->keys[i]);
        print_value(f, a->vals[i], w > 0 ? w : 0);
    }
    fprintf(f, "  records: %lld", (long long)s->n_records);
    if (declared >= 0) fprintf(f, " (declared %lld)", (long long)declared);
    fprintf(f, "\n  data bytes: %llu\n", (unsigned long long)s->data_bytes);
    fprintf(f, "  dtypes and shapes: %d\n", s->n_kinds + (s->other_kinds > 0));
    for (int i = 0; i < s->n_kinds && i < 50; i++) {
        char t[256];
        shape_text(t, sizeof t, s->kinds[i].dtype, s->kinds[i].ndim, s->kinds[i].shape);
        fprintf(f, "    %-28s %lld\n", t, (long long)s->kinds[i].count);
    }
    int64_t more = s->other_kinds;
    for (int i = 50; i < s->n_kinds; i++) more += s->kinds[i].count;
    if (more) fprintf(f, "    %-28s %lld\n", "(other shapes)", (long long)more);
    char **cls = NULL;
    int nc = 0;
    tsz_attrs_get_classes(a, &cls, &nc);
    fprintf(f, "  labels: %d\n", s->n_labels);
    for (int i = 0; i < s->n_labels; i++) {
        int32_t l = s->labels[i].key;
        const char *name = l == -1 ? "(none)" : l >= 0 && l < nc ? cls[l] : "(no class name)";
        fprintf(f, "    %6d %-21s %lld\n", l, name, (long long)s->labels[i].count);
    }
    if (s->other_labels) fprintf(f, "    %6s %-21s %lld\n", "", "(other labels)", (long long)s->other_labels);
    tsz_free_classes(cls, nc);
    fprintf(f, "  folds: %d\n", s->n_folds);
    for (int i = 0; i < s->n_folds; i++)
        fprintf(f, "    %6d %-21s %lld\n", s->folds[i].key, s->folds[i].key == 0 ? "(none)" : "",
                (long long)s->folds[i].count);
    if (s->other_folds) fprintf(f, "    %6s %-21s %lld\n", "", "(other folds)", (long long)s->other_folds);
    if (s->n_values)
        fprintf(f, "  values: %llu finite, %llu non-finite; min %.9g max %.9g mean %.9g std %.9g\n",
                (unsigned long long)s->n_values, (unsigned long long)s->n_nonfinite, s->min, s->max, s->mean,
                tszutil_stats_std(s));
    else
        fprintf(f, "  values: %llu finite, %llu non-finite\n", (unsigned long long)s->n_values,
                (unsigned long long)s->n_nonfinite);
}

/* A JSON string from arbitrary bytes: valid UTF-8 as is, otherwise each byte read as Latin-1. */
static json_t *jstr(const char *s)
{
    json_t *j = json_string(s);
    if (j) return j;
    size_t n = strlen(s);
    char *u = malloc(2 * n + 1), *p = u;
    if (!u) return NULL;
    for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
        if (*c < 0x80) *p++ = (char)*c;
        else { *p++ = (char)(0xc0 | *c >> 6); *p++ = (char)(0x80 | (*c & 0x3f)); }
    }
    *p = 0;
    j = json_string(u);
    free(u);
    return j;
}

static json_t *jshape(int ndim, const int64_t *shape)
{
    json_t *a = json_array();
    for (int i = 0; a && i < ndim; i++) json_array_append_new(a, json_integer(shape[i]));
    return a;
}

static json_t *jnum(double x) { return isfinite(x) ? json_real(x) : json_null(); }

json_t *tszutil_stats_json(const char *path, const tsz_attrs *a, int64_t declared, const tszutil_stats *s)
{
    json_t *o = json_object(), *attrs = json_object(), *kinds = json_array(), *labels = json_array(),
           *folds = json_array(), *vals = json_object(), *classes = json_array();
    if (!o || !attrs || !kinds || !labels || !folds || !vals || !classes) {
        json_decref(o); json_decref(attrs); json_decref(kinds); json_decref(labels);
        json_decref(folds); json_decref(vals); json_decref(classes);
        return NULL;
    }
    json_object_set_new(o, "file", jstr(path));
    for (int i = 0; i < a->n; i++) json_object_set_new(attrs, a->keys[i], jstr(a->vals[i]));
    json_object_set_new(o, "attributes", attrs);
    char **cls = NULL;
    int nc = 0;
    tsz_attrs_get_classes(a, &cls, &nc);
    for (int i = 0; i < nc; i++) json_array_append_new(classes, jstr(cls[i]));
    json_object_set_new(o, "classes", classes);
    json_object_set_new(o, "records", json_integer(s->n_records));
    json_object_set_new(o, "declared", declared >= 0 ? json_integer(declared) : json_null());
    json_object_set_new(o, "data_bytes", json_integer((json_int_t)s->data_bytes));
    for (int i = 0; i < s->n_kinds; i++) {
        json_t *k = json_object();
        json_object_set_new(k, "dtype", json_string(tsz_dtype_name(s->kinds[i].dtype)));
        json_object_set_new(k, "shape", jshape(s->kinds[i].ndim, s->kinds[i].shape));
        json_object_set_new(k, "count", json_integer(s->kinds[i].count));
        json_array_append_new(kinds, k);
    }
    json_object_set_new(o, "shapes", kinds);
    json_object_set_new(o, "other_shapes", json_integer(s->other_kinds));
    for (int i = 0; i < s->n_labels; i++) {
        int32_t l = s->labels[i].key;
        json_t *e = json_object();
        json_object_set_new(e, "label", json_integer(l));
        json_object_set_new(e, "class", l >= 0 && l < nc ? jstr(cls[l]) : json_null());
        json_object_set_new(e, "count", json_integer(s->labels[i].count));
        json_array_append_new(labels, e);
    }
    tsz_free_classes(cls, nc);
    json_object_set_new(o, "labels", labels);
    for (int i = 0; i < s->n_folds; i++) {
        json_t *e = json_object();
        json_object_set_new(e, "fold", json_integer(s->folds[i].key));
        json_object_set_new(e, "count", json_integer(s->folds[i].count));
        json_array_append_new(folds, e);
    }
    json_object_set_new(o, "folds", folds);
    json_object_set_new(o, "other_labels", json_integer(s->other_labels));
    json_object_set_new(o, "other_folds", json_integer(s->other_folds));
    json_object_set_new(vals, "count", json_integer((json_int_t)s->n_values));
    json_object_set_new(vals, "nonfinite", json_integer((json_int_t)s->n_nonfinite));
    json_object_set_new(vals, "min", s->n_values ? jnum(s->min) : json_null());
    json_object_set_new(vals, "max", s->n_values ? jnum(s->max) : json_null());
    json_object_set_new(vals, "mean", s->n_values ? jnum(s->mean) : json_null());
    json_object_set_new(vals, "std", s->n_values ? jnum(tszutil_stats_std(s)) : json_null());
    json_object_set_new(o, "values", vals);
    return o;
}

void tszutil_rec_print(FILE *f, const tsz_rec *rec, int64_t index)
{
    char t[256];
    shape_text(t, sizeof t, rec->dtype, rec->ndim, rec->shape);
    fprintf(f, "    %8lld  %-24s label %6d  fold %4d  %s\n", (long long)index, t, rec->label, rec->fold,
            rec->name);
}

json_t *tszutil_rec_json(const tsz_rec *rec, int64_t index)
{
    json_t *o = json_object();
    if (!o) return NULL;
    json_object_set_new(o, "index", json_integer(index));
    json_object_set_new(o, "name", jstr(rec->name));
    json_object_set_new(o, "dtype", json_string(tsz_dtype_name(rec->dtype)));
    json_object_set_new(o, "shape", jshape(rec->ndim, rec->shape));
    json_object_set_new(o, "label", json_integer(rec->label));
    json_object_set_new(o, "fold", json_integer(rec->fold));
    return o;
}

/* ---------------------------------------------------------------- attribute merging */

static int has_line(const char *text, const char *line, size_t len)
{
    for (const char *p = text; p && *p;) {
        const char *nl = strchr(p, '\n');
        size_t l = nl ? (size_t)(nl - p) : strlen(p);
        if (l == len && memcmp(p, line, len) == 0) return 1;
        p = nl ? nl + 1 : NULL;
    }
    return 0;
}

int tszutil_merge_attrs(tsz_attrs *dst, const char *dst_path, const tsz_attrs *src, const char *src_path,
                        struct util_err *err)
{
    for (int i = 0; i < src->n; i++) {
        const char *k = src->keys[i], *v = src->vals[i], *old = tsz_attrs_get(dst, k);
        if (strcmp(k, "history") == 0) {
            /* Append src's lines that dst lacks: common ancestry is not repeated. */
            size_t cap = (old ? strlen(old) : 0) + strlen(v) + 2;
            char *h = malloc(cap), *p = h;
            if (!h) return util_err_set(err, "out of memory");
            p = stpcpy(p, old ? old : "");
            for (const char *q = v; *q;) {
                const char *nl = strchr(q, '\n');
                size_t l = nl ? (size_t)(nl - q) : strlen(q);
                if (l && !has_line(h, q, l)) {
                    if (p > h) *p++ = '\n';
                    memcpy(p, q, l);
                    p += l;
                    *p = 0;
                }
                q += l + (nl != NULL);
            }
            int rc = tsz_attrs_set(dst, "history", h);
            free(h);
            if (rc < 0) return util_err_set(err, "out of memory");
        } else if (!old) {
            if (tsz_attrs_set(dst, k, v) < 0) return util_err_set(err, "out of memory");
        } else if (strcmp(k, "classes") == 0 && strcmp(old, v) != 0) {
            return util_err_set(err, "%s: attribute classes differs from that of %s (labels would mean different classes)",
                                src_path, dst_path);
        }
    }
    return 0;
}

/* ---------------------------------------------------------------- NumPy .npy */

static const char NPY_MAGIC[6] = {'\x93', 'N', 'U', 'M', 'P', 'Y'};

const char *tszutil_npy_descr(int dtype)
{
    switch (dtype) {
    case TSZ_F32: return "<f4";
    case TSZ_U8: return "|u1";
    case TSZ_I32: return "<i4";
    case TSZ_F64: return "<f8";
    case TSZ_I64: return "<i8";
    case TSZ_F16: return "<f2";
    case TSZ_I8: return "|i1";
    case TSZ_U16: return "<u2";
    case TSZ_I16: return "<i2";
    default: return NULL;
    }
}

size_t tszutil_npy_header(char *buf, size_t cap, const char *descr, int ndim, const int64_t *shape)
{
    /* numpy.lib.format: the dict repr with sorted keys, spaces so that axis 0 can grow to 21 digits in
     * place (numpy >= 1.23), then spaces and '\n' so data starts at a multiple of 64 bytes. */
    char d[600];
    int n = snprintf(d, sizeof d, "{'descr': '%s', 'fortran_order': False, 'shape': (", descr);
    for (int i = 0; i < ndim; i++)
        n += snprintf(d + n, sizeof d - n, "%s%lld", i ? ", " : "", (long long)shape[i]);
    n += snprintf(d + n, sizeof d - n, "%s), }", ndim == 1 ? "," : "");
    if (ndim > 0) {
        char first[32];
        int grow = 21 - snprintf(first, sizeof first, "%lld", (long long)shape[0]);
        for (int i = 0; i < grow; i++) d[n++] = ' ';
    }
    size_t hlen = (size_t)n + 1;
    size_t pad = 64 - (10 + hlen) % 64;
    size_t total = 10 + hlen + pad;
    if (total > cap || hlen + pad > 65535) return 0;
    memcpy(buf, NPY_MAGIC, 6);
    buf[6] = 1;
    buf[7] = 0;
    buf[8] = (char)((hlen + pad) & 0xff);
    buf[9] = (char)((hlen + pad) >> 8);
    memcpy(buf + 10, d, n);
    memset(buf + 10 + n, ' ', pad);
    buf[total - 1] = '\n';
    return total;
}

/* A tiny parser for the header's Python dict literal. */
struct pyparse {
    const char *p, *end;
};

static void py_ws(struct pyparse *q)
{
    while (q->p < q->end && (*q->p == ' ' || *q->p == '\t' || *q->p == '\n' || *q->p == '\r')) q->p++;
}

static int py_char(struct pyparse *q, char c)
{
    py_ws(q);
    if (q->p < q->end && *q->p == c) { q->p++; return 1; }
    return 0;
}

/* A quoted string into out (cap bytes). */
static int py_string(struct pyparse *q, char *out, size_t cap)
{
    py_ws(q);
    if (q->p >= q->end || (*q->p != '\'' && *q->p != '"')) return -1;
    char quote = *q->p++;
    size_t n = 0;
    while (q->p < q->end && *q->p != quote) {
        if (*q->p == '\\' || n + 1 >= cap) return -1;
        out[n++] = *q->p++;
    }
    if (q->p >= q->end) return -1;
    q->p++;
    out[n] = 0;
    return 0;
}

static int py_word(struct pyparse *q, const char *w)
{
    py_ws(q);
    size_t n = strlen(w);
    if ((size_t)(q->end - q->p) >= n && memcmp(q->p, w, n) == 0) { q->p += n; return 1; }
    return 0;
}

static int parse_descr(const char *d, tszutil_npy_info *info)
{
    char order = d[0], kind = d[1];
    if (!order || !kind || !d[2] || d[3]) return -1;
    int size = d[2] - '0';
    if (order != '<' && order != '>' && order != '|' && order != '=') return -1;
    int dt = -1;
    switch (kind) {
    case 'f': dt = size == 2 ? TSZ_F16 : size == 4 ? TSZ_F32 : size == 8 ? TSZ_F64 : -1; break;
    case 'i': dt = size == 1 ? TSZ_I8 : size == 2 ? TSZ_I16 : size == 4 ? TSZ_I32 : size == 8 ? TSZ_I64 : -1; break;
    case 'u': dt = size == 1 ? TSZ_U8 : size == 2 ? TSZ_U16 : -1; break;
    case 'b': dt = size == 1 ? TSZ_U8 : -1; break;
    default: return -1;
    }
    if (dt < 0) return -1;
    info->dtype = dt;
    info->swap = order == '>' && size > 1;
    return 0;
}

int tszutil_npy_read_header(FILE *f, const char *path, tszutil_npy_info *info, struct util_err *err)
{
    memset(info, 0, sizeof *info);
    unsigned char pre[12];
    if (fread(pre, 1, 10, f) != 10)
        return util_err_set(err, "%s: %s", path, ferror(f) ? strerror(errno) : "too short for a .npy file");
    if (memcmp(pre, NPY_MAGIC, 6) != 0) return util_err_set(err, "%s: not a .npy file (bad magic)", path);
    int major = pre[6];
    uint32_t hlen;
    if (major == 1) {
        hlen = pre[8] | (uint32_t)pre[9] << 8;
    } else if (major == 2 || major == 3) {
        if (fread(pre + 10, 1, 2, f) != 2) return util_err_set(err, "%s: truncated .npy header", path);
        hlen = pre[8] | (uint32_t)pre[9] << 8 | (uint32_t)pre[10] << 16 | (uint32_t)pre[11] << 24;
    } else {
        return util_err_set(err, "%s: unsupported .npy format version %d.%d", path, pre[6], pre[7]);
    }
    if (hlen > 1u << 20) return util_err_set(err, "%s: .npy header of %u bytes is implausible", path, hlen);
    char *h = malloc(hlen + 1);
    if (!h) return util_err_set(err, "%s: out of memory", path);
    if (fread(h, 1, hlen, f) != hlen) { free(h); return util_err_set(err, "%s: truncated .npy header", path); }
    h[hlen] = 0;
    struct pyparse q = {h, h + hlen};
    char key[64], descr[64] = "";
    int have_descr = 0, have_order = 0, have_shape = 0, rc = -1;
    if (!py_char(&q, '{')) goto bad;
    while (!py_char(&q, '}')) {
        if (py_string(&q, key, sizeof key) < 0 || !py_char(&q, ':')) goto bad;
        if (strcmp(key, "descr") == 0) {
            if (py_string(&q, descr, sizeof descr) < 0) {
                free(h);
                return util_err_set(err, "%s: structured or unusual .npy dtype is not supported", path);
            }
            have_descr = 1;
        } else if (strcmp(key, "fortran_order") == 0) {
            if (py_word(&q, "True")) info->fortran = 1;
            else if (py_word(&q, "False")) info->fortran = 0;
            else goto bad;
            have_order = 1;
        } else if (strcmp(key, "shape") == 0) {
            if (!py_char(&q, '(')) goto bad;
            while (!py_char(&q, ')')) {
                py_ws(&q);
                char num[32];
                size_t k = 0;
                while (q.p < q.end && *q.p >= '0' && *q.p <= '9' && k + 1 < sizeof num) num[k++] = *q.p++;
                num[k] = 0;
                long v;
                if (!k || util_parse_long(num, 0, LONG_MAX, &v) < 0) goto bad;
                if (info->ndim >= TSZ_MAX_DIMS) {
                    free(h);
                    return util_err_set(err, "%s: more than %d dimensions", path, TSZ_MAX_DIMS);
                }
                info->shape[info->ndim++] = v;
                if (!py_char(&q, ',')) {
                    if (!py_char(&q, ')')) goto bad;
                    break;
                }
            }
            have_shape = 1;
        } else {
            goto bad;
        }
        if (!py_char(&q, ',')) {
            if (!py_char(&q, '}')) goto bad;
            break;
        }
    }
    if (!have_descr || !have_order || !have_shape) goto bad;
    if (parse_descr(descr, info) < 0) {
        free(h);
        return util_err_set(err, "%s: .npy dtype '%s' has no TSZ equivalent", path, util_msgname(descr).s);
    }
    tsz_rec r;
    memset(&r, 0, sizeof r);
    r.dtype = info->dtype;
    r.ndim = info->ndim;
    memcpy(r.shape, info->shape, sizeof r.shape);
    if (tsz_rec_numel(&r) < 0) { free(h); return util_err_set(err, "%s: .npy shape overflows", path); }
    info->bytes = tsz_rec_bytes(&r);
    if (info->bytes > TSZ_DEFAULT_MAX_RECORD) {
        free(h);
        return util_err_set(err, "%s: array of %llu bytes exceeds the record limit of %llu", path,
                            (unsigned long long)info->bytes, (unsigned long long)TSZ_DEFAULT_MAX_RECORD);
    }
    rc = 0;
bad:
    if (rc < 0) {
        for (char *c = h; *c; c++)  /* one line: control bytes of the header shown as spaces */
            if ((unsigned char)*c < 0x20) *c = ' ';
        util_err_set(err, "%s: malformed .npy header '%.80s'", path, h);
    }
    free(h);
    return rc;
}

static void swap_bytes(uint8_t *p, uint64_t n, size_t es)
{
    for (uint64_t i = 0; i < n; i++, p += es)
        for (size_t a = 0, b = es - 1; a < b; a++, b--) { uint8_t t = p[a]; p[a] = p[b]; p[b] = t; }
}

/* Fortran order to C order: walk the input in Fortran order (axis 0 fastest) and place each element
 * at its C offset. */
static void fortran_to_c(uint8_t *dst, const uint8_t *src, int ndim, const int64_t *shape, size_t es)
{
    int64_t idx[TSZ_MAX_DIMS] = {0}, stride[TSZ_MAX_DIMS], n = 1;
    for (int k = ndim - 1; k >= 0; k--) { stride[k] = n; n *= shape[k]; }
    int64_t off = 0;
    for (int64_t j = 0; j < n; j++) {
        memcpy(dst + off * es, src + j * es, es);
        for (int k = 0; k < ndim; k++) {
            idx[k]++;
            off += stride[k];
            if (idx[k] < shape[k]) break;
            off -= shape[k] * stride[k];
            idx[k] = 0;
        }
    }
}

int tszutil_npy_read_data(FILE *f, const char *path, const tszutil_npy_info *info, void **buf,
                          struct util_err *err)
{
    uint64_t want = info->bytes, got = 0, cap = want < (1u << 20) ? want : (1u << 20);
    uint8_t *b = malloc(cap ? cap : 1);
    if (!b) return util_err_set(err, "%s: out of memory", path);
    while (got < want) {
        if (got == cap) {
            uint64_t nc = cap * 2 < want ? cap * 2 : want;
            uint8_t *nb = realloc(b, nc);
            if (!nb) { free(b); return util_err_set(err, "%s: out of memory", path); }
            b = nb;
            cap = nc;
        }
        size_t k = fread(b + got, 1, cap - got, f);
        if (k == 0) {
            int e = ferror(f);
            free(b);
            if (e) return util_err_sys(err, "%s: read error", path);
            return util_err_set(err, "%s: truncated: %llu of %llu data bytes", path, (unsigned long long)got,
                                (unsigned long long)want);
        }
        got += k;
    }
    if (fgetc(f) != EOF) { free(b); return util_err_set(err, "%s: unexpected bytes after the array data", path); }
    size_t es = tsz_dtype_size(info->dtype);
    if (info->swap) swap_bytes(b, want / es, es);
    if (info->fortran && info->ndim > 1 && want > 0) {
        uint8_t *c = malloc(want);
        if (!c) { free(b); return util_err_set(err, "%s: out of memory", path); }
        fortran_to_c(c, b, info->ndim, info->shape, es);
        free(b);
        b = c;
    }
    *buf = b;
    return 0;
}

/* Append one code point as UTF-32LE. */
static void put_u32le(uint8_t *p, uint32_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); p[2] = (uint8_t)(v >> 16); p[3] = (uint8_t)(v >> 24); }

/* Decode UTF-8 (a byte that is not valid UTF-8 stands for itself, as Latin-1) into code points;
 * returns how many (at most strlen(s)). */
static size_t utf8_decode(const char *s, uint32_t *out)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t n = 0;
    while (*p) {
        uint32_t c = *p;
        int len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        int ok = len > 0;
        for (int i = 1; ok && i < len; i++) ok = (p[i] & 0xc0) == 0x80;
        if (ok && len > 1) {
            c &= 0x7f >> len;
            for (int i = 1; i < len; i++) c = c << 6 | (p[i] & 0x3f);
            if ((len == 2 && c < 0x80) || (len == 3 && c < 0x800) || (len == 4 && (c < 0x10000 || c > 0x10ffff)) ||
                (c >= 0xd800 && c <= 0xdfff))
                ok = 0;
        }
        if (!ok) { c = *p; len = 1; }
        out[n++] = c;
        p += len;
    }
    return n;
}

void *tszutil_npy_unicode(char *const *s, int64_t n, size_t *size)
{
    size_t width = 1;
    for (int64_t i = 0; i < n; i++) {
        uint32_t *tmp = malloc((strlen(s[i]) + 1) * sizeof *tmp);
        if (!tmp) return NULL;
        size_t k = utf8_decode(s[i], tmp);
        free(tmp);
        if (k > width) width = k;
    }
    char descr[32], hdr[1024];
    snprintf(descr, sizeof descr, "<U%zu", width);
    size_t hl = tszutil_npy_header(hdr, sizeof hdr, descr, 1, &n);
    size_t total = hl + (size_t)n * width * 4;
    uint8_t *img = calloc(total ? total : 1, 1);
    uint32_t *cp = malloc((width + 1) * sizeof *cp);
    if (!img || !cp || !hl) { free(img); free(cp); return NULL; }
    memcpy(img, hdr, hl);
    for (int64_t i = 0; i < n; i++) {
        size_t k = utf8_decode(s[i], cp);
        for (size_t j = 0; j < k; j++) put_u32le(img + hl + ((size_t)i * width + j) * 4, cp[j]);
    }
    free(cp);
    *size = total;
    return img;
}

void *tszutil_npy_i32(const int32_t *v, int64_t n, size_t *size)
{
    char hdr[256];
    size_t hl = tszutil_npy_header(hdr, sizeof hdr, "<i4", 1, &n);
    uint8_t *img = malloc(hl + (size_t)n * 4);
    if (!img) return NULL;
    memcpy(img, hdr, hl);
    memcpy(img + hl, v, (size_t)n * 4);
    *size = hl + (size_t)n * 4;
    return img;
}

/* ---------------------------------------------------------------- CRC-32 (slice-by-8) */

static uint32_t crc_table[8][256];
static int crc_ready;

static void crc_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = c & 1 ? 0xedb88320u ^ (c >> 1) : c >> 1;
        crc_table[0][i] = c;
    }
    for (int t = 1; t < 8; t++)
        for (int i = 0; i < 256; i++) crc_table[t][i] = (crc_table[t - 1][i] >> 8) ^ crc_table[0][crc_table[t - 1][i] & 0xff];
    crc_ready = 1;
}

uint32_t tszutil_crc32(uint32_t crc, const void *data, size_t n)
{
    if (!crc_ready) crc_init();
    const uint8_t *p = data;
    crc = ~crc;
    for (; n >= 8; n -= 8, p += 8) {
        uint32_t a, b;
        memcpy(&a, p, 4);
        memcpy(&b, p + 4, 4);
        a ^= crc;
        crc = crc_table[7][a & 0xff] ^ crc_table[6][(a >> 8) & 0xff] ^ crc_table[5][(a >> 16) & 0xff] ^
              crc_table[4][a >> 24] ^ crc_table[3][b & 0xff] ^ crc_table[2][(b >> 8) & 0xff] ^
              crc_table[1][(b >> 16) & 0xff] ^ crc_table[0][b >> 24];
    }
    while (n--) crc = crc_table[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
    return ~crc;
}

/* ---------------------------------------------------------------- stored zip writer */

struct zip_entry {
    char *name;
    uint32_t crc;
    uint64_t size, offset;
};

struct tszutil_zip {
    util_atomic_file af;
    char *path;
    uint64_t offset;
    struct zip_entry *e;
    size_t n, cap;
    int force64, finished, failed;
};

enum { ZIP64_LIMIT = 0xffffffffu, DOS_DATE_1980_01_01 = (0 << 9) | (1 << 5) | 1 };

static void put16(uint8_t *p, unsigned v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static void put32(uint8_t *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> 8 * i); }
static void put64(uint8_t *p, uint64_t v) { for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> 8 * i); }

static int zip_out(tszutil_zip *z, const void *p, size_t n, struct util_err *err)
{
    if (z->failed) return util_err_set(err, "%s: earlier write failed", z->path);
    if (n && fwrite(p, 1, n, z->af.fp) != n) {
        z->failed = 1;
        return util_err_sys(err, "%s: write failed", z->path);
    }
    z->offset += n;
    return 0;
}

tszutil_zip *tszutil_zip_open(const char *path, struct util_err *err)
{
    tszutil_zip *z = calloc(1, sizeof *z);
    if (!z || !(z->path = strdup(strcmp(path, "-") == 0 ? "standard output" : path))) {
        free(z);
        util_err_set(err, "%s: out of memory", path);
        return NULL;
    }
    if (util_atomic_open(&z->af, path, err) < 0) {
        free(z->path);
        free(z);
        return NULL;
    }
    return z;
}

void tszutil_zip_force_zip64(tszutil_zip *z) { z->force64 = 1; }

static int name_is_ascii(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s >= 0x80) return 0;
    return 1;
}

int tszutil_zip_add(tszutil_zip *z, const char *name, int n_parts, const void *const *parts,
                    const size_t *sizes, struct util_err *err)
{
    size_t nlen = strlen(name);
    if (nlen == 0 || nlen > 65535) return util_err_set(err, "%s: bad member name length %zu", z->path, nlen);
    if (z->n == z->cap) {
        size_t nc = z->cap ? 2 * z->cap : 64;
        struct zip_entry *ne = realloc(z->e, nc * sizeof *ne);
        if (!ne) return util_err_set(err, "%s: out of memory", z->path);
        z->e = ne;
        z->cap = nc;
    }
    struct zip_entry *e = &z->e[z->n];
    e->crc = 0;
    e->size = 0;
    for (int i = 0; i < n_parts; i++) {
        e->crc = tszutil_crc32(e->crc, parts[i], sizes[i]);
        e->size += sizes[i];
    }
    e->offset = z->offset;
    if (!(e->name = strdup(name))) return util_err_set(err, "%s: out of memory", z->path);
    z->n++;
    int z64 = z->force64 || e->size >= ZIP64_LIMIT;
    uint8_t h[30 + 20];
    put32(h, 0x04034b50);
    put16(h + 4, z64 ? 45 : 20);
    put16(h + 6, name_is_ascii(name) ? 0 : 1u << 11);  /* bit 11: the name is UTF-8 */
    put16(h + 8, 0);                                   /* stored */
    put16(h + 10, 0);
    put16(h + 12, DOS_DATE_1980_01_01);
    put32(h + 14, e->crc);
    put32(h + 18, z64 ? ZIP64_LIMIT : (uint32_t)e->size);
    put32(h + 22, z64 ? ZIP64_LIMIT : (uint32_t)e->size);
    put16(h + 26, (unsigned)nlen);
    put16(h + 28, z64 ? 20 : 0);
    uint8_t x[20];
    put16(x, 1);
    put16(x + 2, 16);
    put64(x + 4, e->size);
    put64(x + 12, e->size);
    if (zip_out(z, h, 30, err) < 0 || zip_out(z, name, nlen, err) < 0 || (z64 && zip_out(z, x, 20, err) < 0))
        return -1;
    for (int i = 0; i < n_parts; i++)
        if (zip_out(z, parts[i], sizes[i], err) < 0) return -1;
    return 0;
}

int tszutil_zip_finish(tszutil_zip *z, struct util_err *err)
{
    uint64_t cd_start = z->offset;
    for (size_t i = 0; i < z->n; i++) {
        struct zip_entry *e = &z->e[i];
        int big_size = z->force64 || e->size >= ZIP64_LIMIT, big_off = z->force64 || e->offset >= ZIP64_LIMIT;
        size_t nlen = strlen(e->name);
        uint8_t h[46], x[4 + 24];
        size_t xl = 4;
        if (big_size) { put64(x + xl, e->size); xl += 8; put64(x + xl, e->size); xl += 8; }
        if (big_off) { put64(x + xl, e->offset); xl += 8; }
        put16(x, 1);
        put16(x + 2, (unsigned)(xl - 4));
        if (xl == 4) xl = 0;
        put32(h, 0x02014b50);
        put16(h + 4, 3u << 8 | 45);  /* made by: Unix, zip 4.5 */
        put16(h + 6, xl ? 45 : 20);
        put16(h + 8, name_is_ascii(e->name) ? 0 : 1u << 11);
        put16(h + 10, 0);
        put16(h + 12, 0);
        put16(h + 14, DOS_DATE_1980_01_01);
        put32(h + 16, e->crc);
        put32(h + 20, big_size ? ZIP64_LIMIT : (uint32_t)e->size);
        put32(h + 24, big_size ? ZIP64_LIMIT : (uint32_t)e->size);
        put16(h + 28, (unsigned)nlen);
        put16(h + 30, (unsigned)xl);
        put16(h + 32, 0);
        put16(h + 34, 0);
        put16(h + 36, 0);
        put32(h + 38, 0100644u << 16);  /* regular file, rw-r--r-- */
        put32(h + 42, big_off ? ZIP64_LIMIT : (uint32_t)e->offset);
        if (zip_out(z, h, 46, err) < 0 || zip_out(z, e->name, nlen, err) < 0 || zip_out(z, x, xl, err) < 0)
            return -1;
    }
    uint64_t cd_size = z->offset - cd_start, eocd64 = z->offset;
    int z64 = z->force64 || z->n >= 0xffff || cd_start >= ZIP64_LIMIT || cd_size >= ZIP64_LIMIT;
    if (z64) {
        uint8_t r[56 + 20];
        put32(r, 0x06064b50);
        put64(r + 4, 44);
        put16(r + 12, 3u << 8 | 45);
        put16(r + 14, 45);
        put32(r + 16, 0);
        put32(r + 20, 0);
        put64(r + 24, z->n);
        put64(r + 32, z->n);
        put64(r + 40, cd_size);
        put64(r + 48, cd_start);
        put32(r + 56, 0x07064b50);
        put32(r + 60, 0);
        put64(r + 64, eocd64);
        put32(r + 72, 1);
        if (zip_out(z, r, sizeof r, err) < 0) return -1;
    }
    uint8_t end[22];
    put32(end, 0x06054b50);
    put16(end + 4, 0);
    put16(end + 6, 0);
    put16(end + 8, z64 ? 0xffff : (unsigned)z->n);
    put16(end + 10, z64 ? 0xffff : (unsigned)z->n);
    put32(end + 12, z64 ? ZIP64_LIMIT : (uint32_t)cd_size);
    put32(end + 16, z64 ? ZIP64_LIMIT : (uint32_t)cd_start);
    put16(end + 20, 0);
    if (zip_out(z, end, 22, err) < 0) return -1;
    if (util_atomic_commit(&z->af, err) < 0) { z->failed = 1; return -1; }
    z->finished = 1;
    return 0;
}

void tszutil_zip_close(tszutil_zip *z)
{
    if (!z) return;
    if (!z->finished) util_atomic_abort(&z->af);
    for (size_t i = 0; i < z->n; i++) free(z->e[i].name);
    free(z->e);
    free(z->path);
    free(z);
}
