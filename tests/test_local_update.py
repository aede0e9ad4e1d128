"""Local update rules (eq. 3 and mini-batches): the trainer against a plain PyTorch loop."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from foglearn.learning import load_dataset, make_model, schedule, train
from foglearn.learning.trainer import LocalUpdate, TrainingError, point_stream
from foglearn.network.scenario import Scenario
from foglearn.planning.plan import Plan
from foglearn.planning.rules import aggregation_weights

torch.set_num_threads(1)
TINY = load_dataset("tiny")


def _case(T=6, n=4, seed=3, max_d=40):
    """A small network whose plan concentrates data: device 0 offloads most of its points to 1."""
    rng = np.random.default_rng(seed)
    src, dst = np.array([0, 1, 2, 3]), np.array([1, 2, 3, 0])
    s = Scenario(
        collected=rng.integers(0, max_d + 1, (T, n)),
        proc_cost=rng.random((T, n)),
        error_weight=rng.random((T, n)),
        src=src,
        dst=dst,
        link_cost=rng.random((T, 4)) * 0.1,
    )
    keep = np.full((T, n), 0.4)
    off = np.zeros((T, 4))
    off[:-1, 0] = 0.6
    off[:-1, 2] = 0.3
    return s, Plan.from_fractions(s, keep, off)


def plain_loop(s, p, model, period, lr, seed, b, scaled=False, class_weight=None):
    """One torch module + ``torch.optim.SGD`` per device; ``⌈G/b⌉`` steps per device and slot
    (``b = None``: one step, eq. 3), each on the batch's mean loss or, ``scaled``, its summed loss
    over ``max(k, b)`` (each point's loss times its class's weight, if given); eq. (4) with weights
    ``H_i``. Returns the global parameters."""
    omega = None if class_weight is None else torch.tensor(class_weight, dtype=torch.float32)
    T, n = s.horizon, s.n_devices
    sched = schedule(s, p)
    stream, _ = point_stream(int(s.collected.sum()), TINY.n_train, seed)
    X, Y = torch.from_numpy(TINY.x_train), torch.from_numpy(TINY.y_train)
    glob = make_model(model, seed=seed)
    nets = [copy.deepcopy(glob) for _ in range(n)]
    opts = [torch.optim.SGD(m.parameters(), lr=lr) for m in nets]
    H = np.zeros(n)
    for t in range(T):
        for i in range(n):
            idx = stream[sched.pos[(sched.slot == t) & (sched.device == i)]]
            step = len(idx) if b is None else b
            for a in range(0, len(idx), max(step, 1)):
                batch = torch.from_numpy(idx[a : a + step])
                opts[i].zero_grad()
                losses = F.cross_entropy(nets[i](X[batch]), Y[batch], reduction="none")
                if omega is not None:
                    losses = losses * omega[Y[batch]]
                (losses.sum() / (max(len(batch), b) if scaled else len(batch))).backward()
                opts[i].step()
            H[i] += len(idx)
        if (t + 1) % period == 0 or t + 1 == T:
            w = aggregation_weights(H)
            if w is not None:
                state = {
                    k: sum(
                        float(w[i]) * dict(nets[i].named_parameters())[k].detach() for i in range(n)
                    )
                    for k, _ in glob.named_parameters()
                }
                glob.load_state_dict(state)
            for m in nets:
                m.load_state_dict(glob.state_dict())
            H[:] = 0
    return {k: v.detach() for k, v in glob.named_parameters()}


def small_net() -> torch.nn.Module:
    """Any module: the trainer's vmap path."""
    return torch.nn.Sequential(
        torch.nn.Flatten(), torch.nn.Linear(784, 16), torch.nn.Tanh(), torch.nn.Linear(16, 10)
    )


@pytest.mark.parametrize("model", ["mlp", "cnn", small_net])
@pytest.mark.parametrize("period", [1, 3])
@pytest.mark.parametrize("b, scaled", [(None, False), (7, False), (7, True)])
def test_trainer_matches_plain_pytorch_loop(model, period, b, scaled):
    s, p = _case()
    G = schedule(s, p).processed
    assert G.max() > 2 * 7  # several mini-batches on some device
    assert ((G % 7 > 0) & (G > 7)).any() and ((G > 0) & (G < 7)).any()  # partial last batches, and lone small ones
    spec = "paper" if b is None else f"{'scaled' if scaled else 'minibatch'}:{b}"
    r = train(
        s,
        p,
        dataset=TINY,
        model=model,
        period=period,
        lr=0.1,
        seed=5,
        local_update=spec,
        threads=2,
        eval_every=0,
    )
    ref = plain_loop(s, p, model, period, 0.1, 5, b, scaled)
    for k, v in ref.items():
        torch.testing.assert_close(r.final_state[k], v, rtol=2e-5, atol=2e-6)
    assert r.config["local_update"] == spec


@pytest.mark.parametrize("model", ["mlp", "cnn", small_net])
@pytest.mark.parametrize("period, b, scaled", [(1, None, False), (3, None, False), (3, 7, False), (3, 7, True)])
def test_class_weights_match_plain_pytorch_loop(model, period, b, scaled):
    """``class_weights``: every point's loss times its class's weight, on every compute path (the MLP's
    compiled device-major kernel, the CNN's batched kernel, τ = 1's union step, the vmap path)."""
    s, p = _case()
    omega = np.linspace(0.2, 3.0, 10)
    spec = "paper" if b is None else f"{'scaled' if scaled else 'minibatch'}:{b}"
    kw = dict(dataset=TINY, model=model, period=period, lr=0.1, seed=5, local_update=spec, threads=2, eval_every=0)
    r = train(s, p, class_weights=omega, **kw)
    ref = plain_loop(s, p, model, period, 0.1, 5, b, scaled, class_weight=omega)
    for k, v in ref.items():
        torch.testing.assert_close(r.final_state[k], v, rtol=2e-5, atol=2e-6)
    assert r.config["class_weights"] == {"spec": "explicit", "weights": [round(float(v), 6) for v in
                                                                          omega.astype(np.float32)]}
    plain = train(s, p, **kw)
    assert plain.config["class_weights"] is None
    assert all(not torch.allclose(r.final_state[k], plain.final_state[k]) for k in plain.final_state)
    ones = train(s, p, class_weights=np.ones(10), **kw)  # weights of 1 are the plain loss, bit for bit
    for k in plain.final_state:
        assert torch.equal(ones.final_state[k], plain.final_state[k])
    np.testing.assert_array_equal(ones.device_loss, plain.device_loss)


def test_bad_class_weights_are_a_training_error():
    s, p = _case()
    with pytest.raises(TrainingError, match=r"class_weights = 'inverse': must be one of \('none', 'sqrt'\)"):
        train(s, p, dataset=TINY, model="mlp", period=3, class_weights="inverse")
    with pytest.raises(TrainingError, match="class_weights = \\[1, 2\\]: must be one of .* or 10 numbers ≥ 0"):
        train(s, p, dataset=TINY, model="mlp", period=3, class_weights=[1, 2])


@pytest.mark.parametrize("model", ["mlp", "cnn", small_net])
def test_scaled_steps_part_from_minibatch_only_through_small_batches(model):
    """``scaled:b`` equals ``minibatch:b`` where every batch is a whole ``b`` and differs otherwise;
    its device loss is still the mean over the slot's points."""
    s, p = _case()
    kw = dict(dataset=TINY, model=model, period=3, lr=0.1, seed=5, eval_every=0)
    m = train(s, p, local_update="minibatch:1", **kw)
    c = train(s, p, local_update="scaled:1", **kw)
    for k in m.final_state:
        assert torch.equal(m.final_state[k], c.final_state[k])
    m7 = train(s, p, local_update="minibatch:7", **kw)
    c7 = train(s, p, local_update="scaled:7", **kw)
    assert all(not torch.allclose(m7.final_state[k], c7.final_state[k]) for k in m7.final_state)
    tiny = dict(kw, lr=1e-9)
    np.testing.assert_allclose(train(s, p, local_update="scaled:7", **tiny).device_loss,
                               train(s, p, local_update="minibatch:7", **tiny).device_loss, rtol=1e-5, equal_nan=True)


def test_minibatch_larger_than_any_batch_is_the_paper_rule():
    s, p = _case()
    big = int(schedule(s, p).processed.max())
    a = train(s, p, dataset=TINY, model="mlp", period=2, lr=0.1, seed=1, eval_every=0)
    m = train(
        s,
        p,
        dataset=TINY,
        model="mlp",
        period=2,
        lr=0.1,
        seed=1,
        eval_every=0,
        local_update=f"minibatch:{big}",
    )
    for k in a.final_state:
        assert torch.equal(a.final_state[k], m.final_state[k])
    np.testing.assert_array_equal(a.device_loss, m.device_loss)


def test_minibatch_steps_grow_with_the_data():
    """Mini-batches of 4 take more steps than eq. (3), so the models part."""
    s, p = _case()
    m = train(
        s,
        p,
        dataset=TINY,
        model="mlp",
        period=2,
        lr=0.1,
        seed=1,
        eval_every=0,
        local_update="minibatch:4",
    )
    a = train(s, p, dataset=TINY, model="mlp", period=2, lr=0.1, seed=1, eval_every=0)
    assert all(not torch.allclose(a.final_state[k], m.final_state[k]) for k in a.final_state)


def test_minibatch_device_loss_is_the_mean_over_the_slot():
    """Device loss = mean over the device's points of each point's loss before its step."""
    s, p = _case()
    r = train(
        s,
        p,
        dataset=TINY,
        model="mlp",
        period=10,
        lr=1e-9,
        seed=2,
        eval_every=0,
        local_update="minibatch:5",
    )
    a = train(s, p, dataset=TINY, model="mlp", period=10, lr=1e-9, seed=2, eval_every=0)
    np.testing.assert_allclose(r.device_loss, a.device_loss, rtol=1e-5, equal_nan=True)


@pytest.mark.parametrize(
    "spec", ["minibatch:0", "minibatch:x", "sgd", "paper:3", 5, "scaled:0", "scaled:-2", "scaled:1.5"]
)
def test_bad_local_update_is_refused(spec):
    with pytest.raises(TrainingError, match="local_update"):
        LocalUpdate.parse(spec)


def test_local_update_parse():
    assert LocalUpdate.parse("paper").batch is None
    assert LocalUpdate.parse("minibatch").batch == LocalUpdate.DEFAULT_BATCH
    assert LocalUpdate.parse(" MiniBatch:16 ").spec == "minibatch:16"
    assert LocalUpdate.parse("scaled:16") == LocalUpdate(16, True) and LocalUpdate(16, True).spec == "scaled:16"
    assert LocalUpdate.parse("scaled").batch == LocalUpdate.DEFAULT_BATCH
    assert LocalUpdate(16, True).min_den == 16 and LocalUpdate(16).min_den == 1 and LocalUpdate().min_den == 1
