/* train.h: training on TSZ streams with the nn engine, and the pieces every earsight trainer shares.
 * finetune uses all of it; simclr-train reuses the reader, the log, the curves, the checkpoints, the
 * progress line and the non-finite-loss check.
 *
 * - Examples: a record (C x H x W, or H x W for one channel; f32, u8 or any numeric dtype) optionally
 *   followed by its mixup companion "<name>#soft" (f32, num_classes), as augment(1) writes them.
 *   u8 values are scaled by 1/255 when batched (the [0, 1] image convention of img2tensor --u8).
 * - Data sets are held in memory (u8 stays u8) and visited in an order that depends only on the seed
 *   and the epoch, so a resumed run sees exactly the batches an uninterrupted one would.
 * - A checkpoint is a model file (nn_model_save) with the optimiser state and the trainer's state as
 *   attributes: epoch, the dropout stream position, the best result so far, the log so far and a
 *   fingerprint of every option that changes the result; resuming with other options is refused. */
#ifndef EARSIGHT_TRAIN_H
#define EARSIGHT_TRAIN_H

#include <stddef.h>
#include <stdint.h>

#include <stdio.h>

#include "nn.h"
#include "tsz.h"
#include "util.h"
#include "weights.h"

/* ---------------------------------------------------------------- reading examples ---- */

/* Sequential reader of examples and their "#soft" companions. */
typedef struct {
    tsz_reader *r;
    tsz_rec next;          /* a record header read ahead (has_next) whose data is still unread */
    int has_next;
    int ended;             /* the end marker has been read */
    int64_t n_examples;    /* examples returned so far */
    int64_t n_soft;        /* of which with a soft-label companion */
} train_reader;
/* Open path ("-" is stdin).  0 or -1. */
int train_reader_open(train_reader *tr, const char *path, struct util_err *err);
void train_reader_close(train_reader *tr);   /* a zeroed reader is fine */
const tsz_attrs *train_reader_attrs(const train_reader *tr);
/* The next record's header without consuming it.  1, 0 at the end, -1. */
int train_reader_peek(train_reader *tr, tsz_rec *rec, struct util_err *err);
const char *train_reader_path(const train_reader *tr);
/* Next example.  rec receives its header with rec->dtype set to what data now holds: TSZ_U8 (bytes,
 * when the record is u8 and keep_u8) or TSZ_F32 (converted from any numeric dtype; u8 scaled by 1/255
 * when !keep_u8).  data has cap bytes.  If a companion follows and soft is non-NULL, its k values go to
 * soft and *has_soft = 1 (a companion of another length is an error).  1: an example, 0: clean end, -1. */
int train_reader_next(train_reader *tr, tsz_rec *rec, void *data, size_t cap, int keep_u8, float *soft, int k,
                      int *has_soft, struct util_err *err);
/* Image geometry of a record: C x H x W, or 1 x H x W for a 2-D record.  0, or -1 for other ranks. */
int train_rec_chw(const tsz_rec *rec, int *c, int *h, int *w);

/* ---------------------------------------------------------------- data sets in memory ---- */

typedef struct {
    char *path;
    int64_t n;             /* examples */
    int c, h, w;
    int64_t dim;           /* c * h * w */
    int u8;                /* 1: data holds bytes (batched as x / 255), 0: f32 */
    void *data;            /* n * dim values */
    int32_t *labels, *folds;
    int n_classes;         /* --classes, else the "classes" or "num_classes" attribute, else max label + 1 */
    float *soft;           /* n * n_classes target rows when the stream has soft labels, else NULL */
    int64_t n_with_soft;   /* examples that came with a "#soft" companion */
    tsz_attrs attrs;       /* the stream's attributes */
} train_data;

typedef struct {
    int need_labels;       /* every example must have a label in [0, n_classes) */
    int n_classes;         /* 0: from the stream (see train_data.n_classes) */
    int keep_soft;         /* read "#soft" companions into soft (else they are dropped) */
} train_data_opts;
/* Read a whole stream into d (zeroed or freed before).  Every example must have the first one's
 * shape.  0 or -1 (err names file and record). */
int train_data_load(train_data *d, const char *path, const train_data_opts *o, struct util_err *err);
/* The same from an open reader (the rest of its stream); the reader stays open. */
int train_data_read(train_data *d, train_reader *tr, const train_data_opts *o, struct util_err *err);
void train_data_free(train_data *d);
/* The order of epoch `epoch`: 0..n-1, shuffled with util_rng_split(seed, epoch) when shuffle. */
void train_epoch_order(int64_t *order, int64_t n, uint64_t seed, int64_t epoch, int shuffle);
/* Gather examples idx[0..n) into x (n, c, h, w) f32, labels (n) and, if d->soft and soft != NULL,
 * soft (n, n_classes).  Any output may be NULL. */
void train_data_batch(const train_data *d, const int64_t *idx, int n, float *x, int32_t *labels, float *soft);

/* ---------------------------------------------------------------- log and curves ---- */

/* One row per epoch of named numeric columns; NaN is written as "nan". */
typedef struct {
    int n_cols;
    char **cols;
    int n_rows, cap;
    double *v;             /* n_rows * n_cols */
} train_log;
int train_log_init(train_log *l, const char *const *cols, int n_cols, struct util_err *err);
void train_log_free(train_log *l);
int train_log_add(train_log *l, const double *row, struct util_err *err);
/* The TSV text (header line, then rows; %.6g), malloc'd; NULL when out of memory. */
char *train_log_text(const train_log *l);
/* Replace the rows with those of a TSV text with the same header (a checkpoint's copy).  0 or -1. */
int train_log_parse(train_log *l, const char *text, struct util_err *err);
/* Write the TSV atomically. */
int train_log_write(const train_log *l, const char *path, struct util_err *err);
/* Line chart of the named columns against the row number (columns with no finite value are left out;
 * at most 8).  0 or -1. */
int train_log_curves(const train_log *l, const char *path, const char *title, const char *const *cols, int n,
                     struct util_err *err);

/* ---------------------------------------------------------------- progress ---- */

/* "epoch 3/70 step 12/10: loss 1.234 acc 0.567, 210 images/s, ETA 1:02" redrawn on a terminal at most
 * 5 times a second; epoch summaries on their own line on a terminal or with verbose; silent otherwise. */
typedef struct {
    int enabled, tty;
    int64_t total_steps, done0;   /* steps of the whole run; steps already done when it (re)started */
    double t0, t_last;
    int64_t images;               /* images since t0 */
    int dirty;                    /* a redrawn line is on the terminal */
} train_progress;
void train_progress_start(train_progress *p, int64_t total_steps, int64_t done_steps, int verbose);
/* After step `done` (1-based over the whole run); text says epoch, loss and so on. */
void train_progress_step(train_progress *p, int64_t done, int images, const char *text);
/* A line of its own (an epoch summary); shown on a terminal or when verbose. */
void train_progress_line(train_progress *p, const char *text);
void train_progress_end(train_progress *p);
/* Images per second since the start (0 before any). */
double train_progress_rate(const train_progress *p);

/* ---------------------------------------------------------------- checks and checkpoints ---- */

/* -1 with "FILE: epoch E, step S (step G of the run): loss is nan; ..." when loss is not finite; else 0.
 * ckpt names the last good checkpoint (NULL or "" when there is none). */
int train_check_loss(double loss, const char *path, int64_t epoch, int64_t step, int64_t global_step,
                     double lr, const char *ckpt, int64_t ckpt_epoch, struct util_err *err);
/* Index of the first non-finite parameter, or -1 when all are finite. */
int64_t train_first_nonfinite(const nn_model *m);

/* Save m, its optimiser and the trainer's state atomically: attributes = state (the trainer's keys:
 * epoch, counters, ...), then "train_log" (log's text, when log is non-NULL), then the model's.
 * Compressed at level 1 (it is written every epoch). */
int train_ckpt_save(const char *path, const nn_model *m, const nn_optim *opt, const tsz_attrs *state,
                    const train_log *log, struct util_err *err);
/* Load a checkpoint into an existing m (same configuration, else an error naming the difference) and
 * opt (same kind); state (initialised by the caller) receives the attributes; log, when non-NULL,
 * receives the rows saved with it.  If `fingerprint` is non-NULL, the checkpoint's "train_config"
 * attribute must equal it (else an error naming the first option that differs).  0 or -1. */
int train_ckpt_load(const char *path, nn_model *m, nn_optim *opt, tsz_attrs *state, train_log *log,
                    const char *fingerprint, struct util_err *err);
/* Read a model from a TSZ model file or, detected by content, from a safetensors or PyTorch
 * checkpoint through weights(3) (heads dropped, architecture inferred).  attrs (may be NULL; initialised
 * by the caller) receives the file's attributes.  NULL on failure. */
nn_model *train_load_model(const char *path, tsz_attrs *attrs, struct util_err *err);
/* train_load_model with weights(3) options: wo (--key, --strip-prefix; may be NULL), arch forces the
 * architecture (NULL: inferred), flags WEIGHTS_NON_STRICT; loader notes go to notes (NULL: dropped). */
nn_model *train_load_model_ex(const char *path, const weights_opts *wo, const char *arch, int flags, FILE *notes,
                              tsz_attrs *attrs, struct util_err *err);
/* "m.tsz" -> "m" + suffix ("m.best.tsz", "m.ckpt"); a name without ".tsz" gets the suffix appended.
 * malloc'd, NULL when out of memory. */
char *train_derived_path(const char *path, const char *suffix);

/* ---------------------------------------------------------------- the classifier loop ---- */

typedef struct {
    int epochs, batch;
    nn_optim_opts optim;   /* kind, weight decay, momentum, ... */
    double lr;
    int schedule;          /* enum nn_sched_kind */
    int step_size;         /* epochs between decays (step) */
    double gamma;
    int warmup;            /* epochs of linear warm-up */
    float smoothing;       /* label smoothing */
    uint64_t seed;         /* order of the examples, dropout */
    int shuffle;
    const char *output;    /* final model (last epoch) */
    const char *best;      /* best model by validation accuracy (NULL: none) */
    const char *ckpt;      /* checkpoint (NULL: none) */
    int resume;            /* continue from ckpt if it exists */
    int keep_ckpt;         /* keep ckpt after success (else removed) */
    int64_t stream_start;  /* stream mode: examples the producer skipped (augment --start / records each) */
    const char *log;       /* TSV (NULL: none) */
    const char *curves;    /* PNG (NULL: none) */
    const char *fingerprint;  /* every option that changes the result, for train_ckpt_load */
    const tsz_attrs *model_attrs;  /* extra attributes of the saved models (history, classes, ...) */
    int sync_bn;           /* data parallel: batch norm over the global batch (see nn_set_bn_allsum) */
    int verbose;
} train_opts;
void train_opts_default(train_opts *o);

/* ---------------------------------------------------------------- data parallel ---- */
/* Under mpirun (dist.h) the trainers split every global batch across the ranks: rank R of N takes
 * examples (or pairs) R, R + N, ... of it, the gradients are summed between the backward pass and the
 * optimiser update, and every rank applies the same update, so that the models stay identical; rank 0
 * writes the files.  One process (N = 1) is the plain single-machine run, unchanged. */

/* The update after the backward pass.  With several ranks the work of the update is shared out as in
 * ZeRO stage 1: each rank owns a shard of the parameters (whole tensors, about n_params / N floats);
 * the gradients are summed shard-wise (MPI_Reduce_scatter), each rank updates its shard, and the
 * updated parameters are gathered to every rank (MPI_Allgatherv): the same traffic as one allreduce,
 * the optimiser's arithmetic divided by N, and every parameter updated by one rank with the same
 * operations as one process would use (bit-identical to an allreduce and a full update on every rank).
 * Unless batch norm is synchronised, every rank then takes rank 0's running statistics (DDP's buffer
 * broadcast).  Each rank's optimiser state is its shard's only until train_dist_gather_state. */
typedef struct {
    int ranks, rank, sync_bn;
    int64_t *start;        /* ranks + 1 parameter offsets: rank r owns [start[r], start[r + 1]) */
    float *tmp;            /* the largest shard */
} train_dist;
/* A trainer tool's start: join the world (dist_init) and check its files: with several ranks the model
 * cannot go to standard output (rank 0 alone writes), and input "-" needs a stream on every rank's
 * standard input (dist_check_stdin).  0 or -1. */
int train_dist_start(const char *input, const char *output, struct util_err *err);
/* Append " ranks=N sync_bn=B" to a trainer's option fingerprint (cap bytes in all) when the run has
 * several ranks or asks for sync BN: per-rank batch norm depends on N; one process keeps its old one. */
void train_dist_fingerprint(char *fp, size_t cap, int sync_bn);
/* Plan the shards of m for this world (dist.h) and, with several ranks and sync_bn, install the
 * all-sum of synchronised batch norm (nn_set_bn_allsum); one rank allocates nothing.  0 or -1. */
int train_dist_init(train_dist *d, const nn_model *m, int sync_bn, struct util_err *err);
void train_dist_free(train_dist *d);   /* also takes the all-sum away again */
/* After the backward pass of every rank: the update with learning rate lr (nn_optim_step with one rank). */
void train_dist_step(train_dist *d, nn_optim *opt, double lr);
/* Before a checkpoint: the whole optimiser state on every rank (collective; nothing with one rank). */
void train_dist_gather_state(train_dist *d, nn_optim *opt);
/* FNV-1a of the parameter and buffer bytes: equal models have equal hashes. */
uint64_t train_model_hash(const nn_model *m);
/* -1 with err set when the ranks hold different models or positions (position: epoch or step) before
 * training, e.g. a checkpoint only some ranks could read (ckpt names it, NULL when none was asked). */
int train_dist_check_start(const nn_model *m, int64_t position, const char *ckpt, struct util_err *err);
/* -1 with err set when the ranks' models differ at the end. */
int train_dist_check_end(const nn_model *m, struct util_err *err);

/* Train classifier m on the examples of train (in memory) or, when train is NULL, of stream (read in
 * order: stream_epochs passes of stream_n examples, as augment --epochs writes them; a resumed run
 * skips what it has already seen unless the producer was restarted there, see augment --start);
 * evaluate on val (may be NULL) after every epoch; log, checkpoint, save.  m must be initialised
 * (and frozen if wanted).  0 or -1. */
int train_classifier(nn_model *m, train_data *train, train_reader *stream, int64_t stream_n, int n_classes,
                     int c, int h, int w, const train_data *val, const train_opts *o, struct util_err *err);

/* Mean cross-entropy and accuracy of m (eval mode) over d in batches of ws's size; x holds
 * batch * d->dim floats, logits space comes from ws.  0 or -1 (non-finite loss is returned as is). */
int train_evaluate(nn_model *m, nn_ws *ws, const train_data *d, float *x, int32_t *labels, double *loss,
                   double *acc);

/* ---------------------------------------------------------------- embedding ---- */

enum train_embed_kind { TRAIN_EMBED_FEATURES = 0, TRAIN_EMBED_LOGITS = 1, TRAIN_EMBED_PROBS = 2 };
typedef struct {
    int kind;
    const char *layer;     /* features: a named point (nn_layer_channels), NULL = "avgpool" */
    int batch;
    /* k-NN probe (kind features): with knn_ref set, each record's L2-normalised features are replaced
     * by their metric_knn_scores against the knn_n normalised reference rows knn_ref (labels
     * knn_labels) over knn_classes classes, k knn_k, temperature knn_t */
    const float *knn_ref;
    const int32_t *knn_labels;
    int64_t knn_n;
    int knn_classes, knn_k;
    double knn_t;
    /* leave-one-out: the input is the reference set itself, record for record, and record i does not
     * vote for itself (reference row i is left out).  A record whose features differ from row i's
     * is an error: the input is then not the reference. */
    int knn_loo;
} train_embed_opts;
/* One f32 record per example of in (same name, label, fold): pooled features, logits or softmax
 * probabilities of m in eval mode, or k-NN class scores.  A 1-channel input to a 3-channel model is
 * replicated on the three channels; "#soft" companions are dropped.  Records are written to out.
 * 0 or -1. */
int train_embed(nn_model *m, train_reader *in, tsz_writer *out, const train_embed_opts *o, int verbose,
                struct util_err *err);
/* The L2-normalised features (o->layer) of every record of in and their labels, into *f (n, dim) and
 * *labels (n), allocated here: the reference set of a k-NN probe.  Every record needs a label.
 * 0 or -1. */
int train_embed_collect(nn_model *m, train_reader *in, const train_embed_opts *o, int verbose, float **f,
                        int32_t **labels, int64_t *n, struct util_err *err);

#endif
