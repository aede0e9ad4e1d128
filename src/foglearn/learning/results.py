"""What a training run returns (:class:`TrainResult`) and how it is written to a run directory."""

from __future__ import annotations

import csv
import io
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from foglearn.io import atomic_write, save_figure


@dataclass(frozen=True, eq=False)
class TrainResult:
    """The outcome of executing a plan (or a baseline) with real SGD.

    Attributes
    ----------
    name : str
        Setting name (``"network-aware"``, ``"centralised"``, ...).
    accuracy, test_loss : float
        Test accuracy in ``[0, 1]`` and mean cross-entropy of the final global model ``w(K)``.
    eval_slot : int ``[K]``
        Slots (1-based, counting all passes) after which the global model was evaluated —
        the aggregations of eq. (4), every ``period`` slots.
    eval_accuracy, eval_loss : float ``[K]``
        Test accuracy / loss of the global model at those slots.
    device_loss : float ``[S, n]``
        ``L_i(w_i(t-1) | G_i(t))``: each device's mean training loss on the batch it processed
        in slot ``t`` (Fig. 4); NaN where ``G_i(t) = 0`` (no step). ``S = passes * T``.
    processed : int ``[T, n]``
        ``G_i(t)`` after largest-remainder rounding: points each device processed (one pass).
    costs : dict
        Realised costs of the plan (:meth:`CostBreakdown.as_dict`) for one pass of the horizon.
    config : dict
        Everything needed to repeat the run (seed, lr, period, passes, model, dataset, ...).
    seconds : float
        Wall time of training (data sampling, steps, aggregations, evaluations).
    wrapped : bool
        True if one pass of the horizon needs more points than the training set holds, so the
        point stream continued with a fresh permutation (points repeat within a pass; a warning
        is issued). Extra ``passes`` are epochs and do not set it.
    final_state : dict[str, torch.Tensor]
        Parameters of the final global model.
    """

    name: str
    accuracy: float
    test_loss: float
    eval_slot: np.ndarray
    eval_accuracy: np.ndarray
    eval_loss: np.ndarray
    device_loss: np.ndarray
    processed: np.ndarray
    costs: dict[str, Any]
    config: dict[str, Any]
    seconds: float
    wrapped: bool = False
    final_state: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if not (0.0 <= self.accuracy <= 1.0) and not math.isnan(self.accuracy):
            raise ValueError(f"accuracy = {self.accuracy}: must lie in [0, 1]")
        k = len(self.eval_slot)
        for name in ("eval_accuracy", "eval_loss"):
            if len(getattr(self, name)) != k:
                raise ValueError(f"{name}: length {len(getattr(self, name))} != len(eval_slot) = {k}")
        if self.device_loss.ndim != 2:
            raise ValueError(f"device_loss: must be [S, n], got shape {self.device_loss.shape}")

    @property
    def points_processed(self) -> int:
        return int(self.processed.sum())

    def as_dict(self) -> dict[str, Any]:
        """A JSON-safe summary (no per-slot arrays except the evaluation curve)."""
        return {"name": self.name, "accuracy": self.accuracy, "test_loss": self.test_loss,
                **{k: v for k, v in self.costs.items()},
                "unit_cost": self.costs.get("unit"), "points_processed": self.points_processed,
                "seconds": self.seconds, "wrapped": self.wrapped,
                "eval": {"slot": self.eval_slot.tolist(), "accuracy": self.eval_accuracy.tolist(),
                         "loss": self.eval_loss.tolist()},
                "config": self.config}

    def slot_rows(self) -> list[dict[str, Any]]:
        """One row per slot: points processed, steps taken, mean/min/max device loss, test metrics."""
        S, n = self.device_loss.shape
        T = self.processed.shape[0]
        evals = {int(s): (float(a), float(v)) for s, a, v in zip(self.eval_slot, self.eval_accuracy, self.eval_loss)}
        rows = []
        for s in range(S):
            loss = self.device_loss[s]
            ok = ~np.isnan(loss)
            acc, tl = evals.get(s + 1, (float("nan"), float("nan")))
            rows.append({"slot": s + 1, "t": s % T + 1, "pass": s // T + 1,
                         "processed": int(self.processed[s % T].sum()), "devices_stepping": int(ok.sum()),
                         "loss_mean": float(loss[ok].mean()) if ok.any() else float("nan"),
                         "loss_min": float(loss[ok].min()) if ok.any() else float("nan"),
                         "loss_max": float(loss[ok].max()) if ok.any() else float("nan"),
                         "test_accuracy": acc, "test_loss": tl})
        return rows


def write_csv(path: str | os.PathLike[str], rows: list[dict[str, Any]]) -> Path:
    buf = io.StringIO()
    if rows:
        writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return atomic_write(path, buf.getvalue())


def plot_curves(results: list[TrainResult], loss_png: str | os.PathLike[str],
                acc_png: str | os.PathLike[str]) -> None:
    """Mean device training loss per slot (with min-max band, Fig. 4) and test accuracy per aggregation."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for r in results:
        loss = r.device_loss
        ok = ~np.isnan(loss)
        with np.errstate(invalid="ignore"):
            cnt = ok.sum(1)
            mean = np.where(cnt > 0, np.nansum(loss, 1) / np.maximum(cnt, 1), np.nan)
        lo = np.where(cnt > 0, np.nanmin(np.where(ok, loss, np.inf), 1), np.nan)
        hi = np.where(cnt > 0, np.nanmax(np.where(ok, loss, -np.inf), 1), np.nan)
        x = np.arange(1, len(mean) + 1)
        ax.plot(x, mean, label=r.name)
        ax.fill_between(x, lo, hi, alpha=0.15)
    ax.set_xlabel("slot t")
    ax.set_ylabel("device training loss $L_i(w_i(t))$")
    ax.legend()
    fig.tight_layout()
    save_figure(fig, loss_png)
    fig, ax = plt.subplots(figsize=(7, 4))
    for r in results:
        ax.plot(r.eval_slot, 100 * r.eval_accuracy, marker="o", ms=3, label=f"{r.name} ({100 * r.accuracy:.2f}%)")
    ax.set_xlabel("slot t (aggregations)")
    ax.set_ylabel("test accuracy (%)")
    ax.legend()
    fig.tight_layout()
    save_figure(fig, acc_png)


