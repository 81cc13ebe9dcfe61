/* tsne.c: the `tsne` tool — read feature vectors (any record shape, flattened), embed them in 2-D or
 * 3-D with t-SNE (lib/tsne.c), write the coordinates as a TSZ stream keeping each record's name,
 * label and fold, and optionally draw the map as a PNG with class names from the stream. */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tsne.h"
#include "tsz.h"
#include "util.h"

static const char help[] =
    "Usage: tsne [OPTION]... [INPUT]\n"
    "Embed the records of INPUT (a TSZ stream of feature vectors; default stdin) in 2-D or 3-D with\n"
    "t-SNE and write their coordinates as a TSZ stream, names, labels and folds kept.\n"
    "  -o, --output=FILE        write the coordinates to FILE instead of stdout\n"
    "      --png=FILE           draw the map (coloured by label, legend with class names)\n"
    "      --title=TEXT         title of the picture (default: input, points, perplexity, KL)\n"
    "  -d, --dims=N             output dimensions, 2 or 3 (default 2)\n"
    "  -p, --perplexity=X       effective number of neighbours (default 30)\n"
    "  -n, --iter=N             gradient steps (default 1000)\n"
    "      --exaggeration=X     early exaggeration factor (default 12)\n"
    "      --exag-iter=N        steps with early exaggeration (default 250)\n"
    "      --learning-rate=X    step size (default max(200, N/12))\n"
    "  -m, --method=M           repulsive forces: auto, bh (Barnes-Hut), fft (interpolation on a\n"
    "                           grid, FIt-SNE) or exact (default auto: in 2-D the cheaper of bh and\n"
    "                           fft at each step, in 3-D bh)\n"
    "      --exact              same as --method=exact: all pairs, N <= 4000\n"
    "      --theta=X            Barnes-Hut opening angle (default 0.5)\n"
    "      --init=pca|random    initial layout (default pca)\n"
    "      --seed=N             seed of the random layout and vantage-point tree (default 0)\n"
    "  -j, --threads=N          threads (default: all CPUs; the output does not depend on it)\n"
    "  -v, --verbose            progress and a summary on stderr even when it is not a terminal\n"
    "      --level=N            zstd level 1..19 (default 3)\n"
    "      --raw                write the stream uncompressed\n"
    "  -h, --help               show this help and exit\n"
    "  -V, --version            show the version and exit\n"
    "Exit status: 0 success, 1 runtime error, 2 usage error.  See tsne(1), score(1), tsz(5).\n";

enum { OPT_PNG = 1000, OPT_TITLE, OPT_EXAG, OPT_EXAG_ITER, OPT_LR, OPT_EXACT, OPT_THETA, OPT_INIT, OPT_SEED,
       OPT_LEVEL, OPT_RAW };

struct opts {
    const char *input, *output, *png, *title;
    int output_given, verbose;
    tsne_opts t;
    tsz_wopts w;
};

static void parse_args(int argc, char **argv, struct opts *o)
{
    static const struct option lo[] = {
        {"output", required_argument, NULL, 'o'}, {"png", required_argument, NULL, OPT_PNG},
        {"title", required_argument, NULL, OPT_TITLE}, {"dims", required_argument, NULL, 'd'},
        {"perplexity", required_argument, NULL, 'p'}, {"iter", required_argument, NULL, 'n'},
        {"exaggeration", required_argument, NULL, OPT_EXAG}, {"exag-iter", required_argument, NULL, OPT_EXAG_ITER},
        {"learning-rate", required_argument, NULL, OPT_LR}, {"method", required_argument, NULL, 'm'},
        {"exact", no_argument, NULL, OPT_EXACT}, {"theta", required_argument, NULL, OPT_THETA},
        {"init", required_argument, NULL, OPT_INIT}, {"seed", required_argument, NULL, OPT_SEED},
        {"threads", required_argument, NULL, 'j'}, {"verbose", no_argument, NULL, 'v'},
        {"level", required_argument, NULL, OPT_LEVEL}, {"raw", no_argument, NULL, OPT_RAW},
        {"help", no_argument, NULL, 'h'}, {"version", no_argument, NULL, 'V'}, {0}};
    int c;
    while ((c = getopt_long(argc, argv, ":o:d:p:n:m:j:vhV", lo, NULL)) != -1) {
        switch (c) {
        case 'o': o->output = optarg; o->output_given = 1; break;
        case OPT_PNG: o->png = optarg; break;
        case OPT_TITLE: o->title = optarg; break;
        case 'd': o->t.dims = (int)util_opt_long("--dims", optarg, 2, 3); break;
        case 'p': o->t.perplexity = util_opt_double("--perplexity", optarg, 1, 10000); break;
        case 'n': o->t.n_iter = (int)util_opt_long("--iter", optarg, 0, 1000000); break;
        case OPT_EXAG: o->t.exaggeration = util_opt_double("--exaggeration", optarg, 1, 1000); break;
        case OPT_EXAG_ITER: o->t.exag_iter = (int)util_opt_long("--exag-iter", optarg, 0, 1000000); break;
        case OPT_LR: o->t.learning_rate = util_opt_double("--learning-rate", optarg, 1e-6, 1e9); break;
        case 'm':
            if (strcmp(optarg, "auto") == 0) o->t.method = TSNE_AUTO;
            else if (strcmp(optarg, "bh") == 0) o->t.method = TSNE_BH;
            else if (strcmp(optarg, "fft") == 0) o->t.method = TSNE_FFT;
            else if (strcmp(optarg, "exact") == 0) o->t.method = TSNE_EXACT;
            else util_usage_error("--method: '%s' is not auto, bh, fft or exact", optarg);
            break;
        case OPT_EXACT: o->t.method = TSNE_EXACT; break;
        case OPT_THETA: o->t.theta = util_opt_double("--theta", optarg, 0, 10); break;
        case OPT_INIT:
            if (strcmp(optarg, "pca") == 0) o->t.init = TSNE_INIT_PCA;
            else if (strcmp(optarg, "random") == 0) o->t.init = TSNE_INIT_RANDOM;
            else util_usage_error("--init: '%s' is not pca or random", optarg);
            break;
        case OPT_SEED: o->t.seed = (uint64_t)util_opt_long("--seed", optarg, 0, INT64_MAX); break;
        case 'j': o->t.threads = (int)util_opt_long("--threads", optarg, 1, 1024); break;
        case 'v': o->verbose = 1; break;
        case OPT_LEVEL: o->w.level = (int)util_opt_long("--level", optarg, 1, 19); break;
        case OPT_RAW: o->w.raw = 1; break;
        case 'h': fputs(help, stdout); exit(fflush(stdout) == 0 ? 0 : 1);
        case 'V': util_print_version();
        default: util_option_error(c, argv);
        }
    }
    if (optind < argc) o->input = argv[optind++];
    if (optind < argc) util_usage_error("one input at most ('%s' is extra)", argv[optind]);
    if (o->t.exag_iter > o->t.n_iter) o->t.exag_iter = o->t.n_iter;
}

/* All records as rows of one float matrix, plus their names, labels and folds. */
struct data {
    int64_t n, cap;
    int d;
    float *x;
    char (*name)[TSZ_MAX_NAME + 1];
    int32_t *label, *fold;
};

static void data_free(struct data *s)
{
    free(s->x); free(s->name); free(s->label); free(s->fold);
}

static int read_all(tsz_reader *r, struct data *s, struct util_err *err)
{
    const char *path = tsz_reader_path(r);
    tsz_rec rec;
    int rc;
    while ((rc = tsz_next(r, &rec, err)) == 1) {
        int64_t idx = tsz_reader_index(r) - 1, numel = tsz_rec_numel(&rec);
        char shape[128];
        tsz_shape_str(&rec, shape, sizeof shape);
        if (s->n == 0) {
            if (numel < 1 || numel > (1 << 24))
                return util_err_set(err, "%s: record %lld: %lld values (1..16777216 supported)", path, (long long)idx,
                                    (long long)numel);
            s->d = (int)numel;
        } else if (numel != s->d) {
            return util_err_set(err, "%s: record %lld: shape %s has %lld values, earlier records %d", path,
                                (long long)idx, shape, (long long)numel, s->d);
        }
        if (s->n == s->cap) {
            int64_t cap = s->cap ? s->cap * 2 : 1024;
            if (cap > INT32_MAX / 4) return util_err_set(err, "%s: record %lld: too many records", path, (long long)idx);
            float *x = realloc(s->x, sizeof *x * (size_t)cap * s->d);
            if (x) s->x = x;
            void *nm = realloc(s->name, sizeof *s->name * (size_t)cap);
            if (nm) s->name = nm;
            int32_t *lb = realloc(s->label, sizeof *lb * (size_t)cap);
            if (lb) s->label = lb;
            int32_t *fd = realloc(s->fold, sizeof *fd * (size_t)cap);
            if (fd) s->fold = fd;
            if (!x || !nm || !lb || !fd)
                return util_err_set(err, "%s: record %lld: out of memory (%lld records of %d values)", path,
                                    (long long)idx, (long long)cap, s->d);
            s->cap = cap;
        }
        if (tsz_read_data_f32(r, &rec, s->x + (size_t)s->n * s->d, (size_t)s->d, err) < 0) return -1;
        for (int j = 0; j < s->d; j++)
            if (!isfinite(s->x[(size_t)s->n * s->d + j]))
                return util_err_set(err, "%s: record %lld: value %d is not finite", path, (long long)idx, j);
        memcpy(s->name[s->n], rec.name, sizeof rec.name);
        s->label[s->n] = rec.label;
        s->fold[s->n] = rec.fold;
        s->n++;
    }
    if (rc < 0) return -1;
    if (s->n == 0) return util_err_set(err, "%s: no records", path);
    return 0;
}

struct prog {
    util_progress p;
};

static void on_progress(void *ctx, int iter, int n_iter, double kl)
{
    struct prog *pr = ctx;
    char extra[64];
    snprintf(extra, sizeof extra, "KL %.4f", kl);
    if (iter < n_iter) util_progress_update(&pr->p, iter, extra);
}

static const char *method_name(const tsne_stats *st)
{
    return st->method == TSNE_EXACT ? "exact" : st->method == TSNE_BH ? "bh" : st->method == TSNE_FFT ? "fft" : "auto";
}

int main(int argc, char **argv)
{
    util_set_progname(argv[0]);
    struct opts o;
    memset(&o, 0, sizeof o);
    o.input = "-";
    o.output = "-";
    tsne_opts_default(&o.t);
    tsz_wopts_default(&o.w);
    parse_args(argc, argv, &o);
    /* a binary stream on a terminal helps nobody: with --png only the picture is wanted */
    int write_stream = 1;
    if (!o.output_given && isatty(STDOUT_FILENO)) {
        if (!o.png) util_usage_error("standard output is a terminal: give -o FILE (or --png FILE)");
        write_stream = 0;
    }

    struct util_err err = {{0}};
    struct data s;
    memset(&s, 0, sizeof s);
    tsz_reader *in = NULL;
    tsz_writer *out = NULL;
    tsz_attrs attrs;
    tsz_attrs_init(&attrs);
    char **classes = NULL;
    int n_classes = 0, rc = 1;
    float *y = NULL;
    struct prog pr;

    if (!(in = tsz_reader_open(o.input, &err)) || read_all(in, &s, &err) < 0) goto done;
    if (tsz_attrs_copy(&attrs, tsz_reader_attrs(in)) < 0 || tsz_attrs_get_classes(&attrs, &classes, &n_classes) < 0) {
        util_err_set(&err, "%s: out of memory", o.input);
        goto done;
    }
    if (o.t.perplexity > tsne_max_perplexity(s.n)) {
        util_err_set(&err, "%s: %lld records allow a perplexity of at most %.4g (asked %g; see --perplexity)", o.input,
                     (long long)s.n, tsne_max_perplexity(s.n), o.t.perplexity);
        goto done;
    }
    if (o.t.method == TSNE_EXACT && s.n > 4000) {
        util_err_set(&err, "%s: %lld records: --exact is for small sets (at most 4000)", o.input, (long long)s.n);
        goto done;
    }
    if (!(y = util_malloc((size_t)s.n * o.t.dims, sizeof *y, &err))) goto done;
    util_progress_start(&pr.p, "steps", o.t.n_iter, o.verbose);
    o.t.progress = pr.p.enabled ? on_progress : NULL;
    o.t.progress_ctx = &pr;
    tsne_stats st;
    double t0 = util_now();
    if (tsne_run(s.x, s.n, s.d, y, &o.t, &st, &err) < 0) {
        char msg[sizeof err.msg];
        snprintf(msg, sizeof msg, "%s", err.msg);
        util_err_set(&err, "%s: %s", o.input, msg);
        goto done;
    }
    char extra[64];
    snprintf(extra, sizeof extra, "KL %.4f", st.kl);
    util_progress_end(&pr.p, o.t.n_iter, extra);
    if (pr.p.enabled)
        fprintf(stderr, "tsne: %lld points, %d-D -> %d-D, perplexity %g, KL %.4f (%s: %d Barnes-Hut, %d FFT steps), %.2f s\n",
                (long long)s.n, s.d, o.t.dims, o.t.perplexity, st.kl, method_name(&st), st.steps_bh, st.steps_fft,
                util_now() - t0);

    if (write_stream) {
        if (tsz_attrs_set(&attrs, "kind", "tsne") < 0 || tsz_attrs_setf(&attrs, "tsne.dims", "%d", o.t.dims) < 0 ||
            tsz_attrs_setf(&attrs, "tsne.perplexity", "%g", o.t.perplexity) < 0 ||
            tsz_attrs_set(&attrs, "tsne.method", method_name(&st)) < 0 ||
            tsz_attrs_setf(&attrs, "tsne.iter", "%d", o.t.n_iter) < 0 ||
            tsz_attrs_set(&attrs, "tsne.init", o.t.init == TSNE_INIT_PCA ? "pca" : "random") < 0 ||
            tsz_attrs_setf(&attrs, "tsne.seed", "%llu", (unsigned long long)o.t.seed) < 0 ||
            tsz_attrs_setf(&attrs, "tsne.kl", "%.6f", st.kl) < 0 ||
            tsz_attrs_setf(&attrs, "tsne.input_dims", "%d", s.d) < 0 || tsz_attrs_add_history(&attrs, argc, argv) < 0) {
            util_err_set(&err, "%s: cannot set attributes", o.output);
            goto done;
        }
        if (!(out = tsz_writer_open(o.output, &attrs, s.n, &o.w, &err))) goto done;
        int64_t shape[1] = { o.t.dims };
        for (int64_t i = 0; i < s.n; i++)
            if (tsz_write_f32(out, s.name[i], s.label[i], s.fold[i], 1, shape, y + i * o.t.dims, &err) < 0) goto done;
    }
    if (o.png) {
        char title[512];
        if (!o.title) {
            const char *base = strrchr(o.input, '/');
            base = base ? base + 1 : strcmp(o.input, "-") == 0 ? "stdin" : o.input;
            snprintf(title, sizeof title, "t-SNE of %.200s: %lld points, perplexity %g, KL %.3f%s", base, (long long)s.n,
                     o.t.perplexity, st.kl, o.t.dims == 3 ? " (first 2 of 3 dims)" : "");
        }
        if (tsne_plot_png(y, s.n, o.t.dims, s.label, classes, n_classes, o.title ? o.title : title, o.png, &err) < 0)
            goto done;
    }
    if (out && tsz_writer_finish(out, &err) < 0) goto done;
    rc = 0;
done:
    if (rc) util_report(&err);
    tsz_reader_close(in);
    tsz_writer_close(out);
    tsz_attrs_free(&attrs);
    tsz_free_classes(classes, n_classes);
    data_free(&s);
    free(y);
    return rc;
}
