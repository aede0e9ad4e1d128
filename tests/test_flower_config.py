"""The Flower run config names registered code only; the shipped app's config is valid."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from foglearn.flower.config import FlowerConfigError, FlowerRunConfig

APP = Path(__file__).resolve().parents[1] / "flower_app" / "pyproject.toml"


def test_the_shipped_app_config_is_valid():
    conf = tomllib.loads(APP.read_text())["tool"]["flwr"]["app"]["config"]
    cfg = FlowerRunConfig.from_user_config(conf)
    assert cfg.solver == "auto"


@pytest.mark.parametrize("key", ["planner", "model-factory", "dataset-factory"])
def test_import_paths_are_not_config_keys(key):
    with pytest.raises(FlowerConfigError, match=f"{key}: unknown foglearn run-config key"):
        FlowerRunConfig.from_user_config({key: "os:system"})


def test_solver_must_be_registered():
    with pytest.raises(FlowerConfigError, match=r"solver = 'os:system'.*known: .*linear"):
        FlowerRunConfig.from_user_config({"solver": "os:system"})
    assert FlowerRunConfig.from_user_config({"solver": "linear"}).solver == "linear"
    for name in ("label-aware", "label-aware-free"):  # they plan from labels the server does not have
        with pytest.raises(FlowerConfigError, match=rf"solver = '{name}': must be label-blind"):
            FlowerRunConfig.from_user_config({"solver": name})


def test_docs_show_the_tls_script_the_deployment_test_runs():
    root = APP.parents[1]
    script = (root / "flower_app" / "tls_setup.sh").read_text()
    assert script in (root / "docs" / "flower.md").read_text()
    assert "mkdir -p" in script and "IP:127.0.0.1" in script and "DNS:localhost" in script


def test_flower_config_prints_an_absolute_run_dir(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from foglearn.cli.flower import flower_app

    monkeypatch.chdir(tmp_path)
    out = CliRunner().invoke(flower_app, ["config", "--devices", "3", "--slots", "4"]).output
    assert "$PWD" not in out and f'run-dir="{tmp_path}/runs/flower"' in out


@pytest.mark.parametrize("outcome", ["failed", "raises"])
def test_foglearn_flower_run_exits_non_zero_when_the_run_failed(monkeypatch, tmp_path, outcome):
    from typer.testing import CliRunner

    import foglearn.flower.simulation as simulation
    from foglearn.cli.flower import flower_app

    def fake_run(cfg, client_cpus=1.0):
        if outcome == "raises":
            raise RuntimeError("ServerApp: foglearn Flower run learned nothing")
        return {"status": "failed", "why_failed": ["final loss nan is not finite"], "failures_per_slot": [3],
                "final_accuracy": 0.1, "initial_accuracy": 0.1, "wall_seconds": 1.0, "costs": None,
                "config": {"run_dir": str(tmp_path)}}

    monkeypatch.setattr(simulation, "run_flower", fake_run)
    res = CliRunner().invoke(flower_app, ["run", "--devices", "3", "--slots", "1", "--period", "1", "--model", "mlp",
                                              "--out", str(tmp_path)])
    assert res.exit_code == 1, res.output
    assert ("not finite" if outcome == "failed" else "learned nothing") in res.output
