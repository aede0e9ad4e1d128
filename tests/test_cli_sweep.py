"""`foglearn sweep GRID.toml key=value … --out DIR --plot METRIC:KEY`."""

from __future__ import annotations

import csv
from pathlib import Path

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
