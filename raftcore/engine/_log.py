"""The engine's in-memory copy of the log after the last purge."""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Sequence
from itertools import accumulate

from raftcore.entries import Entry
from raftcore.ids import ZERO_LOG_ID, LogId


class Log:
    """Entries ``first_index .. last_index``; ``last_purged`` precedes them.

    Every lookup is O(1) or O(log n): the hot path never scans the log.
    """

    __slots__ = ("_cum", "_entries", "first_index", "last_purged")

    def __init__(self, entries: Sequence[Entry] = (), last_purged: LogId = ZERO_LOG_ID) -> None:
        self.last_purged = last_purged
        self.first_index = last_purged.index + 1
        self._entries: list[Entry] = list(entries)
        #: ``_cum[k]``: estimated bytes of ``_entries[:k]``; extended lazily by
        #: ``batch``, so each entry is sized once however many followers read it.
        self._cum: list[int] = [0]
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

    def batch(self, start: int, max_count: int, max_bytes: int) -> tuple[list[Entry], int]:
        """Entries from ``start`` bounded by count and (estimated) bytes; at least one.

        Returns the entries and their estimated size in bytes.
        """
        lo = start - self.first_index
        ents = self._entries
        hi = min(lo + max_count, len(ents))
        cum = self._cum
        if len(cum) <= hi:
            done = len(cum) - 1
            cum.extend(accumulate(map(Entry.size_hint, ents[done:hi]), initial=cum[-1]))
            del cum[done + 1]  # accumulate() repeats its initial value first
        base = cum[lo]
        if cum[hi] - base > max_bytes and hi - lo > 1:
            # The longest prefix within budget, but never less than one entry.
            hi = max(lo + 1, bisect_right(cum, base + max_bytes, lo + 1, hi + 1) - 1)
        return ents[lo:hi], cum[hi] - base

    def append(self, entries: Iterable[Entry]) -> None:
        self._entries.extend(entries)

    def purge(self, upto: LogId) -> None:
        """Drop every entry with index <= ``upto.index``; ``upto`` becomes
        ``last_purged`` (past the last entry, the log is left empty)."""
        n = min(upto.index - self.first_index + 1, len(self._entries))
        if n > 0:
            del self._entries[:n]
        if upto.index >= self.first_index:
            self.first_index = upto.index + 1
            self.last_purged = upto
            self._cum = [0]  # sizes are recomputed lazily from the new first entry

    def truncate(self, since: int) -> None:
        """Remove every entry with index >= ``since``."""
        del self._entries[since - self.first_index :]
        del self._cum[since - self.first_index + 1 :]

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
