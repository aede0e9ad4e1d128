"""Fog topologies as sparse directed edge lists ``src[E] -> dst[E]`` (paper Sec. IV-B, V; SPEC §4).

Every generator returns ``(src, dst)`` int64 arrays sorted by ``(src, dst)``; memory grows with
the number of edges, never with ``n²``.
"""

from __future__ import annotations

import networkx as nx
import numpy as np

from foglearn.network.scenario import ScenarioError

TOPOLOGIES: tuple[str, ...] = ("full", "random", "hierarchical", "social", "scale-free")


def _sorted(src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    order = np.lexsort((dst, src))
    return src[order].astype(np.int64), dst[order].astype(np.int64)


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
    """Two-level hierarchy (Sec. V-D, SPEC §4): the ``n/3`` cheapest devices are parents.

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


def social(n: int, rng: np.random.Generator, k: int | None = None, rewire: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """Social network: Watts–Strogatz small world, ``k = max(2, round(n/5))``, rewiring 0.1 (SPEC §4).

    Undirected friendships become links in both directions.
    """
    k = max(2, round(n / 5)) if k is None else k
    if n <= k:
        return full(n)
    g = nx.watts_strogatz_graph(n, k, rewire, seed=int(rng.integers(2**31)))
    return _undirected(g)


def scale_free(n: int, rng: np.random.Generator, m: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Scale-free network: Barabási–Albert with ``m`` links per new node, both directions."""
    if n <= m:
        return full(n)
    g = nx.barabasi_albert_graph(n, m, seed=int(rng.integers(2**31)))
    return _undirected(g)


def _undirected(g: nx.Graph) -> tuple[np.ndarray, np.ndarray]:
    e = np.array(list(g.edges()), dtype=np.int64).reshape(-1, 2)
    return _sorted(np.concatenate([e[:, 0], e[:, 1]]), np.concatenate([e[:, 1], e[:, 0]]))
