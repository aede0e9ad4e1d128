"""Label-aware planning: problem (5)-(9) plus a charge for every device's label skew (linear error).

Under non-IID data (:mod:`foglearn.learning.partition`) a device that trains on one or two labels
drags the aggregated model (eq. 4) towards them. The paper's plan is label-blind: it moves data only
to process it cheaply. This planner also values moving data towards balanced label mixes (in the
spirit of FlocOff, which picks offloads that shrink the divergence of the local label
distributions), and stays an exact, certified linear program.

Inputs. ``labels[T, n, K]``: ``D_i^c(t)``, the points of class ``c`` device ``i`` collects at
``t`` (``Σ_c D_i^c(t) = D_i(t)``; :func:`foglearn.learning.partition.class_arrivals` gives them
for a run's partition, from the same label stream the trainer draws). ``p_i^c(t) = D_i^c(t) /
D_i(t)`` is source ``(i, t)``'s mix. The target mix ``m`` (default: the mix of everything collected
over the horizon, ``m^c = Σ_{i,t} D_i^c(t) / Σ_{i,t} D_i(t)``, which the network can reach by
pooling) and the weight ``λ ≥ 0``.

What moves. A plan is the paper's fractions ``s_ii(t)``, ``s_ij(t)``, ``r_i(t)`` of ``D_i(t)``: a
device does not pick which labels it sends (the trainer sends the points of a slot in stream
order, where the labels are shuffled), so a flow of ``x`` points out of source ``(i, t)`` carries
``x p_i^c(t)`` points of class ``c`` (in expectation; exactly what the planner counts). Device
``j`` then processes at ``t``

    ``G_j^c(t) = p_j^c(t) s_jj(t) D_j(t) + Σ_i p_i^c(t-1) s_ij(t-1) D_i(t-1)``   (eq. (6) per class)

The problem. Minimise objective (5) with the linear error term plus

    ``λ · Σ_{j,t} B_j(t)``,   ``B_j(t) = Σ_c (G_j^c(t) − m^c G_j(t))^+ = G_j(t) · TV(mix_j(t), m)``,

subject to (6)-(9) and, by default (``same_budget``), the **same training budget** as the
label-blind plan: ``Σ_{j,t} G_j(t) ≥ P*``, the points the linear problem's optimum processes. Without
it the penalty also buys balance by discarding a skewed device's surplus (at MNIST, n = 10,
α = 0.1, λ = 1 it discarded 26 % of the points against 8 % for the label-blind plan), which trades
training data for balance; with it only *where* points are processed changes, so the two plans are
compared at an equal sample budget. ``B_j(t)`` is the number of points in device ``j``'s batch above their class's
balanced share — how many of its points would have to change label for its batch to have the
target mix (``G`` times the total-variation distance). ``λ`` is the price of one such point in the
units of ``c_i(t)`` and ``f_i(t)``: moving a point from a skewed device to one where it fills a
deficit saves up to ``λ``, so a plan pays at most ``λ`` per point in processing or transfer to
balance. ``λ = 0`` is the label-blind linear problem. Default :data:`DEFAULT_LAMBDA` ``= 1``, the
range of the synthetic ``c_i(t)`` (docs/model.md §4): balance is worth at most one full spread of
processing cost per point, so it can override the cost ranking among devices but pays for no
transfer dearer than that (docs/noniid.md gives the measured effect of λ on cost and imbalance).

As a linear program (points, not fractions; discard folded into the costs as in
:func:`foglearn.planning.reference.lp_matrices`): columns ``x_a`` for keep ``(i, t) → (i, t)``
(cost ``c_i(t) − f_i(t)``) and offload ``(i, t) → (j, t+1)`` on link ``e`` (cost ``c_ij(t) +
c_j(t+1) − f_i(t)``, ``x_a ≤ C_ij(t)``), and ``z_k^c ≥ 0`` (cost ``λ``) per sink ``k = (j, t)``
and class:

    ``Σ_{a out of s} x_a ≤ D_s``  (supply, eq. 8),   ``Σ_{a into k} x_a ≤ C_k``  (eq. 9),
    ``Σ_{a into k} (p_{src(a)}^c − m^c) x_a − z_k^c ≤ 0``  (``z_k^c ≥ (G_k^c − m^c G_k)^+``),
    ``Σ_a x_a ≥ P*``  (same budget; ``P* = 0`` without it).

Algorithm: exact column generation with HiGHS (``highspy``, simplex; the master stays live in
HiGHS, so each round adds its columns and rows and warm-starts from the last basis).

1. The restricted master holds every keep column and the offload columns generated so far. A sink
   that receives no offload column processes only its own points, so its ``B`` is linear,
   ``λ TV(p_k, m) x_keep``: it is *folded* into the keep cost and needs no ``z`` rows.
2. HiGHS solves the master; its duals ``y_s ≤ 0`` (supply), ``w_k ≤ 0`` (capacity), ``ρ ≥ 0``
   (budget) and ``μ_k^c ∈ [0, λ]`` (class rows; at a folded sink the subgradient
   ``μ_k^c = λ·[p_k^c > m^c]``) price **every** usable offload column in one compiled pass over
   ``[T, E]``: ``rc_a = cost_a − y_s − w_k − ρ + Σ_c μ_k^c (p_s^c − m^c)``.
3. Each source adds its most negative column (a folded sink that receives one is unfolded); stop
   when none is below ``−ε``.
4. **Certificate.** For any such multipliers the Lagrangian bound
   ``Σ_s f_s D_s + Σ_s y_s D_s + Σ_k w_k C_k + ρ P* + Σ_{every column} min(0, rc_a) u_a``
   (``u_a`` its upper bound) is a lower bound on the optimum; ``gap`` = primal (recomputed from the
   flows, ``B`` exactly) − bound. A relative gap above :data:`GAP_TOL` after the last round raises
   :class:`~foglearn.errors.SolverError`: an uncertified plan is never returned. :data:`GAP_TOL` is
   HiGHS's own dual-feasibility tolerance (``1e-7``), looser than the min-cost flow's ``1e-9``
   because the duals come from a floating-point simplex.

Size: the master has one row per source with data, the capacity rows and ``K`` rows per unfolded
sink; pricing is ``O(T·E·K)`` per round without ``[T, E]`` temporaries.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from numba import njit

from foglearn.errors import InputError, SolverError
from foglearn.network.scenario import Scenario
from foglearn.planning.plan import Plan, PlanError, SolverStats

__all__ = ["DEFAULT_LAMBDA", "GAP_TOL", "check_labels", "imbalance", "plan_label_aware"]

#: ``λ``: the price of one point above its class's balanced share (see the module docstring).
DEFAULT_LAMBDA = 1.0
#: Relative duality gap the certificate must reach (HiGHS's dual-feasibility tolerance).
GAP_TOL = 1e-7
#: A column enters the master when its reduced cost is below ``-RC_TOL``.
RC_TOL = 1e-9
#: Relative slack on the same-budget row, so float round-off cannot make it infeasible.
BUDGET_SLACK = 1e-9
#: Column-generation rounds before giving up (each round adds ≥ 1 column per improving source).
MAX_ROUNDS = 500


def check_labels(scenario: Scenario, labels: Any) -> np.ndarray:
    """``labels`` as float ``[T, n, K]`` counts; an :class:`InputError` names the broken rule."""
    T, n = scenario.horizon, scenario.n_devices
    arr = np.asarray(labels)
    if arr.ndim != 3 or arr.shape[:2] != (T, n) or arr.shape[2] < 1:
        raise PlanError(f"labels: must have shape [T, n, K] = [{T}, {n}, K ≥ 1], got {list(arr.shape)}")
    if not np.issubdtype(arr.dtype, np.number) or not np.isfinite(arr).all() or (arr < 0).any():
        raise PlanError("labels: the per-class counts D_i^c(t) must be finite numbers ≥ 0")
    arr = arr.astype(np.float64)
    total = arr.sum(2)
    bad = np.abs(total - scenario.collected) > 1e-6 * np.maximum(1.0, scenario.collected)
    if bad.any():
        t, i = (int(k) for k in np.argwhere(bad)[0])
        raise PlanError(f"labels[{t}, {i}, :] sums to {total[t, i]:g}, but collected[{t}, {i}] = "
                        f"{scenario.collected[t, i]}: Σ_c D_i^c(t) must equal D_i(t)")
    return arr


def _target(labels: np.ndarray, target: Any) -> np.ndarray:
    K = labels.shape[2]
    if target is None:
        tot = labels.sum((0, 1))
        return tot / max(tot.sum(), 1.0)
    m = np.asarray(target, dtype=np.float64)
    if m.shape != (K,) or not np.isfinite(m).all() or (m < 0).any() or abs(m.sum() - 1.0) > 1e-9:
        raise PlanError(f"target: must be {K} shares ≥ 0 summing to 1 (the target label mix m)")
    return m


def _mixes(labels: np.ndarray, m: np.ndarray) -> np.ndarray:
    """``p_s^c − m^c`` per source ``s = t·n + i`` ``[T·n, K]`` (0 rows where ``D = 0``)."""
    T, n, K = labels.shape
    D = labels.sum(2, keepdims=True)
    p = np.divide(labels, D, out=np.zeros_like(labels), where=D > 0)
    return np.where(D > 0, p - m, 0.0).reshape(T * n, K)


@njit(cache=True, nogil=True)
def _price(src, dst, usable, link_cost, link_cap, c, f, D, y, w, mu, rho, dev, have, tol):  # pragma: no cover - numba
    """Price every usable offload column (module docstring, step 2).

    Returns ``(best_rc[T·n], best_edge[T·n], lagrange)``: each source's most negative reduced cost
    among the columns not yet in the master (``have``: sorted keys ``t·E + e`` of those that are)
    and its edge (-1 if none below ``-tol``), and ``Σ min(0, rc) u`` over all columns.
    """
    T, E = usable.shape
    n = D.size // T
    K = dev.shape[1]
    best = np.zeros(T * n)
    edge = np.full(T * n, -1, dtype=np.int64)
    lag = 0.0
    for t in range(T - 1):
        for e in range(E):
            if not usable[t, e] or link_cap[t, e] <= 0.0:
                continue
            s = t * n + src[e]
            if D[s] <= 0.0:
                continue
            k = (t + 1) * n + dst[e]
            rc = link_cost[t, e] + c[k] - f[s] - y[s] - w[k] - rho
            for q in range(K):
                rc += mu[k, q] * dev[s, q]
            if rc < 0.0:
                lag += rc * min(link_cap[t, e], D[s])
                if rc < best[s] and rc < -tol:
                    key = t * E + e
                    h = np.searchsorted(have, key)
                    if h == have.size or have[h] != key:
                        best[s] = rc
                        edge[s] = e
    return best, edge, lag


def imbalance(scenario: Scenario, plan: Plan, labels: Any, target: Any = None) -> dict[str, float]:
    """``Σ_{j,t} B_j(t)`` of ``plan`` (module docstring) and its share of the points processed.

    ``points``: processed points above their class's balanced share; ``share``: that over
    ``Σ G_j(t)`` — the processed-weighted mean total-variation distance between a device's batch
    and the target mix (0: every batch has the target mix; near 1: every batch is one label).
    """
    lab = check_labels(scenario, labels)
    m = _target(lab, target)
    T, n, K = lab.shape
    Gc = plan.keep[:, :, None] * lab
    if scenario.n_edges and T > 1:
        tt, ee = np.nonzero(plan.offload[:-1] > 0)
        amount = plan.offload[tt, ee, None] * lab[tt, scenario.src[ee]]
        np.add.at(Gc, (tt + 1, scenario.dst[ee]), amount)
    G = Gc.sum(2, keepdims=True)
    points = float(np.maximum(Gc - m * G, 0.0).sum())
    total = float(G.sum())
    return {"points": points, "share": points / total if total > 0 else 0.0}


def _quiet(make: Callable[[], Any]) -> Any:
    """``make()`` with file descriptor 1 sent to /dev/null: HiGHS's C++ constructor prints a banner
    to the process's stdout (once per process) before any option can turn it off."""
    sys.stdout.flush()
    saved = os.dup(1)
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 1)
        return make()
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        os.close(null)


class _Master:
    """The restricted master LP of the module docstring, kept live in HiGHS: columns and class rows
    are added to the model and each solve warm-starts from the previous basis."""

    def __init__(self, scenario: Scenario, dev: np.ndarray, lam: float, budget: float):
        import highspy

        T, n = scenario.horizon, scenario.n_devices
        self.T, self.n, self.K = T, n, dev.shape[1]
        self.lam = lam
        self.D = scenario.collected.astype(np.float64).ravel()
        self.c = scenario.proc_cost.astype(np.float64).ravel()
        self.f = scenario.error_weight.astype(np.float64).ravel()
        self.cap = scenario.effective_proc_cap().astype(np.float64).ravel()
        self.dev = dev
        self.tv = np.maximum(dev, 0.0).sum(1)  # TV(p_s, m) of each source
        self.src, self.dst = scenario.src, scenario.dst
        self.link_cost = np.asarray(scenario.link_cost, dtype=np.float64)
        self.link_cap = np.asarray(scenario.link_cap, dtype=np.float64)
        N = T * n
        self.sources = np.nonzero((self.D > 0) & scenario.active.ravel() & (self.cap > 0))[0]
        self.all_sources = np.nonzero(self.D > 0)[0]
        self.capped = np.nonzero(np.isfinite(self.cap))[0]
        # rows: supply per source with data | capacity per finite-capacity sink | budget | class rows
        self.s_row = np.full(N, -1, np.int64)
        self.s_row[self.all_sources] = np.arange(self.all_sources.size)
        self.k_row = np.full(N, -1, np.int64)
        self.k_row[self.capped] = self.all_sources.size + np.arange(self.capped.size)
        self.budget_row = self.all_sources.size + self.capped.size
        self.u_row = np.full(N, -1, np.int64)  # first class row of an unfolded sink
        self.n_rows = self.budget_row + 1
        self.n_cols = 0
        self.off_t = np.zeros(0, np.int64)
        self.off_e = np.zeros(0, np.int64)
        self.unfolded = np.zeros(N, dtype=bool)
        self.flow_col = np.zeros(0, np.int64)  # HiGHS column of each flow (keep, then offloads)
        self.flow_src = np.zeros(0, np.int64)
        self.flow_sink = np.zeros(0, np.int64)
        self.flow_cost = np.zeros(0)  # without the folded penalty
        self.flow_ub = np.zeros(0)
        h = _quiet(highspy.Highs)
        h.setOptionValue("output_flag", False)
        h.setOptionValue("solver", "simplex")
        lower = np.concatenate([np.full(self.budget_row, -np.inf), [budget]])
        upper = np.concatenate([self.D[self.all_sources], self.cap[self.capped], [np.inf]])
        h.addRows(self.n_rows, lower, upper, 0, np.zeros(self.n_rows, np.int32), np.zeros(0, np.int32),
                  np.zeros(0))
        self.h = h
        ks = self.sources
        self.keep_col = np.full(N, -1, np.int64)
        self.keep_col[ks] = np.arange(ks.size)
        self._add_flows(ks, ks, self.c[ks] - self.f[ks], self.D[ks], self.lam * self.tv[ks])

    def _add_cols(self, cost: np.ndarray, ub: np.ndarray, cols: list[tuple[np.ndarray, np.ndarray]]) -> None:
        """Add columns: ``cols[j]`` = (row indices, values) of column ``j``."""
        starts = np.cumsum([0] + [r.size for r, _ in cols[:-1]]).astype(np.int32)
        idx = np.concatenate([r for r, _ in cols]).astype(np.int32) if cols else np.zeros(0, np.int32)
        val = np.concatenate([v for _, v in cols]) if cols else np.zeros(0)
        self.h.addCols(len(cols), cost, np.zeros(len(cols)), ub, idx.size, starts, idx, val)
        self.n_cols += len(cols)

    def _rows_of(self, s: int, k: int) -> tuple[np.ndarray, np.ndarray]:
        rows = [self.s_row[s], self.budget_row]
        vals = [1.0, 1.0]
        if self.k_row[k] >= 0:
            rows.append(self.k_row[k])
            vals.append(1.0)
        r = np.array(rows, np.int64)
        v = np.array(vals)
        if self.unfolded[k]:
            r = np.concatenate([r, self.u_row[k] + np.arange(self.K)])
            v = np.concatenate([v, self.dev[s]])
        return r, v

    def _add_flows(self, s: np.ndarray, k: np.ndarray, cost: np.ndarray, ub: np.ndarray,
                   folded: np.ndarray) -> None:
        first = self.n_cols
        self._add_cols(cost + folded, ub, [self._rows_of(int(a), int(b)) for a, b in zip(s, k, strict=True)])
        self.flow_col = np.concatenate([self.flow_col, first + np.arange(s.size)])
        self.flow_src = np.concatenate([self.flow_src, s])
        self.flow_sink = np.concatenate([self.flow_sink, k])
        self.flow_cost = np.concatenate([self.flow_cost, cost])
        self.flow_ub = np.concatenate([self.flow_ub, ub])

    def _unfold(self, k: int) -> None:
        K = self.K
        self.u_row[k] = self.n_rows
        kc = self.keep_col[k]
        lower, upper = np.full(K, -np.inf), np.zeros(K)
        if kc >= 0:  # the keep column enters the class rows; its cost loses the folded penalty
            self.h.addRows(K, lower, upper, K, np.arange(K, dtype=np.int32), np.full(K, kc, np.int32),
                           self.dev[k].copy())
            self.h.changeColCost(int(kc), float(self.c[k] - self.f[k]))
        else:
            self.h.addRows(K, lower, upper, 0, np.zeros(K, np.int32), np.zeros(0, np.int32), np.zeros(0))
        self.n_rows += K
        self.unfolded[k] = True
        self._add_cols(np.full(K, self.lam), np.full(K, np.inf),
                       [(np.array([self.u_row[k] + q]), np.array([-1.0])) for q in range(K)])

    def add(self, s: np.ndarray, e: np.ndarray) -> None:
        t = s // self.n
        k = (t + 1) * self.n + self.dst[e]
        for sink in np.unique(k[~self.unfolded[k]]).tolist():
            self._unfold(int(sink))
        self.off_t = np.concatenate([self.off_t, t])
        self.off_e = np.concatenate([self.off_e, e])
        cost = self.link_cost[t, e] + self.c[k] - self.f[s]
        self._add_flows(s, k, cost, np.minimum(self.link_cap[t, e], self.D[s]), np.zeros(s.size))

    def solve(self) -> dict[str, Any]:
        import highspy

        self.h.run()
        if self.h.getModelStatus() != highspy.HighsModelStatus.kOptimal:
            raise SolverError(f"solver = 'label-aware': HiGHS did not solve the master LP: "
                              f"{self.h.modelStatusToString(self.h.getModelStatus())}")
        sol = self.h.getSolution()
        col = np.asarray(sol.col_value)
        dual = np.asarray(sol.row_dual)
        N = self.T * self.n
        y = np.zeros(N)
        y[self.all_sources] = np.minimum(dual[:self.all_sources.size], 0.0)
        w = np.zeros(N)
        w[self.capped] = np.minimum(dual[self.all_sources.size:self.budget_row], 0.0)
        # μ: duals of the class rows at unfolded sinks, the subgradient λ·[p > m] at folded ones
        mu = np.where(self.dev > 0, self.lam, 0.0)
        unf = np.nonzero(self.unfolded)[0]
        if unf.size:
            rows = self.u_row[unf][:, None] + np.arange(self.K)
            mu[unf] = np.clip(-dual[rows], 0.0, self.lam)
        return {"x": col[self.flow_col], "a_src": self.flow_src, "a_sink": self.flow_sink,
                "cost": self.flow_cost, "y": y, "w": w, "mu": mu, "rho": max(float(dual[self.budget_row]), 0.0),
                "capped": self.capped}


def _primal(mst: _Master, sol: dict[str, Any]) -> tuple[float, float]:
    """Objective of the master's flows and ``Σ B``, recomputed exactly (module docstring)."""
    x, a_src, a_sink, raw = sol["x"], sol["a_src"], sol["a_sink"], sol["cost"]
    N = mst.T * mst.n
    dev_in = np.zeros((N, mst.K))
    np.add.at(dev_in, a_sink, x[:, None] * mst.dev[a_src])
    B = float(np.maximum(dev_in, 0.0).sum())
    return float(raw @ x + mst.f @ mst.D) + mst.lam * B, B


def plan_label_aware(scenario: Scenario, labels: Any, lam: float = DEFAULT_LAMBDA, target: Any = None,
                     same_budget: bool = True, check: bool = True) -> Plan:
    """The exact label-aware plan (linear error, capacities honoured; see the module docstring).

    ``labels``: ``D_i^c(t)`` ``[T, n, K]``; ``lam``: ``λ ≥ 0``; ``target``: the target mix ``m``
    (default: the horizon's pooled mix); ``same_budget``: process at least as many points as the
    label-blind optimum (module docstring). ``stats.objective`` includes ``λ Σ B``; ``costs`` are the
    paper's realised costs (5) without it; ``stats.extra["imbalance"]`` is ``Σ B``. Raises
    :class:`~foglearn.errors.SolverError` when the bound does not certify the plan to
    :data:`GAP_TOL`.
    """
    if isinstance(lam, bool) or not isinstance(lam, int | float | np.floating) or not np.isfinite(lam) or lam < 0:
        raise PlanError(f"lam = {lam!r}: λ must be a finite number ≥ 0")
    t0 = time.perf_counter()
    lab = check_labels(scenario, labels)
    m = _target(lab, target)
    dev = _mixes(lab, m)
    budget = 0.0
    if same_budget:
        from foglearn.planning.solve import plan

        budget = float(plan(scenario).processed.sum()) * (1.0 - BUDGET_SLACK)  # the label-blind optimum
    mst = _Master(scenario, dev, float(lam), budget)
    T, n, E = scenario.horizon, scenario.n_devices, scenario.n_edges
    usable = scenario.usable_links() if E else np.zeros((T, 0), dtype=bool)
    solve_s = price_s = 0.0
    rounds = 0
    while rounds < MAX_ROUNDS:
        rounds += 1
        t1 = time.perf_counter()
        sol = mst.solve()
        t2 = time.perf_counter()
        have = np.sort(mst.off_t * E + mst.off_e)
        best, edge, lag = _price(mst.src, mst.dst, usable, mst.link_cost, mst.link_cap, mst.c, mst.f, mst.D,
                                 sol["y"], sol["w"], sol["mu"], sol["rho"], dev, have, RC_TOL)
        price_s += time.perf_counter() - t2
        solve_s += t2 - t1
        # the Lagrangian bound over every column (keep columns are all in the master)
        ks = mst.sources
        keep_rc = (mst.c[ks] - mst.f[ks] - sol["y"][ks] - sol["w"][ks] - sol["rho"]
                   + (sol["mu"][ks] * dev[ks]).sum(1))
        bound = (float(mst.f @ mst.D + sol["y"] @ mst.D + sol["w"][sol["capped"]] @ mst.cap[sol["capped"]])
                 + sol["rho"] * budget + float(np.minimum(keep_rc, 0.0) @ mst.D[ks]) + float(lag))
        primal, imb = _primal(mst, sol)
        gap = max(primal - bound, 0.0)
        new = np.nonzero(edge >= 0)[0]
        if new.size == 0:
            break
        mst.add(new, edge[new])
    rel = gap / max(abs(primal), 1.0)
    if not rel <= GAP_TOL:
        raise SolverError(f"solver = 'label-aware': duality gap {gap:.3g} (relative {rel:.3g} > {GAP_TOL:g}) "
                          f"after {rounds} rounds of column generation; the solve failed to certify optimality")
    x, a_src = sol["x"], sol["a_src"]
    D = mst.D
    keep = np.zeros(T * n)
    n_keep = mst.sources.size
    keep[mst.sources] = x[:n_keep] / D[mst.sources]
    offload = np.zeros((T, E))
    xo = x[n_keep:]
    np.add.at(offload, (mst.off_t, mst.off_e), xo / D[a_src[n_keep:]])
    np.minimum(keep, 1.0, out=keep)
    extra: dict[str, Any] = {
        "lambda": float(lam), "min_processed": budget, "rounds": rounds, "columns": int(a_src.size),
        "unfolded_sinks": int(mst.unfolded.sum()),
        "imbalance": imb, "dual_bound": bound,
        "master_seconds": solve_s, "pricing_seconds": price_s, "target": m.tolist()}
    stats = SolverStats("label-aware", "optimal", time.perf_counter() - t0, primal, gap, extra)
    try:
        return Plan.from_fractions(scenario, keep.reshape(T, n), offload, error="linear", stats=stats,
                                   check=check)
    except InputError as exc:
        raise SolverError(f"solver = 'label-aware': the LP's flows are not a feasible plan ({exc})") from exc
