/* wav2mel_bench: in-process throughput of the audio front end on the files given, in clips/s:
 * decode only (the floor), spectrogram only (samples already in memory), and decode + spectrogram,
 * for librosa-style settings (n_fft 2048, hop 512, 128 mels) and the 3-channel esc50 preset, on
 * 1 thread and on all threads.  Every figure comes from this run on this machine.
 * Usage: wav2mel_bench [-r REPEAT] FILE... */
#include <omp.h>
#include <stdio.h>
#include <time.h>
#include <stdlib.h>
#include <string.h>

#include "audio.h"
#include "mel.h"
#include "util.h"

static int n_files, repeat = 1;
static char **files;
static float **clips;       /* decoded once for the spectrogram-only pass */
static int64_t *clip_n;

static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* CPU milliseconds per clip of the last pass: on a shared machine wall-clock rates fall with
 * the load while this stays near the cost of the work itself. */
static double last_cpu_ms;

/* One pass over all files (times repeat) on nt threads; mode 0 decode, 1 mel only, 2 both.
 * Returns clips per wall-clock second. */
static double pass(int mode, const mel_plan *m, int nt, int rate)
{
    int failed = 0;
    double t0 = util_now(), c0 = cpu_now();
#pragma omp parallel num_threads(nt)
    {
        struct util_err err = {0};
        audio_opts o;
        audio_opts_default(&o);
        o.rate = rate;
        float *x = NULL, *out = NULL;
        int64_t cap = 0, n, ocap = 0;
        mel_work *w = m ? mel_work_create(m, &err) : NULL;
#pragma omp for schedule(dynamic, 1)
        for (int i = 0; i < n_files * repeat; i++) {
            int f = i % n_files;
            const float *s = clips[f];
            n = clip_n[f];
            if (mode != 1) {
                if (audio_load(files[f], &o, &x, &cap, &n, &err) < 0) {
#pragma omp atomic write
                    failed = 1;
                    continue;
                }
                s = x;
            }
            if (mode == 0) continue;
            int64_t shape[3];
            if (mel_out_shape(m, n, shape, &err) < 0) {
#pragma omp atomic write
                failed = 1;
                continue;
            }
            int64_t total = shape[0] * shape[1] * shape[2];
            if (total > ocap) {
                free(out);
                out = malloc((size_t)total * sizeof(float));
                ocap = total;
            }
            if (mel_compute(m, w, s, n, out, ocap, &err) < 0) {
#pragma omp atomic write
                failed = 1;
            }
        }
        mel_work_free(w);
        free(x);
        free(out);
    }
    double dt = util_now() - t0;
    last_cpu_ms = (cpu_now() - c0) * 1e3 / ((double)n_files * repeat);
    if (failed) {
        fprintf(stderr, "wav2mel_bench: a pass failed\n");
        exit(1);
    }
    return (double)n_files * repeat / dt;
}

int main(int argc, char **argv)
{
    int a = 1;
    if (a + 1 < argc && !strcmp(argv[a], "-r")) {
        repeat = atoi(argv[a + 1]);
        a += 2;
    }
    n_files = argc - a;
    files = argv + a;
    if (n_files < 1 || repeat < 1) {
        fprintf(stderr, "usage: wav2mel_bench [-r REPEAT] FILE...\n");
        return 2;
    }
    struct util_err err = {0};
    if (audio_init(&err) < 0) {
        fprintf(stderr, "wav2mel_bench: %s\n", err.msg);
        return 1;
    }
    int ncpu = util_ncpu();
    clips = calloc((size_t)n_files, sizeof *clips);
    clip_n = calloc((size_t)n_files, sizeof *clip_n);
    audio_opts o;
    audio_opts_default(&o);
    o.rate = 44100;
    for (int i = 0; i < n_files; i++) {
        int64_t cap = 0;
        if (audio_load(files[i], &o, &clips[i], &cap, &clip_n[i], &err) < 0) {
            fprintf(stderr, "wav2mel_bench: %s\n", err.msg);
            return 1;
        }
    }
    mel_params lib, esc;
    double dur;
    mel_preset("librosa", &lib, &dur);
    lib.rate = 44100;
    mel_preset("esc50", &esc, &dur);
    mel_plan *ml = mel_plan_create(&lib, &err), *me = mel_plan_create(&esc, &err);
    if (!ml || !me) {
        fprintf(stderr, "wav2mel_bench: %s\n", err.msg);
        return 1;
    }
    printf("files %d x %d, %d cpus, %lld samples in the first clip at 44100 Hz\n", n_files, repeat, ncpu,
           (long long)clip_n[0]);
    pass(0, NULL, 1, 44100);   /* warm the page cache and the allocator */
    int threads[2] = { 1, ncpu };
    for (int k = 0; k < (ncpu > 1 ? 2 : 1); k++) {
        int nt = threads[k];
        double r[5], cpu[5];
        const mel_plan *plans[5] = { NULL, ml, ml, me, me };
        const int modes[5] = { 0, 1, 2, 1, 2 };
        for (int j = 0; j < 5; j++) {
            r[j] = pass(modes[j], plans[j], nt, 44100);
            cpu[j] = last_cpu_ms;
        }
        printf("threads %d: decode only %.0f clips/s (%.2f ms CPU per clip)\n", nt, r[0], cpu[0]);
        printf("threads %d: librosa n_fft 2048 hop 512 128 mels: spectrogram %.0f clips/s (%.2f ms CPU), "
               "decode+spectrogram %.0f clips/s (%.2f ms CPU)\n", nt, r[1], cpu[1], r[2], cpu[2]);
        printf("threads %d: esc50 preset 3x128x250: spectrogram %.0f clips/s (%.2f ms CPU), "
               "decode+spectrogram %.0f clips/s (%.2f ms CPU)\n", nt, r[3], cpu[3], r[4], cpu[4]);
        fflush(stdout);
    }
    mel_plan_free(ml);
    mel_plan_free(me);
    for (int i = 0; i < n_files; i++) free(clips[i]);
    free(clips);
    free(clip_n);
    audio_done();
    return 0;
}
