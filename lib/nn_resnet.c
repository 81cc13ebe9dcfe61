/* nn_resnet.c: ResNet-18/34/50 as torchvision builds them (BasicBlock / Bottleneck with the stride on
 * the 3x3 convolution, downsample = 1x1 conv + BN, state_dict names and order), an optional SimCLR
 * projection head, the batch workspace, and the whole-network forward and backward passes. */
#include <assert.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn.h"
#include "nn_internal.h"

/* im2col workspace: enough for the largest convolution on one image, and up to this many floats so
 * that a GEMM covers several images of a small layer (wider GEMMs run closer to peak). */
#define COL_TARGET ((size_t)6 << 20)
#define WINO_TARGET ((size_t)8 << 20)

void nn_config_default(nn_config *c)
{
    memset(c, 0, sizeof *c);
    snprintf(c->arch, sizeof c->arch, "resnet18");
    c->width = 64;
    c->in_ch = 3;
    c->stem = NN_STEM_IMAGENET;
    c->head_out = 128;
}

static int is_bottleneck(const nn_config *c) { return strcmp(c->arch, "resnet50") == 0; }

static int stage_blocks(const char *arch, int *nb)
{
    static const int r18[4] = {2, 2, 2, 2}, r34[4] = {3, 4, 6, 3};
    if (!strcmp(arch, "resnet18")) memcpy(nb, r18, sizeof r18);
    else if (!strcmp(arch, "resnet34") || !strcmp(arch, "resnet50")) memcpy(nb, r34, sizeof r34);
    else return -1;
    return 0;
}

/* ---------------------------------------------------------------- building ---- */

/* The model is built twice by the same code: a counting pass (fill 0) that sizes the blocks, and a
 * filling pass that records tensors and points the layers into the allocated blocks. */
typedef struct {
    nn_model *m;
    int fill;
    int64_t np, nb;   /* floats used so far in params, bufs */
    int nt, ntr;      /* tensors, num_batches_tracked counters */
} builder;

static int64_t add_tensor(builder *b, const char *prefix, const char *suffix, int kind, int part, int ndim,
                          int64_t d0, int64_t d1, int64_t d2, int64_t d3)
{
    const int64_t dims[4] = {d0, d1, d2, d3};
    int64_t numel = 1;
    for (int i = 0; i < ndim; i++) numel *= dims[i];
    int64_t off;
    if (kind == NN_B_STAT) off = b->nb, b->nb += numel;
    else if (kind == NN_B_COUNT) off = b->ntr, b->ntr += 1;
    else off = b->np, b->np += numel;
    if (b->fill) {
        nn_tensor *t = &b->m->tensors[b->nt];
        snprintf(t->name, sizeof t->name, "%s%s%s", prefix, *prefix ? "." : "", suffix);
        t->kind = kind;
        t->part = part;
        t->ndim = ndim;
        for (int i = 0; i < 4; i++) t->shape[i] = i < ndim ? dims[i] : 0;
        t->offset = off;
        t->numel = numel;
    }
    b->nt++;
    return off;
}

static float *pp(builder *b, int64_t off) { return b->fill ? b->m->params + off : NULL; }
static float *gp(builder *b, int64_t off) { return b->fill ? b->m->grads + off : NULL; }

static void build_conv(builder *b, nn_conv *l, const char *name, int part, int c_in, int c_out, int k,
                       int stride, int pad)
{
    l->c_in = c_in, l->c_out = c_out, l->k = k, l->stride = stride, l->pad = pad;
    int64_t o = add_tensor(b, name, "weight", NN_P_WEIGHT, part, 4, c_out, c_in, k, k);
    l->w = pp(b, o), l->dw = gp(b, o);
    l->b = l->db = NULL;   /* torchvision's ResNet convolutions have no bias */
}

static void build_bn(builder *b, nn_bn *l, const char *name, int part, int c)
{
    l->c = c;
    l->momentum = 0.1f;
    l->eps = 1e-5f;
    int64_t o = add_tensor(b, name, "weight", NN_P_BN, part, 1, c, 0, 0, 0);
    l->w = pp(b, o), l->dw = gp(b, o);
    o = add_tensor(b, name, "bias", NN_P_BN, part, 1, c, 0, 0, 0);
    l->b = pp(b, o), l->db = gp(b, o);
    o = add_tensor(b, name, "running_mean", NN_B_STAT, part, 1, c, 0, 0, 0);
    l->mean = b->fill ? b->m->bufs + o : NULL;
    o = add_tensor(b, name, "running_var", NN_B_STAT, part, 1, c, 0, 0, 0);
    l->var = b->fill ? b->m->bufs + o : NULL;
    o = add_tensor(b, name, "num_batches_tracked", NN_B_COUNT, part, 0, 0, 0, 0, 0);
    l->n_tracked = b->fill ? b->m->tracked + o : NULL;
}

static void build_linear(builder *b, nn_linear *l, const char *name, int part, int in, int out, int bias)
{
    l->in = in, l->out = out;
    int64_t o = add_tensor(b, name, "weight", NN_P_WEIGHT, part, 2, out, in, 0, 0);
    l->w = pp(b, o), l->dw = gp(b, o);
    l->b = l->db = NULL;
    if (bias) {
        o = add_tensor(b, name, "bias", NN_P_BIAS, part, 1, out, 0, 0, 0);
        l->b = pp(b, o), l->db = gp(b, o);
    }
}

static void build(builder *b)
{
    nn_model *m = b->m;
    const nn_config *c = &m->cfg;
    const int bott = is_bottleneck(c), exp = bott ? 4 : 1;
    char name[64];
    if (c->stem == NN_STEM_SMALL) build_conv(b, &m->conv1, "conv1", NN_PART_BACKBONE, c->in_ch, c->width, 3, 1, 1);
    else build_conv(b, &m->conv1, "conv1", NN_PART_BACKBONE, c->in_ch, c->width, 7, 2, 3);
    build_bn(b, &m->bn1, "bn1", NN_PART_BACKBONE, c->width);
    int c_in = c->width, bi = 0;
    for (int s = 0; s < 4; s++) {
        const int planes = c->width << s;
        for (int j = 0; j < m->n_stage[s]; j++, bi++) {
            nn_block *blk = &m->blocks[bi];
            const int stride = (s > 0 && j == 0) ? 2 : 1;
            memset(blk, 0, sizeof *blk);
            snprintf(blk->name, sizeof blk->name, "layer%d.%d", s + 1, j & 1023);
            blk->c_in = c_in, blk->c_out = planes * exp, blk->stride = stride;
#define SUB(x) (snprintf(name, sizeof name, "%s.%s", blk->name, x), name)
            if (bott) {
                build_conv(b, &blk->conv1, SUB("conv1"), 0, c_in, planes, 1, 1, 0);
                build_bn(b, &blk->bn1, SUB("bn1"), 0, planes);
                build_conv(b, &blk->conv2, SUB("conv2"), 0, planes, planes, 3, stride, 1);
                build_bn(b, &blk->bn2, SUB("bn2"), 0, planes);
                build_conv(b, &blk->conv3, SUB("conv3"), 0, planes, planes * 4, 1, 1, 0);
                build_bn(b, &blk->bn3, SUB("bn3"), 0, planes * 4);
            } else {
                build_conv(b, &blk->conv1, SUB("conv1"), 0, c_in, planes, 3, stride, 1);
                build_bn(b, &blk->bn1, SUB("bn1"), 0, planes);
                build_conv(b, &blk->conv2, SUB("conv2"), 0, planes, planes, 3, 1, 1);
                build_bn(b, &blk->bn2, SUB("bn2"), 0, planes);
            }
            if (stride != 1 || c_in != planes * exp) {
                build_conv(b, &blk->down, SUB("downsample.0"), 0, c_in, planes * exp, 1, stride, 0);
                build_bn(b, &blk->down_bn, SUB("downsample.1"), 0, planes * exp);
            }
#undef SUB
            c_in = planes * exp;
        }
    }
    memset(&m->fc, 0, sizeof m->fc);
    if (c->num_classes > 0) build_linear(b, &m->fc, "fc", NN_PART_FC, m->feat_dim, c->num_classes, 1);
    int prev = m->feat_dim;
    const int hidden = c->head_hidden > 0 ? c->head_hidden : m->feat_dim;
    for (int i = 0; i < m->n_head; i++) {
        const int last = i == m->n_head - 1;
        snprintf(name, sizeof name, "head.%d", 3 * i);
        /* hidden layers feed a BN, which makes a bias redundant */
        build_linear(b, &m->head_fc[i], name, NN_PART_HEAD, prev, last ? c->head_out : hidden, last);
        if (!last) {
            snprintf(name, sizeof name, "head.%d", 3 * i + 1);
            build_bn(b, &m->head_bn[i], name, NN_PART_HEAD, hidden);
        }
        prev = hidden;
    }
}

static int check_config(const nn_config *c, struct util_err *err)
{
    int nb[4];
    if (memchr(c->arch, 0, sizeof c->arch) == NULL || stage_blocks(c->arch, nb) < 0)
        return util_err_set(err, "unknown architecture '%.15s' (resnet18, resnet34, resnet50)", c->arch);
    if (c->width < 1 || c->width > 1024) return util_err_set(err, "width %d out of range 1..1024", c->width);
    if (c->in_ch < 1 || c->in_ch > 1024) return util_err_set(err, "in_channels %d out of range 1..1024", c->in_ch);
    if (c->num_classes < 0 || c->num_classes > 1000000)
        return util_err_set(err, "num_classes %d out of range 0..1000000", c->num_classes);
    if (c->stem != NN_STEM_IMAGENET && c->stem != NN_STEM_SMALL) return util_err_set(err, "unknown stem %d", c->stem);
    if (!(c->dropout >= 0 && c->dropout < 1)) return util_err_set(err, "dropout %g out of range [0, 1)", c->dropout);
    if (c->head_layers != 0 && c->head_layers != 2 && c->head_layers != 3)
        return util_err_set(err, "head_layers %d: must be 0, 2 or 3", c->head_layers);
    if (c->head_layers) {
        if (c->num_classes > 0) return util_err_set(err, "a model cannot have both classes and a projection head");
        if (c->head_out < 1 || c->head_out > 65536) return util_err_set(err, "head_out %d out of range", c->head_out);
        if (c->head_hidden < 0 || c->head_hidden > 65536)
            return util_err_set(err, "head_hidden %d out of range", c->head_hidden);
    }
    return 0;
}

nn_model *nn_model_create(const nn_config *cfg, struct util_err *err)
{
    if (check_config(cfg, err) < 0) return NULL;
    nn_init();
    nn_model *m = calloc(1, sizeof *m);
    if (!m) return util_err_set(err, "out of memory"), NULL;
    m->cfg = *cfg;
    stage_blocks(cfg->arch, m->n_stage);
    m->n_blocks = m->n_stage[0] + m->n_stage[1] + m->n_stage[2] + m->n_stage[3];
    m->feat_dim = cfg->width * 8 * (is_bottleneck(cfg) ? 4 : 1);
    m->n_head = cfg->head_layers;
    m->out_dim = m->n_head ? cfg->head_out : cfg->num_classes > 0 ? cfg->num_classes : m->feat_dim;
    m->blocks = calloc(m->n_blocks, sizeof *m->blocks);
    builder b = {.m = m};
    if (!m->blocks) goto oom;
    build(&b);
    m->n_params = b.np, m->n_bufs = b.nb, m->n_tracked = b.ntr, m->n_tensors = b.nt;
    m->params = calloc(b.np, sizeof *m->params);
    m->grads = calloc(b.np, sizeof *m->grads);
    m->bufs = calloc(b.nb, sizeof *m->bufs);
    m->tracked = calloc(b.ntr, sizeof *m->tracked);
    m->tensors = calloc(b.nt, sizeof *m->tensors);
    if (!m->params || !m->grads || !m->bufs || !m->tracked || !m->tensors) goto oom;
    b = (builder){.m = m, .fill = 1};
    build(&b);
    assert(b.np == m->n_params && b.nt == m->n_tensors);
    for (int i = 0; i < m->n_tensors; i++) {   /* running variance starts at 1, as torch */
        const nn_tensor *t = &m->tensors[i];
        size_t len = strlen(t->name);
        if (t->kind == NN_B_STAT && len > 11 && !strcmp(t->name + len - 11, "running_var"))
            for (int64_t j = 0; j < t->numel; j++) m->bufs[t->offset + j] = 1.0f;
    }
    return m;
oom:
    nn_model_free(m);
    util_err_set(err, "out of memory for the model");
    return NULL;
}

void nn_model_free(nn_model *m)
{
    if (!m) return;
    free(m->params);
    free(m->grads);
    free(m->bufs);
    free(m->tracked);
    free(m->tensors);
    free(m->blocks);
    free(m);
}

static int ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && !strcmp(s + a - b, suffix);
}

void nn_model_init(nn_model *m, uint64_t seed)
{
    for (int i = 0; i < m->n_tensors; i++) {
        const nn_tensor *t = &m->tensors[i];
        util_rng r = util_rng_split(seed, (uint64_t)i);
        if (t->kind == NN_B_COUNT) {
            m->tracked[t->offset] = 0;
            continue;
        }
        float *d = t->kind == NN_B_STAT ? m->bufs + t->offset : m->params + t->offset;
        if (t->kind == NN_B_STAT) {
            const float v = ends_with(t->name, "running_var") ? 1.0f : 0.0f;
            for (int64_t j = 0; j < t->numel; j++) d[j] = v;
        } else if (t->kind == NN_P_BN) {
            const float v = ends_with(t->name, "weight") ? 1.0f : 0.0f;
            for (int64_t j = 0; j < t->numel; j++) d[j] = v;
        } else if (t->kind == NN_P_WEIGHT && t->ndim == 4) {
            /* kaiming_normal_(mode="fan_out", nonlinearity="relu") */
            const double sd = sqrt(2.0 / (double)(t->shape[0] * t->shape[2] * t->shape[3]));
            for (int64_t j = 0; j < t->numel; j++) d[j] = (float)(sd * util_rng_normal(&r));
        } else {
            /* nn.Linear: weight kaiming_uniform_(a=sqrt(5)) = U(+-1/sqrt(fan_in)), bias the same bound;
             * a bias follows its weight in the tensor list */
            const int64_t fan_in = t->kind == NN_P_BIAS ? m->tensors[i - 1].shape[1] : t->shape[1];
            const double bound = 1.0 / sqrt((double)fan_in);
            for (int64_t j = 0; j < t->numel; j++) d[j] = (float)(bound * (2.0 * util_rng_uniform(&r) - 1.0));
        }
    }
}

const nn_tensor *nn_model_find(const nn_model *m, const char *name)
{
    for (int i = 0; i < m->n_tensors; i++)
        if (!strcmp(m->tensors[i].name, name)) return &m->tensors[i];
    return NULL;
}

void nn_model_set_freeze(nn_model *m, int freeze) { m->freeze_backbone = freeze ? 1 : 0; }

void nn_zero_grad(nn_model *m) { memset(m->grads, 0, sizeof(float) * m->n_params); }

void nn_conv1_to_mono(float *dst, const float *src, int c_out, int c_in, int k)
{
    for (int o = 0; o < c_out; o++)
        for (int j = 0; j < k * k; j++) {
            float s = 0;
            for (int i = 0; i < c_in; i++) s += src[((int64_t)o * c_in + i) * k * k + j];
            dst[(int64_t)o * k * k + j] = s;
        }
}

/* "64x3x7x7" for messages, through the stream library's formatting */
static const char *shape_text(char *buf, size_t cap, const nn_tensor *t)
{
    tsz_rec r;
    tsz_rec_init(&r, t->name, TSZ_F32, t->ndim, t->shape);
    tsz_shape_str(&r, buf, cap);
    return buf;
}

int nn_model_copy_backbone(nn_model *dst, const nn_model *src, struct util_err *err)
{
    int n = 0;
    for (int i = 0; i < dst->n_tensors; i++) {
        const nn_tensor *t = &dst->tensors[i];
        if (t->part != NN_PART_BACKBONE) continue;
        const nn_tensor *s = nn_model_find(src, t->name);
        if (!s) return util_err_set(err, "%s: missing in the pre-trained model", t->name);
        int same = s->ndim == t->ndim && s->numel == t->numel;
        for (int d = 0; same && d < t->ndim; d++) same = s->shape[d] == t->shape[d];
        if (t->kind == NN_B_COUNT) {
            dst->tracked[t->offset] = src->tracked[s->offset];
        } else if (same) {
            const float *from = t->kind == NN_B_STAT ? src->bufs : src->params;
            float *to = t->kind == NN_B_STAT ? dst->bufs : dst->params;
            memcpy(to + t->offset, from + s->offset, sizeof(float) * t->numel);
        } else if (!strcmp(t->name, "conv1.weight") && s->ndim == 4 && t->shape[1] == 1 &&
                   s->shape[0] == t->shape[0] && s->shape[2] == t->shape[2] && s->shape[3] == t->shape[3]) {
            nn_conv1_to_mono(dst->params + t->offset, src->params + s->offset, (int)s->shape[0],
                             (int)s->shape[1], (int)s->shape[2]);
        } else {
            char want[96], have[96];
            return util_err_set(err, "%s: the pre-trained model's shape is %s, this network needs %s%s", t->name,
                                shape_text(have, sizeof have, s), shape_text(want, sizeof want, t),
                                !strcmp(t->name, "conv1.weight") ? " (input channels differ)" : "");
        }
        n++;
    }
    return n;
}

/* ---------------------------------------------------------------- geometry and FLOPs ---- */

typedef struct {
    int h0, w0;      /* after conv1 */
    int hp, wp;      /* after the stem (max-pool for the imagenet stem) */
} stem_geom;

static stem_geom stem_geometry(const nn_model *m, int h, int w)
{
    stem_geom g;
    g.h0 = nn_out_size(h, m->conv1.k, m->conv1.stride, m->conv1.pad);
    g.w0 = nn_out_size(w, m->conv1.k, m->conv1.stride, m->conv1.pad);
    if (m->cfg.stem == NN_STEM_IMAGENET) g.hp = nn_out_size(g.h0, 3, 2, 1), g.wp = nn_out_size(g.w0, 3, 2, 1);
    else g.hp = g.h0, g.wp = g.w0;
    return g;
}

static double conv_flops(const nn_conv *l, int h, int w)
{
    if (l->c_out == 0) return 0;
    return 2.0 * l->c_out * l->c_in * l->k * l->k * nn_out_size(h, l->k, l->stride, l->pad) *
           (double)nn_out_size(w, l->k, l->stride, l->pad);
}

double nn_model_flops(const nn_model *m, int h, int w)
{
    stem_geom g = stem_geometry(m, h, w);
    double f = conv_flops(&m->conv1, h, w);
    int ch = g.hp, cw = g.wp;
    for (int b = 0; b < m->n_blocks; b++) {
        const nn_block *k = &m->blocks[b];
        const int ho = nn_out_size(ch, 3, k->stride, 1), wo = nn_out_size(cw, 3, k->stride, 1);
        if (k->conv3.c_out) {
            f += conv_flops(&k->conv1, ch, cw) + conv_flops(&k->conv2, ch, cw) + conv_flops(&k->conv3, ho, wo);
        } else {
            f += conv_flops(&k->conv1, ch, cw) + conv_flops(&k->conv2, ho, wo);
        }
        f += conv_flops(&k->down, ch, cw);
        ch = ho, cw = wo;
    }
    if (m->fc.out) f += 2.0 * m->fc.in * m->fc.out;
    for (int i = 0; i < m->n_head; i++) f += 2.0 * m->head_fc[i].in * m->head_fc[i].out;
    return f;
}

/* ---------------------------------------------------------------- workspace ---- */

typedef struct {
    float *a1, *a2, *a3, *ad, *out;  /* conv outputs (a), block output */
    int h, w, ho, wo;                /* input and output size */
} blk_ws;

struct nn_ws {
    int batch, h, w;
    int n, train, train_bb;   /* last forward: images, mode, backbone BN mode */
    const float *x;           /* last forward's input (n, in_ch, h, w) */
    stem_geom geo;
    float *r0, *p0;           /* conv1's BN+ReLU, max-pool (p0 == r0 for the small stem) */
    int32_t *pidx;            /* max-pool argmax */
    blk_ws *blk;
    float *feat;              /* (batch, feat_dim) */
    float *featd, *mask;      /* dropout output and mask (NULL without dropout) */
    float *logits;            /* (batch, num_classes) */
    float *h_lin[3], *h_act[2];  /* head: linear outputs, BN+ReLU outputs */
    float *stats;             /* n_bufs floats: batch mean and inverse std of each BN, laid out as bufs */
    float *g[4];              /* backward scratch, each the largest activation */
    float *hg[3];             /* head/fc backward scratch (batch, widest head layer) */
    float *col;
    size_t col_cap;
    void *mem;
    size_t bytes;
    uint64_t seed, counter;
};

/* Offsets into one allocation; a first pass with base NULL only counts. */
typedef struct {
    char *base;
    size_t used;
} arena;

static void *take(arena *a, size_t n, size_t size)
{
    size_t bytes = (n * size + 63) & ~(size_t)63;   /* 64-byte aligned pieces */
    void *p = a->base ? a->base + a->used : NULL;
    a->used += bytes;
    return p;
}

static void layout_ws(nn_ws *ws, const nn_model *m, arena *a)
{
    const int B = ws->batch, W = m->cfg.width;
    size_t maxact = 0;
#define ACT(c, hh, ww) (maxact = maxact > (size_t)(c) * B * (hh) * (ww) ? maxact : (size_t)(c) * B * (hh) * (ww), \
                        (float *)take(a, (size_t)(c) * B * (hh) * (ww), sizeof(float)))
    const size_t stem_act = (size_t)W * B * ws->geo.h0 * ws->geo.w0;
    /* Kept for backward: each convolution's output (BN's input) and each block's output.  The inner
     * BN+ReLU outputs (r1, r2) are recomputed from the convolution outputs in backward, and conv1's
     * output (3 input channels: cheap) from the image, in backward scratch: at 64x64 with the small
     * stem these would be a fifth of the workspace. */
    ws->r0 = take(a, stem_act, sizeof(float));
    if (m->cfg.stem == NN_STEM_IMAGENET) {
        ws->p0 = ACT(W, ws->geo.hp, ws->geo.wp);
        ws->pidx = take(a, (size_t)W * B * ws->geo.hp * ws->geo.wp, sizeof(int32_t));
    } else {
        ws->p0 = ws->r0;
        ws->pidx = NULL;
        maxact = stem_act;   /* r0 is the first block's input */
    }
    int ch = ws->geo.hp, cw = ws->geo.wp;
    size_t col = 0;
    col = nn_conv_col_min(&m->conv1, ws->h, ws->w, 1);
    for (int b = 0; b < m->n_blocks; b++) {
        const nn_block *k = &m->blocks[b];
        blk_ws *bw = &ws->blk[b];
        const int ho = nn_out_size(ch, 3, k->stride, 1), wo = nn_out_size(cw, 3, k->stride, 1);
        const int planes = k->conv1.c_out;
        size_t c1;
        bw->h = ch, bw->w = cw, bw->ho = ho, bw->wo = wo;
        if (k->conv3.c_out) {
            bw->a1 = ACT(planes, ch, cw);
            bw->a2 = ACT(planes, ho, wo);
            bw->a3 = ACT(k->c_out, ho, wo);
            c1 = nn_conv_col_min(&k->conv2, ch, cw, 0);
        } else {
            bw->a1 = ACT(planes, ho, wo);
            bw->a2 = ACT(k->c_out, ho, wo);
            bw->a3 = NULL;
            c1 = nn_conv_col_min(&k->conv1, ch, cw, 0);
            size_t c2 = nn_conv_col_min(&k->conv2, ho, wo, 0);
            if (c2 > c1) c1 = c2;
        }
        if (k->down.c_out) {
            bw->ad = ACT(k->c_out, ho, wo);
            size_t c3 = nn_conv_col_min(&k->down, ch, cw, 0);
            if (c3 > c1) c1 = c3;
        } else {
            bw->ad = NULL;
        }
        bw->out = ACT(k->c_out, ho, wo);
        if (c1 > col) col = c1;
        ch = ho, cw = wo;
    }
#undef ACT
    const int fd = m->feat_dim;
    ws->feat = take(a, (size_t)B * fd, sizeof(float));
    if (m->cfg.dropout > 0 && m->fc.out) {
        ws->featd = take(a, (size_t)B * fd, sizeof(float));
        ws->mask = take(a, (size_t)B * fd, sizeof(float));
    } else {
        ws->featd = ws->mask = NULL;
    }
    ws->logits = m->fc.out ? take(a, (size_t)B * m->fc.out, sizeof(float)) : NULL;
    int widest = fd > m->fc.out ? fd : m->fc.out;
    for (int i = 0; i < m->n_head; i++) {
        ws->h_lin[i] = take(a, (size_t)B * m->head_fc[i].out, sizeof(float));
        if (i < m->n_head - 1) ws->h_act[i] = take(a, (size_t)B * m->head_fc[i].out, sizeof(float));
        if (m->head_fc[i].out > widest) widest = m->head_fc[i].out;
    }
    for (int i = 0; i < 3; i++) ws->hg[i] = take(a, (size_t)B * widest, sizeof(float));
    ws->stats = take(a, (size_t)m->n_bufs, sizeof(float));
    /* backward scratch: the blocks rotate through all four (each as large as the largest block tensor);
     * the stem's backward needs two of its own size, g[0] and g[1] */
    for (int i = 0; i < 4; i++) ws->g[i] = take(a, i < 2 && stem_act > maxact ? stem_act : maxact, sizeof(float));
    /* the largest convolution on one image at least; more images per GEMM up to COL_TARGET; and room
     * for every convolution's packed kernels (the micro-kernel path) */
    size_t cap = col;
    if (col > 0 && col < COL_TARGET) {
        size_t per = COL_TARGET / col;
        cap = col * (per < (size_t)B ? per : (size_t)B);
    }
    size_t fast = nn_conv_ws_fast(&m->conv1, 1);
    for (int b = 0; b < m->n_blocks; b++) {
        const nn_block *k = &m->blocks[b];
        const nn_conv *cv[4] = {&k->conv1, &k->conv2, &k->conv3, &k->down};
        for (int i = 0; i < 4; i++)
            if (cv[i]->c_out && nn_conv_ws_fast(cv[i], 0) > fast) fast = nn_conv_ws_fast(cv[i], 0);
    }
    if (fast > cap) cap = fast;
    /* Winograd (3x3 stride-1 convolutions): transformed kernel and tiles of the whole batch when that
     * is at most WINO_TARGET floats beyond the kernel, else of as many images as fit (at least one) */
    for (int b = 0; b < m->n_blocks; b++) {
        const nn_block *k = &m->blocks[b];
        const blk_ws *bw = &ws->blk[b];
        const nn_conv *cv[3] = {&k->conv1, &k->conv2, &k->conv3};
        const int hs[3] = {bw->h, k->conv3.c_out ? bw->h : bw->ho, bw->ho}, wss[3] = {bw->w, k->conv3.c_out ? bw->w : bw->wo, bw->wo};
        for (int i = 0; i < 3; i++) {
            if (!cv[i]->c_out) continue;
            const size_t fixed = nn_wino_ws(cv[i], hs[i], wss[i], 0), one = nn_wino_ws(cv[i], hs[i], wss[i], 1);
            const size_t all = nn_wino_ws(cv[i], hs[i], wss[i], B);
            size_t want = all < fixed + WINO_TARGET ? all : fixed + WINO_TARGET;
            if (want < one) want = one;
            if (want > cap) cap = want;
        }
    }
    ws->col_cap = cap;
    ws->col = take(a, cap ? cap : 1, sizeof(float));
}

nn_ws *nn_ws_create(const nn_model *m, int batch, int h, int w, struct util_err *err)
{
    if (batch < 1 || batch > 1 << 20) return util_err_set(err, "batch %d out of range", batch), NULL;
    if (h < 1 || w < 1 || h > 1 << 16 || w > 1 << 16)
        return util_err_set(err, "input size %dx%d out of range", h, w), NULL;
    nn_ws *ws = calloc(1, sizeof *ws);
    if (!ws) return util_err_set(err, "out of memory"), NULL;
    ws->batch = batch, ws->h = h, ws->w = w;
    ws->geo = stem_geometry(m, h, w);
    int ch = ws->geo.hp, cw = ws->geo.wp;
    if (ws->geo.h0 < 1 || ws->geo.w0 < 1 || ch < 1 || cw < 1) goto small;
    for (int b = 0; b < m->n_blocks; b++) {
        ch = nn_out_size(ch, 3, m->blocks[b].stride, 1), cw = nn_out_size(cw, 3, m->blocks[b].stride, 1);
        if (ch < 1 || cw < 1) goto small;
    }
    ws->blk = calloc(m->n_blocks, sizeof *ws->blk);
    if (!ws->blk) goto oom;
    arena a = {0};
    layout_ws(ws, m, &a);
    ws->bytes = a.used;
    ws->mem = aligned_alloc(64, a.used);
    if (!ws->mem) goto oom;
    a = (arena){.base = ws->mem};
    layout_ws(ws, m, &a);
    return ws;
small:
    nn_ws_free(ws);
    util_err_set(err, "input size %dx%d is too small for %s", h, w, m->cfg.arch);
    return NULL;
oom:
    {
        size_t mb = ws->bytes >> 20;
        nn_ws_free(ws);
        util_err_set(err, "out of memory for the batch workspace (%zu MiB for batch %d at %dx%d)", mb, batch, h, w);
    }
    return NULL;
}

void nn_ws_free(nn_ws *ws)
{
    if (!ws) return;
    free(ws->mem);
    free(ws->blk);
    free(ws);
}

size_t nn_ws_bytes(const nn_ws *ws) { return ws->bytes; }
int nn_ws_batch(const nn_ws *ws) { return ws->batch; }
void nn_ws_set_seed(nn_ws *ws, uint64_t seed, uint64_t counter) { ws->seed = seed, ws->counter = counter; }
uint64_t nn_ws_counter(const nn_ws *ws) { return ws->counter; }
const float *nn_ws_features(const nn_ws *ws) { return ws->feat; }
const float *nn_ws_logits(const nn_ws *ws) { return ws->logits; }

/* Where a BN layer's batch statistics live in ws->stats: the mean at its running mean's offset, the
 * inverse std at its running variance's offset. */
static float *smean(const nn_model *m, nn_ws *ws, const nn_bn *l) { return ws->stats + (l->mean - m->bufs); }
static float *sinv(const nn_model *m, nn_ws *ws, const nn_bn *l) { return ws->stats + (l->var - m->bufs); }

/* ---------------------------------------------------------------- forward ---- */

const float *nn_forward(nn_model *m, nn_ws *ws, const float *x, int n, int train)
{
    assert(n >= 1 && n <= ws->batch);
    const int tb = train && !m->freeze_backbone;
    ws->n = n, ws->x = x, ws->train = train, ws->train_bb = tb;
    const stem_geom g = ws->geo;
    /* g[0] and g[1] are stem-sized; g[0] .. g[2] are free during the forward pass except that g[0]
     * holds a block's normalised shortcut: conv1's output goes to g[1], the inner BN+ReLU outputs to
     * g[1] and g[2] (each g is as large as the largest block tensor) */
    float *a0 = ws->g[1], *r1 = ws->g[1], *r2 = ws->g[2];
    nn_conv_forward(&m->conv1, a0, x, 1, n, ws->h, ws->w, ws->col, ws->col_cap);
    nn_bn_forward(&m->bn1, ws->r0, a0, NULL, 1, (int64_t)n * g.h0 * g.w0, tb, smean(m, ws, &m->bn1),
                  sinv(m, ws, &m->bn1));
    if (m->cfg.stem == NN_STEM_IMAGENET)
        nn_maxpool_forward(ws->p0, ws->pidx, ws->r0, (int64_t)m->cfg.width * n, g.h0, g.w0, 3, 2, 1);
    const float *cur = ws->p0;
    for (int b = 0; b < m->n_blocks; b++) {
        nn_block *k = &m->blocks[b];
        blk_ws *bw = &ws->blk[b];
        const int64_t mi = (int64_t)n * bw->h * bw->w, mo = (int64_t)n * bw->ho * bw->wo;
        nn_bn *last;
        const float *lastx;
        if (k->conv3.c_out) {
            nn_conv_forward(&k->conv1, bw->a1, cur, 0, n, bw->h, bw->w, ws->col, ws->col_cap);
            nn_bn_forward(&k->bn1, r1, bw->a1, NULL, 1, mi, tb, smean(m, ws, &k->bn1), sinv(m, ws, &k->bn1));
            nn_conv_forward(&k->conv2, bw->a2, r1, 0, n, bw->h, bw->w, ws->col, ws->col_cap);
            nn_bn_forward(&k->bn2, r2, bw->a2, NULL, 1, mo, tb, smean(m, ws, &k->bn2), sinv(m, ws, &k->bn2));
            nn_conv_forward(&k->conv3, bw->a3, r2, 0, n, bw->ho, bw->wo, ws->col, ws->col_cap);
            last = &k->bn3, lastx = bw->a3;
        } else {
            nn_conv_forward(&k->conv1, bw->a1, cur, 0, n, bw->h, bw->w, ws->col, ws->col_cap);
            nn_bn_forward(&k->bn1, r1, bw->a1, NULL, 1, mo, tb, smean(m, ws, &k->bn1), sinv(m, ws, &k->bn1));
            nn_conv_forward(&k->conv2, bw->a2, r1, 0, n, bw->ho, bw->wo, ws->col, ws->col_cap);
            last = &k->bn2, lastx = bw->a2;
        }
        const float *res = cur;
        if (k->down.c_out) {
            /* the normalised shortcut is needed only here: it lives in backward scratch */
            nn_conv_forward(&k->down, bw->ad, cur, 0, n, bw->h, bw->w, ws->col, ws->col_cap);
            nn_bn_forward(&k->down_bn, ws->g[0], bw->ad, NULL, 0, mo, tb, smean(m, ws, &k->down_bn),
                          sinv(m, ws, &k->down_bn));
            res = ws->g[0];
        }
        nn_bn_forward(last, bw->out, lastx, res, 1, mo, tb, smean(m, ws, last), sinv(m, ws, last));
        cur = bw->out;
    }
    const blk_ws *lb = &ws->blk[m->n_blocks - 1];
    nn_avgpool_forward(ws->feat, cur, m->feat_dim, n, (int64_t)lb->ho * lb->wo);
    const float *out = ws->feat;
    if (m->fc.out) {
        const float *in = ws->feat;
        if (train && ws->featd) {
            util_rng r = util_rng_split(ws->seed, ws->counter++);
            nn_dropout_forward(ws->featd, ws->mask, ws->feat, (int64_t)n * m->feat_dim, m->cfg.dropout, &r);
            in = ws->featd;
        }
        nn_linear_forward(&m->fc, ws->logits, in, n);
        out = ws->logits;
    }
    for (int i = 0; i < m->n_head; i++) {
        nn_linear_forward(&m->head_fc[i], ws->h_lin[i], out, n);
        out = ws->h_lin[i];
        if (i < m->n_head - 1) {
            nn_bn *l = &m->head_bn[i];
            nn_bn1d_forward(l, ws->h_act[i], ws->h_lin[i], 1, n, train, smean(m, ws, l), sinv(m, ws, l));
            out = ws->h_act[i];
        }
    }
    return out;
}

/* ---------------------------------------------------------------- backward ---- */

static void add_into(float *y, const float *x, int64_t n)
{
#pragma omp parallel for schedule(static) if (n > NN_PAR_MIN)
    for (int64_t i = 0; i < n; i++) y[i] += x[i];
}

void nn_backward(nn_model *m, nn_ws *ws, const float *dout, float *dx)
{
    const int n = ws->n, tb = ws->train_bb;
    /* ---- head or fc, down to the pooled features */
    const float *dfeat = dout;
    if (m->n_head) {
        float *ga = ws->hg[1], *gb = ws->hg[2];
        const float *g = dout;
        for (int i = m->n_head - 1; i >= 0; i--) {
            const float *in = i == 0 ? ws->feat : ws->h_act[i - 1];
            float *dinp = i == 0 ? ws->hg[0] : ga;
            nn_linear_backward(&m->head_fc[i], dinp, g, in, n);
            if (i > 0) {
                nn_bn *l = &m->head_bn[i - 1];
                nn_bn1d_backward(l, gb, ga, ws->h_act[i - 1], 1, ws->h_lin[i - 1], n, ws->train, smean(m, ws, l),
                                 sinv(m, ws, l));
                g = gb;
                float *t = ga;
                ga = gb, gb = t;
            }
        }
        dfeat = ws->hg[0];
    } else if (m->fc.out) {
        const int drop = ws->train && ws->featd;
        nn_linear_backward(&m->fc, ws->hg[0], dout, drop ? ws->featd : ws->feat, n);
        if (drop) nn_dropout_backward(ws->hg[0], ws->hg[0], ws->mask, (int64_t)n * m->feat_dim);
        dfeat = ws->hg[0];
    }
    if (m->freeze_backbone) return;

    /* ---- blocks, last to first; g[ip] holds the gradient of the current block's output */
    int ip = 0;
    const blk_ws *lb = &ws->blk[m->n_blocks - 1];
    nn_avgpool_backward(ws->g[ip], dfeat, m->feat_dim, n, (int64_t)lb->ho * lb->wo);
    for (int b = m->n_blocks - 1; b >= 0; b--) {
        nn_block *k = &m->blocks[b];
        blk_ws *bw = &ws->blk[b];
        const int i1 = (ip + 1) & 3, i2 = (ip + 2) & 3, i3 = (ip + 3) & 3;
        float *P = ws->g[ip], *Q1 = ws->g[i1], *Q2 = ws->g[i2], *Q3 = ws->g[i3];
        const float *xin = b == 0 ? ws->p0 : ws->blk[b - 1].out;
        const int64_t mi = (int64_t)n * bw->h * bw->w, mo = (int64_t)n * bw->ho * bw->wo;
        float *col = ws->col;
        const size_t cap = ws->col_cap;
        if (k->conv3.c_out) {
            nn_bn_backward(&k->bn3, Q1, P, bw->out, 1, bw->a3, mo, tb, smean(m, ws, &k->bn3), sinv(m, ws, &k->bn3));
            /* Q3 is free until conv1's input gradient: it holds the recomputed r2, then r1 */
            nn_bn_recompute(&k->bn2, Q3, bw->a2, 1, mo, tb, smean(m, ws, &k->bn2), sinv(m, ws, &k->bn2));
            nn_conv_backward(&k->conv3, Q2, 0, Q1, Q3, 0, n, bw->ho, bw->wo, col, cap);
            nn_bn_backward(&k->bn2, Q1, Q2, Q3, 1, bw->a2, mo, tb, smean(m, ws, &k->bn2), sinv(m, ws, &k->bn2));
            nn_bn_recompute(&k->bn1, Q3, bw->a1, 1, mi, tb, smean(m, ws, &k->bn1), sinv(m, ws, &k->bn1));
            nn_conv_backward(&k->conv2, Q2, 0, Q1, Q3, 0, n, bw->h, bw->w, col, cap);
            nn_bn_backward(&k->bn1, Q1, Q2, Q3, 1, bw->a1, mi, tb, smean(m, ws, &k->bn1), sinv(m, ws, &k->bn1));
            nn_conv_backward(&k->conv1, Q3, 0, Q1, xin, 0, n, bw->h, bw->w, col, cap);
        } else {
            /* P is masked by the final ReLU in place: it is then also the shortcut's gradient */
            nn_bn_backward(&k->bn2, Q1, P, bw->out, 1, bw->a2, mo, tb, smean(m, ws, &k->bn2), sinv(m, ws, &k->bn2));
            /* Q3 is free until conv1's input gradient: it holds the recomputed r1 */
            nn_bn_recompute(&k->bn1, Q3, bw->a1, 1, mo, tb, smean(m, ws, &k->bn1), sinv(m, ws, &k->bn1));
            nn_conv_backward(&k->conv2, Q2, 0, Q1, Q3, 0, n, bw->ho, bw->wo, col, cap);
            nn_bn_backward(&k->bn1, Q1, Q2, Q3, 1, bw->a1, mo, tb, smean(m, ws, &k->bn1), sinv(m, ws, &k->bn1));
            nn_conv_backward(&k->conv1, Q3, 0, Q1, xin, 0, n, bw->h, bw->w, col, cap);
        }
        if (k->down.c_out) {
            nn_bn_backward(&k->down_bn, Q1, P, NULL, 0, bw->ad, mo, tb, smean(m, ws, &k->down_bn),
                           sinv(m, ws, &k->down_bn));
            nn_conv_backward(&k->down, Q3, 1, Q1, xin, 0, n, bw->h, bw->w, col, cap);
        } else {
            add_into(Q3, P, mi * k->c_in);   /* identity shortcut: same shape in and out */
        }
        ip = i3;
    }

    /* ---- stem */
    const stem_geom g = ws->geo;
    /* g[0] and g[1] hold stem-sized tensors; g[ip] (the stem output's gradient) is free once read */
    float *G = ws->g[ip], *da0;
    if (m->cfg.stem == NN_STEM_IMAGENET) {
        float *dr0 = ws->g[ip == 0 ? 1 : 0];
        nn_maxpool_backward(dr0, G, ws->pidx, (int64_t)m->cfg.width * n, g.h0, g.w0, g.hp, g.wp);
        G = dr0;
        da0 = ws->g[ip == 0 ? 0 : 1];
    } else {
        da0 = ws->g[(ip + 1) & 3];   /* all four are stem-sized: r0 is the first block's input */
    }
    /* conv1's output again (the same computation as forward: bit-identical), then its gradient in place */
    nn_conv_forward(&m->conv1, da0, ws->x, 1, n, ws->h, ws->w, ws->col, ws->col_cap);
    nn_bn_backward(&m->bn1, da0, G, ws->r0, 1, da0, (int64_t)n * g.h0 * g.w0, tb, smean(m, ws, &m->bn1),
                   sinv(m, ws, &m->bn1));
    nn_conv_backward(&m->conv1, dx, 0, da0, ws->x, 1, n, ws->h, ws->w, ws->col, ws->col_cap);
}

/* ---------------------------------------------------------------- named points ---- */

/* Activation (C, n, hw) of a named point; NULL if unknown. */
static const float *point(const nn_model *m, const nn_ws *ws, const char *name, int *c, int64_t *hw)
{
    if (!strcmp(name, "conv1") || !strcmp(name, "relu")) {
        *c = m->cfg.width;
        if (ws) *hw = (int64_t)ws->geo.h0 * ws->geo.w0;
        return ws ? ws->r0 : (const float *)1;
    }
    if (!strcmp(name, "maxpool") && m->cfg.stem == NN_STEM_IMAGENET) {
        *c = m->cfg.width;
        if (ws) *hw = (int64_t)ws->geo.hp * ws->geo.wp;
        return ws ? ws->p0 : (const float *)1;
    }
    /* "layerS" or "layerS.B", digits only */
    if (strncmp(name, "layer", 5) != 0 || name[5] < '1' || name[5] > '4') return NULL;
    const int s = name[5] - '0';
    int j = m->n_stage[s - 1] - 1;
    if (name[6] == '.') {
        const char *p = name + 7;
        if (*p < '0' || *p > '9') return NULL;
        j = 0;
        for (; *p >= '0' && *p <= '9' && j < 1000; p++) j = j * 10 + (*p - '0');
        if (*p != 0 || j >= m->n_stage[s - 1]) return NULL;
    } else if (name[6] != 0) {
        return NULL;
    }
    int b = j;
    for (int i = 0; i < s - 1; i++) b += m->n_stage[i];
    *c = m->blocks[b].c_out;
    if (ws) *hw = (int64_t)ws->blk[b].ho * ws->blk[b].wo;
    return ws ? ws->blk[b].out : (const float *)1;
    return NULL;
}

int nn_layer_channels(const nn_model *m, const char *name)
{
    if (!strcmp(name, "avgpool")) return m->feat_dim;
    int c;
    int64_t hw;
    return point(m, NULL, name, &c, &hw) ? c : -1;
}

int nn_ws_pooled(const nn_model *m, const nn_ws *ws, const char *name, float *out, size_t cap,
                 struct util_err *err)
{
    const int n = ws->n;
    if (!strcmp(name, "avgpool")) {
        if (cap < (size_t)n * m->feat_dim) return util_err_set(err, "output buffer too small for %s", name);
        memcpy(out, ws->feat, sizeof(float) * n * m->feat_dim);
        return m->feat_dim;
    }
    int c;
    int64_t hw;
    const float *a = point(m, ws, name, &c, &hw);
    if (!a)
        return util_err_set(err, "unknown layer '%s' (conv1, %slayer1..layer4, layerN.B, avgpool)", name,
                            m->cfg.stem == NN_STEM_IMAGENET ? "maxpool, " : "");
    if (cap < (size_t)n * c) return util_err_set(err, "output buffer too small for %s", name);
    nn_avgpool_forward(out, a, c, n, hw);
    return c;
}
