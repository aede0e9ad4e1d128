"""What keeps the planned n = 100,000 run in memory (docs/performance.md, "Many devices"): the
trainer's own schedule builds only the routing and ``G_i(t)``, windows count the offloads, the
schedule keeps only offloads that carry points, and a solver's fractions become the plan uncopied."""

from __future__ import annotations

import numpy as np
import pytest

from foglearn.learning import no_movement_plan, schedule
from foglearn.learning import trainer as trainer_mod
from foglearn.network.scenario import Scenario
from foglearn.planning.plan import Plan


def _scenario(T=8, n=6, seed=2):
    rng = np.random.default_rng(seed)
    src = np.array([i for i in range(n)] + [0, 3])
    dst = np.array([(i + 1) % n for i in range(n)] + [2, 5])
    E = len(src)
    return Scenario(collected=rng.integers(0, 7, (T, n)), proc_cost=rng.random((T, n)),
                    error_weight=rng.random((T, n)), src=src, dst=dst, link_cost=rng.random((T, E)) * 0.1,
                    proc_cap=rng.uniform(2, 8, (T, n)), link_cap=rng.uniform(0, 3, (T, E)))


def _plan(s, seed=1):
    rng = np.random.default_rng(seed)
    off = rng.random((s.horizon, s.n_edges)) * 0.2
    off[-1] = 0.0
    return Plan.from_fractions(s, rng.random((s.horizon, s.n_devices)) * 0.5, off, check=False)


def test_trainers_schedule_is_the_public_routing_without_the_tables():
    s = _scenario()
    p = _plan(s)
    full = schedule(s, p)
    lean = trainer_mod._schedule(s, p, tables=False)
    for f in ("slot", "device", "pos", "processed"):
        assert np.array_equal(getattr(lean, f), getattr(full, f)), f
    assert full.kept.shape == (s.horizon, s.n_devices) and full.dropped.sum() > 0
    assert lean.kept.shape == lean.discarded.shape == lean.dropped.shape == (0, s.n_devices)
    assert all(a.size == 0 for a in lean.offloaded)


def test_schedule_lists_only_offloads_that_carry_points():
    s = _scenario()
    p = _plan(s)
    t, e, cnt = schedule(s, p).offloaded
    assert (cnt > 0).all() and cnt.sum() > 0
    assert np.count_nonzero(p.offload > 0) > len(cnt)  # some fractions round to no point and are left out
    sent = np.zeros(p.offload.shape, np.int64)
    sent[t, e] = cnt
    assert sent.sum() == schedule(s, p).offloaded[2].sum()


@pytest.mark.parametrize("items", [1, 20, 40, 10**9])
def test_windows_count_offloads_and_cover_the_horizon(monkeypatch, items):
    s = _scenario()
    p = _plan(s)
    monkeypatch.setattr(trainer_mod, "SCHEDULE_ITEMS", items)
    win = trainer_mod._windows(p, s.n_devices)
    assert win[0][0] == 0 and win[-1][1] == s.horizon and all(a[1] == b[0] for a, b in zip(win, win[1:]))
    size = [sum(2 * s.n_devices + int(np.count_nonzero(p.offload[t] > 0)) for t in range(a, b)) for a, b in win]
    assert all(k <= items or b - a == 1 for k, (a, b) in zip(size, win))
    assert len(win) == (s.horizon if items == 1 else 1 if items == 10**9 else len(win))
    whole = schedule(s, p)
    monkeypatch.setattr(trainer_mod, "SCHEDULE_ITEMS", 10**9)
    assert np.array_equal(schedule(s, p).pos, whole.pos)


def test_from_fractions_without_copy_keeps_the_callers_arrays_and_the_same_plan():
    s = _scenario()
    rng = np.random.default_rng(5)
    keep = rng.random((s.horizon, s.n_devices)) * 0.5
    off = rng.random((s.horizon, s.n_edges)) * 0.2
    off[-1] = 0.0
    off[0, 0] = -1e-12  # round-off the plan cleans (in place when not copied)
    a = Plan.from_fractions(s, keep.copy(), off.copy(), check=False)
    mine = off.copy()
    b = Plan.from_fractions(s, keep.copy(), mine, check=False, copy=False)
    assert b.offload is mine and np.shares_memory(b.offload, mine)
    assert mine[0, 0] == 0.0  # cleaned in place
    for f in ("keep", "offload", "discard", "processed", "dropped"):
        assert np.array_equal(getattr(a, f), getattr(b, f)), f
    assert a.costs == b.costs
    c = Plan.from_fractions(s, keep, off, check=False)  # the default copies: the caller's arrays stay
    assert c.offload is not off and off[0, 0] == -1e-12


def test_no_movement_plan_leaves_its_zero_offloads_unwritten():
    """The no-movement plan's ``[T, E]`` zeros are never written (so never resident): cleaning skips zeros."""
    s = _scenario()
    p = no_movement_plan(s)
    assert p.offload.shape == (s.horizon, s.n_edges) and not p.offload.any()
    assert not np.signbit(p.offload).any()
    t, e = next((t, e) for t in range(s.horizon) for e in range(s.n_edges) if s.collected[t, s.src[e]] == 0)
    neg = np.zeros((s.horizon, s.n_edges))
    neg[t, e] = -0.0  # a source without data: its offloads are cleaned to +0.0, a -0.0 too (as before)
    q = Plan.from_fractions(s, np.ones((s.horizon, s.n_devices)), neg, check=False, copy=False)
    assert not np.signbit(q.offload).any()
