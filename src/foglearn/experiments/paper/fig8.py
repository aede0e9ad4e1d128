"""Fig. 8: costs on the social, hierarchical and fully connected topologies under LTE-like and
WiFi-like costs (setting B, n = 10, costs only, as the paper's figure).

The paper's Raspberry Pi measurements are not public: LTE and WiFi are docs/model.md §5's stand-in
profiles; with ``--traces DIR`` the user's measured traces are replayed too, their links
intersected with each topology.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from foglearn.experiments import plots as P
from foglearn.experiments.config import ExperimentOptions
from foglearn.experiments.definitions import (
    EXPERIMENTS,
    Experiment,
    Grid,
    Results,
    Summary,
    by_setting,
    cost_columns,
    seeded,
)
from foglearn.experiments.report import Claim, pct, render
from foglearn.experiments.tables import lean_summary, markdown_table, write_csv

TOPOLOGIES = ("social", "hierarchical", "full")
MEDIA = ("lte", "wifi")

TEXT = {
    "costs_only": (
        "Costs only (the paper's Fig. 8 shows no accuracy). The paper's Raspberry Pi measurements "
        "are not public; LTE and WiFi are docs/model.md §5's documented stand-ins (one third "
        "strong devices with per-point cost U(0.05, 0.15), the rest U(0.8, 1.2); link cost "
        "LogNormal(ln 0.05, 0.5) for LTE, LogNormal(ln 0.5, 0.3) for WiFi; f ~ U(0, 2)). Setting B "
        "(perfect information, no capacities), n = {n}."
    ),
    "traces": (
        " The `traces` rows replay the measured traces in `{traces}` (docs/model.md §5), their "
        "links intersected with each topology."
    ),
}

CLAIMS = (
    *(
        c
        for t in TOPOLOGIES
        for c in (
            Claim(
                "{topology}: LTE is processing-dominated",
                "lte_processing",
                ">",
                "lte_other",
                "LTE process {lte_processing:fmt}, transfer {lte_transfer:fmt}, discard "
                "{lte_discard:fmt}",
                scope=t,
            ),
            Claim(
                "{topology}: WiFi is transfer-dominated",
                "wifi_transfer",
                ">",
                "wifi_other",
                "WiFi process {wifi_processing:fmt}, transfer {wifi_transfer:fmt}, discard "
                "{wifi_discard:fmt}",
                scope=t,
            ),
            Claim(
                "{topology}: WiFi costs more than LTE in total",
                "wifi_total",
                ">",
                "lte_total",
                "WiFi {wifi_total:fmt} vs LTE {lte_total:fmt}",
                scope=t,
            ),
        )
    ),
    Claim(
        "LTE: social and hierarchical cost about the same (within {threshold:pct0})",
        "lte_social_vs_hier",
        "<=",
        0.10,
        "social {lte_social:fmt} vs hierarchical {lte_hier:fmt} ({lte_social_ratio:+.0%})",
    ),
    Claim(
        "WiFi: hierarchical has higher transfer and lower discard cost than social",
        "wifi_hier_transfer",
        ">",
        "wifi_social_transfer",
        "transfer {wifi_hier_transfer:fmt} vs {wifi_social_transfer:fmt}, discard "
        "{wifi_hier_discard:fmt} vs {wifi_social_discard:fmt}",
        also=(("wifi_hier_discard", "<", "wifi_social_discard"),),
    ),
)


def configs(opts: ExperimentOptions, topologies: tuple[str, ...]) -> Grid:
    grid: Grid = []
    media: list[tuple[str, dict[str, Any]]] = [(m, {"profile": m}) for m in MEDIA]
    if opts.traces_dir:
        media.append(
            (
                "traces",
                {
                    "profile": "traces",
                    "traces_dir": str(Path(opts.traces_dir).resolve()),
                    "traces_digest": traces_digest(opts.traces_dir),
                },
            )
        )
    for medium, fields in media:
        for topo in topologies:
            grid += seeded(
                opts, f"{medium}/{topo}", opts.base(topology=topo, train=False, **fields)
            )
    return grid


def traces_digest(directory: str | Path) -> str:
    """sha256 (16 hex digits) of ``nodes.csv`` + ``links.csv``, so changed traces are rerun."""
    h = hashlib.sha256()
    for name in ("nodes.csv", "links.csv"):
        path = Path(directory) / name
        if not path.is_file():
            raise FileNotFoundError(
                f"--traces {directory}: {name} is missing "
                "(docs/model.md §5 needs nodes.csv and links.csv)"
            )
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def summarise(res: Results) -> Summary:
    topologies = res.params["topologies"]
    media = list(MEDIA) + (["traces"] if res.options.traces_dir else [])
    agg = by_setting(res.rows, [f"{m}/{t}" for m in media for t in topologies])
    write_csv(res.out / "summary.csv", lean_summary(agg))
    by = {tuple(r["setting"].split("/")): r for r in agg}
    plot = P.topology_figure(res.out / "fig8.png", media, topologies, by)
    body = markdown_table(
        [
            "medium",
            "topology",
            "process",
            "transfer",
            "discard",
            "total",
            "unit",
            "offloaded",
            "discarded",
        ],
        [
            [m, t, *cost_columns(r), pct(r["offload_rate"]), pct(r["discard_rate"])]
            for (m, t), r in by.items()
        ],
    )
    body += "\n\n" + render(TEXT["costs_only"], n=res.options.n_devices)
    if res.options.traces_dir:
        body += render(TEXT["traces"], traces=res.options.traces_dir)
    return Summary(body, [plot], measure(by, topologies))


def measure(
    by: dict[tuple[str, ...], dict[str, Any]], topologies: tuple[str, ...]
) -> dict[str, Any]:
    """Per topology (a scope): each medium's components, total and largest other component; and
    the social-vs-hierarchical comparisons."""
    values: dict[str, Any] = {}
    for t in topologies:
        if ("lte", t) in by and ("wifi", t) in by:
            v: dict[str, Any] = {"topology": t}
            for m in MEDIA:
                r = by[(m, t)]
                v.update({f"{m}_{k}": r[k] for k in ("processing", "transfer", "discard", "total")})
            v["lte_other"] = max(v["lte_transfer"], v["lte_discard"])
            v["wifi_other"] = max(v["wifi_processing"], v["wifi_discard"])
            values[t] = v
    if all(
        k in by
        for k in (
            ("lte", "social"),
            ("lte", "hierarchical"),
            ("wifi", "social"),
            ("wifi", "hierarchical"),
        )
    ):
        ls, lh = by[("lte", "social")]["total"], by[("lte", "hierarchical")]["total"]
        ws, wh = by[("wifi", "social")], by[("wifi", "hierarchical")]
        values.update(
            lte_social=ls,
            lte_hier=lh,
            lte_social_vs_hier=abs(ls - lh) / max(ls, lh),
            lte_social_ratio=ls / lh - 1,
            wifi_hier_transfer=wh["transfer"],
            wifi_social_transfer=ws["transfer"],
            wifi_hier_discard=wh["discard"],
            wifi_social_discard=ws["discard"],
        )
    return values


EXPERIMENTS.add(
    "fig8",
    Experiment(
        "Fig. 8 — topologies under LTE-like and WiFi-like costs", configs, summarise, CLAIMS
    ),
    "costs of three topologies under LTE-like and WiFi-like costs",
    topologies=TOPOLOGIES,
)
