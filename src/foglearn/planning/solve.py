"""``plan``: the one entry point to data-movement planning (problem (5)-(9), docs/model.md §2, §4).

:data:`SOLVERS` maps each solver's name to ``f(scenario, error) -> Plan`` with two parameters:
``errors``, the error models it solves, and ``capacities``, whether it honours capacities.
``solver="auto"`` takes the first registered solver that fits the problem; registering a solver
here makes it available to :func:`plan`, the experiments and the CLI (``docs/extending.md``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, cast

import numpy as np

from foglearn.errors import SolverError
from foglearn.network.scenario import Scenario
from foglearn.planning.plan import ERROR_MODELS, Plan, PlanError, SolverStats, realise
from foglearn.registry import Registry

#: Solver name → ``f(scenario, error) -> Plan`` solving problem (5)-(9) with perfect information
#: (``params``: ``errors``, the error models it solves; ``capacities``, whether it honours
#: ``C_i(t)``, ``C_ij(t)``). Registration order is ``auto``'s order of preference.
SOLVERS: Registry[Callable[[Scenario, str], Plan]] = Registry("solver")

__all__ = ["SOLVERS", "plan"]


@SOLVERS.register("greedy", "Theorem 3's closed form, O(nT + E): linear error, no capacities",
                  errors=("linear",), capacities=False)
def _greedy(scenario: Scenario, error: str) -> Plan:
    from foglearn.planning.greedy import plan_greedy
    return plan_greedy(scenario)


@SOLVERS.register("linear", "exact min-cost flow (successive shortest paths): linear error, capacities",
                  errors=("linear",), capacities=True)
def _linear(scenario: Scenario, error: str) -> Plan:
    from foglearn.planning.flow import plan_linear
    return plan_linear(scenario)


@SOLVERS.register("sqrt", "exact certified solver for the square-root error (Lemma 1), capacities",
                  errors=("sqrt",), capacities=True)
def _sqrt(scenario: Scenario, error: str) -> Plan:
    from foglearn.planning.sqrt import plan_sqrt
    return plan_sqrt(scenario)


@SOLVERS.register("reference", "HiGHS (linear) or CVXPY+Clarabel (sqrt): slow cross-check",
                  errors=ERROR_MODELS, capacities=True)
def _reference(scenario: Scenario, error: str) -> Plan:
    from foglearn.planning.reference import reference_linear, reference_sqrt
    return reference_linear(scenario) if error == "linear" else reference_sqrt(scenario)


def _plan_from_labels(name: str, loads: str, scenario: Scenario, labels: np.ndarray | None,
                      period: int | None, target: Any) -> Plan:
    from foglearn.planning.label_aware import DEFAULT_PERIOD, DEFAULT_TARGET, plan_label_aware
    if labels is None:
        raise PlanError(f"solver = {name!r} plans from each device's label mix: pass labels = D_i^c(t) "
                        "[T, n, K] (foglearn.learning.partition.class_arrivals)")
    return plan_label_aware(scenario, labels, period=DEFAULT_PERIOD if period is None else period, loads=loads,
                            target=DEFAULT_TARGET if target is None else target)


#: Version of the label-aware formulation, part of a stored run's key (experiments.config.RunConfig.key and
#: the noniid experiment's cells): 1 balanced per slot, 2 per aggregation period with free loads (then the
#: default), 3 ``label-aware`` keeps the label-blind optimum's loads and ``label-aware-free`` frees them,
#: 4 both balance towards the uniform mix by default (3 and before: the pooled mix).
LABEL_AWARE_FORMULATION = 4


@SOLVERS.register("label-aware", "exact certified LP (HiGHS): the label-blind optimum's load per device and "
                  "aggregation period, routed to balance label mixes (λ per point of skew); needs labels=[T, n, K]",
                  errors=("linear",), capacities=True, labels=True, formulation=LABEL_AWARE_FORMULATION)
def _label_aware(scenario: Scenario, error: str, labels: np.ndarray | None = None, period: int | None = None,
                 target: Any = None) -> Plan:
    return _plan_from_labels("label-aware", "label-blind", scenario, labels, period, target)


@SOLVERS.register("label-aware-free", "label-aware with free loads (only the total budget fixed; HiGHS column "
                  "generation): balances more, spreads data over more devices; needs labels=[T, n, K]",
                  errors=("linear",), capacities=True, labels=True, formulation=LABEL_AWARE_FORMULATION)
def _label_aware_free(scenario: Scenario, error: str, labels: np.ndarray | None = None,
                      period: int | None = None, target: Any = None) -> Plan:
    return _plan_from_labels("label-aware-free", "free", scenario, labels, period, target)


def _fits(name: str, scenario: Scenario, error: str) -> bool:
    params = SOLVERS[name].params
    return error in params["errors"] and (params["capacities"] or not scenario.has_capacities)


def _choose(scenario: Scenario, error: str, solver: str) -> str:
    """The registered solver to run: ``solver`` itself, checked to fit, or ``auto``'s choice."""
    if error not in ERROR_MODELS:
        raise PlanError(f"error = {error!r}: must be one of {ERROR_MODELS}")
    fitting = [name for name in SOLVERS if _fits(name, scenario, error)]
    if solver == "auto":
        fitting = [name for name in fitting if not SOLVERS[name].params.get("labels")]
        if not fitting:
            raise PlanError(f"error = {error!r}: no registered solver solves it")
        return fitting[0]
    try:
        entry = SOLVERS.get_entry(solver, "solver", PlanError)
    except PlanError as exc:
        raise PlanError(f"{exc}, or auto") from None
    if error not in entry.params["errors"]:
        raise PlanError(f"solver = {solver!r} solves the {' and '.join(entry.params['errors'])} error "
                        f"model, not error = {error!r}; use one of: auto, {', '.join(fitting)}")
    if solver not in fitting:
        raise PlanError(f"solver = {solver!r} ignores capacities and this scenario has them; "
                        f"use one of: auto, {', '.join(fitting)}")
    return solver


def plan(scenario: Scenario, error: str = "linear", information: str | int = "perfect",
         movement: bool = True, solver: str = "auto", labels: np.ndarray | None = None,
         period: int | None = None, target: str | np.ndarray | None = None) -> Plan:
    """Plan data movement for ``scenario``.

    Parameters
    ----------
    error : {"linear", "sqrt"}
        Error model: linear discard cost ``f D r`` (Thm 3) or ``f/sqrt(G)`` (Lemma 1, Thm 4).
    information : "perfect" or int
        Perfect knowledge of the whole horizon, or windows of that length planned from the
        averages of the previous window (docs/model.md §4; the first window does not move data).
    movement : bool
        ``False``: the no-movement baseline — every device keeps all it collects; capacity
        excess is dropped by :func:`realise` (Table III, A).
    solver : str
        ``"auto"`` or a name in :data:`SOLVERS`. ``auto``: the first registered solver that
        solves ``error`` and honours the scenario's capacities — greedy (Thm 3) without
        capacities, the exact min-cost flow with them, the square-root solver for
        ``error="sqrt"``; ``reference`` uses HiGHS / CVXPY+Clarabel. ``auto`` never picks a solver
        that plans from labels (``label-aware``); name it.
    labels : array ``[T, n, K]``, optional
        ``D_i^c(t)`` for a solver registered with ``labels=True`` (``label-aware``, perfect
        information only); an error for any other solver.
    period : int, optional
        The aggregation period ``τ`` (eq. 4) over which ``label-aware`` balances each device's
        label mix (default: its ``DEFAULT_PERIOD``, ``foglearn run``'s τ); only with ``labels``.
    target : {"uniform", "collected"} or array ``[K]``, optional
        The label mix ``label-aware`` balances towards (default: its ``DEFAULT_TARGET``,
        ``"uniform"``; :func:`foglearn.planning.label_aware.target_mix`); only with ``labels``.

    Costs are always the realised ones (docs/model.md §2). Bad input (an unknown solver, one that
    does not fit the problem) is a :class:`PlanError`; a solver whose plan violates a constraint
    is a :class:`~foglearn.errors.SolverError`.
    """
    chosen = _choose(scenario, error, solver)
    if information != "perfect" and (isinstance(information, bool) or not isinstance(information, int | np.integer)
                                     or information < 1):
        raise PlanError(f"information = {information!r}: must be 'perfect' or a window length ≥ 1")
    uses_labels = bool(SOLVERS[chosen].params.get("labels"))
    if labels is not None and not uses_labels:
        raise PlanError(f"labels: solver = {chosen!r} is label-blind; only a solver registered with labels "
                        f"(label-aware) plans from them")
    if period is not None and labels is None:
        raise PlanError("period: only a solver that plans from labels (label-aware) balances over an aggregation "
                        "period; pass labels too")
    if target is not None and labels is None:
        raise PlanError("target: only a solver that plans from labels (label-aware) balances towards a target "
                        "label mix; pass labels too")
    if uses_labels and information != "perfect":
        raise PlanError(f"information = {information!r}: solver = {chosen!r} plans with perfect information only")
    if labels is not None:  # checked even where they go unused (movement = False), so bad input never passes
        from foglearn.planning.label_aware import check_labels, check_period, target_mix
        lab = check_labels(scenario, labels)
        if period is not None:
            check_period(period)
        if target is not None:
            target_mix(lab, target)
    if not movement:
        t0 = time.perf_counter()
        keep = np.where(scenario.collected > 0, 1.0, 0.0)
        off = np.zeros((scenario.horizon, scenario.n_edges))
        stats = SolverStats("no-movement", "given", time.perf_counter() - t0)
        p = realise(scenario, keep, off, error, stats, "perfect" if information == "perfect"
                    else f"estimated(window={information})")
        return p
    if information == "perfect":
        solve_fn = cast(Callable[..., Plan], SOLVERS[chosen].obj)
        p = (solve_fn(scenario, error, labels=labels, period=period, target=target) if uses_labels
             else solve_fn(scenario, error))
        if p.costs.violations or not np.isfinite(p.costs.total):
            raise SolverError(f"solver {chosen!r} produced an infeasible plan")
        return p
    from foglearn.planning.information import windowed_fractions

    W = int(information)
    t0 = time.perf_counter()
    objs = []

    def solve(est: Scenario):
        p = SOLVERS[_choose(est, error, solver)].obj(est, error)
        objs.append(p.stats.objective)
        return p.keep, p.offload

    keep, off = windowed_fractions(scenario, W, solve)
    stats = SolverStats(f"{chosen}(windowed)", "optimal", time.perf_counter() - t0,
                        float(np.sum(objs)) if objs else float("nan"), 0.0,
                        {"windows": len(objs) + 1, "estimated_objective": float(np.sum(objs)) if objs else 0.0})
    return realise(scenario, keep, off, error, stats, f"estimated(window={W})")
