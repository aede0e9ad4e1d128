"""Square-root planner on the hard instance families (vs Clarabel) and Ctrl-C during a long plan."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from test_planning_sqrt import _check_plan, feasible_reference_cost

from foglearn.planning import sqrt_kernels as K
from foglearn.planning.hard_instances import FAMILIES, short_of_data
from foglearn.planning.reference import reference_sqrt
from foglearn.planning.sqrt import SqrtNetwork, plan_sqrt


@pytest.mark.parametrize("family", sorted(FAMILIES))
@pytest.mark.parametrize("seed", [0, 1])
def test_family_matches_clarabel(family, seed):
    sc = FAMILIES[family](7, 4, seed)
    p = plan_sqrt(sc)
    _check_plan(sc, p)
    assert p.stats.extra["oversubscribed_sources"] > 0  # every family exercises the repair
    ref = reference_sqrt(sc)
    # Clarabel is accurate to ~1e-7 relative on extreme_weights; ours is certified to 1e-9
    assert p.stats.objective == pytest.approx(ref.stats.objective, rel=2e-6)
    assert p.stats.extra["dual_bound"] <= feasible_reference_cost(sc, ref) * (1 + 1e-12)


def test_repair_returns_at_once_when_asked_to_stop():
    sn = SqrtNetwork(short_of_data(12, 6))
    xo, x, pi = K.decoupled(sn.net)
    d = K.out_flow(sn.net.T, sn.net.n, sn.net.D, xo, x, sn.net.src)
    st = K.Flow(xo, x, pi, np.zeros(pi.size), d)
    status, steps, _, _ = K.repair(sn.net, st, 1e-12, 10**9, np.ones(1, np.uint8))
    assert status == K.INTERRUPTED
    assert steps == K.POLL_STEPS  # it stopped at its first look at the flag


def test_ctrl_c_stops_a_long_sqrt_plan_within_a_second(tmp_path):
    path = short_of_data(60, 20).save(tmp_path / "short.npz")  # its repair takes tens of seconds
    code = "import sys; from foglearn.cli import main; sys.argv[0] = 'foglearn'; main()"
    proc = subprocess.Popen([sys.executable, "-c", code, "plan", "--scenario", str(path), "--error", "sqrt",
                             "--no-compare", "--out", str(tmp_path / "plan.json")],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        first = proc.stdout.readline()  # the scenario line is printed just before planning
        assert first.startswith("Scenario("), first
        time.sleep(4.0)  # well inside the repair kernel
        assert proc.poll() is None, "the plan finished before it could be interrupted"
        t0 = time.monotonic()
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
        waited = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130
    assert "interrupted" in out and "Traceback" not in out
    assert waited < 2.0
    assert not (tmp_path / "plan.json").exists()
