/* simclr.h: contrastive pre-training (SimCLR, Chen et al. 2020) on the nn engine.  A pair stream (two
 * consecutive views of each image, as augment --views 2 writes them) is read by a thread of its own
 * into a small queue of batches; a step forwards both views as one batch of 2B images, takes NT-Xent on
 * the projections and back-propagates; the optimiser update is a separate call so that a data-parallel
 * wrapper can reduce the gradients in between.  A k-NN monitor (Wu et al. 2018) measures the encoder's
 * pooled features on labelled streams.  simclr_train is the whole run behind simclr-train(1):
 * schedule planned from the stream header, TSV log, curves, checkpoints with the stream position and a
 * resume that ends with the same bytes as an uninterrupted run. */
#ifndef EARSIGHT_SIMCLR_H
#define EARSIGHT_SIMCLR_H

#include <stddef.h>
#include <stdint.h>

#include "nn.h"
#include "train.h"
#include "tsz.h"
#include "util.h"

/* ---------------------------------------------------------------- the pair stream ---- */

/* What the stream header and its first record say. */
typedef struct {
    int c, h, w;           /* view geometry, from the first record (2-D records are 1 x H x W) */
    int64_t start;         /* run index of the stream's first record (augment_start; 0 if absent) */
    int64_t total;         /* records of the whole run: start + the declared count (else records_total) */
    int epochs;            /* augment_epochs (0 when the stream does not say) */
} simclr_stream_info;

typedef struct simclr_stream simclr_stream;
/* Open path ("-" is stdin), read the header and the first record's description.  A stream that declares
 * no record count (and has no records_total attribute), or says augment_views other than 2, is refused.
 * NULL on failure. */
simclr_stream *simclr_stream_open(const char *path, struct util_err *err);
const simclr_stream_info *simclr_stream_get_info(const simclr_stream *s);
const tsz_attrs *simclr_stream_attrs(const simclr_stream *s);
/* Start the reader thread: skip the records before run index `from` (>= info.start, even), then fill
 * n_batches batches of `batch` pairs into a queue of `depth` (>= 2) buffers, then read the rest of the
 * stream (pairs too few to fill a batch are checked and dropped) up to its end marker.  Every record
 * must have the first one's geometry and the two records of a pair the same name; u8 values are scaled
 * by 1/255 (img2tensor --u8), other dtypes are converted to f32.  0 or -1 (memory, threads). */
int simclr_stream_start(simclr_stream *s, int64_t from, int batch, int64_t n_batches, int depth,
                        struct util_err *err);
/* The next batch, (2 batch, c, h, w): rows 0..B-1 are the first views, rows B..2B-1 the second views in
 * the same order (the layout nn_loss_ntxent expects).  Owned by the stream, valid until
 * simclr_stream_release.  NULL when the stream failed before completing this batch: err names the file
 * and the record ("FILE: record N: ..."). */
const float *simclr_stream_next(simclr_stream *s, struct util_err *err);
void simclr_stream_release(simclr_stream *s);
/* After the last batch: wait for the reader to check the rest of the stream.  0 or -1. */
int simclr_stream_finish(simclr_stream *s, struct util_err *err);
/* Seconds simclr_stream_next spent waiting for the reader. */
double simclr_stream_wait_seconds(const simclr_stream *s);
/* Stop the reader and free everything (NULL is fine).  A reader blocked on a producer that sends
 * nothing more is left behind after a second (the process is about to exit) rather than waited for. */
void simclr_stream_close(simclr_stream *s);

/* ---------------------------------------------------------------- the training step ---- */

typedef struct {
    nn_model *m;
    nn_ws *ws;             /* for `chunk` views */
    nn_optim *opt;
    int batch, h, w;       /* pairs per step, view size */
    int chunk;             /* views per forward/backward pass: 2 batch, or a divisor of it */
    float temperature;
    float *z;              /* (2 batch, head_out) projections gathered over the chunks (chunked only) */
    float *dz;             /* (2 batch, head_out) */
    float *work;           /* nn_ntxent_work_floats */
    float *bufs_keep;      /* BN running statistics after the first pass (chunked only) */
    int64_t *tracked_keep;
    /* data parallel (dist.h): rank of ranks, each with `local` = batch / ranks pairs and local_chunk =
     * chunk / ranks views per pass; z_all gathers every rank's projections, z_glob holds them in the
     * single-process order, dz_local this rank's rows of the loss gradient */
    int rank, ranks, local, local_chunk;
    float *z_all, *z_glob, *dz_local;
} simclr_trainer;
/* Trainer for m (which must have a projection head) with the optimiser oo.  chunk: views per
 * forward/backward pass, 0 or 2 batch for one pass over the whole batch, else a divisor of 2 batch
 * (>= 2).  NULL on failure. */
simclr_trainer *simclr_trainer_create(nn_model *m, const nn_optim_opts *oo, int batch, int chunk, int h, int w,
                                      float temperature, struct util_err *err);
void simclr_trainer_free(simclr_trainer *t);   /* NULL is fine; m is the caller's */
/* Zero the gradients, forward x (2 batch, c, h, w; see simclr_stream_next) in train mode, NT-Xent,
 * backward: m->grads then hold d(loss)/d(parameters).  Returns the loss (NaN/Inf passed through);
 * *n_correct (unless NULL) = views whose most similar other view is their partner.  x must stay
 * unchanged until this returns.
 * Chunked (chunk < 2 batch), the step is the gradient-caching one (Gao et al. 2021): forward every
 * chunk without keeping its activations and gather the projections, take NT-Xent and its gradient on
 * all 2 batch of them, then forward each chunk again and back-propagate its slice of the gradient.  The
 * loss is still over the whole batch, with every other view a negative; batch norm then normalises each
 * chunk on its own statistics (as per-device BN does in data-parallel SimCLR), and a chunk no larger
 * than the batch holds only first or only second views, so a pair never shares them.  Memory is that
 * of a batch of `chunk` views; the forwards are repeated (all but the last chunk's).  The running
 * statistics take one update per chunk.  The same structure lets a data-parallel wrapper gather the
 * projections of all ranks before the loss. */
double simclr_forward_backward(simclr_trainer *t, const float *x, int *n_correct);
/* Data parallel (mpirun, dist.h): batch and chunk stay the global figures; rank R of N takes the pairs
 * R, R + N, ... of every global batch, so x holds 2 batch / N views laid out as above (its first views,
 * then its second views), and simclr_forward_backward gathers the projections of all ranks, takes
 * NT-Xent over the 2 batch x 2 batch similarities of the global batch exactly as one process would,
 * and back-propagates this rank's rows of its gradient; a local chunk i of every rank makes up the
 * single-process chunk i (with synchronised batch norm the same statistics too).  The loss and
 * *n_correct are the global batch's on every rank.  simclr_global_view gives the row of the global
 * batch of local view j of rank r. */
int64_t simclr_global_view(const simclr_trainer *t, int r, int j);
/* One optimiser update with learning rate lr (after any allreduce of m->grads). */
void simclr_update(simclr_trainer *t, double lr);

/* ---------------------------------------------------------------- k-NN monitor ---- */

/* Weighted k-NN classification as Wu et al. (2018): features L2-normalised, the k most cosine-similar
 * training examples vote for their class with weight exp(similarity / t).  ftrain (n_train, d) and fval
 * (n_val, d) must already be normalised.  Returns the share of val examples whose class wins (ties go
 * to the lower class; metric_knn_scores does the voting).  loo: leave-one-out, fval is ftrain and no
 * example votes for itself.  NaN when out of memory. */
double simclr_knn_accuracy(const float *ftrain, const int32_t *ytrain, int64_t n_train, const float *fval,
                           const int32_t *yval, int64_t n_val, int loo, int d, int n_classes, int k,
                           double t);

typedef struct {
    train_data train, val;
    int n_classes;
    nn_ws *ws;             /* eval workspace for the k-NN images */
    int batch;
    float *x, *ftrain, *fval;
    int loo;               /* leave-one-out on train (no val stream) */
} simclr_knn;
/* Load both labelled streams (same C x H x W; 1-channel images are repeated on 3 channels for a
 * 3-channel model) and allocate what an evaluation of m needs.  val_path NULL: a leave-one-out
 * monitor, each example of train_path voted on by the others.  0 or -1. */
int simclr_knn_open(simclr_knn *k, const nn_model *m, const char *train_path, const char *val_path,
                    struct util_err *err);
void simclr_knn_close(simclr_knn *k);
/* k-NN accuracy (k = 200, t = 0.07) of m's pooled features in eval mode. */
double simclr_knn_eval(simclr_knn *k, nn_model *m);

/* ---------------------------------------------------------------- the whole run ---- */

typedef struct {
    const char *input;       /* pair stream ("-" stdin) */
    const char *output;      /* final model ("-" stdout) */
    const char *save_init;   /* NULL, or where to write the model before the first step */
    nn_config cfg;           /* arch, width, stem, head_layers/hidden/out; in_ch comes from the stream */
    nn_optim_opts optim;     /* kind, weight decay, momentum, trust, decay_bn_bias */
    double lr;               /* base learning rate (1.2); the schedule peaks at lr * batch / 256 */
    double temperature;      /* NT-Xent temperature (0.5) */
    int batch;               /* pairs per step */
    int chunk;               /* views per forward/backward pass (0: the whole batch) */
    double warmup;           /* epochs of linear warm-up (< 0: 10, or a tenth of a shorter run) */
    int epochs;              /* 0: the stream's augment_epochs, else 1 */
    uint64_t seed;           /* initialisation */
    const char *init;        /* start from this model's backbone (TSZ, safetensors, .pth); NULL: random */
    weights_opts wo;         /* --key, --strip-prefix for a safetensors/PyTorch init */
    int wflags;              /* WEIGHTS_NON_STRICT */
    const char *log, *curves;
    const char *knn_train, *knn_val;   /* knn_val NULL: leave-one-out on knn_train (--knn-loo) */
    int knn_every;           /* epochs between k-NN evaluations (also before training and at the end) */
    const char *ckpt;        /* NULL: no checkpoints */
    int64_t ckpt_every;      /* steps between checkpoints (0: at the end of every epoch) */
    int resume, keep_ckpt;
    int queue;               /* batches in the reader's queue (>= 2) */
    int sync_bn;             /* data parallel: batch norm over the global batch (nn_set_bn_allsum) */
    int verbose;
    int argc;                /* the command line, for the history attribute (--resume left out) */
    char **argv;
} simclr_opts;
void simclr_opts_default(simclr_opts *o);

/* Train and save.  Errors name the file and record (stream) or step (non-finite loss) and say which
 * checkpoint is kept.  0 or -1. */
int simclr_train(const simclr_opts *o, struct util_err *err);

#endif
