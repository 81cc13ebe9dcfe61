#!/bin/sh
# Run every test program (BUILD/tests/*_test) and shell test (tests/*_test.sh).
# Each prints lines "PASS: what", "FAIL: what: why" or "SKIP: what: why"; a test that exits non-zero
# without printing a FAIL line counts as one failure.  Closing line: "N passed, N failed".
# Usage: tests/run.sh BUILD_DIR [NAME-FILTER]
BUILD=${1:-build}
FILTER=${2:-}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
export EARSIGHT_BIN="$ROOT/$BUILD/bin"
export EARSIGHT_ROOT="$ROOT"
export EARSIGHT_SHARED="${EARSIGHT_SHARED:-$ROOT/../shared}"
export PATH="$EARSIGHT_BIN:$PATH"
TMPROOT=$(mktemp -d "${TMPDIR:-/tmp}/earsight-tests.XXXXXX")
trap 'rm -rf "$TMPROOT"' EXIT
pass=0; fail=0; skip=0
for t in "$ROOT/$BUILD"/tests/*_test "$ROOT"/tests/*_test.sh; do
    [ -e "$t" ] || continue
    name=$(basename "$t")
    case "$name" in *"$FILTER"*) ;; *) continue ;; esac
    out="$TMPROOT/$name.out"
    dir="$TMPROOT/$name.d"; mkdir -p "$dir"
    start=$(date +%s)
    case "$t" in
        *.sh) (cd "$dir" && TEST_TMP="$dir" timeout 900 sh "$t") >"$out" 2>&1 ;;
        *)    (cd "$dir" && TEST_TMP="$dir" timeout 900 "$t") >"$out" 2>&1 ;;
    esac
    rc=$?
    p=$(grep -c '^PASS: ' "$out"); f=$(grep -c '^FAIL: ' "$out"); s=$(grep -c '^SKIP: ' "$out")
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
        echo "FAIL: $name: exited with status $rc" >>"$out"; f=1
    fi
    pass=$((pass + p)); fail=$((fail + f)); skip=$((skip + s))
    secs=$(( $(date +%s) - start ))
    if [ "$f" -gt 0 ]; then
        echo "--- $name: $p passed, $f failed, $s skipped (${secs}s)"
        grep -v '^PASS: ' "$out" | tail -n 40 | sed 's/^/    /'
    else
        echo "--- $name: $p passed, $s skipped (${secs}s)"
        grep '^SKIP: ' "$out" | sed 's/^/    /'
    fi
done
echo "$skip skipped"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
