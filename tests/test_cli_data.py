"""``foglearn data fetch|info``: real Fashion-MNIST from Debian, clear errors for bad sources."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from foglearn.cli import app
from foglearn.learning import datasets as dsm

runner = CliRunner()


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FOGLEARN_DATA", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)


def test_info_lists_datasets(tmp_path):
    res = runner.invoke(app, ["data", "info"])
    assert res.exit_code == 0, res.output
    for name in ("mnist", "fashion-mnist", "tiny"):
        assert name in res.output


def test_info_json(tmp_path):
    import json

    res = runner.invoke(app, ["data", "info", "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["cache"] == str(tmp_path / "cache")
    by_name = {row["name"]: row for row in data["datasets"]}
    assert {"mnist", "fashion-mnist", "tiny"} <= set(by_name)
    assert all({"train", "test", "status"} <= set(row) for row in data["datasets"])


def test_fetch_unknown_name():
    res = runner.invoke(app, ["data", "fetch", "cifar10"])
    assert res.exit_code == 2 and "can fetch only" in res.output


def test_fetch_missing_source(tmp_path):
    res = runner.invoke(app, ["data", "fetch", "mnist", "--from", str(tmp_path / "nowhere")])
    assert res.exit_code == 2 and "no such file or folder" in res.output


def test_fetch_rejects_non_mnist_idx(tmp_path):
    folder = tmp_path / "fake" / "MNIST" / "raw"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for key, stem in dsm.IDX_FILES.items():
        shape = (4, 28, 28) if key.startswith("x") else (4,)
        dsm.write_idx(folder / f"{stem}.gz", rng.integers(0, 10, shape).astype(np.uint8))
    res = runner.invoke(app, ["data", "fetch", "mnist", "--from", str(tmp_path / "fake")])
    assert res.exit_code == 2 and "sha256" in res.output
    (folder / "train-images-idx3-ubyte.gz").write_bytes(b"\x00\x00\x08\x03\x00")
    res = runner.invoke(app, ["data", "fetch", "mnist", "--from", str(tmp_path / "fake")])
    assert res.exit_code == 2 and "truncated" in res.output


@pytest.mark.skipif(not (dsm.FASHION_DEBIAN_DIR / "train-images-idx3-ubyte.gz").exists(),
                    reason="Debian's dataset-fashion-mnist is not installed")
def test_fetch_fashion_from_debian():
    res = runner.invoke(app, ["data", "fetch", "fashion-mnist"])
    assert res.exit_code == 0, res.output
    assert "60000 train / 10000 test" in res.output
    res = runner.invoke(app, ["data", "info"])
    assert "ok (sha256 verified)" in res.output
