"""RunConfig's learning fields: ``partition``, ``local_update``, ``solver`` and ``class_weights`` — validation, TOML
round trip, run keys, and that the runner hands them to the planner and the trainer."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from foglearn.cli import app
from foglearn.experiments import (
    ConfigError,
    ExperimentOptions,
    RunConfig,
    SweepSpec,
    read_config_toml,
    run_sweep,
    write_config_toml,
)
from foglearn.experiments.config import LATER_FIELDS
from foglearn.experiments.runner import build_scenario, run_one, training_record
from foglearn.experiments.storage import atomic_write_json
from foglearn.experiments.tables import flatten, lean_rows

#: A run small enough to train in well under a second on the generated ``tiny`` data set.
TINY = dict(n_devices=3, horizon=6, dataset="tiny", model="mlp", period=2, lr=0.1, eval_every=0, seed=1)


@pytest.mark.parametrize(("changes", "message"), [
    ({"local_update": "minibatch:0"}, r"RunConfig.local_update = 'minibatch:0': must be 'paper' \(eq. 3\), "
                                      r"'minibatch:B' or 'scaled:B'"),
    ({"local_update": 16}, r"RunConfig.local_update = 16: must be a string"),
    ({"partition": "dirichlet:-1"}, r"RunConfig.partition = 'dirichlet:-1': must be 'iid', 'dirichlet:ALPHA'"),
    ({"partition": "classes"}, r"RunConfig.partition = 'classes': must be"),
    ({"solver": "simplex"}, r"RunConfig.solver = 'simplex': unknown solver; known: auto, greedy"),
    ({"solver": "greedy", "capacities": True}, r"RunConfig.solver = 'greedy': ignores capacities"),
    ({"solver": "sqrt"}, r"RunConfig.solver = 'sqrt': solves the sqrt error model, not error = 'linear'"),
    ({"solver": "label-aware", "information": 10}, r"RunConfig.solver = 'label-aware': plans from the devices' "
                                                   r"labels with perfect information only"),
    ({"method": "centralised", "partition": "classes:2"}, r"RunConfig.partition = 'classes:2': method "
                                                          r"'centralised'.*'iid' only"),
    ({"class_weights": "inverse"}, r"RunConfig.class_weights = 'inverse': must be one of \('none', 'sqrt'\)"),
    ({"class_weights": None}, r"RunConfig.class_weights = None: must be one of"),
    ({"method": "centralised", "class_weights": "sqrt"}, r"RunConfig.class_weights = 'sqrt': method "
                                                        r"'centralised'.*'none' only"),
])
def test_learning_fields_are_checked_and_named(changes: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        RunConfig(**changes)


def test_learning_fields_are_stored_in_their_short_form() -> None:
    cfg = RunConfig(local_update=" MiniBatch:16", partition="dirichlet:0.10")
    assert (cfg.local_update, cfg.partition) == ("minibatch:16", "dirichlet:0.1")
    assert cfg.key() == RunConfig(local_update="minibatch:16", partition="dirichlet:0.1").key()
    assert RunConfig(local_update="minibatch").local_update == "minibatch:32"
    with pytest.raises(ConfigError, match=r"ExperimentOptions.local_update = 'eq3': must be 'paper'"):
        ExperimentOptions(local_update="eq3")


def test_keys_differ_by_learning_field_and_keep_old_keys_at_the_defaults() -> None:
    base = RunConfig(seed=2)
    variants = [base, base.replace(local_update="minibatch:16"), base.replace(local_update="minibatch:8"),
                base.replace(partition="dirichlet:0.1"), base.replace(partition="classes:2"),
                base.replace(solver="linear"), base.replace(solver="label-aware"), base.replace(class_weights="sqrt")]
    assert len({c.key() for c in variants}) == len(variants)
    for name in ("partition", "local_update", "solver", "class_weights"):
        assert name in LATER_FIELDS and LATER_FIELDS[name] == getattr(base, name)
    assert RunConfig.from_dict(variants[1].as_dict()) == variants[1]


def test_a_label_aware_runs_key_carries_its_formulation(monkeypatch) -> None:
    """A stored label-aware run planned with an older formulation under the same solver name (free
    loads were ``label-aware``'s default once) is never passed off as the current one's."""
    from foglearn.planning import SOLVERS

    run = RunConfig(seed=0, partition="dirichlet:0.1", solver="label-aware")
    blind = RunConfig(seed=0, partition="dirichlet:0.1", solver="linear")
    now, blind_now = run.key(), blind.key()
    monkeypatch.setitem(SOLVERS["label-aware"].params, "formulation", 2)
    assert run.key() != now and blind.key() == blind_now


def test_config_toml_round_trip_keeps_the_learning_fields(tmp_path: Path) -> None:
    opts = ExperimentOptions(seeds=(0, 1), dataset="tiny", local_update="minibatch:16")
    runs = (RunConfig(seed=0, local_update="minibatch:16", partition="dirichlet:0.5", solver="label-aware"),
            RunConfig(seed=1, partition="classes:3", solver="linear", capacities=True), RunConfig(seed=1))
    path = write_config_toml(tmp_path / "config.toml", SweepSpec("table3", opts, runs))
    text = path.read_text()
    assert 'local_update = "minibatch:16"' in text and 'solver = "label-aware"' in text
    spec = read_config_toml(path)
    assert spec.options == opts and spec.runs == runs
    tampered = text.replace('partition = "classes:3"', 'partition = "classes:4"')
    (tmp_path / "bad.toml").write_text(tampered)
    with pytest.raises(ConfigError, match="does not match its configuration"):
        read_config_toml(tmp_path / "bad.toml")


def test_options_thread_the_local_update_into_trained_runs_only() -> None:
    opts = ExperimentOptions(seeds=(0, 1), train_seeds=1, dataset="tiny", local_update="minibatch:16")
    from foglearn.experiments.definitions import EXPERIMENTS

    entry = EXPERIMENTS.get_entry("table3")
    grid = entry.obj.configs(opts, **entry.params)
    trained = {c.local_update for _, c in grid if c.train}
    untrained = {c.local_update for _, c in grid if not c.train}
    assert trained == {"minibatch:16"} and untrained == {"paper"}  # costs-only runs keep their keys
    entry = EXPERIMENTS.get_entry("table2")
    methods = {c.method: c.local_update for _, c in entry.obj.configs(opts, **entry.params)}
    assert methods == {"centralised": "minibatch:16", "federated": "minibatch:16", "network-aware": "minibatch:16"}


def _direct(cfg: RunConfig) -> dict:
    """The same run by hand: foglearn's scenario, planner and trainer called directly."""
    from foglearn.learning import train
    from foglearn.planning import plan

    scen = build_scenario(cfg, dataset_size=600)
    p = plan(scen)
    r = train(scen, p, dataset=cfg.dataset, model=cfg.model, period=cfg.period, lr=cfg.lr, seed=cfg.seed,
              passes=cfg.passes, eval_every=cfg.eval_every, local_update=cfg.local_update, partition=cfg.partition,
              class_weights=cfg.class_weights)
    return training_record(r)


@pytest.mark.filterwarnings("ignore:partition classes:UserWarning")
def test_local_update_partition_and_class_weights_reach_the_trainer() -> None:
    paper = RunConfig(**TINY)
    mini = paper.replace(local_update="minibatch:16")
    skewed = mini.replace(partition="classes:2")
    weighted = skewed.replace(class_weights="sqrt")
    got = {c.key(): run_one(c)["training"] for c in (paper, mini, skewed, weighted)}
    # each rule trains differently …
    losses = [got[c.key()]["test_loss"] for c in (paper, mini, skewed, weighted)]
    assert len(set(losses)) == 4, losses
    # … and exactly as foglearn.train called with the same arguments
    for c in (paper, mini, skewed, weighted):
        direct = _direct(c)
        assert got[c.key()]["accuracy"] == direct["accuracy"]
        assert got[c.key()]["test_loss"] == direct["test_loss"]
        assert got[c.key()]["points_processed"] == direct["points_processed"]


def test_centralised_server_takes_the_local_update() -> None:
    """The server as a one-device network is foglearn.learning.centralised under eq. (3) (to float
    round-off), so the mini-batch rule applies to it as to a device."""
    from foglearn.experiments.runner import server_scenario
    from foglearn.learning import centralised, no_movement_plan, train

    cfg = RunConfig(**{**TINY, "method": "centralised", "passes": 2, "eval_every": 1})
    scen = build_scenario(cfg, dataset_size=600)
    server = server_scenario(scen)
    kw = dict(dataset="tiny", model="mlp", lr=cfg.lr, seed=cfg.seed, period=cfg.period, passes=2, eval_every=1)
    base = centralised(scen, **kw)
    same = train(server, no_movement_plan(server), **kw)
    np.testing.assert_allclose(same.eval_loss, base.eval_loss, rtol=1e-5)
    np.testing.assert_allclose(same.device_loss, base.device_loss, rtol=1e-5)
    paper, mini = run_one(cfg)["training"], run_one(cfg.replace(local_update="minibatch:16"))["training"]
    assert paper["test_loss"] == float(base.test_loss)  # eq. (3): the baseline itself
    direct = train(server, no_movement_plan(server), local_update="minibatch:16", **kw)
    assert mini["test_loss"] == float(direct.test_loss) != paper["test_loss"]
    assert mini["points_processed"] == paper["points_processed"] == int(scen.collected.sum())  # per pass
    assert np.isnan(mini["costs"]["unit"]) and np.isnan(paper["costs"]["unit"])


def test_label_aware_solver_plans_from_the_partitions_labels() -> None:
    from foglearn.learning.datasets import load_dataset
    from foglearn.learning.partition import class_arrivals
    from foglearn.planning import plan

    cfg = RunConfig(n_devices=4, horizon=6, dataset="tiny", train=False, partition="classes:2",
                    solver="label-aware", seed=3, period=1)
    rec = run_one(cfg)
    scen = build_scenario(cfg, dataset_size=600)
    labels = class_arrivals("classes:2", scen.collected, load_dataset("tiny").y_train, 3)
    want = plan(scen, solver="label-aware", labels=labels, period=1)  # balanced over the run's τ
    assert rec["solver"]["solver"] == want.stats.as_dict()["solver"]
    assert rec["costs"]["total"] == pytest.approx(want.costs.total)
    assert rec["costs"]["total"] != pytest.approx(plan(scen, solver="label-aware", labels=labels, period=6).costs.total)
    blind = run_one(cfg.replace(solver="auto"))
    assert blind["solver"]["solver"] != rec["solver"]["solver"]


def test_a_different_local_update_is_a_different_cell_on_resume(tmp_path: Path) -> None:
    calls: list[str] = []

    def runner(c: RunConfig) -> dict:
        calls.append(c.local_update)
        return {"key": c.key(), "config": c.as_dict(), "costs": {}, "slots": {}}

    paper = RunConfig(**TINY)
    run_sweep([paper], tmp_path, progress=False, runner=runner)
    out = run_sweep([paper, paper.replace(local_update="minibatch:16")], tmp_path, progress=False, runner=runner)
    assert calls == ["paper", "minibatch:16"] and len(out.skipped) == 1 and len(out.computed) == 1


def test_records_stored_before_the_fields_read_back_with_their_defaults(tmp_path: Path) -> None:
    cfg = RunConfig(**TINY)
    old = {k: v for k, v in cfg.as_dict().items() if k not in ("partition", "local_update", "solver")}
    atomic_write_json(tmp_path / "results" / f"{cfg.key()}.json", {"key": cfg.key(), "config": old})
    out = run_sweep([cfg], tmp_path, progress=False, runner=lambda c: pytest.fail("a finished run ran again"))
    (rec,) = out.records
    assert rec is not None and out.skipped == [cfg.key()]
    assert list(rec["config"]) == list(cfg.as_dict())  # every field, in field order
    assert (rec["config"]["local_update"], rec["config"]["partition"], rec["config"]["solver"]) == ("paper", "iid",
                                                                                                  "auto")


def test_the_fields_are_csv_columns_only_where_they_vary() -> None:
    def record(c: RunConfig) -> dict:
        return {"key": c.key(), "config": c.as_dict(), "costs": {"total": 1.0, "collected": 2, "processing": 1.0,
                                                                  "transfer": 0.0, "discard": 0.0},
                "slots": {"offload_rate": [0.0]}}

    same = [flatten(record(RunConfig(seed=s))) for s in (0, 1)]
    assert not {"local_update", "partition", "solver"} & set(lean_rows(same)[0])
    mixed = [flatten(record(RunConfig(local_update=u))) for u in ("paper", "minibatch:16")]
    cols = set(lean_rows(mixed)[0])
    assert "local_update" in cols and not {"partition", "solver"} & cols


def test_cli_sweep_options_fix_the_fields(tmp_path: Path) -> None:
    out = tmp_path / "out"
    res = CliRunner().invoke(app, ["sweep", "n=4", "T=5", "dataset=tiny", "train=false", "--partition", "classes:2",
                                   "--solver", "label-aware", "--local-update", "minibatch:16", "--out", str(out),
                                   "--jobs", "1", "--no-progress", "--json"])
    assert res.exit_code == 0, res.output
    import tomllib

    doc = tomllib.loads((out / "config.toml").read_text())
    (run,), (baseline,) = doc["runs"], doc["baselines"]
    assert doc["sweep"]["fixed"]["local_update"] == "minibatch:16"
    # a run that does not train does not depend on the local update; its baseline is label-blind
    assert (run["partition"], run["solver"], run["local_update"]) == ("classes:2", "label-aware", "paper")
    assert (baseline["partition"], baseline["solver"], baseline["movement"]) == ("iid", "auto", False)
    assert json.loads(res.stdout)["runs"] == 1
    bad = CliRunner().invoke(app, ["sweep", "n=4", "T=5", "train=false", "--solver", "sqrt", "--out", str(out)])
    assert bad.exit_code == 2 and "RunConfig.solver = 'sqrt'" in bad.output


def test_cli_reproduce_local_update(tmp_path: Path) -> None:
    bad = CliRunner().invoke(app, ["reproduce", "table3", "--local-update", "minibatch:x", "--out", str(tmp_path)])
    assert bad.exit_code == 2 and "local_update = 'minibatch:x'" in bad.output
    out = tmp_path / "t3"
    res = CliRunner().invoke(app, ["reproduce", "table3", "--seeds", "1", "--jobs", "1", "--dataset", "tiny",
                                   "--model", "mlp", "--devices", "3", "--slots", "6", "--window", "2",
                                   "--eval-every", "0", "--local-update", "minibatch:16", "--no-progress",
                                   "--out", str(out)])
    assert res.exit_code == 0, res.output
    spec = read_config_toml(out / "config.toml")
    assert spec.options.local_update == "minibatch:16"
    assert {r.local_update for r in spec.runs if r.train} == {"minibatch:16"}
    assert np.isfinite(float(next(iter(_summary_accuracies(out))))), "the trained settings have an accuracy"
    # an experiment none of whose runs trains says that the rule does not apply to it
    f8 = CliRunner().invoke(app, ["reproduce", "fig8", "--seeds", "1", "--jobs", "1", "--dataset", "tiny",
                                  "--devices", "4", "--slots", "6", "--local-update", "minibatch:16", "--no-progress",
                                  "--out", str(tmp_path / "f8")])
    assert f8.exit_code == 0, f8.output
    assert "notice: fig8 trains no run of the sweep runner, so --local-update minibatch:16 does not apply" in \
        " ".join(f8.stderr.split())


def _summary_accuracies(out: Path) -> list[str]:
    from foglearn.experiments.tables import read_csv

    return [r["accuracy"] for r in read_csv(out / "summary.csv") if r.get("accuracy")]


def test_reports_name_each_local_update_rule():
    from foglearn.experiments.definitions import update_rule

    rows = [{"train": True, "local_update": u} for u in ("paper", "minibatch:16", "scaled:8")]
    assert update_rule(rows) == (
        "⌈G_i(t)/16⌉ SGD steps per device and slot on mini-batches of 16 points; "
        "one SGD step per device and slot, eq. (3); "
        "⌈G_i(t)/8⌉ SGD steps per device and slot on mini-batches of 8 points, a batch of k < 8 points stepping "
        "k/8 as far"
    )
    assert update_rule([{"train": False, "local_update": "scaled:8"}]) == "one SGD step per device and slot, eq. (3)"
