"""Run a named experiment end to end: sweep, tables, plots, report."""

from __future__ import annotations

import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from foglearn.experiments.config import ExperimentOptions, RunConfig, SweepSpec, write_config_toml
from foglearn.experiments.definitions import EXPERIMENTS, NAMES
from foglearn.experiments.report import Section
from foglearn.experiments.runner import SweepOutcome, run_one, run_sweep
from foglearn.experiments.tables import flatten, write_csv
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
    """Run experiment ``name`` (one of :data:`NAMES`) and write its run directory.

    ``out`` (default ``options.out``) receives ``config.toml``, ``results/<key>.json`` (one per
    run, unless ``store`` names another folder holding ``results/``), ``runs.csv`` (one row per
    run), ``summary.csv`` (mean, std, min, max over seeds), PNG plots and ``report.md``.
    ``all`` runs every experiment into ``out/<name>/`` sharing one result store ``out/results``
    (runs common to two experiments are computed once) and writes ``out/report.md``.
    Raises :class:`Interrupted` on Ctrl-C, after keeping the finished runs.
    """
    out = Path(out if out is not None else options.out)
    if name == "all":
        done: dict[str, Section] = {}
        t0 = time.perf_counter()
        # cost-heavy sweeps first, Table II (the most expensive training) last; report in paper order
        for sub in [*(k for k in EXPERIMENTS if k != "table2"), "table2"]:
            done[sub] = run_experiment(sub, options, out / sub, store=store or out, runner=runner)[0]
        sections = [done[k] for k in EXPERIMENTS]
        write_report(out / "report.md", sections, options, time.perf_counter() - t0, image_dirs=True)
        return sections
    if name not in EXPERIMENTS:
        raise ValueError(f"experiment = {name!r}: must be one of {NAMES}")
    exp = EXPERIMENTS[name]
    grid = exp.configs(options)
    configs = [c for _, c in grid]
    out.mkdir(parents=True, exist_ok=True)
    write_config_toml(out / "config.toml", SweepSpec(name, options, tuple(configs)))
    t0 = time.perf_counter()
    outcome = run_sweep(configs, store or out, jobs=options.jobs, progress=options.progress,
                        description=name, runner=runner)
    seconds = time.perf_counter() - t0
    if outcome.interrupted:
        raise Interrupted(name, outcome)
    records = [r for r in outcome.records if r is not None]
    rows = []
    for (label, _), rec in zip(grid, outcome.records):
        assert rec is not None
        rows.append({"setting": label, **flatten(rec)})
    write_csv(out / "runs.csv", rows)
    section = exp.summarise(records, rows, options, out)
    for c in section.checks:
        if not c.holds:
            section.differences.append(f"Not reproduced: {c.claim.rstrip('.')} — {c.evidence}.")
    section.seconds = seconds
    section.runs = len(set(c.key() for c in configs))
    section.computed = len(outcome.computed)
    section.run_seconds = sum(float(r.get("seconds", {}).get("total", 0.0)) for r in
                              {r["key"]: r for r in records}.values())
    write_report(out / "report.md", [section], options, seconds)
    return [section]


def options_note(options: ExperimentOptions) -> str:
    mode = (f"quick mode (first {options.quick_seeds} seeds, horizon T = {options.run_horizon})"
            if options.quick else f"full mode (T = {options.run_horizon})")
    return (f"Configuration: {mode}; seeds {list(options.run_seeds)}; dataset {options.dataset}; "
            f"model {options.model} (Table II trains both); training {'on' if options.train else 'off'}; "
            f"{options.jobs} worker process(es) with one torch thread each; machine: {platform.machine()}, "
            f"Python {platform.python_version()}.")


def write_report(path: Path, sections: list[Section], options: ExperimentOptions, seconds: float,
                 image_dirs: bool = False) -> Path:
    """A Markdown report: options, then each section (tables beside the paper's, plots, checks)."""
    lines = ["# foglearn reproduction of Tu et al. (INFOCOM 2020), Section V", "", options_note(options), "",
             f"Wall time of this invocation: {seconds:.0f} s.", ""]
    for s in sections:
        lines.append(s.markdown(image_prefix=f"{s.name}/" if image_dirs else ""))
    checks = [c for s in sections for c in s.checks]
    if checks:
        held = sum(c.holds for c in checks)
        lines += ["## Summary of checked claims", "", f"{held} of {len(checks)} claims hold on our numbers.", ""]
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
        intro = f"Produced by `{command}` (raw runs in `{run_dir}`, git-ignored).\n\n" if command else ""
        text = f"{head}\n\n{intro}{preface.strip() + chr(10) * 2 if preface else ''}{rest}"
    return atomic_write(markdown, text)
