#!/usr/bin/python3
"""bf16_torch.py: the PyTorch baseline of bench/bf16_bench.sh, run by it in the same session.

The cases of nn_bench (bench/nn_bench.c) in PyTorch: a training step (forward, cross-entropy, backward,
SGD with momentum 0.9 and weight decay 1e-4) or an eval forward of torchvision's ResNet-18/50 with a
10-way fc, in float32 or under torch.autocast("cpu", dtype=torch.bfloat16) (fp32 master weights and
fp32 accumulation: the mode --precision bf16 is compared with).

  bf16_torch.py THREADS STEPS CASE:PREC...

CASE is r18train3 | r50train3 | r18infer3 (3x128x250, batch 32/32/64) | r18simclr (3x64x64, batch 512:
the backbone step of SimCLR's 256 pairs); PREC is fp32 or bf16.  One warm-up step, then STEPS timed
steps; prints one line per case
  torch CASE PREC best_images_s cpu_images_s
where cpu_images_s is images per CPU-second of this process x THREADS (robust to other load).
"""
import sys
import time

import torch
import torch.nn.functional as F
import torchvision

CASES = {
    "r18train3": ("resnet18", 3, 128, 250, 32, True),
    "r50train3": ("resnet50", 3, 128, 250, 32, True),
    "r18infer3": ("resnet18", 3, 128, 250, 64, False),
    "r18simclr": ("resnet18", 3, 64, 64, 512, True),
}


def run(case, prec, steps, threads):
    arch, ch, h, w, batch, train = CASES[case]
    torch.manual_seed(1)
    model = getattr(torchvision.models, arch)(num_classes=10)
    x = torch.randn(batch, ch, h, w)
    y = torch.arange(batch) % 10
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    model.train(train)
    best, best_cpu = 1e30, 1e30
    for k in range(steps + 1):
        t, c = time.perf_counter(), time.process_time()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=prec == "bf16"):
            if train:
                opt.zero_grad()
                loss = F.cross_entropy(model(x).float(), y)
            else:
                with torch.no_grad():
                    model(x)
        if train:
            loss.backward()
            opt.step()
        t, c = time.perf_counter() - t, time.process_time() - c
        if k > 0:
            best, best_cpu = min(best, t), min(best_cpu, c)
    print(f"torch {case} {prec} {batch / best:.2f} {batch / best_cpu * threads:.2f}", flush=True)


def main():
    threads, steps = int(sys.argv[1]), int(sys.argv[2])
    torch.set_num_threads(threads)
    for arg in sys.argv[3:]:
        case, prec = arg.split(":")
        run(case, prec, steps, threads)


if __name__ == "__main__":
    main()
