/* mel.c: STFT (FFTW3 single precision, plans made once and executed on each thread's own arrays),
 * sparse mel filterbank, ln / dB, and PIL-compatible bilinear resizing along time.  Conventions
 * follow torchaudio 0.13 (MelSpectrogram / melscale_fbanks, which the references were made with):
 * bin frequencies linspace(0, rate // 2, n_fft // 2 + 1), default fmax rate // 2, window offset
 * (n_fft - win) // 2, centre padding n_fft // 2 on both sides; dB follows librosa's power_to_db. */
#include "mel.h"

#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <fftw3.h>

/* Frames transformed per FFTW call: a "many" plan lets FFTW vectorise across frames. */
#define BATCH 16

struct band {
    int start, len;   /* first FFT bin and number of bins with non-zero weight */
    int off;          /* index of the first weight in plan->wts */
};

struct mel_plan {
    mel_params p;
    int n_bins;                       /* n_fft / 2 + 1 */
    int ld_in, ld_out;                /* frame strides (floats, complex) keeping frames 64-byte aligned */
    float *win[MEL_MAX_CHANNELS];     /* win[c] samples of the periodic Hann window */
    int woff[MEL_MAX_CHANNELS];       /* (n_fft - win) / 2: where the window sits in the frame */
    fftwf_plan one, many;             /* one frame; BATCH frames */
    struct band *bands;               /* n_mels */
    float *wts;
};

struct mel_work {
    float *blk;                       /* BATCH x ld_in, fftwf_malloc'd */
    fftwf_complex *spec;              /* BATCH x ld_out */
    float *pw;                        /* n_bins x BATCH: bin-major, so bands sum 16 frames at once */
    float *xp;                        /* padded signal */
    int64_t xp_cap;
    float *tmp;                       /* one channel before resizing: n_mels x frames */
    int64_t tmp_cap;
};

/* ---- names, presets, parsing ---- */
const char *mel_scale_name(enum mel_scale s) { return s == MEL_SCALE_HTK ? "htk" : "slaney"; }
const char *mel_norm_name(enum mel_norm s) { return s == MEL_NORM_NONE ? "none" : "slaney"; }
const char *mel_center_name(enum mel_center s)
{
    return s == MEL_CENTER_REFLECT ? "reflect" : s == MEL_CENTER_ZERO ? "zero" : "none";
}
const char *mel_log_name(enum mel_log s) { return s == MEL_LOG_LN ? "ln" : s == MEL_LOG_DB ? "db" : "none"; }

void mel_params_default(mel_params *p)
{
    memset(p, 0, sizeof *p);
    p->rate = 22050;
    p->n_fft = 2048;
    p->n_mels = 128;
    p->n_chan = 1;
    p->win[0] = 2048;
    p->hop[0] = 512;
    p->fmin = 0;
    p->fmax = 0;
    p->scale = MEL_SCALE_SLANEY;
    p->norm = MEL_NORM_SLANEY;
    p->center = MEL_CENTER_ZERO;
    p->power = 2;
    p->log = MEL_LOG_DB;
    p->eps = 1e-6;
    p->ref = 1.0;
    p->amin = 1e-10;
    p->top_db = 80;
    p->width = 0;
    p->antialias = 1;
}

const char *const mel_preset_names[] = { "esc50", "us8k", "gtzan", "librosa", NULL };

int mel_preset(const char *name, mel_params *p, double *duration)
{
    mel_params_default(p);
    *duration = 0;
    if (!strcmp(name, "librosa")) return 0;
    int rate, n_fft, width;
    double dur;
    if (!strcmp(name, "esc50")) rate = 44100, n_fft = 4410, width = 250, dur = 5;
    else if (!strcmp(name, "us8k")) rate = 22050, n_fft = 2205, width = 250, dur = 4;
    else if (!strcmp(name, "gtzan")) rate = 22050, n_fft = 2205, width = 1500, dur = 30;
    else return -1;
    /* Palanisamy et al., "Rethinking CNN models for audio classification": torchaudio
     * MelSpectrogram defaults (HTK, no norm, reflect), log(x + 1e-6), PIL resize to width. */
    p->rate = rate;
    p->n_fft = n_fft;
    p->n_mels = 128;
    p->n_chan = 3;
    static const double w_ms[3] = { 25, 50, 100 }, h_ms[3] = { 10, 25, 50 };
    for (int c = 0; c < 3; c++) {
        p->win_ms[c] = w_ms[c];
        p->hop_ms[c] = h_ms[c];
        p->win[c] = mel_ms_to_samples(w_ms[c], rate);
        p->hop[c] = mel_ms_to_samples(h_ms[c], rate);
    }
    p->scale = MEL_SCALE_HTK;
    p->norm = MEL_NORM_NONE;
    p->center = MEL_CENTER_REFLECT;
    p->log = MEL_LOG_LN;
    p->eps = 1e-6;
    p->width = width;
    p->antialias = 1;
    *duration = dur;
    return 0;
}

int mel_ms_to_samples(double ms, int rate)
{
    /* ms * rate first, so integer ms give an exact product and 1102.5 stays 1102.5; rint rounds
     * half to even in the default rounding mode, as Python's round does. */
    return (int)rint(ms * rate / 1000.0);
}

int mel_parse_channels_ms(const char *s, mel_params *p, struct util_err *err)
{
    int n = 0;
    const char *q = s;
    while (*q) {
        if (n == MEL_MAX_CHANNELS) return util_err_set(err, "more than %d window:hop pairs", MEL_MAX_CHANNELS);
        char *end;
        double w = strtod(q, &end);
        if (end == q || *end != ':') return util_err_set(err, "'%s': expected WIN:HOP[,WIN:HOP]... in ms", s);
        q = end + 1;
        double h = strtod(q, &end);
        if (end == q || (*end && *end != ',')) return util_err_set(err, "'%s': expected WIN:HOP[,WIN:HOP]... in ms", s);
        if (!(w > 0 && w <= 1e6 && h > 0 && h <= 1e6)) return util_err_set(err, "'%s': window and hop must be positive", s);
        p->win_ms[n] = w;
        p->hop_ms[n] = h;
        n++;
        q = *end ? end + 1 : end;
        if (*end && !*q) return util_err_set(err, "'%s': trailing comma", s);
    }
    if (n == 0) return util_err_set(err, "empty channel list");
    p->n_chan = n;
    return 0;
}

/* ---- mel scale and filterbank ---- */
double mel_hz_to_mel(double hz, enum mel_scale s)
{
    if (s == MEL_SCALE_HTK) return 2595.0 * log10(1.0 + hz / 700.0);
    /* Slaney (Auditory Toolbox): linear below 1 kHz, logarithmic above. */
    const double f_sp = 200.0 / 3, min_log_hz = 1000.0, min_log_mel = min_log_hz / f_sp;
    const double logstep = log(6.4) / 27.0;
    if (hz >= min_log_hz) return min_log_mel + log(hz / min_log_hz) / logstep;
    return hz / f_sp;
}

double mel_mel_to_hz(double mel, enum mel_scale s)
{
    if (s == MEL_SCALE_HTK) return 700.0 * (pow(10.0, mel / 2595.0) - 1.0);
    const double f_sp = 200.0 / 3, min_log_hz = 1000.0, min_log_mel = min_log_hz / f_sp;
    const double logstep = log(6.4) / 27.0;
    if (mel >= min_log_mel) return min_log_hz * exp(logstep * (mel - min_log_mel));
    return f_sp * mel;
}

static double resolved_fmax(const mel_params *p) { return p->fmax > 0 ? p->fmax : (double)(p->rate / 2); }

int mel_filterbank(const mel_params *p, float *fb, double *fpts, struct util_err *err)
{
    int n_bins = p->n_fft / 2 + 1, M = p->n_mels;
    double *f = malloc((size_t)(M + 2) * sizeof(double));
    if (!f) return util_err_set(err, "out of memory");
    double m_lo = mel_hz_to_mel(p->fmin, p->scale), m_hi = mel_hz_to_mel(resolved_fmax(p), p->scale);
    for (int i = 0; i < M + 2; i++) f[i] = mel_mel_to_hz(m_lo + (m_hi - m_lo) * i / (M + 1), p->scale);
    /* torchaudio: all_freqs = linspace(0, sample_rate // 2, n_freqs). */
    double top = (double)(p->rate / 2);
    for (int m = 0; m < M; m++) {
        double lo = f[m], c = f[m + 1], hi = f[m + 2];
        double enorm = p->norm == MEL_NORM_SLANEY ? 2.0 / (hi - lo) : 1.0;
        for (int k = 0; k < n_bins; k++) {
            double hz = n_bins > 1 ? top * k / (n_bins - 1) : 0;
            double down = (hz - lo) / (c - lo), up = (hi - hz) / (hi - c);
            double w = down < up ? down : up;
            fb[(size_t)m * n_bins + k] = (float)((w > 0 ? w : 0) * enorm);
        }
    }
    if (fpts) memcpy(fpts, f, (size_t)(M + 2) * sizeof(double));
    free(f);
    return 0;
}

/* ---- resize (PIL's ImagingResample with the bilinear filter, horizontal pass, mode F) ---- */
static double bilinear(double x)
{
    if (x < 0) x = -x;
    return x < 1 ? 1 - x : 0;
}

int mel_resize(float *out, const float *in, int rows, int in_w, int out_w, int antialias)
{
    if (in_w == out_w) {   /* PIL skips a pass whose size does not change */
        memcpy(out, in, (size_t)rows * in_w * sizeof(float));
        return 0;
    }
    double scale = (double)in_w / out_w, fscale = scale;
    if (fscale < 1 || !antialias) fscale = 1;
    double support = 1.0 * fscale;
    int ksize = (int)ceil(support) * 2 + 1;
    double kbuf[64], *k = ksize <= 64 ? kbuf : malloc((size_t)ksize * sizeof(double));
    if (!k) return -1;
    for (int xx = 0; xx < out_w; xx++) {
        double center = (xx + 0.5) * scale, ww = 0, ss = 1.0 / fscale;
        int xmin = (int)(center - support + 0.5);
        if (xmin < 0) xmin = 0;
        int xmax = (int)(center + support + 0.5);
        if (xmax > in_w) xmax = in_w;
        xmax -= xmin;
        for (int x = 0; x < xmax; x++) {
            double w = bilinear((x + xmin - center + 0.5) * ss);
            k[x] = w;
            ww += w;
        }
        for (int x = 0; x < xmax; x++)
            if (ww != 0) k[x] /= ww;
        for (int r = 0; r < rows; r++) {
            const float *src = in + (size_t)r * in_w + xmin;
            double acc = 0;
            for (int x = 0; x < xmax; x++) acc += src[x] * k[x];
            out[(size_t)r * out_w + xx] = (float)acc;
        }
    }
    if (k != kbuf) free(k);
    return 0;
}

/* ---- plans ---- */
static int check_params(const mel_params *p, struct util_err *err)
{
    if (p->rate < 1 || p->rate > 10000000) return util_err_set(err, "rate %d Hz out of range", p->rate);
    if (p->n_fft < 2 || p->n_fft > (1 << 22)) return util_err_set(err, "n_fft %d out of range 2..4194304", p->n_fft);
    if (p->n_mels < 1 || p->n_mels > 8192) return util_err_set(err, "n_mels %d out of range 1..8192", p->n_mels);
    if (p->n_chan < 1 || p->n_chan > MEL_MAX_CHANNELS) return util_err_set(err, "%d channels out of range", p->n_chan);
    for (int c = 0; c < p->n_chan; c++) {
        if (p->win[c] < 1 || p->win[c] > p->n_fft)
            return util_err_set(err, "window of %d samples must be between 1 and n_fft (%d)", p->win[c], p->n_fft);
        if (p->hop[c] < 1) return util_err_set(err, "hop of %d samples must be at least 1", p->hop[c]);
    }
    double fmax = resolved_fmax(p);
    if (!(p->fmin >= 0 && p->fmin < fmax && fmax <= p->rate / 2.0))
        return util_err_set(err, "need 0 <= fmin (%g) < fmax (%g) <= rate/2 (%g)", p->fmin, fmax, p->rate / 2.0);
    /* |X| <= n_fft for samples in [-1, 1]: (2^22)^4 stays far below FLT_MAX */
    if (!(p->power > 0 && p->power <= 4)) return util_err_set(err, "power %g out of range (0, 4]", p->power);
    if (p->log == MEL_LOG_LN && !(p->eps >= FLT_MIN && p->eps <= 1e30))
        return util_err_set(err, "eps %g out of range [%g, 1e30]", p->eps, FLT_MIN);
    if (p->log == MEL_LOG_DB && !(p->amin >= FLT_MIN && p->amin <= 1e30))
        return util_err_set(err, "amin %g out of range [%g, 1e30]", p->amin, FLT_MIN);
    if (p->width < 0 || p->width > 1000000) return util_err_set(err, "width %d out of range", p->width);
    return 0;
}

int mel_params_resolve(mel_params *p, struct util_err *err)
{
    if (p->n_chan < 1 || p->n_chan > MEL_MAX_CHANNELS) return util_err_set(err, "%d channels out of range", p->n_chan);
    for (int c = 0; c < p->n_chan; c++) {
        if (p->win_ms[c] > 0) p->win[c] = mel_ms_to_samples(p->win_ms[c], p->rate);
        if (p->hop_ms[c] > 0) p->hop[c] = mel_ms_to_samples(p->hop_ms[c], p->rate);
    }
    if (check_params(p, err) < 0) return -1;
    p->fmax = resolved_fmax(p);
    return 0;
}

void mel_plan_free(mel_plan *m)
{
    if (!m) return;
    for (int c = 0; c < MEL_MAX_CHANNELS; c++) free(m->win[c]);
    if (m->one) fftwf_destroy_plan(m->one);
    if (m->many) fftwf_destroy_plan(m->many);
    free(m->bands);
    free(m->wts);
    free(m);
}

mel_plan *mel_plan_create(const mel_params *pin, struct util_err *err)
{
    mel_plan *m = calloc(1, sizeof *m);
    float *fb = NULL, *blk = NULL;
    fftwf_complex *spec = NULL;
    if (!m) {
        util_err_set(err, "out of memory");
        return NULL;
    }
    m->p = *pin;
    mel_params *p = &m->p;
    if (mel_params_resolve(p, err) < 0) goto fail;
    m->n_bins = p->n_fft / 2 + 1;
    m->ld_in = (p->n_fft + 15) & ~15;
    m->ld_out = (m->n_bins + 7) & ~7;
    for (int c = 0; c < p->n_chan; c++) {
        int W = p->win[c];
        m->win[c] = malloc((size_t)W * sizeof(float));
        if (!m->win[c]) goto oom;
        /* torch.hann_window(W, periodic=True); a one-sample window is [1] there too. */
        for (int i = 0; i < W; i++) m->win[c][i] = W == 1 ? 1.0f : (float)(0.5 - 0.5 * cos(2.0 * M_PI * i / W));
        m->woff[c] = (p->n_fft - W) / 2;
    }
    /* Sparse filterbank: each band keeps only its contiguous run of non-zero weights. */
    size_t nb = (size_t)m->n_bins;
    fb = malloc((size_t)p->n_mels * nb * sizeof(float));
    m->bands = calloc((size_t)p->n_mels, sizeof *m->bands);
    if (!fb || !m->bands) goto oom;
    if (mel_filterbank(p, fb, NULL, err) < 0) goto fail;
    size_t total = 0;
    for (int b = 0; b < p->n_mels; b++) {
        const float *row = fb + b * nb;
        int lo = 0, hi = (int)nb - 1;
        while (lo <= hi && row[lo] == 0) lo++;
        while (hi >= lo && row[hi] == 0) hi--;
        m->bands[b].start = lo;
        m->bands[b].len = hi >= lo ? hi - lo + 1 : 0;
        m->bands[b].off = (int)total;
        total += (size_t)m->bands[b].len;
    }
    m->wts = malloc((total ? total : 1) * sizeof(float));
    if (!m->wts) goto oom;
    for (int b = 0; b < p->n_mels; b++)
        memcpy(m->wts + m->bands[b].off, fb + b * nb + m->bands[b].start, (size_t)m->bands[b].len * sizeof(float));
    free(fb);
    fb = NULL;

    /* Plans on scratch arrays laid out exactly as every mel_work's (same strides, 64-byte aligned
     * frames), so fftwf_execute_dft_r2c may run them on each thread's own arrays.  FFTW_ESTIMATE
     * chooses without timing, so the same machine always gets the same plan and the same bits. */
    blk = fftwf_malloc((size_t)BATCH * m->ld_in * sizeof(float));
    spec = fftwf_malloc((size_t)BATCH * m->ld_out * sizeof(fftwf_complex));
    if (!blk || !spec) goto oom;
    int n = p->n_fft;
    m->one = fftwf_plan_dft_r2c_1d(n, blk, spec, FFTW_ESTIMATE);
    m->many = fftwf_plan_many_dft_r2c(1, &n, BATCH, blk, NULL, 1, m->ld_in, spec, NULL, 1, m->ld_out, FFTW_ESTIMATE);
    fftwf_free(blk);
    fftwf_free(spec);
    if (!m->one || !m->many) {
        util_err_set(err, "FFTW could not plan a transform of %d points", n);
        goto fail;
    }
    return m;
oom:
    util_err_set(err, "out of memory");
fail:
    free(fb);
    mel_plan_free(m);
    return NULL;
}

const mel_params *mel_plan_params(const mel_plan *m) { return &m->p; }

int64_t mel_frames(const mel_plan *m, int ch, int64_t n)
{
    const mel_params *p = &m->p;
    if (p->center == MEL_CENTER_NONE) return n >= p->n_fft ? 1 + (n - p->n_fft) / p->hop[ch] : 0;
    int64_t pad = p->n_fft / 2;
    return 1 + (n + 2 * pad - p->n_fft) / p->hop[ch];
}

int mel_out_shape(const mel_plan *m, int64_t n, int64_t shape[3], struct util_err *err)
{
    const mel_params *p = &m->p;
    int64_t t0 = mel_frames(m, 0, n);
    for (int c = 0; c < p->n_chan; c++) {
        int64_t t = mel_frames(m, c, n);
        if (t < 1)
            return util_err_set(err, "%lld samples are fewer than n_fft (%d) without centring", (long long)n, p->n_fft);
        if (t != t0 && p->width == 0)
            return util_err_set(err, "channels have %lld and %lld frames: a width is needed", (long long)t0, (long long)t);
    }
    shape[0] = p->n_chan;
    shape[1] = p->n_mels;
    shape[2] = p->width ? p->width : t0;
    return 0;
}

/* ---- per-thread work ---- */
void mel_work_free(mel_work *w)
{
    if (!w) return;
    fftwf_free(w->blk);
    fftwf_free(w->spec);
    free(w->pw);
    free(w->xp);
    free(w->tmp);
    free(w);
}

mel_work *mel_work_create(const mel_plan *m, struct util_err *err)
{
    mel_work *w = calloc(1, sizeof *w);
    if (!w) goto oom;
    w->blk = fftwf_malloc((size_t)BATCH * m->ld_in * sizeof(float));
    w->spec = fftwf_malloc((size_t)BATCH * m->ld_out * sizeof(fftwf_complex));
    w->pw = calloc((size_t)m->n_bins * BATCH, sizeof(float));
    if (!w->blk || !w->spec || !w->pw) goto oom;
    memset(w->blk, 0, (size_t)BATCH * m->ld_in * sizeof(float));
    return w;
oom:
    util_err_set(err, "out of memory");
    mel_work_free(w);
    return NULL;
}

static int grow(float **buf, int64_t *cap, int64_t need, struct util_err *err)
{
    if (need <= *cap) return 0;
    float *nb = realloc(*buf, (size_t)need * sizeof(float));
    if (!nb) return util_err_set(err, "out of memory (%lld floats)", (long long)need);
    *buf = nb;
    *cap = need;
    return 0;
}

/* Index into x (n samples) of position i of the reflect-padded signal (numpy/torch "reflect":
 * the edge sample is not repeated), folding as often as needed for pads longer than the clip. */
static int64_t reflect_index(int64_t i, int64_t n)
{
    if (n == 1) return 0;
    int64_t period = 2 * (n - 1);
    if (i < 0) i = -i;
    i %= period;
    return i < n ? i : period - i;
}

/* One channel: spectrogram (n_mels x T) into dst, before the log. */
static void stft_mel(const mel_plan *m, mel_work *w, int c, const float *xp, int64_t T, float *dst)
{
    const mel_params *p = &m->p;
    const int W = p->win[c], off = m->woff[c], hop = p->hop[c], nf = p->n_fft, nb = m->n_bins;
    const float *win = m->win[c];
    for (int64_t t0 = 0; t0 < T; t0 += BATCH) {
        int cnt = T - t0 < BATCH ? (int)(T - t0) : BATCH;
        for (int b = 0; b < cnt; b++) {
            float *fr = w->blk + (size_t)b * m->ld_in;
            const float *src = xp + (t0 + b) * hop + off;
            /* Only the window's span is non-zero; the rest is cleared because another channel
             * with a longer window may have written there. */
            memset(fr, 0, (size_t)off * sizeof(float));
#pragma omp simd
            for (int i = 0; i < W; i++) fr[off + i] = src[i] * win[i];
            memset(fr + off + W, 0, (size_t)(nf - off - W) * sizeof(float));
        }
        if (cnt == BATCH) {
            fftwf_execute_dft_r2c(m->many, w->blk, w->spec);
        } else {
            for (int b = 0; b < cnt; b++)
                fftwf_execute_dft_r2c(m->one, w->blk + (size_t)b * m->ld_in, w->spec + (size_t)b * m->ld_out);
        }
        /* |X|^power, stored bin-major (pw[k * BATCH + b]) */
        float *pw = w->pw;
        for (int b = 0; b < cnt; b++) {
            const fftwf_complex *s = w->spec + (size_t)b * m->ld_out;
            if (p->power == 2) {
                for (int k = 0; k < nb; k++) pw[(size_t)k * BATCH + b] = s[k][0] * s[k][0] + s[k][1] * s[k][1];
            } else if (p->power == 1) {
                for (int k = 0; k < nb; k++) pw[(size_t)k * BATCH + b] = sqrtf(s[k][0] * s[k][0] + s[k][1] * s[k][1]);
            } else {
                float e = (float)(p->power / 2);
                for (int k = 0; k < nb; k++) pw[(size_t)k * BATCH + b] = powf(s[k][0] * s[k][0] + s[k][1] * s[k][1], e);
            }
        }
        /* Each band sums its bins in order for BATCH frames side by side: vector lanes are
         * frames, so every value is summed exactly as a scalar loop would (lanes past cnt hold
         * stale frames and are not stored). */
        for (int j = 0; j < p->n_mels; j++) {
            const struct band *bd = &m->bands[j];
            const float *wt = m->wts + bd->off, *pv = pw + (size_t)bd->start * BATCH;
            float acc[BATCH] = { 0 };
            for (int k = 0; k < bd->len; k++) {
                const float wk = wt[k], *pk = pv + (size_t)k * BATCH;
#pragma omp simd
                for (int b = 0; b < BATCH; b++) acc[b] += wk * pk[b];
            }
            float *row = dst + (size_t)j * T + t0;
            for (int b = 0; b < cnt; b++) row[b] = acc[b];
        }
    }
}

/* Natural log of a positive normal float, written so that the compiler vectorises it (bit
 * operations and selects, no branches): the exponent from the bits, the mantissa moved to
 * [sqrt(1/2), sqrt(2)), then Cephes' logf polynomial (max relative error about 1e-7, as logf).
 * Scalar libm calls were a tenth of the whole time. */
static inline float ln_poly(float x)
{
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    uint32_t um = u & 0x007fffffu;
    int big = um > 0x3504f3u;                 /* mantissa above sqrt(2): halve it */
    float e = (float)((int)(u >> 23) - 127 + big);
    uint32_t mb = um | (0x3f800000u - ((uint32_t)big << 23));
    float mnt;
    memcpy(&mnt, &mb, sizeof mnt);
    float f = mnt - 1.0f, z = f * f;
    float y = 7.0376836292E-2f;
    y = y * f - 1.1514610310E-1f;
    y = y * f + 1.1676998740E-1f;
    y = y * f - 1.2420140846E-1f;
    y = y * f + 1.4249322787E-1f;
    y = y * f - 1.6668057665E-1f;
    y = y * f + 2.0000714765E-1f;
    y = y * f - 2.4999993993E-1f;
    y = y * f + 3.3333331174E-1f;
    y = y * f * z;
    y += -2.12194440e-4f * e;
    y += -0.5f * z;
    return f + y + 0.693359375f * e;
}

/* Spectrogram values are >= 0 and finite (check_params bounds the power so that |X|^power cannot
 * overflow), and eps, amin >= FLT_MIN, so ln_poly always gets a positive normal float. */
static void apply_log(const mel_params *p, float *v, int64_t n)
{
    if (p->log == MEL_LOG_LN) {
        const float eps = (float)p->eps;
#pragma omp simd
        for (int64_t i = 0; i < n; i++) v[i] = ln_poly(v[i] + eps);
    } else if (p->log == MEL_LOG_DB) {
        /* librosa.power_to_db: 10 log10(max(amin, S)) - 10 log10(max(amin, ref)), then
         * max(., peak - top_db).  ref <= 0 stands for ref=np.max. */
        const float amin = (float)p->amin;
        double ref = p->ref;
        if (ref <= 0) {
            float mx = 0;
            for (int64_t i = 0; i < n; i++) mx = v[i] > mx ? v[i] : mx;
            ref = mx;
        }
        const float off = (float)(10.0 * log10(ref > p->amin ? ref : p->amin));
        const float k10 = (float)(10.0 / M_LN10);
        uint32_t ab;
        memcpy(&ab, &amin, sizeof ab);
#pragma omp simd
        for (int64_t i = 0; i < n; i++) {
            uint32_t vb;   /* max(v, amin) on the bits: both are non-negative floats */
            memcpy(&vb, &v[i], sizeof vb);
            vb = vb > ab ? vb : ab;
            float x;
            memcpy(&x, &vb, sizeof x);
            v[i] = k10 * ln_poly(x) - off;
        }
        if (p->top_db > 0) {
            float peak = v[0];
            for (int64_t i = 1; i < n; i++) peak = v[i] > peak ? v[i] : peak;
            const float floor_ = peak - (float)p->top_db;
            for (int64_t i = 0; i < n; i++) v[i] = v[i] < floor_ ? floor_ : v[i];
        }
    }
}

int mel_compute(const mel_plan *m, mel_work *w, const float *x, int64_t n, float *out, int64_t out_cap,
                struct util_err *err)
{
    const mel_params *p = &m->p;
    int64_t shape[3];
    if (n < 1) return util_err_set(err, "no samples");
    if (mel_out_shape(m, n, shape, err) < 0) return -1;
    int64_t per = shape[1] * shape[2];
    if (out_cap < shape[0] * per) return util_err_set(err, "output buffer too small");
    int64_t pad = p->center == MEL_CENTER_NONE ? 0 : p->n_fft / 2;
    if (grow(&w->xp, &w->xp_cap, n + 2 * pad, err) < 0) return -1;
    memcpy(w->xp + pad, x, (size_t)n * sizeof(float));
    for (int64_t i = 0; i < pad; i++) {
        if (p->center == MEL_CENTER_REFLECT) {
            w->xp[pad - 1 - i] = x[reflect_index(-(i + 1), n)];
            w->xp[pad + n + i] = x[reflect_index(n + i, n)];
        } else {
            w->xp[pad - 1 - i] = 0;
            w->xp[pad + n + i] = 0;
        }
    }
    for (int c = 0; c < p->n_chan; c++) {
        int64_t T = mel_frames(m, c, n);
        float *dst = out + c * per;
        if (p->width && T != p->width) {
            if (grow(&w->tmp, &w->tmp_cap, (int64_t)p->n_mels * T, err) < 0) return -1;
            dst = w->tmp;
        }
        stft_mel(m, w, c, w->xp, T, dst);
        apply_log(p, dst, (int64_t)p->n_mels * T);
        if (dst == w->tmp && mel_resize(out + c * per, w->tmp, p->n_mels, (int)T, p->width, p->antialias) < 0)
            return util_err_set(err, "out of memory");
    }
    return 0;
}
