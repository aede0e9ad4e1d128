"""Shared pieces of the command line: clear errors, cost tables and ``--json`` output."""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator
from typing import Annotated, Any, NoReturn

import typer
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

# Piped output (logs, CI, README examples) gets room for a full cost table instead of 80 columns.
console = Console() if sys.stdout.isatty() else Console(width=120)
err_console = Console(stderr=True)


#: ``--json``: the command's numbers as one JSON document on stdout; messages and progress go to stderr.
JsonFlag = Annotated[bool, typer.Option(
    "--json", help="print the numbers as one JSON document on stdout (nothing else there; messages go to stderr)")]


@contextlib.contextmanager
def json_mode(active: bool) -> Iterator[None]:
    """With ``active``, whatever is printed on stdout meanwhile (tables, progress) goes to stderr."""
    if not active:
        yield
        return
    with contextlib.redirect_stdout(sys.stderr):
        yield


def emit_json(payload: Any) -> None:
    """``payload`` as JSON on stdout (numpy values unwrapped, NaN/inf as null)."""
    from foglearn.io import jsonable

    sys.stdout.write(json.dumps(jsonable(payload), indent=2, allow_nan=False) + "\n")
    sys.stdout.flush()


def fail(message: str, code: int = 2) -> NoReturn:
    """Print a clear error (no traceback) and exit with ``code``."""
    err_console.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True, highlight=False)
    raise typer.Exit(code)


def cost_table(rows: list[tuple[str, dict[str, Any]]], title: str, extra: tuple[str, ...] = ()) -> Table:
    """A rich table of cost breakdowns (one row per setting); ``extra`` names more float columns."""
    table = Table(title=title, box=box.SIMPLE_HEAD, padding=(0, 1))
    table.add_column("setting", no_wrap=True)
    for col in ("process", "transfer", "discard", "total", "unit", "offload %", "discard %", "overloads", *extra):
        table.add_column(col, justify="right", no_wrap=True)
    for name, c in rows:
        table.add_row(name, f"{c['processing']:.1f}", f"{c['transfer']:.1f}", f"{c['discard']:.1f}",
                      f"{c['total']:.1f}", f"{c['unit']:.4f}", f"{100 * c['offload_rate']:.1f}%",
                      f"{100 * c['discard_rate']:.1f}%", str(c["violations"]),
                      *(f"{c[k]:.4f}" if isinstance(c.get(k), float) else str(c.get(k, "")) for k in extra))
    return table
