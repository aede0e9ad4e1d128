"""Shared helpers for the data-set tests: a private cache per test and small MNIST-shaped arrays."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    """Every test of a module that imports this gets its own data cache and working folder."""
    monkeypatch.setenv("FOGLEARN_DATA", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)


def _arrays(n_train=12, n_test=5, seed=0):
    """Random uint8 images and labels in 0..9 with MNIST's shapes."""
    rng = np.random.default_rng(seed)
    return {"x_train": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
            "y_train": rng.integers(0, 10, n_train).astype(np.uint8),
            "x_test": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
            "y_test": rng.integers(0, 10, n_test).astype(np.uint8)}
