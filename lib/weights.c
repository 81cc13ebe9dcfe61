/* weights.c: named tensor sets: building, loading by content (TSZ here; safetensors and PyTorch in
 * weights_safetensors.c and weights_pickle.c), prefix stripping, ResNet inference and strict matching
 * against torchvision's state_dict names, and TSZ output.  Names and layouts follow torchvision's
 * ResNet (stride on the 3x3 conv of Bottleneck, downsample.0/1), which is what published files use. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "weights_internal.h"

/* ---------------------------------------------------------------- element types and conversion */

static const struct {
    size_t size;
    const char *name;
    int is_float;
} elems[W_NELEM] = {
    [W_F64] = {8, "f64", 1},  [W_F32] = {4, "f32", 1},  [W_F16] = {2, "f16", 1},
    [W_BF16] = {2, "bf16", 1}, [W_I64] = {8, "i64", 0},  [W_I32] = {4, "i32", 0},
    [W_I16] = {2, "i16", 0},  [W_I8] = {1, "i8", 0},    [W_U8] = {1, "u8", 0},
    [W_U16] = {2, "u16", 0},  [W_U32] = {4, "u32", 0},  [W_U64] = {8, "u64", 0},
    [W_BOOL] = {1, "bool", 0},
};

size_t welem_size(enum welem e) { return elems[e].size; }
const char *welem_name(enum welem e) { return elems[e].name; }
int welem_is_float(enum welem e) { return elems[e].is_float; }

int weights_numel_of(int ndim, const int64_t *shape, int64_t *numel)
{
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0) return -1;
        if (shape[i] == 0) { n = 0; continue; }
        if (n > ((int64_t)1 << 62) / shape[i]) return -1;
        n *= shape[i];
    }
    /* a zero dimension makes the product zero, but the other dims must still be sane */
    *numel = n;
    return 0;
}

/* One element of type e at p (unaligned) as double / int64. */
static double load_f(enum welem e, const uint8_t *p)
{
    switch (e) {
    case W_F64: { double v; memcpy(&v, p, 8); return v; }
    case W_F32: { float v; memcpy(&v, p, 4); return v; }
    case W_F16: { uint16_t h; memcpy(&h, p, 2); return tsz_f16_to_f32(h); }
    case W_BF16: { uint16_t h; memcpy(&h, p, 2); return tsz_bf16_to_f32(h); }
    default: return 0;
    }
}

static int64_t load_i(enum welem e, const uint8_t *p)
{
    switch (e) {
    case W_I64: { int64_t v; memcpy(&v, p, 8); return v; }
    case W_U64: { uint64_t v; memcpy(&v, p, 8); return (int64_t)v; }  /* checked by the caller */
    case W_I32: { int32_t v; memcpy(&v, p, 4); return v; }
    case W_U32: { uint32_t v; memcpy(&v, p, 4); return v; }
    case W_I16: { int16_t v; memcpy(&v, p, 2); return v; }
    case W_U16: { uint16_t v; memcpy(&v, p, 2); return v; }
    case W_I8: return (int8_t)p[0];
    case W_U8: return p[0];
    case W_BOOL: return p[0] != 0;
    default: return 0;
    }
}

/* Convert n contiguous elements; dst is f32 for float types, i64 otherwise. */
static void convert(void *dst, enum welem e, const uint8_t *src, int64_t n)
{
    if (e == W_F32 || e == W_I64) { memcpy(dst, src, (size_t)n * elems[e].size); return; }
    size_t es = elems[e].size;
    if (elems[e].is_float) {
        float *d = dst;
        if (e == W_F16) {
            for (int64_t i = 0; i < n; i++) { uint16_t h; memcpy(&h, src + i * 2, 2); d[i] = tsz_f16_to_f32(h); }
        } else if (e == W_BF16) {
            /* bf16 is the top half of an f32: a shift, no rounding */
            for (int64_t i = 0; i < n; i++) {
                uint16_t h; memcpy(&h, src + i * 2, 2);
                uint32_t u = (uint32_t)h << 16; memcpy(&d[i], &u, 4);
            }
        } else {
            for (int64_t i = 0; i < n; i++) d[i] = (float)load_f(e, src + (size_t)i * es);
        }
    } else {
        int64_t *d = dst;
        for (int64_t i = 0; i < n; i++) d[i] = load_i(e, src + (size_t)i * es);
    }
}

static int check_u64(enum welem e, const weights_tensor *t, const char *label, struct util_err *err)
{
    if (e != W_U64) return 0;
    const int64_t *d = t->data;
    for (int64_t i = 0; i < t->numel; i++)
        if (d[i] < 0)
            return util_err_set(err, "%s: tensor %s: u64 value above 2^63 cannot be kept", label, t->name);
    return 0;
}

static weights_tensor *put_begin(weights_set *s, const char *name, size_t name_len, enum welem e, int ndim,
                                 const int64_t *shape, struct util_err *err)
{
    char buf[TSZ_MAX_NAME + 1];
    if (name_len > TSZ_MAX_NAME) {
        util_err_set(err, "%s: tensor name of %zu bytes (at most %d)", s->label, name_len, TSZ_MAX_NAME);
        return NULL;
    }
    if (memchr(name, 0, name_len)) {
        util_err_set(err, "%s: tensor name with a NUL byte", s->label);
        return NULL;
    }
    memcpy(buf, name, name_len);
    buf[name_len] = 0;
    weights_tensor *t = weights_add(s, buf, elems[e].is_float ? TSZ_F32 : TSZ_I64, ndim, shape, NULL, err);
    if (t) t->file_dtype = elems[e].name;
    return t;
}

int weights_put(weights_set *s, const char *name, size_t name_len, enum welem e, int ndim,
                const int64_t *shape, const void *src, struct util_err *err)
{
    if (s->may_borrow && weights_can_borrow(e, src))   /* stored as we keep it: use it in place */
        return weights_put_borrowed(s, name, name_len, e, ndim, shape, (void *)src, err);
    weights_tensor *t = put_begin(s, name, name_len, e, ndim, shape, err);
    if (!t) return -1;
    convert(t->data, e, src, t->numel);
    return check_u64(e, t, s->label, err);
}

int weights_put_strided(weights_set *s, const char *name, size_t name_len, enum welem e, int ndim,
                        const int64_t *shape, const int64_t *stride, const void *src, int64_t offset,
                        struct util_err *err)
{
    weights_tensor *t = put_begin(s, name, name_len, e, ndim, shape, err);
    if (!t) return -1;
    if (t->numel == 0) return 0;
    /* contiguous (the usual case): one conversion pass */
    int contiguous = 1;
    int64_t expect = 1;
    for (int d = ndim - 1; d >= 0; d--) {
        if (shape[d] != 1 && stride[d] != expect) contiguous = 0;
        expect *= shape[d];
    }
    size_t es = elems[e].size;
    const uint8_t *base = (const uint8_t *)src + (size_t)offset * es;
    if (contiguous) {
        convert(t->data, e, base, t->numel);
        return check_u64(e, t, s->label, err);
    }
    /* general strides: walk the index like an odometer, converting rows of the last dimension */
    int64_t idx[TSZ_MAX_DIMS] = {0};
    int64_t row = ndim ? shape[ndim - 1] : 1, rstride = ndim ? stride[ndim - 1] : 1;
    size_t osize = elems[e].is_float ? 4 : 8;
    uint8_t *out = t->data;
    for (int64_t done = 0; done < t->numel; done += row) {
        int64_t off = 0;
        for (int d = 0; d < ndim - 1; d++) off += idx[d] * stride[d];
        for (int64_t j = 0; j < row; j++)
            convert(out + (size_t)(done + j) * osize, e, base + (size_t)(off + j * rstride) * es, 1);
        for (int d = ndim - 2; d >= 0; d--) {
            if (++idx[d] < shape[d]) break;
            idx[d] = 0;
        }
    }
    return check_u64(e, t, s->label, err);
}

/* ---------------------------------------------------------------- sets */

weights_set *weights_create(const char *label, struct util_err *err)
{
    weights_set *s = util_calloc(1, sizeof *s, err);
    if (!s) return NULL;
    tsz_attrs_init(&s->attrs);
    s->label = strdup(label ? label : "-");
    s->notes = calloc(1, 1);
    s->notes_cap = 1;
    if (!s->label || !s->notes) {
        weights_free(s);
        util_err_set(err, "out of memory");
        return NULL;
    }
    return s;
}

static void tensor_free(weights_tensor *t)
{
    free(t->name);
    if (!t->borrowed) free(t->data);
}

/* ---------------------------------------------------------------- the arena */

/* A chunk: this header, then the allocations.  Chunks are anonymous mappings of at least ARENA_CHUNK
 * bytes with transparent huge pages requested: converting a ResNet-50 fills 100 MB of fresh memory, and
 * 25,000 4 KiB page faults cost more than the rest of the load (0.6 s on the VMs we measured, 20 ms with
 * huge pages when the host has them ready).  Untouched tails of a chunk cost nothing.  Under
 * AddressSanitizer every allocation is its own malloc'd chunk, so out-of-bounds accesses are caught. */
struct weights_chunk {
    struct weights_chunk *next;
    size_t len, used;   /* bytes, this header included */
    int mapped;
    char pad[64 - 2 * sizeof(size_t) - sizeof(void *) - sizeof(int)];
};
#define ARENA_CHUNK ((size_t)64 << 20)
#if defined(__SANITIZE_ADDRESS__)
#define ARENA_EXACT 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define ARENA_EXACT 1
#endif
#endif

void *weights_arena_alloc(weights_set *s, size_t n, struct util_err *err)
{
    size_t need = (n + 63) / 64 * 64;
    if (need < n) goto oom;
    struct weights_chunk *c = s->arena;
#ifndef ARENA_EXACT
    if (!c || c->len - c->used < need) {
        size_t len = sizeof *c + need;
        if (len < need) goto oom;
        if (len < ARENA_CHUNK) len = ARENA_CHUNK;   /* address space only: untouched pages cost nothing */
        c = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (c == MAP_FAILED) goto oom;
#ifdef MADV_HUGEPAGE
        madvise(c, len, MADV_HUGEPAGE);   /* a hint: without it the same memory in 4 KiB pages */
#endif
        c->len = len;
        c->used = sizeof *c;
        c->mapped = 1;
        c->next = s->arena;
        s->arena = c;
    }
#else
    if (!(c = malloc(sizeof *c + need))) goto oom;
    c->len = sizeof *c + need;
    c->used = sizeof *c;
    c->mapped = 0;
    c->next = s->arena;
    s->arena = c;
#endif
    void *p = (char *)c + c->used;
    c->used += need;
    return p;
oom:
    util_err_set(err, "%s: out of memory (%zu bytes)", s->label, n);
    return NULL;
}

int weights_can_borrow(enum welem e, const void *p)
{
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    return (e == W_F32 && (uintptr_t)p % 4 == 0) || (e == W_I64 && (uintptr_t)p % 8 == 0);
#else
    (void)e, (void)p;
    return 0;
#endif
}

void weights_free(weights_set *s)
{
    if (!s) return;
    for (int i = 0; i < s->n; i++) tensor_free(&s->t[i]);
    for (struct weights_chunk *c = s->arena, *next; c; c = next) {
        next = c->next;
        if (c->mapped) munmap(c, c->len);
        else free(c);
    }
    if (s->map) munmap(s->map, s->map_len);
    free(s->t);
    tsz_attrs_free(&s->attrs);
    free(s->label);
    free(s->notes);
    free(s);
}

/* Append a tensor; its data is owned (taken over, freed on failure), borrowed (lives as long as the
 * set, never freed here) or, if NULL, allocated from the arena. */
static weights_tensor *add_tensor(weights_set *s, const char *name, enum tsz_dtype dtype, int ndim,
                                  const int64_t *shape, void *owned, int borrowed, struct util_err *err)
{
    int64_t numel;
    if (strlen(name) > TSZ_MAX_NAME) {
        util_err_set(err, "%s: tensor name of %zu bytes (at most %d)", s->label, strlen(name), TSZ_MAX_NAME);
        goto fail;
    }
    /* names go into one-line messages and notes: no control characters */
    for (const char *c = name; *c; c++)
        if ((unsigned char)*c < 32 || *c == 127) {
            char pn[80];
            util_printable(pn, sizeof pn, name, strlen(name));
            util_err_set(err, "%s: tensor name with a control character: %s", s->label, pn);
            goto fail;
        }
    if (dtype != TSZ_F32 && dtype != TSZ_I64) {
        util_err_set(err, "%s: tensor %s: dtype %s (sets hold f32 and i64)", s->label, name, tsz_dtype_name(dtype));
        goto fail;
    }
    if (ndim < 0 || ndim > TSZ_MAX_DIMS) {
        util_err_set(err, "%s: tensor %s: %d dimensions (at most %d)", s->label, name, ndim, TSZ_MAX_DIMS);
        goto fail;
    }
    if (weights_numel_of(ndim, shape, &numel) < 0 || numel > (int64_t)(SIZE_MAX / 16)) {
        util_err_set(err, "%s: tensor %s: invalid shape (negative or too large)", s->label, name);
        goto fail;
    }
    if (s->n >= WEIGHTS_MAX_TENSORS) {
        util_err_set(err, "%s: more than %d tensors", s->label, WEIGHTS_MAX_TENSORS);
        goto fail;
    }
    if (s->n == s->cap) {
        int cap = s->cap ? 2 * s->cap : 64;
        weights_tensor *nt = realloc(s->t, (size_t)cap * sizeof *nt);
        if (!nt) { util_err_set(err, "out of memory"); goto fail; }
        s->t = nt;
        s->cap = cap;
    }
    size_t bytes = (size_t)numel * (dtype == TSZ_F32 ? 4 : 8);
    weights_tensor *t = &s->t[s->n];
    memset(t, 0, sizeof *t);
    t->name = strdup(name);
    if (!t->name) {
        util_err_set(err, "%s: tensor %s: out of memory", s->label, name);
        goto fail;
    }
    if (owned) {
        t->data = owned;
        t->borrowed = borrowed;
    } else {
        if (!(t->data = weights_arena_alloc(s, bytes ? bytes : 1, err))) {
            free(t->name);
            return NULL;
        }
        t->borrowed = 1;
    }
    t->dtype = dtype;
    t->file_dtype = dtype == TSZ_F32 ? "f32" : "i64";
    t->ndim = ndim;
    for (int i = 0; i < ndim; i++) t->shape[i] = shape[i];
    t->numel = numel;
    s->n++;
    return t;
fail:
    if (!borrowed) free(owned);
    return NULL;
}

weights_tensor *weights_add(weights_set *s, const char *name, enum tsz_dtype dtype, int ndim,
                            const int64_t *shape, const void *data, struct util_err *err)
{
    weights_tensor *t = add_tensor(s, name, dtype, ndim, shape, NULL, 0, err);
    if (t && data) memcpy(t->data, data, (size_t)t->numel * (dtype == TSZ_F32 ? 4 : 8));
    return t;
}

int weights_put_owned(weights_set *s, const char *name, size_t name_len, enum welem e, int ndim,
                      const int64_t *shape, void *data, struct util_err *err)
{
    char buf[TSZ_MAX_NAME + 1];
    if (name_len > TSZ_MAX_NAME || memchr(name, 0, name_len)) {
        free(data);
        return util_err_set(err, "%s: tensor name of %zu bytes or with a NUL byte", s->label, name_len);
    }
    memcpy(buf, name, name_len);
    buf[name_len] = 0;
    return add_tensor(s, buf, e == W_F32 ? TSZ_F32 : TSZ_I64, ndim, shape, data, 0, err) ? 0 : -1;
}

int weights_put_borrowed(weights_set *s, const char *name, size_t name_len, enum welem e, int ndim,
                         const int64_t *shape, void *data, struct util_err *err)
{
    char buf[TSZ_MAX_NAME + 1];
    if (name_len > TSZ_MAX_NAME || memchr(name, 0, name_len))
        return util_err_set(err, "%s: tensor name of %zu bytes or with a NUL byte", s->label, name_len);
    memcpy(buf, name, name_len);
    buf[name_len] = 0;
    weights_tensor *t = add_tensor(s, buf, e == W_F32 ? TSZ_F32 : TSZ_I64, ndim, shape, data, 1, err);
    if (t) t->file_dtype = elems[e].name;
    return t ? 0 : -1;
}

weights_tensor *weights_find(const weights_set *s, const char *name)
{
    for (int i = 0; i < s->n; i++)
        if (strcmp(s->t[i].name, name) == 0) return &s->t[i];
    return NULL;
}

int64_t weights_numel(const weights_set *s)
{
    int64_t n = 0;
    for (int i = 0; i < s->n; i++)
        if (s->t[i].dtype == TSZ_F32) n += s->t[i].numel;
    return n;
}

static int ends(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

int64_t weights_param_count(const weights_set *s)
{
    int64_t n = 0;
    for (int i = 0; i < s->n; i++)
        if (s->t[i].dtype == TSZ_F32 && !ends(s->t[i].name, ".running_mean") && !ends(s->t[i].name, ".running_var"))
            n += s->t[i].numel;
    return n;
}

void weights_dtypes(const weights_set *s, char *buf, size_t cap)
{
    const char *seen[W_NELEM + 2];
    int n_seen = 0;
    size_t len = 0;
    if (cap) buf[0] = 0;
    for (int i = 0; i < s->n; i++) {
        int dup = 0;
        for (int j = 0; j < n_seen; j++)
            if (strcmp(seen[j], s->t[i].file_dtype) == 0) dup = 1;
        if (dup || n_seen == W_NELEM + 2) continue;
        seen[n_seen++] = s->t[i].file_dtype;
        int k = snprintf(buf + len, cap > len ? cap - len : 0, "%s%s", len ? "+" : "", s->t[i].file_dtype);
        if (k > 0) len += (size_t)k;
        if (len >= cap) break;
    }
}

const char *weights_notes(const weights_set *s) { return s->notes; }

void weights_note(weights_set *s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char line[1024];
    int k = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (k < 0) return;
    size_t len = strlen(line);
    if (s->notes_len + len + 2 > s->notes_cap) {
        size_t cap = 2 * s->notes_cap + len + 2;
        char *p = realloc(s->notes, cap);
        if (!p) return;   /* a note is not worth failing for */
        s->notes = p;
        s->notes_cap = cap;
    }
    memcpy(s->notes + s->notes_len, line, len);
    s->notes_len += len;
    s->notes[s->notes_len++] = '\n';
    s->notes[s->notes_len] = 0;
}

/* Remove tensors whose keep[i] is 0, keeping the order of the rest. */
static void compact(weights_set *s, const unsigned char *keep)
{
    int j = 0;
    for (int i = 0; i < s->n; i++) {
        if (keep[i]) s->t[j++] = s->t[i];
        else tensor_free(&s->t[i]);
    }
    s->n = j;
}

static const weights_set *sort_set;
static int cmp_idx_name(const void *a, const void *b)
{
    return strcmp(sort_set->t[*(const int *)a].name, sort_set->t[*(const int *)b].name);
}

/* Indices of s sorted by name (malloc'd), or NULL. */
static int *sorted_index(const weights_set *s, struct util_err *err)
{
    int *idx = util_malloc((size_t)s->n + 1, sizeof *idx, err);
    if (!idx) return NULL;
    for (int i = 0; i < s->n; i++) idx[i] = i;
    sort_set = s;
    qsort(idx, (size_t)s->n, sizeof *idx, cmp_idx_name);
    return idx;
}

static int check_duplicates(const weights_set *s, const char *when, struct util_err *err)
{
    int *idx = sorted_index(s, err);
    if (!idx) return -1;
    for (int i = 1; i < s->n; i++)
        if (strcmp(s->t[idx[i - 1]].name, s->t[idx[i]].name) == 0) {
            util_err_set(err, "%s: duplicate tensor name %s%s", s->label, s->t[idx[i]].name, when);
            free(idx);
            return -1;
        }
    free(idx);
    return 0;
}

/* ---------------------------------------------------------------- loading */

/* TSZ raw streams start with this magic (tsz(5)); zstd frames with 28 b5 2f fd. */
static const uint8_t tsz_magic[8] = {0x89, 'T', 'S', 'Z', '\r', '\n', 0x1a, '\n'};
static const uint8_t zstd_magic[4] = {0x28, 0xb5, 0x2f, 0xfd};
/* torch.save legacy: PROTO 2, LONG1 of 10 bytes 0x1950a86a20f9469cfc6c */
static const uint8_t legacy_magic[14] = {0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19};

enum weights_format weights_detect(const void *head, size_t n)
{
    const uint8_t *b = head;
    if (n >= 4 && memcmp(b, "PK\003\004", 4) == 0) return WEIGHTS_PTH;
    if (n >= sizeof legacy_magic && memcmp(b, legacy_magic, sizeof legacy_magic) == 0) return WEIGHTS_PTH_LEGACY;
    if ((n >= 8 && memcmp(b, tsz_magic, 8) == 0) || (n >= 4 && memcmp(b, zstd_magic, 4) == 0)) return WEIGHTS_TSZ;
    if (n >= 9) {
        uint64_t hl;
        memcpy(&hl, b, 8);
        /* the header is a JSON object: '{' first (spaces are only allowed as trailing padding) */
        if (hl >= 2 && hl <= WEIGHTS_MAX_HEADER && b[8] == '{') return WEIGHTS_SAFETENSORS;
    }
    return WEIGHTS_UNKNOWN;
}

const char *weights_format_name(enum weights_format f)
{
    switch (f) {
    case WEIGHTS_TSZ: return "tsz";
    case WEIGHTS_SAFETENSORS: return "safetensors";
    case WEIGHTS_PTH: return "pth";
    case WEIGHTS_PTH_LEGACY: return "pth-legacy";
    default: return "unknown";
    }
}

static enum welem welem_of_tsz(enum tsz_dtype d, int *ok)
{
    *ok = 1;
    switch (d) {
    case TSZ_F32: return W_F32;
    case TSZ_F64: return W_F64;
    case TSZ_F16: return W_F16;
    case TSZ_BF16: return W_BF16;
    case TSZ_I64: return W_I64;
    case TSZ_I32: return W_I32;
    case TSZ_I16: return W_I16;
    case TSZ_I8: return W_I8;
    case TSZ_U8: return W_U8;
    case TSZ_U16: return W_U16;
    }
    *ok = 0;
    return W_F32;
}

static weights_set *load_tsz(const char *path, struct util_err *err)
{
    tsz_reader *r = tsz_reader_open(path, err);
    if (!r) return NULL;
    weights_set *s = weights_create(path, err);
    void *buf = NULL;
    size_t cap = 0;
    if (!s || tsz_attrs_copy(&s->attrs, tsz_reader_attrs(r)) < 0) goto fail_mem;
    s->format = WEIGHTS_TSZ;
    for (;;) {
        tsz_rec rec;
        int k = tsz_next(r, &rec, err);
        if (k < 0) goto fail;
        if (k == 0) break;
        int ok;
        enum welem e = welem_of_tsz(rec.dtype, &ok);
        if (!ok) {
            util_err_set(err, "%s: record %lld: dtype %s cannot be a weight", path,
                         (long long)tsz_reader_index(r), tsz_dtype_name(rec.dtype));
            goto fail;
        }
        if (e == W_F32 || e == W_I64) {   /* straight into the tensor */
            weights_tensor *t = weights_add(s, rec.name, e == W_F32 ? TSZ_F32 : TSZ_I64, rec.ndim, rec.shape, NULL, err);
            if (!t || tsz_read_data(r, t->data, (size_t)tsz_rec_bytes(&rec), err) < 0) goto fail;
            continue;
        }
        uint64_t bytes = tsz_rec_bytes(&rec);
        if (bytes > cap) {
            void *nb = realloc(buf, (size_t)bytes);
            if (!nb) goto fail_mem;
            buf = nb;
            cap = (size_t)bytes;
        }
        if (tsz_read_data(r, buf, cap, err) < 0 ||
            weights_put(s, rec.name, strlen(rec.name), e, rec.ndim, rec.shape, buf, err) < 0)
            goto fail;
    }
    free(buf);
    tsz_reader_close(r);
    if (check_duplicates(s, "", err) < 0) { weights_free(s); return NULL; }
    return s;
fail_mem:
    util_err_set(err, "%s: out of memory", path);
fail:
    free(buf);
    tsz_reader_close(r);
    weights_free(s);
    return NULL;
}

static int finish_load(weights_set *s, const weights_opts *o, struct util_err *err)
{
    if (check_duplicates(s, "", err) < 0) return -1;
    return weights_strip(s, o ? o->strip : NULL, o ? o->n_strip : 0, err);
}

static weights_set *load_mem(const void *buf, size_t n, const char *label, const weights_opts *o, int borrow,
                             struct util_err *err)
{
    weights_set *s = NULL;
    switch (weights_detect(buf, n)) {
    case WEIGHTS_SAFETENSORS: s = weights_read_safetensors(buf, n, label, borrow, err); break;
    case WEIGHTS_PTH: s = weights_read_pth(buf, n, label, o, borrow, err); break;
    case WEIGHTS_PTH_LEGACY: s = weights_read_pth_legacy(buf, n, label, o, borrow, err); break;
    case WEIGHTS_TSZ:
        util_err_set(err, "%s: a TSZ stream cannot be read from memory", label);
        return NULL;
    default:
        if (n >= 2 && ((const uint8_t *)buf)[0] == 0x80)
            util_err_set(err, "%s: a bare pickle, not a torch.save file (no tensor data)", label);
        else
            util_err_set(err, "%s: not a model file (TSZ, safetensors or PyTorch checkpoint)", label);
        return NULL;
    }
    if (s && finish_load(s, o, err) < 0) {
        weights_free(s);
        return NULL;
    }
    return s;
}

weights_set *weights_load_mem(const void *buf, size_t n, const char *label, const weights_opts *o,
                              struct util_err *err)
{
    return load_mem(buf, n, label, o, 0, err);
}

weights_set *weights_load(const char *path, const weights_opts *o, struct util_err *err)
{
    if (strcmp(path, "-") == 0) {
        weights_set *s = load_tsz(path, err);
        if (s && o && o->n_strip && weights_strip(s, o->strip, o->n_strip, err) < 0) {
            weights_free(s);
            return NULL;
        }
        return s;
    }
    int fd = open(path, O_RDONLY);
    if (fd < 0) {
        util_err_sys(err, "%s", path);
        return NULL;
    }
    struct stat st;
    if (fstat(fd, &st) < 0) {
        util_err_sys(err, "%s", path);
        close(fd);
        return NULL;
    }
    if (!S_ISREG(st.st_mode)) {   /* a pipe or device: only a TSZ stream can be read without mapping */
        close(fd);
        return load_tsz(path, err);
    }
    uint8_t head[16];
    ssize_t got = pread(fd, head, sizeof head, 0);
    if (got < 0) {
        util_err_sys(err, "%s", path);
        close(fd);
        return NULL;
    }
    enum weights_format f = weights_detect(head, (size_t)got);
    if (f == WEIGHTS_TSZ) {
        close(fd);
        weights_set *s = load_tsz(path, err);
        if (s && o && o->n_strip && weights_strip(s, o->strip, o->n_strip, err) < 0) {
            weights_free(s);
            return NULL;
        }
        return s;
    }
    if (f == WEIGHTS_UNKNOWN) {
        close(fd);
        if (got == 0) util_err_set(err, "%s: empty file", path);
        else weights_load_mem(head, (size_t)got, path, o, err);   /* just for its message */
        return NULL;
    }
    size_t n = (size_t)st.st_size;
    /* private and writable: tensors may point into it, and a consumer writing to one copies the page
     * instead of faulting (the file is never changed) */
    void *map = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    close(fd);
    if (map == MAP_FAILED) {
        util_err_sys(err, "%s: mmap", path);
        return NULL;
    }
    /* every byte is read: map the page cache's pages in one call rather than by 25,000 faults
     * (MADV_POPULATE_READ reads without breaking copy-on-write, unlike MAP_POPULATE on this mapping) */
#ifdef MADV_POPULATE_READ
    if (madvise(map, n, MADV_POPULATE_READ) < 0)
#endif
        madvise(map, n, MADV_SEQUENTIAL);
    weights_set *s = load_mem(map, n, path, o, 1, err);
    int borrowed = 0;
    for (int i = 0; s && i < s->n && !borrowed; i++)
        borrowed = s->t[i].borrowed && (const char *)s->t[i].data >= (const char *)map &&
                   (const char *)s->t[i].data <= (const char *)map + n;   /* <=: an empty last tensor */
    if (borrowed) {
        s->map = map;
        s->map_len = n;
    } else {
        munmap(map, n);
    }
    if (s) s->format = f;
    return s;
}

/* ---------------------------------------------------------------- prefixes */

static int starts(const char *s, const char *p) { return strncmp(s, p, strlen(p)) == 0; }

/* Note up to 4 names of the dropped tensors. */
static void note_dropped(weights_set *s, const unsigned char *keep, const char *why)
{
    int n = 0;
    char list[600] = "";
    size_t len = 0;
    for (int i = 0; i < s->n; i++) {
        if (keep[i]) continue;
        if (n < 4 && len < sizeof list - 1) {
            int k = snprintf(list + len, sizeof list - len, "%s%s", n ? ", " : "", s->t[i].name);
            if (k > 0) len += (size_t)k;
        }
        n++;
    }
    if (n) weights_note(s, "dropped %d tensor%s %s: %s%s", n, n == 1 ? "" : "s", why, list, n > 4 ? ", ..." : "");
}

static int rename_tensor(weights_tensor *t, const char *newname, struct util_err *err)
{
    char *p = strdup(newname);
    if (!p) return util_err_set(err, "out of memory");
    free(t->name);
    t->name = p;
    return 0;
}

int weights_strip(weights_set *s, const char *const *prefixes, int n_prefixes, struct util_err *err)
{
    unsigned char *keep = util_malloc((size_t)s->n + 1, 1, err);
    if (!keep) return -1;
    memset(keep, 1, (size_t)s->n + 1);
    int rc = -1;
    if (n_prefixes > 0) {
        int *count = calloc((size_t)n_prefixes, sizeof *count);
        if (!count) { util_err_set(err, "out of memory"); goto done; }
        for (int i = 0; i < s->n; i++) {
            const char *name = s->t[i].name;
            int hit = -1;
            for (int pass = 0; pass < 2 && hit < 0; pass++) {
                for (int p = 0; p < n_prefixes && hit < 0; p++)
                    if (starts(name, prefixes[p])) hit = p;
                if (hit < 0 && (pass == 1 || !starts(name, "module."))) break;
                if (hit < 0) name += strlen("module.");
            }
            if (hit < 0) { keep[i] = 0; continue; }
            count[hit]++;
            if (rename_tensor(&s->t[i], name + strlen(prefixes[hit]), err) < 0) { free(count); goto done; }
        }
        for (int p = 0; p < n_prefixes; p++)
            if (count[p]) weights_note(s, "stripped prefix %s from %d names", prefixes[p], count[p]);
        free(count);
        note_dropped(s, keep, "without the prefix");
        compact(s, keep);
        if (s->n == 0) { util_err_set(err, "%s: no tensor name starts with the prefix %s", s->label, prefixes[0]); goto done; }
    } else {
        int n_mod = 0;
        for (int i = 0; i < s->n; i++)
            if (starts(s->t[i].name, "module.")) {
                if (rename_tensor(&s->t[i], s->t[i].name + strlen("module."), err) < 0) goto done;
                n_mod++;
            }
        if (n_mod) weights_note(s, "stripped prefix module. from %d names", n_mod);
        /* roots of ResNets: P with P"layer1.0.conv1.weight" and P"conv1.weight" */
        static const char suffix[] = "layer1.0.conv1.weight";
        const size_t sl = sizeof suffix - 1;
        int n_roots = 0;
        char roots[3][TSZ_MAX_NAME + 1];
        for (int i = 0; i < s->n; i++) {
            const char *name = s->t[i].name;
            size_t len = strlen(name);
            if (len < sl || strcmp(name + len - sl, suffix) != 0) continue;
            if (len > sl && name[len - sl - 1] != '.') continue;
            char cand[TSZ_MAX_NAME + 16];
            snprintf(cand, sizeof cand, "%.*sconv1.weight", (int)(len - sl), name);
            if (!weights_find(s, cand)) continue;
            if (n_roots < 3) snprintf(roots[n_roots], sizeof roots[0], "%.*s", (int)(len - sl), name);
            n_roots++;
        }
        if (n_roots > 1) {
            util_err_set(err, "%s: %d networks in the file (prefixes '%s', '%s'%s): choose one with --strip-prefix",
                         s->label, n_roots, roots[0], roots[1], n_roots > 2 ? ", ..." : "");
            goto done;
        }
        if (n_roots == 1 && roots[0][0]) {
            int n_str = 0;
            for (int i = 0; i < s->n; i++) {
                if (!starts(s->t[i].name, roots[0])) { keep[i] = 0; continue; }
                if (rename_tensor(&s->t[i], s->t[i].name + strlen(roots[0]), err) < 0) goto done;
                n_str++;
            }
            weights_note(s, "stripped prefix %s from %d names", roots[0], n_str);
            note_dropped(s, keep, "outside the network");
            compact(s, keep);
        }
    }
    rc = check_duplicates(s, " after stripping prefixes", err);
done:
    free(keep);
    return rc;
}

/* ---------------------------------------------------------------- ResNet architecture */

static const struct {
    const char *name;
    int depth, bottleneck, blocks[4];
} resnets[] = {
    {"resnet18", 18, 0, {2, 2, 2, 2}},  {"resnet34", 34, 0, {3, 4, 6, 3}},
    {"resnet50", 50, 1, {3, 4, 6, 3}},  {"resnet101", 101, 1, {3, 4, 23, 3}},
    {"resnet152", 152, 1, {3, 8, 36, 3}},
};

int weights_arch_from_name(const char *name, weights_arch *a)
{
    for (size_t i = 0; i < sizeof resnets / sizeof resnets[0]; i++)
        if (strcmp(name, resnets[i].name) == 0) {
            snprintf(a->name, sizeof a->name, "%s", resnets[i].name);
            a->depth = resnets[i].depth;
            a->bottleneck = resnets[i].bottleneck;
            memcpy(a->blocks, resnets[i].blocks, sizeof a->blocks);
            return 0;
        }
    return -1;
}

int weights_infer_resnet(const weights_set *s, const char *force, weights_arch *a, struct util_err *err)
{
    memset(a, 0, sizeof *a);
    const weights_tensor *c1 = weights_find(s, "conv1.weight");
    if (!c1 || c1->ndim != 4 || c1->shape[2] != c1->shape[3] || c1->shape[0] < 1 || c1->shape[1] < 1 ||
        c1->shape[0] > (1 << 20) || c1->shape[1] > (1 << 20))
        return util_err_set(err, "%s: not a torchvision ResNet: %s", s->label,
                            c1 ? "conv1.weight is not a square 4-D kernel" : "no conv1.weight (use --strip-prefix?)");
    a->width = (int)c1->shape[0];
    a->in_channels = (int)c1->shape[1];
    a->stem_kernel = (int)c1->shape[2];
    const weights_tensor *fc = weights_find(s, "fc.weight");
    if (fc && fc->ndim == 2 && fc->shape[0] <= (1 << 24)) a->num_classes = (int)fc->shape[0];
    if (force) {
        if (weights_arch_from_name(force, a) < 0)
            return util_err_set(err, "unknown architecture %s (resnet18, resnet34, resnet50, resnet101, resnet152)", force);
        return 0;
    }
    char name[64];
    a->bottleneck = weights_find(s, "layer1.0.conv3.weight") != NULL;
    for (int l = 0; l < 4; l++) {
        int b = 0;
        for (;; b++) {
            snprintf(name, sizeof name, "layer%d.%d.conv1.weight", l + 1, b);
            if (!weights_find(s, name)) break;
        }
        if (b == 0) return util_err_set(err, "%s: not a torchvision ResNet: no layer%d.0.conv1.weight", s->label, l + 1);
        a->blocks[l] = b;
    }
    for (size_t i = 0; i < sizeof resnets / sizeof resnets[0]; i++)
        if (resnets[i].bottleneck == a->bottleneck && memcmp(resnets[i].blocks, a->blocks, sizeof a->blocks) == 0) {
            snprintf(a->name, sizeof a->name, "%s", resnets[i].name);
            a->depth = resnets[i].depth;
            return 0;
        }
    return util_err_set(err, "%s: unknown ResNet layout: %s blocks %d,%d,%d,%d (use --arch)", s->label,
                        a->bottleneck ? "Bottleneck" : "BasicBlock", a->blocks[0], a->blocks[1], a->blocks[2], a->blocks[3]);
}

void weights_arch_str(const weights_arch *a, char *buf, size_t cap)
{
    snprintf(buf, cap, "%s width %d in_channels %d num_classes %d stem %s", a->name, a->width, a->in_channels,
             a->num_classes, a->stem_kernel == 7 ? "imagenet" : a->stem_kernel == 3 ? "small" : "other");
}

int weights_arch_attrs(const weights_arch *a, tsz_attrs *attrs)
{
    if (tsz_attrs_set(attrs, "model", "resnet") < 0 || tsz_attrs_set(attrs, "arch", a->name) < 0 ||
        tsz_attrs_setf(attrs, "width", "%d", a->width) < 0 ||
        tsz_attrs_setf(attrs, "in_channels", "%d", a->in_channels) < 0 ||
        tsz_attrs_setf(attrs, "num_classes", "%d", a->num_classes) < 0 ||
        tsz_attrs_set(attrs, "stem", a->stem_kernel == 3 ? "small" : "imagenet") < 0)
        return -1;
    return 0;
}

struct spec_list {
    weights_spec *v;
    int n, cap;
    int failed;
};

static void spec_add(struct spec_list *l, enum tsz_dtype dt, int ndim, const int64_t *shape, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static void spec_add(struct spec_list *l, enum tsz_dtype dt, int ndim, const int64_t *shape, const char *fmt, ...)
{
    if (l->failed) return;
    if (l->n == l->cap) {
        int cap = l->cap ? 2 * l->cap : 128;
        weights_spec *v = realloc(l->v, (size_t)cap * sizeof *v);
        if (!v) { l->failed = 1; return; }
        l->v = v;
        l->cap = cap;
    }
    weights_spec *e = &l->v[l->n++];
    memset(e, 0, sizeof *e);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->name, sizeof e->name, fmt, ap);
    va_end(ap);
    e->dtype = dt;
    e->ndim = ndim;
    for (int i = 0; i < ndim; i++) e->shape[i] = shape[i];
}

static void spec_conv(struct spec_list *l, const char *prefix, int64_t out, int64_t in, int64_t k)
{
    int64_t sh[4] = {out, in, k, k};
    spec_add(l, TSZ_F32, 4, sh, "%sweight", prefix);
}

static void spec_bn(struct spec_list *l, const char *prefix, int64_t c)
{
    static const char *const names[] = {"weight", "bias", "running_mean", "running_var"};
    for (int i = 0; i < 4; i++) spec_add(l, TSZ_F32, 1, &c, "%s%s", prefix, names[i]);
    spec_add(l, TSZ_I64, 0, NULL, "%snum_batches_tracked", prefix);
}

int weights_resnet_spec(const weights_arch *a, weights_spec **spec, int *n, struct util_err *err)
{
    struct spec_list l = {0};
    char p[64];
    int64_t w = a->width, exp = a->bottleneck ? 4 : 1;
    if (w < 1 || a->in_channels < 1 || a->stem_kernel < 1 || a->num_classes < 0)
        return util_err_set(err, "invalid architecture %s width %d in_channels %d", a->name, a->width, a->in_channels);
    spec_conv(&l, "conv1.", w, a->in_channels, a->stem_kernel);
    spec_bn(&l, "bn1.", w);
    int64_t inplanes = w;
    for (int s = 0; s < 4; s++) {
        int64_t planes = w << s;
        for (int b = 0; b < a->blocks[s]; b++) {
            int64_t in = b == 0 ? inplanes : planes * exp;
            if (a->bottleneck) {
                snprintf(p, sizeof p, "layer%d.%d.conv1.", s + 1, b); spec_conv(&l, p, planes, in, 1);
                snprintf(p, sizeof p, "layer%d.%d.bn1.", s + 1, b); spec_bn(&l, p, planes);
                snprintf(p, sizeof p, "layer%d.%d.conv2.", s + 1, b); spec_conv(&l, p, planes, planes, 3);
                snprintf(p, sizeof p, "layer%d.%d.bn2.", s + 1, b); spec_bn(&l, p, planes);
                snprintf(p, sizeof p, "layer%d.%d.conv3.", s + 1, b); spec_conv(&l, p, planes * 4, planes, 1);
                snprintf(p, sizeof p, "layer%d.%d.bn3.", s + 1, b); spec_bn(&l, p, planes * 4);
            } else {
                snprintf(p, sizeof p, "layer%d.%d.conv1.", s + 1, b); spec_conv(&l, p, planes, in, 3);
                snprintf(p, sizeof p, "layer%d.%d.bn1.", s + 1, b); spec_bn(&l, p, planes);
                snprintf(p, sizeof p, "layer%d.%d.conv2.", s + 1, b); spec_conv(&l, p, planes, planes, 3);
                snprintf(p, sizeof p, "layer%d.%d.bn2.", s + 1, b); spec_bn(&l, p, planes);
            }
            /* torchvision: a projection shortcut where the stride or the channel count changes */
            if (b == 0 && (s > 0 || in != planes * exp)) {
                snprintf(p, sizeof p, "layer%d.%d.downsample.0.", s + 1, b); spec_conv(&l, p, planes * exp, in, 1);
                snprintf(p, sizeof p, "layer%d.%d.downsample.1.", s + 1, b); spec_bn(&l, p, planes * exp);
            }
        }
        inplanes = planes * exp;
    }
    if (a->num_classes > 0) {
        int64_t fw[2] = {a->num_classes, inplanes};
        spec_add(&l, TSZ_F32, 2, fw, "fc.weight");
        int64_t nc = a->num_classes;
        spec_add(&l, TSZ_F32, 1, &nc, "fc.bias");
    }
    if (l.failed) {
        free(l.v);
        return util_err_set(err, "out of memory");
    }
    *spec = l.v;
    *n = l.n;
    return 0;
}

/* ---------------------------------------------------------------- matching */

static int is_counter_name(const char *name)
{
    size_t len = strlen(name);
    static const char c[] = "num_batches_tracked";
    return len >= sizeof c - 1 && strcmp(name + len - (sizeof c - 1), c) == 0;
}

static int is_head_name(const char *name)
{
    static const char *const heads[] = {"head.", "heads.", "projector.", "projection.", "proj_head.",
                                        "predictor.", "prototypes.", "mlp.", "queue", "optim."};
    for (size_t i = 0; i < sizeof heads / sizeof heads[0]; i++)
        if (starts(name, heads[i])) return 1;
    /* MoCo v2 / SimCLR conversions keep an MLP head as fc.0., fc.2. */
    return starts(name, "fc.") && name[3] >= '0' && name[3] <= '9';
}

static void shape_str(int ndim, const int64_t *shape, char *buf, size_t cap)
{
    size_t len = 0;
    buf[0] = 0;
    if (ndim == 0) { snprintf(buf, cap, "scalar"); return; }
    for (int i = 0; i < ndim && len < cap; i++) {
        int k = snprintf(buf + len, cap - len, "%s%lld", i ? "x" : "", (long long)shape[i]);
        if (k > 0) len += (size_t)k;
    }
}

static int same_shape(const weights_tensor *t, const weights_spec *e)
{
    if (t->ndim != e->ndim) return 0;
    for (int i = 0; i < t->ndim; i++)
        if (t->shape[i] != e->shape[i]) return 0;
    return 1;
}

/* Append to the one-line summary while it has room. */
static void sum_add(char *sum, size_t cap, int *n_listed, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static void sum_add(char *sum, size_t cap, int *n_listed, const char *fmt, ...)
{
    size_t len = strlen(sum);
    if (len + 200 >= cap) {
        if (!strstr(sum, ", ...")) snprintf(sum + len, cap - len, ", ...");
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    snprintf(sum + len, cap - len, "%s", *n_listed ? ", " : "");
    len = strlen(sum);
    vsnprintf(sum + len, cap - len, fmt, ap);
    va_end(ap);
    (*n_listed)++;
}

/* file_dtype of counters the file lacked (compared by address) */
static const char added_dtype[] = "none";

static int spec_cmp_search(const void *key, const void *elem)
{
    return strcmp((const char *)key, sort_set->t[*(const int *)elem].name);
}

int weights_match(weights_set *s, const weights_spec *spec, int n, int flags, struct util_err *err)
{
    int *idx = sorted_index(s, err);
    int *where = util_malloc((size_t)n + 1, sizeof *where, err);        /* spec i -> tensor or -1 */
    unsigned char *used = util_calloc((size_t)s->n + 1, 1, err);
    weights_tensor *nt = util_malloc((size_t)n + 1, sizeof *nt, err);
    int rc = -1, n_missing = 0, n_unexp = 0, n_shape = 0, n_listed = 0, n_counters_added = 0;
    char sum[700] = "";
    char sh1[128], sh2[128];
    if (!idx || !where || !used || !nt) goto done;
    for (int i = 0; i < n; i++) {
        sort_set = s;
        int *hit = bsearch(spec[i].name, idx, (size_t)s->n, sizeof *idx, spec_cmp_search);
        where[i] = hit ? *hit : -1;
        shape_str(spec[i].ndim, spec[i].shape, sh2, sizeof sh2);
        if (!hit) {
            if (spec[i].dtype == TSZ_I64 && spec[i].ndim == 0 && is_counter_name(spec[i].name)) {
                n_counters_added++;
                continue;
            }
            n_missing++;
            weights_note(s, "missing %s (%s)", spec[i].name, sh2);
            sum_add(sum, sizeof sum, &n_listed, "missing %s", spec[i].name);
            continue;
        }
        weights_tensor *t = &s->t[*hit];
        used[*hit] = 1;
        if (!same_shape(t, &spec[i]) || t->dtype != spec[i].dtype) {
            shape_str(t->ndim, t->shape, sh1, sizeof sh1);
            n_shape++;
            weights_note(s, "mis-shaped %s: %s %s in the file, %s %s expected", t->name, tsz_dtype_name(t->dtype), sh1,
                         tsz_dtype_name(spec[i].dtype), sh2);
            sum_add(sum, sizeof sum, &n_listed, "mis-shaped %s (%s, expected %s)", t->name, sh1, sh2);
            where[i] = -2;
        }
    }
    unsigned char *keep = used;   /* tensors not in the spec: counters and heads dropped, others listed */
    int n_cnt = 0;
    for (int i = 0; i < s->n; i++) {
        if (used[i]) continue;
        const char *name = s->t[i].name;
        if (is_counter_name(name)) { n_cnt++; continue; }
        if (is_head_name(name)) continue;
        shape_str(s->t[i].ndim, s->t[i].shape, sh1, sizeof sh1);
        n_unexp++;
        weights_note(s, "unexpected %s (%s)", name, sh1);
        sum_add(sum, sizeof sum, &n_listed, "unexpected %s", name);
    }
    int bad = n_missing + n_unexp + n_shape;
    if (bad && !(flags & WEIGHTS_NON_STRICT)) {
        util_err_set(err, "%s: %d tensor%s do not match the network (%d missing, %d unexpected, %d mis-shaped): %s",
                     s->label, bad, bad == 1 ? "" : "s", n_missing, n_unexp, n_shape, sum);
        goto done;
    }
    /* now commit: notes for what is dropped, then rebuild the array in spec order */
    {
        unsigned char *heads = util_calloc((size_t)s->n + 1, 1, err);
        if (!heads) goto done;
        for (int i = 0; i < s->n; i++) heads[i] = used[i] || !is_head_name(s->t[i].name);
        note_dropped(s, heads, "of heads or optimiser state");
        free(heads);
    }
    if (n_cnt) weights_note(s, "dropped %d counter%s the network does not keep", n_cnt, n_cnt == 1 ? "" : "s");
    if (n_counters_added) weights_note(s, "added %d num_batches_tracked counter%s (0)", n_counters_added, n_counters_added == 1 ? "" : "s");
    if (bad) weights_note(s, "non-strict: %d missing, %d unexpected and %d mis-shaped tensors left out", n_missing, n_unexp, n_shape);
    int m = 0;
    for (int i = 0; i < n; i++) {
        if (where[i] >= 0) {
            nt[m++] = s->t[where[i]];
            continue;
        }
        if (where[i] == -2) {   /* mis-shaped, non-strict: dropped below */
            continue;
        }
        if (spec[i].dtype == TSZ_I64 && spec[i].ndim == 0 && is_counter_name(spec[i].name)) {
            int64_t zero = 0;
            weights_tensor tmp = {0};
            tmp.name = strdup(spec[i].name);
            tmp.data = malloc(8);
            if (!tmp.name || !tmp.data) {
                free(tmp.name);
                free(tmp.data);
                for (int j = 0; j < m; j++)   /* give back the freshly made counters only */
                    if (nt[j].file_dtype == added_dtype) tensor_free(&nt[j]);
                util_err_set(err, "out of memory");
                goto done;
            }
            memcpy(tmp.data, &zero, 8);
            tmp.dtype = TSZ_I64;
            tmp.file_dtype = added_dtype;
            tmp.numel = 1;
            nt[m++] = tmp;
        }
    }
    for (int i = 0; i < n; i++)
        if (where[i] >= 0) keep[where[i]] = 2;   /* moved into nt */
    for (int i = 0; i < s->n; i++)
        if (keep[i] != 2) tensor_free(&s->t[i]);
    if (m > s->cap) {
        weights_tensor *t2 = realloc(s->t, (size_t)m * sizeof *t2);
        if (!t2) {   /* cannot happen in practice (m <= spec size); keep the set consistent anyway */
            for (int j = 0; j < m; j++) tensor_free(&nt[j]);
            s->n = 0;
            util_err_set(err, "out of memory");
            goto done;
        }
        s->t = t2;
        s->cap = m;
    }
    memcpy(s->t, nt, (size_t)m * sizeof *nt);
    s->n = m;
    rc = 0;
done:
    free(idx);
    free(where);
    free(used);
    free(nt);
    return rc;
}

/* ---------------------------------------------------------------- TSZ output */

int weights_save_tsz(const weights_set *s, const char *path, const tsz_attrs *attrs, const tsz_wopts *opts,
                     struct util_err *err)
{
    tsz_writer *w = tsz_writer_open(path, attrs ? attrs : &s->attrs, s->n, opts, err);
    if (!w) return -1;
    for (int i = 0; i < s->n; i++) {
        const weights_tensor *t = &s->t[i];
        tsz_rec rec;
        tsz_rec_init(&rec, t->name, t->dtype, t->ndim, t->shape);
        if (tsz_write(w, &rec, t->data, err) < 0) {
            tsz_writer_close(w);
            return -1;
        }
    }
    int rc = tsz_writer_finish(w, err);
    tsz_writer_close(w);
    return rc;
}
