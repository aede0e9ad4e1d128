"""Theorem 3: the closed-form plan when capacities are absent (linear error model).

With ``C_i(t) = ∞`` and ``C_ij(t) = ∞`` the linear program (5)-(9) separates per datapoint:
each point collected by ``i`` at ``t`` goes to the cheapest of

* processing locally, ``c_i(t)``;
* offloading to the best usable neighbour ``k``, ``c_ik(t) + c_k(t+1)`` (eq. (12));
* discarding, ``f_i(t)``.

Ties go to local processing, then offloading, then discarding (docs/model.md §2); among equally
cheap neighbours the lowest edge index wins. The plan is 0/1. One compiled (numba) pass over the
sparse edge list grouped by source computes it, so time and memory are linear in ``T·E``; Ctrl-C
stops it between slots (:mod:`foglearn.planning.interrupt`).
"""

from __future__ import annotations

import time

import numpy as np
from numba import njit

from foglearn.network.scenario import Scenario
from foglearn.planning import interrupt
from foglearn.planning.plan import Plan, PlanError, SolverStats

__all__ = ["greedy_fractions", "plan_greedy"]


@njit(cache=True, nogil=True)
def _greedy_kernel(D, c, f, indptr, by_src, dst, link_cost, link_up, active, keep, offload,
                   stop):  # pragma: no cover
    """Theorem 3 (12) per source ``(i, t)``: cheapest of local ``c_i(t)``, best usable neighbour
    ``c_ik(t) + c_k(t+1)`` (first edge index on ties) and discard ``f_i(t)``; ties local, then
    offload, then discard. Fills ``keep``/``offload`` with 0/1 and returns ``(objective, done)``;
    ``done`` is False when the ``stop`` flag ended it before the last slot."""
    T, n = D.shape
    total = 0.0
    for t in range(T):
        if stop[0] != 0:
            return total, False
        for i in range(n):
            if D[t, i] == 0:
                continue
            best = np.inf
            best_e = -1
            if t < T - 1:
                for k in range(indptr[i], indptr[i + 1]):
                    e = by_src[k]
                    j = dst[e]
                    if link_up[t, e] and active[t, j] and active[t + 1, j]:
                        cost = link_cost[t, e] + c[t + 1, j]
                        if cost < best:
                            best = cost
                            best_e = e
            if c[t, i] <= f[t, i] and c[t, i] <= best:
                keep[t, i] = 1.0
                total += D[t, i] * c[t, i]
            elif best < c[t, i] and best <= f[t, i]:
                offload[t, best_e] = 1.0
                total += D[t, i] * best
            else:
                total += D[t, i] * f[t, i]
    return total, True


def greedy_fractions(scenario: Scenario) -> tuple[np.ndarray, np.ndarray, float]:
    """Theorem 3's 0/1 fractions ``(keep[T, n], offload[T, E])`` and their cost, without capacities.

    One compiled pass over the edges per slot; memory is the ``[T, E]`` plan itself. Raises
    :class:`~foglearn.planning.interrupt.PlanInterrupted` on Ctrl-C.
    """
    if scenario.has_capacities:
        raise PlanError("solver = 'greedy': Theorem 3 needs a scenario without capacities "
                        "(proc_cap and link_cap all inf); use solver = 'linear'")
    T, n, E = scenario.horizon, scenario.n_devices, scenario.n_edges
    by_src = np.argsort(scenario.src, kind="stable")
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(scenario.src, minlength=n), out=indptr[1:])
    keep = np.zeros((T, n))
    offload = np.zeros((T, E))
    total, done = interrupt.call(
        _greedy_kernel, scenario.collected, scenario.proc_cost, scenario.error_weight, indptr,
        by_src, scenario.dst, scenario.link_cost, scenario.link_up, scenario.active, keep, offload,
        stop=interrupt.new_stop_flag())
    if not done:
        raise interrupt.PlanInterrupted("planning interrupted (Ctrl-C); no plan was returned")
    return keep, offload, float(total)


def plan_greedy(scenario: Scenario, information: str = "perfect", check: bool = True) -> Plan:
    """Theorem 3's plan with costs and solver statistics (objective = the rule's total cost)."""
    t0 = time.perf_counter()
    keep, offload, obj = greedy_fractions(scenario)
    secs = time.perf_counter() - t0
    stats = SolverStats("greedy", "optimal", secs, obj, 0.0,
                        {"rule": "Theorem 3 (ties: local, offload, discard)"})
    return Plan.from_fractions(scenario, keep, offload, error="linear", stats=stats,
                               information=information, check=check)
