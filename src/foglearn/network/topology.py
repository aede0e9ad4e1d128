"""Fog topologies as sparse directed edge lists ``src[E] -> dst[E]`` (paper Sec. IV-B, V; docs/model.md §4).

Every generator returns ``(src, dst)`` int64 arrays sorted by ``(src, dst)``; memory grows with
the number of edges, never with ``n²``.

:data:`TOPOLOGIES` maps each topology's name to a function of one :class:`TopologyInputs`
(``n``, the generator's ``rng``, ``ρ``, the devices' mean processing costs) and the entry's
parameters; :func:`build` looks a name up and runs it. Registering a topology here makes it
available to :func:`foglearn.network.synthetic`, the experiments, the Flower app and the CLI
(``docs/extending.md``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from foglearn.network.scenario import ScenarioError
from foglearn.registry import Registry

if TYPE_CHECKING:
    import networkx as nx


@dataclass(frozen=True)
class TopologyInputs:
    """What a topology may depend on.

    ``n`` devices; ``rng``, the scenario's generator (draw from it, never from a new one, so a
    scenario stays repeatable from its seed); ``rho``, the link probability ``ρ`` of Fig. 7;
    ``proc_cost_mean[n]``, each device's mean per-point processing cost ``c_i`` over the horizon
    (the hierarchy puts the cheapest devices on top).
    """

    n: int
    rng: np.random.Generator
    rho: float
    proc_cost_mean: np.ndarray


Topology = Callable[..., tuple[np.ndarray, np.ndarray]]

#: Topology name → ``f(inputs: TopologyInputs, **params) -> (src, dst)``.
TOPOLOGIES: Registry[Topology] = Registry("topology")


def build(name: str, inputs: TopologyInputs) -> tuple[np.ndarray, np.ndarray]:
    """The edge list of topology ``name`` on ``inputs``, as int64 arrays sorted by ``(src, dst)``.

    An unknown name is a :class:`ScenarioError` listing the registered ones; the links
    themselves are checked when the :class:`~foglearn.network.Scenario` is built.
    """
    entry = TOPOLOGIES.get_entry(name, "topology", ScenarioError)
    src, dst = (np.asarray(a).reshape(-1) for a in entry.obj(inputs, **entry.params))
    if src.shape != dst.shape:
        raise ScenarioError(f"topology = {name!r}: returned {src.size} sources but {dst.size} destinations")
    return _sorted(src, dst)


def _sorted(src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(src, dst)`` as int64, sorted by ``(src, dst)``; an already sorted list (``random`` draws
    one) is only checked, in ``O(E)``, not sorted again."""
    if not is_sorted(src, dst):
        order = np.lexsort((dst, src))
        src, dst = src[order], dst[order]
    return src.astype(np.int64), dst.astype(np.int64)


def is_sorted(src: np.ndarray, dst: np.ndarray) -> bool:
    """Whether the edge list is in increasing ``(src, dst)`` order (non-strict: duplicates pass)."""
    s0, s1, d0, d1 = src[:-1], src[1:], dst[:-1], dst[1:]
    return bool(np.all((s0 < s1) | ((s0 == s1) & (d0 <= d1))))


def full(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Fully connected: ``E = {(i, j): i ≠ j}`` (Sec. V-B)."""
    src = np.repeat(np.arange(n), n - 1)
    dst = np.tile(np.arange(n - 1), n)
    dst = dst + (dst >= src)  # skip the diagonal
    return src.astype(np.int64), dst.astype(np.int64)


def random_digraph(n: int, rho: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Random directed graph: each ordered pair ``i ≠ j`` is a link with probability ``ρ`` (Fig. 7).

    Samples the edge count from Binomial(n(n-1), ρ) and then that many distinct pairs, so memory
    is linear in the number of edges.
    """
    if not 0.0 <= rho <= 1.0:
        raise ScenarioError(f"rho = {rho}: link probability must lie in [0, 1]")
    pairs = n * (n - 1)
    m = int(rng.binomial(pairs, rho)) if pairs else 0
    k = np.sort(rng.choice(pairs, size=m, replace=False)) if m else np.zeros(0, dtype=np.int64)
    src = k // (n - 1)
    dst = k % (n - 1)
    dst = dst + (dst >= src)
    return src.astype(np.int64), dst.astype(np.int64)


def hierarchical(proc_cost_mean: np.ndarray, rng: np.random.Generator,
                 leaves_per_parent: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Two-level hierarchy (Sec. V-D, docs/model.md §4): the ``n/3`` cheapest devices are parents.

    Each parent takes ``leaves_per_parent`` of the remaining devices as leaves (random
    assignment, leftovers dealt round-robin); leaves offload only upward (edge leaf → parent).
    """
    n = proc_cost_mean.shape[0]
    if n < 2:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    n_parents = max(1, n // 3)
    order = np.argsort(proc_cost_mean, kind="stable")
    parents, leaves = order[:n_parents], rng.permutation(order[n_parents:])
    owner = parents[np.arange(leaves.size) // leaves_per_parent % n_parents]
    # the first n_parents*leaves_per_parent leaves get 2 each; the rest are dealt round-robin
    extra = np.arange(leaves.size) >= n_parents * leaves_per_parent
    owner[extra] = parents[np.arange(extra.sum()) % n_parents]
    return _sorted(leaves, owner)


def social(n: int, rng: np.random.Generator, k: int | None = None,
           rewire: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """Social network: Watts–Strogatz small world, ``k = max(2, round(n/5))``, rewiring 0.1
    (docs/model.md §4).

    Undirected friendships become links in both directions.
    """
    import networkx as nx

    k = max(2, round(n / 5)) if k is None else k
    if n <= k:
        return full(n)
    g = nx.watts_strogatz_graph(n, k, rewire, seed=int(rng.integers(2**31)))
    return _undirected(g)


def scale_free(n: int, rng: np.random.Generator, m: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Scale-free network: Barabási–Albert with ``m`` links per new node, both directions."""
    import networkx as nx

    if n <= m:
        return full(n)
    g = nx.barabasi_albert_graph(n, m, seed=int(rng.integers(2**31)))
    return _undirected(g)


def _undirected(g: nx.Graph) -> tuple[np.ndarray, np.ndarray]:
    e = np.array(list(g.edges()), dtype=np.int64).reshape(-1, 2)
    return _sorted(np.concatenate([e[:, 0], e[:, 1]]), np.concatenate([e[:, 1], e[:, 0]]))


TOPOLOGIES.add("full", lambda g: full(g.n), "every ordered pair i ≠ j is a link (Sec. V-B)")
TOPOLOGIES.add("random", lambda g: random_digraph(g.n, g.rho, g.rng),
               "each ordered pair i ≠ j is a link with probability rho (Fig. 7)")
TOPOLOGIES.add("hierarchical", lambda g, leaves_per_parent: hierarchical(g.proc_cost_mean, g.rng,
                                                                         leaves_per_parent),
               "the n/3 cheapest devices are parents; leaves offload only upward (Sec. V-D)",
               leaves_per_parent=2)
TOPOLOGIES.add("social", lambda g, rewire: social(g.n, g.rng, None, rewire),
               "Watts-Strogatz small world, k = max(2, round(n/5)), both directions (Fig. 8)", rewire=0.1)
TOPOLOGIES.add("scale-free", lambda g, m: scale_free(g.n, g.rng, m),
               "Barabasi-Albert, m links per new device, both directions", m=2)
