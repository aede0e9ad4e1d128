"""The ``foglearn`` command line: thin shells over the library's functions.

Each command group lives in its own module and is registered here; a module that fails to
import (e.g. an optional dependency missing) only disables its own commands.
"""

from __future__ import annotations

import importlib

import typer

app = typer.Typer(
    name="foglearn",
    help="Network-aware distributed learning in fog networks (Tu et al., INFOCOM 2020).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)



@app.callback()
def _root() -> None:
    """Network-aware distributed learning in fog networks (Tu et al., INFOCOM 2020)."""


# module -> how it attaches: each module exposes `register(app)`.
_COMMAND_MODULES = (
    "foglearn.cli.plan",       # foglearn plan
    "foglearn.cli.run",        # foglearn run, foglearn train
    "foglearn.cli.data",       # foglearn data fetch|info
    "foglearn.cli.theory",     # foglearn theory ...
    "foglearn.cli.reproduce",  # foglearn reproduce NAME
    "foglearn.cli.flower",     # foglearn flower ...
)

for _name in _COMMAND_MODULES:
    try:
        _mod = importlib.import_module(_name)
    except ModuleNotFoundError as _exc:  # a command group not built yet, or an optional dependency
        if _exc.name != _name:
            raise
        continue
    _mod.register(app)


def main() -> None:
    """Entry point of the ``foglearn`` script."""
    app()
