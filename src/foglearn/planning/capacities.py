"""Straggler-aware processing capacities (Theorem 2, SPEC §3).

A device whose per-point service times are exp(μ) (D/M/1 queue with arrival rate ``C``) keeps the
mean wait below ``σ`` when ``C ≤ C*``:

* queue wait (Theorem 2 as printed, ``W_q ≤ σ``): ``C* = μ / ((1 + x) · log1p(1/x))``, ``x = σμ``;
* sojourn (wait + service ``≤ σ``): ``C = 1 / (σ · ln(σμ / (σμ − 1)))``, needs ``σμ > 1``.

SPEC numbers: (σ, μ) = (1, 10) → 9.538, (0.5, 20) → 19.076, (0.1, 100) → 95.382; sojourn (1, 10) → 9.491.
"""

from __future__ import annotations

import numpy as np

from foglearn.network.scenario import Scenario, ScenarioError

__all__ = ["queue_wait_capacity", "sojourn_capacity", "straggler_capacities"]


def _check(sigma, mu):
    s = np.asarray(sigma, dtype=np.float64)
    m = np.asarray(mu, dtype=np.float64)
    if not np.all(np.isfinite(s)) or np.any(s <= 0):
        raise ValueError(f"sigma = {sigma}: the wait bound must be > 0 and finite")
    if not np.all(np.isfinite(m)) or np.any(m <= 0):
        raise ValueError(f"mu = {mu}: the service rate must be > 0 and finite")
    return s, m


def queue_wait_capacity(sigma, mu):
    """``C* = μ / ((1+x) log1p(1/x))``, ``x = σμ``: largest rate with mean queue wait ``≤ σ`` (Thm 2)."""
    s, m = _check(sigma, mu)
    x = s * m
    out = m / ((1.0 + x) * np.log1p(1.0 / x))
    return float(out) if out.ndim == 0 else out


def sojourn_capacity(sigma, mu):
    """``C = 1 / (σ ln(σμ/(σμ−1)))``: largest rate with mean sojourn time ``≤ σ`` (needs ``σμ > 1``)."""
    s, m = _check(sigma, mu)
    x = s * m
    if np.any(x <= 1):
        raise ValueError(f"sigma * mu = {x}: the sojourn bound needs sigma * mu > 1 (a service alone takes 1/mu)")
    out = 1.0 / (s * np.log(x / (x - 1.0)))
    return float(out) if out.ndim == 0 else out


def straggler_capacities(scenario: Scenario, sigma, mu, wait: str = "queue") -> Scenario:
    """A copy of ``scenario`` whose ``proc_cap`` is Theorem 2's capacity per device (every slot).

    ``mu`` (and ``sigma``) may be scalars or per-device arrays ``[n]``; ``wait`` is ``"queue"``
    (Theorem 2) or ``"sojourn"``.
    """
    n, T = scenario.n_devices, scenario.horizon
    if wait == "queue":
        cap = queue_wait_capacity(sigma, mu)
    elif wait == "sojourn":
        cap = sojourn_capacity(sigma, mu)
    else:
        raise ValueError(f"wait = {wait!r}: must be 'queue' or 'sojourn'")
    cap = np.asarray(cap, dtype=np.float64)
    if cap.ndim == 1 and cap.shape[0] != n:
        raise ScenarioError(f"mu: per-device values need length n = {n}, got {cap.shape[0]}")
    if cap.ndim > 1:
        raise ScenarioError(f"mu: must be a scalar or a length-{n} array")
    return scenario.replace(proc_cap=np.broadcast_to(cap, (T, n)).copy(),
                            info={**scenario.info, "straggler": {"sigma": np.asarray(sigma).tolist(),
                                                                  "mu": np.asarray(mu).tolist(), "wait": wait}})
