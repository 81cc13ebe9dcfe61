"""weights_torch_make.py: PyTorch's side of tests/weights_torch_test.sh (run with a python3 that has
torch and torchvision; Debian's python3-torch 1.13 / python3-torchvision 0.14 were used to write it).

  make DIR         a full-width torchvision ResNet-50 (3 channels, 1000 classes) from a fixed seed,
                   batch-norm statistics calibrated on random images and affine parameters randomised
                   (so eval-mode batch norm is not the identity), saved as DIR/r50.pth (torch.save zip),
                   DIR/r50.legacy.pth (legacy format) and DIR/r50.py.safetensors (written here with json
                   and numpy: an independent writer, keys unsorted, with __metadata__); input images as
                   DIR/img0.npy.. (3x75x83 each: odd, non-square sizes exercise padding and pooling
                   arithmetic), PyTorch's eval logits as DIR/logits.npy (N x 1000) and the same model
                   run in float64 as DIR/logits64.npy
  compare GOT.npz DIR TOL
                   `tsz npy --stack` logits against DIR/logits.npy: max relative error (floor: the logits'
                   RMS) at most TOL, and against DIR/logits64.npy (the model run in float64) no more than
                   4x PyTorch's own float32 error; exit 1 otherwise
  check FILE.safetensors DIR
                   parse FILE with json and numpy (the safetensors package is not needed), load it with
                   strict=True into a fresh torchvision resnet50, require every tensor equal to DIR/r50.pth's
                   and the logits equal to DIR/logits.npy

Every line printed is one finding; the shell test turns exit statuses into PASS/FAIL. """
import json
import os
import sys

import numpy as np

N_IMAGES, H, W = 2, 75, 83
SEED = 20260601


def torch_setup():
    import torch
    torch.set_num_threads(1)  # same summation order in every run: the logits of two runs are identical
    return torch


def make(d):
    torch = torch_setup()
    import torchvision
    torch.manual_seed(SEED)
    m = torchvision.models.resnet50(weights=None, num_classes=1000)
    # Batch norm as in a trained network: random affine parameters, running statistics from real
    # activations (cumulative average over a few random batches), so each BN layer changes its input.
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.weight.uniform_(0.5, 1.5)
                mod.bias.normal_(0.0, 0.2)
                mod.momentum = None
                mod.reset_running_stats()
        m.fc.bias.normal_(0.0, 0.1)
        m.train()
        for _ in range(3):
            m(torch.randn(4, 3, H, W))
    m.eval()
    sd = m.state_dict()
    torch.save(sd, os.path.join(d, "r50.pth"))
    torch.save(sd, os.path.join(d, "r50.legacy.pth"), _use_new_zipfile_serialization=False)
    write_safetensors(sd, os.path.join(d, "r50.py.safetensors"))
    x = torch.rand(N_IMAGES, 3, H, W) * 4 - 2
    for i in range(N_IMAGES):
        np.save(os.path.join(d, f"img{i}.npy"), x[i].numpy())
    with torch.no_grad():
        y = m(x)
    np.save(os.path.join(d, "logits.npy"), y.numpy())
    with torch.no_grad():  # the exact answer, up to float64 rounding: a yardstick for both float32 results
        y64 = m.double()(x.double())
    np.save(os.path.join(d, "logits64.npy"), y64.numpy())
    n = sum(v.numel() for v in sd.values())
    print(f"torch {torch.__version__}: resnet50, {len(sd)} tensors, {n} values; "
          f"logits {tuple(y.shape)}, |logit| max {y.abs().max().item():.3g}, std {y.std().item():.3g}")


def write_safetensors(sd, path):
    # Keys in reverse order and data in that order: the format sorts nothing, a reader must not assume it.
    names = list(sd.keys())[::-1]
    dt = {"torch.float32": ("F32", np.float32), "torch.int64": ("I64", np.int64)}
    header, blobs, off = {"__metadata__": {"format": "pt", "writer": "weights_torch_make.py"}}, [], 0
    for k in names:
        code, npt = dt[str(sd[k].dtype)]
        b = np.ascontiguousarray(sd[k].numpy(), dtype=np.dtype(npt).newbyteorder("<")).tobytes()
        header[k] = {"dtype": code, "shape": list(sd[k].shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(len(h).to_bytes(8, "little"))
        f.write(h)
        for b in blobs:
            f.write(b)


def read_safetensors(path):
    torch = torch_setup()
    dt = {"F32": np.float32, "F64": np.float64, "F16": np.float16, "I64": np.int64, "I32": np.int32}
    with open(path, "rb") as f:
        buf = f.read()
    n = int.from_bytes(buf[:8], "little")
    header = json.loads(buf[8:8 + n])
    data = memoryview(buf)[8 + n:]
    header.pop("__metadata__", None)
    sd, end = {}, 0
    for k, v in header.items():
        a, b = v["data_offsets"]
        arr = np.frombuffer(data[a:b], dtype=np.dtype(dt[v["dtype"]]).newbyteorder("<"))
        sd[k] = torch.from_numpy(arr.reshape(v["shape"]).copy())
        end = max(end, b)
    if end != len(data):
        raise SystemExit(f"{path}: data section {len(data)} bytes, tensors end at {end}")
    return sd


def check(path, d):
    torch = torch_setup()
    import torchvision
    sd = read_safetensors(path)
    ref = torch.load(os.path.join(d, "r50.pth"), map_location="cpu")
    bad = [k for k in ref if k not in sd or sd[k].dtype != ref[k].dtype or not torch.equal(sd[k], ref[k])]
    extra = [k for k in sd if k not in ref]
    if bad or extra:
        print(f"{path}: {len(bad)} tensors differ or are missing ({bad[:5]}), {len(extra)} unexpected ({extra[:5]})")
        return 1
    m = torchvision.models.resnet50(weights=None, num_classes=1000)
    m.load_state_dict(sd, strict=True)  # raises, listing every mismatch, if anything is off
    m.eval()
    x = torch.from_numpy(np.stack([np.load(os.path.join(d, f"img{i}.npy")) for i in range(N_IMAGES)]))
    with torch.no_grad():
        y = m(x).numpy()
    want = np.load(os.path.join(d, "logits.npy"))
    diff = float(np.abs(y - want).max())
    print(f"{path}: {len(sd)} tensors equal to r50.pth's; load_state_dict(strict=True) ok; "
          f"logits max abs diff {diff:.3g} from the original model's")
    return 0 if diff == 0.0 else 1


def compare(got_path, d, tol):
    got = np.load(got_path)["data"].astype(np.float64)
    want = np.load(os.path.join(d, "logits.npy")).astype(np.float64)
    exact = np.load(os.path.join(d, "logits64.npy"))
    if got.shape != want.shape:
        print(f"shape {got.shape}, PyTorch's {want.shape}")
        return 1
    # Relative to each logit, with the logits' RMS as the floor: a logit near zero is judged by the
    # absolute error a float32 network of this depth makes (PyTorch's own is ~1e-4 of the RMS here).
    scale = np.sqrt((want ** 2).mean())
    d_t = np.abs(got - want)
    rel = (d_t / np.maximum(np.abs(want), scale)).max()
    e_ours, e_torch = np.abs(got - exact).max(), np.abs(want - exact).max()
    # Our float32 forward must be about as accurate as PyTorch's float32 forward: both against float64.
    ok = rel <= tol and e_ours <= 4 * e_torch
    print(f"max abs err {d_t.max():.3g}, max rel err {rel:.3g} (floor: logit RMS {scale:.3g}; tol {tol:g}); "
          f"vs float64: ours {e_ours:.3g}, PyTorch float32 {e_torch:.3g} (limit 4x)")
    return 0 if ok else 1


if __name__ == "__main__":
    a = sys.argv[1:]
    if a[:1] == ["make"] and len(a) == 2:
        make(a[1])
    elif a[:1] == ["check"] and len(a) == 3:
        sys.exit(check(a[1], a[2]))
    elif a[:1] == ["compare"] and len(a) == 4:
        sys.exit(compare(a[1], a[2], float(a[3])))
    else:
        sys.exit("usage: weights_torch_make.py make DIR | check FILE.safetensors DIR | compare GOT.npz DIR TOL")
