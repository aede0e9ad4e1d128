"""Every experiment end to end in quick mode on the tiny dataset: outputs exist and are sane."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from foglearn.experiments import (
    EXPERIMENTS,
    ExperimentOptions,
    ResultStore,
    read_config_toml,
    run_experiment,
)
from foglearn.experiments.config import RunConfig
from foglearn.experiments.runner import build_scenario, run_one


def quick(tmp_path: Path, **kw: object) -> ExperimentOptions:
    base = dict(seeds=(0, 1), dataset="tiny", model="mlp", quick=True, quick_horizon=10, jobs=1,
                progress=False, out=str(tmp_path))
    base.update(kw)
    return ExperimentOptions(**base)  # type: ignore[arg-type]


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open() as fh:
        return list(csv.DictReader(fh))


def run_configs(out: Path) -> dict[str, RunConfig]:
    """The runs config.toml records, by key (runs.csv keeps only the fields that vary)."""
    return {c.key(): c for c in read_config_toml(out / "config.toml").runs}


def check_run_dir(out: Path, name: str, trained: bool = True) -> list[dict[str, str]]:
    for f in ("config.toml", "runs.csv", "summary.csv", "report.md", f"{name}.png"):
        assert (out / f).is_file(), f"{name}: {f} missing"
    assert (out / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    spec = read_config_toml(out / "config.toml")
    assert spec.experiment == name
    rows = read_rows(out / "runs.csv")
    assert len(rows) == len(spec.runs)
    runs = run_configs(out)
    for r in rows:
        p, t, d, tot = (float(r[k]) for k in ("processing", "transfer", "discard", "total"))
        assert min(p, t, d) >= 0
        assert p + t + d == pytest.approx(tot, rel=1e-9, abs=1e-9)
        assert float(r["unit"]) == pytest.approx(tot / float(r["collected"]))
        for k in ("offload_rate", "discard_rate", "process_rate"):
            assert -1e-9 <= float(r[k]) <= 1 + 1e-9, (k, r[k])
        # every collected point is processed (at its source or after offloading) or discarded
        assert float(r["processed"]) + float(r["discarded"]) == pytest.approx(float(r["collected"]), rel=1e-6)
        if trained and runs[r["key"]].train:
            assert 0.0 <= float(r["accuracy"]) <= 1.0
    report = (out / "report.md").read_text()
    assert "Claims checked" in report or name in ("table2",)
    return rows


@pytest.mark.parametrize("name", ["table3", "fig4", "fig5", "fig6", "fig7", "fig8"])
def test_experiment_quick_on_tiny(tmp_path: Path, name: str) -> None:
    opts = quick(tmp_path)
    sections = run_experiment(name, opts)
    assert len(sections) == 1 and sections[0].name == name
    rows = check_run_dir(tmp_path, name)
    assert sections[0].runs == len({r["key"] for r in rows})
    assert sections[0].checks, "each experiment checks the paper's claims"
    report = (tmp_path / "report.md").read_text()
    if name == "table3":
        assert "2078" in report and "0.26" in report  # the paper's numbers side by side
        settings = {r["setting"] for r in rows}
        assert settings == {"A", "B", "C", "D", "A·p", "B·p", "C·p", "D·p"}
        persistent = [r for r in rows if r["setting"].endswith("·p")]
        assert all(float(r["persistence"]) == 0.8 and r["train"] == "False" for r in persistent)
        assert "Beyond the paper: costs that persist" in report
        a_rows = [r for r in rows if r["setting"] == "A"]
        assert all(float(r["offload_rate"]) == 0 and float(r["discard_rate"]) == 0 for r in a_rows)
        assert all(r["capacities"] == "True" for r in rows if r["setting"] == "D")
    if name == "fig4":
        assert all(run_configs(tmp_path)[r["key"]].train for r in rows)
    if name == "fig5":
        assert sorted({int(r["n_devices"]) for r in rows}) == [5, 10, 20, 30, 40, 50]
    if name == "fig8":
        assert {r["setting"] for r in rows} == {f"{m}/{t}" for m in ("lte", "wifi")
                                                for t in ("social", "hierarchical", "full")}
        assert not any(run_configs(tmp_path)[r["key"]].train for r in rows)


def test_table2_quick_on_tiny(tmp_path: Path) -> None:
    opts = quick(tmp_path, seeds=(0,))
    run_experiment("table2", opts)
    rows = check_run_dir(tmp_path, "table2")
    assert {r["setting"] for r in rows} == {f"{m}/{k}" for m in ("mlp", "cnn")
                                            for k in ("centralised", "federated", "network-aware")}
    fed = [r for r in rows if r["method"] == "federated"]
    assert all(float(r["offload_rate"]) == 0 for r in fed)
    report = (tmp_path / "report.md").read_text()
    assert "98.39" in report and "90.33" in report


def test_train_seeds_trains_only_first_seeds(tmp_path: Path) -> None:
    opts = quick(tmp_path, seeds=(0, 1, 2), quick_seeds=3, train_seeds=1)
    run_experiment("table3", opts)
    rows = [r for r in read_rows(tmp_path / "runs.csv") if not r["setting"].endswith("·p")]  # ·p: costs only
    trained = {(r["seed"], r["train"]) for r in rows}
    assert trained == {("0", "True"), ("1", "False"), ("2", "False")}
    assert all(math.isnan(float(r["accuracy"])) for r in rows if r["train"] == "False")
    summary = read_rows(tmp_path / "summary.csv")
    assert all(r["runs"] == "3" and math.isfinite(float(r["accuracy"])) for r in summary)


def test_resume_after_deleting_one_result(tmp_path: Path) -> None:
    opts = quick(tmp_path, train=False)
    first = run_experiment("fig8", opts)[0]
    assert first.computed == first.runs == 12
    store = ResultStore(tmp_path)
    files = sorted(store.folder.glob("*.json"))
    assert len(files) == 12
    victim = files[4]
    mtimes = {f: f.stat().st_mtime_ns for f in files if f != victim}
    victim.unlink()
    second = run_experiment("fig8", opts)[0]
    assert second.computed == 1
    assert victim.is_file()
    assert {f: f.stat().st_mtime_ns for f in mtimes} == mtimes


def test_all_shares_runs_between_experiments(tmp_path: Path) -> None:
    opts = quick(tmp_path, seeds=(0,), quick_horizon=6, train_seeds=1)
    sections = run_experiment("all", opts)
    assert [s.name for s in sections] == list(EXPERIMENTS)
    # fig4 reuses Table III's setting-B runs from the shared store
    fig4 = next(s for s in sections if s.name == "fig4")
    assert fig4.computed == 0
    assert (tmp_path / "report.md").is_file()
    text = (tmp_path / "report.md").read_text()
    assert "](table3/table3.png)" in text and "Summary of checked claims" in text


def test_pool_matches_inline(tmp_path: Path) -> None:
    a = quick(tmp_path / "a", train=False, seeds=(3,))
    b = quick(tmp_path / "b", train=False, seeds=(3,), jobs=2)
    run_experiment("fig8", a)
    run_experiment("fig8", b)
    ra = {r["key"]: r for r in read_rows(tmp_path / "a" / "runs.csv")}
    rb = {r["key"]: r for r in read_rows(tmp_path / "b" / "runs.csv")}
    assert ra.keys() == rb.keys()
    for k in ra:
        assert float(ra[k]["total"]) == float(rb[k]["total"])


def test_fig8_with_user_traces(tmp_path: Path) -> None:
    from foglearn.network import synthetic, write_traces

    traces = write_traces(tmp_path / "traces", synthetic(n_devices=6, horizon=8, profile="lte", seed=4,
                                                         capacities=True))
    opts = quick(tmp_path / "out", train=False, seeds=(0,), traces_dir=str(traces))
    run_experiment("fig8", opts)
    rows = read_rows(tmp_path / "out" / "runs.csv")
    tr = [r for r in rows if r["profile"] == "traces"]
    assert {r["topology"] for r in tr} == {"social", "hierarchical", "full"}
    full = next(r for r in tr if r["topology"] == "full")
    social = next(r for r in tr if r["topology"] == "social")
    assert float(full["total"]) <= float(social["total"]) + 1e-9  # more links can only help the optimum


def test_build_scenario_traces_topology_subsets_links(tmp_path: Path) -> None:
    from foglearn.network import synthetic, write_traces

    write_traces(tmp_path, synthetic(n_devices=5, horizon=4, seed=1, capacities=True))
    full = build_scenario(RunConfig(profile="traces", traces_dir=str(tmp_path), n_devices=5, horizon=4, train=False))
    hier = build_scenario(RunConfig(profile="traces", traces_dir=str(tmp_path), n_devices=5, horizon=4,
                                    topology="hierarchical", train=False))
    assert full.n_edges == 20 and 0 < hier.n_edges < 20
    assert not full.has_capacities


def test_run_one_record_is_consistent() -> None:
    rec = run_one(RunConfig(n_devices=4, horizon=6, dataset="tiny", model="mlp", seed=2, period=3))
    c = rec["costs"]
    assert c["total"] == pytest.approx(c["processing"] + c["transfer"] + c["discard"])
    assert len(rec["slots"]["offload_rate"]) == 6
    assert np.array(rec["training"]["curves"]["device_loss"]).shape == (6, 4)
    assert 0 <= rec["training"]["accuracy"] <= 1


def test_cli_reproduce(tmp_path: Path) -> None:
    from foglearn.cli import app

    out = tmp_path / "cli"
    res = CliRunner().invoke(app, ["reproduce", "fig8", "--quick", "--no-train", "--seeds", "1", "--jobs", "1",
                                   "--dataset", "tiny", "--out", str(out), "--no-progress"])
    assert res.exit_code == 0, res.output
    assert "fig8" in res.output and (out / "report.md").is_file()
    bad = CliRunner().invoke(app, ["reproduce", "fig9", "--out", str(out)])
    assert bad.exit_code == 2 and "fig9" in bad.output


def test_export_docs_copies_plots_and_relinks(tmp_path: Path) -> None:
    from foglearn.experiments import export_docs

    opts = quick(tmp_path / "run", train=False, seeds=(0,))
    run_experiment("fig8", opts)
    md = export_docs(tmp_path / "run", tmp_path / "docs" / "reproduction.md", command="foglearn reproduce fig8")
    text = md.read_text()
    assert "](reproduction/fig8.png)" in text and "foglearn reproduce fig8" in text
    assert (tmp_path / "docs" / "reproduction" / "fig8.png").is_file()
    assert not (tmp_path / "docs" / "reproduction" / "results").exists()  # raw runs stay in the run dir


def test_table2_models_option_limits_training(tmp_path: Path) -> None:
    opts = quick(tmp_path, table2_models=("mlp",))
    run_experiment("table2", opts)
    assert {c.model for c in run_configs(tmp_path).values()} == {"mlp"}
    assert "| centralised |" in (tmp_path / "report.md").read_text()


def test_quick_scales_the_window_and_config_records_what_ran(tmp_path: Path) -> None:
    opts = quick(tmp_path, train=False, seeds=(0, 1, 2, 3), quick_horizon=20)
    assert opts.run_window(10) == 2 and opts.replace(window=25).run_window(10) == 5
    assert opts.replace(quick=False).run_window(10) == 10  # full mode: the window as given
    run_experiment("table3", opts)
    spec = read_config_toml(tmp_path / "config.toml")
    estimated = [c for c in spec.runs if c.information != "perfect"]
    assert estimated and all(c.information == 2 and c.horizon == 20 for c in estimated)
    # the options as they ran (2 seeds, T = 20, W = 2, no training) beside the options as asked
    ran = spec.options
    assert (ran.seeds, ran.horizon, ran.window, ran.train, ran.quick) == ((0, 1), 20, 2, False, False)
    assert spec.requested is not None and spec.requested.quick and spec.requested.seeds == (0, 1, 2, 3)
    entry = EXPERIMENTS.get_entry("table3")
    assert [c.key() for _, c in entry.obj.configs(ran, **entry.params)] == [c.key() for c in spec.runs]
    assert "windows scaled with T (W = 10 at T = 100 → W = 2)" in (tmp_path / "report.md").read_text()


def test_result_tables_are_lean(tmp_path: Path) -> None:
    run_experiment("fig8", quick(tmp_path, train=False))
    runs = read_rows(tmp_path / "runs.csv")
    assert {"setting", "seed", "key", "profile", "topology", "unit"} <= set(runs[0])
    assert not {"dataset", "horizon", "n_devices", "train", "accuracy"} & set(runs[0])
    summary = read_rows(tmp_path / "summary.csv")
    assert len(summary) == 6 and all(r["runs"] == "2" for r in summary)
    assert "seed" not in summary[0] and "unit_std" in summary[0]
    assert not {"unit_min", "unit_max", "unit_n", "total_min"} & set(summary[0])  # mean and std only
    assert not {"accuracy", "n_devices", "rho", "lr"} & set(summary[0])  # no means of constants


def test_table3_figure_without_training_has_no_accuracy_panel(tmp_path: Path) -> None:
    from foglearn.experiments import plots

    row = {"processing_pt": 0.1, "transfer_pt": 0.1, "discard_pt": 0.1, "unit": 0.3, "unit_std": 0.0}

    def width(path: Path) -> int:
        return int.from_bytes(path.read_bytes()[16:20], "big")

    costs = plots.table3_figure(tmp_path / "a.png", ["A"], [{**row, "accuracy": float("nan")}])
    both = plots.table3_figure(tmp_path / "b.png", ["A"], [{**row, "accuracy": 0.9, "accuracy_std": 0.0}])
    assert width(costs) < 0.7 * width(both)


def test_cli_reproduce_passes_n_and_window(tmp_path: Path) -> None:
    from foglearn.cli import app

    out = tmp_path / "t3"
    res = CliRunner().invoke(app, ["reproduce", "table3", "--no-train", "--seeds", "1", "--jobs", "1",
                                   "--dataset", "tiny", "--devices", "6", "--slots", "12", "--window", "3",
                                   "--out", str(out), "--no-progress"])
    assert res.exit_code == 0, res.output
    runs = read_config_toml(out / "config.toml").runs
    assert {(c.n_devices, c.horizon) for c in runs} == {(6, 12)}
    assert {c.information for c in runs} == {"perfect", 3}
