"""Learning layer: datasets, the paper's models, the device-parallel trainer and the baselines.

``train(scenario, plan, ...)`` executes a data-movement plan at datapoint level with real SGD
(eqs. 3-4) and returns a :class:`TrainResult`; ``make_model("cnn" | "mlp" | factory | module)`` builds
the module a run starts from; ``load_dataset(name_or_path)`` gives real MNIST / Fashion-MNIST as an
:class:`ArrayDataset`, and ``make_dataset(train, test)`` converts torch Datasets or arrays into one.

Training budget
---------------
The paper's protocol is one pass over the horizon: T = 100 slots, one SGD step per device and
slot, η = 0.01, about 31k points collected (n = 10). That is ~100 aggregated steps: far too few
for Table II's accuracies (the paper trains its baselines "until convergence"; the LeNet-style
CNN is still on its initial plateau, ~10% test accuracy, after one pass at η = 0.01).
The budget is therefore an explicit option of :func:`train`, :func:`centralised`,
:func:`federated` and ``foglearn run``: ``passes`` (replay the horizon with fresh points, i.e.
epochs over the 60k training set) and ``lr``. Measured on MNIST, n = 10, T = 100, τ = 10,
synthetic costs, seed 0 (network-aware = ``planning.plan(s)``, linear error, perfect information):

* MLP, η = 0.01, 40 passes: centralised 91.12 %, network-aware 87.83 %
* MLP, η = 0.1, 20 passes: centralised 94.79 %, network-aware 92.10 %
* paper (Table II): MLP 92.58 / 90.34 %, CNN 98.39 / 96.49 % (centralised / network-aware)

Importing this package is cheap: the names below are loaded from their submodules on first use
(PyTorch, numba and the solvers come with them); the fused CNN kernel binds its BLAS routine and
compiles on its first call, never at import (:mod:`foglearn.learning.fused_cnn`).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from foglearn.learning.baselines import centralised, federated, no_movement_plan, reference_loop
    from foglearn.learning.datasets import ArrayDataset, DatasetError, load_dataset, make_dataset
    from foglearn.learning.models import CNN, MLP, ModelError, make_model, resolve_model_spec
    from foglearn.learning.results import TrainResult
    from foglearn.learning.trainer import TrainingError, aggregation_weights, schedule, train

#: Public name → the submodule that defines it.
_EXPORTS = {
    "ArrayDataset": "datasets",
    "CNN": "models",
    "DatasetError": "datasets",
    "MLP": "models",
    "ModelError": "models",
    "TrainResult": "results",
    "TrainingError": "trainer",
    "aggregation_weights": "trainer",
    "centralised": "baselines",
    "federated": "baselines",
    "load_dataset": "datasets",
    "make_dataset": "datasets",
    "make_model": "models",
    "no_movement_plan": "baselines",
    "reference_loop": "baselines",
    "resolve_model_spec": "models",
    "schedule": "trainer",
    "train": "trainer",
}

__all__ = [
    "ArrayDataset",
    "CNN",
    "DatasetError",
    "MLP",
    "ModelError",
    "TrainResult",
    "TrainingError",
    "aggregation_weights",
    "centralised",
    "federated",
    "load_dataset",
    "make_dataset",
    "make_model",
    "no_movement_plan",
    "reference_loop",
    "resolve_model_spec",
    "schedule",
    "train",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
