"""``foglearn plan``: the command prints a cost table, writes JSON and reports bad input clearly."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from foglearn.cli import app
from foglearn.network import synthetic

runner = CliRunner()


def test_plan_writes_json_and_beats_no_movement(tmp_path):
    out = tmp_path / "plan.json"
    saved = tmp_path / "scen.npz"
    res = runner.invoke(app, ["plan", "--n", "6", "--T", "8", "--seed", "2", "--out", str(out),
                              "--save-scenario", str(saved)])
    assert res.exit_code == 0, res.output
    assert "Data-movement costs" in res.output
    data = json.loads(out.read_text())
    base, aware = data["plans"]
    assert base["name"] == "no movement" and base["offload_rate"] == 0
    assert aware["unit"] < base["unit"]
    assert abs(aware["total"] - (aware["processing"] + aware["transfer"] + aware["discard"])) < 1e-9
    # the saved scenario reloads and plans to the same cost
    res2 = runner.invoke(app, ["plan", "--scenario", str(saved), "--out", str(tmp_path / "again.json")])
    assert res2.exit_code == 0, res2.output
    again = json.loads((tmp_path / "again.json").read_text())["plans"][1]
    assert abs(again["total"] - aware["total"]) < 1e-9 * max(1.0, aware["total"])


def test_plan_estimated_information_with_capacities(tmp_path):
    out = tmp_path / "p.json"
    res = runner.invoke(app, ["plan", "--n", "5", "--T", "20", "--capacities", "--information", "5",
                              "--out", str(out)])
    assert res.exit_code == 0, res.output
    aware = json.loads(out.read_text())["plans"][1]
    assert "estimated" in aware["information"]


def test_plan_bad_inputs_are_clear(tmp_path):
    res = runner.invoke(app, ["plan", "--topology", "ring", "--out", str(tmp_path / "x.json")])
    assert res.exit_code == 2 and "topology = 'ring'" in res.output
    res = runner.invoke(app, ["plan", "--information", "soon", "--out", str(tmp_path / "x.json")])
    assert res.exit_code == 2 and "--information = 'soon'" in res.output
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"nope")
    res = runner.invoke(app, ["plan", "--scenario", str(bad), "--out", str(tmp_path / "x.json")])
    assert res.exit_code == 2 and "not a foglearn scenario" in res.output
    assert not (tmp_path / "x.json").exists()


def test_plan_replays_traces(tmp_path):
    from foglearn.network import write_traces

    write_traces(tmp_path / "tr", synthetic(4, 6, profile="wifi", seed=1))
    out = tmp_path / "t.json"
    res = runner.invoke(app, ["plan", "--traces", str(tmp_path / "tr"), "--n", "4", "--T", "12", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert json.loads(out.read_text())["scenario"]["info"]["generator"] == "traces"
