"""Exact linear-error planning with capacities as a min-cost flow (SPEC §2).

Network: a source per ``(i, t)`` with supply ``D_i(t)``; a sink "process at ``(i, t)``" with
capacity ``C_i(t)``; arcs ``(i, t) -> (i, t)`` (keep, cost ``c_i(t)``, uncapacitated) and
``(i, t) -> (j, t+1)`` (offload, cost ``c_ij(t) + c_j(t+1)``, capacity ``C_ij(t)``); discarding
costs ``f_i(t)`` per point and is unlimited.

Algorithm (all in float64, no integer scaling):

1. **Exact pruning.** An option dearer than ``f_i(t)`` is never needed (discarding is cheaper and
   unlimited); links that are unusable or have zero capacity, sinks with ``C = 0`` and sources
   with ``D = 0`` are dropped.
2. **Greedy start.** Ignoring sink capacities, every source fills its options cheapest first
   (ties: keep, then offload, then discard). This pseudo-flow is optimal for the relaxation; its
   dual (source values ``λ_s`` = marginal option cost, sink prices ``π_k = 0``) is feasible.
3. **Successive shortest paths** (numba). Each overloaded sink pushes its excess along shortest
   residual paths (reduced costs ``≥ 0`` by the potentials) to the nearest discard option or
   sink with slack; Dijkstra stops as soon as the target is settled, so searches stay local.
   Potentials are updated only on settled nodes.
4. **Certificate.** The final ``(λ, π)`` give an LP dual bound
   ``Σ f D − Σ D (f − λ) − Σ C π − Σ u (λ − cost − π)^+``; ``gap`` = primal − dual (≈ 1e-12
   relative in practice; round-off only).
"""

from __future__ import annotations

import time

import numpy as np
from numba import njit

from foglearn.network.scenario import Scenario
from foglearn.planning.plan import Plan, PlanError, SolverStats

__all__ = ["FlowProblem", "build_problem", "solve_flow", "plan_linear"]

TOL = 1e-10


class FlowProblem:
    """The pruned network in compressed form (arcs grouped by source)."""

    def __init__(self, scenario: Scenario):
        T, n, E = scenario.horizon, scenario.n_devices, scenario.n_edges
        self.T, self.n, self.E = T, n, E
        D = scenario.collected.astype(np.float64)
        c = scenario.proc_cost
        f = scenario.error_weight
        cap = scenario.effective_proc_cap()
        self.supply = D.ravel().copy()
        self.f = f.ravel().astype(np.float64).copy()
        self.sink_cap = cap.ravel().astype(np.float64).copy()
        self.loc_cost = c.ravel().astype(np.float64).copy()
        # keep is an option when c <= f (ties: keep before discard) and the sink can process
        self.loc_ok = ((c <= f) & (cap > 0) & (D > 0)).ravel()
        # edges grouped by source (stable), arcs built slot by slot
        order = np.argsort(scenario.src, kind="stable") if E else np.zeros(0, np.int64)
        self.order = order
        srcs, dsts = scenario.src[order], scenario.dst[order]
        arc_t, arc_e, arc_cost, arc_cap = [], [], [], []
        if E and T > 1:
            usable = scenario.usable_links()
            for t in range(T - 1):
                cost = scenario.link_cost[t, order] + c[t + 1, dsts]
                ucap = scenario.link_cap[t, order]
                ok = usable[t, order] & (cost <= f[t, srcs]) & (ucap > 0) & (D[t, srcs] > 0) \
                    & (cap[t + 1, dsts] > 0)
                idx = np.flatnonzero(ok)
                arc_t.append(np.full(idx.size, t, dtype=np.int32))
                arc_e.append(idx.astype(np.int32))
                arc_cost.append(cost[idx])
                arc_cap.append(ucap[idx])
        if arc_t:
            t_arr = np.concatenate(arc_t)
            e_sorted = np.concatenate(arc_e)
            self.arc_cost = np.concatenate(arc_cost)
            self.arc_cap = np.concatenate(arc_cap).astype(np.float64)
        else:
            t_arr = np.zeros(0, np.int32)
            e_sorted = np.zeros(0, np.int32)
            self.arc_cost = np.zeros(0)
            self.arc_cap = np.zeros(0)
        arc_src = (t_arr.astype(np.int64) * n + srcs[e_sorted]).astype(np.int64)
        N = T * n
        # arcs are in (t, src) order, so CSR by source is a cumulative count
        self.src_ptr = np.zeros(N + 1, dtype=np.int64)
        np.cumsum(np.bincount(arc_src, minlength=N), out=self.src_ptr[1:])
        # within each source, cheapest arc first (lets the shortest-path scans stop early)
        perm = _segment_argsort(self.src_ptr, self.arc_cost)
        self.arc_cost = self.arc_cost[perm]
        self.arc_cap = self.arc_cap[perm]
        t_arr = t_arr[perm]
        e_sorted = e_sorted[perm]
        self.arc_src = arc_src[perm]
        self.arc_t = t_arr
        self.arc_e = order[e_sorted].astype(np.int64) if e_sorted.size else np.zeros(0, np.int64)
        self.arc_sink = ((t_arr.astype(np.int64) + 1) * n + dsts[e_sorted]).astype(np.int64)
        sink_order = np.argsort(self.arc_sink, kind="stable")
        self.sink_arcs = sink_order.astype(np.int64)
        self.sink_ptr = np.zeros(N + 1, dtype=np.int64)
        np.cumsum(np.bincount(self.arc_sink, minlength=N), out=self.sink_ptr[1:])

    @property
    def n_arcs(self) -> int:
        return int(self.arc_cost.size)


def build_problem(scenario: Scenario) -> FlowProblem:
    """Prune and compress the flow network of ``scenario`` (see module docstring)."""
    return FlowProblem(scenario)


# ----------------------------------------------------------------------------- numba core
@njit(cache=True)
def _segment_argsort(ptr, key):
    perm = np.empty(key.size, dtype=np.int64)
    for s in range(ptr.size - 1):
        a0, a1 = ptr[s], ptr[s + 1]
        if a1 > a0:
            o = np.argsort(key[a0:a1], kind="mergesort")
            for k in range(a1 - a0):
                perm[a0 + k] = a0 + o[k]
    return perm


@njit(cache=True)
def _greedy_start(src_ptr, arc_cost, arc_cap, loc_ok, loc_cost, f, supply):
    N = supply.size
    x = np.zeros(arc_cost.size)
    xl = np.zeros(N)
    lam = f.copy()
    for s in range(N):
        rem = supply[s]
        if rem <= 0:
            continue
        a0, a1 = src_ptr[s], src_ptr[s + 1]
        m = a1 - a0
        keys = np.empty(m + 1)
        for k in range(m):
            keys[k] = arc_cost[a0 + k]
        # local option sorts before an arc of equal cost
        keys[m] = loc_cost[s] if loc_ok[s] else np.inf
        order = np.argsort(keys, kind="mergesort")
        # put local first among ties
        lp = 0
        for k in range(m + 1):
            if order[k] == m:
                lp = k
                break
        while lp > 0 and keys[order[lp - 1]] == keys[m]:
            order[lp] = order[lp - 1]
            order[lp - 1] = m
            lp -= 1
        for k in range(m + 1):
            o = order[k]
            cst = keys[o]
            if cst > f[s] or cst == np.inf:
                break
            if o == m:
                xl[s] = rem
                rem = 0.0
                lam[s] = cst
                break
            amt = min(rem, arc_cap[a0 + o])
            x[a0 + o] = amt
            rem -= amt
            if rem <= 0.0:
                lam[s] = cst
                break
    return x, xl, lam


@njit(cache=True)
def _heap_push(hk, hv, size, key, val):
    if size >= hk.size:
        nk = np.empty(hk.size * 2)
        nv = np.empty(hv.size * 2, dtype=np.int64)
        nk[:size] = hk[:size]
        nv[:size] = hv[:size]
        hk, hv = nk, nv
    i = size
    hk[i] = key
    hv[i] = val
    while i > 0:
        p = (i - 1) >> 1
        if hk[p] <= hk[i]:
            break
        hk[p], hk[i] = hk[i], hk[p]
        hv[p], hv[i] = hv[i], hv[p]
        i = p
    return hk, hv, size + 1


@njit(cache=True)
def _heap_pop(hk, hv, size):
    key, val = hk[0], hv[0]
    size -= 1
    if size > 0:
        hk[0] = hk[size]
        hv[0] = hv[size]
        i = 0
        while True:
            l_ = 2 * i + 1
            if l_ >= size:
                break
            c = l_
            if l_ + 1 < size and hk[l_ + 1] < hk[l_]:
                c = l_ + 1
            if hk[i] <= hk[c]:
                break
            hk[c], hk[i] = hk[i], hk[c]
            hv[c], hv[i] = hv[i], hv[c]
            i = c
    return key, val, size


@njit(cache=True)
def _ssp(src_ptr, arc_src, arc_sink, arc_cost, arc_cap, sink_ptr, sink_arcs,
         loc_ok, loc_cost, f, supply, sink_cap, x, xl, lam, tol):
    """Successive shortest paths from every overloaded sink. Nodes: sources 0..N-1, sinks N..2N-1."""
    N = supply.size
    pi = np.zeros(N)
    load = xl.copy()
    for a in range(arc_cost.size):
        load[arc_sink[a]] += x[a]
    dist = np.empty(2 * N)
    stamp = np.zeros(2 * N, dtype=np.int64)
    done = np.zeros(2 * N, dtype=np.int64)
    pred_kind = np.zeros(2 * N, dtype=np.int8)  # 0 arc fwd, 1 arc rev, 2 local fwd, 3 local rev
    pred_arc = np.zeros(2 * N, dtype=np.int64)
    settled = np.empty(2 * N, dtype=np.int64)
    hk = np.empty(1024)
    hv = np.empty(1024, dtype=np.int64)
    it = 0
    n_aug = 0
    n_scan = 0
    for k0 in range(N):
        while load[k0] > sink_cap[k0] + tol:
            it += 1
            excess = load[k0] - sink_cap[k0]
            v0 = N + k0
            dist[v0] = 0.0
            stamp[v0] = it
            size = 0
            hk, hv, size = _heap_push(hk, hv, size, 0.0, v0)
            dT = np.inf
            t_kind = -1  # 4 discard at source, 5 slack at sink
            t_node = -1
            ns = 0
            while size > 0:
                d, v, size = _heap_pop(hk, hv, size)
                if d >= dT:
                    break
                if done[v] == it or d > dist[v]:
                    continue
                done[v] = it
                settled[ns] = v
                ns += 1
                if v >= N:
                    k = v - N
                    if k != k0 and load[k] < sink_cap[k] - tol:
                        if d < dT:
                            dT = d
                            t_kind = 5
                            t_node = v
                        continue
                    # reverse local arc k -> source k
                    if xl[k] > tol:
                        s = k
                        rc = lam[s] - loc_cost[s] - pi[k]
                        if rc < 0.0:
                            rc = 0.0
                        nd = d + rc
                        if nd < dT and (stamp[s] != it or nd < dist[s]):
                            stamp[s] = it
                            dist[s] = nd
                            pred_kind[s] = 3
                            pred_arc[s] = k
                            hk, hv, size = _heap_push(hk, hv, size, nd, s)
                            fd = nd + max(f[s] - lam[s], 0.0)
                            if fd < dT:
                                dT = fd
                                t_kind = 4
                                t_node = s
                    for p in range(sink_ptr[k], sink_ptr[k + 1]):
                        a = sink_arcs[p]
                        n_scan += 1
                        if x[a] <= tol:
                            continue
                        s = arc_src[a]
                        rc = lam[s] - arc_cost[a] - pi[k]
                        if rc < 0.0:
                            rc = 0.0
                        nd = d + rc
                        if nd < dT and (stamp[s] != it or nd < dist[s]):
                            stamp[s] = it
                            dist[s] = nd
                            pred_kind[s] = 1
                            pred_arc[s] = a
                            hk, hv, size = _heap_push(hk, hv, size, nd, s)
                            fd = nd + max(f[s] - lam[s], 0.0)
                            if fd < dT:
                                dT = fd
                                t_kind = 4
                                t_node = s
                else:
                    s = v
                    fd = d + max(f[s] - lam[s], 0.0)
                    if fd < dT:
                        dT = fd
                        t_kind = 4
                        t_node = s
                    if loc_ok[s]:
                        k = s
                        w = N + k
                        rc = loc_cost[s] + pi[k] - lam[s]
                        if rc < 0.0:
                            rc = 0.0
                        nd = d + rc
                        if nd < dT and (stamp[w] != it or nd < dist[w]):
                            stamp[w] = it
                            dist[w] = nd
                            pred_kind[w] = 2
                            pred_arc[w] = s
                            hk, hv, size = _heap_push(hk, hv, size, nd, w)
                            if w != v0 and load[k] < sink_cap[k] - tol and nd < dT:
                                dT = nd
                                t_kind = 5
                                t_node = w
                    for a in range(src_ptr[s], src_ptr[s + 1]):
                        n_scan += 1
                        if d + arc_cost[a] - lam[s] >= dT:
                            break  # arcs are sorted by cost and pi >= 0: no later arc can help
                        if x[a] >= arc_cap[a] - tol:
                            continue
                        k = arc_sink[a]
                        w = N + k
                        rc = arc_cost[a] + pi[k] - lam[s]
                        if rc < 0.0:
                            rc = 0.0
                        nd = d + rc
                        if nd < dT and (stamp[w] != it or nd < dist[w]):
                            stamp[w] = it
                            dist[w] = nd
                            pred_kind[w] = 0
                            pred_arc[w] = a
                            hk, hv, size = _heap_push(hk, hv, size, nd, w)
                            if w != v0 and load[k] < sink_cap[k] - tol and nd < dT:
                                dT = nd
                                t_kind = 5
                                t_node = w
            if t_kind < 0:
                return pi, load, -1, n_aug, n_scan  # cannot happen: discard is always open
            # bottleneck
            delta = excess
            if t_kind == 5:
                kk = t_node - N
                delta = min(delta, sink_cap[kk] - load[kk])
            v = t_node
            while v != v0:
                pk = pred_kind[v]
                if pk == 0:
                    a = pred_arc[v]
                    delta = min(delta, arc_cap[a] - x[a])
                    v = arc_src[a]
                elif pk == 1:
                    a = pred_arc[v]
                    delta = min(delta, x[a])
                    v = N + arc_sink[a]
                elif pk == 2:
                    v = pred_arc[v]
                else:
                    kk = pred_arc[v]
                    delta = min(delta, xl[kk])
                    v = N + kk
            # augment
            if t_kind == 5:
                load[t_node - N] += delta
            v = t_node
            while v != v0:
                pk = pred_kind[v]
                if pk == 0:
                    a = pred_arc[v]
                    x[a] += delta
                    v = arc_src[a]
                elif pk == 1:
                    a = pred_arc[v]
                    x[a] -= delta
                    if x[a] < tol:
                        x[a] = 0.0
                    v = N + arc_sink[a]
                elif pk == 2:
                    s = pred_arc[v]
                    xl[s] += delta
                    v = s
                else:
                    kk = pred_arc[v]
                    xl[kk] -= delta
                    if xl[kk] < tol:
                        xl[kk] = 0.0
                    v = N + kk
            load[k0] -= delta
            n_aug += 1
            # potentials: only settled nodes with d < dT move
            for q in range(ns):
                v = settled[q]
                dv = dist[v]
                if dv < dT:
                    if v >= N:
                        pi[v - N] += dT - dv
                    else:
                        lam[v] += dT - dv
    return pi, load, 0, n_aug, n_scan


@njit(cache=True)
def _dual_bound(src_ptr, arc_sink, arc_cost, arc_cap, loc_ok, loc_cost, f, supply, sink_cap, lam, pi):
    """LP dual value for (λ, π): Σ f D − Σ D (f−λ)^+ − Σ C π − Σ u (λ−cost−π)^+ (π on finite sinks)."""
    N = supply.size
    total = 0.0
    for s in range(N):
        lam_s = min(lam[s], f[s])
        total += supply[s] * lam_s
        if sink_cap[s] < np.inf:
            total -= sink_cap[s] * pi[s]
        elif pi[s] > 0:
            return -np.inf
        if loc_ok[s] and supply[s] > 0:
            if lam_s - loc_cost[s] - pi[s] > 1e-12:
                return -np.inf  # uncapacitated arc with negative reduced cost
        for a in range(src_ptr[s], src_ptr[s + 1]):
            r = lam_s - arc_cost[a] - pi[arc_sink[a]]
            if r > 0:
                total -= arc_cap[a] * r
    return total


def solve_flow(prob: FlowProblem) -> dict:
    """Solve the pruned network; returns flows, duals and statistics."""
    x, xl, lam = _greedy_start(prob.src_ptr, prob.arc_cost, prob.arc_cap, prob.loc_ok,
                               prob.loc_cost, prob.f, prob.supply)
    pi, load, code, n_aug, n_scan = _ssp(prob.src_ptr, prob.arc_src, prob.arc_sink, prob.arc_cost,
                                         prob.arc_cap, prob.sink_ptr, prob.sink_arcs, prob.loc_ok,
                                         prob.loc_cost, prob.f, prob.supply, prob.sink_cap, x, xl, lam,
                                         TOL)
    if code != 0:
        raise PlanError("solver = 'linear': successive shortest paths found no residual path "
                        "(internal error: discarding should always be possible)")
    primal = float(prob.arc_cost @ x + prob.loc_cost @ xl
                   + prob.f @ (prob.supply - xl - np.bincount(prob.arc_src, weights=x, minlength=prob.supply.size)))
    dual = float(_dual_bound(prob.src_ptr, prob.arc_sink, prob.arc_cost, prob.arc_cap, prob.loc_ok,
                             prob.loc_cost, prob.f, prob.supply, prob.sink_cap, lam, pi))
    return {"x": x, "xl": xl, "lam": lam, "pi": pi, "load": load, "primal": primal, "dual": dual,
            "augmentations": int(n_aug), "arc_scans": int(n_scan)}


def plan_linear(scenario: Scenario, information: str = "perfect", check: bool = True) -> Plan:
    """The exact linear-error plan with capacities (min-cost flow, see module docstring)."""
    t0 = time.perf_counter()
    prob = build_problem(scenario)
    t1 = time.perf_counter()
    sol = solve_flow(prob)
    t2 = time.perf_counter()
    T, n, E = scenario.horizon, scenario.n_devices, scenario.n_edges
    D = scenario.collected.astype(np.float64)
    Dflat = D.ravel()
    keep = np.zeros(T * n)
    pos = Dflat > 0
    keep[pos] = sol["xl"][pos] / Dflat[pos]
    keep = keep.reshape(T, n)
    offload = np.zeros((T, E))
    if prob.n_arcs:
        offload[prob.arc_t, prob.arc_e] = sol["x"] / Dflat[prob.arc_src]
    primal, dual = sol["primal"], sol["dual"]
    gap = max(primal - dual, 0.0)
    rel = gap / max(abs(primal), 1.0)
    status = "optimal" if rel <= 1e-7 else "suboptimal"
    if status != "optimal":
        raise PlanError(f"solver = 'linear': duality gap {gap:.3g} (relative {rel:.3g}) after successive "
                        f"shortest paths; the solve failed to certify optimality")
    stats = SolverStats("linear-flow", status, time.perf_counter() - t0, primal, gap,
                        {"arcs": prob.n_arcs, "augmentations": sol["augmentations"],
                         "arc_scans": sol["arc_scans"], "build_seconds": t1 - t0,
                         "solve_seconds": t2 - t1, "dual_bound": dual, "precision": "float64"})
    return Plan.from_fractions(scenario, keep, offload, error="linear", stats=stats,
                               information=information, check=check)
