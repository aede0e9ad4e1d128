"""The device: a Flower ClientApp running one slot of the paper's loop per ``train`` message.

Per slot ``t`` the device (paper Sec. III, eqs. 3, 6):

1. collects ``D_i(t)`` new points from its stream (its partition of the dataset);
2. splits them by the server's fractions into kept (``s_ii``), offloaded per neighbour
   (``s_ij``) and discarded (``r_i``) with :func:`~foglearn.flower.protocol.split_counts`;
3. processes ``G_i(t)`` = kept points + the points offloaded to it in ``t-1`` (relayed by the
   server in this message), capped by ``C_i(t)``: one SGD step (eq. 3), timed;
4. replies with its counts, its measured costs (seconds per point processed; seconds per point
   for the relay leg that brought it data), its replayed scenario costs, the offloaded points
   themselves (the server relays them), and, on aggregation slots, its local model.

What it measures never includes starting a process: the processing time is the SGD step alone
(:func:`task.sgd_step`, timed inside the handler, after the data set and the model are in
memory), and the relay leg (the message's creation at the server to the handler's entry) is
measured only by a process that has already handled a message (``warm``): a fresh process —
Flower's default of one ``flwr-clientapp`` process per message — spent that time starting and
importing, so it reports no relay measurement and the server keeps the replayed link cost.

The local model and ``H_i`` (points processed since the last global model) live in
``context.state`` between slots. Message keys are documented in :mod:`foglearn.flower.strategy`.
"""

from __future__ import annotations

import os
import time
from typing import TypeVar

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from foglearn.flower import task
from foglearn.flower.config import FlowerRunConfig
from foglearn.flower.protocol import scenario_report, split_counts
from foglearn.planning.rules import whole_points

app = ClientApp()

#: Messages this process has handled (0 in a fresh process: its timings include its start-up).
_handled = 0


def _device_id(context: Context) -> int:
    if "partition-id" not in context.node_config:
        raise RuntimeError("this SuperNode has no 'partition-id' in its node config; start it with "
                           "--node-config 'partition-id=<device> num-partitions=<n>'")
    return int(context.node_config["partition-id"])


@app.query("hello")
def hello(msg: Message, context: Context) -> Message:
    """Tell the server which device this node is (its ``partition-id``)."""
    global _handled
    _handled += 1
    dev = _device_id(context)
    return Message(RecordDict({"hello": MetricRecord({"device": dev})}), reply_to=msg)


def _records(arr: dict[str, np.ndarray]) -> ArrayRecord:
    return ArrayRecord({k: Array(np.ascontiguousarray(v)) for k, v in arr.items()})


def _numpy(rec: ArrayRecord) -> dict[str, np.ndarray]:
    return {k: v.numpy() for k, v in rec.items()}


# Typed access to what the server sends (and to this node's own state): a record or value of the
# wrong type is a ValueError naming the key, never a silent conversion.
_R = TypeVar("_R", ArrayRecord, MetricRecord, ConfigRecord)


def _record(content: RecordDict, key: str, kind: type[_R]) -> _R:
    rec = content[key]
    if not isinstance(rec, kind):
        raise ValueError(f"record {key!r} is a {type(rec).__name__}, expected a {kind.__name__}")
    return rec


def _config_int(rec: ConfigRecord, key: str) -> int:
    value = rec[key]
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"config {key!r} = {value!r}: expected an int")
    return value


def _config_float(rec: ConfigRecord, key: str) -> float:
    value = rec[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"config {key!r} = {value!r}: expected a number")
    return float(value)


def _config_bool(rec: ConfigRecord, key: str) -> bool:
    value = rec[key]
    if not isinstance(value, bool):
        raise ValueError(f"config {key!r} = {value!r}: expected a bool")
    return value


def _config_int_list(rec: ConfigRecord, key: str) -> list[int]:
    value = rec[key]
    if not isinstance(value, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        raise ValueError(f"config {key!r} = {value!r}: expected a list of ints")
    return [int(v) for v in value]


def _config_float_list(rec: ConfigRecord, key: str) -> list[float]:
    value = rec[key]
    if not isinstance(value, list) or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                              for v in value):
        raise ValueError(f"config {key!r} = {value!r}: expected a list of numbers")
    return [float(v) for v in value]


@app.train()
def train(msg: Message, context: Context) -> Message:
    """One slot of the loop for this device (see the module docstring)."""
    global _handled
    t_enter = time.time()
    latency_in = max(0.0, t_enter - float(msg.metadata.created_at))
    warm = _handled > 0
    _handled += 1
    run_cfg = dict(_record(msg.content, "run", ConfigRecord))
    cfg = FlowerRunConfig.from_user_config(run_cfg)
    ins = _record(msg.content, "cfg", ConfigRecord)
    dev = _device_id(context)
    slot = _config_int(ins, "slot")
    if (to := _config_int(ins, "device")) != dev:
        raise RuntimeError(f"message for device {to} reached device {dev}")
    lies = set()
    for fault in cfg.fault_list:
        if fault.hits(dev, slot):
            if fault.lie:
                lies.add(fault.lie)
                continue
            if fault.kill:
                os._exit(17)  # like an OOM kill: the process vanishes without a reply
            raise RuntimeError(f"injected fault: device {dev} fails in slot {slot}")

    ds = task.dataset(cfg)
    sc = task.scenario(cfg)
    n_train = len(ds.y_train)

    # ---- local model: a new global model resets it and H_i (eq. 4's bookkeeping)
    model = task.new_model(cfg)
    if "global" in msg.content:
        task.set_arrays(model, _numpy(_record(msg.content, "global", ArrayRecord)))
        h, version = 0, _config_int(ins, "version")
    elif "local" in context.state and "meta" in context.state:
        task.set_arrays(model, _numpy(_record(context.state, "local", ArrayRecord)))
        meta = _record(context.state, "meta", ConfigRecord)
        h, version = _config_int(meta, "h"), _config_int(meta, "version")
    else:
        raise RuntimeError(f"device {dev}: no model (lost its state and got no global model in slot {slot})")

    # ---- 1-2: collect D_i(t) and split it by the plan's fractions
    idx = task.stream_slice(cfg, sc, dev, slot, n_train)
    D = int(idx.size)
    off_dst = _config_int_list(ins, "off-dst")
    off_edge = _config_int_list(ins, "off-edge")
    off_frac = _config_float_list(ins, "off-frac")
    # nothing is sent on a link unusable in this slot: discarded (docs/model.md §2, as planning.realise)
    usable_out = sc.usable_links()[slot, off_edge] if off_edge else np.zeros(0, bool)
    off_frac = [f if ok else 0.0 for f, ok in zip(off_frac, usable_out)]
    counts = split_counts(D, [_config_float(ins, "keep"), *off_frac])
    # a link carries at most C_ij(t); the excess stays here and is dropped (docs/model.md §2)
    dropped_link = 0
    for k, e in enumerate(off_edge):
        cap = int(whole_points(sc.link_cap[slot, e]))
        if counts[1 + k] > cap:
            over = counts[1 + k] - cap
            counts[1 + k] -= over
            dropped_link += over
    kept_n = int(counts[0])
    x_new, y_new = ds.x_train[idx], ds.y_train[idx]
    pos = kept_n
    out_x, out_y, out_dst = [], [], []
    off_counts = []
    for k, j in enumerate(off_dst):
        c = int(counts[1 + k])
        off_counts.append(c)
        out_x.append(x_new[pos:pos + c])
        out_y.append(y_new[pos:pos + c])
        out_dst.append(np.full(c, j, dtype=np.int64))
        pos += c
    discarded = D - kept_n - sum(off_counts)

    # ---- 3: process G_i(t) = kept + received, capped by C_i(t)
    xs, ys = [x_new[:kept_n]], [y_new[:kept_n]]
    received, recv_src = 0, np.zeros(0, dtype=np.int64)
    if "incoming" in msg.content:
        inc = _numpy(_record(msg.content, "incoming", ArrayRecord))
        xs.append(inc["x"])
        ys.append(inc["y"])
        recv_src = inc["src"].astype(np.int64)
        received = int(inc["y"].size)
    x_proc = np.concatenate(xs) if xs else np.zeros((0, *ds.x_train.shape[1:]), np.float32)
    y_proc = np.concatenate(ys) if ys else np.zeros(0, np.int64)
    cap = int(whole_points(sc.proc_cap[slot, dev]))
    dropped_proc = 0
    if y_proc.size > cap:
        keep_n = cap
        dropped_proc = int(y_proc.size - keep_n)
        sel = np.sort(np.random.default_rng([cfg.seed, dev, slot]).permutation(y_proc.size)[:keep_n])
        x_proc, y_proc = x_proc[sel], y_proc[sel]
    G = int(y_proc.size)
    proc_seconds = task.sgd_step(model, x_proc, y_proc, cfg.lr) if G > 0 else 0.0
    h += G
    arrays = task.get_arrays(model)
    context.state["local"] = _records(arrays)
    context.state["meta"] = ConfigRecord({"h": h, "version": version})

    # ---- 4: report what was collected, done and measured
    measured_link = []
    for s in sorted(set(recv_src.tolist())) if warm else []:
        k = int((recv_src == s).sum())
        measured_link += [float(s), latency_in / k]
    report = MetricRecord({
        "slot": slot, "device": dev, "collected": D, "kept": kept_n, "discarded": int(discarded),
        "off-count": off_counts or [0], "received": received, "processed": G,
        "dropped": int(dropped_proc + dropped_link), "h": 10**9 if "h" in lies else h,
        "version": version,
        "proc-seconds": proc_seconds, "proc-seconds-per-point": proc_seconds / G if G else -1.0,
        "latency-in": latency_in, "handler-seconds": time.time() - t_enter, "warm": int(warm),
        # the scenario's values at this device, replayed like a traced device (docs/model.md §5)
        **scenario_report(sc, slot, dev),
        # measured: seconds per point on the relay leg that brought points from each source
        # (a warm process only: a fresh one spent that time starting)
        "measured-link": measured_link or [-1.0, -1.0],
    })
    content = RecordDict({"report": report})
    if sum(off_counts):
        content["out"] = _records({"x": np.concatenate(out_x), "y": np.concatenate(out_y),
                                   "dst": np.concatenate(out_dst)})
    if _config_bool(ins, "send-model"):
        content["model"] = _records(_lie(arrays, lies))
    return Message(content, reply_to=msg)


def _lie(arrays: dict[str, np.ndarray], lies: set[str]) -> dict[str, np.ndarray]:
    """The model a lying device sends (injected faults ``~nan``, ``~shape``: tests only)."""
    if not lies & {"nan", "shape"}:
        return arrays
    arrays = dict(arrays)
    k = next(iter(arrays))
    if "nan" in lies:
        arrays[k] = np.full_like(arrays[k], np.nan)
    if "shape" in lies:
        arrays[k] = np.zeros((*arrays[k].shape, 2), arrays[k].dtype)
    return arrays


def make_client_app() -> ClientApp:
    """The ClientApp (kept as a function for symmetry with :func:`make_server_app`)."""
    return app
