"""Theorem 4 (docs/model.md §3): the hierarchical optimum, its small-D correction, scipy and the planner."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from foglearn.experiments.theorems import hierarchical_scenario, solve_hierarchical_with_planner
from foglearn.theory import (
    HierarchyInstance,
    TheoryError,
    hierarchical_objective,
    hierarchical_optimum,
    solve_augmented_numeric,
    solve_hierarchical_numeric,
)

REFERENCE = [
    ((10, 1000, 0.5, 0.1, 0.05, 50), (0.983399, 0.003029)),
    ((5, 200, 0.3, 0.05, 0.1, 100), (0.800498, 0.048075)),
    ((5, 15, 0.2, 0.1, 0.05, 20), (0.0, 0.189883)),
    ((10, 10, 0.5, 0.1, 0.05, 50), (0.0, 0.119319)),
]


@pytest.mark.parametrize(("args", "expected"), REFERENCE)
def test_optimum_matches_spec(args, expected):
    r, s = hierarchical_optimum(*args)
    assert (round(r, 6), round(s, 6)) == expected


@pytest.mark.parametrize(("args", "_expected"), REFERENCE)
def test_scipy_agrees(args, _expected):
    r, s = hierarchical_optimum(*args)
    num = solve_hierarchical_numeric(*args)
    assert num.r == pytest.approx(r, abs=1e-6)
    assert num.s == pytest.approx(s, abs=1e-6)
    assert num.objective >= hierarchical_objective(r, s, *args) - 1e-9


def test_printed_formula_fails_below_threshold():
    args = (5, 15, 0.2, 0.1, 0.05, 20)
    h = HierarchyInstance(*args)
    assert h.D < h.threshold
    s_printed = (20 / (2 * 0.15)) ** (2 / 3) / (5 * 15)
    r_printed = 1 - (20 / 0.4) ** (2 / 3) / 15 - s_printed
    assert r_printed < 0  # (13) is infeasible here; the corrected optimum is better than its clip
    r, s = hierarchical_optimum(*args)
    assert hierarchical_objective(r, s, *args) < hierarchical_objective(0.0, s_printed, *args)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 20), st.floats(1.0, 3000.0), st.floats(0.2, 2.0), st.floats(0.0, 0.9),
       st.floats(0.01, 0.5), st.floats(1.0, 200.0))
def test_optimum_is_a_minimum(n, D, c, cs_frac, ct, gamma):
    cs = cs_frac * c
    r, s = hierarchical_optimum(n, D, c, cs, ct, gamma)
    assert r >= 0 and s > 0 and r + s < 1
    J = hierarchical_objective(r, s, n, D, c, cs, ct, gamma)
    rng = np.random.default_rng(0)
    for dr, ds in rng.normal(scale=1e-3, size=(20, 2)):
        rr, ss = max(r + dr, 0.0), s + ds
        if ss > 0 and rr + ss < 1:
            assert J <= hierarchical_objective(rr, ss, n, D, c, cs, ct, gamma) + 1e-9 * abs(J)


def test_continuous_at_threshold():
    h = HierarchyInstance(10, 100.0, 0.5, 0.1, 0.05, 50)
    lo = hierarchical_optimum(10, h.threshold * (1 - 1e-9), 0.5, 0.1, 0.05, 50)
    hi = hierarchical_optimum(10, h.threshold * (1 + 1e-9), 0.5, 0.1, 0.05, 50)
    assert lo == pytest.approx(hi, abs=1e-6)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(n=0), "n"), (dict(D=-1), "D"), (dict(c=0.05), "c > c_server"), (dict(gamma=0), "gamma"),
        (dict(c_server=0.0, c_link=0.0), "c_server \\+ c_link"),
    ],
)
def test_invalid_inputs(kwargs, message):
    base = dict(n=10, D=100, c=0.5, c_server=0.1, c_link=0.05, gamma=50)
    base.update(kwargs)
    with pytest.raises(TheoryError, match=message):
        hierarchical_optimum(**base)


def test_scenario_encodes_the_instance():
    scen = hierarchical_scenario(4, 100, 0.5, 0.1, 0.05, 50)
    assert scen.horizon == 2 and scen.n_devices == 5 and scen.n_edges == 4
    assert scen.collected[0, :4].tolist() == [100] * 4 and scen.collected[1, 4] == 1
    assert (scen.dst == 4).all() and np.allclose(scen.link_cost, 0.05)
    assert np.allclose(scen.error_weight[0, :4], 50) and scen.error_weight[1, 4] == 50
    assert np.allclose(scen.proc_cost[:, :4], 0.5) and np.allclose(scen.proc_cost[:, 4], 0.1)


@pytest.mark.parametrize(("args", "_expected"), REFERENCE[:2])
def test_augmented_interior_shift_is_exact(args, _expected):
    # One server point moves exactly 1/(nD) from s to r in the interior regime.
    n, D = args[0], args[1]
    r, s = hierarchical_optimum(*args)
    aug = solve_augmented_numeric(*args)
    assert aug.s == pytest.approx(s - 1 / (n * D), abs=1e-6)
    assert aug.r == pytest.approx(r + 1 / (n * D), abs=1e-6)


@pytest.mark.parametrize(("args", "_expected"), REFERENCE)
def test_planner_agrees_with_scipy(args, _expected):
    pl = solve_hierarchical_with_planner(*args)
    aug = solve_augmented_numeric(*args)
    assert pl.info["keep_spread"] < 1e-4  # every leaf keeps the same (strictly convex error term)
    assert pl.r == pytest.approx(aug.r, abs=1e-4)
    assert pl.s == pytest.approx(aug.s, abs=1e-4)
    assert pl.objective == pytest.approx(aug.objective, rel=1e-5)
