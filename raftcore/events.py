"""Every input the engine accepts. Feed them to ``Engine.handle(event, now)``."""

from __future__ import annotations

import enum
from collections.abc import Hashable
from typing import Any, NamedTuple

from raftcore._values import value
from raftcore.ids import LogId, NodeId
from raftcore.membership import Change, Membership
from raftcore.messages import Message
from raftcore.snapshots import SnapshotMeta


@value
class Initialize(NamedTuple):
    """Form a new cluster whose first membership is ``membership``.

    Call it on one node (or on every node with the same membership). Raises
    ``LocalProtocolError`` on a node that already has a log or a vote.
    """

    membership: Membership


@value
class ClientWrite(NamedTuple):
    """Append ``data`` to the log. Answered by ``Respond(request_id, ...)``
    with the state machine's result once applied, or with an error."""

    request_id: Hashable
    data: Any


@value
class ClientWriteBatch(NamedTuple):
    """Several writes at once: one log append, one replication round."""

    requests: tuple[tuple[Hashable, Any], ...]


class ReadPolicy(enum.Enum):
    """How a leader makes sure a read sees every write acknowledged before it."""

    #: Confirm leadership with a quorum round (a heartbeat round shared by
    #: every read waiting at that moment); no clock assumption.
    READ_INDEX = "read_index"
    #: No round while the leader lease holds; assumes clocks run at rates
    #: within ``Config.max_clock_drift`` of each other (docs/reads.md).
    LEASE = "lease"


@value
class ClientRead(NamedTuple):
    """Ask for a read point: answered ``Respond(request_id, log_id)`` once the
    read is safe; serve the read from a state machine that applied at least
    ``log_id``. Or answered with ``NotLeader``, ``LeadershipLost`` or
    ``ReadTimeout``."""

    request_id: Hashable
    policy: ReadPolicy = ReadPolicy.READ_INDEX


@value
class TransferLeader(NamedTuple):
    """Hand leadership to voter ``to`` (``None``: the most up-to-date other
    voter). Leader only.

    The leader refuses new writes and membership changes
    (``TransferInProgress``), brings the target's log up to its own, then
    sends it ``TimeoutNow``: the target campaigns at once and the voters
    grant it despite the lease, this one election only. Answered
    ``Respond(request_id, target)`` once this node hands over (it grants
    the target's vote, or sees it lead), or with ``NotLeader``,
    ``InvalidTransfer`` (a learner, a non-member, no other voter),
    ``TransferInProgress`` (another transfer is running), ``TransferTimeout``
    (not done within ``Config.transfer_timeout``: the leader serves writes
    again) or ``LeadershipLost`` (another node took over).
    """

    request_id: Hashable
    to: NodeId | None = None


@value
class ChangeMembership(NamedTuple):
    """Change the membership (leader only); see ``raftcore.membership`` for changes.

    Answered by ``Respond(request_id, (log_id, membership))`` once the final
    membership commits, or with ``NotLeader``, ``MembershipChangeInProgress``,
    ``InvalidMembershipChange``, ``MembershipMismatch`` (``expected`` is not
    the current membership's log id) or ``LeadershipLost``. With ``retain``,
    removed voters stay on as learners.
    """

    request_id: Hashable
    change: Change
    retain: bool = False
    expected: LogId | None = None


@value
class MessageReceived(NamedTuple):
    sender: NodeId
    message: Message


@value
class Wakeup(NamedTuple):
    """The caller's timer fired (at or after ``Engine.next_deadline``)."""


@value
class IoFlushed(NamedTuple):
    """Every storage command with ``io_id <= io_id`` is durable.

    Storage commands run in order, so one completion covers all earlier ones
    (group commit).
    """

    io_id: int


@value
class Applied(NamedTuple):
    """The state machine applied every entry up to ``upto``.

    ``results`` maps the index of each applied normal entry to its result;
    entries without a client waiting may be left out.
    """

    upto: LogId
    results: tuple[tuple[int, Any], ...] = ()


@value
class SnapshotBuilt(NamedTuple):
    """The snapshot a ``BuildSnapshot`` asked for is durable in the snapshot store."""

    meta: SnapshotMeta


@value
class SnapshotInstalled(NamedTuple):
    """The state machine now is snapshot ``meta`` (an ``InstallSnapshot`` is done)."""

    meta: SnapshotMeta


@value
class TriggerSnapshot(NamedTuple):
    """Build a snapshot of what is applied now (unless one is being built,
    or the latest snapshot already covers it)."""


@value
class TriggerPurge(NamedTuple):
    """Purge the log up to index ``upto`` now, capped at the latest snapshot
    and ignoring ``purge_keep`` (a leader still keeps what a follower in the
    replication window needs)."""

    upto: int


@value
class StorageFailed(NamedTuple):
    """A storage command failed: the engine stops and takes no more events."""

    reason: str


@value
class TriggerElection(NamedTuple):
    """Start an election now (no pre-vote), if this node is a voter and does
    not honour a live leader's lease (with check-quorum, for a lease after
    it last heard from that leader; use ``TransferLeader`` to move a live
    leader)."""


@value
class TriggerHeartbeat(NamedTuple):
    """As leader, send a heartbeat to every follower now."""


Event = (
    Initialize
    | ClientWrite
    | ClientWriteBatch
    | ClientRead
    | ChangeMembership
    | TransferLeader
    | MessageReceived
    | Wakeup
    | IoFlushed
    | Applied
    | SnapshotBuilt
    | SnapshotInstalled
    | TriggerSnapshot
    | TriggerPurge
    | StorageFailed
    | TriggerElection
    | TriggerHeartbeat
)
