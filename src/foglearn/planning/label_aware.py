"""Label-aware planning: problem (5)-(9) plus a charge for every device's label skew over each
aggregation period (linear error).

Under non-IID data (:mod:`foglearn.learning.partition`) a device that trains on one or two labels
drags the aggregated model (eq. 4) towards them. The paper's plan is label-blind: it moves data only
to process it cheaply. This planner also values moving data towards balanced label mixes (in the
spirit of FlocOff, which picks offloads that shrink the divergence of the local label
distributions), and stays an exact, certified linear program.

Inputs. ``labels[T, n, K]``: ``D_i^c(t)``, the points of class ``c`` device ``i`` collects at
``t`` (``Σ_c D_i^c(t) = D_i(t)``; :func:`foglearn.learning.partition.class_arrivals` gives them
for a run's partition, from the same label stream the trainer draws). ``p_i^c(t) = D_i^c(t) /
D_i(t)`` is source ``(i, t)``'s mix. The target mix ``m`` (``target``; default ``"uniform"``,
``m^c = 1/K``; see "The target mix" below), the weight ``λ ≥ 0`` and the aggregation period ``τ``
(``period``; eq. (4) averages the devices' models every ``τ`` slots, periods ``k = ⌊t/τ⌋``).

What moves. A plan is the paper's fractions ``s_ii(t)``, ``s_ij(t)``, ``r_i(t)`` of ``D_i(t)``: a
device does not pick which labels it sends (the trainer sends the points of a slot in stream
order, where the labels are shuffled), so a flow of ``x`` points out of source ``(i, t)`` carries
``x p_i^c(t)`` points of class ``c`` (in expectation; exactly what the planner counts). Device
``j`` then processes at ``t``

    ``G_j^c(t) = p_j^c(t) s_jj(t) D_j(t) + Σ_i p_i^c(t-1) s_ij(t-1) D_i(t-1)``   (eq. (6) per class)

and trains, between two aggregations, on the points of period ``k``:
``G_j^c(k) = Σ_{t: ⌊t/τ⌋ = k} G_j^c(t)``, ``G_j(k) = Σ_c G_j^c(k)``.

The problem. Minimise objective (5) with the linear error term plus

    ``λ · Σ_{j,k} B_j(k)``,   ``B_j(k) = Σ_c (G_j^c(k) − m^c G_j(k))^+ = G_j(k) · TV(mix_j(k), m)``,

subject to (6)-(9) and, by default (``same_budget``), the **same training budget** as the
label-blind plan: ``Σ_{j,t} G_j(t) ≥ P*``, the points the linear problem's optimum processes (less
:data:`BUDGET_SLACK` of them and :data:`BUDGET_ABS` ``= 10⁻⁶`` of a point, for round-off; with
it only *where* points are processed changes, so the two plans are compared at an equal sample
budget; without it a per-slot penalty also bought balance by discarding a skewed device's surplus).
**Loads** (``loads``). With ``"label-blind"`` (the default, :data:`DEFAULT_LOADS`) every device
processes in every aggregation period exactly what the label-blind optimum (``plan(scenario)``)
has it process there, ``G_j(k) = G*_j(k)``: the plan chooses only *which* sources' points each
device trains on, and in which slot of the period, so the devices' local runs between two
aggregations keep the label-blind plan's lengths and only their label mixes change (devices the
label-blind plan leaves idle in a period stay idle). With ``"free"`` any device may process any
amount; only the total is bound by the budget. Why the default: free loads buy balance by spreading
the points of a period over more devices, which shortens the local runs eq. (4) averages, and at
``n = 100`` they trained less accurately than the label-blind plan (docs/noniid.md, "Loads"), while fixing
the loads kept the label-blind plan's accuracy there for the MLP (not for the CNN) and plans
``n = 1000`` in under a minute (only device-periods the label-blind plan uses receive points, and
the label-blind plan itself is the first master's solution). ``"label-blind"`` needs the same budget (it implies it).

**The target mix.** ``target="uniform"`` (the default, :data:`DEFAULT_TARGET`) is the balanced mix,
``m^c = 1/K``: every class counts alike, as in a test set with the classes in equal shares.
``"collected"`` is the horizon's pooled mix ``m^c = Σ_{i,t} D_i^c(t) / Σ_{i,t} D_i(t)`` (the default
before), the mix the network reaches by pooling everything; an array gives any other mix (a
deployment's known class prior). The two differ where the devices together collect a class rarely
(at ``n = 10``, α = 0.1 one class can be 0.1 % of the data): against the pooled mix such a class
only has to reach its small share on every device; against the uniform one every device is short
of it, so the plan processes every point of it that it can, and when the budget leaves points to
discard (14 % of them at ``n = 10``, 2 % at ``n = 100``) it discards from the classes the network
collects most. With fixed loads that choice is the plan's only lever on the mix of everything
trained. Trained, the two targets are level within the noise over twelve seeds (the uniform one
ahead for the MLP at ``n = 100``, behind for the MLP at ``n = 10``); the uniform one was made the
default for its mechanism and because, on the goal's seeds, it was at least as accurate as the
label-blind plan in all four cells, which the pooled one was not (docs/noniid.md, "The target mix").

``B_j(k)`` is the number of points device ``j`` trains on in period ``k`` above their class's
target share — how many would have to change label for its period's data to have the target
mix. Local SGD drifts with the label mix a device trains on between two aggregations, not with one
slot's batch: balancing over the period lets a device's own skew be offset by what it receives
later in the period and does not charge the noise of batches of a few points (``period = 1``
is the per-slot charge ``B_j(t)``; ``period ≥ T`` one mix per device over the horizon). ``λ`` is
the price of one such point in the units of ``c_i(t)`` and ``f_i(t)``: moving a point from a skewed
device to one where it fills a deficit saves up to ``λ``, so a plan pays at most ``λ`` per point in
processing or transfer to balance. ``λ = 0`` is the label-blind linear problem; ``λ`` may be at
most :data:`LAMBDA_MAX_RATIO` ``= 10⁴`` times the scenario's largest cost (balance outweighs every
cost long before; beyond it HiGHS's tolerances times ``λ`` exceed what the certificate allows), and
HiGHS's primal feasibility tolerance is ``10⁻⁷`` divided by ``λ``'s ratio to that cost (at least ``10⁻¹⁰``). Default
:data:`DEFAULT_LAMBDA` ``= 1``, the range of the synthetic ``c_i(t)`` (docs/model.md §4): balance
is worth at most one full spread of processing cost per point, so it can override the cost ranking
among devices but pays for no transfer dearer than that. It was fixed before any training run; a
later sweep of ``λ ∈ [0.01, 1]`` at ``n = 100`` (chosen on seeds other than the reported ones; docs/noniid.md,
"Choosing λ at n = 100") found no ``λ > 0`` as accurate as the label-blind plan there, so the default
was kept. Default :data:`DEFAULT_PERIOD` ``= 10``,
``foglearn run``'s ``τ`` (which passes its own).

As a linear program (points, not fractions; discard folded into the costs as in
:func:`foglearn.planning.reference.lp_matrices`): columns ``x_a`` for keep ``(i, t) → (i, t)``
(cost ``c_i(t) − f_i(t)``) and offload ``(i, t) → (j, t+1)`` on link ``e`` (cost ``c_ij(t) +
c_j(t+1) − f_i(t)``, ``x_a ≤ C_ij(t)``), ``g_{jk} ≥ 0`` and ``z_{jk}^c ≥ 0`` (cost ``λ``) per
device-period ``(j, k)`` and class:

    ``Σ_{a out of s} x_a ≤ D_s``  (supply, eq. 8),   ``Σ_{a into (j, t)} x_a ≤ C_j(t)``  (eq. 9),
    ``Σ_{a into (j, k)} x_a − g_{jk} = 0``  (``g = G_j(k)``; with ``loads="label-blind"`` the column
    ``g_{jk}`` is fixed at ``G*_j(k)``, and device-periods with ``G*_j(k) = 0`` get no flow columns),
    ``Σ_{a into (j, k)} p_{src(a)}^c x_a − m^c g_{jk} − z_{jk}^c ≤ 0``  (``z ≥ (G^c − m^c G)^+``),
    ``Σ_a x_a ≥ P*``  (same budget; ``P* = 0`` without it; implied by fixed loads, which leave it out).

The ``g`` rows keep the columns sparse: a column enters a class row only for the classes its
source carries (one or two at α = 0.1), not all ``K``.

Algorithm: exact column generation with HiGHS (``highspy``); every row, the ``g`` and ``z`` columns
and every keep column are in the master from the start.

1. **First columns.** The label-blind optimum's offload columns: with them the first master is
   feasible (the label-blind plan is a solution: it meets the budget and, with fixed loads, is where
   the loads come from). With fixed loads that is all, and the master's own duals pick the rest —
   unless the network has at most :data:`WHOLE_LP_COLUMNS_PER_SOURCE` usable offload columns per
   source with data (a sparse topology), where the whole LP is about as small as the masters would
   grow and goes to HiGHS at once (the loop then ends after one round, having priced and certified
   it). bench/label_aware.py: column generation 3.2 times faster than the whole LP at ``n = 100``
   fully connected, 5.8 times at ``n = 300``, about 7.5 times at ``n = 1000`` (50 s against 380 s);
   the whole LP 1.2 times faster than column generation at ``n = 1000`` with about ten links per
   device. With free loads also
   each source's
   :data:`COLUMNS_PER_SOURCE` cheapest columns at the prices ``(μ, ρ)`` of
   :data:`ASCENT_STEPS` steps of projected subgradient ascent on the Lagrangian dual (one compiled
   pass over ``[T, E]`` a step: every source sends its points to its cheapest column at the
   current prices; ``μ_{jk}^c`` moves along the class excess this produces, ``ρ`` along the budget's
   shortfall). The first master is solved by HiGHS's interior point method with crossover, later
   ones by the simplex method warm-started from the last basis.
2. HiGHS solves the master; its duals ``y_s ≤ 0`` (supply), ``w_k ≤ 0`` (capacity), ``ρ ≥ 0``
   (budget), ``μ_{jk}^c = −dual ∈ [0, λ]`` (class rows, clipped) and ``π_{jk} = Σ_c m^c μ_{jk}^c``
   (the ``g`` rows; this choice makes every ``g`` column's reduced cost 0 and every ``z``
   column's ``λ − μ ≥ 0``; with fixed loads ``π`` is the ``g`` rows' own dual) price **every**
   usable offload column in one compiled pass over
   ``[T, E]``: ``rc_a = cost_a − y_s − w_k − ρ + Σ_c μ_{jk}^c (p_s^c − m^c)``.
3. Each source adds its :data:`COLUMNS_PER_SOURCE` most negative columns; offload columns left
   out of the solution (at zero, ``rc > 0``) for :data:`IDLE_ROUNDS` rounds are deleted from the
   master (they re-enter if they price out again), so the master stays near the size of its
   solution; stop when no column is below ``−ε``.
4. **Certificate.** For any such multipliers the Lagrangian bound
   ``Σ_s f_s D_s + Σ_s y_s D_s + Σ_k w_k C_k + ρ P* + Σ_{every column} min(0, rc_a) u_a``
   (``u_a`` its upper bound), plus ``Σ_{jk} (π_{jk} − Σ_c m^c μ_{jk}^c) G*_j(k)`` with fixed loads (each
   fixed ``g`` column at its value), is a lower bound on the optimum; ``gap`` = primal (recomputed from the
   flows, ``B`` exactly) − bound. A relative gap above :data:`GAP_TOL` after the last round raises
   :class:`~foglearn.errors.SolverError`: an uncertified plan is never returned. :data:`GAP_TOL` is
   HiGHS's own dual-feasibility tolerance (``1e-7``), looser than the min-cost flow's ``1e-9``
   because the duals come from a floating-point simplex.

Ctrl-C: HiGHS runs in its own thread (``highspy``'s ``startSolve``) with its interrupt callback
on, and the ascent is a ``nogil`` kernel polling a stop flag (:mod:`foglearn.planning.interrupt`);
Ctrl-C stops either within a second and raises
:class:`~foglearn.planning.interrupt.PlanInterrupted`.

Size: the master has one row per source with data, the capacity rows, ``K + 1`` rows per
device-period and the budget row; pricing and each ascent step are ``O(T·E)`` without ``[T, E]``
temporaries. docs/noniid.md has the measured times.
"""

from __future__ import annotations

import os
import reprlib
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from numba import njit

from foglearn.errors import InputError, SolverError
from foglearn.network.scenario import Scenario
from foglearn.planning.interrupt import PlanInterrupted, call, new_stop_flag
from foglearn.planning.plan import Plan, PlanError, SolverStats

__all__ = ["DEFAULT_LAMBDA", "DEFAULT_LOADS", "DEFAULT_PERIOD", "DEFAULT_TARGET", "GAP_TOL", "LOADS", "SOLVER_OF_LOADS",
           "TARGETS", "check_labels", "imbalance", "plan_label_aware", "solve_full_lp", "target_mix"]

#: ``λ``: the price of one point above its class's target share (see the module docstring).
DEFAULT_LAMBDA = 1.0
#: ``τ``: the aggregation period the balance is measured over (``foglearn run --period``'s default).
DEFAULT_PERIOD = 10
#: What each device processes per aggregation period: ``"label-blind"`` — exactly the label-blind
#: optimum's load ``G*_j(k)`` (only which points, and in which slot of the period, change); ``"free"`` —
#: any load, only the total is bound (the same budget). See the module docstring.
LOADS = ("label-blind", "free")
DEFAULT_LOADS = "label-blind"
#: The registered solver (:data:`foglearn.planning.SOLVERS`) that plans with each ``loads``.
SOLVER_OF_LOADS = {"label-blind": "label-aware", "free": "label-aware-free"}
#: The target label mix ``m`` by name: ``"uniform"`` — every class ``1/K``, the balanced mix (the
#: default, :data:`DEFAULT_TARGET`); ``"collected"`` — the horizon's pooled mix (the default before).
#: See the module docstring, "The target mix".
TARGETS = ("uniform", "collected")
DEFAULT_TARGET = "uniform"
#: How far from 1 the sum of explicit target shares may be (float32 class priors sum to 1 only to ~1e-7).
SHARES_TOL = 1e-6
#: Shortened ``repr`` of a bad value in error messages (a target array can be long).
_SHORT = reprlib.Repr()
_SHORT.maxother, _SHORT.maxlist = 80, 12
#: Relative duality gap the certificate must reach (HiGHS's dual-feasibility tolerance).
GAP_TOL = 1e-7
#: ``λ`` may be at most this many times the scenario's largest cost (``c_i(t)``, ``f_i(t)``, ``c_ij(t)``;
#: 1 if all are 0). Far below it the balance term outweighs every cost; far above it (10⁵–10¹⁰ when fuzzed)
#: HiGHS's tolerances, multiplied by ``λ``, keep the plan from being certified, column generation can cycle
#: and HiGHS can fail or not return.
LAMBDA_MAX_RATIO = 1e4
#: A column enters the master when its reduced cost is below ``-RC_TOL``.
RC_TOL = 1e-9
#: Relative slack on the same-budget row, so float round-off cannot make it infeasible.
BUDGET_SLACK = 1e-9
#: Absolute slack on it, in points: with capacities of ~1e-8 points the label-blind optimum's few millionths of a
#: point sit within HiGHS's absolute feasibility tolerance, which otherwise reported the row infeasible (an
#: optimum below this many points leaves no budget at all).
BUDGET_ABS = 1e-6
#: Column-generation rounds before giving up.
MAX_ROUNDS = 500
#: Columns each source may add per round (its most negative ones).
COLUMNS_PER_SOURCE = 16
#: With fixed loads, a network with at most this many usable offload columns per source gets the whole LP
#: at once instead of column generation (module docstring, step 1).
WHOLE_LP_COLUMNS_PER_SOURCE = 16
#: Subgradient steps on the Lagrangian dual before the first master, and the first step's length
#: (a share of ``λ``); their prices pick the first master's columns (module docstring, step 1).
ASCENT_STEPS = 300
ASCENT_STEP = 0.5
#: Rounds an offload column may stay out of the master's solution (nonbasic, reduced cost above
#: ``RC_TOL``) before it is deleted from the master (it re-enters if it prices out again).
IDLE_ROUNDS = 2
#: Seconds between checks for Ctrl-C while HiGHS runs.
_POLL_S = 0.05


def check_labels(scenario: Scenario, labels: Any) -> np.ndarray:
    """``labels`` as float ``[T, n, K]`` counts (integers or real numbers ≥ 0, e.g. expected counts
    ``D_i(t) q_i^c``, summing to ``D_i(t)``); an :class:`InputError` names the broken rule."""
    if not isinstance(scenario, Scenario):
        raise PlanError(f"scenario: must be a foglearn Scenario, got {type(scenario).__name__}")
    T, n = scenario.horizon, scenario.n_devices
    try:
        arr = np.asarray(labels)
    except (ValueError, TypeError) as exc:  # ragged nested lists
        raise PlanError(f"labels: must be a [T, n, K] = [{T}, {n}, K] array of counts ({exc})") from None
    if arr.ndim != 3 or arr.shape[:2] != (T, n) or arr.shape[2] < 1:
        raise PlanError(f"labels: must have shape [T, n, K] = [{T}, {n}, K ≥ 1], got {list(arr.shape)}")
    if arr.dtype.kind not in "iuf":  # not bool, complex, timedelta, strings or objects
        raise PlanError(f"labels: the per-class counts D_i^c(t) must be real numbers, got dtype {arr.dtype}")
    bad = ~np.isfinite(arr) | (arr < 0)
    if bad.any():
        t, i, c = (int(k) for k in np.argwhere(bad)[0])
        raise PlanError(f"labels[{t}, {i}, {c}] = {arr[t, i, c].item()!r}: the per-class counts D_i^c(t) must be "
                        "finite numbers ≥ 0")
    arr = arr.astype(np.float64)
    total = arr.sum(2)
    bad = np.abs(total - scenario.collected) > 1e-6 * np.maximum(1.0, scenario.collected)
    if bad.any():
        t, i = (int(k) for k in np.argwhere(bad)[0])
        raise PlanError(f"labels[{t}, {i}, :] sums to {total[t, i]:g}, but collected[{t}, {i}] = "
                        f"{scenario.collected[t, i]}: Σ_c D_i^c(t) must equal D_i(t)")
    return arr


def check_period(period: Any) -> int:
    """``period`` (``τ``) as an int ≥ 1; an :class:`InputError` otherwise."""
    if isinstance(period, bool) or not isinstance(period, int | np.integer) or period < 1:
        raise PlanError(f"period = {period!r}: the aggregation period τ must be an integer ≥ 1")
    return int(period)


def target_mix(labels: np.ndarray, target: Any) -> np.ndarray:
    """The target mix ``m`` ``[K]`` named by ``target``: ``"uniform"`` (``1/K`` each), ``"collected"``
    (the horizon's pooled mix ``Σ_{i,t} D_i^c(t) / Σ_{i,t} D_i(t)``; uniform when nothing is collected)
    or ``K`` shares ≥ 0 summing to 1
    within :data:`SHARES_TOL` (a list, tuple or numeric array; rescaled to sum to exactly 1); anything
    else (``None`` included) is an :class:`InputError` naming the value and the rule."""
    try:
        labels = np.asarray(labels, dtype=np.float64)
    except (ValueError, TypeError) as exc:
        raise PlanError(f"labels: must be a [T, n, K] array of counts ({exc})") from None
    if labels.ndim != 3 or labels.shape[2] < 1:
        raise PlanError(f"labels: must be a [T, n, K] array of counts (K ≥ 1), got shape {list(labels.shape)}")
    K = labels.shape[2]
    rule = f"must be one of {TARGETS} or {K} shares ≥ 0 summing to 1 (the target label mix m)"
    if isinstance(target, str):
        if target == "uniform":
            return np.full(K, 1.0 / K)
        if target == "collected":
            tot = labels.sum((0, 1))
            if not tot.sum() > 0:  # nothing collected: any mix is the pooled one (no point can be off it)
                return np.full(K, 1.0 / K)
            return tot / tot.sum()
        raise PlanError(f"target = {target!r}: {rule}")
    arr = np.asarray(target) if isinstance(target, list | tuple | np.ndarray) else np.zeros(0)
    if arr.shape != (K,) or not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise PlanError(f"target = {_SHORT.repr(target)}: {rule}")
    m = arr.astype(np.float64)
    if not np.isfinite(m).all() or (m < 0).any() or abs(m.sum() - 1.0) > SHARES_TOL:
        raise PlanError(f"target = {_SHORT.repr(target)}: {rule}")
    return m / m.sum()  # exactly 1 (a float32 prior sums to 1 only to ~1e-7)


def _shares(labels: np.ndarray) -> np.ndarray:
    """``p_s^c`` per source ``s = t·n + i`` ``[T·n, K]`` (0 rows where ``D = 0``)."""
    T, n, K = labels.shape
    D = labels.sum(2, keepdims=True)
    return np.divide(labels, D, out=np.zeros_like(labels), where=D > 0).reshape(T * n, K)


def _sink_group(T: int, n: int, period: int) -> np.ndarray:
    """Device-period ``j·P + ⌊t/τ⌋`` of every sink ``k = t·n + j`` ``[T·n]``."""
    P = -(-T // period)
    return (np.arange(n)[None, :] * P + (np.arange(T) // period)[:, None]).ravel()


def imbalance(scenario: Scenario, plan: Plan, labels: Any, target: Any = "collected",
              period: int = DEFAULT_PERIOD) -> dict[str, float]:
    """``Σ_{j,k} B_j(k)`` of ``plan`` (module docstring) and its share of the points processed.

    ``points``: points processed in an aggregation period above their class's share of ``target``
    (:func:`target_mix`) in that device's period; ``share``: that over ``Σ G_j(t)`` — the
    processed-weighted mean total-variation distance between the label mix a device trains on in a
    period and the target mix (0: every device trains on the target mix in every period; near 1: on
    one label). ``period = 1`` measures every slot's batch on its own. The default target here is
    ``"collected"``, the pooled mix — the local skew FL measures, which movement alone can remove —
    while the planner's is ``"uniform"``: on a network that collects some class rarely, no plan
    reaches an imbalance of 0 against the uniform mix.
    """
    lab = check_labels(scenario, labels)
    m = target_mix(lab, target)
    tau = check_period(period)
    T, n, K = lab.shape
    if (not isinstance(plan, Plan) or np.shape(plan.keep) != (T, n)
            or np.shape(plan.offload) != (T, scenario.n_edges)):
        raise PlanError(f"plan: must be a Plan of this scenario (keep [T, n] = [{T}, {n}], offload [T, E] = "
                        f"[{T}, {scenario.n_edges}])")
    Gc = plan.keep[:, :, None] * lab
    if scenario.n_edges and T > 1:
        tt, ee = np.nonzero(plan.offload[:-1] > 0)
        amount = plan.offload[tt, ee, None] * lab[tt, scenario.src[ee]]
        np.add.at(Gc, (tt + 1, scenario.dst[ee]), amount)
    P = -(-T // tau)
    Gp = np.zeros((P, n, K))
    np.add.at(Gp, np.arange(T) // tau, Gc)
    G = Gp.sum(2, keepdims=True)
    points = float(np.maximum(Gp - m * G, 0.0).sum())
    total = float(G.sum())
    return {"points": points, "share": points / total if total > 0 else 0.0}


def _quiet(make: Callable[[], Any]) -> Any:
    """``make()`` with file descriptor 1 sent to /dev/null: HiGHS's C++ constructor prints a banner
    to the process's stdout (once per process) before any option can turn it off."""
    sys.stdout.flush()
    saved = os.dup(1)
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 1)
        return make()
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        os.close(null)


def _run(h: Any) -> None:
    """``h.run()`` in HiGHS's own thread, so that Ctrl-C stops it within a second
    (:class:`~foglearn.planning.interrupt.PlanInterrupted`, as the compiled solvers do)."""
    thread = h.startSolve()
    try:
        while not h.wait(_POLL_S)[0]:
            pass
    except KeyboardInterrupt:
        h.cancelSolve()
        thread.join(1.0)
        raise PlanInterrupted("planning interrupted (Ctrl-C); no plan was returned") from None


@njit(cache=True, nogil=True)
def _entries(s, k, jk, s_row, k_row, budget_row, g_row0, c_row0, K, p_ptr, p_idx, p_val):  # pragma: no cover
    """CSC entries ``(starts, rows, values)`` of flow columns ``s → k`` (``jk``: the sink's
    device-period): supply, budget (unless ``budget_row < 0``), capacity (if any), the
    device-period's ``G`` row and one class row per class the source carries (value ``p_s^c``)."""
    m = s.size
    nb = 1 if budget_row >= 0 else 0
    starts = np.zeros(m + 1, np.int64)
    for a in range(m):
        starts[a + 1] = starts[a] + 2 + nb + (1 if k_row[k[a]] >= 0 else 0) + p_ptr[s[a] + 1] - p_ptr[s[a]]
    idx = np.empty(starts[m], np.int32)
    val = np.empty(starts[m])
    for a in range(m):
        q = starts[a]
        idx[q] = s_row[s[a]]
        val[q] = 1.0
        q += 1
        if nb:
            idx[q] = budget_row
            val[q] = 1.0
            q += 1
        idx[q] = g_row0 + jk[a]
        val[q] = 1.0
        q += 1
        if k_row[k[a]] >= 0:
            idx[q] = k_row[k[a]]
            val[q] = 1.0
            q += 1
        for h in range(p_ptr[s[a]], p_ptr[s[a] + 1]):
            idx[q] = c_row0 + jk[a] * K + p_idx[h]
            val[q] = p_val[h]
            q += 1
    return starts, idx, val


@njit(cache=True, nogil=True)
def _plus_mix_price(rc, mu, g, s, p_ptr, p_idx, p_val):  # pragma: no cover - numba
    """``rc + Σ_c μ_g^c p_s^c``: adds the class rows' price of one point from source ``s`` processed in
    group ``g`` (a device and period); with ``π_g = Σ_c μ_g^c m^c`` in ``rc`` this is the
    ``Σ_c μ (p_s^c − m^c)`` term of every reduced cost (summed in the same order wherever it is used)."""
    total = rc
    for h in range(p_ptr[s], p_ptr[s + 1]):
        total += mu[g, p_idx[h]] * p_val[h]
    return total


@njit(cache=True, nogil=True, inline="always")
def _offload_column(t, e, usable, link_cap, D, src, dst, group, n):  # pragma: no cover - numba
    """Offload column ``(t, e)``: ``(source s, sink k, its device-period g)``, or ``s = -1`` where
    the link is down or has no capacity, or the source has no data."""
    s = t * n + src[e]
    if not usable[t, e] or link_cap[t, e] <= 0.0 or D[s] <= 0.0:
        return -1, -1, -1
    k = (t + 1) * n + dst[e]
    return s, k, group[k]


@njit(cache=True, nogil=True)
def _price(src, dst, usable, link_cost, link_cap, c, f, D, y, w, mu, pi, rho, group, p_ptr, p_idx, p_val,
           have, tol, q):  # pragma: no cover - numba
    """Price every usable offload column (module docstring, step 2).

    Returns ``(rc[T·n, q], edge[T·n, q], lagrange)``: each source's ``q`` most negative reduced
    costs below ``-tol`` among the columns not in the master (``have[t, e]``) and their edges
    (-1: none), and ``Σ min(0, rc) u`` over every usable column.
    """
    T, E = usable.shape
    n = D.size // T
    best = np.zeros((T * n, q))
    edge = np.full((T * n, q), -1, dtype=np.int64)
    lag = 0.0
    for t in range(T - 1):
        for e in range(E):
            s, k, g = _offload_column(t, e, usable, link_cap, D, src, dst, group, n)
            if s < 0:
                continue
            rc = _plus_mix_price(link_cost[t, e] + c[k] - f[s] - y[s] - w[k] - rho - pi[g], mu, g, s,
                                 p_ptr, p_idx, p_val)
            if rc < 0.0:
                lag += rc * min(link_cap[t, e], D[s])
                if rc < -tol and rc < best[s, q - 1] and not have[t, e]:
                    r = q - 1
                    while r > 0 and best[s, r - 1] > rc:
                        best[s, r] = best[s, r - 1]
                        edge[s, r] = edge[s, r - 1]
                        r -= 1
                    best[s, r] = rc
                    edge[s, r] = e
    return best, edge, lag


@njit(cache=True, nogil=True)
def _ascent(src, dst, usable, link_cost, link_cap, c, f, D, keep_ok, group, p_ptr, p_idx, p_val, m, lam, budget,
            iters, mu, rho, step0, stop):  # pragma: no cover - numba
    """Projected subgradient ascent on the Lagrangian dual (module docstring, step 1): ``iters``
    steps on ``(μ, ρ)`` from the given ones, each routing every source's points to its cheapest
    column at the current prices and moving ``μ_j^c(k)`` along the class excess it produces,
    ``ρ`` along the budget's shortfall. Returns ``(μ, ρ)``; polls ``stop`` every step."""
    T, E = usable.shape
    N = D.size
    n = N // T
    G, K = mu.shape
    best = np.zeros(N)
    bestg = np.full(N, -1, np.int64)
    excess = np.zeros((G, K))
    for it in range(iters):
        if stop[0] != 0:
            break
        pi = mu @ m
        for s in range(N):
            best[s] = 0.0
            bestg[s] = -1
            if keep_ok[s]:
                g = group[s]
                rc = _plus_mix_price(c[s] - f[s] - rho - pi[g], mu, g, s, p_ptr, p_idx, p_val)
                if rc < 0.0:
                    best[s] = rc
                    bestg[s] = g
        for t in range(T - 1):
            for e in range(E):
                s, k, g = _offload_column(t, e, usable, link_cap, D, src, dst, group, n)
                if s < 0:
                    continue
                rc = _plus_mix_price(link_cost[t, e] + c[k] - f[s] - rho - pi[g], mu, g, s, p_ptr, p_idx, p_val)
                if rc < best[s]:
                    best[s] = rc
                    bestg[s] = g
        excess[:] = 0.0
        done = 0.0
        for s in range(N):
            g = bestg[s]
            if g < 0:
                continue
            done += D[s]
            for q in range(K):
                excess[g, q] -= D[s] * m[q]
            for h in range(p_ptr[s], p_ptr[s + 1]):
                excess[g, p_idx[h]] += D[s] * p_val[h]
        step = step0 / np.sqrt(it + 1.0)
        scale = max(np.abs(excess).max(), 1.0)
        for g in range(G):
            for q in range(K):
                v = mu[g, q] + step * lam * excess[g, q] / scale
                mu[g, q] = min(max(v, 0.0), lam)
        rho = max(rho + step * (budget - done) / max(budget, 1.0), 0.0)
    return mu, rho


class _Model:
    """The label-aware LP (module docstring) live in HiGHS: every row, the ``G`` and ``z`` columns,
    the keep columns and whichever offload columns are added (all of them in :func:`solve_full_lp`)."""

    def __init__(self, scenario: Scenario, p: np.ndarray, m: np.ndarray, lam: float, budget: float,
                 period: int, solver: str = "simplex", loads: np.ndarray | None = None, feas_tol: float = 1e-7):
        import highspy

        T, n = scenario.horizon, scenario.n_devices
        K = p.shape[1]
        self.T, self.n, self.K, self.lam, self.m = T, n, K, lam, m
        P = -(-T // period)
        self.P = P
        self.group = _sink_group(T, n, period)
        self.D = scenario.collected.astype(np.float64).ravel()
        self.c = scenario.proc_cost.astype(np.float64).ravel()
        self.f = scenario.error_weight.astype(np.float64).ravel()
        self.cap = scenario.effective_proc_cap().astype(np.float64).ravel()
        self.src, self.dst = scenario.src, scenario.dst
        self.link_cost = np.asarray(scenario.link_cost, dtype=np.float64)
        self.link_cap = np.asarray(scenario.link_cap, dtype=np.float64)
        self.p = p
        nz = p > 0
        self.p_ptr = np.concatenate([[0], np.cumsum(nz.sum(1))]).astype(np.int64)
        self.p_idx = np.nonzero(nz)[1].astype(np.int64)
        self.p_val = p[nz]
        N = T * n
        #: ``G*_j(k)`` per device-period ``j·P + k`` where the loads are fixed (``loads="label-blind"``)
        self.loads = loads
        self.open = np.ones(N, dtype=np.bool_) if loads is None else loads[self.group] > 0  # sinks that may process
        self.sources = np.nonzero((self.D > 0) & scenario.active.ravel() & (self.cap > 0) & self.open)[0]
        self.all_sources = np.nonzero(self.D > 0)[0]
        self.capped = np.nonzero(np.isfinite(self.cap))[0]
        # rows: supply | capacity | budget | G per device-period | class per device-period and class
        self.s_row = np.full(N, -1, np.int64)
        self.s_row[self.all_sources] = np.arange(self.all_sources.size)
        self.k_row = np.full(N, -1, np.int64)
        self.k_row[self.capped] = self.all_sources.size + np.arange(self.capped.size)
        self.budget_row = self.all_sources.size + self.capped.size
        self.g_row0 = self.budget_row + 1
        self.c_row0 = self.g_row0 + n * P
        n_rows = self.c_row0 + n * P * K
        h = _quiet(highspy.Highs)
        h.setOptionValue("output_flag", False)
        h.setOptionValue("solver", solver)
        h.setOptionValue("primal_feasibility_tolerance", feas_tol)  # _setup: tighter as λ grows
        h.HandleUserInterrupt = True
        # with fixed loads the budget row is implied (Σ G = Σ G* ≥ P*): left empty and free, it costs HiGHS
        # nothing (a dense row in every column took about a quarter of its time at n = 300)
        lower = np.concatenate([np.full(self.budget_row, -np.inf), [budget if loads is None else -np.inf],
                                np.zeros(n * P), np.full(n * P * K, -np.inf)])
        upper = np.concatenate([self.D[self.all_sources], self.cap[self.capped], [np.inf], np.zeros(n * P),
                                np.zeros(n * P * K)])
        h.addRows(n_rows, lower, upper, 0, np.zeros(n_rows, np.int32), np.zeros(0, np.int32), np.zeros(0))
        self.h = h
        # G_j(k) (−1 in its G row, −m^c in its class rows) and z_j^c(k) (cost λ, −1 in its class row)
        g = np.arange(n * P)
        rows = np.concatenate([(self.g_row0 + g)[:, None], self.c_row0 + g[:, None] * K + np.arange(K)], 1)
        vals = np.concatenate([np.full((n * P, 1), -1.0), np.broadcast_to(-m, (n * P, K))], 1)
        g_low = np.zeros(n * P) if loads is None else loads
        g_up = np.full(n * P, np.inf) if loads is None else loads
        h.addCols(n * P, np.zeros(n * P), g_low, g_up, rows.size,
                  np.arange(0, rows.size, K + 1, dtype=np.int32), rows.ravel().astype(np.int32), vals.ravel())
        nz_ = n * P * K
        h.addCols(nz_, np.full(nz_, lam), np.zeros(nz_), np.full(nz_, np.inf), nz_, np.arange(nz_, dtype=np.int32),
                  (self.c_row0 + np.arange(nz_)).astype(np.int32), np.full(nz_, -1.0))
        self.first_flow = n * P * (K + 1)
        self.flow_src = np.zeros(0, np.int64)
        self.flow_sink = np.zeros(0, np.int64)
        self.flow_cost = np.zeros(0)
        self.off_t = np.zeros(0, np.int64)
        self.off_e = np.zeros(0, np.int64)
        self.have = np.zeros((T, scenario.n_edges), dtype=np.bool_)
        self.idle = np.zeros(0, np.int64)
        ks = self.sources
        self._add_flows(ks, ks, self.c[ks] - self.f[ks], self.D[ks])
        self.n_keep = ks.size

    def _add_flows(self, s: np.ndarray, k: np.ndarray, cost: np.ndarray, ub: np.ndarray) -> None:
        starts, idx, val = _entries(s, k, self.group[k], self.s_row, self.k_row,
                                    self.budget_row if self.loads is None else -1, self.g_row0,
                                    self.c_row0, self.K, self.p_ptr, self.p_idx, self.p_val)
        self.h.addCols(s.size, cost, np.zeros(s.size), ub, idx.size, starts[:-1].astype(np.int32), idx, val)
        self.flow_src = np.concatenate([self.flow_src, s])
        self.flow_sink = np.concatenate([self.flow_sink, k])
        self.flow_cost = np.concatenate([self.flow_cost, cost])
        self.idle = np.concatenate([self.idle, np.zeros(s.size, np.int64)])

    def add(self, t: np.ndarray, e: np.ndarray) -> None:
        """Add the offload columns of links ``e`` in slots ``t``."""
        s = t * self.n + self.src[e]
        k = (t + 1) * self.n + self.dst[e]
        self.off_t = np.concatenate([self.off_t, t])
        self.off_e = np.concatenate([self.off_e, e])
        self.have[t, e] = True
        self._add_flows(s, k, self.link_cost[t, e] + self.c[k] - self.f[s],
                        np.minimum(self.link_cap[t, e], self.D[s]))

    def prune(self, rc: np.ndarray) -> int:
        """Delete the offload columns idle (at zero, reduced cost above ``RC_TOL``) for
        :data:`IDLE_ROUNDS` rounds; returns how many."""
        idle = (rc > RC_TOL) & (self.x <= 0.0)
        idle[:self.n_keep] = False
        self.idle = np.where(idle, self.idle + 1, 0)
        drop = self.idle >= IDLE_ROUNDS
        if not drop.any():
            return 0
        cols = np.nonzero(drop)[0]
        self.h.deleteCols(cols.size, (self.first_flow + cols).astype(np.int32))
        off = cols[cols >= self.n_keep] - self.n_keep
        self.have[self.off_t[off], self.off_e[off]] = False
        keep_off = np.ones(self.off_t.size, bool)
        keep_off[off] = False
        self.off_t, self.off_e = self.off_t[keep_off], self.off_e[keep_off]
        stay = ~drop
        self.flow_src, self.flow_sink = self.flow_src[stay], self.flow_sink[stay]
        self.flow_cost, self.idle = self.flow_cost[stay], self.idle[stay]
        return int(cols.size)

    def solve(self, solver: str = "simplex") -> dict[str, Any]:
        import highspy

        self.h.setOptionValue("solver", solver)
        _run(self.h)
        status = self.h.getModelStatus()
        if status != highspy.HighsModelStatus.kOptimal:
            raise SolverError(f"solver = 'label-aware': HiGHS did not solve the LP: "
                              f"{self.h.modelStatusToString(status)}")
        sol = self.h.getSolution()
        x = np.asarray(sol.col_value)[self.first_flow:]
        self.x = x
        self.rc = np.asarray(sol.col_dual)[self.first_flow:]
        dual = np.asarray(sol.row_dual)
        N = self.T * self.n
        y = np.zeros(N)
        y[self.all_sources] = np.minimum(dual[:self.all_sources.size], 0.0)
        w = np.zeros(N)
        w[self.capped] = np.minimum(dual[self.all_sources.size:self.budget_row], 0.0)
        mu = np.clip(-dual[self.c_row0:].reshape(self.n * self.P, self.K), 0.0, self.lam)
        # π: with free loads Σ_c m^c μ^c (every G column's reduced cost 0); with fixed loads the G rows' duals
        pi = mu @ self.m if self.loads is None else dual[self.g_row0:self.c_row0]
        return {"x": np.maximum(x, 0.0), "y": y, "w": w, "mu": mu, "pi": pi,
                "rho": max(float(dual[self.budget_row]), 0.0)}


def _primal(mdl: _Model, x: np.ndarray) -> tuple[float, float]:
    """Objective of the flows ``x`` and ``Σ B``, recomputed exactly (module docstring)."""
    Gc = np.zeros((mdl.n * mdl.P, mdl.K))
    np.add.at(Gc, mdl.group[mdl.flow_sink], x[:, None] * mdl.p[mdl.flow_src])
    B = float(np.maximum(Gc - Gc.sum(1, keepdims=True) * mdl.m, 0.0).sum())
    return float(mdl.flow_cost @ x + mdl.f @ mdl.D) + mdl.lam * B, B


def _bound(mdl: _Model, sol: dict[str, Any], budget: float, lag: float) -> float:
    """The Lagrangian bound of the module docstring (keep columns here, offloads in ``lag``)."""
    ks = mdl.sources
    g = mdl.group[ks]
    pk = mdl.p[ks]
    keep_rc = (mdl.c[ks] - mdl.f[ks] - sol["y"][ks] - sol["w"][ks] - sol["rho"] - sol["pi"][g]
               + (sol["mu"][g] * pk).sum(1))
    cap = mdl.capped
    if mdl.loads is not None:  # each fixed G column at its load: (its reduced cost π − Σ_c m^c μ^c) · G*
        lag += float((sol["pi"] - sol["mu"] @ mdl.m) @ mdl.loads)
    return (float(mdl.f @ mdl.D + sol["y"] @ mdl.D + sol["w"][cap] @ mdl.cap[cap]) + sol["rho"] * budget
            + float(np.minimum(keep_rc, 0.0) @ mdl.D[ks]) + float(lag))


def _setup(scenario: Scenario, labels: Any, lam: Any, target: Any, same_budget: bool, period: Any, loads: Any):
    """Checked inputs, the budget ``P*``, the label-blind optimum (when needed) and, with
    ``loads="label-blind"``, its load ``G*_j(k)`` per device-period ``j·P + k``."""
    if isinstance(lam, bool | np.bool_) or not isinstance(lam, int | float | np.integer | np.floating):
        raise PlanError(f"lam = {lam!r}: λ must be a finite number ≥ 0")
    raw = lam
    try:
        lam = float(lam) + 0.0  # -0.0 → 0.0
    except OverflowError:
        lam = float("inf")
    if not np.isfinite(lam) or lam < 0:
        raise PlanError(f"lam = {_SHORT.repr(raw)}: λ must be a finite number ≥ 0")
    if not isinstance(same_budget, bool | np.bool_):
        raise PlanError(f"same_budget = {same_budget!r}: must be True or False")
    lab = check_labels(scenario, labels)  # the scenario first: its costs bound λ
    largest = _largest_cost(scenario)
    scale = largest or 1.0
    if lam > LAMBDA_MAX_RATIO * scale:
        shown = "all costs are 0, so 1" if largest == 0 else f"{largest:g}"
        raise PlanError(f"lam = {_SHORT.repr(raw)}: λ must be at most {LAMBDA_MAX_RATIO:g} × the scenario's "
                        f"largest cost ({shown}): balance outweighs every cost long before, and beyond it "
                        "the plan cannot be certified")
    if not isinstance(loads, str) or loads not in LOADS:
        raise PlanError(f"loads = {loads!r}: must be one of {LOADS}")
    if loads == "label-blind" and not same_budget:
        raise PlanError("same_budget = False: loads = 'label-blind' fixes every device's load to the label-blind "
                        "optimum's, which sets the budget; pass loads = 'free' to plan without a budget")
    tau = check_period(period)
    m = target_mix(lab, target)
    budget, blind, fixed = 0.0, None, None
    if same_budget:
        from foglearn.planning.solve import plan

        blind = plan(scenario)
        # the label-blind optimum, less round-off: relative, and absolute for capacities near HiGHS's tolerances
        budget = max(0.0, float(blind.processed.sum()) * (1.0 - BUDGET_SLACK) - BUDGET_ABS)
        if loads == "label-blind":  # G*_j(k): the label-blind load of device j in period k, at j·P + k
            T, n = scenario.horizon, scenario.n_devices
            per = np.zeros((-(-T // tau), n))
            np.add.at(per, np.arange(T) // tau, blind.processed)
            fixed = per.T.ravel()
    # the certificate recomputes B from the flows, so a class row held only to HiGHS's feasibility tolerance
    # costs λ times it: tighten that tolerance as λ grows against the costs (≥ 1e-10, HiGHS's default 1e-7)
    feas_tol = max(1e-10, 1e-7 / max(1.0, lam / scale))
    return tau, lab, m, budget, blind, fixed, lam, feas_tol


def _largest_cost(scenario: Scenario) -> float:
    """``max c_i(t), f_i(t), c_ij(t)`` (costs are ≥ 0, :class:`Scenario`; 0 if there are none): what ``λ`` is
    measured against."""
    return max((float(a.max()) for a in (scenario.proc_cost, scenario.error_weight, scenario.link_cost)
                if np.size(a)), default=0.0)


def _usable(scenario: Scenario, mdl: _Model) -> np.ndarray:
    """``[T, E]``: links up with capacity whose receiver may process in the next slot."""
    T = scenario.horizon
    if not scenario.n_edges:
        return np.zeros((T, 0), dtype=bool)
    usable = scenario.usable_links().copy()
    usable[:-1] &= mdl.open.reshape(T, scenario.n_devices)[1:, scenario.dst]
    return usable


def _columns(scenario: Scenario, usable: np.ndarray) -> np.ndarray:
    """``[T, E]``: every offload column of the LP — a usable link with capacity out of a source with data,
    in any slot but the last."""
    ok = usable & (scenario.collected[:, scenario.src] > 0) & (np.asarray(scenario.link_cap) > 0)
    ok[-1] = False
    return ok


def solve_full_lp(scenario: Scenario, labels: Any, lam: float = DEFAULT_LAMBDA, target: Any = DEFAULT_TARGET,
                  same_budget: bool = True, period: int = DEFAULT_PERIOD, solver: str = "ipm",
                  loads: str = DEFAULT_LOADS) -> dict[str, Any]:
    """The whole label-aware LP — every usable offload column — handed to HiGHS in one go
    (``solver``: a HiGHS ``solver`` option, ``"ipm"``, ``"simplex"``, ``"pdlp"``…). The yardstick
    :mod:`bench/label_aware.py` times :func:`plan_label_aware` against; returns HiGHS's objective,
    its status and seconds (building the model included)."""
    import highspy

    t0 = time.perf_counter()
    tau, lab, m, budget, _, fixed, lam, feas_tol = _setup(scenario, labels, lam, target, same_budget, period, loads)
    mdl = _Model(scenario, _shares(lab), m, lam, budget, tau, solver, fixed, feas_tol)
    mdl.add(*np.nonzero(_columns(scenario, _usable(scenario, mdl))))
    _run(mdl.h)
    status = mdl.h.modelStatusToString(mdl.h.getModelStatus())
    ok = mdl.h.getModelStatus() == highspy.HighsModelStatus.kOptimal
    obj = float(mdl.h.getInfo().objective_function_value + mdl.f @ mdl.D) if ok else float("nan")
    return {"objective": obj, "status": status, "seconds": time.perf_counter() - t0,
            "columns": int(mdl.flow_src.size), "ok": ok}


def plan_label_aware(scenario: Scenario, labels: Any, lam: float = DEFAULT_LAMBDA, target: Any = DEFAULT_TARGET,
                     same_budget: bool = True, period: int = DEFAULT_PERIOD, check: bool = True,
                     loads: str = DEFAULT_LOADS) -> Plan:
    """The exact label-aware plan (linear error, capacities honoured; see the module docstring).

    ``labels``: ``D_i^c(t)`` ``[T, n, K]``; ``lam``: ``λ ≥ 0``; ``target``: the target mix ``m``
    (:func:`target_mix`: ``"uniform"``, the default, ``"collected"`` or ``K`` shares); ``same_budget``:
    process at least as many points as the label-blind optimum; ``period``: the aggregation period ``τ``
    (eq. 4) the label mix is balanced over (``1``: every slot's batch on its own); ``loads``:
    ``"label-blind"`` (default) — every device processes per period exactly the label-blind optimum's load
    ``G*_j(k)`` — or ``"free"`` — any load (the default before), both by column generation (free loads also
    start from a subgradient ascent); ``same_budget=False`` needs free loads, as fixed loads imply the
    budget. ``stats.solver`` is ``"label-aware"`` or ``"label-aware-free"`` to match. ``stats.objective``
    includes ``λ Σ B``; ``costs`` are the paper's realised costs (5) without it;
    ``stats.extra["imbalance"]`` is ``Σ B``. Raises :class:`~foglearn.errors.SolverError` when the bound
    does not certify the plan to :data:`GAP_TOL`, :class:`~foglearn.planning.interrupt.PlanInterrupted` on
    Ctrl-C.
    """
    t0 = time.perf_counter()
    tau, lab, m, budget, blind, fixed, lam, feas_tol = _setup(scenario, labels, lam, target, same_budget, period,
                                                              loads)
    p = _shares(lab)
    mdl = _Model(scenario, p, m, lam, budget, tau, loads=fixed, feas_tol=feas_tol)
    T, n, E = scenario.horizon, scenario.n_devices, scenario.n_edges
    usable = _usable(scenario, mdl)
    whole = False
    if fixed is not None and E:  # fixed loads, few columns per source: the whole LP at once (docstring, step 1)
        cols = _columns(scenario, usable)
        whole = int(cols.sum()) <= WHOLE_LP_COLUMNS_PER_SOURCE * max(1, mdl.all_sources.size)
        if whole:
            mdl.add(*np.nonzero(cols))
        del cols
    if blind is not None and E and not whole:  # the label-blind optimum's links: the budget row (and loads) hold
        t, e = np.nonzero(blind.offload > 0)
        keep = (t < T - 1) & usable[t, e]
        mdl.add(t[keep], e[keep])
    t1 = time.perf_counter()
    if E and fixed is None:  # the first master: each source's best columns at the prices of a subgradient ascent
        keep_ok = np.zeros(T * n, dtype=np.bool_)
        keep_ok[mdl.sources] = True
        mu, rho = call(_ascent, mdl.src, mdl.dst, usable, mdl.link_cost, mdl.link_cap, mdl.c, mdl.f, mdl.D, keep_ok,
                       mdl.group, mdl.p_ptr, mdl.p_idx, mdl.p_val, m, lam, budget, ASCENT_STEPS,
                       np.zeros((mdl.n * mdl.P, mdl.K)), 0.0, ASCENT_STEP, stop=new_stop_flag())
        zero = np.zeros(T * n)
        _, edge, _ = _price(mdl.src, mdl.dst, usable, mdl.link_cost, mdl.link_cap, mdl.c, mdl.f, mdl.D, zero, zero,
                            mu, mu @ m, rho, mdl.group, mdl.p_ptr, mdl.p_idx, mdl.p_val, mdl.have, RC_TOL,
                            COLUMNS_PER_SOURCE)
        s, r = np.nonzero(edge >= 0)
        mdl.add(s // n, edge[s, r])
    ascent_s = time.perf_counter() - t1
    solve_s = price_s = 0.0
    rounds = pruned = 0
    while rounds < MAX_ROUNDS:
        rounds += 1
        t1 = time.perf_counter()
        sol = mdl.solve("ipm" if rounds == 1 else "simplex")  # IPM + crossover from scratch, then warm starts
        t2 = time.perf_counter()
        best, edge, lag = _price(mdl.src, mdl.dst, usable, mdl.link_cost, mdl.link_cap, mdl.c, mdl.f, mdl.D,
                                 sol["y"], sol["w"], sol["mu"], sol["pi"], sol["rho"], mdl.group, mdl.p_ptr,
                                 mdl.p_idx, mdl.p_val, mdl.have, RC_TOL, COLUMNS_PER_SOURCE)
        price_s += time.perf_counter() - t2
        solve_s += t2 - t1
        bound = _bound(mdl, sol, budget, lag)
        primal, imb = _primal(mdl, sol["x"])
        gap = max(primal - bound, 0.0)
        s, r = np.nonzero(edge >= 0)
        if s.size == 0 or rounds == MAX_ROUNDS:  # the master must stay the one ``sol`` solved
            break
        pruned += mdl.prune(mdl.rc)
        mdl.add(s // n, edge[s, r])
    rel = gap / max(abs(primal), 1.0)
    if not rel <= GAP_TOL:
        raise SolverError(f"solver = 'label-aware': duality gap {gap:.3g} (relative {rel:.3g} > {GAP_TOL:g}) "
                          f"after {rounds} rounds of column generation; the solve failed to certify optimality")
    x = sol["x"]
    D = mdl.D
    keep = np.zeros(T * n)
    keep[mdl.sources] = x[:mdl.n_keep] / D[mdl.sources]
    offload = np.zeros((T, E))
    np.add.at(offload, (mdl.off_t, mdl.off_e), x[mdl.n_keep:] / D[mdl.flow_src[mdl.n_keep:]])
    # float round-off can leave keep + Σ offload a hair above 1: scale that source back to 1
    total = keep.copy()
    np.add.at(total, mdl.flow_src[mdl.n_keep:], offload[mdl.off_t, mdl.off_e])
    scale = np.where(total > 1.0, 1.0 / np.maximum(total, 1.0), 1.0)
    keep *= scale
    offload[mdl.off_t, mdl.off_e] *= scale[mdl.flow_src[mdl.n_keep:]]
    extra: dict[str, Any] = {
        "lambda": lam, "period": tau, "loads": loads, "min_processed": budget, "rounds": rounds,
        "whole_lp": whole,
        "columns": int(mdl.flow_src.size), "deleted_columns": pruned, "imbalance": imb, "dual_bound": bound,
        "ascent_seconds": ascent_s, "master_seconds": solve_s, "pricing_seconds": price_s, "target": m.tolist()}
    stats = SolverStats(SOLVER_OF_LOADS[loads], "optimal", time.perf_counter() - t0, primal, gap, extra)
    try:
        return Plan.from_fractions(scenario, keep.reshape(T, n), offload, error="linear", stats=stats,
                                   check=check)
    except InputError as exc:
        raise SolverError(f"solver = 'label-aware': the LP's flows are not a feasible plan ({exc})") from exc
