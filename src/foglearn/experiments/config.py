"""Typed configurations of experiment runs and sweeps, their run keys and TOML round trips.

A :class:`RunConfig` fixes *everything* one run depends on (scenario, planner, trainer, seed), so
its :meth:`RunConfig.key` — a hash of its canonical JSON — names the file its result is stored in
and lets a sweep skip finished runs when restarted. :class:`ExperimentOptions` are the knobs of a
whole experiment (seeds, dataset, model, quick mode, jobs, output directory).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w

from foglearn.errors import InputError
from foglearn.learning.executors import parse_executor

#: Bump when the meaning of a stored result changes, so old results are not reused.
SCHEMA = 1
#: Fields added to :class:`RunConfig` after results were first stored, with their defaults. At
#: the default they are left out of :meth:`RunConfig.key`, so runs stored before the field existed
#: (which behaved as the default) are still found; any other value makes a new key.
LATER_FIELDS: dict[str, object] = {"persistence": 0.0, "churn": 0.0, "handover": False, "partition": "iid",
                                   "local_update": "paper", "solver": "auto", "class_weights": "none"}

METHODS: tuple[str, ...] = ("network-aware", "federated", "centralised")


def topologies() -> tuple[str, ...]:
    """The registered topologies (:data:`foglearn.network.topology.TOPOLOGIES`)."""
    from foglearn.network.topology import TOPOLOGIES

    return TOPOLOGIES.names()


def profiles() -> tuple[str, ...]:
    """The registered cost profiles (:data:`foglearn.network.generators.PROFILES`) and ``traces``."""
    from foglearn.network.generators import PROFILES

    return (*PROFILES.names(), "traces")


def models() -> tuple[str, ...]:
    """The registered models (:data:`foglearn.learning.models.MODELS`)."""
    from foglearn.learning.models import MODELS

    return MODELS.names()


def datasets() -> tuple[str, ...]:
    """The data sets an experiment can name (:data:`foglearn.learning.datasets.NAMES`)."""
    from foglearn.learning.datasets import NAMES

    return NAMES


def solvers() -> tuple[str, ...]:
    """``auto`` and the registered solvers (:data:`foglearn.planning.SOLVERS`)."""
    from foglearn.planning import SOLVERS

    return ("auto", *SOLVERS.names())


def _check_name(field: str, value: Any, known: tuple[str, ...], kind: str) -> None:
    if value not in known:
        raise ConfigError(f"{field} = {value!r}: unknown {kind}; known: {', '.join(known)}")


class ConfigError(InputError):
    """An experiment configuration breaks a rule; the message names the field and the rule."""


@dataclass(frozen=True)
class RunConfig:
    """One run: a scenario, a data-movement plan and (optionally) training on it.

    Attributes
    ----------
    method : {"network-aware", "federated", "centralised"}
        ``network-aware``: plan (5)-(9) then train with aggregation period ``period`` (τ, eq. 4).
        ``federated``: no movement (``G_i(t) = D_i(t)``) and τ = 1 (the paper's FedAvg baseline).
        ``centralised``: all collected data trained at one server (the paper's upper baseline).
    n_devices, horizon : int
        ``n`` and ``T``.
    topology, rho : str, float
        Edge structure ``E(t)``; ``rho`` is the link probability of the random digraph (Fig. 7).
    capacities : bool
        Impose ``C_i(t)``, ``C_ij(t)`` (docs/model.md §4).
    profile : {"synthetic", "lte", "wifi", "traces"}
        Cost distributions (docs/model.md §4, §5); ``traces`` replays ``traces_dir`` (docs/model.md §5).
    movement : bool
        ``False`` is setting A: every point is processed where it was collected.
    information : "perfect" or int
        Perfect knowledge of the horizon, or windows of this length planned from the previous
        window's averages (Sec. V-A).
    error : {"linear", "sqrt"}
        Error model of the planner (Sec. IV-A).
    error_decay_period : int or None
        ``f_i(t)`` divided by ``sqrt(slot within the period)`` (docs/model.md §4's schedule for Fig. 6).
    persistence : float
        Persistent per-device/per-link cost heterogeneity of :func:`foglearn.network.synthetic`
        (0 = docs/model.md §4's i.i.d. per-slot costs).
    churn : float
        Fraction of the ``n`` devices that leave mid-horizon, and as many others that join late
        (docs/dynamics.md): ``round(churn·n)`` of each, at slots drawn uniformly from ``1 … T−1``
        (:func:`foglearn.experiments.runner.churn_schedule`); 0 = every device present throughout.
    handover : bool
        Whether a leaving device hands the points of its leave slot to a neighbour (otherwise
        they are lost), :func:`foglearn.network.with_churn`.
    partition : str
        Which labels each device collects (:mod:`foglearn.learning.partition`): ``"iid"`` (the
        paper: one i.i.d. stream), ``"dirichlet:ALPHA"`` (device ``i``'s label mix ``q_i ~
        Dirichlet(α·1)``) or ``"classes:K"`` (``K`` labels per device); stored in the short form
        of :attr:`~foglearn.learning.partition.Partition.spec`. How many points a device collects
        stays ``D_i(t)``; the partition decides their labels ``D_i^c(t)``, which the trainer draws
        and a label-aware ``solver`` plans from. ``method = "centralised"`` pools the i.i.d.
        stream, so it takes ``"iid"`` only.
    local_update : str
        What a device does with its ``G_i(t)`` points in a slot
        (:class:`~foglearn.learning.trainer.LocalUpdate`): ``"paper"`` (eq. (3): one SGD step
        on all of them, the default of every paper experiment), ``"minibatch:B"``
        (``⌈|G_i(t)|/B⌉`` steps on mini-batches of ``B`` points, so the work grows with the data
        processed) or ``"scaled:B"`` (the same steps, a batch of ``k < B`` points stepping ``k/B``
        as far). ``method = "centralised"``: the server takes one step per slot on all
        ``Σ_i D_i(t)`` points, or ``⌈Σ_i D_i(t)/B⌉`` mini-batch steps
        (:func:`~foglearn.experiments.runner.server_scenario`).
    solver : str
        The planner of problem (5)-(9) (:data:`foglearn.planning.SOLVERS`): ``"auto"`` (greedy
        (Thm 3), the min-cost flow under capacities, the square-root solver for ``error =
        "sqrt"``) or a registered name. ``"label-aware"`` (the label-blind optimum's loads) and
        ``"label-aware-free"`` (free loads) plan from ``D_i^c(t)`` of ``partition``
        (:func:`foglearn.learning.partition.class_arrivals`); they need the linear error and
        perfect information. Unused when nothing moves (``movement = False`` or
        ``method != "network-aware"``).
    class_weights : str
        The loss's class weights (:func:`~foglearn.learning.partition.class_weight_vector`): ``"none"``
        (the paper's loss, the default) or ``"sqrt"`` (each point's loss weighted by ``1/√`` its class's
        share of the collected points, mean 1), as ``foglearn run`` trains its label-aware setting.
        ``method = "centralised"`` takes ``"none"`` only.
    train : bool
        Train a model on the plan (otherwise only the costs are computed).
    dataset, model, period, lr :
        Trainer settings: data set, ``"cnn"``/``"mlp"``, τ, η.
    passes : int
        Training budget: the horizon is replayed this many times with fresh points (the plan's
        fractions repeat; 1 = the paper's protocol). Costs are those of one pass.
    eval_every : int
        Evaluate the global model at every ``eval_every``-th aggregation (0 = final model only).
    seed : int
        The one seed every random draw of the run flows from.
    traces_dir, traces_digest : str or None
        Measured traces (``nodes.csv``/``links.csv``) and a digest of their content.
    """

    method: str = "network-aware"
    n_devices: int = 10
    horizon: int = 100
    topology: str = "full"
    rho: float = 0.3
    capacities: bool = False
    profile: str = "synthetic"
    movement: bool = True
    information: str | int = "perfect"
    error: str = "linear"
    error_decay_period: int | None = None
    persistence: float = 0.0
    churn: float = 0.0
    handover: bool = False
    partition: str = "iid"
    local_update: str = "paper"
    solver: str = "auto"
    class_weights: str = "none"
    train: bool = True
    dataset: str = "mnist"
    model: str = "cnn"
    period: int = 10
    lr: float = 0.01
    passes: int = 1
    eval_every: int = 1
    seed: int = 0
    traces_dir: str | None = None
    traces_digest: str | None = None

    def __post_init__(self) -> None:
        def bad(name: str, rule: str) -> ConfigError:
            return ConfigError(f"RunConfig.{name} = {getattr(self, name)!r}: {rule}")

        if self.method not in METHODS:
            raise bad("method", f"must be one of {METHODS}")
        for name in ("n_devices", "horizon", "period", "passes"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise bad(name, "must be an integer ≥ 1")
        _check_name("RunConfig.topology", self.topology, topologies(), "topology")
        if not 0.0 <= self.rho <= 1.0:
            raise bad("rho", "a link probability must lie in [0, 1]")
        _check_name("RunConfig.profile", self.profile, profiles(), "profile")
        if (self.profile == "traces") != (self.traces_dir is not None):
            raise bad("traces_dir", "must be given exactly when profile = 'traces'")
        if self.information != "perfect" and not (isinstance(self.information, int) and self.information >= 1):
            raise bad("information", "must be 'perfect' or a window length ≥ 1")
        if self.error not in ("linear", "sqrt"):
            raise bad("error", "must be 'linear' or 'sqrt'")
        if self.error_decay_period is not None and self.error_decay_period < 1:
            raise bad("error_decay_period", "must be ≥ 1 or None")
        if not 0.0 <= self.persistence <= 1.0:
            raise bad("persistence", "must lie in [0, 1]")
        if isinstance(self.churn, bool) or not isinstance(self.churn, int | float) or not 0.0 <= self.churn <= 0.5:
            raise bad("churn", "a fraction of devices must lie in [0, 0.5] (as many join as leave)")
        if self.churn > 0 and self.horizon < 2:
            raise bad("churn", "devices can leave or join only with a horizon of ≥ 2 slots")
        if not isinstance(self.handover, bool):
            raise bad("handover", "must be True or False")
        self._check_learning(bad)
        _check_name("RunConfig.model", self.model, models(), "model")
        if not self.lr > 0:
            raise bad("lr", "a learning rate must be > 0")
        if self.seed < 0:
            raise bad("seed", "must be ≥ 0")
        if self.eval_every < 0:
            raise bad("eval_every", "must be ≥ 0")

    def _check_learning(self, bad: Any) -> None:
        """``partition``, ``local_update`` and ``solver``: each parses, and they fit the run; the
        first two are stored in their short form (``"minibatch"`` → ``"minibatch:32"``), so that
        two spellings of one run have one key."""
        from foglearn.learning.partition import Partition

        def update_spec(spec: str) -> str:
            if spec == "paper":  # the default: no need to import the trainer (and torch)
                return spec
            from foglearn.learning.trainer import LocalUpdate

            return LocalUpdate.parse(spec).spec

        for name, parse in (("partition", lambda v: Partition.parse(v).spec), ("local_update", update_spec)):
            value = getattr(self, name)
            if not isinstance(value, str):
                raise bad(name, "must be a string")
            try:
                object.__setattr__(self, name, parse(value))
            except InputError:
                rule = ("must be 'iid', 'dirichlet:ALPHA' (α > 0) or 'classes:K' (integer K ≥ 1)"
                        if name == "partition"
                        else "must be 'paper' (eq. 3), 'minibatch:B' or 'scaled:B' (B an integer from 1 to 2^31 − 1)")
                raise bad(name, rule) from None
        if self.method == "centralised" and self.partition != "iid":
            raise bad("partition", "method 'centralised' trains on the pooled i.i.d. stream; it takes 'iid' only")
        from foglearn.learning.partition import CLASS_WEIGHTS

        if not isinstance(self.class_weights, str) or self.class_weights not in CLASS_WEIGHTS:
            raise bad("class_weights", f"must be one of {CLASS_WEIGHTS}")
        if self.method == "centralised" and self.class_weights != "none":
            raise bad("class_weights", "method 'centralised' trains on the pooled i.i.d. stream with the paper's loss; "
                      "it takes 'none' only")
        if not isinstance(self.solver, str):
            raise bad("solver", "must be a string")
        _check_name("RunConfig.solver", self.solver, solvers(), "solver")
        if self.solver != "auto":
            from foglearn.planning import SOLVERS

            params = SOLVERS[self.solver].params
            if self.error not in params["errors"]:
                raise bad("solver", f"solves the {' and '.join(params['errors'])} error model, not error = "
                          f"{self.error!r}")
            if self.capacities and not params["capacities"]:
                raise bad("solver", "ignores capacities, and capacities = True")
            if params.get("labels") and self.information != "perfect":
                raise bad("solver", "plans from the devices' labels with perfect information only "
                          f"(information = {self.information!r})")

    @property
    def labels_needed(self) -> bool:
        """Whether the planner reads ``D_i^c(t)`` (a label-aware ``solver`` on a run that moves data)."""
        if self.solver == "auto" or not (self.movement and self.method == "network-aware"):
            return False
        from foglearn.planning import SOLVERS

        return bool(SOLVERS[self.solver].params.get("labels"))

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def key(self) -> str:
        """A 16-hex-digit hash of the canonical JSON of this configuration (and :data:`SCHEMA`).

        Fields in :data:`LATER_FIELDS` are left out while they hold their default.
        """
        fields = {k: v for k, v in self.as_dict().items() if k not in LATER_FIELDS or v != LATER_FIELDS[k]}
        if self.solver != "auto":  # a solver whose formulation changed under the same name: never reuse older runs
            from foglearn.planning import SOLVERS

            if "formulation" in SOLVERS[self.solver].params:
                fields["formulation"] = SOLVERS[self.solver].params["formulation"]
        payload = json.dumps({"schema": SCHEMA, **fields}, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(payload.encode()).hexdigest()[:16]

    def replace(self, **changes: Any) -> RunConfig:
        return dataclasses.replace(self, **changes)

    def costs_only(self) -> RunConfig:
        """This run as one that does not train: the training fields (``passes``, ``eval_every``,
        ``local_update``, ``class_weights``) at their defaults, so that its key (and stored result)
        does not depend on a training budget it does not use."""
        return self.replace(train=False, passes=1, eval_every=1, local_update="paper", class_weights="none")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunConfig:
        """Inverse of :meth:`as_dict`; missing fields take their defaults, unknown fields are errors."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names - {"key"})
        if unknown:
            raise ConfigError(f"RunConfig: unknown field(s) {unknown}")
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclass(frozen=True)
class ExperimentOptions:
    """Knobs shared by every experiment.

    ``seeds`` is the list of seeds; ``quick`` shortens the horizon to ``quick_horizon`` and keeps
    the first ``quick_seeds`` seeds, for a first look; a window of estimated information shrinks
    with the horizon so that it keeps its meaning (:meth:`run_window`). ``n_devices`` is ``n``
    where an experiment does not sweep it; ``window`` is the length of the estimated-information
    windows (``None``: the aggregation period τ, as the paper). ``jobs`` is the number of worker processes
    (1 = run in this process); ``executor`` ``"ray"``/``"ray:ADDRESS"`` runs the runs as Ray tasks
    instead (:func:`~foglearn.experiments.runner.run_sweep`). ``train = False`` computes only the planned costs;
    ``train_seeds = k`` trains only the runs of the first ``k`` seeds (costs are computed for all
    seeds, accuracy is averaged over the trained ones). ``passes``, ``lr`` and ``eval_every`` go to
    the trainer (training budget, learning rate η, evaluation frequency); so does ``local_update``
    (:attr:`RunConfig.local_update`: ``"paper"``, eq. (3), keeps the paper's protocol; a run
    that does not train keeps ``"paper"`` so that its key does not depend on it).
    """

    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    dataset: str = "mnist"
    model: str = "cnn"
    quick: bool = False
    quick_seeds: int = 2
    quick_horizon: int = 20
    horizon: int = 100
    n_devices: int = 10
    window: int | None = None
    jobs: int = 2
    train: bool = True
    train_seeds: int | None = None
    passes: int = 1
    lr: float = 0.01
    eval_every: int = 1
    local_update: str = "paper"
    table2_models: tuple[str, ...] = ("mlp", "cnn")
    traces_dir: str | None = None
    out: str = "runs/reproduce"
    progress: bool = True
    executor: str = "local"

    def __post_init__(self) -> None:
        object.__setattr__(self, "seeds", tuple(int(s) for s in self.seeds))
        object.__setattr__(self, "table2_models", tuple(self.table2_models))
        if not self.table2_models:
            raise ConfigError("ExperimentOptions.table2_models = (): need at least one model")
        for i, m in enumerate(self.table2_models):
            _check_name(f"ExperimentOptions.table2_models[{i}]", m, models(), "model")
        if not self.seeds:
            raise ConfigError("ExperimentOptions.seeds = (): need at least one seed")
        if len(set(self.seeds)) != len(self.seeds):
            raise ConfigError(f"ExperimentOptions.seeds = {self.seeds}: seeds must be distinct")
        _check_name("ExperimentOptions.dataset", self.dataset, datasets(), "data set")
        _check_name("ExperimentOptions.model", self.model, models(), "model")
        if self.train_seeds is not None and self.train_seeds < 1:
            raise ConfigError(f"ExperimentOptions.train_seeds = {self.train_seeds}: must be ≥ 1 or None")
        if self.eval_every < 0:
            raise ConfigError(f"ExperimentOptions.eval_every = {self.eval_every}: must be ≥ 0")
        if not self.lr > 0:
            raise ConfigError(f"ExperimentOptions.lr = {self.lr}: a learning rate must be > 0")
        try:
            object.__setattr__(self, "local_update", RunConfig(local_update=self.local_update).local_update)
        except ConfigError as exc:
            raise ConfigError(f"ExperimentOptions.{str(exc).removeprefix('RunConfig.')}") from None
        try:
            parse_executor(self.executor)
        except InputError as exc:
            raise ConfigError(f"ExperimentOptions.{exc}") from None
        if self.window is not None and self.window < 1:
            raise ConfigError(f"ExperimentOptions.window = {self.window}: must be ≥ 1 or None (= τ)")
        for name in ("jobs", "quick_seeds", "quick_horizon", "horizon", "passes", "n_devices"):
            if getattr(self, name) < 1:
                raise ConfigError(f"ExperimentOptions.{name} = {getattr(self, name)}: must be ≥ 1")

    @property
    def run_seeds(self) -> tuple[int, ...]:
        return self.seeds[: self.quick_seeds] if self.quick else self.seeds

    @property
    def run_horizon(self) -> int:
        return min(self.quick_horizon, self.horizon) if self.quick else self.horizon

    def run_window(self, period: int) -> int:
        """The estimated-information window of a run with aggregation period ``period`` (τ).

        ``window`` (or τ when ``None``) at the full horizon. When quick mode shortens the horizon
        from ``T`` to ``T'`` the window shrinks in proportion, ``max(1, round(W·T'/T))``, so that
        the horizon still holds as many windows (T = 100, W = 10 → T' = 20, W' = 2): with the full
        W the first window, which cannot move data (docs/model.md §4), would be half the horizon.
        """
        w = self.window if self.window is not None else period
        if self.run_horizon < self.horizon:
            w = max(1, round(w * self.run_horizon / self.horizon))
        return w

    def as_run(self, configs: Sequence[RunConfig]) -> ExperimentOptions:
        """These options as they ran ``configs``: the seeds and horizon actually used, the window
        resolved (quick mode scales it), ``train`` true exactly when some run trains, and
        ``quick`` off, so that the result runs the same configurations in full mode."""
        changes: dict[str, Any] = {"seeds": self.run_seeds, "horizon": self.run_horizon, "quick": False,
                                   "train": any(c.train for c in configs)}
        if self.quick and self.run_horizon < self.horizon:
            changes["window"] = self.run_window(RunConfig.period)
        return self.replace(**changes)

    def trains(self, seed: int) -> bool:
        """Whether runs of ``seed`` train a model (``train`` and among the first ``train_seeds``)."""
        if not self.train:
            return False
        return self.train_seeds is None or self.run_seeds.index(seed) < self.train_seeds

    def base(self, **changes: Any) -> RunConfig:
        """A :class:`RunConfig` with these options' dataset, model, horizon, budget and training flag."""
        fields: dict[str, Any] = {"dataset": self.dataset, "model": self.model, "horizon": self.run_horizon,
                                  "n_devices": self.n_devices,
                                  "train": self.train, "passes": self.passes, "lr": self.lr,
                                  "eval_every": self.eval_every, "local_update": self.local_update}
        fields.update(changes)
        if not fields["train"]:  # a run that does not train does not depend on the local update
            fields["local_update"] = "paper"
        return RunConfig(**fields)

    def as_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["seeds"] = list(self.seeds)
        d["table2_models"] = list(self.table2_models)
        return d

    def replace(self, **changes: Any) -> ExperimentOptions:
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ExperimentOptions:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ConfigError(f"ExperimentOptions: unknown field(s) {unknown}")
        return cls(**data)


@dataclass(frozen=True)
class SweepSpec:
    """What a run directory's ``config.toml`` records: the experiment, the options as they ran
    (:meth:`ExperimentOptions.as_run`), its runs and, when they differ, the options as requested
    (e.g. with ``quick = true``)."""

    experiment: str
    options: ExperimentOptions
    runs: tuple[RunConfig, ...] = field(default_factory=tuple)
    requested: ExperimentOptions | None = None


def _drop_none(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None}


def write_config_toml(path: str | Path, spec: SweepSpec) -> Path:
    """Write ``config.toml`` (TOML has no null: ``None`` fields are omitted and read back as defaults)."""
    path = Path(path)
    doc: dict[str, Any] = {"experiment": spec.experiment, "schema": SCHEMA,
                           "options": _drop_none(spec.options.as_dict())}
    if spec.requested is not None and spec.requested != spec.options:
        doc["requested"] = _drop_none(spec.requested.as_dict())
    doc["runs"] = [{"key": r.key(), **_drop_none(r.as_dict())} for r in spec.runs]
    from foglearn.io import atomic_write
    atomic_write(path, tomli_w.dumps(doc))
    return path


def read_config_toml(path: str | Path) -> SweepSpec:
    """Inverse of :func:`write_config_toml`; checks that each stored key matches its run."""
    with Path(path).open("rb") as fh:
        doc = tomllib.load(fh)
    runs = []
    for i, raw in enumerate(doc.get("runs", [])):
        run = RunConfig.from_dict(raw)
        if "key" in raw and raw["key"] != run.key():
            raise ConfigError(f"{path}: runs[{i}].key = {raw['key']} does not match its configuration ({run.key()})")
        runs.append(run)
    requested = ExperimentOptions.from_dict(doc["requested"]) if "requested" in doc else None
    return SweepSpec(doc["experiment"], ExperimentOptions.from_dict(doc.get("options", {})), tuple(runs),
                     requested)
