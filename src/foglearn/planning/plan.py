"""A data-movement plan and its cost accounting (problem (5)-(9), SPEC §2).

A :class:`Plan` holds, per slot, the fractions of ``D_i(t)`` that device ``i`` keeps
(``s_ii(t)``), offloads on each link (``s_ij(t)``) and discards (``r_i(t)``), the points each
device processes (``G_i(t)``, eq. (6)), the realised costs and the solver's statistics.

Costs are always accounted on what is realised (SPEC §2): :func:`realise` turns any plan —
e.g. one made from estimates — into a feasible one by dropping what overloads a link or a
device, charging the dropped points as discarded and counting each overload as a violation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from foglearn.network.scenario import Scenario

ErrorModel = Literal["linear", "sqrt"]
ERROR_MODELS: tuple[str, ...] = ("linear", "sqrt")

#: Relative tolerance of the feasibility check (solvers work in floating point).
FEAS_TOL = 1e-7


class PlanError(ValueError):
    """A plan is malformed or infeasible; the message names the array, index and rule."""


@dataclass(frozen=True)
class CostBreakdown:
    """Realised costs of a plan (the three terms of objective (5)) and movement rates.

    ``discard`` is the error term: ``Σ f_i(t) D_i(t) r_i(t)`` under the linear model,
    ``Σ_{D_i(t)>0} f_i(t)/sqrt(G_i(t))`` under the square-root model (SPEC §2).
    ``unit = total / collected``; the rates are fractions of all collected points.
    """

    processing: float
    transfer: float
    discard: float
    collected: int
    processed: float
    offloaded: float
    discarded: float
    violations: int = 0

    @property
    def total(self) -> float:
        return self.processing + self.transfer + self.discard

    @property
    def unit(self) -> float:
        return self.total / self.collected if self.collected else 0.0

    @property
    def offload_rate(self) -> float:
        return self.offloaded / self.collected if self.collected else 0.0

    @property
    def discard_rate(self) -> float:
        return self.discarded / self.collected if self.collected else 0.0

    @property
    def process_rate(self) -> float:
        return self.processed / self.collected if self.collected else 0.0

    def as_dict(self) -> dict[str, float]:
        return {"processing": self.processing, "transfer": self.transfer, "discard": self.discard,
                "total": self.total, "unit": self.unit, "collected": self.collected,
                "processed": self.processed, "offloaded": self.offloaded, "discarded": self.discarded,
                "offload_rate": self.offload_rate, "discard_rate": self.discard_rate,
                "process_rate": self.process_rate, "violations": self.violations}


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
        Solver name, status, time, objective.
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
        for name, arr in (("keep", keep), ("offload", offload)):
            if (arr < -1e-9).any():
                idx = tuple(int(k) for k in np.argwhere(arr < -1e-9)[0])
                raise PlanError(f"{name}{list(idx)} = {arr[idx]}: fractions must be ≥ 0")
            np.maximum(arr, 0.0, out=arr)
        out_sum = offload_sum(scenario, offload)
        discard = 1.0 - keep - out_sum
        over = discard < -1e-9
        if over.any():
            idx = tuple(int(k) for k in np.argwhere(over)[0])
            raise PlanError(f"keep + Σ offload at {list(idx)} = {1 - discard[idx]:.9g}: fractions must sum to ≤ 1 (eq. 8)")
        np.maximum(discard, 0.0, out=discard)
        no_data = scenario.collected == 0
        keep[no_data] = 0.0
        discard[no_data] = 0.0
        offload[scenario.collected[:, scenario.src] == 0] = 0.0
        processed = processed_points(scenario, keep, offload)
        dropped = np.zeros_like(keep)
        costs = cost_breakdown(scenario, keep, offload, discard, processed, error)
        plan = cls(keep=keep, offload=offload, discard=discard, processed=processed, dropped=dropped,
                   costs=costs, stats=stats or SolverStats("given", objective=costs.total),
                   error=error, information=information)
        if check:
            check_feasible(scenario, plan)
        return plan


def _check_shapes(scenario: Scenario, keep: np.ndarray, offload: np.ndarray) -> None:
    T, n, E = scenario.horizon, scenario.n_devices, scenario.n_edges
    if keep.shape != (T, n):
        raise PlanError(f"keep: must have shape [T, n] = {(T, n)}, got {keep.shape}")
    if offload.shape != (T, E):
        raise PlanError(f"offload: must have shape [T, E] = {(T, E)}, got {offload.shape}")


def offload_sum(scenario: Scenario, offload: np.ndarray) -> np.ndarray:
    """``Σ_j s_ij(t)`` per device and slot, ``[T, n]``."""
    T, n = scenario.horizon, scenario.n_devices
    out = np.zeros((T, n))
    if scenario.n_edges:
        # one bincount over (t, src) pairs: fast for wide edge lists
        idx = (np.arange(T)[:, None] * n + scenario.src[None, :]).ravel()
        out = np.bincount(idx, weights=offload.ravel(), minlength=T * n).reshape(T, n)
    return out


def processed_points(scenario: Scenario, keep: np.ndarray, offload: np.ndarray) -> np.ndarray:
    """``G_i(t) = s_ii(t) D_i(t) + Σ_j s_ji(t-1) D_j(t-1)`` (eq. 6), ``[T, n]``."""
    T, n = scenario.horizon, scenario.n_devices
    D = scenario.collected
    G = keep * D
    if scenario.n_edges and T > 1:
        sent = offload[:-1] * D[:-1, scenario.src]  # [T-1, E] points sent at t, processed at t+1
        idx = (np.arange(1, T)[:, None] * n + scenario.dst[None, :]).ravel()
        G += np.bincount(idx, weights=sent.ravel(), minlength=T * n).reshape(T, n)
    return G


def error_term(scenario: Scenario, discard: np.ndarray, processed: np.ndarray, error: str) -> float:
    """The error term of (5): linear ``Σ f D r`` or square-root ``Σ_{D>0} f / sqrt(G)``."""
    f, D = scenario.error_weight, scenario.collected
    if error == "linear":
        return float((f * D * discard).sum())
    if error == "sqrt":
        mask = (D > 0) & (f > 0)
        G = processed[mask]
        if (G <= 0).any():
            return float("inf")
        return float((f[mask] / np.sqrt(G)).sum())
    raise PlanError(f"error = {error!r}: must be one of {ERROR_MODELS}")


def cost_breakdown(scenario: Scenario, keep: np.ndarray, offload: np.ndarray, discard: np.ndarray,
                   processed: np.ndarray, error: str, sent: np.ndarray | None = None,
                   violations: int = 0) -> CostBreakdown:
    """Processing ``Σ G c``, transfer ``Σ D s_ij c_ij`` and error terms of objective (5).

    ``sent`` (points per link and slot, ``[T, E]``) overrides ``offload * D`` for the transfer
    cost when some sent points were dropped on arrival (they were still transferred).
    """
    D = scenario.collected
    if sent is None:
        sent = offload * D[:, scenario.src] if scenario.n_edges else np.zeros((scenario.horizon, 0))
    delivered = offload * D[:, scenario.src] if scenario.n_edges else sent
    return CostBreakdown(
        processing=float((processed * scenario.proc_cost).sum()),
        transfer=float((sent * scenario.link_cost).sum()),
        discard=error_term(scenario, discard, processed, error),
        collected=int(D.sum()),
        processed=float(processed.sum()),
        offloaded=float(delivered.sum()),
        discarded=float((discard * D).sum()),
        violations=int(violations),
    )


def check_feasible(scenario: Scenario, plan: Plan, tol: float = FEAS_TOL) -> None:
    """Raise :class:`PlanError` naming the first rule of (6)-(9) that ``plan`` breaks.

    Rules: fractions in [0, 1] summing to 1 where data was collected; no offloading on a link
    that is down, from/to an inactive device or in the last slot; ``G_i(t) ≤ C_i(t)`` and
    ``s_ij(t) D_i(t) ≤ C_ij(t)`` (relative tolerance ``tol``); inactive devices process nothing.
    """
    _check_shapes(scenario, plan.keep, plan.offload)
    D = scenario.collected
    for name, arr in (("keep", plan.keep), ("offload", plan.offload), ("discard", plan.discard)):
        bad = (arr < -tol) | (arr > 1 + tol) | ~np.isfinite(arr)
        if bad.any():
            idx = tuple(int(k) for k in np.argwhere(bad)[0])
            raise PlanError(f"{name}{list(idx)} = {arr[idx]}: fractions must lie in [0, 1]")
    total = plan.keep + plan.discard + offload_sum(scenario, plan.offload)
    bad = (D > 0) & (np.abs(total - 1.0) > 1e-6)
    if bad.any():
        idx = tuple(int(k) for k in np.argwhere(bad)[0])
        raise PlanError(f"keep + Σ offload + discard at {list(idx)} = {total[idx]:.9g}: must equal 1 (eq. 8)")
    if scenario.n_edges:
        bad = (plan.offload > tol) & ~scenario.usable_links()
        if bad.any():
            t, e = (int(k) for k in np.argwhere(bad)[0])
            why = "the last slot (offloading at t = T is forbidden)" if t == scenario.horizon - 1 else \
                "a link that is down or touches an inactive device"
            raise PlanError(f"offload[{t}, {e}] = {plan.offload[t, e]:.6g}: offloads on {why} (eq. 7)")
        sent = plan.offload * D[:, scenario.src]
        bad = sent > scenario.link_cap * (1 + tol) + tol
        if bad.any():
            t, e = (int(k) for k in np.argwhere(bad)[0])
            raise PlanError(f"offload[{t}, {e}] sends {sent[t, e]:.6g} points > link_cap = {scenario.link_cap[t, e]:.6g} (eq. 9)")
    G = processed_points(scenario, plan.keep, plan.offload)
    cap = scenario.effective_proc_cap()
    bad = G > cap * (1 + tol) + tol
    if bad.any():
        t, i = (int(k) for k in np.argwhere(bad)[0])
        raise PlanError(f"processed[{t}, {i}] = {G[t, i]:.6g} > proc_cap = {cap[t, i]:.6g} (eq. 9)")


def realise(scenario: Scenario, keep: np.ndarray, offload: np.ndarray, error: str,
            stats: SolverStats, information: str) -> Plan:
    """Execute planned fractions on the real scenario; drop what overloads (SPEC §2).

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
    discard = np.where(D > 0, np.maximum(1.0 - keep - offload_sum(scenario, offload), 0.0), 0.0)
    costs = cost_breakdown(scenario, keep, offload, discard, G, error, sent=sent, violations=violations)
    return Plan(keep=keep, offload=offload, discard=discard, processed=G, dropped=dropped, costs=costs,
                stats=stats, error=error, information=information)


def _accumulate(target: np.ndarray, device_of_edge: np.ndarray, values: np.ndarray) -> None:
    """``target[t, device_of_edge[e]] += values[t, e]`` for all t, e."""
    T, n = target.shape
    idx = (np.arange(T)[:, None] * n + device_of_edge[None, :]).ravel()
    target += np.bincount(idx, weights=values.ravel(), minlength=T * n).reshape(T, n)
