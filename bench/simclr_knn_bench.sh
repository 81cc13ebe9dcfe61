#!/bin/sh
# simclr_knn_bench.sh: does SimCLR pre-training learn?  The "done means" measurement of simclr-train
# (issue 8), as a recipe anyone can rerun:
#  A. Tiny-ImageNet-2k (../shared): 200 classes x 10 images, the first 8 of each class (by name) for
#     pre-training and as the k-NN reference, the last 2 (*_105, *_106) held out.  A fixed budget of
#     augment | simclr-train, with simclr-train's own k-NN monitor (cosine, k 200, votes exp(s/0.07))
#     before the first step (the randomly initialised encoder) and every few epochs.  Prints the
#     budget, the per-epoch log, wall and CPU time, and k-NN trained / k-NN random; then the same
#     held-out images scored by embed --knn (k 200, 20 and 1) with the untrained encoder
#     (simclr-train --save-init) and the trained one, paired by score --compare (bootstrap interval
#     of the difference, McNemar's test), and a leave-one-out k-NN over all 2,000 images (embed
#     --knn-loo), whose five times as many queries narrow the interval.
#  B. (opt-in, slow: SIMCLR_KNN_FOLDS="1 2 ...") ESC-10 with wav2mel's esc50 preset (3 x 128 x 250):
#     finetune --init the encoder from A against the same network from scratch on each held-out fold,
#     embed --logits on the test fold, score --compare over the folds.
# Knobs (environment): SIMCLR_KNN_EPOCHS (150), SIMCLR_KNN_WIDTH (32), SIMCLR_KNN_STEM (imagenet),
#   SIMCLR_KNN_BATCH (128), SIMCLR_KNN_TEMP (0.2), SIMCLR_KNN_AUG (augment options added to
#   --policy simclr, default "--scale 0.2,1 --blur 0 --strength 0.5": SimCLR's small-image colour
#   strength, no blur, milder crops), SIMCLR_KNN_EVERY (25), SIMCLR_KNN_FOLDS (empty: skip B),
#   SIMCLR_KNN_FT_EPOCHS (20), SIMCLR_KNN_KEEP (a directory to keep the outputs in),
#   SIMCLR_KNN_ENCODER (an encoder from an earlier run: skip A; set WIDTH and STEM to match it),
#   SIMCLR_KNN_TRAIN_OPTS (more simclr-train options, e.g. "--chunk 128").
# Time on 2 cores: A with the defaults about 18 min (1095 s wall measured on a quiet machine); B 1.5-6 min
# per fine-tuning run, two per fold (85-340 s measured beside another job).  Not part of `make test`
# (far too long); wall-clock figures depend on the machine's other load.
ROOT=${EARSIGHT_ROOT:-$(cd "$(dirname "$0")/.." && pwd)}
SHARED=${EARSIGHT_SHARED:-$ROOT/../shared}
PATH="$ROOT/${BUILD:-build}/bin:$PATH"
TIN=$SHARED/data/tiny-imagenet-2k
ESC=$SHARED/data/esc10
EPOCHS=${SIMCLR_KNN_EPOCHS:-150}
WIDTH=${SIMCLR_KNN_WIDTH:-32}
STEM=${SIMCLR_KNN_STEM:-imagenet}
BATCH=${SIMCLR_KNN_BATCH:-128}
TEMP=${SIMCLR_KNN_TEMP:-0.2}
AUGX=${SIMCLR_KNN_AUG-"--scale 0.2,1 --blur 0 --strength 0.5"}
EVERY=${SIMCLR_KNN_EVERY:-25}
FOLDS=${SIMCLR_KNN_FOLDS:-}
FT_EPOCHS=${SIMCLR_KNN_FT_EPOCHS:-20}
ENCODER=${SIMCLR_KNN_ENCODER:-}
TRAIN_OPTS=${SIMCLR_KNN_TRAIN_OPTS:-}
J=$(nproc)
if [ ! -d "$TIN/png" ] || [ ! -f "$TIN/classes.tsv" ]; then echo "simclr_knn_bench: skipped: no $TIN"; exit 0; fi
TMP=${BENCH_TMP:-/tmp}/simclr_knn_bench.$$
mkdir -p "$TMP" || exit 1
trap 'rm -rf "$TMP"' EXIT
OUT=${SIMCLR_KNN_KEEP:-$TMP}
mkdir -p "$OUT" || exit 1
now() { date +%s.%N; }

if [ -n "$ENCODER" ]; then   # part A done before: fine-tune from that encoder
    cp "$ENCODER" "$OUT/enc.tsz" || exit 1
    echo "simclr_knn_bench: pre-training skipped, the encoder is $ENCODER"
else
    # the split (as in simclr-train(1)'s example): the images named *_105 and *_106, the last two of each
    # class in byte order, are held out; the other 1,600 are pre-trained on (their labels are not used
    # there) and are the k-NN reference
    img2tensor --u8 --classes "$TIN/classes.tsv" -o "$TMP/lab.tsz" "$TIN/png" || exit 1
    tsz select --name '*_10[56].png' -o "$TMP/val.tsz" "$TMP/lab.tsz" || exit 1
    tsz select --name '*_10[56].png' --invert -o "$TMP/train.tsz" "$TMP/lab.tsz" || exit 1
    count() { tsz info --json --no-values "$1" | tr -d ' \n' | sed 's/.*"records":\([0-9]*\).*/\1/'; }
    ntr=$(count "$TMP/train.tsz"); nva=$(count "$TMP/val.tsz")
    steps=$((ntr * EPOCHS / BATCH))
    echo "simclr_knn_bench: ResNet-18 width $WIDTH stem $STEM, $ntr unlabelled training images x $EPOCHS epochs" \
         "of 2 views at 64 px (augment --policy simclr $AUGX), batch $BATCH pairs: $steps steps, $((steps * BATCH))" \
         "pairs; LARS, default lr, temperature $TEMP; k-NN (k 200) on $ntr labelled training / $nva held-out images," \
         "200 classes (chance 0.005)"
    echo "  start: $(uptime)"
    t0=$(now)
    # shellcheck disable=SC2086
    augment --policy simclr $AUGX --views 2 --epochs "$EPOCHS" --size 64 --seed 1 --u8 --raw -j 1 "$TMP/train.tsz" |
        /usr/bin/time -f '%e %U %S' -o "$TMP/time.txt" \
        simclr-train -v -j "$J" --arch resnet18 --width "$WIDTH" --stem "$STEM" -b "$BATCH" --seed 1 \
            --temperature "$TEMP" --save-init "$OUT/init.tsz" $TRAIN_OPTS \
            --knn "$TMP/train.tsz" "$TMP/val.tsz" --knn-every "$EVERY" --log "$OUT/simclr_log.tsv" \
            --curves "$OUT/simclr_curves.png" -o "$OUT/enc.tsz" - 2>"$TMP/err.txt"
    rc=$?
    t1=$(now)
    if [ $rc -ne 0 ]; then echo "simclr_knn_bench: simclr-train failed: $(tail -n 1 "$TMP/err.txt")"; exit 1; fi
    echo "  end:   $(uptime)"
    grep -E 'before training|steps, ' "$TMP/err.txt" | sed 's/^/  /'
    awk -v w0="$t0" -v w1="$t1" '{ printf "  pipe wall %.0f s; simclr-train wall %.0f s, CPU %.0f s user + %.0f s sys\n", w1 - w0, $1, $2, $3 }' "$TMP/time.txt"
    echo "  per epoch (simclr-train --log):"
    awk -F'\t' '{ printf "    %-6s %-5s %-8s %-15s %-8s %-11s %s\n", $1, $2, $3, $4, $6, $8, $9 }' "$OUT/simclr_log.tsv"
    awk -F'\t' 'NR > 1 && $8 != "" && $8 != "nan" { if (!seen++) a = $8; b = $8 } END {
        if (a > 0) printf "  k-NN accuracy: random init %.4f, after training %.4f (x%.1f)\n", a, b, b / a
        else printf "  k-NN accuracy: random init %s, after training %s\n", a, b }' "$OUT/simclr_log.tsv"

    # the same held-out images through embed --knn: untrained (--save-init) against trained, paired
    for k in 200 20 1; do
        for m in init enc; do
            embed -j "$J" --model "$OUT/$m.tsz" --knn "$TMP/train.tsz" --knn-k $k -o "$OUT/$m.knn$k.tsz" "$TMP/val.tsz" ||
                exit 1
        done
        echo "  embed --knn, k $k (A = trained, B = untrained):"
        score --compare "$OUT/enc.knn$k.tsz" -- "$OUT/init.knn$k.tsz" | grep -E '^(accuracy A|both right|McNemar)' | sed 's/^/    /'
    done
    # leave-one-out over every labelled image (embed --knn-loo): 5x the queries of the split above
    for m in init enc; do
        embed -j "$J" --model "$OUT/$m.tsz" --knn-loo -o "$OUT/$m.loo.tsz" "$TMP/lab.tsz" || exit 1
    done
    echo "  embed --knn-loo over all $((ntr + nva)) images, k 200 (A = trained, B = untrained; $ntr of them" \
         "were pre-trained on, without labels):"
    score --compare "$OUT/enc.loo.tsz" -- "$OUT/init.loo.tsz" | grep -E '^(accuracy A|both right|McNemar)' | sed 's/^/    /'
fi

# B: ESC-10, pre-trained against from scratch on the held-out folds
if [ -z "$FOLDS" ]; then echo "simclr_knn_bench: ESC-10 fine-tuning skipped (set SIMCLR_KNN_FOLDS=\"1 2 3 4 5\")"; exit 0; fi
if [ ! -d "$ESC" ]; then echo "simclr_knn_bench: ESC-10 fine-tuning skipped: no $ESC"; exit 0; fi
wav2mel --preset esc50 --esc10 "$ESC" -o "$TMP/esc10.tsz" || exit 1
FT="--epochs $FT_EPOCHS -b 32 --lr 1e-4 --schedule cosine --seed 1 --no-checkpoint -j $J"
echo "ESC-10 (wav2mel --preset esc50): finetune $FT, the final model of each run (no selection on the test fold)"
pre=; scr=
for f in $FOLDS; do
    tsz select --fold "$f" "$TMP/esc10.tsz" -o "$TMP/test$f.tsz" || exit 1
    tsz select --fold "$f" --invert "$TMP/esc10.tsz" -o "$TMP/train$f.tsz" || exit 1
    for kind in pre scratch; do
        if [ $kind = pre ]; then init="--init $OUT/enc.tsz"; else init="--arch resnet18 --width $WIDTH --stem $STEM"; fi
        t0=$(now)
        # shellcheck disable=SC2086
        if ! finetune $init $FT --log "$OUT/ft_${kind}$f.tsv" -o "$TMP/ft_${kind}$f.tsz" "$TMP/train$f.tsz" 2>"$TMP/err.txt"; then
            echo "fold $f $kind: finetune failed: $(tail -n 1 "$TMP/err.txt")"; exit 1
        fi
        t1=$(now)
        embed --logits --model "$TMP/ft_${kind}$f.tsz" -o "$OUT/${kind}$f.logits" "$TMP/test$f.tsz" || exit 1
        acc=$(score --csv "$OUT/${kind}$f.logits" | awk -F, '$3 == "accuracy" { print $4; exit }')
        awk -v f="$f" -v k="$kind" -v a="$acc" -v s0="$t0" -v s1="$t1" 'BEGIN { printf "  fold %s %-7s test accuracy %s (fine-tuning %.0f s wall)\n", f, k, a, s1 - s0 }'
    done
    pre="$pre $OUT/pre$f.logits"; scr="$scr $OUT/scratch$f.logits"
done
# shellcheck disable=SC2086
score --compare $pre -- $scr
echo "simclr_knn_bench: done; $(uptime | sed 's/.*\(load average\)/\1/')"
