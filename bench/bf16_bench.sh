#!/bin/sh
# bf16_bench.sh: --precision bf16 against PyTorch 1.13's bf16 autocast in the same run (and fp32 against
# PyTorch fp32): ResNet-18 and ResNet-50 training on 3x128x250 at batch 32, the ResNet-18 step of SimCLR
# at 64x64 (2 x 256 views, a 10-way fc instead of the head), ResNet-18 inference at batch 64.  Ratios
# > 1 mean earsight is faster.  Rates are images per CPU-second x threads (robust to other load on a
# shared machine) and wall-clock images/s.  Without AVX512_BF16 (or EARSIGHT_NO_BF16=1) only fp32 runs;
# without /usr/bin/python3 + torch the PyTorch columns are skipped.  isa_bench's lines say which bf16 kernel
# ran (AMX tiles, or vdpbf16ps when the CPU lacks AMX-BF16 or EARSIGHT_NO_AMX=1) and its peak rate.
ROOT=${EARSIGHT_ROOT:-$(cd "$(dirname "$0")/.." && pwd)}
BENCH=${EARSIGHT_BENCH:-$ROOT/build/bench}
J=${BENCH_THREADS:-$(nproc)}
S=${BENCH_STEPS:-2}
PY=/usr/bin/python3
TMP=$(mktemp -d "${TMPDIR:-/tmp}/bf16-bench.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
PRECS=fp32
"$BENCH/nn_bench" -j 1 -s 0 -p bf16 none >/dev/null 2>&1 && PRECS="fp32 bf16"
TORCH=0
"$PY" -c 'import torch, torchvision' 2>/dev/null && TORCH=1
echo "bf16_bench: $J threads, best of $S steps; precisions: $PRECS; PyTorch: $([ $TORCH = 1 ] && "$PY" -c 'import torch; print(torch.__version__)' || echo absent)"
[ -x "$BENCH/isa_bench" ] && "$BENCH/isa_bench" | sed 's/^/bf16_bench: /'
printf '%-10s %-5s %10s %10s %10s %10s %8s %8s\n' case prec ours_cpu torch_cpu ours_wall torch_wall r_cpu r_wall
for c in r18train3 r50train3 r18simclr r18infer3; do
    for p in $PRECS; do
        "$BENCH/nn_bench" -j "$J" -s "$S" -p "$p" "$c" >"$TMP/ours.txt" 2>&1 || { cat "$TMP/ours.txt"; exit 1; }
        ow=$(awk '/images\/s/ {for (i = 1; i <= NF; i++) if ($i == "images/s,") print $(i - 1)}' "$TMP/ours.txt")
        oc=$(awk '/images per CPU-second/ {for (i = 1; i <= NF; i++) if ($i == "images" && $(i + 1) == "per") print $(i - 1)}' "$TMP/ours.txt")
        tw=- tc=-
        if [ $TORCH = 1 ] && "$PY" "$ROOT/bench/bf16_torch.py" "$J" "$S" "$c:$p" >"$TMP/torch.txt" 2>"$TMP/torch.err"; then
            tw=$(awk '{print $4}' "$TMP/torch.txt") tc=$(awk '{print $5}' "$TMP/torch.txt")
        fi
        awk -v c="$c" -v p="$p" -v ow="$ow" -v oc="$oc" -v tw="$tw" -v tc="$tc" 'BEGIN {
            rc = tc == "-" ? "-" : sprintf("%.2fx", oc / tc); rw = tw == "-" ? "-" : sprintf("%.2fx", ow / tw)
            printf "%-10s %-5s %10s %10s %10s %10s %8s %8s\n", c, p, oc, tc, ow, tw, rc, rw }'
    done
done
