"""Devices that join or leave mid-horizon (docs/dynamics.md): absent outside their interval, the
leave slot's points handed over or lost and counted, nothing created or destroyed unaccounted."""

from __future__ import annotations

import numpy as np
import pytest

from foglearn.network import Scenario, ScenarioError, synthetic, with_churn
from foglearn.planning import plan


def _base() -> Scenario:
    return synthetic(6, 10, topology="random", rho=0.6, seed=4, max_points=20)


def test_a_device_is_absent_outside_its_interval_and_the_points_add_up():
    s = _base()
    c = with_churn(s, leave={1: 6}, join={2: 3, 1: 2})
    present = np.ones((10, 6), dtype=bool)
    present[6:, 1] = present[:2, 1] = present[:3, 2] = False
    assert np.array_equal(c.active, s.active & present)
    assert (c.collected[~present] == 0).all() and np.array_equal(c.collected[present], s.collected[present])
    touches = ~present[:, c.src] | ~present[:, c.dst]
    assert not (c.link_up & touches).any() and np.array_equal(c.link_up[~touches], s.link_up[~touches])
    info = c.info["churn"]
    assert info["leave"] == {"1": 6} and info["join"] == {"1": 2, "2": 3} and not info["handover"]
    assert info["stranded"] == info["lost"] == s.collected[6, 1] > 0 and info["handovers"] == []
    assert c.total_collected + info["lost"] + info["absent"] == s.total_collected
    assert info["absent"] == s.collected[~present].sum() - s.collected[6, 1]
    p = plan(c)
    assert p.processed[~present].sum() == 0 and p.costs.collected == c.total_collected


def test_handover_gives_the_leave_slots_points_to_a_linked_present_neighbour():
    s = _base()
    c = with_churn(s, leave={"0": 4, 3: 7}, handover=True, seed=2)
    info = c.info["churn"]
    assert info["lost"] == 0 and info["handed_over"] == info["stranded"] == s.collected[4, 0] + s.collected[7, 3]
    assert len(info["handovers"]) == 2
    for L, i, j, pts in info["handovers"]:
        assert pts == s.collected[L, i]
        e = np.flatnonzero((s.src == i) & (s.dst == j))
        assert e.size == 1 and s.link_up[L, e[0]] and c.active[L, j]
        assert c.collected[L, j] == s.collected[L, j] + pts  # j processes them as its own
    assert c.total_collected + info["absent"] == s.total_collected
    again = with_churn(s, leave={"0": 4, 3: 7}, handover=True, seed=2)
    assert again.info["churn"]["handovers"] == info["handovers"] and np.array_equal(again.collected, c.collected)
    # with the handover the network keeps the points: a plan processes or discards them
    lost = with_churn(s, leave={"0": 4, 3: 7})
    assert plan(c).costs.collected - plan(lost).costs.collected == info["handed_over"]


def test_without_a_usable_neighbour_the_points_are_lost_even_with_handover():
    z = np.zeros((3, 2))
    s = Scenario(collected=[[3, 1], [5, 2], [4, 4]], proc_cost=z, error_weight=z, src=[0], dst=[1],
                 link_cost=np.zeros((3, 1)), link_up=[[True], [False], [True]])
    c = with_churn(s, leave={0: 1}, handover=True)  # the link is down in slot 1
    assert c.info["churn"]["lost"] == 5 and c.info["churn"]["handovers"] == []
    c = with_churn(s, leave={0: 2}, handover=True)
    assert c.info["churn"]["handovers"] == [[2, 0, 1, 4]] and c.collected.tolist() == [[3, 1], [5, 2], [0, 8]]
    c = with_churn(s, leave={0: 2, 1: 2}, handover=True)  # the neighbour leaves too
    assert c.info["churn"]["lost"] == c.info["churn"]["stranded"] == 8


def test_the_result_saves_and_loads_with_its_counts(tmp_path):
    c = with_churn(_base(), leave={5: 3}, handover=True, seed=1)
    back = Scenario.load(c.save(tmp_path / "c.npz"))
    assert back.info["churn"] == c.info["churn"] and np.array_equal(back.active, c.active)


@pytest.mark.parametrize("kwargs, message", [
    ({"leave": {6: 3}}, r"leave\[6\]: a device must be an index in 0..5 or a device name"),
    ({"leave": {"x": 3}}, r"leave\['x'\]: no device of that name"),
    ({"join": {0: 10}}, r"join\[0\] = 10: must be a slot in 0..9"),
    ({"join": {0: 2.0}}, r"join\[0\] = 2.0: must be a slot in 0..9"),
    ({"leave": {0: True}}, r"leave\[0\] = True: must be a slot in 0..9"),
    ({"leave": {1: 4}, "join": {1: 4}}, r"join\[1\] = 4, leave\[1\] = 4: device 1 would never be present"),
    ({"leave": {0: 0}}, r"device 0 would never be present"),
    ({"leave": {0: 3, "0": 4}}, r"leave\['0'\]: device 0 is named twice"),
    ({"leave": [0, 3]}, r"leave: must map devices to slots"),
    ({"seed": -1}, r"seed = -1: must be a whole number ≥ 0"),
    ({"handover": "yes"}, r"handover = 'yes': must be True or False"),
])
def test_bad_arguments_name_the_field_and_the_rule(kwargs, message):
    with pytest.raises(ScenarioError, match=message):
        with_churn(_base(), **kwargs)


def test_churn_is_applied_once():
    c = with_churn(_base(), leave={0: 5})
    with pytest.raises(ScenarioError, match="churn is already applied"):
        with_churn(c, join={1: 2})
