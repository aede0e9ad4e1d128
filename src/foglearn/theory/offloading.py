"""Theorem 5: the expected value (cost saving) of offloading in a social network.

Each device has processing cost ``c_i ~ U(0, C)`` i.i.d., links are free (``c_ij = 0``) and
nothing is discarded. By Theorem 3 a device with ``k`` neighbours processes each point at the
cheapest of ``k + 1`` i.i.d. uniform costs, whose mean is ``C/(k+2)``; compared with processing
locally (mean ``C/2``) it saves

    C/2 - C/(k+2) = C k / (2 (k + 2)),

which is exactly the bracket of (15) (docs/model.md §3). The average saving per device is

    V(C) = Σ_k N(k) · C k / (2 (k + 2)),                                        (15, stable form)

``N(k)`` the fraction of devices with ``k`` neighbours: a graph's own degree distribution, or
a scale-free law (normalised ``k^{-γ}`` by default, the printed ``Γ k^{1-γ}`` as an option).
The printed alternating sum is kept in :func:`printed_bracket` to show that it cancels
catastrophically in floating point (k = 100 gives about -7.9e11).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numba
import numpy as np

from foglearn.theory._checks import TheoryError, choice, count, positive, real

SCALE_FREE_FORMS = ("normalised", "printed")


@dataclass(frozen=True)
class DegreeDistribution:
    """``N(k)``: the fraction of devices with ``k`` neighbours (``degrees[j]`` has weight ``weights[j]``).

    Degrees are distinct whole numbers ≥ 0; weights are ≥ 0 and finite. ``weights`` need not
    sum to 1 (the printed ``Γ k^{1-γ}`` form does not); :attr:`total` reports the sum.
    """

    degrees: np.ndarray
    weights: np.ndarray
    label: str = ""

    def __post_init__(self) -> None:
        k = np.asarray(self.degrees)
        w = np.asarray(self.weights, dtype=float)
        if k.ndim != 1 or w.shape != k.shape:
            raise TheoryError(f"degrees/weights: must be 1-D of equal length, got {k.shape} and {w.shape}")
        if k.size == 0:
            raise TheoryError("degrees: at least one degree is needed")
        if not np.issubdtype(k.dtype, np.integer):
            if not np.all(np.isfinite(k)) or np.any(k != np.round(k)):
                bad = int(np.flatnonzero(~np.isfinite(k) | (k != np.round(k)))[0])
                raise TheoryError(f"degrees[{bad}] = {k[bad]!r}: degrees must be whole numbers")
            k = k.astype(np.int64)
        if np.any(k < 0):
            bad = int(np.flatnonzero(k < 0)[0])
            raise TheoryError(f"degrees[{bad}] = {k[bad]}: degrees must be ≥ 0")
        if np.unique(k).size != k.size:
            raise TheoryError("degrees: each degree may appear only once")
        bad = ~np.isfinite(w) | (w < 0)
        if bad.any():
            j = int(np.flatnonzero(bad)[0])
            raise TheoryError(f"weights[{j}] = {w[j]!r}: N(k) must be finite and ≥ 0")
        order = np.argsort(k)
        object.__setattr__(self, "degrees", np.ascontiguousarray(k[order].astype(np.int64)))
        object.__setattr__(self, "weights", np.ascontiguousarray(w[order]))

    @property
    def total(self) -> float:
        """``Σ_k N(k)`` (1 for a distribution)."""
        return float(self.weights.sum())

    @classmethod
    def from_mapping(cls, mapping: Mapping[int, float], label: str = "") -> DegreeDistribution:
        """From ``{k: N(k)}``."""
        if not mapping:
            raise TheoryError("degree distribution: the mapping is empty")
        keys = list(mapping)
        return cls(np.asarray(keys), np.asarray([mapping[k] for k in keys], dtype=float), label)

    @classmethod
    def from_graph(cls, graph: Any, label: str = "") -> DegreeDistribution:
        """The graph's own degree distribution (fraction of nodes with each degree)."""
        deg = graph_degrees(graph)
        ks, counts = np.unique(deg, return_counts=True)
        return cls(ks, counts / deg.size, label or _graph_label(graph))


def _graph_label(graph: Any) -> str:
    name = getattr(graph, "name", "") or ""
    return str(name)


def graph_degrees(graph: Any) -> np.ndarray:
    """Degrees of an undirected networkx graph in node order (self-loops rejected)."""
    import networkx as nx

    if not isinstance(graph, nx.Graph):
        raise TheoryError(f"graph: must be a networkx.Graph, got {type(graph).__name__}")
    if graph.is_directed():
        raise TheoryError("graph: must be undirected (neighbours share data both ways)")
    if graph.number_of_nodes() == 0:
        raise TheoryError("graph: has no nodes")
    if nx.number_of_selfloops(graph):
        raise TheoryError("graph: has self-loops; a device is not its own neighbour")
    return np.fromiter((d for _, d in graph.degree()), dtype=np.int64, count=graph.number_of_nodes())


def scale_free_distribution(exponent: float, k_max: int, k_min: int = 1, form: str = "normalised",
                            Gamma: float | None = None) -> DegreeDistribution:
    """A scale-free ``N(k)`` on ``k_min..k_max``.

    ``form="normalised"`` (default): ``N(k) ∝ k^{-γ}``, the usual scale-free law, normalised to
    sum 1. ``form="printed"``: Theorem 5's printed ``N(k) = Γ k^{1-γ}``; ``Γ`` defaults to the
    constant that makes it sum to 1 (pass ``Gamma`` to use the printed form literally).
    The paper takes ``γ ∈ (2, 3)``; any ``γ > 0`` is accepted here.
    """
    g = positive("exponent", exponent)
    k_lo = count("k_min", k_min, 1)
    k_hi = count("k_max", k_max, k_lo)
    choice("form", form, SCALE_FREE_FORMS)
    k = np.arange(k_lo, k_hi + 1, dtype=np.int64)
    p = k.astype(float) ** (-g if form == "normalised" else 1.0 - g)
    if Gamma is None:
        w = p / p.sum()
    else:
        if form == "normalised":
            raise TheoryError("Gamma: only the printed form Γ k^(1-γ) takes a constant Γ")
        w = positive("Gamma", Gamma) * p
    return DegreeDistribution(k, w, f"scale-free {form} γ={g:g}, k={k_lo}..{k_hi}")


def offloading_bracket(k: int | np.ndarray, C: float = 1.0) -> float | np.ndarray:
    """The saving of a device with ``k`` neighbours: ``C/2 - C/(k+2) = C k / (2(k+2))`` (15)."""
    Cv = positive("C", C)
    ka = np.asarray(k)
    if np.any(ka < 0):
        raise TheoryError(f"k = {k!r}: degrees must be ≥ 0")
    out = Cv * ka / (2.0 * (ka + 2.0))
    return float(out) if np.ndim(out) == 0 else out


def printed_bracket(k: int, C: float = 1.0, exact: bool = False) -> float | Fraction:
    """The bracket of (15) exactly as printed:

        C/2 - C(-1)^k/(k+2) - Σ_{l=0}^{k-1} binom(k, l) C (-1)^l (k+3) / ((l+2)(l+3)).

    In floating point (``exact=False``) the alternating binomial sum cancels catastrophically
    (terms reach ``binom(k, k/2) ≈ 1e29``): k = 100 gives about -7.9e11 instead of 100/204. With
    ``exact=True`` it is summed in rational arithmetic and equals ``C k/(2(k+2))`` (for
    rational ``C``).
    """
    kk = count("k", k, 0)
    if exact:
        Cq = Fraction(C) if not isinstance(C, Fraction) else C
        if Cq <= 0:
            raise TheoryError(f"C = {C!r}: must be > 0")
        total = Cq / 2 - Cq * (-1) ** kk / (kk + 2)
        for j in range(kk):
            total -= math.comb(kk, j) * Cq * (-1) ** j * (kk + 3) / Fraction((j + 2) * (j + 3))
        return total
    Cv = positive("C", C)
    # Each term binom(k,l)(-1)^l (k+3)/((l+2)(l+3)) correctly rounded, summed left to right.
    # (Other summation orders fail differently, between about -8e11 and +3e12 at k = 100.)
    alternating = sum(math.comb(kk, j) * (-1) ** j * (kk + 3) / ((j + 2) * (j + 3)) for j in range(kk))
    return Cv / 2.0 - Cv * (-1.0) ** kk / (kk + 2.0) - Cv * alternating


def offloading_value(graph_or_distribution: Any, C: float = 1.0, *, printed: bool = False) -> float:
    """Theorem 5: the average saving per device from offloading, ``Σ_k N(k) C k/(2(k+2))``.

    ``graph_or_distribution``: a networkx graph (its own degree distribution is used), a
    :class:`DegreeDistribution`, or a mapping ``{k: N(k)}``. ``printed=True`` evaluates the
    printed alternating sum (15) in floating point instead (numerically useless beyond k ≈ 40).

    >>> import networkx as nx
    >>> round(offloading_value(nx.complete_graph(10), 1.0), 4)
    0.4091
    """
    Cv = positive("C", C)
    dist = as_distribution(graph_or_distribution)
    if printed:
        return float(sum(w * printed_bracket(int(k), Cv) for k, w in zip(dist.degrees, dist.weights)))
    return float(np.dot(dist.weights, offloading_bracket(dist.degrees, Cv)))


def as_distribution(obj: Any) -> DegreeDistribution:
    """Coerce a graph, mapping or :class:`DegreeDistribution` to a :class:`DegreeDistribution`."""
    if isinstance(obj, DegreeDistribution):
        return obj
    if isinstance(obj, Mapping):
        return DegreeDistribution.from_mapping(obj)
    import networkx as nx

    if isinstance(obj, nx.Graph):
        return DegreeDistribution.from_graph(obj)
    raise TheoryError(
        f"graph_or_distribution: expected a networkx graph, a DegreeDistribution "
        f"or a {{k: N(k)}} mapping, got {type(obj).__name__}"
    )


def graph_csr(graph: Any) -> tuple[np.ndarray, np.ndarray]:
    """``(indptr, indices)`` adjacency of an undirected graph in node order (validated)."""
    graph_degrees(graph)  # validation
    index = {v: i for i, v in enumerate(graph.nodes())}
    n = len(index)
    indptr = np.zeros(n + 1, dtype=np.int64)
    nbrs: list[int] = []
    for i, v in enumerate(graph.nodes()):
        row = [index[u] for u in graph.adj[v]]
        nbrs.extend(row)
        indptr[i + 1] = indptr[i] + len(row)
    return indptr, np.asarray(nbrs, dtype=np.int64)


@numba.njit(cache=True)
def _savings(cost_now: np.ndarray, cost_next: np.ndarray, indptr: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """Per replication: mean over devices of ``c_i(t) - min(c_i(t), min_j c_j(t+1))`` (Theorem 3, c_ij = 0)."""
    R, n = cost_now.shape
    out = np.empty(R)
    for r in range(R):
        total = 0.0
        for i in range(n):
            best = cost_now[r, i]
            for p in range(indptr[i], indptr[i + 1]):
                c = cost_next[r, indices[p]]
                if c < best:
                    best = c
            total += cost_now[r, i] - best
        out[r] = total / n
    return out


@dataclass(frozen=True)
class OffloadingSimulation:
    """Monte Carlo estimate of Theorem 5's saving on a concrete graph."""

    C: float
    replications: int
    seed: int
    mean_saving: float
    stderr: float
    theory: float

    def z_score(self) -> float:
        """``(mean_saving - theory) / stderr``."""
        return (self.mean_saving - self.theory) / self.stderr if self.stderr > 0 else 0.0


def simulate_offloading_value(graph: Any, C: float = 1.0, *, replications: int = 2000,
                              seed: int = 0, chunk: int = 1000) -> OffloadingSimulation:
    """Simulate Theorem 3's rule on ``graph`` and measure the average saving per device.

    Each replication draws ``c_i(t), c_j(t+1) ~ U(0, C)`` i.i.d.; with ``c_ij = 0`` and no
    discarding each device processes its data at ``min(c_i(t), min_{j ∈ N(i)} c_j(t+1))``
    (Theorem 3); the saving is ``c_i(t)`` minus that. Returns the mean over devices and
    replications with its standard error across replications, beside
    :func:`offloading_value` on the graph's own degree distribution.
    """
    Cv = positive("C", C)
    R = count("replications", replications, 2)
    ch = count("chunk", chunk, 1)
    indptr, indices = graph_csr(graph)
    n = indptr.size - 1
    rng = np.random.default_rng(seed)
    parts = []
    left = R
    while left > 0:
        m = min(ch, left)
        parts.append(_savings(rng.uniform(0.0, Cv, (m, n)), rng.uniform(0.0, Cv, (m, n)), indptr, indices))
        left -= m
    per = np.concatenate(parts)
    return OffloadingSimulation(C=Cv, replications=R, seed=int(seed), mean_saving=float(per.mean()),
                                stderr=float(per.std(ddof=1) / math.sqrt(R)),
                                theory=offloading_value(graph, Cv))


def named_graph(kind: str, n: int, *, m: int = 2, k: int = 10, p: float = 0.1, seed: int | None = None) -> Any:
    """The graphs used in the reports: ``"ba"`` Barabási–Albert(n, m), ``"ws"`` Watts–Strogatz(n, k, p),
    ``"er"`` Erdős–Rényi G(n, p), ``"complete"`` K_n, all via networkx with ``seed``."""
    import networkx as nx

    kinds = ("ba", "ws", "er", "complete")
    choice("kind", kind, kinds)
    nn = count("n", n, 2)
    if kind == "ba":
        g = nx.barabasi_albert_graph(nn, count("m", m, 1), seed=seed)
        g.name = f"BA({nn}, {m}, seed={seed})"
    elif kind == "ws":
        pp = real("p", p)
        if not 0 <= pp <= 1:
            raise TheoryError(f"p = {p!r}: a rewiring probability must be in [0, 1]")
        g = nx.watts_strogatz_graph(nn, count("k", k, 2), pp, seed=seed)
        g.name = f"WS({nn}, {k}, {p:g}, seed={seed})"
    elif kind == "er":
        pp = real("p", p)
        if not 0 <= pp <= 1:
            raise TheoryError(f"p = {p!r}: an edge probability must be in [0, 1]")
        g = nx.gnp_random_graph(nn, pp, seed=seed)
        g.name = f"G({nn}, {p:g}, seed={seed})"
    else:
        g = nx.complete_graph(nn)
        g.name = f"K{nn}"
    return g
