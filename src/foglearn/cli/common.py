"""Shared pieces of the command line: clear errors, atomic JSON, cost tables."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

console = Console()
err_console = Console(stderr=True)


def fail(message: str, code: int = 2) -> None:
    """Print a clear error (no traceback) and exit with ``code``."""
    err_console.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True, highlight=False)
    raise typer.Exit(code)


def write_json_atomic(path: Path, payload: Any) -> None:
    """Write JSON via a temporary file and a rename, so a crash never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    with os.fdopen(fd, "w") as fh:
        json.dump(payload, fh, indent=2, default=float)
    os.replace(tmp, path)


def cost_table(rows: list[tuple[str, dict[str, Any]]], title: str, extra: tuple[str, ...] = ()) -> Table:
    """A rich table of cost breakdowns (one row per setting)."""
    table = Table(title=title)
    table.add_column("setting")
    for col in ("processing", "transfer", "discard", "total", "unit", "offload %", "discard %", "violations", *extra):
        table.add_column(col, justify="right")
    for name, c in rows:
        table.add_row(name, f"{c['processing']:.2f}", f"{c['transfer']:.2f}", f"{c['discard']:.2f}",
                      f"{c['total']:.2f}", f"{c['unit']:.4f}", f"{100 * c['offload_rate']:.1f}",
                      f"{100 * c['discard_rate']:.1f}", str(c["violations"]),
                      *(f"{c[k]:.4f}" if isinstance(c.get(k), float) else str(c.get(k, "")) for k in extra))
    return table
