#!/bin/sh
# demo-data.sh: the demo's data, from Debian packages only (no download, no ../shared).
#   sounds.tsv   path<TAB>label<TAB>fold<TAB>name of every labelled drum/percussion clip (wav2mel --list)
#   classes.txt  class names, one a line, in label order (label = line number - 1)
#   esc/         the same clips laid out like ESC-50 (meta/esc50.csv, audio/ of symbolic links to the
#                packages' files), so that `wav2mel --esc50` reads them with their class names
#   photos.txt   one high-resolution photo/wallpaper path a line (scenes: the SimCLR pre-training source)
#   stamps.txt   one photographic cut-out (Tux Paint stamp, PNG with alpha) a line (objects: the same)
#   counts.md    clips per class and fold, and the sources with their licences (for the README)
# Usage: demo-data.sh [--install] [--folds N] OUTDIR  |  demo-data.sh --packages
#   --install   first apt-get install the media packages that are missing (as root or through sudo)
#   --packages  print the media packages (for .ci/install-deps) and exit
# Deterministic: the same installed packages give byte-identical files (C-locale sorting, no clock).
# Each file is written under a temporary name and renamed, and rewritten only when its content
# changes, so Make rules depending on them do not re-run needlessly.
set -eu

PKGS="sonic-pi-samples hydrogen-drumkits mate-backgrounds plasma-workspace-wallpapers lomiri-wallpapers-16.04 lomiri-wallpapers-20.04 tuxpaint-stamps-default"
DRUMKITS=/usr/share/hydrogen/data/drumkits
SONICPI=/usr/share/sonic-pi/samples
MATE=/usr/share/backgrounds/mate
PLASMA=/usr/share/wallpapers
LOMIRI=/usr/share/backgrounds
STAMPS=/usr/share/tuxpaint/stamps
FOLDS=5
install=0
while [ $# -gt 0 ]; do
    case $1 in
        --install) install=1; shift ;;
        --packages) echo "$PKGS"; exit 0 ;;
        --folds) FOLDS=$2; shift 2 ;;
        --folds=*) FOLDS=${1#--folds=}; shift ;;
        -h|--help) sed -n '2,12s/^# \{0,1\}//p' "$0"; exit 0 ;;
        -*) echo "demo-data.sh: unknown option $1" >&2; echo "try 'demo-data.sh --help'" >&2; exit 2 ;;
        *) break ;;
    esac
done
[ $# -eq 1 ] || { echo "demo-data.sh: need one OUTDIR" >&2; echo "try 'demo-data.sh --help'" >&2; exit 2; }
OUT=$1
export LC_ALL=C

missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing="$missing $p"
done
if [ -n "$missing" ]; then
    if [ "$install" -eq 0 ]; then
        echo "demo-data.sh: missing Debian packages:$missing (run with --install)" >&2; exit 1
    fi
    echo "demo-data.sh: installing$missing" >&2
    if [ "$(id -u)" -eq 0 ]; then SUDO=""; elif command -v sudo >/dev/null; then SUDO="sudo"; else
        echo "demo-data.sh: need root or sudo to install:$missing" >&2; exit 1; fi
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends $missing >&2 || {
        echo "demo-data.sh: apt-get install failed (try 'apt-get update' first)" >&2; exit 1; }
fi

mkdir -p "$OUT"
tmp=$(mktemp -d "$OUT/.demo-data.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

# ---- sounds ----
# Every one-shot sample of the two packages, classified by its file name into drum instruments.
# Velocity layers and numbered takes of one instrument (Kick-0..Kick-4, BD_01..BD_08, Snare-Hard,
# Snare-Soft) are near-duplicates: they form one group, and a group never straddles two folds, so a
# test fold never holds a louder copy of a training clip.
{
    find "$DRUMKITS" -type f \( -iname '*.wav' -o -iname '*.flac' -o -iname '*.aif' -o -iname '*.aiff' \)
    find "$SONICPI" -type f -name '*.flac'
} | sort >"$tmp/all.txt"

awk -F'\t' '
{
    path = $0; n = split(path, p, "/"); base = p[n]; kit = p[n - 1]
    b = tolower(base); sub(/\.[a-z0-9]+$/, "", b)
    c = ""
    # Order matters: "drum_cymbal_closed" is a hi-hat, "HardHse_K_02" a kick, "stomachache" no tom.
    if (b ~ /clap|stomach/) c = ""
    else if (b ~ /hihat|hi_hat|hi-hat|hat|^hh|_hh|^chh|_chh|ohh|^ho_|drum_cymbal_(closed|open|pedal)/) c = "hihat"
    else if (b ~ /kick|^bd|_bd_|_k_|bassdrum|drum_bass/) c = "kick"
    else if (b ~ /snare|^sn[0-9]*_|_sn_|^sd_|^sr_/) c = "snare"
    else if (b ~ /tom|^tm[0-9]*_|^ft_|^t[12]_/) c = "tom"
    else if (b ~ /crash|ride|splash|china|cymbal|^cc_|^rc_|^rd[0-9]*_|^bl_|^cra_/) c = "cymbal"
    else if (b ~ /djembe|bongo|cajon|conga|head hit|head mute|tabla/) c = "handdrum"
    if (c == "") next
    g = base; sub(/\.[A-Za-z0-9]+$/, "", g)
    sub(/[-_ ]?([Hh]ardest|[Hh]ard|[Mm]ed|[Ss]oftest|[Ss]oft|[0-9]+)$/, "", g)
    src = (path ~ /sonic-pi/) ? "sonic-pi" : "hydrogen/" kit
    name = src "/" base; sub(/\.[A-Za-z0-9]+$/, "", name); gsub(/[ \t]/, "_", name)
    print c "\t" src "/" g "\t" path "\t" name
}' "$tmp/all.txt" | sort >"$tmp/clips.tsv"

cut -f1 "$tmp/clips.tsv" | uniq >"$tmp/classes.txt"

# Folds: per class, groups by decreasing size (then name) each go to the fold holding the fewest
# clips of that class so far (lowest fold on ties): balanced and deterministic.
awk -F'\t' -v folds="$FOLDS" '
FILENAME == ARGV[1] { label[$1] = FNR - 1; next }
{ key = $1 SUBSEP $2; if (!(key in size)) { order[++ng] = key } size[key]++; rows[key] = rows[key] $0 "\n" }
END {
    # selection sort of groups: class, then size descending, then name
    for (i = 1; i <= ng; i++) for (j = i + 1; j <= ng; j++) {
        split(order[i], a, SUBSEP); split(order[j], b, SUBSEP)
        if (a[1] > b[1] || (a[1] == b[1] && (size[order[j]] > size[order[i]] || \
            (size[order[j]] == size[order[i]] && a[2] > b[2])))) { t = order[i]; order[i] = order[j]; order[j] = t }
    }
    for (i = 1; i <= ng; i++) {
        split(order[i], a, SUBSEP); c = a[1]
        best = 1
        for (f = 2; f <= folds; f++) if (count[c, f] < count[c, best]) best = f
        count[c, best] += size[order[i]]
        m = split(rows[order[i]], r, "\n")
        for (k = 1; k < m; k++) { split(r[k], x, "\t"); print x[3] "\t" label[c] "\t" best "\t" x[4] }
    }
}' "$tmp/classes.txt" "$tmp/clips.tsv" | sort -t "$(printf '\t')" -k4,4 >"$tmp/sounds.tsv"

# ---- photos ----
# Scenes: MATE's nature photos, the largest landscape rendering of each Plasma wallpaper, and the
# photographs of Lomiri's (Ubuntu Touch) wallpaper packages (files NAME_by_AUTHOR.jpg; the one drawn
# pattern among them, analogpattern, is left out).
{
    find "$MATE/nature" -type f \( -iname '*.jpg' -o -iname '*.png' \) 2>/dev/null
    for d in "$PLASMA"/*/contents/images; do
        [ -d "$d" ] || continue
        ls "$d" | awk -v d="$d" -F'[x.]' '$1 >= $2 && $1 * $2 > best { best = $1 * $2; f = $0 }
            END { if (f != "") print d "/" f }'
    done
    for p in lomiri-wallpapers-16.04 lomiri-wallpapers-20.04; do
        dpkg -L "$p" 2>/dev/null | grep "^$LOMIRI/[^/]*_by_[^/]*\.jpg\$" | grep -v analogpattern || true
    done
} | sort -u >"$tmp/photos.txt"
# Objects: Tux Paint's photographic stamps (animals, plants, food, tools, instruments, vehicles, ...: cut-outs
# on a transparent background); its cartoons, letters, symbols, flags, road signs, seasonal clip art and
# toys are drawings and stay out.
find "$STAMPS" -type f -name '*.png' 2>/dev/null |
    grep -v -E 'cartoon|/symbols/|/town/(flags|roadsigns|houses)|/seasonal/|/toys|plastic' | sort >"$tmp/stamps.txt" || true

# ---- counts.md ----
{
    echo "| class | clips | groups | $(seq 1 "$FOLDS" | sed 's/^/fold /' | paste -sd'|' - | sed 's/|/ | /g') |"
    echo "|---|---:|---:|$(seq 1 "$FOLDS" | sed 's/.*/---:/' | paste -sd'|' -)|"
    awk -F'\t' -v folds="$FOLDS" '
    FILENAME == ARGV[1] { cls[FNR - 1] = $1; nc = FNR; next }
    FILENAME == ARGV[2] { grp[$1 SUBSEP $2] = 1; next }
    { n[$2]++; nf[$2, $3]++; tot++; tf[$3]++ }
    END {
        for (c in grp) { split(c, a, SUBSEP); ngrp[a[1]]++ }
        for (l = 0; l < nc; l++) {
            line = "| " cls[l] " | " n[l] " | " ngrp[cls[l]] " |"
            for (f = 1; f <= folds; f++) line = line " " nf[l, f] + 0 " |"
            print line
        }
        line = "| all | " tot " | |"; for (f = 1; f <= folds; f++) line = line " " tf[f] + 0 " |"; print line
    }' "$tmp/classes.txt" "$tmp/clips.tsv" "$tmp/sounds.tsv"
    echo
    echo "Sources of the clips (licences from each package's copyright file):"
    echo
    echo "| source | clips | licence |"
    echo "|---|---:|---|"
    cut -f4 "$tmp/sounds.tsv" | awk -F/ '{ s = ($1 == "sonic-pi") ? $1 : $1 "/" $2; n[s]++ }
        END { for (s in n) print s "\t" n[s] }' | sort | while IFS="$(printf '\t')" read -r s n; do
        case $s in
            sonic-pi) lic="CC0 (sonic-pi-samples, freesound.org uploads)" ;;
            hydrogen/Audiophob) lic="CC0" ;;
            hydrogen/BJA_Pacific) lic="CC BY-SA 3.0 US" ;;
            hydrogen/circAfrique*) lic="CC BY-SA 3.0" ;;
            hydrogen/rumpf*) lic="CC BY 3.0" ;;
            hydrogen/ColomboAcousticDrumkit) lic="GPL-2+ with composition exception" ;;
            hydrogen/*) lic="GPL-2(+) (hydrogen-drumkits)" ;;
        esac
        echo "| $s | $n | $lic |"
    done
    echo
    echo "Photos: $(wc -l <"$tmp/photos.txt") scenes ($(grep -c "^$MATE" "$tmp/photos.txt" || true) from mate-backgrounds, GPL-2+;" \
         "$(grep -c "^$PLASMA" "$tmp/photos.txt" || true) from plasma-workspace-wallpapers, GPL-2+;" \
         "$(grep -c "^$LOMIRI/[^/]*_by_" "$tmp/photos.txt" || true) from lomiri-wallpapers-16.04/-20.04, CC BY 4.0, CC BY-SA 4.0 or CC0 1.0 per photo as their copyright files say)" \
         "and $(wc -l <"$tmp/stamps.txt") photographic objects (tuxpaint-stamps-default, GPL-2)."
} >"$tmp/counts.md"

# ESC-50 layout: meta/esc50.csv (filename,fold,target,category,esc10,src_file,take) and audio/NAME.EXT
# links.  The name flattens source/kit/file (no '/', ',' or spaces); the extension stays, since
# libsox picks the decoder by it.
awk -F'\t' -v CSV="$tmp/esc50.csv" -v LINKS="$tmp/links.tsv" 'FILENAME == ARGV[1] { cls[FNR - 1] = $1; next }
{
    ext = $1; sub(/.*\./, "", ext); f = $4; gsub(/[\/, ]/, "_", f); f = f "." ext
    grp = $4; gsub(/[\/, ]/, "_", grp); sub(/[-_]?([Hh]ardest|[Hh]ard|[Mm]ed|[Ss]oftest|[Ss]oft|[0-9]+)$/, "", grp)
    print f "," $3 "," $2 "," cls[$2] ",False," grp ",A" > CSV
    print $1 "\t" f > LINKS
}' "$tmp/classes.txt" "$tmp/sounds.tsv"
sed -i '1i filename,fold,target,category,esc10,src_file,take' "$tmp/esc50.csv"
if ! cmp -s "$tmp/esc50.csv" "$OUT/esc/meta/esc50.csv" 2>/dev/null; then
    mkdir -p "$tmp/esc/meta" "$tmp/esc/audio"
    while IFS="$(printf '\t')" read -r src f; do ln -s "$src" "$tmp/esc/audio/$f"; done <"$tmp/links.tsv"
    mv "$tmp/esc50.csv" "$tmp/esc/meta/esc50.csv"
    rm -rf "$OUT/esc.old"
    [ -d "$OUT/esc" ] && mv "$OUT/esc" "$OUT/esc.old"
    mv "$tmp/esc" "$OUT/esc"
    rm -rf "$OUT/esc.old"
fi

# Install the results, touching only what changed.
for f in sounds.tsv classes.txt photos.txt stamps.txt counts.md; do
    if ! cmp -s "$tmp/$f" "$OUT/$f" 2>/dev/null; then mv "$tmp/$f" "$OUT/$f"; fi
done
n=$(wc -l <"$OUT/sounds.tsv"); c=$(wc -l <"$OUT/classes.txt"); p=$(wc -l <"$OUT/photos.txt")
[ "$n" -gt 0 ] && [ "$p" -gt 0 ] || { echo "demo-data.sh: no clips or no photos found" >&2; exit 1; }
echo "demo-data.sh: $n clips in $c classes, $FOLDS folds; $p photos, $(wc -l <"$OUT/stamps.txt") stamps" >&2
