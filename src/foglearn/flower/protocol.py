"""Pure pieces of the Flower protocol: counting, estimation, aggregation (no Flower, no torch).

Kept apart so that the rules the ServerApp and the ClientApps must agree on are one function
each and can be tested directly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from foglearn.network.scenario import Scenario


def split_counts(total: int, fractions: Sequence[float]) -> np.ndarray:
    """Whole datapoints for each part of ``total`` given fractions ``[s_ii, s_ij..., ]``.

    The remainder ``r_i = 1 - Σ fractions`` is the discarded part and comes last in the result
    (length ``len(fractions) + 1``). Largest-remainder rounding, so the counts sum to ``total``;
    ties go to the earlier part (process, then offload, then discard: SPEC §2's tie rule).

    >>> split_counts(10, [0.5, 0.26]).tolist()
    [5, 3, 2]
    """
    if total < 0:
        raise ValueError(f"total = {total}: a count of datapoints must be ≥ 0")
    fr = np.asarray(fractions, dtype=np.float64)
    if (fr < -1e-9).any() or not np.isfinite(fr).all():
        raise ValueError(f"fractions = {fr.tolist()}: each must be a number ≥ 0")
    fr = np.maximum(fr, 0.0)  # solver round-off only
    s = float(fr.sum())
    if s > 1.0 + 1e-6:
        raise ValueError(f"fractions sum to {s:.9g}: keep + Σ offload must be ≤ 1 (eq. 8)")
    parts = np.append(fr, max(0.0, 1.0 - s))
    parts = parts / parts.sum() if parts.sum() > 0 else parts
    exact = parts * total
    base = np.floor(exact + 1e-9).astype(np.int64)
    left = int(total - base.sum())
    if left > 0:
        rem = exact - base
        order = sorted(range(parts.size), key=lambda k: (-round(rem[k], 9), k))
        for k in order[:left]:
            base[k] += 1
    return base


def aggregate_weighted(models: Sequence[Sequence[np.ndarray]], weights: Sequence[float]) -> list[np.ndarray]:
    """Eq. (4): ``w = Σ_i H_i w_i / Σ_i H_i``. Devices with ``H_i = 0`` take no part.

    Raises ``ValueError`` when all weights are 0 (the caller keeps the global model).
    """
    w = np.asarray(weights, dtype=np.float64)
    if w.size != len(models):
        raise ValueError(f"weights: {w.size} weights for {len(models)} models")
    if (w < 0).any():
        raise ValueError(f"weights: H_i must be ≥ 0, got {w.tolist()}")
    total = float(w.sum())
    if total <= 0:
        raise ValueError("weights: all H_i are 0, nothing to aggregate")
    out = [np.zeros_like(np.asarray(a), dtype=np.float64) for a in models[0]]
    for wi, model in zip(w, models):
        if wi == 0:
            continue
        for k, a in enumerate(model):
            out[k] += (wi / total) * np.asarray(a, dtype=np.float64)
    return [o.astype(np.asarray(a).dtype) for o, a in zip(out, models[0])]


@dataclass
class WindowMeasurements:
    """What the devices reported in one window (the server's observed scenario).

    Arrays are ``[W, n]`` / ``[W, E]``; ``nan`` marks "not reported" (a device inactive in that
    slot, a link that carried nothing).
    """

    collected: np.ndarray
    proc_cost: np.ndarray
    error_weight: np.ndarray
    proc_cap: np.ndarray
    link_cost: np.ndarray
    link_cap: np.ndarray
    link_up: np.ndarray
    slots: list[int] = field(default_factory=list)


def _mean_or(arr: np.ndarray, fallback: np.ndarray | float) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        seen = ~np.isnan(arr)
        count = seen.sum(axis=0)
        total = np.where(seen, arr, 0.0).sum(axis=0)
        mean = np.where(count > 0, total / np.maximum(count, 1), np.nan)
    fb = np.broadcast_to(np.asarray(fallback, dtype=np.float64), mean.shape)
    return np.where(np.isnan(mean), fb, mean)


def estimate_scenario(m: WindowMeasurements, src: np.ndarray, dst: np.ndarray, slots: int,
                      info: dict | None = None) -> Scenario:
    """The scenario the server plans window ``l`` on: window ``l-1``'s averages, repeated.

    Paper Sec. V-A / SPEC §4 (imperfect information): each device's ``D_i``, ``c_i``, ``f_i``,
    ``C_i`` and each link's ``c_ij``, ``C_ij`` are the means of what was reported in the
    previous window; ``D_i`` is rounded to whole points. A device that never reported is
    assumed inactive (collects nothing, so nothing is planned for it); a link never observed up
    is assumed down.
    """
    n = m.collected.shape[1]
    E = src.size
    reported = ~np.isnan(m.collected)
    ever = reported.any(axis=0)
    D = np.rint(_mean_or(m.collected, 0.0)).astype(np.int64)
    c = _mean_or(m.proc_cost, 0.0)
    f = _mean_or(m.error_weight, 0.0)
    cap = _mean_or(m.proc_cap, np.inf)
    lc = _mean_or(m.link_cost, 0.0) if E else np.zeros(0)
    lcap = _mean_or(m.link_cap, np.inf) if E else np.zeros(0)
    up = (m.link_up.any(axis=0) & ever[src] & ever[dst]) if E else np.zeros(0, dtype=bool)
    rep = lambda a: np.repeat(a[None, :], slots, axis=0)  # noqa: E731
    return Scenario(collected=rep(np.where(ever, D, 0)), proc_cost=rep(c), error_weight=rep(f),
                    src=src, dst=dst, link_cost=rep(lc), proc_cap=rep(cap), link_cap=rep(lcap),
                    link_up=rep(up), active=rep(ever) if n else None,
                    info={"estimated_from": list(m.slots), **(info or {})})


def empty_window(window: int, n: int, E: int) -> WindowMeasurements:
    nan = lambda *s: np.full(s, np.nan)  # noqa: E731
    return WindowMeasurements(collected=nan(window, n), proc_cost=nan(window, n),
                              error_weight=nan(window, n), proc_cap=nan(window, n),
                              link_cost=nan(window, E), link_cap=nan(window, E),
                              link_up=np.zeros((window, E), dtype=bool))
