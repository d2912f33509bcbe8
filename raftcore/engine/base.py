"""The engine's state and the transitions every handler shares.

Handlers each own one concern, one module each, stacked in a single
inheritance chain: base <- apply <- election <- follower <- leader <- Engine
(single inheritance keeps the engine compilable with mypyc). State changes
that several concerns need — saving a vote, appending or truncating the log,
changing role, tracking the effective membership — live here, in one
readable place.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable, Iterable
from operator import itemgetter
from typing import Protocol

from raftcore.commands import AppendLog, Command, Respond, SaveVote, Send, TruncateLog
from raftcore.config import Config
from raftcore.engine.io import IoProgress
from raftcore.engine.log import Log
from raftcore.engine.progress import Progress
from raftcore.entries import Entry, EntryKind
from raftcore.errors import LeadershipLost
from raftcore.events import ChangeMembership
from raftcore.ids import LogId, NodeId, Vote
from raftcore.membership import Membership
from raftcore.messages import AppendResponse, Message
from raftcore.quorum import QuorumSet
from raftcore.state import Role

NEVER = float("-inf")
_MEMBERSHIP = EntryKind.MEMBERSHIP
_KIND = itemgetter(1)


class Rng(Protocol):
    """The randomness the engine needs; ``random.Random`` qualifies."""

    def uniform(self, a: float, b: float) -> float: ...


class EngineBase:
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
    #: When this follower last accepted a message from a leader (for the lease).
    leader_heard_at: float
    #: Greatest term of a vote request this node refused (volatile). Never
    #: adopted as a vote; only a campaign of this node starts above it.
    term_seen: int
    # candidate state
    round_vote: Vote
    granted: set[NodeId]
    self_vote_io: int
    election_started_at: float
    # leader state
    progress: dict[NodeId, Progress]
    leader_first_index: int
    heartbeat_deadline: float
    pending_writes: dict[int, Hashable]
    #: The membership change this leader is carrying out: (request id, retain).
    membership_change: tuple[Hashable, bool] | None
    #: A change request waiting for this leader's first entry to commit.
    queued_change: ChangeMembership | None
    seq: int
    #: Sends held until a storage command is durable: ``(io_id, command)``.
    gated: deque[tuple[int, Send]]
    stopped: str | None
    #: The ``now`` of the event being handled.
    _last_now: float
    #: May this node campaign? Kept by ``_voter_status`` (see there).
    _self_voter: bool
    #: The randomized timeout drawn at the last reset.
    _election_timeout: float
    _out: list[Command]

    # -- output ------------------------------------------------------------

    def _emit(self, cmd: Command) -> None:
        self._out.append(cmd)

    def _send(self, to: NodeId, msg: Message) -> None:
        self._out.append(Send(to, msg))

    def _send_when_durable(self, to: NodeId, msg: Message) -> None:
        """Send once every storage command issued so far is durable."""
        io = self.io
        if io.flushed == io.issued:
            self._out.append(Send(to, msg))
        else:
            self.gated.append((io.issued, Send(to, msg)))

    def _release_gated(self) -> None:
        flushed = self.io.flushed
        g = self.gated
        while g and g[0][0] <= flushed:
            self._out.append(g.popleft()[1])

    # -- storage -----------------------------------------------------------

    def _save_vote(self, vote: Vote) -> int:
        self.vote = vote
        io_id = self.io.issue(vote, self.log.last_log_id())
        self._out.append(SaveVote(io_id, vote))
        return io_id

    def _append(self, entries: list[Entry], normal_only: bool = False) -> None:
        self.log.append(entries)
        io_id = self.io.issue(self.vote, entries[-1].log_id)
        self._out.append(AppendLog(io_id, tuple(entries)))
        if normal_only or _MEMBERSHIP not in map(_KIND, entries):
            return
        for e in entries:
            if e.kind is EntryKind.MEMBERSHIP:
                self.memberships.append((e.log_id, e.data))
        self._membership_changed()

    def _truncate(self, since: int) -> None:
        self.log.truncate(since)
        new_last = self.log.last_log_id()
        self.io.clamp(since, new_last)
        if self.gated:
            # An acknowledgement still waiting for its flush must not claim an
            # entry this truncation replaces: by the time it could be sent,
            # the durable log holds a different entry at that index.
            self.gated = deque(
                (io, s)
                for io, s in self.gated
                if not (
                    type(s.message) is AppendResponse
                    and s.message.success
                    and s.message.matching.index >= since
                )
            )
        io_id = self.io.issue(self.vote, new_last)
        self._out.append(TruncateLog(io_id, since))
        ms = self.memberships
        if ms and ms[-1][0].index >= since:
            while ms and ms[-1][0].index >= since:
                ms.pop()
            self._membership_changed()

    # -- membership --------------------------------------------------------

    def _membership_changed(self) -> None:
        self.membership = self.memberships[-1][1] if self.memberships else None
        self.quorum = self.membership.quorum_set() if self.membership is not None else None
        self._self_voter = self._voter_status()
        if self.role is Role.LEADER:
            self._sync_progress()
        elif self._self_voter:
            if self.role is Role.LEARNER:
                self.role = Role.FOLLOWER
                self._reset_election_timer(self._last_now)
        elif self.role is not Role.LEARNER:
            self.role = Role.LEARNER
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

    def _commit_advanced(self) -> None:
        """Follower: a removing membership may have become known committed."""
        if self._self_voter and not self._voter_status():
            self._membership_changed()

    def is_voter(self, node_id: NodeId | None = None) -> bool:
        m = self.membership
        return m is not None and m.is_voter(self.node_id if node_id is None else node_id)

    # Implemented by the handler mixins; declared here so each mixin can call
    # the others through the base.

    def _sync_progress(self, start: int = 0) -> None:
        """Leader: one progress per member of the effective membership."""
        raise NotImplementedError

    def _advance_apply(self) -> None:
        """Hand newly committed entries to the state machine."""
        raise NotImplementedError

    def _become_leader(self, now: float) -> None:
        raise NotImplementedError

    def _after_leader_commit(self) -> None:
        """Leader: the commit index moved (membership changes take their next step)."""
        raise NotImplementedError

    def _answer_change_lost(self) -> None:
        """Leaving leadership: answer the membership change in progress."""
        raise NotImplementedError

    def _leader_lease_valid(self, now: float) -> bool:
        raise NotImplementedError

    # -- roles ---------------------------------------------------------------

    def _reset_election_timer(self, now: float, extra: float = 0.0) -> None:
        """Draw a new randomized election timeout and start it at ``now``."""
        if self._self_voter:
            c = self.config
            self._election_timeout = self.rng.uniform(
                c.election_timeout_min, c.election_timeout_max
            )
            self.election_deadline = now + extra + self._election_timeout
        else:
            self.election_deadline = None

    def _restart_election_timer(self, now: float) -> None:
        """Heard from the leader: restart the timer with the timeout already drawn.

        Drawn once per role change (as etcd does), not per message: the hot
        path makes no rng call, and followers still time out at different
        moments.
        """
        if self._self_voter:
            self.election_deadline = now + self._election_timeout

    def _become_follower(self, now: float) -> None:
        if self.role is Role.LEADER:
            self._step_down()
        self._self_voter = self._voter_status()
        self.role = Role.FOLLOWER if self._self_voter else Role.LEARNER
        self.granted = set()
        self._reset_election_timer(now)

    def _step_down(self) -> None:
        """Leaving leadership: answer writes whose outcome is now unknown."""
        self.progress = {}
        self._answer_change_lost()
        c = self.committed.index
        leader = self.vote.node_id if self.vote.node_id != self.node_id else None
        for idx in [i for i in self.pending_writes if i > c]:
            rid = self.pending_writes.pop(idx)
            self._out.append(Respond(rid, None, LeadershipLost(leader)))

    def _adopt_vote(self, vote: Vote, now: float) -> None:
        """Take a greater vote seen in a message, and follow."""
        self._save_vote(vote)
        self._become_follower(now)

    def leader_id(self) -> NodeId | None:
        """The leader this node knows of, if any (never itself after stepping down)."""
        v = self.vote
        if v.committed and (v.node_id != self.node_id or self.role is Role.LEADER):
            return v.node_id
        return None

    def _candidates_and_voters(self) -> Iterable[NodeId]:
        m = self.membership
        return () if m is None else sorted(m.voter_ids() - {self.node_id})
