"""Ctrl-C stops the linear planners' kernels (they poll a stop flag: planning.interrupt)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from foglearn.network import synthetic
from foglearn.planning import flow as F
from foglearn.planning import flow_kernels as K
from foglearn.planning import interrupt
from foglearn.planning.greedy import plan_greedy


def _overloaded_problem():
    sc = synthetic(n_devices=30, horizon=8, topology="random", rho=0.5, capacities=True, seed=4,
                   max_points=60)
    return F.build_problem(sc.replace(proc_cap=sc.proc_cap * 0.3))


def test_ssp_returns_interrupted_when_stop_is_set():
    prob = _overloaded_problem()
    cp = K.coupled_structure(prob.ptr, prob.alive_end, prob.arc_sink, prob.arc_cost, prob.unsat,
                             prob.supply.size)
    problem = K.Problem(K.Nodes(prob.supply, prob.f, prob.sink_cap),
                        K.Arcs(prob.arc_src, prob.arc_sink, prob.arc_cost, prob.arc_cap), cp)

    def run(stop):
        x, lam = K.greedy_fill(prob.ptr, prob.alive_end, prob.arc_cost, prob.arc_cap, prob.f,
                               prob.supply)
        return K.ssp(problem, x, lam, F.TOL, 16, 16, stop)

    done = run(np.zeros(1, dtype=np.uint8))
    stopped = run(np.ones(1, dtype=np.uint8))
    assert done[0] == K.OK and done[3] > 0  # searches were needed
    assert stopped[0] == K.INTERRUPTED and stopped[3] == 0


def test_solve_flow_raises_plan_interrupted(monkeypatch):
    monkeypatch.setattr(interrupt, "new_stop_flag", lambda: np.ones(1, dtype=np.uint8))
    with pytest.raises(interrupt.PlanInterrupted, match="interrupted"):
        F.solve_flow(_overloaded_problem())


def test_greedy_raises_plan_interrupted(monkeypatch):
    sc = synthetic(n_devices=8, horizon=4, topology="random", rho=0.5, seed=0)
    assert plan_greedy(sc).stats.objective > 0
    monkeypatch.setattr(interrupt, "new_stop_flag", lambda: np.ones(1, dtype=np.uint8))
    with pytest.raises(interrupt.PlanInterrupted, match="interrupted"):
        plan_greedy(sc)


# ``foglearn plan`` with a marker on stderr when the solver's kernel starts (so SIGINT reaches
# the kernel, not the scenario generation before it)
_PLAN_WITH_MARKER = """
import signal
import sys
# as at a terminal: a parent that runs in the background (CI under `cmd &`) hands down SIGINT ignored
signal.signal(signal.SIGINT, signal.default_int_handler)
from foglearn.planning import interrupt
call = interrupt.call
def marked(kernel, *args, **kwargs):
    if kernel.__name__ == "ssp":  # the long one (about 1 s alone here); the others take milliseconds
        print("KERNEL-START", file=sys.stderr, flush=True)
    return call(kernel, *args, **kwargs)
interrupt.call = marked
from foglearn.cli import main
sys.argv = ["foglearn", "plan", "--topology", "random", "--devices", "1000", "--slots", "100", "--rho", "0.3",
            "--capacities", "--out", sys.argv[1]]
main()
"""


@pytest.mark.skipif(os.name != "posix", reason="sends SIGINT")
def test_ctrl_c_stops_foglearn_plan_in_the_kernel(tmp_path):
    # ssp alone runs for about a second at n = 1000, T = 100 with capacities (more on a busy machine)
    F.plan_linear(synthetic(n_devices=8, horizon=4, topology="random", rho=0.5, capacities=True,
                            seed=0))  # the kernels are compiled (cached) before the subprocess
    proc = subprocess.Popen([sys.executable, "-c", _PLAN_WITH_MARKER, str(tmp_path / "plan.json")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for line in proc.stderr:
            if "KERNEL-START" in line:
                break
        else:
            pytest.fail(f"the solver never started: {proc.wait()}")
        time.sleep(0.25)
        assert proc.poll() is None, "the instance finished before Ctrl-C"
        t0 = time.perf_counter()
        proc.send_signal(signal.SIGINT)
        message = proc.stderr.readline()  # the CLI's one-line error, once the kernel has stopped
        answered = time.perf_counter() - t0
        rc = proc.wait(timeout=30)
        exited = time.perf_counter() - t0
        err = message + proc.stderr.read()
    finally:
        proc.kill()
    assert rc == 130, err
    assert "planning interrupted" in message and "Traceback" not in err, err  # in the kernel
    assert answered < 1.5, answered
    assert exited < 4.0, exited  # interpreter teardown after loading numba kernels takes ~1 s
    assert not (tmp_path / "plan.json").exists()


def test_ctrl_c_inside_a_direct_numba_call_is_a_clean_interrupt(capsys):
    """A KeyboardInterrupt that lands while a compiled kernel runs in the main thread surfaces as
    CPython's SystemError("... returned a result with an exception set") caused by it: the CLI reports
    an interrupt (exit 130, one line), and any other SystemError is not hidden."""
    import click

    from foglearn.cli import _guarded

    def interrupted_kernel() -> None:
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt as exc:
            raise SystemError("CPUDispatcher(fractions) returned a result with an exception set") from exc

    def interrupted_helper() -> None:  # Ctrl-C inside numba's own helper, called from the kernel
        try:
            interrupted_kernel()
        except SystemError as exc:
            raise SystemError("CPUDispatcher(_edge_pass) returned a result with an exception set") from exc

    for interrupted in (interrupted_kernel, interrupted_helper):
        with pytest.raises(click.exceptions.Exit) as ended:
            _guarded(interrupted)()
        assert ended.value.exit_code == 130
        assert "interrupted (Ctrl-C)" in capsys.readouterr().err

    def broken() -> None:
        raise SystemError("something else")

    with pytest.raises(SystemError, match="something else"):
        _guarded(broken)()
