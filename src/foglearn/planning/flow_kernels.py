"""Numba kernels of the exact linear-error min-cost-flow solver (see :mod:`foglearn.planning.flow`).

Conventions: ``N = T·n`` source nodes ``s = t·n + i`` ("points collected by ``i`` at ``t``") and
``N`` sink nodes ``k = t·n + i`` ("process at ``i`` at ``t``"). Every option of a source is an
*arc* (the keep option is the arc ``s -> s`` with capacity ``D_s``, link ``-1``); arcs are stored
grouped by source (CSR ``ptr``) and, within a source, by increasing per-point cost (keep first
among ties, docs/model.md §2). Discarding costs ``f_s`` per point and is unlimited. All data are
float64 points and costs (no integer scaling). The successive-shortest-paths kernel :func:`ssp`
takes its arrays grouped in the named tuples below.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit

from foglearn.planning.heap import grown, new_heap, pop, push

# -------------------------------------------------------------------------- kernel arguments


class Nodes(NamedTuple):
    """Per node ``s = t·n + i``: supply ``D_s``, discard cost ``f_s``, sink capacity ``C_s``."""

    supply: np.ndarray
    f: np.ndarray
    cap: np.ndarray


class Arcs(NamedTuple):
    """Per arc (:func:`build_arcs`): source, sink, cost per point, capacity."""

    src: np.ndarray
    sink: np.ndarray
    cost: np.ndarray
    cap: np.ndarray


class Coupled(NamedTuple):
    """CSR lists of the coupled problem (:func:`coupled_structure`)."""

    sh_ptr: np.ndarray
    sh_arc: np.ndarray
    pv_ptr: np.ndarray
    pv_arc: np.ndarray
    in_ptr: np.ndarray
    in_arc: np.ndarray
    in_src: np.ndarray
    in_cost: np.ndarray


class Problem(NamedTuple):
    """Everything :func:`ssp` reads and never writes."""

    nodes: Nodes
    arcs: Arcs
    coupled: Coupled


class Flow(NamedTuple):
    """The primal-dual state :func:`ssp` updates in place.

    Arc flows ``x``, source values ``lam`` (``λ_s``), sink prices ``pi`` (``π_k ≥ 0``), sink
    loads ``load`` and ``pp[s]``, the first private arc of ``s`` that may have room.
    """

    x: np.ndarray
    lam: np.ndarray
    pi: np.ndarray
    load: np.ndarray
    pp: np.ndarray


class Search(NamedTuple):
    """Work arrays of the searches; search nodes are sources ``0..N-1`` and sinks ``N + k``.

    Per search node: ``dist``; ``done`` (number of the search that settled it); ``pred`` (the arc
    to its tree parent, ``-1`` at the root); ``stamp`` (settle stamp: a candidate made from an
    older settling of its parent is stale); ``spos`` (its entry in the settled list); ``mark``
    (the subtree being reset); ``tkey`` (key of its live terminal entry, NaN if none);
    ``first_child`` (head of its child list, an index into the settled list); ``queue`` (the
    subtree being reset). Per source: ``scanpos`` (next shared arc to scan) and ``ckey`` (key of
    its live scan entry). ``counters``: counters and the pending work, indexed by ``_IT`` ...
    ``_PEND_SINK``; ``dstar[0]``: the distance of the search's last terminal.

    Indices (``done``, ``pred``, ``spos``, ``first_child``, ``queue``, ``scanpos``) are int32
    (:class:`~foglearn.planning.flow.FlowProblem` refuses networks whose nodes or arcs would not
    fit); ``stamp`` and ``mark`` count over all searches and stay int64.
    """

    dist: np.ndarray
    done: np.ndarray
    pred: np.ndarray
    stamp: np.ndarray
    spos: np.ndarray
    mark: np.ndarray
    tkey: np.ndarray
    first_child: np.ndarray
    queue: np.ndarray
    scanpos: np.ndarray
    ckey: np.ndarray
    counters: np.ndarray
    dstar: np.ndarray


class Tree(NamedTuple):
    """A search's settled list: ``settled[q]``, the ``q``-th settled node, and ``sib[q]``, the next
    entry of its parent's child list. Grows as :mod:`~foglearn.planning.heap` does (doubling)."""

    settled: np.ndarray
    sib: np.ndarray


# --------------------------------------------------------------------------------------- build


@njit(cache=True, inline="always")
def _receivers(t, c, cap, active, recv):
    """``recv[k]``: the processing cost ``c_k(t+1)`` of receiving at ``k`` on a link used in slot
    ``t`` when ``k`` can receive (active at ``t`` and ``t+1``, ``C_k(t+1) > 0``), else ``inf`` (then
    ``c_ij(t) + recv[k]`` is ``inf`` and never ``≤ f``); one lookup per link instead of four."""
    for k in range(recv.size):
        recv[k] = c[t + 1, k] if cap[t + 1, k] > 0 and active[t, k] and active[t + 1, k] else np.inf


@njit(cache=True)
def build_arcs(src, dst, link_cost, link_cap, link_up, active, c, f, cap, D):
    """Arcs surviving the exact cost pruning (an option dearer than ``f_s`` is never needed).

    A link is usable at ``t < T-1`` when it is up and ``i``, ``j`` are active at ``t`` and ``j``
    at ``t+1`` (as :meth:`Scenario.usable_links`, evaluated here without a ``[T, E]`` temporary).

    Kept: keep ``(i,t)`` when ``c_i(t) ≤ f_i(t)``, ``C_i(t) > 0``; offload on a usable link with
    ``C_ij(t) > 0``, ``C_j(t+1) > 0`` and ``c_ij(t) + c_j(t+1) ≤ f_i(t)``; only for ``D_i(t) > 0``.
    Returns ``(ptr, a_src, a_sink, a_cost, a_cap, a_edge)`` sorted by (source, cost): per source
    the keep arc, then its links in edge order, stably sorted by cost.

    Two passes (count, fill) over the sources in order, each visiting the source's links through
    a CSR of the edge list by source, so that the arcs are written sequentially; per-source
    sorting is an insertion sort for short lists (the same stable order as a merge sort).
    """
    T, n = D.shape
    E = src.size
    N = T * n
    eptr = np.zeros(n + 1, dtype=np.int64)
    for e in range(E):
        eptr[src[e] + 1] += 1
    for i in range(n):
        eptr[i + 1] += eptr[i]
    by_src = np.empty(E, dtype=np.int64)
    epos = eptr[:n].copy()
    for e in range(E):
        by_src[epos[src[e]]] = e
        epos[src[e]] += 1
    ptr = np.zeros(N + 1, dtype=np.int64)
    recv = np.empty(n)
    for t in range(T):
        if t < T - 1:
            _receivers(t, c, cap, active, recv)
        for i in range(n):
            if not D[t, i] > 0:
                continue
            m = 1 if cap[t, i] > 0 and c[t, i] <= f[t, i] else 0
            if t < T - 1 and active[t, i]:
                for q in range(eptr[i], eptr[i + 1]):
                    e = by_src[q]
                    if link_up[t, e] and link_cap[t, e] > 0 and link_cost[t, e] + recv[dst[e]] <= f[t, i]:
                        m += 1
            ptr[t * n + i + 1] = m
    for s in range(N):
        ptr[s + 1] += ptr[s]
    M = ptr[N]
    a_src = np.empty(M, dtype=np.int32)
    a_sink = np.empty(M, dtype=np.int32)
    a_cost = np.empty(M, dtype=np.float64)
    a_cap = np.empty(M, dtype=np.float64)
    a_edge = np.empty(M, dtype=np.int32)
    for t in range(T):
        if t < T - 1:
            _receivers(t, c, cap, active, recv)
        for i in range(n):
            if not D[t, i] > 0:
                continue
            s = t * n + i
            p = ptr[s]
            if cap[t, i] > 0 and c[t, i] <= f[t, i]:
                a_src[p] = s
                a_sink[p] = s
                a_cost[p] = c[t, i]
                a_cap[p] = D[t, i]
                a_edge[p] = -1
                p += 1
            if t < T - 1 and active[t, i]:
                for q in range(eptr[i], eptr[i + 1]):
                    e = by_src[q]
                    k = dst[e]
                    # the same test as in the count (written out: a helper function was 3x slower)
                    if link_up[t, e] and link_cap[t, e] > 0 and link_cost[t, e] + recv[k] <= f[t, i]:
                        cost = link_cost[t, e] + c[t + 1, k]
                        a_src[p] = s
                        a_sink[p] = (t + 1) * n + k
                        a_cost[p] = cost
                        a_cap[p] = min(link_cap[t, e], D[t, i])
                        a_edge[p] = e
                        p += 1
            _sort_by_cost(ptr[s], p, a_sink, a_cost, a_cap, a_edge)
    return ptr, a_src, a_sink, a_cost, a_cap, a_edge


#: per-source arc lists up to this long are sorted by insertion, longer ones by a merge sort
_INSERTION_MAX = 32


@njit(cache=True, inline="always")
def _sort_by_cost(a0, a1, a_sink, a_cost, a_cap, a_edge):
    """Stably sort the arcs ``a0 .. a1-1`` by cost, in place (the keep arc, written first, wins ties)."""
    m = a1 - a0
    if m < 2:
        return
    sorted_ = True
    for q in range(a0 + 1, a1):
        if a_cost[q] < a_cost[q - 1]:
            sorted_ = False
            break
    if sorted_:
        return
    if m <= _INSERTION_MAX:
        for q in range(a0 + 1, a1):
            ck, cc, cu, ce = a_sink[q], a_cost[q], a_cap[q], a_edge[q]
            r = q
            while r > a0 and a_cost[r - 1] > cc:
                a_sink[r] = a_sink[r - 1]
                a_cost[r] = a_cost[r - 1]
                a_cap[r] = a_cap[r - 1]
                a_edge[r] = a_edge[r - 1]
                r -= 1
            a_sink[r], a_cost[r], a_cap[r], a_edge[r] = ck, cc, cu, ce
        return
    o = np.argsort(a_cost[a0:a1], kind="mergesort")
    tk = a_sink[a0:a1].copy()
    tc = a_cost[a0:a1].copy()
    tu = a_cap[a0:a1].copy()
    te = a_edge[a0:a1].copy()
    for q in range(m):
        a_sink[a0 + q] = tk[o[q]]
        a_cost[a0 + q] = tc[o[q]]
        a_cap[a0 + q] = tu[o[q]]
        a_edge[a0 + q] = te[o[q]]


# ----------------------------------------------------------------------------------- reduction


@njit(cache=True)
def reduce_unsaturable(ptr, a_sink, a_cost, a_cap, f, D, cap):
    """Exact reduction by unsaturable sinks, iterated to a fixed point.

    A sink whose *potential inflow* (Σ over its live arcs of ``min(u_a, D_src)``) is ``≤ C_k``
    can never be overloaded: its capacity constraint is redundant, so its dual price is 0 in
    some optimum and every arc into it is a *private* option of the arc's source. With discard
    (cost ``f_s``, unlimited) the private options of ``s`` cover ``D_s`` from the cost ``θ_s``
    on; an option dearer than ``θ_s`` carries no flow in any optimum (moving a point from it to
    an unfilled private option of cost ``≤ θ_s`` is strictly cheaper and feasible), so it is
    dropped. Dropping arcs lowers potential inflows, which can make more sinks unsaturable.

    Returns ``(alive_end, unsat, theta, rounds)``: the live arcs of ``s`` are
    ``ptr[s] .. alive_end[s]`` (a cost prefix).
    """
    N = D.size
    inflow = np.zeros(N)
    for s in range(N):
        for a in range(ptr[s], ptr[s + 1]):
            inflow[a_sink[a]] += a_cap[a]
    unsat = np.empty(N, dtype=np.bool_)
    for k in range(N):
        # conservative against round-off in the sum: demand a margin
        unsat[k] = inflow[k] * (1.0 + 1e-12) + 1e-12 <= cap[k]
    alive_end = ptr[1:].copy()
    theta = f.copy()
    rounds = 0
    changed = True
    while changed:
        changed = False
        rounds += 1
        for s in range(N):
            a0, a1 = ptr[s], alive_end[s]
            if a1 == a0:
                continue
            need = D[s]
            cum = 0.0
            th = f[s]
            for a in range(a0, a1):
                if unsat[a_sink[a]]:
                    cum += a_cap[a]
                    if cum >= need:
                        th = a_cost[a]
                        break
            if th < theta[s]:
                theta[s] = th
            e = a1
            while e > a0 and a_cost[e - 1] > th:
                e -= 1
                inflow[a_sink[e]] -= a_cap[e]
            alive_end[s] = e
        for k in range(N):
            if not unsat[k] and inflow[k] * (1.0 + 1e-12) + 1e-12 <= cap[k]:
                unsat[k] = True
                changed = True
    return alive_end, unsat, theta, rounds


@njit(cache=True)
def coupled_structure(ptr, alive_end, a_sink, a_cost, unsat, N):
    """CSR lists of the coupled problem.

    ``sh_ptr/sh_arc``: per source, its live arcs into saturable sinks (cost order);
    ``pv_ptr/pv_arc``: per *coupled* source (one with a shared arc), its live private arcs;
    ``in_ptr/in_arc/in_src/in_cost``: per saturable sink, its live incoming arcs.
    """
    sh_cnt = np.zeros(N + 1, dtype=np.int64)
    pv_cnt = np.zeros(N + 1, dtype=np.int64)
    in_cnt = np.zeros(N + 1, dtype=np.int64)
    for s in range(N):
        ns = 0
        for a in range(ptr[s], alive_end[s]):
            if not unsat[a_sink[a]]:
                ns += 1
                in_cnt[a_sink[a] + 1] += 1
        sh_cnt[s + 1] = ns
        if ns > 0:
            pv_cnt[s + 1] = alive_end[s] - ptr[s] - ns
    for s in range(N):
        sh_cnt[s + 1] += sh_cnt[s]
        pv_cnt[s + 1] += pv_cnt[s]
        in_cnt[s + 1] += in_cnt[s]
    sh_arc = np.empty(sh_cnt[N], dtype=np.int64)
    pv_arc = np.empty(pv_cnt[N], dtype=np.int64)
    in_arc = np.empty(in_cnt[N], dtype=np.int64)
    in_src = np.empty(in_cnt[N], dtype=np.int32)
    in_cost = np.empty(in_cnt[N], dtype=np.float64)
    ipos = in_cnt[:N].copy()
    for s in range(N):
        ps = sh_cnt[s]
        pp = pv_cnt[s]
        coupled = sh_cnt[s + 1] > ps
        for a in range(ptr[s], alive_end[s]):
            k = a_sink[a]
            if not unsat[k]:
                sh_arc[ps] = a
                ps += 1
                q = ipos[k]
                in_arc[q] = a
                in_src[q] = s
                in_cost[q] = a_cost[a]
                ipos[k] = q + 1
            elif coupled:
                pv_arc[pp] = a
                pp += 1
    return Coupled(sh_cnt, sh_arc, pv_cnt, pv_arc, in_cnt, in_arc, in_src, in_cost)


@njit(cache=True)
def greedy_fill(ptr, alive_end, a_cost, a_cap, f, D):
    """Fill every source's live options cheapest first, ignoring sink capacities (Thm 3).

    Returns the arc flows ``x`` and the source values ``λ_s`` (the marginal option cost, ``f_s``
    when the source discards).
    """
    N = D.size
    x = np.zeros(a_cost.size)
    lam = f.copy()
    for s in range(N):
        rem = D[s]
        if rem <= 0:
            continue
        for a in range(ptr[s], alive_end[s]):
            amt = min(rem, a_cap[a])
            x[a] = amt
            rem -= amt
            if rem <= 0.0:
                lam[s] = a_cost[a]
                break
    return x, lam


# ------------------------------------------------------------------- successive shortest paths

#: ``ssp`` status: optimal flow found / no residual path (an internal error: discarding is always
#: open) / stopped through the ``stop`` flag (Ctrl-C)
OK, NO_PATH, INTERRUPTED = 0, 1, 2
#: the search polls its ``stop`` flag every this many heap pops (``ssp`` also before each search)
_POLL_POPS = 4096
#: ``_run``'s requests to its caller: more heap room / a longer settled list
_NEED_HEAP, _NEED_TREE = 3, 4
#: ``Search.counters`` slots: searches started, settle stamps, subtree marks, settled-list length,
#: augmentations, arc scans, subtree resets; the sink searched now (-1: none) and the next one to
#: look at; the pending work of an augmentation (next and end index in ``Search.queue`` of the
#: nodes to re-relax, the full sink to expand or -1)
_IT, _GV, _BRK, _NS, _AUG, _SCAN, _RESET, _K0, _NEXT, _PEND_Q, _PEND_NB, _PEND_SINK = range(12)
#: ``_terminal``'s and ``_step``'s answer when the overloaded sink has no excess left;
#: ``_step``'s when an augmentation or a full sink left work for ``_pending``
_DRAINED, _PENDING = -2, 1


@njit(cache=True, inline="always")
def _initial_flow(P, x, lam, tol):
    """The state after the greedy fill: sink loads, ``π = 0``, first private arcs with room."""
    cp = P.coupled
    N = P.nodes.supply.size
    load = np.zeros(N)
    for k in range(N):
        for q in range(cp.in_ptr[k], cp.in_ptr[k + 1]):
            load[k] += x[cp.in_arc[q]]
    pp = cp.pv_ptr[:N].copy()
    for s in range(N):
        while pp[s] < cp.pv_ptr[s + 1]:
            a = cp.pv_arc[pp[s]]
            if x[a] < P.arcs.cap[a] - tol:
                break
            pp[s] += 1
    return Flow(x, lam, np.zeros(N), load, pp)


@njit(cache=True, inline="always")
def _search_arrays(N, settle_cap):
    """Fresh :class:`Search` arrays for ``N`` nodes and a settled list of ``settle_cap``."""
    N2 = 2 * N
    i64 = np.int64
    i32 = np.int32  # node, arc and settled-list indices (FlowProblem checks that 2N and the arcs fit)
    S = Search(np.empty(N2), np.zeros(N2, dtype=i32), np.zeros(N2, dtype=i32), np.zeros(N2, dtype=i64),
               np.zeros(N2, dtype=i32), np.zeros(N2, dtype=i64), np.full(N2, np.nan),
               np.full(N2, -1, dtype=i32), np.empty(N2, dtype=i32), np.zeros(N, dtype=i32),
               np.full(N, np.nan), np.zeros(_PEND_SINK + 1, dtype=i64), np.zeros(1))
    settle_cap = max(settle_cap, 1)
    return S, Tree(np.empty(settle_cap, dtype=np.int64), np.empty(settle_cap, dtype=np.int64))


@njit(cache=True, inline="always")
def _grown_tree(tree):
    """``tree`` with twice the room (the settled list grows as the heap does)."""
    ns = tree.settled.size
    settled = np.empty(2 * ns, dtype=np.int64)
    sib = np.empty(2 * ns, dtype=np.int64)
    settled[:ns] = tree.settled
    sib[:ns] = tree.sib
    return Tree(settled, sib)


@njit(cache=True, inline="always")
def _add_settled(tree, S, v, N, arcs):
    """Append ``v`` to the settled list (which has room) and to its parent's child list."""
    ns = S.counters[_NS]
    tree.settled[ns] = v
    S.spos[v] = ns
    S.first_child[v] = -1
    a = S.pred[v]
    if a >= 0:
        par = N + arcs.sink[a] if v < N else arcs.src[a]
        tree.sib[ns] = S.first_child[par]
        S.first_child[par] = ns
    S.counters[_NS] = ns + 1


@njit(cache=True, inline="always")
def _candidate_key(P, fl, S, v, a, stamp, it):
    """The key now of the candidate ``v`` reached by arc ``a`` from a parent settled with
    ``stamp``; ``-1`` when that parent has been reset since (the candidate is stale)."""
    N = P.nodes.supply.size
    arcs = P.arcs
    if v < N:
        par = N + arcs.sink[a]
        if S.done[par] != it or S.stamp[par] != stamp:
            return -1.0
        rc = fl.lam[v] - arcs.cost[a] - fl.pi[arcs.sink[a]]
    else:
        par = arcs.src[a]
        if S.done[par] != it or S.stamp[par] != stamp:
            return -1.0
        rc = arcs.cost[a] + fl.pi[v - N] - fl.lam[par]
    if rc < 0.0:
        rc = 0.0
    return S.dist[par] + rc


@njit(cache=True, inline="always")
def _push_private(P, fl, S, h, size, s):
    """Push the terminal of source ``s``: its cheapest private option with room, else discard."""
    N = P.nodes.supply.size
    cp = P.coupled
    q = fl.pp[s]
    m = P.arcs.cost[cp.pv_arc[q]] if q < cp.pv_ptr[s + 1] else P.nodes.f[s]
    key = S.dist[s] + max(m - fl.lam[s], 0.0)
    S.tkey[s] = key
    return push(h, size, key, (4 * N + s, 0, 0))


@njit(cache=True, inline="always")
def _settle(P, fl, S, tree, h, size, v, d, a, k0, tol):
    """Settle ``v`` at distance ``d`` (reached by arc ``a``) and push what it opens.

    A sink with slack becomes a terminal; a source pushes its private terminal and, if it has
    shared arcs, a lazy scan of them (at most two pushes; the settled list has room). Returns
    ``(size, k)``: ``k``, an overloaded sink to expand now, or ``-1``.
    """
    N = P.nodes.supply.size
    S.dist[v] = d
    S.pred[v] = a
    S.done[v] = S.counters[_IT]
    S.counters[_GV] += 1
    S.stamp[v] = S.counters[_GV]
    _add_settled(tree, S, v, N, P.arcs)
    if v >= N:
        k = v - N
        if k != k0 and fl.load[k] < P.nodes.cap[k] - tol:
            S.tkey[v] = d
            size = push(h, size, d, (4 * N + v, 0, 0))
            return size, -1
        return size, k
    size = _push_private(P, fl, S, h, size, v)
    sh_ptr = P.coupled.sh_ptr
    if sh_ptr[v + 1] > sh_ptr[v]:
        S.scanpos[v] = sh_ptr[v]
        S.ckey[v] = d
        size = push(h, size, d, (2 * N + v, 0, 0))
    return size, -1


@njit(cache=True, inline="always")
def _scan_shared(P, fl, S, h, size, s, d, tol):
    """Relax the shared arcs of settled source ``s`` in cost order while their lower bound
    ``dist_s + cost − λ_s`` is at most the heap's minimum; re-push the scan for the rest."""
    N = P.nodes.supply.size
    arcs = P.arcs
    it = S.counters[_IT]
    ds = S.dist[s]
    ls = fl.lam[s]
    lim = d
    if size > 0 and h.key[0] > lim:
        lim = h.key[0]
    q0 = S.scanpos[s]
    q = q0
    q1 = P.coupled.sh_ptr[s + 1]
    S.ckey[s] = np.nan
    stamp = S.stamp[s]
    while q < q1:
        a = P.coupled.sh_arc[q]
        lb = ds + arcs.cost[a] - ls
        if lb > lim:
            S.ckey[s] = lb
            size = push(h, size, lb, (2 * N + s, 0, 0))
            break
        q += 1
        if fl.x[a] >= arcs.cap[a] - tol:
            continue
        k = arcs.sink[a]
        if S.done[N + k] == it:
            continue
        rc = arcs.cost[a] + fl.pi[k] - ls
        if rc < 0.0:
            rc = 0.0
        size = push(h, size, ds + rc, (N + k, a, stamp))
    S.scanpos[s] = q
    S.counters[_SCAN] += q - q0
    return size


@njit(cache=True, inline="always")
def _expand_sink(P, fl, S, h, size, k, d, tol):
    """Push every source with flow into the (full) sink ``k`` settled at ``d`` (reverse arcs)."""
    cp = P.coupled
    it = S.counters[_IT]
    pk = fl.pi[k]
    stamp = S.stamp[P.nodes.supply.size + k]
    for q in range(cp.in_ptr[k], cp.in_ptr[k + 1]):
        a = cp.in_arc[q]
        if fl.x[a] <= tol or S.done[cp.in_src[q]] == it:
            continue
        s = np.int64(cp.in_src[q])
        rc = fl.lam[s] - cp.in_cost[q] - pk
        if rc < 0.0:
            rc = 0.0
        size = push(h, size, d + rc, (s, a, stamp))
    S.counters[_SCAN] += cp.in_ptr[k + 1] - cp.in_ptr[k]
    return size


@njit(cache=True, inline="always")
def _path_room(P, fl, S, v, k0, delta):
    """``delta`` capped by the residual capacity of every arc on the tree path ``k0 → v``."""
    N = P.nodes.supply.size
    arcs = P.arcs
    u = v
    while u != N + k0:
        a = S.pred[u]
        if u < N:
            delta = min(delta, fl.x[a])
            u = N + arcs.sink[a]
        else:
            delta = min(delta, arcs.cap[a] - fl.x[a])
            u = arcs.src[a]
    return delta


@njit(cache=True, inline="always")
def _shift_path(P, fl, S, v, k0, delta, tol):
    """Move ``delta`` along the tree path ``k0 → v``; returns the topmost node whose arc to its
    parent is now exhausted (``-1`` if none)."""
    N = P.nodes.supply.size
    arcs = P.arcs
    x = fl.x
    b = -1
    u = v
    while u != N + k0:
        a = S.pred[u]
        if u < N:
            x[a] -= delta
            if x[a] <= tol:
                x[a] = 0.0
                b = u
            u = N + arcs.sink[a]
        else:
            x[a] += delta
            if x[a] >= arcs.cap[a] - tol:
                x[a] = arcs.cap[a]
                b = u
            u = arcs.src[a]
    return b


@njit(cache=True, inline="always")
def _augment(P, fl, S, v, k0, tol):
    """Send the largest possible amount of ``k0``'s excess to terminal ``v`` along the tree.

    Returns the topmost node whose tree arc was exhausted (``-1`` if none).
    """
    N = P.nodes.supply.size
    arcs = P.arcs
    cp = P.coupled
    x = fl.x
    excess = fl.load[k0] - P.nodes.cap[k0]
    ta = -1
    if v < N:
        q = fl.pp[v]
        if q < cp.pv_ptr[v + 1]:
            ta = cp.pv_arc[q]
            delta = min(excess, arcs.cap[ta] - x[ta])
        else:
            delta = excess  # discard
    else:
        delta = min(excess, P.nodes.cap[v - N] - fl.load[v - N])
    delta = _path_room(P, fl, S, v, k0, delta)
    b = _shift_path(P, fl, S, v, k0, delta, tol)
    fl.load[k0] -= delta
    S.counters[_AUG] += 1
    if v >= N:
        fl.load[v - N] += delta
    elif ta >= 0:
        x[ta] += delta
        if x[ta] >= arcs.cap[ta] - tol:
            x[ta] = arcs.cap[ta]
            fl.pp[v] += 1
    return b


@njit(cache=True, inline="always")
def _collect_subtree(S, tree, b):
    """Mark the settled subtree below ``b`` (child lists) into ``S.queue``; returns its size."""
    it = S.counters[_IT]
    S.counters[_BRK] += 1
    brk = S.counters[_BRK]
    S.mark[b] = brk
    S.queue[0] = b
    nb = 1
    i = 0
    while i < nb:
        q = S.first_child[S.queue[i]]
        i += 1
        while q >= 0:
            c = tree.settled[q]
            if S.spos[c] == q and S.done[c] == it:
                S.mark[c] = brk
                S.queue[nb] = c
                nb += 1
            q = tree.sib[q]
    return nb


@njit(cache=True, inline="always")
def _end_phase(fl, S, N, nb, d):
    """End the phase for the collected subtree and reset it.

    Textbook SSP would raise every settled node's potential to the terminal distance ``d``; for
    nodes outside the subtree the raises telescope into the search's final update.
    """
    for q in range(nb):
        w = S.queue[q]
        dw = S.dist[w]
        if dw < d:
            if w >= N:
                fl.pi[w - N] += d - dw
            else:
                fl.lam[w] += d - dw
        S.done[w] = 0
        S.tkey[w] = np.nan
        if w < N:
            S.ckey[w] = np.nan


@njit(cache=True, inline="always")
def _rerelax(P, fl, S, h, size, w, k0, tol):
    """Push every candidate entry of the reset node ``w`` from its settled neighbours."""
    N = P.nodes.supply.size
    arcs = P.arcs
    cp = P.coupled
    it = S.counters[_IT]
    if w < N:
        ls = fl.lam[w]
        for r in range(cp.sh_ptr[w], cp.sh_ptr[w + 1]):
            a = cp.sh_arc[r]
            if arcs.cost[a] > ls + 1e-9:
                break  # flow only sits on arcs with c + π ≤ λ_s (dual feasibility)
            if fl.x[a] <= tol:
                continue
            k = arcs.sink[a]
            if S.done[N + k] != it or (k != k0 and fl.load[k] < P.nodes.cap[k] - tol):
                continue  # unsettled, or a sink with slack (a terminal, never expanded)
            rc = ls - arcs.cost[a] - fl.pi[k]
            if rc < 0.0:
                rc = 0.0
            size = push(h, size, S.dist[N + k] + rc, (w, a, S.stamp[N + k]))
    else:
        pk = fl.pi[w - N]
        for r in range(cp.in_ptr[w - N], cp.in_ptr[w - N + 1]):
            a = cp.in_arc[r]
            s = cp.in_src[r]
            if fl.x[a] >= arcs.cap[a] - tol or S.done[s] != it:
                continue
            rc = cp.in_cost[r] + pk - fl.lam[s]
            if rc < 0.0:
                rc = 0.0
            size = push(h, size, S.dist[s] + rc, (w, a, S.stamp[s]))
    return size


@njit(cache=True, inline="always")
def _terminal(P, fl, S, tree, h, size, v, d, k0, tol):
    """Augment from ``k0`` to the terminal ``v`` met at distance ``d`` (at most one push).

    If every path arc keeps room the distances stay exact: a filled private option gives way to
    the source's next one and a filled sink becomes an ordinary node. Otherwise the subtree below
    the topmost exhausted arc ends its phase and is reset (``S.queue[:nb]``); it is re-relaxed
    next (:func:`_pending`). Returns ``(size, nb, k)``: ``k`` a full sink to expand,
    ``-1``, or ``_DRAINED`` when ``k0`` has no excess left.
    """
    N = P.nodes.supply.size
    cap = P.nodes.cap
    S.tkey[v] = np.nan
    b = _augment(P, fl, S, v, k0, tol)
    if fl.load[k0] <= cap[k0] + tol:
        return size, 0, _DRAINED
    expand = -1
    if v < N:
        size = _push_private(P, fl, S, h, size, v)
    elif fl.load[v - N] >= cap[v - N] - tol:
        expand = v - N
    else:
        S.tkey[v] = d
        size = push(h, size, d, (4 * N + v, 0, 0))
    nb = 0
    if b >= 0:
        S.counters[_RESET] += 1
        nb = _collect_subtree(S, tree, b)
        _end_phase(fl, S, N, nb, d)
        if expand >= 0 and S.mark[N + expand] == S.counters[_BRK]:
            expand = -1
    return size, nb, expand


@njit(cache=True, inline="always")
def _raise_settled(fl, S, tree, N, dstar):
    """End of a search: settled nodes closer than the last terminal (``D*``) raise their
    potentials by ``D* − d_v``."""
    it = S.counters[_IT]
    for q in range(S.counters[_NS]):
        v = tree.settled[q]
        if S.spos[v] != q or S.done[v] != it:
            continue
        dv = S.dist[v]
        if dv < dstar:
            if v >= N:
                fl.pi[v - N] += dstar - dv
            else:
                fl.lam[v] += dstar - dv


@njit(cache=True, inline="always")
def _pending(P, fl, S, h, size, k0, tol):
    """Finish what the last augmentation left: re-relax the reset subtree (``S.queue``), then
    expand the full sink. Returns ``(size, need)``; ``need > 0`` when the heap lacks that room
    (the work stays pending)."""
    N = P.nodes.supply.size
    cp = P.coupled
    c = S.counters
    while c[_PEND_Q] < c[_PEND_NB]:
        w = np.int64(S.queue[c[_PEND_Q]])  # heap entries are int64 triples
        m = cp.sh_ptr[w + 1] - cp.sh_ptr[w] if w < N else cp.in_ptr[w - N + 1] - cp.in_ptr[w - N]
        if size + m > h.key.size:
            return size, m
        size = _rerelax(P, fl, S, h, size, w, k0, tol)
        c[_PEND_Q] += 1
    k = c[_PEND_SINK]
    if k >= 0:
        m = cp.in_ptr[k + 1] - cp.in_ptr[k]
        if size + m > h.key.size:
            return size, m
        size = _expand_sink(P, fl, S, h, size, k, S.dist[N + k], tol)  # k was settled at dist
        c[_PEND_SINK] = -1
    return size, 0


@njit(cache=True, inline="always")
def _step(P, fl, S, tree, h, size, d, code, a, stamp, k0, tol):
    """Process the popped entry ``(d, (code, a, stamp))``. Returns ``(size, state)``: state
    ``_DRAINED``, ``_PENDING`` (work left for :func:`_pending`) or 0."""
    N = P.nodes.supply.size
    it = S.counters[_IT]
    if code < 2 * N:
        if S.done[code] == it:
            return size, 0
        if code != N + k0:
            key = _candidate_key(P, fl, S, code, a, stamp, it)
            if key < 0.0:
                return size, 0  # from a parent that has been reset since
            if key != d:  # code's potential was raised (reset) after this entry was made
                return push(h, size, key, (code, a, stamp)), 0
        size, expand = _settle(P, fl, S, tree, h, size, code, d, a, k0, tol)
        if expand >= 0:
            S.counters[_PEND_SINK] = expand
            return size, _PENDING
    elif code < 4 * N:
        if S.ckey[code - 2 * N] == d and S.done[code - 2 * N] == it:
            size = _scan_shared(P, fl, S, h, size, code - 2 * N, d, tol)
    else:
        v = code - 4 * N
        if S.tkey[v] != d or S.done[v] != it:
            return size, 0
        S.dstar[0] = d
        size, nb, expand = _terminal(P, fl, S, tree, h, size, v, d, k0, tol)
        if expand == _DRAINED:
            return size, _DRAINED
        S.counters[_PEND_Q] = 0
        S.counters[_PEND_NB] = nb
        S.counters[_PEND_SINK] = expand
        return size, _PENDING
    return size, 0


@njit(cache=True, inline="always")
def _next_search(P, fl, S, h, tol):
    """Start the search of the next overloaded saturable sink ``k0`` (from ``S.counters[_NEXT]``
    on): an empty heap holding ``k0``. Returns ``(size, k0)``; ``k0 = -1`` when none is left."""
    N = P.nodes.supply.size
    cp = P.coupled
    c = S.counters
    for k0 in range(c[_NEXT], N):
        if cp.in_ptr[k0 + 1] > cp.in_ptr[k0] and fl.load[k0] > P.nodes.cap[k0] + tol:
            c[_NEXT] = k0 + 1
            c[_K0] = k0
            c[_IT] += 1
            c[_NS] = 0
            c[_PEND_Q] = 0
            c[_PEND_NB] = 0
            c[_PEND_SINK] = -1
            S.dstar[0] = 0.0
            return push(h, 0, 0.0, (N + k0, -1, -1)), k0
    c[_NEXT] = N
    return 0, -1


# _nrt (numba's private switch for code without reference counting) is absent from numba's type stubs
@njit(cache=True, nogil=True, _nrt=False)  # type: ignore[call-overload]
def _run(P, fl, S, tree, h, size, tol, stop):
    """The searches of :func:`ssp`, one per overloaded sink ``k0`` in turn, compiled without
    reference counting (it allocates nothing; with it, every inlined helper would count
    references on each array it is passed).

    Returns ``(status, size, need)`` when all sinks are done (``OK``), or early: ``_NEED_HEAP``
    (``need`` more heap entries) or ``_NEED_TREE`` (the settled list is full) before an entry or
    pending work that needs the room, ``INTERRUPTED`` or ``NO_PATH``. After growing, the caller
    calls again and the search resumes where it was.
    """
    N = P.nodes.supply.size
    c = S.counters
    state = _PENDING  # on a new call: resume what the last one left
    pops = 0
    while True:
        k0 = c[_K0]
        if k0 < 0:
            if stop[0] != 0:
                return INTERRUPTED, size, 0
            size, k0 = _next_search(P, fl, S, h, tol)  # the heap has room for one
            if k0 < 0:
                return OK, 0, 0
        if state == _PENDING:
            size, need = _pending(P, fl, S, h, size, k0, tol)
            if need > 0:
                return _NEED_HEAP, size, need
        if size == 0:
            return NO_PATH, size, 0  # cannot happen: discarding is always open
        pops += 1
        if pops % _POLL_POPS == 0 and stop[0] != 0:
            return INTERRUPTED, size, 0
        code = h.item[0, 0]
        need = 2  # a settled node pushes at most two entries, a terminal one
        if 2 * N <= code < 4 * N:
            need = P.coupled.sh_ptr[code - 2 * N + 1] - S.scanpos[code - 2 * N] + 1
        if size + need > h.key.size:
            return _NEED_HEAP, size, need
        if code < 2 * N and c[_NS] == tree.settled.size:
            return _NEED_TREE, size, 0
        d, a, stamp = h.key[0], h.item[0, 1], h.item[0, 2]
        size = pop(h, size)
        size, state = _step(P, fl, S, tree, h, size, d, code, a, stamp, k0, tol)
        if state == _DRAINED:
            _raise_settled(fl, S, tree, N, S.dstar[0])
            c[_K0] = -1


@njit(cache=True, nogil=True)
def ssp(P, x, lam, tol, heap_cap, settle_cap, stop):
    """Successive shortest paths on the coupled problem with one persistent Dijkstra per sink.

    Nodes: sources ``0..N-1``, saturable sinks ``N+k``. Each overloaded sink ``k0`` pushes its
    excess to *terminals*: the private options of a source (its cheapest private arc with room,
    else discard at ``f_s``) or a saturable sink with slack. Reduced costs use the source values
    ``λ`` and sink prices ``π ≥ 0``; a source's shared arcs are scanned lazily in cost order
    (``cost − λ_s`` is a lower bound of the reduced cost since ``π ≥ 0``).

    One search serves all augmentations of ``k0`` (:func:`_run`). Heap entries are
    ``(key, (code, arc, stamp))``: ``code < 2N`` a candidate node reached by ``arc`` from a parent
    settled with ``stamp``, ``2N + s`` the lazy scan of source ``s``, ``4N + v`` the terminal
    ``v``. When a terminal at distance ``d`` is met, the flow is augmented along the tree path. If
    every path arc keeps residual capacity, the settled distances stay exact and the search goes
    on (:func:`_terminal`). Otherwise the phase ends as
    in textbook SSP: settled nodes raise their potentials by ``d − d_v``, which keeps every
    reduced cost ``≥ 0`` and leaves every key ``d_u + rc(u, w)`` unchanged. Only the subtree
    below the topmost exhausted arc (found through child lists) is raised now and reset, then
    re-relaxed from the settled nodes; for the other settled nodes the raises telescope into the
    final one. Unsettled nodes whose parent was reset are re-relaxed when they surface. At the
    end the settled nodes raise their potentials by ``D* − d_v`` (``D*``: the last terminal's
    distance).

    ``P``: a :class:`Problem`; ``x``, ``λ`` (greedy fill) are updated in place. ``heap_cap`` and
    ``settle_cap`` are starting sizes: both grow by doubling, here, when :func:`_run` asks.
    ``stop``: a one-element ``uint8`` flag polled before each search and every ``_POLL_POPS``
    heap pops (nogil: see :mod:`foglearn.planning.interrupt`).

    Returns ``(status, pi, load, searches, augmentations, scans, resets)``; ``status`` is
    :data:`OK`, :data:`NO_PATH` or :data:`INTERRUPTED` (``x`` and ``λ`` are then partial).
    """
    N = P.nodes.supply.size
    fl = _initial_flow(P, x, lam, tol)
    S, tree = _search_arrays(N, settle_cap)
    h = new_heap(heap_cap, 3)
    S.counters[_K0] = -1
    size = 0
    while True:
        status, size, need = _run(P, fl, S, tree, h, size, tol, stop)
        if status == _NEED_HEAP:
            h = grown(h, size, need)
        elif status == _NEED_TREE:
            tree = _grown_tree(tree)
        else:
            break
    c = S.counters
    return status, fl.pi, fl.load, c[_IT], c[_AUG], c[_SCAN], c[_RESET]


# --------------------------------------------------------------------------------- certificate


@njit(cache=True)
def dual_bound(ptr, a_sink, a_cost, a_cap, f, D, cap, lam, pi):
    """LP dual value of ``(λ, π)`` over every arc that survived the cost pruning.

    ``Σ_s D_s λ_s − Σ_k C_k π_k − Σ_a u_a (λ_s − c_a − π_k)^+`` with ``λ_s ≤ f_s`` (discard) and
    ``π ≥ 0`` (arcs pruned for cost ``> f_s`` have no positive term; sinks or links of capacity 0
    and sources with ``D = 0`` carry no flow and do not enter). Any ``(λ, π)`` gives a lower bound
    on the optimum (weak duality).
    """
    N = D.size
    total = 0.0
    for k in range(N):
        if pi[k] > 0:
            if not cap[k] < np.inf:
                return -np.inf
            total -= cap[k] * pi[k]
    for s in range(N):
        if D[s] <= 0:
            continue
        ls = min(lam[s], f[s])
        total += D[s] * ls
        for a in range(ptr[s], ptr[s + 1]):
            r = ls - a_cost[a] - pi[a_sink[a]]
            if r > 0:
                total -= a_cap[a] * r
    return total


@njit(cache=True)
def primal_value(ptr, a_cost, x, f, D):
    total = 0.0
    for s in range(D.size):
        if D[s] <= 0:
            continue
        used = 0.0
        for a in range(ptr[s], ptr[s + 1]):
            total += a_cost[a] * x[a]
            used += x[a]
        total += f[s] * (D[s] - used)
    return total


@njit(cache=True)
def fractions(ptr, a_src, a_edge, x, D, n, E):
    """``keep[T, n]`` and ``offload[T, E]`` fractions from the arc flows."""
    N = D.size
    T = N // n
    keep = np.zeros(N)
    offload = np.zeros((T, E))
    for s in range(N):
        if D[s] <= 0:
            continue
        t = s // n
        for a in range(ptr[s], ptr[s + 1]):
            if x[a] > 0:
                e = a_edge[a]
                if e < 0:
                    keep[s] = x[a] / D[s]
                else:
                    offload[t, e] = x[a] / D[s]
    return keep.reshape(T, n), offload
