"""Theorem 6: the expected number of devices whose capacity is violated.

Setting (Theorem 6 with docs/model.md §3): every device collects ``D`` points; processing costs are
continuous, i.i.d. and time-invariant, links are free (``c_ij = 0``); by Theorem 3 each device
sends all its data to the cheapest device of its closed neighbourhood (itself included).
Device ``i``'s load is ``D · L_i`` with ``L_i = 1{i keeps its data} + #{neighbours j that send to i}``;
its capacity is i.i.d. ``C̃`` and it is violated when ``D L_i > C̃``. The expected number of
violated devices is ``Σ_i E[F(D L_i)]`` with ``F(x) = P[C̃ < x]``.

* ``method="mean-field"`` — (16) as printed: it plugs the *expected* load into the CDF,

      Σ_k N(k) F(D ℓ_k),   ℓ_k = 1 - P_o(k) + k Σ_n P_o(n) p_k(n) / n,

  with ``N(k)`` the number of devices of degree ``k``, ``p_k(n)`` the fraction of their
  neighbours that have degree ``n`` and ``P_o(k) = k/(k+1)`` (a device offloads unless it is
  the cheapest of ``k + 1``).
* ``method="exact"`` — the corrected form (docs/model.md §3): average ``F`` over the load's
  distribution. Conditioned on the device's own cost rank ``u ~ U(0, 1)``,

      E[z^L | u] = Π_j (1 - (1-u)^{n_j} (1-z)) + (z - 1) Π_j ((1-u) - (1-u)^{n_j} (1-z)),

  ``n_j`` the degree of neighbour ``j``; the coefficients are computed by dynamic programming
  and ``u`` is integrated by Gauss–Legendre quadrature (exact for the polynomial integrand up
  to 512 nodes). Exact on trees; on graphs with short cycles it neglects the correlation of
  neighbours that share neighbours.
* ``method="simulation"`` — Monte Carlo on the same graph (:func:`simulate_violations`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Real
from typing import Any

import numba
import numpy as np

from foglearn.theory._checks import TheoryError, choice, count, nonnegative, positive
from foglearn.theory.offloading import graph_csr, graph_degrees

METHODS = ("mean-field", "exact", "simulation")
MAX_QUADRATURE = 512


class Capacity:
    """The capacity distribution ``C̃``: ``below(x) = P[C̃ < x]`` and ``sample(rng, shape)``.

    Built from a number (every device has that capacity) or a frozen continuous
    ``scipy.stats`` distribution (e.g. ``scipy.stats.uniform(0, 4 * D)``).
    """

    _fixed: float | None
    _dist: Any

    def __init__(self, spec: Any) -> None:
        self.spec = spec
        if isinstance(spec, Capacity):
            self._fixed, self._dist = spec._fixed, spec._dist
            return
        if isinstance(spec, Real) and not isinstance(spec, bool):
            self._fixed = nonnegative("capacity", spec)
            self._dist = None
            return
        dist = getattr(spec, "dist", None)
        from scipy import stats

        if not isinstance(dist, stats.rv_continuous) or not hasattr(spec, "cdf"):
            raise TheoryError(
                f"capacity = {spec!r}: must be a number or a frozen continuous scipy.stats distribution"
            )
        lo, _ = spec.support()
        if lo < 0:
            raise TheoryError(f"capacity = {spec!r}: capacities must be ≥ 0 (support starts at {lo})")
        self._fixed = None
        self._dist = spec

    def below(self, x: np.ndarray) -> np.ndarray:
        """``P[C̃ < x]`` elementwise (for a continuous C̃ this is the CDF)."""
        x = np.asarray(x, dtype=float)
        if self._fixed is not None:
            return (self._fixed < x).astype(float)
        return np.asarray(self._dist.cdf(x), dtype=float)

    def sample(self, rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
        """Draw i.i.d. capacities."""
        if self._fixed is not None:
            return np.full(shape, self._fixed)
        return np.asarray(self._dist.rvs(size=shape, random_state=rng), dtype=float)

    def __repr__(self) -> str:
        if self._fixed is not None:
            return f"Capacity({self._fixed:g})"
        d = self._dist
        return f"Capacity({d.dist.name}{tuple(float(a) for a in d.args)}{dict(d.kwds) if d.kwds else ''})"


def uniform_capacity(low: float, high: float) -> Any:
    """``C̃ ~ U(low, high)`` as a frozen scipy distribution (docs/model.md §3's example: ``U(0, 4D)``)."""
    lo = nonnegative("low", low)
    hi = positive("high", high)
    if not hi > lo:
        raise TheoryError(f"high = {high!r}: must be > low = {low!r}")
    from scipy import stats

    return stats.uniform(loc=lo, scale=hi - lo)


def offload_probability(k: int | np.ndarray) -> np.ndarray:
    """``P_o(k) = k/(k+1)``: a device with ``k`` neighbours is not the cheapest of ``k+1`` i.i.d. costs."""
    ka = np.asarray(k, dtype=float)
    if np.any(ka < 0):
        raise TheoryError(f"k = {k!r}: degrees must be ≥ 0")
    return ka / (ka + 1.0)


def mean_field_loads(graph: Any) -> dict[int, float]:
    """``ℓ_k = 1 - P_o(k) + k Σ_n P_o(n) p_k(n)/n`` for each degree ``k`` of the graph (units of D)."""
    deg = graph_degrees(graph)
    indptr, indices = graph_csr(graph)
    out: dict[int, float] = {}
    for k in np.unique(deg):
        nodes = np.flatnonzero(deg == k)
        if k == 0:
            out[0] = 1.0
            continue
        nb_deg = np.concatenate([deg[indices[indptr[i]:indptr[i + 1]]] for i in nodes])
        # p_k(n): fraction of the neighbour slots of degree-k devices held by degree-n devices
        ns, cnt = np.unique(nb_deg, return_counts=True)
        p = cnt / cnt.sum()
        out[int(k)] = float(1.0 - offload_probability(k) + k * np.sum(offload_probability(ns) * p / ns))
    return out


def _mean_field(graph: Any, D: float, cap: Capacity) -> float:
    deg = graph_degrees(graph)
    loads = mean_field_loads(graph)
    ks, N = np.unique(deg, return_counts=True)
    ell = np.array([loads[int(k)] for k in ks])
    return float(np.sum(N * cap.below(D * ell)))


def violation_probabilities(graph: Any, D: float, capacity: Any) -> np.ndarray:
    """Per device ``E[F(D L_i)]`` from the generating function (the corrected Theorem 6), node order."""
    Dv = positive("D", D)
    cap = Capacity(capacity)
    deg = graph_degrees(graph)
    indptr, indices = graph_csr(graph)
    out = np.empty(deg.size)
    for i in range(deg.size):
        nj = deg[indices[indptr[i]:indptr[i + 1]]].astype(float)
        k = nj.size
        levels = np.arange(k + 2, dtype=float)
        Fl = cap.below(Dv * levels)  # F(D l), l = 0..k+1
        if k == 0:
            out[i] = Fl[1]
            continue
        Q = int(min(MAX_QUADRATURE, max(16, math.ceil((nj.sum() + 2) / 2) + 1)))
        x, w = np.polynomial.legendre.leggauss(Q)
        u = 0.5 * (x + 1.0)
        w = 0.5 * w
        pX = np.zeros((Q, k + 1))
        pK = np.zeros((Q, k + 1))
        pX[:, 0] = 1.0
        pK[:, 0] = 1.0
        for m, n_j in enumerate(nj):
            q = (1.0 - u) ** n_j                      # P[j sends to i | u] = P[i beats j's other n_j]
            a = (1.0 - q)[:, None]
            b = q[:, None]
            pX[:, 1:m + 2] = pX[:, 1:m + 2] * a + pX[:, 0:m + 1] * b
            pX[:, 0] *= a[:, 0]
            a2 = ((1.0 - u) - q)[:, None]             # j does not send to i and c_j > u
            pK[:, 1:m + 2] = pK[:, 1:m + 2] * a2 + pK[:, 0:m + 1] * b
            pK[:, 0] *= a2[:, 0]
        integrand = pX @ Fl[:k + 1] + pK @ (Fl[1:k + 2] - Fl[:k + 1])
        out[i] = float(w @ integrand)
    return out


@numba.njit(cache=True)
def _loads(costs: np.ndarray, indptr: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """Per replication, the load ``L_i`` (units of D): each device sends to its closed-neighbourhood argmin."""
    R, n = costs.shape
    out = np.zeros((R, n))
    for r in range(R):
        for i in range(n):
            best = costs[r, i]
            target = i
            for p in range(indptr[i], indptr[i + 1]):
                j = indices[p]
                if costs[r, j] < best:
                    best = costs[r, j]
                    target = j
            out[r, target] += 1.0
    return out


@dataclass(frozen=True)
class ViolationSimulation:
    """Monte Carlo estimate of Theorem 6 on a concrete graph.

    ``mean`` is the average number of violated devices per replication and ``stderr`` its
    standard error. With ``sample_capacity=True`` capacities are drawn too (a direct count);
    otherwise each replication's count is replaced by its conditional expectation
    ``Σ_i F(D L_i)`` (same mean, smaller variance).
    """

    D: float
    replications: int
    seed: int
    sample_capacity: bool
    mean: float
    stderr: float
    mean_load: float

    def z_score(self, value: float) -> float:
        """``(mean - value) / stderr``."""
        return (self.mean - value) / self.stderr if self.stderr > 0 else 0.0


def simulate_violations(graph: Any, D: float, capacity: Any, *, replications: int = 20000, seed: int = 0,
                        sample_capacity: bool = True, chunk: int = 2000) -> ViolationSimulation:
    """Simulate Theorem 6: draw i.i.d. ``U(0, 1)`` costs, route every device's ``D`` points to the
    cheapest device of its closed neighbourhood (Theorem 3 with ``c_ij = 0``), draw capacities
    and count devices with ``D L_i > C_i``; repeat ``replications`` times."""
    Dv = positive("D", D)
    cap = Capacity(capacity)
    R = count("replications", replications, 2)
    ch = count("chunk", chunk, 1)
    indptr, indices = graph_csr(graph)
    n = indptr.size - 1
    rng = np.random.default_rng(seed)
    counts = []
    load_total = 0.0
    left = R
    while left > 0:
        m = min(ch, left)
        L = _loads(rng.random((m, n)), indptr, indices)
        load_total += float(L.sum())
        if sample_capacity:
            counts.append(((Dv * L) > cap.sample(rng, (m, n))).sum(axis=1).astype(float))
        else:
            counts.append(cap.below(Dv * L).sum(axis=1))
        left -= m
    per = np.concatenate(counts)
    return ViolationSimulation(D=Dv, replications=R, seed=int(seed), sample_capacity=bool(sample_capacity),
                               mean=float(per.mean()), stderr=float(per.std(ddof=1) / math.sqrt(R)),
                               mean_load=load_total / (R * n))


def expected_violations(graph: Any, D: float, capacity: Any, method: str = "mean-field", *,
                        replications: int = 20000, seed: int = 0) -> float:
    """Theorem 6: the expected number of devices whose capacity is violated.

    ``graph``: undirected networkx graph; ``D``: points collected by every device; ``capacity``:
    a number or a frozen continuous scipy distribution of ``C̃`` (e.g. ``uniform_capacity(0, 4*D)``).
    ``method``: ``"mean-field"`` (16) as printed, ``"exact"`` (generating-function correction,
    docs/model.md §3) or ``"simulation"`` (mean of :func:`simulate_violations` with ``replications`` and
    ``seed``). See the module docstring for the equations.
    """
    choice("method", method, METHODS)
    Dv = positive("D", D)
    cap = Capacity(capacity)
    if method == "mean-field":
        return _mean_field(graph, Dv, cap)
    if method == "exact":
        return float(violation_probabilities(graph, Dv, cap).sum())
    return simulate_violations(graph, Dv, cap, replications=replications, seed=seed).mean
