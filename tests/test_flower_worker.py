"""The long-running ClientApp worker: one task run in-process, Flower's Runtime API calls faked.

The live path (a SuperNode with ``--isolation process`` and this worker) is
tests/test_flower_deploy.py; here each task outcome is checked without a SuperNode: foglearn's
app runs and its reply and context are pushed; a FAB naming another ClientApp is refused without
calling anything; a ClientApp that raises becomes an error reply and the worker goes on.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest

pytest.importorskip("flwr")

from flwr.app import ConfigRecord, Context, Message, RecordDict  # noqa: E402
from flwr.common.constant import ErrorCode, SubStatus  # noqa: E402
from flwr.supercore.fab import Fab  # noqa: E402
from flwr.supercore.task_identity import TaskIdentity  # noqa: E402

from foglearn.flower import worker  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _task_identity():
    old = (TaskIdentity._run_id, TaskIdentity._task_id, TaskIdentity._node_id)
    TaskIdentity.run_id, TaskIdentity.task_id, TaskIdentity.node_id = 1, 1, 1
    yield
    TaskIdentity._run_id, TaskIdentity._task_id, TaskIdentity._node_id = old


def _fab(clientapp: str = worker.CLIENTAPP_REF) -> Fab:
    toml = (ROOT / "flower_app" / "pyproject.toml").read_text()
    toml = toml.replace(f'clientapp = "{worker.CLIENTAPP_REF}"', f'clientapp = "{clientapp}"')
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("pyproject.toml", toml)
    return Fab("hash", buf.getvalue(), {})


class Fake:
    """Stands in for the Runtime API: hands out one task, records what the worker pushes."""

    def __init__(self, monkeypatch, fab: Fab):
        import flwr.supercore.heartbeat as hb
        import flwr.supernode.runtime.run_clientapp as rc

        self.message = Message(RecordDict({"cfg": ConfigRecord({"x": 1})}), 7, "train")
        self.message.metadata.__dict__["_message_id"] = "m1"
        self.context = Context(1, 7, {"partition-id": 0}, RecordDict(), {})
        self.pushed: list[Message] = []
        self.outputs: list[tuple[str, str]] = []
        self.closed = 0
        monkeypatch.setattr(rc, "pull_task_input", lambda client: (self.message, self.context, None, fab))
        monkeypatch.setattr(rc, "push_message", lambda client, reply, context: self.pushed.append(reply))
        monkeypatch.setattr(rc, "push_task_output",
                            lambda client, context, sub_status, details: self.outputs.append((sub_status, details)))

        class Heartbeat:
            is_running = False

            def __init__(self, fn):
                pass

            def start(self):
                self.is_running = True

            def stop(self):
                self.is_running = False

        monkeypatch.setattr(hb, "HeartbeatSender", Heartbeat)
        monkeypatch.setattr(hb, "make_task_heartbeat_fn_http", lambda client: None)
        fake = self

        class Client:
            def close(self):
                fake.closed += 1

        monkeypatch.setattr(worker.Worker, "_client", lambda self, *interceptors: Client())


def test_the_worker_runs_foglearns_clientapp_and_pushes_reply_and_context(monkeypatch):
    fake = Fake(monkeypatch, _fab())
    calls = []

    def app(message, context):
        calls.append((message, context))
        context.state["meta"] = ConfigRecord({"h": 5})
        return Message(RecordDict({"report": ConfigRecord({"ok": True})}), reply_to=message)

    w = worker.Worker("127.0.0.1:1")
    assert w.run_task("token", app) is True
    assert calls == [(fake.message, fake.context)]
    assert len(fake.pushed) == 1 and not fake.pushed[0].has_error()
    assert fake.pushed[0].metadata.reply_to_message_id == "m1"
    assert fake.outputs == [(SubStatus.COMPLETED, "")]
    assert fake.context.state["meta"]["h"] == 5, "the context goes back to the SuperNode with the output"
    assert fake.closed == 1 and w.tasks_run == 1


def test_a_fab_of_another_app_is_refused_without_running_anything(monkeypatch):
    fake = Fake(monkeypatch, _fab("evil.module:app"))

    def app(message, context):
        raise AssertionError("must not run")

    assert worker.Worker("127.0.0.1:1").run_task("token", app) is False
    (reply,) = fake.pushed
    assert reply.has_error() and reply.error.code == ErrorCode.LOAD_CLIENT_APP_EXCEPTION
    assert "evil.module:app" in reply.error.reason and worker.CLIENTAPP_REF in reply.error.reason
    assert fake.outputs[0][0] == SubStatus.FAILED


def test_a_clientapp_that_raises_is_an_error_reply_and_the_worker_goes_on(monkeypatch):
    fake = Fake(monkeypatch, _fab())

    def app(message, context):
        raise RuntimeError("injected fault: device 0 fails in slot 3")

    w = worker.Worker("127.0.0.1:1")
    assert w.run_task("token", app) is False
    (reply,) = fake.pushed
    assert reply.has_error() and reply.error.code == ErrorCode.CLIENT_APP_RAISED_EXCEPTION
    assert "device 0 fails in slot 3" in reply.error.reason
    assert fake.outputs == [(SubStatus.FAILED, reply.error.reason)]
    assert w.run_task("token", lambda message, context: Message(RecordDict(), reply_to=message)) is True


def test_fab_clientapp_reads_the_component():
    assert worker.fab_clientapp(_fab().content) == worker.CLIENTAPP_REF


def test_poll_must_be_positive():
    with pytest.raises(ValueError, match="poll = 0"):
        worker.Worker("127.0.0.1:1", poll=0)


def test_importing_the_clientapp_leaves_pytorch_and_plotting_for_later():
    """A fresh ClientApp process pays only what it needs: PyTorch comes with the first slot
    (:func:`foglearn.flower.task.new_model`), matplotlib never."""
    import subprocess
    import sys

    code = ("import sys, foglearn.flower.client_app; "
            "print(sorted(m for m in ('torch', 'matplotlib') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_a_stopped_run_or_a_failed_push_does_not_end_the_worker(monkeypatch):
    """HTTP 403 (RunNotRunningException, a BaseException) while pulling, and a push that gives up,
    drop that task only: the client is closed and the next task runs."""
    import flwr.supernode.runtime.run_clientapp as rc
    from flwr.supercore.run import RunNotRunningException

    fake = Fake(monkeypatch, _fab())
    w = worker.Worker("127.0.0.1:1")

    def stopped(client):
        raise RunNotRunningException()

    monkeypatch.setattr(rc, "pull_task_input", stopped)
    assert w.run_task("token", lambda message, context: Message(RecordDict(), reply_to=message)) is False
    assert fake.closed == 1

    monkeypatch.setattr(rc, "pull_task_input", lambda client: (fake.message, fake.context, None, _fab()))

    def gives_up(client, reply, context):
        raise RuntimeError("retries exhausted")

    monkeypatch.setattr(rc, "push_message", gives_up)
    assert w.run_task("token", lambda message, context: Message(RecordDict(), reply_to=message)) is False
    assert fake.outputs[-1][0] == SubStatus.FAILED and fake.closed == 2
    assert w.tasks_run == 2


def test_sigint_during_a_task_does_not_stop_the_worker(monkeypatch):
    """Flower's heartbeat ends a stale task with SIGINT: inside a task the worker finishes it and keeps
    serving; SIGINT when idle, or SIGTERM, stops it."""
    import os
    import signal

    from foglearn.flower import task

    fake = Fake(monkeypatch, _fab())
    monkeypatch.setattr(task, "preload", lambda: None)
    tokens = iter(["t1", "t2", None])
    monkeypatch.setattr(worker.Worker, "acquire", lambda self, client: next(tokens))
    seen = []

    def app(message, context):
        os.kill(os.getpid(), signal.SIGINT)  # as flwr's heartbeat does
        seen.append(message)
        return Message(RecordDict(), reply_to=message)

    from foglearn.flower import client_app

    monkeypatch.setattr(client_app, "app", app)
    w = worker.Worker("127.0.0.1:1", poll=0.01)
    old = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    try:
        w.serve(max_tasks=2)
        assert len(seen) == 2 and w.tasks_run == 2 and not w._stop  # both tasks ran
        os.kill(os.getpid(), signal.SIGINT)  # idle: stops
        assert w._stop
    finally:
        signal.signal(signal.SIGINT, old[0])
        signal.signal(signal.SIGTERM, old[1])
    assert len(fake.pushed) == 2
