#!/bin/sh
# weights tools: `tsz convert` (TSZ <-> safetensors <-> .pth, byte-identical round trips, the interop
# fixtures, --key/--strip-prefix/--arch/--non-strict), `tsz info` on model files, and evil.pth refused
# by embed and tsz convert without running its payload.
. "$EARSIGHT_ROOT/tests/lib.sh"
GEN="$EARSIGHT_BIN/../tests/train_test"
[ -x "$GEN" ] || { fail "weights tool: $GEN is missing (make builds it)"; finish; }

# every record's data, names and shapes (attributes and history excluded)
same_records() { tsz npy -o "$1.npz" "$1" && tsz npy -o "$2.npz" "$2" && cmp -s "$1.npz" "$2.npz"; }

# ---- round trips of a model finetune wrote
if "$GEN" gen train.tsz n=24 k=3 seed=1 && finetune --width 4 --batch 12 -j 1 --epochs 1 -o m.tsz train.tsz 2>ft.err; then
    if tsz convert m.tsz -o m.safetensors 2>cv.err && tsz convert m.safetensors -o m2.tsz 2>>cv.err; then
        same_records m.tsz m2.tsz && pass "convert: TSZ -> safetensors -> TSZ keeps every tensor byte-identical" ||
            fail "convert: TSZ -> safetensors -> TSZ changed tensors"
        tsz info --no-values m2.tsz >i.txt && grep -q 'arch=resnet18' i.txt && grep -q 'model=resnet' i.txt &&
            grep -q 'tsz convert m.safetensors -o m2.tsz' i.txt && pass "convert: TSZ output carries model attributes and history" ||
            fail "convert: TSZ attributes: $(head -c 300 i.txt)"
    else
        fail "convert: safetensors round trip: $(head -c 300 cv.err)"
    fi
    if tsz convert m.tsz -o m.pth 2>cv.err && tsz convert m.pth -o m3.tsz 2>>cv.err; then
        same_records m.tsz m3.tsz && pass "convert: TSZ -> .pth -> TSZ keeps every tensor byte-identical" ||
            fail "convert: TSZ -> .pth -> TSZ changed tensors"
    else
        fail "convert: .pth round trip: $(head -c 300 cv.err)"
    fi
    tsz info m.safetensors >i.txt 2>&1 && grep -q 'format: safetensors' i.txt &&
        grep -q 'architecture: resnet18 width 4 in_channels 1 num_classes 3' i.txt &&
        pass "info: a safetensors model: format and inferred architecture" || fail "info: $(head -c 300 i.txt)"
    # every mismatch is listed (one line each), then the error
    tsz convert --arch resnet50 m.tsz -o x.tsz 2>ar.err; rc=$?
    [ $rc = 1 ] && grep -q 'mis-shaped layer1.0.conv1.weight' ar.err && grep -q 'missing layer1.0.conv3.weight' ar.err &&
        tail -n 1 ar.err | grep -q '^tsz convert: m.tsz:' &&
        pass "convert: --arch contradicting the shapes lists every mismatch and fails" ||
        fail "convert: --arch resnet50: status $rc: $(tail -c 300 ar.err)"
    [ ! -e x.tsz ] && pass "convert: no output after an error" || fail "convert: x.tsz written after an error"
else
    fail "weights tool: a model to convert: $(head -c 300 ft.err)"
fi

usage_err() { # WHAT PATTERN COMMAND... : exit 2, the message naming PATTERN, then "try ..."
    what=$1; pat=$2; shift 2
    "$@" >/dev/null 2>ue.err; rc=$?
    [ $rc = 2 ] && head -n 1 ue.err | grep -q -- "$pat" && grep -q "try 'tsz convert --help'" ue.err &&
        pass "$what" || fail "$what: status $rc: $(head -c 300 ue.err)"
}
usage_err "convert: no input is a usage error" "no input" tsz convert -o x.tsz
usage_err "convert: unknown --arch is a usage error" "resnet7" tsz convert --arch resnet7 m.tsz -o x.tsz

# ---- the interop fixtures
SH=$(shared_dir)
I="$SH/reference/interop"
if [ -z "$SH" ] || [ ! -d "$I" ]; then
    skip "weights tool: interop fixtures: \$EARSIGHT_SHARED/reference/interop absent"
    finish
fi
ok=1
for f in resnet18_w16.safetensors resnet18_w16.pth resnet18_w16.legacy.pth; do
    tsz convert "$I/$f" -o "$f.tsz" 2>cv.err || { ok=0; fail "convert: $f: $(head -c 300 cv.err)"; }
done
[ $ok = 1 ] && same_records resnet18_w16.safetensors.tsz resnet18_w16.pth.tsz &&
    same_records resnet18_w16.safetensors.tsz resnet18_w16.legacy.pth.tsz &&
    pass "convert: safetensors, zip .pth and legacy .pth of one model give identical TSZ tensors" ||
    fail "convert: the three formats of resnet18_w16 differ"
for f in resnet18_w16.f16.safetensors resnet18_w16.bf16.safetensors; do
    check "convert: $f to TSZ" tsz convert "$I/$f" -o "$f.tsz"
done
C="$I/resnet50_w8.checkpoint.pth"
if tsz convert "$C" -o ck.safetensors 2>cv.err; then
    grep -q "^tsz convert: .*checkpoint.pth: dropped 1 tensor" cv.err && grep -q "^tsz convert: .*checkpoint.pth: weights under 'state_dict'" cv.err &&
        pass "convert: checkpoint unwrapped, head dropped, notes on stderr" || fail "convert: notes: $(head -c 300 cv.err)"
else
    fail "convert: checkpoint: $(head -c 300 cv.err)"
fi
check "convert: --key state_dict --strip-prefix module.encoder_q." \
    tsz convert --key state_dict --strip-prefix module.encoder_q. "$C" -o ck2.safetensors
tsz convert ck.safetensors -o ck.tsz 2>/dev/null && tsz convert ck2.safetensors -o ck2.tsz 2>/dev/null &&
    same_records ck.tsz ck2.tsz && pass "convert: explicit --key/--strip-prefix give the automatic result" ||
    fail "convert: explicit --key/--strip-prefix differ from automatic"
expect_fail "convert: --key naming no entry" 1 "nosuch" tsz convert --key nosuch "$C" -o x.tsz
expect_fail "convert: --strip-prefix matching nothing" 1 "checkpoint.pth" tsz convert --strip-prefix backbone. "$C" -o x.tsz
tsz info "$C" >i.txt 2>&1 && grep -q 'format: pth' i.txt &&
    grep -q 'architecture: resnet50 width 8 in_channels 3 num_classes 3' i.txt && grep -q 'tensors: 321' i.txt &&
    grep -q 'dtypes: f32+i64' i.txt && pass "info: checkpoint .pth: format, architecture, tensors, dtypes" ||
    fail "info: checkpoint: $(head -c 300 i.txt)"

# ---- the loader options of embed and finetune (--key, --strip-prefix, --non-strict)
"$GEN" gen tiny.tsz n=4 k=3 seed=3
if embed --logits -j 1 --model "$C" -o auto.tsz tiny.tsz 2>em.err &&
    embed --logits -j 1 --key state_dict --strip-prefix module.encoder_q. --model "$C" -o expl.tsz tiny.tsz 2>>em.err; then
    same_records auto.tsz expl.tsz && pass "embed: --key/--strip-prefix give the automatic result" ||
        fail "embed: --key/--strip-prefix logits differ"
    grep -q "^embed: .*checkpoint.pth: dropped 1 tensor" em.err && pass "embed: loader notes on stderr" ||
        fail "embed: notes: $(head -c 300 em.err)"
else
    fail "embed: checkpoint with --key/--strip-prefix: $(head -c 300 em.err)"
fi
embed --logits -j 1 --strip-prefix backbone. --model "$C" -o x.tsz tiny.tsz >/dev/null 2>em.err; rc=$?
[ $rc = 1 ] && tail -n 1 em.err | grep -q '^embed: .*checkpoint.pth' && [ ! -e x.tsz ] &&
    pass "embed: --strip-prefix matching nothing fails" || fail "embed: bad --strip-prefix: status $rc: $(head -c 300 em.err)"
if finetune --init "$C" --key state_dict --strip-prefix module.encoder_q. --epochs 1 --batch 4 -j 1 -o ft.tsz tiny.tsz 2>ft.err; then
    tsz info --no-values ft.tsz | grep -q 'arch=resnet50' && pass "finetune: --init checkpoint with --key/--strip-prefix" ||
        fail "finetune: --init model is not the checkpoint's resnet50"
else
    fail "finetune: --init with --key/--strip-prefix: $(head -c 300 ft.err)"
fi
finetune --key x --epochs 1 -o y.tsz tiny.tsz >/dev/null 2>ue.err; rc=$?
[ $rc = 2 ] && head -n 1 ue.err | grep -q -- "--init only" && pass "finetune: --key without --init is a usage error" ||
    fail "finetune: --key without --init: status $rc: $(head -c 300 ue.err)"

# ---- hostile: evil.pth calls os.system through GLOBAL+REDUCE
rm -f evil-ran.txt
expect_fail "embed: evil.pth refused naming posix.system" 1 "posix.system" embed --model "$I/evil.pth" -o ev.tsz tiny.tsz
expect_fail "convert: evil.pth refused naming posix.system" 1 "posix.system" tsz convert "$I/evil.pth" -o ev2.tsz
expect_fail "info: evil.pth refused naming posix.system" 1 "posix.system" tsz info "$I/evil.pth"
[ ! -e evil-ran.txt ] && [ ! -e ev.tsz ] && [ ! -e ev2.tsz ] &&
    pass "evil.pth: payload never ran, no output written" || fail "evil.pth: $(ls)"
finish
