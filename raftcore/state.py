"""What a node hands the engine on start, and what it can read back."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any

import attrs

from raftcore.entries import Entry
from raftcore.ids import INITIAL_VOTE, ZERO_LOG_ID, LogId, NodeId, Vote
from raftcore.membership import Membership
from raftcore.snapshots import SnapshotMeta


class Role(enum.Enum):
    FOLLOWER = "follower"
    PRE_CANDIDATE = "pre-candidate"
    CANDIDATE = "candidate"
    LEADER = "leader"
    #: Not a voter of the effective membership (or no membership yet).
    LEARNER = "learner"


@attrs.frozen
class RecoveredState:
    """The durable state a node restarts from.

    ``entries`` are the log entries after ``last_purged`` (contiguous);
    ``committed`` is the last commit index the node knew, if stored;
    ``applied`` is the last entry a durable state machine has applied (leave it
    at ``ZERO_LOG_ID`` for a state machine rebuilt from scratch on start).
    The engine applies only entries durable in its own log, so ``applied``
    always names an entry of the recovered log (or of the purged prefix);
    otherwise ``ConfigError``. A ``committed`` the log cannot back is ignored.
    """

    vote: Vote = INITIAL_VOTE
    entries: tuple[Entry, ...] = ()
    last_purged: LogId = ZERO_LOG_ID
    committed: LogId = ZERO_LOG_ID
    applied: LogId = ZERO_LOG_ID
    #: The membership in effect at ``last_purged`` (carried by the snapshot
    #: that covers the purged prefix), with its log id; ``None`` if nothing
    #: was purged.
    membership: tuple[LogId, Membership] | None = None
    #: The latest durable snapshot, if any. It may cover more than
    #: ``last_purged`` (a crash between a snapshot and its purge, or in the
    #: middle of installing a received one): the engine then finishes the
    #: purge itself, discarding a log that does not continue the snapshot.
    snapshot: SnapshotMeta | None = None


@attrs.frozen
class FollowerProgress:
    """A leader's view of one follower or learner."""

    #: The last log id known to be in its log.
    matching: LogId
    #: When (the caller's clock, as passed to ``handle``) the leader sent the
    #: latest request this follower acknowledged.
    acked_at: float
    #: Still looking for the match point (at most one request in flight).
    probing: bool
    #: Receiving the leader's snapshot: the next offset it asked for.
    snapshot_offset: int | None = None


@attrs.frozen
class Metrics:
    """A snapshot of one engine's state, for monitoring and tests."""

    node_id: NodeId
    role: Role
    vote: Vote
    leader_id: NodeId | None
    last_log_id: LogId
    committed: LogId
    applied: LogId
    membership: Membership | None
    #: Leader only: each follower's matching log id.
    replication: Mapping[NodeId, LogId] = attrs.field(factory=dict)
    #: Leader only: each follower's progress (``replication`` in detail).
    followers: Mapping[NodeId, FollowerProgress] = attrs.field(factory=dict)
    stopped: str | None = None
    #: The latest durable snapshot's last log id (``None``: no snapshot yet).
    snapshot: LogId | None = None
    #: Every entry up to this one is purged from the log.
    last_purged: LogId = ZERO_LOG_ID
    #: Snapshots this engine installed from a leader / built, since it started.
    snapshots_installed: int = 0
    snapshots_built: int = 0
    #: Leader only: the target of the leadership transfer in progress.
    transfer_to: NodeId | None = None
    extra: Mapping[str, Any] = attrs.field(factory=dict)
