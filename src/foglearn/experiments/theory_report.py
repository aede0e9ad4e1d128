"""``foglearn theory report``: every docs/model.md §3 number beside ours, with plots, as Markdown."""

from __future__ import annotations

import os
import time
from pathlib import Path

from foglearn.experiments.theorems import solve_hierarchical_with_planner
from foglearn.io import atomic_write, save_figure
from foglearn.theory.hierarchy import (
    HierarchyInstance,
    hierarchical_optimum,
    solve_augmented_numeric,
    solve_hierarchical_numeric,
)
from foglearn.theory.offloading import (
    named_graph,
    offloading_bracket,
    offloading_value,
    printed_bracket,
    scale_free_distribution,
    simulate_offloading_value,
)
from foglearn.theory.straggler import phi, simulate_queue_wait, straggler_capacity, target_phi
from foglearn.theory.violations import expected_violations, simulate_violations, uniform_capacity

# docs/model.md §3 reference numbers (printed beside ours; the tests check them).
REFERENCE_STRAGGLER = {(1.0, 10.0): (9.538, 1.005), (0.5, 20.0): (19.076, 0.503), (0.1, 100.0): (95.382, 0.1005)}
REFERENCE_SOJOURN = {(1.0, 10.0): 9.491}
REFERENCE_HIERARCHY = {
    (10, 1000, 0.5, 0.1, 0.05, 50): (0.983399, 0.003029),
    (5, 200, 0.3, 0.05, 0.1, 100): (0.800498, 0.048075),
    (5, 15, 0.2, 0.1, 0.05, 20): (0.0, 0.189883),
    (10, 10, 0.5, 0.1, 0.05, 50): (0.0, 0.119319),
}
REFERENCE_OFFLOADING = {"ba": 0.2986, "ws": 0.4160, "complete": 0.4091}
REFERENCE_VIOLATIONS = {"mean-field": 47.67, "exact": 42.50, "simulation": 42.39}
# Graph seeds that reproduce the reference numbers (docs/model.md §3) with networkx 3 generators
# (found by search; see docs).
BA_SEED = 1
WS_SEED = 0


def _table(header: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


def straggler_rows(customers: int, seed: int) -> list[list[str]]:
    rows = []
    for (s, mu), (c_spec, w_spec) in REFERENCE_STRAGGLER.items():
        C = straggler_capacity(s, mu)
        sim = simulate_queue_wait(C, mu, customers=customers, seed=seed)
        soj = straggler_capacity(s, mu, wait="sojourn") if s * mu > 1 else float("nan")
        soj_spec = REFERENCE_SOJOURN.get((s, mu))
        rows.append([f"{s:g}", f"{mu:g}", f"{C:.3f}", f"{c_spec}", f"{target_phi(s, mu):.6f}",
                     f"{phi(C, mu):.6f}", f"{sim.mean_wait:.4f} ± {sim.stderr:.4f}", f"{w_spec}",
                     f"{sim.z_score():+.2f}", f"{soj:.3f}" + (f" (reference {soj_spec})" if soj_spec else ""),
                     f"{sim.mean_sojourn:.4f} ± {sim.sojourn_stderr:.4f}"])
    return rows


def hierarchy_rows() -> list[list[str]]:
    rows = []
    for args, (r_spec, s_spec) in REFERENCE_HIERARCHY.items():
        h = HierarchyInstance(*args)
        r, s = hierarchical_optimum(*args)
        num = solve_hierarchical_numeric(*args)
        aug = solve_augmented_numeric(*args)
        pl = solve_hierarchical_with_planner(*args)
        planner = f"({pl.r:.6f}, {pl.s:.6f}) vs scipy ({aug.r:.6f}, {aug.s:.6f})"
        rows.append([", ".join(f"{a:g}" for a in args), f"{h.threshold:.2f}",
                     "(13)-(14)" if h.D >= h.threshold else "r = 0 boundary",
                     f"({r:.6f}, {s:.6f})", f"({r_spec}, {s_spec})", f"({num.r:.6f}, {num.s:.6f})", planner])
    return rows


def offloading_rows(replications: int, seed: int) -> list[list[str]]:
    graphs = {"ba": named_graph("ba", 200, m=2, seed=BA_SEED), "ws": named_graph("ws", 50, k=10, p=0.1, seed=WS_SEED),
              "complete": named_graph("complete", 10), "er": named_graph("er", 100, p=0.05, seed=0)}
    rows = []
    for key, g in graphs.items():
        sim = simulate_offloading_value(g, 1.0, replications=replications, seed=seed)
        rows.append([g.name, f"{offloading_value(g, 1.0):.4f}", f"{sim.mean_saving:.4f} ± {sim.stderr:.4f}",
                     f"{sim.z_score():+.2f}", str(REFERENCE_OFFLOADING.get(key, "—"))])
    return rows


def violation_rows(replications: int, seed: int) -> list[list[str]]:
    rows = []
    for g in (named_graph("ba", 200, m=2, seed=BA_SEED), named_graph("ba", 200, m=1, seed=BA_SEED),
              named_graph("ws", 50, k=10, p=0.1, seed=WS_SEED)):
        cap = uniform_capacity(0.0, 4.0)
        mf = expected_violations(g, 1.0, cap, "mean-field")
        ex = expected_violations(g, 1.0, cap, "exact")
        sim = simulate_violations(g, 1.0, cap, replications=replications, seed=seed)
        ref = REFERENCE_VIOLATIONS
        spec = (f"{ref['mean-field']} / {ref['exact']} / {ref['simulation']}"
                if g.name.startswith("BA(200, 2") else "—")
        rows.append([g.name, f"{mf:.2f}", f"{ex:.4f}", f"{sim.mean:.2f} ± {sim.stderr:.2f}",
                     f"{sim.z_score(ex):+.1f}", spec])
    return rows


def write_report(out: str | os.PathLike[str] = "docs", *, customers: int = 20_000_000,
                 replications: int = 20_000, seed: int = 0, plots: bool = True) -> Path:
    """Compute every Theorem 2/4/5/6 number of docs/model.md §3 beside ours and write ``out/theory.md``
    with plots in ``out/theory/*.png``. Returns the Markdown path. Deterministic for a seed."""
    t0 = time.perf_counter()
    out_dir = Path(out)
    fig_dir = out_dir / "theory"
    md: list[str] = []
    md.append("# Theorems 2, 4, 5 and 6: closed forms beside their numerical checks\n")
    md.append(
        "Generated by `foglearn theory report --out docs` "
        f"(seed {seed}, {customers:,} queue points per case, {replications:,} Monte Carlo runs for Theorems 5-6). "
        "docs/model.md §3 values are shown beside ours; `z` is (simulation - formula) / standard error. "
        "The API is `foglearn.theory` (`straggler_capacity`, `hierarchical_optimum`, `offloading_value`, "
        "`expected_violations` and the `simulate_*` counterparts).\n"
    )
    md.append("## Theorem 2 — capacity under exp(μ) stragglers (D/M/1)\n")
    md.append(
        "φ(C) is the root in (0,1) of φ = exp(-μ(1-φ)/C) (C < μ); W_q = φ/(μ(1-φ)). Queue-wait form: "
        "C* = μ/((1+x)·log1p(1/x)), x = σμ. Sojourn form (wait + service ≤ σ, needs σμ > 1): "
        "C* = 1/(σ·ln(σμ/(σμ-1))). The simulation runs the Lindley recursion W ← max(0, W + S - 1/C) "
        "with S ~ exp(μ), after a 100,000-point warm-up, with batch-means standard errors. "
        "All three reference cases have σμ = 10, so they are the same queue in different time units; "
        "with one seed the simulated waits scale exactly (as the reference's 1.005 / 0.503 / 0.1005 do).\n"
    )
    md.append(_table(["σ", "μ", "C* (queue)", "reference", "φ target", "φ(C*)", "simulated W_q", "reference W_q", "z",
                      "C* (sojourn)", "simulated sojourn"], straggler_rows(customers, seed)) + "\n")
    md.append("## Theorem 4 — hierarchical optimum with the square-root error\n")
    md.append(
        "J(r, s) = n(1-r-s)Dc + nsD(c_{n+1}+c_t) + nγ/sqrt((1-r-s)D) + γ/sqrt(snD). (13)-(14) hold for "
        "D ≥ (γ/2c)^{2/3} + (γ/(2(c_{n+1}+c_t)))^{2/3}/n; below it r* = 0 and s* solves ∂J(0,s)/∂s = 0. "
        "'scipy' minimises J directly (SLSQP, several starts). The planner column solves the same instance "
        "as a Scenario (n leaves + server, T = 2) with `foglearn.planning.plan(scenario, error=\"sqrt\")`; "
        "the server collects 1 point at t = 1 so that its error term γ/sqrt(G) counts (docs/model.md §2 counts "
        "only devices with D_i(t) > 0), so it is compared with scipy on that augmented objective. In the "
        "interior case that point shifts the optimum by exactly 1/(nD) from s to r.\n"
    )
    md.append(_table(["n, D, c, c_{n+1}, c_t, γ", "D threshold", "regime", "(r*, s*) ours", "reference",
                      "scipy on J", "planner (augmented)"], hierarchy_rows()) + "\n")
    md.append("## Theorem 5 — value of offloading\n")
    md.append(
        "The bracket of (15) equals C·k/(2(k+2)) exactly; the saving is Σ_k N(k)·Ck/(2(k+2)). Graphs are "
        f"networkx generators: Barabási–Albert(200, 2, seed={BA_SEED}) and Watts–Strogatz(50, 10, 0.1, "
        f"seed={WS_SEED}) are the seeds that reproduce the reference values (other seeds give 0.295-0.300 and "
        "0.4158-0.4163). The simulation draws c_i(t), c_j(t+1) ~ U(0, 1) and applies Theorem 3.\n"
    )
    md.append(_table(["graph", "closed form (C = 1)", "simulation", "z", "reference"],
                     offloading_rows(replications, seed)) + "\n")
    ks = [5, 20, 40, 50, 60, 100]
    md.append("The printed alternating sum in float64 (each term correctly rounded, summed left to right) "
              "against the exact value (the rational-arithmetic sum equals k/(2(k+2)) for every k):\n")
    md.append(_table(["k", "printed (15), float64", "k/(2(k+2))"],
                     [[str(k), f"{printed_bracket(k):.6g}", f"{offloading_bracket(k):.6f}"] for k in ks]) + "\n")
    sf_rows = []
    for gam in (2.2, 2.5, 2.8):
        for form in ("normalised", "printed"):
            d = scale_free_distribution(gam, 100, 1, form=form)
            sf_rows.append([f"{gam:g}", form, f"{offloading_value(d, 1.0):.4f}",
                            f"{offloading_value(d, 1.0, printed=True):.4g}"])
    md.append("Scale-free N(k) on k = 1..100 (normalised k^-γ by default; the printed Γk^(1-γ) with Γ "
              "normalising), stable form vs the printed sum:\n")
    md.append(_table(["γ", "N(k)", "saving (stable)", "saving (printed sum, float64)"], sf_rows) + "\n")
    md.append("## Theorem 6 — expected capacity violations\n")
    md.append(
        "D = 1, C̃ ~ U(0, 4D), i.i.d. costs, c_ij = 0, each device sends its data to the cheapest device of its "
        "closed neighbourhood. 'printed' is (16) (expected load into the CDF, P_o(k) = k/(k+1)); 'exact' "
        "averages the CDF over the load's distribution (the generating function of docs/model.md §3, "
        "Gauss–Legendre in u); the simulation samples costs and capacities. The exact form is exact on trees "
        "(BA with m = 1): there the "
        "simulation agrees within its error. On BA(200, 2) triangles correlate neighbours and the generating "
        "function overestimates by about 0.08 (0.2%; 42.41 ± 0.006 with 200,000 runs), still 60 times "
        "closer than the printed mean-field form. The reference corrected value 42.50 is our 42.4945 rounded up. "
        "Watts–Strogatz graphs are strongly clustered (many triangles): there the tree assumption fails badly "
        "and only the simulation is reliable (last row).\n"
    )
    md.append(_table(["graph", "printed (16)", "exact (corrected)", "simulation", "z vs exact",
                      "reference printed / corrected / simulation"], violation_rows(replications, seed)) + "\n")
    if plots:
        from foglearn.theory.plots import (
            plot_hierarchy,
            plot_offloading,
            plot_straggler,
            plot_violations,
        )

        figs = {
            "straggler.png": ("Theorem 2: C*(σ, μ) and the queue simulation",
                              lambda: plot_straggler(customers=min(customers, 4_000_000), seed=seed)),
            "hierarchy.png": ("Theorem 4: r*, s* against D", plot_hierarchy),
            "offloading.png": ("Theorem 5: saving against C, and the printed sum's failure",
                               lambda: plot_offloading(replications=max(100, replications // 50), seed=seed)),
            "violations.png": ("Theorem 6: printed, corrected and simulated violations",
                               lambda: plot_violations(replications=max(500, replications // 5), seed=seed)),
        }
        md.append("## Plots\n")
        for name, (title, make) in figs.items():
            save_figure(make(), fig_dir / name)
            md.append(f"### {title}\n\n![{title}](theory/{name})\n")
    md.append(f"_Computed in {time.perf_counter() - t0:.1f} s._\n")
    path = out_dir / "theory.md"
    atomic_write(path, "\n".join(md))
    return path
