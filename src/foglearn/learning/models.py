"""The paper's two classifiers (Sec. V-A): an MLP and a LeNet-style CNN, trained with cross-entropy.

The paper names the models but not their layers; docs/model.md §4 states them:

* **MLP** ``784-200-10``: flatten, ``Linear(784, 200)``, ReLU, ``Linear(200, 10)`` (159,010 parameters).
* **CNN** (LeNet-5 style): ``Conv2d(1, 6, 5)`` → ReLU → ``MaxPool(2)`` → ``Conv2d(6, 16, 5)`` → ReLU →
  ``MaxPool(2)`` → flatten (16·4·4 = 256) → ``Linear(256, 120)`` → ReLU → ``Linear(120, 84)`` → ReLU →
  ``Linear(84, 10)`` (44,426 parameters).

Both output logits; the loss ``l(w, x, y)`` of eq. (2) is the cross-entropy of the softmax.
Neither has dropout or batch-norm, so a step depends only on the parameters and the batch.

:data:`MODELS` maps each model's name to its zero-argument factory, with the input it takes
(``input_shape``, ``n_classes``) as parameters. Every place that takes a model name — the trainer,
the experiments, the Flower app (a device builds only registered models), the CLI — looks it up
there; registering a model makes it available to all of them (``docs/extending.md``).

A model argument (:data:`ModelSpec`) is a registered name, a zero-argument factory or a
``torch.nn.Module`` instance; :func:`make_model` is the one place that turns any of them into the
module a run starts from (``w(0)``), and every entry point calls it. :func:`resolve_model_spec`
turns an operator's ``package.module:factory`` string into a factory, only when importing is allowed.
"""

from __future__ import annotations

import copy
import importlib
import inspect
import re
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from foglearn.errors import InputError
from foglearn.learning.datasets import IMAGE_SHAPE
from foglearn.registry import Registry

#: Model name → zero-argument factory returning a ``torch.nn.Module`` (``params``: ``input_shape``
#: ``(C, H, W)`` of one point and ``n_classes``, the number of logits).
MODELS: Registry[Callable[[], nn.Module]] = Registry("model")

#: Environment variable an operator sets to ``1`` to let ``foglearn run --model package.module:factory``
#: import that module (:func:`resolve_model_spec`).
ALLOW_IMPORT_ENV = "FOGLEARN_ALLOW_MODEL_IMPORT"

#: ``package.module:factory``: dotted ASCII identifiers, one colon, one identifier; nothing else
#: (no path separators, spaces, file suffixes or relative dots).
_IMPORT_SPEC = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*", re.ASCII)


class ModelError(InputError):
    """A model argument that cannot be built or does not fit the data; the message says why."""


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


#: A registered name, a zero-argument factory (a class with default arguments will do) or an instance.
ModelSpec = str | Callable[[], nn.Module] | nn.Module


def make_model(model: ModelSpec = "cnn", seed: int | None = None, *, n_classes: int | None = None) -> nn.Module:
    """The module a run starts from (``w(0)``), from a name, a zero-argument factory or an instance.

    * a name in :data:`MODELS` (``"cnn"``, ``"mlp"``, …) or a factory: built with
      ``torch.manual_seed(seed)`` inside a forked RNG when ``seed`` is given, so the global torch
      RNG is left untouched and the same seed gives the same ``w(0)``;
    * a ``torch.nn.Module`` instance: a deep copy, so its current weights are ``w(0)`` (``seed``
      then only seeds the point stream of a run) and the caller's instance is never changed.
      ``torch.manual_seed(s); net = Net()`` followed by ``model=net, seed=s`` trains exactly as
      ``model=Net, seed=s`` does.

    The module is then checked on a batch ``[2, 1, 28, 28]`` of float32 zeros, the layout the
    trainer feeds (on the module's device, in eval mode, without gradients, so nothing in it changes; lazy layers are
    materialised): it must return logits ``[2, C]``, with ``C ≥ n_classes`` when ``n_classes``
    is given. An unknown name, a factory that needs arguments or returns something else, and a
    module that fails the check are a :class:`ModelError` (an :class:`~foglearn.errors.InputError`).

    >>> sum(p.numel() for p in make_model("mlp").parameters())
    159010
    """
    if isinstance(model, nn.Module):
        try:
            net = copy.deepcopy(model)
        except Exception as exc:  # a module holding something deepcopy refuses (a lock, a file)
            raise ModelError(f"model = {type(model).__name__} instance: cannot be deep-copied "
                             f"({type(exc).__name__}: {exc}); pass a zero-argument factory instead") from exc
        with torch.random.fork_rng(devices=[]):
            if seed is not None:
                torch.manual_seed(seed)
            _check_module(net, model_name(model), n_classes)
        return net
    if isinstance(model, str):
        factory: Callable[[], nn.Module] = MODELS.get_entry(model, "model", ModelError).obj
    elif callable(model):
        factory = model
    else:
        raise ModelError(f"model = {model!r}: must be a name in MODELS ({', '.join(MODELS)}), "
                         "a zero-argument callable returning a torch.nn.Module, or a torch.nn.Module")
    with torch.random.fork_rng(devices=[], enabled=seed is not None):
        if seed is not None:
            torch.manual_seed(seed)
        net = _build(factory, model_name(model))
        _check_module(net, model_name(model), n_classes)
    return net


def _build(factory: Callable[[], nn.Module], label: str) -> nn.Module:
    """Call a zero-argument factory and check that it returned a ``torch.nn.Module``."""
    try:
        inspect.signature(factory).bind()
    except TypeError as exc:
        raise ModelError(f"model = {label}: the factory needs arguments ({exc}); pass one that takes none, "
                         "e.g. functools.partial(factory, ...), or a torch.nn.Module instance") from None
    except ValueError:  # no signature to inspect (some builtins): calling it will tell
        pass
    net = factory()
    if not isinstance(net, nn.Module):
        raise ModelError(f"model = {label}: the factory returned {type(net).__name__}; "
                         "it must return a torch.nn.Module")
    return net


def _check_module(net: nn.Module, label: str, n_classes: int | None) -> None:
    """Run ``net`` once on float32 zeros ``[2, *IMAGE_SHAPE]`` (eval mode, no grad; on the device of
    its parameters) and check its logits."""
    shape = [2, *IMAGE_SHAPE]
    first = next(net.parameters(), None)
    was_training = net.training
    net.eval()
    try:
        with torch.no_grad():
            out = net(torch.zeros(shape, device=None if first is None else first.device))
    except Exception as exc:  # the user's forward: say which input it was given
        raise ModelError(f"model = {label}: forward on a float32 batch {shape} failed "
                         f"({type(exc).__name__}: {exc}); the trainer feeds images as [B, 1, 28, 28] "
                         "float32 in [0, 1] and expects logits [B, n_classes]") from exc
    finally:
        net.train(was_training)
    if not isinstance(out, torch.Tensor) or out.dim() != 2 or out.shape[0] != 2:
        got = list(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ModelError(f"model = {label}: returned {got} for a batch {shape}; "
                         "it must return logits [B, n_classes]")
    if n_classes is not None and out.shape[1] < n_classes:
        raise ModelError(f"model = {label}: returns {out.shape[1]} logits but the labels need "
                         f"{n_classes} (they lie in 0..{n_classes - 1})")


def model_name(model: ModelSpec) -> str:
    """The name recorded in results: the registry name, the factory's ``__name__`` or the instance's class."""
    if isinstance(model, str):
        return model
    if isinstance(model, nn.Module):
        return type(model).__name__
    return str(getattr(model, "__name__", type(model).__name__))


def resolve_model_spec(spec: str, *, allow_import: bool) -> Callable[[], nn.Module]:
    """The factory an operator names: a name in :data:`MODELS`, or ``package.module:factory``.

    ``package.module:factory`` must be dotted ASCII identifiers, one colon and one identifier
    (no path separators, spaces or relative dots); the module is imported with
    :func:`importlib.import_module` only when ``allow_import`` is true (the CLI sets it from
    ``FOGLEARN_ALLOW_MODEL_IMPORT=1``, :data:`ALLOW_IMPORT_ENV`): importing runs that module's
    code. ``factory`` may be a zero-argument callable or a ``torch.nn.Module`` instance (each
    call then deep-copies it); it is called once here to check that it returns a
    ``torch.nn.Module``. The import and that call leave the global RNG as it was. The returned
    factory's ``__name__`` is ``spec``, so results record it. Anything else is a :class:`ModelError`.
    """
    if not isinstance(spec, str):
        raise ModelError(f"model = {spec!r}: must be a string")
    if spec in MODELS:
        return MODELS.get_entry(spec, "model", ModelError).obj
    if ":" not in spec:
        raise ModelError(f"model = {spec!r}: unknown model; known: {', '.join(MODELS)}, "
                         "or package.module:factory")
    if not _IMPORT_SPEC.fullmatch(spec):
        raise ModelError(f"model = {spec!r}: not package.module:factory (dotted Python identifiers, one colon, "
                         "a function or class name; no paths or spaces)")
    if not allow_import:
        raise ModelError(f"model = {spec!r}: importing a model factory runs that module's code, which is off by "
                         f"default; set {ALLOW_IMPORT_ENV}=1 to allow it")
    module_name, attr = spec.split(":")
    try:
        with torch.random.fork_rng(devices=[]):  # module-level code may draw random weights
            module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise ModelError(f"model = {spec!r}: cannot import {module_name} ({exc}); is it installed "
                         "or on PYTHONPATH?") from exc
    except Exception as exc:  # the module's own code failed while importing
        raise ModelError(f"model = {spec!r}: importing {module_name} raised {type(exc).__name__}: {exc}") from exc
    target = getattr(module, attr, None)
    if target is None:
        raise ModelError(f"model = {spec!r}: module {module_name} has no attribute {attr!r}")
    if isinstance(target, nn.Module):
        instance = target

        def factory() -> nn.Module:
            return copy.deepcopy(instance)
    elif callable(target):
        call = target

        def factory() -> nn.Module:
            return _build(call, spec)
    else:
        raise ModelError(f"model = {spec!r}: {attr} is a {type(target).__name__}, not a callable "
                         "returning a torch.nn.Module")
    factory.__name__ = factory.__qualname__ = spec
    with torch.random.fork_rng(devices=[]):
        factory()
    return factory
