"""The server trusts no device: FogStrategy driven with crafted replies (no Flower runtime).

The devices are the real ClientApp ``train`` function called in-process; the tests then tamper
with its replies the way a broken or lying device would, and check that the device is failed
for the slot (with the reason), the run goes on, the weights are the server's own counts, and
that failures drive the plan.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("flwr")
pytest.importorskip("torch")

from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Error, Message, RecordDict  # noqa: E402
from flwr.supercore.task_identity import TaskIdentity  # noqa: E402

from foglearn.flower import client_app, task  # noqa: E402
from foglearn.flower.config import FlowerRunConfig  # noqa: E402
from foglearn.flower.strategy import FogStrategy, ReplyError, check_arrays  # noqa: E402

N = 3
NODES = [101, 102, 103]


@pytest.fixture(autouse=True)
def _task_identity():
    old = (TaskIdentity._run_id, TaskIdentity._task_id, TaskIdentity._node_id)
    TaskIdentity.run_id, TaskIdentity.task_id, TaskIdentity.node_id = 1, 1, 1
    yield
    TaskIdentity._run_id, TaskIdentity._task_id, TaskIdentity._node_id = old


class FakeGrid:
    """Lists nodes and answers hello queries like the devices whose partition-ids it holds."""

    def __init__(self, partition_of_node: dict[int, int]):
        self.partition_of_node = dict(partition_of_node)

    def get_node_ids(self):
        return list(self.partition_of_node)

    def send_and_receive(self, messages, timeout=None):
        self.asked = getattr(self, "asked", []) + [m.metadata.dst_node_id for m in messages]
        out = []
        for k, m in enumerate(messages):
            m.metadata.__dict__["_message_id"] = f"hello-{k}-{m.metadata.dst_node_id}"
            ctx = Context(1, m.metadata.dst_node_id, {"partition-id": self.partition_of_node[m.metadata.dst_node_id]},
                          RecordDict(), {})
            out.append(client_app.hello(m, ctx))
        return out


def _planner(sc, error="linear", information="perfect", movement=True):
    import foglearn.planning as planning

    return planning.plan(sc, error=error)


class Harness:
    """One strategy, three in-process devices; ``slot(tamper)`` runs one slot."""

    def __init__(self, tmp_path, **kw):
        base = dict(num_devices=N, horizon=6, period=2, dataset="tiny", model="mlp", lr=0.1, max_points=30,
                    seed=3, run_dir=str(tmp_path), information="perfect")
        base.update(kw)
        self.cfg = FlowerRunConfig(**base)
        ds, sc = task.dataset(self.cfg), task.scenario(self.cfg)
        self.sc = sc
        self.strategy = FogStrategy(self.cfg, dict(enumerate(NODES)), sc.src, sc.dst, _planner, true_scenario=sc,
                                    sample_shape=ds.x_train.shape[1:], num_classes=int(ds.y_train.max()) + 1)
        self.grid = FakeGrid({nd: i for i, nd in enumerate(NODES)})
        self.ctx = {i: self._context(i) for i in range(N)}
        model = task.new_model(self.cfg)
        self.arrays = ArrayRecord({k: Array(v) for k, v in task.get_arrays(model).items()})
        self.round = 0
        self.sent_msg: dict[int, Message] = {}

    def _context(self, dev):
        return Context(1, NODES[dev], {"partition-id": dev}, RecordDict(), self.cfg.to_user_config())

    def slot(self, tamper=None, drop=()):
        """Run the next slot; ``tamper(dev, reply) -> reply`` edits a device's reply."""
        self.round += 1
        msgs = list(self.strategy.configure_train(self.round, self.arrays, ConfigRecord(), self.grid))
        replies = []
        for k, m in enumerate(msgs):
            m.metadata.__dict__["_message_id"] = f"r{self.round}-{k}"
            dev = self.strategy.device_of_node[m.metadata.dst_node_id]
            self.sent_msg[dev] = m
            if dev in drop:
                continue
            rep = client_app.train(m, self.ctx[dev])
            if tamper is not None:
                rep = tamper(dev, rep)
            replies.append(rep)
        agg, metrics = self.strategy.aggregate_train(self.round, replies)
        if agg is not None:
            self.arrays = agg
        return agg, metrics

    def failures(self, slot):
        return {f["device"]: f["reason"] for f in self.strategy.failures if f["slot"] == slot}


def _with_report(rep, **changes):
    r = dict(rep.content["report"])
    r.update(changes)
    from flwr.app import MetricRecord

    rep.content["report"] = MetricRecord(r)
    return rep


def _with_model(rep, fn):
    arrays = {k: v.numpy().copy() for k, v in rep.content["model"].items()}
    rep.content["model"] = ArrayRecord({k: Array(np.ascontiguousarray(a)) for k, a in fn(arrays).items()})
    return rep


def _nan_model(a):
    k = next(iter(a))
    a[k] = a[k].copy()
    a[k].flat[0] = np.nan
    return a


def _wrong_shape(a):
    k = next(iter(a))
    a[k] = np.zeros((*a[k].shape, 1), a[k].dtype)
    return a


def _missing_key(a):
    a.pop(next(iter(a)))
    return a


def _f64(a):
    return {k: v.astype(np.float64) for k, v in a.items()}


@pytest.mark.parametrize("name, tamper, why", [
    ("nan model", lambda r: _with_model(r, _nan_model), "not finite"),
    ("wrong shape", lambda r: _with_model(r, _wrong_shape), "the global model has"),
    ("missing key", lambda r: _with_model(r, _missing_key), "are not the global model's"),
    ("wrong dtype", lambda r: _with_model(r, _f64), "the global model has"),
    ("huge H", lambda r: _with_report(r, h=10**9), "claims H = 1000000000"),
    ("negative H", lambda r: _with_report(r, h=-1), "h = -1"),
    ("NaN H", lambda r: _with_report(r, h=float("nan")), "h = nan"),
    ("processed more than assigned", lambda r: _with_report(r, processed=10**6), "processed 1000000 >"),
    ("NaN cost", lambda r: _with_report(r, **{"proc-cost": float("nan")}), "proc-cost = nan"),
    ("no report", lambda r: _drop(r, "report"), "malformed"),
    ("no model", lambda r: _drop(r, "model"), "no model on an aggregation slot"),
])
def test_a_bad_reply_fails_the_device_not_the_run(tmp_path, name, tamper, why):
    h = Harness(tmp_path)
    h.slot()
    agg, _ = h.slot(lambda dev, rep: tamper(rep) if dev == 1 else rep)  # slot 1 aggregates (τ = 2)
    fails = h.failures(1)
    assert list(fails) == [1] and why in fails[1], fails
    assert "rejected reply" in fails[1]
    assert agg is not None, "the other devices are aggregated"
    entry = h.strategy.aggregations[-1]
    assert set(entry["weights"]) == {"0", "2"}
    # weights are the server's own counts: processed in slots 0 and 1
    proc = h.strategy.processed
    assert entry["weights"] == {str(d): int(proc[:2, d].sum()) for d in (0, 2)}
    assert all(np.isfinite(v.numpy()).all() for v in agg.values())
    assert h.strategy.movement()["active"][1] == [1, 0, 1]
    # the failed device gets the global model at once and is counted from zero again
    h.slot()
    assert h.failures(2) == {}
    assert h.strategy.h_server[1] == h.strategy.processed[2, 1]


def _drop(rep, key):
    del rep.content[key]
    return rep


def _points(rep, fn):
    o = {k: v.numpy().copy() for k, v in rep.content["out"].items()}
    rep.content["out"] = ArrayRecord({k: Array(np.ascontiguousarray(a)) for k, a in fn(o).items()})
    return rep


def _offloading_slot(h):
    """Run slots until some device offloads; return (slot, device) of the first one."""
    for _ in range(h.cfg.horizon):
        t = h.round
        sent = {}
        h.slot(lambda dev, rep, sent=sent: sent.setdefault(dev, rep) if "out" in rep.content else rep)
        if sent:
            return t, min(sent)
    pytest.skip("no offloading in this scenario")


@pytest.mark.parametrize("tamper, why", [
    (lambda o: {**o, "dst": np.full_like(o["dst"], 99)}, "points for device"),
    (lambda o: {**o, "y": o["y"][:-1]}, "do not match"),
    (lambda o: {**o, "x": np.full_like(o["x"], np.nan)}, "finite floats"),
    (lambda o: {**o, "x": o["x"].reshape(o["x"].shape[0], -1)[:, :3]}, "the data set's are"),
    (lambda o: {"x": o["x"], "y": o["y"]}, "expected ['dst', 'x', 'y']"),
])
def test_bad_offloaded_points_fail_the_sender(tmp_path, tamper, why):
    h = Harness(tmp_path)
    t, src = _offloading_slot(Harness(tmp_path / "probe"))
    for _ in range(t):
        h.slot()
    h.slot(lambda dev, rep: _points(rep, tamper) if dev == src else rep)
    fails = h.failures(t)
    assert list(fails) == [src] and why in fails[src], fails
    relayed_from = {int(s) for q in h.strategy.pending.values() for _, _, srcs in q for s in srcs}
    assert src not in relayed_from, "nothing of a rejected reply is relayed"


def test_unknown_report_slot_or_device_is_rejected(tmp_path):
    h = Harness(tmp_path)
    h.slot(lambda dev, rep: _with_report(rep, device=2) if dev == 0 else rep)
    assert "asked slot 0 of device 0" in h.failures(0)[0]


def test_node_unavailable_is_attributed_to_the_device_the_message_went_to(tmp_path):
    h = Harness(tmp_path)

    def superlink_error(dev, rep):
        if dev != 2:
            return rep
        err = Message(Error(code=0, reason="Error: Node Unavailable - no heartbeat"), reply_to=h.sent_msg[2])
        err.metadata.__dict__["_src_node_id"] = 1  # the SuperLink's own node id
        return err

    h.slot(superlink_error)
    fails = h.failures(0)
    assert list(fails) == [2] and "Node Unavailable" in fails[2]
    assert h.strategy.failures[0]["node"] == NODES[2]


def test_failures_drive_the_plan(tmp_path):
    h = Harness(tmp_path, information="estimated", period=2, window=2, horizon=6)
    into2 = np.flatnonzero(h.sc.dst == 2)
    h.slot()
    h.slot(drop={2})  # device 2 does not answer slot 1 (the last of window 0)
    assert "no reply" in h.failures(1)[2]
    assert h.strategy.down == {2}
    h.slot()  # slot 2: window 1 planned without device 2
    assert h.strategy.window_plans[-1]["without"] == [2]
    assert np.all(h.strategy.plan_offload[2:4, into2] == 0)
    assert h.failures(2) == {}, "it answers again (it got the global model at once)"
    assert h.strategy.down == set()
    h.slot()
    h.slot()  # slot 4: window 2 planned with device 2 again
    assert h.strategy.window_plans[-1]["without"] == []


def test_points_relayed_to_a_device_that_fails_are_lost_and_priced_at_their_source(tmp_path):
    probe = Harness(tmp_path / "probe")
    t, src = _offloading_slot(probe)
    dst = next(j for j, q in probe.strategy.pending.items() if q)
    h = Harness(tmp_path / "run")
    for _ in range(t + 1):
        h.slot()
    n_relayed = sum(len(x[1]) for x in h.strategy.pending[dst])
    assert n_relayed > 0
    h.slot(drop={dst})
    s = h.strategy
    assert s.lost[t + 1, dst] == n_relayed
    assert s.lost_from[t].sum() == n_relayed
    before = s.realised_costs()["discard"]
    s.lost_from[t] = 0
    assert s.realised_costs()["discard"] < before, "lost points pay their source's discard cost f"


def test_a_restarted_device_with_a_new_node_id_rejoins_with_the_global_model(tmp_path):
    h = Harness(tmp_path)
    h.slot()
    h.slot(drop={1})  # node 102 dies ...
    del h.grid.partition_of_node[NODES[1]]
    h.grid.partition_of_node[777] = 1  # ... and device 1 comes back as node 777 with a fresh state
    h.ctx[1] = Context(1, 777, {"partition-id": 1}, RecordDict(), h.cfg.to_user_config())
    h.slot()
    s = h.strategy
    assert s.node_of_device[1] == 777 and s.rejoined[-1]["device"] == 1
    assert h.failures(2) == {}, "the new node got the global model in its first message"
    assert s.active[2].tolist() == [True, True, True]


def test_check_arrays_accepts_the_global_model():
    ref = {"w": ((2, 3), np.dtype(np.float32))}
    ok = ArrayRecord({"w": Array(np.ones((2, 3), np.float32))})
    assert check_arrays(ok, ref, "model")["w"].shape == (2, 3)
    with pytest.raises(ReplyError, match="not finite"):
        check_arrays(ArrayRecord({"w": Array(np.full((2, 3), np.inf, np.float32))}), ref, "model")


def test_the_expected_split_sends_nothing_on_a_link_the_device_reports_unusable(tmp_path):
    h = Harness(tmp_path, horizon=2)  # no link is usable in the last slot (docs/model.md §2)
    usable = h.sc.usable_links()
    down = [e for e in range(h.sc.n_edges) if not usable[1, e] and h.sc.collected[1, h.sc.src[e]] > 0]
    if not down:
        pytest.skip("no unusable link in slot 1 of this scenario")
    e = down[0]
    i = int(h.sc.src[e])
    h.slot()
    s = h.strategy
    s.plan_keep[1, i], s.plan_offload[1, np.flatnonzero(s.src == i)] = 0.5, 0.0
    s.plan_offload[1, e] = 0.5  # the plan offloads half of i's points on a link that is down
    h.slot()
    assert h.failures(1) == {}, "the device sends nothing there; the server expects nothing there"
    assert s.sent[1, e] == 0 == s.expect_sent[1, e]


def test_a_node_that_is_no_device_of_the_run_is_asked_once(tmp_path):
    h = Harness(tmp_path)
    h.grid.partition_of_node[999] = 7  # n = 3: partition-id 7 is not a device of this run
    for _ in range(3):
        h.slot()
    assert h.grid.asked == [999]
    assert h.strategy.failures == [] and 999 not in h.strategy.device_of_node


@pytest.mark.parametrize("lie, why", [("nan", "not finite"), ("h", "claims H = 1000000000"),
                                      ("shape", "the global model has")])
def test_injected_lies_are_rejected(tmp_path, lie, why):
    h = Harness(tmp_path, faults=f"2@1~{lie}")
    h.slot()
    agg, _ = h.slot()
    assert list(h.failures(1)) == [2] and why in h.failures(1)[2]
    assert agg is not None and set(h.strategy.aggregations[-1]["weights"]) == {"0", "1"}


# ---- cost-source = "measured": what a device measures never includes starting a process


def test_processing_time_is_the_sgd_step_alone(tmp_path, monkeypatch):
    """A slow start (here: the data set takes 0.3 s to load) is in the handler's time, not in the
    processing time the server plans with."""
    h = Harness(tmp_path, cost_source="measured", seconds_per_unit=0.001)
    load = task.dataset

    def slow_dataset(cfg):
        import time

        time.sleep(0.3)
        return load(cfg)

    monkeypatch.setattr(task, "dataset", slow_dataset)
    reports = {}
    h.slot(lambda dev, rep: reports.setdefault(dev, rep))
    busy = {dev: rep.content["report"] for dev, rep in reports.items() if rep.content["report"]["processed"] > 0}
    assert busy, "some device processed points in slot 0"
    for dev, r in busy.items():
        assert r["handler-seconds"] >= 0.3 > r["proc-seconds"] > 0
        assert r["proc-seconds-per-point"] == pytest.approx(r["proc-seconds"] / r["processed"])
        # booked as the window's processing cost: seconds per point / seconds-per-unit
        assert h.strategy.proc_spp[0, dev] == r["proc-seconds-per-point"]
        assert h.strategy.window_meas.proc_cost[0, dev] == pytest.approx(r["proc-seconds-per-point"] / 0.001)


def test_a_fresh_process_reports_no_relay_time_a_warm_one_does(tmp_path, monkeypatch):
    """The relay leg is timed from the message's creation to the handler's entry; in a process that
    handled nothing yet (Flower's process per message) that span is its start-up, so it is not sent."""
    h = Harness(tmp_path, cost_source="measured")
    t, _src = _offloading_slot(h)  # slot t offloads: slot t + 1 relays points
    msgs = list(h.strategy.configure_train(h.round + 1, h.arrays, ConfigRecord(), h.grid))
    m = next(m for m in msgs if "incoming" in m.content)
    dev = h.strategy.device_of_node[m.metadata.dst_node_id]
    m.metadata.__dict__["_message_id"] = "relay"
    m.metadata.__dict__["_created_at"] = m.metadata.created_at - 2.0  # 2 s before the handler
    monkeypatch.setattr(client_app, "_handled", 0)
    cold = client_app.train(m, h.ctx[dev])
    assert cold.content["report"]["warm"] == 0
    assert list(cold.content["report"]["measured-link"]) == [-1.0, -1.0]
    warm = client_app.train(m, h.ctx[dev])
    r = warm.content["report"]
    assert r["warm"] == 1
    srcs = m.content["incoming"]["src"].numpy()
    ml = list(r["measured-link"])
    assert [int(s) for s in ml[::2]] == sorted(set(srcs.tolist()))
    for s, v in zip(ml[::2], ml[1::2]):
        assert v == pytest.approx(r["latency-in"] / int((srcs == s).sum()))
        assert v >= 2.0 / int((srcs == s).sum())
