"""Batched per-device kernels (foglearn.learning.kernels) and the trainer paths built on them."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import foglearn.learning.trainer as trainer_mod
from foglearn.learning import (
    fused_cnn,
    load_dataset,
    make_model,
    no_movement_plan,
    reference_loop,
    train,
)
from foglearn.learning.kernels import BatchedCNN, BatchedMLP, Layout, batched_kernel
from foglearn.network.scenario import Scenario
from foglearn.planning.plan import Plan

torch.set_num_threads(1)
TINY = load_dataset("tiny")
#: Both CNN kernel paths: layer by layer (torch GEMMs) and the fused single call (BLAS sgemm from numba).
FUSED = [False, pytest.param(True, marks=pytest.mark.skipif(not fused_cnn.enabled(),
                                                          reason="no sgemm_ here, or FOGLEARN_FUSED=0"))]


def _inputs(g: int, w: int, seed: int, blank_rows: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, TINY.n_train, (g, w), generator=gen)
    x = torch.from_numpy(TINY.x_train)[idx].clone()
    if blank_rows:  # constant (zero) background → many exactly tied 2×2 pooling windows
        x[..., :blank_rows, :] = 0.0
        x[..., :, -blank_rows:] = 0.0
    return x, torch.from_numpy(TINY.y_train)[idx]


def _check_against_modules(kernel, modules, x, y, counts, atol=1e-5):
    g, w = y.shape
    flat = torch.stack([kernel.layout.flatten(dict(m.named_parameters())) for m in modules])
    weight = torch.zeros(g, w)
    for d, c in enumerate(counts):
        if c:
            weight[d, :c] = 1.0 / c
    loss, grad = kernel.loss_and_grad(flat, x, y, weight)
    logits = kernel.forward(flat, x)
    assert loss.shape == (g, w) and grad.shape == (g, kernel.layout.size)
    for d, (m, c) in enumerate(zip(modules, counts)):
        with torch.no_grad():
            ref_logits = m(x[d])
        assert torch.allclose(logits[d], ref_logits, atol=atol, rtol=0)
        if c == 0:  # an empty device (all padding) gets exactly zero gradient
            assert torch.count_nonzero(grad[d]) == 0
            continue
        m.zero_grad()
        ref = F.cross_entropy(m(x[d, :c]), y[d, :c], reduction="none")
        ref.mean().backward()
        ref_grad = torch.cat([p.grad.reshape(-1) for p in m.parameters()])
        assert torch.allclose(loss[d, :c], ref.detach(), atol=atol, rtol=0)
        assert torch.allclose(grad[d], ref_grad, atol=atol, rtol=0), float((grad[d] - ref_grad).abs().max())


@pytest.mark.parametrize("fused", FUSED)
@pytest.mark.parametrize("counts", [[7, 0, 3, 1, 7], [40, 13], [2 * fused_cnn.BLOCK + 5]])
def test_cnn_kernel_matches_module_ragged_with_empty_devices(counts, fused):
    modules = [make_model("cnn", seed=s) for s in range(len(counts))]  # genuinely different weights
    kernel = BatchedCNN(modules[0], fused=fused)
    x, y = _inputs(len(counts), max(counts), seed=1)
    _check_against_modules(kernel, modules, x, y, counts)
    # the kernel reuses its scratch buffers: a smaller call after a larger one is still exact
    _check_against_modules(kernel, modules[:1], x[:1, :3], y[:1, :3], [3])


#: Kernel variants: the CNN's default (fused where available), the MLP, the CNN layer by layer.
KINDS = ["cnn", "mlp", "cnn-layered"]


def _kernel_setup(kind: str, n_models: int, g: int, w: int, seed: int):
    """A kernel of ``kind``, ``n_models`` stacked parameter rows, the TINY training set and a ``[g, w]`` batch."""
    modules = [make_model(kind.split("-")[0], seed=s) for s in range(n_models)]
    kernel = BatchedCNN(modules[0], fused=False) if kind == "cnn-layered" else batched_kernel(modules[0])
    flat = torch.stack([kernel.layout.flatten(dict(m.named_parameters())) for m in modules])
    idx = torch.randint(0, TINY.n_train, (g, w), generator=torch.Generator().manual_seed(seed))
    return kernel, flat, torch.from_numpy(TINY.x_train), idx, torch.from_numpy(TINY.y_train)[idx]


@pytest.mark.parametrize("kind", KINDS)
def test_kernel_reads_samples_in_place_with_index(kind):
    """``index`` selects the batch from the whole dataset: same numbers as the gathered batch."""
    kernel, flat, X, idx, y = _kernel_setup(kind, 2, 2, 5, seed=9)
    wt = torch.full((2, 5), 0.2)
    loss, grad = kernel.loss_and_grad(flat, X[idx], y, wt)
    loss_i, grad_i = kernel.loss_and_grad(flat, X, y, wt, index=idx)
    assert torch.equal(loss, loss_i) and torch.equal(grad, grad_i)
    assert torch.equal(kernel.forward(flat, X[idx]), kernel.forward(flat, X, index=idx))


@pytest.mark.parametrize("fused", FUSED)
def test_cnn_kernel_pooling_ties_route_like_max_pool2d(fused):
    """Blank borders + positive biases: many 2×2 windows hold equal maxima; max_pool2d sends the
    gradient to the first one (row-major), and so must the kernel."""
    modules = [make_model("cnn", seed=s) for s in range(3)]
    with torch.no_grad():
        for m in modules:
            m.conv1.bias.copy_(m.conv1.bias.abs() + 0.05)
            m.conv2.bias.copy_(m.conv2.bias.abs() + 0.05)
    x, y = _inputs(3, 6, seed=2, blank_rows=10)
    z = modules[0].conv1(x[0])
    assert (z[:, :, :2, 0] == z[:, :, :2, 1]).any()  # ties really occur
    _check_against_modules(BatchedCNN(modules[0], fused=fused), modules, x, y, [6, 2, 5])


@pytest.mark.parametrize("kind", KINDS)
def test_sgd_step_updates_only_its_rows_in_place(kind):
    """``sgd_step`` = ``params[rows] -= lr · grad`` (eq. 3), other rows untouched, same losses."""
    kernel, params, X, idx, y = _kernel_setup(kind, 4, 2, 6, seed=3)
    wt = torch.full((2, 6), 1 / 6)
    wt[1, 4:] = 0.0  # padding
    rows = torch.tensor([3, 1])
    loss, grad = kernel.loss_and_grad(params[rows], X, y, wt, index=idx)
    before = params.clone()
    step_loss = kernel.sgd_step(params, rows, X, y, wt, 0.3, index=idx)
    assert torch.equal(params[[0, 2]], before[[0, 2]])
    assert torch.allclose(params[rows], before[rows] - 0.3 * grad, atol=1e-6, rtol=0)
    assert torch.allclose((step_loss * wt).sum(1), (loss * wt).sum(1), atol=1e-6)


def test_mlp_kernel_matches_module_ragged_with_empty_devices():
    counts = [0, 5, 2, 9]
    modules = [make_model("mlp", seed=s) for s in range(len(counts))]
    x, y = _inputs(len(counts), 9, seed=3)
    _check_against_modules(BatchedMLP(modules[0]), modules, x, y, counts)


def test_layout_roundtrip_and_kernel_selection():
    m = make_model("cnn", seed=0)
    lay = Layout.of(m)
    flat = lay.flatten(dict(m.named_parameters()))
    assert lay.size == 44426 == flat.numel()
    back = lay.unflatten(flat.unsqueeze(0).repeat(2, 1))
    for k, p in m.named_parameters():
        assert torch.equal(back[k][1], p.detach())
    assert isinstance(batched_kernel(m), BatchedCNN) and isinstance(batched_kernel(make_model("mlp")), BatchedMLP)
    assert batched_kernel(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10))) is None
    assert batched_kernel(m).fused == bool(fused_cnn.enabled())  # the single-call path wherever it can run


def _scenario(T=8, n=5, seed=0, max_d=12):
    rng = np.random.default_rng(seed)
    src = np.array([0, 1, 2, 3, 4, 0])
    dst = np.array([1, 2, 3, 4, 0, 2])
    return Scenario(collected=rng.integers(0, max_d + 1, (T, n)), proc_cost=rng.random((T, n)),
                    error_weight=rng.random((T, n)), src=src, dst=dst, link_cost=rng.random((T, 6)) * 0.1)


def _plan(s, seed=1):
    rng = np.random.default_rng(seed)
    off = rng.random((s.horizon, s.n_edges)) * 0.2
    off[-1] = 0.0
    return Plan.from_fractions(s, rng.random((s.horizon, s.n_devices)) * 0.6, off)


@pytest.mark.parametrize("model", ["cnn", "mlp"])
def test_tau1_union_identity_equals_general_path(model, monkeypatch):
    """τ = 1: one SGD step on the union batch == H-weighted average of per-device steps (1e-6)."""
    s = _scenario()
    p = _plan(s)
    fast = train(s, p, dataset=TINY, model=model, period=1, lr=0.2, seed=4)
    monkeypatch.setattr(trainer_mod, "_UnionRunner",
                        lambda kernel, module, workers: trainer_mod._KernelRunner(kernel, module, s.n_devices, workers))
    general = train(s, p, dataset=TINY, model=model, period=1, lr=0.2, seed=4)
    for k, v in general.final_state.items():
        assert torch.allclose(fast.final_state[k], v, atol=1e-6, rtol=0), k
    assert np.allclose(fast.device_loss, general.device_loss, atol=1e-6, equal_nan=True)
    assert np.allclose(fast.eval_accuracy, general.eval_accuracy)


@pytest.mark.parametrize("model", ["cnn", "mlp"])
def test_kernel_path_equals_vmap_path_and_reference(model, monkeypatch):
    s = _scenario(seed=2)
    p = _plan(s, seed=3)
    monkeypatch.setattr(trainer_mod, "CHUNK", 4)  # forces multi-call buckets and split large batches
    fast = train(s, p, dataset=TINY, model=model, period=3, lr=0.2, seed=5)
    ref = reference_loop(s, p, dataset=TINY, model=model, period=3, lr=0.2, seed=5)
    monkeypatch.setattr(trainer_mod, "batched_kernel", lambda module: None)
    slow = train(s, p, dataset=TINY, model=model, period=3, lr=0.2, seed=5)
    assert (fast.processed > 4).any()  # some device's batch exceeds CHUNK
    for k, v in ref["state"].items():
        assert torch.allclose(fast.final_state[k], v, atol=1e-5), k
        assert torch.allclose(slow.final_state[k], fast.final_state[k], atol=1e-5), k
    assert np.allclose(fast.device_loss, ref["device_loss"], atol=1e-5, equal_nan=True)
    assert abs(fast.accuracy - slow.accuracy) < 1e-9


@pytest.mark.parametrize("period", [1, 3])
def test_worker_threads_do_not_change_the_result(period, monkeypatch):
    """Kernel calls run on ``threads`` worker threads; results are combined in call order, so the
    run is bitwise the same for 1 and 3 threads (CHUNK = 4 gives many calls per slot)."""
    monkeypatch.setattr(trainer_mod, "CHUNK", 4)
    s = _scenario(seed=6)
    p = _plan(s, seed=7)
    one = train(s, p, dataset=TINY, model="cnn", period=period, lr=0.2, seed=1, threads=1)
    three = train(s, p, dataset=TINY, model="cnn", period=period, lr=0.2, seed=1, threads=3)
    for k, v in one.final_state.items():
        assert torch.equal(three.final_state[k], v), k
    assert np.array_equal(one.device_loss, three.device_loss, equal_nan=True)
    assert one.config["threads"] == 1 and three.config["threads"] == 3


def test_idle_slots_and_all_idle_runs_on_kernel_path():
    D = np.zeros((6, 3), int)
    D[2, 1] = 4
    s = Scenario(collected=D, proc_cost=np.ones((6, 3)), error_weight=np.ones((6, 3)), src=np.zeros(0, int),
                 dst=np.zeros(0, int), link_cost=np.zeros((6, 0)))
    for period in (1, 4):
        r = train(s, no_movement_plan(s), dataset=TINY, model="cnn", period=period, lr=0.1, seed=0)
        ref = reference_loop(s, no_movement_plan(s), dataset=TINY, model="cnn", period=period, lr=0.1, seed=0)
        assert np.isnan(r.device_loss).sum() == 17
        for k, v in ref["state"].items():
            assert torch.allclose(r.final_state[k], v, atol=1e-6), (period, k)
