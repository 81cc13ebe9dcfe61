# tests/lib.sh: sourced by shell tests.  pass/fail/skip print the lines tests/run.sh counts;
# expect_fail runs a command that must exit with a given status and print one line naming a text.
# Environment from tests/run.sh: EARSIGHT_BIN (tools, also on PATH), EARSIGHT_SHARED, TEST_TMP (cwd).
FAILS=0
pass() { echo "PASS: $*"; }
fail() { echo "FAIL: $*"; FAILS=$((FAILS + 1)); }
skip() { echo "SKIP: $*"; }
check() { # check WHAT COMMAND...  : PASS if the command succeeds
    what=$1; shift
    if "$@" >/dev/null 2>check.err; then pass "$what"; else fail "$what: $(head -c 300 check.err)"; fi
}
# expect_fail WHAT STATUS PATTERN COMMAND... : exit STATUS, exactly one stderr line containing PATTERN
# (a usage error, status 2, may add the hint line "try 'TOOL --help'")
expect_fail() {
    what=$1; st=$2; pat=$3; shift 3
    "$@" >/dev/null 2>ef.err; rc=$?
    lines=$(wc -l <ef.err)
    [ "$st" -eq 2 ] && lines=$(grep -v -c "^try '.* --help'\$" ef.err)
    if [ "$rc" -eq "$st" ] && [ "$lines" -eq 1 ] && grep -q -- "$pat" ef.err; then pass "$what"
    else fail "$what: status $rc (want $st), stderr: $(head -c 300 ef.err)"; fi
}
shared_dir() { [ -d "${EARSIGHT_SHARED:-}" ] && echo "$EARSIGHT_SHARED"; }
finish() { [ "$FAILS" -eq 0 ]; exit $?; }
