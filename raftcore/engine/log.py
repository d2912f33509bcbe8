"""The engine's in-memory copy of the log after the last purge."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from raftcore.entries import Entry
from raftcore.ids import ZERO_LOG_ID, LogId


class Log:
    """Entries ``first_index .. last_index``; ``last_purged`` precedes them.

    Every lookup is O(1) or O(log n): the hot path never scans the log.
    """

    __slots__ = ("_entries", "first_index", "last_purged")

    def __init__(self, entries: Sequence[Entry] = (), last_purged: LogId = ZERO_LOG_ID) -> None:
        self.last_purged = last_purged
        self.first_index = last_purged.index + 1
        self._entries: list[Entry] = list(entries)
        for i, e in enumerate(self._entries):
            if e.log_id.index != self.first_index + i:
                raise ValueError(
                    f"log entries are not contiguous after {last_purged!r}: "
                    f"entry {i} has index {e.log_id.index}"
                )

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def last_index(self) -> int:
        return self.first_index + len(self._entries) - 1

    def last_log_id(self) -> LogId:
        return self._entries[-1].log_id if self._entries else self.last_purged

    def log_id_at(self, index: int) -> LogId | None:
        """The log id at ``index``; ``None`` when purged (before last_purged) or absent."""
        i = index - self.first_index
        if i >= 0:
            return self._entries[i].log_id if i < len(self._entries) else None
        if index == self.last_purged.index:
            return self.last_purged
        return None

    def entry(self, index: int) -> Entry:
        return self._entries[index - self.first_index]

    def entries(self, start: int, end: int) -> list[Entry]:
        """Entries with ``start <= index < end``."""
        f = self.first_index
        return self._entries[start - f : end - f]

    def batch(self, start: int, max_count: int, max_bytes: int) -> list[Entry]:
        """Entries from ``start`` bounded by count and (estimated) bytes; at least one."""
        f = self.first_index
        out = self._entries[start - f : start - f + max_count]
        if max_bytes and len(out) > 1:
            total = 0
            for n, e in enumerate(out):
                total += e.size_hint()
                if total > max_bytes and n > 0:
                    return out[:n]
        return out

    def append(self, entries: Iterable[Entry]) -> None:
        self._entries.extend(entries)

    def truncate(self, since: int) -> None:
        """Remove every entry with index >= ``since``."""
        del self._entries[since - self.first_index :]

    def first_index_of_leader(self, index: int) -> int:
        """The first index whose entry has the same leader id as the entry at ``index``.

        Leader ids never decrease along a log, so a binary search suffices.
        """
        target = self.entry(index).log_id
        key = (target.term, target.node_id)
        lo, hi = self.first_index, index
        while lo < hi:
            mid = (lo + hi) // 2
            m = self._entries[mid - self.first_index].log_id
            if (m.term, m.node_id) < key:
                lo = mid + 1
            else:
                hi = mid
        return lo

    def all_entries(self) -> list[Entry]:
        return list(self._entries)
