"""Planning solvers: greedy (Thm 3), exact min-cost flow, square-root model, windows, Thm 2."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from foglearn.network.scenario import Scenario
from foglearn.planning import PlanError, check_feasible, plan
from foglearn.planning.capacities import straggler_capacities
from foglearn.planning.flow import plan_linear
from foglearn.planning.greedy import plan_greedy
from foglearn.planning.plan import Plan, offload_sum
from foglearn.planning.reference import reference_linear, reference_sqrt
from foglearn.planning.sqrt import plan_sqrt


def random_scenario(seed: int, n: int, T: int, capacities: bool, p_edge: float = 0.6,
                    max_points: int = 8, down: float = 0.1) -> Scenario:
    rng = np.random.default_rng(seed)
    pairs = [(i, j) for i in range(n) for j in range(n) if i != j and rng.random() < p_edge]
    src = np.array([p[0] for p in pairs], dtype=np.int64)
    dst = np.array([p[1] for p in pairs], dtype=np.int64)
    E = src.size
    kw = {}
    if capacities:
        kw = dict(proc_cap=rng.uniform(0, 4 * max_points, (T, n)),
                  link_cap=rng.uniform(0, 4 * max_points / n, (T, E)))
    return Scenario(collected=rng.integers(0, max_points + 1, (T, n)), proc_cost=rng.uniform(0, 1, (T, n)),
                    error_weight=rng.uniform(0, 1, (T, n)), src=src, dst=dst,
                    link_cost=rng.uniform(0, 1 / n, (T, E)), link_up=rng.random((T, E)) >= down, **kw)


small = st.tuples(st.integers(0, 10_000), st.integers(2, 6), st.integers(1, 5), st.booleans())


def _common_invariants(sc: Scenario, p: Plan) -> None:
    D = sc.collected
    tot = p.keep + p.discard + offload_sum(sc, p.offload)
    assert np.allclose(tot[D > 0], 1.0, atol=1e-8)
    assert np.all(p.offload[~sc.usable_links()] == 0)
    assert np.all(p.offload[-1] == 0)
    check_feasible(sc, p)
    recomputed = Plan.from_fractions(sc, p.keep, p.offload, error=p.error).costs.total
    assert recomputed == pytest.approx(p.stats.objective, rel=1e-9, abs=1e-9)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(small)
def test_linear_flow_matches_highs(args):
    seed, n, T, caps = args
    sc = random_scenario(seed, n, T, caps)
    p = plan_linear(sc)
    _common_invariants(sc, p)
    ref = reference_linear(sc)
    assert p.stats.objective == pytest.approx(ref.stats.objective, rel=1e-7, abs=1e-7)
    assert p.stats.gap <= 1e-7 * max(1.0, abs(p.stats.objective))


@settings(max_examples=40, deadline=None)
@given(st.tuples(st.integers(0, 10_000), st.integers(2, 6), st.integers(1, 5)))
def test_greedy_equals_linear_without_capacities(args):
    seed, n, T = args
    sc = random_scenario(seed, n, T, capacities=False)
    g = plan_greedy(sc)
    _common_invariants(sc, g)
    lin = plan_linear(sc)
    assert g.stats.objective == pytest.approx(lin.stats.objective, rel=1e-9, abs=1e-9)
    D = sc.collected > 0
    for arr in (g.keep[D], g.discard[D], g.offload[sc.collected[:, sc.src] > 0]):
        assert np.all((arr == 0) | (arr == 1))


def test_greedy_tie_rule():
    # c = f = offload cost: ties go to local processing; then offload beats discard
    sc = Scenario(collected=[[4, 0], [0, 0]], proc_cost=[[0.5, 0.5], [0.4, 0.0]], error_weight=[[0.5, 1], [1, 1]],
                  src=[0], dst=[1], link_cost=[[0.5], [0.0]])
    p = plan_greedy(sc)
    assert p.keep[0, 0] == 1.0
    sc2 = sc.replace(proc_cost=[[0.9, 0.5], [0.4, 0.0]], link_cost=[[0.5], [0.0]])
    p2 = plan_greedy(sc2)  # offload 0.5 + 0.0 = 0.5 = f: offload before discard
    assert p2.offload[0, 0] == 1.0


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(small)
def test_sqrt_matches_clarabel(args):
    seed, n, T, caps = args
    sc = random_scenario(seed, n, T, caps)
    p = plan_sqrt(sc)
    check_feasible(sc, p)
    ref = reference_sqrt(sc)
    assert p.stats.objective == pytest.approx(ref.stats.objective, rel=1e-6, abs=1e-6)
    assert p.costs.total == pytest.approx(p.stats.objective, rel=1e-9)


def theorem4_instance(n, D, c, c_srv, c_t, gamma, scale=1000):
    # D -> K D and gamma -> K^1.5 gamma leave (r*, s*) unchanged; the server's own single point
    # (it needs D > 0 at slot 2 for its error term, docs/model.md §2) then perturbs s by 1/(n D K) only.
    K = scale
    T, m = 2, n + 1
    coll = np.zeros((T, m), dtype=np.int64)
    coll[0, :n] = D * K
    coll[1, n] = 1
    cost = np.full((T, m), c)
    cost[:, n] = c_srv
    f = np.full((T, m), gamma * K ** 1.5)
    src = np.arange(n)
    dst = np.full(n, n)
    return Scenario(collected=coll, proc_cost=cost, error_weight=f, src=src, dst=dst,
                    link_cost=np.full((T, n), c_t))


@pytest.mark.parametrize("case,expected", [
    ((10, 1000, .5, .1, .05, 50), (.983399, .003029)),
    ((5, 200, .3, .05, .1, 100), (.800498, .048075)),
    ((5, 15, .2, .1, .05, 20), (0.0, .189883)),
    ((10, 10, .5, .1, .05, 50), (0.0, .119319)),
])
def test_theorem4_closed_form(case, expected):
    sc = theorem4_instance(*case)
    p = plan(sc, error="sqrt")
    n = case[0]
    r = p.discard[0, :n]
    s = p.offload[0]
    # the leaves are symmetric: the optimum fixes the total offloaded, not who sends it
    # tolerance: the server's own point moves s by at most 1/(n D K) (K = 1000, see the instance)
    tol = 2e-6 + 1.0 / (n * case[1] * 1000)
    assert r.mean() == pytest.approx(expected[0], abs=tol)
    assert s.mean() == pytest.approx(expected[1], abs=tol)
    assert np.allclose(p.keep[0, :n], p.keep[0, 0], atol=1e-6)  # every leaf keeps (γ/2c)^(2/3) or all


def test_straggler_capacities_set_theorem2_per_device():
    sc = random_scenario(0, 4, 3, capacities=False)
    sc2 = straggler_capacities(sc, 1.0, np.array([10.0, 20.0, 30.0, 40.0]))
    assert sc2.proc_cap[0, 0] == pytest.approx(9.538, abs=5e-4)  # docs/model.md §3: (σ, μ) = (1, 10)
    assert np.allclose(sc2.proc_cap, sc2.proc_cap[0])  # every slot
    assert (np.diff(sc2.proc_cap[0]) > 0).all()  # faster devices take more
    soj = straggler_capacities(sc, 1.0, 10.0, wait="sojourn")
    assert soj.proc_cap[0, 0] == pytest.approx(9.491, abs=5e-4)
    with pytest.raises(ValueError, match="sigma"):
        straggler_capacities(sc, 0.0, 10.0)
    with pytest.raises(ValueError, match="sojourn"):
        straggler_capacities(sc, 0.05, 10.0, wait="sojourn")
    p = plan(sc2)
    check_feasible(sc2, p)


@pytest.mark.parametrize("error", ["linear", "sqrt"])
def test_windowed_information_realises_feasible_plans(error):
    sc = random_scenario(3, 5, 12, capacities=True, max_points=20)
    p = plan(sc, error=error, information=4)
    assert p.information == "estimated(window=4)"
    check_feasible(sc, p)
    assert p.costs.violations >= 0
    assert np.all(p.offload[:4] == 0)  # first window: no movement
    # violations are counted when estimates overload devices
    tight = sc.replace(proc_cap=np.where(np.arange(12)[:, None] % 2 == 0, 1.0, 40.0) * np.ones((12, 5)))
    q = plan(tight, information=4)
    assert q.costs.violations > 0
    check_feasible(tight, q)


def test_no_movement_baseline():
    sc = random_scenario(5, 4, 6, capacities=True, max_points=30)
    p = plan(sc, movement=False)
    assert np.all(p.offload == 0)
    check_feasible(sc, p)
    over = sc.collected > sc.proc_cap * (1 + 1e-7) + 1e-7
    assert p.costs.violations == int(over.sum())


def test_bad_names():
    sc = random_scenario(1, 3, 2, capacities=False)
    with pytest.raises(PlanError, match="solver"):
        plan(sc, solver="simplex")
    with pytest.raises(PlanError, match="error"):
        plan(sc, error="cubic")
    with pytest.raises(PlanError, match="information"):
        plan(sc, information=0)
    with pytest.raises(PlanError, match="information = 'soon'"):
        plan(sc, information="soon", movement=False)
    with pytest.raises(PlanError, match="greedy"):
        plan(random_scenario(1, 3, 2, capacities=True), solver="greedy")
