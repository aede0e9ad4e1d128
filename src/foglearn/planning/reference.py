"""Reference solvers for problem (5)-(9) by generic modelling (tests and benchmarks only).

* :func:`reference_linear` — the linear-error LP with HiGHS (``scipy.optimize.linprog``).
* :func:`reference_sqrt` — the square-root model with CVXPY + Clarabel: ``f/sqrt(G)`` is
  modelled exactly as ``f · power(G, -1/2)`` (a power cone), so ``G > 0`` is enforced by the cone.

They build the full (unpruned) model over every usable link; they are the yardstick for
correctness, not the production path (docs/model.md §2).
"""

from __future__ import annotations

import time

import numpy as np
import scipy.sparse as sp

from foglearn.errors import SolverError
from foglearn.network.scenario import Scenario
from foglearn.planning.plan import Plan, SolverStats

__all__ = ["reference_linear", "reference_sqrt", "lp_matrices"]


def _flat_network(scenario: Scenario):
    """Flattened ``(t, i)`` data and the usable arcs: ``(D, c, f, C, t_idx, e_idx, a_src, a_sink)``.

    Arc ``a`` is link ``e_idx[a]`` in slot ``t_idx[a]``, from source ``a_src[a] = t·n + i`` to the
    processing sink ``a_sink[a] = (t+1)·n + j``; only usable links of sources with data.
    """
    T, n = scenario.horizon, scenario.n_devices
    usable = scenario.usable_links() if scenario.n_edges else np.zeros((T, 0), bool)
    t_idx, e_idx = np.nonzero(usable & (scenario.collected[:, scenario.src] > 0))
    return (scenario.collected.astype(np.float64).ravel(), scenario.proc_cost.ravel(),
            scenario.error_weight.ravel(), scenario.effective_proc_cap().ravel(), t_idx, e_idx,
            t_idx * n + scenario.src[e_idx], (t_idx + 1) * n + scenario.dst[e_idx])


def lp_matrices(scenario: Scenario):
    """Variables ``[keep-points (T·n), sent-points per usable arc (A)]`` (points, not fractions).

    Returns ``(cost, A_ub, b_ub, ub, const, arcs)`` for ``min cost·x + const``: the linear model's
    discard term ``Σ f (D − kept − sent)`` is folded into the cost and the constant.
    """
    T, n = scenario.horizon, scenario.n_devices
    D, c, f, cap, t_idx, e_idx, a_src, a_sink = _flat_network(scenario)
    A = t_idx.size
    N = T * n
    cost = np.concatenate([c - f, scenario.link_cost[t_idx, e_idx] + c[a_sink] - f[a_src]])
    ub = np.concatenate([np.where(D > 0, D, 0.0), scenario.link_cap[t_idx, e_idx]])
    rows_src = np.concatenate([np.arange(N), a_src])
    rows_sink = np.concatenate([np.arange(N), a_sink])
    cols = np.arange(N + A)
    ones = np.ones(N + A)
    A_src = sp.csr_matrix((ones, (rows_src, cols)), shape=(N, N + A))
    A_sink = sp.csr_matrix((ones, (rows_sink, cols)), shape=(N, N + A))
    A_ub = sp.vstack([A_src, A_sink]).tocsr()
    b_ub = np.concatenate([D, np.where(np.isfinite(cap), cap, 1e30)])
    const = float((f * D).sum())
    return cost, A_ub, b_ub, ub, const, (t_idx, e_idx, a_src)


def _fractions(scenario: Scenario, xk: np.ndarray, xa: np.ndarray, arcs) -> tuple[np.ndarray, np.ndarray]:
    T, n = scenario.horizon, scenario.n_devices
    D = scenario.collected.astype(np.float64).ravel()
    t_idx, e_idx, a_src = arcs
    keep = np.where(D > 0, xk / np.where(D > 0, D, 1.0), 0.0)
    frac = xa / D[a_src]
    # interior-point round-off can leave keep + Σ offload a hair above 1: scale that source back to 1
    total = keep + np.bincount(a_src, weights=frac, minlength=T * n)
    scale = np.where(total > 1.0, 1.0 / np.where(total > 1.0, total, 1.0), 1.0)
    offload = np.zeros((T, scenario.n_edges))
    offload[t_idx, e_idx] = frac * scale[a_src]
    return np.clip(keep * scale, 0, 1).reshape(T, n), np.clip(offload, 0, 1)


def reference_linear(scenario: Scenario) -> Plan:
    """The linear-error LP solved by HiGHS through ``scipy.optimize.linprog``."""
    from scipy.optimize import linprog

    t0 = time.perf_counter()
    cost, A_ub, b_ub, ub, const, arcs = lp_matrices(scenario)
    ub = np.where(np.isfinite(ub), ub, None)
    res = linprog(cost, A_ub=A_ub, b_ub=b_ub, bounds=list(zip([0.0] * cost.size, ub)), method="highs")
    if res.status != 0:
        raise SolverError(f"reference_linear: HiGHS failed: {res.message}")
    N = scenario.horizon * scenario.n_devices
    keep, offload = _fractions(scenario, res.x[:N], res.x[N:], arcs)
    stats = SolverStats("highs-lp", "optimal", time.perf_counter() - t0, float(res.fun + const))
    return Plan.from_fractions(scenario, keep, offload, error="linear", stats=stats, check=False)


def reference_sqrt(scenario: Scenario, solver: str = "CLARABEL", **solver_opts) -> Plan:
    """The square-root model ``Σ c G + Σ c_ij D s_ij + Σ_{D>0} f/sqrt(G)`` with CVXPY."""
    import cvxpy as cp

    t0 = time.perf_counter()
    T, n = scenario.horizon, scenario.n_devices
    N = T * n
    D, c, f, cap, t_idx, e_idx, a_src, a_sink = _flat_network(scenario)
    A = t_idx.size
    xk = cp.Variable(N, nonneg=True)
    xa = cp.Variable(A, nonneg=True) if A else None
    ones = np.ones(A)
    out = sp.csr_matrix((ones, (a_src, np.arange(A))), shape=(N, A))
    inn = sp.csr_matrix((ones, (a_sink, np.arange(A))), shape=(N, A))
    G = xk + inn @ xa if A else xk
    cons = [xk <= D, (xk + out @ xa <= D) if A else xk <= D]
    fin = np.isfinite(cap)
    if fin.any():
        cons.append(G[np.flatnonzero(fin)] <= cap[fin])
    if xa is not None:
        lc = scenario.link_cap[t_idx, e_idx]
        lf = np.isfinite(lc)
        if lf.any():
            cons.append(xa[np.flatnonzero(lf)] <= lc[lf])
    err = np.flatnonzero((D > 0) & (f > 0))
    obj = c @ G + f[err] @ cp.power(G[err], -0.5)
    if A:
        obj = obj + scenario.link_cost[t_idx, e_idx] @ xa
    prob = cp.Problem(cp.Minimize(obj), cons)
    try:
        prob.solve(solver=solver, **solver_opts)
    except cp.error.SolverError as exc:
        raise SolverError(f"reference_sqrt: {solver} failed: {exc}") from exc
    if prob.status not in ("optimal", "optimal_inaccurate"):
        raise SolverError(f"reference_sqrt: {solver} status {prob.status}")
    xk_value = xk.value
    xa_value = xa.value if xa is not None else np.zeros(0)
    if xk_value is None or xa_value is None:
        raise SolverError(f"reference_sqrt: {solver} returned no solution values")
    keep, offload = _fractions(scenario, np.maximum(xk_value, 0), np.maximum(xa_value, 0),
                               (t_idx, e_idx, a_src))
    stats = SolverStats(f"cvxpy-{solver.lower()}", prob.status, time.perf_counter() - t0, float(prob.value))
    return Plan.from_fractions(scenario, keep, offload, error="sqrt", stats=stats, check=False)
