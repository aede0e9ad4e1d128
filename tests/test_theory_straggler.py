"""Theorem 2 (docs/model.md §3): C*(σ, μ), φ(C) and the D/M/1 queue simulation."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from foglearn.theory import (
    TheoryError,
    phi,
    queue_wait,
    simulate_queue_wait,
    sojourn_time,
    straggler_capacity,
    target_phi,
)

REFERENCE = [((1.0, 10.0), 9.538, 1.005), ((0.5, 20.0), 19.076, 0.503), ((0.1, 100.0), 95.382, 0.1005)]


@pytest.mark.parametrize(("args", "c_spec", "_w"), REFERENCE)
def test_capacity_matches_spec(args, c_spec, _w):
    assert round(straggler_capacity(*args), 3) == c_spec


def test_sojourn_capacity_matches_spec():
    assert round(straggler_capacity(1, 10, wait="sojourn"), 3) == 9.491


@pytest.mark.parametrize(("args", "c_spec", "w_spec"), REFERENCE)
def test_simulated_wait_confirms_theorem(args, c_spec, w_spec):
    sigma, mu = args
    C = straggler_capacity(sigma, mu)
    sim = simulate_queue_wait(C, mu, customers=20_000_000, batches=40, seed=0)
    # Monte Carlo tolerance: 4 batch-means standard errors (about 3% at 20M points, rho = 0.954).
    assert sim.stderr < 0.01 * sigma
    assert abs(sim.mean_wait - sigma) < 4 * sim.stderr
    assert abs(sim.mean_wait - w_spec) < 4 * sim.stderr  # the reference simulated value, same tolerance
    assert abs(sim.mean_sojourn - (sigma + 1 / mu)) < 4 * sim.sojourn_stderr
    assert sim.theory_wait == pytest.approx(sigma, rel=1e-12)


def test_simulation_scales_with_time_unit():
    # The three reference cases are one queue (σμ = 10) in different time units: same seed, same scaled waits.
    sims = [simulate_queue_wait(straggler_capacity(s, m), m, customers=200_000, seed=3) for (s, m), _, _ in REFERENCE]
    scaled = [sim.mean_wait / s for sim, ((s, _m), _, _) in zip(sims, REFERENCE)]
    assert scaled[1] == pytest.approx(scaled[0], rel=1e-9)
    assert scaled[2] == pytest.approx(scaled[0], rel=1e-9)


def test_simulation_detects_a_wrong_capacity():
    # 10% more capacity than C* must show up as a clearly longer wait (the check can fail).
    C = straggler_capacity(1.0, 10.0)
    sim = simulate_queue_wait(min(1.02 * C, 9.9), 10.0, customers=4_000_000, seed=1)
    assert sim.mean_wait - 1.0 > 4 * sim.stderr


def test_phi_solves_its_equation_and_targets():
    for C, mu in [(9.538, 10.0), (1.0, 10.0), (9.99, 10.0), (0.5, 3.0)]:
        p = phi(C, mu)
        assert 0 < p < 1
        assert p == pytest.approx(math.exp(-mu * (1 - p) / C), abs=1e-13)
    assert phi(straggler_capacity(1, 10), 10) == pytest.approx(target_phi(1, 10), rel=1e-12)
    assert phi(straggler_capacity(1, 10, "sojourn"), 10) == pytest.approx(target_phi(1, 10, "sojourn"), rel=1e-12)


@settings(max_examples=60, deadline=None)
@given(st.floats(1e-3, 1e3), st.floats(1e-2, 1e3))
def test_capacity_inverts_the_waiting_time(sigma, mu):
    C = straggler_capacity(sigma, mu)
    assert 0 < C < mu
    assert queue_wait(C, mu) == pytest.approx(sigma, rel=1e-7)
    if sigma * mu > 1.01:
        Cs = straggler_capacity(sigma, mu, wait="sojourn")
        assert Cs < C
        assert sojourn_time(Cs, mu) == pytest.approx(sigma, rel=1e-7)


@settings(max_examples=40, deadline=None)
@given(st.floats(0.01, 0.98), st.floats(0.001, 0.01))
def test_phi_increases_with_capacity(rho, step):
    mu = 7.0
    assert phi(rho * mu, mu) < phi(min(rho + step, 0.999) * mu, mu)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: straggler_capacity(0, 10), "sigma"),
        (lambda: straggler_capacity(1, -1), "mu"),
        (lambda: straggler_capacity(0.05, 10, wait="sojourn"), "sigma \\* mu"),
        (lambda: straggler_capacity(1, 10, wait="total"), "wait"),
        (lambda: phi(10, 10), "C < mu"),
        (lambda: phi(float("nan"), 10), "capacity"),
        (lambda: simulate_queue_wait(11, 10), "unstable"),
        (lambda: simulate_queue_wait(5, 10, customers=1), "customers"),
    ],
)
def test_invalid_inputs_name_the_rule(call, message):
    with pytest.raises(TheoryError, match=message):
        call()
