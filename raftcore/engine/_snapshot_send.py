"""The leader's side of a snapshot transfer: chunks within a window.

A follower whose next entry is purged gets the latest snapshot instead, in
chunks of at most ``snapshot_chunk_size`` bytes with at most
``snapshot_window`` unacknowledged. The engine sends only offsets and
lengths (``SendSnapshotChunk``); the adapter reads the bytes. The transfer
lives in the follower's ``Progress``, so losing leadership drops it.
"""

from __future__ import annotations

from raftcore.commands import SendSnapshotChunk
from raftcore.engine._apply import build_snapshot
from raftcore.engine._progress import Progress, SnapshotSend
from raftcore.engine._state import NodeState
from raftcore.ids import NodeId
from raftcore.messages import InstallSnapshotRequest


def start_transfer(s: NodeState, to: NodeId, p: Progress, now: float) -> None:
    """``to`` needs purged entries: send it the latest snapshot."""
    snap = s.snapshot
    if snap is None:
        # Purged with no snapshot known (a store restored without one):
        # build one; the transfer starts when it is ready.
        build_snapshot(s)
        return
    p.snapshot = SnapshotSend(snap)
    send_chunks(s, to, p, now)


def send_chunks(s: NodeState, to: NodeId, p: Progress, now: float) -> None:
    """Send what the window allows."""
    t = p.snapshot
    assert t is not None
    meta = t.meta
    chunk = s.config.snapshot_chunk_size
    window = s.config.snapshot_window
    while len(t.inflight) < window and not t.complete:
        start = t.sent
        end = min(start + chunk, meta.size)
        s.seq += 1
        t.inflight.append((s.seq, start, end, now))
        t.sent = end
        p.last_sent_at = now
        req = InstallSnapshotRequest(s.vote, meta, start, b"", s.seq, now)
        s.emit(SendSnapshotChunk(to, req, end - start))


def resend_lost_chunks(s: NodeState, to: NodeId, p: Progress, now: float) -> None:
    """Leader tick: the oldest chunk unanswered for the append timeout is
    presumed lost, and everything from it is sent again."""
    t = p.snapshot
    if t is not None and t.inflight and t.inflight[0][3] + s.config.append_timeout <= now:
        t.rewind(t.inflight[0][1])
        send_chunks(s, to, p, now)
