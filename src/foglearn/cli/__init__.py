"""The ``foglearn`` command line: thin shells over the library's functions.

Each command group lives in its own module and is registered here; a module that fails to
import (e.g. an optional dependency missing) only disables its own commands.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable
from typing import Any

import typer

from foglearn.cli.common import fail
from foglearn.errors import FoglearnError, InputError

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
    "foglearn.cli.sweep",      # foglearn sweep GRID.toml key=value ...
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


def _caused_by_ctrl_c(exc: SystemError) -> bool:
    """Whether a chain of CPython SystemErrors ("... returned a result with an exception set") ends in Ctrl-C."""
    cause: BaseException | None = exc.__cause__
    for _ in range(16):
        if isinstance(cause, KeyboardInterrupt):
            return True
        if not isinstance(cause, SystemError):
            return False
        cause = cause.__cause__
    return False


def _guarded(fn: Callable[..., Any]) -> Callable[..., Any]:
    """The one CLI error printer: bad input exits 2, a failure 1, Ctrl-C 130, each without a traceback."""
    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except KeyboardInterrupt as exc:
            fail(str(exc) or "interrupted (Ctrl-C); finished work is kept", 130)
        except InputError as exc:
            fail(str(exc), 2)
        except FoglearnError as exc:
            fail(str(exc), 1)
        except SystemError as exc:
            # Ctrl-C while a compiled (numba) kernel runs in this thread: CPython reports the pending
            # KeyboardInterrupt as "returned a result with an exception set", with it as the cause
            # (or as the cause of such a SystemError, when it landed in a helper the kernel called)
            if _caused_by_ctrl_c(exc):
                fail("interrupted (Ctrl-C); finished work is kept", 130)
            raise
    return run


def _guard_all(typer_app: typer.Typer) -> None:
    for command in typer_app.registered_commands:
        if command.callback is not None:
            command.callback = _guarded(command.callback)
    for group in typer_app.registered_groups:
        if group.typer_instance is not None:
            _guard_all(group.typer_instance)


_guard_all(app)


def main() -> None:
    """Entry point of the ``foglearn`` script."""
    app()
