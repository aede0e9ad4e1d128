"""Instance families that stress the square-root planner (tests and ``bench/planner.py``).

Each function returns a :class:`~foglearn.network.scenario.Scenario` drawn from one seed. They
are the worst cases known for :func:`foglearn.planning.sqrt.plan_sqrt`: sinks that want far more
than their own data make many sources over-subscribed at once (docs/model.md §2).

- :func:`short_of_data` — one point per device and slot, cheap processing ``c ~ U(0, 0.01)``,
  ``f ~ U(0.5, 1)``, full topology, ``c_ij ~ U(0, 1/n)``, no capacities: every device wants
  ~20 points and every source is wanted by every device of the next slot.
- :func:`tight_capacities` — the same appetite, with processing capacities ``C ~ U(0.3, 3)`` and
  link capacities ``C_ij ~ U(0, 0.5)`` that bind almost everywhere.
- :func:`links_down` — full topology with 90 % of the links down in each slot.
- :func:`extreme_weights` — ``f`` log-uniform over twelve decades (``1e-6`` … ``1e6``).
- :func:`hot_sink` — one device with free processing and a huge error weight that every other
  device can reach for free: everyone wants to send it their data.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from foglearn.network.scenario import Scenario

__all__ = ["FAMILIES", "extreme_weights", "hot_sink", "links_down", "short_of_data", "tight_capacities"]


def _full(n: int) -> tuple[np.ndarray, np.ndarray]:
    src, dst = np.nonzero(~np.eye(n, dtype=bool))
    return src.astype(np.int64), dst.astype(np.int64)


def short_of_data(n: int, horizon: int = 20, seed: int = 0) -> Scenario:
    """Every device short of data: ``D = 1``, ``c ~ U(0, 0.01)``, ``f ~ U(0.5, 1)``, full topology."""
    rng = np.random.default_rng(seed)
    src, dst = _full(n)
    return Scenario(collected=np.ones((horizon, n), np.int64), proc_cost=rng.uniform(0, 0.01, (horizon, n)),
                    error_weight=rng.uniform(0.5, 1, (horizon, n)), src=src, dst=dst,
                    link_cost=rng.uniform(0, 1 / n, (horizon, src.size)),
                    info={"family": "short_of_data", "seed": seed})


def tight_capacities(n: int, horizon: int = 20, seed: int = 0) -> Scenario:
    """Short of data with processing capacities ``U(0.3, 3)`` and link capacities ``U(0, 0.5)``."""
    rng = np.random.default_rng(seed)
    sc = short_of_data(n, horizon, seed)
    return sc.replace(proc_cap=rng.uniform(0.3, 3, (horizon, n)),
                      link_cap=rng.uniform(0, 0.5, (horizon, sc.n_edges)),
                      info={"family": "tight_capacities", "seed": seed})


def links_down(n: int, horizon: int = 20, seed: int = 0) -> Scenario:
    """Short of data on a full topology of which 90 % of the links are down in each slot."""
    rng = np.random.default_rng(seed)
    sc = short_of_data(n, horizon, seed)
    return sc.replace(link_up=rng.random((horizon, sc.n_edges)) >= 0.9,
                      info={"family": "links_down", "seed": seed})


def extreme_weights(n: int, horizon: int = 20, seed: int = 0) -> Scenario:
    """``D ~ U{1..3}``, ``c ~ U(0, 1)`` and ``f = 10^U(-6, 6)``: huge and tiny error weights side by side."""
    rng = np.random.default_rng(seed)
    src, dst = _full(n)
    return Scenario(collected=rng.integers(1, 4, (horizon, n)), proc_cost=rng.uniform(0, 1, (horizon, n)),
                    error_weight=10.0 ** rng.uniform(-6, 6, (horizon, n)), src=src, dst=dst,
                    link_cost=rng.uniform(0, 1 / n, (horizon, src.size)),
                    info={"family": "extreme_weights", "seed": seed})


def hot_sink(n: int, horizon: int = 20, seed: int = 0) -> Scenario:
    """Device 0 processes for free with ``f = 1000`` and free links into it; the rest ``c ~ U(0, 1)``."""
    rng = np.random.default_rng(seed)
    src, dst = _full(n)
    c = rng.uniform(0, 1, (horizon, n))
    f = rng.uniform(0, 1, (horizon, n))
    c[:, 0], f[:, 0] = 0.0, 1000.0
    cost = rng.uniform(0, 1 / n, (horizon, src.size))
    cost[:, dst == 0] = 0.0
    return Scenario(collected=rng.integers(1, 9, (horizon, n)), proc_cost=c, error_weight=f, src=src, dst=dst,
                    link_cost=cost, info={"family": "hot_sink", "seed": seed})


#: name -> constructor ``(n, horizon, seed) -> Scenario``
FAMILIES: dict[str, Callable[..., Scenario]] = {
    "short_of_data": short_of_data,
    "tight_capacities": tight_capacities,
    "links_down": links_down,
    "extreme_weights": extreme_weights,
    "hot_sink": hot_sink,
}
