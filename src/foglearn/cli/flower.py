"""``foglearn flower …``: run the Flower deployment of the paper's loop.

``foglearn flower run`` runs the ServerApp and ClientApps in Flower's simulation runtime in this
process (Ray backend), prints the run directory and exits 1 when the run failed (Flower's own
``flwr run`` exits 0 whatever the ServerApp did); ``foglearn flower config`` prints the run
config in the ``-c`` form ``flwr run flower_app`` takes. Real deployments: docs/flower.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from foglearn.network import TOPOLOGIES

flower_app = typer.Typer(help="Run the paper's loop on Flower (simulation runtime or SuperLink/SuperNodes).",
                         no_args_is_help=True)


@flower_app.command("run")
def run(
    devices: Annotated[int, typer.Option("--devices", "-n", help="n: devices (one ClientApp each)")] = 5,
    slots: Annotated[int, typer.Option("--slots", "-T", help="T: slots (one Flower round each)")] = 20,
    period: Annotated[int, typer.Option("--period", help="τ: aggregate every τ slots (eq. 4)")] = 10,
    dataset: Annotated[str, typer.Option(help="mnist | fashion-mnist | tiny | a path")] = "mnist",
    model: Annotated[str, typer.Option(help="a model registered in foglearn.learning.models.MODELS "
                                       "(an unknown name lists them)")] = "cnn",
    lr: Annotated[float, typer.Option(help="η, SGD step size")] = 0.01,
    seed: Annotated[int, typer.Option(help="seed of scenario, partitions, model")] = 0,
    information: Annotated[str, typer.Option(help="estimated | perfect")] = "estimated",
    movement: Annotated[bool, typer.Option("--movement/--no-movement", help="plan data movement")] = True,
    topology: Annotated[str, typer.Option(help=" | ".join(TOPOLOGIES))] = "full",
    capacities: Annotated[bool, typer.Option("--capacities/--no-capacities")] = False,
    max_points: Annotated[int, typer.Option(help="D_i(t) ~ U{0..max}; 0 = ⌊N/(nT)⌋")] = 0,
    faults: Annotated[str, typer.Option(help="inject faults: '2@3' (slot), '1@4+' (from), '0@2!' (kill), "
                                          "'2@5~nan' (a lie: nan | h | shape)")] = "",
    run_dir: Annotated[str, typer.Option("--run-dir", "-o", help="run directory (default runs/flower-<time>)")] = "",
    client_cpus: Annotated[float, typer.Option(help="CPUs per ClientApp (Ray resources)")] = 1.0,
    eval_points: Annotated[int, typer.Option(help="test points for the server's evaluation (0 = all)")] = 0,
    slot_timeout: Annotated[float, typer.Option(help="seconds to wait for a slot's replies")] = 120.0,
) -> None:
    """Run the Flower app in the simulation runtime, in-process; writes config.toml and result.json."""
    from foglearn.flower.config import FlowerConfigError, FlowerRunConfig
    from foglearn.flower.simulation import run_flower

    try:
        cfg = FlowerRunConfig(num_devices=devices, horizon=slots, period=period, dataset=dataset, model=model,
                              lr=lr, seed=seed, information=information, movement=movement, topology=topology,
                              capacities=capacities, max_points=max_points, faults=faults, run_dir=run_dir,
                              eval_points=eval_points, slot_timeout=slot_timeout)
    except FlowerConfigError as exc:
        raise typer.BadParameter(str(exc)) from exc
    try:
        result = run_flower(cfg, client_cpus=client_cpus)
    except Exception as exc:  # noqa: BLE001 - Flower wraps the ServerApp's error; report it and fail
        typer.echo(f"foglearn flower run failed: {exc}", err=True)
        raise typer.Exit(1) from exc
    fails = sum(result["failures_per_slot"])
    typer.echo(f"status {result['status']}: final accuracy {result['final_accuracy']:.4f} "
               f"(initial {result['initial_accuracy']:.4f}), {fails} failed device-slots, "
               f"{result['wall_seconds']:.1f} s")
    if result.get("costs"):
        c = result["costs"]
        typer.echo(f"realised unit cost {c['unit']:.4f} (processing {c['processing']:.1f}, transfer "
                   f"{c['transfer']:.1f}, discard {c['discard']:.1f}); offloaded {c['offloaded']}, "
                   f"discarded {c['discarded']} of {c['collected']} points")
    typer.echo(f"run directory: {result['config']['run_dir']}")
    if result["status"] != "ok":
        typer.echo("failed: " + "; ".join(result.get("why_failed", [])), err=True)
        raise typer.Exit(1)


@flower_app.command("config")
def config(devices: Annotated[int, typer.Option("--devices", "-n")] = 5,
           slots: Annotated[int, typer.Option("--slots", "-T")] = 20) -> None:
    """Print a ``flwr run flower_app`` command line for these settings (``run-dir`` absolute: the
    ServerApp runs in another process and directory)."""
    typer.echo("flwr run flower_app --stream "
               f"--federation-config 'num-supernodes={devices} client-resources-num-cpus=1' "
               f"-c 'num-devices={devices} horizon={slots} run-dir=\"{Path.cwd() / 'runs' / 'flower'}\"'")


def register(app: typer.Typer) -> None:
    """Attach ``foglearn flower`` to the main CLI."""
    app.add_typer(flower_app, name="flower")
