"""Fast tests of the Flower app's pure pieces: counting, estimation, eq. (4), config."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from foglearn.flower.config import FlowerConfigError, FlowerRunConfig, parse_faults
from foglearn.flower.protocol import (
    aggregate_weighted,
    empty_window,
    estimate_scenario,
    split_counts,
)


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


def test_estimate_scenario_averages_previous_window():
    src, dst = np.array([0, 1]), np.array([1, 0])
    m = empty_window(2, 3, 2)
    m.collected[:, 0] = [10, 20]
    m.collected[0, 1] = 4          # device 1 reported once, device 2 never
    m.proc_cost[:, 0] = [0.2, 0.4]
    m.proc_cost[0, 1] = 0.5
    m.error_weight[:, :2] = 0.7
    m.link_cost[:, 0] = [0.01, 0.03]
    m.link_up[1, 0] = True
    est = estimate_scenario(m, src, dst, slots=3)
    assert est.horizon == 3 and est.collected[:, 0].tolist() == [15, 15, 15]
    assert est.collected[0, 1] == 4 and est.collected[0, 2] == 0 and not est.active[0, 2]
    assert np.isclose(est.proc_cost[0, 0], 0.3) and np.isclose(est.link_cost[0, 0], 0.02)
    assert est.link_up[0, 0] and not est.link_up[0, 1]


def test_config_round_trips_through_flower_run_config():
    cfg = FlowerRunConfig(num_devices=4, horizon=8, period=2, faults="1@3+,2@5!")
    back = FlowerRunConfig.from_user_config(cfg.to_user_config())
    assert back == cfg and back.plan_window == 2
    assert [(f.device, f.slot, f.persistent, f.kill) for f in back.fault_list] == [(1, 3, True, False), (2, 5, False, True)]
    assert FlowerRunConfig.from_user_config({"num-devices": "3", "movement": "false"}).movement is False


@pytest.mark.parametrize("bad, match", [({"num-devices": 0}, "num_devices"), ({"information": "psychic"}, "information"),
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
