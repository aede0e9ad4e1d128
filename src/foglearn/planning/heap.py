"""One binary min-heap for numba kernels (the searches of :mod:`foglearn.planning.flow_kernels`
and :mod:`foglearn.planning.sqrt_kernels`).

An entry is a ``float64`` key and ``width`` ``int64`` payload fields. The heap is a
:class:`Heap`, a named tuple of two arrays, plus a ``size`` the caller keeps in a local variable:

- ``key[0:size]`` (``float64[capacity]``) in heap order: ``key[(i - 1) // 2] <= key[i]``;
- ``item[0:size]`` (``int64[capacity, width]``): row ``i`` is the payload of ``key[i]``.

API (all ``@njit(inline="always")``: numba pastes them into the caller, so a push or pop costs
no call)::

    h = new_heap(capacity, width)               # empty heap (also callable from Python)
    if size + m > h.key.size:                   # before up to m pushes ...
        h = grown(h, size, m)                   # ... make room (the only reallocation)
    size = push(h, size, key, (a, b, c))        # one entry: ``width`` int64 values (cast
                                                # narrower ints with ``np.int64(...)``)
    d, a = h.key[0], h.item[0, 0]               # the minimum (when size > 0) ...
    size = pop(h, size)                         # ... then remove it

**Growth policy (the only one):** the caller checks the capacity before a batch of pushes and
rebinds ``h`` to :func:`grown`, which at least doubles it (copying the entries); :func:`push`
and :func:`pop` never reallocate. So the heap's arrays are replaced only in that rare branch: a
push that could reallocate would return the arrays, and numba would count references on every
push. ``capacity`` of :func:`new_heap` is only a starting size.

Speed: numba counts references on every array a function (or an inlined helper) is handed, in
code compiled with its runtime on; for helpers that take named tuples of arrays inside a hot
loop this costs more than the loop's work. A solver therefore keeps its loop in a function
compiled with ``_nrt=False`` (it may not allocate) that returns to an ordinary caller when the
heap needs to grow, and resumes after (see ``_run`` in :mod:`foglearn.planning.flow_kernels`).
Numba's cache does not notice edits of this module in its callers' caches: after changing it,
delete the ``__pycache__`` folders of the solver modules.

Ties: a pushed entry stops below a parent with an equal key, and :func:`pop` prefers the left
child on equal keys, so equal keys come out in an order that depends only on the sequence of
pushes and pops (the solvers' results are deterministic).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit

__all__ = ["Heap", "grown", "new_heap", "pop", "push"]


class Heap(NamedTuple):
    """A binary min-heap's storage: ``key[capacity]`` (float64), ``item[capacity, width]``
    (int64)."""

    key: np.ndarray
    item: np.ndarray


@njit(cache=True, inline="always")
def new_heap(capacity, width):
    """An empty heap with room for ``capacity`` entries of ``width`` payload ints."""
    capacity = max(capacity, 1)
    return Heap(np.empty(capacity), np.empty((capacity, width), dtype=np.int64))


@njit(cache=True, inline="always")
def grown(h, size, m):
    """A copy of ``h`` (its first ``size`` entries) with room for ``m`` more: capacity doubled,
    or ``size + m`` if that is more."""
    capacity = max(2 * h.key.size, size + m)
    key = np.empty(capacity)
    item = np.empty((capacity, h.item.shape[1]), dtype=np.int64)
    key[:size] = h.key[:size]
    item[:size] = h.item[:size]
    return Heap(key, item)


@njit(cache=True, inline="always")
def push(h, size, key, item):
    """Add ``(key, item)`` to a heap with room (see :func:`grown`); ``item`` is a tuple of
    ``width`` int64. Returns ``size + 1``."""
    keys = h.key
    items = h.item
    i = size
    while i > 0:
        p = (i - 1) >> 1
        if keys[p] <= key:
            break
        keys[i] = keys[p]
        for j in range(len(item)):
            items[i, j] = items[p, j]
        i = p
    keys[i] = key
    for j in range(len(item)):
        items[i, j] = item[j]
    return size + 1


@njit(cache=True, inline="always")
def pop(h, size):
    """Remove the minimum ``(h.key[0], h.item[0])`` of a non-empty heap; returns ``size - 1``."""
    size -= 1
    if size == 0:
        return 0
    keys = h.key
    items = h.item
    width = items.shape[1]
    last = keys[size]
    i = 0
    while True:
        c = 2 * i + 1
        if c >= size:
            break
        if c + 1 < size and keys[c + 1] < keys[c]:
            c += 1
        if last <= keys[c]:
            break
        keys[i] = keys[c]
        for j in range(width):
            items[i, j] = items[c, j]
        i = c
    keys[i] = last
    for j in range(width):
        items[i, j] = items[size, j]
    return size
