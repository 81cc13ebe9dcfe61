#!/bin/sh
# nn_bench.sh: the engine's training and inference throughput (bench/nn_bench.c) next to BLIS's own
# sgemm on a 3072^3 product measured in the same run: ResNet-18 training on 1x128x256 at batch 32,
# ResNet-50 training on 3x128x250 at batch 32, ResNet-18 inference at batch 64; on all cores, then
# ResNet-18 on one core; then ResNet-18 training on 3x128x250 at batch 32 with the 3x3 convolutions on
# im2col and on Winograd (nn_set_conv_algo AUTO), alternating over 5 rounds, min and median images/s.
# (GFLOP/s count the direct convolution's FLOPs, so Winograd's are effective rates.)  Other load on
# the machine lowers both sides; compare the ratios.
ROOT=${EARSIGHT_ROOT:-$(cd "$(dirname "$0")/.." && pwd)}
BENCH=${EARSIGHT_BENCH:-$ROOT/build/bench}
"$BENCH/nn_bench" -s 3 || exit 1
"$BENCH/nn_bench" -j 1 -s 2 sgemm r18train || exit 1
"$BENCH/nn_bench" -s 3 -c -r 5 r18train3 || exit 1
