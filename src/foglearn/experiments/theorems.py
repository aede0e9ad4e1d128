"""Theorems checked against the planner: the bridge between :mod:`foglearn.theory` (mathematics
only) and :mod:`foglearn.planning`.

Theorem 4's hierarchical instance is built as a :class:`~foglearn.network.Scenario` and solved by
the square-root planner, so its closed form, scipy and the planner can be compared on one instance.
"""

from __future__ import annotations

from typing import Any

import numpy as np

import foglearn.planning as planning
from foglearn.network import Scenario
from foglearn.theory._checks import count
from foglearn.theory.hierarchy import HierarchyInstance, HierarchySolution


def hierarchical_scenario(n: int, D: int, c: float, c_server: float, c_link: float, gamma: float,
                          server_points: int = 1) -> Any:
    """Theorem 4's instance as a :class:`~foglearn.network.Scenario` for the planner.

    Devices ``0..n-1`` are the leaves, device ``n`` the server; ``T = 2`` slots. At ``t = 0``
    each leaf collects ``D`` points (cost ``c``, error weight ``γ``) and may offload to the
    server over link ``leaf -> server`` (cost ``c_t``); the server processes what it receives
    at ``t = 1`` (cost ``c_{n+1}``, error weight ``γ``).

    The planner (docs/model.md §2) counts ``f/sqrt(G)`` only where ``D_i(t) > 0``; for the server's term
    ``γ/sqrt(snD)`` to count, the server must collect something at ``t = 1``: it collects
    ``server_points`` (default 1). The planner's instance therefore has the objective
    ``J(r, s) + k c_{n+1}`` with the server error ``γ / sqrt(snD + k)``, ``k ∈ [0, server_points]``
    the server's own kept points, which :func:`solve_hierarchical_with_planner` compares with
    scipy on exactly that objective.
    """
    h = HierarchyInstance(n, D, c, c_server, c_link, gamma)
    D_int = count("D", D, 1)
    k = count("server_points", server_points, 1)
    T, N = 2, h.n + 1
    collected = np.zeros((T, N), dtype=np.int64)
    collected[0, :h.n] = D_int
    collected[1, h.n] = k
    proc_cost = np.zeros((T, N))
    proc_cost[:, :h.n] = h.c
    proc_cost[:, h.n] = h.c_server
    error_weight = np.zeros((T, N))
    error_weight[0, :h.n] = h.gamma
    error_weight[1, h.n] = h.gamma
    src = np.arange(h.n)
    dst = np.full(h.n, h.n)
    link_cost = np.full((T, h.n), h.c_link)
    return Scenario(collected=collected, proc_cost=proc_cost, error_weight=error_weight, src=src,
                    dst=dst, link_cost=link_cost,
                    info={"generator": "foglearn.experiments.theorems.hierarchical_scenario", "theorem": 4,
                          "n": h.n, "D": D_int, "c": h.c, "c_server": h.c_server,
                          "c_link": h.c_link, "gamma": h.gamma, "server_points": k})


def solve_hierarchical_with_planner(n: int, D: int, c: float, c_server: float, c_link: float,
                                    gamma: float, server_points: int = 1) -> HierarchySolution:
    """Solve the instance with ``foglearn.planning.plan(scenario, error="sqrt")``.

    Returns the leaves' mean discard fraction ``r`` and offload fraction ``s`` at ``t = 0``
    and the plan's total cost. Each leaf keeps the same fraction (its error term is strictly
    convex), but how the offloaded total splits among the leaves is not unique, so ``r`` and ``s``
    are means over the leaves; ``info["keep_spread"]`` checks the symmetric part. The cost
    includes the server's ``server_points`` (see :func:`hierarchical_scenario`).
    """
    scen = hierarchical_scenario(n, D, c, c_server, c_link, gamma, server_points)
    p = planning.plan(scen, error="sqrt")
    n_leaves = int(n)
    r = float(np.mean(p.discard[0, :n_leaves]))
    s = float(np.mean(p.offload[0, :]))
    return HierarchySolution(r=r, s=s, objective=float(p.costs.total), method="foglearn.planning.plan(sqrt)",
                             info={"solver": getattr(p.stats, "solver", ""), "status": getattr(p.stats, "status", ""),
                                   "server_keep": float(p.keep[1, n_leaves]),
                                   "keep_spread": float(np.ptp(p.keep[0, :n_leaves]))})
