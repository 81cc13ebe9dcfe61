#!/bin/sh
# score_test.sh: `score` on hand-computed folds (text, JSON, CSV, PNG), a file split by fold numbers,
# the paired comparison with a known McNemar table, and bad input (exit 1, one line naming the file
# and record) and bad usage (exit 2).
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
CLASSES=dog,rooster,rain
# clip NAME LABEL FOLD PRED [NCLASSES]: a record whose scores peak (10) at class PRED
clip() {
    nc=${5:-3}; set -- "$1" "$2" "$3" "$4"; vals=""
    k=0; while [ $k -lt "$nc" ]; do if [ $k -eq "$4" ]; then vals="$vals 10"; else vals="$vals $((k - 5))"; fi; k=$((k + 1)); done
    # shellcheck disable=SC2086
    npy_i1 "$1.npy" $vals
    tsz from-npy --label "$2" --fold "$3" --classes=$CLASSES -o "$1.tsz" "$1.npy"
}
# fold 1: truth 0 0 0 0 1 1 1 2 2 2, predictions 0 0 1 2 1 1 0 2 2 1 (metric_test's hand-computed case)
# method B (in b/, same clip names) is always right
mkdir -p b
set -- 0:0 0:0 0:1 0:2 1:1 1:1 1:0 2:2 2:2 2:1
i=0; for tp in "$@"; do
    i=$((i + 1)); clip "a1_$i" "${tp%:*}" 1 "${tp#*:}"; (cd b && clip "a1_$i" "${tp%:*}" 1 "${tp%:*}")
done
# fold 2: truth 0 1 2 2, predictions 0 1 2 0
set -- 0:0 1:1 2:2 2:0
i=0; for tp in "$@"; do
    i=$((i + 1)); clip "a2_$i" "${tp%:*}" 2 "${tp#*:}"; (cd b && clip "a2_$i" "${tp%:*}" 2 "${tp%:*}")
done
F1="a1_1.tsz a1_2.tsz a1_3.tsz a1_4.tsz a1_5.tsz a1_6.tsz a1_7.tsz a1_8.tsz a1_9.tsz a1_10.tsz"
F2="a2_1.tsz a2_2.tsz a2_3.tsz a2_4.tsz"
# shellcheck disable=SC2086
{ tsz cat -o f1.tsz $F1 && tsz cat -o f2.tsz $F2 && (cd b && tsz cat -o ../g1.tsz $F1 && tsz cat -o ../g2.tsz $F2); } ||
    { fail "cannot build the test streams"; finish; }

# ---- scores by hand: fold 1 accuracy 0.6, fold 2 0.75, mean 0.675, sample sd 0.106066;
# pooled confusion [3 1 1; 1 3 0; 1 1 3]: dog precision 3/5, rooster recall 3/4, rain F1 2/3
if score --csv f1.tsz f2.tsz >s.csv 2>s.err; then
    ok=1
    for row in "f1.tsz,,accuracy,0.6" "f2.tsz,,accuracy,0.75" "mean,,accuracy,0.675" "sd,,accuracy,0.106066" \
               "f1.tsz,,macro_f1,0.603175" "pooled,,clips,14" "pooled,dog,precision,0.6" "pooled,rooster,recall,0.75" \
               "pooled,rain,f1,0.666667" "pooled,dog,predicted:rooster,1" "pooled,rain,predicted:dog,1" \
               "pooled,rooster,predicted:rain,0" "f1.tsz,,top5,1"; do
        grep -qx -- "$row" s.csv || { ok=0; fail "csv row '$row' missing: $(head -c 300 s.csv)"; }
    done
    [ $ok = 1 ] && pass "CSV figures match the hand computation"
else fail "score --csv: $(cat s.err)"; fi

if score --json f1.tsz f2.tsz >s.json 2>s.err; then
    if grep -q '"n_folds": 2' s.json && grep -q '"n_clips": 14' s.json && grep -q '"accuracy": 0.675' s.json &&
       grep -q '"rain"' s.json && grep -q '"confusion"' s.json && ! grep -qi nan s.json; then
        pass "JSON report: folds, mean, classes, confusion, no NaN"
    else fail "JSON report: $(head -c 300 s.json)"; fi
else fail "score --json: $(cat s.err)"; fi

if score f1.tsz f2.tsz >s.txt 2>s.err; then
    if grep -q "accuracy over folds: 0.6750 +- 0.1061" s.txt && grep -q "rooster" s.txt &&
       grep -q "^  0 dog  *3 *1 *1$" s.txt; then pass "text report: mean +- sd, class names, confusion rows"
    else fail "text report: $(head -c 600 s.txt)"; fi
else fail "score (text): $(cat s.err)"; fi

# one file holding both folds (fold numbers 1 and 2) gives the same figures
tsz cat -o both.tsz f1.tsz f2.tsz
if score --csv both.tsz >b.csv 2>b.err && grep -qx "fold 1,,accuracy,0.6" b.csv && grep -qx "fold 2,,accuracy,0.75" b.csv &&
   grep -qx "mean,,accuracy,0.675" b.csv; then pass "a single file is split by its fold numbers"
else fail "split by fold: $(cat b.err) $(head -c 300 b.csv)"; fi

# -o writes the same report to a file; stdin works
score -o out.csv --csv f1.tsz f2.tsz && cmp -s out.csv s.csv && pass "-o FILE equals stdout" || fail "-o FILE differs"
if score --csv - <f1.tsz | grep -q "accuracy,0.6$"; then pass "reads stdin"; else fail "stdin"; fi

# picture
if score --png conf.png f1.tsz f2.tsz >/dev/null 2>p.err && [ "$(od -An -c -N4 conf.png | tr -d ' ')" = "211PNG" ]; then
    pass "--png writes a PNG"
else fail "--png: $(cat p.err)"; fi

# ---- comparison: B is always right; A is wrong on 5 of 14 clips, never right where B is wrong.
# McNemar b = 0, c = 5: exact p = 2 / 2^5 = 0.0625; difference 9/14 - 1 = -0.3571428571
if score --compare --json --bootstrap 2000 f1.tsz f2.tsz -- g1.tsz g2.tsz >c.json 2>c.err; then
    if grep -q '"paired_by": "name"' c.json && grep -q '"a_only_right": 0' c.json && grep -q '"b_only_right": 5' c.json &&
       grep -q '"mcnemar_exact_p": 0.0625' c.json && grep -q '"difference": -0.3571428571' c.json; then
        pass "paired comparison: McNemar table and difference as by hand"
    else fail "compare JSON: $(head -c 600 c.json)"; fi
else fail "score --compare: $(cat c.err)"; fi
score --compare f1.tsz f2.tsz -- g1.tsz g2.tsz >c.txt 2>c.err && grep -q "McNemar: exact p = 0.0625" c.txt &&
    pass "comparison as text" || fail "compare text: $(cat c.err) $(head -c 300 c.txt)"
# folds named by long paths keep their ends in the 24-character column (the part that tells them apart)
mkdir -p a-rather-long-directory-name && cp f1.tsz a-rather-long-directory-name/fold1-pretrained.tsz &&
    cp f2.tsz a-rather-long-directory-name/fold2-pretrained.tsz
score --compare a-rather-long-directory-name/fold1-pretrained.tsz a-rather-long-directory-name/fold2-pretrained.tsz \
    -- g1.tsz g2.tsz >cl.txt 2>c.err &&
    grep -q '^\.\.\./fold1-pretrained\.tsz ' cl.txt && grep -q '^\.\.\./fold2-pretrained\.tsz ' cl.txt &&
    pass "long fold names keep their ends" || fail "long fold names: $(cat c.err) $(sed -n 5,6p cl.txt)"
score --compare --seed 3 f1.tsz f2.tsz -- g1.tsz g2.tsz >c1.txt && score --compare --seed 3 f1.tsz f2.tsz -- g1.tsz g2.tsz >c2.txt &&
    cmp -s c1.txt c2.txt && pass "comparison repeatable with a seed" || fail "comparison not repeatable"
# a clip missing on one side
tsz select --range 0:9 -o g1short.tsz g1.tsz
expect_fail "compare: fewer clips in B" 1 "clips" score --compare f1.tsz -- g1short.tsz
cp a2_1.npy zz_other.npy
tsz from-npy --label 0 --fold 1 --classes=$CLASSES -o zz.tsz zz_other.npy
tsz cat -o g1odd.tsz g1short.tsz zz.tsz
expect_fail "compare: a clip without counterpart" 1 "no counterpart" score --compare f1.tsz -- g1odd.tsz

# ---- bad input
npy_i1 four.npy 1 2 3 4
tsz from-npy --label 0 --fold 1 -o four.tsz four.npy
tsz from-npy --label 0 --fold 1 -o four1.tsz a1_1.npy
tsz cat -o mixed.tsz four1.tsz four.tsz
expect_fail "records with another class count" 1 "record" score mixed.tsz
expect_fail "folds with different class counts" 1 "four.tsz" score f1.tsz four.tsz
npy_i1 nolab.npy 1 2 3
tsz from-npy --classes=$CLASSES -o nolab.tsz nolab.npy
expect_fail "unlabelled record" 1 "nolab.tsz: record 0: no label" score nolab.tsz
npy_i1 badlab.npy 1 2 3
tsz from-npy --label 7 --classes=$CLASSES -o badlab.tsz badlab.npy
expect_fail "label outside the classes" 1 "badlab.tsz: record 0: label 7" score badlab.tsz
tsz select --label 99 -o empty.tsz f1.tsz
expect_fail "empty input" 1 "empty.tsz: no records" score empty.tsz
head -c 150 f1.tsz >trunc.tsz
expect_fail "truncated input" 1 "trunc.tsz" score trunc.tsz
expect_fail "missing file" 1 "nope.tsz" score nope.tsz
[ ! -e bad.csv ] || rm -f bad.csv
score -o bad.csv trunc.tsz 2>/dev/null; [ ! -e bad.csv ] && pass "no report file after a failure" || fail "partial report left"
usage_fail "unknown option" "unknown option" score --bogus
usage_fail "--compare without --" "compare" score --compare f1.tsz
usage_fail "bad --bootstrap" "bootstrap" score --compare --bootstrap 0 f1.tsz -- g1.tsz
score --help | grep -q "^Usage: score" && pass "--help" || fail "--help"
score --version | grep -q "earsight" && pass "--version" || fail "--version"
finish
