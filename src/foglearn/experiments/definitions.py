"""How an experiment is defined, and the registry of experiments.

An :class:`Experiment` lists its runs as ``(setting label, RunConfig)`` pairs — seeds × settings —
from the options and its registry entry's parameters, turns the finished runs into a
:class:`Summary` (tables, plots, named measured values, notes) and checks the paper's claims on
the measured values from a declarative table of :class:`~foglearn.experiments.report.Claim`
rows. :data:`EXPERIMENTS` maps each name to its entry (the experiment, a one-line description,
its parameters); the paper's evaluation lives in :mod:`foglearn.experiments.paper`, one module
per table or figure. Adding an experiment is one ``EXPERIMENTS.add(...)`` in one file
(``docs/extending.md``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from foglearn.experiments import plots as P
from foglearn.experiments.config import ExperimentOptions, RunConfig
from foglearn.experiments.report import Claim, Section, check_all, pct, render
from foglearn.experiments.tables import aggregate, fmt, markdown_table, pm
from foglearn.registry import Registry

Grid = list[tuple[str, RunConfig]]


@dataclass(frozen=True)
class Results:
    """An experiment's finished runs: raw ``records``, flat ``rows`` (with their ``setting``
    label, in grid order), the options, the run directory and the entry's parameters."""

    records: list[dict[str, Any]]
    rows: list[dict[str, Any]]
    options: ExperimentOptions
    out: Path
    params: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class Summary:
    """What an experiment makes of its runs: the report body (Markdown), plots, the named
    values its claims are checked on, and notes on where it differs from the paper."""

    body: str
    plots: list[Path] = field(default_factory=list)
    values: dict[str, Any] = field(default_factory=dict)
    differences: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Experiment:
    """One experiment: its runs, its summary and the claims it checks.

    ``configs(options, **params)`` lists the runs; ``summarise(results)`` writes ``summary.csv``
    and plots into ``results.out`` and returns the :class:`Summary`; ``claims`` are checked on
    the summary's values, in order.
    """

    title: str
    configs: Callable[..., Grid]
    summarise: Callable[[Results], Summary]
    claims: tuple[Claim, ...] = ()

    def section(self, name: str, results: Results) -> Section:
        """The report section: the summary plus the checks of every claim that was measured."""
        s = self.summarise(results)
        return Section(
            name,
            self.title,
            s.body,
            s.plots,
            check_all(self.claims, s.values),
            differences=s.differences,
        )


#: Experiment name → entry (the :class:`Experiment`, a one-line description, its parameters).
EXPERIMENTS: Registry[Any] = Registry("experiment")


def names() -> tuple[str, ...]:
    """The names ``foglearn reproduce`` accepts: every registered experiment and ``all``."""
    return (*EXPERIMENTS.names(), "all")


# ------------------------------------------------------------------ helpers shared by experiments
def seeded(opts: ExperimentOptions, label: str, cfg: RunConfig, trained_only: bool = False) -> Grid:
    """``cfg`` for every seed; ``train`` only for the seeds that train
    (:meth:`ExperimentOptions.trains`).

    A run that does not train is :meth:`RunConfig.costs_only`, so its key does not depend on the
    training budget. ``trained_only`` drops the seeds that do not train.
    """
    grid: Grid = []
    for s in opts.run_seeds:
        train = cfg.train and opts.trains(s)
        if trained_only and not train:
            continue
        c = cfg.replace(seed=s, train=train)
        if not train:
            c = c.costs_only()
        grid.append((label, c))
    return grid


def by_setting(rows: list[dict[str, Any]], order: Sequence[str]) -> list[dict[str, Any]]:
    """Rows aggregated over seeds per ``setting``, in ``order`` (settings not run are left out)."""
    agg = {r["setting"]: r for r in aggregate(rows, ["setting"])}
    return [agg[s] for s in order if s in agg]


def trained(rows: Sequence[dict[str, Any]]) -> bool:
    """Whether every aggregated row has an accuracy (and there is at least one)."""
    return all(math.isfinite(r.get("accuracy", float("nan"))) for r in rows) and bool(rows)


def acc(r: dict[str, Any]) -> str:
    """``mean ± std %`` accuracy cell."""
    return pm(r, "accuracy", 4, scale=100, suffix=" %")


def _trained_values(rows: Sequence[dict[str, Any]], key: str, default: float) -> list[float]:
    """The distinct values of ``key`` over the trained rows (``default`` when none)."""
    return sorted(
        {float(r.get(key, default)) for r in rows if str(r.get("train")) in ("True", "true", "1")}
        or {default}
    )


def lr(rows: Sequence[dict[str, Any]]) -> str:
    """The learning rate(s) η of the trained runs, e.g. ``0.01``."""
    return "/".join(f"{x:g}" for x in _trained_values(rows, "lr", 0.01))


BUDGET = (
    "Accuracy differences are mostly the training budget: we train {passes} pass(es) over the "
    "horizon ({rule}, η = {lr}, T slots per pass), while the paper "
    'trains its baselines "until convergence" and does not state its network-aware budget.'
)


def update_rule(rows: Sequence[dict[str, Any]]) -> str:
    """The local update rule(s) of the trained runs in words (``RunConfig.local_update``)."""
    specs = sorted({str(r.get("local_update") or "paper") for r in rows
                    if str(r.get("train")) in ("True", "true", "1")} or {"paper"})

    def words(spec: str) -> str:
        kind, _, b = spec.partition(":")
        if kind == "paper":
            return "one SGD step per device and slot, eq. (3)"
        steps = f"⌈G_i(t)/{b}⌉ SGD steps per device and slot on mini-batches of {b} points"
        return steps + (f", a batch of k < {b} points stepping k/{b} as far" if kind == "scaled" else "")

    return "; ".join(words(u) for u in specs)


def budget(rows: Sequence[dict[str, Any]]) -> str:
    """A sentence on the training budget behind the accuracies (vs the paper's)."""
    passes = "/".join(str(int(x)) for x in _trained_values(rows, "passes", 1))
    return render(BUDGET, passes=passes, lr=lr(rows), rule=update_rule(rows))


def cost_columns(r: dict[str, Any]) -> list[str]:
    """process, transfer, discard, total (mean ± std) and unit cost cells."""
    return [
        pm(r, "processing", 4),
        pm(r, "transfer", 4),
        pm(r, "discard", 4),
        pm(r, "total", 4),
        pm(r, "unit", 3),
    ]


def monotone_share(values: Sequence[float]) -> float:
    """The share of consecutive steps that do not decrease."""
    d = np.diff(np.asarray(values, dtype=float))
    return float((d >= -1e-9).mean()) if d.size else 1.0


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rank correlation (0 when either side is constant)."""
    rx = np.argsort(np.argsort(x)).astype(float)
    ry = np.argsort(np.argsort(y)).astype(float)
    if rx.std() == 0 or ry.std() == 0:
        return 0.0
    return float(np.corrcoef(rx, ry)[0, 1])


def sweep_table(xname: str, xs: Sequence[Any], agg: list[dict[str, Any]]) -> str:
    """Figs. 5–7's table: one row per value of the swept parameter."""
    out = []
    for x, r in zip(xs, agg, strict=True):
        u = P.unit_components(r)
        out.append(
            [
                f"{x:g}",
                pct(r["offload_rate"]),
                f"{pct(r['slot_offload_min'], 0)}–{pct(r['slot_offload_max'], 0)}",
                pct(r["process_rate"]),
                pct(r["discard_rate"]),
                fmt(u["processing"]),
                fmt(u["transfer"]),
                fmt(u["discard"]),
                pm(r, "unit", 3),
                acc(r),
            ]
        )
    return markdown_table(
        [
            xname,
            "offloaded",
            "range over slots",
            "processed",
            "discarded",
            "process/pt",
            "transfer/pt",
            "discard/pt",
            "unit cost",
            "accuracy",
        ],
        out,
    )


def sweep_values(xs: Sequence[Any], agg: list[dict[str, Any]]) -> dict[str, Any]:
    """The measured values of a sweep (Figs. 5–7) that their claims and notes use.

    Series over the swept values ``xs`` (``offload``, ``unit``, ``accuracy``, … as ``(x, y)``
    pairs for the templates), first/last values, Spearman correlations with ``x``, the
    per-point cost components (``processing_pt`` …) at both ends and how far the largest
    per-point transfer cost exceeds the smallest (``transfer_spread``).
    """
    off = [r["offload_rate"] for r in agg]
    unit = [r["unit"] for r in agg]
    comp = {
        k: [P.unit_components(r)[k] for r in agg] for k in ("processing", "transfer", "discard")
    }
    v: dict[str, Any] = {
        "xs": list(xs),
        "x_first": xs[0],
        "x_last": xs[-1],
        "offload": list(zip(xs, off, strict=True)),
        "offload_first": off[0],
        "offload_last": off[-1],
        "offload_monotone": monotone_share(off),
        "offload_rho": spearman(xs, off),
        "unit": list(zip(xs, unit, strict=True)),
        "unit_first": unit[0],
        "unit_last": unit[-1],
        "unit_rho": spearman(xs, unit),
        "unit_values": unit,
        "transfer_spread": _spread(comp["transfer"]),
    }
    for k, series in comp.items():
        v[f"{k}_pt_first"], v[f"{k}_pt_last"] = series[0], series[-1]
    if trained(agg):
        a = [r["accuracy"] for r in agg]
        v.update(
            accuracy=list(zip(xs, a, strict=True)),
            accuracy_first=a[0],
            accuracy_last=a[-1],
            accuracy_values=a,
        )
    return v


def _spread(values: Sequence[float]) -> float:
    """``max / min − 1`` of non-negative values (0 when all are 0)."""
    hi, lo = max(values), min(values)
    if lo > 0:
        return hi / lo - 1
    return 0.0 if hi == 0 else math.inf


STEP_NOTE = (
    "Accuracy follows the share of device-slots that take an SGD step (Spearman {rho:+.2f} over "
    "{xname}: {steps:*<x:g>: <y:pct0> → <z:pct>}). Eq. (3) takes one step per device and slot "
    "whatever G_i(t) is, so moving data onto fewer, cheaper devices (and discarding) leaves fewer "
    "local steps per aggregation at a fixed budget."
)


def step_note(xname: str, xs: Sequence[Any], agg: list[dict[str, Any]]) -> list[str]:
    """A data-driven note on why accuracy moves: eq. (3) takes one step per device and slot with
    ``G_i(t) > 0``, so accuracy follows the share of device-slots that step."""
    if not trained(agg) or not all(math.isfinite(r.get("step_rate", float("nan"))) for r in agg):
        return []
    accuracy = [r["accuracy"] for r in agg]
    steps = [r["step_rate"] for r in agg]
    items = [{"x": x, "y": s, "z": a} for x, s, a in zip(xs, steps, accuracy, strict=True)]
    return [render(STEP_NOTE, rho=spearman(steps, accuracy), xname=xname, steps=items)]
