/* weights_pickle.c: PyTorch checkpoints.  A restricted unpickler builds plain values (None, bools,
 * ints, floats, strings, tuples, lists, dicts, sets) and tensors; the only callables it knows are
 * the handful torch.save emits for a state dict, applied by this code itself, so nothing from a file
 * is ever run.  Readers for the zip format (torch >= 1.6: DIR/data.pkl + DIR/data/KEY, via libzip)
 * and the legacy format (magic, protocol, sys_info, object, storage keys, raw storages), and writers
 * of both.  Opcode meanings follow CPython's Lib/pickletools.py. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zip.h>

#include "weights_internal.h"

#define MAX_PICKLE ((size_t)1 << 30)   /* bytes of one pickle */

/* ---------------------------------------------------------------- values */

enum okind { O_NONE, O_BOOL, O_INT, O_BIGINT, O_FLOAT, O_STR, O_BYTES, O_TUPLE, O_LIST, O_DICT, O_SET,
             O_GLOBAL, O_STORAGE, O_TENSOR, O_OPAQUE };

enum gid { G_ODICT, G_REBUILD_V2, G_REBUILD, G_PARAM, G_PARAM_STATE, G_FROM_TYPE_V2, G_TENSOR_TYPE,
           G_PARAM_TYPE, G_DEVICE, G_STORAGE, G_INERT };

struct storage {
    const uint8_t *key;
    size_t key_len;
    enum welem elem;
    int64_t numel;       /* of the root storage, as the persistent id says */
    int64_t view_off;    /* legacy storage views: elements [view_off, view_off + view_numel) */
    int64_t view_numel;  /* -1: no view */
};

struct tensor {
    struct obj *storage;
    int64_t offset;
    int ndim;
    int64_t shape[TSZ_MAX_DIMS], stride[TSZ_MAX_DIMS];
};

struct obj {
    uint8_t kind;
    uint8_t elem;        /* G_STORAGE globals: enum welem */
    int32_t n, cap;      /* containers: items used/allocated (a dict holds key, value, key, value...) */
    union {
        int64_t i;       /* O_BOOL, O_INT, O_GLOBAL (enum gid) */
        double f;
        struct { const uint8_t *p; size_t len; } s;   /* O_STR, O_BYTES, O_BIGINT (little-endian bytes) */
        struct obj **items;
        struct storage *st;
        struct tensor *t;
    } u;
};

#define CHUNK 4096
struct chunk {
    struct chunk *next;
    int used;
    struct obj o[CHUNK];
};

struct up {                      /* the unpickler */
    const char *label;           /* file, for messages */
    const char *where;           /* "FILE: data.pkl" or "FILE" */
    const uint8_t *buf;          /* the pickle ... */
    size_t n, pos, base;         /* ... its length, the read position and its offset in the file */
    struct obj **stack;
    size_t sp, scap;
    size_t *marks;
    size_t nmarks, mcap;
    struct obj **memo;
    size_t memo_cap, memo_len;
    struct chunk *chunks;
    struct obj none, t_true, t_false, empty_tuple;
    struct util_err *err;
};

static int perr(struct up *u, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int perr(struct up *u, const char *fmt, ...)
{
    char msg[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return util_err_set(u->err, "%s: pickle byte %zu: %s", u->where, u->base + u->pos, msg);
}

static struct obj *new_obj(struct up *u, enum okind k)
{
    if (!u->chunks || u->chunks->used == CHUNK) {
        struct chunk *c = malloc(sizeof *c);
        if (!c) { perr(u, "out of memory"); return NULL; }
        c->next = u->chunks;
        c->used = 0;
        u->chunks = c;
    }
    struct obj *o = &u->chunks->o[u->chunks->used++];
    memset(o, 0, sizeof *o);
    o->kind = (uint8_t)k;
    return o;
}

static void up_free(struct up *u)
{
    for (struct chunk *c = u->chunks, *next; c; c = next) {
        next = c->next;
        for (int i = 0; i < c->used; i++) {
            struct obj *o = &c->o[i];
            if (o->kind == O_TUPLE || o->kind == O_LIST || o->kind == O_DICT || o->kind == O_SET) free(o->u.items);
            else if (o->kind == O_STORAGE) free(o->u.st);
            else if (o->kind == O_TENSOR) free(o->u.t);
        }
        free(c);
    }
    free(u->stack);
    free(u->marks);
    free(u->memo);
    u->chunks = NULL;
    u->stack = NULL;
    u->marks = NULL;
    u->memo = NULL;
}

static int push(struct up *u, struct obj *o)
{
    if (!o) return -1;
    if (u->sp == u->scap) {
        size_t cap = u->scap ? 2 * u->scap : 256;
        struct obj **s = realloc(u->stack, cap * sizeof *s);
        if (!s) return perr(u, "out of memory");
        u->stack = s;
        u->scap = cap;
    }
    u->stack[u->sp++] = o;
    return 0;
}

static size_t top_mark(const struct up *u) { return u->nmarks ? u->marks[u->nmarks - 1] : 0; }

static struct obj *pop(struct up *u)
{
    if (u->sp <= top_mark(u)) { perr(u, "stack underflow"); return NULL; }
    return u->stack[--u->sp];
}

static struct obj *peek(struct up *u)
{
    if (u->sp <= top_mark(u)) { perr(u, "stack underflow"); return NULL; }
    return u->stack[u->sp - 1];
}

/* Items since the last mark: *first index into the stack, *count; the mark is removed. */
static int pop_mark(struct up *u, size_t *first, size_t *count)
{
    if (!u->nmarks) return perr(u, "no MARK on the stack");
    size_t m = u->marks[--u->nmarks];
    *first = m;
    *count = u->sp - m;
    return 0;
}

static int append_items(struct up *u, struct obj *c, struct obj *const *items, size_t k)
{
    if (k > (size_t)INT32_MAX - (size_t)c->n) return perr(u, "container too large");
    if ((size_t)c->n + k > (size_t)c->cap) {
        size_t cap = c->cap ? 2 * (size_t)c->cap : 8;
        while (cap < (size_t)c->n + k) cap *= 2;
        if (cap > INT32_MAX) cap = INT32_MAX;
        struct obj **it = realloc(c->u.items, cap * sizeof *it);
        if (!it) return perr(u, "out of memory");
        c->u.items = it;
        c->cap = (int32_t)cap;
    }
    if (k) memcpy(c->u.items + c->n, items, k * sizeof *items);
    c->n += (int32_t)k;
    return 0;
}

/* A new container holding the k stack items from first (which are then popped). */
static struct obj *collect(struct up *u, enum okind kind, size_t first, size_t k)
{
    if (kind == O_TUPLE && k == 0) { u->sp = first; return &u->empty_tuple; }
    struct obj *c = new_obj(u, kind);
    /* (the stack may still be unallocated when k is 0: no pointer arithmetic on NULL) */
    if (!c || (k && append_items(u, c, u->stack + first, k) < 0)) return NULL;
    u->sp = first;
    return c;
}

/* ---------------------------------------------------------------- input */

static int need(struct up *u, size_t k)
{
    if (u->n - u->pos < k) return perr(u, "truncated (%zu bytes needed, %zu left)", k, u->n - u->pos);
    return 0;
}

static uint64_t le(const uint8_t *p, int k)
{
    uint64_t v = 0;
    for (int i = k - 1; i >= 0; i--) v = v << 8 | p[i];
    return v;
}

/* A text line (protocol 0 arguments) without its newline. */
static int read_line(struct up *u, const uint8_t **p, size_t *len)
{
    const uint8_t *nl = memchr(u->buf + u->pos, '\n', u->n - u->pos);
    if (!nl) return perr(u, "truncated (no end of line)");
    *p = u->buf + u->pos;
    *len = (size_t)(nl - *p);
    u->pos += *len + 1;
    return 0;
}

static int parse_dec(struct up *u, const uint8_t *p, size_t len, int64_t *out)
{
    char tmp[32];
    if (len && p[len - 1] == 'L') len--;   /* Python 2 longs */
    if (len == 0 || len >= sizeof tmp) return perr(u, "bad or too large decimal integer");
    memcpy(tmp, p, len);
    tmp[len] = 0;
    char *end;
    errno = 0;
    long long v = strtoll(tmp, &end, 10);
    if (errno || *end) return perr(u, "bad or too large decimal integer");
    *out = v;
    return 0;
}

static struct obj *new_int(struct up *u, int64_t v)
{
    struct obj *o = new_obj(u, O_INT);
    if (o) o->u.i = v;
    return o;
}

static struct obj *new_bytes(struct up *u, enum okind k, size_t len)
{
    if (need(u, len) < 0) return NULL;
    struct obj *o = new_obj(u, k);
    if (!o) return NULL;
    o->u.s.p = u->buf + u->pos;
    o->u.s.len = len;
    u->pos += len;
    return o;
}

/* Length prefix of k bytes (signed when sign), then that many bytes. */
static struct obj *read_counted(struct up *u, enum okind kind, int k, int sign)
{
    if (need(u, (size_t)k) < 0) return NULL;
    uint64_t len = le(u->buf + u->pos, k);
    u->pos += (size_t)k;
    if (sign && k == 4 && (len & 0x80000000u)) { perr(u, "negative length"); return NULL; }
    if (len > u->n - u->pos) { perr(u, "truncated (string of %llu bytes)", (unsigned long long)len); return NULL; }
    return new_bytes(u, kind, (size_t)len);
}

static int memo_put(struct up *u, uint64_t idx)
{
    struct obj *o = peek(u);
    if (!o) return -1;
    /* picklers number memo entries 0, 1, 2, ...: an index beyond the pickle's length is hostile */
    if (idx > u->n) return perr(u, "memo index %llu out of range", (unsigned long long)idx);
    if (idx >= u->memo_cap) {
        if (u->memo_cap > SIZE_MAX / 4) return perr(u, "out of memory");
        size_t cap = u->memo_cap ? u->memo_cap : 64;
        while (cap <= idx) cap *= 2;
        struct obj **m = realloc(u->memo, cap * sizeof *m);
        if (!m) return perr(u, "out of memory");
        memset(m + u->memo_cap, 0, (cap - u->memo_cap) * sizeof *m);
        u->memo = m;
        u->memo_cap = cap;
    }
    if (!u->memo[idx]) u->memo_len++;
    u->memo[idx] = o;
    return 0;
}

static int memo_get(struct up *u, uint64_t idx)
{
    if (idx >= u->memo_cap || !u->memo[idx]) return perr(u, "memo entry %llu not defined", (unsigned long long)idx);
    return push(u, u->memo[idx]);
}

/* ---------------------------------------------------------------- globals */

static const struct {
    const char *module, *name;
    enum gid id;
    int elem;
} allowed[] = {
    {"collections", "OrderedDict", G_ODICT, 0},
    {"torch._utils", "_rebuild_tensor_v2", G_REBUILD_V2, 0},
    {"torch._utils", "_rebuild_tensor", G_REBUILD, 0},
    {"torch._utils", "_rebuild_parameter", G_PARAM, 0},
    {"torch._utils", "_rebuild_parameter_with_state", G_PARAM_STATE, 0},
    {"torch._tensor", "_rebuild_from_type_v2", G_FROM_TYPE_V2, 0},
    {"torch._tensor", "Tensor", G_TENSOR_TYPE, 0},
    {"torch", "Tensor", G_TENSOR_TYPE, 0},
    {"torch.nn.parameter", "Parameter", G_PARAM_TYPE, 0},
    {"torch", "device", G_DEVICE, 0},
    {"torch", "FloatStorage", G_STORAGE, W_F32},
    {"torch", "DoubleStorage", G_STORAGE, W_F64},
    {"torch", "HalfStorage", G_STORAGE, W_F16},
    {"torch", "BFloat16Storage", G_STORAGE, W_BF16},
    {"torch", "LongStorage", G_STORAGE, W_I64},
    {"torch", "IntStorage", G_STORAGE, W_I32},
    {"torch", "ShortStorage", G_STORAGE, W_I16},
    {"torch", "CharStorage", G_STORAGE, W_I8},
    {"torch", "ByteStorage", G_STORAGE, W_U8},
    {"torch", "BoolStorage", G_STORAGE, W_BOOL},
    /* checkpoints saved on a GPU name the CUDA types; the bytes are the same */
    {"torch.cuda", "FloatStorage", G_STORAGE, W_F32},
    {"torch.cuda", "DoubleStorage", G_STORAGE, W_F64},
    {"torch.cuda", "HalfStorage", G_STORAGE, W_F16},
    {"torch.cuda", "BFloat16Storage", G_STORAGE, W_BF16},
    {"torch.cuda", "LongStorage", G_STORAGE, W_I64},
    {"torch.cuda", "IntStorage", G_STORAGE, W_I32},
    {"torch.cuda", "ByteStorage", G_STORAGE, W_U8},
    {"torch.cuda", "BoolStorage", G_STORAGE, W_BOOL},
    /* Inert: training checkpoints keep their arguments (argparse.Namespace), numpy scalars (best
     * accuracy) and sets beside the weights.  These become opaque values: never called, never
     * tensors, only there so that the rest of the file can be read. */
    {"argparse", "Namespace", G_INERT, 0},
    {"numpy.core.multiarray", "scalar", G_INERT, 0},
    {"numpy._core.multiarray", "scalar", G_INERT, 0},
    {"numpy.core.multiarray", "_reconstruct", G_INERT, 0},
    {"numpy._core.multiarray", "_reconstruct", G_INERT, 0},
    {"numpy", "ndarray", G_INERT, 0},
    {"numpy", "dtype", G_INERT, 0},
    {"_codecs", "encode", G_INERT, 0},
    {"builtins", "set", G_INERT, 0},
    {"builtins", "frozenset", G_INERT, 0},
    {"__builtin__", "set", G_INERT, 0},
};

static int eq(const uint8_t *p, size_t len, const char *s) { return strlen(s) == len && memcmp(p, s, len) == 0; }

static int push_global(struct up *u, const uint8_t *mod, size_t ml, const uint8_t *name, size_t nl)
{
    for (size_t i = 0; i < sizeof allowed / sizeof allowed[0]; i++)
        if (eq(mod, ml, allowed[i].module) && eq(name, nl, allowed[i].name)) {
            struct obj *o = new_obj(u, O_GLOBAL);
            if (!o) return -1;
            o->u.i = allowed[i].id;
            o->elem = (uint8_t)allowed[i].elem;
            return push(u, o);
        }
    char m[120], n[120];
    util_printable(m, sizeof m, mod, ml);
    util_printable(n, sizeof n, name, nl);
    return util_err_set(u->err, "%s: refusing pickle global %s.%s: only weights are loaded", u->label, m, n);
}

/* ---------------------------------------------------------------- torch callables */

static int as_int(const struct obj *o, int64_t *v)
{
    if (o->kind != O_INT && o->kind != O_BOOL) return -1;
    *v = o->u.i;
    return 0;
}

static int int_tuple(const struct obj *o, int64_t *out, int *n)
{
    if (o->kind != O_TUPLE && o->kind != O_LIST) return -1;
    if (o->n > TSZ_MAX_DIMS) return -1;
    for (int i = 0; i < o->n; i++)
        if (as_int(o->u.items[i], &out[i]) < 0 || out[i] < 0) return -1;
    *n = o->n;
    return 0;
}

static struct obj *rebuild_tensor(struct up *u, struct obj *const *a, int na)
{
    if (na < 4) { perr(u, "_rebuild_tensor with %d arguments", na); return NULL; }
    if (a[0]->kind != O_STORAGE) { perr(u, "_rebuild_tensor of something that is not a storage"); return NULL; }
    struct tensor t = {0};
    t.storage = a[0];
    int ns;
    if (as_int(a[1], &t.offset) < 0 || t.offset < 0) { perr(u, "bad storage offset"); return NULL; }
    if (int_tuple(a[2], t.shape, &t.ndim) < 0 || int_tuple(a[3], t.stride, &ns) < 0 || ns != t.ndim) {
        perr(u, "bad tensor size or stride (at most %d dimensions)", TSZ_MAX_DIMS);
        return NULL;
    }
    /* every element must lie inside the storage: offset + sum (size-1)*stride < numel */
    const struct storage *st = a[0]->u.st;
    int64_t numel, last = t.offset, avail = st->view_numel >= 0 ? st->view_numel : st->numel;
    if (weights_numel_of(t.ndim, t.shape, &numel) < 0) { perr(u, "tensor size overflows"); return NULL; }
    if (numel > 0) {
        for (int d = 0; d < t.ndim; d++) {
            int64_t span;
            if (__builtin_mul_overflow(t.shape[d] - 1, t.stride[d], &span) || __builtin_add_overflow(last, span, &last)) {
                perr(u, "tensor extent overflows");
                return NULL;
            }
        }
        if (last >= avail) {
            perr(u, "tensor reaches element %lld of a storage of %lld", (long long)last, (long long)avail);
            return NULL;
        }
    }
    struct obj *o = new_obj(u, O_TENSOR);
    if (!o) return NULL;
    if (!(o->u.t = malloc(sizeof t))) { perr(u, "out of memory"); return NULL; }
    *o->u.t = t;
    return o;
}

static struct obj *call(struct up *u, const struct obj *f, const struct obj *args, int depth)
{
    if (args->kind != O_TUPLE) { perr(u, "REDUCE arguments are not a tuple"); return NULL; }
    struct obj *const *a = args->u.items;
    int na = args->n;
    switch ((enum gid)f->u.i) {
    case G_ODICT:
        if (na == 0) return new_obj(u, O_DICT);
        if (na == 1 && a[0]->kind == O_LIST) {   /* OrderedDict([(k, v), ...]) */
            struct obj *d = new_obj(u, O_DICT);
            if (!d) return NULL;
            for (int i = 0; i < a[0]->n; i++) {
                const struct obj *p = a[0]->u.items[i];
                if (p->kind != O_TUPLE || p->n != 2) { perr(u, "OrderedDict item is not a pair"); return NULL; }
                if (append_items(u, d, p->u.items, 2) < 0) return NULL;
            }
            return d;
        }
        perr(u, "unexpected OrderedDict arguments");
        return NULL;
    case G_REBUILD_V2:
    case G_REBUILD:
        return rebuild_tensor(u, a, na);
    case G_PARAM:
    case G_PARAM_STATE:
        if (na < 1 || a[0]->kind != O_TENSOR) { perr(u, "_rebuild_parameter of something that is not a tensor"); return NULL; }
        return a[0];
    case G_FROM_TYPE_V2:   /* (func, type, args, state): torch >= 1.12 for tensor subclasses */
        if (depth > 0 || na < 3 || a[0]->kind != O_GLOBAL || a[1]->kind != O_GLOBAL ||
            (a[1]->u.i != G_TENSOR_TYPE && a[1]->u.i != G_PARAM_TYPE) || a[0]->u.i == G_FROM_TYPE_V2) {
            perr(u, "unexpected _rebuild_from_type_v2 arguments");
            return NULL;
        }
        return call(u, a[0], a[2], depth + 1);
    case G_DEVICE:   /* torch.device('cpu') or ('cuda', 0): keep as a string, it only names a place */
        if (na >= 1 && a[0]->kind == O_STR) return a[0];
        perr(u, "unexpected torch.device arguments");
        return NULL;
    case G_INERT:
        return new_obj(u, O_OPAQUE);
    default:
        perr(u, "calling this global is not allowed: only weights are loaded");
        return NULL;
    }
}

/* BINPERSID: ('storage', type, key, location, numel[, view_metadata]) */
static struct obj *persistent_load(struct up *u, const struct obj *pid)
{
    struct obj *const *a = pid->u.items;
    if (pid->kind != O_TUPLE || pid->n < 5 || a[0]->kind != O_STR || !eq(a[0]->u.s.p, a[0]->u.s.len, "storage")) {
        perr(u, "persistent id is not a ('storage', ...) tuple");
        return NULL;
    }
    if (a[1]->kind != O_GLOBAL || a[1]->u.i != G_STORAGE) { perr(u, "persistent id names no storage type"); return NULL; }
    if (a[2]->kind != O_STR) { perr(u, "storage key is not a string"); return NULL; }
    int64_t numel;
    if (as_int(a[4], &numel) < 0 || numel < 0) { perr(u, "bad storage size"); return NULL; }
    struct storage st = {a[2]->u.s.p, a[2]->u.s.len, (enum welem)a[1]->elem, numel, 0, -1};
    if (pid->n >= 6 && a[5]->kind != O_NONE) {   /* legacy view: (view_key, offset, size) */
        const struct obj *v = a[5];
        int64_t off, size;
        if (v->kind != O_TUPLE || v->n != 3 || as_int(v->u.items[1], &off) < 0 || as_int(v->u.items[2], &size) < 0 ||
            off < 0 || size < 0 || off > numel || size > numel - off) {
            perr(u, "bad storage view");
            return NULL;
        }
        st.view_off = off;
        st.view_numel = size;
    }
    struct obj *o = new_obj(u, O_STORAGE);
    if (!o) return NULL;
    if (!(o->u.st = malloc(sizeof st))) { perr(u, "out of memory"); return NULL; }
    *o->u.st = st;
    return o;
}

/* ---------------------------------------------------------------- the machine */

static const char *opname(uint8_t op)
{
    switch (op) {
    case 'i': return "INST";
    case 'o': return "OBJ";
    case 0x92: return "NEWOBJ_EX";
    case 0x82: case 0x83: case 0x84: return "EXT";
    case 0x97: return "NEXT_BUFFER";
    case 0x98: return "READONLY_BUFFER";
    case 'S': return "STRING (protocol 0)";
    case 'V': return "UNICODE (protocol 0)";
    case 'P': return "PERSID (protocol 0)";
    default: return NULL;
    }
}

/* Run one pickle starting at u->pos; *result is the value left by STOP. */
static int unpickle(struct up *u, struct obj **result)
{
    u->sp = 0;
    u->nmarks = 0;
    if (u->memo_cap) memset(u->memo, 0, u->memo_cap * sizeof *u->memo);
    u->memo_len = 0;
    for (;;) {
        if (need(u, 1) < 0) return -1;
        uint8_t op = u->buf[u->pos++];
        struct obj *o, *a, *b;
        size_t first = 0, k = 0;
        const uint8_t *p;
        size_t len;
        int64_t v;
        switch (op) {
        case 0x80:   /* PROTO */
            if (need(u, 1) < 0) return -1;
            if (u->buf[u->pos] > 5) return perr(u, "pickle protocol %d", u->buf[u->pos]);
            u->pos++;
            break;
        case 0x95:   /* FRAME: only a size hint */
            if (need(u, 8) < 0) return -1;
            u->pos += 8;
            break;
        case '.':    /* STOP */
            if (!(o = pop(u))) return -1;
            *result = o;
            return 0;
        case '(':
            if (u->nmarks >= WEIGHTS_MAX_PICKLE_DEPTH) return perr(u, "nested more than %d deep", WEIGHTS_MAX_PICKLE_DEPTH);
            if (u->nmarks == u->mcap) {
                size_t cap = u->mcap ? 2 * u->mcap : 64;
                size_t *m = realloc(u->marks, cap * sizeof *m);
                if (!m) return perr(u, "out of memory");
                u->marks = m;
                u->mcap = cap;
            }
            u->marks[u->nmarks++] = u->sp;
            break;
        case '0':   /* POP */
            if (u->sp > top_mark(u)) u->sp--;
            else if (u->nmarks) u->nmarks--;
            else return perr(u, "stack underflow");
            break;
        case '1':   /* POP_MARK */
            if (pop_mark(u, &first, &k) < 0) return -1;
            u->sp = first;
            break;
        case '2':   /* DUP */
            if (!(o = peek(u)) || push(u, o) < 0) return -1;
            break;
        case 'N': if (push(u, &u->none) < 0) return -1; break;
        case 0x88: if (push(u, &u->t_true) < 0) return -1; break;
        case 0x89: if (push(u, &u->t_false) < 0) return -1; break;
        case 'I':
            if (read_line(u, &p, &len) < 0) return -1;
            if (eq(p, len, "00")) { if (push(u, &u->t_false) < 0) return -1; break; }
            if (eq(p, len, "01")) { if (push(u, &u->t_true) < 0) return -1; break; }
            if (parse_dec(u, p, len, &v) < 0 || push(u, new_int(u, v)) < 0) return -1;
            break;
        case 'L':
            if (read_line(u, &p, &len) < 0 || parse_dec(u, p, len, &v) < 0 || push(u, new_int(u, v)) < 0) return -1;
            break;
        case 'J':
            if (need(u, 4) < 0) return -1;
            v = (int32_t)(uint32_t)le(u->buf + u->pos, 4);
            u->pos += 4;
            if (push(u, new_int(u, v)) < 0) return -1;
            break;
        case 'K':
            if (need(u, 1) < 0) return -1;
            if (push(u, new_int(u, u->buf[u->pos++])) < 0) return -1;
            break;
        case 'M':
            if (need(u, 2) < 0) return -1;
            v = (int64_t)le(u->buf + u->pos, 2);
            u->pos += 2;
            if (push(u, new_int(u, v)) < 0) return -1;
            break;
        case 0x8a:   /* LONG1 */
        case 0x8b:   /* LONG4 */
            if (!(o = read_counted(u, O_BIGINT, op == 0x8a ? 1 : 4, 1))) return -1;
            if (o->u.s.len <= 8) {   /* fits: sign-extend into an int */
                uint64_t x = o->u.s.len ? le(o->u.s.p, (int)o->u.s.len) : 0;
                if (o->u.s.len && o->u.s.len < 8 && (o->u.s.p[o->u.s.len - 1] & 0x80)) x |= ~0ull << (8 * o->u.s.len);
                o->kind = O_INT;
                o->u.i = (int64_t)x;
            }
            if (push(u, o) < 0) return -1;
            break;
        case 'F':
            if (read_line(u, &p, &len) < 0) return -1;
            {
                char tmp[64];
                char *end;
                if (len == 0 || len >= sizeof tmp) return perr(u, "bad float");
                memcpy(tmp, p, len);
                tmp[len] = 0;
                double d = strtod(tmp, &end);
                if (*end) return perr(u, "bad float");
                if (!(o = new_obj(u, O_FLOAT))) return -1;
                o->u.f = d;
                if (push(u, o) < 0) return -1;
            }
            break;
        case 'G':
            if (need(u, 8) < 0) return -1;
            {
                uint64_t x = 0;
                for (int i = 0; i < 8; i++) x = x << 8 | u->buf[u->pos + i];   /* big-endian */
                u->pos += 8;
                if (!(o = new_obj(u, O_FLOAT))) return -1;
                memcpy(&o->u.f, &x, 8);
                if (push(u, o) < 0) return -1;
            }
            break;
        case 'X': if (push(u, read_counted(u, O_STR, 4, 0)) < 0) return -1; break;
        case 0x8c: if (push(u, read_counted(u, O_STR, 1, 0)) < 0) return -1; break;
        case 0x8d: if (push(u, read_counted(u, O_STR, 8, 0)) < 0) return -1; break;
        case 'T': if (push(u, read_counted(u, O_STR, 4, 1)) < 0) return -1; break;   /* Python 2 str */
        case 'U': if (push(u, read_counted(u, O_STR, 1, 0)) < 0) return -1; break;
        case 'B': if (push(u, read_counted(u, O_BYTES, 4, 0)) < 0) return -1; break;
        case 'C': if (push(u, read_counted(u, O_BYTES, 1, 0)) < 0) return -1; break;
        case 0x8e: case 0x96: if (push(u, read_counted(u, O_BYTES, 8, 0)) < 0) return -1; break;
        case ')': if (push(u, &u->empty_tuple) < 0) return -1; break;
        case ']': if (push(u, new_obj(u, O_LIST)) < 0) return -1; break;
        case '}': if (push(u, new_obj(u, O_DICT)) < 0) return -1; break;
        case 0x8f: if (push(u, new_obj(u, O_SET)) < 0) return -1; break;
        case 't': case 'l': case 'd': case 0x91:   /* TUPLE, LIST, DICT, FROZENSET from the mark */
            if (pop_mark(u, &first, &k) < 0) return -1;
            if (op == 'd' && k % 2) return perr(u, "DICT with an odd number of items");
            if (push(u, collect(u, op == 't' ? O_TUPLE : op == 'l' ? O_LIST : op == 'd' ? O_DICT : O_SET, first, k)) < 0)
                return -1;
            break;
        case 0x85: case 0x86: case 0x87:   /* TUPLE1..3 */
            k = (size_t)(op - 0x84);
            if (u->sp < top_mark(u) + k) return perr(u, "stack underflow");
            if (push(u, collect(u, O_TUPLE, u->sp - k, k)) < 0) return -1;
            break;
        case 'a':   /* APPEND */
            if (!(o = pop(u)) || !(a = peek(u))) return -1;
            if (a->kind != O_LIST) return perr(u, "APPEND to something that is not a list");
            if (append_items(u, a, &o, 1) < 0) return -1;
            break;
        case 'e': case 'u': case 0x90:   /* APPENDS, SETITEMS, ADDITEMS */
            if (pop_mark(u, &first, &k) < 0) return -1;
            if (first == 0 || first - 1 < top_mark(u)) return perr(u, "no container below the MARK");
            a = u->stack[first - 1];
            if (a->kind != (op == 'e' ? O_LIST : op == 'u' ? O_DICT : O_SET))
                return perr(u, "%s to the wrong kind of container", op == 'e' ? "APPENDS" : op == 'u' ? "SETITEMS" : "ADDITEMS");
            if (op == 'u' && k % 2) return perr(u, "SETITEMS with an odd number of items");
            if (append_items(u, a, u->stack + first, k) < 0) return -1;
            u->sp = first;
            break;
        case 's':   /* SETITEM */
            if (!(b = pop(u)) || !(a = pop(u)) || !(o = peek(u))) return -1;
            if (o->kind != O_DICT) return perr(u, "SETITEM on something that is not a dict");
            {
                struct obj *kv[2] = {a, b};
                if (append_items(u, o, kv, 2) < 0) return -1;
            }
            break;
        case 'g':
            if (read_line(u, &p, &len) < 0 || parse_dec(u, p, len, &v) < 0) return -1;
            if (v < 0 || memo_get(u, (uint64_t)v) < 0) return v < 0 ? perr(u, "negative memo index") : -1;
            break;
        case 'h':
            if (need(u, 1) < 0 || memo_get(u, u->buf[u->pos++]) < 0) return -1;
            break;
        case 'j':
            if (need(u, 4) < 0) return -1;
            u->pos += 4;
            if (memo_get(u, le(u->buf + u->pos - 4, 4)) < 0) return -1;
            break;
        case 'p':
            if (read_line(u, &p, &len) < 0 || parse_dec(u, p, len, &v) < 0) return -1;
            if (v < 0) return perr(u, "negative memo index");
            if (memo_put(u, (uint64_t)v) < 0) return -1;
            break;
        case 'q':
            if (need(u, 1) < 0 || memo_put(u, u->buf[u->pos++]) < 0) return -1;
            break;
        case 'r':
            if (need(u, 4) < 0) return -1;
            u->pos += 4;
            if (memo_put(u, le(u->buf + u->pos - 4, 4)) < 0) return -1;
            break;
        case 0x94:   /* MEMOIZE: at index len(memo) */
            if (memo_put(u, u->memo_len) < 0) return -1;
            break;
        case 'c': {
            const uint8_t *mp, *np;
            size_t ml, nl;
            if (read_line(u, &mp, &ml) < 0 || read_line(u, &np, &nl) < 0) return -1;
            if (push_global(u, mp, ml, np, nl) < 0) return -1;
            break;
        }
        case 0x93:   /* STACK_GLOBAL */
            if (!(b = pop(u)) || !(a = pop(u))) return -1;
            if (a->kind != O_STR || b->kind != O_STR) return perr(u, "STACK_GLOBAL of something that is not a string");
            if (push_global(u, a->u.s.p, a->u.s.len, b->u.s.p, b->u.s.len) < 0) return -1;
            break;
        case 'R':
            if (!(b = pop(u)) || !(a = pop(u))) return -1;
            if (a->kind != O_GLOBAL) return perr(u, "REDUCE of something that is not an allowed global");
            if (push(u, call(u, a, b, 0)) < 0) return -1;
            break;
        case 'b':   /* BUILD: set state; for an OrderedDict it is the _metadata attribute, not needed */
            if (!(b = pop(u)) || !(a = peek(u))) return -1;
            if (a->kind != O_DICT && a->kind != O_TENSOR && a->kind != O_OPAQUE)
                return perr(u, "BUILD on something that is not a dict, tensor or inert value");
            break;
        case 0x81:   /* NEWOBJ cls args: only for the inert classes (argparse.Namespace) */
            if (!(b = pop(u)) || !(a = pop(u))) return -1;
            if (a->kind != O_GLOBAL || a->u.i != G_INERT)
                return perr(u, "pickle opcode NEWOBJ is not allowed: only weights are loaded");
            if (push(u, new_obj(u, O_OPAQUE)) < 0) return -1;
            break;
        case 'Q':
            if (!(a = pop(u)) || push(u, persistent_load(u, a)) < 0) return -1;
            break;
        default:
            if (opname(op)) return perr(u, "pickle opcode %s is not allowed: only weights are loaded", opname(op));
            return perr(u, "unknown pickle opcode 0x%02x", op);
        }
    }
}

static void up_init(struct up *u, const char *label, const char *where, const uint8_t *buf, size_t n, size_t base,
                    struct util_err *err)
{
    memset(u, 0, sizeof *u);
    u->label = label;
    u->where = where;
    u->buf = buf;
    u->n = n;
    u->base = base;
    u->err = err;
    u->none.kind = O_NONE;
    u->t_true.kind = O_BOOL;
    u->t_true.u.i = 1;
    u->t_false.kind = O_BOOL;
    u->empty_tuple.kind = O_TUPLE;
}

/* ---------------------------------------------------------------- from values to a set */

/* Storage bytes by key: a small open-addressing table filled by the format's reader. */
struct sdata {
    const uint8_t *key;
    size_t key_len;
    const uint8_t *bytes;   /* numel * element size bytes */
    int64_t numel;
    enum welem elem;
    void *owned;            /* malloc'd copy, or NULL (zip: in the set's arena; legacy: inside the file) */
    int lives;              /* bytes live as long as the set (arena, or a file the set may borrow) */
    int refs;               /* tensors using it */
    int counted;            /* its elements are in the allocation budget */
    int used;
};

struct stable {
    struct sdata *v;
    size_t cap, n;
};

static uint64_t hash_key(const uint8_t *p, size_t len)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < len; i++) h = (h ^ p[i]) * 1099511628211ull;
    return h;
}

static struct sdata *st_find(struct stable *t, const uint8_t *key, size_t len, int insert)
{
    if (insert && 2 * (t->n + 1) > t->cap) {
        size_t cap = t->cap ? 2 * t->cap : 64;
        struct sdata *v = calloc(cap, sizeof *v);
        if (!v) return NULL;
        for (size_t i = 0; i < t->cap; i++)
            if (t->v[i].used) {
                size_t j = hash_key(t->v[i].key, t->v[i].key_len) & (cap - 1);
                while (v[j].used) j = (j + 1) & (cap - 1);
                v[j] = t->v[i];
            }
        free(t->v);
        t->v = v;
        t->cap = cap;
    }
    if (!t->cap) return NULL;
    size_t j = hash_key(key, len) & (t->cap - 1);
    while (t->v[j].used) {
        if (t->v[j].key_len == len && memcmp(t->v[j].key, key, len) == 0) return &t->v[j];
        j = (j + 1) & (t->cap - 1);
    }
    if (!insert) return NULL;
    memset(&t->v[j], 0, sizeof t->v[j]);
    t->v[j].used = 1;
    t->v[j].key = key;
    t->v[j].key_len = len;
    t->n++;
    return &t->v[j];
}

static void st_free(struct stable *t)
{
    for (size_t i = 0; i < t->cap; i++)
        if (t->v[i].used) free(t->v[i].owned);
    free(t->v);
}

static int is_str(const struct obj *o, const char *s) { return o->kind == O_STR && eq(o->u.s.p, o->u.s.len, s); }

static int has_tensor(const struct obj *d)
{
    for (int i = 0; i + 1 < d->n; i += 2)
        if (d->u.items[i + 1]->kind == O_TENSOR) return 1;
    return 0;
}

static const char *kind_name(const struct obj *o)
{
    static const char *const names[] = {"None", "bool", "int", "int", "float", "str", "bytes", "tuple", "list",
                                        "dict", "set", "global", "storage", "tensor", "object"};
    return names[o->kind];
}

/* "a, b, c" of a dict's string keys but skip, for messages. */
static void key_list(const struct obj *d, const char *skip, char *buf, size_t cap)
{
    size_t len = 0;
    buf[0] = 0;
    for (int i = 0; i + 1 < d->n && len + 40 < cap; i += 2) {
        const struct obj *k = d->u.items[i];
        if (skip && is_str(k, skip)) continue;
        char tmp[64];
        if (k->kind == O_STR) util_printable(tmp, sizeof tmp, k->u.s.p, k->u.s.len);
        else snprintf(tmp, sizeof tmp, "(%s)", kind_name(k));
        int w = snprintf(buf + len, cap - len, "%s%s", len ? ", " : "", tmp);
        if (w > 0) len += (size_t)w;
    }
    if (len + 40 >= cap && len + 5 < cap) snprintf(buf + len, cap - len, ", ...");
}

static const char *const wrappers[] = {"state_dict", "model_state_dict", "model", "net", "network", "encoder",
                                       "module", "backbone", "params", "weights"};

/* The dict holding the weights. */
static const struct obj *unwrap(weights_set *s, const struct obj *root, const weights_opts *o, struct util_err *err)
{
    const struct obj *d = root;
    char keys[300];
    if (d->kind != O_DICT)
        return util_err_set(err, "%s: the checkpoint holds a %s, not a dict of tensors", s->label, kind_name(d)), NULL;
    if (o && o->key) {
        for (int i = 0; i + 1 < d->n; i += 2)
            if (is_str(d->u.items[i], o->key)) {
                const struct obj *v = d->u.items[i + 1];
                if (v->kind != O_DICT || !has_tensor(v))
                    return util_err_set(err, "%s: entry %s holds no tensors", s->label, o->key), NULL;
                key_list(d, o->key, keys, sizeof keys);
                if (keys[0]) weights_note(s, "weights under '%s'; ignored the other entries: %s", o->key, keys);
                return v;
            }
        key_list(d, NULL, keys, sizeof keys);
        return util_err_set(err, "%s: no entry %s at the top level (entries: %s)", s->label, o->key, keys), NULL;
    }
    for (int depth = 0; depth < 4; depth++) {
        if (has_tensor(d)) return d;
        const struct obj *next = NULL;
        const char *via = NULL;
        /* first a wrapper holding tensors itself, else one holding a dict to look into */
        for (int pass = 0; pass < 2 && !next; pass++)
            for (size_t w = 0; w < sizeof wrappers / sizeof wrappers[0] && !next; w++)
                for (int i = 0; i + 1 < d->n; i += 2)
                    if (is_str(d->u.items[i], wrappers[w]) && d->u.items[i + 1]->kind == O_DICT &&
                        (pass == 1 || has_tensor(d->u.items[i + 1]))) {
                        next = d->u.items[i + 1];
                        via = wrappers[w];
                        break;
                    }
        if (!next) break;
        key_list(d, via, keys, sizeof keys);
        if (keys[0]) weights_note(s, "weights under '%s'; ignored the other entries: %s", via, keys);
        else weights_note(s, "weights under '%s'", via);
        d = next;
    }
    if (has_tensor(d)) return d;
    key_list(d, NULL, keys, sizeof keys);
    return util_err_set(err, "%s: no tensors at the top level or under state_dict, model, net, encoder, module "
                        "(entries: %s); choose one with --key", s->label, keys), NULL;
}

/* The storage table's entry of a tensor, NULL with err set when the archive lacks it. */
typedef int (*fetch_fn)(void *ctx, struct sdata *sd, struct util_err *err);

/* Turn the tensors of dict d into set entries; fetch fills in the bytes of each storage once. */
static int extract(weights_set *s, const struct obj *d, struct stable *tab, fetch_fn fetch, void *ctx,
                   struct util_err *err)
{
    int n_other = 0;
    /* count users per storage: a storage used by one tensor that covers it whole can be adopted */
    for (int i = 0; i + 1 < d->n; i += 2) {
        const struct obj *v = d->u.items[i + 1];
        if (v->kind != O_TENSOR) continue;
        const struct storage *st = v->u.t->storage->u.st;
        struct sdata *sd = st_find(tab, st->key, st->key_len, 1);
        if (!sd) return util_err_set(err, "out of memory");
        if (sd->refs && (sd->elem != st->elem || sd->numel != st->numel)) {
            char pk[64];
            util_printable(pk, sizeof pk, st->key, st->key_len);
            return util_err_set(err, "%s: storage %s is used with two different types or sizes", s->label, pk);
        }
        sd->elem = st->elem;
        sd->numel = st->numel;
        sd->refs++;
    }
    int64_t out_elems = 0, storage_elems = 0;
    for (int i = 0; i + 1 < d->n; i += 2) {
        const struct obj *k = d->u.items[i], *v = d->u.items[i + 1];
        if (v->kind != O_TENSOR || k->kind != O_STR) { n_other++; continue; }
        const struct tensor *t = v->u.t;
        const struct storage *st = t->storage->u.st;
        struct sdata *sd = st_find(tab, st->key, st->key_len, 0);
        if (!sd->bytes && fetch(ctx, sd, err) < 0) return -1;
        if (!sd->counted) {
            storage_elems += sd->numel;
            sd->counted = 1;
        }
        int64_t numel;
        weights_numel_of(t->ndim, t->shape, &numel);   /* checked when the tensor was built */
        out_elems += numel;
        /* views of one storage by many tensors could multiply a small file into a huge allocation */
        if (out_elems > 2 * storage_elems + (1 << 20)) {
            char pn[96];
            util_printable(pn, sizeof pn, k->u.s.p, k->u.s.len);
            return util_err_set(err, "%s: tensor %s: tensors view the same data many times over", s->label, pn);
        }
        int64_t off = t->offset + (st->view_numel >= 0 ? st->view_off : 0);
        int contiguous = 1;
        int64_t expect = 1;
        for (int dd = t->ndim - 1; dd >= 0; dd--) {
            if (t->shape[dd] != 1 && t->stride[dd] != expect) contiguous = 0;
            expect *= t->shape[dd];
        }
        if (sd->lives && sd->refs == 1 && off == 0 && contiguous && numel == sd->numel && numel > 0 &&
            weights_can_borrow(sd->elem, sd->bytes)) {
            /* the only user of a storage it covers exactly, stored as we keep it: use it in place */
            if (weights_put_borrowed(s, (const char *)k->u.s.p, k->u.s.len, sd->elem, t->ndim, t->shape,
                                     (void *)sd->bytes, err) < 0)
                return -1;
        } else if (sd->owned && sd->refs == 1 && off == 0 && contiguous && numel == sd->numel && numel > 0 &&
            (sd->elem == W_F32 || sd->elem == W_I64)) {
            /* the only user of a storage it covers exactly: take the buffer over instead of copying */
            void *data = sd->owned;
            sd->owned = NULL;
            sd->bytes = (const uint8_t *)"";   /* fetched, no longer ours */
            if (weights_put_owned(s, (const char *)k->u.s.p, k->u.s.len, sd->elem, t->ndim, t->shape, data, err) < 0)
                return -1;
            s->t[s->n - 1].file_dtype = welem_name(sd->elem);
        } else if (weights_put_strided(s, (const char *)k->u.s.p, k->u.s.len, sd->elem, t->ndim, t->shape, t->stride,
                                       sd->bytes, off, err) < 0) {
            return -1;
        }
        if (sd->refs == 1 && sd->owned) {   /* last user: give the memory back early */
            free(sd->owned);
            sd->owned = NULL;
            sd->bytes = (const uint8_t *)"";
        }
        sd->refs--;
    }
    if (n_other) weights_note(s, "ignored %d entr%s that are not tensors", n_other, n_other == 1 ? "y" : "ies");
    return 0;
}

/* ---------------------------------------------------------------- zip format */

struct zipctx {
    zip_t *za;
    weights_set *s;            /* storages are read into its arena */
    const uint8_t *buf;        /* the archive, which with borrow stays mapped as long as the set */
    size_t n;
    int borrow;
    uint8_t *scratch;          /* zip_verify's buffer */
    const char *label;
    char prefix[512];          /* "archive/" */
    uint64_t budget;           /* uncompressed bytes still allowed */
};

/* Read entry idx whole, expecting want bytes (or any size <= max when want is UINT64_MAX), into
 * malloc'd memory, or with arena into the set's arena (never freed here). */
static void *zip_read(struct zipctx *z, zip_int64_t idx, const char *name, uint64_t want, uint64_t max, int arena,
                      uint64_t *got, struct util_err *err)
{
    zip_stat_t zs;
    if (zip_stat_index(z->za, (zip_uint64_t)idx, 0, &zs) < 0 || !(zs.valid & ZIP_STAT_SIZE) ||
        !(zs.valid & ZIP_STAT_COMP_SIZE) || !(zs.valid & ZIP_STAT_COMP_METHOD)) {
        util_err_set(err, "%s: %s: %s", z->label, name, zip_strerror(z->za));
        return NULL;
    }
    if (zs.comp_method != ZIP_CM_STORE && zs.comp_method != ZIP_CM_DEFLATE) {
        util_err_set(err, "%s: %s: compression method %d (torch writes stored entries)", z->label, name, zs.comp_method);
        return NULL;
    }
    if (want != UINT64_MAX && zs.size != want) {
        util_err_set(err, "%s: %s: %llu bytes, the pickle says %llu", z->label, name, (unsigned long long)zs.size,
                     (unsigned long long)want);
        return NULL;
    }
    /* deflate cannot expand more than ~1032x: a larger claim is a bomb; and the total is capped */
    if (zs.size > max || zs.size > zs.comp_size * 1100 + 1024 || zs.size > z->budget) {
        util_err_set(err, "%s: %s: %llu bytes from %llu compressed: refusing (zip bomb?)", z->label, name,
                     (unsigned long long)zs.size, (unsigned long long)zs.comp_size);
        return NULL;
    }
    z->budget -= zs.size;
    uint8_t *buf = arena ? weights_arena_alloc(z->s, zs.size ? (size_t)zs.size : 1, err) : malloc(zs.size ? (size_t)zs.size : 1);
    if (!buf) {
        util_err_set(err, "%s: %s: out of memory (%llu bytes)", z->label, name, (unsigned long long)zs.size);
        return NULL;
    }
    zip_file_t *f = zip_fopen_index(z->za, (zip_uint64_t)idx, 0);
    if (!f) {
        util_err_set(err, "%s: %s: %s", z->label, name, zip_strerror(z->za));
        if (!arena) free(buf);
        return NULL;
    }
    uint64_t done = 0;
    while (done < zs.size) {
        zip_int64_t k = zip_fread(f, buf + done, zs.size - done);
        if (k <= 0) {
            util_err_set(err, "%s: %s: %s", z->label, name, k < 0 ? zip_file_strerror(f) : "truncated entry");
            zip_fclose(f);
            if (!arena) free(buf);
            return NULL;
        }
        done += (uint64_t)k;
    }
    /* read past the end once more so libzip checks the CRC of the whole entry */
    uint8_t extra;
    zip_int64_t k = zip_fread(f, &extra, 1);
    if (k != 0) {
        util_err_set(err, "%s: %s: %s", z->label, name, k < 0 ? zip_file_strerror(f) : "longer than its size");
        zip_fclose(f);
        if (!arena) free(buf);
        return NULL;
    }
    zip_fclose(f);
    *got = done;
    return buf;
}

/* Read entry idx through libzip into a small scratch buffer, which makes libzip check its CRC (at the
 * end of the entry), without keeping the bytes: for entries used in place.  0 or -1. */
static int zip_verify(struct zipctx *z, zip_int64_t idx, const char *name, struct util_err *err)
{
    enum { SCRATCH = 1 << 18 };   /* stays in the cache: the copy costs little next to the CRC */
    if (!z->scratch && !(z->scratch = malloc(SCRATCH))) return util_err_set(err, "%s: out of memory", z->label);
    zip_file_t *f = zip_fopen_index(z->za, (zip_uint64_t)idx, 0);
    if (!f) return util_err_set(err, "%s: %s: %s", z->label, name, zip_strerror(z->za));
    zip_int64_t k;
    while ((k = zip_fread(f, z->scratch, SCRATCH)) > 0) {}
    if (k < 0) {
        util_err_set(err, "%s: %s: %s", z->label, name, zip_file_strerror(f));
        zip_fclose(f);
        return -1;
    }
    zip_fclose(f);
    return 0;
}

/* Where the bytes of entry idx (called name) lie in the archive, when it is stored uncompressed as
 * torch writes storages: 1 and *data set, 0 when it cannot be used in place (compressed, zip64,
 * encrypted, not found: the caller copies it out through libzip), -1 with err set on a CRC mismatch.
 * libzip has opened the archive with its consistency checks; every offset is still checked here. */
static int zip_stored(struct zipctx *z, zip_int64_t idx, const char *name, uint64_t want, const uint8_t **data,
                      struct util_err *err)
{
    zip_stat_t zs;
    if (zip_stat_index(z->za, (zip_uint64_t)idx, 0, &zs) < 0) return 0;
    zip_uint64_t need = ZIP_STAT_SIZE | ZIP_STAT_COMP_SIZE | ZIP_STAT_COMP_METHOD | ZIP_STAT_CRC | ZIP_STAT_ENCRYPTION_METHOD;
    if ((zs.valid & need) != need || zs.comp_method != ZIP_CM_STORE || zs.encryption_method != ZIP_EM_NONE ||
        zs.size != want || zs.comp_size != want)
        return 0;
    const uint8_t *b = z->buf;
    size_t n = z->n, nl = strlen(name);
    if (n < 22) return 0;
    /* end of central directory: the last signature within the 64 KiB comment window */
    size_t eocd = n - 22, stop = n - 22 > 65535 ? n - 22 - 65535 : 0;
    while (le(b + eocd, 4) != 0x06054b50) {
        if (eocd == stop) return 0;
        eocd--;
    }
    uint64_t entries = le(b + eocd + 10, 2), cd_size = le(b + eocd + 12, 4), cd_off = le(b + eocd + 16, 4);
    if (entries == 0xFFFF || cd_size == 0xFFFFFFFF || cd_off == 0xFFFFFFFF || cd_off > eocd || cd_size > eocd - cd_off)
        return 0;   /* zip64 or inconsistent: let libzip copy it */
    size_t p = (size_t)cd_off, end = (size_t)(cd_off + cd_size);
    for (uint64_t e = 0; e < entries; e++) {
        if (end - p < 46 || le(b + p, 4) != 0x02014b50) return 0;
        size_t enl = le(b + p + 28, 2), exl = le(b + p + 30, 2), cml = le(b + p + 32, 2);
        uint64_t lho = le(b + p + 42, 4);
        if (end - p - 46 < enl + exl + cml) return 0;
        if (enl == nl && memcmp(b + p + 46, name, nl) == 0) {
            /* the entry libzip checked: stored, same CRC and sizes */
            if (le(b + p + 10, 2) != 0 || le(b + p + 16, 4) != zs.crc || le(b + p + 20, 4) != want ||
                le(b + p + 24, 4) != want || lho > n || n - lho < 30 || le(b + lho, 4) != 0x04034b50)
                return 0;
            size_t lnl = le(b + lho + 26, 2), lxl = le(b + lho + 28, 2);
            if (lnl != nl || n - lho - 30 < lnl || memcmp(b + lho + 30, name, nl) != 0) return 0;
            uint64_t off = lho + 30 + lnl + lxl;
            if (off > n || n - off < want) return 0;
            if (zip_verify(z, idx, name, err) < 0) return -1;
            *data = b + off;
            return 1;
        }
        p += 46 + enl + exl + cml;
    }
    return 0;
}

static int zip_fetch(void *ctx, struct sdata *sd, struct util_err *err)
{
    struct zipctx *z = ctx;
    char name[1024];
    char key[128];
    util_printable(key, sizeof key, sd->key, sd->key_len);
    if (sd->key_len > 400 || memchr(sd->key, 0, sd->key_len))
        return util_err_set(err, "%s: storage key %s is not a valid name", z->label, key);
    snprintf(name, sizeof name, "%sdata/%.*s", z->prefix, (int)sd->key_len, (const char *)sd->key);
    zip_int64_t idx = zip_name_locate(z->za, name, 0);
    if (idx < 0) return util_err_set(err, "%s: storage %s is not in the archive (no %s)", z->label, key, name);
    uint64_t bytes, got;
    if (__builtin_mul_overflow((uint64_t)sd->numel, (uint64_t)welem_size(sd->elem), &bytes))
        return util_err_set(err, "%s: storage %s: size overflows", z->label, key);
    if (z->borrow) {   /* a stored entry of the mapped file: use its bytes where they are */
        const uint8_t *p = NULL;
        int r = zip_stored(z, idx, name, bytes, &p, err);
        if (r < 0) return -1;
        if (r > 0 && weights_can_borrow(sd->elem, p)) {
            sd->bytes = p;
            sd->lives = 1;
            return 0;
        }
    }
    void *buf = zip_read(z, idx, name, bytes, UINT64_MAX, 1, &got, err);
    if (!buf) return -1;
    sd->bytes = buf;
    sd->lives = 1;
    return 0;
}

weights_set *weights_read_pth(const uint8_t *buf, size_t n, const char *label, const weights_opts *o,
                              int borrow, struct util_err *err)
{
    zip_error_t ze;
    zip_error_init(&ze);
    struct zipctx z = {0};
    struct up u;
    struct stable tab = {0};
    weights_set *s = NULL;
    uint8_t *pkl = NULL;
    char where[600];
    z.label = label;
    /* torch stores entries uncompressed; a compressed archive may expand, but a file never gets to
     * claim more than 64x its size (plus 64 MB) in total */
    z.budget = (uint64_t)n * 64 + ((uint64_t)64 << 20);
    up_init(&u, label, label, NULL, 0, 0, err);
    zip_source_t *src = zip_source_buffer_create(buf, n, 0, &ze);
    if (!src) {
        util_err_set(err, "%s: %s", label, zip_error_strerror(&ze));
        zip_error_fini(&ze);
        return NULL;
    }
    z.za = zip_open_from_source(src, ZIP_RDONLY | ZIP_CHECKCONS, &ze);
    if (!z.za) {
        util_err_set(err, "%s: not a readable zip archive: %s", label, zip_error_strerror(&ze));
        zip_source_free(src);
        zip_error_fini(&ze);
        return NULL;
    }
    zip_error_fini(&ze);
    zip_int64_t ne = zip_get_num_entries(z.za, 0), pkl_idx = -1;
    for (zip_int64_t i = 0; i < ne; i++) {
        const char *nm = zip_get_name(z.za, (zip_uint64_t)i, 0);
        if (!nm) continue;
        const char *slash = strchr(nm, '/');
        if (!slash || strcmp(slash + 1, "data.pkl") != 0) continue;
        if (pkl_idx >= 0) {
            util_err_set(err, "%s: more than one data.pkl in the archive", label);
            goto fail;
        }
        if ((size_t)(slash - nm) + 1 >= sizeof z.prefix) {
            util_err_set(err, "%s: archive directory name too long", label);
            goto fail;
        }
        pkl_idx = i;
        memcpy(z.prefix, nm, (size_t)(slash - nm) + 1);
        z.prefix[slash - nm + 1] = 0;
    }
    if (pkl_idx < 0) {
        util_err_set(err, "%s: a zip archive without DIR/data.pkl: not a torch.save file (TorchScript archives are "
                     "not read)", label);
        goto fail;
    }
    char name[600];
    snprintf(name, sizeof name, "%sbyteorder", z.prefix);
    zip_int64_t bo = zip_name_locate(z.za, name, 0);
    uint64_t got;
    if (bo >= 0) {
        uint8_t *b = zip_read(&z, bo, name, UINT64_MAX, 16, 0, &got, err);
        if (!b) goto fail;
        int little = got == 6 && memcmp(b, "little", 6) == 0;
        free(b);
        if (!little) {
            util_err_set(err, "%s: big-endian checkpoint (byteorder is not 'little')", label);
            goto fail;
        }
    }
    snprintf(name, sizeof name, "%sdata.pkl", z.prefix);
    if (!(pkl = zip_read(&z, pkl_idx, name, UINT64_MAX, MAX_PICKLE, 0, &got, err))) goto fail;
    snprintf(where, sizeof where, "%s: data.pkl", label);
    up_init(&u, label, where, pkl, (size_t)got, 0, err);
    struct obj *root;
    if (!(s = weights_create(label, err)) || unpickle(&u, &root) < 0) goto fail;
    s->format = WEIGHTS_PTH;
    z.s = s;
    z.buf = buf;
    z.n = n;
    z.borrow = borrow;
    s->may_borrow = borrow;
    const struct obj *d = unwrap(s, root, o, err);
    if (!d || extract(s, d, &tab, zip_fetch, &z, err) < 0) goto fail;
    up_free(&u);
    st_free(&tab);
    free(pkl);
    zip_discard(z.za);
    free(z.scratch);
    return s;
fail:
    up_free(&u);
    st_free(&tab);
    free(pkl);
    zip_discard(z.za);
    free(z.scratch);
    weights_free(s);
    return NULL;
}

/* ---------------------------------------------------------------- legacy format */

struct legctx {
    const char *label;
};

static int legacy_fetch(void *ctx, struct sdata *sd, struct util_err *err)
{
    struct legctx *l = ctx;
    char key[128];
    util_printable(key, sizeof key, sd->key, sd->key_len);
    return util_err_set(err, "%s: storage %s is not in the file", l->label, key);
}

weights_set *weights_read_pth_legacy(const uint8_t *buf, size_t n, const char *label, const weights_opts *o,
                                     int borrow, struct util_err *err)
{
    struct up u;
    struct stable tab = {0};
    struct legctx l = {label};
    weights_set *s = NULL;
    struct obj *magic, *proto, *info, *root, *keys;
    up_init(&u, label, label, buf, n, 0, err);
    if (unpickle(&u, &magic) < 0 || unpickle(&u, &proto) < 0) goto fail;
    if (magic->kind != O_BIGINT || proto->kind != O_INT || proto->u.i != 1001) {
        util_err_set(err, "%s: legacy checkpoint with protocol %lld (1001 is read)", label,
                     proto->kind == O_INT ? (long long)proto->u.i : -1LL);
        goto fail;
    }
    if (unpickle(&u, &info) < 0) goto fail;
    if (info->kind == O_DICT)
        for (int i = 0; i + 1 < info->n; i += 2)
            if (is_str(info->u.items[i], "little_endian") && info->u.items[i + 1]->kind == O_BOOL &&
                !info->u.items[i + 1]->u.i) {
                util_err_set(err, "%s: big-endian checkpoint", label);
                goto fail;
            }
    if (unpickle(&u, &root) < 0 || unpickle(&u, &keys) < 0) goto fail;
    if (keys->kind != O_LIST) {
        util_err_set(err, "%s: legacy storage key list missing", label);
        goto fail;
    }
    if (!(s = weights_create(label, err))) goto fail;
    s->format = WEIGHTS_PTH_LEGACY;
    s->may_borrow = borrow;
    const struct obj *d = unwrap(s, root, o, err);
    if (!d) goto fail;
    /* the storages follow in key order: an 8-byte element count, then the raw elements.  Their types
     * come from the persistent ids in the pickle, so every listed storage must be named there. */
    for (struct chunk *c = u.chunks; c; c = c->next)
        for (int i = 0; i < c->used; i++) {
            if (c->o[i].kind != O_STORAGE) continue;
            const struct storage *st = c->o[i].u.st;
            struct sdata *sd = st_find(&tab, st->key, st->key_len, 1);
            if (!sd) { util_err_set(err, "out of memory"); goto fail; }
            if (sd->numel && (sd->elem != st->elem || sd->numel != st->numel)) {
                util_err_set(err, "%s: a storage is named with two different types or sizes", label);
                goto fail;
            }
            sd->elem = st->elem;
            sd->numel = st->numel;
        }
    size_t pos = u.pos;
    for (int i = 0; i < keys->n; i++) {
        const struct obj *k = keys->u.items[i];
        char key[128];
        if (k->kind != O_STR) {
            util_err_set(err, "%s: legacy storage key %d is not a string", label, i);
            goto fail;
        }
        util_printable(key, sizeof key, k->u.s.p, k->u.s.len);
        if (n - pos < 8) {
            util_err_set(err, "%s: truncated at storage %s (byte %zu)", label, key, pos);
            goto fail;
        }
        uint64_t cnt = le(buf + pos, 8);
        pos += 8;
        struct sdata *sd = st_find(&tab, k->u.s.p, k->u.s.len, 0);
        if (!sd) {
            util_err_set(err, "%s: storage %s is listed but named nowhere in the pickle", label, key);
            goto fail;
        }
        uint64_t bytes;
        if (cnt != (uint64_t)sd->numel || __builtin_mul_overflow(cnt, (uint64_t)welem_size(sd->elem), &bytes)) {
            util_err_set(err, "%s: storage %s holds %llu elements, the pickle says %lld", label, key,
                         (unsigned long long)cnt, (long long)sd->numel);
            goto fail;
        }
        if (bytes > n - pos) {
            util_err_set(err, "%s: truncated in storage %s (%llu bytes needed at byte %zu, file has %zu)", label, key,
                         (unsigned long long)bytes, pos, n);
            goto fail;
        }
        if (sd->bytes) {
            util_err_set(err, "%s: storage %s listed twice", label, key);
            goto fail;
        }
        sd->bytes = buf + pos;
        sd->lives = borrow;   /* used in place when aligned (torch pads nothing: often it is not) */
        pos += (size_t)bytes;
    }
    if (extract(s, d, &tab, legacy_fetch, &l, err) < 0) goto fail;
    up_free(&u);
    st_free(&tab);
    return s;
fail:
    up_free(&u);
    st_free(&tab);
    weights_free(s);
    return NULL;
}

/* ---------------------------------------------------------------- writing */

struct pbuf {
    uint8_t *p;
    size_t n, cap;
    int failed;
};

static void pb_put(struct pbuf *b, const void *data, size_t k)
{
    if (b->failed) return;
    if (b->n + k > b->cap) {
        size_t cap = b->cap ? 2 * b->cap : 4096;
        while (cap < b->n + k) cap *= 2;
        uint8_t *p = realloc(b->p, cap);
        if (!p) { b->failed = 1; return; }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, data, k);
    b->n += k;
}

static void pb_op(struct pbuf *b, uint8_t op) { pb_put(b, &op, 1); }
static void pb_text(struct pbuf *b, const char *s) { pb_put(b, s, strlen(s)); }

static void pb_str(struct pbuf *b, const char *s)
{
    uint32_t len = (uint32_t)strlen(s);
    uint8_t l4[4] = {(uint8_t)len, (uint8_t)(len >> 8), (uint8_t)(len >> 16), (uint8_t)(len >> 24)};
    pb_op(b, 'X');
    pb_put(b, l4, 4);
    pb_put(b, s, len);
}

static void pb_int(struct pbuf *b, int64_t v)
{
    if (v >= 0 && v < 256) {
        uint8_t x[2] = {'K', (uint8_t)v};
        pb_put(b, x, 2);
    } else if (v >= 0 && v < 65536) {
        uint8_t x[3] = {'M', (uint8_t)v, (uint8_t)(v >> 8)};
        pb_put(b, x, 3);
    } else if (v >= INT32_MIN && v <= INT32_MAX) {
        uint32_t u = (uint32_t)v;
        uint8_t x[5] = {'J', (uint8_t)u, (uint8_t)(u >> 8), (uint8_t)(u >> 16), (uint8_t)(u >> 24)};
        pb_put(b, x, 5);
    } else {
        uint64_t u = (uint64_t)v;
        uint8_t x[10] = {0x8a, 8};
        for (int i = 0; i < 8; i++) x[2 + i] = (uint8_t)(u >> (8 * i));
        pb_put(b, x, 10);
    }
}

/* The state dict pickle: OrderedDict of _rebuild_tensor_v2 calls, protocol 2 as torch.save writes it.
 * Storage keys are keys[i]; legacy persistent ids carry a sixth element (no view). */
static void pickle_state_dict(struct pbuf *b, const weights_set *s, char (*keys)[24], int legacy)
{
    pb_put(b, "\x80\x02", 2);
    pb_text(b, "ccollections\nOrderedDict\n");
    pb_op(b, ')');
    pb_op(b, 'R');
    pb_op(b, '(');
    for (int i = 0; i < s->n; i++) {
        const weights_tensor *t = &s->t[i];
        pb_str(b, t->name);
        pb_text(b, "ctorch._utils\n_rebuild_tensor_v2\n");
        pb_op(b, '(');
        pb_op(b, '(');
        pb_str(b, "storage");
        pb_text(b, t->dtype == TSZ_F32 ? "ctorch\nFloatStorage\n" : "ctorch\nLongStorage\n");
        pb_str(b, keys[i]);
        pb_str(b, "cpu");
        pb_int(b, t->numel);
        if (legacy) pb_op(b, 'N');
        pb_op(b, 't');
        pb_op(b, 'Q');
        pb_int(b, 0);
        pb_op(b, '(');
        for (int d = 0; d < t->ndim; d++) pb_int(b, t->shape[d]);
        pb_op(b, 't');
        pb_op(b, '(');
        int64_t st[TSZ_MAX_DIMS], acc = 1;
        for (int d = t->ndim - 1; d >= 0; d--) {   /* torch's contiguous strides */
            st[d] = acc;
            acc *= t->shape[d] > 1 ? t->shape[d] : 1;
        }
        for (int d = 0; d < t->ndim; d++) pb_int(b, st[d]);
        pb_op(b, 't');
        pb_op(b, 0x89);
        pb_text(b, "ccollections\nOrderedDict\n");
        pb_op(b, ')');
        pb_op(b, 'R');
        pb_op(b, 't');
        pb_op(b, 'R');
    }
    pb_op(b, 'u');
    pb_op(b, '.');
}

static size_t tensor_bytes(const weights_tensor *t) { return (size_t)t->numel * (t->dtype == TSZ_F32 ? 4 : 8); }

static char (*key_names)[24];
static int cmp_key(const void *a, const void *b) { return strcmp(key_names[*(const int *)a], key_names[*(const int *)b]); }

static int save_legacy(const weights_set *s, const char *path, char (*keys)[24], struct util_err *err)
{
    struct pbuf b = {0};
    static const uint8_t magic[] = {0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, '.'};
    pb_put(&b, magic, sizeof magic);
    pb_put(&b, "\x80\x02M\xe9\x03.", 6);   /* protocol version 1001 */
    pb_put(&b, "\x80\x02}(", 4);          /* sys_info */
    pb_str(&b, "protocol_version");
    pb_int(&b, 1001);
    pb_str(&b, "little_endian");
    pb_op(&b, 0x88);
    pb_str(&b, "type_sizes");
    pb_op(&b, '}');
    pb_op(&b, '(');
    pb_str(&b, "short");
    pb_int(&b, 2);
    pb_str(&b, "int");
    pb_int(&b, 4);
    pb_str(&b, "long");
    pb_int(&b, 4);
    pb_op(&b, 'u');
    pb_op(&b, 'u');
    pb_op(&b, '.');
    pickle_state_dict(&b, s, keys, 1);
    /* keys sorted as strings, as torch does; the storages follow in that order */
    int *order = util_malloc((size_t)s->n + 1, sizeof *order, err);
    if (!order) { free(b.p); return -1; }
    for (int i = 0; i < s->n; i++) order[i] = i;
    key_names = keys;
    qsort(order, (size_t)s->n, sizeof *order, cmp_key);
    pb_put(&b, "\x80\x02]q\x00(", 6);
    for (int i = 0; i < s->n; i++) pb_str(&b, keys[order[i]]);
    pb_op(&b, 'e');
    pb_op(&b, '.');
    if (b.failed) {
        free(order);
        free(b.p);
        return util_err_set(err, "%s: out of memory", path);
    }
    util_atomic_file af;
    if (util_atomic_open(&af, path, err) < 0) {
        free(order);
        free(b.p);
        return -1;
    }
    int ok = fwrite(b.p, 1, b.n, af.fp) == b.n;
    for (int i = 0; i < s->n && ok; i++) {
        const weights_tensor *t = &s->t[order[i]];
        uint64_t cnt = (uint64_t)t->numel;
        ok = fwrite(&cnt, 8, 1, af.fp) == 1 && (tensor_bytes(t) == 0 || fwrite(t->data, 1, tensor_bytes(t), af.fp) == tensor_bytes(t));
    }
    free(order);
    free(b.p);
    if (!ok) {
        util_err_sys(err, "%s: write", path);
        util_atomic_abort(&af);
        return -1;
    }
    return util_atomic_commit(&af, err);
}

static int save_zip(const weights_set *s, const char *path, char (*keys)[24], struct util_err *err)
{
    struct pbuf b = {0};
    pickle_state_dict(&b, s, keys, 0);
    if (b.failed) {
        free(b.p);
        return util_err_set(err, "%s: out of memory", path);
    }
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    int zerr = 0;
    zip_t *za = zip_open(tmp, ZIP_CREATE | ZIP_TRUNCATE, &zerr);
    if (!za) {
        zip_error_t ze;
        zip_error_init_with_code(&ze, zerr);
        util_err_set(err, "%s: %s", path, zip_error_strerror(&ze));
        zip_error_fini(&ze);
        free(b.p);
        return -1;
    }
    char name[64];
    int ok = 1;
    /* Like torch, pad each local header with an extra field ("FB") so every entry's data starts 64-byte
     * aligned: readers can then use stored tensors in place.  pos follows libzip's layout (local header,
     * name, extra, data; no descriptors for sources of known size); were it off, only speed suffers. */
    static const uint8_t zeros[64];
    uint64_t pos = 0;
    for (int i = -2; i < s->n && ok; i++) {
        const void *data;
        size_t len;
        if (i == -2) { snprintf(name, sizeof name, "archive/data.pkl"); data = b.p; len = b.n; }
        else if (i == -1) { snprintf(name, sizeof name, "archive/version"); data = "3\n"; len = 2; }
        else { snprintf(name, sizeof name, "archive/data/%s", keys[i]); data = s->t[i].data; len = tensor_bytes(&s->t[i]); }
        zip_source_t *src = zip_source_buffer(za, data, len, 0);
        zip_int64_t idx = src ? zip_file_add(za, name, src, ZIP_FL_ENC_UTF_8) : -1;
        if (idx < 0) {
            zip_source_free(src);
            ok = 0;
        } else if (zip_set_file_compression(za, (zip_uint64_t)idx, ZIP_CM_STORE, 0) < 0) {
            ok = 0;
        } else {
            uint64_t data_at = pos + 30 + strlen(name) + 4;
            uint16_t pad = (uint16_t)((64 - data_at % 64) % 64);
            if (zip_file_extra_field_set(za, (zip_uint64_t)idx, 0x4246, ZIP_EXTRA_FIELD_NEW, zeros, pad, ZIP_FL_LOCAL) < 0)
                ok = 0;
            pos = data_at + pad + len;
        }
    }
    if (!ok || zip_close(za) < 0) {
        util_err_set(err, "%s: %s", path, zip_strerror(za));
        zip_discard(za);
        unlink(tmp);
        free(b.p);
        return -1;
    }
    free(b.p);
    if (rename(tmp, path) < 0) {
        util_err_sys(err, "%s: rename", path);
        unlink(tmp);
        return -1;
    }
    return 0;
}

int weights_save_pth(const weights_set *s, const char *path, int legacy, struct util_err *err)
{
    if (strcmp(path, "-") == 0) return util_err_set(err, "a .pth file cannot be written to stdout");
    char (*keys)[24] = util_malloc((size_t)s->n + 1, sizeof *keys, err);
    if (!keys) return -1;
    for (int i = 0; i < s->n; i++) snprintf(keys[i], sizeof keys[i], "%d", i);
    int rc = legacy ? save_legacy(s, path, keys, err) : save_zip(s, path, keys, err);
    free(keys);
    return rc;
}
