"""A leader's view of one follower's replication."""

from __future__ import annotations

from collections import deque

from raftcore.ids import ZERO_LOG_ID, LogId
from raftcore.snapshots import SnapshotMeta


class SnapshotSend:
    """A snapshot on its way to one follower, in chunks.

    ``sent``: the offset of the next chunk to send; ``inflight`` holds
    ``(seq, start, end, sent_at)`` of chunks not yet acknowledged (the last
    chunk stays there until the follower reports the snapshot installed).
    """

    __slots__ = ("acked", "inflight", "meta", "sent")

    def __init__(self, meta: SnapshotMeta) -> None:
        self.meta = meta
        self.sent = 0
        #: The greatest offset the follower asked for next.
        self.acked = 0
        self.inflight: deque[tuple[int, int, int, float]] = deque()

    @property
    def complete(self) -> bool:
        """Has every chunk been sent (an empty snapshot still sends one)?"""
        return self.sent >= self.meta.size and (self.sent > 0 or bool(self.inflight))

    def rewind(self, offset: int) -> None:
        """Resend from ``offset``: everything in flight is presumed lost."""
        self.sent = offset
        self.inflight.clear()


class Progress:
    """Replication state of one target (voter or learner).

    ``probing``: at most one append in flight, looking for the match point.
    Otherwise pipelining: up to the inflight window, ``next_index`` advanced
    optimistically. ``inflight`` holds ``(seq, last_index, bytes, sent_at)``.
    """

    __slots__ = (
        "acked_at",
        "inflight",
        "inflight_bytes",
        "last_sent_at",
        "matching",
        "next_index",
        "probing",
        "reset_seq",
        "snapshot",
    )

    def __init__(self, next_index: int, now: float) -> None:
        self.matching: LogId = ZERO_LOG_ID
        self.next_index = next_index
        self.probing = True
        self.inflight: deque[tuple[int, int, int, float]] = deque()
        self.inflight_bytes = 0
        #: Conflict answers to requests sent before this seq are stale.
        self.reset_seq = 0
        self.last_sent_at = float("-inf")
        #: ``sent_at`` of the latest request this follower acknowledged.
        self.acked_at = now
        #: The snapshot being sent instead of entries (its next index is purged).
        self.snapshot: SnapshotSend | None = None

    def reset(self, next_index: int, seq: int) -> None:
        """Back to probing from ``next_index``; forget what is in flight."""
        self.next_index = max(next_index, self.matching.index + 1)
        self.probing = True
        self.inflight.clear()
        self.inflight_bytes = 0
        self.reset_seq = seq

    def ack(self, seq: int, matching_index: int) -> None:
        """A response to request ``seq`` confirmed entries up to ``matching_index``.

        An earlier request whose entries are not confirmed stays in flight even
        if a later one (a heartbeat) was answered: it may have been lost, and
        the replication timeout must still see it.
        """
        fl = self.inflight
        while fl and fl[0][0] <= seq and fl[0][1] <= matching_index:
            self.inflight_bytes -= fl.popleft()[2]

    def __repr__(self) -> str:
        mode = "snapshot" if self.snapshot else "probe" if self.probing else "pipeline"
        return (
            f"Progress(matching={self.matching!r}, next={self.next_index}, {mode}, "
            f"inflight={len(self.inflight)})"
        )
