/* weights_safetensors.c: the safetensors format (huggingface/safetensors): an 8-byte little-endian
 * header length, a JSON object {name: {dtype, shape, data_offsets}, "__metadata__": {str: str}}, then
 * the data.  Checked as strictly as the reference parser: offsets inside the file, sizes equal to
 * the shape, and the tensors tiling the data exactly (no overlaps, no holes, nothing after). */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "weights_internal.h"

static const struct {
    const char *name;
    int elem;   /* enum welem, or -1 for a known but unsupported dtype */
} st_dtypes[] = {
    {"F64", W_F64}, {"F32", W_F32}, {"F16", W_F16}, {"BF16", W_BF16}, {"I64", W_I64}, {"I32", W_I32},
    {"I16", W_I16}, {"I8", W_I8},   {"U8", W_U8},   {"U16", W_U16},   {"U32", W_U32}, {"U64", W_U64},
    {"BOOL", W_BOOL}, {"F8_E4M3", -1}, {"F8_E5M2", -1}, {"F8_E8M0", -1}, {"F4", -1}, {"F6_E2M3", -1},
    {"F6_E3M2", -1}, {"C64", -1},
};

struct entry {
    const char *name;
    size_t name_len;
    enum welem elem;
    int ndim;
    int64_t shape[TSZ_MAX_DIMS];
    uint64_t begin, end;
};

static int cmp_entry(const void *a, const void *b)
{
    const struct entry *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return 0;
}

/* A JSON integer >= 0 (jansson reads integers as long long; real numbers are refused). */
static int get_u64(const json_t *v, uint64_t *out)
{
    if (!json_is_integer(v) || json_integer_value(v) < 0) return -1;
    *out = (uint64_t)json_integer_value(v);
    return 0;
}

static int parse_entry(const char *label, const char *key, const json_t *v, struct entry *e, uint64_t data_len,
                       struct util_err *err)
{
    char name[96];   /* for messages */
    util_printable(name, sizeof name, key, strlen(key));
    if (!json_is_object(v)) return util_err_set(err, "%s: tensor %s: header entry is not an object", label, name);
    const json_t *dt = json_object_get(v, "dtype"), *sh = json_object_get(v, "shape"),
                 *off = json_object_get(v, "data_offsets");
    if (!json_is_string(dt) || !json_is_array(sh) || !json_is_array(off))
        return util_err_set(err, "%s: tensor %s: needs dtype (string), shape and data_offsets (arrays)", label, name);
    char ds[48];
    util_printable(ds, sizeof ds, json_string_value(dt), json_string_length(dt));
    int found = 0;
    for (size_t i = 0; i < sizeof st_dtypes / sizeof st_dtypes[0]; i++)
        if (strcmp(ds, st_dtypes[i].name) == 0) {
            if (st_dtypes[i].elem < 0)
                return util_err_set(err, "%s: tensor %s: unsupported dtype %s", label, name, ds);
            e->elem = (enum welem)st_dtypes[i].elem;
            found = 1;
        }
    if (!found) return util_err_set(err, "%s: tensor %s: unknown dtype %s", label, name, ds);
    size_t nd = json_array_size(sh);
    if (nd > TSZ_MAX_DIMS) return util_err_set(err, "%s: tensor %s: %zu dimensions (at most %d)", label, name, nd, TSZ_MAX_DIMS);
    e->ndim = (int)nd;
    for (size_t i = 0; i < nd; i++) {
        uint64_t d;
        if (get_u64(json_array_get(sh, i), &d) < 0)
            return util_err_set(err, "%s: tensor %s: shape is not a list of integers >= 0", label, name);
        e->shape[i] = (int64_t)d;
    }
    int64_t numel;
    if (weights_numel_of(e->ndim, e->shape, &numel) < 0 || (uint64_t)numel > UINT64_MAX / 16)
        return util_err_set(err, "%s: tensor %s: shape product overflows", label, name);
    if (json_array_size(off) != 2 || get_u64(json_array_get(off, 0), &e->begin) < 0 ||
        get_u64(json_array_get(off, 1), &e->end) < 0)
        return util_err_set(err, "%s: tensor %s: data_offsets is not [begin, end]", label, name);
    if (e->end < e->begin) return util_err_set(err, "%s: tensor %s: data_offsets end before begin", label, name);
    if (e->end > data_len)
        return util_err_set(err, "%s: tensor %s: data_offsets end %llu past the end of the data (%llu bytes)", label,
                            name, (unsigned long long)e->end, (unsigned long long)data_len);
    uint64_t bytes = (uint64_t)numel * welem_size(e->elem);
    if (e->end - e->begin != bytes)
        return util_err_set(err, "%s: tensor %s: %llu bytes of data for %s shape needing %llu", label, name,
                            (unsigned long long)(e->end - e->begin), welem_name(e->elem), (unsigned long long)bytes);
    e->name = key;
    e->name_len = strlen(key);
    return 0;
}

weights_set *weights_read_safetensors(const uint8_t *buf, size_t n, const char *label, int borrow,
                                      struct util_err *err)
{
    if (n < 8) {
        util_err_set(err, "%s: truncated safetensors file (%zu bytes)", label, n);
        return NULL;
    }
    uint64_t hl;
    memcpy(&hl, buf, 8);
    if (hl > WEIGHTS_MAX_HEADER) {
        util_err_set(err, "%s: safetensors header of %llu bytes (at most %u)", label, (unsigned long long)hl, WEIGHTS_MAX_HEADER);
        return NULL;
    }
    if (hl > n - 8) {
        util_err_set(err, "%s: safetensors header of %llu bytes past the end of the file (%zu bytes): truncated?", label,
                     (unsigned long long)hl, n);
        return NULL;
    }
    uint64_t data_len = n - 8 - hl;
    json_error_t je;
    json_t *root = json_loadb((const char *)buf + 8, (size_t)hl, JSON_REJECT_DUPLICATES, &je);
    weights_set *s = NULL;
    struct entry *ents = NULL;
    if (!root) {
        /* jansson quotes the offending token raw ("invalid escape near '"\<newline>'"): keep it on one line */
        char why[sizeof je.text];
        util_printable(why, sizeof why, je.text, strlen(je.text));
        util_err_set(err, "%s: safetensors header: %s at byte %d", label, why, je.position + 8);
        return NULL;
    }
    if (!json_is_object(root)) {
        util_err_set(err, "%s: safetensors header is not a JSON object", label);
        goto fail;
    }
    size_t n_ent = json_object_size(root);
    if (n_ent > WEIGHTS_MAX_TENSORS + 1) {
        util_err_set(err, "%s: %zu tensors (at most %d)", label, n_ent, WEIGHTS_MAX_TENSORS);
        goto fail;
    }
    ents = util_calloc(n_ent + 1, sizeof *ents, err);
    s = weights_create(label, err);
    if (!ents || !s) goto fail;
    s->format = WEIGHTS_SAFETENSORS;
    s->may_borrow = borrow;   /* F32/I64 data is used in place: the tiling check below rules out aliasing */
    size_t k = 0;
    const char *key;
    json_t *val;
    json_object_foreach(root, key, val)
    {
        if (strcmp(key, "__metadata__") == 0) {
            if (!json_is_object(val)) {
                util_err_set(err, "%s: safetensors __metadata__ is not an object", label);
                goto fail;
            }
            const char *mk;
            json_t *mv;
            int skipped = 0;
            json_object_foreach(val, mk, mv)
            {
                if (!json_is_string(mv)) {
                    char pk[64];
                    util_printable(pk, sizeof pk, mk, strlen(mk));
                    util_err_set(err, "%s: safetensors __metadata__ value of %s is not a string", label, pk);
                    goto fail;
                }
                /* values with NUL bytes or keys TSZ cannot hold are left out, noted */
                if (strlen(json_string_value(mv)) != json_string_length(mv) || tsz_attrs_set(&s->attrs, mk, json_string_value(mv)) < 0)
                    skipped++;
            }
            if (skipped) weights_note(s, "left out %d __metadata__ entr%s that are not valid attributes", skipped, skipped == 1 ? "y" : "ies");
            continue;
        }
        if (parse_entry(label, key, val, &ents[k], data_len, err) < 0) goto fail;
        k++;
    }
    /* offsets must tile [0, data_len) exactly: sorted by begin, each begins where the last ended */
    qsort(ents, k, sizeof *ents, cmp_entry);
    uint64_t pos = 0;
    for (size_t i = 0; i < k; i++) {
        if (ents[i].begin != pos) {
            char pn[96];
            util_printable(pn, sizeof pn, ents[i].name, ents[i].name_len);
            util_err_set(err, "%s: tensor %s: data at %llu, expected %llu (%s)", label, pn,
                         (unsigned long long)ents[i].begin, (unsigned long long)pos,
                         ents[i].begin < pos ? "overlapping data" : "a hole in the data");
            goto fail;
        }
        pos = ents[i].end;
    }
    if (pos != data_len) {
        util_err_set(err, "%s: %llu bytes after the last tensor (the data must be fully indexed)", label,
                     (unsigned long long)(data_len - pos));
        goto fail;
    }
    const uint8_t *data = buf + 8 + hl;
    for (size_t i = 0; i < k; i++)
        if (weights_put(s, ents[i].name, ents[i].name_len, ents[i].elem, ents[i].ndim, ents[i].shape,
                        data + ents[i].begin, err) < 0)
            goto fail;
    free(ents);
    json_decref(root);
    return s;
fail:
    free(ents);
    json_decref(root);
    weights_free(s);
    return NULL;
}

int weights_save_safetensors(const weights_set *s, const char *path, struct util_err *err)
{
    json_t *root = json_object(), *meta = NULL;
    char *text = NULL;
    util_atomic_file af = {0};
    int opened = 0;
    if (!root) goto oom;
    if (s->attrs.n) {
        if (!(meta = json_object())) goto oom;
        for (int i = 0; i < s->attrs.n; i++) {
            json_t *v = json_string(s->attrs.vals[i]);   /* NULL for a value that is not UTF-8: left out */
            if (v) json_object_set_new(meta, s->attrs.keys[i], v);
        }
        if (json_object_set_new(root, "__metadata__", meta) < 0) { meta = NULL; goto oom; }
    }
    uint64_t off = 0;
    for (int i = 0; i < s->n; i++) {
        const weights_tensor *t = &s->t[i];
        if (strcmp(t->name, "__metadata__") == 0) {
            util_err_set(err, "%s: a tensor named __metadata__ cannot be saved as safetensors", path);
            goto fail;
        }
        uint64_t bytes = (uint64_t)t->numel * (t->dtype == TSZ_F32 ? 4 : 8);
        json_t *e = json_object(), *sh = json_array(), *o = json_array();
        if (!e || !sh || !o) { json_decref(e); json_decref(sh); json_decref(o); goto oom; }
        json_object_set_new(e, "dtype", json_string(t->dtype == TSZ_F32 ? "F32" : "I64"));
        for (int d = 0; d < t->ndim; d++) json_array_append_new(sh, json_integer(t->shape[d]));
        json_array_append_new(o, json_integer((json_int_t)off));
        json_array_append_new(o, json_integer((json_int_t)(off + bytes)));
        json_object_set_new(e, "shape", sh);
        json_object_set_new(e, "data_offsets", o);
        if (json_object_get(root, t->name)) {
            json_decref(e);
            util_err_set(err, "%s: duplicate tensor name %s", path, t->name);
            goto fail;
        }
        if (json_object_set_new(root, t->name, e) < 0) {   /* fails for a name that is not UTF-8 */
            util_err_set(err, "%s: tensor name %s is not UTF-8", path, t->name);
            goto fail;
        }
        off += bytes;
    }
    if (!(text = json_dumps(root, JSON_COMPACT))) goto oom;
    size_t tl = strlen(text);
    /* pad with spaces so the data starts 8-byte aligned, as the reference writer does */
    uint64_t hl = (tl + 7) / 8 * 8;
    uint8_t hl_le[8];
    memcpy(hl_le, &hl, 8);
    if (util_atomic_open(&af, path, err) < 0) goto fail;
    opened = 1;
    if (fwrite(hl_le, 1, 8, af.fp) != 8 || fwrite(text, 1, tl, af.fp) != tl) goto io;
    for (uint64_t i = tl; i < hl; i++)
        if (fputc(' ', af.fp) == EOF) goto io;
    for (int i = 0; i < s->n; i++) {
        const weights_tensor *t = &s->t[i];
        size_t bytes = (size_t)t->numel * (t->dtype == TSZ_F32 ? 4 : 8);
        if (bytes && fwrite(t->data, 1, bytes, af.fp) != bytes) goto io;
    }
    free(text);
    json_decref(root);
    return util_atomic_commit(&af, err);
io:
    util_err_sys(err, "%s: write", path);
    goto fail;
oom:
    util_err_set(err, "%s: out of memory", path);
fail:
    if (opened) util_atomic_abort(&af);
    free(text);
    json_decref(root);
    return -1;
}
