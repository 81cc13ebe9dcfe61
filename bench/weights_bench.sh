#!/bin/sh
# weights_bench.sh: load time of a full-size ResNet-50 (~102 MB f32) from safetensors, .pth (zip and
# legacy) and TSZ, against read() of the same file in the same run, and against torch.load /
# safetensors.torch.load_file on the same files when python3-torch is installed.
# Run by `make bench` (bench/run.sh sets EARSIGHT_BENCH and BENCH_TMP).
BENCH=${EARSIGHT_BENCH:-build/bench}
DIR=${BENCH_TMP:-$(mktemp -d)}
REPS=${WEIGHTS_BENCH_REPS:-5}
"$BENCH/weights_bench" "$DIR" "$REPS" || exit 1
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
    print(f"torch {torch.__version__} torch.load {name}: best {t*1e3:.1f} ms")
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
