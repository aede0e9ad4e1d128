"""Execute runs: one configuration (:func:`run_one`) and sweeps of them (:func:`run_sweep`).

A sweep runs seeds × settings in a process pool (``jobs`` workers, each with one torch thread),
shows progress with rich, writes each finished run atomically to ``results/<key>.json`` *from
the worker*, skips runs whose file exists when restarted, and on Ctrl-C cancels what has not
started while keeping everything already finished.
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import multiprocessing as mp
import os
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from foglearn.errors import RunError
from foglearn.experiments.config import LATER_FIELDS, RunConfig
from foglearn.experiments.storage import ResultStore


class RunFailed(RunError):
    """A run raised; the message names its key and configuration and carries the traceback."""


# --------------------------------------------------------------------------------------------
# one run
# --------------------------------------------------------------------------------------------

def build_scenario(cfg: RunConfig, dataset_size: int | None = None) -> Any:
    """The run's :class:`~foglearn.network.Scenario` (synthetic, or replayed traces).

    With ``profile = "traces"`` the traced links are intersected with the requested topology
    (any of :data:`foglearn.network.topology.TOPOLOGIES`; ``full`` keeps every traced link), so
    Fig. 8's topologies also apply to measured traces. With ``churn > 0`` devices leave and join
    per :func:`churn_schedule` (:func:`foglearn.network.with_churn`, handover per ``cfg.handover``).
    """
    scen = _base_scenario(cfg, dataset_size)
    if cfg.churn > 0:
        from foglearn.network import with_churn

        leave, join = churn_schedule(scen.n_devices, scen.horizon, cfg.churn, cfg.seed)
        scen = with_churn(scen, leave=leave, join=join, handover=cfg.handover, seed=cfg.seed)
    return scen


def churn_schedule(n: int, horizon: int, fraction: float, seed: int) -> tuple[dict[int, int], dict[int, int]]:
    """Who leaves and who joins, and when (docs/dynamics.md): ``k = round(fraction·n)`` devices
    leave and ``k`` others join, all drawn from ``numpy.random.default_rng([seed, 12])``; each
    leave and join slot is uniform on ``1 … T−1``. The draw does not depend on the handover, so
    the two handover settings of a seed churn the same devices at the same slots."""
    rng = np.random.default_rng([seed, 12])
    k = int(round(fraction * n))
    order = rng.permutation(n)
    leave = {int(i): int(s) for i, s in zip(order[:k], rng.integers(1, horizon, size=k))}
    join = {int(i): int(s) for i, s in zip(order[k:2 * k], rng.integers(1, horizon, size=k))}
    return leave, join


def _base_scenario(cfg: RunConfig, dataset_size: int | None) -> Any:
    """The run's scenario before churn: synthetic, or replayed traces (:func:`build_scenario`)."""
    from foglearn.network import from_traces, synthetic
    from foglearn.network import topology as topo

    if cfg.profile != "traces":
        kwargs: dict[str, Any] = {}
        if dataset_size is not None:
            kwargs["dataset_size"] = dataset_size
        return synthetic(n_devices=cfg.n_devices, horizon=cfg.horizon, topology=cfg.topology, rho=cfg.rho,
                         capacities=cfg.capacities, seed=cfg.seed, profile=cfg.profile,
                         error_decay_period=cfg.error_decay_period, persistence=cfg.persistence, **kwargs)
    assert cfg.traces_dir is not None
    max_points = max(1, (dataset_size or 60_000) // (cfg.n_devices * cfg.horizon))
    # a run asks for its own n and T: the traces tile to them (device i replays node i mod N), with a warning
    scen = from_traces(cfg.traces_dir, n_devices=cfg.n_devices, horizon=cfg.horizon, repeat=True, seed=cfg.seed,
                       max_points=max_points)
    if not cfg.capacities:
        scen = scen.replace(proc_cap=None, link_cap=None)
    if cfg.topology != "full":
        inputs = topo.TopologyInputs(n=scen.n_devices, rng=np.random.default_rng([cfg.seed, 8]), rho=cfg.rho,
                                     proc_cost_mean=scen.proc_cost.mean(axis=0))
        src, dst = topo.build(cfg.topology, inputs)
        wanted = set(zip(src.tolist(), dst.tolist()))
        keep = np.array([(int(a), int(b)) in wanted for a, b in zip(scen.src, scen.dst)], dtype=bool)
        scen = scen.replace(src=scen.src[keep], dst=scen.dst[keep], link_cost=scen.link_cost[:, keep],
                            link_cap=scen.link_cap[:, keep], link_up=scen.link_up[:, keep])
    if cfg.error_decay_period is not None:
        within = (np.arange(scen.horizon) % cfg.error_decay_period) + 1
        scen = scen.replace(error_weight=scen.error_weight / np.sqrt(within)[:, None])
    return scen


def slot_rates(scenario: Any, plan: Any) -> dict[str, list[float]]:
    """Per-slot offloading, processing-at-source and discard rates (fractions of ``Σ_i D_i(t)``).

    Slots where nothing was collected get ``nan``.
    """
    D = scenario.collected.astype(np.float64)
    per_slot = D.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        if scenario.n_edges:
            off = (plan.offload * D[:, scenario.src]).sum(axis=1)
        else:
            off = np.zeros(scenario.horizon)
        keep = (plan.keep * D).sum(axis=1)
        disc = (plan.discard * D).sum(axis=1)
        rates = {"offload_rate": off / per_slot, "keep_rate": keep / per_slot, "discard_rate": disc / per_slot}
    return {k: [float(x) if per_slot[t] > 0 else float("nan") for t, x in enumerate(v)] for k, v in rates.items()}


def _dataset_size(name: str) -> int:
    """``|D_V|``: the size of the training pool the scenario allocates ``D_i(t)`` from (docs/model.md §4)."""
    from foglearn.learning import datasets

    if name in datasets.SIZES:
        return int(datasets.SIZES[name][0])
    if name == "tiny":
        return int(datasets.TINY_SIZES[0])
    return datasets.load_dataset(name).n_train


def run_one(cfg: RunConfig) -> dict[str, Any]:
    """Run one configuration and return its record (JSON-able dict).

    Steps: build the scenario; plan (``movement = False`` and ``federated`` → no movement); record
    the realised costs (:class:`~foglearn.planning.CostBreakdown`) and per-slot rates; train if
    ``cfg.train`` (``federated``: τ = 1; ``centralised``: all data at one server); record accuracy
    and curves. Timings of each step are in ``seconds``.
    """
    from foglearn.planning import plan as make_plan

    t0 = time.perf_counter()
    seconds: dict[str, float] = {}
    size = _dataset_size(cfg.dataset)  # the allocation |D_V|/(nT) depends on the data set, trained or not
    scenario = build_scenario(cfg, dataset_size=size)
    seconds["scenario"] = time.perf_counter() - t0

    t1 = time.perf_counter()
    movement = cfg.movement and cfg.method == "network-aware"
    data = None
    planning: dict[str, Any] = {}
    if movement:
        planning["solver"] = cfg.solver
    if cfg.labels_needed:  # the label-aware planner reads D_i^c(t) of the run's partition
        from foglearn.learning.datasets import load_dataset
        from foglearn.learning.partition import class_arrivals

        data = load_dataset(cfg.dataset)
        planning["labels"] = class_arrivals(cfg.partition, scenario.collected, data.y_train, cfg.seed)
        planning["period"] = cfg.period  # balance each device's label mix over its aggregation period τ
    plan = make_plan(scenario, error=cfg.error, information=cfg.information if movement else "perfect",
                     movement=movement, **planning)
    seconds["plan"] = time.perf_counter() - t1

    record: dict[str, Any] = {
        "key": cfg.key(),
        "config": cfg.as_dict(),
        "scenario": {"n_devices": scenario.n_devices, "horizon": scenario.horizon, "n_edges": scenario.n_edges,
                     "collected": int(scenario.total_collected), "info": {k: v for k, v in scenario.info.items()
                                                                            if isinstance(v,
                                                                                          int | float | str | bool)}},
        "costs": plan.costs.as_dict(),
        "solver": plan.stats.as_dict(),
        "slots": slot_rates(scenario, plan),
        "training": None,
    }
    if "churn" in scenario.info:  # counts of with_churn (docs/dynamics.md), only on churned runs
        record["churn"] = scenario.info["churn"]
    if cfg.train:
        import warnings

        t2 = time.perf_counter()
        with warnings.catch_warnings():
            # passes > 1 reuses points by design; the record keeps the trainer's `wrapped` flag
            warnings.filterwarnings("ignore", message=".*point stream wraps.*")
            # so does a skewed partition, whose devices repeat the points of their few labels
            warnings.filterwarnings("ignore", message=".*points repeat.*")
            record["training"] = _train(cfg, scenario, plan, data)
        seconds["train"] = time.perf_counter() - t2
    seconds["total"] = time.perf_counter() - t0
    record["seconds"] = seconds
    return record


def _train(cfg: RunConfig, scenario: Any, plan: Any, data: Any = None) -> dict[str, Any]:
    """Train per ``cfg.method`` and return accuracy, final test loss, curves and realised costs.

    ``centralised`` and ``federated`` are :mod:`foglearn.learning`'s baselines (same stream of
    points, η, seed and budget); every other method executes ``plan`` with period ``cfg.period``.
    ``federated`` and the plan's training take ``cfg.local_update`` (eq. (3) or mini-batches),
    ``cfg.partition`` (the labels each device collects) and ``cfg.class_weights`` (the loss's).
    ``centralised`` trains on the pooled i.i.d. stream (``partition = "iid"`` only): with eq. (3) it is
    :func:`foglearn.learning.centralised` (one step per slot on all ``Σ_i D_i(t)`` points); with
    ``"minibatch:B"`` the server is the one device of :func:`server_scenario`, which takes
    ``⌈Σ_i D_i(t)/B⌉`` steps per slot on the same points. ``data``: the data set already loaded
    (by a label-aware plan), else ``cfg.dataset`` is loaded by the trainer.
    """
    from foglearn.learning import centralised, federated, no_movement_plan, train

    common: dict[str, Any] = dict(dataset=cfg.dataset if data is None else data, model=cfg.model, lr=cfg.lr,
                                  seed=cfg.seed, passes=cfg.passes, eval_every=cfg.eval_every, threads=_threads())
    if cfg.method == "centralised" and cfg.local_update == "paper":
        result = centralised(scenario, period=cfg.period, **common)
    elif cfg.method == "centralised":  # the server as the one device of a network: its update rule applies
        server = server_scenario(scenario)
        result = train(server, no_movement_plan(server), period=cfg.period, name=cfg.method,
                       local_update=cfg.local_update, **common)
        record = training_record(result)
        record["costs"] = {"processing": float("nan"), "transfer": 0.0, "discard": 0.0, "total": float("nan"),
                           "unit": float("nan"), "collected": int(scenario.collected.sum()),
                           "processed": float(scenario.collected.sum())}  # as centralised(): a server's costs
        return record
    else:
        rule: dict[str, Any] = dict(local_update=cfg.local_update, partition=cfg.partition,
                                    class_weights=cfg.class_weights)
        if cfg.method == "federated":
            result = federated(scenario, **common, **rule)
        else:
            result = train(scenario, plan, period=cfg.period, name=cfg.method, **common, **rule)
    return training_record(result)


def server_scenario(scenario: Any) -> Any:
    """Centralised learning as a network of one device, the server, that collects every point the
    devices collect: ``D_1(t) = Σ_i D_i(t)``, no links, no costs. Its points in slot ``t`` are the
    same positions of the same seeded stream that :func:`foglearn.learning.centralised` takes, so
    :func:`foglearn.learning.train` with its no-movement plan and eq. (3) is that baseline (to
    float round-off, tests/test_experiments_learning_fields.py), and any other local update rule
    applies to the server as to a device."""
    from foglearn.network.scenario import Scenario

    T = scenario.horizon
    return Scenario(collected=scenario.collected.sum(axis=1, keepdims=True), proc_cost=np.zeros((T, 1)),
                    error_weight=np.zeros((T, 1)), src=np.zeros(0, dtype=np.int64), dst=np.zeros(0, dtype=np.int64),
                    link_cost=np.zeros((T, 0)))


def _threads() -> int | None:
    """One torch thread inside a sweep (worker or in-process), torch's own setting otherwise."""
    return 1 if os.environ.get(_WORKER_ENV) else None


def training_record(result: Any) -> dict[str, Any]:
    """The JSON-able part of a :class:`~foglearn.learning.results.TrainResult`: accuracy, final
    test loss, the test curve at each aggregation, the per-device training loss per slot (Fig. 4),
    the realised costs the trainer reports and its wall time."""
    curves = {
        "eval_slot": np.asarray(result.eval_slot, dtype=float).tolist(),
        "eval_accuracy": np.asarray(result.eval_accuracy, dtype=float).tolist(),
        "eval_loss": np.asarray(result.eval_loss, dtype=float).tolist(),
        "device_loss": np.asarray(result.device_loss, dtype=float).tolist(),
    }
    return {"accuracy": float(result.accuracy), "test_loss": float(result.test_loss), "curves": curves,
            "points_processed": int(np.asarray(result.processed).sum()), "costs": dict(result.costs),
            "seconds": float(result.seconds), "wrapped": bool(getattr(result, "wrapped", False))}


# --------------------------------------------------------------------------------------------
# sweeps
# --------------------------------------------------------------------------------------------

@dataclass
class SweepOutcome:
    """What a sweep did: records in the order of the configurations, which keys it computed and
    which it found finished, failures, and whether it was interrupted."""

    records: list[dict[str, Any] | None]
    computed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    interrupted: bool = False
    seconds: float = 0.0

    @property
    def complete(self) -> bool:
        return not self.interrupted and not self.failed and all(r is not None for r in self.records)

    def finished_records(self) -> list[dict[str, Any]]:
        return [r for r in self.records if r is not None]


def _work(cfg: RunConfig, root: str, runner: Callable[[RunConfig], dict[str, Any]]) -> tuple[str, str | None]:
    """Worker body: run, then write the result atomically. Returns (key, error or None)."""
    key = cfg.key()
    try:
        record = runner(cfg)
    except Exception:  # noqa: BLE001 - reported to the parent with its traceback
        return key, traceback.format_exc()
    ResultStore(root).save(key, record)
    return key, None


def _stop_pool(pool: cf.ProcessPoolExecutor) -> None:
    """Ctrl-C: cancel runs not started and end the workers now (a run in progress is lost; its
    result file is never half-written because results are written by rename)."""
    for fut_proc in list(getattr(pool, "_processes", {}).values()):  # the executor keeps no public handle
        if fut_proc.is_alive():
            fut_proc.terminate()
    pool.shutdown(wait=True, cancel_futures=True)


def _init_worker() -> None:
    """Pool worker set-up: one thread for BLAS/OpenMP and torch (torch itself is imported lazily,
    only by runs that train, which then call the trainer with ``threads = 1``)."""
    os.environ["OMP_NUM_THREADS"] = "1"
    os.environ["MKL_NUM_THREADS"] = "1"
    os.environ[_WORKER_ENV] = "1"


_WORKER_ENV = "FOGLEARN_SWEEP_WORKER"


def _remote_work(cfg: RunConfig, runner: Callable[[RunConfig], dict[str, Any]]
                 ) -> tuple[str, dict[str, Any] | None, str | None]:
    """Ray task body: run with one thread and return (key, record, error); the driver stores the
    record (the workers of a cluster need not share the run directory's disk)."""
    _init_worker()
    key = cfg.key()
    try:
        return key, runner(cfg), None
    except Exception:  # noqa: BLE001 - reported to the driver with its traceback
        return key, None, traceback.format_exc()


def _run_on_ray(todo: dict[str, RunConfig], store: ResultStore, executor: str, jobs: int,
                runner: Callable[[RunConfig], dict[str, Any]], done: Callable[[str, str | None], None]) -> None:
    """Every run of ``todo`` as a Ray task (one CPU each; ``executor`` ``"ray"`` or ``"ray:ADDRESS"``,
    :mod:`foglearn.learning.executors`); each record is checked and stored as it arrives, so an
    interrupted sweep keeps every finished run. Ctrl-C cancels the tasks not finished."""
    from foglearn.learning.executors import parse_executor, ray_session

    with ray_session(parse_executor(executor), jobs) as ray:
        task = ray.remote(num_cpus=1)(_remote_work)
        pending = {task.remote(c, runner): k for k, c in todo.items()}
        try:
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                for ref in ready:
                    key = pending.pop(ref)
                    try:
                        got = ray.get(ref)
                    except ray.exceptions.RayError as exc:  # the worker died: report, keep going
                        done(key, f"worker failed: {exc!r}")
                        continue
                    if not (isinstance(got, tuple) and len(got) == 3 and got[0] == key
                            and (got[2] is not None or isinstance(got[1], dict))):
                        done(key, f"a Ray worker returned {type(got).__name__} instead of the record of run {key}")
                        continue
                    if got[2] is None:
                        store.save(key, got[1])
                    done(key, got[2])
        except KeyboardInterrupt:
            for ref in pending:
                ray.cancel(ref, force=True)
            raise


def _with_later_fields(record: dict[str, Any] | None) -> dict[str, Any] | None:
    """A record stored before some of :data:`~foglearn.experiments.config.LATER_FIELDS` existed,
    with those fields at their defaults (how it ran), so that its rows have every column."""
    conf = record.get("config") if record is not None else None
    if record is None or not isinstance(conf, dict) or all(k in conf for k in LATER_FIELDS):
        return record
    full = {**LATER_FIELDS, **conf}
    order = [f.name for f in dataclasses.fields(RunConfig)]
    record["config"] = {**{k: full[k] for k in order if k in full}, **{k: v for k, v in conf.items() if k not in order}}
    return record


def run_sweep(configs: Sequence[RunConfig], root: str | Path, jobs: int = 1, progress: bool = True,
              description: str = "runs", runner: Callable[[RunConfig], dict[str, Any]] = run_one,
              raise_on_failure: bool = True, executor: str = "local") -> SweepOutcome:
    """Run every configuration not already finished under ``root`` and return all records.

    A run is finished when ``root/results/<key>.json`` holds a readable record; a truncated or
    otherwise damaged file counts as unfinished and is computed again (with a warning).

    ``jobs > 1`` uses a process pool (spawned workers, one torch thread each); ``jobs = 1`` runs
    in this process (also with one torch thread, restored afterwards). Duplicate configurations
    run once. A ``KeyboardInterrupt`` cancels pending runs, waits for none, and returns the
    outcome with ``interrupted = True`` (finished runs stay on disk). A failed run raises
    :class:`RunFailed` after the others finish, unless ``raise_on_failure`` is false.

    ``executor = "ray"`` (a Ray cluster of ``jobs`` CPUs started here) or ``"ray:ADDRESS"`` (an
    existing cluster, across machines) runs each configuration as a Ray task instead, with the
    same rules: finished records are stored as they arrive, a rerun computes only what is missing.
    """
    from foglearn.learning.executors import parse_executor

    on_ray = parse_executor(executor).kind == "ray"
    t0 = time.perf_counter()
    store = ResultStore(root)
    keys = [c.key() for c in configs]
    unique: dict[str, RunConfig] = {}
    for k, c in zip(keys, configs):
        unique.setdefault(k, c)
    # a run counts as finished only when its record can be read: a damaged file is computed again
    finished = {k: rec for k in unique if (rec := store.get(k)) is not None}
    todo = {k: c for k, c in unique.items() if k not in finished}
    outcome = SweepOutcome(records=[None] * len(configs), skipped=list(finished))

    bar = None
    if progress:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                       TimeElapsedColumn(), transient=False)
        bar.start()
        task = bar.add_task(description, total=len(unique), completed=len(unique) - len(todo))

    def done(key: str, err: str | None) -> None:
        if err is None:
            outcome.computed.append(key)
        else:
            outcome.failed[key] = err
        if bar is not None:
            bar.advance(task)

    try:
        if on_ray and todo:
            _run_on_ray(todo, store, executor, jobs, runner, done)
        elif jobs <= 1 or len(todo) <= 1:
            previous = os.environ.get(_WORKER_ENV)
            os.environ[_WORKER_ENV] = "1"  # runs in this process also train with one torch thread
            try:
                for c in todo.values():
                    done(*_work(c, str(root), runner))
            finally:
                if previous is None:
                    os.environ.pop(_WORKER_ENV, None)
                else:
                    os.environ[_WORKER_ENV] = previous
        else:
            ctx = mp.get_context("spawn")
            pool = cf.ProcessPoolExecutor(max_workers=min(jobs, len(todo)), mp_context=ctx,
                                          initializer=_init_worker)
            try:
                futures = {pool.submit(_work, c, str(root), runner): k for k, c in todo.items()}
                for fut in cf.as_completed(futures):
                    try:
                        done(*fut.result())
                    except Exception as exc:  # a worker died (e.g. killed): report, keep going
                        done(futures[fut], f"worker failed: {exc!r}")
            except KeyboardInterrupt:
                _stop_pool(pool)
                raise
            else:
                pool.shutdown(wait=True)
    except KeyboardInterrupt:
        outcome.interrupted = True
    finally:
        if bar is not None:
            bar.stop()

    finished.update((k, rec) for k in outcome.computed if (rec := store.get(k)) is not None)
    outcome.records = [_with_later_fields(finished.get(k)) for k in keys]
    outcome.seconds = time.perf_counter() - t0
    if outcome.failed and raise_on_failure and not outcome.interrupted:
        key, err = next(iter(outcome.failed.items()))
        raise RunFailed(f"{len(outcome.failed)} run(s) failed; first: {key} {unique[key].as_dict()}\n{err}")
    return outcome

