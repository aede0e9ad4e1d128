"""Deployment: a real SuperLink and three SuperNodes on 127.0.0.1, TLS + node authentication.

The test generates the certificates and keys with ``flower_app/tls_setup.sh`` (the script
docs/flower.md shows), registers three SuperNode keys, starts the SuperNodes the way docs/flower.md
recommends (``--isolation process`` and a long-running ``python -m foglearn.flower.worker`` each,
through :class:`foglearn.flower.local.LocalDeployment`), checks that a SuperNode with an
unregistered key is refused (Flower exit code 305), runs the app with ``flwr run``, SIGKILLs device
1 (SuperNode and worker) when slot 1 starts and restarts it once the server has counted it failed,
and asserts: the run completes (``status = ok``); the failures are attributed to device 1 (the
SuperLink's "node unavailable" reply names the SuperLink, not the device), in consecutive slots from
slot 1 (or 2, if it answered slot 1 before the kill landed); a window is planned without it; it
rejoins (same node id: node auth) and is active in the last slot, its model aggregated; two
devices that lie (``faults``: a claimed ``H_i = 10⁹``, a NaN model) are rejected for their slot
and the run completes. Then the in-process simulator (:func:`run_flower`) runs the
same config with device 1 failing in the slots it failed live: every count, aggregation weight,
accuracy and loss, and the final global model equal the deployment's (to float round-off). Every
process is stopped by PID in a ``finally``.

Slow: the SuperLink declares a killed SuperNode unavailable only after two missed 30 s
heartbeats, and the simulator starts Ray. Bounded by ``FOGLEARN_DEPLOY_TIMEOUT`` seconds
(default 420) for the deployment.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
TIMEOUT = float(os.environ.get("FOGLEARN_DEPLOY_TIMEOUT", "420"))
N = 3


def _need(*tools):
    for t in tools:
        if shutil.which(t, path=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}") is None:
            pytest.skip(f"{t} not found")


def test_deployment_with_tls_node_auth_kill_and_restart(tmp_path):
    _need("flower-superlink", "flower-supernode", "flwr", "openssl", "ssh-keygen")
    pytest.importorskip("ray")
    from foglearn.flower.config import FlowerRunConfig
    from foglearn.flower.local import LocalDeployment
    from foglearn.flower.simulation import run_flower

    t_start = time.monotonic()
    subprocess.run(["bash", str(ROOT / "flower_app" / "tls_setup.sh"), str(tmp_path), str(N + 1)], check=True,
                   capture_output=True, timeout=120)
    cfg = FlowerRunConfig(num_devices=N, horizon=8, period=2, window=2, dataset="tiny", model="mlp", lr=0.1,
                          max_points=30, seed=3, slot_timeout=240, faults="0@2~h,2@3~nan",
                          run_dir=str(tmp_path / "run"))
    dep = LocalDeployment(tmp_path, N, tls_dir=tmp_path, clientapp="worker")
    try:
        dep.start_superlink()
        # keys are registered before the SuperNodes start (a refused SuperNode exits, 305)
        for i in range(N):
            dep.register(i)
        for i in range(N):
            dep.start_device(i)
        rogue = dep.start_device(N, key=N, partition=0)  # a key nobody registered
        assert rogue.wait(timeout=90) != 0
        assert "305" in dep.log(f"supernode-{N}")
        dep.kill(f"worker-{N}")

        run = dep.flwr_run(ROOT / "flower_app", cfg)
        lines: list[str] = []
        events = {"slot1": threading.Event(), "failed": threading.Event()}

        def read() -> None:
            assert run.stdout is not None
            for line in run.stdout:
                lines.append(line)
                if "[ROUND 2/" in line:
                    events["slot1"].set()
                if "device 1 (node" in line and "failed" in line:
                    events["failed"].set()

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        left = TIMEOUT - (time.monotonic() - t_start)
        assert events["slot1"].wait(left), "".join(lines[-40:])
        dep.kill_device(1)  # SIGKILL device 1 (its SuperNode and its worker) as slot 1 starts
        left = TIMEOUT - (time.monotonic() - t_start)
        assert events["failed"].wait(left), "".join(lines[-40:])
        dep.start_device(1)  # restart it: same key, so the same node id
        run.wait(timeout=max(1.0, TIMEOUT - (time.monotonic() - t_start)))
        reader.join(timeout=10)
        out = "".join(lines)
        assert run.returncode == 0, out[-3000:]
        res = json.loads((tmp_path / "run" / "result.json").read_text())
        deploy_seconds = time.monotonic() - t_start
    finally:
        dep.stop_all()
    assert all(p.poll() is not None for p in dep.procs.values()), "every process is stopped"

    assert res["status"] == "ok", res["why_failed"]
    by_dev = {d: [f for f in res["failures"] if f["device"] == d] for d in range(N)}
    # the lying devices: device 0 claims H = 10⁹ in slot 2, device 2 sends a NaN model in slot 3
    assert [(f["slot"], "claims H = 1000000000" in f["reason"]) for f in by_dev[0]] == [(2, True)]
    assert [(f["slot"], "not finite" in f["reason"]) for f in by_dev[2]] == [(3, True)]
    fails = by_dev[1]  # the killed SuperNode, attributed to its device, not to the SuperLink
    # Flower's two answers for a dead node: no heartbeat ("Node Unavailable"), or, when the kill lands
    # while the device uploads its reply, the reply's objects never arrive ("Reply message objects are
    # unavailable"); either way the device, not the run, fails for the slot
    dead = ("Node Unavailable", "Reply message objects are unavailable")
    assert fails and all(any(d in f["reason"] for d in dead) for f in fails), fails
    assert all(f["node"] == res["node_of_device"]["1"] for f in fails)
    # killed as slot 1 starts: slot 1 is its first failure, or slot 2 if it answered slot 1 before
    # the kill landed; it misses consecutive slots (the SuperLink answers "node unavailable" at
    # once while it is away) until the restarted SuperNode is back with the same node id
    down = [f["slot"] for f in fails]
    assert down[0] in (1, 2) and down == list(range(down[0], down[-1] + 1)) and down[-1] <= 5, down
    # windows 1-3 are planned without the devices that failed the slot before them (device 1, and
    # device 2 after its NaN model in slot 3)
    failed_in = [sorted({f["device"] for f in res["failures"] if f["slot"] == t}) for t in range(8)]
    assert [w["without"] for w in res["planned"]["windows"]] == [failed_in[1], failed_in[3], failed_in[5]]
    assert any(1 in w["without"] for w in res["planned"]["windows"]), "a window is planned without device 1"
    assert res["movement"]["active"][7] == [1, 1, 1], "device 1 rejoined"
    assert list(res["aggregations"][-1]["weights"]) == ["0", "1", "2"], "device 1's model is aggregated again"
    assert deploy_seconds < TIMEOUT

    # the in-process simulator, same config, device 1 failing in the slots it failed live: the
    # surviving devices' counts, the H_i weights, accuracy and loss, and the final model are the same
    faults = ",".join([cfg.faults, *(f"1@{t}" for t in down)])
    sim_cfg = FlowerRunConfig(**{**cfg.as_dict(), "faults": faults, "run_dir": str(tmp_path / "sim")})
    sim = run_flower(sim_cfg)
    assert sim["movement"] == res["movement"]
    assert [a["weights"] for a in sim["aggregations"]] == [a["weights"] for a in res["aggregations"]]
    assert sorted((f["slot"], f["device"]) for f in sim["failures"]) == sorted((f["slot"], f["device"])
                                                                             for f in res["failures"])
    assert [c["slot"] for c in sim["accuracy"]] == [c["slot"] for c in res["accuracy"]]
    np.testing.assert_allclose([c["loss"] for c in sim["accuracy"]], [c["loss"] for c in res["accuracy"]],
                               rtol=1e-6)
    np.testing.assert_allclose([c["accuracy"] for c in sim["accuracy"]], [c["accuracy"] for c in res["accuracy"]])
    with np.load(tmp_path / "run" / "model.npz") as live, np.load(tmp_path / "sim" / "model.npz") as simulated:
        assert sorted(live.files) == sorted(simulated.files)
        for k in live.files:
            np.testing.assert_allclose(live[k], simulated[k], rtol=1e-6, atol=1e-7, err_msg=k)
