"""``foglearn theory ...`` commands and the report."""

from __future__ import annotations

from typer.testing import CliRunner

from foglearn.cli import app

runner = CliRunner()


def test_straggler_command():
    res = runner.invoke(app, ["theory", "straggler", "--sigma", "1", "--mu", "10", "--customers", "200000"])
    assert res.exit_code == 0, res.output
    assert "9.538235" in res.output and "9.491222" in res.output


def test_straggler_command_rejects_bad_input():
    res = runner.invoke(app, ["theory", "straggler", "--sigma", "-1"])
    assert res.exit_code == 2
    assert "sigma" in res.output


def test_hierarchy_command():
    res = runner.invoke(app, ["theory", "hierarchy", "--n", "5", "-D", "15", "--c", "0.2", "--gamma", "20",
                              "--no-planner"])
    assert res.exit_code == 0, res.output
    assert "0.189883" in res.output


def test_offloading_and_violations_commands():
    res = runner.invoke(app, ["theory", "offloading", "--replications", "50"])
    assert res.exit_code == 0, res.output
    assert "0.298609" in res.output
    res = runner.invoke(app, ["theory", "violations", "--replications", "200"])
    assert res.exit_code == 0, res.output
    assert "47.6737" in res.output and "42.4945" in res.output


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
