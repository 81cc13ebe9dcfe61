/* img2tensor: PNG and JPEG images to a TSZ image stream (3 x H x W, RGB, f32 in [0, 1] or u8), with
 * ImageFolder-style labels.  Decoding runs on -j threads in batches; records come out in input order. */
#include <getopt.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "img.h"
#include "tsz.h"
#include "util.h"

struct opts {
    const char *output, *list, *classes;
    int resize, crop, u8, labels, skip_bad, threads, level, raw, verbose, normalize;
    float mean[3], std[3];
    int have_mean, have_std;
    int matte;     /* -1: drop alpha (PIL's convert('RGB')); 0..255: blend onto this gray */
};

struct item {
    char *path;
    char *cls;     /* class name, NULL when unlabelled */
    int label;
};

struct items {
    struct item *v;
    size_t n, cap;
};

static const float imagenet_mean[3] = {0.485f, 0.456f, 0.406f}, imagenet_std[3] = {0.229f, 0.224f, 0.225f};

static void usage(void)
{
    printf("Usage: img2tensor [OPTION]... [FILE|DIR]...\n"
           "Convert PNG and JPEG images to a TSZ stream of 3 x H x W RGB tensors (f32 in [0, 1] by default).\n"
           "Directories are walked recursively in sorted order; a file's label is its class directory\n"
           "(the first directory below DIR, as torchvision's ImageFolder), class names sorted.\n"
           "  -o, --output=FILE      write to FILE instead of stdout\n"
           "  -l, --list=FILE        read image paths from FILE ('-': stdin), one per line, optionally\n"
           "                         followed by a TAB and the class name\n"
           "      --resize=N         scale the shorter side to N pixels (area averaging when shrinking)\n"
           "      --crop=N           centre crop N x N (after --resize)\n"
           "      --u8               write u8 samples 0..255 instead of f32 in [0, 1]\n"
           "      --matte=V          blend transparent pixels onto the gray level V (0..255; 'white'\n"
           "                         255, 'gray' 128, 'black' 0) instead of dropping alpha\n"
           "      --mean=M           subtract M per channel: R,G,B, one value, or 'imagenet'\n"
           "      --std=S            then divide by S: R,G,B, one value, or 'imagenet'\n"
           "      --normalize=imagenet  the same as --mean=imagenet --std=imagenet\n"
           "      --no-labels        unlabelled images (label -1, no classes attribute)\n"
           "      --classes=FILE     class names in label order, one per line (first TAB field)\n"
           "      --skip-bad         skip unreadable or corrupt images and report their count\n"
           "  -j, --threads=N        decode with N threads (default: all cores)\n"
           "      --level=N          zstd level 1..19 (default 3)\n"
           "      --raw              write the stream uncompressed\n"
           "  -v, --verbose          show progress even when stderr is not a terminal\n"
           "  -h, --help             show this help and exit\n"
           "  -V, --version          show the version and exit\n"
           "Exit status: 0 success, 1 runtime error, 2 usage error.  See img2tensor(1), tsz(5).\n");
    exit(0);
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

static void parse_args(int argc, char **argv, struct opts *o)
{
    enum { O_RESIZE = 256, O_CROP, O_U8, O_MEAN, O_STD, O_NORM, O_NOLAB, O_CLASSES, O_SKIP, O_LEVEL, O_RAW, O_MATTE };
    static const struct option lo[] = {
        {"output", required_argument, 0, 'o'}, {"list", required_argument, 0, 'l'},
        {"resize", required_argument, 0, O_RESIZE}, {"crop", required_argument, 0, O_CROP},
        {"u8", no_argument, 0, O_U8}, {"mean", required_argument, 0, O_MEAN}, {"std", required_argument, 0, O_STD},
        {"normalize", required_argument, 0, O_NORM}, {"no-labels", no_argument, 0, O_NOLAB},
        {"classes", required_argument, 0, O_CLASSES}, {"skip-bad", no_argument, 0, O_SKIP},
        {"threads", required_argument, 0, 'j'}, {"level", required_argument, 0, O_LEVEL},
        {"raw", no_argument, 0, O_RAW}, {"matte", required_argument, 0, O_MATTE}, {"verbose", no_argument, 0, 'v'}, {"help", no_argument, 0, 'h'},
        {"version", no_argument, 0, 'V'}, {0, 0, 0, 0}};
    int c;
    while ((c = getopt_long(argc, argv, ":o:l:j:vhV", lo, NULL)) != -1) {
        switch (c) {
        case 'o': o->output = optarg; break;
        case 'l': o->list = optarg; break;
        case O_RESIZE: o->resize = (int)util_opt_long("--resize", optarg, 1, 16384); break;
        case O_CROP: o->crop = (int)util_opt_long("--crop", optarg, 1, 16384); break;
        case O_U8: o->u8 = 1; break;
        case O_MEAN: parse3("--mean", optarg, imagenet_mean, o->mean); o->have_mean = 1; break;
        case O_STD: parse3("--std", optarg, imagenet_std, o->std); o->have_std = 1; break;
        case O_NORM:
            if (strcmp(optarg, "imagenet") != 0) util_usage_error("--normalize: only 'imagenet' is known, not '%s'", optarg);
            memcpy(o->mean, imagenet_mean, sizeof o->mean);
            memcpy(o->std, imagenet_std, sizeof o->std);
            o->have_mean = o->have_std = 1;
            break;
        case O_NOLAB: o->labels = 0; break;
        case O_CLASSES: o->classes = optarg; break;
        case O_SKIP: o->skip_bad = 1; break;
        case 'j': o->threads = (int)util_opt_long("--threads", optarg, 1, 1024); break;
        case O_LEVEL: o->level = (int)util_opt_long("--level", optarg, 1, 19); break;
        case O_RAW: o->raw = 1; break;
        case O_MATTE:
            o->matte = strcmp(optarg, "white") == 0 ? 255 : strcmp(optarg, "gray") == 0 ? 128
                     : strcmp(optarg, "black") == 0 ? 0 : (int)util_opt_long("--matte", optarg, 0, 255);
            break;
        case 'v': o->verbose = 1; break;
        case 'h': usage(); break;
        case 'V': util_print_version(); break;
        default: util_option_error(c, argv);
        }
    }
    if (o->have_mean != o->have_std) util_usage_error("--mean and --std go together");
    o->normalize = o->have_mean;
    for (int i = 0; o->normalize && i < 3; i++)
        if (!(o->std[i] > 0)) util_usage_error("--std: values must be positive");
    if (o->normalize && o->u8) util_usage_error("--u8 cannot hold normalised values (drop --mean/--std)");
    if (optind == argc && !o->list) util_usage_error("no images: give files, directories or --list");
    if (o->classes && !o->labels) util_usage_error("--classes and --no-labels contradict each other");
}

static int add_item(struct items *it, const char *path, const char *cls)
{
    if (it->n == it->cap) {
        size_t nc = it->cap ? 2 * it->cap : 1024;
        struct item *nv = realloc(it->v, nc * sizeof *nv);
        if (!nv) return -1;
        it->v = nv;
        it->cap = nc;
    }
    struct item *e = &it->v[it->n];
    e->path = strdup(path);
    e->cls = cls ? strdup(cls) : NULL;
    e->label = -1;
    if (!e->path || (cls && !e->cls)) { free(e->path); free(e->cls); return -1; }
    it->n++;
    return 0;
}

/* Name of the directory holding path ("a/b/c.png" -> "b"), or NULL when the path has none. */
static char *parent_name(const char *path)
{
    const char *end = strrchr(path, '/');
    if (!end) return NULL;
    while (end > path && end[-1] == '/') end--;   /* "a//c.png" */
    const char *start = end;
    while (start > path && start[-1] != '/') start--;
    if (start == end) return NULL;
    return strndup(start, (size_t)(end - start));
}

struct walk_ctx {
    struct items *it;
    const char *dir;
    size_t dir_len;
    int labels;
    struct util_err *err;
};

static int is_image_name(const char *p)
{
    const char *dot = strrchr(p, '.');
    return dot && (strcasecmp(dot, ".png") == 0 || strcasecmp(dot, ".jpg") == 0 || strcasecmp(dot, ".jpeg") == 0);
}

static int on_file(const char *path, void *ctx)
{
    struct walk_ctx *w = ctx;
    if (!is_image_name(path)) return 0;
    char *cls = NULL;
    if (w->labels) {
        /* ImageFolder: the first directory below DIR; a file directly in DIR takes DIR's own name. */
        const char *rel = path + w->dir_len;
        while (*rel == '/') rel++;
        const char *slash = strchr(rel, '/');
        cls = slash ? strndup(rel, (size_t)(slash - rel)) : parent_name(path);
        if (!cls) return util_err_set(w->err, "%s: cannot tell its class (use --list or --no-labels)", path);
    }
    int rc = add_item(w->it, path, cls);
    free(cls);
    return rc < 0 ? util_err_set(w->err, "out of memory") : 0;
}

static int collect(struct items *it, const struct opts *o, int argc, char **argv, struct util_err *err)
{
    for (int i = 0; i < argc; i++) {
        struct stat st;
        if (stat(argv[i], &st) != 0) return util_err_sys(err, "%s", argv[i]);
        if (S_ISDIR(st.st_mode)) {
            size_t before = it->n;
            struct walk_ctx w = {it, argv[i], strlen(argv[i]), o->labels, err};
            if (util_walk_dir(argv[i], on_file, &w, err) != 0) return -1;
            if (it->n == before) return util_err_set(err, "%s: no PNG or JPEG files found", argv[i]);
        } else {
            char *cls = NULL;
            if (o->labels && !(cls = parent_name(argv[i])))
                return util_err_set(err, "%s: cannot tell its class from the path (use --list or --no-labels)", argv[i]);
            int rc = add_item(it, argv[i], cls);
            free(cls);
            if (rc < 0) return util_err_set(err, "out of memory");
        }
    }
    if (o->list) {
        FILE *f = strcmp(o->list, "-") == 0 ? stdin : fopen(o->list, "r");
        if (!f) return util_err_sys(err, "%s", o->list);
        char *line = NULL;
        size_t cap = 0;
        ssize_t len;
        long ln = 0;
        int rc = 0;
        while (rc == 0 && (len = getline(&line, &cap, f)) >= 0) {
            ln++;
            while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = 0;
            if (len == 0 || line[0] == '#') continue;
            char *tab = strchr(line, '\t');
            char *cls = NULL;
            if (tab) {
                *tab = 0;
                if (o->labels) cls = strdup(tab + 1);
            } else if (o->labels) {
                cls = parent_name(line);
                if (!cls) rc = util_err_set(err, "%s: line %ld: %s: no class (add TAB and a class name)", o->list, ln, line);
            }
            if (rc == 0 && (o->labels && !cls)) rc = util_err_set(err, "out of memory");
            if (rc == 0 && add_item(it, line, cls) < 0) rc = util_err_set(err, "out of memory");
            free(cls);
        }
        if (rc == 0 && ferror(f)) rc = util_err_sys(err, "%s: read error", o->list);
        free(line);
        if (f != stdin) fclose(f);
        if (rc < 0) return -1;
    }
    if (it->n == 0) return util_err_set(err, "no images given");
    return 0;
}


/* Label every item: classes from --classes in file order, else the sorted distinct names. */
static int assign_labels(struct items *it, const char *classes_file, char ***names_out, int *n_out,
                         struct util_err *err)
{
    char **names = NULL;
    size_t n = 0;
    if (classes_file) {
        FILE *f = fopen(classes_file, "r");
        if (!f) return util_err_sys(err, "%s", classes_file);
        char *line = NULL;
        size_t cap = 0, ncap = 0;
        ssize_t len;
        while ((len = getline(&line, &cap, f)) >= 0) {
            line[strcspn(line, "\t\r\n")] = 0;
            if (!line[0]) continue;
            if (n == ncap) {
                ncap = ncap ? 2 * ncap : 256;
                char **nn = realloc(names, ncap * sizeof *nn);
                if (!nn) { free(line); fclose(f); tsz_free_classes(names, (int)n); return util_err_set(err, "out of memory"); }
                names = nn;
            }
            if (!(names[n] = strdup(line))) { free(line); fclose(f); tsz_free_classes(names, (int)n); return util_err_set(err, "out of memory"); }
            n++;
        }
        free(line);
        fclose(f);
        if (n == 0) return util_err_set(err, "%s: no class names", classes_file);
        /* the names sorted, each with its line's label: a name listed twice is an error (which label
         * would it be?), and each image's class is a binary search (ImageNet: 1.28 M x 1,000 names) */
        struct named { char *name; int label; } *by_name = malloc(n * sizeof *by_name);
        if (!by_name) { tsz_free_classes(names, (int)n); return util_err_set(err, "out of memory"); }
        for (size_t k = 0; k < n; k++) by_name[k] = (struct named){names[k], (int)k};
        qsort(by_name, n, sizeof *by_name, util_cmp_str);   /* name is the first member */
        int rc = 0;
        for (size_t k = 1; k < n && rc == 0; k++)
            if (strcmp(by_name[k].name, by_name[k - 1].name) == 0) {
                const int a = by_name[k - 1].label, b = by_name[k].label;   /* qsort is not stable */
                rc = util_err_set(err, "%s: class '%s' is listed twice (as labels %d and %d)", classes_file,
                                  util_msgname(by_name[k].name).s, a < b ? a : b, a < b ? b : a);
            }
        for (size_t i = 0; i < it->n && rc == 0; i++) {
            struct named key = {it->v[i].cls, 0}, *hit = bsearch(&key, by_name, n, sizeof *by_name, util_cmp_str);
            if (!hit) rc = util_err_set(err, "%s: class '%s' is not in %s", it->v[i].path, it->v[i].cls, classes_file);
            else it->v[i].label = hit->label;
        }
        free(by_name);
        if (rc < 0) {
            tsz_free_classes(names, (int)n);
            return -1;
        }
    } else {
        char **all = malloc(it->n * sizeof *all);
        if (!all) return util_err_set(err, "out of memory");
        for (size_t i = 0; i < it->n; i++) all[i] = it->v[i].cls;
        qsort(all, it->n, sizeof *all, util_cmp_str);
        names = malloc(it->n * sizeof *names);
        if (!names) { free(all); return util_err_set(err, "out of memory"); }
        for (size_t i = 0; i < it->n; i++)
            if (i == 0 || strcmp(all[i], all[i - 1]) != 0) {
                if (!(names[n] = strdup(all[i]))) { free(all); tsz_free_classes(names, (int)n); return util_err_set(err, "out of memory"); }
                n++;
            }
        free(all);
        for (size_t i = 0; i < it->n; i++) {
            char **hit = bsearch(&it->v[i].cls, names, n, sizeof *names, util_cmp_str);
            it->v[i].label = (int)(hit - names);
        }
    }
    *names_out = names;
    *n_out = (int)n;
    return 0;
}

/* One image of a batch: its tensor and what happened. */
struct slot {
    void *buf;
    size_t cap;      /* bytes */
    tsz_rec rec;
    int ok;
    struct util_err err;
};

struct tstate {
    img_rgb im;
    img_work ws;
    uint8_t *file;
    size_t file_cap;
    float *img;
    size_t img_cap;
};

static void convert_one(const struct opts *o, const struct item *e, struct slot *s, struct tstate *t)
{
    size_t n;
    int oh, ow;
    s->ok = 0;
    if (img_read_file(e->path, &t->file, &t->file_cap, &n, &s->err) < 0 ||
        img_load(t->file, n, e->path, o->resize, o->crop, &t->im, &t->ws, &t->img, &t->img_cap, &oh, &ow, &s->err) < 0)
        return;
    size_t numel = (size_t)3 * oh * ow, bytes = numel * (o->u8 ? 1 : sizeof(float));
    if (bytes > s->cap || !s->buf) {
        void *nb = realloc(s->buf, bytes);
        if (!nb) { util_err_set(&s->err, "%s: out of memory", e->path); return; }
        s->buf = nb;
        s->cap = bytes;
    }
    if (o->u8) {
        img_to_u8(s->buf, t->img, numel);
    } else {
        memcpy(s->buf, t->img, numel * sizeof(float));
        if (o->normalize) img_normalize(s->buf, 3, (size_t)oh * ow, o->mean, o->std);
    }
    int64_t shape[3] = {3, oh, ow};
    size_t len = strlen(e->path);
    /* Names hold at most TSZ_MAX_NAME bytes: keep the end of a long path (the distinctive part). */
    tsz_rec_init(&s->rec, len > TSZ_MAX_NAME ? e->path + len - TSZ_MAX_NAME : e->path, o->u8 ? TSZ_U8 : TSZ_F32, 3, shape);
    s->rec.label = e->label;
    s->ok = 1;
}

int main(int argc, char **argv)
{
    util_set_progname(argv[0]);
    struct opts o = {.output = "-", .labels = 1, .level = 3, .matte = -1};
    parse_args(argc, argv, &o);
    struct util_err err = {{0}};
    struct items it = {0};
    char **names = NULL;
    int n_names = 0, rc = 1, nt = o.threads > 0 ? o.threads : util_ncpu();
    tsz_attrs attrs;
    tsz_attrs_init(&attrs);
    tsz_writer *w = NULL;
    struct slot *slots = NULL;
    struct tstate *ts = NULL;
    int B = 16 * nt;
    int64_t skipped = 0;

    if (collect(&it, &o, argc - optind, argv + optind, &err) < 0) goto done;
    if (o.labels && assign_labels(&it, o.classes, &names, &n_names, &err) < 0) goto done;

    tsz_attrs_set(&attrs, "kind", "image");
    tsz_attrs_set(&attrs, "channels", "rgb");
    tsz_attrs_set(&attrs, "range", o.u8 ? "0-255" : "0-1");
    if (o.resize) tsz_attrs_setf(&attrs, "resize", "%d", o.resize);
    if (o.crop) tsz_attrs_setf(&attrs, "crop", "%d", o.crop);
    if (o.matte >= 0) tsz_attrs_setf(&attrs, "matte", "%d", o.matte);
    if (o.normalize) {
        tsz_attrs_setf(&attrs, "mean", "%.9g,%.9g,%.9g", o.mean[0], o.mean[1], o.mean[2]);
        tsz_attrs_setf(&attrs, "std", "%.9g,%.9g,%.9g", o.std[0], o.std[1], o.std[2]);
    }
    if (o.labels && tsz_attrs_set_classes(&attrs, names, n_names) < 0) { util_err_set(&err, "out of memory"); goto done; }
    if (tsz_attrs_add_history(&attrs, argc, argv) < 0) { util_err_set(&err, "out of memory"); goto done; }
    tsz_wopts wo;
    tsz_wopts_default(&wo);
    wo.level = o.level;
    wo.raw = o.raw;
    if (!(w = tsz_writer_open(o.output, &attrs, o.skip_bad ? -1 : (int64_t)it.n, &wo, &err))) goto done;

    slots = calloc((size_t)B, sizeof *slots);
    ts = calloc((size_t)nt, sizeof *ts);
    for (int i = 0; ts && i < nt; i++) ts[i].im.composite = o.matte >= 0, ts[i].im.matte = o.matte;
    if (!slots || !ts) { util_err_set(&err, "out of memory"); goto done; }
    util_progress prog;
    util_progress_start(&prog, "images", (int64_t)it.n, o.verbose);
    for (size_t b0 = 0; b0 < it.n; b0 += (size_t)B) {
        int nb = it.n - b0 < (size_t)B ? (int)(it.n - b0) : B;
#pragma omp parallel for num_threads(nt) schedule(dynamic, 1)
        for (int i = 0; i < nb; i++) convert_one(&o, &it.v[b0 + i], &slots[i], &ts[omp_get_thread_num()]);
        for (int i = 0; i < nb; i++) {
            if (!slots[i].ok) {
                if (!o.skip_bad) { err = slots[i].err; goto done; }
                if (o.verbose) util_report(&slots[i].err);
                skipped++;
                continue;
            }
            if (tsz_write(w, &slots[i].rec, slots[i].buf, &err) < 0) goto done;
        }
        util_progress_update(&prog, (int64_t)(b0 + nb), NULL);
    }
    if (tsz_writer_finish(w, &err) < 0) goto done;
    util_progress_end(&prog, (int64_t)it.n, NULL);
    if (skipped) fprintf(stderr, "%s: skipped %lld unreadable images of %zu\n", util_progname(), (long long)skipped, it.n);
    rc = 0;
done:
    if (rc) util_report(&err);
    tsz_writer_close(w);
    tsz_attrs_free(&attrs);
    tsz_free_classes(names, n_names);
    if (slots) for (int i = 0; i < B; i++) free(slots[i].buf);
    if (ts)
        for (int i = 0; i < nt; i++) {
            img_rgb_free(&ts[i].im);
            img_work_free(&ts[i].ws);
            free(ts[i].file);
            free(ts[i].img);
        }
    free(slots); free(ts);
    for (size_t i = 0; i < it.n; i++) { free(it.v[i].path); free(it.v[i].cls); }
    free(it.v);
    return rc;
}
