/* dataset.h: the lists of audio clips wav2mel reads, each clip with a path, a name, a label and a fold:
 * list files, and the metadata or folder layouts of ESC-50, ESC-10, UrbanSound8K and GTZAN as their
 * releases ship them (wav2mel(1) describes each).  Nothing here opens the audio files themselves. */
#ifndef EARSIGHT_DATASET_H
#define EARSIGHT_DATASET_H

#include <stdint.h>

#include "tsz.h"
#include "util.h"

typedef struct {
    char *path;                  /* the audio file, as listed or joined to the dataset directory */
    char name[TSZ_MAX_NAME + 1]; /* clip id: the file name without directory and extension, or as listed */
    int32_t label, fold;         /* -1 and 0 when not given */
} dataset_item;

/* Clips in input order.  Start from a zeroed dataset_list; free with dataset_free. */
typedef struct {
    dataset_item *v;
    int64_t n, cap;
    char **classes;      /* class names by label; NULL when unlabelled */
    int n_classes;
    const char *dataset; /* "esc50", "esc10", "urbansound8k", "gtzan" (set by the readers below) or NULL */
} dataset_list;

/* Append one clip; name NULL takes the file name without directory and extension.  0, or -1 with err
 * "PATH: clip name longer than 255 bytes" or "out of memory". */
int dataset_add(dataset_list *L, const char *path, const char *name, int32_t label, int32_t fold,
                struct util_err *err);

/* Free what L holds (L itself is the caller's) and leave it empty. */
void dataset_free(dataset_list *L);

/* A list file (path "-" is stdin): lines path<TAB>label<TAB>fold[<TAB>name]; label and fold may be
 * left out or empty (-1 and 0), empty lines and lines starting with '#' are skipped.  Appends to L;
 * no classes.  0, or -1 with err "LIST: line N: expected path<TAB>label<TAB>fold[<TAB>name]",
 * "LIST: no files listed" or why the file could not be read. */
int dataset_read_list(const char *path, dataset_list *L, struct util_err *err);

/* ESC-50: DIR/meta/esc50.csv with the columns filename, fold, target and category; audio in
 * DIR/audio/FILENAME; labels are the targets, classes the categories.  Appends to L.  0, or -1 with
 * err "CSV: line N: malformed row", "CSV: header must name the columns ...", "CSV: no rows", a class
 * id naming two classes or one with no clip ("CSV: no clip of class id 3 (ids must be 0..9)"). */
int dataset_read_esc50(const char *dir, dataset_list *L, struct util_err *err);

/* UrbanSound8K: DIR/metadata/UrbanSound8K.csv with the columns slice_file_name, fold, classID and
 * class; audio in DIR/audio/foldFOLD/SLICE_FILE_NAME.  Errors as dataset_read_esc50. */
int dataset_read_us8k(const char *dir, dataset_list *L, struct util_err *err);

/* ESC-10 and the 2015 ESC-50 release: folders "NNN - Class" (others are passed over) holding
 * FOLD-ID-TAKE.ogg|.wav|.flac; the folders sorted by name are labels 0, 1, ...  0, or -1 with err
 * "FILE: file name does not start with '<fold>-'", "DIR: no 'NNN - Class' folders with audio files"
 * or a directory that cannot be listed. */
int dataset_read_esc10(const char *dir, dataset_list *L, struct util_err *err);

/* GTZAN: DIR/genres/GENRE/ folders of .wav and .au files (or genres_original/, or the genre folders
 * in DIR itself); the genres sorted by name are labels 0, 1, ..., the files sorted by name, fold =
 * index within the genre % 10 + 1.  0, or -1 with err "GENREDIR: no .wav or .au files", "ROOT: no genre folders" or a
 * directory that cannot be listed. */
int dataset_read_gtzan(const char *dir, dataset_list *L, struct util_err *err);

#endif
