#!/bin/sh
# simclr_bench.sh: SimCLR pre-training throughput of simclr-train next to BLIS's own sgemm measured in
# the same run: ResNet-18 pairs/s and GFLOP/s at 64x64 with batch 256 (imagenet and small stems) and at
# 96x96 (imagenet stem) on a pre-made pair file; the share of time the trainer waits on augment in the
# real pipe; peak RSS for batch 256, 512 and 1024; and PyTorch's pairs/s for the same networks on
# random tensors (no augmentation cost) when a python3 with torch is found.  Images: ../shared's
# Tiny-ImageNet.  Wall-clock rates are what a user sees; on a machine shared with other work the rates
# per CPU-second (x threads, as nn_bench) show what the code achieves while it runs.
ROOT=${EARSIGHT_ROOT:-$(cd "$(dirname "$0")/.." && pwd)}
BENCH=${EARSIGHT_BENCH:-$ROOT/build/bench}
SHARED=${EARSIGHT_SHARED:-$ROOT/../shared}
PATH="$ROOT/${BUILD:-build}/bin:$PATH"
TMP=${BENCH_TMP:-/tmp}/simclr_bench.$$
TIN=$SHARED/data/tiny-imagenet-2k/png
J=$(nproc)
if [ ! -d "$TIN" ]; then echo "simclr_bench: skipped: no $TIN"; exit 0; fi
mkdir -p "$TMP" || exit 1
trap 'rm -rf "$TMP"' EXIT

echo "simclr_bench: $J threads, ResNet-18 width 64, steps of B pairs = 2B views, LARS"
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
# leaves the run's GFLOP per pair in $gpp and its pairs per CPU-second x threads in $ppc
train() {
    name=$1; shift
    if ! simclr-train -v --no-checkpoint -j "$J" --log "$TMP/log.tsv" -o "$TMP/m.tsz" "$@" 2>"$TMP/err.txt"; then
        echo "$name: failed: $(tail -n 1 "$TMP/err.txt")"; gpp=0; ppc=0; return 1
    fi
    summary=$(grep 'steps, ' "$TMP/err.txt" | sed 's/^simclr-train: //')
    set -- $(echo "$summary" | awk -v j="$J" '{
        for (i = 1; i <= NF; i++) {
            if ($(i+1) == "pairs/s,") r = $i
            if ($(i+1) == "GFLOP/s") g = $i
            if ($(i+1) == "per" && $(i+2) == "CPU-second),") c = substr($i, 2)
        }
        if (r > 0 && g > 0) printf "%.6f %.6f %.6f", g / r, c * j * r / g, c * j; else print "0 0 0" }')
    gpp=$1; ppc=$2; gcpu=$3
    best=$(awk -F'\t' 'NR > 2 && $6 > b { b = $6 } END { print b + 0 }' "$TMP/log.tsv")
    wait=$(awk -F'\t' 'NR > 2 { w += $7; n++ } END { if (n) printf "%.1f", 100 * w / n; else print 0 }' "$TMP/log.tsv")
    awk -v n="$name" -v b="$best" -v g="$gpp" -v c="$gcpu" -v p="$ppc" -v sw="$sg_wall" -v sc="$sg_cpu" -v w="$wait" 'BEGIN {
        printf "%-36s %6.1f pairs/s = %6.1f GFLOP/s (%3.0f%% of sgemm); per CPU-second x threads: %6.1f pairs/s, %6.1f GFLOP/s (%3.0f%% of sgemm'"'"'s); input wait %s%%\n",
            n, b, b * g, 100 * b * g / sw, p, c, 100 * c / sc, w }'
    echo "    $summary"
}

augment $AUG --epochs 6 --size 64 "$TMP/t256.tsz" -o "$TMP/p64.tsz" 2>/dev/null || exit 1
augment $AUG --epochs 3 --size 64 "$TMP/t256.tsz" -o "$TMP/p64s.tsz" 2>/dev/null || exit 1
augment $AUG --epochs 6 --size 96 "$TMP/t256.tsz" -o "$TMP/p96.tsz" 2>/dev/null || exit 1
train "64x64 B=256 stem imagenet (file)" -b 256 --stem imagenet "$TMP/p64.tsz"; ours_i64=$ppc
train "64x64 B=256 stem small (file)" -b 256 --stem small "$TMP/p64s.tsz"; ours_s64=$ppc
train "96x96 B=256 stem imagenet (file)" -b 256 --stem imagenet "$TMP/p96.tsz"; ours_i96=$ppc
# the real pipe: augment computes the views while the trainer trains (both share the cores)
mkfifo "$TMP/pipe"
augment $AUG --epochs 6 --size 64 -j "$J" "$TMP/t256.tsz" >"$TMP/pipe" 2>/dev/null &
train "64x64 B=256 stem imagenet (augment pipe)" -b 256 --stem imagenet - <"$TMP/pipe"
wait

# peak memory by batch size: 1024 images, one epoch
augment $AUG --epochs 1 --size 64 "$TMP/t1024.tsz" -o "$TMP/p1k.tsz" 2>/dev/null || exit 1
for b in 256 512 1024; do
    if simclr-train -v --no-checkpoint -j "$J" -b $b -o "$TMP/m.tsz" "$TMP/p1k.tsz" 2>"$TMP/err.txt"; then
        echo "64x64 B=$b stem imagenet: $(sed -n 's/.*\(peak RSS [0-9]* MiB\).*/\1/p' "$TMP/err.txt")"
    else
        echo "64x64 B=$b stem imagenet: failed: $(tail -n 1 "$TMP/err.txt")"
    fi
done

# PyTorch on the same networks and batch, random inputs, SGD (the optimiser's cost is negligible)
PY=
for p in python3 /usr/bin/python3; do
    if "$p" -c 'import torch, torchvision' 2>/dev/null; then PY=$p; break; fi
done
if [ -z "$PY" ]; then echo "PyTorch: skipped (no python3 with torch and torchvision)"; exit 0; fi
"$PY" - "$J" "$ours_i64" "$ours_s64" "$ours_i96" <<'EOF'
import sys, time, torch, torchvision
import torch.nn as nn, torch.nn.functional as F
J = int(sys.argv[1])
ours = [float(v) for v in sys.argv[2:5]]
torch.set_num_threads(J)
def ntxent(z, t=0.5):
    z = F.normalize(z, dim=1)
    n2 = z.shape[0]
    s = z @ z.t() / t
    s.fill_diagonal_(float('-inf'))
    return F.cross_entropy(s, torch.arange(n2).roll(n2 // 2))
for k, (stem, size) in enumerate((("imagenet", 64), ("small", 64), ("imagenet", 96))):
    torch.manual_seed(0)
    enc = torchvision.models.resnet18()
    if stem == "small":
        enc.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        enc.maxpool = nn.Identity()
    enc.fc = nn.Identity()
    model = nn.Sequential(enc, nn.Linear(512, 512, bias=False), nn.BatchNorm1d(512), nn.ReLU(), nn.Linear(512, 128))
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    B = 256
    x = torch.rand(2 * B, 3, size, size)
    best = best_cpu = 1e30
    for step in range(3 if stem == "small" else 5):
        t, c = time.time(), time.process_time()
        opt.zero_grad()
        ntxent(model(x)).backward()
        opt.step()
        t, c = time.time() - t, time.process_time() - c
        if step > 0: best, best_cpu = min(best, t), min(best_cpu, c)
    pc = B / best_cpu * J
    ratio = " (simclr-train / PyTorch per CPU-second: %.2f)" % (ours[k] / pc) if ours[k] > 0 else ""
    print("PyTorch %s %dx%d B=%d stem %-8s  %6.1f pairs/s; per CPU-second x threads: %6.1f pairs/s%s"
          % (torch.__version__, size, size, B, stem, B / best, pc, ratio))
EOF
