"""The paper's two classifiers (Sec. V-A): an MLP and a LeNet-style CNN, trained with cross-entropy.

The paper names the models but not their layers; docs/model.md §4 states them:

* **MLP** ``784-200-10``: flatten, ``Linear(784, 200)``, ReLU, ``Linear(200, 10)`` (159,010 parameters).
* **CNN** (LeNet-5 style): ``Conv2d(1, 6, 5)`` → ReLU → ``MaxPool(2)`` → ``Conv2d(6, 16, 5)`` → ReLU →
  ``MaxPool(2)`` → flatten (16·4·4 = 256) → ``Linear(256, 120)`` → ReLU → ``Linear(120, 84)`` → ReLU →
  ``Linear(84, 10)`` (44,426 parameters).

Both output logits; the loss ``l(w, x, y)`` of eq. (2) is the cross-entropy of the softmax.
Neither has dropout or batch-norm, so a step depends only on the parameters and the batch
(required for the device-parallel trainer, which evaluates the model with stacked parameters).

:data:`MODELS` maps each model's name to its zero-argument factory, with the input it takes
(``input_shape``, ``n_classes``) as parameters. Every place that takes a model name — the trainer,
the experiments, the Flower app (a device builds only registered models), the CLI — looks it up
there; registering a model makes it available to all of them (``docs/extending.md``).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from foglearn.registry import Registry

#: Model name → zero-argument factory returning a ``torch.nn.Module`` (``params``: ``input_shape``
#: ``(C, H, W)`` of one point and ``n_classes``, the number of logits).
MODELS: Registry[Callable[[], nn.Module]] = Registry("model")


@MODELS.register("cnn", "LeNet-5-style CNN, 44,426 parameters (the paper's CNN)",
                 input_shape=(1, 28, 28), n_classes=10)
class CNN(nn.Module):
    """LeNet-5-style CNN: conv5x5(6)-pool-conv5x5(16)-pool-fc120-fc84-fc10, ReLU (the paper's CNN)."""

    def __init__(self, n_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 5)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * 4 * 4, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = x.flatten(-3)
        return self.fc3(F.relu(self.fc2(F.relu(self.fc1(x)))))


@MODELS.register("mlp", "784-200-10 perceptron with ReLU, 159,010 parameters (the paper's MLP)",
                 input_shape=(1, 28, 28), n_classes=10)
class MLP(nn.Module):
    """784-200-10 multilayer perceptron with ReLU (the paper's MLP)."""

    def __init__(self, hidden: int = 200, n_classes: int = 10) -> None:
        super().__init__()
        self.fc1 = nn.Linear(28 * 28, hidden)
        self.fc2 = nn.Linear(hidden, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.relu(self.fc1(x.flatten(-3))))


ModelSpec = str | Callable[[], nn.Module]


def make_model(model: ModelSpec = "cnn", seed: int | None = None) -> nn.Module:
    """Build a registered model by name (``"cnn"``, ``"mlp"``, …) or call a zero-argument factory.

    With ``seed`` the initial weights come from ``torch.manual_seed(seed)`` inside a forked RNG,
    so the global torch RNG is left untouched and the same seed gives the same ``w(0)``. An
    unknown name is an :class:`~foglearn.errors.InputError` listing the registered ones.

    >>> sum(p.numel() for p in make_model("mlp").parameters())
    159010
    """
    if isinstance(model, str):
        factory: Callable[[], nn.Module] = MODELS.get_entry(model, "model").obj
    elif callable(model):
        factory = model
    else:
        raise TypeError(f"model = {model!r}: must be a name in MODELS ({', '.join(MODELS)}) "
                        "or a callable returning a torch.nn.Module")
    if seed is None:
        net = factory()
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = factory()
    if not isinstance(net, nn.Module):
        raise TypeError(f"model factory returned {type(net).__name__}: must return a torch.nn.Module")
    return net


def model_name(model: ModelSpec) -> str:
    """The name recorded in results: the registry name, or the factory's ``__name__``."""
    return model if isinstance(model, str) else getattr(model, "__name__", type(model).__name__)
