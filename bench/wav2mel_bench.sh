#!/bin/sh
# wav2mel throughput on five-second 44.1 kHz clips (the first 100 ESC-10 clips as WAV when
# ../shared is present, else clips synthesised with sox): in-process decode-only floor,
# spectrogram and decode+spectrogram (wav2mel_bench), then the whole tool end to end, on 1 thread
# and on all threads, for librosa-style settings (n_fft 2048, hop 512, 128 mels) and the 3-channel
# esc50 preset.  Everything is measured in this run; ratios are to the decode-only pass.
set -u
BIN=${EARSIGHT_BIN:-build/bin}
BENCH=${EARSIGHT_BENCH:-build/bench}
TMP=${BENCH_TMP:-$(mktemp -d)}
N=${WAV2MEL_BENCH_CLIPS:-100}
if ! command -v sox >/dev/null 2>&1; then echo "wav2mel bench: skipped (no sox program)"; exit 0; fi
mkdir -p "$TMP/clips"
i=0
if [ -d "${EARSIGHT_SHARED:-}/data/esc10" ]; then
    src="ESC-10 clips converted to 16-bit WAV"
    for f in "$EARSIGHT_SHARED"/data/esc10/*/*.ogg; do
        i=$((i + 1)); [ $i -gt "$N" ] && break
        sox "$f" -b 16 "$TMP/clips/c$i.wav" 2>/dev/null
    done
else
    src="synthetic clips (pink noise and tones)"
    while [ $i -lt "$N" ]; do
        i=$((i + 1))
        sox -n -r 44100 -c 1 -b 16 "$TMP/clips/c$i.wav" synth 5 pinknoise sine $((100 + i * 37)) vol 0.3 2>/dev/null
    done
fi
ncpu=$(nproc)
echo "wav2mel: $N five-second 44.1 kHz clips ($src), $ncpu cpus, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg) (figures below $ncpu mean an idle machine)"
echo "--- in process (wav2mel_bench, 3 passes over the clips each)"
"$BENCH/wav2mel_bench" -r 3 "$TMP"/clips/c*.wav | tee "$TMP/inproc.txt"
dec1=$(sed -n 's/^threads 1: decode only \([0-9]*\) clips.*/\1/p' "$TMP/inproc.txt")
decn=$(sed -n "s/^threads $ncpu: decode only \\([0-9]*\\) clips.*/\\1/p" "$TMP/inproc.txt")
ls "$TMP"/clips/c*.wav >"$TMP/list"

# run NAME THREADS ARGS...: the tool on every clip, output to a file; prints clips/s (wall) and
# CPU ms per clip (user + system, from /usr/bin/time when present)
run() {
    name=$1; nt=$2; shift 2
    t0=$(date +%s.%N)
    if [ -x /usr/bin/time ]; then
        /usr/bin/time -f "%U %S" -o "$TMP/time" "$BIN/wav2mel" -j "$nt" --list "$TMP/list" -o "$TMP/out.tsz" "$@" ||
            { echo "wav2mel failed"; return; }
    else
        "$BIN/wav2mel" -j "$nt" --list "$TMP/list" -o "$TMP/out.tsz" "$@" || { echo "wav2mel failed"; return; }
        echo "0 0" >"$TMP/time"
    fi
    t1=$(date +%s.%N)
    echo "$t0 $t1 $(tail -n 1 "$TMP/time")" | awk -v n="$N" -v name="$name" -v nt="$nt" -v d1="${dec1:-0}" -v dn="${decn:-0}" '{
        r = n / ($2 - $1); fl = (nt == 1) ? d1 : dn;
        printf "tool, %s, %d thread(s): %.0f clips/s, %.2f ms CPU per clip (%.2f of the in-process decode-only floor, %s clips/s)\n",
            name, nt, r, ($3 + $4) * 1000 / n, (fl > 0 ? r / fl : 0), fl }'
}
echo "--- the wav2mel tool end to end (list in, uncompressed stream out)"
for nt in 1 "$ncpu"; do
    run "librosa n_fft 2048 hop 512 128 mels" "$nt" --raw --preset librosa --rate 44100
    run "esc50 preset 3x128x250" "$nt" --raw --preset esc50
done
for nt in 1 "$ncpu"; do
    run "esc50 preset, zstd level 3 (the default)" "$nt" --preset esc50
done
rm -rf "$TMP/clips" "$TMP/out.tsz"
