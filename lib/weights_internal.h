/* weights_internal.h: what the weights_*.c files share and nobody else needs: element types as
 * files store them, the conversion into a set's f32/i64 tensors, and the per-format readers. */
#ifndef EARSIGHT_WEIGHTS_INTERNAL_H
#define EARSIGHT_WEIGHTS_INTERNAL_H

#include "weights.h"

/* Element types found in files. */
enum welem { W_F64, W_F32, W_F16, W_BF16, W_I64, W_I32, W_I16, W_I8, W_U8, W_U16, W_U32, W_U64, W_BOOL,
             W_NELEM };
size_t welem_size(enum welem e);
const char *welem_name(enum welem e);   /* "f32", ... as weights_tensor.file_dtype */
int welem_is_float(enum welem e);

/* Add a tensor named name[0..name_len) converted from n contiguous little-endian elements of type e
 * at src (any alignment).  ndim/shape as stored.  Refuses names with NUL bytes or over TSZ_MAX_NAME.
 * 0 or -1. */
int weights_put(weights_set *s, const char *name, size_t name_len, enum welem e, int ndim,
                const int64_t *shape, const void *src, struct util_err *err);
/* Like weights_put with a strided source: element (i0, i1, ...) at src + (offset + sum i_k*stride_k)
 * elements.  The caller has checked every index lies inside the source. */
int weights_put_strided(weights_set *s, const char *name, size_t name_len, enum welem e, int ndim,
                        const int64_t *shape, const int64_t *stride, const void *src, int64_t offset,
                        struct util_err *err);

/* Add a tensor taking over data: n elements of W_F32 or W_I64, malloc'd (freed on failure).  0 or -1. */
int weights_put_owned(weights_set *s, const char *name, size_t name_len, enum welem e, int ndim,
                      const int64_t *shape, void *data, struct util_err *err);

/* Add a tensor whose data stays where it is: n elements of W_F32 or W_I64 (host byte order, aligned)
 * in the set's arena or in the buffer being read when s->may_borrow.  Never freed here.  0 or -1. */
int weights_put_borrowed(weights_set *s, const char *name, size_t name_len, enum welem e, int ndim,
                         const int64_t *shape, void *data, struct util_err *err);
/* n bytes (64-byte aligned) from the set's arena, freed with the set; NULL with err set. */
void *weights_arena_alloc(weights_set *s, size_t n, struct util_err *err);
/* Whether data of type e at p can be used in place: f32/i64, aligned, little-endian host. */
int weights_can_borrow(enum welem e, const void *p);


/* Product of shape[0..ndim) into *numel; -1 if a dim is negative or the product passes 2^62. */
int weights_numel_of(int ndim, const int64_t *shape, int64_t *numel);

/* Readers of a whole file in memory (buf stays the caller's; with borrow, tensors may point into it and
 * the caller keeps it mapped as long as the set lives).  NULL with err set on failure. */
weights_set *weights_read_safetensors(const uint8_t *buf, size_t n, const char *label, int borrow,
                                      struct util_err *err);
weights_set *weights_read_pth(const uint8_t *buf, size_t n, const char *label, const weights_opts *o,
                              int borrow, struct util_err *err);
weights_set *weights_read_pth_legacy(const uint8_t *buf, size_t n, const char *label,
                                     const weights_opts *o, int borrow, struct util_err *err);

#endif
