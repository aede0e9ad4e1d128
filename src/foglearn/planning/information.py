"""Estimated information (SPEC §4): plan window ``l`` from the averages observed in window ``l−1``.

Windows have length ``W``. For window ``l ≥ 1`` every per-device and per-link quantity
(``D``, ``c_i``, ``c_ij``, ``f``, ``C_i``, ``C_ij``, the up-fraction of each link, activity) is
averaged over the slots of window ``l−1``; the resulting stationary estimate is planned for the
``W`` slots of window ``l`` (links are treated as up where they were up in more than half of the
observed slots). The first window has no movement (everything kept). The planned fractions are
then executed on the real scenario with :func:`~foglearn.planning.plan.realise`: excess is dropped,
charged and counted as violations.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from foglearn.network.scenario import Scenario

__all__ = ["estimate_window", "windowed_fractions"]


def estimate_window(observed: Scenario, length: int) -> Scenario:
    """A ``length``-slot scenario repeating the time-averages of ``observed``."""
    def rep(a):
        return np.repeat(a.mean(axis=0, keepdims=True), length, axis=0)
    D = np.round(rep(observed.collected.astype(np.float64))).astype(np.int64)
    active = rep(observed.active.astype(np.float64)) > 0.5
    D = np.where(active, D, 0)
    return Scenario(collected=D, proc_cost=rep(observed.proc_cost), error_weight=rep(observed.error_weight),
                    src=observed.src, dst=observed.dst, link_cost=rep(observed.link_cost),
                    proc_cap=rep(observed.proc_cap), link_cap=rep(observed.link_cap),
                    link_up=rep(observed.link_up.astype(np.float64)) > 0.5, active=active,
                    info={"estimated_from": observed.info.get("window", None)})


def windowed_fractions(scenario: Scenario, window: int,
                       solve: Callable[[Scenario], tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Planned ``(keep, offload)`` for ``scenario`` under windowed estimates; ``solve`` plans one estimate."""
    T, n, E = scenario.horizon, scenario.n_devices, scenario.n_edges
    keep = np.zeros((T, n))
    offload = np.zeros((T, E))
    keep[:min(window, T)] = 1.0  # first window: no movement
    for a in range(window, T, window):
        b = min(a + window, T)
        est = estimate_window(scenario.window(a - window, a), b - a)
        k, o = solve(est)
        keep[a:b] = k
        offload[a:b] = o
    return keep, offload
