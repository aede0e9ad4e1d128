"""Square-root error model (Lemma 1, Theorem 4): exact planning with a dual certificate.

Objective (5) with the error term of Lemma 1 (docs/model.md §2)::

    Σ c_i(t) G_i(t) + Σ c_ij(t) D_i(t) s_ij(t) + Σ_{(i,t): D_i(t)>0} f_i(t) / sqrt(G_i(t))

under (6)-(9); discarding is free. It is a convex-cost flow: a source per ``(i, t)`` with supply
``D_i(t)`` (free disposal), a sink per ``(i, t)`` with cost ``h(G) = c G + f/sqrt(G)`` and
capacity ``C_i(t)``, an "own" arc source → sink at cost 0 (keeping) and an arc
``(i, t) → (j, t+1)`` per usable link at cost ``c_ij(t)`` with capacity ``C_ij(t)``.
Sinks without an error term (``D = 0`` or ``f = 0``) only cost ``c G ≥ 0``: they never receive.

Algorithm
---------
1. **Decoupled start** (:func:`~foglearn.planning.sqrt_kernels.decoupled`). With all source
   prices ``u = 0`` every sink takes its options cheapest first while the marginal value
   ``v(G) = f/(2 G^{3/2}) − c`` exceeds the option's cost; the stopping point is
   ``(f/(2(c + cost)))^{2/3}`` in closed form, capped by ``C``. This satisfies complementary
   slackness with sink prices ``π_k = v_k(G_k)``; only source supplies can be violated. If no
   source is over-subscribed, it is optimal as it is.
2. **Coupled instances: primal-dual interior point** (:mod:`foglearn.planning.sqrt_ipm`).
   Mehrotra's predictor-corrector on the arc formulation, started near the decoupled flows. Its
   Newton systems reduce to the sink prices, a block-tridiagonal matrix with one ``n×n`` block
   per slot (sinks of slot ``t`` are coupled by the sources of slot ``t−1``, and to slot ``t+1``
   by each source's own arc), factorised by a block Cholesky in ``O(T n³)`` per step. ``G > 0``
   is kept by the fraction-to-boundary rule, so ``f/sqrt(G)`` is never evaluated at 0.
3. **Few over-subscribed sources: primal-dual repair** (:func:`~foglearn.planning.sqrt_kernels.repair`,
   numba; arcs never materialised, so n = 1000 with 28 M arcs fits). For each over-subscribed
   source ``r`` grow the tree of nodes reachable by zero-reduced-cost residual arcs; augment to
   a source with slack, or raise the tree's prices (its sinks shrink to
   ``g_k(π) = min(C_k, (f_k/(2(c_k + π)))^{2/3})``) by the largest ``θ`` that keeps every bound,
   found by Newton from the left. Complementary slackness holds throughout.
4. **Certificate** (both methods). The Lagrangian bound ``L(π)`` (relaxing ``G_k = Σ_in x``;
   one closed-form 1-D minimisation per sink and a fractional knapsack per source over *all*
   arcs) is a lower bound on the optimum for any ``π``. The plan's flows are made exactly
   feasible, and ``gap = primal − L(π)`` must be at most ``rtol · |primal|`` (default 1e-9);
   the interior point iterates until it is (a run with one step length for primal and dual
   variables, then, if that cannot certify, one with separate lengths). In a stress run of 18 855
   random small instances the interior point could not certify twice (n ≤ 12, ``f`` over twelve
   decades or a hot sink): with ``method="auto"`` the repair (step 3, exact on every instance,
   fast at such sizes) then finishes the plan from step 1's start, and ``stats.extra["ipm_failed"]``
   says why; with ``method="ipm"`` it is a :class:`~foglearn.errors.SolverError`. No other solver
   is ever called, and no uncertified plan is ever returned.

The choice between 2 and 3 is structural and made once, after step 1: the repair runs when at
most :data:`REPAIR_FRACTION` (1 %) of the sources with data are over-subscribed — the paper's
synthetic instances (e.g. 5 of 9 812 at n = 100, T = 100), where it touches a handful of small
trees and takes milliseconds even at n = 1000 — and the interior point otherwise: when most
devices are short of data (:mod:`foglearn.planning.hard_instances`, 50-95 % over-subscribed) the
repair's work grows like (arcs used) × (tree size), about cubic in ``n``, while the interior
point takes 14-60 Newton steps of ``O(T n³ + arcs)`` each. Both are exact and certified the
same way; ``stats.extra["method"]`` says which ran (``"decoupled"`` when step 1 was optimal).

Ctrl-C: both run in a worker thread that polls a stop flag (every few hundred repair steps,
before every Newton step; :mod:`foglearn.planning.interrupt`), so a plan stops within a second.
A sink with an error term and ``C = 0`` makes the objective infinite: that is an error
(docs/model.md §2).
"""

from __future__ import annotations

import time

import numpy as np

from foglearn.errors import InputError, SolverError
from foglearn.network.scenario import Scenario
from foglearn.planning import interrupt
from foglearn.planning import sqrt_ipm as I
from foglearn.planning import sqrt_kernels as K
from foglearn.planning.plan import Plan, PlanError, SolverStats

__all__ = ["plan_sqrt", "sqrt_dual_bound", "SqrtNetwork"]


class SqrtNetwork:
    """The implicit network of the square-root model: :class:`~foglearn.planning.sqrt_kernels.Net`."""

    def __init__(self, scenario: Scenario):
        T, n, E = scenario.horizon, scenario.n_devices, scenario.n_edges
        self.T, self.n, self.E = T, n, E
        D = scenario.collected.astype(np.float64).ravel()
        f = np.ascontiguousarray(scenario.error_weight, dtype=np.float64).ravel()
        cap = scenario.effective_proc_cap().astype(np.float64).ravel()
        err = (D > 0) & (f > 0)
        bad = err & (cap <= 0)
        if bad.any():
            k = int(np.flatnonzero(bad)[0])
            raise PlanError(f"error = 'sqrt': device {k % n} collected {int(D[k])} points at slot {k // n} "
                            f"but proc_cap[{k // n}, {k % n}] = 0, so f/sqrt(G) is infinite (docs/model.md §2)")
        src = np.asarray(scenario.src, dtype=np.int64)
        dst = np.asarray(scenario.dst, dtype=np.int64)
        if E:
            usable = np.ascontiguousarray(scenario.usable_links())
            lcap = np.ascontiguousarray(scenario.link_cap, dtype=np.float64)
            lcost = np.ascontiguousarray(scenario.link_cost, dtype=np.float64)
        else:
            usable, lcap, lcost = np.zeros((T, 0), dtype=bool), np.zeros((T, 0)), np.zeros((T, 0))
        in_ptr = np.zeros(n + 1, np.int64)
        np.cumsum(np.bincount(dst, minlength=n), out=in_ptr[1:])
        out_ptr = np.zeros(n + 1, np.int64)
        np.cumsum(np.bincount(src, minlength=n), out=out_ptr[1:])
        self.net = K.Net(T, n, D, np.ascontiguousarray(scenario.proc_cost, dtype=np.float64).ravel(), f, cap,
                         err, src, dst, usable, lcap, lcost, in_ptr, np.argsort(dst, kind="stable").astype(np.int64),
                         out_ptr, np.argsort(src, kind="stable").astype(np.int64))

    def dual_bound(self, price: np.ndarray) -> float:
        return float(K.dual_bound(self.net, np.ascontiguousarray(price, dtype=np.float64)))


def sqrt_dual_bound(scenario: Scenario, price: np.ndarray) -> float:
    """Lagrangian lower bound ``L(p)`` on the square-root optimum for sink prices ``p`` ``[T·n]``.

    Valid for any ``p`` (weak duality); equal to the optimum at the optimal prices.
    """
    return SqrtNetwork(scenario).dual_bound(price)


#: the repair runs when at most this fraction of the sources with data is over-subscribed after
#: the decoupled start (see the module docstring); otherwise the interior-point method runs
REPAIR_FRACTION = 0.01
#: the certificate is first tried once the interior point's complementarity is below this
#: fraction of the decoupled objective (a lower bound on the optimum's scale)
CHECK_GAP = 1e-6


def plan_sqrt(scenario: Scenario, information: str = "perfect", check: bool = True,
              rtol: float = 1e-9, max_steps: int | None = None, method: str = "auto") -> Plan:
    """Exact square-root-error plan (Lemma 1, Thm 4); ``stats.gap`` is the certified duality gap.

    ``method``: ``"auto"`` (the structural choice of the module docstring), ``"ipm"`` or
    ``"repair"``. Raises :class:`~foglearn.errors.SolverError` if the certified relative gap
    exceeds ``rtol``, or the method does not finish within ``max_steps`` steps (repair: price /
    augmentation steps, default ``500·T·n + 10⁶``; interior point: Newton steps, default 200), and
    :class:`~foglearn.planning.interrupt.PlanInterrupted` on Ctrl-C (both poll a stop flag, so
    they return within a fraction of a second).
    """
    if method not in ("auto", "ipm", "repair"):
        raise InputError(f"method must be 'auto', 'ipm' or 'repair', got {method!r}")
    t0 = time.perf_counter()
    sn = SqrtNetwork(scenario)
    net = sn.net
    T, n = net.T, net.n
    xo, x, pi = K.decoupled(net)
    t_dec = time.perf_counter() - t0
    d = K.out_flow(T, n, net.D, xo, x, net.src)
    scale = max(1.0, float(net.D.max(initial=0.0)))
    over = int((d > net.D + 1e-12 * scale).sum())
    tolx = 1e-12 * scale
    extra: dict[str, float | int | str] = {"oversubscribed_sources": over, "decoupled_seconds": t_dec}
    auto = method == "auto"
    if auto:
        method = "repair" if over <= REPAIR_FRACTION * max(int((net.D > 0).sum()), 1) else "ipm"
    if over and method == "ipm":
        try:
            xo_i, x_i, pi_i, primal, dual, newton = _interior_point(sn, xo, x, rtol, max_steps)
        except SolverError as exc:
            if not auto:
                raise
            # rare (2 of 18 855 small random instances): the interior point cannot reach the
            # certificate; the repair, exact on every instance, finishes the plan from step 1
            extra["ipm_failed"] = str(exc)
            method = "repair"
        else:
            xo, x, pi = xo_i, x_i, pi_i
            extra.update({"method": "ipm", "newton_steps": newton})
    if over and method == "repair":
        xo, x, pi, primal, dual = _repair(sn, xo, x, pi, d, tolx, max_steps, extra)
    elif not over:
        extra["method"] = "decoupled"
        G = K.in_flow(T, n, xo, x, net.dst)
        primal = float(K.primal_objective(net, xo, x, G))
        dual = sn.dual_bound(pi)
    gap = max(primal - dual, 0.0)
    rel = gap / max(abs(primal), 1.0)
    if not np.isfinite(primal) or rel > rtol:
        raise SolverError(f"solver = 'sqrt': cannot certify the plan: primal {primal:.12g}, dual bound "
                          f"{dual:.12g}, relative gap {rel:.3g} > rtol = {rtol:g}")
    D2 = net.D.reshape(T, n)
    keep = np.where(D2 > 0, xo.reshape(T, n) / np.where(D2 > 0, D2, 1.0), 0.0)
    offload = np.zeros((T, sn.E))
    if sn.E:
        Ds = D2[:, net.src]
        np.divide(x, Ds, out=offload, where=Ds > 0)
    extra.update({"dual_bound": dual, "relative_gap": rel})
    stats = SolverStats("sqrt", "optimal", time.perf_counter() - t0, primal, gap, extra)
    return Plan.from_fractions(scenario, keep, offload, error="sqrt",
                               stats=stats, information=information, check=check)


def _repair(sn: SqrtNetwork, xo: np.ndarray, x: np.ndarray, pi: np.ndarray, d: np.ndarray, tolx: float,
            max_steps: int | None, extra: dict[str, float | int | str]
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray, float, float]:
    """Step 2 (primal-dual repair) from the decoupled start ``(xo, x, π)`` with source out-flows ``d``.

    Returns ``(xo, x, π, primal, dual bound)``; the flows are made exactly feasible.
    """
    net = sn.net
    T, n = net.T, net.n
    ms = int(max_steps if max_steps is not None else 500 * T * n + 1_000_000)
    st = K.Flow(xo, x, pi, np.zeros(T * n), d)
    status, steps, augs, rmax = interrupt.call(K.repair, net, st, tolx, ms, stop=interrupt.new_stop_flag())
    if status != K.OK:
        why = "step limit" if status == K.ITER_LIMIT else "unbounded price raise"
        raise SolverError(f"solver = 'sqrt': repair of over-subscribed sources stopped ({why}) "
                          f"after {steps} steps")
    # round-off: a source may exceed its supply by ≤ tolx; scale its flows down (exact feasibility)
    d = K.out_flow(T, n, net.D, xo, x, net.src)
    hi = np.flatnonzero(d > net.D)
    if hi.size:
        _shave(sn, xo, x, d, hi)
    extra.update({"method": "repair", "repair_steps": int(steps), "augmentations": int(augs),
                  "largest_tree": int(rmax)})
    G = K.in_flow(T, n, xo, x, net.dst)
    return xo, x, pi, float(K.primal_objective(net, xo, x, G)), sn.dual_bound(pi)


def _interior_point(sn: SqrtNetwork, xo0: np.ndarray, x0: np.ndarray, rtol: float,
                    max_steps: int | None) -> tuple[np.ndarray, np.ndarray, np.ndarray, float, float, int]:
    """:func:`~foglearn.planning.sqrt_ipm.ipm` from the decoupled flows until the certificate holds.

    After each Newton step whose complementarity is small, the iterate's flows are made exactly
    feasible (:func:`_feasible`) and priced; the Lagrangian bound at its sink prices must be within
    ``rtol`` of that cost. Returns ``(xo, x, π, primal, dual, Newton steps)``.
    """
    net = sn.net
    arcs = I.build_arcs(net)
    best: dict[str, object] = {}

    def certified(xa: np.ndarray, prices: np.ndarray) -> bool:
        xo, x, primal = _feasible(sn, arcs, xa)
        bounds = [sn.dual_bound(p) for p in prices]
        k = int(np.argmax(bounds))
        best.update(xo=xo, x=x, pi=prices[k].copy(), primal=primal, dual=bounds[k])
        return primal - bounds[k] <= rtol * max(abs(primal), 1.0)

    start = np.concatenate([xo0[arcs.src[:arcs.n_own]], x0[arcs.slot[arcs.n_own:], arcs.edge[arcs.n_own:]]])
    objective = float(K.primal_objective(net, xo0, x0, K.in_flow(net.T, net.n, xo0, x0, net.dst)))
    check_below = CHECK_GAP * max(abs(objective), 1.0)
    total = 0
    for equal_steps in (True, False):
        status, xa, prices, steps = interrupt.call(I.ipm, net, arcs, start, certified, check_below,
                                                   int(max_steps if max_steps is not None else 200), equal_steps,
                                                   stop=interrupt.new_stop_flag())
        total += steps
        if status == "interrupted":
            raise interrupt.PlanInterrupted("planning interrupted (Ctrl-C); no plan was returned")
        if status == "certified" or certified(xa, prices):   # the last iterate may still certify
            break
    else:
        primal, dual = float(best["primal"]), float(best["dual"])  # type: ignore[arg-type]
        raise SolverError(f"solver = 'sqrt': cannot certify the plan: the interior point stopped ({status}) after "
                          f"{total} Newton steps (two runs) at primal {primal:.12g}, dual bound {dual:.12g}, "
                          f"relative gap {(primal - dual) / max(abs(primal), 1.0):.3g} > rtol = {rtol:g}")
    return best["xo"], best["x"], best["pi"], best["primal"], best["dual"], total  # type: ignore[return-value]


def _feasible(sn: SqrtNetwork, arcs: I.Arcs, xa: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Arc flows made exactly feasible and priced: ``(xo [T·n], x [T, E], primal objective)``.

    Interior-point flows are positive and within the link capacities; a source that sends more
    than ``D`` (a sink that processes more than ``C``) by round-off has its flows scaled down.
    """
    net = sn.net
    N = net.T * net.n
    x = xa.copy()
    d = np.bincount(arcs.src, weights=x, minlength=N)
    x *= np.where(d > net.D, net.D / np.where(d > 0, d, 1.0) * (1 - 1e-15), 1.0)[arcs.src]
    G = np.bincount(arcs.sink, weights=x, minlength=N)
    x *= np.where(G > net.cap, net.cap / np.where(G > 0, G, 1.0) * (1 - 1e-15), 1.0)[arcs.sink]
    xo = np.zeros(N)
    xo[arcs.src[:arcs.n_own]] = x[:arcs.n_own]
    X = np.zeros((net.T, net.src.size))
    X[arcs.slot[arcs.n_own:], arcs.edge[arcs.n_own:]] = x[arcs.n_own:]
    G = K.in_flow(net.T, net.n, xo, X, net.dst)
    return xo, X, float(K.primal_objective(net, xo, X, G))


def _shave(sn: SqrtNetwork, xo: np.ndarray, x: np.ndarray, d: np.ndarray, rows: np.ndarray) -> None:
    """Scale the flows of sources that exceed their supply by round-off back to ``D`` exactly."""
    net = sn.net
    n = net.n
    for s in rows:
        s = int(s)
        if d[s] - net.D[s] > 1e-9 * max(1.0, net.D[s]):
            raise SolverError(f"solver = 'sqrt': source ({s // n}, {s % n}) sends {d[s]:.12g} > D = {net.D[s]:.12g}")
        fac = net.D[s] / d[s] * (1 - 1e-15)
        xo[s] *= fac
        t, i = divmod(s, n)
        e = net.out_edges[net.out_ptr[i]:net.out_ptr[i + 1]]
        x[t, e] *= fac
