"""The paper's evaluation (Tu et al., INFOCOM 2020, Sec. V): its reported numbers, and one
experiment module per table or figure (``table2``, ``table3``, ``fig4`` … ``fig8``).

The numbers below are the only copy of the paper's values in foglearn: the experiments' claims
and reports quote them from here. Table II and Table III are copied from the paper's text; figure
values are only as precise as the text states them (the figures themselves carry no numbers we
can read exactly).
"""

from __future__ import annotations

#: Table II: test accuracy (%) by method and model.
TABLE2: dict[str, dict[str, float]] = {
    "centralised": {"mlp": 92.58, "cnn": 98.39},
    "federated": {"mlp": 90.33, "cnn": 96.81},
    "network-aware": {"mlp": 90.34, "cnn": 96.49},
}

#: Table III: accuracy (%) and costs of settings A–D (CNN, n = 10, T = 100, fully connected).
TABLE3: dict[str, dict[str, float]] = {
    "A": {"accuracy": 82.89, "processing": 2078, "transfer": 0, "discard": 0, "total": 2078, "unit": 0.48},
    "B": {"accuracy": 90.24, "processing": 367, "transfer": 620, "discard": 166, "total": 1153, "unit": 0.26},
    "C": {"accuracy": 89.24, "processing": 326, "transfer": 606, "discard": 67, "total": 999, "unit": 0.23},
    "D": {"accuracy": 82.10, "processing": 225, "transfer": 835, "discard": 14, "total": 1074, "unit": 0.24},
}

TABLE3_SETTINGS: dict[str, str] = {
    "A": "no movement (offloading and discarding disabled)",
    "B": "network-aware, perfect information, no capacities",
    "C": "network-aware, estimated information (window = τ), no capacities",
    "D": "network-aware, estimated information + capacities",
}

#: The numbers the text states about Figs. 5–7: Fig. 5's offloading rate "over 80 % at n = 50" and
#: accuracy "from 88 % to 92 %"; Fig. 6's accuracy peak "until about τ = 20"; Fig. 7's costs robust
#: "for ρ > 0.1" and accuracy improving "for ρ > 0.5".
FIG5: dict[str, float] = {"offload_rate": 0.80, "n": 50, "accuracy_first": 0.88, "accuracy_last": 0.92}
FIG6: dict[str, float] = {"best_tau": 20}
FIG7: dict[str, float] = {"robust_above": 0.1, "accuracy_above": 0.5}

#: What the text says about each figure.
FIGURES: dict[str, str] = {
    "fig4": "Training loss of every device decreases over time; the mean and the spread across devices drop.",
    "fig5": "Unit cost falls steadily with n; the offloading rate rises to over 80 % at n = 50; processing and "
            "discard costs rise while transfer drives the saving; accuracy rises slightly from 88 % to 92 %.",
    "fig6": "A larger τ gives a smaller total unit cost (processing and discard fall, transfer about constant); "
            "accuracy improves only until about τ = 20.",
    "fig7": "Costs are reasonably robust to ρ (for ρ > 0.1); nodes offload less as ρ falls; accuracy tends to "
            "improve with ρ (for ρ > 0.5); the discarded fraction rises slightly "
            "as ρ falls while the discard cost falls.",
    "fig8": "LTE: processing dominates for every topology, social and hierarchical cost about the same. WiFi: "
            "transfer dominates, total cost substantially higher; hierarchical has higher transfer and lower discard "
            "cost than social.",
}


#: The paper's evaluation, one module per table or figure, registered in the paper's order; any
#: other module of this package (not starting with ``_``) is an experiment too, registered after.
ORDER: tuple[str, ...] = ("table2", "table3", "fig4", "fig5", "fig6", "fig7", "fig8")


def _load() -> None:
    import importlib
    import pkgutil

    found = sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))
    for name in (*ORDER, *(m for m in found if m not in ORDER)):
        importlib.import_module(f"{__name__}.{name}")


_load()
