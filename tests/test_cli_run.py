"""``foglearn run``: trains both settings and writes a complete run directory."""

from __future__ import annotations

import json
import tomllib

import numpy as np
import pytest
from typer.testing import CliRunner

from foglearn.cli import app
from foglearn.learning import datasets as dsm

runner = CliRunner()


@pytest.fixture()
def tiny_npz(tmp_path):
    ds = dsm.tiny_dataset(n_train=3000, n_test=200)
    arrays = {"x_train": np.round(ds.x_train[:, 0] * 255).astype(np.uint8), "y_train": ds.y_train.astype(np.uint8),
              "x_test": np.round(ds.x_test[:, 0] * 255).astype(np.uint8), "y_test": ds.y_test.astype(np.uint8)}
    return dsm.save_npz(tmp_path / "tiny.npz", arrays)


def test_run_writes_run_directory(tmp_path, tiny_npz, monkeypatch):
    monkeypatch.setenv("FOGLEARN_DATA", str(tmp_path / "cache"))
    out = tmp_path / "run"
    res = runner.invoke(app, ["run", "--n", "3", "--T", "40", "--period", "5", "--model", "mlp", "--dataset",
                              str(tiny_npz), "--lr", "0.05", "--threads", "1", "--seed", "1", "--out", str(out)])
    assert res.exit_code == 0, res.output
    for f in ("config.toml", "result.json", "slots.csv", "device_loss.csv", "loss.png", "accuracy.png"):
        assert (out / f).is_file() and (out / f).stat().st_size > 0, f
    assert not list(out.glob("*.tmp"))
    result = json.loads((out / "result.json").read_text())
    names = [s["name"] for s in result["settings"]]
    assert names == ["no-movement", "network-aware"]
    nm, na = result["settings"]
    assert 0.0 <= nm["accuracy"] <= 1.0 and 0.0 <= na["accuracy"] <= 1.0
    assert na["unit_cost"] < nm["unit_cost"]  # the paper's point: movement lowers the unit cost
    assert nm["transfer"] == 0.0 and nm["discard"] == 0.0
    assert na["accuracy"] > 0.3  # learnt something on the tiny set (chance = 0.1)
    config = tomllib.loads((out / "config.toml").read_text())
    assert config["training"]["period"] == 5 and config["scenario"]["n_devices"] == 3
    assert (out / "slots.csv").read_text().count("\n") == 1 + 2 * 40
    assert "network-aware" in res.output and "accuracy" in res.output


def test_run_resumes_finished_settings(tmp_path, tiny_npz, monkeypatch):
    """A setting finished before an interruption is kept: the same command does not train it again."""
    monkeypatch.setenv("FOGLEARN_DATA", str(tmp_path / "cache"))
    out = tmp_path / "run"
    args = ["run", "--n", "3", "--T", "10", "--period", "5", "--model", "mlp", "--dataset", str(tiny_npz),
            "--threads", "1", "--out", str(out)]
    assert runner.invoke(app, args).exit_code == 0
    first = json.loads((out / "result.json").read_text())
    (out / "result.json").unlink()
    import foglearn.learning as learning

    def refuse(*a, **k):
        raise AssertionError("a finished setting was trained again")

    monkeypatch.setattr(learning, "train", refuse)
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "(kept)" in res.output
    assert json.loads((out / "result.json").read_text())["settings"] == first["settings"]
    monkeypatch.undo()
    res = runner.invoke(app, [*args[:-2], "--seed", "3", "--out", str(out)])  # another configuration trains anew
    assert res.exit_code == 0 and "(kept)" not in res.output


def test_run_bad_options(tmp_path):
    res = runner.invoke(app, ["run", "--model", "resnet", "--out", str(tmp_path / "x")])
    assert res.exit_code == 2 and "--model" in res.output
    res = runner.invoke(app, ["run", "--dataset", str(tmp_path / "missing"), "--out", str(tmp_path / "x")])
    assert res.exit_code == 2 and "not one of" in res.output
