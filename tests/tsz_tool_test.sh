#!/bin/sh
# tsz_tool_test.sh: the `tsz` tool end to end.  Input streams are written here byte by byte from tsz(5)
# (an independent writer of the format), then pushed through real pipes between tsz processes; .npy
# expectations are spelled out by hand; bad input must give one line and exit 1, misuse exit 2.
. "$EARSIGHT_ROOT/tests/lib.sh"

# ---- bytes: little-endian integers with printf octal escapes (no forks, works in any POSIX sh)
byte() { v=$(( $1 & 255 )); printf "\\$(( v >> 6 ))$(( (v >> 3) & 7 ))$(( v & 7 ))"; }
le16() { byte $1; byte $(( $1 >> 8 )); }
le32() { le16 $(( $1 & 65535 )); le16 $(( ($1 >> 16) & 65535 )); }
le64() { le32 $(( $1 & 4294967295 )); le32 $(( ($1 >> 32) & 4294967295 )); }

# ---- a raw TSZ stream, straight from tsz(5)
# hdr DECLARED ATTR_TEXT   (ATTR_TEXT: "key=value\n" lines, values already escaped)
hdr() { printf '\211TSZ\r\n\032\n'; le32 1; le32 0; le64 $1; le32 $(printf '%s' "$2" | wc -c); printf '%s' "$2"; }
# rec NAME DTYPE LABEL FOLD DATAFILE DIM...
rec() {
    name=$1 dt=$2 lab=$3 fo=$4 file=$5; shift 5
    printf TREC; byte $dt; byte $#; byte 0; byte 0; le32 $lab; le32 $fo
    le16 $(printf '%s' "$name" | wc -c); printf '%s' "$name"
    for d in "$@"; do le64 $d; done
    cat "$file"
}
tend() { printf TEND; le64 $1; }
# The records and end marker of a raw stream: everything after the header and its attributes.
body() { alen=$(od -An -tu4 -j24 -N4 "$1" | tr -d ' '); tail -c +$((29 + alen)) "$1"; }
# "index name label fold dtype shape" per record, from tsz info --list.
listing() { tsz info --list --no-values "$@" | awk '$4 == "label" { print $1, $NF, $5, $7, $2, $3 }'; }
names() { listing "$@" | awk '{ print $2 }'; }
usage_fail() { # WHAT COMMAND... : exit 2, a message line and the "try 'tsz ... --help'" line
    what=$1; shift
    "$@" >/dev/null 2>uf.err; rc=$?
    if [ $rc -eq 2 ] && [ "$(wc -l <uf.err)" -eq 2 ] && grep -q "^try 'tsz.*--help'$" uf.err; then pass "$what"
    else fail "$what: status $rc, stderr: $(head -c 300 uf.err)"; fi
}

: >nothing   # the data of records whose data is written separately (not /dev/null: see util_atomic_open)

# ---- the main test stream: 24 records of four dtypes, labels 0..2 and -1, folds 1..5
N=24
{
    hdr $N 'kind=test
classes=dog\nrain\nsea waves
history=made by hand
'
    i=0
    while [ $i -lt $N ]; do
        lab=$((i % 3)); [ $((i % 5)) -eq 4 ] && lab=-1
        name=clip-$i; [ $((i % 6)) -eq 0 ] && name=dog/$i.wav
        case $((i % 4)) in
        0) k=$((1 + i % 3)); head -c $((2 * 8 * k * 4)) /dev/urandom >d; rec $name 1 $lab $((1 + i % 5)) d 2 8 $k ;;
        1) head -c $((7 + i)) /dev/urandom >d; rec $name 2 $lab $((1 + i % 5)) d $((7 + i)) ;;
        2) head -c 24 /dev/urandom >d; rec $name 3 $lab $((1 + i % 5)) d 3 2 ;;
        3) head -c 40 /dev/urandom >d; rec $name 6 $lab $((1 + i % 5)) d 4 5 ;;
        esac
        i=$((i + 1))
    done
    tend $N
} >in.tsz
listing in.tsz >in.list
if [ "$(wc -l <in.list)" -eq $N ] && tsz info in.tsz >info.txt 2>&1; then pass "a stream written by hand from tsz(5) reads back ($N records)"
else fail "hand-written stream: $(head -c 300 info.txt)"; fi
names in.tsz >in.names

# The example stream printed in tsz(5), byte for byte.
printf '\211TSZ\r\n\032\n\001\000\000\000\000\000\000\000\001\000\000\000\000\000\000\000\024\000\000\000' >man5.tsz
printf 'kind=demo\nhistory=h\nTREC\001\000\000\000\001\000\000\000\002\000\000\000\001\000x\000\000\300?' >>man5.tsz
printf 'TEND\001\000\000\000\000\000\000\000' >>man5.tsz
tsz info man5.tsz >man5.txt 2>&1
if grep -q '^    kind=demo$' man5.txt && grep -q 'values: 1 finite, 0 non-finite; min 1.5 max 1.5' man5.txt &&
   [ "$(listing man5.tsz)" = "0 x 1 2 f32 scalar" ]; then pass "the example stream of tsz(5) reads as described"
else fail "tsz(5) example: $(head -c 300 man5.txt)"; fi

# ---- round trips through pipes between processes, compressed and raw
body in.tsz >in.body
tsz cat <in.tsz | tsz cat --level 19 --no-shuffle | tsz cat -j 2 - | tsz cat --raw >rt.tsz
body rt.tsz >rt.body
check "round trip raw -> zstd -> zstd level 19 unshuffled -> zstd 2 threads -> raw: records identical" cmp in.body rt.body
tsz cat in.tsz >z.tsz
tsz cat --raw in.tsz >r.tsz
zmagic=$(od -An -tx1 -N4 z.tsz | tr -d ' ')
rmagic=$(od -An -tx1 -N4 r.tsz | tr -d ' ')
if [ "$zmagic" = 28b52ffd ] && [ "$rmagic" = 8954535a ]; then pass "default output is a zstd frame, --raw output starts with the TSZ magic"
else fail "magic: compressed $zmagic, raw $rmagic"; fi
cat z.tsz | tsz cat --raw - >zr.tsz
body zr.tsz >zr.body
check "compressed file read through a pipe gives the same records" cmp in.body zr.body
if command -v zstd >/dev/null; then
    tsz cat --no-shuffle in.tsz | zstd -dc >plain.tsz
    if body plain.tsz | cmp -s - in.body && [ "$(od -An -tx1 -N4 plain.tsz | tr -d ' ')" = 8954535a ]; then
        pass "zstd -dc of an unshuffled compressed stream is the raw stream (one zstd frame around it)"
    else fail "zstd -dc of tsz output is not the raw stream"; fi
else skip "zstd command line tool not installed (Debian: zstd)"; fi
cat r.tsz z.tsz r.tsz >cat3.tsz
cat z.tsz r.tsz z.tsz >cat3z.tsz
if [ "$(names cat3.tsz | wc -l)" -eq $((3 * N)) ] && [ "$(names cat3z.tsz | wc -l)" -eq $((3 * N)) ]; then
    pass "byte-wise concatenations raw+zstd+raw and zstd+raw+zstd read as one stream of $((3 * N))"
else fail "concatenated streams: $(names cat3.tsz 2>&1 | wc -l) and $(names cat3z.tsz 2>&1 | wc -l) records"; fi

# Large records (300 kB: read straight into the caller's buffer) through pipes, cut and concatenated.
{ hdr 3 ''; for x in 0 1 2; do head -c 300000 /dev/urandom >big.d; rec big$x 1 $x 1 big.d 75000; done; tend 3; } >bigrec.tsz
body bigrec.tsz >bigrec.body
cat bigrec.tsz | tsz cat | tsz cat --no-shuffle | tsz cat --raw >bigrt.tsz
cat bigrec.tsz bigrt.tsz | tsz cat >bigz.tsz
cat bigz.tsz bigrec.tsz bigz.tsz | tsz cat --raw >big3.tsz
if body bigrt.tsz | cmp -s - bigrec.body && [ "$(names big3.tsz | wc -l)" -eq 15 ]; then
    pass "300 kB records round-trip through pipes; raw and zstd concatenations of them read as one"
else fail "large records: round trip or concatenation broken"; fi
bad=0
for cut in 100 70000 300050 450000 $(( $(wc -c <bigz.tsz) - 1 )); do
    head -c $cut bigz.tsz >cut.tsz
    tsz info cut.tsz >/dev/null 2>cut.err && bad=$((bad + 1))
    [ "$(wc -l <cut.err)" -eq 1 ] || bad=$((bad + 1))
done
for cut in 100 70000 300050 450000 $(( $(wc -c <big3.tsz) - 1 )); do
    head -c $cut big3.tsz >cut.tsz
    tsz info cut.tsz >/dev/null 2>cut.err && bad=$((bad + 1))
    grep -q 'cut.tsz: .*truncated' cut.err || bad=$((bad + 1))
done
if [ $bad -eq 0 ]; then pass "large-record streams cut at 10 places (raw and zstd) each give one error line"
else fail "large-record truncation: $bad cuts not reported properly"; fi

# ---- a reader sees each record while the writer is still running (flush per record in pipes)
rm -f gate early.tsz
mkfifo gate
{ hdr -1 ''; rec first 1 0 1 nothing 0; exec 3<gate; read -r _ <&3; tend 1; } 2>/dev/null | tsz cat | tsz head -n 1 >early.tsz &
seen=0; t=0
while [ $t -lt 100 ]; do
    if tsz info early.tsz >/dev/null 2>&1; then seen=1; break; fi
    sleep 0.1; t=$((t + 1))
done
echo go >gate; wait
if [ $seen -eq 1 ]; then pass "a record crosses two pipes and tsz head finishes while the writer still waits"
else fail "tsz head did not see the first record within 10 s while the writer was blocked"; fi
rm -f gate

# -o naming a FIFO (or a device such as /dev/null) writes into it; it must not be replaced by a file.
rm -f fifo; mkfifo fifo
cat fifo >fromfifo.tsz &
tsz cat -o fifo z.tsz; wait
if [ -p fifo ] && [ "$(names fromfifo.tsz | wc -l)" -eq $N ]; then pass "-o FIFO writes through the FIFO and leaves it a FIFO"
else fail "-o FIFO: $(ls -l fifo) $(names fromfifo.tsz 2>&1 | wc -l) records"; fi
rm -f fifo
# -o through a symbolic link: the target is replaced atomically, the link stays a link.
rm -f target.tsz link.tsz; echo old >target.tsz; ln -s target.tsz link.tsz
tsz cat -o link.tsz z.tsz
if [ -L link.tsz ] && [ "$(names target.tsz | wc -l)" -eq $N ]; then pass "-o through a symbolic link writes its target"
else fail "-o through a symlink: $(ls -l link.tsz target.tsz)"; fi
# cat reads pipes and FIFOs once (it reopens regular files for the records after merging headers).
rm -f fifo1 fifo2; mkfifo fifo1 fifo2
cat z.tsz >fifo1 & cat r.tsz >fifo2 &
tsz cat fifo1 r.tsz fifo2 >fifocat.tsz; wait
if [ "$(names fifocat.tsz | wc -l)" -eq $((3 * N)) ]; then pass "cat of two FIFOs and a file: all $((3 * N)) records"
else fail "cat with FIFO inputs: $(names fifocat.tsz 2>&1 | wc -l) records"; fi
rm -f fifo1 fifo2

# ---- select: fold splits partition the stream exactly
ok=1
for f in 1 2 3 4 5; do
    tsz select --fold $f z.tsz | tsz cat --raw >in$f.tsz
    tsz select --fold $f --invert <z.tsz >out$f.tsz
    listing in$f.tsz >in$f.list; listing out$f.tsz >out$f.list
    awk -v f=$f '$4 != f { bad = 1 } END { exit bad }' in$f.list || ok=0
    awk -v f=$f '$4 == f { bad = 1 } END { exit bad }' out$f.list || ok=0
    cat in$f.list out$f.list | awk '{ print $2 }' | sort >u.names
    sort in.names | cmp -s - u.names || ok=0
    [ "$(awk -v f=$f '$4 == f' in.list | wc -l)" -eq "$(wc -l <in$f.list)" ] || ok=0
done
[ "$(cat in1.list in2.list in3.list in4.list in5.list | awk '{ print $2 }' | sort | uniq -d | wc -l)" -eq 0 ] || ok=0
if [ $ok -eq 1 ]; then pass "select --fold F / --fold F --invert partition the stream exactly (names checked, F = 1..5)"
else fail "fold split is not an exact partition"; fi
tsz cat --raw in1.tsz in2.tsz in3.tsz in4.tsz in5.tsz >folds.tsz
if [ "$(body folds.tsz | wc -c)" -eq "$(wc -c <in.body)" ]; then pass "the five fold streams hold exactly the input's bytes"
else fail "fold streams: $(body folds.tsz | wc -c) bytes, input $(wc -c <in.body)"; fi
# The data survives selection: the fold-1 records equal those of the input, in input order.
awk '$4 == 1 { print $1 }' in.list >f1.idx
ok=1
for ix in $(cat f1.idx); do
    tsz npy --range "$ix" -o want.npy in.tsz && n=$(awk -v ix="$ix" '$1 == ix { print $2 }' in.list) &&
        tsz npy --name "$n" -o got.npy in1.tsz && cmp -s want.npy got.npy || ok=0
done
if [ $ok -eq 1 ]; then pass "selected records keep their data (fold 1, record by record)"; else fail "selected data differs"; fi

# ---- select: labels, names, ranges, AND, --invert
want=$(awk '$3 == 0 || $3 == 2' in.list | wc -l)
got=$(tsz select --label 0,2 z.tsz | listing - | awk '$3 != 0 && $3 != 2 { bad++ } END { print NR, bad + 0 }')
if [ "$got" = "$want 0" ]; then pass "select --label 0,2 keeps the $want records labelled 0 or 2"; else fail "select --label: got '$got', want '$want 0'"; fi
want=$(grep -c ' dog/' in.list)
got=$(tsz select --name 'dog/*' z.tsz | names - | grep -c '^dog/')
n=$(tsz select --name 'dog/*' z.tsz | names - | wc -l)
if [ "$got" -eq "$want" ] && [ "$n" -eq "$want" ]; then pass "select --name 'dog/*' keeps exactly the $want dog records"
else fail "select --name: $n records, $got dog, want $want"; fi
n=$(tsz select --name 'clip-1' --name 'clip-2?' z.tsz | names - | tr '\n' ' ')
if [ "$n" = "clip-1 clip-20 clip-21 clip-22 clip-23 " ]; then pass "repeated --name globs are alternatives"
else fail "select --name clip-1 --name 'clip-2?': '$n'"; fi
got=$(tsz select --range 3:7 z.tsz | listing - | awk '{ printf "%s ", $2 }')
want=$(awk '$1 >= 3 && $1 < 7 { printf "%s ", $2 }' in.list)
if [ "$got" = "$want" ]; then pass "select --range 3:7 keeps records 3..6"; else fail "select --range 3:7: '$got', want '$want'"; fi
a=$(tsz select --range :5 z.tsz | names - | wc -l); b=$(tsz select --range 20: z.tsz | names - | wc -l)
c=$(tsz select --range 5 z.tsz | names -); d=$(awk '$1 == 5 { print $2 }' in.list)
if [ "$a" -eq 5 ] && [ "$b" -eq $((N - 20)) ] && [ "$c" = "$d" ]; then pass "select --range :5, 20: and 5"
else fail "select ranges: :5 -> $a, 20: -> $b, 5 -> '$c' (want 5, $((N - 20)), '$d')"; fi
want=$(awk '$4 == 2 && $3 == 1' in.list | wc -l)
got=$(tsz select --fold 2 --label 1 z.tsz | names - | wc -l)
inv=$(tsz select --fold 2 --label 1 --invert z.tsz | names - | wc -l)
if [ "$got" -eq "$want" ] && [ "$inv" -eq $((N - want)) ]; then pass "select --fold 2 --label 1 is an AND ($want records), --invert the complement"
else fail "select AND: $got (want $want), inverted $inv"; fi

# ---- head
got=$(tsz head -n 5 <z.tsz | names - | tr '\n' ' '); want=$(head -n 5 in.names | tr '\n' ' ')
n0=$(tsz head -n 0 z.tsz | names - | wc -l); n10=$(tsz head z.tsz | names - | wc -l)
if [ "$got" = "$want" ] && [ "$n0" -eq 0 ] && [ "$n10" -eq 10 ]; then pass "head -n 5 / -n 0 / default 10"
else fail "head: '$got' (want '$want'), -n 0 gave $n0, default gave $n10"; fi

# ---- shuffle: deterministic, a permutation, companions stay attached
tsz shuffle --seed 7 z.tsz >s7a.tsz; tsz shuffle --seed 7 z.tsz >s7b.tsz; tsz shuffle --seed 8 z.tsz >s8.tsz
tsz shuffle --seed 7 --raw z.tsz >s7f.tsz; tsz cat z.tsz | tsz shuffle --seed 7 --raw >s7p.tsz
body s7f.tsz >s7f.body; body s7p.tsz >s7p.body
if cmp -s s7a.tsz s7b.tsz && cmp -s s7f.body s7p.body; then pass "shuffle --seed 7 is deterministic: same bytes twice, same records from a file or a pipe"
else fail "shuffle --seed 7 differs between runs"; fi
sort in.names >sorted.names
if ! names s7a.tsz | cmp -s - in.names && [ "$(names s7a.tsz | tr '\n' ' ')" != "$(names s8.tsz | tr '\n' ' ')" ] &&
   names s7a.tsz | sort | cmp -s - sorted.names; then
    pass "shuffle reorders (seed 7 differs from the input and from seed 8) and keeps every record"
else fail "shuffle order: $(names s7a.tsz | head -n 5 | tr '\n' ' ')"; fi
printf 'abcd' >soft.d
{
    hdr -1 'soft_labels=1
'
    for x in a b c d e f g h; do rec $x 2 0 1 soft.d 4; [ $x != c ] && rec "$x#soft" 2 0 1 soft.d 4; done
    tend 15
} >soft.tsz
tsz shuffle --seed 3 soft.tsz | names - >soft.names
ok=$(awk '/#soft$/ { if ($0 != prev "#soft") bad = 1 } { prev = $0 } END { print bad ? 0 : 1 }' soft.names)
if [ "$ok" -eq 1 ] && [ "$(wc -l <soft.names)" -eq 15 ] && [ "$(head -n 1 soft.names)" != a ]; then
    pass "shuffle keeps each NAME#soft record right after NAME"
else fail "shuffle split soft-label companions: $(tr '\n' ' ' <soft.names)"; fi
got=$(tsz select --range 1:3 soft.tsz | names - | tr '\n' ' ')
if [ "$got" = "b b#soft c " ]; then pass "select --range counts examples, a companion goes with its record"
else fail "select --range 1:3 on soft labels: '$got'"; fi

# ---- cat: attribute merging
printf '\223NUMPY\001\000v\000{'"'"'descr'"'"': '"'"'<f4'"'"', '"'"'fortran_order'"'"': False, '"'"'shape'"'"': (2, 3), }%58s\n' '' >f23.npy
printf '\000\000\200\077\000\000\000\100\000\000\100\100\000\000\200\100\000\000\240\100\000\000\300\100' >>f23.npy
tsz from-npy --attr kind=one --attr rate=1 --classes dog,rain --label 0 f23.npy >A.tsz
tsz from-npy --attr kind=two --attr extra=x --classes dog,rain --label 1 f23.npy | tsz select --label 1 >B.tsz
tsz from-npy --classes cat,dog f23.npy >C.tsz
tsz cat A.tsz B.tsz >AB.tsz
tsz info --json AB.tsz >AB.json
hist=$(grep '"history"' AB.json)
want='"history": "tsz from-npy --attr kind=one --attr rate=1 --classes dog,rain --label 0 f23.npy\ntsz from-npy --attr kind=two --attr extra=x --classes dog,rain --label 1 f23.npy\ntsz select --label 1\ntsz cat A.tsz B.tsz",'
if grep -q '"kind": "one"' AB.json && grep -q '"extra": "x"' AB.json && grep -q '"rate": "1"' AB.json &&
   [ "$hist" = "      $want" ]; then
    pass "cat: first stream's attributes win, new keys are added, history lines appended once, then cat's"
else fail "cat attribute merge: $(tr '\n' ' ' <AB.json | head -c 300) history: $hist"; fi
expect_fail "cat with conflicting classes exits 1 naming them" 1 "classes differs" tsz cat -o AC.tsz A.tsz C.tsz
if [ ! -e AC.tsz ] && ! ls AC.tsz.tmp* >/dev/null 2>&1; then pass "a failed cat leaves no output file"; else fail "failed cat left AC.tsz"; fi

# ---- history: every writing command appends its command line
tsz from-npy --name x f23.npy | tsz select --fold 0 | tsz head -n 3 | tsz shuffle --seed 1 | tsz cat --level 5 >H.tsz
h=$(tsz info --json H.tsz | grep '"history"')
case "$h" in
*'tsz from-npy --name x f23.npy\ntsz select --fold 0\ntsz head -n 3\ntsz shuffle --seed 1\ntsz cat --level 5"'*)
    pass "history records from-npy, select, head, shuffle and cat in order" ;;
*) fail "history: $h" ;;
esac

# ---- npy: export checked against hand-written .npy bytes
tsz from-npy --label 3 --fold 2 f23.npy >f23.tsz
tsz npy -o got23.npy f23.tsz
check "npy export of f32 (2, 3) equals the hand-written .npy (magic, v1.0, dict, padding to 64 bytes, newline)" cmp f23.npy got23.npy
printf '\223NUMPY\001\000v\000{'"'"'descr'"'"': '"'"'|u1'"'"', '"'"'fortran_order'"'"': False, '"'"'shape'"'"': (5,), }%60s\n' '' >u5.npy
printf '\001\002\003\375\377' >>u5.npy
printf '\223NUMPY\001\000v\000{'"'"'descr'"'"': '"'"'<f4'"'"', '"'"'fortran_order'"'"': False, '"'"'shape'"'"': (), }%62s\n' '' >s0.npy
printf '\000\000\300\077' >>s0.npy
tsz from-npy u5.npy s0.npy | tsz cat >us.tsz
tsz npy --name u5 -o gu5.npy us.tsz && tsz npy --name s0 --format npy -o - us.tsz >gs0.npy
if cmp -s u5.npy gu5.npy && cmp -s s0.npy gs0.npy; then pass "npy export of u8 (5,) and an f32 scalar () match by hand, also to stdout"
else fail "npy export of u8 (5,) / scalar differs"; fi
n=$(listing us.tsz | awk '{ printf "%s:%s:%s:%s:%s:%s ", $1, $2, $3, $4, $5, $6 }')
if [ "$n" = "0:u5:-1:0:u8:5 1:s0:-1:0:f32:scalar " ]; then pass "from-npy names records after their files, u8 and scalar shapes kept"
else fail "from-npy records: '$n'"; fi
# Fortran order and big-endian data are converted on import to the C-order little-endian array.
printf '\223NUMPY\001\000v\000{'"'"'descr'"'"': '"'"'>f4'"'"', '"'"'fortran_order'"'"': True, '"'"'shape'"'"': (2, 3), }%59s\n' '' >fbe.npy
printf '\077\200\000\000\100\200\000\000\100\000\000\000\100\240\000\000\100\100\000\000\100\300\000\000' >>fbe.npy
tsz from-npy fbe.npy | tsz npy -o gfbe.npy -
if tail -c 24 gfbe.npy | cmp -s - "$(tail -c 24 f23.npy >f23.data; echo f23.data)"; then
    pass "from-npy converts big-endian Fortran-order (2, 3) to the same C-order array"
else fail "Fortran/big-endian import: $(tail -c 24 gfbe.npy | od -An -tf4)"; fi
# Files written by numpy.save itself (../shared/reference) come back byte for byte.
if d=$(shared_dir) && [ -d "$d/reference/logmel" ]; then
    ok=1; n=0
    for f in "$d"/reference/logmel/*.npy "$d"/reference/resnet18_w16/labels.npy "$d"/reference/resnet18_w16/param.conv1.weight.npy; do
        [ -f "$f" ] || continue
        tsz from-npy "$f" | tsz npy -o np.npy - && cmp -s "$f" np.npy || { ok=0; echo "differs: $f"; }
        n=$((n + 1))
    done
    if [ $ok -eq 1 ] && [ $n -gt 0 ]; then pass "$n .npy files written by numpy round-trip byte for byte (from-npy, npy)"
    else fail "numpy-written .npy files do not round-trip"; fi
else skip "../shared/reference not present: numpy-written .npy files not checked"; fi
# From-npy round trip of every record of the main stream (f16 and i32 included).
tsz npy -o all.npz z.tsz
ok=1
if command -v unzip >/dev/null; then
    mkdir -p npz; (cd npz && unzip -qo ../all.npz) || ok=0
    members=$(unzip -Z1 all.npz | tr '\n' ' ')
    want=$(awk '{ printf "%s.npy ", $2 }' in.list)
    [ "$members" = "$want" ] || { ok=0; echo "members '$members' want '$want'"; }
    unzip -tq all.npz >/dev/null || ok=0
    if [ $ok -eq 1 ]; then pass ".npz export: a valid zip (unzip -t), one NAME.npy member per record, in order"
    else fail ".npz export: members or CRCs wrong"; fi
    ok=1
    for ix in 0 1 2 3 4 5 6 7; do
        nm=$(awk -v ix=$ix '$1 == ix { print $2 }' in.list)
        tsz npy --range $ix -o one.npy z.tsz
        cmp -s one.npy "npz/$nm.npy" || ok=0
        tsz from-npy --name "$nm" one.npy | tsz npy -o back.npy - && cmp -s one.npy back.npy || ok=0
        # TSZ -> .npy -> TSZ: the record's bytes are identical (label and fold given back by hand)
        set -- $(awk -v ix=$ix '$1 == ix { print $3, $4 }' in.list)
        tsz from-npy --name "$nm" --label $1 --fold $2 --raw one.npy >back.tsz
        tsz select --range $ix --raw z.tsz >orig.tsz
        body back.tsz >back.body; body orig.tsz >orig.body
        cmp -s back.body orig.body || ok=0
    done
    if [ $ok -eq 1 ]; then pass "npz members equal single-record .npy exports; npy -> from-npy -> npy and TSZ -> npy -> TSZ are exact (f32, u8, i32, f16)"
    else fail "npz member or npy round trip differs"; fi
else
    skip "unzip not installed (Debian: unzip): .npz contents not checked"
fi
# --stack: one array plus labels, folds, names and classes
tsz select --name 'clip-8' --name 'clip-20' z.tsz >st.tsz
if ! tsz npy --stack -o st.npz st.tsz 2>st.err; then fail "npy --stack: $(cat st.err)"
elif ! command -v unzip >/dev/null; then skip "unzip not installed (Debian: unzip): npy --stack .npz not checked"
else
    members=$(unzip -Z1 st.npz | tr '\n' ' ')
    lab=$(unzip -p st.npz labels.npy | tail -c 8 | od -An -td4 | tr -s ' ')
    dhead=$(unzip -p st.npz data.npy | head -c 128 | tr -d '\000')
    nm=$(unzip -p st.npz names.npy | tail -c 56 | tr -d '\000')
    want_lab=" $(awk '$2 == "clip-8" { printf "%s", $3 } $2 == "clip-20" { printf " %s", $3 }' in.list)"
    case "$dhead" in *"'shape': (2, 2, 8, 3), }"*) shape_ok=1 ;; *) shape_ok=0 ;; esac
    if [ "$members" = "data.npy labels.npy folds.npy names.npy classes.npy " ] && [ "$lab" = "$want_lab" ] &&
       [ $shape_ok -eq 1 ] && [ "$nm" = "clip-8clip-20" ]; then
        pass "npy --stack .npz: data (2, 2, 8, 3), labels, folds, names ('<U7') and classes"
    else fail "npy --stack: members '$members' labels '$lab' (want '$want_lab') names '$nm' header '$dhead'"; fi
fi
expect_fail "npy --stack of records with different shapes exits 1" 1 "cannot be stacked" tsz npy --stack -o bad.npy z.tsz
expect_fail "npy to .npy with several records selected exits 1" 1 "both selected" tsz npy -o bad.npy z.tsz
if command -v python3 >/dev/null && python3 -c 'import zipfile' 2>/dev/null; then
    if python3 - all.npz <<'EOF' >py.out 2>&1; then pass "python zipfile reads the .npz; every member is a .npy with a 64-byte aligned header"
import sys, zipfile, struct
z = zipfile.ZipFile(sys.argv[1])
assert z.testzip() is None
for n in z.namelist():
    b = z.read(n)
    assert b[:8] == b'\x93NUMPY\x01\x00', n
    hl = struct.unpack('<H', b[8:10])[0]
    assert (10 + hl) % 64 == 0 and b[9 + hl:10 + hl] == b'\n', n
EOF
    else fail "python zipfile: $(tail -n 3 py.out)"; fi
else skip "python3 not installed: .npz not checked with zipfile"; fi

# ---- info: label histogram with class names, value statistics, JSON
{
    hdr 3 'classes=dog\nrain
'
    printf '\000\000\200\077\000\000\000\100\000\000\100\100\000\000\200\100' >v1.d; rec a 1 0 1 v1.d 4
    printf '\000\000\240\100\000\000\300\100' >v2.d; rec b 1 1 2 v2.d 2
    printf '\000\000\300\177' >v3.d; rec c 1 1 2 v3.d 1
    tend 3
} >vals.tsz
tsz info vals.tsz >vals.txt
if grep -Eq '^ +0 dog +1$' vals.txt && grep -Eq '^ +1 rain +2$' vals.txt &&
   grep -q 'values: 6 finite, 1 non-finite; min 1 max 6 mean 3.5 std 1.70782513$' vals.txt &&
   grep -q 'records: 3 (declared 3)' vals.txt && grep -Eq '^ +f32 4 +1$' vals.txt; then
    pass "info: label histogram with class names, min/max/mean/std of 1..6 (NaN counted apart)"
else fail "info text: $(cat vals.txt)"; fi
tsz info --json vals.tsz in.tsz >vals.json
if grep -q '"class": "rain"' vals.json && grep -q '"mean": 3.5' vals.json && grep -q '"nonfinite": 1' vals.json &&
   grep -q '"std": 1.70782512765993' vals.json && [ "$(grep -c '"file"' vals.json)" -eq 2 ]; then
    pass "info --json: two files, classes, label counts and values"
else fail "info --json: $(head -c 400 vals.json)"; fi
if command -v jq >/dev/null; then
    if [ "$(jq -r '.[0].labels[1].count, .[1].records, .[0].values.max' vals.json | tr '\n' ' ')" = "2 $N 6 " ]; then
        pass "info --json is valid JSON (jq)"
    else fail "jq on info --json: $(jq -c '.[0].labels' vals.json 2>&1 | head -c 200)"; fi
else skip "jq not installed (Debian: jq): JSON not parsed"; fi

# ---- truncated and corrupt input: one line, exit 1, no output file
sz=$(wc -c <z.tsz)
head -c $((sz / 2)) z.tsz >trunc.tsz
head -c $((sz - 3)) z.tsz >trunc2.tsz
head -c 2000 r.tsz >truncr.tsz
cp z.tsz flip.tsz
printf '\125\125\125\125' | dd of=flip.tsz bs=1 seek=$((sz / 2)) conv=notrunc 2>/dev/null
printf 'hello world\n' >text.tsz
: >empty.tsz
expect_fail "info: compressed stream cut in half" 1 "trunc.tsz: .*truncated" tsz info trunc.tsz
expect_fail "info: compressed stream missing its last 3 bytes" 1 "trunc2.tsz: .*truncated" tsz info trunc2.tsz
expect_fail "info: raw stream cut inside a record" 1 "truncr.tsz: record [0-9]*.*truncated" tsz info truncr.tsz
expect_fail "info: corrupted zstd data" 1 "flip.tsz: record [0-9]*: corrupt zstd data" tsz info flip.tsz
expect_fail "info: not a TSZ stream" 1 "text.tsz: not a TSZ stream" tsz info text.tsz
expect_fail "info: empty input" 1 "empty" tsz info empty.tsz
expect_fail "info: missing file" 1 "nosuch.tsz: No such file" tsz info nosuch.tsz
for cmd in "cat" "select --fold 1" "shuffle" "head -n 100"; do
    rm -f out.tsz
    expect_fail "$cmd: truncated input exits 1" 1 "trunc.tsz: .*truncated" tsz $cmd -o out.tsz trunc.tsz
    [ -e out.tsz ] && fail "$cmd left an output file after an error"
done
expect_fail "npy: corrupt input" 1 "flip.tsz: record" tsz npy -o out.npz flip.tsz
[ -e out.npz ] && fail "npy left an output file after an error"
tsz cat truncr.tsz 2>/dev/null | cat >piped.tsz
expect_fail "a stream cut short by a failing writer is detected downstream" 1 "without an end marker" tsz info piped.tsz
head -c 100 f23.npy >t.npy
expect_fail "from-npy: truncated .npy" 1 "t.npy: truncated" tsz from-npy -o out.tsz t.npy
expect_fail "from-npy: not a .npy" 1 "text.tsz: not a .npy file" tsz from-npy text.tsz
sed 's/<f4/<c8/' f23.npy >c8.npy
expect_fail "from-npy: unsupported dtype" 1 "c8.npy: .npy dtype '<c8'" tsz from-npy c8.npy

# ---- usage errors: exit 2; --help and --version exit 0
usage_fail "no command" tsz
usage_fail "unknown command" tsz frobnicate
usage_fail "unknown option" tsz info --frob
usage_fail "select --fold with a bad list" tsz select --fold 1,x z.tsz
usage_fail "select --range malformed" tsz select --range 5:2 z.tsz
usage_fail "head -n negative" tsz head -n -1 z.tsz
usage_fail "cat --level out of range" tsz cat --level 99 z.tsz
usage_fail "select with two inputs" tsz select a.tsz b.tsz
usage_fail "npy without -o" tsz npy z.tsz
usage_fail "npy output of unknown format" tsz npy -o x.dat z.tsz
usage_fail "option missing its argument" tsz shuffle --seed
usage_fail "stdin twice" tsz cat - -
ok=1
for c in info cat select head shuffle npy from-npy; do
    tsz $c --help >help.out 2>&1 && grep -q "^Usage: tsz $c" help.out && grep -q 'Exit status' help.out || ok=0
done
tsz --help | grep -q '^  from-npy' || ok=0
tsz --version | grep -q '^tsz (earsight)' || ok=0
if [ $ok -eq 1 ]; then pass "--help of tsz and every command, --version: exit 0, usage on stdout"; else fail "--help/--version"; fi

# ---- a stream beyond 4 GiB, made on the fly and never stored: 68 records of 64 MiB of zeros (4.25 GiB)
big() { # big N_RECORDS BYTES_EACH: a raw u8 stream of zeros on stdout
    hdr $1 'kind=zeros
'
    i=0; while [ $i -lt $1 ]; do rec z$i 2 0 0 nothing $2; head -c $2 /dev/zero; i=$((i + 1)); done
    tend $1
}
t0=$(date +%s.%N)
big 4 67108864 | tsz cat --level 1 | tsz info --json - >small.json
t1=$(date +%s.%N)
est=$(echo "$t0 $t1" | awk '{ printf "%d", ($2 - $1) * 17 }')
if ! grep -q '"data_bytes": 268435456' small.json; then
    fail "256 MiB stream through pipes: $(head -c 300 small.json)"
elif [ "$est" -gt 30 ]; then
    skip "4.25 GiB stream: 256 MiB took $(echo "$t0 $t1" | awk '{ printf "%.1f", $2 - $1 }') s here, 4.25 GiB would take ~${est} s"
else
    big 68 67108864 | tsz cat --level 1 | tsz info --json - >big.json 2>big.err
    if grep -q '"records": 68,' big.json && grep -q '"data_bytes": 4563402752' big.json && grep -q '"max": 0' big.json &&
       grep -q '"count": 4563402752' big.json; then
        pass "a 4.25 GiB stream (u8 zeros) through two pipes: 68 records, 4563402752 bytes and values counted"
    else fail "4.25 GiB stream: $(cat big.err) $(grep -E 'records|data_bytes' big.json)"; fi
fi
finish
