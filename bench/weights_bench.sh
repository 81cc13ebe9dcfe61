#!/bin/sh
# weights_bench.sh: time to load a full-size ResNet-50 (~102 MB f32) from safetensors, .pth (zip and
# legacy) and TSZ in earsight, each load a fresh process ending with one pass over every tensor's bytes,
# against read() of the same file into fresh memory (the baseline), and, when python3-torch is installed,
# against torch.load on the same .pth files in the same run, timed the same way (fresh process, load plus
# one pass: a sum over every tensor).  With torch, the files torch.save itself writes (zip and legacy,
# re-saved from ours) are timed too: they are what users bring.  Page cache warm for everyone (each file
# is read once before its timings).  Median of REPS (WEIGHTS_BENCH_REPS, default 7), wall and CPU time;
# CPU time is the steadier figure on a shared machine.
# Aim (issue 9): safetensors >= 5x faster than torch.load, .pth no slower than torch.load.
# Reading the figures: in a fresh process most of torch.load's time is fresh memory (page faults; its
# first-call overhead is ~5 ms), which earsight avoids by using the mapped file's f32 data in place;
# torch.load's warm-process figure (memory recycled from the previous load) is its best case, printed
# for comparison, not something a tool that loads a model once ever sees.
# Run by `make bench` (bench/run.sh sets EARSIGHT_BENCH and BENCH_TMP).
BENCH=${EARSIGHT_BENCH:-build/bench}
DIR=${BENCH_TMP:-$(mktemp -d)}
REPS=${WEIGHTS_BENCH_REPS:-7}
# Debian's python3-torch installs for /usr/bin/python3, not for a python3 earlier on PATH (pyenv, venv)
PY=${EARSIGHT_TORCH_PYTHON:-/usr/bin/python3}
"$BENCH/weights_bench" make "$DIR" || exit 1
echo "host: $(uname -m), $(nproc) cpus; load average $(cut -d' ' -f1-3 /proc/loadavg)"

# median MODE FILE: "wall cpu" medians over REPS fresh processes (MODE: load, read, torch)
median() {
    i=0
    while [ $i -lt "$REPS" ]; do
        case $1 in
            torch) "$PY" -c "$TORCH_LOAD" "$2" ;;
            *) "$BENCH/weights_bench" "$1" "$2" ;;
        esac || return 1
        i=$((i + 1))
    done >"$DIR/times"
    w=$(cut -d' ' -f1 "$DIR/times" | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }')
    c=$(cut -d' ' -f2 "$DIR/times" | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }')
    echo "$w $c"
}
# torch.load timed inside a fresh python process (the import excluded), then a sum over every tensor
TORCH_LOAD='
import sys, time
import torch
torch.set_num_threads(1)
t0, c0 = time.perf_counter(), time.process_time()
sd = torch.load(sys.argv[1], map_location="cpu")
s = 0.0
for v in sd.values():
    s += float(v.sum())
print(f"{(time.perf_counter() - t0) * 1e3:.2f} {(time.process_time() - c0) * 1e3:.2f}")
'
HAVE_TORCH=0
if "$PY" -c 'import torch' 2>/dev/null; then
    HAVE_TORCH=1
    "$PY" - "$DIR" <<'PY' || exit 1
import sys, torch
d = sys.argv[1]
sd = torch.load(f"{d}/resnet50.pth", map_location="cpu")
torch.save(sd, f"{d}/resnet50.torch.pth")
torch.save(sd, f"{d}/resnet50.torch.legacy.pth", _use_new_zipfile_serialization=False)
print(f"torch {torch.__version__}: re-saved resnet50.pth with torch.save as resnet50.torch.pth and resnet50.torch.legacy.pth")
PY
fi

for f in resnet50.safetensors resnet50.pth resnet50.legacy.pth resnet50.tsz resnet50.torch.pth resnet50.torch.legacy.pth; do
    [ -e "$DIR/$f" ] || continue
    cat "$DIR/$f" >/dev/null   # in the page cache, as for repeated use
    r=$(median read "$DIR/$f") && l=$(median load "$DIR/$f") || exit 1
    echo "$l" >"$DIR/es.$f"
    mb=$(wc -c <"$DIR/$f" | awk '{ printf "%.1f", $1 / 1e6 }')
    echo "$f $mb $l $r" | awk '{ printf "earsight load %-25s %6s MB: wall %7.1f ms, cpu %7.1f ms;  read() into fresh memory: wall %6.1f ms, cpu %6.1f ms\n", $1, $2, $3, $4, $5, $6 }'
done
if [ "$HAVE_TORCH" = 0 ]; then
    echo "python3-torch not installed for $PY: no torch.load comparison in this run"
    rm -f "$DIR"/resnet50.* "$DIR"/es.* "$DIR/times"
    exit 0
fi
for f in resnet50.pth resnet50.legacy.pth resnet50.torch.pth resnet50.torch.legacy.pth; do
    cat "$DIR/$f" >/dev/null
    t=$(median torch "$DIR/$f") || exit 1
    echo "$t" >"$DIR/pt.$f"
    echo "$f $t" | awk '{ printf "torch.load    %-25s           wall %7.1f ms, cpu %7.1f ms\n", $1, $2, $3 }'
done
# torch's best case for comparison: repeated loads in one warm process (its allocator reuses memory
# freed by the previous load, which a tool loading once never can)
"$PY" - "$DIR" "$REPS" <<'PY' || exit 1
import sys, time, statistics, torch
torch.set_num_threads(1)
d, reps = sys.argv[1], int(sys.argv[2])
for name in ("resnet50.torch.pth", "resnet50.torch.legacy.pth"):
    ws, cs = [], []
    for i in range(reps + 1):
        t0, c0 = time.perf_counter(), time.process_time()
        sd = torch.load(f"{d}/{name}", map_location="cpu")
        s = sum(float(v.sum()) for v in sd.values())
        if i: ws.append(time.perf_counter() - t0); cs.append(time.process_time() - c0)
        del sd
    w, c = statistics.median(ws) * 1e3, statistics.median(cs) * 1e3
    print(f"torch.load    {name:<25} warm process: wall {w:7.1f} ms, cpu {c:7.1f} ms (median of {reps} after one warm-up)")
    open(f"{d}/ptw.{name}", "w").write(f"{w:.2f} {c:.2f}\n")
PY
# ratios: torch.load time / earsight time (above 1: earsight faster)
ratio() { # LABEL EARSIGHT_FILE TORCH_FILE [pt|ptw]
    paste -d' ' "$DIR/es.$2" "$DIR/${4:-pt}.$3" |
        awk -v l="$1" '{ printf "%-60s wall %5.1fx, cpu %5.1fx\n", l, $3 / $1, $4 / $2 }'
}
echo "speed-up over torch.load (torch.load time / earsight time):"
ratio "safetensors vs torch.load of the torch.save zip (aim >= 5x)" resnet50.safetensors resnet50.torch.pth
ratio "safetensors vs torch.load of our zip (aim >= 5x)" resnet50.safetensors resnet50.pth
ratio "torch.save zip, same file (aim >= 1x)" resnet50.torch.pth resnet50.torch.pth
ratio "torch.save legacy, same file (aim >= 1x)" resnet50.torch.legacy.pth resnet50.torch.legacy.pth
ratio "our zip, same file (aim >= 1x)" resnet50.pth resnet50.pth
ratio "our legacy, same file (aim >= 1x)" resnet50.legacy.pth resnet50.legacy.pth
echo "against torch.load's warm-process best case:"
ratio "safetensors vs torch.load of the torch.save zip (aim >= 5x)" resnet50.safetensors resnet50.torch.pth ptw
ratio "torch.save zip, same file (aim >= 1x)" resnet50.torch.pth resnet50.torch.pth ptw
ratio "torch.save legacy, same file (aim >= 1x)" resnet50.torch.legacy.pth resnet50.torch.legacy.pth ptw
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
rm -f "$DIR"/resnet50.* "$DIR"/es.* "$DIR"/pt.* "$DIR"/ptw.* "$DIR/times"
