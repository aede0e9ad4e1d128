"""What the Flower ServerApp and ClientApps exchange, as pure functions (no Flower, no torch).

The rules both sides apply are those of the in-process simulator, from
:mod:`foglearn.planning.rules` (one place): a ClientApp splits its ``D_i(t)`` points with
:func:`~foglearn.planning.rules.split_counts` (re-exported here for it), the server aggregates with
:func:`~foglearn.planning.rules.aggregate_weighted` (eq. 4), estimates each window with
:func:`~foglearn.planning.rules.estimate_window` (through :func:`foglearn.planning.information.plan_window`)
and prices what was realised with :func:`~foglearn.planning.rules.realised_costs`. This module adds
the format of a device's per-slot report of the values it replays (:func:`scenario_report`) and
how the server books such a report into the window's measurements (:func:`record_report`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from foglearn.network.scenario import Scenario
from foglearn.planning.rules import WindowMeasurements, split_counts

__all__ = ["record_report", "scenario_report", "split_counts"]


def _finite_or_minus_one(a: np.ndarray) -> list[float]:
    return [float(v) if np.isfinite(v) else -1.0 for v in np.atleast_1d(a)]


def scenario_report(sc: Scenario, slot: int, device: int) -> dict[str, Any]:
    """The scenario's values at ``device`` in ``slot``, as a traced device reports them (docs/model.md §5).

    Keys: ``proc-cost`` ``c_i(t)``, ``error-weight`` ``f_i(t)``, ``proc-cap`` ``C_i(t)``, and per
    out-link (``out-edges``, in edge order) ``link-cost`` ``c_ij(t)``, ``link-cap`` ``C_ij(t)``,
    ``link-up`` (usable: :meth:`Scenario.usable_links`). An unlimited capacity is sent as ``-1``;
    a device without out-links sends ``out-edges = [-1]`` (records cannot hold empty lists).
    """
    out_edges = np.flatnonzero(sc.src == device)
    usable = sc.usable_links()[slot, out_edges] if out_edges.size else np.zeros(0, bool)
    return {"proc-cost": float(sc.proc_cost[slot, device]), "error-weight": float(sc.error_weight[slot, device]),
            "proc-cap": _finite_or_minus_one(sc.proc_cap[slot, device])[0],
            "out-edges": [int(e) for e in out_edges] or [-1],
            "link-cost": _finite_or_minus_one(sc.link_cost[slot, out_edges]) or [0.0],
            "link-cap": _finite_or_minus_one(sc.link_cap[slot, out_edges]) or [0.0],
            "link-up": [int(u) for u in usable] or [0]}


def record_report(m: WindowMeasurements, w: int, device: int, report: Mapping[str, Any]) -> None:
    """Book one device's report for slot ``w`` of the window into ``m`` (``-1`` capacities: unlimited).

    ``report`` holds ``collected`` and the keys of :func:`scenario_report`.
    """
    m.collected[w, device] = int(report["collected"])
    m.proc_cost[w, device] = float(report["proc-cost"])
    m.error_weight[w, device] = float(report["error-weight"])
    cap = float(report["proc-cap"])
    m.proc_cap[w, device] = cap if cap >= 0 else np.inf
    edges = [int(e) for e in report["out-edges"]]
    if edges == [-1]:
        return
    lc, lcap, up = list(report["link-cost"]), list(report["link-cap"]), list(report["link-up"])
    for k, e in enumerate(edges):
        m.link_cost[w, e] = float(lc[k])
        m.link_cap[w, e] = float(lcap[k]) if lcap[k] >= 0 else np.inf
        m.link_up[w, e] = bool(up[k])
