"""``foglearn theory ...``: Theorems 2, 4, 5, 6 beside their numerical checks (thin shell over foglearn.theory)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from foglearn.cli.common import JsonFlag, emit_json, json_mode

theory_app = typer.Typer(
    name="theory",
    help="Theorems 2, 4, 5 and 6: closed forms, their Monte Carlo / numerical checks, plots and a report.",
    no_args_is_help=True,
)


def _table(title: str, header: list[str], rows: list[list[str]]) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title=title)
    for h in header:
        t.add_column(h)
    for r in rows:
        t.add_row(*r)
    Console().print(t)


def _save_plot(fig: object, path: Path | None) -> None:
    if path is None:
        return
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)  # type: ignore[attr-defined]
    plt.close(fig)  # type: ignore[arg-type]
    typer.echo(f"plot written to {path}")


@theory_app.command("straggler")
def straggler(
    sigma: Annotated[float, typer.Option(help="waiting-time target σ (slots)")] = 1.0,
    mu: Annotated[float, typer.Option(help="service rate μ (points per slot) of exp(μ) stragglers")] = 10.0,
    simulate: Annotated[bool, typer.Option(help="check W_q with a D/M/1 queue simulation")] = True,
    customers: Annotated[int, typer.Option(help="simulated points")] = 20_000_000,
    seed: Annotated[int, typer.Option()] = 0,
    plot: Annotated[Path | None, typer.Option(help="write the C*(σ, μ) plot here (PNG)")] = None,
    json_out: JsonFlag = False,
) -> None:
    """Theorem 2: capacity C* for a mean-wait target σ under exp(μ) stragglers (queue and sojourn forms)."""
    from foglearn.theory import phi, simulate_queue_wait, straggler_capacity

    with json_mode(json_out):
        C = straggler_capacity(sigma, mu)
        numbers: dict[str, object] = {"sigma": sigma, "mu": mu, "queue": {"capacity": C, "phi": phi(C, mu)}}
        rows = [["queue wait W_q ≤ σ", f"{C:.6f}", f"{phi(C, mu):.6f}"]]
        if sigma * mu > 1:
            Cs = straggler_capacity(sigma, mu, wait="sojourn")
            rows.append(["sojourn W_q + 1/μ ≤ σ", f"{Cs:.6f}", f"{phi(Cs, mu):.6f}"])
            numbers["sojourn"] = {"capacity": Cs, "phi": phi(Cs, mu)}
        else:
            rows.append(["sojourn W_q + 1/μ ≤ σ", "impossible (σμ ≤ 1)", "—"])
            numbers["sojourn"] = None
        _table(f"Theorem 2, σ = {sigma:g}, μ = {mu:g}", ["form", "C*", "φ(C*)"], rows)
        if simulate:
            r = simulate_queue_wait(C, mu, customers=customers, seed=seed)
            _table("D/M/1 simulation at C* (queue form)", ["quantity", "formula", "simulation", "z"], [
                ["W_q", f"{r.theory_wait:.5f}", f"{r.mean_wait:.5f} ± {r.stderr:.5f}", f"{r.z_score():+.2f}"],
                ["sojourn", f"{r.theory_sojourn:.5f}", f"{r.mean_sojourn:.5f} ± {r.sojourn_stderr:.5f}", ""],
            ])
            numbers["simulation"] = {
                "customers": customers, "wait_formula": r.theory_wait, "wait_mean": r.mean_wait,
                "wait_stderr": r.stderr, "z": r.z_score(), "sojourn_formula": r.theory_sojourn,
                "sojourn_mean": r.mean_sojourn, "sojourn_stderr": r.sojourn_stderr}
        if plot is not None:
            from foglearn.theory.plots import plot_straggler

            _save_plot(plot_straggler(mus=(mu / 2, mu, 2 * mu), seed=seed), plot)
    if json_out:
        emit_json(numbers)


@theory_app.command("hierarchy")
def hierarchy(
    devices: Annotated[int, typer.Option("--devices", "-n", help="n: leaf devices under the server")] = 10,
    points: Annotated[float, typer.Option("--points", help="D: points each leaf collects")] = 1000.0,
    c: Annotated[float, typer.Option(help="leaf processing cost c")] = 0.5,
    c_server: Annotated[float, typer.Option(help="server processing cost c_{n+1}")] = 0.1,
    c_link: Annotated[float, typer.Option(help="link cost c_t")] = 0.05,
    gamma: Annotated[float, typer.Option(help="error weight γ")] = 50.0,
    planner: Annotated[bool,
                       typer.Option(help="also solve with foglearn.planning.plan(error='sqrt') if installed")] = True,
    plot: Annotated[Path | None, typer.Option(help="write the r*, s* vs D plot here (PNG)")] = None,
    json_out: JsonFlag = False,
) -> None:
    """Theorem 4: the optimal discard r* and offload s* fractions, with scipy (and the planner) beside."""
    from foglearn.experiments.theorems import solve_hierarchical_with_planner
    from foglearn.theory import (
        HierarchyInstance,
        hierarchical_objective,
        hierarchical_optimum,
        solve_augmented_numeric,
        solve_hierarchical_numeric,
    )

    n, D = devices, points
    with json_mode(json_out):
        h = HierarchyInstance(n, D, c, c_server, c_link, gamma)
        r, s = hierarchical_optimum(n, D, c, c_server, c_link, gamma)
        num = solve_hierarchical_numeric(n, D, c, c_server, c_link, gamma)
        theorem = {"r": r, "s": s, "objective": hierarchical_objective(r, s, n, D, c, c_server, c_link, gamma)}
        numbers: dict[str, object] = {"threshold": h.threshold, "theorem": theorem,
                                      "scipy": {"r": num.r, "s": num.s, "objective": num.objective}}
        rows = [["Theorem 4" + (" (13)-(14)" if h.D >= h.threshold else " (r = 0 boundary)"), f"{r:.6f}", f"{s:.6f}",
                 f"{theorem['objective']:.6f}"],
                ["scipy on J(r, s)", f"{num.r:.6f}", f"{num.s:.6f}", f"{num.objective:.6f}"]]
        if planner:
            if not float(D).is_integer():
                rows.append(["planner", "needs a whole D", "", ""])
            else:
                aug = solve_augmented_numeric(n, int(D), c, c_server, c_link, gamma)
                pl = solve_hierarchical_with_planner(n, int(D), c, c_server, c_link, gamma)
                rows.append(["scipy, server collects 1 point", f"{aug.r:.6f}", f"{aug.s:.6f}", f"{aug.objective:.6f}"])
                rows.append(["planner (sqrt), same instance", f"{pl.r:.6f}", f"{pl.s:.6f}", f"{pl.objective:.6f}"])
                numbers["scipy_augmented"] = {"r": aug.r, "s": aug.s, "objective": aug.objective}
                numbers["planner"] = {"r": pl.r, "s": pl.s, "objective": pl.objective}
        _table(f"Theorem 4: n={n}, D={D:g}, c={c:g}, c_n+1={c_server:g}, c_t={c_link:g}, γ={gamma:g} "
               f"(threshold D = {h.threshold:.3f})", ["method", "r*", "s*", "objective"], rows)
        if plot is not None:
            from foglearn.theory.plots import plot_hierarchy

            _save_plot(plot_hierarchy(n, c, c_server, c_link, gamma), plot)
    if json_out:
        emit_json(numbers)


@theory_app.command("offloading")
def offloading(
    graph: Annotated[str, typer.Option(help="ba | ws | er | complete | scale-free")] = "ba",
    devices: Annotated[int, typer.Option("--devices", "-n", help="devices (k_max for scale-free)")] = 200,
    m: Annotated[int, typer.Option(help="BA edges per new node")] = 2,
    k: Annotated[int, typer.Option(help="WS ring degree")] = 10,
    p: Annotated[float, typer.Option(help="WS rewiring / ER edge probability")] = 0.1,
    exponent: Annotated[float, typer.Option(help="scale-free γ")] = 2.5,
    form: Annotated[str, typer.Option(help="scale-free N(k): normalised (k^-γ) | printed (Γk^(1-γ))")] = "normalised",
    cost_range: Annotated[float, typer.Option("--cost-range", help="C: costs c_i ~ U(0, C)")] = 1.0,
    replications: Annotated[int, typer.Option(help="Monte Carlo runs on the graph")] = 2000,
    seed: Annotated[int, typer.Option(help="graph and simulation seed")] = 1,
    plot: Annotated[Path | None, typer.Option(help="write the saving-vs-C plot here (PNG)")] = None,
    json_out: JsonFlag = False,
) -> None:
    """Theorem 5: the expected saving from offloading, Σ_k N(k) C k/(2(k+2)), with a simulation."""
    from foglearn.theory import (
        named_graph,
        offloading_value,
        scale_free_distribution,
        simulate_offloading_value,
    )

    C = cost_range
    with json_mode(json_out):
        if graph == "scale-free":
            d = scale_free_distribution(exponent, devices, 1, form=form)
            numbers: dict[str, object] = {"graph": d.label, "cost_range": C, "stable": offloading_value(d, C),
                                          "printed": offloading_value(d, C, printed=True)}
            _table(f"Theorem 5 on {d.label}", ["form", "saving"], [
                ["stable Σ N(k) Ck/(2(k+2))", f"{numbers['stable']:.6f}"],
                ["printed alternating sum (float64)", f"{numbers['printed']:.6g}"]])
        else:
            g = named_graph(graph, devices, m=m, k=k, p=p, seed=seed)
            sim = simulate_offloading_value(g, C, replications=replications, seed=seed)
            numbers = {"graph": g.name, "cost_range": C, "closed_form": offloading_value(g, C),
                       "simulation": {"replications": replications, "mean": sim.mean_saving,
                                      "stderr": sim.stderr, "z": sim.z_score()}}
            _table(f"Theorem 5 on {g.name}, C = {C:g}", ["method", "saving per device"], [
                ["closed form on the graph's degree distribution", f"{numbers['closed_form']:.6f}"],
                [f"simulation ({replications} runs)",
                 f"{sim.mean_saving:.6f} ± {sim.stderr:.6f} (z = {sim.z_score():+.2f})"]])
        if plot is not None:
            from foglearn.theory.plots import plot_offloading

            _save_plot(plot_offloading(seed=seed), plot)
    if json_out:
        emit_json(numbers)


@theory_app.command("violations")
def violations(
    graph: Annotated[str, typer.Option(help="ba | ws | er | complete")] = "ba",
    devices: Annotated[int, typer.Option("--devices", "-n", help="devices")] = 200,
    m: Annotated[int, typer.Option(help="BA edges per new node")] = 2,
    k: Annotated[int, typer.Option(help="WS ring degree")] = 10,
    p: Annotated[float, typer.Option(help="WS rewiring / ER edge probability")] = 0.1,
    points: Annotated[float, typer.Option("--points", help="D: points collected per device")] = 1.0,
    capacity_scale: Annotated[float, typer.Option(help="capacity ~ U(0, scale·D)")] = 4.0,
    replications: Annotated[int, typer.Option(help="Monte Carlo runs")] = 20000,
    seed: Annotated[int, typer.Option(help="graph and simulation seed")] = 1,
    plot: Annotated[Path | None, typer.Option(help="write the violations-vs-capacity plot here (PNG)")] = None,
    json_out: JsonFlag = False,
) -> None:
    """Theorem 6: expected capacity violations: printed mean-field (16), corrected exact form, simulation."""
    from foglearn.theory import (
        expected_violations,
        named_graph,
        simulate_violations,
        uniform_capacity,
    )

    D = points
    with json_mode(json_out):
        g = named_graph(graph, devices, m=m, k=k, p=p, seed=seed)
        cap = uniform_capacity(0.0, capacity_scale * D)
        sim = simulate_violations(g, D, cap, replications=replications, seed=seed)
        ex = expected_violations(g, D, cap, "exact")
        numbers = {"graph": g.name, "points": D, "capacity_scale": capacity_scale,
                   "mean_field": expected_violations(g, D, cap, "mean-field"), "exact": ex,
                   "simulation": {"replications": replications, "mean": sim.mean, "stderr": sim.stderr,
                                  "z": sim.z_score(ex)}}
        _table(f"Theorem 6 on {g.name}, D = {D:g}, capacity ~ U(0, {capacity_scale:g}·D)", ["method", "violations"], [
            ["printed (16), mean-field", f"{numbers['mean_field']:.4f}"],
            ["corrected (generating function)", f"{ex:.4f}"],
            [f"simulation ({replications} runs)",
             f"{sim.mean:.4f} ± {sim.stderr:.4f} (z vs corrected = {sim.z_score(ex):+.2f})"]])
        if plot is not None:
            from foglearn.theory.plots import plot_violations

            _save_plot(plot_violations(g, D, seed=seed), plot)
    if json_out:
        emit_json(numbers)


@theory_app.command("report")
def report(
    out: Annotated[Path, typer.Option(help="folder: writes OUT/theory.md and OUT/theory/*.png "
                                      "(--out docs regenerates docs/theory.md)")] = Path("runs/theory"),
    customers: Annotated[int, typer.Option(help="queue points per Theorem 2 case")] = 20_000_000,
    replications: Annotated[int, typer.Option(help="Monte Carlo runs for Theorems 5 and 6")] = 20_000,
    seed: Annotated[int, typer.Option()] = 0,
    plots: Annotated[bool, typer.Option(help="draw the PNG plots")] = True,
) -> None:
    """Every docs/model.md §3 number beside ours, with plots, as Markdown."""
    from foglearn.experiments.theory_report import write_report

    path = write_report(out, customers=customers, replications=replications, seed=seed, plots=plots)
    typer.echo(f"report written to {path}")


def register(app: typer.Typer) -> None:
    """Attach ``foglearn theory ...`` to the main app."""
    app.add_typer(theory_app, name="theory")
