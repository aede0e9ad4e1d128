"""Training periods and sweep cells as Ray tasks (foglearn.learning.executors) on a real local cluster.

The module starts its own two-node cluster (``ray start --head`` on 127.0.0.1 plus one worker node,
one CPU each, in a private temp dir, each ``ray start`` in its own process group) and ends every
process it started — by process group and by command line naming its temp dir — whatever happens.
``ray stop`` is not used: it stops every Ray process of the machine, not only this cluster's.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
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

pytest.importorskip("ray")
RAY = str(Path(sys.executable).with_name("ray"))


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
    for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 2.0)):
        for pid in _ours(tmp, groups):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + wait
        while _ours(tmp, groups) and time.monotonic() < deadline:
            time.sleep(0.2)


@pytest.fixture(scope="module")
def cluster():
    """``HOST:PORT`` of a two-node Ray cluster (1 CPU each) that lives as long as this module."""
    tmp = tempfile.mkdtemp(prefix="fogray", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
    port = _free_port()
    env = {**os.environ, "RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO": "0"}
    common = ["--num-cpus=1", "--object-store-memory=100000000", "--disable-usage-stats"]
    groups: list[int] = []
    try:
        for args in (["--head", "--node-ip-address=127.0.0.1", f"--port={port}", "--include-dashboard=false",
                      f"--temp-dir={tmp}", f"--ray-client-server-port={_free_port()}"],
                     [f"--address=127.0.0.1:{port}"]):
            proc = subprocess.Popen([RAY, "start", *args, *common], env=env, start_new_session=True,
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            groups.append(proc.pid)
            out, _ = proc.communicate(timeout=120)
            assert proc.returncode == 0, out
        yield f"127.0.0.1:{port}"
    finally:
        _end(tmp, groups)
        shutil.rmtree(tmp, ignore_errors=True)
        assert not _ours(tmp, groups), "a process of the test's Ray cluster outlived it"


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


@pytest.mark.parametrize("model, in_flight", [("mlp", None), ("cnn", 2), ("batch-norm", 4)])
def test_train_on_ray_equals_local(cluster, scenario_plan, model, in_flight) -> None:
    """τ = 3 > 1, with movement: the blocks (CNN: 3 blocks of 2 devices; MLP: its compiled calls;
    a batch-norm module: 2 blocks on the torch path, buffers averaged too) run on the cluster's two
    nodes and their shares of eq. (4) are added in block order, so the final model and every loss
    are the local run's, bit for bit."""
    scen, plan = scenario_plan
    if model == "batch-norm":
        model = _batch_norm_net()
    kw = dict(dataset="tiny", model=model, period=3, lr=0.05, seed=1, threads=1, in_flight=in_flight,
              device="cpu")
    local = train(scen, plan, **kw)
    remote = train(scen, plan, **kw, executor=f"ray:{cluster}")
    assert remote.config["executor"] == f"ray:{cluster}" and local.config["executor"] == "local"
    assert remote.config["kernel"] == {"mlp": "mlp", "cnn": local.config["kernel"]}.get(model, "vmap")
    assert local.final_state.keys() == remote.final_state.keys()
    for k, v in local.final_state.items():
        assert torch.equal(v, remote.final_state[k]), k
    np.testing.assert_array_equal(local.device_loss, remote.device_loss)
    np.testing.assert_array_equal(local.eval_accuracy, remote.eval_accuracy)


def _same(a: dict, b: dict) -> bool:
    """Equal JSON (NaN, a device idle in a slot, equal to NaN)."""
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def test_sweep_on_ray_stores_and_resumes(cluster, tmp_path) -> None:
    """Two trained cells as Ray tasks: records equal to the local sweep's, stored by the driver;
    a rerun after one record is lost computes only that one."""
    cells = [RunConfig(n_devices=6, horizon=6, dataset="tiny", model="mlp", period=3, lr=0.05, seed=s)
             for s in (0, 1)]
    local = run_sweep(cells, tmp_path / "local", progress=False)
    first = run_sweep(cells, tmp_path / "ray", progress=False, executor=f"ray:{cluster}")
    assert sorted(first.computed) == sorted(c.key() for c in cells) and first.complete
    for a, b in zip(local.records, first.records):
        assert a is not None and b is not None
        assert _same(a["training"]["curves"], b["training"]["curves"]) and a["costs"] == b["costs"]
    lost = tmp_path / "ray" / "results" / f"{cells[1].key()}.json"
    assert lost.is_file()
    lost.unlink()
    again = run_sweep(cells, tmp_path / "ray", progress=False, executor=f"ray:{cluster}")
    assert again.computed == [cells[1].key()] and again.skipped == [cells[0].key()]
    assert _same(again.records[1]["training"]["curves"], local.records[1]["training"]["curves"])


def test_executor_errors_name_the_argument(scenario_plan, monkeypatch, tmp_path) -> None:
    scen, plan = scenario_plan
    with pytest.raises(InputError, match="executor = 'cluster'"):
        parse_executor("cluster")
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
            "10", "--window", "5", "--out", str(tmp_path / "out"), "--json", "--executor", f"ray:{cluster}"]
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
