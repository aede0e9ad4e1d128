"""Square-root error planner (Lemma 1, Thm 4): exactness against CVXPY+Clarabel, certificate, G > 0."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from foglearn.errors import InputError, SolverError
from foglearn.network.generators import synthetic
from foglearn.network.scenario import Scenario
from foglearn.planning import PlanError, check_feasible, plan, sqrt_kernels
from foglearn.planning.hard_instances import short_of_data
from foglearn.planning.plan import Plan, offload_sum
from foglearn.planning.reference import reference_sqrt
from foglearn.planning.sqrt import REPAIR_FRACTION, plan_sqrt, sqrt_dual_bound


def make_scenario(seed: int, n: int, T: int, capacities: bool, scarce: bool, inactive: float = 0.0,
                  down: float = 0.1, p_edge: float = 0.7) -> Scenario:
    """Random instance; ``scarce``: few points and cheap processing, so sinks want more than
    their own data and shared sources are over-subscribed (the coupled case)."""
    rng = np.random.default_rng(seed)
    pairs = [(i, j) for i in range(n) for j in range(n) if i != j and rng.random() < p_edge]
    src = np.array([p[0] for p in pairs], dtype=np.int64)
    dst = np.array([p[1] for p in pairs], dtype=np.int64)
    E = src.size
    max_points = 3 if scarce else 8
    active = rng.random((T, n)) >= inactive
    collected = np.where(active, rng.integers(0, max_points + 1, (T, n)), 0)
    proc_cost = rng.uniform(0, 1, (T, n)) * (0.05 if scarce else 1.0)
    kw = {}
    if capacities:
        kw = dict(proc_cap=rng.uniform(0, 4 * max_points, (T, n)),
                  link_cap=rng.uniform(0, 4 * max_points / n, (T, E)))
        # a device with an error term needs capacity (else f/sqrt(0) is infinite)
        kw["proc_cap"] = np.where(collected > 0, np.maximum(kw["proc_cap"], 0.5), kw["proc_cap"])
    return Scenario(collected=collected, proc_cost=proc_cost, error_weight=rng.uniform(0, 1, (T, n)),
                    src=src, dst=dst, link_cost=rng.uniform(0, 1 / n, (T, E)),
                    link_up=rng.random((T, E)) >= down, active=active, **kw)


def _check_plan(sc: Scenario, p: Plan) -> None:
    check_feasible(sc, p)
    D = sc.collected
    tot = p.keep + p.discard + offload_sum(sc, p.offload)
    assert np.allclose(tot[D > 0], 1.0, atol=1e-8)
    assert np.all(p.offload[~sc.usable_links()] == 0)
    recomputed = Plan.from_fractions(sc, p.keep, p.offload, error="sqrt")
    assert recomputed.costs.total == pytest.approx(p.stats.objective, rel=1e-9, abs=1e-9)
    assert p.costs.total == pytest.approx(p.stats.objective, rel=1e-9, abs=1e-9)
    err = (D > 0) & (sc.error_weight > 0)
    assert np.all(p.processed[err] > 0)
    # the certificate: a Lagrangian lower bound within 1e-9 of the plan's cost
    assert 0 <= p.stats.gap <= 1e-9 * max(1.0, abs(p.stats.objective))
    assert p.stats.extra["dual_bound"] <= p.stats.objective + 1e-9 * max(1.0, abs(p.stats.objective))


scen = st.tuples(st.integers(0, 100_000), st.integers(2, 6), st.integers(1, 5), st.booleans(), st.booleans(),
                 st.sampled_from([0.0, 0.0, 0.2]), st.sampled_from([0.0, 0.1, 0.4]))


def feasible_reference_cost(sc: Scenario, ref: Plan) -> float:
    """The reference plan's cost after restoring the capacities it violates by round-off.

    Clarabel stops at ~1e-9 relative accuracy, so a plan of it may process a hair more than
    ``C_i(t)`` (or send more than ``C_ij(t)``) and cost slightly *less* than the optimum. Scaling the
    inflows of such a device (the flow of such a link) down to the capacity gives a feasible plan
    whose cost is an upper bound on the optimum, so any valid lower bound must lie below it.
    """
    T = sc.horizon
    D = sc.collected.astype(float)
    cap = sc.effective_proc_cap()
    G = ref.processed
    fac = np.where(G > cap, cap / np.where(G > 0, G, 1.0), 1.0)
    keep = ref.keep * fac
    offload = ref.offload.copy()
    if sc.n_edges and T > 1:
        offload[:-1] *= fac[1:, sc.dst]
        sent = offload * D[:, sc.src]
        offload *= np.where(sent > sc.link_cap, sc.link_cap / np.where(sent > 0, sent, 1.0), 1.0)
    feasible = Plan.from_fractions(sc, keep, offload, error="sqrt")
    check_feasible(sc, feasible, tol=1e-12)
    return feasible.costs.total


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scen)
@example((5, 2, 1, True, True, 0.0, 0.0))  # Clarabel processes 1.4e-9 above C_0(0): cheaper than optimal
def test_sqrt_matches_clarabel(args):
    seed, n, T, caps, scarce, inactive, down = args
    sc = make_scenario(seed, n, T, caps, scarce, inactive, down)
    ref = reference_sqrt(sc)
    upper = feasible_reference_cost(sc, ref)
    for method in ("ipm", "repair"):
        p = plan_sqrt(sc, method=method)
        _check_plan(sc, p)
        # ours is certified optimal: never worse than the interior-point answer beyond its accuracy
        assert p.stats.objective == pytest.approx(ref.stats.objective, rel=1e-6, abs=1e-6)
        # the bound is a valid lower bound: below every feasible plan, the repaired reference included
        assert p.stats.extra["dual_bound"] <= upper + 1e-12 * max(1.0, upper)


def test_reference_violating_capacity_is_not_a_counterexample():
    # the hypothesis find: T = 1, so each device solves min c G + f/sqrt(G) on (0, min(D, C)] alone;
    # the optimum is G = C_0(0), our bound equals it, and Clarabel's plan exceeds C_0(0) by ~1e-9
    sc = make_scenario(5, 2, 1, True, True, 0.0, 0.0)
    p = plan_sqrt(sc)
    c, f, C = sc.proc_cost[0, 0], sc.error_weight[0, 0], sc.proc_cap[0, 0]
    assert p.processed[0, 0] == C
    assert p.stats.extra["dual_bound"] == pytest.approx(c * C + f / np.sqrt(C), rel=1e-15)
    ref = reference_sqrt(sc)
    assert ref.processed[0, 0] > C  # infeasible by round-off ...
    assert ref.costs.total < p.stats.extra["dual_bound"]  # ... hence "cheaper" than the optimum
    assert feasible_reference_cost(sc, ref) >= p.stats.extra["dual_bound"]


@pytest.mark.parametrize("method", ["ipm", "repair"])
def test_coupled_instance_is_exact(method):
    # scarce data, cheap processing: many sources are wanted by several sinks
    found = 0
    for seed in range(40):
        sc = make_scenario(seed, 6, 5, capacities=seed % 2 == 0, scarce=True, p_edge=0.9, down=0.0)
        p = plan_sqrt(sc, method=method)
        if p.stats.extra["oversubscribed_sources"] == 0:
            assert p.stats.extra["method"] == "decoupled"  # the decoupled start is optimal as it is
            continue
        found += 1
        assert p.stats.extra["method"] == method
        assert p.stats.extra["repair_steps" if method == "repair" else "newton_steps"] > 0
        _check_plan(sc, p)
        D = sc.collected.astype(float)
        sent = offload_sum(sc, p.offload * D[:, sc.src]) if sc.n_edges else 0.0
        assert np.all(p.keep * D + sent <= D * (1 + 1e-9) + 1e-9)  # supplies respected after the repair
        ref = reference_sqrt(sc)
        assert p.stats.objective == pytest.approx(ref.stats.objective, rel=1e-6)
        if found == 8:
            break
    assert found >= 8


def test_synthetic_instance_matches_clarabel():
    sc = synthetic(n_devices=20, horizon=15, topology="random", rho=0.3, capacities=True, seed=3, max_points=60)
    p = plan(sc, error="sqrt")
    _check_plan(sc, p)
    ref = reference_sqrt(sc)
    assert p.stats.objective == pytest.approx(ref.stats.objective, rel=1e-7)


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10_000))
def test_dual_bound_is_a_lower_bound_for_any_prices(seed):
    sc = make_scenario(seed, 4, 3, capacities=bool(seed % 2), scarce=bool(seed % 3))
    opt = plan_sqrt(sc).stats.objective
    rng = np.random.default_rng(seed)
    for scale in (0.01, 0.3, 3.0):
        p = rng.exponential(scale, sc.horizon * sc.n_devices)
        assert sqrt_dual_bound(sc, p) <= opt * (1 + 1e-12) + 1e-12


def test_no_links_and_single_slot():
    rng = np.random.default_rng(1)
    sc = Scenario(collected=rng.integers(0, 5, (1, 3)), proc_cost=rng.uniform(0, 1, (1, 3)),
                  error_weight=rng.uniform(0, 1, (1, 3)), src=np.zeros(0, int), dst=np.zeros(0, int),
                  link_cost=np.zeros((1, 0)))
    p = plan_sqrt(sc)
    _check_plan(sc, p)
    c, f, D = sc.proc_cost[0], sc.error_weight[0], sc.collected[0]
    G = np.where(D > 0, np.minimum(D, (f / (2 * c)) ** (2 / 3)), 0)  # closed form per device
    assert np.allclose(p.processed[0], G, rtol=1e-12)


def test_zero_capacity_with_error_term_is_an_error():
    sc = Scenario(collected=[[2, 0]], proc_cost=[[0.5, 0.5]], error_weight=[[1.0, 1.0]], src=[0], dst=[1],
                  link_cost=[[0.0]], proc_cap=[[0.0, 5.0]])
    with pytest.raises(PlanError, match=r"proc_cap\[0, 0\] = 0"):
        plan_sqrt(sc)


@pytest.mark.parametrize("method", ["ipm", "repair"])
def test_raises_when_it_cannot_certify(monkeypatch, method):
    sc = make_scenario(7, 5, 4, capacities=True, scarce=True, p_edge=0.9, down=0.0)
    real = sqrt_kernels.dual_bound
    monkeypatch.setattr(sqrt_kernels, "dual_bound", lambda *a: real(*a) - 1.0)
    with pytest.raises(SolverError, match="cannot certify"):
        plan_sqrt(sc, method=method, max_steps=60)


@pytest.mark.parametrize("method", ["ipm", "repair"])
def test_raises_at_step_limit(method):
    key = "repair_steps" if method == "repair" else "newton_steps"
    for seed in range(40):
        sc = make_scenario(seed, 6, 5, capacities=False, scarce=True, p_edge=0.9, down=0.0)
        if plan_sqrt(sc, method=method).stats.extra.get(key, 0) > 1:
            with pytest.raises(SolverError, match="step limit"):
                plan_sqrt(sc, method=method, max_steps=1)
            return
    pytest.fail("no instance needed more than one step")


def test_structural_choice_of_method():
    # the paper's synthetic instances: a handful of over-subscribed sources, repaired locally
    sc = synthetic(n_devices=40, horizon=30, topology="random", rho=0.3, capacities=True, seed=0, max_points=60)
    p = plan_sqrt(sc)
    _check_plan(sc, p)
    over = p.stats.extra["oversubscribed_sources"]
    assert 0 < over <= REPAIR_FRACTION * np.count_nonzero(sc.collected)
    assert p.stats.extra["method"] == "repair"
    # every device short of data: nearly every source over-subscribed, the interior point runs
    p = plan_sqrt(short_of_data(8, 4))
    assert p.stats.extra["oversubscribed_sources"] > 0.5 * 8 * 4
    assert p.stats.extra["method"] == "ipm"


def test_unknown_method_is_an_input_error():
    with pytest.raises(InputError, match="method must be"):
        plan_sqrt(short_of_data(3, 2), method="simplex")


def test_auto_finishes_with_the_repair_when_the_interior_point_cannot_certify(monkeypatch):
    """The rare uncertifiable interior point (method="auto"): the repair, exact on every instance,
    gives the same certified plan as method="repair"; method="ipm" still raises."""
    from foglearn.planning import sqrt as sqrt_mod

    sc = short_of_data(8, 4)
    assert plan_sqrt(sc).stats.extra["method"] == "ipm"

    def fails(*args, **kwargs):
        raise SolverError("solver = 'sqrt': cannot certify the plan: the interior point stopped (test)")

    monkeypatch.setattr(sqrt_mod, "_interior_point", fails)
    p = plan_sqrt(sc)
    assert p.stats.extra["method"] == "repair" and "interior point stopped" in p.stats.extra["ipm_failed"]
    assert p.stats.extra["relative_gap"] <= 1e-9
    ref = plan_sqrt(sc, method="repair")
    assert p.stats.objective == ref.stats.objective
    np.testing.assert_array_equal(p.keep, ref.keep)
    with pytest.raises(SolverError, match="interior point stopped"):
        plan_sqrt(sc, method="ipm")
