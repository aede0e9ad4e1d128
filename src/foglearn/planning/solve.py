"""``plan``: the one entry point to data-movement planning (problem (5)-(9), SPEC §2, §4)."""

from __future__ import annotations

import time

import numpy as np

from foglearn.network.scenario import Scenario
from foglearn.planning.plan import ERROR_MODELS, Plan, PlanError, SolverStats, realise

SOLVERS: tuple[str, ...] = ("auto", "greedy", "linear", "sqrt", "reference")

__all__ = ["plan", "SOLVERS"]


def _choose(scenario: Scenario, error: str, solver: str) -> str:
    if solver not in SOLVERS:
        raise PlanError(f"solver = {solver!r}: must be one of {SOLVERS}")
    if error not in ERROR_MODELS:
        raise PlanError(f"error = {error!r}: must be one of {ERROR_MODELS}")
    if solver == "auto":
        if error == "sqrt":
            return "sqrt"
        return "linear" if scenario.has_capacities else "greedy"
    if error == "sqrt" and solver in ("greedy", "linear"):
        raise PlanError(f"solver = {solver!r} solves the linear error model; use 'sqrt' for error = 'sqrt'")
    if error == "linear" and solver == "sqrt":
        raise PlanError("solver = 'sqrt' solves the square-root error model; use error = 'sqrt'")
    return solver


def _solve_perfect(scenario: Scenario, error: str, solver: str, information: str = "perfect") -> Plan:
    if solver == "greedy":
        from foglearn.planning.greedy import plan_greedy
        return plan_greedy(scenario, information=information)
    if solver == "linear":
        from foglearn.planning.flow import plan_linear
        return plan_linear(scenario, information=information)
    if solver == "sqrt":
        from foglearn.planning.sqrt import plan_sqrt
        return plan_sqrt(scenario, information=information)
    from foglearn.planning.reference import reference_linear, reference_sqrt
    return reference_linear(scenario) if error == "linear" else reference_sqrt(scenario)


def plan(scenario: Scenario, error: str = "linear", information: str | int = "perfect",
         movement: bool = True, solver: str = "auto") -> Plan:
    """Plan data movement for ``scenario``.

    Parameters
    ----------
    error : {"linear", "sqrt"}
        Error model: linear discard cost ``f D r`` (Thm 3) or ``f/sqrt(G)`` (Lemma 1, Thm 4).
    information : "perfect" or int
        Perfect knowledge of the whole horizon, or windows of that length planned from the
        averages of the previous window (SPEC §4; the first window does not move data).
    movement : bool
        ``False``: the no-movement baseline — every device keeps all it collects; capacity
        excess is dropped by :func:`realise` (Table III, A).
    solver : {"auto", "greedy", "linear", "sqrt", "reference"}
        ``auto``: greedy (Thm 3) without capacities, the exact min-cost flow with them, the
        square-root solver for ``error="sqrt"``; ``reference`` uses HiGHS / CVXPY+Clarabel.

    Costs are always the realised ones (SPEC §2).
    """
    chosen = _choose(scenario, error, solver)
    if information != "perfect" and (isinstance(information, bool) or not isinstance(information, int | np.integer)
                                     or information < 1):
        raise PlanError(f"information = {information!r}: must be 'perfect' or a window length ≥ 1")
    if not movement:
        t0 = time.perf_counter()
        keep = np.where(scenario.collected > 0, 1.0, 0.0)
        off = np.zeros((scenario.horizon, scenario.n_edges))
        stats = SolverStats("no-movement", "given", time.perf_counter() - t0)
        p = realise(scenario, keep, off, error, stats, "perfect" if information == "perfect"
                    else f"estimated(window={information})")
        return p
    if information == "perfect":
        p = _solve_perfect(scenario, error, chosen)
        if p.costs.violations or not np.isfinite(p.costs.total):
            raise PlanError(f"solver {chosen!r} produced an infeasible plan")
        return p
    from foglearn.planning.information import windowed_fractions

    W = int(information)
    t0 = time.perf_counter()
    objs = []

    def solve(est: Scenario):
        s = _choose(est, error, solver)
        p = _solve_perfect(est, error, s)
        objs.append(p.stats.objective)
        return p.keep, p.offload

    keep, off = windowed_fractions(scenario, W, solve)
    stats = SolverStats(f"{chosen}(windowed)", "optimal", time.perf_counter() - t0,
                        float(np.sum(objs)) if objs else float("nan"), 0.0,
                        {"windows": len(objs) + 1, "estimated_objective": float(np.sum(objs)) if objs else 0.0})
    return realise(scenario, keep, off, error, stats, f"estimated(window={W})")
