/* audio.h: decode any file libsox reads (WAV, FLAC, Ogg Vorbis, AIFF, AU, MP3, ...) to mono float
 * samples at a chosen rate, and fit clips to a fixed duration.  Channels are averaged (SoX's
 * `channels 1`), resampling is SoX's `rate` effect; samples are scaled so full scale is [-1, 1). */
#ifndef EARSIGHT_AUDIO_H
#define EARSIGHT_AUDIO_H

#include <stdint.h>

#include "util.h"

enum audio_fit {
    AUDIO_FIT_NONE = 0, /* keep the decoded length */
    AUDIO_FIT_PAD,      /* short: append zeros; long: keep the first samples */
    AUDIO_FIT_CROP,     /* long: keep the centre; short: append zeros */
    AUDIO_FIT_LOOP      /* short: repeat from the start; long: keep the first samples */
};

typedef struct {
    int rate;               /* output rate in Hz (> 0) */
    char quality;           /* SoX rate quality: 'q', 'l', 'm', 'h' (default) or 'v' */
    int64_t stop_after;     /* stop decoding after this many output samples (0: read everything) */
    int64_t max_samples;    /* a clip longer than this is an error (0: no limit) */
} audio_opts;

/* Defaults: 22050 Hz, quality 'h', no early stop, one hour at the rate as the limit. */
void audio_opts_default(audio_opts *o);

/* Load the format handlers and route libsox messages away from stderr.  Call once in the main
 * thread before any audio_load.  0 or -1.  audio_done releases libsox. */
int audio_init(struct util_err *err);
void audio_done(void);

/* Decode path ("-" is standard input) into *x (a buffer of *cap floats that is grown with realloc
 * as needed; the caller frees it), *n samples.  Thread-safe: file opening is serialised inside,
 * decoding and resampling run in parallel.  A file with no samples is an error.  0 or -1. */
int audio_load(const char *path, const audio_opts *o, float **x, int64_t *cap, int64_t *n,
               struct util_err *err);

/* Fit *n samples in *x to exactly target samples (target > 0) with mode; may grow *x.  0 or -1. */
int audio_fit(float **x, int64_t *cap, int64_t *n, int64_t target, enum audio_fit mode,
              struct util_err *err);

/* "none", "pad", "crop", "loop" <-> enum; audio_fit_from_name returns -1 for an unknown name. */
const char *audio_fit_name(enum audio_fit mode);
int audio_fit_from_name(const char *s);

/* Human-readable description of the resampler for attributes and --help ("sox rate -h"). */
const char *audio_quality_desc(char quality);

#endif
