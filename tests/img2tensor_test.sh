#!/bin/sh
# img2tensor_test.sh: the command line — help, version, usage errors, unreadable and corrupt images
# (one line naming the file, exit 1, no output left behind), --skip-bad, output independent of -j, and
# the shared Tiny-ImageNet set end to end.  Pixel values are checked in tests/img_test.c.
. "$EARSIGHT_ROOT/tests/lib.sh"

# usage_fail WHAT COMMAND... : exit status 2 and the "try 'img2tensor --help'" line
usage_fail() {
    what=$1; shift
    "$@" >/dev/null 2>uf.err; rc=$?
    if [ "$rc" -eq 2 ] && grep -q "try 'img2tensor --help'" uf.err; then pass "$what"
    else fail "$what: status $rc, stderr: $(head -c 200 uf.err)"; fi
}
# body FILE: a raw stream without its header (28 bytes + attribute text), to compare records only
body() { n=$(od -An -tu4 -j24 -N4 "$1" | tr -d ' '); tail -c +$((29 + n)) "$1"; }
# count FILE: records in FILE as `tsz info` reports them (empty without the tsz tool)
count() { tsz info --no-values "$1" 2>/dev/null | sed -n 's/^  records: \([0-9]*\).*/\1/p'; }
have_tsz() { command -v tsz >/dev/null 2>&1; }

check "--help exits 0" img2tensor --help
if img2tensor --help | grep -q -- '--skip-bad'; then pass "--help lists the options"; else fail "--help lists the options"; fi
if img2tensor --version | grep -q '^img2tensor (earsight) '; then pass "--version"; else fail "--version: $(img2tensor --version)"; fi
usage_fail "no images is a usage error" img2tensor
usage_fail "unknown option" img2tensor --bogus x.png
usage_fail "--resize 0" img2tensor --resize 0 x.png
usage_fail "--u8 with --mean" img2tensor --u8 --normalize imagenet x.png
usage_fail "--mean without --std" img2tensor --mean 0.5 x.png
usage_fail "--classes with --no-labels" img2tensor --classes c.txt --no-labels x.png

# a 6x4 RGB PNG made by PIL, and junk
mkdir -p set/good set/bad
echo 'iVBORw0KGgoAAAANSUhEUgAAAAYAAAAECAIAAAAiZtkUAAAAGElEQVR4nGNkYEjRYGBARiwMNgxogDghAGvEAe7axibyAAAAAElFTkSuQmCC' |
    base64 -d >set/good/a.png
cp set/good/a.png set/good/b.png
printf 'this is not a picture\n' >set/bad/junk.png
head -c 40 set/good/a.png >set/bad/cut.png

check "a valid PNG converts" img2tensor -o one.tsz set/good/a.png
expect_fail "missing file: exit 1, one line" 1 "nothere.png: No such file" img2tensor -o x.tsz nothere.png
expect_fail "junk named .png: exit 1, one line naming it" 1 "set/bad/junk.png: not a PNG or JPEG file" \
    img2tensor -o x.tsz set/good/a.png set/bad/junk.png
if [ ! -e x.tsz ] && [ -z "$(ls x.tsz.tmp* 2>/dev/null)" ]; then pass "a failed run leaves no output or temporary file"
else fail "a failed run left $(ls x.tsz*)"; fi
expect_fail "truncated PNG: exit 1, one line" 1 "set/bad/cut.png: bad PNG" img2tensor -o x.tsz set/bad/cut.png
mkdir -p set/nothing
echo 'no pictures here' >set/nothing/readme.txt
expect_fail "a directory without images: exit 1" 1 "set/nothing: no PNG or JPEG files found" img2tensor -o x.tsz set/nothing

# --classes: labels in the file's order (first TAB field, blank lines skipped), not the sorted order
mkdir -p cls/ant cls/bee cls/cat
cp set/good/a.png cls/ant/1.png; cp set/good/a.png cls/bee/2.png; cp set/good/a.png cls/cat/3.png
printf 'cat\tfelis\n\nant\tformica\nbee\n' >c.tsv
if have_tsz && img2tensor --classes c.tsv -o cls.tsz cls 2>cls.err; then
    labels=$(tsz info -l --no-values cls.tsz | awk '$4 == "label" {printf "%s ", $5}')
    order=$(tsz info cls.tsz | awk '/classes=/ {on = 1; sub(/.*=/, "")} /history=/ {on = 0} on {printf "%s ", $1}')
    [ "$labels" = "1 2 0 " ] && [ "$order" = "cat ant bee " ] &&
        pass "--classes: labels follow the file (ant 1, bee 2, cat 0), classes attribute in that order" ||
        fail "--classes: labels '$labels', $(tsz info cls.tsz | grep -A3 classes= | head -c 200)"
else
    fail "--classes: $(head -c 300 cls.err)"
fi
printf 'ant\nbee\n' >c2.tsv
expect_fail "--classes: a class missing from the file" 1 "cls/cat/3.png: class 'cat' is not in c2.tsv" \
    img2tensor --classes c2.tsv -o x.tsz cls
printf 'ant\nbee\ncat\nbee\tagain\n' >c3.tsv
expect_fail "--classes: a name listed twice" 1 "c3.tsv: class 'bee' is listed twice (as labels 1 and 3)" \
    img2tensor --classes c3.tsv -o x.tsz cls
printf '\n\n' >c4.tsv
expect_fail "--classes: no names" 1 "c4.tsv: no class names" img2tensor --classes c4.tsv -o x.tsz cls

img2tensor --skip-bad -o skip.tsz set 2>skip.err; rc=$?
if [ $rc -eq 0 ] && grep -q "skipped 2 unreadable images of 4" skip.err; then pass "--skip-bad: exit 0, count reported"
else fail "--skip-bad: status $rc, $(cat skip.err)"; fi
if have_tsz; then
    n=$(count skip.tsz)
    if [ "$n" = 2 ]; then pass "--skip-bad keeps the 2 good images"; else fail "--skip-bad kept '$n' records"; fi
else
    fail "--skip-bad record count: the tsz tool is not built"
fi

S=$(shared_dir)
if [ -n "$S" ] && [ -d "$S/data/tiny-imagenet-2k/jpeg" ]; then
    T=$S/data/tiny-imagenet-2k
    img2tensor --raw -j 1 -o j1.tsz "$T/png" && img2tensor --raw -j 2 -o j2.tsz "$T/png"
    if [ "$(body j1.tsz | md5sum)" = "$(body j2.tsz | md5sum)" ]; then
        pass "tiny-imagenet png: records identical with -j 1 and -j 2"
    else fail "tiny-imagenet png: records differ between -j 1 and -j 2"; fi
    check "tiny-imagenet jpeg converts" img2tensor -o jp.tsz "$T/jpeg"
    head -c 300 "$(ls "$T"/jpeg/n01443537/*.jpg | head -n 1)" >cut.jpg
    expect_fail "truncated JPEG: exit 1, one line" 1 "cut.jpg: bad JPEG" img2tensor --no-labels -o x.tsz cut.jpg
    if have_tsz; then
        tsz info --no-values jp.tsz >info.txt
        if grep -q '^  records: 2000 (declared 2000)' info.txt && grep -q '^  labels: 200' info.txt &&
            grep -q 'f32 3x64x64' info.txt; then pass "tiny-imagenet jpeg: 2000 f32 3x64x64 records, 200 labels"
        else fail "tiny-imagenet jpeg: $(head -c 600 info.txt)"; fi
        img2tensor --u8 --resize 72 --crop 64 --no-labels -o u8.tsz "$T/jpeg/n01443537"
        tsz info --no-values u8.tsz >info.txt
        if grep -q '^  records: 10 (declared 10)' info.txt && grep -q 'u8 3x64x64' info.txt && grep -q ' -1 ' info.txt; then
            pass "--u8 --resize 72 --crop 64 --no-labels: 10 unlabelled u8 3x64x64 records"
        else fail "--u8 --resize 72 --crop 64: $(head -c 600 info.txt)"; fi
    else
        fail "tiny-imagenet record counts: the tsz tool is not built"
    fi
else
    skip "tiny-imagenet-2k end to end: no shared data"
fi
finish
