"""The server side of the paper's loop as a Flower :class:`~flwr.serverapp.strategy.Strategy`.

One Flower round = one slot ``t``. ``configure_train`` plans (at the start of each window) and
sends every device its instructions; ``aggregate_train`` books what each device reports,
queues the points it offloaded for relay to their receivers in ``t+1``, and every ``τ`` slots
aggregates the local models weighted by ``H_i`` (eq. 4).

Message keys
------------
server → device (``train``): ``run`` (ConfigRecord: the run config), ``cfg`` (ConfigRecord:
``slot``, ``device``, ``keep`` = ``s_ii(t)``, ``off-dst``/``off-edge``/``off-frac`` = the
device's out-links and ``s_ij(t)``, ``send-model``, ``version``), optional ``global``
(ArrayRecord: the global model, when the device does not have the current one), optional
``incoming`` (ArrayRecord ``x``, ``y``, ``src``: points offloaded to it in ``t-1``).

device → server: ``report`` (MetricRecord, see :mod:`foglearn.flower.client_app`), optional
``out`` (ArrayRecord ``x``, ``y``, ``dst``: the points it offloads), ``model`` on aggregation slots.

The server trusts no device
---------------------------
Every reply is checked (:meth:`FogStrategy._check`) before anything is booked: counts are whole,
non-negative and add up (kept + offloaded + discarded = collected), kept and offloaded points are
what the plan's whole-point split of ``D_i(t)`` gives (offloads on links the device reports
unusable are zero), received points are what the server relayed, the offloaded points go to the
device's out-neighbours in the counts it reports, with the dataset's sample shape and dtype, and
the model's names, shapes and dtypes equal the global model's, all finite. The aggregation weight
``H_i`` of eq. (4) is the server's own count: points it assigned to the device (kept by plan +
relayed) that the device confirmed processing since it last received the global model; a reply
claiming another ``H_i`` is rejected. A bad reply makes the device failed for the slot (logged
with the device and the reason), never the run.

Failures drive the plan
-----------------------
A failed device (error reply, no reply, a rejected reply) is inactive for the slot; points relayed
to it are lost and charged to their source (the discard cost ``f`` of the device and slot that
collected them, objective (5)). Until it answers again, nothing is offloaded to it (the rest of the
window's offloads to it stay with their sources) and the next window is planned without it. Its
next message carries the current global model, so a restarted device (same node id, or a new node
id announcing the same ``partition-id``, found by :func:`discover` at the next slot) rejoins at
once. Error replies are attributed through the message they answer (the SuperLink's "node
unavailable" replies carry the SuperLink's own node id).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterable
from logging import INFO, WARNING
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from flwr.app import (
    Array,
    ArrayRecord,
    ConfigRecord,
    Message,
    MessageType,
    MetricRecord,
    RecordDict,
)
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy
from flwr.supercore import log

from foglearn.flower.config import FlowerRunConfig
from foglearn.flower.protocol import record_report
from foglearn.network.scenario import Scenario
from foglearn.planning.information import plan_window
from foglearn.planning.rules import (
    WindowMeasurements,
    aggregate_weighted,
    keep_unplanned,
    realised_costs,
    split_counts,
    transfer_cost,
)


class ReplyError(ValueError):
    """A device's reply breaks the protocol; the device is failed for the slot."""


def _short(reason: str, limit: int = 300) -> str:
    """The gist of a failure (Ray tracebacks run to kilobytes)."""
    lines = [ln.strip() for ln in reason.splitlines() if ln.strip()]
    gist = next((ln for ln in reversed(lines) if "Message:" in ln or "Error" in ln), lines[0] if lines else reason)
    return gist[:limit]


_R = TypeVar("_R", ArrayRecord, MetricRecord, ConfigRecord)


def _record(msg: Message, key: str, kind: type[_R]) -> _R:
    """Record ``key`` of a device's reply, which must be a ``kind``, else :class:`ReplyError`
    (a missing key raises :class:`KeyError`: a malformed reply)."""
    rec = msg.content[key]
    if not isinstance(rec, kind):
        raise ReplyError(f"{key} is a {type(rec).__name__}, expected a {kind.__name__}")
    return rec


def _list(rec: MetricRecord, key: str) -> list[int] | list[float]:
    """The list ``rec[key]`` of a device's report, else :class:`ReplyError`."""
    value = rec[key]
    if not isinstance(value, list):
        raise ReplyError(f"{key} = {value!r}: must be a list")
    return value


def _whole(value: Any, name: str, limit: int = 2**40) -> int:
    """``value`` as a whole count in ``[0, limit]``, else :class:`ReplyError`."""
    v = float(value)
    if not (np.isfinite(v) and v == int(v) and 0 <= v <= limit):
        raise ReplyError(f"{name} = {value!r}: must be a whole count in [0, {limit}]")
    return int(v)


def _finite(value: Any, name: str) -> float:
    v = float(value)
    if not np.isfinite(v):
        raise ReplyError(f"{name} = {value!r}: must be finite")
    return v


def check_arrays(rec: ArrayRecord, ref: dict[str, tuple[tuple[int, ...], np.dtype]], name: str
                 ) -> dict[str, np.ndarray]:
    """``rec`` as numpy arrays if its names (in order), shapes and dtypes are ``ref``'s and every
    value is finite; else :class:`ReplyError`."""
    keys = list(rec.keys())
    if keys != list(ref):
        raise ReplyError(f"{name}: arrays {keys} are not the global model's {list(ref)}")
    out = {}
    for k in keys:
        a = rec[k].numpy()
        shape, dtype = ref[k]
        if a.shape != shape or a.dtype != dtype:
            raise ReplyError(f"{name}[{k!r}]: {a.dtype}{list(a.shape)}, the global model has {dtype}{list(shape)}")
        if a.dtype.kind in "fc" and not np.isfinite(a).all():
            raise ReplyError(f"{name}[{k!r}]: not finite")
        out[k] = a
    return out


def _reply_device(msg: Message, sent: dict[str, int], device_of_node: dict[int, int]) -> int | None:
    """The device a reply is from: the one the answered message went to (SuperLink error replies
    carry the SuperLink's node id), else the reply's source node."""
    dev = sent.get(msg.metadata.reply_to_message_id)
    return dev if dev is not None else device_of_node.get(msg.metadata.src_node_id)


def discover(grid: Grid, nodes: Iterable[int], num_devices: int, timeout: float
             ) -> tuple[dict[int, int], list[str], set[int]]:
    """Ask ``nodes`` which device each is (``query.hello``: its ``partition-id``).

    Returns device → node id for valid answers, the problems (one line each, naming the node),
    and the nodes that answered with a ``partition-id`` outside ``0..num_devices-1`` (not devices
    of this run: not asked again).
    Two nodes claiming one device: the later answer wins (a restarted device replaces its old node).
    """
    msgs = {}
    for node in nodes:
        m = Message(RecordDict({"hello": MetricRecord({"n": num_devices})}), node,
                    f"{MessageType.QUERY}.hello", group_id="hello")
        msgs[node] = m
    if not msgs:
        return {}, [], set()
    replies = list(grid.send_and_receive(list(msgs.values()), timeout=timeout))
    node_of = {m.metadata.message_id: node for node, m in msgs.items()}
    mapping: dict[int, int] = {}
    problems: list[str] = []
    strangers: set[int] = set()
    for r in replies:
        node = node_of.get(r.metadata.reply_to_message_id, r.metadata.src_node_id)
        if r.has_error():
            problems.append(f"node {node} failed the hello query: "
                            f"{_short(r.error.reason or f'error code {r.error.code}')}")
            continue
        try:
            dev = _record(r, "hello", MetricRecord)["device"]
            if not isinstance(dev, int):
                raise ReplyError(f"device = {dev!r}: must be an int")
        except (KeyError, TypeError, ValueError) as exc:
            problems.append(f"node {node}: bad hello reply ({exc!r})")
            continue
        if not 0 <= dev < num_devices:
            problems.append(f"node {node} has partition-id {dev}, outside 0..{num_devices - 1}")
            strangers.add(node)
            continue
        mapping[dev] = node
    for node in set(msgs) - set(node_of[r.metadata.reply_to_message_id] for r in replies
                                 if r.metadata.reply_to_message_id in node_of):
        problems.append(f"node {node} did not answer the hello query within {timeout:.0f} s")
    return mapping, problems, strangers


class FogStrategy(Strategy):
    """Plan, relay and aggregate (paper Sec. III–V) over Flower messages.

    Parameters
    ----------
    cfg : FlowerRunConfig
    node_of_device : dict
        Device index ``i`` → Flower node id.
    src, dst : int ``[E]``
        The network's static edge list (known at deployment).
    planner : callable
        ``planner(scenario, error=..., information="perfect", movement=True) -> Plan``.
    true_scenario : Scenario, optional
        Only for ``information = "perfect"`` (and for realised-cost accounting).
    estimates_dir : Path, optional
        Where each window's estimated scenario is saved (``window_<l>.npz``).
    sample_shape, num_classes : optional
        The data set's point shape and label count: offloaded points must match them.

    Attributes written to ``result.json`` beyond the movement: ``failures`` (slot, device, node,
    reason), ``rejoined`` (devices found again under a new node id), ``h_server`` (``H_i``).
    """

    def __init__(self, cfg: FlowerRunConfig, node_of_device: dict[int, int], src: np.ndarray, dst: np.ndarray,
                 planner: Callable[..., Any], true_scenario: Scenario | None = None,
                 estimates_dir: Path | None = None, sample_shape: tuple[int, ...] | None = None,
                 num_classes: int | None = None) -> None:
        self.cfg = cfg
        self.node_of_device = dict(node_of_device)
        self.device_of_node = {v: k for k, v in node_of_device.items()}
        self.src, self.dst = np.asarray(src, np.int64), np.asarray(dst, np.int64)
        self.planner = planner
        self.true_scenario = true_scenario
        self.estimates_dir = estimates_dir
        self.sample_shape = None if sample_shape is None else tuple(int(d) for d in sample_shape)
        self.num_classes = num_classes
        T, n, E = cfg.horizon, cfg.num_devices, self.src.size
        self.n, self.E, self.T = n, E, T
        z = lambda *s: np.zeros(s, dtype=np.int64)  # noqa: E731
        # realised movement, per slot and device / link
        self.collected, self.kept, self.discarded = z(T, n), z(T, n), z(T, n)
        self.received, self.processed, self.dropped, self.lost = z(T, n), z(T, n), z(T, n), z(T, n)
        self.lost_from = z(T, n)  # lost in relay, by the device and slot that collected the points
        self.sent = z(T, E)
        self.active = np.zeros((T, n), dtype=bool)
        # the plan and the counts it implies for what each device reported
        self.plan_keep = np.zeros((T, n))
        self.plan_offload = np.zeros((T, E))
        self.expect_kept, self.expect_discarded, self.expect_sent = z(T, n), z(T, n), z(T, E)
        # measurements
        self.proc_spp = np.full((T, n), np.nan)   # measured seconds per processed point
        self.relay_spp = np.full((T, E), np.nan)  # measured seconds per point on the relay leg
        self.replayed_proc_cost = np.full((T, n), np.nan)
        self.window_meas = WindowMeasurements.empty(cfg.plan_window, n, E)
        self.window_plans: list[dict[str, Any]] = []
        # relay and model bookkeeping
        self.pending: dict[int, list[tuple[np.ndarray, np.ndarray, np.ndarray]]] = {i: [] for i in range(n)}
        self.inflight: dict[int, np.ndarray] = {}  # receiver -> source of each relayed point
        self.version = 0
        self.synced = {i: -1 for i in range(n)}
        self.h_server = {i: 0 for i in range(n)}  # H_i: the server's count since i got the global model
        self.down: set[int] = set()  # failed in their last slot; nothing is offloaded to them
        self.aggregations: list[dict[str, Any]] = []
        self.failures: list[dict[str, Any]] = []
        self.rejoined: list[dict[str, Any]] = []
        self.slot_seconds = np.zeros(T)
        self._slot_t0 = 0.0
        self._t = 0
        self._strangers: set[int] = set()  # nodes that are not devices of this run
        self._out: list[tuple[Message, int]] = []
        self._carried_global: set[int] = set()
        self._global_ref: dict[str, tuple[tuple[int, ...], np.dtype]] = {}
        self.aggregated_now = False
        self.edge_of = {(int(s), int(d)): e for e, (s, d) in enumerate(zip(self.src, self.dst))}

    # ------------------------------------------------------------------ planning
    def _plan_window(self, t: int) -> None:
        cfg, W = self.cfg, self.cfg.plan_window
        win = t // W
        stop = min(t + W, self.T)
        rows = stop - t
        keep = np.ones((rows, self.n))
        offload = np.zeros((rows, self.E))
        how = "no movement"
        if cfg.movement and cfg.information == "perfect":
            if t == 0:
                assert self.true_scenario is not None
                p = self.planner(self.true_scenario, error=cfg.error, information="perfect", movement=True)
                self._perfect = (np.asarray(p.keep), np.asarray(p.offload), self.true_scenario.collected)
            pk, po, D = self._perfect
            keep, offload = keep_unplanned(pk[t:stop], D[t:stop]), po[t:stop].copy()
            how = "perfect information"
        elif cfg.movement and win > 0:
            plans: list[Any] = []

            def solve(est: Scenario) -> tuple[np.ndarray, np.ndarray]:
                plans.append(self.planner(est, error=cfg.error, information="perfect", movement=True))
                return plans[-1].keep, plans[-1].offload

            meas = self.window_meas
            if self.down:  # a device down now is planned as inactive (no data, no links)
                meas = copy.deepcopy(meas)
                meas.collected[:, sorted(self.down)] = np.nan
            keep, offload, est = plan_window(meas, self.src, self.dst, t, stop, self.T, solve,
                                             info={"window": win, "slots": [t, stop]})
            if self.estimates_dir is not None:
                est.save(self.estimates_dir / f"window_{win}.npz")
            how = f"estimated from window {win - 1}"
            self.window_plans.append({"window": win, "slots": [t, stop], "planned_cost": plans[0].costs.as_dict(),
                                      "solver": plans[0].stats.as_dict(), "without": sorted(self.down)})
        self.plan_keep[t:stop] = keep
        self.plan_offload[t:stop] = offload
        for dev in sorted(self.down):
            self._keep_instead(dev, t, stop)
        self.window_meas = WindowMeasurements.empty(W, self.n, self.E, slots=range(t, stop))
        log(INFO, "foglearn: window %d (slots %d..%d) planned: %s%s", win, t, stop - 1, how,
            f" without devices {sorted(self.down)} (down)" if self.down else "")

    def _keep_instead(self, dev: int, start: int, stop: int) -> None:
        """Nothing is offloaded to ``dev`` in slots ``start..stop-1``: its sources keep those fractions."""
        into = np.flatnonzero(self.dst == dev)
        if start >= stop or not into.size:
            return
        # on the transposed views (device/edge first), as numpy's stubs do not take a slice in a tuple index
        np.add.at(self.plan_keep[start:stop].T, self.src[into], self.plan_offload[start:stop][:, into].T)
        self.plan_offload[start:stop, into] = 0.0

    def _fail(self, t: int, dev: int, reason: str) -> None:
        """Device ``dev`` failed slot ``t``: record and log it, and stop offloading to it."""
        self.failures.append({"slot": t, "device": dev, "node": self.node_of_device.get(dev), "reason": reason})
        log(WARNING, "foglearn: slot %d: device %d (node %s) failed: %s", t, dev, self.node_of_device.get(dev),
            reason)
        self.synced[dev] = -1  # its next message carries the global model (it may have restarted)
        if dev not in self.down:
            self.down.add(dev)
            W = self.cfg.plan_window
            self._keep_instead(dev, t + 1, min((t // W + 1) * W, self.T))

    def _rediscover(self, grid: Grid) -> None:
        """Map nodes that joined since the last slot to their devices (a restarted SuperNode)."""
        try:
            known = set(self.device_of_node) | self._strangers
            new = [nd for nd in grid.get_node_ids() if nd not in known]
        except Exception as exc:  # noqa: BLE001 - a Grid that cannot list nodes: keep the old map
            log(WARNING, "foglearn: could not list nodes: %s", exc)
            return
        if not new:
            return
        mapping, problems, strangers = discover(grid, new, self.n, min(self.cfg.slot_timeout, 30.0))
        self._strangers |= strangers
        for p in problems:
            log(WARNING, "foglearn: %s", p)
        for dev, node in mapping.items():
            old = self.node_of_device.get(dev)
            if old is not None:
                self.device_of_node.pop(old, None)
            self.node_of_device[dev] = node
            self.device_of_node[node] = dev
            self.synced[dev] = -1
            self.rejoined.append({"before_slot": self._t, "device": dev, "node": node, "old_node": old})
            log(INFO, "foglearn: device %d rejoined as node %s (was node %s)", dev, node, old)

    # ------------------------------------------------------------- Strategy API
    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                        grid: Grid) -> Iterable[Message]:
        t = server_round - 1
        self._t = t
        self._slot_t0 = time.perf_counter()
        if t > 0:
            self._rediscover(grid)
        if t % self.cfg.plan_window == 0:
            self._plan_window(t)
        self._global_ref = {k: (tuple(v.numpy().shape), v.numpy().dtype) for k, v in arrays.items()}
        aggregate = (t + 1) % self.cfg.period == 0 or t == self.T - 1
        run = ConfigRecord(self.cfg.to_user_config())
        self._out = []
        self._carried_global = set()
        self.inflight = {}
        for i in range(self.n):
            out = np.flatnonzero(self.src == i)
            cfg = ConfigRecord({
                "slot": t, "device": i, "keep": float(self.plan_keep[t, i]),
                "off-dst": [int(self.dst[e]) for e in out] or [], "off-edge": [int(e) for e in out] or [],
                "off-frac": [float(self.plan_offload[t, e]) for e in out] or [],
                "send-model": aggregate, "version": self.version,
            })
            content = RecordDict({"run": run, "cfg": cfg})
            if self.synced[i] != self.version:
                content["global"] = arrays
                self._carried_global.add(i)
            if self.pending[i]:
                xs, ys, ss = zip(*self.pending[i])
                content["incoming"] = ArrayRecord({"x": Array(np.concatenate(xs)), "y": Array(np.concatenate(ys)),
                                                   "src": Array(np.concatenate(ss))})
                self.inflight[i] = np.concatenate(ss)
                self.pending[i] = []
            msg = Message(content, self.node_of_device[i], MessageType.TRAIN, group_id=str(server_round))
            self._out.append((msg, i))
        return [m for m, _ in self._out]

    def aggregate_train(self, server_round: int, replies: Iterable[Message]
                        ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        t = server_round - 1
        sent = {m.metadata.message_id: i for m, i in self._out if m.metadata.message_id}
        aggregate = (t + 1) % self.cfg.period == 0 or t == self.T - 1
        booked: dict[int, dict[str, Any]] = {}
        failed: set[int] = set()
        for msg in replies:
            dev = _reply_device(msg, sent, self.device_of_node)
            if dev is None or dev in booked or dev in failed:
                continue  # not one of ours, or a second answer for the same device
            if msg.has_error():
                failed.add(dev)
                self._fail(t, dev, _short(f"error: {msg.error.reason}"))
                continue
            try:
                booked[dev] = self._check(t, dev, msg, aggregate)
            except ReplyError as exc:
                failed.add(dev)
                self._fail(t, dev, f"rejected reply: {exc}")
            except (KeyError, TypeError, ValueError, IndexError, OverflowError, AttributeError) as exc:
                failed.add(dev)
                self._fail(t, dev, f"rejected reply: malformed ({type(exc).__name__}: {exc})")
        for _, dev in self._out:
            if dev not in booked and dev not in failed:
                self._fail(t, dev, f"no reply within the slot timeout ({self.cfg.slot_timeout:g} s)")
        for dev, sources in self.inflight.items():
            if dev not in booked:  # relayed points that reached a device that failed the slot
                self.lost[t, dev] += sources.size
                np.add.at(self.lost_from[t - 1], sources, 1)

        for dev in sorted(booked):
            self._commit(t, dev, booked[dev])
            if dev in self.down:
                self.down.discard(dev)
                log(INFO, "foglearn: slot %d: device %d answers again", t, dev)

        n_fail = self.n - len(booked)
        if n_fail:
            log(WARNING, "foglearn: slot %d: %d results, %d failures (devices %s inactive this slot)",
                t, len(booked), n_fail, sorted(set(range(self.n)) - set(booked)))
        self.slot_seconds[t] = time.perf_counter() - self._slot_t0

        self.aggregated_now = False
        agg: ArrayRecord | None = None
        if aggregate:
            agg = self._aggregate(t, booked)
        metrics = MetricRecord({"slot": t, "results": len(booked), "failures": n_fail,
                                "processed": int(self.processed[t].sum())})
        return agg, metrics

    def _check(self, t: int, dev: int, msg: Message, aggregate: bool) -> dict[str, Any]:
        """Device ``dev``'s slot-``t`` reply, checked against what the server sent and planned
        (rules in the module docstring); raises :class:`ReplyError` naming the broken rule."""
        r = _record(msg, "report", MetricRecord)
        if _whole(r["slot"], "slot") != t or _whole(r["device"], "device") != dev:
            raise ReplyError(f"answers slot {r['slot']} as device {r['device']}, asked slot {t} of device {dev}")
        b: dict[str, Any] = {k: _whole(r[k], k) for k in
                             ("collected", "kept", "discarded", "received", "processed", "dropped", "version")}
        claimed_h = _whole(r["h"], "h")
        out = np.flatnonzero(self.src == dev)
        edges = [int(e) for e in _list(r, "out-edges")]
        if edges != ([int(e) for e in out] or [-1]):
            raise ReplyError(f"out-edges {edges} are not the device's out-links {out.tolist()}")
        counts = [_whole(c, "off-count") for c in _list(r, "off-count")]
        if len(counts) != max(out.size, 1):
            raise ReplyError(f"off-count has {len(counts)} entries for {out.size} out-links")
        counts = counts[:out.size]
        D = b["collected"]
        if b["kept"] + sum(counts) + b["discarded"] != D:
            raise ReplyError(f"kept {b['kept']} + offloaded {sum(counts)} + discarded {b['discarded']} "
                             f"≠ collected {D}")
        up = [bool(_whole(u, "link-up")) for u in _list(r, "link-up")][:out.size] if out.size else []
        if len(up) != out.size:
            raise ReplyError(f"link-up has {len(up)} entries for {out.size} out-links")
        exp = split_counts(D, [self.plan_keep[t, dev],
                               *[f if ok else 0.0 for f, ok in zip(self.plan_offload[t, out], up)]])
        if b["kept"] != exp[0] or any(c > x for c, x in zip(counts, exp[1:-1])):
            raise ReplyError(f"kept {b['kept']} and offloaded {counts} of {D} points; the plan's split is "
                             f"kept {int(exp[0])}, offloaded at most {exp[1:-1].tolist()}")
        relayed = int(self.inflight[dev].size) if dev in self.inflight else 0
        if b["received"] != relayed:
            raise ReplyError(f"received {b['received']} points; the server relayed {relayed}")
        if b["processed"] > b["kept"] + relayed:
            raise ReplyError(f"processed {b['processed']} > kept {b['kept']} + relayed {relayed}")
        if b["version"] != self.version:
            raise ReplyError(f"trained from model version {b['version']}, the current one is {self.version}")
        h = (0 if dev in self._carried_global else self.h_server[dev]) + b["processed"]
        if claimed_h != h:
            raise ReplyError(f"claims H = {claimed_h}; the server counted {h} points assigned and processed")
        b["h"] = h
        for k in ("proc-cost", "error-weight", "proc-cap", "proc-seconds-per-point"):
            _finite(r[k], k)
        for k in ("link-cost", "link-cap"):
            vals = [_finite(v, k) for v in _list(r, k)]
            if len(vals) != max(out.size, 1):
                raise ReplyError(f"{k} has {len(vals)} entries for {out.size} out-links")
        ml = [_finite(v, "measured-link") for v in _list(r, "measured-link")]
        if len(ml) % 2:
            raise ReplyError("measured-link must hold (source, seconds) pairs")
        b["report"] = r
        b["counts"] = counts
        b["expect"] = exp
        b["out"] = self._check_points(dev, msg, out, counts)
        if aggregate:
            if "model" not in msg.content:
                raise ReplyError("no model on an aggregation slot")
            b["model"] = check_arrays(_record(msg, "model", ArrayRecord), self._global_ref, "model")
        return b

    def _check_points(self, dev: int, msg: Message, out: np.ndarray, counts: list[int]
                      ) -> dict[str, np.ndarray] | None:
        """The offloaded points (``out``: ``x``, ``y``, ``dst``), consistent with ``counts``."""
        if sum(counts) == 0:
            if "out" in msg.content:
                raise ReplyError("sends points but reports offloading none")
            return None
        if "out" not in msg.content:
            raise ReplyError(f"reports offloading {sum(counts)} points but sends none")
        rec = _record(msg, "out", ArrayRecord)
        if sorted(rec.keys()) != ["dst", "x", "y"]:
            raise ReplyError(f"out holds {sorted(rec.keys())}, expected ['dst', 'x', 'y']")
        x, y, d = (rec[k].numpy() for k in ("x", "y", "dst"))
        if not (x.ndim >= 1 and x.shape[0] == y.shape[0] == d.shape[0] and y.ndim == d.ndim == 1):
            raise ReplyError(f"out: x {list(x.shape)}, y {list(y.shape)}, dst {list(d.shape)} do not match")
        if self.sample_shape is not None and x.shape[1:] != self.sample_shape:
            raise ReplyError(f"out: points of shape {list(x.shape[1:])}, the data set's are {list(self.sample_shape)}")
        if x.dtype.kind != "f" or not np.isfinite(x).all():
            raise ReplyError(f"out: x must be finite floats (got {x.dtype})")
        if y.dtype.kind not in "iu" or d.dtype.kind not in "iu":
            raise ReplyError(f"out: y and dst must be integers (got {y.dtype}, {d.dtype})")
        if y.size and (y.min() < 0 or (self.num_classes is not None and y.max() >= self.num_classes)):
            raise ReplyError(f"out: labels outside 0..{(self.num_classes or 0) - 1}")
        for k, e in enumerate(out):
            if int((d == self.dst[e]).sum()) != counts[k]:
                raise ReplyError(f"out: {int((d == self.dst[e]).sum())} points for device {int(self.dst[e])}, "
                                 f"off-count says {counts[k]}")
        if y.size != sum(counts):
            raise ReplyError(f"out: points for devices that are not out-neighbours ({sorted(set(d.tolist()))})")
        return {"x": x, "y": y, "dst": d.astype(np.int64)}

    def _commit(self, t: int, dev: int, b: dict[str, Any]) -> None:
        """Book a checked reply."""
        self.active[t, dev] = True
        self.collected[t, dev] = b["collected"]
        self.kept[t, dev] = b["kept"]
        self.discarded[t, dev] = b["discarded"]
        self.received[t, dev] = b["received"]
        self.processed[t, dev] = b["processed"]
        self.dropped[t, dev] = b["dropped"]
        out = np.flatnonzero(self.src == dev)
        self.sent[t, out] = b["counts"]
        exp = b["expect"]
        self.expect_kept[t, dev] = exp[0]
        self.expect_sent[t, out] = exp[1:-1]
        self.expect_discarded[t, dev] = exp[-1]
        o = b["out"]
        if o is not None:
            for j in np.unique(o["dst"]):
                sel = o["dst"] == j
                self.pending[int(j)].append((o["x"][sel], o["y"][sel], np.full(int(sel.sum()), dev, np.int64)))
        self.synced[dev] = self.version
        self.h_server[dev] = b["h"]
        self._measure(t, dev, b["report"])

    def _measure(self, t: int, dev: int, r: Any) -> None:
        """Book device ``dev``'s slot-``t`` report (``collected`` and the measurements it sends) into
        the window's observations (the server's scenario estimate, docs/model.md §4)."""
        spp = float(r["proc-seconds-per-point"])
        self.proc_spp[t, dev] = spp if spp >= 0 else np.nan
        self.replayed_proc_cost[t, dev] = float(r["proc-cost"])
        ml = list(r["measured-link"])
        for a in range(0, len(ml), 2):
            s = int(ml[a])
            if s >= 0 and (s, dev) in self.edge_of:
                self.relay_spp[t - 1, self.edge_of[(s, dev)]] = float(ml[a + 1])
        w = t - self.window_meas.slots[0] if self.window_meas.slots else t % self.cfg.plan_window
        m = self.window_meas
        record_report(m, w, dev, r)
        if self.cfg.cost_source == "measured":
            m.proc_cost[w, dev] = (spp if spp >= 0 else np.nan) / self.cfg.seconds_per_unit
        if self.cfg.cost_source == "measured" and t >= 1:
            for e in np.flatnonzero(self.dst == dev):
                v = self.relay_spp[t - 1, e]
                if np.isfinite(v) and w >= 1:
                    m.link_cost[w - 1, e] = v / self.cfg.seconds_per_unit

    def _aggregate(self, t: int, booked: dict[int, dict[str, Any]]) -> ArrayRecord | None:
        """Eq. (4) over the devices whose checked reply carries a model, weighted by the server's
        own ``H_i`` (:attr:`h_server`)."""
        devs = sorted(d for d in booked if "model" in booked[d])
        weights = [self.h_server[d] for d in devs]
        entry: dict[str, Any] = {"slot": t, "weights": {str(d): int(w) for d, w in zip(devs, weights)},
                                 "version_before": self.version}
        if not devs or sum(weights) == 0:
            entry["applied"] = False
            self.aggregations.append(entry)
            log(WARNING, "foglearn: slot %d: nothing to aggregate (no device reported H_i > 0); "
                "keeping the global model", t)
            return None
        keys = list(self._global_ref)
        new = aggregate_weighted([[booked[d]["model"][k] for k in keys] for d in devs], weights)
        self.version += 1
        entry["applied"] = True
        entry["version_after"] = self.version
        self.aggregations.append(entry)
        self.aggregated_now = True
        log(INFO, "foglearn: slot %d: aggregated %d devices, weights H = %s", t, len(devs), entry["weights"])
        return ArrayRecord({k: Array(np.ascontiguousarray(a.astype(self._global_ref[k][1], copy=False)))
                            for k, a in zip(keys, new)})

    def configure_evaluate(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                           grid: Grid) -> Iterable[Message]:
        return []  # the server evaluates the global model itself (evaluate_fn)

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]) -> MetricRecord | None:
        return None

    def summary(self) -> None:
        c = self.cfg
        log(INFO, "\t├── foglearn FogStrategy: n = %d, T = %d, τ = %d, information = %s, movement = %s",
            c.num_devices, c.horizon, c.period, c.information, c.movement)

    # --------------------------------------------------------------- results
    def movement(self) -> dict[str, Any]:
        return {"collected": self.collected.tolist(), "kept": self.kept.tolist(),
                "discarded": self.discarded.tolist(), "offloaded": self.sent.tolist(),
                "received": self.received.tolist(), "processed": self.processed.tolist(),
                "dropped": self.dropped.tolist(), "lost_in_relay": self.lost.tolist(),
                "active": self.active.astype(int).tolist()}

    def planned(self) -> dict[str, Any]:
        return {"keep": self.plan_keep.tolist(), "offload": self.plan_offload.tolist(),
                "kept": self.expect_kept.tolist(), "offloaded": self.expect_sent.tolist(),
                "discarded": self.expect_discarded.tolist(), "windows": self.window_plans}

    def realised_costs(self) -> dict[str, float] | None:
        """Objective (5) on what was realised (:func:`~foglearn.planning.rules.realised_costs`), priced
        with the scenario's costs under the run's error model.

        Points never processed are charged ``f``: those a device neither kept nor sent (discarded by
        plan, or held back by a link's capacity; a device reports them as ``discarded``) and points
        lost in relay to a device that missed the slot, at the device and slot that collected them;
        points a device's capacity dropped (kept + received − processed), at that device and slot.
        Sent points pay their transfer whether delivered or not. ``violations``: device-slots that
        dropped points. ``discarded`` counts all never-processed points; ``dropped`` and
        ``lost_in_relay`` as the devices reported them.
        """
        sc = self.true_scenario
        if sc is None:
            return None
        costs = realised_costs(collected=self.collected, processed=self.processed,
                               discarded=self.discarded + (self.kept + self.received - self.processed) + self.lost_from,
                               proc_cost=sc.proc_cost, error_weight=sc.error_weight,
                               transfer=transfer_cost(self.sent, sc.link_cost), offloaded=float(self.sent.sum()),
                               error=self.cfg.error, violations=int((self.dropped > 0).sum()))
        return {**costs.as_dict(), "processed": int(costs.processed), "offloaded": int(costs.offloaded),
                "discarded": int(costs.discarded), "dropped": int(self.dropped.sum()),
                "lost_in_relay": int(self.lost.sum())}
