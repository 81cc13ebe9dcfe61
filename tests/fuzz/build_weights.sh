#!/bin/sh
# tests/fuzz/build_weights.sh [SECONDS [JOBS]]: build the libFuzzer targets of the weights module
# (fuzz_safetensors, fuzz_pickle) with clang -fsanitize=fuzzer,address,undefined from only the sources
# they need (lib/weights*.c, lib/tsz.c, lib/util.c), seed them (each target's LLVMFuzzerInitialize
# writes seeds into $FUZZ_SEED_DIR), and run each for SECONDS (default 60; 0 builds only) with JOBS
# parallel workers (default 1).  Corpora and crashes go to build-fuzz/weights/ (or $FUZZ_OUT).
# The same targets also run under `make fuzz` (tests/fuzz/run.sh), which links them against all of lib/.
# Exit status: 0 no crash, 1 a crash or build failure.
set -u
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT" || exit 1
SECS=${1:-60}
JOBS=${2:-1}
CC=${FUZZ_CC:-clang}
OUT=${FUZZ_OUT:-build-fuzz/weights}
PKGS="libzstd jansson libzip"
export EARSIGHT_SHARED="${EARSIGHT_SHARED:-$ROOT/../shared}"
CFLAGS="-std=c11 -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE -g -O1 -fno-omit-frame-pointer -Iinclude
        $(pkg-config --cflags $PKGS)"
SAN="-fsanitize=address,undefined -fno-sanitize-recover=undefined"
LIBS="$(pkg-config --libs $PKGS) -lm"
mkdir -p "$OUT"
status=0
for t in fuzz_safetensors fuzz_pickle; do
    # fuzz_pickle includes lib/weights_pickle.c itself (to reach its static functions)
    srcs="lib/weights.c lib/weights_safetensors.c lib/tsz.c lib/util.c"
    [ "$t" = fuzz_safetensors ] && srcs="$srcs lib/weights_pickle.c"
    echo "building $OUT/$t"
    # shellcheck disable=SC2086
    $CC $CFLAGS $SAN -fsanitize=fuzzer -o "$OUT/$t" "tests/fuzz/$t.c" $srcs $LIBS || { status=1; continue; }
    [ "$SECS" -gt 0 ] || continue
    corpus="$OUT/corpus-$t"
    mkdir -p "$corpus" "$OUT/crashes-$t"
    echo "running $t for $SECS s with $JOBS job(s); log $OUT/$t.log"
    FUZZ_SEED_DIR="$corpus" "$OUT/$t" -max_total_time="$SECS" -timeout=20 -rss_limit_mb=2048 -max_len=262144 \
        -jobs="$JOBS" -workers="$JOBS" -artifact_prefix="$OUT/crashes-$t/" -print_final_stats=1 "$corpus" \
        >"$OUT/$t.log" 2>&1
    rc=$?
    [ "$JOBS" -gt 1 ] && cat fuzz-*.log >>"$OUT/$t.log" 2>/dev/null && rm -f fuzz-*.log
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$OUT/$t.log" | grep -o '[0-9]*$' | awk '{n += $1} END {print n}')
    cov=$(grep -o 'cov: [0-9]*' "$OUT/$t.log" | tail -n 1)
    if [ $rc -ne 0 ] || ls "$OUT/crashes-$t"/crash-* "$OUT/crashes-$t"/leak-* "$OUT/crashes-$t"/oom-* >/dev/null 2>&1; then
        echo "FAIL: $t: exit $rc, artifacts in $OUT/crashes-$t/"
        grep -E 'ERROR|SUMMARY' "$OUT/$t.log" | head -n 10
        status=1
    else
        echo "PASS: $t: ${runs:-?} executions in $SECS s, $cov, corpus $(ls "$corpus" | wc -l) files, no crash"
    fi
done
exit $status
