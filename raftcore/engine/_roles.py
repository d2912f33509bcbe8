"""The state that exists only in one role: a leader's, a candidate's.

A ``LeaderState`` is made when the node becomes leader and dropped when it
stops leading; a ``CandidateState`` lives for one campaign (pre-vote and
vote). Code that needs one takes it as an argument, so leader-only code
cannot run on a follower: there is no leader state to pass.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import NamedTuple

from raftcore.engine._progress import Progress
from raftcore.events import ChangeMembership
from raftcore.ids import LogId, NodeId, Vote
from raftcore.membership import Membership


class RemoteRead(NamedTuple):
    """A follower's ``ReadIndexRequest`` waiting at the leader like a read:
    answered with a ``ReadIndexResponse`` instead of a ``Respond``."""

    sender: NodeId
    seq: int


class Transfer:
    """A leadership transfer in progress: who asked, the target, when it is
    abandoned, and when ``TimeoutNow`` was last sent (``None``: not yet, the
    target is catching up)."""

    __slots__ = ("deadline", "request_id", "sent_at", "to")

    def __init__(self, request_id: Hashable, to: NodeId, deadline: float) -> None:
        self.request_id = request_id
        self.to = to
        self.deadline = deadline
        self.sent_at: float | None = None


class CandidateState:
    """One campaign: the vote asked for and the voters that granted it."""

    __slots__ = ("granted", "round_vote", "self_vote_io", "started_at")

    def __init__(self, round_vote: Vote, granted: set[NodeId], started_at: float) -> None:
        self.round_vote = round_vote
        self.granted = granted
        #: The io id of saving our own vote (a candidate counts it once durable).
        self.self_vote_io = 0
        #: When the vote round started: the voters' lease for us starts there.
        self.started_at = started_at


class LeaderState:
    """A leader's per-follower progress, heartbeat deadline and membership change."""

    __slots__ = (
        "elected_from",
        "first_index",
        "heartbeat_deadline",
        "lease_revoked",
        "membership_change",
        "progress",
        "queued_change",
        "read_round",
        "reads_waiting",
        "transfer",
    )

    def __init__(self, first_index: int, heartbeat_deadline: float, elected_from: float) -> None:
        self.progress: dict[NodeId, Progress] = {}
        #: The index of this leader's first (blank) entry.
        self.first_index = first_index
        self.heartbeat_deadline = heartbeat_deadline
        #: When the winning campaign started: the voters granted us after it,
        #: so a new follower's lease on our behalf counts from there.
        self.elected_from = elected_from
        #: The membership change this leader is carrying out: (request id, retain).
        self.membership_change: tuple[Hashable, bool] | None = None
        #: A change request waiting for this leader's first entry to commit.
        self.queued_change: ChangeMembership | None = None
        #: Reads waiting for a confirmation round: ``(request id, deadline)``.
        self.reads_waiting: list[tuple[Hashable, float]] = []
        #: The round in progress: its start (the leader's clock), the read
        #: point it confirms, and its reads.
        self.read_round: tuple[float, LogId, list[tuple[Hashable, float]]] | None = None
        #: The leadership transfer in progress.
        self.transfer: Transfer | None = None
        #: Set once this leader sent ``TimeoutNow``: the voters may now elect
        #: the target despite the lease, so lease reads are over for good
        #: (even if the transfer is abandoned).
        self.lease_revoked = False

    def take_reads(self) -> list[Hashable]:
        """Every waiting read's request id, now no longer waiting."""
        reads = self.reads_waiting + (self.read_round[2] if self.read_round is not None else [])
        self.reads_waiting = []
        self.read_round = None
        return [rid for rid, _ in reads]

    def sync_progress(self, membership: Membership | None, me: NodeId, start: int) -> None:
        """One progress per member; new ones start probing at ``start``."""
        targets = set() if membership is None else membership.node_ids() - {me}
        pr = self.progress
        for n in list(pr):
            if n not in targets:
                del pr[n]
        for n in sorted(targets - set(pr)):
            pr[n] = Progress(start, self.elected_from)
