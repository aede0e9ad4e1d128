"""``foglearn run``: the main job — no movement vs network-aware learning on real data.

On the embedded default (MNIST, n = 10, T = 100, τ = 10, CNN, synthetic costs on a fully
connected network) it plans both settings, trains a real model for each by executing the plan
at datapoint level, prints costs and accuracy, and writes a run directory:
``config.toml``, ``result.json``, ``slots.csv`` (per-slot loss and test metrics), ``loss.png``
and ``accuracy.png``. Every file is written atomically.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer

from foglearn.cli.common import console, cost_table, fail


def _default_threads() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)


def run_command(
    n: Annotated[int, typer.Option("--n", "-n", help="number of devices")] = 10,
    horizon: Annotated[int, typer.Option("--T", "-T", help="number of slots T")] = 100,
    period: Annotated[int, typer.Option(help="aggregation period τ (eq. 4)")] = 10,
    model: Annotated[str, typer.Option(help="cnn | mlp")] = "cnn",
    dataset: Annotated[str, typer.Option(help="mnist | fashion-mnist | a folder of IDX files | .npz")] = "mnist",
    seed: Annotated[int, typer.Option(help="seed of the scenario, the data stream and w(0)")] = 0,
    lr: Annotated[float, typer.Option(help="learning rate η (eq. 3)")] = 0.01,
    capacities: Annotated[bool, typer.Option(help="impose node and link capacities (SPEC §4)")] = False,
    passes: Annotated[int, typer.Option(help="replay the horizon this many times with fresh points (training "
                                        "budget; 1 = the paper's protocol)")] = 1,
    threads: Annotated[int, typer.Option(help="torch threads (0: all available cores)")] = 0,
    out: Annotated[Path, typer.Option(help="run directory to write")] = Path("runs/default"),
) -> None:
    """Train with no movement and with network-aware learning; compare costs and accuracy."""
    import hashlib
    import json
    import pickle

    import numpy as np

    from foglearn.io import atomic_write, write_json
    from foglearn.learning import DatasetError, TrainingError, load_dataset, train
    from foglearn.learning.results import plot_curves, write_csv
    from foglearn.network import synthetic
    from foglearn.planning import plan

    if n < 1 or horizon < 1:
        fail(f"--n = {n}, --T = {horizon}: both must be ≥ 1")
    if model not in ("cnn", "mlp"):
        fail(f"--model = {model!r}: must be cnn or mlp")
    threads = threads or _default_threads()
    try:
        scenario = synthetic(n_devices=n, horizon=horizon, topology="full", capacities=capacities, seed=seed)
    except ValueError as exc:
        fail(f"scenario: {exc}")
    try:
        data = load_dataset(dataset)
    except DatasetError as exc:
        fail(str(exc))
    settings = [("no-movement", plan(scenario, movement=False)), ("network-aware", plan(scenario))]
    config: dict[str, Any] = {"scenario": {"generator": "synthetic", "n_devices": n, "horizon": horizon,
                                           "topology": "full", "capacities": capacities, "seed": seed},
                              "training": {"dataset": data.name, "model": model, "period": period, "lr": lr,
                                           "seed": seed, "passes": passes},
                              "settings": [{"name": name, "movement": name != "no-movement",
                                            "information": "perfect", "error": "linear"} for name, _ in settings]}
    # Each finished setting is kept in the run directory, keyed by the configuration: after an
    # interruption the same command resumes with the settings still to train.
    key = hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    results = []
    with Progress(TextColumn("{task.description:<14}"), BarColumn(), MofNCompleteColumn(), TextColumn("slots"),
                  TimeElapsedColumn(), console=console, transient=False) as bar:
        for name, p in settings:
            task = bar.add_task(name, total=horizon * passes)
            done = out / "finished" / f"{name}-{key}.pkl"
            if done.exists():
                with done.open("rb") as fh:
                    results.append(pickle.load(fh))
                bar.update(task, completed=horizon * passes, description=f"{name} (kept)")
                continue
            try:
                r = train(scenario, p, dataset=data, model=model, period=period, lr=lr, seed=seed, passes=passes,
                          threads=threads, name=name,
                          progress=lambda done, total, task=task: bar.update(task, completed=done))
            except TrainingError as exc:
                fail(str(exc))
            atomic_write(done, pickle.dumps(r))
            results.append(r)
    rows = [(r.name, {**r.costs, "accuracy": r.accuracy}) for r in results]
    console.print(cost_table(rows, title=f"{data.name}, {model.upper()}, n = {n}, T = {horizon}, τ = {period}, "
                             f"η = {lr}, passes = {passes}, seed = {seed}", extra=("accuracy",)))
    config["training"]["threads"] = threads
    import tomli_w

    atomic_write(out / "config.toml", tomli_w.dumps(config))
    write_json(out / "result.json", {
        "settings": [{**r.as_dict(), "name": r.name, "unit_cost": r.costs["unit"], "accuracy": r.accuracy}
                     for r in results],
        "dataset": data.summary(), "scenario": scenario.summary(),
        "config": config})
    write_csv(out / "slots.csv", [{"setting": r.name, **row} for r in results for row in r.slot_rows()])
    write_csv(out / "device_loss.csv", [{"setting": r.name, "slot": s + 1,
                                         **{f"device_{i}": (None if np.isnan(v) else float(v))
                                            for i, v in enumerate(r.device_loss[s])}}
                                        for r in results for s in range(r.device_loss.shape[0])])
    plot_curves(results, out / "loss.png", out / "accuracy.png")
    console.print(f"run directory: {out} (config.toml, result.json, slots.csv, device_loss.csv, loss.png, accuracy.png)")


def register(app: typer.Typer) -> None:
    app.command("run")(run_command)
