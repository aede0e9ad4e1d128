"""A Flower deployment on one machine: a SuperLink and ``n`` SuperNodes on 127.0.0.1, TLS + node auth.

What docs/flower.md's "Run it on real machines" does by hand, as one object, for the deployment test
and the benchmark (``bench/flower_workload.py --deploy``) and to try a deployment without devices:

.. code-block:: python

    with LocalDeployment(tmp, n=3, tls_dir=tmp) as dep:   # tls_dir: made by flower_app/tls_setup.sh
        dep.start()                                      # SuperLink, keys registered, n devices
        run = dep.flwr_run(app_dir, FlowerRunConfig(num_devices=3, horizon=6, run_dir=...))

Every process it starts is in its own process group and is stopped by its PID (SIGTERM, then
SIGKILL) when the ``with`` block ends, also on failure. Servers listen on 127.0.0.1 only.

``clientapp = "worker"`` (the default) starts each SuperNode with ``--isolation process`` and a
long-running :mod:`foglearn.flower.worker` next to it (imports once per device);
``clientapp = "subprocess"`` is Flower's default (a fresh ``flwr-clientapp`` process per message).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Any

from foglearn.flower.config import FlowerRunConfig

CLIENTAPP_MODES = ("worker", "subprocess")
BIN = Path(sys.executable).parent


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LocalDeployment:
    """SuperLink + SuperNodes (+ workers) on 127.0.0.1; see the module docstring.

    Parameters
    ----------
    workdir : Path
        Logs (``<name>.log``), ``flwr-home/config.toml`` and the processes' working directory.
    n : int
        Number of devices (SuperNodes ``supernode-0..n-1``, ``partition-id = i``).
    tls_dir : Path
        Holds ``certificates/{ca.crt,server.pem,server.key}`` and ``keys/supernode-<i>[.pub]``
        (``flower_app/tls_setup.sh DIR N``).
    clientapp : {"worker", "subprocess"}
        How each SuperNode runs its ClientApp.
    env : dict, optional
        Extra environment for every process (``OMP_NUM_THREADS=1`` and Flower's update check off are set).
    """

    def __init__(self, workdir: Path, n: int, tls_dir: Path, clientapp: str = "worker",
                 env: dict[str, str] | None = None):
        if clientapp not in CLIENTAPP_MODES:
            raise ValueError(f"clientapp = {clientapp!r}: must be one of {', '.join(CLIENTAPP_MODES)}")
        if n < 1:
            raise ValueError(f"n = {n}: must be ≥ 1")
        self.workdir, self.n, self.tls_dir, self.clientapp = Path(workdir), int(n), Path(tls_dir), clientapp
        self.port = free_port()
        self.home = self.workdir / "flwr-home"
        self.ca = self.tls_dir / "certificates" / "ca.crt"
        self.env = {**os.environ, "FLWR_HOME": str(self.home), "FLWR_DISABLE_UPDATE_CHECK": "1",
                    "OMP_NUM_THREADS": "1", "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
                    **(env or {})}
        self.procs: dict[str, subprocess.Popen[Any]] = {}
        self._logs: dict[str, IO[str]] = {}

    # ---- processes
    def spawn(self, name: str, *args: str) -> subprocess.Popen[Any]:
        """Start ``args`` (a venv executable, or ``python``) as ``name``, output to ``<name>.log``."""
        exe = sys.executable if args[0] == "python" else str(BIN / args[0])
        if name in self._logs:
            self._logs[name].close()
        log = self._logs[name] = open(self.workdir / f"{name}.log", "a")
        p = subprocess.Popen([exe, *args[1:]], cwd=self.workdir, env=self.env, stdout=log,
                             stderr=subprocess.STDOUT, start_new_session=True)
        self.procs[name] = p
        return p

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Signal ``name``'s process group and wait for the process (SIGKILL after 20 s)."""
        p = self.procs.get(name)
        if p is None or p.poll() is not None:
            return
        try:
            os.killpg(p.pid, sig)
            p.wait(timeout=20)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(timeout=20)

    def stop_all(self) -> None:
        """SIGTERM every process started here (workers first), then close the logs."""
        for name in sorted(self.procs, key=lambda s: (not s.startswith("worker"), s != "superlink", s)):
            self.kill(name, signal.SIGTERM)
        for f in self._logs.values():
            f.close()

    def log(self, name: str) -> str:
        path = self.workdir / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def __enter__(self) -> LocalDeployment:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_all()

    # ---- the deployment
    def start_superlink(self, timeout: float = 90.0) -> None:
        """The SuperLink: TLS, node authentication, no runtime dependency installation, 127.0.0.1."""
        self.home.mkdir(parents=True, exist_ok=True)
        import tomli_w  # a path holding " or \\ stays valid TOML

        fog = {"address": f"127.0.0.1:{self.port}", "root-certificates": str(self.ca.resolve())}
        (self.home / "config.toml").write_text(tomli_w.dumps({"superlink": {"default": "fog", "fog": fog}}))
        c = self.tls_dir / "certificates"
        self.spawn("superlink", "flower-superlink", "--ssl-ca-certfile", str(self.ca),
                   "--ssl-certfile", str(c / "server.pem"), "--ssl-keyfile", str(c / "server.key"),
                   "--enable-supernode-auth", "--disable-runtime-dependency-installation",
                   "--host", "127.0.0.1", "--port", str(self.port))
        self._wait_for("superlink", "Uvicorn running", timeout)

    def register(self, key: int) -> None:
        """Register SuperNode key ``keys/supernode-<key>.pub`` with the SuperLink."""
        r = self.flwr("supernode", "register", str(self.tls_dir / "keys" / f"supernode-{key}.pub"), "fog")
        if "registered successfully" not in r.stdout:
            raise RuntimeError(f"registering supernode-{key} failed: {r.stdout}{r.stderr}")

    def start_device(self, i: int, key: int | None = None, partition: int | None = None) -> subprocess.Popen[Any]:
        """SuperNode ``supernode-<i>`` with key ``key`` (default ``i``) and ``partition-id`` (default ``i``),
        and its worker (``worker-<i>``) in worker mode. Returns the SuperNode's process."""
        key = i if key is None else key
        partition = i if partition is None else partition
        rport = free_port()
        args = ["flower-supernode", "--superlink", f"127.0.0.1:{self.port}", "--root-certificates", str(self.ca),
                "--auth-supernode-private-key", str(self.tls_dir / "keys" / f"supernode-{key}"),
                "--node-config", f"partition-id={partition} num-partitions={self.n}",
                "--host", "127.0.0.1", "--port", str(rport)]
        if self.clientapp == "worker":
            args += ["--isolation", "process"]
        sn = self.spawn(f"supernode-{i}", *args)
        if self.clientapp == "worker":
            self.spawn(f"worker-{i}", "python", "-m", "foglearn.flower.worker",
                       "--runtime-api-address", f"127.0.0.1:{rport}")
        return sn

    def kill_device(self, i: int, sig: int = signal.SIGKILL) -> None:
        """Kill device ``i``: its SuperNode and its worker."""
        self.kill(f"supernode-{i}", sig)
        self.kill(f"worker-{i}", sig)

    def start(self) -> None:
        """SuperLink, every key registered, devices ``0..n-1`` started."""
        self.start_superlink()
        for i in range(self.n):
            self.register(i)
        for i in range(self.n):
            self.start_device(i)

    def flwr(self, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(BIN / "flwr"), *args], cwd=self.workdir, env=self.env, capture_output=True,
                              text=True, timeout=timeout)

    def flwr_run(self, app_dir: Path, cfg: FlowerRunConfig) -> subprocess.Popen[str]:
        """``flwr run APP fog --stream -c run-config.toml`` (``cfg`` written there), output piped
        (the caller reads and waits)."""
        import tomli_w

        path = self.workdir / "run-config.toml"
        path.write_text(tomli_w.dumps(cfg.to_user_config()))
        p: subprocess.Popen[str] = subprocess.Popen(
            [str(BIN / "flwr"), "run", str(Path(app_dir).resolve()), "fog", "--stream", "-c", str(path)],
            cwd=self.workdir, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            start_new_session=True)
        self.procs["flwr-run"] = p
        return p

    def _wait_for(self, name: str, text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.log(name):
            p = self.procs[name]
            if p.poll() is not None:
                raise RuntimeError(f"{name} exited with {p.returncode}: {self.log(name)[-2000:]}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{name}: no {text!r} within {timeout:.0f} s: {self.log(name)[-2000:]}")
            time.sleep(0.2)
