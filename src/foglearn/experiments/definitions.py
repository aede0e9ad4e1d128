"""The paper's evaluation (Sec. V) as named experiments: Table II, Table III, Figs. 4–8.

Each :class:`Experiment` lists its runs as ``(setting label, RunConfig)`` pairs — seeds ×
settings — and turns the finished records into a report :class:`~foglearn.experiments.report.Section`
with tables, plots and the checks of the paper's claims. Open points follow SPEC §4:

* "Network-aware learning" in Figs. 4–8 and Table II is setting B (perfect information, no
  capacities, linear error model = Theorem 3) unless stated.
* Table III's estimated information plans window ``l`` from window ``l−1``'s averages, window = τ.
* Fig. 6's cost panel uses SPEC's time-decaying error weight ``f_i(t) = U(0,1)/sqrt(slot within
  the period)`` with period τ (``error_decay_period = τ``): under the linear model with i.i.d.
  ``f`` the planned costs do not depend on τ at all.
* Fig. 8 computes costs only (as the paper's figure), on SPEC §5's LTE/WiFi stand-in profiles and,
  with ``--traces DIR``, on the user's traces intersected with each topology.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from foglearn.experiments import paper
from foglearn.experiments import plots as P
from foglearn.experiments.config import ExperimentOptions, RunConfig
from foglearn.experiments.report import Check, Section, pct
from foglearn.experiments.tables import aggregate, fmt, markdown_table, pm, write_csv

Grid = list[tuple[str, RunConfig]]


@dataclass(frozen=True)
class Experiment:
    """A named experiment: its runs (``configs``) and its report (``summarise``)."""

    name: str
    title: str
    configs: Callable[[ExperimentOptions], Grid]
    summarise: Callable[[list[dict[str, Any]], list[dict[str, Any]], ExperimentOptions, Path], Section]


def _seeded(opts: ExperimentOptions, label: str, cfg: RunConfig, trained_only: bool = False) -> Grid:
    """``cfg`` for every seed; ``train`` only for the seeds that train (:meth:`ExperimentOptions.trains`).

    A run that does not train keeps ``passes = 1`` and ``eval_every = 1`` so its key does not
    depend on the training budget. ``trained_only`` drops the seeds that do not train.
    """
    grid: Grid = []
    for s in opts.run_seeds:
        train = cfg.train and opts.trains(s)
        if trained_only and not train:
            continue
        c = cfg.replace(seed=s, train=train)
        if not train:
            c = c.replace(passes=1, eval_every=1)
        grid.append((label, c))
    return grid


def _by_setting(rows: list[dict[str, Any]], order: Sequence[str]) -> list[dict[str, Any]]:
    agg = {r["setting"]: r for r in aggregate(rows, ["setting"])}
    return [agg[s] for s in order if s in agg]


def _trained(rows: Sequence[dict[str, Any]]) -> bool:
    return all(math.isfinite(r.get("accuracy", float("nan"))) for r in rows) and bool(rows)


def _acc(r: dict[str, Any]) -> str:
    return pm(r, "accuracy", 4, scale=100, suffix=" %")


def _lr(rows: Sequence[dict[str, Any]]) -> str:
    """The learning rate(s) η of the trained runs, e.g. ``0.01``."""
    rates = sorted({float(r.get("lr", 0.01)) for r in rows if str(r.get("train")) in ("True", "true", "1")} or {0.01})
    return "/".join(f"{x:g}" for x in rates)


def _budget(rows: Sequence[dict[str, Any]]) -> str:
    """A sentence on the training budget behind the accuracies (vs the paper's)."""
    passes = sorted({int(r.get("passes", 1)) for r in rows if str(r.get("train")) in ("True", "true", "1")} or {1})
    p = "/".join(str(x) for x in passes)
    return (f"Accuracy differences are mostly the training budget: we train {p} pass(es) over the horizon "
            f"(one SGD step per device and slot, η = {_lr(rows)}, T slots per pass), while the paper trains its baselines "
            "\"until convergence\" and does not state its network-aware budget.")


def _dedupe_budget(lines: list[str], budget: str) -> list[str]:
    return [ln.replace(" " + budget, "") for ln in lines] + [budget]


def _cost_columns(r: dict[str, Any]) -> list[str]:
    return [pm(r, "processing", 4), pm(r, "transfer", 4), pm(r, "discard", 4), pm(r, "total", 4), pm(r, "unit", 3)]


# ------------------------------------------------------------------------------------ Table II
TABLE2_METHODS = ("centralised", "federated", "network-aware")


def table2_configs(opts: ExperimentOptions) -> Grid:
    grid: Grid = []
    for model in opts.table2_models:
        for method in TABLE2_METHODS:
            cfg = opts.base(method=method, model=model, train=True)
            grid += _seeded(opts.replace(train=True), f"{model}/{method}", cfg, trained_only=True)
    return grid


def table2_summarise(records: list[dict[str, Any]], rows: list[dict[str, Any]], opts: ExperimentOptions,
                     out: Path) -> Section:
    order = [f"{m}/{k}" for m in ("mlp", "cnn") for k in TABLE2_METHODS]
    agg = _by_setting(rows, order)
    write_csv(out / "summary.csv", agg)
    by = {r["setting"]: r for r in agg}
    table_rows = []
    for method in TABLE2_METHODS:
        cells = [method]
        for model in ("mlp", "cnn"):
            r = by.get(f"{model}/{method}")
            cells += [_acc(r) if r else "–", f"{paper.TABLE2[method][model]:.2f} %"]
        table_rows.append(cells)
    body = markdown_table(["method", "MLP (ours)", "MLP (paper)", "CNN (ours)", "CNN (paper)"], table_rows)
    values = {(m, k): (by[f"{m}/{k}"]["accuracy"], by[f"{m}/{k}"]["accuracy_std"])
              for m in ("mlp", "cnn") for k in TABLE2_METHODS if f"{m}/{k}" in by}
    plot = P.accuracy_bars(out / "table2.png", ["mlp", "cnn"], TABLE2_METHODS, values, "Table II: test accuracy")
    checks = []
    for model in ("mlp", "cnn"):
        try:
            na, fed, cen = (by[f"{model}/{k}"]["accuracy"] for k in ("network-aware", "federated", "centralised"))
        except KeyError:
            continue
        checks.append(Check(f"{model.upper()}: network-aware matches federated accuracy (within 3 points)",
                            abs(na - fed) <= 0.03, f"network-aware {pct(na, 2)} vs federated {pct(fed, 2)} "
                            f"(paper: {paper.TABLE2['network-aware'][model]:.2f} % vs {paper.TABLE2['federated'][model]:.2f} %)"))
        checks.append(Check(f"{model.upper()}: centralised is the most accurate (ties within 0.1 point count)",
                            cen >= max(na, fed) - 0.001,
                            f"centralised {pct(cen, 2)}, federated {pct(fed, 2)}, network-aware {pct(na, 2)}"))
    body += ("\n\nAll three methods see the same data stream (the points the scenario allocates over the horizon), "
             f"the same η = {_lr(rows)}, seed and budget (one SGD step per slot, the horizon replayed `passes` times). "
             "**Centralised**: one server collects Σ_i D_i(t) and takes one step per slot on all of it. "
             "**Federated**: no movement (G_i(t) = D_i(t)), aggregation every slot (τ = 1). **Network-aware**: "
             "setting B (perfect information, no capacities), τ = 10. The paper trains its baselines \"until "
             "convergence\" and does not state the budget.")
    diffs = []
    same = []
    for model in ("mlp", "cnn"):
        cen, fed = by.get(f"{model}/centralised"), by.get(f"{model}/federated")
        if cen and fed and abs(cen["accuracy"] - fed["accuracy"]) < 0.005:
            same.append(f"{model.upper()} {pct(cen['accuracy'], 2)} vs {pct(fed['accuracy'], 2)}")
    if same:
        diffs.append("Centralised and federated coincide (" + "; ".join(same) + "). With τ = 1 and eq. (4)'s weights "
                     "H_i = D_i, averaging one local step per device is exactly one centralised step on the slot's "
                     "data: Σ_i (D_i/ΣD)(w − η∇L_i) = w − η∇L. At an equal budget the two baselines are the same "
                     "algorithm; the paper's 1.6–2.3-point gap comes from training each \"until convergence\".")
    budget = _budget(rows)
    for model in ("mlp", "cnn"):
        for method in TABLE2_METHODS:
            r = by.get(f"{model}/{method}")
            if r is None or not math.isfinite(r["accuracy"]):
                continue
            ours, theirs = 100 * r["accuracy"], paper.TABLE2[method][model]
            diffs.append(f"{model.upper()} {method}: {ours:.2f} % here vs {theirs:.2f} % in the paper "
                         f"({ours - theirs:+.2f} points). {budget}")
    return Section("table2", "Table II — accuracy of centralised, federated and network-aware learning",
                   body, [plot], checks, differences=_dedupe_budget(diffs, budget))


# ------------------------------------------------------------------------------------ Table III
SETTINGS = ("A", "B", "C", "D")


def setting_config(opts: ExperimentOptions, setting: str, **changes: Any) -> RunConfig:
    """Table III's settings A–D (window of the estimated information = τ = ``period``)."""
    base = opts.base(**changes)
    if setting == "A":
        return base.replace(movement=False)
    if setting == "B":
        return base
    if setting == "C":
        return base.replace(information=base.period)
    if setting == "D":
        return base.replace(information=base.period, capacities=True)
    raise ValueError(f"setting = {setting!r}: must be one of {SETTINGS}")


#: Beyond the paper: the same settings when costs persist (``synthetic(persistence=0.8)``), costs only.
PERSISTENCE = 0.8
PERSISTENT = tuple(f"{s}·p" for s in SETTINGS)


def table3_configs(opts: ExperimentOptions) -> Grid:
    grid = [item for s in SETTINGS for item in _seeded(opts, s, setting_config(opts, s))]
    return grid + [item for s, label in zip(SETTINGS, PERSISTENT)
                   for item in _seeded(opts, label, setting_config(opts, s, persistence=PERSISTENCE, train=False))]


def _persistent_block(rows: list[dict[str, Any]]) -> tuple[str, list[Check]]:
    """Table III's settings when each device's and link's cost persists over time (beyond the paper)."""
    agg = _by_setting(rows, PERSISTENT)
    by = {r["setting"]: r for r in agg}
    if not all(p in by for p in PERSISTENT):
        return "", []
    table = markdown_table(["setting", "process", "transfer", "discard", "total", "unit", "offloaded", "discarded",
                            "violations"],
                           [[f"{s} (persistent)", *_cost_columns(by[p]), pct(by[p]["offload_rate"]),
                             pct(by[p]["discard_rate"]), fmt(by[p]["violations"], 3)]
                            for s, p in zip(SETTINGS, PERSISTENT)])
    A, B, C, D = (by[p]["unit"] for p in PERSISTENT)
    share = (A - C) / (A - B) if A > B else float("nan")
    body = (f"\n\n**Beyond the paper: costs that persist.** SPEC §4 redraws every cost each slot, so a window's "
            f"averages cannot predict the next window. With `synthetic(persistence={PERSISTENCE})` each device and "
            f"link keeps a base cost (cost(t) = {PERSISTENCE}·base + {1 - PERSISTENCE:.1f}·U(t): same range and mean), "
            "as measured devices do. The same settings, costs only:\n\n" + table)
    check = Check("With persistent costs, estimated information (C) recovers most (≥ 50 %) of perfect "
                  "information's saving", share >= 0.5,
                  f"unit cost A {fmt(A)}, B {fmt(B)}, C {fmt(C)}, D {fmt(D)}: C recovers {share:.0%} of A − B")
    return body, [check]


def table3_summarise(records: list[dict[str, Any]], rows: list[dict[str, Any]], opts: ExperimentOptions,
                     out: Path) -> Section:
    agg = _by_setting(rows, SETTINGS)
    write_csv(out / "summary.csv", agg)
    by = {r["setting"]: r for r in agg}
    table_rows = []
    for s in SETTINGS:
        if s not in by:
            continue
        r, p = by[s], paper.TABLE3[s]
        table_rows.append([f"{s} (ours)", _acc(r), *_cost_columns(r), pct(r["offload_rate"]), pct(r["discard_rate"]),
                           fmt(r["violations"], 3)])
        table_rows.append([f"{s} (paper)", f"{p['accuracy']:.2f} %", *(fmt(float(p[k]), 4) for k in
                           ("processing", "transfer", "discard", "total", "unit")), "", "", ""])
    body = markdown_table(["setting", "accuracy", "process", "transfer", "discard", "total", "unit",
                           "offloaded", "discarded", "violations"], table_rows)
    body += "\n\nSettings: " + "; ".join(f"**{s}** {paper.TABLE3_SETTINGS[s]}" for s in SETTINGS) + "."
    from foglearn.experiments.runner import _dataset_size

    collected = np.mean([float(r["collected"]) for r in rows])
    top = max(1, _dataset_size(opts.dataset) // (10 * opts.run_horizon))
    body += (f"\n\nEach run collects {collected:,.0f} datapoints on average (D_i(t) ~ U{{0, …, {top}}} = "
             f"⌊|D_V|/(nT)⌋ with |D_V| = {_dataset_size(opts.dataset):,}); "
             "the paper's totals imply about 1/7 of that volume (its A row: 2078 / 0.48 ≈ 4,300 points), and its "
             "transfer cost per offloaded point exceeds the 1/n = 0.1 that c_ij ~ U(0, 1/n) allows (SPEC §4). "
             "Absolute costs therefore differ; compare unit costs, orderings and ratios.")
    plot = P.table3_figure(out / "table3.png", [s for s in SETTINGS if s in by], [by[s] for s in SETTINGS if s in by])
    persistent_body, persistent_checks = _persistent_block(rows)
    body += persistent_body
    checks: list[Check] = []
    if all(s in by for s in SETTINGS):
        A, B, C, D = (by[s] for s in SETTINGS)
        drop = 1 - B["unit"] / A["unit"]
        checks.append(Check("Network-aware (B) costs far less than no movement (A): unit cost drop ≥ 40 %",
                            drop >= 0.40, f"unit cost {fmt(A['unit'])} → {fmt(B['unit'])}, a {pct(drop)} drop "
                            "(paper: 0.48 → 0.26, −46 %)"))
        cd = C["unit"] / B["unit"] - 1
        checks.append(Check("Estimated information (C) is close to perfect (B): unit cost within 15 %",
                            abs(cd) <= 0.15, f"C {fmt(C['unit'])} vs B {fmt(B['unit'])} ({cd:+.1%}); "
                            "paper: 0.23 vs 0.26"))
        checks.append(Check("Capacities (D) raise the unit cost over C but stay well below A (≥ 25 % below)",
                            D["unit"] > C["unit"] and D["unit"] <= 0.75 * A["unit"],
                            f"D {fmt(D['unit'])} vs C {fmt(C['unit'])} and A {fmt(A['unit'])} "
                            f"({1 - D['unit'] / A['unit']:.1%} below A); paper: 0.24 vs 0.23 and 0.48; "
                            f"{fmt(D['violations'])} capacity violations per run on average"))
        if _trained([A, B, C, D]):
            checks.append(Check("Accuracy of B is comparable to no movement A (within 3 points) or better",
                                B["accuracy"] >= A["accuracy"] - 0.03,
                                f"A {pct(A['accuracy'], 2)}, B {pct(B['accuracy'], 2)}, C {pct(C['accuracy'], 2)}, "
                                f"D {pct(D['accuracy'], 2)} (paper: 82.89, 90.24, 89.24, 82.10 %)"))
            checks.append(Check("Estimated information keeps B's accuracy (C within 3 points of B)",
                                abs(C["accuracy"] - B["accuracy"]) <= 0.03,
                                f"C {pct(C['accuracy'], 2)} vs B {pct(B['accuracy'], 2)}"))
    diffs = []
    for s_ in SETTINGS:
        if s_ not in by:
            continue
        r, p = by[s_], paper.TABLE3[s_]
        line = (f"Setting {s_}: unit cost {fmt(r['unit'])} here vs {p['unit']:.2f} in the paper; total "
                f"{fmt(r['total'])} vs {p['total']:,.0f} because our runs collect ≈{fmt(r['collected'])} points "
                f"(the paper ≈{p['total'] / p['unit']:,.0f})")
        if math.isfinite(r["accuracy"]):
            line += f"; accuracy {pct(r['accuracy'], 2)} vs {p['accuracy']:.2f} %"
        diffs.append(line + ".")
    if "A" in by and "B" in by:
        ra, rb = by["A"]["unit"] / paper.TABLE3["A"]["unit"], by["B"]["unit"] / paper.TABLE3["B"]["unit"]
        diffs.append(f"Our A unit cost is {ra:.2f}× the paper's and our B unit cost {rb:.2f}× the paper's: under the "
                     "stated distributions (c_i ~ U(0,1), c_ij ~ U(0,1/n), f ~ U(0,1)) SPEC §4 finds B ≈ 0.12 and "
                     "A ≈ 0.49, so the paper's B–D rows cannot be matched in absolute terms — its transfer cost per "
                     "offloaded point (0.140 in B) exceeds the largest c_ij = 1/n = 0.1. The A → B ordering and "
                     "relative drop are what can be compared.")
    if all(k in by for k in ("A", "B", "C")) and by["C"]["unit"] > 1.15 * by["B"]["unit"]:
        A, B, C = by["A"]["unit"], by["B"]["unit"], by["C"]["unit"]
        share = (A - C) / (A - B) if A > B else float("nan")
        gain = (f"recovers {share:.0%} of" if share > 0 else "loses all of")
        diffs.append(f"Estimated information {gain} perfect information's saving "
                     f"(unit cost A {fmt(A)}, C {fmt(C)}, B {fmt(B)}), not the paper's near-parity. With SPEC §4's protocol "
                     "the costs c_i(t), c_ij(t), f_i(t) are drawn i.i.d. every slot, so the previous window's "
                     "averages say nothing about which device or link is cheap in the current slot; the gain of "
                     "setting B comes entirely from per-slot variation that a window-average plan cannot see. "
                     "The paper's C result needs costs that persist over time (as measured costs do).")
    if all(k in by for k in ("A", "B")) and _trained([by["A"], by["B"]]) and by["B"]["accuracy"] < by["A"]["accuracy"]:
        A, B = by["A"], by["B"]
        diffs.append(f"B is less accurate than A here ({pct(B['accuracy'], 2)} vs {pct(A['accuracy'], 2)}), the "
                     "opposite of the paper. Eq. (3) takes one SGD step per device and slot whatever G_i(t) is, so "
                     "concentrating data on cheap devices does not buy more steps: in B only "
                     f"{pct(B['step_rate'], 0)} of device-slots take a step (A: {pct(A['step_rate'], 0)}) and "
                     f"{pct(B['discard_rate'])} of the points are discarded, so the averaged model makes less "
                     "progress per aggregation at this budget.")
    if _trained(agg):
        diffs.append(_budget(rows))
    return Section("table3", "Table III — costs and accuracy of settings A–D", body, [plot], checks + persistent_checks,
                   differences=diffs)


# ------------------------------------------------------------------------------------ Fig. 4
def fig4_configs(opts: ExperimentOptions) -> Grid:
    return _seeded(opts.replace(train=True), "B", setting_config(opts, "B", train=True), trained_only=True)


def device_loss(record: dict[str, Any]) -> np.ndarray:
    """``[T, n]`` per-device training loss of a trained record (NaN where a device did not train)."""
    curves = (record.get("training") or {}).get("curves", {})
    if "device_loss" not in curves:
        raise KeyError(f"run {record['key']}: no per-device training loss was recorded")
    return np.array(curves["device_loss"], dtype=float)


def loss_trend(loss: np.ndarray) -> tuple[float, float, float, float, float]:
    """Fig. 4's trend of a ``[S, n]`` loss array over the first and last 10 % of the slots in which
    some device trained: mean loss over devices (first, last), std across devices (first, last),
    and the share of devices whose own mean loss is lower at the end than at the start."""
    import warnings

    rows = loss[np.isfinite(loss).any(axis=1)]
    k = max(1, rows.shape[0] // 10)
    early, late = rows[:k], rows[-k:]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mean_e, mean_l = float(np.nanmean(early)), float(np.nanmean(late))
        std_e = float(np.nanmean(np.nanstd(early, axis=1)))
        std_l = float(np.nanmean(np.nanstd(late, axis=1)))
        dev_e, dev_l = np.nanmean(early, axis=0), np.nanmean(late, axis=0)
    ok = np.isfinite(dev_e) & np.isfinite(dev_l)
    share = float((dev_l[ok] < dev_e[ok]).mean()) if ok.any() else float("nan")
    return mean_e, mean_l, std_e, std_l, share


def fig4_summarise(records: list[dict[str, Any]], rows: list[dict[str, Any]], opts: ExperimentOptions,
                   out: Path) -> Section:
    losses = [device_loss(r) for r in records]
    first = losses[0]
    plot = P.device_loss_figure(out / "fig4.png", first, f"Fig. 4: training loss per device (seed {records[0]['config']['seed']})")
    stats = [loss_trend(L) for L in losses]
    s = np.array(stats)
    summary = [{"seed": r["config"]["seed"], "mean_first": a, "mean_last": b, "std_first": c, "std_last": d,
                "devices_decreasing": e} for r, (a, b, c, d, e) in zip(records, stats)]
    write_csv(out / "summary.csv", summary)
    body = markdown_table(["", "first 10 % of slots", "last 10 % of slots"], [
        ["mean loss over devices", fmt(float(s[:, 0].mean())), fmt(float(s[:, 1].mean()))],
        ["std of loss across devices", fmt(float(s[:, 2].mean())), fmt(float(s[:, 3].mean()))]])
    body += (f"\n\nAveraged over {len(records)} seed(s); setting B (n = 10, τ = 10). "
             f"{pct(float(s[:, 4].mean()), 0)} of devices end with a lower loss than they started with.")
    diffs = []
    if s[:, 3].mean() >= s[:, 2].mean():
        diffs.append(f"The spread across devices grows (std {fmt(float(s[:, 2].mean()))} → {fmt(float(s[:, 3].mean()))}) "
                     "instead of shrinking: every device starts from the same w(0) at chance level, so the first "
                     "losses coincide (≈ ln 10 = 2.30); as the model learns, devices whose batches differ in size "
                     "and content see different losses.")
    checks = [
        Check("Average training loss drops over time", bool(s[:, 1].mean() < s[:, 0].mean()),
              f"{fmt(float(s[:, 0].mean()))} → {fmt(float(s[:, 1].mean()))}"),
        Check("Spread of the loss across devices drops over time", bool(s[:, 3].mean() < s[:, 2].mean()),
              f"std {fmt(float(s[:, 2].mean()))} → {fmt(float(s[:, 3].mean()))}"),
    ]
    return Section("fig4", "Fig. 4 — per-device training loss over time", body, [plot], checks, differences=diffs)


# ------------------------------------------------------------------------------------ Figs. 5–7
FIG5_N = (5, 10, 20, 30, 40, 50)
FIG6_TAU = (1, 5, 10, 20, 50, 100)
FIG7_RHO = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


def fig5_configs(opts: ExperimentOptions) -> Grid:
    return [item for n in FIG5_N for item in _seeded(opts, str(n), opts.base(n_devices=n))]


def fig6_configs(opts: ExperimentOptions) -> Grid:
    return [item for tau in FIG6_TAU
            for item in _seeded(opts, str(tau), opts.base(period=tau, error_decay_period=tau))]


def fig7_configs(opts: ExperimentOptions) -> Grid:
    return [item for rho in FIG7_RHO
            for item in _seeded(opts, f"{rho:g}", opts.base(topology="random", rho=rho))]


def _sweep_table(xname: str, xs: Sequence[Any], agg: list[dict[str, Any]]) -> str:
    out = []
    for x, r in zip(xs, agg):
        u = P.unit_components(r)
        out.append([f"{x:g}", pct(r["offload_rate"]),
                    f"{pct(r['slot_offload_min'], 0)}–{pct(r['slot_offload_max'], 0)}",
                    pct(r["process_rate"]), pct(r["discard_rate"]),
                    fmt(u["processing"]), fmt(u["transfer"]), fmt(u["discard"]), pm(r, "unit", 3), _acc(r)])
    return markdown_table([xname, "offloaded", "range over slots", "processed", "discarded", "process/pt",
                           "transfer/pt", "discard/pt", "unit cost", "accuracy"], out)


def _step_sentence(xname: str, xs: Sequence[Any], agg: list[dict[str, Any]]) -> list[str]:
    """A data-driven note on why accuracy moves: eq. (3) takes one step per device and slot with
    G_i(t) > 0, so accuracy follows the share of device-slots that step and the discarded share."""
    if not _trained(agg) or not all(math.isfinite(r.get("step_rate", float("nan"))) for r in agg):
        return []
    acc = [r["accuracy"] for r in agg]
    steps = [r["step_rate"] for r in agg]
    rho = _spearman(steps, acc)
    return [f"Accuracy follows the share of device-slots that take an SGD step (Spearman {rho:+.2f} over {xname}: "
            + ", ".join(f"{x:g}: {pct(st, 0)} → {pct(a)}" for x, st, a in zip(xs, steps, acc))
            + "). Eq. (3) takes one step per device and slot whatever G_i(t) is, so moving data onto fewer, "
            "cheaper devices (and discarding) leaves fewer local steps per aggregation at a fixed budget."]


def _monotone_share(values: Sequence[float]) -> float:
    d = np.diff(np.asarray(values, dtype=float))
    return float((d >= -1e-9).mean()) if d.size else 1.0


def _spearman(x: Sequence[float], y: Sequence[float]) -> float:
    rx = np.argsort(np.argsort(x)).astype(float)
    ry = np.argsort(np.argsort(y)).astype(float)
    if rx.std() == 0 or ry.std() == 0:
        return 0.0
    return float(np.corrcoef(rx, ry)[0, 1])


def fig5_summarise(records: list[dict[str, Any]], rows: list[dict[str, Any]], opts: ExperimentOptions,
                   out: Path) -> Section:
    agg = _by_setting(rows, [str(n) for n in FIG5_N])
    write_csv(out / "summary.csv", agg)
    xs = [int(r["setting"]) for r in agg]
    panels = ["offload", "costs"] + (["accuracy"] if _trained(agg) else [])
    plot = P.sweep_figure(out / "fig5.png", xs, agg, "number of devices n", panels)
    body = _sweep_table("n", xs, agg)
    off = [r["offload_rate"] for r in agg]
    unit = [r["unit"] for r in agg]
    checks = [
        Check("Offloading rate rises with n", off[-1] > off[0] and _monotone_share(off) >= 0.8,
              "offloading rate " + ", ".join(f"n={x}: {pct(o)}" for x, o in zip(xs, off)) +
              " (paper: over 80 % at n = 50)"),
        Check("Offloading rate exceeds 80 % at the largest n (paper: n = 50)", off[-1] > 0.80,
              f"n = {xs[-1]}: {pct(off[-1])}"),
        Check("Unit cost falls with n", unit[-1] < unit[0] and _spearman(xs, unit) < 0,
              "unit cost " + ", ".join(f"{fmt(u)}" for u in unit)),
    ]
    comp = {k: [P.unit_components(r)[k] for r in agg] for k in ("processing", "transfer", "discard")}
    checks.append(Check("Per-point processing and discard costs rise with n while transfer drives the saving",
                        comp["processing"][-1] > comp["processing"][0] and comp["discard"][-1] > comp["discard"][0],
                        "per point, n = " + f"{xs[0]} → {xs[-1]}: " + "; ".join(
                            f"{k} {fmt(v[0])} → {fmt(v[-1])}" for k, v in comp.items())))
    if _trained(agg):
        acc = [r["accuracy"] for r in agg]
        checks.append(Check("Accuracy rises slightly with n (paper: 88 → 92 %)", acc[-1] > acc[0],
                            "accuracy " + ", ".join(pct(a) for a in acc)))
    return Section("fig5", "Fig. 5 — effect of the number of devices n", body, [plot], checks,
                   differences=_step_sentence("n", xs, agg))


def _tau_sentence(xs: Sequence[int], agg: list[dict[str, Any]], lr: str) -> list[str]:
    """Why accuracy moves with τ here: fewer aggregations and, under the decaying error weight,
    more discarded points as τ grows."""
    if not _trained(agg):
        return []
    return [("Accuracy falls monotonically with τ here instead of peaking: "
             + ", ".join(f"τ = {x}: {pct(r['accuracy'])} with {pct(r['discard_rate'], 0)} of points discarded"
                         for x, r in zip(xs, agg))
             + ". Two effects add up: with the decaying error weight a longer period makes discarding cheaper, "
             f"so less data is trained on; and at this budget (one step per slot, η = {lr}) more frequent "
             "averaging still helps. The paper's peak at τ ≈ 20 needs local models that become \"steady\" "
             "between aggregations, which one SGD step per slot does not reach at this budget.")]


def fig6_summarise(records: list[dict[str, Any]], rows: list[dict[str, Any]], opts: ExperimentOptions,
                   out: Path) -> Section:
    agg = _by_setting(rows, [str(t) for t in FIG6_TAU])
    write_csv(out / "summary.csv", agg)
    xs = [int(r["setting"]) for r in agg]
    panels = ["costs"] + (["accuracy"] if _trained(agg) else [])
    plot = P.sweep_figure(out / "fig6.png", xs, agg, "aggregation period τ", panels, logx=False)
    body = _sweep_table("τ", xs, agg)
    body += ("\n\nThe error weight follows SPEC §4's decaying schedule f_i(t) = U(0,1)/sqrt(slot within the "
             "period τ) (`error_decay_period = τ`). Without it the linear-model plan, and hence every cost, "
             "would not depend on τ at all; with it discarding late in a long period is cheap, which is the "
             "paper's explanation of its cost panel. The aggregation period of training is τ as well.")
    if opts.run_horizon < max(FIG6_TAU):
        body += (f" With the horizon T = {opts.run_horizon}, periods τ ≥ T aggregate only at the end of the run.")
    unit = [r["unit"] for r in agg]
    checks = [Check("Costs fall with τ", unit[-1] < unit[0] and _spearman(xs, unit) < 0,
                    "unit cost " + ", ".join(f"τ={x}: {fmt(u)}" for x, u in zip(xs, unit)))]
    comp = {k: [P.unit_components(r)[k] for r in agg] for k in ("processing", "transfer", "discard")}
    tr = comp["transfer"]
    checks.append(Check("Per-point processing and discard costs fall with τ while transfer stays about constant "
                        "(within 25 %)",
                        comp["processing"][-1] < comp["processing"][0] and comp["discard"][-1] < comp["discard"][0]
                        and max(tr) <= 1.25 * min(tr),
                        f"per point, τ = {xs[0]} → {xs[-1]}: " + "; ".join(
                            f"{k} {fmt(v[0])} → {fmt(v[-1])}" for k, v in comp.items())))
    if _trained(agg):
        acc = [r["accuracy"] for r in agg]
        best = int(np.argmax(acc))
        checks.append(Check("Accuracy peaks at an intermediate τ (paper: about τ = 20)", 0 < best < len(acc) - 1,
                            "accuracy " + ", ".join(f"τ={x}: {pct(a)}" for x, a in zip(xs, acc)) +
                            f"; best at τ = {xs[best]}"))
    return Section("fig6", "Fig. 6 — effect of the aggregation period τ", body, [plot], checks,
                   differences=_tau_sentence(xs, agg, _lr(rows)))


def _theorem5_sentence(xs: Sequence[float], agg: list[dict[str, Any]]) -> list[str]:
    """Theorem 5 (SPEC §3): with k out-links a point is processed at the cheapest of k+1 uniform
    costs, saving C·k/(2(k+2)); the expected out-degree of the random digraph is ρ(n−1)."""
    n = int(agg[0].get("n_devices", 10))
    lo, hi = agg[1] if len(agg) > 1 else agg[0], agg[-1]
    k_lo, k_hi = float(lo["setting"]) * (n - 1), float(hi["setting"]) * (n - 1)
    return [f"The paper's own Theorem 5 predicts a dependence on ρ: the saving per point grows like k/(2(k+2)) "
            f"with the out-degree k = ρ(n−1), from {k_lo / (2 * (k_lo + 2)):.3f} at ρ = {float(lo['setting']):g} "
            f"(k ≈ {k_lo:.1f}) to {k_hi / (2 * (k_hi + 2)):.3f} at ρ = {float(hi['setting']):g} (k = {k_hi:.0f}); "
            f"our unit cost moves from {fmt(lo['unit'])} to {fmt(hi['unit'])} accordingly. With n = {n} devices "
            "a sparse random graph leaves most devices one or two links, so costs are not robust to ρ here."]


def fig7_summarise(records: list[dict[str, Any]], rows: list[dict[str, Any]], opts: ExperimentOptions,
                   out: Path) -> Section:
    agg = _by_setting(rows, [f"{r:g}" for r in FIG7_RHO])
    write_csv(out / "summary.csv", agg)
    xs = [float(r["setting"]) for r in agg]
    panels = ["processed", "offload", "costs"] + (["accuracy"] if _trained(agg) else [])
    plot = P.sweep_figure(out / "fig7.png", xs, agg, "link probability ρ", panels)
    body = _sweep_table("ρ", xs, agg)
    body += "\n\nRandom directed graph: each ordered pair is a link with probability ρ, drawn once per run."
    unit = np.array([r["unit"] for r in agg])
    above = unit[np.array(xs) > 0.1 + 1e-9]
    spread = float((above.max() - above.min()) / above.mean()) if above.size else float("nan")
    off = [r["offload_rate"] for r in agg]
    checks = [
        Check("Costs are robust to ρ above 0.1 (unit cost varies by ≤ 20 % of its mean over ρ ≥ 0.2)",
              spread <= 0.20, f"unit cost over ρ ≥ 0.2 spans {fmt(float(above.min()))}–{fmt(float(above.max()))} "
              f"({spread:.1%} of the mean); at ρ = 0.1: {fmt(float(unit[0]))}"),
        Check("Nodes offload less as ρ falls", off[0] < off[-1] and _spearman(xs, off) > 0,
              "offloading rate " + ", ".join(f"ρ={x:g}: {pct(o)}" for x, o in zip(xs, off))),
    ]
    if _trained(agg):
        acc = [r["accuracy"] for r in agg]
        hi = [a for x, a in zip(xs, acc) if x > 0.5]
        lo = [a for x, a in zip(xs, acc) if x <= 0.5]
        checks.append(Check("Accuracy tends to improve with ρ (mean over ρ > 0.5 above mean over ρ ≤ 0.5)",
                            bool(hi and lo and np.mean(hi) > np.mean(lo)),
                            f"{pct(float(np.mean(lo)))} for ρ ≤ 0.5 vs {pct(float(np.mean(hi)))} for ρ > 0.5"))
    return Section("fig7", "Fig. 7 — effect of connectivity ρ (random topology)", body, [plot], checks,
                   differences=_theorem5_sentence(xs, agg) + _step_sentence("ρ", xs, agg))


# ------------------------------------------------------------------------------------ Fig. 8
FIG8_TOPOLOGIES = ("social", "hierarchical", "full")
FIG8_MEDIA = ("lte", "wifi")


def fig8_configs(opts: ExperimentOptions) -> Grid:
    grid: Grid = []
    media: list[tuple[str, dict[str, Any]]] = [(m, {"profile": m}) for m in FIG8_MEDIA]
    if opts.traces_dir:
        media.append(("traces", {"profile": "traces", "traces_dir": str(Path(opts.traces_dir).resolve()),
                                 "traces_digest": traces_digest(opts.traces_dir)}))
    for medium, fields in media:
        for topo in FIG8_TOPOLOGIES:
            grid += _seeded(opts, f"{medium}/{topo}", opts.base(topology=topo, train=False, **fields))
    return grid


def traces_digest(directory: str | Path) -> str:
    """sha256 (16 hex digits) of ``nodes.csv`` + ``links.csv``, so changed traces are rerun."""
    import hashlib

    h = hashlib.sha256()
    for name in ("nodes.csv", "links.csv"):
        path = Path(directory) / name
        if not path.is_file():
            raise FileNotFoundError(f"--traces {directory}: {name} is missing (SPEC §5 needs nodes.csv and links.csv)")
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def fig8_summarise(records: list[dict[str, Any]], rows: list[dict[str, Any]], opts: ExperimentOptions,
                   out: Path) -> Section:
    media = list(FIG8_MEDIA) + (["traces"] if opts.traces_dir else [])
    order = [f"{m}/{t}" for m in media for t in FIG8_TOPOLOGIES]
    agg = _by_setting(rows, order)
    write_csv(out / "summary.csv", agg)
    by = {tuple(r["setting"].split("/")): r for r in agg}
    plot = P.topology_figure(out / "fig8.png", media, FIG8_TOPOLOGIES, by)
    table = []
    for (m, t), r in by.items():
        table.append([m, t, *_cost_columns(r), pct(r["offload_rate"]), pct(r["discard_rate"])])
    body = markdown_table(["medium", "topology", "process", "transfer", "discard", "total", "unit", "offloaded",
                           "discarded"], table)
    body += ("\n\nCosts only (the paper's Fig. 8 shows no accuracy). The paper's Raspberry Pi measurements are not "
             "public; LTE and WiFi are SPEC §5's documented stand-ins (one third strong devices with per-point cost "
             "U(0.05, 0.15), the rest U(0.8, 1.2); link cost LogNormal(ln 0.05, 0.5) for LTE, LogNormal(ln 0.5, 0.3) "
             "for WiFi; f ~ U(0, 2)). Setting B (perfect information, no capacities), n = 10.")
    if opts.traces_dir:
        body += (f" The `traces` rows replay the measured traces in `{opts.traces_dir}` (SPEC §5), their links "
                 "intersected with each topology.")
    checks = []
    for t in FIG8_TOPOLOGIES:
        if ("lte", t) in by and ("wifi", t) in by:
            lte, wifi = by[("lte", t)], by[("wifi", t)]
            checks.append(Check(f"{t}: LTE is processing-dominated", lte["processing"] > max(lte["transfer"], lte["discard"]),
                                f"LTE process {fmt(lte['processing'])}, transfer {fmt(lte['transfer'])}, "
                                f"discard {fmt(lte['discard'])}"))
            checks.append(Check(f"{t}: WiFi is transfer-dominated", wifi["transfer"] > max(wifi["processing"], wifi["discard"]),
                                f"WiFi process {fmt(wifi['processing'])}, transfer {fmt(wifi['transfer'])}, "
                                f"discard {fmt(wifi['discard'])}"))
            checks.append(Check(f"{t}: WiFi costs more than LTE in total", wifi["total"] > lte["total"],
                                f"WiFi {fmt(wifi['total'])} vs LTE {fmt(lte['total'])}"))
    if all(k in by for k in (("lte", "social"), ("lte", "hierarchical"), ("wifi", "social"), ("wifi", "hierarchical"))):
        ls, lh = by[("lte", "social")]["total"], by[("lte", "hierarchical")]["total"]
        checks.append(Check("LTE: social and hierarchical cost about the same (within 10 %)",
                            abs(ls - lh) <= 0.10 * max(ls, lh),
                            f"social {fmt(ls)} vs hierarchical {fmt(lh)} ({ls / lh - 1:+.0%})"))
        ws, wh = by[("wifi", "social")], by[("wifi", "hierarchical")]
        checks.append(Check("WiFi: hierarchical has higher transfer and lower discard cost than social",
                            wh["transfer"] > ws["transfer"] and wh["discard"] < ws["discard"],
                            f"transfer {fmt(wh['transfer'])} vs {fmt(ws['transfer'])}, discard "
                            f"{fmt(wh['discard'])} vs {fmt(ws['discard'])}"))
    return Section("fig8", "Fig. 8 — topologies under LTE-like and WiFi-like costs", body, [plot], checks)


EXPERIMENTS: dict[str, Experiment] = {
    "table2": Experiment("table2", "Table II", table2_configs, table2_summarise),
    "table3": Experiment("table3", "Table III", table3_configs, table3_summarise),
    "fig4": Experiment("fig4", "Fig. 4", fig4_configs, fig4_summarise),
    "fig5": Experiment("fig5", "Fig. 5", fig5_configs, fig5_summarise),
    "fig6": Experiment("fig6", "Fig. 6", fig6_configs, fig6_summarise),
    "fig7": Experiment("fig7", "Fig. 7", fig7_configs, fig7_summarise),
    "fig8": Experiment("fig8", "Fig. 8", fig8_configs, fig8_summarise),
}
NAMES: tuple[str, ...] = (*EXPERIMENTS, "all")
