#!/bin/sh
# tsz_norm_test.sh: `tsz norm` (per-channel scaling for transfer) and `img2tensor --matte`, checked
# against NumPy/PIL computing the same definitions independently: channel statistics over every
# example of the --fit stream, targets from --like (u8 counted as x / 255) or --mean/--std, the affine
# map applied to another stream; companions, names, labels and folds kept; bad input and misuse.
. "$EARSIGHT_ROOT/tests/lib.sh"

PY=${EARSIGHT_TORCH_PYTHON:-/usr/bin/python3}
if ! "$PY" -c 'import numpy' 2>/dev/null; then
    skip "NumPy (python3-numpy for $PY) not installed: tsz norm not checked"
    finish
fi

# Streams from .npy files NumPy writes: fit (5 records 3x4x6 f32, folds 1..5), apply (3 records),
# like (4 records 3x5x5 u8), one 2-D (H x W) stream, and a 2-channel record.
"$PY" - <<'EOF' || fail "numpy could not write the inputs"
import numpy as np
r = np.random.default_rng(5)
for i in range(5):
    x = r.normal(size=(3, 4, 6)) * np.array([2.0, 0.5, 7.0])[:, None, None] + np.array([-9.0, 1.0, 3.0])[:, None, None]
    np.save(f"fit{i}.npy", x.astype(np.float32))
for i in range(3):
    np.save(f"app{i}.npy", (r.normal(size=(3, 4, 6)) * 3).astype(np.float32))
for i in range(4):
    np.save(f"like{i}.npy", r.integers(0, 256, size=(3, 5, 5)).astype(np.uint8))
for i in range(3):
    np.save(f"flat{i}.npy", (r.normal(size=(4, 6)) * 4 + 2).astype(np.float32))
np.save("two.npy", np.ones((2, 4, 6), np.float32))
np.save("const.npy", np.full((3, 4, 6), 2.5, np.float32))
np.save("vec.npy", np.ones(7, np.float32))
EOF
for i in 0 1 2 3 4; do tsz from-npy --label $((i % 2)) --fold $((i + 1)) fit$i.npy; done | tsz cat -o fit.tsz
tsz from-npy app0.npy app1.npy app2.npy -o app.tsz
tsz from-npy like0.npy like1.npy like2.npy like3.npy -o like.tsz
tsz from-npy flat0.npy flat1.npy flat2.npy -o flat.tsz
tsz from-npy two.npy -o two.tsz
for i in 0 1 2; do tsz from-npy const.npy; done | tsz cat -o const.tsz
tsz from-npy vec.npy -o vec.tsz

# The reference: mean and population sd per channel over all fit records (float64), targets from
# like / 255 (MODE like) or "MEANS:SDS" (MODE list), y = (x - m) / s * S + M on the N records APP0..
ref_check() { # WHAT OUT.tsz MODE APP_PREFIX N [TARGETS]
    what=$1 out=$2 mode=$3 app=$4 n=$5 tg=${6:-}
    tsz npy --stack "$out" -o out.npz 2>/dev/null || { fail "$what: tsz npy"; return; }
    if "$PY" - "$mode" "$app" "$n" "$tg" >py.out 2>&1 <<'EOF'; then pass "$what"; else fail "$what: $(tail -n 2 py.out)"; fi
import sys
import numpy as np
mode, app, n, tg = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
fit = np.stack([np.load(f"fit{i}.npy").astype(np.float64) for i in range(5)])
m = fit.mean(axis=(0, 2, 3)); s = fit.std(axis=(0, 2, 3))
if mode == "like":
    like = np.stack([np.load(f"like{i}.npy").astype(np.float64) / 255 for i in range(4)])
    M = like.mean(axis=(0, 2, 3)); S = like.std(axis=(0, 2, 3))
else:
    M, S = (np.array([float(v) for v in t.split(",")]) for t in tg.split(":"))
    M = np.broadcast_to(M, (3,)); S = np.broadcast_to(S, (3,))
arrs = np.load("out.npz")["data"]
assert arrs.dtype == np.float32 and arrs.shape[0] == n, (arrs.dtype, arrs.shape)
for i in range(n):
    x = np.load(f"{app}{i}.npy").astype(np.float64)
    want = (x - m[:, None, None]) / s[:, None, None] * S[:, None, None] + M[:, None, None]
    err = np.abs(arrs[i] - want).max() / max(1.0, np.abs(want).max())
    assert err < 2e-6, (i, err)
print("ok")
EOF
}

check "tsz norm --fit --like runs" tsz norm --fit fit.tsz --like like.tsz app.tsz -o o1.tsz
ref_check "--like: every channel mapped to the like stream's mean and sd (x/255), as NumPy" o1.tsz like app 3
check "tsz norm --mean --std (one value) runs" tsz norm --fit fit.tsz --mean 0.5 --std 0.25 fit.tsz -o o2.tsz
ref_check "--mean 0.5 --std 0.25 applied to the fit stream itself, as NumPy" o2.tsz list fit 5 "0.5:0.25"
check "tsz norm per-channel targets runs" tsz norm --fit fit.tsz --mean 1,2,3 --std 1,0.1,10 app.tsz -o o3.tsz
ref_check "--mean 1,2,3 --std 1,0.1,10, as NumPy" o3.tsz list app 3 "1,2,3:1,0.1,10"
check "tsz norm default targets (0, 1) through pipes" sh -c 'tsz cat fit.tsz | tsz norm --fit fit.tsz - | tsz cat -o o4.tsz'
ref_check "default --mean 0 --std 1 from stdin to stdout, as NumPy" o4.tsz list fit 5 "0:1"

# Names, labels, folds survive; the output is f32 and records the map.
if [ "$(tsz info --list --no-values fit.tsz | awk '$4 == "label" {print $1, $5, $7}')" = \
     "$(tsz info --list --no-values o2.tsz | awk '$4 == "label" {print $1, $5, $7}')" ] &&
   tsz info --list --no-values o2.tsz | awk '$4 == "label"' | grep -q ' f32 ' &&
   tsz info o2.tsz | grep -q '^    norm=c0: .* x + .*; c1: .*; c2: .* (fit fit.tsz)$'
then pass "names, labels and folds kept, records f32, attribute norm holds each channel's map"
else fail "records or the norm attribute differ: $(tsz info o2.tsz | grep norm=)"; fi

# H x W records are one channel.
"$PY" - <<'EOF' >flat.want
import numpy as np
x = np.stack([np.load(f"flat{i}.npy").astype(np.float64) for i in range(3)])
print("%.4f %.4f" % (((x - x.mean()) / x.std()).mean(), ((x - x.mean()) / x.std()).std()))
EOF
tsz norm --fit flat.tsz flat.tsz -o flat_n.tsz 2>/dev/null
got=$(tsz info flat_n.tsz | awk '/values:/ {printf "%.4f %.4f\n", $(NF-2), $NF}' | sed 's/^-0.0000/0.0000/')
if [ "$got" = "$(sed 's/^-0.0000/0.0000/' flat.want)" ]; then pass "H x W records are one channel: mean 0, sd 1 ($got)"
else fail "H x W: got '$got', NumPy $(cat flat.want)"; fi

# Soft-label companions are copied as they are.
"$PY" -c 'import numpy as np; np.save("soft.npy", np.array([0.25, 0.75], np.float32))'
tsz from-npy --attr soft_labels=1 --name a fit0.npy -o s1.tsz && tsz from-npy --name 'a#soft' soft.npy -o s2.tsz &&
    tsz cat s1.tsz s2.tsz -o soft.tsz && tsz norm --fit soft.tsz soft.tsz -o soft_n.tsz 2>norm.err
if tsz npy soft_n.tsz -o soft_out.npz 2>/dev/null && "$PY" -c '
import numpy as np
z = np.load("soft_out.npz")
assert z.files == ["a", "a#soft"] and (z["a#soft"] == np.load("soft.npy")).all() and abs(z["a"].std() - 1) < 1e-5'
then pass "a NAME#soft companion (soft_labels=1) is copied unchanged and is no example"
else fail "soft companion: $(cat norm.err)"; fi

# Bad input: one line naming the file (and record), exit 1; misuse: exit 2.
tsz cat fit.tsz two.tsz -o mixed.tsz
expect_fail "an example with another channel count in --fit names file and record" 1 "mixed.tsz: record 5 (two): 2 channels, the first example had 3" \
    tsz norm --fit mixed.tsz app.tsz -o x.tsz
expect_fail "INPUT with another channel count names the record" 1 "two.tsz: record 0 (two): 2 channels, but fit.tsz has 3" \
    tsz norm --fit fit.tsz two.tsz -o x.tsz
expect_fail "a constant channel cannot be scaled" 1 "const.tsz: channel 0 has standard deviation 0" \
    tsz norm --fit const.tsz app.tsz -o x.tsz
expect_fail "a vector record is no image" 1 "vec.tsz: record 0 (vec): rank 1, expected C x H x W or H x W" \
    tsz norm --fit vec.tsz app.tsz -o x.tsz
expect_fail "--like with another channel count" 1 "two.tsz: 2 channels, but fit.tsz has 3" \
    tsz norm --fit fit.tsz --like two.tsz app.tsz -o x.tsz
expect_fail "two --mean values for three channels" 1 "--mean gives 2 values for 3 channels" \
    tsz norm --fit fit.tsz --mean 1,2 app.tsz -o x.tsz
expect_fail "a missing --fit stream names it" 1 "nosuch.tsz" tsz norm --fit nosuch.tsz app.tsz -o x.tsz
[ ! -e x.tsz ] && pass "no output file after the failures" || fail "x.tsz exists after failed runs"
expect_fail "no --fit" 2 "--fit=FILE is required" tsz norm app.tsz
expect_fail "--like and --mean together" 2 "exclude each other" tsz norm --fit fit.tsz --like like.tsz --mean 0 app.tsz
expect_fail "--std 0" 2 "--std: '0' is not a list of positive numbers" tsz norm --fit fit.tsz --std 0 app.tsz
expect_fail "--mean not a number" 2 "--mean: '1,x' is not a list of numbers" tsz norm --fit fit.tsz --mean 1,x app.tsz
expect_fail "stdin as --fit and INPUT" 2 "standard input ('-') can be read once" sh -c 'tsz norm --fit - - <fit.tsz'

# img2tensor --matte: alpha blended onto a gray level, as out = (v a + m (255 - a) + 127) / 255 of PIL's RGBA.
if "$PY" -c 'import PIL' 2>/dev/null; then
    "$PY" - <<'EOF'
import numpy as np
from PIL import Image
r = np.random.default_rng(2)
Image.fromarray(r.integers(0, 256, size=(9, 11, 4)).astype(np.uint8), "RGBA").save("rgba.png")
Image.fromarray(r.integers(0, 256, size=(7, 5, 2)).astype(np.uint8), "LA").save("la.png")
p = Image.fromarray(r.integers(0, 4, size=(6, 8)).astype(np.uint8), "P")
p.putpalette([10, 20, 30, 200, 100, 50, 0, 255, 0, 255, 255, 255]); p.info["transparency"] = bytes([0, 128, 255, 30])
p.save("pal.png", transparency=bytes([0, 128, 255, 30]))
EOF
    for v in 255 0 128; do
        img2tensor --u8 --no-labels --matte $v rgba.png la.png pal.png -o matte$v.tsz && tsz npy matte$v.tsz -o matte$v.npz
    done 2>/dev/null
    if "$PY" - >py.out 2>&1 <<'EOF'; then pass "--matte 0/128/255: RGBA, gray+alpha and palette+tRNS PNGs blended as PIL's RGBA values say"; else fail "--matte: $(tail -n 2 py.out)"; fi
import numpy as np
from PIL import Image
for v in (255, 0, 128):
    z = np.load(f"matte{v}.npz")
    arrs = {z[k].shape: z[k] for k in z.files}   # the three images differ in size
    for f in ("rgba.png", "la.png", "pal.png"):
        x = np.asarray(Image.open(f).convert("RGBA")).astype(np.int64)
        a = x[..., 3:4]
        want = ((x[..., :3] * a + v * (255 - a) + 127) // 255).transpose(2, 0, 1)
        g = arrs[want.shape]
        assert (g.astype(np.int64) == want).all(), (v, f, np.abs(g - want).max())
print("ok")
EOF
    img2tensor --u8 --no-labels rgba.png -o drop.tsz 2>/dev/null && tsz npy drop.tsz -o drop.npy 2>/dev/null
    if "$PY" -c '
import numpy as np; from PIL import Image
assert (np.load("drop.npy") == np.asarray(Image.open("rgba.png").convert("RGB")).transpose(2, 0, 1)).all()'; then
        pass "without --matte alpha is dropped, as PIL convert('RGB')"
    else fail "without --matte the pixels differ from PIL convert('RGB')"; fi
    tsz info matte128.tsz | grep -q '^    matte=128$' && pass "the matte attribute records the gray level" ||
        fail "no matte=128 attribute"
else
    skip "PIL (python3-pil) not installed: img2tensor --matte not checked"
fi
expect_fail "--matte 256" 2 "--matte: '256' is not an integer in \[0, 255\]" img2tensor --matte 256 rgba.png
finish
