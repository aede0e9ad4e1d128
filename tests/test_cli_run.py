"""``foglearn run``: trains both settings and writes a complete run directory."""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import shutil
import sys
import time
import tomllib
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from typer.testing import CliRunner

from foglearn.cli import app
from foglearn.learning import datasets as dsm

runner = CliRunner()


def write_tiny(path: Path, seed: int = 0) -> Path:
    ds = dsm.tiny_dataset(n_train=3000, n_test=200, seed=seed)
    arrays = {
        "x_train": np.round(ds.x_train[:, 0] * 255).astype(np.uint8),
        "y_train": ds.y_train.astype(np.uint8),
        "x_test": np.round(ds.x_test[:, 0] * 255).astype(np.uint8),
        "y_test": ds.y_test.astype(np.uint8),
    }
    return dsm.save_npz(path, arrays)


@pytest.fixture()
def tiny_npz(tmp_path):
    return write_tiny(tmp_path / "tiny.npz")


def test_run_writes_run_directory(tmp_path, tiny_npz, monkeypatch):
    monkeypatch.setenv("FOGLEARN_DATA", str(tmp_path / "cache"))
    out = tmp_path / "run"
    res = runner.invoke(
        app,
        [
            "run",
            "--devices",
            "3",
            "--slots",
            "10",
            "--period",
            "5",
            "--model",
            "mlp",
            "--dataset",
            str(tiny_npz),
            "--lr",
            "0.05",
            "--passes",
            "2",
            "--threads",
            "1",
            "--seed",
            "1",
            "--out",
            str(out),
        ],
    )
    assert res.exit_code == 0, res.output
    # the trainer's notice (the tiny training set wraps) in the CLI's words, once a setting, not a raw warning
    assert "UserWarning" not in res.output and "warning: no-movement: the scenario collects" in res.output
    for f in (
        "config.toml",
        "result.json",
        "slots.csv",
        "device_loss.csv",
        "loss.png",
        "accuracy.png",
    ):
        assert (out / f).is_file() and (out / f).stat().st_size > 0, f
    assert not list(out.glob("*.tmp"))
    result = json.loads((out / "result.json").read_text())
    names = [s["name"] for s in result["settings"]]
    assert names == ["no-movement", "network-aware"]
    nm, na = result["settings"]
    assert 0.0 <= nm["accuracy"] <= 1.0 and 0.0 <= na["accuracy"] <= 1.0
    assert na["unit_cost"] < nm["unit_cost"]  # the paper's point: movement lowers the unit cost
    assert nm["transfer"] == 0.0 and nm["discard"] == 0.0
    assert na["accuracy"] > 0.3  # learnt something on the tiny set (chance = 0.1)
    config = tomllib.loads((out / "config.toml").read_text())
    assert config["training"]["period"] == 5 and config["scenario"]["n_devices"] == 3
    assert (out / "slots.csv").read_text().count("\n") == 1 + 2 * 10 * 2
    assert "network-aware" in res.output and "accuracy" in res.output
    assert not nm["near_chance"] and not na["near_chance"] and "NEAR CHANCE" not in res.output
    assert (
        config["training"]["budget"],
        config["training"]["passes"],
        config["training"]["local_update"],
    ) == ("default", 2, "minibatch:16")  # the default budget's local update, --passes overrides
    assert config["training"]["lr"] == 0.05 and config["training"]["partition"] == "iid"


def test_budget_paper_is_the_papers_protocol_and_says_it_is_near_chance(
    tmp_path, tiny_npz, monkeypatch
):
    monkeypatch.setenv("FOGLEARN_DATA", str(tmp_path / "cache"))
    out = tmp_path / "run"
    res = runner.invoke(
        app,
        [
            "run",
            "--devices",
            "3",
            "--slots",
            "4",
            "--period",
            "2",
            "--model",
            "mlp",
            "--dataset",
            str(tiny_npz),
            "--budget",
            "paper",
            "--lr",
            "1e-7",
            "--threads",
            "1",
            "--out",
            str(out),
        ],
    )
    assert res.exit_code == 0, res.output
    config = tomllib.loads((out / "config.toml").read_text())["training"]
    assert (config["passes"], config["local_update"], config["budget"]) == (1, "paper", "paper")
    result = json.loads((out / "result.json").read_text())
    assert all(
        s["near_chance"] and s["chance"] == 0.1 and s["accuracy"] <= 0.15
        for s in result["settings"]
    )
    text = " ".join(res.output.split())
    assert "(NEAR CHANCE)" in text and "within 5% points of chance" in text


def test_run_partition_writes_label_histograms(tmp_path, tiny_npz, monkeypatch):
    monkeypatch.setenv("FOGLEARN_DATA", str(tmp_path / "cache"))
    out = tmp_path / "run"
    res = runner.invoke(
        app,
        [
            "run",
            "--devices",
            "4",
            "--slots",
            "6",
            "--period",
            "3",
            "--model",
            "mlp",
            "--dataset",
            str(tiny_npz),
            "--partition",
            "classes:2",
            "--passes",
            "2",
            "--local-update",
            "minibatch:8",
            "--threads",
            "1",
            "--out",
            str(out),
        ],
    )
    assert res.exit_code == 0, res.output
    assert (out / "labels.png").stat().st_size > 0
    result = json.loads((out / "result.json").read_text())
    hist = np.array(result["partition"]["label_histograms"])
    assert hist.shape == (4, 10) and np.all((hist > 0).sum(1) == 2)
    assert hist.sum() == 2 * result["scenario"]["collected"]  # every collected point, both passes
    assert result["partition"]["spec"] == "classes:2"
    assert tomllib.loads((out / "config.toml").read_text())["training"]["partition"] == "classes:2"
    assert all(s["config"]["local_update"] == "minibatch:8" for s in result["settings"])
    assert tomllib.loads((out / "config.toml").read_text())["planning"]["label_loads"] == "label-blind"
    assert tomllib.loads((out / "config.toml").read_text())["planning"]["label_target"] == "uniform"
    assert tomllib.loads((out / "config.toml").read_text())["settings"][2]["solver"] == "label-aware"
    assert [s["name"] for s in result["settings"]] == ["no-movement", "network-aware", "label-aware"]
    # the label-aware setting weights its loss by class (1/√ share, mean 1 over the collected points);
    # the label-blind ones train with the paper's loss
    assert tomllib.loads((out / "config.toml").read_text())["planning"]["label_weights"] == "sqrt"
    assert [s["config"]["class_weights"] for s in result["settings"][:2]] == [None, None]
    weights = result["settings"][2]["config"]["class_weights"]
    assert weights["spec"] == "sqrt"
    counts = hist.sum(0)
    np.testing.assert_allclose(np.array(weights["weights"])[counts > 0] * np.sqrt(counts[counts > 0]),
                               np.sqrt(counts[counts > 0]) @ np.array(weights["weights"])[counts > 0]
                               / (counts > 0).sum(), rtol=1e-5)  # ∝ 1/√N_c
    np.testing.assert_allclose(counts @ np.array(weights["weights"]), counts.sum(), rtol=1e-5)  # mean 1


def test_run_label_loads_free_target_collected_and_bad_values(tmp_path, tiny_npz, monkeypatch):
    """``--label-loads free --label-target collected`` plans the third setting with free loads towards
    the pooled mix (recorded in config.toml, so ``--config`` reruns it); an unknown value is an error
    naming the option before any training; a config written before ``label_target`` existed reruns
    what it used (the pooled mix)."""
    monkeypatch.setenv("FOGLEARN_DATA", str(tmp_path / "cache"))
    base = ["run", "--devices", "4", "--slots", "6", "--period", "3", "--model", "mlp", "--dataset", str(tiny_npz),
            "--partition", "classes:2", "--passes", "1", "--threads", "1"]
    bad = runner.invoke(app, [*base, "--label-loads", "any", "--out", str(tmp_path / "bad")])
    assert bad.exit_code == 2 and "--label-loads = 'any': must be one of label-blind, free" in bad.output
    bad = runner.invoke(app, [*base, "--label-target", "even", "--out", str(tmp_path / "bad")])
    assert bad.exit_code == 2 and "--label-target = 'even': must be one of uniform, collected" in bad.output
    bad = runner.invoke(app, [*base, "--label-weights", "inverse", "--out", str(tmp_path / "bad")])
    assert bad.exit_code == 2 and "--label-weights = 'inverse': must be one of none, sqrt" in bad.output
    assert not (tmp_path / "bad").exists()
    import foglearn.planning as planning

    seen: list = []
    real_plan = planning.plan

    def recording_plan(*args, **kwargs):
        seen.append(kwargs)
        return real_plan(*args, **kwargs)

    monkeypatch.setattr(planning, "plan", recording_plan)
    out = tmp_path / "free"
    res = runner.invoke(app, [*base, "--label-loads", "free", "--label-target", "collected", "--label-weights",
                              "none", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert json.loads((out / "result.json").read_text())["settings"][2]["config"]["class_weights"] is None
    label_aware = [kw for kw in seen if kw.get("labels") is not None]
    assert len(label_aware) == 1 and label_aware[0]["target"] == "collected"
    assert label_aware[0]["solver"] == "label-aware-free"
    config = tomllib.loads((out / "config.toml").read_text())
    assert config["planning"]["label_loads"] == "free"
    assert config["planning"]["label_target"] == "collected"
    assert config["planning"]["label_weights"] == "none"
    assert [s["solver"] for s in config["settings"]][2] == "label-aware-free"
    from foglearn.cli.run import options_from_config

    opts = options_from_config(out / "config.toml")
    assert (opts["label_loads"], opts["label_target"], opts["label_weights"]) == ("free", "collected", "none")
    old = tmp_path / "old.toml"
    old.write_text((out / "config.toml").read_text().replace('label_target = "collected"\n', "")
                   .replace('label_weights = "none"\n', ""))
    assert "label_target" not in old.read_text() and "label_weights" not in old.read_text()
    assert options_from_config(old)["label_target"] == "collected"
    assert options_from_config(old)["label_weights"] == "none"  # configs before the option: the plain loss
    bad_config = tmp_path / "bad.toml"
    bad_config.write_text((out / "config.toml").read_text().replace('label_weights = "none"', 'label_weights = "SQRT"'))
    res = runner.invoke(app, ["run", "--config", str(bad_config), "--out", str(tmp_path / "bad")])
    assert res.exit_code == 2
    assert f"--config = {bad_config}: planning.label_weights = 'SQRT': must be one of none, sqrt" in " ".join(
        res.output.split())


def test_run_resumes_finished_settings(tmp_path, tiny_npz, monkeypatch):
    """A setting finished before an interruption is kept: the same command does not train it again."""
    monkeypatch.setenv("FOGLEARN_DATA", str(tmp_path / "cache"))
    out = tmp_path / "run"
    args = [
        "run",
        "--devices",
        "3",
        "--slots",
        "10",
        "--period",
        "5",
        "--model",
        "mlp",
        "--dataset",
        str(tiny_npz),
        "--threads",
        "1",
        "--passes",
        "1",
        "--out",
        str(out),
    ]
    assert runner.invoke(app, args).exit_code == 0
    first = json.loads((out / "result.json").read_text())
    (out / "result.json").unlink()
    import foglearn.learning as learning

    def refuse(*a, **k):
        raise AssertionError("a finished setting was trained again")

    monkeypatch.setattr(learning, "train", refuse)
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "(kept)" in res.output
    assert json.loads((out / "result.json").read_text())["settings"] == first["settings"]
    monkeypatch.undo()
    res = runner.invoke(
        app, [*args[:-2], "--seed", "3", "--out", str(out)]
    )  # another configuration trains anew
    assert res.exit_code == 0 and "(kept)" not in res.output


def test_changing_a_label_aware_option_retrains_only_the_label_aware_setting(tmp_path, tiny_npz, monkeypatch):
    monkeypatch.setenv("FOGLEARN_DATA", str(tmp_path / "cache"))
    out = tmp_path / "run"
    args = ["run", "--devices", "4", "--slots", "6", "--period", "3", "--model", "mlp", "--dataset", str(tiny_npz),
            "--partition", "classes:2", "--passes", "1", "--threads", "1", "--out", str(out)]
    assert runner.invoke(app, args).exit_code == 0
    import foglearn.learning as learning

    trained: list[str] = []
    real_train = learning.train

    def recording_train(*a, **k):
        trained.append(k["name"])
        return real_train(*a, **k)

    monkeypatch.setattr(learning, "train", recording_train)
    res = runner.invoke(app, [*args, "--label-weights", "none"])
    assert res.exit_code == 0, res.output
    assert trained == ["label-aware"] and res.output.count("(kept)") == 2
    trained.clear()
    res = runner.invoke(app, [*args, "--label-target", "collected"])  # the other options likewise
    assert res.exit_code == 0 and trained == ["label-aware"]
    trained.clear()
    res = runner.invoke(app, args)  # back to the first configuration: everything kept
    assert res.exit_code == 0 and trained == [] and res.output.count("(kept)") == 3


def test_run_bad_options(tmp_path):
    res = runner.invoke(app, ["run", "--model", "resnet", "--out", str(tmp_path / "x")])
    assert res.exit_code == 2 and "--model = 'resnet'" in res.output and "cnn, mlp" in res.output
    res = runner.invoke(
        app, ["run", "--dataset", str(tmp_path / "missing"), "--out", str(tmp_path / "x")]
    )
    assert res.exit_code == 2 and "not one of" in res.output
    for opt, value, says in [
        ("--partition", "dirichlet:0", "--partition = 'dirichlet:0'"),
        ("--local-update", "minibatch:0", "--local-update = 'minibatch:0'"),
        ("--budget", "huge", "--budget = 'huge'"),
    ]:
        res = runner.invoke(app, ["run", opt, value, "--out", str(tmp_path / "x")])
        assert res.exit_code == 2 and says in res.output, res.output


def test_help_states_the_default_budget():
    res = runner.invoke(app, ["run", "--help"], terminal_width=200)
    assert res.exit_code == 0
    text = " ".join(res.output.replace("│", " ").split())  # the help table's rows wrap inside its borders
    assert "5 passes" in text and "minibatch:16" in text and "paper" in text
    assert "--label-weights" in text and "sqrt" in text


# ---------------------------------------- resume: no pickle, keyed on content, damaged files
ARGS = [
    "run",
    "--devices",
    "3",
    "--slots",
    "10",
    "--period",
    "5",
    "--model",
    "mlp",
    "--threads",
    "1",
    "--passes",
    "1",
]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """One finished tiny run (data set ``tiny.npz`` and run directory), copied by each test."""
    base = tmp_path_factory.mktemp("base")
    data = write_tiny(base / "tiny.npz")
    res = runner.invoke(app, [*ARGS, "--dataset", str(data), "--out", str(base / "run")])
    assert res.exit_code == 0, res.output
    return base


@pytest.fixture()
def resumed(finished_run, tmp_path, monkeypatch):
    """A copy of the finished run; ``resumed.trained`` records the settings trained again."""
    import foglearn.learning as learning

    monkeypatch.setenv("FOGLEARN_DATA", str(tmp_path / "cache"))
    shutil.copy(finished_run / "tiny.npz", tmp_path / "tiny.npz")
    shutil.copytree(finished_run / "run", tmp_path / "run")
    trained: list[str] = []
    real = learning.train

    def counting(*a, **k):
        trained.append(k["name"])
        return real(*a, **k)

    monkeypatch.setattr(learning, "train", counting)

    out, data = tmp_path / "run", tmp_path / "tiny.npz"
    args = [*ARGS, "--dataset", str(data), "--out", str(out)]
    return SimpleNamespace(
        out=out, data=data, trained=trained, invoke=lambda: runner.invoke(app, args)
    )


def test_finished_settings_are_json_and_npz(resumed):
    kept = sorted(p.name.split("-")[-1].split(".")[1] for p in (resumed.out / "finished").iterdir())
    assert kept == ["json", "json", "npz", "npz"]
    res = resumed.invoke()
    assert res.exit_code == 0 and resumed.trained == [] and res.output.count("(kept)") == 2


class Planted:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_planted_pickles_never_run(resumed, tmp_path):
    """Files planted in finished/ run no code: .pkl files are never read, a crafted .npz is
    refused (allow_pickle=False) and its setting is trained again."""
    marker = tmp_path / "marker"
    finished = resumed.out / "finished"
    for f in {f.with_suffix(".pkl") for f in finished.glob("*.*")}:  # the old format's files
        f.write_bytes(pickle.dumps(Planted(marker)))
    victim = next(finished.glob("no-movement-*.json"))
    with np.load(victim.with_suffix(".npz")) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["eval_slot"] = np.array([Planted(marker)], dtype=object)  # np.savez pickles it
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    victim.with_suffix(".npz").write_bytes(buf.getvalue())
    meta = json.loads(victim.read_text())
    meta["arrays"]["sha256"] = hashlib.sha256(buf.getvalue()).hexdigest()
    victim.write_text(json.dumps(meta))
    res = resumed.invoke()
    assert res.exit_code == 0, res.output
    assert not marker.exists()
    assert resumed.trained == ["no-movement"] and "network-aware (kept)" in res.output
    assert "2 .pkl file(s)" in res.output and "never loaded" in res.output
    assert "pickle-free" in res.output and "training no-movement again" in res.output, res.output


@pytest.mark.parametrize("damage", ["truncate-json", "truncate-npz", "remove-npz", "empty-json"])
def test_damaged_resume_file_is_trained_again(resumed, damage):
    kept = next((resumed.out / "finished").glob("network-aware-*.json"))
    target = kept.with_suffix(".npz") if "npz" in damage else kept
    if damage == "remove-npz":
        target.unlink()
    else:
        blob = target.read_bytes()
        target.write_bytes(b"" if damage == "empty-json" else blob[: len(blob) // 2])
    res = resumed.invoke()
    assert res.exit_code == 0, res.output
    assert "Traceback" not in res.output and "notice:" in res.output
    assert resumed.trained == ["network-aware"] and "no-movement (kept)" in res.output
    assert resumed.invoke().exit_code == 0  # kept again now:
    assert resumed.trained == ["network-aware"]


def test_changed_data_under_the_same_path_trains_anew(resumed):
    """The resume key is the data set's content, not its path."""
    before = set((resumed.out / "finished").iterdir())
    write_tiny(resumed.data, seed=1)
    res = resumed.invoke()
    assert res.exit_code == 0, res.output
    assert resumed.trained == ["no-movement", "network-aware"] and "(kept)" not in res.output
    assert len(set((resumed.out / "finished").iterdir()) - before) == 4
    sha = tomllib.loads((resumed.out / "config.toml").read_text())["training"]["dataset_sha256"]
    assert len(sha) == 64


def _no_work(monkeypatch):
    import foglearn.learning as learning
    import foglearn.planning as planning

    def refuse(*a, **k):
        raise AssertionError("work started before --out was checked")

    for mod, name in ((learning, "train"), (learning, "load_dataset"), (planning, "plan")):
        monkeypatch.setattr(mod, name, refuse)


@pytest.mark.parametrize("case", ["file", "under-a-file", "output-is-a-folder", "unwritable"])
def test_bad_out_fails_before_any_work(tmp_path, monkeypatch, case):
    _no_work(monkeypatch)
    (tmp_path / "f").write_text("x")
    if case == "file":
        out = tmp_path / "f"
    elif case == "under-a-file":
        out = tmp_path / "f" / "run"
    elif case == "output-is-a-folder":
        out = tmp_path / "run"
        (out / "result.json").mkdir(parents=True)
    else:
        out = tmp_path / "ro"
        out.mkdir()
        out.chmod(0o500)
        if os.access(out, os.W_OK):  # root writes anyway: use a folder nobody can write into
            if not sys.platform.startswith("linux"):
                pytest.skip("no unwritable folder for this user")
            out = Path("/proc/foglearn-run")
    t0 = time.perf_counter()
    res = runner.invoke(app, ["run", "--dataset", "tiny", "--out", str(out)])
    elapsed = time.perf_counter() - t0
    assert res.exit_code == 2, res.output
    assert "--out" in res.output and "Traceback" not in res.output
    assert elapsed < 10


def test_run_on_any_network(tmp_path, tiny_npz, monkeypatch):
    """--topology/--rho/--error/--information reach the scenario and the plan, and the config says so;
    --scenario runs a saved Scenario (its n and T)."""
    from foglearn.network import synthetic

    monkeypatch.setenv("FOGLEARN_DATA", str(tmp_path / "cache"))
    common = [
        "--period",
        "5",
        "--model",
        "mlp",
        "--dataset",
        str(tiny_npz),
        "--passes",
        "1",
        "--threads",
        "1",
    ]
    out = tmp_path / "run"
    res = runner.invoke(
        app,
        [
            "run",
            "--devices",
            "4",
            "--slots",
            "10",
            *common,
            "--topology",
            "random",
            "--rho",
            "0.6",
            "--error",
            "sqrt",
            "--information",
            "5",
            "--out",
            str(out),
        ],
    )
    assert res.exit_code == 0, res.output
    config = tomllib.loads((out / "config.toml").read_text())
    assert config["scenario"]["topology"] == "random" and config["scenario"]["rho"] == 0.6
    aware = config["settings"][1]
    assert aware["error"] == "sqrt" and "5" in aware["information"]
    path = synthetic(n_devices=3, horizon=6, seed=4).save(tmp_path / "net.npz")
    out2 = tmp_path / "run2"
    res = runner.invoke(app, ["run", *common, "--scenario", str(path), "--out", str(out2)])
    assert res.exit_code == 0, res.output
    config = tomllib.loads((out2 / "config.toml").read_text())
    assert config["scenario"]["generator"] == "file" and len(config["scenario"]["sha256"]) == 64
    result = json.loads((out2 / "result.json").read_text())
    assert result["scenario"]["n_devices"] == 3 and result["scenario"]["horizon"] == 6
    from foglearn.network.traces import write_traces

    traces = tmp_path / "traces"
    write_traces(traces, synthetic(n_devices=3, horizon=5, seed=1))
    out3 = tmp_path / "run3"
    res = runner.invoke(
        app, ["run", *common, "--traces", str(traces), "--devices", "4", "--slots", "7", "--repeat", "--out", str(out3)]
    )
    assert res.exit_code == 0, res.output
    config = tomllib.loads((out3 / "config.toml").read_text())
    assert config["scenario"]["generator"] == "traces" and config["scenario"]["horizon"] == 7
    assert json.loads((out3 / "result.json").read_text())["scenario"]["n_devices"] == 4
    res = runner.invoke(app, ["run", *common, "--error", "cubic", "--out", str(tmp_path / "x")])
    assert res.exit_code == 2 and "cubic" in res.output


def test_config_toml_reruns_the_same_run(tmp_path, tiny_npz, monkeypatch):
    monkeypatch.setenv("FOGLEARN_DATA", str(tmp_path / "cache"))
    out = tmp_path / "run"
    res = runner.invoke(
        app,
        [
            "run",
            "--devices",
            "3",
            "--slots",
            "8",
            "--period",
            "4",
            "--model",
            "mlp",
            "--dataset",
            str(tiny_npz),
            "--passes",
            "1",
            "--partition",
            "classes:3",
            "--local-update",
            "minibatch:8",
            "--lr",
            "0.07",
            "--seed",
            "2",
            "--topology",
            "random",
            "--rho",
            "0.9",
            "--threads",
            "1",
            "--out",
            str(out),
        ],
    )
    assert res.exit_code == 0, res.output
    again = tmp_path / "again"
    res = runner.invoke(
        app, ["run", "--config", str(out / "config.toml"), "--threads", "1", "--out", str(again)]
    )
    assert res.exit_code == 0, res.output
    assert (again / "config.toml").read_text() == (out / "config.toml").read_text()
    first, second = (json.loads((d / "result.json").read_text())["settings"] for d in (out, again))
    assert [s["accuracy"] for s in first] == [s["accuracy"] for s in second]
    bad = tmp_path / "bad.toml"
    bad.write_text("[scenario]\ngenerator = 'synthetic'\n")
    res = runner.invoke(app, ["run", "--config", str(bad), "--out", str(tmp_path / "x")])
    assert res.exit_code == 2 and "--config" in res.output and "config.toml" in res.output


# ---------------------------------------- --json, --log tensorboard, --model module:factory, traces
SMALL = ["--period", "5", "--model", "mlp", "--passes", "1", "--threads", "1"]


def test_run_json_and_tensorboard_match_the_csv(tmp_path, tiny_npz, monkeypatch):
    """--json: result.json's content (and the run directory) is all stdout holds; --log tensorboard
    writes each setting's slots.csv columns and costs as scalars."""
    import csv

    EventAccumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator").EventAccumulator

    monkeypatch.setenv("FOGLEARN_DATA", str(tmp_path / "cache"))
    out = tmp_path / "run"
    res = runner.invoke(app, ["run", "--devices", "3", "--slots", "10", *SMALL, "--dataset", str(tiny_npz),
                              "--log", "tensorboard", "--json", "--out", str(out)])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["run_directory"] == str(out)
    assert {k: v for k, v in doc.items() if k != "run_directory"} == json.loads((out / "result.json").read_text())
    assert "network-aware" in res.stderr and "tensorboard/" in res.stderr
    with (out / "slots.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    for setting in doc["settings"]:
        folder = out / "tensorboard" / setting["name"]
        assert len(list(folder.glob("events.out.tfevents.*"))) == 1
        acc = EventAccumulator(str(folder))
        acc.Reload()
        mine = [r for r in rows if r["setting"] == setting["name"]]
        for column in ("loss_mean", "processed", "test_accuracy", "test_loss"):
            want = {int(r["slot"]): float(r[column]) for r in mine if r[column] not in ("", "nan")}
            got = {e.step: e.value for e in acc.Scalars(column)}
            assert got == pytest.approx(want, rel=1e-6), column
        assert acc.Scalars("test_accuracy")[-1].value == pytest.approx(setting["accuracy"], rel=1e-6)
        assert acc.Scalars("cost/unit")[0].value == pytest.approx(setting["unit_cost"], rel=1e-6)
    # a rerun (settings kept) replaces the event files instead of adding to them
    res = runner.invoke(app, ["run", "--devices", "3", "--slots", "10", *SMALL, "--dataset", str(tiny_npz),
                              "--log", "tensorboard", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert len(list((out / "tensorboard" / "no-movement").glob("events.out.tfevents.*"))) == 1


def test_log_needs_tensorboard_and_a_known_logger(tmp_path, monkeypatch):
    _no_work(monkeypatch)
    res = runner.invoke(app, ["run", "--log", "wandb", "--out", str(tmp_path / "x")])
    assert res.exit_code == 2 and "--log = 'wandb'" in res.output and "tensorboard" in res.output
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # as if it were not installed
    res = runner.invoke(app, ["run", "--log", "tensorboard", "--out", str(tmp_path / "x")])
    assert res.exit_code == 2 and "foglearn[tracking]" in res.output
    assert not (tmp_path / "x").exists()


def test_model_import_only_where_the_operator_allows_it(tmp_path, tiny_npz, monkeypatch):
    (tmp_path / "my_models.py").write_text(
        "import torch\n\ndef linear():\n"
        "    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10))\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("FOGLEARN_DATA", str(tmp_path / "cache"))
    monkeypatch.delenv("FOGLEARN_ALLOW_MODEL_IMPORT", raising=False)
    args = ["run", "--devices", "3", "--slots", "4", "--period", "2", "--passes", "1", "--threads", "1",
            "--dataset", str(tiny_npz), "--model", "my_models:linear", "--out", str(tmp_path / "run")]
    res = runner.invoke(app, args)
    assert res.exit_code == 2 and "FOGLEARN_ALLOW_MODEL_IMPORT=1" in res.output
    assert "my_models" not in sys.modules and not (tmp_path / "run").exists()
    monkeypatch.setenv("FOGLEARN_ALLOW_MODEL_IMPORT", "1")
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    config = tomllib.loads((tmp_path / "run" / "config.toml").read_text())
    assert config["training"]["model"] == "my_models:linear"


def test_config_toml_round_trip_replays_tiled_traces(tmp_path, tiny_npz, monkeypatch):
    """config.toml records what ran (the traces, n, T, --repeat, --max-points) and --config runs it again."""
    from foglearn.network import synthetic, write_traces

    monkeypatch.setenv("FOGLEARN_DATA", str(tmp_path / "cache"))
    traces = tmp_path / "traces"
    write_traces(traces, synthetic(n_devices=2, horizon=3, seed=1))
    out = tmp_path / "run"
    res = runner.invoke(app, ["run", *SMALL, "--dataset", str(tiny_npz), "--traces", str(traces),
                              "--slots", "5", "--repeat", "--max-points", "20", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "tiled" in res.output
    source = tomllib.loads((out / "config.toml").read_text())["scenario"]
    assert source == {"generator": "traces", "path": str(traces), "n_devices": 2, "horizon": 5, "repeat": True,
                      "seed": 0, "max_points": 20}
    again = tmp_path / "again"
    res = runner.invoke(app, ["run", "--config", str(out / "config.toml"), "--threads", "1", "--out", str(again)])
    assert res.exit_code == 0, res.output
    assert (again / "config.toml").read_text() == (out / "config.toml").read_text()
    first, second = (json.loads((d / "result.json").read_text()) for d in (out, again))
    assert first["scenario"] == second["scenario"]
    assert [s["accuracy"] for s in first["settings"]] == [s["accuracy"] for s in second["settings"]]
    res = runner.invoke(app, ["run", *SMALL, "--dataset", str(tiny_npz), "--traces", str(traces),
                              "--capacities", "--out", str(tmp_path / "x")])
    assert res.exit_code == 2 and "--capacities: does not apply with --traces" in res.output


def test_run_refuses_a_scenario_too_large_to_train_before_planning(tmp_path, tiny_npz, monkeypatch):
    """A 2 kB scenario file may declare 10⁹ points; the run names the limit before planning (nothing is
    lost, no array of 10⁹ indices is allocated) and the library's train() refuses it too."""
    import numpy as np

    from foglearn.learning import train
    from foglearn.learning.trainer import MAX_POINTS, MAX_POINTS_PER_PASS, TrainingError
    from foglearn.network import synthetic
    from foglearn.planning import plan

    monkeypatch.setenv("FOGLEARN_DATA", str(tmp_path / "cache"))
    base = synthetic(n_devices=2, horizon=2, seed=0)
    huge = base.replace(collected=np.array([[10**9, 0], [0, 1]]))
    path = huge.save(tmp_path / "huge.npz")
    out = tmp_path / "run"
    res = runner.invoke(app, ["run", "--scenario", str(path), "--dataset", str(tiny_npz), "--model", "mlp",
                              "--passes", "1", "--threads", "1", "--out", str(out)])
    assert res.exit_code != 0 and "Traceback" not in res.output
    assert "collected Σ D_i(t) = 1,000,000,001 points a pass" in res.output and f"{MAX_POINTS_PER_PASS:,}" in res.output
    with pytest.raises(TrainingError, match="points a pass"):
        train(huge, plan(huge, movement=False), dataset=str(tiny_npz), model="mlp", passes=1)
    # within a pass's limit, too many passes
    many = base.replace(collected=np.array([[MAX_POINTS_PER_PASS // 2, 0], [0, 0]]))
    with pytest.raises(TrainingError, match=r"passes = 11: .* use fewer passes"):
        train(many, plan(many, movement=False), dataset=str(tiny_npz), model="mlp", passes=11)
    assert MAX_POINTS_PER_PASS // 2 * 11 > MAX_POINTS


def test_config_values_are_checked_not_coerced(tmp_path, tiny_npz, monkeypatch):
    """--config reads each key at its type (no int()/bool() coercion), refuses unknown keys, edited seeds,
    a changed scenario file or data set, and command-line options it would silently drop (fuzzing)."""
    import tomli_w

    from foglearn.network import synthetic

    monkeypatch.setenv("FOGLEARN_DATA", str(tmp_path / "cache"))
    net = synthetic(n_devices=3, horizon=4, seed=0).save(tmp_path / "net.npz")
    out = tmp_path / "run"
    res = runner.invoke(app, ["run", "--scenario", str(net), "--dataset", str(tiny_npz), "--model", "mlp",
                              "--period", "2", "--passes", "1", "--threads", "1", "--out", str(out)])
    assert res.exit_code == 0, res.output
    good = tomllib.loads((out / "config.toml").read_text())

    def run_with(cfg=None, *extra, path=None):
        if cfg is not None:
            path = tmp_path / "c.toml"
            path.write_text(tomli_w.dumps(cfg))
        r = runner.invoke(app, ["run", "--config", str(path), *extra, "--out", str(tmp_path / "again")])
        assert "Traceback" not in r.output
        return r

    def edited(table, key, value):
        cfg = json.loads(json.dumps(good))
        if value is None:
            del cfg[table][key]
        else:
            cfg[table][key] = value
        return cfg

    cases = [
        (edited("training", "period", 2.9), "training.period = 2.9: must be an integer"),
        (edited("training", "period", True), "training.period = True: must be an integer"),
        (edited("training", "passes", "1"), "training.passes = '1': must be an integer"),
        (edited("training", "lr", True), "training.lr = True: must be a finite number"),
        (edited("training", "partiton", "classes:2"), "unknown key training.partiton"),
        (edited("training", "model", None), "training.model is missing"),
        (edited("scenario", "seed", 7), "scenario.seed: does not apply to scenario.generator = 'file'"),
        ({**good, "extra": {"a": 1}}, "unknown table or key 'extra'"),
        ({**good, "scenario": "x"}, "[scenario] must be a table, got str"),
    ]
    for cfg, message in cases:
        r = run_with(cfg)
        assert r.exit_code == 2 and message in r.output, (message, r.output)
    for cfg, message in [(edited("training", "lr", 10**400), "training.lr = 1000000"),
                         (edited("training", "period", 10**400), "must be an integer from 1 to 2147483647"),
                         (edited("training", "seed", 2**63), "training.seed = 9223372036854775808: must be an integer"),
                         (edited("training", "lr", -1.0), "training.lr = -1.0: the learning rate η must be > 0"),
                         (edited("training", "dataset", ""), None)]:
        r = run_with(cfg)
        if message is None:  # a data set without a display name (an IDX folder given as ".") is fine
            assert r.exit_code == 0, r.output
        else:
            assert r.exit_code == 2 and message in r.output, (message, r.output)
    r = run_with(good, "--passes", "7")
    assert r.exit_code == 2 and "--passes: does not apply with --config" in r.output
    r = run_with(path=out)
    assert r.exit_code == 2 and "a directory; pass its config.toml" in r.output
    deep = tmp_path / "deep.toml"
    deep.write_text("a = " + "[" * 5000)
    r = run_with(path=deep)
    assert r.exit_code == 2 and "RecursionError" in r.output
    r = run_with(edited("training", "dataset_sha256", "0" * 64))
    assert r.exit_code == 2 and "changed since the run" in r.output
    synthetic(n_devices=3, horizon=4, seed=1).save(net)  # the recorded scenario file, overwritten
    r = run_with(good)
    assert r.exit_code == 2 and f"the scenario file {net} changed since the run" in r.output


def test_run_extreme_numbers_are_named_errors_not_tracebacks(tmp_path, tiny_npz, monkeypatch):
    """Values the fuzzer turned into tracebacks, hangs or memory blow-ups: each is refused with the option named,
    before planning; a diverging learning rate trains and is reported as diverged."""
    monkeypatch.setenv("FOGLEARN_DATA", str(tmp_path / "cache"))
    base = ["run", "--dataset", str(tiny_npz), "--model", "mlp", "-n", "3", "--slots", "4", "--period", "2",
            "--passes", "1", "--threads", "1"]
    cases = [
        (["--local-update", "minibatch:99999999999999999999999"], "(B an integer from 1 to 2,147,483,647)"),
        (["--local-update", "minibatch:²"], "(B an integer from 1 to 2,147,483,647)"),
        (["-n", "30000", "--slots", "1"], "the full topology draws from 899,970,000 ordered pairs"),
        (["-n", "99999999999999999999"], "device-slots, more than the 100,000,000"),
        (["--max-points", "99999999999999999999"], "must be between 0 and 2^53"),
        (["--seed", "18446744073709551616"], "--seed"),
        (["--passes", "100000000"], "use fewer passes"),
    ]
    for extra, message in cases:
        res = runner.invoke(app, [*base, *extra, "--out", str(tmp_path / "x")])
        assert res.exit_code != 0 and message in res.output and "Traceback" not in res.output, (extra, res.output)
        assert not (tmp_path / "x" / "finished").exists() or not any((tmp_path / "x" / "finished").iterdir())
    res = runner.invoke(app, [*base, "--lr", "1e15", "--out", str(tmp_path / "lr")])
    diverged = "its test loss is not finite: training diverged at η = 1000000000000000.0 (lower --lr)"
    assert res.exit_code == 0 and diverged in res.output, res.output


def test_run_information_window_not_shorter_than_the_horizon_is_refused(tmp_path, tiny_npz, monkeypatch):
    monkeypatch.setenv("FOGLEARN_DATA", str(tmp_path / "cache"))
    base = ["run", "--dataset", str(tiny_npz), "--model", "mlp", "-n", "3", "--slots", "4", "--passes", "1"]
    for window in ("4", "99999999999999999999"):
        res = runner.invoke(app, [*base, "--information", window, "--out", str(tmp_path / "x")])
        assert res.exit_code == 2 and f"--information = {window}: a window of at least the 4 slots" in res.output
    res = runner.invoke(app, [*base, "--information", "²", "--out", str(tmp_path / "x")])
    assert res.exit_code == 2 and "Traceback" not in res.output and "window length" in res.output
