"""Keeping a finished TrainResult on disk: JSON + .npz, round trip, validation, never pickle."""

from __future__ import annotations

import hashlib
import io
import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from foglearn.learning.results import ResultFileError, TrainResult, load_result, save_result


class Planted:
    """Unpickling this runs ``open(marker, "w")``: proof that a file was unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def make_result() -> TrainResult:
    rng = np.random.default_rng(0)
    loss = rng.random((12, 3))
    loss[2, 1] = np.nan  # a device with no batch in that slot
    return TrainResult(
        name="network-aware", accuracy=0.8125, test_loss=0.53, eval_slot=np.array([5, 10, 12]),
        eval_accuracy=np.array([0.5, 0.75, 0.8125]), eval_loss=np.array([1.2, 0.7, 0.53]),
        device_loss=loss.astype(np.float32), processed=rng.integers(0, 9, (6, 3)),
        costs={"processing": 12.5, "unit": 0.25, "violations": 0, "total": float("nan")},
        config={"model": "mlp", "lr": 0.05, "plan": {"information": "perfect", "solver": "greedy"}},
        seconds=1.25, wrapped=True,
        final_state={"fc1.weight": torch.randn(4, 5), "fc1.bias": torch.zeros(4)})


def assert_same(a: TrainResult, b: TrainResult) -> None:
    for k in ("name", "accuracy", "test_loss", "seconds", "wrapped"):
        assert getattr(a, k) == getattr(b, k), k
    assert json.dumps(a.costs) == json.dumps(b.costs)  # NaN compares equal as text
    assert a.config == b.config
    for k in ("eval_slot", "eval_accuracy", "eval_loss", "device_loss", "processed"):
        x, y = getattr(a, k), getattr(b, k)
        assert x.dtype == y.dtype and np.array_equal(x, y, equal_nan=True), k
    assert list(a.final_state) == list(b.final_state)
    for k, x in a.final_state.items():
        assert x.dtype == b.final_state[k].dtype and torch.equal(x, b.final_state[k])


def test_round_trip_equals_the_original(tmp_path: Path) -> None:
    r = make_result()
    path = save_result(r, tmp_path / "finished" / "network-aware-0123.json")
    assert path.is_file() and path.with_suffix(".npz").is_file()
    assert not list(path.parent.glob(".*tmp"))
    back = load_result(path)
    assert_same(r, back)
    assert back.slot_rows()[2]["devices_stepping"] == 2  # still usable after the round trip


def rewrite_npz(path: Path, payload: bytes) -> None:
    """Replace the arrays of a kept result and make its JSON name them (as a crafted pair would)."""
    path.with_suffix(".npz").write_bytes(payload)
    meta = json.loads(path.read_text())
    meta["arrays"]["sha256"] = hashlib.sha256(payload).hexdigest()
    path.write_text(json.dumps(meta))


def npz_bytes(**arrays: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


@pytest.mark.parametrize("craft", ["object-array", "pickle-as-npz"])
def test_crafted_arrays_never_run_code(tmp_path: Path, craft: str) -> None:
    marker = tmp_path / "marker"
    path = save_result(make_result(), tmp_path / "r.json")
    if craft == "object-array":  # np.savez pickles object arrays; unpickling runs code
        r = make_result()
        payload = npz_bytes(eval_slot=np.array([Planted(marker)], dtype=object),
                            eval_accuracy=r.eval_accuracy, eval_loss=r.eval_loss,
                            device_loss=r.device_loss, processed=r.processed,
                            state_0=np.zeros((4, 5), np.float32), state_1=np.zeros(4, np.float32))
    else:
        payload = pickle.dumps(Planted(marker))
    rewrite_npz(path, payload)
    with pytest.raises(ResultFileError, match="pickle-free"):
        load_result(path)
    assert not marker.exists()


def test_truncated_or_replaced_files_are_errors(tmp_path: Path) -> None:
    path = save_result(make_result(), tmp_path / "r.json")
    text, blob = path.read_text(), path.with_suffix(".npz").read_bytes()
    path.write_text(text[: len(text) // 2])
    with pytest.raises(ResultFileError, match="truncated or not JSON"):
        load_result(path)
    path.write_text(text)
    path.with_suffix(".npz").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(ResultFileError, match="sha256 differs"):
        load_result(path)
    path.with_suffix(".npz").unlink()
    with pytest.raises(ResultFileError, match="unreadable"):
        load_result(path)
    with pytest.raises(ResultFileError, match="unreadable"):
        load_result(tmp_path / "missing.json")


def test_wrong_types_and_shapes_are_errors(tmp_path: Path) -> None:
    r = make_result()
    path = save_result(r, tmp_path / "r.json")
    meta = json.loads(path.read_text())
    for key, value, match in [("accuracy", "0.9", "'accuracy'"), ("wrapped", 1, "'wrapped'"),
                              ("version", 99, "version"),
                              ("final_state", [1, 2], "parameter names")]:
        path.write_text(json.dumps({**meta, key: value}))
        with pytest.raises(ResultFileError, match=match):
            load_result(path)
    path.write_text(json.dumps(meta))
    arrays = dict(eval_slot=r.eval_slot, eval_accuracy=r.eval_accuracy, eval_loss=r.eval_loss,
                  device_loss=r.device_loss, processed=r.processed,
                  state_0=np.zeros((4, 5), np.float32), state_1=np.zeros(4, np.float32))
    for change, match in [({"device_loss": r.device_loss[0]}, "device_loss must be a numeric 2-d"),
                          ({"eval_loss": r.eval_loss[:2]}, "eval_loss: length 2"),
                          ({"processed": np.array([["a"]])}, "processed must be a numeric"),
                          ({"state_1": None}, "exactly the arrays")]:
        changed = {k: v for k, v in {**arrays, **change}.items() if v is not None}
        rewrite_npz(path, npz_bytes(**changed))
        with pytest.raises(ResultFileError, match=match):
            load_result(path)


def test_save_refuses_what_would_need_pickle(tmp_path: Path) -> None:
    r = make_result()
    fields = {k: getattr(r, k) for k in r.__dataclass_fields__}
    bad = TrainResult(**{**fields, "processed": np.array([[None]])})
    with pytest.raises(ValueError, match="processed: dtype object"):
        save_result(bad, tmp_path / "r.json")
    with pytest.raises(ValueError, match=r"must end in \.json"):
        save_result(r, tmp_path / "r.pkl")
