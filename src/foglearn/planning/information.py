"""Estimated information (paper Sec. V-A, docs/model.md §4): plan window ``l`` from window ``l−1``.

Windows have length ``W``. The first window has no movement (everything kept). For window
``l ≥ 1`` the server turns what the devices reported in window ``l − 1``
(:class:`~foglearn.planning.rules.WindowMeasurements`) into a stationary estimate with
:func:`foglearn.planning.rules.estimate_window` — the one place that says how ``D̂``, the costs,
the capacities, activity and link availability are estimated — and plans it. The simulator
(:func:`windowed_fractions`) and the Flower app (:class:`foglearn.flower.strategy.FogStrategy`)
both plan a window with :func:`plan_window`, so from the same reports they plan the same movement.
The planned fractions are then executed on the real scenario with
:func:`~foglearn.planning.plan.realise`: excess is dropped, charged and counted as violations.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from foglearn.network.scenario import Scenario
from foglearn.planning.rules import WindowMeasurements, estimate_window, keep_unplanned

__all__ = ["estimated_scenario", "observe", "plan_window", "windowed_fractions"]

#: ``solve(estimate) -> (keep, offload)``: plans one estimated scenario.
Solve = Callable[[Scenario], tuple[np.ndarray, np.ndarray]]


def observe(scenario: Scenario, start: int, stop: int, usable: np.ndarray | None = None) -> WindowMeasurements:
    """What the devices of ``scenario`` report in slots ``start..stop-1``.

    The same reports a Flower ClientApp sends: an active device reports ``D_i(t)``, ``c_i(t)``,
    ``f_i(t)``, ``C_i(t)`` and, for each out-link, ``c_ij(t)``, ``C_ij(t)`` and whether the link is
    usable (:meth:`Scenario.usable_links`, computed on the whole horizon: ``usable`` if given);
    an inactive device reports nothing. ``nan`` marks what was not reported.
    """
    sl = slice(start, stop)
    active = scenario.active[sl]
    up = (scenario.usable_links() if usable is None else usable)[sl]
    src_active = active[:, scenario.src]

    def dev(a: np.ndarray) -> np.ndarray:
        return np.where(active, a[sl].astype(np.float64), np.nan)

    def link(a: np.ndarray) -> np.ndarray:
        return np.where(src_active, a[sl].astype(np.float64), np.nan)

    return WindowMeasurements(collected=dev(scenario.collected), proc_cost=dev(scenario.proc_cost),
                              error_weight=dev(scenario.error_weight), proc_cap=dev(scenario.proc_cap),
                              link_cost=link(scenario.link_cost), link_cap=link(scenario.link_cap),
                              link_up=up & src_active, slots=list(range(start, stop)))


def estimated_scenario(m: WindowMeasurements, src: np.ndarray, dst: np.ndarray, slots: int,
                       info: dict | None = None) -> Scenario:
    """The scenario window ``l`` is planned on: the estimate of window ``l − 1``, repeated ``slots`` times."""
    est = estimate_window(m, src, dst)

    def rep(a: np.ndarray) -> np.ndarray:
        return np.repeat(a[None, :], slots, axis=0)

    return Scenario(collected=rep(est.collected), proc_cost=rep(est.proc_cost), error_weight=rep(est.error_weight),
                    src=src, dst=dst, link_cost=rep(est.link_cost), proc_cap=rep(est.proc_cap),
                    link_cap=rep(est.link_cap), link_up=rep(est.link_up), active=rep(est.active),
                    info={"estimated_from": list(m.slots), **(info or {})})


def plan_window(m: WindowMeasurements, src: np.ndarray, dst: np.ndarray, start: int, stop: int, horizon: int,
                solve: Solve, info: dict | None = None) -> tuple[np.ndarray, np.ndarray, Scenario]:
    """Planned ``(keep [rows, n], offload [rows, E], estimate)`` for slots ``start..stop-1``.

    The estimate spans one slot more than the window unless the window ends the horizon, so that
    the window's last slot may offload into the next one (a plan of exactly ``W`` slots could
    never offload in its last slot, and with ``W = 1`` never at all). Devices planned with
    ``D̂_i = 0`` keep what they collect (:func:`~foglearn.planning.rules.keep_unplanned`).
    """
    rows = stop - start
    est = estimated_scenario(m, src, dst, rows + (1 if stop < horizon else 0), info)
    keep, offload = solve(est)
    keep = keep_unplanned(np.asarray(keep)[:rows], est.collected[:rows])
    return keep, np.asarray(offload)[:rows].copy(), est


def windowed_fractions(scenario: Scenario, window: int, solve: Solve) -> tuple[np.ndarray, np.ndarray]:
    """Planned ``(keep, offload)`` for ``scenario`` under windowed estimates; ``solve`` plans one estimate."""
    T, n, E = scenario.horizon, scenario.n_devices, scenario.n_edges
    keep = np.zeros((T, n))
    offload = np.zeros((T, E))
    keep[:min(window, T)] = 1.0  # first window: no movement
    usable = scenario.usable_links()
    for a in range(window, T, window):
        b = min(a + window, T)
        keep[a:b], offload[a:b], _ = plan_window(observe(scenario, a - window, a, usable), scenario.src,
                                                 scenario.dst, a, b, T, solve)
    return keep, offload
