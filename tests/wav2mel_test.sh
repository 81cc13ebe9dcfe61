#!/bin/sh
# wav2mel tool tests: every container the sox program writes, lists, dataset layouts and presets,
# bad / empty / missing files with and without --skip-bad, determinism across thread counts,
# interrupted runs, PNG output and usage errors.  Audio is generated here with sox.
. "$EARSIGHT_ROOT/tests/lib.sh"

if ! command -v sox >/dev/null 2>&1; then
    skip "wav2mel: the sox program is not installed (needed to make test audio)"
    finish
fi

# shapes FILE: the "dtype shape count" lines of tsz info; records FILE: the record count
shapes() { tsz info "$1" | sed -n '/dtypes and shapes/,/labels:\|folds:\|values:/p' | grep -E '^ +(f32|u8) ' | sed 's/^ *//;s/  */ /g'; }
records() { tsz info --no-values "$1" | sed -n 's/^ *records: \([0-9]*\).*/\1/p'; }

# ---- test audio ----
sox -n -r 44100 -c 1 -b 16 tone.wav synth 1 sine 1000 vol 0.5 2>/dev/null
sox -n -r 22050 -c 2 -b 16 st.wav synth 1.5 sine 300 sine 3000 vol 0.5 2>/dev/null
sox -n -r 16000 -c 1 -b 16 short.wav synth 0.3 pinknoise vol 0.3 2>/dev/null
check "sox made the test audio" test -s tone.wav -a -s st.wav -a -s short.wav

# ---- containers: lossless ones give identical records, lossy ones decode ----
printf 'clip.wav\t3\t2\tclip\n' >list.txt
cp st.wav clip.wav
wav2mel --list list.txt >ref.tsz 2>err.txt
check "wav2mel reads a list (path, label, fold, name)" test -s ref.tsz
tsz info -l ref.tsz >info.txt 2>&1
if grep -Eq 'label +3 +fold +2 +clip$' info.txt; then pass "list label, fold and name reach the record"
else fail "list label/fold/name: $(head -c 300 info.txt)"; fi
for fmt in flac aiff au ogg mp3; do
    if ! sox st.wav "clip.$fmt" 2>/dev/null; then skip "container $fmt: sox cannot write it here"; continue; fi
    printf 'clip.%s\t3\t2\tclip\n' "$fmt" >list.txt
    # same list file name and command line: the streams may differ only in the samples
    if ! wav2mel --list list.txt >"c.$fmt.tsz" 2>err.txt; then fail "container $fmt: $(head -c 300 err.txt)"; continue; fi
    case $fmt in
    flac|aiff|au)
        if cmp -s ref.tsz "c.$fmt.tsz"; then pass "container $fmt: byte-identical to the WAV's stream"
        else fail "container $fmt: stream differs from the WAV's"; fi ;;
    ogg)
        if [ "$(shapes c.ogg.tsz)" = "$(shapes ref.tsz)" ]; then pass "container ogg decodes to the same length ($(shapes c.ogg.tsz))"
        else fail "container ogg: $(shapes c.ogg.tsz), WAV $(shapes ref.tsz)"; fi ;;
    mp3)
        # MP3 frames pad the end: only the decode and the mel count are checked
        if shapes c.mp3.tsz | grep -q '^f32 1x128x[0-9]* 1$'; then pass "container mp3 decodes ($(shapes c.mp3.tsz))"
        else fail "container mp3: $(shapes c.mp3.tsz)"; fi ;;
    esac
done
cat tone.wav | wav2mel - >stdin.tsz 2>err.txt
check "audio from stdin ('-')" test "$(records stdin.tsz)" = 1

# ---- shapes follow the options; explicit options override a preset ----
wav2mel --preset librosa --rate 16000 --n-fft 512 tone.wav >a.tsz 2>err.txt
# 1 s at 16 kHz, hop 512/4 = 128, centred: 1 + 16000/128 = 126 frames
check "librosa preset at 16 kHz, n_fft 512: 1x128x126" test "$(shapes a.tsz)" = "f32 1x128x126 1"
wav2mel --preset esc50 --mels 64 --width 100 tone.wav short.wav >b.tsz 2>err.txt
check "esc50 preset with --mels 64 --width 100: 3x64x100" test "$(shapes b.tsz)" = "f32 3x64x100 2"
wav2mel --preset librosa --rate 8000 --duration 2 --fit loop --hop 400 short.wav >c.tsz 2>err.txt
check "--duration 2 --fit loop: 1 + 16000/400 = 41 frames" test "$(shapes c.tsz)" = "f32 1x128x41 1"
wav2mel --rate 8000 --channels 20:10,40:20 --width 30 --log ln --mel-scale htk --mel-norm none --mels 40 \
    --center zero --fmin 50 --fmax 3500 --power 1 --eps 1e-5 st.wav >d.tsz 2>err.txt
check "custom channels 20:10,40:20 with width 30: 2x40x30" test "$(shapes d.tsz)" = "f32 2x40x30 1"
tsz info d.tsz >dinfo.txt
if grep -q 'channels=160:80,320:160' dinfo.txt && grep -q 'channels_ms=20:10,40:20' dinfo.txt &&
   grep -q 'mel_scale=htk' dinfo.txt && grep -q 'center=zero' dinfo.txt && grep -q 'fmax=3500' dinfo.txt &&
   grep -q 'eps=1e-05' dinfo.txt && grep -q 'power=1' dinfo.txt && grep -q 'history=wav2mel' dinfo.txt &&
   grep -q 'resample=sox rate -h' dinfo.txt; then pass "every parameter is recorded in the attributes"
else fail "attributes: $(head -c 600 dinfo.txt)"; fi

# ---- a synthetic ESC-50 tree: labels, folds, classes; mixed rates, lengths, channels ----
mkdir -p esc/meta esc/audio
printf 'filename,fold,target,category,esc10,src_file,take\n' >esc/meta/esc50.csv
i=0
for spec in "1-1-A-2 2 crow 44100 1 5" "1-2-A-0 0 dog 22050 2 3" "2-3-A-1 1 rooster 48000 1 6" \
            "3-4-A-0 0 dog 44100 2 5" "4-5-B-2 2 crow 8000 1 2"; do
    set -- $spec
    sox -n -r "$4" -c "$5" -b 16 "esc/audio/$1.wav" synth "$6" sine $((200 + i * 300)) vol 0.4 2>/dev/null
    echo "$1.wav,$(echo "$1" | cut -d- -f1),$2,$3,False,x,A" >>esc/meta/esc50.csv
    i=$((i + 1))
done
wav2mel --preset esc50 --esc50 esc -o esc.tsz 2>err.txt
check "--preset esc50 --esc50 DIR builds the labelled stream" test -s esc.tsz
check "esc50 preset: 5 records of exactly 3x128x250" test "$(shapes esc.tsz)" = "f32 3x128x250 5"
tsz info -l esc.tsz >einfo.txt
if grep -q 'classes=dog' einfo.txt && grep -A2 'classes=dog' einfo.txt | grep -q rooster &&
   grep -A2 'classes=dog' einfo.txt | grep -q crow && grep -q 'dataset=esc50' einfo.txt &&
   grep -q 'duration=5' einfo.txt && grep -q 'rate=44100' einfo.txt; then pass "esc50: classes in label order (dog, rooster, crow), dataset and duration recorded"
else fail "esc50 attributes: $(head -c 600 einfo.txt)"; fi
if grep -Eq 'label +0 +fold +1 +1-2-A-0$' einfo.txt && grep -Eq 'label +2 +fold +4 +4-5-B-2$' einfo.txt
then pass "esc50: each clip's id (file name without .wav), target and fold from the csv"
else fail "esc50 names: $(grep -- '-A-\|-B-' einfo.txt | head -5)"; fi
check "esc50: fold 3 holds one clip, label 0 (dog) two" test "$(tsz select --fold 3 esc.tsz | records -)" = 1 -a "$(tsz select --label 0 esc.tsz | records -)" = 2

# UrbanSound8K layout
mkdir -p us/metadata us/audio/fold1 us/audio/fold2
printf 'slice_file_name,fsID,start,end,salience,fold,classID,class\n' >us/metadata/UrbanSound8K.csv
sox -n -r 44100 -c 2 -b 16 us/audio/fold1/100-1-0-0.wav synth 2.5 sine 500 vol 0.3 2>/dev/null
sox -n -r 48000 -c 1 -b 24 us/audio/fold2/200-0-0-1.wav synth 4.5 sine 900 vol 0.3 2>/dev/null
echo '100-1-0-0.wav,100,0,2.5,1,1,1,car_horn' >>us/metadata/UrbanSound8K.csv
echo '200-0-0-1.wav,200,0,4.5,1,2,0,air_conditioner' >>us/metadata/UrbanSound8K.csv
wav2mel --preset us8k --urbansound8k us -o us.tsz 2>err.txt
check "us8k preset on an UrbanSound8K tree: 2 records of 3x128x250" test "$(shapes us.tsz)" = "f32 3x128x250 2"
tsz info us.tsz | grep -A1 'classes=air_conditioner' | grep -q car_horn &&
    tsz info us.tsz | grep -q 'rate=22050' && tsz info us.tsz | grep -q 'duration=4' &&
    pass "us8k: classes by classID, 22050 Hz, 4 s" || fail "us8k attributes: $(tsz info us.tsz | head -c 400)"

# GTZAN layout: genres sorted, files sorted, fold = index within genre % 10 + 1
mkdir -p gt/genres/rock gt/genres/blues
for g in rock blues; do for k in 0 1; do
    sox -n -r 22050 -c 1 -b 16 "gt/genres/$g/$g.0000$k.wav" synth 1 sine $((300 + k * 100)) vol 0.3 2>/dev/null
done; done
sox gt/genres/rock/rock.00001.wav gt/genres/rock/rock.00001.au 2>/dev/null && rm gt/genres/rock/rock.00001.wav
wav2mel --preset gtzan --gtzan gt -o gt.tsz 2>err.txt
check "gtzan preset on a GTZAN tree (.wav and .au): 4 records of 3x128x1500" test "$(shapes gt.tsz)" = "f32 3x128x1500 4"
tsz info -l gt.tsz >ginfo.txt
grep -A1 'classes=blues' ginfo.txt | grep -q rock && grep -q 'rock.00001' ginfo.txt && grep -q 'duration=30' ginfo.txt &&
    pass "gtzan: genres sorted (blues=0, rock=1), .au included, 30 s" || fail "gtzan: $(head -c 500 ginfo.txt)"
check "gtzan: folds 1, 2 by index within genre (2 clips each)" test "$(tsz select --fold 2 gt.tsz | records -)" = 2

# ESC-10 original layout
mkdir -p "e10/001 - Dog bark" "e10/002 - Rain"
cp tone.wav "e10/001 - Dog bark/1-100-A.wav"; cp st.wav "e10/001 - Dog bark/2-200-A.wav"; cp tone.wav "e10/002 - Rain/5-300-A.wav"
wav2mel --preset esc50 --esc10 e10 -o e10.tsz 2>err.txt
tsz info -l e10.tsz >tinfo.txt 2>&1
grep -A1 'classes=Dog bark' tinfo.txt | grep -q Rain && test "$(tsz select --fold 5 e10.tsz | records -)" = 1 &&
    pass "--esc10: classes from folder names, folds from file names" || fail "esc10: $(head -c 500 tinfo.txt)"

# ---- bad, empty and missing files ----
: >empty.wav
head -c 5000 /dev/urandom >noise.wav
head -c 30 tone.wav >hdr.wav
expect_fail "a missing file: exit 1, one line naming it" 1 "missing.wav" wav2mel tone.wav missing.wav -o x.tsz
expect_fail "an empty file: exit 1, one line naming it" 1 "empty.wav: empty file" wav2mel empty.wav tone.wav -o x.tsz
expect_fail "random bytes: exit 1, one line naming the file" 1 "noise.wav" wav2mel tone.wav noise.wav -o x.tsz
expect_fail "a header only: exit 1, one line naming the file" 1 "hdr.wav" wav2mel hdr.wav -o x.tsz
expect_fail "two bad files, 2 threads: the first in input order is reported" 1 "empty.wav" wav2mel -j 2 tone.wav empty.wav missing.wav noise.wav -o x.tsz
check "a failed run leaves no output file" test ! -e x.tsz
check "a failed run leaves no temporary file" test -z "$(ls | grep 'x.tsz')"
wav2mel --skip-bad tone.wav missing.wav empty.wav st.wav noise.wav -o s.tsz 2>skip.err; rc=$?
if [ $rc -eq 0 ] && [ "$(records s.tsz)" = 2 ] && grep -q 'skipped 3 of 5' skip.err && [ "$(grep -c '(skipped)' skip.err)" = 3 ]
then pass "--skip-bad: 2 good records, 3 bad files reported and counted"
else fail "--skip-bad: status $rc, $(records s.tsz) records, $(head -c 300 skip.err)"; fi
wav2mel --skip-bad missing.wav empty.wav -o y.tsz 2>skip.err; rc=$?
if [ $rc -eq 1 ] && tail -n 1 skip.err | grep -q 'no file could be decoded (2 skipped)' && [ ! -e y.tsz ]
then pass "--skip-bad with no good file: exit 1, no output"
else fail "--skip-bad with no good file: status $rc, $(head -c 300 skip.err)"; fi
printf 'tone.wav\tx\t1\n' >bad.list
expect_fail "a malformed list row: exit 1 naming list and line" 1 "bad.list: line 1" wav2mel --list bad.list
# a list on stdin up to 256 MiB of text is read (150 MB of comment, read to the end); 280 MB is refused
head -c 150000000 /dev/zero | tr '\0' '#' >big.list
expect_fail "a 150 MB list on stdin is read whole (all comment: no files)" 1 "^wav2mel: -: no files listed" \
    sh -c 'wav2mel --list - -o x.tsz <big.list'
head -c 130000000 /dev/zero | tr '\0' '#' >>big.list
expect_fail "a 280 MB list on stdin: refused" 1 "list longer than 256 MB" sh -c 'wav2mel --list - -o x.tsz <big.list'
rm -f big.list
printf 'filename,fold\n' >esc/meta/esc50.csv
expect_fail "an ESC-50 csv without the needed columns: exit 1" 1 "esc50.csv" wav2mel --esc50 esc

# ---- determinism: the records do not depend on the thread count ----
# every container at once, so that parallel decoding in each format handler is exercised too
for k in 1 2 3 4 5 6; do cp st.wav "m$k.wav"; cp tone.wav "n$k.wav"; done
mixed="m1.wav n1.wav"
for fmt in flac ogg mp3 aiff au; do
    [ -s "clip.$fmt" ] && cp "clip.$fmt" "p1.$fmt" && cp "clip.$fmt" "p2.$fmt" && mixed="$mixed p1.$fmt p2.$fmt"
done
wav2mel --preset esc50 -j 1 m?.wav $mixed n?.wav short.wav -o j1.tsz 2>/dev/null
wav2mel --preset esc50 -j 2 m?.wav $mixed n?.wav short.wav -o j2.tsz 2>/dev/null
wav2mel --preset esc50 -j 5 m?.wav $mixed n?.wav short.wav -o j5.tsz 2>/dev/null
tsz npy --stack -o j1.npy j1.tsz; tsz npy --stack -o j2.npy j2.tsz; tsz npy --stack -o j5.npy j5.tsz
tsz info -l <j1.tsz | grep -v history >l1.txt; tsz info -l <j5.tsz | grep -v history >l5.txt
if [ -s j1.npy ] && cmp -s j1.npy j2.npy && cmp -s j1.npy j5.npy && cmp -s l1.txt l5.txt
then pass "-j 1, 2 and 5: bit-identical records in the same order (wav, $(echo "$mixed" | tr ' ' '\n' | sed -n 's/^p1\.//p' | tr '\n' ' '))"
else fail "records differ between thread counts"; fi

# ---- interrupted runs never look complete ----
# long enough that no machine finishes it within the second before the signal
for k in $(seq 1 2000); do printf 'tone.wav\t0\t1\tc%s\n' "$k"; done >long.list
# A background job of a script starts with SIGINT ignored, and wav2mel keeps an ignored signal
# ignored (as nohup expects): env --default-signal gives this one run the default disposition.
if env --default-signal=INT true 2>/dev/null; then
    env --default-signal=INT wav2mel --preset esc50 -j 2 --list long.list -o int.tsz 2>int.err &
    pid=$!
    sleep 1
    kill -INT $pid 2>/dev/null
    wait $pid; rc=$?
    if [ $rc -ne 0 ] && [ ! -e int.tsz ] && [ -z "$(ls | grep '^int.tsz')" ]; then pass "SIGINT: status $rc, no output and no temporary file"
    else fail "SIGINT: status $rc, files: $(ls | grep int.tsz)"; fi
else
    skip "SIGINT: env has no --default-signal here"
fi
wav2mel --preset esc50 -j 2 --list long.list -o int1.tsz 2>int.err &
pid=$!
sleep 1
kill -TERM $pid 2>/dev/null
wait $pid; rc=$?
if [ $rc -ne 0 ] && [ ! -e int1.tsz ] && [ -z "$(ls | grep '^int1.tsz')" ]; then pass "SIGTERM: status $rc, no output and no temporary file"
else fail "SIGTERM: status $rc, files: $(ls | grep int1.tsz)"; fi
wav2mel --preset esc50 -j 2 --list long.list >int2.tsz 2>/dev/null &
pid=$!
sleep 1
kill -TERM $pid 2>/dev/null
wait $pid; rc=$?
if [ $rc -ne 0 ] && ! tsz info --no-values int2.tsz >/dev/null 2>&1; then pass "SIGTERM with stdout: status $rc, the stream reads as truncated"
else fail "SIGTERM to stdout: status $rc, stream still reads"; fi
wav2mel --preset esc50 -j 2 --list long.list -o int3.tsz 2>/dev/null &
pid=$!
sleep 1
kill -KILL $pid 2>/dev/null
wait $pid 2>/dev/null
check "SIGKILL: the output name never appears" test ! -e int3.tsz
rm -f int3.tsz.tmp.*

# ---- PNG ----
wav2mel --preset esc50 --png pngs tone.wav -o p.tsz 2>err.txt
if [ -s pngs/tone.png ] && [ "$(od -An -tx1 -j1 -N3 pngs/tone.png | tr -d ' ')" = 504e47 ] &&
   [ "$(od -An -tu1 -j16 -N8 pngs/tone.png | tr -s ' ' | sed 's/^ //')" = "0 0 0 250 0 0 1 128" ]
then pass "--png: pngs/tone.png, 250 x 384 (3 channels of 128 mels stacked)"
else fail "--png: $(ls pngs 2>&1) $(head -c 200 err.txt)"; fi

# ---- usage ----
wav2mel --help >help.txt 2>&1
check "--help exits 0 and names every option" grep -q -- '--skip-bad' help.txt
wav2mel --version | grep -q 'wav2mel (earsight)' && pass "--version" || fail "--version"
for args in "" "--preset nope tone.wav" "--channels 25:10 --win 400 tone.wav" "--fit crop tone.wav" \
            "--rate 0 tone.wav" "--bogus tone.wav" "--mel-scale mel tone.wav" "--list a --esc50 b" \
            "--preset esc50 --width 0 tone.wav" "--channels 25 tone.wav" "--win 5000 tone.wav" \
            "--fmax 30000 tone.wav" "--power 5 tone.wav" "-j"; do
    wav2mel $args >/dev/null 2>u.err; rc=$?
    if [ $rc -eq 2 ] && grep -q "try 'wav2mel --help'" u.err; then pass "usage error exits 2: wav2mel $args"
    else fail "usage error 'wav2mel $args': status $rc, $(head -c 200 u.err)"; fi
done
finish
