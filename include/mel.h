/* mel.h: log-mel spectrograms of mono float audio, as torchaudio.transforms.MelSpectrogram and
 * librosa compute them: centred frames (reflect or zero padding), a periodic Hann window of `win`
 * samples centred in n_fft, FFTW3 single-precision r2c, power spectrum, a sparse triangular mel
 * filterbank (HTK or Slaney scale, optional Slaney area normalisation), then ln(x + eps) or
 * librosa's power_to_db.  Several window:hop pairs give several channels, each resized along time
 * to a common width like PIL's bilinear resize (torchvision Resize on a PIL image). */
#ifndef EARSIGHT_MEL_H
#define EARSIGHT_MEL_H

#include <stdint.h>

#include "util.h"

#define MEL_MAX_CHANNELS 8

enum mel_scale { MEL_SCALE_HTK = 0, MEL_SCALE_SLANEY = 1 };
enum mel_norm { MEL_NORM_NONE = 0, MEL_NORM_SLANEY = 1 };
enum mel_center { MEL_CENTER_REFLECT = 0, MEL_CENTER_ZERO = 1, MEL_CENTER_NONE = 2 };
enum mel_log { MEL_LOG_LN = 0, MEL_LOG_DB = 1, MEL_LOG_NONE = 2 };

typedef struct {
    int rate;                          /* sample rate in Hz */
    int n_fft;                         /* FFT length, any size >= 2 */
    int n_mels;
    int n_chan;                        /* window:hop pairs (1..MEL_MAX_CHANNELS) */
    int win[MEL_MAX_CHANNELS];         /* window length in samples (<= n_fft) */
    int hop[MEL_MAX_CHANNELS];         /* hop in samples */
    double win_ms[MEL_MAX_CHANNELS];   /* when > 0: win/hop are derived from these at plan time */
    double hop_ms[MEL_MAX_CHANNELS];
    double fmin, fmax;                 /* Hz; fmax <= 0 means rate / 2 */
    enum mel_scale scale;
    enum mel_norm norm;
    enum mel_center center;
    double power;                      /* 2: power spectrum, 1: magnitude */
    enum mel_log log;
    double eps;                        /* ln: log(x + eps) */
    double ref;                        /* db: 10 log10(x / ref); ref <= 0 means the maximum */
    double amin;                       /* db: x is clamped to at least amin (and ref too) */
    double top_db;                     /* db: floor at max - top_db; <= 0 for no floor */
    int width;                         /* resize every channel to this many frames (0: keep) */
    int antialias;                     /* 1: PIL-style (triangle widened when shrinking) */
} mel_params;

/* librosa's defaults: 22050 Hz, n_fft 2048, hop 512, 128 mels, Slaney scale and norm, dB, zero
 * padding (librosa >= 0.10). */
void mel_params_default(mel_params *p);

/* Named settings: "esc50", "us8k", "gtzan" (Palanisamy et al.: 3 channels 25:10, 50:25, 100:50 ms,
 * HTK, no norm, ln(x + 1e-6), reflect padding, width 250/250/1500) and "librosa".  Sets p from the
 * defaults and *duration (seconds, 0 = none).  0, or -1 for an unknown name. */
int mel_preset(const char *name, mel_params *p, double *duration);
/* The preset names, NULL-terminated. */
extern const char *const mel_preset_names[];

/* Parse "25:10,50:25,100:50" (window:hop in ms) into p->win_ms/hop_ms.  0 or -1 (err says why). */
int mel_parse_channels_ms(const char *s, mel_params *p, struct util_err *err);
/* Samples for ms at rate, rounded half to even like Python's round (1102.5 -> 1102). */
int mel_ms_to_samples(double ms, int rate);

/* Mel scale conversions. */
double mel_hz_to_mel(double hz, enum mel_scale s);
double mel_mel_to_hz(double mel, enum mel_scale s);

/* Dense filterbank (n_mels x (n_fft/2 + 1), row-major) for p, computed in double as torchaudio's
 * melscale_fbanks and librosa's filters.mel do.  fpts (n_mels + 2 band edges in Hz) may be NULL.
 * 0 or -1. */
int mel_filterbank(const mel_params *p, float *fb, double *fpts, struct util_err *err);

/* Resize each of rows rows from in_w to out_w columns with PIL's bilinear filter (support widened
 * by in_w/out_w when shrinking if antialias; plain bilinear otherwise), accumulating in double.
 * 0, or -1 when out of memory. */
int mel_resize(float *out, const float *in, int rows, int in_w, int out_w, int antialias);

/* Convert ms to samples at p->rate, resolve fmax, check every field.  0, or -1 with err naming
 * the bad value (a usage error for tools: nothing here depends on the input). */
int mel_params_resolve(mel_params *p, struct util_err *err);

/* ---- plans: built once, shared read-only by all threads ---- */
typedef struct mel_plan mel_plan;
/* Check p, resolve ms to samples, build windows, filterbank and FFTW plans.  Not thread-safe
 * (FFTW's planner is not): call it before starting threads.  NULL on failure. */
mel_plan *mel_plan_create(const mel_params *p, struct util_err *err);
void mel_plan_free(mel_plan *m);
/* The resolved parameters (win/hop in samples filled in, fmax resolved). */
const mel_params *mel_plan_params(const mel_plan *m);
/* Frames of channel ch for a clip of n samples (0 if the clip is too short without centring). */
int64_t mel_frames(const mel_plan *m, int ch, int64_t n);
/* Output shape (channels, n_mels, frames or width) for n samples.  0 or -1 (err says why: too
 * short, or channels of different lengths without a width). */
int mel_out_shape(const mel_plan *m, int64_t n, int64_t shape[3], struct util_err *err);

/* Per-thread scratch space; grows to the longest clip seen. */
typedef struct mel_work mel_work;
mel_work *mel_work_create(const mel_plan *m, struct util_err *err);
void mel_work_free(mel_work *w);

/* Spectrogram of x (n samples) into out (shape from mel_out_shape, out_cap floats).  Thread-safe
 * for distinct w.  0 or -1. */
int mel_compute(const mel_plan *m, mel_work *w, const float *x, int64_t n, float *out, int64_t out_cap,
                struct util_err *err);

/* Names for attributes and options. */
const char *mel_scale_name(enum mel_scale s);
const char *mel_norm_name(enum mel_norm s);
const char *mel_center_name(enum mel_center s);
const char *mel_log_name(enum mel_log s);

#endif
