"""`foglearn sweep GRID.toml key=value … --out DIR --plot METRIC:KEY`."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from typer.testing import CliRunner

from foglearn.cli import app

GRID = """\
[grid]
error = ["linear", "sqrt"]
[fixed]
n = 4
T = 6
dataset = "tiny"
train = false
"""


def invoke(*args: str):  # noqa: ANN201 - click's Result
    return CliRunner().invoke(app, ["sweep", *args])


def test_cli_sweep_grid_file_and_overrides(tmp_path: Path) -> None:
    grid = tmp_path / "grid.toml"
    grid.write_text(GRID)
    out = tmp_path / "out"
    args = (
        str(grid),
        'topology=["full","random"]',
        "--out",
        str(out),
        "--seeds",
        "2",
        "--jobs",
        "1",
        "--plot",
        "saving:error",
        "--no-progress",
    )
    res = invoke(*args)
    assert res.exit_code == 0, res.output
    assert "4 grid point(s) × 2 seed(s) = 8 runs" in res.output
    with (out / "runs.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 8
    assert {"error", "topology", "seed", "baseline_unit", "saving"} <= set(rows[0])
    assert (out / "saving_vs_error.png").is_file()
    again = invoke(*args)
    assert again.exit_code == 0 and "0 computed now" in again.output


def test_cli_sweep_without_file_or_baseline(tmp_path: Path) -> None:
    out = tmp_path / "out"
    res = invoke(
        "n=[3,4]",
        "T=5",
        "dataset=tiny",
        "train=false",
        "--no-baseline",
        "--out",
        str(out),
        "--jobs",
        "1",
        "--no-progress",
    )
    assert res.exit_code == 0, res.output
    header = (out / "runs.csv").read_text().splitlines()[0].split(",")
    assert header[:3] == ["n_devices", "seed", "key"] and "saving" not in header


def test_cli_sweep_errors(tmp_path: Path) -> None:
    bad = invoke("colour=red", "--out", str(tmp_path / "a"))
    assert bad.exit_code == 2 and "colour" in bad.output and "known:" in bad.output
    missing = invoke(str(tmp_path / "nope.toml"), "--out", str(tmp_path / "b"))
    assert missing.exit_code == 2 and "no such grid file" in missing.output
    plot = invoke("n=[3,4]", "train=false", "--plot", "unit:rho", "--out", str(tmp_path / "c"))
    assert plot.exit_code == 2 and "rho is not a [grid] key" in plot.output


def test_cli_sweep_scenario_options_json_and_tensorboard(tmp_path: Path) -> None:
    """--devices/--slots/--topology fix those keys; --json prints the counts and summary alone on
    stdout; --log tensorboard writes each grid point's runs.csv metrics per seed."""
    import json

    EventAccumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator").EventAccumulator

    out = tmp_path / "out"
    args = ('error=["linear","sqrt"]', "dataset=tiny", "train=false", "--devices", "4", "--slots", "6",
            "--topology", "random", "--rho", "0.5", "--seeds", "2", "--jobs", "1", "--out", str(out),
            "--log", "tensorboard", "--json")
    res = invoke(*args)
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert (data["runs"], data["computed"], data["found_finished"]) == (4, 8, 0)  # each run and its baseline
    assert {row["error"] for row in data["summary"]} == {"linear", "sqrt"}
    assert "grid point(s)" in res.stderr
    with (out / "runs.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    config = (out / "config.toml").read_text()
    assert "n_devices = 4" in config and "horizon = 6" in config and 'topology = "random"' in config
    for error in ("linear", "sqrt"):
        acc = EventAccumulator(str(out / "tensorboard" / f"error={error}"))
        acc.Reload()
        want = {int(r["seed"]): float(r["unit"]) for r in rows if r["error"] == error}
        assert {e.step: e.value for e in acc.Scalars("unit")} == pytest.approx(want, rel=1e-6)
    again = json.loads(invoke(*args).stdout)
    assert (again["computed"], again["found_finished"]) == (0, 8)


def test_cli_sweep_scenario_option_errors(tmp_path: Path) -> None:
    res = invoke("train=false", "--traces", str(tmp_path), "--topology", "full", "--out", str(tmp_path / "a"))
    assert res.exit_code == 2 and "--topology = 'full': does not apply with --traces" in res.output
    res = invoke("train=false", "--rho", "0.5", "--out", str(tmp_path / "b"))
    assert res.exit_code == 2 and "--rho = 0.5: applies only to --topology random" in res.output
