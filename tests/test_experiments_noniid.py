"""The non-IID experiment (``foglearn reproduce noniid``) in quick mode on the tiny data set."""

from __future__ import annotations

import csv
import math
from pathlib import Path

from typer.testing import CliRunner

from foglearn.experiments import EXPERIMENTS, ExperimentOptions, run_experiment
from foglearn.experiments.paper.noniid import SETTINGS, aggregate, values


def quick(tmp_path: Path, **kw: object) -> ExperimentOptions:
    base = dict(seeds=(0, 1), dataset="tiny", model="mlp", quick=True, quick_horizon=8, jobs=1,
                progress=False, out=str(tmp_path))
    base.update(kw)
    return ExperimentOptions(**base)  # type: ignore[arg-type]


def test_registered_with_the_alphas():
    entry = EXPERIMENTS.get_entry("noniid")
    assert tuple(entry.params["alphas"]) == (0.05, 0.1, 0.5, 1.0, math.inf)


def test_costs_and_imbalance_without_training(tmp_path: Path):
    section = run_experiment("noniid", quick(tmp_path, train=False))[0]
    rows = list(csv.DictReader((tmp_path / "summary.csv").open()))
    assert len(rows) == 5 * len(SETTINGS)
    assert (tmp_path / "noniid.png").is_file() and len(list((tmp_path / "cells").glob("*.json"))) == 10
    by = {(float(r["alpha"]), r["setting"]): r for r in rows}
    for a in (0.05, 0.1, 0.5, 1.0):
        nm, na, la = (float(by[a, s]["imbalance"]) for s in SETTINGS)
        assert la <= na + 1e-9 and la < nm  # the label-aware plan is the most balanced
        assert float(by[a, "label-aware"]["unit_cost"]) < float(by[a, "no-movement"]["unit_cost"])
        # the same budget: label-aware discards no more than the label-blind plan
        assert float(by[a, "label-aware"]["discarded"]) <= float(by[a, "network-aware"]["discarded"]) + 1e-9
    # the cost and imbalance claims are checked, the accuracy claims are not measured
    checked = {c.claim for c in section.checks}
    assert any("40 %" in c for c in checked) and not any("half" in c for c in checked)
    # a second run resumes every cell
    again = run_experiment("noniid", quick(tmp_path, train=False))[0]
    assert [c.holds for c in again.checks] == [c.holds for c in section.checks]


def test_trained_quick_run_reports_accuracy_and_all_claims(tmp_path: Path):
    section = run_experiment("noniid", quick(tmp_path, seeds=(0,), quick_horizon=4))[0]
    rows = list(csv.DictReader((tmp_path / "summary.csv").open()))
    assert all(0.0 <= float(r["accuracy"]) <= 1.0 for r in rows)
    assert len(section.checks) == 4
    report = (tmp_path / "report.md").read_text()
    assert "label-aware" in report and "per seed 0: " in report  # the paired difference of the one seed


def test_values_gap_closed_arithmetic_and_paired_seeds():
    def cell(alpha, seed, accs):
        return {"alpha": alpha, "seed": seed,
                "settings": {s: {"unit_cost": u, "imbalance": i, "discarded": 0.0, "accuracy": a}
                             for s, a, u, i in zip(SETTINGS, accs, (0.5, 0.1, 0.2), (0.7, 0.3, 0.1), strict=True)}}
    cells = [cell(0.1, 1, (0.80, 0.84, 0.85)), cell(0.1, 0, (0.80, 0.86, 0.91)), cell("inf", 0, (0.90, 0.9, 0.9)),
             cell("inf", 1, (0.90, 0.9, 0.9))]
    rows = aggregate(cells)
    v = values(rows, cells)
    assert math.isclose(v["gap_closed"], 0.8) and math.isclose(v["la_minus_na"], 0.03)
    assert math.isclose(v["la_saving"], 0.6) and math.isclose(v["imbalance_drop"], 0.2)
    # the paired differences, by seed: +5 and +1 points, standard error |5 − 1| / 2 points
    assert v["la_minus_na_seeds"] == "0: +5.00, 1: +1.00 points (standard error 2.00)"
    assert v["la_minus_na_points"] == "+3.00 points"
    assert math.isclose(v["la_minus_na_se"], 0.02)
    one = values(aggregate(cells[:1] + cells[2:3]), cells[:1] + cells[2:3])
    assert one["la_minus_na_seeds"] == "1: +1.00 points" and math.isnan(one["la_minus_na_se"])
    # a label-aware loss is written with a typographic minus, as in the rest of the report
    worse = [cell(0.1, 2, (0.80, 0.86, 0.85)), cell("inf", 2, (0.90, 0.9, 0.9))]
    assert values(aggregate(worse), worse)["la_minus_na_seeds"] == "2: −1.00 points"


def test_run_cell_lambda_sweeps_the_label_aware_weight():
    from foglearn.experiments.paper.noniid import run_cell

    args = (0.1, 0, 6, 8, "mlp", "tiny", False, ("network-aware", "label-aware"))
    default, blind, small = run_cell(*args), run_cell(*args, lam=0.0), run_cell(*args, lam=0.05)
    assert "lambda" not in default and blind["lambda"] == 0.0
    # λ = 0 is the label-blind problem: the same cost per point as the network-aware plan
    assert math.isclose(blind["settings"]["label-aware"]["unit_cost"], blind["settings"]["network-aware"]["unit_cost"],
                        rel_tol=1e-7)
    # a smaller λ buys less balance for less cost than the default λ = 1
    la = {k: c["settings"]["label-aware"] for k, c in (("1", default), ("0.05", small))}
    assert la["0.05"]["imbalance"] > la["1"]["imbalance"] and la["0.05"]["unit_cost"] < la["1"]["unit_cost"]
    # free loads (solver "label-aware-free") are recorded in the cell, so a sweep never mixes them up
    free = run_cell(*args, loads="free")
    assert free["loads"] == "free" and "loads" not in default
    assert free["settings"]["label-aware"]["imbalance"] < free["settings"]["network-aware"]["imbalance"]
    # the target mix too; towards the pooled mix (what the cell's imbalance measures) the plan balances more
    pooled = run_cell(*args, target="collected")
    assert pooled["target"] == "collected" and "target" not in default
    assert pooled["settings"]["label-aware"]["imbalance"] < default["settings"]["label-aware"]["imbalance"]


def test_cli_quick(tmp_path: Path):
    from foglearn.cli import app

    res = CliRunner().invoke(app, ["reproduce", "noniid", "--quick", "--no-train", "--dataset", "tiny",
                                   "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "report.md").is_file()


def _run(tmp_path: Path, *extra: str):
    from foglearn.cli import app

    out = tmp_path / "run"
    args = ["run", "--devices", "4", "--slots", "6", "--period", "3", "--model", "mlp", "--dataset", "tiny",
            "--passes", "1", "--threads", "1", "--out", str(out), *extra]
    return CliRunner().invoke(app, args), out


def test_foglearn_run_trains_label_aware_under_non_iid_data(tmp_path: Path, monkeypatch):
    import json

    monkeypatch.setenv("FOGLEARN_DATA", str(tmp_path / "cache"))
    res, out = _run(tmp_path, "--partition", "dirichlet:0.1")
    assert res.exit_code == 0, res.output
    settings = {s["name"]: s for s in json.loads((out / "result.json").read_text())["settings"]}
    assert list(settings) == ["no-movement", "network-aware", "label-aware"]
    assert settings["label-aware"]["unit_cost"] < settings["no-movement"]["unit_cost"]


def test_foglearn_run_says_why_label_aware_is_not_trained(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("FOGLEARN_DATA", str(tmp_path / "cache"))
    res, _ = _run(tmp_path, "--partition", "classes:2", "--information", "3")
    assert res.exit_code == 0, res.output
    assert "label-aware: not trained" in res.output
