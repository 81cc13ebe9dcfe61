#!/bin/sh
# tsne_test.sh: the `tsne` tool on three labelled clusters — names, labels and folds kept, attributes,
# a PNG, 3-D and every method, output independent of the thread count and repeatable with a seed —
# and bad input (exit 1, one line naming the file) and bad usage (exit 2).
. "$EARSIGHT_ROOT/tests/lib.sh"

# npy_i1 FILE V... : the integers V (-128..127) as a 1-D int8 NumPy .npy file
npy_i1() {
    f=$1; shift
    hdr="{'descr': '|i1', 'fortran_order': False, 'shape': ($#,), }"
    len=$(( ${#hdr} + 1 )); pad=$(( (64 - (10 + len) % 64) % 64 )); total=$((len + pad))
    {
        printf '\223NUMPY\001\000'
        printf "\\$((total % 256 / 64))$((total % 64 / 8))$((total % 8))\\$((total / 256 / 64))$((total / 256 % 64 / 8))$((total / 256 % 8))"
        printf '%s%*s\n' "$hdr" "$pad" ""
        fmt=""   # octal escapes by arithmetic alone: no process per value
        for v in "$@"; do b=$(( (v + 256) % 256 )); fmt="$fmt\\$((b / 64))$((b / 8 % 8))$((b % 8))"; done
        printf "$fmt"
    } >"$f"
}
# usage_fail WHAT PATTERN COMMAND... : exit 2, the message names PATTERN, then "try 'TOOL --help'"
usage_fail() {
    what=$1; pat=$2; shift 2
    "$@" >/dev/null 2>uf.err; rc=$?
    if [ "$rc" -eq 2 ] && [ "$(wc -l <uf.err)" -eq 2 ] && head -n 1 uf.err | grep -q -- "$pat" && grep -q "^try '" uf.err
    then pass "$what"; else fail "$what: status $rc, stderr: $(head -c 300 uf.err)"; fi
}

# three classes x 20 records of 16 values: class c around 60 * (c - 1) in every coordinate,
# deterministic noise in -10..10 from a linear congruential generator
seed=1; files=""
for c in 0 1 2; do
    r=0
    while [ $r -lt 20 ]; do
        vals=""; j=0
        while [ $j -lt 16 ]; do
            seed=$(( (seed * 1103515245 + 12345) % 2147483648 ))
            vals="$vals $(( 60 * (c - 1) + seed / 65536 % 21 - 10 ))"; j=$((j + 1))
        done
        n="c${c}_$r"
        # shellcheck disable=SC2086
        npy_i1 "$n.npy" $vals
        tsz from-npy --label $c --fold $((r % 4 + 1)) --classes=dog,rooster,rain -o "$n.tsz" "$n.npy" || fail "from-npy $n"
        files="$files $n.tsz"; r=$((r + 1))
    done
done
# shellcheck disable=SC2086
tsz cat -o feats.tsz $files || { fail "cannot build the test stream"; finish; }

list() { tsz info -l "$1" | awk '/record list:/ { on = 1; next } on && NF >= 8 { print $5, $7, $8 }'; }

if tsne -p 5 -n 300 -j 2 --png map.png -o map.tsz feats.tsz 2>t.err; then
    pass "tsne runs (60 points, perplexity 5, 300 steps)"
    list feats.tsz >in.list; list map.tsz >out.list
    if [ "$(wc -l <out.list)" -eq 60 ] && cmp -s in.list out.list; then pass "names, labels and folds kept in order"
    else fail "records differ: $(diff in.list out.list | head -5)"; fi
    info=$(tsz info map.tsz)
    if echo "$info" | grep -q "kind=tsne" && echo "$info" | grep -q "tsne.kl=" && echo "$info" | grep -q "f32 2 " &&
       echo "$info" | grep -q "rooster" && echo "$info" | grep -q "tsne -p 5 -n 300 -j 2"; then
        pass "attributes: kind, KL, classes and history; records f32 (2)"
    else fail "attributes: $info"; fi
    [ "$(od -An -c -N4 map.png | tr -d ' ')" = "211PNG" ] && pass "--png writes a PNG" || fail "no PNG"
else fail "tsne: $(cat t.err)"; fi

# same data, 1 thread: the coordinates are the same bytes
tsne -p 5 -n 300 -j 1 -o map1.tsz feats.tsz 2>/dev/null && tsz npy --stack -o a.npy map.tsz && tsz npy --stack -o b.npy map1.tsz &&
    cmp -s a.npy b.npy && pass "output independent of the thread count" || fail "1 and 2 threads differ"
tsne -p 5 -n 200 --init random --seed 7 feats.tsz >r1.tsz 2>/dev/null && tsne -p 5 -n 200 --init random --seed 7 feats.tsz >r2.tsz 2>/dev/null &&
    cmp -s r1.tsz r2.tsz && pass "random init: same seed, identical stream" || fail "random init not repeatable"
tsne -p 5 -n 200 --init random --seed 8 feats.tsz >r3.tsz 2>/dev/null && tsz npy --stack -o r1.npy r1.tsz && tsz npy --stack -o r3.npy r3.tsz &&
    ! cmp -s r1.npy r3.npy && pass "another seed, another map" || fail "seed ignored"
for m in exact bh fft; do
    tsne -p 5 -n 200 --method $m -o m_$m.tsz feats.tsz 2>m.err && tsz info m_$m.tsz | grep -q "tsne.method=$m" &&
        pass "--method $m" || fail "--method $m: $(cat m.err)"
done
tsne -p 5 -n 200 -d 3 -o map3.tsz feats.tsz 2>d.err && tsz info map3.tsz | grep -q "f32 3 " && pass "--dims 3" ||
    fail "--dims 3: $(cat d.err)"
tsne -p 5 -n 100 -v -o /dev/null feats.tsz 2>v.err && grep -q "KL" v.err && pass "-v reports the KL divergence" ||
    fail "-v: $(cat v.err)"
tsne -p 5 -n 100 - <feats.tsz >stdin.tsz 2>/dev/null && [ "$(list stdin.tsz | wc -l)" -eq 60 ] && pass "stdin to stdout" ||
    fail "stdin to stdout"

# ---- bad input
head -c 300 feats.tsz >trunc.tsz
expect_fail "truncated input" 1 "trunc.tsz" tsne -o out.tsz trunc.tsz
[ ! -e out.tsz ] && pass "no output file after a failure" || fail "partial output left"
expect_fail "perplexity too large" 1 "perplexity" tsne -p 30 -o out.tsz feats.tsz
npy_i1 short.npy 1 2 3
tsz from-npy -o short.tsz short.npy
tsz cat -o mixed.tsz c0_0.tsz short.tsz
expect_fail "records of different sizes" 1 "mixed.tsz: record 1" tsne -p 1 -o out.tsz mixed.tsz
tsz select --label 99 -o empty.tsz feats.tsz
expect_fail "empty input" 1 "empty.tsz: no records" tsne -o out.tsz empty.tsz
expect_fail "missing file" 1 "nope.tsz" tsne -o out.tsz nope.tsz
usage_fail "unknown option" "unknown option" tsne --bogus
usage_fail "--dims 4" "dims" tsne --dims 4 -o out.tsz feats.tsz
usage_fail "unknown method" "method" tsne --method magic -o out.tsz feats.tsz
usage_fail "two inputs" "extra" tsne -o out.tsz feats.tsz feats.tsz
tsne --help | grep -q "^Usage: tsne" && pass "--help" || fail "--help"
tsne --version | grep -q "earsight" && pass "--version" || fail "--version"
finish
