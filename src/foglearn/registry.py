"""Named extension points: one :class:`Registry` per kind (topologies, cost profiles, models,
solvers, experiments).

Each registry lives in the module that owns its kind (``foglearn.network.topology.TOPOLOGIES``,
``foglearn.learning.models.MODELS``, …) and every entry is registered next to the function it
names, so adding a topology, a model, a solver or an experiment is one decorated function in one
file. Everything that offers a choice — generators, sweeps, the Flower run config, CLI help — reads
the names from the registry; an unknown name is an :class:`~foglearn.errors.InputError` that lists
the known ones. See ``docs/extending.md``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from foglearn.errors import InputError

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class Entry(Generic[F]):
    """One named extension: the object itself, a one-line description and its parameters."""

    name: str
    obj: F
    description: str
    params: Mapping[str, Any] = field(default_factory=dict)


class Registry(Mapping[str, Entry[F]]):
    """A mapping ``name → Entry`` for one kind of extension (``kind`` names it in errors)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Entry[F]] = {}

    def register(self, name: str, description: str, **params: Any) -> Callable[[F], F]:
        """Decorator: ``@REG.register("name", "one line", param=default, …)`` above the function."""
        def add(obj: F) -> F:
            self.add(name, obj, description, **params)
            return obj
        return add

    def add(self, name: str, obj: F, description: str, **params: Any) -> None:
        """Register ``obj`` under ``name``; a name may be registered once."""
        if not name or name != name.strip():
            raise InputError(f"{self.kind} name {name!r}: must be a non-empty word")
        if name in self._entries:
            raise InputError(f"{self.kind} {name!r}: already registered")
        self._entries[name] = Entry(name, obj, description, dict(params))

    def remove(self, name: str) -> None:
        """Unregister ``name`` (tests that register a toy entry clean up with this)."""
        self._entries.pop(name, None)

    def get_entry(self, name: str, field: str | None = None,
                  error: type[InputError] = InputError) -> Entry[F]:
        """The entry for ``name``; an unknown name raises ``error`` (an :class:`InputError`)
        naming ``field`` and the known names."""
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            label = field or self.kind
            raise error(f"{label} = {name!r}: unknown {self.kind}; "
                        f"known: {', '.join(self.names())}") from None

    def __getitem__(self, name: str) -> Entry[F]:
        return self.get_entry(name)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def get(self, name: str, default: Any = None) -> Any:
        """The entry for ``name``, or ``default`` (``Mapping.get``; never raises)."""
        return self._entries.get(name, default)

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def names(self) -> tuple[str, ...]:
        """The registered names, in registration order."""
        return tuple(self._entries)

    def help(self) -> str:
        """``name: description`` lines, for CLI help and docs."""
        return "; ".join(f"{e.name}: {e.description}" for e in self._entries.values())


__all__ = ["Entry", "Registry"]
