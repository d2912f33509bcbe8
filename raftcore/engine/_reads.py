"""Linearizable reads on the leader: ReadIndex and lease reads.

A read is answered with a *read point*: the commit index once the read is
known safe. The caller serves the read from a state machine that applied
at least that far, so it sees every write acknowledged before the read
began.

- **ReadIndex** confirms that this node still leads with a quorum round:
  the reads waiting when a round starts share it (one heartbeat to every
  follower), and the round is confirmed once a quorum has acknowledged a
  request sent at or after its start. A deposed leader that has not noticed
  gets no quorum, so it never answers.
- **Lease** reads need no round while a quorum has acknowledged the leader
  within the lease, shortened by the clock-drift allowance: followers
  refuse to elect anyone else for a lease after hearing from it.
- A new leader answers no read before an entry of its own term commits:
  until then its commit index may lag what an earlier leader acknowledged.
- Reads never wait forever: after ``Config.read_timeout`` they are answered
  ``ReadTimeout``; a leader that steps down answers ``LeadershipLost``.
"""

from __future__ import annotations

from collections.abc import Hashable

from raftcore.commands import Respond
from raftcore.engine._replication import heartbeat_all
from raftcore.engine._roles import LeaderState
from raftcore.engine._state import NEVER, NodeState
from raftcore.errors import ReadTimeout
from raftcore.events import ClientRead, ReadPolicy

#: A read waiting for its confirmation: its request id and its deadline.
WaitingRead = tuple[Hashable, float]


def quorum_acked_at(s: NodeState, ld: LeaderState, now: float) -> float:
    """The latest send time that a quorum (this node counting as ``now``)
    has acknowledged."""
    q = s.quorum
    if q is None:
        return NEVER
    values = {n: p.acked_at for n, p in ld.progress.items()}
    values[s.node_id] = now
    return q.quorum_value(values, NEVER)


def on_client_read(s: NodeState, ld: LeaderState, ev: ClientRead, now: float) -> None:
    c = s.config
    if (
        ev.policy is ReadPolicy.LEASE
        and s.committed.index >= ld.first_index
        and now < quorum_acked_at(s, ld, now) + c.lease / (1.0 + c.max_clock_drift)
    ):
        s.emit(Respond(ev.request_id, s.committed))
        return
    ld.reads_waiting.append((ev.request_id, now + c.read_deadline))
    start_round(s, ld, now)


def start_round(s: NodeState, ld: LeaderState, now: float) -> None:
    """Start a confirmation round for the reads waiting, if none is running
    and an entry of this leader's term has committed."""
    if ld.read_round is not None or not ld.reads_waiting or s.committed.index < ld.first_index:
        return
    ld.read_round = (now, s.committed, ld.reads_waiting)
    ld.reads_waiting = []
    heartbeat_all(s, ld, now)
    confirm_round(s, ld, now)


def confirm_round(s: NodeState, ld: LeaderState, now: float) -> None:
    """Answer the round's reads once a quorum acknowledged its heartbeats."""
    r = ld.read_round
    if r is None or quorum_acked_at(s, ld, now) < r[0]:
        return
    ld.read_round = None
    read_point = r[1]
    for rid, _ in r[2]:
        s.emit(Respond(rid, read_point))
    start_round(s, ld, now)


def read_deadline(ld: LeaderState) -> float | None:
    """The earliest deadline of a waiting read (``None``: no read waits)."""
    reads = ld.reads_waiting + (ld.read_round[2] if ld.read_round is not None else [])
    return min((d for _, d in reads), default=None)


def expire_reads(s: NodeState, ld: LeaderState, now: float) -> None:
    """Answer ``ReadTimeout`` to every read whose deadline passed."""
    err = ReadTimeout(s.config.read_deadline)
    expired = [rid for rid, d in ld.reads_waiting if d <= now]
    ld.reads_waiting = [(rid, d) for rid, d in ld.reads_waiting if d > now]
    r = ld.read_round
    if r is not None:
        expired += [rid for rid, d in r[2] if d <= now]
        left = [(rid, d) for rid, d in r[2] if d > now]
        ld.read_round = (r[0], r[1], left) if left else None
    for rid in expired:
        s.emit(Respond(rid, None, err))
    start_round(s, ld, now)
