"""The leader's sending side of replication: appends within each follower's
window, heartbeats, and appending its own entries."""

from __future__ import annotations

from raftcore.engine._progress import Progress
from raftcore.engine._roles import LeaderState
from raftcore.engine._snapshot_send import send_chunks, start_transfer
from raftcore.engine._state import NodeState
from raftcore.entries import Entry
from raftcore.ids import NodeId
from raftcore.messages import AppendRequest


def leader_append(
    s: NodeState, ld: LeaderState, entries: list[Entry], now: float, normal_only: bool = False
) -> None:
    """Append the leader's own entries and send them to every follower."""
    s.append(entries, normal_only)
    if not ld.progress:
        return
    for n, p in ld.progress.items():
        replicate(s, n, p, now)


def replicate(s: NodeState, to: NodeId, p: Progress, now: float) -> None:
    """Send ``to`` whatever its window allows (entries, or snapshot chunks)."""
    if p.snapshot is not None:
        send_chunks(s, to, p, now)
        return
    log = s.log
    c = s.config
    last = log.last_index
    while p.next_index <= last:
        if p.probing:
            if p.inflight:
                return
        elif len(p.inflight) >= c.max_inflight_appends or (
            p.inflight_bytes >= c.max_inflight_bytes
        ):
            return
        prev = log.log_id_at(p.next_index - 1)
        if prev is None:
            # Purged: the follower needs the snapshot.
            start_transfer(s, to, p, now)
            return
        ents, nbytes = log.batch(p.next_index, c.max_entries_per_append, c.max_bytes_per_append)
        s.seq += 1
        end = ents[-1].log_id.index
        p.inflight.append((s.seq, end, nbytes, now))
        p.inflight_bytes += nbytes
        p.next_index = end + 1
        p.last_sent_at = now
        s.send(to, AppendRequest(s.vote, prev, tuple(ents), s.committed.index, s.seq, now))
        if p.probing:
            return


def heartbeat(s: NodeState, to: NodeId, p: Progress, now: float) -> None:
    s.seq += 1
    p.last_sent_at = now
    # The commit index a follower derives is capped at prev, which it has.
    s.send(to, AppendRequest(s.vote, p.matching, (), s.committed.index, s.seq, now))


def heartbeat_all(s: NodeState, ld: LeaderState, now: float) -> None:
    for n, p in ld.progress.items():
        heartbeat(s, n, p, now)
