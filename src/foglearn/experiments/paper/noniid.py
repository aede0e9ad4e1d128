"""Non-IID data: no movement, the paper's label-blind plan and the label-aware plan, over α.

Not in the paper (its devices share one i.i.d. stream). For every Dirichlet concentration α in
``alphas`` (``inf`` is i.i.d.) and seed, on ``synthetic(n, T, full, no capacities, seed)`` with
the devices' labels drawn by ``Partition("dirichlet", α)`` (:mod:`foglearn.learning.partition`):

* ``no-movement`` — every device processes what it collects (setting A);
* ``network-aware`` — the paper's plan, label-blind (setting B, linear error);
* ``label-aware`` — :mod:`foglearn.planning.label_aware` (``λ`` = its default, the label-blind
  optimum's load per device and aggregation period, the uniform target mix), planned from
  ``D_i^c(t)`` of :func:`~foglearn.learning.partition.class_arrivals`, and trained with the class
  weights :data:`~foglearn.learning.partition.LABEL_AWARE_WEIGHTS` (``"sqrt"``: each point's loss
  weighted by ``1/√`` its class's share of what the devices collect), as ``foglearn run`` trains it.

Each is priced (unit cost, realised costs (5)) and measured by its label imbalance — the share of
processed points above their class's share of the pooled mix, ``Σ B / Σ G``
(:func:`foglearn.planning.label_aware.imbalance`) — and, when the options train, trained at
``foglearn run``'s default budget (5 passes, η = 0.1, mini-batches of 16, τ = 10; docs/accuracy.md)
with one torch thread. The i.i.d. no-movement run (α = ∞) is the reference the gap is measured
from: label-aware closes ``(acc_LA − acc_NM(α)) / (acc_NM(∞) − acc_NM(α))`` of it.

Why this experiment runs its own cells: a cell plans the three settings on one scenario and label
draw and records each plan's per-period imbalance (:func:`foglearn.planning.label_aware.imbalance`),
which a :class:`~foglearn.experiments.config.RunConfig` record does not hold (single label-aware runs
go through the runner: ``RunConfig(partition=…, solver="label-aware")``). The experiment's grid is
empty; its summary runs the cells, keeping each finished cell as
``cells/<key>.json`` in the run directory (a rerun of the same command resumes), then writes
``summary.csv``, ``noniid.png`` and the values its claims are checked on.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from foglearn.experiments.config import ExperimentOptions
from foglearn.experiments.definitions import EXPERIMENTS, Experiment, Grid, Results, Summary
from foglearn.experiments.report import Claim
from foglearn.experiments.tables import write_csv
from foglearn.learning.partition import LABEL_AWARE_WEIGHTS
from foglearn.planning.solve import LABEL_AWARE_FORMULATION

#: The settings of one cell, in report order.
SETTINGS = ("no-movement", "network-aware", "label-aware")
#: The aggregation period τ the runs train with and the label-aware plan balances over.
PERIOD = 10
#: Dirichlet concentrations swept (``inf`` = i.i.d.).
ALPHAS = (0.05, 0.1, 0.5, 1.0, math.inf)

CLAIMS = (
    Claim(
        "Label-aware learning closes at least half of the non-IID accuracy gap at α = 0.1",
        "gap_closed",
        ">=",
        0.5,
        "gap closed at α = 0.1: {gap_closed:pct} (no movement {nm_acc:pct}, label-aware {la_acc:pct}, "
        "i.i.d. no movement {iid_acc:pct})",
    ),
    Claim(
        "Label-aware learning is at least as accurate as the label-blind plan at α = 0.1",
        "la_minus_na",
        ">=",
        0.0,
        "label-aware − network-aware = {la_minus_na_points} at α = 0.1; per seed {la_minus_na_seeds}",
    ),
    Claim(
        "Label-aware learning costs at least 40 % less per point than no movement at α = 0.1",
        "la_saving",
        ">=",
        0.4,
        "unit cost {la_unit:fmt} vs {nm_unit:fmt}: {la_saving:pct} lower",
    ),
    Claim(
        "The label-aware plan processes batches with a smaller label imbalance than the label-blind one",
        "imbalance_drop",
        ">",
        0.0,
        "imbalance at α = 0.1: no movement {nm_imb:pct}, network-aware {na_imb:pct}, label-aware {la_imb:pct}",
    ),
)


def _budget() -> tuple[int, float, str]:
    from foglearn.cli.run import BUDGETS

    return BUDGETS["default"]


def alpha_spec(alpha: float) -> str:
    return "iid" if math.isinf(alpha) else f"dirichlet:{alpha:g}"


def cell_key(cell: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(cell, sort_keys=True).encode()).hexdigest()[:16]


def run_cell(alpha: float, seed: int, n: int, horizon: int, model: str, dataset: str, train: bool,
             settings: tuple[str, ...] = SETTINGS, lam: float | None = None,
             loads: str | None = None, target: str | None = None,
             label_weights: str | None = None) -> dict[str, Any]:
    """One (α, seed): plan the settings, price them, measure their imbalance and (``train``) train.

    ``lam``, ``loads``, ``target``: the label-aware plan's ``λ``, loads and target mix (defaults
    :data:`~foglearn.planning.label_aware.DEFAULT_LAMBDA`, ``DEFAULT_LOADS`` and ``DEFAULT_TARGET``,
    what ``plan(…, solver="label-aware")`` uses); other values are for sweeps (docs/noniid.md) and are
    recorded in the cell as ``lambda``, ``loads`` and ``target``. ``label_weights``: the label-aware
    setting's class weights (default :data:`~foglearn.learning.partition.LABEL_AWARE_WEIGHTS`; ``"none"``:
    the plain loss; recorded as ``label_weights`` when the label-aware setting trains); the other settings
    train with the plain loss.
    """
    from foglearn.learning import train as train_plan
    from foglearn.learning.datasets import load_dataset
    from foglearn.learning.partition import CLASS_WEIGHTS, class_arrivals
    from foglearn.network import synthetic
    from foglearn.planning import plan
    from foglearn.planning.label_aware import DEFAULT_LAMBDA, DEFAULT_LOADS, DEFAULT_TARGET, imbalance, plan_label_aware

    weights = LABEL_AWARE_WEIGHTS if label_weights is None else label_weights
    if weights not in CLASS_WEIGHTS:
        raise ValueError(f"label_weights = {label_weights!r}: must be one of {CLASS_WEIGHTS}")

    data = load_dataset(dataset)
    scen = synthetic(n_devices=n, horizon=horizon, topology="full", capacities=False, seed=seed,
                     max_points=max(1, data.n_train // (n * horizon)))
    part = alpha_spec(alpha)
    labels = class_arrivals(part, scen.collected, data.y_train, seed)
    out: dict[str, Any] = {"alpha": "inf" if math.isinf(alpha) else alpha, "seed": seed, "n": n,
                           "horizon": horizon, "model": model, "collected": scen.total_collected, "settings": {}}
    if lam is not None:
        out["lambda"] = float(lam)
    if loads is not None:
        out["loads"] = loads
    if target is not None:
        out["target"] = target if isinstance(target, str) else np.asarray(target, dtype=float).tolist()
    if train and "label-aware" in settings:
        out["label_weights"] = weights
    passes, lr, update = _budget()
    for name in settings:
        t0 = time.perf_counter()
        if name == "no-movement":
            p = plan(scen, movement=False)
        elif name == "network-aware":
            p = plan(scen)
        elif lam is None and loads is None and target is None:
            p = plan(scen, solver="label-aware", labels=labels, period=PERIOD)
        else:
            p = plan_label_aware(scen, labels, lam=DEFAULT_LAMBDA if lam is None else lam, period=PERIOD,
                                 loads=DEFAULT_LOADS if loads is None else loads,
                                 target=DEFAULT_TARGET if target is None else target)
        rec: dict[str, Any] = {"unit_cost": p.costs.total / max(scen.total_collected, 1),
                               "costs": p.costs.as_dict(), "plan_seconds": time.perf_counter() - t0,
                               "imbalance": imbalance(scen, p, labels, period=PERIOD)["share"],
                               "discarded": float((p.discard * scen.collected).sum() / max(scen.total_collected, 1))}
        if train:
            with warnings.catch_warnings():  # a skewed device repeats points of its labels by design
                warnings.filterwarnings("ignore", message=".*(point stream wraps|points repeat).*")
                r = train_plan(scen, p, dataset=data, model=model, period=PERIOD, lr=lr, seed=seed, passes=passes,
                               eval_every=0, threads=1, local_update=update, partition=part, name=name,
                               class_weights=weights if name == "label-aware" else None)
            rec["accuracy"] = float(r.accuracy)
            rec["train_seconds"] = float(r.seconds)
        out["settings"][name] = rec
    return out


def run_cells(opts: ExperimentOptions, out: Path, alphas: tuple[float, ...]) -> list[dict[str, Any]]:
    """Every (α, seed) cell of ``opts``, each kept as ``out/cells/<key>.json`` (resumed if there)."""
    cells_dir = out / "cells"
    cells_dir.mkdir(parents=True, exist_ok=True)
    done = []
    for alpha in alphas:
        for seed in opts.run_seeds:
            spec = {"alpha": "inf" if math.isinf(alpha) else alpha, "seed": seed, "n": opts.n_devices,
                    "horizon": opts.run_horizon, "model": opts.model, "dataset": opts.dataset,
                    "train": opts.trains(seed), "budget": list(_budget()),
                    "period": PERIOD, "label_aware": LABEL_AWARE_FORMULATION}
            if spec["train"]:  # the loss matters only to cells that train
                spec["label_weights"] = LABEL_AWARE_WEIGHTS
            path = cells_dir / f"{cell_key(spec)}.json"
            if path.exists():
                done.append(json.loads(path.read_text()))
                continue
            rec = run_cell(alpha, seed, opts.n_devices, opts.run_horizon, opts.model, opts.dataset,
                           opts.trains(seed))
            path.write_text(json.dumps(rec, indent=1))
            done.append(rec)
            if opts.progress:
                acc = {k: v.get("accuracy") for k, v in rec["settings"].items()}
                print(f"noniid: α = {spec['alpha']}, seed {seed} done: {acc}", flush=True)
    return done


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else float("nan")


def aggregate(cells: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (α, setting): means and standard deviations over the seeds."""
    rows = []
    alphas = sorted({float(c["alpha"]) for c in cells})
    for a in alphas:
        group = [c for c in cells if float(c["alpha"]) == a]
        for name in SETTINGS:
            recs = [c["settings"][name] for c in group if name in c["settings"]]
            accs = [r["accuracy"] for r in recs if "accuracy" in r]
            rows.append({"alpha": a, "setting": name, "seeds": len(recs),
                         "unit_cost": _mean([r["unit_cost"] for r in recs]),
                         "imbalance": _mean([r["imbalance"] for r in recs]),
                         "discarded": _mean([r["discarded"] for r in recs]),
                         "accuracy": _mean(accs), "accuracy_std": float(np.std(accs, ddof=1)) if len(accs) > 1 else 0.0,
                         "trained": len(accs)})
    return rows


def _plot(path: Path, rows: list[dict[str, Any]]) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from foglearn.io import save_figure

    alphas = sorted({r["alpha"] for r in rows})
    xs = np.arange(len(alphas))
    labels = ["∞" if math.isinf(a) else f"{a:g}" for a in alphas]
    panels = [("unit_cost", "unit cost"), ("imbalance", "label imbalance Σ B / Σ G")]
    if any(r["trained"] for r in rows):
        panels.append(("accuracy", "test accuracy"))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.3))
    for ax, (key, title) in zip(np.atleast_1d(axes), panels, strict=True):
        for name in SETTINGS:
            ys = [next(r[key] for r in rows if r["alpha"] == a and r["setting"] == name) for a in alphas]
            ax.plot(xs, ys, marker="o", label=name)
        ax.set_xticks(xs, labels)
        ax.set_xlabel("Dirichlet α")
        ax.set_title(title)
    np.atleast_1d(axes)[0].legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)


def _points(x: float) -> str:
    """An accuracy difference (a fraction) in signed percentage points, with a typographic minus: ``−0.74``."""
    return f"{'−' if x < 0 else '+'}{abs(100 * x):.2f}"


def paired(cells: list[dict[str, Any]], at: float = 0.1) -> list[tuple[int, float]]:
    """``(seed, label-aware − network-aware accuracy)`` of every trained cell at ``α = at``, by seed: the
    paired differences (same scenario, labels, stream and initial model) the claim's noise is read from."""
    out = []
    for c in cells:
        st = c["settings"]
        if (float(c["alpha"]) == at and "accuracy" in st.get("label-aware", {})
                and "accuracy" in st.get("network-aware", {})):
            out.append((int(c["seed"]), st["label-aware"]["accuracy"] - st["network-aware"]["accuracy"]))
    return sorted(out)


def values(rows: list[dict[str, Any]], cells: list[dict[str, Any]], at: float = 0.1) -> dict[str, Any]:
    """The values the claims read, at ``α = at`` (accuracy-based ones only where trained); ``cells`` give
    the paired per-seed label-aware − network-aware differences and their standard error."""
    def get(alpha: float, name: str, key: str) -> float:
        return next((r[key] for r in rows if r["alpha"] == alpha and r["setting"] == name), float("nan"))

    v: dict[str, Any] = {
        "nm_unit": get(at, "no-movement", "unit_cost"), "la_unit": get(at, "label-aware", "unit_cost"),
        "nm_imb": get(at, "no-movement", "imbalance"), "na_imb": get(at, "network-aware", "imbalance"),
        "la_imb": get(at, "label-aware", "imbalance"),
    }
    if math.isnan(v["nm_unit"]):
        return {}
    v["la_saving"] = 1.0 - v["la_unit"] / v["nm_unit"]
    v["imbalance_drop"] = v["na_imb"] - v["la_imb"]
    nm, na, la, iid = (get(at, "no-movement", "accuracy"), get(at, "network-aware", "accuracy"),
                       get(at, "label-aware", "accuracy"), get(math.inf, "no-movement", "accuracy"))
    if not any(math.isnan(x) for x in (nm, na, la, iid)):
        v.update({"nm_acc": nm, "la_acc": la, "iid_acc": iid, "la_minus_na": la - na,
                  "gap_closed": (la - nm) / (iid - nm) if iid > nm else float("nan")})
        d = paired(cells, at)
        diffs = np.array([x for _, x in d])
        se = float(diffs.std(ddof=1) / np.sqrt(diffs.size)) if diffs.size > 1 else float("nan")
        v["la_minus_na_se"] = se
        v["la_minus_na_points"] = f"{_points(la - na)} points"
        v["la_minus_na_seeds"] = ((", ".join(f"{seed}: {_points(x)}" for seed, x in d) + " points"
                                   + (f" (standard error {100 * se:.2f})" if diffs.size > 1 else "")) if d else "—")
    return v


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| α | setting | seeds | unit cost | imbalance | discarded | accuracy |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        acc = f"{r['accuracy']:.2%} ± {r['accuracy_std']:.2%} ({r['trained']})" if r["trained"] else "—"
        a = "∞ (i.i.d.)" if math.isinf(r["alpha"]) else f"{r['alpha']:g}"
        lines.append(f"| {a} | {r['setting']} | {r['seeds']} | {r['unit_cost']:.4f} | {r['imbalance']:.3f} | "
                     f"{r['discarded']:.3f} | {acc} |")
    return "\n".join(lines)


def configs(opts: ExperimentOptions, alphas: tuple[float, ...]) -> Grid:
    """No sweep-runner configurations: the cells run in :func:`summarise` (module docstring)."""
    return []


def summarise(res: Results) -> Summary:
    cells = run_cells(res.options, res.out, tuple(res.params["alphas"]))
    rows = aggregate(cells)
    write_csv(res.out / "summary.csv", rows)
    plot = _plot(res.out / "noniid.png", rows)
    return Summary(table(rows), [plot], values(rows, cells))


EXPERIMENTS.add(
    "noniid",
    Experiment("Non-IID data: no movement, label-blind and label-aware plans over Dirichlet α", configs,
               summarise, CLAIMS),
    "cost, label imbalance and accuracy of three plans as the label skew α varies (not in the paper)",
    alphas=ALPHAS,
)
