"""Scenario validation, persistence, generators and trace replay (docs/model.md §1, §4, §5)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from foglearn.network import (
    Scenario,
    ScenarioError,
    from_traces,
    load_traces,
    synthetic,
    write_traces,
)
from foglearn.network import topology as topo


def small(**over):
    T, n = 3, 3
    src, dst = topo.full(n)
    base = dict(collected=np.ones((T, n), int), proc_cost=np.full((T, n), 0.5), error_weight=np.full((T, n), 0.5),
                src=src, dst=dst, link_cost=np.full((T, src.size), 0.1))
    base.update(over)
    return Scenario(**base)


def test_defaults_and_shape():
    s = small()
    assert (s.horizon, s.n_devices, s.n_edges) == (3, 3, 6)
    assert np.isinf(s.proc_cap).all() and s.link_up.all() and s.active.all()
    assert not s.has_capacities
    assert not s.usable_links()[-1].any(), "offloading in the last slot is forbidden"


@pytest.mark.parametrize("change, message", [
    (dict(proc_cost=np.array([[0.5, -0.2, 0.5]] * 3)), r"proc_cost\[0, 1\] = -0.2: costs must be ≥ 0"),
    (dict(error_weight=np.array([[0.5, np.nan, 0.5]] * 3)), r"error_weight\[0, 1\] = nan: costs must be finite"),
    (dict(proc_cost=np.ones((3, 2))), r"proc_cost: must have shape \[T, n\] = \(3, 3\), got \(3, 2\)"),
    (dict(src=np.array([0, 5]), dst=np.array([1, 0]), link_cost=np.zeros((3, 2))),
     r"src\[1\] = 5: must name a device in 0..2"),
    (dict(src=np.array([1]), dst=np.array([1]), link_cost=np.zeros((3, 1))), r"self-loops"),
    (dict(src=np.array([0, 0]), dst=np.array([1, 1]), link_cost=np.zeros((3, 2))), r"appears twice"),
    (dict(collected=np.array([[1, 2.5, 0]] * 3)), r"collected\[0, 1\] = 2.5: must be a whole number"),
    (dict(proc_cap=np.full((3, 3), -1.0)), r"proc_cap\[0, 0\] = -1.0: capacities must be ≥ 0"),
    (dict(active=np.array([[True, False, True]] * 3)), r"inactive device"),
    (dict(link_cost=np.zeros((3, 5))), r"link_cost: must have shape \[T, E\] = \(3, 6\)"),
])
def test_bad_input_names_field_index_and_rule(change, message):
    with pytest.raises(ScenarioError, match=message):
        small(**change)


def test_arrays_are_read_only():
    s = small()
    with pytest.raises(ValueError):
        s.proc_cost[0, 0] = 1.0


@pytest.mark.parametrize("topology", ["full", "random", "hierarchical", "social", "scale-free"])
def test_save_load_round_trip(tmp_path, topology):
    s = synthetic(7, 5, topology=topology, capacities=True, link_failure=0.2, leave_prob=0.2, seed=3)
    path = s.save(tmp_path / "net.npz")
    r = Scenario.load(path)
    for name in ("collected", "proc_cost", "error_weight", "src", "dst", "link_cost", "proc_cap", "link_cap",
                 "link_up", "active"):
        a, b = getattr(s, name), getattr(r, name)
        assert a.dtype == b.dtype and np.array_equal(a, b), name
    assert r.info["topology"] == topology and r.info["seed"] == 3


def test_load_rejects_non_scenarios(tmp_path):
    (tmp_path / "x.npz").write_bytes(b"this is not a scenario")
    with pytest.raises(ScenarioError, match="not a foglearn scenario"):
        Scenario.load(tmp_path / "x.npz")
    np.savez(tmp_path / "y.npz", a=np.zeros(3))
    with pytest.raises(ScenarioError, match="no header"):
        Scenario.load(tmp_path / "y.npz")
    with pytest.raises(ScenarioError, match="no such scenario file"):
        Scenario.load(tmp_path / "missing.npz")


def test_synthetic_follows_spec_distributions():
    s = synthetic(10, 100, seed=0)
    assert s.info["max_points"] == 60  # ⌊60000 / (10·100)⌋
    assert s.collected.min() >= 0 and s.collected.max() <= 60
    assert s.n_edges == 90
    assert 0 <= s.proc_cost.min() and s.proc_cost.max() <= 1
    assert s.link_cost.max() <= 0.1
    assert abs(s.proc_cost.mean() - 0.5) < 0.03 and abs(s.collected.mean() - 30) < 1.5
    c = synthetic(10, 100, capacities=True, seed=0)
    assert c.proc_cap.max() <= 240 and c.link_cap.max() <= 24 and c.has_capacities


def test_synthetic_is_repeatable_from_its_seed():
    a, b = synthetic(8, 10, topology="random", seed=5), synthetic(8, 10, topology="random", seed=5)
    assert np.array_equal(a.src, b.src) and np.array_equal(a.link_cost, b.link_cost)
    assert not np.array_equal(a.collected, synthetic(8, 10, topology="random", seed=6).collected)


@settings(max_examples=25, deadline=None)
@given(n=st.integers(2, 40), rho=st.floats(0, 1), seed=st.integers(0, 10_000))
def test_random_digraph_is_simple_and_near_rho(n, rho, seed):
    src, dst = topo.random_digraph(n, rho, np.random.default_rng(seed))
    assert (src != dst).all()
    assert np.unique(src * n + dst).size == src.size
    m = n * (n - 1)
    assert abs(src.size - rho * m) <= 5 * np.sqrt(m * rho * (1 - rho)) + 1


def test_hierarchical_leaves_offload_only_upward():
    s = synthetic(10, 4, topology="hierarchical", seed=2)
    parents = set(np.argsort(s.proc_cost.mean(0), kind="stable")[:3].tolist())
    assert set(s.dst.tolist()) <= parents and not (set(s.src.tolist()) & parents)
    assert sorted(s.src.tolist()) == sorted(set(range(10)) - parents), "every leaf has exactly one parent"


def test_social_and_scale_free_are_symmetric():
    for top in ("social", "scale-free"):
        s = synthetic(30, 2, topology=top, seed=1)
        fwd = set(zip(s.src.tolist(), s.dst.tolist()))
        assert fwd == {(b, a) for a, b in fwd}
    s = synthetic(30, 2, topology="social", seed=1)
    assert s.n_edges == 2 * 30 * 6 // 2  # Watts–Strogatz k = round(30/5) = 6 keeps n·k/2 edges


def test_dynamics_inactive_devices_collect_nothing_and_lose_links():
    s = synthetic(20, 50, leave_prob=0.3, link_failure=0.25, seed=4)
    assert (~s.active).any() and (s.collected[~s.active] == 0).all()
    assert abs((~s.link_up).mean() - 0.25) < 0.02
    usable = s.usable_links()
    assert not (usable & ~s.link_up).any()
    t, e = np.argwhere(~s.active[:, s.dst])[0]
    assert not usable[t, e]


def test_lte_is_cheaper_to_transfer_than_wifi():
    lte, wifi = synthetic(12, 20, profile="lte", seed=0), synthetic(12, 20, profile="wifi", seed=0)
    assert np.median(lte.link_cost) < 0.1 < np.median(wifi.link_cost)
    strong = (lte.proc_cost.mean(0) < 0.2).sum()
    assert strong == 4


def test_trace_round_trip(tmp_path):
    s = synthetic(4, 6, capacities=True, link_failure=0.2, seed=9)
    write_traces(tmp_path, s)
    tr = load_traces(tmp_path)
    assert tr.length == 6 and tr.n_nodes == 4
    r = from_traces(tr, horizon=6, reference_s=0.01)
    np.testing.assert_allclose(r.proc_cost, s.proc_cost, rtol=1e-12)
    assert np.array_equal(r.src, s.src) and np.array_equal(r.link_up, s.link_up)
    np.testing.assert_allclose(r.link_cost, s.link_cost, rtol=1e-12)
    np.testing.assert_allclose(r.proc_cap, s.proc_cap)
    with pytest.warns(UserWarning, match="traces tiled: 8 devices replay the 4 traced nodes"):
        longer = from_traces(tr, n_devices=8, horizon=15, repeat=True, reference_s=0.01)
    np.testing.assert_allclose(longer.proc_cost[13, 5], s.proc_cost[13 % 6, 5 % 4])


def test_trace_errors_name_file_line_and_column(tmp_path):
    s = synthetic(3, 2, seed=1)
    write_traces(tmp_path, s)
    lines = (tmp_path / "nodes.csv").read_text().splitlines()
    lines[2] = lines[2].replace(",100,", ",-5,", 1)
    (tmp_path / "nodes.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(ScenarioError, match=r"nodes.csv:3 points = '-5': must be"):
        load_traces(tmp_path)
    (tmp_path / "links.csv").write_text("t,src,dst\n")
    with pytest.raises(ScenarioError, match="missing columns"):
        load_traces(tmp_path)


def test_synthetic_size_bounds_are_checked_before_drawing():
    """Dense topologies at sizes that would need tens of GB are refused before anything is drawn; sparse ones at
    the same n are not."""
    import pytest

    from foglearn.network import synthetic
    from foglearn.network.scenario import ScenarioError

    for kw in (dict(topology="full"), dict(topology="random", rho=0.3), dict(topology="social")):
        with pytest.raises(ScenarioError, match=r"n_devices = 30000: the \w+ topology draws from 899,970,000 ordered"):
            synthetic(n_devices=30_000, horizon=1, **kw)
    with pytest.raises(ScenarioError, match="link-slots in all, more than the 300,000,000"):
        synthetic(n_devices=2000, horizon=100)
    assert synthetic(n_devices=20_000, horizon=1, topology="random", rho=1e-4).n_edges > 0
