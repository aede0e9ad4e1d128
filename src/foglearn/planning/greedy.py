"""Theorem 3: the closed-form plan when capacities are absent (linear error model).

With ``C_i(t) = ∞`` and ``C_ij(t) = ∞`` the linear program (5)-(9) separates per datapoint:
each point collected by ``i`` at ``t`` goes to the cheapest of

* processing locally, ``c_i(t)``;
* offloading to the best usable neighbour ``k``, ``c_ik(t) + c_k(t+1)`` (eq. (12));
* discarding, ``f_i(t)``.

Ties go to local processing, then offloading, then discarding (SPEC §2); among equally cheap
neighbours the lowest edge index wins. The plan is 0/1. The computation is vectorised per slot
over the sparse edge list (``np.minimum.reduceat`` over edges grouped by source), so memory is
linear in ``E``.
"""

from __future__ import annotations

import time

import numpy as np

from foglearn.network.scenario import Scenario
from foglearn.planning.plan import Plan, PlanError, SolverStats, offload_sum, processed_points

__all__ = ["greedy_fractions", "plan_greedy", "best_offload"]


def _src_order(scenario: Scenario) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Edges grouped by source: ``(order, starts, sources)`` for ``np.minimum.reduceat``."""
    order = np.argsort(scenario.src, kind="stable")
    s = scenario.src[order]
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]]) if s.size else np.zeros(0, np.int64)
    return order, starts, s[starts] if s.size else np.zeros(0, np.int64)


def best_offload(scenario: Scenario, t: int, order: np.ndarray | None = None,
                 starts: np.ndarray | None = None, sources: np.ndarray | None = None,
                 usable: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """For slot ``t``: per device, ``min_k c_ik(t) + c_k(t+1)`` over usable links and the edge attaining it.

    Returns ``(cost[n], edge[n])`` with ``inf`` / ``-1`` where a device has no usable link.
    """
    n = scenario.n_devices
    best = np.full(n, np.inf)
    edge = np.full(n, -1, dtype=np.int64)
    if scenario.n_edges == 0 or t >= scenario.horizon - 1:
        return best, edge
    if order is None or starts is None or sources is None:
        order, starts, sources = _src_order(scenario)
    ok = scenario.usable_links()[t] if usable is None else usable
    cost = scenario.link_cost[t] + scenario.proc_cost[t + 1, scenario.dst]
    cost = np.where(ok, cost, np.inf)[order]
    seg_min = np.minimum.reduceat(cost, starts)
    best[sources] = seg_min
    # first edge (in group order = edge index order, the sort is stable) attaining the minimum
    grp = np.repeat(np.arange(starts.size), np.diff(np.r_[starts, cost.size]))
    hit = np.flatnonzero((cost == seg_min[grp]) & np.isfinite(cost))
    g, first = np.unique(grp[hit], return_index=True)
    edge[sources[g]] = order[hit[first]]
    return best, edge


def greedy_fractions(scenario: Scenario) -> tuple[np.ndarray, np.ndarray]:
    """Theorem 3's 0/1 fractions ``(keep[T, n], offload[T, E])`` for a scenario without capacities."""
    if scenario.has_capacities:
        raise PlanError("solver = 'greedy': Theorem 3 needs a scenario without capacities "
                        "(proc_cap and link_cap all inf); use solver = 'linear'")
    T, n, E = scenario.horizon, scenario.n_devices, scenario.n_edges
    D = scenario.collected
    c, f = scenario.proc_cost, scenario.error_weight
    keep = np.zeros((T, n))
    offload = np.zeros((T, E))
    order, starts, sources = _src_order(scenario)
    usable = scenario.usable_links() if E else None
    rows = np.arange(n)
    for t in range(T):
        best, edge = best_offload(scenario, t, order, starts, sources,
                                  usable[t] if usable is not None else None)
        has = D[t] > 0
        local = has & (c[t] <= np.minimum(f[t], best))
        off = has & ~local & (best < c[t]) & (best <= f[t])
        keep[t, local] = 1.0
        if off.any():
            offload[t, edge[rows[off]]] = 1.0
    return keep, offload


def plan_greedy(scenario: Scenario, information: str = "perfect", check: bool = True) -> Plan:
    """Theorem 3's plan with costs and solver statistics (objective = realised total cost)."""
    t0 = time.perf_counter()
    keep, offload = greedy_fractions(scenario)
    secs = time.perf_counter() - t0
    D = scenario.collected
    G = processed_points(scenario, keep, offload)
    obj = float((G * scenario.proc_cost).sum())
    if scenario.n_edges:
        obj += float((offload * D[:, scenario.src] * scenario.link_cost).sum())
    discard = np.where(D > 0, 1.0 - keep - offload_sum(scenario, offload), 0.0)
    obj += float((scenario.error_weight * D * discard).sum())
    stats = SolverStats("greedy", "optimal", secs, obj, 0.0,
                        {"rule": "Theorem 3 (ties: local, offload, discard)"})
    plan = Plan.from_fractions(scenario, keep, offload, error="linear", stats=stats,
                               information=information, check=check)
    return plan

