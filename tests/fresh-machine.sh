#!/bin/sh
# fresh-machine.sh: the README's two commands on a pristine Debian 12, as a new user runs them.
# Builds a Debian 12 tree with mmdebstrap (variant minbase plus build-essential, git and
# ca-certificates: nothing else), clones the committed HEAD into it and runs `make check` there as
# root (and `make demo` with --demo), with a clean environment and no ../shared beside the clone.
# Fails when a command fails, when the suite reports a failure, or when a check is skipped for any
# reason but one a Debian machine cannot remove (../shared data absent, the sanitizer build, the
# CPU, a cost guard); prints the time, disk and packages each step took, for the README.
# Usage: tests/fresh-machine.sh [--demo] [--keep] [--dir DIR]
#   --demo      also run `make demo` after `make check`, and print its table
#   --keep      leave the tree (DIR/root) in place; default: remove it at the end
#   --dir DIR   work in DIR (must not hold a tree yet); default: a new directory under $TMPDIR or /var/tmp
# Environment: FRESH_MIRROR (default http://deb.debian.org/debian), FRESH_SECURITY_MIRROR.
# Needs root (chroot, mounts) and mmdebstrap (apt-get installs it when missing).
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
demo=0; keep=0; dir=""
while [ $# -gt 0 ]; do
    case $1 in
        --demo) demo=1; shift ;;
        --keep) keep=1; shift ;;
        --dir) [ $# -ge 2 ] || { echo "fresh-machine.sh: option '--dir' needs a value" >&2; exit 2; }
               dir=$2; shift 2 ;;
        --dir=*) dir=${1#--dir=}; shift ;;
        -h|--help) sed -n '2,15s/^# \{0,1\}//p' "$0"; exit 0 ;;
        *) echo "fresh-machine.sh: unknown option '$1'" >&2; echo "try 'fresh-machine.sh --help'" >&2; exit 2 ;;
    esac
done
say() { echo "fresh-machine: $*"; }
die() { echo "fresh-machine: $*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "needs root (mmdebstrap, chroot and mounts)"
if ! command -v mmdebstrap >/dev/null 2>&1; then
    say "installing mmdebstrap"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends mmdebstrap >/dev/null 2>&1 ||
        { apt-get update -q >/dev/null 2>&1; DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
            --no-install-recommends mmdebstrap >/dev/null 2>&1; } || die "cannot install mmdebstrap"
fi
if [ -n "$(git -C "$ROOT" status --porcelain --untracked-files=no)" ]; then
    say "note: uncommitted changes in $ROOT are not tested (the clone takes the committed HEAD)"
fi
MIRROR=${FRESH_MIRROR:-http://deb.debian.org/debian}
SECURITY=${FRESH_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
[ -n "$dir" ] || dir=$(mktemp -d "${TMPDIR:-/var/tmp}/earsight-fresh.XXXXXX")
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
T=$dir/root
[ ! -e "$T" ] || die "$T exists already: give another --dir"

mounted=""
cleanup() {
    for m in $mounted; do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true; done
    # never remove a tree that still has the host's /dev or /proc mounted in it
    if grep -q " $T/" /proc/mounts; then say "mounts remain under $T: not removed"
    elif [ "$keep" -eq 0 ]; then rm -rf "$T"
    else say "tree kept in $T"; fi
    say "logs in $dir (mmdebstrap.log, check.log, skips.txt, demo.log)"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

step_start=0
start() { step_start=$(date +%s); }
secs() { echo $(( $(date +%s) - step_start )); }
mb() { du -sxm "$T" | cut -f1; }
npkgs() { chroot "$T" dpkg-query -W -f='${Status}\n' | grep -c 'ok installed'; }

# ---- the tree: what a fresh Debian 12 install with a compiler and git holds
start
mmdebstrap --quiet --variant=minbase --include=build-essential,git,ca-certificates bookworm "$T" \
    "deb $MIRROR bookworm main" "deb $MIRROR bookworm-updates main" "deb $SECURITY bookworm-security main" \
    </dev/null >"$dir/mmdebstrap.log" 2>&1 || { tail -5 "$dir/mmdebstrap.log" >&2; die "mmdebstrap failed (log above)"; }
base_mb=$(mb); base_pkgs=$(npkgs)
say "Debian 12 minbase + build-essential, git, ca-certificates: $(secs) s, $base_mb MB, $base_pkgs packages"

# name resolution as on this host (the tree's network is the host's); /dev/shm for shared memory
cp /etc/resolv.conf "$T/etc/resolv.conf" 2>/dev/null || true
cp /etc/hosts "$T/etc/hosts"
for m in proc sys dev dev/pts dev/shm; do
    case $m in
        proc) mount -t proc proc "$T/proc" ;;
        sys) mount -t sysfs sys "$T/sys" ;;
        dev) mount --bind /dev "$T/dev" ;;
        dev/pts) mount -t devpts devpts "$T/dev/pts" ;;
        dev/shm) mount -t tmpfs -o mode=1777 shm "$T/dev/shm" ;;
    esac
    mounted="$T/$m $mounted"
done

git clone -q --no-hardlinks "$ROOT" "$T/root/earsight"
say "cloned $(git -C "$T/root/earsight" log -1 --format='%h %s' | cut -c1-70)"

# run CMD in the tree as a new user would: root, a login-like environment, no stdin, no ../shared
inside() {
    chroot "$T" /usr/bin/env -i HOME=/root LANG=C.UTF-8 TERM=dumb CI="${CI:-}" \
        PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        sh -c "cd /root/earsight && $1" </dev/null
}

# ---- make check
start
rc=0; inside "make check" >"$dir/check.log" 2>&1 || rc=$?
check_secs=$(secs)
summary=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$dir/check.log" | tail -1)
nskip=$(sed -n 's/^\([0-9]*\) skipped$/\1/p' "$dir/check.log" | tail -1)
# skips a Debian machine cannot remove: data only ../shared holds, the sanitizer build, the CPU, cost guards
grep '^ *SKIP: ' "$dir/check.log" | sed 's/^ *//' >"$dir/skips.txt" || true
grep -v -i -E 'shared|reference|sanitizer|(the|this) CPU( \(or the OS, or EARSIGHT_NO_AMX\))? (has|gives) no|4\.25 GiB' "$dir/skips.txt" >"$dir/bad-skips.txt" || true
say "make check: ${check_secs} s, exit $rc, ${summary:-no summary line}, ${nskip:-?} skipped," \
    "$(wc -l <"$dir/bad-skips.txt") of them for something this machine could install"
say "after make check: $(mb) MB (+$(( $(mb) - base_mb ))), $(npkgs) packages (+$(( $(npkgs) - base_pkgs )))"
sed 's/^/    /' "$dir/skips.txt"
fail=0
if [ "$rc" -ne 0 ] || [ -z "$summary" ]; then
    grep -E '^--- .*[1-9][0-9]* failed|^    FAIL: ' "$dir/check.log" | head -20 >&2
    tail -n 15 "$dir/check.log" >&2
    say "FAILED: make check exited $rc"; fail=1
fi
if [ -s "$dir/bad-skips.txt" ]; then
    say "FAILED: checks skipped for want of something a Debian machine can install:"; sed 's/^/    /' "$dir/bad-skips.txt"; fail=1
fi

# ---- make demo
if [ "$demo" -eq 1 ] && [ "$fail" -eq 0 ]; then
    start
    rc=0; inside "make demo" >"$dir/demo.log" 2>&1 || rc=$?
    say "make demo: $(secs) s, exit $rc; now $(mb) MB, $(npkgs) packages"
    if [ "$rc" -ne 0 ]; then tail -n 20 "$dir/demo.log" >&2; say "FAILED: make demo exited $rc"; fail=1
    else
        tab=$(find "$T/root/earsight/results" -name table.md 2>/dev/null | head -1)
        if [ -n "$tab" ]; then cat "$tab"; else tail -n 20 "$dir/demo.log"; fi
    fi
fi
[ "$fail" -eq 0 ] && say "passed"
exit "$fail"
