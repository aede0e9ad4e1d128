"""Reading ``.npz`` archives that may be hostile: every member's header is checked first.

:func:`numpy.load` trusts a member's ``.npy`` header: it allocates the shape the header claims
before it reads a byte of data (a header claiming ``[10**9, 10**9]`` is a 7 EiB ``MemoryError``,
a smaller lie a real allocation), and a deflated member can expand ~1000-fold. :func:`read_npz`
reads only the members asked for, refuses pickled (object) members, and before anything is
allocated checks that the claimed shape fits in the bytes the archive can really hold (a stored
member holds its size; deflate cannot expand data more than :data:`MAX_DEFLATE_RATIO`-fold) and
lets the caller check the shape and dtype (:data:`HeaderCheck`). The data sets
(:mod:`foglearn.learning.datasets`) and scenario files (:mod:`foglearn.network.scenario`) are
read through it.
"""

from __future__ import annotations

import math
import os
import zipfile
import zlib
from collections.abc import Callable, Iterable
from typing import IO

import numpy as np
from numpy.lib import format as npy

#: deflate (RFC 1951) cannot expand data more than 1032-fold (258-byte matches in 2-bit codes).
MAX_DEFLATE_RATIO = 1032
#: A member's ``.npy`` header (its dict text) is refused beyond this many bytes.
MAX_HEADER_BYTES = 10_000

#: Called with (member name, shape, dtype) before a member's data is read; returns ``None`` if
#: the member is acceptable, else the rule it breaks (the message names file and member).
HeaderCheck = Callable[[str, tuple[int, ...], np.dtype], str | None]


def _header(fh: IO[bytes]) -> tuple[tuple[int, ...], np.dtype]:
    version = npy.read_magic(fh)
    if version == (1, 0):
        shape, _, dtype = npy.read_array_header_1_0(fh, max_header_size=MAX_HEADER_BYTES)
    elif version == (2, 0):
        shape, _, dtype = npy.read_array_header_2_0(fh, max_header_size=MAX_HEADER_BYTES)
    else:
        raise ValueError(f"unsupported .npy format version {version}")
    return tuple(int(d) for d in shape), np.dtype(dtype)


def read_npz(path: str | os.PathLike[str], names: Iterable[str], error: type[Exception],
             check: HeaderCheck | None = None) -> dict[str, np.ndarray]:
    """The arrays ``names`` of the ``.npz`` at ``path``, read only after every one's header passed.

    Raises ``error`` (a :class:`foglearn.errors.InputError` subclass) naming the file, the member
    and the rule when the file is not a readable archive, a member is missing, holds pickled
    objects, claims more data than the archive can hold, or fails ``check``.
    """
    out: dict[str, np.ndarray] = {}
    name = ""
    try:
        on_disk = os.path.getsize(path)
        with zipfile.ZipFile(path) as zf:
            members = {info.filename: info for info in zf.infolist()}
            checked = []
            # every member's presence and header first: a bad or missing later member fails before any data
            # is unpacked (a deflated member may expand up to MAX_DEFLATE_RATIO times)
            for name in names:
                info = members.get(f"{name}.npy")
                if info is None:
                    raise error(f"{path}: missing array {name!r}")
                if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                    raise error(f"{path}: {name}: compression type {info.compress_type} is not supported "
                                "(np.savez writes stored or deflated members)")
                # what the member can really hold, whatever its directory entry says
                ratio = MAX_DEFLATE_RATIO if info.compress_type == zipfile.ZIP_DEFLATED else 1
                capacity = min(info.file_size, ratio * min(info.compress_size, on_disk))
                with zf.open(info) as fh:
                    shape, dtype = _header(fh)
                    start = fh.tell()
                if dtype.hasobject:
                    raise error(f"{path}: {name} holds pickled Python objects (dtype {dtype}); "
                                "only plain numeric arrays are read")
                need = math.prod(shape) * dtype.itemsize
                if need > capacity - start:
                    raise error(f"{path}: {name}: header claims shape {list(shape)} ({need} bytes of "
                                f"{dtype}), the archive holds at most {max(capacity - start, 0)} bytes for it "
                                "(truncated or corrupt)")
                rule = check(name, shape, dtype) if check is not None else None
                if rule is not None:
                    raise error(f"{path}: {name}: {rule}")
                checked.append((name, info))
            for name, info in checked:
                with zf.open(info) as fh:
                    out[name] = npy.read_array(fh, allow_pickle=False)
    except MemoryError:
        raise error(f"{path}: {name}: not enough memory to read it") from None
    except (OSError, EOFError, ValueError, zipfile.BadZipFile, zlib.error) as exc:
        if isinstance(exc, error):
            raise
        where = f" (member {name}.npy)" if name else ""
        raise error(f"{path}: not a readable .npz{where} ({type(exc).__name__}: {exc})") from exc
    return out


__all__ = ["MAX_DEFLATE_RATIO", "HeaderCheck", "read_npz"]
