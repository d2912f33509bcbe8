"""Log entries and their payloads."""

from __future__ import annotations

import enum
from typing import Any, NamedTuple

from raftcore.ids import LogId
from raftcore.membership import Membership

# A tuple, not a union: isinstance() with a tuple is several times faster.
_SIZED = (bytes, bytearray, str)


class EntryKind(enum.IntEnum):
    BLANK = 0
    NORMAL = 1
    MEMBERSHIP = 2


class Entry(NamedTuple):
    """One log entry.

    ``data`` is the application's payload for ``NORMAL`` entries (any value
    the codec can encode; opaque to the engine), the ``Membership`` for
    ``MEMBERSHIP`` entries, and ``None`` for ``BLANK`` entries (a new leader's
    first entry).
    """

    log_id: LogId
    kind: EntryKind
    data: Any = None

    @property
    def index(self) -> int:  # type: ignore[override]
        return self.log_id.index

    @property
    def membership(self) -> Membership | None:
        return self.data if self.kind is EntryKind.MEMBERSHIP else None

    def size_hint(self) -> int:
        """A cheap estimate of the entry's encoded size, for byte budgets."""
        d = self.data
        if isinstance(d, _SIZED):
            return 24 + len(d)
        return 32


def blank(log_id: LogId) -> Entry:
    return Entry(log_id, EntryKind.BLANK, None)


def normal(log_id: LogId, data: Any) -> Entry:
    return Entry(log_id, EntryKind.NORMAL, data)


def membership_entry(log_id: LogId, membership: Membership) -> Entry:
    return Entry(log_id, EntryKind.MEMBERSHIP, membership)
