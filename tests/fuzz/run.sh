#!/bin/sh
# tests/fuzz/run.sh SECONDS TARGET...: fuzz each libFuzzer target tests/fuzz/TARGET.c for SECONDS.
# Builds lib/*.c once with clang (-fsanitize=fuzzer-no-link,address,undefined, the Makefile's include and
# pkg-config flags) into build-fuzz/, links each target with -fsanitize=fuzzer,address,undefined, seeds it
# from tests/fuzz/corpus/TARGET/ (if present) plus whatever the target's LLVMFuzzerInitialize writes into
# $FUZZ_SEED_DIR, then runs it.  Exit status: 0 when no target crashed, 1 otherwise, 2 on misuse.
# `make fuzz FUZZ_TIME=N` calls it for every tests/fuzz/fuzz_*.c.
# FUZZ_RNG_SEED=N fixes libFuzzer's random seed, so that a run explores the same inputs in the same
# order (CI sets it: a landing gate should not fail at random on a bug a different draw would have
# found; long local runs, unseeded, are where new bugs are looked for).  Inputs that once crashed
# are kept in tests/fuzz/corpus/TARGET/ and replayed by every run.
set -u
if [ $# -lt 2 ]; then
    echo "usage: tests/fuzz/run.sh SECONDS TARGET...  (e.g. tests/fuzz/run.sh 60 fuzz_tsz_reader)" >&2
    exit 2
fi
secs=$1; shift
case "$secs" in ''|*[!0-9]*) echo "run.sh: SECONDS must be a whole number, got '$secs'" >&2; exit 2 ;; esac
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT" || exit 1
OUT=build-fuzz
CC=${FUZZ_CC:-clang}
PKG_CONFIG=${PKG_CONFIG:-pkg-config}
command -v "$CC" >/dev/null || { echo "run.sh: $CC not found (apt-get install clang)" >&2; exit 1; }

# The same dependency flags as the Makefile (keep in step with PKGS and BLIS_CFLAGS there).
PKGS="sox fftw3f libpng libzstd libturbojpeg jansson libzip"
BLIS_CFLAGS=$($PKG_CONFIG --cflags blis 2>/dev/null) || BLIS_CFLAGS=
if [ -z "$BLIS_CFLAGS" ]; then
    for d in /usr/include/x86_64-linux-gnu/blis-openmp /usr/include/blis /usr/include/x86_64-linux-gnu/blis-pthread; do
        [ -f "$d/blis.h" ] && BLIS_CFLAGS="-I$d" && break
    done
fi
BLIS_LIBS=$($PKG_CONFIG --libs blis 2>/dev/null) || BLIS_LIBS=-lblis
CFLAGS="-std=c11 -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE -g -O1 -fno-omit-frame-pointer -fopenmp -pthread
        -Iinclude $BLIS_CFLAGS $($PKG_CONFIG --cflags $PKGS 2>/dev/null)"
SAN="-fsanitize=address,undefined -fno-sanitize-recover=undefined"
LIBS="$($PKG_CONFIG --libs $PKGS 2>/dev/null) $BLIS_LIBS -lm -fopenmp -pthread"

# Library objects, rebuilt when their source or any header is newer.
mkdir -p "$OUT/lib"
newest_h=$(ls -t include/*.h lib/*.h 2>/dev/null | head -n 1)
objs=
for src in lib/*.c; do
    obj="$OUT/lib/$(basename "$src" .c).o"
    if [ ! -e "$obj" ] || [ "$src" -nt "$obj" ] || { [ -n "$newest_h" ] && [ "$newest_h" -nt "$obj" ]; }; then
        echo "fuzz: compiling $src"
        # shellcheck disable=SC2086
        # Some engine files use GCC-only vector builtins; the readers under fuzz never need them, and a
        # target that did would fail to link below, so a file clang cannot compile is left out.
        if ! $CC $CFLAGS $SAN -fsanitize=fuzzer-no-link -c -o "$obj" "$src" 2>"$OUT/lib/$(basename "$src" .c).err"; then
            echo "fuzz: leaving out $src (clang cannot compile it)" >&2
            rm -f "$obj"
            continue
        fi
    fi
    objs="$objs $obj"
done
rm -f "$OUT/libearsight-fuzz.a"
# shellcheck disable=SC2086
ar rcs "$OUT/libearsight-fuzz.a" $objs || exit 1

status=0
for t in "$@"; do
    t=$(basename "$t" .c)
    src="tests/fuzz/$t.c"
    [ -f "$src" ] || { echo "fuzz: no target $src" >&2; status=1; continue; }
    bin="$OUT/$t"
    echo "fuzz: building $t"
    # shellcheck disable=SC2086
    if ! $CC $CFLAGS $SAN -fsanitize=fuzzer -o "$bin" "$src" "$OUT/libearsight-fuzz.a" $LIBS; then
        echo "FAIL: fuzz $t: does not build" >&2; status=1; continue
    fi
    corpus="$OUT/corpus/$t"
    art="$OUT/artifacts/$t"
    mkdir -p "$corpus" "$art"
    [ -d "tests/fuzz/corpus/$t" ] && cp -R "tests/fuzz/corpus/$t/." "$corpus/"
    echo "fuzz: running $t for $secs s (corpus $corpus, crashes into $art/)"
    touch "$OUT/$t.log.start"
    # shellcheck disable=SC2086
    FUZZ_SEED_DIR="$corpus" "$bin" ${FUZZ_RNG_SEED:+-seed="$FUZZ_RNG_SEED"} -max_total_time="$secs" -timeout=30 -rss_limit_mb=2048 \
        -artifact_prefix="$art/" -print_final_stats=1 "$corpus" >"$OUT/$t.log" 2>&1
    rc=$?
    if [ $rc -ne 0 ]; then
        echo "FAIL: fuzz $t: exit status $rc; last lines of $OUT/$t.log:"
        # the report, the first stack frames and the input (hex, when small) so a CI log alone reproduces it
        grep -E 'ERROR|SUMMARY|Test unit written|==[0-9]+==|^ *#[0-9]+ |runtime error|Base64' "$OUT/$t.log" |
            head -n 40 | sed 's/^/    /'
        for crash in $(find "$art" -type f -newer "$OUT/$t.log.start"); do
            size=$(wc -c <"$crash")
            echo "    input $crash ($size bytes)"
            [ "$size" -le 4096 ] && { od -An -tx1 -v "$crash" | tr -d ' \n'; echo; } | fold -w 128 | sed 's/^/    hex: /'
        done
        tail -n 5 "$OUT/$t.log" | sed 's/^/    /'
        status=1
    else
        runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$OUT/$t.log" | grep -o '[0-9]*$')
        cov=$(grep -o 'cov: [0-9]*' "$OUT/$t.log" | tail -n 1)
        echo "PASS: fuzz $t: ${runs:-?} inputs in $secs s, $cov, no crash"
    fi
done
exit $status
