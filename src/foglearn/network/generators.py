"""Synthetic fog networks: the paper's distributions (docs/model.md §4) and LTE/WiFi-like cost
profiles (docs/model.md §5).

``synthetic`` draws everything from one seed, so a scenario is repeatable from its ``info``.
:data:`PROFILES` maps each cost profile's name to a function of one :class:`ProfileInputs`
returning the scenario's :class:`Costs`; registering a profile here makes it available to
``synthetic``, the experiments, the Flower app and the CLI (``docs/extending.md``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from foglearn.network import topology as topo
from foglearn.network.scenario import MAX_COUNT, Scenario, ScenarioError
from foglearn.registry import Registry

#: Size of the training pool ``|D_V|`` the paper allocates from (MNIST's 60,000).
DATASET_SIZE = 60_000
#: Size bounds of a synthetic scenario, checked before anything is drawn (a command line asking for 10⁹ devices
#: or n = 30,000 fully connected would otherwise allocate tens of GB): device-slots ``T·n`` and link-slots
#: ``T·E`` (n = 1000 fully connected over T = 100 is 10⁸; n = 100,000 with ten links each over T = 3, 3·10⁶),
#: and the links a dense topology draws.
MAX_DEVICE_SLOTS = 100_000_000
MAX_LINK_SLOTS = 300_000_000
#: Links (or, for the random topology at ρ > 1/50, ordered pairs) a dense topology may draw.
MAX_LINKS = 100_000_000


@dataclass(frozen=True)
class ProfileInputs:
    """What a cost profile draws from: ``T`` slots, ``n`` devices, the scenario's ``rng`` (draw
    from it only, so the scenario stays repeatable from its seed) and ``persistence``."""

    horizon: int
    n: int
    rng: np.random.Generator
    persistence: float = 0.0

    def persistent(self, draw: np.ndarray, high: float) -> np.ndarray:
        """``p·b + (1-p)·draw`` with a base ``b ~ U(0, high)`` per device/link, drawn once
        (``draw`` itself when ``persistence`` = 0); see :func:`synthetic`'s ``persistence``."""
        p = self.persistence
        if p == 0.0:
            return draw
        return p * self.rng.uniform(0.0, high, size=draw.shape[1:]) + (1.0 - p) * draw


class Costs(NamedTuple):
    """A profile's costs: ``c_i(t)`` and ``f_i(t)`` as ``[T, n]`` arrays, and ``link_cost(E)``
    drawing ``c_ij(t)`` ``[T, E]`` once the topology (drawn from the same ``rng``) is known.

    Return fresh arrays: :func:`synthetic` hands the ones that own their memory to the scenario,
    read-only, instead of copying them (at ``n = 10⁵`` a ``[T, E]`` copy is 0.8 GB)."""

    proc_cost: np.ndarray
    error_weight: np.ndarray
    link_cost: Callable[[int], np.ndarray]


#: Cost profile name → ``f(inputs: ProfileInputs, **params) -> Costs``.
PROFILES: Registry[Callable[..., Costs]] = Registry("profile")


@PROFILES.register("synthetic", "c_i ~ U(0,1), c_ij ~ U(0,1/n), f_i ~ U(0,1), i.i.d. per slot (Sec. V-A)")
def synthetic_costs(g: ProfileInputs) -> Costs:
    """The paper's synthetic costs (Sec. V-A), made persistent by ``g.persistence``."""
    T, n, rng = g.horizon, g.n, g.rng
    proc_cost = g.persistent(rng.uniform(0.0, 1.0, size=(T, n)), 1.0)
    error_weight = g.persistent(rng.uniform(0.0, 1.0, size=(T, n)), 1.0)
    return Costs(proc_cost, error_weight,
                 lambda E: g.persistent(rng.uniform(0.0, 1.0 / n, size=(T, E)), 1.0 / n))


def testbed_costs(g: ProfileInputs, link_median: float, link_sigma: float) -> Costs:
    """docs/model.md §5's stand-in for the paper's Raspberry-Pi measurements (Sec. V-A).

    One third "strong" devices with per-point cost ``~U(0.05, 0.15)``, the rest
    ``~U(0.8, 1.2)``, ±5 % per-slot noise; ``f_i(t) ~ U(0, 2)``; link cost per point
    ``LogNormal(ln link_median, link_sigma)`` per link, ±5 % per slot. Ignores ``persistence``
    (these costs persist by construction).
    """
    T, n, rng = g.horizon, g.n, g.rng
    strong = np.zeros(n, dtype=bool)
    strong[rng.permutation(n)[: max(1, n // 3)]] = True
    base = np.where(strong, rng.uniform(0.05, 0.15, n), rng.uniform(0.8, 1.2, n))
    proc_cost = base[None, :] * rng.uniform(0.95, 1.05, size=(T, n))
    error_weight = rng.uniform(0.0, 2.0, size=(T, n))

    def link_cost(E: int) -> np.ndarray:
        link_base = rng.lognormal(np.log(link_median), link_sigma, size=E)
        return link_base[None, :] * rng.uniform(0.95, 1.05, size=(T, E))

    return Costs(proc_cost, error_weight, link_cost)


PROFILES.add("lte", testbed_costs, "testbed-like devices; LTE links, cost LogNormal(ln 0.05, 0.5)",
             link_median=0.05, link_sigma=0.5)
PROFILES.add("wifi", testbed_costs, "testbed-like devices; WiFi links, cost LogNormal(ln 0.5, 0.3)",
             link_median=0.5, link_sigma=0.3)


def default_max_points(n_devices: int, horizon: int, dataset_size: int = DATASET_SIZE) -> int:
    """``⌊|D_V| / (nT)⌋``: the top of ``D_i(t) ~ U{0, …, ⌊|D_V|/(nT)⌋}`` (docs/model.md §4)."""
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
    """A synthetic fog network in the paper's setting (Sec. V-A, docs/model.md §4).

    Parameters
    ----------
    n_devices, horizon : int
        ``n`` and ``T``.
    topology : str
        Edge structure: a name in :data:`~foglearn.network.topology.TOPOLOGIES` (``full``,
        ``random`` with link probability ``rho`` drawn once per run, ``hierarchical``, …).
    capacities : bool
        Impose ``C_i(t) ~ U(0, 4·max D)`` and ``C_ij(t) ~ U(0, 4·max D / n)``, redrawn per slot.
    max_points : int, optional
        ``D_i(t) ~ U{0, …, max_points}``; default ``⌊dataset_size/(nT)⌋`` (docs/model.md §4).
        At least 1.
    profile : str
        Costs: a name in :data:`PROFILES`. ``synthetic`` (:func:`synthetic_costs`):
        ``c_i ~ U(0,1)``, ``c_ij ~ U(0,1/n)``, ``f ~ U(0,1)`` i.i.d. per slot. ``lte`` / ``wifi``
        (:func:`testbed_costs`): docs/model.md §5's stand-in for the paper's Raspberry Pi
        measurements.
    link_failure : float
        Probability that a link is down in a slot (independently per link and slot).
    leave_prob, join_prob : float
        Device churn: an active device leaves with ``leave_prob`` per slot, an inactive one
        rejoins with ``join_prob``. Inactive devices collect nothing.
    persistence : float
        In [0, 1]. 0 (default, docs/model.md §4): synthetic costs are i.i.d. per slot, so the past says
        nothing about the future. ``p > 0``: each device/link has a fixed base cost ``b`` drawn
        once and ``cost(t) = p·b + (1-p)·u(t)`` with ``u(t)`` i.i.d. from the same distribution —
        same range and mean, but persistent heterogeneity that estimated information can learn.
    error_decay_period : int, optional
        If set, ``f_i(t)`` is divided by ``sqrt(slot within the period)`` (docs/model.md §4's schedule for
        Fig. 6: discarding grows cheaper late in each aggregation period).

    Unknown ``topology`` or ``profile`` names are a :class:`ScenarioError` listing the known ones.
    """
    if n_devices < 1:
        raise ScenarioError(f"n_devices = {n_devices}: need at least one device")
    if horizon < 1:
        raise ScenarioError(f"horizon = {horizon}: need at least one slot")
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ScenarioError(f"seed = {seed!r}: must be a whole number ≥ 0")
    topo.TOPOLOGIES.get_entry(topology, "topology", ScenarioError)
    costs_of = PROFILES.get_entry(profile, "profile", ScenarioError)
    for name, p in (("link_failure", link_failure), ("leave_prob", leave_prob), ("join_prob", join_prob),
                    ("persistence", persistence)):
        if not 0.0 <= p <= 1.0:
            raise ScenarioError(f"{name} = {p}: a probability must lie in [0, 1]")
    if horizon * n_devices > MAX_DEVICE_SLOTS:
        raise ScenarioError(f"n_devices = {n_devices}, horizon = {horizon}: {horizon * n_devices:,} device-slots, "
                            f"more than the {MAX_DEVICE_SLOTS:,} a scenario may hold (each is a row of every array)")
    # the dense topologies' link counts are known before drawing them (full: n(n−1); random: ρ·n(n−1) on average;
    # social: Watts–Strogatz with k = n/5 neighbours both ways, about 0.4·n(n−1)); any topology's is checked once drawn
    dense = {"full": 1.0, "random": rho if isinstance(rho, float | int) and 0 <= rho <= 1 else 0.0,
             "social": 0.4}.get(topology, 0.0)
    pairs = n_devices * (n_devices - 1)
    if dense * pairs > MAX_LINKS or (topology == "random" and dense > 0.02 and pairs > MAX_LINKS):
        # (numpy draws more than 1/50 of the n(n−1) pairs by permuting all of them)
        raise ScenarioError(f"n_devices = {n_devices}: the {topology} topology draws from {pairs:,} ordered pairs "
                            f"(about {dense * pairs:,.0f} links), more than the {MAX_LINKS:,} it may; use fewer "
                            "devices or a sparser topology")
    if dense and horizon * dense * pairs > MAX_LINK_SLOTS:
        raise ScenarioError(f"n_devices = {n_devices}, horizon = {horizon}: the {topology} topology has about "
                            f"{dense * pairs:,.0f} links, {horizon * dense * pairs:,.0f} link-slots in all, more than "
                            f"the {MAX_LINK_SLOTS:,} a scenario may hold (8 bytes each per link array); use fewer "
                            "devices or slots, or a sparser topology")
    if max_points is None:
        max_points = max(1, default_max_points(n_devices, horizon, dataset_size))
    if max_points < 0 or max_points > MAX_COUNT:
        raise ScenarioError(f"max_points = {max_points}: must be between 0 and 2^53 = {MAX_COUNT}")
    if error_decay_period is not None and error_decay_period < 1:
        raise ScenarioError(f"error_decay_period = {error_decay_period}: must be ≥ 1")

    T, n = horizon, n_devices
    rng = np.random.default_rng(seed)
    collected = rng.integers(0, max_points + 1, size=(T, n))

    costs = costs_of.obj(ProfileInputs(T, n, rng, persistence), **costs_of.params)
    proc_cost, error_weight = costs.proc_cost, costs.error_weight
    src, dst = topo.build(topology, topo.TopologyInputs(n, rng, rho, proc_cost.mean(axis=0)))
    E = src.size
    if T * E > MAX_LINK_SLOTS:
        raise ScenarioError(f"n_devices = {n_devices}, horizon = {horizon}: the {topology} topology drew {E:,} links, "
                            f"{T * E:,} link-slots in all, more than the {MAX_LINK_SLOTS:,} a scenario may hold")
    link_cost = costs.link_cost(E)

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

    for arr in (collected, proc_cost, error_weight, link_cost, proc_cap, link_cap, link_up, active):
        _hand_over(arr)
    info: dict[str, Any] = {
        "generator": "synthetic", "n_devices": n, "horizon": T, "topology": topology, "rho": rho,
        "capacities": capacities, "seed": seed, "max_points": max_points, "profile": profile,
        "link_failure": link_failure, "leave_prob": leave_prob, "join_prob": join_prob,
        "error_decay_period": error_decay_period, "persistence": persistence,
    }
    return Scenario(collected=collected, proc_cost=proc_cost, error_weight=error_weight, src=src, dst=dst,
                    link_cost=link_cost, proc_cap=proc_cap, link_cap=link_cap, link_up=link_up,
                    active=active, info=info)


def _hand_over(arr: np.ndarray | None) -> None:
    """Make a freshly drawn array read-only, so that :class:`Scenario` keeps it without a copy
    (it copies any array a caller could still write to). Views and arrays of another dtype are
    left alone: the scenario copies those."""
    if isinstance(arr, np.ndarray) and arr.base is None and arr.dtype in (np.float64, np.int64, np.bool_):
        arr.setflags(write=False)
