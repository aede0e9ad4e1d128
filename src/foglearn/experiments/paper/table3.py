"""Table III: costs and accuracy of settings A–D (CNN, n = 10, T = 100, fully connected).

A is no movement; B network-aware with perfect information; C plans each window of length τ from
the previous window's averages; D is C under capacities. Beyond the paper, the same settings are
run (costs only) on costs that persist over time (``synthetic(persistence=0.8)``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from foglearn.experiments import paper
from foglearn.experiments import plots as P
from foglearn.experiments.config import ExperimentOptions, RunConfig
from foglearn.experiments.definitions import (
    EXPERIMENTS,
    Experiment,
    Grid,
    Results,
    Summary,
    acc,
    budget,
    by_setting,
    cost_columns,
    seeded,
    trained,
)
from foglearn.experiments.report import Claim, pct, render
from foglearn.experiments.tables import fmt, lean_summary, markdown_table, write_csv

SETTINGS = ("A", "B", "C", "D")
COSTS = ("processing", "transfer", "discard", "total", "unit")
#: The paper's A row implies this many collected points (total / unit cost).
PAPER_POINTS = paper.TABLE3["A"]["total"] / paper.TABLE3["A"]["unit"]

TEXT = {
    "settings": "Settings: {settings}.",
    "setting": "**{s}** {description}",
    "volume": (
        "Each run collects {collected:,.0f} datapoints on average (D_i(t) ~ U{{0, …, {top}}} = "
        "⌊|D_V|/(nT)⌋ with |D_V| = {pool:,}); the paper's totals imply {share} that volume (its A "
        "row: {paper_total:.0f} / {paper_unit:.2f} ≈ {paper_points:,.0f} points), and its transfer "
        "cost per offloaded point exceeds the 1/n = 0.1 that c_ij ~ U(0, 1/n) allows "
        "(docs/model.md §4). Absolute costs therefore differ; compare unit costs, orderings and "
        "ratios."
    ),
    "fraction": "about 1/{ratio:.0f} of",
    "multiple": "about {ratio:.0f}×",
    "persistent": (
        "**Beyond the paper: costs that persist.** docs/model.md §4 redraws every cost each slot, "
        "so a window's averages cannot predict the next window. With `synthetic(persistence={p})` "
        "each device and link keeps a base cost (cost(t) = {p}·base + {q:.1f}·U(t): same range and "
        "mean), as measured devices do. The same settings, costs only:"
    ),
    "versus": (
        "Setting {s}: unit cost {unit:fmt} here vs {paper[unit]:.2f} in the paper; total "
        "{total:fmt} vs {paper[total]:,.0f} because our runs collect ≈{collected:fmt} points (the "
        "paper ≈{paper_points:,.0f})"
    ),
    "versus_accuracy": "; accuracy {accuracy:pct2} vs {paper[accuracy]:.2f} %",
    "scale": (
        "Our A unit cost is {ra:.2f}× the paper's and our B unit cost {rb:.2f}× the paper's: under "
        "the stated distributions (c_i ~ U(0,1), c_ij ~ U(0,1/n), f ~ U(0,1)) docs/model.md §4 "
        "finds B ≈ 0.12 and A ≈ 0.49, so the paper's B–D rows cannot be matched in absolute terms "
        "— its transfer cost per offloaded point ({paper_transfer_pt:.3f} in B) exceeds the "
        "largest c_ij = 1/n = 0.1. The A → B ordering and relative drop are what can be compared."
    ),
    "estimated": (
        "Estimated information {gain} perfect information's saving (unit cost A {unit_A:fmt}, C "
        "{unit_C:fmt}, B {unit_B:fmt}), not the paper's near-parity. With docs/model.md §4's "
        "protocol the costs c_i(t), c_ij(t), f_i(t) are drawn i.i.d. every slot, so the previous "
        "window's averages say nothing about which device or link is cheap in the current slot; "
        "the gain of setting B comes entirely from per-slot variation that a window-average plan "
        "cannot see. The paper's C result needs costs that persist over time (as measured costs "
        "do)."
    ),
    "recovers": "recovers {share:.0%} of",
    "loses": "loses all of",
    "accuracy": (
        "B is less accurate than A here ({acc_B:pct2} vs {acc_A:pct2}), the opposite of the paper. "
        "Eq. (3) takes one SGD step per device and slot whatever G_i(t) is, so concentrating data "
        "on cheap devices does not buy more steps: in B only {steps_B:pct0} of device-slots take a "
        "step (A: {steps_A:pct0}) and {discard_B:pct} of the points are discarded, so the averaged "
        "model makes less progress per aggregation at this budget."
    ),
}

#: Estimated information counts as close to perfect when its unit cost is within this share.
CLOSE = 0.15
_UNIT = {s: paper.TABLE3[s]["unit"] for s in SETTINGS}
CLAIMS = (
    Claim(
        "Network-aware (B) costs far less than no movement (A): unit cost drop ≥ {threshold:pct0}",
        "drop_B",
        ">=",
        0.40,
        "unit cost {unit_A:fmt} → {unit_B:fmt}, a {drop_B:pct} drop (paper: {paper[A]:.2f} → "
        "{paper[B]:.2f}, {paper[change]:spct})",
        paper={**_UNIT, "change": _UNIT["B"] / _UNIT["A"] - 1},
    ),
    Claim(
        "Estimated information (C) is close to perfect (B): unit cost within {threshold:pct0}",
        "c_vs_b_size",
        "<=",
        CLOSE,
        "C {unit_C:fmt} vs B {unit_B:fmt} ({c_vs_b:+.1%}); paper: {paper[C]:.2f} vs {paper[B]:.2f}",
        paper=_UNIT,
    ),
    Claim(
        "Capacities (D) raise the unit cost over C but stay well below A "
        "(≥ {threshold:pct0} below)",
        "d_below_a",
        ">=",
        0.25,
        "D {unit_D:fmt} vs C {unit_C:fmt} and A {unit_A:fmt} ({d_below_a:.1%} below A); paper: "
        "{paper[D]:.2f} vs {paper[C]:.2f} and {paper[A]:.2f}; {violations_D:fmt} capacity "
        "violations per run on average",
        paper=_UNIT,
        also=(("unit_D", ">", "unit_C"),),
    ),
    Claim(
        "Accuracy of B is comparable to no movement A (within {threshold:pts} points) or better",
        "acc_b_minus_a",
        ">=",
        -0.03,
        "A {acc_A:pct2}, B {acc_B:pct2}, C {acc_C:pct2}, D {acc_D:pct2} (paper: {paper[A]:.2f}, "
        "{paper[B]:.2f}, {paper[C]:.2f}, {paper[D]:.2f} %)",
        paper={s: paper.TABLE3[s]["accuracy"] for s in SETTINGS},
    ),
    Claim(
        "Estimated information keeps B's accuracy (C within {threshold:pts} points of B)",
        "acc_c_vs_b_size",
        "<=",
        0.03,
        "C {acc_C:pct2} vs B {acc_B:pct2}",
    ),
    Claim(
        "With persistent costs, estimated information (C) recovers most (≥ {threshold:pct0}) of "
        "perfect information's saving",
        "share_p",
        ">=",
        0.5,
        "unit cost A {unit_A_p:fmt}, B {unit_B_p:fmt}, C {unit_C_p:fmt}, D {unit_D_p:fmt}: C "
        "recovers {share_p:.0%} of A − B",
    ),
)


def setting_config(opts: ExperimentOptions, setting: str, **changes: Any) -> RunConfig:
    """Table III's settings A–D (window of the estimated information: ``opts.window`` or τ =
    ``period``, scaled with the horizon in quick mode, :meth:`ExperimentOptions.run_window`)."""
    base = opts.base(**changes)
    if setting == "A":
        return base.replace(movement=False)
    if setting == "B":
        return base
    if setting == "C":
        return base.replace(information=opts.run_window(base.period))
    if setting == "D":
        return base.replace(information=opts.run_window(base.period), capacities=True)
    raise ValueError(f"setting = {setting!r}: must be one of {SETTINGS}")


def persistent(setting: str) -> str:
    """The label of ``setting`` under persistent costs."""
    return f"{setting}·p"


def configs(opts: ExperimentOptions, persistence: float) -> Grid:
    grid = [item for s in SETTINGS for item in seeded(opts, s, setting_config(opts, s))]
    return grid + [
        item
        for s in SETTINGS
        for item in seeded(
            opts, persistent(s), setting_config(opts, s, persistence=persistence, train=False)
        )
    ]


#: Columns of the tables: the costs (mean ± std over seeds), rates and capacity violations.
COLUMNS = ("process", "transfer", "discard", "total", "unit", "offloaded", "discarded",
           "violations")


def _row(label: str, r: dict[str, Any]) -> list[str]:
    rates = [pct(r["offload_rate"]), pct(r["discard_rate"]), fmt(r["violations"], 3)]
    return [label, *cost_columns(r), *rates]


def summarise(res: Results) -> Summary:
    from foglearn.experiments.runner import _dataset_size

    agg = by_setting(res.rows, SETTINGS)
    write_csv(res.out / "summary.csv", lean_summary(agg))
    by = {r["setting"]: r for r in agg}
    table_rows = []
    for s in [s for s in SETTINGS if s in by]:
        ours, p = _row(f"{s} (ours)", by[s]), paper.TABLE3[s]
        table_rows.append([ours[0], acc(by[s]), *ours[1:]])
        theirs = [fmt(float(p[k]), 4) for k in COSTS]
        table_rows.append([f"{s} (paper)", f"{p['accuracy']:.2f} %", *theirs, "", "", ""])
    body = markdown_table(["setting", "accuracy", *COLUMNS], table_rows)
    described = "; ".join(
        render(TEXT["setting"], s=s, description=paper.TABLE3_SETTINGS[s]) for s in SETTINGS
    )
    body += "\n\n" + render(TEXT["settings"], settings=described)
    pool = _dataset_size(res.options.dataset)
    collected = float(np.mean([float(r["collected"]) for r in res.rows]))
    share = (
        render(TEXT["fraction"], ratio=collected / PAPER_POINTS)
        if collected >= PAPER_POINTS
        else render(TEXT["multiple"], ratio=PAPER_POINTS / collected)
    )
    body += "\n\n" + render(
        TEXT["volume"],
        collected=collected,
        top=max(1, pool // (res.options.n_devices * res.options.run_horizon)),
        pool=pool,
        share=share,
        paper_total=paper.TABLE3["A"]["total"],
        paper_unit=paper.TABLE3["A"]["unit"],
        paper_points=PAPER_POINTS,
    )
    present = [s for s in SETTINGS if s in by]
    plot = P.table3_figure(res.out / "table3.png", present, [by[s] for s in present])
    values: dict[str, Any] = {}
    if present == list(SETTINGS):
        values.update(_setting_values(by))
    body += _persistent_block(res, values)
    return Summary(body, [plot], values, differences=notes(by, agg, values, res.rows))


def _persistent_block(res: Results, values: dict[str, Any]) -> str:
    """Beyond the paper: the settings' costs when each device's and link's cost persists over
    time. Adds the measured values of its claim to ``values``; returns the report's paragraph."""
    persistence = res.params["persistence"]
    by = {r["setting"]: r for r in by_setting(res.rows, [persistent(s) for s in SETTINGS])}
    if not all(persistent(s) in by for s in SETTINGS):
        return ""
    rows = [_row(f"{s} (persistent)", by[persistent(s)]) for s in SETTINGS]
    A, B, C, D = (by[persistent(s)]["unit"] for s in SETTINGS)
    values.update(
        unit_A_p=A,
        unit_B_p=B,
        unit_C_p=C,
        unit_D_p=D,
        share_p=(A - C) / (A - B) if A > B else float("nan"),
    )
    text = render(TEXT["persistent"], p=persistence, q=1 - persistence)
    return "\n\n" + text + "\n\n" + markdown_table(["setting", *COLUMNS], rows)


def _setting_values(by: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The measured values of settings A–D that the claims and notes use."""
    A, B, C, D = (by[s]["unit"] for s in SETTINGS)
    v: dict[str, Any] = {f"unit_{s}": by[s]["unit"] for s in SETTINGS}
    v.update(
        drop_B=1 - B / A,
        c_vs_b=C / B - 1,
        c_vs_b_size=abs(C / B - 1),
        d_below_a=1 - D / A,
        violations_D=by["D"]["violations"],
    )
    if trained(list(by.values())):
        a = {s: by[s]["accuracy"] for s in SETTINGS}
        v.update({f"acc_{s}": a[s] for s in SETTINGS})
        v.update(
            acc_b_minus_a=a["B"] - a["A"],
            acc_c_vs_b_size=abs(a["C"] - a["B"]),
            steps_A=by["A"]["step_rate"],
            steps_B=by["B"]["step_rate"],
            discard_B=by["B"]["discard_rate"],
        )
    return v


def notes(
    by: dict[str, dict[str, Any]],
    agg: list[dict[str, Any]],
    values: dict[str, Any],
    rows: list[dict[str, Any]],
) -> list[str]:
    """Where Table III differs from the paper, and why."""
    diffs = []
    for s in SETTINGS:
        if s not in by:
            continue
        r, p = by[s], paper.TABLE3[s]
        ns = {
            "s": s,
            "unit": r["unit"],
            "total": r["total"],
            "collected": r["collected"],
            "accuracy": r["accuracy"],
            "paper": p,
            "paper_points": p["total"] / p["unit"],
        }
        line = render(TEXT["versus"], ns)
        if np.isfinite(r["accuracy"]):
            line += render(TEXT["versus_accuracy"], ns)
        diffs.append(line + ".")
    if "A" in by and "B" in by:
        pb = paper.TABLE3["B"]
        diffs.append(
            render(
                TEXT["scale"],
                ra=by["A"]["unit"] / paper.TABLE3["A"]["unit"],
                rb=by["B"]["unit"] / pb["unit"],
                paper_transfer_pt=pb["transfer"] * pb["unit"] / pb["total"],
            )
        )
    if all(k in by for k in ("A", "B", "C")) and by["C"]["unit"] > (1 + CLOSE) * by["B"]["unit"]:
        A, B, C = by["A"]["unit"], by["B"]["unit"], by["C"]["unit"]
        share = (A - C) / (A - B) if A > B else float("nan")
        gain = render(TEXT["recovers"], share=share) if share > 0 else TEXT["loses"]
        diffs.append(render(TEXT["estimated"], gain=gain, unit_A=A, unit_B=B, unit_C=C))
    if "acc_A" in values and values["acc_B"] < values["acc_A"]:
        diffs.append(render(TEXT["accuracy"], values))
    if trained(agg):
        diffs.append(budget(rows))
    return diffs


EXPERIMENTS.add(
    "table3",
    Experiment("Table III — costs and accuracy of settings A–D", configs, summarise, CLAIMS),
    "costs and accuracy of settings A–D "
    "(no movement; perfect or estimated information; capacities)",
    persistence=0.8,
)
