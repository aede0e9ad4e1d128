"""``foglearn flower run``'s options: the shared scenario options, --out, --json (Flower itself
is replaced by a stand-in here; tests/test_flower_*.py run it for real)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from foglearn.cli import app
from foglearn.network import Scenario, synthetic, write_traces

runner = CliRunner()


@pytest.fixture()
def ran(monkeypatch, tmp_path):
    """Replace the Flower simulation: record the config it was given, return a finished run."""
    import foglearn.flower.simulation as simulation

    seen = []

    def fake_run(cfg, client_cpus=1.0):
        seen.append(cfg)
        return {"status": "ok", "failures_per_slot": [0] * cfg.horizon, "final_accuracy": 0.9,
                "initial_accuracy": 0.1, "wall_seconds": 1.0,
                "costs": {"unit": 0.25, "processing": 1.0, "transfer": 2.0, "discard": 3.0, "offloaded": 4,
                          "discarded": 5, "collected": 24},
                "config": cfg.as_dict()}

    monkeypatch.setattr(simulation, "run_flower", fake_run)
    return seen


def test_flower_run_json_and_out(ran, tmp_path):
    res = runner.invoke(app, ["flower", "run", "--devices", "3", "--slots", "4", "--topology", "random", "--rho",
                              "0.5", "--out", str(tmp_path / "fl"), "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["final_accuracy"] == 0.9 and data["costs"]["unit"] == 0.25
    assert data["config"]["run_dir"] == str(tmp_path / "fl")
    (cfg,) = ran
    assert (cfg.num_devices, cfg.horizon, cfg.topology, cfg.rho) == (3, 4, "random", 0.5)
    assert "status ok" in res.stderr


def test_flower_run_replays_traces_and_saved_scenarios(ran, tmp_path):
    write_traces(tmp_path / "tr", synthetic(3, 5, seed=2))
    out = tmp_path / "fl"
    res = runner.invoke(app, ["flower", "run", "--traces", str(tmp_path / "tr"), "--out", str(out)])
    assert res.exit_code == 0, res.output
    cfg = ran[-1]
    assert (cfg.num_devices, cfg.horizon) == (3, 5) and cfg.scenario_file == str(out / "scenario.npz")
    replayed = Scenario.load(out / "scenario.npz")
    assert replayed.info["generator"] == "traces" and cfg.capacities == replayed.has_capacities
    saved = synthetic(4, 6, seed=1).save(tmp_path / "s.npz")
    res = runner.invoke(app, ["flower", "run", "--scenario", str(saved), "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert (ran[-1].num_devices, ran[-1].horizon, ran[-1].scenario_file) == (4, 6, str(saved))


def test_flower_run_refuses_what_the_source_decides(ran, tmp_path):
    write_traces(tmp_path / "tr", synthetic(3, 5, seed=2))
    res = runner.invoke(app, ["flower", "run", "--traces", str(tmp_path / "tr"), "--profile", "lte"])
    assert res.exit_code == 2 and "--profile = 'lte': does not apply with --traces" in res.output
    res = runner.invoke(app, ["flower", "run", "--run-dir", str(tmp_path)])
    assert res.exit_code == 2 and "No such option" in res.output
    assert ran == []
