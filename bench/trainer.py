"""Benchmark: the device-parallel trainer vs a plain per-device PyTorch loop (and Flower, if asked).

Workload (the paper's, docs/model.md §4): T = 100 slots, one SGD step per device and slot (eq. 3,
η = 0.01) on ~30 new MNIST points per device, i.e. D_i(t) ~ U{0..60} — **max_points = 60 at every
n** (not ⌊60000/(nT)⌋, which would starve the large runs; at n ≥ 10 the stream wraps over the 60k
training set, so points repeat), no data movement, CNN, the final model evaluated once on the
10k test set. Aggregation (eq. 4, weights H_i):

* τ = 1 — every slot. The trainer then uses the exact union-batch identity (see
  ``foglearn.learning.trainer._UnionRunner``): one SGD step on the union of the slot's batches.
* τ = 10 — the paper's default. Devices' weights differ within a period, so this is the
  **general path** (per-device weights, batched GEMM kernels, ``foglearn.learning.kernels``).

Competitor: a straightforward per-device loop — one model copy and one torch.optim.SGD per
device, zero_grad/forward/backward/step per device, weighted state averaging and load_state_dict
every τ slots. Same data, same initial model. Both run at every thread count in ``--threads``
(``train(threads=k)``: k worker threads, each op single-threaded; the loop: ``torch.set_num_threads(k)``),
and the speed-up is printed at equal threads and best against best.
"Centralised" is ``foglearn.learning.centralised`` (one torch module, one step per slot on all the
slot's points) on the same points and threads: the per-sample ratio is ours / centralised per point.

``--flower`` also runs Flower's simulation runtime (``bench/flower_workload.py``: the same
ServerApp/ClientApp as ``foglearn.flower``, τ = 1, no movement) and ours on the same slots. The
Flower app gives each device a disjoint share of the 60k training points and never repeats one,
so at n = 100 it can run only the first ~12 slots of the workload (:func:`flower_horizon`); both
sides run those slots.

The n = ``--big`` rows run in a fresh subprocess each (peak RSS is that process's); their
centralised reference is measured on the first ``--central-slots`` slots (per point).

Prints the median of ``--repeats`` runs and the ratios. Other processes may share the machine:
``uptime`` is printed; quote numbers from an idle machine.

    .venv/bin/python bench/trainer.py [--threads 1,2] [--repeats 3] [--sizes 10,100] [--big 1000] [--flower]
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from foglearn.learning import (
    centralised,
    fused_cnn,
    load_dataset,
    make_model,
    no_movement_plan,
    train,
)
from foglearn.network.scenario import Scenario

HERE = Path(__file__).resolve().parent


def workload(n: int, T: int = 100, max_points: int = 60, seed: int = 0) -> Scenario:
    """D_i(t) ~ U{0..max_points} (default 60 at every n: ~30 points per device and slot)."""
    rng = np.random.default_rng(seed)
    D = rng.integers(0, max_points + 1, (T, n))
    return Scenario(collected=D, proc_cost=np.ones((T, n)), error_weight=np.ones((T, n)),
                    src=np.zeros(0, int), dst=np.zeros(0, int), link_cost=np.zeros((T, 0)))


def plain_loop(s: Scenario, ds, model: str, lr: float = 0.01, seed: int = 0, period: int = 1,
               threads: int = 1) -> tuple[float, float]:
    """The honest competitor: a per-device loop with its own model copies and optimizers."""
    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    total = int(s.collected.sum())
    stream = np.concatenate([rng.permutation(ds.n_train) for _ in range(-(-total // ds.n_train))])
    X, Y = torch.from_numpy(ds.x_train), torch.from_numpy(ds.y_train)
    glob = make_model(model, seed=seed)
    nets = [copy.deepcopy(glob) for _ in range(s.n_devices)]
    opts = [torch.optim.SGD(m.parameters(), lr=lr) for m in nets]
    k = 0
    H = np.zeros(s.n_devices)
    for t in range(s.horizon):
        for i in range(s.n_devices):
            d = int(s.collected[t, i])
            if d == 0:
                continue
            idx = torch.from_numpy(stream[k:k + d])
            k += d
            opts[i].zero_grad()
            F.cross_entropy(nets[i](X[idx]), Y[idx]).backward()
            opts[i].step()
            H[i] += d
        if ((t + 1) % period == 0 or t + 1 == s.horizon) and H.sum() > 0:
            w = H / H.sum()
            with torch.no_grad():
                states = [m.state_dict() for m in nets]
                avg = {key: sum(float(w[i]) * states[i][key] for i in range(s.n_devices) if w[i] > 0)
                       for key in states[0]}
                glob.load_state_dict(avg)
                for m in nets:
                    m.load_state_dict(avg)
            H[:] = 0
    with torch.no_grad():
        acc = float((glob(torch.from_numpy(ds.x_test)).argmax(1) == torch.from_numpy(ds.y_test)).float().mean())
    return time.perf_counter() - t0, acc


def ours(s: Scenario, ds, model: str, period: int = 1, threads: int = 1) -> tuple[float, float]:
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = train(s, no_movement_plan(s), dataset=ds, model=model, period=period, lr=0.01, seed=0, eval_every=0,
                  threads=threads)
    return time.perf_counter() - t0, r.accuracy


def central(s: Scenario, ds, model: str, threads: int = 1) -> float:
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        centralised(s, dataset=ds, model=model, lr=0.01, seed=0, period=s.horizon, eval_every=0, threads=threads)
    return time.perf_counter() - t0


def median_of(fn, repeats: int) -> tuple[float, float]:
    runs = [fn() for _ in range(repeats)]
    return statistics.median(r[0] for r in runs), runs[-1][1]


def flower(n: int, T: int, model: str) -> tuple[float, float] | None:
    """Flower's simulation of the workload: (total wall seconds, seconds inside the ServerApp)."""
    if not (HERE / "flower_workload.py").exists():
        return None
    code = (f"import sys; sys.path.insert(0, {str(HERE)!r}); from flower_workload import run_flower_workload; "
            f"s = run_flower_workload({n}, {T}, {model!r}); "
            f"print(s, run_flower_workload.last_result['wall_seconds'])")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=3600)
    if proc.returncode != 0:
        print(f"  flower workload failed: {proc.stderr.strip().splitlines()[-1:]}")
        return None
    total, server = proc.stdout.strip().splitlines()[-1].split()
    return float(total), float(server)


def flower_horizon(n: int, T: int, n_train: int = 60000) -> int:
    """Slots Flower can run: its app gives each device a disjoint ``1/n`` share of the training set
    and never repeats a point, so ``Σ_t D_i(t)`` (≈ 30 per slot) must stay within ``n_train / n``;
    60 % of that leaves room for the luckiest of ``n`` devices."""
    return max(1, min(T, int(0.6 * n_train / n / 30)))


def peak_rss_gb() -> float:
    """This process's peak RSS (``VmHWM``; ``ru_maxrss`` where /proc is missing), in GiB."""
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 2**20
    except (OSError, StopIteration):
        import resource
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def reset_peak_rss() -> None:
    """Reset ``VmHWM``: a forked child starts with its parent's high-water mark (Linux clear_refs 5)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def big_run(n: int, T: int, model: str, period: int, threads: int) -> dict:
    """One ``ours`` run in a fresh process: seconds, accuracy, peak RSS (GiB) of that process."""
    code = (f"import sys, json, torch; sys.path.insert(0, {str(HERE)!r}); import trainer as b; b.reset_peak_rss(); "
            f"from foglearn.learning import load_dataset; "
            f"ds = load_dataset('mnist'); t, a = b.ours(b.workload({n}, {T}), ds, {model!r}, {period}, {threads}); "
            f"print(json.dumps({{'s': t, 'acc': a, 'rss_gb': b.peak_rss_gb()}}))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=3600)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", default="1,2", help="comma-separated thread counts, each run by both sides")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--horizon", type=int, default=100)
    ap.add_argument("--sizes", default="10,100")
    ap.add_argument("--taus", default="1,10", help="aggregation periods to run (comma-separated)")
    ap.add_argument("--big", type=int, default=1000, help="devices in the large run (0: skip)")
    ap.add_argument("--central-slots", type=int, default=10, help="slots of the big run's centralised reference")
    ap.add_argument("--model", default="cnn")
    ap.add_argument("--flower", action=argparse.BooleanOptionalAction, default=False)
    ap.add_argument("--centralised", action=argparse.BooleanOptionalAction, default=True,
                    help="also time centralised training on the same points")
    ap.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    args = ap.parse_args()
    threads = [int(x) for x in args.threads.split(",") if x]
    ds = load_dataset("mnist")
    T = args.horizon
    load = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    out: dict[str, object] = {"threads": threads, "model": args.model, "repeats": args.repeats, "horizon": T,
                              "max_points": 60, "uptime_before": load}
    if args.model == "cnn":  # which CNN kernel train() takes (FOGLEARN_FUSED=0: layer by layer)
        fused = fused_cnn.enabled()
        out["cnn_kernel"] = "fused" if fused else "layered"
        print(f"CNN kernel: {out['cnn_kernel']} ({fused.reason})")
    print(f"model {args.model}, T = {T}, D_i(t) ~ U{{0..60}}, threads {threads}, median of {args.repeats}\n"
          f"load before: {load}")
    for n in (int(x) for x in args.sizes.split(",") if x):
        s = workload(n, T)
        pts = int(s.collected.sum())
        row: dict[str, float] = {"points": pts}
        taus = [int(x) for x in args.taus.split(",") if x]
        for tau in taus:
            path = "union identity" if tau == 1 else "general path"
            for th in threads:
                t_ours, a_ours = median_of(lambda s=s, tau=tau, th=th: ours(s, ds, args.model, tau, th), args.repeats)
                t_loop, a_loop = median_of(lambda s=s, tau=tau, th=th: plain_loop(s, ds, args.model, period=tau,
                                                                                   threads=th), args.repeats)
                print(f"n = {n:4d}, τ = {tau:2d} ({path}), {th} thread(s): {pts} points | ours {t_ours:7.2f} s "
                      f"(acc {a_ours:.4f}) | plain loop {t_loop:7.2f} s (acc {a_loop:.4f}) | "
                      f"speed-up {t_loop / t_ours:5.2f}x", flush=True)
                row.update({f"ours_tau{tau}_t{th}_s": t_ours, f"loop_tau{tau}_t{th}_s": t_loop,
                            f"acc_ours_tau{tau}_t{th}": a_ours, f"acc_loop_tau{tau}_t{th}": a_loop})
            best_ours = min(row[f"ours_tau{tau}_t{th}_s"] for th in threads)
            best_loop = min(row[f"loop_tau{tau}_t{th}_s"] for th in threads)
            row[f"speedup_tau{tau}_best"] = best_loop / best_ours
            print(f"          τ = {tau:2d}, best against best: ours {best_ours:.2f} s, loop {best_loop:.2f} s → "
                  f"{best_loop / best_ours:5.2f}x", flush=True)
        for th in threads if args.centralised else ():
            t_cen = statistics.median(central(s, ds, args.model, th) for _ in range(args.repeats))
            ratios = {tau: row[f"ours_tau{tau}_t{th}_s"] / t_cen for tau in taus}
            print(f"          {th} thread(s): centralised same points {t_cen:6.2f} s | per-sample ratio "
                  f"ours/centralised: " + ", ".join(f"τ={tau} {r:4.2f}" for tau, r in ratios.items()), flush=True)
            row.update({f"centralised_t{th}_s": t_cen, **{f"ratio_tau{tau}_t{th}": r for tau, r in ratios.items()}})
        if args.flower:
            H = flower_horizon(n, T)
            fl = flower(n, H, args.model)
            if fl is None:
                print("        flower: skipped (bench/flower_workload.py missing or failed)")
            else:
                th = max(threads)
                sh = workload(n, H)
                t_us = statistics.median(ours(sh, ds, args.model, 1, th)[0] for _ in range(args.repeats))
                print(f"        flower simulation, first {H} slots: {fl[0]:7.2f} s ({fl[1]:.2f} s in the ServerApp) | "
                      f"ours (τ=1, {th} threads) {t_us:.2f} s → {fl[0] / t_us:5.1f}x "
                      f"({fl[1] / t_us:5.1f}x against the ServerApp alone)", flush=True)
                row.update({"flower_horizon": H, "flower_s": fl[0], "flower_serverapp_s": fl[1],
                            "ours_flower_horizon_s": t_us, "flower_speedup": fl[0] / t_us,
                            "flower_serverapp_speedup": fl[1] / t_us})
        out[f"n{n}"] = row
    if args.big:
        n = args.big
        th = max(threads)
        s = workload(n, T)
        pts = int(s.collected.sum())
        sc = workload(n, T).window(0, args.central_slots)
        t_cen = central(sc, ds, args.model, th)
        cen_per_pt = t_cen / int(sc.collected.sum())
        row = {"points": pts, "centralised_per_point_s": cen_per_pt, "threads": th}
        for tau in (1, 10):
            r = big_run(n, T, args.model, tau, th)
            ratio = r["s"] / pts / cen_per_pt
            print(f"n = {n}, τ = {tau:2d}, {th} thread(s): {pts} points | ours {r['s']:.1f} s (goal ≤ 120 s), "
                  f"acc {r['acc']:.4f}, peak RSS {r['rss_gb']:.2f} GB (goal ≤ 8 GB) | per-sample ratio "
                  f"ours/centralised {ratio:.2f} (centralised: first {args.central_slots} slots, "
                  f"{cen_per_pt * 1e6:.0f} µs/point)", flush=True)
            row.update({f"ours_tau{tau}_s": r["s"], f"rss_tau{tau}_gb": r["rss_gb"], f"ratio_tau{tau}": ratio,
                        f"acc_tau{tau}": r["acc"]})
        out[f"n{n}"] = row
    out["uptime_after"] = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    print(f"load after: {out['uptime_after']}")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
