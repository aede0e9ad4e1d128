"""Fast tests of the Flower app's pure pieces: counting, reports to estimates, eq. (4), config."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from foglearn.flower.config import FlowerConfigError, FlowerRunConfig, parse_faults
from foglearn.flower.protocol import record_report, split_counts
from foglearn.planning.information import estimated_scenario
from foglearn.planning.rules import WindowMeasurements, aggregate_weighted


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 500), st.lists(st.floats(0, 1), min_size=1, max_size=6))
def test_split_counts_sums_to_total_and_tracks_fractions(total, raw):
    fr = np.array(raw)
    if fr.sum() > 1:
        fr = fr / fr.sum()
    counts = split_counts(total, fr)
    assert counts.sum() == total and (counts >= 0).all() and counts.size == fr.size + 1
    exact = np.append(fr, max(0.0, 1 - fr.sum())) * total
    assert np.all(np.abs(counts - exact) < 1 + 1e-9)  # largest remainder: within one point


def test_split_counts_ties_prefer_processing():
    assert split_counts(1, [0.5]).tolist() == [1, 0]
    assert split_counts(3, [1 / 3, 1 / 3]).tolist() == [1, 1, 1]
    with pytest.raises(ValueError, match="eq. 8"):
        split_counts(5, [0.7, 0.5])


def test_aggregate_weighted_is_eq4():
    a = [np.array([1.0, 2.0]), np.array([[0.0]])]
    b = [np.array([3.0, 6.0]), np.array([[4.0]])]
    out = aggregate_weighted([a, b], [1, 3])
    assert np.allclose(out[0], [2.5, 5.0]) and np.allclose(out[1], [[3.0]])
    assert np.allclose(aggregate_weighted([a, b], [0, 5])[0], b[0])
    with pytest.raises(ValueError, match="all H_i are 0"):
        aggregate_weighted([a, b], [0, 0])


def _report(D, c, f=0.7, cap=-1.0, edges=(-1,), lc=(0.0,), lcap=(0.0,), up=(0,)):
    return {"collected": D, "proc-cost": c, "error-weight": f, "proc-cap": cap, "out-edges": list(edges),
            "link-cost": list(lc), "link-cap": list(lcap), "link-up": list(up)}


def test_reports_become_the_window_estimate():
    """Reports booked by the server give the estimate of docs/model.md §4 (rules: planning.rules)."""
    src, dst = np.array([0, 1]), np.array([1, 0])
    m = WindowMeasurements.empty(3, 3, 2, slots=[3, 4, 5])
    for w, (D, c, lc, up) in enumerate([(10, 0.2, 0.01, 1), (20, 0.4, 0.03, 1), (0, 0.6, 0.05, 0)]):
        record_report(m, w, 0, _report(D, c, edges=[0], lc=[lc], lcap=[-1.0], up=[up]))
    for w in (0, 1):  # device 1 reports in 2 of 3 slots (active), its link up in 1 (down)
        record_report(m, w, 1, _report(4, 0.5, cap=30.0, edges=[1], lc=[0.1], lcap=[5.0], up=[w == 0]))
    est = estimated_scenario(m, src, dst, slots=4)  # device 2 never reports
    assert est.horizon == 4 and est.info["estimated_from"] == [3, 4, 5]
    assert est.collected[0].tolist() == [10, 3, 0]  # rint((10+20+0)/3), rint(8/3), nothing
    assert est.active[0].tolist() == [True, True, False]
    assert np.isclose(est.proc_cost[0, 0], 0.4) and np.isclose(est.proc_cost[0, 1], 0.5)
    assert np.isclose(est.link_cost[0, 0], 0.03) and est.link_cap[0, 0] == np.inf and est.proc_cap[0, 0] == np.inf
    assert est.proc_cap[0, 1] == 30.0 and est.link_cap[0, 1] == 5.0
    assert est.link_up[0].tolist() == [True, False]


def test_config_round_trips_through_flower_run_config():
    cfg = FlowerRunConfig(num_devices=4, horizon=8, period=2, faults="1@3+,2@5!")
    back = FlowerRunConfig.from_user_config(cfg.to_user_config())
    assert back == cfg and back.plan_window == 2
    faults = [(f.device, f.slot, f.persistent, f.kill) for f in back.fault_list]
    assert faults == [(1, 3, True, False), (2, 5, False, True)]
    assert FlowerRunConfig.from_user_config({"num-devices": "3", "movement": "false"}).movement is False


@pytest.mark.parametrize("bad, match", [({"num-devices": 0}, "num_devices"),
                                        ({"information": "psychic"}, "information"),
                                        ({"no-such-key": 1}, "unknown"), ({"faults": "9@1"}, "device 9"),
                                        ({"period": 2.5}, "period")])
def test_config_errors_name_the_field(bad, match):
    with pytest.raises(FlowerConfigError, match=match):
        FlowerRunConfig.from_user_config(bad)


def test_parse_faults_rejects_garbage():
    with pytest.raises(FlowerConfigError, match="DEVICE@SLOT"):
        parse_faults("two@three")


def test_split_counts_rejects_negative_fractions():
    import pytest

    from foglearn.flower.protocol import split_counts

    with pytest.raises(ValueError, match="each must be a number ≥ 0"):
        split_counts(10, [0.5, -0.2])
    assert split_counts(10, [0.5, -1e-12]).sum() == 10  # solver round-off is tolerated
