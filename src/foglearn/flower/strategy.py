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
``out`` (ArrayRecord ``x``, ``y``, ``dst``: the points it offloads), optional ``model``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from logging import INFO, WARNING
from pathlib import Path
from typing import Any

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


def _short(reason: str, limit: int = 300) -> str:
    """The gist of a failure (Ray tracebacks run to kilobytes)."""
    lines = [ln.strip() for ln in reason.splitlines() if ln.strip()]
    gist = next((ln for ln in reversed(lines) if "Message:" in ln or "Error" in ln), lines[0] if lines else reason)
    return gist[:limit]


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
    """

    def __init__(self, cfg: FlowerRunConfig, node_of_device: dict[int, int], src: np.ndarray, dst: np.ndarray,
                 planner: Callable[..., Any], true_scenario: Scenario | None = None,
                 estimates_dir: Path | None = None) -> None:
        self.cfg = cfg
        self.node_of_device = dict(node_of_device)
        self.device_of_node = {v: k for k, v in node_of_device.items()}
        self.src, self.dst = np.asarray(src, np.int64), np.asarray(dst, np.int64)
        self.planner = planner
        self.true_scenario = true_scenario
        self.estimates_dir = estimates_dir
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
        self.h_server = {i: 0 for i in range(n)}
        self.aggregations: list[dict[str, Any]] = []
        self.failures: list[dict[str, Any]] = []
        self.slot_seconds = np.zeros(T)
        self._slot_t0 = 0.0
        self._sent_to: dict[int, int] = {}
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

            keep, offload, est = plan_window(self.window_meas, self.src, self.dst, t, stop, self.T, solve,
                                             info={"window": win, "slots": [t, stop]})
            if self.estimates_dir is not None:
                est.save(self.estimates_dir / f"window_{win}.npz")
            how = f"estimated from window {win - 1}"
            self.window_plans.append({"window": win, "slots": [t, stop], "planned_cost": plans[0].costs.as_dict(),
                                      "solver": plans[0].stats.as_dict()})
        self.plan_keep[t:stop] = keep
        self.plan_offload[t:stop] = offload
        self.window_meas = WindowMeasurements.empty(W, self.n, self.E, slots=range(t, stop))
        log(INFO, "foglearn: window %d (slots %d..%d) planned: %s", win, t, stop - 1, how)

    # ------------------------------------------------------------- Strategy API
    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                        grid: Grid) -> Iterable[Message]:
        t = server_round - 1
        self._slot_t0 = time.perf_counter()
        if t % self.cfg.plan_window == 0:
            self._plan_window(t)
        aggregate = (t + 1) % self.cfg.period == 0 or t == self.T - 1
        run = ConfigRecord(self.cfg.to_user_config())
        msgs = []
        self._sent_to = {}
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
            if self.pending[i]:
                xs, ys, ss = zip(*self.pending[i])
                content["incoming"] = ArrayRecord({"x": Array(np.concatenate(xs)), "y": Array(np.concatenate(ys)),
                                                   "src": Array(np.concatenate(ss))})
                self.inflight[i] = np.concatenate(ss)
                self.pending[i] = []
            node = self.node_of_device[i]
            self._sent_to[node] = i
            msgs.append(Message(content, node, MessageType.TRAIN, group_id=str(server_round)))
        return msgs

    def aggregate_train(self, server_round: int, replies: Iterable[Message]
                        ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        t = server_round - 1
        replied: dict[int, Message] = {}
        for msg in replies:
            dev = self.device_of_node.get(msg.metadata.src_node_id)
            if dev is None:
                continue
            if msg.has_error():
                self.failures.append({"slot": t, "device": dev, "reason": _short(f"error: {msg.error.reason}")})
            else:
                replied[dev] = msg
        for dev in self._sent_to.values():
            if dev not in replied and not any(f["slot"] == t and f["device"] == dev for f in self.failures):
                self.failures.append({"slot": t, "device": dev, "reason": "no reply before the slot timeout"})
        for dev, sources in self.inflight.items():
            if dev not in replied:  # relayed points that reached a device that missed the slot
                self.lost[t, dev] += sources.size
                np.add.at(self.lost_from[t - 1], sources, 1)

        for dev, msg in replied.items():
            self._book(t, dev, msg)

        n_fail = self.n - len(replied)
        if n_fail:
            log(WARNING, "foglearn: slot %d: %d results, %d failures (devices %s inactive this slot)",
                t, len(replied), n_fail, sorted(set(range(self.n)) - set(replied)))
        self.slot_seconds[t] = time.perf_counter() - self._slot_t0

        self.aggregated_now = False
        agg: ArrayRecord | None = None
        if (t + 1) % self.cfg.period == 0 or t == self.T - 1:
            agg = self._aggregate(t, replied)
        metrics = MetricRecord({"slot": t, "results": len(replied), "failures": n_fail,
                                "processed": int(self.processed[t].sum())})
        return agg, metrics

    def _book(self, t: int, dev: int, msg: Message) -> None:
        r = msg.content["report"]
        if int(r["slot"]) != t:
            raise RuntimeError(f"device {dev} answered slot {r['slot']} in slot {t}")
        self.active[t, dev] = True
        D = int(r["collected"])
        self.collected[t, dev] = D
        self.kept[t, dev] = int(r["kept"])
        self.discarded[t, dev] = int(r["discarded"])
        self.received[t, dev] = int(r["received"])
        self.processed[t, dev] = int(r["processed"])
        self.dropped[t, dev] = int(r["dropped"])
        out = np.flatnonzero(self.src == dev)
        counts = list(r["off-count"])
        for k, e in enumerate(out):
            self.sent[t, e] = int(counts[k])
        exp = split_counts(D, [self.plan_keep[t, dev], *self.plan_offload[t, out]])
        self.expect_kept[t, dev] = exp[0]
        self.expect_sent[t, out] = exp[1:-1]
        self.expect_discarded[t, dev] = exp[-1]
        if "out" in msg.content:
            o = {k: v.numpy() for k, v in msg.content["out"].items()}
            for j in np.unique(o["dst"]):
                sel = o["dst"] == j
                self.pending[int(j)].append((o["x"][sel], o["y"][sel], np.full(int(sel.sum()), dev, np.int64)))
        if int(r["version"]) == self.version:
            self.synced[dev] = self.version
            self.h_server[dev] = int(r["h"])
        self._measure(t, dev, r)

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

    def _aggregate(self, t: int, replied: dict[int, Message]) -> ArrayRecord | None:
        devs, models, weights = [], [], []
        for dev, msg in sorted(replied.items()):
            if "model" not in msg.content:
                continue
            h = int(msg.content["report"]["h"])
            if int(msg.content["report"]["version"]) != self.version:
                continue  # trained from an older global model: treated as inactive (eq. 4 over V)
            devs.append(dev)
            weights.append(h)
            rec = msg.content["model"]
            models.append([rec[k].numpy() for k in rec.keys()])
            keys = list(rec.keys())
        entry: dict[str, Any] = {"slot": t, "weights": {str(d): int(w) for d, w in zip(devs, weights)},
                                 "version_before": self.version}
        if not devs or sum(weights) == 0:
            entry["applied"] = False
            self.aggregations.append(entry)
            log(WARNING, "foglearn: slot %d: nothing to aggregate (no device reported H_i > 0); "
                "keeping the global model", t)
            return None
        new = aggregate_weighted(models, weights)
        self.version += 1
        entry["applied"] = True
        entry["version_after"] = self.version
        self.aggregations.append(entry)
        self.aggregated_now = True
        log(INFO, "foglearn: slot %d: aggregated %d devices, weights H = %s", t, len(devs), entry["weights"])
        return ArrayRecord({k: Array(np.ascontiguousarray(a)) for k, a in zip(keys, new)})

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
                "discarded": int(costs.discarded), "dropped": int(self.dropped.sum()), "lost_in_relay": int(self.lost.sum())}
