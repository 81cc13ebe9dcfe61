/* tsz.c: the `tsz` tool — inspect, split, merge and convert TSZ tensor streams (tsz(1), bytes in tsz(5)).
 * main dispatches on the first argument; each subcommand parses its options and runs its record loop,
 * with selection, statistics and the .npy/.npz formats in lib/tszutil.c. */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "tsz.h"
#include "tszutil.h"
#include "util.h"
#include "weights.h"


/* ---------------------------------------------------------------- shared option handling */

static int g_argc;      /* the whole command line, for the history attribute */
static char **g_argv;

enum { OPT_LEVEL = 1000, OPT_RAW, OPT_NO_SHUFFLE, OPT_FOLD, OPT_LABEL, OPT_NAME, OPT_RANGE, OPT_INVERT,
       OPT_JSON, OPT_NO_VALUES, OPT_SEED, OPT_STACK, OPT_FORMAT, OPT_ATTR, OPT_CLASSES };

#define WRITE_LONGOPTS                                                                          \
    {"output", required_argument, NULL, 'o'}, {"level", required_argument, NULL, OPT_LEVEL},     \
    {"raw", no_argument, NULL, OPT_RAW}, {"no-shuffle", no_argument, NULL, OPT_NO_SHUFFLE},      \
    {"threads", required_argument, NULL, 'j'}
#define COMMON_LONGOPTS {"help", no_argument, NULL, 'h'}, {"version", no_argument, NULL, 'V'}
#define SELECT_LONGOPTS                                                                         \
    {"fold", required_argument, NULL, OPT_FOLD}, {"label", required_argument, NULL, OPT_LABEL},  \
    {"name", required_argument, NULL, OPT_NAME}, {"range", required_argument, NULL, OPT_RANGE},  \
    {"invert", no_argument, NULL, OPT_INVERT}

#define WRITE_HELP                                                                              \
    "  -o, --output=FILE    write to FILE instead of stdout\n"                                  \
    "      --level=N        zstd level 1..19 (default 3)\n"                                      \
    "      --raw            write the stream uncompressed\n"                                     \
    "      --no-shuffle     compress without the per-record byte shuffle\n"                      \
    "  -j, --threads=N      zstd worker threads (default 0: compress in the calling thread)\n"
#define SELECT_HELP                                                                             \
    "      --fold=N[,M...]  keep records of these folds\n"                                       \
    "      --label=N[,M...] keep records with these labels (-1: unlabelled)\n"                   \
    "      --name=GLOB      keep records whose name matches GLOB (repeatable: any of them)\n"    \
    "      --range=A:B      keep records A <= index < B (0-based; A: or :B open, A alone one)\n"  \
    "      --invert         keep the records the other tests reject\n"
#define END_HELP                                                                                \
    "  -h, --help           show this help and exit\n"                                           \
    "  -V, --version        show the version and exit\n"                                         \
    "Exit status: 0 success, 1 runtime error, 2 usage error.  See tsz(1), tsz(5).\n"

struct out_opts {
    const char *output;
    tsz_wopts w;
};

static void out_opts_init(struct out_opts *o)
{
    o->output = "-";
    tsz_wopts_default(&o->w);
}

/* Handle -o/--level/--raw/--no-shuffle/-j; 1 if c was one of them. */
static int write_opt(int c, struct out_opts *o)
{
    switch (c) {
    case 'o': o->output = optarg; return 1;
    case OPT_LEVEL: o->w.level = (int)util_opt_long("--level", optarg, 1, 19); return 1;
    case OPT_RAW: o->w.raw = 1; return 1;
    case OPT_NO_SHUFFLE: o->w.shuffle = 0; return 1;
    case 'j': o->w.threads = (int)util_opt_long("--threads", optarg, 0, 256); return 1;
    default: return 0;
    }
}

static int select_opt(int c, tszutil_select *s)
{
    switch (c) {
    case OPT_FOLD:
        if (tszutil_select_add_folds(s, optarg) < 0) util_usage_error("--fold: '%s' is not a list of integers", optarg);
        return 1;
    case OPT_LABEL:
        if (tszutil_select_add_labels(s, optarg) < 0) util_usage_error("--label: '%s' is not a list of integers", optarg);
        return 1;
    case OPT_NAME:
        if (tszutil_select_add_name(s, optarg) < 0) util_usage_error("--name: out of memory");
        return 1;
    case OPT_RANGE:
        if (tszutil_select_set_range(s, optarg) < 0) util_usage_error("--range: '%s' is not A:B, A:, :B or A", optarg);
        return 1;
    case OPT_INVERT: s->invert = 1; return 1;
    default: return 0;
    }
}

/* The cases every subcommand shares: help, version and getopt's complaints.  optstrings start with ':'
 * so that a missing argument is told apart from an unknown option. */
static void common_opt(int c, char **argv, const char *help)
{
    switch (c) {
    case 'h':
        fputs(help, stdout);
        exit(fflush(stdout) == 0 ? 0 : 1);
    case 'V': util_print_version();
    default: util_option_error(c, argv);
    }
}

static int add_history(tsz_attrs *a, struct util_err *err)
{
    if (tsz_attrs_add_history(a, g_argc, g_argv) < 0) return util_err_set(err, "out of memory");
    return 0;
}

/* Read the current record's data into *buf, grown as needed.  0 or -1. */
static int read_data(tsz_reader *r, const tsz_rec *rec, void **buf, size_t *cap, struct util_err *err)
{
    size_t bytes = tsz_rec_bytes(rec);
    if (bytes > *cap || !*buf) {
        void *nb = realloc(*buf, bytes ? bytes : 1);
        if (!nb)
            return util_err_set(err, "%s: record %lld (%s): out of memory (%zu bytes)", tsz_reader_path(r),
                                (long long)tsz_reader_index(r) - 1, util_msgname(rec->name).s, bytes);
        *buf = nb;
        *cap = bytes ? bytes : 1;
    }
    return tsz_read_data(r, *buf, *cap, err);
}

static int finish_stdout(struct util_err *err)
{
    if (fflush(stdout) != 0 || ferror(stdout)) return util_err_sys(err, "standard output");
    return 0;
}

/* ---------------------------------------------------------------- info */

static const char info_help[] =
    "Usage: tsz info [OPTION]... [FILE]...\n"
    "Describe each TSZ stream FILE (default: stdin): attributes, record count, dtypes and shapes, the\n"
    "label histogram with class names, folds, and min/max/mean/std of all values.\n"
    "      --json           print a JSON array with one object per FILE\n"
    "  -l, --list           also list every record (index, dtype, shape, label, fold, name)\n"
    "      --no-values      skip the value statistics (still reads and checks the whole stream)\n"
    END_HELP;

/* A safetensors or PyTorch file (detected by content): the model summary of weights(3). */
static int info_model_file(const char *path, int json, int *handled, struct util_err *err)
{
    *handled = 0;
    if (strcmp(path, "-") == 0) return 0;
    unsigned char head[16];
    FILE *f = fopen(path, "rb");
    if (!f) return 0;   /* tsz_reader_open reports it */
    size_t n = fread(head, 1, sizeof head, f);
    fclose(f);
    enum weights_format fmt = weights_detect(head, n);
    if (fmt != WEIGHTS_SAFETENSORS && fmt != WEIGHTS_PTH && fmt != WEIGHTS_PTH_LEGACY) return 0;
    *handled = 1;
    if (json) return util_err_set(err, "%s: a %s model file: --json describes TSZ streams only", path,
                                  weights_format_name(fmt));
    return weights_info_print(path, stdout, err);
}

static int info_one(const char *path, int json, int list, int values, json_t *out, struct util_err *err)
{
    int handled;
    int mrc = info_model_file(path, json, &handled, err);
    if (handled) return mrc;
    tsz_reader *r = tsz_reader_open(path, err);
    if (!r) return -1;
    tszutil_stats st;
    tszutil_stats_init(&st);
    json_t *recs = json && list ? json_array() : NULL;
    char *lines = NULL;
    size_t lines_len = 0;
    FILE *lf = !json && list ? open_memstream(&lines, &lines_len) : NULL;
    void *buf = NULL;
    size_t cap = 0;
    tsz_rec rec;
    int rc, ok = -1;
    if ((json && list && !recs) || (!json && list && !lf)) { util_err_set(err, "out of memory"); goto done; }
    while ((rc = tsz_next(r, &rec, err)) == 1) {
        int64_t idx = tsz_reader_index(r) - 1;
        if (values) {
            if (read_data(r, &rec, &buf, &cap, err) < 0) goto done;
        } else if (tsz_skip_data(r, err) < 0) {
            goto done;
        }
        if (tszutil_stats_add(&st, &rec, values ? buf : NULL, err) < 0) goto done;
        if (recs) json_array_append_new(recs, tszutil_rec_json(&rec, idx));
        if (lf) tszutil_rec_print(lf, &rec, idx);
    }
    if (rc < 0) goto done;
    if (json) {
        json_t *o = tszutil_stats_json(path, tsz_reader_attrs(r), tsz_reader_declared(r), &st);
        if (!o) { util_err_set(err, "out of memory"); goto done; }
        if (recs) { json_object_set_new(o, "record_list", recs); recs = NULL; }
        json_array_append_new(out, o);
    } else {
        tszutil_stats_print(stdout, path, tsz_reader_attrs(r), tsz_reader_declared(r), &st);
        if (lf) {
            fclose(lf);
            lf = NULL;
            printf("  record list:\n%s", lines);
        }
    }
    ok = 0;
done:
    if (lf) fclose(lf);
    free(lines);
    json_decref(recs);
    free(buf);
    tszutil_stats_free(&st);
    tsz_reader_close(r);
    return ok;
}

static int cmd_info(int argc, char **argv)
{
    static const struct option lo[] = {{"json", no_argument, NULL, OPT_JSON}, {"list", no_argument, NULL, 'l'},
                                       {"no-values", no_argument, NULL, OPT_NO_VALUES}, COMMON_LONGOPTS, {0}};
    int json = 0, list = 0, values = 1, c;
    while ((c = getopt_long(argc, argv, ":lhV", lo, NULL)) != -1) {
        if (c == OPT_JSON) json = 1;
        else if (c == 'l') list = 1;
        else if (c == OPT_NO_VALUES) values = 0;
        else common_opt(c, argv, info_help);
    }
    static char *dash[] = {"-"};
    char **files = optind < argc ? argv + optind : dash;
    int n = optind < argc ? argc - optind : 1, rc = 0, n_stdin = 0;
    for (int i = 0; i < n; i++) n_stdin += strcmp(files[i], "-") == 0;
    if (n_stdin > 1) util_usage_error("standard input ('-') given more than once");
    json_t *out = json ? json_array() : NULL;
    struct util_err err = {{0}};
    for (int i = 0; i < n; i++) {
        if (info_one(files[i], json, list, values, out, &err) < 0) { util_report(&err); rc = 1; }
        fflush(stdout);
    }
    if (json) {
        if (json_dumpf(out, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER) < 0) rc = 1;
        putchar('\n');
        json_decref(out);
    }
    if (finish_stdout(&err) < 0) { util_report(&err); rc = 1; }
    return rc;
}

/* ---------------------------------------------------------------- cat */

static const char cat_help[] =
    "Usage: tsz cat [OPTION]... [FILE]...\n"
    "Concatenate TSZ streams (default: stdin) into one, re-compressed as asked.  The output has the\n"
    "first stream's attributes; keys only later streams have are added, history lines they add are\n"
    "appended, and a 'classes' attribute that differs from the first stream's is an error; of two or\n"
    "more streams, records_total (one augment run's count) is dropped.\n"
    WRITE_HELP END_HELP;

static int copy_records(tsz_reader *r, tsz_writer *w, void **buf, size_t *cap, struct util_err *err)
{
    tsz_rec rec;
    int rc;
    while ((rc = tsz_next(r, &rec, err)) == 1)
        if (read_data(r, &rec, buf, cap, err) < 0 || tsz_write(w, &rec, *buf, err) < 0) return -1;
    return rc;
}

static int cmd_cat(int argc, char **argv)
{
    static const struct option lo[] = {WRITE_LONGOPTS, COMMON_LONGOPTS, {0}};
    struct out_opts o;
    out_opts_init(&o);
    int c;
    while ((c = getopt_long(argc, argv, ":o:j:hV", lo, NULL)) != -1)
        if (!write_opt(c, &o)) common_opt(c, argv, cat_help);
    static char *dash[] = {"-"};
    char **files = optind < argc ? argv + optind : dash;
    int n = optind < argc ? argc - optind : 1, n_stdin = 0, rc = 1;
    for (int i = 0; i < n; i++) n_stdin += strcmp(files[i], "-") == 0;
    if (n_stdin > 1) util_usage_error("standard input ('-') given more than once");

    struct util_err err = {{0}};
    tsz_attrs attrs;
    tsz_attrs_init(&attrs);
    tsz_reader **kept = calloc(n > 0 ? (size_t)n : 1, sizeof *kept), *r = NULL;
    tsz_writer *w = NULL;
    void *buf = NULL;
    size_t cap = 0;
    /* Pass 1: merge the headers.  Regular files are reopened for pass 2; stdin, pipes (as from
     * `<(command)`) and FIFOs can be read only once, so their readers stay open (each has read only
     * its header), while a long list of files does not hold a decoder per file. */
    if (!kept) { util_err_set(&err, "out of memory"); goto done; }
    for (int i = 0; i < n; i++) {
        if (!(r = tsz_reader_open(files[i], &err))) goto done;
        if (i == 0 ? tsz_attrs_copy(&attrs, tsz_reader_attrs(r)) < 0
                   : tszutil_merge_attrs(&attrs, files[0], tsz_reader_attrs(r), files[i], &err) < 0) {
            if (i == 0) util_err_set(&err, "out of memory");
            goto done;
        }
        struct stat st;
        if (strcmp(files[i], "-") == 0 || stat(files[i], &st) != 0 || !S_ISREG(st.st_mode)) kept[i] = r;
        else tsz_reader_close(r);
        r = NULL;
    }
    /* augment's records_total counts one part's records, not the whole: a reader would trust it */
    if (n > 1) tsz_attrs_remove(&attrs, "records_total");
    if (add_history(&attrs, &err) < 0) goto done;
    /* Declared count unknown: an input may itself be several streams concatenated byte-wise, whose
     * total only shows at its end. */
    if (!(w = tsz_writer_open(o.output, &attrs, -1, &o.w, &err))) goto done;
    for (int i = 0; i < n; i++) {
        if (kept[i]) { r = kept[i]; kept[i] = NULL; }
        else if (!(r = tsz_reader_open(files[i], &err))) goto done;
        if (copy_records(r, w, &buf, &cap, &err) < 0) goto done;
        tsz_reader_close(r);
        r = NULL;
    }
    if (tsz_writer_finish(w, &err) < 0) goto done;
    rc = 0;
done:
    if (rc) util_report(&err);
    tsz_reader_close(r);
    for (int i = 0; kept && i < n; i++) tsz_reader_close(kept[i]);
    free(kept);
    tsz_writer_close(w);
    tsz_attrs_free(&attrs);
    free(buf);
    return rc;
}

/* ---------------------------------------------------------------- select and head */

static const char select_help[] =
    "Usage: tsz select [OPTION]... [INPUT]\n"
    "Copy the records of INPUT (default: stdin) that pass every given test; a test with several values\n"
    "passes if any matches.  '--fold 3' and '--fold 3 --invert' split a stream exactly in two.\n"
    "In a stream with soft_labels=1, a record NAME#soft right after NAME (its mixup soft label)\n"
    "goes with it and does not count as a record of its own.\n"
    SELECT_HELP WRITE_HELP END_HELP;

static const char head_help[] =
    "Usage: tsz head [OPTION]... [INPUT]\n"
    "Copy the first N records of INPUT (default: stdin) and stop reading.  In a stream with\n"
    "soft_labels=1 a record NAME#soft right after NAME comes along without being counted.\n"
    "  -n, --records=N      how many records (default 10)\n"
    WRITE_HELP END_HELP;

/* The record loop of select and head: keep records by sel; stop after max_examples (-1: no limit). */
static int filter_stream(const char *input, const struct out_opts *o, const tszutil_select *sel,
                         int64_t max_examples)
{
    struct util_err err = {{0}};
    tsz_reader *r = NULL;
    tsz_writer *w = NULL;
    tsz_attrs attrs;
    tsz_attrs_init(&attrs);
    void *buf = NULL;
    size_t cap = 0;
    int rc = 1, keep = 0, st;
    char prev[TSZ_MAX_NAME + 1] = "";
    int64_t example = -1;
    tsz_rec rec;
    if (!(r = tsz_reader_open(input, &err))) goto done;
    if (tsz_attrs_copy(&attrs, tsz_reader_attrs(r)) < 0) { util_err_set(&err, "out of memory"); goto done; }
    if (add_history(&attrs, &err) < 0) goto done;
    if (!(w = tsz_writer_open(o->output, &attrs, -1, &o->w, &err))) goto done;
    int group = tszutil_soft_groups(tsz_reader_attrs(r));
    st = 0;
    while (max_examples != 0 && (st = tsz_next(r, &rec, &err)) == 1) {
        if (!(group && example >= 0 && tszutil_is_companion(prev, &rec))) {  /* a companion shares its example's fate */
            example++;
            if (max_examples >= 0 && example >= max_examples) break;
            if (tszutil_select_past_end(sel, example)) break;
            keep = tszutil_select_match(sel, &rec, example);
        }
        memcpy(prev, rec.name, sizeof prev);
        if (keep) {
            if (read_data(r, &rec, &buf, &cap, &err) < 0 || tsz_write(w, &rec, buf, &err) < 0) goto done;
        } else if (tsz_skip_data(r, &err) < 0) {
            goto done;
        }
        /* Without companions to wait for, stop as soon as nothing more can be kept: a slow writer
         * upstream need not produce the next record first. */
        if (!group && ((max_examples >= 0 && example + 1 >= max_examples) || tszutil_select_past_end(sel, example + 1)))
            break;
    }
    if (st < 0 || tsz_writer_finish(w, &err) < 0) goto done;
    rc = 0;
done:
    if (rc) util_report(&err);
    tsz_reader_close(r);
    tsz_writer_close(w);
    tsz_attrs_free(&attrs);
    free(buf);
    return rc;
}

static const char *one_input(int argc, char **argv)
{
    if (argc - optind > 1) util_usage_error("one INPUT expected, got %d", argc - optind);
    return optind < argc ? argv[optind] : "-";
}

static int cmd_select(int argc, char **argv)
{
    static const struct option lo[] = {SELECT_LONGOPTS, WRITE_LONGOPTS, COMMON_LONGOPTS, {0}};
    struct out_opts o;
    out_opts_init(&o);
    tszutil_select sel;
    tszutil_select_init(&sel);
    int c;
    while ((c = getopt_long(argc, argv, ":o:j:hV", lo, NULL)) != -1)
        if (!write_opt(c, &o) && !select_opt(c, &sel)) common_opt(c, argv, select_help);
    const char *input = one_input(argc, argv);
    int rc = filter_stream(input, &o, &sel, -1);
    tszutil_select_free(&sel);
    return rc;
}

static int cmd_head(int argc, char **argv)
{
    static const struct option lo[] = {{"records", required_argument, NULL, 'n'}, WRITE_LONGOPTS,
                                       COMMON_LONGOPTS, {0}};
    struct out_opts o;
    out_opts_init(&o);
    long n = 10;
    int c;
    while ((c = getopt_long(argc, argv, ":n:o:j:hV", lo, NULL)) != -1) {
        if (c == 'n') n = util_opt_long("-n", optarg, 0, LONG_MAX);
        else if (!write_opt(c, &o)) common_opt(c, argv, head_help);
    }
    const char *input = one_input(argc, argv);
    tszutil_select all;
    tszutil_select_init(&all);
    return filter_stream(input, &o, &all, n);
}

/* ---------------------------------------------------------------- shuffle */

static const char shuffle_help[] =
    "Usage: tsz shuffle [OPTION]... [INPUT]\n"
    "Copy the records of INPUT (default: stdin) in a random order that depends only on the seed.\n"
    "The whole stream is held in memory (its uncompressed size).  In a stream with soft_labels=1 a\n"
    "record NAME#soft right after NAME (its mixup soft label) stays right after it.\n"
    "      --seed=N         random seed (default 0)\n"
    WRITE_HELP END_HELP;

struct held {
    tsz_rec rec;
    void *data;
};

static int cmd_shuffle(int argc, char **argv)
{
    static const struct option lo[] = {{"seed", required_argument, NULL, OPT_SEED}, WRITE_LONGOPTS,
                                       COMMON_LONGOPTS, {0}};
    struct out_opts o;
    out_opts_init(&o);
    long seed = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":o:j:hV", lo, NULL)) != -1) {
        if (c == OPT_SEED) seed = util_opt_long("--seed", optarg, 0, LONG_MAX);
        else if (!write_opt(c, &o)) common_opt(c, argv, shuffle_help);
    }
    const char *input = one_input(argc, argv);
    struct util_err err = {{0}};
    tsz_reader *r = NULL;
    tsz_writer *w = NULL;
    tsz_attrs attrs;
    tsz_attrs_init(&attrs);
    struct held *h = NULL;
    int64_t n = 0, hcap = 0, n_groups = 0, *group = NULL, *perm = NULL;  /* group[g]: first record */
    int rc = 1, st;
    if (!(r = tsz_reader_open(input, &err))) goto done;
    int soft = tszutil_soft_groups(tsz_reader_attrs(r));
    for (;;) {
        if (n == hcap) {
            int64_t nc = hcap ? 2 * hcap : 1024;
            struct held *nh = realloc(h, nc * sizeof *nh);
            int64_t *ng = realloc(group, (nc + 1) * sizeof *ng);
            if (nh) h = nh;
            if (ng) group = ng;
            if (!nh || !ng) { util_err_set(&err, "%s: out of memory holding %lld records", input, (long long)n); goto done; }
            hcap = nc;
        }
        if ((st = tsz_next(r, &h[n].rec, &err)) <= 0) break;
        size_t cap = 0;
        h[n].data = NULL;
        if (read_data(r, &h[n].rec, &h[n].data, &cap, &err) < 0) { free(h[n].data); goto done; }
        if (n == 0 || !soft || !tszutil_is_companion(h[n - 1].rec.name, &h[n].rec)) group[n_groups++] = n;
        n++;
    }
    if (st < 0) goto done;
    group[n_groups] = n;
    if (!(perm = malloc((n_groups ? n_groups : 1) * sizeof *perm))) { util_err_set(&err, "out of memory"); goto done; }
    for (int64_t g = 0; g < n_groups; g++) perm[g] = g;
    util_rng rng;
    util_rng_seed(&rng, (uint64_t)seed);
    util_shuffle_i64(&rng, perm, n_groups);
    if (tsz_attrs_copy(&attrs, tsz_reader_attrs(r)) < 0) { util_err_set(&err, "out of memory"); goto done; }
    if (add_history(&attrs, &err) < 0) goto done;
    if (!(w = tsz_writer_open(o.output, &attrs, n, &o.w, &err))) goto done;
    for (int64_t g = 0; g < n_groups; g++)
        for (int64_t i = group[perm[g]]; i < group[perm[g] + 1]; i++)
            if (tsz_write(w, &h[i].rec, h[i].data, &err) < 0) goto done;
    if (tsz_writer_finish(w, &err) < 0) goto done;
    rc = 0;
done:
    if (rc) util_report(&err);
    for (int64_t i = 0; i < n; i++) free(h[i].data);
    free(h);
    free(group);
    free(perm);
    tsz_reader_close(r);
    tsz_writer_close(w);
    tsz_attrs_free(&attrs);
    return rc;
}

/* ---------------------------------------------------------------- npy */

static const char npy_help[] =
    "Usage: tsz npy -o FILE [OPTION]... [INPUT]\n"
    "Export records of INPUT (default: stdin) for NumPy: to FILE.npy the one selected record, to\n"
    "FILE.npz every selected record as member NAME.npy (numpy.savez's layout; a repeated or empty name\n"
    "gets '#INDEX'), or with --stack all selected records (same dtype and shape) as one array.\n"
    "bf16 data is written as float32 (NumPy has no bfloat16).\n"
    "  -o, --output=FILE    the .npy or .npz file ('-': stdout, with --format)\n"
    "      --format=FMT     npy or npz (default: from FILE's extension)\n"
    "      --stack          one array of shape (N, ...); in an .npz with members data, labels (int32),\n"
    "                       folds (int32), names (unicode) and, if the stream has them, classes\n"
    SELECT_HELP END_HELP;

/* Record data ready for NumPy: bf16 widened to f32 (into *conv). */
static const void *npy_data(const tsz_rec *rec, const void *data, float **conv, size_t *conv_cap, int *dtype,
                            struct util_err *err)
{
    *dtype = rec->dtype;
    if (rec->dtype != TSZ_BF16) return data;
    int64_t n = tsz_rec_numel(rec);
    if ((size_t)n > *conv_cap) {
        float *nc = realloc(*conv, (n ? n : 1) * sizeof *nc);
        if (!nc) { util_err_set(err, "out of memory"); return NULL; }
        *conv = nc;
        *conv_cap = n;
    }
    const uint16_t *p = data;
    for (int64_t i = 0; i < n; i++) (*conv)[i] = tsz_bf16_to_f32(p[i]);
    *dtype = TSZ_F32;
    return *conv;
}

/* Member names: the record name without leading '/', plus ".npy"; repeats get "#INDEX".  A small
 * open-addressing set keeps the check linear in the number of records. */
struct nameset {
    char **slot;
    size_t cap, n;
};

static uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

/* 1 if added, 0 if present, -1 out of memory. */
static int nameset_add(struct nameset *s, const char *name)
{
    if (2 * (s->n + 1) > s->cap) {
        size_t nc = s->cap ? 2 * s->cap : 256;
        char **ns = calloc(nc, sizeof *ns);
        if (!ns) return -1;
        for (size_t i = 0; i < s->cap; i++)
            if (s->slot[i]) {
                size_t j = hash_str(s->slot[i]) & (nc - 1);
                while (ns[j]) j = (j + 1) & (nc - 1);
                ns[j] = s->slot[i];
            }
        free(s->slot);
        s->slot = ns;
        s->cap = nc;
    }
    size_t j = hash_str(name) & (s->cap - 1);
    for (; s->slot[j]; j = (j + 1) & (s->cap - 1))
        if (strcmp(s->slot[j], name) == 0) return 0;
    if (!(s->slot[j] = strdup(name))) return -1;
    s->n++;
    return 1;
}

static void nameset_free(struct nameset *s)
{
    for (size_t i = 0; i < s->cap; i++) free(s->slot[i]);
    free(s->slot);
}

static int write_npy_file(const char *path, const char *hdr, size_t hl, const void *data, size_t n,
                          struct util_err *err)
{
    util_atomic_file af;
    if (util_atomic_open(&af, path, err) < 0) return -1;
    if (fwrite(hdr, 1, hl, af.fp) != hl || (n && fwrite(data, 1, n, af.fp) != n)) {
        util_err_sys(err, "%s: write failed", strcmp(path, "-") ? path : "standard output");
        util_atomic_abort(&af);
        return -1;
    }
    return util_atomic_commit(&af, err);
}

struct stack {
    tsz_rec first;       /* dtype and shape every record must share */
    int dtype;           /* exported dtype */
    uint8_t *data;
    size_t len, cap;
    int64_t n, ncap;
    int32_t *labels, *folds;
    char **names;
};

static int stack_add(struct stack *s, const tsz_rec *rec, const void *data, int dtype, const char *path,
                     int64_t index, struct util_err *err)
{
    if (s->n == 0) {
        s->first = *rec;
        s->dtype = dtype;
    } else if (rec->dtype != s->first.dtype || rec->ndim != s->first.ndim ||
               memcmp(rec->shape, s->first.shape, rec->ndim * sizeof rec->shape[0]) != 0) {
        char a[200], b[200];
        tsz_shape_str(rec, a, sizeof a);
        tsz_shape_str(&s->first, b, sizeof b);
        return util_err_set(err, "%s: record %lld (%s): %s %s cannot be stacked with the first record's %s %s", path,
                            (long long)index, util_msgname(rec->name).s, tsz_dtype_name(rec->dtype), a,
                            tsz_dtype_name(s->first.dtype), b);
    }
    size_t bytes = (size_t)tsz_rec_numel(rec) * tsz_dtype_size(dtype);
    if (s->len + bytes > s->cap) {
        size_t nc = s->cap ? s->cap : 1 << 20;
        while (nc < s->len + bytes) nc *= 2;
        uint8_t *nd = realloc(s->data, nc);
        if (!nd) return util_err_set(err, "%s: out of memory stacking %lld records", path, (long long)s->n);
        s->data = nd;
        s->cap = nc;
    }
    if (s->n == s->ncap) {
        int64_t nc = s->ncap ? 2 * s->ncap : 256;
        int32_t *nl = realloc(s->labels, nc * sizeof *nl);
        if (nl) s->labels = nl;
        int32_t *nf = realloc(s->folds, nc * sizeof *nf);
        if (nf) s->folds = nf;
        char **nn = realloc(s->names, nc * sizeof *nn);
        if (nn) s->names = nn;
        if (!nl || !nf || !nn) return util_err_set(err, "%s: out of memory", path);
        s->ncap = nc;
    }
    if (!(s->names[s->n] = strdup(rec->name))) return util_err_set(err, "%s: out of memory", path);
    if (bytes) memcpy(s->data + s->len, data, bytes);  /* (s->data is still NULL for empty records) */
    s->len += bytes;
    s->labels[s->n] = rec->label;
    s->folds[s->n] = rec->fold;
    s->n++;
    return 0;
}

static void stack_free(struct stack *s)
{
    for (int64_t i = 0; i < s->n; i++) free(s->names[i]);
    free(s->names);
    free(s->labels);
    free(s->folds);
    free(s->data);
}

static int stack_write(const struct stack *s, const char *out, int npz, const tsz_attrs *attrs,
                       struct util_err *err)
{
    int64_t shape[TSZ_MAX_DIMS + 1];
    shape[0] = s->n;
    memcpy(shape + 1, s->first.shape, s->first.ndim * sizeof shape[0]);
    char hdr[1024];
    size_t hl = tszutil_npy_header(hdr, sizeof hdr, tszutil_npy_descr(s->dtype), s->first.ndim + 1, shape);
    if (!npz) return write_npy_file(out, hdr, hl, s->data, s->len, err);
    tszutil_zip *z = tszutil_zip_open(out, err);
    if (!z) return -1;
    void *imgs[4] = {NULL, NULL, NULL, NULL};
    size_t sizes[4] = {0, 0, 0, 0};
    char **cls = NULL;
    int nc = 0, rc = -1;
    const void *parts[2] = {hdr, s->data};
    size_t psz[2] = {hl, s->len};
    if (tsz_attrs_get_classes(attrs, &cls, &nc) < 0 || !(imgs[0] = tszutil_npy_i32(s->labels, s->n, &sizes[0])) ||
        !(imgs[1] = tszutil_npy_i32(s->folds, s->n, &sizes[1])) || !(imgs[2] = tszutil_npy_unicode(s->names, s->n, &sizes[2])) ||
        (nc && !(imgs[3] = tszutil_npy_unicode(cls, nc, &sizes[3])))) {
        util_err_set(err, "out of memory");
        goto done;
    }
    if (tszutil_zip_add(z, "data.npy", 2, parts, psz, err) < 0 ||
        tszutil_zip_add(z, "labels.npy", 1, (const void *const *)&imgs[0], &sizes[0], err) < 0 ||
        tszutil_zip_add(z, "folds.npy", 1, (const void *const *)&imgs[1], &sizes[1], err) < 0 ||
        tszutil_zip_add(z, "names.npy", 1, (const void *const *)&imgs[2], &sizes[2], err) < 0 ||
        (nc && tszutil_zip_add(z, "classes.npy", 1, (const void *const *)&imgs[3], &sizes[3], err) < 0) ||
        tszutil_zip_finish(z, err) < 0)
        goto done;
    rc = 0;
done:
    for (int i = 0; i < 4; i++) free(imgs[i]);
    tsz_free_classes(cls, nc);
    tszutil_zip_close(z);
    return rc;
}

static int cmd_npy(int argc, char **argv)
{
    static const struct option lo[] = {{"output", required_argument, NULL, 'o'},
                                       {"format", required_argument, NULL, OPT_FORMAT},
                                       {"stack", no_argument, NULL, OPT_STACK}, SELECT_LONGOPTS,
                                       COMMON_LONGOPTS, {0}};
    const char *out = NULL, *format = NULL;
    int stack = 0, c;
    tszutil_select sel;
    tszutil_select_init(&sel);
    while ((c = getopt_long(argc, argv, ":o:hV", lo, NULL)) != -1) {
        if (c == 'o') out = optarg;
        else if (c == OPT_FORMAT) format = optarg;
        else if (c == OPT_STACK) stack = 1;
        else if (!select_opt(c, &sel)) common_opt(c, argv, npy_help);
    }
    const char *input = one_input(argc, argv);
    if (!out) util_usage_error("no output: give -o FILE.npy or -o FILE.npz");
    if (!format) {
        size_t l = strlen(out);
        if (l > 4 && strcmp(out + l - 4, ".npy") == 0) format = "npy";
        else if (l > 4 && strcmp(out + l - 4, ".npz") == 0) format = "npz";
        else util_usage_error("cannot tell the format from '%s': name it .npy or .npz, or give --format", out);
    }
    if (strcmp(format, "npy") != 0 && strcmp(format, "npz") != 0)
        util_usage_error("--format: '%s' is neither npy nor npz", format);
    int npz = format[2] == 'z';

    struct util_err err = {{0}};
    tsz_reader *r = NULL;
    tszutil_zip *z = NULL;
    struct nameset used = {0};
    struct stack sk;
    memset(&sk, 0, sizeof sk);
    void *buf = NULL, *one = NULL;
    float *conv = NULL;
    size_t cap = 0, conv_cap = 0;
    tsz_rec rec, one_rec;
    int rc = 1, st, keep = 0, one_dtype = 0;
    int64_t example = -1, matched = 0, one_index = 0;
    char prev[TSZ_MAX_NAME + 1] = "";
    if (!(r = tsz_reader_open(input, &err))) goto done;
    if (npz && !stack && !(z = tszutil_zip_open(out, &err))) goto done;
    int group = tszutil_soft_groups(tsz_reader_attrs(r));
    while ((st = tsz_next(r, &rec, &err)) == 1) {
        int64_t index = tsz_reader_index(r) - 1;
        if (!(group && example >= 0 && tszutil_is_companion(prev, &rec))) {
            example++;
            if (tszutil_select_past_end(&sel, example)) break;
            keep = tszutil_select_match(&sel, &rec, example);
        }
        memcpy(prev, rec.name, sizeof prev);
        if (!keep) {
            if (tsz_skip_data(r, &err) < 0) goto done;
            continue;
        }
        if (read_data(r, &rec, &buf, &cap, &err) < 0) goto done;
        int dtype;
        const void *d = npy_data(&rec, buf, &conv, &conv_cap, &dtype, &err);
        if (!d) goto done;
        size_t bytes = (size_t)tsz_rec_numel(&rec) * tsz_dtype_size(dtype);
        matched++;
        if (stack) {
            if (stack_add(&sk, &rec, d, dtype, input, index, &err) < 0) goto done;
        } else if (!npz) {
            if (matched > 1) {
                util_err_set(&err, "%s: records %lld (%s) and %lld (%s) both selected: a .npy file holds one "
                             "(narrow the selection, use --stack or an .npz file)", input, (long long)one_index,
                             util_msgname(one_rec.name).s, (long long)index, util_msgname(rec.name).s);
                goto done;
            }
            if (!(one = malloc(bytes ? bytes : 1))) { util_err_set(&err, "out of memory"); goto done; }
            memcpy(one, d, bytes);
            one_rec = rec;
            one_index = index;
            one_dtype = dtype;
        } else {
            char name[TSZ_MAX_NAME + 256];
            const char *base = rec.name;
            while (*base == '/') base++;
            snprintf(name, sizeof name, "%s.npy", base);
            int added = *base ? nameset_add(&used, name) : 0;
            for (int k = 0; added == 0; k++) {  /* empty or repeated: make it unique with the index */
                if (k == 0) snprintf(name, sizeof name, "%s#%lld.npy", base, (long long)index);
                else snprintf(name, sizeof name, "%s#%lld.%d.npy", base, (long long)index, k);
                added = nameset_add(&used, name);
            }
            if (added < 0) { util_err_set(&err, "out of memory"); goto done; }
            char hdr[1024];
            size_t hl = tszutil_npy_header(hdr, sizeof hdr, tszutil_npy_descr(dtype), rec.ndim, rec.shape);
            const void *parts[2] = {hdr, d};
            size_t sizes[2] = {hl, bytes};
            if (tszutil_zip_add(z, name, 2, parts, sizes, &err) < 0) goto done;
        }
    }
    if (st < 0) goto done;
    if (stack) {
        if (sk.n == 0) { util_err_set(&err, "%s: no record selected, nothing to stack", input); goto done; }
        if (stack_write(&sk, out, npz, tsz_reader_attrs(r), &err) < 0) goto done;
    } else if (!npz) {
        if (!matched) { util_err_set(&err, "%s: no record selected", input); goto done; }
        char hdr[1024];
        size_t hl = tszutil_npy_header(hdr, sizeof hdr, tszutil_npy_descr(one_dtype), one_rec.ndim, one_rec.shape);
        if (write_npy_file(out, hdr, hl, one, (size_t)tsz_rec_numel(&one_rec) * tsz_dtype_size(one_dtype), &err) < 0)
            goto done;
    } else if (tszutil_zip_finish(z, &err) < 0) {
        goto done;
    }
    rc = 0;
done:
    if (rc) util_report(&err);
    tsz_reader_close(r);
    tszutil_zip_close(z);
    nameset_free(&used);
    stack_free(&sk);
    tszutil_select_free(&sel);
    free(buf);
    free(one);
    free(conv);
    return rc;
}

/* ---------------------------------------------------------------- from-npy */

static const char from_npy_help[] =
    "Usage: tsz from-npy [OPTION]... [FILE.npy]...\n"
    "Make a TSZ stream with one record per NumPy .npy FILE (default: stdin), named after the file\n"
    "without its directory and .npy (standard input: an empty name).  Supported dtypes: float16/32/64, int8/16/32/64, uint8/16 and\n"
    "bool (stored as u8), either byte order, C or Fortran order.\n"
    "      --name=NAME      the record's name (one FILE only)\n"
    "      --label=N        label of every record (default -1: unlabelled)\n"
    "      --fold=N         fold of every record (default 0: none)\n"
    "      --attr=KEY=VALUE set a stream attribute (repeatable)\n"
    "      --classes=A,B,.. set the class names (attribute 'classes')\n"
    WRITE_HELP END_HELP;

static int cmd_from_npy(int argc, char **argv)
{
    static const struct option lo[] = {{"name", required_argument, NULL, OPT_NAME},
                                       {"label", required_argument, NULL, OPT_LABEL},
                                       {"fold", required_argument, NULL, OPT_FOLD},
                                       {"attr", required_argument, NULL, OPT_ATTR},
                                       {"classes", required_argument, NULL, OPT_CLASSES}, WRITE_LONGOPTS,
                                       COMMON_LONGOPTS, {0}};
    struct out_opts o;
    out_opts_init(&o);
    const char *name = NULL;
    long label = -1, fold = 0;
    int c;
    tsz_attrs attrs;
    tsz_attrs_init(&attrs);
    while ((c = getopt_long(argc, argv, ":o:j:hV", lo, NULL)) != -1) {
        if (c == OPT_NAME) {
            name = optarg;
            if (strlen(name) > TSZ_MAX_NAME) util_usage_error("--name: longer than %d bytes", TSZ_MAX_NAME);
        } else if (c == OPT_LABEL) label = util_opt_long("--label", optarg, INT32_MIN, INT32_MAX);
        else if (c == OPT_FOLD) fold = util_opt_long("--fold", optarg, INT32_MIN, INT32_MAX);
        else if (c == OPT_ATTR) {
            char *eq = strchr(optarg, '=');
            if (!eq) util_usage_error("--attr: '%s' is not KEY=VALUE", optarg);
            *eq = 0;
            if (tsz_attrs_set(&attrs, optarg, eq + 1) < 0) util_usage_error("--attr: invalid key '%s'", optarg);
            *eq = '=';
        } else if (c == OPT_CLASSES) {
            char *s = strdup(optarg);
            for (char *p = s; p && *p; p++)
                if (*p == ',') *p = '\n';
            if (!s || tsz_attrs_set(&attrs, "classes", s) < 0) util_usage_error("--classes: out of memory");
            free(s);
        } else if (!write_opt(c, &o)) {
            common_opt(c, argv, from_npy_help);
        }
    }
    static char *dash[] = {"-"};
    char **files = optind < argc ? argv + optind : dash;
    int n = optind < argc ? argc - optind : 1, n_stdin = 0, rc = 1;
    for (int i = 0; i < n; i++) n_stdin += strcmp(files[i], "-") == 0;
    if (n_stdin > 1) util_usage_error("standard input ('-') given more than once");
    if (name && n > 1) util_usage_error("--name needs exactly one FILE, got %d", n);

    struct util_err err = {{0}};
    tsz_writer *w = NULL;
    FILE *f = NULL;
    void *data = NULL;
    if (add_history(&attrs, &err) < 0) goto done;
    if (!(w = tsz_writer_open(o.output, &attrs, n, &o.w, &err))) goto done;
    for (int i = 0; i < n; i++) {
        const char *path = files[i], *shown = strcmp(path, "-") ? path : "standard input";
        if (!(f = strcmp(path, "-") ? fopen(path, "rb") : stdin)) { util_err_sys(&err, "%s", path); goto done; }
        tszutil_npy_info info;
        if (tszutil_npy_read_header(f, shown, &info, &err) < 0 || tszutil_npy_read_data(f, shown, &info, &data, &err) < 0)
            goto done;
        if (f != stdin) fclose(f);
        f = NULL;
        char rname[TSZ_MAX_NAME + 1];
        if (name) {
            snprintf(rname, sizeof rname, "%s", name);
        } else if (strcmp(path, "-") == 0) {
            rname[0] = 0;
        } else {
            const char *b = strrchr(path, '/');
            b = b ? b + 1 : path;
            size_t l = strlen(b);
            if (l > 4 && strcmp(b + l - 4, ".npy") == 0) l -= 4;
            if (l > TSZ_MAX_NAME) l = TSZ_MAX_NAME;
            memcpy(rname, b, l);
            rname[l] = 0;
        }
        tsz_rec rec;
        tsz_rec_init(&rec, rname, (enum tsz_dtype)info.dtype, info.ndim, info.shape);
        rec.label = (int32_t)label;
        rec.fold = (int32_t)fold;
        if (tsz_write(w, &rec, data, &err) < 0) goto done;
        free(data);
        data = NULL;
    }
    if (tsz_writer_finish(w, &err) < 0) goto done;
    rc = 0;
done:
    if (rc) util_report(&err);
    if (f && f != stdin) fclose(f);
    free(data);
    tsz_writer_close(w);
    tsz_attrs_free(&attrs);
    return rc;
}

/* ---------------------------------------------------------------- convert */

static const char convert_help[] =
    "Usage: tsz convert [OPTION]... IN [-o OUT]\n"
    "Convert model weights between formats.  IN (detected by content) is a TSZ model, a safetensors\n"
    "file or a PyTorch checkpoint (zip or legacy format; pickles are read by a restricted unpickler,\n"
    "nothing in the file is executed).  The weights are unwrapped, prefixes stripped, the ResNet\n"
    "inferred and matched strictly against its torchvision state dict.  OUT's extension chooses the\n"
    "format: .safetensors, .pth (torch.save zip format), anything else a TSZ model stream.\n"
    "What loading dropped or added is reported on stderr.\n"
    "      --key=NAME       the checkpoint entry holding the state dict (default: automatic)\n"
    "      --strip-prefix=P remove prefix P from names, dropping names without it (repeatable)\n"
    "      --arch=NAME      resnet18|34|50|101|152 instead of the inferred depth\n"
    "      --non-strict     drop unexpected and mis-shaped tensors instead of failing\n"
    WRITE_HELP END_HELP;

/* ---------------------------------------------------------------- norm */

static const char norm_help[] =
    "Usage: tsz norm --fit=FILE [OPTION]... [INPUT]\n"
    "Scale every channel c of each example of INPUT (default: stdin) to a target mean M_c and standard\n"
    "deviation S_c: y = (x - m_c) / s_c * S_c + M_c, where m_c and s_c are the channel's mean and\n"
    "(population) standard deviation over every example of the --fit stream, e.g. the training fold,\n"
    "and the targets are those of the --like stream, e.g. the images an encoder was pre-trained on, or\n"
    "--mean/--std (default 0 and 1).  Examples are C x H x W or H x W records; u8 values count as\n"
    "x / 255, as the trainers read them.  The output is f32; NAME#soft companions (soft_labels=1) are\n"
    "copied; the attribute norm records each channel's scale and shift.\n"
    "      --fit=FILE       the stream whose channel statistics are mapped to the targets\n"
    "      --like=FILE      target statistics: those of FILE's channels\n"
    "      --mean=M[,M...]  target means (one value for every channel, or one per channel)\n"
    "      --std=S[,S...]   target standard deviations (> 0; as --mean)\n"
    WRITE_HELP END_HELP;

/* Parse "a,b,c" into v (at most TSZUTIL_MAX_CHANNELS values); the count, or -1 when malformed. */
static int parse_doubles(const char *text, double *v, int positive)
{
    int n = 0;
    const char *p = text;
    for (;;) {
        char *end;
        errno = 0;
        double x = strtod(p, &end);
        if (end == p || errno || !isfinite(x) || (positive && !(x > 0)) || n == TSZUTIL_MAX_CHANNELS) return -1;
        v[n++] = x;
        if (*end == '\0') return n;
        if (*end != ',') return -1;
        p = end + 1;
    }
}

/* Targets for n_ch channels from a list of 1 or n_ch values (or the default d when none was given). */
static int expand_targets(double *out, const double *given, int n_given, int n_ch, double d, const char *opt,
                          struct util_err *err)
{
    if (n_given > 1 && n_given != n_ch)
        return util_err_set(err, "%s gives %d values for %d channels", opt, n_given, n_ch);
    for (int k = 0; k < n_ch; k++) out[k] = n_given == 0 ? d : given[n_given == 1 ? 0 : k];
    return 0;
}

static int norm_stream(const char *input, const char *fit, const char *like, const double *mean_in, int n_mean,
                       const double *std_in, int n_std, const struct out_opts *o)
{
    struct util_err err = {{0}};
    tsz_reader *r = NULL;
    tsz_writer *w = NULL;
    tsz_attrs attrs;
    tsz_attrs_init(&attrs);
    void *buf = NULL;
    size_t cap = 0;
    float *x = NULL;
    size_t xcap = 0;
    char *note = NULL;
    int rc = 1, st;
    static tszutil_chstats src, ref;   /* 10 KB each: off the stack */
    tszutil_chstats_init(&src);
    tszutil_chstats_init(&ref);
    double scale[TSZUTIL_MAX_CHANNELS], shift[TSZUTIL_MAX_CHANNELS], tm[TSZUTIL_MAX_CHANNELS], ts[TSZUTIL_MAX_CHANNELS];
    if (tszutil_chstats_file(&src, fit, &err) < 0) goto done;
    const int nc = src.n_ch;
    if (like) {
        if (tszutil_chstats_file(&ref, like, &err) < 0) goto done;
        if (ref.n_ch != nc) {
            util_err_set(&err, "%s: %d channels, but %s has %d", like, ref.n_ch, fit, nc);
            goto done;
        }
        for (int k = 0; k < nc; k++) tszutil_chstats_get(&ref, k, &tm[k], &ts[k]);
    } else if (expand_targets(tm, mean_in, n_mean, nc, 0.0, "--mean", &err) < 0 ||
               expand_targets(ts, std_in, n_std, nc, 1.0, "--std", &err) < 0) {
        goto done;
    }
    size_t nlen = 0;
    FILE *nf = open_memstream(&note, &nlen);
    if (!nf) { util_err_set(&err, "out of memory"); goto done; }
    for (int k = 0; k < nc; k++) {
        double m, s;
        tszutil_chstats_get(&src, k, &m, &s);
        if (!(s > 0) || !isfinite(s)) {
            fclose(nf);
            util_err_set(&err, "%s: channel %d has standard deviation %g: cannot scale it", fit, k, s);
            goto done;
        }
        scale[k] = ts[k] / s;
        shift[k] = tm[k] - scale[k] * m;
        fprintf(nf, "%sc%d: %.9g x + %.9g", k ? "; " : "", k, scale[k], shift[k]);
    }
    fprintf(nf, " (fit %s%s%s)", fit, like ? ", like " : "", like ? like : "");
    if (fclose(nf) != 0) { util_err_set(&err, "out of memory"); goto done; }

    if (!(r = tsz_reader_open(input, &err))) goto done;
    if (tsz_attrs_copy(&attrs, tsz_reader_attrs(r)) < 0 || tsz_attrs_set(&attrs, "norm", note) < 0) {
        util_err_set(&err, "out of memory");
        goto done;
    }
    if (add_history(&attrs, &err) < 0) goto done;
    if (!(w = tsz_writer_open(o->output, &attrs, -1, &o->w, &err))) goto done;
    const int group = tszutil_soft_groups(tsz_reader_attrs(r));
    char prev[TSZ_MAX_NAME + 1] = "";
    tsz_rec rec;
    while ((st = tsz_next(r, &rec, &err)) == 1) {
        const int companion = group && tszutil_is_companion(prev, &rec);
        memcpy(prev, rec.name, sizeof prev);
        if (companion) {
            if (read_data(r, &rec, &buf, &cap, &err) < 0 || tsz_write(w, &rec, buf, &err) < 0) goto done;
            continue;
        }
        const int64_t idx = tsz_reader_index(r) - 1;
        const int k_ch = tszutil_example_channels(&rec);
        if (k_ch != nc) {
            if (k_ch < 0) util_err_set(&err, "%s: record %lld (%s): rank %d, expected C x H x W or H x W", input,
                                       (long long)idx, util_msgname(rec.name).s, rec.ndim);
            else util_err_set(&err, "%s: record %lld (%s): %d channels, but %s has %d", input, (long long)idx,
                              util_msgname(rec.name).s, k_ch, fit, nc);
            goto done;
        }
        const int64_t n = tsz_rec_numel(&rec), plane = n / nc;
        if ((size_t)n > xcap) {
            float *nx = realloc(x, (size_t)n * sizeof *x);
            if (!nx) {
                util_err_set(&err, "%s: record %lld (%s): out of memory", input, (long long)idx, util_msgname(rec.name).s);
                goto done;
            }
            x = nx;
            xcap = (size_t)n;
        }
        if (tsz_read_data_f32(r, &rec, x, (size_t)n, &err) < 0) goto done;
        const double unit = rec.dtype == TSZ_U8 ? 1.0 / 255.0 : 1.0;
        for (int k = 0; k < nc; k++) {
            const float a = (float)(scale[k] * unit), b = (float)shift[k];
            float *p = x + k * plane;
            for (int64_t i = 0; i < plane; i++) p[i] = a * p[i] + b;
        }
        rec.dtype = TSZ_F32;
        if (tsz_write(w, &rec, x, &err) < 0) goto done;
    }
    if (st < 0 || tsz_writer_finish(w, &err) < 0) goto done;
    rc = 0;
done:
    if (rc) util_report(&err);
    tsz_reader_close(r);
    tsz_writer_close(w);
    tsz_attrs_free(&attrs);
    free(buf);
    free(x);
    free(note);
    return rc;
}

static int cmd_norm(int argc, char **argv)
{
    enum { OPT_FIT = 1200, OPT_LIKE, OPT_MEAN, OPT_STD };
    static const struct option lo[] = {{"fit", required_argument, NULL, OPT_FIT}, {"like", required_argument, NULL, OPT_LIKE},
                                       {"mean", required_argument, NULL, OPT_MEAN}, {"std", required_argument, NULL, OPT_STD},
                                       WRITE_LONGOPTS, COMMON_LONGOPTS, {0}};
    struct out_opts o;
    out_opts_init(&o);
    const char *fit = NULL, *like = NULL;
    double mean[TSZUTIL_MAX_CHANNELS], std[TSZUTIL_MAX_CHANNELS];
    int n_mean = 0, n_std = 0, c;
    while ((c = getopt_long(argc, argv, ":o:j:hV", lo, NULL)) != -1) {
        if (write_opt(c, &o)) continue;
        switch (c) {
        case OPT_FIT: fit = optarg; break;
        case OPT_LIKE: like = optarg; break;
        case OPT_MEAN:
            if ((n_mean = parse_doubles(optarg, mean, 0)) < 0) util_usage_error("--mean: '%s' is not a list of numbers", optarg);
            break;
        case OPT_STD:
            if ((n_std = parse_doubles(optarg, std, 1)) < 0) util_usage_error("--std: '%s' is not a list of positive numbers", optarg);
            break;
        default: common_opt(c, argv, norm_help);
        }
    }
    if (!fit) util_usage_error("--fit=FILE is required (the stream whose statistics are mapped)");
    if (like && (n_mean || n_std)) util_usage_error("--like and --mean/--std exclude each other");
    const char *input = one_input(argc, argv);
    if (strcmp(input, "-") == 0 && (strcmp(fit, "-") == 0 || (like && strcmp(like, "-") == 0)))
        util_usage_error("standard input ('-') can be read once: give --fit/--like and INPUT as files");
    if (like && strcmp(fit, "-") == 0 && strcmp(like, "-") == 0) util_usage_error("standard input ('-') given twice");
    return norm_stream(input, fit, like, mean, n_mean, std, n_std, &o);
}

enum { OPT_KEY = 1100, OPT_STRIP, OPT_ARCH, OPT_NON_STRICT };

static int cmd_convert(int argc, char **argv)
{
    static const struct option lo[] = {{"key", required_argument, NULL, OPT_KEY},
                                       {"strip-prefix", required_argument, NULL, OPT_STRIP},
                                       {"arch", required_argument, NULL, OPT_ARCH},
                                       {"non-strict", no_argument, NULL, OPT_NON_STRICT},
                                       WRITE_LONGOPTS, COMMON_LONGOPTS, {0}};
    struct out_opts o;
    out_opts_init(&o);
    weights_opts wo = {0};
    const char **strip = calloc((size_t)argc + 1, sizeof *strip);
    if (!strip) { fprintf(stderr, "tsz convert: out of memory\n"); return 1; }
    const char *arch = NULL;
    int flags = 0, c;
    while ((c = getopt_long(argc, argv, ":o:j:hV", lo, NULL)) != -1) {
        if (write_opt(c, &o)) continue;
        switch (c) {
        case OPT_KEY: wo.key = optarg; break;
        case OPT_STRIP: strip[wo.n_strip++] = optarg; break;
        case OPT_ARCH: {
            weights_arch a;
            if (weights_arch_from_name(optarg, &a) < 0) util_usage_error("--arch: unknown architecture '%s'", optarg);
            arch = optarg;
            break;
        }
        case OPT_NON_STRICT: flags |= WEIGHTS_NON_STRICT; break;
        default: common_opt(c, argv, convert_help);
        }
    }
    if (optind != argc - 1) util_usage_error(optind >= argc ? "no input model" : "more than one input model");
    wo.strip = strip;
    struct util_err err = {{0}};
    int rc = weights_convert_run(argv[optind], o.output, &wo, arch, flags, g_argc, g_argv, &o.w, &err);
    if (rc < 0) util_report(&err);
    free(strip);
    return rc < 0 ? 1 : 0;
}

/* ---------------------------------------------------------------- dispatch */

static const struct command {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *what;
} commands[] = {
    {"info", cmd_info, "describe streams: attributes, records, shapes, labels, folds, values"},
    {"cat", cmd_cat, "concatenate streams, re-compress"},
    {"select", cmd_select, "keep records by fold, label, name or index"},
    {"head", cmd_head, "keep the first N records"},
    {"shuffle", cmd_shuffle, "reorder records at random (deterministic with --seed)"},
    {"norm", cmd_norm, "scale each channel to a target mean and standard deviation"},
    {"npy", cmd_npy, "export records to NumPy .npy / .npz"},
    {"from-npy", cmd_from_npy, "import NumPy .npy arrays as records"},
    {"convert", cmd_convert, "convert model weights: TSZ, safetensors, PyTorch .pth"},
};
#define N_COMMANDS (int)(sizeof commands / sizeof commands[0])

static void main_help(void)
{
    printf("Usage: tsz COMMAND [OPTION]... [FILE]...\n"
           "Inspect, split, merge and convert TSZ tensor streams (tsz(5)).\n"
           "Commands:\n");
    for (int i = 0; i < N_COMMANDS; i++) printf("  %-10s %s\n", commands[i].name, commands[i].what);
    printf("Run 'tsz COMMAND --help' for the options of one command.\n"
           "  -h, --help           show this help and exit\n"
           "  -V, --version        show the version and exit\n"
           "Exit status: 0 success, 1 runtime error, 2 usage error.  See tsz(1), tsz(5).\n");
    exit(fflush(stdout) == 0 ? 0 : 1);
}

int main(int argc, char **argv)
{
    util_set_progname(argv[0]);
    const char *base = strrchr(argv[0], '/');
    base = base ? base + 1 : argv[0];
    /* History lines name the tool, not where it was installed, so they do not depend on the build dir. */
    char **hist = malloc((argc + 1) * sizeof *hist);
    if (!hist) { fprintf(stderr, "%s: out of memory\n", base); return 1; }
    hist[0] = (char *)base;
    for (int i = 1; i <= argc; i++) hist[i] = argv[i];
    g_argc = argc;
    g_argv = hist;
    if (argc < 2) util_usage_error("no command (info, cat, select, head, shuffle, norm, npy, from-npy, convert)");
    if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) main_help();
    if (strcmp(argv[1], "-V") == 0 || strcmp(argv[1], "--version") == 0) util_print_version();
    for (int i = 0; i < N_COMMANDS; i++) {
        if (strcmp(argv[1], commands[i].name) != 0) continue;
        char prog[64];
        snprintf(prog, sizeof prog, "%s %s", base, commands[i].name);
        util_set_progname(prog);
        opterr = 0;
        int rc = commands[i].run(argc - 1, argv + 1);
        free(hist);
        return rc;
    }
    util_usage_error("unknown command '%s'", argv[1]);
}
