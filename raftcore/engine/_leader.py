"""The leader: becoming one, client writes, acknowledgements, commit,
heartbeats and check-quorum. Every function takes the ``LeaderState``."""

from __future__ import annotations

from collections.abc import Hashable
from operator import itemgetter
from typing import Any

from raftcore.engine._apply import advance_apply
from raftcore.engine._membership import after_leader_commit
from raftcore.engine._progress import Progress
from raftcore.engine._reads import confirm_round, quorum_acked_at, start_round
from raftcore.engine._replication import heartbeat, leader_append, replicate
from raftcore.engine._roles import CandidateState, LeaderState
from raftcore.engine._snapshot import purge_if_due
from raftcore.engine._snapshot_send import resend_lost_chunks, send_chunks
from raftcore.engine._state import NEVER, NodeState
from raftcore.engine._transfer import send_timeout_now, transfer_tick
from raftcore.entries import Entry, EntryKind, blank
from raftcore.errors import RemoteProtocolError
from raftcore.ids import LogId, NodeId, Vote, compare_votes
from raftcore.messages import AppendResponse, InstallSnapshotResponse
from raftcore.state import Role

_RID = itemgetter(0)


def become_leader(s: NodeState, campaign: CandidateState, now: float) -> None:
    v = s.vote
    s.save_vote(Vote(v.term, s.node_id, True))
    s.role = Role.LEADER
    s.election_deadline = None
    s.candidate = None
    # pending_writes is kept: writes from an earlier leadership that had
    # committed are still answered when they apply.
    first = s.log.last_index + 1
    ld = s.leader = LeaderState(first, NEVER, campaign.started_at)
    ld.sync_progress(s.membership, s.node_id, first)
    leader_append(s, ld, [blank(LogId(v.term, s.node_id, first))], now)
    ld.heartbeat_deadline = now + s.config.heartbeat_interval


def on_client_writes(
    s: NodeState, ld: LeaderState, requests: tuple[tuple[Hashable, Any], ...], now: float
) -> None:
    term = s.vote.term
    me = s.node_id
    first = s.log.last_index + 1
    # tuple.__new__ skips the NamedTuple constructors' Python-level __new__.
    new = tuple.__new__
    normal = EntryKind.NORMAL
    entries = [
        new(Entry, (new(LogId, (term, me, idx)), normal, data))
        for idx, (_, data) in enumerate(requests, first)
    ]
    s.pending_writes.update(
        zip(range(first, first + len(requests)), map(_RID, requests), strict=True)
    )
    leader_append(s, ld, entries, now, normal_only=True)


def _answering(s: NodeState, sender: NodeId, vote: Vote, now: float) -> Progress | None:
    """The progress an answer to this leader's request updates, if any.

    An answer carrying a greater vote makes this node follow it; one from
    an earlier leadership, or from a node no longer replicated to, is
    ignored.
    """
    if vote != s.vote:
        c = compare_votes(vote, s.vote, s.config.leader_id_mode)
        if c is not None and c > 0:
            s.adopt_vote(vote, now)
        return None
    ld = s.leader
    return ld.progress.get(sender) if ld is not None else None


def on_append_response(s: NodeState, sender: NodeId, resp: AppendResponse, now: float) -> None:
    p = _answering(s, sender, resp.vote, now)
    if p is None:
        return
    ld = s.leader
    assert ld is not None
    log = s.log
    m = resp.matching
    if resp.success and (
        m.index > log.last_index or (m.index > 0 and log.log_id_at(m.index) not in (m, None))
    ):
        raise RemoteProtocolError(
            f"append response from {sender} claims {m!r}, which the leader never sent"
        )
    if resp.sent_at > p.acked_at:
        p.acked_at = resp.sent_at
        if ld.read_round is not None:
            confirm_round(s, ld, now)
    if p.snapshot is not None and not resp.success:
        return  # a heartbeat's conflict: the snapshot will settle the match point
    if resp.success:
        p.ack(resp.seq, m.index)
        if m > p.matching:
            p.matching = m
            if p.next_index <= m.index:
                p.next_index = m.index + 1
            if m.index > s.committed.index:
                leader_commit(s, ld)
        if p.probing and resp.seq >= p.reset_seq and p.matching.index + 1 >= p.next_index:
            # The match point is found: everything sent is confirmed.
            p.probing = False
        t = ld.transfer
        if t is not None and t.to == sender and t.sent_at is None:
            send_timeout_now(s, ld, now)
    else:
        if resp.seq < p.reset_seq:
            return
        hint = max(1, min(resp.conflict_hint, log.last_index + 1))
        p.reset(hint, s.seq + 1)
    if p.next_index <= log.last_index:
        replicate(s, sender, p, now)


def on_install_response(
    s: NodeState, sender: NodeId, resp: InstallSnapshotResponse, now: float
) -> None:
    p = _answering(s, sender, resp.vote, now)
    if p is None:
        return
    if resp.sent_at > p.acked_at:
        p.acked_at = resp.sent_at
        ld = s.leader
        if ld is not None and ld.read_round is not None:
            confirm_round(s, ld, now)
    t = p.snapshot
    if resp.done:
        m = resp.matching
        if m.index > s.committed.index:
            raise RemoteProtocolError(
                f"snapshot response from {sender} claims {m!r}, past the commit index"
            )
        if t is None and m <= p.matching:
            return  # a repeated answer
        # Its state machine covers ``m``: entries follow from there.
        p.snapshot = None
        if m > p.matching:
            p.matching = m
        p.reset(p.matching.index + 1, s.seq + 1)
        replicate(s, sender, p, now)
        ld = s.leader
        if ld is not None and ld.transfer is not None and ld.transfer.to == sender:
            send_timeout_now(s, ld, now)
        return
    if t is None or resp.snapshot_id != t.meta.snapshot_id:
        return  # about a transfer that is over
    off = resp.next_offset
    size = t.meta.size
    if off > size:
        raise RemoteProtocolError(f"snapshot response from {sender} asks for offset {off} > {size}")
    t.acked = max(t.acked, off)
    fl = t.inflight
    answered = next((c for c in fl if c[0] == resp.seq), None)
    # The last chunk stays in flight until the install is reported.
    while fl and fl[0][2] <= off and fl[0][2] < size:
        fl.popleft()
    if answered is not None and off < answered[2]:
        # It did not take that chunk: one before it was lost. (Answers to
        # chunks sent before a rewind find nothing in flight: no second rewind.)
        t.rewind(off)
    elif off > t.sent:
        t.sent = off  # it has more already (an earlier transfer of this snapshot)
    send_chunks(s, sender, p, now)


def leader_commit(s: NodeState, ld: LeaderState) -> None:
    """Advance the commit index to what a quorum holds durably."""
    q = s.quorum
    if q is None or s.leader is not ld:
        return
    values = {n: p.matching.index for n, p in ld.progress.items()}
    values[s.node_id] = s.io.durable_log_id.index
    idx = q.quorum_value(values, 0)
    # Only entries of this leader commit by counting replicas (Raft 5.4.2).
    if idx > s.committed.index and idx >= ld.first_index:
        lid = s.log.log_id_at(idx)
        assert lid is not None
        s.committed = lid
        advance_apply(s)
        after_leader_commit(s, ld)
        if ld.reads_waiting and s.leader is ld:
            # This leader's first entry committed: the reads waiting for it go.
            start_round(s, ld, s.last_now)


# -- time ----------------------------------------------------------------------


def lease_valid(s: NodeState, ld: LeaderState, now: float) -> bool:
    """Has a quorum acknowledged this leader within the lease?"""
    return now < quorum_acked_at(s, ld, now) + s.config.lease


def leader_tick(s: NodeState, ld: LeaderState, now: float) -> None:
    c = s.config
    if c.check_quorum and not lease_valid(s, ld, now):
        # No quorum heard from us within the lease: others may elect a
        # new leader, so stop accepting writes.
        s.become_follower(now)
        return
    interval = c.heartbeat_interval
    due = now + interval
    timeout = c.append_timeout
    for n, p in ld.progress.items():
        if p.snapshot is not None:
            resend_lost_chunks(s, n, p, now)
        elif p.inflight and p.inflight[0][3] + timeout <= now:
            # Presumed lost: restart from the last known match.
            p.reset(p.matching.index + 1, s.seq + 1)
            replicate(s, n, p, now)
        # The same expression as the deadline below, so float rounding
        # can never leave a deadline that is due but does nothing.
        if p.last_sent_at + interval <= now:
            heartbeat(s, n, p, now)
        due = min(due, p.last_sent_at + interval)
    ld.heartbeat_deadline = due
    transfer_tick(s, ld, now)
    purge_if_due(s)
