#!/bin/sh
# cli_test.sh: what every tool promises on its command line: --help and --version on stdout with
# exit 0, usage errors as one line plus the "try 'TOOL --help'" hint with exit 2, and a man page
# that groff formats without a warning and that has the usual sections.
. "$EARSIGHT_ROOT/tests/lib.sh"
TOOLS="tsz wav2mel img2tensor augment simclr-train finetune embed tsne score"

for t in $TOOLS; do
    # make check builds every tool first: one that is not there is a broken build, not a skip
    if [ ! -x "$EARSIGHT_BIN/$t" ]; then fail "$t: not built ($EARSIGHT_BIN/$t)"; continue; fi
    if "$t" --help >help.out 2>help.err && head -1 help.out | grep -q "^Usage: $t " && [ ! -s help.err ]; then
        pass "$t --help: usage on stdout, exit 0"
    else fail "$t --help: $(head -c 200 help.out) $(head -c 200 help.err)"; fi
    if "$t" --version >ver.out 2>&1 && grep -q "^$t (earsight) [0-9]" ver.out && [ "$(wc -l <ver.out)" -eq 1 ]; then
        pass "$t --version"
    else fail "$t --version: $(head -c 200 ver.out)"; fi
    # tsz takes a command first; its options belong to the command
    cmd=$t; [ "$t" = tsz ] && cmd="tsz cat"
    # shellcheck disable=SC2086
    expect_fail "$t: unknown long option" 2 "^$cmd: unknown option '--no-such-option'" $cmd --no-such-option
    # shellcheck disable=SC2086
    expect_fail "$t: unknown short option" 2 "^$cmd: unknown option '-Q'" $cmd -Q
    # shellcheck disable=SC2086
    expect_fail "$t: option without its value" 2 "^$cmd: option '--output' needs a value" $cmd --output
    if grep -q "^try '$cmd --help'\$" ef.err; then pass "$t: usage errors point to --help"
    else fail "$t: usage error without the --help hint: $(cat ef.err)"; fi

    page=$EARSIGHT_ROOT/man/man1/$t.1
    if [ ! -f "$page" ]; then fail "$t: no man page man/man1/$t.1"; continue; fi
    if command -v groff >/dev/null 2>&1; then
        if groff -man -Tutf8 -ww -z "$page" >groff.err 2>&1 && [ ! -s groff.err ]; then pass "$t.1: groff formats it without a warning"
        else fail "$t.1: groff: $(head -2 groff.err | tr '\n' ' ')"; fi
    else skip "$t.1: groff not installed (Debian: groff-base), formatting not checked"; fi
    missing=""
    for sec in NAME SYNOPSIS DESCRIPTION OPTIONS "EXIT STATUS" EXAMPLES "SEE ALSO"; do
        grep -q "^\.SH \"*$sec\"*\$" "$page" || missing="$missing $sec"
    done
    if [ -z "$missing" ]; then pass "$t.1: has every usual section"; else fail "$t.1: missing section(s):$missing"; fi
    # every long option the tool's --help lists is documented in its man page
    undocumented=""
    for o in $(grep -o -- '--[a-z][a-z0-9-]*' help.out | sort -u); do
        grep -q -- "$(echo "$o" | sed 's/-/\\\\*-/g')" "$page" || undocumented="$undocumented $o"
    done
    if [ -z "$undocumented" ]; then pass "$t.1: documents every option of --help"
    else fail "$t.1: options in --help but not in the man page:$undocumented"; fi
done

page=$EARSIGHT_ROOT/man/man5/tsz.5
# a missing page is a defect; a missing groff only means its formatting cannot be checked here
if [ ! -f "$page" ]; then fail "tsz.5: no man page man/man5/tsz.5"
elif ! command -v groff >/dev/null 2>&1; then skip "tsz.5: groff not installed (Debian: groff-base), formatting not checked"
elif groff -man -Tutf8 -ww -z "$page" >groff.err 2>&1 && [ ! -s groff.err ]; then pass "tsz.5: groff formats it without a warning"
else fail "tsz.5: groff: $(head -2 groff.err | tr '\n' ' ')"; fi
finish
