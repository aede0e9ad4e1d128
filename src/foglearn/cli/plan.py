"""``foglearn plan``: build or load a scenario, plan its data movement, print the costs; write
files only where asked (``--out``, ``--flows``, ``--table``, ``--save-scenario``)."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Annotated, Any

import typer

from foglearn.cli.common import JsonFlag, console, cost_table, emit_json, fail, json_mode
from foglearn.cli.scenario_options import (
    Capacities,
    Devices,
    MaxPoints,
    Profile,
    Repeat,
    Rho,
    ScenarioFile,
    ScenarioOptions,
    Slots,
    Topology,
    Traces,
)

#: Columns of ``--flows`` (who sends what to whom) and ``--table`` (per device and slot).
FLOW_COLUMNS = ("t", "src", "dst", "src_name", "dst_name", "points")
TABLE_COLUMNS = ("t", "device", "name", "collected", "kept", "offloaded", "discarded", "received", "dropped",
                 "processed")


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


def write_rows(path: Path, columns: tuple[str, ...], rows: list[dict[str, Any]]) -> Path:
    """``rows`` as CSV with these ``columns`` (a header even when there are no rows), atomically."""
    from foglearn.io import atomic_write

    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return atomic_write(path, buf.getvalue())


def plan_command(
    devices: Devices = None,
    slots: Slots = None,
    topology: Topology = None,
    rho: Rho = None,
    capacities: Capacities = None,
    profile: Profile = None,
    max_points: MaxPoints = None,
    scenario: ScenarioFile = None,
    traces: Traces = None,
    repeat: Repeat = False,
    error: Annotated[str, typer.Option(help="error model: linear | sqrt")] = "linear",
    information: Annotated[str,
                           typer.Option(help="'perfect' or a window length for estimated information")] = "perfect",
    solver: Annotated[str, typer.Option(help="auto, or a solver registered in foglearn.planning.SOLVERS "
                                        "(an unknown name lists them)")] = "auto",
    seed: Annotated[int, typer.Option(min=0, help="random seed (≥ 0)")] = 0,
    save_scenario: Annotated[Path | None, typer.Option(help="write the scenario used to this .npz")] = None,
    out: Annotated[Path | None, typer.Option(
        help="write the summary as JSON here (plan.json): costs per plan; offload_rate and discard_rate are "
        "fractions of the collected points, as the plan's keep / offload / discard (s_ii, s_ij, r_i) are "
        "fractions of D_i(t); --flows and --table give point counts")] = None,
    flows: Annotated[Path | None, typer.Option(
        help="write who sends what to whom as CSV: t, src, dst, src_name, dst_name, points (network-aware plan)")
    ] = None,
    table: Annotated[Path | None, typer.Option(
        help="write the per-device table as CSV: t, device, name, collected, kept, offloaded, discarded, received, "
        "dropped, processed (points per slot; network-aware plan)")] = None,
    compare: Annotated[bool, typer.Option(help="also show the no-movement baseline")] = True,
    json_out: JsonFlag = False,
) -> None:
    """Plan the data movement of problem (5)-(9) for a fog network and print its costs."""
    from foglearn.planning import plan

    info = parse_information(information)
    options = ScenarioOptions(devices, slots, topology, rho, capacities, profile, max_points, scenario, traces,
                              repeat)
    with json_mode(json_out):
        scen, source = options.build(seed)
        if save_scenario is not None:
            console.print(f"scenario written to {scen.save(save_scenario)}")
        console.print(repr(scen))
        results: list[tuple[str, Any]] = []
        if compare:
            results.append(("no movement", plan(scen, error=error, movement=False)))
        results.append(("network-aware", plan(scen, error=error, information=info, solver=solver)))
        console.print(cost_table([(name, p.costs.as_dict()) for name, p in results],
                                 title=f"Data-movement costs ({error} error, {info} information)"))
        best = results[-1][1]
        console.print(f"solver: {best.stats.solver}, status {best.stats.status}, {best.stats.seconds:.3f} s, "
                      f"objective {best.stats.objective:.6f}")
        summary = {"scenario": {**scen.summary(), "source": source, "info": scen.info},
                   "plans": [{"name": name, **p.summary()} for name, p in results]}
        if out is not None:
            from foglearn.io import write_json

            console.print(f"summary written to {write_json(out, summary)}")
        if flows is not None:
            console.print(f"flows written to {write_rows(flows, FLOW_COLUMNS, best.flows(scen))}")
        if table is not None:
            console.print(f"per-device table written to {write_rows(table, TABLE_COLUMNS, best.table(scen))}")
    if json_out:
        emit_json(summary)


def register(app: typer.Typer) -> None:
    app.command("plan")(plan_command)
