"""The per-run result store of a run directory.

Each finished run is one JSON file ``results/<key>.json`` written by a temporary file and a
rename, so an interrupted sweep never leaves half a result and a restarted one skips it. A file
that is damaged anyway (a crash before the data reached the disk, a copy cut short) counts as
unfinished: :meth:`ResultStore.has` is false for it, with a one-line warning, and the run is
computed again.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

from foglearn.io import write_json


def _restore(value: Any) -> Any:
    if isinstance(value, str) and value in ("nan", "inf", "-inf"):
        return float(value)
    if isinstance(value, dict):
        return {k: _restore(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_restore(v) for v in value]
    return value


def atomic_write_json(path: str | Path, payload: Any) -> Path:
    """JSON with NaN/inf stored as strings, restored by :func:`read_json`."""
    return write_json(path, payload, nonfinite="string", indent=1)


def read_json(path: str | Path) -> Any:
    with Path(path).open(encoding="utf-8") as fh:
        return _restore(json.load(fh))


class ResultStore:
    """``<root>/results/<key>.json``: one finished run per file."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.folder = self.root / "results"
        self._warned: set[Path] = set()

    def path(self, key: str) -> Path:
        return self.folder / f"{key}.json"

    def get(self, key: str) -> dict[str, Any] | None:
        """The record of run ``key``; ``None`` if it has none or its file is truncated or not a
        JSON object (then a one-line :class:`RuntimeWarning`, once per file, says that the run is
        computed again)."""
        path = self.path(key)
        if not path.is_file():
            return None
        try:
            record = read_json(path)
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            why = f"truncated or not JSON ({exc})"
        else:
            if isinstance(record, dict):
                return record
            why = f"holds a {type(record).__name__}, not a run's record"
        if path not in self._warned:
            self._warned.add(path)
            warnings.warn(f"{path}: {why}; the run is computed again", RuntimeWarning, stacklevel=2)
        return None

    def has(self, key: str) -> bool:
        """Whether run ``key`` has a readable record (a damaged file counts as unfinished)."""
        return self.get(key) is not None

    def load(self, key: str) -> dict[str, Any]:
        """The record of run ``key``; an error if it is missing or damaged (see :meth:`get`)."""
        record = self.get(key)
        if record is None:
            raise FileNotFoundError(f"{self.path(key)}: no readable record of run {key}")
        return record

    def save(self, key: str, record: dict[str, Any]) -> Path:
        return atomic_write_json(self.path(key), record)
