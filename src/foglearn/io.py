"""Atomic file output shared by every layer: run directories, caches, reports and plots.

Everything foglearn writes goes through :func:`atomic_write` (a temporary file in the same
folder, then :func:`os.replace`), so an interrupted run never leaves half a file behind.
"""

from __future__ import annotations

import io
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Literal


def atomic_write(path: str | os.PathLike[str], data: bytes | str) -> Path:
    """Write ``data`` (text is UTF-8 encoded) to ``path`` atomically; the file is world-readable.

    The bytes reach the disk (``fsync``) before the rename, so a crash leaves the old file or the
    new one, never an empty one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def jsonable(value: Any, nonfinite: Literal["null", "string"] = "null") -> Any:
    """``value`` as plain JSON types: numpy scalars/arrays unwrapped, paths as strings.

    JSON has no NaN/inf: ``nonfinite="null"`` writes them as ``null``; ``"string"`` as ``"nan"``,
    ``"inf"``, ``"-inf"`` (so a reader can restore them).
    """
    if isinstance(value, dict):
        return {str(k): jsonable(v, nonfinite) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v, nonfinite) for v in value]
    if hasattr(value, "tolist") and callable(value.tolist):  # numpy array or scalar
        return jsonable(value.tolist(), nonfinite)
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None if nonfinite == "null" else str(value)
    return value


def write_json(path: str | os.PathLike[str], payload: Any, nonfinite: Literal["null", "string"] = "null",
               indent: int = 2) -> Path:
    """``payload`` as JSON, atomically (see :func:`jsonable` for NaN/inf)."""
    text = json.dumps(jsonable(payload, nonfinite), indent=indent, allow_nan=False)
    return atomic_write(path, text + "\n")


def save_figure(fig: Any, path: str | os.PathLike[str], dpi: int = 110) -> Path:
    """Render a matplotlib figure to PNG, write it atomically and close the figure."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    return atomic_write(path, buf.getvalue())
