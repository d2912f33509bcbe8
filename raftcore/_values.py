"""Value classes: NamedTuples that compare like records, not like tuples.

Events, commands and messages are built on the hot path, where a NamedTuple
costs a third of an ``attrs.frozen`` class. Plain tuple equality would make
``Wakeup() == TriggerElection()`` and ``Send(2, m) == (2, m)``; ``value``
makes equality and hashing include the type.
"""

from __future__ import annotations

from typing import Any, TypeVar

T = TypeVar("T", bound=type)


def _eq(self: tuple[Any, ...], other: object) -> bool:
    return type(self) is type(other) and tuple.__eq__(self, other)


def _ne(self: tuple[Any, ...], other: object) -> bool:
    return not _eq(self, other)


def _hash(self: tuple[Any, ...]) -> int:
    return hash((type(self).__name__, tuple.__hash__(self)))


def value(cls: T) -> T:
    """Class decorator: type-aware ``==``, ``!=`` and ``hash`` for a NamedTuple."""
    setattr(cls, "__eq__", _eq)  # noqa: B010 - mypy refuses method assignment
    setattr(cls, "__ne__", _ne)  # noqa: B010
    setattr(cls, "__hash__", _hash)  # noqa: B010
    return cls
