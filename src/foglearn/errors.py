"""foglearn's exceptions: one root, input errors apart from failures.

- :class:`InputError` — what the caller gave is wrong (a scenario, a data set, a plan, a config, an
  option). The message names the field, the index and the rule. The CLI exits with code 2.
- :class:`SolverError` — the input was valid but a solver could not finish or certify its answer
  (a duality gap above tolerance, a reference solver's failure). The CLI exits with code 1.
- :class:`RunError` — a run (a sweep, a Flower run) ran and failed. The CLI exits with code 1.

Every module's own error class derives from one of these, so ``except FoglearnError`` catches
everything foglearn raises on purpose.
"""

from __future__ import annotations


class FoglearnError(Exception):
    """Root of every error foglearn raises on purpose."""


class InputError(FoglearnError, ValueError):
    """The caller's input breaks a rule; the message names the field, the index and the rule."""


class SolverError(FoglearnError, RuntimeError):
    """A solver could not finish or certify its plan on valid input."""


class RunError(FoglearnError, RuntimeError):
    """A run (a sweep cell, a Flower run) ran and failed."""


__all__ = ["FoglearnError", "InputError", "RunError", "SolverError"]
