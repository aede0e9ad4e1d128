"""Synthetic fog networks: the paper's distributions (SPEC §4) and LTE/WiFi-like profiles (SPEC §5).

``synthetic`` draws everything from one seed, so a scenario is repeatable from its ``info``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from foglearn.network import topology as topo
from foglearn.network.scenario import Scenario, ScenarioError

#: Size of the training pool ``|D_V|`` the paper allocates from (MNIST's 60,000).
DATASET_SIZE = 60_000
PROFILES: tuple[str, ...] = ("synthetic", "lte", "wifi")


def default_max_points(n_devices: int, horizon: int, dataset_size: int = DATASET_SIZE) -> int:
    """``⌊|D_V| / (nT)⌋``: the top of ``D_i(t) ~ U{0, …, ⌊|D_V|/(nT)⌋}`` (SPEC §4)."""
    return dataset_size // (n_devices * horizon)


def synthetic(
    n_devices: int = 10,
    horizon: int = 100,
    topology: str = "full",
    rho: float = 0.3,
    capacities: bool = False,
    seed: int = 0,
    max_points: int | None = None,
    profile: str = "synthetic",
    link_failure: float = 0.0,
    leave_prob: float = 0.0,
    join_prob: float = 0.5,
    error_decay_period: int | None = None,
    dataset_size: int = DATASET_SIZE,
    persistence: float = 0.0,
) -> Scenario:
    """A synthetic fog network in the paper's setting (Sec. V-A, SPEC §4).

    Parameters
    ----------
    n_devices, horizon : int
        ``n`` and ``T``.
    topology : {"full", "random", "hierarchical", "social", "scale-free"}
        Edge structure (``random`` uses link probability ``rho``, drawn once per run).
    capacities : bool
        Impose ``C_i(t) ~ U(0, 4·max D)`` and ``C_ij(t) ~ U(0, 4·max D / n)``, redrawn per slot.
    max_points : int, optional
        ``D_i(t) ~ U{0, …, max_points}``; default ``⌊dataset_size/(nT)⌋`` (SPEC §4). At least 1.
    profile : {"synthetic", "lte", "wifi"}
        ``synthetic``: ``c_i ~ U(0,1)``, ``c_ij ~ U(0,1/n)``, ``f ~ U(0,1)`` i.i.d. per slot.
        ``lte`` / ``wifi``: SPEC §5's stand-in for the paper's Raspberry Pi measurements — one
        third "strong" devices with per-point cost ``~U(0.05, 0.15)``, the rest ``~U(0.8, 1.2)``,
        ±5 % per-slot noise; link cost LogNormal(ln 0.05, 0.5) (LTE) or LogNormal(ln 0.5, 0.3)
        (WiFi); ``f ~ U(0, 2)``.
    link_failure : float
        Probability that a link is down in a slot (independently per link and slot).
    leave_prob, join_prob : float
        Device churn: an active device leaves with ``leave_prob`` per slot, an inactive one
        rejoins with ``join_prob``. Inactive devices collect nothing.
    persistence : float
        In [0, 1]. 0 (default, SPEC §4): synthetic costs are i.i.d. per slot, so the past says
        nothing about the future. ``p > 0``: each device/link has a fixed base cost ``b`` drawn
        once and ``cost(t) = p·b + (1-p)·u(t)`` with ``u(t)`` i.i.d. from the same distribution —
        same range and mean, but persistent heterogeneity that estimated information can learn.
    error_decay_period : int, optional
        If set, ``f_i(t)`` is divided by ``sqrt(slot within the period)`` (SPEC §4's schedule for
        Fig. 6: discarding grows cheaper late in each aggregation period).
    """
    if n_devices < 1:
        raise ScenarioError(f"n_devices = {n_devices}: need at least one device")
    if horizon < 1:
        raise ScenarioError(f"horizon = {horizon}: need at least one slot")
    if topology not in topo.TOPOLOGIES:
        raise ScenarioError(f"topology = {topology!r}: must be one of {topo.TOPOLOGIES}")
    if profile not in PROFILES:
        raise ScenarioError(f"profile = {profile!r}: must be one of {PROFILES}")
    for name, p in (("link_failure", link_failure), ("leave_prob", leave_prob), ("join_prob", join_prob),
                    ("persistence", persistence)):
        if not 0.0 <= p <= 1.0:
            raise ScenarioError(f"{name} = {p}: a probability must lie in [0, 1]")
    if max_points is None:
        max_points = max(1, default_max_points(n_devices, horizon, dataset_size))
    if max_points < 0:
        raise ScenarioError(f"max_points = {max_points}: must be ≥ 0")
    if error_decay_period is not None and error_decay_period < 1:
        raise ScenarioError(f"error_decay_period = {error_decay_period}: must be ≥ 1")

    T, n = horizon, n_devices
    rng = np.random.default_rng(seed)
    collected = rng.integers(0, max_points + 1, size=(T, n))

    def persistent(draw: np.ndarray, base_shape: tuple[int, ...], high: float) -> np.ndarray:
        if persistence == 0.0:
            return draw
        return persistence * rng.uniform(0.0, high, size=base_shape) + (1.0 - persistence) * draw

    if profile == "synthetic":
        proc_cost = persistent(rng.uniform(0.0, 1.0, size=(T, n)), (n,), 1.0)
        error_weight = persistent(rng.uniform(0.0, 1.0, size=(T, n)), (n,), 1.0)
    else:
        strong = np.zeros(n, dtype=bool)
        strong[rng.permutation(n)[: max(1, n // 3)]] = True
        base = np.where(strong, rng.uniform(0.05, 0.15, n), rng.uniform(0.8, 1.2, n))
        proc_cost = base[None, :] * rng.uniform(0.95, 1.05, size=(T, n))
        error_weight = rng.uniform(0.0, 2.0, size=(T, n))

    if topology == "full":
        src, dst = topo.full(n)
    elif topology == "random":
        src, dst = topo.random_digraph(n, rho, rng)
    elif topology == "hierarchical":
        src, dst = topo.hierarchical(proc_cost.mean(axis=0), rng)
    elif topology == "social":
        src, dst = topo.social(n, rng)
    else:
        src, dst = topo.scale_free(n, rng)
    E = src.size

    if profile == "synthetic":
        link_cost = persistent(rng.uniform(0.0, 1.0 / n, size=(T, E)), (E,), 1.0 / n)
    else:
        mu, sigma = (np.log(0.05), 0.5) if profile == "lte" else (np.log(0.5), 0.3)
        link_base = rng.lognormal(mu, sigma, size=E)
        link_cost = link_base[None, :] * rng.uniform(0.95, 1.05, size=(T, E))

    proc_cap = link_cap = None
    if capacities:
        top = 4.0 * max_points
        proc_cap = rng.uniform(0.0, top, size=(T, n))
        link_cap = rng.uniform(0.0, top / n, size=(T, E))

    link_up = None
    if link_failure > 0:
        link_up = rng.random((T, E)) >= link_failure

    active = None
    if leave_prob > 0:
        active = np.ones((T, n), dtype=bool)
        u = rng.random((T, n))
        for t in range(1, T):
            prev = active[t - 1]
            active[t] = np.where(prev, u[t] >= leave_prob, u[t] < join_prob)
        collected = np.where(active, collected, 0)

    if error_decay_period is not None:
        within = (np.arange(T) % error_decay_period) + 1
        error_weight = error_weight / np.sqrt(within)[:, None]

    info: dict[str, Any] = {
        "generator": "synthetic", "n_devices": n, "horizon": T, "topology": topology, "rho": rho,
        "capacities": capacities, "seed": seed, "max_points": max_points, "profile": profile,
        "link_failure": link_failure, "leave_prob": leave_prob, "join_prob": join_prob,
        "error_decay_period": error_decay_period, "persistence": persistence,
    }
    return Scenario(collected=collected, proc_cost=proc_cost, error_weight=error_weight, src=src, dst=dst,
                    link_cost=link_cost, proc_cap=proc_cap, link_cap=link_cap, link_up=link_up,
                    active=active, info=info)
