"""The paper CNN's whole forward + backward pass as **one compiled call**
(:class:`~foglearn.learning.kernels.BatchedCNN`).

The layer-by-layer kernel (``BatchedCNN`` with ``fused=False``) issues ~40 PyTorch ops and ~10
numba calls per batch; their fixed cost (≈ 1 ms per call here, measured) is as large as the
arithmetic of 40–60 samples. This module runs the same computation — the same row-Toeplitz
GEMMs and the same compiled glue passes of :mod:`foglearn.learning.conv_kernels` — inside a single
numba function that releases the GIL and calls the BLAS ``sgemm`` that PyTorch itself uses (MKL on
x86 builds: the Fortran symbol ``sgemm_`` exported by ``libtorch_cpu``) directly. Samples go
through in blocks of :data:`BLOCK`, so the scratch of one block (≈ 66 kB per sample) stays in cache,
and the weight gradients accumulate across blocks in the GEMMs (``beta = 1``).

Per device ``d`` of a call, with parameters ``p = params[rows[d]]`` (``named_parameters`` order):

1. the banded matrices ``T1 [K1 + 1, N1]``, ``T2 [K2 + 1, N2]`` of the two 5×5 convolutions
   (taps from :func:`~foglearn.learning.kernels._toeplitz_index`, last row the bias);
2. per block of samples with non-zero loss weight (padding is skipped: it contributes nothing):
   conv1 = patches @ T1 → pool + ReLU → conv2 = patches @ T2 → pool + ReLU → fc 256-120-84-10 with
   ReLU → cross-entropy (eq. 2); then the backward pass, accumulating ``∇_p Σ weight·l``;
3. the taps' gradients summed out of the banded matrices' gradients (adjoint of step 1); then
   either the gradient is returned or the SGD step of eq. (3) is taken in place.

:func:`forward` runs step 2's forward half alone (test-set evaluation).

Containment
-----------
Nothing happens at import: no library is opened and nothing is compiled. The first call of a
public kernel (or of :func:`availability`) looks ``sgemm_`` up in PyTorch's already loaded
``libtorch_cpu`` through a ``RTLD_LOCAL`` handle and gives its address to LLVM's JIT symbol table
alone (``llvmlite.binding.add_symbol``): no symbol of that library is promoted into the process's
global namespace. Then numba compiles (or loads from its cache) the kernels. The public kernels
:func:`forward` and :func:`loss_and_grad` raise :class:`FusedUnavailableError` where there is no
``sgemm_`` (e.g. a PyTorch built on another BLAS), and check every argument's dtype, shape, layout
and every index and label they read through (:class:`~foglearn.errors.InputError`) before the
compiled code runs, so a bad argument is an exception, never a read or write outside an array.

:func:`enabled` says whether ``BatchedCNN`` takes this path by default: where ``sgemm_`` is
available, unless the environment variable ``FOGLEARN_FUSED=0`` forces the layer-by-layer path
(which computes the same numbers).
"""

from __future__ import annotations

import ctypes
import glob
import os
import threading
from dataclasses import dataclass

import numpy as np
from numba import njit, types

from foglearn.errors import FoglearnError, InputError
from foglearn.learning import conv_kernels as ck

#: Samples per block inside a call (the scratch of a block is ≈ BLOCK · 66 kB).
BLOCK = 32

# Offsets of the CNN's parameters in the flat vector (named_parameters order; BatchedCNN checks it).
O_W1, O_B1, O_W2, O_B2 = 0, 150, 156, 2556
O_W3, O_B3, O_W4, O_B4, O_W5, O_B5 = 2572, 33292, 33412, 43492, 43576, 44416
N_PARAMS = 44426
#: Classes of the CNN's output (labels are ``0 … N_CLASSES - 1``).
N_CLASSES = 10
#: GEMM rows per sample of conv1 (24 output rows × B1 blocks) and conv2 (8 × B2).
R1 = 24 * ck.B1
R2 = 8 * ck.B2

#: Float32 scratch layout: (name, elements); the first 14 scale with BLOCK (≈ 66 kB per sample),
#: then the banded matrices, their gradients and gemm's (alpha, beta). The backward pass reuses
#: dead forward buffers: ``z1`` holds dz1, ``rows2`` d rows2 and ``z2`` dz2.
_LAYOUT = (("rows1", BLOCK * R1 * (ck.K1 + 1)), ("z1", BLOCK * R1 * ck.N1), ("h1", BLOCK * 864),
           ("rows2", BLOCK * R2 * (ck.K2 + 1)), ("z2", BLOCK * R2 * ck.N2), ("f", BLOCK * 256),
           ("h3", BLOCK * 120), ("h4", BLOCK * 84), ("z5", BLOCK * 10), ("d5", BLOCK * 10), ("dh4", BLOCK * 84),
           ("dh3", BLOCK * 120), ("df", BLOCK * 256), ("bl", BLOCK), ("T1", (ck.K1 + 1) * ck.N1),
           ("gT1", (ck.K1 + 1) * ck.N1), ("T2", (ck.K2 + 1) * ck.N2), ("gT2", (ck.K2 + 1) * ck.N2), ("ab", 2))
_OFF = np.cumsum([0] + [n for _, n in _LAYOUT])
(_rows1, _z1, _h1, _rows2, _z2, _f, _h3, _h4, _z5, _d5, _dh4, _dh3, _df, _bl, _T1, _gT1, _T2, _gT2,
 _ab, SCRATCH_FLOATS) = (int(v) for v in _OFF)
#: uint8 scratch (the pooling codes) and int64 scratch (sample indices and labels of a block).
SCRATCH_CODES = BLOCK * (864 + 256)
SCRATCH_INTS = 2 * BLOCK + 8

#: The BLAS routine the kernels call, and the environment variable that can switch the path off.
SYMBOL = "sgemm_"
ENV = "FOGLEARN_FUSED"


class FusedUnavailableError(FoglearnError, RuntimeError):
    """The fused kernel cannot run in this process (no ``sgemm_`` to call); the message says why."""


@dataclass(frozen=True)
class Availability:
    """Whether the fused path can (for :func:`enabled`: will) run, and why; truthy when ``ok``."""

    ok: bool
    reason: str

    def __bool__(self) -> bool:
        return self.ok


_probe_lock = threading.Lock()
_probed: Availability | None = None
_handles: list[ctypes.CDLL] = []  # keeps the RTLD_LOCAL handle (and so the bound address) alive


def _torch_libraries() -> list[str]:
    """Candidate libraries that export PyTorch's BLAS: ``libtorch_cpu`` beside the torch package."""
    import torch  # the kernels' callers have imported it already

    return sorted(glob.glob(os.path.join(os.path.dirname(torch.__file__), "lib", "libtorch_cpu.*")))


def _probe() -> Availability:
    """Find ``sgemm_`` in PyTorch's library (``RTLD_LOCAL``) and add its address to LLVM's symbol
    table, so numba's JIT links the kernels against it; nothing enters the global namespace."""
    paths = _torch_libraries()
    for path in paths:
        try:
            lib = ctypes.CDLL(path, mode=os.RTLD_LOCAL)
            addr = ctypes.cast(getattr(lib, SYMBOL), ctypes.c_void_p).value
        except (OSError, AttributeError):
            continue
        if addr:
            import llvmlite.binding as llvm

            _handles.append(lib)
            llvm.add_symbol(SYMBOL, addr)
            return Availability(True, f"{SYMBOL} from {path}")
    where = ", ".join(os.path.basename(p) for p in paths) or "no libtorch_cpu beside PyTorch"
    return Availability(False, f"PyTorch's library exports no {SYMBOL} ({where}); e.g. a build "
                               "on another BLAS")


def availability() -> Availability:
    """Whether the fused kernels can run here (``sgemm_`` found and bound), with the reason.

    Probes once per process, on first use (never at import)."""
    global _probed
    if _probed is None:
        with _probe_lock:
            if _probed is None:
                _probed = _probe()
    return _probed


def enabled() -> Availability:
    """Whether :class:`~foglearn.learning.kernels.BatchedCNN` takes the fused path by default: where
    :func:`availability` holds, unless ``FOGLEARN_FUSED=0`` forces the layer-by-layer path
    (``FOGLEARN_FUSED`` unset, empty or ``1``: use it where available)."""
    value = os.environ.get(ENV, "").strip()
    if value == "0":
        return Availability(False, f"{ENV}=0 forces the layer-by-layer path")
    if value not in ("", "1"):
        raise InputError(f"{ENV} = {value!r}: must be 0 (layer-by-layer path) or 1 (fused where "
                         "available)")
    return availability()


def require() -> None:
    """Raise :class:`FusedUnavailableError` unless :func:`availability` holds."""
    state = availability()
    if not state.ok:
        raise FusedUnavailableError(f"the fused CNN kernel cannot run: {state.reason}")


_sgemm = types.ExternalFunction(SYMBOL, types.void(*([types.intp] * 13)))


@njit(cache=True, nogil=True)
def _gemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, ints, floats):  # pragma: no cover - numba
    """Row-major ``C[M, N] = alpha · op(A) @ op(B) + beta · C`` (``op`` transposes when ``ta``/``tb``);
    ``A``, ``B``, ``C`` are addresses, ``ld*`` their row strides. Fortran ``sgemm`` is column-major,
    so it computes ``Cᵀ = op(B)ᵀ op(A)ᵀ``. The integers are passed by reference from int64 slots,
    read correctly by LP64 (low 32 bits, little-endian) and ILP64 builds alike."""
    ints[0] = N
    ints[1] = M
    ints[2] = K
    ints[3] = ldb
    ints[4] = lda
    ints[5] = ldc
    ints[6] = 84 if tb else 78  # 'T' / 'N'
    ints[7] = 84 if ta else 78
    floats[0] = alpha
    floats[1] = beta
    i = ints.ctypes.data
    f = floats.ctypes.data
    _sgemm(i + 48, i + 56, i, i + 8, i + 16, f, B, i + 24, A, i + 32, f + 4, C, i + 40)


@njit(cache=True, nogil=True, inline="always")
def _fc_forward(inp, n_in, W, b, out, n_out, m, relu, ints, floats):  # pragma: no cover - numba
    """``out[m, n_out] = inp[m, n_in] @ Wᵀ + b`` (``W`` an address of ``[n_out, n_in]``), ReLU'd if asked."""
    for j in range(m):
        out[j] = b
    _gemm(False, True, m, n_out, n_in, np.float32(1.0), inp.ctypes.data, n_in, W, n_in, np.float32(1.0),
         out.ctypes.data, n_out, ints, floats)
    if relu:
        for j in range(m):
            for c in range(n_out):
                out[j, c] = max(out[j, c], np.float32(0.0))


@njit(cache=True, nogil=True, inline="always")
def _fc_backward(d, n_out, inp, n_in, W, gW, gb, d_in, m, relu, ints, floats):  # pragma: no cover - numba
    """Backward of :func:`_fc_forward` for ``d = dL/d out [m, n_out]``: ``gW += dᵀ @ inp``,
    ``gb += Σ d``, and ``d_in = d @ W``, zeroed where the input is 0 if it is a ReLU's output."""
    _gemm(True, False, n_out, n_in, m, np.float32(1.0), d.ctypes.data, n_out, inp.ctypes.data, n_in,
         np.float32(1.0), gW, n_in, ints, floats)
    for j in range(m):
        for c in range(n_out):
            gb[c] += d[j, c]
    _gemm(False, False, m, n_in, n_out, np.float32(1.0), d.ctypes.data, n_out, W, n_in, np.float32(0.0),
         d_in.ctypes.data, n_in, ints, floats)
    if relu:
        for j in range(m):
            for c in range(n_in):
                d_in[j, c] = d_in[j, c] if inp[j, c] > 0.0 else np.float32(0.0)


@njit(cache=True, nogil=True, inline="always")
def _build_conv_matrices(p, pos1, src1, pos2, src2, buf):  # pragma: no cover - numba
    """The banded matrices ``T1``, ``T2`` (in ``buf``) of device parameters ``p`` (:func:`conv_kernels.toeplitz`)."""
    ck.toeplitz(p[O_W1:O_B1].reshape(1, -1), p[O_B1:O_W2].reshape(1, -1), pos1, src1, ck.N1,
                buf[_T1:_gT1].reshape(1, -1))
    ck.toeplitz(p[O_W2:O_B2].reshape(1, -1), p[O_B2:O_W3].reshape(1, -1), pos2, src2, ck.N2,
                buf[_T2:_gT2].reshape(1, -1))


@njit(cache=True, nogil=True, inline="always")
def _forward_block(x, bi, m, p, pa, buf, codes, ints):  # pragma: no cover - numba
    """Forward pass of the ``m`` samples ``x[bi[:m]]`` under ``p`` (address ``pa``; ``T1``/``T2``
    built): every activation of the block is left in the scratch, the logits in ``z5[:m]``."""
    K1, N1, K2, N2 = ck.K1, ck.N1, ck.K2, ck.N2
    ab = buf[_ab:_ab + 2]
    r1 = buf[_rows1:_rows1 + m * R1 * (K1 + 1)].reshape(m * R1, K1 + 1)
    zz1 = buf[_z1:_z1 + m * R1 * N1].reshape(m * R1, N1)
    r2 = buf[_rows2:_rows2 + m * R2 * (K2 + 1)].reshape(m * R2, K2 + 1)
    zz2 = buf[_z2:_z2 + m * R2 * N2].reshape(m * R2, N2)
    h1 = buf[_h1:_h1 + m * 864]
    f = buf[_f:_f + m * 256]
    h3 = buf[_h3:_h3 + BLOCK * 120].reshape(BLOCK, 120)
    h4 = buf[_h4:_h4 + BLOCK * 84].reshape(BLOCK, 84)
    z5 = buf[_z5:_z5 + BLOCK * 10].reshape(BLOCK, 10)
    ck.conv1_rows(x, bi[:m], r1)
    _gemm(False, False, m * R1, N1, K1 + 1, np.float32(1.0), r1.ctypes.data, K1 + 1, buf[_T1:].ctypes.data, N1,
         np.float32(0.0), zz1.ctypes.data, N1, ints, ab)
    ck.pool1(zz1, h1, codes[:m * 864])
    ck.conv2_rows(h1.reshape(m, 12, 72), r2)
    _gemm(False, False, m * R2, N2, K2 + 1, np.float32(1.0), r2.ctypes.data, K2 + 1, buf[_T2:].ctypes.data, N2,
         np.float32(0.0), zz2.ctypes.data, N2, ints, ab)
    ck.pool2(zz2, f, codes[BLOCK * 864:BLOCK * 864 + m * 256])
    _fc_forward(f.reshape(m, 256), 256, pa + 4 * O_W3, p[O_B3:O_B3 + 120], h3, 120, m, True, ints, ab)
    _fc_forward(h3, 120, pa + 4 * O_W4, p[O_B4:O_B4 + 84], h4, 84, m, True, ints, ab)
    _fc_forward(h4, 84, pa + 4 * O_W5, p[O_B5:O_B5 + 10], z5, 10, m, False, ints, ab)


@njit(cache=True, nogil=True)
def _forward(x, idx, params, pos1, src1, pos2, src2, logits, buf, codes, ints):  # pragma: no cover
    """Compiled body of :func:`forward` (arguments checked there)."""
    g, w = idx.shape
    bi = ints[:BLOCK]
    gints = ints[2 * BLOCK:2 * BLOCK + 8]
    z5 = buf[_z5:_z5 + BLOCK * 10].reshape(BLOCK, 10)
    for d in range(g):
        p = params[d]
        _build_conv_matrices(p, pos1, src1, pos2, src2, buf)
        for a in range(0, w, BLOCK):
            m = min(BLOCK, w - a)
            bi[:m] = idx[d, a:a + m]
            _forward_block(x, bi, m, p, params.ctypes.data + 4 * d * params.shape[1], buf, codes, gints)
            logits[d, a:a + m] = z5[:m]


@njit(cache=True, nogil=True)
def _loss_and_grad(x, idx, y, weight, params, rows, pos1, src1, pos2, src2, loss, grad, lr,
                   buf, codes, ints):  # pragma: no cover - numba
    """Compiled body of :func:`loss_and_grad` (arguments checked there)."""
    g, w = idx.shape
    K1, N1, K2, N2 = ck.K1, ck.N1, ck.K2, ck.N2
    ab = buf[_ab:_ab + 2]
    gT1, T2, gT2 = buf[_gT1:_T2], buf[_T2:_gT2], buf[_gT2:_ab]
    h3 = buf[_h3:_h3 + BLOCK * 120].reshape(BLOCK, 120)
    h4 = buf[_h4:_h4 + BLOCK * 84].reshape(BLOCK, 84)
    z5 = buf[_z5:_z5 + BLOCK * 10].reshape(BLOCK, 10)
    d5 = buf[_d5:_d5 + BLOCK * 10].reshape(BLOCK, 10)
    dh4 = buf[_dh4:_dh4 + BLOCK * 84].reshape(BLOCK, 84)
    dh3 = buf[_dh3:_dh3 + BLOCK * 120].reshape(BLOCK, 120)
    bl = buf[_bl:_bl + BLOCK]
    code1 = codes[:BLOCK * 864]
    code2 = codes[BLOCK * 864:BLOCK * (864 + 256)]
    bi = ints[:BLOCK]
    by = ints[BLOCK:2 * BLOCK]
    gints = ints[2 * BLOCK:2 * BLOCK + 8]
    bw = np.empty(BLOCK, dtype=np.float32)
    sel = np.empty(w, dtype=np.int64)
    P = params.shape[1]
    for d in range(g):
        p = params[rows[d]]
        gd = 0 if lr > 0.0 else d
        gr = grad[gd]
        gr[:] = 0.0
        _build_conv_matrices(p, pos1, src1, pos2, src2, buf)
        gT1[:] = 0.0
        gT2[:] = 0.0
        n = 0
        for j in range(w):
            if weight[d, j] != 0.0:
                sel[n] = j
                n += 1
            else:
                loss[d, j] = 0.0
        pa = params.ctypes.data + 4 * rows[d] * P
        ga = grad.ctypes.data + 4 * gd * P
        for a in range(0, n, BLOCK):
            m = min(BLOCK, n - a)
            for j in range(m):
                bi[j] = idx[d, sel[a + j]]
                by[j] = y[d, sel[a + j]]
                bw[j] = weight[d, sel[a + j]]
            _forward_block(x, bi, m, p, pa, buf, codes, gints)
            ck.cross_entropy(z5[:m], by[:m], bw[:m], bl[:m], d5[:m])
            for j in range(m):
                loss[d, sel[a + j]] = bl[j]
            # backward: fc layers, then pool2, conv2 (weights, then its input), col2im + pool1, conv1
            r1 = buf[_rows1:_rows1 + m * R1 * (K1 + 1)].reshape(m * R1, K1 + 1)
            zz1 = buf[_z1:_z1 + m * R1 * N1].reshape(m * R1, N1)
            r2 = buf[_rows2:_rows2 + m * R2 * (K2 + 1)].reshape(m * R2, K2 + 1)
            zz2 = buf[_z2:_z2 + m * R2 * N2].reshape(m * R2, N2)
            fm = buf[_f:_f + m * 256].reshape(m, 256)
            dfm = buf[_df:_df + m * 256].reshape(m, 256)
            _fc_backward(d5, 10, h4, 84, pa + 4 * O_W5, ga + 4 * O_W5, gr[O_B5:O_B5 + 10], dh4, m, True,
                         gints, ab)
            _fc_backward(dh4, 84, h3, 120, pa + 4 * O_W4, ga + 4 * O_W4, gr[O_B4:O_B4 + 84], dh3, m, True,
                         gints, ab)
            _fc_backward(dh3, 120, fm, 256, pa + 4 * O_W3, ga + 4 * O_W3, gr[O_B3:O_B3 + 120], dfm, m, False,
                         gints, ab)
            ck.unpool2(dfm.reshape(m * 256), code2[:m * 256], zz2)  # zz2 now holds dz2
            _gemm(True, False, K2 + 1, N2, m * R2, np.float32(1.0), r2.ctypes.data, K2 + 1, zz2.ctypes.data, N2,
                 np.float32(1.0), gT2.ctypes.data, N2, gints, ab)
            dr2 = buf[_rows2:_rows2 + m * R2 * K2].reshape(m * R2, K2)  # rows2 is dead after gT2
            _gemm(False, True, m * R2, K2, N2, np.float32(1.0), zz2.ctypes.data, N2, T2.ctypes.data, N2,
                 np.float32(0.0), dr2.ctypes.data, K2, gints, ab)
            ck.col2im_unpool1(dr2, code1[:m * 864], zz1, 6 * ck.W2)  # zz1 now holds dz1
            _gemm(True, False, K1 + 1, N1, m * R1, np.float32(1.0), r1.ctypes.data, K1 + 1, zz1.ctypes.data, N1,
                 np.float32(1.0), gT1.ctypes.data, N1, gints, ab)
        # taps and biases out of the banded matrices' gradients (adjoint of _build_conv_matrices)
        ck.toeplitz_grad(gT1.reshape(1, -1), pos1, src1, N1, gr[O_W1:O_B1].reshape(1, -1), gr[O_B1:O_W2].reshape(1, -1))
        ck.toeplitz_grad(gT2.reshape(1, -1), pos2, src2, N2, gr[O_W2:O_B2].reshape(1, -1), gr[O_B2:O_W3].reshape(1, -1))
        if lr > 0.0:
            for j in range(P):
                p[j] -= lr * gr[j]


# ---------------------------------------------------------------------------------------------
# Public kernels: availability and every argument checked before the compiled code runs
# ---------------------------------------------------------------------------------------------

def _array(name: str, a: object, dtype: type, shape: tuple[int | None, ...], *,
           out: bool = False) -> np.ndarray:
    """``a`` as checked: a C-contiguous ``dtype`` array whose shape matches ``shape`` (``None``:
    any length), writeable if it is an ``out``-put. The compiled code reads and writes through raw
    addresses and fixed strides, so anything else would touch memory outside the array."""
    ok = (isinstance(a, np.ndarray) and a.dtype == dtype and a.flags.c_contiguous and a.ndim == len(shape)
          and all(want is None or want == got for want, got in zip(shape, a.shape))
          and (a.flags.writeable or not out))
    if not isinstance(a, np.ndarray) or not ok:
        have = type(a).__name__
        if isinstance(a, np.ndarray):
            have = (f"{a.dtype} array of shape {a.shape}"
                    f"{'' if a.flags.c_contiguous else ', not C-contiguous'}"
                    f"{'' if a.flags.writeable else ', read-only'}")
        want = "[" + ", ".join("·" if s is None else str(s) for s in shape) + "]"
        raise InputError(f"{name}: {have}; must be a C-contiguous{' writeable' if out else ''} "
                         f"{np.dtype(dtype).name} array of shape {want}")
    return a


def _at_least(name: str, a: np.ndarray, n: int) -> None:
    if a.size < n:
        raise InputError(f"{name}: {a.size} elements; the scratch must hold at least {n}")


def _in_range(name: str, a: np.ndarray, hi: int, rule: str) -> None:
    """Every entry of the integer array ``a`` must lie in ``[0, hi)``; names the first outside."""
    if a.size and (int(a.min()) < 0 or int(a.max()) >= hi):
        bad = int(np.flatnonzero((a < 0) | (a >= hi))[0])
        where = ", ".join(str(int(i)) for i in np.unravel_index(bad, a.shape))
        raise InputError(f"{name}[{where}] = {int(a.flat[bad])}: {rule}")


def _check_common(x: np.ndarray, idx: np.ndarray, pos1: np.ndarray, src1: np.ndarray,
                  pos2: np.ndarray, src2: np.ndarray, buf: np.ndarray, codes: np.ndarray,
                  ints: np.ndarray) -> tuple[int, int]:
    """Checks shared by both kernels; returns ``(g, w)``."""
    _array("x", x, np.float32, (None, 28, 28))
    g, w = _array("idx", idx, np.int64, (None, None)).shape
    _in_range("idx", idx, x.shape[0], f"sample indices must be in [0, {x.shape[0]}) (rows of x)")
    for k, pos, src, size, n_taps in ((1, pos1, src1, ck.K1 * ck.N1, O_B1 - O_W1),
                                      (2, pos2, src2, ck.K2 * ck.N2, O_B2 - O_W2)):
        _array(f"pos{k}", pos, np.int64, (None,))
        _array(f"src{k}", src, np.int64, (pos.size,))
        _in_range(f"pos{k}", pos, size, f"tap positions must lie in the {size} band entries")
        _in_range(f"src{k}", src, n_taps, f"taps index a kernel of {n_taps} weights")
    _at_least("buf", _array("buf", buf, np.float32, (None,), out=True), SCRATCH_FLOATS)
    _at_least("codes", _array("codes", codes, np.uint8, (None,), out=True), SCRATCH_CODES)
    _at_least("ints", _array("ints", ints, np.int64, (None,), out=True), SCRATCH_INTS)
    return g, w


def forward(x: np.ndarray, idx: np.ndarray, params: np.ndarray, pos1: np.ndarray,
            src1: np.ndarray, pos2: np.ndarray, src2: np.ndarray, logits: np.ndarray,
            buf: np.ndarray, codes: np.ndarray, ints: np.ndarray) -> None:
    """Logits ``logits[g, w, 10]`` of samples ``x[idx[d, s]]`` under ``params[d]``
    (``params [g, P]``; other arguments as in :func:`loss_and_grad`).

    Raises :class:`FusedUnavailableError` where the kernel cannot run and
    :class:`~foglearn.errors.InputError` for an argument it cannot safely use."""
    require()
    g, w = _check_common(x, idx, pos1, src1, pos2, src2, buf, codes, ints)
    _array("params", params, np.float32, (g, N_PARAMS))
    _array("logits", logits, np.float32, (g, w, N_CLASSES), out=True)
    _forward(x, idx, params, pos1, src1, pos2, src2, logits, buf, codes, ints)


def loss_and_grad(x: np.ndarray, idx: np.ndarray, y: np.ndarray, weight: np.ndarray,
                  params: np.ndarray, rows: np.ndarray, pos1: np.ndarray, src1: np.ndarray,
                  pos2: np.ndarray, src2: np.ndarray, loss: np.ndarray, grad: np.ndarray, lr: float,
                  buf: np.ndarray, codes: np.ndarray, ints: np.ndarray) -> None:
    """Per-sample losses ``loss[g, w]`` and gradients of
    ``Σ_s weight[d, s]·l(p_d, x[idx[d, s]], y[d, s])`` (cross-entropy, eq. 2) for the parameters
    ``p_d = params[rows[d]]`` (``params [n, P]``).

    ``x[N, 28, 28]`` is the dataset (read in place), ``idx``/``y`` ``[g, w]`` int64 (labels in
    ``[0, 10)``), ``weight`` ``[g, w]`` float32; ``pos*``/``src*`` the Toeplitz tap positions of the
    two convolutions; ``buf``/``codes``/``ints`` scratch of :data:`SCRATCH_FLOATS`,
    :data:`SCRATCH_CODES`, :data:`SCRATCH_INTS` elements. Samples of weight 0 get loss 0.

    ``lr = 0``: the gradients go to ``grad[g, P]``. ``lr > 0``: the SGD step of eq. (3) is taken in
    place, ``params[rows[d]] -= lr · ∇`` (``grad[1, P]`` is scratch; ``rows`` must not repeat).

    Raises :class:`FusedUnavailableError` where the kernel cannot run and
    :class:`~foglearn.errors.InputError` for an argument it cannot safely use (a label outside the
    classes, an index outside ``x`` or ``params``, a wrong dtype, shape or layout), before anything
    is written.
    """
    require()
    g, w = _check_common(x, idx, pos1, src1, pos2, src2, buf, codes, ints)
    _array("y", y, np.int64, (g, w))
    _in_range("y", y, N_CLASSES, f"labels must be in [0, {N_CLASSES}) (the classes)")
    _array("weight", weight, np.float32, (g, w))
    step = float(lr)
    if not (np.isfinite(step) and step >= 0.0):
        raise InputError(f"lr = {lr!r}: the learning rate must be finite and ≥ 0 "
                         "(0: return the gradients)")
    n = _array("params", params, np.float32, (None, N_PARAMS), out=step > 0).shape[0]
    _in_range("rows", _array("rows", rows, np.int64, (g,)), n, f"rows index params' {n} rows")
    if step > 0 and np.unique(rows).size != g:
        raise InputError("rows: repeated rows; an in-place step (lr > 0) needs distinct rows")
    _array("loss", loss, np.float32, (g, w), out=True)
    _array("grad", grad, np.float32, (1 if step > 0 else g, N_PARAMS), out=True)
    _loss_and_grad(x, idx, y, weight, params, rows, pos1, src1, pos2, src2, loss, grad,
                   np.float32(step), buf, codes, ints)
