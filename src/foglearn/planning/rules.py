"""The paper's rules that the simulator and the Flower app must apply alike, each stated once.

Pure numpy (no torch, no Flower). Every caller goes through these functions: the in-process
trainer (:mod:`foglearn.learning.trainer`), estimated-information planning
(:mod:`foglearn.planning.information`), a plan's cost accounting (:mod:`foglearn.planning.plan`)
and the Flower app (:mod:`foglearn.flower.protocol`, :mod:`foglearn.flower.strategy`, the
ClientApp). So the two ways of running the loop move the same points, weight the same models,
plan from the same estimates and charge the same costs (``tests/test_rules_equivalence.py``).

1. **Largest remainder** (docs/model.md §6): :func:`largest_remainder`, :func:`split_counts`.
   **Whole-point capacities**: :func:`whole_points`. A plan respects ``C_ij(t)`` and ``C_i(t)``
   in fractions; after rounding, a link carries at most ``⌊C_ij(t)⌋`` points (the excess stays
   at the source, never processed) and a device processes at most ``⌊C_i(t)⌋`` (the excess is
   dropped there).
2. **Eq. (4) weights**: :func:`aggregation_weights`, :func:`aggregate_weighted`.
3. **The window estimate** (paper Sec. V-A, docs/model.md §4): :func:`estimate_window`.
   Window ``l`` is planned from what was observed in window ``l − 1`` (``W`` slots). The paper
   uses "the time-averaged observations"; every estimate here is a time average over the window:

   * ``D̂_i = round(Σ_t D_i(t) / W)`` — a slot in which ``i`` reported nothing collected nothing
     (an inactive device collects nothing, docs/model.md §2); halves round to even (``np.rint``).
   * ``ĉ_i, f̂_i, Ĉ_i, ĉ_ij, Ĉ_ij``: the mean over the slots in which a value was reported
     (a cost never reported is 0, a capacity never reported is unlimited).
   * **Activity and links — the one link-up rule.** A 0/1 state is estimated like ``D``, by
     rounding its time average to the nearest value: device ``i`` is active in the estimate iff
     it reported in **more than half** of the window's slots, and link ``(i, j)`` is up iff it
     was reported usable (up, both ends active, the receiver active in the next slot) in **more
     than half** of them and both ends are active in the estimate. A slot without a report
     counts as down; exactly half is down. Why: the plan needs a 0/1 state, and the rounded
     average is the state that was wrong in the fewest slots of the window — under a stationary
     process the best single guess for the next one. "Up if up in any slot" (what the Flower
     app used to do, while the simulator used the majority) plans offloads on links that were
     down most of the time, whose points are then not sent and are charged as discarded; "up
     only if up in every slot" loses a link to a single failure.
4. **Unplanned data is kept** (docs/model.md §4): :func:`keep_unplanned`. Where the estimate has
   ``D̂_i = 0`` the planner decides nothing for device ``i``; if it does collect points, it
   processes them itself (``s_ii = 1``), as in the first window. An estimate of nothing cannot
   justify discarding real data, and under the square-root model a device that collects data
   but processes none has an infinite error term.
5. **Realised costs** (objective (5), docs/model.md §2): :func:`realised_costs` prices what was
   executed — processing ``Σ G_i(t) c_i(t)``, transfer ``Σ (points sent) c_ij(t)``, and the error
   term: linear ``Σ f_i(t) (points of i discarded at t)``, square root
   ``Σ_{D_i(t) > 0} f_i(t) / sqrt(G_i(t))``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from numba import njit

from foglearn.errors import InputError

__all__ = ["CostBreakdown", "WindowEstimate", "WindowMeasurements", "aggregate_weighted", "aggregation_weights",
           "error_term", "estimate_window", "keep_unplanned", "largest_remainder", "realised_costs",
           "split_counts", "transfer_cost", "whole_points"]

#: Remainders are compared rounded to this many decimals, so float noise cannot break a tie.
TIE_DECIMALS = 9
#: The count :func:`whole_points` gives an unlimited capacity.
UNLIMITED = 2**62


# ---------------------------------------------------------------------------------------------
# 1. Largest remainder
# ---------------------------------------------------------------------------------------------

def largest_remainder(weights: np.ndarray, group: np.ndarray, totals: np.ndarray,
                      priority: np.ndarray) -> np.ndarray:
    """Whole datapoints ``≈ weights`` with ``Σ counts == totals[group]`` exactly, per group.

    ``weights[k]`` is item ``k``'s real-valued share of ``totals[group[k]]`` — e.g.
    ``s_ii(t) D_i(t)``, ``s_ij(t) D_i(t)`` and ``r_i(t) D_i(t)`` for the group ``(i, t)``; the
    shares of a group sum to its total up to round-off. Each item gets ``floor(weight)``; the
    points left over go one at a time to the items with the largest remainders, ties to the
    lower ``priority`` (keep, then offloads in edge order, then discard: the tie rule of
    Theorem 3, docs/model.md §6).
    """
    weights = np.maximum(np.asarray(weights, dtype=np.float64), 0.0)
    group = np.asarray(group, dtype=np.int64)
    priority = np.asarray(priority)
    if not (weights.shape == group.shape == priority.shape) or weights.ndim != 1:
        raise InputError(f"weights, group, priority: must be vectors of one length, got shapes "
                         f"{weights.shape}, {group.shape}, {priority.shape}")
    if priority.dtype.kind not in "iu" or (priority.size and priority.max() > np.iinfo(np.int64).max):
        priority = np.unique(priority, return_inverse=True)[1].reshape(-1)  # ranks: the same order
    base = np.floor(weights + 1e-9).astype(np.int64)
    rem = np.round(weights - base, TIE_DECIMALS)
    have = np.bincount(group, weights=base, minlength=len(totals)).astype(np.int64)
    deficit = np.asarray(totals, dtype=np.int64) - have
    if (deficit < 0).any():
        g = int(np.argmax(deficit < 0))
        raise InputError(f"fractions of group {g} sum to more than 1 (eq. 8)")
    size = np.bincount(group, minlength=len(totals))
    if (deficit > size).any():
        g = int(np.argmax(deficit > size))
        raise InputError(f"fractions of group {g} sum to less than 1 by more than one point per part (eq. 8)")
    return base + _remainder_points(group, rem, np.asarray(priority, dtype=np.int64), deficit, size)


@njit(cache=True, nogil=True)
def _le(rem: np.ndarray, priority: np.ndarray, a: int, b: int) -> bool:  # pragma: no cover - numba
    """Item ``a`` goes before ``b``: larger remainder, then lower priority (then the earlier item)."""
    return rem[a] > rem[b] or (rem[a] == rem[b] and priority[a] <= priority[b])


@njit(cache=True, nogil=True)
def _remainder_points(group: np.ndarray, rem: np.ndarray, priority: np.ndarray, deficit: np.ndarray,
                      size: np.ndarray) -> np.ndarray:  # pragma: no cover - numba
    """One extra point to each of the ``deficit[g]`` items of group ``g`` first in the order of
    :func:`_le` (``deficit ≤ size``): the items are bucketed by group (stable), then each group with
    a deficit is ordered by a stable merge sort, or scanned once when one point is left over."""
    N, G = group.shape[0], deficit.shape[0]
    start = np.zeros(G + 1, np.int64)
    for g in range(G):
        start[g + 1] = start[g] + size[g]
    fill = start[:G].copy()
    items = np.empty(N, np.int64)
    for k in range(N):
        g = group[k]
        items[fill[g]] = k
        fill[g] += 1
    extra = np.zeros(N, np.int64)
    tmp = np.empty(N, np.int64)
    for g in range(G):
        d, a, b = deficit[g], start[g], start[g + 1]
        if d <= 0:
            continue
        if d == b - a:
            for q in range(a, b):
                extra[items[q]] = 1
        elif d == 1:
            best = items[a]
            for q in range(a + 1, b):
                if not _le(rem, priority, best, items[q]):
                    best = items[q]
            extra[best] = 1
        else:
            width = 1  # bottom-up merge sort of items[a:b] (stable)
            while width < b - a:
                for lo in range(a, b, 2 * width):
                    mid, hi = min(lo + width, b), min(lo + 2 * width, b)
                    i, j, o = lo, mid, lo
                    while i < mid and j < hi:
                        if _le(rem, priority, items[i], items[j]):
                            tmp[o] = items[i]
                            i += 1
                        else:
                            tmp[o] = items[j]
                            j += 1
                        o += 1
                    while i < mid:
                        tmp[o] = items[i]
                        i += 1
                        o += 1
                    while j < hi:
                        tmp[o] = items[j]
                        j += 1
                        o += 1
                for q in range(a, b):
                    items[q] = tmp[q]
                width *= 2
            for q in range(a, a + d):
                extra[items[q]] = 1
    return extra


def split_counts(total: int, fractions: Sequence[float]) -> np.ndarray:
    """One device's ``D_i(t) = total`` points split by ``[s_ii, s_ij...]`` (eq. 8).

    The remainder ``r_i = 1 - s_ii - Σ_j s_ij`` is the discarded part and comes last (length
    ``len(fractions) + 1``). :func:`largest_remainder` on one group, so the counts sum to
    ``total``; ties go to the earlier part (process, then offload, then discard).

    >>> split_counts(10, [0.5, 0.26]).tolist()
    [5, 3, 2]
    """
    if total < 0:
        raise InputError(f"total = {total}: a count of datapoints must be ≥ 0")
    fr = np.asarray(fractions, dtype=np.float64)
    if (fr < -1e-9).any() or not np.isfinite(fr).all():
        raise InputError(f"fractions = {fr.tolist()}: each must be a number ≥ 0")
    fr = np.maximum(fr, 0.0)  # solver round-off only
    s = float(fr.sum())
    if s > 1.0 + 1e-6:
        raise InputError(f"fractions sum to {s:.9g}: keep + Σ offload must be ≤ 1 (eq. 8)")
    parts = np.append(fr, max(0.0, 1.0 - s))
    parts = parts / parts.sum()
    return largest_remainder(parts * total, np.zeros(parts.size, np.int64), np.array([total]),
                             np.arange(parts.size))


def whole_points(cap: np.ndarray | float) -> np.ndarray:
    """The whole datapoints a capacity ``C`` (``C_i(t)`` or ``C_ij(t)``, eq. 9) admits: ``⌊C + 10⁻⁹⌋``
    (int64; an unlimited capacity, ``inf``, admits any count)."""
    cap = np.asarray(cap, dtype=np.float64)
    finite = np.isfinite(cap) & (cap < UNLIMITED)
    return np.where(finite, np.floor(np.where(finite, cap, 0.0) + 1e-9).astype(np.int64), UNLIMITED)


# ---------------------------------------------------------------------------------------------
# 2. Eq. (4)
# ---------------------------------------------------------------------------------------------

def aggregation_weights(H: np.ndarray) -> np.ndarray | None:
    """Eq. (4)'s weights ``H_i / Σ_j H_j`` (``H_i``: points ``i`` processed since the last
    aggregation; a device with ``H_i = 0`` gets weight 0). ``None`` when every ``H_i = 0``:
    the global model is kept (docs/model.md §4)."""
    H = np.asarray(H, dtype=np.float64)
    if (H < 0).any() or not np.isfinite(H).all():
        i = int(np.argmax((H < 0) | ~np.isfinite(H)))
        raise InputError(f"H[{i}] = {H[i]}: points processed must be a number ≥ 0")
    tot = H.sum()
    if tot <= 0:
        return None
    return H / tot


def aggregate_weighted(models: Sequence[Sequence[np.ndarray]], H: Sequence[float]) -> list[np.ndarray]:
    """Eq. (4) on parameter lists: ``w = Σ_i H_i w_i / Σ_i H_i`` (weights from
    :func:`aggregation_weights`, accumulated in float64). Raises :class:`InputError` when all
    ``H_i`` are 0 (the caller keeps the global model)."""
    if len(H) != len(models):
        raise InputError(f"weights: {len(H)} weights for {len(models)} models")
    w = aggregation_weights(np.asarray(H, dtype=np.float64))
    if w is None:
        raise InputError("weights: all H_i are 0, nothing to aggregate")
    out = [np.zeros(np.shape(a), dtype=np.float64) for a in models[0]]
    for wi, model in zip(w, models):
        if wi == 0:
            continue
        for k, a in enumerate(model):
            out[k] += wi * np.asarray(a, dtype=np.float64)
    return [o.astype(np.asarray(a).dtype) for o, a in zip(out, models[0])]


# ---------------------------------------------------------------------------------------------
# 3. The window estimate (paper Sec. V-A)
# ---------------------------------------------------------------------------------------------

@dataclass
class WindowMeasurements:
    """What the devices reported in one window of ``W`` slots (the server's observations).

    ``[W, n]`` / ``[W, E]`` arrays; ``nan`` marks "not reported" (the device was inactive or its
    reply was lost; for a link: its source did not report). ``link_up[w, e]``: the source
    reported the link usable in that slot (``False`` also when nothing was reported).
    """

    collected: np.ndarray
    proc_cost: np.ndarray
    error_weight: np.ndarray
    proc_cap: np.ndarray
    link_cost: np.ndarray
    link_cap: np.ndarray
    link_up: np.ndarray
    slots: list[int] = field(default_factory=list)

    @classmethod
    def empty(cls, window: int, n: int, E: int, slots: Sequence[int] = ()) -> WindowMeasurements:
        """Nothing reported yet."""
        def nan(*shape: int) -> np.ndarray:
            return np.full(shape, np.nan)
        return cls(collected=nan(window, n), proc_cost=nan(window, n), error_weight=nan(window, n),
                   proc_cap=nan(window, n), link_cost=nan(window, E), link_cap=nan(window, E),
                   link_up=np.zeros((window, E), dtype=bool), slots=list(slots))


@dataclass(frozen=True)
class WindowEstimate:
    """The stationary estimate for the next window: one value per device ``[n]`` / link ``[E]``."""

    collected: np.ndarray  # D̂_i, int
    active: np.ndarray  # bool
    proc_cost: np.ndarray  # ĉ_i
    error_weight: np.ndarray  # f̂_i
    proc_cap: np.ndarray  # Ĉ_i
    link_cost: np.ndarray  # ĉ_ij
    link_cap: np.ndarray  # Ĉ_ij
    link_up: np.ndarray  # bool


def _mean_reported(arr: np.ndarray, fallback: float) -> np.ndarray:
    """Column means over the non-``nan`` entries; ``fallback`` where a column has none."""
    seen = ~np.isnan(arr)
    count = seen.sum(axis=0)
    total = np.where(seen, arr, 0.0).sum(axis=0)
    return np.where(count > 0, total / np.maximum(count, 1), fallback)


def estimate_window(m: WindowMeasurements, src: np.ndarray, dst: np.ndarray) -> WindowEstimate:
    """The estimate of paper Sec. V-A from one window's reports (rules in the module docstring).

    ``D̂_i = rint(Σ_t D_i(t) / W)``; device ``i`` active iff it reported in more than ``W/2``
    slots; link ``e`` up iff it was reported usable in more than ``W/2`` slots and both ends
    are active; every other quantity the mean of what was reported.
    """
    W = m.collected.shape[0]
    reported = ~np.isnan(m.collected)
    active = 2 * reported.sum(axis=0) > W
    D = np.rint(np.where(reported, m.collected, 0.0).sum(axis=0) / W).astype(np.int64)
    src, dst = np.asarray(src, np.int64), np.asarray(dst, np.int64)
    up = (2 * np.asarray(m.link_up, bool).sum(axis=0) > W) & active[src] & active[dst]
    return WindowEstimate(collected=np.where(active, D, 0), active=active,
                          proc_cost=_mean_reported(m.proc_cost, 0.0),
                          error_weight=_mean_reported(m.error_weight, 0.0),
                          proc_cap=_mean_reported(m.proc_cap, np.inf),
                          link_cost=_mean_reported(m.link_cost, 0.0),
                          link_cap=_mean_reported(m.link_cap, np.inf), link_up=up)


def keep_unplanned(keep: np.ndarray, planned_collected: np.ndarray) -> np.ndarray:
    """``s_ii = 1`` wherever the plan was made for ``D̂_i = 0`` (rule 4 of the module docstring).

    ``keep`` and ``planned_collected`` are ``[t, n]``; a plan for ``D̂ = 0`` has no offloads
    (they are fractions of nothing), so the device keeps all it actually collects.
    """
    return np.where(np.asarray(planned_collected) == 0, 1.0, keep)


# ---------------------------------------------------------------------------------------------
# 5. Realised costs (objective (5))
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class CostBreakdown:
    """Realised costs of a plan (the three terms of objective (5)) and movement totals.

    ``discard`` is the error term: ``Σ f_i(t) (points discarded)`` under the linear model,
    ``Σ_{D_i(t)>0} f_i(t)/sqrt(G_i(t))`` under the square-root model (docs/model.md §2).
    ``unit = total / collected``; the rates are fractions of all collected points.
    """

    processing: float
    transfer: float
    discard: float
    collected: int
    processed: float
    offloaded: float
    discarded: float
    violations: int = 0

    @property
    def total(self) -> float:
        return self.processing + self.transfer + self.discard

    @property
    def unit(self) -> float:
        return self.total / self.collected if self.collected else 0.0

    @property
    def offload_rate(self) -> float:
        return self.offloaded / self.collected if self.collected else 0.0

    @property
    def discard_rate(self) -> float:
        return self.discarded / self.collected if self.collected else 0.0

    @property
    def process_rate(self) -> float:
        return self.processed / self.collected if self.collected else 0.0

    def as_dict(self) -> dict[str, float]:
        return {"processing": self.processing, "transfer": self.transfer, "discard": self.discard,
                "total": self.total, "unit": self.unit, "collected": self.collected,
                "processed": self.processed, "offloaded": self.offloaded, "discarded": self.discarded,
                "offload_rate": self.offload_rate, "discard_rate": self.discard_rate,
                "process_rate": self.process_rate, "violations": self.violations}


ERROR_MODELS: tuple[str, ...] = ("linear", "sqrt")


def error_term(error_weight: np.ndarray, collected: np.ndarray, discarded: np.ndarray,
               processed: np.ndarray, error: str) -> float:
    """The error term of (5) on ``[T, n]`` arrays.

    Linear (Thm 3): ``Σ f_i(t) · discarded_i(t)`` (points of ``i`` discarded at ``t``, i.e.
    ``r_i(t) D_i(t)``). Square root (Lemma 1): ``Σ_{D_i(t) > 0} f_i(t) / sqrt(G_i(t))``,
    infinite if such a device processes nothing.
    """
    f = np.asarray(error_weight)
    if error == "linear":
        return float((f * discarded).sum())
    if error == "sqrt":
        mask = (np.asarray(collected) > 0) & (f > 0)
        G = np.asarray(processed)[mask]
        if (G <= 0).any():
            return float("inf")
        return float((f[mask] / np.sqrt(G)).sum())
    raise InputError(f"error = {error!r}: must be one of {ERROR_MODELS}")


def transfer_cost(sent: np.ndarray, link_cost: np.ndarray) -> float:
    """``Σ_{t,e} sent_e(t) c_e(t)``: every point put on a link pays its cost, delivered or not."""
    return float((np.asarray(sent) * np.asarray(link_cost)).sum()) if np.size(sent) else 0.0


def realised_costs(*, collected: np.ndarray, processed: np.ndarray, discarded: np.ndarray,
                   proc_cost: np.ndarray, error_weight: np.ndarray, transfer: float, offloaded: float,
                   error: str = "linear", violations: int = 0) -> CostBreakdown:
    """Objective (5) on what was executed (docs/model.md §2), all ``[T, n]`` per device and slot.

    ``processed``: ``G_i(t)``; ``discarded``: points collected by ``i`` at ``t`` that were never
    processed (discarded by plan, dropped by an overload, lost on the way), charged ``f_i(t)``;
    ``transfer``: :func:`transfer_cost` of what was sent; ``offloaded``: points sent.
    """
    return CostBreakdown(
        processing=float((np.asarray(processed) * np.asarray(proc_cost)).sum()),
        transfer=float(transfer),
        discard=error_term(error_weight, collected, discarded, processed, error),
        collected=int(np.asarray(collected).sum()),
        processed=float(np.asarray(processed).sum()),
        offloaded=float(offloaded),
        discarded=float(np.asarray(discarded).sum()),
        violations=int(violations),
    )
