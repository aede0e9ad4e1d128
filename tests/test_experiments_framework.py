"""The experiments framework: run configs and keys, TOML round trip, aggregation, sweeps with resume."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import pytest

from foglearn.experiments import (
    ConfigError,
    ExperimentOptions,
    ResultStore,
    RunConfig,
    RunFailed,
    SweepSpec,
    aggregate,
    read_config_toml,
    run_sweep,
    write_config_toml,
)
from foglearn.experiments.storage import atomic_write_json, read_json
from foglearn.experiments.tables import flatten


def test_run_config_validation_names_field_and_rule() -> None:
    with pytest.raises(ConfigError, match=r"RunConfig.rho = 1.5: a link probability must lie in \[0, 1\]"):
        RunConfig(rho=1.5)
    with pytest.raises(ConfigError, match="RunConfig.information = 0"):
        RunConfig(information=0)
    with pytest.raises(ConfigError, match="RunConfig.traces_dir"):
        RunConfig(profile="traces")
    with pytest.raises(ConfigError, match="unknown field"):
        RunConfig.from_dict({"n_devices": 3, "bogus": 1})
    with pytest.raises(ConfigError, match="seeds must be distinct"):
        ExperimentOptions(seeds=(1, 1))


def test_run_key_is_stable_and_sensitive() -> None:
    a = RunConfig(n_devices=7, seed=3)
    assert a.key() == RunConfig(seed=3, n_devices=7).key()
    assert len(a.key()) == 16
    keys = {a.key(), a.replace(seed=4).key(), a.replace(information=10).key(), a.replace(capacities=True).key(),
            a.replace(model="mlp").key(), a.replace(rho=0.31).key()}
    assert len(keys) == 6
    assert RunConfig.from_dict(a.as_dict()) == a


def test_config_toml_round_trip(tmp_path: Path) -> None:
    opts = ExperimentOptions(seeds=(3, 5), dataset="tiny", quick=True, traces_dir=None)
    runs = (RunConfig(seed=3), RunConfig(seed=5, information=10, capacities=True, error_decay_period=4))
    path = write_config_toml(tmp_path / "config.toml", SweepSpec("table3", opts, runs))
    spec = read_config_toml(path)
    assert spec.experiment == "table3"
    assert spec.options == opts
    assert spec.runs == runs
    # a tampered run is detected by its key
    text = path.read_text().replace("error_decay_period = 4", "error_decay_period = 5")
    path.write_text(text)
    with pytest.raises(ConfigError, match="does not match"):
        read_config_toml(path)


def test_aggregate_mean_std_min_max() -> None:
    rows = [{"setting": "x", "unit": 1.0, "acc": 0.5}, {"setting": "x", "unit": 3.0, "acc": float("nan")},
            {"setting": "y", "unit": 2.0, "acc": 0.7}]
    agg = {r["setting"]: r for r in aggregate(rows, ["setting"], ["unit", "acc"])}
    assert agg["x"]["runs"] == 2
    assert agg["x"]["unit"] == 2.0 and agg["x"]["unit_min"] == 1.0 and agg["x"]["unit_max"] == 3.0
    assert math.isclose(agg["x"]["unit_std"], math.sqrt(2.0))
    assert agg["x"]["acc"] == 0.5  # NaN ignored
    assert agg["y"]["unit_std"] == 0.0


def test_json_store_keeps_non_finite_values(tmp_path: Path) -> None:
    atomic_write_json(tmp_path / "r.json", {"a": float("nan"), "b": [1.0, float("inf")]})
    back = read_json(tmp_path / "r.json")
    assert math.isnan(back["a"]) and back["b"] == [1.0, float("inf")]
    assert not list(tmp_path.glob(".*tmp"))


# ---------------------------------------------------------------- sweeps with a cheap deterministic runner
CALLS: list[str] = []


def fake_runner(cfg: RunConfig) -> dict[str, Any]:
    """A deterministic stand-in with the shape of :func:`run_one`'s record (no solver, no torch)."""
    CALLS.append(cfg.key())
    if cfg.n_devices == 13:
        raise ValueError("boom")
    if cfg.n_devices == 99:
        raise KeyboardInterrupt
    c = 100 + cfg.seed
    costs = {"processing": 1.0 * cfg.seed, "transfer": 2.0, "discard": 0.5, "total": 2.5 + cfg.seed,
             "unit": (2.5 + cfg.seed) / c, "collected": c, "processed": c, "offloaded": 0.0, "discarded": 0.0,
             "offload_rate": 0.0, "discard_rate": 0.0, "process_rate": 1.0, "violations": 0}
    return {"key": cfg.key(), "config": cfg.as_dict(), "costs": costs,
            "slots": {"offload_rate": [0.1, 0.3, float("nan"), 0.0]}, "training": None,
            "seconds": {"total": 0.01}}


def test_sweep_resume_recomputes_only_missing_run(tmp_path: Path) -> None:
    configs = [RunConfig(seed=s, n_devices=n, train=False) for s in range(3) for n in (4, 5)]
    CALLS.clear()
    first = run_sweep(configs, tmp_path, jobs=1, progress=False, runner=fake_runner)
    assert first.complete and len(first.computed) == 6 and not first.skipped
    assert sorted(CALLS) == sorted(c.key() for c in configs)
    store = ResultStore(tmp_path)
    victim = configs[3].key()
    before = {c.key(): os.stat(store.path(c.key())).st_mtime_ns for c in configs if c.key() != victim}
    store.path(victim).unlink()
    CALLS.clear()
    second = run_sweep(configs, tmp_path, jobs=1, progress=False, runner=fake_runner)
    assert CALLS == [victim]
    assert second.computed == [victim] and len(second.skipped) == 5
    assert {k: os.stat(store.path(k)).st_mtime_ns for k in before} == before
    assert [r["key"] for r in second.records] == [c.key() for c in configs]
    # a third run computes nothing
    CALLS.clear()
    third = run_sweep(configs, tmp_path, jobs=1, progress=False, runner=fake_runner)
    assert CALLS == [] and third.computed == [] and third.complete


def test_sweep_interrupt_keeps_finished_and_resumes(tmp_path: Path) -> None:
    configs = [RunConfig(seed=0, n_devices=4), RunConfig(seed=1, n_devices=4), RunConfig(seed=0, n_devices=99),
               RunConfig(seed=2, n_devices=4)]
    out = run_sweep(configs, tmp_path, jobs=1, progress=False, runner=fake_runner)
    assert out.interrupted and not out.complete
    assert out.records[0] is not None and out.records[1] is not None
    assert out.records[2] is None and out.records[3] is None
    fixed = configs[:2] + [RunConfig(seed=0, n_devices=98), configs[3]]
    CALLS.clear()
    again = run_sweep(fixed, tmp_path, jobs=1, progress=False, runner=fake_runner)
    assert again.complete and sorted(CALLS) == sorted([fixed[2].key(), fixed[3].key()])


def test_sweep_failure_names_the_run(tmp_path: Path) -> None:
    configs = [RunConfig(seed=0, n_devices=13), RunConfig(seed=1, n_devices=4)]
    with pytest.raises(RunFailed, match="(?s)1 run\\(s\\) failed.*boom"):
        run_sweep(configs, tmp_path, jobs=1, progress=False, runner=fake_runner)
    assert ResultStore(tmp_path).has(configs[1].key())  # the other run finished and was kept
    out = run_sweep(configs, tmp_path, jobs=1, progress=False, runner=fake_runner, raise_on_failure=False)
    assert list(out.failed) == [configs[0].key()] and out.records[1] is not None


def test_flatten_slot_range_ignores_last_slot_and_empty_slots() -> None:
    row = flatten(fake_runner(RunConfig(seed=1, n_devices=4)))
    assert row["slot_offload_min"] == 0.1 and row["slot_offload_max"] == 0.3
    assert row["processing"] + row["transfer"] + row["discard"] == pytest.approx(row["total"])
    assert math.isnan(row["accuracy"])


def test_fields_added_later_keep_old_keys_at_their_default() -> None:
    """Results stored before ``persistence`` existed are still found; another value is a new run."""
    import hashlib
    import json

    from foglearn.experiments.config import SCHEMA, RunConfig

    cfg = RunConfig(seed=3)
    old = {k: v for k, v in cfg.as_dict().items() if k != "persistence"}
    old_key = hashlib.sha256(json.dumps({"schema": SCHEMA, **old}, sort_keys=True,
                                        separators=(",", ":")).encode()).hexdigest()[:16]
    assert cfg.key() == old_key
    assert cfg.replace(persistence=0.8).key() != old_key
