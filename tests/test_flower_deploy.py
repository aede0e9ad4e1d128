"""Deployment: a real SuperLink and three SuperNodes on 127.0.0.1, TLS + node authentication.

The test generates the certificates and keys with ``flower_app/tls_setup.sh`` (the script
docs/flower.md shows), registers three SuperNode keys, starts the SuperNodes, checks that a
SuperNode with an unregistered key is refused (Flower exit code 305), runs the app with
``flwr run``, SIGKILLs device 1's SuperNode when slot 1 starts and restarts it once the server
has counted it failed, and asserts: the run completes (``status = ok``); the failure is
attributed to device 1 (the SuperLink's "node unavailable" reply names the SuperLink, not the
device); the next window is planned without it; it rejoins (same node id: node auth) and is
active in the last slot, its model aggregated; two devices that lie (``faults``: a claimed
``H_i = 10⁹``, a NaN model) are rejected for their slot and the run completes. Every process is
stopped by PID in a ``finally``.

Slow: every message starts a ClientApp process (torch + Flower imports, ~4 s alone, tens of
seconds on a loaded machine; the SuperLink declares a killed SuperNode unavailable after two
missed 30 s heartbeats). Bounded by ``FOGLEARN_DEPLOY_TIMEOUT`` seconds (default 420).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Procs:
    """Processes started by the test, stopped by PID (their process group) at the end."""

    def __init__(self, tmp: Path, env: dict[str, str]):
        self.tmp, self.env, self.procs = tmp, env, {}

    def start(self, name: str, *args: str) -> subprocess.Popen:
        log = open(self.tmp / f"{name}.log", "w")
        p = subprocess.Popen([str(BIN / args[0]), *args[1:]], cwd=self.tmp, env=self.env, stdout=log,
                             stderr=subprocess.STDOUT, start_new_session=True)
        self.procs[name] = p
        return p

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        p = self.procs[name]
        if p.poll() is None:
            try:
                os.killpg(p.pid, sig)
            except ProcessLookupError:
                pass
            p.wait(timeout=30)

    def stop_all(self) -> None:
        for name in list(self.procs):
            self.kill(name, signal.SIGTERM)

    def log(self, name: str) -> str:
        return (self.tmp / f"{name}.log").read_text(errors="replace")


def _flwr(env, *args, timeout=60):
    return subprocess.run([str(BIN / "flwr"), *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_deployment_with_tls_node_auth_kill_and_restart(tmp_path):
    _need("flower-superlink", "flower-supernode", "flwr", "openssl", "ssh-keygen")
    t_start = time.monotonic()
    subprocess.run(["bash", str(ROOT / "flower_app" / "tls_setup.sh"), str(tmp_path), str(N + 1)], check=True,
                   capture_output=True, timeout=120)
    port = _free_port()
    home = tmp_path / "flwr-home"
    home.mkdir()
    ca = tmp_path / "certificates" / "ca.crt"
    (home / "config.toml").write_text(f'[superlink]\ndefault = "fog"\n\n[superlink.fog]\n'
                                      f'address = "127.0.0.1:{port}"\nroot-certificates = "{ca}"\n')
    env = {**os.environ, "FLWR_HOME": str(home), "FLWR_DISABLE_UPDATE_CHECK": "1", "OMP_NUM_THREADS": "1",
           "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    procs = Procs(tmp_path, env)

    def supernode(i: int, partition: int) -> subprocess.Popen:
        return procs.start(f"supernode-{i}", "flower-supernode", "--superlink", f"127.0.0.1:{port}",
                           "--root-certificates", str(ca), "--auth-supernode-private-key",
                           str(tmp_path / "keys" / f"supernode-{i}"), "--node-config",
                           f"partition-id={partition} num-partitions={N}", "--port", str(_free_port()))

    run = None
    try:
        procs.start("superlink", "flower-superlink", "--ssl-ca-certfile", str(ca),
                    "--ssl-certfile", str(tmp_path / "certificates" / "server.pem"),
                    "--ssl-keyfile", str(tmp_path / "certificates" / "server.key"), "--enable-supernode-auth",
                    "--disable-runtime-dependency-installation", "--host", "127.0.0.1", "--port", str(port))
        deadline = time.monotonic() + 60
        while "Uvicorn running" not in procs.log("superlink"):
            assert time.monotonic() < deadline, procs.log("superlink")
            time.sleep(0.5)
        # keys are registered before the SuperNodes start (a refused SuperNode exits, 305)
        for i in range(N):
            r = _flwr(env, "supernode", "register", str(tmp_path / "keys" / f"supernode-{i}.pub"), "fog")
            assert "registered successfully" in r.stdout, r.stdout + r.stderr
        for i in range(N):
            supernode(i, i)
        rogue = supernode(N, 0)  # a key nobody registered
        assert rogue.wait(timeout=90) != 0
        assert "305" in procs.log(f"supernode-{N}")

        run_dir = tmp_path / "run"
        cfg = (f'num-devices={N} horizon=4 period=2 window=2 dataset="tiny" model="mlp" lr=0.1 max-points=30 '
               f'seed=3 slot-timeout=240 faults="0@2~h,2@3~nan" run-dir="{run_dir}"')
        run = subprocess.Popen([str(BIN / "flwr"), "run", str(ROOT / "flower_app"), "fog", "--stream", "-c", cfg],
                               cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               start_new_session=True)
        lines: list[str] = []
        events = {"slot1": threading.Event(), "failed": threading.Event()}

        def read() -> None:
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
        procs.kill("supernode-1")  # SIGKILL device 1's SuperNode as slot 1 starts
        left = TIMEOUT - (time.monotonic() - t_start)
        assert events["failed"].wait(left), "".join(lines[-40:])
        supernode(1, 1)  # restart it: same key, so the same node id
        run.wait(timeout=max(1.0, TIMEOUT - (time.monotonic() - t_start)))
        reader.join(timeout=10)
        out = "".join(lines)
        assert run.returncode == 0, out[-3000:]
        res = json.loads((run_dir / "result.json").read_text())
    finally:
        if run is not None and run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
            run.wait(timeout=30)
        procs.stop_all()

    assert res["status"] == "ok", res["why_failed"]
    by_dev = {d: [f for f in res["failures"] if f["device"] == d] for d in range(N)}
    # the lying devices: device 0 claims H = 10⁹ in slot 2, device 2 sends a NaN model in slot 3
    assert [(f["slot"], "claims H = 1000000000" in f["reason"]) for f in by_dev[0]] == [(2, True)]
    assert [(f["slot"], "not finite" in f["reason"]) for f in by_dev[2]] == [(3, True)]
    fails = by_dev[1]  # the killed SuperNode, attributed to its device, not to the SuperLink
    assert fails and all("Node Unavailable" in f["reason"] for f in fails), fails
    assert fails[0]["slot"] == 1 and fails[0]["node"] == res["node_of_device"]["1"]
    assert res["planned"]["windows"][-1]["without"] == [1], "window 1 is planned without device 1"
    # slot 2 may start before the restarted SuperNode is back (the SuperLink answers "node
    # unavailable" at once); by slot 3 it is back, with the global model, and trains
    assert {f["slot"] for f in fails} <= {1, 2}
    assert res["movement"]["active"][3] == [1, 1, 0], "device 1 rejoined (device 2 lied)"
    assert list(res["aggregations"][-1]["weights"]) == ["0", "1"], "device 1's model is aggregated, 2's not"
    assert time.monotonic() - t_start < TIMEOUT
