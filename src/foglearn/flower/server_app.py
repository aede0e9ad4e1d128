"""The ServerApp: discovers the devices, runs :class:`FogStrategy` for ``T`` slots, writes the run.

Run directory (``run-dir``): ``config.toml`` (the run config), ``result.json`` (per-slot
movement, the plan and the counts it implies, measured costs, realised costs, accuracy after
every aggregation, aggregation weights, failures per slot, wall time), ``model.npz`` (the final
global model's arrays by name), ``estimates/`` (each window's estimated scenario, ``.npz``).

The run *fails loudly* (raises after writing ``result.json`` with ``status = "failed"``) when
no aggregation took any update (every device failed or processed nothing), the final loss is
not finite, or the final accuracy is not above ``min-accuracy``: a Flower run whose ClientApps all died otherwise ends
"successfully" with the initial model.
"""

from __future__ import annotations

import functools
import io
import math
import time
from collections.abc import Iterable
from logging import INFO, WARNING
from pathlib import Path
from typing import Any

import numpy as np
import tomli_w
from flwr.app import Array, ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.serverapp import Grid, ServerApp
from flwr.supercore import log

import foglearn.planning
from foglearn.errors import RunError
from foglearn.flower import task
from foglearn.flower.config import FlowerRunConfig
from foglearn.flower.strategy import FogStrategy, discover
from foglearn.io import atomic_write, write_json


class FlowerRunError(RunError):
    """A Flower run that learned nothing or could not start."""


#: Seconds between two pulls of a slot's replies (:class:`PollingGrid`).
REPLY_POLL_SECONDS = 0.05


class PollingGrid(Grid):
    """The run's :class:`~flwr.serverapp.Grid`, pulling replies every ``poll`` seconds.

    flwr 1.42's deployment Grid (``HttpGrid``) sleeps 3 s between two pulls of the replies in
    ``send_and_receive``, so every slot ends on average 1.5 s after its last reply; the simulation
    runtime's Grid pulls every 0.1 s. This wrapper sends with the wrapped Grid and pulls the replies
    itself every ``poll`` seconds (one small request to the SuperLink each), with the same timeout
    rule: wait at most ``timeout`` seconds (``None``: until every reply is in). Everything else is
    the wrapped Grid's.
    """

    def __init__(self, grid: Grid, poll: float = REPLY_POLL_SECONDS) -> None:
        self.grid = grid
        self.poll = float(poll)

    def set_run(self, run: Any) -> None:
        self.grid.set_run(run)

    @property
    def run(self) -> Any:
        return self.grid.run

    def create_message(self, content: RecordDict, message_type: str, dst_node_id: int, group_id: str,
                       ttl: float | None = None) -> Message:
        return self.grid.create_message(content, message_type, dst_node_id, group_id, ttl)

    def get_node_ids(self) -> Iterable[int]:
        return self.grid.get_node_ids()

    def get_nodes(self) -> Iterable[Any]:
        return self.grid.get_nodes()

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        return self.grid.push_messages(messages)

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        return self.grid.pull_messages(message_ids)

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> Iterable[Message]:
        waiting = set(self.grid.push_messages(messages))
        end = time.time() + (timeout or 0.0)
        replies: list[Message] = []
        while waiting:
            got = list(self.grid.pull_messages(waiting))
            replies += got
            waiting -= {m.metadata.reply_to_message_id for m in got}
            if not waiting or (timeout is not None and time.time() >= end):
                break
            time.sleep(self.poll)
        return replies


def discover_devices(grid: Grid, cfg: FlowerRunConfig, wait_s: float) -> dict[int, int]:
    """Ask every connected node which device it is (``query.hello``); device → node id."""
    deadline = time.time() + wait_s
    while len(nodes := list(grid.get_node_ids())) < cfg.num_devices:
        if time.time() > deadline:
            raise FlowerRunError(f"only {len(nodes)} of {cfg.num_devices} SuperNodes connected within {wait_s:.0f} s")
        time.sleep(0.5)
    mapping, problems, _ = discover(grid, nodes, cfg.num_devices, wait_s)
    for p in problems:
        log(WARNING, "foglearn: %s", p)
    missing = sorted(set(range(cfg.num_devices)) - set(mapping))
    if missing:
        raise FlowerRunError(f"no SuperNode answered for devices {missing}")
    return mapping


def run_server(grid: Grid, cfg: FlowerRunConfig, planner: Any = None) -> dict[str, Any]:
    """Run the paper's loop on ``grid`` and write the run directory; returns ``result.json``'s content."""
    t0 = time.perf_counter()
    import torch

    grid = grid if isinstance(grid, PollingGrid) else PollingGrid(grid)

    torch.set_num_threads(1)
    run_dir = Path(cfg.run_dir or f"runs/flower-{time.strftime('%Y%m%d-%H%M%S')}").expanduser().resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write(run_dir / "config.toml", tomli_w.dumps({"flower": cfg.to_user_config()}))
    log(INFO, "foglearn: run directory %s", run_dir)

    ds = task.dataset(cfg)
    sc = task.scenario(cfg)
    if planner is None and cfg.movement:
        planner = functools.partial(foglearn.planning.plan, solver=cfg.solver)
    node_of_device = discover_devices(grid, cfg, max(cfg.slot_timeout, 30.0))
    strategy = FogStrategy(cfg, node_of_device, sc.src, sc.dst, planner, true_scenario=sc,
                           estimates_dir=run_dir / "estimates", sample_shape=ds.x_train.shape[1:],
                           num_classes=int(ds.y_train.max()) + 1)
    model = task.new_model(cfg)
    n_eval = cfg.eval_points or len(ds.y_test)
    x_test, y_test = ds.x_test[:n_eval], ds.y_test[:n_eval]
    curve: list[dict[str, float]] = []

    def evaluate_fn(server_round: int, arrays: ArrayRecord) -> MetricRecord | None:
        if server_round > 0 and not strategy.aggregated_now:
            return None
        task.set_arrays(model, {k: v.numpy() for k, v in arrays.items()})
        acc, loss = task.evaluate(model, x_test, y_test)
        curve.append({"slot": server_round - 1, "accuracy": acc, "loss": loss})
        return MetricRecord({"accuracy": acc, "loss": loss})

    initial = ArrayRecord({k: Array(v) for k, v in task.get_arrays(model).items()})
    outcome = strategy.start(grid=grid, initial_arrays=initial, num_rounds=cfg.horizon, timeout=cfg.slot_timeout,
                             evaluate_fn=evaluate_fn)
    buf = io.BytesIO()
    final: dict[str, Any] = {k: v.numpy() for k, v in outcome.arrays.items()}
    np.savez(buf, **final)
    atomic_write(run_dir / "model.npz", buf.getvalue())

    failures_per_slot = [sum(1 for f in strategy.failures if f["slot"] == t) for t in range(cfg.horizon)]
    learned = sum(sum(a["weights"].values()) for a in strategy.aggregations if a.get("applied"))
    final_acc = curve[-1]["accuracy"] if curve else float("nan")
    final_loss = curve[-1]["loss"] if curve else float("nan")
    reasons = []
    if not math.isfinite(final_loss):
        reasons.append(f"final loss {final_loss} is not finite")
    if learned == 0:
        reasons.append("no aggregation took any update (all devices failed or processed nothing)")
    if cfg.min_accuracy >= 0 and not final_acc > cfg.min_accuracy:
        reasons.append(f"final accuracy {final_acc:.4f} is not above min-accuracy {cfg.min_accuracy}")
    result = {
        "status": "failed" if reasons else "ok",
        "why_failed": reasons,
        "config": cfg.as_dict(),
        "n_devices": cfg.num_devices, "horizon": cfg.horizon, "period": cfg.period,
        "edges": {"src": sc.src.tolist(), "dst": sc.dst.tolist()},
        "node_of_device": {str(k): v for k, v in node_of_device.items()},
        "movement": strategy.movement(),
        "planned": strategy.planned(),
        "measured": {"proc_seconds_per_point": strategy.proc_spp, "relay_seconds_per_point": strategy.relay_spp,
                     "replayed_proc_cost": strategy.replayed_proc_cost},
        "costs": strategy.realised_costs(),
        "accuracy": curve,
        "initial_accuracy": curve[0]["accuracy"] if curve else None,
        "final_accuracy": final_acc,
        "aggregations": strategy.aggregations,
        "failures": strategy.failures,
        "failures_per_slot": failures_per_slot,
        "rejoined": strategy.rejoined,
        "final_loss": final_loss,
        "slot_seconds": strategy.slot_seconds,
        "wall_seconds": time.perf_counter() - t0,
    }
    write_json(run_dir / "result.json", result, indent=1)
    log(INFO, "foglearn: %d failures in %d slots; final accuracy %.4f; wrote %s",
        sum(failures_per_slot), cfg.horizon, final_acc, run_dir / "result.json")
    if reasons:
        raise FlowerRunError("foglearn Flower run learned nothing: " + "; ".join(reasons)
                             + f" (see {run_dir / 'result.json'})")
    return result


def make_server_app(cfg: FlowerRunConfig | None = None, planner: Any = None) -> ServerApp:
    """A ServerApp bound to ``cfg`` (in-process runs) or reading Flower's run config (``flwr run``)."""
    server = ServerApp()

    @server.main()
    def main(grid: Grid, context: Context) -> None:
        run_cfg = cfg if cfg is not None else FlowerRunConfig.from_user_config(context.run_config)
        run_server(grid, run_cfg, planner=planner)

    return server


app = make_server_app()
