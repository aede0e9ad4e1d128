"""Numba kernels of the square-root-error planner (:mod:`foglearn.planning.sqrt`).

The network is kept *implicit*: an arc ``(t, e)`` (link ``e`` at slot ``t``, from source
``(src_e, t)`` to sink ``(dst_e, t+1)``) exists when the link is usable, carries capacity, the
source collected data and the sink has an error term. Flows live in a dense ``x[T, E]`` and
``xo[T·n]`` (points kept = the "own" arc from source ``k`` to sink ``k``, cost 0, capacity
``D_k``). Node ``k = t·n + i`` is both a source (supply ``D_k``) and a sink (cost
``h_k(G) = c_k G + f_k/sqrt(G)``, capacity ``C_k``).

Dual variables: ``u_s ≥ 0`` per source (value of one more collected point), ``π_k`` per sink.
Complementary slackness (CS) on arcs: ``x_a > 0 ⇒ c_a + u_s ≤ π_k``, ``x_a < cap_a ⇒
c_a + u_s ≥ π_k``; on sinks ``G_k = g_k(π_k) = min(C_k, (f_k / (2 (c_k + π_k)))^(2/3))``
(the minimiser of ``h_k(G) + π_k G``, strictly positive for finite ``π_k``).
"""

from __future__ import annotations

import numpy as np
from numba import njit

# status codes of _repair
OK = 0
ITER_LIMIT = 1
UNBOUNDED = 2


@njit(cache=True, inline="always")
def _valid(t, e, T, n, usable, lcap, D, err, src, dst):
    if t >= T - 1 or not usable[t, e] or lcap[t, e] <= 0.0:
        return False
    if D[t * n + src[e]] <= 0.0:
        return False
    return err[(t + 1) * n + dst[e]]


@njit(cache=True, inline="always")
def _g(k, pi, c, f, cap):
    """Sink response ``g_k(π)``: the ``G`` minimising ``c G + f/sqrt(G) + π G`` on ``(0, C]``."""
    cp = c[k] + pi
    if cp <= 0.0:
        return cap[k]
    q = f[k] / (2.0 * cp)
    G = np.cbrt(q * q)
    return G if G < cap[k] else cap[k]


@njit(cache=True)
def decoupled(T, n, D, c, f, cap, err, src, dst, usable, lcap, lcost, in_ptr, in_edges):
    """Every sink solves its own 1-D problem with all sources free (``u = 0``).

    Options are taken cheapest first (own data at cost 0, then incoming arcs by ``c_ij``) while
    the marginal value ``v(G) = f/(2 G^{3/2}) − c`` exceeds the option's cost; the stopping
    point within an option is ``(f / (2 (c + cost)))^{2/3}``, capped by ``C``.
    Returns ``xo``, ``x`` and sink prices ``π`` satisfying CS with ``u = 0``.
    """
    N = T * n
    E = src.size
    xo = np.zeros(N)
    x = np.zeros((T, E))
    pi = np.zeros(N)
    maxdeg = 0
    for j in range(n):
        maxdeg = max(maxdeg, in_ptr[j + 1] - in_ptr[j])
    bc = np.empty(maxdeg)
    be = np.empty(maxdeg, np.int64)
    for k in range(N):
        if not err[k]:
            continue
        t, j = k // n, k % n
        ck, fk, Ck = c[k], f[k], cap[k]
        gv = (fk / (2.0 * ck)) ** (2.0 / 3.0) if ck > 0 else np.inf
        G = min(D[k], gv, Ck)
        xo[k] = G
        last = 0.0
        if G >= D[k] and G < Ck and t >= 1:
            thr = fk / (2.0 * G ** 1.5) - ck
            m = 0
            for q in range(in_ptr[j], in_ptr[j + 1]):
                e = in_edges[q]
                if lcost[t - 1, e] < thr and _valid(t - 1, e, T, n, usable, lcap, D, err, src, dst):
                    bc[m] = lcost[t - 1, e]
                    be[m] = e
                    m += 1
            o = np.argsort(bc[:m])
            for q in range(m):
                e = be[o[q]]
                cost = bc[o[q]]
                if fk / (2.0 * G ** 1.5) - ck <= cost:
                    break
                amt = min(lcap[t - 1, e], D[(t - 1) * n + src[e]])
                g2 = (fk / (2.0 * (ck + cost))) ** (2.0 / 3.0) if ck + cost > 0 else np.inf
                take = min(amt, g2 - G, Ck - G)
                if take <= 0.0:
                    break
                x[t - 1, e] = take
                G += take
                last = cost
                if take < amt:
                    break
        if G < Ck:
            pi[k] = fk / (2.0 * G ** 1.5) - ck
        else:
            pi[k] = last
    return xo, x, pi


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


@njit(cache=True)
def _scan(code, stamp, mark, T, n, D, err, src, dst, usable, lcap, lcost, in_ptr, in_edges, out_ptr, out_edges,
          xo, x, pi, u, tolx, b_rc, b_tol, b_tgt, b_edge, b_room):
    """Residual arcs leaving tree node ``code`` towards nodes outside the tree, with reduced cost.

    Source ``s``: decrease arcs (``x > 0``), reduced cost ``π_k − c_a − u_s``.
    Sink ``k``: increase arcs (``x < cap``), reduced cost ``c_a + u_s − π_k``. Both ``≥ −tol`` by CS.
    """
    m = 0
    idx = code >> 1
    if code & 1 == 0:
        us = u[idx]
        if err[idx] and xo[idx] > tolx and mark[2 * idx + 1] != stamp:
            b_rc[m] = pi[idx] - us
            b_tol[m] = 1e-12 * (1.0 + abs(pi[idx]))
            b_tgt[m] = 2 * idx + 1
            b_edge[m] = -1
            b_room[m] = xo[idx]
            m += 1
        t, i = idx // n, idx % n
        if t < T - 1:
            for q in range(out_ptr[i], out_ptr[i + 1]):
                e = out_edges[q]
                if x[t, e] > tolx:
                    k = (t + 1) * n + dst[e]
                    if mark[2 * k + 1] != stamp:
                        b_rc[m] = pi[k] - lcost[t, e] - us
                        b_tol[m] = 1e-12 * (1.0 + abs(pi[k]))
                        b_tgt[m] = 2 * k + 1
                        b_edge[m] = e
                        b_room[m] = x[t, e]
                        m += 1
    else:
        pk = pi[idx]
        tol = 1e-12 * (1.0 + abs(pk))
        if mark[2 * idx] != stamp and D[idx] - xo[idx] > tolx:
            b_rc[m] = u[idx] - pk
            b_tol[m] = tol
            b_tgt[m] = 2 * idx
            b_edge[m] = -1
            b_room[m] = D[idx] - xo[idx]
            m += 1
        t, j = idx // n, idx % n
        if t >= 1:
            for q in range(in_ptr[j], in_ptr[j + 1]):
                e = in_edges[q]
                s = (t - 1) * n + src[e]
                if mark[2 * s] == stamp:
                    continue
                if not _valid(t - 1, e, T, n, usable, lcap, D, err, src, dst):
                    continue
                rm = min(lcap[t - 1, e], D[s]) - x[t - 1, e]
                if rm <= tolx:
                    continue
                b_rc[m] = lcost[t - 1, e] + u[s] - pk
                b_tol[m] = tol
                b_tgt[m] = 2 * s
                b_edge[m] = e
                b_room[m] = rm
                m += 1
    return m


@njit(cache=True)
def repair(T, n, D, c, f, cap, err, src, dst, usable, lcap, lcost, in_ptr, in_edges, out_ptr, out_edges,
           xo, x, pi, u, d, tolx, max_steps):
    """Primal-dual repair of over-subscribed sources (exact up to floating point).

    For each source ``r`` with excess ``d_r − D_r > 0`` a *phase* grows, Dijkstra-like, the tree
    ``R`` of nodes reachable from ``r`` by residual arcs of zero reduced cost (decrease ``x`` on an
    arc out of a source, increase ``x`` on an arc into a sink). When ``R`` reaches a source with
    slack, augment along the tree path (cost-neutral). Otherwise raise every price in ``R`` by
    ``θ``: its sinks shrink to ``g_k(π_k + θ)``, the shrinkage is routed back to ``r`` along the
    tree, and ``θ`` is the largest value at which no tree arc leaves its bounds and the excess
    stays ≥ 0 (monotone in ``θ``: bisection to machine precision), but at most ``θ_b``, where
    the cheapest arc leaving ``R`` (a heap keyed by the cumulative raise) becomes tight and ``R``
    grows. A tree arc reaching its bound, or an augmentation, ends the phase. CS holds
    throughout and prices only rise. Returns ``(status, steps, augmentations, max |R|)``.
    """
    N = T * n
    mark = np.zeros(2 * N, np.int64)
    par = np.empty(2 * N, np.int64)       # parent node code (2*idx + type)
    pedge = np.empty(2 * N, np.int64)     # parent arc edge id, -1 = own arc
    room = np.empty(2 * N)
    S = np.empty(2 * N)
    order = np.empty(2 * N, np.int64)
    maxdeg = 0
    for j in range(n):
        maxdeg = max(maxdeg, in_ptr[j + 1] - in_ptr[j], out_ptr[j + 1] - out_ptr[j])
    b_rc = np.empty(maxdeg + 1)
    b_tol = np.empty(maxdeg + 1)
    b_tgt = np.empty(maxdeg + 1, np.int64)
    b_edge = np.empty(maxdeg + 1, np.int64)
    b_room = np.empty(maxdeg + 1)
    hcap = 1024
    hk = np.empty(hcap)
    ht = np.empty(hcap, np.int64)
    hp = np.empty(hcap, np.int64)
    he = np.empty(hcap, np.int64)
    hr = np.empty(hcap)
    stamp = 0
    steps = 0
    augs = 0
    rmax = 0
    for r in range(N):
        while d[r] - D[r] > tolx:
            # ---- new phase
            stamp += 1
            root = 2 * r
            mark[root] = stamp
            order[0] = root
            tail = 1
            hn = 0
            Th = 0.0
            newest = 0          # nodes order[newest:tail] still have to push their arcs
            found = -1
            while True:
                # push the arcs of the nodes added since the last step
                while newest < tail:
                    code = order[newest]
                    newest += 1
                    m = _scan(code, stamp, mark, T, n, D, err, src, dst, usable, lcap, lcost, in_ptr, in_edges,
                              out_ptr, out_edges, xo, x, pi, u, tolx, b_rc, b_tol, b_tgt, b_edge, b_room)
                    for q in range(m):
                        if hn == hcap:
                            hcap *= 2
                            hk2 = np.empty(hcap)
                            ht2 = np.empty(hcap, np.int64)
                            hp2 = np.empty(hcap, np.int64)
                            he2 = np.empty(hcap, np.int64)
                            hr2 = np.empty(hcap)
                            hk2[:hn] = hk[:hn]
                            ht2[:hn] = ht[:hn]
                            hp2[:hn] = hp[:hn]
                            he2[:hn] = he[:hn]
                            hr2[:hn] = hr[:hn]
                            hk, ht, hp, he, hr = hk2, ht2, hp2, he2, hr2
                        key = Th + b_rc[q] - b_tol[q]
                        # sift up
                        h = hn
                        hn += 1
                        while h > 0:
                            pa = (h - 1) >> 1
                            if hk[pa] <= key:
                                break
                            hk[h] = hk[pa]
                            ht[h] = ht[pa]
                            hp[h] = hp[pa]
                            he[h] = he[pa]
                            hr[h] = hr[pa]
                            h = pa
                        hk[h] = key
                        ht[h] = b_tgt[q]
                        hp[h] = code
                        he[h] = b_edge[q]
                        hr[h] = b_room[q]
                # pop every arc that is tight at the current raise Th; stop at a slack source
                while hn > 0 and hk[0] <= Th and found < 0:
                    tg, pc, pe, prm = ht[0], hp[0], he[0], hr[0]
                    hn -= 1
                    if hn > 0:
                        key, kt, kp, ke, kr = hk[hn], ht[hn], hp[hn], he[hn], hr[hn]
                        h = 0
                        while True:
                            ch = 2 * h + 1
                            if ch >= hn:
                                break
                            if ch + 1 < hn and hk[ch + 1] < hk[ch]:
                                ch += 1
                            if hk[ch] >= key:
                                break
                            hk[h] = hk[ch]
                            ht[h] = ht[ch]
                            hp[h] = hp[ch]
                            he[h] = he[ch]
                            hr[h] = hr[ch]
                            h = ch
                        hk[h] = key
                        ht[h] = kt
                        hp[h] = kp
                        he[h] = ke
                        hr[h] = kr
                    if mark[tg] == stamp:
                        continue
                    mark[tg] = stamp
                    par[tg] = pc
                    pedge[tg] = pe
                    room[tg] = prm
                    order[tail] = tg
                    tail += 1
                    if tg & 1 == 0 and D[tg >> 1] - d[tg >> 1] > tolx:
                        found = tg
                if tail > rmax:
                    rmax = tail
                if found >= 0:
                    break
                if newest < tail:
                    continue    # new nodes: push their arcs (some may be tight already)
                steps += 1
                if steps > max_steps:
                    return ITER_LIMIT, steps, augs, rmax
                thb = hk[0] - Th if hn > 0 else np.inf
                if thb < 0.0:
                    thb = 0.0
                excess = d[r] - D[r]
                lo = 0.0
                hi = thb
                if not np.isfinite(hi):
                    hi = 1.0
                    while _phi(hi, tail, order, par, room, S, pi, c, f, cap, excess) >= 0.0:
                        hi *= 2.0
                        if hi > 1e300:
                            return UNBOUNDED, steps, augs, rmax
                boundary = False
                ph = _phi(hi, tail, order, par, room, S, pi, c, f, cap, excess)
                if ph >= 0.0:
                    lo = hi
                    boundary = True
                else:
                    # largest th with phi(th) >= 0; phi is continuous and decreasing: Illinois
                    # regula falsi, bracketed, stopped when the binding slack is below tolx
                    flo = _phi(0.0, tail, order, par, room, S, pi, c, f, cap, excess)
                    fhi = ph
                    true_lo = flo
                    side = 0
                    for _ in range(300):
                        if true_lo <= 0.5 * tolx or hi - lo <= 4e-16 * hi:
                            break
                        mid = (lo * fhi - hi * flo) / (fhi - flo)
                        if not (lo < mid < hi):
                            mid = 0.5 * (lo + hi)
                        fm = _phi(mid, tail, order, par, room, S, pi, c, f, cap, excess)
                        if fm >= 0.0:
                            lo, flo, true_lo = mid, fm, fm
                            if side == 1:
                                fhi *= 0.5
                            side = 1
                        else:
                            hi, fhi = mid, fm
                            if side == -1:
                                flo *= 0.5
                            side = -1
                th = lo
                _phi(th, tail, order, par, room, S, pi, c, f, cap, excess)
                # apply: prices rise by th, flows move by the subtree shrinkage
                for h in range(tail):
                    code = order[h]
                    idx = code >> 1
                    if code & 1 == 1:
                        pi[idx] += th
                    else:
                        u[idx] += th
                    if h == 0:
                        continue
                    amt = S[code]
                    if amt == 0.0:
                        continue
                    room[code] -= amt
                    e = pedge[code]
                    if code & 1 == 1:
                        if e < 0:
                            xo[idx] = max(xo[idx] - amt, 0.0)
                        else:
                            x[idx // n - 1, e] = max(x[idx // n - 1, e] - amt, 0.0)
                    else:
                        if e < 0:
                            xo[idx] = min(xo[idx] + amt, D[idx])
                        else:
                            x[idx // n, e] += amt
                d[r] -= S[root]
                Th += th
                if d[r] - D[r] <= tolx or not boundary:
                    break       # root done, or a tree arc reached its bound: new phase
            if found >= 0:
                # augment along the tree path from r to the slack source
                s = found >> 1
                amt = min(d[r] - D[r], D[s] - d[s])
                code = found
                while code != root:
                    if room[code] < amt:
                        amt = room[code]
                    code = par[code]
                code = found
                while code != root:
                    idx = code >> 1
                    e = pedge[code]
                    if code & 1 == 1:       # sink: its parent arc (from a source) decreases
                        if e < 0:
                            xo[idx] -= amt
                        else:
                            x[idx // n - 1, e] -= amt
                    else:                   # source: its arc into the parent sink increases
                        if e < 0:
                            xo[idx] += amt
                        else:
                            x[idx // n, e] += amt
                    code = par[code]
                d[s] += amt
                d[r] -= amt
                augs += 1
    return OK, steps, augs, rmax


@njit(cache=True)
def _phi(th, tail, order, par, room, S, pi, c, f, cap, excess):
    """Smallest slack after raising the tree's prices by ``th``: ``min(room_a − S_a, excess − S_root)``.

    ``S`` receives the subtree shrinkage ``Σ (g_k(π_k) − g_k(π_k + th))`` of every tree node.
    Continuous and non-increasing in ``th``.
    """
    for h in range(tail):
        S[order[h]] = 0.0
    worst = np.inf
    for h in range(tail - 1, -1, -1):
        code = order[h]
        if code & 1 == 1:
            k = code >> 1
            S[code] += _g(k, pi[k], c, f, cap) - _g(k, pi[k] + th, c, f, cap)
        if h > 0:
            sl = room[code] - S[code]
            if sl < worst:
                worst = sl
            S[par[code]] += S[code]
    sl = excess - S[order[0]]
    return sl if sl < worst else worst


@njit(cache=True)
def dual_bound(T, n, D, c, f, cap, err, src, dst, usable, lcap, lcost, out_ptr, out_edges, p):
    """Lagrangian lower bound ``L(p)`` for sink prices ``p`` (relaxing ``G_k = Σ_in x``).

    ``L(p) = Σ_k min_{0<G≤C_k} [h_k(G) + p_k G] + Σ_s min_{x ∈ X_s} Σ_{a out of s} (c_a − p_k) x_a``
    where ``X_s`` = {``0 ≤ x_a ≤ cap_a``, ``Σ x_a ≤ D_s``} (a fractional knapsack per source).
    Sinks without an error term have ``p = 0`` and no arcs (their cost ``c G ≥ 0``).
    """
    N = T * n
    total = 0.0
    for k in range(N):
        if not err[k]:
            continue
        cp = c[k] + p[k]
        if cp > 0:
            G = (f[k] / (2.0 * cp)) ** (2.0 / 3.0)
            if G > cap[k]:
                G = cap[k]
            total += cp * G + f[k] / np.sqrt(G)
        elif np.isfinite(cap[k]):
            total += cp * cap[k] + f[k] / np.sqrt(cap[k])
        elif cp < 0:
            return -np.inf
    maxdeg = 0
    for i in range(n):
        maxdeg = max(maxdeg, out_ptr[i + 1] - out_ptr[i])
    vals = np.empty(maxdeg + 1)
    amts = np.empty(maxdeg + 1)
    for s in range(N):
        if D[s] <= 0:
            continue
        t, i = s // n, s % n
        m = 0
        if err[s] and p[s] > 0:
            vals[m] = -p[s]
            amts[m] = D[s]
            m += 1
        if t < T - 1:
            for q in range(out_ptr[i], out_ptr[i + 1]):
                e = out_edges[q]
                k = (t + 1) * n + dst[e]
                v = lcost[t, e] - p[k]
                if v < 0 and _valid(t, e, T, n, usable, lcap, D, err, src, dst):
                    vals[m] = v
                    amts[m] = min(lcap[t, e], D[s])
                    m += 1
        if m == 0:
            continue
        o = np.argsort(vals[:m])
        rem = D[s]
        for q in range(m):
            j = o[q]
            tk = min(rem, amts[j])
            total += vals[j] * tk
            rem -= tk
            if rem <= 0:
                break
    return total


@njit(cache=True)
def primal_objective(T, n, c, f, err, src, lcost, xo, x, G):
    """``Σ c_k G_k + Σ c_a x_a + Σ_err f_k / sqrt(G_k)`` (inf if an error sink has ``G ≤ 0``)."""
    N = T * n
    total = 0.0
    for k in range(N):
        total += c[k] * G[k]
        if err[k]:
            if G[k] <= 0:
                return np.inf
            total += f[k] / np.sqrt(G[k])
    E = src.size
    for t in range(T):
        for e in range(E):
            if x[t, e] != 0.0:
                total += lcost[t, e] * x[t, e]
    return total
