#!/bin/sh
# Run every benchmark script bench/*_bench.sh with the build directory in $BUILD and the tools on PATH.
# Benchmarks report throughput next to a baseline measured in the same run (the machine is shared).
BUILD=${1:-build}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
export BUILD EARSIGHT_ROOT="$ROOT" EARSIGHT_BIN="$ROOT/$BUILD/bin" EARSIGHT_BENCH="$ROOT/$BUILD/bench"
export EARSIGHT_SHARED="${EARSIGHT_SHARED:-$ROOT/../shared}"
export PATH="$ROOT/$BUILD/bin:$PATH"
BENCH_TMP=$(mktemp -d "${TMPDIR:-/tmp}/earsight-bench.XXXXXX"); export BENCH_TMP
trap 'rm -rf "$BENCH_TMP"' EXIT
for b in "$ROOT"/bench/*_bench.sh; do
    [ -e "$b" ] || continue
    case "$(basename "$b")" in *"${BENCH_FILTER:-}"*) ;; *) continue ;; esac
    echo "=== $(basename "$b" .sh)"
    sh "$b" || echo "bench $(basename "$b") failed with status $?"
done
