"""``foglearn theory ...`` commands, their ``--json`` output and the report."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from foglearn.cli import app

runner = CliRunner()


def test_straggler_command(tmp_path):
    res = runner.invoke(app, ["theory", "straggler", "--sigma", "1", "--mu", "10", "--customers", "200000"])
    assert res.exit_code == 0, res.output
    assert "9.538235" in res.output and "9.491222" in res.output
    res = runner.invoke(app, ["theory", "straggler", "--sigma", "1", "--mu", "10", "--customers", "200000",
                              "--json", "--plot", str(tmp_path / "s.png")])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["queue"]["capacity"] == pytest.approx(9.538235, abs=1e-6)
    assert data["sojourn"]["capacity"] == pytest.approx(9.491222, abs=1e-6)
    assert abs(data["simulation"]["z"]) < 5 and "plot written" in res.stderr
    assert (tmp_path / "s.png").stat().st_size > 0


def test_straggler_command_rejects_bad_input():
    res = runner.invoke(app, ["theory", "straggler", "--sigma", "-1"])
    assert res.exit_code == 2
    assert "sigma" in res.output


def test_hierarchy_command():
    args = ["theory", "hierarchy", "--devices", "5", "--points", "15", "--c", "0.2", "--gamma", "20", "--no-planner"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "0.189883" in res.output
    data = json.loads(runner.invoke(app, [*args, "--json"]).stdout)
    assert (data["theorem"]["r"], data["theorem"]["s"]) == (0.0, pytest.approx(0.189883, abs=1e-6))  # D < threshold
    assert data["scipy"]["objective"] == pytest.approx(data["theorem"]["objective"], rel=1e-6)
    for old in (["--n", "5"], ["--D", "15"], ["-D", "15"]):  # the old spellings are gone
        assert runner.invoke(app, ["theory", "hierarchy", *old]).exit_code == 2


def test_offloading_and_violations_commands():
    res = runner.invoke(app, ["theory", "offloading", "--replications", "50"])
    assert res.exit_code == 0, res.output
    assert "0.298609" in res.output
    data = json.loads(runner.invoke(app, ["theory", "offloading", "--replications", "50", "--json"]).stdout)
    assert data["closed_form"] == pytest.approx(0.298609, abs=1e-6) and data["simulation"]["replications"] == 50
    data = json.loads(runner.invoke(app, ["theory", "offloading", "--graph", "scale-free", "--devices", "50",
                                          "--cost-range", "2", "--json"]).stdout)
    assert data["cost_range"] == 2 and data["stable"] > 0
    res = runner.invoke(app, ["theory", "violations", "--replications", "200"])
    assert res.exit_code == 0, res.output
    assert "47.6737" in res.output and "42.4945" in res.output
    data = json.loads(runner.invoke(app, ["theory", "violations", "--replications", "200", "--points", "1",
                                          "--json"]).stdout)
    assert data["mean_field"] == pytest.approx(47.6737, abs=1e-4) and data["exact"] == pytest.approx(42.4945, abs=1e-4)


def test_report_writes_markdown_and_plots(tmp_path):
    res = runner.invoke(app, ["theory", "report", "--out", str(tmp_path), "--customers", "100000",
                              "--replications", "500"])
    assert res.exit_code == 0, res.output
    md = (tmp_path / "theory.md").read_text()
    for needle in ("9.538", "0.983399", "0.2986", "47.67", "-7.91081e+11"):
        assert needle in md
    for name in ("straggler", "hierarchy", "offloading", "violations"):
        png = tmp_path / "theory" / f"{name}.png"
        assert png.stat().st_size > 10_000
        assert f"theory/{name}.png" in md
