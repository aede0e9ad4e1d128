"""Ctrl-C for compiled solvers: a kernel runs in a worker thread and polls a stop flag.

A numba kernel holds the GIL unless compiled with ``nogil=True``, and Python runs signal handlers
only between bytecodes of the main thread, so a long kernel called directly ignores Ctrl-C until it
returns. The convention here:

- a kernel that may run long is compiled with ``nogil=True`` and takes a ``stop`` argument, a
  one-element ``uint8`` array; it checks ``stop[0] != 0`` every few thousand steps and then returns
  at once with its own "interrupted" status;
- the Python side calls it through :func:`call`, which runs it in a daemon thread and waits; a
  ``KeyboardInterrupt`` in the main thread sets the flag, waits for the kernel to return (it polls
  often enough to do so well within a second) and raises :class:`PlanInterrupted`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import numpy as np

from foglearn.errors import FoglearnError

#: seconds the main thread sleeps between checks for Ctrl-C while a kernel runs
_POLL_S = 0.05
#: seconds to wait for a stopped kernel to return before giving up on it (it is a daemon thread)
_GRACE_S = 1.0


class PlanInterrupted(FoglearnError, KeyboardInterrupt):
    """Planning was stopped by Ctrl-C; nothing was returned."""


def new_stop_flag() -> np.ndarray:
    """A fresh stop flag for one kernel call (``stop[0] = 1`` asks it to return)."""
    return np.zeros(1, dtype=np.uint8)


def call(kernel: Callable[..., Any], *args: Any, stop: np.ndarray) -> Any:
    """Run ``kernel(*args, stop)`` so that Ctrl-C stops it within a second.

    ``stop`` must be the flag the kernel polls (passed as its last argument). Returns what the
    kernel returns; raises :class:`PlanInterrupted` on Ctrl-C and re-raises the kernel's exceptions.
    """
    box: dict[str, Any] = {}

    def work() -> None:
        try:
            box["value"] = kernel(*args, stop)
        except BaseException as exc:  # re-raised in the caller's thread
            box["error"] = exc

    thread = threading.Thread(target=work, name="foglearn-kernel", daemon=True)
    thread.start()
    try:
        while thread.is_alive():
            thread.join(_POLL_S)
    except KeyboardInterrupt:
        stop[0] = 1
        thread.join(_GRACE_S)
        raise PlanInterrupted("planning interrupted (Ctrl-C); no plan was returned") from None
    if "error" in box:
        raise box["error"]
    return box["value"]


__all__ = ["PlanInterrupted", "call", "new_stop_flag"]
