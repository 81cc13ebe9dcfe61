#!/usr/bin/python3
"""simclr_torch.py: the PyTorch baseline of bench/simclr_bench.sh, run by it in the same session.

A SimCLR training step as simclr-train does it: torchvision ResNet-18 (width 64, fc removed), the
SimCLR v1 projection head (Linear-BN-ReLU-Linear, 512-512-128), NT-Xent at temperature 0.5 over the 2B
views, and a LARS step (momentum 0.9, trust 0.001, weight decay 1e-6, BN and bias parameters excluded).

  simclr_torch.py THREADS STEPS IMAGE_DIR CASE...

CASE is STEM:SIZE:BATCH:AUG with AUG = 0 (random tensors, no augmentation cost) or N (SimCLR's
torchvision augmentation of decoded PIL images in a DataLoader with N worker processes).  Each case
runs one warm-up step and STEPS timed steps; it prints one line
  torch CASE best_pairs_s mean_pairs_s cpu_pairs_s
where cpu_pairs_s is pairs per CPU-second (this process and its loader workers) x THREADS, the rate the
code achieves while it runs on a machine shared with other work.  With workers the wall-clock rates
are optimistic: batches prefetched during the warm-up step hide augmentation work; the CPU rate
counts all of it.  CASE augonly:SIZE:N times the
augmentation alone on N images in this process and prints "torch CASE pairs_per_cpu_second".
"""
import os
import sys
import time

import psutil
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision
import torchvision.transforms as T
from PIL import Image


def make_model(stem):
    enc = torchvision.models.resnet18()
    if stem == "small":
        enc.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        enc.maxpool = nn.Identity()
    enc.fc = nn.Identity()
    return nn.Sequential(enc, nn.Linear(512, 512, bias=False), nn.BatchNorm1d(512), nn.ReLU(),
                         nn.Linear(512, 128))


def ntxent(z, t=0.5):
    z = F.normalize(z, dim=1)
    n2 = z.shape[0]
    s = z @ z.t() / t
    s.fill_diagonal_(float("-inf"))
    return F.cross_entropy(s, torch.arange(n2).roll(n2 // 2))


class LARS:
    """SimCLR's LARS: excluded parameters (1-d: BN and biases) get plain momentum SGD."""

    def __init__(self, params, lr, momentum=0.9, wd=1e-6, trust=0.001):
        self.params = [p for p in params if p.requires_grad]
        self.lr, self.momentum, self.wd, self.trust = lr, momentum, wd, trust
        self.buf = [torch.zeros_like(p) for p in self.params]

    def zero_grad(self):
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self):
        for p, v in zip(self.params, self.buf):
            g = p.grad
            if p.ndim > 1:
                g = g.add(p, alpha=self.wd)
                wn, gn = torch.linalg.vector_norm(p), torch.linalg.vector_norm(g)
                ratio = torch.where((wn > 0) & (gn > 0), self.trust * wn / gn, torch.ones_like(wn))
                g = g * ratio
            v.mul_(self.momentum).add_(g, alpha=self.lr)
            p.sub_(v)


class Pairs(torch.utils.data.Dataset):
    """Two SimCLR views of each decoded image, as augment --policy simclr --views 2 makes them."""

    def __init__(self, images, size):
        self.images = images
        blur = size // 10 // 2 * 2 + 1
        self.tf = T.Compose([
            T.RandomResizedCrop(size, scale=(0.08, 1.0), interpolation=T.InterpolationMode.BICUBIC),
            T.RandomHorizontalFlip(),
            T.RandomApply([T.ColorJitter(0.8, 0.8, 0.8, 0.2)], p=0.8),
            T.RandomGrayscale(p=0.2),
            T.RandomApply([T.GaussianBlur(blur, sigma=(0.1, 2.0))], p=0.5),
            T.ToTensor()])

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        im = self.images[i]
        return self.tf(im), self.tf(im)


def cpu_seconds(procs):
    s = 0.0
    for p in procs:
        try:
            t = p.cpu_times()
            s += t.user + t.system
        except psutil.Error:
            pass
    return s


def aug_only(case, images):
    """augonly:SIZE:N: the augmentation alone, N pairs in this process; prints pairs per CPU-second."""
    _, size, n = case.split(":")
    ds = Pairs(images[:int(n)], int(size))
    torch.manual_seed(0)
    # one thread, as in a DataLoader worker: the main process's OpenMP team would spin on every
    # small tensor operation of the transforms and bill that as CPU time
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    c = time.process_time()
    for i in range(len(ds)):
        ds[i]
    c = time.process_time() - c
    torch.set_num_threads(threads)
    print("torch %s %.3f" % (case, len(ds) / c), flush=True)


def run(case, threads, steps, images):
    if case.startswith("augonly:"):
        return aug_only(case, images)
    stem, size, batch, aug = case.split(":")
    size, batch, aug = int(size), int(batch), int(aug)
    torch.manual_seed(0)
    model = make_model(stem)
    model.train()
    opt = LARS(model.parameters(), lr=0.3 * batch / 256)
    me = psutil.Process()
    if aug:
        need = batch * (steps + 1)
        imgs = (images * (need // len(images) + 1))[:need]
        loader = torch.utils.data.DataLoader(Pairs(imgs, size), batch_size=batch, shuffle=True,
                                             num_workers=aug, drop_last=True, prefetch_factor=2,
                                             persistent_workers=False)
        it = iter(loader)
        workers = [psutil.Process(w.pid) for w in it._workers]
    else:
        x = torch.rand(2 * batch, 3, size, size)
        workers = []
    times = []
    t_all = c_all = None
    for step in range(steps + 1):
        if step == 1:   # the timed part starts after the warm-up step
            t_all, c_all = time.time(), cpu_seconds([me])
        t = time.time()
        if aug:
            v1, v2 = next(it)
            x = torch.cat([v1, v2])
        opt.zero_grad()
        loss = ntxent(model(x))
        loss.backward()
        opt.step()
        times.append(time.time() - t)
        if not torch.isfinite(loss):
            sys.exit("simclr_torch: non-finite loss")
    t_all, c_all = time.time() - t_all, cpu_seconds([me]) - c_all
    # The workers prefetch: much of their work is done during the warm-up step, before the timed
    # part.  They make exactly steps + 1 batches, so all their CPU time divided by that is the
    # augmentation's share of one step (read before the loader shuts them down).
    if workers:
        c_all += cpu_seconds(workers) * steps / (steps + 1)
        del it, loader
    best = batch / min(times[1:])
    mean = batch * steps / t_all
    print("torch %s %.3f %.3f %.3f" % (case, best, mean, batch * steps / c_all * threads), flush=True)


def main():
    if len(sys.argv) < 5:
        sys.exit("usage: simclr_torch.py THREADS STEPS IMAGE_DIR CASE...")
    threads, steps, root = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    torch.set_num_threads(threads)
    images = []
    if any(c.startswith("augonly:") or not c.endswith(":0") for c in sys.argv[4:]):
        paths = []
        for d, _, files in os.walk(root):
            paths += [os.path.join(d, f) for f in files if f.endswith(".png")]
        for p in sorted(paths)[:1024]:   # decoded beforehand: the earsight side reads decoded u8 tensors
            with Image.open(p) as im:
                images.append(im.convert("RGB"))
    for case in sys.argv[4:]:
        run(case, threads, steps, images)


if __name__ == "__main__":
    main()
