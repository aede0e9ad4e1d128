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
