"""Run a named experiment end to end: sweep, tables, plots, report."""

from __future__ import annotations

import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import foglearn.experiments.paper  # noqa: F401 - registers the paper's experiments
from foglearn.experiments.config import (
    ConfigError,
    ExperimentOptions,
    RunConfig,
    SweepSpec,
    write_config_toml,
)
from foglearn.experiments.definitions import EXPERIMENTS, Results, names
from foglearn.experiments.report import TEXT, Section, render
from foglearn.experiments.runner import SweepOutcome, run_one, run_sweep
from foglearn.experiments.tables import flatten, lean_rows, write_csv
from foglearn.io import atomic_write


class Interrupted(KeyboardInterrupt):
    """A sweep was interrupted (Ctrl-C); finished runs are on disk. ``outcome`` says how far it got."""

    def __init__(self, name: str, outcome: SweepOutcome) -> None:
        done = sum(r is not None for r in outcome.records)
        super().__init__(f"{name}: interrupted with {done} of {len(outcome.records)} runs finished "
                         "(rerun the same command to resume)")
        self.outcome = outcome


def run_experiment(name: str, options: ExperimentOptions, out: str | Path | None = None,
                   store: str | Path | None = None,
                   runner: Callable[[RunConfig], dict[str, Any]] = run_one) -> list[Section]:
    """Run experiment ``name`` (a key of :data:`EXPERIMENTS`, or ``all``) and write its run directory.

    ``out`` (default ``options.out``) receives ``config.toml`` (the options as they ran, e.g. the
    seeds and horizon of quick mode, beside the options as requested), ``results/<key>.json``
    (one per run, unless ``store`` names another folder holding ``results/``), ``runs.csv`` (one
    row per run: its setting, seed, key, the configuration fields that vary and the metrics),
    ``summary.csv`` (mean and std over seeds of the metrics), PNG plots and ``report.md``.
    ``all`` runs every experiment into ``out/<name>/`` sharing one result store ``out/results``
    (runs common to two experiments are computed once) and writes ``out/report.md``.
    Raises :class:`Interrupted` on Ctrl-C, after keeping the finished runs, and
    :class:`ConfigError` for an unknown name (listing the known ones).
    """
    out = Path(out if out is not None else options.out)
    if name == "all":
        done: dict[str, Section] = {}
        t0 = time.perf_counter()
        # cost-heavy sweeps first, Table II (the most expensive training) last; report in paper order
        for sub in sorted(EXPERIMENTS, key=lambda k: k == "table2"):
            done[sub] = run_experiment(sub, options, out / sub, store=store or out, runner=runner)[0]
        sections = [done[k] for k in EXPERIMENTS]
        write_report(out / "report.md", sections, options, time.perf_counter() - t0, image_dirs=True)
        return sections
    if name not in EXPERIMENTS:
        raise ConfigError(f"experiment = {name!r}: unknown experiment; known: {', '.join(names())}")
    entry = EXPERIMENTS.get_entry(name)
    grid = entry.obj.configs(options, **entry.params)
    configs = [c for _, c in grid]
    out.mkdir(parents=True, exist_ok=True)
    write_config_toml(out / "config.toml", SweepSpec(name, options.as_run(configs), tuple(configs), options))
    t0 = time.perf_counter()
    outcome = run_sweep(configs, store or out, jobs=options.jobs, progress=options.progress,
                        description=name, runner=runner, executor=options.executor)
    seconds = time.perf_counter() - t0
    if outcome.interrupted:
        raise Interrupted(name, outcome)
    records = [r for r in outcome.records if r is not None]
    rows = []
    for (label, _), rec in zip(grid, outcome.records):
        assert rec is not None
        rows.append({"setting": label, **flatten(rec)})
    write_csv(out / "runs.csv", lean_rows(rows, keep=("setting", "seed", "key")))
    section = entry.obj.section(name, Results(records, rows, options, out, entry.params))
    section.differences += [render(TEXT["not_reproduced"], claim=c.claim.rstrip("."), evidence=c.evidence)
                            for c in section.checks if not c.holds]
    section.seconds = seconds
    section.runs = len(set(c.key() for c in configs))
    section.computed = len(outcome.computed)
    section.run_seconds = sum(float(r.get("seconds", {}).get("total", 0.0)) for r in
                              {r["key"]: r for r in records}.values())
    write_report(out / "report.md", [section], options, seconds)
    return [section]


def options_note(options: ExperimentOptions) -> str:
    """The report's sentence on the options, the machine and the Python version."""
    mode = render(TEXT["options_quick" if options.quick else "options_full"], quick_seeds=options.quick_seeds,
                  horizon=options.run_horizon, n=options.n_devices)
    if options.run_horizon < options.horizon:
        tau = RunConfig.period
        mode += render(TEXT["options_window"], full=options.window or tau, horizon=options.horizon,
                       window=options.run_window(tau))
    return render(TEXT["options"], mode=mode, seeds=list(options.run_seeds), dataset=options.dataset,
                  model=options.model, training="on" if options.train else "off", jobs=options.jobs,
                  machine=platform.machine(), python=platform.python_version())


def write_report(path: Path, sections: list[Section], options: ExperimentOptions, seconds: float,
                 image_dirs: bool = False) -> Path:
    """A Markdown report: options, then each section (tables beside the paper's, plots, checks)."""
    lines = [TEXT["title"], "", options_note(options), "", render(TEXT["wall_time"], seconds=seconds), ""]
    for s in sections:
        lines.append(s.markdown(image_prefix=f"{s.name}/" if image_dirs else ""))
    checks = [c for s in sections for c in s.checks]
    if checks:
        held = sum(c.holds for c in checks)
        lines += [TEXT["summary_title"], "", render(TEXT["summary"], held=held, total=len(checks)), ""]
    return atomic_write(path, "\n".join(lines))


def export_docs(run_dir: str | Path, markdown: str | Path, command: str | None = None,
                preface: str | None = None) -> Path:
    """Copy a run directory's ``report.md`` to ``markdown`` and its plots to ``<markdown stem>/``.

    Image links are rewritten to the copied PNGs; raw results stay in the run directory. With
    ``command`` the report starts by saying how it was produced; ``preface`` (Markdown) follows.
    """
    import re
    import shutil

    run_dir, markdown = Path(run_dir), Path(markdown)
    text = (run_dir / "report.md").read_text(encoding="utf-8")
    images = markdown.parent / markdown.stem
    images.mkdir(parents=True, exist_ok=True)

    def relink(m: re.Match[str]) -> str:
        src = run_dir / m.group(2)
        dest = images / src.name
        shutil.copyfile(src, dest)
        return f"![{m.group(1)}]({images.name}/{src.name})"

    text = re.sub(r"!\[([^\]]*)\]\(([^)]+\.png)\)", relink, text)
    if command or preface:
        head, _, rest = text.partition("\n\n")
        intro = render(TEXT["produced_by"], command=command, run_dir=run_dir) + "\n\n" if command else ""
        text = f"{head}\n\n{intro}{preface.strip() + chr(10) * 2 if preface else ''}{rest}"
    return atomic_write(markdown, text)
