"""What the ServerApp and ClientApps compute: data streams, the scenario, models, SGD (eq. 3).

Everything is derived deterministically from the run config, so every process (a Ray worker
in simulation, a Raspberry Pi in deployment) rebuilds the same partition and scenario without
shipping them. torch runs with one thread per process (``torch.set_num_threads(1)``).
The dataset and the model are looked up by name in foglearn's own loaders and registry
(:func:`foglearn.learning.load_dataset`, :data:`foglearn.learning.models.MODELS`): nothing in
the run config makes a device import code.
"""

from __future__ import annotations

import time
from functools import lru_cache
from typing import Any

import numpy as np

from foglearn.flower.config import FlowerRunConfig
from foglearn.network.scenario import Scenario


@lru_cache(maxsize=4)
def _dataset(name: str) -> Any:
    from foglearn.learning.datasets import load_dataset

    return load_dataset(name)


def dataset(cfg: FlowerRunConfig) -> Any:
    """The run's dataset (``x_train [N,1,28,28] float32``, ``y_train int64``, test split)."""
    return _dataset(cfg.dataset)


def max_points(cfg: FlowerRunConfig, n_train: int) -> int:
    """``⌊|D_V|/(nT)⌋`` (docs/model.md §4) unless the config sets it."""
    return cfg.max_points or max(1, n_train // (cfg.num_devices * cfg.horizon))


@lru_cache(maxsize=4)
def _scenario(cfg: FlowerRunConfig, n_train: int) -> Scenario:
    if cfg.scenario_file:
        sc = Scenario.load(cfg.scenario_file)
        if sc.n_devices != cfg.num_devices or sc.horizon < cfg.horizon:
            raise ValueError(f"scenario_file {cfg.scenario_file}: has n = {sc.n_devices}, T = {sc.horizon}; "
                             f"the run needs n = {cfg.num_devices}, T ≥ {cfg.horizon}")
        return sc.window(0, cfg.horizon) if sc.horizon > cfg.horizon else sc
    from foglearn.network import synthetic

    return synthetic(n_devices=cfg.num_devices, horizon=cfg.horizon, topology=cfg.topology, rho=cfg.rho,
                     capacities=cfg.capacities, seed=cfg.seed, max_points=max_points(cfg, n_train),
                     profile=cfg.profile)


def scenario(cfg: FlowerRunConfig) -> Scenario:
    """The true scenario the devices live in (each device reads only its own row)."""
    return _scenario(cfg, int(len(dataset(cfg).y_train)))


def partition(cfg: FlowerRunConfig, device: int, n_train: int) -> np.ndarray:
    """Device ``i``'s data stream: its share of a seeded permutation of the training set.

    Points are drawn without replacement; a device collects the next ``D_i(t)`` of its share
    in slot ``t`` (docs/model.md §4), so a stream never runs out when ``Σ_t D_i(t) ≤ N/n``.
    """
    perm = np.random.default_rng([cfg.seed, 7919]).permutation(n_train)
    return np.array_split(perm, cfg.num_devices)[device]


def stream_slice(cfg: FlowerRunConfig, sc: Scenario, device: int, slot: int, n_train: int) -> np.ndarray:
    """Indices of the ``D_i(t)`` points device ``i`` collects in slot ``t``."""
    share = partition(cfg, device, n_train)
    start = int(sc.collected[:slot, device].sum())
    stop = start + int(sc.collected[slot, device])
    if stop > share.size:
        raise ValueError(f"device {device}: its stream of {share.size} points is exhausted at slot {slot} "
                         f"(needs {stop}); lower max_points or use a larger dataset")
    return share[start:stop]


def preload() -> None:
    """Import what a slot needs (PyTorch, the model registry) now, before the first message
    (a long-running ClientApp process: :mod:`foglearn.flower.worker`)."""
    import torch  # noqa: F401

    from foglearn.learning import models  # noqa: F401


def new_model(cfg: FlowerRunConfig) -> Any:
    """The initial global model: the registered ``cfg.model`` (seeded, identical on every process)."""
    import torch

    from foglearn.learning.models import make_model

    torch.set_num_threads(1)
    torch.manual_seed(cfg.seed)
    return make_model(cfg.model)


def get_arrays(model: Any) -> dict[str, np.ndarray]:
    return {k: v.detach().cpu().numpy().copy() for k, v in model.state_dict().items()}


def set_arrays(model: Any, arrays: dict[str, np.ndarray]) -> None:
    import torch

    model.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in arrays.items()}, strict=True)


def sgd_step(model: Any, x: np.ndarray, y: np.ndarray, lr: float) -> float:
    """One step of eq. (3) on the ``G_i(t)`` processed points: ``w ← w − η ∇ℓ(w; G_i(t))``.

    ``ℓ`` is the mean cross-entropy over the points. Returns the wall seconds it took (the
    device's measured processing time).
    """
    import torch

    t0 = time.perf_counter()
    model.train()
    xb = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    yb = torch.from_numpy(np.ascontiguousarray(y, dtype=np.int64))
    model.zero_grad(set_to_none=True)
    loss = torch.nn.functional.cross_entropy(model(xb), yb)
    loss.backward()
    with torch.no_grad():
        for p in model.parameters():
            if p.grad is not None:
                p.add_(p.grad, alpha=-lr)
    return time.perf_counter() - t0


def evaluate(model: Any, x: np.ndarray, y: np.ndarray, batch: int = 2000) -> tuple[float, float]:
    """Test accuracy and mean loss of ``model`` on ``(x, y)``."""
    import torch

    model.eval()
    correct, loss, n = 0, 0.0, len(y)
    with torch.no_grad():
        for a in range(0, n, batch):
            xb = torch.from_numpy(np.ascontiguousarray(x[a:a + batch], dtype=np.float32))
            yb = torch.from_numpy(np.ascontiguousarray(y[a:a + batch], dtype=np.int64))
            out = model(xb)
            loss += float(torch.nn.functional.cross_entropy(out, yb, reduction="sum"))
            correct += int((out.argmax(1) == yb).sum())
    return (correct / n if n else 0.0), (loss / n if n else 0.0)
