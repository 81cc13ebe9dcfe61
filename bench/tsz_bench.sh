#!/bin/sh
# tsz_bench.sh: TSZ throughput through pipes next to the zstd command line tool on the same bytes, in
# the same run, and compression ratios with and without the byte shuffle (synthetic log-mel-like data,
# plus real log-mel spectrograms when ../shared and wav2mel are there).  Run by `make bench`
# (bench/run.sh sets EARSIGHT_BENCH, BENCH_TMP and PATH).  TSZ_BENCH_MIB sets the size (default 1024),
# TSZ_BENCH_ROUNDS the repetitions (default 3; the fastest of each is reported: the machine is shared).
set -u
B=$(cd "${EARSIGHT_BENCH:-build/bench}" && pwd) || exit 1
T=${BENCH_TMP:-${TMPDIR:-/tmp}}
MIB=${TSZ_BENCH_MIB:-1024}
ROUNDS=${TSZ_BENCH_ROUNDS:-3}
have_zstd=1
command -v zstd >/dev/null || have_zstd=0
command -v tsz >/dev/null || { echo "tsz_bench: tsz not on PATH (run through make bench)"; exit 1; }

now() { date +%s.%N; }
# CPU seconds of the measured process (user + system), with GNU time when installed: on a shared
# machine they say more than the wall clock.
TIMER=
[ -x /usr/bin/time ] && TIMER="/usr/bin/time -f %U+%S -o $T/cpu.cur"
keep_min() { # FILE VALUE: keep the smaller value in FILE
    if [ ! -e "$1" ] || awk -v a="$2" -v b="$(cat "$1")" 'BEGIN { exit !(a < b) }'; then echo "$2" >"$1"; fi
}
# run NAME PIPELINE: time a shell pipeline (TIMED marks the measured program); keep the best round
run() {
    cmd=$(echo "$2" | sed "s#TIMED#$TIMER#")
    t0=$(now); sh -c "$cmd" || { echo "tsz_bench: '$2' failed"; exit 1; }; t1=$(now)
    keep_min "$T/time.$1" "$(echo "$t0 $t1" | awk '{ printf "%.4f", $2 - $1 }')"
    [ -n "$TIMER" ] && keep_min "$T/cpu.$1" "$(awk -F+ '{ printf "%.4f", $1 + $2 }' "$T/cpu.cur")"
}
get() { cat "$T/time.$1"; }
getc() { cat "$T/cpu.$1"; }
mbs() { awk -v b="$BYTES" -v s="$(get "$1")" 'BEGIN { printf "%7.0f", b / s / 1e6 }'; }
mbc() { if [ -n "$TIMER" ]; then awk -v b="$BYTES" -v s="$(getc "$1")" 'BEGIN { printf "%7.0f", b / (s > 0 ? s : 1e-9) / 1e6 }'; else printf '%7s' '-'; fi; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a / b }'; }
size() { wc -c <"$1" | tr -d ' '; }

cd "$T" || exit 1
rm -f time.* cpu.*
"$B/tsz_bench" gen "$MIB" >raw.tsz || exit 1
BYTES=$(size raw.tsz)
cat raw.tsz >/dev/null   # into the page cache
i=0
while [ $i -lt "$ROUNDS" ]; do
    run cat         "cat raw.tsz | TIMED cat | cat >/dev/null"
    run w_shuffle   "cat raw.tsz | TIMED tsz cat | cat >z.tsz"
    run w_plain     "cat raw.tsz | TIMED tsz cat --no-shuffle | cat >zn.tsz"
    run w_raw       "cat raw.tsz | TIMED tsz cat --raw | cat >/dev/null"
    run r_shuffle   "cat z.tsz | TIMED $B/tsz_bench read >/dev/null"
    run r_plain     "cat zn.tsz | TIMED $B/tsz_bench read >/dev/null"
    run r_raw       "cat raw.tsz | TIMED $B/tsz_bench read >/dev/null"
    run r_tool      "cat z.tsz | TIMED tsz cat --raw | cat >/dev/null"
    if [ $have_zstd -eq 1 ]; then
        run w_zstd  "cat raw.tsz | TIMED zstd -q -3 -c | cat >raw.zst"
        run r_zstd  "cat raw.zst | TIMED zstd -q -dc | cat >/dev/null"
    fi
    i=$((i + 1))
done

echo "TSZ through pipes: $MIB MiB of f32 log-mel-like records (1x128x250), best of $ROUNDS rounds"
echo "MB/s of uncompressed data (10^6 bytes/s); pipelines are 'cat FILE | PROGRAM | cat'; 'cpu' columns"
echo "divide by the program's own CPU time (user + system) instead of the wall clock"
printf '  %-42s %7s %7s %7s %7s %7s\n' "" "write" "read" "w cpu" "r cpu" "ratio"
row() { printf '  %-42s %7s %7s %7s %7s %7s\n' "$1" "$2" "$3" "$4" "$5" "$6"; }
row "tsz level 3 + byte shuffle (default)" "$(mbs w_shuffle)" "$(mbs r_shuffle)" "$(mbc w_shuffle)" "$(mbc r_shuffle)" "$(ratio "$BYTES" "$(size z.tsz)")"
row "tsz level 3, --no-shuffle" "$(mbs w_plain)" "$(mbs r_plain)" "$(mbc w_plain)" "$(mbc r_plain)" "$(ratio "$BYTES" "$(size zn.tsz)")"
row "tsz --raw" "$(mbs w_raw)" "$(mbs r_raw)" "$(mbc w_raw)" "$(mbc r_raw)" "1.000"
row "tsz cat --raw of the default stream" "" "$(mbs r_tool)" "" "$(mbc r_tool)" ""
if [ $have_zstd -eq 1 ]; then
    row "zstd -3 -c | zstd -dc (same raw bytes)" "$(mbs w_zstd)" "$(mbs r_zstd)" "$(mbc w_zstd)" "$(mbc r_zstd)" "$(ratio "$BYTES" "$(size raw.zst)")"
fi
row "cat (pipe ceiling)" "$(mbs cat)" "$(mbs cat)" "$(mbc cat)" "$(mbc cat)" ""
if [ $have_zstd -eq 1 ]; then
    echo "reader speed as a fraction of zstd -dc's (issue target >= 0.80), wall clock / CPU time:"
    echo "  library reader, default stream:  $(ratio "$(get r_zstd)" "$(get r_shuffle)")${TIMER:+ / $(ratio "$(getc r_zstd)" "$(getc r_shuffle)")}"
    echo "  library reader, unshuffled:      $(ratio "$(get r_zstd)" "$(get r_plain)")${TIMER:+ / $(ratio "$(getc r_zstd)" "$(getc r_plain)")}"
    echo "  tsz cat --raw (decode + write):  $(ratio "$(get r_zstd)" "$(get r_tool)")${TIMER:+ / $(ratio "$(getc r_zstd)" "$(getc r_tool)")}"
    echo "writer speed as a fraction of zstd -3 -c's, wall / CPU: default $(ratio "$(get w_zstd)" "$(get w_shuffle)")${TIMER:+ / $(ratio "$(getc w_zstd)" "$(getc w_shuffle)")}, unshuffled $(ratio "$(get w_zstd)" "$(get w_plain)")${TIMER:+ / $(ratio "$(getc w_zstd)" "$(getc w_plain)")}"
else
    echo "zstd command line tool not installed: no baseline"
fi
echo "load average during the run: $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null) (on $(nproc 2>/dev/null) CPUs)"
rm -f raw.tsz z.tsz zn.tsz raw.zst time.* cpu.*

# Real log-mel spectrograms: ESC-10 through wav2mel (librosa settings), when both are available.
S=${EARSIGHT_SHARED:-}
if [ -n "$S" ] && [ -d "$S/data/esc10" ] && command -v wav2mel >/dev/null; then
    if wav2mel --esc10="$S/data/esc10" --raw >real.tsz 2>real.err; then
        rb=$(size real.tsz)
        tsz cat real.tsz >real.z
        tsz cat --no-shuffle real.tsz >real.zn
        echo "real log-mel (ESC-10, 400 clips, wav2mel defaults): $rb bytes raw; compression ratio at level 3:"
        echo "  byte shuffle $(ratio "$rb" "$(size real.z)"), no shuffle $(ratio "$rb" "$(size real.zn)")"
        if [ $have_zstd -eq 1 ]; then echo "  zstd -3 on the raw stream $(ratio "$rb" "$(zstd -q -3 -c real.tsz | wc -c)")"; fi
    else
        echo "real log-mel: wav2mel failed: $(head -c 200 real.err)"
    fi
    rm -f real.tsz real.z real.zn real.err
else
    echo "real log-mel: skipped (needs ../shared/data/esc10 and a built wav2mel)"
fi
