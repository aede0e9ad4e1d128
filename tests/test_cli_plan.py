"""``foglearn plan``: the command prints a cost table, writes files only where asked, prints JSON
with ``--json``, writes flows and per-device tables, and reports bad input clearly."""

from __future__ import annotations

import csv
import json

import pytest
from typer.testing import CliRunner

from foglearn.cli import app
from foglearn.network import synthetic, write_traces

runner = CliRunner()


def test_plan_writes_json_and_beats_no_movement(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "plan.json"
    saved = tmp_path / "scen.npz"
    res = runner.invoke(app, ["plan", "--devices", "6", "--slots", "8", "--seed", "2", "--out", str(out),
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
    assert sorted(p.name for p in tmp_path.iterdir()) == ["again.json", "plan.json", "scen.npz"]


def test_plan_writes_nothing_unasked(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = runner.invoke(app, ["plan", "--devices", "4", "--slots", "5"])
    assert res.exit_code == 0, res.output
    assert list(tmp_path.iterdir()) == [] and "written" not in res.output


def test_plan_json_is_the_only_stdout(tmp_path):
    res = runner.invoke(app, ["plan", "--devices", "5", "--slots", "6", "--seed", "1", "--json",
                              "--out", str(tmp_path / "p.json")])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data == json.loads((tmp_path / "p.json").read_text())
    assert [p["name"] for p in data["plans"]] == ["no movement", "network-aware"]
    assert data["scenario"]["source"] == {"generator": "synthetic", "n_devices": 5, "horizon": 6,
                                          "topology": "full", "capacities": False, "profile": "synthetic",
                                          "seed": 1}
    assert "Data-movement costs" in res.stderr and "written to" in res.stderr


def test_plan_flows_and_table_count_points(tmp_path):
    """--flows: who sends how many points to whom; --table: per device and slot, and the rows add up
    (collected = kept + offloaded + discarded; processed = kept + what arrived the slot before)."""
    flows, table = tmp_path / "flows.csv", tmp_path / "table.csv"
    res = runner.invoke(app, ["plan", "--devices", "5", "--slots", "6", "--json", "--flows", str(flows),
                              "--table", str(table)])
    assert res.exit_code == 0, res.output
    aware = json.loads(res.stdout)["plans"][1]
    with flows.open() as fh:
        frows = list(csv.DictReader(fh))
    with table.open() as fh:
        trows = list(csv.DictReader(fh))
    assert frows and set(frows[0]) == {"t", "src", "dst", "src_name", "dst_name", "points"}
    assert all(r["src"] != r["dst"] and float(r["points"]) > 0 for r in frows)
    assert len(trows) == 5 * 6
    collected = sum(float(r["collected"]) for r in trows)
    offloaded = sum(float(r["offloaded"]) for r in trows)
    assert offloaded == pytest.approx(sum(float(r["points"]) for r in frows))
    assert offloaded / collected == pytest.approx(aware["offload_rate"], rel=1e-3)  # whole points vs fractions
    for r in trows:
        assert int(r["collected"]) == int(r["kept"]) + int(r["offloaded"]) + int(r["discarded"])
        assert int(r["processed"]) == int(r["kept"]) + int(r["received"]) - int(r["dropped"])
    assert {r["src_name"] for r in frows} | {r["dst_name"] for r in frows} <= {r["name"] for r in trows}


def test_plan_estimated_information_with_capacities(tmp_path):
    out = tmp_path / "p.json"
    res = runner.invoke(app, ["plan", "--devices", "5", "--slots", "20", "--capacities", "--information", "5",
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
    res = runner.invoke(app, ["plan", "--rho", "0.5"])
    assert res.exit_code == 2 and "--rho = 0.5: applies only to --topology random" in res.output
    res = runner.invoke(app, ["plan", "--scenario", str(bad), "--devices", "3"])
    assert res.exit_code == 2 and "--devices = 3: does not apply with --scenario" in res.output
    for old in ("--n", "--T"):  # the old spellings are gone
        assert runner.invoke(app, ["plan", old, "4"]).exit_code == 2
    assert not (tmp_path / "x.json").exists()


@pytest.fixture()
def traces(tmp_path):
    write_traces(tmp_path / "tr", synthetic(4, 6, profile="wifi", seed=1))
    return tmp_path / "tr"


def test_plan_replays_traces_at_their_own_size(traces):
    res = runner.invoke(app, ["plan", "--traces", str(traces), "--json"])
    assert res.exit_code == 0, res.output
    scen = json.loads(res.stdout)["scenario"]
    assert scen["info"]["generator"] == "traces" and (scen["n_devices"], scen["horizon"]) == (4, 6)
    assert scen["source"]["repeat"] is False and "capacities" not in scen["source"]
    res = runner.invoke(app, ["plan", "--traces", str(traces), "--devices", "3", "--slots", "2", "--json"])
    assert res.exit_code == 0, res.output
    assert (json.loads(res.stdout)["scenario"]["n_devices"], json.loads(res.stdout)["scenario"]["horizon"]) == (3, 2)


def test_plan_tiles_traces_only_with_repeat(traces):
    res = runner.invoke(app, ["plan", "--traces", str(traces), "--devices", "8", "--slots", "12"])
    assert res.exit_code == 2 and "--devices = 8" in res.output and "--repeat" in res.output
    res = runner.invoke(app, ["plan", "--traces", str(traces), "--devices", "8", "--slots", "12", "--repeat",
                              "--json"])
    assert res.exit_code == 0, res.output
    scen = json.loads(res.stdout)["scenario"]
    assert (scen["n_devices"], scen["horizon"]) == (8, 12) and scen["source"]["repeat"] is True
    assert "warning:" in res.stderr and "tiled" in res.stderr


@pytest.mark.parametrize("option", [["--topology", "random"], ["--rho", "0.5"], ["--profile", "lte"],
                                    ["--capacities"], ["--no-capacities"]])
def test_plan_traces_refuse_options_they_decide(traces, option):
    res = runner.invoke(app, ["plan", "--traces", str(traces), *option])
    assert res.exit_code == 2, res.output
    assert f"{option[0]}" in res.output and "does not apply with --traces" in res.output


def test_max_points_with_measured_arrivals_is_an_error(tmp_path):
    """nodes.csv's arrivals column decides D_i(t): --max-points (which bounds drawn arrivals) is refused."""
    from typer.testing import CliRunner

    from foglearn.cli import app
    from foglearn.network import synthetic, write_traces

    d = write_traces(tmp_path / "tr", synthetic(n_devices=3, horizon=2, seed=0), data=True)
    res = CliRunner().invoke(app, ["plan", "--traces", str(d), "--max-points", "5"])
    assert res.exit_code == 2
    assert "--max-points" in res.output and "arrivals column" in res.output
    assert CliRunner().invoke(app, ["plan", "--traces", str(d)]).exit_code == 0
