/* weights_convert.c: the model-file conversions behind `tsz convert` and the model summary behind
 * `tsz info` on safetensors and PyTorch files: load (any format, unwrapped and stripped), infer the
 * ResNet, match strictly against its torchvision state dict, write the format the output's extension
 * names. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tsz.h"
#include "util.h"
#include "weights.h"

static int has_ext(const char *path, const char *ext)
{
    size_t n = strlen(path), k = strlen(ext);
    return n > k && strcmp(path + n - k, ext) == 0;
}

/* Each note of s as "PROG: PATH: NOTE" on f (NULL: none). */
static void print_notes(const weights_set *s, const char *path, FILE *f)
{
    if (!f) return;
    for (const char *p = weights_notes(s); *p;) {
        const char *e = strchr(p, '\n');
        int len = e ? (int)(e - p) : (int)strlen(p);
        if (len) fprintf(f, "%s: %s: %.*s\n", util_progname(), path, len, p);
        p += len + (e != NULL);
    }
}

weights_set *weights_load_resnet(const char *path, const weights_opts *o, const char *arch, int flags, FILE *notes,
                                 weights_arch *a, struct util_err *err)
{
    weights_spec *spec = NULL;
    int n_spec = 0;
    weights_set *s = weights_load(path, o, err);
    if (!s) return NULL;
    struct util_err e2 = {{0}};
    const int ok = weights_infer_resnet(s, arch, a, &e2) == 0 && weights_resnet_spec(a, &spec, &n_spec, &e2) == 0 &&
                   weights_match(s, spec, n_spec, flags, &e2) == 0;
    free(spec);
    print_notes(s, path, notes);
    if (ok) return s;
    if (strncmp(e2.msg, path, strlen(path)) == 0) util_err_set(err, "%s", e2.msg);   /* already named */
    else util_err_set(err, "%s: %s", path, e2.msg);
    weights_free(s);
    return NULL;
}

/* in -> out: .safetensors, .pth (zip format) by extension, else a TSZ model stream with the
 * architecture attributes.  flags: WEIGHTS_NON_STRICT.  Notes go to stderr.  0 or -1. */
int weights_convert_run(const char *in, const char *out, const weights_opts *lo, const char *arch, int flags,
                        int hist_argc, char **hist_argv, const tsz_wopts *w, struct util_err *err)
{
    int rc = -1;
    tsz_attrs attrs;
    tsz_attrs_init(&attrs);
    weights_arch a;
    weights_set *s = weights_load_resnet(in, lo, arch, flags, stderr, &a, err);
    if (!s) goto done;
    /* The architecture travels with the weights in every format: TSZ attributes, safetensors
     * __metadata__ (string to string, ignored by PyTorch). */
    if (tsz_attrs_copy(&attrs, &s->attrs) < 0 || weights_arch_attrs(&a, &attrs) < 0 ||
        (hist_argc > 0 && tsz_attrs_add_history(&attrs, hist_argc, hist_argv) < 0)) {
        util_err_set(err, "out of memory");
        goto done;
    }
    if (has_ext(out, ".safetensors")) {
        tsz_attrs_free(&s->attrs);
        tsz_attrs_init(&s->attrs);
        if (tsz_attrs_copy(&s->attrs, &attrs) < 0) {
            util_err_set(err, "out of memory");
            goto done;
        }
        rc = weights_save_safetensors(s, out, err);
    } else if (has_ext(out, ".pth")) {
        rc = weights_save_pth(s, out, 0, err);
    } else {
        rc = weights_save_tsz(s, out, &attrs, w, err);
    }
done:
    tsz_attrs_free(&attrs);
    weights_free(s);
    return rc;
}

/* Summary of a model file of any format: format, architecture (or why none), tensors, parameters,
 * dtypes as stored.  0 or -1. */
int weights_info_print(const char *path, FILE *f, struct util_err *err)
{
    weights_set *s = weights_load(path, NULL, err);
    if (!s) return -1;
    weights_arch a;
    struct util_err e2 = {{0}};
    char dt[128], as[sizeof e2.msg + 64];
    if (weights_infer_resnet(s, NULL, &a, &e2) == 0) weights_arch_str(&a, as, sizeof as);
    else snprintf(as, sizeof as, "none inferred (%s)", e2.msg);
    weights_dtypes(s, dt, sizeof dt);
    fprintf(f, "%s:\n  format: %s\n  architecture: %s\n  tensors: %d\n  parameters: %lld\n  dtypes: %s\n",
            path, weights_format_name(s->format), as, s->n, (long long)weights_param_count(s), dt);
    const char *notes = weights_notes(s);
    if (*notes) {
        fprintf(f, "  notes:\n");
        for (const char *p = notes; *p;) {
            const char *e = strchr(p, '\n');
            int len = e ? (int)(e - p) : (int)strlen(p);
            if (len) fprintf(f, "    %.*s\n", len, p);
            p += len + (e != NULL);
        }
    }
    weights_free(s);
    return 0;
}
