"""Fig. 4: every device's training loss over time (setting B, n = 10, τ = 10)."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from foglearn.experiments import plots as P
from foglearn.experiments.config import ExperimentOptions
from foglearn.experiments.definitions import EXPERIMENTS, Experiment, Grid, Results, Summary, seeded
from foglearn.experiments.paper.table3 import setting_config
from foglearn.experiments.report import Claim, render
from foglearn.experiments.tables import fmt, markdown_table, write_csv

TEXT = {
    "plot_title": "Fig. 4: training loss per device (seed {seed})",
    "averaged": (
        "Averaged over {seeds} seed(s); setting B (n = {n}, τ = 10). {decreasing:pct0} of devices "
        "end with a lower loss than they started with."
    ),
    "spread_grows": (
        "The spread across devices grows (std {std_first:fmt} → {std_last:fmt}) instead of "
        "shrinking: every device starts from the same w(0) at chance level, so the first losses "
        "coincide (≈ ln 10 = 2.30); as the model learns, devices whose batches differ in size and "
        "content see different losses."
    ),
}

CLAIMS = (
    Claim(
        "Average training loss drops over time",
        "mean_last",
        "<",
        "mean_first",
        "{mean_first:fmt} → {mean_last:fmt}",
    ),
    Claim(
        "Spread of the loss across devices drops over time",
        "std_last",
        "<",
        "std_first",
        "std {std_first:fmt} → {std_last:fmt}",
    ),
)


def configs(opts: ExperimentOptions) -> Grid:
    return seeded(
        opts.replace(train=True), "B", setting_config(opts, "B", train=True), trained_only=True
    )


def device_loss(record: dict[str, Any]) -> np.ndarray:
    """``[T, n]`` per-device training loss of a trained record (NaN where a device did not
    train)."""
    curves = (record.get("training") or {}).get("curves", {})
    if "device_loss" not in curves:
        raise KeyError(f"run {record['key']}: no per-device training loss was recorded")
    return np.array(curves["device_loss"], dtype=float)


def loss_trend(loss: np.ndarray) -> tuple[float, float, float, float, float]:
    """Fig. 4's trend of a ``[S, n]`` loss array over the first and last 10 % of the slots in which
    some device trained: mean loss over devices (first, last), std across devices (first, last),
    and the share of devices whose own mean loss is lower at the end than at the start."""
    rows = loss[np.isfinite(loss).any(axis=1)]
    k = max(1, rows.shape[0] // 10)
    early, late = rows[:k], rows[-k:]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mean_e, mean_l = float(np.nanmean(early)), float(np.nanmean(late))
        std_e = float(np.nanmean(np.nanstd(early, axis=1)))
        std_l = float(np.nanmean(np.nanstd(late, axis=1)))
        dev_e, dev_l = np.nanmean(early, axis=0), np.nanmean(late, axis=0)
    ok = np.isfinite(dev_e) & np.isfinite(dev_l)
    share = float((dev_l[ok] < dev_e[ok]).mean()) if ok.any() else float("nan")
    return mean_e, mean_l, std_e, std_l, share


def summarise(res: Results) -> Summary:
    records = res.records
    losses = [device_loss(r) for r in records]
    plot = P.device_loss_figure(
        res.out / "fig4.png",
        losses[0],
        render(TEXT["plot_title"], seed=records[0]["config"]["seed"]),
    )
    stats = [loss_trend(L) for L in losses]
    write_csv(
        res.out / "summary.csv",
        [
            {
                "seed": r["config"]["seed"],
                "mean_first": a,
                "mean_last": b,
                "std_first": c,
                "std_last": d,
                "devices_decreasing": e,
            }
            for r, (a, b, c, d, e) in zip(records, stats, strict=True)
        ],
    )
    s = np.array(stats)
    values = {
        name: float(s[:, i].mean())
        for i, name in enumerate(("mean_first", "mean_last", "std_first", "std_last", "decreasing"))
    }
    body = markdown_table(
        ["", "first 10 % of slots", "last 10 % of slots"],
        [
            ["mean loss over devices", fmt(values["mean_first"]), fmt(values["mean_last"])],
            ["std of loss across devices", fmt(values["std_first"]), fmt(values["std_last"])],
        ],
    )
    body += "\n\n" + render(TEXT["averaged"], values, seeds=len(records), n=res.options.n_devices)
    diffs = (
        [render(TEXT["spread_grows"], values)] if values["std_last"] >= values["std_first"] else []
    )
    return Summary(body, [plot], values, differences=diffs)


EXPERIMENTS.add(
    "fig4",
    Experiment("Fig. 4 — per-device training loss over time", configs, summarise, CLAIMS),
    "every device's training loss over time (setting B)",
)
