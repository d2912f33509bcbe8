"""Linearizable reads: ReadIndex and lease reads on the leader, and
follower reads through it.

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
- **Follower reads**: a follower asks the leader for a read point with one
  ``ReadIndexRequest`` for every read waiting on it; the leader handles it
  like a ReadIndex read of its own and answers a ``ReadIndexResponse``; the
  follower then answers its reads with that point (its own state machine
  serves them once it has applied that far).
- Reads never wait forever: after ``Config.read_timeout`` they are answered
  ``ReadTimeout``; a leader that steps down answers ``LeadershipLost``.
"""

from __future__ import annotations

from collections.abc import Hashable

from raftcore.commands import Respond
from raftcore.engine._replication import heartbeat_all
from raftcore.engine._roles import LeaderState, RemoteRead
from raftcore.engine._state import NEVER, NodeState
from raftcore.errors import ReadTimeout
from raftcore.events import ClientRead, ReadPolicy
from raftcore.ids import NodeId
from raftcore.messages import ReadIndexRequest, ReadIndexResponse

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


def lease_read_end(s: NodeState, ld: LeaderState, now: float) -> float:
    """Until when (this node's clock) a lease read is answered without a
    round; ``NEVER`` when lease reads are off: without check-quorum (voters
    then honour no lease), before an entry of this leader's term commits,
    and once a leadership transfer revoked the lease."""
    c = s.config
    if not c.check_quorum or ld.lease_revoked or s.committed.index < ld.first_index:
        return NEVER
    return quorum_acked_at(s, ld, now) + c.lease / (1.0 + c.max_clock_drift)


def on_client_read(s: NodeState, ld: LeaderState, ev: ClientRead, now: float) -> None:
    if ev.policy is ReadPolicy.LEASE and now < lease_read_end(s, ld, now):
        s.emit(Respond(ev.request_id, s.committed))
        return
    ld.reads_waiting.append((ev.request_id, now + s.config.read_deadline))
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
        s.answer_read(rid, read_point, None)
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
        s.answer_read(rid, None, err)
    start_round(s, ld, now)


# -- follower reads ------------------------------------------------------------------


def on_read_index_request(
    s: NodeState, ld: LeaderState | None, sender: NodeId, req: ReadIndexRequest, now: float
) -> None:
    """Leader: a follower's reads join the next confirmation round."""
    if ld is None or req.vote != s.vote:
        s.send(sender, ReadIndexResponse(s.vote, req.seq, None))
        return
    ld.reads_waiting.append((RemoteRead(sender, req.seq), now + s.config.read_deadline))
    start_round(s, ld, now)


def on_follower_read(s: NodeState, ev: ClientRead, now: float) -> None:
    """A read on a node that does not lead: ask the leader, if one is known."""
    leader = s.leader_id()
    if leader is None or leader == s.node_id:
        s.emit(Respond(ev.request_id, None, s.refusal()))
        return
    s.remote_reads.append((ev.request_id, now + s.config.read_deadline))
    send_remote_reads(s, leader)


def send_remote_reads(s: NodeState, leader: NodeId) -> None:
    """One ``ReadIndexRequest`` for every read waiting, unless one is in flight."""
    if s.remote_inflight is not None or not s.remote_reads:
        return
    s.seq += 1
    s.remote_inflight = (s.seq, leader, s.remote_reads)
    s.remote_reads = []
    s.send(leader, ReadIndexRequest(s.vote, s.seq))


def on_read_index_response(s: NodeState, sender: NodeId, resp: ReadIndexResponse) -> None:
    """The leader's read point (valid whatever happened since: the leader
    confirmed it led when the request was already waiting)."""
    inflight = s.remote_inflight
    if inflight is None or inflight[0] != resp.seq or inflight[1] != sender:
        return  # an answer to a request whose reads timed out
    s.remote_inflight = None
    point = resp.read_point
    err = None if point is not None else s.not_leader()
    for rid, _ in inflight[2]:
        s.emit(Respond(rid, point, err))
    leader = s.leader_id()
    if leader is not None and leader != s.node_id:
        send_remote_reads(s, leader)
    else:
        for rid, _ in s.remote_reads:
            s.emit(Respond(rid, None, s.refusal()))
        s.remote_reads = []


def remote_read_deadline(s: NodeState) -> float | None:
    reads = s.remote_reads + (s.remote_inflight[2] if s.remote_inflight is not None else [])
    return min((d for _, d in reads), default=None)


def expire_remote_reads(s: NodeState, now: float) -> None:
    """Answer ``ReadTimeout`` to the follower reads whose deadline passed."""
    err = ReadTimeout(s.config.read_deadline)
    for rid, d in s.remote_reads:
        if d <= now:
            s.emit(Respond(rid, None, err))
    s.remote_reads = [(rid, d) for rid, d in s.remote_reads if d > now]
    inflight = s.remote_inflight
    if inflight is not None:
        for rid, d in inflight[2]:
            if d <= now:
                s.emit(Respond(rid, None, err))
        left = [(rid, d) for rid, d in inflight[2] if d > now]
        # With nothing left to answer, a late response is ignored (its seq).
        s.remote_inflight = (inflight[0], inflight[1], left) if left else None
    leader = s.leader_id()
    if s.remote_inflight is None and leader is not None and leader != s.node_id:
        send_remote_reads(s, leader)
