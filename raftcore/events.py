"""Every input the engine accepts. Feed them to ``Engine.handle(event, now)``."""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

import attrs

from raftcore.ids import LogId, NodeId
from raftcore.membership import Membership
from raftcore.messages import Message


@attrs.frozen
class Initialize:
    """Form a new cluster whose first membership is ``membership``.

    Call it on one node (or on every node with the same membership). Raises
    ``LocalProtocolError`` on a node that already has a log or a vote.
    """

    membership: Membership


@attrs.frozen
class ClientWrite:
    """Append ``data`` to the log. Answered by ``Respond(request_id, ...)``
    with the state machine's result once applied, or with an error."""

    request_id: Hashable
    data: Any


@attrs.frozen
class ClientWriteBatch:
    """Several writes at once: one log append, one replication round."""

    requests: tuple[tuple[Hashable, Any], ...]


@attrs.frozen
class MessageReceived:
    sender: NodeId
    message: Message


@attrs.frozen
class Wakeup:
    """The caller's timer fired (at or after ``Engine.next_deadline``)."""


@attrs.frozen
class IoFlushed:
    """Every storage command with ``io_id <= io_id`` is durable.

    Storage commands run in order, so one completion covers all earlier ones
    (group commit).
    """

    io_id: int


@attrs.frozen
class Applied:
    """The state machine applied every entry up to ``upto``.

    ``results`` maps the index of each applied normal entry to its result;
    entries without a client waiting may be left out.
    """

    upto: LogId
    results: tuple[tuple[int, Any], ...] = ()


@attrs.frozen
class StorageFailed:
    """A storage command failed: the engine stops and takes no more events."""

    reason: str


@attrs.frozen
class TriggerElection:
    """Start an election now (no pre-vote), if this node is a voter."""


@attrs.frozen
class TriggerHeartbeat:
    """As leader, send a heartbeat to every follower now."""


Event = (
    Initialize
    | ClientWrite
    | ClientWriteBatch
    | MessageReceived
    | Wakeup
    | IoFlushed
    | Applied
    | StorageFailed
    | TriggerElection
    | TriggerHeartbeat
)
