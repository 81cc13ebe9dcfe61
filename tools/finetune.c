/* finetune: train a ResNet classifier on a labelled TSZ stream, from scratch or from a pre-trained
 * backbone (--init), optionally only its new linear head (--freeze-backbone).  Defaults reproduce
 * Palanisamy et al. (2020): Adam, lr 1e-4, weight decay 1e-3, x0.1 every 30 epochs, 70 epochs, batch 32.
 * The work lives in lib/train.c; this file parses options, builds the model and names the files. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dist.h"
#include "nn.h"
#include "train.h"
#include "tsz.h"
#include "util.h"
#include "weights.h"


struct opts {
    const char *input, *output, *val, *best, *init, *log, *curves, *ckpt;
    const char *arch, *stem;
    int width, classes, freeze, epochs, batch, optimizer, schedule, step_size, warmup, shuffle, threads;
    int precision;            /* enum nn_precision */
    int no_ckpt, resume, keep_ckpt, verbose, nesterov, exclude_bn_bias, sync_bn;
    int set_arch, set_width, set_stem, set_epochs;
    weights_opts wo;          /* --key, --strip-prefix for a safetensors/PyTorch --init */
    const char **strip;
    int wflags;               /* --non-strict: WEIGHTS_NON_STRICT */
    double lr, wd, momentum, gamma, smoothing, dropout;
    unsigned long long seed;
};

static void usage(void)
{
    printf("Usage: finetune [OPTION]... TRAIN -o MODEL\n"
           "Train a ResNet classifier on the labelled records of TRAIN (a TSZ stream, '-' for stdin).\n"
           "Records are C x H x W (f32, u8 scaled by 1/255, or any numeric dtype); with mixup soft labels\n"
           "(\"NAME#soft\" records) the loss uses them.  An augment stream of several epochs is read in order.\n"
           "  -o, --output=MODEL       the model after the last epoch (required)\n"
           "      --val=FILE           evaluate on FILE after every epoch and keep the best model\n"
           "      --best=FILE          the best model by validation accuracy (default MODEL.best.tsz)\n"
           "      --init=PRETRAINED    start from the backbone of PRETRAINED (TSZ model, .safetensors\n"
           "                           or .pth), whose architecture, width and stem then apply; the\n"
           "                           classifier head is new; RGB conv1 weights are summed over\n"
           "                           channels for 1-channel data\n"
           "      --key=NAME           checkpoint entry of PRETRAINED holding the weights (.pth)\n"
           "      --strip-prefix=P     remove prefix P from PRETRAINED's names (repeatable)\n"
           "      --non-strict         drop unexpected and mis-shaped tensors of PRETRAINED\n"
           "      --classes=N          number of classes (default: the stream's classes, else max label + 1)\n"
           "      --arch=NAME          resnet18 (default), resnet34 or resnet50\n"
           "      --width=N            base width (default 64)\n"
           "      --stem=NAME          imagenet (default: 7x7/2 conv and max-pool) or small (3x3/1 conv)\n"
           "      --freeze-backbone    linear evaluation: train only the head, backbone BN in eval mode\n"
           "      --dropout=P          dropout before the head while training (default 0)\n"
           "      --epochs=N           passes over TRAIN (default 70)\n"
           "  -b, --batch=N            examples per step (default 32)\n"
           "      --lr=X               learning rate (default 1e-4)\n"
           "      --wd=X               weight decay (default 1e-3)\n"
           "      --wd-exclude-bn-bias no weight decay on batch-norm and bias parameters\n"
           "      --optimizer=NAME     adam (default), adamw or sgd\n"
           "      --momentum=X         SGD momentum (default 0.9)\n"
           "      --nesterov           SGD with Nesterov momentum\n"
           "      --schedule=NAME      step (default), cosine or const\n"
           "      --step-size=N        step schedule: epochs between decays (default 30)\n"
           "      --gamma=X            step schedule: decay factor (default 0.1)\n"
           "      --warmup=N           epochs of linear learning-rate warm-up (default 0)\n"
           "      --label-smoothing=X  label smoothing (default 0)\n"
           "      --seed=N             initialisation, example order and dropout (default 1)\n"
           "      --no-shuffle         visit the examples in stream order every epoch\n"
           "  -j, --threads=N          threads (default: all cores)\n"
           "      --precision=P        fp32 (default) or bf16: convolutions and linear layers take\n"
           "                           bf16-rounded operands and sum in fp32 (needs AVX512_BF16)\n"
           "      --sync-bn            under mpirun: batch norm over the global batch, not each rank's\n"
           "      --log=FILE           one TSV row per epoch: losses, accuracies, lr, images/s, seconds\n"
           "      --curves=FILE        loss and accuracy curves as a PNG\n"
           "      --checkpoint=FILE    checkpoint after every epoch (default MODEL.ckpt)\n"
           "      --no-checkpoint      write no checkpoint\n"
           "      --resume             continue from the checkpoint if there is one\n"
           "      --keep-checkpoint    keep the checkpoint after success (default: removed)\n"
           "  -v, --verbose            progress and epoch lines even when stderr is not a terminal\n"
           "  -h, --help               show this help and exit\n"
           "  -V, --version            show the version and exit\n"
           "Exit status: 0 success, 1 runtime error, 2 usage error.  See finetune(1), tsz(5).\n");
    exit(0);
}

static void parse_args(int argc, char **argv, struct opts *o)
{
    enum {
        O_VAL = 256, O_BEST, O_INIT, O_CLASSES, O_ARCH, O_WIDTH, O_STEM, O_FREEZE, O_DROPOUT, O_EPOCHS, O_LR, O_WD,
        O_WDX, O_OPTIM, O_MOM, O_NEST, O_SCHED, O_STEP, O_GAMMA, O_WARM, O_SMOOTH, O_SEED, O_NOSHUF, O_LOG, O_CURVES,
        O_CKPT, O_NOCKPT, O_RESUME, O_KEEP, O_KEY, O_STRIP, O_NON_STRICT, O_PREC, O_SYNC_BN
    };
    static const struct option lo[] = {
        {"output", required_argument, 0, 'o'}, {"val", required_argument, 0, O_VAL},
        {"best", required_argument, 0, O_BEST}, {"init", required_argument, 0, O_INIT},
        {"classes", required_argument, 0, O_CLASSES}, {"arch", required_argument, 0, O_ARCH},
        {"width", required_argument, 0, O_WIDTH}, {"stem", required_argument, 0, O_STEM},
        {"freeze-backbone", no_argument, 0, O_FREEZE}, {"dropout", required_argument, 0, O_DROPOUT},
        {"epochs", required_argument, 0, O_EPOCHS}, {"batch", required_argument, 0, 'b'},
        {"lr", required_argument, 0, O_LR}, {"wd", required_argument, 0, O_WD},
        {"wd-exclude-bn-bias", no_argument, 0, O_WDX}, {"optimizer", required_argument, 0, O_OPTIM},
        {"momentum", required_argument, 0, O_MOM}, {"nesterov", no_argument, 0, O_NEST},
        {"schedule", required_argument, 0, O_SCHED}, {"step-size", required_argument, 0, O_STEP},
        {"gamma", required_argument, 0, O_GAMMA}, {"warmup", required_argument, 0, O_WARM},
        {"label-smoothing", required_argument, 0, O_SMOOTH}, {"seed", required_argument, 0, O_SEED},
        {"no-shuffle", no_argument, 0, O_NOSHUF}, {"threads", required_argument, 0, 'j'},
        {"precision", required_argument, 0, O_PREC}, {"sync-bn", no_argument, 0, O_SYNC_BN},
        {"log", required_argument, 0, O_LOG}, {"curves", required_argument, 0, O_CURVES},
        {"checkpoint", required_argument, 0, O_CKPT}, {"no-checkpoint", no_argument, 0, O_NOCKPT},
        {"resume", no_argument, 0, O_RESUME}, {"keep-checkpoint", no_argument, 0, O_KEEP},
        {"verbose", no_argument, 0, 'v'}, {"help", no_argument, 0, 'h'}, {"version", no_argument, 0, 'V'},
        {"key", required_argument, 0, O_KEY}, {"strip-prefix", required_argument, 0, O_STRIP},
        {"non-strict", no_argument, 0, O_NON_STRICT}, {0, 0, 0, 0}};
    opterr = 0;
    if (!(o->strip = calloc((size_t)argc + 1, sizeof *o->strip))) {
        fprintf(stderr, "finetune: out of memory\n");
        exit(1);
    }
    int c;
    while ((c = getopt_long(argc, argv, ":o:b:j:vhV", lo, NULL)) != -1) {
        switch (c) {
        case 'o': o->output = optarg; break;
        case O_VAL: o->val = optarg; break;
        case O_BEST: o->best = optarg; break;
        case O_INIT: o->init = optarg; break;
        case O_CLASSES: o->classes = (int)util_opt_long("--classes", optarg, 1, 1000000); break;
        case O_ARCH:
            if (strcmp(optarg, "resnet18") && strcmp(optarg, "resnet34") && strcmp(optarg, "resnet50"))
                util_usage_error("--arch: '%s' is not resnet18, resnet34 or resnet50", optarg);
            o->arch = optarg, o->set_arch = 1;
            break;
        case O_WIDTH: o->width = (int)util_opt_long("--width", optarg, 1, 1024), o->set_width = 1; break;
        case O_STEM:
            if (strcmp(optarg, "imagenet") && strcmp(optarg, "small"))
                util_usage_error("--stem: '%s' is not imagenet or small", optarg);
            o->stem = optarg, o->set_stem = 1;
            break;
        case O_FREEZE: o->freeze = 1; break;
        case O_DROPOUT: o->dropout = util_opt_double("--dropout", optarg, 0, 0.99); break;
        case O_EPOCHS: o->epochs = (int)util_opt_long("--epochs", optarg, 1, 1000000), o->set_epochs = 1; break;
        case 'b': o->batch = (int)util_opt_long("--batch", optarg, 2, 65536); break;
        case O_LR: o->lr = util_opt_double("--lr", optarg, 0, 1e300); break;
        case O_WD: o->wd = util_opt_double("--wd", optarg, 0, 1e6); break;
        case O_WDX: o->exclude_bn_bias = 1; break;
        case O_OPTIM:
            if ((o->optimizer = nn_optim_kind_from_name(optarg)) < 0 || o->optimizer == NN_OPT_LARS)
                util_usage_error("--optimizer: '%s' is not adam, adamw or sgd", optarg);
            break;
        case O_MOM: o->momentum = util_opt_double("--momentum", optarg, 0, 0.9999); break;
        case O_NEST: o->nesterov = 1; break;
        case O_SCHED:
            if (!strcmp(optarg, "step")) o->schedule = NN_SCHED_STEP;
            else if (!strcmp(optarg, "cosine")) o->schedule = NN_SCHED_COSINE;
            else if (!strcmp(optarg, "const")) o->schedule = NN_SCHED_CONST;
            else util_usage_error("--schedule: '%s' is not step, cosine or const", optarg);
            break;
        case O_STEP: o->step_size = (int)util_opt_long("--step-size", optarg, 1, 1000000); break;
        case O_GAMMA: o->gamma = util_opt_double("--gamma", optarg, 0, 1e300); break;
        case O_WARM: o->warmup = (int)util_opt_long("--warmup", optarg, 0, 1000000); break;
        case O_SMOOTH: o->smoothing = util_opt_double("--label-smoothing", optarg, 0, 0.999); break;
        case O_SEED: o->seed = (unsigned long long)util_opt_long("--seed", optarg, 0, 0x7fffffffffffffffL); break;
        case O_NOSHUF: o->shuffle = 0; break;
        case 'j': o->threads = (int)util_opt_long("--threads", optarg, 1, 1024); break;
        case O_PREC:
            if ((o->precision = nn_precision_from_name(optarg)) < 0)
                util_usage_error("--precision: '%s' is not fp32 or bf16", optarg);
            break;
        case O_SYNC_BN: o->sync_bn = 1; break;
        case O_LOG: o->log = optarg; break;
        case O_CURVES: o->curves = optarg; break;
        case O_CKPT: o->ckpt = optarg; break;
        case O_NOCKPT: o->no_ckpt = 1; break;
        case O_RESUME: o->resume = 1; break;
        case O_KEEP: o->keep_ckpt = 1; break;
        case O_KEY: o->wo.key = optarg; break;
        case O_STRIP: o->strip[o->wo.n_strip++] = optarg; break;
        case O_NON_STRICT: o->wflags |= WEIGHTS_NON_STRICT; break;
        case 'v': o->verbose = 1; break;
        case 'h': usage(); break;
        case 'V': util_print_version(); break;
        default: util_option_error(c, argv);
        }
    }
    if (optind == argc) util_usage_error("no training stream given");
    if (optind + 1 < argc) util_usage_error("one training stream only ('%s' is extra)", argv[optind + 1]);
    o->input = argv[optind];
    if (!o->output) util_usage_error("no output model: give -o MODEL");
    if (o->no_ckpt && (o->ckpt || o->resume)) util_usage_error("--no-checkpoint contradicts --checkpoint and --resume");
    if (o->best && !o->val) util_usage_error("--best needs --val");
    if ((o->wo.key || o->wo.n_strip || o->wflags) && !o->init)
        util_usage_error("--key, --strip-prefix and --non-strict apply to --init only");
    o->wo.strip = o->strip;
}

/* Attributes every saved model carries: the training stream's (class names, how the inputs were made)
 * and its history plus this command.  --resume is left out of the history: it does not change the
 * result, and a resumed run must write the same bytes as an uninterrupted one. */
static int model_attrs(tsz_attrs *a, const tsz_attrs *in, int argc, char **argv)
{
    if (tsz_attrs_copy(a, in) < 0) return -1;
    /* keys that describe the data stream only, or that a model file reads as its own configuration */
    static const char *const drop[] = {"kind", "soft_labels", "records_total", "augment_start", "checkpoint",
                                       "train_log", "train_config", "optim", "optim_steps", "model", "arch", "width",
                                       "in_channels", "num_classes", "stem", "dropout", "head_layers", "head_hidden",
                                       "head_out"};
    for (size_t i = 0; i < sizeof drop / sizeof *drop; i++) tsz_attrs_remove(a, drop[i]);
    char **av = malloc(sizeof(char *) * (argc + 1));
    if (!av) return -1;
    int n = 0;
    for (int i = 0; i < argc; i++)
        if (strcmp(argv[i], "--resume")) av[n++] = argv[i];
    av[n] = NULL;
    int rc = tsz_attrs_add_history(a, n, av);
    free(av);
    return rc < 0 || tsz_attrs_set(a, "kind", "model") < 0 ? -1 : 0;
}

int main(int argc, char **argv)
{
    util_set_progname(argv[0]);
    struct opts o = {.width = 64, .epochs = 70, .batch = 32, .optimizer = NN_OPT_ADAM, .schedule = NN_SCHED_STEP,
                     .step_size = 30, .shuffle = 1, .lr = 1e-4, .wd = 1e-3, .momentum = 0.9, .gamma = 0.1,
                     .seed = 1, .arch = "resnet18", .stem = "imagenet"};
    parse_args(argc, argv, &o);
    struct util_err err = {{0}};
    train_data train = {0}, val = {0};
    train_reader stream = {0};
    nn_model *m = NULL, *pre = NULL;
    tsz_attrs mattrs, pattrs;
    tsz_attrs_init(&mattrs);
    tsz_attrs_init(&pattrs);
    char *ckpt = NULL, *best = NULL, *fp = NULL;
    int rc = 1;
    if (train_dist_start(o.input, o.output, &err) < 0) goto done;
    nn_set_threads(o.threads > 0 ? o.threads : util_ncpu());
    if (nn_set_precision(o.precision, &err) < 0) goto done;

    /* An augment stream of several epochs is read as it comes; anything else is held in memory. */
    int c, h, w, K;
    int64_t n, stream_start = 0;
    const tsz_attrs *tattrs;
    if (train_reader_open(&stream, o.input, &err) < 0) goto done;
    long aug_epochs = 0;
    tattrs = train_reader_attrs(&stream);
    if (tsz_attrs_get_long(tattrs, "augment_epochs", &aug_epochs) == 0 && aug_epochs > 1) {
        long total, views = 1, start = 0;
        const int per = tsz_attrs_get(tattrs, "soft_labels") ? 2 : 1;
        tsz_attrs_get_long(tattrs, "augment_views", &views);
        tsz_attrs_get_long(tattrs, "augment_start", &start);
        if (views != 1) {
            util_err_set(&err, "%s: an augment stream with %ld views per record (finetune takes --views 1)", o.input,
                         views);
            goto done;
        }
        if (tsz_attrs_get_long(tattrs, "records_total", &total) < 0 || total <= 0 || total % (aug_epochs * per) ||
            start % per) {
            util_err_set(&err, "%s: an augment stream of %ld epochs needs a consistent records_total attribute", o.input,
                         aug_epochs);
            goto done;
        }
        if (o.set_epochs && o.epochs != aug_epochs) {
            util_err_set(&err, "%s: the stream holds %ld epochs (augment --epochs), --epochs says %d", o.input,
                         aug_epochs, o.epochs);
            goto done;
        }
        o.epochs = (int)aug_epochs;
        n = total / (aug_epochs * per), stream_start = start / per;
        K = o.classes;
        if (K <= 0) {
            char **names = NULL;
            int nc = 0;
            long v;
            if (tsz_attrs_get_classes(tattrs, &names, &nc) == 0 && nc > 0) K = nc;
            else if (tsz_attrs_get_long(tattrs, "num_classes", &v) == 0 && v > 0 && v <= 1000000) K = (int)v;
            tsz_free_classes(names, nc);
        }
        if (K <= 0) {
            util_err_set(&err, "%s: a streamed training set needs its number of classes (classes attribute or --classes)",
                         o.input);
            goto done;
        }
        tsz_rec rec;
        int r = train_reader_peek(&stream, &rec, &err);
        if (r < 0) goto done;
        if (r == 0 || train_rec_chw(&rec, &c, &h, &w) < 0) {
            util_err_set(&err, "%s: record 0: %s", o.input, r == 0 ? "the stream is empty" : "not a C x H x W record");
            goto done;
        }
    } else {
        train_data_opts dop = {.need_labels = 1, .n_classes = o.classes, .keep_soft = 1};
        if (train_data_read(&train, &stream, &dop, &err) < 0) goto done;
        train_reader_close(&stream);
        if (train.n == 0) {
            util_err_set(&err, "%s: no records", o.input);
            goto done;
        }
        c = train.c, h = train.h, w = train.w, K = train.n_classes, n = train.n;
        tattrs = &train.attrs;
    }
    if (K < 2 && !o.classes) {
        util_err_set(&err, "%s: %d class%s: a classifier needs at least 2 (or --classes)", o.input, K, K == 1 ? "" : "es");
        goto done;
    }
    if (o.val) {
        train_data_opts vop = {.need_labels = 1, .n_classes = K, .keep_soft = 0};
        if (train_data_load(&val, o.val, &vop, &err) < 0) goto done;
        if (val.n == 0) {
            util_err_set(&err, "%s: no records", o.val);
            goto done;
        }
        if (val.c != c || val.h != h || val.w != w) {
            util_err_set(&err, "%s: records are %dx%dx%d, the training records %dx%dx%d", o.val, val.c, val.h, val.w,
                         c, h, w);
            goto done;
        }
    }

    /* The network: the pre-trained one's architecture with a new head, or the options' from scratch. */
    nn_config cfg;
    nn_config_default(&cfg);
    if (o.init) {
        if (!(pre = train_load_model_ex(o.init, &o.wo, NULL, o.wflags, stderr, &pattrs, &err))) goto done;
        const nn_config *pc = &pre->cfg;
        const char *pstem = pc->stem == NN_STEM_SMALL ? "small" : "imagenet";
        /* The pre-trained network decides (its weights fit no other); pipelines pass one set of options
         * for every method, so a contradiction is a note, not an error. */
        if ((o.set_arch && strcmp(o.arch, pc->arch)) || (o.set_width && o.width != pc->width) ||
            (o.set_stem && strcmp(o.stem, pstem)))
            fprintf(stderr, "%s: %s is %s width %d stem %s: the options' %s width %d stem %s do not apply\n",
                    util_progname(), o.init, pc->arch, pc->width, pstem, o.arch, o.width, o.stem);
        cfg = *pc;
        cfg.head_layers = cfg.head_hidden = cfg.head_out = 0;
    } else {
        snprintf(cfg.arch, sizeof cfg.arch, "%s", o.arch);
        cfg.width = o.width;
        cfg.stem = strcmp(o.stem, "small") ? NN_STEM_IMAGENET : NN_STEM_SMALL;
    }
    cfg.in_ch = c, cfg.num_classes = K, cfg.dropout = (float)o.dropout;
    {
        struct util_err e2 = {{0}};
        if (!(m = nn_model_create(&cfg, &e2))) {
            util_err_set(&err, "%s", e2.msg);
            goto done;
        }
        nn_model_init(m, o.seed);
        if (pre && nn_model_copy_backbone(m, pre, &e2) < 0) {
            util_err_set(&err, "%s: %s", o.init, e2.msg);
            goto done;
        }
    }
    nn_model_free(pre);
    pre = NULL;
    nn_model_set_freeze(m, o.freeze);

    /* Files and the options that make the result, for a safe --resume. */
    const int to_stdout = !strcmp(o.output, "-");
    if (!o.no_ckpt) {
        if (o.ckpt) ckpt = strdup(o.ckpt);
        else if (!to_stdout) ckpt = train_derived_path(o.output, ".ckpt");
        if ((o.ckpt || !to_stdout) && !ckpt) goto oom;
    }
    if (o.resume && !ckpt) util_usage_error("--resume needs a checkpoint file (--checkpoint, or -o to a file)");
    if (o.val) {
        if (o.best) best = strdup(o.best);
        else if (!to_stdout) best = train_derived_path(o.output, ".best.tsz");
        if ((o.best || !to_stdout) && !best) goto oom;
    }
    {
        size_t cap = 2048 + (o.init ? strlen(o.init) : 0);
        if (!(fp = malloc(cap))) goto oom;
        snprintf(fp, cap,
                 "arch=%s width=%d stem=%d input=%dx%dx%d classes=%d examples=%lld init=%s freeze=%d dropout=%.9g "
                 "epochs=%d batch=%d optimizer=%s lr=%.17g wd=%.17g decay_bn_bias=%d momentum=%.17g nesterov=%d "
                 "schedule=%d step_size=%d gamma=%.17g warmup=%d smoothing=%.17g seed=%llu shuffle=%d",
                 cfg.arch, cfg.width, cfg.stem, c, h, w, K, (long long)n, o.init ? o.init : "-", o.freeze, o.dropout,
                 o.epochs, o.batch, nn_optim_name(o.optimizer), o.lr, o.wd, !o.exclude_bn_bias, o.momentum, o.nesterov,
                 o.schedule, o.step_size, o.gamma, o.warmup, o.smoothing, o.seed, o.shuffle);
        train_dist_fingerprint(fp, cap, o.sync_bn);
    }
    if (model_attrs(&mattrs, tattrs, argc, argv) < 0) goto oom;

    train_opts to;
    train_opts_default(&to);
    nn_optim_opts_default(&to.optim, o.optimizer);
    to.optim.weight_decay = o.wd;
    to.optim.momentum = o.optimizer == NN_OPT_SGD ? o.momentum : to.optim.momentum;
    to.optim.nesterov = o.nesterov;
    to.optim.decay_bn_bias = !o.exclude_bn_bias;   /* torch.optim applies weight decay to every parameter */
    to.epochs = o.epochs, to.batch = o.batch, to.lr = o.lr;
    to.schedule = o.schedule, to.step_size = o.step_size, to.gamma = o.gamma, to.warmup = o.warmup;
    to.smoothing = (float)o.smoothing, to.seed = o.seed, to.shuffle = o.shuffle;
    to.output = o.output, to.best = best, to.ckpt = ckpt, to.resume = o.resume, to.keep_ckpt = o.keep_ckpt;
    to.stream_start = stream_start;
    to.log = o.log, to.curves = o.curves, to.fingerprint = fp, to.model_attrs = &mattrs, to.verbose = o.verbose;
    to.sync_bn = o.sync_bn;
    if (train_classifier(m, train.n ? &train : NULL, train.n ? NULL : &stream, n, K, c, h, w, o.val ? &val : NULL,
                         &to, &err) < 0)
        goto done;
    rc = 0;
    goto done;
oom:
    util_err_set(&err, "out of memory");
done:
    if (rc) dist_fail(&err);   /* with several ranks: the message, then the whole job ends */
    else dist_finalize();
    train_reader_close(&stream);
    train_data_free(&train);
    train_data_free(&val);
    nn_model_free(m);
    nn_model_free(pre);
    tsz_attrs_free(&mattrs);
    tsz_attrs_free(&pattrs);
    free(ckpt);
    free(best);
    free(fp);
    free(o.strip);
    return rc;
}
