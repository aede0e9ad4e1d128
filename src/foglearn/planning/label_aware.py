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

Algorithm: exact column generation with HiGHS (``scipy.optimize.linprog``, dual simplex).

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

import time
from typing import Any

import numpy as np
import scipy.sparse as sp
from numba import njit
from scipy.optimize import linprog

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


class _Master:
    """The restricted master LP of the module docstring (columns grow, folded sinks unfold)."""

    def __init__(self, scenario: Scenario, dev: np.ndarray, lam: float, budget: float):
        T, n = scenario.horizon, scenario.n_devices
        self.T, self.n, self.K = T, n, dev.shape[1]
        self.lam = lam
        self.budget = budget
        self.D = scenario.collected.astype(np.float64).ravel()
        self.c = scenario.proc_cost.astype(np.float64).ravel()
        self.f = scenario.error_weight.astype(np.float64).ravel()
        self.cap = scenario.effective_proc_cap().astype(np.float64).ravel()
        self.dev = dev
        self.tv = np.maximum(dev, 0.0).sum(1)  # TV(p_s, m) of each source
        self.src, self.dst = scenario.src, scenario.dst
        self.link_cost = np.asarray(scenario.link_cost, dtype=np.float64)
        self.link_cap = np.asarray(scenario.link_cap, dtype=np.float64)
        self.sources = np.nonzero((self.D > 0) & scenario.active.ravel() & (self.cap > 0))[0]
        self.all_sources = np.nonzero(self.D > 0)[0]
        # offload columns: (t, e), their source and sink
        self.off_t = np.zeros(0, np.int64)
        self.off_e = np.zeros(0, np.int64)
        self.unfolded = np.zeros(T * n, dtype=bool)

    def add(self, s: np.ndarray, e: np.ndarray) -> None:
        t = s // self.n
        self.off_t = np.concatenate([self.off_t, t])
        self.off_e = np.concatenate([self.off_e, e])
        self.unfolded[(t + 1) * self.n + self.dst[e]] = True

    def columns(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Per column: source, sink, cost (discard folded in), upper bound."""
        ks = self.sources
        o_s = self.off_t * self.n + self.src[self.off_e]
        o_k = (self.off_t + 1) * self.n + self.dst[self.off_e]
        keep_cost = self.c[ks] - self.f[ks] + np.where(self.unfolded[ks], 0.0, self.lam * self.tv[ks])
        off_cost = self.link_cost[self.off_t, self.off_e] + self.c[o_k] - self.f[o_s]
        ub = np.concatenate([self.D[ks], np.minimum(self.link_cap[self.off_t, self.off_e], self.D[o_s])])
        return (np.concatenate([ks, o_s]), np.concatenate([ks, o_k]), np.concatenate([keep_cost, off_cost]), ub)

    def solve(self) -> dict[str, Any]:
        a_src, a_sink, cost, ub = self.columns()
        A = a_src.size
        N = self.T * self.n
        K = self.K
        # rows: supply per source with data | capacity per finite-capacity sink that has columns | classes
        srcs = self.all_sources
        s_row = np.full(N, -1, np.int64)
        s_row[srcs] = np.arange(srcs.size)
        sinks = np.unique(a_sink)
        capped = sinks[np.isfinite(self.cap[sinks])]
        k_row = np.full(N, -1, np.int64)
        k_row[capped] = srcs.size + np.arange(capped.size)
        unf = np.nonzero(self.unfolded)[0]
        u_row = np.full(N, -1, np.int64)
        base = srcs.size + capped.size
        u_row[unf] = np.arange(unf.size)
        n_rows = base + unf.size * K + 1  # the last row: Σ x ≥ budget
        cols = np.arange(A)
        r1, c1, v1 = s_row[a_src], cols, np.ones(A)
        has_cap = k_row[a_sink] >= 0
        r2, c2, v2 = k_row[a_sink][has_cap], cols[has_cap], np.ones(int(has_cap.sum()))
        into_unf = u_row[a_sink] >= 0
        cu = cols[into_unf]
        r3 = (base + u_row[a_sink][into_unf][:, None] * K + np.arange(K)).ravel()
        c3 = np.repeat(cu, K)
        v3 = self.dev[a_src[into_unf]].ravel()
        Z = unf.size * K  # z columns after the flow columns
        r4 = base + np.arange(Z)
        c4 = A + np.arange(Z)
        v4 = -np.ones(Z)
        r5, c5, v5 = np.full(A, n_rows - 1), cols, -np.ones(A)
        A_ub = sp.csr_matrix((np.concatenate([v1, v2, v3, v4, v5]),
                              (np.concatenate([r1, r2, r3, r4, r5]), np.concatenate([c1, c2, c3, c4, c5]))),
                             shape=(n_rows, A + Z))
        b_ub = np.concatenate([self.D[srcs], self.cap[capped], np.zeros(Z), [-self.budget]])
        obj = np.concatenate([cost, np.full(Z, self.lam)])
        bounds = np.column_stack([np.zeros(A + Z), np.concatenate([ub, np.full(Z, np.inf)])])
        res = linprog(obj, A_ub=A_ub, b_ub=b_ub, bounds=bounds, method="highs-ds")
        if res.status != 0 or res.x is None:
            raise SolverError(f"solver = 'label-aware': HiGHS did not solve the master LP: {res.message}")
        marg = np.asarray(res.ineqlin.marginals)
        y = np.zeros(N)
        y[srcs] = np.minimum(marg[:srcs.size], 0.0)
        w = np.zeros(N)
        w[capped] = np.minimum(marg[srcs.size:base], 0.0)
        # μ: duals of the class rows at unfolded sinks, the subgradient λ·[p > m] at folded ones
        mu = np.where(self.dev > 0, self.lam, 0.0)
        mu[unf] = np.clip(-marg[base:n_rows - 1].reshape(unf.size, K), 0.0, self.lam)
        return {"x": res.x[:A], "a_src": a_src, "a_sink": a_sink, "cost": cost, "ub": ub,
                "y": y, "w": w, "mu": mu, "rho": max(-float(marg[-1]), 0.0), "capped": capped}


def _primal(mst: _Master, sol: dict[str, Any]) -> tuple[float, float]:
    """Objective of the master's flows and ``Σ B``, recomputed exactly (module docstring)."""
    x, a_src, a_sink = sol["x"], sol["a_src"], sol["a_sink"]
    ks = mst.sources
    raw = sol["cost"].copy()
    raw[:ks.size] = mst.c[ks] - mst.f[ks]  # the keep cost without the folded penalty
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
