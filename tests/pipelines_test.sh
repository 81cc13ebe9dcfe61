#!/bin/sh
# pipelines_test.sh: the Make pipelines end to end on tiny synthetic datasets laid out like ESC-50,
# UrbanSound8K and GTZAN (sox tones and noises) with generated images for SimCLR and supervised
# pre-training, tiny models and one epoch.  Checks that every expected output exists and is well
# formed, that table.md lists every fold and method, that a second make does nothing, that a knob
# change re-runs exactly what depends on it, and that -j2 and -j1 give identical tables.  The demo's
# data script is checked when the media packages are installed, and demo.mk runs with tiny settings.
. "$EARSIGHT_ROOT/tests/lib.sh"
P=$EARSIGHT_ROOT/pipelines
export LC_ALL=C
case $EARSIGHT_BIN in *-san*) SAN=1 ;; esac
# The pipelines only compose the tools, whose own tests run under the sanitizers; end to end under
# ASan they take ~10 minutes of the CI budget, so the sanitizer run reports them as skipped.
if [ "$SAN" = 1 ]; then
    skip "pipelines end to end: not run under the sanitizers (the normal build runs them)"
    exit 0
fi
# A private copy of the tools: the pipelines depend on the binaries, so a rebuild in the tree while
# the test runs must not make its results look out of date.
mkdir -p bin
for t in "$EARSIGHT_BIN"/*; do [ -x "$t" ] && cp -p "$t" bin/; done
BIN=$PWD/bin

have_tools() { # have_tools TOOL... : all built?
    for t in "$@"; do [ -x "$BIN/$t" ] || { echo "$t"; return 1; }; done
}
is_png() { [ "$(head -c 8 "$1" | od -An -tx1 | tr -d ' \n')" = "89504e470d0a1a0a" ]; }
# Tiny everything: width-4 ResNet-18, one epoch, small batches, small spectrograms (each dataset's
# preset with fewer mels and frames), small images.
TINY="BIN=$BIN WIDTH=4 EPOCHS=1 LIN_EPOCHS=1 BATCH=8 SEED=3 SIMCLR_EPOCHS=1 SIMCLR_BATCH=8 SIMCLR_SIZE=32 \
SIMCLR_RESIZE=40 SIMCLR_CROP=40 SIMCLR_CROPS=2 SUP_EPOCHS=1 SUP_BATCH=8 SUP_RESIZE=40 SUP_CROP=32 TSNE_OPTS=--perplexity=1.5"
SMALL_MEL="--duration 1 --mels 32 --width 48"

# ---------------------------------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------------------------------
# tone CLASS_INDEX VARIANT OUT [SECONDS] [RATE]: class 0 a low sine, 1 a high sine, 2 white noise,
# 3 a sine sweep; the variant shifts the pitch a little so clips differ.
clip() {
    c=$1; v=$2; out=$3; secs=${4:-1}; rate=${5:-44100}
    case $c in
        0) syn="sine $((200 + 13 * v))" ;;
        1) syn="sine $((2000 + 57 * v))" ;;
        2) syn="whitenoise" ;;
        *) syn="sine $((300 + 20 * v))-$((3000 + 50 * v))" ;;
    esac
    sox -n -r "$rate" -c 1 -b 16 "$out" synth "$secs" $syn vol 0.$((3 + v % 5)) 2>/dev/null
}
make_esc50() { # 3 classes x 5 folds x 2 clips
    mkdir -p esc50/meta esc50/audio
    echo "filename,fold,target,category,esc10,src_file,take" >esc50/meta/esc50.csv
    for f in 1 2 3 4 5; do for c in 0 1 2; do for t in A B; do
        name="$f-10$c$f-$t-$c.wav"
        v=$((f * 2 + $(printf %d "'$t") % 2))
        clip "$c" "$v" "esc50/audio/$name" || return 1
        cat_name=$(echo "low high noise" | cut -d' ' -f$((c + 1)))
        echo "$name,$f,$c,$cat_name,False,10$c$f,$t" >>esc50/meta/esc50.csv
    done; done; done
}
make_us8k() { # 2 classes x 10 folds x 3 clips
    mkdir -p us8k/metadata
    echo "slice_file_name,fsID,start,end,salience,fold,classID,class" >us8k/metadata/UrbanSound8K.csv
    for f in 1 2 3 4 5 6 7 8 9 10; do mkdir -p "us8k/audio/fold$f"; for c in 0 2; do for t in 0 1 2; do
        name="$((100 + f))$c-$c-$t-$t.wav"
        clip "$c" "$((f + t))" "us8k/audio/fold$f/$name" 0.5 22050 || return 1
        id=$((c / 2)); cl=$(echo "hum noise" | cut -d' ' -f$((id + 1)))
        echo "$name,$((100 + f))$c,0.0,0.5,1,$f,$id,$cl" >>us8k/metadata/UrbanSound8K.csv
    done; done; done
}
make_gtzan() { # 3 genres x 20 clips (two per fold under a 10-fold rule)
    for g in blues metal pop; do
        mkdir -p "gtzan/genres/$g"
        for i in 00 01 02 03 04 05 06 07 08 09 10 11 12 13 14 15 16 17 18 19; do
            c=0; [ $g = metal ] && c=2; [ $g = pop ] && c=1
            clip "$c" "${i#0}" "gtzan/genres/$g/$g.000$i.wav" 0.5 22050 || return 1
        done
    done
}
# PNG images (RGB, 8 bit) written with python3's zlib: coloured blobs and stripes on noise; with
# --classes, an ImageFolder tree of two classes (reddish vs bluish).
make_images() { # make_images DIR N [--classes]
    python3 - "$@" <<'EOF'
import os, random, struct, sys, zlib
out, n, classes = sys.argv[1], int(sys.argv[2]), "--classes" in sys.argv
def png(path, w, h, px):
    raw = b"".join(b"\0" + bytes(px[y * w * 3:(y + 1) * w * 3]) for y in range(h))
    def chunk(t, d): return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xffffffff)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
                + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b""))
for i in range(n):
    r = random.Random(i * 7919 + (1 if classes else 0))
    w, h = r.randint(48, 64), r.randint(40, 56)
    cls = i % 2
    base = [200, 60, 40] if (classes and cls == 0) else [40, 80, 200] if classes else [r.randint(0, 255) for _ in range(3)]
    cx, cy, rad = r.randint(0, w), r.randint(0, h), r.randint(6, 20)
    period = r.randint(4, 12)
    px = []
    for y in range(h):
        for x in range(w):
            inside = (x - cx) ** 2 + (y - cy) ** 2 < rad * rad
            for k in range(3):
                v = base[k] + (60 if inside else 0) + (30 if (x // period) % 2 else 0) + r.randint(-20, 20)
                px.append(max(0, min(255, v)))
    d = os.path.join(out, ("c%d" % cls) if classes else "")
    os.makedirs(d, exist_ok=True)
    png(os.path.join(d, "img%03d.png" % i), w, h, px)
EOF
}

# ---------------------------------------------------------------------------------------------------
# checks
# ---------------------------------------------------------------------------------------------------
# check_outputs NAME OUT WORK "FOLDS" "RUNS" "COMPARISONS": every output exists and is well formed.
check_outputs() {
    name=$1; out=$2; work=$3; folds=$4; runs=$5; comps=$6; bad=""
    for f in $folds; do
        for s in train test; do "$BIN/tsz" info "$work/split/fold$f/$s.tsz" >/dev/null 2>&1 || bad="$bad $work/split/fold$f/$s.tsz"; done
        for r in $runs; do
            "$BIN/tsz" info "$work/$r/fold$f/model.tsz" >/dev/null 2>&1 || bad="$bad $work/$r/fold$f/model.tsz"
            "$BIN/tsz" info "$out/$r/fold$f.logits.tsz" >/dev/null 2>&1 || bad="$bad $out/$r/fold$f.logits.tsz"
        done
    done
    for r in $runs; do
        for png in confusion tsne; do is_png "$out/$r/$png.png" 2>/dev/null || bad="$bad $out/$r/$png.png"; done
        [ -s "$out/$r/score.txt" ] || bad="$bad $out/$r/score.txt"
    done
    for c in $comps; do [ -s "$out/compare-$c.txt" ] || bad="$bad $out/compare-$c.txt"; done
    "$BIN/tsz" info "$work/mel.tsz" >/dev/null 2>&1 || bad="$bad $work/mel.tsz"
    if [ -z "$bad" ]; then pass "$name: every output exists and is well formed (tsz info, PNG signature)"
    else fail "$name: missing or malformed:$bad"; fi
    # No temporary or partial file left behind.
    left=$(find "$out" "$work" -name '*.tmp*' 2>/dev/null | head -3)
    if [ -z "$left" ]; then pass "$name: no temporary files left"; else fail "$name: temporary files left: $left"; fi
}
# check_table NAME TABLE "FOLDS" "RUNS": the table names every fold and every run.
check_table() {
    name=$1; t=$2; folds=$3; runs=$4; miss=""
    [ -s "$t" ] || { fail "$name: no $t"; return; }
    for f in $folds; do grep -q "fold $f" "$t" || miss="$miss fold$f"; done
    for r in $runs; do grep -q -- "$r" "$t" || miss="$miss $r"; done
    if [ -z "$miss" ]; then pass "$name: table lists every fold ($folds) and run ($runs)"
    else fail "$name: table misses:$miss"; fi
}
# check_noop NAME MAKECMD...: a second make has nothing to do and changes no file.
check_noop() {
    name=$1; shift
    touch noop.stamp; sleep 1
    if "$@" -q >noop.out 2>&1; then q=0; else q=$?; fi
    "$@" >noop2.out 2>&1 || { fail "$name: second make failed: $(tail -3 noop2.out)"; return; }
    changed=$(find . -type f -newer noop.stamp ! -name 'noop*' | head -5)
    if [ "$q" -eq 0 ] && [ -z "$changed" ]; then pass "$name: a second make does nothing"
    else fail "$name: second make not a no-op (make -q status $q; changed: $changed)"; fi
}

# run_pipeline NAME MAKECMD...: make it, report failure with the log tail.
run_pipeline() {
    name=$1; shift
    start=$(date +%s)
    if "$@" >"$name.log" 2>&1; then
        pass "$name: pipeline ran end to end ($(( $(date +%s) - start )) s)"; return 0
    else
        fail "$name: make failed: $(grep -v '^\s*$' "$name.log" | tail -4 | tr '\n' ' ')"; return 1
    fi
}

if ! command -v sox >/dev/null; then skip "pipelines: sox not installed"; finish; fi
if ! command -v python3 >/dev/null; then skip "pipelines: python3 not installed (test images)"; finish; fi

KFOLD_TOOLS="wav2mel tsz finetune embed score tsne"
IMG_TOOLS="img2tensor augment simclr-train"

# ---------------------------------------------------------------------------------------------------
# ESC-50 layout, all three methods (our own SimCLR and supervised pre-training), -j1 and -j2
# ---------------------------------------------------------------------------------------------------
if miss=$(have_tools $KFOLD_TOOLS img2tensor); then
    make_esc50 && make_images imgs 24 && make_images sup 16 --classes || fail "esc50: could not make data"
    RUNS="ft-vanilla ft-supervised lin-vanilla lin-supervised"
    COMPS="ft-supervised-vs-ft-vanilla lin-supervised-vs-lin-vanilla"
    SIMCLR=""
    if m2=$(have_tools augment simclr-train); then
        SIMCLR="SIMCLR_IMAGES=imgs"
        RUNS="$RUNS ft-simclr lin-simclr"
        COMPS="$COMPS ft-simclr-vs-ft-vanilla ft-simclr-vs-ft-supervised lin-simclr-vs-lin-vanilla"
    else
        fail "esc50: SimCLR runs: tool $m2 not built"
    fi
    # shellcheck disable=SC2086
    A() { make -f "$P/esc50.mk" ESC50=esc50 $SIMCLR SUP_IMAGES=sup "MEL_OPTS=--preset esc50 $SMALL_MEL" $TINY "$@"; }
    if run_pipeline esc50 A; then
        check_outputs esc50 results/esc50 work/esc50 "1 2 3 4 5" "$RUNS" "$COMPS"
        check_table esc50 results/esc50/table.md "1 2 3 4 5" "$RUNS"
        for m in work/supervised/encoder.tsz ${SIMCLR:+work/simclr/encoder.tsz}; do
            check "esc50: $m is a model stream" "$BIN/tsz" info "$m"
        done
        # SIMCLR_IMAGES uses the demo's recipe: SIMCLR_CROPS (2 here) random crops of each of the 24 images.
        if [ -n "$SIMCLR" ]; then
            check "esc50: SimCLR trains on 2 random crops of each image (48 records)" sh -c \
                "'$BIN/tsz' info work/simclr/crops.tsz | grep -q '^  records: 48 '"
        fi
        check "esc50: logits carry the history of the commands that made them" sh -c \
            "'$BIN/tsz' info results/esc50/ft-supervised/fold1.logits.tsz | grep -q 'finetune.*--init'"
        check_noop esc50 A
        # A knob re-runs exactly what depends on it: LIN_EPOCHS touches linear evaluation only.
        A -n LIN_EPOCHS=2 >knob.out 2>&1
        if grep -q 'freeze-backbone' knob.out && ! grep -q -e 'wav2mel' -e 'simclr-train' -e 'tsz select' knob.out &&
           ! grep 'finetune' knob.out | grep -v -q 'freeze-backbone'; then
            pass "esc50: LIN_EPOCHS re-runs linear evaluation and nothing upstream"
        else fail "esc50: LIN_EPOCHS change re-runs the wrong steps: $(grep -c . knob.out) commands"; fi
        # SUP_EPOCHS re-runs supervised pre-training and the runs that use it, nothing else.
        A -n SUP_EPOCHS=2 >knob2.out 2>&1
        if grep -q -- '-o work/supervised/encoder.tsz' knob2.out && ! grep -q 'wav2mel' knob2.out &&
           ! grep 'finetune' knob2.out | grep -q -e 'ft-vanilla' -e 'lin-vanilla' -e 'simclr/fold'; then
            pass "esc50: SUP_EPOCHS re-runs supervised pre-training and its runs only"
        else fail "esc50: SUP_EPOCHS change re-runs the wrong steps"; fi
        # make -n wrote no settings: the tree is still up to date.
        if A -q; then pass "esc50: make -n with other knobs changes nothing"
        else fail "esc50: make -n with other knobs left the tree out of date"; fi
    fi
    # MPIRUN: fold 1 with every trainer under mpirun -np 2 (SimCLR pre-training through each rank's
    # own augment pipe, supervised pre-training, fine-tuning and linear evaluation), in a directory of
    # its own; a build without OpenMPI has no launcher to test
    if ldd "$BIN/finetune" 2>/dev/null | grep -q 'libmpi\.so' && command -v mpirun >/dev/null; then
        mkdir -p mpi && (cd mpi && ln -sf ../esc50 ../imgs ../sup .) &&
        if (cd mpi && OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 \
                A FOLDS=1 THREADS=1 "MPIRUN=mpirun -np 2 --oversubscribe --bind-to none" >../esc50-mpi.log 2>&1); then
            n=$(grep -c 'mpirun -np 2 .*/\(finetune\|simclr-train\)\|mpirun -np 2 .*sh -c' esc50-mpi.log)
            if [ -s mpi/results/esc50/table.md ] && [ -s mpi/work/simclr/encoder.tsz ] && [ "$n" -ge 4 ]; then
                pass "esc50: MPIRUN='mpirun -np 2' runs fold 1 with the trainers under mpirun ($n launches)"
            else fail "esc50: MPIRUN run: table or encoder missing, $n mpirun launches"; fi
            grep -q 'mpirun=mpirun -np 2' mpi/work/esc50/cfg/ft.cfg && pass "esc50: MPIRUN is part of the settings" ||
                fail "esc50: MPIRUN not recorded in work/esc50/cfg/ft.cfg"
        else fail "esc50: MPIRUN='mpirun -np 2' pipeline failed: $(grep -v '^\s*$' esc50-mpi.log | tail -4 | tr '\n' ' ')"; fi
    else
        skip "esc50: MPIRUN: the tools were built without OpenMPI (libopenmpi-dev; .ci/install-deps installs it)"
    fi
else
    fail "esc50 pipeline: tool $miss not built"
fi

# ---------------------------------------------------------------------------------------------------
# UrbanSound8K layout (10 folds): from scratch, and a ready-made encoder through SIMCLR_INIT
# ---------------------------------------------------------------------------------------------------
if miss=$(have_tools $KFOLD_TOOLS); then
    make_us8k || fail "us8k: could not make data"
    # A published-style checkpoint when ../shared has one (a MoCo-style training checkpoint: weights
    # under state_dict, prefixed module.encoder_q., plus a head to drop), else our own SimCLR encoder.
    CK=${EARSIGHT_SHARED:-/nonexistent}/reference/interop/resnet50_w8.checkpoint.pth
    if [ -f "$CK" ]; then
        INIT="SIMCLR_INIT=$CK INIT_OPTS=--strip-prefix=module.encoder_q. ARCH=resnet50 WIDTH=8"
    else
        skip "us8k: SIMCLR_INIT with a PyTorch checkpoint: ../shared/reference/interop absent"
        INIT=""; [ -f work/simclr/encoder.tsz ] && INIT="SIMCLR_INIT=work/simclr/encoder.tsz"
    fi
    # Fine-tuning from scratch and linear evaluation of the checkpoint: every fold, half the runs.
    FOLDS10="1 2 3 4 5 6 7 8 9 10"
    LIN=vanilla; [ -n "$INIT" ] && LIN=simclr
    # shellcheck disable=SC2086
    B() { make -f "$P/us8k.mk" US8K=us8k "MEL_OPTS=--preset us8k $SMALL_MEL" FT_METHODS=vanilla LIN_METHODS=$LIN $TINY $INIT "$@"; }
    if run_pipeline us8k B; then
        RUNS="ft-vanilla lin-$LIN"; COMPS=""
        check_outputs us8k results/us8k work/us8k "$FOLDS10" "$RUNS" "$COMPS"
        check_table us8k results/us8k/table.md "$FOLDS10" "$RUNS"
        check_noop us8k B
    fi
else
    fail "us8k pipeline: tool $miss not built"
fi

# ---------------------------------------------------------------------------------------------------
# GTZAN layout (folds by wav2mel's rule), vanilla only, a fold subset, -j2 against -j1
# ---------------------------------------------------------------------------------------------------
if miss=$(have_tools $KFOLD_TOOLS); then
    make_gtzan || fail "gtzan: could not make data"
    # shellcheck disable=SC2086
    C() { make -f "$P/gtzan.mk" GTZAN=gtzan "FOLDS=1 2 3" "MEL_OPTS=--preset gtzan $SMALL_MEL" $TINY "$@"; }
    if run_pipeline gtzan C; then
        check_outputs gtzan results/gtzan work/gtzan "1 2 3" "ft-vanilla lin-vanilla" ""
        check_table gtzan results/gtzan/table.md "1 2 3" "ft-vanilla lin-vanilla"
        check_noop gtzan C
        # INNER_FOLDS=1 (recipe selection): run K trains without folds K and K+1 and tests on K+1
        # (10 -> 1); fold K itself is never selected
        C -n INNER_FOLDS=1 WORK=inner OUT=inner/out "FOLDS=3 10" >inner.out 2>&1
        if grep -q -e '--fold 3,4 --invert' inner.out && grep -q -e '--fold 4 -o inner/split/fold3/test.tsz' inner.out &&
           grep -q -e '--fold 10,1 --invert' inner.out && grep -q -e '--fold 1 -o inner/split/fold10/test.tsz' inner.out &&
           ! grep -q -e '--fold 3 ' -e '--fold 10 ' inner.out; then
            pass "gtzan: INNER_FOLDS=1 tests run K on fold K+1 and never reads fold K"
        else fail "gtzan: INNER_FOLDS=1 splits wrong: $(grep 'tsz select' inner.out | head -4 | tr '\n' ' ')"; fi
        # -j2 in a fresh directory (two jobs of one thread each, where -j1 ran one job of
        # $(nproc) threads) gives the same table, byte for byte, and the same logits, bit for bit
        # (the table rounds to 0.1 %; the logits' history differs, so their values are compared).
        mkdir -p j2 && cd j2 && ln -s ../gtzan . &&
        if C -j2 >../gtzan-j2.log 2>&1; then
            if cmp -s results/gtzan/table.md ../results/gtzan/table.md; then
                pass "gtzan: make -j2 and make -j1 give identical tables"
            else fail "gtzan: -j2 table differs from -j1: $(diff ../results/gtzan/table.md results/gtzan/table.md | head -4 | tr '\n' ' ')"; fi
            diffl=""; n=0
            for l in ../results/gtzan/*/fold*.logits.tsz; do
                r=${l#../}; n=$((n + 1))
                a=$("$BIN/tsz" npy --stack --format npy -o - "$l" | cksum)
                b=$("$BIN/tsz" npy --stack --format npy -o - "$r" 2>/dev/null | cksum)
                [ "$a" = "$b" ] || diffl="$diffl $r"
            done
            if [ "$n" -eq 6 ] && [ -z "$diffl" ]; then pass "gtzan: make -j2 and make -j1 give bit-identical logits ($n files)"
            else fail "gtzan: -j2 logits differ from -j1 ($n files):$diffl"; fi
        else fail "gtzan: make -j2 failed: $(tail -3 ../gtzan-j2.log | tr '\n' ' ')"; fi
        cd ..
    fi
else
    fail "gtzan pipeline: tool $miss not built"
fi

# ---------------------------------------------------------------------------------------------------
# The demo's data (Debian packages) and demo.mk with tiny settings
# ---------------------------------------------------------------------------------------------------
if [ -d /usr/share/hydrogen/data/drumkits ] && [ -d /usr/share/sonic-pi/samples ] && [ -d /usr/share/wallpapers ]; then
    if sh "$P/demo-data.sh" dd1 2>/dev/null && sh "$P/demo-data.sh" dd2 2>/dev/null &&
       cmp -s dd1/sounds.tsv dd2/sounds.tsv && cmp -s dd1/photos.txt dd2/photos.txt && cmp -s dd1/stamps.txt dd2/stamps.txt; then
        pass "demo-data: deterministic lists"
    else fail "demo-data: lists differ between two runs or the script failed"; fi
    # Every group (same kit + instrument, velocity layers) lies in one fold; every class in every fold.
    bad=$(awk -F'\t' '{ g = $4; sub(/[-_]?([Hh]ardest|[Hh]ard|[Mm]ed|[Ss]oftest|[Ss]oft|[0-9]+)$/, "", g)
            if ((g in f) && f[g] != $3) print g; f[g] = $3; n[$2 "/" $3]++ }
            END { for (c = 0; c < 6; c++) for (k = 1; k <= 5; k++) if (!n[c "/" k]) print "empty " c "/" k }' dd1/sounds.tsv | head -3)
    if [ -z "$bad" ] && [ "$(wc -l <dd1/classes.txt)" -eq 6 ]; then pass "demo-data: groups never straddle folds, 6 classes in all 5 folds"
    else fail "demo-data: fold split: $bad"; fi
    if miss=$(have_tools $KFOLD_TOOLS $IMG_TOOLS); then
        # shellcheck disable=SC2086
        D() { make -f "$P/demo.mk" $TINY FOLDS=1 NPHOTOS=6 CROPS_PER_PHOTO=4 PHOTO_SIDE=64 CROP_SIZE=40 SIMCLR_SIZE=32 \
                   NSTAMPS=5 CROPS_PER_STAMP=2 \
                   "MEL_OPTS=--preset esc50 --rate 22050 --duration 1 --n-fft 2048 --mels 32 --channels 10:5,25:10,50:25 --width 48" "$@"; }
        if run_pipeline demo D; then
            check_outputs demo results/demo work/demo "1" "ft-vanilla ft-simclr lin-vanilla lin-simclr" \
                "ft-simclr-vs-ft-vanilla lin-simclr-vs-lin-vanilla"
            check_table demo results/demo/table.md "1" "ft-vanilla ft-simclr lin-vanilla lin-simclr"
            # label-scarce folds: 10 training clips of each class, the test fold whole; the crops hold
            # scenes and objects; runs read spectrograms scaled like the crops (fit on the training fold)
            per=$("$BIN/tsz" info work/demo/split/fold1/train.tsz | awk '/labels:/ { on = 1; next } on && NF == 3 { print $3 } on && NF != 3 { on = 0 }' | sort -u | tr '\n' ' ')
            ntest=$("$BIN/tsz" info --no-values work/demo/split/fold1/test.tsz | awk '/records:/ { print $2 }')
            ncrops=$("$BIN/tsz" info --no-values work/demo/crops.tsz | awk '/records:/ { print $2 }')
            if [ "$per" = "10 " ] && [ "$ntest" -eq "$(awk -F'\t' '$3 == 1' dd1/sounds.tsv | wc -l)" ] && [ "$ncrops" -eq 34 ] &&
               "$BIN/tsz" info work/demo/norm/fold1/test.tsz | grep -q "^    norm=c0: .*(fit work/demo/split/fold1/train.tsz, like work/demo/crops.tsz)\$"
            then pass "demo: 10 training clips a class, the whole test fold, 24 + 10 crops, inputs scaled like the crops"
            else fail "demo: per class '$per', test $ntest, crops $ncrops, norm $("$BIN/tsz" info work/demo/norm/fold1/test.tsz | grep norm=)"; fi
            touch noop.stamp; sleep 1
            D >demo2.out 2>&1
            changed=$(find results work -type f -newer noop.stamp | head -3)
            if [ -z "$changed" ] && grep -q 'ft-simclr' demo2.out; then pass "demo: second run recomputes nothing and prints the table"
            else fail "demo: second run changed: $changed"; fi
        fi
    else
        fail "demo pipeline: tool $miss not built"
    fi
else
    skip "demo: media packages not installed (Debian: $(sh "$P/demo-data.sh" --packages); make deps installs them)"
fi
finish
