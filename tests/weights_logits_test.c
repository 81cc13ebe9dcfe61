/* weights_logits_test.c: published-weights interop.  Every file of ../shared/reference/interop is loaded
 * through train_load_model (the loader finetune --init and embed --model use), run in eval mode on the
 * reference input and compared with the logits PyTorch stored; evil.pth must be refused by name and
 * must never run its payload. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nn.h"
#include "test.h"
#include "train.h"
#include "util.h"
#include "weights.h"

/* Tolerance: the forward differs from PyTorch's only by float32 summation order (im2col + BLIS vs
 * oneDNN), about 1e-6 relative per layer over ~20-50 layers; 1e-4 relative leaves margin without
 * hiding a wrong tensor (a swapped or mis-converted weight moves logits by 1e-2 or more).  The floor
 * 1e-2 judges logits near zero by absolute error: the logits are O(1). */
#define TOL 1e-4
#define FLOOR 1e-2

static void check_file(const char *shared, const char *file, const char *ref, const char *logits)
{
    char path[4096], in_path[4096], lg_path[4096];
    snprintf(path, sizeof path, "%s/reference/interop/%s", shared, file);
    snprintf(in_path, sizeof in_path, "%s/reference/%s/input.npy", shared, ref);
    if (logits) snprintf(lg_path, sizeof lg_path, "%s/reference/interop/%s", shared, logits);
    else snprintf(lg_path, sizeof lg_path, "%s/reference/%s/eval.logits.npy", shared, ref);
    struct util_err err = {{0}};
    nn_model *m = train_load_model(path, NULL, &err);
    test_check(m != NULL, "%s: loads (%s)", file, m ? "ok" : err.msg);
    if (!m) return;
    int xd = 0, ld = 0;
    int64_t xs[8] = {0}, ls[8] = {0};
    float *x = nn_npy_load(in_path, &xd, xs, &err);
    float *want = x ? nn_npy_load(lg_path, &ld, ls, &err) : NULL;
    if (!x || !want || xd != 4 || ld != 2) {
        test_check(0, "%s: reference input/logits read: %s", file, err.msg);
        goto done;
    }
    test_check(xs[1] == m->cfg.in_ch && ls[0] == xs[0] && ls[1] == m->out_dim,
               "%s: shapes agree (input %lldx%lldx%lldx%lld, logits %lldx%lld, model out %d)", file,
               (long long)xs[0], (long long)xs[1], (long long)xs[2], (long long)xs[3], (long long)ls[0],
               (long long)ls[1], m->out_dim);
    if (xs[1] != m->cfg.in_ch || ls[0] != xs[0] || ls[1] != m->out_dim) goto done;
    nn_ws *ws = nn_ws_create(m, (int)xs[0], (int)xs[2], (int)xs[3], &err);
    if (!ws) {
        test_check(0, "%s: workspace: %s", file, err.msg);
        goto done;
    }
    const float *got = nn_forward(m, ws, x, (int)xs[0], 0);
    char what[256];
    snprintf(what, sizeof what, "%s: eval logits vs PyTorch", file);
    test_close(what, got, want, (long)(ls[0] * ls[1]), TOL, FLOOR);
    nn_ws_free(ws);
done:
    free(x);
    free(want);
    nn_model_free(m);
}

static void check_evil(const char *shared)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/reference/interop/evil.pth", shared);
    /* The payload writes evil-ran.txt into the current directory (the test's temporary cwd). */
    unlink("evil-ran.txt");
    struct util_err err = {{0}};
    nn_model *m = train_load_model(path, NULL, &err);
    test_check(m == NULL && strstr(err.msg, "posix.system") != NULL,
               "evil.pth refused naming posix.system (%s)", m ? "loaded!" : err.msg);
    nn_model_free(m);
    weights_set *s = weights_load(path, NULL, &err);
    test_check(s == NULL && strstr(err.msg, "posix.system") != NULL, "evil.pth refused by weights_load (%s)",
               s ? "loaded!" : err.msg);
    weights_free(s);
    test_check(access("evil-ran.txt", F_OK) != 0, "evil.pth payload did not run (no evil-ran.txt)");
}

int main(void)
{
    const char *shared = test_shared_dir();
    char probe[4096];
    snprintf(probe, sizeof probe, "%s/reference/interop/README.json", shared ? shared : ".");
    if (!shared || access(probe, R_OK) != 0) {
        test_skip("weights interop logits: $EARSIGHT_SHARED/reference/interop absent");
        return test_exit();
    }
    check_file(shared, "resnet18_w16.safetensors", "resnet18_w16", NULL);
    check_file(shared, "resnet18_w16.f16.safetensors", "resnet18_w16", "resnet18_w16.f16.eval.logits.npy");
    check_file(shared, "resnet18_w16.bf16.safetensors", "resnet18_w16", "resnet18_w16.bf16.eval.logits.npy");
    check_file(shared, "resnet18_w16.pth", "resnet18_w16", NULL);
    check_file(shared, "resnet18_w16.legacy.pth", "resnet18_w16", NULL);
    check_file(shared, "resnet50_w8.checkpoint.pth", "resnet50_w8", NULL);
    check_evil(shared);
    return test_exit();
}
