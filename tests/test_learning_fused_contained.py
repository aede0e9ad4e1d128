"""The fused CNN kernel is contained: nothing at import, no global symbols, exceptions instead of
crashes, and a switch (``FOGLEARN_FUSED=0``) to the layer-by-layer path that trains the same."""

from __future__ import annotations

import ctypes
import subprocess
import sys

import numpy as np
import pytest
import torch

from foglearn.errors import FoglearnError, InputError
from foglearn.learning import conv_kernels as ck
from foglearn.learning import fused_cnn, load_dataset, make_model, train
from foglearn.learning.kernels import BatchedCNN
from foglearn.network.scenario import Scenario
from foglearn.planning.plan import Plan

TINY = load_dataset("tiny")
needs_sgemm = pytest.mark.skipif(
    not fused_cnn.availability(), reason="PyTorch exports no sgemm_ here"
)


def _scenario(T: int = 6, n: int = 4, seed: int = 0) -> tuple[Scenario, Plan]:
    rng = np.random.default_rng(seed)
    src, dst = np.array([0, 1, 2, 3]), np.array([1, 2, 3, 0])
    s = Scenario(
        collected=rng.integers(0, 13, (T, n)),
        proc_cost=rng.random((T, n)),
        error_weight=rng.random((T, n)),
        src=src,
        dst=dst,
        link_cost=rng.random((T, 4)) * 0.1,
    )
    off = rng.random((T, 4)) * 0.2
    off[-1] = 0.0
    return s, Plan.from_fractions(s, rng.random((T, n)) * 0.6, off)


def _args(g: int = 2, w: int = 5, lr: float = 0.0, seed: int = 0) -> dict:
    """Valid arguments of :func:`fused_cnn.loss_and_grad` (keyword names as in its signature)."""
    gen = np.random.default_rng(seed)
    net = make_model("cnn", seed=seed)
    kernel = BatchedCNN(net, fused=False)
    params = (
        kernel.layout.flatten(dict(net.named_parameters())).unsqueeze(0).repeat(g + 1, 1).numpy()
    )
    return dict(
        x=TINY.x_train.reshape(-1, 28, 28),
        idx=gen.integers(0, TINY.n_train, (g, w)),
        y=gen.integers(0, 10, (g, w)),
        weight=np.full((g, w), 1.0 / w, np.float32),
        params=params,
        rows=np.arange(g, dtype=np.int64),
        pos1=kernel.T1[0],
        src1=kernel.T1[1],
        pos2=kernel.T2[0],
        src2=kernel.T2[1],
        loss=np.zeros((g, w), np.float32),
        grad=np.zeros((1 if lr > 0 else g, fused_cnn.N_PARAMS), np.float32),
        lr=lr,
        buf=np.empty(fused_cnn.SCRATCH_FLOATS, np.float32),
        codes=np.empty(fused_cnn.SCRATCH_CODES, np.uint8),
        ints=np.empty(fused_cnn.SCRATCH_INTS, np.int64),
    )


def test_import_loads_no_torch_numba_or_native_library():
    """``import foglearn.learning`` is cheap: heavy modules come with the names that need them."""
    heavy = "('torch', 'numba', 'llvmlite', 'foglearn.learning.fused_cnn')"
    code = (
        "import sys, foglearn.learning as L; "
        f"print(sorted(m for m in {heavy} if m in sys.modules)); "
        "print(callable(L.make_model), 'torch' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split("\n")
    assert out[0] == "[]"
    assert out[1] == "True True"  # the lazy names still resolve


def test_trainer_with_fused_off_takes_the_layered_path_and_trains_the_same(monkeypatch):
    """CI trains through the layer-by-layer path once; it matches the fused path to round-off."""
    s, p = _scenario()
    monkeypatch.setenv(fused_cnn.ENV, "0")
    assert not fused_cnn.enabled() and "FOGLEARN_FUSED=0" in fused_cnn.enabled().reason
    layered = train(s, p, dataset=TINY, model="cnn", period=3, lr=0.2, seed=2)
    assert layered.config["kernel"] == "cnn-layered"
    if not fused_cnn.availability():
        pytest.skip("PyTorch exports no sgemm_ here: the layered run is all there is")
    monkeypatch.delenv(fused_cnn.ENV)
    fused = train(s, p, dataset=TINY, model="cnn", period=3, lr=0.2, seed=2)
    assert fused.config["kernel"] == "cnn-fused"
    for k, v in fused.final_state.items():
        assert torch.allclose(layered.final_state[k], v, atol=1e-5, rtol=0), k
    assert np.allclose(layered.device_loss, fused.device_loss, atol=1e-5, equal_nan=True)
    assert layered.accuracy == pytest.approx(fused.accuracy, abs=1e-9)


def test_fused_switch_rejects_unknown_values(monkeypatch):
    monkeypatch.setenv(fused_cnn.ENV, "yes")
    with pytest.raises(InputError, match="FOGLEARN_FUSED = 'yes'"):
        fused_cnn.enabled()


def test_public_kernels_raise_when_sgemm_is_unavailable(monkeypatch):
    """No sgemm_ (simulated): the kernels raise before any compiled code runs, BatchedCNN falls
    back to the layer-by-layer path and refuses an explicit fused=True."""
    monkeypatch.setattr(fused_cnn, "_probed", fused_cnn.Availability(False, "simulated: no sgemm_"))
    args = _args()
    with pytest.raises(fused_cnn.FusedUnavailableError, match="simulated: no sgemm_") as err:
        fused_cnn.loss_and_grad(**args)
    assert isinstance(err.value, FoglearnError) and isinstance(err.value, RuntimeError)
    assert not isinstance(err.value, InputError)  # valid input; the machine cannot run it
    with pytest.raises(fused_cnn.FusedUnavailableError):
        fused_cnn.forward(
            args["x"],
            args["idx"],
            args["params"][:2],
            args["pos1"],
            args["src1"],
            args["pos2"],
            args["src2"],
            np.empty((2, 5, 10), np.float32),
            args["buf"],
            args["codes"],
            args["ints"],
        )
    assert not np.any(args["loss"]) and not np.any(args["grad"])
    net = make_model("cnn", seed=0)
    assert not fused_cnn.enabled().ok and BatchedCNN(net).fused is False
    with pytest.raises(fused_cnn.FusedUnavailableError):
        BatchedCNN(net, fused=True)


def test_a_library_without_sgemm_is_reported_not_crashed():
    """The real probe on a library that exports no sgemm_ (PyTorch's libc10), in a fresh process:
    the kernel raises FusedUnavailableError and the process exits normally (no segfault)."""
    code = """
import glob, os, sys
import numpy as np
import torch
from foglearn.learning import fused_cnn
libc10 = glob.glob(os.path.join(os.path.dirname(torch.__file__), "lib", "libc10.*"))
fused_cnn._torch_libraries = lambda: libc10
state = fused_cnn.availability()
assert not state and "exports no sgemm_" in state.reason, state
try:
    fused_cnn.loss_and_grad(*[np.zeros(1)] * 12, 0.0, *[np.zeros(1)] * 3)
except fused_cnn.FusedUnavailableError as e:
    print("raised:", e)
"""
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    assert "raised: the fused CNN kernel cannot run" in run.stdout


@needs_sgemm
def test_binding_sgemm_promotes_no_symbol_into_the_global_namespace():
    """The kernel runs, yet ``sgemm_`` is not visible to the process's dynamic linker (the old
    ``load_library_permanently`` made every libtorch_cpu symbol global)."""
    args = _args()
    fused_cnn.loss_and_grad(**args)
    assert np.isfinite(args["loss"]).all() and np.any(args["grad"])
    assert not hasattr(ctypes.CDLL(None), "sgemm_")


BAD_ARGS = {
    "label above the classes": (
        "y",
        lambda a: a["y"].__setitem__((1, 2), 10),
        r"y\[1, 2\] = 10: labels",
    ),
    "negative label": ("y", lambda a: a["y"].__setitem__((0, 0), -1), r"y\[0, 0\] = -1: labels"),
    "sample outside x": (
        "idx",
        lambda a: a["idx"].__setitem__((0, 4), TINY.n_train),
        r"idx\[0, 4\]",
    ),
    "row outside params": (
        "rows",
        lambda a: a.__setitem__("rows", np.array([0, 3])),
        r"rows\[1\] = 3",
    ),
    "labels as int32": (
        "y",
        lambda a: a.__setitem__("y", a["y"].astype(np.int32)),
        "y: int32 array",
    ),
    "non-contiguous params": (
        "params",
        lambda a: a.__setitem__("params", np.asfortranarray(a["params"])),
        "params: .* not C-contiguous",
    ),
    "short scratch": ("buf", lambda a: a.__setitem__("buf", a["buf"][:100]), "buf: 100 elements"),
    "read-only loss": ("loss", lambda a: a["loss"].setflags(write=False), "loss: .* read-only"),
    "tap outside the band": (
        "pos2",
        lambda a: a.__setitem__("pos2", a["pos2"] + 10**6),
        r"pos2\[0\]",
    ),
}


@needs_sgemm
@pytest.mark.parametrize("case", list(BAD_ARGS))
@pytest.mark.parametrize("lr", [0.0, 0.5])
def test_fused_kernel_refuses_unsafe_arguments_before_writing(case, lr):
    """A label outside the classes, an index outside an array, a wrong dtype/layout/size: an
    InputError naming the argument (and index), and nothing written, params included."""
    args = _args(lr=lr)
    field, spoil, message = BAD_ARGS[case]
    spoil(args)
    before = args["params"].copy()
    with pytest.raises(InputError, match=message):
        fused_cnn.loss_and_grad(**args)
    assert (
        np.array_equal(args["params"], before)
        and not np.any(args["loss"])
        and not np.any(args["grad"])
    )


@needs_sgemm
def test_in_place_step_needs_distinct_rows_and_a_valid_rate():
    with pytest.raises(InputError, match="repeated rows"):
        fused_cnn.loss_and_grad(**{**_args(lr=0.5), "rows": np.array([1, 1])})
    with pytest.raises(InputError, match="lr = -1.0"):
        fused_cnn.loss_and_grad(**{**_args(), "lr": -1.0})


@needs_sgemm
@pytest.mark.parametrize("fused", [True, False])
def test_kernel_labels_out_of_range_raise_on_both_cnn_paths(fused):
    """Through BatchedCNN, on either path: an exception for the label (the compiled cross-entropy
    checks too), never a read outside the logits."""
    net = make_model("cnn", seed=0)
    X, Y = torch.from_numpy(TINY.x_train), torch.from_numpy(TINY.y_train)
    idx = torch.arange(6).view(2, 3)
    y = Y[idx].clone()
    y[1, 1] = 12
    kernel = BatchedCNN(net, fused=fused)
    flat = kernel.layout.flatten(dict(net.named_parameters())).unsqueeze(0).repeat(2, 1)
    with pytest.raises((InputError, IndexError), match="12|outside the classes"):
        kernel.loss_and_grad(flat, X, y, torch.full((2, 3), 1 / 3), index=idx)


@pytest.mark.parametrize("label", [-1, 10, 2**40])
def test_compiled_cross_entropy_rejects_labels_outside_the_classes(label):
    z = np.zeros((3, 10), np.float32)
    dz = np.full((3, 10), 7.0, np.float32)
    with pytest.raises(IndexError, match="outside the classes"):
        ck.cross_entropy(
            z, np.array([1, label, 2]), np.ones(3, np.float32), np.zeros(3, np.float32), dz
        )
    assert (dz[1:] == 7.0).all()  # the bad row (and those after it) are untouched


@pytest.mark.parametrize("i", [-1, TINY.n_train])
def test_patch_building_rejects_sample_indices_outside_the_data(i):
    out = np.zeros((2 * 24 * ck.B1, ck.K1 + 1), np.float32)
    with pytest.raises(IndexError, match="outside x"):
        ck.conv1_rows(TINY.x_train.reshape(-1, 28, 28), np.array([0, i]), out)
