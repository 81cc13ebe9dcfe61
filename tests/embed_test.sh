#!/bin/sh
# embed: one record per input with the same name, label and fold; features, --logits, --probs, --layer;
# eval mode (a record's output does not depend on its batch); repeatable; pipes; encoders without a
# classifier (as simclr-train writes them); bad input and usage errors.
. "$EARSIGHT_ROOT/tests/lib.sh"
GEN="$EARSIGHT_BIN/../tests/train_test"
[ -x "$GEN" ] || { fail "embed: $GEN is missing (make builds it)"; finish; }

"$GEN" gen train.tsz n=48 k=3 seed=1 && "$GEN" gen val.tsz n=30 k=3 seed=2 &&
    finetune --width 4 --batch 16 -j 1 --epochs 2 --lr 1e-2 -o m.tsz train.tsz ||
    { fail "embed: a model to embed with"; finish; }

ids() { tsz info -l --no-values "$1" | awk '$1 ~ /^[0-9]+$/ && $4 == "label" {print $1, $5, $7, $8}'; }
dims() { tsz info -l --no-values "$1" | awk '$1 ~ /^[0-9]+$/ && $4 == "label" {print $2, $3}' | sort -u; }

# ---- features (default): pooled penultimate features, 8 x width for resnet18
if embed -j 1 --model m.tsz -o feat.tsz val.tsz 2>run.err; then
    [ "$(ids feat.tsz)" = "$(ids val.tsz)" ] && pass "embed: one record per input, same names, labels and folds" ||
        fail "embed: records do not match the input's"
    [ "$(dims feat.tsz)" = "f32 32" ] && pass "embed: features are f32 of 32 values (8 x width 4)" ||
        fail "embed: feature records are $(dims feat.tsz)"
    tsz info feat.tsz >info.txt
    grep -q 'kind=features' info.txt && grep -q 'layer=avgpool' info.txt && grep -q 'class2' info.txt &&
        pass "embed: attributes copied, kind=features, layer=avgpool" || fail "embed: attributes: $(head -c 300 info.txt)"
    grep -q 'finetune --width 4' info.txt && grep -q 'embed -j 1 --model m.tsz -o feat.tsz val.tsz' info.txt &&
        pass "embed: history holds the model's training and this command" || fail "embed: history"
else
    fail "embed: features: $(head -c 300 run.err)"
fi

# ---- logits and probabilities
embed -j 1 --model m.tsz --logits -o logits.tsz val.tsz && [ "$(dims logits.tsz)" = "f32 3" ] &&
    tsz info logits.tsz | grep -q 'kind=logits' && pass "embed --logits: 3 values per record, kind=logits" ||
    fail "embed --logits"
embed -j 1 --model m.tsz --probs -o probs.tsz val.tsz && tsz info probs.tsz >p.txt &&
    grep -q 'kind=probs' p.txt && awk '/values:/ {for (i = 1; i <= NF; i++) {if ($i == "min") lo = $(i+1); if ($i == "mean") mu = $(i+1)}}
        END {exit !(lo >= 0 && mu > 0.3333 && mu < 0.3334)}' p.txt &&
    pass "embed --probs: non-negative, mean 1/3 over 3 classes (rows sum to 1)" || fail "embed --probs: $(grep values p.txt)"
embed -j 1 --model m.tsz --layer layer2 -o l2.tsz val.tsz && [ "$(dims l2.tsz)" = "f32 8" ] &&
    tsz info l2.tsz | grep -q 'layer=layer2' && pass "embed --layer layer2: 8 channels (2 x width)" ||
    fail "embed --layer layer2: $(dims l2.tsz)"
embed -j 1 --model m.tsz --layer layer1.1 -o l11.tsz val.tsz && [ "$(dims l11.tsz)" = "f32 4" ] &&
    pass "embed --layer layer1.1: one block's output" || fail "embed --layer layer1.1"

# ---- eval mode and batching: one record alone gives what it gives inside a batch; repeatable bytes
tsz select --range 4:5 -o one.tsz val.tsz && embed -j 1 --model m.tsz -o one-f.tsz one.tsz &&
    tsz select --range 4:5 -o four-f.tsz feat.tsz && out=$("$GEN" cmp one-f.tsz four-f.tsz 1e-5 1e-4) &&
    pass "embed: eval mode, a record alone matches it in a batch ($out)" || fail "embed: batch dependence: $out"
embed -j 1 -b 7 --model m.tsz -o feat7.tsz val.tsz && out=$("$GEN" cmp feat7.tsz feat.tsz 1e-5 1e-4) &&
    pass "embed -b 7: same features as -b 64 ($out)" || fail "embed -b 7: $out"
mkdir -p r1 r2
(cd r1 && embed -j 2 --model ../m.tsz -o f.tsz ../val.tsz) && (cd r2 && embed -j 2 --model ../m.tsz -o f.tsz ../val.tsz) &&
    cmp -s r1/f.tsz r2/f.tsz && pass "embed: repeated run (-j 2) writes the same bytes" || fail "embed: not repeatable"

# ---- pipes, u8 input, soft-label companions dropped
cat val.tsz | embed -j 1 --model m.tsz >pipe.tsz && out=$("$GEN" cmp pipe.tsz feat.tsz 0) &&
    pass "embed: stdin to stdout gives the same records ($out)" || fail "embed: pipe output differs: $out"
"$GEN" gen val8.tsz n=30 k=3 seed=2 u8=1 && "$GEN" gen valq.tsz n=30 k=3 seed=2 quant=1
embed -j 1 --model m.tsz -o feat8.tsz val8.tsz && embed -j 1 --model m.tsz -o featq.tsz valq.tsz &&
    out=$("$GEN" cmp feat8.tsz featq.tsz 0) && pass "embed: u8 input read as x / 255 ($out)" || fail "embed: u8 input: $out"
"$GEN" gen soft.tsz n=12 k=3 seed=2 soft=1
embed -j 1 --model m.tsz -o fsoft.tsz soft.tsz && [ "$(ids fsoft.tsz | wc -l)" -eq 12 ] &&
    ! tsz info fsoft.tsz | grep -q soft_labels && pass "embed: #soft companions dropped" || fail "embed: soft companions"

# ---- an encoder without classifier (head under head.), RGB: features work, a grey input is replicated
"$GEN" genmodel enc.tsz width=4 in=3 head=2 stem=small
embed -j 1 --model enc.tsz -o encf.tsz val.tsz && [ "$(dims encf.tsz)" = "f32 32" ] &&
    pass "embed: SimCLR-style encoder, grey input on an RGB model" || fail "embed: encoder features"
expect_fail "embed --logits: a model without classifier" 1 "no classifier" embed --model enc.tsz --logits val.tsz
expect_fail "embed --layer maxpool: the small stem has none" 1 "unknown layer 'maxpool'" \
    embed --model enc.tsz --layer maxpool val.tsz

# ---- --knn: weighted k-NN class scores against a labelled reference, checked against awk's own
# k-NN on embed's features (normalise, cosine, top k, votes exp(s / t) shared out)
npy_values() {   # the f32 values of a stacked .npy, one per line (data after the 10 + HEADER_LEN bytes)
    hl=$(od -A n -t u2 -j 8 -N 2 "$1" | tr -d ' ')
    od -A n -v -t f4 -j $((10 + hl)) "$1" | tr -s ' ' '\n' | sed '/^$/d'
}
if embed -j 1 --model m.tsz -o ftrain.tsz train.tsz && tsz npy --stack -o ftrain.npy ftrain.tsz &&
   tsz npy --stack -o fval.npy feat.tsz &&
   embed -j 1 --model m.tsz --knn train.tsz --knn-k 7 --knn-t 0.1 -o knn.tsz val.tsz 2>run.err &&
   tsz npy --stack -o knn.npy knn.tsz; then
    { ids train.tsz | awk '{print "L", $2}'; npy_values ftrain.npy | awk '{print "T", $1}'
      npy_values fval.npy | awk '{print "V", $1}'; npy_values knn.npy | awk '{print "K", $1}'; } >knn.txt
    out=$(awk -v D=32 -v C=3 -v K=7 -v T=0.1 '
        $1 == "L" { lab[nl++] = $2 } $1 == "T" { tr[nt++] = $2 } $1 == "V" { va[nv++] = $2 } $1 == "K" { kn[nk++] = $2 }
        function norm(a, n, base,   j, s) { s = 0; for (j = 0; j < D; j++) s += a[base + j] ^ 2; return sqrt(s) }
        END {
            nref = nt / D; nq = nv / D; worst = 0; agree = 0
            for (q = 0; q < nq; q++) {
                nq_ = norm(va, nq, q * D)
                for (r = 0; r < nref; r++) {
                    s = 0; for (j = 0; j < D; j++) s += va[q * D + j] * tr[r * D + j]
                    sim[r] = s / (nq_ * norm(tr, nref, r * D)); used[r] = 0
                }
                for (c = 0; c < C; c++) v[c] = 0
                for (i = 0; i < K; i++) {   # the K best, lowest index first among equals
                    b = -1; for (r = 0; r < nref; r++) if (!used[r] && (b < 0 || sim[r] > sim[b])) b = r
                    used[b] = 1; best[i] = b
                }
                tot = 0; for (i = 0; i < K; i++) { w = exp((sim[best[i]] - sim[best[0]]) / T); v[lab[best[i]]] += w; tot += w }
                for (c = 0; c < C; c++) { d = v[c] / tot - kn[q * C + c]; if (d < 0) d = -d; if (d > worst) worst = d }
            }
            printf "%d queries, %d references, max |score difference| %.2g\n", nq, nref, worst
            exit !(nq == 30 && nref == 48 && nk == 90 && worst < 1e-5)
        }' knn.txt) && pass "embed --knn: k-NN scores of 30 records against 48 match awk's weighted k-NN ($out)" ||
        fail "embed --knn: scores differ from the awk reference: $out"
    tsz info knn.tsz >k.txt
    [ "$(dims knn.tsz)" = "f32 3" ] && grep -q 'kind=knn' k.txt && grep -q 'knn_k=7' k.txt && grep -q 'class2' k.txt &&
        [ "$(ids knn.tsz)" = "$(ids val.tsz)" ] &&
        pass "embed --knn: one 3-class score record per input, same names and labels; kind=knn, classes kept" ||
        fail "embed --knn: records or attributes: $(head -c 300 k.txt)"
    # the reference itself as the input with k 1: every record finds itself
    embed -j 1 --model m.tsz --knn train.tsz --knn-k 1 -o self.tsz train.tsz &&
        acc=$(score --csv self.tsz | awk -F, '$3 == "accuracy" { print $4; exit }') &&
        awk -v a="$acc" 'BEGIN { exit !(a == 1) }' && pass "embed --knn --knn-k 1 on its own reference: accuracy $acc" ||
        fail "embed --knn on its own reference: accuracy '$acc'"
    # leave-one-out: record i against the others is record i against a reference without it (batches
    # of 16: records 17 and 47 are in the second and third)
    if embed -j 1 -b 16 --model m.tsz --knn-loo --knn-k 7 --knn-t 0.1 -o loo.tsz train.tsz 2>run.err; then
        bad=
        for i in 0 17 47; do
            { tsz select --range $i --invert -o rest.tsz train.tsz && tsz select --range $i -o one.tsz train.tsz &&
              embed -j 1 --model m.tsz --knn rest.tsz --knn-k 7 --knn-t 0.1 -o want.tsz one.tsz &&
              tsz select --range $i -o got.tsz loo.tsz && "$GEN" cmp got.tsz want.tsz 1e-5 1e-4 >/dev/null; } ||
                bad="$bad $i"
        done
        [ -z "$bad" ] && pass "embed --knn-loo: records 0, 17, 47 scored as against a reference without them" ||
            fail "embed --knn-loo: records$bad differ from a reference without them"
        acc=$(score --csv loo.tsz | awk -F, '$3 == "accuracy" { print $4; exit }')
        tsz info loo.tsz | grep -q 'knn_loo=1' && [ "$(ids loo.tsz)" = "$(ids train.tsz)" ] &&
            awk -v a="$acc" 'BEGIN { exit !(a < 1) }' &&
            pass "embed --knn-loo: every record, knn_loo=1, accuracy $acc (no record finds itself)" ||
            fail "embed --knn-loo: records, attributes or accuracy '$acc'"
        embed -j 1 -b 16 --model m.tsz --knn train.tsz --knn-loo --knn-k 7 --knn-t 0.1 -o loo2.tsz train.tsz &&
            tsz npy -o a.npz loo.tsz && tsz npy -o b.npz loo2.tsz && cmp -s a.npz b.npz &&
            pass "embed --knn-loo: --knn INPUT is the same" || fail "embed --knn INPUT --knn-loo differs"
        expect_fail "embed --knn-loo: a reference that is not the input" 1 "train.tsz: record 0 (.*) is not record 0 of the k-NN reference" \
            embed --model m.tsz --knn val.tsz --knn-loo -o x.tsz train.tsz
    else
        fail "embed --knn-loo: $(head -c 300 run.err)"
    fi
else
    fail "embed --knn: $(head -c 300 run.err)"
fi
tsz npy --range 0 -o one.npy val.tsz && tsz from-npy -o unlab.tsz one.npy &&
    expect_fail "embed --knn: an unlabelled reference" 1 "unlab.tsz: record 0 ('one') has no label" \
        embed --model m.tsz --knn unlab.tsz -o x.tsz val.tsz

# ---- bad input: one line, exit 1, no output file
"$GEN" gen rgb.tsz n=4 k=2 c=3
expect_fail "embed: 3-channel input to a 1-channel model" 1 "rgb.tsz: record 0: 3 channels" \
    embed --model m.tsz -o x.tsz rgb.tsz
expect_fail "embed: missing model" 1 "nosuch.tsz" embed --model nosuch.tsz val.tsz
expect_fail "embed: a data stream as model" 1 "val.tsz" embed --model val.tsz val.tsz
head -c 2000 val.tsz >trunc.tsz
expect_fail "embed: truncated input" 1 "trunc.tsz" embed --model m.tsz -o x.tsz trunc.tsz
expect_fail "embed: unknown layer" 1 "unknown layer 'layer9'" embed --model m.tsz --layer layer9 -o x.tsz val.tsz
expect_fail "embed --knn: a reference the model cannot take" 1 "rgb.tsz: record 0: 3 channels" \
    embed --model m.tsz --knn rgb.tsz -o x.tsz val.tsz
[ ! -e x.tsz ] && pass "embed: no output after failures" || fail "embed: x.tsz left by a failing run"

# ---- usage errors: exit 2 with "try 'embed --help'"
expect_usage() {
    what=$1; pat=$2; shift 2
    "$@" >/dev/null 2>eu.err; rc=$?
    if [ "$rc" -eq 2 ] && [ "$(wc -l <eu.err)" -eq 2 ] && head -n 1 eu.err | grep -q -- "$pat" &&
       tail -n 1 eu.err | grep -q "try 'embed --help'"; then pass "$what"
    else fail "$what: status $rc, stderr: $(head -c 300 eu.err)"; fi
}
expect_usage "embed: no --model" "no model" embed val.tsz
expect_usage "embed: --logits with --probs" "exclude" embed --model m.tsz --logits --probs val.tsz
expect_usage "embed: bad --batch" "--batch" embed --model m.tsz -b 0 val.tsz
expect_usage "embed: --knn with --logits" "--knn works on features" embed --model m.tsz --knn train.tsz --logits val.tsz
expect_usage "embed: --knn-k 0" "--knn-k" embed --model m.tsz --knn train.tsz --knn-k 0 val.tsz
expect_usage "embed: --knn-loo on stdin" "--knn-loo reads INPUT twice" embed --model m.tsz --knn-loo - <val.tsz
embed --help | grep -q -- '--logits' && pass "embed --help" || fail "embed --help"
finish
