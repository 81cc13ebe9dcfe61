#!/bin/sh
# augment_bench.sh: SimCLR views per second per core at 64, 96 and 224 pixels and image decoding per
# core (bench/augment_bench.c, thread CPU time), then the tools end to end on Tiny-ImageNet: img2tensor
# images/s and augment views/s (wall clock, -j 1 and -j 2), next to `augment --policy none` (reading,
# copying and writing the same records) as the floor measured in the same run.
ROOT=${EARSIGHT_ROOT:-$(cd "$(dirname "$0")/.." && pwd)}
BENCH=${EARSIGHT_BENCH:-$ROOT/build/bench}
TMP=${BENCH_TMP:-$(mktemp -d)}
now() { date +%s.%N; }
rate() { awk -v n="$1" -v a="$2" -v b="$3" 'BEGIN { printf "%.0f", n / (b - a) }'; }

"$BENCH/augment_bench" 2 || exit 1

S=${EARSIGHT_SHARED:-$ROOT/../shared}/data/tiny-imagenet-2k/jpeg
if [ ! -d "$S" ]; then echo "end to end: skipped (no $S)"; exit 0; fi
echo "end to end on 2000 Tiny-ImageNet JPEGs (wall clock; other load on the machine counts)"
for j in 1 2; do
    t0=$(now); img2tensor --u8 --no-labels --raw -j $j -o "$TMP/u8.tsz" "$S" || exit 1; t1=$(now)
    echo "img2tensor -j $j --u8 --raw: $(rate 2000 "$t0" "$t1") images/s"
done
N=$((2000 * 2 * 5))
for size in 64 96; do
    for j in 1 2; do
        t0=$(now); augment --policy none --views 2 --epochs 5 --raw -j $j "$TMP/u8.tsz" >/dev/null || exit 1; t1=$(now)
        augment --policy simclr --views 2 --epochs 5 --size $size --raw -j $j "$TMP/u8.tsz" >/dev/null || exit 1; t2=$(now)
        augment --policy simclr --views 2 --epochs 5 --size $size -j $j "$TMP/u8.tsz" >/dev/null || exit 1; t3=$(now)
        echo "augment size $size -j $j: simclr --raw $(rate $N "$t1" "$t2") views/s, zstd level 3 $(rate $N "$t2" "$t3") views/s;" \
             "floor (--policy none --raw) $(rate $N "$t0" "$t1") records/s"
    done
done
