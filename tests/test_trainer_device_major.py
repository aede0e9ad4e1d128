"""Device-major periods: same result as a plain per-device loop, independent of the block size;
per-device buffers averaged with eq. (4) weights; the ``device=`` argument."""

from __future__ import annotations

import copy
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from foglearn.errors import InputError
from foglearn.learning import (
    TrainingError,
    aggregation_weights,
    load_dataset,
    make_model,
    no_movement_plan,
    reference_loop,
    schedule,
    train,
)
from foglearn.learning import trainer as trainer_mod
from foglearn.learning.kernels import BatchedMLP, mlp_devices, mlp_kernel_layout
from foglearn.learning.models import MLP
from foglearn.learning.trainer import point_stream
from foglearn.network.scenario import Scenario
from foglearn.planning.plan import Plan

torch.set_num_threads(1)
TINY = load_dataset("tiny")


def _scenario(T=9, n=7, seed=3, low=0, high=9):
    """A ring plus chords, with processing and link capacities that bind."""
    rng = np.random.default_rng(seed)
    src = np.array([i for i in range(n)] + [0, 2, 4])
    dst = np.array([(i + 1) % n for i in range(n)] + [3, 0, 1])
    E = len(src)
    return Scenario(collected=rng.integers(low, high + 1, (T, n)), proc_cost=rng.random((T, n)),
                    error_weight=rng.random((T, n)), src=src, dst=dst, link_cost=rng.random((T, E)) * 0.1,
                    proc_cap=rng.uniform(2, 8, (T, n)), link_cap=rng.uniform(0, 4, (T, E)))


def _plan(s, seed=4):
    rng = np.random.default_rng(seed)
    keep = rng.random((s.horizon, s.n_devices)) * 0.5
    off = rng.random((s.horizon, s.n_edges)) * 0.15
    off[-1] = 0.0
    return Plan.from_fractions(s, keep, off, check=False)


def _close(a: dict, b: dict, atol: float) -> None:
    assert a.keys() == b.keys()
    for k, v in b.items():
        assert torch.allclose(a[k].double(), v.double(), atol=atol, rtol=0), (k, (a[k] - v).abs().max())


@pytest.mark.parametrize("model", ["mlp", "cnn"])
@pytest.mark.parametrize("period", [1, 3])
def test_device_major_equals_plain_loop_with_movement_and_capacities(model, period):
    s = _scenario()
    p = _plan(s)
    sched = schedule(s, p)
    assert sched.offloaded[2].sum() > 0 and sched.dropped.sum() > 0  # movement, and capacities bind
    ref = reference_loop(s, p, dataset=TINY, model=model, period=period, lr=0.2, seed=5)
    for in_flight in (None, 2):  # one block, and blocks of two devices
        got = train(s, p, dataset=TINY, model=model, period=period, lr=0.2, seed=5, in_flight=in_flight)
        _close(got.final_state, ref["state"], 1e-5)
        assert np.allclose(got.device_loss, ref["device_loss"], atol=1e-5, equal_nan=True)


@pytest.mark.parametrize("model", ["mlp", "cnn"])
@pytest.mark.parametrize("update", ["paper", "minibatch:2"])
def test_block_size_does_not_change_the_result(model, update):
    """One device per block vs all devices in one block: equal to float round-off (the blocks'
    sums are added in float64), also over two passes and with mini-batch rounds."""
    s = _scenario(seed=8)
    p = _plan(s, seed=9)
    runs = [train(s, p, dataset=TINY, model=model, period=4, lr=0.2, seed=1, passes=2, local_update=update,
                  in_flight=k, eval_every=1) for k in (1, s.n_devices)]
    _close(runs[0].final_state, runs[1].final_state, 1e-6)
    assert np.allclose(runs[0].device_loss, runs[1].device_loss, atol=1e-6, equal_nan=True)
    assert np.allclose(runs[0].eval_loss, runs[1].eval_loss, atol=1e-6)


def test_blocks_hold_at_most_in_flight_devices(monkeypatch):
    held = []
    begin = trainer_mod._KernelRunner.begin

    def spy(self, count):
        held.append(count)
        begin(self, count)
        assert self.flat.shape[0] == count

    monkeypatch.setattr(trainer_mod._KernelRunner, "begin", spy)
    s = _scenario()
    train(s, _plan(s), dataset=TINY, model="cnn", period=3, lr=0.1, in_flight=3, eval_every=0)
    assert held and max(held) == 3 and sum(held) == s.n_devices * 3  # 3 periods, every device once each


@pytest.mark.parametrize("sparse", [False, True])
def test_mlp_device_kernel_equals_batched_steps(sparse):
    """The compiled device-major call = the batched kernel's in-place steps, device by device.

    ``sparse``: most pixels zero, as on MNIST, so rows of the first layer are read from the global
    model until a step changes them, and a device's last step writes its change straight into the
    sum; the same point twice in a last step (one row changed twice there); every call leaves its
    per-thread scratch ready for the next (a second call, on another thread too, gives the same)."""
    m = make_model("mlp", seed=0)
    k = BatchedMLP(m)
    X, Y = torch.from_numpy(TINY.x_train), torch.from_numpy(TINY.y_train)
    rng = np.random.default_rng(0)
    if sparse:
        X = X * torch.from_numpy(rng.random(X.shape) < 0.2)
    glob = k.layout.flatten(dict(m.named_parameters()))
    steps = [[3, 1, 2], [5], [1, 1, 1, 4], [1], [2, 1], [1, 2]]  # points per step, per device
    dev_ptr = np.cumsum([0] + [len(d) for d in steps])
    step_ptr = np.cumsum([0] + [x for d in steps for x in d])
    pts = rng.integers(0, len(X), step_ptr[-1])
    pts[-1] = pts[-2]  # the last device's last step: one point twice
    w = np.array([0.3, 0.1, 0.2, 0.1, 0.1, 0.2])
    out, loss = np.zeros(k.layout.size), np.zeros(len(pts))
    mlp_devices(k, X, Y, mlp_kernel_layout(k, glob), dev_ptr, step_ptr, pts, w, 0.1, out, loss)
    def again() -> tuple[np.ndarray, np.ndarray]:
        out2, loss2 = np.zeros(k.layout.size), np.zeros(len(pts))
        mlp_devices(k, X, Y, mlp_kernel_layout(k, glob), dev_ptr, step_ptr, pts, w, 0.1, out2, loss2)
        return out2, loss2

    with ThreadPoolExecutor(1) as pool:
        for out2, loss2 in (again(), pool.submit(again).result()):
            assert np.array_equal(out, out2) and np.array_equal(loss, loss2)
    expect, expect_loss = torch.zeros(k.layout.size, dtype=torch.float64), []
    for d in range(len(steps)):
        flat = glob.clone().unsqueeze(0)
        for st in range(dev_ptr[d], dev_ptr[d + 1]):
            idx = torch.from_numpy(pts[step_ptr[st]:step_ptr[st + 1]]).unsqueeze(0)
            expect_loss += k.sgd_step(flat, torch.tensor([0]), X, Y[idx], torch.full(idx.shape, 1.0 / idx.shape[1]),
                                      0.1, index=idx)[0].tolist()
        expect += w[d] * flat[0].double()
    got = mlp_kernel_layout(k, torch.from_numpy((out + mlp_kernel_layout(k, glob).numpy()).astype(np.float32)),
                            inverse=True)
    assert torch.allclose(got.double(), expect, atol=1e-6)
    assert np.allclose(loss, expect_loss, atol=1e-6)
    with pytest.raises(InputError, match="pts"):
        mlp_devices(k, X, Y, glob, dev_ptr, step_ptr, pts + len(X), w, 0.1, out, loss)
    with pytest.raises(InputError, match="step_ptr"):
        mlp_devices(k, X, Y, glob, dev_ptr, step_ptr[::-1].copy(), pts, w, 0.1, out, loss)


# --- buffers (batch-norm) -------------------------------------------------------------------------

class _BNMLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(784, 16)
        self.bn = nn.BatchNorm1d(16)
        self.fc2 = nn.Linear(16, 10)

    def forward(self, x):
        return self.fc2(F.relu(self.bn(self.fc1(x.flatten(1)))))


class _BNCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 3, 5, stride=3)
        self.bn = nn.BatchNorm2d(3)
        self.fc = nn.Linear(3 * 8 * 8, 10)

    def forward(self, x):
        return self.fc(F.relu(self.bn(self.conv(x))).flatten(1))


def _plain_loop_with_buffers(s, p, factory, period, lr, seed):
    """Per-device modules in training mode; eq. (4) on parameters and buffers alike (floating
    buffers: Σ H_i b_i / Σ H; integer ones: the same, rounded)."""
    sched = schedule(s, p)
    stream, _ = point_stream(int(s.collected.sum()), TINY.n_train, seed)
    X, Y = torch.from_numpy(TINY.x_train), torch.from_numpy(TINY.y_train)
    glob = make_model(factory, seed=seed)
    nets = [copy.deepcopy(glob) for _ in range(s.n_devices)]
    opts = [torch.optim.SGD(m.parameters(), lr=lr) for m in nets]
    H = np.zeros(s.n_devices)
    for t in range(s.horizon):
        for i in range(s.n_devices):
            idx = torch.from_numpy(stream[sched.pos[(sched.slot == t) & (sched.device == i)]])
            if len(idx):
                opts[i].zero_grad()
                F.cross_entropy(nets[i](X[idx]), Y[idx]).backward()
                opts[i].step()
                H[i] += len(idx)
        if (t + 1) % period == 0 or t + 1 == s.horizon:
            w = aggregation_weights(H)
            if w is not None:
                states = [m.state_dict() for m in nets]
                avg = {}
                for k, v in glob.state_dict().items():
                    acc = sum(float(w[i]) * states[i][k].double() for i in range(s.n_devices) if w[i] > 0)
                    avg[k] = acc.to(v.dtype) if v.is_floating_point() else acc.round().to(v.dtype)
                glob.load_state_dict(avg)
            for m in nets:
                m.load_state_dict(glob.state_dict())
            H[:] = 0
    glob.eval()
    with torch.no_grad():
        acc = float((glob(torch.from_numpy(TINY.x_test)).argmax(1) == torch.from_numpy(TINY.y_test)).double().mean())
    return dict(glob.state_dict()), acc


@pytest.mark.parametrize("factory", [_BNMLP, _BNCNN])
def test_buffers_are_per_device_and_averaged_with_eq4_weights(factory):
    s = _scenario(T=6, n=5, seed=2, low=2, high=9)  # batch-norm needs ≥ 2 samples per batch
    s = s.replace(proc_cap=None, link_cap=None)
    p = no_movement_plan(s)
    expect, acc = _plain_loop_with_buffers(s, p, factory, period=3, lr=0.1, seed=6)
    for in_flight in (None, 2):
        got = train(s, p, dataset=TINY, model=factory, period=3, lr=0.1, seed=6, in_flight=in_flight)
        _close(got.final_state, expect, 1e-5)
        assert got.accuracy == pytest.approx(acc, abs=1e-9)  # evaluated in eval mode (running statistics)
    assert expect["bn.num_batches_tracked"] > 0 and expect["bn.running_mean"].abs().sum() > 0


# --- device= ---------------------------------------------------------------------------------------

class _TorchPathMLP(MLP):
    """The paper MLP under another class: no batched kernel, so it takes the torch (CUDA) path."""


def test_explicit_cpu_equals_default_and_the_torch_path_equals_the_kernels():
    s = _scenario()
    p = _plan(s)
    default = train(s, p, dataset=TINY, model="mlp", period=3, lr=0.2, seed=2)
    for dev in ("cpu", torch.device("cpu")):
        same = train(s, p, dataset=TINY, model="mlp", period=3, lr=0.2, seed=2, device=dev)
        for k, v in default.final_state.items():
            assert torch.equal(same.final_state[k], v), k
    torch_path = train(s, p, dataset=TINY, model=_TorchPathMLP, period=3, lr=0.2, seed=2, device="cpu")
    assert torch_path.config["kernel"] == "vmap" and default.config["kernel"] == "mlp"
    _close(torch_path.final_state, default.final_state, 1e-5)
    assert np.allclose(torch_path.device_loss, default.device_loss, atol=1e-5, equal_nan=True)


@pytest.mark.parametrize("bad", ["tpu", "gpu:0", 3.5])
def test_bad_device_is_an_error_naming_the_argument(bad):
    s = _scenario()
    with pytest.raises(TrainingError, match="device"):
        train(s, _plan(s), dataset=TINY, model="mlp", device=bad)


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_cuda_without_cuda_is_an_error():
    s = _scenario()
    with pytest.raises(TrainingError, match="CUDA is not available"):
        train(s, _plan(s), dataset=TINY, model="mlp", device="cuda")


@pytest.mark.parametrize("bad", [0, -1, 2.0, True])
def test_bad_in_flight_is_an_error(bad):
    s = _scenario()
    with pytest.raises(TrainingError, match="in_flight"):
        train(s, _plan(s), dataset=TINY, model="mlp", in_flight=bad)


def test_schedule_in_windows_of_slots_is_the_same_schedule(monkeypatch):
    """schedule() rounds a window of slots at a time (bounded memory); the windows change nothing."""
    s = _scenario(T=12, seed=5)
    p = _plan(s, seed=6)
    whole = schedule(s, p)
    for slots in (1, 5):
        monkeypatch.setattr(trainer_mod, "SCHEDULE_ITEMS", slots * s.n_devices)
        part = schedule(s, p)
        for f in ("slot", "device", "pos", "processed", "kept", "discarded", "dropped"):
            assert np.array_equal(getattr(part, f), getattr(whole, f)), f
        for a, b in zip(part.offloaded, whole.offloaded):
            assert np.array_equal(a, b)


def test_batch_norm_on_a_single_point_is_a_clear_error() -> None:
    """BatchNorm1d cannot normalise one value per channel: a device stepping on one point is an
    InputError that says why and what to use instead, not PyTorch's bare ValueError."""
    from foglearn import train
    from foglearn.network import synthetic
    from foglearn.planning import plan

    s = synthetic(n_devices=3, horizon=4, max_points=1, seed=0)  # at most one point per device and slot
    assert s.collected.max() == 1

    def bn_mlp() -> nn.Module:
        return nn.Sequential(nn.Flatten(), nn.Linear(784, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 10))

    with pytest.raises(InputError, match="batch-norm layer saw one value per channel.*GroupNorm"):
        train(s, plan(s, movement=False), dataset="tiny", model=bn_mlp, period=2, lr=0.1, seed=0)


def test_dropout_draws_per_device_masks_reproducibly() -> None:
    """A model with dropout trains (each device its own masks), the same seed gives the same run
    whatever torch's global generator holds, and the global generator is left untouched."""
    from foglearn import train
    from foglearn.network import synthetic
    from foglearn.planning import plan

    s = synthetic(n_devices=4, horizon=6, max_points=8, seed=0)
    p = plan(s)

    def net() -> nn.Module:
        return nn.Sequential(nn.Flatten(), nn.Linear(784, 16), nn.ReLU(), nn.Dropout(0.5), nn.Linear(16, 10))

    torch.manual_seed(123)
    before = torch.get_rng_state()
    a = train(s, p, dataset="tiny", model=net, period=3, lr=0.1, seed=0)
    assert torch.equal(before, torch.get_rng_state())
    torch.rand(5)  # move the global generator: the run must not notice
    b = train(s, p, dataset="tiny", model=net, period=3, lr=0.1, seed=0)
    for k, v in a.final_state.items():
        assert torch.equal(v, b.final_state[k]), k
    c = train(s, p, dataset="tiny", model=net, period=3, lr=0.1, seed=1)
    assert any(not torch.equal(v, c.final_state[k]) for k, v in a.final_state.items())
