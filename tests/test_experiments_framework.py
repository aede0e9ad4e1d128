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
    """Results stored before ``persistence``, ``churn`` and ``handover`` existed are still found; another value
    is a new run."""
    import hashlib
    import json

    from foglearn.experiments.config import LATER_FIELDS, SCHEMA, RunConfig

    cfg = RunConfig(seed=3)
    old = {k: v for k, v in cfg.as_dict().items() if k not in LATER_FIELDS}
    old_key = hashlib.sha256(json.dumps({"schema": SCHEMA, **old}, sort_keys=True,
                                        separators=(",", ":")).encode()).hexdigest()[:16]
    assert cfg.key() == old_key
    assert cfg.replace(persistence=0.8).key() != old_key


def test_truncated_result_is_recomputed_not_a_traceback(tmp_path: Path) -> None:
    """A result file cut short (a crash before the data reached the disk, a copy cut short) counts
    as unfinished: the sweep recomputes that run and keeps the others."""
    configs = [RunConfig(seed=s, n_devices=4, train=False) for s in range(3)]
    run_sweep(configs, tmp_path, jobs=1, progress=False, runner=fake_runner)
    store = ResultStore(tmp_path)
    victim = configs[1].key()
    text = store.path(victim).read_text()
    store.path(victim).write_text(text[: len(text) // 2])
    store.path(configs[2].key()).write_text("[1, 2]")  # valid JSON, but not a run's record
    CALLS.clear()
    with pytest.warns(RuntimeWarning, match="computed again"):
        again = run_sweep(configs, tmp_path, jobs=1, progress=False, runner=fake_runner)
    assert sorted(CALLS) == sorted([victim, configs[2].key()])
    assert again.complete and again.skipped == [configs[0].key()]
    assert [r["key"] for r in again.records] == [c.key() for c in configs]
    assert read_json(store.path(victim))["key"] == victim


def test_config_names_come_from_the_registries() -> None:
    """Topology, profile and model names are checked against foglearn's registries, and an
    unknown one lists the registered names (no silent fallback to another topology)."""
    from foglearn.learning.models import MODELS
    from foglearn.network.topology import TOPOLOGIES

    with pytest.raises(ConfigError, match=r"RunConfig.topology = 'torus': unknown topology; known: full, random"):
        RunConfig(topology="torus")
    with pytest.raises(ConfigError, match=r"RunConfig.profile = '5g': unknown profile; known: .*traces"):
        RunConfig(profile="5g")
    with pytest.raises(ConfigError, match=r"ExperimentOptions.model = 'resnet': unknown model; known: cnn, mlp"):
        ExperimentOptions(model="resnet")
    with pytest.raises(ConfigError, match=r"table2_models\[1\] = 'svm': unknown model"):
        ExperimentOptions(table2_models=("mlp", "svm"))
    TOPOLOGIES.add("ring-test", lambda g: (list(range(g.n)), [(i + 1) % g.n for i in range(g.n)]), "a ring")
    MODELS.add("model-test", MODELS["mlp"].obj, "an MLP under another name", **MODELS["mlp"].params)
    try:
        assert RunConfig(topology="ring-test", model="model-test").topology == "ring-test"
    finally:
        TOPOLOGIES.remove("ring-test")
        MODELS.remove("model-test")


def test_build_scenario_traces_use_the_topology_registry(tmp_path: Path) -> None:
    """Traced links are intersected with a registered topology, looked up by name."""
    from foglearn.experiments import build_scenario
    from foglearn.network import synthetic, write_traces
    from foglearn.network.topology import TOPOLOGIES

    write_traces(tmp_path, synthetic(n_devices=5, horizon=4, seed=1))
    TOPOLOGIES.add("star-test", lambda g: ([1, 2, 3, 4], [0, 0, 0, 0]), "every device offloads to device 0")
    try:
        scen = build_scenario(RunConfig(profile="traces", traces_dir=str(tmp_path), n_devices=5, horizon=4,
                                        topology="star-test", train=False))
    finally:
        TOPOLOGIES.remove("star-test")
    assert sorted(zip(scen.src.tolist(), scen.dst.tolist())) == [(1, 0), (2, 0), (3, 0), (4, 0)]


# ---------------------------------------------------------------- claims, templates, the registry
def test_render_number_styles_and_lists() -> None:
    from foglearn.experiments import render

    assert render("{x:pct} {x:pct0} {y:spct} {z:spct} {w:fmt} {w:fmt4} {t:pts}", x=0.1234, y=-0.458, z=0.03,
                  w=0.123456, t=-0.001) == "12.3 % 12 % −46 % +3 % 0.123 0.1235 0.1"
    assert render("{v:*fmt}", v=[0.5, 1234.5]) == "0.5, 1,234"
    assert render("{s:*n=<x>: <y:pct>}", s=[(5, 0.3), (10, 0.5)]) == "n=5: 30.0 %, n=10: 50.0 %"
    assert render("{s:*<a> and <b:pct0>}", s=[{"a": "A", "b": 0.5}]) == "A and 50 %"
    assert render("{paper[A][unit]:.2f}", paper={"A": {"unit": 0.48}}) == "0.48"


def test_claim_checks_metric_threshold_and_conditions() -> None:
    from foglearn.experiments import Claim

    claim = Claim("drop ≥ {threshold:pct0}", "drop", ">=", 0.4, "{drop:pct} (paper: {paper[drop]:pct0})",
                  paper={"drop": 0.46}, also=(("b", "<", "a"),))
    held = claim.check({"drop": 0.5, "a": 2.0, "b": 1.0})
    assert held is not None and held.holds
    assert (held.claim, held.evidence) == ("drop ≥ 40 %", "50.0 % (paper: 46 %)")
    assert not claim.check({"drop": 0.3, "a": 2.0, "b": 1.0}).holds  # type: ignore[union-attr]
    assert not claim.check({"drop": 0.5, "a": 1.0, "b": 2.0}).holds  # type: ignore[union-attr]
    assert not claim.check({"drop": float("nan"), "a": 2.0, "b": 1.0}).holds  # type: ignore[union-attr]
    assert claim.check({"drop": 0.5}) is None  # not measured: left out of the report
    scoped = Claim("{name}: x > y", "x", ">", "y", "{x} vs {y}", scope="mlp")
    assert scoped.check({"mlp": {"name": "MLP", "x": 2,
                                 "y": 1}}).markdown() == "- MLP: x > y: holds — 2 vs 1"  # type: ignore[union-attr]
    assert scoped.check({"cnn": {"x": 2, "y": 1}}) is None
    with pytest.raises(ValueError, match="Claim.op = '=>'"):
        Claim("c", "x", "=>", 1.0, "e")


def test_experiments_registry_lists_the_paper_in_order() -> None:
    from foglearn.experiments import EXPERIMENTS, names, run_experiment

    # the paper first, in its order; experiments beyond the paper follow
    assert EXPERIMENTS.names()[:7] == ("table2", "table3", "fig4", "fig5", "fig6", "fig7", "fig8")
    assert names() == (*EXPERIMENTS.names(), "all")
    assert all(e.description and e.obj.claims for e in EXPERIMENTS.values())
    assert EXPERIMENTS["fig5"].params == {"n_devices": (5, 10, 20, 30, 40, 50)}
    with pytest.raises(ConfigError, match=r"experiment = 'fig9': unknown experiment; known: table2, .*fig8, .*all"):
        run_experiment("fig9", ExperimentOptions(progress=False))


def test_sweeps_read_their_values_from_the_registry_entry(tmp_path: Path) -> None:
    """The swept values are the entry's parameters: changing them changes the runs."""
    from foglearn.experiments import EXPERIMENTS

    entry = EXPERIMENTS["fig5"]
    opts = ExperimentOptions(seeds=(0,), dataset="tiny", model="mlp", quick=True, train=False)
    grid = entry.obj.configs(opts, **{**entry.params, "n_devices": (3, 7)})
    assert [(label, c.n_devices) for label, c in grid] == [("3", 3), ("7", 7)]


def test_paper_numbers_live_only_in_the_paper_module() -> None:
    """The paper's published values are quoted from ``experiments/paper/__init__.py`` only."""
    import foglearn.experiments as E

    root = Path(E.__file__).parent
    numbers = ["2078", "0.48", "0.26", "98.39", "96.81", "90.33", "82.89", "90.24", "89.24", "82.10"]
    for path in sorted(root.rglob("*.py")):
        if path == root / "paper" / "__init__.py":
            continue
        text = path.read_text(encoding="utf-8")
        found = [n for n in numbers if n in text]
        assert not found, f"{path.relative_to(root)} repeats the paper's numbers {found}"
