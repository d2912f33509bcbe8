"""Tracking which storage commands are durable.

Every storage command gets a fresh ``io_id``. The engine records, per
command, the vote and last log id that hold once it is durable; a flush of
``io_id`` makes the latest such record the durable state. Truncation clamps
the records of earlier, still unflushed appends, so a late flush can never
confirm entries that a truncation has since replaced (the ABA problem: a
confirmation from before a term change confirming new entries at the same
index).
"""

from __future__ import annotations

from collections import deque

from raftcore.ids import LogId, Vote


class IoProgress:
    __slots__ = ("_pending", "durable_log_id", "durable_vote", "flushed", "issued")

    def __init__(self, vote: Vote, last_log_id: LogId) -> None:
        self.issued = 0
        self.flushed = 0
        self.durable_vote = vote
        self.durable_log_id = last_log_id
        self._pending: deque[tuple[int, Vote, LogId]] = deque()

    def issue(self, vote: Vote, last_log_id: LogId) -> int:
        """Record a new storage command; returns its io id."""
        self.issued += 1
        self._pending.append((self.issued, vote, last_log_id))
        return self.issued

    def clamp(self, since: int, new_last: LogId) -> None:
        """A truncation at ``since``: no record may claim an entry at or after it."""
        if self.durable_log_id.index >= since:
            self.durable_log_id = new_last
        p = self._pending
        for i, (io, v, last) in enumerate(p):
            if last.index >= since:
                p[i] = (io, v, new_last)

    def flush(self, io_id: int) -> bool:
        """Mark everything up to ``io_id`` durable. Returns whether anything changed."""
        if io_id <= self.flushed:
            return False
        if io_id > self.issued:
            raise ValueError(f"io {io_id} was never issued (last issued: {self.issued})")
        p = self._pending
        rec = None
        while p and p[0][0] <= io_id:
            rec = p.popleft()
        self.flushed = io_id
        if rec is not None:
            self.durable_vote = rec[1]
            self.durable_log_id = rec[2]
        return True
