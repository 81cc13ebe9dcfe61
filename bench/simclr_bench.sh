#!/bin/sh
# simclr_bench.sh: SimCLR pre-training throughput of simclr-train next to BLIS's own sgemm measured in
# the same run: ResNet-18 pairs/s and GFLOP/s at 64x64 with batch 256 (small and imagenet stems) and at
# 96x96 (imagenet stem) on a pre-made pair file; the share of time the trainer waits on augment in the
# real pipe; peak RSS for batch 256, 512 and 1024; and PyTorch's pairs/s for the same networks on
# random tensors (no augmentation cost) when python3 has torch.  Images: ../shared's Tiny-ImageNet.
# Other load on the machine lowers every figure: compare the ratios.
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

echo "simclr_bench: $J threads, ResNet-18, steps of B pairs = 2B views; rates are the best step after the first"
"$BENCH/nn_bench" -j "$J" -s 3 sgemm | grep 'BLIS threading' || exit 1
sgemm=$("$BENCH/nn_bench" -j "$J" -s 3 sgemm | sed -n 's/.*BLIS threading: *\([0-9.]*\).*/\1/p')

img2tensor --u8 --no-labels "$TIN" -o "$TMP/tin.tsz" 2>/dev/null || exit 1
tsz head -n 256 "$TMP/tin.tsz" -o "$TMP/t256.tsz" 2>/dev/null || exit 1
tsz head -n 1024 "$TMP/tin.tsz" -o "$TMP/t1024.tsz" 2>/dev/null || exit 1
AUG="--policy simclr --views 2 --seed 1 --u8 --raw"

# train NAME LOG ARGS...: simclr-train -v; prints the best per-step rate of the log's epoch rows after
# the first (one epoch = one step here), its GFLOP/s and the run's summary line
train() {
    name=$1; shift
    if ! simclr-train -v --no-checkpoint -j "$J" --log "$TMP/log.tsv" -o "$TMP/m.tsz" "$@" 2>"$TMP/err.txt"; then
        echo "$name: failed: $(tail -n 1 "$TMP/err.txt")"; return 1
    fi
    summary=$(grep 'steps, ' "$TMP/err.txt" | sed 's/^simclr-train: //')
    gpp=$(echo "$summary" | awk '{ for (i = 1; i <= NF; i++) { if ($(i+1) == "pairs/s,") r = $i; if ($(i+1) == "GFLOP/s,") g = $i } }
                                  END { if (r > 0) printf "%.6f", g / r; else print 0 }')
    awk -F'\t' -v name="$name" -v gpp="$gpp" -v peak="$sgemm" '
        NR > 2 && $6 > best { best = $6; wait = $7 }
        END { if (best > 0) printf "%-34s %7.1f pairs/s  %6.1f GFLOP/s (%4.0f%% of sgemm)  input wait %4.1f%%\n",
                  name, best, best * gpp, 100 * best * gpp / peak, 100 * wait }' "$TMP/log.tsv"
    echo "    $summary"
}

augment $AUG --epochs 4 --size 64 "$TMP/t256.tsz" -o "$TMP/p64.tsz" 2>/dev/null || exit 1
augment $AUG --epochs 4 --size 96 "$TMP/t256.tsz" -o "$TMP/p96.tsz" 2>/dev/null || exit 1
train "64x64 B=256 stem imagenet (file)" -b 256 --stem imagenet "$TMP/p64.tsz"
train "64x64 B=256 stem small (file)" -b 256 --stem small "$TMP/p64.tsz"
train "96x96 B=256 stem imagenet (file)" -b 256 --stem imagenet "$TMP/p96.tsz"
# the real pipe: augment computes the views while the trainer trains
augment $AUG --epochs 4 --size 64 -j "$J" "$TMP/t256.tsz" |
    train "64x64 B=256 stem imagenet (augment pipe)" -b 256 --stem imagenet -

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
"$PY" - "$J" <<'EOF'
import sys, time, torch, torchvision
import torch.nn as nn, torch.nn.functional as F
torch.set_num_threads(int(sys.argv[1]))
def ntxent(z, t=0.5):
    z = F.normalize(z, dim=1)
    n2 = z.shape[0]
    s = z @ z.t() / t
    s.fill_diagonal_(float('-inf'))
    pos = torch.arange(n2).roll(n2 // 2)
    return F.cross_entropy(s, pos)
for stem, size in (("imagenet", 64), ("small", 64), ("imagenet", 96)):
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
    best = 1e30
    for step in range(4):
        t = time.time()
        opt.zero_grad()
        ntxent(model(x)).backward()
        opt.step()
        t = time.time() - t
        if step > 0: best = min(best, t)
    print("PyTorch %s, %dx%d B=%d stem %-8s  %7.1f pairs/s" % (torch.__version__, size, size, B, stem, B / best))
EOF
