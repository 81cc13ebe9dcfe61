#!/bin/sh
# dist_test.sh: data-parallel training under OpenMPI's mpirun, N ranks on this machine (--oversubscribe).
# - equivalence: `mpirun -np 2` at global batch B equals one process at batch B, with --sync-bn (one
#   process normalises by the whole batch, so only synchronised BN can match it): finetune's loss at
#   every step and its final weights, simclr-train's (NT-Xent over the gathered global batch) with and
#   without --chunk.  Summation order differs (two partial sums, then MPI_Allreduce), so values agree
#   to a tolerance.  Measured (Zen 5): finetune after 4 SGD steps, largest weight difference 7.6e-6
#   (weights ~0.1-1); simclr-train after 2 steps 1e-5 to 3e-5 of a tensor's largest value; losses to
#   1e-5.  The checks allow 1e-4 relative on every logged loss and 1e-4 + 1e-3 |w| on every weight.
#   (Over many steps the difference grows: training is chaotic in rounding, as between two BLAS
#   libraries; a wrong gradient scale or a missing negative shows in the first steps' losses.)
# - the same bytes from two runs with the same N, per-rank BN (the default) and --sync-bn;
# - rank 0 alone writes; '-' is refused with several ranks; kill -9 of one rank ends the job with an
#   error instead of a hang; kill of the job, then --resume, ends with the bytes of an uninterrupted run.
. "$EARSIGHT_ROOT/tests/lib.sh"
GEN="$EARSIGHT_BIN/../tests/train_test"
[ -x "$GEN" ] || { fail "dist: $GEN is missing (make builds it)"; finish; }
if ! ldd "$EARSIGHT_BIN/finetune" 2>/dev/null | grep -q 'libmpi\.so'; then
    skip "dist: the tools were built without MPI (MPI=0, or libopenmpi-dev absent: .ci/install-deps installs it)"
    finish
fi
command -v mpirun >/dev/null 2>&1 || { fail "dist: built with MPI but mpirun is missing (package openmpi-bin)"; finish; }
# OpenMPI refuses root unless told; CI runs as root.  LeakSanitizer reports OpenMPI's own allocations
# that live until exit, so the sanitizer build checks everything but leaks here.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0"
MPI="mpirun --oversubscribe --bind-to none"
# max_rel_col TSV COL A B: largest |a - b| / |a| of column COL between two logs (rows after the header)
max_rel_col() {
    paste "$1" "$2" | awk -F'\t' -v c="$3" -v n="$(head -n 1 "$1" | awk -F'\t' '{print NF}')" \
        'NR > 1 {a = $c; b = $(c + n); d = a - b; if (d < 0) d = -d; if (a < 0) a = -a; r = d / (a + 1e-30); if (r > m) m = r}
         END {printf "%.3g", m + 0}'
}
# weights_close A B: every value of two model files within 1e-4 + 1e-3 |b| (train_test cmp prints
# the records and the largest difference)
weights_close() { "$GEN" cmp "$1" "$2" 1e-4 1e-3; }

"$GEN" gen train.tsz n=64 k=3 seed=1 && "$GEN" gen val.tsz n=24 k=3 seed=2 && "$GEN" gen img.tsz n=16 k=3 seed=4 &&
    augment --policy simclr --views 2 --size 16 --seed 1 -j 1 --epochs 2 -o pairs.tsz img.tsz ||
    { fail "dist: test data"; finish; }

# ---- finetune: 2 ranks equal 1 process at the same global batch (synchronised BN)
FT="--width 4 --batch 32 -j 1 --epochs 2 --optimizer sgd --lr 1e-2 --sync-bn --no-checkpoint"
mkdir -p f1 f2 f2b
if (cd f1 && finetune $FT --val ../val.tsz --log log.tsv -o m.tsz ../train.tsz 2>err) &&
   (cd f2 && $MPI -np 2 finetune $FT --val ../val.tsz --log log.tsv -o m.tsz ../train.tsz 2>err); then
    r=$(max_rel_col f1/log.tsv f2/log.tsv 2); v=$(max_rel_col f1/log.tsv f2/log.tsv 4)
    if awk -v r="$r" -v v="$v" 'BEGIN {exit !(r < 1e-4 && v < 1e-4)}'; then
        pass "dist: finetune -np 2 = -np 1, 4 steps: train and val losses differ by at most $r, $v (relative; the log has 6 digits)"
    else fail "dist: finetune -np 2 vs -np 1: train loss differs by $r, val loss by $v (relative)"; fi
    if out=$(weights_close f1/m.tsz f2/m.tsz); then pass "dist: finetune -np 2 = -np 1: final weights ($out)"
    else fail "dist: finetune -np 2 vs -np 1 weights: $out"; fi
    [ -e f2/m.best.tsz ] && [ "$(ls f2)" = "$(ls f1)" ] && pass "dist: finetune: rank 0 writes the files, once" ||
        fail "dist: finetune files: $(ls f2 | tr '\n' ' ') (one process: $(ls f1 | tr '\n' ' '))"
else fail "dist: finetune runs: $(cat f1/err f2/err | head -c 400)"; fi
# three ranks: shares of 11, 11 and 10 examples of each batch of 32, three parameter shards
if (cd f2b && $MPI -np 3 finetune $FT --val ../val.tsz --log log.tsv -o m.tsz ../train.tsz 2>err); then
    r=$(max_rel_col f1/log.tsv f2b/log.tsv 2)
    if out=$(weights_close f1/m.tsz f2b/m.tsz) && awk -v r="$r" 'BEGIN {exit !(r < 1e-4)}'; then
        pass "dist: finetune -np 3 (uneven shares) = -np 1: train loss within $r, weights ($out)"
    else fail "dist: finetune -np 3 vs -np 1: train loss differs by $r, weights: $out"; fi
else fail "dist: finetune -np 3: $(head -c 300 f2b/err)"; fi

# ---- the same bytes from two runs with 2 ranks: per-rank BN (default) and synchronised
for bn in "" "--sync-bn"; do
    rm -rf r1 r2 && mkdir -p r1 r2
    for d in r1 r2; do
        (cd $d && $MPI -np 2 finetune --width 4 --batch 16 -j 1 --epochs 2 --lr 1e-2 --dropout 0.2 $bn \
            -o m.tsz ../train.tsz 2>err)
    done
    if [ -s r1/m.tsz ] && cmp -s r1/m.tsz r2/m.tsz; then pass "dist: finetune -np 2 ${bn:-(per-rank BN)}: the same bytes twice"
    else fail "dist: finetune -np 2 ${bn:-(per-rank BN)}: runs differ or failed: $(cat r1/err | head -c 300)"; fi
done

# ---- simclr-train: the global batch's NT-Xent, with and without --chunk
SC="--width 2 --stem small -b 8 -j 1 --proj-dim 8 --seed 3 --sync-bn --no-checkpoint --optimizer sgd --lr 0.05"
for ch in "" "--chunk 4"; do
    rm -rf s1 s2 && mkdir -p s1 s2
    if (cd s1 && simclr-train $SC $ch --log log.tsv -o e.tsz ../pairs.tsz 2>err) &&
       (cd s2 && $MPI -np 2 simclr-train $SC $ch --log log.tsv -o e.tsz ../pairs.tsz 2>err); then
        r=$(max_rel_col s1/log.tsv s2/log.tsv 3)
        if out=$(weights_close s1/e.tsz s2/e.tsz) && awk -v r="$r" 'BEGIN {exit !(r < 1e-4)}'; then
            pass "dist: simclr-train -np 2 = -np 1 ${ch:-(one pass)}: losses differ by at most $r, weights ($out)"
        else fail "dist: simclr-train -np 2 vs -np 1 ${ch:-(one pass)}: loss differs by $r, weights: $out"; fi
    else fail "dist: simclr-train runs ${ch}: $(cat s1/err s2/err | head -c 400)"; fi
done
rm -rf s1 s2 && mkdir -p s1 s2
for d in s1 s2; do (cd $d && $MPI -np 2 simclr-train --width 2 --stem small -b 8 -j 1 --proj-dim 8 --no-checkpoint \
    -o e.tsz ../pairs.tsz 2>err); done
[ -s s1/e.tsz ] && cmp -s s1/e.tsz s2/e.tsz && pass "dist: simclr-train -np 2: the same bytes twice" ||
    fail "dist: simclr-train -np 2 repeat: $(head -c 300 s1/err)"

# ---- errors: stdin under several ranks, a batch the ranks cannot share, one rank killed
$MPI -np 2 finetune --width 4 -o m.tsz - <train.tsz >/dev/null 2>e1.err; rc=$?
[ $rc -ne 0 ] && grep -q "finetune: rank [01] of 2: -: rank 1 of 2 has no stream on its standard input" e1.err &&
    pass "dist: a stream piped into mpirun refused: rank 1 has none (status $rc)" ||
    fail "dist: '-' into mpirun: status $rc, $(head -c 300 e1.err)"
$MPI -np 2 finetune --width 4 -o - train.tsz >/dev/null 2>e1.err; rc=$?
[ $rc -ne 0 ] && grep -q "rank 0 writes MODEL: give a file, not '-'" e1.err &&
    pass "dist: -o - refused with several ranks (status $rc)" || fail "dist: -o - under mpirun: status $rc, $(head -c 300 e1.err)"
# every rank its own pipe: augment | simclr-train - in each, the same stream, the same model as from a file
rm -rf p1 p2 && mkdir -p p1 p2
SP="--width 2 --stem small -b 8 -j 1 --proj-dim 8 --no-checkpoint"
(cd p1 && $MPI -np 2 simclr-train $SP -o e.tsz ../pairs.tsz 2>err) &&
(cd p2 && $MPI -np 2 sh -c "augment --policy simclr --views 2 --size 16 --seed 1 -j 1 --epochs 2 ../img.tsz | simclr-train $SP -o e.tsz -" 2>err) &&
    out=$("$GEN" cmp p1/e.tsz p2/e.tsz 0 0) &&
    pass "dist: each rank's own pipe into simclr-train - gives the weights of the file run exactly ($out)" ||
    fail "dist: per-rank pipes: ${out:-} $(cat p1/err p2/err | head -c 300)"
$MPI -np 3 simclr-train --width 2 --stem small -b 8 -j 1 --no-checkpoint -o e.tsz pairs.tsz >/dev/null 2>e2.err; rc=$?
[ $rc -ne 0 ] && grep -q "batch 8 and chunk 16: with 3 ranks both must be multiples of 3" e2.err &&
    pass "dist: simclr-train batch not divisible by the ranks refused (status $rc)" ||
    fail "dist: simclr-train -np 3 -b 8: status $rc, $(head -c 300 e2.err)"
# a rank killed mid-run: mpirun ends the job with a non-zero status and says which rank died
if ! command -v pgrep >/dev/null 2>&1 || ! command -v pkill >/dev/null 2>&1; then
    skip "dist: killing ranks: pgrep/pkill absent (package procps; .ci/install-deps installs it)"
    finish
fi
"$GEN" gen big.tsz n=512 k=3 seed=5
$MPI -np 2 finetune --width 8 --batch 32 -j 1 --epochs 1000 --no-checkpoint -o dead.tsz big.tsz >/dev/null 2>dead.err &
mp=$!
victim="" i=0
while [ -z "$victim" ] && [ $i -lt 200 ]; do
    for p in $(pgrep -x finetune); do
        { tr '\0' '\n' <"/proc/$p/environ"; } 2>/dev/null | grep -qx 'OMPI_COMM_WORLD_RANK=1' && victim=$p
    done
    sleep 0.05; i=$((i + 1))
done
if [ -n "$victim" ]; then
    sleep 0.3
    kill -9 "$victim"
    i=0
    while kill -0 $mp 2>/dev/null && [ $i -lt 300 ]; do sleep 0.1; i=$((i + 1)); done
    if kill -0 $mp 2>/dev/null; then
        kill -9 $mp; pkill -9 -x finetune
        fail "dist: rank 1 killed: the job still runs after 30 s (a hang)"
    else
        wait $mp; rc=$?
        [ $rc -ne 0 ] && [ ! -e dead.tsz ] && grep -q -i "rank 1" dead.err && grep -q -i "signal 9\|killed" dead.err &&
            pass "dist: rank 1 killed: the job ends (status $rc) naming the rank, no model written" ||
            fail "dist: rank 1 killed: status $rc, $(head -c 300 dead.err)"
    fi
else
    kill -9 $mp 2>/dev/null; wait $mp 2>/dev/null
    fail "dist: no rank 1 process found to kill"
fi

# ---- kill the whole job after a checkpoint, then --resume: the bytes of an uninterrupted run
RUN="--width 4 --batch 16 -j 1 --epochs 40 --lr 3e-3 --val ../val.tsz --sync-bn"
rm -rf k1 k2 && mkdir -p k1 k2
(cd k1 && $MPI -np 2 finetune $RUN -o m.tsz ../train.tsz 2>err) || fail "dist: uninterrupted -np 2 run: $(head -c 300 k1/err)"
cd k2
$MPI -np 2 finetune $RUN -o m.tsz ../train.tsz >/dev/null 2>&1 &
mp=$!
i=0
while [ ! -e m.ckpt ] && [ $i -lt 3000 ]; do sleep 0.01; i=$((i + 1)); done
pkill -9 -P $mp finetune 2>/dev/null   # the ranks, children of mpirun, as a crash would end them
wait $mp 2>/dev/null
at=$(tsz info m.ckpt 2>/dev/null | sed -n 's/^    epoch=//p')
if [ -e m.tsz ] || [ -z "$at" ]; then
    fail "dist: --resume: the kill did not land mid-run (model present or no checkpoint)"
elif $MPI -np 2 finetune $RUN --resume -o m.tsz ../train.tsz 2>err && cmp -s m.tsz ../k1/m.tsz &&
     cmp -s m.best.tsz ../k1/m.best.tsz; then
    pass "dist: -np 2 killed after epoch $at of 40, --resume gives the uninterrupted run's bytes"
else
    fail "dist: -np 2 --resume differs from the uninterrupted run: $(head -c 300 err)"
fi
cd ..
finish
