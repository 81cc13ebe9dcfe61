/* wav2mel: audio files -> a TSZ stream of log-mel spectrograms, one f32 record (channels x mels x
 * frames) per clip with its name, label and fold.  Files come from the command line, a list, or a
 * dataset's own metadata (ESC-50, ESC-10, UrbanSound8K, GTZAN), read by lib/dataset.c.  Clips are
 * decoded and transformed in parallel and written in input order, so the output does not depend on
 * the thread count. */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "audio.h"
#include "dataset.h"
#include "mel.h"
#include "plot.h"
#include "tsz.h"
#include "util.h"

/* ---- options ---- */
enum {
    O_ESC50 = 256, O_ESC10, O_US8K, O_GTZAN, O_DURATION, O_FIT, O_RESAMPLE, O_MAXDUR, O_FMIN, O_FMAX, O_SCALE,
    O_NORM, O_CENTER, O_POWER, O_LOG, O_EPS, O_REF, O_AMIN, O_TOPDB, O_WIDTH, O_NOAA, O_PNG, O_SKIP, O_LEVEL, O_RAW
};

static const struct option long_opts[] = {
    { "output", 1, 0, 'o' }, { "list", 1, 0, 'l' }, { "esc50", 1, 0, O_ESC50 }, { "esc10", 1, 0, O_ESC10 },
    { "urbansound8k", 1, 0, O_US8K }, { "gtzan", 1, 0, O_GTZAN }, { "preset", 1, 0, 'p' }, { "rate", 1, 0, 'r' },
    { "duration", 1, 0, O_DURATION }, { "fit", 1, 0, O_FIT }, { "resample", 1, 0, O_RESAMPLE },
    { "max-duration", 1, 0, O_MAXDUR }, { "n-fft", 1, 0, 'n' }, { "win", 1, 0, 'w' }, { "hop", 1, 0, 'H' },
    { "channels", 1, 0, 'c' }, { "mels", 1, 0, 'm' }, { "fmin", 1, 0, O_FMIN }, { "fmax", 1, 0, O_FMAX },
    { "mel-scale", 1, 0, O_SCALE }, { "mel-norm", 1, 0, O_NORM }, { "center", 1, 0, O_CENTER },
    { "power", 1, 0, O_POWER }, { "log", 1, 0, O_LOG }, { "eps", 1, 0, O_EPS }, { "ref", 1, 0, O_REF },
    { "amin", 1, 0, O_AMIN }, { "top-db", 1, 0, O_TOPDB }, { "width", 1, 0, O_WIDTH },
    { "no-antialias", 0, 0, O_NOAA }, { "png", 1, 0, O_PNG }, { "skip-bad", 0, 0, O_SKIP },
    { "threads", 1, 0, 'j' }, { "level", 1, 0, O_LEVEL }, { "raw", 0, 0, O_RAW }, { "verbose", 0, 0, 'v' },
    { "help", 0, 0, 'h' }, { "version", 0, 0, 'V' }, { 0, 0, 0, 0 }
};

static void usage(void)
{
    printf(
        "Usage: wav2mel [OPTION]... FILE...\n"
        "  or:  wav2mel [OPTION]... --list=LIST | --esc50=DIR | --esc10=DIR\n"
        "                           | --urbansound8k=DIR | --gtzan=DIR\n"
        "Write the log-mel spectrogram of each audio file (any format libsox reads) as one record\n"
        "(channels x mels x frames, f32) of a TSZ stream, in input order.\n"
        "\nInput:\n"
        "  -l, --list=LIST         rows path<TAB>label<TAB>fold[<TAB>name] ('-': stdin)\n"
        "      --esc50=DIR         ESC-50 (meta/esc50.csv, audio/); labels = target\n"
        "      --esc10=DIR         ESC-10 / 2015 ESC-50 release ('NNN - Class/F-ID-T.ogg' folders)\n"
        "      --urbansound8k=DIR  UrbanSound8K (metadata/UrbanSound8K.csv, audio/foldN/)\n"
        "      --gtzan=DIR         GTZAN (genres/<genre>/*.wav|.au); fold = index in genre %% 10 + 1\n"
        "      --skip-bad          skip files that cannot be decoded, report how many at the end\n"
        "\nAudio:\n"
        "  -p, --preset=NAME       esc50, us8k, gtzan or librosa (the default); options given\n"
        "                          as well override the preset's values\n"
        "  -r, --rate=HZ           resample to HZ (sox rate; librosa: 22050)\n"
        "      --resample=Q        sox rate quality q, l, m, h or v (default h)\n"
        "      --duration=S        fit every clip to S seconds (0: keep the length)\n"
        "      --fit=MODE          pad (zeros; longer: keep the start), crop (keep the centre),\n"
        "                          loop (repeat), none (default pad)\n"
        "      --max-duration=S    a longer clip is an error (default 3600)\n"
        "\nSpectrogram:\n"
        "  -n, --n-fft=N           FFT length, any size (librosa: 2048)\n"
        "  -w, --win=N             window length in samples (default n_fft)\n"
        "  -H, --hop=N             hop in samples (default win/4)\n"
        "  -c, --channels=LIST     W:H[,W:H]... window:hop pairs in ms, one channel each\n"
        "  -m, --mels=N            mel bands (default 128)\n"
        "      --fmin=HZ, --fmax=HZ  filterbank range (default 0 and rate/2)\n"
        "      --mel-scale=S       htk or slaney\n"
        "      --mel-norm=S        none or slaney (triangle area 1)\n"
        "      --center=MODE       reflect (torchaudio), zero (librosa) or none\n"
        "      --power=P           2 (power), 1 (magnitude), any P in (0, 4]\n"
        "      --log=L             ln (log(x + eps)), db (power_to_db) or none\n"
        "      --eps=E             ln offset (default 1e-6)\n"
        "      --ref=R             dB reference, a number or 'max' (default 1)\n"
        "      --amin=A            dB floor of x (default 1e-10)\n"
        "      --top-db=D          dB range below the peak kept (default 80; 0: all)\n"
        "      --width=N           resize every channel to N frames (0: keep)\n"
        "      --no-antialias      plain bilinear when shrinking (default: PIL's widened filter)\n"
        "\nOutput:\n"
        "  -o, --output=FILE       write to FILE instead of stdout\n"
        "      --png=DIR           also write DIR/NAME.png images of every record\n"
        "      --level=N           zstd level 1..19 (default 3)\n"
        "      --raw               no compression\n"
        "  -j, --threads=N         threads (default: all cores)\n"
        "  -v, --verbose           progress on stderr even when it is not a terminal\n"
        "  -h, --help              show this help and exit\n"
        "  -V, --version           show the version and exit\n"
        "Exit status: 0 success, 1 runtime error, 2 usage error.  See wav2mel(1), tsz(5).\n");
}

typedef struct {
    const char *output, *list, *esc50, *esc10, *us8k, *gtzan, *preset, *png, *channels, *ref;
    int threads, level, raw, verbose, skip_bad, no_aa;
    /* explicit values; set_* says whether given */
    long rate, n_fft, win, hop, mels, width;
    double duration, fmin, fmax, power, eps, amin, top_db, max_dur;
    int fit, resample, scale, norm, center, log;
    int set_rate, set_n_fft, set_win, set_hop, set_mels, set_width, set_duration, set_fmin, set_fmax,
        set_power, set_eps, set_amin, set_top_db, set_fit, set_scale, set_norm, set_center, set_log;
} opts;

static int pick(const char *opt, const char *s, const char *const *names)
{
    for (int i = 0; names[i]; i++)
        if (!strcmp(s, names[i])) return i;
    util_usage_error("%s: invalid value '%s'", opt, s);
}

static void parse_args(int argc, char **argv, opts *o)
{
    static const char *const scales[] = { "htk", "slaney", NULL }, *const norms[] = { "none", "slaney", NULL },
                             *const centers[] = { "reflect", "zero", "none", NULL },
                             *const logs[] = { "ln", "db", "none", NULL };
    int c;
    opterr = 0;   /* one line of our own instead of getopt's */
    while ((c = getopt_long(argc, argv, ":o:l:p:r:n:w:H:c:m:j:vhV", long_opts, NULL)) != -1) {
        switch (c) {
        case 'o': o->output = optarg; break;
        case 'l': o->list = optarg; break;
        case O_ESC50: o->esc50 = optarg; break;
        case O_ESC10: o->esc10 = optarg; break;
        case O_US8K: o->us8k = optarg; break;
        case O_GTZAN: o->gtzan = optarg; break;
        case 'p': o->preset = optarg; break;
        case 'r': o->rate = util_opt_long("--rate", optarg, 1, 1000000); o->set_rate = 1; break;
        case O_DURATION: o->duration = util_opt_double("--duration", optarg, 0, 86400); o->set_duration = 1; break;
        case O_FIT:
            if ((o->fit = audio_fit_from_name(optarg)) < 0) util_usage_error("--fit: invalid value '%s'", optarg);
            o->set_fit = 1;
            break;
        case O_RESAMPLE:
            if (strlen(optarg) != 1 || !audio_quality_desc(optarg[0])) util_usage_error("--resample: invalid value '%s'", optarg);
            o->resample = optarg[0];
            break;
        case O_MAXDUR: o->max_dur = util_opt_double("--max-duration", optarg, 0.001, 86400); break;
        case 'n': o->n_fft = util_opt_long("--n-fft", optarg, 2, 1 << 22); o->set_n_fft = 1; break;
        case 'w': o->win = util_opt_long("--win", optarg, 1, 1 << 22); o->set_win = 1; break;
        case 'H': o->hop = util_opt_long("--hop", optarg, 1, 1 << 22); o->set_hop = 1; break;
        case 'c': o->channels = optarg; break;
        case 'm': o->mels = util_opt_long("--mels", optarg, 1, 8192); o->set_mels = 1; break;
        case O_FMIN: o->fmin = util_opt_double("--fmin", optarg, 0, 1e7); o->set_fmin = 1; break;
        case O_FMAX: o->fmax = util_opt_double("--fmax", optarg, 1e-3, 1e7); o->set_fmax = 1; break;
        case O_SCALE: o->scale = pick("--mel-scale", optarg, scales); o->set_scale = 1; break;
        case O_NORM: o->norm = pick("--mel-norm", optarg, norms); o->set_norm = 1; break;
        case O_CENTER: o->center = pick("--center", optarg, centers); o->set_center = 1; break;
        case O_POWER: o->power = util_opt_double("--power", optarg, 1e-3, 4); o->set_power = 1; break;
        case O_LOG: o->log = pick("--log", optarg, logs); o->set_log = 1; break;
        case O_EPS: o->eps = util_opt_double("--eps", optarg, 1e-37, 1e30); o->set_eps = 1; break;
        case O_REF:
            if (strcmp(optarg, "max") != 0) util_opt_double("--ref", optarg, 1e-30, 1e30);
            o->ref = optarg;
            break;
        case O_AMIN: o->amin = util_opt_double("--amin", optarg, 1e-37, 1e30); o->set_amin = 1; break;
        case O_TOPDB: o->top_db = util_opt_double("--top-db", optarg, 0, 1000); o->set_top_db = 1; break;
        case O_WIDTH: o->width = util_opt_long("--width", optarg, 0, 1000000); o->set_width = 1; break;
        case O_NOAA: o->no_aa = 1; break;
        case O_PNG: o->png = optarg; break;
        case O_SKIP: o->skip_bad = 1; break;
        case 'j': o->threads = (int)util_opt_long("--threads", optarg, 1, 4096); break;
        case O_LEVEL: o->level = (int)util_opt_long("--level", optarg, 1, 19); break;
        case O_RAW: o->raw = 1; break;
        case 'v': o->verbose = 1; break;
        case 'h': usage(); exit(fflush(stdout) == 0 ? 0 : 1);
        case 'V': util_print_version();
        default: util_option_error(c, argv);
        }
    }
    int sources = (optind < argc) + !!o->list + !!o->esc50 + !!o->esc10 + !!o->us8k + !!o->gtzan;
    if (sources == 0) util_usage_error("no input: give audio files, --list or a dataset directory");
    if (sources > 1) util_usage_error("give only one of: files, --list, --esc50, --esc10, --urbansound8k, --gtzan");
    if (o->channels && (o->set_win || o->set_hop)) util_usage_error("--channels and --win/--hop exclude each other");
}

/* Preset first, then every option given on the command line. */
static void resolve(const opts *o, mel_params *p, double *duration, int *fit)
{
    const char *preset = o->preset ? o->preset : "librosa";
    if (mel_preset(preset, p, duration) < 0) util_usage_error("--preset: unknown preset '%s' (esc50, us8k, gtzan, librosa)", preset);
    *fit = AUDIO_FIT_PAD;
    if (o->set_rate) p->rate = (int)o->rate;
    if (o->set_mels) p->n_mels = (int)o->mels;
    if (o->set_n_fft) p->n_fft = (int)o->n_fft;
    if (o->channels) {
        struct util_err e = {0};
        if (mel_parse_channels_ms(o->channels, p, &e) < 0) util_usage_error("--channels: %s", e.msg);
    } else if (o->set_win || o->set_hop || o->set_n_fft || p->n_chan == 1) {
        /* One channel in samples: the window defaults to n_fft and the hop to a quarter of it
         * (librosa's defaults), unless the preset's single pair still applies. */
        int win = o->set_win ? (int)o->win : (o->set_n_fft || p->n_chan > 1) ? p->n_fft : p->win[0];
        int hop = o->set_hop ? (int)o->hop : (o->set_win || o->set_n_fft || p->n_chan > 1) ? (win / 4 > 0 ? win / 4 : 1) : p->hop[0];
        p->n_chan = 1;
        p->win[0] = win;
        p->hop[0] = hop;
        p->win_ms[0] = p->hop_ms[0] = 0;
    }
    if (o->set_fmin) p->fmin = o->fmin;
    if (o->set_fmax) p->fmax = o->fmax;
    if (o->set_scale) p->scale = (enum mel_scale)o->scale;
    if (o->set_norm) p->norm = (enum mel_norm)o->norm;
    if (o->set_center) p->center = (enum mel_center)o->center;
    if (o->set_power) p->power = o->power;
    if (o->set_log) p->log = (enum mel_log)o->log;
    if (o->set_eps) p->eps = o->eps;
    if (o->ref) p->ref = strcmp(o->ref, "max") == 0 ? 0 : strtod(o->ref, NULL);
    if (o->set_amin) p->amin = o->amin;
    if (o->set_top_db) p->top_db = o->top_db;
    if (o->set_width) p->width = (int)o->width;
    if (o->no_aa) p->antialias = 0;
    if (o->set_duration) *duration = o->duration;
    if (o->set_fit) *fit = o->fit;
    if (*duration == 0) *fit = AUDIO_FIT_NONE;
    if (o->set_fit && o->fit != AUDIO_FIT_NONE && *duration == 0) util_usage_error("--fit %s needs --duration", audio_fit_name(o->fit));
    if (p->n_chan > 1 && p->width == 0) util_usage_error("several --channels need --width to stack them");
    struct util_err e = {0};
    mel_params q = *p;
    if (mel_params_resolve(&q, &e) < 0) util_usage_error("%s", e.msg);
}

static int set_attrs(tsz_attrs *a, const mel_params *p, const opts *o, double duration, int fit, char quality,
                     const dataset_list *L, int argc, char **argv)
{
    char ch[512] = "", chms[512] = "";
    for (int c = 0; c < p->n_chan; c++) {
        size_t k = strlen(ch), km = strlen(chms);
        snprintf(ch + k, sizeof ch - k, "%s%d:%d", c ? "," : "", p->win[c], p->hop[c]);
        if (p->win_ms[c] > 0) snprintf(chms + km, sizeof chms - km, "%s%g:%g", c ? "," : "", p->win_ms[c], p->hop_ms[c]);
    }
    int rc = 0;
    rc |= tsz_attrs_set(a, "kind", p->log == MEL_LOG_NONE ? "mel" : "logmel");
    rc |= tsz_attrs_set(a, "layout", "channels x mels x frames; mel 0 is the lowest band");
    rc |= tsz_attrs_setf(a, "generator", "wav2mel (earsight) %s", EARSIGHT_VERSION);
    if (o->preset) rc |= tsz_attrs_set(a, "preset", o->preset);
    if (L->dataset) rc |= tsz_attrs_set(a, "dataset", L->dataset);
    rc |= tsz_attrs_setf(a, "rate", "%d", p->rate);
    rc |= tsz_attrs_set(a, "mono", "mean of the channels (sox channels 1)");
    rc |= tsz_attrs_set(a, "resample", audio_quality_desc(quality));
    rc |= tsz_attrs_setf(a, "duration", "%g", duration);
    rc |= tsz_attrs_set(a, "fit", audio_fit_name(fit));
    rc |= tsz_attrs_setf(a, "n_fft", "%d", p->n_fft);
    rc |= tsz_attrs_setf(a, "n_mels", "%d", p->n_mels);
    rc |= tsz_attrs_setf(a, "channels", "%s", ch);
    if (chms[0]) rc |= tsz_attrs_set(a, "channels_ms", chms);
    if (p->n_chan == 1) {
        rc |= tsz_attrs_setf(a, "win", "%d", p->win[0]);
        rc |= tsz_attrs_setf(a, "hop", "%d", p->hop[0]);
    }
    rc |= tsz_attrs_set(a, "window", "hann (periodic), centred in n_fft");
    rc |= tsz_attrs_set(a, "center", mel_center_name(p->center));
    rc |= tsz_attrs_setf(a, "fmin", "%g", p->fmin);
    rc |= tsz_attrs_setf(a, "fmax", "%g", p->fmax);
    rc |= tsz_attrs_set(a, "mel_scale", mel_scale_name(p->scale));
    rc |= tsz_attrs_set(a, "mel_norm", mel_norm_name(p->norm));
    rc |= tsz_attrs_setf(a, "power", "%g", p->power);
    rc |= tsz_attrs_set(a, "log", mel_log_name(p->log));
    if (p->log == MEL_LOG_LN) rc |= tsz_attrs_setf(a, "eps", "%g", p->eps);
    if (p->log == MEL_LOG_DB) {
        if (p->ref > 0) rc |= tsz_attrs_setf(a, "ref", "%g", p->ref);
        else rc |= tsz_attrs_set(a, "ref", "max");
        rc |= tsz_attrs_setf(a, "amin", "%g", p->amin);
        rc |= tsz_attrs_setf(a, "top_db", "%g", p->top_db);
    }
    rc |= tsz_attrs_setf(a, "width", "%d", p->width);
    rc |= tsz_attrs_set(a, "resize", p->width == 0 ? "none" : p->antialias ? "bilinear, antialiased when shrinking (PIL)" : "bilinear");
    if (L->classes) rc |= tsz_attrs_set_classes(a, L->classes, L->n_classes);
    rc |= tsz_attrs_add_history(a, argc, argv);
    return rc ? -1 : 0;
}

/* ---- the work ---- */
static volatile sig_atomic_t got_signal;
static void on_signal(int s) { got_signal = s; }

/* Per-thread decoding and transform space. */
typedef struct {
    float *x;
    int64_t xcap;
    mel_work *w;
} worker;

/* Finished clips wait in a ring of slots until every earlier clip is written: item i uses slot
 * i % n_slots.  Whichever thread finds the next slot in order ready writes it (and any ready ones
 * after it), so no thread idles waiting for its turn; waits block on a condition variable
 * instead of spinning, which matters on a busy machine. */
enum { SLOT_FREE = 0, SLOT_OK, SLOT_BAD, SLOT_FATAL };   /* BAD: the input; FATAL: memory, output */
typedef struct {
    int state;
    float *data;
    int64_t cap, shape[3];
    struct util_err err;
} slot;

/* Decode, fit and transform one clip into sl.  0, -1 for a bad input file, -2 for a failure
 * that is not the input's (memory, writing a PNG). */
static int do_clip(const dataset_item *it, const mel_plan *m, const audio_opts *ao, int64_t target, int fit,
                   const char *png, worker *wk, slot *sl)
{
    int64_t n, *shape = sl->shape;
    struct util_err *err = &sl->err;
    if (audio_load(it->path, ao, &wk->x, &wk->xcap, &n, err) < 0) return -1;
    if (fit != AUDIO_FIT_NONE && audio_fit(&wk->x, &wk->xcap, &n, target, (enum audio_fit)fit, err) < 0) return -1;
    if (mel_out_shape(m, n, shape, err) < 0) {
        char tmp[sizeof err->msg];
        snprintf(tmp, sizeof tmp, "%s", err->msg);
        return util_err_set(err, "%s: %s", it->path, tmp);
    }
    int64_t total = shape[0] * shape[1] * shape[2];
    if (total > sl->cap) {
        float *no = realloc(sl->data, (size_t)total * sizeof(float));
        if (!no) {
            util_err_set(err, "%s: out of memory", it->path);
            return -2;
        }
        sl->data = no;
        sl->cap = total;
    }
    if (mel_compute(m, wk->w, wk->x, n, sl->data, sl->cap, err) < 0) {   /* only memory can fail here */
        char tmp[sizeof err->msg];
        snprintf(tmp, sizeof tmp, "%s", err->msg);
        util_err_set(err, "%s: %s", it->path, tmp);
        return -2;
    }
    if (png) {
        const float *v = sl->data;
        float lo = v[0], hi = v[0];
        for (int64_t i = 1; i < total; i++) {
            lo = v[i] < lo ? v[i] : lo;
            hi = v[i] > hi ? v[i] : hi;
        }
        char name[TSZ_MAX_NAME + 1], path[8192];
        snprintf(name, sizeof name, "%s", it->name);
        for (char *s = name; *s; s++)
            if (*s == '/') *s = '_';
        snprintf(path, sizeof path, "%s/%s.png", png, name[0] ? name : "_");
        if (plot_heatmap_png(v, (int)(shape[0] * shape[1]), (int)shape[2], lo, hi > lo ? hi : lo + 1, 1, 1, path, err) < 0)
            return -2;
    }
    return 0;
}

int main(int argc, char **argv)
{
    util_set_progname(argv[0]);
    opts o = { .output = "-", .level = 3, .resample = 'h', .max_dur = 3600 };
    parse_args(argc, argv, &o);
    mel_params p;
    double duration;
    int fit;
    resolve(&o, &p, &duration, &fit);

    struct util_err err = {0};
    dataset_list L = {0};
    tsz_attrs attrs;
    tsz_attrs_init(&attrs);
    mel_plan *m = NULL;
    tsz_writer *out = NULL;
    int rc = 1, audio_ok = 0;

    if (optind < argc) {
        for (int i = optind; i < argc; i++)
            if (dataset_add(&L, argv[i], NULL, -1, 0, &err) < 0) goto done;
    } else if (o.list) {
        if (dataset_read_list(o.list, &L, &err) < 0) goto done;
    } else if (o.esc50) {
        if (dataset_read_esc50(o.esc50, &L, &err) < 0) goto done;
    } else if (o.esc10) {
        if (dataset_read_esc10(o.esc10, &L, &err) < 0) goto done;
    } else if (o.us8k) {
        if (dataset_read_us8k(o.us8k, &L, &err) < 0) goto done;
    } else if (o.gtzan) {
        if (dataset_read_gtzan(o.gtzan, &L, &err) < 0) goto done;
    }
    if (o.png && mkdir(o.png, 0777) != 0 && errno != EEXIST) {
        util_err_sys(&err, "%s", o.png);
        goto done;
    }
    if (!(m = mel_plan_create(&p, &err))) goto done;
    p = *mel_plan_params(m);
    if (audio_init(&err) < 0) goto done;
    audio_ok = 1;
    audio_opts ao;
    audio_opts_default(&ao);
    ao.rate = p.rate;
    ao.quality = (char)o.resample;
    ao.max_samples = (int64_t)(o.max_dur * p.rate);
    int64_t target = (int64_t)(duration * p.rate + 0.5);
    if (fit != AUDIO_FIT_NONE && target < 1) {
        util_err_set(&err, "--duration %g is shorter than one sample", duration);
        goto done;
    }
    /* pad and loop only need the first `target` samples: stop decoding there. */
    if (fit == AUDIO_FIT_PAD || fit == AUDIO_FIT_LOOP) ao.stop_after = target;
    if (set_attrs(&attrs, &p, &o, duration, fit, ao.quality, &L, argc, argv) < 0) {
        util_err_set(&err, "cannot build the stream attributes");
        goto done;
    }
    tsz_wopts wo;
    tsz_wopts_default(&wo);
    wo.level = o.level;
    wo.raw = o.raw;
    if (!(out = tsz_writer_open(o.output, &attrs, o.skip_bad ? -1 : L.n, &wo, &err))) goto done;

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    /* A signal ignored on entry (nohup, a background job of a script) stays ignored. */
    static const int sigs[3] = { SIGINT, SIGTERM, SIGHUP };
    for (int k = 0; k < 3; k++) {
        struct sigaction old;
        if (sigaction(sigs[k], NULL, &old) == 0 && old.sa_handler != SIG_IGN) sigaction(sigs[k], &sa, NULL);
    }

    int nt = o.threads > 0 ? o.threads : util_ncpu();
    if (nt > L.n) nt = (int)L.n;
    if (nt < 1) nt = 1;
    int failed = 0, writing = 0, n_slots = 2 * nt;
    int64_t skipped = 0, done_n = 0, next_item = 0, next_write = 0;
    slot *slots = calloc((size_t)n_slots, sizeof *slots);
    pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
    if (!slots) {
        util_err_set(&err, "out of memory");
        goto done;
    }
    util_progress prog;
    util_progress_start(&prog, "clips", L.n, o.verbose);
#pragma omp parallel num_threads(nt)
    {
        worker wk = { 0 };
        struct util_err werr = {0};
        wk.w = mel_work_create(m, &werr);
        pthread_mutex_lock(&mu);
        for (;;) {
            /* take the next item once its slot has been written out */
            while (!failed && !got_signal && next_item < L.n && next_item >= next_write + n_slots)
                pthread_cond_wait(&cv, &mu);
            if (failed || got_signal || next_item >= L.n) break;
            int64_t i = next_item++;
            slot *sl = &slots[i % n_slots];
            pthread_mutex_unlock(&mu);
            int st = -2;
            if (wk.w) st = do_clip(&L.v[i], m, &ao, target, fit, o.png, &wk, sl);
            else sl->err = werr;
            pthread_mutex_lock(&mu);
            sl->state = st == 0 ? SLOT_OK : st == -1 ? SLOT_BAD : SLOT_FATAL;
            if (writing) continue;   /* the thread writing will reach this slot */
            writing = 1;
            while (next_write < L.n && slots[next_write % n_slots].state != SLOT_FREE) {
                int64_t k = next_write;
                slot *ws = &slots[k % n_slots];
                int bad = 0;
                pthread_mutex_unlock(&mu);
                /* only the thread holding `writing` gets here: the stream, the counters and
                 * err are its alone */
                if (!failed && !got_signal) {
                    if (ws->state == SLOT_OK) {
                        if (tsz_write_f32(out, L.v[k].name, L.v[k].label, L.v[k].fold, 3, ws->shape, ws->data, &err) < 0)
                            bad = 1;
                    } else if (ws->state == SLOT_BAD && o.skip_bad) {
                        fprintf(stderr, "%s: %s (skipped)\n", util_progname(), ws->err.msg);
                        skipped++;
                    } else {
                        err = ws->err;
                        bad = 1;
                    }
                }
                done_n++;
                util_progress_update(&prog, done_n, NULL);
                pthread_mutex_lock(&mu);
                if (bad) failed = 1;
                ws->state = SLOT_FREE;
                next_write++;
                pthread_cond_broadcast(&cv);
            }
            writing = 0;
        }
        pthread_cond_broadcast(&cv);
        pthread_mutex_unlock(&mu);
        mel_work_free(wk.w);
        free(wk.x);
    }
    for (int k = 0; k < n_slots; k++) free(slots[k].data);
    free(slots);
    if (got_signal) {
        util_err_set(&err, "interrupted by signal %d", (int)got_signal);
        goto done;
    }
    if (failed) goto done;
    util_progress_end(&prog, done_n, NULL);
    if (skipped == L.n) {
        util_err_set(&err, "no file could be decoded (%lld skipped)", (long long)skipped);
        goto done;
    }
    if (tsz_writer_finish(out, &err) < 0) goto done;
    if (skipped) fprintf(stderr, "%s: skipped %lld of %lld files\n", util_progname(), (long long)skipped, (long long)L.n);
    rc = 0;
done:
    if (rc) util_report(&err);
    tsz_writer_close(out);   /* unfinished: the temporary file is removed */
    mel_plan_free(m);
    if (audio_ok) audio_done();
    tsz_attrs_free(&attrs);
    dataset_free(&L);
    if (got_signal) {
        /* Die of the same signal so that the caller (a shell, make) sees the interruption. */
        signal(got_signal, SIG_DFL);
        raise(got_signal);
    }
    return rc;
}
