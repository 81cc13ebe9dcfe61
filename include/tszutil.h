/* tszutil.h: the work behind the `tsz` tool's subcommands (tsz(1)): record selection, value statistics
 * and `tsz info` reports, attribute merging for `tsz cat`, NumPy .npy headers and a streaming writer of
 * stored (uncompressed) zip archives for .npz files.  Nothing here prints to stderr or exits. */
#ifndef EARSIGHT_TSZUTIL_H
#define EARSIGHT_TSZUTIL_H

#include <stdint.h>
#include <stdio.h>

#include <jansson.h>

#include "tsz.h"
#include "util.h"

/* ---- record groups ----
 * Mixup soft labels travel as a record named "NAME#soft" right after the record named NAME; the pair
 * is one example for selection, head and shuffle.  1 if rec is such a companion of prev_name. */
int tszutil_is_companion(const char *prev_name, const tsz_rec *rec);
/* 1 if the stream's attributes say soft_labels=1: companions are kept with their record there; elsewhere
 * such names are ordinary records. */
int tszutil_soft_groups(const tsz_attrs *a);

/* ---- selection (tsz select, tsz npy) ----
 * A record is kept when it passes every given test (AND); a test given several values (--fold 1,2,
 * --name 'a*' --name 'b*') passes if any value matches (OR); invert negates the whole result. */
typedef struct {
    int n_folds, n_labels, n_names;
    int32_t *folds, *labels;
    char **names;           /* fnmatch(3) patterns, no flags: '*' also matches '/' */
    int has_range;
    int64_t lo, hi;         /* example index in [lo, hi) */
    int invert;
} tszutil_select;
void tszutil_select_init(tszutil_select *s);
void tszutil_select_free(tszutil_select *s);
/* Append the comma-separated integers of list ("3" or "1,4") to folds or labels.  0, -1 if malformed. */
int tszutil_select_add_folds(tszutil_select *s, const char *list);
int tszutil_select_add_labels(tszutil_select *s, const char *list);
int tszutil_select_add_name(tszutil_select *s, const char *glob);
/* Range "A:B" (A <= index < B), "A:" (from A), ":B" (before B) or "A" (just A).  0, -1 if malformed. */
int tszutil_select_set_range(tszutil_select *s, const char *text);
/* 1 if the record at example index `index` is kept. */
int tszutil_select_match(const tszutil_select *s, const tsz_rec *rec, int64_t index);
/* 1 if no record at an index >= index can be kept any more (lets a reader stop early). */
int tszutil_select_past_end(const tszutil_select *s, int64_t index);

/* ---- statistics (tsz info) ---- */
typedef struct {
    int dtype, ndim;
    int64_t shape[TSZ_MAX_DIMS];
    int64_t count;
} tszutil_kind;
typedef struct {
    int32_t key;
    int64_t count;
} tszutil_count;
typedef struct {
    int64_t n_records;
    uint64_t data_bytes;
    int n_kinds, cap_kinds;      /* distinct dtype+shape combinations, at most TSZUTIL_MAX_KINDS */
    tszutil_kind *kinds;
    int64_t other_kinds;         /* records whose combination did not fit in the table */
    int n_labels, cap_labels, n_folds, cap_folds;
    tszutil_count *labels, *folds; /* sorted by key */
    int64_t other_labels, other_folds; /* records whose label/fold did not fit (over 65536 distinct) */
    uint64_t n_values, n_nonfinite;  /* NaN and infinities are counted, not included in the moments */
    double min, max, mean, m2;       /* m2: sum of squared deviations from the mean */
} tszutil_stats;
#define TSZUTIL_MAX_KINDS 4096
void tszutil_stats_init(tszutil_stats *s);
void tszutil_stats_free(tszutil_stats *s);
/* Account one record and its data (tsz_rec_bytes(rec) bytes).  0, -1 out of memory. */
int tszutil_stats_add(tszutil_stats *s, const tsz_rec *rec, const void *data, struct util_err *err);
/* Only the value moments (count, min, max, mean, m2) of n values of a numeric dtype; no record counted. */
void tszutil_stats_add_values(tszutil_stats *s, int dtype, const void *data, int64_t n);
/* Population standard deviation of the finite values (NaN when there are none). */
double tszutil_stats_std(const tszutil_stats *s);
/* The human-readable report of one stream, as `tsz info` prints it. */
void tszutil_stats_print(FILE *f, const char *path, const tsz_attrs *a, int64_t declared,
                         const tszutil_stats *s);
/* The same as one JSON object (new reference; NULL when out of memory). */
json_t *tszutil_stats_json(const char *path, const tsz_attrs *a, int64_t declared, const tszutil_stats *s);
/* One record's description (`tsz info --list`): a text line, or a JSON object (new reference). */
void tszutil_rec_print(FILE *f, const tsz_rec *rec, int64_t index);
json_t *tszutil_rec_json(const tsz_rec *rec, int64_t index);

/* ---- per-channel statistics and scaling (tsz norm) ----
 * An example is a record of rank 3 (C x H x W) or 2 (H x W: one channel); a NAME#soft companion of a
 * soft_labels=1 stream is none.  u8 values count as x / 255, as the trainers read them (train.h). */
#define TSZUTIL_MAX_CHANNELS 64
typedef struct {
    int n_ch;                                  /* 0 before the first example */
    int u8;                                    /* 1: the examples are u8 (statistics of x / 255) */
    int64_t n_examples;
    tszutil_stats ch[TSZUTIL_MAX_CHANNELS];    /* only the value moments are used */
} tszutil_chstats;
void tszutil_chstats_init(tszutil_chstats *c);
/* Channels of an example record (1 for H x W), or -1 when rec is not C x H x W / H x W. */
int tszutil_example_channels(const tsz_rec *rec);
/* Account one example (its data).  -1 when its channel count or its u8-ness differs from the first
 * example's (err says which; the caller adds file and record). */
int tszutil_chstats_add(tszutil_chstats *c, const tsz_rec *rec, const void *data, struct util_err *err);
/* Every example of the stream at path ("-" is stdin); errors name the file and record.  0 or -1. */
int tszutil_chstats_file(tszutil_chstats *c, const char *path, struct util_err *err);
/* Mean and population standard deviation of channel k (in the x / 255 units for u8). */
void tszutil_chstats_get(const tszutil_chstats *c, int k, double *mean, double *std);

/* ---- attributes (tsz cat) ----
 * Merge src, the attributes of a later input, into dst (those of the first input): dst's values win;
 * keys dst lacks are added; lines of src's `history` not already in dst's are appended in order;
 * a `classes` attribute differing from dst's is an error naming both files.  0 or -1. */
int tszutil_merge_attrs(tsz_attrs *dst, const char *dst_path, const tsz_attrs *src, const char *src_path,
                        struct util_err *err);

/* ---- NumPy .npy (format 1.0 written; 1.0, 2.0 and 3.0 read) ---- */
/* NumPy's type string for a TSZ dtype ("<f4", "|u1", ...); NULL for bf16, which NumPy lacks. */
const char *tszutil_npy_descr(int dtype);
/* The whole header (magic, version 1.0, length, dict, spaces, '\n'; a multiple of 64 bytes, as
 * numpy.save writes it) for an array of descr and shape, into buf.  Its length, or 0 if cap is short. */
size_t tszutil_npy_header(char *buf, size_t cap, const char *descr, int ndim, const int64_t *shape);
typedef struct {
    int dtype;          /* TSZ dtype the data maps to (bool becomes u8) */
    int swap;           /* 1: big-endian data, bytes must be swapped */
    int fortran;        /* 1: Fortran (column-major) order */
    int ndim;
    int64_t shape[TSZ_MAX_DIMS];
    uint64_t bytes;     /* data size */
} tszutil_npy_info;
/* Read and parse the header from f (positioned at the start).  0 or -1 with err naming path. */
int tszutil_npy_read_header(FILE *f, const char *path, tszutil_npy_info *info, struct util_err *err);
/* Read the data that follows into *buf (malloc'd, grown as data actually arrives, so a lying header
 * cannot make it allocate much more than the input holds), converted to little-endian C order.
 * Trailing bytes after the data are an error.  0 or -1. */
int tszutil_npy_read_data(FILE *f, const char *path, const tszutil_npy_info *info, void **buf,
                          struct util_err *err);

/* Whole .npy images (header + data, malloc'd; *size set) of a 1-D int32 array and of a NumPy unicode
 * array '<U{longest}' of n strings (UTF-8 decoded; a byte that is not valid UTF-8 stands for itself,
 * as Latin-1).  NULL when out of memory. */
void *tszutil_npy_i32(const int32_t *v, int64_t n, size_t *size);
void *tszutil_npy_unicode(char *const *s, int64_t n, size_t *size);

/* ---- stored zip archives (.npz) written front to back, so stdout works ----
 * Members are stored without compression (as numpy.savez does), dated 1980-01-01 so that the same
 * input gives the same bytes; ZIP64 records are used only where sizes or offsets need them. */
typedef struct tszutil_zip tszutil_zip;
/* Open path ("-" is stdout; files appear under their name only after finish).  NULL on failure. */
tszutil_zip *tszutil_zip_open(const char *path, struct util_err *err);
/* Add a member whose data is the concatenation of n_parts buffers.  0 or -1. */
int tszutil_zip_add(tszutil_zip *z, const char *name, int n_parts, const void *const *parts,
                    const size_t *sizes, struct util_err *err);
/* Write the central directory and commit.  0 or -1. */
int tszutil_zip_finish(tszutil_zip *z, struct util_err *err);
void tszutil_zip_close(tszutil_zip *z);    /* NULL is fine; an unfinished file is removed */
void tszutil_zip_force_zip64(tszutil_zip *z);  /* tests: write ZIP64 records for every member */
/* CRC-32 (zip, PNG) of n bytes continuing from crc (start with 0). */
uint32_t tszutil_crc32(uint32_t crc, const void *data, size_t n);

#endif
