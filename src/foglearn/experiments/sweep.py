"""A researcher's own comparison: a grid of :class:`RunConfig` overrides × seeds, each run beside
its no-movement baseline.

A grid is a TOML file (``docs/sweep.md``)::

    seeds = 3                                  # or a list: [0, 4, 7]
    [grid]                                     # every combination of these values is run
    topology = ["full", "random"]
    information = ["perfect", 10]
    n = [10, 20]
    [fixed]                                    # the same for every run
    horizon = 50
    train = false

plus ``key=value`` overrides (a list value makes ``key`` a grid axis, a single value fixes it).
Keys are :class:`RunConfig`'s fields, or the short names of :data:`ALIASES` (``devices``/``n``,
``slots``/``T``, ``tau``, ``window``). Every run also gets its no-movement baseline (same scenario and seed,
``movement = False``, costs only), so each row carries the baseline's unit cost and the saving
``1 − unit / baseline_unit``. :func:`run_grid` runs everything through
:func:`~foglearn.experiments.runner.run_sweep` (process pool, resumable result store) and writes
``config.toml``, ``runs.csv`` (one row per run: the swept keys, seed, key, metrics),
``summary.csv`` (mean and std over seeds per grid point) and a plot per requested
``metric:key``.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import tomllib
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import tomli_w

from foglearn.experiments.config import SCHEMA, ConfigError, RunConfig
from foglearn.experiments.report import pct
from foglearn.experiments.runner import SweepOutcome, run_one, run_sweep
from foglearn.experiments.tables import (
    COST_FIELDS,
    aggregate,
    flatten,
    lean_summary,
    metric_names,
    write_csv,
)
from foglearn.io import atomic_write

#: Short names a grid may use for :class:`RunConfig` fields.
ALIASES: dict[str, str] = {
    "devices": "n_devices",  # the command-line vocabulary (--devices, --slots)
    "slots": "horizon",
    "n": "n_devices",  # the paper's symbols
    "T": "horizon",
    "tau": "period",
    "window": "information",
}
#: Fields a grid cannot set: the seed comes from ``seeds``, the digest from the traces themselves.
_NOT_KEYS = ("seed", "traces_digest")
#: The top-level entries of a grid file.
_TOP = ("seeds", "baseline", "grid", "fixed")
#: Columns added beside each run's metrics: its baseline's unit and total cost and the saving.
BASELINE_COLUMNS = ("baseline_unit", "baseline_total", "saving")
#: Metrics only a run that trains measures.
TRAINING_METRICS = ("accuracy", "test_loss", "step_rate")
#: Every metric of a row (:func:`~foglearn.experiments.tables.flatten`) and the baseline columns.
METRICS: tuple[str, ...] = (
    *COST_FIELDS,
    "processing_pt",
    "transfer_pt",
    "discard_pt",
    "slot_offload_min",
    "slot_offload_max",
    "slot_offload_mean",
    *TRAINING_METRICS,
    "seconds",
    "plan_seconds",
    *BASELINE_COLUMNS,
)


def keys() -> tuple[str, ...]:
    """The keys a grid may set: :class:`RunConfig`'s fields (not the seed) and the aliases."""
    return (*(f.name for f in dataclasses.fields(RunConfig) if f.name not in _NOT_KEYS), *ALIASES)


def canonical(key: str, where: str) -> str:
    """The :class:`RunConfig` field ``key`` names; a :class:`ConfigError` naming ``where`` and the
    known keys if it names none."""
    name = ALIASES.get(key, key)
    if name in _NOT_KEYS or name not in {f.name for f in dataclasses.fields(RunConfig)}:
        hint = " (seeds are set by `seeds` / --seeds)" if name == "seed" else ""
        raise ConfigError(f"{where}{key}: unknown key{hint}; known: {', '.join(keys())}")
    return name


def _check_type(name: str, value: Any, where: str) -> None:
    """The value's TOML type must fit the field (RunConfig checks the ranges)."""
    default = {f.name: f.default for f in dataclasses.fields(RunConfig)}[name]
    if name == "information":
        ok = value == "perfect" or (isinstance(value, int) and not isinstance(value, bool))
        rule = "'perfect' or a window length (an integer)"
    elif (
        name in ("error_decay_period",)
        or isinstance(default, int)
        and not isinstance(default, bool)
    ):
        ok = isinstance(value, int) and not isinstance(value, bool)
        rule = "an integer"
    elif isinstance(default, bool):
        ok, rule = isinstance(value, bool), "true or false"
    elif isinstance(default, float):
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        rule = "a number"
    else:
        ok, rule = isinstance(value, str), "a string"
    if not ok:
        raise ConfigError(f"{where}{name} = {value!r}: must be {rule}")


@dataclass(frozen=True)
class Grid:
    """A sweep: ``axes`` (field → values, every combination is run), ``fixed`` values, ``seeds``
    and whether each run gets its no-movement ``baseline``. Keys are :class:`RunConfig` fields."""

    axes: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)
    fixed: Mapping[str, Any] = field(default_factory=dict)
    seeds: tuple[int, ...] = (0,)
    baseline: bool = True

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any], where: str = "") -> Grid:
        """A grid from a parsed TOML document (``where`` prefixes error messages, e.g. a file)."""
        unknown = sorted(set(doc) - set(_TOP))
        if unknown:
            raise ConfigError(
                f"{where}{unknown[0]}: unknown entry; a grid file has {', '.join(_TOP)}"
            )
        for table in ("grid", "fixed"):
            if not isinstance(doc.get(table, {}), Mapping):
                raise ConfigError(f"{where}{table}: must be a table ([{table}])")
        axes: dict[str, tuple[Any, ...]] = {}
        for k, values in doc.get("grid", {}).items():
            name = canonical(k, f"{where}[grid] ")
            if not isinstance(values, list) or not values:
                raise ConfigError(
                    f"{where}[grid] {k} = {values!r}: must be a non-empty list of values"
                )
            for v in values:
                _check_type(name, v, f"{where}[grid] ")
            if name in axes:
                raise ConfigError(f"{where}[grid] {k}: {name} is already a [grid] key")
            axes[name] = tuple(values)
        fixed: dict[str, Any] = {}
        for k, v in doc.get("fixed", {}).items():
            name = canonical(k, f"{where}[fixed] ")
            _check_type(name, v, f"{where}[fixed] ")
            if name in axes:
                raise ConfigError(f"{where}[fixed] {k}: also a [grid] key; give it in one table")
            fixed[name] = v
        grid = cls(
            axes,
            fixed,
            parse_seeds(doc.get("seeds", 1), f"{where}seeds"),
            baseline=doc.get("baseline", True),
        )
        if not isinstance(grid.baseline, bool):
            raise ConfigError(f"{where}baseline = {grid.baseline!r}: must be true or false")
        return grid

    def as_dict(self) -> dict[str, Any]:
        return {
            "seeds": list(self.seeds),
            "baseline": self.baseline,
            "grid": {k: list(v) for k, v in self.axes.items()},
            "fixed": dict(self.fixed),
        }

    def override(self, items: Sequence[str]) -> Grid:
        """This grid with ``key=value`` overrides (Flower's ``--run-config`` style): the value is a
        TOML value (a bare word is a string); a list makes ``key`` an axis, anything else fixes it.
        ``seeds=N`` or ``seeds=[…]`` sets the seeds, ``baseline=false`` drops the baselines."""
        axes, fixed, seeds, baseline = dict(self.axes), dict(self.fixed), self.seeds, self.baseline
        for item in items:
            key, value = parse_override(item)
            if key == "seeds":
                seeds = parse_seeds(value, f"override {item!r}: seeds")
                continue
            if key == "baseline":
                if not isinstance(value, bool):
                    raise ConfigError(f"override {item!r}: baseline must be true or false")
                baseline = value
                continue
            where = f"override {item!r}: "
            name = canonical(key, where)
            axes.pop(name, None)
            fixed.pop(name, None)
            if isinstance(value, list):
                if not value:
                    raise ConfigError(f"{where}{key}: an axis needs at least one value")
                for v in value:
                    _check_type(name, v, where)
                axes[name] = tuple(value)
            else:
                _check_type(name, value, where)
                fixed[name] = value
        return Grid(axes, fixed, seeds, baseline)

    @property
    def varying(self) -> tuple[str, ...]:
        """The axes with more than one value (the columns of the result tables)."""
        return tuple(k for k, v in self.axes.items() if len(v) > 1)

    def points(self) -> list[dict[str, Any]]:
        """Every combination of the axes' values, in the order of the axes (first varies slowest)."""
        names = list(self.axes)
        return [dict(zip(names, combo)) for combo in itertools.product(*self.axes.values())]

    def configs(self) -> list[tuple[dict[str, Any], RunConfig]]:
        """``(grid point, RunConfig)`` for every point and seed. A run that does not train is
        :meth:`RunConfig.costs_only`, so its key (and stored result) does not depend on the training
        budget; the digest of replayed traces is computed from the files."""
        out = []
        for point in self.points():
            fields = {**self.fixed, **point}
            where = ", ".join(f"{k} = {v!r}" for k, v in point.items()) or "fixed values"
            if fields.get("traces_dir") is not None:
                from foglearn.experiments.paper.fig8 import traces_digest

                fields["traces_dir"] = str(Path(fields["traces_dir"]).resolve())
                fields["traces_digest"] = traces_digest(fields["traces_dir"])
            for seed in self.seeds:
                try:
                    cfg = RunConfig(**fields, seed=seed)
                except ConfigError as exc:
                    raise ConfigError(f"grid point ({where}): {exc}") from None
                if not cfg.train:
                    cfg = cfg.costs_only()
                out.append((point, cfg))
        return out


def parse_seeds(value: Any, where: str) -> tuple[int, ...]:
    """``N`` → seeds ``0 … N−1``; a list → those seeds (distinct integers ≥ 0)."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 1:
            raise ConfigError(f"{where} = {value}: need at least one seed")
        return tuple(range(value))
    if (
        isinstance(value, list)
        and value
        and all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in value)
    ):
        if len(set(value)) != len(value):
            raise ConfigError(f"{where} = {value}: seeds must be distinct")
        return tuple(value)
    raise ConfigError(f"{where} = {value!r}: must be a count ≥ 1 or a non-empty list of seeds ≥ 0")


def parse_override(item: str) -> tuple[str, Any]:
    """``key=value`` → ``(key, value)``; the value is read as TOML (``10``, ``0.5``, ``true``,
    ``["full", "random"]``, ``"perfect"``), a bare word as a string (``topology=random``)."""
    key, sep, text = item.partition("=")
    key, text = key.strip(), text.strip()
    if not sep or not key or not text:
        raise ConfigError(
            f'override {item!r}: must be key=value (e.g. n=20 or topology=["full","random"])'
        )
    try:
        return key, tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        if text[0] not in "[{\"'":  # a bare word or path: a string
            return key, text
        raise ConfigError(f"override {item!r}: {text!r} is not a TOML value") from None


def load_grid(path: str | Path | None, overrides: Sequence[str] = ()) -> Grid:
    """The grid of a TOML file (or an empty grid for ``None``), with ``overrides`` applied."""
    if path is None:
        return Grid().override(overrides)
    path = Path(path)
    try:
        with path.open("rb") as fh:
            doc = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such grid file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not TOML ({exc})") from None
    return Grid.from_dict(doc, f"{path}: ").override(overrides)


def baseline_of(cfg: RunConfig) -> RunConfig:
    """The no-movement baseline of a run: the same scenario and seed, every point processed
    where it was collected (Table III's setting A), costs only."""
    return cfg.replace(method="network-aware", movement=False, information="perfect", partition="iid",
                       solver="auto").costs_only()


@dataclass
class SweepResult:
    """What :func:`run_grid` wrote: one row per run, the summary per grid point, the plots."""

    rows: list[dict[str, Any]]
    summary: list[dict[str, Any]]
    plots: list[Path]
    outcome: SweepOutcome
    columns: tuple[str, ...]
    warnings: list[str] = field(default_factory=list)


#: A window of estimated information longer than this share of the horizon is warned about.
LONG_WINDOW = 0.25


def window_warnings(configs: Sequence[RunConfig]) -> list[str]:
    """Settings that quietly mean something else: the first window of estimated information
    cannot move data (docs/model.md §4), so a window longer than :data:`LONG_WINDOW` of the
    horizon leaves most of it unplanned (the paper: W = 10 of T = 100 slots). One message per
    ``(window, horizon)``."""
    seen = set()
    out = []
    for c in configs:
        w = c.information
        if not (c.movement and isinstance(w, int) and w > LONG_WINDOW * c.horizon):
            continue
        if (w, c.horizon) not in seen:
            seen.add((w, c.horizon))
            out.append(
                f"information = {w} with horizon = {c.horizon}: the first window, which moves no "
                f"data, is {pct(min(w, c.horizon) / c.horizon, 0)} of the horizon (the paper: W = 10 "
                "of T = 100), so estimated information moves little; scale the window with T"
            )
    return out


def run_grid(
    grid: Grid,
    out: str | Path,
    jobs: int = 1,
    progress: bool = True,
    plots: Sequence[str] = (),
    runner: Callable[[RunConfig], dict[str, Any]] = run_one,
    executor: str = "local",
) -> SweepResult:
    """Run ``grid`` into the folder ``out`` and write its tables and plots.

    ``executor`` ``"ray"``/``"ray:ADDRESS"`` runs the runs as Ray tasks (:func:`run_sweep`).

    ``plots`` are ``metric:key`` requests (``unit:n``) checked before anything runs. Finished
    runs (``out/results/<key>.json``) are reused, so rerunning after Ctrl-C resumes. Raises
    :class:`~foglearn.experiments.core.Interrupted` on Ctrl-C and
    :class:`~foglearn.experiments.runner.RunFailed` if a run failed.
    """
    from foglearn.experiments.core import Interrupted

    out = Path(out)
    runs = grid.configs()
    requests = [parse_plot(p, grid, trains=any(c.train for _, c in runs)) for p in plots]
    base = [baseline_of(c) for _, c in runs] if grid.baseline else []
    notes = window_warnings([c for _, c in runs])
    for note in notes:
        warnings.warn(note, RuntimeWarning, stacklevel=2)
    out.mkdir(parents=True, exist_ok=True)
    write_grid_toml(out / "config.toml", grid, [c for _, c in runs], base)
    configs = [c for _, c in runs] + base
    outcome = run_sweep(
        configs, out, jobs=jobs, progress=progress, description="sweep", runner=runner, executor=executor
    )
    if outcome.interrupted:
        raise Interrupted("sweep", outcome)
    records = outcome.records
    varying = grid.varying
    rows = []
    for i, (point, cfg) in enumerate(runs):
        rec = records[i]
        assert rec is not None
        flat = flatten(rec)
        row: dict[str, Any] = {k: point[k] for k in varying}
        row.update(seed=cfg.seed, key=cfg.key())
        row.update({m: flat[m] for m in metric_names([flat])})
        if grid.baseline:
            b = records[len(runs) + i]
            assert b is not None
            bu, bt = float(b["costs"]["unit"]), float(b["costs"]["total"])
            row.update(
                baseline_unit=bu,
                baseline_total=bt,
                saving=1 - flat["unit"] / bu if bu > 0 else float("nan"),
            )
        rows.append(row)
    metrics = [m for m in metric_names(rows) if any(math.isfinite(float(r[m])) for r in rows)]
    columns = (*varying, "seed", "key", *metrics)
    rows = [{k: r[k] for k in columns} for r in rows]
    write_csv(out / "runs.csv", rows)
    agg = aggregate(rows, list(varying), metrics)
    summary = lean_summary(agg, varying)
    write_csv(out / "summary.csv", summary)
    paths = [plot_metric(out / f"{m}_vs_{k}.png", summary, m, k, varying) for m, k in requests]
    return SweepResult(rows, summary, paths, outcome, columns, notes)


def parse_plot(spec: str, grid: Grid, trains: bool = True) -> tuple[str, str]:
    """``metric:key`` → ``(metric, field)``: a metric of :data:`METRICS` (one of
    :data:`TRAINING_METRICS` only if some run ``trains``) against a grid key with several values."""
    metric, sep, key = spec.partition(":")
    if not sep or not metric or not key:
        raise ConfigError(f"--plot {spec!r}: must be METRIC:KEY (e.g. unit:n)")
    known = [
        m
        for m in METRICS
        if (trains or m not in TRAINING_METRICS) and (grid.baseline or m not in BASELINE_COLUMNS)
    ]
    if metric not in known:
        raise ConfigError(
            f"--plot {spec!r}: {metric} is not a metric of this sweep; known: {', '.join(known)}"
        )
    name = canonical(key, f"--plot {spec!r}: ")
    if name not in grid.varying:
        raise ConfigError(
            f"--plot {spec!r}: {key} is not a [grid] key with several values; those are: "
            f"{', '.join(grid.varying) or '(none)'}"
        )
    return metric, name


def plot_metric(
    path: Path, summary: Sequence[dict[str, Any]], metric: str, key: str, varying: Sequence[str]
) -> Path:
    """``metric`` (mean ± std over seeds) against the grid key ``key``: one line per combination
    of the other varying keys. Numeric keys get a numeric axis, others one tick per value."""
    from foglearn.experiments.plots import _plt, _save

    plt = _plt()
    others = [k for k in varying if k != key]
    xs_all = list(dict.fromkeys(r.get(key) for r in summary))
    numeric = all(isinstance(x, int | float) and not isinstance(x, bool) for x in xs_all)
    if numeric:
        xs_all.sort()
    fig, ax = plt.subplots(figsize=(6.0, 3.8))
    lines: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for r in summary:
        lines.setdefault(tuple(r.get(k) for k in others), []).append(r)
    for label, members in lines.items():
        members = sorted(members, key=lambda r: xs_all.index(r.get(key)))
        x = [m.get(key) if numeric else xs_all.index(m.get(key)) for m in members]
        y = np.array([m.get(metric, np.nan) for m in members], dtype=float)
        e = np.array([m.get(f"{metric}_std", 0.0) for m in members], dtype=float)
        name = ", ".join(f"{k} = {v}" for k, v in zip(others, label)) or None
        ax.errorbar(x, y, yerr=e, marker="o", capsize=3, label=name)
    if not numeric:
        ax.set_xticks(range(len(xs_all)), [str(x) for x in xs_all])
    ax.set_xlabel(key)
    ax.set_ylabel(f"{metric} (mean ± std over seeds)")
    if others:
        ax.legend(fontsize=8)
    return _save(fig, path)


def write_grid_toml(
    path: Path, grid: Grid, runs: Sequence[RunConfig], baselines: Sequence[RunConfig]
) -> Path:
    """``config.toml`` of a sweep: the grid as given (after overrides) and every run and baseline
    with its key (TOML has no null: ``None`` fields are left out)."""

    def entry(c: RunConfig) -> dict[str, Any]:
        return {"key": c.key(), **{k: v for k, v in c.as_dict().items() if v is not None}}

    doc = {
        "experiment": "sweep",
        "schema": SCHEMA,
        "sweep": grid.as_dict(),
        "runs": [entry(c) for c in runs],
    }
    if baselines:
        doc["baselines"] = [entry(c) for c in dict.fromkeys(baselines)]
    return atomic_write(path, tomli_w.dumps(doc))
