#!/bin/sh
# weights_torch_test.sh: a full-width torchvision ResNet-50 (25.6 M parameters, 1000 classes) made by
# PyTorch itself (tests/weights_torch_make.py, Debian's python3-torch and python3-torchvision): embed
# --logits on its torch.save zip, legacy .pth and a safetensors file written independently with json and
# numpy gives PyTorch's logits; `tsz convert` to safetensors gives a file PyTorch loads with strict=True
# into torchvision's resnet50 with every tensor equal; TSZ <-> safetensors round trips keep every byte.
# Skipped, reported as skipped, when that python3 has no torch/torchvision.  Also (no torch needed): a
# torch zip's storages used in place from the mapped file still have their CRCs checked.
. "$EARSIGHT_ROOT/tests/lib.sh"
# Debian's interpreter: python3-torch installs for /usr/bin/python3, not for a python3 earlier on PATH
# (pyenv, venv).  EARSIGHT_TORCH_PYTHON overrides.
PY=${EARSIGHT_TORCH_PYTHON:-/usr/bin/python3}
MK="$EARSIGHT_ROOT/tests/weights_torch_make.py"
# ---- without torch: a torch-written zip (the interop fixture) is used in place when mapped; its CRCs are
# still checked: one flipped byte in the largest storage is an error naming the entry
SH=$(shared_dir)
FX="$SH/reference/interop/resnet18_w16.pth"
ANYPY=$(command -v python3 || echo "$PY")
if [ -n "$SH" ] && [ -f "$FX" ] && "$ANYPY" -c 'import zipfile' 2>/dev/null; then
    cp "$FX" flip.pth && chmod u+w flip.pth
    "$ANYPY" - flip.pth <<'PY'
import struct, sys, zipfile
p = sys.argv[1]
i = max(zipfile.ZipFile(p).infolist(), key=lambda e: e.file_size)
with open(p, "r+b") as f:
    f.seek(i.header_offset + 26)
    nl, el = struct.unpack("<HH", f.read(4))
    f.seek(i.header_offset + 30 + nl + el + i.file_size // 2)
    b = f.read(1)
    f.seek(-1, 1)
    f.write(bytes([b[0] ^ 0x10]))
PY
    expect_fail "zip .pth used in place: a flipped data byte is a CRC error" 1 "CRC" tsz info flip.pth
    check "zip .pth used in place: the intact fixture loads" tsz info "$FX"
elif [ -z "$SH" ] || [ ! -f "$FX" ]; then
    skip "zip .pth CRC check: the interop fixture \$EARSIGHT_SHARED/reference/interop/resnet18_w16.pth is absent"
else
    skip "zip .pth CRC check: $ANYPY has no zipfile module (Debian: python3)"
fi

if ! "$PY" -c 'import torch, torchvision, numpy' 2>/dev/null; then
    skip "weights vs PyTorch: $PY cannot import torch, torchvision and numpy (Debian: python3-torch python3-torchvision)"
    finish
fi

# same_records A B: every record's data, name and shape equal (attributes and history excluded)
same_records() { tsz npy -o "$1.npz" "$1" && tsz npy -o "$2.npz" "$2" && cmp -s "$1.npz" "$2.npz"; }
# st_data FILE: the data section of a safetensors file (after the 8-byte length and the JSON header)
st_data() { n=$(od -An -tu8 -N8 "$1" | tr -d ' '); tail -c +$((n + 9)) "$1"; }

if ! "$PY" "$MK" make . >mk.out 2>mk.err; then
    fail "weights vs PyTorch: weights_torch_make.py make: $(tail -c 300 mk.err)"
    finish
fi
echo "# $(cat mk.out)"
tsz from-npy -o in.tsz img0.npy img1.npy

# Tolerance: float32 summation order differs (im2col + BLIS against oneDNN) over 50 layers with
# 2048-term reductions; on this model both PyTorch's and our float32 logits are ~1e-4 from the float64
# answer, i.e. ~1e-4 of the logits' RMS.  1e-3 leaves margin; a wrong or mis-converted tensor moves
# logits by 1e-2 or more.  The script also requires our error against float64 within 4x PyTorch's.
for f in r50.pth r50.legacy.pth r50.py.safetensors; do
    if embed --logits -j 2 --model "$f" -o "$f.logits.tsz" in.tsz 2>em.err &&
        tsz npy --stack -o "$f.npz" "$f.logits.tsz" 2>>em.err; then
        if "$PY" "$MK" compare "$f.npz" . 1e-3 >cmp.out 2>&1; then
            pass "embed --model $f --logits (full-width resnet50) equals PyTorch: $(cat cmp.out)"
        else
            fail "embed --model $f --logits differs from PyTorch: $(tail -c 400 cmp.out)"
        fi
    else
        fail "embed --model $f: $(tail -c 300 em.err)"
    fi
done

# tsz info infers the architecture from names and shapes
tsz info r50.legacy.pth >i.txt 2>&1 && grep -q 'format: pth' i.txt &&
    grep -q 'architecture: resnet50 width 64 in_channels 3 num_classes 1000' i.txt && grep -q 'tensors: 320' i.txt &&
    pass "info: torchvision resnet50 legacy .pth: resnet50 width 64, 3 channels, 1000 classes, 320 tensors" ||
    fail "info: r50.legacy.pth: $(head -c 400 i.txt)"

# our safetensors, read by PyTorch
if tsz convert r50.pth -o r50.safetensors 2>cv.err; then
    if "$PY" "$MK" check r50.safetensors . >ck.out 2>&1; then
        pass "convert: .pth -> safetensors loads into torchvision resnet50 with strict=True, same tensors and logits: $(cat ck.out)"
    else
        fail "convert: r50.safetensors in PyTorch: $(tail -c 400 ck.out)"
    fi
else
    fail "convert: r50.pth -> r50.safetensors: $(tail -c 300 cv.err)"
fi

# round trips at full width: TSZ -> safetensors -> TSZ, and both routes to safetensors agree byte for byte
if tsz convert r50.legacy.pth -o r50.tsz 2>cv.err && tsz convert r50.tsz -o r50b.safetensors 2>>cv.err &&
    tsz convert r50b.safetensors -o r50c.tsz 2>>cv.err; then
    same_records r50.tsz r50c.tsz && pass "convert: resnet50 TSZ -> safetensors -> TSZ keeps every tensor byte-identical" ||
        fail "convert: resnet50 TSZ -> safetensors -> TSZ changed tensors"
    # the headers differ in __metadata__ (history); the data sections must not
    [ -e r50.safetensors ] && [ "$(st_data r50.safetensors | cksum)" = "$(st_data r50b.safetensors | cksum)" ] &&
        pass "convert: zip .pth -> safetensors and legacy .pth -> TSZ -> safetensors: identical tensor data" ||
        fail "convert: the data sections of r50.safetensors and r50b.safetensors differ"
else
    fail "convert: round trip: $(tail -c 300 cv.err)"
fi
finish
