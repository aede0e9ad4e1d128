"""Numba kernels for the memory-bound glue around the CNN's GEMMs (:class:`~foglearn.learning.kernels.BatchedCNN`).

The convolutions themselves are GEMMs (MKL through :func:`torch.bmm`); everything between
them — building the row patches, 2×2 max pooling fused with ReLU, routing the gradient back
through pooling, and the col2im of the second convolution fused with the first pooling's
backward — is one compiled pass each, with no temporaries; so are the banded matrices' build and
adjoint and the cross-entropy with its gradient (used by the MLP too). Every kernel releases the
GIL (``nogil``) so chunks can run on several threads, and none allocates per sample.

Layouts (``S`` samples, all float32 C-contiguous):

* A conv layer with ``P`` pooled rows, blocks of ``PB`` pooling windows (``B`` blocks) and ``O``
  output channels has its GEMM output ``z[S·P·B·2, 2·O·PB]``: row ``((s·P + pr)·B + h)·2 + dr``
  is output row ``2·pr + dr`` of block ``h``; column ``(dc·PB + pc)·O + o`` is channel ``o`` at
  output column ``2·(h·PB + pc) + dc``. A 2×2 pooling window is two adjacent rows × the columns
  ``j`` and ``O·PB + j``; its pooled value ``j = pc·O + o`` is (column, channel) ordered, as conv2's
  patches want it, so pooling and its backward read and write contiguous runs.
* Pooled values of conv1 are ``h1[S, 12, 12, 6]`` (row, column, channel: conv2's patch of one
  input row is then one contiguous run); those of conv2 are ``f[S, 16, 4, 4]`` (the module's
  flatten order). Beside each pooled value a ``uint8`` code: the position ``2·dr + dc`` of the
  window's **first** maximum in row-major order (where :func:`torch.nn.functional.max_pool2d`
  routes the gradient), or :data:`DEAD` when the maximum is ≤ 0 (ReLU's gradient is 0 there;
  ``relu(pool(z)) = pool(relu(z))`` with the same gradient).
"""

from __future__ import annotations

import numpy as np
from numba import njit

#: Pooling code of a window whose maximum is ≤ 0: ReLU passes no gradient.
DEAD = 4
#: Pooling windows per column block of conv1 (12 % PB1 == 0) and conv2 (4 % PB2 == 0). Narrow
#: blocks waste fewer multiplies on the band's zeros, wide ones make larger GEMMs; measured here
#: (1 thread, 64–128 samples per call) the GEMM time per sample is least at PB1 = 4
#: (4.5 µs vs 9.4 µs at 12) and PB2 = 1 (5.9 µs vs 11.3 µs at 4). They are compile-time
#: constants so the inner loops unroll and vectorise (the patch copy ran 5× faster than with
#: run-time bounds).
PB1 = 4
PB2 = 1
B1 = 12 // PB1
B2 = 4 // PB2
#: Input columns read by one block, and the patch length (without the bias column).
W1 = 2 * PB1 + 4
W2 = 2 * PB2 + 4
K1 = 5 * W1
K2 = 30 * W2
#: GEMM output columns (dc, pc, o) of each conv.
N1 = 12 * PB1
N2 = 32 * PB2


@njit(cache=True, nogil=True)
def cross_entropy(z, y, weight, loss, dz):  # pragma: no cover - numba
    """Per-sample cross-entropy of logits ``z[M, C]`` (eq. 2) into ``loss[M]`` and the gradient of
    ``Σ weight·loss`` into ``dz[M, C]`` (``weight · (softmax − onehot(y))``), max-shifted, float32.
    (``torch.log_softmax`` + ``exp`` cost ~40 µs each on a 256×10 batch here; this is one pass.)
    A label outside ``[0, C)`` raises ``IndexError`` before its row is touched (it would index
    outside ``z`` and ``dz``)."""
    M, C = z.shape
    for m in range(M):
        if y[m] < 0 or y[m] >= C:
            raise IndexError("cross_entropy: a label is outside the classes [0, C)")
        zm = z[m]
        mx = zm[0]
        for c in range(1, C):
            mx = max(mx, zm[c])
        tot = np.float32(0.0)
        for c in range(C):
            e = np.exp(zm[c] - mx)
            dz[m, c] = e
            tot += e
        lse = mx + np.log(tot)
        loss[m] = lse - zm[y[m]]
        wm = weight[m] / tot
        for c in range(C):
            dz[m, c] *= wm
        dz[m, y[m]] -= weight[m]


#: Patch runs are copied 12 floats at a time (:func:`_copy12`).
assert W1 % 12 == 0 and (6 * W2) % 12 == 0


@njit(cache=True, nogil=True, inline="always")
def _copy12(src, i, dst, j):  # pragma: no cover - numba
    """``dst[j:j + 12] = src[i:i + 12]``: all loads, then all stores. LLVM cannot prove that the two
    arrays do not overlap, so an element-by-element loop stays scalar; loads grouped ahead of the
    stores become vector moves (patch building 1.4 → 0.9 µs per sample here)."""
    a0, a1, a2, a3 = src[i], src[i + 1], src[i + 2], src[i + 3]
    a4, a5, a6, a7 = src[i + 4], src[i + 5], src[i + 6], src[i + 7]
    a8, a9, a10, a11 = src[i + 8], src[i + 9], src[i + 10], src[i + 11]
    dst[j], dst[j + 1], dst[j + 2], dst[j + 3] = a0, a1, a2, a3
    dst[j + 4], dst[j + 5], dst[j + 6], dst[j + 7] = a4, a5, a6, a7
    dst[j + 8], dst[j + 9], dst[j + 10], dst[j + 11] = a8, a9, a10, a11


@njit(cache=True, nogil=True, inline="always")
def _patch_rows(img, s, P, B, step, run, K, out):  # pragma: no cover - numba
    """Row patches of one sample's image ``img[rows, ·]`` (rows flattened): GEMM row
    ``((s·P + pr)·B + h)·2 + dr`` gets, for ``ki`` = 0…4, the ``run`` values of image row
    ``2pr + dr + ki`` from column ``step·h`` on, at ``ki·run``; then a 1 (the bias) at ``K``.
    Inlined into its callers with constant arguments, so the loops unroll."""
    for pr in range(P):
        for h in range(B):
            c0 = step * h
            for dr in range(2):
                o = out[((s * P + pr) * B + h) * 2 + dr]
                r = 2 * pr + dr
                for ki in range(5):
                    src = img[r + ki]
                    for q in range(0, run, 12):
                        _copy12(src, c0 + q, o, ki * run + q)
                o[K] = 1.0


@njit(cache=True, nogil=True)
def conv1_rows(x, idx, out):  # pragma: no cover - numba
    """Row patches of the first convolution for samples ``x[idx[s]]`` (``x[N, 28, 28]``, so the
    batch is never gathered separately) → ``out[S·24·B1, K1 + 1]``.

    Row ``((s·12 + pr)·B1 + h)·2 + dr`` holds ``x[idx[s], 2pr + dr + ki, 2·PB1·h + c]`` at column
    ``ki·W1 + c`` and a 1 (the bias) in the last column. An index outside ``x`` raises
    ``IndexError`` (before that sample is read).
    """
    for s in range(idx.size):
        if idx[s] < 0 or idx[s] >= x.shape[0]:
            raise IndexError("conv1_rows: a sample index is outside x")
        _patch_rows(x[idx[s]], s, 12, B1, 2 * PB1, W1, K1, out)


@njit(cache=True, nogil=True)
def conv2_rows(h1, out):  # pragma: no cover - numba
    """Row patches of the second convolution: ``h1[S, 12, 72]`` (row, (column, channel)) →
    ``out[S·8·B2, K2 + 1]``; row ``((s·4 + pr)·B2 + h)·2 + dr`` holds
    ``h1[s, 2pr + dr + ki, (2·PB2·h + c)·6 + cin]`` at column ``(ki·W2 + c)·6 + cin``, then a 1:
    five contiguous runs of ``6·W2`` floats."""
    for s in range(h1.shape[0]):
        _patch_rows(h1[s], s, 4, B2, 12 * PB2, 6 * W2, K2, out)


@njit(cache=True, nogil=True, inline="always")
def _pool_row(z, row, C, vals, codes):  # pragma: no cover - numba
    """Pool the ``C`` windows of GEMM rows ``row``, ``row + 1`` (columns ``j`` and ``C + j``) into
    ``vals[j]`` (ReLU'd maximum) and ``codes[j]`` (first maximum in row-major order, or DEAD).
    Branch-free, so it vectorises (2× faster than comparisons with branches here)."""
    top = z[row]
    bottom = z[row + 1]
    for j in range(C):
        a = top[j]
        b = top[C + j]
        c = bottom[j]
        d = bottom[C + j]
        m01 = max(a, b)
        k01 = np.uint8(1) if b > a else np.uint8(0)
        m23 = max(c, d)
        k23 = np.uint8(3) if d > c else np.uint8(2)
        lower = m23 > m01
        m = m23 if lower else m01
        k = k23 if lower else k01
        vals[j] = m if m > 0.0 else np.float32(0.0)
        codes[j] = k if m > 0.0 else np.uint8(DEAD)


@njit(cache=True, nogil=True)
def pool1(z1, h1, code1):  # pragma: no cover - numba
    """Pool + ReLU of conv1: ``z1[S·24·B1, N1]`` → ``h1`` and ``code1`` (flat ``[S, 12, 12, 6]``:
    row, column, channel — the layout :func:`conv2_rows` reads)."""
    S = z1.shape[0] // (24 * B1)
    C = 6 * PB1
    for s in range(S):
        for pr in range(12):
            for h in range(B1):  # window j = pc·6 + o → column h·PB1 + pc, channel o: h1's own order
                base = s * 864 + pr * 72 + h * C
                _pool_row(z1, ((s * 12 + pr) * B1 + h) * 2, C, h1[base:base + C], code1[base:base + C])


@njit(cache=True, nogil=True)
def pool2(z2, f, code2):  # pragma: no cover - numba
    """Pool + ReLU of conv2: ``z2[S·8·B2, N2]`` → ``f`` and ``code2`` (flat ``[S, 16, 4, 4]``:
    channel, row, column — the module's flatten order)."""
    S = z2.shape[0] // (8 * B2)
    C = 16 * PB2
    vals = np.empty(C, dtype=np.float32)
    codes = np.empty(C, dtype=np.uint8)
    for s in range(S):
        for pr in range(4):
            for h in range(B2):
                _pool_row(z2, ((s * 4 + pr) * B2 + h) * 2, C, vals, codes)
                base = s * 256 + pr * 4 + h * PB2
                for j in range(C):  # j = pc·16 + o → channel o, column h·PB2 + pc
                    i = base + (j % 16) * 16 + j // 16
                    f[i] = vals[j]
                    code2[i] = codes[j]


@njit(cache=True, nogil=True, inline="always")
def _unpool_window(dz, row, ca, cb, g, k):  # pragma: no cover - numba
    """Write one window's four gradients: ``g`` at position ``k``, 0 elsewhere."""
    dz[row, ca] = g if k == 0 else np.float32(0.0)
    dz[row, cb] = g if k == 1 else np.float32(0.0)
    dz[row + 1, ca] = g if k == 2 else np.float32(0.0)
    dz[row + 1, cb] = g if k == 3 else np.float32(0.0)


@njit(cache=True, nogil=True)
def unpool2(df, code2, dz2):  # pragma: no cover - numba
    """Backward of :func:`pool2`: ``df`` (flat ``[S, 256]``) → ``dz2[S·8·B2, N2]`` (every entry written)."""
    S = dz2.shape[0] // (8 * B2)
    for s in range(S):
        for pr in range(4):
            for h in range(B2):
                row = ((s * 4 + pr) * B2 + h) * 2
                for pc in range(PB2):
                    for o in range(16):
                        i = s * 256 + o * 16 + pr * 4 + h * PB2 + pc
                        _unpool_window(dz2, row, pc * 16 + o, (PB2 + pc) * 16 + o, df[i], code2[i])


@njit(cache=True, nogil=True, inline="always")
def _add(dst, src, n):  # pragma: no cover - numba
    """``dst[:n] += src[:n]``. ``n`` must stay a run-time value: LLVM then vectorises the loop with
    a run-time overlap check, while a constant trip count is unrolled to scalar adds (it cannot
    prove that the two views do not overlap)."""
    for i in range(n):
        dst[i] += src[i]


@njit(cache=True, nogil=True)
def col2im_unpool1(drows2, code1, dz1, run):  # pragma: no cover - numba
    """The gradient of conv1's output from that of conv2's row patches, in one pass.

    ``drows2[S·8·B2, K2]`` (:func:`conv2_rows`'s layout without the bias column) is added back
    where each patch entry was read (col2im) into ``dh1[12, 72]`` per sample, which then goes
    back through pool + ReLU of conv1 (``code1``, flat ``[S, 12, 12, 6]``) into ``dz1[S·24·B1, N1]``.
    ``run`` is ``6·W2``, the length of one patch run (see :func:`_add`).
    """
    S = code1.shape[0] // 864
    acc2 = np.empty((12, 72), dtype=np.float32)
    acc = acc2.reshape(864)
    for s in range(S):
        acc[:] = 0.0
        for pr in range(4):
            for h in range(B2):
                c0 = 12 * PB2 * h
                for dr in range(2):
                    d = drows2[((s * 4 + pr) * B2 + h) * 2 + dr]
                    r = 2 * pr + dr
                    for ki in range(5):
                        _add(acc[(r + ki) * 72 + c0:], d[ki * run:], run)
        C = 6 * PB1
        for pr in range(12):
            for h in range(B1):  # window j = pc·6 + o, as in pool1
                row = ((s * 12 + pr) * B1 + h) * 2
                base = pr * 72 + h * C
                for j in range(C):
                    _unpool_window(dz1, row, j, C + j, acc[base + j], code1[s * 864 + base + j])


@njit(cache=True, nogil=True)
def toeplitz(W, bias, pos, src, cols, T):  # pragma: no cover - numba
    """Banded conv matrices ``T[g, (rows + 1)·cols]`` (flat; zeroed here) from kernels ``W[g, ·]``
    and biases ``bias[g, O]``: tap ``src[k]`` of device ``d``'s kernel goes to position ``pos[k]``;
    the last ``cols`` entries are the bias row (column ``(dc, pc, o)`` holds ``bias[d, o]``)."""
    g, n = T.shape
    n_out = bias.shape[1]
    for d in range(g):
        Td = T[d]
        for i in range(n - cols):
            Td[i] = 0.0
        for k in range(pos.size):
            Td[pos[k]] = W[d, src[k]]
        for c in range(cols):
            Td[n - cols + c] = bias[d, c % n_out]


@njit(cache=True, nogil=True)
def toeplitz_grad(gT, pos, src, cols, out, out_bias):  # pragma: no cover - numba
    """Adjoint of :func:`toeplitz`: ``out[d, src[k]] = Σ gT[d, pos[k]]`` and ``out_bias[d, o]`` the
    sum of the bias row's columns of channel ``o`` (``gT`` flat ``[g, (rows + 1)·cols]``; both
    outputs zeroed here)."""
    g, n = gT.shape
    n_out = out_bias.shape[1]
    for d in range(g):
        o = out[d]
        o[:] = 0.0
        ob = out_bias[d]
        ob[:] = 0.0
        G = gT[d]
        for k in range(pos.size):
            o[src[k]] += G[pos[k]]
        for c in range(cols):
            ob[c % n_out] += G[n - cols + c]
