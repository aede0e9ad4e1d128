"""Exact linear-error planning with capacities as a min-cost flow (docs/model.md §2, problem (5)-(9)).

Network: a source per ``(i, t)`` with supply ``D_i(t)``; a sink "process at ``(i, t)``" with
capacity ``C_i(t)``; arcs ``(i, t) -> (i, t)`` (keep, cost ``c_i(t)``) and
``(i, t) -> (j, t+1)`` (offload, cost ``c_ij(t) + c_j(t+1)``, capacity ``C_ij(t)``); discarding
costs ``f_i(t)`` per point and is unlimited (the linear error term ``Σ f D r``).

Algorithm (all float64, no integer scaling; kernels in :mod:`foglearn.planning.flow_kernels`):

1. **Exact cost pruning.** An option dearer than ``f_i(t)`` is never needed (discarding is
   cheaper and unlimited); unusable links, capacities 0 and sources with ``D = 0`` are dropped.
2. **Exact reduction by unsaturable sinks** (iterated to a fixed point). A sink whose potential
   inflow ``Σ min(u_a, D_src)`` is ``≤ C_k`` never binds (price 0); arcs into it are private
   options of their source, and any option dearer than the level ``θ_s`` at which a source's
   private options (and discard) cover ``D_s`` carries no flow in any optimum and is dropped.
   A source left without an arc into a saturable sink is solved exactly by the greedy fill.
3. **Greedy start.** Ignoring sink capacities, each source fills its options cheapest first
   (ties: keep, then offload, then discard); ``λ_s`` = marginal cost, ``π = 0`` is dual feasible.
4. **Successive shortest paths** (numba) on the coupled remainder: each overloaded sink pushes
   its excess to the nearest private option, discard or sink with slack. One Dijkstra per
   overloaded sink serves all its augmentations: arcs are scanned lazily in cost order, and
   after an augmentation only the subtree below an exhausted arc is reset and re-relaxed (see
   :func:`~foglearn.planning.flow_kernels.ssp`).
5. **Certificate.** ``(λ, π)`` give the LP dual bound
   ``Σ D λ − Σ C π − Σ u (λ − cost − π)^+`` over every arc of step 1 (π = 0 on the sinks of
   step 2); ``gap`` = primal − dual. A relative gap above ``1e-9`` raises
   :class:`~foglearn.errors.SolverError`.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from foglearn.errors import SolverError
from foglearn.network.scenario import Scenario
from foglearn.planning import flow_kernels as K
from foglearn.planning import interrupt
from foglearn.planning.plan import Plan, SolverStats

__all__ = ["FlowProblem", "build_problem", "solve_flow", "plan_linear", "GAP_TOL"]

TOL = 1e-10
GAP_TOL = 1e-9
#: The largest node (``2·T·n``), link and arc index the kernels hold (int32).
INDEX_MAX = 2**31 - 1


class FlowProblem:
    """The pruned network: arcs grouped by source, cheapest first (see module docstring).

    Attributes: ``T, n, E``; per node (length ``T·n``) ``supply``, ``f``, ``sink_cap``; per arc
    ``arc_src``, ``arc_sink``, ``arc_cost``, ``arc_cap`` (``min(C_ij, D)``; ``D`` for keep),
    ``arc_edge`` (link index, ``-1`` for keep); CSR ``ptr``; and after :meth:`reduce`
    ``alive_end``, ``unsat``, ``theta``.
    """

    def __init__(self, scenario: Scenario):
        T, n, E = scenario.horizon, scenario.n_devices, scenario.n_edges
        self.T, self.n, self.E = T, n, E
        D = np.ascontiguousarray(scenario.collected, dtype=np.float64)
        c = np.ascontiguousarray(scenario.proc_cost, dtype=np.float64)
        f = np.ascontiguousarray(scenario.error_weight, dtype=np.float64)
        cap = np.ascontiguousarray(scenario.effective_proc_cap(), dtype=np.float64)
        up = np.ascontiguousarray(scenario.link_up, dtype=np.bool_).reshape(T, E)
        lc = np.ascontiguousarray(scenario.link_cost, dtype=np.float64).reshape(T, E)
        lu = np.ascontiguousarray(scenario.link_cap, dtype=np.float64).reshape(T, E)
        active = np.ascontiguousarray(scenario.active, dtype=np.bool_)
        src = np.ascontiguousarray(scenario.src, dtype=np.int64)
        dst = np.ascontiguousarray(scenario.dst, dtype=np.int64)
        if 2 * T * n > INDEX_MAX or E > INDEX_MAX:
            raise SolverError(f"solver = 'linear': T·n = {T * n} nodes and E = {E} links: the solver indexes "
                              f"nodes (2·T·n) and links with 32-bit integers, at most {INDEX_MAX}")
        (self.ptr, self.arc_src, self.arc_sink, self.arc_cost, self.arc_cap,
         self.arc_edge) = K.build_arcs(src, dst, lc, lu, up, active, c, f, cap, D)
        if self.arc_cost.size > INDEX_MAX:
            raise SolverError(f"solver = 'linear': {self.arc_cost.size} arcs after pruning: the solver indexes "
                              f"arcs with 32-bit integers, at most {INDEX_MAX}")
        self.supply = D.ravel()
        self.f = f.ravel()
        self.sink_cap = cap.ravel()
        self.alive_end = self.ptr[1:].copy()
        self.unsat = np.zeros(T * n, dtype=bool)
        self.theta = self.f.copy()
        self.rounds = 0

    @property
    def n_arcs(self) -> int:
        return int(self.arc_cost.size)

    @property
    def n_alive(self) -> int:
        return int((self.alive_end - self.ptr[:-1]).sum())

    def reduce(self) -> None:
        """Step 2: the exact reduction by unsaturable sinks (in place)."""
        self.alive_end, self.unsat, self.theta, self.rounds = K.reduce_unsaturable(
            self.ptr, self.arc_sink, self.arc_cost, self.arc_cap, self.f, self.supply, self.sink_cap)


def build_problem(scenario: Scenario, reduce: bool = True) -> FlowProblem:
    """Prune (and with ``reduce`` apply the unsaturable-sink reduction to) ``scenario``'s network."""
    prob = FlowProblem(scenario)
    if reduce:
        prob.reduce()
    return prob


def solve_flow(prob: FlowProblem, heap_cap: int = 1 << 16, settle_cap: int = 1 << 16) -> dict:
    """Solve the pruned network; returns flows, duals, bounds and statistics.

    ``heap_cap`` / ``settle_cap``: starting sizes of the search's heap and settled list (both
    double when full). Raises :class:`~foglearn.planning.interrupt.PlanInterrupted` on Ctrl-C and
    :class:`~foglearn.errors.SolverError` if the search finds no residual path.
    """
    N = prob.supply.size
    t0 = time.perf_counter()
    cp = K.coupled_structure(prob.ptr, prob.alive_end, prob.arc_sink, prob.arc_cost, prob.unsat, N)
    x, lam = K.greedy_fill(prob.ptr, prob.alive_end, prob.arc_cost, prob.arc_cap, prob.f,
                           prob.supply)
    problem = K.Problem(K.Nodes(prob.supply, prob.f, prob.sink_cap),
                        K.Arcs(prob.arc_src, prob.arc_sink, prob.arc_cost, prob.arc_cap), cp)
    t1 = time.perf_counter()
    status, pi, load, searches, n_aug, n_scan, n_reset = interrupt.call(
        K.ssp, problem, x, lam, TOL, heap_cap, settle_cap, stop=interrupt.new_stop_flag())
    if status == K.INTERRUPTED:
        raise interrupt.PlanInterrupted("planning interrupted (Ctrl-C); no plan was returned")
    if status != K.OK:
        raise SolverError("solver = 'linear': successive shortest paths found no residual path "
                          "(internal error: discarding should always be possible)")
    t2 = time.perf_counter()
    primal = float(K.primal_value(prob.ptr, prob.arc_cost, x, prob.f, prob.supply))
    dual = float(K.dual_bound(prob.ptr, prob.arc_sink, prob.arc_cost, prob.arc_cap, prob.f, prob.supply,
                              prob.sink_cap, lam, pi))
    t3 = time.perf_counter()
    coupled = int(np.count_nonzero(np.diff(cp.sh_ptr)))
    return {"x": x, "lam": lam, "pi": pi, "load": load, "primal": primal, "dual": dual,
            "searches": int(searches), "subtree_resets": int(n_reset),
            "augmentations": int(n_aug), "arc_scans": int(n_scan),
            "shared_arcs": int(cp.sh_arc.size), "private_arcs": int(cp.pv_arc.size),
            "coupled_sources": coupled,
            "saturable_sinks": int(N - prob.unsat.sum()),
            "structure_seconds": t1 - t0, "ssp_seconds": t2 - t1, "certificate_seconds": t3 - t2}


def plan_linear(scenario: Scenario, information: str = "perfect", check: bool = True) -> Plan:
    """The exact linear-error plan with capacities (min-cost flow, see module docstring).

    Raises :class:`~foglearn.errors.SolverError` when the dual certificate does not prove optimality to a relative
    gap of ``GAP_TOL`` (never returns an uncertified plan).
    """
    t0 = time.perf_counter()
    prob = FlowProblem(scenario)
    t1 = time.perf_counter()
    prob.reduce()
    t2 = time.perf_counter()
    sol = solve_flow(prob)
    t3 = time.perf_counter()
    primal, dual = sol["primal"], sol["dual"]
    gap = max(primal - dual, 0.0)
    rel = gap / max(abs(primal), 1.0)
    if not rel <= GAP_TOL:
        raise SolverError(f"solver = 'linear': duality gap {gap:.3g} (relative {rel:.3g} > {GAP_TOL:g}) after "
                        f"successive shortest paths; the solve failed to certify optimality")
    keep, offload = K.fractions(prob.ptr, prob.arc_src, prob.arc_edge, sol["x"], prob.supply, prob.n, prob.E)
    t4 = time.perf_counter()
    extra: dict[str, Any] = {"arcs": prob.n_arcs, "alive_arcs": prob.n_alive, "reduction_rounds": int(prob.rounds)}
    extra.update({k: v for k, v in sol.items() if isinstance(v, int | float) and k not in ("primal", "dual")})
    del prob, sol  # the network and the flows (1.5 GB at n = 10⁵) are not needed to build the plan
    extra.update({"build_seconds": t1 - t0, "reduce_seconds": t2 - t1, "solve_seconds": t3 - t2,
                  "fractions_seconds": t4 - t3, "dual_bound": dual, "precision": "float64"})
    stats = SolverStats("linear-flow", "optimal", time.perf_counter() - t0, primal, gap, extra)
    return Plan.from_fractions(scenario, keep, offload, error="linear", stats=stats,
                               information=information, check=check, copy=False)
