"""Benchmark: one CNN forward + backward per sample — foglearn's batched kernel vs PyTorch's module.

Both compute the mean cross-entropy's gradient for the paper's CNN on real MNIST points, one
torch thread: ours is :class:`foglearn.learning.kernels.BatchedCNN` (Toeplitz GEMMs in MKL, numba
glue) in its two paths — ``fused`` (one compiled call that drives MKL's ``sgemm`` itself, the
default) and ``layered`` (torch GEMMs between compiled passes) — the competitor the same
:class:`foglearn.learning.models.CNN` run by autograd (oneDNN convolutions), in both memory
formats. ``g`` devices × ``w`` samples per call; the module runs each device's ``w`` samples as one
batch. Prints the median µs per sample of ``--repeats`` calls and the module's time over the
fused path's; then the forward pass alone (test-set evaluation) of 1000 samples. The fused path is
measured where it runs (:func:`foglearn.learning.fused_cnn.enabled`; ``FOGLEARN_FUSED=0`` leaves it
out); ``--no-module`` skips PyTorch's module (ours only, for before/after comparisons).

    .venv/bin/python bench/cnn_kernel.py [--repeats 30] [--no-module]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from foglearn.learning import fused_cnn, load_dataset, make_model
from foglearn.learning.kernels import BatchedCNN


def _median_us(fn, samples: int, repeats: int) -> float:
    for _ in range(3):
        fn()
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts) / samples * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--module", action=argparse.BooleanOptionalAction, default=True,
                    help="also time PyTorch's own module (autograd, oneDNN)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    ds = load_dataset("mnist")
    X, Y = torch.from_numpy(ds.x_train), torch.from_numpy(ds.y_train)
    net = make_model("cnn", seed=0)
    kernels = {"layered": BatchedCNN(net, fused=False)}
    if fused_cnn.enabled():
        kernels = {"fused": BatchedCNN(net, fused=True), **kernels}
    flat = kernels["layered"].layout.flatten(dict(net.named_parameters()))
    print("µs per sample, forward + backward, 1 thread, median of", args.repeats)
    for g, w in [(1, 256), (1, 64), (8, 32)]:
        idx = torch.randperm(len(X), generator=torch.Generator().manual_seed(g * w))[:g * w].view(g, w)
        x, y = X[idx], Y[idx]
        wt = torch.full((g, w), 1.0 / w)
        params = flat.unsqueeze(0).repeat(g, 1)
        ours = {name: _median_us(lambda k=k, p=params, x=x, y=y, wt=wt: k.loss_and_grad(p, x, y, wt), g * w,
                                 args.repeats) for name, k in kernels.items()}
        best = next(iter(ours.values()))
        row = f"g = {g}, w = {w:3d}: " + " | ".join(f"ours {name} {t:5.1f}" for name, t in ours.items())
        formats = [(torch.contiguous_format, "module"), (torch.channels_last, "module channels_last")]
        for fmt, label in formats if args.module else []:
            m = make_model("cnn", seed=0).to(memory_format=fmt)
            xs = [x[d].contiguous(memory_format=fmt) for d in range(g)]

            def step(m=m, xs=xs, y=y) -> None:
                for d in range(len(xs)):
                    m.zero_grad()
                    F.cross_entropy(m(xs[d]), y[d]).backward()

            theirs = _median_us(step, g * w, args.repeats)
            row += f" | {label} {theirs:5.1f} ({theirs / best:4.2f}x)"
        print(row, flush=True)
    xt = torch.from_numpy(ds.x_test[:1000])
    fwd = {name: _median_us(lambda k=k: k.forward(flat.unsqueeze(0), xt.unsqueeze(0)), 1000, args.repeats)
           for name, k in kernels.items()}
    row = "forward only, 1000 test samples: " + " | ".join(f"ours {name} {t:5.1f}" for name, t in fwd.items())
    if args.module:
        with torch.no_grad():
            theirs = _median_us(lambda: net(xt), 1000, args.repeats)
        row += f" | module {theirs:5.1f} ({theirs / next(iter(fwd.values())):4.2f}x)"
    print(row, flush=True)


if __name__ == "__main__":
    main()
