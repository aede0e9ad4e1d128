"""``foglearn plan``: build or load a scenario, plan its data movement, print and save the costs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from foglearn.cli.common import console, cost_table, fail
from foglearn.io import write_json
from foglearn.network import PROFILES, TOPOLOGIES


def parse_information(value: str) -> str | int:
    """``perfect`` or a window length (a positive integer)."""
    if value == "perfect":
        return value
    try:
        window = int(value)
    except ValueError:
        fail(f"--information = {value!r}: must be 'perfect' or a window length (a positive integer)")
    if window < 1:
        fail(f"--information = {value!r}: a window length must be ≥ 1")
    return window


def plan_command(
    topology: Annotated[str, typer.Option(help=TOPOLOGIES.help())] = "full",
    n: Annotated[int, typer.Option("--n", "-n", help="number of devices")] = 10,
    horizon: Annotated[int, typer.Option("--T", "-T", help="number of slots")] = 100,
    rho: Annotated[float, typer.Option(help="link probability of the random topology")] = 0.3,
    capacities: Annotated[bool, typer.Option(help="impose node and link capacities (docs/model.md §4)")] = False,
    error: Annotated[str, typer.Option(help="error model: linear | sqrt")] = "linear",
    information: Annotated[str,
                           typer.Option(help="'perfect' or a window length for estimated information")] = "perfect",
    profile: Annotated[str, typer.Option(help="cost profile: " + PROFILES.help())] = "synthetic",
    solver: Annotated[str, typer.Option(help="auto, or a solver registered in foglearn.planning.SOLVERS "
                                        "(an unknown name lists them)")] = "auto",
    max_points: Annotated[int | None, typer.Option(help="D_i(t) ~ U{0..max_points} (default ⌊60000/(nT)⌋)")] = None,
    seed: Annotated[int, typer.Option(min=0, help="random seed (≥ 0)")] = 0,
    scenario: Annotated[Path | None, typer.Option(help="load this scenario (.npz) instead of generating one")] = None,
    traces: Annotated[Path | None,
                      typer.Option(help="replay measured traces: a directory with nodes.csv and links.csv")] = None,
    save_scenario: Annotated[Path | None, typer.Option(help="write the scenario used to this .npz")] = None,
    out: Annotated[Path, typer.Option(help="write the plan summary as JSON here")] = Path("plan.json"),
    compare: Annotated[bool, typer.Option(help="also show the no-movement baseline")] = True,
) -> None:
    """Plan the data movement of problem (5)-(9) for a fog network and print its costs."""
    from foglearn.network import Scenario, ScenarioError, from_traces, synthetic
    from foglearn.planning import PlanError, plan

    info = parse_information(information)
    try:
        if scenario is not None:
            scen = Scenario.load(scenario)
        elif traces is not None:
            scen = from_traces(traces, n_devices=n, horizon=horizon, seed=seed,
                               **({"max_points": max_points} if max_points is not None else {}))
        else:
            scen = synthetic(n_devices=n, horizon=horizon, topology=topology, rho=rho, capacities=capacities,
                             seed=seed, max_points=max_points, profile=profile)
    except ScenarioError as exc:
        fail(str(exc))
    if save_scenario is not None:
        console.print(f"scenario written to {scen.save(save_scenario)}")
    console.print(repr(scen))
    results: list[tuple[str, Any]] = []
    try:
        if compare:
            results.append(("no movement", plan(scen, error=error, movement=False)))
        results.append(("network-aware", plan(scen, error=error, information=info, solver=solver)))
    except (PlanError, ScenarioError, ValueError) as exc:
        fail(str(exc))
    console.print(cost_table([(name, p.costs.as_dict()) for name, p in results],
                             title=f"Data-movement costs ({error} error, {info} information)"))
    best = results[-1][1]
    console.print(f"solver: {best.stats.solver}, status {best.stats.status}, {best.stats.seconds:.3f} s, "
                  f"objective {best.stats.objective:.6f}")
    write_json(out, {"scenario": {**scen.summary(), "info": scen.info},
                            "plans": [{"name": name, **p.summary()} for name, p in results]})
    console.print(f"summary written to {out}")


def register(app: typer.Typer) -> None:
    app.command("plan")(plan_command)
