"""The state every node has, and the transitions every concern shares.

``NodeState`` holds what a node keeps in any role (vote, log, commit and
apply positions, IO progress, memberships, the election timer) plus one
role value: ``leader`` (a ``LeaderState``) while it leads, ``candidate`` (a
``CandidateState``) while it campaigns, neither otherwise. State changes that
several concerns need (saving a vote, appending or truncating the log,
tracking the effective membership, changing role) live here, in one
readable place; the handler modules (``_election``, ``_follower``,
``_leader``, ``_replication``, ``_membership``, ``_apply``) are functions
over it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable, Iterable
from operator import itemgetter
from typing import Protocol

from raftcore.commands import (
    AppendLog,
    Command,
    PurgeLog,
    Respond,
    SaveVote,
    Send,
    TruncateLog,
)
from raftcore.config import Config
from raftcore.engine._io import IoProgress
from raftcore.engine._log import Log
from raftcore.engine._roles import CandidateState, LeaderState, RemoteRead
from raftcore.entries import Entry, EntryKind
from raftcore.errors import ClientError, LeadershipLost, NotInitialized, NotLeader
from raftcore.ids import LogId, NodeId, Vote
from raftcore.membership import Membership
from raftcore.messages import AppendResponse, Message, ReadIndexResponse
from raftcore.quorum import QuorumSet
from raftcore.snapshots import SnapshotMeta
from raftcore.state import Role

NEVER = float("-inf")
_MEMBERSHIP = EntryKind.MEMBERSHIP
_KIND = itemgetter(1)


class Rng(Protocol):
    """The randomness the engine needs; ``random.Random`` qualifies."""

    def uniform(self, a: float, b: float) -> float: ...


class NodeState:
    """One node's engine state (see the module docstring)."""

    node_id: NodeId
    config: Config
    rng: Rng
    log: Log
    io: IoProgress
    vote: Vote
    role: Role
    committed: LogId
    applied: LogId
    #: Highest index handed to the state machine (``Apply`` emitted).
    apply_requested: int
    #: Membership entries in the log (and the one a snapshot carries), ascending.
    memberships: list[tuple[LogId, Membership]]
    membership: Membership | None
    quorum: QuorumSet | None
    election_deadline: float | None
    #: When this follower last accepted a message from a leader, and that
    #: leader's vote: it honours that leader's lease from then on.
    leader_heard_at: float
    lease_vote: Vote
    #: Greatest term of a vote request this node refused (volatile). Never
    #: adopted as a vote; only a campaign of this node starts above it.
    term_seen: int
    #: Client writes waiting for their entry to apply, by log index. Not
    #: leader state: a write whose entry committed is answered when it
    #: applies, even after this node stopped leading.
    pending_writes: dict[int, Hashable]
    #: The sequence number of the last append request sent (per node, never reset).
    seq: int
    #: Sends held until a storage command is durable: ``(io_id, command)``.
    gated: deque[tuple[int, Send]]
    stopped: str | None
    #: The leader's state while this node leads.
    leader: LeaderState | None
    #: The campaign's state while this node is a (pre-)candidate.
    candidate: CandidateState | None
    #: The ``now`` of the event being handled.
    last_now: float
    #: May this node campaign? Kept by ``_voter_status`` (see there).
    self_voter: bool
    #: The randomized timeout drawn at the last reset.
    election_timeout: float
    #: The latest durable snapshot (built here or installed from a leader).
    snapshot: SnapshotMeta | None
    #: The last log id of the snapshot being built, while one is.
    building: LogId | None
    #: A leader's snapshot arriving in chunks: its meta and the next offset wanted.
    receiving: tuple[SnapshotMeta, int] | None
    #: A received snapshot being installed, and whom to answer: its meta,
    #: the leader, and the ``seq`` and ``sent_at`` of its last chunk.
    installing: tuple[SnapshotMeta, NodeId, int, float] | None
    snapshots_built: int
    snapshots_installed: int
    #: Follower reads waiting to be sent to the leader: ``(request id, deadline)``.
    remote_reads: list[tuple[Hashable, float]]
    #: The read point request in flight: its seq, the leader asked, its reads.
    remote_inflight: tuple[int, NodeId, list[tuple[Hashable, float]]] | None
    out: list[Command]

    # -- output ------------------------------------------------------------

    def emit(self, cmd: Command) -> None:
        self.out.append(cmd)

    def send(self, to: NodeId, msg: Message) -> None:
        self.out.append(Send(to, msg))

    def send_when_durable(self, to: NodeId, msg: Message) -> None:
        """Send once every storage command issued so far is durable."""
        io = self.io
        if io.flushed == io.issued:
            self.out.append(Send(to, msg))
        else:
            self.gated.append((io.issued, Send(to, msg)))

    def release_gated(self) -> None:
        flushed = self.io.flushed
        g = self.gated
        while g and g[0][0] <= flushed:
            self.out.append(g.popleft()[1])

    # -- storage -----------------------------------------------------------

    def save_vote(self, vote: Vote) -> int:
        self.vote = vote
        io_id = self.io.issue(vote, self.log.last_log_id())
        self.out.append(SaveVote(io_id, vote))
        return io_id

    def append(self, entries: list[Entry], normal_only: bool = False) -> None:
        self.log.append(entries)
        io_id = self.io.issue(self.vote, entries[-1].log_id)
        self.out.append(AppendLog(io_id, tuple(entries)))
        if normal_only or _MEMBERSHIP not in map(_KIND, entries):
            return
        for e in entries:
            if e.kind is EntryKind.MEMBERSHIP:
                self.memberships.append((e.log_id, e.data))
        self.membership_changed()

    def truncate(self, since: int) -> None:
        self.log.truncate(since)
        new_last = self.log.last_log_id()
        self.io.clamp(since, new_last)
        self.drop_gated_acks(since)
        io_id = self.io.issue(self.vote, new_last)
        self.out.append(TruncateLog(io_id, since))
        ms = self.memberships
        if ms and ms[-1][0].index >= since:
            while ms and ms[-1][0].index >= since:
                ms.pop()
            self.membership_changed()

    def purge(self, upto: LogId) -> None:
        """Drop the log up to ``upto`` (a durable snapshot covers it), here and in storage."""
        self.log.purge(upto)
        io_id = self.io.issue(self.vote, self.log.last_log_id())
        self.out.append(PurgeLog(io_id, upto))
        ms = self.memberships
        keep = 0
        while keep + 1 < len(ms) and ms[keep + 1][0].index <= upto.index:
            keep += 1
        if keep:
            # The one in effect at ``upto`` stays: it is the snapshot's.
            del ms[:keep]

    def drop_gated_acks(self, since: int) -> None:
        """Drop acknowledgements, still waiting for a flush, of entries at or
        after ``since``: the log no longer holds them (a truncation or a
        snapshot install replaced them), so by the time one could be sent
        the durable log holds something else there."""
        if self.gated:
            self.gated = deque(
                (io, s)
                for io, s in self.gated
                if not (
                    type(s.message) is AppendResponse
                    and s.message.success
                    and s.message.matching.index >= since
                )
            )

    # -- membership --------------------------------------------------------

    def membership_at(self, index: int) -> tuple[LogId, Membership]:
        """The membership in effect at ``index`` (with its log id)."""
        for mid, m in reversed(self.memberships):
            if mid.index <= index:
                return mid, m
        raise AssertionError(f"no membership at index {index}")

    def membership_changed(self) -> None:
        self.membership = self.memberships[-1][1] if self.memberships else None
        self.quorum = self.membership.quorum_set() if self.membership is not None else None
        self.self_voter = self._voter_status()
        ld = self.leader
        if ld is not None:
            # A member added while leading starts probing at the last entry
            # (its membership entry): the first append is sent, and its
            # rejection back-tracks to where the new member's log ends.
            ld.sync_progress(self.membership, self.node_id, max(1, self.log.last_index))
        elif self.self_voter:
            if self.role is Role.LEARNER:
                self.role = Role.FOLLOWER
                self.reset_election_timer(self.last_now)
        elif self.role is not Role.LEARNER:
            self.role = Role.LEARNER
            self.candidate = None
            self.election_deadline = None

    def _voter_status(self) -> bool:
        """May this node start elections (and so be a follower, not a learner)?

        A voter of the effective membership may. So may a voter of the
        previous membership while the effective one, which removes it, is not
        known to be committed (Raft thesis 4.2.2): if only removed nodes hold
        that entry, one of them has to lead to commit it, or the cluster waits
        forever. Once it is known committed the node retires.
        """
        ms = self.memberships
        if not ms:
            return False
        me = self.node_id
        if ms[-1][1].is_voter(me):
            return True
        return len(ms) > 1 and ms[-1][0].index > self.committed.index and ms[-2][1].is_voter(me)

    def commit_advanced(self) -> None:
        """Follower: a removing membership may have become known committed."""
        if self.self_voter and not self._voter_status():
            self.membership_changed()

    def is_voter(self, node_id: NodeId | None = None) -> bool:
        m = self.membership
        return m is not None and m.is_voter(self.node_id if node_id is None else node_id)

    def uncommitted_membership(self) -> bool:
        ms = self.memberships
        return bool(ms) and ms[-1][0].index > self.committed.index

    # -- roles ---------------------------------------------------------------

    def reset_election_timer(self, now: float, extra: float = 0.0) -> None:
        """Draw a new randomized election timeout and start it at ``now``."""
        if self.self_voter:
            c = self.config
            self.election_timeout = self.rng.uniform(c.election_timeout_min, c.election_timeout_max)
            self.election_deadline = now + extra + self.election_timeout
        else:
            self.election_deadline = None

    def restart_election_timer(self, now: float) -> None:
        """Heard from the leader: restart the timer with the timeout already drawn.

        Drawn once per role change (as etcd does), not per message: the hot
        path makes no rng call, and followers still time out at different
        moments.
        """
        if self.self_voter:
            self.election_deadline = now + self.election_timeout

    def follow(self, vote: Vote, now: float) -> None:
        """A message from the leader of ``vote`` (not older than ours) arrived:
        adopt its vote, follow it, and restart the election timer."""
        if vote != self.vote:
            self.save_vote(vote)
        if self.role is not Role.FOLLOWER and self.role is not Role.LEARNER:
            self.become_follower(now)
        else:
            self.restart_election_timer(now)
        self.leader_heard_at = now
        self.lease_vote = vote

    def become_follower(self, now: float) -> None:
        if self.leader is not None:
            self.step_down()
        self.self_voter = self._voter_status()
        self.role = Role.FOLLOWER if self.self_voter else Role.LEARNER
        self.candidate = None
        self.reset_election_timer(now)

    def step_down(self) -> None:
        """Leaving leadership: drop the leader state and answer what it held
        whose outcome is now unknown (uncommitted writes, the membership
        change in progress) or that never began (a queued change)."""
        ld = self.leader
        if ld is None:
            return
        self.leader = None
        change, queued = ld.membership_change, ld.queued_change
        if change is not None:
            self.emit(Respond(change[0], None, LeadershipLost(self._other_leader())))
        if queued is not None:
            self.emit(Respond(queued.request_id, None, self.not_leader()))
        c = self.committed.index
        leader = self._other_leader()
        t = ld.transfer
        if t is not None:
            # Handed over (we follow the target's vote now), or overtaken.
            done = leader == t.to
            self.emit(
                Respond(
                    t.request_id, t.to if done else None, None if done else LeadershipLost(leader)
                )
            )
        for rid in ld.take_reads():
            self.answer_read(rid, None, LeadershipLost(leader))
        for idx in [i for i in self.pending_writes if i > c]:
            rid = self.pending_writes.pop(idx)
            self.out.append(Respond(rid, None, LeadershipLost(leader)))

    def answer_read(self, rid: Hashable, point: LogId | None, error: ClientError | None) -> None:
        """Answer a read: a client's with ``Respond``, a follower's (a
        ``RemoteRead``) with a ``ReadIndexResponse`` (no read point on error)."""
        if type(rid) is RemoteRead:
            self.send(rid.sender, ReadIndexResponse(self.vote, rid.seq, point))
        else:
            self.emit(Respond(rid, point, error))

    def _other_leader(self) -> NodeId | None:
        return self.vote.node_id if self.vote.node_id != self.node_id else None

    def adopt_vote(self, vote: Vote, now: float) -> None:
        """Take a greater vote seen in a message, and follow."""
        self.save_vote(vote)
        self.become_follower(now)

    def leader_id(self) -> NodeId | None:
        """The leader this node knows of, if any (never itself after stepping down)."""
        v = self.vote
        if v.committed and (v.node_id != self.node_id or self.role is Role.LEADER):
            return v.node_id
        return None

    def refusal(self) -> NotInitialized | NotLeader:
        """Why this node (not leading) refuses a client request."""
        if self.membership is None:
            return NotInitialized()
        return self.not_leader()

    def not_leader(self) -> NotLeader:
        lid = self.leader_id()
        if lid is None or lid == self.node_id:
            return NotLeader(None, None)
        m = self.membership
        return NotLeader(lid, m.node_info(lid) if m is not None else None)

    def other_voters(self) -> Iterable[NodeId]:
        m = self.membership
        return () if m is None else sorted(m.voter_ids() - {self.node_id})
