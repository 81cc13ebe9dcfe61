#!/bin/sh
# weights_bench.sh: load time of a full-size ResNet-50 (~102 MB f32) from safetensors, .pth (zip and
# legacy) and TSZ, each load in a fresh process, against read() of the same file into fresh memory in
# the same run (the baseline), and against torch.load / safetensors.torch.load_file on the same files
# when python3-torch is installed.  Best of REPS (WEIGHTS_BENCH_REPS, default 7), wall and CPU time.
# Run by `make bench` (bench/run.sh sets EARSIGHT_BENCH and BENCH_TMP).
BENCH=${EARSIGHT_BENCH:-build/bench}
DIR=${BENCH_TMP:-$(mktemp -d)}
REPS=${WEIGHTS_BENCH_REPS:-7}
"$BENCH/weights_bench" make "$DIR" || exit 1
best() {   # best MODE FILE: "wall cpu" minima over REPS fresh processes
    i=0
    while [ $i -lt "$REPS" ]; do "$BENCH/weights_bench" "$1" "$2" || return 1; i=$((i + 1)); done |
        awk 'NR == 1 || $1 < w { w = $1 } NR == 1 || $2 < c { c = $2 } END { printf "%.1f %.1f\n", w, c }'
}
for f in resnet50.safetensors resnet50.pth resnet50.legacy.pth resnet50.tsz; do
    cat "$DIR/$f" >/dev/null   # in the page cache, as for repeated use
    r=$(best read "$DIR/$f") && l=$(best load "$DIR/$f") || exit 1
    mb=$(wc -c <"$DIR/$f" | awk '{ printf "%.1f", $1 / 1e6 }')
    echo "$f $mb $l $r" | awk '{ printf "load %-21s %6s MB: wall %7.1f ms (%.2f GB/s), cpu %7.1f ms;  read() into fresh memory: wall %6.1f ms, cpu %6.1f ms;  load/read wall %.2fx, cpu %.2fx\n", $1, $2, $3, $2 / $3, $4, $5, $6, $3 / $5, $4 / $6 }'
done
if python3 -c 'import torch' 2>/dev/null; then
    python3 - "$DIR" "$REPS" <<'PY'
import sys, time, torch
d, reps = sys.argv[1], int(sys.argv[2])
def best(f):
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter(); f(); ts.append(time.perf_counter() - t0)
    return min(ts)
for name in ("resnet50.pth", "resnet50.legacy.pth"):
    t = best(lambda: torch.load(f"{d}/{name}", map_location="cpu"))
    print(f"torch {torch.__version__} torch.load {name}: best {t*1e3:.1f} ms (same process, repeated)")
try:
    from safetensors.torch import load_file
    t = best(lambda: load_file(f"{d}/resnet50.safetensors"))
    print(f"safetensors.torch.load_file resnet50.safetensors: best {t*1e3:.1f} ms")
except ImportError:
    print("safetensors (python) not installed: no comparison for .safetensors")
PY
else
    echo "python3-torch not installed: no torch.load comparison in this run"
fi
rm -f "$DIR"/resnet50.*
