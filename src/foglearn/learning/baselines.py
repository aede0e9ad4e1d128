"""The paper's two baselines (Sec. V-A, Table II), on the same models and the same points.

* **Centralised** (:func:`centralised`): all data at the server. One model takes one SGD step
  per slot on every point collected in that slot (``Σ_i D_i(t)`` points, nothing discarded),
  drawn from the same seeded stream as :func:`~foglearn.learning.train` uses.
* **Federated averaging** (:func:`federated`): no movement (``G_i(t) = D_i(t)``) and an
  aggregation after every slot (``τ = 1``), weighted by the points each device processed.
  It runs on the device-parallel trainer.

:func:`reference_loop` executes any plan with a plain per-device PyTorch loop (one model and one
optimizer per device). It is slow and simple on purpose: the tests check the vectorised trainer
against it.
"""

from __future__ import annotations

import copy
import time
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from foglearn.learning.datasets import DataSpec, load_dataset
from foglearn.learning.models import ModelSpec, make_model, model_name
from foglearn.learning.results import TrainResult
from foglearn.learning.trainer import (
    ProgressFn,
    _check_args,
    _evaluate,
    _warn_wrap,
    aggregation_weights,
    point_stream,
    schedule,
    train,
)
from foglearn.network.scenario import Scenario
from foglearn.planning.plan import Plan


def no_movement_plan(scenario: Scenario) -> Plan:
    """``s_ii(t) = 1``: every device processes all it collects (setting A; FedAvg's ``G = D``)."""
    keep = np.where(scenario.collected > 0, 1.0, 0.0)
    keep = np.where(scenario.active, keep, 0.0)
    return Plan.from_fractions(scenario, keep, np.zeros((scenario.horizon, scenario.n_edges)),
                               information="perfect", check=False, copy=False)  # zeros never touched


def federated(scenario: Scenario, dataset: DataSpec = "mnist", model: ModelSpec = "cnn",
              lr: float = 0.01, seed: int = 0, **kw: Any) -> TrainResult:
    """Federated averaging: ``G_i(t) = D_i(t)``, ``τ = 1`` (paper Sec. V-A). Keywords go to :func:`train`,
    which also says what ``dataset`` and ``model`` may be."""
    kw.setdefault("name", "federated")
    return train(scenario, no_movement_plan(scenario), dataset=dataset, model=model, period=1, lr=lr,
                 seed=seed, **kw)


def centralised(scenario: Scenario, dataset: DataSpec = "mnist", model: ModelSpec = "cnn",
                lr: float = 0.01, seed: int = 0, *, period: int = 10, passes: int = 1, eval_every: int = 1,
                threads: int | None = None, name: str = "centralised",
                progress: ProgressFn | None = None) -> TrainResult:
    """Centralised SGD: one model, one step per slot on all ``Σ_i D_i(t)`` points of the slot.

    Uses the same point stream (same ``seed``) as :func:`train`, so it sees exactly the points the
    devices collect. ``period`` only sets when the test set is evaluated (for comparable curves).
    ``dataset`` and ``model`` take what :func:`train` takes; the model trains in training mode
    (batch-norm on batch statistics, updating its running statistics) and is evaluated in eval
    mode. ``final_state`` holds its parameters and buffers.
    """
    _check_args(period, lr, passes, eval_every)
    data = load_dataset(dataset)
    T = scenario.horizon
    old = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(int(threads))
    try:
        t0 = time.perf_counter()
        per_pass = int(scenario.collected.sum())
        stream, _ = point_stream(per_pass * passes, data.n_train, seed)
        wrapped = _warn_wrap(per_pass, data.n_train)
        bounds = np.concatenate([[0], np.cumsum(scenario.collected.sum(1))])
        net = make_model(model, seed=seed, n_classes=data.n_classes).train()
        opt = torch.optim.SGD(net.parameters(), lr=lr)
        X, Y = torch.from_numpy(data.x_train), torch.from_numpy(data.y_train)
        Xt, Yt = torch.from_numpy(data.x_test), torch.from_numpy(data.y_test)
        total = T * passes
        loss_curve = np.full((total, 1), np.nan)
        ev: list[tuple[int, float, float]] = []
        for s in range(total):
            p, t = divmod(s, T)
            idx = torch.from_numpy(stream[p * per_pass + bounds[t]:p * per_pass + bounds[t + 1]])
            if len(idx):
                opt.zero_grad()
                loss = F.cross_entropy(net(X[idx]), Y[idx])
                loss.backward()
                opt.step()
                loss_curve[s, 0] = float(loss.detach())
            if s + 1 == total or ((s + 1) % period == 0 and eval_every and ((s + 1) // period) % eval_every == 0):
                acc, tl = _evaluate(net, dict(net.named_parameters()), Xt, Yt)
                ev.append((s + 1, acc, tl))
            if progress is not None:
                progress(s + 1, total)
        seconds = time.perf_counter() - t0
    finally:
        torch.set_num_threads(old)
    D = scenario.collected.sum(1, keepdims=True)
    costs = {"processing": float("nan"), "transfer": 0.0, "discard": 0.0, "total": float("nan"),
             "unit": float("nan"), "collected": per_pass, "processed": float(per_pass)}
    config = {"dataset": data.name, "model": model_name(model), "period": int(period), "lr": float(lr),
              "seed": int(seed), "passes": int(passes), "eval_every": int(eval_every),
              "threads": int(threads or old), "n_devices": 1, "horizon": T, "plan": {"solver": "centralised"}}
    return TrainResult(name=name, accuracy=ev[-1][1], test_loss=ev[-1][2], eval_slot=np.array([e[0] for e in ev]),
                       eval_accuracy=np.array([e[1] for e in ev]), eval_loss=np.array([e[2] for e in ev]),
                       device_loss=loss_curve, processed=D.astype(np.int64), costs=costs, config=config,
                       seconds=seconds, wrapped=wrapped,
                       final_state=_state(net))


def _state(net: nn.Module) -> dict[str, torch.Tensor]:
    """Copies of ``net``'s parameters and buffers (what :attr:`TrainResult.final_state` holds)."""
    return {k: v.detach().clone() for k, v in (*net.named_parameters(), *net.named_buffers())}


def reference_loop(scenario: Scenario, plan: Plan, dataset: DataSpec = "mnist",
                   model: ModelSpec = "cnn", period: int = 10, lr: float = 0.01, seed: int = 0) -> dict[str, Any]:
    """Execute ``plan`` with a plain per-device loop (one module + ``torch.optim.SGD`` per device).

    Same point routing (:func:`~foglearn.learning.trainer.schedule`), same stream, same ``w(0)``,
    same eq. (3)/(4) semantics as :func:`train`; returns ``{"state": final global parameters and
    buffers, "device_loss": [T, n]}``. Devices train in training mode; eq. (4) averages buffers
    (batch-norm running statistics) with the parameters' weights, integer buffers
    (``num_batches_tracked``) rounded to the nearest integer. For tests; no evaluation, one pass.
    """
    data = load_dataset(dataset)
    T, n = scenario.horizon, scenario.n_devices
    sched = schedule(scenario, plan)
    stream, _ = point_stream(int(scenario.collected.sum()), data.n_train, seed)
    X, Y = torch.from_numpy(data.x_train), torch.from_numpy(data.y_train)
    glob = make_model(model, seed=seed, n_classes=data.n_classes).train()
    nets = [copy.deepcopy(glob) for _ in range(n)]
    opts = [torch.optim.SGD(m.parameters(), lr=lr) for m in nets]
    H = np.zeros(n)
    device_loss = np.full((T, n), np.nan)
    # the processed points grouped by (slot, device) once, in slot order
    cell = sched.slot.astype(np.int64) * n + sched.device
    order = np.argsort(cell, kind="stable")
    cells, starts = np.unique(cell[order], return_index=True)
    ends = np.append(starts[1:], order.size)
    k = 0
    for t in range(T):
        while k < cells.size and cells[k] // n == t:
            i = int(cells[k] % n)
            idx = torch.from_numpy(stream[sched.pos[order[starts[k]:ends[k]]]])
            k += 1
            opts[i].zero_grad()
            loss = F.cross_entropy(nets[i](X[idx]), Y[idx])
            loss.backward()
            opts[i].step()
            device_loss[t, i] = float(loss.detach())
            H[i] += len(idx)
        if (t + 1) % period == 0 or t + 1 == T:
            w = aggregation_weights(H)
            with torch.no_grad():
                if w is not None:
                    states = [dict((*m.named_parameters(), *m.named_buffers())) for m in nets]
                    for name, gp in (*glob.named_parameters(), *glob.named_buffers()):
                        avg = torch.zeros_like(gp, dtype=gp.dtype if gp.is_floating_point() else torch.float64)
                        for i in range(n):
                            if w[i] > 0:
                                avg += float(w[i]) * states[i][name].to(avg.dtype)
                        gp.copy_(avg if gp.is_floating_point() else avg.round())
                for m in nets:
                    m.load_state_dict(glob.state_dict())
            H[:] = 0
    return {"state": _state(glob), "device_loss": device_loss}
