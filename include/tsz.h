/* tsz.h: TSZ tensor streams, the format every earsight tool reads and writes (bytes in tsz(5)).
 * A stream is a header (magic, version, declared record count, key=value attributes), records of
 * one tensor each (dtype, shape, name, label, fold), and an end marker with the record count, so a
 * truncated stream is detected.  Writers compress with zstd (optionally after a per-record byte
 * shuffle); readers accept raw or zstd input, from files or pipes, and never seek. */
#ifndef EARSIGHT_TSZ_H
#define EARSIGHT_TSZ_H

#include <stddef.h>
#include <stdint.h>

#include "util.h"

#define TSZ_VERSION 1
#define TSZ_MAX_DIMS 8
#define TSZ_MAX_NAME 255                        /* bytes, without the terminating NUL */
#define TSZ_MAX_ATTR_BYTES (16u << 20)          /* all attribute text of one header */
#define TSZ_DEFAULT_MAX_RECORD ((uint64_t)4 << 30)  /* reader refuses bigger records unless raised */

enum tsz_dtype {
    TSZ_F32 = 1, TSZ_U8 = 2, TSZ_I32 = 3, TSZ_F64 = 4, TSZ_I64 = 5, TSZ_F16 = 6, TSZ_BF16 = 7,
    TSZ_I8 = 8, TSZ_U16 = 9, TSZ_I16 = 10
};

/* One record's description.  Its data is prod(shape) elements of dtype, little-endian, C order. */
typedef struct {
    char name[TSZ_MAX_NAME + 1]; /* clip id, image path or parameter name ("" allowed) */
    enum tsz_dtype dtype;
    int ndim;                    /* 0..TSZ_MAX_DIMS; 0 is a scalar (one element) */
    int64_t shape[TSZ_MAX_DIMS];
    int32_t label;               /* -1 when unlabelled */
    int32_t fold;                /* 0 when none */
} tsz_rec;

/* Element size in bytes of dtype (0 for an unknown code), and its name ("f32", ...; "?" if unknown). */
size_t tsz_dtype_size(int dtype);
const char *tsz_dtype_name(int dtype);
/* dtype from a name ("f32", "u8", ...); -1 if unknown. */
int tsz_dtype_from_name(const char *s);
/* Number of elements of rec (1 for ndim 0); -1 if a dim is negative or the product overflows 2^62. */
int64_t tsz_rec_numel(const tsz_rec *rec);
/* Bytes of rec's data; 0 for an invalid rec (check tsz_rec_numel first for that case). */
uint64_t tsz_rec_bytes(const tsz_rec *rec);
/* Fill rec with name, f32 dtype, label -1, fold 0 and the given shape. */
void tsz_rec_init(tsz_rec *rec, const char *name, enum tsz_dtype dtype, int ndim, const int64_t *shape);
/* "3x128x250" into buf. */
void tsz_shape_str(const tsz_rec *rec, char *buf, size_t cap);

/* ---- attributes: an ordered list of key=value strings ---- */
/* Keys: 1..255 bytes of [A-Za-z0-9_.-]; values: any bytes but NUL (newlines are escaped in the file). */
typedef struct {
    int n, cap;
    char **keys, **vals;
} tsz_attrs;
void tsz_attrs_init(tsz_attrs *a);
void tsz_attrs_free(tsz_attrs *a);
/* Set (replace or append) key to value.  0, or -1 for an invalid key or no memory. */
int tsz_attrs_set(tsz_attrs *a, const char *key, const char *value);
int tsz_attrs_setf(tsz_attrs *a, const char *key, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* The value of key, or NULL. */
const char *tsz_attrs_get(const tsz_attrs *a, const char *key);
/* Parsed numeric value of key into *out; 0 found and valid, -1 absent or not a number. */
int tsz_attrs_get_long(const tsz_attrs *a, const char *key, long *out);
int tsz_attrs_get_double(const tsz_attrs *a, const char *key, double *out);
int tsz_attrs_remove(tsz_attrs *a, const char *key);  /* 1 removed, 0 absent */
int tsz_attrs_copy(tsz_attrs *dst, const tsz_attrs *src);  /* dst must be initialised; appends/replaces */
/* Append one line (the tool's command line) to the `history` attribute, one command per line. */
int tsz_attrs_add_history(tsz_attrs *a, int argc, char **argv);

/* Class names live in attribute "classes": names separated by newlines, in label order. */
/* Set from n names. */
int tsz_attrs_set_classes(tsz_attrs *a, char **names, int n);
/* Split "classes" into a malloc'd array of malloc'd names (*n = 0 and NULL if absent).  0 or -1. */
int tsz_attrs_get_classes(const tsz_attrs *a, char ***names, int *n);
void tsz_free_classes(char **names, int n);

/* ---- reading ---- */
typedef struct tsz_reader tsz_reader;

/* Open path ("-" is stdin), detect zstd, read and check the header.  NULL on failure, err says why. */
tsz_reader *tsz_reader_open(const char *path, struct util_err *err);
void tsz_reader_close(tsz_reader *r);   /* NULL is fine */
/* The header's attributes (owned by the reader) and declared record count (-1 if not declared). */
const tsz_attrs *tsz_reader_attrs(const tsz_reader *r);
int64_t tsz_reader_declared(const tsz_reader *r);
/* Path as given ("-" for stdin), for messages. */
const char *tsz_reader_path(const tsz_reader *r);
/* Index of the next record to be read (= records read so far). */
int64_t tsz_reader_index(const tsz_reader *r);
/* Largest record (bytes of data) this reader accepts; default TSZ_DEFAULT_MAX_RECORD. */
void tsz_reader_set_max_record(tsz_reader *r, uint64_t max_bytes);

/* Read the next record's description.  1: a record (its data must then be read with tsz_read_data
 * or skipped with tsz_skip_data), 0: clean end (end marker seen and the count agrees), -1: error.
 * Streams concatenated byte-wise (cat a.tsz b.tsz) read as one: later headers are checked and their
 * attributes ignored. */
int tsz_next(tsz_reader *r, tsz_rec *rec, struct util_err *err);
/* Read the current record's data into buf (cap bytes, at least tsz_rec_bytes).  0 or -1. */
int tsz_read_data(tsz_reader *r, void *buf, size_t cap, struct util_err *err);
int tsz_skip_data(tsz_reader *r, struct util_err *err);
/* tsz_next + data into a buffer grown as needed (*buf, *cap are the caller's; free *buf after). */
int tsz_read(tsz_reader *r, tsz_rec *rec, void **buf, size_t *cap, struct util_err *err);
/* Read the current record's data converted to float32 (from any numeric dtype) into out
 * (numel floats).  0 or -1. */
int tsz_read_data_f32(tsz_reader *r, const tsz_rec *rec, float *out, size_t n_out, struct util_err *err);

/* ---- writing ---- */
typedef struct {
    int level;      /* zstd level, 1..19; default 3 */
    int raw;        /* 1: no compression */
    int shuffle;    /* 1: byte-shuffle multi-byte dtypes before compression (default 1); ignored if raw */
    int threads;    /* zstd worker threads (0 = in the calling thread, default) */
} tsz_wopts;
/* Defaults: level 3, compressed, shuffled. */
void tsz_wopts_default(tsz_wopts *o);

typedef struct tsz_writer tsz_writer;
/* Open path ("-" is stdout) and write the header.  A file is written under a temporary name and
 * appears under path only after tsz_writer_finish.  n_declared: the record count if known, else -1.
 * opts may be NULL for defaults.  NULL on failure. */
tsz_writer *tsz_writer_open(const char *path, const tsz_attrs *attrs, int64_t n_declared,
                            const tsz_wopts *opts, struct util_err *err);
/* Write one record; data holds tsz_rec_bytes(rec) bytes.  0 or -1. */
int tsz_write(tsz_writer *w, const tsz_rec *rec, const void *data, struct util_err *err);
/* Convenience: write a float32 tensor. */
int tsz_write_f32(tsz_writer *w, const char *name, int32_t label, int32_t fold, int ndim,
                  const int64_t *shape, const float *data, struct util_err *err);
/* Make everything written so far readable by the other end of a pipe. */
int tsz_writer_flush(tsz_writer *w, struct util_err *err);
/* Write the end marker, flush, close and (for files) rename into place.  0 or -1.
 * Fails if a declared count was given and differs from the records written. */
int tsz_writer_finish(tsz_writer *w, struct util_err *err);
/* Free the writer; if not finished, the temporary file is removed (no partial output appears). */
void tsz_writer_close(tsz_writer *w);
int64_t tsz_writer_count(const tsz_writer *w);
/* Uncompressed and compressed bytes written so far (compressed == uncompressed when raw). */
void tsz_writer_stats(const tsz_writer *w, uint64_t *raw_bytes, uint64_t *out_bytes);

/* Byte shuffle (as HDF5/Blosc): n elements of size bytes from src to dst, dst holds all first bytes,
 * then all second bytes, ...; and its inverse.  src and dst must not overlap. */
void tsz_byte_shuffle(uint8_t *dst, const uint8_t *src, size_t n, size_t size);
void tsz_byte_unshuffle(uint8_t *dst, const uint8_t *src, size_t n, size_t size);

/* Half-precision conversions used by readers of f16/bf16 data. */
float tsz_f16_to_f32(uint16_t h);
float tsz_bf16_to_f32(uint16_t h);

#endif
