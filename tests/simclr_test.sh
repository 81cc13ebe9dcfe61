#!/bin/sh
# simclr_test.sh: simclr-train from the command line.  The real pipe img2tensor | augment --views 2 |
# simclr-train on eight generated PNGs; the model file (attributes, head under head., finetune --init
# and embed --model accept it); the same bytes from a second run; k-NN monitor, log and curves;
# truncated, odd and broken pair streams (one line naming the record and the checkpoint kept); a NaN
# loss naming the step; --chunk; kill -9 then --resume, from a file and from augment --start, ending with the
# bytes of an uninterrupted run (fixed -j).  The numerics are in tests/simclr_test.c.
. "$EARSIGHT_ROOT/tests/lib.sh"

usage_fail() {
    what=$1; shift
    "$@" >/dev/null 2>uf.err; rc=$?
    if [ "$rc" -eq 2 ] && grep -q "try 'simclr-train --help'" uf.err; then pass "$what"
    else fail "$what: status $rc, stderr: $(head -c 300 uf.err)"; fi
}
# attr FILE KEY: the value of attribute KEY as `tsz info` prints it
attr() { tsz info --no-values "$1" 2>/dev/null | sed -n "s/^    $2=//p" | head -n 1; }

check "--help exits 0" simclr-train --help
if simclr-train --help | grep -q -- '--checkpoint-every'; then pass "--help lists the options"; else fail "--help lists the options"; fi
if simclr-train --version | grep -q '^simclr-train (earsight) '; then pass "--version"; else fail "--version"; fi
usage_fail "unknown option" simclr-train --bogus
usage_fail "bad --arch" simclr-train --arch vgg16 x.tsz
usage_fail "--proj-layers 4" simclr-train --proj-layers 4 x.tsz
usage_fail "--knn needs two streams" simclr-train x.tsz --knn
usage_fail "--resume with --no-checkpoint" simclr-train --resume --no-checkpoint -o m.tsz x.tsz
usage_fail "two inputs" simclr-train -o m.tsz a.tsz b.tsz

# Eight 24x24 RGB PNGs: a background colour, a rectangle and diagonal stripes each, drawn by a
# 20-line Python script (random.seed(5)) and stored here as base64.
mkdir -p png lab/c0 lab/c1
n=0
while read -r b64; do
    echo "$b64" | base64 -d >png/i$n.png
    if [ $n -lt 4 ]; then cp png/i$n.png lab/c0/; else cp png/i$n.png lab/c1/; fi
    n=$((n + 1))
done <<'EOF'
iVBORw0KGgoAAAANSUhEUgAAABgAAAAYCAIAAABvFaqvAAAAZElEQVR42mNo2s4HQZkVaRBEnggD2TrRRBgocQWyCANW0Xf1UrgQLrMYsIoSNAhTFwNWUTwG4fIjA1ZR/AaREGsEDSI21vCH0WisUTXWBl9eI0OEgfKSCF+skSHCMNJKyGERawDLivZfJU1WJgAAAABJRU5ErkJggg==
iVBORw0KGgoAAAANSUhEUgAAABgAAAAYCAIAAABvFaqvAAAAaklEQVR42mNgy7sAR9qe3XBEqjgDGXqwijOQZz+mOAPZfkETZ6AkXJDFGSgMYxSDqGIWA1XiHsUgGqaj/tjjuBBp6YgYg4hKR3gMIi0d4TeIhHRE0CBi0xExBhGVjvAH9kCko9HyaNiXRwCoOK9wO87gRgAAAABJRU5ErkJggg==
iVBORw0KGgoAAAANSUhEUgAAABgAAAAYCAIAAABvFaqvAAAAgUlEQVR42t2UUQqAIBBEh24Y1B0CwdN04PqQWNJdd1YhCPbLJyM6D7GkvB5Jzr0ix0lB7TYo2JM1isAtmhSxF6kpwq/7ohhpSlIMtv5QjBtU6p9iY6l/ptnbftYTMdsOIszuBnnNbgZFzNaCaLONIM5sO4gwuxvkNVtr7Tuz//hnXxtBTbRREed2AAAAAElFTkSuQmCC
iVBORw0KGgoAAAANSUhEUgAAABgAAAAYCAIAAABvFaqvAAAAWklEQVR42mPYcSUEgjZs14Ig8kQYqGIKkM1AFVNABlHFFIRBlIcUA1VMQQT2aKyRGWte7Yr4EbGxRqRBhGONGIOIijWCBhEba0QaRDjWiDFoiMbaaF4brCUkAJjBm2FA9hCNAAAAAElFTkSuQmCC
iVBORw0KGgoAAAANSUhEUgAAABgAAAAYCAIAAABvFaqvAAAAiklEQVR42u3TwQmAMAyF4X9SF3ECd/DiEE7iLp4VhBLatEmTqxDRw+OzxoRzv0sdi1Elea1bVbxXAGotvlsAqizKUwCSFlI1IdmHypqGelYEUi3kd/qh1qI3F4O+qhmcOTOD/53jDFPnH2SY7YVr1zIWsX9k7FrGIjM73V3LWORnWtm1jPXvmp15AN61mQ04gh8YAAAAAElFTkSuQmCC
iVBORw0KGgoAAAANSUhEUgAAABgAAAAYCAIAAABvFaqvAAAAhElEQVR42mO4tvsAMprZX4eMiJdloIopKAZRYgpQhIEqpkANotwUkEFUMQXdIEpiEGEQy3NxrIhIOxjgLDwGEeNSBjgLl0FE+heRjogxiKiUTdAgYlM2foNISNl4DCItZeOPfhJSNjEGEZWyCRpEbMqmsIRjoIopKCmbwhKOYbTMJigLAA3GK3wlkOOGAAAAAElFTkSuQmCC
iVBORw0KGgoAAAANSUhEUgAAABgAAAAYCAIAAABvFaqvAAAAcUlEQVR42mN4Y74HGfUGbEVGxMsyUMUUFIMoMQUowkAVU6AGUW4KyCCqmIJuECUxyEAVU0CxRhVToAZhVTdd6C5WhMsOBly2EWMQUSmboEHEpmz8BpGQsvEYRFrKxmUQySmbGINGesom1aUMo2U2QVkAoxfVKSriFj4AAAAASUVORK5CYII=
iVBORw0KGgoAAAANSUhEUgAAABgAAAAYCAIAAABvFaqvAAAAcUlEQVR42mPQn78IE9nOO4OJ8KtkoIopWAwizxR0g8g2BcUgSkxBGEShKUBxBqqYAjKIKqZgN4i8lMVAFVPQDaIklUMNmhOlgYZIjU18BpEUDwwQOUyDSI1NaIIkxiCicj9Bg4jN/fgNGs39o7mfgH0AbGxuhn4zt2cAAAAASUVORK5CYII=
EOF

# ---- the real pipe: 8 images x 3 epochs = 24 pairs, batch 4: 6 steps
T="--width 2 --stem small -b 4 -j 1 --proj-dim 8 --seed 3"
AUG="--policy simclr --views 2 --size 16 --seed 1 -j 1 --raw"
if img2tensor --u8 --no-labels png | augment $AUG --epochs 3 | simclr-train $T --log log.tsv --curves curves.png -o enc.tsz - 2>pipe.err
then pass "img2tensor | augment --views 2 | simclr-train"
else fail "img2tensor | augment --views 2 | simclr-train: $(head -c 300 pipe.err)"; fi
a="arch=$(attr enc.tsz arch) stem=$(attr enc.tsz stem) width=$(attr enc.tsz width) steps=$(attr enc.tsz steps) pairs_seen=$(attr enc.tsz pairs_seen) head_out=$(attr enc.tsz head_out)"
if [ "$a" = "arch=resnet18 stem=small width=2 steps=6 pairs_seen=24 head_out=8" ]; then pass "model attributes: $a"
else fail "model attributes: $a"; fi
if tsz info --no-values enc.tsz | grep -q '^ *augment --policy simclr' && tsz info --no-values enc.tsz | grep -q '^ *simclr-train .*-o enc.tsz -$'
then pass "history: augment's line and this command"; else fail "history: $(tsz info --no-values enc.tsz | head -n 12)"; fi
names=$(tsz info -l --no-values enc.tsz | grep -c -E ' (conv1\.weight|layer4\.1\.bn2\.running_var|head\.0\.weight|head\.3\.bias)$')
if [ "$names" -eq 4 ]; then pass "torchvision names, head under head."; else fail "tensor names: $names of 4 found"; fi

# ---- --init: the encoder starts from another model's backbone, whose architecture decides; with
# SGD at lr 0 and no weight decay the encoder's weights come out exactly as they went in
if img2tensor --u8 --no-labels png | augment $AUG --epochs 1 |
   simclr-train --init enc.tsz --arch resnet34 --width 4 --stem imagenet -b 4 -j 1 --proj-dim 8 \
       --optimizer sgd --lr 0 --wd 0 --no-checkpoint -o init.tsz - 2>init.err; then
    a="arch=$(attr init.tsz arch) stem=$(attr init.tsz stem) width=$(attr init.tsz width)"
    if [ "$a" = "arch=resnet18 stem=small width=2" ]; then pass "--init: the pre-trained model's architecture: $a"
    else fail "--init: architecture $a"; fi
    tsz npy --name conv1.weight -o w_enc.npy enc.tsz && tsz npy --name conv1.weight -o w_init.npy init.tsz &&
    tsz npy --name layer4.1.conv2.weight -o l_enc.npy enc.tsz && tsz npy --name layer4.1.conv2.weight -o l_init.npy init.tsz
    if cmp -s w_enc.npy w_init.npy && cmp -s l_enc.npy l_init.npy; then pass "--init: encoder weights loaded"
    else fail "--init: encoder weights differ from the init model's"; fi
else fail "--init from a TSZ model: $(head -c 300 init.err)"; fi
expect_fail "--init: a missing file" 1 "simclr-train: nosuch.pth" sh -c \
    "img2tensor --u8 --no-labels png | augment $AUG --epochs 1 | simclr-train --init nosuch.pth -b 4 -j 1 --no-checkpoint -o x.tsz -"
usage_fail "--strip-prefix without --init" simclr-train --strip-prefix=module. -o m.tsz x.tsz
rows=$(tail -n +2 log.tsv | wc -l)
if [ "$rows" -eq 3 ] && head -n 1 log.tsv | grep -q "contrastive_acc"; then pass "log: one row per epoch ($rows)"
else fail "log: $rows rows: $(head -c 300 log.tsv)"; fi
if [ -s curves.png ] && [ "$(head -c 4 curves.png | tail -c 3)" = "PNG" ]; then pass "--curves writes a PNG"; else fail "--curves"; fi
if [ ! -e enc.ckpt ]; then pass "checkpoint removed after success"; else fail "enc.ckpt left behind"; fi
cp enc.tsz enc.first
img2tensor --u8 --no-labels png | augment $AUG --epochs 3 | simclr-train $T --log log.tsv --curves curves.png -o enc.tsz - 2>/dev/null
if cmp -s enc.tsz enc.first; then pass "the same pipe twice: the same model bytes"; else fail "two runs differ"; fi
# --chunk: 8 views of a batch of 4 pairs is the whole batch (the same tensors; the history differs);
# 4 views at a time is the chunked step (its numerics are in simclr_test.c): another model, recorded in
# the attributes
img2tensor --u8 --no-labels png | augment $AUG --epochs 3 >pairs3.tsz
if simclr-train $T --chunk 8 -o enc8.tsz pairs3.tsz 2>c8.err && tsz npy -o enc8.npz enc8.tsz &&
   tsz npy -o enc1.npz enc.first && cmp -s enc8.npz enc1.npz
then pass "--chunk 8 with batch 4: the whole batch, the same tensors"; else fail "--chunk 8: $(head -c 300 c8.err)"; fi
if simclr-train $T --chunk 4 -o enc4.tsz pairs3.tsz 2>c4.err && [ "$(attr enc4.tsz chunk)" = 4 ] &&
   [ "$(attr enc.first chunk)" = 8 ] && tsz npy -o enc4.npz enc4.tsz && ! cmp -s enc4.npz enc1.npz
then pass "--chunk 4: trained, attribute chunk=4"; else fail "--chunk 4: $(head -c 300 c4.err) chunk=$(attr enc4.tsz chunk)"; fi
usage_fail "--chunk that does not divide 2 x batch" simclr-train $T --chunk 3 -o x.tsz pairs3.tsz
usage_fail "--chunk larger than 2 x batch" simclr-train $T --chunk 16 -o x.tsz pairs3.tsz

# ---- the output is an encoder for finetune and embed
img2tensor lab -o lab.tsz 2>/dev/null
if finetune --init enc.tsz --epochs 1 -b 4 -j 1 --no-checkpoint -o ft.tsz lab.tsz 2>ft.err; then pass "finetune --init enc.tsz"
else fail "finetune --init enc.tsz: $(head -c 300 ft.err)"; fi
if embed --model enc.tsz lab.tsz >feats.tsz 2>em.err && tsz info --no-values feats.tsz | grep -q 'f32 16 *8$'
then pass "embed --model enc.tsz: 8 features of 16"
else fail "embed --model enc.tsz: $(head -c 300 em.err) $(tsz info --no-values feats.tsz 2>&1 | grep -A2 shapes)"; fi

# ---- k-NN monitor: before training, and at the end (k-NN on a set of two classes)
img2tensor --u8 --no-labels png | augment $AUG --epochs 2 >pairs2.tsz
if simclr-train $T --knn lab.tsz lab.tsz --knn-every 1 --log knn.tsv -o knn.tsz pairs2.tsz 2>knn.err &&
   [ -n "$(attr knn.tsz knn_acc_init)" ] && [ -n "$(attr knn.tsz knn_acc)" ] &&
   [ "$(awk -F'\t' 'NR > 1 && $8 != "nan"' knn.tsv | wc -l)" -eq 3 ]
then pass "--knn: before training and after each epoch (init $(attr knn.tsz knn_acc_init), end $(attr knn.tsz knn_acc))"
else fail "--knn: $(head -c 300 knn.err) $(cat knn.tsv)"; fi
# --save-init: the model before the first step; embed --knn on it and on the trained model gives the
# monitor's first and last k-NN accuracy (two code paths: the monitor's and embed's)
tsz select --name '*i[0145].png' -o ref.tsz lab.tsz && tsz select --name '*i[0145].png' --invert -o qry.tsz lab.tsz
if simclr-train $T --knn ref.tsz qry.tsz --save-init init0.tsz -o knn2.tsz pairs2.tsz 2>knn2.err; then
    a0=$(embed -j 1 --model init0.tsz --knn ref.tsz qry.tsz | score --csv - | awk -F, '$3 == "accuracy" { print $4; exit }')
    a1=$(embed -j 1 --model knn2.tsz --knn ref.tsz qry.tsz | score --csv - | awk -F, '$3 == "accuracy" { print $4; exit }')
    m0=$(attr knn2.tsz knn_acc_init); m1=$(attr knn2.tsz knn_acc)
    if [ "$(attr init0.tsz steps)" = 0 ] && ! cmp -s init0.tsz knn2.tsz &&
       awk -v a="$a0" -v b="$m0" -v c="$a1" -v d="$m1" 'BEGIN { exit !(a != "" && c != "" && a - b < 1e-6 && b - a < 1e-6 && c - d < 1e-6 && d - c < 1e-6) }'
    then pass "--save-init: embed --knn gives the monitor's k-NN accuracy before ($a0) and after training ($a1)"
    else fail "--save-init: embed --knn $a0 / $a1, monitor $m0 / $m1, steps $(attr init0.tsz steps)"; fi
else fail "--save-init: $(head -c 300 knn2.err)"; fi
# --knn-loo: the leave-one-out monitor on one stream agrees with embed --knn-loo, before and after
if simclr-train $T --knn-loo lab.tsz --save-init init1.tsz -o knn3.tsz pairs2.tsz 2>knn3.err; then
    a0=$(embed -j 1 --model init1.tsz --knn-loo lab.tsz | score --csv - | awk -F, '$3 == "accuracy" { print $4; exit }')
    a1=$(embed -j 1 --model knn3.tsz --knn-loo lab.tsz | score --csv - | awk -F, '$3 == "accuracy" { print $4; exit }')
    m0=$(attr knn3.tsz knn_acc_init); m1=$(attr knn3.tsz knn_acc)
    # the same initial model with each example also voting for itself (--knn lab.tsz lab.tsz above)
    # must read otherwise, or neither path left anything out
    if awk -v a="$a0" -v b="$m0" -v c="$a1" -v d="$m1" 'BEGIN { exit !(a != "" && c != "" && a - b < 1e-6 && b - a < 1e-6 && c - d < 1e-6 && d - c < 1e-6) }' &&
       [ "$m0" != "$(attr knn.tsz knn_acc_init)" ]
    then pass "--knn-loo: embed --knn-loo gives the monitor's accuracy before ($a0) and after training ($a1); $(attr knn.tsz knn_acc_init) before with each example voting for itself"
    else fail "--knn-loo: embed --knn-loo $a0 / $a1, monitor $m0 / $m1"; fi
else fail "--knn-loo: $(head -c 300 knn3.err)"; fi
usage_fail "--knn with --knn-loo" simclr-train x.tsz --knn lab.tsz lab.tsz --knn-loo lab.tsz
expect_fail "--knn on an unlabelled stream" 1 "imgs.tsz: record 0" \
    sh -c 'img2tensor --u8 --no-labels png >imgs.tsz && simclr-train '"$T"' --knn imgs.tsz imgs.tsz -o x.tsz pairs2.tsz'

# ---- bad streams.  pairs.tsz: 4 epochs = 64 records, 16 pairs, 8 steps; written to stdout, as in a pipe
img2tensor --u8 --no-labels png | augment $AUG --epochs 4 >pairs.tsz
size=$(wc -c <pairs.tsz)
# the first 70 % of the bytes: about 44 complete records, 5 steps; a checkpoint at the end of every
# epoch (2 steps, the default)
head -c $((size * 7 / 10)) pairs.tsz >cut.tsz
expect_fail "truncated stream: the record and the checkpoint kept" 1 \
    "cut.tsz: record 4[0-9]: truncated.*the last checkpoint t.ckpt (step 4) is kept" \
    simclr-train $T -o t.tsz cut.tsz
if [ -e t.ckpt ] && [ ! -e t.tsz ]; then pass "truncated: checkpoint kept, no model written"; else fail "truncated: files $(ls t.*)"; fi
expect_fail "a truncated pipe" 1 "-: record 4[0-9]: truncated" sh -c "simclr-train $T -o t2.tsz - <cut.tsz"
tsz head -n 13 pairs.tsz -o odd.tsz 2>/dev/null
# (tsz head leaves the count undeclared: the plan comes from records_total, 64, and the stream ends early)
expect_fail "odd record count" 1 "odd.tsz: record 1[23]: the stream ends after .*middle of a pair" \
    simclr-train $T -o o.tsz odd.tsz
tsz select --range 5 --invert pairs.tsz -o broken.tsz 2>/dev/null
expect_fail "broken pair" 1 "broken.tsz: record 5: view .* does not pair with" simclr-train $T -o b.tsz broken.tsz
expect_fail "three views per image" 1 "3 views per image" \
    sh -c "img2tensor --u8 --no-labels png | augment --views 3 --raw | simclr-train $T -o v.tsz -"
expect_fail "a NaN loss names the step and the checkpoint" 1 \
    "step 2 of 8 (epoch 1): the loss is nan.*the last checkpoint n.ckpt (step 1) is kept" \
    simclr-train $T --optimizer sgd --lr 1e30 --checkpoint-every 1 -o n.tsz pairs.tsz
if [ -e n.ckpt ] && [ ! -e n.tsz ]; then pass "NaN: checkpoint kept, no model"; else fail "NaN: files $(ls n.*)"; fi

# ---- kill -9, then --resume: the same bytes as an uninterrupted run (-j 1 throughout)
R="$T --checkpoint-every 2 -v"
img2tensor --u8 --no-labels png | augment $AUG --epochs 4 | simclr-train $R -o r.tsz - 2>/dev/null && mv r.tsz ref.tsz
# the interrupted run: the producer sends 70 % of the stream and then nothing more
rm -f stop; mkfifo feed
simclr-train $R -o r.tsz - <feed 2>run.err &
pid=$!
{ head -c $((size * 7 / 10)) pairs.tsz; while [ ! -e stop ]; do sleep 0.1; done; } >feed &
i=0
while ! grep -q "checkpoint r.ckpt at step 4" run.err && kill -0 $pid 2>/dev/null && [ $i -lt 1200 ]; do
    sleep 0.1; i=$((i + 1))
done
kill -9 $pid 2>/dev/null
touch stop
wait
rec=$(sed -n 's/.*checkpoint r.ckpt at step 4 (run record \([0-9]*\)).*/\1/p' run.err)
if [ "$rec" = 32 ] && [ -e r.ckpt ] && [ ! -e r.tsz ]; then pass "killed with -9 after the checkpoint at step 4 (record 32)"
else fail "kill -9: record '$rec', $(ls r.* 2>&1), $(head -c 300 run.err)"; fi
cp r.ckpt saved.ckpt 2>/dev/null
if simclr-train $R --resume -o r.tsz pairs.tsz 2>res.err && cmp -s r.tsz ref.tsz; then pass "--resume from the file: the same bytes"
else fail "--resume from the file: $(head -c 300 res.err) $(cmp r.tsz ref.tsz 2>&1)"; fi
rm -f r.tsz; cp saved.ckpt r.ckpt
if img2tensor --u8 --no-labels png | augment $AUG --epochs 4 --start "$rec" |
   simclr-train $R --resume -o r.tsz - 2>res2.err && cmp -s r.tsz ref.tsz
then pass "--resume with augment --start $rec: the same bytes"
else fail "--resume with augment --start: $(head -c 300 res2.err) $(cmp r.tsz ref.tsz 2>&1)"; fi
rm -f r.tsz; cp saved.ckpt r.ckpt
expect_fail "--resume with a stream that starts too late" 1 "restart the producer with augment --start 32" \
    sh -c "img2tensor --u8 --no-labels png | augment $AUG --epochs 4 --start 40 | simclr-train $R --resume -o r.tsz -"
expect_fail "--resume with other options" 1 "made with other options (it has temperature=0.5, this run temperature=0.2)" \
    simclr-train $R --temperature 0.2 --resume -o r.tsz pairs.tsz
expect_fail "--resume with another --chunk" 1 "made with other options (it has chunk=8, this run chunk=4)" \
    simclr-train $R --chunk 4 --resume -o r.tsz pairs.tsz
finish
