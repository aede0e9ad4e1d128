"""Measured cost traces (docs/model.md §5, docs/traces.md): replay a user's own per-slot measurements.

Two CSV files describe a measured fog network (the full format, with an example, is docs/traces.md):

``nodes.csv``: ``t, node, active, points, proc_time_s, capacity_points`` and optionally ``arrivals``
and ``error_weight`` — one row per node and slot;
``links.csv``: ``t, src, dst, up, points, transfer_time_s, capacity_points`` — at most one row per
link and slot (a link without a row in a slot is down).

``points`` is the batch a time was measured on, not data arrivals: per-point costs are
``proc_time_s / points`` and ``transfer_time_s / points``, divided by a reference time (default:
the median per-point processing time of the active traced nodes, so a typical device costs 1).
``arrivals`` (``D_i(t)``, whole points) and ``error_weight`` (``f_i(t)``) are used when present;
otherwise :func:`from_traces` draws them from its ``seed``.

Traced nodes are numbered in the order they first appear in ``nodes.csv``. :func:`from_traces`
replays the traces' own nodes and slots by default; more devices or slots than the traces hold
are an error unless ``repeat=True`` tiles them (device ``i`` replays node ``i mod N``, slot ``t``
replays slot ``t mod L``), with a warning that says so.

The files are UTF-8 (a BOM is fine). ``t`` is a whole slot number; a node has exactly one row
per slot, a link at most one; numbers are finite and ≥ 0 (``capacity_points`` may be empty or
``inf``), never NaN. Every broken rule is a :class:`~foglearn.network.ScenarioError` naming
``file:line``, the column and the rule.
"""

from __future__ import annotations

import csv
import io
import os
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from foglearn.network.scenario import MAX_COST, MAX_COUNT, Scenario, ScenarioError

NODE_COLUMNS = ("t", "node", "active", "points", "proc_time_s", "capacity_points")
#: Optional columns of ``nodes.csv``: ``D_i(t)`` and ``f_i(t)`` measured instead of drawn.
NODE_DATA_COLUMNS = ("arrivals", "error_weight")
LINK_COLUMNS = ("t", "src", "dst", "up", "points", "transfer_time_s", "capacity_points")


@dataclass(frozen=True, eq=False)
class Traces:
    """Measured per-point costs: nodes ``[L, N]`` and links ``[L, K]`` over ``L`` trace slots.

    ``arrivals`` (``D_i(t)``, int) and ``error_weight`` (``f_i(t)``) are ``[L, N]`` when
    ``nodes.csv`` has those columns, else ``None``. Node ``k`` is ``node_ids[k]``, numbered in
    the order the nodes first appear in ``nodes.csv``.
    """

    proc_time: np.ndarray  # [L, N] seconds per point
    node_cap: np.ndarray  # [L, N] points (inf = none)
    node_active: np.ndarray  # [L, N] bool
    link_src: np.ndarray  # [K] traced node ids (0..N-1)
    link_dst: np.ndarray  # [K]
    transfer_time: np.ndarray  # [L, K] seconds per point
    link_cap: np.ndarray  # [L, K]
    link_up: np.ndarray  # [L, K] bool
    node_ids: tuple[str, ...]
    arrivals: np.ndarray | None = None  # [L, N] points D_i(t)
    error_weight: np.ndarray | None = None  # [L, N] f_i(t)

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
        twice = sorted({h for h in header if h in columns and header.count(h) > 1})  # other columns are ignored
        if twice:
            raise ScenarioError(f"{path}:1: column {twice[0]!r} appears twice in the header")
        rows = []
        for row in reader:
            extra = [v for v in row.get(None) or () if v.strip()]  # DictReader's restkey: beyond the header
            if extra:
                raise ScenarioError(f"{path}:{reader.line_num}: {len(extra)} more non-empty field(s) than the "
                                    f"header's {len(header)} columns")
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


def _arrivals(path: Path, line: int, row: dict[str, str], active: bool) -> int:
    """``D_i(t)`` of a row: whole points ≥ 0, at most 2^53, and 0 where the node is inactive."""
    value = _num(path, line, row, "arrivals")
    if value != int(value):
        raise ScenarioError(f"{path}:{line} arrivals = {row['arrivals']!r}: must be a whole number of points")
    if value > MAX_COUNT:
        raise ScenarioError(f"{path}:{line} arrivals = {row['arrivals']!r}: must be at most 2^53 = {MAX_COUNT}")
    if value > 0 and not active:
        raise ScenarioError(f"{path}:{line} arrivals = {row['arrivals']!r}: must be 0 where active = 0 "
                            "(an inactive node collects nothing)")
    return int(value)


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
    ids = tuple(dict.fromkeys(r["node"] for _, r in nrows))  # in order of first appearance
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
    header = nrows[0][1]  # every row holds every column of the header
    arrivals = np.zeros((L, N), dtype=np.int64) if "arrivals" in header else None
    weight = np.zeros((L, N)) if "error_weight" in header else None
    for (line, r), t in zip(nrows, slot_of):
        i = index[r["node"]]
        act[t, i] = _flag(npath, line, r, "active")
        pts = _num(npath, line, r, "points", positive=act[t, i])
        proc[t, i] = _per_point(npath, line, r, "proc_time_s", pts)
        cap[t, i] = _num(npath, line, r, "capacity_points", allow_inf=True)
        if arrivals is not None:
            arrivals[t, i] = _arrivals(npath, line, r, bool(act[t, i]))
        if weight is not None:
            weight[t, i] = _num(npath, line, r, "error_weight")
            if weight[t, i] > MAX_COST:
                raise ScenarioError(f"{npath}:{line} error_weight = {r['error_weight']!r}: must be ≤ {MAX_COST:g}")
    pairs: dict[tuple[int, int], int] = {}
    for line, r in lrows:
        for col in ("src", "dst"):
            if r[col] not in index:
                raise ScenarioError(f"{lpath}:{line} {col} = {r[col]!r}: not a node of nodes.csv")
        if r["src"] == r["dst"]:
            raise ScenarioError(f"{lpath}:{line} dst = {r['dst']!r}: a link joins two different nodes (src = dst)")
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
    return Traces(proc, cap, act, src, dst, xfer, lcap, up, ids, arrivals, weight)


def write_traces(directory: str | os.PathLike[str], scenario: Scenario, seconds_per_unit: float = 0.01,
                 points: int = 100, *, data: bool = False) -> Path:
    """Write a scenario's costs as ``nodes.csv``/``links.csv`` measurements (for demos and round trips).

    Each cost ``c`` becomes a measurement of ``points`` datapoints taking ``c · points · seconds_per_unit``;
    device ``i`` becomes node ``d{i}``. With ``data`` the ``arrivals`` (``D_i(t)``) and ``error_weight``
    (``f_i(t)``) columns are written too, so ``from_traces(..., reference_s=seconds_per_unit)`` gives
    the scenario back.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    T = scenario.horizon
    with (directory / "nodes.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(NODE_COLUMNS + NODE_DATA_COLUMNS if data else NODE_COLUMNS)
        for t in range(T):
            for i in range(scenario.n_devices):
                extra = [int(scenario.collected[t, i]), repr(float(scenario.error_weight[t, i]))] if data else []
                w.writerow([t, f"d{i}", int(scenario.active[t, i]), points,
                            repr(float(scenario.proc_cost[t, i] * points * seconds_per_unit)),
                            repr(float(scenario.proc_cap[t, i])), *extra])
    with (directory / "links.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(LINK_COLUMNS)
        for t in range(T):
            for e in range(scenario.n_edges):
                w.writerow([t, f"d{scenario.src[e]}", f"d{scenario.dst[e]}", int(scenario.link_up[t, e]), points,
                            repr(float(scenario.link_cost[t, e] * points * seconds_per_unit)),
                            repr(float(scenario.link_cap[t, e]))])
    return directory


def _whole_or_none(value: object) -> bool:
    """Whether ``value`` is ``None`` or a whole number ≥ 1."""
    if value is None:
        return True
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        return False
    return bool(np.isfinite(value) and value >= 1 and float(value).is_integer())


def from_traces(traces: Traces | str | os.PathLike[str], n_devices: int | None = None, horizon: int | None = None,
                *, repeat: bool = False, seed: int = 0, max_points: int = 60, error_weight_max: float = 2.0,
                reference_s: float | None = None) -> Scenario:
    """A scenario that replays measured traces (docs/model.md §5, docs/traces.md).

    ``n_devices`` / ``horizon``: ``None`` means the traces' own node count ``N`` / slot count ``L``;
    fewer replay the first nodes / slots. More than the traces hold is a :class:`ScenarioError`
    unless ``repeat``: then device ``i`` replays traced node ``i mod N`` and slot ``t`` replays
    trace slot ``t mod L``, and a :class:`UserWarning` says what was tiled. The links are the
    traced links between distinct simulated devices whose traced nodes are linked.

    Costs ``c_i(t)``, ``c_ij(t)`` are per-point times divided by ``reference_s`` (default: the
    median per-point processing time over every active traced node and slot with a positive
    time; 1 s if there is none). ``D_i(t)`` and ``f_i(t)`` come from the ``arrivals`` and
    ``error_weight`` columns when ``nodes.csv`` has them; otherwise ``D_i(t) ~ U{0..max_points}``
    (0 where inactive) and ``f_i(t) ~ U(0, error_weight_max)`` are drawn, in that order, from
    ``numpy.random.default_rng(seed)`` — both are always drawn, so measuring one leaves the
    other's draw unchanged.

    Device names: ``scenario.device_names`` (``info["device_names"]``) is the traced node id of each
    device, with ``#k`` appended for the ``k``-th tiled copy (``k ≥ 1``); ``info["trace_nodes"]``
    lists the traced node ids in trace order.
    """
    tr = traces if isinstance(traces, Traces) else load_traces(traces)
    if not (_whole_or_none(n_devices) and _whole_or_none(horizon)):
        raise ScenarioError(f"n_devices = {n_devices}, horizon = {horizon}: both must be whole numbers ≥ 1 "
                            "(or None for the traces' own)")
    n = tr.n_nodes if n_devices is None else int(n_devices)
    T = tr.length if horizon is None else int(horizon)
    if seed < 0:
        raise ScenarioError(f"seed = {seed}: must be ≥ 0")
    if not 0 <= max_points <= MAX_COUNT:
        raise ScenarioError(f"max_points = {max_points}: must be between 0 and 2^53 = {MAX_COUNT}")
    if not 0 <= error_weight_max < np.inf:
        raise ScenarioError(f"error_weight_max = {error_weight_max}: must be finite and ≥ 0")
    tiled = []
    if n > tr.n_nodes:
        tiled.append(f"{n} devices replay the {tr.n_nodes} traced nodes (device i replays node i mod {tr.n_nodes})")
    if T > tr.length:
        tiled.append(f"{T} slots replay the {tr.length} traced slots (slot t replays slot t mod {tr.length})")
    if tiled and not repeat:
        asked = [f"n_devices = {n} > the {tr.n_nodes} traced nodes"] if n > tr.n_nodes else []
        asked += [f"horizon = {T} > the {tr.length} traced slots"] if T > tr.length else []
        raise ScenarioError(f"{'; '.join(asked)}: ask for at most what the traces hold, or pass repeat=True "
                            f"to tile them (device i replays node i mod {tr.n_nodes}, slot t replays slot "
                            f"t mod {tr.length})")
    if tiled:
        warnings.warn("traces tiled: " + "; ".join(tiled), UserWarning, stacklevel=2)
    if reference_s is None:
        active_times = tr.proc_time[tr.node_active & (tr.proc_time > 0)]
        reference_s = float(np.median(active_times)) if active_times.size else 1.0
    if not 0 < reference_s < np.inf:
        raise ScenarioError(f"reference_s = {reference_s}: must be finite and > 0")
    rng = np.random.default_rng(seed)
    rows = np.arange(T) % tr.length
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
    collected = np.where(active, rng.integers(0, max_points + 1, size=(T, n)), 0)
    error_weight = rng.uniform(0.0, error_weight_max, size=(T, n))
    if tr.arrivals is not None:
        collected = tr.arrivals[rows][:, node_of]
    if tr.error_weight is not None:
        error_weight = tr.error_weight[rows][:, node_of]
    names = [tr.node_ids[k] if i < tr.n_nodes else f"{tr.node_ids[k]}#{i // tr.n_nodes}"
             for i, k in enumerate(node_of.tolist())]
    clash = sorted(name for name, count in Counter(names).items() if count > 1)
    if clash:
        raise ScenarioError(f"repeat: the tiled copy {clash[0]!r} has the name of a node of nodes.csv; device "
                            "names must be unique (rename that node)")
    proc_cost = tr.proc_time[rows][:, node_of] / reference_s
    link_cost = tr.transfer_time[rows][:, which_a] / reference_s if which else np.zeros((T, 0))
    # the scenario's rules, named in the traces' terms (the scenario would name its own arrays)
    for cost, what in ((proc_cost, "nodes.csv proc_time_s / points"),
                       (link_cost, "links.csv transfer_time_s / points")):
        if cost.size and not np.all(cost <= MAX_COST):
            bad_t, bad_k = (int(x) for x in np.unravel_index(int(np.argmax(~(cost <= MAX_COST))), cost.shape))
            slot = int(rows[bad_t])
            if cost is proc_cost:
                where, per_point = f"node {tr.node_ids[node_of[bad_k]]!r}", tr.proc_time[slot, node_of[bad_k]]
            else:
                link = int(which_a[bad_k])
                where = f"link {tr.node_ids[tr.link_src[link]]!r} -> {tr.node_ids[tr.link_dst[link]]!r}"
                per_point = tr.transfer_time[slot, link]
            raise ScenarioError(f"{what} of {where} in trace slot {slot} = {per_point:g} s a point, ÷ the reference "
                                f"{reference_s:g} s = a cost of {cost[bad_t, bad_k]:g}: must be ≤ {MAX_COST:g} (a "
                                "time per point that large is not a measurement)")
    total = float(np.sum(collected, dtype=np.float64))
    if total > MAX_COUNT:
        what = "nodes.csv arrivals" if tr.arrivals is not None else f"max_points = {max_points} (arrivals drawn)"
        raise ScenarioError(f"{what}: the {n} devices × {T} slots replayed collect {total:.17g} points in "
                            f"all: must be at most 2^53 = {MAX_COUNT}")
    return Scenario(
        collected=collected,
        proc_cost=proc_cost,
        error_weight=error_weight,
        src=np.array(src, dtype=np.int64), dst=np.array(dst, dtype=np.int64),
        link_cost=link_cost,
        proc_cap=tr.node_cap[rows][:, node_of],
        link_cap=tr.link_cap[rows][:, which_a] if which else None,
        link_up=tr.link_up[rows][:, which_a] if which else None,
        active=active,
        info={"generator": "traces", "n_devices": n, "horizon": T, "seed": seed, "repeat": repeat,
              "max_points": max_points, "reference_s": reference_s,
              "arrivals": "traces" if tr.arrivals is not None else "drawn",
              "error_weight": "traces" if tr.error_weight is not None else "drawn",
              "trace_nodes": list(tr.node_ids), "device_names": names},
    )
