"""Fig. 6: the effect of the aggregation period τ (setting B, n = 10).

The cost panel uses the time-decaying error weight ``f_i(t) = U(0,1)/sqrt(slot within the
period)`` with period τ (``error_decay_period = τ``, docs/model.md §4): under the linear model
with i.i.d. ``f`` the planned costs would not depend on τ at all.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from foglearn.experiments import paper
from foglearn.experiments import plots as P
from foglearn.experiments.config import ExperimentOptions
from foglearn.experiments.definitions import (
    EXPERIMENTS,
    Experiment,
    Grid,
    Results,
    Summary,
    by_setting,
    lr,
    seeded,
    sweep_table,
    sweep_values,
    trained,
)
from foglearn.experiments.report import Claim, render
from foglearn.experiments.tables import lean_summary, write_csv

TEXT = {
    "decay": (
        "The error weight follows docs/model.md §4's decaying schedule f_i(t) = U(0,1)/sqrt(slot "
        "within the period τ) (`error_decay_period = τ`). Without it the linear-model plan, and "
        "hence every cost, would not depend on τ at all; with it discarding late in a long period "
        "is cheap, which is the paper's explanation of its cost panel. The aggregation period of "
        "training is τ as well."
    ),
    "short_horizon": (
        " With the horizon T = {horizon}, periods τ ≥ T aggregate only at the end of the run."
    ),
    "accuracy": (
        "Accuracy falls monotonically with τ here instead of peaking: {items:*τ = <x>: <y:pct> "
        "with <z:pct0> of points discarded}. Two effects add up: with the decaying error weight a "
        "longer period makes discarding cheaper, so less data is trained on; and at this budget "
        "(one step per slot, η = {lr}) more frequent averaging still helps. The paper's peak at τ "
        '≈ {best_tau} needs local models that become "steady" between aggregations, which one '
        "SGD step per slot does not reach at this budget."
    ),
}

CLAIMS = (
    Claim(
        "Costs fall with τ",
        "unit_rho",
        "<",
        0.0,
        "unit cost {unit:*τ=<x>: <y:fmt>}",
        also=(("unit_last", "<", "unit_first"),),
    ),
    Claim(
        "Per-point processing and discard costs fall with τ while transfer stays about constant "
        "(within {threshold:pct0})",
        "transfer_spread",
        "<=",
        0.25,
        "per point, τ = {x_first} → {x_last}: processing {processing_pt_first:fmt} → "
        "{processing_pt_last:fmt}; transfer {transfer_pt_first:fmt} → {transfer_pt_last:fmt}; "
        "discard {discard_pt_first:fmt} → {discard_pt_last:fmt}",
        also=(
            ("processing_pt_last", "<", "processing_pt_first"),
            ("discard_pt_last", "<", "discard_pt_first"),
        ),
    ),
    Claim(
        "Accuracy peaks at an intermediate τ (paper: about τ = {paper[best_tau]})",
        "peak_inside",
        "==",
        True,
        "accuracy {accuracy:*τ=<x>: <y:pct>}; best at τ = {best_tau}",
        paper=paper.FIG6,
    ),
)


def configs(opts: ExperimentOptions, periods: tuple[int, ...]) -> Grid:
    return [
        item
        for tau in periods
        for item in seeded(opts, str(tau), opts.base(period=tau, error_decay_period=tau))
    ]


def summarise(res: Results) -> Summary:
    periods = res.params["periods"]
    agg = by_setting(res.rows, [str(t) for t in periods])
    write_csv(res.out / "summary.csv", lean_summary(agg))
    xs = [int(r["setting"]) for r in agg]
    panels = ["costs"] + (["accuracy"] if trained(agg) else [])
    plot = P.sweep_figure(res.out / "fig6.png", xs, agg, "aggregation period τ", panels, logx=False)
    body = sweep_table("τ", xs, agg) + "\n\n" + TEXT["decay"]
    if res.options.run_horizon < max(periods):
        body += render(TEXT["short_horizon"], horizon=res.options.run_horizon)
    values: dict[str, Any] = sweep_values(xs, agg)
    diffs = []
    if trained(agg):
        best = int(np.argmax(values["accuracy_values"]))
        values.update(best_tau=xs[best], peak_inside=0 < best < len(xs) - 1)
        items = [
            {"x": x, "y": r["accuracy"], "z": r["discard_rate"]}
            for x, r in zip(xs, agg, strict=True)
        ]
        diffs.append(
            render(TEXT["accuracy"], items=items, lr=lr(res.rows), best_tau=paper.FIG6["best_tau"])
        )
    return Summary(body, [plot], values, differences=diffs)


EXPERIMENTS.add(
    "fig6",
    Experiment("Fig. 6 — effect of the aggregation period τ", configs, summarise, CLAIMS),
    "costs and accuracy as the aggregation period τ grows",
    periods=(1, 5, 10, 20, 50, 100),
)
