"""One MLP device-step: the arithmetic bound against what the trainer spends per device-step.

**Bound.** One device, its model in cache, takes ``--bound-steps`` single-sample SGD steps
(forward, backward and update of the MNIST MLP, eq. (3)) back to back in one compiled call of
:func:`foglearn.learning.kernels.mlp_devices` — the trainer's own kernel, so the bound is the
arithmetic of one step and nothing else (its start from ``w`` and its share of eq. (4) are paid
once per 4,000 steps). ``time.thread_time`` around the call; median of ``--repeats`` runs.

**Workload.** The large-network workload of ``bench/scale.py`` (``synthetic(n, T = 100,
topology = "random", ρ = 10/n, capacities = True)``, the default linear plan, MNIST MLP, τ = 10,
η = 0.01, eq. (3)), trained by :func:`foglearn.train` at one thread. Reported per device-step
(a device and slot with ``G_i(t) > 0``): the CPU time inside the compiled calls (each device's
start from ``w``, its steps, its share of eq. (4)'s sum), and the whole ``train`` (also the
schedule, the point stream, the sums' additions and the final test-set evaluation), each against
the bound. Both in one process, one thread (``OMP/MKL/NUMBA_NUM_THREADS=1``, ``torch`` 1 thread).

    OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 NUMBA_NUM_THREADS=1 .venv/bin/python bench/device_step.py [--n 10000]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import warnings

for _v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402


def bound(ds, steps: int, repeats: int, seed: int = 0) -> list[float]:
    """µs per single-sample step of one device whose model stays in cache (one call, ``steps`` steps)."""
    from foglearn.learning import kernels
    from foglearn.learning.models import make_model

    module = make_model("mlp", seed=seed)
    kernel = kernels.batched_kernel(module)
    glob = kernels.mlp_kernel_layout(kernel, kernel.layout.flatten(dict(module.named_parameters())))
    X, Y = torch.from_numpy(ds.x_train), torch.from_numpy(ds.y_train)
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(repeats):
        pts = rng.integers(0, len(Y), steps)
        out_sum, loss = np.zeros(kernel.layout.size), np.empty(steps)
        t0 = time.thread_time()
        kernels.mlp_devices(kernel, X, Y, glob, np.array([0, steps]), np.arange(steps + 1), pts, np.ones(1), 0.01,
                            out_sum, loss)
        out.append((time.thread_time() - t0) / steps * 1e6)
    return out


def workload(ds, n: int, seed: int = 0) -> dict:
    """The trainer on ``bench/scale.py``'s workload at ``n`` devices, one thread; CPU µs per device-step."""
    from scale import workload as scenario  # this directory's bench/scale.py: the same workload

    from foglearn.learning import kernels, train
    from foglearn.planning import plan

    s = scenario(n, 100, seed)
    p = plan(s)
    inside = [0.0]
    compiled = kernels._mlp_devices

    def timed(*a):
        t0 = time.thread_time()
        compiled(*a)
        inside[0] += time.thread_time() - t0

    kernels._mlp_devices = timed
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            c0 = time.process_time()
            r = train(s, p, dataset=ds, model="mlp", period=10, lr=0.01, seed=seed, eval_every=0, threads=1)
            whole = time.process_time() - c0
    finally:
        kernels._mlp_devices = compiled
    steps = int((r.processed > 0).sum())
    return {"steps": steps, "kernel_us": inside[0] / steps * 1e6, "train_us": whole / steps * 1e6,
            "accuracy": r.accuracy}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=10_000, help="devices of the workload")
    ap.add_argument("--bound-steps", type=int, default=4000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=3, help="workload runs (the first also compiles)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    from foglearn.learning import load_dataset

    ds = load_dataset("mnist")
    bound(ds, 100, 1)  # compile
    # the machine may be shared: the bound is measured right before and after each workload run, and
    # each run is compared with the median of its two neighbours' runs
    bounds = [bound(ds, args.bound_steps, args.repeats)]
    for i in range(args.rounds):
        r = workload(ds, args.n)
        bounds.append(bound(ds, args.bound_steps, args.repeats))
        b = statistics.median(bounds[-2] + bounds[-1])
        print(f"workload n = {args.n}, run {i + 1}: {r['steps']:,} device-steps, accuracy {r['accuracy']:.4f}; "
              f"bound {b:.2f} µs (median of {2 * args.repeats} runs around it); compiled calls "
              f"{r['kernel_us']:.2f} µs per device-step ({r['kernel_us'] / b:.2f}× the bound), whole train "
              f"{r['train_us']:.2f} µs ({r['train_us'] / b:.2f}×)")

if __name__ == "__main__":
    main()
