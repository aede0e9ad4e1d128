"""docs/extending.md's experiment stays true: its toy experiment registers with one
``EXPERIMENTS.add`` and runs through ``foglearn reproduce NAME --quick`` like the paper's."""

from __future__ import annotations

import contextlib
import csv
import io
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from foglearn.cli import app
from foglearn.experiments import EXPERIMENTS, read_config_toml

DOC = Path(__file__).resolve().parents[1] / "docs" / "extending.md"


def _section() -> str:
    text = DOC.read_text(encoding="utf-8")
    return text.split("\n## An experiment\n", 1)[1].split("\n## ", 1)[0]


@pytest.fixture()
def toy() -> Iterator[dict]:
    """The section's first code block run as a reader would (it registers ``devices``)."""
    block = re.findall(r"```python\n(.*?)```", _section(), flags=re.S)[0]
    ns: dict = {}
    with contextlib.redirect_stdout(io.StringIO()):
        exec(compile(block, "docs/extending.md: An experiment, block 1", "exec"), ns)
    try:
        yield ns
    finally:
        EXPERIMENTS.remove("devices")


def test_toy_experiment_runs_through_reproduce_quick(toy: dict, tmp_path: Path) -> None:
    entry = EXPERIMENTS["devices"]
    assert entry.params == {"sizes": (5, 50)} and entry.description
    out = tmp_path / "devices"
    args = [
        "reproduce",
        "devices",
        "--quick",
        "--no-train",
        "--dataset",
        "tiny",
        "--jobs",
        "1",
        "--out",
        str(out),
        "--no-progress",
    ]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "devices: 4 runs (4 computed now" in res.output and "1/1 claims hold" in res.output
    # the page shows this run's claim line
    claim = next(line.strip() for line in res.output.splitlines() if line.strip().startswith("✓"))
    assert claim in _section()
    assert read_config_toml(out / "config.toml").experiment == "devices"
    with (out / "runs.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert sorted({int(r["n_devices"]) for r in rows}) == [5, 50] and len(rows) == 4
    report = (out / "report.md").read_text()
    assert (
        "## More devices, cheaper points" in report
        and "Ten times the devices cut the unit cost" in report
    )
    assert "holds — unit cost" in report
    # rerunning resumes: nothing is computed again
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0 and "devices: 4 runs (0 computed now" in again.output


def test_toy_experiment_from_a_script(toy: dict) -> None:
    block = re.findall(r"```python\n(.*?)```", _section(), flags=re.S)[1]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(block, "docs/extending.md: An experiment, block 2", "exec"), toy)
    assert out.getvalue().strip() == "4 [True]"


def test_unknown_experiment_lists_the_registered_ones(toy: dict, tmp_path: Path) -> None:
    res = CliRunner().invoke(app, ["reproduce", "device", "--out", str(tmp_path)])
    assert res.exit_code == 2
    assert "experiment = 'device': unknown experiment; known: table2" in res.output
    assert ", devices, all" in res.output  # the toy after every registered experiment


def test_a_module_in_the_paper_package_is_registered(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The page says: saved as ``experiments/paper/devices.py`` it is one more experiment."""
    import sys

    from foglearn.experiments import paper

    block = re.findall(r"```python\n(.*?)```", _section(), flags=re.S)[0]
    (tmp_path / "devices.py").write_text(block, encoding="utf-8")
    monkeypatch.setattr(paper, "__path__", [*paper.__path__, str(tmp_path)])
    try:
        paper._load()
        assert EXPERIMENTS.names()[:7] == paper.ORDER and EXPERIMENTS.names()[-1] == "devices"
    finally:
        EXPERIMENTS.remove("devices")
        sys.modules.pop("foglearn.experiments.paper.devices", None)
