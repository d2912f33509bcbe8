"""Membership changes on the leader: extended joint consensus, one at a time.

A change of voters takes two entries: the joint membership ``[current, goal]``
(old and new must both agree), then, once that commits, the uniform ``[goal]``.
A membership entry takes effect as soon as it is appended, on the leader and
on followers alike (``NodeState.append``); a truncation falls back to the
previous one. The requester is answered when the final membership commits.

A leader starts a change only when the membership in its log is committed
and it has committed an entry of its own term (until then the request waits;
Raft's single-server-change bug, known bug 2 in docs/design/known-raft-bugs.md,
is exactly a leader changing membership before that). A leader that finds a committed joint
membership with no change of its own in progress (its predecessor died
mid-change) leaves it by itself. A leader that is not a voter of the final
membership steps down once it commits.
"""

from __future__ import annotations

from raftcore.commands import Respond
from raftcore.engine._replication import leader_append
from raftcore.engine._roles import LeaderState
from raftcore.engine._state import NodeState
from raftcore.entries import membership_entry
from raftcore.errors import (
    ConfigError,
    InvalidMembershipChange,
    MembershipChangeInProgress,
    MembershipMismatch,
    NodeStopped,
)
from raftcore.events import ChangeMembership
from raftcore.ids import LogId
from raftcore.membership import Membership, leave_joint, next_membership
from raftcore.quorum import check_safe


def on_change_membership(s: NodeState, ld: LeaderState, ev: ChangeMembership, now: float) -> None:
    if ld.membership_change is not None or ld.queued_change is not None:
        s.emit(Respond(ev.request_id, None, MembershipChangeInProgress()))
        return
    if s.committed.index < ld.first_index or s.uncommitted_membership():
        # Wait for our own first entry (and any membership entry we
        # inherited) to commit: then the membership is known committed.
        ld.queued_change = ev
        return
    _start_change(s, ld, ev, now)


def _start_change(s: NodeState, ld: LeaderState, ev: ChangeMembership, now: float) -> None:
    cur_id, cur = s.memberships[-1]
    if ev.expected is not None and ev.expected != cur_id:
        s.emit(Respond(ev.request_id, None, MembershipMismatch(ev.expected, cur_id)))
        return
    try:
        nxt = next_membership(cur, ev.change, retain=ev.retain)
        # Flexible quorums can be unsafe; in standard leader-id mode
        # election quorums must also meet each other.
        check_safe(nxt.quorum_set(), s.config.leader_id_mode)
    except InvalidMembershipChange as e:
        s.emit(Respond(ev.request_id, None, e))
        return
    except ConfigError as e:  # a membership the change would make is invalid or unsafe
        s.emit(Respond(ev.request_id, None, InvalidMembershipChange(str(e))))
        return
    if nxt == cur:
        s.emit(Respond(ev.request_id, (cur_id, cur)))
        return
    ld.membership_change = (ev.request_id, ev.retain)
    _append_membership(s, ld, nxt, now)


def _append_membership(s: NodeState, ld: LeaderState, m: Membership, now: float) -> None:
    lid = LogId(s.vote.term, s.node_id, s.log.last_index + 1)
    leader_append(s, ld, [membership_entry(lid, m)], now)


def after_leader_commit(s: NodeState, ld: LeaderState) -> None:
    """The commit index moved: take the next step of a change, if due."""
    m = s.membership
    if (
        ld.membership_change is None
        and ld.queued_change is None
        and m is not None
        and not m.is_joint
        and m.is_voter(s.node_id)
    ):
        return  # the usual case, on every commit: nothing to do
    if s.uncommitted_membership():
        return
    now = s.last_now
    mid, m = s.memberships[-1]
    change = ld.membership_change
    if m.is_joint:
        # Our own change's second step, or a predecessor's left unfinished.
        retain = change[1] if change is not None else True
        _append_membership(s, ld, leave_joint(m, retain=retain), now)
        return
    if change is not None:
        ld.membership_change = None
        s.emit(Respond(change[0], (mid, m)))
    queued = ld.queued_change
    if queued is not None and s.committed.index >= ld.first_index:
        ld.queued_change = None
        _start_change(s, ld, queued, now)
    if not m.is_voter(s.node_id):
        # Removed: the new voters elect a leader among themselves.
        s.become_follower(now)


def answer_change_stopped(s: NodeState, ld: LeaderState, err: NodeStopped) -> None:
    """The engine stops: the change in progress and a queued one are answered ``err``."""
    change, queued = ld.membership_change, ld.queued_change
    ld.membership_change = ld.queued_change = None
    if change is not None:
        s.emit(Respond(change[0], None, err))
    if queued is not None:
        s.emit(Respond(queued.request_id, None, err))
