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
from foglearn.planning.rules import ERROR_MODELS, CostBreakdown, largest_remainder, realised_costs, whole_points

__all__ = ["ERROR_MODELS", "INFINITE_COST", "CostBreakdown", "EdgeTotals", "Plan", "PlanError", "PointCounts",
           "SolverStats", "check_feasible", "cost_breakdown", "edge_totals", "offload_sum", "point_counts",
           "processed_points", "realise", "split_points"]

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
    scenario : Scenario or None
        The scenario the plan was made for and is accounted on (set by :meth:`from_fractions` and
        :func:`realise`); :meth:`flows` and :meth:`table` use it when not given one.

    ``keep``, ``offload`` and ``discard`` are fractions of ``D_i(t)``; :meth:`flows` and
    :meth:`table` give whole points.
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
    scenario: Scenario | None = field(default=None, repr=False)

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

    def _scenario_for(self, scenario: Scenario | None, what: str) -> Scenario:
        scen = scenario if scenario is not None else self.scenario
        if scen is None:
            raise PlanError(f"{what}: this plan does not record its scenario (it was built directly); "
                            "pass the scenario it was made for")
        if (scen.horizon, scen.n_devices, scen.n_edges) != (self.horizon, self.n_devices, self.offload.shape[1]):
            raise PlanError(f"{what}: scenario (T, n, E) = {(scen.horizon, scen.n_devices, scen.n_edges)} does not "
                            f"match the plan's {(self.horizon, self.n_devices, self.offload.shape[1])}")
        return scen

    def flows(self, scenario: Scenario | None = None) -> list[dict[str, Any]]:
        """Who sends how many points to whom: one record per slot and link that carries points.

        The plan's ``offload[t, e]`` is ``s_ij(t)``, a *fraction* of ``D_i(t)``; a record gives
        *points*: ``{"t", "src", "dst", "points"}`` — ``points`` of the ``D_src(t)`` collected at
        ``t`` are sent on ``src → dst`` and processed at ``dst`` in ``t + 1`` — rounded as the
        trainer executes them (:func:`point_counts`). With a ``scenario`` the records also hold
        ``src_name`` and ``dst_name`` (:attr:`Scenario.device_names`); without one the scenario the
        plan was made for is used. Sorted by slot, then link. ``pandas.DataFrame(plan.flows())``
        gives a table.
        """
        scen = self._scenario_for(scenario, "flows")
        c = point_counts(scen, self)
        t, e, pts = c.offloaded
        src, dst = scen.src[e].tolist(), scen.dst[e].tolist()
        rows: list[dict[str, Any]] = [{"t": a, "src": b, "dst": d, "points": k}
                                      for a, b, d, k in zip(t.tolist(), src, dst, pts.tolist()) if k > 0]
        if scenario is not None:
            names = scenario.device_names
            for row in rows:
                row["src_name"], row["dst_name"] = names[row["src"]], names[row["dst"]]
        return rows

    def table(self, scenario: Scenario | None = None) -> list[dict[str, Any]]:
        """What each device does in each slot, in points: one record per ``(t, device)``, slot-major.

        The plan's ``keep``/``offload``/``discard`` are *fractions* of ``D_i(t)``; the records give
        *points*, rounded as the trainer executes them (:func:`point_counts`): ``t``, ``device``
        (and ``name``, :attr:`Scenario.device_names`, when a ``scenario`` is given), ``collected``
        (``D_i(t)``), ``kept`` (processed at ``i`` in ``t``), ``offloaded`` (sent on, processed by
        the receivers in ``t + 1``), ``discarded`` (never processed, charged ``f_i(t)``),
        ``received`` (points offloaded to ``i`` in ``t − 1``), ``dropped`` (points over
        ``⌊C_i(t)⌋`` after rounding) and ``processed`` (``G_i(t)``, eq. 6). Always
        ``kept + offloaded + discarded = collected`` and ``processed = kept + received − dropped``.
        """
        scen = self._scenario_for(scenario, "table")
        c = point_counts(scen, self)
        T, n = scen.horizon, scen.n_devices
        t_of = np.repeat(np.arange(T), n).tolist()
        i_of = np.tile(np.arange(n), T).tolist()
        cols = {"collected": scen.collected, "kept": c.kept, "offloaded": c.offloaded_by_device,
                "discarded": c.discarded, "received": c.received, "dropped": c.dropped, "processed": c.processed}
        flat = {k: v.ravel().tolist() for k, v in cols.items()}
        names = scenario.device_names if scenario is not None else None
        rows: list[dict[str, Any]] = []
        for k, (t, i) in enumerate(zip(t_of, i_of)):
            row: dict[str, Any] = {"t": t, "device": i}
            if names is not None:
                row["name"] = names[i]
            row.update({key: vals[k] for key, vals in flat.items()})
            rows.append(row)
        return rows

    @classmethod
    def from_fractions(cls, scenario: Scenario, keep: np.ndarray, offload: np.ndarray,
                       error: str = "linear", stats: SolverStats | None = None,
                       information: str = "perfect", check: bool = True, *, copy: bool = True) -> Plan:
        """Build a plan from ``keep`` and ``offload``; ``discard`` is the remainder ``1 - keep - Σ offload``.

        Tiny negative round-off from a solver (≥ -1e-9) is set to 0; anything larger is an error.
        With ``check`` the plan must be feasible (:func:`check_feasible`). ``copy = False``: the
        caller hands ``keep`` and ``offload`` over (a solver's fresh arrays, used by nobody else);
        float64 C-contiguous ones are kept without a copy and cleaned in place (the ``[T, E]``
        offloads are 0.8 GB at n = 10⁵, E = 10⁶, T = 100).
        """
        keep = np.array(keep, dtype=np.float64) if copy else np.ascontiguousarray(keep, dtype=np.float64)
        offload = np.array(offload, dtype=np.float64) if copy else np.ascontiguousarray(offload, dtype=np.float64)
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
        plan = cls(keep=keep, offload=offload, discard=discard, processed=processed, dropped=np.zeros(keep.shape),
                   costs=costs, stats=stats or SolverStats("given", objective=costs.total),
                   error=error, information=information, scenario=scenario)
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
                    if x != 0.0 or math.copysign(1.0, x) < 0.0:  # a zero stays unwritten (untouched pages)
                        offload[t, e] = 0.0
                    x = 0.0
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
                stats=stats, error=error, information=information, scenario=scenario)


def _accumulate(target: np.ndarray, device_of_edge: np.ndarray, values: np.ndarray) -> None:
    """``target[t, device_of_edge[e]] += values[t, e]`` for all t, e."""
    T, n = target.shape
    idx = (np.arange(T)[:, None] * n + device_of_edge[None, :]).ravel()
    target += np.bincount(idx, weights=values.ravel(), minlength=T * n).reshape(T, n)


@dataclass(frozen=True)
class PointCounts:
    """A plan in whole points, as the trainer executes it (see :func:`point_counts`); ``[T, n]`` int arrays.

    ``offloaded = (t, e, points)``: the points sent on link ``e`` at ``t`` for every ``(t, e)``
    with ``s_ij(t) > 0``; ``offloaded_by_device`` sums them per sender.
    """

    kept: np.ndarray
    offloaded: tuple[np.ndarray, np.ndarray, np.ndarray]
    offloaded_by_device: np.ndarray
    discarded: np.ndarray
    received: np.ndarray
    dropped: np.ndarray
    processed: np.ndarray


@dataclass(frozen=True)
class PointSplit:
    """Whole points of ``D_i(t)`` for slots ``t0 … t1 - 1`` (see :func:`split_points`).

    Items in order: keep ``(t, i)`` for every ``(t - t0) * n + i``, offload ``(t, e)`` for every
    ``s_ij(t) > 0``, discard ``(t, i)``; ``group`` is the item's collecting device
    ``(t - t0) * n + i``, ``priority`` its tie order within the group (keep, offloads in edge order,
    discard) and ``counts`` its points by largest remainder, before link capacities. ``sent`` is what
    each offload carries after them; ``kept`` and ``discarded`` (which holds what a link could not
    carry) are ``[t1 - t0, n]``.
    """

    t: np.ndarray
    edge: np.ndarray
    group: np.ndarray
    priority: np.ndarray
    counts: np.ndarray
    sent: np.ndarray
    kept: np.ndarray
    discarded: np.ndarray


def split_points(scenario: Scenario, plan: Plan, t0: int, t1: int) -> PointSplit:
    """The one rounding of a plan into points (docs/model.md §6), for slots ``t0 … t1 - 1``.

    ``s_ii(t) D_i(t)``, ``s_ij(t) D_i(t)`` and ``r_i(t) D_i(t)`` are rounded by
    :func:`largest_remainder` so they sum to ``D_i(t)`` exactly (ties: keep, offloads in edge order,
    discard); a link carries at most :func:`whole_points` of ``C_ij(t)`` and the excess stays at the
    source, discarded. :func:`point_counts` and the trainer's schedule both call it (the trainer a
    window of slots at a time, to bound its memory).
    """
    n, E = scenario.n_devices, scenario.n_edges
    Tw = t1 - t0
    D = scenario.collected[t0:t1].astype(np.int64)
    tl, ee = np.nonzero(plan.offload[t0:t1] > 0)
    tt = tl + t0
    src_of = scenario.src[ee]
    n_off = len(tt)
    ti = np.arange(Tw * n)
    group = np.concatenate([ti, tl * n + src_of, ti])
    share = np.concatenate([plan.keep[t0:t1].ravel() * D.ravel(), plan.offload[tt, ee] * D[tl, src_of],
                            plan.discard[t0:t1].ravel() * D.ravel()])
    kind = np.concatenate([np.zeros(Tw * n, np.int64), np.ones(n_off, np.int64), np.full(Tw * n, 2, np.int64)])
    within = np.concatenate([np.zeros(Tw * n, np.int64), ee.astype(np.int64), np.zeros(Tw * n, np.int64)])
    priority = kind * (E + 1) + within
    del kind, within
    counts = largest_remainder(share, group, D.ravel(), priority)
    del share
    off = counts[Tw * n:Tw * n + n_off]
    sent = np.minimum(off, whole_points(scenario.link_cap[tt, ee]))
    disc = counts[Tw * n + n_off:] + np.bincount(tl * n + src_of, weights=off - sent,
                                                  minlength=Tw * n).astype(np.int64)
    return PointSplit(t=tt, edge=ee, group=group, priority=priority, counts=counts, sent=sent,
                      kept=counts[:Tw * n].reshape(Tw, n), discarded=disc.reshape(Tw, n))


def point_counts(scenario: Scenario, plan: Plan) -> PointCounts:
    """The whole plan in points, as the trainer executes it: :func:`split_points` over the horizon
    (keep, offload, discard; link capacities), offloads received at ``t + 1``, and a device
    processing at most :func:`whole_points` of ``C_i(t)`` of what it kept plus what it received
    (the excess is ``dropped``).
    """
    T, n = scenario.horizon, scenario.n_devices
    sp = split_points(scenario, plan, 0, T)
    tt, ee, sent = sp.t, sp.edge, sp.sent
    src_of = scenario.src[ee]
    kept, disc = sp.kept, sp.discarded
    by_device = np.bincount(tt * n + src_of, weights=sent, minlength=T * n).astype(np.int64).reshape(T, n)
    inside = tt + 1 < T
    received = np.bincount((tt[inside] + 1) * n + scenario.dst[ee[inside]], weights=sent[inside],
                           minlength=T * n).astype(np.int64).reshape(T, n)
    arriving = kept + received
    processed = np.minimum(arriving, whole_points(scenario.proc_cap))
    return PointCounts(kept=kept, offloaded=(tt, ee, sent), offloaded_by_device=by_device,
                       discarded=disc, received=received, dropped=arriving - processed,
                       processed=processed)
