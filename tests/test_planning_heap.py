"""The shared binary min-heap of the planning kernels (:mod:`foglearn.planning.heap`)."""

from __future__ import annotations

import heapq

import numpy as np
import pytest
from numba import njit

from foglearn.planning import heap as H


@njit(cache=True)
def _replay(keys, is_push, capacity):
    """Run pushes (payload ``(q, -q, 7)`` for the ``q``-th key) and pops; return the pops."""
    h = H.new_heap(capacity, 3)
    size = 0
    out_key = np.empty(keys.size)
    out_item = np.empty((keys.size, 3), dtype=np.int64)
    n_out = 0
    q = 0
    for op in is_push:
        if op or size == 0:
            if size == h.key.size:
                h = H.grown(h, size, 1)
            size = H.push(h, size, keys[q], (q, -q, 7))
            q += 1
        else:
            out_key[n_out] = h.key[0]
            out_item[n_out] = h.item[0]
            n_out += 1
            size = H.pop(h, size)
    while size > 0:
        out_key[n_out] = h.key[0]
        out_item[n_out] = h.item[0]
        n_out += 1
        size = H.pop(h, size)
    return out_key[:n_out], out_item[:n_out], h.key.size


def _heapq_replay(keys, is_push):
    ref, out = [], []
    q = 0
    for op in is_push:
        if op or not ref:
            heapq.heappush(ref, (keys[q], q))
            q += 1
        else:
            out.append(heapq.heappop(ref))
    while ref:
        out.append(heapq.heappop(ref))
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("p_push", [0.5, 0.7])
def test_pops_match_heapq(seed, p_push):
    rng = np.random.default_rng(seed)
    is_push = rng.random(3000) < p_push
    keys = rng.random(is_push.size)  # distinct keys: one correct pop order
    got_key, got_item, _ = _replay(keys, is_push, 64)
    ref = _heapq_replay(keys, is_push)
    assert got_key.tolist() == [k for k, _ in ref]
    assert got_item[:, 0].tolist() == [q for _, q in ref]
    assert (got_item[:, 1] == -got_item[:, 0]).all() and (got_item[:, 2] == 7).all()


def test_growth_keeps_every_entry():
    rng = np.random.default_rng(5)
    keys = rng.integers(0, 50, 1000).astype(np.float64)  # many ties
    got_key, got_item, capacity = _replay(keys, np.ones(keys.size, dtype=np.bool_), 1)
    assert capacity == 1024  # doubled from 1, ten times
    assert got_key.tolist() == sorted(keys.tolist())
    assert sorted(got_item[:, 0].tolist()) == list(range(keys.size))
    assert (keys[got_item[:, 0]] == got_key).all()  # each payload stayed with its key


@njit(cache=True)
def _grow_by(capacity, size, m):
    h = H.new_heap(capacity, 2)
    n = 0
    for q in range(size):
        n = H.push(h, n, float(-q), (q, 2 * q))
    g = H.grown(h, n, m)
    return g.key.size, g.key[:n], g.item[:n]


def test_grown_doubles_or_fits_the_batch():
    assert _grow_by(8, 8, 1)[0] == 16
    assert _grow_by(8, 8, 30)[0] == 38
    capacity, key, item = _grow_by(8, 5, 1)
    assert capacity == 16
    assert key[0] == -4.0 and item[0].tolist() == [4, 8]  # entries copied in heap order
    assert sorted(key.tolist()) == [-4.0, -3.0, -2.0, -1.0, 0.0]


def test_new_heap_from_python():
    h = H.new_heap(0, 4)
    assert isinstance(h, H.Heap)
    assert h.key.shape == (1,) and h.item.shape == (1, 4) and h.item.dtype == np.int64
