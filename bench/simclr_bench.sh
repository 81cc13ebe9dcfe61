#!/bin/sh
# simclr_bench.sh: SimCLR pre-training throughput of simclr-train next to BLIS's own sgemm measured in
# the same run: ResNet-18 pairs/s and GFLOP/s at 64x64 with batch 256 (imagenet and small stems) and at
# 96x96 (imagenet stem) on a pre-made pair file; the same with --chunk 128 and its rate relative to the
# whole batch; the share of time the trainer waits on augment in the real pipe; peak RSS for batch 256,
# 512 and 1024, and 1024 with --chunk 256; and, when Debian's python3-torch is installed,
# PyTorch's pairs/s for the same SimCLR step (bench/simclr_torch.py) at 64x64 B=256 imagenet stem, on
# random tensors (no augmentation cost) and with SimCLR's torchvision augmentation in DataLoader
# workers, each run next to the matching simclr-train run, and the ratios earsight / PyTorch.
# Images: ../shared's Tiny-ImageNet.  Wall-clock rates are what a user sees; on a machine shared with
# other work the rates per CPU-second (x threads) show what the code achieves while it runs.
ROOT=${EARSIGHT_ROOT:-$(cd "$(dirname "$0")/.." && pwd)}
BENCH=${EARSIGHT_BENCH:-$ROOT/build/bench}
SHARED=${EARSIGHT_SHARED:-$ROOT/../shared}
PATH="$ROOT/${BUILD:-build}/bin:$PATH"
TMP=${BENCH_TMP:-/tmp}/simclr_bench.$$
TIN=$SHARED/data/tiny-imagenet-2k/png
J=$(nproc)
# torch is packaged for Debian's interpreter, which need not be the python3 first on PATH
PY=${EARSIGHT_TORCH_PYTHON:-/usr/bin/python3}
if [ ! -d "$TIN" ]; then echo "simclr_bench: skipped: no $TIN"; exit 0; fi
mkdir -p "$TMP" || exit 1
trap 'rm -rf "$TMP"' EXIT
TIME=
if /usr/bin/time -f '%U %S' -o "$TMP/t" true 2>/dev/null; then TIME="/usr/bin/time -f %U+%S -o $TMP/augcpu.txt"; fi
HAVE_TORCH=0
if "$PY" -c 'import torch, torchvision, psutil, PIL' 2>/dev/null; then HAVE_TORCH=1; fi

echo "simclr_bench: $J threads, ResNet-18 width 64, steps of B pairs = 2B views, LARS; $(uptime | sed 's/.*\(load average\)/\1/')"
"$BENCH/nn_bench" -j "$J" -s 3 sgemm >"$TMP/sgemm.txt" || exit 1
grep 'BLIS threading' "$TMP/sgemm.txt"
sg_wall=$(sed -n 's/.*BLIS threading: *\([0-9.]*\) GFLOP.*/\1/p' "$TMP/sgemm.txt")
sg_cpu=$(sed -n 's/.*BLIS threading: .*, *\([0-9.]*\) per CPU-second.*/\1/p' "$TMP/sgemm.txt")

img2tensor --u8 --no-labels "$TIN" -o "$TMP/tin.tsz" 2>/dev/null || exit 1
tsz head -n 256 "$TMP/tin.tsz" -o "$TMP/t256.tsz" 2>/dev/null || exit 1
tsz head -n 1024 "$TMP/tin.tsz" -o "$TMP/t1024.tsz" 2>/dev/null || exit 1
AUG="--policy simclr --views 2 --seed 1 --u8 --raw"

# train NAME ARGS...: one simclr-train -v run whose epochs are single steps of 256 pairs; prints the
# best step after the first (wall clock, from the log) and the whole run's rates (summary line);
# leaves the best step's pairs/s in $best, the run's pairs in $pairs, its pairs per CPU-second x
# threads in $ppc and its mean input wait (percent, steps after the first) in $wait
train() {
    name=$1; shift
    if ! simclr-train -v --no-checkpoint -j "$J" --log "$TMP/log.tsv" -o "$TMP/m.tsz" "$@" 2>"$TMP/err.txt"; then
        echo "$name: failed: $(tail -n 1 "$TMP/err.txt")"; best=0; pairs=0; ppc=0; return 1
    fi
    summary=$(grep 'steps, ' "$TMP/err.txt" | sed 's/^simclr-train: //')
    set -- $(echo "$summary" | awk -v j="$J" '{
        for (i = 1; i <= NF; i++) {
            if ($(i+1) == "pairs/s,") r = $i
            if ($(i+1) == "GFLOP/s") g = $i
            if ($(i+1) == "per" && $(i+2) == "CPU-second),") c = substr($i, 2)
            if ($(i+1) == "steps,") s = $i
        }
        if (r > 0 && g > 0) printf "%.6f %.6f %.6f %d", g / r, c * j * r / g, c * j, s * 256; else print "0 0 0 0" }')
    gpp=$1; ppc=$2; gcpu=$3; pairs=$4
    best=$(awk -F'\t' 'NR > 2 && $6 > b { b = $6 } END { print b + 0 }' "$TMP/log.tsv")
    wait=$(awk -F'\t' 'NR > 2 { w += $7; n++ } END { if (n) printf "%.1f", 100 * w / n; else print 0 }' "$TMP/log.tsv")
    awk -v n="$name" -v b="$best" -v g="$gpp" -v c="$gcpu" -v p="$ppc" -v sw="$sg_wall" -v sc="$sg_cpu" -v w="$wait" 'BEGIN {
        printf "%-36s %6.1f pairs/s = %6.1f GFLOP/s (%3.0f%% of sgemm); per CPU-second x threads: %6.1f pairs/s, %6.1f GFLOP/s (%3.0f%% of sgemm'"'"'s); input wait %s%%\n",
            n, b, b * g, 100 * b * g / sw, p, c, 100 * c / sc, w }'
    echo "    $summary"
}

# torch CASE: bench/simclr_torch.py on one case (2 timed steps after a warm-up); leaves its best
# step's pairs/s in $tbest, its mean over the timed steps in $tmean and pairs per CPU-second x threads
# (its loader workers included) in $tcpu
torch_case() {
    tbest=0 tmean=0 tcpu=0
    if ! "$PY" "$ROOT/bench/simclr_torch.py" "$J" 2 "$TIN" "$1" >"$TMP/torch.txt" 2>"$TMP/torch.err"; then
        echo "PyTorch $1: failed: $(tail -n 1 "$TMP/torch.err")"; return 1
    fi
    set -- $(awk '$1 == "torch" { print $3, $4, $5 }' "$TMP/torch.txt")
    tbest=${1:-0} tmean=${2:-0} tcpu=${3:-0}
}

augment $AUG --epochs 6 --size 64 "$TMP/t256.tsz" -o "$TMP/p64.tsz" 2>/dev/null || exit 1
augment $AUG --epochs 2 --size 64 "$TMP/t256.tsz" -o "$TMP/p64s.tsz" 2>/dev/null || exit 1
augment $AUG --epochs 4 --size 96 "$TMP/t256.tsz" -o "$TMP/p96.tsz" 2>/dev/null || exit 1

train "64x64 B=256 stem imagenet (file)" -b 256 --stem imagenet "$TMP/p64.tsz"
file_best=$best file_ppc=$ppc
if [ $HAVE_TORCH = 1 ]; then
    torch_case imagenet:64:256:0
    awk -v v="$("$PY" -c 'import torch; print(torch.__version__)')" -v b="$tbest" -v m="$tmean" -v c="$tcpu" \
        -v eb="$file_best" -v ec="$file_ppc" 'BEGIN {
        printf "PyTorch %s 64x64 B=256 stem imagenet, random tensors: %6.1f pairs/s best step (%.1f mean); per CPU-second x threads: %6.1f pairs/s\n", v, b, m, c
        if (b > 0 && c > 0) printf "  earsight / PyTorch without augmentation: %.2f (best step, wall), %.2f (per CPU-second)\n", eb / b, ec / c }'
fi

# the real pipe: augment computes the views while the trainer trains (both share the cores)
mkfifo "$TMP/pipe"
rm -f "$TMP/augcpu.txt"
$TIME augment $AUG --epochs 6 --size 64 -j "$J" "$TMP/t256.tsz" >"$TMP/pipe" 2>/dev/null &
train "64x64 B=256 stem imagenet (augment pipe)" -b 256 --stem imagenet - <"$TMP/pipe"
pipe_best=$best pipe_ppc=$ppc pipe_pairs=$pairs
wait
# pairs per CPU-second x threads of trainer and augment together (the whole run)
pipe_all=0
if [ -s "$TMP/augcpu.txt" ] && awk -v p="$pipe_ppc" 'BEGIN { exit !(p > 0) }'; then
    augcpu=$(tail -n 1 "$TMP/augcpu.txt" | awk -F+ '{ print $1 + $2 }')
    pipe_all=$(awk -v n="$pipe_pairs" -v p="$pipe_ppc" -v a="$augcpu" -v j="$J" 'BEGIN { printf "%.3f", n * j / (n * j / p + a) }')
    echo "    augment used $augcpu CPU-seconds; trainer and augment together: $pipe_all pairs per CPU-second x threads"
fi
if [ $HAVE_TORCH = 1 ]; then
    torch_case imagenet:64:256:$J
    awk -v b="$tbest" -v m="$tmean" -v c="$tcpu" -v j="$J" -v eb="$pipe_best" -v ec="$pipe_all" 'BEGIN {
        printf "PyTorch 64x64 B=256 stem imagenet, torchvision SimCLR augmentation (DataLoader, %d workers): %6.1f pairs/s best step (%.1f mean); per CPU-second x threads: %6.1f pairs/s\n", j, b, m, c
        if (b > 0 && c > 0) printf "  earsight / PyTorch with augmentation: %s (per CPU-second, all augmentation work counted on both sides); %.2f (best step, wall; PyTorch'"'"'s prefetched batches hide part of its augmentation)\n", (ec > 0 ? sprintf("%.2f", ec / c) : "n/a"), eb / b }'
    if "$PY" "$ROOT/bench/simclr_torch.py" "$J" 1 "$TIN" augonly:64:256 >"$TMP/torch.txt" 2>"$TMP/torch.err"; then
        awk -v a="${augcpu:-0}" -v n="$pipe_pairs" '$1 == "torch" {
            printf "augmentation alone, 64x64 views, one process: torchvision %.1f pairs per CPU-second", $3
            if (a > 0) printf "; augment %.1f pairs per CPU-second (%.0fx)", n / a, n / a / $3
            printf "\n" }' "$TMP/torch.txt"
    fi
else
    echo "PyTorch: skipped (no torch, torchvision, psutil and PIL for $PY)"
fi

train "64x64 B=256 stem small (file)" -b 256 --stem small "$TMP/p64s.tsz"
train "96x96 B=256 stem imagenet (file)" -b 256 --stem imagenet "$TMP/p96.tsz"
# --chunk: the same batch in passes of 128 views, each forwarded twice (GFLOP/s above count the useful
# 3 forward passes per view, so the chunked run's share of sgemm is what it achieves net)
train "64x64 B=256 stem imagenet --chunk 128" -b 256 --chunk 128 --stem imagenet "$TMP/p64.tsz"
awk -v c="$ppc" -v f="$file_ppc" 'BEGIN { if (c > 0 && f > 0) printf "    --chunk 128 / whole batch, pairs per CPU-second x threads: %.2f\n", c / f }'

# peak memory by batch size: 1024 images, one epoch
augment $AUG --epochs 1 --size 64 "$TMP/t1024.tsz" -o "$TMP/p1k.tsz" 2>/dev/null || exit 1
for b in 256 512 1024 "1024 --chunk 256"; do
    # shellcheck disable=SC2086
    if simclr-train -v --no-checkpoint -j "$J" -b $b -o "$TMP/m.tsz" "$TMP/p1k.tsz" 2>"$TMP/err.txt"; then
        echo "64x64 B=$b stem imagenet: $(sed -n 's/.*\(peak RSS [0-9]* MiB\).*/\1/p' "$TMP/err.txt")"
    else
        echo "64x64 B=$b stem imagenet: failed: $(tail -n 1 "$TMP/err.txt")"
    fi
done
echo "simclr_bench: done; $(uptime | sed 's/.*\(load average\)/\1/')"
