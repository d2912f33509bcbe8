"""Leadership transfer: the leader hands over to a chosen voter.

While a transfer runs the leader takes no writes and no membership changes
(``TransferInProgress``), so its log stops growing; once the target's log
matches it, the leader sends ``TimeoutNow`` and revokes its own lease reads.
The target, still following that leader, campaigns at once (no pre-vote)
with a ``VoteRequest`` carrying the leader's vote in ``transfer_from``; a
voter still following exactly that leader grants it despite the lease, and
the leader itself only if it sent that target ``TimeoutNow``. A transfer
not done by its deadline is abandoned and writes resume; the lease stays
revoked (the target may still win), so lease reads fall back to ReadIndex
for the rest of this leadership.
"""

from __future__ import annotations

from raftcore.commands import Respond
from raftcore.engine._replication import replicate
from raftcore.engine._roles import LeaderState, Transfer
from raftcore.engine._state import NodeState
from raftcore.errors import (
    InvalidTransfer,
    LocalProtocolError,
    RemoteProtocolError,
    TransferInProgress,
    TransferTimeout,
)
from raftcore.events import TransferLeader
from raftcore.ids import NodeId, Vote
from raftcore.messages import TimeoutNow
from raftcore.state import Role


def on_transfer_leader(s: NodeState, ld: LeaderState, ev: TransferLeader, now: float) -> None:
    rid = ev.request_id
    to: object = getattr(ev, "to")  # noqa: B009 - untyped, see Engine._on_message
    if to is not None and (isinstance(to, bool) or not isinstance(to, int)):
        raise LocalProtocolError(f"TransferLeader needs a node id or None, got {to!r}")
    t = ld.transfer
    if t is not None:
        s.emit(Respond(rid, None, TransferInProgress(t.to)))
        return
    if to == s.node_id:
        s.emit(Respond(rid, to))  # already there
        return
    if to is None:
        to = _most_up_to_date(s, ld)
        if to is None:
            s.emit(Respond(rid, None, InvalidTransfer("there is no other voter to transfer to")))
            return
    else:
        problem = _not_a_target(s, to)
        if problem is not None:
            s.emit(Respond(rid, None, InvalidTransfer(problem)))
            return
    ld.transfer = Transfer(rid, to, now + s.config.transfer_deadline)
    p = ld.progress[to]
    if p.next_index <= s.log.last_index:
        replicate(s, to, p, now)
    send_timeout_now(s, ld, now)


def _not_a_target(s: NodeState, to: NodeId) -> str | None:
    m = s.membership
    if m is None or to not in m.node_ids():
        return f"node {to} is not a member of the cluster"
    if not m.is_voter(to):
        return f"node {to} is a learner: only a voter can lead"
    return None


def _most_up_to_date(s: NodeState, ld: LeaderState) -> NodeId | None:
    """The other voter with the greatest matching log id (the most recently
    heard from, then the lowest id, on a tie)."""
    m = s.membership
    if m is None:
        return None
    best = None
    key: tuple[object, float, int] | None = None
    for n in sorted(m.voter_ids() - {s.node_id}):
        p = ld.progress[n]
        k = (p.matching, p.acked_at, -n)
        if key is None or k > key:
            best, key = n, k
    return best


def send_timeout_now(s: NodeState, ld: LeaderState, now: float) -> None:
    """Send ``TimeoutNow`` if the target's log matches the leader's."""
    t = ld.transfer
    if t is None:
        return
    p = ld.progress.get(t.to)
    if p is None or not s.is_voter(t.to):
        # A membership change removed (or demoted) the target meanwhile.
        ld.transfer = None
        problem = f"node {t.to} stopped being a voter during the transfer"
        s.emit(Respond(t.request_id, None, InvalidTransfer(problem)))
        return
    last = s.log.last_log_id()
    if p.snapshot is not None or p.matching != last:
        return
    ld.lease_revoked = True
    t.sent_at = now
    s.send(t.to, TimeoutNow(s.vote, last))


def transfer_tick(s: NodeState, ld: LeaderState, now: float) -> None:
    """On the leader's heartbeat tick: abandon an overdue transfer, or resend
    ``TimeoutNow`` (it may have been lost)."""
    t = ld.transfer
    if t is None:
        return
    if now >= t.deadline:
        ld.transfer = None
        s.emit(Respond(t.request_id, None, TransferTimeout(t.to, s.config.transfer_deadline)))
        return
    if t.sent_at is None or now >= t.sent_at + s.config.heartbeat_interval:
        send_timeout_now(s, ld, now)


def authorized(ld: LeaderState, candidate: NodeId) -> bool:
    """Did this leader send ``candidate`` a ``TimeoutNow``?"""
    t = ld.transfer
    return t is not None and t.to == candidate and t.sent_at is not None


def handover_from(s: NodeState, sender: NodeId, msg: TimeoutNow) -> Vote | None:
    """The target's side: the leader's vote to campaign with, or ``None`` to
    ignore the message (it is from a leader this node no longer follows,
    or this node cannot campaign now)."""
    v = msg.vote
    if v.node_id != sender or not v.committed:
        raise RemoteProtocolError(f"TimeoutNow from {sender} carries a non-leader vote {v!r}")
    if (
        v != s.vote
        or s.role is not Role.FOLLOWER
        or not s.self_voter
        or s.log.last_log_id() < msg.last_log_id
    ):
        return None
    return v
