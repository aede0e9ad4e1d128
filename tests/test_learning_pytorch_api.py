"""Models and data the PyTorch way: a model given as a name, a factory or an ``nn.Module`` instance
(one resolution, :func:`~foglearn.learning.models.make_model`, for every entry point); data given as
torch Datasets or arrays (:func:`~foglearn.learning.datasets.make_dataset`, one rule for every
source); ``package.module:factory`` strings only when importing is allowed."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import Dataset, IterableDataset, TensorDataset

from foglearn.errors import InputError
from foglearn.learning import (
    MLP,
    DatasetError,
    ModelError,
    centralised,
    federated,
    make_dataset,
    make_model,
    reference_loop,
    resolve_model_spec,
    train,
)
from foglearn.learning.datasets import tiny_dataset
from foglearn.network import synthetic
from foglearn.planning import plan


class Net(nn.Module):
    """A user's own model (not registered): it takes the documented layout [B, 1, 28, 28]."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(28 * 28, 16)
        self.fc2 = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.fc1(x.flatten(1))))


@pytest.fixture(scope="module")
def small():
    s = synthetic(n_devices=3, horizon=6, seed=0, max_points=20)
    return s, plan(s)


@pytest.fixture(scope="module")
def tiny():
    return tiny_dataset(200, 50)


def _same_state(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _snapshot(net: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


# --------------------------------------------------------------------------------------- models

@pytest.mark.parametrize(("factory", "name"), [(Net, "Net"), (MLP, "mlp")])
def test_an_instance_trains_exactly_as_its_factory_with_the_same_seed(small, tiny, factory, name):
    s, p = small
    torch.manual_seed(3)
    net = factory()
    before = _snapshot(net)
    by_instance = train(s, p, dataset=tiny, model=net, period=2, lr=0.5, seed=3, threads=1)
    by_factory = train(s, p, dataset=tiny, model=name if name == "mlp" else factory, period=2, lr=0.5, seed=3,
                       threads=1)
    assert _same_state(by_instance.final_state, by_factory.final_state)
    assert by_instance.accuracy == by_factory.accuracy
    np.testing.assert_array_equal(by_instance.device_loss, by_factory.device_loss)
    # the path is the same too: the paper's MLP given as an instance still gets its batched kernel
    assert by_instance.config["kernel"] == by_factory.config["kernel"] == ("mlp" if name == "mlp" else "vmap")
    assert by_instance.config["model"] == type(net).__name__
    # the caller's instance is untouched: weights, mode, gradients
    assert _same_state(_snapshot(net), before)
    assert net.training and all(q.grad is None for q in net.parameters())
    assert not _same_state(by_instance.final_state, before)  # it did train


def test_every_entry_point_takes_an_instance(small, tiny):
    s, p = small
    torch.manual_seed(1)
    net = Net()
    before = _snapshot(net)
    for run in (lambda m: centralised(s, dataset=tiny, model=m, lr=0.5, seed=1, threads=1).final_state,
                lambda m: federated(s, dataset=tiny, model=m, lr=0.5, seed=1, threads=1).final_state,
                lambda m: reference_loop(s, p, dataset=tiny, model=m, period=2, lr=0.5, seed=1)["state"]):
        assert _same_state(run(net), run(Net))
    assert _same_state(_snapshot(net), before)


def test_reference_loop_agrees_with_train_on_an_instance(small, tiny):
    s, p = small
    torch.manual_seed(0)
    net = Net()
    fast = train(s, p, dataset=tiny, model=net, period=2, lr=0.5, seed=0, threads=1).final_state
    ref = reference_loop(s, p, dataset=tiny, model=net, period=2, lr=0.5, seed=0)["state"]
    for k in ref:
        torch.testing.assert_close(fast[k], ref[k], rtol=1e-4, atol=1e-5)


class BNNet(nn.Module):
    """A model with buffers: batch-norm's running statistics and its step counter."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, stride=2)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4 * 13 * 13, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.bn(self.conv(x))).flatten(1))


def test_an_instance_with_buffers_is_copied_so_its_running_statistics_stay_put(small, tiny):
    s, p = small
    torch.manual_seed(0)
    net = BNNet()
    before = _snapshot(net)
    run = centralised(s, dataset=tiny, model=net, lr=0.2, seed=0, threads=1)
    ref = reference_loop(s, p, dataset=tiny, model=net, period=2, lr=0.2, seed=0)["state"]
    assert _same_state(_snapshot(net), before)  # running_mean, running_var, num_batches_tracked included
    for state in (run.final_state, ref):
        assert {"bn.running_mean", "bn.running_var", "bn.num_batches_tracked"} <= set(state)
        assert not torch.equal(state["bn.running_mean"], before["bn.running_mean"])
    # one step per slot with data: the counter counts them; eq. (4) keeps it an integer
    assert int(run.final_state["bn.num_batches_tracked"]) == int((s.collected.sum(1) > 0).sum())
    assert ref["bn.num_batches_tracked"].dtype == torch.int64 and int(ref["bn.num_batches_tracked"]) >= 1


def test_train_takes_a_batch_norm_instance_and_agrees_with_the_reference_loop(small, tiny):
    s, p = small
    torch.manual_seed(0)
    net = BNNet()
    before = _snapshot(net)
    run = train(s, p, dataset=tiny, model=net, period=2, lr=0.2, seed=0, threads=1)
    ref = reference_loop(s, p, dataset=tiny, model=net, period=2, lr=0.2, seed=0)["state"]
    assert _same_state(_snapshot(net), before)
    assert set(run.final_state) == set(ref) and run.accuracy > 0.5  # chance is 0.1
    for k in ref:  # buffers too: per device, averaged with eq. (4)'s weights, the counter an integer
        torch.testing.assert_close(run.final_state[k], ref[k], rtol=1e-4, atol=1e-5)
    assert run.final_state["bn.num_batches_tracked"].dtype == torch.int64


def test_make_model_copies_an_instance_and_checks_its_layout():
    net = Net()
    built = make_model(net, seed=0)
    assert built is not net and _same_state(_snapshot(built), _snapshot(net))
    # a lazy layer is materialised by the layout check, seeded like any factory
    lazy = [make_model(lambda: nn.Sequential(nn.Flatten(), nn.LazyLinear(10)), seed=5) for _ in range(2)]
    assert lazy[0][1].weight.shape == (10, 784) and torch.equal(lazy[0][1].weight, lazy[1][1].weight)


@pytest.mark.parametrize(("model", "kwargs", "message"), [
    (nn.Linear(3, 4), {}, r"model = Linear: forward on a float32 batch \[2, 1, 28, 28\] failed .*"
                          r"the trainer feeds images as \[B, 1, 28, 28\]"),
    (lambda: nn.Identity(), {}, r"returned \[2, 1, 28, 28\] for a batch \[2, 1, 28, 28\]; it must return logits"),
    (lambda: nn.Sequential(nn.Flatten(), nn.Linear(784, 5)), {"n_classes": 10},
     r"returns 5 logits but the labels need 10 \(they lie in 0..9\)"),
    (lambda width: Net(), {}, r"the factory needs arguments.*functools.partial"),
    (lambda: "cnn", {}, r"the factory returned str; it must return a torch.nn.Module"),
    (42, {}, r"model = 42: must be a name in MODELS \(cnn, mlp"),
    ("resnet", {}, r"model = 'resnet': unknown model; known: cnn, mlp"),
])
def test_a_model_that_cannot_be_used_is_a_clear_input_error(model, kwargs, message):
    with pytest.raises(ModelError, match=message) as info:
        make_model(model, **kwargs)
    assert isinstance(info.value, InputError)


def test_a_model_with_too_few_logits_for_the_labels_is_refused_before_training(small, tiny):
    s, p = small
    with pytest.raises(ModelError, match="returns 5 logits but the labels need 10"):
        train(s, p, dataset=tiny, model=nn.Sequential(nn.Flatten(), nn.Linear(784, 5)), period=2)


# ----------------------------------------------------------------------------------------- data

def test_torch_datasets_and_arrays_train_exactly_as_the_array_dataset(small, tiny):
    s, p = small
    ref = train(s, p, dataset=tiny, model="mlp", period=2, lr=0.5, seed=0, threads=1)
    as_torch = (TensorDataset(torch.from_numpy(tiny.x_train), torch.from_numpy(tiny.y_train)),
                TensorDataset(torch.from_numpy(tiny.x_test), torch.from_numpy(tiny.y_test)))
    as_numpy = ((tiny.x_train.reshape(-1, 784), tiny.y_train), (tiny.x_test[:, 0], tiny.y_test.astype(np.uint8)))
    for data in (as_torch, as_numpy):
        run = train(s, p, dataset=data, model="mlp", period=2, lr=0.5, seed=0, threads=1)
        assert _same_state(run.final_state, ref.final_state) and run.accuracy == ref.accuracy
        assert run.config["dataset"] == "custom"


class ItemDataset(Dataset):
    """A map-style Dataset like torchvision's: items ``(image, int label)``."""

    def __init__(self, x: np.ndarray, y: np.ndarray, as_uint8: bool = False) -> None:
        self.x, self.y, self.as_uint8 = x, y, as_uint8

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int):
        if self.as_uint8:  # a PIL-like item: uint8 [28, 28]
            return np.round(self.x[i, 0] * 255).astype(np.uint8), int(self.y[i])
        return torch.from_numpy(self.x[i]), torch.tensor(self.y[i])


def test_map_style_datasets_are_converted_once_in_index_order(tiny):
    ds = make_dataset(ItemDataset(tiny.x_train, tiny.y_train), ItemDataset(tiny.x_test, tiny.y_test))
    np.testing.assert_array_equal(ds.x_train, tiny.x_train)
    np.testing.assert_array_equal(ds.y_test, tiny.y_test)
    assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int64
    u8 = make_dataset(ItemDataset(tiny.x_train[:5], tiny.y_train[:5], as_uint8=True), (tiny.x_test, tiny.y_test))
    np.testing.assert_allclose(u8.x_train, tiny.x_train[:5], atol=0.5 / 255 + 1e-7)


class Stream(IterableDataset):
    def __iter__(self):
        yield torch.zeros(784), 0


class Bad(Dataset):
    def __init__(self, item) -> None:
        self.item = item

    def __len__(self) -> int:
        return 2

    def __getitem__(self, i: int):
        return self.item(i)


_X, _Y = np.zeros((4, 784), np.float32), np.arange(4)


@pytest.mark.parametrize(("dataset", "message"), [
    (((np.zeros((4, 3, 28, 28), np.float32), _Y), (_X, _Y)),
     r"^dataset: x_train: images must have shape \[N, 28, 28\], \[N, 1, 28, 28\] or \[N, 784\], got \[4, 3, 28, 28\]$"),
    (((_X, _Y), (_X.astype(np.int64), _Y)), r"^dataset: x_test: images must be uint8 \(0..255\) or floats in \[0, 1\], "
                                            r"got dtype int64$"),
    (((_X + 2, _Y), (_X, _Y)), r"^dataset: x_train\[0, 0, 0, 0\] = 2.0: pixel values must lie in \[0, 1\]"),
    (((_X, _Y.astype(float)), (_X, _Y)), r"^dataset: y_train: labels must be integers, got dtype float64$"),
    (((_X, _Y), (_X, _Y + 7)), r"^dataset: y_test\[3\] = 10: labels must lie in 0..9"),
    (((_X, _Y[:3]), (_X, _Y)), r"^dataset: y_train: must have shape \[4\] \(one label per image\), got \[3\]$"),
    (((_X, _Y), (_X, torch.ones(4, 2, dtype=torch.int64))), r"^dataset: y_test: labels must have shape \[N\]"),
    ((_X, _Y), r"^dataset = \(x, y\): that is one split; give \(train, test\)"),
    ((TensorDataset(torch.zeros(2, 784), torch.zeros(2, dtype=torch.int64)),) * 3, r"^dataset: a tuple of 3 items"),
    (TensorDataset(torch.zeros(2, 784), torch.zeros(2)), r"^dataset = TensorDataset: a torch Dataset is one split"),
    ((Stream(), (_X, _Y)), r"^dataset train: Stream is an IterableDataset; give a map-style Dataset"),
    ((Bad(lambda i: torch.zeros(784)), (_X, _Y)), r"^dataset train\[0\]: items must be \(x, y\) pairs, got Tensor$"),
    (((_X, _Y), Bad(lambda i: (torch.zeros(784 - i), 0))),
     r"^x_test\[1\]: shape \[783\] dtype float32, but item 0 has shape \[784\]"),
    (((_X, _Y), Bad(lambda i: (torch.zeros(784), [i, i]))),
     r"^y_test\[0\]: a label must be one integer, got shape \[2\]"),
    (((_X, _Y), ("x", _Y)), r"^x_test: must be numbers, got dtype <U1"),
    (3, r"^dataset = int: must be a name \(mnist, fashion-mnist, tiny\), a path, an ArrayDataset or a \(train, test\)"),
])
def test_data_that_breaks_the_rule_is_a_clear_input_error_naming_the_field(small, dataset, message):
    s, p = small
    with pytest.raises(DatasetError, match=message) as info:
        train(s, p, dataset=dataset, model="mlp", period=2)
    assert isinstance(info.value, InputError)


# ------------------------------------------------------------------------- package.module:factory

def _toy_module(tmp_path, monkeypatch, name: str, body: str) -> None:
    """A module ``name`` in a temporary folder on sys.path for this test only."""
    (tmp_path / f"{name}.py").write_text(body)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, name, raising=False)


TOY = """
import torch
from torch import nn

IMPORTED = True


def build():
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 10))


def not_a_model():
    return 3


shared = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
"""


def test_an_import_spec_is_refused_unless_allowed_and_nothing_is_imported(tmp_path, monkeypatch):
    _toy_module(tmp_path, monkeypatch, "fog_toy_refused", TOY)
    with pytest.raises(ModelError, match=r"^model = 'fog_toy_refused:build': importing a model factory runs that "
                                         r"module's code, which is off by default; set "
                                         r"FOGLEARN_ALLOW_MODEL_IMPORT=1 to allow it$"):
        resolve_model_spec("fog_toy_refused:build", allow_import=False)
    assert "fog_toy_refused" not in sys.modules


@pytest.mark.parametrize("spec", ["../evil:build", "pkg/mod:build", "C:\\mod:build", "mod.pyc/x:build", ".rel:build",
                                  "pkg..mod:build", "mod:build()", "mod:a:b", "mod :build", "mod:build\n",
                                  "mod:", ":build", "mód:build", "mod:pkg.build"])
def test_a_malformed_import_spec_is_refused_even_when_allowed(spec):
    with pytest.raises(ModelError, match=r"not package.module:factory \(dotted Python identifiers, one colon"):
        resolve_model_spec(spec, allow_import=True)


def test_an_allowed_import_spec_gives_a_checked_factory(tmp_path, monkeypatch, small, tiny):
    _toy_module(tmp_path, monkeypatch, "fog_toy_allowed", TOY)
    factory = resolve_model_spec("fog_toy_allowed:build", allow_import=True)
    assert factory.__name__ == "fog_toy_allowed:build"
    s, p = small
    run = train(s, p, dataset=tiny, model=factory, period=2, lr=0.5, threads=1)
    assert run.config["model"] == "fog_toy_allowed:build" and set(run.final_state) == {"1.weight", "1.bias"}
    # a module-level instance: each call is a fresh deep copy
    shared = resolve_model_spec("fog_toy_allowed:shared", allow_import=True)
    assert shared() is not shared() and shared() is not sys.modules["fog_toy_allowed"].shared
    # registered names resolve without importing anything
    assert resolve_model_spec("mlp", allow_import=False) is MLP


@pytest.mark.parametrize(("spec", "message"), [
    ("fog_toy_errors:not_a_model", r"the factory returned int; it must return a torch.nn.Module"),
    ("fog_toy_errors:IMPORTED", r"IMPORTED is a bool, not a callable returning a torch.nn.Module"),
    ("fog_toy_errors:missing", r"module fog_toy_errors has no attribute 'missing'"),
    ("fog_toy_absent_module:build", r"cannot import fog_toy_absent_module \(No module named"),
    ("fog_toy_broken:build", r"importing fog_toy_broken raised ZeroDivisionError"),
    ("resnet", r"^model = 'resnet': unknown model; known: cnn, mlp.*, or package.module:factory$"),
])
def test_an_allowed_import_spec_that_gives_no_model_is_refused(tmp_path, monkeypatch, spec, message):
    _toy_module(tmp_path, monkeypatch, "fog_toy_errors", TOY)
    _toy_module(tmp_path, monkeypatch, "fog_toy_broken", "1 / 0\n")
    with pytest.raises(ModelError, match=message):
        resolve_model_spec(spec, allow_import=True)


def test_resolving_a_spec_leaves_the_global_rng_alone(tmp_path, monkeypatch):
    _toy_module(tmp_path, monkeypatch, "fog_toy_rng", TOY)
    state = torch.random.get_rng_state()
    resolve_model_spec("fog_toy_rng:build", allow_import=True)
    assert torch.equal(torch.random.get_rng_state(), state)
