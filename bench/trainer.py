"""Benchmark: the device-parallel trainer vs a plain per-device PyTorch loop (and Flower, if present).

Workload (the paper's, SPEC §4): T = 100 slots, D_i(t) ~ U{0..⌊60000/(nT)⌋} new MNIST points per
device and slot, one SGD step per device and slot (eq. 3, η = 0.01), aggregation every slot
(τ = 1, weighted by points, eq. 4), no data movement, CNN; the final model is evaluated once.
At n = 1000 the paper's allocation gives ⌊0.6⌋ = 0 points, so that row uses D_i(t) ~ U{0..6}
(the n = 100 per-device load; 300k points, the stream wraps over the 60k training set).

Competitor: a straightforward per-device loop — one model copy and one torch.optim.SGD per device,
zero_grad/forward/backward/step per device, weighted state averaging and load_state_dict every
slot. Same threads (``--threads``, default 2), same data, same initial model.

Prints the median of ``--repeats`` runs and the ratios. Other processes may share the machine:
run it on an idle machine for numbers you quote.

    .venv/bin/python bench/trainer.py [--threads 2] [--repeats 3] [--sizes 10,100] [--big 1000]
"""

from __future__ import annotations

import argparse
import copy
import json
import resource
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from foglearn.learning import centralised, load_dataset, make_model, no_movement_plan, train
from foglearn.network.scenario import Scenario

HERE = Path(__file__).resolve().parent


def workload(n: int, T: int = 100, max_points: int | None = None, seed: int = 0) -> Scenario:
    m = max_points if max_points is not None else 60000 // (n * T)
    rng = np.random.default_rng(seed)
    D = rng.integers(0, m + 1, (T, n))
    return Scenario(collected=D, proc_cost=np.ones((T, n)), error_weight=np.ones((T, n)),
                    src=np.zeros(0, int), dst=np.zeros(0, int), link_cost=np.zeros((T, 0)))


def plain_loop(s: Scenario, ds, model: str, lr: float = 0.01, seed: int = 0) -> tuple[float, float]:
    """The honest competitor: a per-device loop with its own model copies and optimizers."""
    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    total = int(s.collected.sum())
    stream = np.concatenate([rng.permutation(ds.n_train) for _ in range(-(-total // ds.n_train))])
    X, Y = torch.from_numpy(ds.x_train), torch.from_numpy(ds.y_train)
    glob = make_model(model, seed=seed)
    nets = [copy.deepcopy(glob) for _ in range(s.n_devices)]
    opts = [torch.optim.SGD(m.parameters(), lr=lr) for m in nets]
    k = 0
    for t in range(s.horizon):
        H = np.zeros(s.n_devices)
        for i in range(s.n_devices):
            d = int(s.collected[t, i])
            if d == 0:
                continue
            idx = torch.from_numpy(stream[k:k + d])
            k += d
            opts[i].zero_grad()
            F.cross_entropy(nets[i](X[idx]), Y[idx]).backward()
            opts[i].step()
            H[i] = d
        if H.sum() > 0:
            w = H / H.sum()
            with torch.no_grad():
                states = [m.state_dict() for m in nets]
                avg = {key: sum(float(w[i]) * states[i][key] for i in range(s.n_devices) if w[i] > 0)
                       for key in states[0]}
                glob.load_state_dict(avg)
                for m in nets:
                    m.load_state_dict(avg)
    with torch.no_grad():
        acc = float((glob(torch.from_numpy(ds.x_test)).argmax(1) == torch.from_numpy(ds.y_test)).float().mean())
    return time.perf_counter() - t0, acc


def ours(s: Scenario, ds, model: str) -> tuple[float, float]:
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = train(s, no_movement_plan(s), dataset=ds, model=model, period=1, lr=0.01, seed=0, eval_every=0)
    return time.perf_counter() - t0, r.accuracy


def central(s: Scenario, ds, model: str) -> float:
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        centralised(s, dataset=ds, model=model, lr=0.01, seed=0, period=s.horizon, eval_every=0)
    return time.perf_counter() - t0


def median_of(fn, repeats: int) -> tuple[float, float]:
    runs = [fn() for _ in range(repeats)]
    return statistics.median(r[0] for r in runs), runs[-1][1]


def flower(n: int, T: int, model: str) -> float | None:
    if not (HERE / "flower_workload.py").exists():
        return None
    code = (f"import sys; sys.path.insert(0, {str(HERE)!r}); from flower_workload import run_flower_workload; "
            f"print(run_flower_workload({n}, {T}, {model!r}))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=3600)
    if proc.returncode != 0:
        print(f"  flower workload failed: {proc.stderr.strip().splitlines()[-1:]}")
        return None
    return float(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--sizes", default="10,100")
    ap.add_argument("--big", type=int, default=1000, help="devices in the large run (0: skip)")
    ap.add_argument("--model", default="cnn")
    ap.add_argument("--flower", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    ds = load_dataset("mnist")
    out: dict[str, object] = {"threads": args.threads, "model": args.model, "repeats": args.repeats}
    print(f"model {args.model}, T = 100, τ = 1, torch threads {args.threads}, median of {args.repeats}")
    for n in (int(x) for x in args.sizes.split(",") if x):
        s = workload(n)
        t_ours, a_ours = median_of(lambda s=s: ours(s, ds, args.model), args.repeats)
        t_loop, a_loop = median_of(lambda s=s: plain_loop(s, ds, args.model), args.repeats)
        t_cen = statistics.median(central(s, ds, args.model) for _ in range(args.repeats))
        pts = int(s.collected.sum())
        print(f"n = {n:4d}: {pts} points | ours {t_ours:7.2f} s (acc {a_ours:.4f}) | plain loop {t_loop:7.2f} s "
              f"(acc {a_loop:.4f}) | speed-up {t_loop / t_ours:5.2f}x | centralised same points {t_cen:6.2f} s, "
              f"per-sample ratio ours/centralised {t_ours / t_cen:4.2f}")
        row = {"points": pts, "ours_s": t_ours, "loop_s": t_loop, "speedup": t_loop / t_ours,
               "centralised_s": t_cen, "per_sample_ratio": t_ours / t_cen, "acc_ours": a_ours, "acc_loop": a_loop}
        if args.flower:
            t_fl = flower(n, 100, args.model)
            if t_fl is None:
                print("        flower: skipped (bench/flower_workload.py missing or failed)")
            else:
                print(f"        flower simulation {t_fl:7.2f} s | ours is {t_fl / t_ours:5.2f}x faster")
                row["flower_s"] = t_fl
        out[f"n{n}"] = row
    if args.big:
        s = workload(args.big, max_points=6)
        rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        t_big, a_big = ours(s, ds, args.model)
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        t_cen = central(s, ds, args.model)
        print(f"n = {args.big}: {int(s.collected.sum())} points (D ~ U{{0..6}}) | ours {t_big:.1f} s "
              f"(goal ≤ 120 s), acc {a_big:.4f}, peak RSS {rss:.2f} GB (goal ≤ 8 GB; {rss0 / 2**20:.2f} GB before) | "
              f"centralised same points {t_cen:.1f} s, per-sample ratio {t_big / t_cen:.2f}")
        out[f"n{args.big}"] = {"points": int(s.collected.sum()), "ours_s": t_big, "peak_rss_gb": rss,
                               "centralised_s": t_cen, "per_sample_ratio": t_big / t_cen, "acc": a_big}
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
