/* weights.h: named tensor sets read from model files of any origin, detected by content: TSZ model
 * streams, safetensors, PyTorch zip checkpoints (torch.save since 1.6) and PyTorch's legacy (pre-1.6)
 * format; the unwrapping, prefix stripping, ResNet inference and strict name/shape matching that
 * importing published weights needs; and writers for safetensors, TSZ and .pth.
 * Pickles are read by a restricted unpickler that builds plain data and tensors only: any global other
 * than the few a state dict needs is refused by name, and nothing from a file is ever executed.  (A few
 * inert globals that training checkpoints keep beside the weights, argparse.Namespace, numpy scalars,
 * sets and bytes, become opaque values that are never called and never become tensors.) */
#ifndef EARSIGHT_WEIGHTS_H
#define EARSIGHT_WEIGHTS_H

#include <stddef.h>
#include <stdio.h>
#include <stdint.h>

#include "tsz.h"
#include "util.h"

enum weights_format {
    WEIGHTS_UNKNOWN = 0,
    WEIGHTS_TSZ,          /* earsight model stream */
    WEIGHTS_SAFETENSORS,  /* 8-byte header length, JSON header, raw data */
    WEIGHTS_PTH,          /* torch.save zip: DIR/data.pkl + DIR/data/KEY */
    WEIGHTS_PTH_LEGACY    /* pre-1.6 torch.save: magic, protocol, sys_info, object, keys, storages */
};

/* One named tensor.  Every floating type is converted to f32 and every integer or bool type to i64
 * (num_batches_tracked and similar counters), so a user of the set sees two dtypes only. */
typedef struct {
    char *name;                 /* at most TSZ_MAX_NAME bytes, no control characters */
    enum tsz_dtype dtype;       /* TSZ_F32 or TSZ_I64 */
    const char *file_dtype;     /* as stored in the file: "f32", "f16", "bf16", "f64", "i64", "bool", ... */
    int ndim;                   /* 0..TSZ_MAX_DIMS; 0 is a scalar */
    int64_t shape[TSZ_MAX_DIMS];
    int64_t numel;
    void *data;                 /* numel elements of dtype, C order, owned by the set */
    int borrowed;               /* data lies in the set's arena or its file mapping: freed with the set */
} weights_tensor;

struct weights_chunk;

typedef struct {
    int n, cap;
    weights_tensor *t;          /* in file order (data order for safetensors), or spec order after match */
    enum weights_format format;
    tsz_attrs attrs;            /* TSZ header attributes, or safetensors __metadata__ with valid keys */
    char *label;                /* file name for messages */
    char *notes;                /* what loading/matching did, one line per item (never NULL) */
    size_t notes_len, notes_cap;
    /* Memory: tensor data lives in an arena of large chunks (transparent huge pages requested: 4 KiB
     * page faults dominate loading 100 MB on virtual machines), or, for f32/i64 data a loaded file
     * stores as is, in the file's private mapping, which the set then keeps (the pages are the page
     * cache's: no copy, no fresh memory; writing to them copies the page, never touching the file; as
     * with any mapped file, another program truncating it while the set lives would fault). */
    struct weights_chunk *arena;
    void *map;                  /* the file mapping borrowed tensors point into, or NULL */
    size_t map_len;
    int may_borrow;             /* the reader may point tensors into the buffer it reads */
} weights_set;

/* How to find the weights inside a checkpoint. */
typedef struct {
    const char *key;            /* --key NAME: the checkpoint entry holding the state dict (NULL: automatic) */
    const char *const *strip;   /* --strip-prefix P (repeatable); NULL/0: automatic */
    int n_strip;
} weights_opts;

/* ---- loading ---- */
/* Load path, detecting the format by content ("-" is stdin, read as a TSZ stream).  Checkpoints are
 * unwrapped (opts->key, else the tensors at the top level, else the first of state_dict,
 * model_state_dict, model, net, network, encoder, module, backbone, params, weights holding tensors,
 * else the first of those holding a dict, looked into the same way, up to 4 levels), then weights_strip
 * is applied.  Non-tensor entries are ignored, with a note.  opts may be NULL.
 * Returns a set the caller frees with weights_free, or NULL with err set. */
weights_set *weights_load(const char *path, const weights_opts *opts, struct util_err *err);
/* The same for a file already in memory (not TSZ); label names it in messages.  buf is not kept. */
weights_set *weights_load_mem(const void *buf, size_t n, const char *label, const weights_opts *opts,
                              struct util_err *err);
/* Format of a file from its first bytes (n >= 16 recommended); WEIGHTS_UNKNOWN if none matches
 * (a TSZ stream is recognised by its raw or zstd magic). */
enum weights_format weights_detect(const void *head, size_t n);
const char *weights_format_name(enum weights_format f);   /* "tsz", "safetensors", "pth", "pth-legacy" */

/* Strip prefixes from every name.  With prefixes (tried in order, first on the name as stored, then
 * after a leading "module."): names carrying none of them are dropped, with a note.  Without: a
 * leading "module." (DataParallel) is removed, then the root of the one ResNet found (a prefix P with
 * both P"conv1.weight" and P"layer1.0.conv1.weight") is stripped and names outside it dropped; two or
 * more such roots are an error asking for --strip-prefix.  Names equal after stripping are an error.
 * 0 or -1. */
int weights_strip(weights_set *s, const char *const *prefixes, int n_prefixes, struct util_err *err);

/* ---- building and querying ---- */
weights_set *weights_create(const char *label, struct util_err *err);
void weights_free(weights_set *s);   /* NULL is fine */
/* Append a tensor (dtype TSZ_F32 or TSZ_I64) with uninitialised data, or copied from data if not NULL;
 * the data is in the set's arena (freed with the set, even if the tensor is dropped earlier).
 * Returns the tensor (valid until the next add) or NULL (no memory, bad shape, name too long). */
weights_tensor *weights_add(weights_set *s, const char *name, enum tsz_dtype dtype, int ndim,
                            const int64_t *shape, const void *data, struct util_err *err);
/* The tensor called name, or NULL. */
weights_tensor *weights_find(const weights_set *s, const char *name);
/* Number of f32 elements (parameters and buffers; counters excluded). */
int64_t weights_numel(const weights_set *s);
/* Number of learnable parameters as torchvision counts them: f32 elements outside BatchNorm running
 * statistics (*.running_mean, *.running_var); 25,557,032 for ResNet-50. */
int64_t weights_param_count(const weights_set *s);
/* Distinct file dtypes, "f16" or "f32+i64" into buf. */
void weights_dtypes(const weights_set *s, char *buf, size_t cap);
/* The notes, one per line ("" when none); a tool prints each as "TOOL: FILE: LINE" on stderr. */
const char *weights_notes(const weights_set *s);
/* Append a note line (printf formatting). */
void weights_note(weights_set *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- ResNet architecture ---- */
typedef struct {
    char name[16];      /* "resnet18", "resnet34", "resnet50", "resnet101", "resnet152" */
    int depth;
    int bottleneck;     /* 1: Bottleneck blocks (expansion 4), 0: BasicBlock */
    int blocks[4];      /* blocks per stage, e.g. 3,4,6,3 */
    int width;          /* base width: conv1's output channels (64 in torchvision) */
    int in_channels;
    int num_classes;    /* 0: no fc */
    int stem_kernel;    /* conv1 kernel: 7 ("imagenet" stem), 3 ("small" stem) */
} weights_arch;

/* Infer the ResNet from names and shapes (torchvision names, prefixes already stripped).  force, if
 * not NULL ("resnet50", --arch), fixes the depth and block type; width, channels and classes still come
 * from the shapes.  0 or -1 (not a ResNet, unknown block counts). */
int weights_infer_resnet(const weights_set *s, const char *force, weights_arch *a, struct util_err *err);
/* Architecture by name: 0 or -1 for an unknown name (fills depth, bottleneck, blocks, name). */
int weights_arch_from_name(const char *name, weights_arch *a);
/* "resnet50 width 64 in_channels 3 num_classes 1000" */
void weights_arch_str(const weights_arch *a, char *buf, size_t cap);
/* Set model=resnet, arch, width, in_channels, num_classes, stem (imagenet|small) in attrs.  0 or -1. */
int weights_arch_attrs(const weights_arch *a, tsz_attrs *attrs);

/* ---- strict matching ---- */
typedef struct {
    char name[TSZ_MAX_NAME + 1];
    enum tsz_dtype dtype;       /* TSZ_F32 or TSZ_I64 */
    int ndim;
    int64_t shape[TSZ_MAX_DIMS];
} weights_spec;

/* The torchvision state_dict of the ResNet a describes: names, dtypes and shapes in state_dict order,
 * with the i64 scalar num_batches_tracked counters.  *spec is malloc'd; caller frees.  0 or -1. */
int weights_resnet_spec(const weights_arch *a, weights_spec **spec, int *n, struct util_err *err);

enum { WEIGHTS_NON_STRICT = 1 };
/* Match s against spec and reorder it to spec's order.  Tensors the spec does not list are dropped
 * with a note when they are counters (*num_batches_tracked) or heads (head., heads., fc.N., projector.,
 * projection., proj_head., predictor., prototypes., mlp., queue*, optim.); counters the spec lists but
 * the file lacks are added as 0 with a note.  Every other missing, unexpected or mis-shaped tensor is
 * listed in the notes (all of them); it is an error (-1, err summarising) unless flags has
 * WEIGHTS_NON_STRICT, in which case unexpected and mis-shaped tensors are dropped and 0 returned. */
int weights_match(weights_set *s, const weights_spec *spec, int n, int flags, struct util_err *err);

/* ---- writing (atomic: a temporary name renamed on success) ---- */
/* safetensors with F32/I64 tensors in set order, 8-byte aligned data, s->attrs as __metadata__.
 * path "-" is stdout. */
int weights_save_safetensors(const weights_set *s, const char *path, struct util_err *err);
/* A TSZ model stream: attrs (NULL: s->attrs), one record per tensor in set order.  opts may be NULL. */
int weights_save_tsz(const weights_set *s, const char *path, const tsz_attrs *attrs,
                     const tsz_wopts *opts, struct util_err *err);
/* A torch.save file of an OrderedDict state dict: the zip format (legacy = 0) or the pre-1.6
 * format (legacy = 1).  Not to stdout. */
int weights_save_pth(const weights_set *s, const char *path, int legacy, struct util_err *err);

/* ---- limits (hostile files) ---- */
#define WEIGHTS_MAX_TENSORS 1000000        /* tensors in one file */
#define WEIGHTS_MAX_HEADER (100u << 20)    /* safetensors JSON header bytes (as the reference parser) */
#define WEIGHTS_MAX_PICKLE_DEPTH 1000      /* nested MARKs in a pickle */

/* ---- tools (lib/weights_convert.c) ---- */
/* What every tool that reads a model does: weights_load, infer the ResNet (arch: NULL, or the depth to
 * force) into *a and match the set against its state dict (flags: WEIGHTS_NON_STRICT).  The set's notes
 * (unwrapping, dropped tensors) go to notes as "PROG: PATH: NOTE" lines (NULL: nowhere), also when the
 * match fails; the error names path.  The set, or NULL. */
weights_set *weights_load_resnet(const char *path, const weights_opts *o, const char *arch, int flags, FILE *notes,
                                 weights_arch *a, struct util_err *err);
/* `tsz convert`: load in, infer and match the ResNet (arch forces it), write out as .safetensors, .pth or
 * a TSZ model stream (by extension) with the command line hist_argv in its history; notes go to stderr.
 * 0 or -1. */
int weights_convert_run(const char *in, const char *out, const weights_opts *lo, const char *arch, int flags,
                        int hist_argc, char **hist_argv, const tsz_wopts *w, struct util_err *err);
/* `tsz info` of a non-TSZ model file: format, architecture, tensors, parameters, dtypes.  0 or -1. */
int weights_info_print(const char *path, FILE *f, struct util_err *err);

#endif
