"""Batched forward/backward kernels for the paper's models with **per-device weights**.

The device-parallel trainer (:mod:`foglearn.learning.trainer`) advances ``g`` devices at once,
each with its own parameters ``w_i`` (they differ within an aggregation period, eq. 3). A bucket
holds ``g`` devices padded to a common batch width ``w``; every kernel here takes

* ``flat``: ``[g, P]`` — each device's parameters, flattened in ``module.named_parameters()`` order;
* ``x``: ``[g, w, 1, 28, 28]`` (float32) — or, with ``index`` ``[g, w]`` (int64), a whole dataset
  ``[N, 1, 28, 28]`` whose samples ``x[index]`` make the batch (the CNN then reads them in place);
* ``y``: ``[g, w]`` (int64);
* ``weight``: ``[g, w]`` — the weight of each sample's loss (``1/|G_i(t)|`` for real samples,
  ``0`` for padding),

and returns the per-sample losses ``l(w_i, x, y)`` (cross-entropy, eq. 2) ``[g, w]`` and the
gradients ``∇_{w_i} Σ_s weight_s · l(w_i, x_s, y_s)`` as ``[g, P]``. With ``weight = 1/|G_i|`` on
device ``i``'s samples the gradient is ``∇ L_i(w_i | G_i(t))`` of eq. (3). Padded samples (weight 0)
contribute exactly nothing, and a device with no samples gets a zero gradient.

All weight-bearing work is GEMMs in MKL over the device axis; the backward pass is written by
hand (no autograd graph):

* **conv** as a row-Toeplitz GEMM (:class:`BatchedCNN`): five consecutive input rows of a
  sample (a narrow block of columns, plus a 1 for the bias) times a banded matrix built from the
  5×5 kernel give a block of output columns of one output row, all channels.
* the memory-bound glue — patch building, 2×2 max pooling fused with ReLU, its backward, and
  the second conv's col2im fused with the first pooling's backward — is one compiled pass each
  (:mod:`foglearn.learning.conv_kernels`, numba, GIL released) into scratch buffers that are reused
  across calls (:class:`_Workspace`). Pooling routes the gradient to the *first* maximum of each
  window in row-major order, exactly as :func:`torch.nn.functional.max_pool2d`; ReLU is applied
  after pooling (``pool(relu(z)) = relu(pool(z))``, with the same gradient: where the window's
  maximum is ≤ 0 both are 0).
* for the CNN the whole pass is by default **one compiled call** that drives MKL's ``sgemm``
  itself (:mod:`foglearn.learning.fused_cnn`); the layer-by-layer path (``fused=False``: the
  GEMMs are :func:`torch.bmm` calls between the passes) computes the same numbers. Measured on
  this project's 2-core box, 1 thread, per sample, forward + backward at 256 samples per call
  (``bench/cnn_kernel.py``): fused 22.9 µs, layered 28.5 µs, PyTorch's own module (oneDNN) 64.8 µs.
  The MLP's GEMMs are :func:`torch.bmm` / :func:`torch.baddbmm`.
* the gradient w.r.t. the network input is never computed.

The kernels match the reference :class:`~foglearn.learning.models.CNN` / ``MLP`` modules to
float32 round-off (tests/test_learning_kernels.py checks forward and gradients to 1e-5).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
import torch
from numba import njit
from torch import nn

from foglearn.errors import InputError
from foglearn.learning import conv_kernels as ck
from foglearn.learning import fused_cnn
from foglearn.learning.models import CNN, MLP


@dataclass(frozen=True)
class Layout:
    """Where each named parameter lives in the flat ``[P]`` vector (``named_parameters`` order)."""

    names: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]
    offsets: tuple[int, ...]
    size: int

    @classmethod
    def of(cls, module: nn.Module) -> Layout:
        names, shapes, offsets = [], [], []
        off = 0
        for k, p in module.named_parameters():
            names.append(k)
            shapes.append(tuple(p.shape))
            offsets.append(off)
            off += p.numel()
        return cls(tuple(names), tuple(shapes), tuple(offsets), off)

    def flatten(self, params: dict[str, torch.Tensor]) -> torch.Tensor:
        """``{name: tensor}`` → ``[P]``."""
        return torch.cat([params[k].detach().reshape(-1) for k in self.names])

    def unflatten(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        """``[..., P]`` → ``{name: view [..., *shape]}`` (views share memory with ``flat``)."""
        lead = flat.shape[:-1]
        return {k: flat[..., o:o + _numel(s)].view(*lead, *s) if flat.is_contiguous()
                else flat[..., o:o + _numel(s)].reshape(*lead, *s)
                for k, s, o in zip(self.names, self.shapes, self.offsets)}


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


def _check_range(name: str, a: np.ndarray, n: int, what: str, note: str = "") -> None:
    """Raise :class:`InputError` unless every entry of the integer array ``a`` lies in ``0..n-1``.

    The compiled passes index arrays with these values unchecked (a label picks a logit, a sample
    index an image, a row a device's parameters): one outside the range reads or writes memory
    that is not the array's. One reduction (a negative entry read as unsigned is ≥ 2^63), about
    a microsecond per call.
    """
    if a.size and int(a.astype(np.int64, copy=False).view(np.uint64).max()) >= n:
        k = np.unravel_index(int(np.argmax((a < 0) | (a >= n))), a.shape)
        raise InputError(f"{name}{list(map(int, k))} = {a[k]}: {what} must lie in 0..{n - 1}{note}")


def _check_batch(y: torch.Tensor, weight: torch.Tensor, classes: int) -> np.ndarray:
    """``y`` as a contiguous int64 array after checking it against ``weight`` and ``classes``."""
    if y.dtype != torch.int64 or y.dim() != 2:
        raise InputError(f"y: labels must be an int64 [g, w] tensor, got {y.dtype} of shape {list(y.shape)}")
    if tuple(weight.shape) != tuple(y.shape):
        raise InputError(f"weight: must have the labels' shape {list(y.shape)}, got {list(weight.shape)}")
    labels = y.contiguous().numpy()
    _check_range("y", labels, classes, "labels", f" (the model has {classes} classes)")
    return labels


def _gather(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``x[index]`` for sample indices in ``0..N-1`` (torch would read ``-1`` as the last sample)."""
    _check_range("index", np.asarray(index), x.shape[0], "sample indices", " (the rows of x)")
    return x[index]


def _xent(logits: torch.Tensor, y: torch.Tensor, weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample cross-entropy ``[g, w]`` and ``d(Σ weight·l)/d logits`` ``[g, w, C]`` (one compiled pass)."""
    g, w, C = logits.shape
    labels = _check_batch(y, weight, C)
    loss = torch.empty(g, w)
    d = torch.empty(g, w, C)
    ck.cross_entropy(logits.reshape(g * w, C).contiguous().numpy(), labels.reshape(-1),
                     weight.reshape(-1).to(torch.float32).contiguous().numpy(), loss.view(-1).numpy(),
                     d.view(g * w, C).numpy())
    return loss, d


def _relu_back(d: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """ReLU backward from its output ``h``: ``d · [h > 0]`` (one fused op)."""
    return torch.ops.aten.threshold_backward(d, h, 0.0)


def _linear_back(d: torch.Tensor, inp: torch.Tensor, W: torch.Tensor, need_input: bool = True
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Backward of ``z = inp @ Wᵀ + b`` for ``d = dL/dz`` ``[g, w, out]``: (gW, gb, d inp)."""
    gW = torch.bmm(d.transpose(1, 2), inp)
    gb = d.sum(1)
    return gW, gb, (torch.bmm(d, W) if need_input else None)


class BatchedMLP:
    """The 784-h-10 MLP (:class:`~foglearn.learning.models.MLP`) with per-device weights."""

    def __init__(self, module: MLP) -> None:
        self.layout = Layout.of(module)
        if self.layout.names != ("fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"):
            raise TypeError("BatchedMLP: module does not have the MLP's parameters")
        #: Padded samples are computed (and weighted 0), so callers should pad little.
        self.skips_padding = False

    def sgd_step(self, params: torch.Tensor, rows: torch.Tensor, x: torch.Tensor, y: torch.Tensor,
                 weight: torch.Tensor, lr: float, index: torch.Tensor | None = None) -> torch.Tensor:
        """See :func:`sgd_step`."""
        return sgd_step(self, params, rows, x, y, weight, lr, index)

    def forward(self, flat: torch.Tensor, x: torch.Tensor, index: torch.Tensor | None = None) -> torch.Tensor:
        """Logits ``[g, w, 10]`` of ``x [g, w, 1, 28, 28]`` (or ``x[index]``) under each device's parameters."""
        x = x if index is None else _gather(x, index)
        g, w = x.shape[:2]
        p = self.layout.unflatten(flat)
        h1 = torch.baddbmm(p["fc1.bias"].unsqueeze(1), x.reshape(g, w, -1), p["fc1.weight"].transpose(1, 2))
        return torch.baddbmm(p["fc2.bias"].unsqueeze(1), h1.clamp_min_(0), p["fc2.weight"].transpose(1, 2))

    def loss_and_grad(self, flat: torch.Tensor, x: torch.Tensor, y: torch.Tensor, weight: torch.Tensor,
                      index: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        g, w = y.shape
        p = self.layout.unflatten(flat)
        xf = (x if index is None else _gather(x, index)).reshape(g, w, -1)
        z1 = torch.baddbmm(p["fc1.bias"].unsqueeze(1), xf, p["fc1.weight"].transpose(1, 2))
        h1 = z1.clamp_min(0)
        z2 = torch.baddbmm(p["fc2.bias"].unsqueeze(1), h1, p["fc2.weight"].transpose(1, 2))
        loss, d2 = _xent(z2, y, weight)
        gW2, gb2, dh1 = _linear_back(d2, h1, p["fc2.weight"])
        assert dh1 is not None
        d1 = _relu_back(dh1, h1)
        gW1, gb1, _ = _linear_back(d1, xf, p["fc1.weight"], need_input=False)
        grad = torch.cat([gW1.reshape(g, -1), gb1, gW2.reshape(g, -1), gb2], dim=1)
        return loss, grad


def _toeplitz_index(out_ch: int, in_ch: int, width_in: int, width_out_half: int) -> tuple[np.ndarray, np.ndarray]:
    """Positions of a 5×5 kernel's taps in the banded (Toeplitz) matrix of a row convolution.

    The matrix ``T[(ki, col_in, cin), (dc, pc, o)]`` (``col_in`` < ``width_in``; output column
    ``2·pc + dc`` with ``pc`` < ``width_out_half``) holds ``W[o, cin, ki, col_in - 2·pc - dc]``
    where that tap exists. Returns (flat position in ``T``, flat index into ``W[o, cin, ki, kj]``).
    """
    o, c, ki, kj, dc, pc = np.meshgrid(*(np.arange(k) for k in (out_ch, in_ch, 5, 5, 2, width_out_half)),
                                       indexing="ij")
    row = (ki * width_in + 2 * pc + dc + kj) * in_ch + c
    col = (dc * width_out_half + pc) * out_ch + o
    pos = row * (2 * out_ch * width_out_half) + col
    src = ((o * in_ch + c) * 5 + ki) * 5 + kj
    return pos.reshape(-1).astype(np.int64), src.reshape(-1).astype(np.int64)


def _toeplitz(W: torch.Tensor, index: tuple[np.ndarray, np.ndarray], rows: int, cols: int,
              bias: torch.Tensor) -> torch.Tensor:
    """``[g, O·C·25]`` kernels and ``[g, O]`` biases → ``[g, rows + 1, cols]`` banded matrices
    (see :func:`_toeplitz_index`) whose last row is each output column's bias."""
    g = W.shape[0]
    T = torch.empty(g, rows + 1, cols)
    ck.toeplitz(W.contiguous().numpy(), bias.contiguous().numpy(), *index, cols, T.view(g, -1).numpy())
    return T


def _toeplitz_grad(gT: torch.Tensor, index: tuple[np.ndarray, np.ndarray], n: int, out_ch: int
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Adjoint of :func:`_toeplitz`: ``gT [g, rows + 1, cols]`` → the kernels' ``[g, n]`` and the
    biases' ``[g, out_ch]`` gradients."""
    g, cols = gT.shape[0], gT.shape[2]
    out, out_bias = torch.empty(g, n), torch.empty(g, out_ch)
    ck.toeplitz_grad(gT.reshape(g, -1).numpy(), *index, cols, out.numpy(), out_bias.numpy())
    return out, out_bias


class _Workspace:
    """Scratch buffers reused across kernel calls, grown on demand.

    The CNN's activations and patches are megabytes per call; fresh allocations of that size
    are fresh pages from the OS each time (glibc returns them with ``munmap``), and the page
    faults cost as much as the copies themselves. Views into these buffers are valid until the
    next call on the same thread.
    """

    def __init__(self) -> None:
        self._buf: dict[str, torch.Tensor] = {}

    def _flat(self, name: str, n: int, dtype: torch.dtype) -> torch.Tensor:
        buf = self._buf.get(name)
        if buf is None or buf.numel() < n:
            buf = self._buf[name] = torch.empty(max(n, 2 * (0 if buf is None else buf.numel())), dtype=dtype)
        return buf[:n]

    def tensor(self, name: str, shape: tuple[int, ...]) -> torch.Tensor:
        """A float32 view of ``shape`` (uninitialised)."""
        return self._flat(name, _numel(shape), torch.float32).view(shape)

    def array(self, name: str, n: int, dtype: torch.dtype = torch.uint8) -> np.ndarray:
        """A ``uint8`` (or ``dtype``) array of ``n`` elements (uninitialised)."""
        return self._flat(name, n, dtype).numpy()


class BatchedCNN:
    """The LeNet-style CNN (:class:`~foglearn.learning.models.CNN`) with per-device weights.

    Each 5×5 convolution is a GEMM of image *rows* with a banded (Toeplitz) weight matrix: the
    input rows ``r … r+4`` of a sample (all channels; a block of columns) times
    ``T[(ki, col_in, cin), (dc, pc, o)]`` give every output channel of a block of ``2·pb`` output
    columns of row ``r``. The output columns are cut into blocks of ``pb`` pooling windows (the
    same ``T`` serves every block: translation invariance): a narrow block wastes few multiplies
    on the band's zeros, a wide one makes a larger GEMM. Output rows are ordered
    ``(pr, block, dr)`` and columns ``(dc, pc, o)`` (row ``2pr + dr``, column ``2pc + dc``), so a
    2×2 pooling window is two adjacent rows × two column blocks. The weight gradient is
    ``rowsᵀ @ dOut`` summed over each tap's band (:func:`_toeplitz_grad`).

    The patch building, pooling + ReLU, their backward and the col2im run as single compiled
    passes (:mod:`foglearn.learning.conv_kernels`, whose ``PB1``/``PB2`` set the block widths).
    With ``fused`` (the default where PyTorch's BLAS is reachable, :func:`fused_cnn.enabled`)
    :meth:`loss_and_grad`, :meth:`sgd_step` and :meth:`forward` are each one compiled call that
    also drives the GEMMs (:mod:`foglearn.learning.fused_cnn`); otherwise the GEMMs are
    :func:`torch.bmm` calls between the passes. Both compute the same numbers (to float32
    round-off). Calls on several threads at once are safe: each thread has its own scratch buffers.
    """

    NAMES = ("conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias", "fc1.weight", "fc1.bias",
             "fc2.weight", "fc2.bias", "fc3.weight", "fc3.bias")

    def __init__(self, module: CNN, fused: bool | None = None) -> None:
        self.layout = Layout.of(module)
        shapes = dict(zip(self.layout.names, self.layout.shapes))
        if (self.layout.names != self.NAMES or shapes["conv1.weight"] != (6, 1, 5, 5)
                or shapes["conv2.weight"] != (16, 6, 5, 5) or shapes["fc1.weight"] != (120, 256)
                or self.layout.size != fused_cnn.N_PARAMS):
            raise TypeError("BatchedCNN: module does not have the paper CNN's parameters")
        if fused:
            fused_cnn.require()
        self.fused = fused_cnn.enabled().ok if fused is None else fused
        #: The fused call skips samples of weight 0, so padding a batch costs nothing.
        self.skips_padding = self.fused
        self.T1 = _toeplitz_index(6, 1, ck.W1, ck.PB1)
        self.T2 = _toeplitz_index(16, 6, ck.W2, ck.PB2)
        self._local = threading.local()

    def _workspace(self) -> _Workspace:
        """This thread's scratch buffers (kernels may run on several threads at once)."""
        ws = getattr(self._local, "ws", None)
        if ws is None:
            ws = self._local.ws = _Workspace()
        return ws

    def _forward(self, p: dict[str, torch.Tensor], x: torch.Tensor, index: torch.Tensor | None, g: int, w: int
                 ) -> dict:
        S = g * w
        ws = self._workspace()
        xs, idx = self._samples(x, index, g, w)
        rows1 = ws.tensor("rows1", (g, w * 24 * ck.B1, ck.K1 + 1))
        ck.conv1_rows(xs, idx.reshape(S), rows1.view(-1, ck.K1 + 1).numpy())
        T1 = _toeplitz(p["conv1.weight"].reshape(g, 150), self.T1, ck.K1, ck.N1, p["conv1.bias"])
        z1 = torch.bmm(rows1, T1, out=ws.tensor("z1", (g, w * 24 * ck.B1, ck.N1)))  # [g, (s, pr, h, dr), (dc, pc, o)]
        h1 = ws.tensor("h1", (S, 12, 72))  # pooled + ReLU: [s, row, (column, channel)]
        code1 = ws.array("code1", S * 864)
        ck.pool1(z1.view(-1, ck.N1).numpy(), h1.view(-1).numpy(), code1)
        rows2 = ws.tensor("rows2", (g, w * 8 * ck.B2, ck.K2 + 1))
        ck.conv2_rows(h1.numpy(), rows2.view(-1, ck.K2 + 1).numpy())
        T2 = _toeplitz(p["conv2.weight"].reshape(g, 2400), self.T2, ck.K2, ck.N2, p["conv2.bias"])
        z2 = torch.bmm(rows2, T2, out=ws.tensor("z2", (g, w * 8 * ck.B2, ck.N2)))
        f = ws.tensor("f", (g, w, 256))  # pooled + ReLU, flattened in the module's order (channel, row, column)
        code2 = ws.array("code2", S * 256)
        ck.pool2(z2.view(-1, ck.N2).numpy(), f.view(-1).numpy(), code2)
        z3 = torch.baddbmm(p["fc1.bias"].unsqueeze(1), f, p["fc1.weight"].transpose(1, 2))
        h3 = z3.clamp_min_(0)
        z4 = torch.baddbmm(p["fc2.bias"].unsqueeze(1), h3, p["fc2.weight"].transpose(1, 2))
        h4 = z4.clamp_min_(0)
        z5 = torch.baddbmm(p["fc3.bias"].unsqueeze(1), h4, p["fc3.weight"].transpose(1, 2))
        return {"rows1": rows1, "code1": code1, "rows2": rows2, "T2": T2, "code2": code2, "f": f,
                "h3": h3, "h4": h4, "z5": z5}

    def forward(self, flat: torch.Tensor, x: torch.Tensor, index: torch.Tensor | None = None) -> torch.Tensor:
        """Logits ``[g, w, 10]`` of ``x [g, w, 1, 28, 28]`` (or ``x[index]``) under each device's parameters."""
        g, w = x.shape[:2] if index is None else index.shape
        if not self.fused:
            return self._forward(self.layout.unflatten(flat), x, index, g, w)["z5"]
        if tuple(flat.shape) != (g, self.layout.size):  # the compiled pass reads params[d] for d < g
            raise InputError(f"flat: must have shape [{g}, {self.layout.size}], got {list(flat.shape)}")
        xs, idx = self._samples(x, index, g, w)
        logits = torch.empty(g, w, 10)
        fused_cnn.forward(xs, idx, flat.to(torch.float32).contiguous().numpy(), *self.T1, *self.T2, logits.numpy(),
                          *self._fused_scratch())
        return logits

    def loss_and_grad(self, flat: torch.Tensor, x: torch.Tensor, y: torch.Tensor, weight: torch.Tensor,
                      index: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        if self.fused:
            return self._loss_and_grad_fused(flat, x, y, weight, index)
        g, w = y.shape
        p = self.layout.unflatten(flat)
        a = self._forward(p, x, index, g, w)
        ws = self._workspace()
        h4, h3, f = a["h4"], a["h3"], a["f"]
        loss, d5 = _xent(a["z5"], y, weight)
        gW5, gb5, dh4 = _linear_back(d5, h4, p["fc3.weight"])
        assert dh4 is not None
        gW4, gb4, dh3 = _linear_back(_relu_back(dh4, h4), h3, p["fc2.weight"])
        assert dh3 is not None
        gW3, gb3, df = _linear_back(_relu_back(dh3, h3), f, p["fc1.weight"])
        assert df is not None
        # pool2 + ReLU backward (the codes mark where ReLU passes nothing)
        dz2 = ws.tensor("z2", (g, w * 8 * ck.B2, ck.N2))  # z2 is dead: reuse its buffer
        ck.unpool2(df.contiguous().view(-1).numpy(), a["code2"], dz2.view(-1, ck.N2).numpy())
        gT2 = torch.bmm(a["rows2"].transpose(1, 2), dz2)
        gW2, gb2 = _toeplitz_grad(gT2, self.T2, 2400, 16)
        # d rows2 = dz2 @ T2ᵀ (bias row dropped; a contiguous Tᵀ keeps MKL on its fast path)
        drows2 = torch.bmm(dz2, a["T2"][:, :-1].transpose(1, 2).contiguous(),
                           out=ws.tensor("rows2", (g, w * 8 * ck.B2, ck.K2)))  # rows2 is dead after gT2
        # col2im of conv2's patches, then pool1 + ReLU backward, in one pass
        dz1 = ws.tensor("z1", (g, w * 24 * ck.B1, ck.N1))  # z1 is dead: reuse its buffer
        ck.col2im_unpool1(drows2.view(-1, ck.K2).numpy(), a["code1"], dz1.view(-1, ck.N1).numpy(), 6 * ck.W2)
        gT1 = torch.bmm(a["rows1"].transpose(1, 2), dz1)
        gW1, gb1 = _toeplitz_grad(gT1, self.T1, 150, 6)
        grad = torch.cat([gW1, gb1, gW2, gb2, gW3.reshape(g, -1), gb3,
                          gW4.reshape(g, -1), gb4, gW5.reshape(g, -1), gb5], dim=1)
        return loss, grad


    def sgd_step(self, params: torch.Tensor, rows: torch.Tensor, x: torch.Tensor, y: torch.Tensor,
                 weight: torch.Tensor, lr: float, index: torch.Tensor | None = None) -> torch.Tensor:
        """See :func:`sgd_step`; with ``fused`` the step is taken inside the compiled call."""
        if not self.fused:
            return sgd_step(self, params, rows, x, y, weight, lr, index)
        return self._fused(params, rows, x, y, weight, index, lr)[0]

    def _loss_and_grad_fused(self, flat: torch.Tensor, x: torch.Tensor, y: torch.Tensor, weight: torch.Tensor,
                             index: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`loss_and_grad` as one compiled call (:func:`fused_cnn.loss_and_grad`)."""
        return self._fused(flat.to(torch.float32).contiguous(), torch.arange(y.shape[0]), x, y, weight, index, 0.0)

    @staticmethod
    def _samples(x: torch.Tensor, index: torch.Tensor | None, g: int, w: int) -> tuple[np.ndarray, np.ndarray]:
        """The sample source ``[N, 28, 28]`` the compiled passes read and indices ``[g, w]`` into it."""
        if index is None:
            xs, idx = x.reshape(g * w, 28, 28), np.arange(g * w, dtype=np.int64).reshape(g, w)
        else:
            xs, idx = x.reshape(-1, 28, 28), np.ascontiguousarray(index, dtype=np.int64).reshape(g, w)
            _check_range("index", idx, xs.shape[0], "sample indices", " (the rows of x)")
        return xs.to(torch.float32).contiguous().numpy(), idx  # no copy for the datasets' arrays

    def _fused_scratch(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        ws = self._workspace()
        return (ws.tensor("fused", (fused_cnn.SCRATCH_FLOATS,)).numpy(), ws.array("fused_codes",
                                                                                  fused_cnn.SCRATCH_CODES),
                ws.array("fused_ints", fused_cnn.SCRATCH_INTS, torch.int64))

    def _fused(self, params: torch.Tensor, rows: torch.Tensor, x: torch.Tensor, y: torch.Tensor, weight: torch.Tensor,
               index: torch.Tensor | None, lr: float) -> tuple[torch.Tensor, torch.Tensor]:
        labels = _check_batch(y, weight, 10)
        g, w = labels.shape
        if params.dtype != torch.float32 or not params.is_contiguous():
            raise ValueError("BatchedCNN: params must be a contiguous float32 tensor")
        if params.dim() != 2 or params.shape[1] != self.layout.size:
            raise InputError(f"params: must have shape [n, {self.layout.size}], got {list(params.shape)}")
        prow = np.ascontiguousarray(rows, dtype=np.int64)
        if prow.shape != (g,):
            raise InputError(f"rows: must name one parameter row per device ({g}), got shape {list(prow.shape)}")
        _check_range("rows", prow, params.shape[0], "parameter rows", " (the rows of params)")
        xs, idx = self._samples(x, index, g, w)
        loss = torch.empty(g, w)
        grad = torch.empty(1 if lr > 0 else g, self.layout.size)
        fused_cnn.loss_and_grad(
            xs, idx, labels, weight.to(torch.float32).contiguous().numpy(),
            params.numpy(), prow, *self.T1, *self.T2, loss.numpy(), grad.numpy(),
            float(lr), *self._fused_scratch())
        return loss, grad


BatchedModel = BatchedCNN | BatchedMLP


def sgd_step(kernel: BatchedModel, params: torch.Tensor, rows: torch.Tensor, x: torch.Tensor, y: torch.Tensor,
             weight: torch.Tensor, lr: float, index: torch.Tensor | None = None) -> torch.Tensor:
    """One SGD step (eq. 3) in place for the devices whose parameters are ``params[rows]``
    (``rows`` distinct): ``params[rows[d]] -= lr · ∇ Σ_s weight[d, s]·l``; returns the per-sample
    losses ``[g, w]``. Rows not in ``rows`` are untouched, so calls on other rows may run at once."""
    loss, grad = kernel.loss_and_grad(params.index_select(0, rows), x, y, weight, index=index)
    params.index_add_(0, rows, grad, alpha=-lr)
    return loss


def batched_kernel(module: nn.Module) -> BatchedModel | None:
    """The batched kernel for ``module`` if it is one of the paper's models (exact class), else ``None``."""
    try:
        if type(module) is CNN:
            return BatchedCNN(module)
        if type(module) is MLP:
            return BatchedMLP(module)
    except TypeError:
        return None
    return None


# ---------------------------------------------------------------------------------------------
# Device-major SGD for the MLP: one device's local steps back to back, its model in cache
# ---------------------------------------------------------------------------------------------

@njit(cache=True, nogil=True, fastmath=True, error_model="numpy")  # a diverged run: inf/nan, no exception
def _mlp_devices(x: np.ndarray, y: np.ndarray, glob: np.ndarray, dev_ptr: np.ndarray, step_ptr: np.ndarray,
                 pts: np.ndarray, weight: np.ndarray, lr: float, hid: int, n_cls: int, out_sum: np.ndarray,
                 out_loss: np.ndarray, p: np.ndarray, acc: np.ndarray,
                 min_den: int, class_w: np.ndarray) -> None:  # pragma: no cover - compiled
    d_in = x.shape[1]
    o_b1 = hid * d_in
    o_w2 = o_b1 + hid
    o_b2 = o_w2 + n_cls * hid
    P = glob.shape[0]
    m_max = 1
    for s in range(step_ptr.shape[0] - 1):
        m_max = max(m_max, step_ptr[s + 1] - step_ptr[s])
    # The device's model ``p`` (scratch, any content): fc1ᵀ row k is p's row where ``touched[k]``
    # (a step changed it), glob's row otherwise (never copied); b1, fc2, b2 (the dense tail) are
    # p's, copied from glob per device. ``acc`` (scratch, zero on entry and on exit): this call's
    # Σ_d w_d (w_d - glob) in float32, added to out_sum at the end.
    touched = np.zeros(d_in, np.bool_)
    acc_rows = np.zeros(d_in, np.bool_)  # rows of fc1ᵀ acc holds
    h1 = np.empty((m_max, hid), np.float32)
    d1 = np.empty((m_max, hid), np.float32)
    d2 = np.empty((m_max, n_cls), np.float32)
    z2 = np.empty(n_cls, np.float32)
    lr32 = np.float32(lr)
    for d in range(dev_ptr.shape[0] - 1):
        wd = np.float32(weight[d])
        for i in range(o_b1, P):
            p[i] = glob[i]
        for s in range(dev_ptr[d], dev_ptr[d + 1]):
            last = s == dev_ptr[d + 1] - 1
            a = step_ptr[s]
            m = step_ptr[s + 1] - a
            inv_m = np.float32(1.0) / np.float32(max(m, min_den))
            for q in range(m):  # forward and the loss' gradient wrt the logits, sample by sample
                xi = x[pts[a + q]]
                for j in range(hid):
                    h1[q, j] = p[o_b1 + j]
                for k in range(d_in):  # z1 = b1 + Σ_k x_k fc1ᵀ[k]: rows of zero pixels skipped
                    v = xi[k]
                    if v != 0:
                        row = k * hid
                        if touched[k]:
                            for j in range(hid):
                                h1[q, j] += v * p[row + j]
                        else:
                            for j in range(hid):
                                h1[q, j] += v * glob[row + j]
                for j in range(hid):
                    if h1[q, j] < 0:
                        h1[q, j] = 0
                mx = np.float32(-np.inf)
                for c in range(n_cls):
                    acc_c = p[o_b2 + c]
                    row = o_w2 + c * hid
                    for j in range(hid):
                        acc_c += p[row + j] * h1[q, j]
                    z2[c] = acc_c
                    mx = max(mx, acc_c)
                se = 0.0
                for c in range(n_cls):
                    se += np.exp(np.float64(z2[c] - mx))
                label = y[pts[a + q]]
                cw = class_w[label]
                out_loss[a + q] = (np.log(se) + mx - z2[label]) * cw
                wm = inv_m * cw
                for c in range(n_cls):
                    d2[q, c] = np.float32(np.exp(np.float64(z2[c] - mx)) / se) * wm
                d2[q, label] -= wm
            for q in range(m):  # d h1 through the old fc2 weights, masked by ReLU
                for j in range(hid):
                    acc_j = np.float32(0.0)
                    if h1[q, j] > 0:
                        for c in range(n_cls):
                            acc_j += d2[q, c] * p[o_w2 + c * hid + j]
                    d1[q, j] = acc_j
            for c in range(n_cls):  # SGD step (eq. 3), fc2
                gb = np.float32(0.0)
                row = o_w2 + c * hid
                for q in range(m):
                    gb += d2[q, c]
                    g = lr32 * d2[q, c]
                    for j in range(hid):
                        p[row + j] -= g * h1[q, j]
                p[o_b2 + c] -= lr32 * gb
            for j in range(hid):
                gb = np.float32(0.0)
                for q in range(m):
                    gb += d1[q, j]
                p[o_b1 + j] -= lr32 * gb
            for q in range(m):  # fc1: only the rows of nonzero pixels change
                xi = x[pts[a + q]]
                for k in range(d_in):
                    v = xi[k]
                    if v != 0:
                        g = lr32 * v
                        row = k * hid
                        if not last:
                            if touched[k]:
                                for j in range(hid):
                                    p[row + j] -= g * d1[q, j]
                            else:  # the row's first change: p's row starts from glob's here
                                touched[k] = True
                                for j in range(hid):
                                    p[row + j] = glob[row + j] - g * d1[q, j]
                        else:  # the device's last step: its rows are not read again, so their
                            acc_rows[k] = True  # change goes into the sum instead of p
                            gw = wd * g
                            if touched[k]:
                                touched[k] = False  # done: w_d - glob of this row, into acc
                                for j in range(hid):
                                    acc[row + j] += wd * (p[row + j] - glob[row + j]) - gw * d1[q, j]
                            else:
                                for j in range(hid):
                                    acc[row + j] -= gw * d1[q, j]
        for k in range(d_in):  # rows the last step did not change: acc += w_d (p - glob)
            if touched[k]:
                touched[k] = False
                acc_rows[k] = True
                row = k * hid
                for j in range(hid):
                    acc[row + j] += wd * (p[row + j] - glob[row + j])
        for i in range(o_b1, P):
            acc[i] += wd * (p[i] - glob[i])
    for k in range(d_in):
        if acc_rows[k]:
            row = k * hid
            for j in range(hid):
                out_sum[row + j] += acc[row + j]
                acc[row + j] = 0
    for i in range(o_b1, P):
        out_sum[i] += acc[i]
        acc[i] = 0


def mlp_kernel_layout(kernel: BatchedMLP, flat: torch.Tensor, inverse: bool = False) -> torch.Tensor:
    """The MLP's flat parameters with ``fc1.weight`` stored transposed (``[in, hidden]``, the
    layout :func:`mlp_devices` works in; same size and offsets otherwise), or back with ``inverse``."""
    hid, d_in = dict(zip(kernel.layout.names, kernel.layout.shapes))["fc1.weight"]
    out = flat.clone()
    w1 = flat[:hid * d_in].view(d_in, hid) if inverse else flat[:hid * d_in].view(hid, d_in)
    out[:hid * d_in] = w1.t().reshape(-1)
    return out


def mlp_devices(kernel: BatchedMLP, x: torch.Tensor, y: torch.Tensor, glob: torch.Tensor, dev_ptr: np.ndarray,
                step_ptr: np.ndarray, pts: np.ndarray, weight: np.ndarray, lr: float, out_sum: np.ndarray,
                out_loss: np.ndarray, min_den: int = 1, class_weight: np.ndarray | None = None) -> None:
    """Device-major local SGD (eq. 3) for the MLP, one compiled call (numba, GIL released).

    ``glob [P]`` is the global model in :func:`mlp_kernel_layout` (``fc1.weight`` transposed).
    Device ``d`` starts from it and takes its steps ``dev_ptr[d] … dev_ptr[d+1] - 1`` in order;
    step ``s`` is one SGD step on the summed cross-entropy of its ``k`` samples
    ``x[pts[step_ptr[s] : step_ptr[s+1]]]``, each weighted by its class's ``class_weight`` (``None``: 1),
    divided by ``max(k, min_den)`` (``min_den = 1``: the mean; ``b`` for ``local_update="scaled:b"``),
    ``out_loss`` (float64) receiving each sample's weighted loss before that step. Then
    ``out_sum += Σ_d weight[d] · (w_d - glob)`` (float64, same layout; with weights summing to 1,
    ``glob + out_sum`` is eq. (4)).

    Memory traffic is what a device-step costs here (one sample touches ~150 of the 784 rows of
    ``fc1ᵀ``, 0.6 MB of model in all), so a device's model is never materialised: the first
    layer works on the rows of the sample's nonzero pixels only (the others neither contribute
    to the forward pass nor change: their gradient is ``d1 · x_k = 0``); a row is read from
    ``glob`` until a step of the device changes it, and only then copied into the device's
    scratch model; the device's *last* step writes its change of a row straight into the call's
    float32 sum instead (nothing reads the row again), so a device that takes one step never
    writes its model at all. A device's dense tail (``b1``, ``fc2``, ``b2``: 2,210 numbers) is
    copied per device. The call's float32 sum is added to ``out_sum`` at its end, rows the call
    touched only; the scratch (a model and that sum, per thread) is reused across calls. Same
    arithmetic as :meth:`BatchedMLP.sgd_step` in float32, to round-off.
    """
    names = kernel.layout.names
    shapes = dict(zip(names, kernel.layout.shapes))
    hid, d_in = shapes["fc1.weight"]
    n_cls = shapes["fc2.weight"][0]
    xs = x.reshape(x.shape[0], -1).to(torch.float32).contiguous().numpy()
    if xs.shape[1] != d_in:
        raise InputError(f"x: samples have {xs.shape[1]} features, the MLP takes {d_in}")
    labels = y.contiguous().numpy()
    if labels.dtype != np.int64 or labels.ndim != 1 or labels.shape[0] != xs.shape[0]:
        raise InputError("y: labels must be an int64 vector, one per sample of x")
    g = glob.to(torch.float32).contiguous().numpy()
    if g.shape != (kernel.layout.size,) or out_sum.shape != g.shape or out_sum.dtype != np.float64:
        raise InputError(f"glob, out_sum: must have shape [{kernel.layout.size}] (out_sum float64)")
    dev_ptr, step_ptr, pts = (np.ascontiguousarray(a, dtype=np.int64) for a in (dev_ptr, step_ptr, pts))
    if (len(dev_ptr) < 1 or dev_ptr[0] != 0 or dev_ptr[-1] != len(step_ptr) - 1 or step_ptr[0] != 0
            or step_ptr[-1] != len(pts) or np.any(np.diff(dev_ptr) < 0) or np.any(np.diff(step_ptr) < 1)):
        raise InputError("dev_ptr, step_ptr: must be non-decreasing offsets covering the steps and points "
                         "(every step at least one point)")
    if isinstance(min_den, bool) or not isinstance(min_den, (int, np.integer)) or min_den < 1:
        raise InputError(f"min_den = {min_den!r}: must be an integer ≥ 1")
    if weight.shape != (len(dev_ptr) - 1,) or out_loss.shape != pts.shape:
        raise InputError("weight: one per device; out_loss: one per point")
    _check_range("pts", pts, xs.shape[0], "sample indices", " (the rows of x)")
    _check_range("y", labels[pts], n_cls, "labels", f" (the model has {n_cls} classes)")
    cw = np.ones(n_cls, np.float32) if class_weight is None else np.ascontiguousarray(class_weight, dtype=np.float32)
    if cw.shape != (n_cls,):
        raise InputError(f"class_weight: one per class ({n_cls}), got shape {list(cw.shape)}")
    scratch = getattr(_MLP_SCRATCH, "buffers", None)  # per thread: the device's model and the call's sum
    if scratch is None or scratch[0].shape != g.shape:
        scratch = _MLP_SCRATCH.buffers = (np.empty(g.shape, np.float32), np.zeros(g.shape, np.float32))
    try:
        _mlp_devices(xs, labels, g, dev_ptr, step_ptr, pts, np.ascontiguousarray(weight, dtype=np.float64),
                     float(lr), int(hid), int(n_cls), out_sum, out_loss, scratch[0], scratch[1], int(min_den), cw)
    except BaseException:  # a call stopped part-way (only possible uncompiled): its sum is not zero
        _MLP_SCRATCH.buffers = None
        raise


#: :func:`mlp_devices`' scratch per thread (a model and a float32 sum, kept zero between calls): no
#: 1.3 MB of fresh pages per call.
_MLP_SCRATCH = threading.local()
