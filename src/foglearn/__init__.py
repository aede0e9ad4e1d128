"""foglearn: network-aware distributed learning in fog networks.

Implements Tu et al., "Network-Aware Optimization of Distributed Learning for Fog Computing"
(INFOCOM 2020): describe a fog network (:mod:`foglearn.network`), plan data movement
(:mod:`foglearn.planning`), train real models by executing a plan (:mod:`foglearn.learning`),
reproduce the paper (:mod:`foglearn.experiments`), evaluate its theorems (:mod:`foglearn.theory`)
and deploy on Flower (:mod:`foglearn.flower`).
"""

from __future__ import annotations

from typing import Any

from foglearn.errors import FoglearnError, InputError, RunError, SolverError

__version__ = "0.1.0"
__all__ = ["FoglearnError", "InputError", "RunError", "Scenario", "SolverError", "plan", "synthetic", "train",
           "__version__"]


def __getattr__(name: str) -> Any:
    # Lazy: importing foglearn must not import torch or the solvers.
    if name == "Scenario":
        from foglearn.network import Scenario
        return Scenario
    if name == "synthetic":
        from foglearn.network import synthetic
        return synthetic
    if name == "plan":
        from foglearn.planning import plan
        return plan
    if name == "train":
        from foglearn.learning import train
        return train
    raise AttributeError(f"module 'foglearn' has no attribute {name!r}")
