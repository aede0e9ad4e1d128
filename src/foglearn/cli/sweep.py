"""``foglearn sweep GRID.toml [KEY=VALUE ...]``: a researcher's own comparison (docs/sweep.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from foglearn.cli.common import JsonFlag, console, emit_json, err_console, fail, json_mode
from foglearn.cli.scenario_options import Capacities, Devices, Profile, Rho, ScenarioOptions, Slots, Topology, Traces
from foglearn.cli.tracking import Log, require_tensorboard, write_tensorboard


def sweep_command(
    args: Annotated[
        list[str] | None,
        typer.Argument(
            help="A grid file (TOML with [grid] and [fixed] tables) and/or key=value overrides: "
            "a list value sweeps the key (n=[10,20]), a single value fixes it (train=false).",
            show_default=False,
        ),
    ] = None,
    out: Annotated[
        Path,
        typer.Option(
            "--out", help="Run directory (results/, config.toml, runs.csv, summary.csv, plots)."
        ),
    ] = Path("runs/sweep"),
    jobs: Annotated[
        int, typer.Option("--jobs", "-j", help="Worker processes (1 = in this process).")
    ] = 2,
    executor: Annotated[
        str,
        typer.Option("--executor", help="local (--jobs processes) | ray (a Ray cluster of --jobs CPUs started "
                     "here) | ray:ADDRESS (an existing cluster): where the runs execute; same resume rules."),
    ] = "local",
    seeds: Annotated[
        int | None,
        typer.Option("--seeds", help="Seeds 0 … N−1 (default: the grid file's `seeds`, else 1)."),
    ] = None,
    plot: Annotated[
        list[str] | None,
        typer.Option(
            "--plot",
            help="METRIC:KEY, e.g. unit:n or saving:"
            "topology (repeatable): a PNG of the metric "
            "against a grid key.",
        ),
    ] = None,
    no_baseline: Annotated[
        bool,
        typer.Option(
            "--no-baseline",
            help="Skip the no-movement baseline runs (no baseline_unit / saving columns).",
        ),
    ] = False,
    no_progress: Annotated[bool, typer.Option("--no-progress", help="No progress bar.")] = False,
    local_update: Annotated[
        str | None,
        typer.Option(
            "--local-update",
            help="local_update of every run: paper (eq. 3: one SGD step per device and slot) | minibatch:B "
            "(⌈G_i(t)/B⌉ steps on mini-batches of B points) | scaled:B (the same steps, a batch of k < B "
            "points stepping k/B as far); a grid key sweeps it.",
        ),
    ] = None,
    partition: Annotated[
        str | None,
        typer.Option(
            "--partition",
            help="partition of every run, the labels each device collects: iid | dirichlet:ALPHA | classes:K; "
            "a grid key sweeps it.",
        ),
    ] = None,
    solver: Annotated[
        str | None,
        typer.Option(
            "--solver",
            help="solver of every run: auto | a registered solver (greedy, linear, sqrt, reference, "
            "label-aware: plans from the partition's labels); a grid key sweeps it.",
        ),
    ] = None,
    devices: Devices = None,
    slots: Slots = None,
    topology: Topology = None,
    rho: Rho = None,
    capacities: Capacities = None,
    profile: Profile = None,
    traces: Traces = None,
    log: Log = None,
    json_out: JsonFlag = False,
) -> None:
    """Sweep any scenario, planning and training option over seeds, each run beside its
    no-movement baseline; write one tidy runs.csv, a per-setting summary.csv and plots.

    Finished runs are kept (one file per run, keyed by its configuration's hash): rerunning the
    same command after Ctrl-C, or with more values, computes only what is missing. The scenario
    options fix their key for every run (--devices 20 is n=20); a grid key sweeps it.
    """
    import warnings

    from foglearn.experiments.core import Interrupted
    from foglearn.experiments.sweep import load_grid, run_grid

    files = [a for a in args or [] if "=" not in a]
    if len(files) > 1:
        fail(f"sweep: at most one grid file, got {files}; overrides are key=value")
    if jobs < 1:
        fail(f"--jobs = {jobs}: must be ≥ 1")
    from foglearn.errors import InputError
    from foglearn.learning.executors import parse_executor

    try:
        parse_executor(executor)
    except InputError as exc:
        fail(f"--executor: {exc}")
    if log is not None:
        require_tensorboard(log)
    scenario = ScenarioOptions(devices=devices, slots=slots, topology=topology, rho=rho, capacities=capacities,
                               profile=profile, traces=traces)
    import json

    learning = [f"{k}={json.dumps(v)}" for k, v in
                (("local_update", local_update), ("partition", partition), ("solver", solver)) if v is not None]
    overrides = [*scenario.sweep_overrides(), *learning, *(a for a in args or [] if "=" in a)]
    if seeds is not None:
        overrides.append(f"seeds={seeds}")
    if no_baseline:
        overrides.append("baseline=false")
    grid = load_grid(files[0] if files else None, overrides)
    runs = len(grid.points()) * len(grid.seeds)
    with json_mode(json_out):
        console.print(
            f"sweep: {len(grid.points())} grid point(s) × {len(grid.seeds)} seed(s) = {runs} runs"
            + (" (+ their no-movement baselines)" if grid.baseline else "")
        )
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", RuntimeWarning)
            try:
                result = run_grid(grid, out, jobs=jobs, progress=not no_progress, plots=plot or (), executor=executor)
            except Interrupted as exc:
                err_console.print(f"[yellow]{exc}[/]")
                raise typer.Exit(130) from None
        for w in caught:
            err_console.print(f"[yellow]warning:[/] {w.message}")
        done = result.outcome
        console.print(
            f"{len(result.rows)} runs ({len(done.computed)} computed now, {len(done.skipped)} "
            f"found finished, {done.seconds:.0f} s)"
        )
        written = [out / name for name in ("runs.csv", "summary.csv", *(p.name for p in result.plots))]
        if log is not None:
            written += write_tensorboard(out, _settings(result.rows, result.columns), step="seed")
        for path in written:
            console.print(f"  {path}")
    if json_out:
        emit_json({"runs": len(result.rows), "computed": len(done.computed), "found_finished": len(done.skipped),
                   "seconds": done.seconds, "files": written, "summary": result.summary})


def _settings(rows: list[dict[str, Any]], columns: tuple[str, ...]) -> dict[str, tuple[list[dict[str, Any]], dict]]:
    """runs.csv's rows grouped per grid point (``key=value,…`` of the swept keys, ``all`` if none):
    each row's seed and metrics, for :func:`~foglearn.cli.tracking.write_tensorboard`."""
    varying = columns[: columns.index("seed")]
    metrics = columns[columns.index("key") + 1:]
    settings: dict[str, tuple[list[dict[str, Any]], dict]] = {}
    for row in rows:
        name = ",".join(f"{k}={row[k]}" for k in varying).replace("/", "_") or "all"
        settings.setdefault(name, ([], {}))[0].append({"seed": row["seed"], **{m: row[m] for m in metrics}})
    return settings


def register(app: typer.Typer) -> None:
    """Attach ``foglearn sweep``."""
    app.command("sweep")(sweep_command)
