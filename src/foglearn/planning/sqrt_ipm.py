"""Primal-dual interior-point method for the square-root planner (:mod:`foglearn.planning.sqrt`).

Problem (docs/model.md §2, objective (5) with Lemma 1's error term) as a convex transportation
problem over *arcs* ``a`` — the own arc ``(i, t) → (i, t)`` (keeping, cost 0) and one arc
``(i, t) → (j, t+1)`` per usable link (cost ``c_ij(t)``, capacity ``C_ij(t)``)::

    min  Σ_a c_a x_a + Σ_k h_k(G_k),   h_k(G) = c_k G + f_k / sqrt(G)
    s.t. Σ_{a out of s} x_a + w_s = D_s      (source rows, price u_s = y_s ≥ 0)
         Σ_{a into k}   x_a − G_k = 0        (sink rows,   price π_k = −y_k)
         0 ≤ x_a ≤ U_a,  w_s ≥ 0,  0 < G_k ≤ C_k

``w_s`` is the discarded data. Mehrotra's predictor-corrector on the barrier problem; ``G > 0`` is
the domain of ``h`` (``h' → −∞`` at 0) and is kept by the fraction-to-boundary rule, so
``f/sqrt(G)`` is never evaluated at 0.

Newton system. With ``Θ`` the inverse of the diagonal (objective + barrier) Hessian, the normal
equations ``B Θ Bᵀ Δy = r`` have a diagonal source block, so the sources are eliminated and the
sink Schur complement ``S`` is solved. Sinks of slot ``t`` are coupled by the sources of slot
``t−1`` that can reach several of them (the dense ``n×n`` block ``A_t``) and to the sinks of slot
``t+1`` by each source's own arc and links (``S_{t,t+1} = −diag(θ_own/M_ss) Θ_t``): ``S`` is
block tridiagonal, factorised by a block Cholesky in ``O(T n³)`` per Newton step.

The method returns the last iterate; :func:`foglearn.planning.sqrt.plan_sqrt` makes its flows
exactly feasible, evaluates the primal cost and certifies it with the Lagrangian bound
:func:`foglearn.planning.sqrt_kernels.dual_bound` at the sink prices ``π = −y_K``; iterations
continue until that certified gap is below the tolerance.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
from numba import njit
from scipy.linalg.blas import dsyrk
from scipy.linalg.lapack import dpotrf, dtrtrs

from foglearn.planning import sqrt_kernels as K

__all__ = ["Arcs", "build_arcs", "ipm"]

#: fraction-to-boundary factor
_TAU = 0.995


@dataclass
class Arcs:
    """The arcs of the square-root network as flat arrays (node ``k = t·n + i``)."""

    src: np.ndarray     # [A] source node
    sink: np.ndarray    # [A] sink node
    cost: np.ndarray    # [A] c_a
    ub: np.ndarray      # [A] capacity (inf where only the supply bounds it)
    slot: np.ndarray    # [A] slot of the source, -1 for the own arcs
    edge: np.ndarray    # [A] link index, -1 for the own arcs
    own: np.ndarray     # [A] bool: own arc
    n_own: int          # the own arcs come first


def build_arcs(net: K.Net) -> Arcs:
    """Own arcs of the sinks with an error term, then every valid link arc, ordered by slot."""
    T, n = net.T, net.n
    own = np.flatnonzero(net.err)
    t_idx = e_idx = np.zeros(0, np.int64)
    if net.src.size and T > 1:
        ok = net.usable[:-1] & (net.lcap[:-1] > 0)
        ok &= (net.D.reshape(T, n)[:-1, net.src] > 0) & net.err.reshape(T, n)[1:, net.dst]
        t_idx, e_idx = (v.astype(np.int64) for v in np.nonzero(ok))
    a_src = t_idx * n + net.src[e_idx]
    lcap = net.lcap[t_idx, e_idx] if e_idx.size else np.zeros(0)
    ub = np.where(lcap < net.D[a_src], lcap, np.inf)
    return Arcs(src=np.concatenate([own, a_src]), sink=np.concatenate([own, (t_idx + 1) * n + net.dst[e_idx]]),
                cost=np.concatenate([np.zeros(own.size), net.lcost[t_idx, e_idx] if e_idx.size else np.zeros(0)]),
                ub=np.concatenate([np.full(own.size, np.inf), ub]),
                slot=np.concatenate([np.full(own.size, -1, np.int64), t_idx]),
                edge=np.concatenate([np.full(own.size, -1, np.int64), e_idx]),
                own=np.concatenate([np.ones(own.size, bool), np.zeros(e_idx.size, bool)]), n_own=int(own.size))


class IPMState(NamedTuple):
    """Iterate of the interior-point method (arrays over arcs ``[A]`` and nodes ``[T·n]``)."""

    x: np.ndarray    # arc flows
    w: np.ndarray    # discarded points per source
    G: np.ndarray    # points processed per sink (1 where the sink has no error term)
    yS: np.ndarray   # source prices u
    yK: np.ndarray   # −π
    zl: np.ndarray   # duals of x ≥ 0
    zu: np.ndarray   # duals of x ≤ U
    zw: np.ndarray   # duals of w ≥ 0
    zC: np.ndarray   # duals of G ≤ C


class Problem(NamedTuple):
    """The arrays the kernels read (from :class:`Arcs` and :class:`~foglearn.planning.sqrt_kernels.Net`)."""

    a_s: np.ndarray
    a_k: np.ndarray
    cost: np.ndarray
    U: np.ndarray       # arc capacity, 0 where none
    hub: np.ndarray     # bool: the arc has a capacity
    D: np.ndarray
    hasD: np.ndarray
    err: np.ndarray
    capG: np.ndarray    # bool: the sink has an error term and a finite capacity
    C: np.ndarray
    c: np.ndarray
    f: np.ndarray


class Work(NamedTuple):
    """Per-step work arrays: ``Θ`` (inverse Hessian diagonal), the diagonals of the normal
    equations, the primal residuals and the reduced right-hand side pieces."""

    thx: np.ndarray
    thw: np.ndarray
    thG: np.ndarray
    Mss: np.ndarray
    Mkk: np.ndarray
    rpS: np.ndarray
    rpK: np.ndarray
    rx: np.ndarray
    rw: np.ndarray
    rG: np.ndarray
    bS: np.ndarray
    bK: np.ndarray
    rhs: np.ndarray


@njit(cache=True, nogil=True)
def _assemble(P, z, W):
    """``Θ``, the diagonals ``M_ss``, ``M_kk``, the primal residuals; returns ``Σ`` complementarity."""
    N, A = P.D.size, P.a_s.size
    comp = 0.0
    for k in range(N):
        W.Mss[k] = 0.0
        W.Mkk[k] = 0.0
        W.rpS[k] = z.w[k] - P.D[k] if P.hasD[k] else 0.0
        W.rpK[k] = -z.G[k] if P.err[k] else 0.0
    for a in range(A):
        s, k, xa = P.a_s[a], P.a_k[a], z.x[a]
        h = z.zl[a] / xa
        comp += xa * z.zl[a]
        if P.hub[a]:
            su = P.U[a] - xa
            h += z.zu[a] / su
            comp += su * z.zu[a]
        th = 1.0 / h
        W.thx[a] = th
        W.Mss[s] += th
        W.Mkk[k] += th
        W.rpS[s] += xa
        W.rpK[k] += xa
    for k in range(N):
        W.thw[k] = 0.0
        if P.hasD[k]:
            W.thw[k] = z.w[k] / z.zw[k]
            W.Mss[k] += W.thw[k]
            comp += z.w[k] * z.zw[k]
        if W.Mss[k] <= 0.0:
            W.Mss[k] = 1.0
        W.thG[k] = 0.0
        if P.err[k]:
            hG = 0.75 * P.f[k] / z.G[k] ** 2.5
            if P.capG[k]:
                sc = P.C[k] - z.G[k]
                hG += z.zC[k] / sc
                comp += sc * z.zC[k]
            W.thG[k] = 1.0 / hG
            W.Mkk[k] += W.thG[k]
        else:
            W.Mkk[k] = 1.0
    return comp


@njit(cache=True, nogil=True)
def _rhs(P, z, W, tg):
    """Right-hand side of the sink system ``S Δy_K = rhs`` for the complementarity targets ``tg``."""
    N, A = P.D.size, P.a_s.size
    for k in range(N):
        W.bS[k] = W.rpS[k]
        W.rhs[k] = W.rpK[k]
    for a in range(A):
        s, k = P.a_s[a], P.a_k[a]
        r = P.cost[a] + z.yS[s] + z.yK[k] - tg.lo[a] / z.x[a]
        if P.hub[a]:
            r += tg.up[a] / (P.U[a] - z.x[a])
        W.rx[a] = r
        W.bS[s] -= W.thx[a] * r
        W.rhs[k] -= W.thx[a] * r
    for k in range(N):
        W.rw[k] = 0.0
        if P.hasD[k]:
            W.rw[k] = z.yS[k] - tg.w[k] / z.w[k]
            W.bS[k] -= W.thw[k] * W.rw[k]
        else:
            W.bS[k] = 0.0
        W.rG[k] = 0.0
        if P.err[k]:
            r = P.c[k] - 0.5 * P.f[k] / z.G[k] ** 1.5 - z.yK[k]
            if P.capG[k]:
                r += tg.C[k] / (P.C[k] - z.G[k])
            W.rG[k] = r
            W.rhs[k] += W.thG[k] * r
        else:
            W.rhs[k] = 0.0
    W.bK[:] = W.rhs
    for a in range(A):            # eliminate the sources: rhs −= M_KS M_SS⁻¹ b_S
        s = P.a_s[a]
        W.rhs[P.a_k[a]] -= W.thx[a] * W.bS[s] / W.Mss[s]


@njit(cache=True, nogil=True)
def _refine_rhs(P, W, dyK, out):
    """Residual of the full normal equations ``B Θ Bᵀ Δy = b`` at ``Δy_K`` (with ``Δy_S`` from the
    source rows, which it then satisfies exactly): the sink rows' ``b_K − M_KS Δy_S − M_KK Δy_K``."""
    N, A = P.D.size, P.a_s.size
    dyS = np.empty(N)
    for k in range(N):
        dyS[k] = W.bS[k]
        out[k] = W.bK[k] - W.Mkk[k] * dyK[k] if P.err[k] else 0.0
    for a in range(A):
        dyS[P.a_s[a]] -= W.thx[a] * dyK[P.a_k[a]]
    for k in range(N):
        dyS[k] = dyS[k] / W.Mss[k] if P.hasD[k] else 0.0
    for a in range(A):
        out[P.a_k[a]] -= W.thx[a] * dyS[P.a_s[a]]


@njit(cache=True, nogil=True)
def _back(P, z, W, dyK, tg, out):
    """Recover the whole direction ``out`` from ``Δy_K``; returns the primal and dual step limits."""
    N, A = P.D.size, P.a_s.size
    dyS = out.yS
    for k in range(N):
        dyS[k] = W.bS[k]
        out.yK[k] = dyK[k] if P.err[k] else 0.0
    for a in range(A):
        dyS[P.a_s[a]] -= W.thx[a] * out.yK[P.a_k[a]]
    for k in range(N):
        dyS[k] = dyS[k] / W.Mss[k] if P.hasD[k] else 0.0
    ap, ad = np.inf, np.inf
    for a in range(A):
        s, k, xa = P.a_s[a], P.a_k[a], z.x[a]
        dx = -W.thx[a] * (W.rx[a] + dyS[s] + out.yK[k])
        out.x[a] = dx
        dzl = tg.lo[a] / xa - z.zl[a] - z.zl[a] / xa * dx
        out.zl[a] = dzl
        if dx < 0.0:
            ap = min(ap, -xa / dx)
        if dzl < 0.0:
            ad = min(ad, -z.zl[a] / dzl)
        out.zu[a] = 0.0
        if P.hub[a]:
            su = P.U[a] - xa
            dzu = tg.up[a] / su - z.zu[a] + z.zu[a] / su * dx
            out.zu[a] = dzu
            if dx > 0.0:
                ap = min(ap, su / dx)
            if dzu < 0.0:
                ad = min(ad, -z.zu[a] / dzu)
    for k in range(N):
        out.w[k] = 0.0
        out.zw[k] = 0.0
        if P.hasD[k]:
            dw = -W.thw[k] * (W.rw[k] + dyS[k])
            dzw = tg.w[k] / z.w[k] - z.zw[k] - z.zw[k] / z.w[k] * dw
            out.w[k] = dw
            out.zw[k] = dzw
            if dw < 0.0:
                ap = min(ap, -z.w[k] / dw)
            if dzw < 0.0:
                ad = min(ad, -z.zw[k] / dzw)
        out.G[k] = 0.0
        out.zC[k] = 0.0
        if P.err[k]:
            dG = -W.thG[k] * (W.rG[k] - out.yK[k])
            out.G[k] = dG
            if dG < 0.0:                       # the domain G > 0 of f/sqrt(G)
                ap = min(ap, -z.G[k] / dG)
            if P.capG[k]:
                sc = P.C[k] - z.G[k]
                dzC = tg.C[k] / sc - z.zC[k] + z.zC[k] / sc * dG
                out.zC[k] = dzC
                if dG > 0.0:
                    ap = min(ap, sc / dG)
                if dzC < 0.0:
                    ad = min(ad, -z.zC[k] / dzC)
    return ap, ad


class Targets(NamedTuple):
    """Targets of the complementarity products ``x zl``, ``(U − x) zu``, ``w zw``, ``(C − G) zC``."""

    lo: np.ndarray
    up: np.ndarray
    w: np.ndarray
    C: np.ndarray


@njit(cache=True, nogil=True)
def _mehrotra(P, d, sm, tg):
    """Mehrotra's targets ``σμ − Δv_aff Δz_aff`` (the second-order term of the affine step ``d``)."""
    for a in range(P.a_s.size):
        tg.lo[a] = sm - d.x[a] * d.zl[a]
        tg.up[a] = sm + d.x[a] * d.zu[a] if P.hub[a] else 0.0
    for k in range(P.D.size):
        tg.w[k] = sm - d.w[k] * d.zw[k] if P.hasD[k] else 0.0
        tg.C[k] = sm + d.G[k] * d.zC[k] if P.capG[k] else 0.0


@njit(cache=True, nogil=True)
def _complementarity_after(P, z, d, ap, ad):
    """``Σ`` complementarity products after a step ``(ap, ad)`` along ``d``."""
    N, A = P.D.size, P.a_s.size
    comp = 0.0
    for a in range(A):
        x = z.x[a] + ap * d.x[a]
        comp += x * (z.zl[a] + ad * d.zl[a])
        if P.hub[a]:
            comp += (P.U[a] - x) * (z.zu[a] + ad * d.zu[a])
    for k in range(N):
        if P.hasD[k]:
            comp += (z.w[k] + ap * d.w[k]) * (z.zw[k] + ad * d.zw[k])
        if P.capG[k]:
            comp += (P.C[k] - z.G[k] - ap * d.G[k]) * (z.zC[k] + ad * d.zC[k])
    return comp


@njit(cache=True, nogil=True)
def _step(P, z, d, ap, ad):
    """``z += (ap, ad) · d`` (primal variables by ``ap``, prices and bound duals by ``ad``)."""
    for a in range(P.a_s.size):
        z.x[a] += ap * d.x[a]
        z.zl[a] += ad * d.zl[a]
        z.zu[a] += ad * d.zu[a]
    for k in range(P.D.size):
        z.w[k] += ap * d.w[k]
        z.G[k] += ap * d.G[k]
        z.yS[k] += ad * d.yS[k]
        z.yK[k] += ad * d.yK[k]
        z.zw[k] += ad * d.zw[k]
        z.zC[k] += ad * d.zC[k]


@njit(cache=True, nogil=True)
def _schur_diagonal(thx, thw, thG, Mss, a_s, a_k, err):
    """Diagonal of the sink Schur complement ``M_KK − M_KS M_SS⁻¹ M_SK`` without cancellation.

    Sink ``k``'s entry is ``θ_G + Σ_{a into k} θ_a (M_ss − θ_a) / M_ss``; ``M_ss − θ_a`` is the sum
    of the source's other terms, formed directly for the source's largest term (where subtracting
    would cancel) and by subtraction for the others (where it cannot).
    """
    N, A = Mss.size, a_s.size
    big = np.full(N, -1)
    for a in range(A):
        s = a_s[a]
        if thx[a] > thw[s] and (big[s] < 0 or thx[a] > thx[big[s]]):
            big[s] = a
    rest = thw.copy()          # for the largest arc: the sum of the others
    for a in range(A):
        if big[a_s[a]] != a:
            rest[a_s[a]] += thx[a]
    dg = np.where(err, thG, 1.0)
    for a in range(A):
        s = a_s[a]
        r = rest[s] if big[s] == a else Mss[s] - thx[a]
        dg[a_k[a]] += thx[a] * r / Mss[s]
    return dg


@njit(cache=True, nogil=True)
def _link_blocks(T, n, l_slot, l_flat, thl, Th):
    """Dense ``Θ_t[i, j]`` of the links of slot ``t`` (source ``i`` → sink ``j`` of slot ``t+1``)."""
    Th[:] = 0.0
    for q in range(l_slot.size):
        t = l_slot[q]
        Th[t, l_flat[q] // n, l_flat[q] % n] += thl[q]


class _BlockTridiagonal:
    """The sink Schur complement ``S`` of the normal equations, factorised slot by slot."""

    def __init__(self, net: K.Net, arcs: Arcs):
        T, n = net.T, net.n
        self.T, self.n = T, n
        link = ~arcs.own
        self.l_slot = arcs.slot[link]
        self.l_flat = (arcs.src[link] % n) * n + arcs.sink[link] % n
        self.own_src = arcs.src[:arcs.n_own]
        self.n_own = arcs.n_own
        self.a_s, self.a_k, self.err = arcs.src, arcs.sink, net.err
        self.Th = np.zeros((max(T - 1, 1), n, n))
        self.L = np.empty((T, n, n))
        self.C = np.empty((T, n, n))   # C[t] = L_{t-1}⁻¹ S_{t-1,t}

    def factor(self, W: Work) -> None:
        """``S = L Lᵀ`` block by block: ``A_t − C_tᵀ C_t = L_t L_tᵀ``, ``C_t = L_{t−1}⁻¹ S_{t−1,t}``."""
        T, n, no = self.T, self.n, self.n_own
        Mss, th = W.Mss, W.thx
        rho = np.zeros(T * n)
        rho[self.own_src] = th[:no] / Mss[self.own_src]
        diag = _schur_diagonal(W.thx, W.thw, W.thG, W.Mss, self.a_s, self.a_k, self.err)
        if T > 1:
            _link_blocks(T, n, self.l_slot, self.l_flat, th[no:], self.Th)
        prev = np.empty((n, n))
        for t in range(T):
            dt = diag[t * n:(t + 1) * n]
            A = np.diag(dt)
            if t > 0:
                Th = self.Th[t - 1]
                # A −= Θᵀ M_ss⁻¹ Θ + C_tᵀ C_t (lower triangles, as dpotrf reads them); the diagonal
                # of the first term is already in ``diag``, computed without cancellation
                A = dsyrk(-1.0, Th / np.sqrt(Mss[(t - 1) * n:t * n, None]), 0.0, A, trans=1, lower=1)
                A[np.diag_indices(n)] = dt
                Ct = dtrtrs(prev, -(rho[(t - 1) * n:t * n, None] * Th), lower=1)[0]
                A = dsyrk(-1.0, Ct, 1.0, A, trans=1, lower=1, overwrite_c=1)
                self.C[t] = Ct
            prev = _cholesky(A)
            self.L[t] = prev

    def solve(self, b: np.ndarray) -> np.ndarray:
        T, n = self.T, self.n
        z = np.empty((T, n))
        bb = b.reshape(T, n)
        for t in range(T):
            r = bb[t] if t == 0 else bb[t] - self.C[t].T @ z[t - 1]
            z[t] = dtrtrs(self.L[t], r, lower=1)[0]
        y = np.empty((T, n))
        for t in range(T - 1, -1, -1):
            r = z[t] if t == T - 1 else z[t] - self.C[t + 1] @ y[t + 1]
            y[t] = dtrtrs(self.L[t], r, lower=1, trans=1)[0]
        return y.ravel()


def _solve_refined(solver: _BlockTridiagonal, P: Problem, W: Work) -> np.ndarray:
    """``Δy_K`` from the factorised Schur complement, with two steps of iterative refinement on the
    full normal equations (the factorisation of an ill-conditioned step is inexact; without
    refinement the primal residual ``B Δv + r_p`` grows instead of shrinking)."""
    dyK = solver.solve(W.rhs)
    res = np.empty_like(dyK)
    for _ in range(2):
        _refine_rhs(P, W, dyK, res)
        dyK += solver.solve(res)
    return dyK


def _new_state(A: int, N: int) -> IPMState:
    return IPMState(np.zeros(A), np.zeros(N), np.zeros(N), np.zeros(N), np.zeros(N), np.zeros(A), np.zeros(A),
                    np.zeros(N), np.zeros(N))


def start(net: K.Net, arcs: Arcs, x0: np.ndarray) -> tuple[Problem, IPMState]:
    """The kernels' data and a strictly interior starting point near the flows ``x0``.

    ``x0`` (the decoupled start, which may over-subscribe sources) is scaled so that every source
    keeps a fifth of its data unsent, and blended with an even split of every source's data over
    its arcs; ``G`` is the resulting inflow, kept inside its capacity; prices are the sinks'
    marginal values ``f/(2 G^{3/2}) − c`` and every bound dual starts at one price scale.
    """
    N = net.T * net.n
    D, c, f, C, err = net.D, net.c, net.f, net.cap, net.err
    hasD = D > 0
    capG = err & np.isfinite(C)
    a_s, a_k = arcs.src, arcs.sink
    hub = np.isfinite(arcs.ub)
    U = np.where(hub, arcs.ub, 0.0)
    P = Problem(a_s, a_k, arcs.cost, U, hub, D, hasD, err, capG, C, c, f)
    deg = np.bincount(a_s, minlength=N)
    even = D[a_s] / (deg[a_s] + 2.0)
    even = np.where(hub, np.minimum(even, 0.5 * U), even)
    d0 = np.bincount(a_s, weights=x0, minlength=N)
    fac = np.where(d0 > 0.8 * D, 0.8 * D / np.where(d0 > 0, d0, 1.0), 1.0)
    z = _new_state(a_s.size, N)
    z.x[:] = 0.9 * x0 * fac[a_s] + 0.1 * even
    z.w[:] = np.where(hasD, D - np.bincount(a_s, weights=z.x, minlength=N), 0.0)
    G = np.where(err, np.bincount(a_k, weights=z.x, minlength=N), 1.0)
    z.G[:] = np.where(capG, np.minimum(G, 0.5 * np.where(capG, C, 1.0)), G)
    pi = np.where(err, f / (2 * z.G ** 1.5) - c, 0.0)
    scale = max(float(np.abs(arcs.cost).mean()) if a_s.size else 0.0,
                float(np.abs(pi[err]).mean()) if err.any() else 0.0, 1e-12)
    z.yK[:] = -pi
    z.yS[:] = np.where(hasD, scale, 0.0)
    z.zl[:] = scale
    z.zu[:] = np.where(hub, scale, 0.0)
    z.zw[:] = np.where(hasD, scale, 0.0)
    z.zC[:] = np.where(capG, scale, 0.0)
    return P, z


def _prices(P: Problem, z: IPMState) -> np.ndarray:
    """Two sets of sink prices ``π`` ``[2, T·n]`` for the certificate: the iterate's ``−y_K``, and the
    ones consistent with its loads, ``v(G) − z_C = f/(2 G^{3/2}) − c − z_C`` (they differ by the
    residual of the sinks' optimality condition, which the nonlinear ``h'`` leaves behind)."""
    G = np.where(P.err, z.G, 1.0)
    return np.stack([np.where(P.err, -z.yK, 0.0), np.where(P.err, P.f / (2.0 * G ** 1.5) - P.c - z.zC, 0.0)])


def ipm(net: K.Net, arcs: Arcs, x0: np.ndarray, certified: Callable[[np.ndarray, np.ndarray], bool],
        gap_to_check: float, max_steps: int, equal_steps: bool, stop: np.ndarray
        ) -> tuple[str, np.ndarray, np.ndarray, int]:
    """Mehrotra predictor-corrector from :func:`start`, until ``certified(x, prices)`` (:func:`_prices`).

    ``certified`` (the caller's exact certificate) is asked after every step whose complementarity
    ``Σ x z`` is below ``gap_to_check``. ``equal_steps``: one step length for primal and dual
    variables (the sinks' condition ``h'(G) = −y_K − z_C`` couples the two); otherwise separate
    lengths, as is usual for linear programs. ``stop[0]`` is read between two steps (Ctrl-C).
    Returns ``(status, x, prices, steps)``, status ``"certified"``, ``"step limit"``, ``"interrupted"`` or
    ``"stalled"`` (the Newton system became singular in floating point, or the steps vanished).
    """
    single_threaded_blas()
    P, z = start(net, arcs, x0)
    A, N = arcs.src.size, net.T * net.n
    W = Work(np.empty(A), np.empty(N), np.empty(N), np.empty(N), np.empty(N), np.empty(N), np.empty(N),
             np.empty(A), np.empty(N), np.empty(N), np.empty(N), np.empty(N), np.empty(N))
    m = A + int(P.hub.sum()) + int(P.hasD.sum()) + int(P.capG.sum())
    solver = _BlockTridiagonal(net, arcs)
    aff, cor = _new_state(A, N), _new_state(A, N)
    zero = Targets(np.zeros(A), np.zeros(A), np.zeros(N), np.zeros(N))
    tg = Targets(np.empty(A), np.empty(A), np.empty(N), np.empty(N))
    comp0 = np.inf
    for step in range(1, max_steps + 1):
        if stop[0]:
            return "interrupted", z.x, _prices(P, z), step - 1
        try:
            comp = _assemble(P, z, W)
        except ZeroDivisionError:      # a variable or its dual reached 0 in floating point
            return "stalled", z.x, _prices(P, z), step - 1
        comp0 = comp if step == 1 else comp0
        mu = comp / m
        try:
            solver.factor(W)
            _rhs(P, z, W, zero)
            ap, ad = _back(P, z, W, _solve_refined(solver, P, W), zero, aff)
            ap, ad = min(1.0, ap), min(1.0, ad)
            sigma = min(1.0, (_complementarity_after(P, z, aff, ap, ad) / comp) ** 3)
            _mehrotra(P, aff, sigma * mu, tg)
            _rhs(P, z, W, tg)
            ap, ad = _back(P, z, W, _solve_refined(solver, P, W), tg, cor)
            ap, ad = min(1.0, _TAU * ap), min(1.0, _TAU * ad)
            if equal_steps:
                ap = ad = min(ap, ad)
        except (np.linalg.LinAlgError, ZeroDivisionError):   # singular in floating point
            return "stalled", z.x, _prices(P, z), step - 1
        if max(ap, ad) < 1e-12 or not comp > 1e-14 * comp0:
            return "stalled", z.x, _prices(P, z), step - 1
        _step(P, z, cor, ap, ad)
        if comp <= gap_to_check and certified(z.x, _prices(P, z)):
            return "certified", z.x, _prices(P, z), step
    return "step limit", z.x, _prices(P, z), max_steps


def _openblas_libraries() -> list[ctypes.CDLL]:
    """The OpenBLAS libraries bundled with numpy and scipy (none when they use another BLAS)."""
    import numpy
    import scipy

    libs = []
    for pkg in (numpy, scipy):
        folder = Path(str(pkg.__file__)).resolve().parent.parent / f"{pkg.__name__}.libs"
        for path in sorted(folder.glob("*openblas*.so*")):
            try:
                lib = ctypes.CDLL(str(path))
                libs.append(lib) if hasattr(lib, "openblas_set_num_threads_local") else None
            except OSError:
                continue
    return libs


def single_threaded_blas() -> None:
    """Make this thread's BLAS calls single-threaded (``openblas_set_num_threads_local``).

    The blocks are ``n×n`` with ``n`` in the hundreds: a multi-threaded OpenBLAS gains little on
    them and, on a loaded machine, its threads' waiting makes each call cost tens of
    milliseconds. Only the calling thread (the planner's worker thread) is affected.
    """
    for lib in _openblas_libraries():
        lib.openblas_set_num_threads_local(ctypes.c_int(1))


def _cholesky(A: np.ndarray) -> np.ndarray:
    """Lower Cholesky factor of ``A`` (its lower triangle is read).

    Round-off in a nearly singular Schur complement (cancellation in its diagonal) is met by the
    smallest diagonal shift that makes it positive definite: first ``ε |A_ii|`` relative to each
    row's own diagonal (``ε = 10⁻¹⁴ … 10⁻⁸``, rows many decades apart are shifted alike), then
    ``ε max |A_ii|`` (``10⁻¹³ … 10⁻⁷``). The direction is then slightly inexact; the certificate,
    not the direction, decides optimality.
    """
    L, info = dpotrf(A, lower=1, clean=1)
    if info == 0:
        return L
    d = np.abs(np.diag(A))
    top = float(d.max())
    for shift in [eps * d for eps in (1e-14, 1e-12, 1e-10, 1e-8)] + [eps * top for eps in (1e-13, 1e-11, 1e-9, 1e-7)]:
        B = A.copy()
        B[np.diag_indices_from(B)] += shift
        L, info = dpotrf(B, lower=1, clean=1)
        if info == 0:
            return L
    raise np.linalg.LinAlgError("Schur complement of the Newton system is not positive definite")
