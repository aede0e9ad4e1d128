"""Figures shaped like the paper's (matplotlib, Agg backend, PNG)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from foglearn.io import save_figure

COMPONENTS: tuple[tuple[str, str, str], ...] = (
    ("processing", "Process", "#4C72B0"),
    ("transfer", "Transfer", "#DD8452"),
    ("discard", "Discard", "#55A868"),
)


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: str | Path) -> Path:
    fig.tight_layout()
    return save_figure(fig, path)


def unit_components(row: dict[str, Any]) -> dict[str, float]:
    """Each cost component per collected datapoint (the paper's "unit cost" breakdown).

    Uses the mean over runs of each run's per-point component (``processing_pt`` …) when present,
    so the stacked components add up to the mean unit cost."""
    if all(f"{k}_pt" in row for k, _, _ in COMPONENTS):
        return {k: row[f"{k}_pt"] for k, _, _ in COMPONENTS}
    c = row.get("collected") or float("nan")
    return {k: row[k] / c for k, _, _ in COMPONENTS}


def cost_bars(ax: Any, labels: Sequence[str], rows: Sequence[dict[str, Any]], per_point: bool = True,
              title: str | None = None) -> None:
    """Stacked bars of processing / transfer / discard (per datapoint by default), total ± std on top."""
    x = np.arange(len(labels))
    bottom = np.zeros(len(labels))
    for key, name, colour in COMPONENTS:
        vals = np.array([unit_components(r)[key] if per_point else r[key] for r in rows])
        ax.bar(x, vals, 0.7, bottom=bottom, label=name, color=colour)
        bottom += vals
    metric = "unit" if per_point else "total"
    err = np.array([r.get(f"{metric}_std", 0.0) for r in rows])
    ax.errorbar(x, bottom, yerr=err, fmt="none", ecolor="black", capsize=3, lw=1)
    ax.set_xticks(x, labels)
    ax.set_ylabel("cost per datapoint" if per_point else "cost")
    if title:
        ax.set_title(title)
    ax.legend(fontsize=8)


def line(ax: Any, xs: Sequence[float], rows: Sequence[dict[str, Any]], metric: str, label: str | None = None,
         scale: float = 1.0, band: tuple[str, str] | None = None, band_label: str | None = None,
         ylabel: str | None = None, logx: bool = False, colour: str | None = None) -> None:
    """Mean of ``metric`` over seeds with ± std error bars; optional shaded band (two metrics)."""
    y = np.array([r[metric] for r in rows]) * scale
    e = np.array([r.get(f"{metric}_std", 0.0) for r in rows]) * scale
    if band is not None:
        lo = np.array([r[band[0]] for r in rows]) * scale
        hi = np.array([r[band[1]] for r in rows]) * scale
        ax.fill_between(xs, lo, hi, alpha=0.25, color=colour or "#4C72B0", label=band_label)
    ax.errorbar(xs, y, yerr=e, marker="o", capsize=3, label=label, color=colour or "#4C72B0")
    if logx:
        ax.set_xscale("log")
    if ylabel:
        ax.set_ylabel(ylabel)
    if label or band_label:
        ax.legend(fontsize=8)


def table3_figure(path: str | Path, labels: Sequence[str], rows: Sequence[dict[str, Any]]) -> Path:
    """Table III: cost per datapoint of each setting and, when some setting was trained, its
    accuracy beside it (without training, ``--no-train``, the cost panel alone)."""
    plt = _plt()
    acc = np.array([r.get("accuracy", np.nan) for r in rows], dtype=float) * 100
    if not np.isfinite(acc).any():
        fig, a = plt.subplots(figsize=(4.8, 3.6))
        cost_bars(a, labels, rows, title="Cost per datapoint")
        return _save(fig, path)
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.6))
    cost_bars(a, labels, rows, title="Cost per datapoint")
    err = np.array([r.get("accuracy_std", 0.0) for r in rows]) * 100
    b.bar(labels, acc, yerr=err, capsize=3, color="#8172B3")
    b.set_ylabel("test accuracy (%)")
    b.set_title("Accuracy")
    lo = np.nanmin(acc) if np.isfinite(acc).any() else 0
    b.set_ylim(max(0.0, lo - 10), 100)
    return _save(fig, path)


def accuracy_bars(path: str | Path, groups: Sequence[str], methods: Sequence[str],
                  values: dict[tuple[str, str], tuple[float, float]], title: str) -> Path:
    """Grouped bars: accuracy of each method (bars) for each group (e.g. model)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3.6))
    width = 0.8 / len(methods)
    x = np.arange(len(groups))
    for k, m in enumerate(methods):
        v = np.array([values.get((g, m), (np.nan, 0.0))[0] for g in groups]) * 100
        e = np.array([values.get((g, m), (np.nan, 0.0))[1] for g in groups]) * 100
        ax.bar(x + (k - (len(methods) - 1) / 2) * width, v, width, yerr=e, capsize=3, label=m)
    ax.set_xticks(x, groups)
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title)
    ax.legend(fontsize=8)
    return _save(fig, path)


def nan_moving_average(x: np.ndarray, window: int) -> np.ndarray:
    """Trailing moving average along axis 0 ignoring NaN (NaN where the window holds no value)."""
    if window <= 1:
        return x.astype(float)
    ok = np.isfinite(x)
    vals = np.where(ok, x, 0.0)
    cs = np.cumsum(np.vstack([np.zeros((1,) + x.shape[1:]), vals]), axis=0)
    cn = np.cumsum(np.vstack([np.zeros((1,) + x.shape[1:]), ok.astype(float)]), axis=0)
    hi = np.arange(1, x.shape[0] + 1)
    lo = np.maximum(0, hi - window)
    total, count = cs[hi] - cs[lo], cn[hi] - cn[lo]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.where(count > 0, count, 1), np.nan)


def device_loss_figure(path: str | Path, loss: np.ndarray, title: str) -> Path:
    """Fig. 4: per-device training loss over slots (``loss[S, n]``, NaN where a device did not train),
    with the mean and ± std band across devices. Long runs are smoothed by a trailing moving
    average over ``S/50`` slots (stated in the axis label)."""
    import warnings

    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    S = loss.shape[0]
    window = max(1, S // 50)
    t = np.arange(1, S + 1)
    smooth = nan_moving_average(loss, window)
    for i in range(loss.shape[1]):
        ax.plot(t, smooth[:, i], lw=0.7, alpha=0.55)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nanmean(smooth, axis=1)
        std = np.nanstd(smooth, axis=1)
    ax.plot(t, mean, color="black", lw=2, label="mean over devices")
    ax.fill_between(t, mean - std, mean + std, color="grey", alpha=0.3, label="± std over devices")
    ax.set_xlabel("time slot (all passes)" + (f"; moving average over {window} slots" if window > 1 else ""))
    ax.set_ylabel("training loss $L_i(w_i(t))$")
    ax.set_title(title)
    ax.legend(fontsize=8)
    return _save(fig, path)


def sweep_figure(path: str | Path, xs: Sequence[float], rows: Sequence[dict[str, Any]], xlabel: str,
                 panels: Sequence[str], logx: bool = False) -> Path:
    """A row of panels over a swept parameter. Panel names: ``offload`` (mean + range over slots),
    ``processed`` (fraction processed), ``costs`` (stacked per-point components), ``accuracy``."""
    plt = _plt()
    fig, axes = plt.subplots(1, len(panels), figsize=(4.0 * len(panels), 3.5))
    axes = np.atleast_1d(axes)
    letters = "abcdefgh"
    for k, (ax, panel) in enumerate(zip(axes, panels)):
        if panel == "offload":
            line(ax, xs, rows, "offload_rate", label="offloading rate", scale=100,
                 band=("slot_offload_min", "slot_offload_max"), band_label="range over slots",
                 ylabel="offloading rate (%)", logx=logx)
        elif panel == "processed":
            line(ax, xs, rows, "process_rate", label="processed", scale=100, ylabel="data processed (%)", logx=logx)
            line(ax, xs, rows, "discard_rate", label="discarded", scale=100, logx=logx, colour="#55A868")
        elif panel == "costs":
            cost_bars(ax, [_tick(x) for x in xs], rows)
        elif panel == "accuracy":
            line(ax, xs, rows, "accuracy", scale=100, ylabel="test accuracy (%)", logx=logx, colour="#8172B3")
        else:
            raise ValueError(f"panel = {panel!r}: unknown")
        ax.set_xlabel(xlabel)
        ax.set_title(f"({letters[k]}) {panel}")
    return _save(fig, path)


def topology_figure(path: str | Path, media: Sequence[str], topologies: Sequence[str],
                    rows: dict[tuple[str, str], dict[str, Any]]) -> Path:
    """Fig. 8: one panel per medium, stacked cost components (totals) per topology."""
    plt = _plt()
    fig, axes = plt.subplots(1, len(media), figsize=(4.2 * len(media), 3.6), sharey=False)
    axes = np.atleast_1d(axes)
    for k, (ax, medium) in enumerate(zip(axes, media)):
        present = [t for t in topologies if (medium, t) in rows]
        cost_bars(ax, present, [rows[(medium, t)] for t in present], per_point=False,
                  title=f"({'abc'[k]}) {medium}")
    return _save(fig, path)


def _tick(x: float) -> str:
    return f"{x:g}"
