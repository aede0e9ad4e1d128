"""Flower deployment of the paper's loop: a ServerApp/ClientApp pair over Flower's Message API.

* :mod:`foglearn.flower.server_app` — ``app`` (ServerApp), :func:`run_server`
* :mod:`foglearn.flower.client_app` — ``app`` (ClientApp): one device, one slot per message
* :mod:`foglearn.flower.strategy` — :class:`FogStrategy` (plan, relay, aggregate by ``H_i``)
* :mod:`foglearn.flower.simulation` — :func:`run_flower`, the simulation runtime in-process
* :mod:`foglearn.flower.config` — :class:`FlowerRunConfig`

Importing this package does not import Flower or torch.
"""

from __future__ import annotations

from typing import Any

__all__ = ["FlowerRunConfig", "run_flower"]


def __getattr__(name: str) -> Any:
    if name == "FlowerRunConfig":
        from foglearn.flower.config import FlowerRunConfig
        return FlowerRunConfig
    if name == "run_flower":
        from foglearn.flower.simulation import run_flower
        return run_flower
    raise AttributeError(f"module 'foglearn.flower' has no attribute {name!r}")
