"""Membership changes on the leader: extended joint consensus, one at a time.

A change of voters takes two entries: the joint membership ``[current, goal]``
(old and new must both agree), then, once that commits, the uniform ``[goal]``.
A membership entry takes effect as soon as it is appended, on the leader and
on followers alike (``EngineBase._append``); a truncation falls back to the
previous one. The requester is answered when the final membership commits.

A leader starts a change only when the membership in its log is committed
and it has committed an entry of its own term (until then the request waits;
Raft's single-server-change bug, REFERENCES bug 2, is exactly a leader
changing membership before that). A leader that finds a committed joint
membership with no change of its own in progress (its predecessor died
mid-change) leaves it by itself. A leader that is not a voter of the final
membership steps down once it commits.
"""

from __future__ import annotations

from raftcore.commands import Respond
from raftcore.engine.leader import LeaderHandler
from raftcore.entries import membership_entry
from raftcore.errors import (
    ConfigError,
    InvalidMembershipChange,
    LeadershipLost,
    MembershipChangeInProgress,
    MembershipMismatch,
    NodeStopped,
)
from raftcore.events import ChangeMembership
from raftcore.ids import LogId
from raftcore.membership import Membership, leave_joint, next_membership
from raftcore.quorum import check_safe
from raftcore.state import Role


class MembershipHandler(LeaderHandler):
    def _on_change_membership(self, ev: ChangeMembership, now: float) -> None:
        if self.role is not Role.LEADER:
            self._emit(Respond(ev.request_id, None, self._not_leader()))
            return
        if self.membership_change is not None or self.queued_change is not None:
            self._emit(Respond(ev.request_id, None, MembershipChangeInProgress()))
            return
        if self.committed.index < self.leader_first_index or self._uncommitted_membership():
            # Wait for our own first entry (and any membership entry we
            # inherited) to commit: then the membership is known committed.
            self.queued_change = ev
            return
        self._start_change(ev, now)

    def _uncommitted_membership(self) -> bool:
        ms = self.memberships
        return bool(ms) and ms[-1][0].index > self.committed.index

    def _start_change(self, ev: ChangeMembership, now: float) -> None:
        cur_id, cur = self.memberships[-1]
        if ev.expected is not None and ev.expected != cur_id:
            self._emit(Respond(ev.request_id, None, MembershipMismatch(ev.expected, cur_id)))
            return
        try:
            nxt = next_membership(cur, ev.change, retain=ev.retain)
            # Flexible quorums can be unsafe; in standard leader-id mode
            # election quorums must also meet each other.
            check_safe(nxt.quorum_set(), self.config.leader_id_mode)
        except (ValueError, ConfigError) as e:
            self._emit(Respond(ev.request_id, None, InvalidMembershipChange(str(e))))
            return
        if nxt == cur:
            self._emit(Respond(ev.request_id, (cur_id, cur)))
            return
        self.membership_change = (ev.request_id, ev.retain)
        self._append_membership(nxt, now)

    def _append_membership(self, m: Membership, now: float) -> None:
        lid = LogId(self.vote.term, self.node_id, self.log.last_index + 1)
        self._leader_append([membership_entry(lid, m)], now)

    def _after_leader_commit(self) -> None:
        """The commit index moved: take the next step of a change, if due."""
        m = self.membership
        if (
            self.membership_change is None
            and self.queued_change is None
            and m is not None
            and not m.is_joint
            and m.is_voter(self.node_id)
        ):
            return  # the usual case, on every commit: nothing to do
        if self._uncommitted_membership() or self.role is not Role.LEADER:
            return
        now = self._last_now
        mid, m = self.memberships[-1]
        change = self.membership_change
        if m.is_joint:
            # Our own change's second step, or a predecessor's left unfinished.
            retain = change[1] if change is not None else True
            self._append_membership(leave_joint(m, retain=retain), now)
            return
        if change is not None:
            self.membership_change = None
            self._emit(Respond(change[0], (mid, m)))
        queued = self.queued_change
        if queued is not None and self.committed.index >= self.leader_first_index:
            self.queued_change = None
            self._start_change(queued, now)
        if not m.is_voter(self.node_id):
            # Removed: the new voters elect a leader among themselves.
            self._become_follower(now)

    def _answer_change_lost(self) -> None:
        """Stepping down: a started change's outcome is unknown; a queued one never began."""
        change, queued = self.membership_change, self.queued_change
        self.membership_change = self.queued_change = None
        if change is not None:
            leader = self.vote.node_id if self.vote.node_id != self.node_id else None
            self._emit(Respond(change[0], None, LeadershipLost(leader)))
        if queued is not None:
            self._emit(Respond(queued.request_id, None, self._not_leader()))

    def _answer_change_stopped(self, err: NodeStopped) -> None:
        """The engine stops: the change in progress and a queued one are answered ``err``."""
        change, queued = self.membership_change, self.queued_change
        self.membership_change = self.queued_change = None
        if change is not None:
            self._emit(Respond(change[0], None, err))
        if queued is not None:
            self._emit(Respond(queued.request_id, None, err))
