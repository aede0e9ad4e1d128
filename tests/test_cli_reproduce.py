"""``foglearn reproduce NAME --json``: the sections and their claims as JSON, nothing else on stdout."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from foglearn.cli import app


def test_reproduce_json(tmp_path: Path) -> None:
    out = tmp_path / "t3"
    res = CliRunner().invoke(app, ["reproduce", "table3", "--no-train", "--seeds", "1", "--jobs", "1",
                                   "--dataset", "tiny", "--devices", "5", "--slots", "10", "--window", "5",
                                   "--out", str(out), "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["report"] == str(out / "report.md") and (out / "report.md").is_file()
    (section,) = data["sections"]
    assert section["runs"] >= 1 and section["computed"] == section["runs"]
    assert section["claims_held"] == sum(c["holds"] for c in section["checks"]) and section["checks"]
    assert "claims hold" in res.stderr
    again = json.loads(CliRunner().invoke(app, ["reproduce", "table3", "--no-train", "--seeds", "1", "--jobs", "1",
                                                "--dataset", "tiny", "--devices", "5", "--slots", "10",
                                                "--window", "5", "--out", str(out), "--json"]).stdout)
    assert again["sections"][0]["computed"] == 0  # resumed: nothing computed again


def test_reproduce_old_spellings_are_gone(tmp_path: Path) -> None:
    for old in ("--n", "--T", "--n-devices", "--horizon"):
        res = CliRunner().invoke(app, ["reproduce", "table3", old, "4", "--out", str(tmp_path)])
        assert res.exit_code == 2 and "No such option" in res.output
