"""Trainer invariants: datapoint routing, eq. (3)/(4) semantics, baselines, determinism."""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from foglearn.errors import InputError
from foglearn.learning import (
    TrainingError,
    aggregation_weights,
    centralised,
    federated,
    load_dataset,
    make_model,
    no_movement_plan,
    reference_loop,
    schedule,
    train,
)
from foglearn.learning.trainer import point_stream
from foglearn.network.scenario import Scenario
from foglearn.planning.plan import Plan
from foglearn.planning.rules import largest_remainder

torch.set_num_threads(1)
TINY = load_dataset("tiny")


def _scenario(T=10, n=4, seed=1, max_d=9):
    rng = np.random.default_rng(seed)
    src = np.array([0, 1, 2, 3, 0, 2])[: 6 if n >= 4 else 0] % n
    dst = np.array([1, 2, 3, 0, 2, 1])[: 6 if n >= 4 else 0] % n
    E = len(src)
    return Scenario(collected=rng.integers(0, max_d + 1, (T, n)), proc_cost=rng.random((T, n)),
                    error_weight=rng.random((T, n)), src=src, dst=dst, link_cost=rng.random((T, E)) * 0.1)


def _random_plan(s, seed=2):
    rng = np.random.default_rng(seed)
    keep = rng.random((s.horizon, s.n_devices)) * 0.5
    off = rng.random((s.horizon, s.n_edges)) * 0.2
    off[-1] = 0.0
    return Plan.from_fractions(s, keep, off)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 50), st.lists(st.floats(0.0, 1.0), min_size=1, max_size=5)),
                min_size=1, max_size=8))
def test_largest_remainder_adds_up_exactly(groups):
    weights, group, totals, prio = [], [], [], []
    for g, (total, raw) in enumerate(groups):
        raw = np.asarray(raw) + 1e-3
        frac = raw / raw.sum()
        weights += list(frac * total)
        group += [g] * len(frac)
        prio += list(range(len(frac)))
        totals.append(total)
    counts = largest_remainder(np.array(weights), np.array(group), np.array(totals), np.array(prio))
    assert (counts >= 0).all()
    assert np.array_equal(np.bincount(group, weights=counts, minlength=len(totals)).astype(int), totals)
    assert np.all(np.abs(counts - np.array(weights)) < 1.0)


def test_schedule_matches_plan_after_rounding():
    s = _scenario()
    p = _random_plan(s)
    sc = schedule(s, p)
    D = s.collected
    tt, ee, oc = sc.offloaded
    out = np.zeros_like(D)
    np.add.at(out, (tt, s.src[ee]), oc)
    assert np.array_equal(sc.kept + out + sc.discarded, D)  # every collected point has exactly one fate
    assert np.all(np.abs(sc.kept - p.keep * D) < 1) and np.all(np.abs(sc.discarded - p.discard * D) < 1)
    assert np.all(np.abs(oc - p.offload[tt, ee] * D[tt, s.src[ee]]) < 1)
    recv = np.zeros_like(D)
    np.add.at(recv, (tt + 1, s.dst[ee]), oc)
    assert np.array_equal(sc.processed, sc.kept + recv)  # eq. (6) on integers
    parts = 2 + np.bincount(s.src, minlength=s.n_devices)  # parts per device: keep, offloads, discard
    assert np.all(np.abs(sc.processed - p.processed) <= 1 + parts[None, :] * 1)
    assert len(np.unique(sc.pos)) == len(sc.pos) == sc.processed.sum()  # no point processed twice
    assert sc.processed.sum() == D.sum() - sc.discarded.sum()


def test_schedule_keeps_whole_point_capacities():
    """Rounding must not process more than ⌊C_i(t)⌋ or send more than ⌊C_ij(t)⌋ (planning.rules)."""
    one = np.ones((2, 2))
    s = Scenario(collected=np.array([[3, 3], [0, 0]]), proc_cost=one, error_weight=one, src=np.array([1]),
                 dst=np.array([0]), link_cost=np.zeros((2, 1)), proc_cap=np.array([[2.5, 9.0], [9.0, 9.0]]),
                 link_cap=np.array([[1.5], [9.0]]))
    # device 0 keeps 2.5 of 3 points (ties round the keep up: 3 > ⌊2.5⌋), device 1 sends 1.5 (2 > ⌊1.5⌋)
    p = Plan.from_fractions(s, np.array([[2.5 / 3, 0.0], [0.0, 0.0]]), np.array([[0.5], [0.0]]))
    sc = schedule(s, p)
    assert sc.kept[0].tolist() == [3, 0] and sc.offloaded[2].tolist() == [1]
    assert sc.processed.tolist() == [[2, 0], [1, 0]] and sc.dropped.tolist() == [[1, 0], [0, 0]]
    assert sc.discarded[0].tolist() == [0, 2]  # device 1: its 1.5 discarded and the point the link held back


def test_trainer_processes_plans_G_and_matches_per_device_loop():
    s = _scenario()
    p = _random_plan(s)
    for model in ("mlp", "cnn"):
        r = train(s, p, dataset=TINY, model=model, period=3, lr=0.1, seed=3)
        ref = reference_loop(s, p, dataset=TINY, model=model, period=3, lr=0.1, seed=3)
        assert np.array_equal(r.processed, schedule(s, p).processed)
        assert np.array_equal(np.isnan(r.device_loss), r.processed == 0)  # a step iff G_i(t) > 0
        assert np.allclose(r.device_loss, ref["device_loss"], atol=1e-5, equal_nan=True)
        for k, v in ref["state"].items():
            assert torch.allclose(r.final_state[k], v, atol=1e-5), k


def _fedavg_loop(s, lr, seed, model="mlp"):
    """Independent FedAvg: each device steps on its own D_i(t) points; average weighted by D every slot."""
    stream, _ = point_stream(int(s.collected.sum()), TINY.n_train, seed)
    X, Y = torch.from_numpy(TINY.x_train), torch.from_numpy(TINY.y_train)
    glob = make_model(model, seed=seed)
    k = 0
    for t in range(s.horizon):
        states, weights = [], []
        for i in range(s.n_devices):
            d = int(s.collected[t, i])
            idx = torch.from_numpy(stream[k:k + d])
            k += d
            if d == 0:
                continue
            net = copy.deepcopy(glob)
            opt = torch.optim.SGD(net.parameters(), lr=lr)
            F.cross_entropy(net(X[idx]), Y[idx]).backward()
            opt.step()
            states.append(dict(net.named_parameters()))
            weights.append(d)
        if weights:
            w = np.asarray(weights, float) / sum(weights)
            with torch.no_grad():
                for name, gp in glob.named_parameters():
                    gp.copy_(sum(float(wi) * st_[name] for wi, st_ in zip(w, states)))
    return {k: v.detach() for k, v in glob.named_parameters()}


def test_tau1_no_movement_equals_fedavg():
    s = _scenario(T=8)
    r = train(s, no_movement_plan(s), dataset=TINY, model="mlp", period=1, lr=0.1, seed=5)
    fed = federated(s, dataset=TINY, model="mlp", lr=0.1, seed=5)
    ref = _fedavg_loop(s, lr=0.1, seed=5)
    assert np.array_equal(r.processed, s.collected)
    for k, v in ref.items():
        assert torch.allclose(r.final_state[k], v, atol=1e-6), k
        assert torch.equal(fed.final_state[k], r.final_state[k])


def test_one_device_processing_everything_equals_centralised():
    rng = np.random.default_rng(0)
    s = Scenario(collected=rng.integers(1, 40, (15, 1)), proc_cost=np.ones((15, 1)), error_weight=np.ones((15, 1)),
                 src=np.zeros(0, int), dst=np.zeros(0, int), link_cost=np.zeros((15, 0)))
    for model in ("mlp", "cnn"):
        r = train(s, no_movement_plan(s), dataset=TINY, model=model, period=4, lr=0.2, seed=1)
        c = centralised(s, dataset=TINY, model=model, lr=0.2, seed=1, period=4)
        for k, v in c.final_state.items():
            assert torch.allclose(r.final_state[k], v, atol=1e-6, rtol=0), (model, k)
        assert abs(r.accuracy - c.accuracy) < 1e-9


def test_aggregation_weights_rule():
    w = aggregation_weights(np.array([0.0, 3.0, 1.0, 0.0]))
    assert w is not None and np.isclose(w.sum(), 1.0) and w[0] == 0 and w[3] == 0 and np.isclose(w[1], 0.75)
    assert aggregation_weights(np.zeros(3)) is None
    with pytest.raises(InputError, match=r"H\[1\]"):
        aggregation_weights(np.array([1.0, -1.0]))


def test_idle_devices_do_not_dilute_the_average():
    """A device with H_i = 0 gets weight 0: adding an idle device changes nothing."""
    rng = np.random.default_rng(4)
    D = rng.integers(1, 30, (9, 1))
    def scen(Dm):
        T, n = Dm.shape
        return Scenario(collected=Dm, proc_cost=np.ones((T, n)), error_weight=np.ones((T, n)),
                        src=np.zeros(0, int), dst=np.zeros(0, int), link_cost=np.zeros((T, 0)))
    one, two = scen(D), scen(np.hstack([D, np.zeros_like(D)]))
    r1 = train(one, no_movement_plan(one), dataset=TINY, model="mlp", period=3, lr=0.2, seed=2)
    r2 = train(two, no_movement_plan(two), dataset=TINY, model="mlp", period=3, lr=0.2, seed=2)
    for k in r1.final_state:
        assert torch.allclose(r1.final_state[k], r2.final_state[k], atol=1e-6)
    # nobody processes anything: the global model is kept (= w(0))
    zero = scen(np.zeros((4, 2), int))
    r0 = train(zero, no_movement_plan(zero), dataset=TINY, model="mlp", period=2, seed=2)
    w0 = dict(make_model("mlp", seed=2).named_parameters())
    assert all(torch.equal(r0.final_state[k], w0[k].detach()) for k in w0)


def test_same_seed_same_result_and_seed_matters():
    s = _scenario()
    p = _random_plan(s)
    a = train(s, p, dataset=TINY, model="mlp", period=2, lr=0.1, seed=7)
    b = train(s, p, dataset=TINY, model="mlp", period=2, lr=0.1, seed=7)
    c = train(s, p, dataset=TINY, model="mlp", period=2, lr=0.1, seed=8)
    assert all(torch.equal(a.final_state[k], b.final_state[k]) for k in a.final_state)
    assert np.array_equal(a.device_loss, b.device_loss, equal_nan=True) and a.accuracy == b.accuracy
    assert not torch.equal(a.final_state["fc1.weight"], c.final_state["fc1.weight"])


def test_curves_progress_passes_and_learning():
    s = _scenario(T=10)
    p = no_movement_plan(s)
    calls = []
    r = train(s, p, dataset=TINY, model="mlp", period=5, lr=0.1, seed=0, passes=3,
              progress=lambda done, total: calls.append((done, total)))
    assert calls == [(k, 30) for k in range(1, 31)]
    assert r.eval_slot.tolist() == [5, 10, 15, 20, 25, 30] and r.device_loss.shape == (30, 4)
    assert r.accuracy > 0.5  # tiny is easy: far above chance (0.1)
    assert r.config["passes"] == 3 and not r.wrapped
    assert r.as_dict()["unit_cost"] == p.costs.unit


def test_stream_wraps_with_warning():
    stream, wrapped = point_stream(25, 10, seed=0)
    assert wrapped and sorted(stream[:10]) == list(range(10)) and sorted(stream[10:20]) == list(range(10))
    s = _scenario(T=5, max_d=200)  # ~2000 points > 600 in tiny
    with pytest.warns(UserWarning, match="wraps"):
        r = train(s, no_movement_plan(s), dataset=TINY, model="mlp", period=5)
    assert r.wrapped
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        train(_scenario(T=3), no_movement_plan(_scenario(T=3)), dataset=TINY, model="mlp", period=3)


@pytest.mark.parametrize("kw, match", [({"period": 0}, "period"), ({"lr": -1.0}, "lr"), ({"passes": 0}, "passes"),
                                       ({"eval_every": -1}, "eval_every"), ({"model": "resnet"}, "model")])
def test_bad_arguments(kw, match):
    s = _scenario(T=3)
    with pytest.raises((TrainingError, ValueError), match=match):
        train(s, no_movement_plan(s), dataset=TINY, **kw)


def test_plan_shape_mismatch():
    s, other = _scenario(T=4), _scenario(T=5)
    with pytest.raises(TrainingError, match="do not match"):
        train(s, no_movement_plan(other), dataset=TINY, model="mlp")


def test_custom_module_factory():
    def small():
        return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10))
    s = _scenario(T=6)
    r = train(s, _random_plan(s), dataset=TINY, model=small, period=3, lr=0.5)
    ref = reference_loop(s, _random_plan(s), dataset=TINY, model=small, period=3, lr=0.5)
    assert r.config["model"] == "small"
    for k, v in ref["state"].items():
        assert torch.allclose(r.final_state[k], v, atol=1e-5)
