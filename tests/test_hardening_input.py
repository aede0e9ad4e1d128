"""Hostile and broken input: data sets, kernels, scenarios, scenario files and traces.

Each test is a regression test for a defect the old code had (a crash inside a compiled kernel,
a traceback, a silently wrong value or an allocation sized by what a file claims); the rest fuzz
the loaders and the Scenario constructor: whatever they are given, they either succeed or raise
their InputError naming the field/file and the rule.
"""

from __future__ import annotations

import gzip
import io
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from foglearn.cli import app
from foglearn.errors import InputError
from foglearn.learning import datasets as dsm
from foglearn.learning.datasets import ArrayDataset, DatasetError, load_dataset, read_idx, write_idx
from foglearn.learning.kernels import BatchedCNN, BatchedMLP
from foglearn.learning.models import CNN, MLP


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FOGLEARN_DATA", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)


def _arrays(n_train=12, n_test=5, seed=0):
    rng = np.random.default_rng(seed)
    return {"x_train": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
            "y_train": rng.integers(0, 10, n_train).astype(np.uint8),
            "x_test": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
            "y_test": rng.integers(0, 10, n_test).astype(np.uint8)}


def _write_folder(folder: Path, arrays, gz: bool = False) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for key, stem in dsm.IDX_FILES.items():
        write_idx(folder / (stem + (".gz" if gz else "")), arrays[key])
    return folder


def _npz_bytes(**arrays) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


# ------------------------------------------------------------------------------ labels (issue item 1)

@pytest.mark.parametrize("label", [10, 255])
@pytest.mark.parametrize("gz", [False, True])
def test_idx_folder_label_outside_the_classes(tmp_path, label, gz):
    arrays = _arrays()
    arrays["y_train"][3] = label
    folder = _write_folder(tmp_path / "bad", arrays, gz)
    with pytest.raises(DatasetError, match=rf"train-labels-idx1-ubyte.*y_train\[3\] = {label}: labels must lie in 0..9"):
        load_dataset(folder)


def test_npz_label_outside_the_classes(tmp_path):
    arrays = _arrays()
    arrays["y_test"][1] = 10
    p = dsm.save_npz(tmp_path / "bad.npz", arrays)
    with pytest.raises(DatasetError, match=r"bad.npz: y_test\[1\] = 10: labels must lie in 0..9"):
        load_dataset(p)
    arrays["y_test"] = np.array([0, 1, 2, 3, 2**63 + 5], dtype=np.uint64)  # would wrap negative as int64
    p = dsm.save_npz(tmp_path / "wrap.npz", arrays)
    with pytest.raises(DatasetError, match=r"y_test\[4\] = 9223372036854775813: labels must lie"):
        load_dataset(p)


def test_array_dataset_rejects_labels_outside_the_classes():
    x = np.zeros((3, 1, 28, 28), np.float32)
    y = np.array([0, 10, 1])
    with pytest.raises(DatasetError, match=r"y_train\[1\] = 10: labels must lie in 0..9"):
        ArrayDataset(x, y, x, np.zeros(3, np.int64), name="bad")


def _kernel_batch(kernel, label=3, index=(0, 1)):
    g, w = 2, 2
    flat = torch.zeros(g, kernel.layout.size)
    X = torch.zeros(5, 1, 28, 28)
    y = torch.full((g, w), label, dtype=torch.int64)
    idx = torch.tensor([list(index)] * g)
    return flat, X, y, torch.full((g, w), 0.5), idx


@pytest.mark.parametrize("make", [lambda: BatchedMLP(MLP()), lambda: BatchedCNN(CNN(), fused=False),
                                  lambda: BatchedCNN(CNN())], ids=["mlp", "cnn-layered", "cnn-fused"])
def test_kernels_refuse_out_of_range_labels_indices_and_rows(make):
    kernel = make()
    flat, X, y, wt, idx = _kernel_batch(kernel)
    loss, _ = kernel.loss_and_grad(flat, X, y, wt, index=idx)  # in range: fine
    assert torch.isfinite(loss).all()
    for label in (10, 255, -1, 10**8):
        flat, X, y, wt, idx = _kernel_batch(kernel, label=label)
        with pytest.raises(InputError, match=rf"y\[0, 0\] = {label}: labels must lie in 0..9"):
            kernel.loss_and_grad(flat, X, y, wt, index=idx)
        with pytest.raises(InputError, match="labels must lie in 0..9"):
            kernel.sgd_step(flat.clone(), torch.arange(2), X, y, wt, 0.1, index=idx)
    flat, X, y, wt, idx = _kernel_batch(kernel)
    with pytest.raises(InputError, match=r"weight: must have the labels' shape \[2, 2\]"):
        kernel.loss_and_grad(flat, X, y, wt[:, :1], index=idx)
    if isinstance(kernel, BatchedCNN):  # the compiled passes read x[index] unchecked
        flat, X, y, wt, idx = _kernel_batch(kernel, index=(0, 5))
        with pytest.raises(InputError, match=r"index\[0, 1\] = 5: sample indices must lie in 0..4"):
            kernel.loss_and_grad(flat, X, y, wt, index=idx)
        with pytest.raises(InputError, match="sample indices"):
            kernel.forward(flat, X, index=idx)
    if isinstance(kernel, BatchedCNN) and kernel.fused:  # and write params[rows[d]] unchecked
        flat, X, y, wt, idx = _kernel_batch(kernel)
        with pytest.raises(InputError, match=r"rows\[1\] = 2: parameter rows must lie in 0..1"):
            kernel.sgd_step(flat, torch.tensor([0, 2]), X, y, wt, 0.1, index=idx)


def test_train_on_labels_corrupted_after_construction_is_an_error_not_a_crash():
    from foglearn import plan, train
    from foglearn.network import synthetic

    ds = dsm.tiny_dataset(200, 20)
    ds.y_train[:] = 10  # the arrays are the caller's: the kernels check again
    s = synthetic(2, 4, max_points=5, seed=0)
    for model in ("mlp", "cnn"):
        with pytest.raises(InputError, match="labels must lie in 0..9"):
            train(s, plan(s), dataset=ds, model=model, period=2, threads=1)


def test_cli_run_on_idx_folder_with_bad_labels_exits_2(tmp_path):
    arrays = _arrays(n_train=300, n_test=20)
    arrays["y_train"][7] = 255
    folder = _write_folder(tmp_path / "bad", arrays, gz=True)
    res = CliRunner().invoke(app, ["run", "--n", "2", "--T", "4", "--period", "2", "--model", "mlp", "--dataset",
                                   str(folder), "--threads", "1", "--out", str(tmp_path / "run")])
    assert res.exit_code == 2, res.output
    assert "y_train[7] = 255: labels must lie in 0..9" in res.output
    assert "Traceback" not in res.output


# ------------------------------------------------------------------------ shapes, dtypes, strides

def test_npz_images_of_the_wrong_shape_or_dtype(tmp_path):
    good = _arrays()
    cases = {
        "x_train": (good["x_train"].reshape(28, 12, 28), r"x_train: images must have shape \[N, 28, 28\]"),
        "x_test": (good["x_test"].astype(np.complex64), "x_test: images must be uint8.*complex64"),
        "y_train": (good["y_train"].astype(np.float64) + 0.7, "y_train: labels must be integers, got dtype float64"),
        "y_test": (good["y_test"].reshape(5, 1), r"y_test: labels must have shape \[N\]"),
    }
    for key, (bad, message) in cases.items():
        p = tmp_path / f"{key}.npz"
        p.write_bytes(_npz_bytes(**{**good, key: bad}))
        with pytest.raises(DatasetError, match=f"{key}.npz: {message}"):
            load_dataset(p)


def test_npz_float_images_outside_0_1_or_nan(tmp_path):
    good = _arrays()
    x = good["x_train"].astype(np.float32) / 255
    x[2, 3, 4] = np.nan
    p = tmp_path / "nan.npz"
    p.write_bytes(_npz_bytes(**{**good, "x_train": x}))
    with pytest.raises(DatasetError, match=r"nan.npz: x_train\[2, 0, 3, 4\] = nan: pixel values must lie in \[0, 1\]"):
        load_dataset(p)


def test_npz_pickled_member_is_refused(tmp_path):
    good = _arrays()
    buf = io.BytesIO()
    np.savez(buf, **{**good, "y_test": np.array([1, "a", None], dtype=object)})
    p = tmp_path / "pickle.npz"
    p.write_bytes(buf.getvalue())
    with pytest.raises(DatasetError, match="y_test holds pickled Python objects"):
        load_dataset(p)


def test_array_dataset_makes_strided_arrays_contiguous():
    ds = dsm.tiny_dataset(20, 10)
    flipped = ArrayDataset(ds.x_train[::-1], ds.y_train[::-1], ds.x_test[::2], ds.y_test[::2], name="flipped")
    assert flipped.x_train.flags.c_contiguous and flipped.y_test.flags.c_contiguous
    assert torch.from_numpy(flipped.x_train).shape == (20, 1, 28, 28)  # negative strides: torch refuses
    assert np.array_equal(flipped.y_train, ds.y_train[::-1])


# ------------------------------------------------------------------ memory bombs (issue item 8)

def _idx_header(shape, code=0x08) -> bytes:
    return bytes([0, 0, code, len(shape)]) + np.asarray(shape, dtype=">u4").tobytes()


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("shape", [(65536,) * 4, (65535, 65535, 65535), (2_000_000, 28, 28)])
def test_idx_header_claiming_a_huge_shape_allocates_nothing(tmp_path, shape, gz):
    data = _idx_header(shape) + bytes(1000)
    p = tmp_path / ("huge.gz" if gz else "huge")
    p.write_bytes(gzip.compress(data) if gz else data)
    tracemalloc.start()
    try:
        with pytest.raises(DatasetError, match=rf"truncated: header says shape \[{shape[0]}, "):
            read_idx(p)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20


def test_gzip_bomb_after_a_small_idx_payload_is_not_decompressed(tmp_path):
    payload = np.ones((2, 28, 28), np.uint8)
    bomb = gzip.compress(_idx_header(payload.shape) + payload.tobytes() + bytes(64 << 20), compresslevel=9)
    assert len(bomb) < 100_000
    p = tmp_path / "bomb.gz"
    p.write_bytes(bomb)
    tracemalloc.start()
    try:
        with pytest.raises(DatasetError, match=r"unexpected trailing bytes after shape \[2, 28, 28\]"):
            read_idx(p)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20  # the old reader decompressed all 64 MiB


def test_corrupt_gzip_stream_is_a_dataset_error(tmp_path):
    p = write_idx(tmp_path / "a.gz", np.arange(3 * 28 * 28, dtype=np.uint32).astype(np.uint8).reshape(3, 28, 28))
    raw = bytearray(p.read_bytes())
    raw[20:40] = bytes(range(200, 220))  # inside the deflate stream: zlib.error, not OSError
    p.write_bytes(bytes(raw))
    with pytest.raises(DatasetError, match="gzip data is corrupt or truncated"):
        read_idx(p)


def _npz_with_lying_header(tmp_path: Path, shape) -> Path:
    good = _arrays()
    buf = io.BytesIO()
    np.savez(buf, **good)
    src = zipfile.ZipFile(io.BytesIO(buf.getvalue()))
    out = tmp_path / "lying.npz"
    with zipfile.ZipFile(out, "w") as z:
        for name in src.namelist():
            data = src.read(name)
            if name == "x_train.npy":
                hdr = io.BytesIO()
                np.lib.format.write_array_header_1_0(hdr, {"descr": "|u1", "fortran_order": False, "shape": shape})
                data = hdr.getvalue() + bytes(100)
            z.writestr(name, data)
    return out


@pytest.mark.parametrize("shape", [(10**12, 28, 28), (300, 28, 28)])
def test_npz_header_claiming_more_than_the_archive_holds(tmp_path, shape):
    p = _npz_with_lying_header(tmp_path, shape)
    tracemalloc.start()
    try:
        with pytest.raises(DatasetError, match=rf"x_train: header claims shape \[{shape[0]}, 28, 28\].*truncated"):
            load_dataset(p)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20


def test_fuzzed_idx_and_npz_files_raise_only_dataset_errors(tmp_path):
    """Random byte flips and truncations of valid files: a DatasetError or a valid array, nothing else."""
    rng = np.random.default_rng(0)
    arrays = _arrays(4, 3)
    idx_plain = _idx_header((4, 28, 28)) + arrays["x_train"].tobytes()
    sources = {"f": idx_plain, "f.gz": gzip.compress(idx_plain), "f.npz": _npz_bytes(**arrays)}
    for trial in range(300):
        name = list(sources)[trial % 3]
        raw = bytearray(sources[name])
        if trial % 2:
            raw = raw[:rng.integers(0, len(raw))]
        else:
            for _ in range(rng.integers(1, 4)):
                raw[rng.integers(0, len(raw))] = rng.integers(0, 256)
        p = tmp_path / name
        p.write_bytes(bytes(raw))
        try:
            read_idx(p) if not name.endswith(".npz") else load_dataset(p)
        except DatasetError:
            pass
