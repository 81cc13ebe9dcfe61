#!/bin/sh
# finetune: training on a small synthetic separable problem (stripes of three orientations, 1x16x16,
# written by `train_test gen`), linear evaluation, --init with conv1 summing, kill -9 and --resume
# (bit-identical), NaN stop, soft labels, augment-like streams from a pipe, bad input and usage errors.
. "$EARSIGHT_ROOT/tests/lib.sh"
GEN="$EARSIGHT_BIN/../tests/train_test"
[ -x "$GEN" ] || { fail "finetune: $GEN is missing (make builds it)"; finish; }
# Tiny networks: width 4, few epochs; one thread (a tiny network gains nothing from two, and loses a
# lot on a busy machine), except for the repeatability check, which also runs two.
NET="--width 4 --batch 16 -j 1"

# killed_midway CKPT STREAM FINETUNE-ARG...: run finetune on a pipe whose producer sends the first half
# of STREAM, an augment-like stream of several epochs, and then stalls: the checkpoint after the last
# whole epoch is the last one the run can write, so kill -9 lands there whatever the machine's speed.
# (The producer sends a raw copy: a zstd reader cannot use part of a 128 KiB block.)
killed_midway() {
    ckpt=$1 src=$2
    shift 2
    tsz cat --raw -o midway.tsz "$src" || return 1
    size=$(wc -c <midway.tsz)
    rm -f stop feed
    mkfifo feed
    finetune "$@" - <feed >/dev/null 2>&1 &
    pid=$!
    { head -c $((size / 2)) midway.tsz; while [ ! -e stop ]; do sleep 0.1; done; } >feed &
    i=0
    while [ ! -e "$ckpt" ] && kill -0 $pid 2>/dev/null && [ $i -lt 1500 ]; do sleep 0.02; i=$((i + 1)); done
    kill -9 $pid 2>/dev/null
    touch stop
    wait
    rm -f stop feed midway.tsz
}

"$GEN" gen train.tsz n=96 k=3 seed=1 && "$GEN" gen val.tsz n=48 k=3 seed=2 || { fail "finetune: synthetic data"; finish; }

# ---- learning: the loss falls and validation accuracy gets high
if finetune $NET --epochs 10 --lr 1e-2 --val val.tsz --log log.tsv --curves curves.png -o m.tsz train.tsz 2>run.err; then
    rows=$(($(wc -l <log.tsv) - 1))
    first=$(awk -F'\t' 'NR == 2 {print $2}' log.tsv); last=$(awk -F'\t' 'END {print $2}' log.tsv)
    vacc=$(awk -F'\t' 'END {print $5}' log.tsv)
    if [ "$rows" -eq 10 ] && awk -v a="$first" -v b="$last" 'BEGIN {exit !(b < a / 3)}'; then
        pass "finetune: train loss falls from $first to $last over 10 epochs"
    else fail "finetune: train loss $first -> $last ($rows log rows)"; fi
    if awk -v v="$vacc" 'BEGIN {exit !(v >= 0.9)}'; then pass "finetune: validation accuracy $vacc (>= 0.9)"
    else fail "finetune: validation accuracy $vacc (want >= 0.9)"; fi
    head -n 1 log.tsv | grep -q '^epoch	train_loss	train_acc	val_loss	val_acc	lr	images_per_s	seconds$' &&
        pass "finetune: log header" || fail "finetune: log header: $(head -n 1 log.tsv)"
    [ "$(head -c 4 curves.png | od -An -c | tr -d ' ')" = "211PNG" ] && pass "finetune: curves PNG" ||
        fail "finetune: curves.png is not a PNG"
    [ -s m.best.tsz ] && [ ! -e m.ckpt ] && pass "finetune: best model kept, checkpoint removed after success" ||
        fail "finetune: m.best.tsz missing or m.ckpt left behind"
    tsz info m.tsz | grep -q 'num_classes=3' && tsz info m.tsz | grep -q 'class2' &&
        pass "finetune: model attributes carry num_classes and class names" || fail "finetune: model attributes"
else
    fail "finetune: training run: $(head -c 300 run.err)"
fi

# ---- determinism: the same run twice gives the same bytes (with two threads)
mkdir -p d1 d2
(cd d1 && finetune $NET -j 2 --epochs 2 --lr 1e-2 --dropout 0.3 -o m.tsz ../train.tsz) &&
(cd d2 && finetune $NET -j 2 --epochs 2 --lr 1e-2 --dropout 0.3 -o m.tsz ../train.tsz) &&
    cmp -s d1/m.tsz d2/m.tsz && pass "finetune: two identical runs (-j 2) write identical models" ||
    fail "finetune: repeated run differs"

# ---- u8 records train as x / 255
"$GEN" gen train8.tsz n=48 k=3 seed=3 u8=1
check "finetune: u8 training stream" finetune $NET --epochs 2 --lr 1e-2 -o m8.tsz train8.tsz

# ---- linear evaluation: only fc changes (every backbone tensor, BN statistics included, is untouched)
if finetune $NET --epochs 3 --lr 1e-2 --freeze-backbone --init m.tsz -o lin.tsz train.tsz 2>run.err &&
   tsz npy --name 'fc.*' --invert -o bb0.npz m.tsz && tsz npy --name 'fc.*' --invert -o bb1.npz lin.tsz &&
   tsz npy --name 'fc.*' -o fc0.npz m.tsz && tsz npy --name 'fc.*' -o fc1.npz lin.tsz; then
    cmp -s bb0.npz bb1.npz && pass "finetune --freeze-backbone: backbone tensors byte-identical" ||
        fail "finetune --freeze-backbone: the backbone changed"
    cmp -s fc0.npz fc1.npz && fail "finetune --freeze-backbone: fc did not change" ||
        pass "finetune --freeze-backbone: fc trained"
else
    fail "finetune --freeze-backbone: $(head -c 300 run.err)"
fi

# ---- --init from a 3-channel model onto 1-channel data: conv1 summed over channels.  The frozen mono
# copy must compute on a grey image what the RGB model computes on that image replicated (embed does
# the replication), up to float rounding of the reordered sums.
"$GEN" gen rgb.tsz n=48 k=3 c=3 seed=5
if finetune $NET --epochs 2 --lr 1e-2 -o rgb-model.tsz rgb.tsz 2>run.err &&
   finetune $NET --epochs 1 --freeze-backbone --init rgb-model.tsz -o mono.tsz train.tsz 2>>run.err &&
   embed -j 2 --model rgb-model.tsz -o f3.tsz val.tsz && embed -j 2 --model mono.tsz -o f1.tsz val.tsz; then
    tsz info mono.tsz | grep -q 'in_channels=1' && out=$("$GEN" cmp f3.tsz f1.tsz 1e-5 1e-4) &&
        pass "finetune --init: RGB conv1 summed for 1-channel data ($out)" ||
        fail "finetune --init: mono features differ from the RGB model's: $out"
else
    fail "finetune --init 3->1: $(head -c 300 run.err)"
fi
# an encoder as simclr-train writes it: projection head under head., no classifier, small stem, RGB
"$GEN" genmodel enc.tsz width=4 in=3 head=2 stem=small
if finetune $NET --epochs 1 --init enc.tsz -o fenc.tsz train.tsz 2>run.err; then
    tsz info -l --no-values fenc.tsz >fenc.txt
    grep -q 'stem=small' fenc.txt && grep -q 'num_classes=3' fenc.txt && ! grep -q 'head\.' fenc.txt &&
        ! grep -q 'head_layers' fenc.txt && pass "finetune --init: encoder's stem kept, projection head dropped" ||
        fail "finetune --init encoder: $(grep -E 'stem|head' fenc.txt | head -c 300)"
else
    fail "finetune --init encoder: $(head -c 300 run.err)"
fi
# --resume of a run started from an encoder with a projection head accepts its own checkpoint and
# ends with the tensors of the uninterrupted run (here: resumed from the checkpoint after epoch 1 of 3)
mkdir -p initres && cd initres
"$GEN" gen aug.tsz n=48 k=3 seed=7 epochs=3
if finetune $NET --init ../enc.tsz -o full.tsz aug.tsz 2>../run.err; then
    killed_midway part.ckpt aug.tsz $NET --init ../enc.tsz --checkpoint part.ckpt -o part.tsz
    at=$(tsz info part.ckpt 2>/dev/null | sed -n 's/^    epoch=//p')
    if [ -e part.tsz ] || [ -z "$at" ]; then
        fail "finetune --init --resume: the kill did not land mid-run"
    elif finetune $NET --init ../enc.tsz --checkpoint part.ckpt --resume -o part.tsz aug.tsz 2>../run.err &&
         tsz npy -o full.npz full.tsz && tsz npy -o part.npz part.tsz && cmp -s full.npz part.npz; then
        pass "finetune --init from an encoder with a head: killed after epoch $at of 3, --resume gives the uninterrupted tensors"
    else
        fail "finetune --init --resume: $(head -c 300 ../run.err)"
    fi
else
    fail "finetune --init (for --resume): $(head -c 300 ../run.err)"
fi
cd ..
# the pre-trained network decides; contradicting options get a note (pipelines pass them for every method)
if finetune $NET --epochs 1 --arch resnet34 --stem imagenet --init enc.tsz -o fenc2.tsz train.tsz 2>note.err &&
   tsz info fenc2.tsz | grep -q 'arch=resnet18' && tsz info fenc2.tsz | grep -q 'stem=small' &&
   [ "$(wc -l <note.err)" -eq 1 ] && grep -q 'enc.tsz is resnet18 width 4 stem small' note.err; then
    pass "finetune --init: the encoder's architecture wins over --arch/--stem, with a note"
else
    fail "finetune --init with contradicting options: $(head -c 300 note.err)"
fi
expect_fail "finetune --init: 1-channel weights for 3-channel data refused" 1 "conv1.weight: the pre-trained model.s shape is [0-9]*x1x7x7, this network needs [0-9]*x3x7x7" \
    finetune $NET --init m.tsz -o x.tsz rgb.tsz

# ---- kill -9 in the middle, then --resume: the same bytes as an uninterrupted run
# (40 epochs of ~15 ms: the kill comes as soon as the first checkpoint appears, well before the end
# even on a fast machine; a fixed delay after it once let a fresh machine finish the run first)
RUN="$NET --epochs 40 --lr 3e-3 --step-size 14 --gamma 0.5 --dropout 0.2 --val ../val.tsz"
mkdir -p full part
(cd full && finetune $RUN -o m.tsz ../train.tsz) || fail "finetune: uninterrupted run"
cd part
finetune $RUN -o m.tsz ../train.tsz 2>/dev/null &
pid=$!
i=0
while [ ! -e m.ckpt ] && [ $i -lt 3000 ]; do sleep 0.01; i=$((i + 1)); done
kill -9 $pid 2>/dev/null
wait $pid 2>/dev/null
killed_at=$(tsz info m.ckpt 2>/dev/null | sed -n 's/^    epoch=//p')
if [ -e m.tsz ] || [ -z "$killed_at" ]; then
    fail "finetune --resume: the kill did not land mid-run (model present or no checkpoint)"
else
    if finetune $RUN -o m.tsz --resume ../train.tsz 2>../run.err && cmp -s m.tsz ../full/m.tsz &&
       cmp -s m.best.tsz ../full/m.best.tsz; then
        pass "finetune: killed after epoch $killed_at of 40, --resume gives byte-identical models"
    else
        fail "finetune --resume: result differs from the uninterrupted run: $(head -c 300 ../run.err)"
    fi
fi
cd ..

# ---- --resume refuses a checkpoint made with other options
mkdir -p other && cd other
finetune $NET --epochs 2 --lr 1e-2 --keep-checkpoint -o m.tsz ../train.tsz
expect_fail "finetune --resume: checkpoint with other options refused" 1 "lr=0.01" \
    finetune $NET --epochs 2 --lr 2e-2 --resume -o m.tsz ../train.tsz
cd ..

# ---- a non-finite loss stops the run and names the step; the last good checkpoint stays
expect_fail "finetune: NaN loss stops with the step named" 1 "epoch 1, step [0-9]* .*loss is" \
    finetune $NET --epochs 3 --lr 1e30 -o nan.tsz train.tsz
[ ! -e nan.tsz ] && pass "finetune: no model written after a NaN stop" || fail "finetune: model written after NaN"
expect_fail "finetune: NaN in epoch 2 keeps the epoch-1 checkpoint" 1 "epoch 2, step .*nan2.ckpt (epoch 1)" \
    finetune $NET --epochs 3 --lr 1e-3 --step-size 1 --gamma 1e33 -o nan2.tsz train.tsz
tsz info nan2.ckpt 2>/dev/null | grep -q '^    epoch=1$' && pass "finetune: the last good checkpoint is kept" ||
    fail "finetune: nan2.ckpt missing or not at epoch 1"

# ---- soft labels (mixup companions) from a pipe: targets 0.7/0.3 keep the loss above their entropy
"$GEN" gen soft.tsz n=96 k=3 seed=1 soft=1
if cat soft.tsz | finetune $NET --epochs 6 --lr 1e-2 --log slog.tsv -o ms.tsz - 2>run.err; then
    last=$(awk -F'\t' 'END {print $2}' slog.tsv); first=$(awk -F'\t' 'NR == 2 {print $2}' slog.tsv)
    # cross-entropy against (0.7, 0.3) is at least its entropy 0.611; against one-hot labels it would fall to ~0
    awk -v a="$first" -v b="$last" 'BEGIN {exit !(b < a && b > 0.6)}' &&
        pass "finetune: soft-label stream from stdin trains against the soft targets (loss $first -> $last)" ||
        fail "finetune: soft labels: loss $first -> $last (want falling and above 0.611)"
else
    fail "finetune: soft-label stream: $(head -c 300 run.err)"
fi

# ---- an augment stream of several epochs is read in order, from a pipe; restarted producers
"$GEN" gen aug.tsz n=48 k=3 seed=7 epochs=3
mkdir -p sfull spart
(cd sfull && cat ../aug.tsz | finetune $NET --lr 1e-2 --keep-checkpoint --log log.tsv -o m.tsz - 2>../run.err) &&
    [ "$(($(wc -l <sfull/log.tsv) - 1))" -eq 3 ] && pass "finetune: augment stream of 3 epochs from a pipe" ||
    fail "finetune: augment stream: $(head -c 300 run.err)"
expect_fail "finetune: --epochs contradicting the augment stream refused" 1 "holds 3 epochs" \
    finetune $NET --epochs 5 -o x.tsz aug.tsz
# A checkpoint after epoch 1 (a truncated producer run dies after it), then resume from a producer
# restarted at the next record (augment --start) and from one restarted at 0 (finetune skips).
"$GEN" gen aug1.tsz n=48 k=3 seed=7 epochs=3 start=48
cd spart
killed_midway m.ckpt ../aug.tsz $NET --lr 1e-2 --epochs 3 -o m.tsz
at=$(tsz info m.ckpt 2>/dev/null | sed -n 's/^    epoch=//p')
cp m.ckpt saved.ckpt 2>/dev/null
if [ -n "$at" ] && [ ! -e m.tsz ]; then
    finetune $NET --lr 1e-2 --epochs 3 --resume --keep-checkpoint -o m.tsz ../aug.tsz 2>../run.err &&
        tsz npy -o a.npz m.tsz && tsz npy -o b.npz ../sfull/m.tsz && cmp -s a.npz b.npz &&
        pass "finetune: stream resumed after epoch $at (producer restarted at 0, records skipped): same tensors" ||
        fail "finetune: stream resume with skipping: $(head -c 300 ../run.err)"
    if [ "$at" = 1 ]; then
        cp saved.ckpt m.ckpt && rm -f m.tsz
        finetune $NET --lr 1e-2 --epochs 3 --resume -o m.tsz ../aug1.tsz 2>../run.err &&
            tsz npy -o c.npz m.tsz && cmp -s c.npz b.npz &&
            pass "finetune: stream resumed from a producer restarted at the checkpoint: same tensors" ||
            fail "finetune: stream resume at augment_start: $(head -c 300 ../run.err)"
    else
        fail "finetune: stream resume at augment_start: the kill landed after epoch $at, not 1"
    fi
    rm -f m.ckpt
    expect_fail "finetune: a stream starting past the run's position is refused" 1 "starts at example 48" \
        finetune $NET --lr 1e-2 --epochs 3 -o m2.tsz ../aug1.tsz
else
    fail "finetune: stream run was not interrupted after an epoch"
fi
cd ..

# ---- bad input: one line, exit 1
expect_fail "finetune: missing input" 1 "nosuch.tsz" finetune $NET -o x.tsz nosuch.tsz
head -c 3000 train.tsz >trunc.tsz
expect_fail "finetune: truncated input" 1 "trunc.tsz" finetune $NET -o x.tsz trunc.tsz
"$GEN" gen badshape.tsz n=10 k=2 bad=1
expect_fail "finetune: a record of another shape" 1 "badshape.tsz: record 9" finetune $NET -o x.tsz badshape.tsz
expect_fail "finetune: validation of another shape" 1 "rgb.tsz" finetune $NET --val rgb.tsz -o x.tsz train.tsz
expect_fail "finetune: labels beyond --classes" 1 "label 2, but there are 2 classes" \
    finetune $NET --classes 2 -o x.tsz train.tsz
[ ! -e x.tsz ] && pass "finetune: no output after failures" || fail "finetune: x.tsz written by a failing run"

# ---- usage errors: exit 2, a line naming the problem, then "try 'finetune --help'"
expect_usage() { # WHAT PATTERN COMMAND...
    what=$1; pat=$2; shift 2
    "$@" >/dev/null 2>eu.err; rc=$?
    if [ "$rc" -eq 2 ] && [ "$(wc -l <eu.err)" -eq 2 ] && head -n 1 eu.err | grep -q -- "$pat" &&
       tail -n 1 eu.err | grep -q "try 'finetune --help'"; then pass "$what"
    else fail "$what: status $rc, stderr: $(head -c 300 eu.err)"; fi
}
expect_usage "finetune: no -o" "no output model" finetune train.tsz
expect_usage "finetune: unknown --arch" "resnet99" finetune --arch resnet99 -o x.tsz train.tsz
expect_usage "finetune: unknown option" "--bogus" finetune --bogus -o x.tsz train.tsz
expect_usage "finetune: --best without --val" "--best" finetune --best b.tsz -o x.tsz train.tsz
expect_usage "finetune: --optimizer lars is not offered" "lars" finetune --optimizer lars -o x.tsz train.tsz
expect_usage "finetune: a bad number" "--lr" finetune --lr abc -o x.tsz train.tsz
finetune --help | grep -q -- '--freeze-backbone' && pass "finetune --help" || fail "finetune --help"
finetune --version | grep -q earsight && pass "finetune --version" || fail "finetune --version"
finish
