"""Scaling of the trainer with the number of devices: wall time and peak memory against n.

Workload (the large-network setting): ``synthetic(n, T = 100, topology = "random", ρ = 10/n,
capacities = True)`` — a random directed topology with ~10 neighbours per device, processing and
link capacities, ``D_i(t) ~ U{0, 1}`` (the default ``⌊60000/(nT)⌋`` floored at 1, so about half a
point per device and slot: 500k points at n = 10,000), planned with the default (linear, exact
min-cost flow) solver, then trained on MNIST with ``model`` (default the MLP), ``τ = 10``,
``η = 0.01``, ``local_update = "paper"``, the final model evaluated once (``eval_every = 0``).
The stream wraps over the 60k training set (points repeat; the warning is silenced).

Each n runs in a fresh subprocess, the way a user runs it: ``synthetic``, then ``plan``, then
``train``, in one process. Memory is resident set size from /proc (all of it: Python, numpy,
torch tensors, the MNIST arrays, the scenario, the planner, the trainer): ``plan_peak_rss_gb`` is
the peak while ``plan`` runs and ``train_peak_rss_gb`` the peak while ``train`` runs (``VmHWM``
reset to the current RSS just before each, /proc ``clear_refs``), ``peak_rss_gb`` the largest of
the phases' peaks (data and scenario, plan, train) — the process's peak. (``getrusage``'s
``ru_maxrss`` is reset by ``clear_refs`` too, so it would only show the last phase.)
``rss_before_plan_gb`` / ``rss_before_train_gb`` are what the process already held then (data
and scenario / and the plan).

``--unplanned SIZES`` runs those sizes with the no-movement plan instead (every device keeps
what it collects; capacities still drop points), marked ``none`` in the CSV's ``plan`` column.
``planned_offload`` is the plan's ``Σ s_ij(t) D_i(t)`` (fractional points), ``offloaded`` the
points the trainer sends over links after rounding (:func:`~foglearn.learning.schedule`): at
this workload every link capacity ``C_ij(t) ~ U(0, 4·max D / n)`` is below one point, so no
offload carries a whole point and the plan decides which points are kept and which discarded.

Reported per n: generation, plan and train seconds, device-steps (device,
slot pairs with ``G_i(t) > 0``), µs per device-step (wall, and CPU time of all threads from
``time.process_time`` — the machine may be shared), peak RSS in GB, final accuracy.

``--plain SIZES`` also runs, at those sizes, the competitor: :func:`foglearn.learning.reference_loop`,
a plain per-device PyTorch loop that executes the same plan (the same routing from
:func:`~foglearn.learning.schedule`, the same point stream and ``w(0)``, so the same final model to
float round-off): one ``nn.Module`` and ``torch.optim.SGD`` per device, one step per device and slot
on the points it processes, every ``τ`` slots the ``H``-weighted average of all device models
(eq. 4) loaded back into each. Its memory grows with n (one model and its gradients per device:
1.3 MB for the MLP; 15.2 GB peak at n = 10,000), so a size whose device models and gradients alone
would exceed ``--plain-cap-gb`` (default 16) is recorded as not run. Points are grouped by slot and
device once (no per-device scan), so the loop pays PyTorch's per-step cost, not Python bookkeeping.

    .venv/bin/python bench/scale.py [--sizes 1000,3000,10000] [--model mlp] [--threads 2] [--plain 1000,3000]

writes ``bench/results/scale_<model>.csv`` and ``.png`` (time and peak memory against n, log-log).
``--phases N`` instead prints where the bytes go while planning at ``N`` devices (each stage's
RSS before, peak and after).
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent

FIELDS = ("n", "points", "processed", "planned_offload", "offloaded", "device_steps", "plan", "gen_s", "plan_s",
          "train_s", "train_cpu_s", "us_per_device_step", "cpu_us_per_device_step", "peak_rss_gb",
          "rss_before_plan_gb", "plan_peak_rss_gb", "rss_before_train_gb", "train_peak_rss_gb", "accuracy", "model",
          "tau", "threads", "plain_train_s", "plain_train_peak_rss_gb", "plain_accuracy", "speedup")


def _rss_gb(field: str) -> float:
    """``VmRSS`` (now) or ``VmHWM`` (peak) of this process from /proc, in GiB."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":")) / 2**20


def _reset_peak() -> None:
    """Reset ``VmHWM`` to the current RSS (Linux ``clear_refs`` 5), so the train phase's peak shows."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def workload(n: int, horizon: int = 100, seed: int = 0):
    """The workload's scenario at ``n`` devices (module docstring): ~10 neighbours, capacities."""
    from foglearn.network.generators import synthetic

    return synthetic(n, horizon, topology="random", rho=min(1.0, 10.0 / n), capacities=True, seed=seed)


def measure(n: int, model: str, tau: int, threads: int, horizon: int = 100, seed: int = 0,
            plan_kind: str = "planned") -> dict:
    """One run of the workload at ``n`` devices in this process (call it in a fresh one).

    ``plan_kind = "none"``: the no-movement plan instead of the planner's (every device keeps what
    it collects, capacities still apply)."""
    import torch

    from foglearn.learning import load_dataset, no_movement_plan, schedule, train
    from foglearn.planning import plan

    torch.set_num_threads(threads)
    ds = load_dataset("mnist")
    t0 = time.perf_counter()
    s = workload(n, horizon, seed)
    gen_s = time.perf_counter() - t0
    before_plan, gen_peak = _rss_gb("VmRSS"), _rss_gb("VmHWM")
    _reset_peak()
    t0 = time.perf_counter()
    p = plan(s) if plan_kind == "planned" else no_movement_plan(s)
    plan_s = time.perf_counter() - t0
    plan_peak = _rss_gb("VmHWM")
    before = _rss_gb("VmRSS")
    _reset_peak()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t0, c0 = time.perf_counter(), time.process_time()
        r = train(s, p, dataset=ds, model=model, period=tau, lr=0.01, seed=seed, eval_every=0, threads=threads)
        train_s, train_cpu = time.perf_counter() - t0, time.process_time() - c0
    steps = int((r.processed > 0).sum())
    train_peak = _rss_gb("VmHWM")
    peak = max(gen_peak, plan_peak, train_peak)
    offloaded = int(schedule(s, p).offloaded[2].sum())  # after the readings: points sent after rounding
    return {"n": n, "points": int(s.collected.sum()), "processed": int(r.processed.sum()), "offloaded": offloaded,
            "device_steps": steps, "gen_s": round(gen_s, 3),
            "plan_s": round(plan_s, 3), "train_s": round(train_s, 3), "train_cpu_s": round(train_cpu, 3),
            "us_per_device_step": round(train_s / max(steps, 1) * 1e6, 2),
            "cpu_us_per_device_step": round(train_cpu / max(steps, 1) * 1e6, 2),
            "planned_offload": round(float(p.costs.offloaded), 3), "peak_rss_gb": round(peak, 3),
            "rss_before_plan_gb": round(before_plan, 3), "plan_peak_rss_gb": round(plan_peak, 3),
            "rss_before_train_gb": round(before, 3), "train_peak_rss_gb": round(train_peak, 3),
            "plan": plan_kind,
            "accuracy": round(r.accuracy, 4), "model": model, "tau": tau, "threads": threads}


def plain_loop(s, p, ds, model: str, tau: int, lr: float = 0.01, seed: int = 0) -> tuple[float, float]:
    """The competitor: ``p`` executed by :func:`foglearn.learning.reference_loop` (a plain per-device
    PyTorch loop, same routing, stream and ``w(0)`` as :func:`foglearn.train`), then the final model
    evaluated on the test set; returns (seconds, accuracy)."""
    import torch

    from foglearn.learning import reference_loop
    from foglearn.learning.models import make_model

    t0 = time.perf_counter()
    ref = reference_loop(s, p, dataset=ds, model=model, period=tau, lr=lr, seed=seed)
    net = make_model(model, seed=seed, n_classes=ds.n_classes)
    net.load_state_dict(ref["state"])
    with torch.no_grad():
        acc = float((net.eval()(torch.from_numpy(ds.x_test)).argmax(1) == torch.from_numpy(ds.y_test)).float().mean())
    return time.perf_counter() - t0, acc


def measure_plain(n: int, model: str, tau: int, threads: int, horizon: int = 100, seed: int = 0) -> dict:
    """The competitor on the workload at ``n`` (same scenario and plan as :func:`measure`)."""
    import torch

    from foglearn.learning import load_dataset
    from foglearn.planning import plan

    torch.set_num_threads(threads)
    ds = load_dataset("mnist")
    s = workload(n, horizon, seed)
    p = plan(s)
    _reset_peak()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        secs, acc = plain_loop(s, p, ds, model, tau, seed=seed)
    return {"plain_train_s": round(secs, 3), "plain_train_peak_rss_gb": round(_rss_gb("VmHWM"), 3),
            "plain_accuracy": round(acc, 4)}


def phases(n: int, horizon: int = 100, seed: int = 0) -> None:
    """``--phases N``: where the bytes go while planning the workload at ``n`` (no training).

    Prints RSS before, peak during (``VmHWM`` reset around each call) and after: loading MNIST,
    generating the scenario, each stage of the linear planner (the kernels of
    :mod:`foglearn.planning.flow_kernels`, wrapped here, and ``Plan.from_fractions``), and the
    plan's arrays."""
    import functools

    from foglearn.learning import load_dataset
    from foglearn.planning import flow_kernels, interrupt, plan
    from foglearn.planning.plan import Plan

    def report(name: str, before: float, t0: float) -> None:
        print(f"{name:24s} {time.perf_counter() - t0:6.1f} s  RSS before {before:.3f}  peak {_rss_gb('VmHWM'):.3f}  "
              f"after {_rss_gb('VmRSS'):.3f} GB", flush=True)

    def wrap(owner: object, name: str, label: str) -> None:
        fn = getattr(owner, name)

        @functools.wraps(fn)
        def timed(*args, **kw):
            before, t0 = _rss_gb("VmRSS"), time.perf_counter()
            _reset_peak()
            out = fn(*args, **kw)
            report(label, before, t0)
            _reset_peak()
            return out
        setattr(owner, name, timed)

    for name in ("build_arcs", "reduce_unsaturable", "coupled_structure", "greedy_fill", "fractions"):
        wrap(flow_kernels, name, name)
    wrap(interrupt, "call", "ssp (successive paths)")
    from_fractions = Plan.from_fractions.__func__  # type: ignore[attr-defined]

    def built(cls, *args, **kw):
        before, t0 = _rss_gb("VmRSS"), time.perf_counter()
        _reset_peak()
        out = from_fractions(cls, *args, **kw)
        report("Plan.from_fractions", before, t0)
        return out
    Plan.from_fractions = classmethod(built)  # type: ignore[method-assign]
    import torch  # noqa: F401 - held as in a training run

    held = []  # MNIST stays loaded, as in a run
    for label, step in (("MNIST", lambda: load_dataset("mnist")),
                        ("scenario", lambda: workload(n, horizon, seed))):
        before, t0 = _rss_gb("VmRSS"), time.perf_counter()
        _reset_peak()
        held.append(step())
        report(label, before, t0)
    s = held[-1]
    before, t0 = _rss_gb("VmRSS"), time.perf_counter()
    p = plan(s)
    print(f"{'plan (whole)':24s} {time.perf_counter() - t0:6.1f} s  RSS before {before:.3f}  after "
          f"{_rss_gb('VmRSS'):.3f} GB; arcs {p.stats.extra['arcs']}, E = {s.n_edges}, nonzero s_ij(t) "
          f"{int(np.count_nonzero(p.offload))}")


def run_child(n: int, model: str, tau: int, threads: int, plan_kind: str = "planned", plain: bool = False) -> dict:
    call = (f"scale.measure_plain({n}, {model!r}, {tau}, {threads})" if plain
            else f"scale.measure({n}, {model!r}, {tau}, {threads}, plan_kind={plan_kind!r})")
    code = f"import sys, json; sys.path.insert(0, {str(HERE)!r}); import scale; print(json.dumps({call}))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"n = {n}: {proc.stderr.strip()[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _model_gb(model: str) -> float:
    """GB of one device's model (parameters and buffers, float32)."""
    from foglearn.learning.models import make_model

    return sum(v.numel() * v.element_size() for v in make_model(model).state_dict().values()) / 2**30


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.6))
    for kind, mark in (("planned", "-"), ("none", ":")):
        sel = sorted((r for r in rows if r["plan"] == kind), key=lambda r: r["n"])
        if not sel:
            continue
        ns, tag = [r["n"] for r in sel], "" if kind == "planned" else ", no-movement plan"
        a.loglog(ns, [r["train_s"] for r in sel], "o" + mark, label="train" + tag)
        b.loglog(ns, [r["peak_rss_gb"] for r in sel], "o" + mark, label="process peak" + tag)
        b.loglog(ns, [r["train_peak_rss_gb"] for r in sel], "s" + mark, label="peak while training" + tag)
        if kind == "planned":
            a.loglog(ns, [r["plan_s"] for r in sel], "s--", label="plan")
            done = [r for r in sel if r.get("plain_train_s") not in (None, "")]
            if done:
                a.loglog([r["n"] for r in done], [r["plain_train_s"] for r in done], "x-.",
                         label="train, plain per-device PyTorch loop")
                b.loglog([r["n"] for r in done], [r["plain_train_peak_rss_gb"] for r in done], "x-.",
                         label="peak while training, plain loop")
            b.loglog(ns, [r["plan_peak_rss_gb"] for r in sel], "^--", label="peak while planning")
    for ax in (a, b):
        ax.set_xlabel("devices n")
        ax.legend(fontsize=7)
        ax.grid(True, which="both", alpha=0.3)
    a.set_ylabel("seconds")
    b.set_ylabel("peak RSS (GB, /proc VmHWM)")
    m = rows[0]
    fig.suptitle(f"{m['model']}, T = 100, τ = {m['tau']}, ~10 neighbours, capacities, {m['threads']} thread(s)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1000,3000,10000")
    ap.add_argument("--model", default="mlp")
    ap.add_argument("--tau", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=HERE / "results")
    ap.add_argument("--unplanned", default="", help="sizes (comma-separated) run with the no-movement plan")
    ap.add_argument("--phases", type=int, default=0, help="only print where the bytes go while planning at this n")
    ap.add_argument("--plain", default="", help="sizes (comma-separated) also run with the plain per-device loop")
    ap.add_argument("--plain-cap-gb", type=float, default=16.0,
                    help="skip the plain loop where its device models and gradients alone would exceed this")
    args = ap.parse_args()
    if args.phases:
        phases(args.phases)
        return
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    unplanned = {int(x) for x in args.unplanned.split(",") if x}
    plain = {int(x) for x in args.plain.split(",") if x}
    for n in (int(x) for x in args.sizes.split(",") if x):
        r = run_child(n, args.model, args.tau, args.threads, "none" if n in unplanned else "planned")
        if n in plain and n not in unplanned:
            need = 2 * n * _model_gb(args.model)  # a model and its gradients per device
            if need > args.plain_cap_gb:
                print(f"n = {n}: plain loop not run (its {n} device models and gradients alone need {need:.1f} GB)",
                      flush=True)
            else:
                r.update(run_child(n, args.model, args.tau, args.threads, plain=True))
                r["speedup"] = round(r["plain_train_s"] / r["train_s"], 2)
        print(json.dumps(r), flush=True)
        rows.append(r)
    stem = args.out / f"scale_{args.model}"
    with open(stem.with_suffix(".csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=FIELDS)
        w.writeheader()
        w.writerows(rows)
    plot(rows, stem.with_suffix(".png"))
    print(f"wrote {stem}.csv and {stem}.png")


if __name__ == "__main__":
    main()
