"""Which labels each device collects: i.i.d., Dirichlet label skew, or ``k`` classes per device.

In the paper every device draws from the same i.i.d. stream. Real fog devices do not (a camera
sees its street, a phone its owner), so a :class:`Partition` gives device ``i`` its own label
distribution ``q_i`` over the ``C`` classes; *how many* points it collects in slot ``t`` stays
``D_i(t)`` (quantity skew, docs/model.md §4).

* ``"iid"``: every device draws from the training set's own mix (the paper; the trainer's
  seeded permutation, :func:`foglearn.learning.trainer.point_stream`, unchanged).
* ``"dirichlet"`` with ``alpha``: ``q_i ~ Dirichlet(α·1)``, independently per device (label skew;
  small ``α`` → few labels per device, ``α → ∞`` → i.i.d.). Named after flwr-datasets'
  ``DirichletPartitioner(num_partitions, partition_by, alpha, seed)``. That partitioner splits a
  fixed data set, drawing for each *class* its shares over the partitions, so partition sizes are
  random; here a device's amount of data is fixed by ``D_i(t)``, so the Dirichlet draw is the
  device's label mix (the convention of Hsu et al. 2019, which flwr-datasets' draw reduces to for
  equal class sizes up to normalisation).
* ``"classes"`` with ``k``: device ``i`` collects only ``k`` labels, in equal proportions. Named
  after flwr-datasets' ``PathologicalPartitioner(num_partitions, partition_by,
  num_classes_per_partition, class_assignment_mode, seed)``, with its three assignment modes:
  ``"random"`` (``k`` distinct random labels), ``"deterministic"`` (labels ``i, i+1, …, i+k-1``
  mod ``C``) and ``"first-deterministic"`` (label ``i mod C`` and ``k - 1`` random others).

Drawing the points (:func:`device_stream`). Device ``i`` collects ``N_i = Σ_t D_i(t)`` points per
pass of the horizon; its label counts are ``q_i N_i`` rounded by largest remainder
(:func:`foglearn.planning.rules.largest_remainder`), so each device's histogram sums to exactly
what it collected. The labels are shuffled over the device's collection slots (fresh order each
pass) and each label is served from that class's seeded permutation of the training set, without
replacement until the class runs out (then a fresh permutation: points repeat, ``wrapped``).
Everything is reproducible from the seed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from foglearn.errors import InputError
from foglearn.planning.rules import largest_remainder

KINDS = ("iid", "dirichlet", "classes")
#: flwr-datasets' ``PathologicalPartitioner`` ``class_assignment_mode`` values.
ASSIGNMENT_MODES = ("random", "deterministic", "first-deterministic")
#: Offset that separates the partition's random stream from the run's other seeded draws.
SEED_OFFSET = 0x5EED


class PartitionError(InputError):
    """A partition that cannot be built; the message names the field and the rule."""


@dataclass(frozen=True)
class Partition:
    """How the devices' label distributions differ (see the module docstring).

    ``kind``: ``"iid"`` | ``"dirichlet"`` | ``"classes"``; ``alpha``: the Dirichlet concentration
    (``"dirichlet"`` only, ``> 0``; ``math.inf`` is i.i.d.); ``num_classes_per_partition``: ``k``
    (``"classes"`` only); ``class_assignment_mode``: how ``"classes"`` picks the labels;
    ``seed``: seeds the label mixes and draws (``None``: the run's seed).
    """

    kind: str = "iid"
    alpha: float | None = None
    num_classes_per_partition: int | None = None
    class_assignment_mode: str = "random"
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise PartitionError(
                f"partition.kind = {self.kind!r}: must be one of {', '.join(KINDS)}"
            )
        if self.kind == "dirichlet":
            a = self.alpha
            if not isinstance(a, (int, float)) or isinstance(a, bool) or math.isnan(a) or a <= 0:
                raise PartitionError(
                    f"partition.alpha = {a!r}: the Dirichlet α must be a number > 0"
                )
        elif self.alpha is not None:
            raise PartitionError(
                f"partition.alpha = {self.alpha!r}: only the 'dirichlet' partition has an α"
            )
        if self.kind == "classes":
            k = self.num_classes_per_partition
            if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or k < 1:
                raise PartitionError(
                    f"partition.num_classes_per_partition = {k!r}: k must be an integer ≥ 1"
                )
        elif self.num_classes_per_partition is not None:
            raise PartitionError(
                f"partition.num_classes_per_partition = {self.num_classes_per_partition!r}: "
                "only the 'classes' partition has k"
            )
        if self.class_assignment_mode not in ASSIGNMENT_MODES:
            raise PartitionError(
                f"partition.class_assignment_mode = {self.class_assignment_mode!r}: must be one "
                f"of {', '.join(ASSIGNMENT_MODES)}"
            )

    @classmethod
    def parse(cls, spec: str | Partition) -> Partition:
        """``"iid"``, ``"dirichlet:ALPHA"`` (``ALPHA`` may be ``inf``) or ``"classes:K"``; a
        :class:`Partition` is returned as is."""
        if isinstance(spec, Partition):
            return spec
        if not isinstance(spec, str):
            raise PartitionError(
                f"partition = {spec!r}: must be a Partition or 'iid' | 'dirichlet:ALPHA' | "
                "'classes:K'"
            )
        kind, _, arg = spec.strip().partition(":")
        kind = kind.strip().lower()
        if kind == "iid" and not arg:
            return cls()
        try:
            if kind == "dirichlet" and arg:
                return cls("dirichlet", alpha=float(arg))
            if kind == "classes" and arg:
                return cls("classes", num_classes_per_partition=int(arg))
        except ValueError:
            pass
        raise PartitionError(
            f"partition = {spec!r}: must be 'iid', 'dirichlet:ALPHA' (α > 0) or 'classes:K' "
            "(integer K ≥ 1)"
        )

    @property
    def spec(self) -> str:
        """The short form :meth:`parse` reads (``"dirichlet:0.1"``)."""
        if self.kind == "dirichlet":
            alpha = float(self.alpha or 0)
            short = f"{alpha:g}"
            return f"dirichlet:{short if float(short) == alpha else repr(alpha)}"  # the α that runs is the α stored
        if self.kind == "classes":
            return f"classes:{self.num_classes_per_partition}"
        return "iid"

    @property
    def iid(self) -> bool:
        """Whether every device draws from the same stream (``"iid"`` or ``α = ∞``)."""
        return self.kind == "iid" or (
            self.kind == "dirichlet" and math.isinf(float(self.alpha or 0))
        )

    def as_dict(self) -> dict[str, Any]:
        """JSON/TOML-able record (a run's config): only the fields this kind uses."""
        d: dict[str, Any] = {"kind": self.kind, "spec": self.spec}
        if self.kind == "dirichlet":
            alpha = float(self.alpha or 0)
            d["alpha"] = "inf" if math.isinf(alpha) else alpha
        if self.kind == "classes":
            d["num_classes_per_partition"] = int(self.num_classes_per_partition or 0)
            d["class_assignment_mode"] = self.class_assignment_mode
        if self.seed is not None:
            d["seed"] = int(self.seed)
        return d

    def proportions(self, n_devices: int, n_classes: int, seed: int) -> np.ndarray:
        """``q [n, C]``: device ``i``'s label distribution (rows sum to 1; i.i.d.: uniform rows,
        which :func:`device_stream` never uses — it keeps the training set's own mix)."""
        rng = np.random.default_rng(
            [SEED_OFFSET, int(self.seed if self.seed is not None else seed)]
        )
        n, C = int(n_devices), int(n_classes)
        if self.iid:
            return np.full((n, C), 1.0 / C)
        if self.kind == "dirichlet":
            q = rng.dirichlet(np.full(C, float(self.alpha)), size=n)  # type: ignore[arg-type]
            bad = ~np.isfinite(q).all(1) | (q.sum(1) <= 0)
            if bad.any():  # all gamma draws underflowed (tiny α): the limit is one label
                q[bad] = np.eye(C)[rng.integers(0, C, int(bad.sum()))]
            return q / q.sum(1, keepdims=True)
        k = int(self.num_classes_per_partition or 0)
        if k > C:
            raise PartitionError(
                f"partition.num_classes_per_partition = {k}: more than the data set's {C} classes"
            )
        q = np.zeros((n, C))
        for i in range(n):
            if self.class_assignment_mode == "deterministic":
                labels = (i + np.arange(k)) % C
            elif self.class_assignment_mode == "first-deterministic":
                rest = np.delete(np.arange(C), i % C)
                labels = np.concatenate([[i % C], rng.choice(rest, k - 1, replace=False)])
            else:
                labels = rng.choice(C, k, replace=False)
            q[i, labels] = 1.0 / k
        return q


@dataclass(frozen=True)
class DeviceStream:
    """The points of a run, in collection order, and what each device collected.

    ``stream``: training-set index of each collected point, passes after each other, within a
    pass in ``(t, i)`` order (what :func:`foglearn.learning.trainer.schedule`'s ``pos`` indexes);
    ``histograms [n, C]``: labels each device collected over the whole run (row ``i`` sums to
    ``passes · Σ_t D_i(t)``); ``proportions [n, C]``: the ``q_i`` drawn (i.i.d.: the training
    set's label mix); ``wrapped``: whether points repeat within one pass.
    """

    stream: np.ndarray
    histograms: np.ndarray
    proportions: np.ndarray
    wrapped: bool


def collectors(collected: np.ndarray) -> np.ndarray:
    """The collecting device of each point of one pass, in ``(t, i)`` order (``collected[T, n]``)."""
    T, n = collected.shape
    return np.repeat(np.tile(np.arange(n), T), collected.astype(np.int64).ravel())


def device_stream(
    partition: str | Partition, collected: np.ndarray, labels: np.ndarray, passes: int, seed: int
) -> DeviceStream:
    """Draw every collected point of ``passes`` passes of the horizon (``collected = D [T, n]``)
    from its device's label distribution; ``labels`` are the training set's labels."""
    from foglearn.learning.trainer import point_stream

    part = Partition.parse(partition)
    labels = np.asarray(labels, dtype=np.int64)
    C = int(labels.max()) + 1 if labels.size else 0
    n = collected.shape[1]
    who = collectors(collected)
    per_pass = who.size
    class_size = np.bincount(labels, minlength=C)
    if part.iid:
        stream, _ = point_stream(per_pass * passes, labels.size, seed)
        wrapped = per_pass > labels.size
        q = np.tile(class_size / max(1, labels.size), (n, 1))
    else:
        present = np.nonzero(class_size)[0]
        q = np.zeros((n, C))
        q[:, present] = part.proportions(n, present.size, seed)
        N = np.bincount(who, minlength=n)
        counts = largest_remainder(
            (q * N[:, None]).ravel(), np.repeat(np.arange(n), C), N, np.tile(np.arange(C), n)
        ).reshape(n, C)
        rng = np.random.default_rng(
            [SEED_OFFSET, int(part.seed if part.seed is not None else seed), 1]
        )
        need = np.empty(per_pass * passes, dtype=np.int64)  # the label each point must have
        order = np.argsort(who, kind="stable")  # positions of device 0's points, then device 1's, …
        dev_labels = np.repeat(
            np.tile(np.arange(C), n), counts.ravel()
        )  # device-major, like `order`
        bounds = np.concatenate([[0], np.cumsum(N)])
        for p in range(passes):
            shuffled = dev_labels.copy()
            for i in range(n):
                rng.shuffle(shuffled[bounds[i] : bounds[i + 1]])
            need[p * per_pass + order] = shuffled
        stream = np.empty_like(need)
        demand = counts.sum(0)
        for c in np.nonzero(demand)[0]:
            pos = np.nonzero(need == c)[0]
            members = np.nonzero(labels == c)[0]
            k = -(-pos.size // members.size)
            stream[pos] = np.concatenate(
                [members[rng.permutation(members.size)] for _ in range(k)]
            )[: pos.size]
        wrapped = bool((demand > class_size).any())
    hist = np.bincount(np.tile(who, passes) * C + labels[stream], minlength=n * C).reshape(n, C)
    return DeviceStream(stream=stream, histograms=hist, proportions=q, wrapped=wrapped)


def class_arrivals(
    partition: str | Partition, collected: np.ndarray, labels: np.ndarray, seed: int
) -> np.ndarray:
    """``D_i^c(t)`` ``[T, n, C]``: the points of each class device ``i`` collects at ``t`` in the
    first pass of the horizon — the labels of :func:`device_stream`'s first pass, which the trainer
    draws for any number of passes (label-aware planning, :mod:`foglearn.planning.label_aware`)."""
    labels = np.asarray(labels, dtype=np.int64)
    T, n = collected.shape
    C = int(labels.max()) + 1 if labels.size else 0
    drawn = device_stream(partition, collected, labels, 1, seed)
    slot_dev = np.repeat(np.arange(T * n), collected.astype(np.int64).ravel())  # (t, i) order
    counts = np.bincount(slot_dev * C + labels[drawn.stream], minlength=T * n * C)
    return counts.reshape(T, n, C)


def plot_histograms(histograms: np.ndarray, path: str | Path, title: str = "") -> Path:
    """A stacked bar per device: the share of each label among the points it collected."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from foglearn.io import save_figure

    h = np.asarray(histograms, dtype=np.float64)
    n, C = h.shape
    share = h / np.maximum(h.sum(1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(max(4.0, min(16.0, 0.35 * n + 2)), 3.2))
    bottom = np.zeros(n)
    cmap = plt.get_cmap("tab10" if C <= 10 else "tab20")
    for c in range(C):
        ax.bar(
            np.arange(n),
            share[:, c],
            bottom=bottom,
            color=cmap(c % cmap.N),
            label=str(c),
            width=0.85,
        )
        bottom += share[:, c]
    ax.set_xlabel("device")
    ax.set_ylabel("share of collected points")
    ax.set_ylim(0, 1)
    ax.set_title(title or "labels collected per device")
    ax.legend(
        title="label",
        fontsize=7,
        ncol=1 if C <= 10 else 2,
        bbox_to_anchor=(1.01, 1),
        loc="upper left",
    )
    fig.tight_layout()
    return save_figure(fig, path)


#: ``class_weights`` by name: ``"none"`` (every point's loss counts alike, the paper) or ``"sqrt"``.
CLASS_WEIGHTS = ("none", "sqrt")
#: The class weights the ``label-aware`` setting trains with (``foglearn run``, ``foglearn reproduce noniid``):
#: it knows the labels the devices collect, in its plan and in its loss; the label-blind settings train
#: with the paper's loss (docs/noniid.md, "Class weights").
LABEL_AWARE_WEIGHTS = "sqrt"
#: The largest weight an explicit ``class_weights`` sequence may give a class relative to its smallest
#: positive one (a step on a point of that class is that many times longer).
MAX_CLASS_WEIGHT_RATIO = 1e4
#: The largest weight an explicit ``class_weights`` sequence may give a class (it multiplies η for that class).
MAX_CLASS_WEIGHT = 1e4


def class_weight_vector(spec: str | Sequence[float] | np.ndarray | None, counts: np.ndarray,
                        n_classes: int | None = None) -> np.ndarray | None:
    """The loss weight ``ω_c`` of each class (float32 ``[C]``), or ``None`` for equal weights.

    A device's loss in eq. (3) becomes ``Σ_{x ∈ batch} ω_{y(x)} l(w, x) / |batch|``. ``counts``: the
    points of each class the devices collect (the partition's label histograms summed); ``n_classes``:
    the model's classes ``C`` (default ``len(counts)``; classes beyond ``counts`` are collected 0 times).
    ``"sqrt"``: ``ω_c ∝ 1/√N_c`` for the classes collected (square-root inverse frequency), scaled so
    that ``Σ_c N_c ω_c = Σ_c N_c`` — the mean weight over the collected points is 1, so the step size
    ``η`` keeps its meaning; classes not collected get 1 (no point of them is trained on). Inverse
    frequency itself (``1/N_c``) gave a class collected as 0.06 % of the points a weight of about 155, and
    training collapsed at ``η = 0.1`` (docs/noniid.md, "Class weights"). A sequence (or array, or tensor)
    gives ``ω`` directly: ``C`` real numbers ≥ 0 that are finite in float32, at least one > 0, none above
    :data:`MAX_CLASS_WEIGHT` (a weight multiplies η for its class), the largest at most
    :data:`MAX_CLASS_WEIGHT_RATIO` times the smallest positive one.
    """
    n = np.asarray(counts, dtype=np.float64).ravel()
    C = n.size if n_classes is None else int(n_classes)
    n = np.pad(n[:C], (0, max(0, C - n.size)))
    if spec is None or (isinstance(spec, str) and spec.strip().lower() == "none"):
        return None
    rule = f"must be one of {CLASS_WEIGHTS} or {C} numbers ≥ 0 (one per class)"
    if isinstance(spec, str):
        if spec.strip().lower() != "sqrt":
            raise InputError(f"class_weights = {_short(spec)}: {rule}")
        seen = n > 0
        w = np.ones(C)
        if seen.any():
            w[seen] = 1.0 / np.sqrt(n[seen])
            w[seen] *= n[seen].sum() / float(n[seen] @ w[seen])
        return w.astype(np.float32)
    try:
        if hasattr(spec, "detach"):  # a torch tensor, on any device, with or without a gradient
            spec = spec.detach().cpu().numpy()
        raw = np.asarray(spec)
    except (TypeError, ValueError, OverflowError, RuntimeError):
        raise InputError(f"class_weights = {_short(spec)}: {rule}") from None
    if raw.dtype.kind not in "iuf" or raw.shape != (C,):  # not bools, strings, objects or complex numbers
        raise InputError(f"class_weights = {_short(spec)}: {rule}")
    with np.errstate(over="ignore", invalid="ignore"):
        w = raw.astype(np.float32)  # the weights the kernels use: checked as they will be used
    if not np.isfinite(w).all() or (w < 0).any() or not (w > 0).any():
        raise InputError(f"class_weights = {_short(spec)}: must be {C} finite numbers ≥ 0 (one per class; "
                         "finite and not all 0 in float32), at least one > 0")
    if w.max() > MAX_CLASS_WEIGHT:
        raise InputError(f"class_weights = {_short(spec)}: a weight may be at most {MAX_CLASS_WEIGHT:g} (it "
                         "multiplies the step size η for its class)")
    pos = w[w > 0]
    if pos.max() > MAX_CLASS_WEIGHT_RATIO * pos.min():
        raise InputError(f"class_weights = {_short(spec)}: the largest weight may be at most "
                         f"{MAX_CLASS_WEIGHT_RATIO:g} times the smallest positive one")
    return w


def _short(value: object) -> str:
    """A bad value for an error message, at most 80 characters."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
