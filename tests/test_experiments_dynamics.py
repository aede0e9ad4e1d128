"""`foglearn reproduce dynamics`: devices leave and join (docs/dynamics.md) — outputs, counts, direction."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest

from foglearn.experiments import ExperimentOptions, run_experiment
from foglearn.experiments.config import ConfigError, RunConfig
from foglearn.experiments.runner import build_scenario, churn_schedule, run_one


def quick(tmp_path: Path, **kw: object) -> ExperimentOptions:
    base = dict(seeds=(0, 1), dataset="tiny", model="mlp", quick=True, jobs=1, train=False, progress=False,
                out=str(tmp_path))
    base.update(kw)
    return ExperimentOptions(**base)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, str]]]:
    out = tmp_path_factory.mktemp("dynamics")
    run_experiment("dynamics", quick(out))
    with (out / "summary.csv").open() as fh:
        return out, list(csv.DictReader(fh))


def test_quick_run_writes_report_and_plot(quick_run: tuple[Path, list[dict[str, str]]]) -> None:
    out, rows = quick_run
    assert (out / "dynamics.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = (out / "report.md").read_text()
    assert "](dynamics.png)" in report and "With handover no point is lost: holds" in report
    assert [r["setting"] for r in rows] == ["no churn", "10% lost", "10% handover", "30% lost", "30% handover",
                                            "50% lost", "50% handover"]


def test_lost_points_only_without_handover(quick_run: tuple[Path, list[dict[str, str]]]) -> None:
    rows = {r["setting"]: r for r in quick_run[1]}
    assert float(rows["no churn"]["lost"]) == 0 and float(rows["no churn"]["absent"]) == 0
    for f in ("10%", "30%", "50%"):
        lost, hand = rows[f"{f} lost"], rows[f"{f} handover"]
        assert float(hand["lost"]) == 0
        # the same devices leave at the same slots: what one fate loses the other hands over
        assert float(lost["lost"]) == float(hand["handed_over"]) > 0
        assert float(hand["collected"]) == float(lost["collected"]) + float(lost["lost"])


def test_churn_moves_counts_and_cost_in_the_documented_direction(
        quick_run: tuple[Path, list[dict[str, str]]]) -> None:
    rows = {r["setting"]: r for r in quick_run[1]}
    order = ["no churn", "10% lost", "30% lost", "50% lost"]
    absent = [float(rows[s]["absent"]) for s in order]
    collected = [float(rows[s]["collected"]) for s in order]
    assert absent == sorted(absent) and collected == sorted(collected, reverse=True)
    # fewer devices to process and to offload to: dearer per point, less offloading (docs/dynamics.md)
    assert float(rows["50% lost"]["unit"]) > float(rows["no churn"]["unit"])
    assert float(rows["50% lost"]["offload_rate"]) < float(rows["no churn"]["offload_rate"])


def test_churned_run_records_conserve_points() -> None:
    cfg = RunConfig(horizon=20, train=False, dataset="tiny", churn=0.3, handover=False, seed=3)
    rec = run_one(cfg)
    c = rec["churn"]
    plain = build_scenario(cfg.replace(churn=0.0), dataset_size=None)
    assert len(c["leave"]) == len(c["join"]) == 3 and not set(c["leave"]) & set(c["join"])
    assert rec["costs"]["collected"] + c["lost"] + c["absent"] == run_one(cfg.replace(churn=0.0))["costs"]["collected"]
    assert plain.info.get("churn") is None and "churn" not in run_one(cfg.replace(churn=0.0))


def test_schedule_is_the_same_for_both_fates_and_slots_inside_the_horizon() -> None:
    leave, join = churn_schedule(10, 20, 0.5, seed=4)
    assert len(leave) == len(join) == 5 and not set(leave) & set(join)
    assert all(1 <= s <= 19 for s in (*leave.values(), *join.values()))
    assert churn_schedule(10, 20, 0.5, seed=4) == (leave, join)


def test_default_churn_leaves_run_keys_unchanged() -> None:
    cfg = RunConfig()
    assert cfg.key() == cfg.replace(churn=0.0, handover=False).key()
    assert cfg.replace(churn=0.1).key() != cfg.key()
    assert cfg.replace(churn=0.1, handover=True).key() != cfg.replace(churn=0.1).key()


@pytest.mark.parametrize(("field", "value", "rule"), [
    ("churn", 0.7, "must lie in [0, 0.5]"), ("churn", -0.1, "must lie in [0, 0.5]"),
    ("churn", True, "must lie in [0, 0.5]"), ("handover", "yes", "must be True or False")])
def test_invalid_churn_settings_name_the_field(field: str, value: object, rule: str) -> None:
    with pytest.raises(ConfigError, match=rf"RunConfig\.{field} = .*{re.escape(rule)}"):
        RunConfig(**{field: value})  # type: ignore[arg-type]


def test_churn_needs_two_slots() -> None:
    with pytest.raises(ConfigError, match=r"RunConfig\.churn = 0\.1: .*horizon of ≥ 2"):
        RunConfig(horizon=1, churn=0.1)


def test_trained_quick_run_reports_accuracy(tmp_path: Path) -> None:
    (section,) = run_experiment("dynamics", quick(tmp_path, seeds=(0,), quick_horizon=6, train=True))
    assert any("accuracy" in c.claim.lower() for c in section.checks)
    with (tmp_path / "summary.csv").open() as fh:
        assert all(0.0 <= float(r["accuracy"]) <= 1.0 for r in csv.DictReader(fh))
