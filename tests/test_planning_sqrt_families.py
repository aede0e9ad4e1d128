"""Square-root planner on the hard instance families (vs Clarabel) and Ctrl-C during a long plan."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from test_planning_sqrt import _check_plan, feasible_reference_cost

from foglearn.planning import sqrt_ipm as I
from foglearn.planning import sqrt_kernels as K
from foglearn.planning.hard_instances import FAMILIES, short_of_data
from foglearn.planning.reference import reference_sqrt
from foglearn.planning.sqrt import SqrtNetwork, plan_sqrt

#: Clarabel run to its floating-point limit (its defaults stop at ~1e-7 relative on extreme_weights)
TIGHT = dict(tol_gap_abs=1e-12, tol_gap_rel=1e-12, tol_feas=1e-12, tol_ktratio=1e-10, max_iter=400)


@pytest.mark.filterwarnings("ignore:Solution may be inaccurate")  # Clarabel at its limit, still ~1e-9
@pytest.mark.parametrize("family", sorted(FAMILIES))
@pytest.mark.parametrize("seed", [0, 1])
def test_family_matches_clarabel(family, seed):
    sc = FAMILIES[family](7, 4, seed)
    ref = reference_sqrt(sc, **TIGHT)
    for method in ("auto", "repair"):
        p = plan_sqrt(sc, method=method)
        _check_plan(sc, p)  # certified: relative gap <= 1e-9
        assert p.stats.extra["oversubscribed_sources"] > 0  # coupled: the decoupled start is not feasible
        assert p.stats.extra["method"] == ("ipm" if method == "auto" else "repair")
        assert p.stats.objective == pytest.approx(ref.stats.objective, rel=1e-7)
        assert p.stats.extra["dual_bound"] <= feasible_reference_cost(sc, ref) * (1 + 1e-12)


def test_repair_returns_at_once_when_asked_to_stop():
    sn = SqrtNetwork(short_of_data(12, 6))
    xo, x, pi = K.decoupled(sn.net)
    d = K.out_flow(sn.net.T, sn.net.n, sn.net.D, xo, x, sn.net.src)
    st = K.Flow(xo, x, pi, np.zeros(pi.size), d)
    status, steps, _, _ = K.repair(sn.net, st, 1e-12, 10**9, np.ones(1, np.uint8))
    assert status == K.INTERRUPTED
    assert steps == K.POLL_STEPS  # it stopped at its first look at the flag


def test_interior_point_returns_at_once_when_asked_to_stop():
    sn = SqrtNetwork(short_of_data(12, 6))
    arcs = I.build_arcs(sn.net)
    asked = []
    status, _, _, steps = I.ipm(sn.net, arcs, np.zeros(arcs.src.size), lambda *a: asked.append(a) or False,
                                np.inf, 100, True, np.ones(1, np.uint8))
    assert (status, steps, asked) == ("interrupted", 0, [])


# ``foglearn plan`` with a marker on stderr when the planner's worker thread starts (so SIGINT
# reaches the interior point, not the scenario loading before it)
_PLAN_WITH_MARKER = """
import signal
import sys
# as at a terminal: a parent that runs in the background (CI under `cmd &`) hands down SIGINT ignored
signal.signal(signal.SIGINT, signal.default_int_handler)
from foglearn.planning import interrupt
call = interrupt.call
def marked(*args, **kwargs):
    print("KERNEL-START", file=sys.stderr, flush=True)
    return call(*args, **kwargs)
interrupt.call = marked
from foglearn.cli import main
sys.argv = ["foglearn", "plan", "--scenario", sys.argv[1], "--error", "sqrt", "--no-compare", "--out", sys.argv[2]]
main()
"""


def test_ctrl_c_stops_a_long_sqrt_plan_within_a_second(tmp_path):
    plan_sqrt(short_of_data(5, 3))  # the kernels are compiled (cached) before the subprocess
    path = short_of_data(150, 40).save(tmp_path / "short.npz")  # ~870k arcs: many seconds of Newton steps
    proc = subprocess.Popen([sys.executable, "-c", _PLAN_WITH_MARKER, str(path), str(tmp_path / "plan.json")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for line in proc.stderr:
            if "KERNEL-START" in line:
                break
        else:
            pytest.fail(f"the planner never started: {proc.wait()}")
        time.sleep(1.5)
        assert proc.poll() is None, "the plan finished before it could be interrupted"
        t0 = time.monotonic()
        proc.send_signal(signal.SIGINT)
        message = proc.stderr.readline()  # the CLI's one-line error, once the worker has stopped
        answered = time.monotonic() - t0
        rc = proc.wait(timeout=30)
        exited = time.monotonic() - t0
        err = message + proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert rc == 130, err
    assert "interrupted" in message and "Traceback" not in err, err
    assert answered < 1.5, answered
    assert exited < 4.0, exited  # interpreter teardown after loading numba kernels takes ~1 s
    assert not (tmp_path / "plan.json").exists()
