"""``foglearn flower …``: run the Flower deployment of the paper's loop.

``foglearn flower run`` runs the ServerApp and ClientApps in Flower's simulation runtime in this
process (Ray backend), prints the run directory and exits 1 when the run failed (Flower's own
``flwr run`` exits 0 whatever the ServerApp did); ``foglearn flower config`` prints the run
config in the ``-c`` form ``flwr run flower_app`` takes. Real deployments: docs/flower.md.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer

from foglearn.cli.common import JsonFlag, emit_json, json_mode
from foglearn.cli.scenario_options import (
    DEFAULT_PROFILE,
    DEFAULT_RHO,
    DEFAULT_TOPOLOGY,
    Capacities,
    Profile,
    Repeat,
    Rho,
    ScenarioFile,
    ScenarioOptions,
    Topology,
    Traces,
    devices_option,
    slots_option,
)

flower_app = typer.Typer(help="Run the paper's loop on Flower (simulation runtime or SuperLink/SuperNodes).",
                         no_args_is_help=True)


#: ``foglearn flower run``'s network when none is given: small, for a first run on one machine.
FLOWER_DEVICES, FLOWER_SLOTS = 5, 20


@flower_app.command("run")
def run(
    devices: Annotated[int | None, devices_option(FLOWER_DEVICES, "devices (one ClientApp each)")] = None,
    slots: Annotated[int | None, slots_option(FLOWER_SLOTS, "slots (one Flower round each)")] = None,
    period: Annotated[int, typer.Option("--period", help="τ: aggregate every τ slots (eq. 4)")] = 10,
    dataset: Annotated[str, typer.Option(help="mnist | fashion-mnist | tiny | a path")] = "mnist",
    model: Annotated[str, typer.Option(help="a model registered in foglearn.learning.models.MODELS "
                                       "(an unknown name lists them)")] = "cnn",
    lr: Annotated[float, typer.Option(help="η, SGD step size")] = 0.01,
    seed: Annotated[int, typer.Option(help="seed of scenario, partitions, model")] = 0,
    information: Annotated[str, typer.Option(help="estimated | perfect")] = "estimated",
    movement: Annotated[bool, typer.Option("--movement/--no-movement", help="plan data movement")] = True,
    topology: Topology = None,
    rho: Rho = None,
    capacities: Capacities = None,
    profile: Profile = None,
    max_points: Annotated[int | None, typer.Option(
        "--max-points", min=0, show_default=False,
        help="D_i(t) ~ U{0..max_points} (default: ⌊N/(nT)⌋ of the data set's N training points; with "
        "--traces 60)")] = None,
    scenario: ScenarioFile = None,
    traces: Traces = None,
    repeat: Repeat = False,
    faults: Annotated[str, typer.Option(help="inject faults: '2@3' (slot), '1@4+' (from), '0@2!' (kill), "
                                          "'2@5~nan' (a lie: nan | h | shape)")] = "",
    out: Annotated[Path | None, typer.Option("--out", "-o", show_default=False,
                                             help="run directory (default: runs/flower-<time>)")] = None,
    client_cpus: Annotated[float, typer.Option(help="CPUs per ClientApp (Ray resources)")] = 1.0,
    eval_points: Annotated[int, typer.Option(help="test points for the server's evaluation (0 = all)")] = 0,
    slot_timeout: Annotated[float, typer.Option(help="seconds to wait for a slot's replies")] = 120.0,
    json_out: JsonFlag = False,
) -> None:
    """Run the Flower app in the simulation runtime, in-process; writes config.toml and result.json.

    With --traces the scenario is built here (the traces' own size unless --devices/--slots) and
    saved as OUT/scenario.npz, which the devices replay."""
    from foglearn.flower import simulation
    from foglearn.flower.config import FlowerConfigError, FlowerRunConfig

    options = ScenarioOptions(devices, slots, topology, rho, capacities, profile, max_points, scenario, traces,
                              repeat)
    options.check()
    run_dir = out if out is not None else Path("runs") / f"flower-{time.strftime('%Y%m%d-%H%M%S')}"
    if options.generator == "synthetic":
        network: dict[str, Any] = {
            "num_devices": devices or FLOWER_DEVICES, "horizon": slots or FLOWER_SLOTS,
            "topology": topology or DEFAULT_TOPOLOGY, "rho": DEFAULT_RHO if rho is None else rho,
            "capacities": bool(capacities), "profile": profile or DEFAULT_PROFILE, "max_points": max_points or 0}
    else:
        built, _ = options.build(seed)
        path = scenario if scenario is not None else built.save(run_dir / "scenario.npz")
        network = {"num_devices": built.n_devices, "horizon": built.horizon, "scenario_file": str(path),
                   "capacities": built.has_capacities}  # the config records what the file holds
    try:
        cfg = FlowerRunConfig(period=period, dataset=dataset, model=model, lr=lr, seed=seed, information=information,
                              movement=movement, faults=faults, run_dir=str(run_dir), eval_points=eval_points,
                              slot_timeout=slot_timeout, **network)
    except FlowerConfigError as exc:
        raise typer.BadParameter(str(exc)) from exc
    with json_mode(json_out):
        try:
            result = simulation.run_flower(cfg, client_cpus=client_cpus)
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
    if json_out:
        emit_json(result)
    if result["status"] != "ok":
        typer.echo("failed: " + "; ".join(result.get("why_failed", [])), err=True)
        raise typer.Exit(1)


@flower_app.command("config")
def config(devices: Annotated[int, typer.Option("--devices", "-n", min=1, help="n: devices")] = FLOWER_DEVICES,
           slots: Annotated[int, typer.Option("--slots", min=1, help="T: slots")] = FLOWER_SLOTS) -> None:
    """Print a ``flwr run flower_app`` command line for these settings (``run-dir`` absolute: the
    ServerApp runs in another process and directory)."""
    typer.echo("flwr run flower_app --stream "
               f"--federation-config 'num-supernodes={devices} client-resources-num-cpus=1' "
               f"-c 'num-devices={devices} horizon={slots} run-dir=\"{Path.cwd() / 'runs' / 'flower'}\"'")


def register(app: typer.Typer) -> None:
    """Attach ``foglearn flower`` to the main CLI."""
    app.add_typer(flower_app, name="flower")
