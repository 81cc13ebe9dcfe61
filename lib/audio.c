/* audio.c: libsox decoding to mono float.  A file goes through a SoX effects chain:
 * input -> `channels 1` (average of the channels, only when there are several) -> `rate -h`
 * (only when the file's rate differs) -> a sink that converts to float (sample / 2^31, as
 * torchaudio does), so the samples agree with torchaudio.load + mean over channels.  A mono file
 * at the wanted rate needs neither effect and is read with sox_read straight into the sink. */
#include "audio.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <sox.h>

/* libsox keeps global state in its format detection, plug-in loading and effect tables, so
 * opening, closing and setting up effects chains are serialised; sox_read and the flow of the
 * effects run in parallel (libsox is built with OpenMP locks around the FFT cache that the rate
 * effect shares). */
static pthread_mutex_t open_lock = PTHREAD_MUTEX_INITIALIZER;
static int sox_ready;

/* libsox reports failures through a message callback; keep the last one per thread so that each
 * thread's error names its own file. */
static _Thread_local char sox_msg[512];

static void on_sox_message(unsigned level, const char *src, const char *fmt, va_list ap)
{
    (void)src;
    if (level > 1) return;   /* warnings (e.g. a short final block) are not errors */
    vsnprintf(sox_msg, sizeof sox_msg, fmt, ap);
}

void audio_opts_default(audio_opts *o)
{
    o->rate = 22050;
    o->quality = 'h';
    o->stop_after = 0;
    o->max_samples = (int64_t)3600 * o->rate;
}

int audio_init(struct util_err *err)
{
    if (sox_ready) return 0;
    sox_globals.output_message_handler = on_sox_message;
    sox_globals.verbosity = 1;
    if (sox_init() != SOX_SUCCESS) return util_err_set(err, "libsox: initialisation failed");
    sox_ready = 1;
    return 0;
}

void audio_done(void)
{
    if (!sox_ready) return;
    sox_quit();
    sox_ready = 0;
}

/* libsox 14.4.2's Ogg Vorbis reader never frees its OggVorbis_File (944 bytes per file opened).
 * LeakSanitizer reads this hook in sanitised builds.  libsox has no frame pointers, so a leak's
 * stack ends in libsox's own allocator: the rule covers memory libsox allocated for itself, not
 * ours.  Weak, so that a program may define its own. */
__attribute__((weak)) const char *__lsan_default_suppressions(void);
__attribute__((weak)) const char *__lsan_default_suppressions(void)
{
    return "leak:lsx_realloc\n";
}
/* ... and quietly: a tool's stderr stays the one line its callers expect. */
__attribute__((weak)) const char *__lsan_default_options(void);
__attribute__((weak)) const char *__lsan_default_options(void) { return "print_suppressions=0"; }

const char *audio_quality_desc(char q)
{
    switch (q) {
    case 'q': return "sox rate -q (quick, cubic interpolation)";
    case 'l': return "sox rate -l (low: 80% bandwidth, 100 dB rejection, linear phase)";
    case 'm': return "sox rate -m (medium: 95% bandwidth, 100 dB rejection, linear phase)";
    case 'h': return "sox rate -h (high: 95% bandwidth, 125 dB rejection, linear phase)";
    case 'v': return "sox rate -v (very high: 95% bandwidth, 175 dB rejection, linear phase)";
    default: return NULL;
    }
}

/* ---- the sink: last effect of the chain, collects float samples ---- */
struct sink {
    float **x;
    int64_t *cap, n;
    int64_t stop_after, max_samples;
    int status;              /* 0 ok, 1 out of memory, 2 too long */
};

static int sink_flow(sox_effect_t *e, const sox_sample_t *ibuf, sox_sample_t *obuf, size_t *isamp,
                     size_t *osamp)
{
    (void)obuf;
    struct sink *s = *(struct sink **)e->priv;
    size_t k = *isamp;
    *osamp = 0;
    if (s->stop_after && s->n + (int64_t)k > s->stop_after) k = (size_t)(s->stop_after - s->n);
    if (s->max_samples && s->n + (int64_t)k > s->max_samples) {
        s->status = 2;
        return SOX_EOF;
    }
    if (s->n + (int64_t)k > *s->cap) {
        int64_t nc = *s->cap ? *s->cap : 65536;
        while (nc < s->n + (int64_t)k) nc *= 2;
        float *nx = realloc(*s->x, (size_t)nc * sizeof(float));
        if (!nx) {
            s->status = 1;
            return SOX_EOF;
        }
        *s->x = nx;
        *s->cap = nc;
    }
    float *dst = *s->x + s->n;
    const float scale = 1.0f / 2147483648.0f;   /* exact: full scale maps to [-1, 1) */
    for (size_t i = 0; i < k; i++) dst[i] = (float)ibuf[i] * scale;
    s->n += (int64_t)k;
    /* Returning EOF from the last effect ends the flow: nothing more is decoded. */
    if (s->stop_after && s->n >= s->stop_after) return SOX_EOF;
    return SOX_SUCCESS;
}

static const sox_effect_handler_t sink_handler = {
    "earsight_sink", NULL, SOX_EFF_MCHAN, NULL, NULL, sink_flow, NULL, NULL, NULL, sizeof(struct sink *)
};

/* Create the named effect with options and append it.  0 or -1. */
static int add_effect(sox_effects_chain_t *chain, const char *name, int argc, char **argv,
                      sox_signalinfo_t *interm, const sox_signalinfo_t *out)
{
    const sox_effect_handler_t *h = sox_find_effect(name);
    if (!h) return -1;
    sox_effect_t *e = sox_create_effect(h);
    if (!e) return -1;
    int rc = sox_effect_options(e, argc, argv) == SOX_SUCCESS &&
             sox_add_effect(chain, e, interm, out) == SOX_SUCCESS ? 0 : -1;
    /* sox_add_effect copied the struct (its private data stays with the chain); on failure the
     * private data is ours to free. */
    if (rc) free(e->priv);
    free(e);
    return rc;
}

int audio_load(const char *path, const audio_opts *o, float **x, int64_t *cap, int64_t *n,
               struct util_err *err)
{
    *n = 0;
    if (!sox_ready) return util_err_set(err, "%s: audio_init was not called", path);
    if (strcmp(path, "-") != 0) {
        struct stat st;
        if (stat(path, &st) != 0) return util_err_sys(err, "%s", path);
        if (S_ISDIR(st.st_mode)) return util_err_set(err, "%s: is a directory", path);
        if (S_ISREG(st.st_mode) && st.st_size == 0) return util_err_set(err, "%s: empty file", path);
    }
    sox_msg[0] = 0;
    pthread_mutex_lock(&open_lock);
    sox_format_t *in = sox_open_read(path, NULL, NULL, NULL);
    pthread_mutex_unlock(&open_lock);
    if (!in)
        return util_err_set(err, "%s: cannot decode: %s", path, sox_msg[0] ? sox_msg : "unknown format");

    int rc = -1;
    sox_effects_chain_t *chain = NULL;
    struct sink s = { x, cap, 0, o->stop_after, o->max_samples, 0 };
    if (in->signal.channels < 1 || !(in->signal.rate > 0) || !isfinite(in->signal.rate)) {
        util_err_set(err, "%s: invalid header (%u channels, %g Hz)", path, in->signal.channels,
                     in->signal.rate);
        goto done;
    }
    if (in->signal.channels == 1 && in->signal.rate == (double)o->rate) {
        /* Mono at the wanted rate: nothing to mix or resample, so sox_read feeds the sink
         * directly; the same samples as through the chain, without its copies. */
        sox_sample_t buf[8192];
        sox_effect_t e;   /* sink_flow only reads priv */
        struct sink *sp = &s;
        e.priv = &sp;
        size_t got, none;
        while ((got = sox_read(in, buf, sizeof buf / sizeof buf[0])) > 0)
            if (sink_flow(&e, buf, NULL, &got, &none) != SOX_SUCCESS) break;
        goto check;
    }
    sox_signalinfo_t interm = in->signal, out = in->signal;
    out.channels = 1;
    out.rate = o->rate;
    out.length = SOX_UNKNOWN_LEN;
    sox_encodinginfo_t out_enc = in->encoding;
    out_enc.encoding = SOX_ENCODING_SIGN2;
    out_enc.bits_per_sample = 32;
    char *in_arg[1] = { (char *)in };
    char qarg[3] = { '-', o->quality ? o->quality : 'h', 0 };
    char *rate_arg[1] = { qarg };
    /* Setting up the chain is serialised as well: sox_find_effect rewrites static handler
     * tables and the effects' start functions touch shared state (helgrind shows both). */
    pthread_mutex_lock(&open_lock);
    chain = sox_create_effects_chain(&in->encoding, &out_enc);
    int ok = chain && add_effect(chain, "input", 1, in_arg, &interm, &in->signal) == 0 &&
             (in->signal.channels == 1 || add_effect(chain, "channels", 0, NULL, &interm, &out) == 0) &&
             (in->signal.rate == (double)o->rate || add_effect(chain, "rate", 1, rate_arg, &interm, &out) == 0);
    if (ok) {
        sox_effect_t *e = sox_create_effect(&sink_handler);
        if (e) {
            *(struct sink **)e->priv = &s;
            if (sox_add_effect(chain, e, &interm, &interm) != SOX_SUCCESS) {
                free(e->priv);
                ok = 0;
            }
            free(e);
        } else {
            ok = 0;
        }
    }
    pthread_mutex_unlock(&open_lock);
    if (!ok) {
        util_err_set(err, "%s: cannot set up the SoX effects chain%s%s", path, sox_msg[0] ? ": " : "", sox_msg);
        goto done;
    }
    sox_flow_effects(chain, NULL, NULL);
check:
    if (s.status == 1) {
        util_err_set(err, "%s: out of memory after %lld samples", path, (long long)s.n);
        goto done;
    }
    if (s.status == 2) {
        util_err_set(err, "%s: longer than the limit of %lld samples (%.0f s)", path,
                     (long long)o->max_samples, (double)o->max_samples / o->rate);
        goto done;
    }
    if (in->sox_errno && !(o->stop_after && s.n >= o->stop_after)) {
        util_err_set(err, "%s: decoding failed after %lld samples: %s", path, (long long)s.n,
                     in->sox_errstr[0] ? in->sox_errstr : sox_msg);
        goto done;
    }
    if (s.n == 0) {
        util_err_set(err, "%s: no audio samples", path);
        goto done;
    }
    *n = s.n;
    rc = 0;
done:
    pthread_mutex_lock(&open_lock);
    if (chain) sox_delete_effects_chain(chain);
    sox_close(in);
    pthread_mutex_unlock(&open_lock);
    return rc;
}

int audio_fit(float **x, int64_t *cap, int64_t *n, int64_t target, enum audio_fit mode,
              struct util_err *err)
{
    int64_t n0 = *n;
    if (mode == AUDIO_FIT_NONE || target <= 0 || n0 == target) return 0;
    if (n0 > target) {
        if (mode == AUDIO_FIT_CROP) memmove(*x, *x + (n0 - target) / 2, (size_t)target * sizeof(float));
        *n = target;
        return 0;
    }
    if (target > *cap) {
        float *nx = realloc(*x, (size_t)target * sizeof(float));
        if (!nx) return util_err_set(err, "out of memory (%lld samples)", (long long)target);
        *x = nx;
        *cap = target;
    }
    float *v = *x;
    if (mode == AUDIO_FIT_LOOP && n0 > 0) {
        for (int64_t i = n0; i < target; i++) v[i] = v[i - n0];
    } else {
        memset(v + n0, 0, (size_t)(target - n0) * sizeof(float));
    }
    *n = target;
    return 0;
}

const char *audio_fit_name(enum audio_fit mode)
{
    switch (mode) {
    case AUDIO_FIT_NONE: return "none";
    case AUDIO_FIT_PAD: return "pad";
    case AUDIO_FIT_CROP: return "crop";
    case AUDIO_FIT_LOOP: return "loop";
    }
    return "?";
}

int audio_fit_from_name(const char *s)
{
    if (!strcmp(s, "none")) return AUDIO_FIT_NONE;
    if (!strcmp(s, "pad")) return AUDIO_FIT_PAD;
    if (!strcmp(s, "crop")) return AUDIO_FIT_CROP;
    if (!strcmp(s, "loop")) return AUDIO_FIT_LOOP;
    return -1;
}
