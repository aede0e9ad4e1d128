"""Figures for Theorems 2, 4, 5 and 6 (matplotlib, Agg backend; each function returns a Figure)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from foglearn.theory.hierarchy import (
    HierarchyInstance,
    hierarchical_optimum,
    solve_hierarchical_numeric,
)
from foglearn.theory.offloading import (
    named_graph,
    offloading_bracket,
    offloading_value,
    printed_bracket,
    simulate_offloading_value,
)
from foglearn.theory.straggler import simulate_queue_wait, straggler_capacity
from foglearn.theory.violations import expected_violations, simulate_violations, uniform_capacity


def _figure(ncols: int = 2) -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt.subplots(1, ncols, figsize=(5.2 * ncols, 4.0), constrained_layout=True)


def plot_straggler(mus: Sequence[float] = (5, 10, 20, 100), sim_points: Sequence[tuple[float, float]] = (),
                   customers: int = 2_000_000, seed: int = 0) -> Any:
    """Left: ``C*(σ, μ)`` against σ (queue-wait solid, sojourn dashed). Right: simulated ``W_q`` at ``C*``
    against the target σ (points ± 2 s.e.)."""
    fig, (ax, bx) = _figure()
    sig = np.logspace(-2.5, 1.0, 200)
    for mu in mus:
        line, = ax.plot(sig, [straggler_capacity(s, mu) for s in sig], label=f"μ = {mu:g}")
        ok = sig * mu > 1.0
        ax.plot(sig[ok], [straggler_capacity(s, mu, wait="sojourn") for s in sig[ok]], "--",
                color=line.get_color())
        ax.axhline(mu, color=line.get_color(), lw=0.5, alpha=0.5)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("waiting-time target σ (slots)")
    ax.set_ylabel("capacity C* (points / slot)")
    ax.set_title("Theorem 2: C*(σ, μ); dashed = sojourn form")
    ax.legend(fontsize=8)
    pts = list(sim_points) or [(0.1, 10.0), (0.3, 10.0), (1.0, 10.0), (3.0, 10.0), (1.0, 20.0), (0.5, 20.0)]
    for s, mu in pts:
        C = straggler_capacity(s, mu)
        r = simulate_queue_wait(C, mu, customers=customers, warmup=min(100_000, customers), seed=seed)
        bx.errorbar([s], [r.mean_wait], yerr=[2 * r.stderr], fmt="o", ms=4, capsize=3,
                    label=f"σ={s:g}, μ={mu:g}")
    lim = np.array([min(p[0] for p in pts) * 0.7, max(p[0] for p in pts) * 1.4])
    bx.plot(lim, lim, "k-", lw=0.8, label="W_q = σ")
    bx.set_xscale("log")
    bx.set_yscale("log")
    bx.set_xlabel("target σ")
    bx.set_ylabel("simulated mean wait in queue W_q")
    bx.set_title(f"D/M/1 simulation at C* ({customers:,} points, ±2 s.e.)")
    bx.legend(fontsize=7)
    return fig


def plot_hierarchy(n: int = 10, c: float = 0.5, c_server: float = 0.1, c_link: float = 0.05,
                   gamma: float = 50.0, D_values: Sequence[float] | None = None) -> Any:
    """``r*`` and ``s*`` against D: (13)-(14) as printed, the corrected optimum and scipy's solution."""
    fig, (ax, bx) = _figure()
    h = HierarchyInstance(n, 1000.0, c, c_server, c_link, gamma)
    Ds = np.asarray(D_values if D_values is not None else np.geomspace(2.0, 2000.0, 60))
    lp = (gamma / (2 * c)) ** (2 / 3)
    sp = (gamma / (2 * (c_server + c_link))) ** (2 / 3)
    r_printed = 1 - lp / Ds - sp / (n * Ds)
    s_printed = sp / (n * Ds)
    opt = np.array([hierarchical_optimum(n, D, c, c_server, c_link, gamma) for D in Ds])
    Dn = Ds[:: max(1, len(Ds) // 15)]
    num = np.array([[solve_hierarchical_numeric(n, D, c, c_server, c_link, gamma).r,
                     solve_hierarchical_numeric(n, D, c, c_server, c_link, gamma).s] for D in Dn])
    for axis, k, printed, name in ((ax, 0, r_printed, "r* (discarded)"), (bx, 1, s_printed, "s* (offloaded)")):
        axis.plot(Ds, printed, ":", color="grey", label="(13)-(14) as printed")
        axis.plot(Ds, opt[:, k], "-", label="corrected optimum")
        axis.plot(Dn, num[:, k], "o", ms=4, mfc="none", label="scipy on J(r, s)")
        axis.axvline(h.threshold, color="red", lw=0.8, ls="--", label=f"threshold D = {h.threshold:.1f}")
        axis.set_xscale("log")
        axis.set_xlabel("points per leaf D")
        axis.set_ylabel(name)
        axis.legend(fontsize=8)
    ax.set_ylim(-1.0, 1.05)
    ax.set_title(f"Theorem 4: n={n}, c={c:g}, c_n+1={c_server:g}, c_t={c_link:g}, γ={gamma:g}")
    bx.set_yscale("log")
    bx.set_title("offloaded fraction")
    return fig


def plot_offloading(C_values: Sequence[float] = (0.25, 0.5, 1.0, 2.0, 4.0), replications: int = 400,
                    seed: int = 0) -> Any:
    """Left: Theorem 5's saving against C on four graphs (lines) with Monte Carlo points (linear in C).
    Right: ``|bracket|`` of (15): stable ``k/(2(k+2))`` vs the printed alternating sum in floats."""
    fig, (ax, bx) = _figure()
    graphs = [named_graph("ba", 200, m=2, seed=1), named_graph("ws", 50, k=10, p=0.1, seed=0),
              named_graph("er", 100, p=0.05, seed=0), named_graph("complete", 10)]
    Cs = np.asarray(C_values, dtype=float)
    grid = np.linspace(0.0, Cs.max() * 1.05, 50)
    for g in graphs:
        line, = ax.plot(grid, [offloading_value(g, C) if C > 0 else 0.0 for C in grid], label=g.name)
        sims = [simulate_offloading_value(g, C, replications=replications, seed=seed) for C in Cs]
        ax.errorbar(Cs, [s.mean_saving for s in sims], yerr=[2 * s.stderr for s in sims], fmt="o", ms=4,
                    color=line.get_color())
    ax.set_xlabel("cost range C  (c_i ~ U(0, C))")
    ax.set_ylabel("average saving per device")
    ax.set_title("Theorem 5: value of offloading (lines: (15); points: simulation)")
    ax.legend(fontsize=8)
    ks = np.arange(1, 101)
    stable = offloading_bracket(ks, 1.0)
    printed = np.array([printed_bracket(int(k), 1.0) for k in ks])
    bx.semilogy(ks, np.abs(stable), "-", label="k/(2(k+2))  (stable)")
    bx.semilogy(ks, np.abs(printed), ".", ms=4, label="printed alternating sum, float64")
    bx.set_xlabel("neighbours k")
    bx.set_ylabel("|bracket of (15)|  (C = 1)")
    bx.set_title(f"printed (15) at k = 100: {printed[-1]:.3g}")
    bx.legend(fontsize=8)
    return fig


def plot_violations(graph: Any = None, D: float = 1.0, scales: Sequence[float] = (1, 1.5, 2, 3, 4, 6, 8),
                    replications: int = 4000, seed: int = 0) -> Any:
    """Expected violations against the capacity range ``a`` (``C̃ ~ U(0, a·D)``): printed mean-field (16),
    the corrected exact form and a simulation on the same graph; right: a tree (where exact is exact)."""
    fig, axes = _figure()
    graphs = [graph if graph is not None else named_graph("ba", 200, m=2, seed=1), named_graph("ba", 200, m=1, seed=1)]
    for axis, g in zip(axes, graphs):
        a = np.asarray(scales, dtype=float)
        mf = [expected_violations(g, D, uniform_capacity(0, s * D), "mean-field") for s in a]
        ex = [expected_violations(g, D, uniform_capacity(0, s * D), "exact") for s in a]
        sims = [simulate_violations(g, D, uniform_capacity(0, s * D), replications=replications, seed=seed) for s in a]
        axis.plot(a, mf, "s--", ms=4, label="printed (16), mean-field")
        axis.plot(a, ex, "-", label="corrected (generating function)")
        axis.errorbar(a, [s.mean for s in sims], yerr=[2 * s.stderr for s in sims], fmt="o", ms=4,
                      mfc="none", label=f"simulation ({replications} runs, ±2 s.e.)")
        axis.set_xlabel("capacity range a  (C̃ ~ U(0, a·D))")
        axis.set_ylabel("expected violated devices")
        axis.set_title(f"Theorem 6 on {getattr(g, 'name', '') or 'graph'}")
        axis.legend(fontsize=8)
    return fig
