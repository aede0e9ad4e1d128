"""``foglearn run``: the main job — no movement vs network-aware learning on real data.

On the embedded default (MNIST, n = 10, T = 100, τ = 10, CNN, synthetic costs on a fully
connected network) it plans both settings — and, when the data are non-IID (``--partition
dirichlet:α`` or ``classes:K``, linear error, perfect information), a third, ``label-aware``
(``--label-loads``: the label-blind plan's loads or free loads; ``--label-target``: the uniform or the
pooled label mix; docs/noniid.md) — trains a real model for each by executing the plan at datapoint
level, prints costs and accuracy, and writes a run directory:
``config.toml``, ``result.json``, ``slots.csv`` (per-slot loss and test metrics), ``loss.png``,
``accuracy.png`` and ``labels.png`` (the labels each device collected). Every file is written
atomically.

Budget (:data:`BUDGETS`). ``--budget default`` trains to a converged model: the horizon replayed
:data:`DEFAULT_PASSES` times with mini-batch local updates (``⌈G_i(t)/b⌉`` steps, see
:class:`~foglearn.learning.trainer.LocalUpdate`) at a constant η; ``--budget paper`` is the paper's
protocol (one pass, one SGD step per device and slot — eq. 3 — at η = 0.01), which leaves the models
near chance. ``--passes``, ``--lr`` and ``--local-update`` override single parts. A setting whose
final accuracy is within :data:`NEAR_CHANCE` of chance (1 / number of classes) is flagged in the
table, on the console and in ``result.json`` (``near_chance``).

The run directory is checked before any work: ``--out`` that is a file, or a folder that cannot
be written, is an error (exit 2) before the data set is read. Each finished setting is kept as
``finished/<setting>-<key>.json`` + ``.npz`` (:func:`~foglearn.learning.results.save_result`: JSON
and arrays, never pickle), where ``key`` hashes the configuration together with the sha256 of the
data set's content, so the same command resumes after an interruption, and changed data under
the same path trains anew; the label-blind settings' keys leave out the label-aware setting's
options (``--label-loads``, ``--label-target``, ``--label-weights``), so changing one of them
retrains the label-aware setting only. A kept file that is truncated or malformed counts as unfinished: a
one-line notice, and the setting is trained again.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import click
import typer
from rich.markup import escape
from rich.progress import Progress, TaskID

from foglearn.cli.common import JsonFlag, console, cost_table, emit_json, fail, json_mode
from foglearn.cli.scenario_options import (
    Capacities,
    Devices,
    MaxPoints,
    Profile,
    Repeat,
    Rho,
    ScenarioFile,
    ScenarioOptions,
    Slots,
    Topology,
    Traces,
)
from foglearn.cli.tracking import Log, require_tensorboard, write_tensorboard
from foglearn.errors import InputError
from foglearn.learning.partition import CLASS_WEIGHTS, LABEL_AWARE_WEIGHTS

if TYPE_CHECKING:
    from foglearn.learning import ArrayDataset, TrainResult

#: What a run writes into its directory (besides ``finished/``).
OUTPUTS = (
    "config.toml",
    "result.json",
    "slots.csv",
    "device_loss.csv",
    "loss.png",
    "accuracy.png",
    "labels.png",
)

#: ``--budget``: (passes, η, local update). The default converges on MNIST (docs/accuracy.md).
BUDGETS: dict[str, tuple[int, float, str]] = {
    "default": (5, 0.1, "minibatch:16"),
    "paper": (1, 0.01, "paper"),
}
DEFAULT_PASSES, DEFAULT_LR, DEFAULT_UPDATE = BUDGETS["default"]
#: A final accuracy at most this far above chance is flagged (5 points).
NEAR_CHANCE = 0.05


def near_chance(accuracy: float, n_classes: int) -> bool:
    """Whether ``accuracy`` is within :data:`NEAR_CHANCE` of guessing (``1 / n_classes``)."""
    return accuracy <= 1.0 / max(1, n_classes) + NEAR_CHANCE


def _default_threads() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)


def _check_out(out: Path) -> None:
    """Exit 2 unless ``out`` is (or can be created as) a folder this process can write into."""
    if out.exists() and not out.is_dir():
        fail(f"--out = {out}: is a file; must be a run directory (a folder, created if missing)")
    for name in OUTPUTS:
        if (out / name).exists() and not (out / name).is_file():
            fail(f"--out = {out}: {name} exists and is not a file, so the run could not write it")
    for folder in (out, out / "finished"):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            fd, probe = tempfile.mkstemp(dir=folder, prefix=".foglearn-probe-")
            os.close(fd)
            os.unlink(probe)
        except OSError as exc:
            fail(f"--out = {out}: cannot write into {folder} ({exc.strerror or exc})")


def dataset_sha256(data: ArrayDataset) -> str:
    """sha256 of a data set's content: dtype, shape and bytes of its four arrays, in order."""
    import numpy as np

    h = hashlib.sha256()
    for a in (data.x_train, data.y_train, data.x_test, data.y_test):
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape};".encode())
        h.update(a.data)
    return h.hexdigest()


def _advance(bar: Progress, task: TaskID, done: int, total: int) -> None:
    """Progress callback of ``train``: ``done`` of ``total`` slots."""
    bar.update(task, completed=done)


def _kept(path: Path, name: str) -> TrainResult | None:
    """The kept result of setting ``name``, or ``None`` (with a notice if its file is damaged)."""
    from foglearn.learning.results import ResultFileError, load_result

    if not path.exists():
        return None
    try:
        return load_result(path)
    except ResultFileError as exc:
        console.print(
            f"notice: {escape(str(exc))}; training {name} again", highlight=False, soft_wrap=True
        )
        return None


#: What a run directory's ``config.toml`` holds: each table's keys, their TOML type and whether they are required.
_CONFIG_KEYS: dict[str, dict[str, tuple[type, bool]]] = {
    "scenario": {"generator": (str, True), "path": (str, False), "sha256": (str, False), "n_devices": (int, False),
                 "horizon": (int, False), "topology": (str, False), "capacities": (bool, False),
                 "profile": (str, False), "seed": (int, False), "rho": (float, False), "max_points": (int, False),
                 "repeat": (bool, False)},
    "training": {"dataset": (str, False), "dataset_sha256": (str, False), "model": (str, True), "period": (int, True),
                 "lr": (float, True), "seed": (int, True), "passes": (int, True), "budget": (str, True),
                 "local_update": (str, True), "partition": (str, True), "dataset_source": (str, True),
                 "threads": (int, False)},
    # label_loads / label_target / label_weights: absent from configs written before the options
    "planning": {"error": (str, True), "information": (str, True), "label_loads": (str, False),
                 "label_target": (str, False), "label_weights": (str, False)},
}
#: The command line's ranges, for the integer keys (``foglearn run --help``).
_CONFIG_RANGES = {"training.period": (1, 2**31 - 1), "training.seed": (0, 2**63 - 1), "training.passes": (1, 2**31 - 1),
                  "training.threads": (0, 4096), "scenario.seed": (0, 2**63 - 1), "scenario.n_devices": (1, 2**31 - 1),
                  "scenario.horizon": (1, 2**31 - 1), "scenario.max_points": (0, 2**53)}
#: Keys that may be empty: the data set's display name (an IDX folder given as "." has none).
_CONFIG_MAY_BE_EMPTY = {"training.dataset"}
#: The ``[scenario]`` keys each generator records (any other is refused, not ignored).
_GENERATOR_ALLOWS = {
    "synthetic": {"generator", "n_devices", "horizon", "topology", "capacities", "profile", "seed", "rho",
                  "max_points"},
    "file": {"generator", "path", "sha256"},
    "traces": {"generator", "path", "n_devices", "horizon", "repeat", "seed", "max_points"},
}
_GENERATOR_KEYS = {"synthetic": ("n_devices", "horizon", "topology", "capacities"), "file": ("path",),
                   "traces": ("path", "n_devices", "horizon")}


def _short(value: Any) -> str:
    """``repr(value)``, cut to 60 characters (a 400-digit integer is named, not printed)."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "…"


def _bad_config(path: Path, message: str) -> NoReturn:
    fail(f"--config = {path}: {message} (a run directory's config.toml records every option)")


def _config_tables(path: Path, cfg: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``cfg``'s tables checked against :data:`_CONFIG_KEYS`: every key known, of its type, the required ones
    present (``settings``, the record of what was planned, is not read)."""
    unknown = sorted(set(cfg) - set(_CONFIG_KEYS) - {"settings"})
    if unknown:
        _bad_config(path, f"unknown table or key {unknown[0]!r} (known: {', '.join(_CONFIG_KEYS)}, settings)")
    for table, keys in _CONFIG_KEYS.items():
        section = cfg.get(table)
        if not isinstance(section, dict):
            got = "nothing" if section is None else type(section).__name__
            _bad_config(path, f"[{table}] must be a table, got {got}")
        for key, value in section.items():
            if key not in keys:
                _bad_config(path, f"unknown key {table}.{key} (known: {', '.join(keys)})")
            kind, _ = keys[key]
            name = f"{table}.{key}"
            if kind is float:
                try:
                    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
                except OverflowError:  # an integer beyond any float
                    ok = False
            else:
                ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
            if not ok or (kind is str and not value.strip() and name not in _CONFIG_MAY_BE_EMPTY):
                what = {int: "an integer", float: "a finite number", bool: "true or false",
                        str: "a non-empty string"}[kind]
                _bad_config(path, f"{name} = {_short(value)}: must be {what}")
            lo, hi = _CONFIG_RANGES.get(name, (None, None))
            if lo is not None and not lo <= value <= hi:
                _bad_config(path, f"{name} = {_short(value)}: must be an integer from {lo} to {hi}")
            if name == "training.lr" and not value > 0:
                _bad_config(path, f"{name} = {value!r}: the learning rate η must be > 0")
        missing = [k for k, (_, required) in keys.items() if required and k not in section]
        gen = section.get("generator") if table == "scenario" else None
        if gen is not None and gen not in _GENERATOR_KEYS:
            _bad_config(path, f"scenario.generator = {gen!r}: must be one of {', '.join(_GENERATOR_KEYS)}")
        missing += [k for k in _GENERATOR_KEYS.get(gen or "", ()) if k not in section]
        if missing:
            _bad_config(path, f"{table}.{missing[0]} is missing")
        stray = sorted(set(section) - _GENERATOR_ALLOWS[str(gen)]) if gen is not None else []
        if stray:
            _bad_config(path, f"scenario.{stray[0]}: does not apply to scenario.generator = {gen!r} (it takes "
                              f"{', '.join(sorted(_GENERATOR_ALLOWS[str(gen)]))})")
    return cfg


def options_from_config(path: Path) -> dict[str, Any]:
    """Every option of a run (all but ``--out``, ``--threads``, ``--log`` and ``--json``) from its
    ``config.toml``, every key checked (its type, no unknown ones); the scenario options as
    :class:`ScenarioOptions`. A recorded scenario file whose content changed since the run is an error."""
    import tomllib

    if path.is_dir():
        fail(f"--config = {path}: a directory; pass its config.toml ({path / 'config.toml'})")
    try:
        cfg = tomllib.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:  # TOMLDecodeError: a ValueError
        fail(f"--config = {path}: {exc.__class__.__name__ if isinstance(exc, RecursionError) else exc} "
             "(must be a run directory's config.toml)")
    cfg = _config_tables(path, cfg)
    sc, tr, pl = cfg["scenario"], cfg["training"], cfg["planning"]
    if "seed" in sc and sc["seed"] != tr["seed"]:
        fail(f"--config = {path}: scenario.seed = {sc['seed']} ≠ training.seed = {tr['seed']}: the run's one seed "
             "builds the scenario, the data stream and w(0); set both to the same value")
    if sc["generator"] == "file" and "sha256" in sc:
        try:
            digest = hashlib.sha256(Path(sc["path"]).read_bytes()).hexdigest()
        except OSError as exc:
            fail(f"--config = {path}: scenario.path = {sc['path']!r}: {exc.strerror or exc}")
        if digest != sc["sha256"]:
            fail(f"--config = {path}: the scenario file {sc['path']} changed since the run (sha256 {digest[:12]}… "
                 f"≠ the recorded {sc['sha256'][:12]}…)")
    try:
        scenario = ScenarioOptions.from_source(sc)
    except InputError as exc:
        fail(f"--config = {path}: {exc}")
    return {
        "scenario": scenario,
        "seed": tr["seed"],
        "dataset": tr["dataset_source"],
        "dataset_sha256": tr.get("dataset_sha256"),
        "model": tr["model"],
        "period": tr["period"],
        "lr": float(tr["lr"]),
        "passes": tr["passes"],
        "budget": tr["budget"],
        "local_update": tr["local_update"],
        "partition": tr["partition"],
        "error": pl["error"],
        "information": pl["information"],
        # absent from configs written before the option, whose label-aware plan had free loads
        "label_loads": pl.get("label_loads", "free"),
        # absent from configs written before the option, whose label-aware plan balanced towards the pooled mix
        "label_target": pl.get("label_target", "collected"),
        # absent from configs written before the option, whose label-aware run trained with the plain loss
        "label_weights": pl.get("label_weights", "none"),
    }


def run_command(
    devices: Devices = None,
    slots: Slots = None,
    period: Annotated[int, typer.Option(min=1, max=2**31 - 1, help="aggregation period τ (eq. 4)")] = 10,
    model: Annotated[
        str,
        typer.Option(
            help="a name of the models registry (cnn | mlp …), or package.module:factory where the operator "
            "allows importing it (FOGLEARN_ALLOW_MODEL_IMPORT=1)"
        ),
    ] = "cnn",
    dataset: Annotated[
        str, typer.Option(help="mnist | fashion-mnist | a folder of IDX files | .npz")
    ] = "mnist",
    seed: Annotated[int, typer.Option(min=0, max=2**63 - 1, help="seed of the scenario, the data stream and w(0)")] = 0,
    budget: Annotated[
        str,
        typer.Option(
            help=f"default: {DEFAULT_PASSES} passes, η = {DEFAULT_LR}, local update {DEFAULT_UPDATE} (trains to a "
            "converged model, about 2 min on 2 cores for the CNN); paper: 1 pass, η = 0.01, one step per device "
            "and slot (eq. 3; the paper's protocol, near chance)"
        ),
    ] = "default",
    lr: Annotated[
        float | None, typer.Option(help="learning rate η (default: the budget's)")
    ] = None,
    scenario_file: ScenarioFile = None,
    traces: Traces = None,
    repeat: Repeat = False,
    topology: Topology = None,
    rho: Rho = None,
    capacities: Capacities = None,
    profile: Profile = None,
    max_points: MaxPoints = None,
    error: Annotated[
        str, typer.Option(help="the network-aware plan's error model: linear | sqrt")
    ] = "linear",
    information: Annotated[
        str,
        typer.Option(
            help="perfect | a window length W (plan each W slots from the previous window's averages)"
        ),
    ] = "perfect",
    passes: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="replay the horizon this many times with fresh points "
            "(default: the budget's; 1 = the paper's protocol)"
        ),
    ] = None,
    local_update: Annotated[
        str | None,
        typer.Option(
            help="paper (eq. 3: one SGD step per device and slot) | minibatch:B (⌈G_i(t)/B⌉ steps on mini-batches "
            "of B points) | scaled:B (the same steps, a batch of k < B points stepping k/B as far); "
            "default: the budget's"
        ),
    ] = None,
    partition: Annotated[
        str,
        typer.Option(
            help="labels each device collects: iid | dirichlet:ALPHA (label mix ~ Dirichlet(α·1)) | classes:K "
            "(K labels per device)"
        ),
    ] = "iid",
    label_loads: Annotated[
        str,
        typer.Option(
            help="the label-aware plan on non-IID data: label-blind (each device keeps the label-blind plan's "
            "load per aggregation period; only which points it trains on change) | free (any load, the same "
            "total); docs/noniid.md"
        ),
    ] = "label-blind",
    label_target: Annotated[
        str,
        typer.Option(
            help="the label mix the label-aware plan balances towards: uniform (every class alike) | collected "
            "(the mix of everything the devices collect); docs/noniid.md"
        ),
    ] = "uniform",
    label_weights: Annotated[
        str,
        typer.Option(
            help="the label-aware setting's loss on non-IID data: sqrt (each point's loss weighted by "
            "1/√(its class's share of what the devices collect), mean weight 1) | none (the paper's loss, as "
            "the label-blind settings); docs/noniid.md"
        ),
    ] = LABEL_AWARE_WEIGHTS,
    threads: Annotated[int, typer.Option(min=0, max=4096, help="torch threads (0: all available cores)")] = 0,
    executor: Annotated[
        str,
        typer.Option(
            help="where each aggregation period's device blocks run: local | ray (a Ray cluster started here) | "
            "ray:ADDRESS (an existing cluster); the result is the same"
        ),
    ] = "local",
    out: Annotated[Path, typer.Option(help="run directory to write")] = Path("runs/default"),
    config_file: Annotated[
        Path | None,
        typer.Option(
            "--config",
            help="run the options recorded in a run directory's config.toml (replaces every option "
            "but --out, --threads, --executor, --log and --json)",
        ),
    ] = None,
    log: Log = None,
    json_out: JsonFlag = False,
) -> None:
    """Train with no movement, network-aware (and on non-IID data label-aware); compare costs and accuracy."""
    from foglearn.learning.executors import parse_executor

    try:
        parse_executor(executor)
    except InputError as exc:
        fail(f"--executor: {exc}")
    dataset_digest = None
    if config_file is not None:
        ctx = click.get_current_context()
        given = [p.opts[0] for p in ctx.command.params
                 if p.name not in ("config_file", "out", "threads", "executor", "log", "json_out")
                 and ctx.get_parameter_source(p.name or "") == click.core.ParameterSource.COMMANDLINE]
        if given:
            fail(f"{given[0]}: does not apply with --config (the config sets every option but --out, --threads, "
                 "--executor, --log and --json); edit a copy of the config instead")
        o = options_from_config(config_file)
        dataset_digest = o["dataset_sha256"]
        options, seed, dataset, model = o["scenario"], o["seed"], o["dataset"], o["model"]
        period, lr, passes, budget = o["period"], o["lr"], o["passes"], o["budget"]
        local_update, partition, error, information, label_loads, label_target, label_weights = (
            o["local_update"], o["partition"], o["error"], o["information"], o["label_loads"], o["label_target"],
            o["label_weights"],
        )
    else:
        options = ScenarioOptions(devices, slots, topology, rho, capacities, profile, max_points, scenario_file,
                                  traces, repeat)
    import numpy as np
    import tomli_w

    from foglearn.io import atomic_write, write_json
    from foglearn.learning import load_dataset, train
    from foglearn.learning.models import ALLOW_IMPORT_ENV, MODELS, resolve_model_spec
    from foglearn.learning.partition import Partition, plot_histograms
    from foglearn.learning.results import plot_curves, save_result, write_csv
    from foglearn.learning.trainer import LocalUpdate, TrainingError, check_trainable
    from foglearn.planning import plan

    options.check()
    if log is not None:
        require_tensorboard(log)
    if budget not in BUDGETS:
        fail(f"--budget = {budget!r}: must be one of {', '.join(BUDGETS)}")
    from foglearn.planning.label_aware import LOADS, SOLVER_OF_LOADS, TARGETS

    for option, value, allowed in (("label_loads", label_loads, LOADS), ("label_target", label_target, TARGETS),
                                   ("label_weights", label_weights, CLASS_WEIGHTS)):
        if value not in allowed:  # named as the user gave it: an option, or a key of the config file
            name = (f"--config = {config_file}: planning.{option}" if config_file is not None
                    else "--" + option.replace("_", "-"))
            fail(f"{name} = {value!r}: must be one of {', '.join(allowed)}")
    b_passes, b_lr, b_update = BUDGETS[budget]
    passes = b_passes if passes is None else passes
    lr = b_lr if lr is None else lr
    try:
        factory = resolve_model_spec(model, allow_import=os.environ.get(ALLOW_IMPORT_ENV) == "1")
        update = LocalUpdate.parse(b_update if local_update is None else local_update).spec
        part = Partition.parse(partition)
    except InputError as exc:
        message = str(exc)
        fail(
            ("--" + message if message.startswith("model = ") else message)
            .replace("local_update", "--local-update")
            .replace("partition =", "--partition =")
        )
    _check_out(out)
    threads = threads or _default_threads()
    window = information.strip()
    info: str | int = int(window) if window.isascii() and window.isdigit() else window
    with json_mode(json_out):
        try:
            scenario, source = options.build(seed)
        except OSError as exc:
            fail(f"scenario: {exc}")
        n, horizon = scenario.n_devices, scenario.horizon
        if isinstance(info, int) and info >= horizon:
            fail(f"--information = {info}: a window of at least the {horizon} slots (--slots) has no earlier window "
                 "to estimate from, so its plan never moves data; use a window shorter than the horizon")
        try:
            check_trainable(scenario, passes)  # before planning: nothing computed is lost
        except TrainingError as exc:
            fail(str(exc).replace("passes =", "--passes =", 1))
        data = load_dataset(dataset)
        data_digest = dataset_sha256(data)
        if dataset_digest is not None and data_digest != dataset_digest:
            fail(f"--config: the data set {dataset} changed since the run (sha256 {data_digest[:12]}… ≠ the "
                 f"recorded {dataset_digest[:12]}…)")
        settings = [
            ("no-movement", plan(scenario, movement=False)),
            ("network-aware", plan(scenario, error=error, information=info)),
        ]
        if not part.iid:  # non-IID: a third setting plans from the devices' labels (docs/noniid.md)
            if error == "linear" and info == "perfect":
                from foglearn.learning.partition import class_arrivals

                arrivals = class_arrivals(part, scenario.collected, data.y_train, seed)
                settings.append(("label-aware", plan(scenario, solver=SOLVER_OF_LOADS[label_loads], labels=arrivals,
                                                     period=period, target=label_target)))
            else:
                console.print("label-aware: not trained (it plans with the linear error and perfect "
                              "information only)", highlight=False)
        training = {
            "dataset": data.name,
            "dataset_sha256": data_digest,
            "model": model,
            "period": period,
            "lr": lr,
            "seed": seed,
            "passes": passes,
            "budget": budget,
            "local_update": update,
            "partition": part.spec,
            "dataset_source": dataset,
        }
        config: dict[str, Any] = {
            "scenario": source,
            "training": training,
            "planning": {"error": error, "information": str(info), "label_loads": label_loads,
                         "label_target": label_target, "label_weights": label_weights},
            "settings": [
                {
                    "name": name,
                    "movement": name != "no-movement",
                    "information": p.information,
                    "error": p.error,
                    "solver": p.stats.solver,
                }
                for name, p in settings
            ],
        }
        # Each finished setting is kept in the run directory, keyed by the configuration and the
        # data set's content: after an interruption the same command resumes with the settings
        # still to train. Where the data set lies (``dataset_source``) is not part of the key, nor,
        # for the label-blind settings, the label-aware setting's options (changing them retrains
        # only that setting).
        keyed = {**config, "training": {k: v for k, v in training.items() if k != "dataset_source"}}
        blind = {**keyed, "planning": {k: v for k, v in config["planning"].items() if not k.startswith("label_")},
                 "settings": [s for s in config["settings"] if s["name"] != "label-aware"]}
        key = {name: hashlib.sha256(json.dumps(keyed if name == "label-aware" else blind,
                                               sort_keys=True).encode()).hexdigest()[:16] for name, _ in settings}
        finished = out / "finished"
        if old := sorted(finished.glob("*.pkl")):
            console.print(
                f"notice: {len(old)} .pkl file(s) in {escape(str(finished))} are ignored "
                "(an older format; pickle files are never loaded)",
                highlight=False,
                soft_wrap=True,
            )
        kept = {name: _kept(finished / f"{name}-{key[name]}.json", name) for name, _ in settings}
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        results = []
        from contextlib import nullcontext

        from foglearn.learning.executors import ray_session

        where = parse_executor(executor)  # one Ray session for both trainings (each would start its own)
        session = ray_session(where, threads) if where.kind == "ray" and None in kept.values() else nullcontext()
        with session, Progress(
            TextColumn("{task.description:<14}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("slots"),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        ) as bar:
            for name, p in settings:
                task = bar.add_task(name, total=horizon * passes)
                if (r := kept[name]) is not None:
                    results.append(r)
                    bar.update(task, completed=horizon * passes, description=f"{name} (kept)")
                    continue
                with warnings.catch_warnings(record=True) as said:  # the trainer's notices, in the CLI's words
                    warnings.simplefilter("always")
                    r = train(
                        scenario,
                        p,
                        dataset=data,
                        model=model if model in MODELS else factory,
                        period=period,
                        lr=lr,
                        seed=seed,
                        passes=passes,
                        threads=threads,
                        name=name,
                        local_update=update,
                        partition=part,
                        progress=functools.partial(_advance, bar, task),
                        executor=executor,
                        class_weights=label_weights if name == "label-aware" else None,
                    )
                for note in dict.fromkeys(str(w.message) for w in said if w.category is UserWarning):
                    console.print(f"[yellow]warning: {name}: {escape(note)}[/]")
                for w in said:  # others (a library's deprecations) as the user's warning filters say
                    if w.category is not UserWarning:
                        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
                save_result(r, finished / f"{name}-{key[name]}.json")
                results.append(r)
        chance = 1.0 / data.n_classes
        flags = {r.name: near_chance(r.accuracy, data.n_classes) for r in results}
        rows = [
            (
                f"{r.name} [bold red](NEAR CHANCE)[/]" if flags[r.name] else r.name,
                {**r.costs, "accuracy": r.accuracy},
            )
            for r in results
        ]
        console.print(
            cost_table(
                rows,
                title=f"{data.name}, {model.upper()}, n = {n}, T = {horizon}, τ = {period}, "
                f"η = {lr}, passes = {passes}, {update}, {part.spec}, seed = {seed}",
                extra=("accuracy",),
            )
        )
        diverged = {r.name for r in results if not np.all(np.isfinite(r.eval_loss))}
        for name in (k for k, v in flags.items() if v):
            why = (f"its test loss is not finite: training diverged at η = {lr} (lower --lr)" if name in diverged
                   else "the model did not learn at this budget (try --budget default or more --passes)")
            console.print(
                f"[bold red]warning: {name} ended within {NEAR_CHANCE:.0%} points of chance ({chance:.0%}): {why}[/]",
                highlight=False,
                soft_wrap=True,
            )
        config["training"]["threads"] = threads
        atomic_write(out / "config.toml", tomli_w.dumps(config))
        drawn = results[0].config.get("partition", {})
        hist = np.asarray(drawn.get("label_histograms", np.zeros((n, data.n_classes))), dtype=np.int64)
        result_doc = {
            "settings": [
                {
                    **r.as_dict(),
                    "name": r.name,
                    "unit_cost": r.costs["unit"],
                    "accuracy": r.accuracy,
                    "chance": chance,
                    "near_chance": flags[r.name],
                }
                for r in results
            ],
            "partition": {
                **part.as_dict(),
                "label_histograms": hist.tolist(),
                "proportions": drawn.get("proportions"),
            },
            "dataset": data.summary(),
            "scenario": scenario.summary(),
            "config": config,
        }
        write_json(out / "result.json", result_doc)
        write_csv(
            out / "slots.csv", [{"setting": r.name, **row} for r in results for row in r.slot_rows()]
        )
        write_csv(
            out / "device_loss.csv",
            [
                {
                    "setting": r.name,
                    "slot": s + 1,
                    **{
                        f"device_{i}": (None if np.isnan(v) else float(v))
                        for i, v in enumerate(r.device_loss[s])
                    },
                }
                for r in results
                for s in range(r.device_loss.shape[0])
            ],
        )
        plot_curves(results, out / "loss.png", out / "accuracy.png")
        plot_histograms(
            hist,
            out / "labels.png",
            title=f"labels collected per device ({part.spec}, {passes} pass{'es' if passes != 1 else ''})",
        )
        written = list(OUTPUTS)
        if log is not None:
            write_tensorboard(out, {r.name: (r.slot_rows(), r.costs) for r in results})
            written.append(f"tensorboard/{{{','.join(r.name for r in results)}}}/")
        console.print(f"run directory: {out} ({', '.join(written)})")
        payload = {"run_directory": str(out), **result_doc}

    if json_out:
        emit_json(payload)


def register(app: typer.Typer) -> None:
    app.command("run")(run_command)
