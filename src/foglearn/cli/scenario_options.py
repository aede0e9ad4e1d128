"""The scenario options every command that builds a fog network shares, in one place.

``foglearn plan``, ``foglearn run``, ``foglearn sweep`` and ``foglearn flower run`` take the same
options under the same names (``--devices``, ``--slots``, ``--topology``, ``--rho``,
``--capacities/--no-capacities``, ``--profile``, ``--max-points``, ``--scenario``, ``--traces``,
``--repeat``) and check them here, once: a scenario comes from one source (synthetic, a saved
``.npz`` or measured traces, docs/model.md §4-§5) and an option that does not apply to that
source is an error naming the option, never silently ignored.

With ``--traces``, ``n`` and ``T`` default to the traces' own node count and length; more
devices or slots than the traces hold need ``--repeat`` (the traces are tiled, with a warning).
Topology, rho, cost profile and capacities then come from the traces themselves.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from foglearn.cli.common import err_console
from foglearn.errors import InputError
from foglearn.network import PROFILES, TOPOLOGIES

if TYPE_CHECKING:
    from foglearn.network import Scenario

#: The synthetic network's defaults (the paper's Sec. V-A setting).
DEFAULT_DEVICES, DEFAULT_SLOTS, DEFAULT_TOPOLOGY, DEFAULT_RHO, DEFAULT_PROFILE = 10, 100, "full", 0.3, "synthetic"



def devices_option(default: int, what: str = "devices") -> Any:
    """``--devices`` / ``-n`` (``None`` when not given), saying its default."""
    return typer.Option("--devices", "-n", min=1, show_default=False,
                        help=f"n: number of {what} (default: {default}; with --traces the traces' node count)")


def slots_option(default: int, what: str = "time slots") -> Any:
    """``--slots`` (``None`` when not given), saying its default."""
    return typer.Option("--slots", min=1, show_default=False,
                        help=f"T: number of {what} (default: {default}; with --traces the traces' length)")


Devices = Annotated[int | None, devices_option(DEFAULT_DEVICES)]
Slots = Annotated[int | None, slots_option(DEFAULT_SLOTS)]
Topology = Annotated[str | None, typer.Option(
    "--topology", show_default=False,
    help=f"synthetic network's topology: {TOPOLOGIES.help()} (default: {DEFAULT_TOPOLOGY})")]
Rho = Annotated[float | None, typer.Option(
    "--rho", show_default=False, help=f"link probability of --topology random (default: {DEFAULT_RHO})")]
Capacities = Annotated[bool | None, typer.Option(
    "--capacities/--no-capacities", show_default=False,
    help="impose node and link capacities (docs/model.md §4) (default: none)")]
Profile = Annotated[str | None, typer.Option(
    "--profile", show_default=False, help=f"cost profile: {PROFILES.help()} (default: {DEFAULT_PROFILE})")]
MaxPoints = Annotated[int | None, typer.Option(
    "--max-points", min=0, show_default=False,
    help="D_i(t) ~ U{0..max_points} (default: ⌊60000/(nT)⌋; with --traces 60)")]
ScenarioFile = Annotated[Path | None, typer.Option(
    "--scenario", show_default=False,
    help="a saved scenario (.npz, Scenario.save): its n, T, network and costs")]
Traces = Annotated[Path | None, typer.Option(
    "--traces", show_default=False,
    help="replay measured traces: a folder with nodes.csv and links.csv (docs/traces.md)")]
Repeat = Annotated[bool, typer.Option(
    "--repeat", help="with --traces: tile the traces to more --devices/--slots than they hold (warns)")]

#: Options that only a synthetic network has: option name -> field of :class:`ScenarioOptions`.
_SYNTHETIC_ONLY = {"--topology": "topology", "--rho": "rho", "--capacities/--no-capacities": "capacities",
                   "--profile": "profile"}


@dataclass(frozen=True)
class ScenarioOptions:
    """The scenario options as given (``None``: not given) — one source: synthetic, file or traces."""

    devices: int | None = None
    slots: int | None = None
    topology: str | None = None
    rho: float | None = None
    capacities: bool | None = None
    profile: str | None = None
    max_points: int | None = None
    scenario: Path | None = None
    traces: Path | None = None
    repeat: bool = False

    @property
    def generator(self) -> str:
        """``synthetic``, ``file`` (``--scenario``) or ``traces``."""
        return "file" if self.scenario is not None else "traces" if self.traces is not None else "synthetic"

    def check(self) -> None:
        """Raise :class:`InputError` naming the first option that does not apply to the source."""
        if self.scenario is not None and self.traces is not None:
            raise InputError("--scenario and --traces: give at most one source of the scenario")
        if self.generator == "synthetic":
            if self.repeat:
                raise InputError("--repeat: applies only to --traces (it tiles measured traces)")
            topology = self.topology or DEFAULT_TOPOLOGY
            if self.rho is not None and topology != "random":
                raise InputError(f"--rho = {self.rho}: applies only to --topology random, not {topology!r}")
            return
        if self.generator == "file":
            source, decides = f"--scenario {self.scenario}", "the saved scenario fixes n, T, the network and costs"
            given = {"--devices": self.devices, "--slots": self.slots, "--max-points": self.max_points,
                     "--repeat": self.repeat or None}
        else:
            source, decides = f"--traces {self.traces}", "the traces decide the network, its costs and capacities"
            given = {}
        given |= {name: getattr(self, f) for name, f in _SYNTHETIC_ONLY.items()}
        for name, value in given.items():
            if value is None:
                continue
            if isinstance(value, bool):
                shown = name.split("/")[0] if value else name.split("/")[-1]
            else:
                shown = f"{name} = {value!r}"
            raise InputError(f"{shown}: does not apply with {source} ({decides})")

    def build(self, seed: int) -> tuple[Scenario, dict[str, Any]]:
        """The scenario and its provenance (what ``config.toml`` records to build it again).

        Warnings (tiled traces) are shown on stderr.
        """
        from foglearn.network import Scenario, from_traces, synthetic

        self.check()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            if self.scenario is not None:
                scenario = Scenario.load(self.scenario)
                try:
                    digest = hashlib.sha256(self.scenario.read_bytes()).hexdigest()
                except OSError as exc:
                    raise InputError(f"--scenario = {self.scenario}: {exc.strerror or exc}") from None
                source: dict[str, Any] = {"generator": "file", "path": str(self.scenario), "sha256": digest}
            elif self.traces is not None:
                extra = {} if self.max_points is None else {"max_points": self.max_points}
                try:
                    scenario = from_traces(self.traces, n_devices=self.devices, horizon=self.slots,
                                           repeat=self.repeat, seed=seed, **extra)
                except InputError as exc:  # the library names its arguments; the command line its options
                    message = str(exc).replace("n_devices = ", "--devices = ").replace("horizon = ", "--slots = ")
                    raise InputError(f"--traces {self.traces}: {message.replace('repeat=True', '--repeat')}") from None
                if self.max_points is not None and scenario.info.get("arrivals") == "traces":
                    raise InputError(f"--max-points: the traces {self.traces} have an arrivals column in nodes.csv, "
                                     "which decides D_i(t); --max-points only bounds drawn arrivals")
                source = {"generator": "traces", "path": str(self.traces), "n_devices": scenario.n_devices,
                          "horizon": scenario.horizon, "repeat": self.repeat, "seed": seed, **extra}
            else:
                topology = self.topology or DEFAULT_TOPOLOGY
                source = {"generator": "synthetic", "n_devices": self.devices or DEFAULT_DEVICES,
                          "horizon": self.slots or DEFAULT_SLOTS, "topology": topology,
                          "capacities": bool(self.capacities), "profile": self.profile or DEFAULT_PROFILE,
                          "seed": seed}
                if topology == "random":
                    source["rho"] = DEFAULT_RHO if self.rho is None else self.rho
                if self.max_points is not None:
                    source["max_points"] = self.max_points
                scenario = synthetic(**{k: v for k, v in source.items() if k != "generator"})
        for w in caught:
            if issubclass(w.category, DeprecationWarning):
                continue
            err_console.print(f"[yellow]warning:[/] {w.message}", highlight=False, soft_wrap=True)
        return scenario, source

    @classmethod
    def from_source(cls, source: dict[str, Any]) -> ScenarioOptions:
        """The options that build again the scenario a ``config.toml`` ``[scenario]`` table records."""
        gen = source.get("generator")
        path = Path(source["path"]) if "path" in source else None
        if gen == "file":
            return cls(scenario=path)
        if gen == "traces":
            return cls(devices=int(source["n_devices"]), slots=int(source["horizon"]), traces=path,
                       repeat=bool(source.get("repeat", False)), max_points=source.get("max_points"))
        if gen == "synthetic":
            return cls(devices=int(source["n_devices"]), slots=int(source["horizon"]),
                       topology=str(source["topology"]), rho=source.get("rho"),
                       capacities=bool(source["capacities"]), profile=str(source.get("profile", DEFAULT_PROFILE)),
                       max_points=source.get("max_points"))
        raise InputError(f"scenario.generator = {gen!r}: must be synthetic, file or traces")

    def sweep_overrides(self) -> list[str]:
        """The options given, as ``foglearn sweep`` ``key=value`` overrides of the run configuration
        (:class:`~foglearn.experiments.config.RunConfig`); with ``--traces``, ``n`` and ``T`` default
        to the traces' own size."""
        self.check()
        fields: dict[str, Any] = {"n_devices": self.devices, "horizon": self.slots, "topology": self.topology,
                                  "rho": self.rho, "capacities": self.capacities, "profile": self.profile}
        if self.traces is not None:
            from foglearn.network import load_traces

            measured = load_traces(self.traces)
            fields |= {"profile": "traces", "traces_dir": str(self.traces.resolve()),
                       "n_devices": self.devices or measured.n_nodes, "horizon": self.slots or measured.length}
        return [f"{key}={json.dumps(value)}" for key, value in fields.items() if value is not None]
