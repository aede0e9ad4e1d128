"""Numba kernels of the square-root-error planner (:mod:`foglearn.planning.sqrt`).

The network is kept *implicit*: an arc ``(t, e)`` (link ``e`` at slot ``t``, from source
``(src_e, t)`` to sink ``(dst_e, t+1)``) exists when the link is usable, carries capacity, the
source collected data and the sink has an error term. Flows live in a dense ``x[T, E]`` and
``xo[T·n]`` (points kept = the "own" arc from source ``k`` to sink ``k``, cost 0, capacity
``D_k``). Node ``k = t·n + i`` is both a source (supply ``D_k``) and a sink (cost
``h_k(G) = c_k G + f_k/sqrt(G)``, capacity ``C_k``); see docs/model.md §2.

Dual variables: ``u_s ≥ 0`` per source (value of one more collected point), ``π_k`` per sink.
Complementary slackness (CS) on arcs: ``x_a > 0 ⇒ c_a + u_s ≤ π_k``, ``x_a < cap_a ⇒
c_a + u_s ≥ π_k``; on sinks ``G_k = g_k(π_k) = min(C_k, (f_k / (2 (c_k + π_k)))^(2/3))``
(the minimiser of ``h_k(G) + π_k G``, strictly positive for finite ``π_k``).

The arrays travel in three named tuples: :class:`Net` (the scenario, read-only), :class:`Flow`
(the primal-dual state the repair updates in place) and :class:`Tree` (the repair's work arrays).
Tree nodes are *codes* ``2·idx`` (source ``idx``) and ``2·idx + 1`` (sink ``idx``).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit

from foglearn.planning.heap import grown, new_heap, pop, push

# status codes of repair
OK = 0
ITER_LIMIT = 1
UNBOUNDED = 2
INTERRUPTED = 3
STALLED = 4     # (internal) the root's excess cannot shrink at floating-point resolution

#: price-raise steps between two looks at the stop flag (each step is O(tree) work)
POLL_STEPS = 256


class Net(NamedTuple):
    """The scenario as flat arrays (node ``k = t·n + i``) plus CSR in/out edge lists per device."""

    T: int
    n: int
    D: np.ndarray        # [T·n] points collected
    c: np.ndarray        # [T·n] processing cost per point
    f: np.ndarray        # [T·n] error weight
    cap: np.ndarray      # [T·n] processing capacity (inf = none; 0 where inactive)
    err: np.ndarray      # [T·n] bool: the sink has an error term (D > 0 and f > 0)
    src: np.ndarray      # [E] link tails
    dst: np.ndarray      # [E] link heads
    usable: np.ndarray   # [T, E] bool
    lcap: np.ndarray     # [T, E] link capacity
    lcost: np.ndarray    # [T, E] link cost per point
    in_ptr: np.ndarray   # [n+1] CSR of the links into each device ...
    in_edges: np.ndarray
    out_ptr: np.ndarray  # [n+1] ... and out of each device
    out_edges: np.ndarray


class Flow(NamedTuple):
    """Primal-dual state: flows ``xo[T·n]``, ``x[T, E]``; prices ``pi``, ``u``; source outflow ``d``."""

    xo: np.ndarray
    x: np.ndarray
    pi: np.ndarray
    u: np.ndarray
    d: np.ndarray


class Tree(NamedTuple):
    """One phase's tree, indexed by node code; ``order[:tail]`` lists its nodes root first."""

    mark: np.ndarray   # phase stamp of the nodes in the tree
    par: np.ndarray    # parent code
    pedge: np.ndarray  # edge of the arc to the parent, -1 = the own arc
    room: np.ndarray   # how far that arc can move before it reaches a bound
    S: np.ndarray      # subtree shrinkage at the trial raise
    dS: np.ndarray     # its derivative in the raise
    order: np.ndarray


# ----------------------------------------------------------------------------------- basics


@njit(cache=True, inline="always")
def _valid(net, t, e):
    """Arc ``(t, e)`` exists: usable link with capacity, data at its source, error term at its sink."""
    if t >= net.T - 1 or not net.usable[t, e] or net.lcap[t, e] <= 0.0:
        return False
    if net.D[t * net.n + net.src[e]] <= 0.0:
        return False
    return net.err[(t + 1) * net.n + net.dst[e]]


@njit(cache=True, inline="always")
def _g(net, k, pi):
    """Sink response ``g_k(π)``: the ``G`` minimising ``c G + f/sqrt(G) + π G`` on ``(0, C]``."""
    cp = net.c[k] + pi
    if cp <= 0.0:
        return net.cap[k]
    q = net.f[k] / (2.0 * cp)
    G = np.cbrt(q * q)
    return G if G < net.cap[k] else net.cap[k]


@njit(cache=True, inline="always")
def _dg(net, k, pi):
    """``-g_k'(π) = (2/3) g_k(π) / (c_k + π)`` where ``g_k < C_k`` (else 0): the shrink rate."""
    cp = net.c[k] + pi
    if cp <= 0.0:
        return 0.0
    q = net.f[k] / (2.0 * cp)
    G = np.cbrt(q * q)
    return 2.0 * G / (3.0 * cp) if G < net.cap[k] else 0.0


@njit(cache=True)
def decoupled(net):
    """Every sink solves its own 1-D problem with all sources free (``u = 0``).

    Options are taken cheapest first (own data at cost 0, then incoming arcs by ``c_ij``) while
    the marginal value ``v(G) = f/(2 G^{3/2}) − c`` exceeds the option's cost; the stopping
    point within an option is ``(f / (2 (c + cost)))^{2/3}``, capped by ``C``.
    Returns ``xo``, ``x`` and sink prices ``π`` satisfying CS with ``u = 0``.
    """
    T, n = net.T, net.n
    N = T * n
    xo = np.zeros(N)
    x = np.zeros((T, net.src.size))
    pi = np.zeros(N)
    maxdeg = 0
    for j in range(n):
        maxdeg = max(maxdeg, net.in_ptr[j + 1] - net.in_ptr[j])
    bc = np.empty(maxdeg)
    be = np.empty(maxdeg, np.int64)
    for k in range(N):
        if net.err[k]:
            _decouple_sink(net, k, xo, x, pi, bc, be)
    return xo, x, pi


@njit(cache=True)
def _decouple_sink(net, k, xo, x, pi, bc, be):
    """Sink ``k``'s options, cheapest first, while they are worth their cost (see :func:`decoupled`)."""
    n = net.n
    t, j = k // n, k % n
    ck, fk, Ck = net.c[k], net.f[k], net.cap[k]
    gv = (fk / (2.0 * ck)) ** (2.0 / 3.0) if ck > 0 else np.inf
    G = min(net.D[k], gv, Ck)
    xo[k] = G
    last = 0.0
    if G >= net.D[k] and G < Ck and t >= 1:
        thr = fk / (2.0 * G ** 1.5) - ck
        m = 0
        for q in range(net.in_ptr[j], net.in_ptr[j + 1]):
            e = net.in_edges[q]
            if net.lcost[t - 1, e] < thr and _valid(net, t - 1, e):
                bc[m] = net.lcost[t - 1, e]
                be[m] = e
                m += 1
        o = np.argsort(bc[:m])
        for q in range(m):
            e = be[o[q]]
            cost = bc[o[q]]
            if fk / (2.0 * G ** 1.5) - ck <= cost:
                break
            amt = min(net.lcap[t - 1, e], net.D[(t - 1) * n + net.src[e]])
            g2 = (fk / (2.0 * (ck + cost))) ** (2.0 / 3.0) if ck + cost > 0 else np.inf
            take = min(amt, g2 - G, Ck - G)
            if take <= 0.0:
                break
            x[t - 1, e] = take
            G += take
            last = cost
            if take < amt:
                break
    pi[k] = fk / (2.0 * G ** 1.5) - ck if G < Ck else last


@njit(cache=True)
def out_flow(T, n, D, xo, x, src):
    """Points each source sends (kept + offloaded): ``d_s``."""
    d = xo.copy()
    E = src.size
    for t in range(T):
        for e in range(E):
            if x[t, e] != 0.0:
                d[t * n + src[e]] += x[t, e]
    return d


@njit(cache=True)
def in_flow(T, n, xo, x, dst):
    """Points each sink processes: ``G_k``."""
    G = xo.copy()
    E = dst.size
    for t in range(T - 1):
        for e in range(E):
            if x[t, e] != 0.0:
                G[(t + 1) * n + dst[e]] += x[t, e]
    return G


# ----------------------------------------------------------------------------------- repair


@njit(cache=True)
def _push_arc(h, size, th, rc, tol, tgt, code, edge):
    """Queue the residual arc ``code → tgt`` (reduced cost ``rc ≥ -tol``) at raise ``th + rc - tol``."""
    if size + 1 > h.key.size:
        h = grown(h, size, 1)
    size = push(h, size, th + rc - tol, (np.int64(tgt), np.int64(code), np.int64(edge)))
    return h, size


@njit(cache=True)
def _scan_source(net, st, tr, stamp, idx, tolx, th, h, size):
    """Queue the decrease arcs of source ``idx`` (``x > 0``, reduced cost ``π_k − c_a − u_s``)."""
    us = st.u[idx]
    if net.err[idx] and st.xo[idx] > tolx and tr.mark[2 * idx + 1] != stamp:
        h, size = _push_arc(h, size, th, st.pi[idx] - us, 1e-12 * (1.0 + abs(st.pi[idx])), 2 * idx + 1, 2 * idx, -1)
    n = net.n
    t, i = idx // n, idx % n
    if t < net.T - 1:
        for q in range(net.out_ptr[i], net.out_ptr[i + 1]):
            e = net.out_edges[q]
            k = (t + 1) * n + net.dst[e]
            if st.x[t, e] > tolx and tr.mark[2 * k + 1] != stamp:
                h, size = _push_arc(h, size, th, st.pi[k] - net.lcost[t, e] - us, 1e-12 * (1.0 + abs(st.pi[k])),
                                   2 * k + 1, 2 * idx, e)
    return h, size


@njit(cache=True)
def _scan_sink(net, st, tr, stamp, idx, tolx, th, h, size):
    """Queue the increase arcs into sink ``idx`` (``x < cap``, reduced cost ``c_a + u_s − π_k``)."""
    pk = st.pi[idx]
    tol = 1e-12 * (1.0 + abs(pk))
    if tr.mark[2 * idx] != stamp and net.D[idx] - st.xo[idx] > tolx:
        h, size = _push_arc(h, size, th, st.u[idx] - pk, tol, 2 * idx, 2 * idx + 1, -1)
    n = net.n
    t, j = idx // n, idx % n
    if t >= 1:
        for q in range(net.in_ptr[j], net.in_ptr[j + 1]):
            e = net.in_edges[q]
            s = (t - 1) * n + net.src[e]
            if tr.mark[2 * s] != stamp and _valid(net, t - 1, e) \
                    and min(net.lcap[t - 1, e], net.D[s]) - st.x[t - 1, e] > tolx:
                h, size = _push_arc(h, size, th, net.lcost[t - 1, e] + st.u[s] - pk, tol, 2 * s, 2 * idx + 1, e)
    return h, size


@njit(cache=True, inline="always")
def _arc_room(net, st, tgt, e):
    """How far the arc that attaches ``tgt`` can move: its flow (sink, decrease) or its spare capacity."""
    n = net.n
    idx = tgt >> 1
    if tgt & 1 == 1:
        if e < 0:
            return st.xo[idx]
        return st.x[idx // n - 1, e]
    if e < 0:
        return net.D[idx] - st.xo[idx]
    return min(net.lcap[idx // n, e], net.D[idx]) - st.x[idx // n, e]


@njit(cache=True)
def _attach_tight(net, st, tr, stamp, th, tolx, h, size, tail):
    """Pop every queued arc that is tight at raise ``th`` into the tree; stop at a source with slack.

    Returns ``(size, tail, found)``, ``found`` the code of the slack source reached or -1.
    """
    while size > 0 and h.key[0] <= th:
        tg, pc, pe = h.item[0, 0], h.item[0, 1], h.item[0, 2]
        size = pop(h, size)
        if tr.mark[tg] == stamp:
            continue
        tr.mark[tg] = stamp
        tr.par[tg] = pc
        tr.pedge[tg] = pe
        tr.room[tg] = _arc_room(net, st, tg, pe)
        tr.order[tail] = tg
        tail += 1
        if tg & 1 == 0 and net.D[tg >> 1] - st.d[tg >> 1] > tolx:
            return size, tail, tg
    return size, tail, -1


@njit(cache=True)
def _at_bound(tr, tail, bound):
    """Whether a tree arc has no more room than ``bound`` (it reached its bound in the last raise)."""
    for q in range(1, tail):
        if tr.room[tr.order[q]] <= bound:
            return True
    return False


@njit(cache=True)
def _phi(net, st, tr, tail, th, excess):
    """Smallest slack after raising the tree's prices by ``th``, and its rate of decrease.

    The slack of a tree arc is ``room − S`` (``S`` = the shrinkage ``Σ g_k(π_k) − g_k(π_k + th)``
    of the sinks below it), the root's is ``excess − S_root``; each is convex and decreasing in
    ``th``. Returns ``(min slack, -d/dth of the minimising one)``.
    """
    order, S, dS = tr.order, tr.S, tr.dS
    for h in range(tail):
        S[order[h]] = 0.0
        dS[order[h]] = 0.0
    worst, rate = np.inf, 0.0
    for h in range(tail - 1, -1, -1):
        code = order[h]
        if code & 1 == 1:
            k = code >> 1
            S[code] += _g(net, k, st.pi[k]) - _g(net, k, st.pi[k] + th)
            dS[code] += _dg(net, k, st.pi[k] + th)
        if h > 0:
            sl = tr.room[code] - S[code]
            if sl < worst:
                worst, rate = sl, dS[code]
            S[tr.par[code]] += S[code]
            dS[tr.par[code]] += dS[code]
    sl = excess - S[order[0]]
    if sl < worst:
        return sl, dS[order[0]]
    return worst, rate


@njit(cache=True)
def _largest_raise(net, st, tr, tail, hi, excess, tolx):
    """Largest ``th ≤ hi`` keeping every slack ≥ 0, and whether ``hi`` itself is reached.

    Newton from the left on the binding slack (convex and decreasing: the tangent's root never
    passes it), inside a bracket that falls back to bisection; stopped when the binding slack is
    below ``tolx`` or the bracket is at machine precision. ``hi = inf`` doubles a trial raise
    until a slack turns negative. Returns ``(th, reached_hi, status)``.
    """
    if not np.isfinite(hi):
        hi = 1.0
        while _phi(net, st, tr, tail, hi, excess)[0] >= 0.0:
            hi *= 2.0
            if hi > 1e300:
                return 0.0, False, UNBOUNDED
    elif _phi(net, st, tr, tail, hi, excess)[0] >= 0.0:
        return hi, True, OK
    lo = 0.0
    flo, rate = _phi(net, st, tr, tail, 0.0, excess)
    for _ in range(200):
        if flo <= 0.5 * tolx or hi - lo <= 4e-16 * hi:
            break
        mid = lo + flo / rate if rate > 0.0 else hi
        if not (lo < mid < hi):
            mid = 0.5 * (lo + hi)
        fm, rm = _phi(net, st, tr, tail, mid, excess)
        if fm >= 0.0:
            lo, flo, rate = mid, fm, rm
        else:
            hi = mid
    return lo, False, OK


@njit(cache=True)
def _apply_raise(net, st, tr, tail, th, excess):
    """Raise every tree price by ``th`` and move each tree arc's flow by its subtree shrinkage.

    Returns the shrinkage that reached the root (its outflow drops by that much) and the smallest
    slack left (see :func:`_phi`).
    """
    worst = _phi(net, st, tr, tail, th, excess)[0]
    n = net.n
    for h in range(tail):
        code = tr.order[h]
        idx = code >> 1
        if code & 1 == 1:
            st.pi[idx] += th
        else:
            st.u[idx] += th
        amt = tr.S[code]
        if h == 0 or amt == 0.0:
            continue
        tr.room[code] -= amt
        e = tr.pedge[code]
        if code & 1 == 1:          # sink: its arc from the parent source carries less
            if e < 0:
                st.xo[idx] = max(st.xo[idx] - amt, 0.0)
            else:
                st.x[idx // n - 1, e] = max(st.x[idx // n - 1, e] - amt, 0.0)
        elif e < 0:                # source: its arc into the parent sink carries more
            st.xo[idx] = min(st.xo[idx] + amt, net.D[idx])
        else:
            st.x[idx // n, e] += amt
    return tr.S[tr.order[0]], worst


@njit(cache=True)
def _augment(net, st, tr, root, found):
    """Send as much as the path allows from the root to the slack source ``found`` along the tree."""
    n = net.n
    r, s = root >> 1, found >> 1
    amt = min(st.d[r] - net.D[r], net.D[s] - st.d[s])
    code = found
    while code != root:
        amt = min(amt, tr.room[code])
        code = tr.par[code]
    code = found
    while code != root:
        idx = code >> 1
        e = tr.pedge[code]
        sgn = -1.0 if code & 1 == 1 else 1.0   # sink: parent arc decreases; source: increases
        if e < 0:
            st.xo[idx] += sgn * amt
        elif code & 1 == 1:
            st.x[idx // n - 1, e] += sgn * amt
        else:
            st.x[idx // n, e] += sgn * amt
        code = tr.par[code]
    st.d[s] += amt
    st.d[r] -= amt


@njit(cache=True)
def _phase(net, st, tr, stamp, r, tolx, counters, max_steps, stop):
    """One phase for the over-subscribed source ``r``: grow the tight tree, raise, or augment.

    Ends after an augmentation, when a tree arc reaches its bound, or when ``r`` is repaired;
    returns :data:`STALLED` when round-off stops the raise with only the root's slack binding.
    ``counters = [steps, augmentations, largest tree]``. Returns a status code.
    """
    root = 2 * r
    tr.mark[root] = stamp
    tr.order[0] = root
    tail, newest, th_total = 1, 0, 0.0
    h = new_heap(1024, 3)
    size = 0
    while True:
        while newest < tail:       # queue the arcs of the nodes attached since the last raise
            code = tr.order[newest]
            newest += 1
            if code & 1 == 0:
                h, size = _scan_source(net, st, tr, stamp, code >> 1, tolx, th_total, h, size)
            else:
                h, size = _scan_sink(net, st, tr, stamp, code >> 1, tolx, th_total, h, size)
        size, tail, found = _attach_tight(net, st, tr, stamp, th_total, tolx, h, size, tail)
        counters[2] = max(counters[2], tail)
        if found >= 0:
            _augment(net, st, tr, root, found)
            counters[1] += 1
            return OK
        if newest < tail:
            continue               # new nodes: queue their arcs (some may be tight already)
        counters[0] += 1
        if counters[0] > max_steps:
            return ITER_LIMIT
        if counters[0] % POLL_STEPS == 0 and stop[0] != 0:
            return INTERRUPTED
        excess = st.d[r] - net.D[r]
        thb = max(h.key[0] - th_total, 0.0) if size > 0 else np.inf
        th, reached, status = _largest_raise(net, st, tr, tail, thb, excess, tolx)
        if status != OK:
            return status
        shrink, worst = _apply_raise(net, st, tr, tail, th, excess)
        st.d[r] -= shrink
        th_total += th
        if st.d[r] - net.D[r] <= tolx:
            return OK              # root repaired
        if not reached:            # a tree arc reached its bound: new phase (a new tree)
            return OK if _at_bound(tr, tail, max(tolx, worst * (1.0 + 1e-9))) else STALLED


@njit(cache=True, nogil=True)
def repair(net, st, tolx, max_steps, stop):
    """Primal-dual repair of over-subscribed sources (exact up to floating point).

    For each source ``r`` with excess ``d_r − D_r > 0`` a *phase* grows, Dijkstra-like, the tree
    ``R`` of nodes reachable from ``r`` by residual arcs of zero reduced cost (decrease ``x`` on an
    arc out of a source, increase ``x`` on an arc into a sink). When ``R`` reaches a source with
    slack, augment along the tree path (cost-neutral). Otherwise raise every price in ``R`` by
    ``θ``: its sinks shrink to ``g_k(π_k + θ)``, the shrinkage is routed back to ``r`` along the
    tree, and ``θ`` is the largest value at which no tree arc leaves its bounds and the excess
    stays ≥ 0 (:func:`_largest_raise`), but at most ``θ_b``, where the cheapest arc leaving ``R``
    (a heap keyed by the cumulative raise) becomes tight and ``R`` grows. A tree arc reaching its
    bound, or an augmentation, ends the phase. CS holds throughout and prices only rise.

    ``stop`` (``uint8[1]``) is polled every :data:`POLL_STEPS` steps (Ctrl-C, see
    :mod:`foglearn.planning.interrupt`). Returns ``(status, steps, augmentations, max |R|)``.
    """
    N = net.T * net.n
    tr = Tree(np.zeros(2 * N, np.int64), np.empty(2 * N, np.int64), np.empty(2 * N, np.int64),
              np.empty(2 * N), np.empty(2 * N), np.empty(2 * N), np.empty(2 * N, np.int64))
    counters = np.zeros(3, np.int64)
    stamp = 0
    for r in range(N):
        while st.d[r] - net.D[r] > tolx:
            stamp += 1
            status = _phase(net, st, tr, stamp, r, tolx, counters, max_steps, stop)
            if status == STALLED:
                break              # what is left (≤ round-off) is shaved by the caller
            if status != OK:
                return status, counters[0], counters[1], counters[2]
    return OK, counters[0], counters[1], counters[2]


# ----------------------------------------------------------------------------- certificate


@njit(cache=True)
def dual_bound(net, p):
    """Lagrangian lower bound ``L(p)`` for sink prices ``p`` (relaxing ``G_k = Σ_in x``).

    ``L(p) = Σ_k min_{0<G≤C_k} [h_k(G) + p_k G] + Σ_s min_{x ∈ X_s} Σ_{a out of s} (c_a − p_k) x_a``
    where ``X_s`` = {``0 ≤ x_a ≤ cap_a``, ``Σ x_a ≤ D_s``} (a fractional knapsack per source).
    Sinks without an error term have ``p = 0`` and no arcs (their cost ``c G ≥ 0``).
    """
    T, n = net.T, net.n
    N = T * n
    total = 0.0
    for k in range(N):
        if not net.err[k]:
            continue
        cp = net.c[k] + p[k]
        if cp > 0:
            G = min((net.f[k] / (2.0 * cp)) ** (2.0 / 3.0), net.cap[k])
            total += cp * G + net.f[k] / np.sqrt(G)
        elif np.isfinite(net.cap[k]):
            total += cp * net.cap[k] + net.f[k] / np.sqrt(net.cap[k])
        elif cp < 0:
            return -np.inf
    maxdeg = 0
    for i in range(n):
        maxdeg = max(maxdeg, net.out_ptr[i + 1] - net.out_ptr[i])
    vals = np.empty(maxdeg + 1)
    amts = np.empty(maxdeg + 1)
    for s in range(N):
        if net.D[s] > 0:
            total += _knapsack(net, p, s, vals, amts)
    return total


@njit(cache=True)
def _knapsack(net, p, s, vals, amts):
    """``min Σ (c_a − p_k) x_a`` over source ``s``'s arcs with ``Σ x ≤ D_s``: cheapest first."""
    n = net.n
    t, i = s // n, s % n
    m = 0
    if net.err[s] and p[s] > 0:
        vals[m] = -p[s]
        amts[m] = net.D[s]
        m += 1
    if t < net.T - 1:
        for q in range(net.out_ptr[i], net.out_ptr[i + 1]):
            e = net.out_edges[q]
            v = net.lcost[t, e] - p[(t + 1) * n + net.dst[e]]
            if v < 0 and _valid(net, t, e):
                vals[m] = v
                amts[m] = min(net.lcap[t, e], net.D[s])
                m += 1
    o = np.argsort(vals[:m])
    rem, total = net.D[s], 0.0
    for q in range(m):
        tk = min(rem, amts[o[q]])
        total += vals[o[q]] * tk
        rem -= tk
        if rem <= 0:
            break
    return total


@njit(cache=True)
def primal_objective(net, xo, x, G):
    """``Σ c_k G_k + Σ c_a x_a + Σ_err f_k / sqrt(G_k)`` (inf if an error sink has ``G ≤ 0``)."""
    N = net.T * net.n
    total = 0.0
    for k in range(N):
        total += net.c[k] * G[k]
        if net.err[k]:
            if G[k] <= 0:
                return np.inf
            total += net.f[k] / np.sqrt(G[k])
    for t in range(net.T):
        for e in range(net.src.size):
            if x[t, e] != 0.0:
                total += net.lcost[t, e] * x[t, e]
    return total
