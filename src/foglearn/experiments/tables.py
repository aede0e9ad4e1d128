"""Result tables: flatten run records to rows, aggregate over seeds, write CSV.

A *row* is a flat dict of one run: its configuration fields, its realised costs
(:meth:`~foglearn.planning.CostBreakdown.as_dict`), the range of its per-slot offloading rate,
and its accuracy when it was trained. :func:`aggregate` groups rows by setting and gives, for
every metric (a number that is not a configuration field), the mean, the sample standard
deviation, the minimum and the maximum over seeds. The CSV files keep only what varies:
:func:`lean_rows` (one row per run) and :func:`lean_summary` (mean and std per group).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from foglearn.experiments.config import RunConfig
from foglearn.io import atomic_write

#: The fields of a row that describe the run rather than measure it (never averaged).
CONFIG_FIELDS: frozenset[str] = frozenset(f.name for f in dataclasses.fields(RunConfig)) | {"key", "setting"}

COST_FIELDS: tuple[str, ...] = ("processing", "transfer", "discard", "total", "unit", "collected", "processed",
                                 "offloaded", "discarded", "offload_rate", "discard_rate", "process_rate",
                                 "violations")


def flatten(record: dict[str, Any]) -> dict[str, Any]:
    """One run's record as a flat row (configuration, costs, slot ranges, accuracy, seconds)."""
    row: dict[str, Any] = {"key": record["key"]}
    row.update({k: v for k, v in record["config"].items() if k not in ("traces_digest",)})
    costs = record["costs"]
    row.update({k: costs[k] for k in COST_FIELDS if k in costs})
    for k in ("processing", "transfer", "discard"):  # per collected point: the unit cost's components
        row[f"{k}_pt"] = costs[k] / costs["collected"] if costs.get("collected") else float("nan")
    off = np.array(record["slots"]["offload_rate"], dtype=float)
    off = off[np.isfinite(off)]
    # offloading is impossible in the last slot (docs/model.md §2); leave it out of the range over slots
    body = off[:-1] if off.size > 1 else off
    row["slot_offload_min"] = float(body.min()) if body.size else float("nan")
    row["slot_offload_max"] = float(body.max()) if body.size else float("nan")
    row["slot_offload_mean"] = float(body.mean()) if body.size else float("nan")
    tr = record.get("training") or {}
    row["accuracy"] = float(tr["accuracy"]) if "accuracy" in tr else float("nan")
    loss = (tr.get("curves") or {}).get("device_loss")
    # share of (slot, device) pairs that took an SGD step (G_i(t) > 0, eq. 3)
    row["step_rate"] = float(np.isfinite(np.array(loss, dtype=float)).mean()) if loss else float("nan")
    row["test_loss"] = float(tr["test_loss"]) if "test_loss" in tr else float("nan")
    secs = record.get("seconds", {})
    row["seconds"] = float(secs.get("total", float("nan")))
    row["plan_seconds"] = float(secs.get("plan", float("nan")))
    return row


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float | np.integer | np.floating) and not isinstance(v, bool)


def metric_names(rows: Sequence[dict[str, Any]]) -> list[str]:
    """The numeric fields of ``rows`` that are not configuration fields (:data:`CONFIG_FIELDS`)."""
    return [k for k in rows[0] if k not in CONFIG_FIELDS and _is_number(rows[0][k])] if rows else []


def aggregate(rows: Sequence[dict[str, Any]], by: Sequence[str], metrics: Sequence[str] | None = None
              ) -> list[dict[str, Any]]:
    """Group ``rows`` by the fields ``by`` (in order of first appearance) and summarise each metric.

    For a metric ``m`` (default: :func:`metric_names`) the output has ``m`` (mean over runs, NaN
    values ignored), ``m_std`` (sample standard deviation, 0 for one value), ``m_min``, ``m_max``,
    ``m_n`` (runs with a finite value, e.g. only the trained runs for accuracy); plus ``runs``
    (group size) and each configuration field that is the same in every run of the group (its
    value, never a mean: the mean of the seeds 0 and 1 describes no run).
    """
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault(tuple(r.get(b) for b in by), []).append(r)
    if metrics is None:
        metrics = [m for m in metric_names(rows) if m not in by]
    out = []
    for gkey, members in groups.items():
        agg: dict[str, Any] = dict(zip(by, gkey))
        for k in members[0]:
            if k in CONFIG_FIELDS and k not in agg and k != "key" and all(
                    r.get(k) == members[0][k] for r in members):
                agg[k] = members[0][k]
        agg["runs"] = len(members)
        for m in metrics:
            vals = np.array([float(r.get(m, float("nan"))) for r in members], dtype=float)
            vals = vals[np.isfinite(vals)]
            agg[f"{m}_n"] = int(vals.size)
            if vals.size == 0:
                agg[m] = agg[f"{m}_std"] = agg[f"{m}_min"] = agg[f"{m}_max"] = float("nan")
                continue
            agg[m] = float(vals.mean())
            agg[f"{m}_std"] = float(vals.std(ddof=1)) if vals.size > 1 else 0.0
            agg[f"{m}_min"] = float(vals.min())
            agg[f"{m}_max"] = float(vals.max())
        out.append(agg)
    return out


def _varying(rows: Sequence[dict[str, Any]], fields: Iterable[str]) -> list[str]:
    return [k for k in fields if len({repr(r.get(k)) for r in rows}) > 1]


def _measured(rows: Sequence[dict[str, Any]], metric: str) -> bool:
    return any(_is_number(r.get(metric)) and math.isfinite(r[metric]) for r in rows)


def lean_rows(rows: Sequence[dict[str, Any]], keep: Sequence[str] = ("seed", "key")) -> list[dict[str, Any]]:
    """``rows`` (one per run) with the fields ``keep``, the configuration fields that vary between
    the rows and the metrics that were measured in some row (accuracy only when a run trained);
    constant configuration fields are left to ``config.toml``."""
    if not rows:
        return []
    present = [k for k in keep if k in rows[0]]
    config = _varying(rows, (k for k in rows[0] if k in CONFIG_FIELDS and k not in present))
    metrics = [m for m in metric_names(rows) if m not in present and _measured(rows, m)]
    return [{k: r.get(k) for k in (*present, *config, *metrics)} for r in rows]


def lean_summary(agg: Sequence[dict[str, Any]], by: Sequence[str] = ("setting",)) -> list[dict[str, Any]]:
    """Aggregated rows (:func:`aggregate`) as a lean table: the grouping fields, the configuration
    fields that differ between groups, ``runs``, and the mean and std of every measured metric."""
    if not agg:
        return []
    present = [k for k in by if k in agg[0]]
    config = _varying(agg, (k for k in agg[0] if k in CONFIG_FIELDS and k not in present))
    metrics = [k[:-4] for k in agg[0] if k.endswith("_std") and _measured(agg, k[:-4])]
    cols = [*present, *config, "runs", *(c for m in metrics for c in (m, f"{m}_std"))]
    return [{k: a.get(k) for k in cols} for a in agg]


def to_csv(rows: Iterable[dict[str, Any]]) -> str:
    rows = list(rows)
    if not rows:
        return ""
    fields: list[str] = []
    for r in rows:
        fields.extend(k for k in r if k not in fields)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: _fmt_csv(r.get(k)) for k in fields})
    return buf.getvalue()


def _fmt_csv(v: Any) -> Any:
    if isinstance(v, float):
        return repr(v) if math.isfinite(v) else str(v)
    return "" if v is None else v


def write_csv(path: str | Path, rows: Iterable[dict[str, Any]]) -> Path:
    return atomic_write(path, to_csv(rows))


def read_csv(path: str | Path) -> list[dict[str, str]]:
    with Path(path).open(newline="") as fh:
        return list(csv.DictReader(fh))


def fmt(v: Any, digits: int = 3) -> str:
    """Compact number formatting for Markdown tables."""
    if v is None:
        return "–"
    if isinstance(v, float):
        if not math.isfinite(v):
            return "–"
        if abs(v) >= 10 ** digits or abs(v) >= 1000:
            return f"{v:,.0f}"
        return f"{v:.{digits}g}"
    return str(v)


def pm(row: dict[str, Any], metric: str, digits: int = 3, scale: float = 1.0, suffix: str = "") -> str:
    """``mean ± std`` of an aggregated metric."""
    m = row.get(metric, float("nan")) * scale
    s = row.get(f"{metric}_std", float("nan")) * scale
    if not math.isfinite(m):
        return "–"
    if row.get(f"{metric}_n", row.get("runs", 1)) > 1 and math.isfinite(s):
        return f"{fmt(m, digits)} ± {fmt(s, 2)}{suffix}"
    return f"{fmt(m, digits)}{suffix}"


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for r in rows:
        lines.append("| " + " | ".join(str(c) for c in r) + " |")
    return "\n".join(lines)
