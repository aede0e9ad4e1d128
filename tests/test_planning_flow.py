"""The exact linear min-cost-flow solver: unsaturable-sink reduction, persistent SSP, certificate."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from foglearn.errors import SolverError
from foglearn.network import synthetic
from foglearn.network.scenario import Scenario
from foglearn.planning import check_feasible
from foglearn.planning import flow as F
from foglearn.planning import flow_kernels as K
from foglearn.planning.reference import reference_linear


def _objective_close(a: float, b: float, rel: float = 1e-9) -> bool:
    return abs(a - b) <= rel * max(1.0, abs(a), abs(b))


def hand_instance() -> Scenario:
    """Device 0 collects 10 points at t=0; links 0->1 and 0->2 (capacity 3 each).

    Sink (1, t=1) has capacity 100 >= every point that could reach it: unsaturable, private.
    Sink (2, t=1) has capacity 1 < 3 that could arrive: saturable. Sink (0, t=0) has capacity 4
    < 10: saturable (its own keep). Costs: keep 0.2, offload to 1: 0.1 + 0.5, to 2: 0.05 + 0.1,
    discard 0.9 (device 0); at t=1 the receivers' own data is absent.
    """
    collected = [[10, 0, 0], [0, 0, 0]]
    proc_cost = [[0.2, 0.5, 0.1], [0.3, 0.5, 0.1]]
    error_weight = [[0.9, 0.9, 0.9], [0.9, 0.9, 0.9]]
    proc_cap = [[4.0, 100.0, 100.0], [100.0, 100.0, 1.0]]
    src, dst = [0, 0], [1, 2]
    link_cost = [[0.1, 0.05], [0.1, 0.05]]
    link_cap = [[3.0, 3.0], [3.0, 3.0]]
    return Scenario(collected=collected, proc_cost=proc_cost, error_weight=error_weight, src=src, dst=dst,
                    link_cost=link_cost, proc_cap=proc_cap, link_cap=link_cap)


def test_hand_instance_reduction_and_optimum():
    sc = hand_instance()
    prob = F.build_problem(sc)
    n = sc.n_devices
    # sink (device 1, t=1) can receive at most 3 <= 100: unsaturable; (2, t=1) and (0, t=0) are not
    assert prob.unsat[1 * n + 1]
    assert not prob.unsat[1 * n + 2]
    assert not prob.unsat[0]
    # optimum by hand: keep 4 (0.2), offload 1 to device 2 (0.15), 3 to device 1 (0.6), discard 2 (0.9)
    expected = 4 * 0.2 + 1 * 0.15 + 3 * 0.6 + 2 * 0.9
    p = F.plan_linear(sc)
    assert p.stats.objective == pytest.approx(expected, abs=1e-12)
    assert reference_linear(sc).stats.objective == pytest.approx(expected, abs=1e-7)
    assert p.keep[0, 0] == pytest.approx(0.4)
    assert p.offload[0].tolist() == pytest.approx([0.3, 0.1])
    assert p.discard[0, 0] == pytest.approx(0.2)
    assert p.stats.gap <= 1e-12


def test_private_cover_prunes_dearer_options():
    # device 0's own sink now holds all 10 points and nothing else reaches it: keeping (0.2) is a
    # private option covering D, so θ = 0.2 and the offload to device 1 (0.6) is pruned; the
    # offload to device 2 (0.15, into a saturable sink) stays
    sc = hand_instance().replace(proc_cap=[[50.0, 100.0, 100.0], [100.0, 100.0, 1.0]])
    prob = F.build_problem(sc)
    assert prob.unsat[0]
    assert prob.theta[0] == pytest.approx(0.2)
    live = range(prob.ptr[0], prob.alive_end[0])
    assert sorted(int(prob.arc_edge[a]) for a in live) == [-1, 1]
    assert prob.n_alive == F.build_problem(sc, reduce=False).n_alive - 1
    p = F.plan_linear(sc)
    assert p.offload[0].tolist() == pytest.approx([0.0, 0.1])
    assert p.keep[0, 0] == pytest.approx(0.9)
    assert p.stats.objective == pytest.approx(0.15 + 9 * 0.2, abs=1e-12)
    assert p.stats.extra["coupled_sources"] == 1


def random_capacitated(seed: int, n: int, T: int, max_points: int = 12, p_edge: float = 0.7,
                       cap_scale: float = 1.0) -> Scenario:
    rng = np.random.default_rng(seed)
    pairs = [(i, j) for i in range(n) for j in range(n) if i != j and rng.random() < p_edge]
    src = np.array([p[0] for p in pairs], dtype=np.int64)
    dst = np.array([p[1] for p in pairs], dtype=np.int64)
    E = src.size
    return Scenario(collected=rng.integers(0, max_points + 1, (T, n)), proc_cost=rng.uniform(0, 1, (T, n)),
                    error_weight=rng.uniform(0, 1, (T, n)), src=src, dst=dst,
                    link_cost=rng.uniform(0, 1 / n, (T, E)), link_up=rng.random((T, E)) >= 0.1,
                    proc_cap=rng.uniform(0, cap_scale * 4 * max_points, (T, n)),
                    link_cap=rng.uniform(0, 4 * max_points / n, (T, E)))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 100_000), st.integers(2, 8), st.integers(1, 6), st.sampled_from([0.25, 0.5, 1.0]))
def test_reduced_solver_equals_highs_and_unreduced(seed, n, T, cap_scale):
    sc = random_capacitated(seed, n, T, cap_scale=cap_scale)
    p = F.plan_linear(sc)
    check_feasible(sc, p)
    ref = reference_linear(sc).stats.objective
    assert _objective_close(p.stats.objective, ref, 1e-9), (p.stats.objective, ref)
    assert p.stats.gap <= 1e-9 * max(1.0, abs(p.stats.objective))
    # the reduction is exact: solving the unreduced network gives the same optimum
    full = F.solve_flow(F.build_problem(sc, reduce=False))
    assert _objective_close(full["primal"], p.stats.objective, 1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_synthetic_instances_match_highs(seed):
    # the benchmark's distributions at a size HiGHS solves quickly; tight capacities force many
    # overloaded sinks, long searches and subtree resets
    sc = synthetic(n_devices=40, horizon=12, topology="random", rho=0.5, capacities=True, seed=seed,
                   max_points=60)
    sc = sc.replace(proc_cap=sc.proc_cap * 0.3)
    p = F.plan_linear(sc)
    check_feasible(sc, p)
    ref = reference_linear(sc).stats.objective
    assert _objective_close(p.stats.objective, ref, 1e-9), (p.stats.objective, ref)
    assert p.stats.extra["subtree_resets"] > 0
    assert p.stats.extra["saturable_sinks"] < sc.horizon * sc.n_devices


def test_growing_heap_and_settled_list_is_exact():
    # the search's heap and settled list start at one entry and double when full: the same flows
    # and duals, bit for bit, as with room to spare from the start
    sc = synthetic(n_devices=30, horizon=8, topology="random", rho=0.5, capacities=True, seed=4, max_points=60)
    sc = sc.replace(proc_cap=sc.proc_cap * 0.3)
    prob = F.build_problem(sc)
    roomy = F.solve_flow(prob)
    tight = F.solve_flow(prob, heap_cap=1, settle_cap=1)
    assert roomy["subtree_resets"] > 0
    for key in ("x", "lam", "pi", "load"):
        assert np.array_equal(tight[key], roomy[key]), key
    assert tight["primal"] == roomy["primal"]


def test_failed_certificate_raises(monkeypatch):
    sc = random_capacitated(7, 6, 4, cap_scale=0.3)
    F.plan_linear(sc)  # certifies
    real = K.dual_bound

    def weak_bound(*args):
        return real(*args) - 1.0  # a dual bound that proves nothing

    monkeypatch.setattr(K, "dual_bound", weak_bound)
    with pytest.raises(SolverError, match="duality gap"):
        F.plan_linear(sc)


def test_dual_bound_is_a_lower_bound_for_any_prices():
    sc = random_capacitated(11, 6, 5, cap_scale=0.3)
    prob = F.build_problem(sc)
    opt = F.solve_flow(prob)["primal"]
    rng = np.random.default_rng(0)
    N = prob.supply.size
    for _ in range(20):
        lam = rng.uniform(0, 1, N)
        pi = np.where(np.isfinite(prob.sink_cap), rng.uniform(0, 0.5, N), 0.0)
        assert K.dual_bound(prob.ptr, prob.arc_sink, prob.arc_cost, prob.arc_cap, prob.f, prob.supply,
                            prob.sink_cap, lam, pi) <= opt + 1e-9


def test_no_links_and_churn():
    sc = Scenario(collected=[[3, 4]], proc_cost=[[0.2, 0.9]], error_weight=[[0.5, 0.5]], src=[], dst=[],
                  link_cost=np.zeros((1, 0)), proc_cap=[[1.0, 10.0]])
    p = F.plan_linear(sc)
    assert p.stats.objective == pytest.approx(1 * 0.2 + 2 * 0.5 + 4 * 0.5)
    for T in (1, 2, 6):
        sc = synthetic(n_devices=12, horizon=T, topology="random", rho=0.5, capacities=True, seed=3,
                       max_points=30, leave_prob=0.3, link_failure=0.2)
        p = F.plan_linear(sc)
        check_feasible(sc, p)
        assert _objective_close(p.stats.objective, reference_linear(sc).stats.objective, 1e-9)
