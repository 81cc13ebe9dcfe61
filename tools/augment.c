/* augment: a TSZ stream filter that writes augmented views of its records — SimCLR image views,
 * SpecAugment/mixup spectrograms, or plain repetition and reshuffling — deterministically for a seed,
 * whatever the thread count.  The work is aug_stream in lib/aug.c. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aug.h"
#include "tsz.h"
#include "util.h"

static const float imagenet_mean[3] = {0.485f, 0.456f, 0.406f}, imagenet_std[3] = {0.229f, 0.224f, 0.225f};

static void usage(void)
{
    printf("Usage: augment [OPTION]... [INPUT]\n"
           "Write augmented views of the records of the TSZ stream INPUT (default: stdin).\n"
           "  -o, --output=FILE      write to FILE instead of stdout\n"
           "  -p, --policy=P         simclr (images), spec (spectrograms) or none (default none)\n"
           "      --views=N          N views of each record, consecutive, same name and label (default 1)\n"
           "      --epochs=E         E passes over the input, held in memory (default 1)\n"
           "      --shuffle          a new random order every epoch (the default with --epochs)\n"
           "      --no-shuffle       keep the input order\n"
           "      --start=K          start at output record K, exactly as the full run would continue\n"
           "      --seed=N           random seed (default 0)\n"
           "  -j, --threads=N        threads (default: all cores; the output does not depend on it)\n"
           "  -b, --batch=N          input records per parallel batch (default 32 per thread)\n"
           "      --level=N          zstd level 1..19 (default 3)\n"
           "      --raw              write the stream uncompressed\n"
           "  -v, --verbose          show progress even when stderr is not a terminal\n"
           "  -h, --help             show this help and exit\n"
           "  -V, --version          show the version and exit\n"
           "simclr policy (SimCLR v1; 1 or 3 x H x W images, u8 0..255 or f32 0..1):\n"
           "      --size=N           output side (default 224)\n"
           "      --scale=LO,HI      crop area fraction (default 0.08,1)\n"
           "      --ratio=LO,HI      crop aspect ratio (default 0.75,1.3333333)\n"
           "      --interp=F         bicubic (default) or bilinear\n"
           "      --flip=P           horizontal flip probability (default 0.5)\n"
           "      --strength=S       colour jitter strength s (default 1)\n"
           "      --jitter=P         colour jitter probability (default 0.8)\n"
           "      --brightness=B     brightness factor range 1 +- B (default 0.8 s)\n"
           "      --contrast=C       contrast factor range 1 +- C (default 0.8 s)\n"
           "      --saturation=S     saturation factor range 1 +- S (default 0.8 s)\n"
           "      --hue=H            hue shift range +- H turns, <= 0.5 (default 0.2 s)\n"
           "      --gray=P           grayscale probability (default 0.2)\n"
           "      --blur=P           Gaussian blur probability (default 0.5)\n"
           "      --blur-sigma=LO,HI blur sigma range in pixels (default 0.1,2)\n"
           "      --blur-kernel=K    odd kernel size (default 10%% of --size, made odd)\n"
           "      --u8               write u8 (round(255 x)) instead of f32\n"
           "      --mean=M, --std=S  normalise the output: R,G,B, one value, or 'imagenet'\n"
           "spec policy (F x T or C x F x T spectrograms):\n"
           "      --freq-masks=N     frequency masks per view (default 2)\n"
           "      --freq-width=W     widest mask: bins, or a percentage such as 10%% (default 10%%)\n"
           "      --time-masks=N     time masks per view (default 2)\n"
           "      --time-width=W     widest mask: frames, or a percentage (default 10%%)\n"
           "      --shift=S          random time shift up to S frames or a percentage (default 0: off)\n"
           "      --shift-mode=M     roll (circular, default) or fill (with the --fill value)\n"
           "      --gain=DB          random gain within +- DB decibels (default 0: off)\n"
           "      --gain-domain=D    ln, db or power values (default: the stream's 'log' attribute)\n"
           "      --fill=V           mask value: mean (the record's mean, default) or a number\n"
           "      --mixup=ALPHA      mix with a random partner, weight ~ Beta(ALPHA, ALPHA), and write\n"
           "                         a '<name>#soft' record of soft labels after each view\n"
           "      --mixup-p=P        probability that a view is mixed (default 1)\n"
           "      --num-classes=N    classes of the soft labels (default: the 'classes' attribute)\n"
           "Exit status: 0 success, 1 runtime error, 2 usage error.  See augment(1), tsz(5).\n");
    exit(0);
}

static void parse_pair(const char *opt, const char *s, double lo, double hi, double *a, double *b)
{
    char buf[128];
    snprintf(buf, sizeof buf, "%s", s);
    char *comma = strchr(buf, ',');
    if (!comma) util_usage_error("%s: '%s' is not LO,HI", opt, s);
    *comma = 0;
    if (util_parse_double(buf, lo, hi, a) < 0 || util_parse_double(comma + 1, lo, hi, b) < 0 || *a > *b)
        util_usage_error("%s: '%s' is not LO,HI with %g <= LO <= HI <= %g", opt, s, lo, hi);
}

static void parse3(const char *opt, const char *s, const float *preset, float v[3])
{
    if (strcmp(s, "imagenet") == 0) {
        memcpy(v, preset, 3 * sizeof *v);
        return;
    }
    char buf[256];
    snprintf(buf, sizeof buf, "%s", s);
    double d[3];
    int k = 0;
    for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
        if (k == 3 || util_parse_double(tok, -1e6, 1e6, &d[k]) < 0)
            util_usage_error("%s: '%s' is not R,G,B, one number or 'imagenet'", opt, s);
        k++;
    }
    if (k == 1) d[1] = d[2] = d[0];
    else if (k != 3) util_usage_error("%s: '%s' is not R,G,B, one number or 'imagenet'", opt, s);
    for (int i = 0; i < 3; i++) v[i] = (float)d[i];
}

/* "N" (absolute) or "P%" (a fraction of the axis). */
static void parse_width(const char *opt, const char *s, double *v, int *frac)
{
    size_t n = strlen(s);
    char buf[64];
    if (n > 0 && n < sizeof buf && s[n - 1] == '%') {
        memcpy(buf, s, n - 1);
        buf[n - 1] = 0;
        *v = util_opt_double(opt, buf, 0, 100) / 100.0;
        *frac = 1;
    } else {
        *v = (double)util_opt_long(opt, s, 0, 1000000);
        *frac = 0;
    }
}

struct opts {
    const char *output, *input;
    int level, raw;
    int explicit_shuffle;       /* -1 not given, 0 --no-shuffle, 1 --shuffle */
    double strength;
    double brightness, contrast, saturation, hue;   /* < 0: from --strength */
    int have_gain_domain, have_mean, have_std, have_mixup;
};

static void parse_args(int argc, char **argv, struct opts *o, aug_cfg *c)
{
    enum {
        O_VIEWS = 256, O_EPOCHS, O_SHUFFLE, O_NOSHUFFLE, O_START, O_SEED, O_LEVEL, O_RAW, O_SIZE, O_SCALE, O_RATIO,
        O_INTERP, O_FLIP, O_STRENGTH, O_JITTER, O_BRIGHT, O_CONTRAST, O_SAT, O_HUE, O_GRAY, O_BLUR, O_SIGMA, O_KERNEL,
        O_U8, O_MEAN, O_STD, O_FMASKS, O_FWIDTH, O_TMASKS, O_TWIDTH, O_SHIFT, O_SHIFTMODE, O_GAIN, O_GAINDOM, O_FILL,
        O_MIXUP, O_MIXUPP, O_NCLASSES
    };
    static const struct option lo[] = {
        {"output", required_argument, 0, 'o'}, {"policy", required_argument, 0, 'p'},
        {"views", required_argument, 0, O_VIEWS}, {"epochs", required_argument, 0, O_EPOCHS},
        {"shuffle", no_argument, 0, O_SHUFFLE}, {"no-shuffle", no_argument, 0, O_NOSHUFFLE},
        {"start", required_argument, 0, O_START}, {"seed", required_argument, 0, O_SEED},
        {"threads", required_argument, 0, 'j'}, {"batch", required_argument, 0, 'b'},
        {"level", required_argument, 0, O_LEVEL}, {"raw", no_argument, 0, O_RAW},
        {"verbose", no_argument, 0, 'v'}, {"help", no_argument, 0, 'h'}, {"version", no_argument, 0, 'V'},
        {"size", required_argument, 0, O_SIZE}, {"scale", required_argument, 0, O_SCALE},
        {"ratio", required_argument, 0, O_RATIO}, {"interp", required_argument, 0, O_INTERP},
        {"flip", required_argument, 0, O_FLIP}, {"strength", required_argument, 0, O_STRENGTH},
        {"jitter", required_argument, 0, O_JITTER}, {"brightness", required_argument, 0, O_BRIGHT},
        {"contrast", required_argument, 0, O_CONTRAST}, {"saturation", required_argument, 0, O_SAT},
        {"hue", required_argument, 0, O_HUE}, {"gray", required_argument, 0, O_GRAY},
        {"blur", required_argument, 0, O_BLUR}, {"blur-sigma", required_argument, 0, O_SIGMA},
        {"blur-kernel", required_argument, 0, O_KERNEL}, {"u8", no_argument, 0, O_U8},
        {"mean", required_argument, 0, O_MEAN}, {"std", required_argument, 0, O_STD},
        {"freq-masks", required_argument, 0, O_FMASKS}, {"freq-width", required_argument, 0, O_FWIDTH},
        {"time-masks", required_argument, 0, O_TMASKS}, {"time-width", required_argument, 0, O_TWIDTH},
        {"shift", required_argument, 0, O_SHIFT}, {"shift-mode", required_argument, 0, O_SHIFTMODE},
        {"gain", required_argument, 0, O_GAIN}, {"gain-domain", required_argument, 0, O_GAINDOM},
        {"fill", required_argument, 0, O_FILL}, {"mixup", required_argument, 0, O_MIXUP},
        {"mixup-p", required_argument, 0, O_MIXUPP}, {"num-classes", required_argument, 0, O_NCLASSES},
        {0, 0, 0, 0}};
    int ch, have_epochs = 0, simclr_opt = 0, spec_opt = 0;
    aug_simclr_opts *s = &c->simclr;
    aug_spec_opts *p = &c->spec;
    while ((ch = getopt_long(argc, argv, ":o:p:j:b:vhV", lo, NULL)) != -1) {
        if (ch >= O_SIZE && ch <= O_STD) simclr_opt = 1;
        if (ch >= O_FMASKS && ch <= O_NCLASSES) spec_opt = 1;
        switch (ch) {
        case 'o': o->output = optarg; break;
        case 'p':
            if (strcmp(optarg, "simclr") == 0) c->policy = AUG_SIMCLR;
            else if (strcmp(optarg, "spec") == 0) c->policy = AUG_SPEC;
            else if (strcmp(optarg, "none") == 0) c->policy = AUG_NONE;
            else util_usage_error("--policy: '%s' is not simclr, spec or none", optarg);
            break;
        case O_VIEWS: c->views = (int)util_opt_long("--views", optarg, 1, 1024); break;
        case O_EPOCHS: c->epochs = (int)util_opt_long("--epochs", optarg, 1, 1000000); have_epochs = 1; break;
        case O_SHUFFLE: o->explicit_shuffle = 1; break;
        case O_NOSHUFFLE: o->explicit_shuffle = 0; break;
        case O_START: c->start = util_opt_long("--start", optarg, 0, INT64_MAX); break;
        case O_SEED: c->seed = (uint64_t)util_opt_long("--seed", optarg, 0, INT64_MAX); break;
        case 'j': c->threads = (int)util_opt_long("--threads", optarg, 1, 1024); break;
        case 'b': c->batch = (int)util_opt_long("--batch", optarg, 1, 1 << 20); break;
        case O_LEVEL: o->level = (int)util_opt_long("--level", optarg, 1, 19); break;
        case O_RAW: o->raw = 1; break;
        case 'v': c->verbose = 1; break;
        case 'h': usage(); break;
        case 'V': util_print_version(); break;
        case O_SIZE: s->size = (int)util_opt_long("--size", optarg, 1, 16384); break;
        case O_SCALE: parse_pair("--scale", optarg, 1e-6, 1, &s->scale_lo, &s->scale_hi); break;
        case O_RATIO: parse_pair("--ratio", optarg, 1e-3, 1e3, &s->ratio_lo, &s->ratio_hi); break;
        case O_INTERP:
            if (strcmp(optarg, "bicubic") == 0) s->interp = IMG_BICUBIC;
            else if (strcmp(optarg, "bilinear") == 0) s->interp = IMG_BILINEAR;
            else util_usage_error("--interp: '%s' is not bicubic or bilinear", optarg);
            break;
        case O_FLIP: s->flip_p = util_opt_double("--flip", optarg, 0, 1); break;
        case O_STRENGTH: o->strength = util_opt_double("--strength", optarg, 0, 100); break;
        case O_JITTER: s->jitter_p = util_opt_double("--jitter", optarg, 0, 1); break;
        case O_BRIGHT: o->brightness = util_opt_double("--brightness", optarg, 0, 100); break;
        case O_CONTRAST: o->contrast = util_opt_double("--contrast", optarg, 0, 100); break;
        case O_SAT: o->saturation = util_opt_double("--saturation", optarg, 0, 100); break;
        case O_HUE: o->hue = util_opt_double("--hue", optarg, 0, 0.5); break;
        case O_GRAY: s->gray_p = util_opt_double("--gray", optarg, 0, 1); break;
        case O_BLUR: s->blur_p = util_opt_double("--blur", optarg, 0, 1); break;
        case O_SIGMA: parse_pair("--blur-sigma", optarg, 1e-3, 1e3, &s->sigma_lo, &s->sigma_hi); break;
        case O_KERNEL:
            s->blur_taps = (int)util_opt_long("--blur-kernel", optarg, 1, 1001);
            if (s->blur_taps % 2 == 0) util_usage_error("--blur-kernel: %d is not odd", s->blur_taps);
            break;
        case O_U8: c->out_u8 = 1; break;
        case O_MEAN: parse3("--mean", optarg, imagenet_mean, c->mean); o->have_mean = 1; break;
        case O_STD: parse3("--std", optarg, imagenet_std, c->std); o->have_std = 1; break;
        case O_FMASKS: p->freq_masks = (int)util_opt_long("--freq-masks", optarg, 0, 1000); break;
        case O_FWIDTH: parse_width("--freq-width", optarg, &p->freq_width, &p->freq_frac); break;
        case O_TMASKS: p->time_masks = (int)util_opt_long("--time-masks", optarg, 0, 1000); break;
        case O_TWIDTH: parse_width("--time-width", optarg, &p->time_width, &p->time_frac); break;
        case O_SHIFT: parse_width("--shift", optarg, &p->shift, &p->shift_frac); break;
        case O_SHIFTMODE:
            if (strcmp(optarg, "roll") == 0) p->shift_roll = 1;
            else if (strcmp(optarg, "fill") == 0) p->shift_roll = 0;
            else util_usage_error("--shift-mode: '%s' is not roll or fill", optarg);
            break;
        case O_GAIN: p->gain_db = util_opt_double("--gain", optarg, 0, 200); break;
        case O_GAINDOM:
            if (strcmp(optarg, "ln") == 0) p->gain_domain = AUG_GAIN_LN;
            else if (strcmp(optarg, "db") == 0) p->gain_domain = AUG_GAIN_DB;
            else if (strcmp(optarg, "power") == 0) p->gain_domain = AUG_GAIN_POWER;
            else util_usage_error("--gain-domain: '%s' is not ln, db or power", optarg);
            o->have_gain_domain = 1;
            break;
        case O_FILL:
            if (strcmp(optarg, "mean") == 0) p->fill = AUG_FILL_MEAN;
            else { p->fill = AUG_FILL_VALUE; p->fill_value = util_opt_double("--fill", optarg, -1e30, 1e30); }
            break;
        case O_MIXUP: p->mixup_alpha = util_opt_double("--mixup", optarg, 0, 1000); o->have_mixup = 1; break;
        case O_MIXUPP: p->mixup_p = util_opt_double("--mixup-p", optarg, 0, 1); break;
        case O_NCLASSES: c->num_classes = (int)util_opt_long("--num-classes", optarg, 1, 1 << 24); break;
        default: util_option_error(ch, argv);
        }
    }
    if (optind < argc) o->input = argv[optind++];
    if (optind < argc) util_usage_error("one input only ('%s' is extra)", argv[optind]);
    if (simclr_opt && c->policy != AUG_SIMCLR) util_usage_error("image options need --policy simclr");
    if (spec_opt && c->policy != AUG_SPEC) util_usage_error("spectrogram options need --policy spec");
    if (o->have_mean != o->have_std) util_usage_error("--mean and --std go together");
    c->normalize = o->have_mean;
    for (int i = 0; c->normalize && i < 3; i++)
        if (!(c->std[i] > 0)) util_usage_error("--std: values must be positive");
    if (c->normalize && c->out_u8) util_usage_error("--u8 cannot hold normalised values (drop --mean/--std)");
    s->brightness = o->brightness >= 0 ? o->brightness : 0.8 * o->strength;
    s->contrast = o->contrast >= 0 ? o->contrast : 0.8 * o->strength;
    s->saturation = o->saturation >= 0 ? o->saturation : 0.8 * o->strength;
    s->hue = o->hue >= 0 ? o->hue : 0.2 * o->strength;
    if (s->hue > 0.5) util_usage_error("--strength: the hue range 0.2 s must stay within 0.5 (s <= 2.5)");
    c->shuffle = o->explicit_shuffle >= 0 ? o->explicit_shuffle : have_epochs;
}

int main(int argc, char **argv)
{
    util_set_progname(argv[0]);
    struct opts o = {.output = "-", .input = "-", .level = 3, .explicit_shuffle = -1, .strength = 1.0,
                     .brightness = -1, .contrast = -1, .saturation = -1, .hue = -1};
    aug_cfg cfg;
    aug_cfg_default(&cfg);
    parse_args(argc, argv, &o, &cfg);
    struct util_err err = {{0}};
    tsz_attrs attrs;
    tsz_attrs_init(&attrs);
    tsz_reader *in = NULL;
    int rc = 1;

    if (!(in = tsz_reader_open(o.input, &err))) goto done;
    if (tsz_attrs_copy(&attrs, tsz_reader_attrs(in)) < 0 || tsz_attrs_add_history(&attrs, argc, argv) < 0) {
        util_err_set(&err, "out of memory");
        goto done;
    }
    if (cfg.policy == AUG_SPEC && cfg.spec.gain_db > 0 && !o.have_gain_domain) {
        const char *lg = tsz_attrs_get(&attrs, "log");
        if (lg && strcmp(lg, "ln") == 0) cfg.spec.gain_domain = AUG_GAIN_LN;
        else if (lg && strcmp(lg, "db") == 0) cfg.spec.gain_domain = AUG_GAIN_DB;
        else {
            util_err_set(&err, "%s: cannot tell whether the values are ln, dB or power (no 'log' attribute): "
                         "give --gain-domain", tsz_reader_path(in));
            goto done;
        }
    }
    tsz_wopts wo;
    tsz_wopts_default(&wo);
    wo.level = o.level;
    wo.raw = o.raw;
    if (aug_stream(&cfg, in, o.output, &attrs, &wo, &err) < 0) goto done;
    rc = 0;
done:
    if (rc) util_report(&err);
    tsz_reader_close(in);
    tsz_attrs_free(&attrs);
    return rc;
}
