"""Devices that join or leave mid-horizon: cost, lost points and accuracy against the churn rate.

Not in the paper (its active set ``V(t)`` is given, docs/model.md §1). On the paper's setting B
(``synthetic(n, T, full, no capacities, seed)``, perfect information, linear error), for every
churn fraction ``f`` in ``fractions`` and seed, ``round(f·n)`` devices leave at random slots and as
many others join late (:func:`foglearn.experiments.runner.churn_schedule`,
:func:`foglearn.network.with_churn`, docs/dynamics.md); the points a departing device collected in
its leave slot are either **lost** or **handed over** to a neighbour. ``f = 0`` is the no-churn
baseline. Each run records the network-aware plan's unit cost (eq. 5 over the points collected),
the points collected, absent (outside the presence intervals), lost and handed over, the offloading
and discard rates and, when the options train, the final test accuracy.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from foglearn.experiments.config import ExperimentOptions
from foglearn.experiments.definitions import (
    EXPERIMENTS,
    Experiment,
    Grid,
    Results,
    Summary,
    acc,
    budget,
    by_setting,
    seeded,
    spearman,
    trained,
)
from foglearn.experiments.report import Claim, pct, render
from foglearn.experiments.tables import fmt, lean_summary, markdown_table, pm, write_csv

#: Churn fractions swept (0 = the no-churn baseline).
FRACTIONS = (0.0, 0.1, 0.3, 0.5)
#: The two fates of a departing device's stranded points.
FATES = ("lost", "handover")
#: Counts of ``info["churn"]`` (docs/dynamics.md) added to every row, in points.
COUNTS = ("stranded", "handed_over", "lost", "absent")

TEXT = {
    "setup": (
        "Setting B (n = {n}, T = {horizon}, fully connected, perfect information, linear error); a "
        "churn fraction f makes round(f·n) devices leave at a slot drawn uniformly from 1 … T−1 and "
        "round(f·n) others join at such a slot (the same devices and slots for both fates of a seed). "
        "*collected* is Σ D of the churned scenario, as a share of the points the devices would have "
        "collected without churn; *absent* are points outside the presence intervals, never "
        "collected; *lost* and *handed over* are the points the leaving devices collected in their "
        "leave slot. Unit cost is the plan's total cost (eq. 5) per point collected."
    ),
    "absent": (
        "Absent points dominate what churn removes: {absent_last:fmt} points per run are never "
        "collected at f = {f_last:pct0}, against {lost_last:fmt} lost in leave slots. In this slot "
        "model a device holds no backlog, so a departure strands one slot's arrivals; handover "
        "saves those and nothing else, and the two fates plan almost the same network."
    ),
}

CLAIMS = (
    Claim(
        "With handover no point is lost",
        "lost_handover",
        "==",
        0.0,
        "points lost per run with handover, over all churn fractions: {lost_handover:fmt}",
    ),
    Claim(
        "Without handover the points lost grow with the churn fraction",
        "lost_rho",
        ">",
        0.0,
        "points lost per run: {lost_series:*f = <x:pct0>: <y:fmt>} (Spearman {lost_rho:+.2f})",
        also=(("lost_last", ">", 0.0),),
    ),
    Claim(
        "Churn raises the unit cost (fewer devices to process and to offload to)",
        "unit_last",
        ">",
        "unit_base",
        "unit cost {unit_series:*f = <x:pct0>: <y:fmt4>} (data lost); no churn {unit_base:fmt4}",
    ),
    Claim(
        "Handover changes the unit cost by less than 1 %",
        "handover_unit_gap",
        "<",
        0.01,
        "largest relative gap between the two fates' unit costs over f: {handover_unit_gap:pct2}",
    ),
    Claim(
        "Churn lowers the offloading rate",
        "offload_last",
        "<",
        "offload_base",
        "offloading rate {offload_series:*f = <x:pct0>: <y:pct>} (data lost); no churn {offload_base:pct}",
    ),
    Claim(
        "Churn costs at most 1 point of accuracy (largest fraction, data lost, vs no churn)",
        "accuracy_drop",
        "<=",
        0.01,
        "accuracy no churn {accuracy_base:pct2}, f = {f_last:pct0} lost {accuracy_last:pct2}, "
        "handed over {accuracy_last_handover:pct2}",
    ),
)


def label(fraction: float, fate: str) -> str:
    """The setting label of a churn fraction and fate (``no churn`` for ``fraction = 0``)."""
    return "no churn" if fraction == 0 else f"{fraction:.0%} {fate}"


def configs(opts: ExperimentOptions, fractions: tuple[float, ...]) -> Grid:
    grid: Grid = []
    for f in fractions:
        for fate in FATES if f > 0 else FATES[:1]:
            grid += seeded(opts, label(f, fate), opts.base(churn=f, handover=fate == "handover"))
    return grid


def churn_rows(res: Results) -> list[dict[str, Any]]:
    """``res.rows`` with the counts of ``info["churn"]`` (0 on unchurned runs), the devices that
    churn and ``collected_share`` (collected / (collected + lost + absent))."""
    records = {r["key"]: r for r in res.records}
    rows = []
    for row in res.rows:
        churn = records[row["key"]].get("churn") or {}
        out = {**row, **{k: float(churn.get(k, 0)) for k in COUNTS}}
        out["leaving"] = float(len(churn.get("leave", {})))
        out["joining"] = float(len(churn.get("join", {})))
        whole = out["collected"] + out["lost"] + out["absent"]
        out["collected_share"] = out["collected"] / whole if whole else float("nan")
        rows.append(out)
    return rows


def values(fractions: list[float], agg: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The measured values the claims and notes read (``agg``: aggregated rows by setting)."""
    base = agg.get(label(0.0, "lost"))
    churned = [f for f in fractions if f > 0 and label(f, "lost") in agg and label(f, "handover") in agg]
    if base is None or not churned:
        return {}
    lost = [agg[label(f, "lost")] for f in churned]
    hand = [agg[label(f, "handover")] for f in churned]
    xs = [0.0, *churned]
    lost_series = [0.0, *(r["lost"] for r in lost)]
    v: dict[str, Any] = {
        "f_last": churned[-1], "unit_base": base["unit"], "unit_last": lost[-1]["unit"],
        "unit_series": list(zip(xs, [base["unit"], *(r["unit"] for r in lost)], strict=True)),
        "offload_base": base["offload_rate"], "offload_last": lost[-1]["offload_rate"],
        "offload_series": list(zip(xs, [base["offload_rate"], *(r["offload_rate"] for r in lost)], strict=True)),
        "lost_series": list(zip(xs, lost_series, strict=True)), "lost_rho": spearman(xs, lost_series),
        "lost_last": lost[-1]["lost"], "absent_last": lost[-1]["absent"],
        "lost_handover": float(sum(r["lost"] for r in hand)) + base["lost"],
        "handover_unit_gap": max(abs(h["unit"] - r["unit"]) / r["unit"] for h, r in zip(hand, lost, strict=True)),
    }
    if trained([base, lost[-1], hand[-1]]):
        v.update(accuracy_base=base["accuracy"], accuracy_last=lost[-1]["accuracy"],
                 accuracy_last_handover=hand[-1]["accuracy"], accuracy_drop=base["accuracy"] - lost[-1]["accuracy"])
    return v


def table(order: list[str], agg: dict[str, dict[str, Any]]) -> str:
    rows = []
    for s in order:
        r = agg[s]
        rows.append([s, f"{fmt(r['leaving'])} / {fmt(r['joining'])}", pm(r, "collected", 5),
                     pct(r["collected_share"]), fmt(r["absent"], 4), fmt(r["lost"], 4), fmt(r["handed_over"], 4),
                     pct(r["offload_rate"]), pct(r["discard_rate"]), pm(r, "unit", 4), acc(r)])
    return markdown_table(["setting", "leave / join", "collected", "share", "absent", "lost", "handed over",
                           "offloaded", "discarded", "unit cost", "accuracy"], rows)


def _plot(path: Path, fractions: list[float], agg: dict[str, dict[str, Any]]) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from foglearn.io import save_figure

    panels = [("unit", "unit cost", 1.0), ("lost", "points lost per run", 1.0),
              ("offload_rate", "offloading rate (%)", 100.0), ("collected_share", "points collected (%)", 100.0)]
    if trained(list(agg.values())):
        panels.append(("accuracy", "test accuracy (%)", 100.0))
    fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels), 3.3))
    for k, (ax, (metric, title, scale)) in enumerate(zip(np.atleast_1d(axes), panels, strict=True)):
        for fate, marker in zip(FATES, ("o", "s"), strict=True):
            pts = [(100 * f, scale * agg[label(f, fate)][metric]) for f in fractions if label(f, fate) in agg]
            if pts:
                ax.plot(*zip(*pts, strict=True), marker=marker, label="data lost" if fate == "lost" else "handed over")
        ax.set_xlabel("devices churning (%)")
        ax.set_title(f"({'abcde'[k]}) {title}")
    np.atleast_1d(axes)[0].legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)


def summarise(res: Results) -> Summary:
    fractions = [float(f) for f in res.params["fractions"]]
    order = list(dict.fromkeys(label(f, fate) for f in fractions for fate in (FATES if f > 0 else FATES[:1])))
    aggregated = by_setting(churn_rows(res), order)
    write_csv(res.out / "summary.csv", lean_summary(aggregated))
    agg = {r["setting"]: r for r in aggregated}
    order = [s for s in order if s in agg]
    plot = _plot(res.out / "dynamics.png", fractions, agg)
    v = values(fractions, agg)
    first = aggregated[0]
    body = table(order, agg) + "\n\n" + render(TEXT["setup"], n=first.get("n_devices", res.options.n_devices),
                                               horizon=first.get("horizon", res.options.run_horizon))
    notes = [render(TEXT["absent"], v)] if v and not math.isnan(v["absent_last"]) else []
    if trained(aggregated):
        notes.append(budget(churn_rows(res)))
    return Summary(body, [plot], v, differences=notes)


EXPERIMENTS.add(
    "dynamics",
    Experiment("Devices that join or leave: cost, lost points and accuracy against the churn rate", configs,
               summarise, CLAIMS),
    "unit cost, points lost or handed over, offloading and accuracy as devices leave and join (not in the paper)",
    fractions=FRACTIONS,
)
