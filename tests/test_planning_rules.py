"""planning.rules: each rule stated once, tested once (docs/model.md §2, §4, §6)."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest
from typer.testing import CliRunner

from foglearn.cli import app
from foglearn.errors import InputError
from foglearn.network.scenario import Scenario
from foglearn.planning.plan import INFINITE_COST, Plan, SolverStats, realise
from foglearn.planning.rules import (
    WindowMeasurements,
    aggregate_weighted,
    aggregation_weights,
    estimate_window,
    keep_unplanned,
    largest_remainder,
    realised_costs,
    split_counts,
    transfer_cost,
)


def test_largest_remainder_ties_and_float_noise():
    # three equal thirds of 1 point: floating noise must not beat the tie rule (keep first)
    third = np.array([1 / 3, 1 / 3 + 1e-15, 1 / 3 - 1e-15])
    assert largest_remainder(third, np.zeros(3, int), np.array([1]), np.arange(3)).tolist() == [1, 0, 0]
    # two groups at once: each sums to its total, remainders decide within a group
    counts = largest_remainder(np.array([1.6, 1.4, 2.5, 2.5]), np.array([0, 0, 1, 1]), np.array([3, 5]),
                               np.array([0, 1, 0, 1]))
    assert counts.tolist() == [2, 1, 3, 2]
    with pytest.raises(InputError, match="more than 1"):
        largest_remainder(np.array([2.0, 2.0]), np.zeros(2, int), np.array([3]), np.arange(2))
    assert split_counts(7, [0.5, 0.25]).tolist() == [3, 2, 2]  # 3.5, 1.75, 1.75: the larger remainders


def _sorted_rule(weights, group, totals, priority):
    """The rule written as one sort: each group's items by (larger remainder, lower priority, earlier
    item), the first ``deficit`` of them get a point."""
    base = np.floor(weights + 1e-9).astype(np.int64)
    rem = np.round(weights - base, 9)
    deficit = totals - np.bincount(group, weights=base, minlength=len(totals)).astype(np.int64)
    order = np.lexsort((np.arange(len(group)), priority, -rem, group))
    rank = np.arange(len(order)) - np.searchsorted(group[order], group[order])
    extra = np.zeros(len(order), np.int64)
    extra[order] = rank < deficit[group[order]]
    return base + extra


def test_largest_remainder_equals_the_sorted_rule_on_random_groups():
    """Random groups (shuffled items, large and small, ties in remainder and in priority, deficits of
    one, several and all items): the compiled selection gives the sort's counts exactly."""
    rng = np.random.default_rng(3)
    for case in range(300):
        G = int(rng.integers(1, 20))
        group = np.repeat(np.arange(G), rng.integers(1, 60 if case % 10 == 0 else 8, G))
        rng.shuffle(group)
        totals = rng.integers(0, 40, G)
        w = rng.random(len(group))
        if case % 3 == 0:
            w = np.round(w * 4) + 1e-12  # many equal remainders
        s = np.bincount(group, weights=w, minlength=G)
        w = w / s[group] * totals[group]
        prio = rng.integers(0, 3, len(group)) if case % 2 else rng.permutation(len(group))
        assert np.array_equal(largest_remainder(w, group, totals, prio), _sorted_rule(w, group, totals, prio)), case
    # any sortable priority keeps its order (floats, unsigned beyond int64); lengths must agree
    half = np.array([0.5, 0.5])
    assert largest_remainder(half, np.zeros(2, int), np.array([1]), np.array([0.7, 0.2])).tolist() == [0, 1]
    assert largest_remainder(half, np.zeros(2, int), np.array([1]), np.array([2**63 + 1, 2**63], np.uint64)
                             ).tolist() == [0, 1]
    with pytest.raises(InputError, match="one length"):
        largest_remainder(np.full(50, 0.5), np.zeros(50, int), np.array([25]), np.zeros(1, int))


def test_eq4_weights_and_average():
    w = aggregation_weights(np.array([0.0, 3.0, 1.0]))
    assert w is not None and w.tolist() == [0.0, 0.75, 0.25]
    assert aggregation_weights(np.zeros(2)) is None
    with pytest.raises(InputError, match=r"H\[0\] = nan"):
        aggregation_weights(np.array([np.nan, 1.0]))
    out = aggregate_weighted([[np.array([1.0], np.float32)], [np.array([5.0], np.float32)]], [1, 3])
    assert out[0].dtype == np.float32 and out[0].tolist() == [4.0]


def _window(collected, link_up):
    collected = np.asarray(collected, dtype=np.float64)
    W, n = collected.shape
    m = WindowMeasurements.empty(W, n, np.asarray(link_up).shape[1])
    m.collected[:] = collected
    m.link_up[:] = link_up
    return m


def test_window_estimate_link_up_rule_is_more_than_half():
    """The one link-up rule: usable in more than half of the window's slots (exactly half: down)."""
    src, dst = np.array([0, 0, 0, 1]), np.array([1, 1, 1, 0])
    up = np.array([[1, 1, 0, 1], [1, 0, 0, 1], [0, 1, 0, 1], [1, 0, 1, 1]], bool)  # 3/4, 2/4, 1/4, 4/4
    est = estimate_window(_window(np.ones((4, 2)), up), src, dst)
    assert est.link_up.tolist() == [True, False, False, True]
    # a link whose end is inactive in the estimate is down, however often it was reported up
    gone = _window([[1, 1], [1, np.nan], [1, np.nan], [1, 1]], up)  # device 1 reported in 2 of 4 slots
    est = estimate_window(gone, src, dst)
    assert est.active.tolist() == [True, False] and not est.link_up.any()


def test_window_estimate_time_averages():
    m = _window([[3, np.nan, 0], [4, 2, np.nan], [0, 2, np.nan]], np.zeros((3, 0), bool))
    m.proc_cost[:, 0] = [0.1, 0.2, 0.6]
    m.proc_cap[1:, 1] = [10.0, 20.0]
    est = estimate_window(m, np.zeros(0, int), np.zeros(0, int))
    # D̂ = rint(Σ D / W): unreported slots collected nothing; device 2 (1 of 3 slots) inactive
    assert est.collected.tolist() == [2, 1, 0] and est.active.tolist() == [True, True, False]
    assert np.isclose(est.proc_cost[0], 0.3) and est.proc_cost[2] == 0.0  # mean of what was reported
    assert est.proc_cap.tolist() == [np.inf, 15.0, np.inf]


def test_unplanned_devices_keep_what_they_collect():
    keep = np.array([[0.0, 0.4], [0.2, 0.0]])
    assert keep_unplanned(keep, np.array([[0, 5], [3, 0]])).tolist() == [[1.0, 0.4], [0.2, 1.0]]


def test_realised_costs_terms():
    D = np.array([[4, 0], [2, 3]])
    G = np.array([[3.0, 1.0], [0.0, 3.0]])
    c, f = np.full((2, 2), 0.5), np.full((2, 2), 2.0)
    sent, lc = np.array([[1.0], [0.0]]), np.array([[0.25], [1.0]])
    lin = realised_costs(collected=D, processed=G, discarded=np.array([[0, 0], [2, 0]]), proc_cost=c,
                         error_weight=f, transfer=transfer_cost(sent, lc), offloaded=1.0)
    assert (lin.processing, lin.transfer, lin.discard, lin.collected) == (3.5, 0.25, 4.0, 9)
    sq = realised_costs(collected=D, processed=G, discarded=np.zeros((2, 2)), proc_cost=c, error_weight=f,
                        transfer=0.0, offloaded=0.0, error="sqrt")
    assert sq.discard == math.inf  # device 0 collected 2 points at t = 1 and processed none
    G[1, 0] = 4.0
    sq = realised_costs(collected=D, processed=G, discarded=np.zeros((2, 2)), proc_cost=c, error_weight=f,
                        transfer=0.0, offloaded=0.0, error="sqrt")
    assert np.isclose(sq.discard, 2 / np.sqrt(3) + 2 / 2 + 2 / np.sqrt(3))


def test_an_infinite_cost_is_never_optimal():
    s = Scenario(collected=np.array([[2, 1]]), proc_cost=np.ones((1, 2)), error_weight=np.ones((1, 2)),
                 src=np.zeros(0, int), dst=np.zeros(0, int), link_cost=np.zeros((1, 0)))
    p = realise(s, np.array([[1.0, 0.0]]), np.zeros((1, 0)), "sqrt", SolverStats("x", "optimal"), "perfect")
    assert p.costs.total == math.inf and p.stats.status == INFINITE_COST and "reason" in p.stats.extra
    ok = Plan.from_fractions(s, np.ones((1, 2)), np.zeros((1, 0)), error="sqrt", stats=SolverStats("x", "optimal"))
    assert ok.stats.status == "optimal"


def test_estimated_sqrt_plan_keeps_points_where_d_rounds_to_zero(tmp_path):
    """Regression (issue 12): D ∈ {0, 1} and W = 2 make D̂ = rint(0.5) = 0 for many devices; their
    points used to be discarded, the error term was infinite and the plan still said "optimal"."""
    out = tmp_path / "p.json"
    res = CliRunner().invoke(app, ["plan", "--devices", "10", "--slots", "20", "--max-points", "1", "--error", "sqrt",
                                   "--information", "2", "--out", str(out)])
    assert res.exit_code == 0, res.output
    aware = json.loads(out.read_text())["plans"][1]
    assert aware["total"] is not None and math.isfinite(aware["total"]) and aware["discard"] is not None
    assert aware["solver"]["status"] == "optimal"
    assert not re.search(r"\binf\b", res.output)
