"""``foglearn reproduce NAME``: run one of the paper's experiments (or ``all``) into a run directory."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from foglearn.cli.common import JsonFlag, console, emit_json, err_console, fail, json_mode
from foglearn.experiments.definitions import EXPERIMENTS, names

if TYPE_CHECKING:
    from foglearn.experiments import ExperimentOptions


def reproduce_command(
    name: Annotated[str, typer.Argument(help="An experiment (listed above) or all.")],
    seeds: Annotated[int, typer.Option("--seeds", help="Number of seeds (0, 1, …, N-1); Table III needs ≥ 5.")] = 5,
    seed_list: Annotated[str | None, typer.Option("--seed-list", help="Explicit comma-separated seeds "
                                                  "(overrides --seeds).")] = None,
    dataset: Annotated[str, typer.Option(help="mnist, fashion-mnist or tiny (tests only).")] = "mnist",
    model: Annotated[str, typer.Option(help="cnn or mlp (Table II trains both).")] = "cnn",
    horizon: Annotated[int, typer.Option("--slots", help="T: time slots.")] = 100,
    n_devices: Annotated[int, typer.Option("--devices", "-n", help="n: devices (Fig. 5 sweeps its own "
                                           "n values).")] = 10,
    window: Annotated[int | None, typer.Option("--window", help="Window of estimated information "
                                               "(Table III C, D; default τ = 10).")] = None,
    quick: Annotated[bool, typer.Option("--quick", help="First look: 2 seeds and T = 20 (windows of "
                                        "estimated information shrink with T: 10 → 2).")] = False,
    no_train: Annotated[bool, typer.Option("--no-train", help="Costs only: plan but do not train "
                                           "(Table II and Fig. 4 still train: they are about training).")] = False,
    train_seeds: Annotated[int | None, typer.Option("--train-seeds", help="Train only the first K seeds' runs "
                                                    "(costs use all seeds).")] = None,
    passes: Annotated[int, typer.Option("--passes", help="Training budget: replay the horizon P times "
                                        "(1 = the paper's one pass).")] = 1,
    table2_models: Annotated[str, typer.Option("--table2-models", help="Models Table II trains, "
                                               "comma-separated (mlp,cnn).")] = "mlp,cnn",
    lr: Annotated[float, typer.Option("--lr", help="Learning rate η of eq. (3) (the paper: 0.01).")] = 0.01,
    eval_every: Annotated[int, typer.Option("--eval-every", help="Evaluate every k-th aggregation "
                                            "(0 = final model only).")] = 1,
    local_update: Annotated[str, typer.Option("--local-update", help="paper (eq. 3: one SGD step per device and "
                                              "slot; the paper's protocol) | minibatch:B (⌈G_i(t)/B⌉ steps on "
                                              "mini-batches of B points; Table II's centralised server takes "
                                              "⌈ΣD_i(t)/B⌉) | scaled:B (the same steps, a batch of k < B "
                                              "points stepping k/B as far).")] = "paper",
    jobs: Annotated[int, typer.Option("--jobs", "-j", help="Worker processes (1 = in this process).")] = 2,
    executor: Annotated[str, typer.Option("--executor", help="local (--jobs processes) | ray (a Ray cluster of "
                                          "--jobs CPUs started here) | ray:ADDRESS (an existing cluster): "
                                          "where the runs execute; same resume rules.")] = "local",
    traces: Annotated[Path | None, typer.Option("--traces", help="Folder with nodes.csv/links.csv "
                                                "(docs/model.md §5) for Fig. 8.")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Run directory (default runs/NAME).")] = None,
    export: Annotated[Path | None, typer.Option("--export-docs", help="Also copy report.md and its plots "
                                                "to this Markdown file (e.g. docs/reproduction.md).")] = None,
    no_progress: Annotated[bool, typer.Option("--no-progress", help="No progress bar.")] = False,
    json_out: JsonFlag = False,
) -> None:
    """Reproduce a table or figure of the paper's Section V: sweep, raw results, plots, report.md.

    Finished runs are kept (one file per run, keyed by its configuration's hash): rerunning the
    same command after Ctrl-C resumes where it stopped.
    """
    from foglearn.experiments import (
        ConfigError,
        ExperimentOptions,
        Interrupted,
        RunFailed,
        run_experiment,
    )

    if name not in names():
        fail(f"experiment = {name!r}: unknown experiment; known: {', '.join(names())}")
    try:
        seed_values = tuple(int(s) for s in seed_list.split(",")) if seed_list else tuple(range(seeds))
    except ValueError:
        fail(f"--seed-list = {seed_list!r}: must be comma-separated integers")
    if traces is not None and not traces.is_dir():
        fail(f"--traces {traces}: not a folder")
    out_dir = out if out is not None else Path("runs") / name
    with json_mode(json_out):
        try:
            options = ExperimentOptions(seeds=seed_values, dataset=dataset, model=model, quick=quick, horizon=horizon,
                                        n_devices=n_devices, window=window, jobs=jobs, train=not no_train,
                                        out=str(out_dir), train_seeds=train_seeds,
                                        passes=passes, lr=lr, eval_every=eval_every, local_update=local_update,
                                        table2_models=tuple(m.strip() for m in table2_models.split(",") if m.strip()),
                                        traces_dir=str(traces) if traces else None, progress=not no_progress,
                                        executor=executor)
            for sub in _check_configs(name, options):
                err_console.print(f"notice: {sub} trains no run of the sweep runner, so --local-update "
                                  f"{options.local_update} does not apply to it", highlight=False)
            sections = run_experiment(name, options)
        except ConfigError as exc:
            fail(str(exc))
        except Interrupted as exc:
            err_console.print(f"[yellow]{exc}[/]")
            raise typer.Exit(130) from None
        except (RunFailed, FileNotFoundError) as exc:
            fail(str(exc), code=1)
        for s in sections:
            held = sum(c.holds for c in s.checks)
            console.print(f"[bold]{s.name}[/]: {s.runs} runs ({s.computed} computed now, {s.seconds:.0f} s); "
                          f"{held}/{len(s.checks)} claims hold")
            for c in s.checks:
                console.print(f"  {'✓' if c.holds else '✗'} {c.claim}: {c.evidence}")
        console.print(f"report: {out_dir / 'report.md'}")
        exported = None
        if export is not None:
            import sys

            from foglearn.experiments import export_docs

            args, skip = [], False
            for a in sys.argv[1:]:
                if skip or a.startswith("--export-docs"):
                    skip = a == "--export-docs"
                    continue
                args.append(a)
            command = "foglearn " + " ".join(a for a in args if a != "--json")
            exported = export_docs(out_dir, export, command=command)
            console.print(f"exported: {exported}")
    if json_out:
        emit_json({"report": out_dir / "report.md", "exported": exported, "sections": [
            {"name": s.name, "runs": s.runs, "computed": s.computed, "seconds": s.seconds,
             "claims_held": sum(c.holds for c in s.checks),
             "checks": [{"claim": c.claim, "holds": c.holds, "evidence": c.evidence} for c in s.checks]}
            for s in sections]})


def _check_configs(name: str, options: ExperimentOptions) -> list[str]:
    """Build the runs of ``name`` (every experiment for ``all``) before anything runs, so that an
    option an experiment's runs cannot take is an error now, naming the experiment, not after the
    other experiments have run. Returns the experiments that ignore ``options.local_update`` (a rule
    other than ``paper`` for an experiment none of whose runs trains, e.g. Fig. 8's costs or the
    non-IID experiment, which trains its own cells at ``foglearn run``'s budget)."""
    import foglearn.experiments.paper  # noqa: F401 - registers the paper's experiments
    from foglearn.experiments import ConfigError

    ignored: list[str] = []
    for sub in (EXPERIMENTS.names() if name == "all" else (name,)):
        entry = EXPERIMENTS.get_entry(sub)
        try:
            grid = entry.obj.configs(options, **entry.params)
        except ConfigError as exc:
            raise ConfigError(f"{sub}: {exc}") from None
        if options.local_update != "paper" and not any(c.train for _, c in grid):
            ignored.append(sub)
    return ignored


def register(app: typer.Typer) -> None:
    """Attach ``foglearn reproduce``; its help lists the registered experiments."""
    listing = "; ".join(f"{e.name}: {e.description}" for e in EXPERIMENTS.values())
    doc = inspect.cleandoc(reproduce_command.__doc__ or "")
    app.command("reproduce", help=f"{doc}\n\nExperiments: {listing}; or all.")(reproduce_command)
