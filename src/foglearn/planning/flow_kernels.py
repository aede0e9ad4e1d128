"""Numba kernels of the exact linear-error min-cost-flow solver (see :mod:`foglearn.planning.flow`).

Conventions: ``N = T·n`` source nodes ``s = t·n + i`` ("points collected by ``i`` at ``t``") and
``N`` sink nodes ``k = t·n + i`` ("process at ``i`` at ``t``"). Every option of a source is an
*arc* (the keep option is the arc ``s -> s`` with capacity ``D_s``, link ``-1``); arcs are stored
grouped by source (CSR ``ptr``) and, within a source, by increasing per-point cost (keep first
among ties, SPEC §2). Discarding costs ``f_s`` per point and is unlimited. All data are float64
points and costs (no integer scaling).
"""

from __future__ import annotations

import numpy as np
from numba import njit

# --------------------------------------------------------------------------------------- build


@njit(cache=True)
def build_arcs(src, dst, link_cost, link_cap, link_up, active, c, f, cap, D):
    """Arcs surviving the exact cost pruning (an option dearer than ``f_s`` is never needed).

    A link is usable at ``t < T-1`` when it is up and ``i``, ``j`` are active at ``t`` and ``j``
    at ``t+1`` (as :meth:`Scenario.usable_links`, evaluated here without a ``[T, E]`` temporary).

    Kept: keep ``(i,t)`` when ``c_i(t) ≤ f_i(t)``, ``C_i(t) > 0``; offload on a usable link with
    ``C_ij(t) > 0``, ``C_j(t+1) > 0`` and ``c_ij(t) + c_j(t+1) ≤ f_i(t)``; only for ``D_i(t) > 0``.
    Returns ``(ptr, a_src, a_sink, a_cost, a_cap, a_edge)`` sorted by (source, cost).
    """
    T, n = D.shape
    E = src.size
    N = T * n
    ptr = np.zeros(N + 1, dtype=np.int64)
    for t in range(T):
        for i in range(n):
            if D[t, i] > 0 and cap[t, i] > 0 and c[t, i] <= f[t, i]:
                ptr[t * n + i + 1] += 1
        if t < T - 1:
            for e in range(E):
                i = src[e]
                k = dst[e]
                if link_up[t, e] and D[t, i] > 0 and link_cap[t, e] > 0 and cap[t + 1, k] > 0 \
                        and active[t, i] and active[t, k] and active[t + 1, k]:
                    if link_cost[t, e] + c[t + 1, k] <= f[t, i]:
                        ptr[t * n + i + 1] += 1
    for s in range(N):
        ptr[s + 1] += ptr[s]
    M = ptr[N]
    a_src = np.empty(M, dtype=np.int32)
    a_sink = np.empty(M, dtype=np.int32)
    a_cost = np.empty(M, dtype=np.float64)
    a_cap = np.empty(M, dtype=np.float64)
    a_edge = np.empty(M, dtype=np.int32)
    pos = ptr[:N].copy()
    for t in range(T):
        for i in range(n):
            if D[t, i] > 0 and cap[t, i] > 0 and c[t, i] <= f[t, i]:
                s = t * n + i
                p = pos[s]
                a_src[p] = s
                a_sink[p] = s
                a_cost[p] = c[t, i]
                a_cap[p] = D[t, i]
                a_edge[p] = -1
                pos[s] = p + 1
        if t < T - 1:
            for e in range(E):
                i = src[e]
                k = dst[e]
                if link_up[t, e] and D[t, i] > 0 and link_cap[t, e] > 0 and cap[t + 1, k] > 0 \
                        and active[t, i] and active[t, k] and active[t + 1, k]:
                    cost = link_cost[t, e] + c[t + 1, k]
                    if cost <= f[t, i]:
                        s = t * n + i
                        p = pos[s]
                        a_src[p] = s
                        a_sink[p] = (t + 1) * n + k
                        a_cost[p] = cost
                        a_cap[p] = min(link_cap[t, e], D[t, i])
                        a_edge[p] = e
                        pos[s] = p + 1
    # within each source: cheapest first, stable (the keep arc is written first: it wins ties)
    for s in range(N):
        a0, a1 = ptr[s], ptr[s + 1]
        m = a1 - a0
        if m < 2:
            continue
        sorted_ = True
        for q in range(a0 + 1, a1):
            if a_cost[q] < a_cost[q - 1]:
                sorted_ = False
                break
        if sorted_:
            continue
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
    return ptr, a_src, a_sink, a_cost, a_cap, a_edge


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
    return sh_cnt, sh_arc, pv_cnt, pv_arc, in_cnt, in_arc, in_src, in_cost


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


# ----------------------------------------------------------------------------------- the heap


@njit(cache=True)
def _push(hk, hv, ha, hp, size, key, val, aux, ver):
    """Push onto a binary heap that has room (callers check the capacity)."""
    i = size
    while i > 0:
        p = (i - 1) >> 1
        if hk[p] <= key:
            break
        hk[i] = hk[p]
        hv[i] = hv[p]
        ha[i] = ha[p]
        hp[i] = hp[p]
        i = p
    hk[i] = key
    hv[i] = val
    ha[i] = aux
    hp[i] = ver
    return size + 1


# ------------------------------------------------------------------------------ shortest paths


@njit(cache=True)
def _parent(v, N, pred, a_src, a_sink):
    a = pred[v]
    return N + a_sink[a] if v < N else a_src[a]


@njit(cache=True)
def ssp(D, f, cap, a_src, a_sink, a_cost, a_cap, sh_ptr, sh_arc, pv_ptr, pv_arc,
        in_ptr, in_arc, in_src, in_cost, x, lam, tol, heap_cap, settle_cap):
    """Successive shortest paths on the coupled problem with one persistent Dijkstra per sink.

    Nodes: sources ``0..N-1``, saturable sinks ``N+k``. Each overloaded sink ``k0`` pushes its
    excess to *terminals*: the private options of a source (its cheapest private arc with room,
    else discard at ``f_s``) or a saturable sink with slack. Reduced costs use the source values
    ``λ`` and sink prices ``π ≥ 0``; a source's shared arcs are scanned lazily in cost order
    (``cost − λ_s`` is a lower bound of the reduced cost since ``π ≥ 0``).

    One search serves all augmentations of ``k0``. When a terminal at distance ``d`` is met,
    the flow is augmented along the tree path. If every path arc keeps residual capacity, the
    settled distances stay exact and the search goes on (a filled private option is replaced by
    the source's next one; a filled sink becomes an ordinary node). Otherwise the phase ends as
    in textbook SSP: settled nodes raise their potentials by ``d − d_v``, which keeps every
    reduced cost ``≥ 0`` and leaves every key ``d_u + rc(u, w)`` unchanged. Only the subtree
    below the topmost exhausted arc (found through child lists) is raised now and reset, then
    re-relaxed from the settled nodes; for the other settled nodes the raises telescope into the
    final one. Unsettled nodes whose parent was reset are re-relaxed when they surface. At the
    end the settled nodes raise their potentials by ``D* − d_v`` (``D*``: the last terminal's
    distance).

    The heap and the settled list have fixed capacities (no reallocation in the hot loop);
    ``searches = -2`` reports that one was too small (``x`` and ``λ`` are then spoilt and the
    caller starts again with larger ones), ``-1`` an internal error.

    Returns ``(pi, load, searches, augmentations, scans, resets)``.
    """
    N = D.size
    pi = np.zeros(N)
    load = np.zeros(N)
    for k in range(N):
        for q in range(in_ptr[k], in_ptr[k + 1]):
            load[k] += x[in_arc[q]]
    pp = pv_ptr[:N].copy()  # first private arc of s that may have room
    for s in range(N):
        while pp[s] < pv_ptr[s + 1] and x[pv_arc[pp[s]]] >= a_cap[pv_arc[pp[s]]] - tol:
            pp[s] += 1
    N2 = 2 * N
    N4 = 4 * N
    dist = np.empty(N2)
    done = np.zeros(N2, dtype=np.int64)
    pred = np.zeros(N2, dtype=np.int64)
    sver = np.zeros(N2, dtype=np.int64)
    spos = np.zeros(N2, dtype=np.int64)
    inB = np.zeros(N2, dtype=np.int64)
    tkey = np.full(N2, np.nan)
    scanpos = np.zeros(N, dtype=np.int64)
    ckey = np.full(N, np.nan)
    settled = np.empty(settle_cap, dtype=np.int64)
    sib = np.empty(settle_cap, dtype=np.int64)
    fc = np.full(N2, -1, dtype=np.int64)
    blist = np.empty(N2, dtype=np.int64)
    hk = np.empty(heap_cap)
    hv = np.empty(heap_cap, dtype=np.int64)
    ha = np.empty(heap_cap, dtype=np.int64)
    hp = np.empty(heap_cap, dtype=np.int64)
    it = 0
    gv = 0
    brk = 0
    n_aug = 0
    n_scan = 0
    n_reset = 0
    for k0 in range(N):
        if in_ptr[k0 + 1] == in_ptr[k0] or load[k0] <= cap[k0] + tol:
            continue
        it += 1
        v0 = N + k0
        size = 0
        ns = 0
        size = _push(hk, hv, ha, hp, size, 0.0, v0, -1, -1)
        Dstar = 0.0
        while True:
            if size == 0:
                return pi, load, -1, n_aug, n_scan, n_reset  # cannot happen: discarding is open
            if size + 8 > heap_cap:
                return pi, load, -2, n_aug, n_scan, n_reset  # heap too small: the caller retries
            # pop the heap's minimum (inlined by hand: a call costs reference counts)
            d, code, aux, ver = hk[0], hv[0], ha[0], hp[0]
            size -= 1
            if size > 0:
                lk, lv, la, lp = hk[size], hv[size], ha[size], hp[size]
                i = 0
                while True:
                    c = 2 * i + 1
                    if c >= size:
                        break
                    if c + 1 < size and hk[c + 1] < hk[c]:
                        c += 1
                    if lk <= hk[c]:
                        break
                    hk[i] = hk[c]
                    hv[i] = hv[c]
                    ha[i] = ha[c]
                    hp[i] = hp[c]
                    i = c
                hk[i] = lk
                hv[i] = lv
                ha[i] = la
                hp[i] = lp
            expand_sink = -1
            if code < N2:
                v = code
                if done[v] == it:
                    continue
                if v != v0:
                    if v < N:
                        par = N + a_sink[aux]
                        if done[par] != it or sver[par] != ver:
                            continue  # a candidate from a parent that was reset since
                        rc = lam[v] - a_cost[aux] - pi[a_sink[aux]]
                    else:
                        par = a_src[aux]
                        if done[par] != it or sver[par] != ver:
                            continue
                        rc = a_cost[aux] + pi[v - N] - lam[par]
                    if rc < 0.0:
                        rc = 0.0
                    key = dist[par] + rc
                    if key != d:
                        # v's potential was raised (it was reset) after this candidate was made
                        size = _push(hk, hv, ha, hp, size, key, v, aux, ver)
                        continue
                dist[v] = d
                pred[v] = aux
                done[v] = it
                gv += 1
                sver[v] = gv
                if ns >= settle_cap:
                    return pi, load, -2, n_aug, n_scan, n_reset
                settled[ns] = v
                spos[v] = ns
                fc[v] = -1
                if v != v0:
                    par = _parent(v, N, pred, a_src, a_sink)
                    sib[ns] = fc[par]
                    fc[par] = ns
                ns += 1
                if v >= N:
                    k = v - N
                    if k != k0 and load[k] < cap[k] - tol:
                        tkey[v] = d
                        size = _push(hk, hv, ha, hp, size, d, N4 + v, 0, 0)
                        continue
                    expand_sink = k
                else:
                    s = v
                    q = pp[s]
                    m = a_cost[pv_arc[q]] if q < pv_ptr[s + 1] else f[s]
                    key = d + max(m - lam[s], 0.0)
                    tkey[s] = key
                    size = _push(hk, hv, ha, hp, size, key, N4 + s, 0, 0)
                    if sh_ptr[s + 1] > sh_ptr[s]:
                        scanpos[s] = sh_ptr[s]
                        ckey[s] = d
                        size = _push(hk, hv, ha, hp, size, d, N2 + s, 0, 0)
                    continue
            elif code < N4:
                # lazy scan of a settled source's shared arcs (cost order)
                s = code - N2
                if ckey[s] != d or done[s] != it:
                    continue
                ds = dist[s]
                ls = lam[s]
                lim = d
                if size > 0 and hk[0] > lim:
                    lim = hk[0]
                q = scanpos[s]
                q1 = sh_ptr[s + 1]
                if size + (q1 - q) + 8 > heap_cap:
                    return pi, load, -2, n_aug, n_scan, n_reset
                ckey[s] = np.nan
                sv = sver[s]
                while q < q1:
                    a = sh_arc[q]
                    lb = ds + a_cost[a] - ls
                    if lb > lim:
                        ckey[s] = lb
                        size = _push(hk, hv, ha, hp, size, lb, code, 0, 0)
                        break
                    q += 1
                    n_scan += 1
                    if x[a] >= a_cap[a] - tol:
                        continue
                    k = a_sink[a]
                    w = N + k
                    if done[w] == it:
                        continue
                    rc = a_cost[a] + pi[k] - ls
                    if rc < 0.0:
                        rc = 0.0
                    size = _push(hk, hv, ha, hp, size, ds + rc, w, a, sv)
                scanpos[s] = q
                continue
            else:
                # a terminal: augment along the tree path
                v = code - N4
                if tkey[v] != d or done[v] != it:
                    continue
                tkey[v] = np.nan
                Dstar = d
                excess = load[k0] - cap[k0]
                ta = -1
                if v < N:
                    s = v
                    q = pp[s]
                    if q < pv_ptr[s + 1]:
                        ta = pv_arc[q]
                        delta = min(excess, a_cap[ta] - x[ta])
                    else:
                        delta = excess
                else:
                    delta = min(excess, cap[v - N] - load[v - N])
                u = v
                while u != v0:
                    a = pred[u]
                    if u < N:
                        delta = min(delta, x[a])
                        u = N + a_sink[a]
                    else:
                        delta = min(delta, a_cap[a] - x[a])
                        u = a_src[a]
                b = -1
                u = v
                while u != v0:
                    a = pred[u]
                    if u < N:
                        x[a] -= delta
                        if x[a] <= tol:
                            x[a] = 0.0
                            b = u
                        u = N + a_sink[a]
                    else:
                        x[a] += delta
                        if x[a] >= a_cap[a] - tol:
                            x[a] = a_cap[a]
                            b = u
                        u = a_src[a]
                load[k0] -= delta
                n_aug += 1
                if v < N:
                    if ta >= 0:
                        x[ta] += delta
                        if x[ta] >= a_cap[ta] - tol:
                            x[ta] = a_cap[ta]
                            pp[s] += 1
                else:
                    load[v - N] += delta
                if load[k0] <= cap[k0] + tol:
                    break
                # the terminal goes on (next private option) or its sink becomes ordinary
                if v < N:
                    q = pp[s]
                    m = a_cost[pv_arc[q]] if q < pv_ptr[s + 1] else f[s]
                    key = dist[s] + max(m - lam[s], 0.0)
                    tkey[s] = key
                    size = _push(hk, hv, ha, hp, size, key, code, 0, 0)
                elif load[v - N] >= cap[v - N] - tol:
                    expand_sink = v - N
                else:
                    tkey[v] = d
                    size = _push(hk, hv, ha, hp, size, d, code, 0, 0)
                if b >= 0:
                    n_reset += 1
                    # the settled subtree below the topmost exhausted arc (child lists)
                    brk += 1
                    inB[b] = brk
                    blist[0] = b
                    nb = 1
                    i = 0
                    while i < nb:
                        u = blist[i]
                        i += 1
                        q = fc[u]
                        while q >= 0:
                            c = settled[q]
                            if spos[c] == q and done[c] == it:
                                inB[c] = brk
                                blist[nb] = c
                                nb += 1
                            q = sib[q]
                    # end the phase for the subtree (textbook SSP would raise every settled node to
                    # d; for the others the raise telescopes into the final update), then reset it
                    for q in range(nb):
                        w = blist[q]
                        dw = dist[w]
                        if dw < d:
                            if w >= N:
                                pi[w - N] += d - dw
                            else:
                                lam[w] += d - dw
                        done[w] = 0
                        tkey[w] = np.nan
                        if w < N:
                            ckey[w] = np.nan
                    if expand_sink >= 0 and inB[N + expand_sink] == brk:
                        expand_sink = -1
                    for q in range(nb):
                        w = blist[q]
                        ln = (sh_ptr[w + 1] - sh_ptr[w]) if w < N else (in_ptr[w - N + 1] - in_ptr[w - N])
                        if size + ln + 8 > heap_cap:
                            return pi, load, -2, n_aug, n_scan, n_reset
                        # every candidate entry of w from the settled nodes (inlined by hand: a
                        # call would cost a reference count per array argument)
                        if w < N:
                            s = w
                            ls = lam[s]
                            for r in range(sh_ptr[s], sh_ptr[s + 1]):
                                a = sh_arc[r]
                                if a_cost[a] > ls + 1e-9:
                                    break  # flow only sits on arcs with c + π ≤ λ_s (dual feasibility)
                                if x[a] <= tol:
                                    continue
                                k = a_sink[a]
                                z = N + k
                                if done[z] != it or (k != k0 and load[k] < cap[k] - tol):
                                    continue  # unsettled, or a sink with slack (a terminal, never expanded)
                                rc = ls - a_cost[a] - pi[k]
                                if rc < 0.0:
                                    rc = 0.0
                                size = _push(hk, hv, ha, hp, size, dist[z] + rc, w, a, sver[z])
                        else:
                            k = w - N
                            pk = pi[k]
                            for r in range(in_ptr[k], in_ptr[k + 1]):
                                a = in_arc[r]
                                if x[a] >= a_cap[a] - tol:
                                    continue
                                s = in_src[r]
                                if done[s] != it:
                                    continue
                                rc = in_cost[r] + pk - lam[s]
                                if rc < 0.0:
                                    rc = 0.0
                                size = _push(hk, hv, ha, hp, size, dist[s] + rc, w, a, sver[s])
                if expand_sink < 0:
                    continue
                d = dist[v]
            if expand_sink >= 0:
                k = expand_sink
                pk = pi[k]
                sv = sver[N + k]
                if size + (in_ptr[k + 1] - in_ptr[k]) + 8 > heap_cap:
                    return pi, load, -2, n_aug, n_scan, n_reset
                for q in range(in_ptr[k], in_ptr[k + 1]):
                    n_scan += 1
                    a = in_arc[q]
                    if x[a] <= tol:
                        continue
                    s = in_src[q]
                    if done[s] == it:
                        continue
                    rc = lam[s] - in_cost[q] - pk
                    if rc < 0.0:
                        rc = 0.0
                    size = _push(hk, hv, ha, hp, size, d + rc, s, a, sv)
        # potentials: settled nodes closer than the last terminal move up
        for q in range(ns):
            v = settled[q]
            if spos[v] != q or done[v] != it:
                continue
            dv = dist[v]
            if dv < Dstar:
                if v >= N:
                    pi[v - N] += Dstar - dv
                else:
                    lam[v] += Dstar - dv
    return pi, load, it, n_aug, n_scan, n_reset


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
