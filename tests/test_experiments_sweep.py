"""`foglearn sweep`'s library side: grids, overrides, baselines, lean tables, resume, plots."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest

from foglearn.experiments import ConfigError, RunConfig
from foglearn.experiments.sweep import (
    Grid,
    baseline_of,
    load_grid,
    parse_override,
    run_grid,
    window_warnings,
)

GRID = """\
seeds = 2
[grid]
topology = ["full", "random"]
information = ["perfect", 3]
[fixed]
n = 4
T = 6
dataset = "tiny"
train = false
"""


def grid_file(tmp_path: Path, text: str = GRID) -> Path:
    path = tmp_path / "grid.toml"
    path.write_text(text)
    return path


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open() as fh:
        return list(csv.DictReader(fh))


def test_two_by_two_grid_two_seeds(tmp_path: Path) -> None:
    grid = load_grid(grid_file(tmp_path))
    res = run_grid(
        grid, tmp_path / "out", progress=False, plots=["unit:information", "saving:topology"]
    )
    out = tmp_path / "out"
    rows = read_rows(out / "runs.csv")
    assert len(rows) == 8 == len(res.rows)
    # 8 runs + one baseline per (topology, seed) scenario; information is irrelevant to no movement
    assert len(res.outcome.computed) == 8 + 4
    assert list(rows[0])[:4] == ["topology", "information", "seed", "key"]
    for constant in ("dataset", "horizon", "n_devices", "train", "error"):
        assert constant not in rows[0]
    assert "accuracy" not in rows[0]  # nothing trained: no empty accuracy column
    for r in rows:
        unit, base = float(r["unit"]), float(r["baseline_unit"])
        assert float(r["saving"]) == pytest.approx(1 - unit / base)
        assert base > 0
    # the same scenario and seed: the baseline does not depend on the planning options
    by = {
        (r["topology"], r["seed"]): r["baseline_unit"]
        for r in rows
        if r["information"] == "perfect"
    }
    assert all(by[(r["topology"], r["seed"])] == r["baseline_unit"] for r in rows)
    summary = read_rows(out / "summary.csv")
    assert len(summary) == 4 and all(s["runs"] == "2" for s in summary)
    assert "seed" not in summary[0] and "unit_std" in summary[0] and "unit_min" not in summary[0]
    mean = (
        sum(float(r["unit"]) for r in rows if r["topology"] == "full" and r["information"] == "3")
        / 2
    )
    s = next(s for s in summary if s["topology"] == "full" and s["information"] == "3")
    assert float(s["unit"]) == pytest.approx(mean)
    for name in ("unit_vs_information.png", "saving_vs_topology.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    toml = (out / "config.toml").read_text()
    assert (
        "[sweep.grid]" in toml and toml.count("[[runs]]") == 8 and toml.count("[[baselines]]") == 4
    )


def test_resume_skips_finished_runs(tmp_path: Path) -> None:
    grid = load_grid(grid_file(tmp_path))
    out = tmp_path / "out"
    first = run_grid(grid, out, progress=False)
    assert len(first.outcome.computed) == 12
    again = run_grid(grid, out, progress=False)
    assert again.outcome.computed == [] and len(again.outcome.skipped) == 12
    victim = out / "results" / f"{first.rows[3]['key']}.json"
    victim.unlink()
    third = run_grid(grid, out, progress=False)
    assert third.outcome.computed == [first.rows[3]["key"]]
    # one more seed: only its runs and baselines are computed
    more = run_grid(grid.override(["seeds=3"]), out, progress=False)
    assert len(more.outcome.computed) == 4 + 2 and len(more.rows) == 12


def test_overrides_parse() -> None:
    assert parse_override("n=20") == ("n", 20)
    assert parse_override("rho=0.5") == ("rho", 0.5)
    assert parse_override("train=false") == ("train", False)
    assert parse_override("topology=scale-free") == ("topology", "scale-free")
    assert parse_override("traces_dir=/data/traces") == ("traces_dir", "/data/traces")
    assert parse_override('information="perfect"') == ("information", "perfect")
    assert parse_override('topology=["full","random"]') == ("topology", ["full", "random"])
    g = Grid(axes={"n_devices": (10, 20)}, fixed={"horizon": 50}).override(
        ["n=30", "T=[10,20]", "window=[5]", "seeds=[3,4]", "baseline=false"]
    )
    assert g.fixed == {"n_devices": 30}
    assert g.axes == {"horizon": (10, 20), "information": (5,)}
    assert g.seeds == (3, 4) and not g.baseline
    assert g.varying == ("horizon",)
    cfgs = [c for _, c in g.configs()]
    assert len(cfgs) == 4 and {c.n_devices for c in cfgs} == {30}
    assert {(c.horizon, c.seed) for c in cfgs} == {(10, 3), (10, 4), (20, 3), (20, 4)}


@pytest.mark.parametrize(
    "text, words",
    [
        ("[grid]\ntopolgy = ['full']\n", ["topolgy", "unknown key", "topology", "n_devices"]),
        ("[fixed]\nseed = 3\n", ["seed", "seeds"]),
        ("[grid]\nn = 10\n", ["n = 10", "list"]),
        ("[fixed]\nn = 'ten'\n", ["n_devices = 'ten'", "integer"]),
        (
            "[grid]\ntopology = ['full', 'ring']\n",
            ["topology = 'ring'", "unknown topology", "full"],
        ),
        ("[grid]\ninformation = [0]\n", ["information", "window length"]),
        ("[fixed]\nn = 4\n[grid]\nn = [5]\n", ["n", "one table"]),
        ("[grid]\nn = [4]\nn_devices = [5]\n", ["n_devices", "already a [grid] key"]),
        ("seeds = 0\n", ["seeds", "at least one"]),
        ("[sweeps]\n", ["sweeps", "unknown entry"]),
    ],
)
def test_bad_grid_names_the_key(tmp_path: Path, text: str, words: list[str]) -> None:
    path = grid_file(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_grid(path).configs()
    for w in words:
        assert w in str(err.value), (w, str(err.value))


def test_bad_override_and_plot(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="colour: unknown key; known: .*topology"):
        load_grid(None, ["colour=red"])
    with pytest.raises(ConfigError, match="key=value"):
        parse_override("n")
    grid = load_grid(grid_file(tmp_path))
    with pytest.raises(ConfigError, match="speed is not a metric.*unit"):
        run_grid(grid, tmp_path / "x", progress=False, plots=["speed:topology"])
    with pytest.raises(ConfigError, match="accuracy is not a metric"):  # nothing trains
        run_grid(grid, tmp_path / "x", progress=False, plots=["accuracy:topology"])
    with pytest.raises(ConfigError, match="n is not a \\[grid\\] key.*topology, information"):
        run_grid(grid, tmp_path / "x", progress=False, plots=["unit:n"])
    assert not (tmp_path / "x").exists()  # checked before anything runs


def test_baseline_is_the_same_scenario_without_movement() -> None:
    cfg = RunConfig(
        n_devices=4,
        horizon=6,
        topology="random",
        information=3,
        capacities=True,
        seed=5,
        method="federated",
        passes=2,
    )
    b = baseline_of(cfg)
    assert (b.movement, b.method, b.information, b.train) == (
        False,
        "network-aware",
        "perfect",
        False,
    )
    assert (b.topology, b.capacities, b.seed, b.n_devices, b.horizon) == ("random", True, 5, 4, 6)


def test_long_window_warns(tmp_path: Path) -> None:
    assert window_warnings([RunConfig(horizon=20, information=5)]) == []
    assert window_warnings([RunConfig(horizon=20, information=15, movement=False)]) == []
    (msg,) = window_warnings(
        [RunConfig(horizon=20, information=10), RunConfig(horizon=20, information=10, seed=1)]
    )
    assert "information = 10 with horizon = 20" in msg and "50 % of the horizon" in msg
    grid = load_grid(grid_file(tmp_path), ["information=[4]", "topology=full", "seeds=1"])
    with pytest.warns(RuntimeWarning, match="information = 4 with horizon = 6"):
        res = run_grid(grid, tmp_path / "out", progress=False)
    assert res.warnings and math.isfinite(res.rows[0]["unit"])


def test_a_paper_experiment_is_a_fixed_grid() -> None:
    """Fig. 8 as a sweep: the same runs (keys), so the two share stored results."""
    from foglearn.experiments import EXPERIMENTS, ExperimentOptions

    opts = ExperimentOptions(seeds=(0, 1), dataset="tiny", model="mlp", quick=True, quick_horizon=10)
    entry = EXPERIMENTS.get_entry("fig8")
    paper = {c.key() for _, c in entry.obj.configs(opts, **entry.params)}
    grid = load_grid(
        None,
        ['profile=["lte","wifi"]', 'topology=["social","hierarchical","full"]', "T=10",
         "dataset=tiny", "model=mlp", "train=false", "seeds=2"],
    )
    assert {c.key() for _, c in grid.configs()} == paper


def test_grid_keys_speak_the_command_line_vocabulary() -> None:
    """`devices`/`slots` (the CLI's --devices/--slots) and `n`/`T` (the paper's symbols) name the same fields."""
    from foglearn.experiments.sweep import load_grid

    cli = load_grid(None, ["devices=[5,6]", "slots=10", "train=false"])
    paper = load_grid(None, ["n=[5,6]", "T=10", "train=false"])
    assert cli == paper
    assert cli.axes == {"n_devices": (5, 6)} and cli.fixed["horizon"] == 10
