"""The per-run result store of a run directory.

Each finished run is one JSON file ``results/<key>.json`` written by a temporary file and a
rename, so an interrupted sweep never leaves half a result and a restarted one skips it.
"""

from __future__ import annotations

import json
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

    def path(self, key: str) -> Path:
        return self.folder / f"{key}.json"

    def has(self, key: str) -> bool:
        return self.path(key).is_file()

    def load(self, key: str) -> dict[str, Any]:
        return read_json(self.path(key))

    def save(self, key: str, record: dict[str, Any]) -> Path:
        return atomic_write_json(self.path(key), record)
