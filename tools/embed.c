/* embed: run a trained network over a TSZ stream in eval mode and write one f32 record per input with
 * the same name, label and fold: pooled penultimate features (default), a named block's pooled output,
 * logits, softmax probabilities, or the class scores of a weighted k-NN probe against a labelled
 * reference stream.  The record loop lives in lib/train.c (train_embed). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn.h"
#include "train.h"
#include "tsz.h"
#include "util.h"
#include "weights.h"


struct opts {
    const char *model, *input, *output, *layer, *knn;
    int kind, batch, threads, level, raw, verbose, knn_k, knn_loo, precision;
    double knn_t;
    weights_opts wo;          /* --key, --strip-prefix for safetensors/PyTorch models */
    const char **strip;
    int wflags;               /* WEIGHTS_NON_STRICT */
};

static void usage(void)
{
    printf("Usage: embed --model=MODEL [OPTION]... [INPUT]\n"
           "Write the pooled feature vector of each record of INPUT (default: stdin), computed by MODEL in\n"
           "evaluation mode, as one f32 record with the same name, label and fold.\n"
           "  -m, --model=MODEL    the network: a TSZ model (finetune, simclr-train), .safetensors or .pth\n"
           "      --key=NAME       checkpoint entry holding the state dict (.pth; default: automatic)\n"
           "      --strip-prefix=P remove prefix P from tensor names (repeatable; default: automatic)\n"
           "      --non-strict     drop unexpected and mis-shaped tensors of MODEL instead of failing\n"
           "  -o, --output=FILE    write to FILE instead of stdout\n"
           "      --logits         write the classifier's logits instead of features\n"
           "      --probs          write softmax probabilities instead of features\n"
           "      --layer=NAME     features of another point: conv1, maxpool, layer1..layer4, layerN.B,\n"
           "                       avgpool (default; the penultimate features)\n"
           "      --knn=REF        k-NN probe: instead of features, the class scores of a weighted\n"
           "                       k-nearest-neighbour vote (cosine similarity of the features) among\n"
           "                       the labelled records of REF, for score(1)\n"
           "      --knn-k=K        neighbours that vote (default 200)\n"
           "      --knn-t=T        vote weight exp(similarity / T) (default 0.07)\n"
           "      --knn-loo        leave-one-out k-NN probe of INPUT against itself (a file): no record\n"
           "                       votes for itself (REF, if given, must be INPUT record for record)\n"
           "  -b, --batch=N        records per forward pass (default 64)\n"
           "  -j, --threads=N      threads (default: all cores)\n"
           "      --precision=P    fp32 (default) or bf16: convolutions and linear layers take\n"
           "                       bf16-rounded operands and sum in fp32 (needs AVX512_BF16)\n"
           "      --level=N        zstd level 1..19 (default 3)\n"
           "      --raw            write the stream uncompressed\n"
           "  -v, --verbose        show progress even when stderr is not a terminal\n"
           "  -h, --help           show this help and exit\n"
           "  -V, --version        show the version and exit\n"
           "Exit status: 0 success, 1 runtime error, 2 usage error.  See embed(1), finetune(1), tsz(5).\n");
    exit(0);
}

static void parse_args(int argc, char **argv, struct opts *o)
{
    enum { O_LOGITS = 256, O_PROBS, O_LAYER, O_LEVEL, O_RAW, O_KEY, O_STRIP, O_NON_STRICT, O_KNN, O_KNN_K, O_KNN_T, O_KNN_LOO, O_PREC };
    static const struct option lo[] = {
        {"model", required_argument, 0, 'm'}, {"output", required_argument, 0, 'o'},
        {"logits", no_argument, 0, O_LOGITS}, {"probs", no_argument, 0, O_PROBS},
        {"layer", required_argument, 0, O_LAYER}, {"batch", required_argument, 0, 'b'},
        {"threads", required_argument, 0, 'j'}, {"level", required_argument, 0, O_LEVEL},
        {"raw", no_argument, 0, O_RAW}, {"verbose", no_argument, 0, 'v'}, {"help", no_argument, 0, 'h'},
        {"version", no_argument, 0, 'V'}, {"key", required_argument, 0, O_KEY},
        {"strip-prefix", required_argument, 0, O_STRIP}, {"non-strict", no_argument, 0, O_NON_STRICT},
        {"knn", required_argument, 0, O_KNN}, {"knn-k", required_argument, 0, O_KNN_K},
        {"knn-t", required_argument, 0, O_KNN_T}, {"knn-loo", no_argument, 0, O_KNN_LOO},
        {"precision", required_argument, 0, O_PREC}, {0, 0, 0, 0}};
    opterr = 0;
    if (!(o->strip = calloc((size_t)argc + 1, sizeof *o->strip))) {
        fprintf(stderr, "embed: out of memory\n");
        exit(1);
    }
    int c, n_kind = 0;
    while ((c = getopt_long(argc, argv, ":m:o:b:j:vhV", lo, NULL)) != -1) {
        switch (c) {
        case 'm': o->model = optarg; break;
        case 'o': o->output = optarg; break;
        case O_LOGITS: o->kind = TRAIN_EMBED_LOGITS, n_kind++; break;
        case O_PROBS: o->kind = TRAIN_EMBED_PROBS, n_kind++; break;
        case O_LAYER: o->layer = optarg, n_kind++; break;
        case 'b': o->batch = (int)util_opt_long("--batch", optarg, 1, 65536); break;
        case 'j': o->threads = (int)util_opt_long("--threads", optarg, 1, 1024); break;
        case O_PREC:
            if ((o->precision = nn_precision_from_name(optarg)) < 0)
                util_usage_error("--precision: '%s' is not fp32 or bf16", optarg);
            break;
        case O_LEVEL: o->level = (int)util_opt_long("--level", optarg, 1, 19); break;
        case O_RAW: o->raw = 1; break;
        case 'v': o->verbose = 1; break;
        case O_KEY: o->wo.key = optarg; break;
        case O_STRIP: o->strip[o->wo.n_strip++] = optarg; break;
        case O_NON_STRICT: o->wflags |= WEIGHTS_NON_STRICT; break;
        case O_KNN: o->knn = optarg; break;
        case O_KNN_K: o->knn_k = (int)util_opt_long("--knn-k", optarg, 1, 1000000); break;
        case O_KNN_T: o->knn_t = util_opt_double("--knn-t", optarg, 1e-6, 1e6); break;
        case O_KNN_LOO: o->knn_loo = 1; break;
        case 'h': usage(); break;
        case 'V': util_print_version(); break;
        default: util_option_error(c, argv);
        }
    }
    if (!o->model) util_usage_error("no model: give --model MODEL");
    if (n_kind > 1) util_usage_error("--logits, --probs and --layer exclude each other");
    if (optind + 1 < argc) util_usage_error("one input only ('%s' is extra)", argv[optind + 1]);
    if (optind < argc) o->input = argv[optind];
    if (o->knn_loo && !strcmp(o->input, "-"))
        util_usage_error("--knn-loo reads INPUT twice (as the reference, then as queries): give a file, not stdin");
    if (o->knn_loo && !o->knn) o->knn = o->input;
    if (o->knn && o->kind != TRAIN_EMBED_FEATURES) util_usage_error("--knn works on features: not with --logits or --probs");
    if (o->knn && !strcmp(o->knn, "-") && !strcmp(o->input, "-")) util_usage_error("--knn - and the input cannot both be stdin");
    o->wo.strip = o->strip;
}

/* history = the input's lines, then the model's lines the input does not already have (how the model
 * was trained), then this command. */
static int merge_history(tsz_attrs *a, const tsz_attrs *model, int argc, char **argv)
{
    const char *mh = tsz_attrs_get(model, "history");
    if (mh && *mh) {
        const char *ih = tsz_attrs_get(a, "history");
        size_t cap = (ih ? strlen(ih) : 0) + strlen(mh) + 2;
        char *s = malloc(cap);
        if (!s) return -1;
        size_t n = 0;
        s[0] = 0;
        if (ih && *ih) n += (size_t)snprintf(s, cap, "%s", ih);
        for (const char *p = mh; *p;) {
            size_t len = strcspn(p, "\n");
            int have = 0;
            for (const char *q = ih; q && *q && !have;) {
                size_t l2 = strcspn(q, "\n");
                have = l2 == len && !strncmp(p, q, len);
                q += l2 + (q[l2] == '\n');
            }
            if (!have && len) n += (size_t)snprintf(s + n, cap - n, "%s%.*s", n ? "\n" : "", (int)len, p);
            p += len + (p[len] == '\n');
        }
        int rc = tsz_attrs_set(a, "history", s);
        free(s);
        if (rc < 0) return -1;
    }
    return tsz_attrs_add_history(a, argc, argv);
}

int main(int argc, char **argv)
{
    util_set_progname(argv[0]);
    struct opts o = {.input = "-", .output = "-", .batch = 64, .knn_k = 200, .knn_t = 0.07};
    parse_args(argc, argv, &o);
    struct util_err err = {{0}};
    nn_model *m = NULL;
    train_reader in = {0}, ref = {0};
    float *ref_f = NULL;
    int32_t *ref_labels = NULL;
    int64_t ref_n = 0;
    char **ref_classes = NULL;
    int n_ref_classes = 0;
    tsz_writer *out = NULL;
    tsz_attrs mattrs, a;
    tsz_attrs_init(&mattrs);
    tsz_attrs_init(&a);
    int rc = 1;
    nn_set_threads(o.threads > 0 ? o.threads : util_ncpu());
    if (nn_set_precision(o.precision, &err) < 0) goto done;
    if (!(m = train_load_model_ex(o.model, &o.wo, NULL, o.wflags, stderr, &mattrs, &err))) goto done;
    if (o.layer && nn_layer_channels(m, o.layer) < 0) {
        util_err_set(&err, "%s: unknown layer '%s' (conv1, %slayer1..layer4, layerN.B, avgpool)", o.model, o.layer,
                     m->cfg.stem == NN_STEM_IMAGENET ? "maxpool, " : "");
        goto done;
    }
    if (o.kind != TRAIN_EMBED_FEATURES && m->cfg.num_classes <= 0) {
        util_err_set(&err, "%s: the model has no classifier (num_classes 0): no %s to write", o.model,
                     o.kind == TRAIN_EMBED_LOGITS ? "logits" : "probabilities");
        goto done;
    }
    train_embed_opts eo = {.kind = o.kind, .layer = o.layer, .batch = o.batch};
    if (o.knn) {   /* the reference set first: its features and labels, and its classes */
        if (train_reader_open(&ref, o.knn, &err) < 0 ||
            train_embed_collect(m, &ref, &eo, o.verbose, &ref_f, &ref_labels, &ref_n, &err) < 0)
            goto done;
        if (ref_n == 0) {
            util_err_set(&err, "%s: no records: the k-NN reference is empty", o.knn);
            goto done;
        }
        if (tsz_attrs_get_classes(train_reader_attrs(&ref), &ref_classes, &n_ref_classes) < 0) goto oom;
        eo.knn_classes = n_ref_classes;
        for (int64_t i = 0; i < ref_n; i++)
            if (ref_labels[i] >= eo.knn_classes) eo.knn_classes = ref_labels[i] + 1;
        eo.knn_ref = ref_f, eo.knn_labels = ref_labels, eo.knn_n = ref_n, eo.knn_k = o.knn_k, eo.knn_t = o.knn_t;
        eo.knn_loo = o.knn_loo;
    }
    if (train_reader_open(&in, o.input, &err) < 0) goto done;
    const tsz_attrs *ia = train_reader_attrs(&in);
    if (o.knn && tsz_attrs_get(ia, "classes") && tsz_attrs_get(train_reader_attrs(&ref), "classes") &&
        strcmp(tsz_attrs_get(ia, "classes"), tsz_attrs_get(train_reader_attrs(&ref), "classes"))) {
        util_err_set(&err, "%s: its classes differ from those of the k-NN reference %s", o.input, o.knn);
        goto done;
    }
    if (tsz_attrs_copy(&a, ia) < 0) goto oom;
    /* companions are dropped, so the declared count holds only without them */
    int64_t declared = tsz_attrs_get(ia, "soft_labels") ? -1 : tsz_reader_declared(in.r);
    static const char *const drop[] = {"soft_labels", "records_total", "num_classes", "layer"};
    for (size_t i = 0; i < sizeof drop / sizeof *drop; i++) tsz_attrs_remove(&a, drop[i]);
    const char *kind = o.knn ? "knn" : o.kind == TRAIN_EMBED_LOGITS ? "logits" : o.kind == TRAIN_EMBED_PROBS ? "probs" : "features";
    const int dim = o.knn ? eo.knn_classes
                          : o.kind == TRAIN_EMBED_FEATURES ? nn_layer_channels(m, o.layer ? o.layer : "avgpool")
                                                           : m->cfg.num_classes;
    if (tsz_attrs_set(&a, "kind", kind) < 0 || tsz_attrs_setf(&a, "dim", "%d", dim) < 0 ||
        tsz_attrs_set(&a, "embed_model", o.model) < 0 || tsz_attrs_set(&a, "embed_arch", m->cfg.arch) < 0 ||
        (o.kind == TRAIN_EMBED_FEATURES && tsz_attrs_set(&a, "layer", o.layer ? o.layer : "avgpool") < 0))
        goto oom;
    if (o.knn && (tsz_attrs_set(&a, "knn_ref", o.knn) < 0 || tsz_attrs_setf(&a, "knn_k", "%d", o.knn_k) < 0 ||
                  tsz_attrs_setf(&a, "knn_t", "%g", o.knn_t) < 0 ||
                  (o.knn_loo && tsz_attrs_set(&a, "knn_loo", "1") < 0) ||
                  (n_ref_classes && tsz_attrs_set_classes(&a, ref_classes, n_ref_classes) < 0)))
        goto oom;
    if (o.kind != TRAIN_EMBED_FEATURES && !tsz_attrs_get(&a, "classes") && tsz_attrs_get(&mattrs, "classes") &&
        tsz_attrs_set(&a, "classes", tsz_attrs_get(&mattrs, "classes")) < 0)
        goto oom;
    if (merge_history(&a, &mattrs, argc, argv) < 0) goto oom;
    tsz_wopts wo;
    tsz_wopts_default(&wo);
    if (o.level) wo.level = o.level;
    wo.raw = o.raw;
    if (!(out = tsz_writer_open(o.output, &a, declared, &wo, &err)) || train_embed(m, &in, out, &eo, o.verbose, &err) < 0 ||
        tsz_writer_finish(out, &err) < 0)
        goto done;
    rc = 0;
    goto done;
oom:
    util_err_set(&err, "out of memory");
done:
    if (rc) util_report(&err);
    train_reader_close(&in);
    train_reader_close(&ref);
    free(ref_f);
    free(ref_labels);
    tsz_free_classes(ref_classes, n_ref_classes);
    tsz_writer_close(out);
    nn_model_free(m);
    tsz_attrs_free(&mattrs);
    tsz_attrs_free(&a);
    free(o.strip);
    return rc;
}
