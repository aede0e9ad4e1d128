"""A data-movement plan and its cost accounting (problem (5)-(9), docs/model.md §2).

A :class:`Plan` holds, per slot, the fractions of ``D_i(t)`` that device ``i`` keeps
(``s_ii(t)``), offloads on each link (``s_ij(t)``) and discards (``r_i(t)``), the points each
device processes (``G_i(t)``, eq. (6)), the realised costs and the solver's statistics.

Costs are always accounted on what is realised (docs/model.md §2, priced by
:func:`foglearn.planning.rules.realised_costs`): :func:`realise` turns any plan —
e.g. one made from estimates — into a feasible one by dropping what overloads a link or a
device, charging the dropped points as discarded and counting each overload as a violation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np
from numba import njit

from foglearn.errors import InputError
from foglearn.network.scenario import Scenario
from foglearn.planning.rules import ERROR_MODELS, CostBreakdown, realised_costs

__all__ = ["ERROR_MODELS", "INFINITE_COST", "CostBreakdown", "EdgeTotals", "Plan", "PlanError", "SolverStats",
           "check_feasible",
           "cost_breakdown", "edge_totals", "offload_sum", "processed_points", "realise"]

ErrorModel = Literal["linear", "sqrt"]

#: Relative tolerance of the feasibility check (solvers work in floating point).
FEAS_TOL = 1e-7
#: The status a plan reports instead of "optimal" when its realised cost is not finite.
INFINITE_COST = "infinite-cost"


class PlanError(InputError):
    """A plan is malformed or infeasible; the message names the array, index and rule."""


@dataclass(frozen=True)
class SolverStats:
    """What the solver reports: name, status, wall seconds, objective, optimality gap."""

    solver: str
    status: str = "optimal"
    seconds: float = 0.0
    objective: float = float("nan")
    gap: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"solver": self.solver, "status": self.status, "seconds": self.seconds,
                "objective": self.objective, "gap": self.gap, **self.extra}


@dataclass(frozen=True, eq=False)
class Plan:
    """Data movement for a scenario (paper's ``s_ij(t)``, ``s_ii(t)``, ``r_i(t)``).

    Attributes
    ----------
    keep : float ``[T, n]``
        ``s_ii(t)``: fraction of ``D_i(t)`` processed at ``i`` in slot ``t``.
    offload : float ``[T, E]``
        ``s_ij(t)``: fraction of ``D_src(t)`` sent on link ``e`` and processed at ``dst`` at ``t+1``.
    discard : float ``[T, n]``
        ``r_i(t)``: fraction discarded (includes points dropped by an overload, see ``dropped``).
    processed : float ``[T, n]``
        ``G_i(t)`` of eq. (6).
    dropped : float ``[T, n]``
        Points collected by ``i`` at ``t`` that the plan meant to process but an overloaded link
        or device dropped (0 for plans made with perfect information).
    costs : CostBreakdown
        Realised costs.
    stats : SolverStats
        Solver name, status, time, objective. A plan whose realised cost is not finite never has
        status ``"optimal"``: it becomes :data:`INFINITE_COST`, with the reason in ``extra``.
    error : {"linear", "sqrt"}
        The error model the costs are accounted under.
    information : str
        ``"perfect"`` or ``"estimated(window=W)"``.
    """

    keep: np.ndarray
    offload: np.ndarray
    discard: np.ndarray
    processed: np.ndarray
    dropped: np.ndarray
    costs: CostBreakdown
    stats: SolverStats
    error: str = "linear"
    information: str = "perfect"

    def __post_init__(self) -> None:
        # docs/model.md §2: a plan whose realised cost is not finite is never reported as optimal
        # (under the square-root model: a device that collected data processed none of it).
        if not math.isfinite(self.costs.total) and self.stats.status == "optimal":
            reason = ("the realised cost is not finite: a device that collected data processes none of it "
                      "(f / sqrt(0) under the square-root model)")
            object.__setattr__(self, "stats", replace(self.stats, status=INFINITE_COST,
                                                      extra={**self.stats.extra, "reason": reason}))

    @property
    def horizon(self) -> int:
        return int(self.keep.shape[0])

    @property
    def n_devices(self) -> int:
        return int(self.keep.shape[1])

    def summary(self) -> dict[str, Any]:
        return {"error": self.error, "information": self.information, **self.costs.as_dict(),
                "solver": self.stats.as_dict()}

    @classmethod
    def from_fractions(cls, scenario: Scenario, keep: np.ndarray, offload: np.ndarray,
                       error: str = "linear", stats: SolverStats | None = None,
                       information: str = "perfect", check: bool = True) -> Plan:
        """Build a plan from ``keep`` and ``offload``; ``discard`` is the remainder ``1 - keep - Σ offload``.

        Tiny negative round-off from a solver (≥ -1e-9) is set to 0; anything larger is an error.
        With ``check`` the plan must be feasible (:func:`check_feasible`).
        """
        keep = np.array(keep, dtype=np.float64)
        offload = np.array(offload, dtype=np.float64)
        _check_shapes(scenario, keep, offload)
        if (keep < -1e-9).any():
            idx = tuple(int(k) for k in np.argwhere(keep < -1e-9)[0])
            raise PlanError(f"keep{list(idx)} = {keep[idx]}: fractions must be ≥ 0")
        np.maximum(keep, 0.0, out=keep)
        no_data = scenario.collected == 0
        keep[no_data] = 0.0
        totals = edge_totals(scenario, offload, clean=True)
        if totals.bad[0, 0] >= 0:
            t, e = (int(k) for k in totals.bad[0])
            raise PlanError(f"offload[{t}, {e}] = {offload[t, e]}: fractions must lie in [0, 1]")
        discard = 1.0 - keep - totals.out_sum
        over = discard < -1e-9
        if over.any():
            idx = tuple(int(k) for k in np.argwhere(over)[0])
            raise PlanError(f"keep + Σ offload at {list(idx)} = {1 - discard[idx]:.9g}: "
                            f"fractions must sum to ≤ 1 (eq. 8)")
        np.maximum(discard, 0.0, out=discard)
        discard[no_data] = 0.0
        processed = keep * scenario.collected + totals.inflow
        costs = _costs(scenario, discard, processed, totals.transfer, totals.sent, error)
        plan = cls(keep=keep, offload=offload, discard=discard, processed=processed, dropped=np.zeros_like(keep),
                   costs=costs, stats=stats or SolverStats("given", objective=costs.total),
                   error=error, information=information)
        if check:
            _check_totals(scenario, plan, totals, FEAS_TOL)
        return plan


@njit(cache=True, nogil=True)
def _edge_pass(offload, D, src, dst, link_cost, link_cap, link_up, active, tol, clean):  # pragma: no cover - numba
    """One pass over ``[T, E]``: per-device sums, inflows, transfer totals and the first broken rule.

    With ``clean``, round-off below ``-1e-9`` is set to 0 and offloads of sources without data
    are zeroed, in place. Returns ``(out_sum[T,n], inflow[T,n], transfer, sent_total, bad)``
    where ``bad[k] = (t, e)`` of the first offload that breaks rule k (-1 if none): 0 fraction
    outside [0, 1], 1 offload on an unusable link, 2 over the link capacity.
    """
    T, E = offload.shape
    n = D.shape[1]
    out_sum = np.zeros((T, n))
    inflow = np.zeros((T, n))
    transfer = 0.0
    sent_total = 0.0
    bad = np.full((3, 2), -1, dtype=np.int64)
    for t in range(T):
        for e in range(E):
            x = offload[t, e]
            i = src[e]
            j = dst[e]
            if clean:
                if (x < 0.0 and x >= -1e-9) or D[t, i] == 0:
                    x = 0.0
                    offload[t, e] = 0.0
            if not (x >= -tol and x <= 1.0 + tol) and bad[0, 0] < 0:
                bad[0, 0] = t
                bad[0, 1] = e
            if x == 0.0:
                continue
            out_sum[t, i] += x
            usable = link_up[t, e] and active[t, i] and active[t, j] and t < T - 1 and active[t + 1, j]
            if x > tol and not usable and bad[1, 0] < 0:
                bad[1, 0] = t
                bad[1, 1] = e
            sent = x * D[t, i]
            if sent > link_cap[t, e] * (1.0 + tol) + tol and bad[2, 0] < 0:
                bad[2, 0] = t
                bad[2, 1] = e
            transfer += sent * link_cost[t, e]
            sent_total += sent
            if t < T - 1:
                inflow[t + 1, j] += sent
    return out_sum, inflow, transfer, sent_total, bad


@dataclass(frozen=True)
class EdgeTotals:
    """What one pass over the ``[T, E]`` offloads gives (see :func:`edge_totals`)."""

    out_sum: np.ndarray  # Σ_j s_ij(t), [T, n]
    inflow: np.ndarray  # Σ_j s_ji(t-1) D_j(t-1), [T, n]
    transfer: float  # Σ D s_ij c_ij
    sent: float  # Σ D s_ij
    bad: np.ndarray  # first (t, e) breaking: fraction range, usable link, link capacity


def edge_totals(scenario: Scenario, offload: np.ndarray, tol: float = FEAS_TOL, clean: bool = False) -> EdgeTotals:
    """Sums over links needed by eqs. (6)-(9), in one compiled pass (memory: no ``[T, E]`` temporaries)."""
    T, n = scenario.horizon, scenario.n_devices
    if scenario.n_edges == 0:
        return EdgeTotals(np.zeros((T, n)), np.zeros((T, n)), 0.0, 0.0, np.full((3, 2), -1))
    out_sum, inflow, transfer, sent, bad = _edge_pass(
        offload, scenario.collected, scenario.src, scenario.dst, scenario.link_cost, scenario.link_cap,
        scenario.link_up, scenario.active, tol, clean)
    return EdgeTotals(out_sum, inflow, float(transfer), float(sent), bad)


def _check_shapes(scenario: Scenario, keep: np.ndarray, offload: np.ndarray) -> None:
    T, n, E = scenario.horizon, scenario.n_devices, scenario.n_edges
    if keep.shape != (T, n):
        raise PlanError(f"keep: must have shape [T, n] = {(T, n)}, got {keep.shape}")
    if offload.shape != (T, E):
        raise PlanError(f"offload: must have shape [T, E] = {(T, E)}, got {offload.shape}")


def offload_sum(scenario: Scenario, offload: np.ndarray) -> np.ndarray:
    """``Σ_j s_ij(t)`` per device and slot, ``[T, n]``."""
    return edge_totals(scenario, np.asarray(offload, dtype=np.float64)).out_sum


def processed_points(scenario: Scenario, keep: np.ndarray, offload: np.ndarray) -> np.ndarray:
    """``G_i(t) = s_ii(t) D_i(t) + Σ_j s_ji(t-1) D_j(t-1)`` (eq. 6), ``[T, n]``."""
    return keep * scenario.collected + edge_totals(scenario, np.asarray(offload, dtype=np.float64)).inflow


def _costs(scenario: Scenario, discard: np.ndarray, processed: np.ndarray, transfer: float, offloaded: float,
           error: str, violations: int = 0) -> CostBreakdown:
    """:func:`~foglearn.planning.rules.realised_costs` of fractions: ``r_i(t) D_i(t)`` points discarded."""
    if error not in ERROR_MODELS:
        raise PlanError(f"error = {error!r}: must be one of {ERROR_MODELS}")
    return realised_costs(collected=scenario.collected, processed=processed, discarded=discard * scenario.collected,
                          proc_cost=scenario.proc_cost, error_weight=scenario.error_weight, transfer=transfer,
                          offloaded=offloaded, error=error, violations=violations)


def cost_breakdown(scenario: Scenario, keep: np.ndarray, offload: np.ndarray, discard: np.ndarray,
                   processed: np.ndarray, error: str) -> CostBreakdown:
    """Processing ``Σ G c``, transfer ``Σ D s_ij c_ij`` and error terms of objective (5)."""
    totals = edge_totals(scenario, np.asarray(offload, dtype=np.float64))
    return _costs(scenario, discard, processed, totals.transfer, totals.sent, error)


def check_feasible(scenario: Scenario, plan: Plan, tol: float = FEAS_TOL) -> None:
    """Raise :class:`PlanError` naming the first rule of (6)-(9) that ``plan`` breaks.

    Rules: fractions in [0, 1] summing to 1 where data was collected; no offloading on a link
    that is down, from/to an inactive device or in the last slot; ``G_i(t) ≤ C_i(t)`` and
    ``s_ij(t) D_i(t) ≤ C_ij(t)`` (relative tolerance ``tol``); inactive devices process nothing.
    """
    _check_shapes(scenario, plan.keep, plan.offload)
    _check_totals(scenario, plan, edge_totals(scenario, plan.offload, tol), tol)


def _check_totals(scenario: Scenario, plan: Plan, totals: EdgeTotals, tol: float) -> None:
    D = scenario.collected
    for name, arr in (("keep", plan.keep), ("discard", plan.discard)):
        bad = (arr < -tol) | (arr > 1 + tol) | ~np.isfinite(arr)
        if bad.any():
            idx = tuple(int(k) for k in np.argwhere(bad)[0])
            raise PlanError(f"{name}{list(idx)} = {arr[idx]}: fractions must lie in [0, 1]")
    t, e = (int(k) for k in totals.bad[0])
    if t >= 0:
        raise PlanError(f"offload[{t}, {e}] = {plan.offload[t, e]}: fractions must lie in [0, 1]")
    total = plan.keep + plan.discard + totals.out_sum
    bad = (D > 0) & (np.abs(total - 1.0) > 1e-6)
    if bad.any():
        idx = tuple(int(k) for k in np.argwhere(bad)[0])
        raise PlanError(f"keep + Σ offload + discard at {list(idx)} = {total[idx]:.9g}: must equal 1 (eq. 8)")
    t, e = (int(k) for k in totals.bad[1])
    if t >= 0:
        why = "the last slot (offloading at t = T is forbidden)" if t == scenario.horizon - 1 else \
            "a link that is down or touches an inactive device"
        raise PlanError(f"offload[{t}, {e}] = {plan.offload[t, e]:.6g}: offloads on {why} (eq. 7)")
    t, e = (int(k) for k in totals.bad[2])
    if t >= 0:
        sent = plan.offload[t, e] * D[t, scenario.src[e]]
        raise PlanError(f"offload[{t}, {e}] sends {sent:.6g} points > link_cap = {scenario.link_cap[t, e]:.6g} (eq. 9)")
    G = plan.keep * D + totals.inflow
    cap = scenario.effective_proc_cap()
    bad = G > cap * (1 + tol) + tol
    if bad.any():
        t, i = (int(k) for k in np.argwhere(bad)[0])
        raise PlanError(f"processed[{t}, {i}] = {G[t, i]:.6g} > proc_cap = {cap[t, i]:.6g} (eq. 9)")


def realise(scenario: Scenario, keep: np.ndarray, offload: np.ndarray, error: str,
            stats: SolverStats, information: str) -> Plan:
    """Execute planned fractions on the real scenario; drop what overloads (docs/model.md §2).

    1. A link asked to carry more than ``C_ij(t)`` sends only ``C_ij(t)``; the rest stays at the
       source and is discarded (one violation).
    2. A device asked to process more than ``C_i(t)`` processes ``C_i(t)``: every contribution
       (its own kept points and the points offloaded to it in ``t-1``) is scaled down by the
       same factor; the dropped points are discarded and charged to the device that collected
       them (one violation). Points dropped after a transfer still pay the transfer cost.
    Offloads on unusable links (down, inactive end, last slot) are not sent: discarded, no violation.
    """
    keep = np.array(keep, dtype=np.float64)
    offload = np.array(offload, dtype=np.float64)
    _check_shapes(scenario, keep, offload)
    D = scenario.collected.astype(np.float64)
    T, n = scenario.horizon, scenario.n_devices
    violations = 0
    dropped = np.zeros((T, n))
    if scenario.n_edges:
        offload = np.where(scenario.usable_links(), offload, 0.0)
        sent = offload * D[:, scenario.src]
        over = sent > scenario.link_cap * (1 + FEAS_TOL)
        violations += int((over & (sent > 0)).sum())
        excess = np.where(over, sent - scenario.link_cap, 0.0)
        _accumulate(dropped, scenario.src, excess)
        sent = np.minimum(sent, scenario.link_cap)
        with np.errstate(invalid="ignore", divide="ignore"):
            offload = np.where(D[:, scenario.src] > 0, sent / D[:, scenario.src], 0.0)
    else:
        sent = np.zeros((T, 0))
    cap = scenario.effective_proc_cap()
    keep = np.where(scenario.active, keep, 0.0)
    G = processed_points(scenario, keep, offload)
    over = G > cap * (1 + FEAS_TOL) + FEAS_TOL
    violations += int(over.sum())
    if over.any():
        scale = np.where(over, cap / np.where(G > 0, G, 1.0), 1.0)  # [T, n] factor at the processing device
        dropped += keep * D * (1 - scale)
        keep = keep * scale
        if scenario.n_edges and T > 1:
            f = np.ones((T, scenario.n_edges))
            f[:-1] = scale[1:, scenario.dst]  # offload at t is processed at dst in t+1
            delivered = sent * f
            _accumulate(dropped, scenario.src, sent - delivered)
            with np.errstate(invalid="ignore", divide="ignore"):
                offload = np.where(D[:, scenario.src] > 0, delivered / D[:, scenario.src], 0.0)
        G = processed_points(scenario, keep, offload)
    totals = edge_totals(scenario, offload)
    discard = np.where(D > 0, np.maximum(1.0 - keep - totals.out_sum, 0.0), 0.0)
    transfer = float((sent * scenario.link_cost).sum())  # dropped-on-arrival points were still sent
    costs = _costs(scenario, discard, G, transfer, totals.sent, error, violations)
    return Plan(keep=keep, offload=offload, discard=discard, processed=G, dropped=dropped, costs=costs,
                stats=stats, error=error, information=information)


def _accumulate(target: np.ndarray, device_of_edge: np.ndarray, values: np.ndarray) -> None:
    """``target[t, device_of_edge[e]] += values[t, e]`` for all t, e."""
    T, n = target.shape
    idx = (np.arange(T)[:, None] * n + device_of_edge[None, :]).ravel()
    target += np.bincount(idx, weights=values.ravel(), minlength=T * n).reshape(T, n)
