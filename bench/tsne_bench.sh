#!/bin/sh
# tsne_bench.sh: t-SNE of 2,000 and 10,000 points (512-D, 10 Gaussian clusters as scikit-learn's
# make_blobs) with Barnes-Hut, FFT interpolation and the automatic choice: wall time, CPU time and
# final KL.  The baseline in the same run is Barnes-Hut; the FFT and auto lines give their time as
# a ratio to it.  For comparison (not measured here): scikit-learn 1.2's Barnes-Hut t-SNE took
# about 3 s (KL 1.42) and 25 s (KL 2.85) for these sizes on the Zen 5 machine (shared/README.md).
# TSNE_BENCH_THREADS=N sets the threads (default: all CPUs).
B=${EARSIGHT_BENCH:-build/bench}
"$B/tsne_bench" 2000 10000 >"${BENCH_TMP:-/tmp}/tsne_bench.out" || exit 1
awk '{ print }
     / bh / { for (i = 1; i <= NF; i++) if ($i == "wall") base[$3] = $(i + 1) }
     / (fft|auto) / { for (i = 1; i <= NF; i++) if ($i == "wall" && base[$3] > 0)
                          printf "    %s %s: %.2fx the Barnes-Hut wall time\n", $2, $3, $(i + 1) / base[$3] }' \
    "${BENCH_TMP:-/tmp}/tsne_bench.out"
