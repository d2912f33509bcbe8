"""The leader: client writes, replication, commit, heartbeats, check-quorum."""

from __future__ import annotations

from collections.abc import Hashable
from operator import itemgetter
from typing import Any

from raftcore.commands import Respond
from raftcore.engine.base import NEVER
from raftcore.engine.follower import FollowerHandler
from raftcore.engine.progress import Progress
from raftcore.entries import Entry, EntryKind, blank
from raftcore.errors import NotLeader, RemoteProtocolError
from raftcore.ids import LogId, NodeId, Vote, compare_votes
from raftcore.messages import AppendRequest, AppendResponse
from raftcore.state import Role

_RID = itemgetter(0)


class LeaderHandler(FollowerHandler):
    # -- becoming leader -------------------------------------------------------

    def _become_leader(self, now: float) -> None:
        v = self.vote
        self._save_vote(Vote(v.term, self.node_id, True))
        self.role = Role.LEADER
        self.election_deadline = None
        self.granted = set()
        self.progress = {}
        # pending_writes is kept: writes from an earlier leadership that had
        # committed are still answered when they apply.
        self.leader_first_index = self.log.last_index + 1
        self._sync_progress(self.leader_first_index)
        self._leader_append([blank(LogId(v.term, self.node_id, self.leader_first_index))], now)
        self.heartbeat_deadline = now + self.config.heartbeat_interval

    def _sync_progress(self, start: int = 0) -> None:
        """One progress per member; new ones start probing at ``start``.

        By default (a member added while leading, right after its membership
        entry was appended) at the last entry, so the first append is sent
        and its rejection back-tracks to where the new member's log ends.
        """
        m = self.membership
        targets = set() if m is None else m.node_ids() - {self.node_id}
        pr = self.progress
        for n in list(pr):
            if n not in targets:
                del pr[n]
        if start == 0:
            start = max(1, self.log.last_index)
        for n in sorted(targets - set(pr)):
            # The voters granted us after the election started: that is when
            # their lease on our behalf begins.
            pr[n] = Progress(start, self.election_started_at)

    # -- client writes -------------------------------------------------------

    def _on_client_writes(self, requests: tuple[tuple[Hashable, Any], ...], now: float) -> None:
        if self.role is not Role.LEADER:
            err = self._not_leader()
            for rid, _ in requests:
                self._emit(Respond(rid, None, err))
            return
        term = self.vote.term
        me = self.node_id
        first = self.log.last_index + 1
        # tuple.__new__ skips the NamedTuple constructors' Python-level __new__.
        new = tuple.__new__
        normal = EntryKind.NORMAL
        entries = [
            new(Entry, (new(LogId, (term, me, idx)), normal, data))
            for idx, (_, data) in enumerate(requests, first)
        ]
        self.pending_writes.update(
            zip(range(first, first + len(requests)), map(_RID, requests), strict=True)
        )
        self._leader_append(entries, now, normal_only=True)

    def _not_leader(self) -> NotLeader:
        lid = self.leader_id()
        if lid is None or lid == self.node_id:
            return NotLeader(None, None)
        m = self.membership
        return NotLeader(lid, m.node_info(lid) if m is not None else None)

    def _leader_append(self, entries: list[Entry], now: float, normal_only: bool = False) -> None:
        self._append(entries, normal_only)
        if not self.progress:
            return
        for n, p in self.progress.items():
            self._replicate(n, p, now)

    # -- replication ---------------------------------------------------------

    def _replicate(self, to: NodeId, p: Progress, now: float) -> None:
        """Send ``to`` whatever its window allows."""
        log = self.log
        c = self.config
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
                # Purged: the follower needs a snapshot (not handled yet).
                return
            ents, nbytes = log.batch(p.next_index, c.max_entries_per_append, c.max_bytes_per_append)
            self.seq += 1
            end = ents[-1].log_id.index
            p.inflight.append((self.seq, end, nbytes, now))
            p.inflight_bytes += nbytes
            p.next_index = end + 1
            p.last_sent_at = now
            self._send(
                to,
                AppendRequest(self.vote, prev, tuple(ents), self.committed.index, self.seq, now),
            )
            if p.probing:
                return

    def _heartbeat(self, to: NodeId, p: Progress, now: float) -> None:
        self.seq += 1
        p.last_sent_at = now
        # The commit index a follower derives is capped at prev, which it has.
        self._send(
            to, AppendRequest(self.vote, p.matching, (), self.committed.index, self.seq, now)
        )

    def _on_append_response(self, sender: NodeId, resp: AppendResponse, now: float) -> None:
        if resp.vote != self.vote:
            c = compare_votes(resp.vote, self.vote, self.config.leader_id_mode)
            if c is not None and c > 0:
                self._adopt_vote(resp.vote, now)
            return
        if self.role is not Role.LEADER:
            return
        p = self.progress.get(sender)
        if p is None:
            return
        log = self.log
        m = resp.matching
        if resp.success and (
            m.index > log.last_index or (m.index > 0 and log.log_id_at(m.index) not in (m, None))
        ):
            raise RemoteProtocolError(
                f"append response from {sender} claims {m!r}, which the leader never sent"
            )
        if resp.sent_at > p.acked_at:
            p.acked_at = resp.sent_at
        if resp.success:
            p.ack(resp.seq, m.index)
            if m > p.matching:
                p.matching = m
                if p.next_index <= m.index:
                    p.next_index = m.index + 1
                if m.index > self.committed.index:
                    self._leader_commit()
            if p.probing and resp.seq >= p.reset_seq and p.matching.index + 1 >= p.next_index:
                # The match point is found: everything sent is confirmed.
                p.probing = False
        else:
            if resp.seq < p.reset_seq:
                return
            hint = max(1, min(resp.conflict_hint, log.last_index + 1))
            p.reset(hint, self.seq + 1)
        if p.next_index <= log.last_index:
            self._replicate(sender, p, now)

    # -- commit ---------------------------------------------------------------

    def _leader_commit(self) -> None:
        q = self.quorum
        if q is None or self.role is not Role.LEADER:
            return
        values = {n: p.matching.index for n, p in self.progress.items()}
        values[self.node_id] = self.io.durable_log_id.index
        idx = q.quorum_value(values, 0)
        # Only entries of this leader commit by counting replicas (Raft 5.4.2).
        if idx > self.committed.index and idx >= self.leader_first_index:
            lid = self.log.log_id_at(idx)
            assert lid is not None
            self.committed = lid
            self._advance_apply()
            self._after_leader_commit()

    # -- time ------------------------------------------------------------------

    def _quorum_acked_at(self, now: float) -> float:
        q = self.quorum
        if q is None:
            return NEVER
        values = {n: p.acked_at for n, p in self.progress.items()}
        values[self.node_id] = now
        return q.quorum_value(values, NEVER)

    def _leader_lease_valid(self, now: float) -> bool:
        return now < self._quorum_acked_at(now) + self.config.lease

    def _leader_tick(self, now: float) -> None:
        c = self.config
        if c.check_quorum and not self._leader_lease_valid(now):
            # No quorum heard from us within the lease: others may elect a
            # new leader, so stop accepting writes.
            self._become_follower(now)
            return
        interval = c.heartbeat_interval
        due = now + interval
        timeout = c.append_timeout
        for n, p in self.progress.items():
            if p.inflight and p.inflight[0][3] + timeout <= now:
                # Presumed lost: restart from the last known match.
                p.reset(p.matching.index + 1, self.seq + 1)
                self._replicate(n, p, now)
            # The same expression as the deadline below, so float rounding
            # can never leave a deadline that is due but does nothing.
            if p.last_sent_at + interval <= now:
                self._heartbeat(n, p, now)
            due = min(due, p.last_sent_at + interval)
        self.heartbeat_deadline = due

    def _heartbeat_all(self, now: float) -> None:
        for n, p in self.progress.items():
            self._heartbeat(n, p, now)
