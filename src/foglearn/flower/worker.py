"""A long-running ClientApp process for a SuperNode: imports once, runs every message of the run.

In flwr 1.42 a SuperNode runs its ClientApp through a SuperExec that starts a fresh
``flwr-clientapp`` process for every message (``--isolation subprocess``, the default, or
``--isolation process`` with an operator-started ``flower-superexec``); ``flwr-clientapp`` takes
one task token, runs one message and exits. Each message therefore pays Python's start-up, Flower's
and PyTorch's imports and the data set's loading (2–3 s on an idle x86 core, several times that on a
Raspberry Pi) before an SGD step of milliseconds.

This worker takes the SuperExec's place for a SuperNode started with ``--isolation process``:

.. code-block:: bash

    flower-supernode ... --isolation process --port 9094 &
    python -m foglearn.flower.worker --runtime-api-address 127.0.0.1:9094

It polls the SuperNode's Runtime API for ClientApp tasks (``AcquireTask``, every ``--poll``
seconds) and runs each in this process, through the same steps as ``flwr-clientapp`` (pull the
message, context and FAB with the task's token; call the ClientApp; push the reply and the
context back; a task heartbeat while it runs), so the imports, the data set (:func:`task.dataset`
is cached) and the scenario are paid once per device instead of once per message. The context
(``H_i`` and the local model) still lives in the SuperNode between messages, exactly as with
``flwr-clientapp``.

It runs **only** foglearn's ClientApp (:data:`foglearn.flower.client_app.app`, imported here): a
task whose FAB names another ``clientapp`` component is answered with an error reply and nothing
from the FAB is installed or imported. A ClientApp that raises is an error reply, as with
``flwr-clientapp``; one that kills the process (the ``kill`` fault, an OOM kill) takes the worker
with it: the SuperNode then reports the message failed and the operator's supervisor (systemd
``Restart=always`` around ``flower_app/device.sh``) must restart the worker —
:class:`foglearn.flower.local.LocalDeployment` does not. A task that fails to return its result
(the run was stopped, retries gave up) is logged and the worker serves the next one; SIGTERM stops
it, SIGINT only between tasks (Flower's own helpers send SIGINT to end one stale task).

It uses Flower's Runtime API client and the task helpers of ``flwr-clientapp``
(:mod:`flwr.supernode.runtime.run_clientapp`), checked against flwr 1.42.
"""

from __future__ import annotations

import argparse
import signal
import time
from collections.abc import Callable
from logging import ERROR, INFO, WARNING
from typing import Any

CLIENTAPP_REF = "foglearn.flower.client_app:app"
#: The flwr release whose Runtime API and ``flwr-clientapp`` task helpers this worker was checked against.
TESTED_FLWR = "1.42"
#: What a worker answers a task whose FAB is not foglearn's app.
WRONG_APP = "this SuperNode's worker runs only foglearn's ClientApp ({expected}); the run's FAB names {found!r}"


def fab_clientapp(fab_content: bytes) -> str:
    """The ``clientapp`` component a FAB declares (``[tool.flwr.app.components]``)."""
    from flwr.common.config import get_fab_config

    cfg = get_fab_config(fab_content)
    return str(cfg.get("tool", {}).get("flwr", {}).get("app", {}).get("components", {}).get("clientapp", ""))


class Worker:
    """Polls one SuperNode's Runtime API and runs its ClientApp tasks in this process.

    Parameters
    ----------
    runtime_api_address : str
        ``host:port`` of the SuperNode's Runtime API (its ``--host``/``--port``).
    root_certificates : str, optional
        PEM file of the CA of a SuperNode started with ``--ssl-certfile``; ``None``: plain HTTP
        (the Runtime API listens on 127.0.0.1 by default).
    poll : float
        Seconds between two ``AcquireTask`` calls while there is nothing to run.
    """

    def __init__(self, runtime_api_address: str, root_certificates: str | None = None, poll: float = 0.05):
        if not poll > 0:
            raise ValueError(f"poll = {poll!r}: must be > 0 seconds")
        self.address = runtime_api_address
        self.root_certificates = root_certificates
        self.poll = float(poll)
        self.tasks_run = 0
        self._stop = False
        self._in_task = False

    def _client(self, *interceptors: Any) -> Any:
        from flwr.supercore.retry import make_simple_http_retry_invoker
        from flwr.supercore.runtime import RuntimeHttpClient
        from flwr.supercore.tls import validate_and_resolve_root_certificates

        insecure = self.root_certificates is None
        return RuntimeHttpClient.from_server_address(
            server_address=self.address, insecure=insecure,
            root_certificates=validate_and_resolve_root_certificates(self.root_certificates, insecure),
            interceptors=list(interceptors), retry_invoker=make_simple_http_retry_invoker())

    def acquire(self, client: Any) -> str | None:
        """One ``AcquireTask`` call: the token of a ClientApp task to run, or ``None``."""
        from flwr.proto.runtime_pb2 import AcquireTaskRequest
        from flwr.supercore.constant import TaskType

        res = client.AcquireTask(AcquireTaskRequest(supported_task_types=[TaskType.CLIENT_APP.value]))
        if res.HasField("task") and res.token:
            return str(res.token)
        return None

    def run_task(self, token: str, app: Callable[..., Any] | None = None) -> bool:
        """Run the task ``token`` names with ``app`` (default: foglearn's ClientApp); ``True`` if it completed."""
        from flwr.app import Message
        from flwr.app.error import Error
        from flwr.common.constant import ErrorCode, SubStatus
        from flwr.supercore import log
        from flwr.supercore.heartbeat import HeartbeatSender, make_task_heartbeat_fn_http
        from flwr.supercore.interceptors import RuntimeTokenHttpInterceptor, RuntimeVersionHttpInterceptor
        from flwr.supercore.run import RunNotRunningException
        from flwr.supernode.runtime.run_clientapp import pull_task_input, push_message, push_task_output

        if app is None:
            from foglearn.flower import client_app

            app = client_app.app
        client = self._client(RuntimeVersionHttpInterceptor(component_name="flwr-clientapp"),
                              RuntimeTokenHttpInterceptor(token))
        heartbeat = HeartbeatSender(make_task_heartbeat_fn_http(client))
        message = reply = context = None
        status, details = SubStatus.FAILED, "ClientApp task failed"
        try:
            heartbeat.start()
            message, context, _run, fab = pull_task_input(client)
            found = fab_clientapp(fab.content)
            if found != CLIENTAPP_REF:
                details = WRONG_APP.format(expected=CLIENTAPP_REF, found=found)
                reply = Message(Error(code=ErrorCode.LOAD_CLIENT_APP_EXCEPTION, reason=details), reply_to=message)
            else:
                reply = app(message=message, context=context)
                status, details = SubStatus.COMPLETED, ""
        except RunNotRunningException:  # the run was stopped (HTTP 403): nothing to return, keep serving
            log(WARNING, "foglearn worker: the task's run is no longer running; task dropped")
            if heartbeat.is_running:
                heartbeat.stop()
            client.close()
            self.tasks_run += 1
            return False
        except Exception as exc:  # a ClientApp that raises is an error reply, as with flwr-clientapp
            log(ERROR, "foglearn worker: the ClientApp raised", exc_info=exc)
            details = f"{type(exc)}:<'{exc}'>"
            if message is not None:
                reply = Message(Error(code=ErrorCode.CLIENT_APP_RAISED_EXCEPTION, reason=details), reply_to=message)
        try:
            # returning the result may fail (retries given up, run stopped, a context that cannot be
            # serialised): logged, as flwr-clientapp does, and the worker serves the next task
            if reply is not None and context is not None:
                try:
                    push_message(client, reply, context)
                except (Exception, RunNotRunningException) as exc:
                    log(ERROR, "foglearn worker: could not push the reply", exc_info=exc)
                    status = SubStatus.FAILED
            try:
                push_task_output(client=client, context=context, sub_status=status, details=details)
            except (Exception, RunNotRunningException) as exc:
                log(ERROR, "foglearn worker: could not push the task's output", exc_info=exc)
                status = SubStatus.FAILED
        finally:
            if heartbeat.is_running:
                heartbeat.stop()
            client.close()
        self.tasks_run += 1
        return status == SubStatus.COMPLETED

    def serve(self, max_tasks: int | None = None) -> None:
        """Run tasks until SIGTERM (SIGINT when idle) or ``max_tasks`` tasks."""
        from importlib.metadata import version

        from flwr.supercore import log
        from flwr.supercore.interceptors import RuntimeVersionHttpInterceptor
        from flwr.supercore.run import RunNotRunningException

        from foglearn.flower import client_app, task  # the imports, once

        if not version("flwr").startswith(TESTED_FLWR + "."):
            log(WARNING, "foglearn worker: checked against flwr %s, this is flwr %s: if tasks fail, run the "
                "SuperNode without --isolation process (one flwr-clientapp process per message)",
                TESTED_FLWR, version("flwr"))

        task.preload()

        def stop(signum: int, _frame: Any) -> None:
            # SIGTERM stops the worker (after the task in hand). Flower's helpers send SIGINT to end
            # one task (its heartbeat on a task the SuperNode no longer wants, its retries on HTTP
            # 401): inside a task that must not end the worker, so SIGINT stops it only when idle.
            if signum == signal.SIGTERM or not self._in_task:
                self._stop = True
            else:
                log(WARNING, "foglearn worker: SIGINT during a task (Flower ends a stale task this way): "
                    "the task finishes, the worker keeps serving")

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        client = self._client(RuntimeVersionHttpInterceptor(component_name="SuperExec"))
        log(INFO, "foglearn worker: serving ClientApp tasks of the SuperNode at %s", self.address)
        try:
            while not self._stop and (max_tasks is None or self.tasks_run < max_tasks):
                token = self.acquire(client)
                if token is None:
                    time.sleep(self.poll)
                    continue
                self._in_task = True
                try:
                    self.run_task(token, client_app.app)
                except (Exception, RunNotRunningException) as exc:  # one task's failure is not the worker's
                    log(ERROR, "foglearn worker: task failed", exc_info=exc)
                finally:
                    self._in_task = False
        finally:
            client.close()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m foglearn.flower.worker", description=__doc__.split("\n\n")[0])
    ap.add_argument("--runtime-api-address", default="127.0.0.1:9094",
                    help="the SuperNode's Runtime API, host:port (its --host/--port; default 127.0.0.1:9094)")
    ap.add_argument("--root-certificates", default=None,
                    help="CA of a SuperNode whose Runtime API uses TLS (--ssl-certfile); default: plain HTTP")
    ap.add_argument("--poll", type=float, default=0.05, help="seconds between polls while idle (default 0.05)")
    a = ap.parse_args(argv)
    if not a.poll > 0:
        ap.error(f"--poll {a.poll}: must be > 0 seconds")
    Worker(a.runtime_api_address, a.root_certificates, a.poll).serve()


if __name__ == "__main__":
    main()
