"""Measured cost traces (docs/model.md §5): replay a user's own per-slot measurements as a Scenario.

Two CSV files describe a measured fog network:

``nodes.csv``: ``t, node, active, points, proc_time_s, capacity_points`` — one row per node and slot;
``links.csv``: ``t, src, dst, up, points, transfer_time_s, capacity_points`` — one row per link and slot.

Per-point costs are ``proc_time_s / points`` and ``transfer_time_s / points``, divided by a
reference time (default: the median per-point processing time, so a typical device costs 1).
A simulated device ``i`` replays traced node ``i mod N``; slot ``t`` uses trace slot
``t mod length``; a simulated link replays the traced link between the traced nodes it maps to.
``capacity_points`` may be empty or ``inf`` for "no capacity".

The files are UTF-8 (a BOM is fine). ``t`` is a whole slot number; a node has exactly one row
per slot, a link at most one (a link without a row in a slot is down); numbers are finite and
≥ 0 (``capacity_points`` may be ``inf``), never NaN. Every broken rule is a
:class:`~foglearn.network.ScenarioError` naming ``file:line``, the column and the rule.
"""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from foglearn.network.scenario import Scenario, ScenarioError

NODE_COLUMNS = ("t", "node", "active", "points", "proc_time_s", "capacity_points")
LINK_COLUMNS = ("t", "src", "dst", "up", "points", "transfer_time_s", "capacity_points")


@dataclass(frozen=True, eq=False)
class Traces:
    """Measured per-point costs: nodes ``[L, N]`` and links ``[L, K]`` over ``L`` trace slots."""

    proc_time: np.ndarray  # [L, N] seconds per point
    node_cap: np.ndarray  # [L, N] points (inf = none)
    node_active: np.ndarray  # [L, N] bool
    link_src: np.ndarray  # [K] traced node ids (0..N-1)
    link_dst: np.ndarray  # [K]
    transfer_time: np.ndarray  # [L, K] seconds per point
    link_cap: np.ndarray  # [L, K]
    link_up: np.ndarray  # [L, K] bool
    node_ids: tuple[str, ...]

    @property
    def length(self) -> int:
        return int(self.proc_time.shape[0])

    @property
    def n_nodes(self) -> int:
        return int(self.proc_time.shape[1])


def _read_csv(path: Path, columns: tuple[str, ...]) -> list[tuple[int, dict[str, str]]]:
    """The rows of a trace file as (line number, {column: text}); UTF-8, with or without a BOM."""
    if not path.exists():
        raise ScenarioError(f"{path}: no such trace file")
    if not path.is_file():
        raise ScenarioError(f"{path}: not a file")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ScenarioError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise ScenarioError(f"{path}:{line}: not UTF-8 text (byte {raw[exc.start]:#04x} at offset {exc.start}); "
                            "save the file as UTF-8") from None
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        header = [h.strip() for h in (reader.fieldnames or [])]
        missing = [c for c in columns if c not in header]
        if missing:
            raise ScenarioError(f"{path}: missing columns {missing}; expected {list(columns)}")
        rows = []
        for row in reader:
            rows.append((reader.line_num, {k.strip(): (v or "").strip() for k, v in row.items() if k}))
    except csv.Error as exc:
        raise ScenarioError(f"{path}:{reader.line_num + 1}: not a readable CSV row ({exc})") from None
    return rows


def _num(path: Path, line: int, row: dict[str, str], col: str, *, positive: bool = False,
         allow_inf: bool = False) -> float:
    text = row[col]
    if allow_inf and text in ("", "inf", "Inf", "INF"):
        return float("inf")
    try:
        value = float(text)
    except ValueError:
        raise ScenarioError(f"{path}:{line} {col} = {text!r}: must be a number") from None
    if np.isnan(value):
        raise ScenarioError(f"{path}:{line} {col} = {text!r}: must be a number")
    if not np.isfinite(value) and not allow_inf:
        raise ScenarioError(f"{path}:{line} {col} = {text!r}: must be finite")
    if value < 0 or (positive and value == 0):
        rule = "> 0" if positive else "≥ 0"
        raise ScenarioError(f"{path}:{line} {col} = {text!r}: must be {rule}")
    return value


def _slot(path: Path, line: int, row: dict[str, str], limit: int | None = None) -> int:
    """The slot ``t`` of a row: a whole number ≥ 0 (and < ``limit``, the slots of nodes.csv)."""
    value = _num(path, line, row, "t")
    if value != int(value):
        raise ScenarioError(f"{path}:{line} t = {row['t']!r}: must be a whole number of slots")
    if limit is not None and value >= limit:
        raise ScenarioError(f"{path}:{line} t = {row['t']}: beyond the {limit} slots of nodes.csv")
    return int(value)


def _per_point(path: Path, line: int, row: dict[str, str], col: str, points: float) -> float:
    """``row[col] / points`` (seconds per point), 0 without points; must be finite."""
    value = _num(path, line, row, col) / points if points > 0 else 0.0
    if not np.isfinite(value):
        raise ScenarioError(f"{path}:{line} {col} / points = {row[col]} / {row['points']}: "
                            "the time per point must be finite")
    return value


def _flag(path: Path, line: int, row: dict[str, str], col: str) -> bool:
    text = row[col].lower()
    if text in ("1", "true", "yes"):
        return True
    if text in ("0", "false", "no"):
        return False
    raise ScenarioError(f"{path}:{line} {col} = {row[col]!r}: must be 0/1 or true/false")


def load_traces(directory: str | os.PathLike[str]) -> Traces:
    """Read ``nodes.csv`` and ``links.csv`` from ``directory`` (docs/model.md §5 format), validating every row."""
    directory = Path(directory)
    npath, lpath = directory / "nodes.csv", directory / "links.csv"
    nrows = _read_csv(npath, NODE_COLUMNS)
    lrows = _read_csv(lpath, LINK_COLUMNS)
    if not nrows:
        raise ScenarioError(f"{npath}: no rows")
    for line, r in nrows:
        if not r["node"]:
            raise ScenarioError(f"{npath}:{line} node = '': must name the node")
    slot_of = [_slot(npath, line, r) for line, r in nrows]
    slots = sorted(set(slot_of))
    if slots != list(range(len(slots))):
        raise ScenarioError(f"{npath}: slots t must run 0..L-1 without gaps, got {slots[:5]}…")
    ids = tuple(sorted({r["node"] for _, r in nrows}))
    index = {name: k for k, name in enumerate(ids)}
    L, N = len(slots), len(ids)
    # one row per node and slot, checked before the [L, N] arrays exist (a few rows naming many
    # slots and many nodes would otherwise allocate L·N cells)
    seen: dict[str, set[int]] = {name: set() for name in ids}
    for (line, r), t in zip(nrows, slot_of):
        if t in seen[r["node"]]:
            raise ScenarioError(f"{npath}:{line}: node {r['node']!r} appears twice in slot {t}")
        seen[r["node"]].add(t)
    if len(nrows) != L * N:
        name = next(name for name in ids if len(seen[name]) < L)
        t = next(t for t in range(L) if t not in seen[name])
        raise ScenarioError(f"{npath}: node {name!r} has no row for slot {t} (one row per node and slot)")
    proc = np.zeros((L, N))
    cap = np.full((L, N), np.inf)
    act = np.zeros((L, N), dtype=bool)
    for (line, r), t in zip(nrows, slot_of):
        i = index[r["node"]]
        act[t, i] = _flag(npath, line, r, "active")
        pts = _num(npath, line, r, "points", positive=act[t, i])
        proc[t, i] = _per_point(npath, line, r, "proc_time_s", pts)
        cap[t, i] = _num(npath, line, r, "capacity_points", allow_inf=True)
    pairs: dict[tuple[int, int], int] = {}
    for line, r in lrows:
        for col in ("src", "dst"):
            if r[col] not in index:
                raise ScenarioError(f"{lpath}:{line} {col} = {r[col]!r}: not a node of nodes.csv")
        pairs.setdefault((index[r["src"]], index[r["dst"]]), len(pairs))
    K = len(pairs)
    xfer = np.full((L, K), np.nan)
    lcap = np.full((L, K), np.inf)
    up = np.zeros((L, K), dtype=bool)
    for line, r in lrows:
        t = _slot(lpath, line, r, L)
        e = pairs[(index[r["src"]], index[r["dst"]])]
        if not np.isnan(xfer[t, e]):
            raise ScenarioError(f"{lpath}:{line}: link {r['src']!r} -> {r['dst']!r} appears twice in slot {t}")
        up[t, e] = _flag(lpath, line, r, "up")
        pts = _num(lpath, line, r, "points", positive=up[t, e])
        xfer[t, e] = _per_point(lpath, line, r, "transfer_time_s", pts)
        lcap[t, e] = _num(lpath, line, r, "capacity_points", allow_inf=True)
    xfer = np.where(np.isnan(xfer), 0.0, xfer)  # a link without a row in a slot is down
    src = np.array([p[0] for p in pairs], dtype=np.int64)
    dst = np.array([p[1] for p in pairs], dtype=np.int64)
    return Traces(proc, cap, act, src, dst, xfer, lcap, up, ids)


def write_traces(directory: str | os.PathLike[str], scenario: Scenario, seconds_per_unit: float = 0.01,
                 points: int = 100) -> Path:
    """Write a scenario's costs as ``nodes.csv``/``links.csv`` measurements (for demos and round trips).

    Each cost ``c`` becomes a measurement of ``points`` datapoints taking ``c · points · seconds_per_unit``.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    T = scenario.horizon
    with (directory / "nodes.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(NODE_COLUMNS)
        for t in range(T):
            for i in range(scenario.n_devices):
                w.writerow([t, f"d{i}", int(scenario.active[t, i]), points,
                            repr(float(scenario.proc_cost[t, i] * points * seconds_per_unit)),
                            repr(float(scenario.proc_cap[t, i]))])
    with (directory / "links.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(LINK_COLUMNS)
        for t in range(T):
            for e in range(scenario.n_edges):
                w.writerow([t, f"d{scenario.src[e]}", f"d{scenario.dst[e]}", int(scenario.link_up[t, e]), points,
                            repr(float(scenario.link_cost[t, e] * points * seconds_per_unit)),
                            repr(float(scenario.link_cap[t, e]))])
    return directory


def from_traces(traces: Traces | str | os.PathLike[str], n_devices: int | None = None, horizon: int = 100,
                seed: int = 0, max_points: int = 60, error_weight_max: float = 2.0,
                reference_s: float | None = None) -> Scenario:
    """A scenario that replays measured traces (docs/model.md §5).

    Device ``i`` replays traced node ``i mod N`` and slot ``t`` replays trace slot ``t mod L``. The
    links are the traced links between distinct simulated devices whose traced nodes are linked.
    Costs are per-point times divided by ``reference_s`` (default: median per-point processing
    time of active traced nodes). ``D_i(t) ~ U{0..max_points}`` and ``f_i(t) ~ U(0, error_weight_max)``
    are drawn from ``seed`` (the traces measure costs, not data arrivals).
    """
    tr = traces if isinstance(traces, Traces) else load_traces(traces)
    n = tr.n_nodes if n_devices is None else n_devices
    if not (n >= 1 and horizon >= 1 and float(n).is_integer() and float(horizon).is_integer()):
        raise ScenarioError(f"n_devices = {n}, horizon = {horizon}: both must be whole numbers ≥ 1")
    if seed < 0:
        raise ScenarioError(f"seed = {seed}: must be ≥ 0")
    if max_points < 0:
        raise ScenarioError(f"max_points = {max_points}: must be ≥ 0")
    if not 0 <= error_weight_max < np.inf:
        raise ScenarioError(f"error_weight_max = {error_weight_max}: must be finite and ≥ 0")
    if reference_s is None:
        active_times = tr.proc_time[tr.node_active & (tr.proc_time > 0)]
        reference_s = float(np.median(active_times)) if active_times.size else 1.0
    if not 0 < reference_s < np.inf:
        raise ScenarioError(f"reference_s = {reference_s}: must be finite and > 0")
    rng = np.random.default_rng(seed)
    rows = np.arange(horizon) % tr.length
    node_of = np.arange(n) % tr.n_nodes
    link_of: dict[tuple[int, int], int] = {(int(a), int(b)): k for k, (a, b) in enumerate(zip(tr.link_src,
                                                                                              tr.link_dst))}
    src, dst, which = [], [], []
    for i in range(n):
        for j in range(n):
            k = link_of.get((int(node_of[i]), int(node_of[j])))
            if i != j and k is not None:
                src.append(i)
                dst.append(j)
                which.append(k)
    which_a = np.array(which, dtype=np.int64)
    active = tr.node_active[rows][:, node_of]
    collected = np.where(active, rng.integers(0, max_points + 1, size=(horizon, n)), 0)
    return Scenario(
        collected=collected,
        proc_cost=tr.proc_time[rows][:, node_of] / reference_s,
        error_weight=rng.uniform(0.0, error_weight_max, size=(horizon, n)),
        src=np.array(src, dtype=np.int64), dst=np.array(dst, dtype=np.int64),
        link_cost=tr.transfer_time[rows][:, which_a] / reference_s if which else np.zeros((horizon, 0)),
        proc_cap=tr.node_cap[rows][:, node_of],
        link_cap=tr.link_cap[rows][:, which_a] if which else None,
        link_up=tr.link_up[rows][:, which_a] if which else None,
        active=active,
        info={"generator": "traces", "n_devices": n, "horizon": horizon, "seed": seed,
              "max_points": max_points, "reference_s": reference_s, "trace_nodes": list(tr.node_ids)},
    )
