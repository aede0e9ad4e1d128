"""The planners at scale: ~10 neighbours per device (``random``, ρ = 10/n), the optimised paths
(sequential arc construction, per-source stable sorts, int32 indices, arrays handed over
without copies) against an independent solver and against the rules they must keep."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from foglearn.errors import SolverError
from foglearn.network.generators import synthetic
from foglearn.network.scenario import Scenario, ScenarioError
from foglearn.planning import flow as F
from foglearn.planning.greedy import plan_greedy
from foglearn.planning.reference import reference_linear


def _sparse(n: int, T: int, capacities: bool = True, seed: int = 5, **kw) -> Scenario:
    return synthetic(n_devices=n, horizon=T, topology="random", rho=10 / n, capacities=capacities, seed=seed, **kw)


@pytest.mark.parametrize("max_points", [60, None])
def test_linear_at_ten_neighbours_matches_highs(max_points):
    sc = _sparse(2000, 10, max_points=max_points)
    assert 9 < sc.n_edges / sc.n_devices < 11
    ours = F.plan_linear(sc)
    ref = reference_linear(sc)
    assert ours.stats.gap <= F.GAP_TOL * abs(ours.stats.objective)
    assert ours.stats.objective == pytest.approx(ref.stats.objective, rel=1e-9)
    assert ours.costs.total == pytest.approx(ours.stats.objective, rel=1e-12)
    assert ours.costs.violations == 0


def test_linear_plan_does_not_depend_on_the_edge_order():
    sc = _sparse(500, 12, max_points=60, link_failure=0.1, leave_prob=0.05)
    perm = np.random.default_rng(1).permutation(sc.n_edges)
    shuffled = sc.replace(src=sc.src[perm], dst=sc.dst[perm], link_cost=sc.link_cost[:, perm],
                          link_cap=sc.link_cap[:, perm], link_up=sc.link_up[:, perm])
    a, b = F.plan_linear(sc), F.plan_linear(shuffled)
    assert b.stats.objective == pytest.approx(a.stats.objective, rel=1e-12)
    np.testing.assert_allclose(b.offload, a.offload[:, perm], atol=1e-9)
    np.testing.assert_allclose(b.keep, a.keep, atol=1e-9)


@pytest.mark.parametrize("topology, n", [("random", 60), ("full", 40)])  # short lists (insertion), long (merge)
def test_arcs_sorted_by_cost_keep_first_then_edge_order(topology, n):
    sc = synthetic(n_devices=n, horizon=4, topology=topology, rho=0.2, capacities=True, seed=3, max_points=10)
    rng = np.random.default_rng(0)
    # many ties: two processing-cost levels and link costs 0 or 0.1
    tied = sc.replace(proc_cost=rng.choice([0.2, 0.4], size=sc.proc_cost.shape),
                      link_cost=rng.choice([0.0, 0.1], size=sc.link_cost.shape),
                      error_weight=np.ones_like(sc.error_weight), proc_cap=sc.proc_cap + 1.0)
    prob = F.build_problem(tied, reduce=False)
    for s in range(prob.supply.size):
        a0, a1 = prob.ptr[s], prob.ptr[s + 1]
        key = list(zip(prob.arc_cost[a0:a1], prob.arc_edge[a0:a1], strict=True))
        assert key == sorted(key), f"source {s}: arcs not in (cost, keep first, edge) order"
    assert (np.diff(prob.ptr) > 32).any() == (topology == "full")


def test_greedy_at_ten_neighbours_is_theorem_3():
    sc = _sparse(3000, 5, capacities=False, max_points=60)
    p = plan_greedy(sc)
    # Theorem 3 per point: the cheapest of keep, the best usable neighbour and discard
    usable = sc.usable_links()
    best = np.full(sc.proc_cost.shape, np.inf)
    recv = np.full(sc.link_cost.shape, np.inf)
    recv[:-1] = sc.link_cost[:-1] + sc.proc_cost[1:, sc.dst]
    recv = np.where(usable, recv, np.inf)
    np.minimum.at(best, (slice(None), sc.src), recv)
    per_point = np.minimum(np.minimum(sc.proc_cost, best), sc.error_weight)
    assert p.stats.objective == pytest.approx(float((per_point * sc.collected).sum()), rel=1e-12)


def test_plan_runs_at_a_hundred_thousand_devices():
    sc = _sparse(100_000, 3, max_points=60)
    assert 9.9 < sc.n_edges / sc.n_devices < 10.1
    p = F.plan_linear(sc)
    assert p.stats.status == "optimal" and p.costs.violations == 0
    assert p.stats.gap <= F.GAP_TOL * abs(p.stats.objective)


def test_synthetic_keeps_its_arrays_without_copying():
    tracemalloc.start()
    try:
        sc = _sparse(2000, 50, max_points=60)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    kept = sum(getattr(sc, k).nbytes for k in ("collected", "proc_cost", "error_weight", "proc_cap", "active",
                                               "link_cost", "link_cap", "link_up", "src", "dst"))
    assert peak < 1.5 * kept  # a copy of the [T, E] arrays would make it ~2x
    assert not sc.link_cost.flags.writeable and not sc.collected.flags.writeable


@pytest.mark.parametrize("src, dst, edges", [([0, 1, 1, 1, 2], [1, 0, 2, 2, 0], (2, 3)),  # sorted: checked in O(E)
                                              ([1, 2, 1, 0, 1], [2, 0, 0, 1, 2], (0, 4))])
def test_duplicate_link_named_in_sorted_and_unsorted_lists(src, dst, edges):
    T, n, E = 2, 3, len(src)
    with pytest.raises(ScenarioError, match=rf"link 1->2 appears twice \(edges {edges[0]} and {edges[1]}\)"):
        Scenario(collected=np.ones((T, n)), proc_cost=np.ones((T, n)), error_weight=np.ones((T, n)), src=src,
                 dst=dst, link_cost=np.zeros((T, E)))


def test_flow_refuses_networks_beyond_32_bit_indices(monkeypatch):
    sc = _sparse(50, 3, max_points=5)
    monkeypatch.setattr(F, "INDEX_MAX", 200)
    with pytest.raises(SolverError, match="32-bit"):
        F.plan_linear(sc)
