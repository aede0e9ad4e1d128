"""The device-parallel trainer: executes a :class:`~foglearn.planning.Plan` at datapoint level.

What happens in a run (paper Sec. III-B, docs/model.md §4, §6)
-------------------------------------------------
1. **Collection.** In slot ``t`` device ``i`` collects ``D_i(t)`` points, taken in ``(t, i)``
   order from a seeded permutation of the training set, without replacement. If the run asks
   for more points than the set holds, the stream continues with a fresh permutation (points
   repeat; the result says ``wrapped=True`` and a warning is issued).
2. **Movement.** ``D_i(t)`` is split by the plan's fractions ``s_ii(t)``, ``s_ij(t)``, ``r_i(t)``
   with largest-remainder rounding (:func:`foglearn.planning.rules.largest_remainder`, the rule the
   Flower app applies too), so the integer parts add up to ``D_i(t)`` exactly (ties: keep, then
   offload in edge order, then discard — docs/model.md §6). Kept points are processed at ``i``
   in ``t``, offloaded ones at ``j`` in ``t + 1``, discarded ones never.
3. **Local update.** ``local_update="paper"`` is eq. (3): every device with ``G_i(t) > 0``
   takes one SGD step ``w_i(t) = w_i(t-1) - η ∇ L_i(w_i(t-1) | G_i(t))`` on the mean
   cross-entropy of its batch, whatever ``|G_i(t)|`` is — so a plan that concentrates data on
   few devices gives them fewer steps per point. ``local_update="minibatch:b"``
   (:class:`LocalUpdate`) walks ``G_i(t)`` in order in mini-batches of ``b`` points and takes
   ``⌈|G_i(t)|/b⌉`` SGD steps, so a device's work grows with the data it processes
   (docs/accuracy.md says why this is the default of ``foglearn run``). With ``b ≥ |G_i(t)|``
   both rules coincide. ``local_update="scaled:b"`` takes the same steps but a mini-batch of
   ``k < b`` points steps on its summed loss over ``b`` (a step ``k/b`` as long): every point moves
   the model by ``η/b`` however a plan splits a device's points over slots, so a few points a plan
   adds in an extra slot do not take a full step (docs/noniid.md, "Fragments").
4. **Aggregation (eq. 4).** After every ``τ`` slots the server averages
   ``w = Σ_i H_i w_i / Σ_i H_i`` (``H_i`` = points processed since the last aggregation; devices
   with ``H_i = 0`` get weight 0; if all are 0 the global model is kept;
   :func:`foglearn.planning.rules.aggregation_weights`) and synchronises all
   devices. If ``T`` is not a multiple of ``τ`` a last aggregation closes the run.

Device-major periods. Between two aggregations the devices are independent given the global
model (the schedule fixes which points each processes), so a period runs **device-major**: the
devices are cut into blocks of consecutive devices; a block's devices get the global model, run
all the period's slots, add their ``H``-weighted models to the period's sum (float64) and are
dropped before the next block starts. Only one block's models exist at a time — memory is
``O(block)``, not ``O(n)`` (the block size comes from :data:`STATE_BUDGET`, or ``in_flight``) — and
the result does not depend on the block size beyond round-off of the sum (float64; float32 within one
of the MLP's compiled calls) (tests/test_trainer_device_major.py). A block needs only the global
model and its devices' points, so blocks can also run on other machines as Ray tasks (``executor="ray"``,
:mod:`foglearn.learning.executors`; the shares are added in block order, the local result bit for
bit). Within a block, never one Python step per device:

* **MLP (CPU): one compiled call per n / 8 devices (32 to 256)** (:func:`foglearn.learning.kernels.mlp_devices`,
  :class:`_DeviceMajorMLP`). A device's steps of the period run back to back with its model
  (0.6 MB) in cache; only the rows of the first layer that the points' nonzero pixels touch are
  read and changed, and a row is copied out of ``w`` only when a step that is not the device's
  last changes it. Calls run on ``threads`` worker threads, their partial sums are added in call
  order.
* **CNN (CPU): batched kernels** (:mod:`foglearn.learning.kernels`). A block's parameters are the
  rows of one flat ``[block, P]`` tensor. In each slot the block's active devices are grouped by
  batch size (padding within a group, :func:`_size_groups`), groups are cut into calls of at most
  :data:`CHUNK` samples, and each call runs a hand-written forward/backward with batched GEMMs
  over the devices (convolutions as row-Toeplitz GEMMs). A slot's calls run on ``threads`` worker
  threads (:class:`_Workers`; every op single-threaded, the kernels release the GIL) and are
  combined in call order, so the result does not depend on the thread count. A call takes its
  devices' SGD steps in place (or, for a device split across calls, one ``index_add_`` of the
  summed gradient); the block's share of eq. (4) is one ``[k] @ [k, P]`` product. Test-set
  evaluation (only at aggregations) uses the same kernels and workers.
* **τ = 1 (exact identity).** Every device then starts every slot from the global model, and the
  ``H``-weighted average of one SGD step each equals one SGD step on the union of the slot's
  batches (see :class:`_UnionRunner`); the run then costs about as much as centralised SGD on
  the same points, with no per-device state at all. Equal to the general path to round-off
  (tests/test_learning_kernels.py).
* **Any other module** (a factory or instance), **and every model on CUDA**: a block's parameters
  stacked ``[block, ...]``, the model evaluated with :func:`torch.func.functional_call` under
  :func:`torch.func.vmap`, padded and masked, one backward pass for all of the slot's devices
  (:class:`_VmapRunner`).

Buffers (batch-norm running statistics). Each device has its own copy; a device's forward in
training mode updates it, and eq. (4) averages buffers exactly like parameters,
``b = Σ_i H_i b_i / Σ_i H_i`` (integer buffers such as ``num_batches_tracked``: that average
rounded to the nearest integer). The test set is evaluated in eval mode (running statistics).
Batch-norm makes a sample's output depend on its batch, so such models are never padded: each
device's batch statistics are those of its own points (a plain PyTorch loop gives the same
result, tests/test_trainer_device_major.py).

Devices. ``device="cuda"`` (the default where CUDA is available) moves the model, the data and
the per-device state to the GPU and runs the torch path above (the compiled kernels are CPU
code); ``device="cpu"`` is the default elsewhere. The torch path gives the kernels' results to
float round-off (tested on the CPU through the same code).

Mini-batch rounds. ``local_update="minibatch:b"`` runs a slot as rounds ``r = 0, 1, …``: in round
``r`` every device with more than ``r b`` points steps on its points ``r b … (r+1) b`` — each round
is one call of the runner's ordinary step, so every fast path above except τ = 1's identity (which
needs one step per slot) serves it unchanged (the MLP's compiled call takes the mini-batches as
its steps directly).

Data. ``partition`` (:mod:`foglearn.learning.partition`) gives each device its own label
distribution (i.i.d., Dirichlet label skew, ``k`` classes per device); i.i.d. is the paper's
stream, bit for bit.

Budget. The paper's protocol is one pass over the horizon (``passes=1``). ``passes = P`` replays
the horizon ``P`` times with fresh points (the plan's fractions repeat; costs scale by ``P``,
unit cost does not) — the documented way to give all settings the same larger training budget.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, vmap

from foglearn.errors import InputError
from foglearn.learning.datasets import DataSpec, load_dataset
from foglearn.learning.kernels import BatchedMLP, BatchedModel, batched_kernel, mlp_devices, mlp_kernel_layout
from foglearn.learning.models import ModelSpec, make_model, model_name
from foglearn.learning.partition import Partition, PartitionError, class_weight_vector, device_stream
from foglearn.learning.results import TrainResult
from foglearn.network.scenario import Scenario
from foglearn.planning.plan import Plan, split_points
from foglearn.planning.rules import aggregation_weights, whole_points

if TYPE_CHECKING:
    from foglearn.learning.executors import Remote

ProgressFn = Callable[[int, int], None]

#: Per-call overhead of a vmapped forward, in padded-sample equivalents (device grouping, see _size_groups).
GROUP_OVERHEAD = 64.0
EVAL_BATCH = 1000
#: Samples per batched-kernel call (bounds the kernels' working memory, ~170 kB per CNN sample).
CHUNK = 256
#: Per-call overhead of a batched-kernel call, in padded-sample equivalents.
KERNEL_OVERHEAD = 8.0
#: Bytes of per-device model state a block of devices may hold at once (device-major periods):
#: the block size is this divided by a device's share (about 140 MLP or 500 CNN devices).
STATE_BUDGET = 256 * 2**20
#: Items (device-slots, each twice, and nonzero offloads ``s_ij(t) > 0``) that :func:`schedule`
#: rounds at once: it takes as many slots per window as fit (at least one), bounding its memory.
SCHEDULE_ITEMS = 1 << 20
#: Points a run may execute in one pass (``Σ D_i(t)``) and over all its passes: training lays out every
#: point (its slot, device and stream position, about 100 bytes each while :func:`schedule` sorts them,
#: 8 bytes a point of the stream), so a scenario file that declares 10⁹ points would need ~100 GB.
MAX_POINTS_PER_PASS = 50_000_000
MAX_POINTS = 250_000_000
#: Layers whose output for a sample depends on the other samples of its batch (no padding then).
_BATCH_NORM = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)


class TrainingError(InputError):
    """Bad training arguments; the message names the argument and the rule."""


@dataclass(frozen=True)
class LocalUpdate:
    """What a device does with its ``G_i(t)`` points in a slot.

    ``batch = None``: eq. (3), one SGD step on all of them (``"paper"``). ``batch = b``:
    ``⌈|G_i(t)|/b⌉`` SGD steps on consecutive mini-batches of ``b`` points (the last one smaller),
    each on the batch's mean loss (``"minibatch:b"``); with ``scaled``, each on the batch's summed
    loss divided by ``max(k, b)`` for a batch of ``k`` points (``"scaled:b"``): a full batch steps
    as with ``"minibatch:b"``, a smaller one ``k/b`` as far, so every point contributes ``η/b``.
    """

    batch: int | None = None
    scaled: bool = False

    #: ``b`` of ``"minibatch"`` without a size.
    DEFAULT_BATCH = 32
    #: The largest ``b`` (a mini-batch beyond any slot's points is the slot's whole batch; larger sizes overflowed
    #: the kernels' int64 arithmetic).
    MAX_BATCH = 2**31 - 1

    @classmethod
    def parse(cls, spec: str | LocalUpdate) -> LocalUpdate:
        """``"paper"``, ``"minibatch"``, ``"minibatch:B"``, ``"scaled"`` or ``"scaled:B"`` (integer ``B ≥ 1``)."""
        if isinstance(spec, LocalUpdate):
            return spec
        if isinstance(spec, str):
            kind, _, arg = spec.strip().lower().partition(":")
            if kind == "paper" and not arg:
                return cls()
            if kind in ("minibatch", "scaled"):
                if not arg:
                    return cls(cls.DEFAULT_BATCH, kind == "scaled")
                if arg.isascii() and arg.isdigit() and 1 <= int(arg) <= cls.MAX_BATCH:
                    return cls(int(arg), kind == "scaled")
        raise TrainingError(f"local_update = {spec!r}: must be 'paper' (eq. 3), 'minibatch:B' or 'scaled:B' "
                            f"(B an integer from 1 to {LocalUpdate.MAX_BATCH:,})")

    @property
    def spec(self) -> str:
        return "paper" if self.batch is None else f"{'scaled' if self.scaled else 'minibatch'}:{self.batch}"

    @property
    def min_den(self) -> int:
        """A step's loss is summed over its points and divided by ``max(k, min_den)`` (1: the mean)."""
        return self.batch if self.scaled and self.batch is not None else 1


# ---------------------------------------------------------------------------------------------
# Datapoint-level execution of a plan
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Schedule:
    """Which training points each device processes in each slot (one pass of the horizon).

    ``slot``, ``device``, ``pos`` (int, sorted by slot then device): point ``pos`` of the pass's
    collection stream (``(t, i)`` order) is processed by ``device`` in ``slot``.
    ``processed[T, n]``: rounded ``G_i(t)``; ``kept[T, n]``: rounded kept part of ``D_i(t)``;
    ``offloaded``: ``(t, e, count)`` triples of the offloads that carry points (``count > 0``, the
    points sent; a fraction ``s_ij(t) > 0`` that rounds to no point is left out);
    ``discarded[T, n]``: points of ``D_i(t)`` neither kept nor sent (the discarded part and what a
    link's whole-point capacity held back); ``dropped[T, n]``: points a device's whole-point
    capacity dropped in that slot. What a Flower device reports (tests/test_rules_equivalence.py).
    """

    slot: np.ndarray
    device: np.ndarray
    pos: np.ndarray
    processed: np.ndarray
    kept: np.ndarray
    discarded: np.ndarray
    offloaded: tuple[np.ndarray, np.ndarray, np.ndarray]
    dropped: np.ndarray


def schedule(scenario: Scenario, plan: Plan) -> Schedule:
    """Split every ``D_i(t)`` by the plan's fractions (largest remainder) and route the points.

    Kept points are processed at ``i`` in ``t``; points offloaded on link ``e`` at ``t`` are
    processed at ``dst[e]`` in ``t + 1`` (an offload at the last slot, which feasible plans never
    contain, would fall outside the horizon and is not processed); discarded points never are.
    Rounding may exceed a capacity by a point: a link sends at most ``⌊C_ij(t)⌋`` points and a
    device processes at most ``⌊C_i(t)⌋`` (:func:`foglearn.planning.rules.whole_points`; the
    device drops its latest points in stream order).
    """
    return _schedule(scenario, plan, tables=True)


def _windows(plan: Plan, n: int) -> list[tuple[int, int]]:
    """:func:`schedule`'s windows of slots ``(t0, t1)``: consecutive slots whose items (``2n``
    device-slots and the slot's nonzero offloads) add up to at most :data:`SCHEDULE_ITEMS` (a
    window holds at least one slot)."""
    T = plan.offload.shape[0]
    bounds, items = [0], 0
    for t in range(T):
        k = 2 * n + int(np.count_nonzero(plan.offload[t] > 0))
        if items and items + k > SCHEDULE_ITEMS:
            bounds.append(t)
            items = 0
        items += k
    bounds.append(T)
    return list(zip(bounds[:-1], bounds[1:]))


def _schedule(scenario: Scenario, plan: Plan, tables: bool) -> Schedule:
    """:func:`schedule`. ``tables = False`` (the trainer's own call) builds only what training
    needs — the routing (``slot``, ``device``, ``pos``) and ``processed`` — and leaves ``kept``,
    ``discarded``, ``dropped`` (``[0, n]``) and ``offloaded`` empty: three ``[T, n]`` int64 tables
    less (0.24 GB at n = 10⁵, T = 100)."""
    T, n = scenario.horizon, scenario.n_devices
    if plan.keep.shape != (T, n) or plan.offload.shape != (T, scenario.n_edges):
        raise TrainingError(f"plan: shapes keep {plan.keep.shape}, offload {plan.offload.shape} do not match "
                            f"the scenario (T, n, E) = {(T, n, scenario.n_edges)}")
    D = scenario.collected  # int64 (Scenario)
    kept, discarded = (np.zeros((T, n), np.int64), np.zeros((T, n), np.int64)) if tables else (None, None)
    offloaded: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    chunks: list[tuple[np.ndarray, ...]] = []
    before = 0  # points collected before the window: the window's stream positions start there
    for t0, t1 in _windows(plan, n):  # the rounding works on one window of slots at a time
        tt, ee, off_cnt, p_chunk = _schedule_window(scenario, plan, t0, t1, before, kept, discarded)
        if tables:
            offloaded.append((tt, ee, off_cnt))
        chunks.append(p_chunk)
        before += int(D[t0:t1].sum())
    p_slot, p_dev, p_start, p_cnt = (np.concatenate(c) for c in zip(*chunks))
    del chunks
    none = np.zeros(0, np.int64)
    tt, ee, off_cnt = (np.concatenate(c) for c in zip(*offloaded)) if tables else (none, none, none)
    tot = int(p_cnt.sum())
    rep = np.repeat(np.arange(len(p_cnt)), p_cnt)
    offs = np.arange(tot) - np.repeat(np.cumsum(p_cnt) - p_cnt, p_cnt)
    slot, dev, pos = p_slot[rep], p_dev[rep], p_start[rep] + offs
    del rep, offs, p_slot, p_dev, p_start, p_cnt
    o = np.lexsort((pos, dev, slot))
    slot, dev, pos = slot[o], dev[o], pos[o]
    del o
    g = slot * n + dev
    fits = np.arange(g.size) - np.searchsorted(g, g, side="left") < whole_points(scenario.proc_cap.ravel()[g])
    dropped = np.bincount(g[~fits], minlength=T * n).reshape(T, n) if tables else np.zeros((0, n), np.int64)
    del g
    slot, dev, pos = slot[fits], dev[fits], pos[fits]
    processed = np.bincount(slot * n + dev, minlength=T * n).reshape(T, n)
    empty = np.zeros((0, n), np.int64)
    return Schedule(slot=slot, device=dev, pos=pos, processed=processed,
                    kept=kept if kept is not None else empty, discarded=discarded if discarded is not None else empty,
                    offloaded=(tt, ee, off_cnt), dropped=dropped)


def _schedule_window(scenario: Scenario, plan: Plan, t0: int, t1: int, before: int,
                     kept: np.ndarray | None, discarded: np.ndarray | None
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple]:
    """:func:`schedule`'s layout for slots ``t0 … t1 - 1``, rounded by :func:`split_points` (their
    points start at stream position ``before``): fills ``kept``/``discarded`` rows (when given),
    returns the offloads that carry points ``(t, e, count > 0)`` and the processing chunks
    ``(slot, device, start, count)`` (count > 0, slot < T)."""
    T, n = scenario.horizon, scenario.n_devices
    Tw = t1 - t0
    sp = split_points(scenario, plan, t0, t1)
    tt, ee, off_cnt = sp.t, sp.edge, sp.sent
    n_off = len(tt)
    # Lay out each (t, i)'s D_i(t) points: keep chunk, offload chunks (edge order), discard chunk.
    order = np.lexsort((sp.priority, sp.group))
    cnt_sorted = sp.counts[order]
    start_sorted = np.cumsum(cnt_sorted) - cnt_sorted + before  # positions in the (t, i)-ordered stream
    start = np.empty_like(start_sorted)
    start[order] = start_sorted
    del order, cnt_sorted, start_sorted
    keep_cnt = sp.kept.ravel()
    keep_start, off_start = start[:Tw * n], start[Tw * n:Tw * n + n_off]
    if kept is not None and discarded is not None:
        kept[t0:t1] = sp.kept
        discarded[t0:t1] = sp.discarded
    del sp
    ti = np.arange(Tw * n)
    # processing chunks: (slot, device, start, count)
    p_slot = np.concatenate([ti // n + t0, tt + 1])
    p_dev = np.concatenate([ti % n, scenario.dst[ee]])
    p_start = np.concatenate([keep_start, off_start])
    p_cnt = np.concatenate([keep_cnt, off_cnt])
    ok = (p_cnt > 0) & (p_slot < T)
    carry = off_cnt > 0  # the offloads that send points (at n = 10⁵ most fractions round to none)
    return tt[carry], ee[carry], off_cnt[carry], (p_slot[ok], p_dev[ok], p_start[ok], p_cnt[ok])


def point_stream(n_points: int, dataset_size: int, seed: int) -> tuple[np.ndarray, bool]:
    """``n_points`` indices from seeded permutations of ``range(dataset_size)``, no replacement
    within a permutation; a fresh permutation follows when one runs out (returns whether it did).

    With ``passes > 1`` the stream simply continues, so passes are epochs over the training set."""
    rng = np.random.default_rng(seed)
    k = max(1, -(-n_points // dataset_size))
    stream = np.concatenate([rng.permutation(dataset_size) for _ in range(k)])[:n_points]
    return stream, k > 1


def _warn_wrap(per_pass: int, dataset_size: int) -> bool:
    """Warn (and return True) when one pass of the horizon needs more points than the set holds."""
    if per_pass <= dataset_size:
        return False
    warnings.warn(f"the scenario collects {per_pass} points but the training set holds {dataset_size}: the point "
                  "stream wraps to a fresh permutation, so points repeat within one pass", stacklevel=3)
    return True


# ---------------------------------------------------------------------------------------------
# Stacked-parameter SGD
# ---------------------------------------------------------------------------------------------

def _size_groups(devices: np.ndarray, sizes: np.ndarray, overhead: float = GROUP_OVERHEAD
                 ) -> list[tuple[np.ndarray, int]]:
    """Partition devices (sizes > 0) into groups padded to the group's largest batch.

    Minimises ``Σ_groups (overhead + width · count)`` (padded samples plus a per-call
    overhead in sample-equivalents) exactly, by dynamic programming over the distinct sizes.
    """
    o = np.argsort(-sizes, kind="stable")
    devices, sizes = devices[o], sizes[o]
    vals, first = np.unique(-sizes, return_index=True)  # distinct sizes, descending
    widths = -vals
    m = len(widths)
    bounds = np.append(first, len(sizes))  # devices with size widths[k] are bounds[k]:bounds[k+1]
    best = np.full(m + 1, np.inf)
    best[m] = 0.0
    cut = np.zeros(m, dtype=np.int64)
    for k in range(m - 1, -1, -1):  # group starts at distinct size k (its width), ends before size j
        j = np.arange(k + 1, m + 1)
        cost = overhead + widths[k] * (bounds[j] - bounds[k]) + best[j]
        a = int(np.argmin(cost))
        best[k], cut[k] = cost[a], j[a]
    groups = []
    k = 0
    while k < m:
        end = int(cut[k])
        groups.append((devices[bounds[k]:bounds[end]], int(widths[k])))
        k = end
    return groups


class _Period:
    """What every aggregation period of a run shares: data, schedule, stream, blocks of devices.

    ``edges``: the blocks' first devices (and ``n``); ``bounds[t, k]``: the first scheduled point
    of slot ``t`` whose device is ≥ ``edges[k]`` — the schedule is sorted by slot, then device,
    so a block's points in a slot are one run ``bounds[t, k] … bounds[t, k + 1] - 1``.
    """

    def __init__(self, X: torch.Tensor, Y: torch.Tensor, sched: Schedule, stream: np.ndarray, per_pass: int,
                 T: int, n: int, block: int, batch: int | None, lr: float, device_loss: np.ndarray) -> None:
        self.X, self.Y, self.sched, self.stream, self.per_pass = X, Y, sched, stream, per_pass
        self.T, self.n, self.block, self.batch, self.lr, self.device_loss = T, n, block, batch, lr, device_loss
        self.edges = np.append(np.arange(0, n, block), n)
        key = sched.slot * n + sched.device
        self.bounds = np.searchsorted(key, (np.arange(T)[:, None] * n + self.edges[None, :]).ravel()).reshape(T, -1)
        self.slot_bounds = np.searchsorted(sched.slot, np.arange(T + 1))


class _Runner:
    """Runs one aggregation period device-major (see :func:`train`).

    ``open_period(w)`` takes the period's eq. (4) weights (``None``: every ``H_i = 0``, the global
    model stays); then for each block of consecutive devices ``c0 … c1 - 1``: ``begin(c1 - c0)``
    gives the block's devices the global model, ``step`` does eq. (3) for the block's devices in a
    slot (devices numbered ``0 … c1 - c0 - 1`` within the block), ``end(c0, c1)`` adds
    ``Σ_{i in block} w_i w_i`` to the period's sum and drops the block's state; ``close_period``
    makes the sum the global model. Only one block's models exist at a time.
    """

    #: Whether devices have their own state (so they can run in blocks); ``False``: a slot's step
    #: involves all its devices at once (τ = 1's union identity) and the period is one block.
    per_device = True
    #: A step on ``k`` points divides its summed loss by ``max(k, den)`` (:attr:`LocalUpdate.min_den`;
    #: 1: the mean loss); set by :func:`_make_runner`.
    den = 1
    #: ``ω_c``, each class's loss weight (float32 ``[C]``; :func:`class_weight_vector`), or ``None``: all 1.
    class_weight: np.ndarray | None = None

    def block_size(self) -> int:
        """Devices per block: as many as :data:`STATE_BUDGET` holds (at least 1)."""
        return 2**62

    def run_period(self, job: _Period, slots: range, remote: Remote | None = None) -> None:
        """Eq. (3) for every device in ``slots`` (one period), block by block, each block's slots
        in order; fills ``job.device_loss`` for those slots. With ``remote``
        (:mod:`foglearn.learning.executors`) the blocks run on other processes or machines, each
        returns its share of eq. (4) and its losses, and the shares are added here in block order
        (the same float64 additions as a local run)."""
        blocks = range(len(job.edges) - 1)
        if remote is None:
            for k in blocks:
                self.run_block(job, slots, k)
            return
        for k, (part, loss) in zip(blocks, remote.blocks(self.share(), self.w, slots, blocks)):
            self.add(part)
            job.device_loss[slots.start:slots.stop, int(job.edges[k]):int(job.edges[k + 1])] = loss

    def run_block(self, job: _Period, slots: range, k: int) -> None:
        """Block ``k`` (devices ``edges[k] … edges[k + 1] - 1``): the global model, the period's
        slots, its share of eq. (4) added to the period's sum."""
        bounds = job.bounds
        c0, c1 = int(job.edges[k]), int(job.edges[k + 1])
        self.begin(c1 - c0)
        for s in slots:
            p, t = divmod(s, job.T)
            a, b = bounds[t, k], bounds[t, k + 1]
            if b == a:
                continue
            dev = job.sched.device[a:b] - c0
            pts = job.stream[p * job.per_pass + job.sched.pos[a:b]]
            sizes = np.bincount(dev, minlength=c1 - c0)
            starts = np.cumsum(sizes) - sizes
            active = np.nonzero(sizes)[0]
            if job.batch is None:
                loss = self.step(job.X, job.Y, pts, dev, active, sizes, starts, job.lr)
            else:
                loss = _minibatch_step(self, job.X, job.Y, pts, dev, sizes, starts, active, job.lr, job.batch)
            job.device_loss[s, c0 + active] = loss
        self.end(c0, c1)

    def open_period(self, w: np.ndarray | None) -> None:
        self.w = w

    def share(self) -> object:
        """The global model as the workers of a remote executor need it (:meth:`load` there)."""
        raise NotImplementedError

    def load(self, state: object) -> None:
        """Take the global model :meth:`share` gave."""
        raise NotImplementedError

    def part(self) -> object:
        """The period's sum so far (``None`` when every ``H_i = 0``): a block's share of eq. (4)
        when the sum was opened just before the block."""
        raise NotImplementedError

    def add(self, part: object) -> None:
        """Add a block's share of eq. (4) (:meth:`part` of a worker) to the period's sum."""
        raise NotImplementedError

    def begin(self, count: int) -> None:
        """Give ``count`` devices (one block) the global model."""

    def step(self, X: torch.Tensor, Y: torch.Tensor, pts: np.ndarray, dev: np.ndarray, active: np.ndarray,
             sizes: np.ndarray, starts: np.ndarray, lr: float) -> np.ndarray:
        """One SGD step for every device in ``active`` on its batch (its ``sizes[i]`` points are
        ``pts[starts[i]:starts[i] + sizes[i]]``; ``dev`` is each point's device); returns their losses."""
        raise NotImplementedError

    def end(self, c0: int, c1: int) -> None:
        """Add the block's ``Σ w_i w_i`` (devices ``c0 … c1 - 1``) to the period's sum."""

    def close_period(self) -> None:
        """Eq. (4): the period's sum becomes the global model (kept if every ``H_i = 0``)."""

    def global_state(self) -> dict[str, torch.Tensor]:
        raise NotImplementedError


def _padded(pts: np.ndarray, starts: np.ndarray, sizes: np.ndarray, devs: np.ndarray, width: int,
            lo: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``[g, width]`` indices into ``pts`` of devices ``devs`` (their points ``lo, lo+1, …``), and the validity mask."""
    col = lo + np.arange(width)
    valid = col[None, :] < sizes[devs][:, None]
    return pts[np.where(valid, starts[devs][:, None] + col[None, :], 0)], valid


class _Workers:
    """Runs batched-kernel calls on ``k`` threads, each op single-threaded.

    The kernels release the GIL (MKL GEMMs, numba passes with ``nogil``), so ``k`` calls run on
    ``k`` cores at once; this scales much better than splitting every (small) op across threads.
    Results come back in task order and are combined in that order, so a run gives the same
    numbers for any ``k``. Each worker sets its own thread-local BLAS/OpenMP thread count to 1:
    a new thread otherwise starts with the process default (all cores), and the fused CNN call,
    which calls ``sgemm`` directly, then oversubscribed the cores (2 threads ran 1.4× *slower*
    than 1 here).
    """

    def __init__(self, k: int) -> None:
        self.k = k
        self.pool = (ThreadPoolExecutor(k, thread_name_prefix="foglearn-kernel", initializer=torch.set_num_threads,
                                        initargs=(1,)) if k > 1 else None)

    def map(self, fn: Callable, tasks: list) -> list:
        if self.pool is None or len(tasks) < 2:
            return [fn(*t) for t in tasks]
        return list(self.pool.map(lambda t: fn(*t), tasks))

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown()


class _KernelRunner(_Runner):
    """General path: per-device parameters stacked as one flat ``[n, P]`` tensor, batched kernels.

    Active devices are cut into kernel calls of about :data:`CHUNK` samples: for a kernel that
    skips padding (the fused CNN), runs of consecutive devices with equal shares of the slot's
    points; otherwise groups of equal-ish batch size (:func:`_size_groups`, padding within a
    group). A call whose devices are whole takes their SGD steps in place
    (:meth:`~foglearn.learning.kernels.BatchedCNN.sgd_step`; calls touch disjoint rows, so they run
    at once on the worker threads). A device whose batch alone exceeds :data:`CHUNK` is cut into
    sample chunks whose gradients are summed and applied with ``index_add_`` in call order.

    Only a block's devices have parameters: ``flat [block, P]``, one buffer reused by every
    block, so memory does not grow with ``n``. Eq. (4) is one ``[k] @ [k, P]`` product per block
    (``k`` devices with ``H_i > 0``), summed over blocks in float64.
    """

    #: Per-device bytes in flight, in units of the parameter vector: the block's row, the kernel's
    #: gathered copy and its gradient.
    COPIES = 3

    def __init__(self, kernel: BatchedModel, module: nn.Module, n: int, workers: _Workers) -> None:
        self.kernel = kernel
        self.layout = kernel.layout
        self.workers = workers
        self.n = n
        self.glob = self.layout.flatten(dict(module.named_parameters()))
        self.buf = torch.empty(0, self.layout.size)
        self.flat = self.buf
        self.sum: torch.Tensor | None = None

    def block_size(self):
        return int(min(self.n, max(1, STATE_BUDGET // (self.COPIES * 4 * self.layout.size))))

    def open_period(self, w):
        self.w = w
        self.sum = None if w is None else torch.zeros(self.layout.size, dtype=torch.float64)

    def begin(self, count):
        if self.buf.shape[0] < count:
            self.buf = torch.empty(count, self.layout.size)
        self.flat = self.buf[:count]
        self.flat.copy_(self.glob.unsqueeze(0).expand_as(self.flat))

    def _call(self, devs: np.ndarray, X: torch.Tensor, Y: torch.Tensor, idx: np.ndarray, wt: np.ndarray,
              lr: float) -> tuple[torch.Tensor | None, np.ndarray]:
        """Devices ``devs`` on samples ``idx [g, w]`` with loss weights ``wt``: with ``lr > 0`` their
        SGD steps, taken in place (returns no gradient), else their gradients ``[g, P]``; and each
        device's weighted loss."""
        w = torch.from_numpy(wt)
        ti = torch.from_numpy(idx)
        rows = torch.from_numpy(devs)
        if lr > 0:
            loss, grad = self.kernel.sgd_step(self.flat, rows, X, Y[ti], w, lr, index=ti), None
        else:
            loss, grad = self.kernel.loss_and_grad(self.flat.index_select(0, rows), X, Y[ti], w, index=ti)
        return grad, (loss * w).sum(1).numpy().astype(np.float64)

    def _task(self, part: np.ndarray, X, Y, pts, sizes, starts, width: int, lo: int = 0,
              lr: float = 0.0) -> tuple:
        """A call for devices ``part`` on their points ``lo … lo + width`` (padded; loss weights
        ``ω_y/max(|G_i|, den)``, ``ω = 1`` without class weights); ``lr`` > 0 when the devices are whole (their
        steps are taken in the call)."""
        idx, valid = _padded(pts, starts, sizes, part, width, lo)
        den = np.maximum(sizes[part], self.den)[:, None].astype(np.float32)
        wt = (valid / den).astype(np.float32)
        if self.class_weight is not None:
            wt *= self.class_weight[Y.numpy()[idx]]
        return part, X, Y, idx, wt, lr

    def step(self, X, Y, pts, dev, active, sizes, starts, lr):
        calls: list[tuple[np.ndarray, int]] = []  # whole devices: (devices, padded width)
        if self.kernel.skips_padding:
            # padding is free: runs of consecutive devices with about CHUNK real points each
            split = active[sizes[active] > CHUNK]
            small = active[sizes[active] <= CHUNK]
            if len(small):
                cum = np.cumsum(sizes[small])
                k = -(-int(cum[-1]) // CHUNK)
                cuts = np.concatenate([[0], np.searchsorted(cum, np.arange(1, k) * cum[-1] / k) + 1, [len(small)]])
                calls = [(small[a:b], int(sizes[small[a:b]].max())) for a, b in zip(cuts[:-1], cuts[1:]) if b > a]
        else:
            split = np.zeros(0, dtype=np.int64)
            for devs, width in _size_groups(active, sizes[active], KERNEL_OVERHEAD):
                devs = np.sort(devs)
                if width > CHUNK:
                    split = np.concatenate([split, devs])
                    continue
                per = max(1, CHUNK // width)
                calls += [(devs[c:c + per], width) for c in range(0, len(devs), per)]
        tasks = [self._task(part, X, Y, pts, sizes, starts, width, lr=lr) for part, width in calls]
        for d in split:  # large batches: one device per call, gradient summed over sample chunks
            for lo in range(0, int(sizes[d]), CHUNK):
                tasks.append(self._task(np.array([d]), X, Y, pts, sizes, starts, min(CHUNK, int(sizes[d]) - lo), lo))
        losses = np.zeros(len(sizes))
        for (devs, *_), (grad, loss) in zip(tasks, self.workers.map(self._call, tasks)):
            if grad is not None:
                self.flat.index_add_(0, torch.from_numpy(devs), grad, alpha=-lr)
            losses[devs] += loss
        # the weighted loss is the mean times |G_i| / max(|G_i|, den): report the mean
        return losses[active] * np.maximum(sizes[active], self.den) / sizes[active]

    def end(self, c0, c1):
        if self.w is None or self.sum is None:
            return
        nz = np.nonzero(self.w[c0:c1])[0]
        if len(nz):
            wt = torch.from_numpy(self.w[c0:c1][nz].astype(np.float32))
            self.sum += (wt @ self.flat.index_select(0, torch.from_numpy(nz))).double()

    def close_period(self):
        if self.sum is not None:
            self.glob = self.sum.float()
            self.sum = None

    def share(self):
        return self.glob

    def load(self, state):
        self.glob = state

    def part(self):
        return self.sum

    def add(self, part):
        if self.sum is not None:
            self.sum += part

    def global_state(self):
        return self.layout.unflatten(self.glob)


class _DeviceMajorMLP(_Runner):
    """The MLP on the CPU (any τ and local update except τ = 1's union identity): device-major.

    Within a period the devices are independent given the global model ``w`` (the schedule fixes
    their points), so each device's steps of the period run back to back in one compiled call
    (:func:`~foglearn.learning.kernels.mlp_devices`): its model (0.6 MB) starts from ``w``,
    stays in cache for all its steps, and its change ``w_i - w`` is added to the call's weighted
    sum ``Σ_i H_i (w_i - w) / Σ H`` before the next device starts; eq. (4) is then
    ``w + Σ_i H_i (w_i - w) / Σ H``. Only the devices with ``H_i > 0`` are visited. A call
    takes :attr:`block` devices; calls run on the worker threads, each with its own partial sum
    (float32 inside the call, returned as float64), and the partial sums are added in call order,
    so the result depends neither on the thread count nor (beyond float32 round-off of a call's
    sum) on the block size. Memory: one model and one sum per call in flight, whatever ``n``.
    """

    #: Devices per compiled call: ``n / 8`` within these bounds — large calls amortise a call's
    #: sum, at least 8 calls keep the worker threads busy at small n; fixed by n alone, so results
    #: do not depend on the thread count.
    BLOCK_MIN, BLOCK_MAX = 32, 256

    def __init__(self, kernel: BatchedMLP, module: nn.Module, workers: _Workers, n: int) -> None:
        self.kernel = kernel
        self.workers = workers
        self.n = n
        self.glob = kernel.layout.flatten(dict(module.named_parameters()))
        self.glob_k = self.glob

    def block_size(self):
        return min(self.BLOCK_MAX, max(self.BLOCK_MIN, -(-self.n // 8)))

    def _call(self, dev_ptr: np.ndarray, step_ptr: np.ndarray, pts: np.ndarray, w: np.ndarray,
              X: torch.Tensor, Y: torch.Tensor, lr: float) -> tuple[np.ndarray, np.ndarray]:
        out_sum = np.zeros(self.kernel.layout.size)
        loss = np.empty(len(pts))
        mlp_devices(self.kernel, X, Y, self.glob_k, dev_ptr, step_ptr, pts, w, lr, out_sum, loss, min_den=self.den,
                    class_weight=self.class_weight)
        return out_sum, loss

    def run_period(self, job, slots, remote=None):
        if self.w is None:  # nobody processes anything in the period
            return
        parts = []
        for i, s in enumerate(slots):
            p, t = divmod(s, job.T)
            a, b = job.slot_bounds[t], job.slot_bounds[t + 1]
            parts.append((job.sched.device[a:b], job.stream[p * job.per_pass + job.sched.pos[a:b]],
                          np.full(b - a, i)))
        dev, pts, sl = (np.concatenate(x) for x in zip(*parts))
        o = np.lexsort((sl, dev))  # device-major; within a (device, slot) the schedule's order (stable)
        dev, pts, sl = dev[o], pts[o], sl[o]
        M = len(pts)
        pair = dev * len(slots) + sl
        first = np.flatnonzero(np.r_[True, pair[1:] != pair[:-1]])  # each (device, slot)'s first point
        if job.batch is None:
            step_start = first
        else:  # consecutive mini-batches of b points within each (device, slot)
            rank = np.arange(M) - np.repeat(first, np.diff(np.r_[first, M]))
            step_start = np.flatnonzero(rank % job.batch == 0)
        step_dev = dev[step_start]
        devices = np.unique(step_dev)
        dev_start = np.searchsorted(step_dev, devices)
        cuts = list(range(0, len(devices), job.block)) + [len(devices)]
        tasks = []
        for c0, c1 in zip(cuts[:-1], cuts[1:]):
            s_lo, s_hi = dev_start[c0], (dev_start[c1] if c1 < len(devices) else len(step_start))
            p_lo, p_hi = step_start[s_lo], (step_start[s_hi] if s_hi < len(step_start) else M)
            tasks.append((np.r_[dev_start[c0:c1], s_hi] - s_lo, np.r_[step_start[s_lo:s_hi], p_hi] - p_lo,
                          pts[p_lo:p_hi], self.w[devices[c0:c1]]))
        self.glob_k = mlp_kernel_layout(self.kernel, self.glob)
        total = np.zeros(self.kernel.layout.size)
        losses = []
        calls = (self.calls(tasks, job.X, job.Y, job.lr) if remote is None
                 else remote.calls(self.glob_k, job.lr, tasks))
        for out_sum, loss in calls:  # partial sums added in call order, wherever the calls ran
            total += out_sum
            losses.append(loss)
        total += self.glob_k.numpy()  # Σ w_i = 1: w + Σ w_i (w_i - w) = Σ w_i w_i
        self.glob = mlp_kernel_layout(self.kernel, torch.from_numpy(total.astype(np.float32)), inverse=True)
        per_point = np.concatenate(losses)
        counts = np.diff(np.r_[first, M])
        job.device_loss[slots[0] + sl[first], dev[first]] = np.add.reduceat(per_point, first) / counts

    def calls(self, tasks: list[tuple], X: torch.Tensor, Y: torch.Tensor, lr: float):
        """The compiled calls ``tasks`` (``(dev_ptr, step_ptr, pts, w)``) on the worker threads from
        ``glob_k``, :attr:`block` devices each, a wave of them in flight at a time (their partial
        sums); yields each call's ``(partial sum, per-point losses)`` in call order."""
        wave = 4 * self.workers.k
        for i in range(0, len(tasks), wave):
            yield from self.workers.map(lambda dp, sp, pts, w: self._call(dp, sp, pts, w, X, Y, lr),
                                        tasks[i:i + wave])

    def global_state(self):
        return self.kernel.layout.unflatten(self.glob)


class _UnionRunner(_Runner):
    """``τ = 1`` fast path (exact identity; only used when ``period == 1``).

    With ``τ = 1`` every device starts every slot from the global model ``w``, takes one step
    ``w_i = w - η ∇L_i(w | G_i)`` and eq. (4) averages them with weights ``H_i / Σ H = |G_i| / N``:

        ``Σ_i |G_i|/N · (w - η ∇L_i) = w - η ∇ (1/N) Σ_i Σ_{x ∈ G_i} l(w, x)``,

    i.e. **one SGD step on the union of the slot's batches** (mean loss over all ``N`` points, each
    weighted by its class's ``ω`` when the run has class weights;
    devices with ``G_i = 0`` have weight 0 and contribute no points). So the slot is one
    shared-weight forward/backward over the union, in :data:`CHUNK`-sample pieces that run on the
    worker threads and whose gradients are summed in order; per-device losses come from the
    per-sample losses. Equal to the general path up to float round-off
    (tests/test_learning_kernels.py checks 1e-6). There is no per-device state: a period (one
    slot) is one block of all devices, the step itself applies eq. (4).
    """

    per_device = False

    def run_period(self, job, slots, remote=None):
        """The period's one step on the union, here: there is no per-device work to send anywhere."""
        super().run_period(job, slots)

    def __init__(self, kernel: BatchedModel, module: nn.Module, workers: _Workers) -> None:
        self.kernel = kernel
        self.layout = kernel.layout
        self.workers = workers
        self.glob = self.layout.flatten(dict(module.named_parameters()))

    def _call(self, X: torch.Tensor, Y: torch.Tensor, idx: torch.Tensor, N: int) -> tuple[torch.Tensor, np.ndarray]:
        wt = torch.full(idx.shape, 1.0 / N)
        if self.class_weight is None:
            loss, grad = self.kernel.loss_and_grad(self.glob.unsqueeze(0), X, Y[idx], wt, index=idx)
            return grad[0], loss[0].numpy()
        omega = torch.from_numpy(self.class_weight)[Y[idx]]
        loss, grad = self.kernel.loss_and_grad(self.glob.unsqueeze(0), X, Y[idx], wt * omega, index=idx)
        return grad[0], (loss[0] * omega[0]).numpy()

    def step(self, X, Y, pts, dev, active, sizes, starts, lr):
        N = len(pts)
        # equal pieces of at most CHUNK samples (balanced across workers; they depend on N only)
        k = -(-N // CHUNK)
        cuts = (np.arange(k + 1) * N) // k
        tasks = [(X, Y, torch.from_numpy(pts[a:b]).unsqueeze(0), N) for a, b in zip(cuts[:-1], cuts[1:])]
        out = self.workers.map(self._call, tasks)
        grad = out[0][0]
        for g, _ in out[1:]:
            grad = grad + g
        per_sample = np.concatenate([loss for _, loss in out]).astype(np.float64)
        self.glob = self.glob - lr * grad
        return np.bincount(dev, weights=per_sample, minlength=len(sizes))[active] / sizes[active]

    def global_state(self):
        return self.layout.unflatten(self.glob)


class _VmapRunner(_Runner):
    """Any module (and every model on CUDA): a block's devices hold stacked copies of the parameters
    ``[block, ...]``, evaluated with :func:`torch.func.functional_call` under
    :func:`torch.func.vmap`; devices are grouped by batch size, one backward pass gives every
    device's gradient.

    Buffers (batch-norm running statistics) are per device too: each device's forward in training
    mode updates its own copy, and eq. (4) averages them with the parameters' weights ``H_i / Σ H``
    (integer buffers, e.g. ``num_batches_tracked``: the weighted average rounded to the nearest
    integer). Ragged batches are padded and masked, except when samples of a batch interact
    (batch-norm layers, or any buffers): then every group holds devices of one batch size, so
    each device's batch statistics are those of its own points.

    Random layers (dropout) draw each device's own masks (``vmap(randomness="different")``) from the
    run's own CPU generator, seeded by ``train``'s ``seed`` and kept apart from torch's global one:
    a run is reproducible and leaves the global generator alone (the masks depend on how devices
    are grouped into blocks, so ``in_flight`` changes them).
    """

    #: Per-device bytes in flight, in units of the model's state: the block's copies, the gathered
    #: copies of a group and the gradients.
    COPIES = 4

    def __init__(self, module: nn.Module, n: int, device: torch.device, seed: int = 0) -> None:
        self.n = n
        self.rng_state = torch.Generator().manual_seed(seed).get_state()
        self.module = module.to(device)
        self.device = device
        self.global_ = {k: p.detach().clone() for k, p in module.named_parameters()}
        self.buffers = {k: b.detach().clone() for k, b in module.named_buffers()}
        self.pad = not self.buffers and not any(isinstance(m, _BATCH_NORM) for m in module.modules())
        self.params: dict[str, torch.Tensor] = {}
        self.bufs: dict[str, torch.Tensor] = {}
        self.sum: dict[str, torch.Tensor] | None = None
        self.fwd = vmap(self.forward_one, randomness="different")  # dropout: each device its own masks

    def forward_one(self, params: dict[str, torch.Tensor], buffers: dict[str, torch.Tensor],
                    x: torch.Tensor) -> torch.Tensor:
        return functional_call(self.module, {**params, **buffers}, (x,))

    def block_size(self):
        per = sum(v.numel() * v.element_size() for v in (*self.global_.values(), *self.buffers.values()))
        return int(min(self.n, max(1, STATE_BUDGET // (self.COPIES * max(per, 1)))))

    def open_period(self, w):
        self.w = w
        self.sum = None if w is None else {k: torch.zeros(v.shape, dtype=torch.float64, device=self.device)
                                           for k, v in (*self.global_.items(), *self.buffers.items())}

    def begin(self, count):
        with torch.no_grad():
            self.params = {k: v.unsqueeze(0).repeat(count, *[1] * v.dim()).requires_grad_(True)
                           for k, v in self.global_.items()}
            self.bufs = {k: v.unsqueeze(0).repeat(count, *[1] * v.dim()) for k, v in self.buffers.items()}

    def step(self, X, Y, pts, dev, active, sizes, starts, lr):
        total_loss = None
        loss_parts = []
        order = []
        self.module.train()
        for devs, width in _size_groups(active, sizes[active], GROUP_OVERHEAD if self.pad else 0.0):
            devs = np.sort(devs)
            g = len(devs)
            idx_np, valid = _padded(pts, starts, sizes, devs, width)
            idx = torch.from_numpy(idx_np).to(self.device)
            mask = torch.from_numpy(valid.astype(np.float32)).to(self.device)
            didx = torch.from_numpy(devs).to(self.device)
            if g == len(sizes):  # every device, in order: no gather (and no scatter in backward)
                params, bufs = self.params, self.bufs
            else:
                params = {k: v.index_select(0, didx) for k, v in self.params.items()}
                bufs = {k: v.index_select(0, didx) for k, v in self.bufs.items()}
            try:
                with torch.random.fork_rng(devices=[]):
                    torch.set_rng_state(self.rng_state)
                    out = self.fwd(params, bufs, X[idx])  # [g, width, classes]; updates bufs in training mode
                    self.rng_state = torch.get_rng_state()
            except ValueError as exc:
                if "more than 1 value per channel" not in str(exc):
                    raise
                raise TrainingError(
                    "model: a batch-norm layer saw one value per channel: a device takes an SGD step on a single "
                    "point here, and batch norm cannot normalise one value (PyTorch refuses). Give such layers "
                    "spatial positions to normalise over (BatchNorm2d after a convolution), use GroupNorm or "
                    "LayerNorm, or a model without batch norm") from exc
            if bufs is not self.bufs:
                for k, v in bufs.items():
                    self.bufs[k].index_copy_(0, didx, v)
            ce = F.cross_entropy(out.reshape(g * width, -1), Y[idx].reshape(-1), reduction="none").view(g, width)
            if self.class_weight is not None:
                ce = ce * torch.from_numpy(self.class_weight).to(self.device)[Y[idx]]
            summed = (ce * mask).sum(1)
            den = torch.from_numpy(np.maximum(sizes[devs], self.den).astype(np.float32)).to(self.device)
            s = (summed / den).sum()
            total_loss = s if total_loss is None else total_loss + s
            loss_parts.append(summed.detach() / torch.from_numpy(sizes[devs].astype(np.float32)).to(self.device))
            order.append(devs)
        assert total_loss is not None
        grads = torch.autograd.grad(total_loss, list(self.params.values()))
        with torch.no_grad():
            for p, g in zip(self.params.values(), grads):
                p.sub_(g, alpha=lr)
        losses = np.empty(len(sizes))
        for devs, part in zip(order, loss_parts):
            losses[devs] = part.cpu().numpy()
        return losses[active]

    def end(self, c0, c1):
        """Add ``Σ w_i w_i`` (and the buffers' ``Σ w_i b_i``) of devices ``c0 … c1 - 1`` to the sum."""
        if self.w is None or self.sum is None:
            return
        nz = np.nonzero(self.w[c0:c1])[0]
        if not len(nz):
            return
        rows = torch.from_numpy(nz).to(self.device)
        wt = torch.from_numpy(self.w[c0:c1][nz].astype(np.float64)).to(self.device)
        with torch.no_grad():
            for k, v in (*self.params.items(), *self.bufs.items()):
                x = v.index_select(0, rows)
                part = torch.tensordot(wt.to(x.dtype), x, dims=([0], [0])) if x.is_floating_point() \
                    else torch.tensordot(wt, x.double(), dims=([0], [0]))
                self.sum[k] += part.double()

    def share(self):
        return self.global_, self.buffers

    def load(self, state):
        self.global_, self.buffers = state

    def part(self):
        return self.sum

    def add(self, part):
        if self.sum is not None:
            for k, v in part.items():
                self.sum[k] += v

    def close_period(self):
        """Eq. (4) for parameters and buffers alike (integer buffers rounded)."""
        self.params, self.bufs = {}, {}
        if self.sum is None:
            return
        for k, v in self.sum.items():
            ref = self.global_[k] if k in self.global_ else self.buffers[k]
            val = v.to(ref.dtype) if ref.is_floating_point() else v.round().to(ref.dtype)
            (self.global_ if k in self.global_ else self.buffers)[k] = val
        self.sum = None

    def global_state(self):
        return {**self.global_, **self.buffers}


def _minibatch_step(runner: _Runner, X: torch.Tensor, Y: torch.Tensor, pts: np.ndarray,
                    dev: np.ndarray, sizes: np.ndarray, starts: np.ndarray, active: np.ndarray,
                    lr: float, b: int) -> np.ndarray:
    """``⌈|G_i|/b⌉`` SGD steps per device on its consecutive mini-batches of ``b`` points (the
    slot's points are grouped by device, ``starts``/``sizes``), as rounds of the runner's one-step
    call; returns each active device's mean loss over its points (each point's loss before the
    step that uses it)."""
    chunk = (np.arange(len(pts)) - starts[dev]) // b
    loss_sum = np.zeros(len(sizes))
    for r in range(int(chunk.max()) + 1):
        sel = chunk == r
        d = dev[sel]
        sz = np.bincount(d, minlength=len(sizes))
        act = np.nonzero(sz)[0]
        loss_sum[act] += runner.step(X, Y, pts[sel], d, act, sz, np.cumsum(sz) - sz, lr) * sz[act]
    return loss_sum[active] / sizes[active]


def _evaluate(module: nn.Module, params: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor,
              kernel: BatchedModel | None = None, workers: _Workers | None = None) -> tuple[float, float]:
    """Test accuracy and mean cross-entropy of the global model (``params``: its parameters and
    buffers), the module in eval mode (batch-norm uses the running statistics); batched kernel
    forward if given, its :data:`EVAL_BATCH`-sample batches on the worker threads."""
    flat = kernel.layout.flatten(params).unsqueeze(0) if kernel is not None else None
    was_training = module.training
    module.eval()

    def part(a: int) -> tuple[float, int]:
        xb, yb = x[a:a + EVAL_BATCH], y[a:a + EVAL_BATCH]
        with torch.no_grad():
            if kernel is not None and flat is not None:
                out = kernel.forward(flat, xb.unsqueeze(0))[0]
            else:
                out = functional_call(module, params, (xb,))
            return float(F.cross_entropy(out, yb, reduction="sum")), int((out.argmax(1) == yb).sum())

    tasks = [(a,) for a in range(0, len(x), EVAL_BATCH)]
    try:
        parts = workers.map(part, tasks) if workers is not None else [part(*t) for t in tasks]
    finally:
        module.train(was_training)
    return sum(c for _, c in parts) / len(x), sum(v for v, _ in parts) / len(x)


# ---------------------------------------------------------------------------------------------
# Public entry point
# ---------------------------------------------------------------------------------------------

def _check_args(period: int, lr: float, passes: int, eval_every: int, in_flight: int | None = None) -> None:
    """Raise :class:`TrainingError` naming the first bad argument."""
    if not isinstance(period, (int, np.integer)) or period < 1:
        raise TrainingError(f"period = {period!r}: the aggregation period τ must be an integer ≥ 1")
    if not (isinstance(lr, (int, float)) and np.isfinite(lr) and lr > 0):
        raise TrainingError(f"lr = {lr!r}: the learning rate η must be a finite number > 0")
    if not isinstance(passes, (int, np.integer)) or passes < 1:
        raise TrainingError(f"passes = {passes!r}: must be an integer ≥ 1")
    if not isinstance(eval_every, (int, np.integer)) or eval_every < 0:
        raise TrainingError(f"eval_every = {eval_every!r}: must be an integer ≥ 0 (0: final model only)")
    if in_flight is not None and (isinstance(in_flight, bool) or not isinstance(in_flight, (int, np.integer))
                                  or in_flight < 1):
        raise TrainingError(f"in_flight = {in_flight!r}: must be an integer ≥ 1 (devices whose models are held "
                            "at once) or None")


def check_trainable(scenario: Scenario, passes: int) -> None:
    """Raise :class:`TrainingError` when ``scenario`` collects more points than a run can execute
    (:data:`MAX_POINTS_PER_PASS` a pass, :data:`MAX_POINTS` over ``passes``); ``foglearn run`` calls it
    before planning, so nothing computed is lost."""
    per_pass = int(scenario.total_collected)
    if per_pass > MAX_POINTS_PER_PASS:
        raise TrainingError(f"scenario: collected Σ D_i(t) = {per_pass:,} points a pass: training executes every "
                            f"point, at most {MAX_POINTS_PER_PASS:,} a pass (about 100 bytes each while scheduling); "
                            "scale the arrivals down, or plan without training")
    if per_pass * int(passes) > MAX_POINTS:
        raise TrainingError(f"passes = {passes}: {per_pass:,} points a pass × {passes} = {per_pass * int(passes):,} "
                            f"points, more than the {MAX_POINTS:,} a run may execute; use fewer passes")


def _resolve_device(device: str | torch.device | None) -> torch.device:
    """``None``: CUDA where available, else the CPU; ``"cpu"``, ``"cuda"``, ``"cuda:K"`` or a
    :class:`torch.device` of those types."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        on = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise TrainingError(f"device = {device!r}: must be 'cpu', 'cuda', 'cuda:K' or a torch.device") from None
    if on.type not in ("cpu", "cuda"):
        raise TrainingError(f"device = {device!r}: must be 'cpu', 'cuda', 'cuda:K' or a torch.device")
    if on.type == "cuda" and not torch.cuda.is_available():
        raise TrainingError(f"device = {device!r}: CUDA is not available here (torch.cuda.is_available() is False)")
    return on


def _make_runner(module: nn.Module, kernel: BatchedModel | None, n: int, on: torch.device, seed: int,
                 workers: _Workers, period: int, update: LocalUpdate,
                 class_weight: np.ndarray | None = None) -> _Runner:
    """The runner of a run (see :func:`train`): the same choice in the driver and in remote workers."""
    runner: _Runner
    if kernel is None:
        runner = _VmapRunner(module, n, on, seed)
    elif period == 1 and update.batch is None:
        runner = _UnionRunner(kernel, module, workers)
        runner.class_weight = class_weight
        return runner  # a step on the union: no per-device denominator
    elif isinstance(kernel, BatchedMLP):
        runner = _DeviceMajorMLP(kernel, module, workers, n)
    else:
        runner = _KernelRunner(kernel, module, n, workers)
    runner.den = update.min_den
    runner.class_weight = class_weight
    return runner


def _kernel_path(kernel: BatchedModel | None) -> str:
    """The compute path of a run (``config["kernel"]``): ``"cnn-fused"`` (one compiled call per
    batch), ``"cnn-layered"`` (``FOGLEARN_FUSED=0`` or no ``sgemm_``), ``"mlp"`` or ``"vmap"``."""
    fused = getattr(kernel, "fused", None)
    if kernel is None:
        return "vmap"
    return "mlp" if fused is None else "cnn-fused" if fused else "cnn-layered"


def train(scenario: Scenario, plan: Plan, dataset: DataSpec = "mnist", model: ModelSpec = "cnn",
          period: int = 10, lr: float = 0.01, seed: int = 0, *, passes: int = 1, eval_every: int = 1,
          threads: int | None = None, name: str = "network-aware",
          local_update: str | LocalUpdate = "paper", partition: str | Partition = "iid",
          progress: ProgressFn | None = None, device: str | torch.device | None = None,
          in_flight: int | None = None, executor: str = "local",
          class_weights: str | Sequence[float] | np.ndarray | None = None) -> TrainResult:
    """Train one model by executing ``plan`` on ``scenario`` at datapoint level (eqs. 3–4).

    Parameters
    ----------
    scenario, plan
        The fog network (``D_i(t)``, links) and a feasible plan for it (``s_ii``, ``s_ij``, ``r_i``).
    dataset
        ``"mnist"``, ``"fashion-mnist"``, ``"tiny"`` (tests only), a path, an :class:`ArrayDataset`,
        or ``(train, test)`` data in memory, each split a map-style ``torch.utils.data.Dataset``
        with ``(x, y)`` items or an ``(x, y)`` pair of numpy arrays / torch tensors
        (:func:`~foglearn.learning.datasets.make_dataset`, converted once). Images: uint8 ``0..255``
        or floats in ``[0, 1]``, shaped ``[N, 1, 28, 28]``, ``[N, 28, 28]`` or ``[N, 784]``;
        labels: integers ``[N]`` in ``0..9``. The model always receives ``[B, 1, 28, 28]`` float32.
    model
        A name in :data:`~foglearn.learning.models.MODELS` (``"cnn"``, ``"mlp"``, …), a
        zero-argument factory returning a ``torch.nn.Module`` (built with ``seed``), or a
        ``torch.nn.Module`` instance (deep-copied: its weights are ``w(0)``, the instance is
        never changed). It maps ``[B, 1, 28, 28]`` to logits ``[B, n_classes]``; any
        architecture that :func:`torch.func.vmap` can batch
        (:func:`~foglearn.learning.models.make_model`).
        Modules with buffers (batch-norm) are supported: every device keeps its own buffers,
        and eq. (4) averages them with the parameters' weights ``H_i / Σ H`` (integer buffers
        rounded); the test set is evaluated in eval mode.
    period
        ``τ``: aggregate every ``period`` slots (eq. 4).
    lr
        ``η`` of eq. (3), constant.
    seed
        Seeds the initial model ``w(0)`` and the permutation the points are drawn from.
    passes
        Replay the horizon this many times with fresh points (training budget; 1 = the paper).
    eval_every
        Evaluate the global model on the test set at every ``eval_every``-th aggregation
        (1 = every aggregation; 0 = only the final model). The final model is always evaluated.
    local_update
        ``"paper"`` (eq. 3: one step per device and slot) or ``"minibatch:B"``
        (``⌈|G_i(t)|/B⌉`` steps on mini-batches of ``B`` points), or a :class:`LocalUpdate`.
    partition
        Each device's label distribution: ``"iid"`` (the paper), ``"dirichlet:ALPHA"``,
        ``"classes:K"`` or a :class:`~foglearn.learning.partition.Partition` (its ``seed``
        defaults to ``seed``). The drawn mixes and per-device label histograms are in
        ``config["partition"]``.
    class_weights
        ``ω_c``, a weight on the loss of every point of class ``c`` in every local step (eq. 3 with
        ``Σ ω_{y(x)} l(w, x) / |batch|``): ``None`` or ``"none"`` (all 1, the paper), ``"sqrt"`` (``ω_c ∝
        1/√N_c`` over the points the devices collect, mean 1 over them: rare classes count more;
        :func:`class_weight_vector`) or one number per class. The per-device losses reported are the
        weighted ones; the test loss is not weighted. ``config["class_weights"]``: the weights used.
    threads
        Cores to use (``None``: ``torch.get_num_threads()``). The paper's models run their kernel
        calls on this many threads, each op single-threaded; other modules use this many torch
        threads. torch's setting is restored afterwards. Results do not depend on it.
    progress
        Called as ``progress(slots_done, slots_total)`` for each slot, as each aggregation
        period completes (a period runs device-major).
    device
        ``"cpu"``, ``"cuda"``, ``"cuda:K"`` or a :class:`torch.device`; ``None``: CUDA where
        available, else the CPU. On CUDA every model takes the torch path (same results to
        float round-off).
    in_flight
        Devices per block of a device-major period (``None``: as many as :data:`STATE_BUDGET`
        holds; for the MLP ``n / 8`` per compiled call, at least 32 and at most 256). Memory grows
        with it, not with ``n``; the result does not depend on it beyond float round-off of the
        sum.
    executor
        Where a period's blocks run: ``"local"`` (here, on ``threads`` threads), ``"ray"`` (a Ray
        cluster started here, ``threads`` CPUs) or ``"ray:ADDRESS"`` (an existing cluster): each
        block is a Ray task that returns its share of eq. (4), and the shares are added here in
        block order, so the result is the local run's (:mod:`foglearn.learning.executors`).

    Returns
    -------
    TrainResult
        Final accuracy, test curve per aggregation, per-device loss per slot, rounded ``G_i(t)``,
        the plan's realised costs and the configuration.
    """
    _check_args(period, lr, passes, eval_every, in_flight)
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or not 0 <= seed < 2**63:
        raise TrainingError(f"seed = {seed!r}: must be an integer from 0 to 2^63 − 1 (it seeds torch and numpy)")
    check_trainable(scenario, passes)
    from foglearn.learning.executors import WorkerSpec, open_executor, parse_executor

    where = parse_executor(executor)
    update = LocalUpdate.parse(local_update)
    if where.kind == "ray" and device is None:
        device = "cpu"  # Ray's workers run the CPU kernels
    on = _resolve_device(device)
    if where.kind == "ray" and on.type != "cpu":
        raise TrainingError(f"device = {device!r} with executor = {executor!r}: the Ray workers run on their "
                            "CPUs; pass device='cpu'")
    try:
        part = Partition.parse(partition)
    except PartitionError as exc:
        raise TrainingError(str(exc)) from exc
    if isinstance(class_weights, str):  # a name: checked before the data set is loaded
        try:
            class_weight_vector(class_weights, np.zeros(0))
        except InputError as exc:
            raise TrainingError(str(exc)) from exc
    data = load_dataset(dataset)
    T, n = scenario.horizon, scenario.n_devices
    old_threads = torch.get_num_threads()
    if threads is not None and (not isinstance(threads, (int, np.integer)) or threads < 1):
        raise TrainingError(f"threads = {threads!r}: must be an integer ≥ 1")
    cores = int(threads or old_threads)
    module = make_model(model, seed=seed, n_classes=data.n_classes)
    kernel = batched_kernel(module)  # the CNN's fused path where fused_cnn.enabled()
    if on.type != "cpu":  # the batched kernels are CPU code: elsewhere every model takes the torch path
        kernel = None
    workers = _Workers(cores if kernel is not None else 1)
    torch.set_num_threads(1 if kernel is not None else cores)
    stack = ExitStack()  # the executor's workers, if any, end with the run
    try:
        t0 = time.perf_counter()
        sched = _schedule(scenario, plan, tables=False)  # the routing and G_i(t) only
        per_pass = int(scenario.collected.sum())
        drawn = device_stream(part, scenario.collected, data.y_train, passes, seed)
        stream = drawn.stream
        wrapped = _warn_wrap(per_pass, data.n_train)
        if drawn.wrapped and not wrapped:
            warnings.warn(f"partition {part.spec}: the devices collect more points of some label "
                          "in one pass than the training set holds, so that label's points repeat "
                          "within a pass", stacklevel=2)
            wrapped = True
        X = torch.from_numpy(data.x_train).to(on)
        Y = torch.from_numpy(data.y_train).to(on)
        Xt, Yt = torch.from_numpy(data.x_test).to(on), torch.from_numpy(data.y_test).to(on)
        try:
            weights = class_weight_vector(class_weights, drawn.histograms.sum(0), data.n_classes)
        except InputError as exc:
            raise TrainingError(str(exc)) from exc
        runner = _make_runner(module, kernel, n, on, seed, workers, period, update, weights)
        total = T * passes
        device_loss = np.full((total, n), np.nan, dtype=np.float64)
        ev_slot: list[int] = []
        ev_acc: list[float] = []
        ev_loss: list[float] = []
        n_agg = 0
        block = n if not runner.per_device else min(n, runner.block_size() if in_flight is None else int(in_flight))
        job = _Period(X, Y, sched, stream, per_pass, T, n, block, update.batch, lr, device_loss)
        remote = stack.enter_context(open_executor(where, cores, WorkerSpec(
            model=model, seed=seed, n_classes=data.n_classes, period=period, batch=update.batch, lr=lr,
            x=data.x_train, y=data.y_train, sched=sched, stream=stream, per_pass=per_pass, T=T, n=n, block=block,
            total=total, scaled=update.scaled, class_weight=weights), units=len(job.edges) - 1)
        ) if where.kind == "ray" and runner.per_device else None
        for s0 in range(0, total, period):
            slots = range(s0, min(s0 + period, total))
            runner.open_period(aggregation_weights(sched.processed[[s % T for s in slots]].sum(0).astype(np.float64)))
            runner.run_period(job, slots, remote)
            runner.close_period()
            n_agg += 1
            if slots[-1] + 1 == total or (eval_every and n_agg % eval_every == 0):
                acc, loss = _evaluate(module, runner.global_state(), Xt, Yt, kernel, workers)
                ev_slot.append(slots[-1] + 1)
                ev_acc.append(acc)
                ev_loss.append(loss)
            if progress is not None:
                for s in slots:
                    progress(s + 1, total)
        seconds = time.perf_counter() - t0
    finally:
        stack.close()
        workers.close()
        torch.set_num_threads(old_threads)
    config = {"dataset": data.name, "model": model_name(model), "period": int(period), "lr": float(lr),
              "seed": int(seed), "passes": int(passes), "eval_every": int(eval_every),
              "threads": cores, "n_devices": n, "horizon": T, "kernel": _kernel_path(kernel),
              "local_update": update.spec, "executor": where.spec,
              "class_weights": None if weights is None else {
                  "spec": class_weights.strip().lower() if isinstance(class_weights, str) else "explicit",
                  "weights": [round(float(v), 6) for v in weights]},
              "partition": {**part.as_dict(), "proportions": drawn.proportions.round(6).tolist(),
                            "label_histograms": drawn.histograms.tolist()},
              "plan": {"error": plan.error, "information": plan.information, "solver": plan.stats.solver}}
    return TrainResult(name=name, accuracy=ev_acc[-1], test_loss=ev_loss[-1], eval_slot=np.array(ev_slot),
                       eval_accuracy=np.array(ev_acc), eval_loss=np.array(ev_loss), device_loss=device_loss,
                       processed=sched.processed, costs=plan.costs.as_dict(), config=config, seconds=seconds,
                       wrapped=wrapped,
                       final_state={k: v.detach().cpu().clone() for k, v in runner.global_state().items()})

