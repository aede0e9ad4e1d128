"""Configuration of a Flower run of the paper's loop: one frozen, validated dataclass.

The same fields are read from Flower's run config (``[tool.flwr.app.config]`` in
``flower_app/pyproject.toml``, overridden with ``flwr run -c 'key=value'``), whose keys use
hyphens (``num-devices``), or built directly in Python (``FlowerRunConfig(num_devices=5)``).

The run config names code only by registry name — ``model`` in
:data:`foglearn.learning.models.MODELS`, ``topology`` and ``profile`` in
:data:`foglearn.network.TOPOLOGIES` / :data:`~foglearn.network.PROFILES` — so a device runs only
code installed on it, never a function the run's submitter names.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

from foglearn.errors import InputError
from foglearn.network import PROFILES, TOPOLOGIES

INFORMATION = ("estimated", "perfect")
COST_SOURCES = ("synthetic", "measured")


class FlowerConfigError(InputError):
    """A Flower run-config field breaks a rule; the message names the field and the rule."""


@dataclass(frozen=True)
class Fault:
    """An injected fault: device ``device`` fails in slot ``slot`` (and after, if ``persistent``).

    A failing ClientApp raises (Flower returns an error reply) or, with ``kill``, exits its
    process (``os._exit``) the way an OOM-killed worker does, or, with ``lie``, answers with a
    bad reply the server must reject: ``"nan"`` (a NaN in its model), ``"h"`` (claims
    ``H_i = 10⁹``), ``"shape"`` (a model array of the wrong shape).
    """

    device: int
    slot: int
    persistent: bool = False
    kill: bool = False
    lie: str = ""

    def hits(self, device: int, slot: int) -> bool:
        return device == self.device and (slot == self.slot or (self.persistent and slot > self.slot))


LIES = ("nan", "h", "shape")


def parse_faults(spec: str) -> tuple[Fault, ...]:
    """Parse ``"2@3,1@4+,0@2!,2@5~nan"``: device 2 fails in slot 3; device 1 from slot 4 on;
    device 0 is killed (process exit) in slot 2; device 2 sends a NaN model in slot 5 (lies:
    :data:`LIES`). Slots are 0-based.
    """
    out: list[Fault] = []
    for raw in (p.strip() for p in spec.split(",")):
        if not raw:
            continue
        body, _, lie = raw.partition("~")
        if lie and lie not in LIES:
            raise FlowerConfigError(f"faults: {raw!r}: a lie is one of {LIES}")
        kill = body.endswith("!")
        body = body.rstrip("!")
        persistent = body.endswith("+")
        body = body.rstrip("+")
        try:
            dev, slot = (int(x) for x in body.split("@"))
        except ValueError as exc:
            raise FlowerConfigError(f"faults: {raw!r} is not DEVICE@SLOT[+][!|~LIE] "
                                    "(e.g. '2@3', '1@4+', '0@2!', '2@5~nan')") from exc
        if dev < 0 or slot < 0:
            raise FlowerConfigError(f"faults: {raw!r}: device and slot must be ≥ 0")
        out.append(Fault(dev, slot, persistent, kill, lie))
    return tuple(out)


@dataclass(frozen=True)
class FlowerRunConfig:
    """Everything a Flower run of the paper's loop needs (docs/model.md §4 defaults where they apply).

    Parameters
    ----------
    num_devices : int
        ``n``: devices, one SuperNode (ClientApp) each; node ``partition-id`` = device index.
    horizon : int
        ``T``: slots; one Flower round per slot.
    period : int
        ``τ``: aggregate every ``period`` slots, weighted by ``H_i`` (eq. 4).
    window : int
        Estimated information: plan window ``l`` (``window`` slots) from the averages measured in
        window ``l-1``; the first window moves nothing (docs/model.md §4). 0 means ``window = period``.
    lr : float
        ``η``, the constant SGD step size of eq. (3).
    dataset : str
        ``"mnist"``, ``"fashion-mnist"``, ``"tiny"`` or a data file/folder on every device
        (:func:`foglearn.learning.load_dataset`).
    model : str
        A registered model (:data:`foglearn.learning.models.MODELS`: ``"cnn"``, ``"mlp"`` …).
    seed : int
        One seed for the scenario, partitions and the initial model.
    topology, rho, capacities, profile, max_points :
        The synthetic scenario the devices replay (:func:`foglearn.network.synthetic`; topology
        and profile are registered names); ``max_points = 0`` uses ``⌊|D_V|/(nT)⌋`` of the
        dataset's training set.
    scenario_file : str
        A saved :class:`~foglearn.network.Scenario` (``.npz``) to replay instead of a synthetic one.
    information : {"estimated", "perfect"}
        Plan from the previous window's measurements (the paper's estimated-information
        scheme, the only one a real deployment can run) or once from the true scenario.
    movement : bool
        ``False``: every device keeps all it collects (setting A of Table III).
    cost_source : {"synthetic", "measured"}
        Which per-point costs the server plans with: the scenario's (replayed by each device as
        a traced device) or the wall-clock times the devices measure, divided by
        ``seconds_per_unit``. Both are always recorded.
    error : {"linear", "sqrt"}
        Error model passed to the planner.
    slot_timeout : float
        Seconds the server waits for a slot's replies; a device that has not answered by then is
        inactive for that slot.
    faults : str
        Injected faults (:func:`parse_faults`), for tests and demonstrations.
    run_dir : str
        Where ``config.toml`` and ``result.json`` go (absolute path recommended under ``flwr run``).
    eval_points : int
        Test points for the server's evaluation (0 = the whole test set).
    solver : str
        The registered solver the server plans with (``foglearn.planning.solve.SOLVERS``, or
        ``auto``). A name, never an import path: the run config cannot make the server or a
        device import code.
    min_accuracy : float
        The run fails (raises) when the final accuracy is not above this; default: chance + 0.
    """

    num_devices: int = 5
    horizon: int = 20
    period: int = 10
    window: int = 0
    lr: float = 0.01
    dataset: str = "mnist"
    model: str = "cnn"
    seed: int = 0
    topology: str = "full"
    rho: float = 0.3
    capacities: bool = False
    profile: str = "synthetic"
    max_points: int = 0
    scenario_file: str = ""
    information: str = "estimated"
    movement: bool = True
    cost_source: str = "synthetic"
    seconds_per_unit: float = 0.01
    error: str = "linear"
    slot_timeout: float = 120.0
    faults: str = ""
    run_dir: str = ""
    eval_points: int = 0
    solver: str = "auto"
    min_accuracy: float = -1.0

    def __post_init__(self) -> None:
        def need(cond: bool, name: str, rule: str) -> None:
            if not cond:
                raise FlowerConfigError(f"{name} = {getattr(self, name)!r}: {rule}")

        need(self.num_devices >= 1, "num_devices", "need at least one device")
        need(self.horizon >= 1, "horizon", "need at least one slot")
        need(self.period >= 1, "period", "the aggregation period τ must be ≥ 1")
        need(self.window >= 0, "window", "must be ≥ 0 (0 = period)")
        need(self.lr > 0, "lr", "the step size η must be > 0")
        from foglearn.learning.models import MODELS

        MODELS.get_entry(self.model, "model", FlowerConfigError)
        TOPOLOGIES.get_entry(self.topology, "topology", FlowerConfigError)
        need(0.0 <= self.rho <= 1.0, "rho", "a link probability must lie in [0, 1]")
        PROFILES.get_entry(self.profile, "profile", FlowerConfigError)
        need(self.max_points >= 0, "max_points", "must be ≥ 0 (0 = ⌊|D_V|/(nT)⌋)")
        need(self.information in INFORMATION, "information", f"must be one of {INFORMATION}")
        need(self.cost_source in COST_SOURCES, "cost_source", f"must be one of {COST_SOURCES}")
        need(self.seconds_per_unit > 0, "seconds_per_unit", "must be > 0")
        need(self.error in ("linear", "sqrt"), "error", "must be 'linear' or 'sqrt'")
        need(self.slot_timeout > 0, "slot_timeout", "must be > 0 seconds")
        need(self.eval_points >= 0, "eval_points", "must be ≥ 0 (0 = all)")
        if self.solver != "auto":
            from foglearn.planning.solve import SOLVERS

            entry = SOLVERS.get_entry(self.solver, "solver", FlowerConfigError)
            need(not entry.params.get("labels"), "solver",
                 "must be label-blind: the server plans without the devices' labels (label-aware solvers need them)")
        for f in parse_faults(self.faults):
            if f.device >= self.num_devices:
                raise FlowerConfigError(f"faults: device {f.device} does not exist (num_devices = {self.num_devices})")

    @property
    def plan_window(self) -> int:
        """Window length of the estimated-information scheme (``period`` unless set)."""
        return self.window or self.period

    @property
    def fault_list(self) -> tuple[Fault, ...]:
        return parse_faults(self.faults)

    # ------------------------------------------------------------ Flower run config
    def to_user_config(self) -> dict[str, Any]:
        """Flower run-config form: hyphenated keys, TOML scalars."""
        return {k.replace("_", "-"): v for k, v in asdict(self).items()}

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_user_config(cls, cfg: Mapping[str, Any], **overrides: Any) -> FlowerRunConfig:
        """Build from Flower's ``context.run_config`` (hyphenated keys; unknown keys are an error)."""
        known = {f.name: f for f in fields(cls)}
        kwargs: dict[str, Any] = {}
        for key, value in cfg.items():
            name = key.replace("-", "_")
            if name not in known:
                names = sorted(k.replace("_", "-") for k in known)
                raise FlowerConfigError(f"{key}: unknown foglearn run-config key (known: {names})")
            default = getattr(cls, name) if hasattr(cls, name) else None
            kwargs[name] = _coerce(name, value, default)
        kwargs.update(overrides)
        return cls(**kwargs)


def _coerce(name: str, value: Any, default: Any) -> Any:
    try:
        if isinstance(default, bool):
            if isinstance(value, str):
                if value.lower() in ("true", "1", "yes"):
                    return True
                if value.lower() in ("false", "0", "no"):
                    return False
                raise ValueError(value)
            return bool(value)
        if isinstance(default, int):
            if isinstance(value, float) and value != int(value):
                raise ValueError(value)
            return int(value)
        if isinstance(default, float):
            return float(value)
        return str(value)
    except (TypeError, ValueError) as exc:
        raise FlowerConfigError(f"{name.replace('_', '-')} = {value!r}: expected {type(default).__name__}") from exc
