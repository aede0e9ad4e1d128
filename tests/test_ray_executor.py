"""Training periods and sweep cells as Ray tasks (foglearn.learning.executors) on a real local cluster.

The module starts its own cluster (``ray start --head``, two CPUs, in a private temp dir and its own
process group) with every server on 127.0.0.1 only, and ends every process it started — by process
group and by command line naming its temp dir — whatever happens, even when the pytest process
dies (a reaper process ends the group when the pytest process's pipe to it closes; the temp dir,
with Ray's logs of what happened, is then left for inspection).
``ray stop`` is not used: it stops every Ray process of the machine, not only this cluster's.

Two settings keep clusters of parallel pytest workers (``-n 2``: each worker starts its own) apart:

* worker ports chosen by the system (``--min-worker-port=0``): with ``ray start``'s default range
  (10002–19999) every raylet of the machine hands out ports from the same range, and a driver
  given a port that another cluster's process bound in the meantime aborts its process (check in
  ``grpc_server.cc``: "Failed to start the grpc server. The specified port is 10002"): the pytest
  worker died ("node down: Not properly terminated") and its cluster was never stopped;
* ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` for the cluster's processes (this process connects
  through foglearn's ``ray:ADDRESS``, which does the same for a loopback address, so the tests
  connect as a user would): on Linux Ray otherwise replaces 127.0.0.1 by the machine's outward address
  and listens on all interfaces. A loopback cluster is a single-node one (Ray refuses to add
  nodes to it), so the two CPUs are one node's: two actors in two worker processes.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from foglearn.errors import InputError, RunError
from foglearn.experiments.config import RunConfig
from foglearn.experiments.runner import run_sweep
from foglearn.learning import train
from foglearn.learning.executors import parse_executor
from foglearn.network import synthetic
from foglearn.planning import plan as make_plan

ray = pytest.importorskip("ray")
RAY = str(Path(sys.executable).with_name("ray"))

# Ends the process group argv[1] (SIGTERM, then SIGKILL) once its stdin closes: the pytest process
# holds the only write end, so this happens however that process ends.
REAPER = """
import os, signal, sys, time
for s in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):  # a signal to the whole tree must not end it early
    signal.signal(s, signal.SIG_IGN)
group = int(sys.argv[1])
sys.stdin.buffer.read()
for sig in (signal.SIGTERM, signal.SIGKILL):
    try:
        os.killpg(group, sig)
    except ProcessLookupError:
        break
    time.sleep(3)
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ours(tmp: str, groups: list[int]) -> list[int]:
    """PIDs of this cluster: in the process groups of its ``ray start`` calls, or naming its temp dir."""
    out = subprocess.run(["ps", "-eo", "pid=,pgid=,args="], capture_output=True, text=True).stdout
    pids = []
    for line in out.splitlines():
        pid, pgid, args = (line.split(None, 2) + [""])[:3]
        if int(pid) != os.getpid() and (int(pgid) in groups or tmp in args):
            pids.append(int(pid))
    return pids


def _end(tmp: str, groups: list[int]) -> None:
    """SIGTERM, then SIGKILL what is left after 3 s (the GCS and the raylet outlived SIGTERM by 12 s+ here)."""
    for sig, wait in ((signal.SIGTERM, 3.0), (signal.SIGKILL, 5.0)):
        for pid in _ours(tmp, groups):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + wait
        while _ours(tmp, groups) and time.monotonic() < deadline:
            time.sleep(0.2)


def _listening(pids: list[int]) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """Addresses the TCP sockets of ``pids`` listen on (from /proc: socket inodes → /proc/net/tcp{,6})."""
    inodes = set()
    for pid in pids:
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
                if link.startswith("socket:["):
                    inodes.add(link[8:-1])
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    found: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            cols = line.split()
            if cols[3] != "0A" or cols[9] not in inodes:  # 0A: LISTEN
                continue
            raw = bytes.fromhex(cols[1].split(":")[0])
            words = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))  # each 32-bit word in host order
            found.append(ipaddress.ip_address(words))
    return found


@dataclass(frozen=True)
class Cluster:
    address: str
    tmp: str
    groups: list[int]


@pytest.fixture(scope="module")
def cluster():
    """A one-node Ray cluster of 2 CPUs on 127.0.0.1 that lives as long as this module."""
    from ray._private import ray_constants

    tmp = tempfile.mkdtemp(prefix="fogray", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
    port = _free_port()
    env = {**os.environ, "RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO": "0", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    args = ["--head", "--node-ip-address=127.0.0.1", f"--port={port}", "--include-dashboard=false",
            f"--temp-dir={tmp}", f"--ray-client-server-port={_free_port()}", "--min-worker-port=0",
            "--max-worker-port=0", "--num-cpus=2", "--object-store-memory=100000000", "--disable-usage-stats"]
    groups: list[int] = []
    reaper = None
    try:
        proc = subprocess.Popen([RAY, "start", *args], env=env, start_new_session=True,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        groups.append(proc.pid)
        reaper = subprocess.Popen([sys.executable, "-c", REAPER, str(proc.pid)], stdin=subprocess.PIPE,
                                  start_new_session=True)
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0, out
        # the driver connects as a user's would: foglearn resolves a loopback ray:ADDRESS as loopback
        assert ray_constants.ENABLE_RAY_CLUSTER
        yield Cluster(f"127.0.0.1:{port}", tmp, groups)
    finally:
        if ray.is_initialized():  # Ray ends a driver process whose GCS stays unreachable
            ray.shutdown()
        _end(tmp, groups)  # the reaper lives until the group is gone: pytest may die in the middle of this
        if reaper is not None:
            reaper.kill()
            reaper.wait()
        shutil.rmtree(tmp, ignore_errors=True)
        assert not _ours(tmp, groups), "a process of the test's Ray cluster outlived it"


def test_cluster_listens_on_loopback_only(cluster) -> None:
    """Every server of the cluster (GCS, raylet, client server, agents, workers) on 127.0.0.1 only."""
    addrs = _listening(_ours(cluster.tmp, cluster.groups))
    assert addrs, "no listening socket of the cluster found"
    bad = [str(a) for a in addrs if not (a.is_loopback or (a.version == 6 and a.ipv4_mapped is not None
                                                            and a.ipv4_mapped.is_loopback))]
    assert not bad, f"the cluster listens on {bad}"


def _descendants(root: int) -> list[int]:
    out = subprocess.run(["ps", "-eo", "pid=,ppid="], capture_output=True, text=True).stdout
    children: dict[int, list[int]] = {}
    for line in out.splitlines():
        pid, ppid = map(int, line.split())
        children.setdefault(ppid, []).append(pid)
    found, todo = [], [root]
    while todo:
        found.append(todo.pop())
        todo.extend(children.get(found[-1], []))
    return found


def test_local_ray_cluster_listens_on_loopback_only(monkeypatch) -> None:
    """``executor="ray"``: the cluster started here and this driver listen on 127.0.0.1 only, with
    Ray's Linux default (multi-node clusters on: Ray would take the machine's outward address)."""
    from ray._private import ray_constants

    from foglearn.learning.executors import Executor, ray_session

    monkeypatch.setattr(ray_constants, "ENABLE_RAY_CLUSTER", True)
    before = set(_descendants(os.getpid())) - {os.getpid()}  # e.g. the module cluster's reaper
    with ray_session(Executor("ray"), 1) as r:
        assert r.get(r.remote(lambda: 1).remote()) == 1  # a worker process is up too
        started = set(_descendants(os.getpid())) - before - {os.getpid()}
        addrs = _listening([os.getpid(), *started])
    assert ray_constants.ENABLE_RAY_CLUSTER is True  # restored after the start
    assert len(addrs) >= 3, addrs  # GCS, raylet, driver, worker
    assert all(a.is_loopback or (a.version == 6 and a.ipv4_mapped is not None and a.ipv4_mapped.is_loopback)
               for a in addrs), addrs
    deadline = time.monotonic() + 10
    while started & set(_descendants(os.getpid())) and time.monotonic() < deadline:
        time.sleep(0.2)
    left = started & set(_descendants(os.getpid()))
    assert not left, f"processes of the local cluster outlived it: {sorted(left)}"


@pytest.fixture(scope="module")
def scenario_plan():
    scen = synthetic(n_devices=6, horizon=6, topology="full", seed=0, dataset_size=600)
    plan = make_plan(scen)
    assert plan.offload.sum() > 0  # the plan moves data: offloaded points are processed a slot later
    return scen, plan


def _batch_norm_net() -> torch.nn.Module:
    """A module the batched kernels do not know (batch norm): the torch path, per-device buffers."""
    nn = torch.nn
    return nn.Sequential(nn.Conv2d(1, 2, 5, stride=3), nn.BatchNorm2d(2), nn.ReLU(), nn.Flatten(), nn.Linear(128, 10))


@pytest.mark.parametrize("model, in_flight, update, weights", [
    ("mlp", None, "paper", None), ("cnn", 2, "paper", None), ("batch-norm", 4, "paper", None),
    ("mlp", None, "scaled:3", None), ("cnn", 2, "scaled:3", None), ("mlp", None, "minibatch:3", "sqrt"),
    ("cnn", 2, "minibatch:3", [0.5, 1, 1.5, 2, 2.5, 3, 3.5, 4, 4.5, 5])])
def test_train_on_ray_equals_local(cluster, scenario_plan, model, in_flight, update, weights) -> None:
    """τ = 3 > 1, with movement: the blocks (CNN: 3 blocks of 2 devices; MLP: its compiled calls;
    a batch-norm module: 2 blocks on the torch path, buffers averaged too) run in the cluster's two
    actors and their shares of eq. (4) are added in block order, so the final model and every loss
    are the local run's, bit for bit (``scaled:3``: the workers rebuild the rule too — a worker that
    took full steps on small batches would part from the local run; class weights: the workers weight
    each point's loss as the local run does)."""
    scen, plan = scenario_plan
    if model == "batch-norm":
        model = _batch_norm_net()
    kw = dict(dataset="tiny", model=model, period=3, lr=0.05, seed=1, threads=1, in_flight=in_flight,
              device="cpu", local_update=update, class_weights=weights)
    local = train(scen, plan, **kw)
    remote = train(scen, plan, **kw, executor=f"ray:{cluster.address}")
    assert remote.config["executor"] == f"ray:{cluster.address}" and local.config["executor"] == "local"
    assert remote.config["kernel"] == {"mlp": "mlp", "cnn": local.config["kernel"]}.get(model, "vmap")
    assert local.final_state.keys() == remote.final_state.keys()
    for k, v in local.final_state.items():
        assert torch.equal(v, remote.final_state[k]), k
    np.testing.assert_array_equal(local.device_loss, remote.device_loss)
    np.testing.assert_array_equal(local.eval_accuracy, remote.eval_accuracy)
    if weights is not None:  # the weights reached the workers: a run without them parts from both
        plain = train(scen, plan, **{**kw, "class_weights": None})
        assert not torch.equal(plain.final_state["fc1.weight"], remote.final_state["fc1.weight"])


def _same(a: dict, b: dict) -> bool:
    """Equal JSON (NaN, a device idle in a slot, equal to NaN)."""
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def test_sweep_on_ray_stores_and_resumes(cluster, tmp_path) -> None:
    """Two trained cells as Ray tasks: records equal to the local sweep's, stored by the driver;
    a rerun after one record is lost computes only that one."""
    cells = [RunConfig(n_devices=6, horizon=6, dataset="tiny", model="mlp", period=3, lr=0.05, seed=s)
             for s in (0, 1)]
    local = run_sweep(cells, tmp_path / "local", progress=False)
    first = run_sweep(cells, tmp_path / "ray", progress=False, executor=f"ray:{cluster.address}")
    assert sorted(first.computed) == sorted(c.key() for c in cells) and first.complete
    for a, b in zip(local.records, first.records):
        assert a is not None and b is not None
        assert _same(a["training"]["curves"], b["training"]["curves"]) and a["costs"] == b["costs"]
    lost = tmp_path / "ray" / "results" / f"{cells[1].key()}.json"
    assert lost.is_file()
    lost.unlink()
    again = run_sweep(cells, tmp_path / "ray", progress=False, executor=f"ray:{cluster.address}")
    assert again.computed == [cells[1].key()] and again.skipped == [cells[0].key()]
    assert _same(again.records[1]["training"]["curves"], local.records[1]["training"]["curves"])


def test_executor_errors_name_the_argument(scenario_plan, monkeypatch, tmp_path) -> None:
    scen, plan = scenario_plan
    with pytest.raises(InputError, match="executor = 'cluster'"):
        parse_executor("cluster")
    for port in ("999999", "²"):  # not a TCP port (the second was an int() traceback)
        with pytest.raises(InputError, match=f"port '{port}' must be a number from 0 to 65535"):
            parse_executor(f"ray:127.0.0.1:{port}")
    assert parse_executor("ray:ray://head:10001").address == "ray://head:10001"
    assert parse_executor("ray:fe80::abcd").address == "fe80::abcd"  # a bare IPv6 address has no port
    with pytest.raises(InputError, match="port '99999'"):
        parse_executor("ray:[::1]:99999")
    with pytest.raises(InputError, match="executor = 'ray:'"):
        train(scen, plan, "tiny", "mlp", period=3, executor="ray:")
    with pytest.raises(RunError, match="no Ray cluster answers at 127.0.0.1:1"):
        train(scen, plan, "tiny", "mlp", period=3, executor="ray:127.0.0.1:1", device="cpu")
    with pytest.raises(InputError, match="device = 'cuda'"):
        train(scen, plan, "tiny", "mlp", period=3, executor="ray", device="cuda")
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    with pytest.raises(InputError, match="Ray is not installed"):
        train(scen, plan, "tiny", "mlp", period=3, executor="ray", device="cpu")
    with pytest.raises(InputError, match="Ray is not installed"):
        run_sweep([RunConfig(n_devices=4, horizon=4, train=False)], tmp_path, progress=False, executor="ray")


def test_cli_reproduce_on_ray_resumes(cluster, tmp_path) -> None:
    """``foglearn reproduce --executor ray:ADDRESS``: the sweep's runs as Ray tasks; rerun: nothing computed."""
    from typer.testing import CliRunner

    from foglearn.cli import app

    args = ["reproduce", "table3", "--no-train", "--seeds", "1", "--dataset", "tiny", "--devices", "5", "--slots",
            "10", "--window", "5", "--out", str(tmp_path / "out"), "--json", "--executor", f"ray:{cluster.address}"]
    first = CliRunner().invoke(app, args)
    assert first.exit_code == 0, first.output
    section = json.loads(first.stdout)["sections"][0]
    assert section["computed"] == section["runs"] > 0
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0 and json.loads(again.stdout)["sections"][0]["computed"] == 0


@pytest.mark.parametrize("command", ["run", "sweep", "reproduce"])
def test_cli_bad_executor_names_the_option(command, tmp_path) -> None:
    from typer.testing import CliRunner

    from foglearn.cli import app

    extra = ["table3"] if command == "reproduce" else []
    res = CliRunner().invoke(app, [command, *extra, "--executor", "spark", "--out", str(tmp_path / "o")])
    assert res.exit_code != 0 and "executor = 'spark'" in res.output
    assert not (tmp_path / "o" / "results").exists()
