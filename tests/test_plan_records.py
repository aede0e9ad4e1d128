"""Plan.flows and Plan.table: a plan in whole points, as the trainer executes it.

Invariants: per device and slot ``kept + offloaded + discarded = collected`` and
``processed = kept + received − dropped`` (``received``: offloaded to it in ``t − 1``); the flows
add up to ``offloaded`` and ``received``; the totals match the plan's cost accounting (exactly
for a whole-point plan, within rounding otherwise); the counts are the trainer's.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pytest

from foglearn.network import from_traces, synthetic, write_traces
from foglearn.planning import Plan, PlanError, plan
from foglearn.planning.plan import point_counts

KEYS = ["t", "device", "collected", "kept", "offloaded", "discarded", "received", "dropped", "processed"]


def _check_invariants(scen, p):
    table, flows = p.table(), p.flows()
    T, n = scen.horizon, scen.n_devices
    assert [(r["t"], r["device"]) for r in table] == [(t, i) for t in range(T) for i in range(n)]
    assert all(list(r) == KEYS for r in table)
    out, into = defaultdict(int), defaultdict(int)
    for f in flows:
        assert f["points"] > 0 and list(f) == ["t", "src", "dst", "points"]
        out[f["t"], f["src"]] += f["points"]
        into[f["t"] + 1, f["dst"]] += f["points"]
    for r in table:
        assert r["collected"] == scen.collected[r["t"], r["device"]]
        assert r["kept"] + r["offloaded"] + r["discarded"] == r["collected"]
        assert r["processed"] == r["kept"] + r["received"] - r["dropped"] and r["dropped"] >= 0
        assert r["offloaded"] == out[r["t"], r["device"]] and r["received"] == into[r["t"], r["device"]]
        assert all(isinstance(r[k], int) for k in KEYS)
    return table, flows


def test_a_whole_point_plan_matches_its_cost_accounting_exactly():
    scen = synthetic(8, 12, topology="random", rho=0.5, seed=3)
    p = plan(scen)  # Theorem 3: every fraction is 0 or 1
    table, flows = _check_invariants(scen, p)
    assert sum(f["points"] for f in flows) == p.costs.offloaded > 0
    assert sum(r["processed"] for r in table) == p.costs.processed
    assert sum(r["discarded"] for r in table) == p.costs.discarded
    assert sum(r["collected"] for r in table) == p.costs.collected
    assert all(r["dropped"] == 0 for r in table)
    processing = sum(r["processed"] * scen.proc_cost[r["t"], r["device"]] for r in table)
    assert processing == pytest.approx(p.costs.processing, rel=1e-12)
    edge = {(int(a), int(b)): e for e, (a, b) in enumerate(zip(scen.src, scen.dst))}
    transfer = sum(f["points"] * scen.link_cost[f["t"], edge[f["src"], f["dst"]]] for f in flows)
    assert transfer == pytest.approx(p.costs.transfer, rel=1e-12)


@pytest.mark.parametrize("information", ["perfect", 3])
def test_a_fractional_plan_with_capacities_keeps_the_invariants_and_rounds_each_part_by_under_a_point(information):
    scen = synthetic(6, 10, topology="random", rho=0.6, capacities=True, seed=11)
    p = plan(scen, information=information)
    table, flows = _check_invariants(scen, p)
    D = scen.collected
    kept = np.array([r["kept"] for r in table]).reshape(D.shape)
    assert np.abs(kept - p.keep * D).max() < 1
    sent = np.zeros_like(p.offload)
    edge = {(int(a), int(b)): e for e, (a, b) in enumerate(zip(scen.src, scen.dst))}
    for f in flows:
        sent[f["t"], edge[f["src"], f["dst"]]] = f["points"]
    assert np.abs(sent - p.offload * D[:, scen.src]).max() < 1
    assert (sent <= np.floor(scen.link_cap + 1e-9)).all()
    processed = np.array([r["processed"] for r in table]).reshape(D.shape)
    assert (processed <= np.floor(scen.proc_cap + 1e-9)).all()
    T, n = D.shape
    assert abs(processed.sum() - p.costs.processed) <= T * n  # each part within a point
    assert abs(sent.sum() - p.costs.offloaded) < np.count_nonzero(p.offload) + 1


def test_the_counts_are_the_trainers():
    from foglearn.learning.trainer import schedule

    scen = synthetic(7, 9, topology="random", rho=0.5, capacities=True, seed=2)
    for information in ("perfect", 2):
        p = plan(scen, information=information)
        c, s = point_counts(scen, p), schedule(scen, p)
        assert np.array_equal(c.kept, s.kept) and np.array_equal(c.discarded, s.discarded)
        assert np.array_equal(c.processed, s.processed) and np.array_equal(c.dropped, s.dropped)
        for mine, theirs in zip(c.offloaded, s.offloaded):
            assert np.array_equal(mine, theirs)


def test_records_are_pandas_ready_and_named_after_the_scenarios_devices(tmp_path):
    pd = pytest.importorskip("pandas")
    scen = from_traces(write_traces(tmp_path, synthetic(4, 5, seed=1), data=True))
    p = plan(scen)
    flows = pd.DataFrame(p.flows(scen))
    assert list(flows.columns) == ["t", "src", "dst", "points", "src_name", "dst_name"] and len(flows)
    assert (flows["src_name"] == "d" + flows["src"].astype(str)).all()
    table = pd.DataFrame(p.table(scen))
    assert list(table.columns[:3]) == ["t", "device", "name"] and len(table) == 4 * 5
    assert table["name"].tolist()[:4] == ["d0", "d1", "d2", "d3"]
    assert table.groupby("t")["offloaded"].sum().sum() == flows["points"].sum()


def test_a_plan_without_its_scenario_or_with_another_is_an_error():
    scen = synthetic(3, 4, seed=0)
    p = plan(scen)
    bare = Plan(p.keep, p.offload, p.discard, p.processed, p.dropped, p.costs, p.stats)
    with pytest.raises(PlanError, match="flows: this plan does not record its scenario .* pass the scenario"):
        bare.flows()
    assert bare.table(scen) == [{**r, "name": str(r["device"])} for r in p.table()]
    with pytest.raises(PlanError, match=r"table: scenario \(T, n, E\) = \(4, 4, 12\) does not match the plan's "
                                        r"\(4, 3, 6\)"):
        p.table(synthetic(4, 4, seed=0))
