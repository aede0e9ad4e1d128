"""Where a training period's blocks of devices run: here, or as Ray tasks across machines.

Between two aggregations (eq. 4, docs/model.md §4) the devices are independent given the global
model, and the trainer runs them in blocks of consecutive devices (:func:`foglearn.learning.train`).
A block needs only the global model, its devices' points and the period's slots, and gives back
its share ``Σ_{i in block} H_i w_i`` of eq. (4) (float64) and its devices' losses. So a block is a
natural remote task:

* ``executor="local"``: the blocks run in this process (the trainer's own threads).
* ``executor="ray"``: a Ray cluster is started here (``threads`` CPUs, every server of it on
  127.0.0.1 only, no dashboard, worker ports chosen by the system) and stopped when the run ends;
  ``executor="ray:ADDRESS"`` connects to an existing cluster (``ray start --head`` on one machine,
  ``ray start --address=…`` on the others).

With Ray, the training data, the schedule and the point stream are put in the object store once;
one actor per CPU of the cluster (at most one per block) builds the run's model and runner once;
each period the global model is put once and every actor runs a contiguous range of blocks, each
block's share of the sum opened at zero. The driver adds the shares **in block order** — the same
float64 additions as the local run — so the final model is the local run's (for the MLP the
units are its compiled calls of up to 256 devices, whose partial sums the trainer adds in call order).
Results coming back are checked (types, shapes, dtypes) before they are used. Models with random
layers (dropout) draw their masks per block from the run's generator, so they differ from the
local run's masks (as they do for another ``in_flight``). ``τ = 1`` with the paper's update runs
the union identity in the driver: it has no per-device work to send. Ray is imported only when
asked for (``pip install 'flwr[simulation]'`` installs it).
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from foglearn.errors import InputError, RunError

if TYPE_CHECKING:
    import torch


class Remote(Protocol):
    """What the trainer's runners call to run a period's units elsewhere (see module docstring)."""

    def blocks(self, state: object, w: np.ndarray | None, slots: range, blocks: range) -> Iterator[tuple]:
        """Each block's ``(share of eq. 4, losses [len(slots), block])``, in block order."""
        ...

    def calls(self, glob_k: torch.Tensor, lr: float, tasks: list[tuple]) -> Iterator[tuple]:
        """Each MLP call's ``(partial sum, per-point losses)``, in call order."""
        ...


@dataclass(frozen=True)
class Executor:
    """A parsed ``executor`` argument: ``kind`` ``"local"`` or ``"ray"``, ``address`` of an existing
    Ray cluster (``None``: start one here)."""

    kind: str
    address: str | None = None

    @property
    def spec(self) -> str:
        return self.kind if self.address is None else f"{self.kind}:{self.address}"


def parse_executor(spec: str | Executor) -> Executor:
    """``"local"``, ``"ray"`` or ``"ray:ADDRESS"`` (``HOST:PORT`` of a running cluster's head)."""
    if isinstance(spec, Executor):
        return spec
    if isinstance(spec, str):
        kind, sep, address = spec.strip().partition(":")
        kind = kind.lower()
        if kind == "local" and not sep:
            return Executor("local")
        if kind == "ray" and not sep:
            return Executor("ray")
        if kind == "ray" and address.strip():
            host, colon, port = address.strip().rpartition(":")
            bare_ipv6 = ":" in host and not host.endswith("]")  # fe80::1 has no port to check
            if colon and host and "/" not in host and not bare_ipv6 and port and not _port(port):
                raise InputError(f"executor = {spec!r}: port {port!r} must be a number from 0 to 65535")
            return Executor("ray", address.strip())
    raise InputError(f"executor = {spec!r}: must be 'local', 'ray' (a Ray cluster started here) or "
                     "'ray:ADDRESS' (an existing cluster, e.g. 'ray:10.0.0.5:6379')")


def import_ray() -> Any:
    """Ray, or an :class:`InputError` that says how to install it."""
    try:
        import ray
    except ImportError as exc:
        raise InputError("executor = 'ray': Ray is not installed here; install it with "
                         "pip install 'flwr[simulation]' (or pip install 'ray')") from exc
    return ray


@contextmanager
def ray_session(where: Executor, cpus: int) -> Iterator[Any]:
    """Ray, connected to ``where.address`` or to a cluster of ``cpus`` CPUs started here (and shut
    down on exit); a session the caller already opened is used as it is and left open."""
    ray = import_ray()
    if ray.is_initialized():
        yield ray
        return
    if where.address is not None:
        _reachable(where)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # Ray's notice about accelerator variables
            if where.address is None:
                with _loopback():
                    ray.init(num_cpus=max(1, int(cpus)), include_dashboard=False, _node_ip_address="127.0.0.1",
                             log_to_driver=False, logging_level="ERROR", configure_logging=False)
            else:  # a cluster on this machine's loopback address: resolve it as such (not 192.0.2.x)
                with _loopback() if _loopback_host(where.address) else nullcontext():
                    ray.init(address=where.address, log_to_driver=False, logging_level="ERROR",
                             configure_logging=False)
    except Exception as exc:  # noqa: BLE001 - ray raises ConnectionError, RuntimeError, ValueError, …
        raise RunError(f"executor = {where.spec!r}: could not start or reach the Ray cluster: {exc}") from exc
    try:
        yield ray
    finally:
        ray.shutdown()


@contextmanager
def _loopback() -> Iterator[None]:
    """While a cluster is started here: its node address stays ``127.0.0.1``, so the GCS, the raylet,
    the workers and this driver listen on the loopback interface only.

    On Linux Ray replaces ``127.0.0.1`` by the machine's outward address and then listens on all
    interfaces; it keeps the loopback address only where multi-node clusters are off
    (``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``, read once when Ray is imported). The flag is turned
    off for the start only: the processes started get the node's address on their command lines.
    A ``ray:ADDRESS`` connection uses it too when ADDRESS's host is a loopback address (a cluster
    started here that way), and resolves other addresses as Ray does."""
    from ray._private import ray_constants

    if not hasattr(ray_constants, "ENABLE_RAY_CLUSTER"):
        raise RunError("this Ray version has no ENABLE_RAY_CLUSTER setting, so a cluster started here could "
                       "not be kept on 127.0.0.1; start one yourself and pass executor='ray:HOST:PORT'")
    with _LOOPBACK_LOCK:
        was = ray_constants.ENABLE_RAY_CLUSTER
        ray_constants.ENABLE_RAY_CLUSTER = False
        try:
            yield
        finally:
            ray_constants.ENABLE_RAY_CLUSTER = was


#: One :func:`_loopback` at a time (it saves and restores one module-level setting).
_LOOPBACK_LOCK = threading.Lock()


def _port(text: str) -> bool:
    """``text`` is a TCP port: ASCII digits, at most 65535."""
    return text.isascii() and text.isdigit() and int(text) <= 65535


def _loopback_host(address: str | None) -> bool:
    """``address`` is ``HOST:PORT`` with a loopback host (``127.x``, ``localhost``, ``::1``)."""
    host, sep, port = str(address).rpartition(":")
    host = host.strip("[]")
    return bool(sep) and _port(port) and (host.startswith("127.") or host in ("localhost", "::1"))


def _reachable(where: Executor) -> None:
    """A ``HOST:PORT`` address must accept a TCP connection within 5 s (Ray itself retries for
    minutes on an address where nothing listens); other forms (``auto``, ``ray://…``) go to Ray."""
    import socket

    host, sep, port = str(where.address).rpartition(":")
    if not sep or not _port(port) or "/" in host or not host:
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=5).close()
    except OSError as exc:
        raise RunError(f"executor = {where.spec!r}: no Ray cluster answers at {where.address} ({exc}); start one "
                       f"with `ray start --head --port={port}` there, or check the address") from exc


def cluster_cpus(ray: Any) -> int:
    """Whole CPUs of the connected cluster (at least 1)."""
    return max(1, int(ray.cluster_resources().get("CPU", 1)))


@dataclass
class WorkerSpec:
    """What a remote worker needs to rebuild the run's runner and its periods (see
    :func:`foglearn.learning.train`): the model spec, seed and classes (``w(0)`` and the runner
    are rebuilt the same way), the data, the schedule and stream, and the period's layout."""

    model: Any
    seed: int
    n_classes: int
    period: int
    batch: int | None
    lr: float
    x: np.ndarray
    y: np.ndarray
    sched: Any
    stream: np.ndarray
    per_pass: int
    T: int
    n: int
    block: int
    total: int
    #: :attr:`~foglearn.learning.trainer.LocalUpdate.scaled` (``"scaled:B"``)
    scaled: bool = False
    #: ``ω_c``, the classes' loss weights (:func:`~foglearn.learning.partition.class_weight_vector`); ``None``: all 1
    class_weight: np.ndarray | None = None


class BlockWorker:
    """A Ray actor's body: the run's runner and period, built once; runs blocks or MLP calls."""

    def __init__(self, spec: WorkerSpec) -> None:
        import torch

        from foglearn.learning import trainer
        from foglearn.learning.kernels import batched_kernel
        from foglearn.learning.models import make_model

        torch.set_num_threads(1)
        module = make_model(spec.model, seed=spec.seed, n_classes=spec.n_classes)
        on = torch.device("cpu")
        self.runner = trainer._make_runner(module, batched_kernel(module), spec.n, on, spec.seed, trainer._Workers(1),
                                           spec.period, trainer.LocalUpdate(spec.batch, spec.scaled),
                                           spec.class_weight)
        with warnings.catch_warnings():  # the object store's arrays are read-only; the trainer never writes them
            warnings.simplefilter("ignore", UserWarning)
            X, Y = torch.from_numpy(spec.x), torch.from_numpy(spec.y)
        self.X, self.Y = X, Y
        self.job = trainer._Period(X, Y, spec.sched, spec.stream, spec.per_pass, spec.T, spec.n, spec.block,
                                   spec.batch, spec.lr, np.full((spec.total, spec.n), np.nan))

    def blocks(self, state: object, w: np.ndarray | None, slots: range, blocks: Sequence[int]) -> list[tuple]:
        """Blocks ``blocks`` of the period ``slots`` from the global model ``state``: each one's share
        of eq. (4) (its sum opened at zero) and its devices' losses."""
        self.runner.load(state)
        out = []
        for k in blocks:
            self.runner.open_period(w)
            self.runner.run_block(self.job, slots, k)
            c0, c1 = int(self.job.edges[k]), int(self.job.edges[k + 1])
            out.append((self.runner.part(), self.job.device_loss[slots.start:slots.stop, c0:c1].copy()))
        return out

    def calls(self, glob_k: torch.Tensor, lr: float, tasks: list[tuple]) -> list[tuple]:
        """The MLP's compiled calls ``tasks`` from ``glob_k`` (kernel layout), one after another."""
        from foglearn.learning.trainer import _DeviceMajorMLP

        runner = self.runner
        assert isinstance(runner, _DeviceMajorMLP)  # only the MLP's runner sends calls
        runner.glob_k = glob_k
        return [runner._call(dp, sp, pts, w, self.X, self.Y, lr) for dp, sp, pts, w in tasks]


def _tensors(state: object) -> dict[str, torch.Tensor]:
    """A runner's shared state or share as name → tensor (one tensor, or dicts of them)."""
    import torch

    if isinstance(state, torch.Tensor):
        return {"": state}
    if isinstance(state, dict):
        return state
    if isinstance(state, tuple):
        return {k: v for d in state for k, v in _tensors(d).items()}
    raise RunError(f"a Ray worker returned {type(state).__name__} where the model's state was expected")


def _check_part(part: object, state: object, w: np.ndarray | None) -> None:
    """A block's share must be ``None`` exactly when every ``H_i = 0``, else float64 tensors shaped like the model."""
    if w is None:
        if part is not None:
            raise RunError("a Ray worker returned a share of eq. (4) for a period in which no device processes data")
        return
    import torch

    got, want = _tensors(part), _tensors(state)
    if set(got) != set(want):
        raise RunError(f"a Ray worker returned a share of eq. (4) for tensors {sorted(got)}, expected {sorted(want)}")
    for k, v in got.items():
        if not isinstance(v, torch.Tensor) or v.dtype != torch.float64 or v.shape != want[k].shape:
            raise RunError(f"a Ray worker returned a share of eq. (4) for {k or 'the parameters'!r} that is not "
                           f"a float64 tensor of shape {tuple(want[k].shape)}")


def _check_array(a: object, shape: tuple[int, ...], what: str) -> np.ndarray:
    if not isinstance(a, np.ndarray) or a.dtype != np.float64 or a.shape != shape:
        raise RunError(f"a Ray worker returned {what} that is not a float64 array of shape {shape}")
    return a


class RayBlocks:
    """The trainer's :class:`Remote` on Ray: one actor per CPU of the cluster (at most ``units``),
    each given a contiguous range of a period's blocks (or MLP calls)."""

    def __init__(self, ray: Any, spec: WorkerSpec, units: int) -> None:
        self.ray = ray
        count = max(1, min(units, cluster_cpus(ray)))
        actor = ray.remote(num_cpus=1)(BlockWorker)
        spec_ref = ray.put(spec)
        self.edges = np.append(np.arange(0, spec.n, spec.block), spec.n)  # blocks' first devices, as the trainer's
        self.actors = [actor.remote(spec_ref) for _ in range(count)]

    def _get(self, ref: Any) -> Any:
        try:
            return self.ray.get(ref)
        except self.ray.exceptions.RayError as exc:
            raise RunError(f"a Ray worker failed: {exc}") from exc

    def _spread(self, method: str, units: Sequence[Any], *args: Any) -> Iterator[Any]:
        """Contiguous ranges of ``units``, one per actor; results in unit order."""
        shares = [list(part) for part in np.array_split(np.arange(len(units)), len(self.actors)) if len(part)]
        refs = [getattr(self.actors[a], method).remote(*args, [units[i] for i in part])
                for a, part in enumerate(shares)]
        for ref, part in zip(refs, shares):
            out = self._get(ref)
            if not isinstance(out, list) or len(out) != len(part):
                raise RunError(f"a Ray worker returned {type(out).__name__} where {len(part)} results were expected")
            yield from out

    def blocks(self, state, w, slots, blocks):
        state_ref = self.ray.put(state)
        for k, out in zip(blocks, self._spread("blocks", list(blocks), state_ref, w, slots)):
            if not isinstance(out, tuple) or len(out) != 2:
                raise RunError("a Ray worker returned something other than (share, losses) for a block")
            part, loss = out
            _check_part(part, state, w)
            _check_array(loss, (len(slots), int(self.edges[k + 1] - self.edges[k])), "block losses")
            yield part, loss

    def calls(self, glob_k, lr, tasks):
        glob_ref = self.ray.put(glob_k)
        for task, out in zip(tasks, self._spread("calls", tasks, glob_ref, lr)):
            if not isinstance(out, tuple) or len(out) != 2:
                raise RunError("a Ray worker returned something other than (partial sum, losses) for an MLP call")
            _check_array(out[0], (glob_k.numel(),), "an MLP partial sum")
            _check_array(out[1], (len(task[2]),), "MLP losses")
            yield out

    def close(self) -> None:
        for a in self.actors:
            self.ray.kill(a)
        self.actors = []


@contextmanager
def open_executor(where: Executor, cpus: int, spec: WorkerSpec, units: int) -> Iterator[RayBlocks]:
    """Ray actors for one training run (``where.kind == "ray"``), ended with it."""
    with ray_session(where, cpus) as ray:
        pool = RayBlocks(ray, spec, units)
        try:
            yield pool
        finally:
            pool.close()
