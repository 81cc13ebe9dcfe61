/* weights_convert.c: the model-file conversions behind `tsz convert` and the model summary behind
 * `tsz info` on safetensors and PyTorch files: load (any format, unwrapped and stripped), infer the
 * ResNet, match strictly against its torchvision state dict, write the format the output's extension
 * names.  Declared where used until weights.h carries them (see weights_convert_run below). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tsz.h"
#include "util.h"
#include "weights.h"

int weights_convert_run(const char *in, const char *out, const weights_opts *lo, const char *arch, int flags,
                        int hist_argc, char **hist_argv, const tsz_wopts *w, const char *prog,
                        struct util_err *err);
int weights_info_print(const char *path, FILE *f, struct util_err *err);

static int has_ext(const char *path, const char *ext)
{
    size_t n = strlen(path), k = strlen(ext);
    return n > k && strcmp(path + n - k, ext) == 0;
}

/* Each note line as "PROG: FILE: NOTE" (loading and matching decisions the user should see). */
static void print_notes(const weights_set *s, const char *prog, const char *label)
{
    const char *p = weights_notes(s);
    while (*p) {
        const char *e = strchr(p, '\n');
        int len = e ? (int)(e - p) : (int)strlen(p);
        if (len) fprintf(stderr, "%s: %s: %.*s\n", prog, label, len, p);
        p += len + (e != NULL);
    }
}

/* in -> out: .safetensors, .pth (zip format) by extension, else a TSZ model stream with the
 * architecture attributes.  flags: WEIGHTS_NON_STRICT.  Notes go to stderr prefixed with prog.  0 or -1. */
int weights_convert_run(const char *in, const char *out, const weights_opts *lo, const char *arch, int flags,
                        int hist_argc, char **hist_argv, const tsz_wopts *w, const char *prog,
                        struct util_err *err)
{
    weights_spec *spec = NULL;
    int n_spec = 0, rc = -1;
    tsz_attrs attrs;
    tsz_attrs_init(&attrs);
    weights_set *s = weights_load(in, lo, err);
    if (!s) goto done;
    weights_arch a;
    struct util_err e2 = {{0}};
    if (weights_infer_resnet(s, arch, &a, &e2) < 0 || weights_resnet_spec(&a, &spec, &n_spec, &e2) < 0 ||
        weights_match(s, spec, n_spec, flags, &e2) < 0) {
        print_notes(s, prog, in);
        if (strncmp(e2.msg, in, strlen(in)) == 0) util_err_set(err, "%s", e2.msg);   /* already named */
        else util_err_set(err, "%s: %s", in, e2.msg);
        goto done;
    }
    print_notes(s, prog, in);
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
    free(spec);
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
