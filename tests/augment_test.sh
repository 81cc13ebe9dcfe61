#!/bin/sh
# augment_test.sh: the command line — help, version, usage errors, bad input (one line, exit 1),
# views/epochs/start record counts and declared counts, stdin input, output independent of -j, mixup
# soft-label records, and the pipeline img2tensor | augment on Tiny-ImageNet images.
# The operations themselves are checked in tests/aug_test.c.
. "$EARSIGHT_ROOT/tests/lib.sh"

usage_fail() {
    what=$1; shift
    "$@" >/dev/null 2>uf.err </dev/null; rc=$?
    if [ "$rc" -eq 2 ] && grep -q "try 'augment --help'" uf.err; then pass "$what"
    else fail "$what: status $rc, stderr: $(head -c 200 uf.err)"; fi
}
body() { n=$(od -An -tu4 -j24 -N4 "$1" | tr -d ' '); tail -c +$((29 + n)) "$1"; }
# records FILE: "N (declared M)" as tsz info prints it
records() { tsz info --no-values "$1" 2>/dev/null | sed -n 's/^  records: //p'; }
have_tsz() { command -v tsz >/dev/null 2>&1; }
# expect_records WHAT FILE "N (declared N)"
expect_records() {
    if ! have_tsz; then fail "$1: the tsz tool is not built"; return; fi
    got=$(records "$2")
    if [ "$got" = "$3" ]; then pass "$1: $got"; else fail "$1: records '$got', want '$3'"; fi
}

check "--help exits 0" augment --help
if augment --help | grep -q -- '--mixup'; then pass "--help lists the options"; else fail "--help lists the options"; fi
if augment --version | grep -q '^augment (earsight) '; then pass "--version"; else fail "--version"; fi
usage_fail "unknown policy" augment --policy fancy in.tsz
usage_fail "image option without --policy simclr" augment --size 64 in.tsz
usage_fail "spectrogram option without --policy spec" augment --policy simclr --mixup 0.2 in.tsz
usage_fail "--blur-kernel must be odd" augment --policy simclr --blur-kernel 4 in.tsz
usage_fail "--views 0" augment --views 0 in.tsz
usage_fail "--u8 with normalisation" augment --policy simclr --u8 --mean imagenet --std imagenet in.tsz
usage_fail "two inputs" augment a.tsz b.tsz

# 12 small labelled images, 3 classes (a 6x4 PNG made by PIL)
for c in c1 c2 c3; do
    mkdir -p set/$c
    for i in 1 2 3 4; do
        echo 'iVBORw0KGgoAAAANSUhEUgAAAAYAAAAECAIAAAAiZtkUAAAAGElEQVR4nGNkYEjRYGBARiwMNgxogDghAGvEAe7axibyAAAAAElFTkSuQmCC' |
            base64 -d >set/$c/im$i.png
    done
done
img2tensor -o in.tsz set || fail "img2tensor set"
img2tensor --u8 -o in8.tsz set || fail "img2tensor --u8 set"
img2tensor --no-labels -o nolab.tsz set || fail "img2tensor --no-labels set"

check "simclr --views 2" augment --policy simclr --views 2 --size 8 -o v.tsz in.tsz
expect_records "simclr --views 2 on 12 images" v.tsz "24 (declared 24)"
check "simclr --epochs 5 --views 2 --u8 from u8 input" augment --policy simclr --views 2 --epochs 5 --size 8 --u8 -o e.tsz in8.tsz
expect_records "--epochs 5 --views 2" e.tsz "120 (declared 120)"
if have_tsz && tsz info --no-values e.tsz | grep -q 'u8 3x8x8 .* 120'; then pass "--u8 writes u8 3x8x8 records"
elif have_tsz; then fail "--u8: $(tsz info --no-values e.tsz | grep -A2 dtypes)"; fi
check "--start 7" augment --policy simclr --views 2 --epochs 5 --size 8 --u8 --start 7 -o s.tsz in8.tsz
expect_records "--start 7 of 120" s.tsz "113 (declared 113)"
cat in.tsz | augment --policy none --epochs 3 - >p.tsz 2>p.err || fail "stdin --epochs 3: $(cat p.err)"
expect_records "stdin, --policy none --epochs 3" p.tsz "36 (declared 36)"

augment --policy simclr --views 2 --epochs 2 --size 8 --raw -j 1 --seed 9 -o j1.tsz in.tsz &&
    augment --policy simclr --views 2 --epochs 2 --size 8 --raw -j 2 -b 3 --seed 9 -o j2.tsz in.tsz
if [ "$(body j1.tsz | md5sum)" = "$(body j2.tsz | md5sum)" ]; then pass "records identical with -j 1 and -j 2 -b 3"
else fail "records differ between -j 1 and -j 2"; fi
augment --policy simclr --views 2 --epochs 2 --size 8 --raw -j 2 --seed 10 -o j3.tsz in.tsz
if [ "$(body j1.tsz | md5sum)" != "$(body j3.tsz | md5sum)" ]; then pass "another --seed gives other views"
else fail "--seed 9 and --seed 10 gave the same views"; fi

# spectrogram policy on the same 3 x 4 x 6 tensors
expect_fail "--gain without a known log scale" 1 "give --gain-domain" augment --policy spec --gain 3 -o g.tsz in.tsz
check "--gain with --gain-domain db" augment --policy spec --gain 3 --gain-domain db -o g.tsz in.tsz
check "--mixup 0.2 --views 2" augment --policy spec --mixup 0.2 --views 2 --shift 2 --shift-mode fill -o m.tsz in.tsz
expect_records "--mixup: a soft-label record after each view" m.tsz "48 (declared 48)"
if have_tsz && tsz info --no-values m.tsz | grep -q 'soft_labels=1' && tsz info -l --no-values m.tsz | grep -q 'f32 3 .*im1.png#soft'; then
    pass "--mixup: soft_labels=1 and '<name>#soft' f32 (3) records"
elif have_tsz; then fail "--mixup: soft-label records missing"; fi
expect_fail "--mixup without classes" 1 "classes" augment --policy spec --mixup 0.2 -o m2.tsz nolab.tsz

# bad input
printf 'not a stream at all\n' >junk.tsz
expect_fail "not a TSZ stream: exit 1, one line" 1 "junk.tsz" augment --policy simclr --size 8 -o x.tsz junk.tsz
augment --policy none --raw -o raw.tsz in.tsz
head -c 3000 raw.tsz >cut.tsz
expect_fail "truncated stream: exit 1, one line" 1 "cut.tsz: .*record" augment --policy simclr --size 8 -o x.tsz cut.tsz
if [ ! -e x.tsz ]; then pass "failed runs leave no output file"; else fail "a failed run left x.tsz"; fi
expect_fail "truncated stream with --epochs (read first)" 1 "cut.tsz" augment --policy none --epochs 2 -o x.tsz cut.tsz

S=$(shared_dir)
if [ -n "$S" ] && [ -d "$S/data/tiny-imagenet-2k/jpeg" ]; then
    T=$S/data/tiny-imagenet-2k/jpeg
    img2tensor --resize 72 --crop 64 --no-labels "$T/n01443537" "$T/n01629819" |
        augment --policy simclr --views 2 --epochs 10 --size 64 >pairs.tsz 2>pairs.err
    if [ $? -eq 0 ] && [ -s pairs.tsz ]; then pass "img2tensor | augment --policy simclr --views 2 --epochs 10 --size 64"
    else fail "pipeline: $(cat pairs.err)"; fi
    expect_records "pipeline on 20 Tiny-ImageNet images" pairs.tsz "400 (declared 400)"
    if have_tsz && tsz info pairs.tsz | grep -q 'f32 3x64x64 .* 400'; then pass "pipeline: 400 f32 3x64x64 views"
    elif have_tsz; then fail "pipeline shapes: $(tsz info pairs.tsz | grep -A2 dtypes)"; fi
else
    skip "img2tensor | augment on Tiny-ImageNet: no shared data"
fi
finish
