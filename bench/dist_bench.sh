#!/bin/sh
# dist_bench.sh: data-parallel scaling of finetune and simclr-train on this machine, all in one run:
# one process with one thread (the baseline), `mpirun -np 2` with one thread per rank, and one process
# with two threads, as images/s (pairs/s) and ratios to the baseline.  ResNet-18 width 64 (11.2 M
# parameters, 45 MB of gradients summed by MPI_Allreduce every step, timed alone first), finetune on
# the paper's 3x128x250 log-mel input and on 3x64x64 (where the sum weighs more), both at a global
# batch of 32, simclr-train on 64x64 pairs at a global batch of 64.  Synthetic data: the input
# pipeline is not what is measured.  Each configuration runs REPS times (default 2); the best
# run counts (the machine is shared: slow outliers are other load).  Needs OpenMPI (mpirun and a build
# with libopenmpi-dev); says so and stops otherwise.
ROOT=${EARSIGHT_ROOT:-$(cd "$(dirname "$0")/.." && pwd)}
BIN=${EARSIGHT_BIN:-$ROOT/${BUILD:-build}/bin}
GEN=$BIN/../tests/train_test
PATH="$BIN:$PATH"
TMP=${BENCH_TMP:-/tmp}/dist_bench.$$
REPS=${REPS:-2}
if ! ldd "$BIN/finetune" 2>/dev/null | grep -q 'libmpi\.so' || ! command -v mpirun >/dev/null 2>&1; then
    echo "dist_bench: skipped: the tools were built without OpenMPI or mpirun is missing (libopenmpi-dev, openmpi-bin)"
    exit 0
fi
[ -x "$GEN" ] || { echo "dist_bench: $GEN missing (make builds it)"; exit 1; }
mkdir -p "$TMP" && cd "$TMP" || exit 1
trap 'rm -rf "$TMP"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
MPI="mpirun --oversubscribe --bind-to none -np 2"
echo "dist_bench: $(nproc) cores, $(mpirun --version 2>/dev/null | head -n 1); $(uptime | sed 's/.*\(load average\)/\1/')"

"$GEN" gen ft.tsz n=192 k=10 c=3 h=64 w=64 seed=1 && "$GEN" gen mel.tsz n=96 k=10 c=3 h=128 w=250 seed=3 || exit 1
"$GEN" gen img.tsz n=128 k=10 c=3 h=64 w=64 seed=2 &&
    augment --policy simclr --views 2 --size 64 --seed 1 -j 2 --epochs 2 -o pairs.tsz img.tsz || exit 1

# best_rate LOG COL: the best per-epoch rate of a TSV log (column COL), after the first epoch (warm-up)
best_rate() { awk -F'\t' -v c="$2" 'NR > 2 && $c > m {m = $c} END {printf "%.1f", m + 0}' "$1"; }
# run_ft NAME LAUNCH THREADS DATA: best images/s over REPS runs of 3 epochs
run_ft() {
    best=0
    for r in $(seq "$REPS"); do
        $2 finetune --batch 32 -j "$3" --epochs 3 --no-checkpoint --log "ft_$1.tsv" -o m.tsz "$4" 2>"ft_$1.err" ||
            { echo "dist_bench: finetune $1 failed: $(head -c 300 "ft_$1.err")"; return 1; }
        v=$(best_rate "ft_$1.tsv" 7)
        best=$(awk -v a="$best" -v b="$v" 'BEGIN {print (b > a ? b : a)}')
    done
    echo "$best"
}
run_sc() {
    best=0
    for r in $(seq "$REPS"); do
        $2 simclr-train -b 64 -j "$3" --no-checkpoint --log "sc_$1.tsv" -o e.tsz pairs.tsz 2>"sc_$1.err" ||
            { echo "dist_bench: simclr-train $1 failed: $(head -c 300 "sc_$1.err")"; return 1; }
        v=$(best_rate "sc_$1.tsv" 6)
        best=$(awk -v a="$best" -v b="$v" 'BEGIN {print (b > a ? b : a)}')
    done
    echo "$best"
}
BENCH=${EARSIGHT_BENCH:-$BIN/../bench}
[ -x "$BENCH/allreduce_bench" ] && $MPI "$BENCH/allreduce_bench" 11200000 20 | sed 's/^/dist_bench: /'
for d in mel ft; do
    shape=$([ $d = mel ] && echo 3x128x250 || echo 3x64x64)
    f1=$(run_ft one "" 1 $d.tsz) && f2=$(run_ft mpi "$MPI" 1 $d.tsz) && ft=$(run_ft threads "" 2 $d.tsz) || exit 1
    printf 'finetune ResNet-18 %s batch 32: 1 process x 1 thread %s images/s; mpirun -np 2 x 1 thread %s (%.2fx); 1 process x 2 threads %s (%.2fx)\n' \
        "$shape" "$f1" "$f2" "$(awk -v a="$f2" -v b="$f1" 'BEGIN {print a / b}')" "$ft" "$(awk -v a="$ft" -v b="$f1" 'BEGIN {print a / b}')"
done
s1=$(run_sc one "" 1) && s2=$(run_sc mpi "$MPI" 1) && st=$(run_sc threads "" 2) || exit 1
printf 'simclr-train ResNet-18 64x64 batch 64: 1 process x 1 thread %s pairs/s; mpirun -np 2 x 1 thread %s (%.2fx); 1 process x 2 threads %s (%.2fx)\n' \
    "$s1" "$s2" "$(awk -v a="$s2" -v b="$s1" 'BEGIN {print a / b}')" "$st" "$(awk -v a="$st" -v b="$s1" 'BEGIN {print a / b}')"
