"""Input validation shared by the theorem modules: errors name the argument and the rule."""

from __future__ import annotations

import math
from numbers import Integral, Real

from foglearn.errors import InputError


class TheoryError(InputError):
    """An argument of a theorem function breaks the theorem's assumptions; the message says which."""


def positive(name: str, value: object) -> float:
    """``value`` as a finite float > 0, else :class:`TheoryError` naming ``name``."""
    v = real(name, value)
    if not v > 0:
        raise TheoryError(f"{name} = {value!r}: must be > 0")
    return v


def nonnegative(name: str, value: object) -> float:
    """``value`` as a finite float ≥ 0."""
    v = real(name, value)
    if v < 0:
        raise TheoryError(f"{name} = {value!r}: must be ≥ 0")
    return v


def real(name: str, value: object) -> float:
    """``value`` as a finite float."""
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TheoryError(f"{name} = {value!r}: must be a real number")
    v = float(value)
    if not math.isfinite(v):
        raise TheoryError(f"{name} = {value!r}: must be finite")
    return v


def count(name: str, value: object, minimum: int = 1) -> int:
    """``value`` as an int ≥ ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise TheoryError(f"{name} = {value!r}: must be a whole number")
    v = int(value)
    if v < minimum:
        raise TheoryError(f"{name} = {value!r}: must be ≥ {minimum}")
    return v


def choice(name: str, value: object, options: tuple[str, ...]) -> str:
    """``value`` if it is one of ``options``."""
    if value not in options:
        raise TheoryError(f"{name} = {value!r}: must be one of {', '.join(map(repr, options))}")
    return str(value)
