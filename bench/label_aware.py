"""Label-aware planning: foglearn's planner against HiGHS on the whole LP in one go.

For each size it builds the noniid experiment's scenario (``experiments/paper/noniid.py``: MNIST
labels, Dirichlet ``α``, fully connected, no capacities, synthetic costs, ``D_i(t) ≤ ⌊60000/(nT)⌋``)
or, with ``--sparse`` sizes, ``synthetic(topology="random", rho=neighbours/n)`` (about
``neighbours`` out-links per device, the default ``D_i(t)``), and times

* ``ours`` — :func:`foglearn.planning.label_aware.plan_label_aware`: column generation from the
  label-blind plan's columns, certified to ``GAP_TOL`` (``--loads label-blind``, the default, or
  ``--loads free``);
* ``highs`` — :func:`foglearn.planning.label_aware.solve_full_lp`: every usable offload column,
  handed to HiGHS at once (``--highs-solver``, default its interior point + crossover).

It checks that both reach the same optimum (relative 1e-7) and prints the warm median seconds of
each (after one untimed warm-up at the smallest size, which compiles the kernels) and their ratio.
Run with one thread (``OMP_NUM_THREADS=1``) on a quiet machine::

    OMP_NUM_THREADS=1 python bench/label_aware.py --sizes 10,100 --sparse 1000 --repeats 3
    OMP_NUM_THREADS=1 python bench/label_aware.py --loads free --sizes 10,100 --repeats 1

``--target`` picks the label mix balanced towards (``uniform``, the default, or ``collected``).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np


def instance(n: int, horizon: int, alpha: float, seed: int, sparse: bool, neighbours: float, y: np.ndarray):
    from foglearn.learning.partition import class_arrivals
    from foglearn.network import synthetic

    if sparse:
        scen = synthetic(n_devices=n, horizon=horizon, topology="random", rho=min(1.0, neighbours / (n - 1)),
                         capacities=False, seed=seed)
    else:
        scen = synthetic(n_devices=n, horizon=horizon, topology="full", capacities=False, seed=seed,
                         max_points=max(1, y.size // (n * horizon)))
    return scen, class_arrivals(f"dirichlet:{alpha:g}", scen.collected, y, seed)


def main() -> None:
    from foglearn.learning.datasets import load_dataset
    from foglearn.planning.label_aware import (
        DEFAULT_LOADS,
        DEFAULT_PERIOD,
        DEFAULT_TARGET,
        LOADS,
        TARGETS,
        plan_label_aware,
        solve_full_lp,
    )

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="10,100", help="fully connected sizes n (comma-separated)")
    ap.add_argument("--sparse", default="", help="random-topology sizes n (comma-separated)")
    ap.add_argument("--neighbours", type=float, default=10.0, help="mean out-links per device of --sparse sizes")
    ap.add_argument("--horizon", type=int, default=100)
    ap.add_argument("--alpha", type=float, default=0.1)
    ap.add_argument("--period", type=int, default=DEFAULT_PERIOD)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--loads", choices=LOADS, default=DEFAULT_LOADS,
                    help="the label-blind optimum's load per device and period, or free loads")
    ap.add_argument("--target", choices=TARGETS, default=DEFAULT_TARGET, help="the label mix balanced towards")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--highs-solver", default="ipm", help="HiGHS 'solver' option for the whole LP")
    ap.add_argument("--no-highs-above", type=int, default=10**9,
                    help="skip the whole-LP competitor above this many devices (memory, time)")
    args = ap.parse_args()
    y = load_dataset("mnist").y_train
    cases = [(int(n), False) for n in args.sizes.split(",") if n]
    cases += [(int(n), True) for n in args.sparse.split(",") if n]
    s0, l0 = instance(5, 10, args.alpha, 0, False, args.neighbours, y)  # warm-up: compiles the kernels
    plan_label_aware(s0, l0, period=args.period, loads=args.loads, target=args.target)
    print(f"{'case':>14} {'columns':>9} {'ours s':>9} {'HiGHS s':>9} {'HiGHS/ours':>10}  rounds  objective")
    for n, sparse in cases:
        scen, lab = instance(n, args.horizon, args.alpha, args.seed, sparse, args.neighbours, y)
        ours, highs = [], []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            p = plan_label_aware(scen, lab, period=args.period, loads=args.loads, target=args.target)
            ours.append(time.perf_counter() - t0)
        ref = None
        if n <= args.no_highs_above:
            for _ in range(args.repeats):
                ref = solve_full_lp(scen, lab, period=args.period, solver=args.highs_solver, loads=args.loads,
                                    target=args.target)
                highs.append(ref["seconds"])
            assert ref["ok"], ref["status"]
            rel = abs(ref["objective"] - p.stats.objective) / max(1.0, abs(ref["objective"]))
            assert rel <= 1e-7, f"n = {n}: HiGHS {ref['objective']!r} vs ours {p.stats.objective!r}"
        mo = statistics.median(ours)
        mh = statistics.median(highs) if highs else float("nan")
        name = f"n={n} {'sparse' if sparse else 'full'}"
        cols = ref["columns"] if ref else scen.n_edges * scen.horizon
        print(f"{name:>14} {cols:>9} {mo:>9.2f} {mh:>9.2f} {mh / mo:>10.2f}  {p.stats.extra['rounds']:>6}  "
              f"{p.stats.objective:.10g}  (gap {p.stats.gap:.2g}; ours: ascent "
              f"{p.stats.extra['ascent_seconds']:.1f} s, masters {p.stats.extra['master_seconds']:.1f} s)", flush=True)


if __name__ == "__main__":
    main()
