"""Theorem 4: the hierarchical topology with the square-root error model.

``n`` leaves with processing cost ``c`` each collect ``D`` points and may offload a fraction
``s`` to one edge server (link cost ``c_t``, server processing cost ``c_{n+1}``) and discard a
fraction ``r``; the error cost is ``γ / sqrt(G)`` at each leaf and at the server. By symmetry
all leaves act alike and the objective (proof of Theorem 4) is

    J(r, s) = n(1-r-s) D c + n s D (c_{n+1} + c_t) + n γ / sqrt((1-r-s) D) + γ / sqrt(s n D).

Its stationary point is (13)-(14):

    r* = 1 - (γ/2c)^{2/3} / D - s*,        s* = (γ / (2(c_{n+1}+c_t)))^{2/3} / (n D),

valid (r* ≥ 0) only when ``D ≥ (γ/2c)^{2/3} + (γ/(2(c_{n+1}+c_t)))^{2/3} / n`` (docs/model.md §3).
Below that threshold the optimum has ``r = 0`` and ``s`` solves the one-variable stationarity
equation ``∂J(0, s)/∂s = 0``:

    n D (c_{n+1} + c_t - c) + (n γ / 2) D^{-1/2} (1-s)^{-3/2} - (γ / 2) (n D)^{-1/2} s^{-3/2} = 0.

:func:`solve_hierarchical_numeric` minimises ``J`` with scipy; :func:`solve_augmented_numeric`
minimises the planner's version of the instance (the server also collects ``k`` points of its own),
which :mod:`foglearn.experiments.theorems` compares with the square-root planner. This module is
mathematics only: it imports neither the network model nor the planner.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.optimize import brentq, minimize

from foglearn.theory._checks import TheoryError, count, nonnegative, positive


@dataclass(frozen=True)
class HierarchyInstance:
    """Theorem 4's parameters: ``n`` leaves, ``D`` points each, costs ``c``, ``c_{n+1}``, ``c_t``, weight ``γ``."""

    n: int
    D: float
    c: float
    c_server: float
    c_link: float
    gamma: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "n", count("n", self.n, 1))
        object.__setattr__(self, "D", positive("D", self.D))
        object.__setattr__(self, "c", positive("c", self.c))
        object.__setattr__(self, "c_server", nonnegative("c_server", self.c_server))
        object.__setattr__(self, "c_link", nonnegative("c_link", self.c_link))
        object.__setattr__(self, "gamma", positive("gamma", self.gamma))
        if not self.c > self.c_server:
            raise TheoryError(
                f"c = {self.c!r}: Theorem 4 assumes the leaves cost more than the server "
                f"(c > c_server = {self.c_server!r})"
            )
        if self.c_server + self.c_link <= 0:
            raise TheoryError("c_server + c_link: must be > 0 (otherwise s* is unbounded)")

    @property
    def threshold(self) -> float:
        """The smallest ``D`` for which (13)-(14) hold: ``(γ/2c)^{2/3} + (γ/(2(c_{n+1}+c_t)))^{2/3}/n``."""
        return _leaf_points(self) + _server_points(self) / self.n


def _leaf_points(h: HierarchyInstance) -> float:
    """``(γ/2c)^{2/3}``: the points a leaf processes at the interior optimum."""
    return (h.gamma / (2.0 * h.c)) ** (2.0 / 3.0)


def _server_points(h: HierarchyInstance) -> float:
    """``(γ/(2(c_{n+1}+c_t)))^{2/3}``: the points the server processes at the interior optimum."""
    return (h.gamma / (2.0 * (h.c_server + h.c_link))) ** (2.0 / 3.0)


def hierarchical_objective(r: float, s: float, n: int, D: float, c: float, c_server: float,
                           c_link: float, gamma: float) -> float:
    """``J(r, s) = n(1-r-s)Dc + nsD(c_{n+1}+c_t) + nγ/sqrt((1-r-s)D) + γ/sqrt(snD)`` (proof of Thm 4).

    Infinite when a leaf or the server processes nothing (``1-r-s ≤ 0`` or ``s ≤ 0``).
    """
    h = HierarchyInstance(n, D, c, c_server, c_link, gamma)
    return _objective(np.array([r, s]), h)


def _objective(x: np.ndarray, h: HierarchyInstance) -> float:
    r, s = float(x[0]), float(x[1])
    keep = 1.0 - r - s
    if keep <= 0.0 or s <= 0.0:
        return math.inf
    n, D = h.n, h.D
    return (n * keep * D * h.c + n * s * D * (h.c_server + h.c_link)
            + n * h.gamma / math.sqrt(keep * D) + h.gamma / math.sqrt(s * n * D))


def _boundary_s(h: HierarchyInstance) -> float:
    """Root in (0, 1) of ∂J(0, s)/∂s, the optimum's s when r = 0 binds."""
    n, D, g = h.n, h.D, h.gamma

    def dJ(s: float) -> float:
        return (n * D * (h.c_server + h.c_link - h.c) + 0.5 * n * g * D ** -0.5 * (1.0 - s) ** -1.5
                - 0.5 * g * (n * D) ** -0.5 * s ** -1.5)

    # dJ → -inf as s → 0 and → +inf as s → 1; J(0, s) is strictly convex, so the root is unique.
    lo, hi = 1e-100, 1.0 - 1e-15
    return float(brentq(dJ, lo, hi, xtol=1e-15, rtol=4 * np.finfo(float).eps, maxiter=500))


def hierarchical_optimum(n: int, D: float, c: float, c_server: float, c_link: float,
                         gamma: float) -> tuple[float, float]:
    """Theorem 4 with the small-D correction: the optimal ``(r*, s*)``.

    For ``D ≥ (γ/2c)^{2/3} + (γ/(2(c_{n+1}+c_t)))^{2/3}/n`` this is (13)-(14):
    ``s* = (γ/(2(c_{n+1}+c_t)))^{2/3}/(nD)``, ``r* = 1 - (γ/2c)^{2/3}/D - s*``.
    Otherwise (13) would give ``r* < 0``; the optimum is ``r* = 0`` with ``s*`` the root of
    ``∂J(0, s)/∂s = 0`` (see the module docstring).

    Parameters: ``n`` leaves, ``D`` points per leaf, leaf cost ``c``, server cost ``c_server``
    (``c_{n+1}``, must be < c), link cost ``c_link`` (``c_t``), error weight ``gamma`` (``γ``).

    >>> tuple(round(v, 6) for v in hierarchical_optimum(10, 1000, .5, .1, .05, 50))
    (0.983399, 0.003029)
    >>> tuple(round(v, 6) for v in hierarchical_optimum(5, 15, .2, .1, .05, 20))
    (0.0, 0.189883)
    """
    h = HierarchyInstance(n, D, c, c_server, c_link, gamma)
    if h.D >= h.threshold:
        s = _server_points(h) / (h.n * h.D)
        r = 1.0 - _leaf_points(h) / h.D - s
        return max(r, 0.0), s
    return 0.0, _boundary_s(h)


@dataclass(frozen=True)
class HierarchySolution:
    """A numerical solution of Theorem 4's instance."""

    r: float
    s: float
    objective: float
    method: str
    info: dict[str, Any]


def solve_hierarchical_numeric(n: int, D: float, c: float, c_server: float, c_link: float,
                               gamma: float) -> HierarchySolution:
    """Minimise ``J(r, s)`` numerically (scipy ``trust-constr`` then SLSQP polish), independent of (13)-(14).

    Constraints: ``r ≥ 0``, ``s ≥ ε``, ``r + s ≤ 1 - ε`` with ``ε = 1e-12``; ``J`` is infinite
    on the excluded boundary, so the floor never binds at the optimum. Several starting points
    are tried and the best local solution (``J`` is convex, so it is the global one) is kept.
    """
    h = HierarchyInstance(n, D, c, c_server, c_link, gamma)
    eps = 1e-12
    cons = [{"type": "ineq", "fun": lambda x: 1.0 - eps - x[0] - x[1]}]
    bounds = [(0.0, 1.0), (eps, 1.0)]
    best = None
    # scale: variables are fractions, the objective is O(nDc); SLSQP copes with a scaled objective.
    scale = 1.0 / max(1.0, h.n * h.D * h.c)

    def f(x: np.ndarray) -> float:
        v = _objective(x, h)
        return v * scale if math.isfinite(v) else 1e300

    for x0 in ([0.0, 0.5], [0.5, 0.25], [0.9, 0.05], [0.0, 0.05], [0.98, 0.01]):
        res = minimize(f, np.array(x0), method="SLSQP", bounds=bounds, constraints=cons,
                       options={"ftol": 1e-15, "maxiter": 1000})
        if best is None or res.fun < best.fun:
            best = res
    assert best is not None
    r, s = float(best.x[0]), float(best.x[1])
    return HierarchySolution(r=r, s=s, objective=_objective(np.array([r, s]), h), method="scipy-slsqp",
                             info={"message": str(best.message), "nit": int(best.nit)})


def _augmented_objective(x: np.ndarray, h: HierarchyInstance, k: int) -> float:
    """``J(r, s)`` with the server also keeping ``q·k`` of its own ``k`` points (x = [r, s, q])."""
    r, s, q = float(x[0]), float(x[1]), float(x[2])
    keep = 1.0 - r - s
    G = s * h.n * h.D + q * k
    if keep <= 0.0 or G <= 0.0:
        return math.inf
    n, D = h.n, h.D
    return (n * keep * D * h.c + n * s * D * (h.c_server + h.c_link) + q * k * h.c_server
            + n * h.gamma / math.sqrt(keep * D) + h.gamma / math.sqrt(G))


def solve_augmented_numeric(n: int, D: int, c: float, c_server: float, c_link: float, gamma: float,
                            server_points: int = 1) -> HierarchySolution:
    """scipy on the planner's version of the instance (see
    :func:`foglearn.experiments.theorems.hierarchical_scenario`)."""
    h = HierarchyInstance(n, D, c, c_server, c_link, gamma)
    k = count("server_points", server_points, 1)
    eps = 1e-12
    scale = 1.0 / max(1.0, h.n * h.D * h.c)

    def f(x: np.ndarray) -> float:
        v = _augmented_objective(x, h, k)
        return v * scale if math.isfinite(v) else 1e300

    cons = [{"type": "ineq", "fun": lambda x: 1.0 - eps - x[0] - x[1]}]
    best = None
    for x0 in ([0.0, 0.5, 1.0], [0.5, 0.25, 1.0], [0.9, 0.05, 1.0], [0.98, 0.01, 1.0]):
        res = minimize(f, np.array(x0), method="SLSQP", bounds=[(0.0, 1.0), (0.0, 1.0), (0.0, 1.0)],
                       constraints=cons, options={"ftol": 1e-15, "maxiter": 1000})
        if best is None or res.fun < best.fun:
            best = res
    assert best is not None
    return HierarchySolution(r=float(best.x[0]), s=float(best.x[1]),
                             objective=_augmented_objective(best.x, h, k), method="scipy-slsqp-augmented",
                             info={"server_keep": float(best.x[2]), "server_points": k})
