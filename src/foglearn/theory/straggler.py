"""Theorem 2: device capacity under exp(μ) compute stragglers (a D/M/1 queue).

A device that is planned to process ``C`` points per slot receives them at the deterministic
rate ``C`` (inter-arrival time ``1/C`` slots) and serves each in an ``exp(μ)`` time. This is a
D/M/1 queue: with ``φ(C)`` the root in ``(0, 1)`` of

    φ = exp(-μ (1 - φ) / C)                                   (Theorem 2, exists iff C < μ)

the mean wait in queue is ``W_q = φ / (μ (1 - φ))`` and the mean sojourn (wait + service) is
``W = 1 / (μ (1 - φ))``. Setting ``W_q = σ`` gives ``φ = σμ / (1 + σμ)`` (the paper's
statement) and the closed form (docs/model.md §3)

    C* = μ / ((1 + x) · log1p(1/x)),   x = σμ                  (queue-wait form)

while bounding the sojourn time by σ needs ``σμ > 1`` and gives

    C* = 1 / (σ · ln(σμ / (σμ - 1)))                           (sojourn form).

:func:`simulate_queue_wait` checks these numbers by simulating the queue (Lindley recursion).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numba
import numpy as np
from scipy.special import lambertw

from foglearn.theory._checks import TheoryError, choice, count, positive

WAIT_FORMS = ("queue", "sojourn")


def phi(capacity: float, mu: float) -> float:
    """``φ(C)``: the root in ``(0, 1)`` of ``φ = exp(-μ(1-φ)/C)`` (Theorem 2).

    With ``a = μ/C > 1``, ``φ = -W_0(-a e^{-a}) / a`` (principal Lambert-W branch; the other
    root, ``φ = 1``, is the W_{-1} branch), polished by Newton steps on ``q = 1 - φ``.

    Raises :class:`TheoryError` unless ``0 < C < μ`` (for ``C ≥ μ`` the queue is unstable and
    the only root in ``(0, 1]`` is 1).

    >>> round(phi(straggler_capacity(1, 10), 10), 6)
    0.909091
    """
    q = _one_minus_phi(capacity, mu)
    if q < 0.5:
        return 1.0 - q
    # small φ (C ≪ μ): 1 - q would cancel; use the Lambert-W root, polished on φ itself
    a = float(mu) / float(capacity)
    p = float(np.real(-lambertw(-a * math.exp(-a), 0) / a))
    for _ in range(3):
        e = math.exp(-a * (1.0 - p))
        d = 1.0 - a * e
        if d == 0.0 or p == 0.0:
            break
        p -= (p - e) / d
    return p


def _one_minus_phi(capacity: float, mu: float) -> float:
    """``1 - φ(C)``, computed directly so that it keeps full relative precision when φ → 1.

    ``q = 1 - φ`` solves ``q + expm1(-a q) = 0`` with ``a = μ/C``; the start is the Lambert-W
    root, refined by Newton steps on that form.
    """
    C = positive("capacity", capacity)
    m = positive("mu", mu)
    if not C < m:
        raise TheoryError(f"capacity = {capacity!r}: φ(C) exists only for C < mu = {mu!r} (stable queue)")
    a = m / C
    q = 1.0 + float(np.real(lambertw(-a * math.exp(-a), 0))) / a
    if not 0.0 < q < 1.0:
        if a > 1.5:  # e^{-a} underflowed: φ ≈ e^{-a} is below double precision next to 1
            q = -math.expm1(-a)
            if q >= 1.0:
                return 1.0
        else:  # a → 1: the root merges with q = 0; start from the series q ≈ 2(a-1)/a²
            q = min(max(2.0 * (a - 1.0) / (a * a), 1e-300), 0.5)
    for _ in range(50):
        h = q + math.expm1(-a * q)
        d = 1.0 - a * math.exp(-a * q)
        if d == 0.0:
            break
        step = h / d
        q_new = q - step
        if not 0.0 < q_new < 1.0:
            q_new = q / 2.0 if q_new <= 0.0 else (q + 1.0) / 2.0
        if abs(q_new - q) <= 4e-16 * q:
            q = q_new
            break
        q = q_new
    return q


def queue_wait(capacity: float, mu: float) -> float:
    """Mean wait in queue of the D/M/1 queue: ``W_q = φ(C) / (μ (1 - φ(C)))`` (slots)."""
    q = _one_minus_phi(capacity, mu)
    return (1.0 - q) / (float(mu) * q)


def sojourn_time(capacity: float, mu: float) -> float:
    """Mean sojourn (wait + service) of the D/M/1 queue: ``W = 1 / (μ (1 - φ(C)))`` (slots)."""
    q = _one_minus_phi(capacity, mu)
    return 1.0 / (float(mu) * q)


def straggler_capacity(sigma: float, mu: float, wait: str = "queue") -> float:
    """Theorem 2: the largest capacity ``C*`` whose mean waiting time is ``σ`` slots.

    ``wait="queue"`` bounds the wait in queue ``W_q`` (the paper's statement,
    ``φ(C*) = σμ/(1+σμ)``): ``C* = μ / ((1+x) log1p(1/x))`` with ``x = σμ``.
    ``wait="sojourn"`` bounds wait + service (``φ(C*) = (σμ-1)/(σμ)``, needs ``σμ > 1``):
    ``C* = 1 / (σ ln(σμ/(σμ-1)))``. Any ``C ≤ C*`` keeps the mean wait ≤ σ (``φ`` increases in C).

    >>> round(straggler_capacity(1, 10), 3), round(straggler_capacity(1, 10, wait="sojourn"), 3)
    (9.538, 9.491)
    """
    s = positive("sigma", sigma)
    m = positive("mu", mu)
    choice("wait", wait, WAIT_FORMS)
    x = s * m
    if wait == "queue":
        return m / ((1.0 + x) * math.log1p(1.0 / x))
    if not x > 1.0:
        raise TheoryError(
            f"sigma * mu = {x!r}: the sojourn form needs sigma * mu > 1 "
            "(the mean service time 1/mu alone already exceeds sigma)"
        )
    return 1.0 / (s * math.log1p(1.0 / (x - 1.0)))


def target_phi(sigma: float, mu: float, wait: str = "queue") -> float:
    """The ``φ`` that Theorem 2 targets: ``σμ/(1+σμ)`` (queue) or ``(σμ-1)/(σμ)`` (sojourn)."""
    x = positive("sigma", sigma) * positive("mu", mu)
    choice("wait", wait, WAIT_FORMS)
    if wait == "queue":
        return x / (1.0 + x)
    if not x > 1.0:
        raise TheoryError(f"sigma * mu = {x!r}: the sojourn form needs sigma * mu > 1")
    return (x - 1.0) / x


@numba.njit(cache=True)
def _lindley(service: np.ndarray, interarrival: float, w0: float) -> tuple[float, float]:
    """Lindley recursion ``W_{k+1} = max(0, W_k + S_k - A)``; returns (Σ W_k, W_next)."""
    w = w0
    total = 0.0
    for k in range(service.shape[0]):
        total += w
        w = w + service[k] - interarrival
        if w < 0.0:
            w = 0.0
    return total, w


@dataclass(frozen=True)
class QueueSimulation:
    """A D/M/1 queue simulation (Theorem 2's Monte Carlo counterpart).

    ``mean_wait`` is the mean wait in queue ``W_q`` over ``customers`` points after
    ``warmup`` discarded ones; ``stderr`` its standard error from ``batches`` batch means.
    ``mean_sojourn`` adds the mean simulated service time. ``theory_wait`` is ``W_q`` from φ(C).
    """

    capacity: float
    mu: float
    customers: int
    warmup: int
    batches: int
    seed: int
    mean_wait: float
    stderr: float
    mean_sojourn: float
    sojourn_stderr: float
    theory_wait: float

    def __post_init__(self) -> None:
        if not (self.stderr >= 0 and self.sojourn_stderr >= 0):
            raise TheoryError("stderr: must be ≥ 0")

    @property
    def theory_sojourn(self) -> float:
        """``W = W_q + 1/μ``."""
        return self.theory_wait + 1.0 / self.mu

    def z_score(self) -> float:
        """``(mean_wait - W_q) / stderr``: how many standard errors the simulation is off."""
        return (self.mean_wait - self.theory_wait) / self.stderr if self.stderr > 0 else 0.0


def simulate_queue_wait(capacity: float, mu: float, *, customers: int = 4_000_000,
                        warmup: int = 100_000, batches: int = 40, seed: int = 0) -> QueueSimulation:
    """Simulate the D/M/1 queue of Theorem 2 and measure the mean wait in queue.

    Points arrive every ``1/C`` slots (deterministic, rate ``C``) and are served in ``exp(μ)``
    times, first come first served; waits follow the Lindley recursion
    ``W_{k+1} = max(0, W_k + S_k - 1/C)`` (compiled with numba, services drawn from
    ``numpy.random.default_rng(seed)`` in chunks). The queue starts empty; the first
    ``warmup`` points are discarded; the standard error comes from ``batches`` consecutive
    batch means (each batch must be much longer than the queue's relaxation time, about
    ``1/(1-C/μ)^2`` points). Needs ``C < μ``.
    """
    C = positive("capacity", capacity)
    m = positive("mu", mu)
    if not C < m:
        raise TheoryError(f"capacity = {capacity!r}: the queue is unstable unless capacity < mu = {mu!r}")
    n = count("customers", customers, 2)
    w_up = count("warmup", warmup, 0)
    b = count("batches", batches, 2)
    if n < b:
        raise TheoryError(f"customers = {customers!r}: must be ≥ batches = {batches!r}")
    rng = np.random.default_rng(seed)
    A = 1.0 / C
    w = 0.0
    chunk = 1 << 20
    left = w_up
    while left > 0:
        k = min(chunk, left)
        _, w = _lindley(rng.exponential(1.0 / m, k), A, w)
        left -= k
    per = n // b
    waits = np.empty(b)
    services = np.empty(b)
    for j in range(b):
        tot, stot, left = 0.0, 0.0, per
        while left > 0:
            k = min(chunk, left)
            s = rng.exponential(1.0 / m, k)
            t, w = _lindley(s, A, w)
            tot += t
            stot += float(s.sum())
            left -= k
        waits[j] = tot / per
        services[j] = stot / per
    soj = waits + services
    return QueueSimulation(
        capacity=C, mu=m, customers=per * b, warmup=w_up, batches=b, seed=int(seed),
        mean_wait=float(waits.mean()), stderr=float(waits.std(ddof=1) / math.sqrt(b)),
        mean_sojourn=float(soj.mean()), sojourn_stderr=float(soj.std(ddof=1) / math.sqrt(b)),
        theory_wait=queue_wait(C, m),
    )
