/* nn.h: earsight's CPU neural-network engine.  Layers with forward and backward, ResNet-18/34/50 with
 * torchvision's layout and parameter names, an optional SimCLR projection head, softmax cross-entropy
 * and NT-Xent losses, SGD/Adam/AdamW/LARS with parameter groups, learning-rate schedules, and model
 * files as TSZ streams.  Convolutions run on BLIS's sgemm micro-kernel with the image columns packed
 * straight into its panel format (im2col + BLIS GEMM when that is unavailable); kernel choice: nn_init.
 *
 * Activation layout: inside the engine, image tensors are stored channel-major, (C, N, H, W), so that a
 * convolution over the whole batch is one GEMM and batch norm reduces contiguous rows.  Everything a
 * caller hands in or gets back is in the usual order: images (N, C, H, W), features/logits (N, K).
 *
 * A training step:
 *     nn_zero_grad(m);
 *     const float *out = nn_forward(m, ws, x, n, 1);            // logits (n, num_classes)
 *     double loss = nn_loss_ce(out, n, k, labels, NULL, 0, dlogits, &correct);
 *     nn_backward(m, ws, dlogits, NULL);                          // adds into m->grads
 *     ... (a data-parallel wrapper would allreduce m->grads[0 .. m->n_params) here) ...
 *     nn_optim_step(opt, nn_sched_lr(&sched, step));
 * No call in this loop allocates memory: the model owns its parameter, gradient and buffer blocks, the
 * workspace (nn_ws) owns every activation and the im2col buffer, sized once for the batch shape. */
#ifndef EARSIGHT_NN_H
#define EARSIGHT_NN_H

#include <stddef.h>
#include <stdint.h>

#include "tsz.h"
#include "util.h"

/* ---------------------------------------------------------------- kernels and threads ---- */

/* Choose BLIS kernels before BLIS initialises: when the CPU has AVX-512F and the environment does not
 * already set BLIS_ARCH_TYPE, set BLIS_ARCH_TYPE=0 (skx; Debian's BLIS 0.9 otherwise falls back to slow
 * generic kernels on Zen 5 and to AVX2 kernels on AVX-512 Xeons); otherwise leave BLIS's own choice.
 * Idempotent and thread-safe; every nn_ function that can reach BLIS calls it, but a program that calls
 * BLIS directly must call nn_init first.  Returns the name of the kernel set BLIS uses ("skx", ...). */
const char *nn_init(void);
/* Threads for the engine's GEMMs and OpenMP loops (n >= 1; default 1, or BLIS_NUM_THREADS when set).
 * Results are bit-identical for any thread count: no sum is split across threads (GEMMs are split into
 * slabs of C, each summed by single-threaded BLIS in the same order; BN statistics are per channel).
 * Each thread gets a packing buffer of about 2.5 MB here, once (never during a training step). */
void nn_set_threads(int n);
int nn_threads(void);
/* Row-major C (m, n; row stride ldc) = alpha op(A) op(B) + beta C through BLIS; ta/tb 1 = transposed.
 * A is (m, k) (or (k, m) when ta) with row stride lda; likewise B.  Used by the layers and the bench. */
void nn_sgemm(int ta, int tb, int m, int n, int k, float alpha, const float *a, int64_t lda,
              const float *b, int64_t ldb, float beta, float *c, int64_t ldc);

/* Precision of the convolutions' and linear layers' products (process-wide, like the thread count).
 * NN_FP32 (default): exact fp32 through BLIS.  NN_BF16: both operands rounded to bfloat16 (round to
 * nearest even) and every product summed in fp32, as torch's CPU autocast; parameters, gradients,
 * activations, batch norm and the optimiser stay fp32.  Needs AVX512_BF16 (cpuid; the environment
 * variable EARSIGHT_NO_BF16=1 makes the engine act as if the CPU lacked it).  nn_set_precision returns
 * -1 with err set when the CPU cannot run bf16 (no fallback: the caller asked for something specific). */
enum nn_precision { NN_FP32 = 0, NN_BF16 = 1 };
int nn_set_precision(int p, struct util_err *err);
int nn_precision(void);
int nn_cpu_has_bf16(void);
const char *nn_precision_name(int p);          /* "fp32", "bf16" */
int nn_precision_from_name(const char *s);     /* -1 if unknown */
/* As nn_sgemm, with A and B rounded to bf16 and fp32 sums (only after nn_set_precision(NN_BF16) succeeded,
 * which allocates its packing buffers).  Bit-identical for any thread count. */
void nn_bf16_gemm(int ta, int tb, int m, int n, int k, float alpha, const float *a, int64_t lda,
                  const float *b, int64_t ldb, float beta, float *c, int64_t ldc);
/* nn_sgemm or nn_bf16_gemm, by nn_precision(): what the layers call. */
void nn_gemm(int ta, int tb, int m, int n, int k, float alpha, const float *a, int64_t lda,
             const float *b, int64_t ldb, float beta, float *c, int64_t ldc);
/* Algorithm of the fp32 3x3, stride-1, pad-1 convolutions (forward, input and weight gradient),
 * process-wide: NN_CONV_IM2COL the implicit im2col GEMM; NN_CONV_WINOGRAD Winograd F(4x4,3x3) (or
 * F(2x2,3x3)) with a GEMM per tile position; NN_CONV_AUTO (default) Winograd where measured faster.
 * The environment variable EARSIGHT_CONV=im2col|winograd sets the initial value.  bf16 always uses
 * im2col.  Either choice is deterministic and bit-identical across thread counts. */
enum nn_conv_algo { NN_CONV_AUTO = 0, NN_CONV_IM2COL = 1, NN_CONV_WINOGRAD = 2 };
void nn_set_conv_algo(int a);
int nn_conv_algo(void);
/* Round-to-nearest-even float -> bf16 bits (NaN stays NaN), and back (exact). */
uint16_t nn_bf16_round(float f);
float nn_bf16_to_float(uint16_t h);

/* ---------------------------------------------------------------------------- layers ---- */
/* Forward and backward of one layer.  Backward ADDS into parameter gradients (dw, db) and WRITES the
 * input gradient dx unless a flag says otherwise.  Shapes in comments; (C, N, H, W) is channel-major. */

static inline int nn_out_size(int size, int k, int stride, int pad) { return (size + 2 * pad - k) / stride + 1; }

typedef struct {
    int c_in, c_out, k, stride, pad;
    float *w, *b;        /* (c_out, c_in, k, k), (c_out) or NULL: views into the parameter block */
    float *dw, *db;      /* same offsets in the gradient block */
} nn_conv;
/* Floats of workspace the layer's forward and backward need for one image at input size h x w (0 for a
 * 1x1, stride-1, unpadded convolution over a (C, N, H, W) input, which multiplies the input directly).
 * It holds im2col columns and, for a stride-1 backward, the transposed kernel.  More workspace lets a
 * GEMM cover several images. */
size_t nn_conv_col_min(const nn_conv *l, int h, int w, int x_nchw);
/* y (c_out, n, ho, wo) from x (c_in, n, h, w), or x (n, c_in, h, w) when x_nchw (the model input).
 * col: workspace of col_cap >= nn_conv_col_min floats (nn_ws_create sizes it for the fast path). */
void nn_conv_forward(const nn_conv *l, float *y, const float *x, int x_nchw, int n, int h, int w,
                     float *col, size_t col_cap);
/* Adds into dw (and db); if dx is non-NULL writes (dx_add 0) or adds (dx_add 1) the input gradient,
 * laid out like x.  dy (c_out, n, ho, wo). */
void nn_conv_backward(const nn_conv *l, float *dx, int dx_add, const float *dy, const float *x, int x_nchw,
                      int n, int h, int w, float *col, size_t col_cap);

typedef struct {
    int c;
    float *w, *b, *dw, *db;   /* gamma, beta (c) and their gradients: views into the blocks */
    float *mean, *var;        /* running statistics (c): views into the buffer block */
    int64_t *n_tracked;       /* num_batches_tracked */
    float momentum, eps;      /* 0.1 and 1e-5, as torch */
} nn_bn;
/* BatchNorm2d over x (c, m), m = n*h*w values per channel, fused with an optional residual and ReLU:
 * y = relu?(gamma * xhat + beta + res), res (c, m) or NULL.  train: xhat from the batch mean and biased
 * variance; running mean/var move by momentum towards the batch mean and the UNBIASED variance;
 * n_tracked += 1; save_mean and save_invstd (c) receive what backward needs.  eval: running statistics
 * (save_* may be NULL).  y must not alias x. */
void nn_bn_forward(nn_bn *l, float *y, const float *x, const float *res, int relu, int64_t m, int train,
                   float *save_mean, float *save_invstd);
/* dy (c, m).  If relu, y is the forward output and dy is OVERWRITTEN by dy * (y > 0), which is also the
 * gradient of res.  Adds into dw, db; writes dx (c, m) unless NULL (dx may be x).  train must match
 * the forward. */
void nn_bn_backward(const nn_bn *l, float *dx, float *dy, const float *y, int relu, const float *x,
                    int64_t m, int train, const float *save_mean, const float *save_invstd);
/* y = relu?(gamma * xhat + beta) again, exactly as the forward computed it (train: the saved batch
 * statistics; eval: the running ones): lets a network recompute BN outputs in backward instead of
 * keeping them.  No statistics move.  y may alias x. */
void nn_bn_recompute(const nn_bn *l, float *y, const float *x, int relu, int64_t m, int train,
                     const float *save_mean, const float *save_invstd);
/* BatchNorm1d over features x (n, c) (row-major, as the projection head holds them), same semantics. */
void nn_bn1d_forward(nn_bn *l, float *y, const float *x, int relu, int n, int train, float *save_mean,
                     float *save_invstd);
void nn_bn1d_backward(const nn_bn *l, float *dx, float *dy, const float *y, int relu, const float *x, int n,
                      int train, const float *save_mean, const float *save_invstd);

/* Synchronised batch norm (data-parallel training): fn sums n doubles in place over every process.
 * Installed, it makes training-mode batch norm (2-D and 1-D) normalise by the statistics of the union
 * of all processes' batches, exactly as one process holding them all would up to summation order; the
 * gamma/beta gradients stay this process's share (the trainer sums gradients across processes).
 * NULL (default): each process uses its own batch.  Process-wide; the caller's thread only. */
typedef void (*nn_allsum_fn)(double *v, int64_t n);
void nn_set_bn_allsum(nn_allsum_fn fn);

typedef struct {
    int in, out;
    float *w, *b;        /* (out, in), (out) or NULL */
    float *dw, *db;
} nn_linear;
/* y (n, out) = x (n, in) w^T + b. */
void nn_linear_forward(const nn_linear *l, float *y, const float *x, int n);
/* Adds into dw, db; writes dx (n, in) unless NULL. */
void nn_linear_backward(const nn_linear *l, float *dx, const float *dy, const float *x, int n);

/* y = max(x, 0) over n values (y may be x); dx = dy * (y > 0) (dx may be dy). */
void nn_relu_forward(float *y, const float *x, int64_t n);
void nn_relu_backward(float *dx, const float *dy, const float *y, int64_t n);
/* Max pooling k x k, stride, pad (padding never wins) of planes = c*n planes of h x w: y (planes, ho, wo)
 * and idx (planes, ho, wo), the index of the maximum within its plane (first one on ties, as torch). */
void nn_maxpool_forward(float *y, int32_t *idx, const float *x, int64_t planes, int h, int w, int k,
                        int stride, int pad);
/* Writes dx (planes, h, w). */
void nn_maxpool_backward(float *dx, const float *dy, const int32_t *idx, int64_t planes, int h, int w,
                         int ho, int wo);
/* Global average pool: y (n, c) from x (c, n, hw); backward writes dx (c, n, hw) = dy / hw. */
void nn_avgpool_forward(float *y, const float *x, int c, int n, int64_t hw);
void nn_avgpool_backward(float *dx, const float *dy, int c, int n, int64_t hw);
/* Inverted dropout with probability p on n values: mask[i] = 0 or 1/(1-p) drawn from rng; y = x * mask
 * (y may be x).  Backward: dx = dy * mask. */
void nn_dropout_forward(float *y, float *mask, const float *x, int64_t n, float p, util_rng *rng);
void nn_dropout_backward(float *dx, const float *dy, const float *mask, int64_t n);

/* ---------------------------------------------------------------------------- losses ---- */

/* Mean softmax cross-entropy of n rows of logits (n, k).  Targets: labels (n, each in [0, k)) when soft
 * is NULL, else soft (n, k) probability rows (mixup).  smoothing e in [0, 1): the target becomes
 * (1 - e) * target + e / k, as torch's label_smoothing.  Writes dlogits (n, k) = d(mean loss)/d(logits)
 * unless NULL; *n_correct (argmax of logits == label, or == argmax of the soft row) unless NULL.
 * Returns the mean loss (NaN/Inf pass through for the caller to detect). */
double nn_loss_ce(const float *logits, int n, int k, const int32_t *labels, const float *soft,
                  float smoothing, float *dlogits, int *n_correct);
/* NT-Xent (SimCLR) on z (n2, d), n2 = 2B un-normalised projections where rows i and i + B are the two
 * views of one example: rows are L2-normalised, similarities divided by temperature, each row's
 * positive is its partner and the other 2B - 2 rows are negatives; the loss is the mean over the 2B rows.
 * Writes dz (n2, d) unless NULL; *n_correct = rows whose most similar other row is their partner.
 * work: nn_ntxent_work_floats(n2, d) floats. */
size_t nn_ntxent_work_floats(int n2, int d);
double nn_loss_ntxent(const float *z, int n2, int d, float temperature, float *dz, int *n_correct,
                      float *work);

/* ---------------------------------------------------------------------------- models ---- */

enum nn_stem { NN_STEM_IMAGENET = 0, NN_STEM_SMALL = 1 };  /* 7x7/2 conv + 3x3/2 max-pool | 3x3/1 conv */

typedef struct {
    char arch[16];     /* "resnet18", "resnet34" (BasicBlock) or "resnet50" (Bottleneck) */
    int width;         /* base width: 64 is torchvision's; stage widths are width, 2w, 4w, 8w */
    int in_ch;         /* input channels (1 or 3 for spectrograms, 3 for images) */
    int num_classes;   /* > 0: fc layer; 0: no fc */
    int stem;          /* enum nn_stem */
    float dropout;     /* dropout probability on the pooled features before fc while training (0 none) */
    int head_layers;   /* projection head (SimCLR): 0 none, 2 Linear-BN-ReLU-Linear, 3 with two hidden */
    int head_hidden;   /* hidden width of the head (0: the feature width) */
    int head_out;      /* head output width (128) */
} nn_config;
/* resnet18, width 64, in_ch 3, no classes, imagenet stem, no dropout, no head. */
void nn_config_default(nn_config *c);

enum nn_kind { NN_P_WEIGHT = 0, NN_P_BIAS = 1, NN_P_BN = 2, NN_B_STAT = 3, NN_B_COUNT = 4 };
enum nn_part { NN_PART_BACKBONE = 0, NN_PART_FC = 1, NN_PART_HEAD = 2 };

/* One named tensor of the state dict. */
typedef struct {
    char name[64];      /* torchvision name: "conv1.weight", "layer2.0.downsample.1.running_var", "head.0.weight" */
    int kind;           /* NN_P_WEIGHT (conv/linear weight), NN_P_BIAS (linear bias), NN_P_BN (gamma/beta),
                         * NN_B_STAT (running mean/var, f32 buffer), NN_B_COUNT (num_batches_tracked, i64) */
    int part;           /* enum nn_part */
    int ndim;
    int64_t shape[4];
    int64_t offset;     /* into params/grads (parameters), bufs (NN_B_STAT) or tracked (NN_B_COUNT) */
    int64_t numel;
} nn_tensor;

typedef struct {
    nn_conv conv1, conv2, conv3;  /* conv3 only in a Bottleneck (conv3.c_out == 0 otherwise) */
    nn_bn bn1, bn2, bn3;
    nn_conv down;                 /* downsample.0 (down.c_out == 0 when the block has none) */
    nn_bn down_bn;                /* downsample.1 */
    int c_in, c_out, stride;
    char name[16];                /* "layer2.0" */
} nn_block;

typedef struct nn_model {
    nn_config cfg;
    int feat_dim;         /* channels of the pooled features: 8 * width (BasicBlock) or 32 * width */
    int out_dim;          /* width of nn_forward's output: head_out, else num_classes, else feat_dim */
    float *params;        /* every parameter, n_params floats */
    float *grads;         /* their gradients, same layout */
    int64_t n_params;
    float *bufs;          /* BN running means and variances, n_bufs floats */
    int64_t n_bufs;
    int64_t *tracked;     /* num_batches_tracked of each BN, n_tracked */
    int n_tracked;
    nn_tensor *tensors;   /* all parameters and buffers, in torchvision's state_dict order */
    int n_tensors;
    int freeze_backbone;  /* nn_model_set_freeze */
    /* layers: views into the blocks above */
    nn_conv conv1;
    nn_bn bn1;
    nn_block *blocks;
    int n_blocks;
    int n_stage[4];       /* blocks per stage: 2,2,2,2 / 3,4,6,3 */
    nn_linear fc;         /* fc.out == 0 when num_classes == 0 */
    nn_linear head_fc[3]; /* head.0, head.3, head.6 (hidden ones without bias, the last with bias) */
    nn_bn head_bn[2];     /* head.1, head.4 (ReLU at head.2, head.5) */
    int n_head;           /* linear layers in the head (0, 2 or 3) */
} nn_model;

/* Build a model for cfg: parameters zero, running var 1 (call nn_model_init for a random start).
 * Errors: unknown arch, sizes out of range, both num_classes and a head.  NULL on failure. */
nn_model *nn_model_create(const nn_config *cfg, struct util_err *err);
void nn_model_free(nn_model *m);   /* NULL is fine */
/* torchvision's initialisation, deterministic in seed: convs kaiming-normal (fan_out, ReLU gain), BN
 * gamma 1 beta 0, linears uniform(+-1/sqrt(fan_in)) for weight and bias; running stats 0/1, counts 0. */
void nn_model_init(nn_model *m, uint64_t seed);
/* The tensor with that name, or NULL.  Its data: m->params + t->offset (parameters), m->bufs + t->offset
 * (NN_B_STAT) or m->tracked + t->offset (NN_B_COUNT); its gradient m->grads + t->offset. */
const nn_tensor *nn_model_find(const nn_model *m, const char *name);
/* Forward FLOPs per image at input h x w (2 per multiply-add, convolutions and linear layers only);
 * a training step costs about 3x this. */
double nn_model_flops(const nn_model *m, int h, int w);
/* 1: linear evaluation.  The backbone's BN layers run in eval mode even in a train forward, backward
 * stops at the pooled features, and optimisers created afterwards leave backbone parameters alone. */
void nn_model_set_freeze(nn_model *m, int freeze);
/* grads = 0. */
void nn_zero_grad(nn_model *m);
/* Copy the backbone of src into dst (every tensor not under fc. or head.), by name.  conv1.weight from
 * src in_ch 3 into dst in_ch 1 is summed over the input channels (see nn_conv1_to_mono); any other
 * shape difference, or a missing tensor, is an error.  Returns the number of tensors copied, or -1. */
int nn_model_copy_backbone(nn_model *dst, const nn_model *src, struct util_err *err);
/* dst (c_out, 1, k, k) = sum over c_in of src (c_out, c_in, k, k): an RGB first convolution applied to a
 * grey image replicated on all channels gives the same output as the summed one on the grey image. */
void nn_conv1_to_mono(float *dst, const float *src, int c_out, int c_in, int k);

/* ---------------------------------------------------------------- workspace, forward, backward ---- */

typedef struct nn_ws nn_ws;   /* activations, saved statistics, scratch and im2col space */
/* Workspace for up to batch images of m->cfg.in_ch x h x w.  NULL on failure (sizes, memory). */
nn_ws *nn_ws_create(const nn_model *m, int batch, int h, int w, struct util_err *err);
void nn_ws_free(nn_ws *ws);   /* NULL is fine */
size_t nn_ws_bytes(const nn_ws *ws);
int nn_ws_batch(const nn_ws *ws);
/* Dropout masks of forward number `counter` come from util_rng_split(seed, counter); each train forward
 * increments counter (a resumed run restores it).  Default seed 0, counter 0. */
void nn_ws_set_seed(nn_ws *ws, uint64_t seed, uint64_t counter);
uint64_t nn_ws_counter(const nn_ws *ws);

/* Forward n (1 <= n <= batch) images x (n, in_ch, h, w).  train 1: BN batch statistics (running stats
 * updated) and dropout; 0: eval.  Returns the output (n, m->out_dim), owned by ws, valid until the next
 * forward.  x must stay unchanged until nn_backward. */
const float *nn_forward(nn_model *m, nn_ws *ws, const float *x, int n, int train);
/* After a train forward: dout (n, out_dim) is the gradient of the loss w.r.t. the output.  Adds into
 * m->grads; writes dx (n, in_ch, h, w), the input gradient, unless NULL. */
void nn_backward(nn_model *m, nn_ws *ws, const float *dout, float *dx);
/* Results of the last forward (n rows): pooled features (n, feat_dim); logits (n, num_classes) or NULL. */
const float *nn_ws_features(const nn_ws *ws);
const float *nn_ws_logits(const nn_ws *ws);
/* Channels of a named point of the network, or -1: "conv1" (stem after BN and ReLU), "maxpool",
 * "layer1".."layer4" (output of the stage), "layer3.1" (output of one block), "avgpool" (= features). */
int nn_layer_channels(const nn_model *m, const char *name);
/* After a forward: global average of that point's activations, out (n, C), cap floats.  Returns C, or -1
 * with err set (unknown name, out too small). */
int nn_ws_pooled(const nn_model *m, const nn_ws *ws, const char *name, float *out, size_t cap,
                 struct util_err *err);

/* ---------------------------------------------------------------- optimisers, schedules ---- */

enum nn_optim_kind { NN_OPT_SGD = 0, NN_OPT_ADAM = 1, NN_OPT_ADAMW = 2, NN_OPT_LARS = 3 };

typedef struct {
    int kind;              /* enum nn_optim_kind */
    double momentum;       /* SGD and LARS (default 0.9; 0 = plain SGD) */
    int nesterov;          /* SGD and LARS */
    double beta1, beta2;   /* Adam(W): 0.9, 0.999 */
    double eps;            /* Adam(W): 1e-8 */
    double weight_decay;   /* group 0; SGD/Adam/LARS add wd*w to the gradient, AdamW decays w directly */
    double trust;          /* LARS trust coefficient eta (0.001) */
    int decay_bn_bias;     /* 0 (default): BN and bias parameters go to group 1: no weight decay, no
                            * LARS adaptation; 1: they stay in group 0 with the rest */
} nn_optim_opts;
/* Defaults above for kind; weight_decay 0. */
void nn_optim_opts_default(nn_optim_opts *o, int kind);

typedef struct {
    double weight_decay;
    int lars_adapt;        /* LARS: scale the step by the trust ratio */
    double lr_scale;       /* multiplies the step's lr (1) */
} nn_param_group;

#define NN_MAX_GROUPS 4
typedef struct nn_optim {
    nn_optim_opts opts;
    nn_model *m;
    int64_t t;             /* steps taken */
    float *s1;             /* momentum buffer / exp_avg, n_params (NULL if unused) */
    float *s2;             /* exp_avg_sq (Adam), n_params (NULL if unused) */
    int *group;            /* per entry of m->tensors: group index, -1 = not updated (buffers, frozen) */
    nn_param_group groups[NN_MAX_GROUPS];
    int n_groups;
} nn_optim;
/* Optimiser over m's parameters: weights in group 0 (weight_decay, LARS adaptation), BN and bias in
 * group 1 unless decay_bn_bias; with a frozen backbone, backbone tensors are not updated.  Callers may
 * edit groups[] and group[] afterwards.  NULL on failure. */
nn_optim *nn_optim_create(nn_model *m, const nn_optim_opts *o, struct util_err *err);
void nn_optim_free(nn_optim *o);   /* NULL is fine */
/* One update of every grouped parameter from m->grads with learning rate lr (as torch.optim; LARS as
 * SimCLR's: g += wd*w; r = trust*|w|/|g| if both norms > 0 else 1; v = momentum*v + lr*r*g; w -= v). */
void nn_optim_step(nn_optim *o, double lr);
/* The same update of only the tensors whose parameters start in [p0, p1) of m->params (steps taken
 * still counts one): a data-parallel rank updating its shard (train_dist_step). */
void nn_optim_step_range(nn_optim *o, double lr, int64_t p0, int64_t p1);
/* Checkpoint state: records "optim.<slot>.<tensor name>" (slot momentum, exp_avg, exp_avg_sq) written
 * by nn_model_write/nn_model_save, and attributes optim=sgd|adam|adamw|lars, optim_steps=N.
 * nn_optim_load reads them back from a file saved with an optimiser of the same kind (-1 otherwise). */
int nn_optim_load(nn_optim *o, const char *path, struct util_err *err);
const char *nn_optim_name(int kind);
int nn_optim_kind_from_name(const char *s);   /* -1 if unknown */

enum nn_sched_kind { NN_SCHED_CONST = 0, NN_SCHED_STEP = 1, NN_SCHED_COSINE = 2 };
typedef struct {
    int kind;
    double base_lr;
    int64_t warmup;      /* linear warm-up over the first `warmup` steps: base * (t + 1) / warmup */
    int64_t total;       /* cosine: steps in the whole run (decays to final_lr at t = total) */
    int64_t step_size;   /* step: multiply by gamma every step_size steps (after warm-up, counted from 0) */
    double gamma;
    double final_lr;     /* cosine floor (0) */
} nn_sched;
/* Learning rate for step t (0-based).  Units are the caller's: steps, or epochs for per-epoch decay. */
double nn_sched_lr(const nn_sched *s, int64_t t);

/* ---------------------------------------------------------------------- model files ---- */
/* A model file is a TSZ stream.  Attributes: model=resnet, arch, width, in_channels, num_classes, stem
 * (imagenet|small), and when set dropout, head_layers, head_hidden, head_out.  Records: every tensor of
 * m->tensors in order with its torchvision name (f32; num_batches_tracked an i64 scalar), then the
 * optimiser state (see nn_optim_load) when an optimiser is given. */

/* Add the model attributes to a (replacing same-named keys).  0 or -1. */
int nn_model_attrs(const nn_model *m, tsz_attrs *a);
/* Records that nn_model_write will write (for the stream's declared count). */
int64_t nn_model_n_records(const nn_model *m, const nn_optim *opt);
int nn_model_write(const nn_model *m, const nn_optim *opt, tsz_writer *w, struct util_err *err);
/* Whole file, atomically: attributes = extra (may be NULL: history, epoch, RNG state, ...) followed by
 * the model attributes; records as nn_model_write.  wo may be NULL for the defaults. */
int nn_model_save(const nn_model *m, const nn_optim *opt, const char *path, const tsz_attrs *extra,
                  const tsz_wopts *wo, struct util_err *err);
/* Build a model from a model file ("-" is stdin): configuration from the attributes, tensors by name in
 * any order, any numeric dtype.  Every tensor of the model must be present (num_batches_tracked may be
 * missing: 0); records under "optim." are skipped; any other unknown name or a wrong shape is an error
 * naming the record.  If attrs is non-NULL (initialised by the caller) it receives the file's attributes. */
nn_model *nn_model_load(const char *path, tsz_attrs *attrs, struct util_err *err);
/* The configuration a model file's attributes describe.  0 or -1 (err names the bad attribute). */
int nn_config_from_attrs(nn_config *c, const tsz_attrs *a, struct util_err *err);

/* ----------------------------------------------------------------------------- .npy ---- */
/* Read a NumPy .npy file (format 1.x/2.x, little-endian f4, f8, i4, i8, u1, C order) as float32.
 * Returns a malloc'd array; *ndim and shape (up to 8 dims) describe it.  NULL on failure. */
float *nn_npy_load(const char *path, int *ndim, int64_t *shape, struct util_err *err);

#endif
