"""Square-root error model (Lemma 1, Theorem 4): exact planning with a certificate.

Objective: ``Σ c_i(t) G_i(t) + Σ c_ij(t) D_i(t) s_ij(t) + Σ_{(i,t): D_i(t)>0} f_i(t)/sqrt(G_i(t))``
under (6)-(9). Discarding costs nothing directly. It is the min-cost-flow network of
:mod:`foglearn.planning.flow` with a separable convex cost ``φ_k(G) = c G + f/sqrt(G)`` on each
processing sink (only ``c G`` where ``D_k = 0`` or ``f_k = 0``).

Algorithm
---------
1. **Decoupled solve.** With every source's supply priced at 0 (discard is free), each sink
   solves a one-dimensional problem on its own: take the options (its own data at cost 0, then
   incoming links at ``c_ij``, each limited by ``min(C_ij, D_j)``) cheapest first while the
   marginal value ``v(G) = f/(2 G^{3/2}) − c`` exceeds the option's cost; the stopping point is
   ``G = (f / (2 (c + cost)))^{2/3}`` in closed form, capped by ``C_k``.
2. If no source is asked for more than it collected, this is optimal. The **certificate** is the
   Lagrangian dual bound ``g(p)`` at sink prices ``p_k`` (the marginal value at the solution):
   ``g(p) = Σ_k min_{0≤G≤C_k} [φ_k(G) + p_k G] + Σ_s min_{x} Σ_a (c_a − p_k) x_a``
   (a fractional knapsack per source); ``gap = primal − g(p)`` is reported.
3. Otherwise (some source is over-subscribed — supplies then carry a price) the whole convex
   program is solved by CVXPY + Clarabel (interior point, its own tolerances; ``gap`` = nan).
   This path is slow; a specialised coupled solver is future work.

The singularity ``1/sqrt(0)``: a sink with an error term always has ``G > 0`` at the optimum,
because ``v(G) → ∞`` as ``G → 0`` and its own data is a cost-0 option; step 1 never evaluates
``φ`` at 0, and the conic reference enforces ``G > 0`` through the power cone. A sink with an
error term but ``C = 0`` makes the objective infinite: that is an error.
"""

from __future__ import annotations

import time

import numpy as np
from numba import njit

from foglearn.network.scenario import Scenario
from foglearn.planning.plan import Plan, PlanError, SolverStats

__all__ = ["plan_sqrt", "sqrt_dual_bound"]


class _Net:
    def __init__(self, scenario: Scenario):
        T, n, E = scenario.horizon, scenario.n_devices, scenario.n_edges
        D = scenario.collected.astype(np.float64)
        cap = scenario.effective_proc_cap()
        self.D = D.ravel().copy()
        self.c = scenario.proc_cost.ravel().copy()
        self.f = scenario.error_weight.ravel().copy()
        self.cap = cap.ravel().astype(np.float64).copy()
        self.err = (self.D > 0) & (self.f > 0)
        bad = self.err & (self.cap <= 0)
        if bad.any():
            k = int(np.flatnonzero(bad)[0])
            raise PlanError(f"error = 'sqrt': device {k % n} collected {int(self.D[k])} points at slot {k // n} "
                            f"but proc_cap is 0, so f/sqrt(G) is infinite (SPEC §2)")
        if E and T > 1:
            usable = scenario.usable_links()[:-1]
            ok = usable & (scenario.collected[:-1, scenario.src] > 0) & (scenario.link_cap[:-1] > 0)
            sink_ok = self.err.reshape(T, n)[1:, scenario.dst]
            ok &= sink_ok
            t_idx, e_idx = np.nonzero(ok)
        else:
            t_idx = e_idx = np.zeros(0, np.int64)
        self.t_idx, self.e_idx = t_idx, e_idx
        self.a_src = (t_idx * n + scenario.src[e_idx]).astype(np.int64)
        self.a_sink = ((t_idx + 1) * n + scenario.dst[e_idx]).astype(np.int64)
        self.a_cost = scenario.link_cost[t_idx, e_idx].astype(np.float64)
        self.a_cap = np.minimum(scenario.link_cap[t_idx, e_idx], self.D[self.a_src]).astype(np.float64)
        N = T * n
        order = np.lexsort((self.a_cost, self.a_sink))
        self.sink_order = order
        self.sink_ptr = np.zeros(N + 1, np.int64)
        np.cumsum(np.bincount(self.a_sink, minlength=N), out=self.sink_ptr[1:])
        sorder = np.lexsort((self.a_cost, self.a_src))
        self.src_order = sorder
        self.src_ptr = np.zeros(N + 1, np.int64)
        np.cumsum(np.bincount(self.a_src, minlength=N), out=self.src_ptr[1:])


@njit(cache=True)
def _decoupled(sink_ptr, sink_order, a_cost, a_cap, D, c, f, cap, err):
    N = D.size
    x = np.zeros(a_cost.size)
    xl = np.zeros(N)
    price = np.zeros(N)
    for k in range(N):
        if not err[k]:
            continue
        G = 0.0
        # option 0: own data at cost 0
        p0, p1 = sink_ptr[k], sink_ptr[k + 1]
        m = p1 - p0
        last = 0.0
        for q in range(-1, m):
            if q < 0:
                cost, amt = 0.0, D[k]
            else:
                a = sink_order[p0 + q]
                cost, amt = a_cost[a], a_cap[a]
            if G > 0 and f[k] / (2.0 * G ** 1.5) - c[k] <= cost:
                break
            gv = (f[k] / (2.0 * (c[k] + cost))) ** (2.0 / 3.0) if c[k] + cost > 0 else np.inf
            take = min(amt, gv - G, cap[k] - G)
            if take < 0:
                take = 0.0
            if q < 0:
                xl[k] = take
            else:
                x[a] = take
            G += take
            last = cost
            if take < amt:
                break
        if G < cap[k]:
            price[k] = max(f[k] / (2.0 * G ** 1.5) - c[k], 0.0) if G > 0 else 0.0
        else:
            price[k] = last
    return x, xl, price


@njit(cache=True)
def _dual_bound(src_ptr, src_order, a_sink, a_cost, a_cap, D, c, f, cap, err, p):
    N = D.size
    total = 0.0
    for k in range(N):
        cp = c[k] + p[k]
        if err[k]:
            if cp > 0:
                G = (f[k] / (2.0 * cp)) ** (2.0 / 3.0)
                if G > cap[k]:
                    G = cap[k]
            else:
                G = cap[k]
                if G == np.inf:
                    return -np.inf
            total += cp * G + f[k] / np.sqrt(G)
        else:
            if cp < 0:
                return -np.inf
    for s in range(N):
        if D[s] <= 0:
            continue
        rem = D[s]
        # options: local (cost -p_s, only if the sink has an error term or c=0) and arcs (c_a - p_k)
        m = src_ptr[s + 1] - src_ptr[s]
        vals = np.empty(m + 1)
        amts = np.empty(m + 1)
        vals[m] = -p[s]
        amts[m] = D[s]
        for q in range(m):
            a = src_order[src_ptr[s] + q]
            vals[q] = a_cost[a] - p[a_sink[a]]
            amts[q] = a_cap[a]
        o = np.argsort(vals)
        for q in range(m + 1):
            j = o[q]
            if vals[j] >= 0 or rem <= 0:
                break
            t = min(rem, amts[j])
            total += vals[j] * t
            rem -= t
    return total


def sqrt_dual_bound(scenario: Scenario, price: np.ndarray) -> float:
    """Lagrangian lower bound ``g(p)`` on the square-root optimum for sink prices ``p`` ``[T·n]``."""
    net = _Net(scenario)
    return float(_dual_bound(net.src_ptr, net.src_order, net.a_sink, net.a_cost, net.a_cap, net.D, net.c,
                             net.f, net.cap, net.err, np.asarray(price, dtype=np.float64)))


def _objective(net: _Net, x: np.ndarray, xl: np.ndarray) -> float:
    G = xl + np.bincount(net.a_sink, weights=x, minlength=net.D.size)
    if (G[net.err] <= 0).any():
        return float("inf")
    return float(net.c @ G + net.a_cost @ x + (net.f[net.err] / np.sqrt(G[net.err])).sum())


def _prices(net: _Net, x: np.ndarray, xl: np.ndarray) -> np.ndarray:
    G = xl + np.bincount(net.a_sink, weights=x, minlength=net.D.size)
    p = np.zeros(net.D.size)
    e = net.err & (G > 0)
    p[e] = np.maximum(net.f[e] / (2 * G[e] ** 1.5) - net.c[e], 0.0)
    full = e & (G >= net.cap * (1 - 1e-9))
    if full.any():
        # at capacity the price is the dearest option used (not above the marginal value)
        used = x > 1e-12
        dear = np.zeros(net.D.size)
        np.maximum.at(dear, net.a_sink[used], net.a_cost[used])
        p[full] = np.minimum(p[full], np.maximum(dear[full], 0.0))
    return p


def plan_sqrt(scenario: Scenario, information: str = "perfect", check: bool = True,
              rtol: float = 1e-6) -> Plan:
    """Exact square-root-error plan; ``stats.gap`` is the certified duality gap."""
    t0 = time.perf_counter()
    net = _Net(scenario)
    x, xl, price = _decoupled(net.sink_ptr, net.sink_order, net.a_cost, net.a_cap, net.D, net.c, net.f,
                              net.cap, net.err)
    use = xl + np.bincount(net.a_src, weights=x, minlength=net.D.size)
    over = np.flatnonzero(use > net.D * (1 + 1e-12) + 1e-12)
    if over.size:
        # some supply is contested: solve the whole convex program with Clarabel (interior point)
        from foglearn.planning.reference import reference_sqrt

        ref = reference_sqrt(scenario)
        stats = SolverStats("sqrt", ref.stats.status, time.perf_counter() - t0, ref.stats.objective,
                            float("nan"), {"path": "clarabel (contested supplies)",
                                           "contested_sources": int(over.size)})
        return Plan.from_fractions(scenario, ref.keep, ref.offload, error="sqrt", stats=stats,
                                   information=information, check=check)
    primal = _objective(net, x, xl)
    p = _prices(net, x, xl)
    dual = float(_dual_bound(net.src_ptr, net.src_order, net.a_sink, net.a_cost, net.a_cap, net.D, net.c,
                             net.f, net.cap, net.err, p))
    gap = max(primal - dual, 0.0)
    rel = gap / max(abs(primal), 1.0)
    if rel > rtol:
        raise PlanError(f"solver = 'sqrt': duality gap {gap:.3g} (relative {rel:.3g}) exceeds {rtol:g}")
    coupled = 0
    T, n = scenario.horizon, scenario.n_devices
    D = net.D
    keep = np.where(D > 0, xl / np.where(D > 0, D, 1.0), 0.0).reshape(T, n)
    offload = np.zeros((T, scenario.n_edges))
    if x.size:
        offload[net.t_idx, net.e_idx] = x / D[net.a_src]
    stats = SolverStats("sqrt", "optimal", time.perf_counter() - t0, primal, gap,
                        {"dual_bound": dual, "coupled_sinks": coupled, "arcs": int(x.size)})
    return Plan.from_fractions(scenario, np.clip(keep, 0, 1), np.clip(offload, 0, 1), error="sqrt",
                               stats=stats, information=information, check=check)
