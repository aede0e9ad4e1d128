"""Straggler-aware processing capacities (Theorem 2, docs/model.md §3) applied to a scenario.

The closed forms live in :func:`foglearn.theory.straggler_capacity` (queue wait: the paper's
statement; sojourn: wait + service); this module sets a scenario's ``C_i(t)`` from them.
"""

from __future__ import annotations

import numpy as np

from foglearn.network.scenario import Scenario, ScenarioError

__all__ = ["straggler_capacities"]


def straggler_capacities(scenario: Scenario, sigma, mu, wait: str = "queue") -> Scenario:
    """A copy of ``scenario`` whose ``proc_cap`` is Theorem 2's capacity ``C*(σ, μ_i)`` per device.

    ``mu`` (and ``sigma``) may be scalars or per-device arrays ``[n]``; ``wait`` is ``"queue"``
    (mean wait in queue ``≤ σ``, Theorem 2) or ``"sojourn"`` (wait + service ``≤ σ``).
    """
    # imported on use: planning needs no theory module to import
    from foglearn.theory.straggler import straggler_capacity

    n, T = scenario.n_devices, scenario.horizon
    s, m = np.broadcast_arrays(np.asarray(sigma, dtype=np.float64), np.asarray(mu, dtype=np.float64))
    if s.ndim > 1 or (s.ndim == 1 and s.shape[0] != n):
        raise ScenarioError(f"mu/sigma: must be scalars or length-{n} arrays, got shape {s.shape}")
    cap = np.array([straggler_capacity(float(a), float(b), wait) for a, b in zip(s.ravel(), m.ravel())])
    return scenario.replace(proc_cap=np.broadcast_to(cap.reshape(s.shape), (T, n)).copy(),
                            info={**scenario.info, "straggler": {"sigma": s.tolist(), "mu": m.tolist(), "wait": wait}})
