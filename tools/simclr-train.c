/* simclr-train: contrastive pre-training of a ResNet encoder (SimCLR) on a stream of view pairs, as
 * augment --views 2 writes them.  Defaults follow SimCLR v1 (LARS, weight decay 1e-6, 10 warm-up epochs
 * then cosine decay, 2-layer projection head to 128) with their small-batch choices: temperature 0.5
 * (their CIFAR setting) and lr 1.2 x B/256 (their square-root rule 0.075 sqrt(B) at B = 256, better
 * than 0.3 x B/256 for small batches and short runs).  The work lives in lib/simclr.c. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dist.h"
#include "nn.h"
#include "simclr.h"
#include "train.h"
#include "util.h"

static void usage(void)
{
    printf("Usage: simclr-train [OPTION]... [INPUT] -o MODEL\n"
           "Pre-train a ResNet encoder with SimCLR on INPUT (default: stdin), a TSZ stream of view pairs:\n"
           "two consecutive records per image, as 'augment --policy simclr --views 2' writes them.\n"
           "The header's record count plans the schedule; the model keeps the projection head under head.\n"
           "  -o, --output=MODEL       the trained encoder and head (default: stdout)\n"
           "      --arch=NAME          resnet18 (default), resnet34 or resnet50\n"
           "      --width=N            base width (default 64)\n"
           "      --stem=NAME          imagenet (default: 7x7/2 conv and max-pool) or small (3x3/1 conv,\n"
           "                           no max-pool: SimCLR's stem for 32-64 px images)\n"
           "      --proj-dim=N         projection output width (default 128)\n"
           "      --proj-layers=N      2 (SimCLR v1, default) or 3 (v2) linear layers in the head\n"
           "      --proj-hidden=N      hidden width of the head (default: the encoder's feature width)\n"
           "      --temperature=T      NT-Xent temperature (default 0.5)\n"
           "  -b, --batch=N            pairs per step (default 256; 2N views per forward pass)\n"
           "      --chunk=N            forward and back-propagate N views at a time (a divisor of 2 x batch;\n"
           "                           default: all): memory of N views for any batch, the loss still over\n"
           "                           the whole batch; batch norm per chunk; forwards each chunk twice\n"
           "      --optimizer=NAME     lars (default), sgd, adam or adamw\n"
           "      --lr=X               base learning rate, scaled by batch/256 (default 1.2 for lars,\n"
           "                           0.05 for sgd, 0.001 for adam and adamw)\n"
           "      --wd=X               weight decay (default 1e-6; never on batch-norm and bias parameters)\n"
           "      --momentum=X         lars and sgd momentum (default 0.9)\n"
           "      --warmup=EPOCHS      linear warm-up before the cosine decay (default 10, or a tenth of\n"
           "                           a run shorter than 100 epochs)\n"
           "      --epochs=N           epochs in the stream (default: its augment_epochs, else 1)\n"
           "      --seed=N             initialisation (default 1)\n"
           "      --init=PRETRAINED    start the encoder from PRETRAINED (TSZ model, .safetensors or\n"
           "                           PyTorch .pth; its architecture, width and stem; the head is new)\n"
           "      --key=NAME           checkpoint entry holding the state dict (default: automatic)\n"
           "      --strip-prefix=P     remove prefix P from tensor names (repeatable)\n"
           "      --non-strict         load what matches, list the rest (default: all must match)\n"
           "  -j, --threads=N          threads (default: all cores)\n"
           "      --precision=P        fp32 (default) or bf16: convolutions and linear layers take\n"
           "                           bf16-rounded operands and sum in fp32 (needs AVX512_BF16)\n"
           "      --sync-bn            under mpirun: batch norm over the global batch (SimCLR's global BN)\n"
           "      --log=FILE           one TSV row per epoch: loss, contrastive accuracy, lr, pairs/s,\n"
           "                           input wait, k-NN accuracy, seconds\n"
           "      --curves=FILE        loss, contrastive and k-NN accuracy as a PNG\n"
           "      --knn TRAIN VAL      k-NN accuracy (k 200, cosine, votes weighted exp(s/0.07)) of the\n"
           "                           pooled features on two labelled streams, before training, every\n"
           "                           --knn-every epochs and at the end\n"
           "      --knn-loo=SET        the same, leave-one-out on one labelled stream: each example voted\n"
           "                           on by the others (every example a query: less noise on small sets)\n"
           "      --knn-every=N        epochs between k-NN evaluations (default 10)\n"
           "      --checkpoint=FILE    checkpoint file (default MODEL.ckpt)\n"
           "      --checkpoint-every=N steps between checkpoints (default: at the end of every epoch)\n"
           "      --no-checkpoint      write no checkpoint\n"
           "      --resume             continue from the checkpoint if there is one\n"
           "      --keep-checkpoint    keep the checkpoint after success (default: removed)\n"
           "      --save-init=FILE     also write the model as initialised, before the first step (the\n"
           "                           baseline for embed --knn or finetune --init comparisons)\n"
           "  -v, --verbose            progress, epoch and checkpoint lines even when stderr is not a terminal\n"
           "  -h, --help               show this help and exit\n"
           "  -V, --version            show the version and exit\n"
           "Exit status: 0 success, 1 runtime error, 2 usage error.  See simclr-train(1), augment(1), tsz(5).\n");
    exit(0);
}

struct opts {
    const char *ckpt;
    int no_ckpt, threads, set_lr, optimizer, precision;
    const char *strip[16];     /* --strip-prefix values */
    double momentum;   /* < 0: the optimiser's default */
};

static void parse_args(int argc, char **argv, simclr_opts *s, struct opts *o)
{
    enum {
        O_ARCH = 256, O_WIDTH, O_STEM, O_PDIM, O_PLAYERS, O_PHIDDEN, O_TEMP, O_OPTIM, O_LR, O_WD, O_MOM, O_WARM,
        O_EPOCHS, O_SEED, O_LOG, O_CURVES, O_KNN, O_KNNEVERY, O_CKPT, O_CKPTEVERY, O_NOCKPT, O_RESUME, O_KEEP, O_SAVE_INIT,
        O_INIT, O_KEY, O_STRIP, O_NON_STRICT, O_CHUNK, O_KNNLOO, O_PREC, O_SYNC_BN
    };
    static const struct option lo[] = {
        {"output", required_argument, 0, 'o'}, {"arch", required_argument, 0, O_ARCH},
        {"width", required_argument, 0, O_WIDTH}, {"stem", required_argument, 0, O_STEM},
        {"proj-dim", required_argument, 0, O_PDIM}, {"proj-layers", required_argument, 0, O_PLAYERS},
        {"proj-hidden", required_argument, 0, O_PHIDDEN}, {"temperature", required_argument, 0, O_TEMP},
        {"batch", required_argument, 0, 'b'}, {"chunk", required_argument, 0, O_CHUNK}, {"optimizer", required_argument, 0, O_OPTIM},
        {"lr", required_argument, 0, O_LR}, {"wd", required_argument, 0, O_WD},
        {"momentum", required_argument, 0, O_MOM}, {"warmup", required_argument, 0, O_WARM},
        {"epochs", required_argument, 0, O_EPOCHS}, {"seed", required_argument, 0, O_SEED},
        {"threads", required_argument, 0, 'j'}, {"log", required_argument, 0, O_LOG},
        {"precision", required_argument, 0, O_PREC}, {"sync-bn", no_argument, 0, O_SYNC_BN},
        {"curves", required_argument, 0, O_CURVES}, {"knn", required_argument, 0, O_KNN},
        {"knn-every", required_argument, 0, O_KNNEVERY}, {"knn-loo", required_argument, 0, O_KNNLOO},
        {"checkpoint", required_argument, 0, O_CKPT},
        {"checkpoint-every", required_argument, 0, O_CKPTEVERY}, {"no-checkpoint", no_argument, 0, O_NOCKPT},
        {"resume", no_argument, 0, O_RESUME}, {"keep-checkpoint", no_argument, 0, O_KEEP},
        {"save-init", required_argument, 0, O_SAVE_INIT},
        {"init", required_argument, 0, O_INIT}, {"key", required_argument, 0, O_KEY},
        {"strip-prefix", required_argument, 0, O_STRIP}, {"non-strict", no_argument, 0, O_NON_STRICT},
        {"verbose", no_argument, 0, 'v'}, {"help", no_argument, 0, 'h'}, {"version", no_argument, 0, 'V'},
        {0, 0, 0, 0}};
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":o:b:j:vhV", lo, NULL)) != -1) {
        switch (c) {
        case 'o': s->output = optarg; break;
        case O_ARCH:
            if (strcmp(optarg, "resnet18") && strcmp(optarg, "resnet34") && strcmp(optarg, "resnet50"))
                util_usage_error("--arch: '%s' is not resnet18, resnet34 or resnet50", optarg);
            snprintf(s->cfg.arch, sizeof s->cfg.arch, "%s", optarg);
            break;
        case O_WIDTH: s->cfg.width = (int)util_opt_long("--width", optarg, 1, 1024); break;
        case O_STEM:
            if (!strcmp(optarg, "imagenet")) s->cfg.stem = NN_STEM_IMAGENET;
            else if (!strcmp(optarg, "small")) s->cfg.stem = NN_STEM_SMALL;
            else util_usage_error("--stem: '%s' is not imagenet or small", optarg);
            break;
        case O_PDIM: s->cfg.head_out = (int)util_opt_long("--proj-dim", optarg, 1, 65536); break;
        case O_PLAYERS: s->cfg.head_layers = (int)util_opt_long("--proj-layers", optarg, 2, 3); break;
        case O_PHIDDEN: s->cfg.head_hidden = (int)util_opt_long("--proj-hidden", optarg, 1, 65536); break;
        case O_TEMP: s->temperature = util_opt_double("--temperature", optarg, 1e-4, 1e4); break;
        case 'b': s->batch = (int)util_opt_long("--batch", optarg, 2, 1 << 16); break;
        case O_CHUNK: s->chunk = (int)util_opt_long("--chunk", optarg, 2, 1 << 17); break;
        case O_OPTIM:
            if ((o->optimizer = nn_optim_kind_from_name(optarg)) < 0)
                util_usage_error("--optimizer: '%s' is not lars, sgd, adam or adamw", optarg);
            break;
        case O_LR: s->lr = util_opt_double("--lr", optarg, 0, 1e30), o->set_lr = 1; break;
        case O_WD: s->optim.weight_decay = util_opt_double("--wd", optarg, 0, 1e6); break;
        case O_MOM: o->momentum = util_opt_double("--momentum", optarg, 0, 0.9999); break;
        case O_WARM: s->warmup = util_opt_double("--warmup", optarg, 0, 1e6); break;
        case O_EPOCHS: s->epochs = (int)util_opt_long("--epochs", optarg, 1, 1000000); break;
        case O_SEED: s->seed = (uint64_t)util_opt_long("--seed", optarg, 0, 0x7fffffffffffffffL); break;
        case 'j': o->threads = (int)util_opt_long("--threads", optarg, 1, 1024); break;
        case O_SYNC_BN: s->sync_bn = 1; break;
        case O_PREC:
            if ((o->precision = nn_precision_from_name(optarg)) < 0)
                util_usage_error("--precision: '%s' is not fp32 or bf16", optarg);
            break;
        case O_LOG: s->log = optarg; break;
        case O_CURVES: s->curves = optarg; break;
        case O_KNN:
            /* two arguments: TRAIN is optarg, VAL the next word */
            if (optind >= argc) util_usage_error("--knn needs two labelled streams: --knn TRAIN VAL");
            if (s->knn_train) util_usage_error("--knn and --knn-loo exclude each other");
            s->knn_train = optarg, s->knn_val = argv[optind++];
            break;
        case O_KNNLOO:
            if (s->knn_train) util_usage_error("--knn and --knn-loo exclude each other");
            s->knn_train = optarg, s->knn_val = NULL;
            break;
        case O_KNNEVERY: s->knn_every = (int)util_opt_long("--knn-every", optarg, 1, 1000000); break;
        case O_CKPT: o->ckpt = optarg; break;
        case O_CKPTEVERY: s->ckpt_every = util_opt_long("--checkpoint-every", optarg, 1, 0x7fffffffffffffffL); break;
        case O_NOCKPT: o->no_ckpt = 1; break;
        case O_RESUME: s->resume = 1; break;
        case O_KEEP: s->keep_ckpt = 1; break;
        case O_SAVE_INIT: s->save_init = optarg; break;
        case O_INIT: s->init = optarg; break;
        case O_KEY: s->wo.key = optarg; break;
        case O_STRIP:
            if (s->wo.n_strip == (int)(sizeof o->strip / sizeof o->strip[0])) util_usage_error("too many --strip-prefix");
            o->strip[s->wo.n_strip++] = optarg;
            break;
        case O_NON_STRICT: s->wflags |= WEIGHTS_NON_STRICT; break;
        case 'v': s->verbose = 1; break;
        case 'h': usage(); break;
        case 'V': util_print_version(); break;
        default: util_option_error(c, argv);
        }
    }
    if (optind + 1 < argc) util_usage_error("one input stream only ('%s' is extra)", argv[optind + 1]);
    if (optind < argc) s->input = argv[optind];
    if ((s->wo.key || s->wo.n_strip || s->wflags) && !s->init)
        util_usage_error("--key, --strip-prefix and --non-strict apply to --init only");
    s->wo.strip = o->strip;
    if (o->no_ckpt && (o->ckpt || s->resume)) util_usage_error("--no-checkpoint contradicts --checkpoint and --resume");
    if (s->chunk && (s->chunk > 2 * s->batch || (2 * s->batch) % s->chunk))
        util_usage_error("--chunk %d does not divide the %d views of a batch of %d pairs", s->chunk, 2 * s->batch, s->batch);
    const double wd = s->optim.weight_decay;
    nn_optim_opts_default(&s->optim, o->optimizer);
    s->optim.weight_decay = wd;
    if (o->momentum >= 0) s->optim.momentum = o->momentum;
    if (!o->set_lr)
        s->lr = o->optimizer == NN_OPT_LARS ? 1.2 : o->optimizer == NN_OPT_SGD ? 0.05 : 1e-3;
}

int main(int argc, char **argv)
{
    util_set_progname(argv[0]);
    simclr_opts s;
    simclr_opts_default(&s);
    struct opts o = {.optimizer = NN_OPT_LARS, .momentum = -1};
    parse_args(argc, argv, &s, &o);
    struct util_err err = {{0}};
    char *ckpt = NULL;
    int rc = 1;
    if (train_dist_start(s.input, s.output, &err) < 0) goto done;
    nn_set_threads(o.threads > 0 ? o.threads : util_ncpu());
    if (nn_set_precision(o.precision, &err) < 0) goto done;
    if (!o.no_ckpt) {
        if (o.ckpt) ckpt = strdup(o.ckpt);
        else if (strcmp(s.output, "-")) ckpt = train_derived_path(s.output, ".ckpt");
        if ((o.ckpt || strcmp(s.output, "-")) && !ckpt) {
            util_err_set(&err, "out of memory");
            goto done;
        }
    }
    if (s.resume && !ckpt) util_usage_error("--resume needs a checkpoint file (--checkpoint, or -o to a file)");
    s.ckpt = ckpt;
    s.argc = argc, s.argv = argv;
    if (simclr_train(&s, &err) < 0) goto done;
    rc = 0;
done:
    if (rc) dist_fail(&err);   /* with several ranks: the message, then the whole job ends */
    else dist_finalize();
    free(ckpt);
    return rc;
}
