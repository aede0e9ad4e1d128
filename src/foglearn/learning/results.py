"""What a training run returns (:class:`TrainResult`) and how it is written to a run directory.

A finished result is kept on disk without pickle (:func:`save_result`, :func:`load_result`): a JSON
file for the scalars and metadata and a ``.npz`` beside it for the arrays, read back with
``allow_pickle=False``, so reading a run directory never executes code from it.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from foglearn.errors import InputError
from foglearn.io import atomic_write, save_figure

#: Names the on-disk format of :func:`save_result`; bump the version when its meaning changes.
RESULT_FORMAT = "foglearn.TrainResult"
RESULT_VERSION = 1


class ResultFileError(InputError):
    """A stored result (:func:`load_result`) is missing, truncated, malformed or inconsistent."""


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


#: The arrays of a :class:`TrainResult` kept in the ``.npz``, with their number of dimensions.
_ARRAYS = {"eval_slot": 1, "eval_accuracy": 1, "eval_loss": 1, "device_loss": 2, "processed": 2}


def _plain(value: Any) -> Any:
    """``json.dumps`` fallback: numpy scalars as Python numbers, paths as strings."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def save_result(result: TrainResult, path: str | os.PathLike[str]) -> Path:
    """Keep ``result`` as ``path`` (JSON, ending in ``.json``) and its arrays beside it (``.npz``).

    The arrays (evaluation curve, ``device_loss``, ``processed`` and the final model's parameters)
    go to ``path.with_suffix(".npz")``; the JSON holds the scalars, costs and config, the parameter
    names and the sha256 of the ``.npz``. Both are written atomically, the ``.npz`` first, so the
    JSON — which :func:`load_result` reads first — only ever names a complete ``.npz``. NaN and
    ±inf are written as Python's :mod:`json` does (``NaN``, ``Infinity``) and read back exactly.
    Nothing is pickled: :func:`load_result` reads both files without executing code.
    """
    path = Path(path)
    if path.suffix != ".json":
        raise ValueError(f"path = {str(path)!r}: must end in .json (the arrays go beside it, "
                         "in .npz)")
    names = list(result.final_state)
    arrays = {k: np.ascontiguousarray(getattr(result, k)) for k in _ARRAYS}
    arrays.update({f"state_{i}": result.final_state[k].detach().cpu().numpy()
                   for i, k in enumerate(names)})
    for k, a in arrays.items():
        if a.dtype.kind not in "biuf":  # anything else would need pickle to be read back
            raise ValueError(f"{k}: dtype {a.dtype} cannot be kept; must be numeric")
    buf = io.BytesIO()
    np.savez(buf, allow_pickle=False, **arrays)
    blob = buf.getvalue()
    npz = path.with_suffix(".npz")
    meta = {"format": RESULT_FORMAT, "version": RESULT_VERSION,
            "arrays": {"file": npz.name, "sha256": hashlib.sha256(blob).hexdigest()},
            "name": result.name, "accuracy": result.accuracy, "test_loss": result.test_loss,
            "seconds": result.seconds, "wrapped": result.wrapped, "costs": result.costs,
            "config": result.config, "final_state": names}
    text = json.dumps(meta, indent=1, default=_plain)
    atomic_write(npz, blob)
    return atomic_write(path, text + "\n")


def load_result(path: str | os.PathLike[str]) -> TrainResult:
    """Read a result kept by :func:`save_result`, checking everything before it is used.

    Raises :class:`ResultFileError` (naming the file and what is wrong) when either file is
    missing, truncated or malformed, the ``.npz`` is not the one the JSON names (sha256), an
    array has the wrong type or shape, or a field has the wrong type: callers treat that as
    "not finished" and compute the result again. The ``.npz`` is read with
    ``allow_pickle=False`` and nothing else is unpickled, so a crafted file cannot run code.
    """
    path = Path(path)

    def bad(why: str) -> ResultFileError:
        return ResultFileError(f"{path}: {why}")

    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise bad(f"unreadable ({exc})") from exc
    except ValueError as exc:
        raise bad(f"truncated or not JSON ({exc})") from exc
    if not isinstance(meta, dict) or (meta.get("format"), meta.get("version")) != (
            RESULT_FORMAT, RESULT_VERSION):
        raise bad(f"not a {RESULT_FORMAT} version {RESULT_VERSION} file")
    number: tuple[type, ...] = (int, float)
    fields: dict[str, type | tuple[type, ...]] = {"name": str, "accuracy": number, "test_loss": number,
                                                  "seconds": number,
              "wrapped": bool, "costs": dict, "config": dict, "final_state": list, "arrays": dict}
    for key, kind in fields.items():
        value = meta.get(key)
        if not isinstance(value, kind) or (kind is number and isinstance(value, bool)):
            raise bad(f"field {key!r} = {value!r:.40}: wrong type or missing")
    names = meta["final_state"]
    if not all(isinstance(k, str) for k in names):
        raise bad("field 'final_state': must list parameter names")
    npz = path.with_suffix(".npz")
    try:
        blob = npz.read_bytes()
    except OSError as exc:
        raise bad(f"its arrays {npz.name} are unreadable ({exc})") from exc
    if hashlib.sha256(blob).hexdigest() != meta["arrays"].get("sha256"):
        raise bad(f"its arrays {npz.name} are not the ones it names (sha256 differs; truncated "
                  "or replaced)")
    want = [*_ARRAYS, *(f"state_{i}" for i in range(len(names)))]
    unreadable = (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error)
    try:
        z = np.load(io.BytesIO(blob), allow_pickle=False)
    except unreadable as exc:
        raise bad(f"{npz.name} is not a readable pickle-free .npz ({exc})") from exc
    if not isinstance(z, np.lib.npyio.NpzFile) or sorted(z.files) != sorted(want):
        raise bad(f"{npz.name} must be an .npz holding exactly the arrays {', '.join(want)}")
    try:
        with z:
            arrays = {k: z[k] for k in want}
    except unreadable as exc:  # an object array (needs pickle) or a damaged member
        raise bad(f"{npz.name} is not a readable pickle-free .npz ({exc})") from exc
    for k, a in arrays.items():
        if a.dtype.kind not in "biuf" or a.ndim != _ARRAYS.get(k, a.ndim):
            raise bad(f"{npz.name}: {k} must be a numeric {_ARRAYS.get(k, 'n')}-d array, "
                      f"got {a.dtype} shape {list(a.shape)}")
    try:
        state = {k: torch.from_numpy(arrays[f"state_{i}"]) for i, k in enumerate(names)}
        return TrainResult(name=meta["name"], accuracy=meta["accuracy"],
                           test_loss=meta["test_loss"], **{k: arrays[k] for k in _ARRAYS},
                           costs=meta["costs"], config=meta["config"], seconds=meta["seconds"],
                           wrapped=meta["wrapped"], final_state=state)
    except ValueError as exc:
        raise bad(str(exc)) from exc


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


