"""Fig. 5: the effect of the number of devices n (setting B, τ = 10, fully connected)."""

from __future__ import annotations

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
    seeded,
    step_note,
    sweep_table,
    sweep_values,
    trained,
)
from foglearn.experiments.report import Claim
from foglearn.experiments.tables import lean_summary, write_csv

CLAIMS = (
    Claim(
        "Offloading rate rises with n",
        "offload_monotone",
        ">=",
        0.8,
        "offloading rate {offload:*n=<x>: <y:pct>} (paper: over {paper[offload_rate]:pct0} at n = "
        "{paper[n]})",
        paper=paper.FIG5,
        also=(("offload_last", ">", "offload_first"),),
    ),
    Claim(
        "Offloading rate exceeds {threshold:pct0} at the largest n (paper: n = {paper[n]})",
        "offload_last",
        ">",
        paper.FIG5["offload_rate"],
        "n = {x_last}: {offload_last:pct}",
        paper=paper.FIG5,
    ),
    Claim(
        "Unit cost falls with n",
        "unit_rho",
        "<",
        0.0,
        "unit cost {unit_values:*fmt}",
        also=(("unit_last", "<", "unit_first"),),
    ),
    Claim(
        "Per-point processing and discard costs rise with n while transfer drives the saving",
        "processing_pt_last",
        ">",
        "processing_pt_first",
        "per point, n = {x_first} → {x_last}: processing {processing_pt_first:fmt} → "
        "{processing_pt_last:fmt}; transfer {transfer_pt_first:fmt} → {transfer_pt_last:fmt}; "
        "discard {discard_pt_first:fmt} → {discard_pt_last:fmt}",
        also=(("discard_pt_last", ">", "discard_pt_first"),),
    ),
    Claim(
        "Accuracy rises slightly with n (paper: {paper[accuracy_first]:pct0} → "
        "{paper[accuracy_last]:pct0})",
        "accuracy_last",
        ">",
        "accuracy_first",
        "accuracy {accuracy_values:*pct}",
        paper=paper.FIG5,
    ),
)


def configs(opts: ExperimentOptions, n_devices: tuple[int, ...]) -> Grid:
    return [item for n in n_devices for item in seeded(opts, str(n), opts.base(n_devices=n))]


def summarise(res: Results) -> Summary:
    agg = by_setting(res.rows, [str(n) for n in res.params["n_devices"]])
    write_csv(res.out / "summary.csv", lean_summary(agg))
    xs = [int(r["setting"]) for r in agg]
    panels = ["offload", "costs"] + (["accuracy"] if trained(agg) else [])
    plot = P.sweep_figure(res.out / "fig5.png", xs, agg, "number of devices n", panels)
    return Summary(
        sweep_table("n", xs, agg),
        [plot],
        sweep_values(xs, agg),
        differences=step_note("n", xs, agg),
    )


EXPERIMENTS.add(
    "fig5",
    Experiment("Fig. 5 — effect of the number of devices n", configs, summarise, CLAIMS),
    "offloading, costs and accuracy as the number of devices n grows",
    n_devices=(5, 10, 20, 30, 40, 50),
)
